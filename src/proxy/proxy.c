/* The proxy: accept, handshake, pool, pair; and, with a tracker, keep the
 * tracker's view of the waiting servers right.
 *
 * A connection (pconn) lives here from accept until it is paired or
 * closed. Pairing hands both sockets to a relay (relay.c) and frees the
 * pconns. Closing is deferred to the end of the current event (doomed
 * list), as in the tracker, so no callback sees a freed connection.
 *
 * Tracker mode, slot by slot (PROTOCOL.md §3.4). Each waiting server has a
 * slot key and a slot state:
 *   NEW   not announced on the current tracker link: PUT when it is up.
 *   PUT   announced; GET_PENDING_MATCHKEYS (every 2 s) tells whether it is
 *         still queued. Seen not queued for more than 5 s (a client took it
 *         and never came) -> new key, PUT again.
 *   HELD  announced on a previous link and possibly handed out just before
 *         that link was reset: kept valid but not re-announced; renamed and
 *         PUT after 5 s like a taken slot.
 * The tracker forgets a slot only when it is handed out or when the
 * connection that PUT it closes (having sent UPDATE_INFO). So when a
 * waiting server leaves while its slot may still be queued, the proxy asks
 * GET_PENDING_MATCHKEYS; if the dead slot is still queued, it closes the
 * tracker link and reconnects at once, re-sending UPDATE_INFO and the slots
 * that reply proved queued (same keys, so nothing changes for anyone), and
 * holding the others. A dead slot is thus never handed to a client longer
 * than one tracker round trip. */
#include "proxy/proxy.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/ev.h"
#include "base/json.h"
#include "base/log.h"
#include "base/net.h"
#include "base/listener.h"
#include "base/peercap.h"
#include "base/sig.h"
#include "proxy/ptrk.h"
#include "proxy/ws.h"
#include "rpc/rpc.h"

#define READ_CHUNK 4096
#define CLOSE_LINGER_MS 5000
#define TRACKER_TICK_MS 2000  /* TVM: update_tracker_period */
#define ALLOC_TIMEOUT_MS 5000 /* TVM: timeout_alloc */
#define HS_MAX (8 + RPC_MAX_KEY_LEN)
#define MATCH_MAX (RPC_MAX_KEY_LEN + 32)

typedef enum pc_state {
    PC_HTTP,      /* web port: waiting for the upgrade request */
    PC_HANDSHAKE, /* waiting for magic, length and key */
    PC_WAITING,   /* in a pool, waiting for the other side */
    PC_CLOSING,   /* flushing a last reply, then close */
} pc_state_t;

typedef enum slot_state {
    SLOT_NEW,
    SLOT_PUT,
    SLOT_HELD,
} slot_state_t;

typedef struct pconn {
    struct proxy *p;
    uint64_t id;
    int fd;
    int ws;
    pc_state_t state;
    char peer[NET_IP_LEN + 8];
    struct sockaddr_storage addr; /* counted in p->peers while counted is set */
    int counted;
    buf_t in;  /* TCP: handshake bytes; web: the HTTP request, then raw frames */
    buf_t hs;  /* WebSocket: decoded payload, i.e. the RPC handshake */
    buf_t out; /* wire-ready bytes not yet sent */
    ws_dec_t dec;
    ev_timer_t *timer; /* handshake deadline, pool timeout, or close linger */
    char *key;         /* the full key the peer sent */
    char *match;       /* pool key: match key, or the slot key of a server in tracker mode */
    char *device;      /* tracker mode: the server's device key */
    int is_server;
    int pooled;
    int doomed;
    /* tracker mode */
    slot_state_t slot;
    uint64_t put_seq;          /* request number of the PUT of the current key */
    uint64_t confirmed_seq;    /* the last GET_PENDING_MATCHKEYS that showed it queued */
    int64_t alloc_ms;          /* first seen not queued (0 = queued or unknown) */
    struct pconn *prev, *next; /* every live connection */
    struct pconn *pool_next;
    struct pconn *doomed_next;
} pconn_t;

typedef struct pool {
    pconn_t **b;
    size_t nb, n;
} pool_t;

typedef struct ppair {
    relay_t *r;
    struct proxy *p;
    struct sockaddr_storage addr[2]; /* both peers stay counted until the relay ends */
    struct ppair *prev, *next;
} ppair_t;

typedef struct dead_slot {
    char *key;
    uint64_t put_seq;
} dead_slot_t;

struct proxy {
    proxy_config_t cfg;
    ev_loop_t *loop;
    int lfd, port, wfd, web_port, sig_fd;
    int running;           /* proxy_run loops until a signal clears it */
    int64_t poll_until_ns; /* relays' busy-poll deadline (relay_poll_timeout_ms) */
    listener_t lis[2];     /* [ws]: the TCP and the web port */
    char peer_full[96];    /* the --max-conns-per-peer refusal, with the cap */
    uint64_t next_id;
    size_t nconns;
    pconn_t *first;
    pconn_t *doomed;
    pool_t servers, clients;
    ppair_t *pairs;
    size_t npairs;
    peercap_t peers; /* open connections per peer address (--max-conns-per-peer) */
    /* tracker mode */
    ptrk_t *trk;
    char trk_host[256];
    int trk_port;
    ev_timer_t *trk_timer;
    char **keys; /* device keys ever registered, in order (UPDATE_INFO) */
    size_t nkeys;
    dead_slot_t *dead;
    size_t ndead;
    int reset_pending;  /* we asked ptrk to reset to withdraw dead slots */
    uint64_t reset_seq; /* ...on the reply to this GET_PENDING_MATCHKEYS */
};

