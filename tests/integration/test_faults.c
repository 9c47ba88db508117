/* test_faults: fault injection against real processes. Servers, trackers
 * and proxies are killed, clients vanish in the middle of a 64 MiB copy,
 * kernels crash or spin, the disk fills up, and peers outside --allow
 * knock; after each fault the survivors must be back in service (tracker
 * SUMMARY, a fresh session, an empty --work-dir). Every wait is a bounded
 * wait on a condition. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/net.h"
#include "client/rpc_client.h"
#include "client/tracker_client.h"
#include "rawcli.h"
#include "rpc/rpc.h"
#include "tvmrpc/client.h"

#define IO_MS 30000
#define MIB ((size_t)1 << 20)
#define COPY_BYTES (64 * MIB)
#define MAX_DIRS 8

/* What a test started beyond the harness's tracking (h_proc_new,
 * h_track_sess), undone by cleanup() even after a failed assertion:
 * processes that are not our children (orphaned workers), work dirs, and
 * a tmpfs mount. */
static pid_t strays[8];
static int nstrays;
static char workdirs[MAX_DIRS][PATH_MAX];
static int nworkdirs;
static char mountpoint[PATH_MAX];

/* ---- bookkeeping ------------------------------------------------------------------ */

static void stray_add(pid_t pid)
{
    if (pid > 0 && nstrays < 8)
        strays[nstrays++] = pid;
}

/* A fresh directory for one server's --work-dir. */
static const char *workdir_new(void)
{
    assert_true(nworkdirs < MAX_DIRS);
    char *d = workdirs[nworkdirs];
    assert_int_equal(h_make_tmpdir(d, PATH_MAX, "faults"), 0);
    nworkdirs++;
    return d;
}

static int cleanup(void **state)
{
    h_cleanup();
    for (int i = 0; i < nstrays; i++)
        kill(strays[i], SIGKILL);
    if (mountpoint[0] && umount(mountpoint) < 0)
        umount2(mountpoint, MNT_DETACH);
    mountpoint[0] = '\0';
    for (int i = 0; i < nworkdirs; i++)
        h_rm_tree(workdirs[i]);
    nstrays = nworkdirs = 0;
    return 0;
}

/* ---- processes -------------------------------------------------------------------- */

/* "tvmrpc ARGV..." bound to a port. */
static hproc_t *spawn_bound(const char *const *argv)
{
    hproc_t *p = h_proc_new();
    if (h_spawn_bound(p, argv) < 0)
        fail_msg("%s did not bind a port", argv[0]);
    return p;
}

/* Wait for needle in p's log; fail with the log if it never comes. */
static void expect_log(hproc_t *p, const char *needle)
{
    if (h_wait_log(p, needle, H_TIMEOUT_MS) < 0) {
        h_dump_log(p);
        fail_msg("no \"%s\" in the log", needle);
    }
}

/* A port nobody listens on right now. */
static int free_port(void)
{
    int port = h_free_port();
    assert_true(port > 0);
    return port;
}

static hproc_t *start_tracker_at(int port)
{
    char p0[16], p1[16];
    snprintf(p0, sizeof(p0), "%d", port);
    snprintf(p1, sizeof(p1), "%d", port ? port + 1 : 0);
    const char *argv[] = {"tracker", "--host", "127.0.0.1", "--port", p0, "--port-end", p1, NULL};
    return spawn_bound(argv);
}

/* A direct server; tracker_port 0 = none. extra may be NULL. */
static hproc_t *start_server(const char *key, int tracker_port, const char *workdir,
                             const char *const *extra)
{
    char taddr[64];
    const char *argv[32] = {"--key", key};
    int n = 2;
    if (tracker_port) {
        snprintf(taddr, sizeof(taddr), "127.0.0.1:%d", tracker_port);
        argv[n++] = "--tracker";
        argv[n++] = taddr;
    }
    if (workdir) {
        argv[n++] = "--work-dir";
        argv[n++] = workdir;
    }
    for (int i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    hproc_t *p = h_proc_new();
    if (h_start_server(p, argv) < 0)
        fail_msg("the server with key %s did not start", key);
    return p;
}

static hproc_t *start_server_through(const char *key, int proxy_port, const char *workdir)
{
    const char *extra[] = {"--work-dir", workdir, NULL};
    hproc_t *p = h_proc_new();
    if (h_start_server_through(p, proxy_port, key, extra) < 0)
        fail_msg("the server with key %s did not connect to the proxy", key);
    return p;
}

static hproc_t *start_proxy(int tracker_port)
{
    char taddr[64];
    snprintf(taddr, sizeof(taddr), "127.0.0.1:%d", tracker_port);
    const char *extra[] = {"--tracker", taddr, NULL};
    hproc_t *p = h_proc_new();
    if (h_start_proxy(p, extra) < 0)
        fail_msg("the proxy did not start");
    return p;
}

static pid_t only_worker(hproc_t *srv)
{
    pid_t kids[4];
    int64_t deadline = h_now_ms() + H_TIMEOUT_MS;
    while (h_children(srv->pid, kids, 4) != 1 && h_now_ms() < deadline)
        h_sleep_ms(5);
    assert_int_equal(h_children(srv->pid, kids, 4), 1);
    return kids[0];
}

static int pid_gone(void *arg)
{
    pid_t pid = *(pid_t *)arg;
    char path[64];
    struct stat st;
    snprintf(path, sizeof(path), "/proc/%d", (int)pid);
    /* A zombie still has /proc/PID; only its state tells it is gone. */
    if (stat(path, &st) < 0)
        return 1;
    char buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *fp = fopen(path, "r");
    size_t n = fp ? fread(buf, 1, sizeof(buf) - 1, fp) : 0;
    if (fp)
        fclose(fp);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    return !rp || rp[1] == '\0' || rp[2] == 'Z' || rp[2] == 'X';
}

/* CPU time (clock ticks) a process has used. */
static long cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *fp = fopen(path, "r");
    size_t n = fp ? fread(buf, 1, sizeof(buf) - 1, fp) : 0;
    if (fp)
        fclose(fp);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    long utime = 0, stime = 0;
    /* After "pid (comm)": state is field 3, utime 14, stime 15. */
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime, &stime) != 2)
        return -1;
    return utime + stime;
}

