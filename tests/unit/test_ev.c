/* Event loop tests. Every test runs once per backend (epoll, poll) on a loop
 * created with setsize 4, so fd-table growth is exercised everywhere.
 * Nothing depends on timing luck: readiness is set up before the loop
 * runs, timer checks compare orderings and counts, and every wait is
 * bounded so a bug fails a test instead of hanging it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/ev.h"

static ev_backend_t be_epoll = EV_BACKEND_EPOLL;
static ev_backend_t be_poll = EV_BACKEND_POLL;

/* ---- helpers ---------------------------------------------------------------- */

/* Ordered log of callback invocations, for ordering assertions. */
typedef struct hit {
    int tag;
    int fd;
    int mask;
} hit_t;

static hit_t hits[64];
static int nhits;

static void hit(int tag, int fd, int mask)
{
    if (nhits < (int)(sizeof(hits) / sizeof(hits[0])))
        hits[nhits] = (hit_t){tag, fd, mask};
    nhits++;
}

typedef struct probe {
    int tag;
    int calls;
    int fd;   /* last fd seen */
    int mask; /* union of masks seen */
} probe_t;

static void on_probe(ev_loop_t *loop, int fd, void *data, int mask)
{
    (void)loop;
    probe_t *p = data;
    p->calls++;
    p->fd = fd;
    p->mask |= mask;
    hit(p->tag, fd, mask);
}

static int setup(void **state)
{
    ev_loop_t *loop = ev_create(4, *(ev_backend_t *)*state);
    if (!loop)
        return -1;
    nhits = 0;
    *state = loop;
    return 0;
}

static int teardown(void **state)
{
    ev_free(*state);
    return 0;
}

static void make_pipe(int p[2])
{
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
}

static void make_pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static void put_byte(int fd)
{
    assert_int_equal(write(fd, "x", 1), 1);
}

static void drain(int fd)
{
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
}

/* Run until *counter reaches want; give up after 5 s. */
static void run_until(ev_loop_t *loop, const int *counter, int want)
{
    int64_t give_up = ev_now_ms() + 5000;
    while (*counter < want && ev_now_ms() < give_up)
        assert_true(ev_run_once(loop, 100) >= 0);
    assert_int_equal(*counter, want);
}

/* Run the loop for about ms, to show that something does NOT happen. */
static void run_for(ev_loop_t *loop, int ms)
{
    int64_t end = ev_now_ms() + ms;
    for (int i = 0; i < 10000 && ev_now_ms() < end; i++)
        assert_true(ev_run_once(loop, 5) >= 0);
}

/* A free fd number >= want, so dup2 onto it cannot clobber anything. */
static int free_fd_at_least(int want)
{
    for (int fd = want; fd < want + 1000; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF)
            return fd;
    }
    fail_msg("no free fd near %d", want);
    return -1;
}

/* ---- backend selection ------------------------------------------------------ */

static void test_backend_name(void **state)
{
    ev_loop_t *loop = *state;
    const char *name = ev_backend_name(loop);
    assert_true(strcmp(name, "epoll") == 0 || strcmp(name, "poll") == 0);
}

static void test_backend_env(void **state)
{
    (void)state;
    setenv("TVMRPC_EV_BACKEND", "poll", 1);
    ev_loop_t *loop = ev_create(0, EV_BACKEND_AUTO);
    assert_non_null(loop);
    assert_string_equal(ev_backend_name(loop), "poll");
    ev_free(loop);
    unsetenv("TVMRPC_EV_BACKEND");
    loop = ev_create(0, EV_BACKEND_AUTO);
    assert_non_null(loop);
#ifdef __linux__
    assert_string_equal(ev_backend_name(loop), "epoll");
#endif
    ev_free(loop);
}

/* ---- file events ------------------------------------------------------------ */

static void test_read_ready(void **state)
{
    ev_loop_t *loop = *state;
    int p[2];
    make_pipe(p);
    probe_t pr = {.tag = 1};
    assert_int_equal(ev_add(loop, p[0], EV_READ, on_probe, &pr), 0);
    assert_int_equal(ev_get_mask(loop, p[0]), EV_READ);

    assert_int_equal(ev_run_once(loop, 0), 0);
    put_byte(p[1]);
    assert_int_equal(ev_run_once(loop, 1000), 1);
    assert_int_equal(pr.calls, 1);
    assert_int_equal(pr.fd, p[0]);
    assert_int_equal(pr.mask, EV_READ);

    /* Level-triggered: unread data is reported again. */
    assert_int_equal(ev_run_once(loop, 0), 1);
    drain(p[0]);
    assert_int_equal(ev_run_once(loop, 0), 0);
    assert_int_equal(pr.calls, 2);

    ev_del(loop, p[0], EV_READ);
    assert_int_equal(ev_get_mask(loop, p[0]), EV_NONE);
    close(p[0]);
    close(p[1]);
}

