/* The testing helpers of RUNTIME.md §1.8: what TVM's own RPC test suites
 * call on a server, in both generations. None of them matters to real
 * workloads; they exist so TVM's tests (and ours) can exercise every kind
 * of result a server hands out: scalars, strings, errors, functions made
 * on the fly, opaque objects and arrays the server owns. */
#include "server/globals_testing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "server/hostmem.h"
#include "server/module.h"

#define MAX_MSG 512
#define CPU_DEVICE 1

static int type_error(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "TypeError: %s", what);
    return -1;
}

static int clip(uint64_t len, int max)
{
    return len > (uint64_t)max ? max : (int)len;
}

/* ---- scalars, strings, errors --------------------------------------------------- */

TESTING_FN(testing_fn_echo)
{
    if (nargs < 1)
        return type_error(err, errlen, "echo expects an argument");
    if (args[0].kind == RV_TENSOR)
        return type_error(err, errlen, "echo of an array argument is not supported");
    /* Handing a handle out again is one more reference (PROTOCOL.md §4.7). */
    if (args[0].kind == RV_FUNC || args[0].kind == RV_MODULE || args[0].kind == RV_OBJECT) {
        if (!session_object_get(s, args[0].u.h, args[0].kind, NULL) ||
            session_object_retain(s, args[0].u.h) < 0) {
            snprintf(err, errlen, "ValueError: unknown handle");
            return -1;
        }
    }
    *ret = args[0];
    return 0;
}

TESTING_FN(testing_fn_nop)
{
    return 0;
}

TESTING_FN(testing_fn_addone)
{
    if (nargs != 1 || (args[0].kind != RV_INT && args[0].kind != RV_FLOAT))
        return type_error(err, errlen, "addone expects a number");
    *ret = args[0];
    if (ret->kind == RV_INT)
        ret->u.i = (int64_t)((uint64_t)ret->u.i + 1);
    else
        ret->u.f += 1;
    return 0;
}

/* Python str() of a scalar argument, as rpc.test.strcat formats it. */
static void py_str(buf_t *b, const rpc_value_t *v)
{
    switch (v->kind) {
    case RV_INT:
        buf_printf(b, "%lld", (long long)v->u.i);
        break;
    case RV_BOOL:
        buf_append_str(b, v->u.i ? "True" : "False");
        break;
    case RV_FLOAT:
        json_py_float(b, v->u.f);
        break;
    case RV_STR:
        buf_append(b, v->u.s.p, (size_t)v->u.s.len);
        break;
    case RV_NONE:
        buf_append_str(b, "None");
        break;
    default:
        buf_append_str(b, "<object>");
        break;
    }
}

static void ret_scratch_str(session_t *s, rpc_value_t *ret)
{
    buf_t *b = session_scratch(s);
    ret->kind = RV_STR;
    ret->u.s.p = (const char *)buf_head(b);
    ret->u.s.len = b->len;
}

TESTING_FN(testing_fn_strcat)
{
    if (nargs != 2 || args[0].kind != RV_STR)
        return type_error(err, errlen, "strcat expects (str, value)");
    buf_t *b = session_scratch(s);
    py_str(b, &args[0]);
    buf_append_u8(b, ':');
    py_str(b, &args[1]);
    ret_scratch_str(s, ret);
    return 0;
}

TESTING_FN(testing_fn_str_concat)
{
    if (nargs != 2 || args[0].kind != RV_STR || args[1].kind != RV_STR)
        return type_error(err, errlen, "runtime_str_concat expects two strings");
    buf_t *b = session_scratch(s);
    py_str(b, &args[0]);
    py_str(b, &args[1]);
    ret_scratch_str(s, ret);
    return 0;
}

TESTING_FN(testing_fn_except)
{
    if (nargs >= 1 && args[0].kind == RV_STR)
        snprintf(err, errlen, "ValueError: %.*s", clip(args[0].u.s.len, MAX_MSG), args[0].u.s.p);
    else
        snprintf(err, errlen, "ValueError: rpc.test.except");
    return -1;
}

