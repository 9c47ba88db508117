/* ffi-generation libraries (RUNTIME.md §0.4, §2.7-§2.10): detection, the
 * context symbols, the import blob, placeholder modules for kinds this
 * server cannot run, and calls across the two ABIs.
 *
 * Calls. An ffi kernel is an mfunc whose packed function (ffi_packed)
 * turns the classic arguments into TVMFFIAny, calls the safe-call symbol
 * and turns the result back. Clients (mfunc_rpc_call), the time evaluator
 * and classic compiled code (TVMFuncCall) therefore call ffi kernels the
 * way they call everything else. The other direction, TVMFFIFunctionCall
 * from ffi compiled code, calls ffi kernels directly and converts for all
 * other functions (globals, natives, classic kernels).
 *
 * Errors. There is one thread-local last error (backend_api.c): an ffi
 * error (kind, message) is stored as "<kind>: <message>", the form the
 * client receives, so no conversion is needed at either boundary. */
#include "server/module_ffi.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

#define ERR_MAX 8192
#define RESULT_MAX ((size_t)1 << 30) /* largest string/bytes result we copy */
#define SMALL_MAX 7                  /* SmallStr / SmallBytes capacity */
#define MAX_CHILDREN (MFFI_MAX_MODULES * 16)
#define MAX_CTX_USER 64
#define STACK_ARGS 16

static const uint64_t REF_STRONG_ONE = 1, REF_WEAK_ONE = (uint64_t)1 << 32;

/* ---- errors ------------------------------------------------------------------- */

static _Thread_local char err_buf[ERR_MAX];

void mffi_set_error(const char *kind, const char *const *parts, int nparts)
{
    size_t at = 0;
    int n = snprintf(err_buf, sizeof(err_buf), "%s: ", kind && *kind ? kind : "RuntimeError");
    at = n > 0 && (size_t)n < sizeof(err_buf) ? (size_t)n : 0;
    for (int i = 0; i < nparts && at + 1 < sizeof(err_buf); i++) {
        if (!parts[i])
            continue;
        size_t k = strnlen(parts[i], sizeof(err_buf) - 1 - at);
        memcpy(err_buf + at, parts[i], k);
        at += k;
    }
    err_buf[at] = '\0';
    TVMAPISetLastError(err_buf);
}

static void raise1(const char *kind, const char *msg)
{
    mffi_set_error(kind, &msg, 1);
}

/* ---- objects ------------------------------------------------------------------ */

/* Drop one strong reference (tvm-ffi's protocol: both counts start at 1;
 * the strong count reaching 0 destructs, the weak count reaching 0 frees). */
static void obj_decref(void *p)
{
    TVMFFIObject *o = p;
    if (!o)
        return;
    uint64_t before = __atomic_fetch_sub(&o->combined_ref_count, REF_STRONG_ONE, __ATOMIC_RELEASE);
    if ((before & 0xffffffffu) != 1)
        return;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (before == (REF_STRONG_ONE | REF_WEAK_ONE)) {
        if (o->deleter)
            o->deleter(o, kTVMFFIObjectDeleterFlagBitMaskBoth);
        return;
    }
    if (o->deleter)
        o->deleter(o, kTVMFFIObjectDeleterFlagBitMaskStrong);
    if (__atomic_fetch_sub(&o->combined_ref_count, REF_WEAK_ONE, __ATOMIC_RELEASE) ==
        REF_WEAK_ONE) {
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (o->deleter)
            o->deleter(o, kTVMFFIObjectDeleterFlagBitMaskWeak);
    }
}

/* Str and Bytes objects: header, then a byte array, then (ours) the data. */
static const TVMFFIByteArray *obj_bytes(void *obj)
{
    return (const TVMFFIByteArray *)(void *)((char *)obj + sizeof(TVMFFIObject));
}

typedef struct strobj {
    TVMFFIObject hdr;
    TVMFFIByteArray ba;
    char data[];
} strobj_t;

static void strobj_deleter(void *self, int flags)
{
    if (flags & kTVMFFIObjectDeleterFlagBitMaskWeak)
        free(self);
}

