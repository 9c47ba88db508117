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

#define TAGNAME "type index"

/* The object rule: decode by the inner index only. */
static int decode_object(rd_t *r, int32_t outer, rpc_value_t *v, char *err, size_t errlen)
{
    uint32_t inner;
    if (rd_u32(r, &inner) < 0)
        return fail(err, errlen, "truncated object", outer);
    switch (inner) {
    case FFI_RPC_OBJECT_REF:
        v->kind = RV_OBJECT;
        break;
    case FFI_STR:
        v->kind = RV_STR;
        break;
    case FFI_BYTES:
        v->kind = RV_BYTES;
        break;
    default:
        snprintf(err, errlen, "object of inner type index %u cannot cross the wire", inner);
        return -1;
    }
    return rpc_get_payload(r, v, NULL, TAGNAME, outer, err, errlen);
}

/* The kind a plain (non-object) type index decodes to; -1 if none. */
static int index_kind(int32_t idx)
{
    switch (idx) {
    case FFI_NONE:
        return RV_NONE;
    case FFI_INT:
        return RV_INT;
    case FFI_BOOL:
        return RV_BOOL;
    case FFI_FLOAT:
        return RV_FLOAT;
    case FFI_OPAQUE_PTR:
        return RV_HANDLE;
    case FFI_FUNCTION:
        return RV_FUNC;
    case FFI_MODULE:
        return RV_MODULE;
    case FFI_DTYPE:
        return RV_DTYPE;
    case FFI_DEVICE:
        return RV_DEVICE;
    case FFI_DLTENSOR_PTR:
        return RV_TENSOR;
    case FFI_RAW_STR:
        return RV_STR;
    case FFI_BYTE_ARRAY_PTR:
        return RV_BYTES;
    default:
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
    int kind = index_kind(idx);
    if (kind >= 0) {
        v->kind = (rpc_kind_t)kind;
        return rpc_get_payload(r, v, t, TAGNAME, idx, err, errlen);
    }
    /* Functions and modules are objects too, but travel as bare handles. */
    if (idx == FFI_SMALL_STR || idx == FFI_SMALL_BYTES || idx >= FFI_STATIC_OBJECT_BEGIN)
        return decode_object(r, idx, v, err, errlen);
    return fail(err, errlen, "unknown type index", idx);
}

static int ffi_decode(rd_t *r, rpc_value_t *vals, rpc_tensor_t *tensors, int max, int *n, char *err,
                      size_t errlen)
{
    int32_t num;
    if (rpc_get_count(r, max, &num, err, errlen) < 0)
        return -1;
    for (int i = 0; i < num; i++)
        if (decode_one(r, &vals[i], &tensors[i], err, errlen) < 0)
            return -1;
    if (rpc_check_end(r, err, errlen) < 0)
        return -1;
    *n = num;
    return 0;
}

/* Type index of a value as a plain argument, as a stock ffi client sends it
 * after translation: strings as raw C strings; bytes are not translated, so
 * they go as a Bytes object. */
static int32_t arg_index(rpc_kind_t kind)
{
    switch (kind) {
    case RV_NONE:
        return FFI_NONE;
    case RV_INT:
        return FFI_INT;
    case RV_BOOL:
        return FFI_BOOL;
    case RV_FLOAT:
        return FFI_FLOAT;
    case RV_HANDLE:
        return FFI_OPAQUE_PTR;
    case RV_FUNC:
        return FFI_FUNCTION;
    case RV_MODULE:
        return FFI_MODULE;
    case RV_DTYPE:
        return FFI_DTYPE;
    case RV_DEVICE:
        return FFI_DEVICE;
    case RV_TENSOR:
    case RV_NDARRAY:
        return FFI_DLTENSOR_PTR;
    case RV_STR:
        return FFI_RAW_STR;
    case RV_BYTES:
        return FFI_BYTES;
    case RV_OBJECT:
        return FFI_RPC_OBJECT_REF;
    }
    return -1;
}

/* Type index, then the payload. */
static int put_tagged(buf_t *out, int32_t index, const rpc_value_t *v)
{
    buf_append_i32le(out, index);
    return rpc_put_payload(out, v);
}

/* An object: its type index twice (outer tag, inner index), then the payload. */
static int put_object(buf_t *out, int32_t index, const rpc_value_t *v)
{
    buf_append_i32le(out, index);
    buf_append_u32le(out, (uint32_t)index);
    return rpc_put_payload(out, v);
}

static int put_arg(buf_t *out, const rpc_value_t *v)
{
    int32_t index = arg_index(v->kind);
    if (index < 0)
        return -1;
    if (index >= FFI_STATIC_OBJECT_BEGIN && v->kind != RV_FUNC && v->kind != RV_MODULE)
        return put_object(out, index, v);
    return put_tagged(out, index, v);
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
    if (v->kind == RV_STR)
        return put_object(out, FFI_STR, v);
    return put_arg(out, v);
}

static int ffi_encode_void(buf_t *out)
{
    buf_append_i32le(out, 1);
    return buf_append_i32le(out, FFI_NONE);
}

/* The type index value 0 of a kCallFunc result reports for v. */
static int32_t result_index(const rpc_value_t *v)
{
    switch (v->kind) {
    case RV_STR:
        return v->u.s.len <= FFI_SMALL_MAX ? FFI_SMALL_STR : FFI_STR;
    case RV_BYTES:
        return v->u.s.len <= FFI_SMALL_MAX ? FFI_SMALL_BYTES : FFI_BYTES;
    case RV_OBJECT:
        return FFI_OBJECT;
    default:
        /* Index 7 is read as "tensor" by every ffi client (§4.6). */
        return arg_index(v->kind);
    }
}

/* Value 1 of a kCallFunc result: strings and bytes as raw pointers, objects
 * of every kind as bare handles. */
static int put_result_payload(buf_t *out, const rpc_value_t *v)
{
    rpc_value_t handle = *v;
    switch (v->kind) {
    case RV_STR:
        return put_tagged(out, FFI_RAW_STR, v);
    case RV_BYTES:
        return put_tagged(out, FFI_BYTE_ARRAY_PTR, v);
    case RV_FUNC:
    case RV_MODULE:
    case RV_OBJECT:
        handle.kind = RV_HANDLE;
        return put_arg(out, &handle);
    default:
        return put_arg(out, v);
    }
}

static int ffi_encode_call_result(buf_t *out, const rpc_value_t *v)
{
    int32_t type_index = result_index(v);
    if (type_index < 0)
        return -1;
    int tensor = v->kind == RV_TENSOR || v->kind == RV_NDARRAY;
    buf_append_i32le(out, tensor ? 3 : 2);
    buf_append_i32le(out, FFI_INT);
    buf_append_i64le(out, type_index);
    if (put_result_payload(out, v) < 0)
        return -1;
    if (!tensor)
        return 0;
    /* Value 2: the handle of the tensor object. */
    buf_append_i32le(out, FFI_OPAQUE_PTR);
    return buf_append_u64le(out, v->u.h);
}

static int ffi_encode_exception(buf_t *out, const char *msg, size_t len)
{
    rpc_value_t s = {.kind = RV_STR};
    s.u.s.p = msg;
    s.u.s.len = len;
    buf_append_i32le(out, 1);
    return put_tagged(out, FFI_RAW_STR, &s);
}

static int ffi_decode_call_result(rd_t *r, rpc_value_t *out, rpc_tensor_t *t, char *err,
                                  size_t errlen)
{
    rpc_value_t vals[3];
    rpc_tensor_t ts[3];
    int n;
    if (ffi_decode(r, vals, ts, 3, &n, err, errlen) < 0)
        return -1;
    if (rpc_check_call_result(vals, n, err, errlen) < 0)
        return -1;
    int64_t idx = vals[0].u.i;
    *out = vals[1];
    if (idx == FFI_NONE) {
        out->kind = RV_NONE;
    } else if (idx == FFI_FUNCTION || idx == FFI_MODULE) {
        out->kind = idx == FFI_FUNCTION ? RV_FUNC : RV_MODULE;
    } else if (idx == FFI_DLTENSOR_PTR || idx == 70 || idx == 72) {
        if (rpc_take_array_result(vals, ts, n, out, t, "tensor", err, errlen) < 0)
            return -1;
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
