/* bench_raw: the physical baseline of `tvmrpc bench`. A forked peer replays
 * any request/reply shape over loopback TCP with the least work possible
 * (blocking calls, MSG_WAITALL, one buffer, no parsing), so "RPC / raw TCP"
 * is what the RPC stack costs on top of the kernel (bench_lib.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <linux/tcp.h> /* struct tcp_info with the byte counters (glibc's lacks them) */
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/net.h"
#include "client/bench_lib.h"

#define MAX_EXCHANGE ((uint64_t)1 << 30)

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Blocking full send / receive; -1 on error or EOF. */
static int send_all(int fd, const uint8_t *p, uint64_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (uint64_t)w;
    }
    return 0;
}

static int recv_all(int fd, uint8_t *p, uint64_t n)
{
    while (n) {
        ssize_t r = recv(fd, p, n, MSG_WAITALL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (uint64_t)r;
    }
    return 0;
}

/* ---- the peer ------------------------------------------------------------------ */

static void peer_conn(int fd)
{
    uint8_t setup[16];
    if (recv_all(fd, setup, sizeof(setup)) < 0)
        _exit(0);
    uint64_t req = le64(setup), rep = le64(setup + 8);
    uint64_t cap = req > rep ? req : rep;
    if (req > MAX_EXCHANGE || rep > MAX_EXCHANGE)
        _exit(1);
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf)
        _exit(1);
    /* Touched now, so no exchange pays for page faults (the RPC server's
     * arrays are warm too after the bench's first, untimed, copy). */
    memset(buf, 0x5a, cap);
    uint8_t ready = 1;
    if (send_all(fd, &ready, 1) < 0)
        _exit(0);
    while (recv_all(fd, buf, req) == 0 && send_all(fd, buf, rep) == 0)
        ;
    _exit(0);
}

/* Reap finished connection processes (not SIG_IGN: auto-reaped children
 * would take their CPU time with them, and the bench accounts for it). */
static void reap(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

/* The accept loop of a peer or relay process: one child per connection, as
 * the RPC server runs one per session. conn(fd, arg) never returns. */
static void serve_main(int lfd, pid_t parent, void (*conn)(int fd, int arg), int arg)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    pid_t me = getpid();
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        reap();
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            _exit(1);
        }
        pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != me)
                _exit(1);
            close(lfd);
            conn(fd, arg);
        }
        close(fd);
    }
}

static void peer_child(int fd, int unused)
{
    (void)unused;
    net_set_nodelay(fd);
    peer_conn(fd);
}

static int listen_any(int *port, char *err, size_t errlen)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return fail(err, errlen, "raw TCP peer: %s", strerror(e));
    }
    *port = ntohs(a.sin_port);
    return fd;
}

int bench_raw_start(bench_raw_t *r, char *err, size_t errlen)
{
    int fd = listen_any(&r->port, err, errlen);
    if (fd < 0)
        return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        return fail(err, errlen, "fork: %s", strerror(errno));
    }
    if (pid == 0)
        serve_main(fd, parent, peer_child, 0);
    close(fd);
    r->pid = pid;
    return 0;
}

void bench_raw_stop(bench_raw_t *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
    }
    r->pid = 0;
}

int bench_raw_open(const bench_raw_t *r, uint64_t req, uint64_t rep, int timeout_ms, char *err,
                   size_t errlen)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)r->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return fail(err, errlen, "raw TCP peer: connect: %s", strerror(e));
    }
    net_set_nodelay(fd);
    /* A bound on every call, so a wedged peer cannot hang the bench. */
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    uint8_t setup[16], ready;
    put_le64(setup, req);
    put_le64(setup + 8, rep);
    if (send_all(fd, setup, sizeof(setup)) < 0 || recv_all(fd, &ready, 1) < 0) {
        close(fd);
        return fail(err, errlen, "raw TCP peer: setup of %llu/%llu bytes failed",
                    (unsigned long long)req, (unsigned long long)rep);
    }
    return fd;
}

int bench_raw_exchange(int fd, const void *out, uint64_t req, void *in, uint64_t rep, char *err,
                       size_t errlen)
{
    if (send_all(fd, out, req) < 0 || recv_all(fd, in, rep) < 0)
        return fail(err, errlen, "raw TCP exchange of %llu/%llu bytes: %s", (unsigned long long)req,
                    (unsigned long long)rep, errno ? strerror(errno) : "closed");
    return 0;
}

/* ---- a minimal relay ------------------------------------------------------------ */

#define RELAY_PIPE (1 << 20)

typedef struct hop {
    int from, to;
} hop_t;

/* One direction: splice socket -> pipe -> socket, blocking; the cheapest
 * way to move bytes between two sockets (no copy through user space). */
static void *hop_run(void *arg)
{
    hop_t *h = arg;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return NULL;
    fcntl(p[1], F_SETPIPE_SZ, RELAY_PIPE);
    for (;;) {
        ssize_t n = splice(h->from, NULL, p[1], NULL, RELAY_PIPE, SPLICE_F_MOVE);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        while (n > 0) {
            ssize_t w = splice(p[0], NULL, h->to, NULL, (size_t)n, SPLICE_F_MOVE);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                goto out;
            n -= w;
        }
    }
out:
    shutdown(h->to, SHUT_WR);
    close(p[0]);
    close(p[1]);
    return NULL;
}

static void relay_conn(int cfd, int peer_port)
{
    int sfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)peer_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (sfd < 0 || connect(sfd, (struct sockaddr *)&a, sizeof(a)) < 0)
        _exit(1);
    net_set_nodelay(sfd);
    net_set_nodelay(cfd);
    hop_t up = {cfd, sfd}, down = {sfd, cfd};
    pthread_t t;
    if (pthread_create(&t, NULL, hop_run, &up) != 0)
        _exit(1);
    hop_run(&down);
    pthread_join(t, NULL);
    _exit(0);
}

int bench_raw_relay_start(const bench_raw_t *peer, bench_raw_t *relay, char *err, size_t errlen)
{
    int fd = listen_any(&relay->port, err, errlen);
    if (fd < 0)
        return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        return fail(err, errlen, "fork: %s", strerror(errno));
    }
    if (pid == 0)
        serve_main(fd, parent, relay_conn, peer->port);
    close(fd);
    relay->pid = pid;
    return 0;
}

/* ---- wire byte counts ------------------------------------------------------------ */

int bench_tcp_bytes(int fd, uint64_t *sent, uint64_t *received)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received))
        return -1;
    /* bytes_acked (not bytes_sent): the reply that ends an exchange
     * acknowledges the whole request, and retransmissions do not count. */
    *sent = ti.tcpi_bytes_acked;
    *received = ti.tcpi_bytes_received;
    return 0;
}

void bench_fdset_snap(bench_fdset_t *s)
{
    for (int fd = 0; fd < (int)sizeof(s->open); fd++)
        s->open[fd] = fcntl(fd, F_GETFD) >= 0;
}

int bench_fdset_new_socket(const bench_fdset_t *before)
{
    int found = -1;
    for (int fd = 0; fd < (int)sizeof(before->open); fd++) {
        struct stat st;
        if (before->open[fd] || fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode))
            continue;
        if (found >= 0)
            return -1;
        found = fd;
    }
    return found;
}
