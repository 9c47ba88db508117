/* The proxy's tracker link. One fd, one output buffer of whole frames, one
 * input buffer, and a FIFO of the requests still waiting for their reply.
 *
 * Nothing here drops the link from inside a function the owner calls:
 * requests are only queued (written by the next write event), and a reset
 * asked for from a callback happens after the callback returns. So the
 * owner may call any ptrk function from any callback without the link
 * changing under its feet. */
#include "proxy/ptrk.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/net.h"
#include "tracker/proto.h"

#define PTRK_TICK_MS 500
#define PTRK_IO_TIMEOUT_MS 10000
#define PTRK_BACKOFF_MIN_MS 1000
#define PTRK_BACKOFF_MAX_MS 10000
#define PTRK_MAX_OUTSTANDING 100000
#define PTRK_MAX_OUT (64u * 1024 * 1024)

typedef enum ptrk_state {
    PTRK_DOWN,
    PTRK_CONNECTING,
    PTRK_MAGIC,
    PTRK_UP,
} ptrk_state_t;

typedef struct ptrk_req {
    int code;
    uint64_t seq;
    int64_t sent_ms;
} ptrk_req_t;

struct ptrk {
    ev_loop_t *loop;
    char host[256];
    int port;
    ptrk_cb_t cb;
    void *ctx;
    ptrk_state_t state;
    int fd;
    struct addrinfo *addrs, *next_addr; /* the current connect attempt */
    int64_t attempt_ms, retry_at_ms;
    int backoff_ms;
    buf_t in, out;
    ptrk_req_t *reqs; /* outstanding requests: reqs[head..n) */
    size_t head, n, cap;
    uint64_t seq;
    uint64_t pending_seq; /* a GET_PENDING_MATCHKEYS is outstanding */
    int in_handler;
    char reset_why[128]; /* non-empty: reset once the handler returns */
    int ever_up;
    int conn_err; /* errno of the last failed connect, for the log */
    ev_timer_t *timer;
};

static void ptrk_on_io(ev_loop_t *loop, int fd, void *data, int mask);
static void ptrk_connect(ptrk_t *t);

/* ---- link lifetime ------------------------------------------------------------ */

static void ptrk_close_fd(ptrk_t *t)
{
    if (t->fd >= 0) {
        ev_del(t->loop, t->fd, EV_READ | EV_WRITE);
        close(t->fd);
        t->fd = -1;
    }
    buf_reset(&t->in);
    buf_reset(&t->out);
    t->head = t->n = 0;
    t->pending_seq = 0;
}

static void ptrk_drop(ptrk_t *t, const char *why, int retry_now)
{
    int was_up = t->state == PTRK_UP;
    ptrk_close_fd(t);
    if (t->addrs) {
        freeaddrinfo(t->addrs);
        t->addrs = t->next_addr = NULL;
    }
    t->state = PTRK_DOWN;
    if (retry_now) {
        t->retry_at_ms = ev_now_ms();
    } else {
        t->retry_at_ms = ev_now_ms() + t->backoff_ms;
        t->backoff_ms =
            t->backoff_ms * 2 > PTRK_BACKOFF_MAX_MS ? PTRK_BACKOFF_MAX_MS : t->backoff_ms * 2;
    }
    if (was_up && retry_now) {
        log_info("proxy: reconnecting to tracker %s:%d: %s", t->host, t->port, why);
        if (t->cb.down)
            t->cb.down(t->ctx, why);
    } else if (was_up) {
        log_warn("proxy: lost the tracker %s:%d: %s; reconnecting", t->host, t->port, why);
        if (t->cb.down)
            t->cb.down(t->ctx, why);
    } else {
        log_warn("proxy: tracker %s:%d: %s; retrying in %d ms", t->host, t->port, why,
                 (int)(t->retry_at_ms - ev_now_ms()));
    }
    if (retry_now)
        ptrk_connect(t);
}

static void ptrk_update_events(ptrk_t *t)
{
    if (t->fd < 0)
        return;
    int want = t->state == PTRK_CONNECTING ? EV_WRITE : EV_READ;
    if (t->out.len)
        want |= EV_WRITE;
    int have = ev_get_mask(t->loop, t->fd);
    if (have & ~want)
        ev_del(t->loop, t->fd, have & ~want);
    if ((want & ~have) && ev_add(t->loop, t->fd, want & ~have, ptrk_on_io, t) < 0)
        ptrk_drop(t, "cannot watch the socket", 0);
}

