/* Modules, functions and compiled libraries (RUNTIME.md §1.3, §1.4,
 * §2.1-§2.6). A "lib" is something symbols are looked up in: a dlopen'ed
 * library or the process-wide system-lib registry. Library modules wrap a
 * lib; the import blob of a library may put other modules above it. The
 * value the loader writes into __tvm_module_ctx is the lib's ctx_t, which
 * names the context module weakly and caches what compiled code looked up,
 * so handles given to compiled code live exactly as long as its library. */
#include "server/module.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/log.h"
#include "server/graph_executor.h"
#include "server/module_ffi.h"
#include "server/timeeval.h"
#include "server/workspace.h"

#define CTX_MAGIC 0x74766d72706363ULL /* "tvmrpcc" */
#define MAX_BLOB_MODULES 4096
#define MAX_BLOB_KEY 256
#define MAX_IDENT 256

/* Guards the lib list, contexts, the system-lib registry and the global
 * function wrappers: compiled code may look functions up from several
 * threads. Never held across dlopen/dlclose or calls into modules. */
static pthread_mutex_t mod_mu = PTHREAD_MUTEX_INITIALIZER;
/* The session a client call runs in, and its thread, for global functions
 * that compiled code calls back (one session per process, calls nest).
 * Those functions use session state, so only that thread may call them. */
static session_t *cur_session;
static pthread_t cur_thread;

/* ---- reference counts ----------------------------------------------------- */

static void ref_inc(int *r)
{
    __atomic_add_fetch(r, 1, __ATOMIC_RELAXED);
}

static int ref_dec(int *r)
{
    return __atomic_sub_fetch(r, 1, __ATOMIC_ACQ_REL);
}

/* ---- modules ---------------------------------------------------------------- */

mod_t *mod_new(const mod_vt_t *vt, void *self)
{
    mod_t *m = calloc(1, sizeof(*m));
    if (!m) {
        mod_t tmp = {.vt = vt, .self = self};
        if (vt->destroy)
            vt->destroy(&tmp);
        return NULL;
    }
    m->refs = 1;
    m->vt = vt;
    m->self = self;
    return m;
}

void mod_retain(mod_t *m)
{
    ref_inc(&m->refs);
}

void mod_release(mod_t *m)
{
    if (!m || ref_dec(&m->refs) > 0)
        return;
    if (m->vt->destroy)
        m->vt->destroy(m);
    for (int i = 0; i < m->nimports; i++)
        mod_release(m->imports[i]);
    free(m->imports);
    free(m);
}

/* Visited set of one walk over an import DAG, so shared imports are
 * searched once (a crafted blob could otherwise make walks exponential). */
typedef struct walk {
    mod_t **v;
    size_t n, cap;
} walk_t;

/* 1 if m was seen before, 0 if it is new now, -1 on OOM. */
static int walk_seen(walk_t *w, mod_t *m)
{
    for (size_t i = 0; i < w->n; i++)
        if (w->v[i] == m)
            return 1;
    if (w->n == w->cap) {
        size_t ncap = w->cap ? w->cap * 2 : 16;
        mod_t **nv = realloc(w->v, ncap * sizeof(*nv));
        if (!nv)
            return -1;
        w->v = nv;
        w->cap = ncap;
    }
    w->v[w->n++] = m;
    return 0;
}

static int reachable_walk(walk_t *w, mod_t *from, const mod_t *target)
{
    if (from == target)
        return 1;
    int seen = walk_seen(w, from);
    if (seen != 0)
        return seen < 0 ? -1 : 0;
    for (int i = 0; i < from->nimports; i++) {
        int r = reachable_walk(w, from->imports[i], target);
        if (r != 0)
            return r;
    }
    return 0;
}

int mod_import(mod_t *parent, mod_t *child, char *err, size_t errlen)
{
    walk_t w = {0};
    int r = reachable_walk(&w, child, parent);
    free(w.v);
    if (r != 0) {
        snprintf(err, errlen,
                 r > 0 ? "TVMError: Cyclic dependency detected during import"
                       : "MemoryError: out of memory");
        return -1;
    }
    if (parent->nimports == parent->capimports) {
        int ncap = parent->capimports ? parent->capimports * 2 : 4;
        mod_t **ni = realloc(parent->imports, (size_t)ncap * sizeof(*ni));
        if (!ni) {
            snprintf(err, errlen, "MemoryError: out of memory");
            return -1;
        }
        parent->imports = ni;
        parent->capimports = ncap;
    }
    mod_retain(child);
    parent->imports[parent->nimports++] = child;
    return 0;
}

static int get_walk(walk_t *w, mod_t *m, const char *name, mfunc_t **out, char *err, size_t errlen)
{
    int seen = walk_seen(w, m);
    if (seen != 0) {
        if (seen < 0)
            snprintf(err, errlen, "MemoryError: out of memory");
        return seen < 0 ? -1 : 0;
    }
    if (m->vt->get_function(m, name, out, err, errlen) < 0)
        return -1;
    for (int i = 0; !*out && i < m->nimports; i++)
        if (get_walk(w, m->imports[i], name, out, err, errlen) < 0)
            return -1;
    return 0;
}

int mod_get_function(mod_t *m, const char *name, int query_imports, mfunc_t **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    if (!query_imports)
        return m->vt->get_function(m, name, out, err, errlen);
    walk_t w = {0};
    int rc = get_walk(&w, m, name, out, err, errlen);
    free(w.v);
    return rc;
}

/* ---- functions ------------------------------------------------------------- */

mfunc_t *mfunc_new(const char *name, TVMBackendPackedCFunc fn, void *resource,
                   void (*free_resource)(void *), mod_t *mod)
{
    size_t n = strlen(name);
    mfunc_t *f = malloc(sizeof(*f) + n + 1);
    if (!f) {
        if (free_resource)
            free_resource(resource);
        return NULL;
    }
    f->refs = 1;
    f->fn = fn;
    f->resource = resource;
    f->free_resource = free_resource;
    f->mod = mod;
    if (mod)
        mod_retain(mod);
    memcpy(f->name, name, n + 1);
    return f;
}

void mfunc_retain(mfunc_t *f)
{
    if (f->refs >= 0)
        ref_inc(&f->refs);
}

void mfunc_release(mfunc_t *f)
{
    if (!f || f->refs < 0 || ref_dec(&f->refs) > 0)
        return;
    if (f->free_resource)
        f->free_resource(f->resource);
    mod_release(f->mod);
    free(f);
}

int mfunc_call(mfunc_t *f, TVMValue *args, int *codes, int n, TVMValue *ret, int *ret_code)
{
    ret->v_int64 = 0;
    *ret_code = kTVMNullptr; /* kernels that return nothing leave it (§2.4) */
    TVMAPISetLastError("");
    int rc = f->fn(args, codes, n, ret, ret_code, f->resource);
    if (rc == 0)
        return 0;
    const char *msg = TVMGetLastError();
    if (!msg || !*msg) {
        char buf[512];
        snprintf(buf, sizeof(buf), "%s failed (returned %d) without an error message", f->name, rc);
        TVMAPISetLastError(buf);
    }
    return -1;
}

/* ---- objects and arrays natives return ------------------------------------------ */

#define MOBJ_MAGIC 0x6d6f626a74766d72ULL /* "rmvtjbom" */

void mobj_init(mobj_t *o, const char *type_key, void (*destroy)(mobj_t *o))
{
    o->magic = MOBJ_MAGIC;
    o->refs = 1;
    o->type_key = type_key;
    o->destroy = destroy;
}

void mobj_retain(mobj_t *o)
{
    ref_inc(&o->refs);
}

void mobj_release(mobj_t *o)
{
    if (!o || ref_dec(&o->refs) > 0)
        return;
    o->magic = 0;
    o->destroy(o);
}

static mnd_t *mnd_of(mobj_t *o)
{
    return (mnd_t *)(void *)((char *)o - offsetof(mnd_t, obj));
}

static void mnd_destroy(mobj_t *o)
{
    mnd_t *a = mnd_of(o);
    if (a->release)
        a->release(a->owner);
    free(a);
}

mnd_t *mnd_new(const DLTensor *view, void (*release)(void *owner), void *owner)
{
    mnd_t *a = NULL;
    if (view->ndim >= 0 && view->ndim <= RPC_MAX_NDIM && (view->ndim == 0 || view->shape))
        a = calloc(1, sizeof(*a));
    if (!a) {
        if (release)
            release(owner);
        return NULL;
    }
    a->dl = *view;
    if (view->ndim)
        memcpy(a->shape, view->shape, (size_t)view->ndim * sizeof(int64_t));
    a->dl.shape = a->shape;
    a->dl.strides = NULL;
    a->release = release;
    a->owner = owner;
    mobj_init(&a->obj, "runtime.NDArray", mnd_destroy);
    return a;
}

/* The mnd behind a code-13 handle, if it is one of ours. */
static mnd_t *mnd_from_handle(void *h)
{
    mnd_t *a = h;
    return a && a->obj.magic == MOBJ_MAGIC ? a : NULL;
}

static mobj_t *mobj_from_handle(void *h)
{
    mobj_t *o = h;
    return o && o->magic == MOBJ_MAGIC ? o : NULL;
}

void module_value_release(TVMValue *v, int code)
{
    if (code == kTVMModuleHandle)
        mod_release(v->v_handle);
    else if (code == kTVMPackedFuncHandle)
        mfunc_release(v->v_handle);
    else if (code == kTVMObjectHandle)
        mobj_release(mobj_from_handle(v->v_handle));
    else if (code == kTVMNDArrayHandle)
        mnd_release(mnd_from_handle(v->v_handle));
}

/* ---- session handles ------------------------------------------------------ */

static void sobj_mod_destroy(void *self)
{
    mod_release(self);
}

