#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/net.h"
#include "client/tracker_client.h"
#include "tracker/proto.h"

#define BIND_LINE "bind to 127.0.0.1:"

int64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

const char *h_bin(void)
{
    const char *b = getenv("TVMRPC_BIN");
    return b ? b : "./tvmrpc";
}

/* The binary under test, then argv (NULL-terminated), into args[cap]. */
static void bin_argv(const char **args, int cap, const char *const *argv)
{
    int n = 0;
    args[n++] = h_bin();
    for (int i = 0; argv[i] && n < cap - 1; i++)
        args[n++] = argv[i];
    args[n] = NULL;
}

int h_spawn(hproc_t *p, const char *const *argv)
{
    memset(p, 0, sizeof(*p));
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    /* A fresh file, created before the fork: waits on the log must never
     * read an older file of the same name (pids are reused), and the
     * child may not have opened it yet when the parent starts reading. */
    snprintf(p->log_path, sizeof(p->log_path), "%s/tvmrpc-test-%d-XXXXXX.log", tmp, (int)getpid());
    int fd = mkstemps(p->log_path, 4);
    if (fd < 0)
        return -1;
    const char *args[64];
    bin_argv(args, 64, argv);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        return -1;
    }
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        execv(args[0], (char *const *)args);
        _exit(127);
    }
    close(fd);
    p->pid = pid;
    return 0;
}

static char *read_log(hproc_t *p)
{
    FILE *fp = fopen(p->log_path, "r");
    if (!fp)
        return NULL;
    size_t cap = 4096, len = 0;
    char *s = malloc(cap);
    size_t r;
    while (s && (r = fread(s + len, 1, cap - len - 1, fp)) > 0) {
        len += r;
        if (cap - len < 2) {
            char *ns = realloc(s, cap * 2);
            if (!ns) {
                free(s);
                s = NULL;
                break;
            }
            s = ns;
            cap *= 2;
        }
    }
    fclose(fp);
    if (s)
        s[len] = '\0';
    return s;
}

int h_log_count(hproc_t *p, const char *needle)
{
    char *s = read_log(p);
    int n = 0;
    for (char *q = s; q && (q = strstr(q, needle)); q += strlen(needle))
        n++;
    free(s);
    return n;
}

static int proc_exited(hproc_t *p)
{
    int status;
    return p->pid > 0 && waitpid(p->pid, &status, WNOHANG) == p->pid ? (p->pid = -status - 1, 1)
                                                                     : 0;
}

int h_wait_log(hproc_t *p, const char *needle, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    while (h_now_ms() < deadline) {
        if (h_log_count(p, needle) > 0)
            return 0;
        if (p->pid > 0 && proc_exited(p))
            return h_log_count(p, needle) > 0 ? 0 : -1;
        h_sleep_ms(5);
    }
    return -1;
}

int h_wait_log_count(hproc_t *p, const char *needle, int before, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    while (h_now_ms() < deadline) {
        if (h_log_count(p, needle) > before)
            return 0;
        h_sleep_ms(10);
    }
    return -1;
}

int h_log_port(hproc_t *p)
{
    char *s = read_log(p);
    char *at = s ? strstr(s, BIND_LINE) : NULL;
    int port = at ? atoi(at + strlen(BIND_LINE)) : 0;
    free(s);
    return port;
}

int h_spawn_ready(hproc_t *p, const char *const *argv, const char *ready)
{
    if (h_spawn(p, argv) < 0)
        return -1;
    if (h_wait_log(p, ready, H_TIMEOUT_MS) < 0) {
        fprintf(stderr, "%s did not log \"%s\"\n", argv[0], ready);
        h_dump_log(p);
        return -1;
    }
    p->port = h_log_port(p);
    return 0;
}

int h_spawn_bound(hproc_t *p, const char *const *argv)
{
    return h_spawn_ready(p, argv, BIND_LINE) == 0 && p->port > 0 ? 0 : -1;
}

