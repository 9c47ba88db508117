/* module_ffi: ffi-generation libraries (TVM >= 0.21, tvm-ffi; RUNTIME.md
 * §2.7-§2.10) on top of module.c's libraries, modules and functions.
 *
 * An ffi library is a lib (module.c) with its ffi flag set: module.c
 * keeps dlopen, the context token, the system-lib registry and the module
 * tree, and calls the mffi_* hooks below where the generations differ
 * (loading, function lookup). An ffi kernel becomes an ordinary mfunc
 * whose packed function converts to TVMFFIAny and calls the safe-call
 * symbol, so every caller (clients, the time evaluator, TVMFuncCall,
 * TVMFFIFunctionCall) takes the one mfunc_call path. */
#ifndef TVMRPC_MODULE_FFI_H
#define TVMRPC_MODULE_FFI_H

#include <stddef.h>
#include <stdint.h>

#include "server/module.h"
#include "tvmrpc/c_ffi_abi.h"

/* ---- what module.c offers (defined there) ------------------------------------ */

typedef struct lib lib_t;

/* The library's own symbol (system libs: registry[prefix + name], else
 * registry[name]); *is_func is 1 for code, 0 for data, -1 unknown. */
void *module_lib_sym(lib_t *l, const char *name, int *is_func);
/* The symbol of ffi function `name` (§2.7, §2.10): "__tvm_ffi_<name>", for
 * system libs "__tvm_ffi_<prefix><name>" else "__tvm_ffi_<name>". */
void *module_lib_ffi_func_sym(lib_t *l, const char *name, int *is_func);
/* A new library module wrapping l (one reference), or NULL on OOM. */
mod_t *module_lib_module(lib_t *l);
/* Bytes readable from p to the end of the loaded segment holding it. */
int module_seg_avail(const void *p, size_t *avail);
/* The process-lifetime system library of a prefix, per generation. */
int module_syslib_get(const char *prefix, int ffi, mod_t **out, char *err, size_t errlen);

/* ---- hooks module.c calls --------------------------------------------------- */

/* Is l an ffi library? It is when it defines __tvm_ffi__library_ctx or
 * __tvm_ffi__library_bin (every TVM >= 0.21 artifact defines the first),
 * or, for hand-written libraries, a __tvm_ffi_main function and neither
 * classic marker (__tvm_module_ctx, __tvm_dev_mblob). */
int mffi_detect(lib_t *l);
/* The loading procedure of §2.7 steps 2-3: context symbols, then the
 * import blob or a plain library module. *root and *ctxm get new
 * references (*ctxm NULL when a blob has no "_lib"). module.c then writes
 * the context token into __tvm_ffi__library_ctx. */
int mffi_lib_init(lib_t *l, mod_t **root, mod_t **ctxm, char *err, size_t errlen);
/* GetFunction(name) of an ffi library module m wrapping l. */
int mffi_get_function(lib_t *l, mod_t *m, const char *name, mfunc_t **out, char *err,
                      size_t errlen);

/* ---- ffi functions ------------------------------------------------------------ */

/* An mfunc calling safe-call kernel fn (keeps mod alive). */
mfunc_t *mffi_func_new(const char *name, TVMFFISafeCallType fn, mod_t *mod);
/* TVMFFIFunctionCall on one of our functions (§2.9). */
int mffi_function_call(mfunc_t *f, const TVMFFIAny *args, int32_t n, TVMFFIAny *result);
/* TVMFFIEnvModRegisterContextSymbol: written into libraries loaded later. */
int mffi_register_context_symbol(const char *name, void *value);
/* Store "<kind>: <message parts...>" as this thread's last error. */
void mffi_set_error(const char *kind, const char *const *parts, int nparts);

/* ---- the import blob (§2.8) --------------------------------------------------- */

#define MFFI_MAX_MODULES 4096
#define MFFI_MAX_KIND 256

typedef struct mffi_entry {
    const uint8_t *kind;
    size_t kind_len;
    const uint8_t *payload; /* NULL for "_lib" */
    size_t payload_len;
    int is_lib;
} mffi_entry_t;

typedef struct mffi_blob {
    uint64_t *indptr, *child; /* the CSR import tree, host order */
    size_t nmods, nchild;     /* indptr has nmods + 1 entries */
    mffi_entry_t *entries;    /* nmods; point into the parsed bytes */
} mffi_blob_t;

/* Parse the blob at p, of which avail bytes are readable (the u64 length
 * included). Every length is checked against what remains; the tree must
 * match the entries (rows non-decreasing, children in range), at most one
 * "_lib", no trailing bytes. 0, or -1 with err (b is then empty). */
int mffi_blob_parse(const uint8_t *p, size_t avail, mffi_blob_t *b, char *err, size_t errlen);
void mffi_blob_free(mffi_blob_t *b);

#endif