static void expect_dir_empty(const char *dir)
{
    if (h_wait_until(h_dir_is_empty, (void *)dir, H_TIMEOUT_MS) < 0)
        fail_msg("%s still holds %d entries", dir, h_dir_entries(dir));
}

/* ---- tracker view ---------------------------------------------------------------- */

static void wait_summary(int port, const char *needle, int present, int timeout_ms)
{
    if (h_wait_summary(port, needle, present, timeout_ms) < 0)
        fail_msg("tracker view");
}

/* `"KEY": {"free": N` */
static void wait_free(int port, const char *key, int n, int timeout_ms)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "\"%s\": {\"free\": %d,", key, n);
    wait_summary(port, needle, 1, timeout_ms);
}

/* A tracker and a server registered (free) with it under key, with a
 * fresh --work-dir (in *wd unless NULL). Returns the server. */
static hproc_t *tracked_server(const char *key, hproc_t **t, const char **wd)
{
    *t = start_tracker_at(0);
    const char *dir = workdir_new();
    if (wd)
        *wd = dir;
    hproc_t *srv = start_server(key, (*t)->port, dir, NULL);
    wait_free((*t)->port, key, 1, H_TIMEOUT_MS);
    return srv;
}

/* ---- client library ---------------------------------------------------------------- */

static tvmrpc_sess_t *request_sess(int tracker_port, const char *key, double session_timeout)
{
    tvmrpc_opts_t o;
    tvmrpc_opts_init(&o);
    o.timeout_ms = IO_MS;
    o.session_timeout = session_timeout;
    char err[1024];
    tvmrpc_sess_t *s =
        tvmrpc_request_opts("127.0.0.1", tracker_port, key, 1, 3, &o, err, sizeof(err));
    if (!s)
        fail_msg("request %s: %s", key, err);
    return h_track_sess(s);
}

static tvmrpc_sess_t *connect_sess(int port, const char *key, double session_timeout)
{
    tvmrpc_opts_t o;
    tvmrpc_opts_init(&o);
    o.timeout_ms = IO_MS;
    o.session_timeout = session_timeout;
    char err[1024];
    tvmrpc_sess_t *s = tvmrpc_connect_opts("127.0.0.1", port, key, &o, err, sizeof(err));
    if (!s)
        fail_msg("connect to %d: %s", port, err);
    return h_track_sess(s);
}

static void expect_rc(tvmrpc_sess_t *s, int rc, int want)
{
    if (rc != want)
        fail_msg("rc %d (%s), want %d: %s", rc, tvmrpc_strerror(rc), want, tvmrpc_last_error(s));
}

/* testing.echo round trip: the session (and the server behind it) works. */
static void echo_ok(tvmrpc_sess_t *s)
{
    tvmrpc_value_t a = tvmrpc_v_int(4242), v;
    expect_rc(s, h_call_global(s, "testing.echo", &a, 1, &v), 0);
    assert_int_equal(v.kind, TVMRPC_INT);
    assert_int_equal(v.u.i, 4242);
}

/* A new session through the tracker gets served: the fault is behind us. */
static void fresh_session_ok(int tracker_port, const char *key)
{
    tvmrpc_sess_t *s = request_sess(tracker_port, key, 0);
    echo_ok(s);
    h_close_sess(s);
}

/* Upload a fixture library and get one of its functions. */
static uint64_t fixture_func(tvmrpc_sess_t *s, const char *lib, const char *fname)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", h_fixture_dir(), lib);
    expect_rc(s, tvmrpc_upload_file(s, path, lib), 0);
    tvmrpc_value_t name = tvmrpc_v_str(lib), mod, fv;
    expect_rc(s, h_call_global(s, "tvm.rpc.server.load_module", &name, 1, &mod), 0);
    assert_int_equal(mod.kind, TVMRPC_MODULE);
    tvmrpc_value_t gf[3] = {tvmrpc_v_handle(TVMRPC_MODULE, mod.u.h), tvmrpc_v_str(fname),
                            tvmrpc_v_bool(1)};
    expect_rc(s, h_call_global(s, "tvm.rpc.server.ModuleGetFunction", gf, 3, &fv), 0);
    assert_int_equal(fv.kind, TVMRPC_FUNC);
    return fv.u.h;
}

/* ---- a raw client that can stop anywhere ------------------------------------------- */

/* Open a classic session, allocate 64 MiB and send half of a kCopyToRemote
 * filling it. Returns the fd, left open so the caller decides how the
 * client dies. */
