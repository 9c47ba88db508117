/* The tracker daemon: accepts connections, runs the magic exchange, frames
 * and validates JSON messages and dispatches them. Scheduling decisions are
 * made in sched.c; this file only moves bytes and keeps per-connection
 * state.
 *
 * Every connection is non-blocking and owned by the ev loop. Replies are
 * queued whole (header and JSON together) and written with one send, so no
 * reply is split across segments that Nagle would delay. */
#include "tracker/tracker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/ev.h"
#include "base/json.h"
#include "base/log.h"
#include "base/net.h"
#include "base/listener.h"
#include "base/peercap.h"
#include "base/sig.h"
#include "tracker/proto.h"
#include "tracker/sched.h"

#define READ_CHUNK 65536
#define MAX_KEY_LEN 4096
/* Stop reading from a peer whose unread replies pass this; resume once drained. */
#define OUT_HIGH_WATER (1024 * 1024)
#define CLOSE_LINGER_MS 5000

typedef enum conn_state {
    CONN_MAGIC,   /* waiting for the 4-byte magic */
    CONN_FRAMES,  /* exchanging frames */
    CONN_CLOSING, /* flushing a last reply, then close */
} conn_state_t;

typedef struct conn {
    struct tracker *t;
    int fd;
    uint64_t id;
    char ip[NET_IP_LEN];
    int peer_port;
    conn_state_t state;
    buf_t in, out;
    json_t *info; /* merged UPDATE_INFO objects; NULL until the first */
    sched_owner_t owner;
    ev_timer_t *timer;        /* handshake deadline, or close linger */
    int doomed;               /* close once the current callback returns */
    struct conn *prev, *next; /* live connections, accept order */
    struct conn *doomed_next;
} conn_t;

struct tracker {
    tracker_config_t cfg;
    ev_loop_t *loop;
    sched_t *sched;
    int lfd, port, sig_fd;
    listener_t lis;
    uint64_t next_id;
    size_t nconns;
    peercap_t peers; /* open connections per peer address (--max-conns-per-peer) */
    conn_t *first, *last;
    conn_t *doomed;
    int stopping;
};

static void conn_flush(conn_t *c);
static void conn_on_io(ev_loop_t *loop, int fd, void *data, int mask);

/* ---- connection lifetime -------------------------------------------------- */

static void conn_destroy(conn_t *c)
{
    tracker_t *t = c->t;
    sched_owner_drop(t->sched, &c->owner);
    if (c->prev)
        c->prev->next = c->next;
    else
        t->first = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        t->last = c->prev;
    t->nconns--;
    peercap_release_ip(&t->peers, c->ip);
    if (c->timer)
        ev_timer_del(t->loop, c->timer);
    ev_del(t->loop, c->fd, EV_READ | EV_WRITE);
    close(c->fd);
    buf_free(&c->in);
    buf_free(&c->out);
    json_free(c->info);
    log_debug("%s: closed connection #%llu from %s:%d", __func__, (unsigned long long)c->id, c->ip,
              c->peer_port);
    free(c);
}

/* Closing is deferred to the end of the current event so that nothing
 * (the scheduler's grant loop in particular) sees a freed connection. Its
 * queued slots and requests are dropped right away, though. */
static void conn_doom(conn_t *c)
{
    if (c->doomed)
        return;
    c->doomed = 1;
    sched_owner_drop(c->t->sched, &c->owner);
    c->doomed_next = c->t->doomed;
    c->t->doomed = c;
}

static void tracker_reap(tracker_t *t)
{
    while (t->doomed) {
        conn_t *c = t->doomed;
        t->doomed = c->doomed_next;
        conn_destroy(c);
    }
}

static int64_t conn_linger_expired(ev_loop_t *loop, ev_timer_t *tm, void *data)
{
    conn_t *c = data;
    c->timer = NULL;
    log_warn("%s: #%llu %s: peer did not read its last reply, closing", __func__,
             (unsigned long long)c->id, c->ip);
    conn_doom(c);
    tracker_reap(c->t);
    return EV_NOMORE;
}

/* Stop reading, flush what is queued (e.g. a FAIL reply), then close. */
static void conn_close_after_flush(conn_t *c)
{
    if (c->state == CONN_CLOSING || c->doomed)
        return;
    c->state = CONN_CLOSING;
    sched_owner_drop(c->t->sched, &c->owner);
    ev_del(c->t->loop, c->fd, EV_READ);
    if (c->timer)
        ev_timer_del(c->t->loop, c->timer);
    c->timer = ev_timer_add(c->t->loop, CLOSE_LINGER_MS, conn_linger_expired, c);
    conn_flush(c);
}

