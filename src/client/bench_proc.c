/* bench_proc: clocks, samples, child processes and /proc readers for
 * `tvmrpc bench` (bench_lib.h). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/bench_lib.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- time and samples ------------------------------------------------------ */

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_sleep_us(unsigned us)
{
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int bench_samples_push(bench_samples_t *s, uint64_t ns)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 256;
        uint64_t *nv = realloc(s->v, ncap * sizeof(*nv));
        if (!nv)
            return -1;
        s->v = nv;
        s->cap = ncap;
    }
    s->v[s->n++] = ns;
    s->sorted = 0;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

double bench_samples_pct(bench_samples_t *s, double p)
{
    if (!s->n)
        return 0;
    if (!s->sorted) {
        qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
        s->sorted = 1;
    }
    size_t i = (size_t)(p / 100.0 * (double)(s->n - 1) + 0.5);
    return (double)s->v[i < s->n ? i : s->n - 1];
}

double bench_samples_min(bench_samples_t *s)
{
    return bench_samples_pct(s, 0);
}

void bench_samples_free(bench_samples_t *s)
{
    free(s->v);
    memset(s, 0, sizeof(*s));
}

/* ---- child processes ----------------------------------------------------------- */

int bench_spawn(bench_proc_t *p, const char *bin, const char *const *argv, char *err, size_t errlen)
{
    static int counter;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    memset(p, 0, sizeof(*p));
    snprintf(p->log_path, sizeof(p->log_path), "%s/tvmrpc-bench-%d-%d.log", tmp, (int)getpid(),
             counter++);
    int fd = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail(err, errlen, "cannot create %s: %s", p->log_path, strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        return fail(err, errlen, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        /* Nothing we start may outlive an interrupted bench. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        signal(SIGPIPE, SIG_DFL);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(bin, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(fd);
    p->pid = pid;
    return 0;
}

static int exited(pid_t pid)
{
    siginfo_t si;
    si.si_pid = 0;
    /* WNOWAIT: leave the zombie for bench_stop to reap. */
    return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == pid;
}

/* 1 if 127.0.0.1:port accepts a connection now, 0 if refused, -1 error. */
static int probe(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* Loopback connect completes or is refused at once: no timeout needed. */
    int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    int e = errno;
    close(fd);
    if (rc == 0)
        return 1;
    return e == ECONNREFUSED ? 0 : -1;
}

int bench_wait_listening(int port, pid_t pid, int timeout_ms, char *err, size_t errlen)
{
    uint64_t deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        int rc = probe(port);
        if (rc == 1)
            return 0;
        if (rc < 0)
            return fail(err, errlen, "connect to 127.0.0.1:%d: %s", port, strerror(errno));
        if (exited(pid))
            return fail(err, errlen, "process %d exited before listening on port %d", (int)pid,
                        port);
        if (bench_now_ns() > deadline)
            return fail(err, errlen, "nothing listens on port %d after %d ms", port, timeout_ms);
        bench_sleep_us(100);
    }
}

void bench_stop(bench_proc_t *p)
{
    if (p->pid > 0) {
        int status;
        kill(p->pid, SIGTERM);
        int i = 0;
        while (waitpid(p->pid, &status, WNOHANG) != p->pid && i++ < 300)
            bench_sleep_us(10000);
        if (i > 300) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &status, 0);
        }
        p->pid = 0;
    }
    if (p->log_path[0])
        unlink(p->log_path);
    p->log_path[0] = '\0';
}

void bench_log_tail(const bench_proc_t *p, char *out, size_t outlen)
{
    out[0] = '\0';
    FILE *fp = p->log_path[0] ? fopen(p->log_path, "r") : NULL;
    if (!fp)
        return;
    /* Keep the last outlen - 1 bytes: the newest lines say why it failed. */
    char buf[4096];
    size_t n = 0, r;
    while ((r = fread(buf, 1, sizeof(buf), fp)) > 0) {
        for (size_t i = 0; i < r; i++) {
            if (n == outlen - 1) {
                memmove(out, out + 1, outlen - 2);
                n--;
            }
            out[n++] = buf[i] == '\n' ? ' ' : buf[i];
        }
    }
    out[n] = '\0';
    fclose(fp);
}

int bench_free_port(char *err, size_t errlen)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return fail(err, errlen, "no free loopback port: %s", strerror(e));
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- /proc ------------------------------------------------------------------------ */