static void test_write_ready(void **state)
{
    ev_loop_t *loop = *state;
    int sv[2];
    make_pair(sv);
    probe_t pr = {.tag = 1};
    assert_int_equal(ev_add(loop, sv[0], EV_WRITE, on_probe, &pr), 0);
    assert_int_equal(ev_run_once(loop, 1000), 1);
    assert_int_equal(pr.mask, EV_WRITE);
    ev_del(loop, sv[0], EV_WRITE);
    assert_int_equal(ev_run_once(loop, 0), 0);
    assert_int_equal(pr.calls, 1);
    close(sv[0]);
    close(sv[1]);
}

/* Same fn+data for both directions: one call with both bits (like ae). */
static void test_rw_same_handler_merged(void **state)
{
    ev_loop_t *loop = *state;
    int sv[2];
    make_pair(sv);
    put_byte(sv[1]);
    probe_t pr = {.tag = 1};
    assert_int_equal(ev_add(loop, sv[0], EV_READ | EV_WRITE, on_probe, &pr), 0);
    assert_int_equal(ev_get_mask(loop, sv[0]), EV_READ | EV_WRITE);
    assert_int_equal(ev_run_once(loop, 1000), 1);
    assert_int_equal(pr.calls, 1);
    assert_int_equal(hits[0].mask, EV_READ | EV_WRITE);
    close(sv[0]);
    close(sv[1]);
}

/* Different handlers: read first, then write, each with its own bit. */
static void test_rw_read_before_write(void **state)
{
    ev_loop_t *loop = *state;
    int sv[2];
    make_pair(sv);
    put_byte(sv[1]);
    probe_t r = {.tag = 1}, w = {.tag = 2};
    assert_int_equal(ev_add(loop, sv[0], EV_WRITE, on_probe, &w), 0);
    assert_int_equal(ev_add(loop, sv[0], EV_READ, on_probe, &r), 0);
    assert_int_equal(ev_run_once(loop, 1000), 2);
    assert_int_equal(nhits, 2);
    assert_int_equal(hits[0].tag, 1);
    assert_int_equal(hits[0].mask, EV_READ);
    assert_int_equal(hits[1].tag, 2);
    assert_int_equal(hits[1].mask, EV_WRITE);
    close(sv[0]);
    close(sv[1]);
}

/* Re-adding replaces the handler; partial deletes keep the other side. */
static void test_mask_bookkeeping(void **state)
{
    ev_loop_t *loop = *state;
    int sv[2];
    make_pair(sv);
    put_byte(sv[1]);
    probe_t a = {.tag = 1}, b = {.tag = 2};
    assert_int_equal(ev_add(loop, sv[0], EV_READ, on_probe, &a), 0);
    assert_int_equal(ev_add(loop, sv[0], EV_READ, on_probe, &b), 0);
    assert_int_equal(ev_run_once(loop, 1000), 1);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 1);

    assert_int_equal(ev_add(loop, sv[0], EV_WRITE, on_probe, &a), 0);
    assert_int_equal(ev_get_mask(loop, sv[0]), EV_READ | EV_WRITE);
    ev_del(loop, sv[0], EV_READ);
    assert_int_equal(ev_get_mask(loop, sv[0]), EV_WRITE);
    assert_int_equal(ev_run_once(loop, 1000), 1);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.mask, EV_WRITE);
    assert_int_equal(b.calls, 1);
    ev_del(loop, sv[0], EV_READ); /* not registered: no-op */
    assert_int_equal(ev_get_mask(loop, sv[0]), EV_WRITE);
    ev_del(loop, sv[0], EV_READ | EV_WRITE);
    assert_int_equal(ev_get_mask(loop, sv[0]), EV_NONE);
    close(sv[0]);
    close(sv[1]);
}

