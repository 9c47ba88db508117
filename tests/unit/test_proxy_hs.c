/* The handshake parser shared by server and proxy (rpc_hs_parse) and the proxy's key classification
 * (PROTOCOL.md §2.2, §3.1): every prefix of a valid handshake is "incomplete", errors show up as
 * soon as the bytes proving them are there, and match keys follow TVM's rpc_key[7:].split()[0]. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "base/buf.h"
#include "proxy/proxy.h"
#include "rpc/rpc.h"
#include "rpc/rpc.h"

static size_t build(uint8_t *out, uint32_t magic, int32_t len, const char *key)
{
    put_le32(out, magic);
    put_le32(out + 4, (uint32_t)len);
    size_t kl = key ? strlen(key) : 0;
    if (kl)
        memcpy(out + 8, key, kl);
    return 8 + kl;
}

static void test_every_prefix_incomplete(void **state)
{
    uint8_t b[64];
    const char *key = "client:rasp3b:0.7151893663724195 -timeout=60";
    size_t n = build(b, RPC_MAGIC, (int32_t)strlen(key), key);
    assert_int_equal(n, 52); /* PROTOCOL.md §2.7: i32 44 + key */
    for (size_t i = 0; i < n; i++) {
        const uint8_t *k;
        size_t kl;
        assert_int_equal(rpc_hs_parse(b, i, &k, &kl), RPC_HS_INCOMPLETE);
    }
    const uint8_t *k;
    size_t kl;
    assert_int_equal(rpc_hs_parse(b, n, &k, &kl), RPC_HS_OK);
    assert_int_equal(kl, strlen(key));
    assert_memory_equal(k, key, kl);
    assert_ptr_equal(k, b + 8);
}

/* The exact bytes of the recorded TVM session (v0.20-proxy.txt c0). */
static void test_trace_bytes(void **state)
{
    static const uint8_t c0[] = {0x71, 0xf2, 0x0f, 0x00, 0x0e, 0x00, 0x00, 0x00, 's', 'e', 'r',
                                 'v',  'e',  'r',  ':',  't',  'r',  'a',  'c',  'e', 'p', 'd'};
    const uint8_t *k;
    size_t kl;
    assert_int_equal(rpc_hs_parse(c0, sizeof(c0), &k, &kl), RPC_HS_OK);
    assert_int_equal(kl, 14);
    assert_memory_equal(k, "server:tracepd", 14);
}

static void test_bad_magic_after_four_bytes(void **state)
{
    uint8_t b[16];
    build(b, 0x0002F271 /* tracker magic */, 3, "abc");
    const uint8_t *k;
    size_t kl;
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(rpc_hs_parse(b, i, &k, &kl), RPC_HS_INCOMPLETE);
    for (size_t i = 4; i <= 11; i++)
        assert_int_equal(rpc_hs_parse(b, i, &k, &kl), RPC_HS_BAD_MAGIC);
    /* "GET " from a browser on the wrong port */
    assert_int_equal(rpc_hs_parse((const uint8_t *)"GET / HTTP/1.1\r\n", 16, &k, &kl),
                     RPC_HS_BAD_MAGIC);
}

static void test_bad_lengths(void **state)
{
    const int32_t bad[] = {-1, INT32_MIN, RPC_MAX_KEY_LEN + 1, 0x7fffffff};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t b[8];
        build(b, RPC_MAGIC, bad[i], NULL);
        const uint8_t *k;
        size_t kl;
        assert_int_equal(rpc_hs_parse(b, 7, &k, &kl), RPC_HS_INCOMPLETE);
        assert_int_equal(rpc_hs_parse(b, 8, &k, &kl), RPC_HS_BAD_LENGTH);
    }
    /* The largest allowed key is fine. */
    static uint8_t big[8 + RPC_MAX_KEY_LEN];
    memset(big, 'x', sizeof(big));
    put_le32(big, RPC_MAGIC);
    put_le32(big + 4, RPC_MAX_KEY_LEN);
    const uint8_t *k;
    size_t kl;
    assert_int_equal(rpc_hs_parse(big, sizeof(big) - 1, &k, &kl), RPC_HS_INCOMPLETE);
    assert_int_equal(rpc_hs_parse(big, sizeof(big), &k, &kl), RPC_HS_OK);
    assert_int_equal(kl, RPC_MAX_KEY_LEN);
}