/* Try the remaining addresses of the current attempt; DOWN if none works. */
static void ptrk_connect_next(ptrk_t *t)
{
    while (t->next_addr) {
        struct addrinfo *ai = t->next_addr;
        t->next_addr = ai->ai_next;
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
            t->conn_err = errno;
            close(fd);
            continue;
        }
        t->fd = fd;
        t->state = PTRK_CONNECTING;
        ptrk_update_events(t);
        return;
    }
    char why[160];
    snprintf(why, sizeof(why), "cannot connect: %s",
             t->conn_err ? strerror(t->conn_err) : "no usable address");
    ptrk_drop(t, why, 0);
}

static void ptrk_connect(ptrk_t *t)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char port[16];
    snprintf(port, sizeof(port), "%d", t->port);
    t->attempt_ms = ev_now_ms();
    int rc = getaddrinfo(t->host, port, &hints, &res);
    if (rc != 0) {
        char why[320];
        snprintf(why, sizeof(why), "cannot resolve %s: %s", t->host, gai_strerror(rc));
        ptrk_drop(t, why, 0);
        return;
    }
    t->addrs = t->next_addr = res;
    ptrk_connect_next(t);
}

/* The non-blocking connect finished: send the magic. */
static void ptrk_connected(ptrk_t *t)
{
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr) {
        t->conn_err = soerr;
        ev_del(t->loop, t->fd, EV_READ | EV_WRITE);
        close(t->fd);
        t->fd = -1;
        ptrk_connect_next(t);
        return;
    }
    freeaddrinfo(t->addrs);
    t->addrs = t->next_addr = NULL;
    net_set_nodelay(t->fd);
    buf_append_u32le(&t->out, TRACKER_MAGIC);
    t->state = PTRK_MAGIC;
}

/* ---- requests ---------------------------------------------------------------- */

static uint64_t ptrk_send(ptrk_t *t, int code, const json_t *msg)
{
    if (t->state != PTRK_UP || t->reset_why[0])
        return 0;
    if (t->n - t->head >= PTRK_MAX_OUTSTANDING || t->out.len > PTRK_MAX_OUT) {
        ptrk_reset(t, "tracker is not answering fast enough");
        return 0;
    }
    buf_t text;
    buf_init(&text, TRACKER_MAX_FRAME);
    int ok = json_dump(msg, &text) == 0 &&
             proto_append_frame(&t->out, (const char *)buf_head(&text), text.len) == 0;
    buf_free(&text);
    if (!ok) {
        log_error("%s: cannot encode a request", __func__);
        return 0;
    }
    if (t->n == t->cap) {
        if (t->head) {
            memmove(t->reqs, t->reqs + t->head, (t->n - t->head) * sizeof(*t->reqs));
            t->n -= t->head;
            t->head = 0;
        } else {
            size_t cap = t->cap ? t->cap * 2 : 64;
            ptrk_req_t *r = realloc(t->reqs, cap * sizeof(*r));
            if (!r) {
                ptrk_reset(t, "out of memory");
                return 0;
            }
            t->reqs = r;
            t->cap = cap;
        }
    }
    t->reqs[t->n++] = (ptrk_req_t){code, ++t->seq, ev_now_ms()};
    if (!t->in_handler)
        ptrk_update_events(t);
    return t->seq;
}

static json_t *addr_or_null(const char *custom_addr)
{
    return custom_addr ? json_new_string(custom_addr) : json_new_null();
}

uint64_t ptrk_put(ptrk_t *t, const char *key, int port, const char *matchkey,
                  const char *custom_addr)
{
    /* [3, key, [port, matchkey], custom_addr or null] */
    json_t *msg = json_new_array(), *slot = json_new_array();
    if (!msg || !slot || json_array_push(slot, json_new_int(port)) < 0 ||
        json_array_push(slot, json_new_string(matchkey)) < 0 ||
        json_array_push(msg, json_new_int(TRACKER_PUT)) < 0 ||
        json_array_push(msg, json_new_string(key)) < 0) {
        json_free(slot);
        json_free(msg);
        return 0;
    }
    if (json_array_push(msg, slot) < 0 || json_array_push(msg, addr_or_null(custom_addr)) < 0) {
        json_free(msg);
        return 0;
    }
    uint64_t seq = ptrk_send(t, TRACKER_PUT, msg);
    json_free(msg);
    return seq;
}

