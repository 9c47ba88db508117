/* harness: start real tvmrpc processes on 127.0.0.1 and talk to them.
 * Every wait is bounded; nothing depends on sleeping "long enough". */
#ifndef TVMRPC_TEST_HARNESS_H
#define TVMRPC_TEST_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <sys/types.h>

#include "base/json.h"
#include "tvmrpc/client.h"

#define H_TIMEOUT_MS 10000

typedef struct hproc {
    pid_t pid;
    char log_path[256];
    int port; /* parsed from the "bind to HOST:PORT" log line */
} hproc_t;

/* ---- time ---- */

/* Milliseconds of CLOCK_MONOTONIC: the clock of every deadline. */
int64_t h_now_ms(void);
void h_sleep_ms(int ms);

/* ---- processes ---- */

/* Path of the tvmrpc binary under test ($TVMRPC_BIN). */
const char *h_bin(void);
/* Start "tvmrpc argv..." (argv NULL-terminated, without the binary) with
 * stdout+stderr to a log file. Returns 0 or -1. */
int h_spawn(hproc_t *p, const char *const *argv);
/* Wait until the process log contains needle. 0, or -1 on timeout/exit. */
int h_wait_log(hproc_t *p, const char *needle, int timeout_ms);
/* Count occurrences of needle in the log so far. */
int h_log_count(hproc_t *p, const char *needle);
/* Wait until needle occurs more than `before` times in the log. 0 or -1. */
int h_wait_log_count(hproc_t *p, const char *needle, int before, int timeout_ms);
/* The port of the first "bind to 127.0.0.1:PORT" line of the log, or 0. */
int h_log_port(hproc_t *p);
/* h_spawn, then wait for `ready` in the log (dumped if it never comes);
 * p->port from the bind line, 0 for a process that logs none (a server
 * behind a proxy). Returns 0 or -1. */
int h_spawn_ready(hproc_t *p, const char *const *argv, const char *ready);
/* h_spawn_ready on the bind line: -1 unless a port was bound. */
int h_spawn_bound(hproc_t *p, const char *const *argv);
/* Daemons on 127.0.0.1 with ephemeral ports; extra flags may be NULL.
 * tracker: "tracker --host 127.0.0.1 --port 0 EXTRA..."
 * server:  "server --host 127.0.0.1 --port 0 EXTRA..."
 * proxy:   "proxy --host 127.0.0.1 --port 0 --web-port 0 EXTRA..." */
int h_start_tracker(hproc_t *p, const char *const *extra);
int h_start_server(hproc_t *p, const char *const *extra);
int h_start_proxy(hproc_t *p, const char *const *extra);
/* "server --through-proxy --host 127.0.0.1 --port PROXY_PORT --key KEY
 * EXTRA...", ready once it logs "serving through proxy". */
int h_start_server_through(hproc_t *p, int proxy_port, const char *key, const char *const *extra);
/* A server for compiled fixtures: crashes reach it as signals (not
 * sanitizer reports) and kernels get 4 threads (TVM_NUM_THREADS). */
int h_start_fixture_server(hproc_t *p);
/* A port nobody listens on right now. */
int h_free_port(void);
/* SIGTERM, wait (bounded), SIGKILL if needed. Returns the exit status or -1. */
int h_stop(hproc_t *p);
/* Wait for the process to exit by itself; exit status, or -1 on timeout. */
int h_wait_exit(hproc_t *p, int timeout_ms);
/* Print the process log to stderr (for failing tests). */
void h_dump_log(hproc_t *p);

/* Run "tvmrpc argv..." to completion; stdout into out. Returns exit status. */
int h_run(const char *const *argv, char *out, size_t outlen, int timeout_ms);

