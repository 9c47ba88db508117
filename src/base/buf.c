#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(buf_t *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

void buf_free(buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->off = b->cap = 0;
}

void buf_reset(buf_t *b)
{
    b->len = b->off = 0;
}

/* Move unconsumed bytes to the front so the allocation can be reused. */
static void buf_compact(buf_t *b)
{
    if (b->off == 0)
        return;
    if (b->len)
        memmove(b->data, b->data + b->off, b->len);
    b->off = 0;
}

int buf_reserve(buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len)
        return -1;
    size_t need = b->len + extra;
    if (b->max && need > b->max)
        return -1;
    if (b->off + need <= b->cap)
        return 0;
    buf_compact(b);
    if (need <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    uint8_t *nd = realloc(b->data, ncap);
    if (!nd)
        return -1;
    b->data = nd;
    b->cap = ncap;
    return 0;
}

int buf_append(buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->off + b->len, p, n);
    b->len += n;
    return 0;
}

int buf_append_str(buf_t *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_reserve(b, (size_t)n + 1) < 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->off + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int buf_append_u8(buf_t *b, uint8_t v)
{
    return buf_append(b, &v, 1);
}

int buf_append_u32le(buf_t *b, uint32_t v)
{
    uint8_t t[4];
    put_le32(t, v);
    return buf_append(b, t, 4);
}

int buf_append_i32le(buf_t *b, int32_t v)
{
    return buf_append_u32le(b, (uint32_t)v);
}

int buf_append_u64le(buf_t *b, uint64_t v)
{
    uint8_t t[8];
    put_le64(t, v);
    return buf_append(b, t, 8);
}

int buf_append_i64le(buf_t *b, int64_t v)
{
    return buf_append_u64le(b, (uint64_t)v);
}

void buf_consume(buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = b->off = 0;
        return;
    }
    b->off += n;
    b->len -= n;
}

uint8_t *buf_tail(buf_t *b, size_t want)
{
    if (buf_reserve(b, want) < 0)
        return NULL;
    return b->data + b->off + b->len;
}

void buf_commit(buf_t *b, size_t n)
{
    b->len += n;
}

char *buf_steal_cstr(buf_t *b)
{
    if (buf_reserve(b, 1) < 0)
        return NULL;
    buf_compact(b);
    b->data[b->len] = '\0';
    char *s = (char *)b->data;
    b->data = NULL;
    b->len = b->off = b->cap = 0;
    return s;
}

int rd_bytes(rd_t *r, size_t n, const uint8_t **out)
{
    if (r->left < n)
        return -1;
    *out = r->p;
    r->p += n;
    r->left -= n;
    return 0;
}

int rd_skip(rd_t *r, size_t n)
{
    const uint8_t *unused;
    return rd_bytes(r, n, &unused);
}

int rd_u8(rd_t *r, uint8_t *v)
{
    const uint8_t *p;
    if (rd_bytes(r, 1, &p) < 0)
        return -1;
    *v = p[0];
    return 0;
}

int rd_u16(rd_t *r, uint16_t *v)
{
    const uint8_t *p;
    if (rd_bytes(r, 2, &p) < 0)
        return -1;
    *v = (uint16_t)(p[0] | p[1] << 8);
    return 0;
}

int rd_u32(rd_t *r, uint32_t *v)
{
    const uint8_t *p;
    if (rd_bytes(r, 4, &p) < 0)
        return -1;
    *v = le32(p);
    return 0;
}

int rd_i32(rd_t *r, int32_t *v)
{
    uint32_t u;
    if (rd_u32(r, &u) < 0)
        return -1;
    *v = (int32_t)u;
    return 0;
}

int rd_u64(rd_t *r, uint64_t *v)
{
    const uint8_t *p;
    if (rd_bytes(r, 8, &p) < 0)
        return -1;
    *v = le64(p);
    return 0;
}

int rd_i64(rd_t *r, int64_t *v)
{
    uint64_t u;
    if (rd_u64(r, &u) < 0)
        return -1;
    *v = (int64_t)u;
    return 0;
}

int rd_f64(rd_t *r, double *v)
{
    uint64_t u;
    if (rd_u64(r, &u) < 0)
        return -1;
    memcpy(v, &u, sizeof(*v));
    return 0;
}
