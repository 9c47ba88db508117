/* ev: event loop after Redis's ae.c. One table entry per fd (indexed by fd),
 * a backend (epoll or poll) that only reports readiness into loop->fired,
 * and a binary min-heap of timers.
 *
 * Dispatch works from a snapshot of the ready fds taken right after the
 * wait, so callbacks are free to add, delete and close fds. The snapshot
 * records each fd's generation; an fd that was fully deleted by an earlier
 * callback of the same batch (and possibly closed and its number reused)
 * has a new generation and its stale readiness is dropped. Since the loop
 * is level-triggered, anything dropped is simply reported again next time. */
#include "ev.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/epoll.h>
#endif

#define EV_DEFAULT_SETSIZE 64

typedef struct ev_file {
    int mask;     /* EV_READ | EV_WRITE currently watched */
    int pidx;     /* poll backend: slot in loop->pfds while mask != 0 */
    uint32_t gen; /* bumped whenever mask drops to 0 (fd may be closed and reused) */
    ev_file_fn *rfn, *wfn;
    void *rdata, *wdata;
} ev_file_t;

typedef struct ev_fired {
    int fd;
    int mask; /* ready events; errors and hangups report both directions */
    uint32_t gen;
} ev_fired_t;

struct ev_timer {
    int64_t when;  /* absolute deadline on the ev_now_ms() clock */
    uint64_t seq;  /* tie-break so equal deadlines fire in the order they were armed */
    size_t idx;    /* position in loop->heap, kept current for O(log n) delete */
    int cancelled; /* deleted from inside its own callback: free once it returns */
    ev_timer_fn *fn;
    void *data;
};

typedef struct ev_ops {
    const char *name;
    int (*init)(ev_loop_t *loop);
    void (*free)(ev_loop_t *loop);
    /* Make the kernel's interest in fd match mask (was old). */
    int (*set)(ev_loop_t *loop, int fd, int old, int mask);
    /* Wait, then fill loop->fired; returns the count or -1. */
    int (*wait)(ev_loop_t *loop, int timeout_ms);
} ev_ops_t;

struct ev_loop {
    const ev_ops_t *ops;
    int setsize; /* entries in files */
    ev_file_t *files;
    ev_fired_t *fired;
    int fired_cap;
    int stop;
    int busy; /* dispatching: the fired batch must not be reused by a nested run */

    ev_timer_t **heap;
    size_t nheap, heapcap;
    uint64_t seq;
    ev_timer_t *running;

#ifdef __linux__
    int epfd;
    struct epoll_event *epev; /* fired_cap entries */
#endif
    struct pollfd *pfds;
    int npfds, pfdscap;
};

int64_t ev_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- poll backend ---------------------------------------------------------- */

/* pfds is kept dense: fds are appended on first interest and swap-removed on
 * the last, so add/del are O(1) and the array never needs a rebuild. */

static int ev_poll_init(ev_loop_t *loop)
{
    (void)loop;
    return 0;
}

static void ev_poll_free(ev_loop_t *loop)
{
    free(loop->pfds);
}

static int ev_poll_set(ev_loop_t *loop, int fd, int old, int mask)
{
    ev_file_t *fe = &loop->files[fd];
    if (mask == 0) {
        struct pollfd *last = &loop->pfds[--loop->npfds];
        loop->pfds[fe->pidx] = *last;
        loop->files[last->fd].pidx = fe->pidx;
        return 0;
    }
    if (old == 0) {
        if (loop->npfds == loop->pfdscap) {
            int cap = loop->pfdscap ? loop->pfdscap * 2 : 16;
            struct pollfd *p = realloc(loop->pfds, (size_t)cap * sizeof(*p));
            if (!p)
                return -1;
            loop->pfds = p;
            loop->pfdscap = cap;
        }
        fe->pidx = loop->npfds++;
        loop->pfds[fe->pidx] = (struct pollfd){.fd = fd};
    }
    loop->pfds[fe->pidx].events =
        (short)((mask & EV_READ ? POLLIN : 0) | (mask & EV_WRITE ? POLLOUT : 0));
    return 0;
}

