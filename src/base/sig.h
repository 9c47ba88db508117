/* sig: turn SIGINT/SIGTERM/SIGHUP into readable bytes on a pipe (the
 * self-pipe trick), so event loops handle signals as ordinary events. */
#ifndef TVMRPC_SIG_H
#define TVMRPC_SIG_H

/* Install handlers for the given signals; returns the read end of the pipe
 * (non-blocking; each byte read is a signal number), or -1. SIGPIPE is
 * ignored as a side effect: every write path handles EPIPE itself. */
int sig_pipe_install(const int *signals, int n);
/* Read one pending signal number, 0 if none. */
int sig_pipe_read(int fd);

#endif
