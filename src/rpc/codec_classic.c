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

static int decode_one(rd_t *r, int32_t tag, rpc_value_t *v, rpc_tensor_t *t, char *err,
                      size_t errlen)
{
    const uint8_t *p;
    uint32_t idx;
    memset(v, 0, sizeof(*v));
    switch (tag) {
    case TAG_INT:
    case TAG_UINT:
        v->kind = RV_INT;
        return rd_i64(r, &v->u.i) < 0 ? fail(err, errlen, "truncated int", tag) : 0;
    case TAG_BOOL:
        v->kind = RV_BOOL;
        return rd_i64(r, &v->u.i) < 0 ? fail(err, errlen, "truncated bool", tag) : 0;
    case TAG_FLOAT:
        v->kind = RV_FLOAT;
        return rd_f64(r, &v->u.f) < 0 ? fail(err, errlen, "truncated float", tag) : 0;
    case TAG_HANDLE:
    case TAG_MODULE:
    case TAG_FUNC:
        v->kind = tag == TAG_HANDLE ? RV_HANDLE : tag == TAG_MODULE ? RV_MODULE : RV_FUNC;
        return rd_u64(r, &v->u.h) < 0 ? fail(err, errlen, "truncated handle", tag) : 0;
    case TAG_NULL:
        v->kind = RV_NONE;
        return 0;
    case TAG_DTYPE:
        v->kind = RV_DTYPE;
        if (rd_u8(r, &v->u.dtype.code) < 0 || rd_u8(r, &v->u.dtype.bits) < 0 ||
            rd_u16(r, &v->u.dtype.lanes) < 0 || rd_skip(r, 4) < 0)
            return fail(err, errlen, "truncated dtype", tag);
        return 0;
    case TAG_DEVICE:
        v->kind = RV_DEVICE;
        if (rd_i32(r, &v->u.dev.type) < 0 || rd_i32(r, &v->u.dev.id) < 0)
            return fail(err, errlen, "truncated device", tag);
        /* Device types on the wire are DLPack numbers, never masked (< 128). */
        if (v->u.dev.type < 1 || v->u.dev.type > 127)
            return fail(err, errlen, "invalid device type", tag);
        return 0;
    case TAG_DLTENSOR:
        v->kind = RV_TENSOR;
        v->t = t;
        if (rpc_get_tensor(r, t, err, errlen) < 0)
            return -1;
        if (t->dev.type < 1 || t->dev.type > 127)
            return fail(err, errlen, "invalid tensor device type", tag);
        return 0;
    case TAG_OBJECT:
        v->kind = RV_OBJECT;
        if (rd_u32(r, &idx) < 0 || rd_u64(r, &v->u.h) < 0)
            return fail(err, errlen, "truncated object", tag);
        if (idx != CLASSIC_RPC_OBJECT_REF)
            return fail(err, errlen, "only RPC object references may be sent", tag);
        return 0;
    case TAG_STR:
    case TAG_BYTES:
        v->kind = tag == TAG_STR ? RV_STR : RV_BYTES;
        if (rd_u64(r, &v->u.s.len) < 0 || v->u.s.len > r->left ||
            rd_bytes(r, (size_t)v->u.s.len, &p) < 0)
            return fail(err, errlen, "truncated string", tag);
        v->u.s.p = (const char *)p;
        return 0;
    default:
        return fail(err, errlen, "unknown type code", tag);
    }
}

static int classic_decode(rd_t *r, rpc_value_t *vals, rpc_tensor_t *tensors, int max, int *n,
                          char *err, size_t errlen)
{
    int32_t num;
    if (rd_i32(r, &num) < 0) {
        snprintf(err, errlen, "truncated argument count");
        return -1;
    }
    if (num < 0 || num > max || (size_t)num * 4 > r->left) {
        snprintf(err, errlen, "argument count %d outside [0, %d]", num, max);
        return -1;
    }
    int32_t tags[num > 0 ? num : 1];
    for (int i = 0; i < num; i++)
        rd_i32(r, &tags[i]);
    for (int i = 0; i < num; i++) {
        if (decode_one(r, tags[i], &vals[i], &tensors[i], err, errlen) < 0)
            return -1;
    }
    if (r->left) {
        snprintf(err, errlen, "%zu unexpected bytes after the arguments", r->left);
        return -1;
    }
    *n = num;
    return 0;
}

/* Tag and payload of one value as a plain (non-result) argument. */
static int value_tag(const rpc_value_t *v)
{
    switch (v->kind) {
    case RV_NONE:
        return TAG_NULL;
    case RV_INT:
        return TAG_INT;
    case RV_BOOL:
        return TAG_BOOL;
    case RV_FLOAT:
        return TAG_FLOAT;
    case RV_HANDLE:
        return TAG_HANDLE;
    case RV_DTYPE:
        return TAG_DTYPE;
    case RV_DEVICE:
        return TAG_DEVICE;
    case RV_TENSOR:
        return TAG_DLTENSOR;
    case RV_STR:
        return TAG_STR;
    case RV_BYTES:
        return TAG_BYTES;
    case RV_FUNC:
        return TAG_FUNC;
    case RV_MODULE:
        return TAG_MODULE;
    case RV_OBJECT:
        return TAG_OBJECT;
    case RV_NDARRAY:
        return TAG_DLTENSOR;
    }
    return TAG_NULL;
}

static int put_payload(buf_t *out, const rpc_value_t *v)
{
    switch (v->kind) {
    case RV_NONE:
        return 0;
    case RV_INT:
    case RV_BOOL:
        return buf_append_i64le(out, v->u.i);
    case RV_FLOAT: {
        uint64_t bits;
        memcpy(&bits, &v->u.f, 8);
        return buf_append_u64le(out, bits);
    }
    case RV_HANDLE:
    case RV_FUNC:
    case RV_MODULE:
        return buf_append_u64le(out, v->u.h);
    case RV_OBJECT:
        buf_append_u32le(out, CLASSIC_RPC_OBJECT_REF);
        return buf_append_u64le(out, v->u.h);
    case RV_DTYPE: {
        uint8_t b[8] = {v->u.dtype.code,
                        v->u.dtype.bits,
                        (uint8_t)v->u.dtype.lanes,
                        (uint8_t)(v->u.dtype.lanes >> 8),
                        0,
                        0,
                        0,
                        0};
        return buf_append(out, b, 8);
    }
    case RV_DEVICE:
        buf_append_i32le(out, v->u.dev.type);
        return buf_append_i32le(out, v->u.dev.id);
    case RV_TENSOR:
    case RV_NDARRAY:
        return rpc_put_tensor(out, v->t);
    case RV_STR:
    case RV_BYTES:
        buf_append_u64le(out, v->u.s.len);
        return buf_append(out, v->u.s.p, (size_t)v->u.s.len);
    }
    return -1;
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
    if (n < 2 || vals[0].kind != RV_INT) {
        snprintf(err, errlen, "malformed call result");
        return -1;
    }
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
        if (n != 3 || vals[1].kind != RV_TENSOR || vals[2].kind != RV_HANDLE) {
            snprintf(err, errlen, "malformed array result");
            return -1;
        }
        *t = ts[1];
        out->kind = RV_NDARRAY;
        out->t = t;
        out->u.h = vals[2].u.h;
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