static void pc_on_io(ev_loop_t *loop, int fd, void *data, int mask);
static void slot_retire(pconn_t *c);

/* ---- handshake parsing --------------------------------------------------------- */

static int is_py_space(uint8_t c)
{
    /* The ASCII whitespace of Python's str.split(). */
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' ||
           (c >= 0x1c && c <= 0x1f);
}

int proxy_key_parse(const uint8_t *key, size_t len, int *is_server, char *match, size_t matchlen,
                    const char **why)
{
    if (memchr(key, '\0', len)) {
        *why = "key contains a NUL byte";
        return -1;
    }
    *is_server = len >= 7 && memcmp(key, "server:", 7) == 0;
    size_t i = len < 7 ? len : 7;
    while (i < len && is_py_space(key[i]))
        i++;
    size_t s = i;
    while (i < len && !is_py_space(key[i]))
        i++;
    if (i == s) {
        *why = "key has nothing after its 7-character prefix";
        return -1;
    }
    if (i - s >= matchlen) {
        *why = "match key too long";
        return -1;
    }
    memcpy(match, key + s, i - s);
    match[i - s] = '\0';
    return 0;
}

/* ---- pools ------------------------------------------------------------------- */

/* 64-bit FNV-1a, whatever size_t is (32-bit boards run the proxy too). */
static size_t pool_hash(const char *s)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return (size_t)(h ^ (h >> 32));
}

static pconn_t *pool_get(const pool_t *pl, const char *key)
{
    if (!pl->nb)
        return NULL;
    for (pconn_t *c = pl->b[pool_hash(key) & (pl->nb - 1)]; c; c = c->pool_next) {
        if (strcmp(c->match, key) == 0)
            return c;
    }
    return NULL;
}

static int pool_grow(pool_t *pl)
{
    size_t nb = pl->nb ? pl->nb * 2 : 64;
    pconn_t **b = calloc(nb, sizeof(*b));
    if (!b)
        return -1;
    for (size_t i = 0; i < pl->nb; i++) {
        while (pl->b[i]) {
            pconn_t *c = pl->b[i];
            pl->b[i] = c->pool_next;
            size_t k = pool_hash(c->match) & (nb - 1);
            c->pool_next = b[k];
            b[k] = c;
        }
    }
    free(pl->b);
    pl->b = b;
    pl->nb = nb;
    return 0;
}

static int pool_add(pool_t *pl, pconn_t *c)
{
    if (pl->n >= pl->nb && pool_grow(pl) < 0)
        return -1;
    size_t k = pool_hash(c->match) & (pl->nb - 1);
    c->pool_next = pl->b[k];
    pl->b[k] = c;
    pl->n++;
    c->pooled = 1;
    return 0;
}

static void pool_del(pool_t *pl, pconn_t *c)
{
    if (!c->pooled)
        return;
    for (pconn_t **pp = &pl->b[pool_hash(c->match) & (pl->nb - 1)]; *pp; pp = &(*pp)->pool_next) {
        if (*pp == c) {
            *pp = c->pool_next;
            pl->n--;
            break;
        }
    }
    c->pooled = 0;
    c->pool_next = NULL;
}

static pool_t *pool_of(proxy_t *p, const pconn_t *c)
{
    return c->is_server ? &p->servers : &p->clients;
}

/* ---- connection lifetime --------------------------------------------------------- */

static const char *pc_role(const pconn_t *c)
{
    if (!c->key)
        return c->ws ? "websocket peer" : "peer";
    return c->is_server ? "server" : "client";
}

static void pc_destroy(pconn_t *c)
{
    proxy_t *p = c->p;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->first = c->next;
    if (c->next)
        c->next->prev = c->prev;
    p->nconns--;
    if (c->timer)
        ev_timer_del(p->loop, c->timer);
    if (c->fd >= 0) {
        ev_del(p->loop, c->fd, EV_READ | EV_WRITE);
        close(c->fd);
    }
    if (c->counted)
        peercap_release(&p->peers, &c->addr);
    buf_free(&c->in);
    buf_free(&c->hs);
    buf_free(&c->out);
    free(c->key);
    free(c->match);
    free(c->device);
    free(c);
}

/* Leave the pools now; free at the end of the current event. */
static void pc_doom(pconn_t *c)
{
    if (c->doomed)
        return;
    if (c->pooled) {
        pool_del(pool_of(c->p, c), c);
        slot_retire(c);
    }
    c->doomed = 1;
    c->doomed_next = c->p->doomed;
    c->p->doomed = c;
}

static void proxy_reap(proxy_t *p)
{
    while (p->doomed) {
        pconn_t *c = p->doomed;
        p->doomed = c->doomed_next;
        pc_destroy(c);
    }
}

static void pc_update_events(pconn_t *c)
{
    if (c->doomed || c->fd < 0)
        return;
    int want = c->out.len ? EV_WRITE : 0;
    if (c->state != PC_CLOSING)
        want |= EV_READ;
    int have = ev_get_mask(c->p->loop, c->fd);
    if (have & ~want)
        ev_del(c->p->loop, c->fd, have & ~want);
    if ((want & ~have) && ev_add(c->p->loop, c->fd, want & ~have, pc_on_io, c) < 0) {
        log_error("%s: %s %s: cannot watch the socket", __func__, pc_role(c), c->peer);
        pc_doom(c);
    }
}

