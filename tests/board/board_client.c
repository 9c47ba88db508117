/* board_client: the host side of scripts/e2e-board.sh, written only against
 * the public client API (include/tvmrpc/client.h) and linked with the
 * installed-style libtvmrpc_client.a, as a user's program would be.
 *
 *   board_client CONN --libs DIR [--arch A] [--link-obj] [--number N]
 *       request the board, upload DIR/vadd.so and DIR/board.so (built for
 *       the board), load them, run vadd / vexp_par on arrays we fill, copy
 *       the results back and compare them with values computed here, time
 *       vadd with the server's time evaluator, check board_arch == A; with
 *       --link-obj also upload DIR/vadd.o and let the server link it.
 *   board_client CONN --hold SEC
 *       open a session, print "holding", then call testing.nop every 50 ms
 *       for at most SEC seconds; print how the session ended (used to see
 *       what a client notices when the board is stopped under it).
 * CONN is --tracker HOST:PORT --key KEY, or --host HOST --port PORT --key KEY
 * (a proxy or the server itself). Exit status 0 = every check passed. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tvmrpc/client.h"

#define N_VADD 1000 /* >= 256 floats: vadd goes through TVMBackendAllocWorkspace */
#define N_EXP 4099  /* not a multiple of any task count: uneven chunks */

static tvmrpc_sess_t *sess;
static const char *libs, *arch;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "board_client: FAILED: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (sess)
        fprintf(stderr, " [%s]", tvmrpc_last_error(sess));
    fputc('\n', stderr);
    exit(1);
}

static uint64_t global(const char *name)
{
    uint64_t f;
    if (tvmrpc_get_func(sess, name, &f) < 0)
        die("no global function %s on the board", name);
    return f;
}

/* Upload DIR/NAME, load it, return the module handle. */
static uint64_t load(const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", libs, name);
    double t0 = now_s();
    if (tvmrpc_upload_file(sess, path, name) < 0)
        die("upload %s", path);
    double t1 = now_s();
    uint64_t lm = global("tvm.rpc.server.load_module");
    tvmrpc_value_t arg = tvmrpc_v_str(name), mod;
    if (tvmrpc_call(sess, lm, &arg, 1, &mod) < 0 || mod.kind != TVMRPC_MODULE)
        die("load_module(%s)", name);
    tvmrpc_free_handle(sess, lm, TVMRPC_FUNC);
    printf("  %-9s upload %.1f ms, load %.1f ms\n", name, (t1 - t0) * 1e3, (now_s() - t1) * 1e3);
    return mod.u.h;
}

static uint64_t func(uint64_t mod, const char *name)
{
    uint64_t gf = global("tvm.rpc.server.ModuleGetFunction");
    tvmrpc_value_t a[3] = {tvmrpc_v_handle(TVMRPC_MODULE, mod), tvmrpc_v_str(name),
                           tvmrpc_v_bool(1)},
                   f;
    if (tvmrpc_call(sess, gf, a, 3, &f) < 0 || f.kind != TVMRPC_FUNC)
        die("module has no function %s", name);
    tvmrpc_free_handle(sess, gf, TVMRPC_FUNC);
    return f.u.h;
}

static tvmrpc_array_t vec(int64_t n, const float *init)
{
    tvmrpc_array_t a;
    tvmrpc_device_t cpu = {1, 0};
    tvmrpc_dtype_t f32 = {2, 32, 1};
    if (tvmrpc_array_alloc(sess, cpu, 1, &n, f32, NULL, &a) < 0)
        die("alloc float32[%lld]", (long long)n);
    if (init && tvmrpc_array_copy_from_host(sess, &a, init, (size_t)n * 4) < 0)
        die("copy to the board");
    return a;
}

static void fetch(tvmrpc_array_t *a, float *out, int64_t n)
{
    if (tvmrpc_array_copy_to_host(sess, a, out, (size_t)n * 4) < 0)
        die("copy from the board");
}

static void call(uint64_t f, const char *what, tvmrpc_value_t *args, int n, tvmrpc_value_t *ret)
{
    if (tvmrpc_call(sess, f, args, n, ret) < 0)
        die("%s", what);
}

/* vadd on the board, checked element by element (exact: every input and
 * sum is representable in float32), then timed by the time evaluator. */
