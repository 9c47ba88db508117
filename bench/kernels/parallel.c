/* Kernels of bench_threads, written to the classic packed ABI the way TVM's
 * code generators emit a parallel loop (RUNTIME.md §2.4, §2.5): the kernel
 * checks its arguments, packs the loop's free variables into a closure,
 * and calls TVMBackendParallelLaunch(lambda, closure, 0). With 0 the
 * runtime picks the task count (TVM_NUM_THREADS, else one per core); each
 * task takes its static share of the outer loop from penv->num_task.
 *
 *   heavy(x float32[n], y float32[n], info int32[1])
 *       y[i] = 64 rounds of a polynomial of x[i]: compute-bound, no memory
 *       traffic worth naming, so its speedup is the pool's scaling.
 *   matmul(a float32[n,n], b float32[n,n], c float32[n,n], info int32[1])
 *       c = a b, rows split among tasks: the usual operator, with the
 *       memory hierarchy in play.
 *
 * info[0] receives the number of tasks the launch ran, so the benchmark
 * can show the pool really used every core. */
#include <stdarg.h>
#include <stdio.h>

#include "tvmrpc/c_runtime_api.h"

void *__tvm_module_ctx = NULL;

#define HEAVY_ROUNDS 64

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    TVMAPISetLastError(msg);
    return -1;
}

/* Argument i as a compact CPU tensor of ndim dims and dtype (code, 32). */
static DLTensor *arg_tensor(const char *fn, TVMValue *args, int *codes, int i, int ndim, int code)
{
    if (codes[i] != kTVMDLTensorHandle && codes[i] != kTVMNDArrayHandle) {
        fail("%s: Expect arg[%d] to be a tensor (type code %d)", fn, i, codes[i]);
        return NULL;
    }
    DLTensor *t = args[i].v_handle;
    if (!t || t->ndim != ndim || t->dtype.code != code || t->dtype.bits != 32 ||
        t->dtype.lanes != 1 || t->device.device_type != 1 || t->strides || t->byte_offset) {
        fail("Assert fail: %s: arg[%d] must be a compact %d-d %s32 CPU array", fn, i, ndim,
             code == 2 ? "float" : "int");
        return NULL;
    }
    return t;
}

/* The rows [lo, hi) of n that task `task` of `num` owns. */
static void share(int64_t n, int task, int num, int64_t *lo, int64_t *hi)
{
    int64_t step = (n + num - 1) / num;
    *lo = step * task < n ? step * task : n;
    *hi = *lo + step < n ? *lo + step : n;
}

/* ---- heavy ------------------------------------------------------------------- */

typedef struct heavy_closure {
    const float *x;
    float *y;
    int64_t n;
    int32_t *info;
} heavy_closure_t;

static int heavy_task(int task, TVMParallelGroupEnv *penv, void *cdata)
{
    const heavy_closure_t *c = cdata;
    int64_t lo, hi;
    share(c->n, task, penv->num_task, &lo, &hi);
    if (task == 0)
        c->info[0] = penv->num_task;
    for (int64_t i = lo; i < hi; i++) {
        float v = c->x[i];
        for (int r = 0; r < HEAVY_ROUNDS; r++)
            v = v * (0.999f - 0.25f * v * v) + 0.001f; /* stays in [-1, 1] */
        c->y[i] = v;
    }
    return 0;
}

int heavy(TVMValue *args, int *codes, int num_args, TVMValue *ret, int *ret_code, void *res)
{
    if (num_args != 3)
        return fail("heavy: num_args should be 3, got %d", num_args);
    DLTensor *x = arg_tensor("heavy", args, codes, 0, 1, 2),
             *y = x ? arg_tensor("heavy", args, codes, 1, 1, 2) : NULL,
             *info = y ? arg_tensor("heavy", args, codes, 2, 1, 0) : NULL;
    if (!info)
        return -1;
    if (y->shape[0] != x->shape[0] || info->shape[0] < 1)
        return fail("Assert fail: heavy: shapes differ");
    heavy_closure_t c = {x->data, y->data, x->shape[0], info->data};
    return TVMBackendParallelLaunch(heavy_task, &c, 0);
}

/* ---- matmul ------------------------------------------------------------------ */

typedef struct mm_closure {
    const float *a, *b;
    float *c;
    int64_t n;
    int32_t *info;
} mm_closure_t;

/* Rows of c, i-k-j order so the inner loop streams rows of b and c. */
static int mm_task(int task, TVMParallelGroupEnv *penv, void *cdata)
{
    const mm_closure_t *m = cdata;
    int64_t lo, hi, n = m->n;
    share(n, task, penv->num_task, &lo, &hi);
    if (task == 0)
        m->info[0] = penv->num_task;
    for (int64_t i = lo; i < hi; i++) {
        float *crow = m->c + i * n;
        for (int64_t j = 0; j < n; j++)
            crow[j] = 0;
        for (int64_t k = 0; k < n; k++) {
            float aik = m->a[i * n + k];
            const float *brow = m->b + k * n;
            for (int64_t j = 0; j < n; j++)
                crow[j] += aik * brow[j];
        }
    }
    return 0;
}

int matmul(TVMValue *args, int *codes, int num_args, TVMValue *ret, int *ret_code, void *res)
{
    if (num_args != 4)
        return fail("matmul: num_args should be 4, got %d", num_args);
    DLTensor *t[3], *info;
    for (int i = 0; i < 3; i++)
        if (!(t[i] = arg_tensor("matmul", args, codes, i, 2, 2)))
            return -1;
    if (!(info = arg_tensor("matmul", args, codes, 3, 1, 0)))
        return -1;
    int64_t n = t[0]->shape[0];
    for (int i = 0; i < 3; i++)
        if (t[i]->shape[0] != n || t[i]->shape[1] != n)
            return fail("Assert fail: matmul: every matrix must be %lld x %lld", (long long)n,
                        (long long)n);
    mm_closure_t m = {t[0]->data, t[1]->data, t[2]->data, n, info->data};
    return TVMBackendParallelLaunch(mm_task, &m, 0);
}