/* A string or bytes value for compiled code: inline when it fits, else a
 * new Str/Bytes object (which compiled code owns, and in practice leaks). */
static int any_from_bytes(const char *p, size_t n, int is_str, TVMFFIAny *a)
{
    memset(a, 0, sizeof(*a));
    if (n <= SMALL_MAX) {
        a->type_index = is_str ? kTVMFFISmallStr : kTVMFFISmallBytes;
        a->zero_padding = (uint32_t)n;
        memcpy(a->v_bytes, p, n);
        return 0;
    }
    strobj_t *o = n < RESULT_MAX ? malloc(sizeof(*o) + n + 1) : NULL;
    if (!o) {
        raise1("RuntimeError", "out of memory for a string result");
        return -1;
    }
    o->hdr.combined_ref_count = REF_STRONG_ONE | REF_WEAK_ONE;
    o->hdr.type_index = is_str ? kTVMFFIStr : kTVMFFIBytes;
    o->hdr.padding = 0;
    o->hdr.deleter = strobj_deleter;
    memcpy(o->data, p, n);
    o->data[n] = '\0';
    o->ba.data = o->data;
    o->ba.size = n;
    a->type_index = o->hdr.type_index;
    a->v_obj = o;
    return 0;
}

/* ---- classic packed arguments to TVMFFIAny ------------------------------------ */

static int any_from_packed(const TVMValue *v, int code, TVMFFIAny *a, int i)
{
    memset(a, 0, sizeof(*a));
    switch (code) {
    case kTVMNullptr:
        a->type_index = kTVMFFINone;
        return 0;
    case kTVMArgInt:
    case kTVMArgUInt:
        a->type_index = kTVMFFIInt;
        a->v_int64 = v->v_int64;
        return 0;
    case kTVMArgBool:
        a->type_index = kTVMFFIBool;
        a->v_int64 = v->v_int64 != 0;
        return 0;
    case kTVMArgFloat:
        a->type_index = kTVMFFIFloat;
        a->v_float64 = v->v_float64;
        return 0;
    case kTVMOpaqueHandle:
        a->type_index = kTVMFFIOpaquePtr;
        a->v_ptr = v->v_handle;
        return 0;
    case kTVMDataType:
        a->type_index = kTVMFFIDataType;
        a->v_dtype = v->v_type;
        return 0;
    case kDLDevice:
        a->type_index = kTVMFFIDevice;
        a->v_device = v->v_device;
        return 0;
    case kTVMDLTensorHandle:
    case kTVMNDArrayHandle: /* an mnd's handle is its DLTensor */
        a->type_index = kTVMFFIDLTensorPtr;
        a->v_ptr = v->v_handle;
        return 0;
    case kTVMStr:
        a->type_index = kTVMFFIRawStr; /* a valid argument (AnyView), never a result */
        a->v_c_str = v->v_str;
        return 0;
    case kTVMBytes: /* TVMByteArray and TVMFFIByteArray share their layout */
        a->type_index = kTVMFFIByteArrayPtr;
        a->v_ptr = v->v_handle;
        return 0;
    default: {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "argument %d (type code %d): modules, functions and objects cannot be "
                 "passed to ffi compiled code",
                 i, code);
        raise1("TypeError", msg);
        return -1;
    }
    }
}

/* Results copied out of ffi values live here until the thread's next call;
 * callers copy them at once (into the session scratch, or discard them). */
static _Thread_local struct {
    char *p;
    size_t cap;
    TVMByteArray ba;
} tl_res;

static int res_keep(const char *p, size_t n, int is_str, TVMValue *v, int *code)
{
    if (n >= RESULT_MAX) {
        raise1("ValueError", "string or bytes result too large");
        return -1;
    }
    if (n + 1 > tl_res.cap) {
        char *np = realloc(tl_res.p, n + 1);
        if (!np) {
            raise1("RuntimeError", "out of memory for a result");
            return -1;
        }
        tl_res.p = np;
        tl_res.cap = n + 1;
    }
    if (n)
        memcpy(tl_res.p, p, n);
    tl_res.p[n] = '\0';
    if (is_str) {
        v->v_str = tl_res.p;
        *code = kTVMStr;
    } else {
        tl_res.ba.data = tl_res.p;
        tl_res.ba.size = n;
        v->v_handle = &tl_res.ba;
        *code = kTVMBytes;
    }
    return 0;
}

