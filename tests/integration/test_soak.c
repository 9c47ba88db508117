/* test_soak: many clients cycling request -> upload -> load -> call ->
 * release against a tracker, a proxy in tracker mode and several servers
 * (some registered directly, some through the proxy), for
 * $TVMRPC_SOAK_SECONDS (default 5; scripts/soak.sh runs it for minutes).
 * Every result is checked, and afterwards the daemons must be back where
 * they started: the same open file descriptors and empty work dirs
 * (exactly), and the same RSS give or take a small bound. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/tracker_client.h"
#include "tvmrpc/client.h"

#define IO_MS 30000
#define KEY "soak"
#define N_DIRECT 2
#define N_PROXIED 2
#define N_SERVERS (N_DIRECT + N_PROXIED)
#define MAX_CLIENTS 64
#define MAX_ELEMS 8192

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif
/* RSS may move a little (malloc arenas, page cache of the log file); a
 * leak of a few hundred bytes per cycle passes this within minutes. Under
 * ASan freed memory sits in quarantine, so only gross growth is caught. */
#define RSS_SLACK_KIB (SANITIZED ? 65536L : 2048L)

/* ---- the farm ------------------------------------------------------------------ */

typedef struct daemon_ {
    const char *role;
    hproc_t p;
    char workdir[PATH_MAX]; /* servers only */
    int fds0;
    long rss0;
} daemon_t;

static daemon_t tracker, proxy, servers[N_SERVERS];
static daemon_t *all[2 + N_SERVERS];
static int nall;
static uint8_t *lib; /* vadd.so, uploaded by every cycle */
static size_t lib_len;

static int env_int(const char *name, int dflt, int lo, int hi)
{
    const char *v = getenv(name);
    int n = v && *v ? atoi(v) : dflt;
    return n < lo ? lo : n > hi ? hi : n;
}

/* The harness starts it; the farm remembers it for the checks. */
static daemon_t *enroll(daemon_t *d, const char *role)
{
    d->role = role;
    all[nall++] = d;
    return d;
}

static int start_direct(daemon_t *d)
{
    char taddr[64];
    snprintf(taddr, sizeof(taddr), "127.0.0.1:%d", tracker.p.port);
    const char *extra[] = {"--key", KEY, "--tracker", taddr, "--work-dir", d->workdir, NULL};
    if (h_make_tmpdir(d->workdir, sizeof(d->workdir), "soak") < 0)
        return -1;
    return h_start_server(&enroll(d, "server")->p, extra);
}

static int start_proxied(daemon_t *d)
{
    const char *extra[] = {"--work-dir", d->workdir, NULL};
    if (h_make_tmpdir(d->workdir, sizeof(d->workdir), "soak") < 0)
        return -1;
    return h_start_server_through(&enroll(d, "proxied server")->p, proxy.p.port, KEY, extra);
}

static int start_farm(void)
{
    if (h_start_tracker(&enroll(&tracker, "tracker")->p, NULL) < 0)
        return -1;
    char taddr[64];
    snprintf(taddr, sizeof(taddr), "127.0.0.1:%d", tracker.p.port);
    const char *extra[] = {"--tracker", taddr, NULL};
    if (h_start_proxy(&enroll(&proxy, "proxy")->p, extra) < 0)
        return -1;
    for (int i = 0; i < N_SERVERS; i++)
        if ((i < N_DIRECT ? start_direct : start_proxied)(&servers[i]) < 0)
            return -1;
    return 0;
}

/* ---- what we watch ------------------------------------------------------------------ */

static void fd_list(pid_t pid)
{
    char path[64], link[PATH_MAX], target[PATH_MAX];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        fprintf(stderr, "      fd %s -> %s\n", e->d_name, target);
    }
    if (d)
        closedir(d);
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *fp = fopen(path, "r");
    long kib = -1;
    while (fp && fgets(line, sizeof(line), fp))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (fp)
        fclose(fp);
    return kib;
}

