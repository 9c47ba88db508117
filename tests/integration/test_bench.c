/* `tvmrpc bench` as CI runs it: --short --json against our real server,
 * tracker and proxy (with a server through it), and in local mode where it
 * starts its own. The JSON must parse with base/json.h and hold every
 * section with sane values. No timing thresholds: only that each figure
 * was measured (positive, finite) and is consistent (bytes, counts). */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/json.h"

#define RUN_MS 180000 /* a short run takes seconds; ASan builds are slower */
#define OUT_CAP (256 * 1024)
#define PX_KEY "benchpx"

static hproc_t srv, trk, px, psrv;

/* ---- processes ---------------------------------------------------------------- */

static int setup(void **state)
{
    if (h_start_server(&srv, NULL) < 0 || h_start_tracker(&trk, NULL) < 0 ||
        h_start_proxy(&px, NULL) < 0)
        return -1;
    if (h_start_server_through(&psrv, px.port, PX_KEY, NULL) < 0 ||
        h_wait_log(&px, "waits for key " PX_KEY, H_TIMEOUT_MS) < 0) {
        h_dump_log(&px);
        h_dump_log(&psrv);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    h_stop(&psrv);
    h_stop(&px);
    h_stop(&trk);
    h_stop(&srv);
    return 0;
}

/* Run tvmrpc with argv; its stdout parsed as JSON (fails the test if not). */
static json_t *run_json(const char *const *argv)
{
    char *out = malloc(OUT_CAP);
    assert_non_null(out);
    int rc = h_run(argv, out, OUT_CAP, RUN_MS);
    if (rc != 0)
        fail_msg("tvmrpc bench exited with %d; stdout:\n%s", rc, out);
    char err[256];
    json_t *j = json_parse(out, strlen(out), NULL, err, sizeof(err));
    if (!j)
        fail_msg("bench JSON does not parse (%s):\n%s", err, out);
    free(out);
    return j;
}

/* ---- field checks ------------------------------------------------------------- */

static json_t *get(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        fail_msg("bench JSON: no field '%s'", key);
    return v;
}

static double num(const json_t *o, const char *key)
{
    json_t *v = get(o, key);
    if (v->type == JSON_INT)
        return (double)v->u.i;
    if (v->type != JSON_DOUBLE)
        fail_msg("bench JSON: '%s' is not a number", key);
    return v->u.d;
}

/* A measured figure: finite and positive. */
static double pos(const json_t *o, const char *key)
{
    double v = num(o, key);
    if (!isfinite(v) || v <= 0)
        fail_msg("bench JSON: '%s' = %g is not a positive figure", key, v);
    return v;
}

static void check_call(const json_t *root, int proxy)
{
    json_t *c = get(root, "empty_call");
    /* A no-argument kCallFunc is 24 bytes on the wire (classic, PROTOCOL.md §4.5). */
    assert_int_equal((int)num(c, "req_bytes"), 24);
    assert_true(num(c, "rep_bytes") >= 16);
    assert_true(json_is(get(c, "bytes_measured"), JSON_BOOL));
    const char *sides[] = {"tcp", "direct", "tcp_relay", "proxy"};
    for (int i = 0; i < (proxy ? 4 : 2); i++) {
        json_t *s = get(c, sides[i]);
        assert_true(pos(s, "p99_us") >= pos(s, "p50_us"));
        assert_true(pos(s, "samples") >= 100);
        if (i)
            pos(s, "p50_vs_tcp");
    }
    if (proxy)
        pos(get(c, "proxy"), "p50_vs_direct");
}

/* copy_to / copy_from / upload: sizes ascending, every side measured, and
 * the wire carried at least the payload in the data's direction. */
static void check_tput(const json_t *root, const char *kind, size_t want_n, int proxy)
{
    json_t *arr = get(root, kind);
    assert_int_equal(json_array_len(arr), want_n);
    double last = 0;
    for (size_t i = 0; i < want_n; i++) {
        json_t *e = json_array_get(arr, i);
        double bytes = pos(e, "bytes");
        assert_true(bytes > last);
        last = bytes;
        double payload_dir = !strcmp(kind, "copy_from") ? pos(e, "rep_bytes") : pos(e, "req_bytes");
        assert_true(payload_dir > bytes);
        const char *sides[] = {"tcp", "direct", "tcp_relay", "proxy"};
        for (int k = 0; k < (proxy ? 4 : 2); k++) {
            json_t *s = get(e, sides[k]);
            assert_true(pos(s, "best_mib_s") >= pos(s, "mib_s"));
            pos(s, "samples");
            if (k)
                pos(s, "vs_tcp");
        }
        if (proxy)
            pos(get(e, "proxy"), "vs_direct");
    }
}

static void check_tracker(const json_t *root, int servers, int clients)
{
    json_t *t = get(root, "tracker");
    assert_int_equal((int)num(t, "servers"), servers);
    assert_int_equal((int)num(t, "clients"), clients);
    assert_true(pos(t, "grant_bytes") > 20);
    for (int k = 0; k < 2; k++) {
        json_t *s = get(t, k ? "tcp" : "tracker");
        pos(s, "cycles_per_s");
        pos(s, "cycles");
        assert_true(pos(s, "round_max") >= pos(s, "round_min"));
        assert_true(pos(s, "grant_p99_us") >= pos(s, "grant_p50_us"));
    }
    pos(t, "vs_tcp");
}

static void check_checks(const json_t *root, int min)
{
    json_t *arr = get(root, "checks");
    assert_true(json_array_len(arr) >= (size_t)min);
    for (size_t i = 0; i < json_array_len(arr); i++) {
        json_t *k = json_array_get(arr, i);
        assert_non_null(json_get_string(get(k, "name")));
        assert_non_null(json_get_string(get(k, "target")));
        pos(k, "value");
        assert_true(json_is(get(k, "ok"), JSON_BOOL));
    }
    assert_true(json_is(get(root, "ok"), JSON_BOOL));
}

static void check_head(const json_t *root, int local)
{
    assert_string_equal(json_get_string(get(root, "bench")), "tvmrpc");
    assert_string_equal(json_get_string(get(root, "mode")), "short");
    assert_int_equal((int)num(root, "rounds"), 2);
    json_t *m = get(root, "machine");
    pos(m, "cpus");
    assert_true(num(m, "rpc_other_pct") >= 0);
    json_t *t = get(root, "targets");
    assert_true(json_is(get(t, "local"), JSON_BOOL));
    assert_int_equal(get(t, "local")->u.boolean, local);
    assert_non_null(json_get_string(get(t, "direct")));
    assert_non_null(json_get_string(get(t, "direct_generation")));
}

/* ---- tests -------------------------------------------------------------------- */

/* Against the processes setup() started: server, tracker, proxy. */
static void test_short_json_against_running(void **state)
{
    char sport[16], tracker[64], proxy[64], pid[16];
    snprintf(sport, sizeof(sport), "%d", srv.port);
    snprintf(tracker, sizeof(tracker), "127.0.0.1:%d", trk.port);
    snprintf(proxy, sizeof(proxy), "127.0.0.1:%d", px.port);
    snprintf(pid, sizeof(pid), "%d", (int)srv.pid);
    const char *argv[] = {"bench",     "--short",     "--json",    "--host",       "127.0.0.1",
                          "--port",    sport,         "--tracker", tracker,        "--proxy",
                          proxy,       "--proxy-key", PX_KEY,      "--server-pid", pid,
                          "--timeout", "60",          NULL};
    json_t *j = run_json(argv);
    check_head(j, 0);
    assert_non_null(json_get_string(get(get(j, "targets"), "proxy")));
    assert_non_null(json_get_string(get(get(j, "targets"), "tracker")));
    check_call(j, 1);
    check_tput(j, "copy_to", 3, 1);
    check_tput(j, "copy_from", 3, 1);
    check_tput(j, "upload", 1, 1);
    check_tracker(j, 50, 8);
    /* --server-pid: RSS, but no start-up time (we did not start it). */
    json_t *s = get(j, "server");
    assert_true(pos(s, "rss_kib_start") > 100);
    assert_true(pos(s, "rss_kib_after_session") > 100);
    assert_null(json_object_get(s, "start_ms"));
    check_checks(j, 6);
    json_free(j);
}

/* No target: the bench starts its own server, proxy and tracker, times the
 * server's start-up and reads its RSS, and leaves nothing running. */
static void test_short_json_local(void **state)
{
    const char *argv[] = {"bench",     "--short", "--json",    "--max-size", "1",
                          "--servers", "20",      "--clients", "4",          NULL};
    json_t *j = run_json(argv);
    check_head(j, 1);
    check_call(j, 1);
    check_tput(j, "copy_to", 2, 1);
    check_tput(j, "copy_from", 2, 1);
    check_tput(j, "upload", 1, 1);
    check_tracker(j, 20, 4);
    json_t *s = get(j, "server");
    json_t *st = get(s, "start_ms");
    assert_int_equal((int)num(st, "trials"), 3);
    assert_true(pos(st, "max") >= pos(st, "min"));
    pos(s, "rss_kib_start");
    pos(s, "rss_kib_after_session");
    check_checks(j, 6);
    json_free(j);
}

/* Tables by default; only the direct server measured. */
static void test_table_direct_only(void **state)
{
    char sport[16];
    snprintf(sport, sizeof(sport), "%d", srv.port);
    const char *argv[] = {"bench",   "--short", "--host",     "127.0.0.1", "--port", sport,
                          "--calls", "50",      "--max-size", "1",         NULL};
    char *out = malloc(OUT_CAP);
    assert_non_null(out);
    int rc = h_run(argv, out, OUT_CAP, RUN_MS);
    if (rc != 0)
        fail_msg("tvmrpc bench exited with %d:\n%s", rc, out);
    assert_non_null(strstr(out, "empty call round trip (24 B out"));
    assert_non_null(strstr(out, "array copy to the server"));
    assert_non_null(strstr(out, "array copy from the server"));
    assert_non_null(strstr(out, "empty_call_p50_vs_tcp"));
    assert_null(strstr(out, "TCP relay")); /* only with a proxy */
    assert_null(strstr(out, "tracker:"));
    free(out);
}

static void test_usage_and_errors(void **state)
{
    char out[4096];
    const char *no_key[] = {"bench", "--proxy", "127.0.0.1:1", NULL};
    assert_int_equal(h_run(no_key, out, sizeof(out), H_TIMEOUT_MS), 2);
    const char *no_host[] = {"bench", "--port", "9091", NULL};
    assert_int_equal(h_run(no_host, out, sizeof(out), H_TIMEOUT_MS), 2);
    const char *bad_load[] = {"bench", "--tracker", "127.0.0.1:1", "--servers",
                              "2",     "--clients", "4",           NULL};
    assert_int_equal(h_run(bad_load, out, sizeof(out), H_TIMEOUT_MS), 2);
    const char *help[] = {"bench", "--help", NULL};
    assert_int_equal(h_run(help, out, sizeof(out), H_TIMEOUT_MS), 0);
    assert_non_null(strstr(out, "--proxy-key"));
    /* Nothing listens there: a clean failure, not a hang. */
    const char *absent[] = {"bench", "--short",   "--host", "127.0.0.1", "--port",
                            "1",     "--timeout", "5",      NULL};
    assert_int_equal(h_run(absent, out, sizeof(out), 30000), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_json_against_running),
        cmocka_unit_test(test_short_json_local),
        cmocka_unit_test(test_table_direct_only),
        cmocka_unit_test(test_usage_and_errors),
    };
    return cmocka_run_group_tests_name("bench", tests, setup, teardown);
}
