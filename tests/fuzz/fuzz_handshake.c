/* libFuzzer harness for the handshake parsers a peer reaches before any
 * session exists (PROTOCOL.md §2, §3): byte 0 picks the parser, the rest
 * is what the peer sent.
 *
 *   0  rpc_hs_parse (i32 magic, i32 length, key) on every prefix, then
 *      proxy_key_parse on the key it returns
 *   1  the server's key checks: server_key_matches, server_parse_timeout
 *   2  the proxy's web port: ws_http_parse on every prefix, ws_http_decide,
 *      ws_http_response
 *   3  WebSocket frames: ws_dec_feed, server side (masked), in two pieces
 *
 * The server's own framing (handshake_parse in server.c) is static and
 * reads a pending connection's buffer; it is the same wire format as
 * rpc_hs_parse. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "proxy/proxy.h"
#include "proxy/ws.h"
#include "rpc/rpc.h"
#include "server/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void proxy_handshake(const uint8_t *p, size_t n)
{
    const uint8_t *key = NULL;
    size_t keylen = 0;
    int complete = 0;
    /* Bytes arrive in any split: exactly one length can be a whole
     * handshake; longer ones are EXTRA, shorter ones INCOMPLETE or an
     * error that stays an error. */
    for (size_t i = 0; i <= n; i++) {
        rpc_hs_t r = rpc_hs_parse(p, i, &key, &keylen);
        if ((complete && r != RPC_HS_EXTRA) || (r == RPC_HS_OK && complete++))
            abort();
    }
    if (rpc_hs_parse(p, n, &key, &keylen) != RPC_HS_OK)
        return;
    if (key < p + 8 || keylen > n - 8 || keylen > RPC_MAX_KEY_LEN)
        abort();
    int is_server;
    char match[RPC_MAX_KEY_LEN + 1];
    const char *why;
    proxy_key_parse(key, keylen, &is_server, match, sizeof(match), &why);
}

/* As the server sees a client key: NUL-terminated text. */
static void server_keys(const uint8_t *p, size_t n)
{
    char *key = malloc(n + 1);
    if (!key)
        return;
    memcpy(key, p, n);
    key[n] = '\0';
    size_t split = n ? p[0] % (n + 1) : 0; /* the server's own key: a piece of the input */
    char expect[64];
    size_t elen = split < sizeof(expect) - 1 ? split : sizeof(expect) - 1;
    memcpy(expect, key, elen);
    expect[elen] = '\0';
    server_key_matches(key, expect);
    server_parse_timeout(key);
    free(key);
}

static void http_upgrade(const uint8_t *p, size_t n)
{
    char err[256];
    ws_req_t req;
    for (size_t i = 0; i < n && i < 512; i++)
        ws_http_parse((const char *)p, i, &req, err, sizeof(err));
    if (ws_http_parse((const char *)p, n, &req, err, sizeof(err)) != WS_OK)
        return;
    if (req.consumed > n)
        abort();
    buf_t out;
    buf_init(&out, 0);
    ws_http_response(&out, ws_http_decide(&req, "/ws"), &req);
    buf_free(&out);
}

static int sink_data(void *ctx, const uint8_t *p, size_t n)
{
    *(size_t *)ctx += n;
    return 0;
}

static int sink_control(void *ctx, int opcode, const uint8_t *p, size_t n)
{
    if (n > WS_MAX_CONTROL)
        abort();
    return 0;
}

static void ws_frames(const uint8_t *p, size_t n)
{
    if (n < 1)
        return;
    uint8_t *copy = malloc(n); /* the decoder unmasks in place */
    if (!copy)
        return;
    memcpy(copy, p, n);
    ws_dec_t d;
    ws_dec_init(&d, 1, 1 << 20);
    ws_sink_t sink = {sink_data, sink_control};
    size_t got = 0, cut = copy[0] % n;
    char err[256];
    if (ws_dec_feed(&d, copy + 1, cut, &sink, &got, err, sizeof(err)) == 0)
        ws_dec_feed(&d, copy + 1 + cut, n - 1 - cut, &sink, &got, err, sizeof(err));
    if (got > n)
        abort(); /* payload cannot exceed the bytes fed */
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (data[0] & 3) {
    case 0:
        proxy_handshake(p, n);
        break;
    case 1:
        server_keys(p, n);
        break;
    case 2:
        http_upgrade(p, n);
        break;
    default:
        ws_frames(p, n);
        break;
    }
    return 0;
}