static int raw_half_copy(const char *host, int port, const char *key)
{
    rawcli_t r;
    if (rawcli_open(&r, host, port, key, &rpc_codec_classic) < 0)
        return -1;
    rpc_tensor_t t = {.dev = {1, 0}, .ndim = 1, .dtype = {1, 8, 1}, .shape = {(int64_t)COPY_BYTES}};
    uint8_t *half = malloc(COPY_BYTES / 2);
    /* A string argument settles the generation (classic) before the tensor. */
    int rc = half && rawcli_get_global(&r, "testing.nop") && rawcli_alloc(&r, &t) == 0 ? 0 : -1;
    if (half)
        memset(half, 0x5a, COPY_BYTES / 2);
    if (rc == 0 &&
        (rawcli_copy_to_begin(&r, &t, COPY_BYTES) < 0 || rawcli_send(&r, half, COPY_BYTES / 2) < 0))
        rc = -1;
    free(half);
    int fd = rawcli_detach(&r);
    if (rc < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* REQUEST key from the tracker: the host, port and matchkey of the grant. */
static void grant(int tracker_port, const char *key, char *host, int *port, char *matchkey)
{
    char err[256];
    int fd = tc_connect("127.0.0.1", tracker_port, 0, IO_MS, err, sizeof(err));
    assert_true(fd >= 0);
    char *req = rcl_request_text(key, 1);
    json_t *reply = NULL;
    int rc = req ? tc_call(fd, req, &reply, IO_MS, err, sizeof(err)) : -1;
    free(req);
    close(fd);
    if (rc == 0)
        rc = rcl_parse_grant(reply, host, 256, port, matchkey, RPC_MAX_KEY_LEN);
    json_free(reply);
    if (rc < 0)
        fail_msg("no grant for %s: %s", key, err);
}

/* A child process that gets a session for key, sends half of a 64 MiB copy,
 * says so on the pipe and waits to be killed. */
static pid_t client_child_half_copy(int tracker_port, const char *key)
{
    char host[256], matchkey[RPC_MAX_KEY_LEN];
    int port;
    grant(tracker_port, key, host, &port, matchkey);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        int fd = raw_half_copy(host, port, matchkey);
        char ok = fd >= 0 ? 'y' : 'n';
        if (write(pfd[1], &ok, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(pfd[1]);
    char ok = 0;
    struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
    int ready = poll(&pf, 1, IO_MS) == 1 && read(pfd[0], &ok, 1) == 1;
    close(pfd[0]);
    if (!ready || ok != 'y') {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("the client child could not start its copy");
    }
    return pid;
}

static void kill_child(pid_t pid)
{
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
}

/* ---- 1. a server killed mid-session ------------------------------------------------ */

static void test_server_sigkill_mid_session(void **state)
{
    hproc_t *t;
    const char *wd;
    hproc_t *srv = tracked_server("fk1", &t, &wd);
    tvmrpc_sess_t *s = request_sess(t->port, "fk1", 0);
    echo_ok(s);
    pid_t worker = only_worker(srv);
    stray_add(worker);
    wait_summary(t->port, "\"key\": \"server:fk1\"", 1, H_TIMEOUT_MS);
    assert_int_equal(kill(srv->pid, SIGKILL), 0);
    assert_true(h_wait_exit(srv, H_TIMEOUT_MS) != -1);
    /* The tracker sees the connection close: the server is gone at once. */
    int64_t t0 = h_now_ms();
    wait_summary(t->port, "\"key\": \"server:fk1\"", 0, 2000);
    fprintf(stderr, "    tracker dropped the server after %lld ms\n", (long long)(h_now_ms() - t0));
    wait_free(t->port, "fk1", 0, 2000);
    /* Nobody polices the session any more (timeout, one session at a time):
     * it must end with the server, and its client must see an error. */
    tvmrpc_value_t a = tvmrpc_v_int(1), v;
    int rc = h_call_global(s, "testing.echo", &a, 1, &v);
    int gone = h_wait_until(pid_gone, &worker, 5000) == 0;
    h_close_sess(s);
    if (rc == 0 || !gone)
        fail_msg("after SIGKILL of the server its session worker %d %s and the client's next call "
                 "returned %d (%s)",
                 (int)worker, gone ? "exited" : "lives on", rc, tvmrpc_strerror(rc));
    assert_int_equal(rc, TVMRPC_ERR_IO);
}

/* An idle server killed: its free slot leaves the tracker at once. */
static void test_server_sigkill_idle(void **state)
{
    hproc_t *t;
    hproc_t *srv = tracked_server("fk1i", &t, NULL);
    assert_int_equal(kill(srv->pid, SIGKILL), 0);
    assert_true(h_wait_exit(srv, H_TIMEOUT_MS) != -1);
    wait_free(t->port, "fk1i", 0, 2000);
    wait_summary(t->port, "\"key\": \"server:fk1i\"", 0, 2000);
    /* A client asking now waits instead of being handed a dead slot. */
    int fd = h_tracker_connect(t->port);
    assert_int_equal(h_tracker_send(fd, "[4, \"fk1i\", \"\", 1]"), 0);
    assert_true(h_tracker_silent(fd, 300));
    close(fd);
}

/* ---- 2. the tracker killed and restarted --------------------------------------------- */

typedef struct waiter {
    int port;
    volatile int done;
    tvmrpc_sess_t *s;
    char err[1024];
} waiter_t;

static void *waiter_main(void *arg)
{
    waiter_t *w = arg;
    tvmrpc_opts_t o;
    tvmrpc_opts_init(&o); /* no I/O bound: it waits for the grant as long as it takes */
    w->s = tvmrpc_request_opts("127.0.0.1", w->port, "fk-nobody", 1, 1, &o, w->err, sizeof(w->err));
    __atomic_store_n(&w->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static int waiter_done(void *arg)
{
    return __atomic_load_n(&((waiter_t *)arg)->done, __ATOMIC_SEQ_CST);
}

static void test_tracker_restart(void **state)
{
    int port = free_port();
    hproc_t *t = start_tracker_at(port);
    assert_int_equal(t->port, port);
    hproc_t *srv = start_server("fk2", port, workdir_new(), NULL);
    hproc_t *px = start_proxy(port);
    hproc_t *psrv = start_server_through("fk3", px->port, workdir_new());
    wait_free(port, "fk2", 1, H_TIMEOUT_MS);
    wait_free(port, "fk3", 1, H_TIMEOUT_MS);
    static waiter_t w;
    memset(&w, 0, sizeof(w));
    w.port = port;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, waiter_main, &w), 0);
    pthread_detach(th);
    wait_summary(port, "\"fk-nobody\": {\"free\": 0, \"pending\": 1}", 1, H_TIMEOUT_MS);
    assert_int_equal(kill(t->pid, SIGKILL), 0);
    assert_true(h_wait_exit(t, H_TIMEOUT_MS) != -1);
    /* The client waiting in REQUEST learns that the tracker is gone. */
    if (h_wait_until(waiter_done, &w, 5000) < 0)
        fail_msg("a client waiting in REQUEST still waits 5 s after the tracker died");
    if (w.s) {
        tvmrpc_close(w.s);
        fail_msg("a client waiting in REQUEST got a session from a dead tracker");
    }
    fprintf(stderr, "    waiting client: %s\n", w.err);
    assert_non_null(strstr(w.err, "Cannot request fk-nobody after 1 retry"));
    /* Same port, empty state: servers and proxies come back by themselves. */
    int64_t t0 = h_now_ms();
    hproc_t *t2 = start_tracker_at(port);
    assert_int_equal(t2->port, port);
    wait_free(port, "fk2", 1, 20000);
    wait_free(port, "fk3", 1, 20000);
    wait_summary(port, "\"key\": \"server:fk2\"", 1, H_TIMEOUT_MS);
    wait_summary(port, "\"key\": \"server:proxy[fk3]\"", 1, H_TIMEOUT_MS);
    fprintf(stderr, "    re-registered within %lld ms\n", (long long)(h_now_ms() - t0));
    fresh_session_ok(port, "fk2");
    fresh_session_ok(port, "fk3");
    assert_true(srv->pid > 0 && psrv->pid > 0 && px->pid > 0);
}

/* A client that gives up while waiting in REQUEST is forgotten: the next
 * free slot is not handed to it. */
static void test_requester_vanishes(void **state)
{
    hproc_t *t;
    tracked_server("fk13", &t, NULL);
    tvmrpc_sess_t *s = request_sess(t->port, "fk13", 0);
    int fd = h_tracker_connect(t->port);
    assert_int_equal(h_tracker_send(fd, "[4, \"fk13\", \"\", 1]"), 0);
    wait_summary(t->port, "\"fk13\": {\"free\": 0, \"pending\": 1}", 1, H_TIMEOUT_MS);
    close(fd);
    wait_summary(t->port, "\"fk13\": {\"free\": 0, \"pending\": 0}", 1, H_TIMEOUT_MS);
    echo_ok(s);
    h_close_sess(s);
    /* A slot taken by nobody would stay away for 4 polls (8 s). */
    wait_free(t->port, "fk13", 1, 3000);
    fresh_session_ok(t->port, "fk13");
}

/* The proxy killed mid-session and restarted on its port: the session ends
 * on both sides, the tracker forgets the proxy's slots at once, and the
 * server behind it comes back by itself. */
static void test_proxy_killed_and_restarted(void **state)
{
    hproc_t *t = start_tracker_at(0);
    int port = free_port();
    char p0[16], p1[16], taddr[64];
    snprintf(p0, sizeof(p0), "%d", port);
    snprintf(p1, sizeof(p1), "%d", port + 1);
    snprintf(taddr, sizeof(taddr), "127.0.0.1:%d", t->port);
    const char *pargv[] = {"proxy", "--host",     "127.0.0.1", "--port",    p0,    "--port-end",
                           p1,      "--web-port", "0",         "--tracker", taddr, NULL};
    hproc_t *px = spawn_bound(pargv);
    const char *wd = workdir_new();
    hproc_t *srv = start_server_through("fk11", port, wd);
    wait_free(t->port, "fk11", 1, H_TIMEOUT_MS);
    tvmrpc_sess_t *s = request_sess(t->port, "fk11", 0);
    echo_ok(s);
    int ended = h_log_count(srv, "ended after");
    assert_int_equal(kill(px->pid, SIGKILL), 0);
    assert_true(h_wait_exit(px, H_TIMEOUT_MS) != -1);
    wait_summary(t->port, "server:proxy[fk11]", 0, 2000);
    tvmrpc_value_t a = tvmrpc_v_int(1), v;
    expect_rc(s, h_call_global(s, "testing.echo", &a, 1, &v), TVMRPC_ERR_IO);
    h_close_sess(s);
    assert_int_equal(h_wait_log_count(srv, "ended after", ended, H_TIMEOUT_MS), 0);
    expect_dir_empty(wd);
    int64_t t0 = h_now_ms();
    hproc_t *px2 = spawn_bound(pargv);
    assert_int_equal(px2->port, port);
    wait_free(t->port, "fk11", 1, 20000);
    fprintf(stderr, "    server back behind the new proxy after %lld ms\n",
            (long long)(h_now_ms() - t0));
    fresh_session_ok(t->port, "fk11");
}

/* ---- 3. a client that vanishes mid-copy ------------------------------------------------ */

static void test_client_killed_mid_copy(void **state)
{
    hproc_t *t;
    const char *wd;
    hproc_t *srv = tracked_server("fk4", &t, &wd);
    int ended = h_log_count(srv, "ended after");
    pid_t child = client_child_half_copy(t->port, "fk4");
    assert_int_equal(h_dir_entries(wd), 1); /* the session's workspace */
    kill_child(child);
    if (h_wait_log_count(srv, "ended after", ended, H_TIMEOUT_MS) < 0) {
        h_dump_log(srv);
        fail_msg("the session of a killed client did not end");
    }
    assert_true(h_log_count(srv, "truncated kCopyToRemote") >= 1);
    wait_free(t->port, "fk4", 1, H_TIMEOUT_MS);
    expect_dir_empty(wd);
    fresh_session_ok(t->port, "fk4");
    expect_dir_empty(wd);
}

/* Same, the client sending half a packet and resetting the connection. */
static void test_client_resets_mid_copy(void **state)
{
    hproc_t *t;
    const char *wd;
    hproc_t *srv = tracked_server("fk4r", &t, &wd);
    char host[256], matchkey[RPC_MAX_KEY_LEN];
    int port;
    grant(t->port, "fk4r", host, &port, matchkey);
    int ended = h_log_count(srv, "ended after");
    int fd = raw_half_copy(host, port, matchkey);
    assert_true(fd >= 0);
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    assert_int_equal(h_wait_log_count(srv, "ended after", ended, H_TIMEOUT_MS), 0);
    wait_free(t->port, "fk4r", 1, H_TIMEOUT_MS);
    expect_dir_empty(wd);
    fresh_session_ok(t->port, "fk4r");
}

/* ---- 4. a proxy peer that vanishes mid-transfer --------------------------------------- */

static uint8_t pattern(uint64_t i, unsigned seed)
{
    return (uint8_t)((i * 2654435761u >> 7) ^ (i >> 11) ^ seed);
}

/* A raw peer at the proxy: "server:KEY" waiting, or a client of a slot. */
static int proxy_hello(int port, const char *key)
{
    char err[NET_ERR_LEN];
    int fd = net_connect("127.0.0.1", port, IO_MS, err);
    assert_true(fd >= 0);
    uint8_t b[8 + 512];
    size_t kl = strlen(key);
    put_le32(b, RPC_MAGIC);
    put_le32(b + 4, (uint32_t)kl);
    memcpy(b + 8, key, kl);
    assert_int_equal(net_write_full(fd, b, 8 + kl, IO_MS, NULL), 0);
    return fd;
}

static void expect_paired(int fd)
{
    uint8_t st[8], key[512];
    assert_int_equal(net_read_full(fd, st, 8, IO_MS, NULL, NULL), 0);
    assert_int_equal(le32(st), RPC_CODE_SUCCESS);
    assert_true(le32(st + 4) < sizeof(key));
    assert_int_equal(net_read_full(fd, key, le32(st + 4), IO_MS, NULL, NULL), 0);
}

/* A raw pair through the proxy in tracker mode. */
static void raw_pair(int tracker_port, int proxy_port, const char *key, int *srv, int *cli)
{
    char skey[128];
    snprintf(skey, sizeof(skey), "server:%s", key);
    *srv = proxy_hello(proxy_port, skey);
    wait_free(tracker_port, key, 1, H_TIMEOUT_MS);
    char host[256], matchkey[RPC_MAX_KEY_LEN], ckey[RPC_MAX_KEY_LEN + 8];
    int port;
    grant(tracker_port, key, host, &port, matchkey);
    assert_int_equal(port, proxy_port);
    snprintf(ckey, sizeof(ckey), "client:%s", matchkey);
    *cli = proxy_hello(proxy_port, ckey);
    expect_paired(*cli);
    expect_paired(*srv);
}

typedef void (*hook_fn)(void *);

/* Move n bytes each way between a and b, checking every byte; hook(arg)
 * runs once when half of all bytes have arrived. 0 when all arrived intact. */
static int pump(int a, int b, size_t n, hook_fn hook, void *arg)
{
    int fds[2] = {a, b};
    size_t sent[2] = {0, 0}, got[2] = {0, 0};
    static uint8_t buf[65536];
    int64_t deadline = h_now_ms() + 60000;
    net_set_nonblock(a, 1);
    net_set_nonblock(b, 1);
    while ((got[0] < n || got[1] < n) && h_now_ms() < deadline) {
        if (hook && got[0] + got[1] >= n) {
            hook(arg);
            hook = NULL;
        }
        struct pollfd pf[2];
        for (int i = 0; i < 2; i++)
            pf[i] = (struct pollfd){fds[i], (short)(POLLIN | (sent[i] < n ? POLLOUT : 0)), 0};
        if (poll(pf, 2, 1000) < 0)
            return -1;
        for (int i = 0; i < 2; i++) {
            if ((pf[i].revents & POLLOUT) && sent[i] < n) {
                size_t k = n - sent[i] < sizeof(buf) ? n - sent[i] : sizeof(buf);
                for (size_t j = 0; j < k; j++)
                    buf[j] = pattern(sent[i] + j, (unsigned)i);
                ssize_t w = send(fds[i], buf, k, MSG_NOSIGNAL);
                if (w < 0 && errno != EAGAIN)
                    return -1;
                sent[i] += w > 0 ? (size_t)w : 0;
            }
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            int from = 1 - i;
            ssize_t r = recv(fds[i], buf, sizeof(buf), 0);
            if (r == 0 || (r < 0 && errno != EAGAIN))
                return -1;
            for (ssize_t j = 0; j < r; j++)
                if (got[from] + (size_t)j >= n || buf[j] != pattern(got[from] + (size_t)j, from))
                    return -1;
            got[from] += r > 0 ? (size_t)r : 0;
        }
    }
    return got[0] == n && got[1] == n ? 0 : -1;
}

typedef struct vanish {
    pid_t client; /* a real server's client process, mid-copy */
    int raw_srv;  /* a raw server peer, reset mid-transfer */
} vanish_t;

static void vanish_now(void *arg)
{
    vanish_t *v = arg;
    kill_child(v->client);
    struct linger lg = {1, 0};
    setsockopt(v->raw_srv, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(v->raw_srv);
}

static void test_proxy_peer_vanishes(void **state)
{
    hproc_t *t = start_tracker_at(0);
    hproc_t *px = start_proxy(t->port);
    const char *wd = workdir_new();
    hproc_t *srv = start_server_through("fk5", px->port, wd);
    wait_free(t->port, "fk5", 1, H_TIMEOUT_MS);
    int bys_srv, bys_cli, vic_srv, vic_cli;
    raw_pair(t->port, px->port, "bys", &bys_srv, &bys_cli);
    raw_pair(t->port, px->port, "vic", &vic_srv, &vic_cli);
    int ended = h_log_count(srv, "ended after");
    vanish_t v = {client_child_half_copy(t->port, "fk5"), vic_srv};
    /* Both victims go while 2 x 32 MiB flow through the bystander pair. */
    assert_int_equal(pump(bys_srv, bys_cli, 32 * MIB, vanish_now, &v), 0);
    /* The survivor of each broken pair is closed. */
    assert_true(h_peer_closed(vic_cli, H_TIMEOUT_MS));
    close(vic_cli);
    if (h_wait_log_count(srv, "ended after", ended, H_TIMEOUT_MS) < 0) {
        h_dump_log(px);
        fail_msg("the server behind the proxy still serves a vanished client");
    }
    /* The bystander pair still works after all that. */
    assert_int_equal(pump(bys_cli, bys_srv, MIB, NULL, NULL), 0);
    close(bys_srv);
    close(bys_cli);
    wait_free(t->port, "fk5", 1, H_TIMEOUT_MS);
    expect_dir_empty(wd);
    fresh_session_ok(t->port, "fk5");
    assert_true(px->pid > 0);
}

/* ---- 5. kernels that crash, abort or never return -------------------------------------- */

/* After a fault: same server process, free again, workspace gone, serving. */
static void server_recovered(hproc_t *t, hproc_t *srv, const char *key, const char *wd)
{
    assert_true(srv->pid > 0 && kill(srv->pid, 0) == 0);
    wait_free(t->port, key, 1, H_TIMEOUT_MS);
    expect_dir_empty(wd);
    fresh_session_ok(t->port, key);
}

static void test_kernel_segfault(void **state)
{
    hproc_t *t;
    const char *wd;
    hproc_t *srv = tracked_server("fk6", &t, &wd);
    tvmrpc_sess_t *s = request_sess(t->port, "fk6", 0);
    /* A kernel error first: an exception, and the session goes on. */
    uint64_t fail = fixture_func(s, "faulty.so", "fail_msg");
    tvmrpc_value_t msg = tvmrpc_v_str("kernel says no");
    expect_rc(s, tvmrpc_call(s, fail, &msg, 1, NULL), TVMRPC_ERR_REMOTE);
    assert_non_null(strstr(tvmrpc_last_error(s), "kernel says no"));
    echo_ok(s);
    uint64_t segv = fixture_func(s, "faulty.so", "segv");
    expect_rc(s, tvmrpc_call(s, segv, NULL, 0, NULL), TVMRPC_ERR_IO);
    h_close_sess(s);
    expect_log(srv, "worker killed by signal 11");
    server_recovered(t, srv, "fk6", wd);
}

/* A kernel that calls abort(), as a failed assert() does. */
static void test_kernel_abort(void **state)
{
    hproc_t *t;
    const char *wd;
    hproc_t *srv = tracked_server("fk7", &t, &wd);
    tvmrpc_sess_t *s = request_sess(t->port, "fk7", 0);
    uint64_t ab = fixture_func(s, "faulty.so", "abort_now");
    expect_rc(s, tvmrpc_call(s, ab, NULL, 0, NULL), TVMRPC_ERR_IO);
    h_close_sess(s);
    expect_log(srv, "worker killed by signal 6");
    server_recovered(t, srv, "fk7", wd);
}

static void test_kernel_spins_until_timeout(void **state)
{
    hproc_t *t;
    const char *wd;
    hproc_t *srv = tracked_server("fk8", &t, &wd);
    tvmrpc_sess_t *s = request_sess(t->port, "fk8", 2);
    uint64_t spin = fixture_func(s, "faulty.so", "spin");
    int64_t t0 = h_now_ms();
    expect_rc(s, tvmrpc_call(s, spin, NULL, 0, NULL), TVMRPC_ERR_TIMEOUT);
    assert_non_null(strstr(tvmrpc_last_error(s), "RPCSessionTimeoutError: Your 2.0s session"));
    assert_true(h_now_ms() - t0 < 10000);
    h_close_sess(s);
    assert_int_equal(h_wait_log(srv, "timed out", H_TIMEOUT_MS), 0);
    server_recovered(t, srv, "fk8", wd);
}

/* ---- 6. a full disk during upload ---------------------------------------------------- */

/* An upload that does not fit fails with reason, leaves no file behind,
 * and the session (and the next one) carry on. */
static void upload_too_big(int port, const char *wd, const char *reason)
{
    tvmrpc_sess_t *s = connect_sess(port, "fk9", 0);
    size_t n = 2 * MIB;
    uint8_t *big = malloc(n);
    assert_non_null(big);
    memset(big, 0x33, n);
    int rc = tvmrpc_upload(s, big, n, "big.bin");
    free(big);
    expect_rc(s, rc, TVMRPC_ERR_REMOTE);
    fprintf(stderr, "    %s\n", tvmrpc_last_error(s));
    assert_non_null(strstr(tvmrpc_last_error(s), reason));
    char *list = NULL;
    expect_rc(s, tvmrpc_listdir(s, ".", &list), 0);
    int empty = list && !*list;
    free(list);
    assert_true(empty);
    /* The workspace is the only thing in the work dir, and it is empty. */
    assert_int_equal(h_dir_entries(wd), 1);
    expect_rc(s, tvmrpc_upload(s, "small", 5, "small.txt"), 0);
    void *back = NULL;
    size_t len = 0;
    expect_rc(s, tvmrpc_download(s, "small.txt", &back, &len), 0);
    int same = len == 5 && memcmp(back, "small", 5) == 0;
    free(back);
    assert_true(same);
    h_close_sess(s);
    expect_dir_empty(wd);
    s = connect_sess(port, "fk9", 0);
    echo_ok(s);
    h_close_sess(s);
}

static void test_full_disk_tmpfs(void **state)
{
    const char *wd = workdir_new();
    if (mount("tmpfs", wd, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0700") < 0) {
        fprintf(stderr, "    cannot mount a tmpfs (%s): skipped\n", strerror(errno));
        skip();
    }
    snprintf(mountpoint, sizeof(mountpoint), "%s", wd);
    hproc_t *srv = start_server("fk9", 0, wd, NULL);
    upload_too_big(srv->port, wd, "No space left on device");
}

/* Start a server under RLIMIT_FSIZE (1 MiB); SIGXFSZ ignored or not. */
static hproc_t *start_server_fsize(const char *wd, int ignore_sigxfsz)
{
    struct rlimit old, lim = {MIB, MIB};
    struct sigaction sa_old, sa_ign = {.sa_handler = SIG_IGN}, sa_dfl = {.sa_handler = SIG_DFL};
    getrlimit(RLIMIT_FSIZE, &old);
    lim.rlim_max = old.rlim_max;
    if (lim.rlim_cur > old.rlim_max)
        lim.rlim_cur = old.rlim_max;
    /* Both are inherited through fork and exec; put ours back at once. */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    sigaction(SIGXFSZ, ignore_sigxfsz ? &sa_ign : &sa_dfl, &sa_old);
    hproc_t *p = h_proc_new();
    const char *argv[] = {"server", "--host", "127.0.0.1",  "--port", "0",
                          "--key",  "fk9",    "--work-dir", wd,       NULL};
    int rc = h_spawn(p, argv);
    sigaction(SIGXFSZ, &sa_old, NULL);
    setrlimit(RLIMIT_FSIZE, &old);
    assert_int_equal(rc, 0);
    if (h_wait_log(p, "bind to 127.0.0.1:", H_TIMEOUT_MS) < 0) {
        h_dump_log(p);
        fail_msg("server under RLIMIT_FSIZE did not start");
    }
    p->port = h_log_port(p);
    assert_true(p->port > 0);
    return p;
}

static void test_full_disk_rlimit_fsize(void **state)
{
    const char *wd = workdir_new();
    hproc_t *srv = start_server_fsize(wd, 1);
    upload_too_big(srv->port, wd, "File too large");
}

/* An operator's `ulimit -f` leaves SIGXFSZ at its default (terminate): the
 * server must still answer with an error instead of losing the session. */
static void test_full_disk_ulimit_default_signal(void **state)
{
    const char *wd = workdir_new();
    hproc_t *srv = start_server_fsize(wd, 0);
    int killed = h_log_count(srv, "worker killed by signal");
    upload_too_big(srv->port, wd, "File too large");
    assert_int_equal(h_log_count(srv, "worker killed by signal"), killed);
}

/* ---- 7. access control ----------------------------------------------------------------- */

static void test_server_allow_list(void **state)
{
    const char *deny[] = {"--allow", "10.0.0.0/8,::2", NULL};
    hproc_t *srv = start_server("fk10", 0, workdir_new(), deny);
    char err[NET_ERR_LEN];
    int fd = net_connect("127.0.0.1", srv->port, IO_MS, err);
    assert_true(fd >= 0);
    /* Refused at accept: closed before a byte is read or written. */
    assert_true(h_peer_closed(fd, H_TIMEOUT_MS));
    close(fd);
    assert_int_equal(h_wait_log(srv, "not in --allow", H_TIMEOUT_MS), 0);
    char msg[1024];
    assert_null(h_track_sess(tvmrpc_connect("127.0.0.1", srv->port, "fk10", 0, msg, sizeof(msg))));
    assert_int_equal(h_log_count(srv, "started"), 0);
    const char *allow[] = {"--allow", "10.0.0.0/8,127.0.0.1", NULL};
    hproc_t *ok = start_server("fk10", 0, workdir_new(), allow);
    tvmrpc_sess_t *s = connect_sess(ok->port, "fk10", 0);
    echo_ok(s);
    h_close_sess(s);
}

/* Unfinished handshakes from one address are capped: the one over the cap
 * is closed at accept; the others, and a real client after one leaves,
 * are served. */
static void test_server_max_conns_per_peer(void **state)
{
    const char *cap[] = {"--max-conns-per-peer", "2", NULL};
    hproc_t *srv = start_server("fk11", 0, workdir_new(), cap);
    char err[NET_ERR_LEN];
    int idle[2];
    for (int i = 0; i < 2; i++) {
        idle[i] = net_connect("127.0.0.1", srv->port, IO_MS, err);
        assert_true(idle[i] >= 0);
    }
    /* Accepted in arrival order: this one is the third. */
    int over = net_connect("127.0.0.1", srv->port, IO_MS, err);
    assert_true(over >= 0);
    assert_true(h_peer_closed(over, H_TIMEOUT_MS));
    close(over);
    assert_int_equal(h_wait_log(srv, "--max-conns-per-peer handshakes", H_TIMEOUT_MS), 0);
    assert_false(h_peer_closed(idle[0], 50));
    close(idle[1]);
    /* The server counts the close when it reads it; a client retries until then. */
    tvmrpc_sess_t *s = NULL;
    char msg[1024];
    for (int i = 0; i < 100 && !s; i++)
        if (!(s = h_track_sess(
                  tvmrpc_connect("127.0.0.1", srv->port, "fk11", 0, msg, sizeof(msg)))))
            usleep(20000);
    assert_non_null(s);
    echo_ok(s);
    h_close_sess(s);
    close(idle[0]);
}

/* ---- 8. out of file descriptors ------------------------------------------------------ */

/* Set a running daemon's soft open-file limit; the old one in *old. Only
 * the soft one: a hard limit cannot be raised back without privileges (and
 * the proxy raises its soft limit only at start). */
static void limit_fds(pid_t pid, rlim_t n, struct rlimit *old)
{
    struct rlimit cur, r;
    assert_int_equal(prlimit(pid, RLIMIT_NOFILE, NULL, &cur), 0);
    r.rlim_cur = n < cur.rlim_max ? n : cur.rlim_max;
    r.rlim_max = cur.rlim_max;
    assert_int_equal(prlimit(pid, RLIMIT_NOFILE, &r, NULL), 0);
    if (old)
        *old = cur;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

enum { FD_LIMIT = 32, FD_PEERS = 64 };

static int fds_at_limit(void *arg)
{
    return h_fd_count(((hproc_t *)arg)->pid) >= FD_LIMIT;
}

/* With its descriptors used up by idle peers, a daemon must wait (neither
 * spin on its listening socket nor flood its log), and serve again once
 * they leave. Over 1 s a busy loop burns ~100 ticks and writes megabytes
 * of log; a waiting daemon ~0 ticks and a line or two. The log is only
 * stat'ed: reading a flooded one would take longer than the test. */
static void exhaust_fds(hproc_t *p)
{
    int fds[FD_PEERS];
    char err[NET_ERR_LEN];
    struct rlimit old;
    limit_fds(p->pid, FD_LIMIT, &old);
    for (int i = 0; i < FD_PEERS; i++) {
        fds[i] = net_connect("127.0.0.1", p->port, IO_MS, err);
        assert_true(fds[i] >= 0);
    }
    assert_int_equal(h_wait_until(fds_at_limit, p, H_TIMEOUT_MS), 0);
    long t0 = cpu_ticks(p->pid), log0 = file_size(p->log_path);
    h_sleep_ms(1000);
    long used = cpu_ticks(p->pid) - t0, logged = file_size(p->log_path) - log0;
    for (int i = 0; i < FD_PEERS; i++)
        close(fds[i]);
    limit_fds(p->pid, old.rlim_cur, NULL);
    fprintf(stderr, "    out of fds for 1 s: %ld CPU ticks, %ld bytes of log\n", used, logged);
    if (used >= 50 || logged > 4096)
        h_stop(p); /* a flooding daemon: stop it before its log fills the disk */
    assert_true(used < 50);
    assert_true(logged <= 4096);
    assert_true(h_log_count(p, "Too many open files") > 0);
}

static void test_server_out_of_fds(void **state)
{
    /* Every peer is 127.0.0.1: lift the per-address cap to reach the fd limit. */
    const char *nocap[] = {"--max-conns-per-peer", "0", NULL};
    hproc_t *srv = start_server("fk12", 0, workdir_new(), nocap);
    exhaust_fds(srv);
    tvmrpc_sess_t *s = connect_sess(srv->port, "fk12", 0);
    echo_ok(s);
    h_close_sess(s);
}

static void test_tracker_out_of_fds(void **state)
{
    hproc_t *t = start_tracker_at(0);
    exhaust_fds(t);
    wait_summary(t->port, "\"queue_info\"", 1, H_TIMEOUT_MS);
}

static void test_proxy_out_of_fds(void **state)
{
    hproc_t *t = start_tracker_at(0);
    hproc_t *px = start_proxy(t->port);
    exhaust_fds(px);
    int srv, cli;
    raw_pair(t->port, px->port, "fdx", &srv, &cli);
    assert_int_equal(pump(srv, cli, MIB, NULL, NULL), 0);
    close(srv);
    close(cli);
}

/* ---- setup ------------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    /* Crashes must reach the server as signals, not as sanitizer reports;
     * later options win, so the caller's others stay. */
    char asan[1024];
    const char *prev = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof(asan), "%s%shandle_segv=0:handle_abort=0", prev ? prev : "",
             prev && *prev ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_server_sigkill_mid_session, cleanup),
        cmocka_unit_test_teardown(test_server_sigkill_idle, cleanup),
        cmocka_unit_test_teardown(test_tracker_restart, cleanup),
        cmocka_unit_test_teardown(test_requester_vanishes, cleanup),
        cmocka_unit_test_teardown(test_proxy_killed_and_restarted, cleanup),
        cmocka_unit_test_teardown(test_client_killed_mid_copy, cleanup),
        cmocka_unit_test_teardown(test_client_resets_mid_copy, cleanup),
        cmocka_unit_test_teardown(test_proxy_peer_vanishes, cleanup),
        cmocka_unit_test_teardown(test_kernel_segfault, cleanup),
        cmocka_unit_test_teardown(test_kernel_abort, cleanup),
        cmocka_unit_test_teardown(test_kernel_spins_until_timeout, cleanup),
        cmocka_unit_test_teardown(test_full_disk_tmpfs, cleanup),
        cmocka_unit_test_teardown(test_full_disk_rlimit_fsize, cleanup),
        cmocka_unit_test_teardown(test_full_disk_ulimit_default_signal, cleanup),
        cmocka_unit_test_teardown(test_server_allow_list, cleanup),
        cmocka_unit_test_teardown(test_server_max_conns_per_peer, cleanup),
        cmocka_unit_test_teardown(test_server_out_of_fds, cleanup),
        cmocka_unit_test_teardown(test_tracker_out_of_fds, cleanup),
        cmocka_unit_test_teardown(test_proxy_out_of_fds, cleanup),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