/* Objects: Str and Bytes are copied; every object reference is dropped. */
static int packed_from_obj(TVMFFIAny *r, TVMValue *v, int *code, const char *fname)
{
    int rc = -1;
    if (r->v_obj && (r->type_index == kTVMFFIStr || r->type_index == kTVMFFIBytes)) {
        const TVMFFIByteArray *ba = obj_bytes(r->v_obj);
        rc = res_keep(ba->data ? ba->data : "", ba->data ? ba->size : 0,
                      r->type_index == kTVMFFIStr, v, code);
    } else {
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "%s returned an object of type index %d, which this server cannot send", fname,
                 r->type_index);
        raise1("TypeError", msg);
    }
    obj_decref(r->v_obj);
    return rc;
}

static int packed_from_result(TVMFFIAny *r, TVMValue *v, int *code, const char *fname)
{
    switch (r->type_index) {
    case kTVMFFINone:
        *code = kTVMNullptr;
        return 0;
    case kTVMFFIInt:
        v->v_int64 = r->v_int64;
        *code = kTVMArgInt;
        return 0;
    case kTVMFFIBool:
        v->v_int64 = r->v_int64 != 0;
        *code = kTVMArgBool;
        return 0;
    case kTVMFFIFloat:
        v->v_float64 = r->v_float64;
        *code = kTVMArgFloat;
        return 0;
    case kTVMFFIOpaquePtr:
        v->v_handle = r->v_ptr;
        *code = kTVMOpaqueHandle;
        return 0;
    case kTVMFFIDataType:
        v->v_type = r->v_dtype;
        *code = kTVMDataType;
        return 0;
    case kTVMFFIDevice:
        v->v_device = r->v_device;
        *code = kDLDevice;
        return 0;
    case kTVMFFIRawStr: /* not a valid result, but unambiguous */
        return res_keep(r->v_c_str ? r->v_c_str : "",
                        r->v_c_str ? strnlen(r->v_c_str, RESULT_MAX) : 0, 1, v, code);
    case kTVMFFISmallStr:
    case kTVMFFISmallBytes:
        if (r->zero_padding > SMALL_MAX)
            break;
        return res_keep(r->v_bytes, r->zero_padding, r->type_index == kTVMFFISmallStr, v, code);
    default:
        if (r->type_index >= kTVMFFIStaticObjectBegin)
            return packed_from_obj(r, v, code, fname);
        break;
    }
    char msg[200];
    snprintf(msg, sizeof(msg), "%s returned a value of type index %d, which cannot be sent", fname,
             r->type_index);
    raise1("TypeError", msg);
    return -1;
}

/* ---- ffi kernels as mfuncs -------------------------------------------------------- */

static TVMFFISafeCallType safe_of(void *resource)
{
    TVMFFISafeCallType fn;
    memcpy(&fn, &resource, sizeof(fn));
    return fn;
}

/* The packed function of every ffi kernel; resource is the safe-call. */
static int ffi_packed(TVMValue *args, int *codes, int n, TVMValue *ret, int *ret_code,
                      void *resource)
{
    TVMFFIAny stack[STACK_ARGS] = {{0}}, *a = stack;
    if (n > STACK_ARGS && !(a = malloc((size_t)n * sizeof(*a)))) {
        raise1("RuntimeError", "out of memory for the arguments");
        return -1;
    }
    int rc = 0;
    for (int i = 0; rc == 0 && i < n; i++)
        rc = any_from_packed(&args[i], codes[i], &a[i], i);
    TVMFFIAny r;
    memset(&r, 0, sizeof(r)); /* None, as the callee expects */
    if (rc == 0 && safe_of(resource)(NULL, a, n, &r) != 0)
        rc = -1; /* -1 raised, -2 environment error: both fail the call */
    if (a != stack)
        free(a);
    if (rc != 0)
        return -1;
    return packed_from_result(&r, ret, ret_code, "the ffi function");
}

