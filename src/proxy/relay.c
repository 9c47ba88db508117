/* The byte relay of a paired connection. Each end has one queue of bytes
 * waiting to be sent to it: `out` (user space; wire-ready, so WebSocket
 * frames are already built) and, in splice mode, a pipe. `out` is always
 * drained before the pipe, which keeps the handshake reply (queued in
 * `out` at start) ahead of relayed data.
 *
 * Reads from end E are allowed while the queue of the other end O is below
 * high_water. In splice mode the pipe is the queue: splice(E -> pipe)
 * moves at most what fits, splice(pipe -> O) drains it. A pipe can be
 * "full" below its byte capacity (each slot holds one socket fragment), so
 * a splice that finds no room while the pipe holds data marks it stalled
 * and E is paused until O accepts something; without that, level-triggered
 * readiness would spin.
 *
 * Lifetime: all work happens in callbacks that only mark state; relay_settle
 * at the end of each callback closes finished ends and frees the relay
 * once both are closed, so nothing touches freed memory. */
#include "proxy/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"

#define RELAY_CHUNK 65536
#define RELAY_READS_PER_EVENT 16 /* fairness: other pairs get a turn */
#define RELAY_POLL_MAX_MSG 16384 /* reads up to this size start a busy-poll window */

typedef struct rend {
    struct relay *r;
    int idx;
    int fd; /* -1 once closed */
    int ws;
    buf_t out;   /* wire-ready bytes for this end */
    int pipe[2]; /* splice mode: bytes on their way to this end */
    size_t piped, pipe_cap;
    int stalled;      /* the pipe had no room: pause the source until it drains */
    int close_queued; /* WebSocket: our close frame is in out */
    ws_dec_t dec;
    uint64_t rx, tx; /* payload bytes read from / queued for this end */
    char name[192];
} rend_t;

struct relay {
    ev_loop_t *loop;
    relay_config_t cfg;
    rend_t end[2];
    int splice;
    int closing;
    char why[160]; /* what ended the pair, for the last log line */
    ev_timer_t *linger;
    int64_t start_ms, progress_ms;
    relay_done_fn *done;
    void *ctx;
};

/* splice(2) turned out unsupported for sockets here: do not try again. */
static int splice_broken;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void end_on_io(ev_loop_t *loop, int fd, void *data, int mask);
static void relay_settle(relay_t *r);

static rend_t *other(rend_t *e)
{
    return &e->r->end[1 - e->idx];
}

static size_t pending(const rend_t *e)
{
    return e->out.len + e->piped;
}

/* A small message was relayed: keep the loop polling for the answer a
 * little while (see relay_poll_timeout_ms). Not after bulk reads: a stream
 * keeps the proxy busy anyway, and polling between its chunks would only
 * take CPU from the sender and the receiver. */
static void relay_note_activity(relay_t *r, size_t n)
{
    if (n <= RELAY_POLL_MAX_MSG && r->cfg.busy_poll_us > 0 && r->cfg.poll_until_ns)
        *r->cfg.poll_until_ns = mono_ns() + (int64_t)r->cfg.busy_poll_us * 1000;
}

int relay_poll_timeout_ms(int64_t poll_until_ns)
{
    return poll_until_ns && mono_ns() < poll_until_ns ? 0 : -1;
}

void relay_config_defaults(relay_config_t *cfg)
{
    cfg->high_water = 256 * 1024;
    /* 1 MiB pipes cut the relay's CPU per byte to a third of copying (see
     * bench/bench_proxy.c); 64 KiB pipes are no better than copying. */
    cfg->pipe_size = 1024 * 1024;
    cfg->splice = 1;
    cfg->linger_ms = 30000;
    /* As net.core.busy_poll's usual 50 us: covers the peer's wake-up and a
     * short answer, so a request/reply exchange finds the proxy awake. */
    cfg->busy_poll_us = 50;
    cfg->poll_until_ns = NULL;
}

/* ---- closing ----------------------------------------------------------------- */

static void pipe_close(rend_t *e)
{
    for (int i = 0; i < 2; i++) {
        if (e->pipe[i] >= 0)
            close(e->pipe[i]);
        e->pipe[i] = -1;
    }
    e->piped = 0;
}

