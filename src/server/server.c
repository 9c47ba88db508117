/* The server's parent process. It never runs client requests itself: it
 * accepts, handshakes (non-blocking, with a deadline, several at once),
 * forks one worker per session, keeps the tracker informed and polices the
 * session timeout. One session at a time, as TVM's servers do. */
#include "server/server.h"

#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
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
#include "client/tracker_client.h"
#include "rpc/rpc.h"

#define TRACKER_POLL_MS 2000
#define TRACKER_IO_MS 5000
#define TRACKER_BACKOFF_MAX_MS 30000
#define MATCHKEY_MISSES 4 /* TVM: counter * 2 > 4 + 2 */

typedef struct pending {
    struct srv *srv;
    int fd;
    char ip[NET_IP_LEN];
    buf_t in;
    ev_timer_t *timer;
    struct pending *next;
} pending_t;

typedef struct srv {
    const server_config_t *cfg;
    ev_loop_t *loop;
    int lfd, port;
    pending_t *pending;
    peercap_t peers; /* unfinished handshakes per peer address */
    /* the running session */
    pid_t worker;
    int session_fd;
    char session_peer[NET_IP_LEN + 16];
    char session_key[RPC_MAX_KEY_LEN + 1];
    int64_t session_start;
    ev_timer_t *session_timer;
    double session_timeout;
    int timed_out;
    /* tracker link */
    char tracker_host[256];
    int tracker_port;
    int tfd;
    char matchkey[512];
    int misses;
    int backoff_ms;
    ev_timer_t *tracker_timer;
    listener_t lis; /* on lfd; off while a session runs */
    int stopping;
    volatile int *generation; /* shared with the worker: which codec it detected */
    ws_t session_ws; /* made by the parent, so it is removed even if the worker is killed */
    session_config_t session_cfg;
} srv_t;

static void srv_accepting(srv_t *s, int on);
static void tracker_announce(srv_t *s);

/* ---- keys ------------------------------------------------------------------ */

int server_key_matches(const char *client_key, const char *expect)
{
    size_t tok = strcspn(client_key, " \t\r\n");
    return tok == 7 + strlen(expect) && strncmp(client_key, "client:", 7) == 0 &&
           strncmp(client_key + 7, expect, tok - 7) == 0;
}

double server_parse_timeout(const char *key)
{
    double t = 0;
    const char *p = key + strcspn(key, " \t");
    while (*p) {
        p += strspn(p, " \t");
        size_t len = strcspn(p, " \t");
        if (len > 9 && strncmp(p, "-timeout=", 9) == 0) {
            char num[64];
            snprintf(num, sizeof(num), "%.*s", (int)(len - 9 < 63 ? len - 9 : 63), p + 9);
            char *end;
            double v = strtod(num, &end);
            if (*end == '\0' && v > 0)
                t = v;
        }
        p += len;
    }
    return t;
}

static void new_matchkey(srv_t *s)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (uint64_t)time(NULL) * 6364136223846793005ULL + (uint64_t)getpid();
    snprintf(s->matchkey, sizeof(s->matchkey), "%s:0.%016llu", s->cfg->key,
             (unsigned long long)(r % 10000000000000000ULL));
    s->misses = 0;
}

/* ---- tracker link ------------------------------------------------------------ */

static void tracker_drop(srv_t *s, const char *why)
{
    if (s->tfd >= 0) {
        log_warn("server: lost the tracker %s:%d: %s; reconnecting", s->tracker_host,
                 s->tracker_port, why);
        close(s->tfd);
        s->tfd = -1;
    }
}

static int tracker_call_ok(srv_t *s, const char *req)
{
    char err[256];
    json_t *reply = NULL;
    if (tc_call(s->tfd, req, &reply, TRACKER_IO_MS, err, sizeof(err)) < 0) {
        tracker_drop(s, err);
        return -1;
    }
    int64_t code = -1;
    json_get_int(reply, &code);
    json_free(reply);
    if (code != 0) {
        tracker_drop(s, "request refused");
        return -1;
    }
    return 0;
}

static void json_str(buf_t *b, const char *s)
{
    json_t *v = json_new_string(s);
    json_dump(v, b);
    json_free(v);
}

