/* The client verbs' common part: connection options, "+" chains, one
 * session for the whole chain. See chain.h. */
#include "cli/chain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/net.h"
#include "cli/commands.h"

#define MAX_STEPS 32
#define MAX_SPECS 16

typedef struct conn_opts {
    const char *tracker, *host, *key;
    int port, priority, timeout_s;
    double session_timeout;
} conn_opts_t;

static const verb_t *const verbs[] = {&verb_call, &verb_run, &verb_ls,
                                      &verb_put,  &verb_get, &verb_rm};

static const char chain_note[] =
    "Steps joined with '+' run in order in ONE session, sharing its workspace\n"
    "(the server gives each session a fresh one and deletes it at the end):\n"
    "  tvmrpc put --host H:P in.bin + run model.so main + get out.bin\n"
    "Connection options may appear in any step and apply to the whole session.";

static const verb_t *find_verb(const char *name)
{
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (strcmp(verbs[i]->name, name) == 0)
            return verbs[i];
    return NULL;
}

static void conn_defaults(conn_opts_t *c)
{
    memset(c, 0, sizeof(*c));
    c->key = "";
    c->port = 9090;
    c->priority = 1;
}

/* The connection options, then the verb's own, then the terminator. */
static void build_specs(conn_opts_t *c, step_t *st, opt_spec_t *out)
{
    const opt_spec_t conn[] = {
        {"tracker", OPT_STR, &c->tracker, "HOST:PORT", "get a device of --key from this tracker", 0,
         0},
        {"host", OPT_STR, &c->host, "HOST[:PORT]", "connect to this server or proxy directly", 0,
         0},
        {"port", OPT_INT, &c->port, "PORT", "port of --host (default 9090)", 1, 65535},
        {"key", OPT_STR, &c->key, "KEY", "device key (default \"\")", 0, 0},
        {"priority", OPT_INT, &c->priority, "N", "tracker request priority (default 1)", -1000000,
         1000000},
        {"session-timeout", OPT_NUM, &c->session_timeout, "SEC",
         "ask the server to end the session after SEC", 0, 0},
        {"timeout", OPT_INT, &c->timeout_s, "SEC",
         "give up waiting for the tracker or server after SEC (default: wait)", 0, 86400},
    };
    int n = (int)(sizeof(conn) / sizeof(conn[0]));
    memcpy(out, conn, sizeof(conn));
    n += st->verb->specs ? st->verb->specs(st, out + n) : 0;
    memset(&out[n], 0, sizeof(out[n]));
}

static void print_usage(FILE *fp, const verb_t *v, const opt_spec_t *specs)
{
    char summary[2048];
    snprintf(summary, sizeof(summary), "%s\n\n%s", v->summary, chain_note);
    opt_usage(fp, v->name, v->args, summary, specs);
}

static int usage_error(const verb_t *v, const opt_spec_t *specs, const char *err)
{
    fprintf(stderr, "tvmrpc %s: %s\n", v->name, err);
    print_usage(stderr, v, specs);
    return EXIT_USAGE;
}

static int check_conn(const conn_opts_t *c, char *err, size_t errlen)
{
    if (c->tracker && c->host) {
        snprintf(err, errlen, "give either --tracker or --host, not both");
        return -1;
    }
    if (c->tracker && !*c->key) {
        snprintf(err, errlen, "--tracker needs --key");
        return -1;
    }
    return 0;
}

/* --host HOST or --host HOST:PORT (a single colon: not an IPv6 literal). */
static int conn_target(const conn_opts_t *c, char *host, size_t hostlen, int *port, char *err)
{
    const char *h = c->host ? c->host : "127.0.0.1";
    const char *colon = strchr(h, ':');
    if (colon && !strchr(colon + 1, ':'))
        return net_parse_hostport(h, host, hostlen, port, err);
    snprintf(host, hostlen, "%s", h);
    *port = c->port;
    return 0;
}

