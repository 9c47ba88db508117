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
