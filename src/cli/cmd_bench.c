/* tvmrpc bench: how fast is an RPC server, a proxy and a tracker, compared
 * with the physical limit of the same machine, measured in the same run.
 *
 *   tvmrpc bench                               start our own server, proxy and
 *                                              tracker and measure everything
 *   tvmrpc bench --host H --port P [--key K]   a server (ours, TVM's Python or C++)
 *   tvmrpc bench --proxy H:P --proxy-key K     a server behind a proxy
 *   tvmrpc bench --tracker H:P                 tracker cycles with simulated peers
 *
 * The baseline is raw loopback TCP (bench_raw.c): the exact bytes an RPC
 * operation put on the wire (read from TCP_INFO) replayed as one exchange
 * with a trivial peer; with a proxy also through a minimal relay, the floor
 * for any extra hop. The sides take turns every few operations, in an order
 * that rotates, so other load on the machine hits all alike; every figure
 * is printed as a ratio to its baseline. docs/BENCHMARKS.md explains them. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/net.h"
#include "cli/commands.h"
#include "cli/opt.h"
#include "client/bench_lib.h"
#include "tvmrpc/client.h"

#define KIB 1024ull
#define MIB (1024ull * 1024ull)
#define UPLOAD_NAME "tvmrpc-bench-upload.bin"
#define LOCAL_KEY "bench"
#define MAX_ITEMS 32
#define ERR_LEN 512

/* Raw TCP, raw TCP through a minimal relay (the floor for a proxy), the
 * server directly, the server through the proxy. */
enum { SIDE_TCP, SIDE_RELAY, SIDE_DIRECT, SIDE_PROXY, NSIDES };
static const char *const side_names[NSIDES] = {"tcp", "tcp_relay", "direct", "proxy"};
static const char *const side_titles[NSIDES] = {"raw TCP", "TCP relay", "direct", "proxy"};

typedef enum kind { K_CALL, K_COPY_TO, K_COPY_FROM, K_UPLOAD } kind_t;
static const char *const kind_names[] = {"empty_call", "copy_to", "copy_from", "upload"};

typedef struct opts {
    const char *host, *key, *tracker, *proxy, *proxy_key, *bin;
    int port, short_mode, json, verbose, rounds, calls, servers, clients, timeout_s, server_pid,
        strict;
    int budget_s, start_trials;
    double max_size_mib, trk_secs;
} opts_t;

typedef struct side {
    int on;
    tvmrpc_sess_t *s;
    int fd; /* the session's socket, for TCP_INFO; -1 if not found */
    uint64_t fn;
    tvmrpc_value_t fn_arg; /* testing.echo fallback: one int; kind NONE for testing.nop */
    tvmrpc_array_t arr;    /* one array of the largest size; copies use its prefix */
    char addr[300];
    const char *gen; /* the session's generation, kept past its close */
} side_t;

typedef struct item {
    kind_t kind;
    uint64_t size;     /* payload bytes; 0 for the empty call */
    int iters;         /* timed operations per side and round */
    uint64_t req, rep; /* wire bytes of one operation, replayed by the baseline */
    int measured;      /* req/rep from TCP_INFO (else estimated) */
    bench_samples_t t[NSIDES];
} item_t;

typedef struct trk_side {
    uint64_t cycles;
    double secs;
    bench_samples_t grant;
    double round_rate[64];
    int nrounds;
} trk_side_t;

typedef struct ctx {
    opts_t o;
    int timeout_ms;
    uint64_t max_size;
    char err[ERR_LEN];
    /* local mode: what we started */
    int local;
    bench_proc_t server, tracker, proxy, pserver;
    bench_samples_t start_ns;
    long rss_start, rss_after, hwm_after;
    pid_t rss_pid;
    /* RPC */
    bench_raw_t raw, relay;
    side_t side[NSIDES];
    item_t items[MAX_ITEMS];
    int nitems;
    uint8_t *src, *dst;
    size_t buflen;
    double rpc_busy, rpc_other;
    /* tracker */
    char tracker_addr[300];
    int trk_on;
    trk_side_t trk[2]; /* 0 tracker, 1 raw TCP */
    size_t grant_len, ack_len;
    double trk_busy, trk_other;
} ctx_t;

static int fail(ctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const ctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --verbose: what the bench is doing and since when, on stderr. */
static void note(const ctx_t *c, const char *fmt, ...)
{
    static uint64_t t0;
    if (!c->o.verbose)
        return;
    if (!t0)
        t0 = bench_now_ns();
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%8.3f s] ", (double)(bench_now_ns() - t0) / 1e9);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int fail(ctx_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    return -1;
}

/* Prefix the message already in c->err. */
static int fail_ctx(ctx_t *c, const char *what)
{
    char why[ERR_LEN];
    snprintf(why, sizeof(why), "%s", c->err);
    return fail(c, "%s: %s", what, why);
}

/* ---- local mode: our own server, tracker and proxy --------------------------- */

/* Spawn "tvmrpc CMD --host 127.0.0.1 --port P --port-end P+1 EXTRA..." and
 * wait until P accepts; *ns = fork to accepting. A port taken between
 * choosing and binding is retried with another. */
static int spawn_listening(ctx_t *c, bench_proc_t *p, const char *cmd, const char *const *extra,
                           uint64_t *ns)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        int port = bench_free_port(c->err, sizeof(c->err));
        if (port < 0)
            return -1;
        char ps[16], pe[16];
        snprintf(ps, sizeof(ps), "%d", port);
        snprintf(pe, sizeof(pe), "%d", port + 1);
        const char *argv[24] = {"tvmrpc", cmd, "--host",     "127.0.0.1",
                                "--port", ps,  "--port-end", pe};
        int n = 8;
        for (int i = 0; extra && extra[i] && n < 23; i++)
            argv[n++] = extra[i];
        argv[n] = NULL;
        uint64_t t0 = bench_now_ns();
        if (bench_spawn(p, c->o.bin, argv, c->err, sizeof(c->err)) < 0)
            return -1;
        if (bench_wait_listening(port, p->pid, 5000, c->err, sizeof(c->err)) == 0) {
            *ns = bench_now_ns() - t0;
            p->port = port;
            return 0;
        }
        char tail[300];
        bench_log_tail(p, tail, sizeof(tail));
        bench_stop(p);
        if (!strstr(tail, "bind") && !strstr(tail, "in use"))
            return fail(c, "tvmrpc %s did not start: %s [log: %s]", cmd, c->err, tail);
    }
    return fail(c, "tvmrpc %s: no free port after 3 attempts: %s", cmd, c->err);
}

/* Start-to-listening of our server, several times; the last one stays up
 * and is the direct target. */
