/* Wire structures common to both generations (PROTOCOL.md §4.1, §4.3). */
#include "rpc/rpc.h"

#include <stdio.h>
#include <string.h>

int64_t rpc_tensor_nbytes(const rpc_tensor_t *t)
{
    int64_t elem = ((int64_t)t->dtype.bits * t->dtype.lanes + 7) / 8;
    int64_t n = elem;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0 || (t->shape[i] && n > INT64_MAX / t->shape[i]))
            return -1;
        n *= t->shape[i];
    }
    return n;
}

size_t rpc_packet_begin(buf_t *out, int32_t code)
{
    size_t start = out->len;
    buf_append_u64le(out, 0);
    buf_append_i32le(out, code);
    return start;
}

void rpc_packet_end(buf_t *out, size_t start)
{
    if (out->len < start + 8)
        return;
    put_le64(buf_head(out) + start, (uint64_t)(out->len - start - 8));
}

int rpc_put_tensor(buf_t *out, const rpc_tensor_t *t)
{
    buf_append_u64le(out, t->data);
    buf_append_i32le(out, t->dev.type);
    buf_append_i32le(out, t->dev.id);
    buf_append_i32le(out, t->ndim);
    buf_append_u8(out, t->dtype.code);
    buf_append_u8(out, t->dtype.bits);
    uint8_t lanes[2] = {(uint8_t)t->dtype.lanes, (uint8_t)(t->dtype.lanes >> 8)};
    buf_append(out, lanes, 2);
    for (int i = 0; i < t->ndim; i++)
        buf_append_i64le(out, t->shape[i]);
    return buf_append_u64le(out, t->byte_offset);
}

int rpc_get_tensor(rd_t *r, rpc_tensor_t *t, char *err, size_t errlen)
{
    uint32_t type, id;
    memset(t, 0, sizeof(*t));
    if (rd_u64(r, &t->data) < 0 || rd_u32(r, &type) < 0 || rd_u32(r, &id) < 0 ||
        rd_i32(r, &t->ndim) < 0 || rd_u8(r, &t->dtype.code) < 0 || rd_u8(r, &t->dtype.bits) < 0 ||
        rd_u16(r, &t->dtype.lanes) < 0) {
        snprintf(err, errlen, "truncated DLTensor");
        return -1;
    }
    t->dev.type = (int32_t)type;
    t->dev.id = (int32_t)id;
    if (t->ndim < 0 || t->ndim > RPC_MAX_NDIM) {
        snprintf(err, errlen, "DLTensor ndim %d outside [0, %d]", t->ndim, RPC_MAX_NDIM);
        return -1;
    }
    for (int i = 0; i < t->ndim; i++) {
        if (rd_i64(r, &t->shape[i]) < 0 || t->shape[i] < 0) {
            snprintf(err, errlen, "truncated or negative DLTensor shape");
            return -1;
        }
    }
    if (rd_u64(r, &t->byte_offset) < 0) {
        snprintf(err, errlen, "truncated DLTensor");
        return -1;
    }
    return 0;
}

