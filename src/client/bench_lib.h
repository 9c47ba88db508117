/* bench_lib: the pieces of `tvmrpc bench` (src/cli/cmd_bench.c) that are
 * not about RPC: samples and percentiles, child processes and /proc, the
 * raw loopback TCP baseline, and the tracker load driver.
 *
 * Every function returns 0 (or a documented value) on success and -1 with a
 * message in err[errlen] on failure; nothing exits the process. */
#ifndef TVMRPC_BENCH_LIB_H
#define TVMRPC_BENCH_LIB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- time and samples (bench_proc.c) ----------------------------------------- */

uint64_t bench_now_ns(void);
void bench_sleep_us(unsigned us);

typedef struct bench_samples {
    uint64_t *v; /* nanoseconds */
    size_t n, cap;
    int sorted;
} bench_samples_t;

int bench_samples_push(bench_samples_t *s, uint64_t ns);
/* p-th percentile (0..100, nearest rank), in ns; 0 when empty. Sorts once. */
double bench_samples_pct(bench_samples_t *s, double p);
double bench_samples_min(bench_samples_t *s);
void bench_samples_free(bench_samples_t *s);

/* ---- child processes and /proc (bench_proc.c) -------------------------------- */

typedef struct bench_proc {
    pid_t pid; /* <= 0: not running */
    int port;
    char log_path[128];
} bench_proc_t;

/* fork + exec bin with argv (argv[0] included, NULL-terminated); stdout and
 * stderr go to a fresh log file; the child dies with us (PR_SET_PDEATHSIG). */
int bench_spawn(bench_proc_t *p, const char *bin, const char *const *argv, char *err,
                size_t errlen);
/* Poll connect() to 127.0.0.1:port every 100 us until it succeeds; fails if
 * pid exits first or after timeout_ms. */
int bench_wait_listening(int port, pid_t pid, int timeout_ms, char *err, size_t errlen);
/* SIGTERM, wait up to 3 s, then SIGKILL; removes the log file. */
void bench_stop(bench_proc_t *p);
/* The last lines of p's log, for error messages ("" if none). */
void bench_log_tail(const bench_proc_t *p, char *out, size_t outlen);
/* A loopback port that was free a moment ago (bind to 0, read, close). */
int bench_free_port(char *err, size_t errlen);
/* A field of /proc/PID/status in KiB ("VmRSS", "VmHWM"), -1 if unreadable. */
long bench_status_kib(pid_t pid, const char *field);
/* Number of child processes of pid (its forked session workers). */
int bench_nchildren(pid_t pid);

/* CPU accounting over a measured span: how much of the machine went to us
 * (this process and every descendant) and how much to everything else. */
typedef struct bench_cpu_snap {
    uint64_t wall_ns;
    double machine_s; /* busy CPU seconds of the whole machine */
    double self_s;    /* ours, including reaped children */
    int n;
    pid_t pid[256];   /* live descendants */
    double used[256]; /* their utime+stime+cutime+cstime, seconds */
} bench_cpu_snap_t;

void bench_cpu_snap(bench_cpu_snap_t *s);
/* Busy share of one core during (a, b]: everything, and all but us. */
void bench_cpu_delta(const bench_cpu_snap_t *a, const bench_cpu_snap_t *b, double *machine_pct,
                     double *other_pct);

/* ---- raw loopback TCP baseline (bench_raw.c) --------------------------------- */

/* A forked peer on 127.0.0.1 that serves each connection from its own
 * process (as the RPC server does): after a 16-byte setup (u64 req, u64
 * rep) it loops reading req bytes into one buffer and writing rep bytes
 * back, so a request/reply of any shape can be replayed with the minimum
 * of work: one buffer, blocking calls, no parsing. */
typedef struct bench_raw {
    pid_t pid;
    int port;
} bench_raw_t;

int bench_raw_start(bench_raw_t *r, char *err, size_t errlen);
/* A minimal relay in front of the peer (one process per connection, one
 * thread per direction, blocking splice through 1 MiB pipes): the cost of
 * an extra hop with nothing else, the physical floor for a proxy. Stop it
 * with bench_raw_stop. */
int bench_raw_relay_start(const bench_raw_t *peer, bench_raw_t *relay, char *err, size_t errlen);
void bench_raw_stop(bench_raw_t *r);
/* A connection whose exchanges are req bytes out, rep bytes back. The
 * peer has allocated and touched its buffer when this returns. */