static const sobj_ops_t mod_sops = {.type_key = "runtime.Module", .destroy = sobj_mod_destroy};

static int sobj_func_call(session_t *s, void *self, const rpc_value_t *args, int nargs,
                          rpc_value_t *ret, char *err, size_t errlen)
{
    return mfunc_rpc_call(s, self, args, nargs, ret, err, errlen);
}

static void sobj_func_destroy(void *self)
{
    mfunc_release(self);
}

static const sobj_ops_t func_sops = {
    .type_key = "runtime.PackedFunc", .call = sobj_func_call, .destroy = sobj_func_destroy};

static void sobj_obj_destroy(void *self)
{
    mobj_release(self);
}

static const sobj_ops_t obj_sops = {.type_key = "runtime.Object", .destroy = sobj_obj_destroy};

uint64_t module_handle_new(session_t *s, mod_t *m)
{
    return session_object_new(s, RV_MODULE, &mod_sops, m);
}

mod_t *module_from_handle(const session_t *s, uint64_t h)
{
    return session_object_get(s, h, RV_MODULE, &mod_sops);
}

uint64_t mfunc_handle_new(session_t *s, mfunc_t *f)
{
    return session_object_new(s, RV_FUNC, &func_sops, f);
}

mfunc_t *mfunc_from_handle(const session_t *s, uint64_t h)
{
    return session_object_get(s, h, RV_FUNC, &func_sops);
}

/* ---- calls from the client -------------------------------------------------- */

/* Error text for the client: TVM's messages carry no kind, ours do. */
static void error_for_client(char *err, size_t errlen, const char *msg)
{
    size_t i = 0;
    while ((msg[i] >= 'A' && msg[i] <= 'Z') || (msg[i] >= 'a' && msg[i] <= 'z') ||
           (i && msg[i] >= '0' && msg[i] <= '9') || msg[i] == '.')
        i++;
    int kinded = i >= 5 && strncmp(msg + i - 5, "Error", 5) == 0 && msg[i] == ':';
    snprintf(err, errlen, "%s%s", kinded ? "" : "TVMError: ", msg);
}

static int tensor_arg(const session_t *s, int i, const rpc_tensor_t *t, DLTensor *d, char *err,
                      size_t errlen)
{
    if (t->dev.type != 1) {
        snprintf(err, errlen,
                 "ValueError: argument %d is an array on device type %d; this "
                 "server has only the CPU",
                 i, t->dev.type);
        return -1;
    }
    int64_t nbytes = rpc_tensor_nbytes(t);
    if (nbytes < 0) {
        snprintf(err, errlen, "ValueError: argument %d: array size overflows", i);
        return -1;
    }
    if (nbytes > 0 && (t->byte_offset > UINT64_MAX - t->data ||
                       session_check_range(s, t->data + t->byte_offset, (uint64_t)nbytes) < 0)) {
        snprintf(err, errlen,
                 "ValueError: argument %d: array memory was not allocated in this "
                 "session",
                 i);
        return -1;
    }
    d->data = (void *)(uintptr_t)t->data;
    d->device.device_type = t->dev.type;
    d->device.device_id = t->dev.id;
    d->ndim = t->ndim;
    d->dtype.code = t->dtype.code;
    d->dtype.bits = t->dtype.bits;
    d->dtype.lanes = t->dtype.lanes;
    d->shape = (int64_t *)t->shape;
    d->strides = NULL; /* never sent: compact row-major */
    d->byte_offset = t->byte_offset;
    return 0;
}

/* The packed arguments of one call, in one allocation. */
typedef struct pargs {
    void *block;
    TVMValue *vals;
    int *codes;
} pargs_t;

static int pargs_alloc(pargs_t *p, const rpc_value_t *args, int n, DLTensor **ts,
                       TVMByteArray **bytes, char **strs)
{
    size_t strtotal = 0;
    for (int i = 0; i < n; i++)
        if (args[i].kind == RV_STR)
            strtotal += (size_t)args[i].u.s.len + 1;
    size_t k = n > 0 ? (size_t)n : 1;
    size_t size = k * (sizeof(TVMValue) + sizeof(DLTensor) + sizeof(TVMByteArray) + sizeof(int));
    p->block = malloc(size + strtotal);
    if (!p->block)
        return -1;
    char *q = p->block;
    p->vals = (TVMValue *)q;
    q += k * sizeof(TVMValue);
    *ts = (DLTensor *)q;
    q += k * sizeof(DLTensor);
    *bytes = (TVMByteArray *)q;
    q += k * sizeof(TVMByteArray);
    p->codes = (int *)q;
    q += k * sizeof(int);
    *strs = q;
    return 0;
}

static int pargs_from_rpc(const session_t *s, const rpc_value_t *args, int n, pargs_t *p, char *err,
                          size_t errlen)
{
    DLTensor *ts;
    TVMByteArray *bytes;
    char *strs;
    if (pargs_alloc(p, args, n, &ts, &bytes, &strs) < 0) {
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const rpc_value_t *a = &args[i];
        TVMValue *v = &p->vals[i];
        int *c = &p->codes[i];
        v->v_int64 = 0;
        switch (a->kind) {
        case RV_NONE:
            *c = kTVMNullptr;
            break;
        case RV_INT:
            *c = kTVMArgInt;
            v->v_int64 = a->u.i;
            break;
        case RV_BOOL:
            *c = kTVMArgBool;
            v->v_int64 = a->u.i;
            break;
        case RV_FLOAT:
            *c = kTVMArgFloat;
            v->v_float64 = a->u.f;
            break;
        case RV_HANDLE:
            *c = kTVMOpaqueHandle;
            v->v_handle = (void *)(uintptr_t)a->u.h;
            break;
        case RV_DTYPE:
            *c = kTVMDataType;
            v->v_type.code = a->u.dtype.code;
            v->v_type.bits = a->u.dtype.bits;
            v->v_type.lanes = a->u.dtype.lanes;
            break;
        case RV_DEVICE:
            *c = kDLDevice;
            v->v_device.device_type = a->u.dev.type;
            v->v_device.device_id = a->u.dev.id;
            break;
        case RV_TENSOR:
            if (tensor_arg(s, i, a->t, &ts[i], err, errlen) < 0)
                goto fail;
            *c = kTVMDLTensorHandle;
            v->v_handle = &ts[i];
            break;
        case RV_STR:
            if (memchr(a->u.s.p, '\0', (size_t)a->u.s.len)) {
                snprintf(err, errlen, "ValueError: argument %d: string contains NUL", i);
                goto fail;
            }
            memcpy(strs, a->u.s.p, (size_t)a->u.s.len);
            strs[a->u.s.len] = '\0';
            *c = kTVMStr;
            v->v_str = strs;
            strs += a->u.s.len + 1;
            break;
        case RV_BYTES:
            bytes[i].data = a->u.s.p;
            bytes[i].size = (size_t)a->u.s.len;
            *c = kTVMBytes;
            v->v_handle = &bytes[i];
            break;
        case RV_MODULE:
            if (!(v->v_handle = module_from_handle(s, a->u.h))) {
                snprintf(err, errlen, "ValueError: argument %d: unknown module handle", i);
                goto fail;
            }
            *c = kTVMModuleHandle;
            break;
        case RV_FUNC:
            if (!(v->v_handle = mfunc_from_handle(s, a->u.h))) {
                snprintf(err, errlen,
                         "TypeError: argument %d: only functions obtained from "
                         "modules can be passed to compiled code",
                         i);
                goto fail;
            }
            *c = kTVMPackedFuncHandle;
            break;
        default:
            snprintf(err, errlen,
                     "TypeError: argument %d: objects cannot be passed to "
                     "compiled code",
                     i);
            goto fail;
        }
    }
    return 0;
fail:
    free(p->block);
    p->block = NULL;
    return -1;
}

/* Append len bytes (and a NUL if nul) to the session scratch; returns
 * their offset, or -1. p may point into the scratch itself (results of
 * global functions do), so room is made before copying. */
static long scratch_append(session_t *s, const void *p, size_t len, int nul)
{
    buf_t *b = session_scratch(s);
    const uint8_t *head = buf_head(b), *src = p;
    int inside = b->len && src >= head && src < head + b->len;
    size_t src_off = inside ? (size_t)(src - head) : 0;
    if (len > (size_t)LONG_MAX - 1 || buf_reserve(b, len + 1) < 0)
        return -1;
    if (inside)
        src = buf_head(b) + src_off;
    size_t off = b->len;
    if (buf_append(b, src, len) < 0 || (nul && buf_append_u8(b, 0) < 0))
        return -1;
    return (long)off;
}

/* Copy len bytes into the session's scratch (valid until the reply). */
static int scratch_copy(session_t *s, const void *p, size_t len, rpc_value_t *ret, rpc_kind_t kind)
{
    long off = scratch_append(s, p, len, 0);
    if (off < 0)
        return -1;
    ret->kind = kind;
    ret->u.s.p = (const char *)buf_head(session_scratch(s)) + off;
    ret->u.s.len = len;
    return 0;
}

static int tensor_to_rpc(const DLTensor *d, rpc_tensor_t *t);

/* An object (code 8) or array (code 13) result: the session handle takes
 * over its reference; an array's tensor is sent from the mnd itself, which
 * lives at least until the client frees the handle. */
