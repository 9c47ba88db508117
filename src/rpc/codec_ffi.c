/* ffi generation packed sequences (TVM v0.21 - v0.26, PROTOCOL.md §4.4.2
 * and §4.6): num_args, then per argument its type index followed at once
 * by its payload; objects carry a second, inner index. */
#include <stdio.h>
#include <string.h>

#include "rpc/rpc.h"

enum ffi_index {
    FFI_NONE = 0,
    FFI_INT = 1,
    FFI_BOOL = 2,
    FFI_FLOAT = 3,
    FFI_OPAQUE_PTR = 4,
    FFI_DTYPE = 5,
    FFI_DEVICE = 6,
    FFI_DLTENSOR_PTR = 7,
    FFI_RAW_STR = 8,
    FFI_BYTE_ARRAY_PTR = 9,
    FFI_SMALL_STR = 11,
    FFI_SMALL_BYTES = 12,
    FFI_STATIC_OBJECT_BEGIN = 64,
    FFI_OBJECT = 64,
    FFI_STR = 65,
    FFI_BYTES = 66,
    FFI_FUNCTION = 68,
    FFI_MODULE = 73,
    FFI_RPC_OBJECT_REF = 115,
};

/* Strings up to this many bytes are reported as SmallStr/SmallBytes in
 * results, as TVM's own servers do. */
#define FFI_SMALL_MAX 7

static int fail(char *err, size_t errlen, const char *msg, int32_t idx)
{
    snprintf(err, errlen, "%s (type index %d)", msg, idx);
    return -1;
}

static int get_bytes(rd_t *r, rpc_value_t *v, rpc_kind_t kind)
{
    const uint8_t *p;
    if (rd_u64(r, &v->u.s.len) < 0 || v->u.s.len > r->left ||
        rd_bytes(r, (size_t)v->u.s.len, &p) < 0)
        return -1;
    v->kind = kind;
    v->u.s.p = (const char *)p;
    return 0;
}

/* The object rule: decode by the inner index only. */
static int decode_object(rd_t *r, int32_t outer, rpc_value_t *v, char *err, size_t errlen)
{
    uint32_t inner;
    if (rd_u32(r, &inner) < 0)
        return fail(err, errlen, "truncated object", outer);
    switch (inner) {
    case FFI_RPC_OBJECT_REF:
        v->kind = RV_OBJECT;
        return rd_u64(r, &v->u.h) < 0 ? fail(err, errlen, "truncated object", outer) : 0;
    case FFI_STR:
        return get_bytes(r, v, RV_STR) < 0 ? fail(err, errlen, "truncated string", outer) : 0;
    case FFI_BYTES:
        return get_bytes(r, v, RV_BYTES) < 0 ? fail(err, errlen, "truncated bytes", outer) : 0;
    default:
        snprintf(err, errlen, "object of inner type index %u cannot cross the wire", inner);
        return -1;
    }
}

static int decode_one(rd_t *r, rpc_value_t *v, rpc_tensor_t *t, char *err, size_t errlen)
{
    int32_t idx;
    memset(v, 0, sizeof(*v));
    if (rd_i32(r, &idx) < 0) {
        snprintf(err, errlen, "truncated type index");
        return -1;
    }
    switch (idx) {
    case FFI_NONE:
        v->kind = RV_NONE;
        return 0;
    case FFI_INT:
    case FFI_BOOL:
        v->kind = idx == FFI_INT ? RV_INT : RV_BOOL;
        return rd_i64(r, &v->u.i) < 0 ? fail(err, errlen, "truncated int", idx) : 0;
    case FFI_FLOAT:
        v->kind = RV_FLOAT;
        return rd_f64(r, &v->u.f) < 0 ? fail(err, errlen, "truncated float", idx) : 0;
    case FFI_OPAQUE_PTR:
    case FFI_FUNCTION:
    case FFI_MODULE:
        v->kind = idx == FFI_OPAQUE_PTR ? RV_HANDLE : idx == FFI_FUNCTION ? RV_FUNC : RV_MODULE;
        return rd_u64(r, &v->u.h) < 0 ? fail(err, errlen, "truncated handle", idx) : 0;
    case FFI_DTYPE:
        v->kind = RV_DTYPE;
        if (rd_u8(r, &v->u.dtype.code) < 0 || rd_u8(r, &v->u.dtype.bits) < 0 ||
            rd_u16(r, &v->u.dtype.lanes) < 0 || rd_skip(r, 4) < 0)
            return fail(err, errlen, "truncated dtype", idx);
        return 0;
    case FFI_DEVICE:
        v->kind = RV_DEVICE;
        if (rd_i32(r, &v->u.dev.type) < 0 || rd_i32(r, &v->u.dev.id) < 0)
            return fail(err, errlen, "truncated device", idx);
        if (v->u.dev.type < 1 || v->u.dev.type > 127)
            return fail(err, errlen, "invalid device type", idx);
        return 0;
    case FFI_DLTENSOR_PTR:
        v->kind = RV_TENSOR;
        v->t = t;
        if (rpc_get_tensor(r, t, err, errlen) < 0)
            return -1;
        if (t->dev.type < 1 || t->dev.type > 127)
            return fail(err, errlen, "invalid tensor device type", idx);
        return 0;
    case FFI_RAW_STR:
        return get_bytes(r, v, RV_STR) < 0 ? fail(err, errlen, "truncated string", idx) : 0;
    case FFI_BYTE_ARRAY_PTR:
        return get_bytes(r, v, RV_BYTES) < 0 ? fail(err, errlen, "truncated bytes", idx) : 0;
    case FFI_SMALL_STR:
    case FFI_SMALL_BYTES:
        return decode_object(r, idx, v, err, errlen);
    default:
        if (idx >= FFI_STATIC_OBJECT_BEGIN)
            return decode_object(r, idx, v, err, errlen);
        return fail(err, errlen, "unknown type index", idx);
    }
}