static int tracker_put(srv_t *s)
{
    buf_t b;
    buf_init(&b, 0);
    buf_append_str(&b, "[3, ");
    json_str(&b, s->cfg->key);
    buf_printf(&b, ", [%d, ", s->port);
    json_str(&b, s->matchkey);
    buf_append_str(&b, "], ");
    if (s->cfg->custom_addr)
        json_str(&b, s->cfg->custom_addr);
    else
        buf_append_str(&b, "null");
    buf_append_str(&b, "]");
    char *req = buf_steal_cstr(&b);
    int rc = req ? tracker_call_ok(s, req) : -1;
    free(req);
    return rc;
}

static int tracker_register(srv_t *s)
{
    char err[256];
    s->tfd = tc_connect(s->tracker_host, s->tracker_port, 0, TRACKER_IO_MS, err, sizeof(err));
    if (s->tfd < 0) {
        log_warn("server: %s (retrying)", err);
        return -1;
    }
    buf_t b;
    buf_init(&b, 0);
    buf_append_str(&b, "[5, {\"key\": ");
    char skey[RPC_MAX_KEY_LEN + 8];
    snprintf(skey, sizeof(skey), "server:%s", s->cfg->key);
    json_str(&b, skey);
    buf_append_str(&b, ", \"addr\": [");
    if (s->cfg->custom_addr)
        json_str(&b, s->cfg->custom_addr);
    else
        buf_append_str(&b, "null");
    buf_printf(&b, ", %d]}]", s->port);
    char *req = buf_steal_cstr(&b);
    int rc = req ? tracker_call_ok(s, req) : -1;
    free(req);
    if (rc == 0)
        log_info("server: registered with tracker %s:%d as %s", s->tracker_host, s->tracker_port,
                 skey);
    return rc;
}

/* Is our current matchkey still queued at the tracker? 1 yes, 0 no, -1 link lost. */
static int tracker_pending(srv_t *s)
{
    char err[256];
    json_t *reply = NULL;
    if (tc_call(s->tfd, "[7]", &reply, TRACKER_IO_MS, err, sizeof(err)) < 0) {
        tracker_drop(s, err);
        return -1;
    }
    int found = 0;
    for (size_t i = 0; i < json_array_len(reply); i++) {
        const char *k = json_get_string(json_array_get(reply, i));
        found |= k && strcmp(k, s->matchkey) == 0;
    }
    json_free(reply);
    return found;
}

/* Every 2 s while idle: keep the link up and the slot fresh (PROTOCOL.md §1.8). */
static int64_t tracker_tick(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    srv_t *s = data;
    if (s->worker > 0)
        return TRACKER_POLL_MS; /* busy: no slot while a session runs */
    if (s->tfd < 0) {
        if (tracker_register(s) < 0 || tracker_put(s) < 0) {
            tracker_drop(s, "registration failed");
            s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : 1000;
            if (s->backoff_ms > TRACKER_BACKOFF_MAX_MS)
                s->backoff_ms = TRACKER_BACKOFF_MAX_MS;
            return s->backoff_ms;
        }
        s->backoff_ms = 0;
        return TRACKER_POLL_MS;
    }
    int pending = tracker_pending(s);
    if (pending < 0)
        return 1000;
    if (pending) {
        s->misses = 0;
    } else if (++s->misses >= MATCHKEY_MISSES) {
        /* A client took the slot but never came: offer a fresh one. */
        log_info("server: slot %s was taken but nobody connected; re-announcing", s->matchkey);
        new_matchkey(s);
        tracker_put(s);
    }
    return TRACKER_POLL_MS;
}

static void tracker_announce(srv_t *s)
{
    if (!s->cfg->tracker)
        return;
    new_matchkey(s);
    if (s->tfd >= 0)
        tracker_put(s);
    /* If the link is down the tick reconnects and PUTs the new key. */
}

/* ---- sessions ---------------------------------------------------------------- */

static void load_libraries(const char *list)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *save, *p = strtok_r(buf, ":", &save); p; p = strtok_r(NULL, ":", &save)) {
        if (!dlopen(p, RTLD_NOW | RTLD_GLOBAL))
            log_warn("server: --load-library %s: %s", p, dlerror());
    }
}

