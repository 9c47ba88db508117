/* Unit tests for base/json: the reader's strictness, and the writer's
 * byte-for-byte agreement with Python 3's json.dumps (expected strings below
 * were produced by CPython 3.11). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"

/* Parse from an exact-size heap copy with no terminator, so AddressSanitizer
 * catches any read past len. */
static json_t *parse_n(const char *text, size_t len, const json_limits_t *lim, char *err,
                       size_t errlen)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    json_t *v = json_parse(copy, len, lim, err, errlen);
    free(copy);
    return v;
}

static json_t *parse_ok(const char *text)
{
    char err[128] = "";
    json_t *v = parse_n(text, strlen(text), NULL, err, sizeof(err));
    if (!v)
        fail_msg("parse of %s failed: %s", text, err);
    return v;
}

static void assert_dump(const json_t *v, const char *want)
{
    char *got = json_dumps(v);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

/* Parsing then dumping must give back exactly the input. */
static void assert_roundtrip(const char *text)
{
    json_t *v = parse_ok(text);
    assert_dump(v, text);
    json_free(v);
}

static void assert_parses_to(const char *text, const char *want)
{
    json_t *v = parse_ok(text);
    assert_dump(v, want);
    json_free(v);
}

/* Parsing must fail; when want is given the message must contain it. */
static void assert_error_lim(const char *text, size_t len, const json_limits_t *lim,
                             const char *want)
{
    char err[128] = "";
    json_t *v = parse_n(text, len, lim, err, sizeof(err));
    if (v) {
        json_free(v);
        fail_msg("parse of %.*s should have failed", (int)len, text);
    }
    assert_memory_equal(err, "json: ", 6);
    if (want && !strstr(err, want))
        fail_msg("parse of %.*s: error \"%s\" lacks \"%s\"", (int)len, text, err, want);
}

static void assert_error(const char *text, const char *want)
{
    assert_error_lim(text, strlen(text), NULL, want);
}

static void test_tracker_summary_reply(void **state)
{
    (void)state;
    json_t *v = json_new_array();
    json_t *o = json_new_object();
    assert_int_equal(json_array_push(v, json_new_int(0)), 0);
    assert_int_equal(json_object_set(o, "queue_info", json_new_object()), 0);
    assert_int_equal(json_object_set(o, "server_info", json_new_array()), 0);
    assert_int_equal(json_array_push(v, o), 0);
    assert_dump(v, "[0, {\"queue_info\": {}, \"server_info\": []}]");
    json_free(v);
}

static void test_roundtrip_exact(void **state)
{
    (void)state;
    assert_roundtrip("[3, \"rasp3b\", [9090, \"rasp3b:0.7151893663724195\"], null]");
    assert_roundtrip("[0, {\"queue_info\": {}, \"server_info\": []}]");
    assert_roundtrip("{\"queue_info\": {\"rasp3b\": {\"free\": 1, \"pending\": 0}}, "
                     "\"server_info\": [{\"addr\": [\"127.0.0.1\", 9090], "
                     "\"key\": \"server:rasp3b\"}]}");
    assert_roundtrip("{\"nodes\": [{\"op\": \"null\", \"name\": \"x\", \"inputs\": []}, "
                     "{\"op\": \"tvm_op\", \"name\": \"add\", \"attrs\": {\"num_inputs\": \"2\", "
                     "\"flatten_data\": \"0\"}, \"inputs\": [[0, 0, 0], [1, 0, 0]]}], "
                     "\"arg_nodes\": [0, 1], \"heads\": [[2, 0, 0]], \"attrs\": {\"dltype\": "
                     "[\"list_str\", [\"float32\"]], \"shape\": [\"list_shape\", [[1, 3]]]}, "
                     "\"node_row_ptr\": [0, 1, 2, 3]}");
    assert_roundtrip("[true, false, null, -1, 0, 1.5, \"\", [], {}, [[]], [{}]]");
    assert_roundtrip("\"plain\"");
    assert_roundtrip("42");
    assert_roundtrip("[]");
    assert_roundtrip("{}");
}

static void test_jvm_spacing_and_whitespace(void **state)
{
    (void)state;
    json_t *v = parse_ok("{\"key\" : \"server:x\", \"addr\": [null, \"9090\"]}");
    assert_string_equal(json_get_string(json_object_get(v, "key")), "server:x");
    json_t *addr = json_object_get(v, "addr");
    assert_int_equal(json_array_len(addr), 2);
    assert_true(json_is(json_array_get(addr, 0), JSON_NULL));
    assert_string_equal(json_get_string(json_array_get(addr, 1)), "9090");
    assert_dump(v, "{\"key\": \"server:x\", \"addr\": [null, \"9090\"]}");
    json_free(v);
    assert_parses_to(" \t\r\n[ 1 ,\n2 ]\r\n ", "[1, 2]");
    assert_parses_to("{ }", "{}");
    assert_parses_to("[ ]", "[]");
}

static void test_numbers(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"0.7151893663724195", "0.7151893663724195"},
        {"1e-07", "1e-07"},
        {"1E-7", "1e-07"},
        {"1e16", "1e+16"},
        {"10000000000000000.0", "1e+16"},
        {"1e+16", "1e+16"},
        {"123456789012345678", "123456789012345678"},
        {"1.5", "1.5"},
        {"-0.0", "-0.0"},
        {"-0", "0"},
        {"1.0", "1.0"},
        {"100", "100"},
        {"1e2", "100.0"},
        {"0.0001", "0.0001"},
        {"0.00001", "1e-05"},
        {"9999999999999998.0", "9999999999999998.0"},
        {"9223372036854775807", "9223372036854775807"},
        {"-9223372036854775808", "-9223372036854775808"},
        {"9223372036854775808", "9.223372036854776e+18"},
        {"-9223372036854775809", "-9.223372036854776e+18"},
        {"5e-324", "5e-324"},
        {"1e-400", "0.0"},
        {"1.7976931348623157e308", "1.7976931348623157e+308"},
        {"0.30000000000000004", "0.30000000000000004"},
        {"2.5e-3", "0.0025"},
        {"123.456e5", "12345600.0"},
        {"1e22", "1e+22"},
        {"0.1", "0.1"},
        {"12345678901234567890.5", "1.2345678901234567e+19"},
        {"1000000000000000000000000000000", "1e+30"},
        /* powers of two, where the shortest form is not the closest %e */
        {"7.120236347223045e-307", "7.120236347223045e-307"},
        {"5.858190679279809e-244", "5.858190679279809e-244"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_parses_to(cases[i][0], cases[i][1]);

    /* A 100-zero fraction is longer than any stack copy the reader keeps. */
    char longnum[128] = "0.";
    memset(longnum + 2, '0', 100);
    strcpy(longnum + 102, "1");
    assert_parses_to(longnum, "1e-101");
}

static void test_number_types(void **state)
{
    (void)state;
    json_t *v = parse_ok("[123456789012345678, 9223372036854775808, 1.0, 1e2, -0]");
    assert_true(json_is(json_array_get(v, 0), JSON_INT));
    assert_true(json_is(json_array_get(v, 1), JSON_DOUBLE));
    assert_true(json_is(json_array_get(v, 2), JSON_DOUBLE));
    assert_true(json_is(json_array_get(v, 3), JSON_DOUBLE));
    assert_true(json_is(json_array_get(v, 4), JSON_INT));
    assert_true(json_array_get(v, 0)->u.i == 123456789012345678LL);
    json_free(v);
}

static void test_special_doubles_written_as_python(void **state)
{
    (void)state;
    json_t *v = json_new_array();
    json_array_push(v, json_new_double(HUGE_VAL));
    json_array_push(v, json_new_double(-HUGE_VAL));
    json_array_push(v, json_new_double(NAN));
    json_array_push(v, json_new_double(0.0));
    assert_dump(v, "[Infinity, -Infinity, NaN, 0.0]");
    json_free(v);
}

static void test_unicode_out(void **state)
{
    (void)state;
    json_t *v = json_new_string("\xc3\xa9");
    assert_dump(v, "\"\\u00e9\"");
    json_free(v);
    v = json_new_string("\xf0\x9f\x98\x80");
    assert_dump(v, "\"\\ud83d\\ude00\"");
    json_free(v);
    v = json_new_string("a\xe2\x82\xac"
                        "b\xef\xbf\xbf");
    assert_dump(v, "\"a\\u20acb\\uffff\"");
    json_free(v);
    /* Keys are escaped the same way. */
    v = parse_ok("{\"\\u00e9\": \"\\u00E9\"}");
    assert_dump(v, "{\"\\u00e9\": \"\\u00e9\"}");
    json_free(v);
}

static void test_unicode_in(void **state)
{
    (void)state;
    json_t *v = parse_ok("\"\\ud83d\\ude00\"");
    assert_int_equal(v->u.str.len, 4);
    assert_memory_equal(v->u.str.s, "\xf0\x9f\x98\x80", 5);
    assert_dump(v, "\"\\ud83d\\ude00\"");
    json_free(v);
    v = parse_ok("\"\\u00e9\\u0041\\u20AC\"");
    assert_string_equal(json_get_string(v), "\xc3\xa9"
                                            "A\xe2\x82\xac");
    json_free(v);
    /* Raw UTF-8 is stored as is and escaped on the way out. */
    v = parse_ok("\"\xc3\xa9\xf0\x9f\x98\x80\"");
    assert_string_equal(json_get_string(v), "\xc3\xa9\xf0\x9f\x98\x80");
    assert_dump(v, "\"\\u00e9\\ud83d\\ude00\"");
    json_free(v);
}

static void test_control_chars_out(void **state)
{
    (void)state;
    json_t *v = json_new_string("\x01\x1f\b\f\n\r\t\"\\/\x7f");
    assert_dump(v, "\"\\u0001\\u001f\\b\\f\\n\\r\\t\\\"\\\\/\\u007f\"");
    json_free(v);
    /* \u0000 survives as a counted byte inside a string value. */
    v = parse_ok("\"a\\u0000b\"");
    assert_int_equal(v->u.str.len, 3);
    assert_memory_equal(v->u.str.s, "a\0b", 3);
    assert_dump(v, "\"a\\u0000b\"");
    json_free(v);
    assert_parses_to("\"\\/\\\"\\\\\"", "\"/\\\"\\\\\"");
}

static void test_invalid_utf8_out(void **state)
{
    (void)state;
    /* Each byte of an ill-formed sequence becomes \u00XX: lone continuation,
     * overlong NUL, UTF-8-encoded surrogate, cut-off sequence, 0xff. */
    static const char raw[] = "\x80|\xc0\x80|\xed\xa0\x80|\xe2\x82|\xff|\xf4\x90\x80\x80";
    json_t *v = json_new_stringn(raw, sizeof(raw) - 1);
    assert_dump(v, "\"\\u0080|\\u00c0\\u0080|\\u00ed\\u00a0\\u0080|\\u00e2\\u0082|\\u00ff|"
                   "\\u00f4\\u0090\\u0080\\u0080\"");
    json_free(v);
    /* Raw ill-formed UTF-8 in input is refused, as TVM's peers refuse a
     * frame that does not decode as UTF-8. Otherwise "\xff" and "\xc3\xbf"
     * would be two keys that print the same (found by fuzz_json). */
    static const char *const bad[] = {"[\"\xff\xfe\"]", "[\"a\x80\"]", "[\"\xc0\x80\"]",
                                      "[\"\xed\xa0\x80\"]", "[\"\xe2\x82\"]",
                                      "{\"\xf4\x90\x80\x80\": 1}"};
    char err[128];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_null(json_parse(bad[i], strlen(bad[i]), NULL, err, sizeof(err)));
        assert_non_null(strstr(err, "invalid UTF-8"));
    }
    /* Well-formed raw UTF-8 is kept and escaped on the way out. */
    v = parse_ok("[\"\xc3\xbf\xe2\x82\xac\xf0\x9f\x98\x80\"]");
    assert_dump(v, "[\"\\u00ff\\u20ac\\ud83d\\ude00\"]");
    json_free(v);
}

