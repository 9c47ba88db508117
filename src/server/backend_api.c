/* The C runtime API compiled kernels call back into (RUNTIME.md §2.5,
 * §2.11). The tvmrpc executable is linked with -rdynamic so that every
 * function here resolves the undefined symbols of the libraries it
 * dlopens; LLVM output reaches the same functions through the pointers
 * module.c writes into its __TVM* variables. This file is also compiled
 * into the executable itself, so the linker can never drop it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/module.h"
#include "server/threadpool.h"
#include "tvmrpc/c_runtime_api.h"

#define EXPORT __attribute__((visibility("default")))
#define LAST_ERROR_MAX 8192
#define WORKSPACE_ALIGN 64

/* Per thread, as kernels running in parallel tasks fail independently. */
static _Thread_local char last_error[LAST_ERROR_MAX];

EXPORT void TVMAPISetLastError(const char *msg)
{
    snprintf(last_error, sizeof(last_error), "%s", msg ? msg : "");
}

EXPORT const char *TVMGetLastError(void)
{
    return last_error;
}

EXPORT int TVMFuncCall(TVMFunctionHandle func, TVMValue *arg_values, int *type_codes, int num_args,
                       TVMValue *ret_value, int *ret_type_code)
{
    if (!func || !ret_value || !ret_type_code || num_args < 0 ||
        (num_args > 0 && (!arg_values || !type_codes))) {
        TVMAPISetLastError("TVMFuncCall: invalid arguments");
        return -1;
    }
    return mfunc_call(func, arg_values, type_codes, num_args, ret_value, ret_type_code);
}

EXPORT int TVMBackendGetFuncFromEnv(void *mod_node, const char *func_name, TVMFunctionHandle *out)
{
    return module_env_lookup(mod_node, func_name, out);
}

/* Kernels rely on 64-byte alignment and on a non-NULL block even for 0
 * bytes (§2.5). malloc is thread-safe, which parallel tasks need. */
EXPORT void *TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes,
                                      int dtype_code_hint, int dtype_bits_hint)
{
    char msg[160];
    if (device_type != 1) {
        snprintf(msg, sizeof(msg), "TVMBackendAllocWorkspace: device type %d is not supported",
                 device_type);
        TVMAPISetLastError(msg);
        return NULL;
    }
    if (nbytes > SIZE_MAX - WORKSPACE_ALIGN) {
        TVMAPISetLastError("TVMBackendAllocWorkspace: request too large");
        return NULL;
    }
    size_t n = nbytes ? ((size_t)nbytes + WORKSPACE_ALIGN - 1) & ~(size_t)(WORKSPACE_ALIGN - 1)
                      : WORKSPACE_ALIGN;
    void *p = NULL;
    int e = posix_memalign(&p, WORKSPACE_ALIGN, n);
    if (e != 0) {
        snprintf(msg, sizeof(msg), "TVMBackendAllocWorkspace: cannot allocate %llu bytes: %s",
                 (unsigned long long)nbytes, strerror(e));
        TVMAPISetLastError(msg);
        return NULL;
    }
    return p;
}

EXPORT int TVMBackendFreeWorkspace(int device_type, int device_id, void *ptr)
{
    free(ptr);
    return 0;
}

EXPORT int TVMBackendParallelLaunch(FTVMParallelLambda flambda, void *cdata, int num_task)
{
    char err[LAST_ERROR_MAX];
    if (tp_launch(flambda, cdata, num_task, err, sizeof(err)) == 0)
        return 0;
    TVMAPISetLastError(err);
    return -1;
}

EXPORT int TVMBackendParallelBarrier(int task_id, TVMParallelGroupEnv *penv)
{
    if (tp_barrier(task_id, penv) == 0)
        return 0;
    TVMAPISetLastError("TVMBackendParallelBarrier: not inside a parallel launch");
    return -1;
}

EXPORT int TVMBackendRegisterSystemLibSymbol(const char *name, void *ptr)
{
    return module_syslib_register(name, ptr) == 0 ? 0 : -1;
}

EXPORT int TVMBackendRunOnce(void **handle, int (*f)(void *), void *cdata, int nbytes)
{
    if (*handle)
        return 0;
    *handle = (void *)1;
    return f(cdata);
}

/* ---- IEEE binary16 ------------------------------------------------------------ */

