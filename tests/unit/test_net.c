/* net: keepalive on every socket; net_reader, the read-ahead buffer the server session and the
 * client read packets through. Whatever way the bytes are split on the wire, the reads must return
 * exactly the stream, and EOF/timeouts must be reported as net_read_full reports them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/net.h"

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

static void put(int fd, const void *p, size_t n)
{
    assert_int_equal(net_write_full(fd, p, n, 1000, NULL), 0);
}

/* Every split point of a message followed by a second one: header-sized
 * reads, then the rest, then the next message, all byte-exact. */
static void test_every_split(void **state)
{
    (void)state;
    uint8_t msg[40];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)(i * 7 + 1);
    for (size_t split = 0; split <= sizeof(msg); split++) {
        int sv[2];
        pair(sv);
        net_reader_t rd;
        assert_int_equal(net_reader_init(&rd, sv[0], 16), 0);
        put(sv[1], msg, split);
        put(sv[1], msg + split, sizeof(msg) - split);
        put(sv[1], msg, sizeof(msg));
        uint8_t got[2 * sizeof(msg)];
        size_t off = 0;
        static const size_t steps[] = {8, 4, 28, 8, 4, 28};
        for (size_t k = 0; k < 6; k++) {
            assert_int_equal(net_reader_read(&rd, got + off, steps[k], 1000, NULL, NULL), 0);
            off += steps[k];
        }
        assert_memory_equal(got, msg, sizeof(msg));
        assert_memory_equal(got + sizeof(msg), msg, sizeof(msg));
        assert_int_equal(net_reader_buffered(&rd), 0);
        net_reader_free(&rd);
        close(sv[0]);
        close(sv[1]);
    }
}

/* A small read pulls in what follows; a bulk read then takes the buffered
 * part first and the remainder straight from the socket. */
static void test_bulk_after_buffered(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    size_t n = 200000;
    uint8_t *data = malloc(n), *got = malloc(n);
    assert_non_null(data);
    assert_non_null(got);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i ^ (i >> 8));
    net_reader_t rd;
    assert_int_equal(net_reader_init(&rd, sv[0], 4096), 0);
    put(sv[1], data, 100);
    assert_int_equal(net_reader_read(&rd, got, 10, 1000, NULL, NULL), 0);
    assert_int_equal(net_reader_buffered(&rd), 90);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        put(sv[1], data + 100, n - 100);
        _exit(0);
    }
    assert_int_equal(net_reader_read(&rd, got + 10, n - 10, 5000, NULL, NULL), 0);
    assert_memory_equal(got, data, n);
    net_reader_free(&rd);
    close(sv[0]);
    close(sv[1]);
    free(data);
    free(got);
}

static void test_eof_at_boundary_and_mid_read(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    net_reader_t rd;
    assert_int_equal(net_reader_init(&rd, sv[0], 64), 0);
    put(sv[1], "abcdef", 6);
    shutdown(sv[1], SHUT_WR);
    char b[8];
    int eof = 7;
    assert_int_equal(net_reader_read(&rd, b, 4, 1000, &eof, NULL), 0);
    assert_int_equal(eof, 0);
    char err[NET_ERR_LEN];
    /* Two bytes left, four asked: closed mid-read is not a clean EOF. */
    assert_int_equal(net_reader_read(&rd, b, 4, 1000, &eof, err), -1);
    assert_int_equal(eof, 0);
    assert_non_null(strstr(err, "closed"));
    /* Nothing left: a clean EOF at a boundary. */
    assert_int_equal(net_reader_read(&rd, b, 4, 1000, &eof, err), -1);
    assert_int_equal(eof, 1);
    net_reader_free(&rd);
    close(sv[0]);
    close(sv[1]);
}

static void test_timeout(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    net_reader_t rd;
    assert_int_equal(net_reader_init(&rd, sv[0], 64), 0);
    put(sv[1], "xy", 2);
    char b[4], err[NET_ERR_LEN];
    int eof = 0;
    assert_int_equal(net_reader_read(&rd, b, 4, 50, &eof, err), -1);
    assert_int_equal(eof, 0);
    assert_non_null(strstr(err, "timed out"));
    net_reader_free(&rd);
    close(sv[0]);
    close(sv[1]);
}

static void expect_keepalive(int fd)
{
    int v = 0;
    socklen_t len = sizeof(v);
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &v, &len), 0);
    assert_int_equal(v, 1);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, &len), 0);
    assert_int_equal(v, NET_KEEPALIVE_IDLE_S);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, &len), 0);
    assert_int_equal(v, NET_KEEPALIVE_COUNT);
}

/* A vanished host must not hold a session or a tracker entry for ever:
 * both ends of every connection probe. */
static void test_keepalive_on_accept_and_connect(void **state)
{
    (void)state;
    int port = 0;
    char err[NET_ERR_LEN];
    int lfd = net_listen_range("127.0.0.1", 0, 0, 4, &port, err);
    assert_true(lfd >= 0);
    int cfd = net_connect("127.0.0.1", port, 2000, err);
    assert_true(cfd >= 0);
    int afd = -1;
    for (int i = 0; i < 200 && afd < 0; i++) {
        afd = net_accept(lfd, NULL, 0, NULL, err);
        if (afd < 0)
            usleep(10000);
    }
    assert_true(afd >= 0);
    expect_keepalive(cfd);
    expect_keepalive(afd);
    close(afd);
    close(cfd);
    close(lfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_bulk_after_buffered),
        cmocka_unit_test(test_eof_at_boundary_and_mid_read),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_keepalive_on_accept_and_connect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
