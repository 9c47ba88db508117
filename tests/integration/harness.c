#include "harness.h"

#include <errno.h>
#include <fcntl.h>
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

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

const char *h_bin(void)
{
    const char *b = getenv("TVMRPC_BIN");
    return b ? b : "./tvmrpc";
}

int h_spawn(hproc_t *p, const char *const *argv)
{
    static int counter;
    memset(p, 0, sizeof(*p));
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(p->log_path, sizeof(p->log_path), "%s/tvmrpc-test-%d-%d.log", tmp, (int)getpid(),
             counter++);
    const char *args[64];
    int n = 0;
    args[n++] = h_bin();
    for (int i = 0; argv[i] && n < 63; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(args[0], (char *const *)args);
        _exit(127);
    }
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
    int64_t deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline) {
        if (h_log_count(p, needle) > 0)
            return 0;
        if (p->pid > 0 && proc_exited(p))
            return h_log_count(p, needle) > 0 ? 0 : -1;
        sleep_ms(5);
    }
    return -1;
}

int h_start_tracker(hproc_t *p, const char *const *extra)
{
    const char *argv[48] = {"tracker", "--host", "127.0.0.1", "--port", "0"};
    int n = 5;
    for (int i = 0; extra && extra[i] && n < 47; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    if (h_spawn(p, argv) < 0 || h_wait_log(p, "bind to 127.0.0.1:", H_TIMEOUT_MS) < 0) {
        h_dump_log(p);
        return -1;
    }
    char *s = read_log(p);
    char *at = s ? strstr(s, "bind to 127.0.0.1:") : NULL;
    p->port = at ? atoi(at + strlen("bind to 127.0.0.1:")) : 0;
    free(s);
    return p->port > 0 ? 0 : -1;
}

int h_wait_exit(hproc_t *p, int timeout_ms)
{
    if (p->pid < 0)
        return -p->pid - 1;
    int64_t deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline) {
        int status;
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            p->pid = -status - 1;
            return status;
        }
        sleep_ms(5);
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
    int n = 0;
    args[n++] = h_bin();
    for (int i = 0; argv[i] && n < 63; i++)
        args[n++] = argv[i];
    args[n] = NULL;
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
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(deadline - now_ms());
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
    int64_t deadline = now_ms() + timeout_ms;
    char b[4096];
    while (now_ms() < deadline) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, (int)(deadline - now_ms())) <= 0)
            return 0;
        ssize_t r = recv(fd, b, sizeof(b), 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return 1;
        if (r < 0 && errno != EINTR && errno != EAGAIN)
            return 1;
    }
    return 0;
}

int h_wait_until(int (*cond)(void *), void *arg, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline) {
        if (cond(arg))
            return 0;
        sleep_ms(5);
    }
    return cond(arg) ? 0 : -1;
}
