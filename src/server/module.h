/* module: TVM modules and functions on the server (RUNTIME.md §1.3, §1.4,
 * §2.1-§2.6): loading compiled libraries, their import trees, function
 * lookup, and calling kernels with the classic packed ABI.
 *
 * Every callable thing is an mfunc: a packed C function plus a resource
 * pointer, exactly what a kernel is (§2.4). Kernels, natively written
 * functions (time evaluator, random fill, later the graph executor) and
 * wrapped global functions all go through mfunc_call, which is also what
 * TVMFuncCall does for compiled code. Modules and functions are reference
 * counted: a function keeps its module alive, a module its imports, a
 * library module its dlopen handle. */
#ifndef TVMRPC_MODULE_H
#define TVMRPC_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "server/session.h"
#include "tvmrpc/c_runtime_api.h"

typedef struct mod mod_t;
typedef struct mfunc mfunc_t;

/* A kind of module. get_function looks at the module's own functions only
 * (imports are handled by mod_get_function): 0 with *out a new reference,
 * 0 with *out NULL when absent, -1 with err. */
typedef struct mod_vt {
    const char *type_key;
    int (*get_function)(mod_t *m, const char *name, mfunc_t **out, char *err, size_t errlen);
    void (*destroy)(mod_t *m); /* frees m->self; may be NULL */
} mod_vt_t;

struct mod {
    int refs;
    const mod_vt_t *vt;
    void *self;
    mod_t **imports;
    int nimports, capimports;
};

/* A new module with one reference, or NULL (then destroy(self) ran). */
mod_t *mod_new(const mod_vt_t *vt, void *self);
void mod_retain(mod_t *m);
void mod_release(mod_t *m);
/* Append child to parent's imports (retains it); refuses cycles with
 * "Cyclic dependency detected during import". */
int mod_import(mod_t *parent, mod_t *child, char *err, size_t errlen);
/* Own functions, then (query_imports) imports depth-first in import order. */
int mod_get_function(mod_t *m, const char *name, int query_imports, mfunc_t **out, char *err,
                     size_t errlen);

struct mfunc {
    int refs; /* < 0: immortal (global functions) */
    TVMBackendPackedCFunc fn;
    void *resource;
    void (*free_resource)(void *resource);
    mod_t *mod; /* kept alive while the function is; may be NULL */
    char name[];
};

/* A new function with one reference; retains mod. NULL on OOM (then
 * free_resource(resource) ran). */
mfunc_t *mfunc_new(const char *name, TVMBackendPackedCFunc fn, void *resource,
                   void (*free_resource)(void *), mod_t *mod);
void mfunc_retain(mfunc_t *f);
void mfunc_release(mfunc_t *f);
/* Call with the packed ABI; *ret_code is 4 (none) unless the callee sets
 * it. -1 on failure with the message in TVMGetLastError(). Returned
 * module (9) and function (10) handles are new references. */
int mfunc_call(mfunc_t *f, TVMValue *args, int *codes, int n, TVMValue *ret, int *ret_code);
/* Call on behalf of a client: arrays are checked against the session's
 * allocations and passed as DLTensor*, the result becomes an RPC value. */
int mfunc_rpc_call(session_t *s, mfunc_t *f, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                   char *err, size_t errlen);

/* Objects and arrays that native functions return (packed codes 8 and 13),
 * new references like returned modules and functions. A code-8 handle is
 * an mobj_t; a code-13 handle is the DLTensor that opens an mnd_t. A
 * client receives an object as an opaque handle and an array as the
 * tensor plus a handle; freeing the handle drops the reference. */
typedef struct mobj mobj_t;
struct mobj {
    uint64_t magic; /* tells our objects from foreign pointers */
    int refs;
    const char *type_key;
    void (*destroy)(mobj_t *o); /* frees o */
};

/* Initialise an object the caller allocated: one reference. */
void mobj_init(mobj_t *o, const char *type_key, void (*destroy)(mobj_t *o));
void mobj_retain(mobj_t *o);
void mobj_release(mobj_t *o);