/* One tracker connection for every SUMMARY, open from start to end: a
 * connection per query would still be open at the tracker, now and then,
 * when its descriptors are counted. */
static int monitor_fd = -1;

static int summary_has(const char *needle)
{
    char err[256];
    if (monitor_fd < 0)
        monitor_fd = tc_connect("127.0.0.1", tracker.p.port, 0, 2000, err, sizeof(err));
    if (monitor_fd < 0)
        return 0;
    char *s = tc_send(monitor_fd, "[6]", 2000, err, sizeof(err)) == 0
                  ? h_tracker_recv_text(monitor_fd, 2000)
                  : NULL;
    if (!s) {
        close(monitor_fd);
        monitor_fd = -1;
    }
    int ok = s && strstr(s, needle);
    free(s);
    return ok;
}

/* Quiet: every server free and waiting, nobody queued, no session left. */
static int farm_idle(void *arg)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "\"%s\": {\"free\": %d, \"pending\": 0}", KEY, N_SERVERS);
    for (int i = 0; i < N_SERVERS; i++)
        if (h_dir_entries(servers[i].workdir) != 0)
            return 0;
    return summary_has(needle);
}

static int fds_back(void *arg)
{
    for (int i = 0; i < nall; i++)
        if (h_fd_count(all[i]->p.pid) != all[i]->fds0)
            return 0;
    return 1;
}

static void wait_idle(const char *when)
{
    if (h_wait_until(farm_idle, NULL, 20000) == 0)
        return;
    for (int i = 0; i < N_SERVERS; i++)
        fprintf(stderr, "    %s work dir %s: %d entries\n", servers[i].role, servers[i].workdir,
                h_dir_entries(servers[i].workdir));
    h_dump_log(&tracker.p);
    fail_msg("the farm is not idle %s", when);
}

/* ---- one client --------------------------------------------------------------------- */

typedef struct client {
    int id;
    unsigned seed;
    int64_t until; /* run cycles until then, or exactly one if 0 */
    int cycles, failures;
    char first_error[1024];
} client_t;

typedef struct cyc {
    client_t *c;
    tvmrpc_sess_t *s;
    uint64_t mod, fn;
    tvmrpc_array_t arr[3];
    int narr;
    float *host[3];
} cyc_t;

static int cyc_fail(cyc_t *y, const char *step, int rc)
{
    client_t *c = y->c;
    if (c->failures++ == 0)
        snprintf(c->first_error, sizeof(c->first_error), "client %d cycle %d: %s: %d %s: %.700s",
                 c->id, c->cycles, step, rc, tvmrpc_strerror(rc),
                 y->s ? tvmrpc_last_error(y->s) : "");
    return -1;
}

static int cyc_connect(cyc_t *y)
{
    tvmrpc_opts_t o;
    tvmrpc_opts_init(&o);
    o.timeout_ms = IO_MS;
    char err[768];
    y->s = tvmrpc_request_opts("127.0.0.1", tracker.p.port, KEY, 1, 3, &o, err, sizeof(err));
    if (y->s)
        return 0;
    client_t *c = y->c;
    if (c->failures++ == 0)
        snprintf(c->first_error, sizeof(c->first_error), "client %d cycle %d: request: %.700s",
                 c->id, c->cycles, err);
    return -1;
}