int rpc_put_payload(buf_t *out, const rpc_value_t *v)
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
    case RV_OBJECT:
        return buf_append_u64le(out, v->u.h);
    case RV_DTYPE: {
        /* code, bits, lanes, then 4 bytes of padding to the 8-byte slot */
        uint8_t b[8] = {v->u.dtype.code, v->u.dtype.bits, (uint8_t)v->u.dtype.lanes,
                        (uint8_t)(v->u.dtype.lanes >> 8)};
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

static int payload_fail(char *err, size_t errlen, const char *msg, const char *tagname, int32_t tag)
{
    snprintf(err, errlen, "%s (%s %d)", msg, tagname, tag);
    return -1;
}

/* Device types on the wire are DLPack numbers, never masked (< 128). */
static int device_type_ok(int32_t type)
{
    return type >= 1 && type <= 127;
}

/* The one message per kind a short payload is reported with. */
static const char *payload_truncated(rpc_kind_t kind)
{
    switch (kind) {
    case RV_INT:
        return "truncated int";
    case RV_BOOL:
        return "truncated bool";
    case RV_FLOAT:
        return "truncated float";
    case RV_DTYPE:
        return "truncated dtype";
    case RV_DEVICE:
        return "truncated device";
    case RV_OBJECT:
        return "truncated object";
    case RV_STR:
        return "truncated string";
    case RV_BYTES:
        return "truncated bytes";
    default:
        return "truncated handle";
    }
}

static int get_payload_raw(rd_t *r, rpc_value_t *v)
{
    const uint8_t *p;
    switch (v->kind) {
    case RV_NONE:
        return 0;
    case RV_INT:
    case RV_BOOL:
        return rd_i64(r, &v->u.i);
    case RV_FLOAT:
        return rd_f64(r, &v->u.f);
    case RV_DTYPE:
        if (rd_u8(r, &v->u.dtype.code) < 0 || rd_u8(r, &v->u.dtype.bits) < 0 ||
            rd_u16(r, &v->u.dtype.lanes) < 0)
            return -1;
        return rd_skip(r, 4);
    case RV_DEVICE:
        if (rd_i32(r, &v->u.dev.type) < 0)
            return -1;
        return rd_i32(r, &v->u.dev.id);
    case RV_STR:
    case RV_BYTES:
        if (rd_u64(r, &v->u.s.len) < 0 || v->u.s.len > r->left ||
            rd_bytes(r, (size_t)v->u.s.len, &p) < 0)
            return -1;
        v->u.s.p = (const char *)p;
        return 0;
    default: /* HANDLE, FUNC, MODULE, OBJECT */
        return rd_u64(r, &v->u.h);
    }
}

int rpc_get_payload(rd_t *r, rpc_value_t *v, rpc_tensor_t *t, const char *tagname, int32_t tag,
                    char *err, size_t errlen)
{
    if (v->kind == RV_TENSOR || v->kind == RV_NDARRAY) {
        v->t = t;
        if (rpc_get_tensor(r, t, err, errlen) < 0)
            return -1;
        if (!device_type_ok(t->dev.type))
            return payload_fail(err, errlen, "invalid tensor device type", tagname, tag);
        return 0;
    }
    if (get_payload_raw(r, v) < 0)
        return payload_fail(err, errlen, payload_truncated(v->kind), tagname, tag);
    if (v->kind == RV_DEVICE && !device_type_ok(v->u.dev.type))
        return payload_fail(err, errlen, "invalid device type", tagname, tag);
    return 0;
}

int rpc_get_count(rd_t *r, int max, int32_t *num, char *err, size_t errlen)
{
    if (rd_i32(r, num) < 0) {
        snprintf(err, errlen, "truncated argument count");
        return -1;
    }
    /* Every value takes at least its 4-byte tag: a count the bytes cannot
     * hold is refused before anything is sized by it. */
    if (*num < 0 || *num > max || (size_t)*num * 4 > r->left) {
        snprintf(err, errlen, "argument count %d outside [0, %d]", *num, max);
        return -1;
    }
    return 0;
}

int rpc_check_end(const rd_t *r, char *err, size_t errlen)
{
    if (r->left) {
        snprintf(err, errlen, "%zu unexpected bytes after the arguments", r->left);
        return -1;
    }
    return 0;
}

int rpc_check_call_result(const rpc_value_t *vals, int n, char *err, size_t errlen)
{
    if (n < 2 || vals[0].kind != RV_INT) {
        snprintf(err, errlen, "malformed call result");
        return -1;
    }
    return 0;
}

int rpc_take_array_result(const rpc_value_t *vals, const rpc_tensor_t *ts, int n, rpc_value_t *out,
                          rpc_tensor_t *t, const char *what, char *err, size_t errlen)
{
    if (n != 3 || vals[1].kind != RV_TENSOR || vals[2].kind != RV_HANDLE) {
        snprintf(err, errlen, "malformed %s result", what);
        return -1;
    }
    *t = ts[1];
    *out = vals[1];
    out->kind = RV_NDARRAY;
    out->t = t;
    out->u.h = vals[2].u.h;
    return 0;
}

rpc_hs_t rpc_hs_parse(const uint8_t *p, size_t n, const uint8_t **key, size_t *keylen)
{
    if (n < 4)
        return RPC_HS_INCOMPLETE;
    if (le32(p) != RPC_MAGIC)
        return RPC_HS_BAD_MAGIC;
    if (n < 8)
        return RPC_HS_INCOMPLETE;
    int32_t len = (int32_t)le32(p + 4);
    if (len < 0 || len > RPC_MAX_KEY_LEN)
        return RPC_HS_BAD_LENGTH;
    if (n < 8 + (size_t)len)
        return RPC_HS_INCOMPLETE;
    if (n > 8 + (size_t)len)
        return RPC_HS_EXTRA;
    *key = p + 8;
    *keylen = (size_t)len;
    return RPC_HS_OK;
}
