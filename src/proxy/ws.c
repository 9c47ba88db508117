/* WebSocket server side (RFC 6455). The decoder streams payloads instead of
 * collecting whole messages: the proxy forwards bytes, so a 100 MiB message
 * costs no memory here, and the frame cap only bounds what a peer may
 * announce. Control frames (at most 125 bytes) are collected whole. */
#include "proxy/ws.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/b64.h"
#include "proxy/sha1.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static void ws_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void ws_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- HTTP upgrade ----------------------------------------------------------- */

static const char *find_blank_line(const char *p, size_t n)
{
    for (size_t i = 0; i + 3 < n; i++) {
        if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n')
            return p + i;
    }
    return NULL;
}

/* Is tok one of the comma-separated tokens of the header value v[0..n)? */
static int has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok), i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
            return 1;
    }
    return 0;
}

static void copy_field(char *dst, size_t dstlen, const char *v, size_t n)
{
    if (n >= dstlen)
        n = dstlen - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

/* "GET /ws?x HTTP/1.1" */
static int parse_request_line(const char *p, size_t n, ws_req_t *req, char *err, size_t errlen)
{
    const char *sp1 = memchr(p, ' ', n);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(p + n - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || sp1 == p || sp2 == sp1 + 1) {
        ws_err(err, errlen, "malformed HTTP request line");
        return -1;
    }
    const char *target = sp1 + 1, *version = sp2 + 1;
    size_t vlen = (size_t)(p + n - version);
    if (vlen != 8 || strncmp(version, "HTTP/1.", 7) != 0 || version[7] < '0' || version[7] > '9') {
        ws_err(err, errlen, "not an HTTP/1.x request");
        return -1;
    }
    if ((size_t)(sp1 - p) >= sizeof(req->method) || *target != '/') {
        ws_err(err, errlen, "malformed HTTP request line");
        return -1;
    }
    copy_field(req->method, sizeof(req->method), p, (size_t)(sp1 - p));
    size_t plen = (size_t)(sp2 - target);
    const char *q = memchr(target, '?', plen);
    if (q)
        plen = (size_t)(q - target);
    if (plen >= sizeof(req->path)) {
        ws_err(err, errlen, "request path too long");
        return -1;
    }
    copy_field(req->path, sizeof(req->path), target, plen);
    req->http11 = version[7] >= '1';
    return 0;
}

static void parse_header(const char *p, size_t n, ws_req_t *req)
{
    const char *colon = memchr(p, ':', n);
    if (!colon)
        return;
    size_t nl = (size_t)(colon - p);
    const char *v = colon + 1;
    size_t vl = (size_t)(p + n - v);
    while (vl && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    if (nl == 7 && strncasecmp(p, "Upgrade", nl) == 0)
        req->upgrade_websocket |= has_token(v, vl, "websocket");
    else if (nl == 10 && strncasecmp(p, "Connection", nl) == 0)
        req->connection_upgrade |= has_token(v, vl, "upgrade");
    else if (nl == 17 && strncasecmp(p, "Sec-WebSocket-Key", nl) == 0)
        copy_field(req->key, sizeof(req->key), v, vl);
    else if (nl == 21 && strncasecmp(p, "Sec-WebSocket-Version", nl) == 0) {
        char num[16];
        copy_field(num, sizeof(num), v, vl);
        char *end;
        long ver = strtol(num, &end, 10);
        req->version = *num && *end == '\0' && ver >= 0 && ver < 256 ? (int)ver : 0;
    }
}

ws_status_t ws_http_parse(const char *p, size_t n, ws_req_t *req, char *err, size_t errlen)
{
    memset(req, 0, sizeof(*req));
    req->version = -1;
    const char *end = find_blank_line(p, n < WS_MAX_REQUEST ? n : WS_MAX_REQUEST);
    if (!end) {
        if (n >= WS_MAX_REQUEST) {
            ws_err(err, errlen, "HTTP request head larger than %d bytes", WS_MAX_REQUEST);
            return WS_ERROR;
        }
        return WS_INCOMPLETE;
    }
    const char *line = p, *stop = end + 2; /* include the last header's CRLF */
    int first = 1;
    while (line < stop) {
        const char *eol = memchr(line, '\r', (size_t)(stop - line));
        if (!eol || eol[1] != '\n') {
            ws_err(err, errlen, "malformed HTTP header line");
            return WS_ERROR;
        }
        size_t len = (size_t)(eol - line);
        if (first) {
            if (parse_request_line(line, len, req, err, errlen) < 0)
                return WS_ERROR;
            first = 0;
        } else {
            parse_header(line, len, req);
        }
        line = eol + 2;
    }
    req->consumed = (size_t)(end - p) + 4;
    return WS_OK;
}

/* A Sec-WebSocket-Key must be the base64 form of 16 bytes (RFC 6455 §4.1). */
static int key_valid(const char *key)
{
    uint8_t raw[18];
    return strlen(key) == 24 && b64_decode(key, 24, raw) == 16;
}

int ws_http_decide(const ws_req_t *req, const char *endpoint)
{
    if (strcmp(req->path, endpoint) != 0)
        return 404;
    if (strcmp(req->method, "GET") != 0)
        return 405;
    if (!req->http11 || !req->upgrade_websocket || !req->connection_upgrade || !key_valid(req->key))
        return 400;
    if (req->version != 13)
        return 426;
    return 101;
}

void ws_accept_key(const char *key, char out[WS_ACCEPT_LEN + 1])
{
    sha1_t s;
    uint8_t digest[SHA1_LEN];
    sha1_init(&s);
    sha1_update(&s, key, strlen(key));
    sha1_update(&s, WS_GUID, strlen(WS_GUID));
    sha1_final(&s, digest);
    b64_encode(digest, sizeof(digest), out);
}

static const char *reason(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 426:
        return "Upgrade Required";
    default:
        return "Error";
    }
}

int ws_http_response(buf_t *out, int status, const ws_req_t *req)
{
    if (status == 101) {
        char accept[WS_ACCEPT_LEN + 1];
        ws_accept_key(req->key, accept);
        return buf_printf(out,
                          "HTTP/1.1 101 Switching Protocols\r\n"
                          "Upgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebSocket-Accept: %s\r\n\r\n",
                          accept);
    }
    char body[128];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, reason(status));
    return buf_printf(out,
                      "HTTP/1.1 %d %s\r\n"
                      "Content-Type: text/plain\r\n"
                      "Content-Length: %d\r\n"
                      "%s"
                      "Connection: close\r\n\r\n%s",
                      status, reason(status), n,
                      status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "", body);
}