static int local_server(ctx_t *c)
{
    static const char *const extra[] = {"--log-level", "warn", NULL};
    uint64_t ns;
    for (int i = 0; i < c->o.start_trials; i++) {
        if (i > 0)
            bench_stop(&c->server);
        if (spawn_listening(c, &c->server, "server", extra, &ns) < 0)
            return -1;
        bench_samples_push(&c->start_ns, ns);
    }
    /* Idle RSS: once the start-up has settled. */
    bench_sleep_us(20000);
    c->rss_pid = c->server.pid;
    c->rss_start = bench_status_kib(c->server.pid, "VmRSS");
    c->o.host = "127.0.0.1";
    c->o.port = c->server.port;
    c->o.key = "";
    return 0;
}

static int local_proxy(ctx_t *c)
{
    static const char *const extra[] = {"--web-port", "0", "--log-level", "warn", NULL};
    uint64_t ns;
    if (spawn_listening(c, &c->proxy, "proxy", extra, &ns) < 0)
        return -1;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", c->proxy.port);
    const char *argv[] = {"tvmrpc", "server", "--through-proxy", "--host",  "127.0.0.1",
                          "--port", ps,       "--key",           LOCAL_KEY, "--log-level",
                          "warn",   NULL};
    if (bench_spawn(&c->pserver, c->o.bin, argv, c->err, sizeof(c->err)) < 0)
        return -1;
    static char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", c->proxy.port);
    c->o.proxy = addr;
    c->o.proxy_key = LOCAL_KEY;
    return 0;
}

static int local_tracker(ctx_t *c)
{
    /* Every simulated server and client comes from 127.0.0.1. */
    static const char *const extra[] = {"--log-level", "warn", "--max-conns-per-peer", "0", NULL};
    uint64_t ns;
    if (spawn_listening(c, &c->tracker, "tracker", extra, &ns) < 0)
        return -1;
    static char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", c->tracker.port);
    c->o.tracker = addr;
    return 0;
}

static int local_start(ctx_t *c)
{
    if (local_server(c) < 0 || local_proxy(c) < 0 || local_tracker(c) < 0)
        return fail_ctx(c, "local mode");
    note(c, "started server :%d, proxy :%d (+ server through it), tracker :%d", c->server.port,
         c->proxy.port, c->tracker.port);
    return 0;
}

static void local_stop(ctx_t *c)
{
    bench_stop(&c->pserver);
    bench_stop(&c->proxy);
    bench_stop(&c->tracker);
    bench_stop(&c->server);
}

/* Idle RSS after one session: once the session's worker has exited. */
static void rss_after_session(ctx_t *c)
{
    if (c->rss_pid <= 0)
        return;
    for (int i = 0; i < 500 && bench_nchildren(c->rss_pid) > 0; i++)
        bench_sleep_us(10000);
    c->rss_after = bench_status_kib(c->rss_pid, "VmRSS");
    c->hwm_after = bench_status_kib(c->rss_pid, "VmHWM");
}

/* ---- RPC sessions --------------------------------------------------------------- */

static tvmrpc_sess_t *sess_connect(ctx_t *c, int direct, char *addr, size_t addrlen)
{
    tvmrpc_opts_t o;
    tvmrpc_opts_init(&o);
    o.timeout_ms = c->timeout_ms;
    char host[256];
    int port;
    if (direct && c->o.host) {
        snprintf(addr, addrlen, "%s:%d", c->o.host, c->o.port);
        return tvmrpc_connect_opts(c->o.host, c->o.port, c->o.key, &o, c->err, sizeof(c->err));
    }
    const char *hp = direct ? c->o.tracker : c->o.proxy;
    if (net_parse_hostport(hp, host, sizeof(host), &port, c->err) < 0)
        return NULL;
    if (direct) { /* a device the tracker grants for --key */
        snprintf(addr, addrlen, "key %s from tracker %s", c->o.key, hp);
        return tvmrpc_request_opts(host, port, c->o.key, 1, 3, &o, c->err, sizeof(c->err));
    }
    snprintf(addr, addrlen, "%s key %s", hp, c->o.proxy_key);
    /* A server behind the proxy may be re-registering after a session. */
    tvmrpc_sess_t *s = NULL;
    for (int i = 0; i < 3 && !s; i++) {
        if (i)
            bench_sleep_us(1000000);
        s = tvmrpc_connect_opts(host, port, c->o.proxy_key, &o, c->err, sizeof(c->err));
    }
    return s;
}

static const char *generation_name(const tvmrpc_sess_t *s)
{
    switch (tvmrpc_generation(s)) {
    case TVMRPC_GEN_CLASSIC:
        return "classic";
    case TVMRPC_GEN_FFI:
        return "ffi";
    default:
        return "neutral"; /* the server did not say; the client speaks classic */
    }
}

/* The empty call: testing.nop, or testing.echo(0) where nop is missing. */
static int find_call(ctx_t *c, side_t *sd)
{
    sd->fn_arg = tvmrpc_v_none();
    int rc = tvmrpc_get_func(sd->s, "testing.nop", &sd->fn);
    if (rc == TVMRPC_ERR_NOT_FOUND) {
        sd->fn_arg = tvmrpc_v_int(0);
        rc = tvmrpc_get_func(sd->s, "testing.echo", &sd->fn);
    }
    return rc < 0 ? fail(c, "no testing.nop or testing.echo: %s", tvmrpc_last_error(sd->s)) : 0;
}

static int side_open(ctx_t *c, int k)
{
    side_t *sd = &c->side[k];
    bench_fdset_t before;
    bench_fdset_snap(&before);
    sd->s = sess_connect(c, k == SIDE_DIRECT, sd->addr, sizeof(sd->addr));
    if (!sd->s)
        return fail_ctx(c, side_names[k]);
    sd->on = 1;
    sd->fd = bench_fdset_new_socket(&before);
    sd->gen = generation_name(sd->s);
    int64_t shape[1] = {(int64_t)c->max_size};
    tvmrpc_device_t cpu = {1, 0};
    tvmrpc_dtype_t u8 = {1, 8, 1};
    if (find_call(c, sd) < 0)
        return fail_ctx(c, side_names[k]);
    if (tvmrpc_array_alloc(sd->s, cpu, 1, shape, u8, NULL, &sd->arr) < 0)
        return fail(c, "%s: cannot allocate %llu bytes: %s", side_names[k],
                    (unsigned long long)c->max_size, tvmrpc_last_error(sd->s));
    return 0;
}

static void side_close(side_t *sd)
{
    if (!sd->s)
        return;
    if (sd->arr.data)
        tvmrpc_array_free(sd->s, &sd->arr);
    if (sd->fn)
        tvmrpc_free_handle(sd->s, sd->fn, TVMRPC_FUNC);
    tvmrpc_remove(sd->s, UPLOAD_NAME); /* absent when no upload ran: error ignored */
    tvmrpc_close(sd->s);
    sd->s = NULL;
}

/* ---- operations ------------------------------------------------------------------ */