static int obj_to_rpc(session_t *s, const mfunc_t *f, TVMValue *v, int code, rpc_value_t *ret,
                      char *err, size_t errlen)
{
    mnd_t *a = code == kTVMNDArrayHandle ? mnd_from_handle(v->v_handle) : NULL;
    mobj_t *o = a ? &a->obj : mobj_from_handle(v->v_handle);
    if (!o || (a && tensor_to_rpc(&a->dl, &a->wire) < 0)) {
        mobj_release(o);
        snprintf(err, errlen,
                 "TypeError: %s returned an object (type code %d) this server cannot send", f->name,
                 code);
        return -1;
    }
    if (!(ret->u.h = session_object_new(s, RV_OBJECT, &obj_sops, o))) {
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    ret->kind = a ? RV_NDARRAY : RV_OBJECT;
    ret->t = a ? &a->wire : NULL;
    return 0;
}

/* The plain values, converted alike in a function's result and in the
 * arguments compiled code hands a global function. -1 if code is not one. */
static int scalar_to_rpc(const TVMValue *v, int code, rpc_value_t *a)
{
    switch (code) {
    case kTVMNullptr:
        a->kind = RV_NONE;
        return 0;
    case kTVMArgInt:
    case kTVMArgUInt:
        a->kind = RV_INT;
        a->u.i = v->v_int64;
        return 0;
    case kTVMArgBool:
        a->kind = RV_BOOL;
        a->u.i = v->v_int64;
        return 0;
    case kTVMArgFloat:
        a->kind = RV_FLOAT;
        a->u.f = v->v_float64;
        return 0;
    case kTVMOpaqueHandle:
        a->kind = RV_HANDLE;
        a->u.h = (uint64_t)(uintptr_t)v->v_handle;
        return 0;
    case kTVMDataType:
        a->kind = RV_DTYPE;
        a->u.dtype.code = v->v_type.code;
        a->u.dtype.bits = v->v_type.bits;
        a->u.dtype.lanes = v->v_type.lanes;
        return 0;
    case kDLDevice:
        a->kind = RV_DEVICE;
        a->u.dev.type = v->v_device.device_type;
        a->u.dev.id = v->v_device.device_id;
        return 0;
    default:
        return -1;
    }
}

static int ret_to_rpc(session_t *s, const mfunc_t *f, TVMValue *v, int code, rpc_value_t *ret,
                      char *err, size_t errlen)
{
    if (scalar_to_rpc(v, code, ret) == 0) {
        if (code == kTVMArgBool)
            ret->u.i = ret->u.i != 0; /* results are sent as canonical booleans */
        return 0;
    }
    switch (code) {
    case kTVMStr:
        if (scratch_copy(s, v->v_str ? v->v_str : "", v->v_str ? strlen(v->v_str) : 0, ret,
                         RV_STR) == 0)
            return 0;
        break;
    case kTVMBytes: {
        const TVMByteArray *ba = v->v_handle;
        if (ba && scratch_copy(s, ba->data, ba->size, ret, RV_BYTES) == 0)
            return 0;
        if (!ba) {
            ret->kind = RV_BYTES;
            ret->u.s.p = "";
            ret->u.s.len = 0;
            return 0;
        }
        break;
    }
    case kTVMModuleHandle:
        ret->kind = RV_MODULE;
        if ((ret->u.h = module_handle_new(s, v->v_handle)) != 0)
            return 0;
        break;
    case kTVMPackedFuncHandle:
        ret->kind = RV_FUNC;
        if ((ret->u.h = mfunc_handle_new(s, v->v_handle)) != 0)
            return 0;
        break;
    case kTVMObjectHandle:
    case kTVMNDArrayHandle:
        return obj_to_rpc(s, f, v, code, ret, err, errlen);
    default:
        snprintf(err, errlen,
                 "TypeError: %s returned a value of type code %d, which cannot be "
                 "sent to the client",
                 f->name, code);
        return -1;
    }
    snprintf(err, errlen, "MemoryError: out of memory");
    return -1;
}

int mfunc_rpc_call(session_t *s, mfunc_t *f, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                   char *err, size_t errlen)
{
    pargs_t p;
    if (pargs_from_rpc(s, args, nargs, &p, err, errlen) < 0)
        return -1;
    session_t *saved = cur_session;
    cur_session = s;
    cur_thread = pthread_self();
    TVMValue rv;
    int rcode;
    int rc = mfunc_call(f, p.vals, p.codes, nargs, &rv, &rcode);
    cur_session = saved;
    if (rc < 0)
        error_for_client(err, errlen, TVMGetLastError());
    else
        rc = ret_to_rpc(s, f, &rv, rcode, ret, err, errlen); /* may point into the args */
    free(p.block);
    return rc;
}

/* ---- global functions as packed functions ------------------------------------ */

static int tensor_to_rpc(const DLTensor *d, rpc_tensor_t *t)
{
    if (!d || d->ndim < 0 || d->ndim > RPC_MAX_NDIM || (d->ndim > 0 && !d->shape))
        return -1;
    int64_t stride = 1;
    for (int k = d->ndim - 1; d->strides && k >= 0; k--) {
        if (d->shape[k] != 1 && d->strides[k] != stride)
            return -1; /* strided views cannot be described on the wire */
        stride *= d->shape[k];
    }
    t->data = (uint64_t)(uintptr_t)d->data;
    t->dev.type = d->device.device_type;
    t->dev.id = d->device.device_id;
    t->ndim = d->ndim;
    t->dtype.code = d->dtype.code;
    t->dtype.bits = d->dtype.bits;
    t->dtype.lanes = d->dtype.lanes;
    for (int k = 0; k < d->ndim; k++)
        t->shape[k] = d->shape[k];
    t->byte_offset = d->byte_offset;
    return 0;
}

static int tramp_arg(const TVMValue *v, int code, rpc_value_t *a, rpc_tensor_t *t)
{
    if (scalar_to_rpc(v, code, a) == 0)
        return 0;
    switch (code) {
    case kTVMStr:
        a->kind = RV_STR;
        a->u.s.p = v->v_str ? v->v_str : "";
        a->u.s.len = strlen(a->u.s.p);
        return 0;
    case kTVMBytes: {
        const TVMByteArray *ba = v->v_handle;
        a->kind = RV_BYTES;
        a->u.s.p = ba ? ba->data : "";
        a->u.s.len = ba ? ba->size : 0;
        return 0;
    }
    case kTVMDLTensorHandle:
    case kTVMNDArrayHandle:
        a->kind = RV_TENSOR;
        a->t = t;
        return tensor_to_rpc(v->v_handle, t);
    default:
        return -1;
    }
}

/* Results of a global function handed to compiled code: strings live in
 * the session scratch (NUL-terminated there) until the next call. */
static _Thread_local TVMByteArray tramp_bytes;

static int tramp_ret(session_t *s, const rpc_value_t *r, TVMValue *ret, int *ret_code)
{
    buf_t *b = session_scratch(s);
    long off;
    switch (r->kind) {
    case RV_NONE:
        *ret_code = kTVMNullptr;
        return 0;
    case RV_INT:
        *ret_code = kTVMArgInt;
        ret->v_int64 = r->u.i;
        return 0;
    case RV_BOOL:
        *ret_code = kTVMArgBool;
        ret->v_int64 = r->u.i;
        return 0;
    case RV_FLOAT:
        *ret_code = kTVMArgFloat;
        ret->v_float64 = r->u.f;
        return 0;
    case RV_HANDLE:
        *ret_code = kTVMOpaqueHandle;
        ret->v_handle = (void *)(uintptr_t)r->u.h;
        return 0;
    case RV_DTYPE:
        *ret_code = kTVMDataType;
        ret->v_type.code = r->u.dtype.code;
        ret->v_type.bits = r->u.dtype.bits;
        ret->v_type.lanes = r->u.dtype.lanes;
        return 0;
    case RV_DEVICE:
        *ret_code = kDLDevice;
        ret->v_device.device_type = r->u.dev.type;
        ret->v_device.device_id = r->u.dev.id;
        return 0;
    case RV_STR:
    case RV_BYTES:
        if ((off = scratch_append(s, r->u.s.p, (size_t)r->u.s.len, 1)) < 0)
            return -1;
        if (r->kind == RV_STR) {
            *ret_code = kTVMStr;
            ret->v_str = (const char *)buf_head(b) + off;
        } else {
            tramp_bytes.data = (const char *)buf_head(b) + off;
            tramp_bytes.size = (size_t)r->u.s.len;
            *ret_code = kTVMBytes;
            ret->v_handle = &tramp_bytes;
        }
        return 0;
    case RV_MODULE:
        if (!(ret->v_handle = module_from_handle(s, r->u.h)))
            return -1;
        mod_retain(ret->v_handle);
        *ret_code = kTVMModuleHandle;
        return 0;
    case RV_FUNC:
        if (!(ret->v_handle = mfunc_from_handle(s, r->u.h)))
            return -1;
        mfunc_retain(ret->v_handle);
        *ret_code = kTVMPackedFuncHandle;
        return 0;
    default:
        return -1;
    }
}

/* resource: the rpc_global_t. The callee sees the tensors compiled code
 * passed; global functions that check memory against the session's
 * allocations will refuse workspace memory (natives do not). */
static int global_tramp(TVMValue *args, int *codes, int n, TVMValue *ret, int *ret_code,
                        void *resource)
{
    const rpc_global_t *g = resource;
    session_t *s = cur_session;
    char err[1024] = "";
    if (!s || !pthread_equal(pthread_self(), cur_thread)) {
        snprintf(err, sizeof(err),
                 "%s: global functions can be called only from the session's "
                 "thread, not outside a session or from a parallel task",
                 g->name);
        TVMAPISetLastError(err);
        return -1;
    }
    size_t k = n > 0 ? (size_t)n : 1, total = 0;
    rpc_value_t *vals = calloc(k, sizeof(*vals));
    rpc_tensor_t *ts = calloc(k, sizeof(*ts));
    char *copies = NULL;
    int rc = -1;
    if (!vals || !ts) {
        snprintf(err, sizeof(err), "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (tramp_arg(&args[i], codes[i], &vals[i], &ts[i]) < 0) {
            snprintf(err, sizeof(err), "%s: argument %d (type code %d) cannot be passed", g->name,
                     i, codes[i]);
            goto out;
        }
        if (vals[i].kind == RV_STR || vals[i].kind == RV_BYTES)
            total += (size_t)vals[i].u.s.len;
    }
    /* Strings may be earlier results living in the scratch, which the
     * callee overwrites: give it copies. */
    if (!(copies = malloc(total ? total : 1))) {
        snprintf(err, sizeof(err), "out of memory");
        goto out;
    }
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        if (vals[i].kind != RV_STR && vals[i].kind != RV_BYTES)
            continue;
        memcpy(copies + at, vals[i].u.s.p, (size_t)vals[i].u.s.len);
        vals[i].u.s.p = copies + at;
        at += (size_t)vals[i].u.s.len;
    }
    rpc_value_t out = {.kind = RV_NONE};
    buf_reset(session_scratch(s)); /* global functions return the whole scratch */
    if (g->fn(s, vals, n, &out, err, sizeof(err)) < 0)
        goto out;
    if (tramp_ret(s, &out, ret, ret_code) < 0) {
        snprintf(err, sizeof(err), "%s: its result cannot be passed to compiled code", g->name);
        goto out;
    }
    rc = 0;
out:
    if (rc < 0)
        TVMAPISetLastError(err[0] ? err : "global function failed");
    free(copies);
    free(vals);
    free(ts);
    return rc;
}