uint64_t ptrk_update_info(ptrk_t *t, const char *info_key, int port, const char *custom_addr)
{
    /* [5, {"key": info_key, "addr": [custom_addr or null, port]}] */
    json_t *msg = json_new_array(), *info = json_new_object(), *addr = json_new_array();
    if (!msg || !info || !addr || json_array_push(addr, addr_or_null(custom_addr)) < 0 ||
        json_array_push(addr, json_new_int(port)) < 0 ||
        json_object_set(info, "key", json_new_string(info_key)) < 0) {
        json_free(addr);
        json_free(info);
        json_free(msg);
        return 0;
    }
    if (json_object_set(info, "addr", addr) < 0) {
        json_free(info);
        json_free(msg);
        return 0;
    }
    if (json_array_push(msg, json_new_int(TRACKER_UPDATE_INFO)) < 0 ||
        json_array_push(msg, info) < 0) {
        json_free(msg);
        return 0;
    }
    uint64_t seq = ptrk_send(t, TRACKER_UPDATE_INFO, msg);
    json_free(msg);
    return seq;
}

uint64_t ptrk_get_pending(ptrk_t *t)
{
    if (t->pending_seq)
        return 0;
    json_t *msg = json_new_array();
    if (!msg || json_array_push(msg, json_new_int(TRACKER_GET_PENDING_MATCHKEYS)) < 0) {
        json_free(msg);
        return 0;
    }
    uint64_t seq = ptrk_send(t, TRACKER_GET_PENDING_MATCHKEYS, msg);
    json_free(msg);
    t->pending_seq = seq;
    return seq;
}

void ptrk_reset(ptrk_t *t, const char *why)
{
    if (t->state == PTRK_DOWN)
        return;
    /* Acted on when our handler returns, or by the next tick (<= 500 ms)
     * when called from elsewhere. */
    if (!t->reset_why[0])
        snprintf(t->reset_why, sizeof(t->reset_why), "%s", why);
}

int ptrk_is_up(const ptrk_t *t)
{
    return t->state == PTRK_UP && !t->reset_why[0];
}

/* ---- replies ----------------------------------------------------------------- */

static int ptrk_on_reply(ptrk_t *t, const char *text, size_t len)
{
    if (t->head == t->n) {
        ptrk_drop(t, "reply to no request", 0);
        return -1;
    }
    ptrk_req_t req = t->reqs[t->head++];
    char err[128];
    json_t *v = json_parse(text, len, NULL, err, sizeof(err));
    if (!v) {
        char why[192];
        snprintf(why, sizeof(why), "bad reply: %s", err);
        ptrk_drop(t, why, 0);
        return -1;
    }
    int rc = 0;
    if (req.code == TRACKER_GET_PENDING_MATCHKEYS) {
        t->pending_seq = 0;
        if (!json_is(v, JSON_ARRAY)) {
            ptrk_drop(t, "GET_PENDING_MATCHKEYS reply is not a list", 0);
            rc = -1;
        } else if (t->cb.pending) {
            t->cb.pending(t->ctx, req.seq, v);
        }
    } else {
        int64_t code = -1;
        if (json_get_int(v, &code) < 0 || code != TRACKER_SUCCESS) {
            char why[96];
            snprintf(why, sizeof(why), "tracker refused %s", proto_code_name(req.code));
            ptrk_drop(t, why, 0);
            rc = -1;
        }
    }
    json_free(v);
    return rc;
}

static void ptrk_on_magic(ptrk_t *t)
{
    if (t->in.len < 4)
        return;
    if (le32(buf_head(&t->in)) != TRACKER_MAGIC) {
        ptrk_drop(t, "peer is not an RPC tracker (wrong magic)", 0);
        return;
    }
    buf_consume(&t->in, 4);
    t->state = PTRK_UP;
    t->backoff_ms = PTRK_BACKOFF_MIN_MS;
    log_info("proxy: %s tracker %s:%d", t->ever_up ? "reconnected to" : "connected to", t->host,
             t->port);
    t->ever_up = 1;
    if (t->cb.up)
        t->cb.up(t->ctx);
}

