/* bench_trk: the tracker load driver (bench_lib.h) behind `tvmrpc bench
 * --tracker` and bench/bench_tracker. Simulated servers and clients share
 * one epoll loop (level-triggered, non-blocking, TCP_NODELAY); each message
 * goes out with one send, as real peers do. The echo baseline answers the
 * same frames with canned replies of the tracker's sizes, so the driver,
 * connections and bytes are identical and the ratio is what the tracker
 * itself adds. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/net.h"
#include "client/bench_lib.h"
#include "tracker/proto.h"

#define IN_CAP 512       /* every frame the driver expects is far smaller */
#define SETUP_WINDOW 128 /* connections set up at once: stays under a listen backlog */
#define PORT0 9000       /* simulated servers announce ports 9000 + index */
#define EV_BATCH 256
#define DRAIN_NS 10000000000ull

typedef enum role { ROLE_SERVER, ROLE_CLIENT } role_t;

typedef enum cstate {
    ST_CONNECTING, /* non-blocking connect in progress */
    ST_MAGIC,      /* magic sent, waiting for its echo */
    ST_INFO,       /* server: UPDATE_INFO sent */
    ST_PUT,        /* server: first PUT sent */
    ST_FREE,       /* server: its slot is queued at the tracker */
    ST_REPUT,      /* server: granted; fresh PUT sent, waiting for 0 */
    ST_IDLE,       /* client: nothing outstanding */
    ST_REQUEST,    /* client: REQUEST sent, waiting for the grant */
    ST_RELEASE,    /* client: granted; waiting for the server's re-PUT ack */
} cstate_t;

typedef struct tconn {
    int fd;
    role_t role;
    cstate_t st;
    uint32_t idx, gen;
    uint64_t t_req;          /* client: when the outstanding REQUEST went out */
    uint64_t due;            /* client, paced run: when its next REQUEST is due */
    struct tconn *peer;      /* server in ST_REPUT: the client whose cycle it ends */
    struct tconn *fifo_next; /* echo baseline: free servers, oldest first */
    size_t inlen;
    uint8_t in[IN_CAP];
} tconn_t;

struct bench_trk {
    int echo, ep;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char key[64];
    tconn_t *servers, *clients;
    int max_servers, max_clients;
    int nservers, nclients; /* opened so far */
    int pending;            /* connections still in their setup */
    tconn_t *fifo_head, *fifo_tail;
    int issuing;      /* a finished cycle starts (or schedules) the next one */
    uint64_t pace_ns; /* paced run: each client's interval between REQUESTs; 0 = closed loop */
    size_t outstanding;
    uint64_t win_start, win_end; /* measured window of the current round */
    bench_trk_round_t *round;    /* the current round, NULL between rounds */
    size_t grant_len, ack_len;
    char *err;
    size_t errlen;
    int fatal;
};

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

static const char *remote_name(const bench_trk_t *t)
{
    return t->echo ? "raw TCP" : "tracker";
}

static int conn_fail(bench_trk_t *t, tconn_t *c, const char *what)
{
    t->fatal = 1;
    return fail(t->err, t->errlen, "%s: simulated %s #%u: %s (state %d)", remote_name(t),
                c->role == ROLE_SERVER ? "server" : "client", c->idx, what, (int)c->st);
}

static int send_str(bench_trk_t *t, tconn_t *c, const char *text)
{
    uint8_t buf[IN_CAP];
    size_t len = strlen(text);
    put_le32(buf, (uint32_t)len);
    memcpy(buf + 4, text, len);
    ssize_t w = send(c->fd, buf, len + 4, MSG_NOSIGNAL);
    if (w != (ssize_t)(len + 4))
        return conn_fail(t, c, w < 0 ? strerror(errno) : "short send");
    return 0;
}

/* "<key>:<idx>.<gen>": the tracker finds a slot's queue by splitting the
 * matchkey at the last ':', so the id itself has none. */
static int server_put(bench_trk_t *t, tconn_t *s)
{
    char msg[200];
    snprintf(msg, sizeof(msg), "[3, \"%s\", [%u, \"%s:%05u.%08u\"], null]", t->key, PORT0 + s->idx,
             t->key, s->idx, s->gen);
    return send_str(t, s, msg);
}

