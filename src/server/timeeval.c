/* Time evaluator and measurement helpers (RUNTIME.md §1.7, §4). The
 * evaluator is a function object whose every call measures: one warm-up
 * call, then `repeat` timed batches of `number` calls, growing `number`
 * until a batch lasts min_repeat_ms. The result is repeat doubles. */
#include "server/timeeval.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TE_MAX_REPEAT 1000000
#define TE_MAX_FLUSH ((int64_t)1 << 32)

typedef struct te {
    mfunc_t *f, *pre;
    int number; /* grows across batches and calls, as in TVM */
    int repeat, min_repeat_ms, limit_zero, cooldown_ms, repeats_to_cooldown;
    int64_t flush_bytes;
    double *results;
    TVMByteArray out;
} te_t;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Results we do not keep may still be references (run_from_inputs
 * returns a fresh array object per call). */
static void discard(TVMValue *v, int code)
{
    module_value_release(v, code);
}

static int call_discard(mfunc_t *f, TVMValue *args, int *codes, int n)
{
    TVMValue rv;
    int rc;
    if (mfunc_call(f, args, codes, n, &rv, &rc) < 0)
        return -1;
    discard(&rv, rc);
    return 0;
}

/* One batch of te->number calls, timed in nanoseconds. */
static int te_batch(te_t *te, TVMValue *args, int *codes, int n, int64_t *ns)
{
    int64_t t0 = now_ns();
    for (int j = 0; j < te->number; j++)
        if (call_discard(te->f, args, codes, n) < 0)
            return -1;
    *ns = now_ns() - t0;
    return 0;
}

/* One result: batches until one lasts min_repeat_ms (§4.2 step 4.2). */
static int te_measure(te_t *te, TVMValue *args, int *codes, int n, int32_t *fa, const int32_t *fb,
                      double *seconds)
{
    double duration_ms = 0;
    int zero = 0;
    do {
        if (duration_ms > 0) {
            double grown = (double)te->min_repeat_ms / (duration_ms / te->number) + 1;
            if (grown < te->number * 1.618)
                grown = te->number * 1.618;
            te->number = grown >= INT_MAX ? INT_MAX : (int)grown;
        }
        if (fa)
            memcpy(fa, fb, (size_t)te->flush_bytes / 4 * 4);
        int64_t ns;
        if (te_batch(te, args, codes, n, &ns) < 0)
            return -1;
        if (ns == 0)
            zero++;
        duration_ms = (double)ns / 1e6;
    } while (duration_ms < te->min_repeat_ms && zero < te->limit_zero);
    *seconds = duration_ms / 1000 / te->number;
    return 0;
}

static int te_call(TVMValue *args, int *codes, int n, TVMValue *ret, int *ret_code, void *res)
{
    te_t *te = res;
    int32_t *fa = NULL, *fb = NULL;
    int rc = -1;
    if (call_discard(te->f, args, codes, n) < 0) /* warm-up */
        return -1;
    if (te->flush_bytes >= 4) {
        size_t sz = ((size_t)te->flush_bytes / 4 * 4 + 63) & ~(size_t)63;
        if (posix_memalign((void **)&fa, 64, sz) != 0 ||
            posix_memalign((void **)&fb, 64, sz) != 0) {
            TVMAPISetLastError("time evaluator: cannot allocate the cache flush buffers");
            goto out;
        }
        memset(fb, 1, sz);
    }
    for (int i = 0; i < te->repeat; i++) {
        if (te->pre && call_discard(te->pre, args, codes, n) < 0)
            goto out;
        if (te_measure(te, args, codes, n, fa, fb, &te->results[i]) < 0)
            goto out;
        if (te->cooldown_ms > 0 && i % te->repeats_to_cooldown == 0)
            sleep_ms(te->cooldown_ms);
    }
    te->out.data = (const char *)te->results;
    te->out.size = (size_t)te->repeat * sizeof(double);
    ret->v_handle = &te->out;
    *ret_code = kTVMBytes;
    rc = 0;
out:
    free(fa);
    free(fb);
    return rc;
}

static void te_free(void *res)
{
    te_t *te = res;
    mfunc_release(te->f);
    free(te->results);
    free(te);
}