/* Every proper prefix of a container or string document is incomplete. */
static void test_truncated_prefixes(void **state)
{
    (void)state;
    static const char *const docs[] = {
        "[3, \"rasp3b\", [9090, \"rasp3b:0.7151893663724195\"], null]",
        "{\"key\" : \"server:x\", \"addr\": [null, \"9090\"]}",
        "[0, {\"queue_info\": {}, \"server_info\": []}]",
        "[true, false, null, -1.5e-7, 0, 123456789012345678, {\"a\": [[]]}]",
        "\"\\ud83d\\ude00 \\u00e9 \\n \\\" \\\\\"",
        "{\"nodes\": [{\"op\": \"null\", \"inputs\": []}], \"heads\": [[0, 0, 0]]}",
    };
    for (size_t d = 0; d < sizeof(docs) / sizeof(docs[0]); d++) {
        size_t len = strlen(docs[d]);
        json_t *v = parse_n(docs[d], len, NULL, NULL, 0);
        assert_non_null(v);
        json_free(v);
        for (size_t n = 0; n < len; n++)
            assert_error_lim(docs[d], n, NULL, "unexpected end of input");
    }
}

static void test_not_nul_terminated(void **state)
{
    (void)state;
    char err[64];
    json_t *v = json_parse("[1]xyz", 3, NULL, err, sizeof(err));
    assert_dump(v, "[1]");
    json_free(v);
    v = json_parse("12345", 2, NULL, err, sizeof(err));
    assert_dump(v, "12");
    json_free(v);
    v = json_parse("1.59", 3, NULL, err, sizeof(err));
    assert_dump(v, "1.5");
    json_free(v);
    v = json_parse("1e59", 3, NULL, err, sizeof(err));
    assert_dump(v, "100000.0");
    json_free(v);
    v = json_parse("truex", 4, NULL, err, sizeof(err));
    assert_dump(v, "true");
    json_free(v);
    assert_null(json_parse(NULL, 0, NULL, err, sizeof(err)));
    assert_string_equal(err, "json: unexpected end of input at offset 0");
}