mfunc_t *mffi_func_new(const char *name, TVMFFISafeCallType fn, mod_t *mod)
{
    void *res;
    memcpy(&res, &fn, sizeof(res));
    return mfunc_new(name, ffi_packed, res, NULL, mod);
}

/* ---- TVMFFIFunctionCall: ffi arguments to classic ones ------------------------------ */

/* Scratch of one call: the classic values plus storage for strings and
 * byte arrays made from inline or object values. */
typedef struct conv {
    TVMValue *vals;
    int *codes;
    TVMByteArray *bas;
    char (*small)[SMALL_MAX + 1];
    char **heap; /* NUL-terminated copies of Str objects */
    void *block;
} conv_t;

static int conv_alloc(conv_t *c, int n)
{
    size_t k = n > 0 ? (size_t)n : 1;
    size_t per =
        sizeof(TVMValue) + sizeof(TVMByteArray) + sizeof(char *) + sizeof(*c->small) + sizeof(int);
    char *q = c->block = calloc(k, per);
    if (!q)
        return -1;
    c->vals = (TVMValue *)(void *)q;
    q += k * sizeof(TVMValue);
    c->bas = (TVMByteArray *)(void *)q;
    q += k * sizeof(TVMByteArray);
    c->heap = (char **)(void *)q;
    q += k * sizeof(char *);
    c->small = (char(*)[SMALL_MAX + 1]) q;
    q += k * sizeof(*c->small);
    c->codes = (int *)(void *)q;
    return 0;
}

static void conv_free(conv_t *c, int n)
{
    for (int i = 0; i < n; i++)
        free(c->heap[i]);
    free(c->block);
}

static int arg_str_obj(conv_t *c, int i, const TVMFFIAny *a)
{
    const TVMFFIByteArray *ba = obj_bytes(a->v_obj);
    size_t n = ba->data ? ba->size : 0;
    if (a->type_index == kTVMFFIBytes) {
        c->bas[i].data = ba->data;
        c->bas[i].size = n;
        c->vals[i].v_handle = &c->bas[i];
        c->codes[i] = kTVMBytes;
        return 0;
    }
    if (n >= RESULT_MAX || !(c->heap[i] = malloc(n + 1)))
        return -1;
    memcpy(c->heap[i], ba->data ? ba->data : "", n);
    c->heap[i][n] = '\0';
    c->vals[i].v_str = c->heap[i];
    c->codes[i] = kTVMStr;
    return 0;
}

static int arg_small(conv_t *c, int i, const TVMFFIAny *a)
{
    size_t n = a->zero_padding;
    if (n > SMALL_MAX)
        return -1;
    memcpy(c->small[i], a->v_bytes, n);
    c->small[i][n] = '\0';
    if (a->type_index == kTVMFFISmallStr) {
        c->vals[i].v_str = c->small[i];
        c->codes[i] = kTVMStr;
    } else {
        c->bas[i].data = c->small[i];
        c->bas[i].size = n;
        c->vals[i].v_handle = &c->bas[i];
        c->codes[i] = kTVMBytes;
    }
    return 0;
}

/* POD indices map one to one onto classic codes. */
static const int pod_code[] = {
    [kTVMFFINone] = kTVMNullptr,
    [kTVMFFIInt] = kTVMArgInt,
    [kTVMFFIBool] = kTVMArgBool,
    [kTVMFFIFloat] = kTVMArgFloat,
    [kTVMFFIOpaquePtr] = kTVMOpaqueHandle,
    [kTVMFFIDataType] = kTVMDataType,
    [kTVMFFIDevice] = kDLDevice,
    [kTVMFFIDLTensorPtr] = kTVMDLTensorHandle,
    [kTVMFFIRawStr] = kTVMStr,
    [kTVMFFIByteArrayPtr] = kTVMBytes,
};