/* ---- output --------------------------------------------------------------- */

static void conn_update_events(conn_t *c)
{
    tracker_t *t = c->t;
    if (c->doomed)
        return;
    int want = c->out.len ? EV_WRITE : 0;
    if (c->state != CONN_CLOSING && c->out.len < OUT_HIGH_WATER)
        want |= EV_READ;
    int have = ev_get_mask(t->loop, c->fd);
    if (have & ~want)
        ev_del(t->loop, c->fd, have & ~want);
    if (want & ~have && ev_add(t->loop, c->fd, want & ~have, conn_on_io, c) < 0) {
        log_error("%s: cannot watch fd %d", __func__, c->fd);
        conn_doom(c);
    }
}

static void conn_flush(conn_t *c)
{
    while (c->out.len) {
        ssize_t w = send(c->fd, buf_head(&c->out), c->out.len, MSG_NOSIGNAL);
        if (w > 0) {
            buf_consume(&c->out, (size_t)w);
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        log_info("%s: #%llu %s: send: %s", __func__, (unsigned long long)c->id, c->ip,
                 w < 0 ? strerror(errno) : "closed");
        conn_doom(c);
        return;
    }
    if (c->state == CONN_CLOSING && c->out.len == 0) {
        shutdown(c->fd, SHUT_WR);
        conn_doom(c);
        return;
    }
    conn_update_events(c);
}

/* Queue one frame holding the JSON text of v (or raw text), then try to send it. */
static int conn_reply_text(conn_t *c, const char *text, size_t len)
{
    if (c->out.len + len + 4 > c->t->cfg.max_outbuf || proto_append_frame(&c->out, text, len) < 0) {
        log_warn("%s: #%llu %s: peer is not reading its replies, dropping it", __func__,
                 (unsigned long long)c->id, c->ip);
        conn_doom(c);
        return -1;
    }
    conn_flush(c);
    return 0;
}

static int conn_reply_json(conn_t *c, const json_t *v)
{
    buf_t text;
    buf_init(&text, 0);
    int rc =
        json_dump(v, &text) < 0 ? -1 : conn_reply_text(c, (const char *)buf_head(&text), text.len);
    buf_free(&text);
    return rc;
}

static void conn_reply_code(conn_t *c, int code)
{
    if (code == TRACKER_SUCCESS) {
        conn_reply_text(c, "0", 1);
        return;
    }
    char text[8];
    int n = snprintf(text, sizeof(text), "%d", code);
    conn_reply_text(c, text, (size_t)n);
}

/* A peer broke the protocol: tell it FAIL, log why, and close only it. */
static void conn_fail(conn_t *c, const char *why)
{
    log_warn("tracker: #%llu %s:%d: %s; closing connection", (unsigned long long)c->id, c->ip,
             c->peer_port, why);
    conn_reply_code(c, TRACKER_FAIL);
    conn_close_after_flush(c);
}

/* ---- message handlers ----------------------------------------------------- */

static int is_port_value(const json_t *v)
{
    return json_is(v, JSON_INT) || json_is(v, JSON_DOUBLE) || json_is(v, JSON_STRING);
}

static int key_ok(const json_t *v)
{
    return json_is(v, JSON_STRING) && v->u.str.len <= MAX_KEY_LEN &&
           strlen(v->u.str.s) == v->u.str.len;
}

/* [3, key, [port, matchkey], custom_addr?] */
static void on_put(conn_t *c, const json_t *msg)
{
    const json_t *key = json_array_get(msg, 1);
    const json_t *slot = json_array_get(msg, 2);
    const json_t *custom = json_array_get(msg, 3);
    const json_t *port = json_array_get(slot, 0);
    const json_t *matchkey = json_array_get(slot, 1);
    if (!key_ok(key) || json_array_len(slot) != 2 || !is_port_value(port) || !key_ok(matchkey) ||
        (custom && !json_is(custom, JSON_NULL) && !key_ok(custom))) {
        conn_fail(c, "PUT expects [3, key, [port, matchkey], custom_addr or null]");
        return;
    }
    const char *host = json_is(custom, JSON_STRING) ? custom->u.str.s : c->ip;
    char err[128];
    if (sched_put(c->t->sched, &c->owner, key->u.str.s, host, port, matchkey->u.str.s, err,
                  sizeof(err)) < 0) {
        conn_fail(c, err);
        return;
    }
    log_debug("%s: #%llu %s: key %s slot %s", __func__, (unsigned long long)c->id, c->ip,
              key->u.str.s, matchkey->u.str.s);
    conn_reply_code(c, TRACKER_SUCCESS);
}

/* [4, key, user, priority] */
static void on_request(conn_t *c, const json_t *msg)
{
    const json_t *key = json_array_get(msg, 1);
    const json_t *prio = json_array_get(msg, 3);
    if (!key_ok(key) || json_array_len(msg) < 4 ||
        !(json_is(prio, JSON_INT) || json_is(prio, JSON_DOUBLE))) {
        conn_fail(c, "REQUEST expects [4, key, user, priority]");
        return;
    }
    double priority = json_is(prio, JSON_INT) ? (double)prio->u.i : prio->u.d;
    char err[128];
    if (sched_request(c->t->sched, &c->owner, key->u.str.s, priority, err, sizeof(err)) < 0)
        conn_fail(c, err);
}

/* The grant for a queued REQUEST: [0, [host, port, matchkey]], written
 * straight into the output buffer behind a length placeholder: this runs
 * once per cycle, and a JSON tree would cost a dozen allocations. */
static int on_grant(void *ctx, sched_owner_t *requester, const sched_slot_t *slot)
{
    conn_t *c = (conn_t *)((char *)requester - offsetof(conn_t, owner));
    if (c->doomed || c->state != CONN_FRAMES)
        return -1;
    buf_t *o = &c->out;
    size_t start = o->len;
    json_t host = {.type = JSON_STRING, .u.str = {slot->host, strlen(slot->host)}};
    json_t mk = {.type = JSON_STRING, .u.str = {slot->matchkey, strlen(slot->matchkey)}};
    if (buf_append(o, "\0\0\0\0[0, [", 9) < 0 || json_dump(&host, o) < 0 ||
        buf_append(o, ", ", 2) < 0 || json_dump(slot->port, o) < 0 || buf_append(o, ", ", 2) < 0 ||
        json_dump(&mk, o) < 0 || buf_append(o, "]]", 2) < 0 || o->len > c->t->cfg.max_outbuf) {
        o->len = start;
        log_warn("%s: #%llu %s: peer is not reading its replies, dropping it", __func__,
                 (unsigned long long)c->id, c->ip);
        conn_doom(c);
        return -1;
    }
    put_le32(buf_head(o) + start, (uint32_t)(o->len - start - 4));
    log_debug("tracker: granted slot %s at %s to #%llu %s", slot->matchkey, slot->host,
              (unsigned long long)c->id, c->ip);
    conn_flush(c);
    return 0;
}

/* [5, {"key": ..., "addr": [host or null, port]}] */
static void on_update_info(conn_t *c, json_t *msg)
{
    json_t *info = json_array_get(msg, 1);
    json_t *addr = json_object_get(info, "addr");
    const json_t *key = json_object_get(info, "key");
    if (!json_is(info, JSON_OBJECT) || json_array_len(addr) < 2 ||
        !(json_is(addr->u.arr.items[0], JSON_NULL) || json_is(addr->u.arr.items[0], JSON_STRING)) ||
        (key && !key_ok(key))) {
        conn_fail(c, "UPDATE_INFO expects [5, {\"key\": str, \"addr\": [host or null, port]}]");
        return;
    }
    if (json_is(addr->u.arr.items[0], JSON_NULL)) {
        json_t *ip = json_new_string(c->ip);
        if (!ip) {
            conn_fail(c, "out of memory");
            return;
        }
        json_free(addr->u.arr.items[0]);
        addr->u.arr.items[0] = ip;
    }
    if (!c->info && !(c->info = json_new_object())) {
        conn_fail(c, "out of memory");
        return;
    }
    for (size_t i = 0; i < info->u.obj.n; i++) {
        json_t *v = json_clone(info->u.obj.vals[i]);
        if (json_object_set(c->info, info->u.obj.keys[i], v) < 0) {
            conn_fail(c, "out of memory");
            return;
        }
    }
    if (key)
        log_info("tracker: #%llu %s registered as %s", (unsigned long long)c->id, c->ip,
                 key->u.str.s);
    conn_reply_code(c, TRACKER_SUCCESS);
}

static int info_is_server(const conn_t *c)
{
    const char *key = json_get_string(json_object_get(c->info, "key"));
    return key && strncmp(key, "server", 6) == 0;
}

static json_t *build_summary(const tracker_t *t)
{
    json_t *queues = json_new_object();
    json_t *servers = json_new_array();
    json_t *body = json_new_object();
    json_t *reply = json_new_array();
    int bad = !queues || !servers || !body || !reply;
    for (const sched_queue_t *q = sched_queues(t->sched); q && !bad; q = sched_queue_next(q)) {
        json_t *row = json_new_object();
        bad |= !row ||
               json_object_set(row, "free", json_new_int((int64_t)sched_queue_free(q))) < 0 ||
               json_object_set(row, "pending", json_new_int((int64_t)sched_queue_pending(q))) < 0;
        bad |= json_object_set(queues, sched_queue_key(q), row) < 0;
    }
    for (const conn_t *c = t->first; c && !bad; c = c->next) {
        if (!c->doomed && info_is_server(c))
            bad |= json_array_push(servers, json_clone(c->info)) < 0;
    }
    if (!bad) {
        bad |= json_object_set(body, "queue_info", queues) < 0;
        queues = NULL;
        bad |= json_object_set(body, "server_info", servers) < 0;
        servers = NULL;
        bad |= json_array_push(reply, json_new_int(TRACKER_SUCCESS)) < 0;
        bad |= json_array_push(reply, body) < 0;
        body = NULL;
    }
    json_free(queues);
    json_free(servers);
    json_free(body);
    if (bad) {
        json_free(reply);
        return NULL;
    }
    return reply;
}

static void on_summary(conn_t *c)
{
    json_t *reply = build_summary(c->t);
    if (!reply) {
        conn_fail(c, "out of memory");
        return;
    }
    conn_reply_json(c, reply);
    json_free(reply);
}

static void on_get_pending(conn_t *c)
{
    json_t *list = json_new_array();
    for (const sched_slot_t *sl = c->owner.slots; sl && list; sl = sl->owner_next) {
        if (json_array_push(list, json_new_string(sl->matchkey)) < 0) {
            json_free(list);
            list = NULL;
        }
    }
    if (!list) {
        conn_fail(c, "out of memory");
        return;
    }
    conn_reply_json(c, list);
    json_free(list);
}

static void on_stop(conn_t *c, const json_t *msg)
{
    const char *key = json_get_string(json_array_get(msg, 1));
    tracker_t *t = c->t;
    if (!t->cfg.stop_key || !key || strcmp(key, t->cfg.stop_key) != 0) {
        log_warn("tracker: #%llu %s: STOP refused (%s)", (unsigned long long)c->id, c->ip,
                 t->cfg.stop_key ? "wrong stop key" : "no stop key configured");
        conn_reply_code(c, TRACKER_FAIL);
        return;
    }
    log_info("tracker: STOP from %s", c->ip);
    conn_reply_code(c, TRACKER_SUCCESS);
    t->stopping = 1;
    ev_stop(t->loop);
}

static void conn_handle_message(conn_t *c, const char *text, size_t len)
{
    char err[160];
    json_limits_t lim = {.max_depth = 16, .max_nodes = 100000};
    json_t *msg = json_parse(text, len, &lim, err, sizeof(err));
    if (!msg) {
        conn_fail(c, err);
        return;
    }
    int64_t code;
    if (!json_is(msg, JSON_ARRAY) || json_array_len(msg) < 1 ||
        !json_is(json_array_get(msg, 0), JSON_INT) ||
        json_get_int(json_array_get(msg, 0), &code) < 0) {
        conn_fail(c, "message is not a JSON list starting with a code");
        goto out;
    }
    switch (code) {
    case TRACKER_PING:
        conn_reply_code(c, TRACKER_SUCCESS);
        break;
    case TRACKER_STOP:
        on_stop(c, msg);
        break;
    case TRACKER_PUT:
        on_put(c, msg);
        break;
    case TRACKER_REQUEST:
        on_request(c, msg);
        break;
    case TRACKER_UPDATE_INFO:
        on_update_info(c, msg);
        break;
    case TRACKER_SUMMARY:
        on_summary(c);
        break;
    case TRACKER_GET_PENDING_MATCHKEYS:
        on_get_pending(c);
        break;
    default:
        snprintf(err, sizeof(err), "unknown tracker code %lld", (long long)code);
        conn_fail(c, err);
        break;
    }
out:
    json_free(msg);
}

/* ---- input ---------------------------------------------------------------- */

static void conn_check_magic(conn_t *c)
{
    if (c->in.len < 4)
        return;
    uint32_t magic = le32(buf_head(&c->in));
    if (magic != TRACKER_MAGIC) {
        /* Not a tracker peer (TVM closes without a reply too). */
        log_warn("tracker: %s:%d: wrong magic 0x%08x; closing connection", c->ip, c->peer_port,
                 magic);
        conn_doom(c);
        return;
    }
    buf_consume(&c->in, 4);
    ev_timer_del(c->t->loop, c->timer);
    c->timer = NULL;
    c->state = CONN_FRAMES;
    uint8_t echo[4];
    put_le32(echo, TRACKER_MAGIC);
    if (buf_append(&c->out, echo, 4) < 0)
        conn_doom(c);
    else
        conn_flush(c);
}

static void conn_process_input(conn_t *c)
{
    if (c->state == CONN_MAGIC)
        conn_check_magic(c);
    while (!c->doomed && c->state == CONN_FRAMES && c->out.len < OUT_HIGH_WATER) {
        const char *json;
        size_t json_len, used;
        char err[96];
        proto_status_t st = proto_parse_frame(buf_head(&c->in), c->in.len, c->t->cfg.max_frame,
                                              &json, &json_len, &used, err, sizeof(err));
        if (st == PROTO_INCOMPLETE)
            break;
        if (st == PROTO_ERROR) {
            conn_fail(c, err);
            break;
        }
        conn_handle_message(c, json, json_len);
        buf_consume(&c->in, used);
    }
}

static void conn_on_readable(conn_t *c)
{
    /* Read into one shared buffer (single thread) and keep only what
     * arrived: 10,000 idle servers must not each pin a 64 KiB buffer. */
    static uint8_t scratch[READ_CHUNK];
    ssize_t r = recv(c->fd, scratch, sizeof(scratch), 0);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (r <= 0) {
        if (r < 0)
            log_info("tracker: #%llu %s: recv: %s", (unsigned long long)c->id, c->ip,
                     strerror(errno));
        conn_doom(c);
        return;
    }
    if (buf_append(&c->in, scratch, (size_t)r) < 0) {
        conn_fail(c, "input buffer limit reached");
        return;
    }
    conn_process_input(c);
    if (c->in.len == 0 && c->in.cap > 4096)
        buf_free(&c->in);
}

static void conn_on_io(ev_loop_t *loop, int fd, void *data, int mask)
{
    conn_t *c = data;
    tracker_t *t = c->t;
    if (!c->doomed && (mask & EV_WRITE))
        conn_flush(c);
    if (!c->doomed && (mask & EV_READ) && c->state != CONN_CLOSING)
        conn_on_readable(c);
    /* Input parked by back-pressure resumes once the output drained. */
    if (!c->doomed && c->state == CONN_FRAMES && c->in.len && c->out.len < OUT_HIGH_WATER)
        conn_process_input(c);
    if (!c->doomed)
        conn_update_events(c);
    tracker_reap(t);
}

static int64_t conn_handshake_expired(ev_loop_t *loop, ev_timer_t *tm, void *data)
{
    conn_t *c = data;
    c->timer = NULL;
    log_warn("tracker: %s:%d: no magic within %d ms; closing connection", c->ip, c->peer_port,
             c->t->cfg.handshake_timeout_ms);
    conn_doom(c);
    tracker_reap(c->t);
    return EV_NOMORE;
}

/* ---- accept --------------------------------------------------------------- */

static void conn_create(tracker_t *t, int fd, const char *ip, int port)
{
    conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        peercap_release_ip(&t->peers, ip);
        close(fd);
        return;
    }
    c->t = t;
    c->fd = fd;
    c->id = ++t->next_id;
    snprintf(c->ip, sizeof(c->ip), "%s", ip);
    c->peer_port = port;
    buf_init(&c->in, t->cfg.max_frame + 4 + READ_CHUNK);
    buf_init(&c->out, 0);
    sched_owner_init(&c->owner);
    c->prev = t->last;
    if (t->last)
        t->last->next = c;
    else
        t->first = c;
    t->last = c;
    t->nconns++;
    c->timer = ev_timer_add(t->loop, t->cfg.handshake_timeout_ms, conn_handshake_expired, c);
    if (!c->timer || ev_add(t->loop, fd, EV_READ, conn_on_io, c) < 0) {
        log_error("%s: cannot watch new connection", __func__);
        conn_doom(c);
        tracker_reap(t);
        return;
    }
    log_debug("%s: #%llu from %s:%d", __func__, (unsigned long long)c->id, ip, port);
}