static char *nested(size_t depth)
{
    char *s = malloc(2 * depth + 1);
    assert_non_null(s);
    memset(s, '[', depth);
    memset(s + depth, ']', depth);
    s[2 * depth] = '\0';
    return s;
}

static void test_depth_limit(void **state)
{
    (void)state;
    char *ok = nested(64), *deep = nested(65);
    json_t *v = parse_ok(ok);
    json_free(v);
    assert_error(deep, "nesting too deep at offset 64");
    free(ok);
    free(deep);

    json_limits_t lim = {.max_depth = 3};
    v = parse_n("[{\"a\": []}]", 11, &lim, NULL, 0);
    assert_non_null(v);
    json_free(v);
    assert_error_lim("[{\"a\": [[]]}]", 13, &lim, "nesting too deep");
    assert_error_lim("{\"a\": {\"b\": {\"c\": {}}}}", 23, &lim, "nesting too deep");
}

static void test_node_limit(void **state)
{
    (void)state;
    json_limits_t lim = {.max_nodes = 4};
    json_t *v = parse_n("[1, 2, 3]", 9, &lim, NULL, 0);
    assert_non_null(v);
    json_free(v);
    v = parse_n("{\"a\": 1, \"b\": [2]}", 18, &lim, NULL, 0);
    assert_non_null(v);
    json_free(v);
    assert_error_lim("[1, 2, 3, 4]", 12, &lim, "too many values at offset 10");
    assert_error_lim("[[[[[]]]]]", 10, &lim, "too many values");
}