static void pc_flush(pconn_t *c)
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
        log_info("%s: %s %s: send: %s", __func__, pc_role(c), c->peer,
                 w < 0 ? strerror(errno) : "closed");
        pc_doom(c);
        return;
    }
    if (c->state == PC_CLOSING && !c->out.len) {
        shutdown(c->fd, SHUT_WR);
        pc_doom(c);
        return;
    }
    pc_update_events(c);
}

static int64_t pc_linger_expired(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    pconn_t *c = data;
    c->timer = NULL;
    log_warn("%s: %s %s: did not take its last reply; closing", __func__, pc_role(c), c->peer);
    pc_doom(c);
    proxy_reap(c->p);
    return EV_NOMORE;
}

/* Stop reading, send what is queued, then close. */
static void pc_close_after_flush(pconn_t *c)
{
    if (c->doomed || c->state == PC_CLOSING)
        return;
    if (c->pooled) {
        pool_del(pool_of(c->p, c), c);
        slot_retire(c);
    }
    c->state = PC_CLOSING;
    if (c->timer)
        ev_timer_del(c->p->loop, c->timer);
    c->timer = ev_timer_add(c->p->loop, CLOSE_LINGER_MS, pc_linger_expired, c);
    pc_flush(c);
}

/* Append RPC-level bytes (framed for WebSocket peers). */
static int pc_queue(pconn_t *c, const void *data, size_t n)
{
    return c->ws ? ws_frame_append(&c->out, 1, WS_OP_BINARY, NULL, data, n)
                 : buf_append(&c->out, data, n);
}

/* MISMATCH or DUPLICATE, then close (TVM: send_data + signal_close). */
static void pc_reject(pconn_t *c, uint32_t code)
{
    uint8_t b[4];
    put_le32(b, code);
    if (pc_queue(c, b, 4) < 0) {
        pc_doom(c);
        return;
    }
    if (c->ws)
        ws_close_append(&c->out, WS_CLOSE_NORMAL, NULL);
    pc_close_after_flush(c);
}

/* ---- pairing ------------------------------------------------------------------ */

/* Both sockets of the pair are closed: uncount the peers, free. */
static void pair_release(ppair_t *pp)
{
    peercap_release(&pp->p->peers, &pp->addr[0]);
    peercap_release(&pp->p->peers, &pp->addr[1]);
    free(pp);
}

static void pair_done(void *ctx, relay_t *r)
{
    ppair_t *pp = ctx;
    proxy_t *p = pp->p;
    if (pp->prev)
        pp->prev->next = pp->next;
    else
        p->pairs = pp->next;
    if (pp->next)
        pp->next->prev = pp->prev;
    p->npairs--;
    pair_release(pp);
}

/* SUCCESS, the other side's full key, queued after whatever c still owes. */
static int pc_queue_success(pconn_t *c, const char *other_key)
{
    size_t kl = strlen(other_key);
    buf_t b;
    buf_init(&b, 0);
    int rc = buf_append_u32le(&b, RPC_CODE_SUCCESS) < 0 || buf_append_u32le(&b, (uint32_t)kl) < 0 ||
                     buf_append(&b, other_key, kl) < 0 || pc_queue(c, buf_head(&b), b.len) < 0
                 ? -1
                 : 0;
    buf_free(&b);
    return rc;
}

static void pc_end_cfg(pconn_t *c, relay_end_cfg_t *e, char *name, size_t namelen)
{
    snprintf(name, namelen, "%.96s (%s)", c->key, c->peer);
    e->fd = c->fd;
    e->ws = c->ws;
    e->dec = &c->dec;
    e->out = buf_head(&c->out);
    e->outlen = c->out.len;
    e->name = name;
}

/* Hand both sockets to a relay. Both pconns are doomed (their fds now
 * belong to the relay). */
static void proxy_pair(proxy_t *p, pconn_t *srv, pconn_t *cli)
{
    pool_del(pool_of(p, srv), srv);
    pool_del(pool_of(p, cli), cli);
    slot_retire(srv);
    if (pc_queue_success(srv, cli->key) < 0 || pc_queue_success(cli, srv->key) < 0) {
        log_error("%s: out of memory pairing %s with %s", __func__, srv->peer, cli->peer);
        pc_doom(srv);
        pc_doom(cli);
        return;
    }
    char sname[192], cname[192], err[128];
    relay_end_cfg_t a, b;
    pc_end_cfg(srv, &a, sname, sizeof(sname));
    pc_end_cfg(cli, &b, cname, sizeof(cname));
    ppair_t *pp = calloc(1, sizeof(*pp));
    /* The relay owns the fds from here on, whatever happens; the pair holds
     * the peers' counts until the relay has closed both. */
    ev_del(p->loop, srv->fd, EV_READ | EV_WRITE);
    ev_del(p->loop, cli->fd, EV_READ | EV_WRITE);
    srv->fd = cli->fd = -1;
    if (pp) {
        pp->p = p;
        pp->addr[0] = srv->addr;
        pp->addr[1] = cli->addr;
        srv->counted = cli->counted = 0;
    }
    pc_doom(srv);
    pc_doom(cli);
    if (!pp) {
        close(a.fd);
        close(b.fd);
        log_error("%s: out of memory pairing %s with %s", __func__, sname, cname);
        return;
    }
    pp->r = relay_start(p->loop, &p->cfg.relay, &a, &b, pair_done, pp, err, sizeof(err));
    if (!pp->r) {
        log_error("%s: cannot relay %s <-> %s: %s", __func__, sname, cname, err);
        pair_release(pp);
        return;
    }
    pp->next = p->pairs;
    if (p->pairs)
        p->pairs->prev = pp;
    p->pairs = pp;
    p->npairs++;
    log_info("proxy: paired %s with %s (%s)", sname, cname,
             relay_uses_splice(pp->r) ? "splice" : "copy");
}

