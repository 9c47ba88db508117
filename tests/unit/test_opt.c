#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "cli/opt.h"

typedef struct vals {
    const char *host;
    int port, silent;
    double t;
} vals_t;

static int parse(vals_t *v, int argc, const char **argv, char **pos, int *npos, char *err)
{
    memset(v, 0, sizeof(*v));
    const opt_spec_t specs[] = {
        {"host", OPT_STR, &v->host, "HOST", "h", 0, 0},
        {"port", OPT_INT, &v->port, "PORT", "p", 0, 65535},
        {"silent", OPT_FLAG, &v->silent, NULL, "s", 0, 0},
        {"timeout", OPT_NUM, &v->t, "S", "t", 0, 0},
        {NULL, 0, NULL, NULL, NULL, 0, 0},
    };
    return opt_parse(specs, argc, (char **)argv, pos, 2, npos, err, 256);
}

static void test_both_value_forms(void **state)
{
    vals_t v;
    char err[256], *pos[2];
    int npos;
    const char *a[] = {"--host", "127.0.0.1", "--port=9190", "--silent", "--timeout", "2.5", "x"};
    assert_int_equal(parse(&v, 7, a, pos, &npos, err), 0);
    assert_string_equal(v.host, "127.0.0.1");
    assert_int_equal(v.port, 9190);
    assert_int_equal(v.silent, 1);
    assert_true(v.t == 2.5);
    assert_int_equal(npos, 1);
    assert_string_equal(pos[0], "x");
}

static void test_errors_name_the_option(void **state)
{
    vals_t v;
    char err[256], *pos[2];
    int npos;
    const char *unknown[] = {"--nope"};
    assert_int_equal(parse(&v, 1, unknown, pos, &npos, err), -1);
    assert_non_null(strstr(err, "--nope"));
    const char *range[] = {"--port", "70000"};
    assert_int_equal(parse(&v, 2, range, pos, &npos, err), -1);
    assert_non_null(strstr(err, "--port"));
    const char *notint[] = {"--port=90a"};
    assert_int_equal(parse(&v, 1, notint, pos, &npos, err), -1);
    assert_non_null(strstr(err, "90a"));
    const char *missing[] = {"--host"};
    assert_int_equal(parse(&v, 1, missing, pos, &npos, err), -1);
    assert_non_null(strstr(err, "needs a value"));
    const char *flagval[] = {"--silent=1"};
    assert_int_equal(parse(&v, 1, flagval, pos, &npos, err), -1);
    const char *toomany[] = {"a", "b", "c"};
    assert_int_equal(parse(&v, 3, toomany, pos, &npos, err), -1);
    const char *shortopt[] = {"-x"};
    assert_int_equal(parse(&v, 1, shortopt, pos, &npos, err), -1);
}

static void test_help_and_double_dash(void **state)
{
    vals_t v;
    char err[256], *pos[2];
    int npos;
    const char *h[] = {"--port", "1", "-h"};
    assert_int_equal(parse(&v, 3, h, pos, &npos, err), OPT_PARSE_HELP);
    const char *dd[] = {"--", "--port"};
    assert_int_equal(parse(&v, 2, dd, pos, &npos, err), 0);
    assert_string_equal(pos[0], "--port");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_both_value_forms),
        cmocka_unit_test(test_errors_name_the_option),
        cmocka_unit_test(test_help_and_double_dash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