static void test_bad_args(void **state)
{
    ev_loop_t *loop = *state;
    probe_t pr = {0};
    int p[2];
    make_pipe(p);
    assert_int_equal(ev_add(loop, -1, EV_READ, on_probe, &pr), -1);
    assert_int_equal(ev_add(loop, p[0], EV_NONE, on_probe, &pr), -1);
    assert_int_equal(ev_add(loop, p[0], 4, on_probe, &pr), -1);
    assert_int_equal(ev_add(loop, p[0], EV_READ, NULL, &pr), -1);
    assert_int_equal(ev_get_mask(loop, p[0]), EV_NONE);
    ev_del(loop, -3, EV_READ);
    ev_del(loop, 1 << 20, EV_READ);
    ev_del(loop, p[0], EV_READ | EV_WRITE);
    assert_int_equal(ev_get_mask(loop, -3), EV_NONE);
    assert_int_equal(ev_get_mask(loop, 1 << 20), EV_NONE);
    ev_timer_del(loop, NULL);

    /* epoll refuses regular files; the table must not claim otherwise. */
    FILE *f = tmpfile();
    assert_non_null(f);
    int rc = ev_add(loop, fileno(f), EV_READ, on_probe, &pr);
    if (strcmp(ev_backend_name(loop), "epoll") == 0) {
        assert_int_equal(rc, -1);
        assert_int_equal(ev_get_mask(loop, fileno(f)), EV_NONE);
    } else {
        assert_int_equal(rc, 0);
        ev_del(loop, fileno(f), EV_READ);
    }
    fclose(f);
    close(p[0]);
    close(p[1]);
}

static void on_del_self(ev_loop_t *loop, int fd, void *data, int mask)
{
    on_probe(loop, fd, data, mask);
    ev_del(loop, fd, EV_READ | EV_WRITE);
}

static void test_del_self_in_callback(void **state)
{
    ev_loop_t *loop = *state;
    int sv[2];
    make_pair(sv);
    put_byte(sv[1]);
    probe_t pr = {.tag = 1};
    assert_int_equal(ev_add(loop, sv[0], EV_READ | EV_WRITE, on_del_self, &pr), 0);
    assert_int_equal(ev_run_once(loop, 1000), 1);
    assert_int_equal(ev_get_mask(loop, sv[0]), EV_NONE);
    assert_int_equal(ev_run_once(loop, 0), 0); /* still readable, but unwatched */
    assert_int_equal(pr.calls, 1);
    close(sv[0]);
    close(sv[1]);
}

static void on_del_read_only(ev_loop_t *loop, int fd, void *data, int mask)
{
    on_probe(loop, fd, data, mask);
    ev_del(loop, fd, EV_READ);
}

static void on_del_write_only(ev_loop_t *loop, int fd, void *data, int mask)
{
    on_probe(loop, fd, data, mask);
    ev_del(loop, fd, EV_WRITE);
}

/* The read handler drops its own side; the write side still runs this round. */
static void test_del_own_read_keeps_write(void **state)
{
    ev_loop_t *loop = *state;
    int sv[2];
    make_pair(sv);
    put_byte(sv[1]);
    probe_t r = {.tag = 1}, w = {.tag = 2};
    assert_int_equal(ev_add(loop, sv[0], EV_READ, on_del_read_only, &r), 0);
    assert_int_equal(ev_add(loop, sv[0], EV_WRITE, on_probe, &w), 0);
    assert_int_equal(ev_run_once(loop, 1000), 2);
    assert_int_equal(ev_run_once(loop, 1000), 1);
    assert_int_equal(r.calls, 1);
    assert_int_equal(w.calls, 2);
    close(sv[0]);
    close(sv[1]);
}

/* The read handler drops the write side: the ready write must not run. */
static void test_del_write_from_read(void **state)
{
    ev_loop_t *loop = *state;
    int sv[2];
    make_pair(sv);
    put_byte(sv[1]);
    probe_t r = {.tag = 1}, w = {.tag = 2};
    assert_int_equal(ev_add(loop, sv[0], EV_READ, on_del_write_only, &r), 0);
    assert_int_equal(ev_add(loop, sv[0], EV_WRITE, on_probe, &w), 0);
    assert_int_equal(ev_run_once(loop, 1000), 1);
    assert_int_equal(r.calls, 1);
    assert_int_equal(w.calls, 0);
    assert_int_equal(ev_get_mask(loop, sv[0]), EV_READ);
    close(sv[0]);
    close(sv[1]);
}

/* Two readable pipes; whichever handler runs first deletes and closes the
 * other one (optionally reusing its fd number for a fresh, empty pipe that
 * gets its own handler). The stale readiness must not be dispatched. */
typedef struct killer {
    int fd[2];
    int spare; /* read end of an empty pipe, dup2'd onto the victim */
    int reuse;
    int calls;
    probe_t fresh;
} killer_t;

static void on_kill_other(ev_loop_t *loop, int fd, void *data, int mask)
{
    (void)mask;
    killer_t *k = data;
    if (k->calls++)
        return;
    int victim = fd == k->fd[0] ? k->fd[1] : k->fd[0];
    ev_del(loop, victim, EV_READ);
    if (!k->reuse) {
        close(victim);
        return;
    }
    assert_int_equal(dup2(k->spare, victim), victim); /* closes the old pipe */
    assert_int_equal(ev_add(loop, victim, EV_READ, on_probe, &k->fresh), 0);
}

