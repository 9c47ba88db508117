/* The proxy as TVM peers see it: a real `tvmrpc proxy` process, real
 * sockets on 127.0.0.1, and where it matters our real tracker and our real
 * server in --through-proxy mode (PROTOCOL.md §3). Every wait is bounded.
 *
 * Groups: no-tracker pairing and relaying; bad input; WebSocket /ws;
 * tracker mode; replay of the recorded TVM proxy sessions. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/net.h"
#include "proxy/ws.h"
#include "rpc/rpc.h"
#include "trace.h"

static hproc_t px; /* no tracker; 2 s pool timeouts, 1 s handshake timeout, web port */
static int web_port;

/* ---- sockets ------------------------------------------------------------------ */

static int tcp_connect(int port)
{
    char err[NET_ERR_LEN];
    int fd = net_connect("127.0.0.1", port, H_TIMEOUT_MS, err);
    if (fd < 0)
        fprintf(stderr, "connect to %d: %s\n", port, err);
    assert_true(fd >= 0);
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    assert_int_equal(net_write_full(fd, p, n, H_TIMEOUT_MS, NULL), 0);
}

static size_t handshake_bytes(uint8_t *out, const char *key)
{
    size_t kl = strlen(key);
    put_le32(out, RPC_MAGIC);
    put_le32(out + 4, (uint32_t)kl);
    memcpy(out + 8, key, kl);
    return 8 + kl;
}

/* Connect and send the handshake request in one write. */
static int rpc_hello(int port, const char *key)
{
    int fd = tcp_connect(port);
    uint8_t b[8 + RPC_MAX_KEY_LEN];
    send_all(fd, b, handshake_bytes(b, key));
    return fd;
}

static int read_exact(int fd, void *p, size_t n, int ms)
{
    return net_read_full(fd, p, n, ms, NULL, NULL);
}

static void expect_success(int fd, const char *other_key)
{
    uint8_t hdr[8];
    assert_int_equal(read_exact(fd, hdr, 8, H_TIMEOUT_MS), 0);
    assert_int_equal(le32(hdr), RPC_CODE_SUCCESS);
    size_t kl = strlen(other_key);
    assert_int_equal(le32(hdr + 4), kl);
    char key[RPC_MAX_KEY_LEN + 1];
    assert_int_equal(read_exact(fd, key, kl, H_TIMEOUT_MS), 0);
    key[kl] = '\0';
    assert_string_equal(key, other_key);
}

static void expect_reject(int fd, uint32_t code, int within_ms)
{
    uint8_t st[4];
    assert_int_equal(read_exact(fd, st, 4, within_ms), 0);
    assert_int_equal(le32(st), code);
    assert_true(h_peer_closed(fd, H_TIMEOUT_MS));
}

/* The peer closes without having sent a single byte. */
static int closed_without_reply(int fd, int ms)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    if (poll(&pf, 1, ms) <= 0)
        return 0;
    uint8_t b[16];
    ssize_t r = recv(fd, b, sizeof(b), 0);
    return r == 0 || (r < 0 && errno == ECONNRESET);
}

/* Nothing arrives (and the connection stays open) for ms. */
static int quiet(int fd, int ms)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    return poll(&pf, 1, ms) == 0;
}

static uint8_t pattern(uint64_t i, unsigned seed)
{
    return (uint8_t)((i * 2654435761u >> 7) ^ (i >> 11) ^ seed);
}

/* Move n_ab bytes a->b and n_ba bytes b->a at the same time, checking every
 * byte. Returns 0 when both arrived intact. */
static int pump(int a, int b, size_t n_ab, size_t n_ba)
{
    net_set_nonblock(a, 1);
    net_set_nonblock(b, 1);
    size_t sent[2] = {0, 0}, got[2] = {0, 0}, want[2] = {n_ab, n_ba};
    int fds[2] = {a, b};
    uint8_t buf[65536];
    int64_t deadline = h_now_ms() + 60000;
    while ((got[0] < want[0] || got[1] < want[1]) && h_now_ms() < deadline) {
        struct pollfd pf[2];
        for (int i = 0; i < 2; i++)
            pf[i] = (struct pollfd){fds[i], (short)(POLLIN | (sent[i] < want[i] ? POLLOUT : 0)), 0};
        if (poll(pf, 2, 1000) < 0)
            return -1;
        for (int i = 0; i < 2; i++) {
            /* direction i: fds[i] -> fds[1 - i] */
            if ((pf[i].revents & POLLOUT) && sent[i] < want[i]) {
                size_t n = want[i] - sent[i] < sizeof(buf) ? want[i] - sent[i] : sizeof(buf);
                for (size_t k = 0; k < n; k++)
                    buf[k] = pattern(sent[i] + k, (unsigned)i);
                ssize_t w = send(fds[i], buf, n, MSG_NOSIGNAL);
                if (w > 0)
                    sent[i] += (size_t)w;
                else if (w < 0 && errno != EAGAIN)
                    return -1;
            }
            int from = 1 - i; /* bytes read on fds[i] came from direction `from` */
            if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t r = recv(fds[i], buf, sizeof(buf), 0);
                if (r == 0 || (r < 0 && errno != EAGAIN))
                    return -1;
                for (ssize_t k = 0; k < r; k++) {
                    if (got[from] + (size_t)k >= want[from] ||
                        buf[k] != pattern(got[from] + (size_t)k, (unsigned)from))
                        return -1;
                }
                if (r > 0)
                    got[from] += (size_t)r;
            }
        }
    }
    net_set_nonblock(a, 0);
    net_set_nonblock(b, 0);
    return got[0] == want[0] && got[1] == want[1] ? 0 : -1;
}

/* Pair a server and a client on proxy port; returns both fds. */
static void make_pair(int port, const char *skey, const char *ckey, int *srv, int *cli)
{
    *srv = rpc_hello(port, skey);
    *cli = rpc_hello(port, ckey);
    expect_success(*srv, ckey);
    expect_success(*cli, skey);
}

/* ---- no tracker: pairing ------------------------------------------------------- */

static void test_pair_server_first(void **state)
{
    int srv = rpc_hello(px.port, "server:sf");
    assert_int_equal(h_wait_log(&px, "waits for key sf", H_TIMEOUT_MS), 0);
    assert_true(quiet(srv, 100)); /* nothing until a client comes */
    int cli = rpc_hello(px.port, "client:sf -timeout=10");
    /* Each side learns the other's full key (PROTOCOL.md §3.2). */
    expect_success(cli, "server:sf");
    expect_success(srv, "client:sf -timeout=10");
    send_all(cli, "ping", 4);
    char b[8];
    assert_int_equal(read_exact(srv, b, 4, H_TIMEOUT_MS), 0);
    assert_memory_equal(b, "ping", 4);
    send_all(srv, "pong!", 5);
    assert_int_equal(read_exact(cli, b, 5, H_TIMEOUT_MS), 0);
    assert_memory_equal(b, "pong!", 5);
    close(cli);
    assert_true(h_peer_closed(srv, H_TIMEOUT_MS));
    close(srv);
}

static void test_pair_client_first(void **state)
{
    int cli = rpc_hello(px.port, "client:cf");
    assert_int_equal(h_wait_log(&px, "waits for key cf", H_TIMEOUT_MS), 0);
    assert_true(quiet(cli, 100));
    int srv = rpc_hello(px.port, "server:cf");
    expect_success(cli, "server:cf");
    expect_success(srv, "client:cf");
    assert_int_equal(pump(cli, srv, 1000, 2000), 0);
    close(srv);
    assert_true(h_peer_closed(cli, H_TIMEOUT_MS));
    close(cli);
}

static void test_duplicate_server_and_client(void **state)
{
    int s1 = rpc_hello(px.port, "server:dup");
    assert_int_equal(h_wait_log(&px, "waits for key dup", H_TIMEOUT_MS), 0);
    int s2 = rpc_hello(px.port, "server:dup");
    expect_reject(s2, RPC_CODE_DUPLICATE, H_TIMEOUT_MS);
    close(s2);
    int c1 = rpc_hello(px.port, "client:dupc");
    assert_int_equal(h_wait_log(&px, "waits for key dupc", H_TIMEOUT_MS), 0);
    int c2 = rpc_hello(px.port, "client:dupc -timeout=5");
    expect_reject(c2, RPC_CODE_DUPLICATE, H_TIMEOUT_MS);
    close(c2);
    /* The first of each still pairs. */
    int c = rpc_hello(px.port, "client:dup");
    expect_success(c, "server:dup");
    expect_success(s1, "client:dup");
    int s = rpc_hello(px.port, "server:dupc");
    expect_success(c1, "server:dupc");
    expect_success(s, "client:dupc");
    close(c);
    close(s1);
    close(c1);
    close(s);
}

