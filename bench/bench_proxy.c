/* bench_proxy: loopback TCP throughput, raw vs through the proxy's relay.
 *
 * One process, no tvmrpc binary needed: two proxies run on their own ev
 * loops in threads (one relaying with splice(2), one copying), a sender
 * thread writes MiB megabytes through a path and the main thread reads
 * them. Rounds interleave the three paths (raw, splice, copy), so whatever
 * else the machine does disturbs them alike; the best run of each path is
 * reported with its ratio to raw loopback TCP and the CPU it cost (the
 * proxy thread alone, and the whole process: sender, receiver and the
 * kernel's loopback work done on their behalf).
 *
 * Built by bench/CMakeLists.txt with the other benchmarks, or by hand:
 *   cc -O2 -D_GNU_SOURCE -Isrc bench/bench_proxy.c build/libtvmrpc_core.a \
 *      -lpthread -ldl -lm -o bench_proxy
 * Run: bench_proxy [MiB [rounds [relay-KiB]]]   (default 64 MiB, 5 rounds,
 *      the proxy's default --relay-buffer). Prints a table and one
 *      BENCH_RESULT line; exit 0 targets met, 1 a target missed, 2 failure. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/net.h"
#include "proxy/proxy.h"
#include "rpc/rpc.h"

#define CHUNK (256 * 1024)

typedef struct sender {
    int fd;
    size_t bytes;
} sender_t;

typedef struct proxy_thread {
    proxy_t *p;
    int stop[2];
    pthread_t tid;
} proxy_thread_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_proxy: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void *send_main(void *arg)
{
    sender_t *s = arg;
    char *buf = malloc(CHUNK);
    memset(buf, 0x5a, CHUNK);
    size_t left = s->bytes;
    while (left) {
        size_t n = left < CHUNK ? left : CHUNK;
        ssize_t w = send(s->fd, buf, n, MSG_NOSIGNAL);
        if (w <= 0)
            die("send");
        left -= (size_t)w;
    }
    free(buf);
    return NULL;
}

/* Seconds to move bytes from `from` to `to`. */
static double transfer(int from, int to, size_t bytes)
{
    sender_t s = {from, bytes};
    pthread_t tid;
    char *buf = malloc(CHUNK);
    double t0 = now_s();
    pthread_create(&tid, NULL, send_main, &s);
    size_t got = 0;
    while (got < bytes) {
        ssize_t r = recv(to, buf, CHUNK, 0);
        if (r <= 0)
            die("recv");
        got += (size_t)r;
    }
    double t = now_s() - t0;
    pthread_join(tid, NULL);
    free(buf);
    return t;
}

static void raw_pair(int *a, int *b)
{
    int port;
    char err[NET_ERR_LEN];
    int lfd = net_listen_range("127.0.0.1", 0, 1, 1, &port, err);
    if (lfd < 0)
        die(err);
    *a = net_connect("127.0.0.1", port, 5000, err);
    if (*a < 0)
        die(err);
    /* connect() returned, so the connection waits in the accept queue. */
    *b = net_accept(lfd, NULL, 0, NULL, err);
    if (*b < 0)
        die("accept");
    net_set_nonblock(*b, 0);
    close(lfd);
}

static int hello(int port, const char *key)
{
    char err[NET_ERR_LEN];
    int fd = net_connect("127.0.0.1", port, 5000, err);
    if (fd < 0)
        die(err);
    uint8_t b[64];
    size_t kl = strlen(key);
    put_le32(b, RPC_MAGIC);
    put_le32(b + 4, (uint32_t)kl);
    memcpy(b + 8, key, kl);
    if (net_write_full(fd, b, 8 + kl, 5000, err) < 0)
        die(err);
    return fd;
}

static void expect_success(int fd)
{
    uint8_t b[64];
    if (net_read_full(fd, b, 8, 5000, NULL, NULL) < 0 || le32(b) != RPC_CODE_SUCCESS ||
        le32(b + 4) > 56 || net_read_full(fd, b + 8, le32(b + 4), 5000, NULL, NULL) < 0)
        die("handshake");
}

static void proxy_pair(int port, int n, int *cli, int *srv)
{
    char sk[32], ck[32];
    snprintf(sk, sizeof(sk), "server:bench%d", n);
    snprintf(ck, sizeof(ck), "client:bench%d", n);
    *srv = hello(port, sk);
    *cli = hello(port, ck);
    expect_success(*srv);
    expect_success(*cli);
}

static void *proxy_main(void *arg)
{
    proxy_thread_t *pt = arg;
    proxy_run(pt->p, pt->stop[0]);
    return NULL;
}

static size_t relay_kib; /* 0 = the proxy's default */

static void proxy_start(proxy_thread_t *pt, int splice)
{
    proxy_config_t cfg;
    proxy_config_defaults(&cfg);
    if (relay_kib)
        cfg.relay.high_water = cfg.relay.pipe_size = relay_kib * 1024;
    cfg.port = 0;
    cfg.web_port = 0;
    cfg.relay.splice = splice;
    char err[256];
    pt->p = proxy_create(&cfg, err, sizeof(err));
    if (!pt->p || pipe2(pt->stop, O_NONBLOCK) < 0) {
        fprintf(stderr, "bench_proxy: %s\n", err);
        exit(2);
    }
    pthread_create(&pt->tid, NULL, proxy_main, pt);
}