/* ---- tracker mode: slots --------------------------------------------------------- */

static void random_suffix(char *out, size_t n)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint64_t)time(NULL) * 6364136223846793005ULL ^ (uint64_t)ev_now_ms() ^
            (uint64_t)getpid() << 32;
    /* Shaped like Python's str(random.random()), which TVM's proxy uses. */
    snprintf(out, n, "0.%016llu", (unsigned long long)(r % 10000000000000000ULL));
}

/* A fresh slot key "<device>:<random>" not used by any pooled server. */
static char *slot_new_key(proxy_t *p, const char *device)
{
    size_t n = strlen(device) + 24;
    char *key = malloc(n);
    if (!key)
        return NULL;
    do {
        char rnd[24];
        random_suffix(rnd, sizeof(rnd));
        snprintf(key, n, "%s:%s", device, rnd);
    } while (pool_get(&p->servers, key));
    return key;
}

static void slot_put(proxy_t *p, pconn_t *c)
{
    uint64_t seq = ptrk_put(p->trk, c->device, p->port, c->match, p->cfg.custom_addr);
    if (!seq)
        return; /* link not up: stays NEW, PUT on reconnect */
    c->slot = SLOT_PUT;
    c->put_seq = seq;
    c->alloc_ms = 0;
    c->confirmed_seq = 0;
    log_debug("proxy: announced %s for %s", c->match, c->peer);
}

/* The slot was handed out (or may have been) and nobody came: rename it. */
static void slot_rekey(proxy_t *p, pconn_t *c, const char *reason)
{
    char *key = slot_new_key(p, c->device);
    if (!key)
        return;
    log_info("proxy: slot %s of %s %s; re-announcing as %s", c->match, c->peer, reason, key);
    pool_del(&p->servers, c);
    free(c->match);
    c->match = key;
    if (pool_add(&p->servers, c) < 0) {
        log_error("%s: out of memory; dropping server %s", __func__, c->peer);
        pc_doom(c);
        return;
    }
    c->slot = SLOT_NEW;
    c->alloc_ms = 0;
    slot_put(p, c);
}

static void send_update_info(proxy_t *p)
{
    if (!p->nkeys)
        return;
    buf_t b;
    buf_init(&b, 0);
    buf_append_str(&b, "server:proxy[");
    for (size_t i = 0; i < p->nkeys; i++)
        buf_printf(&b, "%s%s", i ? "," : "", p->keys[i]);
    buf_append_str(&b, "]");
    char *info = buf_steal_cstr(&b);
    if (info)
        ptrk_update_info(p->trk, info, p->port, p->cfg.custom_addr);
    free(info);
}

/* Remember a device key for UPDATE_INFO; 1 if it is new. */
static int keys_add(proxy_t *p, const char *device)
{
    for (size_t i = 0; i < p->nkeys; i++) {
        if (strcmp(p->keys[i], device) == 0)
            return 0;
    }
    char **k = realloc(p->keys, (p->nkeys + 1) * sizeof(*k));
    char *d = strdup(device);
    if (!k || !d) {
        free(d);
        if (k)
            p->keys = k;
        return 0;
    }
    p->keys = k;
    p->keys[p->nkeys++] = d;
    return 1;
}

/* A pooled server leaves (closed, or paired). If its slot may still be
 * queued at the tracker, find out, and withdraw it if so. */
static void slot_retire(pconn_t *c)
{
    proxy_t *p = c->p;
    if (!p->trk || !c->is_server || c->slot != SLOT_PUT || c->alloc_ms)
        return;
    c->slot = SLOT_NEW; /* retired: never counted twice */
    dead_slot_t *d = realloc(p->dead, (p->ndead + 1) * sizeof(*d));
    if (!d)
        return;
    p->dead = d;
    d[p->ndead].key = strdup(c->match);
    d[p->ndead].put_seq = c->put_seq;
    if (d[p->ndead].key)
        p->ndead++;
    ptrk_get_pending(p->trk);
}

static void dead_clear(proxy_t *p)
{
    for (size_t i = 0; i < p->ndead; i++)
        free(p->dead[i].key);
    p->ndead = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int in_sorted(const char **v, size_t n, const char *key)
{
    return n && bsearch(&key, v, n, sizeof(*v), cmp_str) != NULL;
}

/* Was any dead slot still queued? Entries PUT after the request stay. */
static int dead_check(proxy_t *p, uint64_t seq, const char **v, size_t n)
{
    int queued = 0;
    size_t keep = 0;
    for (size_t i = 0; i < p->ndead; i++) {
        dead_slot_t *d = &p->dead[i];
        if (d->put_seq < seq) {
            queued |= in_sorted(v, n, d->key);
            free(d->key);
        } else {
            p->dead[keep++] = *d;
        }
    }
    p->ndead = keep;
    return queued;
}

/* Update every announced slot from a GET_PENDING_MATCHKEYS reply. With
 * rekey 0 only the "proven queued" marks are set (the link is about to be
 * reset, and trk_on_down decides from them). */
static void slots_check(proxy_t *p, uint64_t seq, const char **v, size_t n, int rekey)
{
    int64_t now = ev_now_ms();
    for (size_t i = 0; i < p->servers.nb; i++) {
        pconn_t *next;
        for (pconn_t *c = p->servers.b[i]; c; c = next) {
            next = c->pool_next;
            if (c->slot == SLOT_PUT && c->put_seq < seq && in_sorted(v, n, c->match)) {
                c->alloc_ms = 0;
                c->confirmed_seq = seq;
                continue;
            }
            if (!rekey || c->slot == SLOT_NEW || (c->slot == SLOT_PUT && c->put_seq >= seq))
                continue;
            if (!c->alloc_ms)
                c->alloc_ms = now;
            else if (now - c->alloc_ms > ALLOC_TIMEOUT_MS)
                slot_rekey(p, c, "was handed out but nobody came");
        }
    }
}

/* Reply to GET_PENDING_MATCHKEYS. */
static void trk_on_pending(void *ctx, uint64_t seq, const json_t *keys)
{
    proxy_t *p = ctx;
    size_t n = json_array_len(keys);
    const char **v = calloc(n ? n : 1, sizeof(*v));
    if (!v)
        return;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_get_string(json_array_get(keys, i));
        if (s)
            v[m++] = s;
    }
    qsort(v, m, sizeof(*v), cmp_str);
    int reset = dead_check(p, seq, v, m);
    slots_check(p, seq, v, m, !reset);
    if (reset) {
        /* Only closing our tracker connection makes it forget a slot. */
        p->reset_pending = 1;
        p->reset_seq = seq;
        ptrk_reset(p->trk, "withdrawing the slot of a server that left (only a reconnect makes the "
                           "tracker forget it)");
    } else if (p->ndead) {
        ptrk_get_pending(p->trk);
    }
    free(v);
}

