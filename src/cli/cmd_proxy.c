/* tvmrpc proxy: flags of python -m tvm.exec.rpc_proxy, plus the timeouts
 * and limits TVM hard-codes. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "base/acl.h"
#include "base/log.h"
#include "base/sig.h"
#include "cli/commands.h"
#include "cli/opt.h"
#include "proxy/proxy.h"

/* Seconds from the command line to milliseconds; -1 if not in (0, 1e7]. */
static int secs_to_ms(double s)
{
    return s > 0 && s <= 1e7 ? (int)(s * 1000.0 + 0.5) : -1;
}

/* Each pair holds two sockets and two pipes: let the proxy use every fd
 * the hard limit allows instead of the usual 1024. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Python's bool(str): argparse's type=bool makes any non-empty value true. */
static int py_truthy(const char *s)
{
    return s && *s;
}

int cmd_proxy(int argc, char **argv)
{
    proxy_config_t cfg;
    proxy_config_defaults(&cfg);
    double t_server = cfg.timeout_server_ms / 1000.0, t_client = cfg.timeout_client_ms / 1000.0;
    double t_handshake = cfg.handshake_timeout_ms / 1000.0;
    int silent = 0, no_splice = 0, max_conns = (int)cfg.max_conns;
    int max_per_peer = (int)cfg.max_conns_per_peer;
    int relay_kib = 0, busy_poll_us = cfg.relay.busy_poll_us;
    const char *example_rpc = NULL, *level = NULL, *allow = NULL;
    const opt_spec_t specs[] = {
        {"host", OPT_STR, &cfg.host, "HOST", "address to bind (default 127.0.0.1)", 0, 0},
        {"port", OPT_INT, &cfg.port, "PORT", "first port to try (default 9090)", 0, 65535},
        {"port-end", OPT_INT, &cfg.port_end, "PORT",
         "end of the port search, exclusive (default 9199)", 0, 65536},
        {"web-port", OPT_INT, &cfg.web_port, "PORT",
         "HTTP/WebSocket port with endpoint /ws, 0 = off (default 8888)", 0, 65535},
        {"web-host", OPT_STR, &cfg.web_host, "HOST", "address the web port binds (default 0.0.0.0)",
         0, 0},
        {"tracker", OPT_STR, &cfg.tracker, "HOST:PORT",
         "register waiting servers with this tracker (default: none)", 0, 0},
        {"custom-addr", OPT_STR, &cfg.custom_addr, "ADDR",
         "address the tracker hands to clients instead of ours", 0, 0},
        {"example-rpc", OPT_STR, &example_rpc, "BOOL",
         "TVM's example web pages; not bundled, only an empty value is accepted", 0, 0},
        {"timeout-server", OPT_NUM, &t_server, "SEC",
         "no tracker: MISMATCH a server no client matched within SEC (default 600)", 0, 0},
        {"timeout-client", OPT_NUM, &t_client, "SEC",
         "no tracker: MISMATCH a client no server matched within SEC (default 600)", 0, 0},
        {"handshake-timeout", OPT_NUM, &t_handshake, "SEC",
         "drop peers that do not finish the handshake within SEC (default 10)", 0, 0},
        {"allow", OPT_STR, &allow, "CIDR,...",
         "accept peers on both ports only from these networks (default: everyone)", 0, 0},
        {"max-conns", OPT_INT, &max_conns, "N", "refuse connections beyond N (default 65536)", 2,
         10000000},
        {"max-conns-per-peer", OPT_INT, &max_per_peer, "N",
         "refuse connections beyond N from one IP address, waiting or paired, both ports "
         "together; 0 = no limit (default 256)",
         0, 10000000},
        {"relay-buffer", OPT_INT, &relay_kib, "KIB",
         "bytes queued per direction before the sender is paused (default 1024 with splice, "
         "256 when copying)",
         4, 1048576},
        {"busy-poll-us", OPT_INT, &busy_poll_us, "US",
         "after relaying a small message, poll this long for the answer instead of sleeping; "
         "0 = off (default 50)",
         0, 10000},
        {"no-splice", OPT_FLAG, &no_splice, NULL,
         "relay by copying through user space instead of splice(2)", 0, 0},
        {"silent", OPT_FLAG, &silent, NULL, "log only warnings and errors", 0, 0},
        {"log-level", OPT_STR, &level, "LEVEL", "debug, info, warn or error (default info)", 0, 0},
        {NULL, 0, NULL, NULL, NULL, 0, 0},
    };
    const char *summary = "Run an RPC proxy: servers without a reachable address and their "
                          "clients both connect here and are paired by key.";
    char err[256];
    char *pos[1];
    int npos;
    int rc = opt_parse(specs, argc - 1, argv + 1, pos, 0, &npos, err, sizeof(err));
    if (rc == OPT_PARSE_HELP) {
        opt_usage(stdout, "proxy", NULL, summary, specs);
        return 0;
    }
    log_level_t lvl = LOG_INFO;
    if (rc == 0 && level && log_level_parse(level, &lvl) < 0) {
        snprintf(err, sizeof(err), "invalid value '%s' for --log-level", level);
        rc = -1;
    }
    if (rc == 0 && py_truthy(example_rpc)) {
        snprintf(err, sizeof(err),
                 "--example-rpc: TVM's example web pages (web/dist, "
                 "web/apps/browser) are not bundled with tvmrpc; the WebSocket "
                 "endpoint /ws works without them");
        rc = -1;
    }
    acl_t acl = {0};
    if (rc == 0 && allow && acl_parse(&acl, allow, err, sizeof(err)) < 0)
        rc = -1;
    cfg.timeout_server_ms = secs_to_ms(t_server);
    cfg.timeout_client_ms = secs_to_ms(t_client);
    cfg.handshake_timeout_ms = secs_to_ms(t_handshake);
    if (rc == 0 &&
        (cfg.timeout_server_ms < 0 || cfg.timeout_client_ms < 0 || cfg.handshake_timeout_ms < 0)) {
        snprintf(err, sizeof(err), "timeouts must be positive numbers of seconds");
        rc = -1;
    }
    if (rc < 0) {
        acl_free(&acl);
        fprintf(stderr, "tvmrpc proxy: %s\n", err);
        opt_usage(stderr, "proxy", NULL, summary, specs);
        return EXIT_USAGE;
    }
    log_init("proxy", lvl);
    log_set_silent(silent);
    cfg.max_conns = (size_t)max_conns;
    cfg.max_conns_per_peer = (size_t)max_per_peer;
    cfg.allow = &acl;
    if (relay_kib)
        cfg.relay.high_water = cfg.relay.pipe_size = (size_t)relay_kib * 1024;
    cfg.relay.splice = !no_splice;
    cfg.relay.busy_poll_us = busy_poll_us;
    if (cfg.tracker && !*cfg.tracker)
        cfg.tracker = NULL;
    raise_fd_limit();

    proxy_t *p = proxy_create(&cfg, err, sizeof(err));
    if (!p) {
        log_error("cannot start proxy: %s", err);
        acl_free(&acl);
        return 1;
    }
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    int sig_fd = sig_pipe_install(sigs, 3);
    rc = proxy_run(p, sig_fd);
    proxy_free(p);
    acl_free(&acl);
    log_info("proxy stopped");
    return rc < 0 ? 1 : 0;
}
