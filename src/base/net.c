#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void net_err(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void net_err(char *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, NET_ERR_LEN, fmt, ap);
    va_end(ap);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int net_set_nonblock(int fd, int on)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -1;
    flags = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
    return fcntl(fd, F_SETFL, flags);
}

int net_set_nodelay(int fd)
{
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* A peer whose host vanishes (power or network loss) sends no FIN: without
 * keepalive its session, its tracker entry or its relay pair would be held
 * for ever. Probes start after NET_KEEPALIVE_IDLE_S of silence and end the
 * connection when NET_KEEPALIVE_COUNT of them go unanswered. No
 * TCP_USER_TIMEOUT: it would also cut a live peer that just stops reading
 * for a while (zero window), which a paused client or a slow relay may. */
int net_set_keepalive(int fd)
{
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0)
        return -1;
#ifdef TCP_KEEPIDLE
    int idle = NET_KEEPALIVE_IDLE_S, intvl = NET_KEEPALIVE_INTVL_S, cnt = NET_KEEPALIVE_COUNT;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
#endif
    return 0;
}

int net_set_cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0)
        return -1;
    return fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

static int resolve(const char *host, int port, int passive, struct addrinfo **res, char *err)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int rc = getaddrinfo(host && *host ? host : NULL, portstr, &hints, res);
    if (rc != 0) {
        net_err(err, "cannot resolve %s: %s", host ? host : "(any)", gai_strerror(rc));
        return -1;
    }
    return 0;
}

/* 0 bound, 1 port in use, -1 other error. */
static int try_bind(const struct addrinfo *ai, int port, int backlog, int *out_fd, char *err)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        net_err(err, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_storage sa;
    memcpy(&sa, ai->ai_addr, ai->ai_addrlen);
    if (sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&sa)->sin6_port = htons((uint16_t)port);
    if (bind(fd, (struct sockaddr *)&sa, ai->ai_addrlen) < 0) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE)
            return 1;
        net_err(err, "bind port %d: %s", port, strerror(e));
        return -1;
    }
    if (listen(fd, backlog) < 0 || net_set_nonblock(fd, 1) < 0) {
        net_err(err, "listen port %d: %s", port, strerror(errno));
        close(fd);
        return -1;
    }
    *out_fd = fd;
    return 0;
}

int net_listen_range(const char *host, int port, int port_end, int backlog, int *bound, char *err)
{
    if (port < 0 || port > 65535 || port_end > 65536) {
        net_err(err, "invalid port range [%d, %d)", port, port_end);
        return -1;
    }
    struct addrinfo *res;
    if (resolve(host, port, 1, &res, err) < 0)
        return -1;
    int fd = -1;
    /* Port 0 asks the kernel for any free port (tests use this). An empty
     * range (TVM fails there) means just the given port: "--port 9400" with
     * the default --port-end 9199 should not be an error. */
    int last = port == 0 ? 1 : port_end > port ? port_end : port + 1;
    for (int p = port; p < last; p++) {
        int rc = try_bind(res, p, backlog, &fd, err);
        if (rc == 0) {
            *bound = p ? p : net_local_port(fd);
            break;
        }
        if (rc < 0)
            break;
    }
    freeaddrinfo(res);
    if (fd < 0 && err && !err[0])
        net_err(err, "cannot bind to any port in [%d, %d)", port, port_end);
    return fd;
}

static void sockaddr_ip(const struct sockaddr_storage *sa, char *ip, size_t iplen, int *port)
{
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip, (socklen_t)iplen);
        else
            inet_ntop(AF_INET6, &s6->sin6_addr, ip, (socklen_t)iplen);
        if (port)
            *port = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, (socklen_t)iplen);
        if (port)
            *port = ntohs(s4->sin_port);
    }
}