static int arg_int(const rpc_value_t *args, int i, int64_t lo, int64_t hi, int64_t *out, char *err,
                   size_t errlen)
{
    static const char *const names[] = {"mod",
                                        "name",
                                        "device_type",
                                        "device_id",
                                        "number",
                                        "repeat",
                                        "min_repeat_ms",
                                        "limit_zero_time_iterations",
                                        "cooldown_interval_ms",
                                        "repeats_to_cooldown",
                                        "cache_flush_bytes",
                                        "f_preproc"};
    if (args[i].kind != RV_INT && args[i].kind != RV_BOOL) {
        snprintf(err, errlen, "TypeError: runtime.RPCTimeEvaluator: %s must be an int", names[i]);
        return -1;
    }
    if (args[i].u.i < lo || args[i].u.i > hi) {
        snprintf(err, errlen, "ValueError: runtime.RPCTimeEvaluator: %s = %lld is out of range",
                 names[i], (long long)args[i].u.i);
        return -1;
    }
    *out = args[i].u.i;
    return 0;
}

static int arg_name(const rpc_value_t *a, char *out, size_t outlen)
{
    if (a->kind == RV_NONE) {
        out[0] = '\0';
        return 0;
    }
    if (a->kind != RV_STR || a->u.s.len >= outlen || memchr(a->u.s.p, '\0', (size_t)a->u.s.len))
        return -1;
    memcpy(out, a->u.s.p, (size_t)a->u.s.len);
    out[a->u.s.len] = '\0';
    return 0;
}

/* The function to time: in the module (classic: with its imports; ffi: its
 * own functions only) or global (§4.1). */
static int te_resolve(session_t *s, const rpc_value_t *a, const char *name, mfunc_t **f, char *err,
                      size_t errlen)
{
    if (a->kind == RV_NONE) {
        if (!(*f = module_global_function(name))) {
            snprintf(err, errlen, "TVMError: Cannot find %s in the global function", name);
            return -1;
        }
        return 0;
    }
    mod_t *m = a->kind == RV_MODULE ? module_from_handle(s, a->u.h) : NULL;
    if (!m) {
        snprintf(err, errlen, "TypeError: runtime.RPCTimeEvaluator: mod must be a module or None");
        return -1;
    }
    int with_imports = session_generation(s) != RPC_PROTOCOL_FFI;
    if (mod_get_function(m, name, with_imports, f, err, errlen) < 0)
        return -1;
    if (!*f) {
        snprintf(err, errlen, "TVMError: Cannot find %s in the global registry", name);
        return -1;
    }
    return 0;
}

int timeeval_fn_create(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                       char *err, size_t errlen)
{
    char name[1024], pre[1024];
    int64_t v[11];
    if (nargs != 12) {
        snprintf(err, errlen, "TypeError: runtime.RPCTimeEvaluator expects 12 arguments, got %d",
                 nargs);
        return -1;
    }
    if (arg_name(&args[1], name, sizeof(name)) < 0 || arg_name(&args[11], pre, sizeof(pre)) < 0) {
        snprintf(err, errlen,
                 "TypeError: runtime.RPCTimeEvaluator: name and f_preproc must be "
                 "strings");
        return -1;
    }
    static const int64_t lo[11] = {0,         0,         INT32_MIN, INT32_MIN, 1,        0,
                                   INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN, INT64_MIN};
    static const int64_t hi[11] = {
        0,         0,         INT32_MAX, INT32_MAX, INT32_MAX,   TE_MAX_REPEAT,
        INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX, TE_MAX_FLUSH};
    for (int i = 2; i <= 10; i++)
        if (arg_int(args, i, lo[i], hi[i], &v[i], err, errlen) < 0)
            return -1;
    if (v[2] != 1) {
        snprintf(err, errlen,
                 "ValueError: runtime.RPCTimeEvaluator: device type %lld is not "
                 "supported; this server has only the CPU",
                 (long long)v[2]);
        return -1;
    }
    mfunc_t *pf = NULL, *f;
    if (pre[0] && !(pf = module_global_function(pre))) {
        snprintf(err, errlen, "TVMError: Cannot find %s in the global function", pre);
        return -1;
    }
    if (te_resolve(s, &args[0], name, &f, err, errlen) < 0)
        return -1;
    te_t *te = calloc(1, sizeof(*te));
    double *results = calloc(v[5] ? (size_t)v[5] : 1, sizeof(double));
    if (!te || !results) {
        free(te);
        free(results);
        mfunc_release(f);
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    te->f = f;
    te->pre = pf; /* global: lives for the process */
    te->results = results;
    te->number = (int)v[4];
    te->repeat = (int)v[5];
    te->min_repeat_ms = v[6] > 0 ? (int)v[6] : 0;
    te->limit_zero = v[7] > 0 ? (int)v[7] : 0;
    te->cooldown_ms = v[8] > 0 ? (int)v[8] : 0;
    te->repeats_to_cooldown = v[9] > 0 ? (int)v[9] : 1; /* TVM divides by it unguarded */
    te->flush_bytes = v[10] > 0 ? v[10] : 0;
    mfunc_t *tf = mfunc_new("runtime.RPCTimeEvaluator", te_call, te, te_free, NULL);
    if (!tf || !(ret->u.h = mfunc_handle_new(s, tf))) {
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    ret->kind = RV_FUNC;
    return 0;
}

/* ---- arrays handed to the helpers --------------------------------------------- */

static int64_t dl_nbytes(const DLTensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0 || (t->shape[i] && n > INT64_MAX / t->shape[i]))
            return -1;
        n *= t->shape[i];
    }
    int64_t per = ((int64_t)t->dtype.bits * t->dtype.lanes + 7) / 8;
    return per && n > INT64_MAX / per ? -1 : n * per;
}