static int arg_from_any(conv_t *c, int i, const TVMFFIAny *a)
{
    int t = a->type_index;
    if (t >= 0 && t <= kTVMFFIByteArrayPtr) {
        c->codes[i] = pod_code[t];
        memcpy(&c->vals[i], &a->v_int64, sizeof(TVMValue)); /* same 8-byte payload */
        if (t == kTVMFFIBool)
            c->vals[i].v_int64 = a->v_int64 != 0;
        return 0;
    }
    if (t == kTVMFFISmallStr || t == kTVMFFISmallBytes)
        return arg_small(c, i, a);
    if (!a->v_obj)
        return -1;
    if (t == kTVMFFITensor) {
        c->vals[i].v_handle = (char *)a->v_obj + sizeof(TVMFFIObject);
        c->codes[i] = kTVMDLTensorHandle;
        return 0;
    }
    if (t == kTVMFFIStr || t == kTVMFFIBytes)
        return arg_str_obj(c, i, a);
    return -1;
}

/* A classic result for compiled code; references we cannot hand over
 * (modules, functions, objects) are dropped. */
static int any_from_ret(TVMValue *v, int code, TVMFFIAny *r)
{
    static const int idx[] = {
        [kTVMArgInt] = kTVMFFIInt,     [kTVMArgUInt] = kTVMFFIInt,
        [kTVMArgFloat] = kTVMFFIFloat, [kTVMOpaqueHandle] = kTVMFFIOpaquePtr,
        [kTVMNullptr] = kTVMFFINone,   [kTVMDataType] = kTVMFFIDataType,
        [kDLDevice] = kTVMFFIDevice,   [kTVMDLTensorHandle] = -1,
        [kTVMObjectHandle] = -1,       [kTVMModuleHandle] = -1,
        [kTVMPackedFuncHandle] = -1,   [kTVMStr] = kTVMFFIStr,
        [kTVMBytes] = kTVMFFIBytes,    [kTVMNDArrayHandle] = -1,
        [kTVMObjectRValueRefArg] = -1, [kTVMArgBool] = kTVMFFIBool,
    };
    int t = code >= 0 && code <= kTVMArgBool ? idx[code] : -1;
    if (t == kTVMFFIStr)
        return any_from_bytes(v->v_str ? v->v_str : "", v->v_str ? strlen(v->v_str) : 0, 1, r);
    if (t == kTVMFFIBytes) {
        const TVMByteArray *ba = v->v_handle;
        return any_from_bytes(ba ? ba->data : "", ba ? ba->size : 0, 0, r);
    }
    if (t < 0) {
        module_value_release(v, code);
        char msg[128];
        snprintf(msg, sizeof(msg), "a result of type code %d cannot be passed to compiled code",
                 code);
        raise1("TypeError", msg);
        return -1;
    }
    memset(r, 0, sizeof(*r));
    r->type_index = t;
    if (t != kTVMFFINone) /* None has a zero payload */
        memcpy(&r->v_int64, v, sizeof(TVMValue));
    return 0;
}

static int call_converted(mfunc_t *f, const TVMFFIAny *args, int32_t n, TVMFFIAny *result)
{
    conv_t c;
    if (conv_alloc(&c, n) < 0) {
        raise1("RuntimeError", "out of memory for the arguments");
        return -1;
    }
    int rc = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        if (arg_from_any(&c, i, &args[i]) < 0) {
            char msg[160];
            snprintf(msg, sizeof(msg), "%s: argument %d (type index %d) cannot be passed", f->name,
                     i, args[i].type_index);
            raise1("TypeError", msg);
            rc = -1;
        }
    }
    TVMValue rv;
    int rcode;
    if (rc == 0 && (rc = mfunc_call(f, c.vals, c.codes, n, &rv, &rcode)) == 0)
        rc = any_from_ret(&rv, rcode, result);
    conv_free(&c, n);
    return rc;
}

int mffi_function_call(mfunc_t *f, const TVMFFIAny *args, int32_t n, TVMFFIAny *result)
{
    if (!f || !result || n < 0 || (n > 0 && !args)) {
        raise1("ValueError", "TVMFFIFunctionCall: invalid arguments");
        return -1;
    }
    if (f->fn != ffi_packed)
        return call_converted(f, args, n, result);
    TVMAPISetLastError("");
    if (safe_of(f->resource)(NULL, args, n, result) == 0)
        return 0;
    if (!*TVMGetLastError()) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s failed without an error message", f->name);
        raise1("RuntimeError", msg);
    }
    return -1;
}

/* ---- context symbols (§2.7 step 2) ---------------------------------------------- */