/* ffi generation: testing.test_raise_error(kind, message). */
TESTING_FN(testing_fn_raise_error)
{
    if (nargs != 2 || args[0].kind != RV_STR || args[1].kind != RV_STR)
        return type_error(err, errlen, "test_raise_error expects (kind, message)");
    snprintf(err, errlen, "%.*s: %.*s", clip(args[0].u.s.len, 64), args[0].u.s.p,
             clip(args[1].u.s.len, MAX_MSG), args[1].u.s.p);
    return -1;
}

/* classic generation: testing.ErrorTest(x, y) fails unless x == y. */
TESTING_FN(testing_fn_error_test)
{
    if (nargs != 2 || args[0].kind != RV_INT || args[1].kind != RV_INT)
        return type_error(err, errlen, "ErrorTest expects (int, int)");
    if (args[0].u.i == args[1].u.i)
        return 0;
    snprintf(err, errlen,
             "ValueError: Check failed: x == y (%lld vs. %lld) : expect x and y to be equal.",
             (long long)args[0].u.i, (long long)args[1].u.i);
    return -1;
}

/* ---- functions made on the fly ----------------------------------------------------- */

/* A function the client gets as a result: the handle owns self, which
 * ops->destroy frees when the client lets go of it (or at once, if the
 * handle cannot be made). self NULL: the caller ran out of memory. */