static int tracker_on_conn(void *data, int fd, const char *ip, int port,
                           const struct sockaddr_storage *addr)
{
    conn_create(data, fd, ip, port);
    return 0;
}

static size_t tracker_count(void *data)
{
    return ((tracker_t *)data)->nconns;
}

static int tracker_listen(tracker_t *t)
{
    const listener_config_t lc = {
        .name = "tracker",
        .port_name = "",
        .allow = t->cfg.allow,
        .max_conns = t->cfg.max_conns,
        .count = tracker_count,
        .peers = &t->peers,
        .peer_full = "--max-conns-per-peer reached for this address",
        .batch = 256,
        .on_conn = tracker_on_conn,
        .data = t,
    };
    listener_init(&t->lis, t->loop, t->lfd, &lc);
    return listener_enable(&t->lis, 1);
}

static void tracker_on_signal(ev_loop_t *loop, int fd, void *data, int mask)
{
    tracker_t *t = data;
    int signo;
    while ((signo = sig_pipe_read(fd)) > 0) {
        log_info("tracker: caught signal %d, shutting down", signo);
        t->stopping = 1;
        ev_stop(loop);
    }
}

/* ---- public --------------------------------------------------------------- */

void tracker_config_defaults(tracker_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "0.0.0.0";
    cfg->port = 9190;
    cfg->port_end = 9199;
    cfg->handshake_timeout_ms = 10000;
    cfg->max_frame = TRACKER_MAX_FRAME;
    cfg->max_conns = 65536;
    cfg->max_conns_per_peer = 4096;
    cfg->max_outbuf = 64u * 1024 * 1024;
}