static void test_trailing_garbage(void **state)
{
    (void)state;
    assert_error("[] x", "trailing characters at offset 3");
    assert_error("{}{}", "trailing characters");
    assert_error("1 2", "trailing characters");
    assert_error("\"a\"\"b\"", "trailing characters");
    assert_error("[]]", "trailing characters");
    assert_error("null,", "trailing characters");
    assert_error("[1]\f", "trailing characters");
    /* A NUL after the document is garbage too, not a terminator. */
    assert_error_lim("[1]\0", 4, NULL, "trailing characters");
}

static void test_syntax_errors(void **state)
{
    (void)state;
    assert_error("[1, 2 3]", "json: expected ',' or ']' at offset 6");
    assert_error("{\"a\": 1 \"b\": 2}", "expected ',' or '}' at offset 8");
    assert_error("{\"a\" 1}", "expected ':' at offset 5");
    assert_error("{1: 2}", "expected string key at offset 1");
    assert_error("{'a': 1}", "expected string key");
    assert_error("{\"a\": 1,}", "expected string key");
    assert_error("[1,]", "invalid value at offset 3");
    assert_error("[,]", "invalid value");
    assert_error("{,}", "expected string key");
    assert_error("", "unexpected end of input at offset 0");
    assert_error("   ", "unexpected end of input at offset 3");
    assert_error("tru", "unexpected end of input");
    assert_error("True", "invalid value at offset 0");
    assert_error("nul1", "invalid value");
    assert_error("nulls", "trailing characters");
    assert_error("[1]]", "trailing characters");
    assert_error("\f[]", "invalid value");
}

