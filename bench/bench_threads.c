/* bench_threads: does the server's thread pool use every core? (issue 5;
 * target: >= 0.9 x cores, i.e. >= 1.8x on 2 cores)
 *
 * Two real `tvmrpc server` processes run side by side: one with
 * TVM_NUM_THREADS=1, one with the default (one task per core the server
 * may run on). Each gets the compiled kernels of bench/kernels/parallel.c
 * uploaded and loaded like any client library. Those kernels call
 * TVMBackendParallelLaunch(lambda, closure, 0) as TVM's generated code does
 * and report how many tasks the launch ran.
 *
 * Each kernel is timed on the server with runtime.RPCTimeEvaluator (what
 * TVM's time_evaluator sends), in rounds that alternate the two servers
 * (1,N then N,1, ...), so load from other processes hits both alike.
 * Reported: best and median per-run time for each, speedup = best(1) /
 * best(N), and the per-round speedup range. The target is judged on
 * `heavy` (compute-bound: the pool's own scaling); `matmul` is shown for
 * an operator whose memory traffic also matters.
 *
 * Prints a table and one BENCH_RESULT line (bench/README.md); exit 0
 * target met, 1 missed, 2 error (including: fewer than 2 cores). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tvmrpc/client.h"

#define MAX_ROUNDS 50
#define START_MS 10000

typedef struct config {
    const char *tvmrpc, *kernel;
    int rounds, number;
    int64_t n_heavy, n_mm;
} config_t;

typedef struct server {
    const char *label;
    const char *threads; /* TVM_NUM_THREADS, or NULL for the default */
    pid_t pid;
    int port;
    char log[64];
    tvmrpc_sess_t *s;
    uint64_t mod;
    tvmrpc_array_t x, y, a, b, c, info;
    double t[2][MAX_ROUNDS]; /* [kernel][round], seconds per run */
    int tasks[2];
} server_t;

static const char *const kernels[2] = {"heavy", "matmul"};

/* ---- servers ------------------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void child_exec(const config_t *cfg, const server_t *sv)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the benchmark */
    int fd = open(sv->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    unsetenv("OMP_NUM_THREADS");
    if (sv->threads)
        setenv("TVM_NUM_THREADS", sv->threads, 1);
    else
        unsetenv("TVM_NUM_THREADS");
    execl(cfg->tvmrpc, cfg->tvmrpc, "server", "--host", "127.0.0.1", "--port", "0", (char *)NULL);
    _exit(127);
}

/* The port from the server's "bind to 127.0.0.1:PORT" line, or 0. */
static int log_port(const char *path)
{
    char line[512];
    int port = 0;
    FILE *fp = fopen(path, "r");
    while (fp && !port && fgets(line, sizeof(line), fp)) {
        const char *at = strstr(line, "bind to 127.0.0.1:");
        port = at ? atoi(at + strlen("bind to 127.0.0.1:")) : 0;
    }
    if (fp)
        fclose(fp);
    return port;
}

static int server_start(const config_t *cfg, server_t *sv)
{
    snprintf(sv->log, sizeof(sv->log), "/tmp/bench_threads.%d.%s.log", (int)getpid(),
             sv->threads ? "one" : "all");
    if ((sv->pid = fork()) == 0)
        child_exec(cfg, sv);
    for (int64_t end = now_ms() + START_MS; sv->pid > 0 && now_ms() < end; usleep(10000))
        if ((sv->port = log_port(sv->log)) > 0)
            return 0;
    fprintf(stderr, "bench_threads: %s server did not start (log %s)\n", sv->label, sv->log);
    return -1;
}

static void server_stop(server_t *sv)
{
    if (sv->s)
        tvmrpc_close(sv->s);
    if (sv->pid > 0) {
        kill(sv->pid, SIGTERM);
        waitpid(sv->pid, NULL, 0);
    }
    unlink(sv->log);
}

/* ---- a session with the kernels loaded and their arrays ready ------------------- */

static int fail(server_t *sv, const char *what)
{
    fprintf(stderr, "bench_threads: %s server: %s: %s\n", sv->label, what,
            sv->s ? tvmrpc_last_error(sv->s) : "no session");
    return -1;
}

static int call_global(server_t *sv, const char *name, const tvmrpc_value_t *a, int n,
                       tvmrpc_value_t *ret)
{
    uint64_t f;
    if (tvmrpc_get_func(sv->s, name, &f) < 0)
        return fail(sv, name);
    int rc = tvmrpc_call(sv->s, f, a, n, ret);
    tvmrpc_free_handle(sv->s, f, TVMRPC_FUNC);
    return rc < 0 ? fail(sv, name) : 0;
}

