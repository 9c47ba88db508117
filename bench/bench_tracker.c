/* bench_tracker: throughput, grant latency and memory of `tvmrpc tracker`,
 * compared with a raw loopback TCP request/response baseline measured in the
 * same run (bench/README.md explains every number).
 *
 * One cycle = client REQUEST -> tracker grant -> the granted server's
 * connection re-PUTs a fresh matchkey -> tracker acknowledges with 0. That is
 * what a real server does after a session, so it is the tracker's steady
 * state. The baseline runs the identical driver against a trivial epoll
 * server (a forked copy of this program) that answers every frame with a
 * canned frame of the tracker's size, so both move the same bytes over the
 * same connections with the same concurrency; the difference is what the
 * tracker itself costs. Tracker and baseline take turns in short rounds so
 * that other load on the machine hits both alike.
 *
 * Runs: closed loop (64 clients, one cycle each always in flight: maximum
 * throughput), paced (64 clients at a fixed offered rate: latency at the
 * target throughput), one client (latency without queueing), then the
 * memory run (10000 registered servers, VmRSS).
 *
 * The driver is single-threaded (epoll, level-triggered, one send per
 * message, TCP_NODELAY) and pinned to one CPU, the tracker or echo server to
 * another. Every number comes from the driver's clock: latency includes both
 * kernels' TCP paths and the driver's own queueing, as a client would see. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tracker/proto.h"

#define BENCH_KEY "bench"
#define IN_CAP 512        /* every frame the driver expects is far smaller */
#define SETUP_WINDOW 128  /* connections being set up at once: stays under the listen backlog */
#define SERVER_PORT0 9000 /* servers announce ports 9000 + index */
#define EV_BATCH 256
#define SUMMARY_MAX (16u << 20)

/* ---- errors and time ------------------------------------------------------ */

static char g_err[512];

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof(g_err), fmt, ap);
    va_end(ap);
    return -1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- child processes (tracker, echo server) ------------------------------- */

/* The tracker and the echo server; the signal handler kills them so nothing
 * outlives an interrupted run. */
static volatile pid_t g_children[2] = {-1, -1};

static void children_set(pid_t old, pid_t pid)
{
    for (int i = 0; i < 2; i++) {
        if (g_children[i] == old) {
            g_children[i] = pid;
            return;
        }
    }
}

static void on_fatal_signal(int signo)
{
    static const char msg[] = "bench_tracker: time budget exceeded or interrupted; aborting\n";
    for (int i = 0; i < 2; i++) {
        if (g_children[i] > 0)
            kill(g_children[i], SIGKILL);
    }
    ssize_t unused = write(2, msg, sizeof(msg) - 1);
    (void)unused;
    _exit(signo == SIGALRM ? 3 : 130);
}

static void install_signals(int budget_s)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_fatal_signal;
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    alarm((unsigned)budget_s);
}

/* CPUs we may run on; the driver takes the first, the server under test the
 * second, so the tracker has a core to itself. -1 when there is no second. */
static int pick_cpus(int *driver_cpu, int *server_cpu)
{
    cpu_set_t set;
    *driver_cpu = *server_cpu = -1;
    if (sched_getaffinity(0, sizeof(set), &set) < 0)
        return -1;
    for (int i = 0; i < CPU_SETSIZE; i++) {
        if (!CPU_ISSET(i, &set))
            continue;
        if (*driver_cpu < 0)
            *driver_cpu = i;
        else if (*server_cpu < 0)
            *server_cpu = i;
    }
    return *server_cpu >= 0 ? 0 : -1;
}

static void pin_to(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
}

/* In a fresh child: default signal actions (the parent's handlers would
 * report a bench abort), die with the parent, run on cpu. */
static void child_prepare(pid_t parent, int cpu)
{
    alarm(0);
    signal(SIGALRM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    pin_to(cpu);
}

static int child_alive(pid_t pid, int *status)
{
    return waitpid(pid, status, WNOHANG) == 0;
}

/* SIGTERM, wait up to 2 s, then SIGKILL. Returns the wait status. */
static int child_stop(pid_t pid)
{
    int status = 0;
    if (pid <= 0)
        return 0;
    if (child_alive(pid, &status)) {
        kill(pid, SIGTERM);
        int i = 0;
        while (i++ < 200 && waitpid(pid, &status, WNOHANG) != pid)
            sleep_ms(10);
        if (i > 200) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
        }
    }
    children_set(pid, -1);
    return status;
}

/* ---- /proc readers --------------------------------------------------------- */

/* VmRSS / VmHWM of pid in KiB, -1 if unreadable. */
static long proc_status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    long kb = -1;
    size_t flen = strlen(field);
    while (fgets(line, sizeof(line), fp)) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            kb = strtol(line + flen + 1, NULL, 10);
            break;
        }
    }
    fclose(fp);
    return kb;
}

typedef struct cpu {
    double user, sys; /* seconds */
} cpu_t;

/* utime and stime of pid; zeros if unreadable. */
static cpu_t proc_cpu(pid_t pid)
{
    cpu_t c = {0, 0};
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return c;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    /* comm may contain spaces; fields are counted after its closing paren. */
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return c;
    c.user = (double)ut / (double)sysconf(_SC_CLK_TCK);
    c.sys = (double)st / (double)sysconf(_SC_CLK_TCK);
    return c;
}

static cpu_t self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    cpu_t c = {(double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6};
    return c;
}

/* CPU time all tasks on the machine got (user + nice + system, all CPUs):
 * minus ours, it shows how much other work disturbed a measurement. */
static double machine_task_s(void)
{
    FILE *fp = fopen("/proc/stat", "r");
    unsigned long long user = 0, nice = 0, sys = 0;
    if (!fp)
        return 0;
    int n = fscanf(fp, "cpu %llu %llu %llu", &user, &nice, &sys);
    fclose(fp);
    return n == 3 ? (double)(user + nice + sys) / (double)sysconf(_SC_CLK_TCK) : 0;
}

static int is_listen_inode(unsigned long want, int *port)
{
    FILE *fp = fopen("/proc/net/tcp", "r");
    if (!fp)
        return 0;
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof(line), fp)) {
        unsigned int lport, st;
        unsigned long ino;
        /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
        if (sscanf(line, " %*s %*[0-9A-Fa-f]:%x %*s %x %*s %*s %*s %*s %*s %lu", &lport, &st,
                   &ino) == 3 &&
            st == 0x0A && ino == want) {
            *port = (int)lport;
            found = 1;
        }
    }
    fclose(fp);
    return found;
}

/* The port pid listens on, found through its socket inodes: works whatever
 * the log level (the tracker logs "bind to" at INFO only). 0 if none yet. */
static int proc_listen_port(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *dir = opendir(path);
    if (!dir)
        return 0;
    int port = 0;
    struct dirent *de;
    while (!port && (de = readdir(dir)) != NULL) {
        char link[64];
        ssize_t n = readlinkat(dirfd(dir), de->d_name, link, sizeof(link) - 1);
        unsigned long ino;
        if (n <= 0)
            continue;
        link[n] = '\0';
        if (sscanf(link, "socket:[%lu]", &ino) == 1)
            is_listen_inode(ino, &port);
    }
    closedir(dir);
    return port;
}

/* "bind to 127.0.0.1:PORT" in the tracker's log, if it logged it. */
static int log_listen_port(const char *log_path)
{
    FILE *fp = fopen(log_path, "r");
    if (!fp)
        return 0;
    char line[512];
    int port = 0;
    while (!port && fgets(line, sizeof(line), fp)) {
        const char *at = strstr(line, "bind to 127.0.0.1:");
        if (at)
            port = atoi(at + strlen("bind to 127.0.0.1:"));
    }
    fclose(fp);
    return port;
}