static int rpc_op(side_t *sd, const item_t *it, uint8_t *src, uint8_t *dst)
{
    tvmrpc_array_t view = sd->arr;
    view.shape[0] = (int64_t)it->size;
    switch (it->kind) {
    case K_CALL:
        return tvmrpc_call(sd->s, sd->fn, &sd->fn_arg, sd->fn_arg.kind == TVMRPC_NONE ? 0 : 1,
                           NULL);
    case K_COPY_TO:
        return tvmrpc_array_copy_from_host(sd->s, &view, src, it->size);
    case K_COPY_FROM:
        return tvmrpc_array_copy_to_host(sd->s, &view, dst, it->size);
    case K_UPLOAD:
        return tvmrpc_upload(sd->s, src, it->size, UPLOAD_NAME);
    }
    return TVMRPC_ERR_ARG;
}

/* One operation of an item on side k; fd is the raw connection of a TCP side. */
static int side_op(ctx_t *c, int k, item_t *it, int fd)
{
    if (k < SIDE_DIRECT)
        return bench_raw_exchange(fd, c->src, it->req, c->dst, it->rep, c->err, sizeof(c->err));
    if (rpc_op(&c->side[k], it, c->src, c->dst) == 0)
        return 0;
    return fail(c, "%s %s of %llu bytes: %s", side_names[k], kind_names[it->kind],
                (unsigned long long)it->size, tvmrpc_last_error(c->side[k].s));
}

/* n operations on side k, each timed unless this is the warm-up. */
static int side_ops(ctx_t *c, int k, item_t *it, int fd, int n, int timed)
{
    for (int i = 0; i < n; i++) {
        uint64_t t0 = bench_now_ns();
        if (side_op(c, k, it, fd) < 0)
            return -1;
        if (timed)
            bench_samples_push(&it->t[k], bench_now_ns() - t0);
    }
    return 0;
}

/* Fresh raw connections for the TCP sides (their setup is not timed). */
static int raw_open_all(ctx_t *c, item_t *it, int *fd)
{
    if (it->req > c->buflen || it->rep > c->buflen)
        return fail(c, "%s of %llu bytes moves more than the bench's buffers", kind_names[it->kind],
                    (unsigned long long)it->size);
    for (int k = 0; k < SIDE_DIRECT; k++) {
        const bench_raw_t *to = k == SIDE_TCP ? &c->raw : &c->relay;
        if (c->side[k].on && (fd[k] = bench_raw_open(to, it->req, it->rep, c->timeout_ms, c->err,
                                                     sizeof(c->err))) < 0)
            return -1;
    }
    return 0;
}

/* One round of an item: a warm-up operation per side, then it->iters timed
 * ones per side, the sides taking turns every `chunk` operations (the
 * order rotating), so a change in machine load hits all of them. */
static int item_round(ctx_t *c, item_t *it, int r)
{
    int fd[NSIDES] = {-1, -1, -1, -1};
    int chunk = it->kind == K_CALL ? 25 : 1, rc = raw_open_all(c, it, fd), turn = r;
    for (int done = -1; rc == 0 && done < it->iters; turn++) {
        int n = done < 0 ? 1 : it->iters - done < chunk ? it->iters - done : chunk;
        for (int j = 0; j < NSIDES && rc == 0; j++) {
            int k = (j + turn) % NSIDES;
            if (c->side[k].on)
                rc = side_ops(c, k, it, fd[k], n, done >= 0);
        }
        done = done < 0 ? 0 : done + n;
    }
    for (int k = 0; k < SIDE_DIRECT; k++)
        if (fd[k] >= 0)
            close(fd[k]);
    return rc;
}

/* Bytes one operation puts on the wire, each way, from the session's
 * TCP_INFO (after a first, warming, operation). Without it (no RPC target,
 * or no counters): rough estimates, flagged in the output. */
static int wire_bytes(ctx_t *c, int k, item_t *it)
{
    uint64_t s0, r0, s1, r1;
    side_t *sd = k >= 0 ? &c->side[k] : NULL;
    static const uint64_t small = 32, overhead = 100;
    it->req = it->kind == K_CALL ? 24 : it->kind == K_COPY_FROM ? overhead : it->size + overhead;
    it->rep = it->kind == K_COPY_FROM ? it->size + overhead : small;
    if (!sd)
        return 0;
    if (rpc_op(sd, it, c->src, c->dst) < 0)
        return fail(c, "%s %s: %s", side_names[k], kind_names[it->kind], tvmrpc_last_error(sd->s));
    if (sd->fd < 0 || bench_tcp_bytes(sd->fd, &s0, &r0) < 0)
        return 0;
    if (rpc_op(sd, it, c->src, c->dst) < 0)
        return fail(c, "%s %s: %s", side_names[k], kind_names[it->kind], tvmrpc_last_error(sd->s));
    if (bench_tcp_bytes(sd->fd, &s1, &r1) == 0 && s1 > s0 && r1 > r0) {
        it->req = s1 - s0;
        it->rep = r1 - r0;
        it->measured = 1;
    }
    return 0;
}

/* Copy the largest size there and back once: the bench must not time a
 * copy that does not work. */
static int verify_copy(ctx_t *c, int k)
{
    side_t *sd = &c->side[k];
    memset(c->dst, 0, c->max_size);
    if (tvmrpc_array_copy_from_host(sd->s, &sd->arr, c->src, c->max_size) < 0 ||
        tvmrpc_array_copy_to_host(sd->s, &sd->arr, c->dst, c->max_size) < 0)
        return fail(c, "%s: copy of %llu bytes: %s", side_names[k], (unsigned long long)c->max_size,
                    tvmrpc_last_error(sd->s));
    if (memcmp(c->src, c->dst, c->max_size) != 0)
        return fail(c, "%s: %llu bytes copied there and back came back different", side_names[k],
                    (unsigned long long)c->max_size);
    return 0;
}

/* ---- the plan --------------------------------------------------------------------- */

static int iters_for(const ctx_t *c, uint64_t size)
{
    /* Enough bytes per round that a batch outlasts scheduling noise, few
     * enough that a full run stays around half a minute. */
    uint64_t budget = c->o.short_mode ? 16 * MIB : 32 * MIB;
    int lo = c->o.short_mode ? 2 : 3, hi = c->o.short_mode ? 50 : 200;
    uint64_t n = budget / (size ? size : 1);
    return n < (uint64_t)lo ? lo : n > (uint64_t)hi ? hi : (int)n;
}

static void add_item(ctx_t *c, kind_t kind, uint64_t size)
{
    if (c->nitems == MAX_ITEMS || size > c->max_size)
        return;
    item_t *it = &c->items[c->nitems++];
    memset(it, 0, sizeof(*it));
    it->kind = kind;
    it->size = size;
    it->iters = kind == K_CALL ? c->o.calls : iters_for(c, size);
}