/* ---- frames ----------------------------------------------------------------- */

static size_t put_header(uint8_t *h, int fin, int opcode, int masked, uint64_t len)
{
    size_t n = 2;
    h[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    uint8_t m = masked ? 0x80 : 0;
    if (len < 126) {
        h[1] = m | (uint8_t)len;
    } else if (len <= 0xFFFF) {
        h[1] = m | 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        n = 4;
    } else {
        h[1] = m | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    return n;
}

size_t ws_frame_header(uint8_t out[WS_MAX_HEADER], int opcode, uint64_t len)
{
    return put_header(out, 1, opcode, 0, len);
}

int ws_frame_append(buf_t *out, int fin, int opcode, const uint8_t *mask, const void *p, size_t n)
{
    uint8_t h[WS_MAX_HEADER];
    size_t hl = put_header(h, fin, opcode, mask != NULL, n);
    if (mask) {
        memcpy(h + hl, mask, 4);
        hl += 4;
    }
    if (buf_reserve(out, hl + n) < 0)
        return -1;
    buf_append(out, h, hl);
    uint8_t *dst = buf_tail(out, n);
    if (n)
        memcpy(dst, p, n);
    if (mask) {
        for (size_t i = 0; i < n; i++)
            dst[i] ^= mask[i & 3];
    }
    buf_commit(out, n);
    return 0;
}

int ws_close_append(buf_t *out, int code, const uint8_t *mask)
{
    uint8_t body[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    return ws_frame_append(out, 1, WS_OP_CLOSE, mask, body, 2);
}

/* ---- decoder ---------------------------------------------------------------- */

void ws_dec_init(ws_dec_t *d, int require_mask, uint64_t max_frame)
{
    memset(d, 0, sizeof(*d));
    d->require_mask = require_mask;
    d->max_frame = max_frame;
}

int ws_dec_idle(const ws_dec_t *d)
{
    return d->hdr_have == 0 && !d->in_payload && !d->in_msg;
}

static int dec_fail(ws_dec_t *d, int code, char *err, size_t errlen, const char *why)
{
    d->close_code = code;
    ws_err(err, errlen, "%s", why);
    return WS_ERROR;
}

/* Bytes the header needs, given what is there (at least 2). */
static size_t header_len(const uint8_t *h)
{
    size_t n = 2;
    uint8_t l7 = h[1] & 0x7F;
    if (l7 == 126)
        n += 2;
    else if (l7 == 127)
        n += 8;
    return n + ((h[1] & 0x80) ? 4 : 0);
}

/* Validate a complete header and set up the payload state. */
static int dec_start_frame(ws_dec_t *d, char *err, size_t errlen)
{
    const uint8_t *h = d->hdr;
    int fin = h[0] >> 7, opcode = h[0] & 0x0F, masked = h[1] >> 7;
    uint64_t len = h[1] & 0x7F;
    size_t at = 2;
    if (len == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
        at = 4;
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | h[2 + i];
        at = 10;
        if (len >> 63)
            return dec_fail(d, WS_CLOSE_PROTOCOL, err, errlen, "frame length has its top bit set");
    }
    if (h[0] & 0x70)
        return dec_fail(d, WS_CLOSE_PROTOCOL, err, errlen,
                        "reserved bits set (no extension was negotiated)");
    if (d->require_mask && !masked)
        return dec_fail(d, WS_CLOSE_PROTOCOL, err, errlen, "client frame is not masked");
    if (opcode >= 0x8) {
        if (opcode > WS_OP_PONG)
            return dec_fail(d, WS_CLOSE_PROTOCOL, err, errlen, "unknown control opcode");
        if (!fin || len > WS_MAX_CONTROL)
            return dec_fail(d, WS_CLOSE_PROTOCOL, err, errlen,
                            "fragmented or oversized control frame");
    } else if (opcode == WS_OP_CONT) {
        if (!d->in_msg)
            return dec_fail(d, WS_CLOSE_PROTOCOL, err, errlen,
                            "continuation frame outside a message");
    } else if (opcode == WS_OP_TEXT) {
        return dec_fail(d, WS_CLOSE_UNSUPPORTED, err, errlen,
                        "text frames are not supported (binary only)");
    } else if (opcode == WS_OP_BINARY) {
        if (d->in_msg)
            return dec_fail(d, WS_CLOSE_PROTOCOL, err, errlen,
                            "new message inside a fragmented message");
    } else {
        return dec_fail(d, WS_CLOSE_PROTOCOL, err, errlen, "unknown data opcode");
    }
    if (len > d->max_frame) {
        char why[96];
        snprintf(why, sizeof(why), "frame of %llu bytes exceeds the %llu-byte cap",
                 (unsigned long long)len, (unsigned long long)d->max_frame);
        return dec_fail(d, WS_CLOSE_TOO_BIG, err, errlen, why);
    }
    d->fin = fin;
    d->opcode = opcode;
    d->masked = masked;
    if (masked)
        memcpy(d->mask, h + at, 4);
    d->left = len;
    d->off = 0;
    d->ctl_len = 0;
    d->in_payload = 1;
    if (opcode < 0x8)
        d->in_msg = !fin;
    return 0;
}

/* A frame's payload is complete. */
static int dec_end_frame(ws_dec_t *d, const ws_sink_t *sink, void *ctx)
{
    d->in_payload = 0;
    d->hdr_have = 0;
    if (d->opcode >= 0x8 && sink->control)
        return sink->control(ctx, d->opcode, d->ctl, d->ctl_len);
    return 0;
}

int ws_dec_feed(ws_dec_t *d, uint8_t *p, size_t n, const ws_sink_t *sink, void *ctx, char *err,
                size_t errlen)
{
    while (n) {
        if (!d->in_payload) {
            size_t need = d->hdr_have < 2 ? 2 : header_len(d->hdr);
            size_t take = need - d->hdr_have < n ? need - d->hdr_have : n;
            memcpy(d->hdr + d->hdr_have, p, take);
            d->hdr_have += take;
            p += take;
            n -= take;
            if (d->hdr_have == 2 && header_len(d->hdr) > 2)
                continue; /* now we know the full header size */
            if (d->hdr_have < need)
                continue;
            if (dec_start_frame(d, err, errlen) < 0)
                return WS_ERROR;
            if (d->left == 0) {
                int rc = dec_end_frame(d, sink, ctx);
                if (rc)
                    return rc;
            }
            continue;
        }
        size_t take = d->left < n ? (size_t)d->left : n;
        if (d->masked) {
            for (size_t i = 0; i < take; i++)
                p[i] ^= d->mask[(d->off + i) & 3];
        }
        d->off += take;
        d->left -= take;
        int rc = 0;
        if (d->opcode >= 0x8) {
            memcpy(d->ctl + d->ctl_len, p, take);
            d->ctl_len += take;
        } else if (take && sink->data) {
            rc = sink->data(ctx, p, take);
        }
        p += take;
        n -= take;
        if (rc)
            return rc;
        if (d->left == 0) {
            rc = dec_end_frame(d, sink, ctx);
            if (rc)
                return rc;
        }
    }
    return 0;
}
