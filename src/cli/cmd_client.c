/* Client verbs for everyday farm work, built on include/tvmrpc/client.h:
 *   tvmrpc call  [conn] FUNC [ARG...]        call a global function, print the result
 *   tvmrpc run   [conn] LIB [FUNC] [ARG...]  upload a library, load it, call (and time) a function
 * conn is --tracker HOST:PORT --key KEY (a device from the tracker) or
 * --host HOST --port PORT [--key KEY] (a server or a proxy, directly). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/net.h"
#include "cli/commands.h"
#include "cli/opt.h"
#include "tvmrpc/client.h"

#define MAX_ARGS 32

typedef struct conn_opts {
    const char *tracker, *host, *key;
    int port, priority, timeout_s;
    double session_timeout;
} conn_opts_t;

#define CONN_SPECS(c)                                                                              \
    {"tracker", OPT_STR, &(c).tracker, "HOST:PORT", "get a device of --key from this tracker", 0, 0},   \
    {"host", OPT_STR, &(c).host, "HOST", "connect to this server or proxy directly", 0, 0},           \
    {"port", OPT_INT, &(c).port, "PORT", "port of --host (default 9090)", 1, 65535},                  \
    {"key", OPT_STR, &(c).key, "KEY", "device key (default \"\")", 0, 0},                             \
    {"priority", OPT_INT, &(c).priority, "N", "tracker request priority (default 1)", -1000000, 1000000}, \
    {"session-timeout", OPT_NUM, &(c).session_timeout, "SEC", "ask the server to end the session after SEC", 0, 0}, \
    {"timeout", OPT_INT, &(c).timeout_s, "SEC", "give up waiting for the tracker or server after SEC (default: wait)", 0, 86400}

static void conn_defaults(conn_opts_t *c)
{
    memset(c, 0, sizeof(*c));
    c->key = "";
    c->port = 9090;
    c->priority = 1;
}

static tvmrpc_sess_t *conn_open(const conn_opts_t *c, const char *verb)
{
    char err[512];
    tvmrpc_opts_t o;
    tvmrpc_opts_init(&o);
    o.session_timeout = c->session_timeout;
    if (c->timeout_s > 0)
        o.timeout_ms = c->timeout_s * 1000;
    tvmrpc_sess_t *s = NULL;
    if (c->tracker) {
        char host[256];
        int port;
        if (net_parse_hostport(c->tracker, host, sizeof(host), &port, err) < 0) {
            fprintf(stderr, "tvmrpc %s: --tracker: %s\n", verb, err);
            return NULL;
        }
        s = tvmrpc_request_opts(host, port, c->key, c->priority, 5, &o, err, sizeof(err));
    } else {
        s = tvmrpc_connect_opts(c->host ? c->host : "127.0.0.1", c->port, c->key, &o, err,
                                sizeof(err));
    }
    if (!s)
        fprintf(stderr, "tvmrpc %s: %s\n", verb, err);
    return s;
}

/* "42" int, "2.5" float, "s:text" string, "i:7", "f:1", else a string. */
static tvmrpc_value_t parse_arg(const char *a)
{
    char *end;
    if (!strncmp(a, "s:", 2))
        return tvmrpc_v_str(a + 2);
    if (!strncmp(a, "i:", 2))
        return tvmrpc_v_int(strtoll(a + 2, NULL, 0));
    if (!strncmp(a, "f:", 2))
        return tvmrpc_v_float(strtod(a + 2, NULL));
    errno = 0;
    long long i = strtoll(a, &end, 10);
    if (*a && !*end && !errno)
        return tvmrpc_v_int(i);
    double d = strtod(a, &end);
    if (*a && !*end)
        return tvmrpc_v_float(d);
    return tvmrpc_v_str(a);
}