static void check_vadd(uint64_t mod, int number, tvmrpc_array_t *arrs)
{
    static float a[N_VADD], b[N_VADD], c[N_VADD];
    for (int i = 0; i < N_VADD; i++) {
        a[i] = (float)i * 0.5f;
        b[i] = 1000.0f - (float)i;
    }
    arrs[0] = vec(N_VADD, a);
    arrs[1] = vec(N_VADD, b);
    arrs[2] = vec(N_VADD, NULL);
    tvmrpc_value_t args[3] = {tvmrpc_v_tensor(&arrs[0]), tvmrpc_v_tensor(&arrs[1]),
                              tvmrpc_v_tensor(&arrs[2])};
    uint64_t f = func(mod, "vadd");
    double t0 = now_s();
    call(f, "vadd", args, 3, NULL);
    double t_call = now_s() - t0;
    fetch(&arrs[2], c, N_VADD);
    for (int i = 0; i < N_VADD; i++)
        if (c[i] != a[i] + b[i])
            die("vadd: c[%d] = %g, expected %g", i, c[i], a[i] + b[i]);
    printf("  vadd      float32[%d]: all elements match (one remote call %.2f ms)\n", N_VADD,
           t_call * 1e3);

    /* mod, name, dev_type, dev_id, number, repeat, min_repeat_ms,
     * limit_zero_time_iterations, cooldown_ms, repeats_to_cooldown,
     * cache_flush_bytes, f_preproc: what TVM's time_evaluator sends. */
    enum { REPEAT = 3 };
    tvmrpc_value_t te_args[12] = {
        tvmrpc_v_handle(TVMRPC_MODULE, mod),
        tvmrpc_v_str("vadd"),
        tvmrpc_v_int(1),
        tvmrpc_v_int(0),
        tvmrpc_v_int(number),
        tvmrpc_v_int(REPEAT),
        tvmrpc_v_int(0),
        tvmrpc_v_int(100),
        tvmrpc_v_int(0),
        tvmrpc_v_int(1),
        tvmrpc_v_int(0),
        tvmrpc_v_str(""),
    };
    uint64_t te = global("runtime.RPCTimeEvaluator");
    tvmrpc_value_t timer, res;
    call(te, "runtime.RPCTimeEvaluator", te_args, 12, &timer);
    if (timer.kind != TVMRPC_FUNC)
        die("time evaluator returned kind %d", (int)timer.kind);
    call(timer.u.h, "timed vadd", args, 3, &res);
    if (res.kind != TVMRPC_BYTES || res.u.s.len != REPEAT * sizeof(double))
        die("time evaluator answered kind %d, %zu bytes", (int)res.kind, res.u.s.len);
    double sum = 0, best = 1e9;
    for (int i = 0; i < REPEAT; i++) {
        double t;
        memcpy(&t, res.u.s.p + i * sizeof(double), sizeof(t));
        if (!(t > 0 && t < 1.0))
            die("time evaluator: repeat %d took %g s per call", i, t);
        sum += t;
        best = t < best ? t : best;
    }
    printf("  vadd      time evaluator: mean %.3f us, best %.3f us per call (%d x %d runs)\n",
           sum / REPEAT * 1e6, best * 1e6, REPEAT, number);
    tvmrpc_free_handle(sess, timer.u.h, TVMRPC_FUNC);
    tvmrpc_free_handle(sess, te, TVMRPC_FUNC);
    tvmrpc_free_handle(sess, f, TVMRPC_FUNC);
}

static void check_board_lib(uint64_t mod)
{
    tvmrpc_value_t r;
    uint64_t fa = func(mod, "board_arch");
    call(fa, "board_arch", NULL, 0, &r);
    if (r.kind != TVMRPC_STR || strcmp(r.u.s.p, arch) != 0)
        die("board_arch answered '%s', expected '%s'", r.kind == TVMRPC_STR ? r.u.s.p : "?", arch);
    printf("  board_arch  %s\n", r.u.s.p);
    tvmrpc_free_handle(sess, fa, TVMRPC_FUNC);

    static float x[N_EXP], y[N_EXP];
    for (int i = 0; i < N_EXP; i++)
        x[i] = (float)(i % 200) / 50.0f - 2.0f;
    tvmrpc_array_t ax = vec(N_EXP, x), ay = vec(N_EXP, NULL);
    tvmrpc_value_t args[2] = {tvmrpc_v_tensor(&ax), tvmrpc_v_tensor(&ay)};
    uint64_t fe = func(mod, "vexp_par");
    call(fe, "vexp_par", args, 2, NULL);
    fetch(&ay, y, N_EXP);
    double worst = 0;
    for (int i = 0; i < N_EXP; i++) {
        double want = exp((double)x[i]), rel = fabs((double)y[i] - want) / want;
        if (!(rel <= 1e-6))
            die("vexp_par: y[%d] = %.9g, exp(%g) = %.9g", i, y[i], x[i], want);
        worst = rel > worst ? rel : worst;
    }
    printf("  vexp_par  float32[%d] in parallel tasks: max relative error %.2g\n", N_EXP, worst);
    tvmrpc_free_handle(sess, fe, TVMRPC_FUNC);
    tvmrpc_array_free(sess, &ax);
    tvmrpc_array_free(sess, &ay);
}

