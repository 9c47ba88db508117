/* test_demo: `make demo` must keep working. Runs scripts/demo.sh --once
 * against the binary under test: tracker and server on ephemeral ports (so
 * it cannot clash with a demo someone is running on 9190), the query table,
 * one call through the tracker, and the fixture network through the remote
 * graph executor (examples/run_model), whose output must match the plain C
 * reference. Also: a demo whose model is missing fails instead of hanging,
 * and every process the script started is gone when it returns. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEMO_TIMEOUT_MS 120000

static char script[PATH_MAX], runner[PATH_MAX], out_path[PATH_MAX];

/* dirname(path) written to out. */
static void dir_of(const char *path, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    snprintf(out, n, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
}

/* The source tree: $TVMRPC_SOURCE_DIR, else three levels above this file
 * (CMake compiles it by absolute path). */
static int find_script(void)
{
    char dir[PATH_MAX - 32];
    const char *src = getenv("TVMRPC_SOURCE_DIR");
    if (src) {
        snprintf(dir, sizeof(dir), "%s", src);
    } else {
        snprintf(dir, sizeof(dir), "%s", __FILE__);
        for (int i = 0; i < 3; i++) {
            char up[sizeof(dir)];
            dir_of(dir, up, sizeof(up));
            snprintf(dir, sizeof(dir), "%s", up);
        }
    }
    snprintf(script, sizeof(script), "%s/scripts/demo.sh", dir);
    return access(script, R_OK);
}

static int setup(void **state)
{
    char bindir[PATH_MAX - 64];
    dir_of(h_bin(), bindir, sizeof(bindir));
    snprintf(runner, sizeof(runner), "%s/examples/run_model", bindir);
    snprintf(out_path, sizeof(out_path), "/tmp/tvmrpc-test-demo.%d.out", (int)getpid());
    unsetenv("TVMRPC_DEMO_PORT"); /* --once then uses ephemeral ports */
    if (find_script() < 0) {
        fprintf(stderr, "test_demo: cannot read %s (set TVMRPC_SOURCE_DIR)\n", script);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    unlink(out_path);
    return 0;
}

/* Wait for pid with a deadline; on timeout kill its process group. */
static int wait_deadline(pid_t pid, int timeout_ms)
{
    int64_t end = h_now_ms() + timeout_ms;
    int st;
    while (h_now_ms() < end) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0 && errno != EINTR)
            return -1;
        usleep(20000);
    }
    kill(-pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

/* bash demo.sh --once BIN, in its own process group, output to out_path.
 * Returns the exit status; *pgid is the group, to check nothing is left. */
static int run_demo(const char *model, pid_t *pgid)
{
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        if (model)
            setenv("TVMRPC_DEMO_MODEL", model, 1);
        execlp("bash", "bash", script, "--once", h_bin(), (char *)NULL);
        _exit(127);
    }
    assert_true(pid > 0);
    setpgid(pid, pid); /* also here: no race with the child's own call */
    *pgid = pid;
    return wait_deadline(pid, DEMO_TIMEOUT_MS);
}

static char *read_out(void)
{
    static char buf[65536];
    FILE *fp = fopen(out_path, "r");
    size_t n = fp ? fread(buf, 1, sizeof(buf) - 1, fp) : 0;
    if (fp)
        fclose(fp);
    buf[n] = '\0';
    return buf;
}

static int group_gone(void *arg)
{
    return kill(-*(pid_t *)arg, 0) < 0 && errno == ESRCH;
}

/* A failed demo keeps its logs for the user; the test removes them. */
static void remove_logs(const char *out)
{
    const char *at = strstr(out, "logs are in /tmp/tvmrpc-demo.");
    char dir[PATH_MAX];
    if (!at || sscanf(at + strlen("logs are in "), "%4095s", dir) != 1)
        return;
    const char *argv[] = {"rm", "-rf", dir, NULL};
    pid_t pid = fork();
    if (pid == 0) {
        execvp("rm", (char *const *)argv);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

static void expect_in(const char *out, const char *needle)
{
    if (!strstr(out, needle))
        fail_msg("demo output lacks \"%s\":\n%s", needle, out);
}

static void test_demo_once(void **state)
{
    if (access(runner, X_OK) != 0)
        skip(); /* configured with -DTVMRPC_EXAMPLES=OFF */
    pid_t pgid;
    int rc = run_demo(NULL, &pgid);
    char *out = read_out();
    if (rc != 0)
        fail_msg("demo.sh --once exited with %d:\n%s", rc, out);
    expect_in(out, "== tracker on 127.0.0.1:");
    expect_in(out, "registered under key 'local'");
    expect_in(out, "local   1      1     0");
    expect_in(out, "tvmrpc:42");
    /* The board behind the proxy: listed, called, and it runs the model. */
    expect_in(out, "a server behind it under key 'board' (--through-proxy)");
    expect_in(out, "server:proxy[board]");
    expect_in(out, "rpc.test.strcat(\"tvmrpc\", 42) on key 'board'");
    expect_in(out, "device:    cpu(0) of server:board, granted by tracker");
    const char *first = strstr(out, "check:     matches reference");
    assert_non_null(first);
    expect_in(first + 1, "check:     matches reference"); /* on both servers */
    expect_in(out, "output:    float32[1,10] =");
    expect_in(out, "check:     matches reference");
    expect_in(out, "timing:    run: mean ");
    expect_in(out, "demo done");
    assert_null(strstr(out, ":9190"));
    assert_int_equal(h_wait_until(group_gone, &pgid, H_TIMEOUT_MS), 0);
}

static void test_demo_missing_model_fails(void **state)
{
    pid_t pgid;
    int rc = run_demo("/nonexistent/net.so", &pgid);
    char *out = read_out();
    if (rc <= 0 || rc >= 128)
        fail_msg("demo.sh --once without a model exited with %d:\n%s", rc, out);
    expect_in(out, "skipped: needs");
    expect_in(out, "demo stopped; logs are in");
    remove_logs(out);
    assert_int_equal(h_wait_until(group_gone, &pgid, H_TIMEOUT_MS), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demo_once),
        cmocka_unit_test(test_demo_missing_model_fails),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
