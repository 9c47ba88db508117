#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

static void test_append_consume_compact(void **state)
{
    buf_t b;
    buf_init(&b, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(buf_append_u32le(&b, (uint32_t)i), 0);
    assert_int_equal(b.len, 4000);
    buf_consume(&b, 3996);
    assert_int_equal(le32(buf_head(&b)), 999);
    assert_int_equal(buf_append_str(&b, "x"), 0);
    assert_int_equal(b.len, 5);
    buf_consume(&b, 100);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static void test_cap_is_enforced(void **state)
{
    buf_t b;
    buf_init(&b, 8);
    assert_int_equal(buf_append(&b, "12345678", 8), 0);
    assert_int_equal(buf_append_u8(&b, 1), -1);
    assert_int_equal(b.len, 8);
    assert_null(buf_tail(&b, 1));
    assert_int_equal(buf_reserve(&b, SIZE_MAX), -1);
    buf_free(&b);
}

static void test_printf_and_steal(void **state)
{
    buf_t b;
    buf_init(&b, 0);
    buf_printf(&b, "%s:%d", "host", 9090);
    buf_consume(&b, 2);
    char *s = buf_steal_cstr(&b);
    assert_string_equal(s, "st:9090");
    free(s);
    assert_null(b.data);
}

static void test_little_endian_codec(void **state)
{
    buf_t b;
    buf_init(&b, 0);
    buf_append_i32le(&b, 0x0002F271);
    buf_append_i64le(&b, -2);
    buf_append_u8(&b, 7);
    const uint8_t want[] = {0x71, 0xF2, 0x02, 0x00, 0xFE, 0xFF, 0xFF,
                            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x07};
    assert_memory_equal(buf_head(&b), want, sizeof(want));
    rd_t r = rd_make(buf_head(&b), b.len);
    int32_t i32;
    int64_t i64;
    uint8_t u8;
    uint16_t u16;
    assert_int_equal(rd_i32(&r, &i32), 0);
    assert_int_equal(i32, 0x0002F271);
    assert_int_equal(rd_i64(&r, &i64), 0);
    assert_int_equal(i64, -2);
    assert_int_equal(rd_u16(&r, &u16), -1); /* only one byte left: no move */
    assert_int_equal(r.left, 1);
    assert_int_equal(rd_u8(&r, &u8), 0);
    assert_int_equal(u8, 7);
    assert_int_equal(rd_u8(&r, &u8), -1);
    assert_int_equal(rd_skip(&r, 1), -1);
    buf_free(&b);
}

static void test_reader_never_overreads(void **state)
{
    const uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (size_t n = 0; n <= 8; n++) {
        rd_t r = rd_make(data, n);
        uint64_t v;
        double d;
        assert_int_equal(rd_u64(&r, &v), n >= 8 ? 0 : -1);
        r = rd_make(data, n);
        assert_int_equal(rd_f64(&r, &d), n >= 8 ? 0 : -1);
        const uint8_t *p;
        r = rd_make(data, n);
        assert_int_equal(rd_bytes(&r, 5, &p), n >= 5 ? 0 : -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_consume_compact), cmocka_unit_test(test_cap_is_enforced),
        cmocka_unit_test(test_printf_and_steal),       cmocka_unit_test(test_little_endian_codec),
        cmocka_unit_test(test_reader_never_overreads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