/* vadd.o: the server links it with its --cc, then addone runs on c. */
static void check_link_obj(tvmrpc_array_t *c)
{
    uint64_t mod = load("vadd.o");
    static float before[N_VADD], after[N_VADD];
    fetch(c, before, N_VADD);
    uint64_t f = func(mod, "addone");
    tvmrpc_value_t arg = tvmrpc_v_tensor(c);
    call(f, "addone", &arg, 1, NULL);
    fetch(c, after, N_VADD);
    for (int i = 0; i < N_VADD; i++)
        if (after[i] != before[i] + 1.0f)
            die("addone: x[%d] = %g, expected %g", i, after[i], before[i] + 1.0f);
    printf("  addone    (vadd.o linked on the board): all elements match\n");
    tvmrpc_free_handle(sess, f, TVMRPC_FUNC);
    tvmrpc_free_handle(sess, mod, TVMRPC_MODULE);
}

static int hold(double secs)
{
    uint64_t nop = global("testing.nop");
    printf("holding\n");
    fflush(stdout);
    double t0 = now_s();
    for (long i = 0; i < (long)(secs * 20) + 1; i++) {
        int rc = tvmrpc_call(sess, nop, NULL, 0, NULL);
        if (rc < 0) {
            printf("session lost after %.2f s: %s: %s\n", now_s() - t0, tvmrpc_strerror(rc),
                   tvmrpc_last_error(sess));
            return 0;
        }
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    printf("session survived %.0f s\n", secs);
    return 3;
}

static void usage(void)
{
    fprintf(stderr, "usage: board_client (--tracker HOST:PORT | --host HOST --port PORT) --key "
                    "KEY\n"
                    "         (--libs DIR [--arch A] [--link-obj] [--number N] | --hold SEC)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *tracker = NULL, *host = NULL, *key = "";
    int port = 0, link_obj = 0, number = 100;
    double hold_s = -1;
    arch = "aarch64";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--link-obj")) {
            link_obj = 1;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--tracker"))
            tracker = v;
        else if (!strcmp(a, "--host"))
            host = v;
        else if (!strcmp(a, "--port"))
            port = atoi(v);
        else if (!strcmp(a, "--key"))
            key = v;
        else if (!strcmp(a, "--libs"))
            libs = v;
        else if (!strcmp(a, "--arch"))
            arch = v;
        else if (!strcmp(a, "--number"))
            number = atoi(v);
        else if (!strcmp(a, "--hold"))
            hold_s = atof(v);
        else
            usage();
    }
    if (!!tracker == !!host || (!libs && hold_s < 0))
        usage();

    char err[1024];
    tvmrpc_opts_t o;
    tvmrpc_opts_init(&o);
    o.timeout_ms = 60000; /* an emulated board is slow, but never this slow */
    double t0 = now_s();
    if (tracker) {
        char th[256];
        const char *colon = strrchr(tracker, ':');
        if (!colon || (size_t)(colon - tracker) >= sizeof(th))
            usage();
        memcpy(th, tracker, (size_t)(colon - tracker));
        th[colon - tracker] = '\0';
        sess = tvmrpc_request_opts(th, atoi(colon + 1), key, 1, 3, &o, err, sizeof(err));
    } else {
        sess = tvmrpc_connect_opts(host, port, key, &o, err, sizeof(err));
    }
    if (!sess) {
        fprintf(stderr, "board_client: FAILED: %s\n", err);
        return 1;
    }
    const char *sk = tvmrpc_server_key(sess);
    printf("  session   %s via %s, server key %s, %.1f ms\n", key, tracker ? "tracker" : "proxy",
           sk, (now_s() - t0) * 1e3);
    if (strncmp(sk, "server:", 7) != 0 || strncmp(sk + 7, key, strlen(key)) != 0)
        die("server key %s is not server:%s", sk, key);
    if (hold_s >= 0) {
        int rc = hold(hold_s);
        tvmrpc_close(sess);
        return rc;
    }

    tvmrpc_array_t arrs[3];
    check_vadd(load("vadd.so"), number, arrs);
    check_board_lib(load("board.so"));
    if (link_obj)
        check_link_obj(&arrs[2]);
    for (int i = 0; i < 3; i++)
        if (tvmrpc_array_free(sess, &arrs[i]) < 0)
            die("free");
    tvmrpc_close(sess);
    printf("  all checks passed in %.2f s\n", now_s() - t0);
    return 0;
}
