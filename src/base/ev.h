/* ev: a tiny single-threaded event loop (after Redis's ae), epoll on Linux
 * with a poll(2) fallback, plus one-shot/periodic timers in a min-heap.
 *
 * File events: at most one read and one write callback per fd; callbacks may
 * add or delete any event, including their own, and may close fds (delete
 * first; an fd must be ev_del'd before close). When one fn+data is
 * registered for both directions and both are ready it is called once with
 * EV_READ|EV_WRITE. Errors and hangups are delivered to every registered
 * direction. Timers: callback returns the next delay in ms, or a negative
 * value (EV_NOMORE) to be deleted; the loop frees deleted timers, so a timer
 * pointer must not be used after that. ev_run/ev_run_once/ev_free must not
 * be called from callbacks; ev_stop is not async-signal-safe (use sig.h). */
#ifndef TVMRPC_EV_H
#define TVMRPC_EV_H

#include <stdint.h>

#define EV_NONE 0
#define EV_READ 1
#define EV_WRITE 2

#define EV_NOMORE (-1)

typedef enum ev_backend {
    EV_BACKEND_AUTO =
        0, /* epoll where available, else poll; env TVMRPC_EV_BACKEND=poll forces poll */
    EV_BACKEND_EPOLL,
    EV_BACKEND_POLL,
} ev_backend_t;

typedef struct ev_loop ev_loop_t;
typedef struct ev_timer ev_timer_t;

typedef void ev_file_fn(ev_loop_t *loop, int fd, void *data, int mask);
typedef int64_t ev_timer_fn(ev_loop_t *loop, ev_timer_t *t, void *data);

/* setsize: highest fd + 1 the loop can watch; grows automatically on ev_add. */
ev_loop_t *ev_create(int setsize, ev_backend_t backend);
void ev_free(ev_loop_t *loop);
const char *ev_backend_name(const ev_loop_t *loop);

/* Register fn for the events in mask (EV_READ and/or EV_WRITE). 0 or -1. */
int ev_add(ev_loop_t *loop, int fd, int mask, ev_file_fn *fn, void *data);
/* Stop watching the events in mask for fd. Safe on fds not registered. */
void ev_del(ev_loop_t *loop, int fd, int mask);
int ev_get_mask(const ev_loop_t *loop, int fd);

/* Run fn after ms milliseconds. NULL on OOM. */
ev_timer_t *ev_timer_add(ev_loop_t *loop, int64_t ms, ev_timer_fn *fn, void *data);
/* Cancel a pending timer (also safe from inside its own callback). */
void ev_timer_del(ev_loop_t *loop, ev_timer_t *t);

/* Process events until ev_stop. Returns 0, or -1 if the backend fails. */
int ev_run(ev_loop_t *loop);
/* Process ready events once, waiting at most timeout_ms (-1 = until something
 * happens). Returns the number of callbacks run, or -1. */
int ev_run_once(ev_loop_t *loop, int timeout_ms);
void ev_stop(ev_loop_t *loop);

/* Monotonic clock in milliseconds. */
int64_t ev_now_ms(void);

#endif