static void plan(ctx_t *c)
{
    static const uint64_t full[] = {4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB,
                                    1 * MIB, 4 * MIB,  16 * MIB, 64 * MIB};
    static const uint64_t quick[] = {4 * KIB, 1 * MIB, 16 * MIB};
    static const uint64_t up_full[] = {64 * KIB, 1 * MIB, 16 * MIB, 64 * MIB};
    static const uint64_t up_quick[] = {1 * MIB};
    const uint64_t *sz = c->o.short_mode ? quick : full;
    size_t nsz = c->o.short_mode ? 3 : 8;
    const uint64_t *up = c->o.short_mode ? up_quick : up_full;
    size_t nup = c->o.short_mode ? 1 : 4;
    add_item(c, K_CALL, 0);
    for (size_t i = 0; i < nsz; i++)
        add_item(c, K_COPY_TO, sz[i]);
    for (size_t i = 0; i < nsz; i++)
        add_item(c, K_COPY_FROM, sz[i]);
    for (size_t i = 0; i < nup; i++)
        add_item(c, K_UPLOAD, up[i]);
}

static void fill_pattern(uint8_t *p, size_t n)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
}

static int rpc_prepare(ctx_t *c)
{
    c->buflen = c->max_size + MIB; /* room for the protocol's headers */
    c->src = malloc(c->buflen);
    c->dst = malloc(c->buflen);
    if (!c->src || !c->dst)
        return fail(c, "cannot allocate 2 x %zu bytes", c->buflen);
    fill_pattern(c->src, c->buflen);
    memset(c->dst, 0, c->buflen);
    for (int k = SIDE_DIRECT; k < NSIDES; k++) {
        int want = k == SIDE_DIRECT ? c->o.host || (c->o.tracker && *c->o.key) : !!c->o.proxy;
        if (want && (side_open(c, k) < 0 || verify_copy(c, k) < 0))
            return -1;
        if (want)
            note(c, "%s session open, copy verified", side_names[k]);
    }
    plan(c);
    int first = c->side[SIDE_DIRECT].on ? SIDE_DIRECT : c->side[SIDE_PROXY].on ? SIDE_PROXY : -1;
    for (int i = 0; i < c->nitems; i++)
        if (wire_bytes(c, first, &c->items[i]) < 0)
            return -1;
    note(c, "wire bytes of %d operations measured", c->nitems);
    return 0;
}

/* Rounds of every item on every side. */
static int rpc_measure(ctx_t *c)
{
    c->side[SIDE_TCP].on = 1;
    if (c->side[SIDE_PROXY].on) {
        if (bench_raw_relay_start(&c->raw, &c->relay, c->err, sizeof(c->err)) < 0)
            return -1;
        c->side[SIDE_RELAY].on = 1;
    }
    bench_cpu_snap_t a, b;
    bench_cpu_snap(&a);
    for (int r = 0; r < c->o.rounds; r++) {
        note(c, "RPC round %d", r + 1);
        for (int i = 0; i < c->nitems; i++)
            if (item_round(c, &c->items[i], r) < 0)
                return -1;
    }
    bench_cpu_snap(&b);
    bench_cpu_delta(&a, &b, &c->rpc_busy, &c->rpc_other);
    return 0;
}

/* ---- tracker ------------------------------------------------------------------------ */

#define TRK_RAMP_S 0.05 /* each round skips the burst of simultaneous first REQUESTs */

static int trk_round(ctx_t *c, bench_trk_t *t, trk_side_t *ts, double secs)
{
    bench_trk_round_t r = {.warm_s = TRK_RAMP_S, .secs = secs, .grant_ns = &ts->grant};
    if (bench_trk_run(t, &r, c->err, sizeof(c->err)) < 0)
        return -1;
    ts->cycles += r.cycles;
    ts->secs += secs;
    if (ts->nrounds < 64)
        ts->round_rate[ts->nrounds++] = (double)r.cycles / secs;
    return 0;
}

static int trk_interleave(ctx_t *c, bench_trk_t *t[2])
{
    bench_cpu_snap_t a, b;
    bench_cpu_snap(&a);
    for (int r = 0; r < c->o.rounds; r++) {
        for (int j = 0; j < 2; j++) {
            int k = (j + r) % 2;
            if (trk_round(c, t[k], &c->trk[k], c->o.trk_secs) < 0)
                return fail_ctx(c, k ? "raw TCP tracker baseline" : "tracker");
        }
    }
    bench_cpu_snap(&b);
    bench_cpu_delta(&a, &b, &c->trk_busy, &c->trk_other);
    return 0;
}

static int trk_measure(ctx_t *c)
{
    char host[256], key[32];
    int port, eport;
    pid_t echo = 0;
    bench_trk_t *t[2] = {NULL, NULL};
    bench_trk_round_t warm = {.warm_s = TRK_RAMP_S, .secs = 0.1};
    if (net_parse_hostport(c->o.tracker, host, sizeof(host), &port, c->err) < 0)
        return fail_ctx(c, "--tracker");
    snprintf(c->tracker_addr, sizeof(c->tracker_addr), "%s", c->o.tracker);
    snprintf(key, sizeof(key), "bench%d", (int)getpid()); /* apart from real devices */
    int rc = -1;
    int setup_ms = c->timeout_ms > 0 ? c->timeout_ms : 30000;
    t[0] = bench_trk_open(host, port, 0, key, c->o.servers, c->o.clients, setup_ms, c->err,
                          sizeof(c->err));
    /* A short unmeasured run warms both sides and tells the grant's size. */
    if (!t[0] || bench_trk_run(t[0], &warm, c->err, sizeof(c->err)) < 0)
        goto out;
    bench_trk_sizes(t[0], &c->grant_len, &c->ack_len);
    if (bench_trk_echo_start(c->grant_len, c->ack_len, key, &echo, &eport, c->err, sizeof(c->err)) <
        0)
        goto out;
    t[1] = bench_trk_open("127.0.0.1", eport, 1, key, c->o.servers, c->o.clients, setup_ms, c->err,
                          sizeof(c->err));
    if (!t[1] || bench_trk_run(t[1], &warm, c->err, sizeof(c->err)) < 0)
        goto out;
    note(c, "tracker and raw TCP drivers ready (%d servers, %d clients each)", c->o.servers,
         c->o.clients);
    rc = trk_interleave(c, t);
    c->trk_on = rc == 0;
out:
    bench_trk_close(t[0]);
    bench_trk_close(t[1]);
    if (echo > 0) {
        kill(echo, SIGKILL);
        waitpid(echo, NULL, 0);
    }
    return rc < 0 ? fail_ctx(c, "tracker") : 0;
}

/* ---- results ------------------------------------------------------------------------- */

static double us(double ns)
{
    return ns / 1e3;
}

/* MiB/s of an item's median (p = 50) or best (p = 0) operation on side k. */
static double mib_s(item_t *it, int k, double p)
{
    double ns = bench_samples_pct(&it->t[k], p);
    return ns > 0 ? (double)it->size / MIB / (ns / 1e9) : 0;
}

/* a / b, or NAN when either is missing. */
static double ratio(double a, double b)
{
    return a > 0 && b > 0 ? a / b : NAN;
}

static item_t *find_item(ctx_t *c, kind_t kind, uint64_t size)
{
    for (int i = 0; i < c->nitems; i++)
        if (c->items[i].kind == kind && (c->items[i].size == size || !size))
            return &c->items[i];
    return NULL;
}