static void test_pool_timeouts_send_mismatch(void **state)
{
    /* Started with --timeout-server 2 --timeout-client 2. */
    int64_t t0 = h_now_ms();
    int srv = rpc_hello(px.port, "server:lonely");
    int cli = rpc_hello(px.port, "client:nobody-serves-this");
    expect_reject(srv, RPC_CODE_MISMATCH, 6000);
    expect_reject(cli, RPC_CODE_MISMATCH, 6000);
    int64_t took = h_now_ms() - t0;
    assert_true(took >= 1800 && took < 6000);
    close(srv);
    close(cli);
}

/* ---- no tracker: relaying -------------------------------------------------------- */

static void test_relay_bulk_both_ways(void **state)
{
    int srv, cli;
    make_pair(px.port, "server:bulk", "client:bulk", &srv, &cli);
    assert_int_equal(pump(cli, srv, 4u << 20, 3u << 20), 0);
    /* And again in the other proportion on the same pair. */
    assert_int_equal(pump(srv, cli, 5u << 20, 123457), 0);
    close(cli);
    close(srv);
    assert_int_equal(h_wait_log(&px, "pair server:bulk", H_TIMEOUT_MS), 0);
}

static void test_relay_copy_mode(void **state)
{
    hproc_t p;
    const char *extra[] = {"--no-splice", "--relay-buffer", "64", NULL};
    assert_int_equal(h_start_proxy(&p, extra), 0);
    int srv, cli;
    make_pair(p.port, "server:copy", "client:copy", &srv, &cli);
    assert_int_equal(pump(cli, srv, 3u << 20, 3u << 20), 0);
    close(cli);
    close(srv);
    assert_int_equal(h_wait_log(&p, "(copy)", H_TIMEOUT_MS), 0);
    assert_int_equal(h_stop(&p), 0);
}

/* One side writes and closes: the other gets every byte, then EOF. */
static void close_after_burst(int from, int to, size_t n)
{
    uint8_t *b = malloc(n);
    for (size_t i = 0; i < n; i++)
        b[i] = pattern(i, 9);
    send_all(from, b, n);
    close(from);
    uint8_t *got = malloc(n);
    assert_int_equal(read_exact(to, got, n, H_TIMEOUT_MS), 0);
    assert_memory_equal(got, b, n);
    assert_true(h_peer_closed(to, H_TIMEOUT_MS));
    close(to);
    free(b);
    free(got);
}

static void test_close_propagation(void **state)
{
    int srv, cli;
    make_pair(px.port, "server:cp1", "client:cp1", &srv, &cli);
    close_after_burst(cli, srv, 1u << 20);
    make_pair(px.port, "server:cp2", "client:cp2", &srv, &cli);
    close_after_burst(srv, cli, 300000);
}

/* A reader that stops reading: the writer is held back by TCP, the proxy's
 * memory stays bounded, and nothing is lost when the reader resumes. */
static void test_back_pressure(void **state)
{
    int srv, cli;
    make_pair(px.port, "server:bp", "client:bp", &srv, &cli);
    net_set_nonblock(cli, 1);
    uint8_t buf[65536];
    size_t sent = 0;
    int64_t idle_since = h_now_ms();
    while (h_now_ms() - idle_since < 500 && sent < (256u << 20)) {
        for (size_t k = 0; k < sizeof(buf); k++)
            buf[k] = pattern(sent + k, 3);
        ssize_t w = send(cli, buf, sizeof(buf), MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            idle_since = h_now_ms();
        } else {
            struct pollfd pf = {.fd = cli, .events = POLLOUT};
            poll(&pf, 1, 50);
        }
    }
    /* Kernel buffers on both sockets plus at most the relay's bound. */
    assert_true(sent < (64u << 20));
    size_t got = 0;
    while (got < sent) {
        ssize_t r = recv(srv, buf, sizeof(buf), 0);
        assert_true(r > 0);
        for (ssize_t k = 0; k < r; k++)
            assert_int_equal(buf[k], pattern(got + (size_t)k, 3));
        got += (size_t)r;
    }
    assert_true(quiet(srv, 100));
    close(cli);
    close(srv);
}