static void worker_main(srv_t *s, int fd, pid_t parent)
{
    /* A worker must not outlive its server: if the parent is killed, the
     * session ends too (the client sees the connection close). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    if (s->cfg->load_library)
        load_libraries(s->cfg->load_library);
    int rc = session_serve(fd, s->session_peer, &s->session_cfg);
    _exit(rc == 0 ? 0 : 1);
}

/* End the running session from the parent: stop the worker first so its
 * writes cannot interleave with ours, then send the client one kException
 * in the generation the worker detected (as the Python server does). */
static void session_abort(srv_t *s, const char *msg)
{
    kill(s->worker, SIGKILL);
    const rpc_codec_t *codec = &rpc_codec_classic;
    if (*s->generation == RPC_PROTOCOL_FFI ||
        (*s->generation == RPC_PROTOCOL_AUTO &&
         s->cfg->session.undecided_default == RPC_PROTOCOL_FFI))
        codec = &rpc_codec_ffi;
    buf_t b;
    buf_init(&b, 0);
    size_t at = rpc_packet_begin(&b, RPC_EXCEPTION);
    codec->encode_exception(&b, msg, strlen(msg));
    rpc_packet_end(&b, at);
    net_write_full(s->session_fd, buf_head(&b), b.len, 1000, NULL);
    buf_free(&b);
}

static int64_t session_expired(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    srv_t *s = data;
    s->session_timer = NULL;
    buf_t secs;
    buf_init(&secs, 64);
    json_py_float(&secs, s->session_timeout);
    char msg[256];
    snprintf(msg, sizeof(msg),
             "RPCSessionTimeoutError: Your %.*ss session has expired, try to increase the "
             "\"session_timeout\" value.",
             (int)secs.len, (const char *)buf_head(&secs));
    buf_free(&secs);
    session_abort(s, msg);
    s->timed_out = 1;
    return EV_NOMORE;
}

static int64_t now_ms(void)
{
    return ev_now_ms();
}

static void session_start(srv_t *s, int fd, const char *ip, const char *client_key)
{
    snprintf(s->session_peer, sizeof(s->session_peer), "%s", ip);
    snprintf(s->session_key, sizeof(s->session_key), "%s", client_key);
    s->session_timeout = server_parse_timeout(client_key);
    s->session_start = now_ms();
    s->timed_out = 0;
    log_info("server: session from %s key=%s started", ip, client_key);
    *s->generation = s->cfg->session.protocol;
    char werr[256];
    if (ws_create(&s->session_ws, s->cfg->session.work_dir, werr, sizeof(werr)) < 0) {
        log_error("server: %s", werr);
        close(fd);
        return;
    }
    s->session_cfg.workspace = s->session_ws.root;
    if (s->cfg->no_fork) {
        net_set_nonblock(fd, 0);
        int rc = session_serve(fd, s->session_peer, &s->session_cfg);
        close(fd);
        ws_destroy(&s->session_ws);
        log_info("server: session from %s key=%s ended after %.3f s: %s", ip, client_key,
                 (double)(now_ms() - s->session_start) / 1000.0, rc == 0 ? "ok" : "error");
        tracker_announce(s);
        return;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        log_error("server: fork: %s", strerror(errno));
        close(fd);
        ws_destroy(&s->session_ws);
        return;
    }
    if (pid == 0) {
        if (s->lfd >= 0)
            close(s->lfd);
        if (s->tfd >= 0)
            close(s->tfd);
        net_set_nonblock(fd, 0);
        worker_main(s, fd, parent);
    }
    s->worker = pid;
    s->session_fd = fd;
    srv_accepting(s, 0);
    if (s->session_timeout > 0)
        s->session_timer =
            ev_timer_add(s->loop, (int64_t)(s->session_timeout * 1000), session_expired, s);
}

static void describe_status(int status, int timed_out, char *out, size_t n)
{
    if (timed_out)
        snprintf(out, n, "timed out");
    else if (WIFEXITED(status))
        snprintf(out, n, WEXITSTATUS(status) == 0 ? "ok" : "error (exit %d)", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, n, "worker killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(out, n, "unknown");
}

static void session_reap(srv_t *s)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid != s->worker)
            continue;
        char how[128];
        describe_status(status, s->timed_out, how, sizeof(how));
        log_info("server: session from %s key=%s ended after %.3f s: %s", s->session_peer,
                 s->session_key, (double)(now_ms() - s->session_start) / 1000.0, how);
        if (s->session_timer)
            ev_timer_del(s->loop, s->session_timer);
        s->session_timer = NULL;
        close(s->session_fd);
        s->session_fd = -1;
        s->worker = 0;
        ws_destroy(&s->session_ws);
        tracker_announce(s);
        srv_accepting(s, 1);
    }
}