static void test_extra_bytes(void **state)
{
    uint8_t b[64];
    size_t n = build(b, RPC_MAGIC, 10, "client:abc");
    /* A client that sends kInitServer without waiting for the reply. */
    memcpy(b + n, "\x15\0\0\0", 4);
    const uint8_t *k;
    size_t kl;
    for (size_t extra = 1; extra <= 4; extra++)
        assert_int_equal(rpc_hs_parse(b, n + extra, &k, &kl), RPC_HS_EXTRA);
    /* Zero-length key followed by anything. */
    n = build(b, RPC_MAGIC, 0, NULL);
    assert_int_equal(rpc_hs_parse(b, n, &k, &kl), RPC_HS_OK);
    assert_int_equal(kl, 0);
    assert_int_equal(rpc_hs_parse(b, n + 1, &k, &kl), RPC_HS_EXTRA);
}

typedef struct key_case {
    const char *key;
    int ok, server;
    const char *match;
} key_case_t;

static void test_key_parse(void **state)
{
    static const key_case_t cases[] = {
        {"server:rasp3b", 1, 1, "rasp3b"},
        {"client:rasp3b", 1, 0, "rasp3b"},
        {"client:rasp3b -timeout=10", 1, 0, "rasp3b"},
        {"client:rasp3b:0.7151893663724195 -timeout=60", 1, 0, "rasp3b:0.7151893663724195"},
        {"client:  spaced\tout", 1, 0, "spaced"},
        {"client:a\x1f"
         "b",
         1, 0, "a"},
        /* TVM: anything not starting with "server:" is a client; the first
         * 7 characters are dropped whatever they are. */
        {"xxxxxxxabc", 1, 0, "abc"},
        {"Server:abc", 1, 0, "abc"},
        {"server:", 0, 0, NULL},
        {"client:", 0, 0, NULL},
        {"client: -timeout=3", 1, 0, "-timeout=3"},
        {"client:   ", 0, 0, NULL},
        {"short", 0, 0, NULL},
        {"", 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const key_case_t *kc = &cases[i];
        char match[64];
        int server = -1;
        const char *why = NULL;
        int rc = proxy_key_parse((const uint8_t *)kc->key, strlen(kc->key), &server, match,
                                 sizeof(match), &why);
        if (!kc->ok) {
            assert_int_equal(rc, -1);
            assert_non_null(why);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(server, kc->server);
        assert_string_equal(match, kc->match);
    }
}

static void test_key_with_nul_or_too_long(void **state)
{
    char match[8];
    int server;
    const char *why;
    assert_int_equal(
        proxy_key_parse((const uint8_t *)"client:a\0b", 10, &server, match, sizeof(match), &why),
        -1);
    assert_int_equal(proxy_key_parse((const uint8_t *)"client:abcdefgh", 15, &server, match,
                                     sizeof(match), &why),
                     -1);
    assert_int_equal(
        proxy_key_parse((const uint8_t *)"client:abcdefg", 14, &server, match, sizeof(match), &why),
        0);
    assert_string_equal(match, "abcdefg");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_prefix_incomplete),
        cmocka_unit_test(test_trace_bytes),
        cmocka_unit_test(test_bad_magic_after_four_bytes),
        cmocka_unit_test(test_bad_lengths),
        cmocka_unit_test(test_extra_bytes),
        cmocka_unit_test(test_key_parse),
        cmocka_unit_test(test_key_with_nul_or_too_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
