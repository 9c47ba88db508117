/* run_model: run a compiled model on a remote device through the graph
 * executor, from C, with the public client library only
 * (include/tvmrpc/client.h, libtvmrpc_client.a). It is the C version of
 * what TVM <= 0.19 users write in Python:
 *
 *   remote = rpc.connect_tracker(host, port).request(key)
 *   remote.upload("net.so"); lib = remote.load_module("net.so")
 *   m = graph_executor.GraphModule(lib["default"](remote.cpu(0)))
 *   m.set_input("data", x); m.run(); y = m.get_output(0).numpy()
 *   print(m.benchmark(remote.cpu(0), number=100, repeat=3))
 *
 * The model is the test fixture network (tests/fixtures/net_model.h:
 * conv2d 3x3 + bias + relu, reshape, dense to 10). Its weights are a
 * deterministic hash, so this program can also compute the network in
 * plain C and check what came back from the device.
 *
 *   run_model --tracker 127.0.0.1:9190 --key local build/tests/fixtures/net.so
 *   run_model --host 10.0.0.7 --port 9090 net.so --number 1000
 *
 * Exit status: 0 ran and matched the reference, 1 remote or network
 * failure, 2 usage, 3 ran but the output differs from the reference. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net_reference.h"
#include "tvmrpc/client.h"

/* Relative tolerance: the device may sum in another order (threads). */
#define TOL 1e-4f
#define MAX_REPEAT 100

typedef struct args {
    const char *tracker_host, *host, *key, *lib;
    int tracker_port, port, number, repeat, timeout_s;
} args_t;

/* ---- small helpers over the client API ------------------------------------------- */

/* Print the session's error for a failed step; returns -1 for chaining. */
static int fail(tvmrpc_sess_t *s, int rc, const char *what)
{
    fprintf(stderr, "run_model: %s: %s: %s\n", what, tvmrpc_strerror(rc), tvmrpc_last_error(s));
    return -1;
}

/* Call a global function by name (handle fetched and freed around it). */
static int call_global(tvmrpc_sess_t *s, const char *name, const tvmrpc_value_t *a, int n,
                       tvmrpc_value_t *ret)
{
    uint64_t f;
    int rc = tvmrpc_get_func(s, name, &f);
    if (rc < 0)
        return fail(s, rc, name);
    rc = tvmrpc_call(s, f, a, n, ret);
    if (rc < 0)
        fail(s, rc, name);
    tvmrpc_free_handle(s, f, TVMRPC_FUNC);
    return rc < 0 ? -1 : 0;
}

