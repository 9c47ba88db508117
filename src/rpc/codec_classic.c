/* Classic generation packed sequences (TVM v0.8 - v0.20, PROTOCOL.md
 * §4.4.1 and §4.6): num_args, then all type codes, then all values. */
#include <stdio.h>
#include <string.h>

#include "rpc/rpc.h"

enum classic_tag {
    TAG_INT = 0,
    TAG_UINT = 1,
    TAG_FLOAT = 2,
    TAG_HANDLE = 3,
    TAG_NULL = 4,
    TAG_DTYPE = 5,
    TAG_DEVICE = 6,
    TAG_DLTENSOR = 7,
    TAG_OBJECT = 8,
    TAG_MODULE = 9,
    TAG_FUNC = 10,
    TAG_STR = 11,
    TAG_BYTES = 12,
    TAG_NDARRAY = 13,
    TAG_BOOL = 15,
};

#define CLASSIC_RPC_OBJECT_REF 9 /* the only object type index allowed on the wire */

static int fail(char *err, size_t errlen, const char *msg, int32_t tag)
{
    snprintf(err, errlen, "%s (type code %d)", msg, tag);
    return -1;
}

/* Type code of each neutral kind as a plain (non-result) argument; an
 * NDARRAY goes as its tensor. Read backwards it is also the decoder's map. */
static const int8_t kind_tag[] = {
    [RV_NONE] = TAG_NULL,     [RV_INT] = TAG_INT,          [RV_BOOL] = TAG_BOOL,
    [RV_FLOAT] = TAG_FLOAT,   [RV_HANDLE] = TAG_HANDLE,    [RV_DTYPE] = TAG_DTYPE,
    [RV_DEVICE] = TAG_DEVICE, [RV_TENSOR] = TAG_DLTENSOR,  [RV_STR] = TAG_STR,
    [RV_BYTES] = TAG_BYTES,   [RV_FUNC] = TAG_FUNC,        [RV_MODULE] = TAG_MODULE,
    [RV_OBJECT] = TAG_OBJECT, [RV_NDARRAY] = TAG_DLTENSOR,
};

static int value_tag(const rpc_value_t *v)
{
    return (size_t)v->kind < sizeof(kind_tag) ? kind_tag[v->kind] : TAG_NULL;
}

/* The kind an argument's type code decodes to; -1 for codes not accepted
 * (kTVMNDArrayHandle is a result-only code). */
static int tag_kind(int32_t tag)
{
    if (tag == TAG_UINT)
        return RV_INT;
    for (int k = 0; k < RV_NDARRAY; k++)
        if (kind_tag[k] == tag)
            return k;
    return -1;
}

static int decode_one(rd_t *r, int32_t tag, rpc_value_t *v, rpc_tensor_t *t, char *err,
                      size_t errlen)
{
    memset(v, 0, sizeof(*v));
    if (tag == TAG_OBJECT) {
        uint32_t idx;
        if (rd_u32(r, &idx) < 0)
            return fail(err, errlen, "truncated object", tag);
        if (idx != CLASSIC_RPC_OBJECT_REF)
            return fail(err, errlen, "only RPC object references may be sent", tag);
        v->kind = RV_OBJECT;
        return rpc_get_payload(r, v, t, "type code", tag, err, errlen);
    }
    int kind = tag_kind(tag);
    if (kind < 0)
        return fail(err, errlen, "unknown type code", tag);
    v->kind = (rpc_kind_t)kind;
    return rpc_get_payload(r, v, t, "type code", tag, err, errlen);
}

static int classic_decode(rd_t *r, rpc_value_t *vals, rpc_tensor_t *tensors, int max, int *n,
                          char *err, size_t errlen)
{
    int32_t num;
    if (rpc_get_count(r, max, &num, err, errlen) < 0)
        return -1;
    int32_t tags[num > 0 ? num : 1];
    for (int i = 0; i < num; i++)
        rd_i32(r, &tags[i]);
    for (int i = 0; i < num; i++) {
        if (decode_one(r, tags[i], &vals[i], &tensors[i], err, errlen) < 0)
            return -1;
    }
    if (rpc_check_end(r, err, errlen) < 0)
        return -1;
    *n = num;
    return 0;
}