static void test_bad_numbers(void **state)
{
    (void)state;
    assert_error("01", "leading zero in number at offset 1");
    assert_error("-01", "leading zero");
    assert_error("[00]", "leading zero");
    assert_error("1.", "unexpected end of input");
    assert_error("1.e5", "expected digit after '.'");
    assert_error(".5", "invalid value");
    assert_error("-", "unexpected end of input");
    assert_error("-a", "invalid value at offset 1");
    assert_error("+1", "invalid value");
    assert_error("1e", "unexpected end of input");
    assert_error("1e+", "unexpected end of input");
    assert_error("1ex", "expected digit in exponent");
    assert_error("0x10", "trailing characters");
    assert_error("1..2", "expected digit after '.'");
    assert_error("--1", "invalid value");
    assert_error("NaN", "invalid value");
    assert_error("Infinity", "invalid value");
    assert_error("-Infinity", "invalid value");
    assert_error("[1.5e999]", "number out of range at offset 1");
    assert_error("-1e400", "number out of range");
}

static void test_bad_strings(void **state)
{
    (void)state;
    assert_error("\"abc", "unexpected end of input at offset 4");
    assert_error("\"a\\\"", "unexpected end of input");
    assert_error("\"a\tb\"", "control character in string at offset 2");
    assert_error("\"\x01\"", "control character in string");
    assert_error_lim("\"a\0b\"", 5, NULL, "control character in string");
    assert_error("\"\\x\"", "invalid escape at offset 1");
    assert_error("\"\\'\"", "invalid escape");
    assert_error("\"\\U0041\"", "invalid escape");
    assert_error_lim("\"\\\0\"", 4, NULL, "invalid escape");
    assert_error("\"\\u12G4\"", "invalid \\u escape at offset 1");
    assert_error("\"\\u00\"", "invalid \\u escape");
    assert_error("\"\\u\"", "invalid \\u escape");
    assert_error("{\"a\\u0000\": 1}", "NUL in object key at offset 1");
}

static void test_lone_surrogates(void **state)
{
    (void)state;
    assert_error("\"\\ud800\"", "lone surrogate at offset 1");
    assert_error("\"\\udc00\"", "lone surrogate");
    assert_error("\"\\uDFFF\"", "lone surrogate");
    assert_error("\"\\ud800\\u0041\"", "lone surrogate");
    assert_error("\"\\ud800x\"", "lone surrogate");
    assert_error("\"\\ud800\\n\"", "lone surrogate");
    assert_error("\"\\ud800\\ud800\"", "lone surrogate");
    assert_error("\"\\ude00\\ud83d\"", "lone surrogate");
    assert_error("\"\\ud83d\\ude0\"", "lone surrogate");
    assert_error("[\"ok\", \"x\\ud83d\"]", "lone surrogate at offset 9");
}