static void size_label(char *out, size_t outlen, uint64_t n)
{
    if (n >= MIB && n % MIB == 0)
        snprintf(out, outlen, "%lluMiB", (unsigned long long)(n / MIB));
    else if (n >= KIB && n % KIB == 0)
        snprintf(out, outlen, "%lluKiB", (unsigned long long)(n / KIB));
    else
        snprintf(out, outlen, "%lluB", (unsigned long long)n);
}

typedef struct check {
    char name[64];
    double value;
    const char *op; /* "<=", ">=", "<" */
    double target;
    int ok;
} check_t;

static void add_check(check_t *v, int *n, const char *name, double value, const char *op,
                      double target)
{
    if (*n >= 16 || isnan(value) || value <= 0)
        return;
    check_t *k = &v[(*n)++];
    snprintf(k->name, sizeof(k->name), "%s", name);
    k->value = value;
    k->op = op;
    k->target = target;
    k->ok = op[0] == '<' ? (op[1] == '=' ? value <= target : value < target) : value >= target;
}

/* Copy checks on the largest size (the issues' 64 MiB by default). */
static void copy_checks(ctx_t *c, check_t *v, int *n)
{
    static const kind_t kinds[] = {K_COPY_TO, K_COPY_FROM};
    char name[64], sz[32];
    size_label(sz, sizeof(sz), c->max_size);
    for (int i = 0; i < 2; i++) {
        item_t *it = find_item(c, kinds[i], c->max_size);
        if (!it)
            continue;
        snprintf(name, sizeof(name), "%s_%s_vs_tcp", kind_names[kinds[i]], sz);
        add_check(v, n, name, ratio(mib_s(it, SIDE_DIRECT, 50), mib_s(it, SIDE_TCP, 50)),
                  ">=", 0.8);
        snprintf(name, sizeof(name), "proxy_%s_%s_vs_direct", kind_names[kinds[i]], sz);
        add_check(v, n, name, ratio(mib_s(it, SIDE_PROXY, 50), mib_s(it, SIDE_DIRECT, 50)),
                  ">=", 0.8);
    }
}

static int collect_checks(ctx_t *c, check_t *v)
{
    int n = 0;
    item_t *call = find_item(c, K_CALL, 0);
    if (call) {
        double t = bench_samples_pct(&call->t[SIDE_TCP], 50);
        double d = bench_samples_pct(&call->t[SIDE_DIRECT], 50);
        double p = bench_samples_pct(&call->t[SIDE_PROXY], 50);
        add_check(v, &n, "empty_call_p50_vs_tcp", ratio(d, t), "<=", 1.3);
        add_check(v, &n, "proxy_empty_call_p50_vs_direct", ratio(p, d), "<=", 1.5);
    }
    copy_checks(c, v, &n);
    if (c->rss_start > 0) {
        long rss = c->rss_after > c->rss_start ? c->rss_after : c->rss_start;
        add_check(v, &n, "server_idle_rss_kib", (double)rss, "<", 4096);
    }
    if (c->start_ns.n)
        add_check(v, &n, "server_start_ms_median", bench_samples_pct(&c->start_ns, 50) / 1e6, "<",
                  50);
    /* Issue 3's tracker target holds for its load: 1000 servers, 64 clients. */
    if (c->trk_on && c->o.servers >= 1000 && c->o.clients >= 64)
        add_check(v, &n, "tracker_cycles_per_s", (double)c->trk[0].cycles / c->trk[0].secs,
                  ">=", 20000);
    return n;
}

/* ---- JSON ------------------------------------------------------------------------------ */

static void jnum(json_t *o, const char *k, double v)
{
    /* Three significant decimals are plenty; NaN/inf are not JSON. */
    json_object_set(o, k, isfinite(v) ? json_new_double(round(v * 1000) / 1000) : json_new_null());
}

static void jint(json_t *o, const char *k, int64_t v)
{
    json_object_set(o, k, json_new_int(v));
}

static void jstr(json_t *o, const char *k, const char *v)
{
    json_object_set(o, k, json_new_string(v));
}

static json_t *jsub(json_t *o, const char *k)
{
    json_t *sub = json_new_object();
    json_object_set(o, k, sub);
    return sub;
}

static void json_call(ctx_t *c, json_t *root)
{
    item_t *it = find_item(c, K_CALL, 0);
    if (!it)
        return;
    json_t *o = jsub(root, "empty_call");
    jint(o, "req_bytes", (int64_t)it->req);
    jint(o, "rep_bytes", (int64_t)it->rep);
    json_object_set(o, "bytes_measured", json_new_bool(it->measured));
    double p50[NSIDES], p99[NSIDES];
    for (int k = 0; k < NSIDES; k++) {
        p50[k] = bench_samples_pct(&it->t[k], 50);
        p99[k] = bench_samples_pct(&it->t[k], 99);
        if (!it->t[k].n)
            continue;
        json_t *s = jsub(o, side_names[k]);
        jnum(s, "p50_us", us(p50[k]));
        jnum(s, "p99_us", us(p99[k]));
        jint(s, "samples", (int64_t)it->t[k].n);
        if (k == SIDE_TCP)
            continue;
        jnum(s, "p50_vs_tcp", ratio(p50[k], p50[SIDE_TCP]));
        jnum(s, "p99_vs_tcp", ratio(p99[k], p99[SIDE_TCP]));
        if (k == SIDE_PROXY) {
            jnum(s, "p50_vs_direct", ratio(p50[k], p50[SIDE_DIRECT]));
            jnum(s, "p99_vs_direct", ratio(p99[k], p99[SIDE_DIRECT]));
        }
    }
}

static void json_tput(ctx_t *c, json_t *root, kind_t kind)
{
    json_t *arr = json_new_array();
    json_object_set(root, kind_names[kind], arr);
    for (int i = 0; i < c->nitems; i++) {
        item_t *it = &c->items[i];
        if (it->kind != kind)
            continue;
        json_t *o = json_new_object();
        json_array_push(arr, o);
        jint(o, "bytes", (int64_t)it->size);
        jint(o, "req_bytes", (int64_t)it->req);
        jint(o, "rep_bytes", (int64_t)it->rep);
        for (int k = 0; k < NSIDES; k++) {
            if (!it->t[k].n)
                continue;
            json_t *s = jsub(o, side_names[k]);
            jnum(s, "mib_s", mib_s(it, k, 50));
            jnum(s, "best_mib_s", mib_s(it, k, 0));
            jint(s, "samples", (int64_t)it->t[k].n);
            if (k != SIDE_TCP)
                jnum(s, "vs_tcp", ratio(mib_s(it, k, 50), mib_s(it, SIDE_TCP, 50)));
            if (k == SIDE_PROXY)
                jnum(s, "vs_direct", ratio(mib_s(it, k, 50), mib_s(it, SIDE_DIRECT, 50)));
        }
    }
}

static double trk_rate(const trk_side_t *t)
{
    return t->secs > 0 ? (double)t->cycles / t->secs : 0;
}

