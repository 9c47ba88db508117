/* The workspace verbs of the real `tvmrpc` binary (ls, put, get, rm, and
 * "+" chains of steps in one session) against real servers reached the
 * three ways: directly, through a tracker, through a proxy. Checks what is
 * printed, the files written, exit codes, the error cases, progress on a
 * terminal, and a byte-exact 32 MiB round trip. Every wait is bounded. */
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CLI_MS 60000
#define BIG (32u << 20)

typedef struct cli {
    int status; /* exit status, 128+signal, or -1 on timeout */
    char out[65536];
    char err[8192];
} cli_t;

static hproc_t direct;           /* --key files, no tracker */
static hproc_t tracker, tracked; /* server --tracker --key trk */
static hproc_t proxy, behind;    /* server --through-proxy --key prx */
static char direct_addr[64], tracker_addr[64], proxy_addr[64];
static char wd[256]; /* this test's working directory */
static cli_t r;

/* ---- processes ------------------------------------------------------------ */

static int start_all(void **state)
{
    const char *d[] = {"--key", "files", NULL};
    if (h_start_server(&direct, d) < 0)
        return -1;
    snprintf(direct_addr, sizeof(direct_addr), "127.0.0.1:%d", direct.port);
    if (h_start_tracker(&tracker, NULL) < 0)
        return -1;
    snprintf(tracker_addr, sizeof(tracker_addr), "127.0.0.1:%d", tracker.port);
    const char *t[] = {"--tracker", tracker_addr, "--key", "trk", NULL};
    if (h_start_server(&tracked, t) < 0 || h_start_proxy(&proxy, NULL) < 0)
        return -1;
    snprintf(proxy_addr, sizeof(proxy_addr), "127.0.0.1:%d", proxy.port);
    return h_start_server_through(&behind, proxy.port, "prx", NULL);
}

static int stop_all(void **state)
{
    hproc_t *all[] = {&behind, &proxy, &tracked, &tracker, &direct};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (all[i]->pid > 0)
            h_stop(all[i]);
    return 0;
}

/* ---- a fresh working directory per test ------------------------------------- */

static int wd_setup(void **state)
{
    return h_make_tmpdir(wd, sizeof(wd), "cli-files");
}

static int wd_teardown(void **state)
{
    h_rm_tree(wd);
    return 0;
}

static void write_file(const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", wd, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* The whole local file (malloc'ed), or NULL if absent. */
static char *read_file(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", wd, name);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, fp), (size_t)n);
    p[n] = '\0';
    fclose(fp);
    *len = (size_t)n;
    return p;
}

static int wd_entries(void)
{
    DIR *d = opendir(wd);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d)
        closedir(d);
    return n;
}

static void random_file(const char *name, size_t len, uint64_t seed)
{
    uint8_t *p = malloc(len);
    assert_non_null(p);
    uint64_t x = seed;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = (uint8_t)x;
    }
    write_file(name, p, len);
    free(p);
}

static void assert_same_files(const char *a, const char *b)
{
    size_t la, lb;
    char *pa = read_file(a, &la), *pb = read_file(b, &lb);
    assert_non_null(pa);
    assert_non_null(pb);
    assert_int_equal(la, lb);
    assert_true(memcmp(pa, pb, la) == 0);
    free(pa);
    free(pb);
}

/* ---- running the CLI ---------------------------------------------------------- */

static void slurp(const char *path, char *out, size_t outlen)
{
    FILE *fp = fopen(path, "rb");
    size_t n = fp ? fread(out, 1, outlen - 1, fp) : 0;
    out[n] = '\0';
    if (fp)
        fclose(fp);
}