/* Print the first lines of the tracker's log (warnings and errors only). */
static int show_log(const char *log_path, int max_lines)
{
    FILE *fp = fopen(log_path, "r");
    if (!fp)
        return 0;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof(line), fp)) {
        if (n++ < max_lines)
            fprintf(stderr, "  tracker log: %s", line);
    }
    fclose(fp);
    return n;
}

/* ---- tracker process -------------------------------------------------------- */

typedef struct remote {
    pid_t pid;
    int port;
    char log_path[64];
} remote_t;

/* Poll for the tracker's listening port for up to 5 s; -1 if it exits first. */
static int tracker_wait_port(remote_t *r, pid_t pid)
{
    for (int i = 0; i < 500; i++) {
        siginfo_t si;
        si.si_pid = 0;
        /* Exited? (WNOWAIT: leave it for child_stop to reap.) */
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == pid)
            return -1;
        r->port = log_listen_port(r->log_path);
        if (!r->port)
            r->port = proc_listen_port(pid);
        if (r->port)
            return 0;
        sleep_ms(10);
    }
    return -1;
}

static int tracker_start(remote_t *r, const char *bin, int cpu)
{
    snprintf(r->log_path, sizeof(r->log_path), "/tmp/bench_tracker.%d.log", (int)getpid());
    int logfd = open(r->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (logfd < 0)
        return fail("cannot create %s: %s", r->log_path, strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(logfd);
        return fail("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        child_prepare(parent, cpu);
        dup2(logfd, 1);
        dup2(logfd, 2);
        execl(bin, "tvmrpc", "tracker", "--host", "127.0.0.1", "--port", "0", "--log-level", "warn",
              "--max-conns-per-peer", "0", (char *)NULL); /* all peers are 127.0.0.1 */
        fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(logfd);
    children_set(-1, pid);
    if (tracker_wait_port(r, pid) == 0) {
        r->pid = pid;
        return 0;
    }
    /* Failed start: report and clean up here; the caller sees no tracker. */
    int status = child_stop(pid);
    show_log(r->log_path, 10);
    unlink(r->log_path);
    return fail("tracker %s did not come up within 5 s (wait status 0x%x)", bin, status);
}

/* ---- baseline: trivial echo server ------------------------------------------ */

typedef struct econn {
    int magic_done;
    size_t inlen;
    uint8_t in[IN_CAP];
} econn_t;

typedef struct echo {
    int ep, lfd;
    econn_t **conns; /* by fd */
    size_t nconns;
    const uint8_t *grant, *ack; /* canned reply frames */
    size_t grant_len, ack_len;
} echo_t;

static void echo_close(echo_t *e, int fd)
{
    epoll_ctl(e->ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(e->conns[fd]);
    e->conns[fd] = NULL;
}

static void echo_accept(echo_t *e)
{
    for (;;) {
        int fd = accept4(e->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if ((size_t)fd >= e->nconns || !(e->conns[fd] = calloc(1, sizeof(econn_t))) ||
            epoll_ctl(e->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            continue;
        }
    }
}

/* Answer every complete frame: a REQUEST-shaped frame ("[4...") gets the
 * grant-sized reply, anything else the tracker's "0". One send per reply,
 * like the tracker. */
static int echo_frames(echo_t *e, int fd, econn_t *c)
{
    size_t off = 0;
    if (!c->magic_done && c->inlen >= 4) {
        if (send(fd, c->in, 4, MSG_NOSIGNAL) != 4)
            return -1;
        c->magic_done = 1;
        off = 4;
    }
    while (c->magic_done && c->inlen - off >= 4) {
        size_t n = le32(c->in + off);
        if (n == 0 || n > IN_CAP - 4)
            return -1;
        if (c->inlen - off < 4 + n)
            break;
        int is_req = n >= 2 && c->in[off + 4] == '[' && c->in[off + 5] == '4';
        const uint8_t *rep = is_req ? e->grant : e->ack;
        size_t rlen = is_req ? e->grant_len : e->ack_len;
        if (send(fd, rep, rlen, MSG_NOSIGNAL) != (ssize_t)rlen)
            return -1;
        off += 4 + n;
    }
    memmove(c->in, c->in + off, c->inlen - off);
    c->inlen -= off;
    return 0;
}

static void echo_readable(echo_t *e, int fd)
{
    econn_t *c = e->conns[fd];
    ssize_t r = recv(fd, c->in + c->inlen, IN_CAP - c->inlen, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0 || (c->inlen += (size_t)r, echo_frames(e, fd, c) < 0))
        echo_close(e, fd);
}

static void echo_main(int lfd, const uint8_t *grant, size_t glen, const uint8_t *ack, size_t alen)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    echo_t e = {.lfd = lfd, .grant = grant, .grant_len = glen, .ack = ack, .ack_len = alen};
    e.nconns = rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : (size_t)rl.rlim_cur;
    e.conns = calloc(e.nconns, sizeof(*e.conns));
    e.ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    if (!e.conns || e.ep < 0 || epoll_ctl(e.ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
        _exit(1);
    struct epoll_event evs[EV_BATCH];
    for (;;) {
        int n = epoll_wait(e.ep, evs, EV_BATCH, -1);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.fd == lfd)
                echo_accept(&e);
            else if (e.conns[evs[i].data.fd])
                echo_readable(&e, evs[i].data.fd);
        }
    }
}

static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 1024) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        if (fd >= 0)
            close(fd);
        return fail("echo listen: %s", strerror(errno));
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* Build a frame holding text padded with spaces (valid JSON whitespace) to
 * exactly want bytes of JSON, so the baseline moves the tracker's sizes. */
static size_t canned_frame(uint8_t *out, size_t cap, const char *text, size_t want)
{
    size_t len = strlen(text);
    if (want < len)
        want = len;
    if (want + 4 > cap)
        want = len;
    put_le32(out, (uint32_t)want);
    memcpy(out + 4, text, len - 1);
    memset(out + 4 + len - 1, ' ', want - len);
    out[4 + want - 1] = (uint8_t)text[len - 1];
    return want + 4;
}

/* grant_json_len: size of the tracker's grant JSON; 0 = the template's own,
 * which is what a tracker that writes like Python's json.dumps sends. */
static int echo_start(remote_t *r, int cpu, size_t grant_json_len)
{
    static uint8_t grant[IN_CAP], ack[16];
    size_t glen = canned_frame(grant, sizeof(grant),
                               "[0, [\"127.0.0.1\", 9000, \"" BENCH_KEY ":00000.00000000\"]]",
                               grant_json_len);
    size_t alen = canned_frame(ack, sizeof(ack), "0", 1);
    int lfd = listen_loopback(&r->port);
    if (lfd < 0)
        return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(lfd);
        return fail("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        child_prepare(parent, cpu);
        echo_main(lfd, grant, glen, ack, alen);
        _exit(0);
    }
    close(lfd);
    r->pid = pid;
    children_set(-1, pid);
    r->log_path[0] = '\0';
    return 0;
}

/* ---- the driver: simulated servers and clients ------------------------------- */

typedef enum role { ROLE_SERVER, ROLE_CLIENT } role_t;

typedef enum cstate {
    ST_CONNECTING, /* non-blocking connect in progress */
    ST_MAGIC,      /* magic sent, waiting for the echo */
    ST_INFO,       /* server: UPDATE_INFO sent */
    ST_PUT,        /* server: first PUT sent */
    ST_FREE,       /* server: one slot queued at the tracker */
    ST_REPUT,      /* server: granted; fresh PUT sent, waiting for 0 */
    ST_IDLE,       /* client: ready, nothing outstanding */
    ST_REQUEST,    /* client: REQUEST sent, waiting for the grant */
    ST_RELEASE,    /* client: granted; waiting for the server's re-PUT ack */
} cstate_t;

typedef struct bconn {
    int fd;
    role_t role;
    cstate_t st;
    uint32_t idx, gen;
    uint64_t t_req;          /* client: when the outstanding REQUEST was sent */
    uint64_t due;            /* client, paced run: when its next REQUEST is due */
    struct bconn *peer;      /* server in ST_REPUT: the client whose cycle it closes */
    struct bconn *fifo_next; /* baseline: free servers, oldest first (tracker order) */
    size_t inlen;
    uint8_t in[IN_CAP];
} bconn_t;

typedef struct lat {
    uint64_t *v;
    size_t n, cap;
} lat_t;

#define MAX_ROUNDS 100

/* One remote under one load shape, summed over all its measured rounds. */
typedef struct acc {
    uint64_t cycles, cycle_ns; /* completed inside the windows; their request->ack time */
    lat_t lat;                 /* grant latencies inside the windows, ns */
    double secs;               /* measured time */
    cpu_t drv, srv;            /* CPU seconds of the driver and of the remote */
    double other;              /* CPU seconds every other process got meanwhile */
    double rate[MAX_ROUNDS];   /* cycles/s of each round */
    int nrounds;
    uint64_t late; /* paced run: REQUESTs that went out after their due time */
} acc_t;

typedef struct result {
    double cycles_per_s, mean_cycle_us;
    double rate_min, rate_med, rate_max; /* spread over rounds */
    uint64_t cycles;
    double p50, p90, p99, p999, max, mean; /* grant latency, us */
    size_t samples;
    cpu_t driver_cpu, server_cpu; /* share of one core */
    double other_cpu;             /* other processes, share of one core */
    double late_pct;              /* paced run: share of REQUESTs sent late */
    double srv_us, srv_user_us;   /* remote CPU per cycle (all, user), microseconds */
} result_t;

typedef struct driver {
    int echo; /* 1: baseline against the echo server */
    int ep, port;
    pid_t remote_pid;
    bconn_t *servers, *clients;
    size_t nservers, nclients, max_servers, max_clients;
    size_t pending_setup; /* connections not yet ready */
    bconn_t *fifo_head, *fifo_tail;
    int issuing;
    uint64_t pace_ns; /* paced run: each client's interval between REQUESTs; 0 = closed loop */
    size_t outstanding;
    uint64_t win_start, win_end; /* measured window of the current round */
    acc_t *acc;                  /* where the round's numbers go; NULL = warm-up */
    size_t grant_len, ack_len;   /* JSON sizes of the first grant / ack seen */
    int fatal;
} driver_t;

static int conn_fail(driver_t *d, bconn_t *c, const char *what)
{
    d->fatal = 1;
    return fail("%s #%u: %s (state %d)", c->role == ROLE_SERVER ? "server" : "client", c->idx, what,
                (int)c->st);
}

static int send_frame(driver_t *d, bconn_t *c, const char *text, size_t len)
{
    uint8_t buf[IN_CAP];
    put_le32(buf, (uint32_t)len);
    memcpy(buf + 4, text, len);
    ssize_t w = send(c->fd, buf, len + 4, MSG_NOSIGNAL);
    if (w != (ssize_t)(len + 4))
        return conn_fail(d, c, w < 0 ? strerror(errno) : "short send");
    return 0;
}

static int send_str(driver_t *d, bconn_t *c, const char *text)
{
    return send_frame(d, c, text, strlen(text));
}

static int server_put(driver_t *d, bconn_t *s)
{
    char msg[160];
    /* "<key>:<id>": the tracker's disconnect cleanup (Python's too) finds the
     * queue by splitting at the last ':', so the id itself has none. */
    snprintf(msg, sizeof(msg), "[3, \"%s\", [%u, \"%s:%05u.%08u\"], null]", BENCH_KEY,
             SERVER_PORT0 + s->idx, BENCH_KEY, s->idx, s->gen);
    return send_str(d, s, msg);
}

static int client_request(driver_t *d, bconn_t *c)
{
    c->st = ST_REQUEST;
    c->t_req = now_ns();
    d->outstanding++;
    return send_str(d, c, "[4, \"" BENCH_KEY "\", \"\", 1]");
}

static void fifo_push(driver_t *d, bconn_t *s)
{
    s->fifo_next = NULL;
    if (d->fifo_tail)
        d->fifo_tail->fifo_next = s;
    else
        d->fifo_head = s;
    d->fifo_tail = s;
}

static bconn_t *fifo_pop(driver_t *d)
{
    bconn_t *s = d->fifo_head;
    if (s && !(d->fifo_head = s->fifo_next))
        d->fifo_tail = NULL;
    return s;
}

static void lat_push(lat_t *l, uint64_t ns)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 1u << 20;
        uint64_t *nv = realloc(l->v, ncap * sizeof(*nv));
        if (!nv)
            return; /* keep measuring; percentiles just use fewer samples */
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n++] = ns;
}

static int in_window(const driver_t *d, uint64_t t)
{
    return t >= d->win_start && t < d->win_end;
}

/* Which server a grant names: from the matchkey for the tracker, from the
 * driver's own FIFO for the baseline (its replies are canned). */
static bconn_t *granted_server(driver_t *d, const char *text, size_t len)
{
    if (d->echo)
        return fifo_pop(d);
    char buf[IN_CAP];
    memcpy(buf, text, len);
    buf[len] = '\0';
    const char *mk = strstr(buf, "\"" BENCH_KEY ":");
    unsigned idx, gen;
    if (strncmp(buf, "[0,", 3) != 0 || !mk ||
        sscanf(mk + strlen(BENCH_KEY) + 2, "%u.%u", &idx, &gen) != 2 || idx >= d->nservers)
        return NULL;
    bconn_t *s = &d->servers[idx];
    return s->gen == gen ? s : NULL;
}

static int on_grant(driver_t *d, bconn_t *c, const char *text, size_t len)
{
    uint64_t t = now_ns();
    if (in_window(d, t))
        lat_push(&d->acc->lat, t - c->t_req);
    if (!d->grant_len)
        d->grant_len = len;
    bconn_t *s = granted_server(d, text, len);
    if (!s || s->st != ST_FREE)
        return conn_fail(d, c, "grant names no free server of ours");
    s->gen++;
    s->st = ST_REPUT;
    s->peer = c;
    c->st = ST_RELEASE;
    return server_put(d, s);
}

/* The re-PUT is acknowledged: the server is free again, the cycle is done. */
static int on_release(driver_t *d, bconn_t *s)
{
    uint64_t t = now_ns();
    bconn_t *c = s->peer;
    s->st = ST_FREE;
    s->peer = NULL;
    if (d->echo)
        fifo_push(d, s);
    if (in_window(d, t)) {
        d->acc->cycles++;
        d->acc->cycle_ns += t - c->t_req;
    }
    c->st = ST_IDLE;
    d->outstanding--;
    if (!d->issuing)
        return 0;
    if (!d->pace_ns)
        return client_request(d, c);
    /* Paced: the next REQUEST keeps its slot unless this cycle overran it;
     * then it goes now and the schedule restarts from here. */
    c->due += d->pace_ns;
    if (c->due > t)
        return 0;
    if (in_window(d, t))
        d->acc->late++;
    c->due = t;
    return client_request(d, c);
}

static void setup_done(driver_t *d, bconn_t *c, cstate_t st)
{
    c->st = st;
    d->pending_setup--;
    if (st == ST_FREE && d->echo)
        fifo_push(d, c);
}

static int is_zero(const char *text, size_t len)
{
    return len == 1 && text[0] == '0';
}

static int on_frame(driver_t *d, bconn_t *c, const char *text, size_t len)
{
    if (c->st == ST_REQUEST)
        return on_grant(d, c, text, len);
    if (!is_zero(text, len))
        return conn_fail(d, c, "expected the reply 0");
    if (!d->ack_len)
        d->ack_len = len;
    switch (c->st) {
    case ST_INFO:
        c->st = ST_PUT;
        return server_put(d, c);
    case ST_PUT:
        setup_done(d, c, ST_FREE);
        return 0;
    case ST_REPUT:
        return on_release(d, c);
    default:
        return conn_fail(d, c, "unexpected frame");
    }
}

static int on_magic(driver_t *d, bconn_t *c)
{
    if (le32(c->in) != TRACKER_MAGIC)
        return conn_fail(d, c, "wrong magic echo");
    if (c->role == ROLE_CLIENT) {
        setup_done(d, c, ST_IDLE);
        return 0;
    }
    char msg[128];
    snprintf(msg, sizeof(msg), "[5, {\"key\": \"server:%s\", \"addr\": [null, %u]}]", BENCH_KEY,
             SERVER_PORT0 + c->idx);
    c->st = ST_INFO;
    return send_str(d, c, msg);
}

static int process_input(driver_t *d, bconn_t *c)
{
    size_t off = 0;
    if (c->st == ST_MAGIC) {
        if (c->inlen < 4)
            return 0;
        if (on_magic(d, c) < 0)
            return -1;
        off = 4;
    }
    while (c->inlen - off >= 4) {
        size_t n = le32(c->in + off);
        if (n == 0 || n > IN_CAP - 4)
            return conn_fail(d, c, "bad frame length");
        if (c->inlen - off < 4 + n)
            break;
        if (on_frame(d, c, (const char *)c->in + off + 4, n) < 0)
            return -1;
        off += 4 + n;
    }
    memmove(c->in, c->in + off, c->inlen - off);
    c->inlen -= off;
    return 0;
}

static int on_readable(driver_t *d, bconn_t *c)
{
    ssize_t r = recv(c->fd, c->in + c->inlen, IN_CAP - c->inlen, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (r <= 0)
        return conn_fail(d, c, r < 0 ? strerror(errno) : "closed by the remote");
    c->inlen += (size_t)r;
    return process_input(d, c);
}

static int watch(driver_t *d, bconn_t *c, int op, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(d->ep, op, c->fd, &ev) < 0)
        return conn_fail(d, c, strerror(errno));
    return 0;
}

static int on_connected(driver_t *d, bconn_t *c)
{
    int err = 0;
    socklen_t elen = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen);
    if (err)
        return conn_fail(d, c, strerror(err));
    uint8_t magic[4];
    put_le32(magic, TRACKER_MAGIC);
    if (send(c->fd, magic, 4, MSG_NOSIGNAL) != 4)
        return conn_fail(d, c, "cannot send the magic");
    c->st = ST_MAGIC;
    return watch(d, c, EPOLL_CTL_MOD, EPOLLIN);
}

static int conn_open(driver_t *d, bconn_t *c, role_t role, uint32_t idx)
{
    memset(c, 0, sizeof(*c));
    c->role = role;
    c->idx = idx;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return conn_fail(d, c, strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)d->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    d->pending_setup++;
    c->st = ST_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS)
        return conn_fail(d, c, strerror(errno));
    return watch(d, c, EPOLL_CTL_ADD, EPOLLOUT);
}

