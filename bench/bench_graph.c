/* bench_graph: what the graph executor adds per operator, beyond the
 * kernels' own time (target: < 2 us per node).
 *
 * A chain of N operators, each taking the previous activation and two
 * weights and writing a new activation (4 arguments, like a fused
 * conv2d + bias), is run by the executor with an empty kernel behind
 * every node. The baseline calls the same empty kernel N times in a loop
 * over prepared argument arrays of the same shape: the least any runtime
 * must do. The difference per node is the executor's overhead. Both are
 * measured in alternating rounds, so machine noise hits both alike, and
 * the median round counts.
 *
 * In process, no RPC: a client's run is one packet whatever N is, so the
 * per-node cost is all in this loop. Prints a table and one BENCH_RESULT
 * line (bench/README.md); exit 0 target met, 1 missed, 2 error. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "server/graph_executor.h"

#define NARGS 4
#define TARGET_NS 2000.0

typedef struct config {
    int nodes;  /* operators in the chain */
    int rounds; /* alternating measurement rounds */
    int runs;   /* whole-graph runs per round */
} config_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The kernel: checks its argument count, as every TVM kernel does first,
 * and does nothing else. Called through pointers only, never inlined. */
static int __attribute__((noinline))
empty_kernel(TVMValue *args, int *codes, int n, TVMValue *ret, int *ret_code, void *res)
{
    return n == NARGS && codes[0] == kTVMDLTensorHandle ? 0 : -1;
}

/* ---- a library module whose every function is the empty kernel --------------------- */

static int lib_get_function(mod_t *m, const char *name, mfunc_t **out, char *err, size_t errlen)
{
    *out = strcmp(name, "op_kernel") == 0 ? mfunc_new(name, empty_kernel, NULL, NULL, m) : NULL;
    return 0;
}

static const mod_vt_t lib_vt = {.type_key = "library", .get_function = lib_get_function};

/* ---- the graph ------------------------------------------------------------------------ */

/* x -> op0(x, w0a, w0b) -> op1(.., w1a, w1b) -> ... Node 0 is x; operator i
 * is node 3i+3 after its weights 3i+1, 3i+2. Activations alternate
 * between two storage slots, as a memory planner would assign them. */
static char *chain_json(int n)
{
    buf_t b;
    int nn = 3 * n + 1;
    buf_init(&b, 0);
    buf_append_str(&b, "{\"nodes\": [{\"op\": \"null\", \"name\": \"x\", \"inputs\": []}");
    for (int i = 0; i < n; i++)
        buf_printf(&b,
                   ", {\"op\": \"null\", \"name\": \"w%da\", \"inputs\": []}, {\"op\": \"null\", "
                   "\"name\": \"w%db\", \"inputs\": []}, {\"op\": \"tvm_op\", \"name\": \"op%d\", "
                   "\"attrs\": {\"func_name\": \"op_kernel\", \"num_inputs\": \"3\", "
                   "\"num_outputs\": \"1\", \"flatten_data\": \"0\"}, \"inputs\": [[%d, 0, 0], "
                   "[%d, 0, 0], [%d, 0, 0]]}",
                   i, i, i, 3 * i, 3 * i + 1, 3 * i + 2);
    buf_append_str(&b, "], \"arg_nodes\": [0");
    for (int i = 0; i < n; i++)
        buf_printf(&b, ", %d, %d", 3 * i + 1, 3 * i + 2);
    buf_printf(&b, "], \"heads\": [[%d, 0, 0]], \"attrs\": {\"dltype\": [\"list_str\", [", 3 * n);
    for (int e = 0; e < nn; e++)
        buf_printf(&b, "%s\"float32\"", e ? ", " : "");
    buf_append_str(&b, "]], \"storage_id\": [\"list_int\", [0");
    for (int i = 0; i < n; i++)
        buf_printf(&b, ", %d, %d, %d", 3 + 2 * i, 4 + 2 * i, 1 + i % 2);
    buf_append_str(&b, "]], \"shape\": [\"list_shape\", [");
    for (int e = 0; e < nn; e++)
        buf_printf(&b, "%s[1, 16]", e ? ", " : "");
    buf_append_str(&b, "]]}, \"node_row_ptr\": [");
    for (int e = 0; e <= nn; e++)
        buf_printf(&b, "%s%d", e ? ", " : "", e);
    buf_append_str(&b, "]}");
    char *s = strndup((const char *)buf_head(&b), b.len);
    buf_free(&b);
    return s;
}