typedef struct gwrap {
    mfunc_t *f;
    struct gwrap *next;
} gwrap_t;

static gwrap_t *gwraps; /* process lifetime: compiled code keeps these */

static const native_fn_t *const native_sets[] = {timeeval_natives, NULL};

static const native_fn_t *native_find(const char *name)
{
    for (int i = 0; native_sets[i]; i++)
        for (const native_fn_t *n = native_sets[i]; n->name; n++)
            if (strcmp(n->name, name) == 0)
                return n;
    return NULL;
}

mfunc_t *module_global_function(const char *name)
{
    const native_fn_t *nat = native_find(name);
    const rpc_global_t *g = nat ? NULL : globals_find(name, strlen(name));
    if (!nat && !g)
        return NULL;
    pthread_mutex_lock(&mod_mu);
    for (gwrap_t *w = gwraps; w; w = w->next) {
        if (strcmp(w->f->name, name) == 0) {
            pthread_mutex_unlock(&mod_mu);
            return w->f;
        }
    }
    gwrap_t *w = malloc(sizeof(*w));
    mfunc_t *f =
        w ? mfunc_new(name, nat ? nat->fn : global_tramp, nat ? NULL : (void *)g, NULL, NULL)
          : NULL;
    if (!f) {
        free(w);
        pthread_mutex_unlock(&mod_mu);
        return NULL;
    }
    f->refs = -1;
    w->f = f;
    w->next = gwraps;
    gwraps = w;
    pthread_mutex_unlock(&mod_mu);
    return f;
}

/* ---- libraries and their context -------------------------------------------- */

typedef struct envc {
    mfunc_t *f;
    struct envc *next;
} envc_t;

/* What __tvm_module_ctx points to. */
typedef struct ctx {
    uint64_t magic;
    mod_t *mod;    /* context module, weak: cleared when it dies */
    envc_t *cache; /* what compiled code looked up; kept while loaded */
    struct ctx *next;
} ctx_t;

typedef struct lib lib_t;
struct lib {
    int refs;
    /* Raw symbol lookup; *is_func is 1 for code, 0 for data, -1 unknown. */
    void *(*sym)(lib_t *l, const char *name, int *is_func);
    void (*free)(lib_t *l);
    ctx_t ctx;
    int ffi;            /* ffi generation (module_ffi.c): other ABI, other names */
    const char *prefix; /* system libs: the registry prefix; NULL for files */
};

static ctx_t *ctxs; /* live contexts, for validating what compiled code passes */

static void lib_setup(lib_t *l, void *(*sym)(lib_t *, const char *, int *), void (*fr)(lib_t *))
{
    l->refs = 1;
    l->sym = sym;
    l->free = fr;
    l->ctx.magic = CTX_MAGIC;
    l->ctx.mod = NULL;
    l->ctx.cache = NULL;
    l->ffi = 0;
    l->prefix = NULL;
    pthread_mutex_lock(&mod_mu);
    l->ctx.next = ctxs;
    ctxs = &l->ctx;
    pthread_mutex_unlock(&mod_mu);
}

static void lib_release(lib_t *l)
{
    if (!l || ref_dec(&l->refs) > 0)
        return;
    pthread_mutex_lock(&mod_mu);
    for (ctx_t **pp = &ctxs; *pp; pp = &(*pp)->next) {
        if (*pp == &l->ctx) {
            *pp = l->ctx.next;
            break;
        }
    }
    envc_t *c = l->ctx.cache;
    l->ctx.cache = NULL;
    l->ctx.magic = 0;
    pthread_mutex_unlock(&mod_mu);
    while (c) {
        envc_t *next = c->next;
        mfunc_release(c->f);
        free(c);
        c = next;
    }
    l->free(l);
}

static const char *const reserved_syms[] = {
    "__tvm_module_ctx",
    "__tvm_dev_mblob",
    "__TVMFuncCall",
    "__TVMAPISetLastError",
    "__TVMBackendGetFuncFromEnv",
    "__TVMBackendAllocWorkspace",
    "__TVMBackendFreeWorkspace",
    "__TVMBackendParallelLaunch",
    "__TVMBackendParallelBarrier",
    NULL,
};

static int is_reserved(const char *name)
{
    for (int i = 0; reserved_syms[i]; i++)
        if (strcmp(name, reserved_syms[i]) == 0)
            return 1;
    return 0;
}

/* Length of the C identifier at p (NUL-terminated within MAX_IDENT), or 0.
 * Stops at the first byte that cannot be part of one, so probing code
 * bytes reads only a few of them. */
static size_t ident_len(const char *p)
{
    for (size_t i = 0; i < MAX_IDENT; i++) {
        char c = p[i];
        if (c == '\0')
            return i;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '.' ||
              c == '$' || (i > 0 && c >= '0' && c <= '9')))
            return 0;
    }
    return 0;
}

static TVMBackendPackedCFunc ptr_to_fn(void *p)
{
    TVMBackendPackedCFunc fn;
    memcpy(&fn, &p, sizeof(fn));
    return fn;
}

/* __tvm_main__ (§2.2): LLVM output makes it a string naming the entry,
 * the C target a function forwarding to it. Read it as a string only if
 * it is data, or of unknown kind but spelling an identifier we resolve. */
static void *lib_main_entry(lib_t *l, char *name, size_t namelen, char *err, size_t errlen)
{
    int is_func = -1;
    void *a = l->sym(l, "__tvm_main__", &is_func);
    if (!a) {
        snprintf(err, errlen, "TVMError: Symbol __tvm_main__ is not presented");
        return NULL;
    }
    snprintf(name, namelen, "__tvm_main__");
    if (is_func == 1)
        return a;
    size_t n = ident_len(a);
    int tf = -1;
    void *target = n ? l->sym(l, a, &tf) : NULL;
    if (target && target != a && tf != 0) {
        snprintf(name, namelen, "%s", (const char *)a);
        return target;
    }
    if (is_func == 0) {
        snprintf(err, errlen,
                 "TVMError: __tvm_main__ names %s, which this library does not "
                 "define",
                 n ? (const char *)a : "an invalid symbol");
        return NULL;
    }
    return a;
}

static int lib_get_function(mod_t *m, const char *name, mfunc_t **out, char *err, size_t errlen)
{
    lib_t *l = m->self;
    *out = NULL;
    if (l->ffi)
        return mffi_get_function(l, m, name, out, err, errlen);
    if (is_reserved(name))
        return 0;
    char fname[MAX_IDENT + 16];
    void *p;
    if (strcmp(name, "__tvm_main__") == 0) {
        if (!(p = lib_main_entry(l, fname, sizeof(fname), err, errlen)))
            return -1;
    } else {
        int is_func = -1;
        p = l->sym(l, name, &is_func);
        if (!p || is_func == 0)
            return 0;
        snprintf(fname, sizeof(fname), "%.*s", MAX_IDENT, name);
    }
    if (!(*out = mfunc_new(fname, ptr_to_fn(p), NULL, NULL, m))) {
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    return 0;
}

static void lib_mod_destroy(mod_t *m)
{
    lib_t *l = m->self;
    pthread_mutex_lock(&mod_mu);
    if (l->ctx.mod == m)
        l->ctx.mod = NULL;
    pthread_mutex_unlock(&mod_mu);
    lib_release(l);
}

static const mod_vt_t lib_vt = {
    .type_key = "library", .get_function = lib_get_function, .destroy = lib_mod_destroy};

static mod_t *lib_module_new(lib_t *l)
{
    ref_inc(&l->refs);
    mod_t *m = calloc(1, sizeof(*m));
    if (!m) {
        lib_release(l);
        return NULL;
    }
    m->refs = 1;
    m->vt = &lib_vt;
    m->self = l;
    return m;
}

/* ---- the import blob (§2.3) --------------------------------------------------- */

/* Entry kinds we can deserialize (relax.VMExecutable would go here);
 * every other kind fails the load (payloads have no length). */
static const struct {
    const char *kind;
    blob_loader_fn load;
} blob_loaders[] = {
    {"GraphExecutorFactory", gexec_factory_load},
    {"GraphRuntimeFactory", gexec_factory_load}, /* its name before TVM v0.8 */
    {NULL, NULL},
};

/* "A, B" for the error naming what we can load. */
static void blob_loader_names(char *out, size_t outlen)
{
    size_t at = 0;
    out[0] = '\0';
    for (int i = 0; blob_loaders[i].kind && at < outlen; i++) {
        int n = snprintf(out + at, outlen - at, "%s%s", i ? ", " : "", blob_loaders[i].kind);
        at += n > 0 ? (size_t)n : 0;
    }
}

static blob_loader_fn blob_loader_find(const uint8_t *key, size_t len)
{
    for (int i = 0; blob_loaders[i].kind; i++)
        if (strlen(blob_loaders[i].kind) == len && memcmp(blob_loaders[i].kind, key, len) == 0)
            return blob_loaders[i].load;
    return NULL;
}

typedef struct seg_probe {
    uintptr_t addr;
    size_t avail;
    int found;
} seg_probe_t;

static int seg_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    seg_probe_t *sp = arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (sp->addr >= lo && sp->addr < hi) {
            sp->avail = hi - sp->addr;
            sp->found = 1;
            return 1;
        }
    }
    return 0;
}