/* Upload vadd.so (sometimes read it back), load it, find vadd. */
static int cyc_load(cyc_t *y)
{
    int rc = tvmrpc_upload(y->s, lib, lib_len, "vadd.so");
    if (rc < 0)
        return cyc_fail(y, "upload", rc);
    if (y->c->cycles % 4 == 1) {
        void *back = NULL;
        size_t len = 0;
        rc = tvmrpc_download(y->s, "vadd.so", &back, &len);
        int same = rc == 0 && len == lib_len && memcmp(back, lib, len) == 0;
        free(back);
        if (!same)
            return cyc_fail(y, "download differs from upload", rc);
    }
    tvmrpc_value_t name = tvmrpc_v_str("vadd.so"), mod, fv;
    if ((rc = h_call_global(y->s, "tvm.rpc.server.load_module", &name, 1, &mod)) < 0 ||
        mod.kind != TVMRPC_MODULE)
        return cyc_fail(y, "load_module", rc);
    y->mod = mod.u.h;
    tvmrpc_value_t gf[3] = {tvmrpc_v_handle(TVMRPC_MODULE, y->mod), tvmrpc_v_str("vadd"),
                            tvmrpc_v_bool(1)};
    if ((rc = h_call_global(y->s, "tvm.rpc.server.ModuleGetFunction", gf, 3, &fv)) < 0 ||
        fv.kind != TVMRPC_FUNC)
        return cyc_fail(y, "ModuleGetFunction", rc);
    y->fn = fv.u.h;
    return 0;
}

/* c = a + b on the server, for a random length; checked element by element. */
static int cyc_compute(cyc_t *y)
{
    int64_t n = 1 + (int64_t)(rand_r(&y->c->seed) % MAX_ELEMS);
    size_t bytes = (size_t)n * 4;
    tvmrpc_device_t cpu = {1, 0};
    tvmrpc_dtype_t f32 = {2, 32, 1};
    for (int i = 0; i < 3; i++) {
        int rc = tvmrpc_array_alloc(y->s, cpu, 1, &n, f32, NULL, &y->arr[i]);
        if (rc < 0)
            return cyc_fail(y, "alloc", rc);
        y->narr++;
    }
    for (int64_t i = 0; i < n; i++) {
        y->host[0][i] = (float)(rand_r(&y->c->seed) % 1000) * 0.25f;
        y->host[1][i] = (float)i - 7.5f;
        y->host[2][i] = -1.0f;
    }
    int rc;
    if ((rc = tvmrpc_array_copy_from_host(y->s, &y->arr[0], y->host[0], bytes)) < 0 ||
        (rc = tvmrpc_array_copy_from_host(y->s, &y->arr[1], y->host[1], bytes)) < 0)
        return cyc_fail(y, "copy to the server", rc);
    tvmrpc_value_t args[3] = {tvmrpc_v_tensor(&y->arr[0]), tvmrpc_v_tensor(&y->arr[1]),
                              tvmrpc_v_tensor(&y->arr[2])};
    if ((rc = tvmrpc_call(y->s, y->fn, args, 3, NULL)) < 0)
        return cyc_fail(y, "vadd", rc);
    if ((rc = tvmrpc_array_copy_to_host(y->s, &y->arr[2], y->host[2], bytes)) < 0)
        return cyc_fail(y, "copy from the server", rc);
    for (int64_t i = 0; i < n; i++)
        if (y->host[2][i] != y->host[0][i] + y->host[1][i])
            return cyc_fail(y, "wrong sum", 0);
    return 0;
}

/* Every third cycle a kernel error: an exception, and the session goes on. */
static int cyc_kernel_error(cyc_t *y)
{
    if (y->c->cycles % 3 != 2)
        return 0;
    tvmrpc_value_t args[2] = {tvmrpc_v_tensor(&y->arr[0]), tvmrpc_v_tensor(&y->arr[1])};
    int rc = tvmrpc_call(y->s, y->fn, args, 2, NULL);
    if (rc != TVMRPC_ERR_REMOTE || !strstr(tvmrpc_last_error(y->s), "num_args should be 3"))
        return cyc_fail(y, "vadd with 2 arguments", rc);
    tvmrpc_value_t a = tvmrpc_v_int(y->c->cycles), v;
    if ((rc = h_call_global(y->s, "testing.echo", &a, 1, &v)) < 0 || v.kind != TVMRPC_INT ||
        v.u.i != y->c->cycles)
        return cyc_fail(y, "echo after an exception", rc);
    return 0;
}