/* head... then extra... (NULL-terminated) into argv[cap]. */
static void join_args(const char **argv, int cap, const char *const *head, const char *const *extra)
{
    int n = 0;
    for (int i = 0; head[i] && n < cap - 1; i++)
        argv[n++] = head[i];
    for (int i = 0; extra && extra[i] && n < cap - 1; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
}

int h_start_tracker(hproc_t *p, const char *const *extra)
{
    static const char *const head[] = {"tracker", "--host", "127.0.0.1", "--port", "0", NULL};
    const char *argv[48];
    join_args(argv, 48, head, extra);
    return h_spawn_bound(p, argv);
}

int h_start_server(hproc_t *p, const char *const *extra)
{
    static const char *const head[] = {"server", "--host", "127.0.0.1", "--port", "0", NULL};
    const char *argv[48];
    join_args(argv, 48, head, extra);
    return h_spawn_bound(p, argv);
}

int h_start_proxy(hproc_t *p, const char *const *extra)
{
    static const char *const head[] = {"proxy", "--host",     "127.0.0.1", "--port",
                                       "0",     "--web-port", "0",         NULL};
    const char *argv[48];
    join_args(argv, 48, head, extra);
    return h_spawn_bound(p, argv);
}

int h_start_server_through(hproc_t *p, int proxy_port, const char *key, const char *const *extra)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", proxy_port);
    const char *const head[] = {"server", "--through-proxy", "--host", "127.0.0.1", "--port",
                                port,     "--key",           key,      NULL};
    const char *argv[48];
    join_args(argv, 48, head, extra);
    return h_spawn_ready(p, argv, "serving through proxy");
}

int h_start_fixture_server(hproc_t *p)
{
    setenv("ASAN_OPTIONS", "handle_segv=0:detect_leaks=0", 1);
    setenv("TSAN_OPTIONS", "handle_segv=0", 1);
    setenv("TVM_NUM_THREADS", "4", 1);
    return h_start_server(p, NULL);
}

int h_free_port(void)
{
    char err[NET_ERR_LEN];
    int port = -1;
    int fd = net_listen_range("127.0.0.1", 0, 0, 1, &port, err);
    if (fd < 0)
        return -1;
    close(fd);
    return port;
}

int h_wait_exit(hproc_t *p, int timeout_ms)
{
    if (p->pid < 0)
        return -p->pid - 1;
    int64_t deadline = h_now_ms() + timeout_ms;
    while (h_now_ms() < deadline) {
        int status;
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            p->pid = -status - 1;
            return status;
        }
        h_sleep_ms(5);
    }
    return -1;
}

int h_stop(hproc_t *p)
{
    if (p->pid <= 0)
        return p->pid < 0 ? -p->pid - 1 : -1;
    kill(p->pid, SIGTERM);
    int status = h_wait_exit(p, 5000);
    if (status == -1 && p->pid > 0) {
        kill(p->pid, SIGKILL);
        status = h_wait_exit(p, 5000);
    }
    return status;
}

void h_dump_log(hproc_t *p)
{
    char *s = read_log(p);
    fprintf(stderr, "---- log of %s ----\n%s\n---- end of log ----\n", p->log_path, s ? s : "");
    free(s);
}

int h_run(const char *const *argv, char *out, size_t outlen, int timeout_ms)
{
    int pfd[2];
    if (pipe(pfd) < 0)
        return -1;
    const char *args[64];
    bin_argv(args, 64, argv);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execv(args[0], (char *const *)args);
        _exit(127);
    }
    close(pfd[1]);
    size_t len = 0;
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(deadline - h_now_ms());
        struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
        if (left <= 0 || poll(&pf, 1, left) <= 0)
            break;
        ssize_t r = read(pfd[0], out + len, outlen - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len >= outlen - 1)
            break;
    }
    out[len] = '\0';
    close(pfd[0]);
    hproc_t p = {.pid = pid};
    int status = h_wait_exit(&p, timeout_ms);
    if (status == -1) {
        kill(pid, SIGKILL);
        h_wait_exit(&p, 5000);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int h_tracker_connect(int port)
{
    char err[256];
    int fd = tc_connect("127.0.0.1", port, 0, H_TIMEOUT_MS, err, sizeof(err));
    if (fd < 0)
        fprintf(stderr, "h_tracker_connect: %s\n", err);
    return fd;
}

int h_tracker_send(int fd, const char *text)
{
    char err[256];
    return tc_send(fd, text, H_TIMEOUT_MS, err, sizeof(err));
}

char *h_tracker_recv_text(int fd, int timeout_ms)
{
    uint8_t hdr[4];
    if (net_read_full(fd, hdr, 4, timeout_ms, NULL, NULL) < 0)
        return NULL;
    int32_t len = (int32_t)le32(hdr);
    if (len <= 0 || len > TRACKER_MAX_FRAME)
        return NULL;
    char *s = malloc((size_t)len + 1);
    if (!s || net_read_full(fd, s, (size_t)len, timeout_ms, NULL, NULL) < 0) {
        free(s);
        return NULL;
    }
    s[len] = '\0';
    return s;
}

char *h_tracker_call(int fd, const char *text)
{
    if (h_tracker_send(fd, text) < 0)
        return NULL;
    return h_tracker_recv_text(fd, H_TIMEOUT_MS);
}

int h_tracker_silent(int fd, int ms)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    return poll(&pf, 1, ms) == 0;
}