/* Close the socket now; whatever is still queued for it is dropped. */
static void end_close(rend_t *e)
{
    if (e->fd < 0)
        return;
    ev_del(e->r->loop, e->fd, EV_READ | EV_WRITE);
    close(e->fd);
    e->fd = -1;
    buf_reset(&e->out);
    pipe_close(e);
}

/* All queued bytes are out: send FIN after them. Unread input is drained
 * first, because closing a socket with unread data makes the kernel answer
 * with a reset that can overtake the bytes just sent. */
static void end_close_graceful(rend_t *e)
{
    uint8_t sink[4096];
    for (int i = 0; i < 16 && recv(e->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
        ;
    shutdown(e->fd, SHUT_WR);
    end_close(e);
}

static void relay_start_closing(relay_t *r, const char *fmt_end, const rend_t *e, const char *why)
{
    if (r->closing)
        return;
    r->closing = 1;
    snprintf(r->why, sizeof(r->why), fmt_end, e->name, why);
    r->progress_ms = ev_now_ms();
    for (int i = 0; i < 2; i++) {
        rend_t *x = &r->end[i];
        /* A WebSocket peer gets a close frame after its remaining data. */
        if (x->fd >= 0 && x->ws && !x->close_queued) {
            ws_close_append(&x->out, WS_CLOSE_NORMAL, NULL);
            x->close_queued = 1;
        }
    }
}

/* The end will send nothing more (orderly close, or a close frame). */
static void end_eof(rend_t *e, const char *why)
{
    relay_start_closing(e->r, "%s %s", e, why);
}

/* The end is unusable: close it at once; the other end gets its queue. */
static void end_dead(rend_t *e, const char *why)
{
    relay_start_closing(e->r, "%s: %s", e, why);
    end_close(e);
}

/* ---- writing ----------------------------------------------------------------- */

static void end_flush(rend_t *e)
{
    relay_t *r = e->r;
    while (e->fd >= 0 && e->out.len) {
        ssize_t w = send(e->fd, buf_head(&e->out), e->out.len, MSG_NOSIGNAL);
        if (w > 0) {
            buf_consume(&e->out, (size_t)w);
            r->progress_ms = ev_now_ms();
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        end_dead(e, w < 0 ? strerror(errno) : "send returned 0");
        return;
    }
#ifdef __linux__
    while (e->fd >= 0 && e->piped) {
        ssize_t w =
            splice(e->pipe[0], NULL, e->fd, NULL, e->piped, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (w > 0) {
            e->piped -= (size_t)w;
            e->stalled = 0;
            r->progress_ms = ev_now_ms();
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        end_dead(e, w < 0 ? strerror(errno) : "splice wrote nothing");
        return;
    }
#endif
}

/* Queue payload bytes for e (framed if it speaks WebSocket). */
static int end_queue(rend_t *e, const uint8_t *p, size_t n)
{
    if (e->fd < 0 || e->close_queued)
        return 0; /* its end is gone or closing: the bytes have nowhere to go */
    int rc =
        e->ws ? ws_frame_append(&e->out, 1, WS_OP_BINARY, NULL, p, n) : buf_append(&e->out, p, n);
    if (rc < 0) {
        end_dead(e, "out of memory");
        return -1;
    }
    e->tx += n;
    return 0;
}

/* ---- reading ----------------------------------------------------------------- */

static int ws_on_data(void *ctx, const uint8_t *p, size_t n)
{
    rend_t *e = ctx;
    e->rx += n;
    return end_queue(other(e), p, n) < 0 ? -2 : 0;
}

static int ws_on_control(void *ctx, int opcode, const uint8_t *p, size_t n)
{
    rend_t *e = ctx;
    if (opcode == WS_OP_PING) {
        /* Pongs share e's queue; a peer that pings without reading is cut off. */
        if (e->out.len > e->r->cfg.high_water * 2 ||
            ws_frame_append(&e->out, 1, WS_OP_PONG, NULL, p, n) < 0) {
            end_dead(e, "does not read its pongs");
            return -2;
        }
        return 0;
    }
    if (opcode == WS_OP_CLOSE) {
        /* Echo the peer's status code (RFC 6455 §5.5.1), then wind down. */
        if (!e->close_queued) {
            int code = n >= 2 ? (p[0] << 8 | p[1]) : WS_CLOSE_NORMAL;
            ws_close_append(&e->out, code, NULL);
            e->close_queued = 1;
        }
        end_eof(e, "sent a WebSocket close");
        return -3;
    }
    return 0; /* PONG: nothing to do */
}

static const ws_sink_t relay_ws_sink = {ws_on_data, ws_on_control};

/* How much one read may take for o: what still fits under high_water (at
 * least 1; end_read checked there is room). Reading no more than that
 * keeps o's buffer within high_water, or high_water plus one frame header
 * for a WebSocket end, so its allocation never doubles past the bound. */
static size_t read_room(const rend_t *o)
{
    size_t hw = o->r->cfg.high_water, q = pending(o);
    size_t room = hw > q ? hw - q : 1;
    if (o->ws && room > 2 * WS_MAX_HEADER)
        room -= WS_MAX_HEADER;
    return room < RELAY_CHUNK ? room : RELAY_CHUNK;
}

/* Copy mode: one recv into o's buffer (or through the WebSocket decoder).
 * Returns bytes read, 0 at EOF, -1 with errno, or -2 after a protocol error
 * that already ended the pair. */
static ssize_t read_copy(rend_t *e, rend_t *o)
{
    size_t want = read_room(o);
    if (!e->ws && !o->ws) {
        uint8_t *tail = buf_tail(&o->out, want);
        if (!tail) {
            end_dead(e, "out of memory");
            return -2;
        }
        ssize_t n = recv(e->fd, tail, want, 0);
        if (n > 0) {
            buf_commit(&o->out, (size_t)n);
            e->rx += (uint64_t)n;
            o->tx += (uint64_t)n;
        }
        return n;
    }
    uint8_t chunk[RELAY_CHUNK];
    ssize_t n = recv(e->fd, chunk, want, 0);
    if (n <= 0)
        return n;
    if (!e->ws) {
        e->rx += (uint64_t)n;
        return end_queue(o, chunk, (size_t)n) < 0 ? -2 : n;
    }
    char err[128];
    int rc = ws_dec_feed(&e->dec, chunk, (size_t)n, &relay_ws_sink, e, err, sizeof(err));
    if (rc == WS_ERROR) {
        log_warn("%s: %s: WebSocket protocol error: %s", __func__, e->name, err);
        if (!e->close_queued) {
            ws_close_append(&e->out, e->dec.close_code, NULL);
            e->close_queued = 1;
        }
        end_eof(e, "broke the WebSocket protocol");
        return -2;
    }
    return rc ? -2 : n;
}

/* Splice mode: bytes the pipe toward o can still take. */
static size_t splice_room(const rend_t *o)
{
    return o->pipe_cap > o->piped ? o->pipe_cap - o->piped : 0;
}

#ifdef __linux__
/* Splice mode: socket -> the pipe toward o. Same returns as read_copy. */
static ssize_t read_splice(rend_t *e, rend_t *o)
{
    size_t room = splice_room(o);
    ssize_t n = splice(e->fd, NULL, o->pipe[1], NULL, room, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
        o->piped += (size_t)n;
        e->rx += (uint64_t)n;
        o->tx += (uint64_t)n;
    } else if (n < 0 && errno == EAGAIN && o->piped) {
        o->stalled = 1; /* no free slot in the pipe (or nothing to read): wait for o */
    }
    return n;
}
#endif

/* Fall back to copying for this pair (and every later one). */
static void splice_give_up(relay_t *r, int err)
{
    log_info("%s: splice(2) unavailable for sockets (%s); relaying by copy", __func__,
             strerror(err));
    splice_broken = 1;
    r->splice = 0;
    for (int i = 0; i < 2; i++)
        pipe_close(&r->end[i]);
}

static void end_read(rend_t *e)
{
    relay_t *r = e->r;
    rend_t *o = other(e);
    for (int i = 0; i < RELAY_READS_PER_EVENT; i++) {
        if (r->closing || e->fd < 0 || o->fd < 0 || pending(o) >= r->cfg.high_water || o->stalled)
            return;
        ssize_t n;
        size_t last_want = r->splice ? splice_room(o) : read_room(o);
#ifdef __linux__
        n = r->splice ? read_splice(e, o) : read_copy(e, o);
        if (n < 0 && r->splice && (errno == EINVAL || errno == ENOSYS) && e->rx == 0 &&
            !r->end[0].piped && !r->end[1].piped) {
            splice_give_up(r, errno);
            continue;
        }
#else
        n = read_copy(e, o);
#endif
        if (n > 0) {
            r->progress_ms = ev_now_ms();
            relay_note_activity(r, (size_t)n);
            end_flush(o);
            /* A short read emptied the socket: the next read would only
             * return EAGAIN. Readiness is level-triggered, so bytes that
             * arrive meanwhile are reported again; this saves one of four
             * system calls per relayed message. */
            if ((size_t)n < last_want)
                return;
            continue;
        }
        if (n == 0) {
            end_eof(e, "closed the connection");
            return;
        }
        if (n == -2 || errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        if (errno != EINTR) {
            end_dead(e, strerror(errno));
            return;
        }
    }
}

/* ---- events ------------------------------------------------------------------ */

static void end_update_events(rend_t *e)
{
    relay_t *r = e->r;
    rend_t *o = other(e);
    int want = pending(e) ? EV_WRITE : 0;
    if (!r->closing && o->fd >= 0 && pending(o) < r->cfg.high_water && !o->stalled)
        want |= EV_READ;
    int have = ev_get_mask(r->loop, e->fd);
    if (have & ~want)
        ev_del(r->loop, e->fd, have & ~want);
    if ((want & ~have) && ev_add(r->loop, e->fd, want & ~have, end_on_io, e) < 0)
        end_dead(e, "cannot watch the socket");
}

static void relay_finish(relay_t *r)
{
    double secs = (double)(ev_now_ms() - r->start_ms) / 1000.0;
    log_info("proxy: pair %s <-> %s closed after %.3f s (%s): %llu bytes to the first, %llu to "
             "the second",
             r->end[0].name, r->end[1].name, secs, r->why[0] ? r->why : "shutdown",
             (unsigned long long)r->end[0].tx, (unsigned long long)r->end[1].tx);
    if (r->linger)
        ev_timer_del(r->loop, r->linger);
    r->linger = NULL;
    if (r->done)
        r->done(r->ctx, r);
    for (int i = 0; i < 2; i++)
        buf_free(&r->end[i].out);
    free(r);
}

static int64_t relay_linger_tick(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    relay_t *r = data;
    if (!r->closing)
        return r->cfg.linger_ms;
    int64_t idle = ev_now_ms() - r->progress_ms;
    if (idle < r->cfg.linger_ms)
        return r->cfg.linger_ms - idle;
    r->linger = NULL;
    for (int i = 0; i < 2; i++) {
        rend_t *e = &r->end[i];
        if (e->fd >= 0) {
            log_warn("%s: %s accepted nothing for %d ms; dropping %zu queued bytes", __func__,
                     e->name, r->cfg.linger_ms, pending(e));
            end_close(e);
        }
    }
    relay_settle(r);
    return EV_NOMORE;
}

/* End of every callback: close what is done, re-arm events, free when both
 * ends are closed. The relay must not be touched after this returns. */
static void relay_settle(relay_t *r)
{
    for (int i = 0; i < 2; i++) {
        rend_t *e = &r->end[i];
        if (e->fd >= 0 && r->closing && pending(e) == 0)
            end_close_graceful(e);
    }
    for (int i = 0; i < 2; i++) {
        if (r->end[i].fd >= 0)
            end_update_events(&r->end[i]);
    }
    if (r->closing && !r->linger && (r->end[0].fd >= 0 || r->end[1].fd >= 0))
        r->linger = ev_timer_add(r->loop, r->cfg.linger_ms, relay_linger_tick, r);
    if (r->end[0].fd < 0 && r->end[1].fd < 0)
        relay_finish(r);
}

static void end_on_io(ev_loop_t *loop, int fd, void *data, int mask)
{
    rend_t *e = data;
    relay_t *r = e->r;
    if (mask & EV_WRITE)
        end_flush(e);
    if ((mask & EV_READ) && e->fd >= 0)
        end_read(e);
    relay_settle(r);
}

/* ---- setup ------------------------------------------------------------------- */

#ifdef __linux__
/* Below this a pipe costs more syscalls than copying saves. */
#define PIPE_MIN_USEFUL 65536

/* 0, or -1 with errno (EMFILE...), or 1 if the kernel only grants a pipe
 * too small to be worth it: past fs.pipe-user-pages-soft an unprivileged
 * user gets 2-page pipes. */
static int end_make_pipe(rend_t *e, size_t want)
{
    if (pipe2(e->pipe, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    /* The kernel may refuse to grow it (fs.pipe-max-size, per-user page
     * limits); a smaller one still works. */
    if (fcntl(e->pipe[1], F_SETPIPE_SZ, (int)want) < 0 && want > 262144)
        fcntl(e->pipe[1], F_SETPIPE_SZ, 262144);
    int cap = fcntl(e->pipe[1], F_GETPIPE_SZ);
    e->pipe_cap = cap > 0 ? (size_t)cap : 0;
    return e->pipe_cap >= PIPE_MIN_USEFUL ? 0 : 1;
}
#endif

static void end_init(relay_t *r, int idx, const relay_end_cfg_t *c)
{
    rend_t *e = &r->end[idx];
    e->r = r;
    e->idx = idx;
    e->fd = c->fd;
    e->ws = c->ws;
    e->pipe[0] = e->pipe[1] = -1;
    buf_init(&e->out, 0);
    if (c->dec)
        e->dec = *c->dec;
    else
        ws_dec_init(&e->dec, 1, UINT64_MAX >> 1);
    snprintf(e->name, sizeof(e->name), "%s", c->name ? c->name : "peer");
}

relay_t *relay_start(ev_loop_t *loop, const relay_config_t *cfg, const relay_end_cfg_t *a,
                     const relay_end_cfg_t *b, relay_done_fn *done, void *ctx, char *err,
                     size_t errlen)
{
    relay_t *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errlen, "out of memory");
        close(a->fd);
        close(b->fd);
        return NULL;
    }
    r->loop = loop;
    r->cfg = *cfg;
    r->done = done;
    r->ctx = ctx;
    r->start_ms = r->progress_ms = ev_now_ms();
    end_init(r, 0, a);
    end_init(r, 1, b);
#ifdef __linux__
    r->splice = cfg->splice && !splice_broken && !a->ws && !b->ws;
    if (r->splice) {
        int rc = end_make_pipe(&r->end[0], cfg->pipe_size);
        if (rc == 0)
            rc = end_make_pipe(&r->end[1], cfg->pipe_size);
        if (rc != 0) {
            /* Out of fds, or pipes too small: copying needs neither. */
            log_info("%s: %s; relaying %s <-> %s by copy", __func__,
                     rc < 0 ? strerror(errno) : "kernel grants only tiny pipes", r->end[0].name,
                     r->end[1].name);
            pipe_close(&r->end[0]);
            pipe_close(&r->end[1]);
            r->splice = 0;
        }
    }
    if (r->splice)
        r->cfg.high_water =
            r->end[0].pipe_cap < r->end[1].pipe_cap ? r->end[0].pipe_cap : r->end[1].pipe_cap;
#endif
    const relay_end_cfg_t *c[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        if (c[i]->outlen && buf_append(&r->end[i].out, c[i]->out, c[i]->outlen) < 0) {
            snprintf(err, errlen, "out of memory");
            relay_free(r);
            return NULL;
        }
    }
    for (int i = 0; i < 2; i++) {
        end_update_events(&r->end[i]);
        if (r->end[i].fd < 0) {
            snprintf(err, errlen, "cannot watch the sockets");
            relay_free(r);
            return NULL;
        }
    }
    return r;
}

void relay_free(relay_t *r)
{
    if (!r)
        return;
    for (int i = 0; i < 2; i++) {
        end_close(&r->end[i]);
        buf_free(&r->end[i].out);
    }
    if (r->linger)
        ev_timer_del(r->loop, r->linger);
    free(r);
}

int relay_uses_splice(const relay_t *r)
{
    return r->splice;
}