static void trk_on_down(void *ctx, const char *why)
{
    proxy_t *p = ctx;
    int deliberate = p->reset_pending;
    p->reset_pending = 0;
    dead_clear(p);
    int64_t now = ev_now_ms();
    for (size_t i = 0; i < p->servers.nb; i++) {
        pconn_t *next;
        for (pconn_t *c = p->servers.b[i]; c; c = next) {
            next = c->pool_next;
            if (c->slot == SLOT_NEW)
                continue;
            if (deliberate && c->slot == SLOT_PUT && c->confirmed_seq == p->reset_seq) {
                c->slot = SLOT_NEW; /* proven queued just now: same key again */
            } else if (deliberate) {
                /* Perhaps handed out a moment ago: keep the key for that client. */
                if (c->slot == SLOT_PUT) {
                    c->slot = SLOT_HELD;
                    c->alloc_ms = now;
                }
            } else {
                /* The tracker may be a new one; TVM renames every slot too, so a
                 * key handed out by the old tracker is never handed out twice. */
                slot_rekey(p, c, "may be stale after losing the tracker");
            }
        }
    }
}

static void trk_on_up(void *ctx)
{
    proxy_t *p = ctx;
    /* UPDATE_INFO first: it is what makes the tracker drop our slots when
     * this connection closes. TVM skips it after a reconnect; we do not. */
    send_update_info(p);
    for (size_t i = 0; i < p->servers.nb; i++) {
        for (pconn_t *c = p->servers.b[i]; c; c = c->pool_next) {
            if (c->slot == SLOT_NEW)
                slot_put(p, c);
        }
    }
}

static int64_t trk_tick(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    proxy_t *p = data;
    if (ptrk_is_up(p->trk))
        ptrk_get_pending(p->trk);
    return TRACKER_TICK_MS;
}

/* ---- routing (PROTOCOL.md §3.3, §3.4) ---------------------------------------------- */

static int64_t pc_pool_expired(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    pconn_t *c = data;
    c->timer = NULL;
    log_info("proxy: %s %s: no match for key %s within %d s; sent MISMATCH", pc_role(c), c->peer,
             c->match,
             (c->is_server ? c->p->cfg.timeout_server_ms : c->p->cfg.timeout_client_ms) / 1000);
    pc_reject(c, RPC_CODE_MISMATCH);
    proxy_reap(c->p);
    return EV_NOMORE;
}

static void route_plain(proxy_t *p, pconn_t *c)
{
    pool_t *src = c->is_server ? &p->clients : &p->servers;
    pconn_t *peer = pool_get(src, c->match);
    if (peer) {
        if (c->is_server)
            proxy_pair(p, c, peer);
        else
            proxy_pair(p, peer, c);
        return;
    }
    if (pool_get(pool_of(p, c), c->match)) {
        log_info("proxy: %s %s: duplicate connection with key %s; sent DUPLICATE", pc_role(c),
                 c->peer, c->match);
        pc_reject(c, RPC_CODE_DUPLICATE);
        return;
    }
    if (pool_add(pool_of(p, c), c) < 0) {
        pc_doom(c);
        return;
    }
    int ms = c->is_server ? p->cfg.timeout_server_ms : p->cfg.timeout_client_ms;
    c->timer = ev_timer_add(p->loop, ms, pc_pool_expired, c);
    log_info("proxy: %s %s waits for key %s", pc_role(c), c->peer, c->match);
}

static void route_tracker(proxy_t *p, pconn_t *c)
{
    if (!c->is_server) {
        pconn_t *srv = pool_get(&p->servers, c->match);
        if (!srv) {
            log_info("proxy: client %s: no server holds slot %s; sent MISMATCH", c->peer, c->match);
            pc_reject(c, RPC_CODE_MISMATCH);
            return;
        }
        proxy_pair(p, srv, c);
        return;
    }
    c->device = c->match;
    c->match = slot_new_key(p, c->device);
    if (!c->match || pool_add(&p->servers, c) < 0) {
        pc_doom(c);
        return;
    }
    c->slot = SLOT_NEW;
    log_info("proxy: server %s (%s) waits as slot %s", c->peer, c->device, c->match);
    /* A new device key changes the UPDATE_INFO entry; send it before the
     * slot so the tracker can drop the slot if our link closes. */
    if (keys_add(p, c->device) && ptrk_is_up(p->trk))
        send_update_info(p);
    slot_put(p, c);
}