static void proxy_stop(proxy_thread_t *pt)
{
    char sig = 15;
    if (write(pt->stop[1], &sig, 1) != 1)
        die("write");
    pthread_join(pt->tid, NULL);
    proxy_free(pt->p);
    close(pt->stop[0]);
    close(pt->stop[1]);
}

/* CPU seconds the proxy's thread has used so far (0 for the raw path). */
static double thread_cpu(const proxy_thread_t *pt)
{
    clockid_t cid;
    struct timespec ts;
    if (!pt || pthread_getcpuclockid(pt->tid, &cid) != 0 || clock_gettime(cid, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double process_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct best {
    double t, cpu, total; /* wall seconds, proxy thread CPU, process CPU */
} best_t;

/* One transfer over path (NULL = raw TCP); keeps the fastest in *b. */
static void measure(size_t bytes, const proxy_thread_t *pt, int n, best_t *b)
{
    int a, c;
    if (!pt)
        raw_pair(&a, &c);
    else
        proxy_pair(proxy_port(pt->p), n, &a, &c);
    double c0 = thread_cpu(pt), p0 = process_cpu();
    double t = transfer(a, c, bytes);
    double cpu = thread_cpu(pt) - c0, total = process_cpu() - p0;
    close(a);
    close(c);
    if (t < b->t)
        *b = (best_t){t, cpu, total};
}

static void json_metric(int first, const char *name, double value, const char *unit,
                        const char *target, int ok)
{
    printf("%s{\"name\": \"%s\", \"value\": %.3f, \"unit\": \"%s\", \"target\": \"%s\"",
           first ? "" : ", ", name, value, unit, target);
    if (ok >= 0)
        printf(", \"ok\": %s", ok ? "true" : "false");
    printf("}");
}

/* Relaying through the proxy must keep at least this share of raw loopback
 * throughput; generous, because on a small shared machine the extra hop
 * competes with sender and receiver for the same cores. */
#define TARGET_RATIO 0.3

int main(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: bench_proxy [MiB [rounds [relay-KiB]]]\n"
               "loopback throughput: raw TCP vs the proxy relay (splice and copy)\n");
        return 0;
    }
    size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 64;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    relay_kib = argc > 3 ? (size_t)atoi(argv[3]) : 0;
    if (mib < 1 || mib > 65536 || rounds < 1) {
        fprintf(stderr, "bench_proxy: bad arguments (try --help)\n");
        return 2;
    }
    size_t bytes = mib << 20;
    log_init("proxy", LOG_WARN);
    signal(SIGPIPE, SIG_IGN); /* tvmrpc proxy does this through sig.h */

    proxy_thread_t spl, cpy;
    proxy_start(&spl, 1);
    proxy_start(&cpy, 0);
    best_t b[3] = {{1e9, 0, 0}, {1e9, 0, 0}, {1e9, 0, 0}};
    for (int r = 0; r < rounds; r++) {
        measure(bytes, NULL, r, &b[0]);
        measure(bytes, &spl, r, &b[1]);
        measure(bytes, &cpy, r, &b[2]);
    }
    proxy_stop(&spl);
    proxy_stop(&cpy);

    double mb = (double)bytes / 1048576.0;
    static const char *const name[3] = {"raw loopback TCP   ", "proxy, splice relay",
                                        "proxy, copy relay  "};
    printf("transfer: %zu MiB, best of %d interleaved rounds\n", mib, rounds);
    printf("%-19s  %10s  %6s  %18s\n", "path", "MiB/s", "vs raw", "CPU ms/MiB");
    printf("%-19s  %10s  %6s  %8s %9s\n", "", "", "", "proxy", "process");
    for (int i = 0; i < 3; i++)
        printf("%s  %10.1f  %6.2f  %8.2f %9.2f\n", name[i], mb / b[i].t, b[0].t / b[i].t,
               b[i].cpu * 1000 / mb, b[i].total * 1000 / mb);
    double ratio = b[0].t / b[1].t;
    int ok = ratio >= TARGET_RATIO;
    char target[32];
    snprintf(target, sizeof(target), ">= %.2f", TARGET_RATIO);
    printf("BENCH_RESULT {\"bench\": \"proxy\", \"metrics\": [");
    json_metric(1, "raw_tcp", mb / b[0].t, "MiB/s", "", -1);
    json_metric(0, "splice_relay", mb / b[1].t, "MiB/s", "", -1);
    json_metric(0, "splice_vs_raw", ratio, "x", target, ok);
    json_metric(0, "copy_relay", mb / b[2].t, "MiB/s", "", -1);
    json_metric(0, "copy_vs_raw", b[0].t / b[2].t, "x", "", -1);
    json_metric(0, "splice_proxy_cpu", b[1].cpu * 1000 / mb, "ms/MiB", "", -1);
    json_metric(0, "copy_proxy_cpu", b[2].cpu * 1000 / mb, "ms/MiB", "", -1);
    json_metric(0, "splice_process_cpu", b[1].total * 1000 / mb, "ms/MiB", "", -1);
    json_metric(0, "copy_process_cpu", b[2].total * 1000 / mb, "ms/MiB", "", -1);
    printf("], \"config\": {\"mib\": %zu, \"rounds\": %d, \"relay_kib\": %zu}}\n", mib, rounds,
           relay_kib);
    return ok ? 0 : 1;
}