long bench_status_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    long kib = -1;
    size_t flen = strlen(field);
    while (fgets(line, sizeof(line), fp)) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            kib = strtol(line + flen + 1, NULL, 10);
            break;
        }
    }
    fclose(fp);
    return kib;
}

int bench_nchildren(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *fp = fopen(path, "r");
    int n = 0, v;
    while (fp && fscanf(fp, "%d", &v) == 1)
        n++;
    if (fp)
        fclose(fp);
    return n;
}

/* ppid and utime+stime+cutime+cstime (seconds) of pid; -1 if gone. */
static int proc_stat(pid_t pid, pid_t *ppid, double *used)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    /* comm may hold spaces and parens: fields are counted after the last ')'. */
    char *p = strrchr(buf, ')');
    int pp;
    unsigned long ut, st;
    long cut, cst;
    if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %ld %ld", &pp, &ut,
                     &st, &cut, &cst) != 5)
        return -1;
    *ppid = pp;
    *used =
        (double)(ut + st + (unsigned long)cut + (unsigned long)cst) / (double)sysconf(_SC_CLK_TCK);
    return 0;
}

/* Task time only (user, nice, system): interrupt and softirq time, where
 * much of loopback TCP's receive work runs, belongs to no process, so it
 * is left out on both sides of the comparison. */
static double machine_busy_s(void)
{
    FILE *fp = fopen("/proc/stat", "r");
    unsigned long long user = 0, nice = 0, sys = 0;
    if (!fp)
        return 0;
    int n = fscanf(fp, "cpu %llu %llu %llu", &user, &nice, &sys);
    fclose(fp);
    return n == 3 ? (double)(user + nice + sys) / (double)sysconf(_SC_CLK_TCK) : 0;
}

static int has_pid(const pid_t *v, int n, pid_t pid)
{
    for (int i = 0; i < n; i++)
        if (v[i] == pid)
            return i;
    return -1;
}

/* Our descendants: repeated passes over /proc until no new one is found
 * (a grandchild may be listed before its parent). */
static void scan_descendants(bench_cpu_snap_t *s)
{
    pid_t self = getpid();
    s->n = 0;
    for (int grew = 1; grew;) {
        grew = 0;
        DIR *d = opendir("/proc");
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL && s->n < 256) {
            pid_t pid = (pid_t)atoi(de->d_name), ppid;
            double used;
            if (pid <= 0 || pid == self || has_pid(s->pid, s->n, pid) >= 0 ||
                proc_stat(pid, &ppid, &used) < 0)
                continue;
            if (ppid == self || has_pid(s->pid, s->n, ppid) >= 0) {
                s->pid[s->n] = pid;
                s->used[s->n++] = used;
                grew = 1;
            }
        }
        if (d)
            closedir(d);
    }
}

void bench_cpu_snap(bench_cpu_snap_t *s)
{
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    s->wall_ns = bench_now_ns();
    s->machine_s = machine_busy_s();
    s->self_s = (double)(self.ru_utime.tv_sec + self.ru_stime.tv_sec + kids.ru_utime.tv_sec +
                         kids.ru_stime.tv_sec) +
                (double)(self.ru_utime.tv_usec + self.ru_stime.tv_usec + kids.ru_utime.tv_usec +
                         kids.ru_stime.tv_usec) /
                    1e6;
    scan_descendants(s);
}

void bench_cpu_delta(const bench_cpu_snap_t *a, const bench_cpu_snap_t *b, double *machine_pct,
                     double *other_pct)
{
    double wall = (double)(b->wall_ns - a->wall_ns) / 1e9;
    double ours = b->self_s - a->self_s;
    for (int i = 0; i < b->n; i++) {
        int j = has_pid(a->pid, a->n, b->pid[i]);
        ours += b->used[i] - (j >= 0 ? a->used[j] : 0);
    }
    /* A descendant reaped in between moved its whole time into our
     * RUSAGE_CHILDREN (or its parent's cutime): drop what was counted before. */
    for (int j = 0; j < a->n; j++)
        if (has_pid(b->pid, b->n, a->pid[j]) < 0)
            ours -= a->used[j];
    double machine = b->machine_s - a->machine_s;
    double other = machine - ours;
    *machine_pct = wall > 0 ? machine / wall * 100 : 0;
    *other_pct = wall > 0 && other > 0 ? other / wall * 100 : 0;
}