static void rate_range(const trk_side_t *t, double *lo, double *hi)
{
    *lo = *hi = 0;
    for (int i = 0; i < t->nrounds; i++) {
        *lo = i == 0 || t->round_rate[i] < *lo ? t->round_rate[i] : *lo;
        *hi = t->round_rate[i] > *hi ? t->round_rate[i] : *hi;
    }
}

static void json_tracker(ctx_t *c, json_t *root)
{
    if (!c->trk_on)
        return;
    json_t *o = jsub(root, "tracker");
    jint(o, "servers", c->o.servers);
    jint(o, "clients", c->o.clients);
    jint(o, "grant_bytes", (int64_t)c->grant_len);
    for (int k = 0; k < 2; k++) {
        trk_side_t *t = &c->trk[k];
        json_t *s = jsub(o, k ? "tcp" : "tracker");
        double lo, hi;
        rate_range(t, &lo, &hi);
        jnum(s, "cycles_per_s", trk_rate(t));
        jnum(s, "round_min", lo);
        jnum(s, "round_max", hi);
        jnum(s, "grant_p50_us", us(bench_samples_pct(&t->grant, 50)));
        jnum(s, "grant_p99_us", us(bench_samples_pct(&t->grant, 99)));
        jint(s, "cycles", (int64_t)t->cycles);
    }
    jnum(o, "vs_tcp", ratio(trk_rate(&c->trk[0]), trk_rate(&c->trk[1])));
}

static void json_server(ctx_t *c, json_t *root)
{
    if (!c->start_ns.n && c->rss_pid <= 0)
        return;
    json_t *o = jsub(root, "server");
    if (c->start_ns.n) {
        json_t *s = jsub(o, "start_ms");
        jnum(s, "min", bench_samples_min(&c->start_ns) / 1e6);
        jnum(s, "median", bench_samples_pct(&c->start_ns, 50) / 1e6);
        jnum(s, "max", bench_samples_pct(&c->start_ns, 100) / 1e6);
        jint(s, "trials", (int64_t)c->start_ns.n);
    }
    jint(o, "rss_kib_start", c->rss_start);
    jint(o, "rss_kib_after_session", c->rss_after);
    jint(o, "hwm_kib", c->hwm_after);
}

static void json_head(ctx_t *c, json_t *root)
{
    jstr(root, "bench", "tvmrpc");
    jstr(root, "version", TVMRPC_VERSION);
    jstr(root, "mode", c->o.short_mode ? "short" : "full");
    jint(root, "rounds", c->o.rounds);
    json_t *m = jsub(root, "machine");
    jint(m, "cpus", sysconf(_SC_NPROCESSORS_ONLN));
    jnum(m, "rpc_busy_pct", c->rpc_busy);
    jnum(m, "rpc_other_pct", c->rpc_other);
    jnum(m, "tracker_busy_pct", c->trk_busy);
    jnum(m, "tracker_other_pct", c->trk_other);
    json_t *t = jsub(root, "targets");
    json_object_set(t, "local", json_new_bool(c->local));
    for (int k = SIDE_DIRECT; k < NSIDES; k++) {
        if (!c->side[k].on)
            continue;
        char gk[32];
        jstr(t, side_names[k], c->side[k].addr);
        snprintf(gk, sizeof(gk), "%s_generation", side_names[k]);
        jstr(t, gk, c->side[k].gen);
    }
    if (c->trk_on)
        jstr(t, "tracker", c->tracker_addr);
}

static int print_json(ctx_t *c, const check_t *v, int n)
{
    json_t *root = json_new_object();
    json_head(c, root);
    json_call(c, root);
    json_tput(c, root, K_COPY_TO);
    json_tput(c, root, K_COPY_FROM);
    json_tput(c, root, K_UPLOAD);
    json_tracker(c, root);
    json_server(c, root);
    json_t *arr = json_new_array();
    json_object_set(root, "checks", arr);
    int ok = 1;
    for (int i = 0; i < n; i++) {
        json_t *o = json_new_object();
        json_array_push(arr, o);
        char target[32];
        snprintf(target, sizeof(target), "%s %g", v[i].op, v[i].target);
        jstr(o, "name", v[i].name);
        jnum(o, "value", v[i].value);
        jstr(o, "target", target);
        json_object_set(o, "ok", json_new_bool(v[i].ok));
        ok &= v[i].ok;
    }
    json_object_set(root, "ok", json_new_bool(ok));
    char *text = json_dumps(root);
    json_free(root);
    if (!text)
        return fail(c, "out of memory writing JSON");
    printf("%s\n", text);
    free(text);
    return 0;
}

/* ---- table ------------------------------------------------------------------------------ */

static void print_head(ctx_t *c)
{
    printf("tvmrpc bench %s (%s: %d rounds; baseline: raw loopback TCP, same bytes, same run)\n",
           TVMRPC_VERSION, c->o.short_mode ? "short" : "full", c->o.rounds);
    for (int k = SIDE_DIRECT; k < NSIDES; k++)
        if (c->side[k].on)
            printf("  %-8s %s (%s generation reply)%s\n", side_names[k], c->side[k].addr,
                   c->side[k].gen, c->local ? ", started by the bench" : "");
    if (c->trk_on)
        printf("  %-8s %s%s\n", "tracker", c->tracker_addr,
               c->local ? ", started by the bench" : "");
    printf("  CPU: %ld cores; during the RPC rounds processes used %.0f%% of a core, %.0f%% "
           "of it by processes this benchmark did not start\n",
           sysconf(_SC_NPROCESSORS_ONLN), c->rpc_busy, c->rpc_other);
    if (c->rpc_other > 25 || c->trk_other > 25)
        printf("  warning: other processes took a share of the CPUs: absolute figures are "
               "disturbed, the interleaved ratios less so\n");
    printf("\n");
}

static void print_call(ctx_t *c)
{
    item_t *it = find_item(c, K_CALL, 0);
    if (!it)
        return;
    printf("empty call round trip (%llu B out, %llu B back%s)\n", (unsigned long long)it->req,
           (unsigned long long)it->rep, it->measured ? "" : ", estimated");
    printf("  %-10s %9s %9s %9s %9s %11s %11s\n", "", "p50 us", "p99 us", "p50 xTCP", "p99 xTCP",
           "p50 xdirect", "p99 xdirect");
    double p50[NSIDES], p99[NSIDES];
    for (int k = 0; k < NSIDES; k++) {
        p50[k] = bench_samples_pct(&it->t[k], 50);
        p99[k] = bench_samples_pct(&it->t[k], 99);
    }
    for (int k = 0; k < NSIDES; k++) {
        if (!it->t[k].n)
            continue;
        printf("  %-10s %9.1f %9.1f", side_titles[k], us(p50[k]), us(p99[k]));
        if (k != SIDE_TCP)
            printf(" %9.2f %9.2f", ratio(p50[k], p50[SIDE_TCP]), ratio(p99[k], p99[SIDE_TCP]));
        if (k == SIDE_PROXY && it->t[SIDE_DIRECT].n)
            printf(" %11.2f %11.2f", ratio(p50[k], p50[SIDE_DIRECT]),
                   ratio(p99[k], p99[SIDE_DIRECT]));
        printf("\n");
    }
    printf("\n");
}