/* Objects carry their inner index (always RPCObjectRef) before the handle. */
static int put_payload(buf_t *out, const rpc_value_t *v)
{
    if (v->kind == RV_OBJECT)
        buf_append_u32le(out, CLASSIC_RPC_OBJECT_REF);
    return rpc_put_payload(out, v);
}

static int classic_encode_args(buf_t *out, const rpc_value_t *v, int n)
{
    buf_append_i32le(out, n);
    for (int i = 0; i < n; i++)
        buf_append_i32le(out, value_tag(&v[i]));
    for (int i = 0; i < n; i++)
        if (put_payload(out, &v[i]) < 0)
            return -1;
    return 0;
}

static int classic_encode_value(buf_t *out, const rpc_value_t *v)
{
    return classic_encode_args(out, v, 1);
}

static int classic_encode_void(buf_t *out)
{
    rpc_value_t none = {.kind = RV_NONE};
    return classic_encode_args(out, &none, 1);
}

/* kCallFunc result: value 0 is an int holding the result's type code. */
static int classic_encode_call_result(buf_t *out, const rpc_value_t *v)
{
    rpc_value_t seq[3];
    memset(seq, 0, sizeof(seq));
    seq[0].kind = RV_INT;
    seq[1] = *v;
    int n = 2;
    switch (v->kind) {
    case RV_FUNC:
        seq[0].u.i = TAG_FUNC;
        seq[1].kind = RV_HANDLE;
        break;
    case RV_MODULE:
        seq[0].u.i = TAG_MODULE;
        seq[1].kind = RV_HANDLE;
        break;
    case RV_OBJECT:
        seq[0].u.i = TAG_OBJECT;
        seq[1].kind = RV_HANDLE;
        break;
    case RV_NDARRAY:
        seq[0].u.i = TAG_NDARRAY;
        seq[1].kind = RV_TENSOR;
        seq[2].kind = RV_HANDLE;
        seq[2].u.h = v->u.h;
        n = 3;
        break;
    default:
        seq[0].u.i = value_tag(v);
        break;
    }
    return classic_encode_args(out, seq, n);
}

static int classic_encode_exception(buf_t *out, const char *msg, size_t len)
{
    rpc_value_t s = {.kind = RV_STR};
    s.u.s.p = msg;
    s.u.s.len = len;
    return classic_encode_args(out, &s, 1);
}

static int classic_decode_call_result(rd_t *r, rpc_value_t *out, rpc_tensor_t *t, char *err,
                                      size_t errlen)
{
    rpc_value_t vals[3];
    rpc_tensor_t ts[3];
    int n;
    if (classic_decode(r, vals, ts, 3, &n, err, errlen) < 0)
        return -1;
    if (rpc_check_call_result(vals, n, err, errlen) < 0)
        return -1;
    int64_t code = vals[0].u.i;
    *out = vals[1];
    switch (code) {
    case TAG_NULL:
        out->kind = RV_NONE;
        break;
    case TAG_FUNC:
        out->kind = RV_FUNC;
        break;
    case TAG_MODULE:
        out->kind = RV_MODULE;
        break;
    case TAG_OBJECT:
        out->kind = RV_OBJECT;
        break;
    case TAG_DLTENSOR:
    case TAG_NDARRAY:
        if (rpc_take_array_result(vals, ts, n, out, t, "array", err, errlen) < 0)
            return -1;
        break;
    default:
        break;
    }
    return 0;
}

const rpc_codec_t rpc_codec_classic = {
    .name = "classic",
    .decode = classic_decode,
    .encode_call_result = classic_encode_call_result,
    .encode_value = classic_encode_value,
    .encode_void = classic_encode_void,
    .encode_exception = classic_encode_exception,
    .encode_args = classic_encode_args,
    .decode_call_result = classic_decode_call_result,
};