/* One epoll_wait and its callbacks. */
static int pump(driver_t *d, int timeout_ms)
{
    struct epoll_event evs[EV_BATCH];
    int n = epoll_wait(d->ep, evs, EV_BATCH, timeout_ms);
    if (n < 0 && errno != EINTR)
        return fail("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n && !d->fatal; i++) {
        bconn_t *c = evs[i].data.ptr;
        if (c->st == ST_CONNECTING)
            on_connected(d, c);
        else
            on_readable(d, c);
    }
    return d->fatal ? -1 : 0;
}

/* Open connections [from, to) of one role and run each through its setup
 * (magic; servers also UPDATE_INFO and the first PUT), SETUP_WINDOW at a
 * time so the tracker's accept queue never overflows. */
static int setup_conns(driver_t *d, role_t role, size_t from, size_t to, double *rate)
{
    bconn_t *arr = role == ROLE_SERVER ? d->servers : d->clients;
    size_t *count = role == ROLE_SERVER ? &d->nservers : &d->nclients;
    uint64_t t0 = now_ns(), deadline = t0 + 30ull * 1000000000u;
    size_t next = from;
    while (next < to || d->pending_setup) {
        while (next < to && d->pending_setup < SETUP_WINDOW) {
            *count = next + 1;
            if (conn_open(d, &arr[next], role, (uint32_t)next) < 0)
                return -1;
            next++;
        }
        if (pump(d, 100) < 0)
            return -1;
        if (now_ns() > deadline)
            return fail("setting up %zu connections took more than 30 s", to - from);
    }
    if (rate)
        *rate = (double)(to - from) / ((double)(now_ns() - t0) / 1e9);
    return 0;
}