/* One row: "median [best]" and the ratios of every side that ran. */
static void print_tput_row(ctx_t *c, item_t *it)
{
    char sz[32], cell[32];
    size_label(sz, sizeof(sz), it->size);
    printf("  %-7s", sz);
    double t = mib_s(it, SIDE_TCP, 50);
    for (int k = 0; k < NSIDES; k++) {
        if (!c->side[k].on)
            continue;
        snprintf(cell, sizeof(cell), "%.0f [%.0f]", mib_s(it, k, 50), mib_s(it, k, 0));
        printf(" %15s", cell);
        if (k != SIDE_TCP)
            printf(" %5.2f", ratio(mib_s(it, k, 50), t));
        if (k == SIDE_PROXY && c->side[SIDE_DIRECT].on)
            printf(" %7.2f", ratio(mib_s(it, k, 50), mib_s(it, SIDE_DIRECT, 50)));
    }
    printf("\n");
}

static void print_tput(ctx_t *c, kind_t kind, const char *title)
{
    if (!find_item(c, kind, 0))
        return;
    printf("%s (MiB/s, median [best])\n  %-7s", title, "size");
    for (int k = 0; k < NSIDES; k++) {
        if (!c->side[k].on)
            continue;
        printf(" %15s", side_titles[k]);
        if (k != SIDE_TCP)
            printf(" %5s", "xTCP");
        if (k == SIDE_PROXY && c->side[SIDE_DIRECT].on)
            printf(" %7s", "xdirect");
    }
    printf("\n");
    for (int i = 0; i < c->nitems; i++)
        if (c->items[i].kind == kind)
            print_tput_row(c, &c->items[i]);
    printf("\n");
}

static void print_tracker(ctx_t *c)
{
    if (!c->trk_on)
        return;
    printf("tracker: request -> grant -> release cycles (%d simulated servers, %d clients, "
           "closed loop; CPU %.0f%%, %.0f%% not ours)\n",
           c->o.servers, c->o.clients, c->trk_busy, c->trk_other);
    printf("  %-10s %10s %21s %13s %13s\n", "", "cycles/s", "rounds min..max", "grant p50 us",
           "grant p99 us");
    for (int k = 0; k < 2; k++) {
        double lo, hi;
        rate_range(&c->trk[k], &lo, &hi);
        printf("  %-10s %10.0f %10.0f..%-10.0f %13.1f %13.1f\n", k ? "raw TCP" : "tracker",
               trk_rate(&c->trk[k]), lo, hi, us(bench_samples_pct(&c->trk[k].grant, 50)),
               us(bench_samples_pct(&c->trk[k].grant, 99)));
    }
    printf("  tracker / raw TCP: %.2f\n\n", ratio(trk_rate(&c->trk[0]), trk_rate(&c->trk[1])));
}

static void print_server(ctx_t *c)
{
    if (!c->start_ns.n && c->rss_pid <= 0)
        return;
    printf("server process\n");
    if (c->start_ns.n)
        printf("  start to listening: min %.1f ms, median %.1f ms, max %.1f ms (%zu starts)\n",
               bench_samples_min(&c->start_ns) / 1e6, bench_samples_pct(&c->start_ns, 50) / 1e6,
               bench_samples_pct(&c->start_ns, 100) / 1e6, c->start_ns.n);
    printf("  RSS: %.2f MiB after start, %.2f MiB after one session (peak %.2f MiB)\n\n",
           c->rss_start / 1024.0, c->rss_after / 1024.0, c->hwm_after / 1024.0);
}

static void print_table(ctx_t *c, const check_t *v, int n)
{
    print_head(c);
    print_call(c);
    print_tput(c, K_COPY_TO, "array copy to the server");
    print_tput(c, K_COPY_FROM, "array copy from the server");
    print_tput(c, K_UPLOAD, "upload (tvm.rpc.server.upload)");
    print_tracker(c);
    print_server(c);
    if (n)
        printf("targets\n");
    for (int i = 0; i < n; i++)
        printf("  %-6s %-34s %10.2f %s %g\n", v[i].ok ? "[ok]" : "[MISS]", v[i].name, v[i].value,
               v[i].op, v[i].target);
}

/* ---- command ---------------------------------------------------------------------------- */

static void on_alarm(int sig)
{
    static const char msg[] = "tvmrpc bench: time budget (--budget) exceeded; aborting\n";
    ssize_t unused = write(2, msg, sizeof(msg) - 1);
    (void)unused;
    _exit(sig == SIGALRM ? 3 : 130); /* our children die with us (PR_SET_PDEATHSIG) */
}

static void defaults(opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->key = "";
    o->port = 9090;
    o->timeout_s = 0;
    o->rounds = -1;
    o->calls = -1;
    o->servers = -1;
    o->clients = -1;
    o->trk_secs = -1;
    o->start_trials = -1;
    o->budget_s = -1;
    o->max_size_mib = -1;
}

/* Unset knobs take the mode's default. */
static void mode_defaults(opts_t *o)
{
    int s = o->short_mode;
    if (o->rounds < 0)
        o->rounds = s ? 2 : 5;
    if (o->calls < 0)
        o->calls = s ? 200 : 1000;
    if (o->servers < 0)
        o->servers = s ? 50 : 1000;
    if (o->clients < 0)
        o->clients = s ? 8 : 64;
    if (o->trk_secs < 0)
        o->trk_secs = s ? 0.1 : 1.0;
    if (o->start_trials < 0)
        o->start_trials = s ? 3 : 10;
    if (o->budget_s < 0)
        o->budget_s = s ? 120 : 600;
    /* The issues' 64 MiB in a full run; CI's short run stays at a few seconds. */
    if (o->max_size_mib < 0)
        o->max_size_mib = s ? 16 : 64;
}

static int check_opts(ctx_t *c, int port_given)
{
    opts_t *o = &c->o;
    if (o->host && o->tracker && *o->key)
        return fail(c, "--tracker with --key asks the tracker for the server; drop --host");
    if (o->proxy && !o->proxy_key)
        return fail(c, "--proxy needs --proxy-key (the key its server registered with)");
    if (port_given && !o->host)
        return fail(c, "--port needs --host");
    if (o->max_size_mib < 4.0 / 1024 || o->max_size_mib > 1024)
        return fail(c, "--max-size must be between 0.004 and 1024 MiB");
    if (o->servers < o->clients || o->clients < 1)
        return fail(c, "--servers must be at least --clients, and --clients at least 1");
    if (o->trk_secs <= 0 || o->trk_secs > 60)
        return fail(c, "--tracker-secs must be in (0, 60]");
    return 0;
}

static const char *self_exe(void)
{
    static char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
    if (n <= 0)
        return "tvmrpc";
    path[n] = '\0';
    return path;
}