/* Round the low `shift` bits of m away, to nearest even. */
static uint64_t round_shift(uint64_t m, int shift)
{
    if (shift >= 64)
        return 0;
    uint64_t q = m >> shift, rem = m & ((UINT64_C(1) << shift) - 1),
             half = UINT64_C(1) << (shift - 1);
    return q + (rem > half || (rem == half && (q & 1)));
}

/* sign, unbiased exponent and mantissa with `mbits` fraction bits (the
 * leading 1 included) to half bits. */
static uint16_t to_half(uint32_t sign, int e, uint64_t full, int mbits)
{
    if (e > 15)
        return (uint16_t)(sign | 0x7c00);
    if (e >= -14) {
        /* Normal: keep 10 fraction bits; a carry may bump the exponent,
         * which also turns the largest values into infinity correctly. */
        uint64_t m = round_shift(full, mbits - 10);
        return (uint16_t)(sign | (((uint32_t)(e + 15) << 10) + (uint32_t)(m - 0x400)));
    }
    /* Subnormal: value = full * 2^(e - mbits), in units of 2^-24. */
    int shift = mbits - 10 + (-14 - e);
    return (uint16_t)(sign | (uint32_t)round_shift(full, shift));
}

static uint16_t f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof(x));
    uint32_t sign = (x >> 16) & 0x8000, exp = (x >> 23) & 0xff, man = x & 0x7fffff;
    if (exp == 0xff)
        return (uint16_t)(sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0));
    if (exp == 0)
        return (uint16_t)sign; /* float subnormals are far below half's range */
    return to_half(sign, (int)exp - 127, man | 0x800000, 23);
}

static uint16_t f64_to_f16(double d)
{
    uint64_t x;
    memcpy(&x, &d, sizeof(x));
    uint32_t sign = (uint32_t)(x >> 48) & 0x8000, exp = (uint32_t)(x >> 52) & 0x7ff;
    uint64_t man = x & ((UINT64_C(1) << 52) - 1);
    if (exp == 0x7ff)
        return (uint16_t)(sign | 0x7c00 | (man ? 0x200 | (uint32_t)(man >> 42) : 0));
    if (exp == 0)
        return (uint16_t)sign;
    return to_half(sign, (int)exp - 1023, man | (UINT64_C(1) << 52), 52);
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, x;
    if (exp == 0x1f) {
        x = sign | 0x7f800000 | (man << 13);
    } else if (exp != 0) {
        x = sign | ((exp - 15 + 127) << 23) | (man << 13);
    } else if (man == 0) {
        x = sign;
    } else {
        int e = -14;
        while (!(man & 0x400)) {
            man <<= 1;
            e--;
        }
        x = sign | ((uint32_t)(e + 127) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &x, sizeof(f));
    return f;
}

/* LLVM's historical names: halves travel as uint16_t on every target. */
EXPORT __attribute__((weak)) uint16_t __gnu_f2h_ieee(float f)
{
    return f32_to_f16(f);
}

EXPORT __attribute__((weak)) float __gnu_h2f_ieee(uint16_t h)
{
    return f16_to_f32(h);
}

/* libgcc's names. Where the compiler knows _Float16 on x86 and AArch64,
 * today's libgcc and LLVM pass halves in floating-point registers, so we
 * must too; elsewhere they are integers, as TVM's runtime defines them. */
#if defined(__FLT16_MAX__) && (defined(__x86_64__) || defined(__i386__) || defined(__aarch64__))
typedef _Float16 half_abi_t;
#else
typedef uint16_t half_abi_t;
#endif

half_abi_t __truncsfhf2(float f);
half_abi_t __truncdfhf2(double d);
float __extendhfsf2(half_abi_t h);

static half_abi_t half_out(uint16_t bits)
{
    half_abi_t h;
    memcpy(&h, &bits, sizeof(h));
    return h;
}

EXPORT __attribute__((weak)) half_abi_t __truncsfhf2(float f)
{
    return half_out(f32_to_f16(f));
}

EXPORT __attribute__((weak)) half_abi_t __truncdfhf2(double d)
{
    return half_out(f64_to_f16(d));
}

EXPORT __attribute__((weak)) float __extendhfsf2(half_abi_t h)
{
    uint16_t bits;
    memcpy(&bits, &h, sizeof(bits));
    return f16_to_f32(bits);
}