/* ---- handshakes ------------------------------------------------------------ */

static void pending_close(srv_t *s, pending_t *p, int close_fd)
{
    for (pending_t **pp = &s->pending; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    ev_del(s->loop, p->fd, EV_READ);
    if (p->timer)
        ev_timer_del(s->loop, p->timer);
    if (close_fd)
        close(p->fd);
    peercap_release_ip(&s->peers, p->ip);
    buf_free(&p->in);
    free(p);
}

static void send_status(int fd, uint32_t code, const char *key)
{
    buf_t b;
    buf_init(&b, 0);
    buf_append_u32le(&b, code);
    if (key) {
        buf_append_u32le(&b, (uint32_t)strlen(key));
        buf_append_str(&b, key);
    }
    net_set_nonblock(fd, 0);
    net_write_full(fd, buf_head(&b), b.len, 1000, NULL);
    buf_free(&b);
}

/* 1: handshake complete (key in out), 0: need more, -1: reject and close. */
static int handshake_parse(pending_t *p, char *key, size_t keylen)
{
    const uint8_t *k;
    size_t n;
    switch (rpc_hs_parse(buf_head(&p->in), p->in.len, &k, &n)) {
    case RPC_HS_INCOMPLETE:
        return 0;
    case RPC_HS_OK:
        break;
    case RPC_HS_BAD_MAGIC:
        log_warn("server: %s: wrong magic 0x%08x; closing", p->ip, le32(buf_head(&p->in)));
        return -1;
    case RPC_HS_BAD_LENGTH:
        log_warn("server: %s: key length %d outside [0, %d]; closing", p->ip,
                 (int32_t)le32(buf_head(&p->in) + 4), RPC_MAX_KEY_LEN);
        return -1;
    case RPC_HS_EXTRA:
        log_warn("server: %s: bytes sent before the handshake reply; closing", p->ip);
        return -1;
    }
    if (n >= keylen)
        return -1; /* keylen > RPC_MAX_KEY_LEN: cannot happen */
    memcpy(key, k, n);
    key[n] = '\0';
    return 1;
}

static void on_handshake_readable(ev_loop_t *loop, int fd, void *data, int mask)
{
    pending_t *p = data;
    srv_t *s = p->srv;
    uint8_t *tail = buf_tail(&p->in, 4096);
    ssize_t r = tail ? recv(fd, tail, 4096, 0) : -1;
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        pending_close(s, p, 1);
        return;
    }
    buf_commit(&p->in, (size_t)r);
    char key[RPC_MAX_KEY_LEN + 1];
    int rc = handshake_parse(p, key, sizeof(key));
    if (rc == 0)
        return;
    if (rc < 0) {
        pending_close(s, p, 1);
        return;
    }
    const char *expect = s->cfg->tracker ? s->matchkey : s->cfg->key;
    if (s->worker > 0 || !server_key_matches(key, expect)) {
        log_warn("server: %s: key '%.64s' does not match; sent MISMATCH", p->ip, key);
        send_status(fd, RPC_CODE_MISMATCH, NULL);
        pending_close(s, p, 1);
        return;
    }
    char reply_key[RPC_MAX_KEY_LEN + 8];
    snprintf(reply_key, sizeof(reply_key), "server:%s", s->cfg->key);
    send_status(fd, RPC_CODE_SUCCESS, reply_key);
    char ip[NET_IP_LEN];
    snprintf(ip, sizeof(ip), "%s", p->ip);
    pending_close(s, p, 0);
    /* Other half-open handshakes wait for the next session: drop them. */
    while (s->pending)
        pending_close(s, s->pending, 1);
    session_start(s, fd, ip, key);
}