/* Bytes readable from p to the end of the loaded segment holding it: the
 * bound for a blob whose length field we cannot otherwise trust. */
int module_seg_avail(const void *p, size_t *avail)
{
    seg_probe_t sp = {.addr = (uintptr_t)p};
    dl_iterate_phdr(seg_cb, &sp);
    *avail = sp.avail;
    return sp.found ? 0 : -1;
}

typedef struct blob {
    mod_t **mods;
    int nmods;
    uint64_t *row, *child;
    uint64_t nrow, nchild;
    int have_tree;
    mod_t *lib; /* the "_lib" module (owned by mods) */
} blob_t;

static int rd_vec_u64(rd_t *r, uint64_t **out, uint64_t *n)
{
    const uint8_t *p;
    if (rd_u64(r, n) < 0 || *n > r->left / 8 || rd_bytes(r, (size_t)*n * 8, &p) < 0)
        return -1;
    *out = malloc(*n ? (size_t)*n * 8 : 1);
    if (!*out)
        return -1;
    for (uint64_t i = 0; i < *n; i++)
        (*out)[i] = le64(p + 8 * i);
    return 0;
}

static int blob_entry(blob_t *b, lib_t *l, rd_t *r, char *err, size_t errlen)
{
    uint64_t klen;
    const uint8_t *key;
    if (rd_u64(r, &klen) < 0 || klen > MAX_BLOB_KEY || rd_bytes(r, (size_t)klen, &key) < 0) {
        snprintf(err, errlen, "TVMError: __tvm_dev_mblob is truncated or malformed");
        return -1;
    }
    if (klen == 4 && memcmp(key, "_lib", 4) == 0) {
        if (b->lib) {
            snprintf(err, errlen, "TVMError: Multiple dso module detected in __tvm_dev_mblob");
            return -1;
        }
        if (!(b->lib = b->mods[b->nmods++] = lib_module_new(l)))
            goto oom;
        return 0;
    }
    if (klen == 12 && memcmp(key, "_import_tree", 12) == 0) {
        if (b->have_tree || rd_vec_u64(r, &b->row, &b->nrow) < 0 ||
            rd_vec_u64(r, &b->child, &b->nchild) < 0) {
            snprintf(err, errlen, "TVMError: __tvm_dev_mblob has a malformed _import_tree");
            return -1;
        }
        b->have_tree = 1;
        return 0;
    }
    blob_loader_fn load = blob_loader_find(key, (size_t)klen);
    if (!load) {
        char names[256];
        blob_loader_names(names, sizeof(names));
        snprintf(err, errlen,
                 "TVMError: Binary was created using %.*s but a loader of that "
                 "name is not registered. Available loaders are %s. Perhaps you need to "
                 "recompile with this runtime enabled.",
                 (int)klen, (const char *)key, names);
        return -1;
    }
    mod_t *m = NULL;
    if (load(r, &m, err, errlen) < 0) {
        mod_release(m);
        return -1;
    }
    b->mods[b->nmods++] = m;
    return 0;
oom:
    snprintf(err, errlen, "MemoryError: out of memory");
    return -1;
}

/* Wire the modules per the CSR import tree; module 0 is the root. */
static int blob_tree(blob_t *b, char *err, size_t errlen)
{
    if (b->nrow != (uint64_t)b->nmods + 1 || b->row[b->nmods] > b->nchild) {
        snprintf(err, errlen,
                 "TVMError: __tvm_dev_mblob: import tree does not match its %d "
                 "modules",
                 b->nmods);
        return -1;
    }
    for (int i = 0; i < b->nmods; i++) {
        if (b->row[i] > b->row[i + 1]) {
            snprintf(err, errlen, "TVMError: __tvm_dev_mblob: import tree rows out of order");
            return -1;
        }
        for (uint64_t j = b->row[i]; j < b->row[i + 1]; j++) {
            if (b->child[j] >= (uint64_t)b->nmods) {
                snprintf(err, errlen,
                         "TVMError: __tvm_dev_mblob: import of module %llu, "
                         "which does not exist",
                         (unsigned long long)b->child[j]);
                return -1;
            }
            if (mod_import(b->mods[i], b->mods[b->child[j]], err, errlen) < 0)
                return -1;
        }
    }
    return 0;
}

/* Parse the len-byte blob payload at p (after its length word). *root and
 * *ctxm get new references (*ctxm may be NULL: a tree without "_lib" has no
 * context module). */
static int blob_parse(lib_t *l, const uint8_t *p, size_t len, mod_t **root, mod_t **ctxm, char *err,
                      size_t errlen)
{
    blob_t b = {0};
    int rc = -1;
    *root = *ctxm = NULL;
    rd_t r = rd_make(p, len);
    uint64_t count;
    if (rd_u64(&r, &count) < 0 || count == 0 || count > MAX_BLOB_MODULES) {
        snprintf(err, errlen, "TVMError: __tvm_dev_mblob: bad entry count");
        return -1;
    }
    if (!(b.mods = calloc((size_t)count, sizeof(*b.mods)))) {
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    for (uint64_t i = 0; i < count; i++)
        if (blob_entry(&b, l, &r, err, errlen) < 0)
            goto out;
    if (r.left) {
        snprintf(err, errlen, "TVMError: __tvm_dev_mblob: %zu unexpected trailing bytes", r.left);
        goto out;
    }
    if (b.nmods == 0) {
        snprintf(err, errlen, "TVMError: __tvm_dev_mblob holds no modules");
        goto out;
    }
    if (b.have_tree) {
        if (blob_tree(&b, err, errlen) < 0)
            goto out;
        *root = b.mods[0];
        *ctxm = b.lib;
        mod_retain(*root); /* mods[] drops its references below */
        if (*ctxm)
            mod_retain(*ctxm);
    } else {
        /* Legacy: a fresh library module imports everything, in order. */
        mod_t *n = lib_module_new(l);
        if (!n) {
            snprintf(err, errlen, "MemoryError: out of memory");
            goto out;
        }
        for (int i = 0; i < b.nmods; i++) {
            if (mod_import(n, b.mods[i], err, errlen) < 0) {
                mod_release(n);
                goto out;
            }
        }
        *root = *ctxm = n;
        mod_retain(n); /* one reference each */
    }
    rc = 0;
out:
    for (int i = 0; i < b.nmods; i++)
        mod_release(b.mods[i]);
    free(b.mods);
    free(b.row);
    free(b.child);
    return rc;
}

/* The blob at p inside a loaded library: its length word is bounded by the
 * segment holding it, since nothing else vouches for it. */
static int blob_load(lib_t *l, const uint8_t *p, mod_t **root, mod_t **ctxm, char *err,
                     size_t errlen)
{
    size_t avail;
    *root = *ctxm = NULL;
    if (module_seg_avail(p, &avail) < 0 || avail < 8 || le64(p) > avail - 8) {
        snprintf(err, errlen, "TVMError: __tvm_dev_mblob is truncated");
        return -1;
    }
    return blob_parse(l, p + 8, (size_t)le64(p), root, ctxm, err, errlen);
}

static void *no_symbol(lib_t *l, const char *name, int *is_func)
{
    (void)l;
    (void)name;
    *is_func = -1;
    return NULL;
}

static void free_bare_lib(lib_t *l)
{
    free(l);
}

int module_blob_check(const uint8_t *p, size_t n, char *err, size_t errlen)
{
    lib_t *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    lib_setup(l, no_symbol, free_bare_lib);
    mod_t *root, *ctxm;
    int rc = blob_parse(l, p, n, &root, &ctxm, err, errlen);
    mod_release(root);
    mod_release(ctxm);
    lib_release(l);
    return rc;
}

/* ---- loading a library (§2.2) ------------------------------------------------- */

static void *fn_any(void (*f)(void))
{
    void *p;
    memcpy(&p, &f, sizeof(p));
    return p;
}

/* The function-pointer variables LLVM output reaches the runtime through. */
static void lib_set_context_fns(lib_t *l)
{
    const struct {
        const char *name;
        void *impl;
    } fns[] = {
        {"__TVMFuncCall", fn_any((void (*)(void))TVMFuncCall)},
        {"__TVMAPISetLastError", fn_any((void (*)(void))TVMAPISetLastError)},
        {"__TVMBackendGetFuncFromEnv", fn_any((void (*)(void))TVMBackendGetFuncFromEnv)},
        {"__TVMBackendAllocWorkspace", fn_any((void (*)(void))TVMBackendAllocWorkspace)},
        {"__TVMBackendFreeWorkspace", fn_any((void (*)(void))TVMBackendFreeWorkspace)},
        {"__TVMBackendParallelLaunch", fn_any((void (*)(void))TVMBackendParallelLaunch)},
        {"__TVMBackendParallelBarrier", fn_any((void (*)(void))TVMBackendParallelBarrier)},
    };
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
        int is_func;
        void *p = l->sym(l, fns[i].name, &is_func);
        if (p && is_func != 1)
            memcpy(p, &fns[i].impl, sizeof(void *));
    }
}