static int alloc(server_t *sv, tvmrpc_array_t *a, int ndim, int64_t d0, int64_t d1, int code)
{
    int64_t shape[2] = {d0, d1};
    tvmrpc_device_t cpu = {1, 0};
    tvmrpc_dtype_t dt = {(uint8_t)code, 32, 1};
    return tvmrpc_array_alloc(sv->s, cpu, ndim, shape, dt, NULL, a) < 0 ? fail(sv, "alloc") : 0;
}

/* Inputs in [-1, 1], the same on both servers. */
static int fill(server_t *sv, const tvmrpc_array_t *a, int64_t n, unsigned seed)
{
    float *v = malloc((size_t)n * sizeof(float));
    if (!v)
        return -1;
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        v[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
    int rc = tvmrpc_array_copy_from_host(sv->s, a, v, (size_t)n * sizeof(float));
    free(v);
    return rc < 0 ? fail(sv, "copy") : 0;
}

static int session_setup(const config_t *cfg, server_t *sv)
{
    char err[512];
    tvmrpc_opts_t o;
    tvmrpc_opts_init(&o);
    o.timeout_ms = 120000;
    if (!(sv->s = tvmrpc_connect_opts("127.0.0.1", sv->port, "", &o, err, sizeof(err)))) {
        fprintf(stderr, "bench_threads: %s server: %s\n", sv->label, err);
        return -1;
    }
    if (tvmrpc_upload_file(sv->s, cfg->kernel, "parallel.so") < 0)
        return fail(sv, "upload");
    tvmrpc_value_t name = tvmrpc_v_str("parallel.so"), m;
    if (call_global(sv, "tvm.rpc.server.load_module", &name, 1, &m) < 0)
        return -1;
    sv->mod = m.u.h;
    int64_t n = cfg->n_heavy, k = cfg->n_mm;
    if (alloc(sv, &sv->x, 1, n, 0, 2) || alloc(sv, &sv->y, 1, n, 0, 2) ||
        alloc(sv, &sv->a, 2, k, k, 2) || alloc(sv, &sv->b, 2, k, k, 2) ||
        alloc(sv, &sv->c, 2, k, k, 2) || alloc(sv, &sv->info, 1, 1, 0, 0))
        return -1;
    return fill(sv, &sv->x, n, 1) || fill(sv, &sv->a, k * k, 2) || fill(sv, &sv->b, k * k, 3);
}

/* ---- timing ----------------------------------------------------------------------- */

/* The kernel's arguments, as the client passes them. */
static int kernel_args(server_t *sv, int kernel, tvmrpc_value_t *args)
{
    if (kernel == 0) {
        args[0] = tvmrpc_v_tensor(&sv->x);
        args[1] = tvmrpc_v_tensor(&sv->y);
        args[2] = tvmrpc_v_tensor(&sv->info);
        return 3;
    }
    args[0] = tvmrpc_v_tensor(&sv->a);
    args[1] = tvmrpc_v_tensor(&sv->b);
    args[2] = tvmrpc_v_tensor(&sv->c);
    args[3] = tvmrpc_v_tensor(&sv->info);
    return 4;
}

/* time_evaluator(kernel, cpu(0), number, repeat=1)(args): seconds per run. */
static int time_kernel(const config_t *cfg, server_t *sv, int kernel, double *t)
{
    tvmrpc_value_t te_args[12] = {
        tvmrpc_v_handle(TVMRPC_MODULE, sv->mod),
        tvmrpc_v_str(kernels[kernel]),
        tvmrpc_v_int(1),
        tvmrpc_v_int(0),
        tvmrpc_v_int(cfg->number),
        tvmrpc_v_int(1),   /* repeat */
        tvmrpc_v_int(0),   /* min_repeat_ms */
        tvmrpc_v_int(100), /* limit_zero_time_iterations */
        tvmrpc_v_int(0),   /* cooldown_interval_ms */
        tvmrpc_v_int(1),   /* repeats_to_cooldown */
        tvmrpc_v_int(0),   /* cache_flush_bytes */
        tvmrpc_v_str(""),  /* f_preproc */
    };
    tvmrpc_value_t te, r, args[4];
    int n = kernel_args(sv, kernel, args);
    if (call_global(sv, "runtime.RPCTimeEvaluator", te_args, 12, &te) < 0)
        return -1;
    int rc = tvmrpc_call(sv->s, te.u.h, args, n, &r);
    if (rc == 0 && r.kind == TVMRPC_BYTES && r.u.s.len == sizeof(double))
        memcpy(t, r.u.s.p, sizeof(double));
    else
        rc = -1;
    tvmrpc_free_handle(sv->s, te.u.h, TVMRPC_FUNC);
    return rc < 0 ? fail(sv, kernels[kernel]) : 0;
}

static int read_tasks(server_t *sv, int *tasks)
{
    int32_t v = 0;
    if (tvmrpc_array_copy_to_host(sv->s, &sv->info, &v, sizeof(v)) < 0)
        return fail(sv, "read info");
    *tasks = v;
    return 0;
}

/* Alternate the servers round by round; a first untimed call warms up
 * (page faults in the outputs, the pool's threads started). */
static int measure(const config_t *cfg, server_t *sv)
{
    for (int k = 0; k < 2; k++) {
        double warm;
        for (int i = 0; i < 2; i++)
            if (time_kernel(cfg, &sv[i], k, &warm) < 0 || read_tasks(&sv[i], &sv[i].tasks[k]))
                return -1;
        for (int r = 0; r < cfg->rounds; r++)
            for (int j = 0; j < 2; j++) {
                int i = (r & 1) ? 1 - j : j;
                if (time_kernel(cfg, &sv[i], k, &sv[i].t[k][r]) < 0)
                    return -1;
            }
    }
    return 0;
}

/* Both servers must compute the same heavy output (the split must not
 * change any element). */
static int same_outputs(const config_t *cfg, server_t *sv)
{
    size_t bytes = (size_t)cfg->n_heavy * sizeof(float);
    float *y0 = malloc(bytes), *y1 = malloc(bytes);
    int same = y0 && y1 && tvmrpc_array_copy_to_host(sv[0].s, &sv[0].y, y0, bytes) == 0 &&
               tvmrpc_array_copy_to_host(sv[1].s, &sv[1].y, y1, bytes) == 0 &&
               memcmp(y0, y1, bytes) == 0;
    free(y0);
    free(y1);
    return same;
}

/* ---- report ----------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double s[MAX_ROUNDS];
    memcpy(s, v, (size_t)n * sizeof(double));
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double best(const double *v, int n)
{
    double b = v[0];
    for (int i = 1; i < n; i++)
        b = v[i] < b ? v[i] : b;
    return b;
}

typedef struct result {
    double speedup, med_speedup, lo, hi;
} result_t;

static result_t report_kernel(const config_t *cfg, const server_t *sv, int k)
{
    result_t res = {best(sv[0].t[k], cfg->rounds) / best(sv[1].t[k], cfg->rounds),
                    median(sv[0].t[k], cfg->rounds) / median(sv[1].t[k], cfg->rounds), 1e9, 0};
    for (int r = 0; r < cfg->rounds; r++) {
        double q = sv[0].t[k][r] / sv[1].t[k][r];
        res.lo = q < res.lo ? q : res.lo;
        res.hi = q > res.hi ? q : res.hi;
    }
    for (int i = 0; i < 2; i++)
        printf("  %-7s %-26s %5d %11.2f %11.2f\n", kernels[k], sv[i].label, sv[i].tasks[k],
               best(sv[i].t[k], cfg->rounds) * 1e3, median(sv[i].t[k], cfg->rounds) * 1e3);
    printf("  %-7s speedup %.2fx (best), %.2fx (median); rounds %.2f .. %.2f\n\n", kernels[k],
           res.speedup, res.med_speedup, res.lo, res.hi);
    return res;
}

static int cpu_count(void)
{
    cpu_set_t set;
    return sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
}

static double loadavg(void)
{
    double l = -1;
    FILE *fp = fopen("/proc/loadavg", "r");
    if (fp && fscanf(fp, "%lf", &l) != 1)
        l = -1;
    if (fp)
        fclose(fp);
    return l;
}

static int report(const config_t *cfg, server_t *sv, int cores, int same)
{
    double target = 0.9 * cores;
    printf("thread pool scaling: TVM_NUM_THREADS=1 vs default, %d cores, load %.2f after\n", cores,
           loadavg());
    printf("  heavy: %lld float32 x %d polynomial rounds; matmul: %lld x %lld float32\n",
           (long long)cfg->n_heavy, 64, (long long)cfg->n_mm, (long long)cfg->n_mm);
    printf("  time_evaluator: %d runs per call, %d alternating rounds\n\n", cfg->number,
           cfg->rounds);
    printf("  %-7s %-26s %5s %11s %11s\n", "kernel", "server", "tasks", "best ms", "median ms");
    result_t h = report_kernel(cfg, sv, 0), m = report_kernel(cfg, sv, 1);
    int used_all = sv[1].tasks[0] == cores && sv[0].tasks[0] == 1;
    int ok = h.speedup >= target && used_all && same;
    printf("  heavy outputs identical on both servers: %s\n", same ? "yes" : "NO");
    printf("  target: heavy speedup >= %.1fx with one task per core: %s\n", target,
           ok ? "met" : "MISSED");
    printf(
        "BENCH_RESULT {\"bench\": \"threads\", \"metrics\": ["
        "{\"name\": \"heavy_speedup\", \"value\": %.3f, \"unit\": \"x\", \"target\": "
        "\">= %.1f\", \"ok\": %s}, "
        "{\"name\": \"heavy_speedup_median\", \"value\": %.3f, \"unit\": \"x\", \"target\": \"\"}, "
        "{\"name\": \"matmul_speedup\", \"value\": %.3f, \"unit\": \"x\", \"target\": \"\"}, "
        "{\"name\": \"default_tasks\", \"value\": %d, \"unit\": \"tasks\", \"target\": \"= %d\", "
        "\"ok\": %s}], "
        "\"config\": {\"cores\": %d, \"rounds\": %d, \"number\": %d, \"n_heavy\": %lld, "
        "\"n_matmul\": %lld}, \"heavy_ms\": [%.3f, %.3f], \"matmul_ms\": [%.3f, %.3f]}\n",
        h.speedup, target, ok ? "true" : "false", h.med_speedup, m.speedup, sv[1].tasks[0], cores,
        used_all ? "true" : "false", cores, cfg->rounds, cfg->number, (long long)cfg->n_heavy,
        (long long)cfg->n_mm, best(sv[0].t[0], cfg->rounds) * 1e3,
        best(sv[1].t[0], cfg->rounds) * 1e3, best(sv[0].t[1], cfg->rounds) * 1e3,
        best(sv[1].t[1], cfg->rounds) * 1e3);
    return ok ? 0 : 1;
}

/* ---- command line ----------------------------------------------------------------- */

static void usage(void)
{
    printf("usage: bench_threads [--rounds R (7)] [--number N (3)] [--n-heavy N (262144)]\n"
           "                     [--n-matmul N (384)] [--tvmrpc PATH] [--kernel PATH]\n"
           "TVM_NUM_THREADS=1 vs the default pool on compiled parallel kernels.\n"
           "tvmrpc: --tvmrpc, $TVMRPC_BIN, else ../tvmrpc; kernel: kernels/parallel.so\n"
           "next to this program.\n");
}

static int parse(int argc, char **argv, config_t *cfg)
{
    static char tv[PATH_MAX], kern[PATH_MAX];
    char self[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(tv, sizeof(tv), "%s/../tvmrpc", self);
    snprintf(kern, sizeof(kern), "%s/kernels/parallel.so", self);
    *cfg = (config_t){getenv("TVMRPC_BIN") ? getenv("TVMRPC_BIN") : tv, kern, 7, 3, 1 << 18, 384};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[++i] : "";
        if (!strcmp(o, "--rounds"))
            cfg->rounds = atoi(v);
        else if (!strcmp(o, "--number"))
            cfg->number = atoi(v);
        else if (!strcmp(o, "--n-heavy"))
            cfg->n_heavy = atoll(v);
        else if (!strcmp(o, "--n-matmul"))
            cfg->n_mm = atoll(v);
        else if (!strcmp(o, "--tvmrpc"))
            cfg->tvmrpc = v;
        else if (!strcmp(o, "--kernel"))
            cfg->kernel = v;
        else {
            usage();
            return strcmp(o, "--help") ? 2 : 1;
        }
    }
    if (cfg->rounds < 1 || cfg->rounds > MAX_ROUNDS || cfg->number < 1 || cfg->n_heavy < 1 ||
        cfg->n_mm < 1) {
        usage();
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    config_t cfg;
    int rc = parse(argc, argv, &cfg);
    if (rc)
        return rc == 1 ? 0 : 2;
    int cores = cpu_count();
    if (cores < 2) {
        printf("bench_threads: this process may use %d core; nothing to scale\n", cores);
        return 2;
    }
    server_t sv[2] = {{.label = "TVM_NUM_THREADS=1", .threads = "1"},
                      {.label = "default (one per core)", .threads = NULL}};
    rc = 2;
    if (server_start(&cfg, &sv[0]) == 0 && server_start(&cfg, &sv[1]) == 0 &&
        session_setup(&cfg, &sv[0]) == 0 && session_setup(&cfg, &sv[1]) == 0 &&
        measure(&cfg, sv) == 0)
        rc = report(&cfg, sv, cores, same_outputs(&cfg, sv));
    server_stop(&sv[0]);
    server_stop(&sv[1]);
    return rc;
}
