/* buf: growable byte buffers and bounds-checked readers.
 *
 * Every length that arrives from the network goes through one of these, so
 * the bounds checks live in one place: a buf refuses to grow past its cap,
 * and a rd (reader) refuses to read past what it was given. */
#ifndef TVMRPC_BUF_H
#define TVMRPC_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    uint8_t *data;
    size_t len; /* bytes stored, from data[off] */
    size_t off; /* bytes already consumed at the front */
    size_t cap; /* bytes allocated */
    size_t max; /* hard cap on len (0 = unlimited) */
} buf_t;

void buf_init(buf_t *b, size_t max);
void buf_free(buf_t *b);
void buf_reset(buf_t *b);
/* Make room for `extra` more bytes. -1 if that would pass b->max or OOM. */
int buf_reserve(buf_t *b, size_t extra);
int buf_append(buf_t *b, const void *p, size_t n);
int buf_append_str(buf_t *b, const char *s);
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_append_u8(buf_t *b, uint8_t v);
int buf_append_i32le(buf_t *b, int32_t v);
int buf_append_u32le(buf_t *b, uint32_t v);
int buf_append_i64le(buf_t *b, int64_t v);
int buf_append_u64le(buf_t *b, uint64_t v);
/* Pointer to the first unconsumed byte. */
static inline uint8_t *buf_head(const buf_t *b)
{
    return b->data + b->off;
}
/* Drop n bytes from the front (n <= len). */
void buf_consume(buf_t *b, size_t n);
/* Writable tail of at least `want` bytes (after buf_reserve); commit with buf_commit. */
uint8_t *buf_tail(buf_t *b, size_t want);
void buf_commit(buf_t *b, size_t n);
/* Detach the contents as a NUL-terminated heap string; the buf is left empty. */
char *buf_steal_cstr(buf_t *b);

/* Little-endian loads and stores, independent of host byte order. */
static inline uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}
static inline void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

/* rd: a cursor over untrusted bytes. Every getter returns 0 on success and -1
 * (without moving) when fewer bytes remain than it needs. */
typedef struct rd {
    const uint8_t *p;
    size_t left;
} rd_t;

static inline rd_t rd_make(const void *p, size_t n)
{
    rd_t r = {(const uint8_t *)p, n};
    return r;
}
int rd_u8(rd_t *r, uint8_t *v);
int rd_u16(rd_t *r, uint16_t *v);
int rd_i32(rd_t *r, int32_t *v);
int rd_u32(rd_t *r, uint32_t *v);
int rd_i64(rd_t *r, int64_t *v);
int rd_u64(rd_t *r, uint64_t *v);
int rd_f64(rd_t *r, double *v);
/* Borrow n bytes (no copy). */
int rd_bytes(rd_t *r, size_t n, const uint8_t **out);
int rd_skip(rd_t *r, size_t n);

#endif
