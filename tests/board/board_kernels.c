/* Kernels for the emulated-board test (scripts/e2e-board.sh), cross-compiled
 * for the board with its gcc and written to TVM's classic C ABI like
 * tests/fixtures/vadd.c. Each one proves a thing a board deployment needs
 * beyond vadd:
 *   board_arch  which CPU the code was compiled for (so the host can tell
 *               that the numbers really came from the board);
 *   vexp_par    a parallel launch (the server's thread pool) calling expf,
 *               which the library leaves undefined, as TVM's C target does:
 *               it only resolves if the dynamic tvmrpc put libm into the
 *               global scope (docs/modules.md, "Static or dynamic").
 * Built with -I include and without -lm, on purpose. */
#include <math.h>
#include <stdint.h>

#include "tvmrpc/c_runtime_api.h"

void *__tvm_module_ctx = NULL;

static int fail(const char *msg)
{
    TVMAPISetLastError(msg);
    return -1;
}

static DLTensor *f32_vec(TVMValue *args, int *codes, int i)
{
    DLTensor *t = codes[i] == kTVMDLTensorHandle || codes[i] == kTVMNDArrayHandle
                      ? (DLTensor *)args[i].v_handle
                      : NULL;
    if (!t || t->ndim != 1 || t->dtype.code != 2 || t->dtype.bits != 32 || t->dtype.lanes != 1 ||
        t->device.device_type != 1 || t->byte_offset != 0)
        return NULL;
    return t;
}

int board_arch(TVMValue *args, int *type_codes, int num_args, TVMValue *out_ret_value,
               int *out_ret_tcode, void *resource_handle)
{
#if defined(__aarch64__)
    static const char arch[] = "aarch64";
#elif defined(__arm__)
    static const char arch[] = "arm";
#elif defined(__riscv)
    static const char arch[] = "riscv";
#elif defined(__x86_64__)
    static const char arch[] = "x86_64";
#else
    static const char arch[] = "unknown";
#endif
    out_ret_value->v_str = arch;
    *out_ret_tcode = kTVMStr;
    return 0;
}

typedef struct {
    const float *x;
    float *y;
    int64_t n;
} exp_job_t;

/* Each task takes one contiguous chunk, as TVM's parallel loops do. */
static int exp_task(int task_id, TVMParallelGroupEnv *penv, void *cdata)
{
    const exp_job_t *job = cdata;
    int64_t per = (job->n + penv->num_task - 1) / penv->num_task;
    int64_t lo = (int64_t)task_id * per, hi = lo + per < job->n ? lo + per : job->n;
    for (int64_t i = lo; i < hi; i++)
        job->y[i] = expf(job->x[i]);
    return 0;
}

/* y = exp(x), float32[n], split over the pool's default task count. */
int vexp_par(TVMValue *args, int *type_codes, int num_args, TVMValue *out_ret_value,
             int *out_ret_tcode, void *resource_handle)
{
    if (num_args != 2)
        return fail("vexp_par: num_args should be 2");
    DLTensor *x = f32_vec(args, type_codes, 0), *y = f32_vec(args, type_codes, 1);
    if (!x || !y || x->shape[0] != y->shape[0])
        return fail("Assert fail: vexp_par: arguments must be two float32 vectors of one length");
    exp_job_t job = {x->data, y->data, x->shape[0]};
    return TVMBackendParallelLaunch(exp_task, &job, 0);
}