typedef struct mnd {
    DLTensor dl; /* first: a code-13 handle points here */
    mobj_t obj;
    int64_t shape[RPC_MAX_NDIM];
    rpc_tensor_t wire; /* what a client is sent */
    void (*release)(void *owner);
    void *owner;
} mnd_t;

/* A compact array viewing view's memory (shape copied); release(owner)
 * runs when the last reference goes. NULL on OOM or a bad view (then
 * release(owner) ran). */
mnd_t *mnd_new(const DLTensor *view, void (*release)(void *owner), void *owner);
static inline void mnd_release(mnd_t *a)
{
    if (a)
        mobj_release(&a->obj);
}
/* Drop the reference a packed result holds (codes 8, 9, 10, 13). */
void module_value_release(TVMValue *v, int code);

/* The global function name as an mfunc (borrowed; lives for the process):
 * packed-ABI natives first, then the RPC global table. NULL if absent. */
mfunc_t *module_global_function(const char *name);

/* A global function written directly against the packed ABI, so compiled
 * code can call it with its own DLTensors (workspace memory included). */
typedef struct native_fn {
    const char *name;
    TVMBackendPackedCFunc fn;
} native_fn_t;

/* Session handles for modules and functions. *_handle_new takes over one
 * reference (released when the client frees the handle); 0 on OOM. */
uint64_t module_handle_new(session_t *s, mod_t *m);
mod_t *module_from_handle(const session_t *s, uint64_t h);
uint64_t mfunc_handle_new(session_t *s, mfunc_t *f);
mfunc_t *mfunc_from_handle(const session_t *s, uint64_t h);

/* Packed import blob entries (§2.3): a loader reads exactly its entry's
 * payload from r and returns a new module. To support a kind (as
 * GraphExecutorFactory is, or relax.VMExecutable), add it to
 * blob_loaders[] in module.c; unknown kinds fail the whole load. */
typedef int (*blob_loader_fn)(rd_t *r, mod_t **out, char *err, size_t errlen);

/* Load a shared library as a module (§2.1, §2.2, §2.7): the returned root
 * (new reference) is the library module or the root of its import blob.
 * ffi-generation libraries are detected and loaded by module_ffi.c. */
int module_load_library(const char *path, mod_t **out, char *err, size_t errlen);
/* Link an uploaded .o or .tar into exactly "<path>.so" with the C compiler
 * (§1.2). out receives that path. */
int module_link(const char *path, char *out, size_t outlen, char *err, size_t errlen);
/* Compiler used by module_link (the server's --cc); NULL restores the
 * default: $CC, else the first of gcc, cc, clang on $PATH. */
void module_set_cc(const char *cc);
/* Can libraries we dlopen see our exported runtime symbols? (No in a
 * fully static build.) */
int module_can_load(void);

/* Hooks behind the backend API (backend_api.c). */
int module_env_lookup(void *ctx, const char *name, TVMFunctionHandle *out);
int module_syslib_register(const char *name, void *ptr);

/* Global functions (registered in globals.c). */
int module_fn_load_module(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                          char *err, size_t errlen);
int module_fn_download_linked(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                              char *err, size_t errlen);
int module_fn_get_function(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                           char *err, size_t errlen);
int module_fn_import(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret, char *err,
                     size_t errlen);
int module_fn_system_lib(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                         char *err, size_t errlen);
/* "ffi.SystemLib" (§2.10): the ffi-generation system library of a prefix
 * (module_ffi.c resolves its functions as __tvm_ffi_<prefix><name>). */
int module_fn_ffi_system_lib(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                             char *err, size_t errlen);

/* Parsers, exposed for tests and fuzzing. module_blob_check parses a
 * classic import blob payload (§2.3, without its length word) over a
 * library with no symbols and frees what it built; 0 or -1 with err. */
int module_blob_check(const uint8_t *p, size_t n, char *err, size_t errlen);
/* The newline-separated member names of a tar listing (modified in place):
 * 1 if every one stays inside the extraction directory, else 0 with the
 * first bad one in bad. */
int module_tar_names_ok(char *listing, char *bad, size_t badlen);

#endif