static int64_t on_handshake_timeout(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    pending_t *p = data;
    p->timer = NULL;
    log_warn("server: %s: no handshake within %d ms; closing", p->ip,
             p->srv->cfg->handshake_timeout_ms);
    pending_close(p->srv, p, 1);
    return EV_NOMORE;
}

/* A peer passed --allow and the per-address cap: wait for its handshake. */
static int on_conn(void *data, int fd, const char *ip, int port,
                   const struct sockaddr_storage *addr)
{
    srv_t *s = data;
    pending_t *p = calloc(1, sizeof(*p));
    if (!p) {
        peercap_release_ip(&s->peers, ip);
        close(fd);
        return 0;
    }
    p->srv = s;
    p->fd = fd;
    snprintf(p->ip, sizeof(p->ip), "%s", ip);
    buf_init(&p->in, 8 + RPC_MAX_KEY_LEN + 4096);
    p->next = s->pending;
    s->pending = p;
    p->timer = ev_timer_add(s->loop, s->cfg->handshake_timeout_ms, on_handshake_timeout, p);
    ev_add(s->loop, fd, EV_READ, on_handshake_readable, p);
    /* One session at a time: while one runs, take no more than this one. */
    return s->worker > 0 || s->cfg->no_fork;
}

static void srv_listen(srv_t *s)
{
    const listener_config_t lc = {
        .name = "server",
        .port_name = "",
        .allow = s->cfg->allow,
        .peers = &s->peers,
        .peer_full = "--max-conns-per-peer handshakes from this address",
        .batch = 64,
        .on_conn = on_conn,
        .data = s,
    };
    listener_init(&s->lis, s->loop, s->lfd, &lc);
}

static void srv_accepting(srv_t *s, int on)
{
    if (s->lfd >= 0)
        listener_enable(&s->lis, on);
}

static void on_signal(ev_loop_t *loop, int fd, void *data, int mask)
{
    srv_t *s = data;
    int signo;
    while ((signo = sig_pipe_read(fd)) > 0) {
        if (signo == SIGCHLD) {
            session_reap(s);
            continue;
        }
        log_info("server: caught signal %d, shutting down", signo);
        s->stopping = 1;
        ev_stop(loop);
    }
}

/* ---- through a proxy (PROTOCOL.md §3.5) -------------------------------------- */

/* Connect to the proxy as server:<key> and wait for a client. 1 = paired
 * (fd and client key set), 0 = retry later, -1 = fatal (duplicate key). */
static int proxy_wait(srv_t *s, int sig_fd, int *out_fd, char *ckey, size_t ckeylen)
{
    char err[NET_ERR_LEN];
    int fd = net_connect(s->cfg->host, s->cfg->port, 10000, err);
    if (fd < 0) {
        log_warn("server: proxy %s", err);
        return 0;
    }
    char key[RPC_MAX_KEY_LEN + 8];
    snprintf(key, sizeof(key), "server:%s", s->cfg->key);
    buf_t b;
    buf_init(&b, 0);
    buf_append_u32le(&b, RPC_MAGIC);
    buf_append_u32le(&b, (uint32_t)strlen(key));
    buf_append_str(&b, key);
    int rc = net_write_full(fd, buf_head(&b), b.len, 10000, err);
    buf_free(&b);
    if (rc < 0)
        goto retry;
    /* Waiting for a client can take hours; keep an eye on signals meanwhile. */
    struct pollfd pf[2] = {{.fd = fd, .events = POLLIN}, {.fd = sig_fd, .events = POLLIN}};
    while (poll(pf, sig_fd >= 0 ? 2 : 1, -1) < 0 && errno == EINTR)
        ;
    if (sig_fd >= 0 && (pf[1].revents & POLLIN) && sig_pipe_read(sig_fd) != SIGCHLD) {
        close(fd);
        return -2;
    }
    uint8_t st[4];
    if (net_read_full(fd, st, 4, 10000, NULL, err) < 0)
        goto retry;
    if (le32(st) == RPC_CODE_DUPLICATE) {
        log_error("server: key %s has already been used in proxy", s->cfg->key);
        close(fd);
        return -1;
    }
    uint8_t lenb[4];
    if (le32(st) != RPC_CODE_SUCCESS || net_read_full(fd, lenb, 4, 10000, NULL, err) < 0)
        goto retry;
    uint32_t len = le32(lenb);
    if (len >= ckeylen || net_read_full(fd, ckey, len, 10000, NULL, err) < 0)
        goto retry;
    ckey[len] = '\0';
    *out_fd = fd;
    return 1;
retry:
    log_warn("server: proxy %s:%d did not pair us (%s); retrying", s->cfg->host, s->cfg->port, err);
    close(fd);
    return 0;
}