/* Release everything the cycle holds, then the session. */
static int cyc_release(cyc_t *y)
{
    int rc = 0;
    for (int i = 0; i < y->narr; i++)
        if (rc == 0 && (rc = tvmrpc_array_free(y->s, &y->arr[i])) < 0)
            cyc_fail(y, "array free", rc);
    if (rc == 0 && y->fn && (rc = tvmrpc_free_handle(y->s, y->fn, TVMRPC_FUNC)) < 0)
        cyc_fail(y, "free function", rc);
    if (rc == 0 && y->mod && (rc = tvmrpc_free_handle(y->s, y->mod, TVMRPC_MODULE)) < 0)
        cyc_fail(y, "free module", rc);
    tvmrpc_close(y->s);
    return rc < 0 ? -1 : 0;
}

static int cycle(client_t *c, float **host)
{
    cyc_t y;
    memset(&y, 0, sizeof(y));
    y.c = c;
    memcpy(y.host, host, sizeof(y.host));
    if (cyc_connect(&y) < 0)
        return -1;
    int rc = cyc_load(&y);
    if (rc == 0)
        rc = cyc_compute(&y);
    if (rc == 0)
        rc = cyc_kernel_error(&y);
    int rel = cyc_release(&y);
    return rc < 0 || rel < 0 ? -1 : 0;
}

static void *client_main(void *arg)
{
    client_t *c = arg;
    float *host[3];
    for (int i = 0; i < 3; i++)
        host[i] = malloc(MAX_ELEMS * sizeof(float));
    if (!host[0] || !host[1] || !host[2]) {
        c->failures++;
        snprintf(c->first_error, sizeof(c->first_error), "client %d: out of memory", c->id);
        goto out;
    }
    /* A failed cycle is counted and the client goes on: one bad cycle must
     * not hide whether the farm recovers. */
    for (;;) {
        cycle(c, host);
        c->cycles++;
        if (!c->until || h_now_ms() >= c->until || c->failures >= 10)
            break;
    }
out:
    for (int i = 0; i < 3; i++)
        free(host[i]);
    return NULL;
}

/* Run n clients; for `seconds`, or one cycle each if 0. Returns total cycles. */
static int run_clients(client_t *cl, int n, int seconds)
{
    pthread_t th[MAX_CLIENTS];
    int64_t until = seconds ? h_now_ms() + (int64_t)seconds * 1000 : 0;
    for (int i = 0; i < n; i++) {
        memset(&cl[i], 0, sizeof(cl[i]));
        cl[i].id = i;
        cl[i].seed = 0x5eed0000u + (unsigned)i * 7919u + (unsigned)seconds;
        cl[i].until = until;
        assert_int_equal(pthread_create(&th[i], NULL, client_main, &cl[i]), 0);
    }
    int total = 0, failures = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        total += cl[i].cycles;
        failures += cl[i].failures;
        if (cl[i].failures)
            fprintf(stderr, "    %s (%d failures)\n", cl[i].first_error, cl[i].failures);
    }
    if (failures)
        fail_msg("%d of %d cycles failed", failures, total);
    return total;
}

/* ---- the test ------------------------------------------------------------------------- */

static int load_lib(void)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/vadd.so", h_fixture_dir());
    lib = (uint8_t *)h_read_file(path, &lib_len);
    if (!lib)
        fprintf(stderr, "cannot read %s\n", path);
    return lib ? 0 : -1;
}

static void record_fds(void)
{
    for (int i = 0; i < nall; i++)
        all[i]->fds0 = h_fd_count(all[i]->p.pid);
}

static void record_rss(void)
{
    for (int i = 0; i < nall; i++)
        all[i]->rss0 = rss_kib(all[i]->p.pid);
}