static int ev_poll_wait(ev_loop_t *loop, int timeout_ms)
{
    int n = poll(loop->pfds, (nfds_t)loop->npfds, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    int k = 0;
    for (int i = 0; i < loop->npfds && k < n && k < loop->fired_cap; i++) {
        const struct pollfd *p = &loop->pfds[i];
        if (!p->revents)
            continue;
        /* POLLNVAL (closed without ev_del) is reported too: otherwise poll
         * would return at once forever and nobody would ever find out. */
        int bad = p->revents & (POLLERR | POLLHUP | POLLNVAL);
        int m = (p->revents & POLLIN || bad ? EV_READ : 0) |
                (p->revents & POLLOUT || bad ? EV_WRITE : 0);
        loop->fired[k++] = (ev_fired_t){p->fd, m, loop->files[p->fd].gen};
    }
    return k;
}

static const ev_ops_t ev_poll_ops = {"poll", ev_poll_init, ev_poll_free, ev_poll_set, ev_poll_wait};

/* ---- epoll backend --------------------------------------------------------- */

#ifdef __linux__
static int ev_epoll_init(ev_loop_t *loop)
{
    loop->epev = malloc((size_t)loop->fired_cap * sizeof(*loop->epev));
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    return loop->epev && loop->epfd >= 0 ? 0 : -1;
}

static void ev_epoll_free(ev_loop_t *loop)
{
    if (loop->epfd >= 0)
        close(loop->epfd);
    free(loop->epev);
}

static int ev_epoll_set(ev_loop_t *loop, int fd, int old, int mask)
{
    struct epoll_event ee = {0};
    ee.events = (mask & EV_READ ? EPOLLIN : 0) | (mask & EV_WRITE ? EPOLLOUT : 0);
    ee.data.fd = fd;
    if (mask == 0) {
        /* Fails harmlessly if the fd is already closed: the kernel dropped it. */
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, &ee);
        return 0;
    }
    int op = old ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(loop->epfd, op, fd, &ee) == 0)
        return 0;
    /* The kernel forgets an fd when its file is closed; if it was closed and
     * the number reused without ev_del, re-adding is the only way back. */
    if (op == EPOLL_CTL_MOD && errno == ENOENT)
        return epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ee);
    return -1;
}