static void *fn_addr(void (*f)(void))
{
    void *p;
    memcpy(&p, &f, sizeof(p));
    return p;
}

#define FN(f) fn_addr((void (*)(void))(f))

static pthread_mutex_t ctx_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char name[MFFI_MAX_KIND];
    void *value;
} ctx_user[MAX_CTX_USER];
static int nctx_user;

int mffi_register_context_symbol(const char *name, void *value)
{
    if (!name || !*name || strlen(name) >= MFFI_MAX_KIND) {
        raise1("ValueError", "TVMFFIEnvModRegisterContextSymbol: bad symbol name");
        return -1;
    }
    pthread_mutex_lock(&ctx_mu);
    int i = 0;
    while (i < nctx_user && strcmp(ctx_user[i].name, name) != 0)
        i++;
    if (i == MAX_CTX_USER) {
        pthread_mutex_unlock(&ctx_mu);
        raise1("RuntimeError", "TVMFFIEnvModRegisterContextSymbol: too many context symbols");
        return -1;
    }
    if (i == nctx_user) {
        snprintf(ctx_user[i].name, sizeof(ctx_user[i].name), "%s", name);
        nctx_user++;
    }
    ctx_user[i].value = value;
    pthread_mutex_unlock(&ctx_mu);
    return 0;
}

static void set_var(lib_t *l, const char *name, void *value)
{
    int is_func;
    void *p = module_lib_sym(l, name, &is_func);
    if (p && is_func != 1)
        memcpy(p, &value, sizeof(value));
}

/* The eight pairs TVM registers at start-up, then the user's. */
static void set_context_symbols(lib_t *l)
{
    set_var(l, "__TVMFFIFunctionCall", FN(TVMFFIFunctionCall));
    set_var(l, "__TVMFFIErrorSetRaisedFromCStr", FN(TVMFFIErrorSetRaisedFromCStr));
    set_var(l, "__TVMFFIEnvModLookupFromImports", FN(TVMFFIEnvModLookupFromImports));
    set_var(l, "__TVMFFIHandleInitOnce", FN(TVMFFIHandleInitOnce));
    set_var(l, "__TVMBackendAllocWorkspace", FN(TVMBackendAllocWorkspace));
    set_var(l, "__TVMBackendFreeWorkspace", FN(TVMBackendFreeWorkspace));
    set_var(l, "__TVMBackendParallelLaunch", FN(TVMBackendParallelLaunch));
    set_var(l, "__TVMBackendParallelBarrier", FN(TVMBackendParallelBarrier));
    pthread_mutex_lock(&ctx_mu);
    for (int i = 0; i < nctx_user; i++)
        set_var(l, ctx_user[i].name, ctx_user[i].value);
    pthread_mutex_unlock(&ctx_mu);
}

/* ---- the import blob (§2.8) ------------------------------------------------------ */

static int blob_err(mffi_blob_t *b, char *err, size_t errlen, const char *what)
{
    mffi_blob_free(b);
    snprintf(err, errlen, "RuntimeError: __tvm_ffi__library_bin %s", what);
    return -1;
}

static int rd_vec(rd_t *r, uint64_t **out, size_t *n, uint64_t cap)
{
    uint64_t count;
    const uint8_t *p;
    if (rd_u64(r, &count) < 0 || count > cap || count > r->left / 8 ||
        rd_bytes(r, (size_t)count * 8, &p) < 0)
        return -1;
    if (!(*out = malloc(count ? (size_t)count * 8 : 1)))
        return -1;
    for (uint64_t i = 0; i < count; i++)
        (*out)[i] = le64(p + 8 * i);
    *n = (size_t)count;
    return 0;
}

static int blob_entry(rd_t *r, mffi_entry_t *e, int *seen_lib)
{
    uint64_t n;
    if (rd_u64(r, &n) < 0 || n == 0 || n > MFFI_MAX_KIND || rd_bytes(r, (size_t)n, &e->kind) < 0)
        return -1;
    e->kind_len = (size_t)n;
    e->is_lib = n == 4 && memcmp(e->kind, "_lib", 4) == 0;
    if (e->is_lib)
        return (*seen_lib)++ ? -1 : 0;
    if (rd_u64(r, &n) < 0 || n > r->left || rd_bytes(r, (size_t)n, &e->payload) < 0)
        return -1;
    e->payload_len = (size_t)n;
    return 0;
}