static void kill_other(ev_loop_t *loop, int reuse)
{
    int a[2], b[2], s[2];
    make_pipe(a);
    make_pipe(b);
    make_pipe(s);
    put_byte(a[1]);
    put_byte(b[1]);
    killer_t k = {.fd = {a[0], b[0]}, .spare = s[0], .reuse = reuse, .fresh = {.tag = 9}};
    assert_int_equal(ev_add(loop, a[0], EV_READ, on_kill_other, &k), 0);
    assert_int_equal(ev_add(loop, b[0], EV_READ, on_kill_other, &k), 0);
    assert_int_equal(ev_run_once(loop, 1000), 1);
    assert_int_equal(k.calls, 1);
    assert_int_equal(k.fresh.calls, 0);
    /* The survivor is still readable; the replacement pipe is empty. */
    assert_int_equal(ev_run_once(loop, 0), 1);
    assert_int_equal(k.calls, 2);
    assert_int_equal(k.fresh.calls, 0);
    for (int i = 0; i < 2; i++) {
        ev_del(loop, k.fd[i], EV_READ);
        close(k.fd[i]); /* one of them is closed already if !reuse: EBADF is fine */
    }
    close(a[1]);
    close(b[1]);
    close(s[0]);
    close(s[1]);
}

static void test_del_other_ready(void **state)
{
    kill_other(*state, 0);
}

static void test_del_other_ready_fd_reused(void **state)
{
    kill_other(*state, 1);
}

static void test_fd_growth_high_fd(void **state)
{
    ev_loop_t *loop = *state;
    int p[2];
    make_pipe(p);
    int hi = free_fd_at_least(100);
    assert_int_equal(dup2(p[0], hi), hi);
    probe_t pr = {.tag = 1};
    assert_int_equal(ev_add(loop, hi, EV_READ, on_probe, &pr), 0);
    assert_int_equal(ev_get_mask(loop, hi), EV_READ);
    put_byte(p[1]);
    assert_int_equal(ev_run_once(loop, 1000), 1);
    assert_int_equal(pr.fd, hi);
    ev_del(loop, hi, EV_READ);
    close(hi);
    close(p[0]);
    close(p[1]);
}

#define NPAIRS 200

static void test_fd_growth_many_pairs(void **state)
{
    ev_loop_t *loop = *state;
    static int sv[NPAIRS][2];
    static probe_t pr[NPAIRS];
    for (int i = 0; i < NPAIRS; i++) {
        make_pair(sv[i]);
        pr[i] = (probe_t){.tag = i};
        assert_int_equal(ev_add(loop, sv[i][0], EV_READ, on_probe, &pr[i]), 0);
        put_byte(sv[i][1]);
    }
    assert_int_equal(ev_run_once(loop, 1000), NPAIRS);
    for (int i = 0; i < NPAIRS; i++) {
        assert_int_equal(pr[i].calls, 1);
        assert_int_equal(pr[i].fd, sv[i][0]);
    }
    /* Close half of them (deleting first); the rest keep working. */
    for (int i = 0; i < NPAIRS; i += 2) {
        ev_del(loop, sv[i][0], EV_READ);
        close(sv[i][0]);
        close(sv[i][1]);
    }
    assert_int_equal(ev_run_once(loop, 1000), NPAIRS / 2);
    for (int i = 1; i < NPAIRS; i += 2) {
        assert_int_equal(pr[i].calls, 2);
        ev_del(loop, sv[i][0], EV_READ);
        close(sv[i][0]);
        close(sv[i][1]);
    }
}

/* A handler that registers a far-away fd grows (moves) the fd table while
 * the same fd's write handler is still to be dispatched. */
typedef struct grower {
    int target;
    probe_t pr;
} grower_t;

static void on_grow(ev_loop_t *loop, int fd, void *data, int mask)
{
    grower_t *g = data;
    on_probe(loop, fd, &g->pr, mask);
    assert_int_equal(ev_add(loop, g->target, EV_READ, on_probe, &g->pr), 0);
}