static int dl_compact(const DLTensor *t)
{
    int64_t stride = 1;
    for (int k = t->ndim - 1; t->strides && k >= 0; k--) {
        if (t->shape[k] != 1 && t->strides[k] != stride)
            return 0;
        stride *= t->shape[k];
    }
    return 1;
}

static const DLTensor *arg_tensor(TVMValue *args, int *codes, int n, int i, const char *fn)
{
    char msg[256];
    const DLTensor *t = NULL;
    if (i < n && (codes[i] == kTVMDLTensorHandle || codes[i] == kTVMNDArrayHandle))
        t = args[i].v_handle;
    if (!t || t->ndim < 0 || (t->ndim && !t->shape)) {
        snprintf(msg, sizeof(msg), "%s: argument %d must be an array", fn, i);
        TVMAPISetLastError(msg);
        return NULL;
    }
    return t;
}

/* ---- cache flush (§4.4) ------------------------------------------------------- */

static void flush_range(const char *p, size_t n)
{
#if defined(__x86_64__) || defined(__i386__)
    for (uintptr_t a = (uintptr_t)p & ~(uintptr_t)63; a < (uintptr_t)p + n; a += 64)
        __asm__ volatile("clflush (%0)" ::"r"(a) : "memory");
#elif defined(__aarch64__)
    uint64_t ctr;
    __asm__ volatile("mrs %0, ctr_el0" : "=r"(ctr));
    uintptr_t line = (uintptr_t)4 << ((ctr >> 16) & 0xf);
    for (uintptr_t a = (uintptr_t)p & ~(line - 1); a < (uintptr_t)p + n; a += line)
        __asm__ volatile("dc civac, %0" ::"r"(a) : "memory");
    __asm__ volatile("dmb ishst" ::: "memory");
#else
    (void)p;
    (void)n; /* no portable way; measuring without a flush is still valid */
#endif
}

/* Evict every array argument after the first (TVM ignores byte_offset). */
static int native_cache_flush(TVMValue *args, int *codes, int n, TVMValue *ret, int *ret_code,
                              void *res)
{
    for (int i = 1; i < n; i++) {
        const DLTensor *t = arg_tensor(args, codes, n, i, "cache_flush_cpu_non_first_arg");
        if (!t)
            return -1;
        int64_t nb = dl_nbytes(t);
        if (t->data && nb > 0)
            flush_range(t->data, (size_t)nb);
    }
    return 0;
}

/* ---- random fill (§1.7) ------------------------------------------------------- */