/* mod[name], imports included (Python's Module.__getitem__). 0 if absent. */
static uint64_t module_func(tvmrpc_sess_t *s, uint64_t mod, const char *name)
{
    tvmrpc_value_t a[3] = {tvmrpc_v_handle(TVMRPC_MODULE, mod), tvmrpc_v_str(name),
                           tvmrpc_v_bool(1)},
                   f;
    if (call_global(s, "tvm.rpc.server.ModuleGetFunction", a, 3, &f) < 0)
        return 0;
    if (f.kind != TVMRPC_FUNC)
        fprintf(stderr, "run_model: the module has no function %s\n", name);
    return f.kind == TVMRPC_FUNC ? f.u.h : 0;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* ---- the graph executor flow ------------------------------------------------------ */

/* remote.upload(lib); remote.load_module(name): the GraphExecutorFactory. */
static uint64_t load_factory(tvmrpc_sess_t *s, const char *lib)
{
    int rc = tvmrpc_upload_file(s, lib, base_name(lib));
    if (rc < 0) {
        fail(s, rc, "upload");
        return 0;
    }
    tvmrpc_value_t name = tvmrpc_v_str(base_name(lib)), m;
    if (call_global(s, "tvm.rpc.server.load_module", &name, 1, &m) < 0)
        return 0;
    return m.kind == TVMRPC_MODULE ? m.u.h : 0;
}

/* lib["default"](cpu(0)): a new GraphExecutor with the weights loaded. */
static uint64_t create_executor(tvmrpc_sess_t *s, uint64_t factory)
{
    uint64_t dflt = module_func(s, factory, "default");
    if (!dflt)
        return 0;
    tvmrpc_value_t dev = tvmrpc_v_device(1, 0), m = tvmrpc_v_none();
    int rc = tvmrpc_call(s, dflt, &dev, 1, &m);
    if (rc < 0)
        fail(s, rc, "default(cpu(0))");
    tvmrpc_free_handle(s, dflt, TVMRPC_FUNC);
    return rc == 0 && m.kind == TVMRPC_MODULE ? m.u.h : 0;
}

/* set_input(name, array): the input goes to a remote array first. */
static int set_input(tvmrpc_sess_t *s, uint64_t exec, const char *name, const float *x, int ndim,
                     const int64_t *shape)
{
    tvmrpc_array_t a;
    tvmrpc_device_t cpu = {1, 0};
    tvmrpc_dtype_t f32 = {2, 32, 1};
    int rc = tvmrpc_array_alloc(s, cpu, ndim, shape, f32, NULL, &a);
    if (rc < 0)
        return fail(s, rc, "allocate the input");
    rc = tvmrpc_array_copy_from_host(s, &a, x, (size_t)tvmrpc_array_nbytes(&a));
    uint64_t f = rc == 0 ? module_func(s, exec, "set_input") : 0;
    if (f) {
        tvmrpc_value_t v[2] = {tvmrpc_v_str(name), tvmrpc_v_tensor(&a)};
        if ((rc = tvmrpc_call(s, f, v, 2, NULL)) < 0)
            fail(s, rc, "set_input");
        tvmrpc_free_handle(s, f, TVMRPC_FUNC);
    } else if (rc < 0) {
        fail(s, rc, "copy the input");
    }
    tvmrpc_array_free(s, &a);
    return f && rc == 0 ? 0 : -1;
}

static int run(tvmrpc_sess_t *s, uint64_t exec)
{
    uint64_t f = module_func(s, exec, "run");
    if (!f)
        return -1;
    int rc = tvmrpc_call(s, f, NULL, 0, NULL);
    tvmrpc_free_handle(s, f, TVMRPC_FUNC);
    return rc < 0 ? fail(s, rc, "run") : 0;
}

/* get_output(i).numpy(): the live output array, copied to y. */
static int get_output(tvmrpc_sess_t *s, uint64_t exec, int i, float *y, size_t n)
{
    uint64_t f = module_func(s, exec, "get_output");
    if (!f)
        return -1;
    tvmrpc_value_t idx = tvmrpc_v_int(i), r = tvmrpc_v_none();
    int rc = tvmrpc_call(s, f, &idx, 1, &r);
    tvmrpc_free_handle(s, f, TVMRPC_FUNC);
    if (rc < 0)
        return fail(s, rc, "get_output");
    if (r.kind != TVMRPC_TENSOR || (size_t)tvmrpc_array_nbytes(r.u.arr) != n * sizeof(float)) {
        fprintf(stderr, "run_model: get_output(%d) is not a float32[%zu] array\n", i, n);
        return -1;
    }
    tvmrpc_array_t out = *r.u.arr; /* ours to free: the session reuses r */
    rc = tvmrpc_array_copy_to_host(s, &out, y, n * sizeof(float));
    if (rc < 0)
        fail(s, rc, "copy the output");
    tvmrpc_array_free(s, &out);
    return rc < 0 ? -1 : 0;
}

/* runtime.RPCTimeEvaluator(exec, "run", cpu(0), number, repeat, ...)():
 * the server times `number` runs per repeat; seconds per run, one per
 * repeat, come back as doubles. */
static int time_run(tvmrpc_sess_t *s, uint64_t exec, int number, int repeat, double *t)
{
    tvmrpc_value_t a[12] = {
        tvmrpc_v_handle(TVMRPC_MODULE, exec),
        tvmrpc_v_str("run"),
        tvmrpc_v_int(1), /* device type: cpu */
        tvmrpc_v_int(0), /* device id */
        tvmrpc_v_int(number),
        tvmrpc_v_int(repeat),
        tvmrpc_v_int(0),   /* min_repeat_ms */
        tvmrpc_v_int(100), /* limit_zero_time_iterations */
        tvmrpc_v_int(0),   /* cooldown_interval_ms */
        tvmrpc_v_int(1),   /* repeats_to_cooldown */
        tvmrpc_v_int(0),   /* cache_flush_bytes */
        tvmrpc_v_str(""),  /* f_preproc */
    };
    tvmrpc_value_t te, r;
    if (call_global(s, "runtime.RPCTimeEvaluator", a, 12, &te) < 0 || te.kind != TVMRPC_FUNC)
        return -1;
    int rc = tvmrpc_call(s, te.u.h, NULL, 0, &r);
    if (rc == 0 && r.kind == TVMRPC_BYTES && r.u.s.len == (size_t)repeat * sizeof(double))
        memcpy(t, r.u.s.p, r.u.s.len);
    else if (rc == 0)
        rc = TVMRPC_ERR_PROTOCOL;
    tvmrpc_free_handle(s, te.u.h, TVMRPC_FUNC);
    return rc < 0 ? fail(s, rc, "time evaluator") : 0;
}

/* ---- the plain C reference: net_reference() of net_reference.h ------------------ */

/* Largest |got - want| relative to 1 + |want|. */
static float max_rel_diff(const float *got, const float *want, int n)
{
    float worst = 0;
    for (int i = 0; i < n; i++) {
        float d = fabsf(got[i] - want[i]) / (1 + fabsf(want[i]));
        worst = d > worst ? d : worst;
    }
    return worst;
}

/* ---- command line ----------------------------------------------------------------- */

static int usage(FILE *fp, const char *why)
{
    if (why)
        fprintf(fp, "run_model: %s\n", why);
    fprintf(fp, "usage: run_model (--tracker HOST:PORT --key KEY | --host HOST --port PORT "
                "[--key KEY])\n"
                "                 [--number N] [--repeat R] [--timeout SEC] LIB.so\n");
    return 2;
}

static int parse_hostport(const char *s, const char **host, int *port)
{
    static char buf[256];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof(buf) || atoi(colon + 1) <= 0)
        return -1;
    snprintf(buf, sizeof(buf), "%.*s", (int)(colon - s), s);
    *host = buf;
    *port = atoi(colon + 1);
    return 0;
}