int bench_raw_open(const bench_raw_t *r, uint64_t req, uint64_t rep, int timeout_ms, char *err,
                   size_t errlen);
/* One exchange: req bytes from out, rep bytes into in. */
int bench_raw_exchange(int fd, const void *out, uint64_t req, void *in, uint64_t rep, char *err,
                       size_t errlen);

/* Bytes this end of a TCP connection has sent (acknowledged) and received
 * so far (TCP_INFO); -1 if the kernel does not say. */
int bench_tcp_bytes(int fd, uint64_t *sent, uint64_t *received);
/* fd of the socket connected to 127.0.0.1/::1:port that is not in the
 * snapshot before: how the bench finds a client session's connection
 * (client.h keeps it private) to count its bytes. -1 if not exactly one. */
typedef struct bench_fdset {
    uint8_t open[1024];
} bench_fdset_t;
void bench_fdset_snap(bench_fdset_t *s);
int bench_fdset_new_socket(const bench_fdset_t *before);

/* ---- tracker load (bench_trk.c) ---------------------------------------------- */

/* Simulated servers and clients on one tracker (or on the echo baseline),
 * driven from one epoll loop; `tvmrpc bench` and bench/bench_tracker share
 * it. One cycle = REQUEST -> grant -> the granted server re-PUTs a fresh
 * matchkey (what a real server does after a session) -> acknowledged. */
typedef struct bench_trk bench_trk_t;

typedef struct bench_trk_round {
    /* what to run */
    int nclients;  /* the first nclients clients take part; 0: all */
    double rate;   /* offered cycles/s in total, spread over the clients; 0: closed loop */
    double warm_s; /* unmeasured lead-in */
    double secs;   /* the measured window after it; 0: nothing is measured */
    bench_samples_t *grant_ns; /* REQUEST -> grant latencies in the window, or NULL */
    /* Called as the window opens (closing 0) and closes (1), e.g. for CPU
     * snapshots; may be NULL. */
    void (*edge)(void *arg, int closing);
    void *edge_arg;
    /* what happened inside the window */
    uint64_t cycles;   /* completed */
    uint64_t cycle_ns; /* their REQUEST -> acknowledged times, summed */
    uint64_t late;     /* paced: REQUESTs that went out after their due time */
} bench_trk_round_t;

/* Room for max_servers + max_clients peers of host:port under key (no ':'),
 * nothing connected yet. echo = 1: the remote is bench_trk_echo_start's
 * baseline, which answers with canned frames, so the driver itself picks
 * the granted server (oldest free first, as the tracker does). */
bench_trk_t *bench_trk_new(const char *host, int port, int echo, const char *key, int max_servers,
                           int max_clients, char *err, size_t errlen);
/* Connect and register servers until nservers exist (magic, UPDATE_INFO,
 * PUT; 128 in flight); *per_s (may be NULL): registrations per second. */
int bench_trk_add_servers(bench_trk_t *t, int nservers, int timeout_ms, double *per_s, char *err,
                          size_t errlen);
/* Connect clients until nclients exist (magic). */
int bench_trk_add_clients(bench_trk_t *t, int nclients, int timeout_ms, char *err, size_t errlen);
/* new + add_servers + add_clients; needs nservers >= nclients >= 1. */
bench_trk_t *bench_trk_open(const char *host, int port, int echo, const char *key, int nservers,
                            int nclients, int timeout_ms, char *err, size_t errlen);
/* One round: warm_s + secs of cycles, each client closed-loop (one cycle
 * always in flight) or paced; then the cycles in flight drain, outside the
 * window. r's outputs are reset first. */
int bench_trk_run(bench_trk_t *t, bench_trk_round_t *r, char *err, size_t errlen);
int bench_trk_nservers(const bench_trk_t *t);
/* JSON sizes of the remote's first grant and acknowledgement (0: none yet). */
void bench_trk_sizes(const bench_trk_t *t, size_t *grant, size_t *ack);
void bench_trk_close(bench_trk_t *t);

/* The baseline: a forked epoll server that echoes the magic and answers a
 * REQUEST-shaped frame with grant_len bytes of JSON, anything else with
 * ack_len bytes (0: the template's own size, which is what a tracker that
 * writes like Python's json.dumps sends): the tracker's traffic without the
 * tracker. It dies with us (PR_SET_PDEATHSIG); kill *pid to stop it. */
int bench_trk_echo_start(size_t grant_len, size_t ack_len, const char *key, pid_t *pid, int *port,
                         char *err, size_t errlen);

#endif