int h_peer_closed(int fd, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    char b[4096];
    while (h_now_ms() < deadline) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, (int)(deadline - h_now_ms())) <= 0)
            return 0;
        ssize_t r = recv(fd, b, sizeof(b), 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return 1;
        if (r < 0 && errno != EINTR && errno != EAGAIN)
            return 1;
    }
    return 0;
}

char *h_tracker_summary(int port)
{
    char err[256];
    /* Short bounds: callers poll this until a deadline of their own. */
    int fd = tc_connect("127.0.0.1", port, 0, 2000, err, sizeof(err));
    if (fd < 0)
        return NULL;
    char *s =
        tc_send(fd, "[6]", 2000, err, sizeof(err)) == 0 ? h_tracker_recv_text(fd, 2000) : NULL;
    close(fd);
    return s;
}

typedef struct summary_q {
    int port;
    const char *needle;
    int present;
} summary_q_t;

static int summary_matches(void *arg)
{
    summary_q_t *q = arg;
    char *s = h_tracker_summary(q->port);
    int ok = s && (strstr(s, q->needle) != NULL) == (q->present != 0);
    free(s);
    return ok;
}

int h_wait_summary(int port, const char *needle, int present, int timeout_ms)
{
    summary_q_t q = {port, needle, present};
    if (h_wait_until(summary_matches, &q, timeout_ms) == 0)
        return 0;
    char *s = h_tracker_summary(port);
    fprintf(stderr, "SUMMARY %s %s within %d ms; last: %s\n", present ? "never had" : "still has",
            needle, timeout_ms, s ? s : "(none)");
    free(s);
    return -1;
}

int h_wait_until(int (*cond)(void *), void *arg, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    while (h_now_ms() < deadline) {
        if (cond(arg))
            return 0;
        h_sleep_ms(5);
    }
    return cond(arg) ? 0 : -1;
}

/* ---- the public client ------------------------------------------------------------ */

static int session_dead(int rc)
{
    return rc == TVMRPC_ERR_IO || rc == TVMRPC_ERR_TIMEOUT || rc == TVMRPC_ERR_PROTOCOL;
}

int h_call_global(tvmrpc_sess_t *s, const char *name, const tvmrpc_value_t *args, int n,
                  tvmrpc_value_t *ret)
{
    static _Thread_local tvmrpc_array_t held;
    uint64_t f;
    int rc = tvmrpc_get_func(s, name, &f);
    if (rc != TVMRPC_OK)
        return rc;
    rc = tvmrpc_call(s, f, args, n, ret);
    if (rc == TVMRPC_OK && ret && ret->kind == TVMRPC_TENSOR) {
        held = *ret->u.arr;
        ret->u.arr = &held;
    }
    if (session_dead(rc))
        return rc;
    int frc = tvmrpc_free_handle(s, f, TVMRPC_FUNC);
    return rc != TVMRPC_OK ? rc : frc;
}

static hproc_t *sess_log;

void h_sess_log(hproc_t *p)
{
    sess_log = p;
}

void h_sess_ok(tvmrpc_sess_t *s, int rc, const char *what)
{
    if (rc == TVMRPC_OK)
        return;
    if (sess_log)
        h_dump_log(sess_log);
    fail_msg("%s: %s (%s)", what, tvmrpc_strerror(rc), tvmrpc_last_error(s));
}

void h_sess_expect_error(tvmrpc_sess_t *s, int rc, const char *needle)
{
    if (rc != TVMRPC_ERR_REMOTE) {
        if (sess_log)
            h_dump_log(sess_log);
        fail_msg("expected a remote error with \"%s\", got %s (%s)", needle, tvmrpc_strerror(rc),
                 tvmrpc_last_error(s));
    }
    if (!strstr(tvmrpc_last_error(s), needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, tvmrpc_last_error(s));
}

uint64_t h_mod_func(tvmrpc_sess_t *s, uint64_t mod, const char *name)
{
    tvmrpc_value_t a[3] = {tvmrpc_v_handle(TVMRPC_MODULE, mod), tvmrpc_v_str(name),
                           tvmrpc_v_bool(1)},
                   f;
    h_sess_ok(s, h_call_global(s, "tvm.rpc.server.ModuleGetFunction", a, 3, &f),
              "ModuleGetFunction");
    return f.kind == TVMRPC_FUNC ? f.u.h : 0;
}

int h_time_evaluator(tvmrpc_sess_t *s, uint64_t mod, const char *name, int number, int repeat,
                     uint64_t *fn)
{
    tvmrpc_value_t a[12] = {tvmrpc_v_handle(TVMRPC_MODULE, mod),
                            tvmrpc_v_str(name),
                            tvmrpc_v_int(1), /* device type: cpu */
                            tvmrpc_v_int(0), /* device id */
                            tvmrpc_v_int(number),
                            tvmrpc_v_int(repeat),
                            tvmrpc_v_int(0),   /* min_repeat_ms */
                            tvmrpc_v_int(100), /* limit_zero_time_iterations */
                            tvmrpc_v_int(0),   /* cooldown_interval_ms */
                            tvmrpc_v_int(1),   /* repeats_to_cooldown */
                            tvmrpc_v_int(0),   /* cache_flush_bytes */
                            tvmrpc_v_str("")}, /* f_preproc */
        r;
    int rc = h_call_global(s, "runtime.RPCTimeEvaluator", a, 12, &r);
    if (rc == TVMRPC_OK && r.kind != TVMRPC_FUNC)
        rc = TVMRPC_ERR_PROTOCOL;
    *fn = rc == TVMRPC_OK ? r.u.h : 0;
    return rc;
}

/* ---- /proc ---------------------------------------------------------------------- */

int h_children(pid_t pid, pid_t *out, int max)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *fp = fopen(path, "r");
    int n = 0, v;
    while (fp && n < max && fscanf(fp, "%d", &v) == 1)
        out[n++] = v;
    if (fp)
        fclose(fp);
    return n;
}