/* Tracker peers. */
int h_tracker_connect(int port);
/* Send text as one frame; returns 0. */
int h_tracker_send(int fd, const char *text);
/* Receive one frame as raw text (caller frees), or NULL on error/timeout. */
char *h_tracker_recv_text(int fd, int timeout_ms);
/* Send and receive; the raw reply text (caller frees). */
char *h_tracker_call(int fd, const char *text);
/* 1 if no frame arrives within ms (the peer has nothing to say). */
int h_tracker_silent(int fd, int ms);
/* 1 if the peer closed the connection within timeout_ms. */
int h_peer_closed(int fd, int timeout_ms);

/* The tracker's SUMMARY reply text (caller frees), or NULL. */
char *h_tracker_summary(int port);
/* Wait until the SUMMARY holds needle (present) or lacks it (!present);
 * on timeout, print the last one and return -1. */
int h_wait_summary(int port, const char *needle, int present, int timeout_ms);

/* Poll cond(arg) every few ms until it returns non-zero or timeout. */
int h_wait_until(int (*cond)(void *), void *arg, int timeout_ms);

/* ---- the public client (tvmrpc/client.h) ---- */

/* Look a global function up, call it and free its handle again (unless
 * the call left the session unusable). The call's result code; if it
 * succeeded, the free's. A returned array is copied out of the session
 * first (the free's reply reuses its buffer); it stays valid until this
 * thread's next call. */
int h_call_global(tvmrpc_sess_t *s, const char *name, const tvmrpc_value_t *args, int n,
                  tvmrpc_value_t *ret);
/* The process whose log the checks below print when they fail (the
 * server under test; NULL for none). */
void h_sess_log(hproc_t *p);
/* Fail the test unless rc is TVMRPC_OK. */
void h_sess_ok(tvmrpc_sess_t *s, int rc, const char *what);
/* Fail the test unless rc is a remote error whose text holds needle. */
void h_sess_expect_error(tvmrpc_sess_t *s, int rc, const char *needle);
/* ModuleGetFunction(mod, name, query_imports=True): the handle, or 0 for
 * a missing name; any error fails the test. */
uint64_t h_mod_func(tvmrpc_sess_t *s, uint64_t mod, const char *name);
/* runtime.RPCTimeEvaluator(mod, name, cpu0, number, repeat) with TVM's
 * defaults for the rest (no minimum time, cooldown, flush or preproc). */
int h_time_evaluator(tvmrpc_sess_t *s, uint64_t mod, const char *name, int number, int repeat,
                     uint64_t *fn);

/* ---- /proc ---- */

/* Forked children of pid's main thread (a server's session workers). */
int h_children(pid_t pid, pid_t *out, int max);
/* Open file descriptors of pid, or -1. */
int h_fd_count(pid_t pid);

/* ---- files ---- */

/* Where the fixture libraries are: $TVMRPC_FIXTURES, else tests/fixtures
 * next to the binary under test. */
const char *h_fixture_dir(void);
/* A whole file, NUL-terminated (caller frees); NULL if unreadable. */
char *h_read_file(const char *path, size_t *len);
/* mkdtemp of $TMPDIR/tvmrpc-WHAT-XXXXXX into out. 0 or -1. */
int h_make_tmpdir(char *out, size_t outlen, const char *what);
/* Entries of a directory other than . and .., or -1. */
int h_dir_entries(const char *dir);
/* 1 if dir (a const char *) exists and is empty: an h_wait_until condition. */
int h_dir_is_empty(void *dir);
/* rm -r path (not following links). */
int h_rm_tree(const char *path);

/* ---- what a test opened, released by h_cleanup() ----
 * A failed assertion leaves the test at once: whatever it opened through
 * these is closed or stopped by the teardown calling h_cleanup(), so one
 * failure does not take the next tests (or a one-session server) with it. */

/* A process slot, stopped by h_cleanup() if still running. */
hproc_t *h_proc_new(void);
tvmrpc_sess_t *h_track_sess(tvmrpc_sess_t *s);
/* Stop tracking s without closing it (a thread may still use it). */
void h_forget_sess(tvmrpc_sess_t *s);
/* Forget and close. */
void h_close_sess(tvmrpc_sess_t *s);
int h_track_fd(int fd);
void h_close_fd(int fd);
void h_cleanup(void);

#endif