static int ffi_decode(rd_t *r, rpc_value_t *vals, rpc_tensor_t *tensors, int max, int *n, char *err,
                      size_t errlen)
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
    for (int i = 0; i < num; i++)
        if (decode_one(r, &vals[i], &tensors[i], err, errlen) < 0)
            return -1;
    if (r->left) {
        snprintf(err, errlen, "%zu unexpected bytes after the arguments", r->left);
        return -1;
    }
    *n = num;
    return 0;
}

static void put_str(buf_t *out, int32_t index, const rpc_value_t *v)
{
    buf_append_i32le(out, index);
    buf_append_u64le(out, v->u.s.len);
    buf_append(out, v->u.s.p, (size_t)v->u.s.len);
}

/* One argument as a stock ffi client sends it after translation. */
static int put_arg(buf_t *out, const rpc_value_t *v)
{
    switch (v->kind) {
    case RV_NONE:
        return buf_append_i32le(out, FFI_NONE);
    case RV_INT:
    case RV_BOOL:
        buf_append_i32le(out, v->kind == RV_INT ? FFI_INT : FFI_BOOL);
        return buf_append_i64le(out, v->u.i);
    case RV_FLOAT: {
        uint64_t bits;
        memcpy(&bits, &v->u.f, 8);
        buf_append_i32le(out, FFI_FLOAT);
        return buf_append_u64le(out, bits);
    }
    case RV_HANDLE:
    case RV_FUNC:
    case RV_MODULE:
        buf_append_i32le(out, v->kind == RV_HANDLE ? FFI_OPAQUE_PTR
                              : v->kind == RV_FUNC ? FFI_FUNCTION
                                                   : FFI_MODULE);
        return buf_append_u64le(out, v->u.h);
    case RV_OBJECT:
        buf_append_i32le(out, FFI_RPC_OBJECT_REF);
        buf_append_u32le(out, FFI_RPC_OBJECT_REF);
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
        buf_append_i32le(out, FFI_DTYPE);
        return buf_append(out, b, 8);
    }
    case RV_DEVICE:
        buf_append_i32le(out, FFI_DEVICE);
        buf_append_i32le(out, v->u.dev.type);
        return buf_append_i32le(out, v->u.dev.id);
    case RV_TENSOR:
    case RV_NDARRAY:
        buf_append_i32le(out, FFI_DLTENSOR_PTR);
        return rpc_put_tensor(out, v->t);
    case RV_STR:
        put_str(out, FFI_RAW_STR, v);
        return 0;
    case RV_BYTES:
        /* Bytes are not translated by ffi clients: Bytes object, inner 66. */
        buf_append_i32le(out, FFI_BYTES);
        buf_append_u32le(out, FFI_BYTES);
        buf_append_u64le(out, v->u.s.len);
        return buf_append(out, v->u.s.p, (size_t)v->u.s.len);
    }
    return -1;
}

static int ffi_encode_args(buf_t *out, const rpc_value_t *v, int n)
{
    buf_append_i32le(out, n);
    for (int i = 0; i < n; i++)
        if (put_arg(out, &v[i]) < 0)
            return -1;
    return 0;
}

/* A syscall's single reply value: strings follow the object rule. */
static int ffi_encode_value(buf_t *out, const rpc_value_t *v)
{
    buf_append_i32le(out, 1);
    if (v->kind == RV_STR) {
        buf_append_i32le(out, FFI_STR);
        buf_append_u32le(out, FFI_STR);
        buf_append_u64le(out, v->u.s.len);
        return buf_append(out, v->u.s.p, (size_t)v->u.s.len);
    }
    return put_arg(out, v);
}