int h_fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    return h_dir_entries(path);
}

/* ---- files ---------------------------------------------------------------------- */

const char *h_fixture_dir(void)
{
    static char dir[PATH_MAX];
    const char *env = getenv("TVMRPC_FIXTURES");
    const char *bin = h_bin(), *slash = strrchr(bin, '/');
    if (env)
        snprintf(dir, sizeof(dir), "%s", env);
    else
        snprintf(dir, sizeof(dir), "%.*s/tests/fixtures", slash ? (int)(slash - bin) : 1,
                 slash ? bin : ".");
    return dir;
}

char *h_read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    struct stat st;
    char *p = NULL;
    if (fp && fstat(fileno(fp), &st) == 0 && (p = malloc((size_t)st.st_size + 1)) &&
        fread(p, 1, (size_t)st.st_size, fp) != (size_t)st.st_size) {
        free(p);
        p = NULL;
    }
    if (fp)
        fclose(fp);
    if (p) {
        p[st.st_size] = '\0';
        *len = (size_t)st.st_size;
    }
    return p;
}

int h_make_tmpdir(char *out, size_t outlen, const char *what)
{
    const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(out, outlen, "%s/tvmrpc-%s-XXXXXX", tmp, what);
    return mkdtemp(out) ? 0 : -1;
}

int h_dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

int h_dir_is_empty(void *dir)
{
    return h_dir_entries(dir) == 0;
}

int h_rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return -1;
    if (!S_ISDIR(st.st_mode))
        return unlink(path);
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char sub[PATH_MAX];
        if (snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name) < (int)sizeof(sub))
            h_rm_tree(sub);
    }
    if (d)
        closedir(d);
    return rmdir(path);
}

/* ---- cleanup ---------------------------------------------------------------------- */

#define MAX_TRACKED_PROCS 8
#define MAX_TRACKED_SESS 8
#define MAX_TRACKED_FDS 16

static hproc_t procs[MAX_TRACKED_PROCS];
static tvmrpc_sess_t *sessions[MAX_TRACKED_SESS];
static int fds[MAX_TRACKED_FDS];
static int nprocs, nsessions, nfds;

hproc_t *h_proc_new(void)
{
    assert_true(nprocs < MAX_TRACKED_PROCS);
    hproc_t *p = &procs[nprocs++];
    memset(p, 0, sizeof(*p));
    return p;
}

tvmrpc_sess_t *h_track_sess(tvmrpc_sess_t *s)
{
    if (s && nsessions < MAX_TRACKED_SESS)
        sessions[nsessions++] = s;
    return s;
}

void h_forget_sess(tvmrpc_sess_t *s)
{
    for (int i = 0; i < nsessions; i++)
        if (sessions[i] == s)
            sessions[i] = NULL;
}

void h_close_sess(tvmrpc_sess_t *s)
{
    h_forget_sess(s);
    tvmrpc_close(s);
}

int h_track_fd(int fd)
{
    if (fd >= 0 && nfds < MAX_TRACKED_FDS)
        fds[nfds++] = fd;
    return fd;
}

void h_close_fd(int fd)
{
    for (int i = 0; i < nfds; i++)
        if (fds[i] == fd)
            fds[i] = -1;
    close(fd);
}

void h_cleanup(void)
{
    for (int i = 0; i < nsessions; i++)
        if (sessions[i])
            tvmrpc_close(sessions[i]);
    for (int i = 0; i < nfds; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    for (int i = 0; i < nprocs; i++)
        if (procs[i].pid > 0)
            h_stop(&procs[i]);
    nsessions = nfds = nprocs = 0;
}