static void print_value(const tvmrpc_value_t *v)
{
    buf_t b;
    buf_init(&b, 0);
    switch (v->kind) {
    case TVMRPC_NONE:
        buf_append_str(&b, "None");
        break;
    case TVMRPC_INT:
        buf_printf(&b, "%lld", (long long)v->u.i);
        break;
    case TVMRPC_BOOL:
        buf_append_str(&b, v->u.i ? "True" : "False");
        break;
    case TVMRPC_FLOAT:
        json_py_float(&b, v->u.f);
        break;
    case TVMRPC_STR:
        buf_append(&b, v->u.s.p, v->u.s.len);
        break;
    case TVMRPC_BYTES:
        buf_printf(&b, "<%zu bytes>", v->u.s.len);
        break;
    case TVMRPC_FUNC:
        buf_printf(&b, "<remote function 0x%llx>", (unsigned long long)v->u.h);
        break;
    case TVMRPC_MODULE:
        buf_printf(&b, "<remote module 0x%llx>", (unsigned long long)v->u.h);
        break;
    default:
        buf_printf(&b, "<remote value of kind %d>", (int)v->kind);
        break;
    }
    buf_append_u8(&b, '\n');
    fwrite(buf_head(&b), 1, b.len, stdout);
    buf_free(&b);
}