/* §2.2 steps 2-3: context pointers, then the blob or a library module. */
static int lib_init_classic(lib_t *l, mod_t **root, mod_t **ctxm, char *err, size_t errlen)
{
    int is_func;
    lib_set_context_fns(l);
    const uint8_t *blob = l->sym(l, "__tvm_dev_mblob", &is_func);
    if (blob && is_func != 1)
        return blob_load(l, blob, root, ctxm, err, errlen);
    if (!(*root = lib_module_new(l))) {
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    *ctxm = *root;
    mod_retain(*ctxm);
    return 0;
}

/* The loading procedure of §2.2 steps 2-4 / §2.7 (also for system libs). */
static int lib_init(lib_t *l, mod_t **out, char *err, size_t errlen)
{
    mod_t *root, *ctxm;
    int is_func;
    int rc = l->ffi ? mffi_lib_init(l, &root, &ctxm, err, errlen)
                    : lib_init_classic(l, &root, &ctxm, err, errlen);
    if (rc < 0)
        return -1;
    pthread_mutex_lock(&mod_mu);
    l->ctx.mod = ctxm;
    pthread_mutex_unlock(&mod_mu);
    void *cp = l->sym(l, l->ffi ? "__tvm_ffi__library_ctx" : "__tvm_module_ctx", &is_func);
    if (cp && is_func != 1) {
        void *token = &l->ctx;
        memcpy(cp, &token, sizeof(token));
    }
    mod_release(ctxm); /* weak from now on: its destroy clears l->ctx.mod */
    *out = root;
    return 0;
}

typedef struct dso {
    lib_t lib; /* first: a dso_t is a lib_t */
    void *h;
    const char *lname; /* the loader's name for it, to tell its symbols apart */
    int pinned;        /* registered system-lib symbols: never unloaded */
    struct dso *next;
} dso_t;

static dso_t *dsos;

/* dlsym on a library handle also finds its dependencies' symbols (libc's
 * included); only the library's own count. */
static void *dso_sym(lib_t *l, const char *name, int *is_func)
{
    dso_t *d = (dso_t *)l;
    *is_func = -1;
    void *p = dlsym(d->h, name);
    if (!p)
        return NULL;
    Dl_info info;
#ifdef RTLD_DL_SYMENT
    const ElfW(Sym) *sym = NULL;
    if (!dladdr1(p, &info, (void **)&sym, RTLD_DL_SYMENT))
        return p;
    if (sym && info.dli_saddr == p) {
        int t = sym->st_info & 0xf;
        *is_func = t == STT_FUNC || t == STT_GNU_IFUNC ? 1
                   : t == STT_OBJECT || t == STT_TLS   ? 0
                                                       : -1;
    }
#else
    if (!dladdr(p, &info))
        return p;
#endif
    if (d->lname && info.dli_fname && strcmp(info.dli_fname, d->lname) != 0)
        return NULL;
    return p;
}

static void dso_free(lib_t *l)
{
    dso_t *d = (dso_t *)l;
    pthread_mutex_lock(&mod_mu);
    for (dso_t **pp = &dsos; *pp; pp = &(*pp)->next) {
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    }
    pthread_mutex_unlock(&mod_mu);
    if (!d->pinned)
        dlclose(d->h);
    free(d);
}

/* One dso_t per dlopen handle: loading a file twice gives the same handle
 * (and the same __tvm_module_ctx variable); the later load's context wins,
 * as in TVM. Takes over the caller's dlopen reference. */
static dso_t *dso_get(void *h, int pinned)
{
    pthread_mutex_lock(&mod_mu);
    for (dso_t *d = dsos; d; d = d->next) {
        if (d->h == h && d->lib.refs > 0) {
            ref_inc(&d->lib.refs);
            d->pinned |= pinned;
            pthread_mutex_unlock(&mod_mu);
            dlclose(h);
            return d;
        }
    }
    pthread_mutex_unlock(&mod_mu);
    dso_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->h = h;
    d->pinned = pinned;
    struct link_map *lm = NULL;
    if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm)
        d->lname = lm->l_name;
    lib_setup(&d->lib, dso_sym, dso_free);
    pthread_mutex_lock(&mod_mu);
    d->next = dsos;
    dsos = d;
    pthread_mutex_unlock(&mod_mu);
    return d;
}

/* ---- system library (§2.6) ----------------------------------------------------- */

typedef struct symreg {
    char *name;
    void *ptr;
} symreg_t;

static struct {
    symreg_t *v;
    size_t n, cap;
    unsigned long gen; /* bumped by every registration */
} reg;

int module_syslib_register(const char *name, void *ptr)
{
    if (!name)
        return -1;
    pthread_mutex_lock(&mod_mu);
    reg.gen++;
    for (size_t i = 0; i < reg.n; i++) {
        if (strcmp(reg.v[i].name, name) == 0) {
            reg.v[i].ptr = ptr;
            pthread_mutex_unlock(&mod_mu);
            return 0;
        }
    }
    int rc = -1;
    if (reg.n == reg.cap) {
        size_t ncap = reg.cap ? reg.cap * 2 : 32;
        symreg_t *nv = realloc(reg.v, ncap * sizeof(*nv));
        if (!nv)
            goto out;
        reg.v = nv;
        reg.cap = ncap;
    }
    if (!(reg.v[reg.n].name = strdup(name)))
        goto out;
    reg.v[reg.n++].ptr = ptr;
    rc = 0;
out:
    pthread_mutex_unlock(&mod_mu);
    return rc;
}

static unsigned long reg_gen(void)
{
    pthread_mutex_lock(&mod_mu);
    unsigned long g = reg.gen;
    pthread_mutex_unlock(&mod_mu);
    return g;
}

static void *reg_find(const char *name)
{
    for (size_t i = 0; i < reg.n; i++)
        if (strcmp(reg.v[i].name, name) == 0)
            return reg.v[i].ptr;
    return NULL;
}

typedef struct syslib {
    lib_t lib;
    char prefix[];
} syslib_t;

/* registry[prefix + name], else registry[name]. */
static void *syslib_sym(lib_t *l, const char *name, int *is_func)
{
    syslib_t *sl = (syslib_t *)l;
    char full[2 * MAX_IDENT];
    *is_func = -1;
    pthread_mutex_lock(&mod_mu);
    void *p = NULL;
    if (sl->prefix[0] && snprintf(full, sizeof(full), "%s%s", sl->prefix, name) < (int)sizeof(full))
        p = reg_find(full);
    if (!p)
        p = reg_find(name);
    pthread_mutex_unlock(&mod_mu);
    return p;
}

static void syslib_free(lib_t *l)
{
    free(l);
}

typedef struct sysmod {
    mod_t *m;
    int ffi;
    struct sysmod *next;
    char prefix[];
} sysmod_t;

/* One module per generation and prefix for the process lifetime; both
 * generations share the registry (their names do not overlap). */
static sysmod_t *sysmods;