/* One "--name value" pair; -1 if the name is unknown or the value bad. */
static int set_option(args_t *a, const char *o, const char *v)
{
    if (!strcmp(o, "--tracker"))
        return parse_hostport(v, &a->tracker_host, &a->tracker_port);
    if (!strcmp(o, "--host"))
        a->host = v;
    else if (!strcmp(o, "--key"))
        a->key = v;
    else if (!strcmp(o, "--port"))
        return (a->port = atoi(v)) > 0 ? 0 : -1;
    else if (!strcmp(o, "--number"))
        return (a->number = atoi(v)) > 0 ? 0 : -1;
    else if (!strcmp(o, "--repeat"))
        return (a->repeat = atoi(v)) > 0 && a->repeat <= MAX_REPEAT ? 0 : -1;
    else if (!strcmp(o, "--timeout"))
        return (a->timeout_s = atoi(v)) >= 0 ? 0 : -1;
    else
        return -1;
    return 0;
}

/* 0 to run, 1 after --help, 2 on a usage error (printed). */
static int parse_args(int argc, char **argv, args_t *a)
{
    *a = (args_t){.key = "", .port = 9090, .number = 100, .repeat = 3, .timeout_s = 60};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout, NULL);
            return 1;
        }
        if (o[0] != '-') {
            a->lib = o;
            continue;
        }
        if (i + 1 >= argc || set_option(a, o, argv[i + 1]) < 0) {
            fprintf(stderr, "run_model: bad option or value: %s %s\n", o,
                    i + 1 < argc ? argv[i + 1] : "(missing)");
            return usage(stderr, NULL);
        }
        i++;
    }
    return a->lib ? 0 : usage(stderr, "missing LIB");
}