/* ---- the baseline: the same calls without an executor ---------------------------------- */

typedef struct direct {
    TVMValue *vals;
    int *codes;
    DLTensor *ts;
    float *data;
    int64_t shape[2];
} direct_t;

static int direct_init(direct_t *d, int n)
{
    d->shape[0] = 1;
    d->shape[1] = 16;
    d->vals = calloc((size_t)n * NARGS, sizeof(*d->vals));
    d->codes = calloc((size_t)n * NARGS, sizeof(*d->codes));
    d->ts = calloc((size_t)n * NARGS, sizeof(*d->ts));
    d->data = calloc(16, sizeof(float));
    if (!d->vals || !d->codes || !d->ts || !d->data)
        return -1;
    for (int k = 0; k < n * NARGS; k++) {
        d->ts[k] = (DLTensor){d->data, {1, 0}, 2, {2, 32, 1}, d->shape, NULL, 0};
        d->vals[k].v_handle = &d->ts[k];
        d->codes[k] = kTVMDLTensorHandle;
    }
    return 0;
}

static void direct_free(direct_t *d)
{
    free(d->vals);
    free(d->codes);
    free(d->ts);
    free(d->data);
}

static int direct_run(const direct_t *d, int n, TVMBackendPackedCFunc fn)
{
    for (int i = 0; i < n; i++) {
        TVMValue rv;
        int rc = kTVMNullptr;
        if (fn(d->vals + i * NARGS, d->codes + i * NARGS, NARGS, &rv, &rc, NULL) != 0)
            return -1;
    }
    return 0;
}

/* ---- measuring -------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct result {
    double exec_ns, direct_ns; /* per run, median round */
    double exec_min, direct_min;
} result_t;

static int measure(const config_t *cfg, mfunc_t *run, const direct_t *d, result_t *res)
{
    /* Through a volatile pointer: the loop cannot be folded away. */
    TVMBackendPackedCFunc volatile kernel = empty_kernel;
    double *ex = calloc((size_t)cfg->rounds, sizeof(double));
    double *di = calloc((size_t)cfg->rounds, sizeof(double));
    int rc = -1;
    if (!ex || !di)
        goto out;
    for (int r = -1; r < cfg->rounds; r++) { /* round -1 warms up */
        uint64_t t0 = now_ns();
        for (int k = 0; k < cfg->runs; k++) {
            TVMValue rv;
            int code;
            if (mfunc_call(run, NULL, NULL, 0, &rv, &code) != 0) {
                fprintf(stderr, "bench_graph: run failed: %s\n", TVMGetLastError());
                goto out;
            }
        }
        uint64_t t1 = now_ns();
        for (int k = 0; k < cfg->runs; k++)
            if (direct_run(d, cfg->nodes, kernel) != 0)
                goto out;
        uint64_t t2 = now_ns();
        if (r >= 0) {
            ex[r] = (double)(t1 - t0) / cfg->runs;
            di[r] = (double)(t2 - t1) / cfg->runs;
        }
    }
    qsort(ex, (size_t)cfg->rounds, sizeof(double), cmp_double);
    qsort(di, (size_t)cfg->rounds, sizeof(double), cmp_double);
    res->exec_ns = ex[cfg->rounds / 2];
    res->direct_ns = di[cfg->rounds / 2];
    res->exec_min = ex[0];
    res->direct_min = di[0];
    rc = 0;
out:
    free(ex);
    free(di);
    return rc;
}