static int ret_closure(session_t *s, const sobj_ops_t *ops, void *self, rpc_value_t *ret, char *err,
                       size_t errlen)
{
    if (!self || !(ret->u.h = session_object_new(s, RV_FUNC, ops, self))) {
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    ret->kind = RV_FUNC;
    return 0;
}

typedef struct msg_closure {
    size_t len;
    char text[];
} msg_closure_t;

/* LOG(FATAL) << msg in TVM: the text carries no kind of its own. */
static int raise_call(session_t *s, void *self, const rpc_value_t *args, int nargs,
                      rpc_value_t *ret, char *err, size_t errlen)
{
    const msg_closure_t *m = self;
    snprintf(err, errlen, "TVMError: %.*s", clip(m->len, MAX_MSG), m->text);
    return -1;
}

static const sobj_ops_t raise_ops = {
    .type_key = "runtime.PackedFunc", .call = raise_call, .destroy = free};

TESTING_FN(testing_fn_raise_error_callback)
{
    if (nargs != 1 || args[0].kind != RV_STR)
        return type_error(err, errlen, "test_raise_error_callback expects a string");
    msg_closure_t *m = malloc(sizeof(*m) + (size_t)args[0].u.s.len + 1);
    if (m) {
        m->len = (size_t)args[0].u.s.len;
        memcpy(m->text, args[0].u.s.p, m->len);
        m->text[m->len] = '\0';
    }
    return ret_closure(s, &raise_ops, m, ret, err, errlen);
}

static int is_number(const rpc_value_t *v)
{
    return v->kind == RV_INT || v->kind == RV_BOOL || v->kind == RV_FLOAT;
}

static double as_double(const rpc_value_t *v)
{
    return v->kind == RV_FLOAT ? v->u.f : (double)v->u.i;
}

/* Python's x + y for numbers (bool is an int). */
static int lhs_call(session_t *s, void *self, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                    char *err, size_t errlen)
{
    const rpc_value_t *x = self;
    if (nargs != 1 || !is_number(&args[0]))
        return type_error(err, errlen, "add_to_lhs's function expects a number");
    if (x->kind == RV_FLOAT || args[0].kind == RV_FLOAT) {
        ret->kind = RV_FLOAT;
        ret->u.f = as_double(x) + as_double(&args[0]);
    } else {
        ret->kind = RV_INT;
        ret->u.i = (int64_t)((uint64_t)x->u.i + (uint64_t)args[0].u.i);
    }
    return 0;
}

static const sobj_ops_t lhs_ops = {
    .type_key = "runtime.PackedFunc", .call = lhs_call, .destroy = free};

TESTING_FN(testing_fn_add_to_lhs)
{
    if (nargs != 1 || !is_number(&args[0]))
        return type_error(err, errlen, "add_to_lhs expects a number");
    rpc_value_t *x = malloc(sizeof(*x));
    if (x)
        *x = args[0];
    return ret_closure(s, &lhs_ops, x, ret, err, errlen);
}

/* ---- client-held references ---------------------------------------------------------- */

/* TVM answers use_count - 1, the argument's own reference excluded: here
 * that is the references the client holds. */
TESTING_FN(testing_fn_object_use_count)
{
    if (nargs != 1 ||
        (args[0].kind != RV_OBJECT && args[0].kind != RV_FUNC && args[0].kind != RV_MODULE))
        return type_error(err, errlen, "object_use_count expects an object");
    int refs = session_object_refs(s, args[0].u.h);
    if (refs < 0) {
        snprintf(err, errlen, "ValueError: unknown handle");
        return -1;
    }
    ret->kind = RV_INT;
    ret->u.i = refs;
    return 0;
}

/* ---- shapes ------------------------------------------------------------------------- */

/* ffi.Shape and the classic runtime.ShapeTuple: an opaque object to the
 * client (an RPCObjectRef), which only passes it back. */
typedef struct shape {
    int64_t n;
    int64_t dims[];
} shape_t;

static const sobj_ops_t shape_ops = {.type_key = "ffi.Shape", .destroy = free};

TESTING_FN(testing_fn_shape)
{
    for (int i = 0; i < nargs; i++)
        if (args[i].kind != RV_INT)
            return type_error(err, errlen, "a shape is made of integers");
    shape_t *sh = malloc(sizeof(*sh) + (size_t)nargs * sizeof(int64_t));
    if (!sh || !(ret->u.h = session_object_new(s, RV_OBJECT, &shape_ops, sh))) {
        snprintf(err, errlen, "MemoryError: out of memory");
        free(sh);
        return -1;
    }
    sh->n = nargs;
    for (int i = 0; i < nargs; i++)
        sh->dims[i] = args[i].u.i;
    ret->kind = RV_OBJECT;
    return 0;
}

static const shape_t *arg_shape(const session_t *s, const rpc_value_t *args, int nargs, char *err,
                                size_t errlen)
{
    const shape_t *sh = nargs >= 1 && args[0].kind == RV_OBJECT
                            ? session_object_get(s, args[0].u.h, RV_OBJECT, &shape_ops)
                            : NULL;
    if (!sh)
        type_error(err, errlen, "argument 0 must be a shape this session made");
    return sh;
}

TESTING_FN(testing_fn_shape_size)
{
    const shape_t *sh = arg_shape(s, args, nargs, err, errlen);
    if (!sh)
        return -1;
    ret->kind = RV_INT;
    ret->u.i = sh->n;
    return 0;
}

TESTING_FN(testing_fn_shape_elem)
{
    const shape_t *sh = arg_shape(s, args, nargs, err, errlen);
    if (!sh)
        return -1;
    if (nargs != 2 || args[1].kind != RV_INT)
        return type_error(err, errlen, "expected (shape, int)");
    if (args[1].u.i < 0 || args[1].u.i >= sh->n) {
        snprintf(err, errlen, "IndexError: index %lld out of range for a shape of size %lld",
                 (long long)args[1].u.i, (long long)sh->n);
        return -1;
    }
    ret->kind = RV_INT;
    ret->u.i = sh->dims[args[1].u.i];
    return 0;
}

/* ---- arrays ----------------------------------------------------------------------------- */

/* Element idx of a compact CPU array this session may read, as a Python
 * number: float32/float64 and 8- to 64-bit integers. */
static int tensor_elem(const session_t *s, const rpc_tensor_t *t, int64_t idx, rpc_value_t *out,
                       char *err, size_t errlen)
{
    unsigned bits = t->dtype.bits;
    int64_t nbytes = rpc_tensor_nbytes(t);
    int float_ok = t->dtype.code == 2 && (bits == 32 || bits == 64);
    int int_ok = t->dtype.code <= 1 && (bits == 8 || bits == 16 || bits == 32 || bits == 64);
    if (t->dev.type != CPU_DEVICE || t->dtype.lanes != 1 || nbytes < 0 || !(float_ok || int_ok))
        return type_error(err, errlen, "expected a CPU array of float32/64 or integers");
    if (idx < 0 || idx >= nbytes / (bits / 8)) {
        snprintf(err, errlen, "IndexError: index %lld is out of bounds", (long long)idx);
        return -1;
    }
    if (t->byte_offset > UINT64_MAX - t->data ||
        session_check_range(s, t->data + t->byte_offset, (uint64_t)nbytes) < 0) {
        snprintf(err, errlen, "ValueError: array memory was not allocated in this session");
        return -1;
    }
    const uint8_t *p = (const uint8_t *)(uintptr_t)(t->data + t->byte_offset) + idx * (bits / 8);
    union {
        float f;
        double d;
        int8_t i8;
        int16_t i16;
        int32_t i32;
        int64_t i64;
        uint8_t u8;
        uint16_t u16;
        uint32_t u32;
    } e;
    memcpy(&e, p, bits / 8);
    if (float_ok) {
        out->kind = RV_FLOAT;
        out->u.f = bits == 32 ? (double)e.f : e.d;
        return 0;
    }
    out->kind = RV_INT;
    int sgn = t->dtype.code == 0;
    out->u.i = bits == 8    ? (sgn ? e.i8 : e.u8)
               : bits == 16 ? (sgn ? e.i16 : e.u16)
               : bits == 32 ? (sgn ? e.i32 : (int64_t)e.u32)
                            : e.i64;
    return 0;
}

/* rpc.test.remote_array_func(y) (classic) / remote_tensor_func(y) (ffi):
 * y must equal a 3x4 array of ones, whatever its element type. */
TESTING_FN(testing_fn_remote_array_func)
{
    if (nargs != 1 || args[0].kind != RV_TENSOR)
        return type_error(err, errlen, "expected an array");
    const rpc_tensor_t *t = args[0].t;
    if (t->ndim != 2 || t->shape[0] != 3 || t->shape[1] != 4) {
        snprintf(err, errlen, "AssertionError: expected an array of shape (3, 4)");
        return -1;
    }
    for (int64_t i = 0; i < 12; i++) {
        rpc_value_t v;
        if (tensor_elem(s, t, i, &v, err, errlen) < 0)
            return -1;
        if (as_double(&v) != 1.0) {
            snprintf(err, errlen, "AssertionError: element %lld is not 1", (long long)i);
            return -1;
        }
    }
    return 0;
}

/* rpc.test.remote_return_nd(name): a float32[10] of zeros the server owns,
 * and one function around it, chosen by name. */
enum nd_what { ND_GET_ARR, ND_REF_COUNT, ND_GET_ELEM, ND_GET_ARR_ELEM };

typedef struct nd_closure {
    enum nd_what what;
    mnd_t *arr;
} nd_closure_t;

#define ND_LEN 10

/* The array's memory is listed in hostmem, so the client may copy from it
 * and pass it back as an argument like its own allocations. */
static void nd_mem_release(void *p)
{
    hostmem_remove(p);
    free(p);
}

static mnd_t *nd_zeros(void)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, ND_LEN * sizeof(float)) != 0)
        return NULL;
    memset(p, 0, ND_LEN * sizeof(float));
    if (hostmem_add(p, ND_LEN * sizeof(float)) < 0) {
        free(p);
        return NULL;
    }
    int64_t shape[1] = {ND_LEN};
    DLTensor v = {
        .data = p, .device = {CPU_DEVICE, 0}, .ndim = 1, .dtype = {2, 32, 1}, .shape = shape};
    mnd_t *a = mnd_new(&v, nd_mem_release, p);
    if (!a)
        return NULL;
    a->wire.data = (uint64_t)(uintptr_t)p;
    a->wire.dev.type = CPU_DEVICE;
    a->wire.ndim = 1;
    a->wire.dtype = (rpc_dtype_t){2, 32, 1};
    a->wire.shape[0] = ND_LEN;
    return a;
}