static int usage_error(const char *verb, const char *args, const char *summary,
                       const opt_spec_t *specs, const char *err)
{
    fprintf(stderr, "tvmrpc %s: %s\n", verb, err);
    opt_usage(stderr, verb, args, summary, specs);
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

int cmd_call(int argc, char **argv)
{
    conn_opts_t c;
    conn_defaults(&c);
    const opt_spec_t specs[] = {CONN_SPECS(c), {NULL, 0, NULL, NULL, NULL, 0, 0}};
    const char *summary = "Call a global function on a remote server and print the result.\n"
                          "ARGs: 42 (int), 2.5 (float), anything else a string; "
                          "force with i:, f:, s:.";
    char err[256];
    char *pos[MAX_ARGS + 1];
    int npos = 0;
    int rc = opt_parse(specs, argc - 1, argv + 1, pos, MAX_ARGS + 1, &npos, err, sizeof(err));
    if (rc == OPT_PARSE_HELP) {
        opt_usage(stdout, "call", "FUNC [ARG...]", summary, specs);
        return 0;
    }
    if (rc == 0 && npos < 1) {
        snprintf(err, sizeof(err), "missing FUNC");
        rc = -1;
    }
    if (rc < 0 || check_conn(&c, err, sizeof(err)) < 0)
        return usage_error("call", "FUNC [ARG...]", summary, specs, err);
    tvmrpc_sess_t *s = conn_open(&c, "call");
    if (!s)
        return 1;
    tvmrpc_value_t args[MAX_ARGS], ret;
    for (int i = 1; i < npos; i++)
        args[i - 1] = parse_arg(pos[i]);
    uint64_t f = 0;
    rc = tvmrpc_get_func(s, pos[0], &f);
    if (rc == 0)
        rc = tvmrpc_call(s, f, args, npos - 1, &ret);
    if (rc == 0)
        print_value(&ret);
    else
        fprintf(stderr, "tvmrpc call: %s: %s\n", pos[0], tvmrpc_last_error(s));
    tvmrpc_close(s);
    return rc == 0 ? 0 : 1;
}

/* ---- run ------------------------------------------------------------------- */

typedef struct run_ctx {
    tvmrpc_sess_t *s;
    tvmrpc_array_t arrays[MAX_ARGS];
    int narrays;
} run_ctx_t;

/* "float32:4x1024" -> a remote array filled by tvm.contrib.random.random_fill. */
static int make_array(run_ctx_t *r, const char *spec, tvmrpc_value_t *out, char *err,
                      size_t errlen)
{
    char dt[32];
    const char *colon = strchr(spec, ':');
    if (!colon || (size_t)(colon - spec) >= sizeof(dt)) {
        snprintf(err, errlen, "array spec '%s' is not DTYPE:DIMxDIM...", spec);
        return -1;
    }
    memcpy(dt, spec, (size_t)(colon - spec));
    dt[colon - spec] = '\0';
    tvmrpc_dtype_t dtype = {2, 32, 1};
    if (!strncmp(dt, "float", 5))
        dtype = (tvmrpc_dtype_t){2, (uint8_t)atoi(dt + 5), 1};
    else if (!strncmp(dt, "int", 3))
        dtype = (tvmrpc_dtype_t){0, (uint8_t)atoi(dt + 3), 1};
    else if (!strncmp(dt, "uint", 4))
        dtype = (tvmrpc_dtype_t){1, (uint8_t)atoi(dt + 4), 1};
    else {
        snprintf(err, errlen, "unknown dtype '%s'", dt);
        return -1;
    }
    int64_t shape[TVMRPC_MAX_NDIM];
    int ndim = 0;
    for (const char *p = colon + 1; *p && ndim < TVMRPC_MAX_NDIM; ndim++) {
        char *end;
        shape[ndim] = strtoll(p, &end, 10);
        if (end == p || shape[ndim] < 0) {
            snprintf(err, errlen, "bad shape in '%s'", spec);
            return -1;
        }
        p = *end == 'x' ? end + 1 : end;
        if (*end && *end != 'x') {
            snprintf(err, errlen, "bad shape in '%s'", spec);
            return -1;
        }
    }
    tvmrpc_array_t *a = &r->arrays[r->narrays];
    tvmrpc_device_t cpu = {1, 0};
    if (tvmrpc_array_alloc(r->s, cpu, ndim, shape, dtype, NULL, a) < 0) {
        snprintf(err, errlen, "%s", tvmrpc_last_error(r->s));
        return -1;
    }
    r->narrays++;
    uint64_t fill;
    tvmrpc_value_t av = tvmrpc_v_tensor(a);
    if (tvmrpc_get_func(r->s, "tvm.contrib.random.random_fill", &fill) == 0) {
        tvmrpc_call(r->s, fill, &av, 1, NULL);
        tvmrpc_free_handle(r->s, fill, TVMRPC_FUNC);
    }
    *out = av;
    return 0;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static int run_timed(run_ctx_t *r, uint64_t mod, const char *fname, const tvmrpc_value_t *args,
                     int nargs, int number, int repeat)
{
    uint64_t te, timer;
    tvmrpc_value_t te_args[12] = {
        tvmrpc_v_handle(TVMRPC_MODULE, mod), tvmrpc_v_str(fname), tvmrpc_v_int(1),
        tvmrpc_v_int(0),      tvmrpc_v_int(number), tvmrpc_v_int(repeat),
        tvmrpc_v_int(0),      tvmrpc_v_int(100),    tvmrpc_v_int(0),
        tvmrpc_v_int(1),      tvmrpc_v_int(0),      tvmrpc_v_str(""),
    };
    tvmrpc_value_t tf, res;
    if (tvmrpc_get_func(r->s, "runtime.RPCTimeEvaluator", &te) < 0 ||
        tvmrpc_call(r->s, te, te_args, 12, &tf) < 0 || tf.kind != TVMRPC_FUNC)
        return -1;
    timer = tf.u.h;
    if (tvmrpc_call(r->s, timer, args, nargs, &res) < 0 || res.kind != TVMRPC_BYTES)
        return -1;
    size_t n = res.u.s.len / sizeof(double);
    double best = 0, sum = 0;
    for (size_t i = 0; i < n; i++) {
        double t;
        memcpy(&t, res.u.s.p + i * sizeof(double), sizeof(t));
        sum += t;
        best = i == 0 || t < best ? t : best;
    }
    printf("%s: mean %.6f ms, best %.6f ms over %zu repeats of %d runs\n", fname,
           n ? sum / (double)n * 1e3 : 0.0, best * 1e3, n, number);
    tvmrpc_free_handle(r->s, timer, TVMRPC_FUNC);
    tvmrpc_free_handle(r->s, te, TVMRPC_FUNC);
    return 0;
}

int cmd_run(int argc, char **argv)
{
    conn_opts_t c;
    conn_defaults(&c);
    int number = 0, repeat = 3;
    const opt_spec_t specs[] = {
        CONN_SPECS(c),
        {"time", OPT_INT, &number, "N", "time the function with the server's time evaluator, N runs per repeat", 0, 1000000},
        {"repeat", OPT_INT, &repeat, "R", "repeats for --time (default 3)", 1, 1000},
        {NULL, 0, NULL, NULL, NULL, 0, 0},
    };
    const char *summary = "Upload a compiled library, load it on the server and call one of its "
                          "functions.\nFUNC defaults to the library's entry (__tvm_main__). ARGs: "
                          "DTYPE:SHAPE (e.g. float32:1024 or float32:4x4) for a random remote "
                          "array, else a number or string as for 'call'.";
    char err[512];
    char *pos[MAX_ARGS + 2];
    int npos = 0;
    int rc = opt_parse(specs, argc - 1, argv + 1, pos, MAX_ARGS + 2, &npos, err, sizeof(err));
    if (rc == OPT_PARSE_HELP) {
        opt_usage(stdout, "run", "LIB [FUNC] [ARG...]", summary, specs);
        return 0;
    }
    if (rc == 0 && npos < 1) {
        snprintf(err, sizeof(err), "missing LIB");
        rc = -1;
    }
    if (rc < 0 || check_conn(&c, err, sizeof(err)) < 0)
        return usage_error("run", "LIB [FUNC] [ARG...]", summary, specs, err);
    run_ctx_t r;
    memset(&r, 0, sizeof(r));
    if (!(r.s = conn_open(&c, "run")))
        return 1;
    const char *lib = pos[0], *fname = npos > 1 ? pos[1] : "__tvm_main__";
    tvmrpc_value_t args[MAX_ARGS], ret, modv;
    int nargs = 0;
    uint64_t load = 0, getf = 0;
    rc = -1;
    if (tvmrpc_upload_file(r.s, lib, base_name(lib)) < 0 ||
        tvmrpc_get_func(r.s, "tvm.rpc.server.load_module", &load) < 0) {
        snprintf(err, sizeof(err), "%s", tvmrpc_last_error(r.s));
        goto out;
    }
    tvmrpc_value_t name = tvmrpc_v_str(base_name(lib));
    if (tvmrpc_call(r.s, load, &name, 1, &modv) < 0 || modv.kind != TVMRPC_MODULE) {
        snprintf(err, sizeof(err), "load_module: %s", tvmrpc_last_error(r.s));
        goto out;
    }
    tvmrpc_value_t gf[3] = {tvmrpc_v_handle(TVMRPC_MODULE, modv.u.h), tvmrpc_v_str(fname),
                            tvmrpc_v_bool(1)};
    tvmrpc_value_t fv;
    if (tvmrpc_get_func(r.s, "tvm.rpc.server.ModuleGetFunction", &getf) < 0 ||
        tvmrpc_call(r.s, getf, gf, 3, &fv) < 0 || fv.kind != TVMRPC_FUNC) {
        snprintf(err, sizeof(err), "%s has no function %s", lib, fname);
        goto out;
    }
    for (int i = 2; i < npos; i++) {
        if (strchr(pos[i], ':') && strncmp(pos[i], "s:", 2) && strncmp(pos[i], "i:", 2) &&
            strncmp(pos[i], "f:", 2)) {
            if (make_array(&r, pos[i], &args[nargs++], err, sizeof(err)) < 0)
                goto out;
        } else {
            args[nargs++] = parse_arg(pos[i]);
        }
    }
    if (tvmrpc_call(r.s, fv.u.h, args, nargs, &ret) < 0) {
        snprintf(err, sizeof(err), "%s: %s", fname, tvmrpc_last_error(r.s));
        goto out;
    }
    print_value(&ret);
    if (number > 0 && run_timed(&r, modv.u.h, fname, args, nargs, number, repeat) < 0) {
        snprintf(err, sizeof(err), "time evaluator: %s", tvmrpc_last_error(r.s));
        goto out;
    }
    rc = 0;
out:
    if (rc < 0)
        fprintf(stderr, "tvmrpc run: %s\n", err);
    for (int i = 0; i < r.narrays; i++)
        tvmrpc_array_free(r.s, &r.arrays[i]);
    tvmrpc_close(r.s);
    return rc == 0 ? 0 : 1;
}