static int parse_args(int argc, char **argv, config_t *cfg)
{
    *cfg = (config_t){.nodes = 1000, .rounds = 21, .runs = 200};
    for (int i = 1; i < argc; i++) {
        int *dst = !strcmp(argv[i], "--nodes")    ? &cfg->nodes
                   : !strcmp(argv[i], "--rounds") ? &cfg->rounds
                   : !strcmp(argv[i], "--runs")   ? &cfg->runs
                                                  : NULL;
        if (!dst || i + 1 >= argc || (*dst = atoi(argv[++i])) < 1) {
            fprintf(stderr, "usage: bench_graph [--nodes N] [--rounds R] [--runs K]\n"
                            "  N operators in a chain (1000), R alternating rounds (21) of K\n"
                            "  whole-graph runs (200) each for executor and baseline\n");
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    config_t cfg;
    char err[1024];
    if (parse_args(argc, argv, &cfg) < 0)
        return 2;
    char *json = chain_json(cfg.nodes);
    mod_t *lib = mod_new(&lib_vt, NULL), *exec = NULL;
    mfunc_t *run = NULL;
    DLDevice cpu = {1, 0};
    direct_t d;
    result_t res;
    if (!json || !lib || direct_init(&d, cfg.nodes) < 0) {
        fprintf(stderr, "bench_graph: out of memory\n");
        return 2;
    }
    if (gexec_create(json, strlen(json), lib, &cpu, 1, &exec, err, sizeof(err)) < 0 ||
        mod_get_function(exec, "run", 0, &run, err, sizeof(err)) < 0 || !run) {
        fprintf(stderr, "bench_graph: %s\n", err);
        return 2;
    }
    if (measure(&cfg, run, &d, &res) < 0)
        return 2;
    double per_node = (res.exec_ns - res.direct_ns) / cfg.nodes;
    double best = (res.exec_min - res.direct_min) / cfg.nodes;
    int ok = per_node < TARGET_NS;
    printf("graph executor overhead, %d-node chain, empty kernels (4 arguments each)\n", cfg.nodes);
    printf("  %-34s %12s %12s\n", "", "per run", "per node");
    printf("  %-34s %10.0f ns %10.1f ns\n", "executor run (median round)", res.exec_ns,
           res.exec_ns / cfg.nodes);
    printf("  %-34s %10.0f ns %10.1f ns\n", "direct kernel calls (median round)", res.direct_ns,
           res.direct_ns / cfg.nodes);
    printf("  %-34s %13s %10.1f ns   target < %.0f ns: %s\n", "executor overhead", "", per_node,
           TARGET_NS, ok ? "ok" : "MISSED");
    printf("  %-34s %13s %10.1f ns\n", "overhead, best rounds", "", best);
    printf("BENCH_RESULT {\"bench\": \"graph\", \"metrics\": ["
           "{\"name\": \"overhead_per_node\", \"value\": %.3f, \"unit\": \"ns\", \"target\": "
           "\"< 2000\", \"ok\": %s}, "
           "{\"name\": \"run_per_node\", \"value\": %.3f, \"unit\": \"ns\", \"target\": \"\"}, "
           "{\"name\": \"direct_per_node\", \"value\": %.3f, \"unit\": \"ns\", \"target\": \"\"}], "
           "\"config\": {\"nodes\": %d, \"rounds\": %d, \"runs\": %d, \"args_per_node\": %d}}\n",
           per_node, ok ? "true" : "false", res.exec_ns / cfg.nodes, res.direct_ns / cfg.nodes,
           cfg.nodes, cfg.rounds, cfg.runs, NARGS);
    mfunc_release(run);
    mod_release(exec);
    mod_release(lib);
    direct_free(&d);
    free(json);
    return ok ? 0 : 1;
}
