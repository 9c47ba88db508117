/* c_ffi_abi: the tvm-ffi C ABI that ffi-generation (TVM >= 0.21) compiled
 * libraries use (RUNTIME.md §0.4, §2.7, §2.9). The tvmrpc executable
 * exports every function declared here, so libraries it dlopens resolve
 * them against it; LLVM output reaches some of them through the
 * context-symbol variables the loader fills instead. The layouts are
 * fixed by tvm-ffi; do not reorder anything. */
#ifndef TVMRPC_C_FFI_ABI_H
#define TVMRPC_C_FFI_ABI_H

#include <stddef.h>
#include <stdint.h>

#include "tvmrpc/c_runtime_api.h" /* DLPack types, TVMBackend* */

#ifdef __cplusplus
extern "C" {
#endif

/* Type indices (§0.4). Every index >= kTVMFFIStaticObjectBegin is a
 * reference-counted object whose header is a TVMFFIObject. */
enum {
    kTVMFFINone = 0,
    kTVMFFIInt = 1,
    kTVMFFIBool = 2,
    kTVMFFIFloat = 3,
    kTVMFFIOpaquePtr = 4,
    kTVMFFIDataType = 5,
    kTVMFFIDevice = 6,
    kTVMFFIDLTensorPtr = 7,
    kTVMFFIRawStr = 8,
    kTVMFFIByteArrayPtr = 9,
    kTVMFFIObjectRValueRef = 10,
    kTVMFFISmallStr = 11,   /* <= 7 bytes in v_bytes, length in zero_padding */
    kTVMFFISmallBytes = 12, /* same, for bytes */
    kTVMFFIStaticObjectBegin = 64,
    kTVMFFIObject = 64,
    kTVMFFIStr = 65,
    kTVMFFIBytes = 66,
    kTVMFFIError = 67,
    kTVMFFIFunction = 68,
    kTVMFFIShape = 69,
    kTVMFFITensor = 70, /* the DLTensor lives right after the 24-byte header */
    kTVMFFIArray = 71,
    kTVMFFIMap = 72,
    kTVMFFIModule = 73,
};

/* Flags of TVMFFIObject.deleter. */
enum {
    kTVMFFIObjectDeleterFlagBitMaskStrong = 1, /* destruct */
    kTVMFFIObjectDeleterFlagBitMaskWeak = 2,   /* free the memory */
    kTVMFFIObjectDeleterFlagBitMaskBoth = 3,
};

/* 16 bytes: a value of any type, passed by value. */
typedef struct {
    int32_t type_index;
    uint32_t zero_padding; /* small-string/bytes length for 11 and 12; else 0 */
    union {
        int64_t v_int64;
        double v_float64;
        void *v_ptr;
        const char *v_c_str;
        void *v_obj;
        DLDataType v_dtype;
        DLDevice v_device;
        char v_bytes[8];
        uint64_t v_uint64;
    };
} TVMFFIAny;

/* 24-byte header of every heap object. combined_ref_count holds the
 * strong count in its low 32 bits and the weak count in its high 32 bits;
 * a fresh object has both at 1. */
typedef struct {
    uint64_t combined_ref_count;
    int32_t type_index;
    uint32_t padding;
    void (*deleter)(void *self, int flags);
} TVMFFIObject;

/* Layout-compatible with TVMByteArray. Str and Bytes objects hold one
 * right after their header. */
typedef struct {
    const char *data;
    size_t size;
} TVMFFIByteArray;

typedef void *TVMFFIObjectHandle;
typedef void *TVMFFIStreamHandle;

/* What an ffi kernel is (§2.7): self is NULL for library kernels, result
 * is set to None by the caller. 0 = success, -1 = error raised with
 * TVMFFIErrorSetRaisedFromCStr(Parts), -2 = environment error. */
typedef int (*TVMFFISafeCallType)(void *self, const TVMFFIAny *args, int32_t num_args,
                                  TVMFFIAny *result);

/* §2.9: the functions compiled code calls. */
int TVMFFIFunctionCall(TVMFFIObjectHandle func, TVMFFIAny *args, int32_t num_args,
                       TVMFFIAny *result);
void TVMFFIErrorSetRaisedFromCStr(const char *kind, const char *message);
void TVMFFIErrorSetRaisedFromCStrParts(const char *kind, const char **message_parts,
                                       int32_t num_parts);
int TVMFFIEnvModLookupFromImports(TVMFFIObjectHandle library_ctx, const char *func_name,
                                  TVMFFIObjectHandle *out);
int TVMFFIHandleInitOnce(void **handle_addr, int (*init_func)(void **result));
int TVMFFIEnvModRegisterSystemLibSymbol(const char *name, void *symbol);
int TVMFFIEnvModRegisterContextSymbol(const char *name, void *symbol);

/* Environment functions TVM uses in GPU runtimes and contrib libraries;
 * stubs on this CPU server (see docs/modules.md). */
int TVMFFIEnvSetStream(int32_t device_type, int32_t device_id, TVMFFIStreamHandle stream,
                       TVMFFIStreamHandle *opt_out_original_stream);
TVMFFIStreamHandle TVMFFIEnvGetStream(int32_t device_type, int32_t device_id);
int TVMFFIEnvTensorAlloc(DLTensor *prototype, TVMFFIObjectHandle *out);
int TVMFFIEnvCheckSignals(void);

#ifdef __cplusplus
}
#endif

#endif