static void close_all(driver_t *d)
{
    /* Abortive close (RST): no TIME_WAIT left behind to eat ephemeral ports
     * when the bench is run again right away. */
    struct linger lg = {1, 0};
    for (size_t i = 0; i < d->nservers + d->nclients; i++) {
        bconn_t *c = i < d->nservers ? &d->servers[i] : &d->clients[i - d->nservers];
        if (c->fd > 0) {
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            close(c->fd);
            c->fd = -1;
        }
    }
    d->nservers = d->nclients = 0;
    d->fifo_head = d->fifo_tail = NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(const lat_t *l, double p)
{
    if (!l->n)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)(l->n - 1) + 0.5);
    return (double)l->v[i] / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void summarize(acc_t *a, result_t *r)
{
    lat_t *l = &a->lat;
    if (l->n)
        qsort(l->v, l->n, sizeof(*l->v), cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < l->n; i++)
        sum += (double)l->v[i];
    memset(r, 0, sizeof(*r));
    if (a->secs <= 0)
        return;
    r->samples = l->n;
    r->mean = l->n ? sum / (double)l->n / 1e3 : 0;
    r->p50 = pct_us(l, 50);
    r->p90 = pct_us(l, 90);
    r->p99 = pct_us(l, 99);
    r->p999 = pct_us(l, 99.9);
    r->max = l->n ? (double)l->v[l->n - 1] / 1e3 : 0;
    r->cycles = a->cycles;
    r->cycles_per_s = (double)a->cycles / a->secs;
    r->mean_cycle_us = a->cycles ? (double)a->cycle_ns / (double)a->cycles / 1e3 : 0;
    qsort(a->rate, (size_t)a->nrounds, sizeof(*a->rate), cmp_double);
    r->rate_min = a->rate[0];
    r->rate_med = a->rate[a->nrounds / 2];
    r->rate_max = a->rate[a->nrounds - 1];
    r->driver_cpu = (cpu_t){a->drv.user / a->secs, a->drv.sys / a->secs};
    r->server_cpu = (cpu_t){a->srv.user / a->secs, a->srv.sys / a->secs};
    r->other_cpu = a->other / a->secs;
    r->late_pct = a->cycles ? 100.0 * (double)a->late / (double)a->cycles : 0;
    r->srv_us = a->cycles ? (a->srv.user + a->srv.sys) / (double)a->cycles * 1e6 : 0;
    r->srv_user_us = a->cycles ? a->srv.user / (double)a->cycles * 1e6 : 0;
}

typedef struct snap {
    cpu_t drv, srv;
    double machine;
} snap_t;

static snap_t snap_take(const driver_t *d)
{
    snap_t s = {self_cpu(), proc_cpu(d->remote_pid), machine_task_s()};
    return s;
}

/* Add one measured window [a, b] of secs seconds to acc. */
static void acc_add(acc_t *acc, snap_t a, snap_t b, double secs, uint64_t cycles)
{
    cpu_t drv = {b.drv.user - a.drv.user, b.drv.sys - a.drv.sys};
    cpu_t srv = {b.srv.user - a.srv.user, b.srv.sys - a.srv.sys};
    acc->drv.user += drv.user;
    acc->drv.sys += drv.sys;
    acc->srv.user += srv.user;
    acc->srv.sys += srv.sys;
    double other = (b.machine - a.machine) - (drv.user + drv.sys + srv.user + srv.sys);
    acc->other += other > 0 ? other : 0;
    acc->secs += secs;
    if (acc->nrounds < MAX_ROUNDS)
        acc->rate[acc->nrounds++] = (double)cycles / secs;
}