static void ptrk_on_readable(ptrk_t *t)
{
    uint8_t *tail = buf_tail(&t->in, 65536);
    ssize_t r = tail ? recv(t->fd, tail, 65536, 0) : -1;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (r <= 0) {
        ptrk_drop(t, r == 0 ? "connection closed by the tracker" : strerror(errno), 0);
        return;
    }
    buf_commit(&t->in, (size_t)r);
    if (t->state == PTRK_MAGIC)
        ptrk_on_magic(t);
    while (t->state == PTRK_UP && !t->reset_why[0]) {
        const char *json;
        size_t jl, used;
        char err[96];
        proto_status_t st = proto_parse_frame(buf_head(&t->in), t->in.len, TRACKER_MAX_FRAME, &json,
                                              &jl, &used, err, sizeof(err));
        if (st == PROTO_INCOMPLETE)
            break;
        if (st == PROTO_ERROR) {
            ptrk_drop(t, err, 0);
            break;
        }
        if (ptrk_on_reply(t, json, jl) < 0)
            break;
        buf_consume(&t->in, used);
    }
}

static void ptrk_flush(ptrk_t *t)
{
    while (t->out.len) {
        ssize_t w = send(t->fd, buf_head(&t->out), t->out.len, MSG_NOSIGNAL);
        if (w > 0) {
            buf_consume(&t->out, (size_t)w);
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        ptrk_drop(t, w < 0 ? strerror(errno) : "send failed", 0);
        return;
    }
}

/* Act on a reset asked for during a callback. */
static void ptrk_after(ptrk_t *t)
{
    if (t->reset_why[0]) {
        char why[128];
        snprintf(why, sizeof(why), "%s", t->reset_why);
        t->reset_why[0] = '\0';
        if (t->state != PTRK_DOWN)
            ptrk_drop(t, why, 1);
    }
    ptrk_update_events(t);
}

static void ptrk_on_io(ev_loop_t *loop, int fd, void *data, int mask)
{
    ptrk_t *t = data;
    t->in_handler = 1;
    if (t->state == PTRK_CONNECTING) {
        if (mask & (EV_WRITE | EV_READ))
            ptrk_connected(t);
    }
    if (t->fd >= 0 && t->state != PTRK_CONNECTING && t->out.len)
        ptrk_flush(t);
    if (t->fd >= 0 && t->state != PTRK_CONNECTING && (mask & EV_READ))
        ptrk_on_readable(t);
    t->in_handler = 0;
    ptrk_after(t);
}

static int64_t ptrk_tick(ev_loop_t *loop, ev_timer_t *tm, void *data)
{
    ptrk_t *t = data;
    int64_t now = ev_now_ms();
    t->in_handler = 1;
    if (t->state == PTRK_DOWN && now >= t->retry_at_ms) {
        ptrk_connect(t);
    } else if ((t->state == PTRK_CONNECTING || t->state == PTRK_MAGIC) &&
               now - t->attempt_ms > PTRK_IO_TIMEOUT_MS) {
        ptrk_drop(t, "connect/magic exchange timed out", 0);
    } else if (t->state == PTRK_UP && t->head < t->n &&
               now - t->reqs[t->head].sent_ms > PTRK_IO_TIMEOUT_MS) {
        char why[96];
        snprintf(why, sizeof(why), "no reply to %s within %d ms",
                 proto_code_name(t->reqs[t->head].code), PTRK_IO_TIMEOUT_MS);
        ptrk_drop(t, why, 0);
    }
    t->in_handler = 0;
    ptrk_after(t);
    return PTRK_TICK_MS;
}

/* ---- public ------------------------------------------------------------------ */

ptrk_t *ptrk_create(ev_loop_t *loop, const char *host, int port, const ptrk_cb_t *cb, void *ctx)
{
    ptrk_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->loop = loop;
    snprintf(t->host, sizeof(t->host), "%s", host);
    t->port = port;
    t->cb = *cb;
    t->ctx = ctx;
    t->fd = -1;
    t->backoff_ms = PTRK_BACKOFF_MIN_MS;
    buf_init(&t->in, TRACKER_MAX_FRAME + 4 + 65536);
    buf_init(&t->out, 0);
    t->timer = ev_timer_add(loop, PTRK_TICK_MS, ptrk_tick, t);
    if (!t->timer) {
        ptrk_free(t);
        return NULL;
    }
    /* First attempt right away; failures fall back to the tick. */
    t->in_handler = 1;
    ptrk_connect(t);
    t->in_handler = 0;
    ptrk_update_events(t);
    return t;
}

void ptrk_free(ptrk_t *t)
{
    if (!t)
        return;
    ptrk_close_fd(t);
    if (t->addrs)
        freeaddrinfo(t->addrs);
    if (t->timer)
        ev_timer_del(t->loop, t->timer);
    buf_free(&t->in);
    buf_free(&t->out);
    free(t->reqs);
    free(t);
}