static uint64_t splitmix(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in [1, 10): never zero, as measurements need. */
static double uniform(uint64_t *state)
{
    return 1.0 + 9.0 * (double)(splitmix(state) >> 11) * 0x1.0p-53;
}

typedef struct fill {
    char *base;
    int bits;
    size_t unit, units; /* bytes per written value, values */
    uint64_t seed;
} fill_t;

static void fill_units(const fill_t *f, size_t begin, size_t end)
{
    uint64_t st = f->seed ^ (begin * 0x2545F4914F6CDD1DULL);
    for (size_t i = begin; i < end; i++) {
        char *dst = f->base + i * f->unit;
        double u = uniform(&st);
        if (f->bits == 1) {
            *dst = 1;
        } else if (f->bits == 4) {
            *dst = (char)(((int)u << 4) | (int)uniform(&st));
        } else if (f->bits == 8) {
            *dst = (char)(int)u;
        } else if (f->bits == 16) {
            uint16_t h = __gnu_f2h_ieee((float)u);
            memcpy(dst, &h, 2);
        } else if (f->bits == 32) {
            float x = (float)u; /* float bits for every 32-bit dtype, as TVM */
            memcpy(dst, &x, 4);
        } else {
            memcpy(dst, &u, 8);
        }
    }
}

static int fill_setup(TVMValue *args, int *codes, int n, const char *fn, fill_t *f)
{
    static uint64_t calls;
    char msg[256];
    const DLTensor *t = arg_tensor(args, codes, n, 0, fn);
    if (!t)
        return -1;
    int64_t nb = dl_nbytes(t);
    int bits = t->dtype.bits;
    if (t->device.device_type != 1 || !dl_compact(t) || nb < 0 || (nb > 0 && !t->data) ||
        !(bits == 1 || bits == 4 || bits == 8 || bits == 16 || bits == 32 || bits == 64)) {
        snprintf(msg, sizeof(msg),
                 "%s: cannot fill an array of %d-bit elements on device type "
                 "%d",
                 fn, bits, t->device.device_type);
        TVMAPISetLastError(msg);
        return -1;
    }
    f->base = (char *)t->data + t->byte_offset;
    f->bits = bits;
    f->unit = bits <= 8 ? 1 : (size_t)bits / 8;
    f->units = (size_t)nb / f->unit;
    f->seed = 0x74766d727063ULL + ++calls;
    return 0;
}

static int native_random_fill(TVMValue *args, int *codes, int n, TVMValue *ret, int *ret_code,
                              void *res)
{
    fill_t f;
    if (fill_setup(args, codes, n, "tvm.contrib.random.random_fill", &f) < 0)
        return -1;
    fill_units(&f, 0, f.units);
    return 0;
}

static int fill_task(int task, TVMParallelGroupEnv *penv, void *cdata)
{
    const fill_t *f = cdata;
    size_t per = (f->units + (size_t)penv->num_task - 1) / (size_t)penv->num_task;
    size_t begin = per * (size_t)task, end = begin + per;
    if (begin < f->units)
        fill_units(f, begin, end < f->units ? end : f->units);
    return 0;
}

static int native_random_fill_measure(TVMValue *args, int *codes, int n, TVMValue *ret,
                                      int *ret_code, void *res)
{
    fill_t f;
    if (fill_setup(args, codes, n, "tvm.contrib.random.random_fill_for_measure", &f) < 0)
        return -1;
    return TVMBackendParallelLaunch(fill_task, &f, 0);
}

const native_fn_t timeeval_natives[] = {
    {"cache_flush_cpu_non_first_arg", native_cache_flush},
    {"tvm.contrib.random.random_fill", native_random_fill},
    {"tvm.contrib.random.random_fill_for_measure", native_random_fill_measure},
    {NULL, NULL},
};

/* ---- the same helpers for clients ------------------------------------------------ */

static int rpc_native(session_t *s, const char *name, const rpc_value_t *args, int nargs,
                      rpc_value_t *ret, char *err, size_t errlen)
{
    mfunc_t *f = module_global_function(name);
    if (!f) {
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    return mfunc_rpc_call(s, f, args, nargs, ret, err, errlen);
}

int timeeval_fn_cache_flush(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                            char *err, size_t errlen)
{
    return rpc_native(s, "cache_flush_cpu_non_first_arg", args, nargs, ret, err, errlen);
}

int timeeval_fn_random_fill(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                            char *err, size_t errlen)
{
    return rpc_native(s, "tvm.contrib.random.random_fill", args, nargs, ret, err, errlen);
}

int timeeval_fn_random_fill_measure(session_t *s, const rpc_value_t *args, int nargs,
                                    rpc_value_t *ret, char *err, size_t errlen)
{
    return rpc_native(s, "tvm.contrib.random.random_fill_for_measure", args, nargs, ret, err,
                      errlen);
}