static int client_request(bench_trk_t *t, tconn_t *c)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "[4, \"%s\", \"\", 1]", t->key);
    c->st = ST_REQUEST;
    c->t_req = bench_now_ns();
    t->outstanding++;
    return send_str(t, c, msg);
}

static void fifo_push(bench_trk_t *t, tconn_t *s)
{
    s->fifo_next = NULL;
    if (t->fifo_tail)
        t->fifo_tail->fifo_next = s;
    else
        t->fifo_head = s;
    t->fifo_tail = s;
}

static tconn_t *fifo_pop(bench_trk_t *t)
{
    tconn_t *s = t->fifo_head;
    if (s && !(t->fifo_head = s->fifo_next))
        t->fifo_tail = NULL;
    return s;
}

static int in_window(const bench_trk_t *t, uint64_t now)
{
    return t->round && now >= t->win_start && now < t->win_end;
}

/* The server a grant names: from its matchkey, or for the echo baseline
 * (canned replies) the oldest free one, as the tracker would pick. */
static tconn_t *granted_server(bench_trk_t *t, const char *text, size_t len)
{
    if (t->echo)
        return fifo_pop(t);
    char buf[IN_CAP], pat[80];
    memcpy(buf, text, len);
    buf[len] = '\0';
    snprintf(pat, sizeof(pat), "\"%s:", t->key);
    const char *mk = strstr(buf, pat);
    unsigned idx, gen;
    if (strncmp(buf, "[0,", 3) != 0 || !mk || sscanf(mk + strlen(pat), "%u.%u", &idx, &gen) != 2 ||
        idx >= (unsigned)t->nservers)
        return NULL;
    tconn_t *s = &t->servers[idx];
    return s->gen == gen ? s : NULL;
}

static int on_grant(bench_trk_t *t, tconn_t *c, const char *text, size_t len)
{
    uint64_t now = bench_now_ns();
    if (in_window(t, now) && t->round->grant_ns)
        bench_samples_push(t->round->grant_ns, now - c->t_req);
    if (!t->grant_len)
        t->grant_len = len;
    tconn_t *s = granted_server(t, text, len);
    if (!s || s->st != ST_FREE)
        return conn_fail(t, c, "the grant names no free server of ours");
    s->gen++;
    s->st = ST_REPUT;
    s->peer = c;
    c->st = ST_RELEASE;
    return server_put(t, s);
}

/* A finished cycle's client: closed loop, its next REQUEST goes now; paced,
 * it keeps its slot unless this cycle overran it, and then goes now with the
 * schedule restarting from here. */
static int next_request(bench_trk_t *t, tconn_t *c, uint64_t now)
{
    if (!t->pace_ns)
        return client_request(t, c);
    c->due += t->pace_ns;
    if (c->due > now)
        return 0;
    if (in_window(t, now))
        t->round->late++;
    c->due = now;
    return client_request(t, c);
}

/* The re-PUT is acknowledged: the server is free again, the cycle done. */
static int on_release(bench_trk_t *t, tconn_t *s)
{
    uint64_t now = bench_now_ns();
    tconn_t *c = s->peer;
    s->st = ST_FREE;
    s->peer = NULL;
    if (t->echo)
        fifo_push(t, s);
    if (in_window(t, now)) {
        t->round->cycles++;
        t->round->cycle_ns += now - c->t_req;
    }
    c->st = ST_IDLE;
    t->outstanding--;
    return t->issuing ? next_request(t, c, now) : 0;
}

static void setup_done(bench_trk_t *t, tconn_t *c, cstate_t st)
{
    c->st = st;
    t->pending--;
    if (st == ST_FREE && t->echo)
        fifo_push(t, c);
}

static int on_frame(bench_trk_t *t, tconn_t *c, const char *text, size_t len)
{
    if (c->st == ST_REQUEST)
        return on_grant(t, c, text, len);
    if (len != 1 || text[0] != '0')
        return conn_fail(t, c, "expected the reply 0");
    if (!t->ack_len)
        t->ack_len = len;
    switch (c->st) {
    case ST_INFO:
        c->st = ST_PUT;
        return server_put(t, c);
    case ST_PUT:
        setup_done(t, c, ST_FREE);
        return 0;
    case ST_REPUT:
        return on_release(t, c);
    default:
        return conn_fail(t, c, "unexpected frame");
    }
}