static tvmrpc_sess_t *open_session(const args_t *a)
{
    char err[512];
    tvmrpc_opts_t o;
    tvmrpc_opts_init(&o);
    o.timeout_ms = a->timeout_s > 0 ? a->timeout_s * 1000 : -1; /* never hang a script */
    tvmrpc_sess_t *s = a->tracker_host ? tvmrpc_request_opts(a->tracker_host, a->tracker_port,
                                                             a->key, 1, 3, &o, err, sizeof(err))
                                       : tvmrpc_connect_opts(a->host ? a->host : "127.0.0.1",
                                                             a->port, a->key, &o, err, sizeof(err));
    if (!s)
        fprintf(stderr, "run_model: %s\n", err);
    return s;
}

/* ---- main ------------------------------------------------------------------------- */

static void print_summary(const args_t *a, tvmrpc_sess_t *s, const float *y, float diff,
                          const double *t)
{
    double best = t[0], sum = 0;
    for (int i = 0; i < a->repeat; i++) {
        sum += t[i];
        best = t[i] < best ? t[i] : best;
    }
    printf("model:     %s (conv2d 3x3 x%d + relu -> dense %d), input data float32[1,%d,%d,%d]\n",
           base_name(a->lib), NET_K, NET_OUT, NET_C, NET_H, NET_W);
    if (a->tracker_host)
        printf("device:    cpu(0) of %s, granted by tracker %s:%d for key '%s'\n",
               tvmrpc_server_key(s), a->tracker_host, a->tracker_port, a->key);
    else
        printf("device:    cpu(0) of %s at %s:%d\n", tvmrpc_server_key(s),
               a->host ? a->host : "127.0.0.1", a->port);
    printf("output:    float32[1,%d] =", NET_OUT);
    for (int i = 0; i < NET_OUT; i++)
        printf(" %.5f", y[i]);
    printf("\n");
    printf("check:     %s (max relative difference %.2g, tolerance %.0e)\n",
           diff <= TOL ? "matches reference" : "DIFFERS FROM REFERENCE", diff, TOL);
    printf("timing:    run: mean %.4f ms, best %.4f ms (time_evaluator on the device: %d "
           "repeats x %d runs)\n",
           sum / a->repeat * 1e3, best * 1e3, a->repeat, a->number);
}

/* Everything a session does, so main can close it on any failure. */
static int run_model(const args_t *a, tvmrpc_sess_t *s)
{
    static const int64_t x_shape[4] = {1, NET_C, NET_H, NET_W};
    float x[NET_IN_ELEMS], y[NET_OUT], want[NET_OUT];
    double t[MAX_REPEAT];
    uint64_t factory = load_factory(s, a->lib), exec = 0;
    int rc = -1;
    if (!factory || !(exec = create_executor(s, factory)))
        goto out;
    net_fill(x, NET_IN_ELEMS, NET_SEED_X);
    if (set_input(s, exec, "data", x, 4, x_shape) < 0 || run(s, exec) < 0 ||
        get_output(s, exec, 0, y, NET_OUT) < 0 || time_run(s, exec, a->number, a->repeat, t) < 0)
        goto out;
    net_reference(x, want);
    float diff = max_rel_diff(y, want, NET_OUT);
    print_summary(a, s, y, diff, t);
    rc = diff <= TOL ? 0 : 3;
out:
    if (exec)
        tvmrpc_free_handle(s, exec, TVMRPC_MODULE);
    if (factory)
        tvmrpc_free_handle(s, factory, TVMRPC_MODULE);
    return rc < 0 ? 1 : rc;
}

int main(int argc, char **argv)
{
    args_t a;
    int rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    tvmrpc_sess_t *s = open_session(&a);
    if (!s)
        return 1;
    rc = run_model(&a, s);
    tvmrpc_close(s);
    return rc;
}