static void test_error_buffer(void **state)
{
    (void)state;
    char small[8];
    assert_null(json_parse("[1 2]", 5, NULL, small, sizeof(small)));
    assert_string_equal(small, "json: e");
    assert_null(json_parse("[1 2]", 5, NULL, NULL, 0));
    char untouched[4] = "abc";
    assert_null(json_parse("[1 2]", 5, NULL, untouched, 0));
    assert_string_equal(untouched, "abc");
}

static void test_object_set_replace_order(void **state)
{
    (void)state;
    json_t *o = json_new_object();
    assert_int_equal(json_object_set(o, "a", json_new_int(1)), 0);
    assert_int_equal(json_object_set(o, "b", json_new_int(2)), 0);
    assert_int_equal(json_object_set(o, "c", json_new_int(3)), 0);
    assert_int_equal(json_object_set(o, "b", json_new_string("x")), 0);
    assert_dump(o, "{\"a\": 1, \"b\": \"x\", \"c\": 3}");

    json_t *a = json_object_take(o, "a");
    int64_t i;
    assert_int_equal(json_get_int(a, &i), 0);
    assert_int_equal(i, 1);
    json_free(a);
    assert_null(json_object_take(o, "a"));
    assert_dump(o, "{\"b\": \"x\", \"c\": 3}");
    assert_int_equal(json_object_set(o, "a", json_new_null()), 0);
    assert_dump(o, "{\"b\": \"x\", \"c\": 3, \"a\": null}");
    json_free(json_object_take(o, "a"));
    json_free(json_object_take(o, "c"));
    json_free(json_object_take(o, "b"));
    assert_dump(o, "{}");

    /* Failures free the value they were handed. */
    assert_int_equal(json_object_set(o, "k", NULL), -1);
    assert_int_equal(json_object_set(o, NULL, json_new_int(1)), -1);
    json_t *arr = json_new_array();
    assert_int_equal(json_object_set(arr, "k", json_new_int(1)), -1);
    assert_int_equal(json_array_push(o, json_new_int(1)), -1);
    json_free(arr);
    json_free(o);
}

static void test_duplicate_keys_like_python(void **state)
{
    (void)state;
    /* json.loads keeps the first position and the last value. */
    json_t *v = parse_ok("{\"a\": 1, \"b\": 2, \"a\": [3]}");
    assert_dump(v, "{\"a\": [3], \"b\": 2}");
    json_free(v);
}

static void test_many_members(void **state)
{
    (void)state;
    json_t *a = json_new_array(), *o = json_new_object();
    char key[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(json_array_push(a, json_new_int(i)), 0);
        assert_int_equal(json_object_set(o, key, json_new_int(i)), 0);
    }
    assert_int_equal(json_array_len(a), 1000);
    assert_true(json_array_get(a, 999)->u.i == 999);
    assert_null(json_array_get(a, 1000));
    assert_true(json_object_get(o, "k500")->u.i == 500);
    char *text = json_dumps(o);
    json_t *back = parse_ok(text);
    assert_dump(back, text);
    free(text);
    json_free(back);
    json_free(a);
    json_free(o);
}

static void test_clone(void **state)
{
    (void)state;
    const char *text = "{\"a\": [1, 2.5, \"s\\u0000t\", true, null, {\"b\": {}}], "
                       "\"\\u00e9\": -9223372036854775808}";
    json_t *v = parse_ok(text);
    json_t *c = json_clone(v);
    assert_non_null(c);
    assert_ptr_not_equal(c, v);
    assert_dump(c, text);
    assert_int_equal(json_array_get(json_object_get(c, "a"), 2)->u.str.len, 3);
    /* The copy is deep: changing it leaves the original alone. */
    json_object_set(json_object_get(c, "a")->u.arr.items[5], "b", json_new_int(7));
    assert_dump(v, text);
    json_free(v);
    json_free(c);
    assert_null(json_clone(NULL));
}