tracker_t *tracker_create(const tracker_config_t *cfg, char *err, size_t errlen)
{
    tracker_t *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->cfg = *cfg;
    t->lfd = t->sig_fd = -1;
    peercap_init(&t->peers, cfg->max_conns_per_peer);
    sched_limits_t lim = {
        .max_keys = 65536, .max_slots_per_owner = 65536, .max_reqs_per_owner = 4096};
    t->sched = sched_create(&lim, on_grant, t);
    t->loop = ev_create(1024, EV_BACKEND_AUTO);
    if (!t->sched || !t->loop) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    char nerr[NET_ERR_LEN] = "";
    t->lfd = net_listen_range(cfg->host, cfg->port, cfg->port_end, 1024, &t->port, nerr);
    if (t->lfd < 0) {
        snprintf(err, errlen, "%s", nerr);
        goto fail;
    }
    if (tracker_listen(t) < 0) {
        snprintf(err, errlen, "cannot watch the listening socket");
        goto fail;
    }
    return t;
fail:
    tracker_free(t);
    return NULL;
}

int tracker_port(const tracker_t *t)
{
    return t->port;
}

int tracker_run(tracker_t *t, int sig_fd)
{
    if (sig_fd >= 0 && ev_add(t->loop, sig_fd, EV_READ, tracker_on_signal, t) < 0)
        return -1;
    t->sig_fd = sig_fd;
    log_info("bind to %s:%d", t->cfg.host, t->port);
    int rc = ev_run(t->loop);
    /* Give the STOP reply (and any other queued replies) a chance to leave. */
    for (conn_t *c = t->first; c; c = c->next) {
        if (!c->doomed && c->out.len) {
            net_set_nonblock(c->fd, 0);
            net_write_full(c->fd, buf_head(&c->out), c->out.len, 1000, NULL);
        }
    }
    return rc;
}

void tracker_free(tracker_t *t)
{
    if (!t)
        return;
    while (t->first) {
        conn_t *c = t->first;
        if (!c->doomed)
            conn_doom(c);
        tracker_reap(t);
    }
    if (t->lfd >= 0)
        close(t->lfd);
    if (t->loop && t->sig_fd >= 0)
        ev_del(t->loop, t->sig_fd, EV_READ);
    ev_free(t->loop);
    sched_free(t->sched);
    peercap_free(&t->peers);
    free(t);
}
