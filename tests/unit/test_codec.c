/* Both session codecs against the worked hex examples of PROTOCOL.md
 * §4.13, and the generation fingerprints of §4.12. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"

/* Parse "0B 00 ..." (spaces ignored) into bytes. */
static size_t hex(const char *s, uint8_t *out)
{
    size_t n = 0;
    while (*s) {
        if (*s == ' ' || *s == '\n') {
            s++;
            continue;
        }
        unsigned v;
        sscanf(s, "%2x", &v);
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

static int decode(const rpc_codec_t *c, const uint8_t *p, size_t n, rpc_value_t *v, rpc_tensor_t *t)
{
    rd_t r = rd_make(p, n);
    int count;
    char err[160];
    return c->decode(&r, v, t, 8, &count, err, sizeof(err)) < 0 ? -1 : count;
}

static void expect_bytes(const buf_t *b, const char *want_hex)
{
    uint8_t want[256];
    size_t n = hex(want_hex, want);
    assert_int_equal(b->len, n);
    assert_memory_equal(buf_head(b), want, n);
}

static void test_classic_get_global_and_call(void **state)
{
    uint8_t p[128];
    rpc_value_t v[8];
    rpc_tensor_t t[8];
    /* C2 payload after the code */
    size_t n = hex("01 00 00 00 0B 00 00 00 0F 00 00 00 00 00 00 00 72 70 63 2E 74 65 73 74 2E 73 "
                   "74 72 63 61 74",
                   p);
    assert_int_equal(decode(&rpc_codec_classic, p, n, v, t), 1);
    assert_int_equal(v[0].kind, RV_STR);
    assert_int_equal(v[0].u.s.len, 15);
    assert_memory_equal(v[0].u.s.p, "rpc.test.strcat", 15);
    /* The same bytes are not an ffi sequence (index 11 needs an inner index 65/66). */
    assert_int_equal(decode(&rpc_codec_ffi, p, n, v, t), -1);
    /* C3 args: "abc", 42 */
    n = hex("02 00 00 00 0B 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00 61 62 63 2A 00 00 00 00 "
            "00 00 00",
            p);
    assert_int_equal(decode(&rpc_codec_classic, p, n, v, t), 2);
    assert_int_equal(v[1].kind, RV_INT);
    assert_int_equal(v[1].u.i, 42);
}

static void test_classic_results(void **state)
{
    buf_t b;
    buf_init(&b, 0);
    rpc_value_t s = {.kind = RV_STR};
    s.u.s.p = "abc:42";
    s.u.s.len = 6;
    rpc_codec_classic.encode_call_result(&b, &s); /* C3 reply payload */
    expect_bytes(&b, "02 00 00 00 00 00 00 00 0B 00 00 00 0B 00 00 00 00 00 00 00 06 00 00 00 00 "
                     "00 00 00 61 62 63 3A 34 32");
    buf_reset(&b);
    rpc_codec_classic.encode_void(&b); /* C1 */
    expect_bytes(&b, "01 00 00 00 04 00 00 00");
    buf_reset(&b);
    rpc_codec_classic.encode_exception(&b, "ValueError: boom", 16); /* C4 */
    expect_bytes(&b, "01 00 00 00 0B 00 00 00 10 00 00 00 00 00 00 00 56 61 6C 75 65 45 72 72 6F "
                     "72 3A 20 62 6F 6F 6D");
    buf_reset(&b);
    rpc_tensor_t t = {.data = 0x00007F0000002000ULL,
                      .dev = {1, 0},
                      .ndim = 1,
                      .dtype = {2, 32, 1},
                      .shape = {10}};
    rpc_value_t nd = {.kind = RV_NDARRAY, .t = &t};
    nd.u.h = 0x00007F0000004000ULL;
    rpc_codec_classic.encode_call_result(&b, &nd); /* C8 */
    expect_bytes(&b, "03 00 00 00 00 00 00 00 07 00 00 00 03 00 00 00 0D 00 00 00 00 00 00 00"
                     " 00 20 00 00 00 7F 00 00 01 00 00 00 00 00 00 00 01 00 00 00 02 20 01 00"
                     " 0A 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 40 00 00 00 7F 00 00");
    rd_t r = rd_make(buf_head(&b), b.len);
    rpc_value_t out;
    rpc_tensor_t ot;
    char err[128];
    assert_int_equal(rpc_codec_classic.decode_call_result(&r, &out, &ot, err, sizeof(err)), 0);
    assert_int_equal(out.kind, RV_NDARRAY);
    assert_int_equal(out.u.h, 0x00007F0000004000ULL);
    assert_int_equal(out.t->shape[0], 10);
    buf_free(&b);
}

static void test_ffi_examples(void **state)
{
    uint8_t p[128];
    rpc_value_t v[8];
    rpc_tensor_t t[8];
    /* F3 args */
    size_t n = hex("02 00 00 00 08 00 00 00 03 00 00 00 00 00 00 00 61 62 63 01 00 00 00 2A 00 00 "
                   "00 00 00 00 00",
                   p);
    assert_int_equal(decode(&rpc_codec_ffi, p, n, v, t), 2);
    assert_int_equal(v[0].kind, RV_STR);
    assert_int_equal(v[1].u.i, 42);
    assert_int_equal(decode(&rpc_codec_classic, p, n, v, t), -1);
    buf_t b;
    buf_init(&b, 0);
    rpc_value_t s = {.kind = RV_STR};
    s.u.s.p = "abc:42";
    s.u.s.len = 6;
    rpc_codec_ffi.encode_call_result(&b, &s); /* F3 reply: SmallStr 11 */
    expect_bytes(&b, "02 00 00 00 01 00 00 00 0B 00 00 00 00 00 00 00 08 00 00 00 06 00 00 00 00 "
                     "00 00 00 61 62 63 3A 34 32");
    buf_reset(&b);
    rpc_codec_ffi.encode_void(&b); /* F1 */
    expect_bytes(&b, "01 00 00 00 00 00 00 00");
    buf_reset(&b);
    rpc_codec_ffi.encode_exception(&b, "ValueError: boom", 16); /* F4 */
    expect_bytes(&b, "01 00 00 00 08 00 00 00 10 00 00 00 00 00 00 00 56 61 6C 75 65 45 72 72 6F "
                     "72 3A 20 62 6F 6F 6D");
    buf_free(&b);
    /* A v0.22+ Bytes object argument: outer 66, inner 66. */
    n = hex("01 00 00 00 42 00 00 00 42 00 00 00 02 00 00 00 00 00 00 00 68 69", p);
    assert_int_equal(decode(&rpc_codec_ffi, p, n, v, t), 1);
    assert_int_equal(v[0].kind, RV_BYTES);
    /* Inner index other than 65/66/115 cannot cross the wire. */
    n = hex("01 00 00 00 45 00 00 00 45 00 00 00 00 00 00 00 00 00 00 00", p);
    assert_int_equal(decode(&rpc_codec_ffi, p, n, v, t), -1);
}

/* §4.12 fingerprints: each stock first request parses in one generation only. */
static void test_generation_fingerprints(void **state)
{
    uint8_t p[128];
    rpc_value_t v[8];
    rpc_tensor_t t[8];
    /* C5a kDevAllocDataWithScope classic */
    size_t n =
        hex("02 00 00 00 07 00 00 00 04 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00"
            " 01 00 00 00 02 20 01 00 04 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
            p);
    assert_int_equal(decode(&rpc_codec_classic, p, n, v, t), 2);
    assert_int_equal(v[0].t->shape[0], 4);
    assert_int_equal(decode(&rpc_codec_ffi, p, n, v, t), -1);
    /* C9 kDevGetAttr(cuda, kExist) classic */
    n = hex("02 00 00 00 06 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
            p);
    assert_int_equal(decode(&rpc_codec_classic, p, n, v, t), 2);
    assert_int_equal(decode(&rpc_codec_ffi, p, n, v, t), -1);
    /* C5d kDevStreamSync classic */
    n = hex("02 00 00 00 06 00 00 00 03 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
            p);
    assert_int_equal(decode(&rpc_codec_classic, p, n, v, t), 2);
    assert_int_equal(decode(&rpc_codec_ffi, p, n, v, t), -1);
    /* C7 kFreeHandle classic vs its ffi form */
    n = hex("02 00 00 00 03 00 00 00 00 00 00 00 00 10 00 00 00 7F 00 00 0A 00 00 00 00 00 00 00",
            p);
    assert_int_equal(decode(&rpc_codec_classic, p, n, v, t), 2);
    assert_int_equal(decode(&rpc_codec_ffi, p, n, v, t), -1);
    n = hex("01 00 00 00 04 00 00 00 00 10 00 00 00 7F 00 00", p);
    assert_int_equal(decode(&rpc_codec_ffi, p, n, v, t), 1);
    assert_int_equal(decode(&rpc_codec_classic, p, n, v, t), -1);
    /* One-argument device syscall: undecidable, both parse (§4.12). */
    n = hex("01 00 00 00 06 00 00 00 01 00 00 00 00 00 00 00", p);
    assert_int_equal(decode(&rpc_codec_classic, p, n, v, t), 1);
    assert_int_equal(decode(&rpc_codec_ffi, p, n, v, t), 1);
}

static void test_truncation_never_overreads(void **state)
{
    uint8_t p[128];
    size_t n = hex("02 00 00 00 0B 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00 61 62 63 2A 00 00 "
                   "00 00 00 00 00",
                   p);
    rpc_value_t v[8];
    rpc_tensor_t t[8];
    for (size_t k = 0; k < n; k++) {
        uint8_t *copy = malloc(k ? k : 1); /* exact size: ASan catches any overread */
        memcpy(copy, p, k);
        assert_int_equal(decode(&rpc_codec_classic, copy, k, v, t), -1);
        assert_int_equal(decode(&rpc_codec_ffi, copy, k, v, t), -1);
        free(copy);
    }
    /* A string length larger than the packet. */
    n = hex("01 00 00 00 0B 00 00 00 FF FF FF FF FF FF FF 7F 61", p);
    assert_int_equal(decode(&rpc_codec_classic, p, n, v, t), -1);
    /* ndim beyond the cap. */
    n = hex("01 00 00 00 07 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 FF 00 00 00 "
            "02 20 01 00",
            p);
    assert_int_equal(decode(&rpc_codec_classic, p, n, v, t), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classic_get_global_and_call),
        cmocka_unit_test(test_classic_results),
        cmocka_unit_test(test_ffi_examples),
        cmocka_unit_test(test_generation_fingerprints),
        cmocka_unit_test(test_truncation_never_overreads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