int net_accept(int lfd, char *ip, size_t iplen, int *port, char *err)
{
    struct sockaddr_storage sa;
    socklen_t salen = sizeof(sa);
    int fd;
    do {
        fd = accept4(lfd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int busy = errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            net_err(err, "accept: %s", strerror(errno));
        return busy ? NET_ACCEPT_BUSY : -1;
    }
    net_set_nodelay(fd);
    net_set_keepalive(fd);
    if (ip)
        sockaddr_ip(&sa, ip, iplen, port);
    return fd;
}

int net_peer_ip(int fd, char *ip, size_t iplen, int *port)
{
    struct sockaddr_storage sa;
    socklen_t salen = sizeof(sa);
    if (getpeername(fd, (struct sockaddr *)&sa, &salen) < 0)
        return -1;
    sockaddr_ip(&sa, ip, iplen, port);
    return 0;
}

int net_local_port(int fd)
{
    struct sockaddr_storage sa;
    socklen_t salen = sizeof(sa);
    char ip[NET_IP_LEN];
    int port = -1;
    if (getsockname(fd, (struct sockaddr *)&sa, &salen) < 0)
        return -1;
    sockaddr_ip(&sa, ip, sizeof(ip), &port);
    return port;
}

/* Wait for fd to become ready; 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    for (;;) {
        int rc = poll(&pfd, 1, timeout_ms);
        if (rc >= 0)
            return rc;
        if (errno != EINTR)
            return -1;
    }
}

static int connect_one(const struct addrinfo *ai, int timeout_ms, char *err)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        net_err(err, "socket: %s", strerror(errno));
        return -1;
    }
    net_set_nonblock(fd, 1);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            net_err(err, "connect: %s", strerror(errno));
            goto fail;
        }
        int rc = wait_fd(fd, POLLOUT, timeout_ms);
        if (rc <= 0) {
            net_err(err, "connect: %s", rc == 0 ? "timed out" : strerror(errno));
            goto fail;
        }
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        if (soerr) {
            errno = soerr;
            net_err(err, "connect: %s", strerror(soerr));
            goto fail;
        }
    }
    net_set_nonblock(fd, 0);
    net_set_nodelay(fd);
    net_set_keepalive(fd);
    return fd;
fail:
    close(fd);
    return -1;
}

int net_connect(const char *host, int port, int timeout_ms, char *err)
{
    struct addrinfo *res;
    if (resolve(host, port, 0, &res, err) < 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
        fd = connect_one(ai, timeout_ms, err);
    freeaddrinfo(res);
    if (fd < 0 && err) {
        char why[NET_ERR_LEN];
        snprintf(why, sizeof(why), "%s", err);
        net_err(err, "%s:%d: %s", host, port, why);
    }
    return fd;
}

int net_connect_retry(const char *host, int port, int total_ms, char *err)
{
    int64_t deadline = mono_ms() + total_ms;
    int backoff = 100;
    for (;;) {
        int64_t left = deadline - mono_ms();
        int fd = net_connect(host, port, left > 0 && left < 5000 ? (int)left : 5000, err);
        if (fd >= 0)
            return fd;
        left = deadline - mono_ms();
        if (left <= 0)
            return -1;
        struct timespec ts = {0, (long)(backoff < left ? backoff : left) * 1000000L};
        nanosleep(&ts, NULL);
        backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
    }
}

static int deadline_left(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - mono_ms();
    return left < 0 ? 0 : (int)left;
}

/* One recv of at most n bytes (at least one), honouring the deadline;
 * -1 with *eof set when the peer closed before anything arrived. */
static ssize_t recv_some(int fd, void *p, size_t n, int64_t deadline, int *eof, char *err)
{
    for (;;) {
        /* MSG_DONTWAIT: the deadline must hold on blocking sockets too.
         * Without a deadline a plain blocking recv saves an EAGAIN + poll
         * pair per read, which is most of an empty call's cost. */
        ssize_t r = recv(fd, p, n, deadline < 0 ? 0 : MSG_DONTWAIT);
        if (r > 0)
            return r;
        if (r == 0) {
            *eof = 1;
            net_err(err, "connection closed by peer");
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            net_err(err, "recv: %s", strerror(errno));
            return -1;
        }
        int rc = wait_fd(fd, POLLIN, deadline_left(deadline));
        if (rc <= 0) {
            net_err(err, "recv: %s", rc == 0 ? "timed out" : strerror(errno));
            return -1;
        }
    }
}

static int read_full_until(int fd, void *p, size_t n, int64_t deadline, int *eof, char *err)
{
    size_t got = 0;
    while (got < n) {
        int closed = 0;
        ssize_t r = recv_some(fd, (char *)p + got, n - got, deadline, &closed, err);
        if (r < 0) {
            if (eof && closed && got == 0)
                *eof = 1;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

int net_read_full(int fd, void *p, size_t n, int timeout_ms, int *eof, char *err)
{
    if (eof)
        *eof = 0;
    return read_full_until(fd, p, n, timeout_ms < 0 ? -1 : mono_ms() + timeout_ms, eof, err);
}

/* ---- buffered reader ------------------------------------------------------- */

int net_reader_init(net_reader_t *rd, int fd, size_t cap)
{
    memset(rd, 0, sizeof(*rd));
    rd->fd = fd;
    rd->buf = malloc(cap);
    if (!rd->buf)
        return -1;
    rd->cap = cap;
    return 0;
}

void net_reader_free(net_reader_t *rd)
{
    free(rd->buf);
    memset(rd, 0, sizeof(*rd));
    rd->fd = -1;
}

/* Small reads are served from one recv of up to cap bytes, so a whole
 * request (header, code and body) usually costs one syscall; reads of at
 * least half the buffer go straight to the caller's memory (bulk array
 * data is never copied twice). */
int net_reader_read(net_reader_t *rd, void *p, size_t n, int timeout_ms, int *eof, char *err)
{
    int64_t deadline = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;
    uint8_t *out = p;
    size_t got = 0;
    if (eof)
        *eof = 0;
    while (got < n) {
        size_t have = rd->len - rd->pos;
        if (have) {
            size_t k = have < n - got ? have : n - got;
            memcpy(out + got, rd->buf + rd->pos, k);
            rd->pos += k;
            got += k;
            continue;
        }
        rd->pos = rd->len = 0;
        if (n - got >= rd->cap / 2)
            return read_full_until(rd->fd, out + got, n - got, deadline, got == 0 ? eof : NULL,
                                   err);
        int closed = 0;
        ssize_t r = recv_some(rd->fd, rd->buf, rd->cap, deadline, &closed, err);
        if (r < 0) {
            if (eof && closed && got == 0)
                *eof = 1;
            return -1;
        }
        rd->len = (size_t)r;
    }
    return 0;
}

int net_writev_full(int fd, struct iovec *iov, int iovcnt, int timeout_ms, char *err)
{
    int64_t deadline = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;
    while (iovcnt > 0) {
        struct msghdr msg;
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = iov;
        msg.msg_iovlen = (size_t)iovcnt;
        ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                net_err(err, "send: %s", strerror(errno));
                return -1;
            }
            int rc = wait_fd(fd, POLLOUT, deadline_left(deadline));
            if (rc <= 0) {
                net_err(err, "send: %s", rc == 0 ? "timed out" : strerror(errno));
                return -1;
            }
            continue;
        }
        size_t done = (size_t)w;
        while (iovcnt > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
    return 0;
}

int net_write_full(int fd, const void *p, size_t n, int timeout_ms, char *err)
{
    struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
    return net_writev_full(fd, &iov, 1, timeout_ms, err);
}

int net_parse_hostport(const char *s, char *host, size_t hostlen, int *port, char *err)
{
    const char *colon;
    const char *hstart = s;
    size_t hlen;
    if (s[0] == '[') {
        const char *close_br = strchr(s, ']');
        if (!close_br || close_br[1] != ':') {
            net_err(err, "bad address '%s', expected [host]:port", s);
            return -1;
        }
        hstart = s + 1;
        hlen = (size_t)(close_br - hstart);
        colon = close_br + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            net_err(err, "bad address '%s', expected host:port", s);
            return -1;
        }
        hlen = (size_t)(colon - s);
    }
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno || p < 0 || p > 65535) {
        net_err(err, "bad port in '%s'", s);
        return -1;
    }
    if (hlen == 0 || hlen >= hostlen) {
        net_err(err, "bad host in '%s'", s);
        return -1;
    }
    memcpy(host, hstart, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return 0;
}