/* The handshake is complete: classify and route. */
static void pc_on_key(pconn_t *c, const uint8_t *key, size_t keylen)
{
    proxy_t *p = c->p;
    char match[MATCH_MAX];
    const char *why;
    if (proxy_key_parse(key, keylen, &c->is_server, match, sizeof(match), &why) < 0) {
        log_warn("proxy: %s: %s; closing", c->peer, why);
        pc_doom(c);
        return;
    }
    c->key = strndup((const char *)key, keylen);
    c->match = strdup(match);
    if (!c->key || !c->match) {
        pc_doom(c);
        return;
    }
    ev_timer_del(p->loop, c->timer);
    c->timer = NULL;
    c->state = PC_WAITING;
    if (p->trk)
        route_tracker(p, c);
    else
        route_plain(p, c);
}

/* Check the handshake bytes so far (TCP: c->in; WebSocket: c->hs). */
static void pc_check_handshake(pconn_t *c)
{
    buf_t *b = c->ws ? &c->hs : &c->in;
    const uint8_t *key;
    size_t keylen;
    rpc_hs_t st = rpc_hs_parse(buf_head(b), b->len, &key, &keylen);
    switch (st) {
    case RPC_HS_INCOMPLETE:
        return;
    case RPC_HS_OK:
        pc_on_key(c, key, keylen);
        return;
    case RPC_HS_BAD_MAGIC:
        /* Not an RPC peer; TVM closes without a word too. */
        log_warn("proxy: %s: wrong magic 0x%08x; closing", c->peer, le32(buf_head(b)));
        break;
    case RPC_HS_BAD_LENGTH:
        log_warn("proxy: %s: key length %d outside [0, %d]; closing", c->peer,
                 (int32_t)le32(buf_head(b) + 4), RPC_MAX_KEY_LEN);
        break;
    case RPC_HS_EXTRA:
        log_warn("proxy: %s: sent bytes before its handshake reply (too many bytes); closing",
                 c->peer);
        break;
    }
    pc_doom(c);
}

/* ---- WebSocket peers before pairing ------------------------------------------------- */

static int pc_ws_data(void *ctx, const uint8_t *d, size_t n)
{
    pconn_t *c = ctx;
    if (c->state != PC_HANDSHAKE || c->hs.len + n > HS_MAX + 1)
        return -2; /* payload while waiting, or more than a handshake: too many bytes */
    return buf_append(&c->hs, d, n) < 0 ? -2 : 0;
}

static int pc_ws_control(void *ctx, int opcode, const uint8_t *d, size_t n)
{
    pconn_t *c = ctx;
    if (opcode == WS_OP_PING) {
        if (c->out.len > 65536 || ws_frame_append(&c->out, 1, WS_OP_PONG, NULL, d, n) < 0)
            return -2;
        return 0;
    }
    if (opcode == WS_OP_CLOSE) {
        int code = n >= 2 ? (d[0] << 8 | d[1]) : WS_CLOSE_NORMAL;
        ws_close_append(&c->out, code, NULL);
        return -3;
    }
    return 0;
}

static const ws_sink_t pc_ws_sink = {pc_ws_data, pc_ws_control};

static void pc_ws_feed(pconn_t *c, uint8_t *d, size_t n)
{
    char err[128];
    int rc = ws_dec_feed(&c->dec, d, n, &pc_ws_sink, c, err, sizeof(err));
    if (rc == 0) {
        if (c->state == PC_HANDSHAKE)
            pc_check_handshake(c);
        return;
    }
    if (rc == WS_ERROR) {
        log_warn("proxy: %s %s: WebSocket protocol error: %s; closing", pc_role(c), c->peer, err);
        ws_close_append(&c->out, c->dec.close_code, NULL);
    } else if (rc == -2) {
        log_warn("proxy: %s %s: sent data before being paired (too many bytes); closing",
                 pc_role(c), c->peer);
        ws_close_append(&c->out, WS_CLOSE_PROTOCOL, NULL);
    } else {
        log_info("proxy: %s %s: closed the WebSocket before being paired", pc_role(c), c->peer);
    }
    pc_close_after_flush(c);
}

/* The HTTP upgrade request of a web-port connection. */
static void pc_on_http(pconn_t *c)
{
    ws_req_t req;
    char err[128];
    ws_status_t st =
        ws_http_parse((const char *)buf_head(&c->in), c->in.len, &req, err, sizeof(err));
    if (st == WS_INCOMPLETE)
        return;
    int status = st == WS_ERROR ? 400 : ws_http_decide(&req, "/ws");
    if (status != 101) {
        if (st == WS_ERROR)
            log_warn("proxy: web %s: %s; answered 400", c->peer, err);
        else
            log_info("proxy: web %s: %s %s: answered %d", c->peer, req.method, req.path, status);
        ws_http_response(&c->out, status, &req);
        pc_close_after_flush(c);
        return;
    }
    if (ws_http_response(&c->out, 101, &req) < 0) {
        pc_doom(c);
        return;
    }
    log_debug("proxy: web %s: WebSocket upgrade", c->peer);
    buf_consume(&c->in, req.consumed);
    c->state = PC_HANDSHAKE;
    if (c->in.len) {
        size_t n = c->in.len;
        uint8_t *d = buf_head(&c->in);
        pc_ws_feed(c, d, n);
        buf_consume(&c->in, n);
    }
}

/* ---- input -------------------------------------------------------------------- */

