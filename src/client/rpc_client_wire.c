/* The socket-free half of the client library: keys, chunk plans, value
 * translation and reply parsing (PROTOCOL.md §2.3, §4.4, §4.6, §4.10, §4.12). */
#include "client/rpc_client.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIMEOUT_PREFIX "RPCSessionTimeoutError: "

/* Classic type codes of handle kinds, sent along with kFreeHandle (§4.7). */
#define CLASSIC_OBJECT 8
#define CLASSIC_MODULE 9
#define CLASSIC_FUNC 10
#define CLASSIC_NDARRAY 13

void rcl_format_number(char *out, size_t outlen, double v)
{
    /* A Python caller passes ints for whole seconds; "-timeout=10.0" would
     * also abort the accept loop of TVM's C++ server (§2.4). */
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, outlen, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, outlen, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

int rcl_format_key(char *out, size_t outlen, const char *key, double session_timeout)
{
    if (!isfinite(session_timeout) || session_timeout < 0)
        return -1;
    int n;
    if (session_timeout > 0) {
        char num[64];
        rcl_format_number(num, sizeof(num), session_timeout);
        n = snprintf(out, outlen, "client:%s -timeout=%s", key ? key : "", num);
    } else {
        n = snprintf(out, outlen, "client:%s", key ? key : "");
    }
    return n < 0 || (size_t)n >= outlen || n > RPC_MAX_KEY_LEN ? -1 : 0;
}

int rcl_plan_chunks(uint64_t nbytes, uint64_t max_packet, int ndim, uint64_t *block,
                    uint64_t *count)
{
    if (max_packet == 0) {
        *block = nbytes;
        *count = 1;
        return 0;
    }
    uint64_t overhead = RCL_COPY_OVERHEAD(ndim);
    if (max_packet <= overhead)
        return -1;
    *block = max_packet - overhead;
    *count = nbytes / *block + (nbytes % *block != 0);
    if (*count == 0)
        *count = 1; /* an empty array still gets its (empty) copy packet */
    return 0;
}

int rcl_init_generation(const uint8_t *p, size_t n)
{
    if (n == 4 && le32(p) == 0)
        return TVMRPC_GEN_UNKNOWN; /* the generation-neutral reply (§4.12) */
    if (n != 8 || le32(p) != 1)
        return -1;
    uint32_t tag = le32(p + 4);
    return tag == 4 ? TVMRPC_GEN_CLASSIC : tag == 0 ? TVMRPC_GEN_FFI : -1;
}

static int first_string(const rpc_codec_t *c, const uint8_t *p, size_t n, const char **msg,
                        size_t *len)
{
    rpc_value_t v[1];
    rpc_tensor_t t[1];
    int cnt;
    char err[128];
    rd_t r = rd_make(p, n);
    if (c->decode(&r, v, t, 1, &cnt, err, sizeof(err)) < 0 || cnt != 1 ||
        (v[0].kind != RV_STR && v[0].kind != RV_BYTES))
        return -1;
    *msg = v[0].u.s.p;
    *len = (size_t)v[0].u.s.len;
    return 0;
}

int rcl_exception_text(const uint8_t *p, size_t n, const char **msg, size_t *len)
{
    /* Unsolicited timeout exceptions can come before the generation is
     * known, and the layouts differ only in the tag: accept both. */
    if (first_string(&rpc_codec_classic, p, n, msg, len) == 0)
        return 0;
    return first_string(&rpc_codec_ffi, p, n, msg, len);
}

int rcl_exception_code(const char *msg, size_t len)
{
    size_t plen = strlen(TIMEOUT_PREFIX);
    return len >= plen && memcmp(msg, TIMEOUT_PREFIX, plen) == 0 ? TVMRPC_ERR_TIMEOUT
                                                                 : TVMRPC_ERR_REMOTE;
}

static int bad(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return TVMRPC_ERR_ARG;
}

static int device_ok(int32_t type)
{
    /* Types >= 128 are TVM's client-local session encoding, never sent. */
    return type >= 1 && type <= 127;
}

void rcl_array_to_tensor(const tvmrpc_array_t *a, rpc_tensor_t *t)
{
    memset(t, 0, sizeof(*t));
    t->data = a->data;
    t->dev.type = a->dev.type;
    t->dev.id = a->dev.id;
    t->ndim = a->ndim;
    t->dtype.code = a->dtype.code;
    t->dtype.bits = a->dtype.bits;
    t->dtype.lanes = a->dtype.lanes;
    for (int i = 0; i < a->ndim && i < RPC_MAX_NDIM; i++)
        t->shape[i] = a->shape[i];
    t->byte_offset = a->byte_offset;
}

static int tensor_arg(const tvmrpc_array_t *a, rpc_value_t *w, rpc_tensor_t *t, char *err,
                      size_t errlen)
{
    if (!a)
        return bad(err, errlen, "tensor argument without an array");
    if (a->ndim < 0 || a->ndim > TVMRPC_MAX_NDIM)
        return bad(err, errlen, "tensor ndim outside [0, 32]");
    if (!device_ok(a->dev.type))
        return bad(err, errlen, "tensor device type outside 1..127");
    rcl_array_to_tensor(a, t);
    if (rpc_tensor_nbytes(t) < 0)
        return bad(err, errlen, "tensor shape is negative or overflows");
    w->kind = RV_TENSOR;
    w->t = t;
    return TVMRPC_OK;
}

int rcl_to_wire(const tvmrpc_value_t *v, rpc_value_t *w, rpc_tensor_t *t, char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    switch (v->kind) {
    case TVMRPC_NONE:
        w->kind = RV_NONE;
        return TVMRPC_OK;
    case TVMRPC_INT:
    case TVMRPC_BOOL:
        w->kind = v->kind == TVMRPC_INT ? RV_INT : RV_BOOL;
        w->u.i = v->kind == TVMRPC_BOOL ? v->u.i != 0 : v->u.i;
        return TVMRPC_OK;
    case TVMRPC_FLOAT:
        w->kind = RV_FLOAT;
        w->u.f = v->u.f;
        return TVMRPC_OK;
    case TVMRPC_STR:
    case TVMRPC_BYTES:
        if (!v->u.s.p && v->u.s.len)
            return bad(err, errlen, "string argument without data");
        w->kind = v->kind == TVMRPC_STR ? RV_STR : RV_BYTES;
        w->u.s.p = v->u.s.p ? v->u.s.p : "";
        w->u.s.len = v->u.s.len;
        return TVMRPC_OK;
    case TVMRPC_HANDLE:
    case TVMRPC_FUNC:
    case TVMRPC_MODULE:
    case TVMRPC_OBJECT:
        w->kind = v->kind == TVMRPC_HANDLE   ? RV_HANDLE
                  : v->kind == TVMRPC_FUNC   ? RV_FUNC
                  : v->kind == TVMRPC_MODULE ? RV_MODULE
                                             : RV_OBJECT;
        w->u.h = v->u.h;
        return TVMRPC_OK;
    case TVMRPC_DEVICE:
        if (!device_ok(v->u.dev.type))
            return bad(err, errlen, "device type outside 1..127");
        w->kind = RV_DEVICE;
        w->u.dev.type = v->u.dev.type;
        w->u.dev.id = v->u.dev.id;
        return TVMRPC_OK;
    case TVMRPC_DTYPE:
        w->kind = RV_DTYPE;
        w->u.dtype.code = v->u.dtype.code;
        w->u.dtype.bits = v->u.dtype.bits;
        w->u.dtype.lanes = v->u.dtype.lanes;
        return TVMRPC_OK;
    case TVMRPC_TENSOR:
        return tensor_arg(v->u.arr, w, t, err, errlen);
    }
    return bad(err, errlen, "unknown value kind");
}

static void tensor_to_array(const rpc_tensor_t *t, uint64_t handle, tvmrpc_array_t *a)
{
    memset(a, 0, sizeof(*a));
    a->data = t->data;
    a->dev.type = t->dev.type;
    a->dev.id = t->dev.id;
    a->ndim = t->ndim;
    a->dtype.code = t->dtype.code;
    a->dtype.bits = t->dtype.bits;
    a->dtype.lanes = t->dtype.lanes;
    for (int i = 0; i < t->ndim && i < TVMRPC_MAX_NDIM; i++)
        a->shape[i] = t->shape[i];
    a->byte_offset = t->byte_offset;
    a->handle = handle;
}

void rcl_from_wire(const rpc_value_t *w, tvmrpc_value_t *v, tvmrpc_array_t *arr)
{
    memset(v, 0, sizeof(*v));
    switch (w->kind) {
    case RV_NONE:
        v->kind = TVMRPC_NONE;
        break;
    case RV_INT:
    case RV_BOOL:
        v->kind = w->kind == RV_INT ? TVMRPC_INT : TVMRPC_BOOL;
        v->u.i = w->u.i;
        break;
    case RV_FLOAT:
        v->kind = TVMRPC_FLOAT;
        v->u.f = w->u.f;
        break;
    case RV_HANDLE:
    case RV_FUNC:
    case RV_MODULE:
    case RV_OBJECT:
        v->kind = w->kind == RV_HANDLE   ? TVMRPC_HANDLE
                  : w->kind == RV_FUNC   ? TVMRPC_FUNC
                  : w->kind == RV_MODULE ? TVMRPC_MODULE
                                         : TVMRPC_OBJECT;
        v->u.h = w->u.h;
        break;
    case RV_DTYPE:
        v->kind = TVMRPC_DTYPE;
        v->u.dtype.code = w->u.dtype.code;
        v->u.dtype.bits = w->u.dtype.bits;
        v->u.dtype.lanes = w->u.dtype.lanes;
        break;
    case RV_DEVICE:
        v->kind = TVMRPC_DEVICE;
        v->u.dev.type = w->u.dev.type;
        v->u.dev.id = w->u.dev.id;
        break;
    case RV_TENSOR:
    case RV_NDARRAY:
        v->kind = TVMRPC_TENSOR;
        tensor_to_array(w->t, w->kind == RV_NDARRAY ? w->u.h : 0, arr);
        v->u.arr = arr;
        break;
    case RV_STR:
    case RV_BYTES:
        v->kind = w->kind == RV_STR ? TVMRPC_STR : TVMRPC_BYTES;
        v->u.s.p = w->u.s.p;
        v->u.s.len = (size_t)w->u.s.len;
        break;
    }
}

int rcl_copy_header(buf_t *out, int32_t code, const rpc_tensor_t *t, uint64_t nbytes)
{
    size_t start = rpc_packet_begin(out, code);
    rpc_put_tensor(out, t);
    if (buf_append_u64le(out, nbytes) < 0)
        return -1;
    uint64_t len = (uint64_t)(out->len - start - 8);
    if (code == RPC_COPY_TO_REMOTE)
        len += nbytes; /* the data follows in the same packet, sent from the caller's buffer */
    put_le64(buf_head(out) + start, len);
    return 0;
}

int rcl_free_args(int generation, uint64_t h, tvmrpc_kind_t kind, rpc_value_t *args)
{
    int64_t code;
    switch (kind) {
    case TVMRPC_FUNC:
        code = CLASSIC_FUNC;
        break;
    case TVMRPC_MODULE:
        code = CLASSIC_MODULE;
        break;
    case TVMRPC_OBJECT:
        code = CLASSIC_OBJECT;
        break;
    case TVMRPC_TENSOR:
        code = CLASSIC_NDARRAY;
        break;
    default:
        return -1;
    }
    memset(args, 0, 2 * sizeof(*args));
    args[0].kind = RV_HANDLE;
    args[0].u.h = h;
    if (generation == TVMRPC_GEN_FFI)
        return 1; /* ffi frees are a plain decref */
    args[1].kind = RV_INT;
    args[1].u.i = code;
    return 2;
}

int rcl_parse_grant(const json_t *reply, char *host, size_t hostlen, int *port, char *matchkey,
                    size_t mklen)
{
    int64_t code, p;
    const json_t *g = json_array_get(reply, 1);
    const char *h = json_get_string(json_array_get(g, 0));
    const char *mk = json_get_string(json_array_get(g, 2));
    if (json_array_len(reply) != 2 || json_get_int(json_array_get(reply, 0), &code) < 0 ||
        code != 0 || json_array_len(g) != 3 || !h || !mk ||
        json_get_int(json_array_get(g, 1), &p) < 0 || p <= 0 || p > 65535)
        return -1;
    if ((size_t)snprintf(host, hostlen, "%s", h) >= hostlen ||
        (size_t)snprintf(matchkey, mklen, "%s", mk) >= mklen)
        return -1;
    *port = (int)p;
    return 0;
}

char *rcl_request_text(const char *key, int priority)
{
    json_t *a = json_new_array();
    if (!a)
        return NULL;
    if (json_array_push(a, json_new_int(4)) < 0 || json_array_push(a, json_new_string(key)) < 0 ||
        json_array_push(a, json_new_string("")) < 0 ||
        json_array_push(a, json_new_int(priority)) < 0) {
        json_free(a);
        return NULL;
    }
    char *s = json_dumps(a);
    json_free(a);
    return s;
}