static int on_magic(bench_trk_t *t, tconn_t *c)
{
    if (le32(c->in) != TRACKER_MAGIC)
        return conn_fail(t, c, "wrong magic echo");
    if (c->role == ROLE_CLIENT) {
        setup_done(t, c, ST_IDLE);
        return 0;
    }
    char msg[160];
    snprintf(msg, sizeof(msg), "[5, {\"key\": \"server:%s\", \"addr\": [null, %u]}]", t->key,
             PORT0 + c->idx);
    c->st = ST_INFO;
    return send_str(t, c, msg);
}

static int process_input(bench_trk_t *t, tconn_t *c)
{
    size_t off = 0;
    if (c->st == ST_MAGIC) {
        if (c->inlen < 4)
            return 0;
        if (on_magic(t, c) < 0)
            return -1;
        off = 4;
    }
    while (c->inlen - off >= 4) {
        size_t n = le32(c->in + off);
        if (n == 0 || n > IN_CAP - 4)
            return conn_fail(t, c, "bad frame length");
        if (c->inlen - off < 4 + n)
            break;
        if (on_frame(t, c, (const char *)c->in + off + 4, n) < 0)
            return -1;
        off += 4 + n;
    }
    memmove(c->in, c->in + off, c->inlen - off);
    c->inlen -= off;
    return 0;
}

static int on_readable(bench_trk_t *t, tconn_t *c)
{
    ssize_t r = recv(c->fd, c->in + c->inlen, IN_CAP - c->inlen, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (r <= 0)
        return conn_fail(t, c, r < 0 ? strerror(errno) : "closed by the remote");
    c->inlen += (size_t)r;
    return process_input(t, c);
}

static int on_connected(bench_trk_t *t, tconn_t *c)
{
    int e = 0;
    socklen_t elen = sizeof(e);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &elen);
    if (e)
        return conn_fail(t, c, strerror(e));
    uint8_t magic[4];
    put_le32(magic, TRACKER_MAGIC);
    if (send(c->fd, magic, 4, MSG_NOSIGNAL) != 4)
        return conn_fail(t, c, "cannot send the magic");
    c->st = ST_MAGIC;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    return epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0 ? conn_fail(t, c, strerror(errno)) : 0;
}