static void pc_on_readable(pconn_t *c)
{
    uint8_t chunk[READ_CHUNK];
    ssize_t r = recv(c->fd, chunk, sizeof(chunk), 0);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (r <= 0) {
        if (c->state == PC_WAITING)
            log_info("proxy: %s %s (key %s) left before being paired", pc_role(c), c->peer,
                     c->match);
        else if (r < 0)
            log_info("proxy: %s: recv: %s", c->peer, strerror(errno));
        else if (c->in.len || c->hs.len)
            log_warn("proxy: %s: closed in the middle of its handshake", c->peer);
        pc_doom(c);
        return;
    }
    if (c->state == PC_WAITING && !c->ws) {
        log_warn("proxy: %s %s: sent bytes before being paired (too many bytes); closing",
                 pc_role(c), c->peer);
        pc_doom(c);
        return;
    }
    if (c->ws && c->state != PC_HTTP) {
        pc_ws_feed(c, chunk, (size_t)r);
        return;
    }
    if (buf_append(&c->in, chunk, (size_t)r) < 0) {
        log_warn("proxy: %s: handshake too long; closing", c->peer);
        pc_doom(c);
        return;
    }
    if (c->state == PC_HTTP)
        pc_on_http(c);
    else
        pc_check_handshake(c);
}

static void pc_on_io(ev_loop_t *loop, int fd, void *data, int mask)
{
    pconn_t *c = data;
    proxy_t *p = c->p;
    if (!c->doomed && (mask & EV_WRITE))
        pc_flush(c);
    if (!c->doomed && c->fd >= 0 && (mask & EV_READ) && c->state != PC_CLOSING)
        pc_on_readable(c);
    if (!c->doomed && c->fd >= 0)
        pc_flush(c);
    proxy_reap(p);
}

static int64_t pc_handshake_expired(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    pconn_t *c = data;
    c->timer = NULL;
    log_warn("proxy: %s: no complete handshake within %d ms (%zu bytes); closing", c->peer,
             c->p->cfg.handshake_timeout_ms, c->ws ? c->hs.len : c->in.len);
    pc_doom(c);
    proxy_reap(c->p);
    return EV_NOMORE;
}

/* ---- accept ------------------------------------------------------------------- */

/* fd is admitted and its peer (addr) counted: the count goes with c. */
static void pc_create(proxy_t *p, int fd, const char *ip, int port, int ws,
                      const struct sockaddr_storage *addr)
{
    pconn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        peercap_release(&p->peers, addr);
        close(fd);
        return;
    }
    c->p = p;
    c->id = ++p->next_id;
    c->fd = fd;
    c->ws = ws;
    c->addr = *addr;
    c->counted = 1;
    c->state = ws ? PC_HTTP : PC_HANDSHAKE;
    snprintf(c->peer, sizeof(c->peer), strchr(ip, ':') ? "[%s]:%d" : "%s:%d", ip, port);
    /* TCP: a handshake at most; web: the HTTP head plus what may follow it. */
    buf_init(&c->in, ws ? WS_MAX_REQUEST + READ_CHUNK : HS_MAX + READ_CHUNK);
    buf_init(&c->hs, HS_MAX + 1);
    buf_init(&c->out, 0);
    ws_dec_init(&c->dec, 1, p->cfg.ws_max_frame);
    c->next = p->first;
    if (p->first)
        p->first->prev = c;
    p->first = c;
    p->nconns++;
    c->timer = ev_timer_add(p->loop, p->cfg.handshake_timeout_ms, pc_handshake_expired, c);
    if (!c->timer || ev_add(p->loop, fd, EV_READ, pc_on_io, c) < 0) {
        log_error("%s: cannot watch a new connection", __func__);
        pc_doom(c);
        proxy_reap(p);
    }
}

static int proxy_on_conn(void *data, int fd, const char *ip, int port,
                         const struct sockaddr_storage *addr)
{
    pc_create(data, fd, ip, port, 0, addr);
    return 0;
}

static int proxy_on_web_conn(void *data, int fd, const char *ip, int port,
                             const struct sockaddr_storage *addr)
{
    pc_create(data, fd, ip, port, 1, addr);
    return 0;
}

/* A pair holds two sockets: both count against --max-conns. */
static size_t proxy_count(void *data)
{
    const proxy_t *p = data;
    return p->nconns + 2 * p->npairs;
}

/* Watch lfd for port ws; both ports share --allow and the caps. */
static int proxy_listen(proxy_t *p, int ws, int lfd)
{
    const listener_config_t lc = {
        .name = "proxy",
        .port_name = ws ? "web " : "",
        .allow = p->cfg.allow,
        .max_conns = p->cfg.max_conns,
        .count = proxy_count,
        .peers = &p->peers,
        .peer_full = p->peer_full,
        .batch = 256,
        .on_conn = ws ? proxy_on_web_conn : proxy_on_conn,
        .data = p,
    };
    listener_init(&p->lis[ws], p->loop, lfd, &lc);
    return listener_enable(&p->lis[ws], 1);
}

static void proxy_on_signal(ev_loop_t *loop, int fd, void *data, int mask)
{
    proxy_t *p = data;
    int signo;
    while ((signo = sig_pipe_read(fd)) > 0) {
        log_info("proxy: caught signal %d, shutting down", signo);
        p->running = 0;
        ev_stop(loop);
    }
}

/* ---- public --------------------------------------------------------------------- */

