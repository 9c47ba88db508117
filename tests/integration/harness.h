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

#define H_TIMEOUT_MS 10000

typedef struct hproc {
    pid_t pid;
    char log_path[256];
    int port; /* parsed from the "bind to HOST:PORT" log line */
} hproc_t;

/* Path of the tvmrpc binary under test ($TVMRPC_BIN). */
const char *h_bin(void);
/* Start "tvmrpc argv..." (argv NULL-terminated, without the binary) with
 * stdout+stderr to a log file. Returns 0 or -1. */
int h_spawn(hproc_t *p, const char *const *argv);
/* Wait until the process log contains needle. 0, or -1 on timeout/exit. */
int h_wait_log(hproc_t *p, const char *needle, int timeout_ms);
/* Count occurrences of needle in the log so far. */
int h_log_count(hproc_t *p, const char *needle);
/* Start a tracker on 127.0.0.1 with an ephemeral port; extra flags may be NULL. */
int h_start_tracker(hproc_t *p, const char *const *extra);
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

/* Poll cond(arg) every few ms until it returns non-zero or timeout. */
int h_wait_until(int (*cond)(void *), void *arg, int timeout_ms);

#endif
