/* The tracker as a TVM peer sees it: real `tvmrpc tracker` process, real
 * sockets on 127.0.0.1, replies compared byte for byte with what TVM's
 * Python tracker sends (PROTOCOL.md §1). */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/net.h"
#include "tracker/proto.h"

static hproc_t tracker;

static int setup(void **state)
{
    const char *extra[] = {"--handshake-timeout", "1", "--stop-key", "s3cret", NULL};
    return h_start_tracker(&tracker, extra);
}

static int teardown(void **state)
{
    int st = h_stop(&tracker);
    /* SIGTERM is a clean shutdown: exit status 0. */
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static void expect_reply(int fd, const char *req, const char *want)
{
    char *got = h_tracker_call(fd, req);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void expect_recv(int fd, const char *want)
{
    char *got = h_tracker_recv_text(fd, H_TIMEOUT_MS);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

/* A Python server registering as in the tracker trace. */
static int register_server(const char *key, const char *matchkey, const char *port)
{
    int fd = h_tracker_connect(tracker.port);
    assert_true(fd >= 0);
    char req[512];
    snprintf(req, sizeof(req), "[5, {\"key\": \"server:%s\", \"addr\": [null, %s]}]", key, port);
    expect_reply(fd, req, "0");
    snprintf(req, sizeof(req), "[3, \"%s\", [%s, \"%s\"], null]", key, port, matchkey);
    expect_reply(fd, req, "0");
    return fd;
}

static char *summary(void)
{
    int fd = h_tracker_connect(tracker.port);
    assert_true(fd >= 0);
    char *s = h_tracker_call(fd, "[6]");
    close(fd);
    assert_non_null(s);
    return s;
}

static int summary_contains(void *needle)
{
    char *s = summary();
    int ok = strstr(s, needle) != NULL;
    free(s);
    return ok;
}

static void test_register_request_grant_reannounce(void **state)
{
    int srv = register_server("t1", "t1:0.9035544610277166", "9640");
    int cli = h_tracker_connect(tracker.port);
    expect_reply(cli, "[6]",
                 "[0, {\"queue_info\": {\"t1\": {\"free\": 1, \"pending\": 0}}, \"server_info\": "
                 "[{\"key\": \"server:t1\", \"addr\": [\"127.0.0.1\", 9640]}]}]");
    expect_reply(srv, "[7]", "[\"t1:0.9035544610277166\"]");
    expect_reply(cli, "[4, \"t1\", \"\", 1]",
                 "[0, [\"127.0.0.1\", 9640, \"t1:0.9035544610277166\"]]");
    /* Handed out: no longer pending for its server. */
    expect_reply(srv, "[7]", "[]");
    /* Session over: the server re-announces with a fresh matchkey. */
    expect_reply(srv, "[3, \"t1\", [9640, \"t1:0.04071906986160079\"], null]", "0");
    expect_reply(srv, "[7]", "[\"t1:0.04071906986160079\"]");
    expect_reply(cli, "[6]",
                 "[0, {\"queue_info\": {\"t1\": {\"free\": 1, \"pending\": 0}}, \"server_info\": "
                 "[{\"key\": \"server:t1\", \"addr\": [\"127.0.0.1\", 9640]}]}]");
    close(cli);
    close(srv);
    assert_int_equal(
        h_wait_until(summary_contains, "\"t1\": {\"free\": 0, \"pending\": 0}", H_TIMEOUT_MS), 0);
}

static void test_waiting_request_served_on_put(void **state)
{
    int cli = h_tracker_connect(tracker.port);
    assert_int_equal(h_tracker_send(cli, "[4, \"t2\", \"\", 1]"), 0);
    /* Pipelined SUMMARY is answered while the REQUEST waits. */
    char *s = h_tracker_call(cli, "[6]");
    assert_non_null(strstr(s, "\"t2\": {\"free\": 0, \"pending\": 1}"));
    free(s);
    int srv = h_tracker_connect(tracker.port);
    /* C++ server style: hand-built JSON, port as a string, custom address. */
    expect_reply(srv, "[5, {\"key\": \"server:t2\", \"addr\": [\"board7.lab\", \"9090\"]}]", "0");
    expect_reply(srv, "[3, \"t2\", [9090, \"t2:0.602763\"], \"board7.lab\"]", "0");
    expect_recv(cli, "[0, [\"board7.lab\", 9090, \"t2:0.602763\"]]");
    s = summary();
    assert_non_null(strstr(s, "{\"key\": \"server:t2\", \"addr\": [\"board7.lab\", \"9090\"]}"));
    free(s);
    close(cli);
    close(srv);
}

static void test_priority_and_arrival_order(void **state)
{
    int c[4];
    const char *req[4] = {"[4, \"t3\", \"\", 1]", "[4, \"t3\", \"\", 5]", "[4, \"t3\", \"\", 1]",
                          "[4, \"t3\", \"\", 5.5]"};
    for (int i = 0; i < 4; i++) {
        c[i] = h_tracker_connect(tracker.port);
        assert_int_equal(h_tracker_send(c[i], req[i]), 0);
    }
    assert_int_equal(
        h_wait_until(summary_contains, "\"t3\": {\"free\": 0, \"pending\": 4}", H_TIMEOUT_MS), 0);
    int srv = register_server("t3", "t3:a", "9001");
    expect_recv(c[3], "[0, [\"127.0.0.1\", 9001, \"t3:a\"]]");
    expect_reply(srv, "[3, \"t3\", [9001, \"t3:b\"], null]", "0");
    expect_recv(c[1], "[0, [\"127.0.0.1\", 9001, \"t3:b\"]]");
    expect_reply(srv, "[3, \"t3\", [9001, \"t3:c\"], null]", "0");
    expect_recv(c[0], "[0, [\"127.0.0.1\", 9001, \"t3:c\"]]");
    expect_reply(srv, "[3, \"t3\", [9001, \"t3:d\"], null]", "0");
    expect_recv(c[2], "[0, [\"127.0.0.1\", 9001, \"t3:d\"]]");
    for (int i = 0; i < 4; i++)
        close(c[i]);
    close(srv);
}

static void test_server_disconnect_drops_slots_at_once(void **state)
{
    int srv = register_server("t4", "t4:1", "9002");
    assert_int_equal(h_wait_until(summary_contains, "\"server:t4\"", H_TIMEOUT_MS), 0);
    close(srv);
    assert_int_equal(
        h_wait_until(summary_contains, "\"t4\": {\"free\": 0, \"pending\": 0}", H_TIMEOUT_MS), 0);
    char *s = summary();
    assert_null(strstr(s, "server:t4"));
    free(s);
    /* A request now waits instead of being handed a dead server. */
    int cli = h_tracker_connect(tracker.port);
    assert_int_equal(h_tracker_send(cli, "[4, \"t4\", \"\", 1]"), 0);
    assert_true(h_tracker_silent(cli, 200));
    close(cli);
}

static void test_client_disconnect_drops_request(void **state)
{
    int gone = h_tracker_connect(tracker.port);
    assert_int_equal(h_tracker_send(gone, "[4, \"t5\", \"\", 9]"), 0);
    assert_int_equal(
        h_wait_until(summary_contains, "\"t5\": {\"free\": 0, \"pending\": 1}", H_TIMEOUT_MS), 0);
    close(gone);
    /* Unlike TVM, the departed client stops counting as pending at once... */
    assert_int_equal(
        h_wait_until(summary_contains, "\"t5\": {\"free\": 0, \"pending\": 0}", H_TIMEOUT_MS), 0);
    /* ...and no slot is wasted on it: the next client gets the first slot. */
    int srv = register_server("t5", "t5:first", "9003");
    int cli = h_tracker_connect(tracker.port);
    expect_reply(cli, "[4, \"t5\", \"\", 1]", "[0, [\"127.0.0.1\", 9003, \"t5:first\"]]");
    close(cli);
    close(srv);
}

static void test_ping_and_stop(void **state)
{
    int fd = h_tracker_connect(tracker.port);
    expect_reply(fd, "[1]", "0");
    expect_reply(fd, "[2, \"wrong\"]", "-1");
    expect_reply(fd, "[2]", "-1");
    /* Still serving after refused STOPs. */
    expect_reply(fd, "[1]", "0");
    close(fd);
}

/* A connection that breaks the protocol gets FAIL (where a reply fits) and is
 * closed; a bystander's state survives. */
static void expect_fail_close(const uint8_t *bytes, size_t n, int want_fail)
{
    int fd = h_tracker_connect(tracker.port);
    assert_true(fd >= 0);
    assert_int_equal(net_write_full(fd, bytes, n, H_TIMEOUT_MS, NULL), 0);
    if (want_fail) {
        char *r = h_tracker_recv_text(fd, H_TIMEOUT_MS);
        assert_non_null(r);
        assert_string_equal(r, "-1");
        free(r);
    }
    assert_true(h_peer_closed(fd, H_TIMEOUT_MS));
    close(fd);
}

static void expect_text_fail_close(const char *text)
{
    buf_t b;
    buf_init(&b, 0);
    proto_append_frame(&b, text, strlen(text));
    expect_fail_close(buf_head(&b), b.len, 1);
    buf_free(&b);
}

static void test_bad_input(void **state)
{
    int bystander = register_server("t6", "t6:keep", "9004");
    uint8_t hdr[4];
    put_le32(hdr, 0);
    expect_fail_close(hdr, 4, 1);
    put_le32(hdr, (uint32_t)-5);
    expect_fail_close(hdr, 4, 1);
    put_le32(hdr, TRACKER_MAX_FRAME + 1);
    expect_fail_close(hdr, 4, 1);
    expect_text_fail_close("not json");
    expect_text_fail_close("{\"a\": 1}");
    expect_text_fail_close("[\"4\", \"k\"]");
    expect_text_fail_close("[99]");
    expect_text_fail_close("[3, \"k\", [9090], null]");
    expect_text_fail_close("[3, 7, [9090, \"k:1\"], null]");
    expect_text_fail_close("[4, \"k\", \"\"]");
    expect_text_fail_close("[4, \"k\", \"\", \"high\"]");
    expect_text_fail_close("[5, {\"key\": \"server:x\"}]");
    expect_text_fail_close("[5, [1, 2]]");
    expect_text_fail_close(
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");

    /* Wrong magic: closed without a reply, as TVM does. */
    int fd = -1;
    char err[NET_ERR_LEN];
    fd = net_connect("127.0.0.1", tracker.port, H_TIMEOUT_MS, err);
    assert_true(fd >= 0);
    uint8_t rpc_magic[4] = {0x71, 0xF2, 0x0F, 0x00};
    assert_int_equal(net_write_full(fd, rpc_magic, 4, H_TIMEOUT_MS, NULL), 0);
    assert_true(h_peer_closed(fd, H_TIMEOUT_MS));
    close(fd);

    expect_reply(bystander, "[7]", "[\"t6:keep\"]");
    close(bystander);
}

static void test_silent_peer_does_not_block_others(void **state)
{
    char err[NET_ERR_LEN];
    /* One byte of magic, then nothing: a slow-loris peer. */
    int loris = net_connect("127.0.0.1", tracker.port, H_TIMEOUT_MS, err);
    assert_true(loris >= 0);
    assert_int_equal(net_write_full(loris, "\x71", 1, H_TIMEOUT_MS, NULL), 0);
    int silent = net_connect("127.0.0.1", tracker.port, H_TIMEOUT_MS, err);
    assert_true(silent >= 0);
    /* Everybody else is served meanwhile. */
    int fd = h_tracker_connect(tracker.port);
    expect_reply(fd, "[1]", "0");
    close(fd);
    /* Both are dropped after --handshake-timeout (1 s here). */
    assert_true(h_peer_closed(loris, 5000));
    assert_true(h_peer_closed(silent, 5000));
    close(loris);
    close(silent);
    assert_true(h_log_count(&tracker, "no magic within") >= 2);
}

static void test_query_tool_output(void **state)
{
    /* A fresh tracker, so the whole output is known byte for byte. */
    hproc_t t;
    assert_int_equal(h_start_tracker(&t, NULL), 0);
    int srv = h_tracker_connect(t.port);
    expect_reply(srv, "[5, {\"key\": \"server:qk\", \"addr\": [null, 9191]}]", "0");
    expect_reply(srv, "[3, \"qk\", [9191, \"qk:1\"], null]", "0");
    int cli = h_tracker_connect(t.port);
    assert_int_equal(h_tracker_send(cli, "[4, \"qwait\", \"\", 1]"), 0);
    /* The pipelined PING answers only after the REQUEST was queued. */
    expect_reply(cli, "[1]", "0");
    char port[16], out[8192];
    snprintf(port, sizeof(port), "%d", t.port);
    const char *argv[] = {"query", "--host", "127.0.0.1", "--port", port, NULL};
    int rc = h_run(argv, out, sizeof(out), H_TIMEOUT_MS);
    char want[2048];
    snprintf(want, sizeof(want),
             "Tracker address 127.0.0.1:%d\n\n"
             "Server List\n------------------------------\nserver-address           key\n"
             "------------------------------\n"
             "127.0.0.1:9191           server:qk\n"
             "------------------------------\n\n"
             "Queue Status\n-----------------------------\n"
             "key     total  free  pending\n-----------------------------\n"
             "qk      1      1     0      \n"
             "qwait   0      0     1      \n"
             "-----------------------------\n\n",
             t.port);
    close(cli);
    close(srv);
    h_stop(&t);
    assert_int_equal(rc, 0);
    assert_string_equal(out, want);
}

static void test_query_env_defaults_and_errors(void **state)
{
    char port[16], out[4096];
    snprintf(port, sizeof(port), "%d", tracker.port);
    setenv("TVM_TRACKER_HOST", "127.0.0.1", 1);
    setenv("TVM_TRACKER_PORT", port, 1);
    const char *argv[] = {"query", NULL};
    assert_int_equal(h_run(argv, out, sizeof(out), H_TIMEOUT_MS), 0);
    char head[64];
    snprintf(head, sizeof(head), "Tracker address 127.0.0.1:%d\n\nServer List\n", tracker.port);
    assert_int_equal(strncmp(out, head, strlen(head)), 0);
    unsetenv("TVM_TRACKER_HOST");
    unsetenv("TVM_TRACKER_PORT");
    const char *bad[] = {"query", "--port", "notaport", NULL};
    assert_int_equal(h_run(bad, out, sizeof(out), H_TIMEOUT_MS), 2);
}

static void test_stop_with_key_exits(void **state)
{
    hproc_t t2;
    const char *extra[] = {"--stop-key", "k3y", NULL};
    assert_int_equal(h_start_tracker(&t2, extra), 0);
    int fd = h_tracker_connect(t2.port);
    expect_reply(fd, "[2, \"nope\"]", "-1");
    expect_reply(fd, "[2, \"k3y\"]", "0");
    close(fd);
    int st = h_wait_exit(&t2, H_TIMEOUT_MS);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_cli_usage_errors(void **state)
{
    char out[4096];
    const char *unknown[] = {"tracker", "--bogus", NULL};
    assert_int_equal(h_run(unknown, out, sizeof(out), H_TIMEOUT_MS), 2);
    const char *badport[] = {"tracker", "--port=99999", NULL};
    assert_int_equal(h_run(badport, out, sizeof(out), H_TIMEOUT_MS), 2);
    const char *help[] = {"tracker", "--help", NULL};
    assert_int_equal(h_run(help, out, sizeof(out), H_TIMEOUT_MS), 0);
    assert_non_null(strstr(out, "--port-end"));
    const char *version[] = {"--version", NULL};
    assert_int_equal(h_run(version, out, sizeof(out), H_TIMEOUT_MS), 0);
    assert_non_null(strstr(out, "tvmrpc "));
}

static void test_port_range_search(void **state)
{
    /* Occupy a port, then ask for [port, port+2): the tracker takes port+1. */
    char err[NET_ERR_LEN];
    int bound = 0, lfd = -1;
    /* Find a free port whose successor is free too (other tests run in
     * parallel and take ports); hold the first, release the second. */
    for (int tries = 0; tries < 50 && lfd < 0; tries++) {
        lfd = net_listen_range("127.0.0.1", 0, 0, 1, &bound, err);
        assert_true(lfd >= 0);
        int next = 0;
        int nfd =
            bound < 65535 ? net_listen_range("127.0.0.1", bound + 1, bound + 2, 1, &next, err) : -1;
        if (nfd < 0) {
            close(lfd);
            lfd = -1;
            continue;
        }
        close(nfd);
    }
    assert_true(lfd >= 0);
    char p0[16], p1[16];
    snprintf(p0, sizeof(p0), "%d", bound);
    snprintf(p1, sizeof(p1), "%d", bound + 2);
    hproc_t t3;
    const char *argv[] = {"tracker", "--host", "127.0.0.1", "--port", p0, "--port-end", p1, NULL};
    assert_int_equal(h_spawn(&t3, argv), 0);
    char want[64];
    snprintf(want, sizeof(want), "bind to 127.0.0.1:%d", bound + 1);
    int ok = h_wait_log(&t3, want, H_TIMEOUT_MS) == 0;
    h_stop(&t3);
    /* A range with every port taken fails with a clear message. */
    snprintf(p1, sizeof(p1), "%d", bound + 1);
    char out[4096];
    const char *full[] = {"tracker", "--host", "127.0.0.1", "--port", p0, "--port-end", p1, NULL};
    hproc_t t4;
    assert_int_equal(h_spawn(&t4, full), 0);
    int st = h_wait_exit(&t4, H_TIMEOUT_MS);
    int ok2 = h_log_count(&t4, "cannot bind to any port") == 1;
    close(lfd);
    (void)out;
    assert_true(ok);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    assert_true(ok2);
}

static void test_allow_list(void **state)
{
    hproc_t t;
    const char *deny[] = {"--allow", "10.0.0.0/8,::2", NULL};
    assert_int_equal(h_start_tracker(&t, deny), 0);
    char err[NET_ERR_LEN];
    int fd = net_connect("127.0.0.1", t.port, H_TIMEOUT_MS, err);
    assert_true(fd >= 0);
    assert_true(h_peer_closed(fd, H_TIMEOUT_MS));
    close(fd);
    assert_int_equal(h_wait_log(&t, "not in --allow", H_TIMEOUT_MS), 0);
    h_stop(&t);
    const char *allow[] = {"--allow", "10.0.0.0/8,127.0.0.0/8", NULL};
    assert_int_equal(h_start_tracker(&t, allow), 0);
    fd = h_tracker_connect(t.port);
    assert_true(fd >= 0);
    expect_reply(fd, "[1]", "0");
    close(fd);
    h_stop(&t);
    char out[4096];
    const char *bad[] = {"tracker", "--allow", "10.0.0.0/99", NULL};
    assert_int_equal(h_run(bad, out, sizeof(out), H_TIMEOUT_MS), 2);
}

/* One address may hold --max-conns-per-peer connections; more are closed
 * at accept (logged), and a closed one makes room. */
static void test_max_conns_per_peer(void **state)
{
    hproc_t t;
    const char *cap[] = {"--max-conns-per-peer", "3", NULL};
    assert_int_equal(h_start_tracker(&t, cap), 0);
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = h_tracker_connect(t.port);
        assert_true(fds[i] >= 0);
        expect_reply(fds[i], "[1]", "0"); /* admitted and served */
    }
    char err[NET_ERR_LEN];
    int over = net_connect("127.0.0.1", t.port, H_TIMEOUT_MS, err);
    assert_true(over >= 0);
    assert_true(h_peer_closed(over, H_TIMEOUT_MS));
    close(over);
    assert_int_equal(h_wait_log(&t, "--max-conns-per-peer reached", H_TIMEOUT_MS), 0);
    expect_reply(fds[0], "[1]", "0"); /* the admitted ones are untouched */
    close(fds[2]);
    /* The tracker counts the close as soon as it sees it; retry until then. */
    int again = -1;
    for (int i = 0; i < 100 && again < 0; i++)
        if ((again = h_tracker_connect(t.port)) < 0)
            usleep(20000);
    assert_true(again >= 0);
    expect_reply(again, "[1]", "0");
    close(again);
    close(fds[0]);
    close(fds[1]);
    h_stop(&t);
    char out[4096];
    const char *bad[] = {"tracker", "--max-conns-per-peer", "-1", NULL};
    assert_int_equal(h_run(bad, out, sizeof(out), H_TIMEOUT_MS), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_request_grant_reannounce),
        cmocka_unit_test(test_waiting_request_served_on_put),
        cmocka_unit_test(test_priority_and_arrival_order),
        cmocka_unit_test(test_server_disconnect_drops_slots_at_once),
        cmocka_unit_test(test_client_disconnect_drops_request),
        cmocka_unit_test(test_ping_and_stop),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_silent_peer_does_not_block_others),
        cmocka_unit_test(test_query_tool_output),
        cmocka_unit_test(test_query_env_defaults_and_errors),
        cmocka_unit_test(test_stop_with_key_exits),
        cmocka_unit_test(test_cli_usage_errors),
        cmocka_unit_test(test_port_range_search),
        cmocka_unit_test(test_allow_list),
        cmocka_unit_test(test_max_conns_per_peer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