static int conn_open(bench_trk_t *t, tconn_t *c, role_t role, uint32_t idx)
{
    memset(c, 0, sizeof(*c));
    c->role = role;
    c->idx = idx;
    c->st = ST_CONNECTING;
    t->pending++;
    c->fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return conn_fail(t, c, strerror(errno));
    net_set_nodelay(c->fd);
    if (connect(c->fd, (struct sockaddr *)&t->addr, t->addrlen) < 0 && errno != EINPROGRESS)
        return conn_fail(t, c, strerror(errno));
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    return epoll_ctl(t->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0 ? conn_fail(t, c, strerror(errno)) : 0;
}

/* One epoll_wait and its callbacks. */
static int pump(bench_trk_t *t, int timeout_ms)
{
    struct epoll_event evs[EV_BATCH];
    int n = epoll_wait(t->ep, evs, EV_BATCH, timeout_ms);
    if (n < 0 && errno != EINTR)
        return fail(t->err, t->errlen, "epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n && !t->fatal; i++) {
        tconn_t *c = evs[i].data.ptr;
        if (c->st == ST_CONNECTING)
            on_connected(t, c);
        else
            on_readable(t, c);
    }
    return t->fatal ? -1 : 0;
}

/* Open connections of one role until *count reaches to, and run each
 * through its setup (magic; servers also UPDATE_INFO and the first PUT),
 * SETUP_WINDOW at a time so the remote's accept queue never overflows. */
static int setup_conns(bench_trk_t *t, role_t role, int to, int timeout_ms)
{
    tconn_t *arr = role == ROLE_SERVER ? t->servers : t->clients;
    int *count = role == ROLE_SERVER ? &t->nservers : &t->nclients;
    int from = *count;
    uint64_t deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
    while (*count < to || t->pending) {
        while (*count < to && t->pending < SETUP_WINDOW) {
            int idx = (*count)++; /* counted before it can fail: close() finds it */
            if (conn_open(t, &arr[idx], role, (uint32_t)idx) < 0)
                return -1;
        }
        if (pump(t, 100) < 0)
            return -1;
        if (bench_now_ns() > deadline)
            return fail(t->err, t->errlen, "%s: setting up %d connections took over %d ms",
                        remote_name(t), to - from, timeout_ms);
    }
    return 0;
}

static int resolve(bench_trk_t *t, const char *host, int port)
{
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0)
        return fail(t->err, t->errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
    memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
    t->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* Up to the hard limit: each simulated peer is one descriptor. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void use_err(bench_trk_t *t, char *err, size_t errlen)
{
    t->err = err;
    t->errlen = errlen;
}

bench_trk_t *bench_trk_new(const char *host, int port, int echo, const char *key, int max_servers,
                           int max_clients, char *err, size_t errlen)
{
    if (max_servers < 1 || max_clients < 1 || strchr(key, ':') || strlen(key) > 40) {
        fail(err, errlen, "tracker load needs servers and clients and a key without ':'");
        return NULL;
    }
    raise_nofile();
    bench_trk_t *t = calloc(1, sizeof(*t));
    if (!t) {
        fail(err, errlen, "out of memory");
        return NULL;
    }
    use_err(t, err, errlen);
    t->echo = echo;
    t->max_servers = max_servers;
    t->max_clients = max_clients;
    snprintf(t->key, sizeof(t->key), "%s", key);
    t->servers = calloc((size_t)max_servers, sizeof(*t->servers));
    t->clients = calloc((size_t)max_clients, sizeof(*t->clients));
    t->ep = epoll_create1(EPOLL_CLOEXEC);
    if (!t->servers || !t->clients || t->ep < 0) {
        fail(err, errlen, "out of memory or descriptors");
        bench_trk_close(t);
        return NULL;
    }
    if (resolve(t, host, port) < 0) {
        bench_trk_close(t);
        return NULL;
    }
    return t;
}

int bench_trk_add_servers(bench_trk_t *t, int nservers, int timeout_ms, double *per_s, char *err,
                          size_t errlen)
{
    use_err(t, err, errlen);
    if (nservers > t->max_servers)
        return fail(err, errlen, "%d servers asked for, room for %d", nservers, t->max_servers);
    int from = t->nservers;
    uint64_t t0 = bench_now_ns();
    if (setup_conns(t, ROLE_SERVER, nservers, timeout_ms) < 0)
        return -1;
    if (per_s)
        *per_s = (double)(nservers - from) / ((double)(bench_now_ns() - t0) / 1e9);
    return 0;
}

int bench_trk_add_clients(bench_trk_t *t, int nclients, int timeout_ms, char *err, size_t errlen)
{
    use_err(t, err, errlen);
    if (nclients > t->max_clients)
        return fail(err, errlen, "%d clients asked for, room for %d", nclients, t->max_clients);
    return setup_conns(t, ROLE_CLIENT, nclients, timeout_ms);
}

bench_trk_t *bench_trk_open(const char *host, int port, int echo, const char *key, int nservers,
                            int nclients, int timeout_ms, char *err, size_t errlen)
{
    if (nservers < nclients || nclients < 1) {
        fail(err, errlen, "tracker load needs servers >= clients >= 1");
        return NULL;
    }
    bench_trk_t *t = bench_trk_new(host, port, echo, key, nservers, nclients, err, errlen);
    if (t && (bench_trk_add_servers(t, nservers, timeout_ms, NULL, err, errlen) < 0 ||
              bench_trk_add_clients(t, nclients, timeout_ms, err, errlen) < 0)) {
        bench_trk_close(t);
        return NULL;
    }
    return t;
}

/* Closed loop: every client sends its first REQUEST now. Paced: each is
 * due every pace_ns, their first due times spread evenly over one interval. */
static int start_clients(bench_trk_t *t, int n, double rate, uint64_t t0)
{
    t->pace_ns = rate > 0 ? (uint64_t)((double)n / rate * 1e9) : 0;
    for (int i = 0; i < n; i++) {
        t->clients[i].due = t0 + t->pace_ns * (uint64_t)i / (uint64_t)n;
        if (!t->pace_ns && client_request(t, &t->clients[i]) < 0)
            return -1;
    }
    return 0;
}

/* Paced run: send the REQUESTs whose time has come. */
static int send_due(bench_trk_t *t, int n, uint64_t now)
{
    for (int i = 0; i < n; i++) {
        tconn_t *c = &t->clients[i];
        if (c->st == ST_IDLE && c->due <= now && client_request(t, c) < 0)
            return -1;
    }
    return 0;
}

/* Cycles until end, calling r->edge as the window opens and closes. A
 * paced run polls without sleeping (REQUESTs are due every few tens of
 * microseconds), so the driver's CPU then reads 100%. */
static int cycle_until(bench_trk_t *t, bench_trk_round_t *r, int n, uint64_t end)
{
    int opened = !r->edge || r->secs <= 0;
    uint64_t now;
    do {
        if (pump(t, t->pace_ns ? 0 : 1) < 0)
            return -1;
        now = bench_now_ns();
        if (t->pace_ns && send_due(t, n, now) < 0)
            return -1;
        if (!opened && now >= t->win_start) {
            opened = 1;
            r->edge(r->edge_arg, 0);
        }
    } while (now < end);
    if (r->edge && r->secs > 0)
        r->edge(r->edge_arg, 1);
    return 0;
}

/* Stop issuing; the cycles in flight finish outside the window. */
static int drain(bench_trk_t *t)
{
    t->issuing = 0;
    uint64_t deadline = bench_now_ns() + DRAIN_NS;
    while (t->outstanding) {
        if (pump(t, 10) < 0)
            return -1;
        if (bench_now_ns() > deadline)
            return fail(t->err, t->errlen, "%s: %zu cycles did not finish within %llu s",
                        remote_name(t), t->outstanding, DRAIN_NS / 1000000000ull);
    }
    return 0;
}

int bench_trk_run(bench_trk_t *t, bench_trk_round_t *r, char *err, size_t errlen)
{
    use_err(t, err, errlen);
    int n = r->nclients > 0 && r->nclients < t->nclients ? r->nclients : t->nclients;
    r->cycles = r->cycle_ns = r->late = 0;
    uint64_t t0 = bench_now_ns();
    t->win_start = t0 + (uint64_t)(r->warm_s * 1e9);
    t->win_end = t->win_start + (uint64_t)(r->secs * 1e9);
    t->round = r;
    t->issuing = 1;
    int rc = start_clients(t, n, r->rate, t0);
    if (rc == 0)
        rc = cycle_until(t, r, n, t->win_end);
    if (rc == 0)
        rc = drain(t);
    t->issuing = 0;
    t->round = NULL;
    return rc;
}

int bench_trk_nservers(const bench_trk_t *t)
{
    return t->nservers;
}

void bench_trk_sizes(const bench_trk_t *t, size_t *grant, size_t *ack)
{
    *grant = t->grant_len;
    *ack = t->ack_len;
}

/* Abortive close (RST): no TIME_WAIT left to eat ephemeral ports when the
 * bench runs again right away. */
static void close_conns(tconn_t *arr, int n)
{
    struct linger lg = {1, 0};
    for (int i = 0; arr && i < n; i++) {
        if (arr[i].fd > 0) {
            setsockopt(arr[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            close(arr[i].fd);
        }
    }
}

void bench_trk_close(bench_trk_t *t)
{
    if (!t)
        return;
    close_conns(t->servers, t->nservers);
    close_conns(t->clients, t->nclients);
    if (t->ep >= 0)
        close(t->ep);
    free(t->servers);
    free(t->clients);
    free(t);
}

/* ---- the echo baseline ------------------------------------------------------------ */

typedef struct econn {
    int fd, magic_done;
    size_t inlen;
    uint8_t in[IN_CAP];
} econn_t;

typedef struct echo {
    int ep, lfd;
    uint8_t grant[IN_CAP], ack[64];
    size_t grant_len, ack_len;
} echo_t;

/* Answer every complete frame; one send per reply, as the tracker does. */
static int echo_frames(echo_t *e, int fd, econn_t *c)
{
    size_t off = 0;
    if (!c->magic_done && c->inlen >= 4) {
        if (send(fd, c->in, 4, MSG_NOSIGNAL) != 4)
            return -1;
        c->magic_done = 1;
        off = 4;
    }
    while (c->magic_done && c->inlen - off >= 4) {
        size_t n = le32(c->in + off);
        if (n == 0 || n > IN_CAP - 4)
            return -1;
        if (c->inlen - off < 4 + n)
            break;
        int is_req = n >= 2 && c->in[off + 4] == '[' && c->in[off + 5] == '4';
        const uint8_t *rep = is_req ? e->grant : e->ack;
        size_t rlen = is_req ? e->grant_len : e->ack_len;
        if (send(fd, rep, rlen, MSG_NOSIGNAL) != (ssize_t)rlen)
            return -1;
        off += 4 + n;
    }
    memmove(c->in, c->in + off, c->inlen - off);
    c->inlen -= off;
    return 0;
}

static void echo_event(echo_t *e, struct epoll_event *ev)
{
    if (!ev->data.ptr) {
        int fd;
        while ((fd = accept4(e->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
            net_set_nodelay(fd);
            econn_t *c = calloc(1, sizeof(*c));
            struct epoll_event nev = {.events = EPOLLIN, .data.ptr = c};
            if (!c || epoll_ctl(e->ep, EPOLL_CTL_ADD, fd, &nev) < 0) {
                free(c);
                close(fd);
                continue;
            }
            c->fd = fd;
        }
        return;
    }
    econn_t *c = ev->data.ptr;
    int fd = c->fd;
    ssize_t r = recv(fd, c->in + c->inlen, IN_CAP - c->inlen, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0 || (c->inlen += (size_t)r, echo_frames(e, fd, c) < 0)) {
        close(fd);
        free(c);
    }
}

static void echo_main(echo_t *e, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    signal(SIGALRM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    raise_nofile();
    e->ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (e->ep < 0 || epoll_ctl(e->ep, EPOLL_CTL_ADD, e->lfd, &ev) < 0)
        _exit(1);
    struct epoll_event evs[EV_BATCH];
    for (;;) {
        int n = epoll_wait(e->ep, evs, EV_BATCH, -1);
        for (int i = 0; i < n; i++)
            echo_event(e, &evs[i]);
    }
}

/* A frame of text padded with spaces (JSON whitespace) to want bytes. */
static size_t canned_frame(uint8_t *out, size_t cap, const char *text, size_t want)
{
    size_t len = strlen(text);
    if (want < len || want + 4 > cap)
        want = len;
    put_le32(out, (uint32_t)want);
    memcpy(out + 4, text, len - 1);
    memset(out + 4 + len - 1, ' ', want - len);
    out[4 + want - 1] = (uint8_t)text[len - 1];
    return want + 4;
}

int bench_trk_echo_start(size_t grant_len, size_t ack_len, const char *key, pid_t *pid, int *port,
                         char *err, size_t errlen)
{
    static echo_t e;
    char grant[200];
    memset(&e, 0, sizeof(e));
    snprintf(grant, sizeof(grant), "[0, [\"127.0.0.1\", %u, \"%s:00000.00000000\"]]", PORT0, key);
    e.grant_len = canned_frame(e.grant, sizeof(e.grant), grant, grant_len);
    e.ack_len = canned_frame(e.ack, sizeof(e.ack), "0", ack_len);
    e.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (e.lfd < 0 || bind(e.lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(e.lfd, 1024) < 0 ||
        getsockname(e.lfd, (struct sockaddr *)&a, &alen) < 0) {
        int en = errno;
        if (e.lfd >= 0)
            close(e.lfd);
        return fail(err, errlen, "raw TCP tracker baseline: %s", strerror(en));
    }
    pid_t parent = getpid();
    *pid = fork();
    if (*pid < 0) {
        close(e.lfd);
        return fail(err, errlen, "fork: %s", strerror(errno));
    }
    if (*pid == 0)
        echo_main(&e, parent);
    close(e.lfd);
    *port = ntohs(a.sin_port);
    return 0;
}