static int drain(driver_t *d)
{
    d->issuing = 0;
    uint64_t deadline = now_ns() + 5ull * 1000000000u;
    while (d->outstanding && now_ns() < deadline) {
        if (pump(d, 10) < 0)
            return -1;
    }
    if (d->outstanding)
        return fail("%zu cycles still outstanding 5 s after the run", d->outstanding);
    return 0;
}

/* Paced run: send the REQUESTs whose time has come. */
static int send_due(driver_t *d, size_t nclients, uint64_t t)
{
    for (size_t i = 0; i < nclients; i++) {
        bconn_t *c = &d->clients[i];
        if (c->st == ST_IDLE && c->due <= t && client_request(d, c) < 0)
            return -1;
    }
    return 0;
}

/* Closed loop (rate 0): start every client at once. Paced: offered rate
 * cycles/s in total, the clients' due times spread evenly over one interval. */
static int start_clients(driver_t *d, size_t nclients, double rate, uint64_t t0)
{
    d->pace_ns = rate > 0 ? (uint64_t)((double)nclients / rate * 1e9) : 0;
    for (size_t i = 0; i < nclients; i++) {
        d->clients[i].due = t0 + d->pace_ns * i / nclients;
        if (!d->pace_ns && client_request(d, &d->clients[i]) < 0)
            return -1;
    }
    return 0;
}

/* One round: each of the first nclients clients runs cycles for
 * warm_s + dur_s, back to back (rate 0) or paced to rate cycles/s in total;
 * cycles completed and grants received in the last dur_s go to acc (NULL: an
 * unmeasured warm-up). CPU use is sampled at the window's edges. Ends with
 * nothing in flight. A paced run polls without sleeping (REQUESTs are due
 * every few tens of microseconds), so its driver CPU reads 100%. */
static int run_round(driver_t *d, size_t nclients, double rate, double warm_s, double dur_s,
                     acc_t *acc)
{
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)((warm_s + dur_s) * 1e9);
    d->acc = acc;
    d->win_start = acc ? t0 + (uint64_t)(warm_s * 1e9) : 0;
    d->win_end = acc ? end : 0;
    uint64_t cycles0 = acc ? acc->cycles : 0;
    d->issuing = 1;
    if (start_clients(d, nclients, rate, t0) < 0)
        return -1;
    snap_t s0 = {{0, 0}, {0, 0}, 0};
    int started = 0;
    uint64_t t;
    do {
        if (pump(d, d->pace_ns ? 0 : 1) < 0)
            return -1;
        t = now_ns();
        if (d->pace_ns && send_due(d, nclients, t) < 0)
            return -1;
        if (acc && !started && t >= d->win_start) {
            started = 1;
            s0 = snap_take(d);
        }
    } while (t < end);
    if (acc)
        acc_add(acc, s0, snap_take(d), dur_s, acc->cycles - cycles0);
    int rc = drain(d);
    d->acc = NULL;
    return rc;
}

/* ---- SUMMARY check (blocking) ------------------------------------------------ */

static int read_full(int fd, void *p, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = recv(fd, (char *)p + got, n - got, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* The tracker's own count of free slots for the bench key, -1 on error. */
static long summary_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {10, 0};
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    uint8_t hdr[4], req[7];
    long nfree = -1;
    char *body = NULL;
    put_le32(hdr, TRACKER_MAGIC);
    put_le32(req, 3);
    memcpy(req + 4, "[6]", 3);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || send(fd, hdr, 4, 0) != 4 ||
        read_full(fd, hdr, 4) < 0 || send(fd, req, 7, 0) != 7 || read_full(fd, hdr, 4) < 0)
        goto out;
    size_t n = le32(hdr);
    if (n == 0 || n > SUMMARY_MAX || !(body = malloc(n + 1)) || read_full(fd, body, n) < 0)
        goto out;
    body[n] = '\0';
    const char *q = strstr(body, "\"" BENCH_KEY "\"");
    q = q ? strstr(q, "\"free\"") : NULL;
    if (q)
        nfree = strtol(q + strcspn(q + 6, "0123456789") + 6, NULL, 10);
out:
    free(body);
    if (fd >= 0)
        close(fd);
    return nfree;
}

/* ---- phases ------------------------------------------------------------------- */

#define ROUND_WARMUP_S 0.1 /* skip the burst of 64 simultaneous first requests */

typedef struct config {
    const char *tvmrpc;
    size_t servers, clients, rss_servers;
    double warmup_s, duration_s, idle_s;
    double rate, paced_s; /* paced run: offered cycles/s, measured seconds per side */
    int rounds, pin, baseline, budget_s;
} config_t;

typedef struct report {
    result_t trk, tcp;   /* C clients, closed loop; tracker and baseline */
    result_t trkp, tcpp; /* C clients paced to cfg->rate */
    result_t trk1, tcp1; /* 1 client */
    double reg_rate;
    long rss_idle_kb, rss_load_kb, rss_big_kb, hwm_kb;
    size_t rss_servers; /* achieved */
    long summary_free;
    int tracker_status, log_lines;
    int driver_core, server_core; /* CPU numbers, -1 = not pinned */
    size_t grant_len, tcp_grant_len;
} report_t;

typedef struct bench {
    const config_t *cfg;
    report_t *rep;
    remote_t trk, echo;
    driver_t dt, de; /* drivers for the tracker and the echo server */
    acc_t a_trk, a_tcp, a_trkp, a_tcpp, a_trk1, a_tcp1;
} bench_t;

static int driver_init(driver_t *d, const config_t *cfg, int echo, const remote_t *rem)
{
    d->echo = echo;
    d->port = rem->port;
    d->remote_pid = rem->pid;
    d->max_servers = cfg->rss_servers > cfg->servers ? cfg->rss_servers : cfg->servers;
    d->max_clients = cfg->clients;
    d->servers = calloc(d->max_servers, sizeof(bconn_t));
    d->clients = calloc(d->max_clients, sizeof(bconn_t));
    d->ep = epoll_create1(EPOLL_CLOEXEC);
    if (!d->servers || !d->clients || d->ep < 0)
        return fail("out of memory");
    return 0;
}

static void driver_free(driver_t *d)
{
    close_all(d);
    if (d->ep >= 0)
        close(d->ep);
    d->ep = -1;
    free(d->servers);
    free(d->clients);
    d->servers = d->clients = NULL;
}

static int driver_setup(driver_t *d, const config_t *cfg, double *reg_rate)
{
    if (setup_conns(d, ROLE_SERVER, 0, cfg->servers, reg_rate) < 0 ||
        setup_conns(d, ROLE_CLIENT, 0, cfg->clients, NULL) < 0)
        return -1;
    return 0;
}

/* Tracker and baseline take turns in short rounds (order alternating), so
 * whatever else the machine is doing disturbs both alike and the ratio
 * stays meaningful. */
static int interleave(bench_t *b, size_t nclients, double rate, double warm_s, double dur_s,
                      acc_t *at, acc_t *ab)
{
    int rounds = b->cfg->rounds;
    driver_t *de = b->cfg->baseline ? &b->de : NULL;
    if (warm_s > 0 && (run_round(&b->dt, nclients, rate, 0, warm_s, NULL) < 0 ||
                       (de && run_round(de, nclients, rate, 0, warm_s, NULL) < 0)))
        return -1;
    for (int r = 0; r < rounds; r++) {
        driver_t *first = r % 2 && de ? de : &b->dt, *second = first == de ? &b->dt : de;
        acc_t *afirst = first == de ? ab : at, *asecond = first == de ? at : ab;
        if (run_round(first, nclients, rate, ROUND_WARMUP_S, dur_s / rounds, afirst) < 0 ||
            (second &&
             run_round(second, nclients, rate, ROUND_WARMUP_S, dur_s / rounds, asecond) < 0))
            return -1;
    }
    return 0;
}

