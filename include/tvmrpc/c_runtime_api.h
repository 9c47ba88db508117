/* c_runtime_api: the classic TVM C ABI that compiled kernels use (RUNTIME.md
 * §0.2, §0.3, §2.4, §2.5). The tvmrpc executable exports every function
 * declared here so that libraries it dlopens resolve them against it.
 * The layouts are fixed by DLPack and TVM; do not reorder anything. */
#ifndef TVMRPC_C_RUNTIME_API_H
#define TVMRPC_C_RUNTIME_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef DLPACK_VERSION
typedef struct {
    int32_t device_type;
    int32_t device_id;
} DLDevice;

typedef struct {
    uint8_t code;
    uint8_t bits;
    uint16_t lanes;
} DLDataType;

typedef struct {
    void *data; /* element 0 is at (char *)data + byte_offset */
    DLDevice device;
    int32_t ndim;
    DLDataType dtype;
    int64_t *shape;
    int64_t *strides; /* NULL = compact row-major */
    uint64_t byte_offset;
} DLTensor;
#endif

/* Type codes of the classic packed ABI (§0.3). */
enum {
    kTVMArgInt = 0,
    kTVMArgUInt = 1,
    kTVMArgFloat = 2,
    kTVMOpaqueHandle = 3,
    kTVMNullptr = 4,
    kTVMDataType = 5,
    kDLDevice = 6,
    kTVMDLTensorHandle = 7,
    kTVMObjectHandle = 8,
    kTVMModuleHandle = 9,
    kTVMPackedFuncHandle = 10,
    kTVMStr = 11,
    kTVMBytes = 12,
    kTVMNDArrayHandle = 13,
    kTVMObjectRValueRefArg = 14,
    kTVMArgBool = 15,
};

typedef union {
    int64_t v_int64;
    double v_float64;
    void *v_handle;
    const char *v_str;
    DLDataType v_type;
    DLDevice v_device;
} TVMValue;

typedef struct {
    const char *data;
    size_t size;
} TVMByteArray;

typedef void *TVMFunctionHandle;

/* What a kernel is (§2.4); resource_handle is NULL for library kernels. */
typedef int (*TVMBackendPackedCFunc)(TVMValue *args, int *type_codes, int num_args,
                                     TVMValue *out_ret_value, int *out_ret_tcode,
                                     void *resource_handle);

typedef struct {
    void *sync_handle;
    int32_t num_task;
} TVMParallelGroupEnv;

typedef int (*FTVMParallelLambda)(int task_id, TVMParallelGroupEnv *penv, void *cdata);

int TVMFuncCall(TVMFunctionHandle func, TVMValue *arg_values, int *type_codes, int num_args,
                TVMValue *ret_value, int *ret_type_code);
void TVMAPISetLastError(const char *msg);
const char *TVMGetLastError(void);
int TVMBackendGetFuncFromEnv(void *mod_node, const char *func_name, TVMFunctionHandle *out);
void *TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code_hint,
                               int dtype_bits_hint);
int TVMBackendFreeWorkspace(int device_type, int device_id, void *ptr);
int TVMBackendParallelLaunch(FTVMParallelLambda flambda, void *cdata, int num_task);
int TVMBackendParallelBarrier(int task_id, TVMParallelGroupEnv *penv);
int TVMBackendRegisterSystemLibSymbol(const char *name, void *ptr);
int TVMBackendRunOnce(void **handle, int (*f)(void *), void *cdata, int nbytes);

/* IEEE binary16 conversions (round to nearest even) for kernels built for
 * hosts without conversion instructions. The __gnu_* names always pass
 * halves as uint16_t; the libgcc names use the platform's _Float16 ABI
 * where the compiler has one (see backend_api.c). */
uint16_t __gnu_f2h_ieee(float f);
float __gnu_h2f_ieee(uint16_t h);

#ifdef __cplusplus
}
#endif

#endif