static void nd_handle_destroy(void *self)
{
    mnd_release(self);
}

static const sobj_ops_t nd_handle_ops = {.type_key = "runtime.NDArray",
                                         .destroy = nd_handle_destroy};

/* The array itself: one more reference, owned by the client's handle. */
static int nd_return(session_t *s, mnd_t *a, rpc_value_t *ret, char *err, size_t errlen)
{
    mobj_retain(&a->obj);
    if (!(ret->u.h = session_object_new(s, RV_OBJECT, &nd_handle_ops, a))) {
        snprintf(err, errlen, "MemoryError: out of memory");
        return -1;
    }
    ret->kind = RV_NDARRAY;
    ret->t = &a->wire;
    return 0;
}

static int nd_call(session_t *s, void *self, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                   char *err, size_t errlen)
{
    const nd_closure_t *c = self;
    switch (c->what) {
    case ND_GET_ARR:
        return nd_return(s, c->arr, ret, err, errlen);
    case ND_REF_COUNT:
        ret->kind = RV_INT;
        ret->u.i = __atomic_load_n(&c->arr->obj.refs, __ATOMIC_RELAXED);
        return 0;
    case ND_GET_ELEM:
        if (nargs != 1 || args[0].kind != RV_INT)
            return type_error(err, errlen, "get_elem expects an index");
        return tensor_elem(s, &c->arr->wire, args[0].u.i, ret, err, errlen);
    case ND_GET_ARR_ELEM:
        if (nargs != 2 || args[0].kind != RV_TENSOR || args[1].kind != RV_INT)
            return type_error(err, errlen, "get_arr_elem expects (array, index)");
        return tensor_elem(s, args[0].t, args[1].u.i, ret, err, errlen);
    }
    return -1;
}

