/* The WebSocket pieces of the proxy: SHA-1 (RFC 3174 / FIPS 180 vectors),
 * base64 (RFC 4648 §10 vectors), Sec-WebSocket-Accept (RFC 6455 §1.3),
 * the HTTP upgrade parser (every prefix) and the frame decoder (every
 * split point of a stream mixing fragments, control frames and all three
 * length encodings). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "proxy/b64.h"
#include "proxy/sha1.h"
#include "proxy/ws.h"

/* ---- SHA-1 ------------------------------------------------------------------- */

static void hex(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void check_sha1(const void *p, size_t n, const char *want)
{
    uint8_t d[SHA1_LEN];
    char h[2 * SHA1_LEN + 1];
    sha1(p, n, d);
    hex(d, SHA1_LEN, h);
    assert_string_equal(h, want);
}

static void test_sha1_vectors(void **state)
{
    check_sha1("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d");
    check_sha1("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_sha1(two, strlen(two), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    /* 896-bit FIPS 180-2 message */
    const char *four =
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmno"
        "pqklmnopqrlmnopqrsmnopqrstnopqrstu";
    check_sha1(four, strlen(four), "a49b2446a02c645bf419f995b67091253a04a259");
    /* RFC 3174 test 4: "01234567" x 80 */
    char rep[641];
    for (int i = 0; i < 80; i++)
        memcpy(rep + 8 * i, "01234567", 8);
    check_sha1(rep, 640, "dea356a2cddd90c7a7ecedc5ebb563934f460452");
}

static void test_sha1_million_a_incremental(void **state)
{
    /* RFC 3174 test 3, fed in odd-sized pieces to exercise block carry. */
    static uint8_t a[1000];
    memset(a, 'a', sizeof(a));
    sha1_t s;
    sha1_init(&s);
    size_t left = 1000000, step = 1;
    while (left) {
        size_t n = step < left ? step : left;
        if (n > sizeof(a))
            n = sizeof(a);
        sha1_update(&s, a, n);
        left -= n;
        step = step * 7 % 997 + 1;
    }
    uint8_t d[SHA1_LEN];
    char h[2 * SHA1_LEN + 1];
    sha1_final(&s, d);
    hex(d, SHA1_LEN, h);
    assert_string_equal(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

static void test_sha1_padding_boundaries(void **state)
{
    /* Lengths around the 55/56/64-byte padding edges, against one-shot vs
     * byte-at-a-time (they must agree). */
    uint8_t msg[130];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)(i * 31 + 7);
    for (size_t n = 50; n < sizeof(msg); n++) {
        uint8_t d1[SHA1_LEN], d2[SHA1_LEN];
        sha1(msg, n, d1);
        sha1_t s;
        sha1_init(&s);
        for (size_t i = 0; i < n; i++)
            sha1_update(&s, msg + i, 1);
        sha1_final(&s, d2);
        assert_memory_equal(d1, d2, SHA1_LEN);
    }
    check_sha1("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 55,
               "c1c8bbdc22796e28c0e15163d20899b65621d65a");
    check_sha1("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 56,
               "c2db330f6083854c99d4b5bfb6e8f29f201be699");
}

/* ---- base64 ------------------------------------------------------------------ */

static void test_b64_rfc4648(void **state)
{
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const out[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char enc[16];
        size_t n = b64_encode((const uint8_t *)in[i], strlen(in[i]), enc);
        assert_int_equal(n, B64_ENCODED_LEN(strlen(in[i])));
        assert_string_equal(enc, out[i]);
        uint8_t dec[16];
        assert_int_equal(b64_decode(out[i], strlen(out[i]), dec), (long)strlen(in[i]));
        assert_memory_equal(dec, in[i], strlen(in[i]));
    }
}

static void test_b64_rejects(void **state)
{
    uint8_t d[16];
    static const char *const bad[] = {
        "Zg=", "Zg", "Z===", "Zh==", "Zm9=", "Zg==Zg==", "Zm9v!A==", "Zm=v", " Zg="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(b64_decode(bad[i], strlen(bad[i]), d), -1);
    /* Every byte value round-trips. */
    uint8_t all[256], back[258];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    char enc[B64_ENCODED_LEN(256) + 1];
    size_t n = b64_encode(all, 256, enc);
    assert_int_equal(b64_decode(enc, n, back), 256);
    assert_memory_equal(back, all, 256);
}

static void test_accept_key_rfc6455(void **state)
{
    char acc[WS_ACCEPT_LEN + 1];
    ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", acc);
    assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* ---- HTTP upgrade ------------------------------------------------------------ */

static const char upgrade_req[] = "GET /ws?x=1 HTTP/1.1\r\n"
                                  "Host: localhost:8888\r\n"
                                  "upgrade:  WebSocket \r\n"
                                  "Connection: keep-alive, Upgrade\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Origin: http://example.com\r\n"
                                  "Sec-WebSocket-Version: 13\r\n"
                                  "\r\n";

static void test_http_every_prefix(void **state)
{
    size_t n = strlen(upgrade_req);
    ws_req_t req;
    char err[96];
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ws_http_parse(upgrade_req, i, &req, err, sizeof(err)), WS_INCOMPLETE);
    /* Bytes after the head (the first frames) are not part of it. */
    char more[1024];
    snprintf(more, sizeof(more), "%s\x82\x84", upgrade_req);
    assert_int_equal(ws_http_parse(more, strlen(more), &req, err, sizeof(err)), WS_OK);
    assert_int_equal(req.consumed, n);
    assert_string_equal(req.method, "GET");
    assert_string_equal(req.path, "/ws");
    assert_string_equal(req.key, "dGhlIHNhbXBsZSBub25jZQ==");
    assert_int_equal(req.version, 13);
    assert_true(req.http11 && req.upgrade_websocket && req.connection_upgrade);
    assert_int_equal(ws_http_decide(&req, "/ws"), 101);
    buf_t out;
    buf_init(&out, 0);
    assert_int_equal(ws_http_response(&out, 101, &req), 0);
    buf_append_u8(&out, 0);
    assert_string_equal((const char *)buf_head(&out), "HTTP/1.1 101 Switching Protocols\r\n"
                                                      "Upgrade: websocket\r\n"
                                                      "Connection: Upgrade\r\n"
                                                      "Sec-WebSocket-Accept: "
                                                      "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
    buf_free(&out);
}

static int decide(const char *text)
{
    ws_req_t req;
    char err[96];
    if (ws_http_parse(text, strlen(text), &req, err, sizeof(err)) != WS_OK)
        return -1;
    return ws_http_decide(&req, "/ws");
}

static void test_http_decisions(void **state)
{
    const char *key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    char b[512];
    snprintf(b, sizeof(b), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(decide(b), 404);
    snprintf(b, sizeof(b),
             "POST /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n%s"
             "Sec-WebSocket-Version: 13\r\n\r\n",
             key);
    assert_int_equal(decide(b), 405);
    snprintf(b, sizeof(b),
             "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\n%s"
             "Sec-WebSocket-Version: 13\r\n\r\n",
             key);
    assert_int_equal(decide(b), 400); /* no Upgrade */
    snprintf(b, sizeof(b),
             "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n");
    assert_int_equal(decide(b), 400); /* key is not 16 bytes of base64 */
    snprintf(b, sizeof(b),
             "GET /ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n%s"
             "Sec-WebSocket-Version: 13\r\n\r\n",
             key);
    assert_int_equal(decide(b), 400);
    snprintf(b, sizeof(b),
             "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n%s"
             "Sec-WebSocket-Version: 8\r\n\r\n",
             key);
    assert_int_equal(decide(b), 426);
    assert_int_equal(decide("GARBAGE\r\n\r\n"), -1);
    assert_int_equal(decide("GET /ws FTP/1.1\r\n\r\n"), -1);
    assert_int_equal(decide("GET ws HTTP/1.1\r\n\r\n"), -1);
}

static void test_http_too_large(void **state)
{
    char *big = malloc(WS_MAX_REQUEST + 16);
    memset(big, 'a', WS_MAX_REQUEST + 16);
    memcpy(big, "GET /ws HTTP/1.1\r\nX: ", 21);
    ws_req_t req;
    char err[96];
    assert_int_equal(ws_http_parse(big, WS_MAX_REQUEST - 1, &req, err, sizeof(err)), WS_INCOMPLETE);
    assert_int_equal(ws_http_parse(big, WS_MAX_REQUEST, &req, err, sizeof(err)), WS_ERROR);
    free(big);
}

/* ---- frame decoder ----------------------------------------------------------- */

typedef struct sink_log {
    buf_t data;
    char ctl[256]; /* "P<len>," "O<len>," "C<code>," */
    size_t nctl;
    int stop_on_close;
} sink_log_t;

static int on_data(void *ctx, const uint8_t *p, size_t n)
{
    sink_log_t *s = ctx;
    assert_true(n > 0);
    return buf_append(&s->data, p, n);
}

static int on_control(void *ctx, int op, const uint8_t *p, size_t n)
{
    sink_log_t *s = ctx;
    char e[32];
    if (op == WS_OP_CLOSE)
        snprintf(e, sizeof(e), "C%d,", n >= 2 ? p[0] << 8 | p[1] : 0);
    else
        snprintf(e, sizeof(e), "%c%zu,", op == WS_OP_PING ? 'P' : 'O', n);
    size_t l = strlen(e);
    memcpy(s->ctl + s->nctl, e, l + 1);
    s->nctl += l;
    return op == WS_OP_CLOSE && s->stop_on_close ? 7 : 0;
}

static const ws_sink_t sink = {on_data, on_control};

/* Client-side stream: binary message in 3 fragments with a ping in the
 * middle, a 300-byte frame (16-bit length), a 70000-byte frame (64-bit
 * length), an empty binary frame, a pong and a close. */
static void build_stream(buf_t *s, buf_t *expect)
{
    static const uint8_t m1[4] = {0x11, 0x22, 0x33, 0x44}, m2[4] = {0, 0, 0, 0},
                         m3[4] = {0xde, 0xad, 0xbe, 0xef};
    uint8_t pay[70000];
    for (size_t i = 0; i < sizeof(pay); i++)
        pay[i] = (uint8_t)(i * 13 + (i >> 8));
    ws_frame_append(s, 0, WS_OP_BINARY, m1, pay, 5);
    ws_frame_append(s, 1, WS_OP_PING, m2, "hi", 2);
    ws_frame_append(s, 0, WS_OP_CONT, m3, pay + 5, 0);
    ws_frame_append(s, 1, WS_OP_CONT, m3, pay + 5, 120);
    ws_frame_append(s, 1, WS_OP_BINARY, m1, pay + 125, 300);
    ws_frame_append(s, 1, WS_OP_BINARY, m3, pay + 425, 70000 - 425);
    ws_frame_append(s, 1, WS_OP_BINARY, m1, pay, 0);
    ws_frame_append(s, 1, WS_OP_PONG, m1, NULL, 0);
    ws_close_append(s, 1000, m3);
    buf_append(expect, pay, 70000);
}

static void test_decoder_every_split(void **state)
{
    buf_t stream, expect;
    buf_init(&stream, 0);
    buf_init(&expect, 0);
    build_stream(&stream, &expect);
    /* Every single split point, plus a byte-at-a-time feed. */
    uint8_t *copy = malloc(stream.len);
    for (size_t cut = 0; cut <= stream.len;
         cut += (cut < 200 || stream.len - cut < 200) ? 1 : 997) {
        memcpy(copy, buf_head(&stream), stream.len);
        ws_dec_t d;
        ws_dec_init(&d, 1, 1 << 20);
        sink_log_t s = {0};
        buf_init(&s.data, 0);
        char err[96];
        assert_int_equal(ws_dec_feed(&d, copy, cut, &sink, &s, err, sizeof(err)), 0);
        assert_int_equal(ws_dec_feed(&d, copy + cut, stream.len - cut, &sink, &s, err, sizeof(err)),
                         0);
        assert_true(ws_dec_idle(&d));
        assert_string_equal(s.ctl, "P2,O0,C1000,");
        assert_int_equal(s.data.len, expect.len);
        assert_memory_equal(buf_head(&s.data), buf_head(&expect), expect.len);
        buf_free(&s.data);
    }
    memcpy(copy, buf_head(&stream), stream.len);
    ws_dec_t d;
    ws_dec_init(&d, 1, 1 << 20);
    sink_log_t s = {0};
    buf_init(&s.data, 0);
    char err[96];
    for (size_t i = 0; i < stream.len; i++)
        assert_int_equal(ws_dec_feed(&d, copy + i, 1, &sink, &s, err, sizeof(err)), 0);
    assert_int_equal(s.data.len, expect.len);
    assert_memory_equal(buf_head(&s.data), buf_head(&expect), expect.len);
    buf_free(&s.data);
    free(copy);
    buf_free(&stream);
    buf_free(&expect);
}

static void test_decoder_sink_stop(void **state)
{
    static const uint8_t m[4] = {1, 2, 3, 4};
    buf_t b;
    buf_init(&b, 0);
    ws_close_append(&b, 1001, m);
    ws_frame_append(&b, 1, WS_OP_BINARY, m, "after", 5);
    ws_dec_t d;
    ws_dec_init(&d, 1, 100);
    sink_log_t s = {.stop_on_close = 1};
    buf_init(&s.data, 0);
    char err[96];
    assert_int_equal(ws_dec_feed(&d, buf_head(&b), b.len, &sink, &s, err, sizeof(err)), 7);
    assert_string_equal(s.ctl, "C1001,");
    assert_int_equal(s.data.len, 0);
    buf_free(&s.data);
    buf_free(&b);
}

static int decode_error(const uint8_t *p, size_t n, int require_mask, uint64_t cap)
{
    uint8_t copy[64];
    memcpy(copy, p, n);
    ws_dec_t d;
    ws_dec_init(&d, require_mask, cap);
    sink_log_t s = {0};
    buf_init(&s.data, 0);
    char err[96] = "";
    int rc = ws_dec_feed(&d, copy, n, &sink, &s, err, sizeof(err));
    buf_free(&s.data);
    if (rc == WS_ERROR) {
        assert_true(err[0] != '\0');
        return d.close_code;
    }
    return rc;
}

static void test_decoder_errors(void **state)
{
    /* unmasked client frame */
    assert_int_equal(decode_error((const uint8_t *)"\x82\x01x", 3, 1, 100), WS_CLOSE_PROTOCOL);
    /* ...is fine when masks are not required (server-to-client direction) */
    assert_int_equal(decode_error((const uint8_t *)"\x82\x01x", 3, 0, 100), 0);
    /* reserved bits */
    assert_int_equal(decode_error((const uint8_t *)"\xc2\x80\0\0\0\0", 6, 1, 100),
                     WS_CLOSE_PROTOCOL);
    /* text frames are not carried */
    assert_int_equal(decode_error((const uint8_t *)"\x81\x80\0\0\0\0", 6, 1, 100),
                     WS_CLOSE_UNSUPPORTED);
    /* unknown opcodes */
    assert_int_equal(decode_error((const uint8_t *)"\x83\x80\0\0\0\0", 6, 1, 100),
                     WS_CLOSE_PROTOCOL);
    assert_int_equal(decode_error((const uint8_t *)"\x8b\x80\0\0\0\0", 6, 1, 100),
                     WS_CLOSE_PROTOCOL);
    /* continuation without a message */
    assert_int_equal(decode_error((const uint8_t *)"\x80\x80\0\0\0\0", 6, 1, 100),
                     WS_CLOSE_PROTOCOL);
    /* new binary message inside a fragmented one */
    assert_int_equal(decode_error((const uint8_t *)"\x02\x80\0\0\0\0\x82\x80\0\0\0\0", 12, 1, 100),
                     WS_CLOSE_PROTOCOL);
    /* fragmented ping, oversized ping */
    assert_int_equal(decode_error((const uint8_t *)"\x09\x80\0\0\0\0", 6, 1, 100),
                     WS_CLOSE_PROTOCOL);
    assert_int_equal(decode_error((const uint8_t *)"\x89\xfe\0\x7e\0\0\0\0", 8, 1, 1000),
                     WS_CLOSE_PROTOCOL);
    /* frame above the cap, 64-bit length with the top bit set */
    assert_int_equal(decode_error((const uint8_t *)"\x82\xfe\x01\x00\0\0\0\0", 8, 1, 255),
                     WS_CLOSE_TOO_BIG);
    assert_int_equal(
        decode_error((const uint8_t *)"\x82\xff\x80\0\0\0\0\0\0\0\0\0\0\0", 14, 1, UINT64_MAX),
        WS_CLOSE_PROTOCOL);
}

static void test_frame_headers(void **state)
{
    uint8_t h[WS_MAX_HEADER];
    assert_int_equal(ws_frame_header(h, WS_OP_BINARY, 125), 2);
    assert_memory_equal(h, "\x82\x7d", 2);
    assert_int_equal(ws_frame_header(h, WS_OP_BINARY, 126), 4);
    assert_memory_equal(h, "\x82\x7e\x00\x7e", 4);
    assert_int_equal(ws_frame_header(h, WS_OP_BINARY, 65535), 4);
    assert_memory_equal(h, "\x82\x7e\xff\xff", 4);
    assert_int_equal(ws_frame_header(h, WS_OP_BINARY, 65536), 10);
    assert_memory_equal(h, "\x82\x7f\0\0\0\0\0\x01\0\0", 10);
    /* RFC 6455 §5.7 examples */
    buf_t b;
    buf_init(&b, 0);
    ws_frame_append(&b, 1, WS_OP_TEXT, NULL, "Hello", 5);
    assert_memory_equal(buf_head(&b), "\x81\x05\x48\x65\x6c\x6c\x6f", 7);
    buf_reset(&b);
    static const uint8_t m[4] = {0x37, 0xfa, 0x21, 0x3d};
    ws_frame_append(&b, 1, WS_OP_TEXT, m, "Hello", 5);
    assert_memory_equal(buf_head(&b), "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11);
    buf_reset(&b);
    ws_frame_append(&b, 0, WS_OP_TEXT, NULL, "Hel", 3);
    ws_frame_append(&b, 1, WS_OP_CONT, NULL, "lo", 2);
    assert_memory_equal(buf_head(&b), "\x01\x03\x48\x65\x6c\x80\x02\x6c\x6f", 9);
    buf_reset(&b);
    ws_close_append(&b, 1000, NULL);
    assert_memory_equal(buf_head(&b), "\x88\x02\x03\xe8", 4);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha1_vectors),
        cmocka_unit_test(test_sha1_million_a_incremental),
        cmocka_unit_test(test_sha1_padding_boundaries),
        cmocka_unit_test(test_b64_rfc4648),
        cmocka_unit_test(test_b64_rejects),
        cmocka_unit_test(test_accept_key_rfc6455),
        cmocka_unit_test(test_http_every_prefix),
        cmocka_unit_test(test_http_decisions),
        cmocka_unit_test(test_http_too_large),
        cmocka_unit_test(test_decoder_every_split),
        cmocka_unit_test(test_decoder_sink_stop),
        cmocka_unit_test(test_decoder_errors),
        cmocka_unit_test(test_frame_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
