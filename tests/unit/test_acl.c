#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "base/acl.h"

static void test_ipv4_networks(void **state)
{
    acl_t a;
    char err[128];
    assert_int_equal(acl_parse(&a, "127.0.0.0/8,10.1.2.3,192.168.0.0/16", err, sizeof(err)), 0);
    assert_true(acl_allows(&a, "127.0.0.1"));
    assert_true(acl_allows(&a, "127.255.1.2"));
    assert_true(acl_allows(&a, "10.1.2.3"));
    assert_false(acl_allows(&a, "10.1.2.4"));
    assert_true(acl_allows(&a, "192.168.77.1"));
    assert_false(acl_allows(&a, "192.169.0.1"));
    assert_true(acl_allows(&a, "::ffff:127.0.0.1")); /* dual-stack peer */
    assert_false(acl_allows(&a, "::1"));
    assert_false(acl_allows(&a, "not-an-ip"));
    acl_free(&a);
}

static void test_ipv6_and_odd_prefixes(void **state)
{
    acl_t a;
    char err[128];
    assert_int_equal(acl_parse(&a, "::1/128,fd00::/8,172.16.0.0/12,0.0.0.0/0", err, sizeof(err)),
                     0);
    assert_true(acl_allows(&a, "::1"));
    assert_true(acl_allows(&a, "fd12:3456::1"));
    assert_false(acl_allows(&a, "fe80::1"));
    assert_true(acl_allows(&a, "8.8.8.8")); /* 0.0.0.0/0 */
    acl_free(&a);
    assert_int_equal(acl_parse(&a, "172.16.0.0/12", err, sizeof(err)), 0);
    assert_true(acl_allows(&a, "172.31.255.255"));
    assert_false(acl_allows(&a, "172.32.0.0"));
    acl_free(&a);
}

static void test_bad_specs(void **state)
{
    acl_t a;
    char err[128];
    const char *bad[] = {"",      "10.0.0.0/33", "10.0.0.0/",    "10.0.0.0/x",
                         "1.2.3", "::1/129",     "10.0.0.0/8,,", "host.example"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (!bad[i][0]) {
            /* An empty list parses to "allow everyone". */
            assert_int_equal(acl_parse(&a, bad[i], err, sizeof(err)), 0);
            assert_true(acl_allows(&a, "1.2.3.4"));
            acl_free(&a);
            continue;
        }
        assert_int_equal(acl_parse(&a, bad[i], err, sizeof(err)), -1);
        assert_true(strlen(err) > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4_networks),
        cmocka_unit_test(test_ipv6_and_odd_prefixes),
        cmocka_unit_test(test_bad_specs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