static const char *blob_tree_check(const mffi_blob_t *b)
{
    if (b->indptr[b->nmods] > b->nchild)
        return "has an import tree that does not match its entries";
    for (size_t i = 0; i < b->nmods; i++)
        if (b->indptr[i] > b->indptr[i + 1])
            return "has import tree rows out of order";
    for (size_t j = b->indptr[0]; j < b->indptr[b->nmods]; j++)
        if (b->child[j] >= b->nmods)
            return "imports a module that does not exist";
    return NULL;
}

int mffi_blob_parse(const uint8_t *p, size_t avail, mffi_blob_t *b, char *err, size_t errlen)
{
    memset(b, 0, sizeof(*b));
    if (!p || avail < 8 || le64(p) > avail - 8)
        return blob_err(b, err, errlen, "is truncated (its length runs past the data)");
    rd_t r = rd_make(p + 8, (size_t)le64(p));
    size_t nind;
    if (rd_vec(&r, &b->indptr, &nind, (uint64_t)MFFI_MAX_MODULES + 1) < 0)
        return blob_err(b, err, errlen, "has a truncated or oversized import tree");
    if (nind < 2)
        return blob_err(b, err, errlen, "holds no modules");
    b->nmods = nind - 1;
    if (rd_vec(&r, &b->child, &b->nchild, MAX_CHILDREN) < 0)
        return blob_err(b, err, errlen, "has a truncated or oversized import tree");
    if (!(b->entries = calloc(b->nmods, sizeof(*b->entries))))
        return blob_err(b, err, errlen, "cannot be parsed: out of memory");
    int seen_lib = 0;
    for (size_t i = 0; i < b->nmods; i++) {
        if (blob_entry(&r, &b->entries[i], &seen_lib) < 0)
            return blob_err(b, err, errlen,
                            seen_lib > 1 ? "has more than one _lib entry"
                                         : "has a truncated or malformed entry");
    }
    if (r.left)
        return blob_err(b, err, errlen, "has unexpected trailing bytes");
    const char *why = blob_tree_check(b);
    return why ? blob_err(b, err, errlen, why) : 0;
}

void mffi_blob_free(mffi_blob_t *b)
{
    free(b->indptr);
    free(b->child);
    free(b->entries);
    memset(b, 0, sizeof(*b));
}

/* ---- placeholder modules for kinds we cannot load -------------------------------- */

/* A module of kind K stands in for what ffi.Module.load_from_bytes.K would
 * have made. Lookups go to its imports first, so a placeholder root (a
 * Relax model's relax.VMExecutable) does not hide the library's kernels;
 * any other name gives a function that fails with a clear error when
 * called, also for compiled code that looks a kernel up in it. */
typedef struct ph {
    size_t payload_len;
    char kind[];
} ph_t;

static int ph_call(TVMValue *args, int *codes, int n, TVMValue *ret, int *ret_code, void *res)
{
    TVMAPISetLastError(res);
    return -1;
}