static int ffi_encode_void(buf_t *out)
{
    buf_append_i32le(out, 1);
    return buf_append_i32le(out, FFI_NONE);
}

static int ffi_encode_call_result(buf_t *out, const rpc_value_t *v)
{
    int32_t type_index;
    rpc_value_t payload = *v;
    int n = 2;
    switch (v->kind) {
    case RV_NONE:
        type_index = FFI_NONE;
        break;
    case RV_INT:
        type_index = FFI_INT;
        break;
    case RV_BOOL:
        type_index = FFI_BOOL;
        break;
    case RV_FLOAT:
        type_index = FFI_FLOAT;
        break;
    case RV_HANDLE:
        type_index = FFI_OPAQUE_PTR;
        break;
    case RV_DTYPE:
        type_index = FFI_DTYPE;
        break;
    case RV_DEVICE:
        type_index = FFI_DEVICE;
        break;
    case RV_STR:
        type_index = v->u.s.len <= FFI_SMALL_MAX ? FFI_SMALL_STR : FFI_STR;
        break;
    case RV_BYTES:
        type_index = v->u.s.len <= FFI_SMALL_MAX ? FFI_SMALL_BYTES : FFI_BYTES;
        break;
    case RV_FUNC:
    case RV_MODULE:
    case RV_OBJECT:
        type_index = v->kind == RV_FUNC     ? FFI_FUNCTION
                     : v->kind == RV_MODULE ? FFI_MODULE
                                            : FFI_OBJECT;
        payload.kind = RV_HANDLE;
        break;
    case RV_TENSOR:
    case RV_NDARRAY:
        /* Index 7 is read as "tensor" by every ffi client (§4.6). */
        type_index = FFI_DLTENSOR_PTR;
        n = 3;
        break;
    default:
        return -1;
    }
    buf_append_i32le(out, n);
    buf_append_i32le(out, FFI_INT);
    buf_append_i64le(out, type_index);
    if (v->kind == RV_STR || v->kind == RV_BYTES) {
        put_str(out, v->kind == RV_STR ? FFI_RAW_STR : FFI_BYTE_ARRAY_PTR, v);
        return 0;
    }
    if (n == 3) {
        buf_append_i32le(out, FFI_DLTENSOR_PTR);
        rpc_put_tensor(out, v->t);
        buf_append_i32le(out, FFI_OPAQUE_PTR);
        return buf_append_u64le(out, v->u.h);
    }
    return v->kind == RV_NONE ? buf_append_i32le(out, FFI_NONE) : put_arg(out, &payload);
}

static int ffi_encode_exception(buf_t *out, const char *msg, size_t len)
{
    rpc_value_t s = {.kind = RV_STR};
    s.u.s.p = msg;
    s.u.s.len = len;
    buf_append_i32le(out, 1);
    put_str(out, FFI_RAW_STR, &s);
    return 0;
}

static int ffi_decode_call_result(rd_t *r, rpc_value_t *out, rpc_tensor_t *t, char *err,
                                  size_t errlen)
{
    rpc_value_t vals[3];
    rpc_tensor_t ts[3];
    int n;
    if (ffi_decode(r, vals, ts, 3, &n, err, errlen) < 0)
        return -1;
    if (n < 2 || vals[0].kind != RV_INT) {
        snprintf(err, errlen, "malformed call result");
        return -1;
    }
    int64_t idx = vals[0].u.i;
    *out = vals[1];
    if (idx == FFI_NONE) {
        out->kind = RV_NONE;
    } else if (idx == FFI_FUNCTION || idx == FFI_MODULE) {
        out->kind = idx == FFI_FUNCTION ? RV_FUNC : RV_MODULE;
    } else if (idx == FFI_DLTENSOR_PTR || idx == 70 || idx == 72) {
        if (n != 3 || vals[1].kind != RV_TENSOR || vals[2].kind != RV_HANDLE) {
            snprintf(err, errlen, "malformed tensor result");
            return -1;
        }
        *t = ts[1];
        out->kind = RV_NDARRAY;
        out->t = t;
        out->u.h = vals[2].u.h;
    } else if (idx >= FFI_STATIC_OBJECT_BEGIN && idx != FFI_STR && idx != FFI_BYTES) {
        out->kind = RV_OBJECT;
    }
    return 0;
}

const rpc_codec_t rpc_codec_ffi = {
    .name = "ffi",
    .decode = ffi_decode,
    .encode_call_result = ffi_encode_call_result,
    .encode_value = ffi_encode_value,
    .encode_void = ffi_encode_void,
    .encode_exception = ffi_encode_exception,
    .encode_args = ffi_encode_args,
    .decode_call_result = ffi_decode_call_result,
};
