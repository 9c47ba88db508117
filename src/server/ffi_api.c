/* The tvm-ffi C API ffi-generation kernels call back into (RUNTIME.md
 * §2.9, §2.11). Like backend_api.c, this file is compiled into the tvmrpc
 * executable itself (which is linked with -rdynamic), so every function
 * here is in its dynamic symbol table and resolves the undefined symbols
 * of the libraries it dlopens; LLVM output reaches some of them through
 * the context-symbol variables module_ffi.c fills instead.
 *
 * Errors share backend_api.c's thread-local last error, stored as
 * "<kind>: <message>" (see module_ffi.c). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "server/module.h"
#include "server/module_ffi.h"
#include "tvmrpc/c_ffi_abi.h"

#define EXPORT __attribute__((visibility("default")))
#define MAX_STREAMS 16

EXPORT int TVMFFIFunctionCall(TVMFFIObjectHandle func, TVMFFIAny *args, int32_t num_args,
                              TVMFFIAny *result)
{
    return mffi_function_call(func, args, num_args, result);
}

EXPORT void TVMFFIErrorSetRaisedFromCStr(const char *kind, const char *message)
{
    mffi_set_error(kind, &message, 1);
}

/* Every kernel with an assertion references this one as an undefined
 * symbol; NULL parts are skipped, the whole text is capped at 8 KiB. */
EXPORT void TVMFFIErrorSetRaisedFromCStrParts(const char *kind, const char **message_parts,
                                              int32_t num_parts)
{
    mffi_set_error(kind, message_parts, message_parts && num_parts > 0 ? num_parts : 0);
}

/* The same search as TVMBackendGetFuncFromEnv; a miss is a RuntimeError. */
EXPORT int TVMFFIEnvModLookupFromImports(TVMFFIObjectHandle library_ctx, const char *func_name,
                                         TVMFFIObjectHandle *out)
{
    if (module_env_lookup(library_ctx, func_name, out) == 0)
        return 0;
    const char *msg = TVMGetLastError();
    if (strncmp(msg, "Cannot find function", 20) == 0)
        TVMFFIErrorSetRaisedFromCStr("RuntimeError", msg);
    return -1;
}

static pthread_mutex_t once_mu;
static pthread_once_t once_setup_done = PTHREAD_ONCE_INIT;

/* Recursive: an init_func may itself initialise another handle. */
static void once_setup(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&once_mu, &a);
    pthread_mutexattr_destroy(&a);
}

/* Double-checked: acquire load, then one process-wide lock, re-check,
 * init, release store, so a handle is never seen half-initialised. */
EXPORT int TVMFFIHandleInitOnce(void **handle_addr, int (*init_func)(void **result))
{
    if (!handle_addr || !init_func) {
        TVMFFIErrorSetRaisedFromCStr("ValueError", "TVMFFIHandleInitOnce: NULL argument");
        return -1;
    }
    if (__atomic_load_n(handle_addr, __ATOMIC_ACQUIRE))
        return 0;
    pthread_once(&once_setup_done, once_setup);
    pthread_mutex_lock(&once_mu);
    int rc = 0;
    if (!__atomic_load_n(handle_addr, __ATOMIC_ACQUIRE)) {
        void *r = NULL;
        rc = init_func(&r);
        if (rc == 0 && !r) {
            TVMFFIErrorSetRaisedFromCStr("RuntimeError", "init_func must return a non-NULL handle");
            rc = -1;
        }
        if (rc == 0)
            __atomic_store_n(handle_addr, r, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&once_mu);
    return rc;
}

EXPORT int TVMFFIEnvModRegisterSystemLibSymbol(const char *name, void *symbol)
{
    return module_syslib_register(name, symbol) == 0 ? 0 : -1;
}

EXPORT int TVMFFIEnvModRegisterContextSymbol(const char *name, void *symbol)
{
    return mffi_register_context_symbol(name, symbol);
}

/* ---- stubs for a CPU server ------------------------------------------------------ */

/* Streams are only recorded, per thread: nothing on a CPU uses them. */
static _Thread_local struct {
    int32_t type, id;
    TVMFFIStreamHandle stream;
} streams[MAX_STREAMS];
static _Thread_local int nstreams;

static int stream_slot(int32_t device_type, int32_t device_id)
{
    for (int i = 0; i < nstreams; i++)
        if (streams[i].type == device_type && streams[i].id == device_id)
            return i;
    return -1;
}

EXPORT int TVMFFIEnvSetStream(int32_t device_type, int32_t device_id, TVMFFIStreamHandle stream,
                              TVMFFIStreamHandle *opt_out_original_stream)
{
    int i = stream_slot(device_type, device_id);
    if (i < 0 && nstreams == MAX_STREAMS) {
        TVMFFIErrorSetRaisedFromCStr("RuntimeError", "TVMFFIEnvSetStream: too many devices");
        return -1;
    }
    if (i < 0) {
        i = nstreams++;
        streams[i].type = device_type;
        streams[i].id = device_id;
        streams[i].stream = NULL;
    }
    if (opt_out_original_stream)
        *opt_out_original_stream = streams[i].stream;
    streams[i].stream = stream;
    return 0;
}

/* NULL (the default stream) unless this thread set one. */
EXPORT TVMFFIStreamHandle TVMFFIEnvGetStream(int32_t device_type, int32_t device_id)
{
    int i = stream_slot(device_type, device_id);
    return i < 0 ? NULL : streams[i].stream;
}

EXPORT int TVMFFIEnvTensorAlloc(DLTensor *prototype, TVMFFIObjectHandle *out)
{
    TVMFFIErrorSetRaisedFromCStr("RuntimeError",
                                 "TVMFFIEnvTensorAlloc is not supported by this server");
    return -1;
}

/* Signals reach the worker as signals; there is nothing to poll. */
EXPORT int TVMFFIEnvCheckSignals(void)
{
    return 0;
}
