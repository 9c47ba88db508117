/* Tracker framing: every prefix of a valid input is "incomplete", never an
 * error or a wrong frame (picohttpparser style). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "tracker/proto.h"

static void test_every_prefix_incomplete(void **state)
{
    buf_t b;
    buf_init(&b, 0);
    const char *msg = "[3, \"rasp3b\", [9090, \"rasp3b:0.7151893663724195\"], null]";
    assert_int_equal(proto_append_frame(&b, msg, strlen(msg)), 0);
    assert_int_equal(b.len, 60);
    assert_int_equal(le32(buf_head(&b)), 56); /* PROTOCOL.md §1.10: N=56 */
    for (size_t n = 0; n < b.len; n++) {
        const char *json;
        size_t jl, used;
        char err[64];
        assert_int_equal(proto_parse_frame(buf_head(&b), n, TRACKER_MAX_FRAME, &json, &jl, &used,
                                           err, sizeof(err)),
                         PROTO_INCOMPLETE);
    }
    const char *json;
    size_t jl, used;
    char err[64];
    assert_int_equal(proto_parse_frame(buf_head(&b), b.len, TRACKER_MAX_FRAME, &json, &jl, &used,
                                       err, sizeof(err)),
                     PROTO_OK);
    assert_int_equal(jl, strlen(msg));
    assert_int_equal(used, b.len);
    assert_memory_equal(json, msg, jl);
    buf_free(&b);
}

static void test_two_frames_back_to_back(void **state)
{
    buf_t b;
    buf_init(&b, 0);
    proto_append_frame(&b, "[6]", 3);
    proto_append_frame(&b, "[7]", 3);
    const char *json;
    size_t jl, used;
    char err[64];
    assert_int_equal(proto_parse_frame(buf_head(&b), b.len, 100, &json, &jl, &used, err, 64),
                     PROTO_OK);
    assert_int_equal(used, 7);
    assert_memory_equal(json, "[6]", 3);
    assert_int_equal(
        proto_parse_frame(buf_head(&b) + used, b.len - used, 100, &json, &jl, &used, err, 64),
        PROTO_OK);
    assert_memory_equal(json, "[7]", 3);
    buf_free(&b);
}

static void test_bad_lengths(void **state)
{
    const int32_t bad[] = {0, -1, INT32_MIN, TRACKER_MAX_FRAME + 1};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t hdr[4];
        put_le32(hdr, (uint32_t)bad[i]);
        const char *json;
        size_t jl, used;
        char err[64] = "";
        assert_int_equal(proto_parse_frame(hdr, 4, TRACKER_MAX_FRAME, &json, &jl, &used, err, 64),
                         PROTO_ERROR);
        assert_non_null(strstr(err, "frame length"));
    }
    /* exactly the cap is fine (just incomplete here) */
    uint8_t hdr[4];
    put_le32(hdr, TRACKER_MAX_FRAME);
    const char *json;
    size_t jl, used;
    char err[64];
    assert_int_equal(proto_parse_frame(hdr, 4, TRACKER_MAX_FRAME, &json, &jl, &used, err, 64),
                     PROTO_INCOMPLETE);
}

static void test_code_names(void **state)
{
    assert_string_equal(proto_code_name(TRACKER_GET_PENDING_MATCHKEYS), "GET_PENDING_MATCHKEYS");
    assert_string_equal(proto_code_name(TRACKER_FAIL), "FAIL");
    assert_string_equal(proto_code_name(99), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_prefix_incomplete),
        cmocka_unit_test(test_two_frames_back_to_back),
        cmocka_unit_test(test_bad_lengths),
        cmocka_unit_test(test_code_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
