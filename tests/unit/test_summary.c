/* query_rpc_tracker output, byte for byte against PROTOCOL.md §1.11. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/summary.h"

static const char *example_body =
    "{\"queue_info\": {\"v100\": {\"free\": 0, \"pending\": 2}, \"rasp3b\": {\"free\": 1, "
    "\"pending\": 0}, \"idle\": {\"free\": 0, \"pending\": 0}}, \"server_info\": ["
    "{\"key\": \"server:rasp3b\", \"addr\": [\"192.168.1.23\", 9090]}, "
    "{\"key\": \"server:v100\", \"addr\": [\"10.0.0.2\", \"9091\"]}, "
    "{\"key\": \"server:proxy[a,b]\", \"addr\": [\"10.0.0.9\", 9090]}]}";

static const char *example_v24 = "Tracker address 127.0.0.1:9190\n"
                                 "\n"
                                 "Server List\n"
                                 "------------------------------\n"
                                 "server-address           key\n"
                                 "------------------------------\n"
                                 "10.0.0.9:9090            server:proxy[a,b]\n"
                                 "192.168.1.23:9090        server:rasp3b\n"
                                 "10.0.0.2:9091            server:v100\n"
                                 "------------------------------\n"
                                 "\n"
                                 "Queue Status\n"
                                 "------------------------------\n"
                                 "key      total  free  pending\n"
                                 "------------------------------\n"
                                 "rasp3b   1      1     0      \n"
                                 "v100     1      0     2      \n"
                                 "------------------------------\n"
                                 "\n";

static char *render(const char *body_text, summary_layout_t layout)
{
    char err[128];
    json_t *body = json_parse(body_text, strlen(body_text), NULL, err, sizeof(err));
    assert_non_null(body);
    buf_t out;
    buf_init(&out, 0);
    assert_int_equal(summary_format_query("127.0.0.1", 9190, body, layout, &out), 0);
    json_free(body);
    return buf_steal_cstr(&out);
}

static void test_spec_example_v24(void **state)
{
    char *s = render(example_body, SUMMARY_LAYOUT_V24);
    assert_string_equal(s, example_v24);
    free(s);
}

static void test_spec_example_v09_right_aligned(void **state)
{
    char *s = render(example_body, SUMMARY_LAYOUT_V09);
    assert_non_null(strstr(s, "\n        10.0.0.9:9090    server:proxy[a,b]\n"));
    assert_non_null(strstr(s, "\n    192.168.1.23:9090    server:rasp3b\n"));
    free(s);
}

static void test_empty_tracker(void **state)
{
    char *s = render("{\"queue_info\": {}, \"server_info\": []}", SUMMARY_LAYOUT_V24);
    const char *dash27 = "---------------------------\n";
    char expect[1024];
    snprintf(expect, sizeof(expect),
             "Tracker address 127.0.0.1:9190\n\nServer List\n"
             "------------------------------\nserver-address           key\n"
             "------------------------------\n------------------------------\n\n"
             "Queue Status\n%skey   total  free  pending\n%s%s\n",
             dash27, dash27, dash27);
    assert_string_equal(s, expect);
    free(s);
}

static void test_v08_layout(void **state)
{
    char *s = render(example_body, SUMMARY_LAYOUT_V08);
    assert_non_null(strstr(s, "Server List\n----------------------------\nserver-address\tkey\n"));
    /* unsorted: SUMMARY order */
    char *a = strstr(s, "192.168.1.23:9090\tserver:rasp3b\n");
    char *b = strstr(s, "10.0.0.9:9090\tserver:proxy[a,b]\n");
    assert_non_null(a);
    assert_non_null(b);
    assert_true(a < b);
    free(s);
}

static void test_long_address_not_truncated(void **state)
{
    char *s = render("{\"queue_info\": {\"k\": {\"free\": 1, \"pending\": 0}}, \"server_info\": "
                     "[{\"key\": \"server:k\", \"addr\": [\"fe80::1234:5678:9abc:def0\", 9090]}]}",
                     SUMMARY_LAYOUT_V24);
    assert_non_null(strstr(s, "\nfe80::1234:5678:9abc:def0:9090    server:k\n"));
    assert_non_null(strstr(s, "\nk   1      1     0      \n"));
    free(s);
}

static void test_malformed_body(void **state)
{
    char err[64];
    json_t *body = json_parse("{\"queue_info\": []}", 18, NULL, err, sizeof(err));
    buf_t out;
    buf_init(&out, 0);
    assert_int_equal(summary_format(body, SUMMARY_LAYOUT_V24, &out), -1);
    json_free(body);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_example_v24),
        cmocka_unit_test(test_spec_example_v09_right_aligned),
        cmocka_unit_test(test_empty_tracker),
        cmocka_unit_test(test_v08_layout),
        cmocka_unit_test(test_long_address_not_truncated),
        cmocka_unit_test(test_malformed_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