static void test_fd_growth_inside_callback(void **state)
{
    ev_loop_t *loop = *state;
    int sv[2], p[2];
    make_pair(sv);
    make_pipe(p);
    put_byte(sv[1]);
    grower_t g = {.target = free_fd_at_least(300), .pr = {.tag = 1}};
    assert_int_equal(dup2(p[0], g.target), g.target);
    probe_t w = {.tag = 2};
    assert_int_equal(ev_add(loop, sv[0], EV_READ, on_grow, &g), 0);
    assert_int_equal(ev_add(loop, sv[0], EV_WRITE, on_probe, &w), 0);
    assert_int_equal(ev_run_once(loop, 1000), 2);
    assert_int_equal(g.pr.calls, 1);
    assert_int_equal(w.calls, 1);
    assert_int_equal(ev_get_mask(loop, g.target), EV_READ);
    ev_del(loop, g.target, EV_READ);
    close(g.target);
    close(sv[0]);
    close(sv[1]);
    close(p[0]);
    close(p[1]);
}

/* Scale: thousands of fds (as many as RLIMIT_NOFILE allows, up to 10,000). */
static void test_many_fds(void **state)
{
    ev_loop_t *loop = *state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 10100 && rl.rlim_max > rl.rlim_cur) {
        rl.rlim_cur = rl.rlim_max < 10100 ? rl.rlim_max : 10100;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < 300)
        skip();
    int npairs = rl.rlim_cur > 10100 ? 5000 : (int)((rl.rlim_cur - 100) / 2);
    int(*sv)[2] = calloc((size_t)npairs, sizeof(*sv));
    probe_t *pr = calloc((size_t)npairs, sizeof(*pr));
    assert_non_null(sv);
    assert_non_null(pr);
    for (int i = 0; i < npairs; i++) {
        make_pair(sv[i]);
        assert_int_equal(ev_add(loop, sv[i][0], EV_READ, on_probe, &pr[i]), 0);
        assert_int_equal(ev_add(loop, sv[i][1], EV_READ, on_probe, &pr[i]), 0);
    }
    int want = 0;
    for (int i = 0; i < npairs; i += 7, want++)
        put_byte(sv[i][1]);
    assert_int_equal(ev_run_once(loop, 1000), want);
    for (int i = 0; i < npairs; i++)
        assert_int_equal(pr[i].calls, i % 7 == 0);
    for (int i = 0; i < npairs; i++) {
        for (int j = 0; j < 2; j++) {
            ev_del(loop, sv[i][j], EV_READ);
            close(sv[i][j]);
        }
    }
    assert_int_equal(ev_run_once(loop, 0), 0);
    free(sv);
    free(pr);
}

static void test_hup_pipe_reader(void **state)
{
    ev_loop_t *loop = *state;
    int p[2];
    make_pipe(p);
    probe_t pr = {.tag = 1};
    assert_int_equal(ev_add(loop, p[0], EV_READ, on_probe, &pr), 0);
    assert_int_equal(ev_run_once(loop, 0), 0);
    close(p[1]);
    assert_int_equal(ev_run_once(loop, 1000), 1);
    assert_int_equal(pr.mask, EV_READ);
    char c;
    assert_int_equal(read(p[0], &c, 1), 0); /* EOF */
    close(p[0]);
}

static void test_hup_socket_peer_closed(void **state)
{
    ev_loop_t *loop = *state;
    int sv[2];
    make_pair(sv);
    probe_t pr = {.tag = 1};
    assert_int_equal(ev_add(loop, sv[0], EV_READ, on_probe, &pr), 0);
    assert_int_equal(ev_run_once(loop, 0), 0);
    close(sv[1]);
    assert_int_equal(ev_run_once(loop, 1000), 1);
    assert_int_equal(pr.mask, EV_READ);
    char c;
    assert_int_equal(read(sv[0], &c, 1), 0);
    close(sv[0]);
}

/* A full pipe is not writable; once the reader goes away the kernel reports
 * only an error, which must still reach the write handler. */
static void test_err_to_write_handler(void **state)
{
    ev_loop_t *loop = *state;
    int p[2];
    make_pipe(p);
    char buf[4096] = {0};
    for (int i = 0; i < 1 << 12 && write(p[1], buf, sizeof(buf)) > 0; i++) {
    }
    while (write(p[1], buf, 1) == 1) {
    }
    probe_t pr = {.tag = 1};
    assert_int_equal(ev_add(loop, p[1], EV_WRITE, on_probe, &pr), 0);
    assert_int_equal(ev_run_once(loop, 0), 0);
    close(p[0]);
    assert_int_equal(ev_run_once(loop, 1000), 1);
    assert_int_equal(pr.mask, EV_WRITE);
    ev_del(loop, p[1], EV_WRITE);
    close(p[1]);
}

static void on_nested_run(ev_loop_t *loop, int fd, void *data, int mask)
{
    (void)fd;
    (void)mask;
    *(int *)data = ev_run_once(loop, 0);
    ev_del(loop, fd, EV_READ);
}

