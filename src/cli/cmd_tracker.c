/* tvmrpc tracker: flags of python -m tvm.exec.rpc_tracker, plus the stop key
 * and limits a long-running farm tracker needs. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/sig.h"
#include "cli/commands.h"
#include "cli/opt.h"
#include "tracker/tracker.h"

#define STOP_KEY_MAX 1024

/* Read the first line of a stop-key file into key. */
static int read_stop_key(const char *path, char *key, size_t keylen)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    int ok = fgets(key, (int)keylen, fp) != NULL;
    fclose(fp);
    if (!ok)
        return -1;
    key[strcspn(key, "\r\n")] = '\0';
    return key[0] ? 0 : -1;
}

int cmd_tracker(int argc, char **argv)
{
    tracker_config_t cfg;
    tracker_config_defaults(&cfg);
    int silent = 0, no_fork = 0, handshake_s = cfg.handshake_timeout_ms / 1000, max_conns = 65536,
        max_per_peer = (int)cfg.max_conns_per_peer;
    const char *stop_key = NULL, *stop_key_file = NULL, *level = NULL, *allow = NULL;
    const opt_spec_t specs[] = {
        {"host", OPT_STR, &cfg.host, "HOST", "address to bind (default 0.0.0.0)", 0, 0},
        {"port", OPT_INT, &cfg.port, "PORT", "first port to try (default 9190)", 0, 65535},
        {"port-end", OPT_INT, &cfg.port_end, "PORT",
         "end of the port search, exclusive (default 9199)", 0, 65536},
        {"silent", OPT_FLAG, &silent, NULL, "log only warnings and errors", 0, 0},
        {"no-fork", OPT_FLAG, &no_fork, NULL, "accepted for compatibility; the tracker never forks",
         0, 0},
        {"stop-key", OPT_STR, &stop_key, "KEY",
         "honour STOP requests carrying KEY (default: refuse every STOP)", 0, 0},
        {"stop-key-file", OPT_STR, &stop_key_file, "PATH",
         "read the stop key from the first line of PATH", 0, 0},
        {"handshake-timeout", OPT_INT, &handshake_s, "SEC",
         "drop peers that send no magic within SEC (default 10)", 1, 86400},
        {"allow", OPT_STR, &allow, "CIDR,...",
         "accept peers only from these networks (default: everyone)", 0, 0},
        {"max-conns", OPT_INT, &max_conns, "N", "refuse connections beyond N (default 65536)", 1,
         1000000},
        {"max-conns-per-peer", OPT_INT, &max_per_peer, "N",
         "refuse connections beyond N from one address (default 4096, 0 = no limit)", 0, 1000000},
        {"log-level", OPT_STR, &level, "LEVEL", "debug, info, warn or error (default info)", 0, 0},
        {NULL, 0, NULL, NULL, NULL, 0, 0},
    };
    char err[256];
    char *pos[1];
    int npos;
    int rc = opt_parse(specs, argc - 1, argv + 1, pos, 0, &npos, err, sizeof(err));
    const char *summary = "Run an RPC tracker: servers register by key, clients request them; "
                          "one queue per key.";
    if (rc == OPT_PARSE_HELP) {
        opt_usage(stdout, "tracker", NULL, summary, specs);
        return 0;
    }
    log_level_t lvl = LOG_INFO;
    if (rc == 0 && level && log_level_parse(level, &lvl) < 0) {
        snprintf(err, sizeof(err), "invalid value '%s' for --log-level", level);
        rc = -1;
    }
    char keybuf[STOP_KEY_MAX];
    if (rc == 0 && stop_key_file) {
        if (read_stop_key(stop_key_file, keybuf, sizeof(keybuf)) < 0) {
            snprintf(err, sizeof(err), "cannot read a stop key from --stop-key-file %s",
                     stop_key_file);
            rc = -1;
        } else {
            stop_key = keybuf;
        }
    }
    acl_t acl = {0};
    if (rc == 0 && allow && acl_parse(&acl, allow, err, sizeof(err)) < 0)
        rc = -1;
    if (rc < 0) {
        fprintf(stderr, "tvmrpc tracker: %s\n", err);
        opt_usage(stderr, "tracker", NULL, summary, specs);
        return EXIT_USAGE;
    }
    log_init("tracker", lvl);
    log_set_silent(silent);
    cfg.stop_key = stop_key;
    cfg.handshake_timeout_ms = handshake_s * 1000;
    cfg.max_conns = (size_t)max_conns;
    cfg.max_conns_per_peer = (size_t)max_per_peer;
    cfg.allow = &acl;

    tracker_t *t = tracker_create(&cfg, err, sizeof(err));
    if (!t) {
        log_error("cannot start tracker: %s", err);
        acl_free(&acl);
        return 1;
    }
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    int sig_fd = sig_pipe_install(sigs, 3);
    rc = tracker_run(t, sig_fd);
    tracker_free(t);
    acl_free(&acl);
    log_info("tracker stopped");
    return rc < 0 ? 1 : 0;
}