static int ph_get_function(mod_t *m, const char *name, mfunc_t **out, char *err, size_t errlen)
{
    const ph_t *ph = m->self;
    *out = NULL;
    for (int i = 0; !*out && i < m->nimports; i++)
        if (mod_get_function(m->imports[i], name, 1, out, err, errlen) < 0)
            return -1;
    if (*out)
        return 0;
    char msg[1024];
    snprintf(msg, sizeof(msg),
             "RuntimeError: cannot call %.256s: it belongs to a module of kind %s (%zu bytes in "
             "the library), and this server has no loader for that kind "
             "(ffi.Module.load_from_bytes.%s)",
             name, ph->kind, ph->payload_len, ph->kind);
    char *res = strdup(msg);
    if (!res || !(*out = mfunc_new(name, ph_call, res, free, m))) {
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    return 0;
}

static void ph_destroy(mod_t *m)
{
    free(m->self);
}

static const mod_vt_t ph_vt = {
    .type_key = "ffi.UnsupportedModule", .get_function = ph_get_function, .destroy = ph_destroy};

static mod_t *ph_new(const mffi_entry_t *e)
{
    ph_t *ph = malloc(sizeof(*ph) + e->kind_len + 1);
    if (!ph)
        return NULL;
    ph->payload_len = e->payload_len;
    /* Kinds are untrusted bytes: keep them printable in messages. */
    for (size_t i = 0; i < e->kind_len; i++)
        ph->kind[i] = e->kind[i] >= 0x20 && e->kind[i] < 0x7f ? (char)e->kind[i] : '?';
    ph->kind[e->kind_len] = '\0';
    return mod_new(&ph_vt, ph);
}

/* ---- loading (§2.7) ----------------------------------------------------------------- */

int mffi_detect(lib_t *l)
{
    int f;
    if (module_lib_sym(l, "__tvm_ffi__library_ctx", &f) ||
        module_lib_sym(l, "__tvm_ffi__library_bin", &f))
        return 1;
    if (module_lib_sym(l, "__tvm_module_ctx", &f) || module_lib_sym(l, "__tvm_dev_mblob", &f))
        return 0;
    return module_lib_sym(l, "__tvm_ffi_main", &f) && f != 0;
}

/* Modules in entry order, then the imports of the tree; module 0 is the
 * root and "_lib" the context module. */
static int blob_build(lib_t *l, const mffi_blob_t *b, mod_t **root, mod_t **ctxm, char *err,
                      size_t errlen)
{
    mod_t **mods = calloc(b->nmods, sizeof(*mods));
    int rc = -1;
    if (!mods)
        goto oom;
    for (size_t i = 0; i < b->nmods; i++) {
        const mffi_entry_t *e = &b->entries[i];
        if (!(mods[i] = e->is_lib ? module_lib_module(l) : ph_new(e)))
            goto oom;
        if (e->is_lib)
            *ctxm = mods[i];
    }
    for (size_t i = 0; i < b->nmods; i++)
        for (uint64_t j = b->indptr[i]; j < b->indptr[i + 1]; j++)
            if (mod_import(mods[i], mods[b->child[j]], err, errlen) < 0)
                goto out;
    *root = mods[0];
    mod_retain(*root);
    if (*ctxm)
        mod_retain(*ctxm);
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "MemoryError: out of memory");
out:
    if (rc < 0)
        *ctxm = NULL;
    for (size_t i = 0; mods && i < b->nmods; i++)
        mod_release(mods[i]);
    free(mods);
    return rc;
}

int mffi_lib_init(lib_t *l, mod_t **root, mod_t **ctxm, char *err, size_t errlen)
{
    int is_func;
    *root = *ctxm = NULL;
    set_context_symbols(l);
    const uint8_t *bin = module_lib_sym(l, "__tvm_ffi__library_bin", &is_func);
    if (bin && is_func != 1) {
        size_t avail;
        mffi_blob_t b;
        if (module_seg_avail(bin, &avail) < 0) {
            snprintf(err, errlen, "RuntimeError: __tvm_ffi__library_bin is not in loaded memory");
            return -1;
        }
        if (mffi_blob_parse(bin, avail, &b, err, errlen) < 0)
            return -1;
        int rc = blob_build(l, &b, root, ctxm, err, errlen);
        mffi_blob_free(&b);
        return rc;
    }
    if (!(*root = module_lib_module(l))) {
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    *ctxm = *root;
    mod_retain(*ctxm);
    return 0;
}

int mffi_get_function(lib_t *l, mod_t *m, const char *name, mfunc_t **out, char *err, size_t errlen)
{
    *out = NULL;
    /* __tvm_ffi__library_ctx / _bin are the loader's variables. */
    if (strncmp(name, "_library_", 9) == 0)
        return 0;
    int is_func = -1;
    void *p = module_lib_ffi_func_sym(l, name, &is_func);
    if (!p || is_func == 0)
        return 0;
    TVMFFISafeCallType fn;
    memcpy(&fn, &p, sizeof(fn));
    if (!(*out = mffi_func_new(name, fn, m))) {
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    return 0;
}