static void test_nested_run_refused(void **state)
{
    ev_loop_t *loop = *state;
    int p[2];
    make_pipe(p);
    put_byte(p[1]);
    int rc = 0;
    assert_int_equal(ev_add(loop, p[0], EV_READ, on_nested_run, &rc), 0);
    assert_int_equal(ev_run_once(loop, 1000), 1);
    assert_int_equal(rc, -1);
    close(p[0]);
    close(p[1]);
}

/* ---- timers ----------------------------------------------------------------- */

/* What we know about a timer's deadline without peeking inside the loop:
 * it was armed at some instant in [lo, hi] for ms milliseconds. */
typedef struct tinfo {
    int64_t lo, hi, ms;
    int64_t fired_at;
    int fired;
    int order;
    ev_timer_t *t;
} tinfo_t;

static int nfired;

static int64_t on_tinfo(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    (void)loop;
    (void)t;
    tinfo_t *ti = data;
    ti->fired++;
    ti->fired_at = ev_now_ms();
    ti->order = nfired++;
    return EV_NOMORE;
}

static void tinfo_add(ev_loop_t *loop, tinfo_t *ti, int64_t ms)
{
    ti->ms = ms;
    ti->lo = ev_now_ms();
    ti->t = ev_timer_add(loop, ms, on_tinfo, ti);
    ti->hi = ev_now_ms();
    assert_non_null(ti->t);
}

/* Every live timer fired once, never early, and in deadline order as far as
 * the [lo, hi] arming windows allow (exact when arming took under 1 ms). */
static void tinfo_check(const tinfo_t *ti, int n)
{
    const tinfo_t **by_order = calloc((size_t)n, sizeof(*by_order));
    assert_non_null(by_order);
    int live = 0;
    for (int i = 0; i < n; i++) {
        if (!ti[i].t)
            continue; /* deleted before it could fire */
        assert_int_equal(ti[i].fired, 1);
        assert_true(ti[i].fired_at >= ti[i].lo + ti[i].ms);
        assert_true(ti[i].order < n);
        by_order[ti[i].order] = &ti[i];
        live++;
    }
    for (int k = 1; k < live; k++) {
        const tinfo_t *a = by_order[k - 1], *b = by_order[k];
        assert_non_null(a);
        assert_non_null(b);
        assert_true(a->lo + a->ms <= b->hi + b->ms);
    }
    free(by_order);
}

static void test_timer_order(void **state)
{
    ev_loop_t *loop = *state;
    static const int64_t ms[] = {30, 10, 20, 0, 10, 5};
    enum { N = sizeof(ms) / sizeof(ms[0]) };
    tinfo_t ti[N] = {{0}};
    nfired = 0;
    for (int i = 0; i < N; i++)
        tinfo_add(loop, &ti[i], ms[i]);
    run_until(loop, &nfired, N);
    tinfo_check(ti, N);
    if (ti[N - 1].hi == ti[0].lo) { /* armed within one clock tick: exact order */
        assert_int_equal(ti[3].order, 0);
        assert_int_equal(ti[5].order, 1);
        assert_int_equal(ti[1].order, 2);
        assert_int_equal(ti[4].order, 3);
        assert_int_equal(ti[2].order, 4);
        assert_int_equal(ti[0].order, 5);
    }
    assert_int_equal(ev_run_once(loop, 0), 0);
}