static void expect_fds_back(const char *when)
{
    if (h_wait_until(fds_back, NULL, 15000) == 0)
        return;
    for (int i = 0; i < nall; i++) {
        int now = h_fd_count(all[i]->p.pid);
        if (now == all[i]->fds0)
            continue;
        fprintf(stderr, "    %s (pid %d): %d open fds, %d at the start\n", all[i]->role,
                (int)all[i]->p.pid, now, all[i]->fds0);
        fd_list(all[i]->p.pid);
    }
    fail_msg("open file descriptors did not return to their starting values %s", when);
}

static void expect_rss_back(void)
{
    int bad = 0;
    for (int i = 0; i < nall; i++) {
        long now = rss_kib(all[i]->p.pid);
        fprintf(stderr, "    %-14s pid %-7d fds %d -> %d, RSS %ld -> %ld KiB\n", all[i]->role,
                (int)all[i]->p.pid, all[i]->fds0, h_fd_count(all[i]->p.pid), all[i]->rss0, now);
        bad |= now < 0 || now > all[i]->rss0 + RSS_SLACK_KIB;
    }
    if (bad)
        fail_msg("RSS grew by more than %ld KiB", RSS_SLACK_KIB);
}

static void test_soak(void **state)
{
    int seconds = env_int("TVMRPC_SOAK_SECONDS", 5, 1, 7 * 24 * 3600);
    int nclients = env_int("TVMRPC_SOAK_CLIENTS", 6, 1, MAX_CLIENTS);
    static client_t cl[MAX_CLIENTS];
    assert_int_equal(start_farm(), 0);
    wait_idle("after start");
    record_fds();
    /* One cycle each first: buffers that are kept for reuse are not leaks. */
    run_clients(cl, nclients, 0);
    wait_idle("after the warm-up");
    expect_fds_back("after the warm-up");
    record_rss();
    int64_t t0 = h_now_ms();
    int total = run_clients(cl, nclients, seconds);
    double secs = (double)(h_now_ms() - t0) / 1000.0;
    fprintf(stderr, "    %d clients, %d cycles in %.1f s (%.1f cycles/s), all correct\n", nclients,
            total, secs, total / secs);
    for (int i = 0; i < nclients; i++)
        assert_true(cl[i].cycles > 0);
    /* Both paths (direct and through the proxy) carried sessions. */
    for (int i = 0; i < N_SERVERS; i++) {
        int n = h_log_count(&servers[i].p, " started");
        fprintf(stderr, "    %s %d served %d sessions\n", servers[i].role, i, n);
        assert_true(n > 1);
    }
    wait_idle("after the soak");
    expect_fds_back("after the soak");
    expect_rss_back();
    /* A clean stop (and, under ASan, no leak report at exit). */
    for (int i = nall - 1; i >= 0; i--) {
        int st = h_stop(&all[i]->p);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            h_dump_log(&all[i]->p);
            fail_msg("%s exited with status 0x%x", all[i]->role, st);
        }
    }
}

static int setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    if (SANITIZED) {
        /* A small quarantine keeps the daemons' RSS meaningful over a long
         * run; later options win, the caller's others stay. */
        char asan[1024];
        const char *prev = getenv("ASAN_OPTIONS");
        snprintf(asan, sizeof(asan), "%s%squarantine_size_mb=16", prev ? prev : "",
                 prev && *prev ? ":" : "");
        setenv("ASAN_OPTIONS", asan, 1);
    }
    return load_lib();
}

static int teardown(void **state)
{
    if (monitor_fd >= 0)
        close(monitor_fd);
    for (int i = nall - 1; i >= 0; i--)
        if (all[i]->p.pid > 0)
            h_stop(&all[i]->p);
    for (int i = 0; i < N_SERVERS; i++)
        if (servers[i].workdir[0])
            rmdir(servers[i].workdir); /* only if empty: a leftover workspace stays for a look */
    free(lib);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_soak),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