static void nd_closure_destroy(void *self)
{
    nd_closure_t *c = self;
    mnd_release(c->arr);
    free(c);
}

static const sobj_ops_t nd_closure_ops = {
    .type_key = "runtime.PackedFunc", .call = nd_call, .destroy = nd_closure_destroy};

static int nd_what_of(const rpc_value_t *name, enum nd_what *out)
{
    static const char *const names[] = {"get_arr", "ref_count", "get_elem", "get_arr_elem"};
    for (int i = 0; i < 4; i++) {
        if (name->u.s.len == strlen(names[i]) && !memcmp(name->u.s.p, names[i], strlen(names[i]))) {
            *out = (enum nd_what)i;
            return 0;
        }
    }
    return -1;
}

TESTING_FN(testing_fn_remote_return_nd)
{
    enum nd_what what;
    if (nargs != 1 || args[0].kind != RV_STR)
        return type_error(err, errlen, "remote_return_nd expects a name");
    if (nd_what_of(&args[0], &what) < 0) {
        snprintf(err, errlen, "ValueError: remote_return_nd has no function %.*s",
                 clip(args[0].u.s.len, 64), args[0].u.s.p);
        return -1;
    }
    nd_closure_t *c = malloc(sizeof(*c));
    if (c && !(c->arr = nd_zeros())) {
        free(c);
        c = NULL;
    }
    if (c)
        c->what = what;
    return ret_closure(s, &nd_closure_ops, c, ret, err, errlen);
}
