/* ws: the server side of WebSocket (RFC 6455), as much as the proxy's /ws
 * endpoint needs: the HTTP/1.1 upgrade request, Sec-WebSocket-Accept, a
 * streaming frame decoder (masking, fragmentation, control frames, length
 * caps) and frame encoding. No extensions, no subprotocols, binary data
 * only (TVM's peers never send text frames).
 *
 * Everything here is pure: bytes in, bytes or callbacks out, no sockets, so
 * each parser is unit-tested by feeding it every prefix / every split. */
#ifndef TVMRPC_PROXY_WS_H
#define TVMRPC_PROXY_WS_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define WS_OP_CONT 0x0
#define WS_OP_TEXT 0x1
#define WS_OP_BINARY 0x2
#define WS_OP_CLOSE 0x8
#define WS_OP_PING 0x9
#define WS_OP_PONG 0xA

/* Close status codes (RFC 6455 §7.4.1). */
#define WS_CLOSE_NORMAL 1000
#define WS_CLOSE_GOING_AWAY 1001
#define WS_CLOSE_PROTOCOL 1002
#define WS_CLOSE_UNSUPPORTED 1003
#define WS_CLOSE_TOO_BIG 1009

#define WS_MAX_HEADER 14    /* 2 + 8 (length) + 4 (mask) */
#define WS_MAX_CONTROL 125  /* control payloads are at most this long */
#define WS_MAX_REQUEST 8192 /* bytes of HTTP upgrade request we accept */
#define WS_ACCEPT_LEN 28    /* base64 of a SHA-1 */

typedef enum ws_status {
    WS_OK = 0,
    WS_INCOMPLETE = -2, /* need more bytes */
    WS_ERROR = -1,      /* invalid; err says why */
} ws_status_t;

/* ---- HTTP upgrade -------------------------------------------------------- */

typedef struct ws_req {
    char method[16];
    char path[256]; /* without the query string */
    int http11;     /* HTTP/1.1 or later */
    int upgrade_websocket;
    int connection_upgrade;
    char key[64];    /* Sec-WebSocket-Key, "" if absent */
    int version;     /* Sec-WebSocket-Version, -1 if absent */
    size_t consumed; /* bytes of the request including the blank line */
} ws_req_t;

/* Parse an HTTP request head from p[0..n). WS_INCOMPLETE until the blank
 * line arrives (and n < WS_MAX_REQUEST); WS_ERROR on a malformed or
 * oversized head. Only the fields above are kept. */
ws_status_t ws_http_parse(const char *p, size_t n, ws_req_t *req, char *err, size_t errlen);
/* What to answer: 101 (upgrade), 400 (bad upgrade request), 404 (path is
 * not the endpoint), 405 (not GET), 426 (unsupported version). */
int ws_http_decide(const ws_req_t *req, const char *endpoint);
/* Append the complete HTTP response for status (with the accept key for
 * 101, a short text body otherwise). -1 on OOM. */
int ws_http_response(buf_t *out, int status, const ws_req_t *req);
/* Sec-WebSocket-Accept for a client key: base64(SHA1(key + GUID)). */
void ws_accept_key(const char *key, char out[WS_ACCEPT_LEN + 1]);

/* ---- frames -------------------------------------------------------------- */

/* Append one frame. mask NULL = unmasked (server to client); a client must
 * pass a 4-byte mask. The payload is copied (and masked). -1 on OOM / cap. */
int ws_frame_append(buf_t *out, int fin, int opcode, const uint8_t *mask, const void *p, size_t n);
/* Just the header of an unmasked FIN frame; returns its length. */
size_t ws_frame_header(uint8_t out[WS_MAX_HEADER], int opcode, uint64_t len);
/* A close frame with a status code (no reason text). */
int ws_close_append(buf_t *out, int code, const uint8_t *mask);

/* Callbacks of the decoder. Returning non-zero stops ws_dec_feed, which
 * returns that value. */
typedef struct ws_sink {
    /* Payload bytes of binary messages, unmasked, as they arrive (a message
     * may come in many calls; boundaries carry no meaning for the proxy). */
    int (*data)(void *ctx, const uint8_t *p, size_t n);
    /* A complete control frame (PING, PONG, CLOSE) with its payload. */
    int (*control)(void *ctx, int opcode, const uint8_t *p, size_t n);
} ws_sink_t;

typedef struct ws_dec {
    int require_mask; /* server side: client frames must be masked */
    uint64_t max_frame;
    uint8_t hdr[WS_MAX_HEADER];
    size_t hdr_have;
    int in_payload;
    int fin, opcode, masked;
    uint8_t mask[4];
    uint64_t left, off; /* payload bytes still to come; offset for the mask */
    int in_msg;         /* a fragmented data message is open */
    uint8_t ctl[WS_MAX_CONTROL];
    size_t ctl_len;
    int close_code; /* after WS_ERROR: the status to close with */
} ws_dec_t;

void ws_dec_init(ws_dec_t *d, int require_mask, uint64_t max_frame);
/* Decode n bytes (unmasked in place, so p must be writable). Returns 0 when
 * all bytes were consumed, WS_ERROR on a protocol violation (err, and
 * d->close_code), or a sink's non-zero return value. */
int ws_dec_feed(ws_dec_t *d, uint8_t *p, size_t n, const ws_sink_t *sink, void *ctx, char *err,
                size_t errlen);
/* 1 if the decoder is between frames and outside a fragmented message. */
int ws_dec_idle(const ws_dec_t *d);

#endif
