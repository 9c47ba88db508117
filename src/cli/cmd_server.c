/* tvmrpc server: flags of python -m tvm.exec.rpc_server and TVM's C++
 * `tvm_rpc server` (both "--port 9090" and "--port=9090" work). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/sig.h"
#include "cli/commands.h"
#include "cli/opt.h"
#include "server/module.h"
#include "server/server.h"

int cmd_server(int argc, char **argv)
{
    server_config_t cfg;
    server_config_defaults(&cfg);
    int silent = 0, handshake_s = 10, max_per_peer = (int)cfg.max_conns_per_peer;
    double max_packet_mb = (double)(cfg.session.max_packet >> 20);
    const char *level = NULL, *protocol = "auto", *allow = NULL, *cc = NULL;
    const opt_spec_t specs[] = {
        {"host", OPT_STR, &cfg.host, "HOST",
         "address to bind, or the proxy's address with --through-proxy (default 0.0.0.0)", 0, 0},
        {"port", OPT_INT, &cfg.port, "PORT",
         "first port to try, or the proxy's port (default 9090)", 0, 65535},
        {"port-end", OPT_INT, &cfg.port_end, "PORT",
         "end of the port search, exclusive (default 9199)", 0, 65536},
        {"tracker", OPT_STR, &cfg.tracker, "HOST:PORT", "register with this tracker (needs --key)",
         0, 0},
        {"key", OPT_STR, &cfg.key, "KEY", "device key clients ask for (default \"\")", 0, 0},
        {"custom-addr", OPT_STR, &cfg.custom_addr, "ADDR",
         "address the tracker hands to clients instead of ours", 0, 0},
        {"through-proxy", OPT_FLAG, &cfg.through_proxy, NULL,
         "connect out to the proxy at --host:--port and serve clients it pairs us with", 0, 0},
        {"load-library", OPT_STR, &cfg.load_library, "A.so:B.so",
         "libraries to load (RTLD_GLOBAL) in every session", 0, 0},
        {"no-fork", OPT_FLAG, &cfg.no_fork, NULL,
         "serve sessions in the main process (no crash isolation, no session timeout)", 0, 0},
        {"cc", OPT_STR, &cc, "CC",
         "C compiler that links uploaded .o/.tar files (default $CC, else gcc, cc or clang)", 0, 0},
        {"work-dir", OPT_STR, &cfg.session.work_dir, "DIR",
         "where per-session workspaces are created (default $TMPDIR or /tmp)", 0, 0},
        {"max-packet", OPT_NUM, &max_packet_mb, "MIB",
         "largest RPC packet accepted, in MiB (default 4096)", 0, 0},
        {"handshake-timeout", OPT_INT, &handshake_s, "SEC",
         "drop peers that do not finish the handshake within SEC (default 10)", 1, 86400},
        {"protocol", OPT_STR, &protocol, "GEN",
         "auto (detect per session), classic (TVM <= 0.20) or ffi (TVM >= 0.21)", 0, 0},
        {"allow", OPT_STR, &allow, "CIDR,...",
         "accept clients only from these networks (default: everyone)", 0, 0},
        {"max-conns-per-peer", OPT_INT, &max_per_peer, "N",
         "unfinished handshakes allowed from one address (default 16, 0 = no limit)", 0, 1000000},
        {"silent", OPT_FLAG, &silent, NULL, "log only warnings and errors", 0, 0},
        {"log-level", OPT_STR, &level, "LEVEL", "debug, info, warn or error (default info)", 0, 0},
        {NULL, 0, NULL, NULL, NULL, 0, 0},
    };
    const char *summary = "Run an RPC server on this device: clients upload, load and run "
                          "compiled code here.";
    char err[256];
    char *pos[1];
    int npos;
    int rc = opt_parse(specs, argc - 1, argv + 1, pos, 0, &npos, err, sizeof(err));
    if (rc == OPT_PARSE_HELP) {
        opt_usage(stdout, "server", NULL, summary, specs);
        return 0;
    }
    log_level_t lvl = LOG_INFO;
    if (rc == 0 && level && log_level_parse(level, &lvl) < 0) {
        snprintf(err, sizeof(err), "invalid value '%s' for --log-level", level);
        rc = -1;
    }
    if (rc == 0) {
        if (!strcmp(protocol, "classic"))
            cfg.session.protocol = RPC_PROTOCOL_CLASSIC;
        else if (!strcmp(protocol, "ffi"))
            cfg.session.protocol = RPC_PROTOCOL_FFI;
        else if (strcmp(protocol, "auto") != 0) {
            snprintf(err, sizeof(err), "invalid value '%s' for --protocol", protocol);
            rc = -1;
        }
    }
    if (rc == 0 && cfg.tracker && !*cfg.key) {
        snprintf(err, sizeof(err), "--tracker needs --key to name the device type");
        rc = -1;
    }
    if (rc == 0 && (max_packet_mb < 1 || max_packet_mb > 1048576)) {
        snprintf(err, sizeof(err), "invalid value for --max-packet (1 to 1048576 MiB)");
        rc = -1;
    }
    acl_t acl = {0};
    if (rc == 0 && allow && acl_parse(&acl, allow, err, sizeof(err)) < 0)
        rc = -1;
    if (rc < 0) {
        fprintf(stderr, "tvmrpc server: %s\n", err);
        opt_usage(stderr, "server", NULL, summary, specs);
        return EXIT_USAGE;
    }
    log_init("server", lvl);
    log_set_silent(silent);
    cfg.handshake_timeout_ms = handshake_s * 1000;
    cfg.max_conns_per_peer = (size_t)max_per_peer;
    cfg.session.max_packet = (uint64_t)(max_packet_mb * 1048576.0);
    /* Under `ulimit -f` a too-large upload must fail with EFBIG (a clear
     * error for the client, no partial file) instead of killing the worker. */
    signal(SIGXFSZ, SIG_IGN);
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGCHLD};
    int sig_fd = sig_pipe_install(sigs, 4);
    cfg.allow = &acl;
    if (cc)
        module_set_cc(cc);
    rc = server_run(&cfg, sig_fd);
    acl_free(&acl);
    return rc;
}