static int load_phases(bench_t *b)
{
    const config_t *cfg = b->cfg;
    report_t *rep = b->rep;
    if (driver_init(&b->dt, cfg, 0, &b->trk) < 0 || driver_setup(&b->dt, cfg, &rep->reg_rate) < 0)
        return -1;
    rep->rss_load_kb = proc_status_kb(b->trk.pid, "VmRSS");
    if (cfg->baseline &&
        (echo_start(&b->echo, rep->server_core, 0) < 0 ||
         driver_init(&b->de, cfg, 1, &b->echo) < 0 || driver_setup(&b->de, cfg, NULL) < 0))
        return -1;
    if (interleave(b, cfg->clients, 0, cfg->warmup_s / 2, cfg->duration_s, &b->a_trk, &b->a_tcp) <
        0)
        return -1;
    if (cfg->paced_s > 0 && cfg->rate > 0 &&
        interleave(b, cfg->clients, cfg->rate, 0, cfg->paced_s, &b->a_trkp, &b->a_tcpp) < 0)
        return -1;
    if (cfg->idle_s > 0 && interleave(b, 1, 0, 0, cfg->idle_s, &b->a_trk1, &b->a_tcp1) < 0)
        return -1;
    rep->grant_len = b->dt.grant_len;
    rep->tcp_grant_len = b->de.grant_len;
    return 0;
}

/* Grow to rss_servers registered servers (clients stay connected) and read
 * the tracker's memory; SUMMARY confirms it really holds them all. */
static int memory_phase(bench_t *b)
{
    const config_t *cfg = b->cfg;
    report_t *rep = b->rep;
    if (cfg->rss_servers > cfg->servers &&
        setup_conns(&b->dt, ROLE_SERVER, cfg->servers, cfg->rss_servers, NULL) < 0)
        return -1;
    sleep_ms(100);
    rep->rss_servers = b->dt.nservers;
    rep->rss_big_kb = proc_status_kb(b->trk.pid, "VmRSS");
    rep->summary_free = summary_free(b->trk.port);
    rep->hwm_kb = proc_status_kb(b->trk.pid, "VmHWM");
    if (rep->summary_free != (long)rep->rss_servers)
        return fail("SUMMARY reports %ld free slots, %zu expected", rep->summary_free,
                    rep->rss_servers);
    return 0;
}

static int run_bench(bench_t *b)
{
    report_t *rep = b->rep;
    b->dt.ep = b->de.ep = -1;
    int rc = tracker_start(&b->trk, b->cfg->tvmrpc, rep->server_core);
    if (rc == 0) {
        sleep_ms(100); /* let it settle before the idle sample */
        rep->rss_idle_kb = proc_status_kb(b->trk.pid, "VmRSS");
        rc = load_phases(b);
    }
    /* The baseline is done: free its fds for the memory run. */
    driver_free(&b->de);
    child_stop(b->echo.pid);
    if (rc == 0)
        rc = memory_phase(b);
    driver_free(&b->dt);
    if (b->trk.pid > 0) {
        rep->tracker_status = child_stop(b->trk.pid);
        rep->log_lines = show_log(b->trk.log_path, 5);
        unlink(b->trk.log_path);
    }
    summarize(&b->a_trk, &rep->trk);
    summarize(&b->a_tcp, &rep->tcp);
    summarize(&b->a_trkp, &rep->trkp);
    summarize(&b->a_tcpp, &rep->tcpp);
    summarize(&b->a_trk1, &rep->trk1);
    summarize(&b->a_tcp1, &rep->tcp1);
    acc_t *accs[] = {&b->a_trk, &b->a_tcp, &b->a_trkp, &b->a_tcpp, &b->a_trk1, &b->a_tcp1};
    for (size_t i = 0; i < sizeof(accs) / sizeof(accs[0]); i++)
        free(accs[i]->lat.v);
    return rc;
}

/* ---- output --------------------------------------------------------------------- */

#define T_CYCLES 20000.0
#define T_P99_US 1000.0
#define T_RSS_MIB 64.0
#define NOISY_OTHER_CPU 0.10 /* other processes above 10% of a core: numbers are disturbed */

static double ratio(double a, double b)
{
    return b > 0 ? a / b : 0;
}

static void row(const char *name, double trk, double tcp, int prec)
{
    printf("  %-30s %11.*f %11.*f %8.2f\n", name, prec, trk, prec, tcp, ratio(trk, tcp));
}

static void print_results(const char *title, const result_t *t, const result_t *b)
{
    printf("\n%-32s %11s %11s %8s\n", title, "tracker", "raw TCP", "ratio");
    row("cycles/s", t->cycles_per_s, b->cycles_per_s, 0);
    row("  per round: min", t->rate_min, b->rate_min, 0);
    row("  per round: median", t->rate_med, b->rate_med, 0);
    row("  per round: max", t->rate_max, b->rate_max, 0);
    row("mean cycle time (us)", t->mean_cycle_us, b->mean_cycle_us, 1);
    row("grant latency mean (us)", t->mean, b->mean, 1);
    row("grant latency p50 (us)", t->p50, b->p50, 1);
    row("grant latency p90 (us)", t->p90, b->p90, 1);
    row("grant latency p99 (us)", t->p99, b->p99, 1);
    row("grant latency p99.9 (us)", t->p999, b->p999, 1);
    row("grant latency max (us)", t->max, b->max, 1);
    row("driver CPU user (% of a core)", 100 * t->driver_cpu.user, 100 * b->driver_cpu.user, 0);
    row("driver CPU sys (% of a core)", 100 * t->driver_cpu.sys, 100 * b->driver_cpu.sys, 0);
    row("server CPU user (% of a core)", 100 * t->server_cpu.user, 100 * b->server_cpu.user, 0);
    row("server CPU sys (% of a core)", 100 * t->server_cpu.sys, 100 * b->server_cpu.sys, 0);
    row("server CPU per cycle (us)", t->srv_us, b->srv_us, 2);
    row("  of which user (us)", t->srv_user_us, b->srv_user_us, 2);
    row("other processes (% of a core)", 100 * t->other_cpu, 100 * b->other_cpu, 0);
    if (t->late_pct > 0 || b->late_pct > 0)
        row("REQUESTs sent late (%)", t->late_pct, b->late_pct, 2);
}

static void json_result(const char *name, const result_t *r)
{
    printf("\"%s\": {\"cycles_per_s\": %.1f, \"rounds_cycles_per_s\": {\"min\": %.1f, "
           "\"median\": %.1f, \"max\": %.1f}, \"cycles\": %" PRIu64 ", \"mean_cycle_us\": %.2f, "
           "\"lat_us\": {\"mean\": %.2f, \"p50\": %.2f, \"p90\": %.2f, \"p99\": %.2f, "
           "\"p999\": %.2f, \"max\": %.2f, \"n\": %zu}, \"driver_cpu\": {\"user\": %.3f, "
           "\"sys\": %.3f}, \"server_cpu\": {\"user\": %.3f, \"sys\": %.3f}, "
           "\"other_cpu\": %.3f, \"late_pct\": %.3f, \"server_us_per_cycle\": %.3f, "
           "\"server_user_us_per_cycle\": %.3f}",
           name, r->cycles_per_s, r->rate_min, r->rate_med, r->rate_max, r->cycles,
           r->mean_cycle_us, r->mean, r->p50, r->p90, r->p99, r->p999, r->max, r->samples,
           r->driver_cpu.user, r->driver_cpu.sys, r->server_cpu.user, r->server_cpu.sys,
           r->other_cpu, r->late_pct, r->srv_us, r->srv_user_us);
}