/* Equal delays fire in the order they were added (deadlines only grow). */
static void test_timer_equal_deadlines_fifo(void **state)
{
    ev_loop_t *loop = *state;
    tinfo_t ti[8] = {{0}};
    nfired = 0;
    for (int i = 0; i < 8; i++)
        tinfo_add(loop, &ti[i], 3);
    run_until(loop, &nfired, 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(ti[i].order, i);
}

static int64_t on_periodic(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    (void)loop;
    (void)t;
    int *count = data;
    return ++*count < 5 ? 1 : EV_NOMORE;
}

static void test_timer_periodic(void **state)
{
    ev_loop_t *loop = *state;
    int count = 0;
    assert_non_null(ev_timer_add(loop, 1, on_periodic, &count));
    run_until(loop, &count, 5);
    run_for(loop, 20);
    assert_int_equal(count, 5);
    assert_int_equal(ev_run_once(loop, 0), 0);
}

static int64_t on_del_self_timer(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    int *count = data;
    ++*count;
    ev_timer_del(loop, t);
    ev_timer_del(loop, t); /* twice is harmless while it runs */
    return 1;              /* ignored: it was deleted */
}

static void test_timer_del_self(void **state)
{
    ev_loop_t *loop = *state;
    int count = 0;
    assert_non_null(ev_timer_add(loop, 0, on_del_self_timer, &count));
    run_until(loop, &count, 1);
    run_for(loop, 20);
    assert_int_equal(count, 1);
}

typedef struct victims {
    ev_timer_t *t[2];
    int calls;
} victims_t;

static int64_t on_del_victims(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    (void)t;
    victims_t *v = data;
    v->calls++;
    for (int i = 0; i < 2; i++)
        ev_timer_del(loop, v->t[i]);
    return EV_NOMORE;
}

static int64_t on_must_not_fire(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    (void)loop;
    (void)t;
    (void)data;
    fail_msg("deleted timer fired");
    return EV_NOMORE;
}

/* A timer deletes one that is due in the same pass and one in the future;
 * another is deleted from outside before the loop runs. */
static void test_timer_del_other(void **state)
{
    ev_loop_t *loop = *state;
    victims_t v = {0};
    assert_non_null(ev_timer_add(loop, 0, on_del_victims, &v));
    v.t[0] = ev_timer_add(loop, 0, on_must_not_fire, NULL);
    v.t[1] = ev_timer_add(loop, 10000, on_must_not_fire, NULL);
    ev_timer_t *outside = ev_timer_add(loop, 0, on_must_not_fire, NULL);
    assert_non_null(v.t[0]);
    assert_non_null(v.t[1]);
    assert_non_null(outside);
    ev_timer_del(loop, outside);
    run_until(loop, &v.calls, 1);
    run_for(loop, 10);
    assert_int_equal(v.calls, 1);
    assert_int_equal(ev_run_once(loop, 0), 0); /* nothing left */
}

static int64_t on_zero(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    (void)loop;
    (void)t;
    ++*(int *)data;
    return 0;
}

/* A timer asking to run again right away runs once per loop pass, so file
 * events keep being served. */
static void test_timer_zero_delay_no_starvation(void **state)
{
    ev_loop_t *loop = *state;
    int p[2];
    make_pipe(p);
    put_byte(p[1]);
    probe_t pr = {.tag = 1};
    int count = 0;
    assert_int_equal(ev_add(loop, p[0], EV_READ, on_probe, &pr), 0);
    ev_timer_t *t = ev_timer_add(loop, 0, on_zero, &count);
    assert_non_null(t);
    for (int i = 1; i <= 10; i++) {
        assert_int_equal(ev_run_once(loop, 1000), 2);
        assert_int_equal(count, i);
        assert_int_equal(pr.calls, i);
    }
    ev_timer_del(loop, t); /* pending between passes */
    drain(p[0]);
    assert_int_equal(ev_run_once(loop, 0), 0);
    close(p[0]);
    close(p[1]);
}

static int64_t on_chain(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    (void)t;
    int *count = data;
    if (++*count < 5)
        assert_non_null(ev_timer_add(loop, 0, on_chain, count));
    return EV_NOMORE;
}

/* Timers added by a timer callback wait for the next pass, too. */
static void test_timer_add_from_callback(void **state)
{
    ev_loop_t *loop = *state;
    int count = 0;
    assert_non_null(ev_timer_add(loop, 0, on_chain, &count));
    for (int i = 1; i <= 5; i++) {
        assert_int_equal(ev_run_once(loop, 1000), 1);
        assert_int_equal(count, i);
    }
    assert_int_equal(ev_run_once(loop, 0), 0);
}

static int64_t on_once(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    (void)loop;
    (void)t;
    ++*(int *)data;
    return EV_NOMORE;
}

/* The loop sleeps until the nearest timer, not past it and not (for good)
 * short of it; a far timer does not make a bounded wait return early. */
static void test_timer_wait_timeout(void **state)
{
    ev_loop_t *loop = *state;
    int count = 0, far_count = 0;
    int64_t t0 = ev_now_ms();
    assert_non_null(ev_timer_add(loop, 20, on_once, &count));
    run_until(loop, &count, 1);
    assert_true(ev_now_ms() - t0 >= 20);
    ev_timer_t *far = ev_timer_add(loop, 60000, on_once, &far_count);
    assert_non_null(far);
    assert_int_equal(ev_run_once(loop, 10), 0);
    ev_timer_del(loop, far);
    assert_int_equal(far_count, 0);
}

#define NTIMERS 1000

static void test_many_timers_in_order(void **state)
{
    ev_loop_t *loop = *state;
    static tinfo_t ti[NTIMERS];
    memset(ti, 0, sizeof(ti));
    nfired = 0;
    uint32_t seed = 12345;
    for (int i = 0; i < NTIMERS; i++) {
        seed = seed * 1103515245u + 12345u; /* fixed LCG: same deadlines every run */
        tinfo_add(loop, &ti[i], (seed >> 16) % 100);
    }
    /* Delete every third one: removals from the middle of the heap. */
    int live = NTIMERS;
    for (int i = 0; i < NTIMERS; i += 3, live--) {
        ev_timer_del(loop, ti[i].t);
        ti[i].t = NULL;
    }
    run_until(loop, &nfired, live);
    run_for(loop, 5);
    assert_int_equal(nfired, live);
    tinfo_check(ti, NTIMERS);
}

/* ---- stopping and freeing --------------------------------------------------- */

static int64_t on_stop(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    (void)t;
    ++*(int *)data;
    ev_stop(loop);
    return EV_NOMORE;
}

static void test_stop_from_timer(void **state)
{
    ev_loop_t *loop = *state;
    int stopped = 0, guard = 0;
    assert_non_null(ev_timer_add(loop, 1, on_stop, &stopped));
    assert_non_null(ev_timer_add(loop, 5000, on_stop, &guard)); /* bounds ev_run */
    assert_int_equal(ev_run(loop), 0);
    assert_int_equal(stopped, 1);
    assert_int_equal(guard, 0); /* still pending: ev_free releases it */
}

static void on_stop_file(ev_loop_t *loop, int fd, void *data, int mask)
{
    on_probe(loop, fd, data, mask);
    ev_stop(loop);
}

static void test_stop_from_file_callback(void **state)
{
    ev_loop_t *loop = *state;
    int p[2];
    make_pipe(p);
    put_byte(p[1]);
    probe_t pr = {.tag = 1};
    int guard = 0;
    assert_int_equal(ev_add(loop, p[0], EV_READ, on_stop_file, &pr), 0);
    assert_non_null(ev_timer_add(loop, 5000, on_stop, &guard));
    assert_int_equal(ev_run(loop), 0);
    assert_int_equal(pr.calls, 1);
    assert_int_equal(guard, 0);
    /* ev_run starts afresh after a stop. */
    assert_int_equal(ev_run(loop), 0);
    assert_int_equal(pr.calls, 2);
    ev_del(loop, p[0], EV_READ);
    close(p[0]);
    close(p[1]);
}

/* Teardown frees a loop with watched fds and pending timers (ASan/valgrind
 * check for leaks). */
static void test_free_with_pending(void **state)
{
    ev_loop_t *loop = *state;
    int p[2];
    make_pipe(p);
    probe_t pr = {0};
    assert_int_equal(ev_add(loop, p[0], EV_READ, on_probe, &pr), 0);
    for (int i = 0; i < 100; i++)
        assert_non_null(ev_timer_add(loop, 60000 + i, on_must_not_fire, NULL));
    close(p[0]);
    close(p[1]);
}

#define EV_TEST(f)                                                                                 \
    {"epoll/" #f, f, setup, teardown, &be_epoll},                                                  \
    {                                                                                              \
        "poll/" #f, f, setup, teardown, &be_poll                                                   \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        EV_TEST(test_backend_name),
        cmocka_unit_test(test_backend_env),
        EV_TEST(test_read_ready),
        EV_TEST(test_write_ready),
        EV_TEST(test_rw_same_handler_merged),
        EV_TEST(test_rw_read_before_write),
        EV_TEST(test_mask_bookkeeping),
        EV_TEST(test_bad_args),
        EV_TEST(test_del_self_in_callback),
        EV_TEST(test_del_own_read_keeps_write),
        EV_TEST(test_del_write_from_read),
        EV_TEST(test_del_other_ready),
        EV_TEST(test_del_other_ready_fd_reused),
        EV_TEST(test_fd_growth_high_fd),
        EV_TEST(test_fd_growth_many_pairs),
        EV_TEST(test_fd_growth_inside_callback),
        EV_TEST(test_many_fds),
        EV_TEST(test_hup_pipe_reader),
        EV_TEST(test_hup_socket_peer_closed),
        EV_TEST(test_err_to_write_handler),
        EV_TEST(test_nested_run_refused),
        EV_TEST(test_timer_order),
        EV_TEST(test_timer_equal_deadlines_fifo),
        EV_TEST(test_timer_periodic),
        EV_TEST(test_timer_del_self),
        EV_TEST(test_timer_del_other),
        EV_TEST(test_timer_zero_delay_no_starvation),
        EV_TEST(test_timer_add_from_callback),
        EV_TEST(test_timer_wait_timeout),
        EV_TEST(test_many_timers_in_order),
        EV_TEST(test_stop_from_timer),
        EV_TEST(test_stop_from_file_callback),
        EV_TEST(test_free_with_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