static int run(ctx_t *c)
{
    c->local = !c->o.host && !c->o.tracker && !c->o.proxy;
    if (bench_raw_start(&c->raw, c->err, sizeof(c->err)) < 0)
        return -1;
    note(c, "raw TCP peer on port %d", c->raw.port);
    if (c->local && local_start(c) < 0)
        return -1;
    if (c->o.server_pid > 0) {
        c->rss_pid = c->o.server_pid;
        c->rss_start = bench_status_kib(c->rss_pid, "VmRSS");
    }
    if (rpc_prepare(c) < 0 || rpc_measure(c) < 0)
        return -1;
    note(c, "closing the sessions");
    for (int k = SIDE_DIRECT; k < NSIDES; k++)
        if (c->side[k].on)
            side_close(&c->side[k]);
    rss_after_session(c);
    note(c, "idle RSS read");
    if (c->o.tracker && trk_measure(c) < 0)
        return -1;
    note(c, "done");
    return 0;
}

static void cleanup(ctx_t *c)
{
    for (int k = SIDE_DIRECT; k < NSIDES; k++)
        side_close(&c->side[k]);
    local_stop(c);
    bench_raw_stop(&c->relay);
    bench_raw_stop(&c->raw);
    for (int i = 0; i < c->nitems; i++)
        for (int k = 0; k < NSIDES; k++)
            bench_samples_free(&c->items[i].t[k]);
    for (int k = 0; k < 2; k++)
        bench_samples_free(&c->trk[k].grant);
    bench_samples_free(&c->start_ns);
    free(c->src);
    free(c->dst);
}

static int parse(ctx_t *c, int argc, char **argv)
{
    opts_t *o = &c->o;
    int port = -1;
    const opt_spec_t specs[] = {
        {"host", OPT_STR, &o->host, "HOST",
         "an RPC server (ours, TVM's Python or C++) to measure directly", 0, 0},
        {"port", OPT_INT, &port, "PORT", "port of --host (default 9090)", 1, 65535},
        {"key", OPT_STR, &o->key, "KEY",
         "key of --host; with --tracker (and no --host), also measure a server the tracker grants "
         "for KEY",
         0, 0},
        {"tracker", OPT_STR, &o->tracker, "HOST:PORT",
         "measure this tracker's request/grant/release cycles with simulated servers and clients",
         0, 0},
        {"proxy", OPT_STR, &o->proxy, "HOST:PORT", "measure the server behind this proxy", 0, 0},
        {"proxy-key", OPT_STR, &o->proxy_key, "KEY",
         "key the server behind --proxy registered with", 0, 0},
        {"short", OPT_FLAG, &o->short_mode, NULL,
         "quick run (a few seconds, for CI): 2 rounds, fewer sizes and samples", 0, 0},
        {"json", OPT_FLAG, &o->json, NULL, "print one JSON object instead of the tables", 0, 0},
        {"verbose", OPT_FLAG, &o->verbose, NULL, "say on stderr what is being measured", 0, 0},
        {"rounds", OPT_INT, &o->rounds, "N", "interleaved rounds (default 5, --short 2)", 1, 64},
        {"calls", OPT_INT, &o->calls, "N",
         "empty calls per side and round (default 1000, --short 200)", 1, 1000000},
        {"max-size", OPT_NUM, &o->max_size_mib, "MIB",
         "largest array copy and upload (default 64, --short 16)", 0, 0},
        {"servers", OPT_INT, &o->servers, "N",
         "simulated tracker servers (default 1000, --short 50)", 1, 100000},
        {"clients", OPT_INT, &o->clients, "M", "simulated tracker clients (default 64, --short 8)",
         1, 10000},
        {"tracker-secs", OPT_NUM, &o->trk_secs, "SEC",
         "measured time per tracker round and side (default 1, --short 0.1)", 0, 0},
        {"start-trials", OPT_INT, &o->start_trials, "N",
         "server starts timed in local mode (default 10, --short 3)", 1, 1000},
        {"server-pid", OPT_INT, &o->server_pid, "PID",
         "report this server process's RSS (local mode: the one it started)", 1, 1 << 30},
        {"timeout", OPT_INT, &o->timeout_s, "SEC",
         "bound every connect and I/O of the sessions (default: block, as TVM's client)", 1, 86400},
        {"budget", OPT_INT, &o->budget_s, "SEC",
         "abort the whole run after SEC (default 600, --short 120)", 1, 86400},
        {"strict", OPT_FLAG, &o->strict, NULL, "exit with status 3 when a speed target is missed",
         0, 0},
        {"tvmrpc", OPT_STR, &o->bin, "PATH", "binary started in local mode (default: this one)", 0,
         0},
        {NULL, 0, NULL, NULL, NULL, 0, 0},
    };
    const char *summary =
        "Measure an RPC server, proxy and tracker against raw loopback TCP measured in the same "
        "run:\nempty-call round trip, array copy to/from the server (4 KiB..64 MiB), upload, "
        "tracker cycles.\nWithout --host, --proxy or --tracker it starts its own server, proxy "
        "and tracker\nand also measures the server's start-up time and idle RSS.";
    char *pos[1];
    int npos = 0;
    int rc = opt_parse(specs, argc - 1, argv + 1, pos, 0, &npos, c->err, sizeof(c->err));
    if (rc == OPT_PARSE_HELP) {
        opt_usage(stdout, "bench", NULL, summary, specs);
        return 1;
    }
    if (rc == 0) {
        if (port > 0)
            o->port = port;
        mode_defaults(o);
        rc = check_opts(c, port > 0);
    }
    if (rc < 0) {
        fprintf(stderr, "tvmrpc bench: %s\n", c->err);
        opt_usage(stderr, "bench", NULL, summary, specs);
        return -1;
    }
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    static ctx_t c; /* large; zeroed */
    memset(&c, 0, sizeof(c));
    defaults(&c.o);
    int rc = parse(&c, argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : EXIT_USAGE;
    if (!c.o.bin)
        c.o.bin = self_exe();
    /* By default the sessions block as TVM's client does (the library's
     * default, and what is measured); --budget bounds the whole run. */
    c.timeout_ms = c.o.timeout_s > 0 ? c.o.timeout_s * 1000 : -1;
    c.max_size = (uint64_t)(c.o.max_size_mib * MIB) & ~(uint64_t)4095;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    signal(SIGINT, on_alarm);
    signal(SIGTERM, on_alarm);
    alarm((unsigned)c.o.budget_s);
    if (run(&c) < 0) {
        fprintf(stderr, "tvmrpc bench: %s\n", c.err);
        cleanup(&c);
        return 1;
    }
    check_t checks[16];
    int n = collect_checks(&c, checks), missed = 0;
    for (int i = 0; i < n; i++)
        missed += !checks[i].ok;
    if (c.o.json)
        rc = print_json(&c, checks, n);
    else
        print_table(&c, checks, n);
    fflush(stdout);
    cleanup(&c);
    alarm(0);
    if (rc < 0) {
        fprintf(stderr, "tvmrpc bench: %s\n", c.err);
        return 1;
    }
    return c.o.strict && missed ? 3 : 0;
}