/* ok: 1 pass, 0 fail, -1 informational (no target). */
static void json_metric(const char *name, double v, const char *unit, const char *target, int ok,
                        int last)
{
    printf("{\"name\": \"%s\", \"value\": %.3f, \"unit\": \"%s\", \"target\": \"%s\"", name, v,
           unit, target);
    if (ok >= 0)
        printf(", \"ok\": %s", ok ? "true" : "false");
    printf("}%s", last ? "" : ", ");
}

/* The worst disturbance by other processes over all measured runs. */
static double max_other_cpu(const report_t *r)
{
    const result_t *res[] = {&r->trk, &r->tcp, &r->trkp, &r->tcpp, &r->trk1, &r->tcp1};
    double m = 0;
    for (int i = 0; i < 6; i++)
        m = res[i]->other_cpu > m ? res[i]->other_cpu : m;
    return m;
}

typedef struct verdict {
    int cycles, p99_paced, p99_closed, rss; /* 1 pass, 0 fail, -1 not measured */
} verdict_t;

/* One line for scripts/bench.sh: BENCH_RESULT {"bench": ..., "metrics": [...], ...}. */
static void print_json(const config_t *cfg, const report_t *r, const verdict_t *v)
{
    char name[64], target[64];
    printf("BENCH_RESULT {\"bench\": \"tracker\", \"metrics\": [");
    json_metric("cycles_per_s", r->trk.cycles_per_s, "1/s", ">= 20000", v->cycles, 0);
    snprintf(name, sizeof(name), "grant_p99_at_%.0f_per_s", cfg->rate);
    json_metric(name, r->trkp.p99, "us", "< 1000", v->p99_paced, 0);
    snprintf(target, sizeof(target), "< 1000 (closed loop; raw TCP %.0f)", r->tcp.p99);
    json_metric("grant_p99_closed_loop", r->trk.p99, "us", target, v->p99_closed, 0);
    snprintf(name, sizeof(name), "tracker_rss_%zu_servers", r->rss_servers);
    json_metric(name, (double)r->rss_big_kb / 1024.0, "MiB", "< 64", v->rss, 0);
    json_metric("cycle_time_vs_tcp", ratio(r->trk.mean_cycle_us, r->tcp.mean_cycle_us), "x", "", -1,
                0);
    json_metric("server_cpu_per_cycle_vs_tcp", ratio(r->trk.srv_us, r->tcp.srv_us), "x", "", -1, 0);
    json_metric("grant_p99_closed_vs_tcp", ratio(r->trk.p99, r->tcp.p99), "x", "", -1, 0);
    json_metric("grant_p99_paced_vs_tcp", ratio(r->trkp.p99, r->tcpp.p99), "x", "", -1, 0);
    json_metric("grant_p50_1client", r->trk1.p50, "us", "", -1, 0);
    json_metric("grant_p50_1client_vs_tcp", ratio(r->trk1.p50, r->tcp1.p50), "x", "", -1, 0);
    json_metric("other_cpu_max", 100 * max_other_cpu(r), "% core", "", -1, 1);
    printf("], \"config\": {\"servers\": %zu, \"clients\": %zu, \"rss_servers\": %zu, "
           "\"warmup_s\": %.2f, \"duration_s\": %.2f, \"rate\": %.0f, \"paced_s\": %.2f, "
           "\"idle_s\": %.2f, \"rounds\": %d, \"driver_core\": %d, \"server_core\": %d}, ",
           cfg->servers, cfg->clients, r->rss_servers, cfg->warmup_s, cfg->duration_s, cfg->rate,
           cfg->paced_s, cfg->idle_s, cfg->rounds, r->driver_core, r->server_core);
    const result_t *res[] = {&r->trk, &r->tcp, &r->trkp, &r->tcpp, &r->trk1, &r->tcp1};
    const char *names[] = {"tracker",         "tcp",        "tracker_paced", "tcp_paced",
                           "tracker_1client", "tcp_1client"};
    for (int i = 0; i < 6; i++) {
        json_result(names[i], res[i]);
        printf(", ");
    }
    printf("\"rss_kib\": {\"idle\": %ld, \"load_servers\": %zu, \"load\": %ld, "
           "\"memory_servers\": %zu, \"memory\": %ld, \"peak\": %ld}, "
           "\"registrations_per_s\": %.0f, \"summary_free\": %ld, "
           "\"grant_json_bytes\": {\"tracker\": %zu, \"tcp\": %zu}, \"tracker_log_lines\": %d}\n",
           r->rss_idle_kb, cfg->servers, r->rss_load_kb, r->rss_servers, r->rss_big_kb, r->hwm_kb,
           r->reg_rate, r->summary_free, r->grant_len, r->tcp_grant_len, r->log_lines);
}

static void print_memory(const config_t *cfg, const report_t *r)
{
    double per_server = r->rss_servers > cfg->servers ? (double)(r->rss_big_kb - r->rss_load_kb) /
                                                            (double)(r->rss_servers - cfg->servers)
                                                      : 0;
    printf("\ntracker memory (VmRSS): idle %.1f MiB, %zu servers %.1f MiB, %zu servers %.1f MiB "
           "(%.2f KiB per extra server; VmHWM %.1f MiB after a SUMMARY)\n",
           r->rss_idle_kb / 1024.0, cfg->servers, r->rss_load_kb / 1024.0, r->rss_servers,
           r->rss_big_kb / 1024.0, per_server, r->hwm_kb / 1024.0);
    printf("registration (connect + magic + UPDATE_INFO + PUT): %.0f servers/s; "
           "SUMMARY free=%ld\n",
           r->reg_rate, r->summary_free);
    if (r->rss_servers < cfg->rss_servers)
        printf("note: only %zu of %zu servers registered (RLIMIT_NOFILE)\n", r->rss_servers,
               cfg->rss_servers);
}

static void print_warnings(const config_t *cfg, const report_t *r)
{
    double other = max_other_cpu(r);
    if (other > NOISY_OTHER_CPU)
        printf("\nWARNING: other processes used up to %.0f%% of a core during the measurement; "
               "absolute numbers are disturbed (the interleaved ratios less so).\n",
               100 * other);
    if (cfg->baseline && r->grant_len != r->tcp_grant_len)
        printf("WARNING: grant sizes differ (tracker %zu bytes, baseline %zu bytes)\n",
               r->grant_len, r->tcp_grant_len);
    if (r->log_lines)
        printf("WARNING: the tracker logged %d warning/error lines (first ones on stderr)\n",
               r->log_lines);
}

static const char *verdict_word(int ok)
{
    return ok < 0 ? "n/a" : ok ? "PASS" : "FAIL";
}

/* Exit status 0 only if the targets pass; the closed-loop p99 is shown but
 * does not count (with C clients always in flight it is C / 2 / throughput
 * by Little's law, and the raw TCP baseline misses it too on a 2-CPU box). */
