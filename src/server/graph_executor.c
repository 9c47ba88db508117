/* The graph executor and its factory (RUNTIME.md §3.2-§3.5, §1.6).
 *
 * An executor owns: the parsed graph; one store per storage slot; per
 * entry a DLTensor view of its store; per operator the packed arguments
 * (values, codes, and its own copies of the argument DLTensors, so that
 * flatten_data and zero-copy rebinding touch only that operator). Stores
 * are reference counted because arrays handed to clients and executors
 * that share_params point into them, and they outlive the executor if a
 * client still holds such an array.
 *
 * Every function of the module is a packed C function whose resource is
 * the executor module itself, so the time evaluator, compiled code and
 * clients all call them the same way. Errors are Python-kinded messages
 * naming the input, output, node or field at fault. */
#include "server/graph_executor.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "server/graph.h"
#include "server/hostmem.h"

#define GX_ALIGN 64
#define GX_MAX_DEVICES 64
#define GX_ERR 1024
#define GX_DESC 160
#define GX_NDARRAY_MIN 40 /* smallest NDArray record: header + data size, ndim 0 */

/* ---- errors and descriptions ---------------------------------------------------- */

static int set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int gx_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* For packed functions: the message goes where TVMGetLastError finds it. */
static int gx_fail(const char *fmt, ...)
{
    char msg[GX_ERR];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    TVMAPISetLastError(msg);
    return -1;
}

static DLDataType dl_dtype(rpc_dtype_t d)
{
    DLDataType t = {d.code, d.bits, d.lanes};
    return t;
}

/* "float32[1,3,16,16]" */
static const char *desc(char *buf, size_t len, DLDataType dt, int ndim, const int64_t *shape)
{
    static const char *const kinds[] = {"int", "uint", "float", "handle", "bfloat"};
    const char *k = dt.code < 5 ? kinds[dt.code] : "custom";
    int at;
    if (dt.code == 1 && dt.bits == 1 && dt.lanes == 1)
        at = snprintf(buf, len, "bool[");
    else if (dt.lanes > 1)
        at = snprintf(buf, len, "%s%ux%u[", k, dt.bits, dt.lanes);
    else
        at = snprintf(buf, len, "%s%u[", k, dt.bits);
    for (int i = 0; i < ndim && at > 0 && (size_t)at < len; i++)
        at += snprintf(buf + at, len - (size_t)at, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (at > 0 && (size_t)at < len)
        snprintf(buf + at, len - (size_t)at, "]");
    return buf;
}

static const char *desc_dl(char *buf, size_t len, const DLTensor *t)
{
    return desc(buf, len, t->dtype, t->ndim, t->shape);
}

static const char *desc_entry(char *buf, size_t len, const graph_entry_t *e)
{
    return desc(buf, len, dl_dtype(e->dtype), e->ndim, e->shape);
}

/* Bytes of a compact array by TVM's rule; -1 on overflow. */
static int64_t dl_bytes(const DLTensor *t)
{
    int64_t n = ((int64_t)t->dtype.bits * t->dtype.lanes + 7) / 8;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0 || (t->shape[i] && n > INT64_MAX / t->shape[i]))
            return -1;
        n *= t->shape[i];
    }
    return n;
}

/* A CPU array we can read or write as one block of bytes. */
static int dl_usable(const DLTensor *t)
{
    if (!t || t->ndim < 0 || (t->ndim && !t->shape) || t->device.device_type != 1 ||
        dl_bytes(t) < 0)
        return 0;
    int64_t stride = 1;
    for (int k = t->ndim - 1; t->strides && k >= 0; k--) {
        if (t->shape[k] != 1 && t->strides[k] != stride)
            return 0;
        stride *= t->shape[k];
    }
    return t->data || dl_bytes(t) == 0;
}

static void *dl_ptr(const DLTensor *t)
{
    return (char *)t->data + t->byte_offset;
}

/* ---- storage ---------------------------------------------------------------------- */

typedef struct gstore {
    int refs;
    int owned; /* 0: a pre-linked constant (_lookup_linked_param), not ours */
    void *data;
    uint64_t nbytes;
} gstore_t;

/* TVM rounds a slot up to whole 4-byte words; the memory starts zeroed so
 * that runs never depend on what malloc left there. */
static gstore_t *gstore_new(uint64_t nbytes)
{
    gstore_t *st = calloc(1, sizeof(*st));
    size_t alloc = (size_t)((nbytes + 3) / 4 * 4);
    if (!st || posix_memalign(&st->data, GX_ALIGN, alloc ? alloc : GX_ALIGN) != 0) {
        free(st);
        return NULL;
    }
    memset(st->data, 0, alloc);
    if (hostmem_add(st->data, nbytes) < 0) {
        free(st->data);
        free(st);
        return NULL;
    }
    st->refs = 1;
    st->owned = 1;
    st->nbytes = nbytes;
    return st;
}

static void gstore_retain(gstore_t *st)
{
    __atomic_add_fetch(&st->refs, 1, __ATOMIC_RELAXED);
}

