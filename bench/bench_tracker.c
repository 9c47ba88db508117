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
 * The driver and the echo server are src/client/bench_trk.c, shared with
 * `tvmrpc bench`: single-threaded (epoll, level-triggered, one send per
 * message, TCP_NODELAY). This file starts the remotes, pins the driver to one
 * CPU and the tracker or echo server to another, runs the phases and reports.
 * Every number comes from the driver's clock: latency includes both kernels'
 * TCP paths and the driver's own queueing, as a client would see. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/bench_lib.h"
#include "tracker/proto.h"

#define BENCH_KEY "bench"
#define SETUP_MS 30000 /* connecting and registering the simulated peers */
#define SUMMARY_MAX (16u << 20)

/* ---- errors ---------------------------------------------------------------- */

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

static void sleep_ms(int ms)
{
    bench_sleep_us((unsigned)ms * 1000u);
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

/* Run pid (0: ourselves) on cpu only; nothing if cpu < 0. */
static void pin(pid_t pid, int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(pid, sizeof(set), &set);
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
    pin(0, cpu);
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

/* ---- baseline: the echo server (bench_trk.c) ----------------------------------- */

/* Grant and acknowledgement of the template's own sizes: what a tracker that
 * writes like Python's json.dumps sends (a difference is reported). */
static int echo_start(remote_t *r, int cpu)
{
    if (bench_trk_echo_start(0, 0, BENCH_KEY, &r->pid, &r->port, g_err, sizeof(g_err)) < 0)
        return -1;
    children_set(-1, r->pid);
    pin(r->pid, cpu);
    r->log_path[0] = '\0';
    return 0;
}

/* ---- rounds -------------------------------------------------------------------- */

#define MAX_ROUNDS 100

/* One remote under one load shape, summed over all its measured rounds. */
typedef struct acc {
    uint64_t cycles, cycle_ns; /* completed inside the windows; their request->ack time */
    bench_samples_t lat;       /* grant latencies inside the windows, ns */
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

typedef struct snap {
    cpu_t drv, srv;
    double machine;
} snap_t;

/* One remote and the driver that loads it. */
typedef struct driver {
    bench_trk_t *t;
    pid_t remote_pid; /* the tracker or echo server, for its CPU time */
    snap_t edge[2];   /* at the opening and the closing of the current window */
} driver_t;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Grant latencies in microseconds: the percentiles are exact (all samples
 * kept, sorted once). */
static void summarize_lat(bench_samples_t *l, result_t *r)
{
    double sum = 0;
    for (size_t i = 0; i < l->n; i++)
        sum += (double)l->v[i];
    r->samples = l->n;
    r->mean = l->n ? sum / (double)l->n / 1e3 : 0;
    r->p50 = bench_samples_pct(l, 50) / 1e3;
    r->p90 = bench_samples_pct(l, 90) / 1e3;
    r->p99 = bench_samples_pct(l, 99) / 1e3;
    r->p999 = bench_samples_pct(l, 99.9) / 1e3;
    r->max = bench_samples_pct(l, 100) / 1e3;
}

static void summarize(acc_t *a, result_t *r)
{
    memset(r, 0, sizeof(*r));
    if (a->secs <= 0)
        return;
    summarize_lat(&a->lat, r);
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

/* bench_trk calls this as the measured window opens and closes. */
static void on_edge(void *arg, int closing)
{
    driver_t *d = arg;
    d->edge[closing] = snap_take(d);
}

/* One round: each of the first nclients clients runs cycles for
 * warm_s + dur_s, back to back (rate 0) or paced to rate cycles/s in total;
 * cycles completed and grants received in the last dur_s go to acc (NULL: an
 * unmeasured warm-up of warm_s + dur_s). Ends with nothing in flight. */
static int run_round(driver_t *d, size_t nclients, double rate, double warm_s, double dur_s,
                     acc_t *acc)
{
    bench_trk_round_t r = {.nclients = (int)nclients,
                           .rate = rate,
                           .warm_s = acc ? warm_s : warm_s + dur_s,
                           .secs = acc ? dur_s : 0,
                           .grant_ns = acc ? &acc->lat : NULL,
                           .edge = on_edge,
                           .edge_arg = d};
    if (acc && !acc->lat.cap) {
        /* Room for every sample up front: no realloc inside a window. */
        acc->lat.v = malloc((1u << 20) * sizeof(*acc->lat.v));
        acc->lat.cap = acc->lat.v ? 1u << 20 : 0;
    }
    if (bench_trk_run(d->t, &r, g_err, sizeof(g_err)) < 0)
        return -1;
    if (acc) {
        acc->cycles += r.cycles;
        acc->cycle_ns += r.cycle_ns;
        acc->late += r.late;
        acc_add(acc, d->edge[0], d->edge[1], dur_s, r.cycles);
    }
    return 0;
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

/* Connect the simulated peers to rem: cfg's servers (*reg_rate: their
 * registrations per second) and clients, with room for the memory run. */
static int driver_init(driver_t *d, const config_t *cfg, int echo, const remote_t *rem,
                       double *reg_rate)
{
    size_t max_servers = cfg->rss_servers > cfg->servers ? cfg->rss_servers : cfg->servers;
    d->remote_pid = rem->pid;
    d->t = bench_trk_new("127.0.0.1", rem->port, echo, BENCH_KEY, (int)max_servers,
                         (int)cfg->clients, g_err, sizeof(g_err));
    if (!d->t)
        return -1;
    int rc =
        bench_trk_add_servers(d->t, (int)cfg->servers, SETUP_MS, reg_rate, g_err, sizeof(g_err));
    return rc < 0 ? -1
                  : bench_trk_add_clients(d->t, (int)cfg->clients, SETUP_MS, g_err, sizeof(g_err));
}

static void driver_free(driver_t *d)
{
    bench_trk_close(d->t);
    d->t = NULL;
}

static size_t grant_len(const driver_t *d)
{
    size_t grant = 0, ack = 0;
    if (d->t)
        bench_trk_sizes(d->t, &grant, &ack);
    return grant;
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
    if (driver_init(&b->dt, cfg, 0, &b->trk, &rep->reg_rate) < 0)
        return -1;
    rep->rss_load_kb = bench_status_kib(b->trk.pid, "VmRSS");
    if (cfg->baseline && (echo_start(&b->echo, rep->server_core) < 0 ||
                          driver_init(&b->de, cfg, 1, &b->echo, NULL) < 0))
        return -1;
    if (interleave(b, cfg->clients, 0, cfg->warmup_s / 2, cfg->duration_s, &b->a_trk, &b->a_tcp) <
        0)
        return -1;
    if (cfg->paced_s > 0 && cfg->rate > 0 &&
        interleave(b, cfg->clients, cfg->rate, 0, cfg->paced_s, &b->a_trkp, &b->a_tcpp) < 0)
        return -1;
    if (cfg->idle_s > 0 && interleave(b, 1, 0, 0, cfg->idle_s, &b->a_trk1, &b->a_tcp1) < 0)
        return -1;
    rep->grant_len = grant_len(&b->dt);
    rep->tcp_grant_len = grant_len(&b->de);
    return 0;
}

/* Grow to rss_servers registered servers (clients stay connected) and read
 * the tracker's memory; SUMMARY confirms it really holds them all. */
static int memory_phase(bench_t *b)
{
    const config_t *cfg = b->cfg;
    report_t *rep = b->rep;
    if (cfg->rss_servers > cfg->servers &&
        bench_trk_add_servers(b->dt.t, (int)cfg->rss_servers, SETUP_MS, NULL, g_err,
                              sizeof(g_err)) < 0)
        return -1;
    sleep_ms(100);
    rep->rss_servers = (size_t)bench_trk_nservers(b->dt.t);
    rep->rss_big_kb = bench_status_kib(b->trk.pid, "VmRSS");
    rep->summary_free = summary_free(b->trk.port);
    rep->hwm_kb = bench_status_kib(b->trk.pid, "VmHWM");
    if (rep->summary_free != (long)rep->rss_servers)
        return fail("SUMMARY reports %ld free slots, %zu expected", rep->summary_free,
                    rep->rss_servers);
    return 0;
}

static int run_bench(bench_t *b)
{
    report_t *rep = b->rep;
    int rc = tracker_start(&b->trk, b->cfg->tvmrpc, rep->server_core);
    if (rc == 0) {
        sleep_ms(100); /* let it settle before the idle sample */
        rep->rss_idle_kb = bench_status_kib(b->trk.pid, "VmRSS");
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
        bench_samples_free(&accs[i]->lat);
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
    pin(0, rep.driver_core);
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