static int print_report(const config_t *cfg, const report_t *r)
{
    char title[64];
    snprintf(title, sizeof(title), "%zu clients, closed loop", cfg->clients);
    print_results(title, &r->trk, &r->tcp);
    int paced = cfg->paced_s > 0 && cfg->rate > 0;
    if (paced) {
        snprintf(title, sizeof(title), "%zu clients, paced %.0f/s", cfg->clients, cfg->rate);
        print_results(title, &r->trkp, &r->tcpp);
    }
    if (cfg->idle_s > 0)
        print_results("1 client (no queueing)", &r->trk1, &r->tcp1);
    print_memory(cfg, r);
    print_warnings(cfg, r);
    verdict_t v = {r->trk.cycles_per_s >= T_CYCLES, paced ? r->trkp.p99 < T_P99_US : -1,
                   r->trk.p99 < T_P99_US, r->rss_big_kb / 1024.0 < T_RSS_MIB};
    printf("\ntargets (%zu servers, %zu clients):\n", cfg->servers, cfg->clients);
    printf("  %-52s %10.0f  %s\n", "cycles/s, closed loop >= 20000", r->trk.cycles_per_s,
           verdict_word(v.cycles));
    snprintf(title, sizeof(title), "p99 grant latency (us) paced at %.0f/s < 1000", cfg->rate);
    printf("  %-52s %10.1f  %s\n", title, r->trkp.p99, verdict_word(v.p99_paced));
    snprintf(title, sizeof(title), "p99 grant latency (us) closed loop < 1000 [info]");
    printf("  %-52s %10.1f  %s (raw TCP: %.1f)\n", title, r->trk.p99, verdict_word(v.p99_closed),
           r->tcp.p99);
    snprintf(title, sizeof(title), "RSS (MiB), %zu servers < 64", r->rss_servers);
    printf("  %-52s %10.1f  %s\n", title, r->rss_big_kb / 1024.0, verdict_word(v.rss));
    print_json(cfg, r, &v);
    return v.cycles && v.p99_paced != 0 && v.rss ? 0 : 1;
}

/* ---- main ------------------------------------------------------------------------- */

/* Default binary: $TVMRPC_BIN, else ../tvmrpc next to this executable
 * (build-bench/bench/bench_tracker -> build-bench/tvmrpc), else the usual
 * build directories. */
static const char *find_tvmrpc(void)
{
    static char path[4096];
    const char *env = getenv("TVMRPC_BIN");
    if (env && *env)
        return env;
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 16);
    if (n > 0) {
        path[n] = '\0';
        char *slash = strrchr(path, '/');
        if (slash) {
            strcpy(slash, "/../tvmrpc");
            if (access(path, X_OK) == 0)
                return path;
        }
    }
    return access("build-bench/tvmrpc", X_OK) == 0 ? "build-bench/tvmrpc" : "build/tvmrpc";
}

static void usage(FILE *fp)
{
    fprintf(fp, "usage: bench_tracker [options]\n"
                "Benchmark `tvmrpc tracker` on 127.0.0.1 against a raw TCP baseline.\n\n"
                "  --tvmrpc PATH     tvmrpc binary (default $TVMRPC_BIN, ../tvmrpc next to this\n"
                "                    program, build-bench/tvmrpc, build/tvmrpc)\n"
                "  --servers N       registered servers during the load run (default 1000)\n"
                "  --clients N       concurrent clients, one cycle in flight each (default 64)\n"
                "  --rss-servers N   registered servers for the memory figure (default 10000)\n"
                "  --warmup S        unmeasured seconds first, split between the sides\n"
                "                    (default 1)\n"
                "  --duration S      measured seconds per side (default 5)\n"
                "  --rounds N        split them into N rounds, tracker and baseline\n"
                "                    alternating (default 5)\n"
                "  --rate R          offered cycles/s of the paced run (default 20000)\n"
                "  --paced S         measured seconds per side of the paced run, 0 = skip\n"
                "                    (default 2)\n"
                "  --idle S          measured seconds per side of the 1-client latency run,\n"
                "                    0 = skip (default 1)\n"
                "  --no-pin          do not pin the driver and the server to separate CPUs\n"
                "  --no-baseline     skip the raw TCP baseline\n"
                "  --budget S        abort after S seconds in total (default 55)\n"
                "exit status: 0 all targets met, 1 a target missed, 2 error, 3 time budget\n");
}

static int parse_flag(const char *a, config_t *cfg)
{
    if (!strcmp(a, "--no-pin"))
        cfg->pin = 0;
    else if (!strcmp(a, "--no-baseline"))
        cfg->baseline = 0;
    else
        return 0;
    return 1;
}

static int parse_option(const char *a, const char *v, config_t *cfg)
{
    if (!strcmp(a, "--tvmrpc"))
        cfg->tvmrpc = v;
    else if (!strcmp(a, "--servers"))
        cfg->servers = strtoul(v, NULL, 10);
    else if (!strcmp(a, "--clients"))
        cfg->clients = strtoul(v, NULL, 10);
    else if (!strcmp(a, "--rss-servers"))
        cfg->rss_servers = strtoul(v, NULL, 10);
    else if (!strcmp(a, "--warmup"))
        cfg->warmup_s = atof(v);
    else if (!strcmp(a, "--duration"))
        cfg->duration_s = atof(v);
    else if (!strcmp(a, "--idle"))
        cfg->idle_s = atof(v);
    else if (!strcmp(a, "--rounds"))
        cfg->rounds = atoi(v);
    else if (!strcmp(a, "--rate"))
        cfg->rate = atof(v);
    else if (!strcmp(a, "--paced"))
        cfg->paced_s = atof(v);
    else if (!strcmp(a, "--budget"))
        cfg->budget_s = atoi(v);
    else
        return -1;
    return 0;
}

/* 0 to run, 1 after --help, -1 on a usage error. */
static int parse_args(int argc, char **argv, config_t *cfg)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 1;
        }
        if (parse_flag(argv[i], cfg))
            continue;
        if (i + 1 >= argc || parse_option(argv[i], argv[i + 1], cfg) < 0) {
            usage(stderr);
            return -1;
        }
        i++;
    }
    if (cfg->servers < 1 || cfg->clients < 1 || cfg->duration_s <= 0 || cfg->warmup_s < 0 ||
        cfg->idle_s < 0 || cfg->paced_s < 0 || cfg->rate < 0 || cfg->budget_s < 1 ||
        cfg->rounds < 1 || cfg->rounds > MAX_ROUNDS || cfg->servers > 99999 ||
        cfg->rss_servers > 99999) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Raise the soft fd limit to the hard one and cap the memory run to what fits
 * (the driver holds one fd per simulated peer; the tracker inherits the limit). */
static void fit_fd_limit(config_t *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    size_t room = rl.rlim_cur == RLIM_INFINITY ? (size_t)-1 : (size_t)rl.rlim_cur;
    room = room > cfg->clients + 64 ? room - cfg->clients - 64 : 0;
    if (cfg->rss_servers > room)
        cfg->rss_servers = room;
    if (cfg->servers > room)
        cfg->servers = room;
}

int main(int argc, char **argv)
{
    config_t cfg = {.servers = 1000,
                    .clients = 64,
                    .rss_servers = 10000,
                    .warmup_s = 1,
                    .duration_s = 5,
                    .rate = 20000,
                    .paced_s = 2,
                    .idle_s = 1,
                    .rounds = 5,
                    .pin = 1,
                    .baseline = 1,
                    .budget_s = 55};
    int prc = parse_args(argc, argv, &cfg);
    if (prc != 0)
        return prc > 0 ? 0 : 2;
    if (!cfg.tvmrpc)
        cfg.tvmrpc = find_tvmrpc();
    setvbuf(stdout, NULL, _IOLBF, 0);
    install_signals(cfg.budget_s);
    fit_fd_limit(&cfg);
    report_t rep;
    memset(&rep, 0, sizeof(rep));
    if (!cfg.pin || pick_cpus(&rep.driver_core, &rep.server_core) < 0)
        rep.driver_core = rep.server_core = -1;
    pin_to(rep.driver_core);
    printf("bench_tracker: %s; %zu servers, %zu clients; %.1f s warm-up, then %d alternating "
           "rounds of %.2f s per side; driver on CPU %d, server on CPU %d\n",
           cfg.tvmrpc, cfg.servers, cfg.clients, cfg.warmup_s, cfg.rounds,
           cfg.duration_s / cfg.rounds, rep.driver_core, rep.server_core);
    bench_t b;
    memset(&b, 0, sizeof(b));
    b.cfg = &cfg;
    b.rep = &rep;
    if (run_bench(&b) < 0) {
        fprintf(stderr, "bench_tracker: %s\n", g_err);
        return 2;
    }
    return print_report(&cfg, &rep);
}