static void test_peer_vanishes_mid_transfer(void **state)
{
    int srv, cli;
    make_pair(px.port, "server:van", "client:van", &srv, &cli);
    uint8_t b[100000];
    memset(b, 0xab, sizeof(b));
    send_all(cli, b, sizeof(b));
    /* Abortive close: RST instead of FIN. */
    struct linger lg = {1, 0};
    setsockopt(cli, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(cli);
    assert_true(h_peer_closed(srv, H_TIMEOUT_MS));
    close(srv);
    /* Everybody else keeps going. */
    make_pair(px.port, "server:van2", "client:van2", &srv, &cli);
    assert_int_equal(pump(cli, srv, 10000, 10000), 0);
    close(cli);
    close(srv);
}

/* ---- bad input ----------------------------------------------------------------- */

static void test_bad_input_closes_only_that_peer(void **state)
{
    int bsrv, bcli;
    make_pair(px.port, "server:bystander", "client:bystander", &bsrv, &bcli);
    uint8_t b[16384];
    int fd;

    /* Wrong magic (the tracker's): closed without a reply. */
    fd = tcp_connect(px.port);
    put_le32(b, 0x0002F271);
    put_le32(b + 4, 3);
    send_all(fd, b, 8);
    assert_true(closed_without_reply(fd, H_TIMEOUT_MS));
    close(fd);
    /* An HTTP request on the RPC port. */
    fd = tcp_connect(px.port);
    send_all(fd, "GET / HTTP/1.1\r\n\r\n", 18);
    assert_true(closed_without_reply(fd, H_TIMEOUT_MS));
    close(fd);
    /* Key length beyond 4096, and negative. */
    fd = tcp_connect(px.port);
    put_le32(b, RPC_MAGIC);
    put_le32(b + 4, 4097);
    send_all(fd, b, 8);
    assert_true(closed_without_reply(fd, H_TIMEOUT_MS));
    close(fd);
    fd = tcp_connect(px.port);
    put_le32(b + 4, (uint32_t)-1);
    send_all(fd, b, 8);
    assert_true(closed_without_reply(fd, H_TIMEOUT_MS));
    close(fd);
    /* Bytes after the key, before the reply ("too many bytes"). */
    fd = tcp_connect(px.port);
    size_t n = handshake_bytes(b, "client:eager");
    memcpy(b + n, "\x15\0\0\0\0\0\0\0", 8);
    send_all(fd, b, n + 8);
    assert_true(closed_without_reply(fd, H_TIMEOUT_MS));
    close(fd);
    /* Bytes while waiting in the pool. */
    fd = rpc_hello(px.port, "server:impatient");
    assert_int_equal(h_wait_log(&px, "waits for key impatient", H_TIMEOUT_MS), 0);
    send_all(fd, "x", 1);
    assert_true(closed_without_reply(fd, H_TIMEOUT_MS));
    close(fd);
    /* ...and the key is free again. */
    fd = rpc_hello(px.port, "server:impatient");
    assert_true(quiet(fd, 100));
    close(fd);
    /* No match key, NUL inside the key. */
    fd = rpc_hello(px.port, "client:");
    assert_true(closed_without_reply(fd, H_TIMEOUT_MS));
    close(fd);
    fd = tcp_connect(px.port);
    put_le32(b, RPC_MAGIC);
    put_le32(b + 4, 9);
    memcpy(b + 8, "client:\0x", 9);
    send_all(fd, b, 17);
    assert_true(closed_without_reply(fd, H_TIMEOUT_MS));
    close(fd);
    /* A maximal key that never finishes: dropped by the handshake timeout. */
    fd = tcp_connect(px.port);
    put_le32(b, RPC_MAGIC);
    put_le32(b + 4, RPC_MAX_KEY_LEN);
    memset(b + 8, 'k', 4000);
    send_all(fd, b, 4008);
    assert_true(closed_without_reply(fd, 5000));
    close(fd);

    assert_true(h_log_count(&px, "wrong magic") >= 2);
    assert_true(h_log_count(&px, "key length") >= 2);
    assert_true(h_log_count(&px, "too many bytes") >= 2);
    /* The bystander pair never noticed. */
    assert_int_equal(pump(bcli, bsrv, 100000, 100000), 0);
    close(bcli);
    close(bsrv);
}

static void test_handshake_timeout(void **state)
{
    /* --handshake-timeout 1 */
    int silent = tcp_connect(px.port);
    int partial = tcp_connect(px.port);
    send_all(partial, "\x71\xf2\x0f\x00\x05", 5);
    int64_t t0 = h_now_ms();
    int ok = rpc_hello(px.port, "server:meanwhile");
    assert_true(closed_without_reply(silent, 5000));
    assert_true(closed_without_reply(partial, 5000));
    int64_t took = h_now_ms() - t0;
    assert_true(took >= 800 && took < 5000);
    /* A completed handshake is not subject to it. */
    assert_true(quiet(ok, 300));
    close(silent);
    close(partial);
    close(ok);
    assert_true(h_log_count(&px, "no complete handshake") >= 2);
}

/* ---- our real server through the proxy ------------------------------------------ */

static const uint8_t k_init_server[29] = {0x15, 0,   0,    0,   0,   0, 0, 0, 0x02, 0,
                                          0,    0,   0x05, 0,   0,   0, 0, 0, 0,    0,
                                          '0',  '.', '8',  '.', '0', 0, 0, 0, 0};
static const uint8_t k_shutdown[12] = {0x04, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0};

/* One reply packet: returns its code, body (after the code) in out. */
static int32_t read_packet(int fd, uint8_t *out, size_t cap, size_t *len)
{
    uint8_t hdr[12];
    assert_int_equal(read_exact(fd, hdr, 12, H_TIMEOUT_MS), 0);
    uint64_t n = le64(hdr);
    assert_true(n >= 4 && n - 4 <= cap);
    *len = (size_t)(n - 4);
    assert_int_equal(read_exact(fd, out, *len, H_TIMEOUT_MS), 0);
    return (int32_t)le32(hdr + 8);
}

/* kInitServer, testing.echo(42), kShutdown over an established session
 * (classic encoding, as the v0.20 traces; PROTOCOL.md §4.13). */
static void run_rpc_session(int fd)
{
    uint8_t body[256];
    size_t len;
    send_all(fd, k_init_server, sizeof(k_init_server));
    assert_int_equal(read_packet(fd, body, sizeof(body), &len), RPC_RETURN);
    /* kGetGlobalFunc("testing.echo") */
    static const uint8_t get_echo[] = {
        0x20, 0, 0, 0, 0, 0, 0, 0, 0x09, 0,   0,   0,   0x01, 0,   0,   0,   0x0b, 0,   0,   0,
        0x0c, 0, 0, 0, 0, 0, 0, 0, 't',  'e', 's', 't', 'i',  'n', 'g', '.', 'e',  'c', 'h', 'o'};
    send_all(fd, get_echo, sizeof(get_echo));
    assert_int_equal(read_packet(fd, body, sizeof(body), &len), RPC_RETURN);
    assert_true(len >= 8);
    uint64_t handle = le64(body + len - 8);
    assert_true(handle != 0);
    /* kCallFunc(handle, 42) */
    uint8_t call[36] = {0x1c, 0, 0, 0, 0, 0, 0, 0, 0x03, 0, 0, 0};
    put_le64(call + 12, handle);
    put_le32(call + 20, 1);  /* num_args */
    put_le32(call + 24, 0);  /* kDLInt */
    put_le64(call + 28, 42); /* value */
    send_all(fd, call, sizeof(call));
    assert_int_equal(read_packet(fd, body, sizeof(body), &len), RPC_RETURN);
    assert_true(len >= 8);
    assert_int_equal(le64(body + len - 8), 42);
    send_all(fd, k_shutdown, sizeof(k_shutdown));
}

static void test_real_server_through_proxy(void **state)
{
    hproc_t srv;
    int before = h_log_count(&px, "waits for key realsrv");
    assert_int_equal(h_start_server_through(&srv, px.port, "realsrv", NULL), 0);
    int64_t deadline = h_now_ms() + H_TIMEOUT_MS;
    while (h_log_count(&px, "waits for key realsrv") <= before && h_now_ms() < deadline)
        usleep(5000);
    int cli = rpc_hello(px.port, "client:realsrv -timeout=30");
    expect_success(cli, "server:realsrv");
    run_rpc_session(cli);
    assert_true(h_peer_closed(cli, H_TIMEOUT_MS));
    close(cli);
    /* The server comes back for the next client (PROTOCOL.md §3.5). */
    deadline = h_now_ms() + H_TIMEOUT_MS;
    while (h_log_count(&px, "waits for key realsrv") <= before + 1 && h_now_ms() < deadline)
        usleep(5000);
    cli = rpc_hello(px.port, "client:realsrv");
    expect_success(cli, "server:realsrv");
    run_rpc_session(cli);
    close(cli);
    if (h_stop(&srv) != 0)
        h_dump_log(&srv);
}

/* ---- WebSocket ------------------------------------------------------------------- */

typedef struct wsc {
    int fd;
    ws_dec_t dec;
    buf_t data;
    int pongs, closes, close_code;
} wsc_t;

static const uint8_t test_mask[4] = {0x5a, 0xc3, 0x01, 0xfe};

static int wsc_data(void *ctx, const uint8_t *p, size_t n)
{
    wsc_t *w = ctx;
    return buf_append(&w->data, p, n);
}

static int wsc_control(void *ctx, int op, const uint8_t *p, size_t n)
{
    wsc_t *w = ctx;
    if (op == WS_OP_PONG)
        w->pongs++;
    if (op == WS_OP_CLOSE) {
        w->closes++;
        w->close_code = n >= 2 ? p[0] << 8 | p[1] : 0;
    }
    return 0;
}

static const ws_sink_t wsc_sink = {wsc_data, wsc_control};

/* Send an HTTP request for path; returns the response head (caller frees). */
static char *http_request(int fd, const char *path, const char *extra_headers)
{
    char req[1024];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", path, extra_headers);
    send_all(fd, req, strlen(req));
    char *resp = calloc(1, 4096);
    size_t n = 0;
    while (n < 4095 && !strstr(resp, "\r\n\r\n")) {
        if (read_exact(fd, resp + n, 1, H_TIMEOUT_MS) < 0)
            break;
        n++;
    }
    return resp;
}

static void wsc_open(wsc_t *w, int port)
{
    memset(w, 0, sizeof(*w));
    w->fd = tcp_connect(port);
    ws_dec_init(&w->dec, 0, 1u << 30);
    buf_init(&w->data, 0);
    char *resp = http_request(w->fd, "/ws",
                              "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n");
    assert_non_null(strstr(resp, "HTTP/1.1 101 Switching Protocols\r\n"));
    assert_non_null(strstr(resp, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    free(resp);
}

static void wsc_send(wsc_t *w, int fin, int op, const void *p, size_t n)
{
    buf_t b;
    buf_init(&b, 0);
    ws_frame_append(&b, fin, op, test_mask, p, n);
    send_all(w->fd, buf_head(&b), b.len);
    buf_free(&b);
}

/* Read frames until `bytes` of payload (or a close) arrived. */
static int wsc_read(wsc_t *w, size_t bytes, int ms)
{
    int64_t deadline = h_now_ms() + ms;
    while (w->data.len < bytes && !w->closes && h_now_ms() < deadline) {
        struct pollfd pf = {.fd = w->fd, .events = POLLIN};
        if (poll(&pf, 1, (int)(deadline - h_now_ms())) <= 0)
            break;
        uint8_t b[65536];
        ssize_t r = recv(w->fd, b, sizeof(b), 0);
        if (r <= 0)
            return -1;
        char err[96];
        if (ws_dec_feed(&w->dec, b, (size_t)r, &wsc_sink, w, err, sizeof(err)) != 0)
            return -1;
    }
    return w->data.len >= bytes ? 0 : -1;
}

static void wsc_close(wsc_t *w)
{
    close(w->fd);
    buf_free(&w->data);
}

static void test_ws_server_tcp_client(void **state)
{
    wsc_t w;
    wsc_open(&w, web_port);
    /* The browser RPC server sends magic, length and key as three messages. */
    uint8_t hs[64];
    size_t n = handshake_bytes(hs, "server:wsk");
    wsc_send(&w, 1, WS_OP_BINARY, hs, 4);
    wsc_send(&w, 1, WS_OP_PING, "are you there", 13);
    wsc_send(&w, 1, WS_OP_BINARY, hs + 4, 4);
    wsc_send(&w, 0, WS_OP_BINARY, hs + 8, 3);
    wsc_send(&w, 1, WS_OP_CONT, hs + 11, n - 11);
    assert_int_equal(h_wait_log(&px, "waits for key wsk", H_TIMEOUT_MS), 0);
    int cli = rpc_hello(px.port, "client:wsk");
    expect_success(cli, "server:wsk");
    /* The WebSocket side gets the same bytes inside binary frames. */
    uint8_t want[64];
    put_le32(want, RPC_CODE_SUCCESS);
    put_le32(want + 4, 10);
    memcpy(want + 8, "client:wsk", 10);
    assert_int_equal(wsc_read(&w, 18, H_TIMEOUT_MS), 0);
    assert_memory_equal(buf_head(&w.data), want, 18);
    assert_int_equal(w.pongs, 1);
    buf_consume(&w.data, 18);
    /* TCP -> WebSocket: 1 MiB arrives intact, split into frames. */
    size_t big = 1u << 20;
    uint8_t *p = malloc(big);
    for (size_t i = 0; i < big; i++)
        p[i] = pattern(i, 5);
    send_all(cli, p, big);
    assert_int_equal(wsc_read(&w, big, H_TIMEOUT_MS), 0);
    assert_memory_equal(buf_head(&w.data), p, big);
    buf_consume(&w.data, big);
    /* WebSocket -> TCP: fragmented message with a ping in the middle, then
     * large single frames (16- and 64-bit lengths). */
    wsc_send(&w, 0, WS_OP_BINARY, p, 1000);
    wsc_send(&w, 1, WS_OP_PING, NULL, 0);
    wsc_send(&w, 1, WS_OP_CONT, p + 1000, 24);
    wsc_send(&w, 1, WS_OP_BINARY, p + 1024, 60000);
    wsc_send(&w, 1, WS_OP_BINARY, p + 61024, big - 61024);
    uint8_t *got = malloc(big);
    assert_int_equal(read_exact(cli, got, big, H_TIMEOUT_MS), 0);
    assert_memory_equal(got, p, big);
    /* The empty ping inside the fragmented message got its pong too. */
    for (int64_t dl = h_now_ms() + H_TIMEOUT_MS; w.pongs < 2 && h_now_ms() < dl;)
        wsc_read(&w, 1, 50);
    assert_int_equal(w.pongs, 2);
    /* The WebSocket side closes: its close is echoed, the TCP client gets EOF. */
    uint8_t code[2] = {0x03, 0xe8};
    wsc_send(&w, 1, WS_OP_CLOSE, code, 2);
    wsc_read(&w, SIZE_MAX, H_TIMEOUT_MS);
    assert_int_equal(w.closes, 1);
    assert_int_equal(w.close_code, 1000);
    assert_true(h_peer_closed(cli, H_TIMEOUT_MS));
    assert_true(h_peer_closed(w.fd, H_TIMEOUT_MS));
    close(cli);
    free(p);
    free(got);
    wsc_close(&w);
}

static void test_ws_client_ws_server(void **state)
{
    wsc_t s, c;
    wsc_open(&s, web_port);
    wsc_open(&c, web_port);
    uint8_t hs[64];
    wsc_send(&s, 1, WS_OP_BINARY, hs, handshake_bytes(hs, "server:ww"));
    assert_int_equal(h_wait_log(&px, "waits for key ww", H_TIMEOUT_MS), 0);
    wsc_send(&c, 1, WS_OP_BINARY, hs, handshake_bytes(hs, "client:ww"));
    assert_int_equal(wsc_read(&s, 17, H_TIMEOUT_MS), 0);
    assert_int_equal(wsc_read(&c, 17, H_TIMEOUT_MS), 0);
    assert_memory_equal(buf_head(&s.data) + 8, "client:ww", 9);
    assert_memory_equal(buf_head(&c.data) + 8, "server:ww", 9);
    wsc_send(&c, 1, WS_OP_BINARY, "abcdef", 6);
    assert_int_equal(wsc_read(&s, 23, H_TIMEOUT_MS), 0);
    assert_memory_equal(buf_head(&s.data) + 17, "abcdef", 6);
    /* A TCP-level close of one side: the other gets a close frame. */
    close(c.fd);
    c.fd = -1;
    wsc_read(&s, SIZE_MAX, H_TIMEOUT_MS);
    assert_int_equal(s.closes, 1);
    assert_true(h_peer_closed(s.fd, H_TIMEOUT_MS));
    buf_free(&c.data);
    wsc_close(&s);
}

static void test_ws_http_errors_and_bad_frames(void **state)
{
    int fd = tcp_connect(web_port);
    char *resp = http_request(fd, "/", "");
    assert_non_null(strstr(resp, "HTTP/1.1 404 Not Found\r\n"));
    free(resp);
    assert_true(h_peer_closed(fd, H_TIMEOUT_MS));
    close(fd);
    fd = tcp_connect(web_port);
    resp = http_request(fd, "/ws", "Connection: Upgrade\r\n");
    assert_non_null(strstr(resp, "HTTP/1.1 400 Bad Request\r\n"));
    free(resp);
    close(fd);
    fd = tcp_connect(web_port);
    resp =
        http_request(fd, "/ws",
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 7\r\n");
    assert_non_null(strstr(resp, "HTTP/1.1 426 Upgrade Required\r\n"));
    assert_non_null(strstr(resp, "Sec-WebSocket-Version: 13\r\n"));
    free(resp);
    close(fd);
    /* Unmasked frame from a client: protocol error, close 1002. */
    wsc_t w;
    wsc_open(&w, web_port);
    send_all(w.fd, "\x82\x04\x71\xf2\x0f\x00", 6);
    wsc_read(&w, SIZE_MAX, H_TIMEOUT_MS);
    assert_int_equal(w.closes, 1);
    assert_int_equal(w.close_code, 1002);
    wsc_close(&w);
    /* Data after the handshake before pairing: too many bytes. */
    wsc_open(&w, web_port);
    uint8_t hs[64];
    size_t n = handshake_bytes(hs, "server:wsx");
    hs[n] = 0;
    wsc_send(&w, 1, WS_OP_BINARY, hs, n + 1);
    wsc_read(&w, SIZE_MAX, H_TIMEOUT_MS);
    assert_true(h_peer_closed(w.fd, H_TIMEOUT_MS));
    wsc_close(&w);
    /* Text frames are refused (1003). */
    wsc_open(&w, web_port);
    wsc_send(&w, 1, WS_OP_TEXT, "hello", 5);
    wsc_read(&w, SIZE_MAX, H_TIMEOUT_MS);
    assert_int_equal(w.close_code, 1003);
    wsc_close(&w);
}

/* ---- trace replay ------------------------------------------------------------------ */

static void show(const char *label, const uint8_t *p, size_t n)
{
    fprintf(stderr, "  %s (%zu bytes):", label, n);
    for (size_t i = 0; i < n && i < 96; i++)
        fprintf(stderr, " %02x", p[i]);
    fprintf(stderr, "%s\n", n > 96 ? " ..." : "");
}

/* Replay a recorded TVM proxy session through our proxy: every C>S record
 * is sent on the same connection in file order, every S>C record must come
 * back byte for byte (the handshake replies from the proxy itself, the rest
 * relayed from the other peer), and every close happens where TVM's did. */
static void replay_proxy_trace(const char *file)
{
    trace_t t;
    char err[1024];
    if (trace_load_named(&t, file, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        fail_msg("cannot load %s", file);
    }
    hproc_t p;
    assert_int_equal(h_start_proxy(&p, NULL), 0);
    int fd[TRACE_MAX_CONNS];
    for (int i = 0; i < TRACE_MAX_CONNS; i++)
        fd[i] = -1;
    for (size_t i = 0; i < t.nevents; i++) {
        const trace_event_t *e = &t.events[i];
        const trace_stream_t *s =
            e->kind == TRACE_EV_DATA ? trace_stream(&t, e->conn, e->dir) : NULL;
        switch (e->kind) {
        case TRACE_EV_STEP:
            break;
        case TRACE_EV_OPEN:
            fd[e->conn] = tcp_connect(p.port);
            break;
        case TRACE_EV_DATA:
            assert_false(trace_is_truncated(s, e->off, e->len));
            if (e->dir == TRACE_C2S) {
                send_all(fd[e->conn], s->data + e->off, e->len);
            } else {
                uint8_t *got = malloc(e->len);
                if (read_exact(fd[e->conn], got, e->len, H_TIMEOUT_MS) < 0 ||
                    memcmp(got, s->data + e->off, e->len) != 0) {
                    fprintf(stderr, "%s line %d: c%d S>C @%zu differs\n", file, e->line, e->conn,
                            e->off);
                    show("TVM sent ", s->data + e->off, e->len);
                    show("ours sent", got, e->len);
                    h_dump_log(&p);
                    fail_msg("replay mismatch");
                }
                free(got);
            }
            break;
        case TRACE_EV_EOF:
            if (e->dir == TRACE_C2S) {
                shutdown(fd[e->conn], SHUT_WR);
            } else {
                if (!closed_without_reply(fd[e->conn], H_TIMEOUT_MS)) {
                    fprintf(stderr, "%s line %d: c%d: proxy did not close\n", file, e->line,
                            e->conn);
                    fail_msg("close mismatch");
                }
                close(fd[e->conn]);
                fd[e->conn] = -1;
            }
            break;
        }
    }
    for (int i = 0; i < TRACE_MAX_CONNS; i++)
        if (fd[i] >= 0)
            close(fd[i]);
    trace_free(&t);
    assert_int_equal(h_stop(&p), 0);
}

static void test_replay_v020(void **state)
{
    replay_proxy_trace("v0.20-proxy.txt");
}

static void test_replay_v026(void **state)
{
    replay_proxy_trace("v0.26-proxy.txt");
}

/* ---- tracker mode ------------------------------------------------------------------ */

static hproc_t trk, tpx;

static void wait_summary(const char *needle, int ms)
{
    if (h_wait_summary(trk.port, needle, 1, ms) < 0) {
        h_dump_log(&tpx);
        fail_msg("tracker view");
    }
}

/* REQUEST a slot for key; returns the matchkey (caller frees) after checking
 * that the tracker hands out the proxy's address. */
static char *request_slot(const char *key, int *tfd)
{
    *tfd = h_tracker_connect(trk.port);
    char req[128];
    snprintf(req, sizeof(req), "[4, \"%s\", \"\", 1]", key);
    char *r = h_tracker_call(*tfd, req);
    assert_non_null(r);
    char want[128];
    snprintf(want, sizeof(want), "[0, [\"127.0.0.1\", %d, \"%s:", tpx.port, key);
    if (strncmp(r, want, strlen(want)) != 0)
        fail_msg("REQUEST reply %s, expected %s...", r, want);
    char *mk = strdup(r + strlen(want) - strlen(key) - 1);
    *strchr(mk, '"') = '\0';
    free(r);
    return mk;
}

static int setup_tracker_mode(void **state)
{
    if (h_start_tracker(&trk, NULL) < 0)
        return -1;
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", trk.port);
    const char *extra[] = {"--tracker", addr, NULL};
    if (h_start_proxy(&tpx, extra) < 0)
        return -1;
    return h_wait_log(&tpx, "connected to tracker", H_TIMEOUT_MS);
}

static int teardown_tracker_mode(void **state)
{
    int a = h_stop(&tpx), b = h_stop(&trk);
    return a == 0 && b == 0 ? 0 : -1;
}

static void test_tracker_unknown_slot_mismatch(void **state)
{
    int64_t t0 = h_now_ms();
    int cli = rpc_hello(tpx.port, "client:nosuch:0.123");
    expect_reject(cli, RPC_CODE_MISMATCH, 2000);
    assert_true(h_now_ms() - t0 < 2000);
    close(cli);
}

static void test_tracker_real_server_session(void **state)
{
    hproc_t srv;
    assert_int_equal(h_start_server_through(&srv, tpx.port, "tk1", NULL), 0);
    wait_summary("{\"key\": \"server:proxy[tk1]\", \"addr\": [\"127.0.0.1\", ", H_TIMEOUT_MS);
    wait_summary("\"tk1\": {\"free\": 1, \"pending\": 0}", H_TIMEOUT_MS);
    char want_addr[64];
    snprintf(want_addr, sizeof(want_addr), "\"addr\": [\"127.0.0.1\", %d]", tpx.port);
    assert_int_equal(h_wait_summary(trk.port, want_addr, 1, 0), 0);
    int tfd;
    char *slot = request_slot("tk1", &tfd);
    char ckey[256];
    snprintf(ckey, sizeof(ckey), "client:%s -timeout=30", slot);
    int cli = rpc_hello(tpx.port, ckey);
    expect_success(cli, "server:tk1");
    run_rpc_session(cli);
    assert_true(h_peer_closed(cli, H_TIMEOUT_MS));
    close(cli);
    /* After the session the server is back with a fresh slot. */
    wait_summary("\"tk1\": {\"free\": 1, \"pending\": 0}", H_TIMEOUT_MS);
    char *slot2 = request_slot("tk1", &tfd);
    assert_string_not_equal(slot, slot2);
    /* The old slot key is spent. */
    snprintf(ckey, sizeof(ckey), "client:%s", slot);
    cli = rpc_hello(tpx.port, ckey);
    expect_reject(cli, RPC_CODE_MISMATCH, 2000);
    close(cli);
    snprintf(ckey, sizeof(ckey), "client:%s", slot2);
    cli = rpc_hello(tpx.port, ckey);
    expect_success(cli, "server:tk1");
    run_rpc_session(cli);
    close(cli);
    close(tfd);
    free(slot);
    free(slot2);
    assert_int_equal(h_stop(&srv), 0);
}

static void test_tracker_server_leaving_withdraws_slot(void **state)
{
    int srv = rpc_hello(tpx.port, "server:tk2");
    wait_summary("\"tk2\": {\"free\": 1, \"pending\": 0}", H_TIMEOUT_MS);
    wait_summary("server:proxy[tk1,tk2]", H_TIMEOUT_MS);
    close(srv);
    /* The tracker must not hand out the dead slot. */
    wait_summary("\"tk2\": {\"free\": 0, \"pending\": 0}", 5000);
    int tfd = h_tracker_connect(trk.port);
    assert_int_equal(h_tracker_send(tfd, "[4, \"tk2\", \"\", 1]"), 0);
    assert_true(h_tracker_silent(tfd, 500));
    close(tfd);
    /* The proxy re-registered itself while doing so. */
    wait_summary("server:proxy[tk1,tk2]", H_TIMEOUT_MS);
    assert_true(h_log_count(&tpx, "withdrawing the slot") >= 1);
}

static void test_tracker_unclaimed_slot_is_renamed(void **state)
{
    int srv = rpc_hello(tpx.port, "server:tk3");
    wait_summary("\"tk3\": {\"free\": 1, \"pending\": 0}", H_TIMEOUT_MS);
    int t1;
    char *s1 = request_slot("tk3", &t1);
    wait_summary("\"tk3\": {\"free\": 0, \"pending\": 0}", H_TIMEOUT_MS);
    /* Nobody claims it: after ~5-7 s the proxy announces a new slot. */
    wait_summary("\"tk3\": {\"free\": 1, \"pending\": 0}", 15000);
    int t2;
    char *s2 = request_slot("tk3", &t2);
    assert_string_not_equal(s1, s2);
    char ckey[256];
    snprintf(ckey, sizeof(ckey), "client:%s", s1);
    int late = rpc_hello(tpx.port, ckey);
    expect_reject(late, RPC_CODE_MISMATCH, 2000);
    close(late);
    snprintf(ckey, sizeof(ckey), "client:%s", s2);
    int cli = rpc_hello(tpx.port, ckey);
    expect_success(cli, "server:tk3");
    expect_success(srv, ckey);
    assert_int_equal(pump(cli, srv, 50000, 50000), 0);
    close(cli);
    close(srv);
    close(t1);
    close(t2);
    free(s1);
    free(s2);
}

/* --custom-addr: the tracker hands clients our chosen host (an extension). */
static void test_tracker_custom_addr(void **state)
{
    hproc_t p;
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", trk.port);
    const char *extra[] = {"--tracker", addr, "--custom-addr", "board7.lab", NULL};
    assert_int_equal(h_start_proxy(&p, extra), 0);
    int srv = rpc_hello(p.port, "server:tk5");
    char want[128];
    snprintf(want, sizeof(want), "{\"key\": \"server:proxy[tk5]\", \"addr\": [\"board7.lab\", %d]}",
             p.port);
    wait_summary(want, H_TIMEOUT_MS);
    int tfd = h_tracker_connect(trk.port);
    char *r = h_tracker_call(tfd, "[4, \"tk5\", \"\", 1]");
    snprintf(want, sizeof(want), "[0, [\"board7.lab\", %d, \"tk5:0.", p.port);
    assert_non_null(r);
    assert_true(strncmp(r, want, strlen(want)) == 0);
    free(r);
    close(tfd);
    close(srv);
    assert_int_equal(h_stop(&p), 0);
}

static void test_tracker_restart_reregisters(void **state)
{
    int srv = rpc_hello(tpx.port, "server:tk4");
    wait_summary("\"tk4\": {\"free\": 1, \"pending\": 0}", H_TIMEOUT_MS);
    int port = trk.port;
    assert_int_equal(h_stop(&trk), 0);
    char p0[16], p1[16];
    snprintf(p0, sizeof(p0), "%d", port);
    snprintf(p1, sizeof(p1), "%d", port + 1);
    const char *extra[] = {"--port", p0, "--port-end", p1, NULL};
    assert_int_equal(h_start_tracker(&trk, extra), 0);
    assert_int_equal(trk.port, port);
    /* UPDATE_INFO again (TVM forgets this) and every waiting slot. */
    wait_summary("server:proxy[tk1,tk2,tk3,tk4]", 20000);
    wait_summary("\"tk4\": {\"free\": 1, \"pending\": 0}", H_TIMEOUT_MS);
    int tfd;
    char *slot = request_slot("tk4", &tfd);
    char ckey[256];
    snprintf(ckey, sizeof(ckey), "client:%s", slot);
    int cli = rpc_hello(tpx.port, ckey);
    expect_success(cli, "server:tk4");
    expect_success(srv, ckey);
    close(cli);
    close(srv);
    close(tfd);
    free(slot);
}

/* ---- who may connect: --allow, --max-conns-per-peer ------------------------------ */

/* A connection the proxy refuses at accept is closed before any byte. */
static void expect_refused(int port)
{
    int fd = tcp_connect(port);
    assert_true(closed_without_reply(fd, H_TIMEOUT_MS));
    close(fd);
}

static void test_allow_list(void **state)
{
    hproc_t p;
    char wp[16];
    snprintf(wp, sizeof(wp), "%d", h_free_port());
    const char *deny[] = {"--allow",    "10.0.0.0/8,::2", "--web-port", wp,
                          "--web-host", "127.0.0.1",      NULL};
    assert_int_equal(h_start_proxy(&p, deny), 0);
    assert_int_equal(h_wait_log(&p, "web port listening", H_TIMEOUT_MS), 0);
    expect_refused(p.port);
    assert_int_equal(h_wait_log(&p, "proxy: 127.0.0.1:", H_TIMEOUT_MS), 0);
    assert_int_equal(h_wait_log(&p, "not in --allow; refusing", H_TIMEOUT_MS), 0);
    /* The web port is guarded the same way. */
    expect_refused(atoi(wp));
    assert_int_equal(h_wait_log(&p, "proxy: web 127.0.0.1:", H_TIMEOUT_MS), 0);
    assert_int_equal(h_log_count(&p, "not in --allow; refusing"), 2);
    assert_int_equal(h_stop(&p), 0);

    snprintf(wp, sizeof(wp), "%d", h_free_port());
    const char *allow[] = {
        "--allow", "10.0.0.0/8,127.0.0.0/8", "--web-port", wp, "--web-host", "127.0.0.1", NULL};
    assert_int_equal(h_start_proxy(&p, allow), 0);
    assert_int_equal(h_wait_log(&p, "web port listening", H_TIMEOUT_MS), 0);
    int srv, cli;
    make_pair(p.port, "server:acl", "client:acl", &srv, &cli);
    assert_int_equal(pump(cli, srv, 10000, 10000), 0);
    close(srv);
    close(cli);
    wsc_t w;
    wsc_open(&w, atoi(wp));
    wsc_close(&w);
    assert_int_equal(h_log_count(&p, "not in --allow"), 0);
    assert_int_equal(h_stop(&p), 0);

    char out[4096];
    const char *bad[] = {"proxy", "--allow", "10.0.0.0/33", NULL};
    assert_int_equal(h_run(bad, out, sizeof(out), H_TIMEOUT_MS), 2);
}

#define PEER_CAP_LOG "connections from this address already (--max-conns-per-peer); refusing"

/* A connection that sent half a handshake: its close is logged, so a test
 * can wait until the proxy has seen it. */
static int half_hello(int port)
{
    int fd = tcp_connect(port);
    uint8_t magic[4];
    put_le32(magic, RPC_MAGIC);
    send_all(fd, magic, 4);
    return fd;
}

static void test_max_conns_per_peer(void **state)
{
    hproc_t p;
    char wp[16];
    snprintf(wp, sizeof(wp), "%d", h_free_port());
    const char *extra[] = {"--max-conns-per-peer", "3",         "--web-port", wp,
                           "--web-host",           "127.0.0.1", NULL};
    assert_int_equal(h_start_proxy(&p, extra), 0);
    assert_int_equal(h_wait_log(&p, "web port listening", H_TIMEOUT_MS), 0);
    /* Waiting, half-handshaken and web connections all count, on both ports. */
    int srv = rpc_hello(p.port, "server:cap");
    assert_int_equal(h_wait_log(&p, "waits for key cap", H_TIMEOUT_MS), 0);
    int half = half_hello(p.port);
    wsc_t web;
    wsc_open(&web, atoi(wp)); /* upgraded, so surely accepted before what follows */
    expect_refused(p.port);
    expect_refused(atoi(wp));
    assert_int_equal(h_wait_log(&p, PEER_CAP_LOG, H_TIMEOUT_MS), 0);
    assert_true(quiet(srv, 50) && quiet(web.fd, 50)); /* the admitted ones are untouched */
    /* One leaves: one more is admitted, and it pairs. */
    close(half);
    assert_int_equal(h_wait_log(&p, "closed in the middle of its handshake", H_TIMEOUT_MS), 0);
    int cli = rpc_hello(p.port, "client:cap");
    expect_success(cli, "server:cap");
    expect_success(srv, "client:cap");
    /* A pair counts two until both its sockets are closed. */
    expect_refused(p.port);
    assert_int_equal(pump(cli, srv, 100000, 100000), 0);
    close(cli);
    close(srv);
    assert_int_equal(h_wait_log(&p, "pair server:cap", H_TIMEOUT_MS), 0);
    int s2 = rpc_hello(p.port, "server:cap2");
    int c2 = rpc_hello(p.port, "client:cap2");
    expect_success(s2, "client:cap2");
    expect_success(c2, "server:cap2");
    expect_refused(atoi(wp));
    assert_int_equal(h_log_count(&p, PEER_CAP_LOG), 4);
    close(s2);
    close(c2);
    wsc_close(&web);
    assert_int_equal(h_stop(&p), 0);

    char out[4096];
    const char *bad[] = {"proxy", "--max-conns-per-peer", "-1", NULL};
    assert_int_equal(h_run(bad, out, sizeof(out), H_TIMEOUT_MS), 2);
}

/* ---- 256 pairs at once: the memory bound (docs/proxy.md) ---------------------------- */

#define MANY_PAIRS 256
#define MANY_FAST_BYTES (1u << 20)  /* each way, fast pairs */
#define MANY_SLOW_EVERY 8           /* every 8th pair has a slow reader */
#define MANY_SLOW_BYTES (16u << 20) /* toward the slow reader */
#define MANY_SLOW_BACK 65536u       /* from the slow reader, read normally */
#define MANY_SLOW_READ 16384        /* bytes a slow reader takes per round */
#define KIB 1024u

/* The bound of docs/proxy.md, from relay.c's buffer sizes: each direction
 * of a copy-mode pair queues at most relay-buffer bytes in a buf that grows
 * by doubling, i.e. an allocation of relay-buffer rounded up to a power of
 * two; 32 KiB more per pair cover its state (relay_t, ppair_t), allocator
 * headers and the freed smaller chunks its buffers grew through (with every
 * queue full, 256 pairs measured 537 KiB each). The base is the idle proxy
 * plus 8 MiB for the event loop's tables and the connections' handshake
 * state before pairing. */
#define MANY_PAIR_STATE (32 * KIB)
#define MANY_BASE_SLACK (8192 * KIB)

static size_t pow2_ceil(size_t n)
{
    size_t p = 256; /* buf's first allocation */
    while (p < n)
        p *= 2;
    return p;
}

/* A field of /proc/<pid>/status in KiB ("VmRSS:", "VmHWM:"), or 0. */
static size_t proc_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *fp = fopen(path, "r");
    size_t kib = 0;
    while (fp && fgets(line, sizeof(line), fp)) {
        if (strncmp(line, field, strlen(field)) == 0)
            kib = strtoul(line + strlen(field), NULL, 10);
    }
    if (fp)
        fclose(fp);
    return kib;
}

/* Streams are slices of one random table at offsets that differ per flow
 * (7919 is odd, so 512 flows get 512 distinct offsets): bytes from another
 * pair, or from another place in the stream, do not match. */
static uint8_t stream_tab[65536];

static void stream_init(void)
{
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < sizeof(stream_tab); i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        stream_tab[i] = (uint8_t)x;
    }
}

static uint8_t stream_byte(unsigned flow, size_t k)
{
    return stream_tab[(k + flow * 7919u) & 0xffff] ^ (uint8_t)(k >> 16);
}

typedef struct flow {
    size_t want, sent, got;
    unsigned id;
} flow_t;

typedef struct mpair {
    int fd[2];   /* [0] server, [1] client */
    flow_t f[2]; /* f[d]: written on fd[d], read on fd[1 - d] */
    int slow;    /* the server reads f[1] slowly (and not at all while paused) */
} mpair_t;

typedef struct many {
    mpair_t p[MANY_PAIRS];
    int paused;
    int64_t slow_progress_ms; /* last time a slow pair's writer got a byte out */
    size_t peak_rss_kib;
    int64_t next_sample_ms;
    pid_t pid;
} many_t;

/* max: the most one send may take (no point generating what will not fit). */
static int flow_send(flow_t *f, int fd, size_t max)
{
    uint8_t b[65536];
    size_t n = f->want - f->sent < max ? f->want - f->sent : max;
    for (size_t k = 0; k < n; k++)
        b[k] = stream_byte(f->id, f->sent + k);
    ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
    if (w < 0)
        return errno == EAGAIN ? 0 : -1;
    f->sent += (size_t)w;
    return (int)(w > 0);
}

static int flow_recv(flow_t *f, int fd, size_t max)
{
    uint8_t b[65536];
    ssize_t r = recv(fd, b, max < sizeof(b) ? max : sizeof(b), 0);
    if (r < 0)
        return errno == EAGAIN ? 0 : -1;
    if (r == 0 || f->got + (size_t)r > f->want)
        return -1;
    for (ssize_t k = 0; k < r; k++) {
        if (b[k] != stream_byte(f->id, f->got + (size_t)k))
            return -1;
    }
    f->got += (size_t)r;
    return 0;
}

static int many_done(const many_t *m, int slow_too)
{
    for (int i = 0; i < MANY_PAIRS; i++) {
        const mpair_t *mp = &m->p[i];
        for (int d = 0; d < 2; d++) {
            if (mp->f[d].got < mp->f[d].want && (slow_too || !mp->slow || d == 0))
                return 0;
        }
    }
    return 1;
}

static void many_sample(many_t *m)
{
    if (h_now_ms() < m->next_sample_ms)
        return;
    size_t rss = proc_kib(m->pid, "VmRSS:");
    m->peak_rss_kib = rss > m->peak_rss_kib ? rss : m->peak_rss_kib;
    m->next_sample_ms = h_now_ms() + 50;
}

/* One poll round over every socket. -1 if a byte was wrong or a peer left. */
static int many_round(many_t *m)
{
    static struct pollfd pf[2 * MANY_PAIRS];
    for (int i = 0; i < MANY_PAIRS; i++) {
        mpair_t *mp = &m->p[i];
        for (int d = 0; d < 2; d++) {
            short ev = mp->f[d].sent < mp->f[d].want ? POLLOUT : 0;
            if (mp->f[1 - d].got < mp->f[1 - d].want && !(mp->slow && d == 0 && m->paused))
                ev |= POLLIN;
            pf[2 * i + d] = (struct pollfd){mp->fd[d], ev, 0};
        }
    }
    if (poll(pf, 2 * MANY_PAIRS, 100) < 0)
        return -1;
    for (int i = 0; i < MANY_PAIRS; i++) {
        mpair_t *mp = &m->p[i];
        for (int d = 0; d < 2; d++) {
            short re = pf[2 * i + d].revents;
            if (re & POLLOUT) {
                int rc = flow_send(&mp->f[d], mp->fd[d], mp->slow && d == 1 ? 16384 : 65536);
                if (rc < 0)
                    return -1;
                if (rc > 0 && mp->slow && d == 1)
                    m->slow_progress_ms = h_now_ms();
            }
            size_t max = mp->slow && d == 0 ? MANY_SLOW_READ : 65536;
            if ((re & (POLLIN | POLLHUP | POLLERR)) && flow_recv(&mp->f[1 - d], mp->fd[d], max) < 0)
                return -1;
        }
    }
    many_sample(m);
    return 0;
}

/* Pair MANY_PAIRS servers and clients: all servers first, then all clients,
 * then the replies, so the proxy handles them as a crowd. */
static void many_connect(many_t *m, int port)
{
    char key[64];
    for (int i = 0; i < MANY_PAIRS; i++) {
        snprintf(key, sizeof(key), "server:many%d", i);
        m->p[i].fd[0] = rpc_hello(port, key);
    }
    for (int i = 0; i < MANY_PAIRS; i++) {
        snprintf(key, sizeof(key), "client:many%d", i);
        m->p[i].fd[1] = rpc_hello(port, key);
    }
    for (int i = 0; i < MANY_PAIRS; i++) {
        mpair_t *mp = &m->p[i];
        snprintf(key, sizeof(key), "client:many%d", i);
        expect_success(mp->fd[0], key);
        snprintf(key, sizeof(key), "server:many%d", i);
        expect_success(mp->fd[1], key);
        mp->slow = i % MANY_SLOW_EVERY == 1;
        mp->f[0].want = mp->slow ? MANY_SLOW_BACK : MANY_FAST_BYTES;
        mp->f[1].want = mp->slow ? MANY_SLOW_BYTES : MANY_FAST_BYTES;
        for (int d = 0; d < 2; d++) {
            mp->f[d].id = (unsigned)(2 * i + d);
            net_set_nonblock(mp->fd[d], 1);
        }
    }
}

/* Enough descriptors for 512 sockets here and in the proxy (which raises
 * its own soft limit to the hard one); 0, or -1 if the hard limit is too low. */
static int raise_nofile(rlim_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_max < need)
        return -1;
    if (rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            return -1;
    }
    return 0;
}

/* 256 pairs relay at once, half of them toward a reader that first stops
 * and then reads slowly: every byte arrives intact, the slow writers are
 * held back (back-pressure), and the proxy's RSS stays under the bound. */
static void many_pairs_run(const char *mode, const char *const *extra, size_t relay_buffer)
{
    if (raise_nofile(2 * MANY_PAIRS + 128) < 0) {
        fprintf(stderr, "skipping: RLIMIT_NOFILE hard limit below %d\n", 2 * MANY_PAIRS + 128);
        skip();
    }
    stream_init();
    hproc_t p;
    assert_int_equal(h_start_proxy(&p, extra), 0);
    many_t *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->pid = p.pid;
    size_t idle_kib = proc_kib(p.pid, "VmRSS:");
    size_t per_pair = 2 * pow2_ceil(relay_buffer) + MANY_PAIR_STATE;
    size_t bound_kib = idle_kib + MANY_BASE_SLACK / KIB + MANY_PAIRS * per_pair / KIB;

    int64_t t0 = h_now_ms();
    many_connect(m, p.port);
    int64_t t_paired = h_now_ms();
    /* Phase 1: slow readers read nothing until their writers are stuck. */
    m->paused = 1;
    m->slow_progress_ms = h_now_ms();
    int64_t deadline = h_now_ms() + 60000;
    while ((!many_done(m, 0) || h_now_ms() - m->slow_progress_ms < 300) && h_now_ms() < deadline)
        assert_int_equal(many_round(m), 0);
    assert_true(many_done(m, 0));
    size_t stuck_rss_kib = proc_kib(p.pid, "VmRSS:");
    int64_t t_stuck = h_now_ms();
    int held = 0, nslow = MANY_PAIRS / MANY_SLOW_EVERY;
    size_t held_bytes = 0;
    for (int i = 1; i < MANY_PAIRS; i += MANY_SLOW_EVERY) {
        held += m->p[i].f[1].sent < m->p[i].f[1].want;
        held_bytes += m->p[i].f[1].sent - m->p[i].f[1].got;
    }
    /* Phase 2: the slow readers take a little at a time. */
    m->paused = 0;
    deadline = h_now_ms() + 60000;
    while (!many_done(m, 1) && h_now_ms() < deadline)
        assert_int_equal(many_round(m), 0);
    assert_true(many_done(m, 1));
    int64_t t_end = h_now_ms();
    size_t hwm_kib = proc_kib(p.pid, "VmHWM:");
    many_sample(m);

    fprintf(stderr,
            "many pairs (%s): %d pairs (%d splice), paired in %lld ms, relayed in %lld + %lld ms; "
            "%d/%d slow writers "
            "held back with %zu KiB in flight each; RSS idle %zu KiB, with the slow readers "
            "stuck %zu KiB, peak sampled %zu KiB, VmHWM %zu KiB = %zu KiB per pair over idle; "
            "bound %zu KiB\n",
            mode, MANY_PAIRS, h_log_count(&p, "(splice)"), (long long)(t_paired - t0),
            (long long)(t_stuck - t_paired), (long long)(t_end - t_stuck), held, nslow,
            held_bytes / (size_t)nslow / KIB, idle_kib, stuck_rss_kib, m->peak_rss_kib, hwm_kib,
            (hwm_kib - idle_kib) / MANY_PAIRS, bound_kib);
    assert_true(held >= nslow * 9 / 10); /* back-pressure reached the writers */
    assert_true(hwm_kib > 0 && hwm_kib < bound_kib);
    assert_true(m->peak_rss_kib < bound_kib);

    for (int i = 0; i < MANY_PAIRS; i++) {
        close(m->p[i].fd[0]);
        close(m->p[i].fd[1]);
    }
    free(m);
    assert_int_equal(h_stop(&p), 0);
}

static void test_many_pairs_copy(void **state)
{
    const char *extra[] = {"--no-splice", "--max-conns-per-peer", "0", NULL};
    many_pairs_run("copy", extra, 256 * KIB);
}

static void test_many_pairs_default(void **state)
{
    /* splice where the kernel grants pipes, copy for the rest */
    const char *extra[] = {"--max-conns-per-peer", "0", NULL};
    many_pairs_run("default", extra, 256 * KIB);
}

/* ---- fixtures ------------------------------------------------------------------------ */

static int setup_plain(void **state)
{
    web_port = h_free_port();
    char wp[16];
    snprintf(wp, sizeof(wp), "%d", web_port);
    const char *extra[] = {"--timeout-server",
                           "2",
                           "--timeout-client",
                           "2",
                           "--handshake-timeout",
                           "1",
                           "--web-port",
                           wp,
                           "--web-host",
                           "127.0.0.1",
                           NULL};
    if (h_start_proxy(&px, extra) < 0)
        return -1;
    return h_wait_log(&px, "web port listening on 127.0.0.1:", H_TIMEOUT_MS);
}

static int teardown_plain(void **state)
{
    int st = h_stop(&px);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static void test_cli_usage(void **state)
{
    char out[4096];
    const char *bad[][4] = {
        {"proxy", "--example-rpc", "1", NULL},
        {"proxy", "--timeout-server", "0", NULL},
        {"proxy", "--port", "70000", NULL},
        {"proxy", "--tracker", "nocolon", NULL},
    };
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(h_run(bad[i], out, sizeof(out), H_TIMEOUT_MS), 2);
    /* A bad tracker address is a startup error. */
    assert_int_equal(h_run(bad[3], out, sizeof(out), H_TIMEOUT_MS), 1);
    const char *help[] = {"proxy", "--help", NULL};
    assert_int_equal(h_run(help, out, sizeof(out), H_TIMEOUT_MS), 0);
    assert_non_null(strstr(out, "--web-port"));
    assert_non_null(strstr(out, "--allow CIDR,..."));
    assert_non_null(strstr(out, "--max-conns-per-peer N"));
}

static void test_web_port_busy_is_not_fatal(void **state)
{
    /* The shared proxy holds web_port: a second proxy wanting it still serves TCP. */
    hproc_t p;
    char wp[16];
    snprintf(wp, sizeof(wp), "%d", web_port);
    const char *extra[] = {"--web-port", wp, "--web-host", "127.0.0.1", NULL};
    assert_int_equal(h_start_proxy(&p, extra), 0);
    assert_true(h_log_count(&p, "WebSocket endpoint off") == 1);
    int srv, cli;
    make_pair(p.port, "server:wb", "client:wb", &srv, &cli);
    close(srv);
    close(cli);
    assert_int_equal(h_stop(&p), 0);
}

int main(void)
{
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(test_pair_server_first),
        cmocka_unit_test(test_pair_client_first),
        cmocka_unit_test(test_duplicate_server_and_client),
        cmocka_unit_test(test_pool_timeouts_send_mismatch),
        cmocka_unit_test(test_relay_bulk_both_ways),
        cmocka_unit_test(test_relay_copy_mode),
        cmocka_unit_test(test_close_propagation),
        cmocka_unit_test(test_back_pressure),
        cmocka_unit_test(test_peer_vanishes_mid_transfer),
        cmocka_unit_test(test_bad_input_closes_only_that_peer),
        cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_real_server_through_proxy),
        cmocka_unit_test(test_ws_server_tcp_client),
        cmocka_unit_test(test_ws_client_ws_server),
        cmocka_unit_test(test_ws_http_errors_and_bad_frames),
        cmocka_unit_test(test_web_port_busy_is_not_fatal),
        cmocka_unit_test(test_allow_list),
        cmocka_unit_test(test_max_conns_per_peer),
        cmocka_unit_test(test_many_pairs_copy),
        cmocka_unit_test(test_many_pairs_default),
        cmocka_unit_test(test_cli_usage),
        cmocka_unit_test(test_replay_v020),
        cmocka_unit_test(test_replay_v026),
    };
    const struct CMUnitTest tracker[] = {
        cmocka_unit_test(test_tracker_unknown_slot_mismatch),
        cmocka_unit_test(test_tracker_real_server_session),
        cmocka_unit_test(test_tracker_server_leaving_withdraws_slot),
        cmocka_unit_test(test_tracker_unclaimed_slot_is_renamed),
        cmocka_unit_test(test_tracker_custom_addr),
        cmocka_unit_test(test_tracker_restart_reregisters),
    };
    int rc = cmocka_run_group_tests_name("proxy", plain, setup_plain, teardown_plain);
    rc |= cmocka_run_group_tests_name("proxy_tracker", tracker, setup_tracker_mode,
                                      teardown_tracker_mode);
    return rc;
}
