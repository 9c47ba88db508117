/* rpc_hs_parse: the handshake both the server and the proxy read from a
 * connecting peer, fed every prefix of a valid and of each bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "rpc/rpc.h"

static size_t make(uint8_t *out, uint32_t magic, int32_t len, const char *key)
{
    put_le32(out, magic);
    put_le32(out + 4, (uint32_t)len);
    size_t n = key ? strlen(key) : 0;
    memcpy(out + 8, key, n);
    return 8 + n;
}

static void test_every_prefix_of_a_good_handshake(void **state)
{
    (void)state;
    uint8_t b[64];
    size_t n = make(b, RPC_MAGIC, 12, "client:abcde");
    const uint8_t *key;
    size_t klen;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rpc_hs_parse(b, i, &key, &klen), RPC_HS_INCOMPLETE);
    assert_int_equal(rpc_hs_parse(b, n, &key, &klen), RPC_HS_OK);
    assert_int_equal(klen, 12);
    assert_memory_equal(key, "client:abcde", 12);
    b[n] = 'x';
    assert_int_equal(rpc_hs_parse(b, n + 1, &key, &klen), RPC_HS_EXTRA);
}

static void test_empty_key(void **state)
{
    (void)state;
    uint8_t b[16];
    size_t n = make(b, RPC_MAGIC, 0, NULL);
    const uint8_t *key;
    size_t klen = 99;
    assert_int_equal(rpc_hs_parse(b, n, &key, &klen), RPC_HS_OK);
    assert_int_equal(klen, 0);
}

/* Errors show as soon as the bytes proving them are in. */
static void test_errors_reported_early(void **state)
{
    (void)state;
    uint8_t b[16];
    const uint8_t *key;
    size_t klen;
    make(b, 0x12345678, 4, NULL);
    assert_int_equal(rpc_hs_parse(b, 3, &key, &klen), RPC_HS_INCOMPLETE);
    assert_int_equal(rpc_hs_parse(b, 4, &key, &klen), RPC_HS_BAD_MAGIC);
    make(b, RPC_MAGIC, -1, NULL);
    assert_int_equal(rpc_hs_parse(b, 8, &key, &klen), RPC_HS_BAD_LENGTH);
    make(b, RPC_MAGIC, RPC_MAX_KEY_LEN + 1, NULL);
    assert_int_equal(rpc_hs_parse(b, 8, &key, &klen), RPC_HS_BAD_LENGTH);
    make(b, RPC_MAGIC, RPC_MAX_KEY_LEN, NULL);
    assert_int_equal(rpc_hs_parse(b, 8, &key, &klen), RPC_HS_INCOMPLETE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_prefix_of_a_good_handshake),
        cmocka_unit_test(test_empty_key),
        cmocka_unit_test(test_errors_reported_early),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
