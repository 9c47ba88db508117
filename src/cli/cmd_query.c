/* tvmrpc query: python -m tvm.exec.query_rpc_tracker, byte for byte. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "client/summary.h"
#include "client/tracker_client.h"
#include "cli/commands.h"
#include "cli/opt.h"

int cmd_query(int argc, char **argv)
{
    const char *host = NULL, *layout_name = NULL;
    int port = 0, timeout_s = 10, as_json = 0;
    const opt_spec_t specs[] = {
        {"host", OPT_STR, &host, "HOST", "tracker host (default $TVM_TRACKER_HOST or 127.0.0.1)", 0,
         0},
        {"port", OPT_INT, &port, "PORT", "tracker port (default $TVM_TRACKER_PORT or 9190)", 0,
         65535},
        {"layout", OPT_STR, &layout_name, "L",
         "v0.24 (default, left-aligned), v0.9 (right-aligned) or v0.8", 0, 0},
        {"json", OPT_FLAG, &as_json, NULL, "print the raw SUMMARY JSON instead of the table", 0, 0},
        {"timeout", OPT_INT, &timeout_s, "SEC", "give up after SEC seconds (default 10)", 1, 3600},
        {NULL, 0, NULL, NULL, NULL, 0, 0},
    };
    const char *summary = "Print the servers registered with a tracker and its queues.";
    char err[256];
    char *pos[1];
    int npos;
    int rc = opt_parse(specs, argc - 1, argv + 1, pos, 0, &npos, err, sizeof(err));
    if (rc == OPT_PARSE_HELP) {
        opt_usage(stdout, "query", NULL, summary, specs);
        return 0;
    }
    summary_layout_t layout = SUMMARY_LAYOUT_V24;
    if (rc == 0 && layout_name) {
        if (strcmp(layout_name, "v0.9") == 0)
            layout = SUMMARY_LAYOUT_V09;
        else if (strcmp(layout_name, "v0.8") == 0)
            layout = SUMMARY_LAYOUT_V08;
        else if (strcmp(layout_name, "v0.24") != 0) {
            snprintf(err, sizeof(err), "invalid value '%s' for --layout", layout_name);
            rc = -1;
        }
    }
    if (rc < 0) {
        fprintf(stderr, "tvmrpc query: %s\n", err);
        opt_usage(stderr, "query", NULL, summary, specs);
        return EXIT_USAGE;
    }
    /* Same fallbacks as TVM: empty host / port 0 mean "use the environment". */
    if (!host || !*host)
        host = getenv("TVM_TRACKER_HOST") ? getenv("TVM_TRACKER_HOST") : "127.0.0.1";
    if (!port) {
        const char *env = getenv("TVM_TRACKER_PORT");
        port = env ? atoi(env) : 9190;
    }
    int fd = tc_connect(host, port, 0, timeout_s * 1000, err, sizeof(err));
    if (fd < 0) {
        fprintf(stderr, "tvmrpc query: %s\n", err);
        return 1;
    }
    json_t *body = NULL;
    rc = tc_summary(fd, &body, timeout_s * 1000, err, sizeof(err));
    close(fd);
    if (rc < 0) {
        fprintf(stderr, "tvmrpc query: %s\n", err);
        return 1;
    }
    buf_t out;
    buf_init(&out, 0);
    rc = as_json ? json_dump(body, &out) : summary_format_query(host, port, body, layout, &out);
    if (as_json)
        buf_append_u8(&out, '\n');
    json_free(body);
    if (rc < 0) {
        fprintf(stderr, "tvmrpc query: malformed SUMMARY reply\n");
        buf_free(&out);
        return 1;
    }
    fwrite(buf_head(&out), 1, out.len, stdout);
    buf_free(&out);
    return 0;
}