static int ev_epoll_wait(ev_loop_t *loop, int timeout_ms)
{
    int n = epoll_wait(loop->epfd, loop->epev, loop->fired_cap, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    int k = 0;
    for (int i = 0; i < n; i++) {
        const struct epoll_event *e = &loop->epev[i];
        int fd = e->data.fd;
        if (fd < 0 || fd >= loop->setsize)
            continue;
        /* Errors and hangups go to whatever is registered, so a reader sees
         * EOF/the error on read() and a writer sees it on write(). */
        int bad = e->events & (EPOLLERR | EPOLLHUP);
        int m = (e->events & EPOLLIN || bad ? EV_READ : 0) |
                (e->events & EPOLLOUT || bad ? EV_WRITE : 0);
        loop->fired[k++] = (ev_fired_t){fd, m, loop->files[fd].gen};
    }
    return k;
}

static const ev_ops_t ev_epoll_ops = {"epoll", ev_epoll_init, ev_epoll_free, ev_epoll_set,
                                      ev_epoll_wait};
#endif

/* ---- loop ------------------------------------------------------------------ */

static const ev_ops_t *ev_pick_backend(ev_backend_t backend)
{
    if (backend == EV_BACKEND_AUTO) {
        const char *env = getenv("TVMRPC_EV_BACKEND");
#ifdef __linux__
        backend = env && strcmp(env, "poll") == 0 ? EV_BACKEND_POLL : EV_BACKEND_EPOLL;
#else
        (void)env;
        backend = EV_BACKEND_POLL;
#endif
    }
#ifdef __linux__
    if (backend == EV_BACKEND_EPOLL)
        return &ev_epoll_ops;
#endif
    return backend == EV_BACKEND_POLL ? &ev_poll_ops : NULL;
}

ev_loop_t *ev_create(int setsize, ev_backend_t backend)
{
    const ev_ops_t *ops = ev_pick_backend(backend);
    if (!ops) {
        errno = ENOSYS;
        return NULL;
    }
    if (setsize <= 0)
        setsize = EV_DEFAULT_SETSIZE;
    ev_loop_t *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return NULL;
    loop->ops = ops;
    loop->setsize = setsize;
    loop->fired_cap = setsize;
#ifdef __linux__
    loop->epfd = -1;
#endif
    loop->files = calloc((size_t)setsize, sizeof(*loop->files));
    loop->fired = malloc((size_t)setsize * sizeof(*loop->fired));
    if (!loop->files || !loop->fired || ops->init(loop) < 0) {
        int saved = errno;
        ev_free(loop);
        errno = saved;
        return NULL;
    }
    return loop;
}

/* Not callable from a callback: the loop is still in use there. */
void ev_free(ev_loop_t *loop)
{
    if (!loop)
        return;
    loop->ops->free(loop);
    for (size_t i = 0; i < loop->nheap; i++)
        free(loop->heap[i]);
    free(loop->heap);
    free(loop->files);
    free(loop->fired);
    free(loop);
}

const char *ev_backend_name(const ev_loop_t *loop)
{
    return loop->ops->name;
}

/* ---- file events ----------------------------------------------------------- */

static int ev_grow(ev_loop_t *loop, int fd)
{
    size_t n = (size_t)loop->setsize;
    while (n <= (size_t)fd)
        n *= 2;
    if (n > INT_MAX)
        n = (size_t)fd + 1;
    ev_file_t *f = realloc(loop->files, n * sizeof(*f));
    if (!f)
        return -1;
    memset(f + loop->setsize, 0, (n - (size_t)loop->setsize) * sizeof(*f));
    loop->files = f;
    loop->setsize = (int)n;
    return 0;
}

int ev_add(ev_loop_t *loop, int fd, int mask, ev_file_fn *fn, void *data)
{
    /* fd == INT_MAX could not be covered by an int setsize. */
    if (fd < 0 || fd == INT_MAX || !fn || !mask || (mask & ~(EV_READ | EV_WRITE))) {
        errno = fd < 0 ? EBADF : EINVAL;
        return -1;
    }
    if (fd >= loop->setsize && ev_grow(loop, fd) < 0)
        return -1;
    ev_file_t *fe = &loop->files[fd];
    int nmask = fe->mask | mask;
    if (nmask != fe->mask && loop->ops->set(loop, fd, fe->mask, nmask) < 0)
        return -1;
    fe->mask = nmask;
    if (mask & EV_READ) {
        fe->rfn = fn;
        fe->rdata = data;
    }
    if (mask & EV_WRITE) {
        fe->wfn = fn;
        fe->wdata = data;
    }
    return 0;
}

void ev_del(ev_loop_t *loop, int fd, int mask)
{
    if (fd < 0 || fd >= loop->setsize)
        return;
    ev_file_t *fe = &loop->files[fd];
    int nmask = fe->mask & ~mask;
    if (nmask == fe->mask)
        return;
    /* A failing MOD/DEL means the fd is gone already; the table is the truth. */
    loop->ops->set(loop, fd, fe->mask, nmask);
    fe->mask = nmask;
    if (!(nmask & EV_READ)) {
        fe->rfn = NULL;
        fe->rdata = NULL;
    }
    if (!(nmask & EV_WRITE)) {
        fe->wfn = NULL;
        fe->wdata = NULL;
    }
    if (nmask == 0)
        fe->gen++;
}

int ev_get_mask(const ev_loop_t *loop, int fd)
{
    if (fd < 0 || fd >= loop->setsize)
        return EV_NONE;
    return loop->files[fd].mask;
}

/* Run the callbacks of one ready fd; returns how many ran. Any callback may
 * grow (move) the fd table, so the entry is looked up again after each. */
static int ev_dispatch_fd(ev_loop_t *loop, const ev_fired_t *f)
{
    ev_file_t *fe = &loop->files[f->fd];
    if (fe->gen != f->gen)
        return 0;
    int ran = 0;
    int ready = f->mask & fe->mask;
    if (ready & EV_READ) {
        ev_file_fn *fn = fe->rfn;
        void *data = fe->rdata;
        /* One handler for both directions (the common case) gets one call
         * with both bits, as in ae, rather than two calls in a row. */
        int both = (ready & EV_WRITE) && fe->wfn == fn && fe->wdata == data;
        fn(loop, f->fd, data, both ? EV_READ | EV_WRITE : EV_READ);
        ran++;
        fe = &loop->files[f->fd];
        if (both || fe->gen != f->gen)
            return ran;
    }
    /* Re-check the mask: the read callback may have deleted the write side. */
    if (f->mask & fe->mask & EV_WRITE) {
        fe->wfn(loop, f->fd, fe->wdata, EV_WRITE);
        ran++;
    }
    return ran;
}

/* ---- timers ---------------------------------------------------------------- */

static int ev_timer_before(const ev_timer_t *a, const ev_timer_t *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void ev_heap_set(ev_loop_t *loop, size_t i, ev_timer_t *t)
{
    loop->heap[i] = t;
    t->idx = i;
}

static void ev_heap_up(ev_loop_t *loop, size_t i)
{
    ev_timer_t *t = loop->heap[i];
    while (i > 0 && ev_timer_before(t, loop->heap[(i - 1) / 2])) {
        ev_heap_set(loop, i, loop->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    ev_heap_set(loop, i, t);
}

static void ev_heap_down(ev_loop_t *loop, size_t i)
{
    ev_timer_t *t = loop->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= loop->nheap)
            break;
        if (c + 1 < loop->nheap && ev_timer_before(loop->heap[c + 1], loop->heap[c]))
            c++;
        if (!ev_timer_before(loop->heap[c], t))
            break;
        ev_heap_set(loop, i, loop->heap[c]);
        i = c;
    }
    ev_heap_set(loop, i, t);
}

static void ev_heap_remove(ev_loop_t *loop, ev_timer_t *t)
{
    ev_timer_t *last = loop->heap[--loop->nheap];
    if (last == t)
        return;
    /* The moved timer may belong above or below the hole. */
    ev_heap_set(loop, t->idx, last);
    ev_heap_up(loop, last->idx);
    ev_heap_down(loop, last->idx);
}

/* Arm t to fire ms from now (negative = now), saturating far deadlines. */
static void ev_timer_arm(ev_loop_t *loop, ev_timer_t *t, int64_t ms)
{
    int64_t now = ev_now_ms();
    if (ms < 0)
        ms = 0;
    t->when = ms > INT64_MAX - now ? INT64_MAX : now + ms;
    t->seq = loop->seq++;
}

ev_timer_t *ev_timer_add(ev_loop_t *loop, int64_t ms, ev_timer_fn *fn, void *data)
{
    if (loop->nheap == loop->heapcap) {
        size_t cap = loop->heapcap ? loop->heapcap * 2 : 16;
        ev_timer_t **h = realloc(loop->heap, cap * sizeof(*h));
        if (!h)
            return NULL;
        loop->heap = h;
        loop->heapcap = cap;
    }
    ev_timer_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->fn = fn;
    t->data = data;
    ev_timer_arm(loop, t, ms);
    ev_heap_set(loop, loop->nheap++, t);
    ev_heap_up(loop, t->idx);
    return t;
}

/* t must be pending (or running): a timer that already returned EV_NOMORE
 * is freed and its pointer dangling. NULL is accepted for convenience. */
void ev_timer_del(ev_loop_t *loop, ev_timer_t *t)
{
    if (!t)
        return;
    if (t == loop->running) {
        t->cancelled = 1;
        return;
    }
    ev_heap_remove(loop, t);
    free(t);
}

/* Fire the timers that are due; returns how many ran. A timer stays in the
 * heap while its callback runs, so rescheduling needs no allocation. Timers
 * armed during this pass (new, or rescheduled with a short delay) wait for
 * the next pass: a callback returning 0 must not starve file events. */
static int ev_process_timers(ev_loop_t *loop)
{
    int64_t now = ev_now_ms();
    uint64_t first_new = loop->seq;
    int ran = 0;
    while (loop->nheap > 0) {
        ev_timer_t *t = loop->heap[0];
        /* New timers have when >= now and a larger seq than any older due
         * timer, so one on top means nothing old is due any more. */
        if (t->when > now || t->seq >= first_new)
            break;
        loop->running = t;
        int64_t next = t->fn(loop, t, t->data);
        loop->running = NULL;
        ran++;
        if (t->cancelled || next < 0) {
            ev_heap_remove(loop, t);
            free(t);
            continue;
        }
        ev_timer_arm(loop, t, next);
        ev_heap_down(loop, t->idx); /* (when, seq) only grew */
    }
    return ran;
}

/* ---- running --------------------------------------------------------------- */

static int ev_wait_timeout(const ev_loop_t *loop, int timeout_ms)
{
    if (loop->nheap == 0)
        return timeout_ms;
    int64_t d = loop->heap[0]->when - ev_now_ms();
    if (d < 0)
        d = 0;
    if (timeout_ms >= 0 && timeout_ms < d)
        return timeout_ms;
    return d > INT_MAX ? INT_MAX : (int)d;
}

/* Size the ready buffers before waiting, never during dispatch, since the
 * batch being dispatched must not move. The fd table may have grown. */
static void ev_reserve_fired(ev_loop_t *loop)
{
    if (loop->fired_cap >= loop->setsize)
        return;
    size_t n = (size_t)loop->setsize;
    ev_fired_t *f = realloc(loop->fired, n * sizeof(*f));
    if (!f)
        return; /* a smaller batch is fine: the rest is reported next time */
    loop->fired = f;
#ifdef __linux__
    if (loop->ops == &ev_epoll_ops) {
        struct epoll_event *e = realloc(loop->epev, n * sizeof(*e));
        if (!e)
            return;
        loop->epev = e;
    }
#endif
    loop->fired_cap = (int)n;
}

/* Returns the number of callbacks run (file and timer), or -1 if the
 * backend failed or this is called from inside a callback. */
int ev_run_once(ev_loop_t *loop, int timeout_ms)
{
    if (loop->busy) {
        errno = EDEADLK;
        return -1;
    }
    ev_reserve_fired(loop);
    int n = loop->ops->wait(loop, ev_wait_timeout(loop, timeout_ms));
    if (n < 0)
        return -1;
    loop->busy = 1;
    int ran = 0;
    for (int i = 0; i < n; i++)
        ran += ev_dispatch_fd(loop, &loop->fired[i]);
    ran += ev_process_timers(loop);
    loop->busy = 0;
    return ran;
}

int ev_run(ev_loop_t *loop)
{
    loop->stop = 0;
    while (!loop->stop) {
        if (ev_run_once(loop, -1) < 0)
            return -1;
    }
    return 0;
}

void ev_stop(ev_loop_t *loop)
{
    loop->stop = 1;
}