static void test_get_int_and_string(void **state)
{
    (void)state;
    json_t *v = parse_ok("[7, 3.0, 3.5, 1e19, -9.223372036854775808e18, \"7\", null, -0.0]");
    int64_t i = 0;
    assert_int_equal(json_get_int(json_array_get(v, 0), &i), 0);
    assert_int_equal(i, 7);
    assert_int_equal(json_get_int(json_array_get(v, 1), &i), 0);
    assert_int_equal(i, 3);
    assert_int_equal(json_get_int(json_array_get(v, 2), &i), -1);
    assert_int_equal(json_get_int(json_array_get(v, 3), &i), -1);
    assert_int_equal(json_get_int(json_array_get(v, 4), &i), 0);
    assert_true(i == INT64_MIN);
    assert_int_equal(json_get_int(json_array_get(v, 5), &i), -1);
    assert_int_equal(json_get_int(json_array_get(v, 6), &i), -1);
    assert_int_equal(json_get_int(json_array_get(v, 7), &i), 0);
    assert_int_equal(i, 0);
    assert_int_equal(json_get_int(NULL, &i), -1);
    json_t *nan = json_new_double(NAN), *inf = json_new_double(HUGE_VAL);
    assert_int_equal(json_get_int(nan, &i), -1);
    assert_int_equal(json_get_int(inf, &i), -1);
    json_free(nan);
    json_free(inf);
    assert_string_equal(json_get_string(json_array_get(v, 5)), "7");
    assert_null(json_get_string(json_array_get(v, 0)));
    assert_null(json_get_string(NULL));
    assert_null(json_object_get(v, "x"));
    assert_int_equal(json_array_len(json_array_get(v, 0)), 0);
    json_free(v);
    json_free(NULL);
}

static void test_dump_into_buf(void **state)
{
    (void)state;
    json_t *v = parse_ok("[1, 2, 3]");
    buf_t b;
    buf_init(&b, 0);
    buf_append_str(&b, "x");
    assert_int_equal(json_dump(v, &b), 0);
    assert_int_equal(b.len, 10);
    assert_memory_equal(buf_head(&b), "x[1, 2, 3]", 10);
    buf_free(&b);

    /* Past the cap nothing half-written is left behind. */
    buf_init(&b, 6);
    buf_append_str(&b, "ab");
    assert_int_equal(json_dump(v, &b), -1);
    assert_int_equal(b.len, 2);
    buf_free(&b);
    assert_int_equal(json_dump(NULL, &b), -1);
    json_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tracker_summary_reply),
        cmocka_unit_test(test_roundtrip_exact),
        cmocka_unit_test(test_jvm_spacing_and_whitespace),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_number_types),
        cmocka_unit_test(test_special_doubles_written_as_python),
        cmocka_unit_test(test_unicode_out),
        cmocka_unit_test(test_unicode_in),
        cmocka_unit_test(test_control_chars_out),
        cmocka_unit_test(test_invalid_utf8_out),
        cmocka_unit_test(test_truncated_prefixes),
        cmocka_unit_test(test_not_nul_terminated),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_node_limit),
        cmocka_unit_test(test_trailing_garbage),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_bad_numbers),
        cmocka_unit_test(test_bad_strings),
        cmocka_unit_test(test_lone_surrogates),
        cmocka_unit_test(test_error_buffer),
        cmocka_unit_test(test_object_set_replace_order),
        cmocka_unit_test(test_duplicate_keys_like_python),
        cmocka_unit_test(test_many_members),
        cmocka_unit_test(test_clone),
        cmocka_unit_test(test_get_int_and_string),
        cmocka_unit_test(test_dump_into_buf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