static void gstore_release(void *p)
{
    gstore_t *st = p;
    if (!st || __atomic_sub_fetch(&st->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    if (st->owned) {
        hostmem_remove(st->data);
        free(st->data);
    }
    free(st);
}

/* ---- the executor --------------------------------------------------------------- */

enum { GOP_NOP, GOP_COPY, GOP_CALL };

typedef struct gop {
    int kind;
    uint32_t node;
    int nargs;
    TVMValue *vals;
    int *codes;
    DLTensor *ts;   /* this operator's argument tensors */
    uint32_t *eids; /* the entry each argument views */
    TVMBackendPackedCFunc fn;
    void *res;
    mfunc_t *f;          /* GOP_CALL: keeps the kernel's library loaded */
    uint64_t copy_bytes; /* GOP_COPY */
} gop_t;

typedef struct gexec {
    graph_t g;
    mod_t *lib;
    DLDevice dev;      /* every slot lives here: this server has only the CPU */
    gstore_t **slots;  /* g.nslots */
    gstore_t **estore; /* per entry: the store its view points into */
    DLTensor *ents;    /* per entry: the view */
    gop_t *ops;
    size_t nops;
    TVMValue *vals; /* every operator's arguments, in node order */
    int *codes;
    DLTensor *ts;
    uint32_t *eids;
    int64_t *flat;      /* shape of flattened arguments */
    uint8_t *is_weight; /* per input: named by load_params */
} gexec_t;

static const mod_vt_t gexec_vt;

static void gx_free(gexec_t *x)
{
    if (!x)
        return;
    for (size_t i = 0; x->ops && i < x->nops; i++)
        mfunc_release(x->ops[i].f);
    for (size_t e = 0; x->estore && e < x->g.nentries; e++)
        gstore_release(x->estore[e]);
    for (size_t s = 0; x->slots && s < x->g.nslots; s++)
        gstore_release(x->slots[s]);
    free(x->ops);
    free(x->vals);
    free(x->codes);
    free(x->ts);
    free(x->eids);
    free(x->flat);
    free(x->estore);
    free(x->slots);
    free(x->ents);
    free(x->is_weight);
    graph_free(&x->g);
    mod_release(x->lib);
    free(x);
}

static int gx_devices(gexec_t *x, const DLDevice *devs, int ndev, char *err, size_t errlen)
{
    if (ndev < 1 || ndev > GX_MAX_DEVICES)
        return set_err(err, errlen, "ValueError: GraphExecutor needs 1 to %d devices, got %d",
                       GX_MAX_DEVICES, ndev);
    for (int i = 0; i < ndev; i++)
        if (devs[i].device_type != 1)
            return set_err(err, errlen,
                           "ValueError: GraphExecutor: device type %d is not supported; this "
                           "server has only the CPU (device type 1)",
                           devs[i].device_type);
    x->dev = devs[0];
    return 0;
}

/* The legacy pre-linked constant for a slot (§3.2 step 1), if any. */
static int gx_linked(mfunc_t *lookup, uint32_t sid, uint64_t nbytes, gstore_t **out, char *err,
                     size_t errlen)
{
    TVMValue a, rv;
    int code = kTVMArgInt, rcode;
    a.v_int64 = sid;
    *out = NULL;
    if (mfunc_call(lookup, &a, &code, 1, &rv, &rcode) < 0)
        return set_err(err, errlen, "TVMError: GraphExecutor: _lookup_linked_param(%u): %s", sid,
                       TVMGetLastError());
    if (rcode == kTVMNullptr || (rcode == kTVMOpaqueHandle && !rv.v_handle))
        return 0;
    if (rcode != kTVMOpaqueHandle) {
        module_value_release(&rv, rcode);
        return set_err(err, errlen,
                       "TypeError: GraphExecutor: _lookup_linked_param(%u) returned type code "
                       "%d, not a pointer",
                       sid, rcode);
    }
    if (!(*out = calloc(1, sizeof(**out))))
        return set_err(err, errlen, "MemoryError: out of memory");
    (*out)->refs = 1;
    (*out)->data = rv.v_handle;
    (*out)->nbytes = nbytes;
    return 0;
}

static int gx_alloc_storage(gexec_t *x, char *err, size_t errlen)
{
    mfunc_t *lookup = NULL;
    int rc = 0;
    if (mod_get_function(x->lib, "_lookup_linked_param", 1, &lookup, err, errlen) < 0)
        return -1;
    if (!(x->slots = calloc(x->g.nslots ? x->g.nslots : 1, sizeof(*x->slots))))
        rc = set_err(err, errlen, "MemoryError: out of memory");
    for (uint32_t sid = 0; rc == 0 && sid < x->g.nslots; sid++) {
        uint64_t n = x->g.slot_bytes[sid];
        if (lookup && (rc = gx_linked(lookup, sid, n, &x->slots[sid], err, errlen)) < 0)
            break;
        if (!x->slots[sid] && !(x->slots[sid] = gstore_new(n)))
            rc = set_err(err, errlen,
                         "MemoryError: GraphExecutor: cannot allocate %llu bytes for storage %u",
                         (unsigned long long)n, sid);
    }
    mfunc_release(lookup);
    return rc;
}

/* §3.2 step 3: entry i views slot storage_id[i]. */
static int gx_bind_entries(gexec_t *x, char *err, size_t errlen)
{
    size_t n = x->g.nentries ? x->g.nentries : 1;
    x->ents = calloc(n, sizeof(*x->ents));
    x->estore = calloc(n, sizeof(*x->estore));
    if (!x->ents || !x->estore)
        return set_err(err, errlen, "MemoryError: out of memory");
    for (size_t i = 0; i < x->g.nentries; i++) {
        graph_entry_t *e = &x->g.entries[i];
        gstore_t *st = x->slots[e->storage_id];
        gstore_retain(st);
        x->estore[i] = st;
        x->ents[i].data = st->data;
        x->ents[i].device = x->dev;
        x->ents[i].ndim = e->ndim;
        x->ents[i].dtype = dl_dtype(e->dtype);
        x->ents[i].shape = e->shape;
    }
    return 0;
}

static int gx_find_input(const gexec_t *x, const char *name)
{
    for (size_t i = 0; i < x->g.narg_nodes; i++)
        if (strcmp(x->g.nodes[x->g.arg_nodes[i]].name, name) == 0)
            return (int)i;
    return -1;
}

static uint32_t gx_input_eid(const gexec_t *x, int idx)
{
    graph_entry_ref_t r = {x->g.arg_nodes[idx], 0};
    return graph_eid(&x->g, r);
}

static uint32_t gx_output_eid(const gexec_t *x, int idx)
{
    return graph_eid(&x->g, x->g.heads[idx]);
}

static int gx_bind_kernel(gexec_t *x, gop_t *op, char *err, size_t errlen)
{
    const graph_node_t *n = &x->g.nodes[op->node];
    if (!strcmp(n->func_name, "__nop")) {
        op->kind = GOP_NOP;
        return 0;
    }
    if (!strcmp(n->func_name, "__copy")) {
        int64_t from = op->nargs == 2 ? dl_bytes(&op->ts[0]) : -1;
        if (from < 0 || from != dl_bytes(&op->ts[1]))
            return set_err(err, errlen,
                           "ValueError: GraphExecutor: node %u (%s): __copy needs one input and "
                           "one output of the same byte size",
                           op->node, n->name);
        op->kind = GOP_COPY;
        op->copy_bytes = (uint64_t)from;
        return 0;
    }
    if (mod_get_function(x->lib, n->func_name, 1, &op->f, err, errlen) < 0)
        return -1;
    if (!op->f)
        return set_err(err, errlen,
                       "TVMError: GraphExecutor: no such function in module: %s (node %u, %s)",
                       n->func_name, op->node, n->name);
    op->kind = GOP_CALL;
    op->fn = op->f->fn;
    op->res = op->f->resource;
    return 0;
}

/* §3.2 step 4: the arguments are the inputs' entries then the node's own
 * outputs, each a private copy of the entry's view. */
static int gx_bind_op(gexec_t *x, gop_t *op, uint32_t nid, size_t *at, char *err, size_t errlen)
{
    const graph_node_t *n = &x->g.nodes[nid];
    op->node = nid;
    op->nargs = (int)(n->ninputs + n->num_outputs);
    op->vals = x->vals + *at;
    op->codes = x->codes + *at;
    op->ts = x->ts + *at;
    op->eids = x->eids + *at;
    int64_t *flat = x->flat + *at;
    for (int k = 0; k < op->nargs; k++) {
        uint32_t eid = (size_t)k < n->ninputs
                           ? graph_eid(&x->g, n->inputs[k])
                           : x->g.node_row_ptr[nid] + (uint32_t)k - (uint32_t)n->ninputs;
        op->eids[k] = eid;
        op->ts[k] = x->ents[eid];
        if (n->flatten_data) {
            flat[k] = 1;
            for (int d = 0; d < op->ts[k].ndim; d++)
                flat[k] *= op->ts[k].shape[d];
            op->ts[k].ndim = 1;
            op->ts[k].shape = &flat[k];
        }
        op->vals[k].v_handle = &op->ts[k];
        op->codes[k] = kTVMDLTensorHandle;
    }
    *at += (size_t)op->nargs;
    return gx_bind_kernel(x, op, err, errlen);
}

static int gx_bind_ops(gexec_t *x, char *err, size_t errlen)
{
    size_t total = 0;
    for (size_t i = 0; i < x->g.nnodes; i++) {
        const graph_node_t *n = &x->g.nodes[i];
        if (!n->is_op)
            continue;
        if (n->ninputs > INT_MAX / 2)
            return set_err(err, errlen,
                           "ValueError: GraphExecutor: node %zu (%s) has too many inputs", i,
                           n->name);
        x->nops++;
        total += n->ninputs + n->num_outputs;
    }
    size_t k = total ? total : 1;
    x->ops = calloc(x->nops ? x->nops : 1, sizeof(*x->ops));
    x->vals = calloc(k, sizeof(*x->vals));
    x->codes = calloc(k, sizeof(*x->codes));
    x->ts = calloc(k, sizeof(*x->ts));
    x->eids = calloc(k, sizeof(*x->eids));
    x->flat = calloc(k, sizeof(*x->flat));
    if (!x->ops || !x->vals || !x->codes || !x->ts || !x->eids || !x->flat)
        return set_err(err, errlen, "MemoryError: out of memory");
    size_t at = 0, op = 0;
    for (uint32_t i = 0; i < x->g.nnodes; i++)
        if (x->g.nodes[i].is_op && gx_bind_op(x, &x->ops[op++], i, &at, err, errlen) < 0)
            return -1;
    return 0;
}

static int gx_init(gexec_t *x, const char *json, size_t len, const DLDevice *devs, int ndev,
                   char *err, size_t errlen)
{
    char why[GX_ERR - 64];
    if (gx_devices(x, devs, ndev, err, errlen) < 0)
        return -1;
    if (graph_parse(&x->g, json, len, why, sizeof(why)) < 0)
        return set_err(err, errlen, "ValueError: GraphExecutor: %s", why);
    if (!(x->is_weight = calloc(x->g.narg_nodes ? x->g.narg_nodes : 1, 1)))
        return set_err(err, errlen, "MemoryError: out of memory");
    if (gx_alloc_storage(x, err, errlen) < 0 || gx_bind_entries(x, err, errlen) < 0)
        return -1;
    return gx_bind_ops(x, err, errlen);
}

int gexec_create(const char *json, size_t len, mod_t *lib, const DLDevice *devs, int ndev,
                 mod_t **out, char *err, size_t errlen)
{
    gexec_t *x = calloc(1, sizeof(*x));
    *out = NULL;
    if (!x)
        return set_err(err, errlen, "MemoryError: out of memory");
    mod_retain(lib);
    x->lib = lib;
    if (gx_init(x, json, len, devs, ndev, err, errlen) < 0) {
        gx_free(x);
        return -1;
    }
    if (!(*out = mod_new(&gexec_vt, x)))
        return set_err(err, errlen, "MemoryError: out of memory");
    return 0;
}

/* ---- running ------------------------------------------------------------------------ */

static int gx_op_failed(const gexec_t *x, const gop_t *op)
{
    char msg[GX_ERR];
    const char *why = TVMGetLastError();
    const graph_node_t *n = &x->g.nodes[op->node];
    snprintf(msg, sizeof(msg), "GraphExecutor: node %u (%s) failed: %s", op->node, n->name,
             why && *why ? why : "the kernel returned an error without a message");
    TVMAPISetLastError(msg);
    return -1;
}

/* The hot loop: one direct call per operator, arguments prepared at init.
 * The last error is cleared once per run, not per call: a kernel that
 * fails sets it, one that succeeds leaves it alone. */
static int gx_run(gexec_t *x)
{
    TVMAPISetLastError("");
    for (size_t i = 0; i < x->nops; i++) {
        gop_t *op = &x->ops[i];
        if (op->kind == GOP_CALL) {
            TVMValue rv;
            int rcode = kTVMNullptr;
            rv.v_int64 = 0;
            if (op->fn(op->vals, op->codes, op->nargs, &rv, &rcode, op->res) != 0)
                return gx_op_failed(x, op);
            if (rcode != kTVMNullptr)
                module_value_release(&rv, rcode);
        } else if (op->kind == GOP_COPY && op->copy_bytes) {
            memmove(op->ts[1].data, op->ts[0].data, (size_t)op->copy_bytes);
        }
    }
    return 0;
}

/* ---- arguments of the module's functions ---------------------------------------- */

static const char *arg_str(const TVMValue *a, const int *c, int n, int i)
{
    return i < n && c[i] == kTVMStr ? a[i].v_str : NULL;
}

static int arg_is_int(const int *c, int n, int i)
{
    return i < n && (c[i] == kTVMArgInt || c[i] == kTVMArgBool);
}

static DLTensor *arg_tensor(const TVMValue *a, const int *c, int n, int i)
{
    return i < n && (c[i] == kTVMDLTensorHandle || c[i] == kTVMNDArrayHandle) ? a[i].v_handle
                                                                              : NULL;
}

static gexec_t *gx_of(void *res)
{
    return ((mod_t *)res)->self;
}

/* The input a key (name or index) names: its index, -1 for an unknown
 * name, -2 after an error. */
static int gx_input_key(const gexec_t *x, const TVMValue *a, const int *c, int n, int i,
                        const char *fn)
{
    const char *name = arg_str(a, c, n, i);
    if (name)
        return gx_find_input(x, name);
    if (!arg_is_int(c, n, i)) {
        gx_fail("TypeError: %s: argument %d must be an input name or index", fn, i);
        return -2;
    }
    if (a[i].v_int64 < 0 || (uint64_t)a[i].v_int64 >= x->g.narg_nodes) {
        gx_fail("IndexError: %s: input index %lld is out of range [0, %zu)", fn,
                (long long)a[i].v_int64, x->g.narg_nodes);
        return -2;
    }
    return (int)a[i].v_int64;
}

/* Output by index, or by head node name (§3.3 get_output); -1 after an error. */
static int gx_output_key(const gexec_t *x, const TVMValue *a, const int *c, int n, const char *fn)
{
    const char *name = arg_str(a, c, n, 0);
    if (name) {
        for (size_t i = 0; i < x->g.nheads; i++)
            if (strcmp(x->g.nodes[x->g.heads[i].node].name, name) == 0)
                return (int)i;
        return gx_fail("ValueError: %s: Invalid output node:%s", fn, name);
    }
    if (!arg_is_int(c, n, 0))
        return gx_fail("TypeError: %s: argument 0 must be an output index or name", fn);
    if (a[0].v_int64 < 0 || (uint64_t)a[0].v_int64 >= x->g.nheads)
        return gx_fail("IndexError: %s: output index %lld is out of range [0, %zu)", fn,
                       (long long)a[0].v_int64, x->g.nheads);
    return (int)a[0].v_int64;
}

/* Copy an array into input idx; byte sizes must match, as in TVM (shapes
 * are not compared). */
static int gx_copy_in(gexec_t *x, int idx, const DLTensor *t, const char *fn)
{
    char d1[GX_DESC], d2[GX_DESC];
    uint32_t eid = gx_input_eid(x, idx);
    const graph_entry_t *e = &x->g.entries[eid];
    const char *name = x->g.nodes[x->g.arg_nodes[idx]].name;
    if (!dl_usable(t))
        return gx_fail("ValueError: %s: input %s: the array must be a compact CPU array", fn, name);
    int64_t want = graph_entry_bytes(e), have = dl_bytes(t);
    if (have != want)
        return gx_fail("ValueError: %s: input %s (index %d) is %s = %lld bytes; the array given is "
                       "%s = %lld bytes",
                       fn, name, idx, desc_entry(d1, sizeof(d1), e), (long long)want,
                       desc_dl(d2, sizeof(d2), t), (long long)have);
    if (want > 0)
        memmove(x->ents[eid].data, dl_ptr(t), (size_t)want);
    return 0;
}

/* Return entry eid's live view as an array that keeps its store alive. */
static int gx_ret_entry(gexec_t *x, uint32_t eid, TVMValue *ret, int *rc)
{
    gstore_t *st = x->estore[eid];
    gstore_retain(st);
    mnd_t *a = mnd_new(&x->ents[eid], gstore_release, st);
    if (!a)
        return gx_fail("MemoryError: out of memory");
    ret->v_handle = &a->dl;
    *rc = kTVMNDArrayHandle;
    return 0;
}

/* ---- the module's functions (§3.3) ------------------------------------------------ */

static int fn_set_input(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    gexec_t *x = gx_of(res);
    if (n != 2)
        return gx_fail("TypeError: set_input expects (key, array), got %d arguments", n);
    int idx = gx_input_key(x, a, c, n, 0, "set_input");
    if (idx == -1)
        return 0; /* unknown names are ignored, as in TVM */
    if (idx < 0)
        return -1;
    DLTensor *t = arg_tensor(a, c, n, 1);
    if (!t)
        return gx_fail("TypeError: set_input: argument 1 must be an array");
    return gx_copy_in(x, idx, t, "set_input");
}

static int fn_run(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    return gx_run(gx_of(res));
}

static int fn_get_input(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    gexec_t *x = gx_of(res);
    if (n != 1)
        return gx_fail("TypeError: get_input expects one key, got %d arguments", n);
    int idx = gx_input_key(x, a, c, n, 0, "get_input");
    if (idx == -1)
        return 0; /* none */
    return idx < 0 ? -1 : gx_ret_entry(x, gx_input_eid(x, idx), ret, rc);
}

/* 2-argument form: copy output idx into out; shapes must match. */
static int gx_copy_out(gexec_t *x, int idx, const DLTensor *out)
{
    char d1[GX_DESC], d2[GX_DESC];
    const DLTensor *src = &x->ents[gx_output_eid(x, idx)];
    int same = dl_usable(out) && out->ndim == src->ndim && dl_bytes(out) == dl_bytes(src);
    for (int i = 0; same && i < src->ndim; i++)
        same = out->shape[i] == src->shape[i];
    if (!same)
        return gx_fail("ValueError: get_output: output %d is %s; the array given is %s", idx,
                       desc_dl(d1, sizeof(d1), src),
                       dl_usable(out) ? desc_dl(d2, sizeof(d2), out) : "not a compact CPU array");
    if (dl_bytes(src) > 0)
        memmove(dl_ptr(out), src->data, (size_t)dl_bytes(src));
    return 0;
}

static int fn_get_output(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    gexec_t *x = gx_of(res);
    if (n != 1 && n != 2)
        return gx_fail("TypeError: get_output expects (key) or (index, array), got %d arguments",
                       n);
    int idx = gx_output_key(x, a, c, n, "get_output");
    if (idx < 0)
        return -1;
    if (n == 1)
        return gx_ret_entry(x, gx_output_eid(x, idx), ret, rc);
    DLTensor *out = arg_tensor(a, c, n, 1);
    if (!out)
        return gx_fail("TypeError: get_output: argument 1 must be an array");
    return gx_copy_out(x, idx, out);
}

static int ret_int(TVMValue *ret, int *rc, int64_t v)
{
    ret->v_int64 = v;
    *rc = kTVMArgInt;
    return 0;
}

static int fn_get_num_outputs(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    return ret_int(ret, rc, (int64_t)gx_of(res)->g.nheads);
}

static int fn_get_num_inputs(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    return ret_int(ret, rc, (int64_t)gx_of(res)->g.narg_nodes);
}

static int fn_get_input_index(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    const char *name = arg_str(a, c, n, 0);
    if (!name)
        return gx_fail("TypeError: get_input_index: Input key is not a string");
    return ret_int(ret, rc, gx_find_input(gx_of(res), name));
}

/* get_input_info / get_output_info: {"shape": {name: [dims]}, "dtype":
 * {name: "float32"}}. Over RPC the client only ever sees a handle, but
 * the object is complete. */
typedef struct ginfo {
    mobj_t obj;
    char *json;
} ginfo_t;

static void ginfo_destroy(mobj_t *o)
{
    ginfo_t *gi = (ginfo_t *)o;
    free(gi->json);
    free(gi);
}

static int info_add(json_t *shapes, json_t *dtypes, const char *name, const graph_entry_t *e)
{
    char d[GX_DESC];
    json_t *dims = json_new_array();
    for (int i = 0; dims && i < e->ndim; i++)
        if (json_array_push(dims, json_new_int(e->shape[i])) < 0)
            return -1;
    desc(d, sizeof(d), dl_dtype(e->dtype), 0, NULL);
    d[strcspn(d, "[")] = '\0';
    if (!dims || json_object_set(shapes, name, dims) < 0 ||
        json_object_set(dtypes, name, json_new_string(d)) < 0)
        return -1;
    return 0;
}

static char *gx_info_json(const gexec_t *x, int inputs)
{
    json_t *root = json_new_object(), *shapes = json_new_object(), *dtypes = json_new_object();
    int ok = root && shapes && dtypes;
    size_t n = inputs ? x->g.narg_nodes : x->g.nheads;
    for (size_t i = 0; ok && i < n; i++) {
        if (inputs && x->is_weight[i])
            continue;
        graph_entry_ref_t r = {inputs ? x->g.arg_nodes[i] : x->g.heads[i].node,
                               inputs ? 0 : x->g.heads[i].index};
        ok = info_add(shapes, dtypes, x->g.nodes[r.node].name,
                      &x->g.entries[graph_eid(&x->g, r)]) == 0;
    }
    char *text = NULL;
    if (ok && json_object_set(root, "shape", shapes) == 0) {
        shapes = NULL;
        if (json_object_set(root, "dtype", dtypes) == 0) {
            dtypes = NULL;
            text = json_dumps(root);
        }
    }
    json_free(shapes);
    json_free(dtypes);
    json_free(root);
    return text;
}

static int gx_info(TVMValue *ret, int *rc, void *res, int inputs)
{
    ginfo_t *gi = calloc(1, sizeof(*gi));
    if (!gi || !(gi->json = gx_info_json(gx_of(res), inputs))) {
        free(gi);
        return gx_fail("MemoryError: out of memory");
    }
    mobj_init(&gi->obj, "runtime.Map", ginfo_destroy);
    ret->v_handle = &gi->obj;
    *rc = kTVMObjectHandle;
    return 0;
}

static int fn_get_input_info(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    return gx_info(ret, rc, res, 1);
}

static int fn_get_output_info(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    return gx_info(ret, rc, res, 0);
}

static const TVMByteArray *arg_bytes(const TVMValue *a, const int *c, int n, int i)
{
    return i < n && c[i] == kTVMBytes && a[i].v_handle ? a[i].v_handle : NULL;
}

/* Check every named input first, then copy: a bad blob changes nothing. */
static int gx_load_params(gexec_t *x, const graph_params_t *p)
{
    char d1[GX_DESC], d2[GX_DESC];
    for (size_t i = 0; i < p->n; i++) {
        int idx = gx_find_input(x, p->names[i]);
        if (idx < 0)
            continue;
        const graph_entry_t *e = &x->g.entries[gx_input_eid(x, idx)];
        const rpc_tensor_t *t = &p->tensors[i];
        if ((int64_t)p->nbytes[i] != graph_entry_bytes(e))
            return gx_fail("ValueError: load_params: parameter %s is %s = %llu bytes, but input "
                           "%s is %s = %lld bytes",
                           p->names[i], desc(d1, sizeof(d1), dl_dtype(t->dtype), t->ndim, t->shape),
                           (unsigned long long)p->nbytes[i], p->names[i],
                           desc_entry(d2, sizeof(d2), e), (long long)graph_entry_bytes(e));
    }
    for (size_t i = 0; i < p->n; i++) {
        int idx = gx_find_input(x, p->names[i]);
        if (idx < 0)
            continue;
        if (p->nbytes[i])
            memcpy(x->ents[gx_input_eid(x, idx)].data, p->data[i], (size_t)p->nbytes[i]);
        x->is_weight[idx] = 1;
    }
    return 0;
}

static int fn_load_params(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    const TVMByteArray *b = arg_bytes(a, c, n, 0);
    char why[GX_ERR - 64];
    graph_params_t p;
    if (n != 1 || !b)
        return gx_fail("TypeError: load_params expects one bytes argument (a params blob)");
    if (graph_read_params(&p, b->data, b->size, 0, why, sizeof(why)) < 0)
        return gx_fail("ValueError: load_params: %s", why);
    int r = gx_load_params(gx_of(res), &p);
    graph_params_free(&p);
    return r;
}

/* Point every operator argument at its entry's current data (after
 * share_params replaced entries; drops zero-copy bindings, as TVM does). */
static void gx_rebind_data(gexec_t *x)
{
    for (size_t i = 0; i < x->nops; i++)
        for (int k = 0; k < x->ops[i].nargs; k++)
            x->ops[i].ts[k].data = x->ents[x->ops[i].eids[k]].data;
}

static int gx_share_check(const gexec_t *x, const gexec_t *o, const char *name)
{
    char d1[GX_DESC], d2[GX_DESC];
    int idx = gx_find_input(x, name), oidx = gx_find_input(o, name);
    if (idx < 0)
        return 0;
    if (oidx < 0)
        return gx_fail("ValueError: share_params: %s is not an input of the other executor", name);
    const graph_entry_t *e = &x->g.entries[gx_input_eid(x, idx)];
    const graph_entry_t *oe = &o->g.entries[gx_input_eid(o, oidx)];
    if (graph_entry_bytes(e) != graph_entry_bytes(oe))
        return gx_fail("ValueError: share_params: input %s is %s here but %s in the other executor",
                       name, desc_entry(d1, sizeof(d1), e), desc_entry(d2, sizeof(d2), oe));
    return 0;
}

static void gx_share_one(gexec_t *x, gexec_t *o, const char *name)
{
    int idx = gx_find_input(x, name);
    if (idx < 0)
        return;
    uint32_t eid = gx_input_eid(x, idx), oeid = gx_input_eid(o, gx_find_input(o, name));
    gstore_retain(o->estore[oeid]);
    gstore_release(x->estore[eid]);
    x->estore[eid] = o->estore[oeid];
    x->ents[eid].data = o->ents[oeid].data;
}

static int fn_share_params(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    gexec_t *x = gx_of(res);
    mod_t *om = n == 2 && c[0] == kTVMModuleHandle ? a[0].v_handle : NULL;
    const TVMByteArray *b = arg_bytes(a, c, n, 1);
    char why[GX_ERR - 64];
    graph_params_t p;
    if (!om || om->vt != &gexec_vt || !b)
        return gx_fail("TypeError: share_params expects (GraphExecutor module, params bytes)");
    gexec_t *o = om->self;
    if (graph_read_params(&p, b->data, b->size, 1, why, sizeof(why)) < 0)
        return gx_fail("ValueError: share_params: %s", why);
    int r = 0;
    for (size_t i = 0; r == 0 && i < p.n; i++)
        r = gx_share_check(x, o, p.names[i]);
    for (size_t i = 0; r == 0 && i < p.n; i++)
        gx_share_one(x, o, p.names[i]);
    if (r == 0)
        gx_rebind_data(x);
    graph_params_free(&p);
    return r;
}

/* run_from_inputs returns copies of the outputs in an array object. */
typedef struct garray {
    mobj_t obj;
    size_t n;
    mnd_t **items;
} garray_t;

static void garray_destroy(mobj_t *o)
{
    garray_t *ga = (garray_t *)o;
    for (size_t i = 0; i < ga->n; i++)
        mnd_release(ga->items[i]);
    free(ga->items);
    free(ga);
}

static mnd_t *gx_output_copy(const gexec_t *x, int idx, DLDevice dev)
{
    DLTensor v = x->ents[gx_output_eid(x, idx)];
    size_t n = (size_t)dl_bytes(&v);
    void *copy = NULL;
    if (posix_memalign(&copy, GX_ALIGN, n ? n : GX_ALIGN) != 0)
        return NULL;
    if (n)
        memcpy(copy, v.data, n);
    v.data = copy;
    v.device = dev;
    return mnd_new(&v, free, copy);
}

static int gx_set_pairs(gexec_t *x, TVMValue *a, int *c, int n)
{
    for (int i = 2; i + 1 < n; i += 2) {
        int idx = gx_input_key(x, a, c, n, i, "run_from_inputs");
        if (idx == -1)
            return gx_fail("ValueError: run_from_inputs: %s is not a valid input name", a[i].v_str);
        DLTensor *t = arg_tensor(a, c, n, i + 1);
        if (idx < 0)
            return -1;
        if (!t)
            return gx_fail("TypeError: run_from_inputs: argument %d must be an array", i + 1);
        if (gx_copy_in(x, idx, t, "run_from_inputs") < 0)
            return -1;
    }
    return 0;
}

static garray_t *gx_outputs_copy(const gexec_t *x, DLDevice dev)
{
    garray_t *ga = calloc(1, sizeof(*ga));
    if (!ga)
        return NULL;
    mobj_init(&ga->obj, "runtime.Array", garray_destroy);
    if (!(ga->items = calloc(x->g.nheads ? x->g.nheads : 1, sizeof(*ga->items)))) {
        garray_destroy(&ga->obj);
        return NULL;
    }
    for (; ga->n < x->g.nheads; ga->n++) {
        if (!(ga->items[ga->n] = gx_output_copy(x, (int)ga->n, dev))) {
            garray_destroy(&ga->obj);
            return NULL;
        }
    }
    return ga;
}

static int fn_run_from_inputs(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    gexec_t *x = gx_of(res);
    if (n < 2 || !arg_is_int(c, n, 0) || !arg_is_int(c, n, 1))
        return gx_fail("TypeError: run_from_inputs expects (device_type, device_id, key, array, "
                       "...)");
    if (n % 2)
        return gx_fail("ValueError: run_from_inputs: inputs must come in (key, array) pairs");
    if (a[0].v_int64 != 1)
        return gx_fail("ValueError: run_from_inputs: device type %lld is not supported; this "
                       "server has only the CPU",
                       (long long)a[0].v_int64);
    if (gx_set_pairs(x, a, c, n) < 0 || gx_run(x) < 0)
        return -1;
    DLDevice dev = {1, (int32_t)a[1].v_int64};
    garray_t *ga = gx_outputs_copy(x, dev);
    if (!ga)
        return gx_fail("MemoryError: out of memory");
    ret->v_handle = &ga->obj;
    *rc = kTVMObjectHandle;
    return 0;
}

/* TVM's checks for an external buffer bound in place of entry eid. */
static int gx_check_external(const gexec_t *x, uint32_t eid, const DLTensor *t, const char *fn,
                             const char *what)
{
    char d1[GX_DESC], d2[GX_DESC];
    const DLTensor *e = &x->ents[eid];
    size_t ea = (size_t)e->dtype.bits / 8 * e->dtype.lanes, ta;
    if (!t || t->ndim < 0 || (t->ndim && !t->shape))
        return gx_fail("TypeError: %s: argument 1 must be an array", fn);
    ta = (size_t)t->dtype.bits / 8 * t->dtype.lanes;
    int same =
        t->ndim == e->ndim && (ea < GX_ALIGN ? GX_ALIGN : ea) == (ta < GX_ALIGN ? GX_ALIGN : ta);
    for (int i = 0; same && i < e->ndim; i++)
        same = t->shape[i] == e->shape[i];
    if (!same)
        return gx_fail("ValueError: %s: %s is %s; the array given is %s", fn, what,
                       desc_dl(d1, sizeof(d1), e), desc_dl(d2, sizeof(d2), t));
    if (t->device.device_type != e->device.device_type ||
        t->device.device_id != e->device.device_id)
        return gx_fail("ValueError: %s: %s is on device %d(%d); the array given is on %d(%d)", fn,
                       what, e->device.device_type, e->device.device_id, t->device.device_type,
                       t->device.device_id);
    if ((uintptr_t)dl_ptr(t) % GX_ALIGN)
        return gx_fail("ValueError: %s: %s: the array's data must be %d-byte aligned", fn, what,
                       GX_ALIGN);
    return 0;
}

/* Redirect every operator argument that views an entry matching (eid or
 * storage id) to ptr. */
static void gx_redirect(gexec_t *x, uint32_t eid, int by_storage, void *ptr)
{
    uint32_t sid = x->g.entries[eid].storage_id;
    for (size_t i = 0; i < x->nops; i++) {
        gop_t *op = &x->ops[i];
        for (int k = 0; k < op->nargs; k++)
            if (op->eids[k] == eid || (by_storage && x->g.entries[op->eids[k]].storage_id == sid))
                op->ts[k].data = ptr;
    }
}

static int fn_set_input_zero_copy(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    gexec_t *x = gx_of(res);
    char what[GX_DESC];
    int idx = gx_input_key(x, a, c, n, 0, "set_input_zero_copy");
    if (idx == -1)
        return 0;
    if (idx < 0)
        return -1;
    DLTensor *t = arg_tensor(a, c, n, 1);
    uint32_t eid = gx_input_eid(x, idx);
    snprintf(what, sizeof(what), "input %s", x->g.nodes[x->g.arg_nodes[idx]].name);
    if (gx_check_external(x, eid, t, "set_input_zero_copy", what) < 0)
        return -1;
    gx_redirect(x, eid, 1, dl_ptr(t));
    return 0;
}

/* "<node name>:<output index>" of a head, or -1. */
static int gx_find_output_key(const gexec_t *x, const char *key)
{
    char buf[512];
    for (size_t i = 0; i < x->g.nheads; i++) {
        graph_entry_ref_t h = x->g.heads[i];
        snprintf(buf, sizeof(buf), "%s:%u", x->g.nodes[h.node].name, h.index);
        if (strcmp(buf, key) == 0)
            return (int)i;
    }
    return -1;
}

static int fn_set_output_zero_copy(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    gexec_t *x = gx_of(res);
    const char *key = arg_str(a, c, n, 0);
    char what[64];
    int idx = key ? gx_find_output_key(x, key) : gx_output_key(x, a, c, n, "set_output_zero_copy");
    if (key && idx < 0)
        return 0;
    if (idx < 0)
        return -1;
    DLTensor *t = arg_tensor(a, c, n, 1);
    uint32_t eid = gx_output_eid(x, idx);
    snprintf(what, sizeof(what), "output %d", idx);
    if (gx_check_external(x, eid, t, "set_output_zero_copy", what) < 0)
        return -1;
    gx_redirect(x, eid, 0, dl_ptr(t));
    /* A __nop output aliases its input: its producer must write there too. */
    const graph_node_t *node = &x->g.nodes[x->g.heads[idx].node];
    if (node->is_op && !strcmp(node->func_name, "__nop") && node->ninputs > 0)
        gx_redirect(x, graph_eid(&x->g, node->inputs[0]), 0, dl_ptr(t));
    return 0;
}

static const struct {
    const char *name;
    TVMBackendPackedCFunc fn;
} gexec_fns[] = {
    {"set_input", fn_set_input},
    {"set_input_zero_copy", fn_set_input_zero_copy},
    {"set_output_zero_copy", fn_set_output_zero_copy},
    {"run", fn_run},
    {"run_from_inputs", fn_run_from_inputs},
    {"get_output", fn_get_output},
    {"get_input", fn_get_input},
    {"get_num_outputs", fn_get_num_outputs},
    {"get_num_inputs", fn_get_num_inputs},
    {"get_input_index", fn_get_input_index},
    {"get_input_info", fn_get_input_info},
    {"get_output_info", fn_get_output_info},
    {"load_params", fn_load_params},
    {"share_params", fn_share_params},
    {NULL, NULL},
};

static int gx_get_function(mod_t *m, const char *name, mfunc_t **out, char *err, size_t errlen)
{
    *out = NULL;
    for (int i = 0; gexec_fns[i].name; i++) {
        if (strcmp(gexec_fns[i].name, name) != 0)
            continue;
        if (!(*out = mfunc_new(name, gexec_fns[i].fn, m, NULL, m)))
            return set_err(err, errlen, "MemoryError: out of memory");
        return 0;
    }
    return 0;
}

static void gx_destroy(mod_t *m)
{
    gx_free(m->self);
}

static const mod_vt_t gexec_vt = {
    .type_key = "GraphExecutor", .get_function = gx_get_function, .destroy = gx_destroy};

/* ---- tvm.graph_executor.create (§1.6) ------------------------------------------- */

static int create_devices(const rpc_value_t *args, int nargs, int first, DLDevice *devs, int *ndev,
                          char *err, size_t errlen)
{
    int n = nargs - first;
    if (n < 2 || n % 2 || n / 2 > GX_MAX_DEVICES)
        return set_err(err, errlen,
                       "TypeError: tvm.graph_executor.create: expected 1 to %d (device_type, "
                       "device_id) pairs after the library, got %d values",
                       GX_MAX_DEVICES, n);
    for (int i = first; i < nargs; i++) {
        const rpc_value_t *v = &args[i];
        if ((v->kind != RV_INT && v->kind != RV_BOOL) || v->u.i < INT32_MIN || v->u.i > INT32_MAX)
            return set_err(err, errlen,
                           "TypeError: tvm.graph_executor.create: argument %d must be a device "
                           "%s",
                           i, (i - first) % 2 ? "id" : "type");
    }
    *ndev = n / 2;
    for (int d = 0; d < *ndev; d++) {
        devs[d].device_type = (int32_t)args[first + 2 * d].u.i;
        devs[d].device_id = (int32_t)args[first + 2 * d + 1].u.i;
    }
    return 0;
}

int gexec_fn_create(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret, char *err,
                    size_t errlen)
{
    DLDevice devs[GX_MAX_DEVICES];
    int ndev = 0;
    if (nargs < 2 || (args[0].kind != RV_STR && args[0].kind != RV_BYTES))
        return set_err(err, errlen,
                       "TypeError: tvm.graph_executor.create expects (graph_json, lib, "
                       "device_type, device_id, ...)");
    mod_t *lib = args[1].kind == RV_MODULE ? module_from_handle(s, args[1].u.h) : NULL;
    if (!lib)
        return set_err(err, errlen,
                       "TypeError: tvm.graph_executor.create: argument 1 must be a module of "
                       "this session");
    if (nargs > 2 && args[2].kind == RV_FUNC)
        return set_err(err, errlen,
                       "ValueError: tvm.graph_executor.create: a lookup_linked_param function is "
                       "not supported; libraries may define _lookup_linked_param instead");
    if (create_devices(args, nargs, 2, devs, &ndev, err, errlen) < 0)
        return -1;
    mod_t *m;
    if (gexec_create(args[0].u.s.p, (size_t)args[0].u.s.len, lib, devs, ndev, &m, err, errlen) < 0)
        return -1;
    ret->kind = RV_MODULE;
    if (!(ret->u.h = module_handle_new(s, m)))
        return set_err(err, errlen, "MemoryError: out of memory");
    return 0;
}

/* ---- GraphExecutorFactory (§3.5) --------------------------------------------------- */

typedef struct gfac {
    char *json;
    size_t json_len;
    char *name; /* module_name: the function that creates executors */
    graph_params_t params;
} gfac_t;

static void gfac_free(gfac_t *f)
{
    if (!f)
        return;
    free(f->json);
    free(f->name);
    graph_params_free(&f->params);
    free(f);
}

static const mod_vt_t gfac_vt;

typedef struct wsize {
    uint64_t nbytes;
    size_t idx;
} wsize_t;

/* Largest first, as TVM sets them; ties in blob order. */
static int wsize_cmp(const void *pa, const void *pb)
{
    const wsize_t *a = pa, *b = pb;
    if (a->nbytes != b->nbytes)
        return a->nbytes < b->nbytes ? 1 : -1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Copy the factory's weights into a new executor. Their names are not
 * recorded as weights (TVM's factory does not either). */
static int gf_set_weights(const gfac_t *f, mod_t *exec)
{
    char d1[GX_DESC], d2[GX_DESC];
    gexec_t *x = exec->self;
    const graph_params_t *p = &f->params;
    wsize_t *order = calloc(p->n ? p->n : 1, sizeof(*order));
    if (!order)
        return gx_fail("MemoryError: out of memory");
    for (size_t i = 0; i < p->n; i++)
        order[i] = (wsize_t){p->nbytes[i], i};
    qsort(order, p->n, sizeof(*order), wsize_cmp);
    int rc = 0;
    for (size_t k = 0; rc == 0 && k < p->n; k++) {
        size_t i = order[k].idx;
        int idx = gx_find_input(x, p->names[i]);
        if (idx < 0)
            continue;
        const graph_entry_t *e = &x->g.entries[gx_input_eid(x, idx)];
        const rpc_tensor_t *t = &p->tensors[i];
        if ((int64_t)p->nbytes[i] != graph_entry_bytes(e))
            rc = gx_fail("ValueError: GraphExecutorFactory: weight %s is %s = %llu bytes, but "
                         "input %s is %s = %lld bytes",
                         p->names[i], desc(d1, sizeof(d1), dl_dtype(t->dtype), t->ndim, t->shape),
                         (unsigned long long)p->nbytes[i], p->names[i],
                         desc_entry(d2, sizeof(d2), e), (long long)graph_entry_bytes(e));
        else if (p->nbytes[i])
            memcpy(x->ents[gx_input_eid(x, idx)].data, p->data[i], (size_t)p->nbytes[i]);
    }
    free(order);
    return rc;
}

/* <module_name>(dev, ...): a new executor with its own storage. */
static int gf_create(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    mod_t *m = res;
    gfac_t *f = m->self;
    DLDevice devs[GX_MAX_DEVICES];
    char err[GX_ERR];
    if (n < 1 || n > GX_MAX_DEVICES)
        return gx_fail("TypeError: %s expects 1 to %d devices, got %d arguments", f->name,
                       GX_MAX_DEVICES, n);
    for (int i = 0; i < n; i++) {
        if (c[i] != kDLDevice)
            return gx_fail("TypeError: %s: argument %d must be a device", f->name, i);
        devs[i] = a[i].v_device;
    }
    if (m->nimports < 1)
        return gx_fail("TVMError: GraphExecutorFactory: no library module is imported; the "
                       "blob needs an _import_tree");
    mod_t *exec;
    if (gexec_create(f->json, f->json_len, m->imports[0], devs, n, &exec, err, sizeof(err)) < 0)
        return gx_fail("%s", err);
    if (gf_set_weights(f, exec) < 0) {
        mod_release(exec);
        return -1;
    }
    ret->v_handle = exec;
    *rc = kTVMModuleHandle;
    return 0;
}

static int gf_get_graph_json(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    ret->v_str = ((gfac_t *)((mod_t *)res)->self)->json;
    *rc = kTVMStr;
    return 0;
}

/* get_graph_params: a map over the factory's arrays, which it keeps. */
typedef struct gparams {
    mobj_t obj;
    mod_t *fac;
} gparams_t;

static void gparams_destroy(mobj_t *o)
{
    mod_release(((gparams_t *)o)->fac);
    free(o);
}

static int gf_get_graph_params(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    gparams_t *gp = calloc(1, sizeof(*gp));
    if (!gp)
        return gx_fail("MemoryError: out of memory");
    mod_retain(res);
    gp->fac = res;
    mobj_init(&gp->obj, "runtime.Map", gparams_destroy);
    ret->v_handle = &gp->obj;
    *rc = kTVMObjectHandle;
    return 0;
}

static gfac_t *gfac_copy_bare(const gfac_t *f)
{
    gfac_t *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->json = malloc(f->json_len + 1);
    n->name = strdup(f->name);
    if (!n->json || !n->name) {
        gfac_free(n);
        return NULL;
    }
    memcpy(n->json, f->json, f->json_len + 1);
    n->json_len = f->json_len;
    return n;
}

static int gf_remove_params(TVMValue *a, int *c, int n, TVMValue *ret, int *rc, void *res)
{
    mod_t *m = res;
    char err[GX_ERR];
    gfac_t *bare = gfac_copy_bare(m->self);
    mod_t *nm = bare ? mod_new(&gfac_vt, bare) : NULL;
    if (!nm)
        return gx_fail("MemoryError: out of memory");
    for (int i = 0; i < m->nimports; i++) {
        if (mod_import(nm, m->imports[i], err, sizeof(err)) < 0) {
            mod_release(nm);
            return gx_fail("%s", err);
        }
    }
    ret->v_handle = nm;
    *rc = kTVMModuleHandle;
    return 0;
}

static const struct {
    const char *name;
    TVMBackendPackedCFunc fn;
} gfac_fns[] = {
    {"get_graph_json", gf_get_graph_json},
    {"get_graph_params", gf_get_graph_params},
    {"remove_params", gf_remove_params},
    {NULL, NULL},
};

static int gf_get_function(mod_t *m, const char *name, mfunc_t **out, char *err, size_t errlen)
{
    const gfac_t *f = m->self;
    TVMBackendPackedCFunc fn = strcmp(name, f->name) == 0 ? gf_create : NULL;
    for (int i = 0; !fn && gfac_fns[i].name; i++)
        if (strcmp(gfac_fns[i].name, name) == 0)
            fn = gfac_fns[i].fn;
    *out = NULL;
    if (fn && !(*out = mfunc_new(name, fn, m, NULL, m)))
        return set_err(err, errlen, "MemoryError: out of memory");
    return 0;
}

static void gf_destroy(mod_t *m)
{
    gfac_free(m->self);
}

static const mod_vt_t gfac_vt = {
    .type_key = "GraphExecutorFactory", .get_function = gf_get_function, .destroy = gf_destroy};

/* ---- the blob entry (§2.3, §3.5) ------------------------------------------------- */

/* str: u64 length + bytes, copied NUL-terminated; no NUL inside. */
static int rd_cstr(rd_t *r, char **out, size_t *len, const char *what, char *err, size_t errlen)
{
    uint64_t n;
    const uint8_t *p;
    if (rd_u64(r, &n) < 0 || n > r->left || rd_bytes(r, (size_t)n, &p) < 0)
        return set_err(err, errlen,
                       "TVMError: GraphExecutorFactory: %s runs past the end of the blob", what);
    if (memchr(p, '\0', (size_t)n))
        return set_err(err, errlen, "TVMError: GraphExecutorFactory: %s contains a NUL byte", what);
    if (!(*out = malloc((size_t)n + 1)))
        return set_err(err, errlen, "MemoryError: out of memory");
    memcpy(*out, p, (size_t)n);
    (*out)[n] = '\0';
    if (len)
        *len = (size_t)n;
    return 0;
}

/* u64 P; vec<str> names (count P); P NDArray records. */
static int gf_read_weights(rd_t *r, graph_params_t *p, char *err, size_t errlen)
{
    uint64_t np, nn;
    char what[64], why[GX_ERR - 128];
    if (rd_u64(r, &np) < 0 || np > r->left / GX_NDARRAY_MIN)
        return set_err(err, errlen,
                       "TVMError: GraphExecutorFactory: the weight count is missing or larger "
                       "than the blob can hold");
    if (rd_u64(r, &nn) < 0 || nn != np)
        return set_err(err, errlen,
                       "TVMError: GraphExecutorFactory: %llu weight names for %llu weights",
                       (unsigned long long)nn, (unsigned long long)np);
    p->names = calloc(np ? np : 1, sizeof(*p->names));
    p->tensors = calloc(np ? np : 1, sizeof(*p->tensors));
    p->data = calloc(np ? np : 1, sizeof(*p->data));
    p->nbytes = calloc(np ? np : 1, sizeof(*p->nbytes));
    if (!p->names || !p->tensors || !p->data || !p->nbytes)
        return set_err(err, errlen, "MemoryError: out of memory");
    p->n = (size_t)np;
    for (size_t i = 0; i < p->n; i++) {
        snprintf(what, sizeof(what), "weight name %zu", i);
        if (rd_cstr(r, &p->names[i], NULL, what, err, errlen) < 0)
            return -1;
    }
    for (size_t i = 0; i < p->n; i++)
        if (graph_read_ndarray(r, &p->tensors[i], &p->data[i], &p->nbytes[i], why, sizeof(why)) < 0)
            return set_err(err, errlen, "TVMError: GraphExecutorFactory: weight %s: %s",
                           p->names[i], why);
    return 0;
}

static int gf_parse(rd_t *r, gfac_t *f, char *err, size_t errlen)
{
    char why[GX_ERR - 64];
    graph_t g;
    if (rd_cstr(r, &f->json, &f->json_len, "the graph JSON", err, errlen) < 0)
        return -1;
    /* TVM parses the JSON only when an executor is made; a blob that can
     * never make one is better refused when it is loaded. */
    if (graph_parse(&g, f->json, f->json_len, why, sizeof(why)) < 0)
        return set_err(err, errlen, "ValueError: GraphExecutorFactory: %s", why);
    graph_free(&g);
    if (gf_read_weights(r, &f->params, err, errlen) < 0)
        return -1;
    return rd_cstr(r, &f->name, NULL, "the module name", err, errlen);
}

int gexec_factory_load(rd_t *r, mod_t **out, char *err, size_t errlen)
{
    gfac_t *f = calloc(1, sizeof(*f));
    *out = NULL;
    if (!f)
        return set_err(err, errlen, "MemoryError: out of memory");
    if (gf_parse(r, f, err, errlen) < 0) {
        gfac_free(f);
        return -1;
    }
    if (!(*out = mod_new(&gfac_vt, f)))
        return set_err(err, errlen, "MemoryError: out of memory");
    return 0;
}