static int run_through_proxy(srv_t *s, int sig_fd)
{
    int backoff = 1000;
    log_info("server: serving through proxy %s:%d as server:%s", s->cfg->host, s->cfg->port,
             s->cfg->key);
    for (;;) {
        int fd;
        char ckey[RPC_MAX_KEY_LEN + 1];
        int rc = proxy_wait(s, sig_fd, &fd, ckey, sizeof(ckey));
        if (rc == -1)
            return 1;
        if (rc == -2)
            return 0;
        if (rc == 0) {
            struct pollfd pf = {.fd = sig_fd, .events = POLLIN};
            if (poll(&pf, sig_fd >= 0 ? 1 : 0, backoff) > 0)
                return 0;
            backoff = backoff * 2 > 30000 ? 30000 : backoff * 2;
            continue;
        }
        backoff = 1000;
        session_start(s, fd, s->cfg->host, ckey);
        /* Wait for the worker (and its timeout) before pairing again. */
        while (s->worker > 0 && !s->stopping) {
            if (ev_run_once(s->loop, -1) < 0)
                return 1;
        }
        if (s->stopping)
            return 0;
    }
}

/* ---- main ------------------------------------------------------------------ */

void server_config_defaults(server_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "0.0.0.0";
    cfg->port = 9090;
    cfg->port_end = 9199;
    cfg->key = "";
    cfg->handshake_timeout_ms = 10000;
    cfg->max_conns_per_peer = 16;
    session_config_defaults(&cfg->session);
}

int server_run(const server_config_t *cfg, int sig_fd)
{
    srv_t s;
    memset(&s, 0, sizeof(s));
    s.cfg = cfg;
    s.lfd = s.tfd = s.session_fd = -1;
    peercap_init(&s.peers, cfg->max_conns_per_peer);
    s.loop = ev_create(256, EV_BACKEND_AUTO);
    s.generation =
        mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!s.loop || s.generation == MAP_FAILED)
        return 1;
    s.session_cfg = cfg->session;
    s.session_cfg.generation_out = s.generation;
    if (sig_fd >= 0)
        ev_add(s.loop, sig_fd, EV_READ, on_signal, &s);
    int rc = 1;
    if (cfg->through_proxy) {
        rc = run_through_proxy(&s, sig_fd);
        goto out;
    }
    char err[NET_ERR_LEN] = "";
    s.lfd = net_listen_range(cfg->host, cfg->port, cfg->port_end, 64, &s.port, err);
    if (s.lfd < 0) {
        log_error("server: %s", err);
        goto out;
    }
    log_info("bind to %s:%d", cfg->host, s.port);
    if (cfg->tracker) {
        if (net_parse_hostport(cfg->tracker, s.tracker_host, sizeof(s.tracker_host),
                               &s.tracker_port, err) < 0) {
            log_error("server: --tracker: %s", err);
            goto out;
        }
        new_matchkey(&s);
        s.tracker_timer = ev_timer_add(s.loop, 0, tracker_tick, &s);
    }
    srv_listen(&s);
    srv_accepting(&s, 1);
    rc = ev_run(s.loop) < 0 ? 1 : 0;
out:
    if (s.worker > 0) {
        /* Leave the tracker first, then tell the client why its session ends. */
        if (s.tfd >= 0) {
            close(s.tfd);
            s.tfd = -1;
        }
        session_abort(&s, "RPCError: the server is shutting down");
        waitpid(s.worker, NULL, 0);
        ws_destroy(&s.session_ws);
    }
    while (s.pending)
        pending_close(&s, s.pending, 1);
    if (s.session_fd >= 0)
        close(s.session_fd);
    if (s.lfd >= 0)
        close(s.lfd);
    if (s.tfd >= 0)
        close(s.tfd);
    ev_free(s.loop);
    peercap_free(&s.peers);
    munmap((void *)s.generation, sizeof(int));
    return rc;
}