int module_syslib_get(const char *prefix, int ffi, mod_t **out, char *err, size_t errlen)
{
    for (sysmod_t *sm = sysmods; sm; sm = sm->next) {
        if (sm->ffi == ffi && strcmp(sm->prefix, prefix) == 0) {
            mod_retain(sm->m);
            *out = sm->m;
            return 0;
        }
    }
    size_t n = strlen(prefix);
    syslib_t *sl = malloc(sizeof(*sl) + n + 1);
    sysmod_t *sm = malloc(sizeof(*sm) + n + 1);
    if (!sl || !sm) {
        free(sl);
        free(sm);
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    memcpy(sl->prefix, prefix, n + 1);
    memcpy(sm->prefix, prefix, n + 1);
    sm->ffi = ffi;
    lib_setup(&sl->lib, syslib_sym, syslib_free);
    sl->lib.ffi = ffi;
    sl->lib.prefix = sl->prefix;
    int rc = lib_init(&sl->lib, &sm->m, err, errlen);
    lib_release(&sl->lib);
    if (rc < 0) {
        free(sm);
        return -1;
    }
    sm->next = sysmods;
    sysmods = sm;
    mod_retain(sm->m);
    *out = sm->m;
    return 0;
}

/* ---- what module_ffi.c uses (module_ffi.h) -------------------------------------- */

void *module_lib_sym(lib_t *l, const char *name, int *is_func)
{
    return l->sym(l, name, is_func);
}

static void *reg_find_locked(const char *name)
{
    pthread_mutex_lock(&mod_mu);
    void *p = reg_find(name);
    pthread_mutex_unlock(&mod_mu);
    return p;
}

void *module_lib_ffi_func_sym(lib_t *l, const char *name, int *is_func)
{
    char full[2 * MAX_IDENT + 16];
    const char *prefix = l->prefix ? l->prefix : "";
    *is_func = -1;
    if (snprintf(full, sizeof(full), "__tvm_ffi_%s%s", prefix, name) >= (int)sizeof(full))
        return NULL;
    if (!l->prefix)
        return l->sym(l, full, is_func);
    void *p = reg_find_locked(full); /* exact: syslib_sym would prefix it again */
    if (!p && prefix[0] && snprintf(full, sizeof(full), "__tvm_ffi_%s", name) < (int)sizeof(full))
        p = reg_find_locked(full);
    return p;
}

mod_t *module_lib_module(lib_t *l)
{
    return lib_module_new(l);
}

/* ---- compiled code looking functions up (§2.5) ------------------------------- */

static ctx_t *ctx_find(void *p)
{
    for (ctx_t *c = ctxs; c; c = c->next)
        if (c == p)
            return c;
    return NULL;
}

static mfunc_t *ctx_cached(ctx_t *c, const char *name)
{
    for (envc_t *e = c->cache; e; e = e->next)
        if (strcmp(e->f->name, name) == 0)
            return e->f;
    return NULL;
}

/* Search the imports of the context module (not the module itself). */
static int env_search_imports(void *ctxp, const char *name, mfunc_t **out, char *err, size_t errlen)
{
    *out = NULL;
    pthread_mutex_lock(&mod_mu);
    ctx_t *c = ctx_find(ctxp);
    mod_t *m = c ? c->mod : NULL;
    if (m)
        mod_retain(m);
    pthread_mutex_unlock(&mod_mu);
    if (!m)
        return 0;
    int rc = 0;
    for (int i = 0; rc == 0 && !*out && i < m->nimports; i++)
        rc = mod_get_function(m->imports[i], name, 1, out, err, errlen);
    mod_release(m);
    return rc;
}

/* Keep f in the context's cache; returns the cached function (f or an
 * equal one another thread added first), NULL if the context died. */
static mfunc_t *env_cache_add(void *ctxp, mfunc_t *f)
{
    envc_t *e = malloc(sizeof(*e));
    pthread_mutex_lock(&mod_mu);
    ctx_t *c = ctx_find(ctxp);
    mfunc_t *hit = c ? ctx_cached(c, f->name) : NULL;
    if (c && !hit && e) {
        e->f = f;
        e->next = c->cache;
        c->cache = e;
        hit = f;
        e = NULL;
        f = NULL;
    }
    pthread_mutex_unlock(&mod_mu);
    free(e);
    mfunc_release(f);
    return hit;
}

int module_env_lookup(void *ctxp, const char *name, TVMFunctionHandle *out)
{
    char err[1024];
    if (!name || !out) {
        TVMAPISetLastError("TVMBackendGetFuncFromEnv: NULL argument");
        return -1;
    }
    pthread_mutex_lock(&mod_mu);
    ctx_t *c = ctxp ? ctx_find(ctxp) : NULL;
    mfunc_t *hit = c ? ctx_cached(c, name) : NULL;
    pthread_mutex_unlock(&mod_mu);
    if (!hit) {
        mfunc_t *f;
        if (env_search_imports(ctxp, name, &f, err, sizeof(err)) < 0) {
            TVMAPISetLastError(err);
            return -1;
        }
        if (f)
            hit = env_cache_add(ctxp, f);
    }
    if (!hit)
        hit = module_global_function(name);
    if (!hit) {
        snprintf(err, sizeof(err),
                 "Cannot find function %.256s in the imported modules or "
                 "global registry. If this involves ops from a contrib library like cuDNN, "
                 "ensure TVM was built with the relevant library.",
                 name);
        TVMAPISetLastError(err);
        return -1;
    }
    *out = hit;
    return 0;
}

/* ---- loading ------------------------------------------------------------------ */

int module_can_load(void)
{
    static int state; /* 0 unknown, 1 yes, -1 no */
    if (state == 0) {
        void *self = dlopen(NULL, RTLD_LAZY);
        state = self && dlsym(self, "TVMBackendAllocWorkspace") ? 1 : -1;
        if (self)
            dlclose(self);
    }
    return state > 0;
}

int module_load_library(const char *path, mod_t **out, char *err, size_t errlen)
{
    if (!module_can_load()) {
        snprintf(err, errlen,
                 "RPCError: this tvmrpc was linked statically; build with "
                 "-DTVMRPC_STATIC=OFF to load modules");
        return -1;
    }
    unsigned long gen = reg_gen();
    dlerror();
    void *h = dlopen(path, RTLD_LAZY | RTLD_LOCAL); /* never GLOBAL (§2.1) */
    if (!h) {
        const char *e = dlerror();
        snprintf(err, errlen, "TVMError: Failed to load dynamic shared library %s %s", path,
                 e ? e : "");
        return -1;
    }
    /* Libraries that registered system-lib symbols from their constructors
     * stay loaded: the registry points into them. */
    dso_t *d = dso_get(h, reg_gen() != gen);
    if (!d) {
        dlclose(h);
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    d->lib.ffi = mffi_detect(&d->lib);
    int rc = lib_init(&d->lib, out, err, errlen);
    lib_release(&d->lib);
    return rc;
}

/* ---- linking uploads (§1.2) ------------------------------------------------- */

#define MAX_CC_WORDS 16
#define MAX_LINK_INPUTS 256
#define TAR_LISTING_MAX (1 << 20)

static char cc_override[PATH_MAX];

void module_set_cc(const char *cc)
{
    snprintf(cc_override, sizeof(cc_override), "%s", cc ? cc : "");
}

static int in_path(const char *name)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");
        char full[PATH_MAX];
        if (n > 0 &&
            snprintf(full, sizeof(full), "%.*s/%s", (int)n, path, name) < (int)sizeof(full) &&
            access(full, X_OK) == 0)
            return 1;
        path += n;
        if (*path == ':')
            path++;
    }
    return 0;
}

/* The compiler command split into words in buf: --cc, else $CC (which may
 * carry flags, as make allows), else the first of gcc, cc, clang on PATH.
 * Returns the word count, 0 if there is no compiler. */
static int cc_words(char *buf, size_t buflen, char **words)
{
    const char *cc = cc_override[0] ? cc_override : getenv("CC");
    if (!cc || !*cc) {
        static const char *const cands[] = {"gcc", "cc", "clang", NULL};
        for (int i = 0; !cc && cands[i]; i++)
            if (in_path(cands[i]))
                cc = cands[i];
    }
    if (!cc || snprintf(buf, buflen, "%s", cc) >= (int)buflen)
        return 0;
    int n = 0;
    for (char *save, *w = strtok_r(buf, " \t", &save); w && n < MAX_CC_WORDS;
         w = strtok_r(NULL, " \t", &save))
        words[n++] = w;
    return n;
}

/* Run argv with stdout+stderr collected in out (truncated to outlen) and
 * stdin from /dev/null. Returns the exit status (128+signal when killed),
 * -1 if it could not be started. */
static int run_capture(char *const argv[], char *out, size_t outlen)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -1;
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536)
        maxfd = 65536;
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        /* The session socket must not outlive the worker in a compiler. */
#ifdef SYS_close_range
        if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