/* Wait for pid with a deadline; exit status, 128+signal, or -1 (killed). */
static int reap(pid_t pid, int64_t deadline)
{
    int st;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (h_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void exec_cli(const char *const *argv)
{
    const char *args[64] = {h_bin()};
    int n = 1;
    for (int i = 0; argv[i] && n < 63; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    if (chdir(wd) == 0)
        execv(args[0], (char *const *)args);
    _exit(127);
}

/* `tvmrpc argv...` in wd; stdout and stderr into r. */
static int cli_run(cli_t *c, const char *const *argv)
{
    char out[512], err[512];
    snprintf(out, sizeof(out), "%s.stdout", wd);
    snprintf(err, sizeof(err), "%s.stderr", wd);
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(o, 1);
        dup2(e, 2);
        exec_cli(argv);
    }
    c->status = reap(pid, h_now_ms() + CLI_MS);
    slurp(out, c->out, sizeof(c->out));
    slurp(err, c->err, sizeof(c->err));
    unlink(out);
    unlink(err);
    return c->status;
}

#define CLI(...) cli_run(&r, (const char *const[]){__VA_ARGS__, NULL})

#define EXPECT_STATUS(want)                                                                        \
    do {                                                                                           \
        if (r.status != (want))                                                                    \
            fail_msg("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", r.status, (want), r.out, \
                     r.err);                                                                       \
    } while (0)

#define EXPECT_ERR(needle)                                                                         \
    do {                                                                                           \
        if (!strstr(r.err, (needle)))                                                              \
            fail_msg("stderr lacks '%s':\n%s", (needle), r.err);                                   \
    } while (0)

/* ---- tests -------------------------------------------------------------------- */

/* One session: put, ls, get, rm (of a missing name too), ls --long. */
static void test_chain_direct(void **state)
{
    write_file("a.txt", "hello tvmrpc\n", 13);
    write_file("empty.bin", "", 0);
    CLI("put", "--host", direct_addr, "--key", "files", "a.txt", "empty.bin", "+", "ls", "+", "get",
        "a.txt", "--to", "copy.txt", "+", "rm", "a.txt", "not-there", "+", "ls", "--long");
    EXPECT_STATUS(0);
    assert_string_equal(r.out, "a.txt\nempty.bin\n"
                               "           0  empty.bin\n");
    assert_string_equal(r.err, ""); /* no terminal: no progress, nothing to say */
    assert_same_files("a.txt", "copy.txt");
    assert_int_equal(wd_entries(), 3);
}

/* --as, get into a directory, several names, --long sizes. */
static void test_put_as_get_dir(void **state)
{
    char out[512];
    snprintf(out, sizeof(out), "%s/out", wd);
    write_file("local.bin", "0123456789", 10);
    assert_int_equal(mkdir(out, 0755), 0);
    CLI("put", "--host", direct_addr, "--key", "files", "--as", "remote.bin", "local.bin", "+",
        "put", "local.bin", "+", "ls", "--long", "+", "get", "remote.bin", "local.bin", "--to",
        "out");
    EXPECT_STATUS(0);
    assert_string_equal(r.out, "          10  local.bin\n"
                               "          10  remote.bin\n");
    assert_same_files("local.bin", "out/remote.bin");
    assert_same_files("local.bin", "out/local.bin");
    h_rm_tree(out);
}

/* Each command is its own session: what one put is gone for the next. */
static void test_workspace_is_per_session(void **state)
{
    write_file("a.txt", "x", 1);
    CLI("put", "--host", direct_addr, "--key", "files", "a.txt");
    EXPECT_STATUS(0);
    assert_string_equal(r.out, "");
    CLI("ls", "--host", direct_addr, "--key", "files");
    EXPECT_STATUS(0);
    assert_string_equal(r.out, "");
    /* rm of something that is not there is fine. */
    CLI("rm", "--host", direct_addr, "--key", "files", "a.txt");
    EXPECT_STATUS(0);
}

/* A missing remote file: exit 1, the server's reason, a hint, no local file. */
static void test_get_missing_remote(void **state)
{
    CLI("get", "--host", direct_addr, "--key", "files", "nothere.bin");
    EXPECT_STATUS(1);
    EXPECT_ERR("tvmrpc get: nothere.bin: ");
    EXPECT_ERR("Cannot open");
    EXPECT_ERR("new session with an empty workspace");
    assert_int_equal(wd_entries(), 0); /* not even a temporary file */
    /* In a chain, the steps before it still ran and the error names the step. */
    write_file("a.txt", "a", 1);
    CLI("put", "--host", direct_addr, "--key", "files", "a.txt", "+", "get", "b.txt", "+", "ls");
    EXPECT_STATUS(1);
    EXPECT_ERR("tvmrpc get: b.txt: ");
    assert_null(strstr(r.err, "new session")); /* not the first step: no hint */
    assert_string_equal(r.out, "");            /* the chain stopped before ls */
    assert_int_equal(wd_entries(), 1);
}

/* Every session the direct server started has ended (and been logged). */
static int direct_idle(void *arg)
{
    return h_log_count(&direct, "started") == h_log_count(&direct, " ended after ");
}

/* An existing local file is kept unless --force; refused before connecting. */
static void test_get_existing_local(void **state)
{
    write_file("src.txt", "new content", 11);
    write_file("a.txt", "old", 3);
    /* The previous test's session logs its end after that command exited. */
    assert_int_equal(h_wait_until(direct_idle, NULL, H_TIMEOUT_MS), 0);
    int sessions = h_log_count(&direct, "session from");
    CLI("put", "--host", direct_addr, "--key", "files", "--as", "a.txt", "src.txt", "+", "get",
        "a.txt");
    EXPECT_STATUS(1);
    EXPECT_ERR("a.txt exists; use --force to overwrite it");
    assert_int_equal(h_log_count(&direct, "session from"), sessions); /* no session taken */
    size_t len;
    char *p = read_file("a.txt", &len);
    assert_string_equal(p, "old");
    free(p);
    CLI("put", "--host", direct_addr, "--key", "files", "--as", "a.txt", "src.txt", "+", "get",
        "--force", "a.txt");
    EXPECT_STATUS(0);
    assert_same_files("src.txt", "a.txt");
    assert_int_equal(wd_entries(), 2);
}

/* Local problems and usage errors never reach the network. */
static void test_local_and_usage_errors(void **state)
{
    CLI("put", "--host", direct_addr, "--key", "files", "missing.bin");
    EXPECT_STATUS(1);
    EXPECT_ERR("tvmrpc put: missing.bin: No such file or directory");
    CLI("get", "--host", direct_addr);
    EXPECT_STATUS(2);
    EXPECT_ERR("missing NAME");
    EXPECT_ERR("usage: tvmrpc get");
    CLI("ls", "--host", direct_addr, "+", "frobnicate");
    EXPECT_STATUS(2);
    EXPECT_ERR("'frobnicate' cannot be a step");
    CLI("ls", "--host", direct_addr, "+");
    EXPECT_STATUS(2);
    EXPECT_ERR("'+' must be followed by a step");
    CLI("ls", "--tracker", tracker_addr);
    EXPECT_STATUS(2);
    EXPECT_ERR("--tracker needs --key");
    CLI("put", "--help");
    EXPECT_STATUS(0);
    assert_non_null(strstr(r.out, "usage: tvmrpc put [options] FILE..."));
    assert_non_null(strstr(r.out, "ONE session"));
    CLI("--help");
    EXPECT_STATUS(0);
    assert_non_null(strstr(r.out, "  get "));
    assert_non_null(strstr(r.out, "  rm "));
}

/* Nobody listening: exit 1 with the connect error, quickly. */
static void test_unreachable(void **state)
{
    hproc_t dead = {0};
    assert_int_equal(h_start_server(&dead, NULL), 0);
    h_stop(&dead); /* its port is now free */
    char addr[64], port[16];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", dead.port);
    snprintf(port, sizeof(port), "%d", dead.port);
    CLI("ls", "--host", addr, "--timeout", "5");
    EXPECT_STATUS(1);
    EXPECT_ERR("tvmrpc ls: Connect to ");
    CLI("get", "--host", "127.0.0.1", "--port", port, "x.bin");
    EXPECT_STATUS(1);
    EXPECT_ERR("failed");
    assert_int_equal(wd_entries(), 0);
    CLI("ls", "--tracker", addr, "--key", "trk");
    EXPECT_STATUS(1);
    EXPECT_ERR("tracker");
}

/* 32 MiB through the tracker, with priority and session timeout: byte-exact. */
static void test_big_roundtrip_tracker(void **state)
{
    random_file("big.bin", BIG, 0x9e3779b97f4a7c15ull);
    int timed = h_log_count(&tracked, "-timeout=60 started");
    CLI("put", "--tracker", tracker_addr, "--key", "trk", "--priority", "2", "--session-timeout",
        "60", "big.bin", "+", "ls", "--long", "+", "get", "big.bin", "--to", "back.bin");
    EXPECT_STATUS(0);
    assert_string_equal(r.out, "    33554432  big.bin\n");
    assert_string_equal(r.err, "");
    assert_same_files("big.bin", "back.bin");
    assert_int_equal(wd_entries(), 2);
    assert_true(h_log_count(&tracked, "-timeout=60 started") > timed);
}

/* Through a proxy: the server's key at the proxy. */
static void test_proxy(void **state)
{
    random_file("p.bin", 100000, 7);
    CLI("put", "--host", proxy_addr, "--key", "prx", "p.bin", "+", "get", "p.bin", "--to", "q.bin",
        "+", "ls");
    EXPECT_STATUS(0);
    assert_string_equal(r.out, "p.bin\n");
    assert_same_files("p.bin", "q.bin");
}

/* Steps share the session with call: the uploaded file is in the workspace. */
static void test_chain_with_call(void **state)
{
    write_file("a.txt", "a", 1);
    CLI("put", "--host", direct_addr, "--key", "files", "a.txt", "+", "call",
        "tvm.rpc.server.workpath", "a.txt");
    EXPECT_STATUS(0);
    size_t n = strlen(r.out);
    assert_true(n > 7 && strcmp(r.out + n - 7, "/a.txt\n") == 0);
}

/* put and run compose: the library and the data share the workspace. Needs
 * the vadd fixture (tests/fixtures, built with the default targets). */
static void test_chain_with_run(void **state)
{
    char lib[PATH_MAX];
    snprintf(lib, sizeof(lib), "%s/vadd.so", h_fixture_dir());
    if (access(lib, R_OK) != 0) {
        fprintf(stderr, "    %s not built: skipped\n", lib);
        skip();
    }
    write_file("in.bin", "data", 4);
    CLI("put", "--host", direct_addr, "--key", "files", "in.bin", "+", "run", lib, "vadd",
        "float32:1024", "float32:1024", "float32:1024", "--time", "5", "+", "ls");
    EXPECT_STATUS(0);
    if (strncmp(r.out, "None\nvadd: mean ", 16) != 0 || !strstr(r.out, "\nin.bin\nvadd.so\n"))
        fail_msg("unexpected output:\n%s", r.out);
}

/* On a terminal, put and get show progress and a throughput summary. */
static void test_progress_on_tty(void **state)
{
    random_file("big.bin", BIG, 42);
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    assert_true(m >= 0);
    assert_int_equal(grantpt(m), 0);
    assert_int_equal(unlockpt(m), 0);
    const char *slave = ptsname(m);
    assert_non_null(slave);
    const char *argv[] = {"put", "--host", direct_addr, "--key", "files",    "big.bin",
                          "+",   "get",    "big.bin",   "--to",  "back.bin", NULL};
    pid_t pid = fork();
    if (pid == 0) {
        int s = open(slave, O_RDWR);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(s, 2);
        exec_cli(argv);
    }
    /* Drain the terminal while the child runs: a full pty would block it. */
    static char tty[1 << 16];
    size_t len = 0;
    int status = -1, exited = 0;
    int64_t deadline = h_now_ms() + CLI_MS;
    while (!exited && h_now_ms() < deadline) {
        struct pollfd pf = {m, POLLIN, 0};
        if (poll(&pf, 1, 100) > 0 && (pf.revents & POLLIN) && len < sizeof(tty) - 1) {
            ssize_t got = read(m, tty + len, sizeof(tty) - 1 - len);
            len += got > 0 ? (size_t)got : 0;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            exited = 1;
            status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
    }
    for (struct pollfd pf = {m, POLLIN, 0};
         len < sizeof(tty) - 1 && poll(&pf, 1, 0) > 0 && (pf.revents & POLLIN);) {
        ssize_t got = read(m, tty + len, sizeof(tty) - 1 - len);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    tty[len] = '\0';
    close(m);
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (status != 0)
        fail_msg("exit status %d\n%s", status, tty);
    if (!strstr(tty, "put big.bin: 32.0 MiB in ") || !strstr(tty, "get big.bin: 32.0 MiB in ") ||
        !strstr(tty, "MiB/s"))
        fail_msg("no progress summary on the terminal:\n%s", tty);
    assert_same_files("big.bin", "back.bin");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chain_direct, wd_setup, wd_teardown),
        cmocka_unit_test_setup_teardown(test_put_as_get_dir, wd_setup, wd_teardown),
        cmocka_unit_test_setup_teardown(test_workspace_is_per_session, wd_setup, wd_teardown),
        cmocka_unit_test_setup_teardown(test_get_missing_remote, wd_setup, wd_teardown),
        cmocka_unit_test_setup_teardown(test_get_existing_local, wd_setup, wd_teardown),
        cmocka_unit_test_setup_teardown(test_local_and_usage_errors, wd_setup, wd_teardown),
        cmocka_unit_test_setup_teardown(test_unreachable, wd_setup, wd_teardown),
        cmocka_unit_test_setup_teardown(test_big_roundtrip_tracker, wd_setup, wd_teardown),
        cmocka_unit_test_setup_teardown(test_proxy, wd_setup, wd_teardown),
        cmocka_unit_test_setup_teardown(test_chain_with_call, wd_setup, wd_teardown),
        cmocka_unit_test_setup_teardown(test_chain_with_run, wd_setup, wd_teardown),
        cmocka_unit_test_setup_teardown(test_progress_on_tty, wd_setup, wd_teardown),
    };
    return cmocka_run_group_tests(tests, start_all, stop_all);
}