static tvmrpc_sess_t *conn_open(const conn_opts_t *c, const char *verb)
{
    char err[1024], host[256];
    int port;
    tvmrpc_opts_t o;
    tvmrpc_opts_init(&o);
    o.session_timeout = c->session_timeout;
    if (c->timeout_s > 0)
        o.timeout_ms = c->timeout_s * 1000;
    tvmrpc_sess_t *s = NULL;
    int rc = c->tracker ? net_parse_hostport(c->tracker, host, sizeof(host), &port, err)
                        : conn_target(c, host, sizeof(host), &port, err);
    if (rc < 0) {
        fprintf(stderr, "tvmrpc %s: %s: %s\n", verb, c->tracker ? "--tracker" : "--host", err);
        return NULL;
    }
    if (c->tracker)
        s = tvmrpc_request_opts(host, port, c->key, c->priority, 5, &o, err, sizeof(err));
    else
        s = tvmrpc_connect_opts(host, port, c->key, &o, err, sizeof(err));
    if (!s)
        fprintf(stderr, "tvmrpc %s: %s\n", verb, err);
    return s;
}

/* Parse one step: argv[0] is its verb name. 0, 1 (--help shown) or an exit status. */
static int parse_step(conn_opts_t *c, step_t *st, int argc, char **argv)
{
    opt_spec_t specs[MAX_SPECS];
    char err[512];
    st->verb = find_verb(argv[0]);
    if (!st->verb) {
        fprintf(stderr,
                "tvmrpc: '%s' cannot be a step after '+' (steps: call, run, ls, put, "
                "get, rm)\n",
                argv[0]);
        return EXIT_USAGE;
    }
    st->repeat = 3;
    build_specs(c, st, specs);
    int rc =
        opt_parse(specs, argc - 1, argv + 1, st->pos, CHAIN_MAX_POS, &st->npos, err, sizeof(err));
    if (rc == OPT_PARSE_HELP) {
        print_usage(stdout, st->verb, specs);
        return 1;
    }
    if (rc < 0)
        return usage_error(st->verb, specs, err);
    return 0;
}

/* Split argv at "+" into steps. Returns the step count, or -(exit status + 1). */
static int parse_chain(conn_opts_t *c, step_t *steps, int argc, char **argv)
{
    int n = 0;
    for (int start = 0; start < argc;) {
        int end = start;
        while (end < argc && strcmp(argv[end], "+") != 0)
            end++;
        if (end == start || n == MAX_STEPS) {
            fprintf(stderr, "tvmrpc %s: %s\n", argv[0],
                    n == MAX_STEPS ? "too many steps" : "'+' must be followed by a step");
            return -(EXIT_USAGE + 1);
        }
        steps[n].index = n;
        int rc = parse_step(c, &steps[n], end - start, argv + start);
        if (rc == 1)
            return -1; /* --help: exit 0 */
        if (rc)
            return -(rc + 1);
        n++;
        start = end + 1;
        if (end == argc - 1) { /* a trailing '+' */
            fprintf(stderr, "tvmrpc %s: '+' must be followed by a step\n", argv[0]);
            return -(EXIT_USAGE + 1);
        }
    }
    return n;
}

/* Every step's local checks, before a device is taken from the farm. */
static int check_steps(conn_opts_t *c, step_t *steps, int n)
{
    char err[1024];
    for (int i = 0; i < n; i++) {
        int rc = steps[i].verb->check(&steps[i], err, sizeof(err));
        if (rc == CHECK_LOCAL) {
            fprintf(stderr, "tvmrpc %s: %s\n", steps[i].verb->name, err);
            return 1;
        }
        if (rc != CHECK_OK || (i == 0 && check_conn(c, err, sizeof(err)) < 0)) {
            opt_spec_t specs[MAX_SPECS];
            build_specs(c, &steps[i], specs);
            return usage_error(steps[i].verb, specs, err);
        }
    }
    return 0;
}

int chain_main(int argc, char **argv)
{
    static step_t steps[MAX_STEPS];
    conn_opts_t c;
    conn_defaults(&c);
    memset(steps, 0, sizeof(steps));
    int n = parse_chain(&c, steps, argc, argv);
    if (n < 0)
        return -n - 1;
    int rc = check_steps(&c, steps, n);
    if (rc)
        return rc;
    tvmrpc_sess_t *s = conn_open(&c, argv[0]);
    if (!s)
        return 1;
    char err[2048];
    for (int i = 0; i < n && rc == 0; i++) {
        if (steps[i].verb->exec(s, &steps[i], err, sizeof(err)) < 0) {
            fprintf(stderr, "tvmrpc %s: %s\n", steps[i].verb->name, err);
            rc = 1;
        }
    }
    tvmrpc_close(s);
    return rc;
}