#endif
            for (long fd = 3; fd < maxfd; fd++)
                close((int)fd);
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], argv);
        dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pfd[1]);
    size_t len = 0;
    char sink[4096];
    for (;;) {
        char *dst = len + 1 < outlen ? out + len : sink;
        size_t room = len + 1 < outlen ? outlen - 1 - len : sizeof(sink);
        ssize_t r = read(pfd[0], dst, room);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (dst != sink)
            len += (size_t)r;
    }
    if (outlen)
        out[len] = '\0';
    close(pfd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The last line of tool output, for error messages. */
static const char *last_line(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    char *nl = strrchr(s, '\n');
    return nl ? nl + 1 : s;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

/* Every member must stay inside the extraction directory. */
int module_tar_names_ok(char *listing, char *bad, size_t badlen)
{
    for (char *save, *line = strtok_r(listing, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        int ok = line[0] != '/';
        for (const char *p = line; ok && *p;) {
            size_t n = strcspn(p, "/");
            ok = !(n == 2 && p[0] == '.' && p[1] == '.');
            p += n;
            while (*p == '/')
                p++;
        }
        if (!ok) {
            snprintf(bad, badlen, "%s", line);
            return 0;
        }
    }
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Extract tarpath into a fresh directory next to it and list its
 * top-level regular files (symlinks and directories are not linked). */
static int untar(const char *tarpath, char *dir, size_t dirlen, char **files, int *nfiles,
                 char *err, size_t errlen)
{
    char *listing = malloc(TAR_LISTING_MAX);
    int rc = -1;
    *nfiles = 0;
    if (!listing) {
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    char *list_argv[] = {"tar", "-tf", (char *)tarpath, NULL};
    int st = run_capture(list_argv, listing, TAR_LISTING_MAX);
    char bad[256];
    if (st != 0) {
        snprintf(err, errlen, "TVMError: cannot read the tar archive %s: %s", tarpath,
                 st < 0 ? "cannot run tar" : last_line(listing));
        goto out;
    }
    if (strlen(listing) >= TAR_LISTING_MAX - 1 || !module_tar_names_ok(listing, bad, sizeof(bad))) {
        snprintf(err, errlen,
                 "ValueError: tar archive %s has a member outside its directory "
                 "(%s)",
                 tarpath, bad);
        goto out;
    }
    if (snprintf(dir, dirlen, "%.*s.XXXXXX", (int)(strlen(tarpath) - 4), tarpath) >= (int)dirlen ||
        !mkdtemp(dir)) {
        snprintf(err, errlen, "TVMError: cannot create a directory for %s: %s", tarpath,
                 strerror(errno));
        dir[0] = '\0';
        goto out;
    }
    char *x_argv[] = {"tar", "-xof", (char *)tarpath, "-C", dir, NULL};
    if ((st = run_capture(x_argv, listing, 4096)) != 0) {
        snprintf(err, errlen, "TVMError: cannot extract %s: %s", tarpath,
                 st < 0 ? "cannot run tar" : last_line(listing));
        goto out;
    }
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) && *nfiles < MAX_LINK_INPUTS) {
        char full[PATH_MAX];
        struct stat sb;
        if (e->d_name[0] == '.' ||
            snprintf(full, sizeof(full), "%s/%s", dir, e->d_name) >= (int)sizeof(full) ||
            lstat(full, &sb) < 0 || !S_ISREG(sb.st_mode))
            continue;
        if (!(files[*nfiles] = strdup(full)))
            break;
        (*nfiles)++;
    }
    if (d)
        closedir(d);
    if (*nfiles == 0) {
        snprintf(err, errlen, "ValueError: tar archive %s holds no files to link", tarpath);
        goto out;
    }
    qsort(files, (size_t)*nfiles, sizeof(*files), cmp_str);
    rc = 0;
out:
    free(listing);
    return rc;
}

static int cc_link(char **inputs, int ninputs, const char *out, char *err, size_t errlen)
{
    char ccbuf[PATH_MAX], log[2048];
    char *argv[MAX_CC_WORDS + MAX_LINK_INPUTS + 8];
    int n = cc_words(ccbuf, sizeof(ccbuf), argv);
    if (n == 0) {
        snprintf(err, errlen,
                 "RPCError: cannot link %s: no C compiler found (use --cc, set $CC, "
                 "or install gcc, cc or clang)",
                 out);
        return -1;
    }
    argv[n++] = "-shared";
    argv[n++] = "-fPIC";
    argv[n++] = "-o";
    argv[n++] = (char *)out;
    for (int i = 0; i < ninputs; i++)
        argv[n++] = inputs[i];
    argv[n] = NULL;
    int st = run_capture(argv, log, sizeof(log));
    if (st != 0) {
        snprintf(err, errlen, "TVMError: linking %s with %s failed (%s %d): %s", out, argv[0],
                 st < 0     ? "cannot start"
                 : st > 128 ? "signal"
                            : "exit status",
                 st > 128 ? st - 128 : st, st < 0 ? strerror(errno) : last_line(log));
        return -1;
    }
    return 0;
}

int module_link(const char *path, char *out, size_t outlen, char *err, size_t errlen)
{
    int is_tar = has_suffix(path, ".tar");
    if (!is_tar && !has_suffix(path, ".o")) {
        snprintf(err, errlen, "ValueError: Do not know how to link %s", path);
        return -1;
    }
    if (snprintf(out, outlen, "%s.so", path) >= (int)outlen) {
        snprintf(err, errlen, "ValueError: path too long: %s", path);
        return -1;
    }
    if (!is_tar)
        return cc_link((char **)&path, 1, out, err, errlen);
    char dir[PATH_MAX] = "";
    char *files[MAX_LINK_INPUTS];
    int nfiles = 0;
    int rc = untar(path, dir, sizeof(dir), files, &nfiles, err, errlen);
    if (rc == 0)
        rc = cc_link(files, nfiles, out, err, errlen);
    for (int i = 0; i < nfiles; i++)
        free(files[i]);
    if (dir[0])
        ws_remove_tree(dir);
    return rc;
}

/* ---- global functions ------------------------------------------------------- */

#define MAX_NAME 1024
#define MAX_DOWNLOAD ((uint64_t)4 << 30)

static int arg_cstr(const rpc_value_t *args, int nargs, int i, char *out, size_t outlen, char *err,
                    size_t errlen)
{
    if (i >= nargs || args[i].kind != RV_STR) {
        snprintf(err, errlen, "TypeError: argument %d must be a string", i);
        return -1;
    }
    uint64_t n = args[i].u.s.len;
    if (n >= outlen || memchr(args[i].u.s.p, '\0', (size_t)n)) {
        snprintf(err, errlen, "ValueError: argument %d is too long or contains NUL", i);
        return -1;
    }
    memcpy(out, args[i].u.s.p, (size_t)n);
    out[n] = '\0';
    return 0;
}

static int arg_bool(const rpc_value_t *args, int nargs, int i, int dflt, int *out, char *err,
                    size_t errlen)
{
    if (i >= nargs) {
        *out = dflt;
        return 0;
    }
    if (args[i].kind != RV_INT && args[i].kind != RV_BOOL) {
        snprintf(err, errlen, "TypeError: argument %d must be a bool", i);
        return -1;
    }
    *out = args[i].u.i != 0;
    return 0;
}

static mod_t *arg_module(session_t *s, const rpc_value_t *args, int nargs, int i, char *err,
                         size_t errlen)
{
    mod_t *m = i < nargs && args[i].kind == RV_MODULE ? module_from_handle(s, args[i].u.h) : NULL;
    if (!m)
        snprintf(err, errlen, "TypeError: argument %d must be a module of this session", i);
    return m;
}

/* A client file name, resolved inside the workspace; it must exist. */
static int arg_file(session_t *s, const rpc_value_t *args, int nargs, char *path, char *err,
                    size_t errlen)
{
    char name[PATH_MAX], why[PATH_MAX + 64];
    struct stat st;
    if (arg_cstr(args, nargs, 0, name, sizeof(name), err, errlen) < 0)
        return -1;
    if (ws_resolve(session_workspace(s), name, path, PATH_MAX, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "PermissionError: %.*s", (int)(errlen > 20 ? errlen - 20 : 0), why);
        return -1;
    }
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "ValueError: cannot find file %s", path);
        return -1;
    }
    return 0;
}

/* Format of a file name: after its last '.', with dll/dylib/dso as so. */
static const char *file_format(const char *path)
{
    const char *base = strrchr(path, '/');
    const char *dot = strrchr(base ? base : path, '.');
    if (!dot)
        return "";
    dot++;
    return !strcmp(dot, "dll") || !strcmp(dot, "dylib") || !strcmp(dot, "dso") ? "so" : dot;
}

int module_fn_load_module(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                          char *err, size_t errlen)
{
    char path[PATH_MAX], linked[PATH_MAX];
    if (arg_file(s, args, nargs, path, err, errlen) < 0)
        return -1;
    if (!module_can_load()) {
        snprintf(err, errlen,
                 "RPCError: this tvmrpc was linked statically; build with "
                 "-DTVMRPC_STATIC=OFF to load modules");
        return -1;
    }
    const char *fmt = file_format(path);
    const char *lib = path;
    if (!strcmp(fmt, "o") || !strcmp(fmt, "tar")) {
        if (module_link(path, linked, sizeof(linked), err, errlen) < 0)
            return -1;
        lib = linked;
    } else if (strcmp(fmt, "so") != 0) {
        snprintf(err, errlen,
                 "TVMError: Loader for `.%s` files is not registered, resolved to "
                 "(runtime.module.loadfile_%s) in the global registry.",
                 fmt, fmt);
        return -1;
    }
    mod_t *m;
    if (module_load_library(lib, &m, err, errlen) < 0)
        return -1;
    ret->kind = RV_MODULE;
    if (!(ret->u.h = module_handle_new(s, m))) {
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    log_info("session: loaded %s", lib);
    return 0;
}

static int read_to_scratch(session_t *s, const char *path, rpc_value_t *ret, char *err,
                           size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || (uint64_t)st.st_size > MAX_DOWNLOAD) {
        snprintf(err, errlen, "RPCError: Cannot open %s", path);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    buf_t *b = session_scratch(s);
    buf_reset(b);
    uint8_t *p = buf_tail(b, (size_t)st.st_size);
    size_t got = 0;
    while (p && got < (size_t)st.st_size) {
        ssize_t r = read(fd, p + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!p || got != (size_t)st.st_size) {
        snprintf(err, errlen, "RPCError: cannot read %s", path);
        return -1;
    }
    buf_commit(b, got);
    ret->kind = RV_BYTES;
    ret->u.s.p = (const char *)buf_head(b);
    ret->u.s.len = got;
    return 0;
}

/* Like TVM's C++ server, anything that needs no linking comes back as is. */
int module_fn_download_linked(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                              char *err, size_t errlen)
{
    char path[PATH_MAX], linked[PATH_MAX];
    if (arg_file(s, args, nargs, path, err, errlen) < 0)
        return -1;
    const char *fmt = file_format(path);
    const char *out = path;
    if (!strcmp(fmt, "o") || !strcmp(fmt, "tar")) {
        if (module_link(path, linked, sizeof(linked), err, errlen) < 0)
            return -1;
        out = linked;
    }
    return read_to_scratch(s, out, ret, err, errlen);
}

int module_fn_get_function(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                           char *err, size_t errlen)
{
    char name[MAX_NAME];
    int query;
    mod_t *m = arg_module(s, args, nargs, 0, err, errlen);
    if (!m || arg_cstr(args, nargs, 1, name, sizeof(name), err, errlen) < 0 ||
        arg_bool(args, nargs, 2, 0, &query, err, errlen) < 0)
        return -1;
    mfunc_t *f;
    if (mod_get_function(m, name, query, &f, err, errlen) < 0)
        return -1;
    if (!f) {
        ret->kind = RV_NONE; /* missing is not an error (§1.4) */
        return 0;
    }
    ret->kind = RV_FUNC;
    if (!(ret->u.h = mfunc_handle_new(s, f))) {
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    return 0;
}

int module_fn_import(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret, char *err,
                     size_t errlen)
{
    mod_t *parent = arg_module(s, args, nargs, 0, err, errlen);
    mod_t *child = parent ? arg_module(s, args, nargs, 1, err, errlen) : NULL;
    if (!child)
        return -1;
    return mod_import(parent, child, err, errlen);
}

static int system_lib(session_t *s, int ffi, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                      char *err, size_t errlen)
{
    char prefix[MAX_IDENT] = "";
    if (nargs > 0 && args[0].kind != RV_NONE &&
        arg_cstr(args, nargs, 0, prefix, sizeof(prefix), err, errlen) < 0)
        return -1;
    mod_t *m;
    if (module_syslib_get(prefix, ffi, &m, err, errlen) < 0)
        return -1;
    ret->kind = RV_MODULE;
    if (!(ret->u.h = module_handle_new(s, m))) {
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    return 0;
}

int module_fn_system_lib(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                         char *err, size_t errlen)
{
    return system_lib(s, 0, args, nargs, ret, err, errlen);
}

int module_fn_ffi_system_lib(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                             char *err, size_t errlen)
{
    return system_lib(s, 1, args, nargs, ret, err, errlen);
}