void proxy_config_defaults(proxy_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "127.0.0.1";
    cfg->port = 9090;
    cfg->port_end = 9199;
    cfg->web_port = 8888;
    cfg->web_host = "0.0.0.0";
    cfg->timeout_server_ms = 600000;
    cfg->timeout_client_ms = 600000;
    cfg->handshake_timeout_ms = 10000;
    cfg->max_conns = 65536;
    /* Enough for a tuning host running many sessions, or a rack of boards
     * behind one NAT address; low enough that one host cannot take all of
     * --max-conns. */
    cfg->max_conns_per_peer = 256;
    cfg->ws_max_frame = 256u * 1024 * 1024;
    relay_config_defaults(&cfg->relay);
}

static int proxy_setup_tracker(proxy_t *p, char *err, size_t errlen)
{
    char nerr[NET_ERR_LEN] = "";
    if (net_parse_hostport(p->cfg.tracker, p->trk_host, sizeof(p->trk_host), &p->trk_port, nerr) <
        0) {
        snprintf(err, errlen, "--tracker: %s", nerr);
        return -1;
    }
    const ptrk_cb_t cb = {trk_on_up, trk_on_down, trk_on_pending};
    p->trk = ptrk_create(p->loop, p->trk_host, p->trk_port, &cb, p);
    p->trk_timer = ev_timer_add(p->loop, TRACKER_TICK_MS, trk_tick, p);
    if (!p->trk || !p->trk_timer) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static void proxy_setup_web(proxy_t *p)
{
    char nerr[NET_ERR_LEN] = "";
    p->wfd = net_listen_range(p->cfg.web_host, p->cfg.web_port, p->cfg.web_port + 1, 128,
                              &p->web_port, nerr);
    if (p->wfd < 0 || proxy_listen(p, 1, p->wfd) < 0) {
        log_warn("proxy: web port %s:%d unavailable (%s); WebSocket endpoint off, TCP proxy "
                 "continues",
                 p->cfg.web_host, p->cfg.web_port, nerr[0] ? nerr : "cannot watch it");
        if (p->wfd >= 0)
            close(p->wfd);
        p->wfd = -1;
        p->web_port = 0;
    }
}

proxy_t *proxy_create(const proxy_config_t *cfg, char *err, size_t errlen)
{
    proxy_t *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->cfg = *cfg;
    p->cfg.relay.poll_until_ns = &p->poll_until_ns;
    p->lfd = p->wfd = p->sig_fd = -1;
    peercap_init(&p->peers, cfg->max_conns_per_peer);
    snprintf(p->peer_full, sizeof(p->peer_full),
             "%zu connections from this address already (--max-conns-per-peer)",
             cfg->max_conns_per_peer);
    p->loop = ev_create(1024, EV_BACKEND_AUTO);
    if (!p->loop) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    char nerr[NET_ERR_LEN] = "";
    p->lfd = net_listen_range(cfg->host, cfg->port, cfg->port_end, 1024, &p->port, nerr);
    if (p->lfd < 0) {
        snprintf(err, errlen, "%s", nerr);
        goto fail;
    }
    if (proxy_listen(p, 0, p->lfd) < 0) {
        snprintf(err, errlen, "cannot watch the listening socket");
        goto fail;
    }
    if (cfg->web_port > 0)
        proxy_setup_web(p);
    if (cfg->tracker && *cfg->tracker && proxy_setup_tracker(p, err, errlen) < 0)
        goto fail;
    return p;
fail:
    proxy_free(p);
    return NULL;
}

int proxy_port(const proxy_t *p)
{
    return p->port;
}

int proxy_web_port(const proxy_t *p)
{
    return p->web_port;
}

int proxy_run(proxy_t *p, int sig_fd)
{
    if (sig_fd >= 0 && ev_add(p->loop, sig_fd, EV_READ, proxy_on_signal, p) < 0)
        return -1;
    p->sig_fd = sig_fd;
    log_info("bind to %s:%d", p->cfg.host, p->port);
    if (p->web_port)
        log_info("proxy: web port listening on %s:%d (WebSocket endpoint /ws)", p->cfg.web_host,
                 p->web_port);
    if (p->trk)
        log_info("proxy: registering servers with tracker %s:%d", p->trk_host, p->trk_port);
    p->running = 1;
    while (p->running) {
        int timeout = relay_poll_timeout_ms(p->poll_until_ns);
        int ran = ev_run_once(p->loop, timeout);
        if (ran < 0)
            return -1;
        /* Polling found nothing: let the peers we wait for have the CPU
         * first when they share it with us (the machine may have fewer
         * cores than busy processes). */
        if (timeout == 0 && ran == 0)
            sched_yield();
    }
    return 0;
}

void proxy_free(proxy_t *p)
{
    if (!p)
        return;
    while (p->first) {
        pconn_t *c = p->first;
        if (!c->doomed)
            pc_doom(c);
        proxy_reap(p);
    }
    while (p->pairs) {
        ppair_t *pp = p->pairs;
        p->pairs = pp->next;
        relay_free(pp->r);
        free(pp);
    }
    ptrk_free(p->trk);
    if (p->trk_timer)
        ev_timer_del(p->loop, p->trk_timer);
    dead_clear(p);
    free(p->dead);
    for (size_t i = 0; i < p->nkeys; i++)
        free(p->keys[i]);
    free(p->keys);
    free(p->servers.b);
    free(p->clients.b);
    peercap_free(&p->peers);
    if (p->lfd >= 0)
        close(p->lfd);
    if (p->wfd >= 0)
        close(p->wfd);
    if (p->loop && p->sig_fd >= 0)
        ev_del(p->loop, p->sig_fd, EV_READ);
    ev_free(p->loop);
    free(p);
}
