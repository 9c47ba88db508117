/* A fixed crew of threads that run the tasks of one parallel launch at a
 * time (RUNTIME.md §2.5). Pool thread k runs task k + 1 of every launch
 * that has that many tasks; the launching thread runs task 0. All tasks of
 * a launch run at the same time, which tp_barrier relies on. */
#include "server/threadpool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"

#define TP_BARRIER_MAGIC 0x7470626172726965ULL /* "tpbarrie" */
/* Polls before a waiting thread sleeps: kernels launch back to back, and a
 * futex round trip costs tens of microseconds per launch. */
#define TP_SPIN (1 << 14)

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_SEQ_CST)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_SEQ_CST)
#define ADD(x, v) __atomic_add_fetch(&(x), (v), __ATOMIC_SEQ_CST)

/* Barrier of one launch; sync_handle of its TVMParallelGroupEnv. */
typedef struct tp_bar {
    uint64_t magic;
    pthread_mutex_t mu; /* only for sleeping */
    pthread_cond_t cv;
    int n;
    int count, sleepers; /* atomic */
    unsigned gen;        /* atomic: bumped when all have arrived */
} tp_bar_t;

typedef struct tp_job {
    FTVMParallelLambda fn;
    void *cdata;
    int ntask;
    TVMParallelGroupEnv env;
    tp_bar_t bar;
    int failed;
    char err[4096];
} tp_job_t;

/* A launch is published as one "ticket" word, (sequence << 16) | ntask,
 * so a thread learns atomically whether a new launch includes it. A thread
 * that takes part may then read job: the launcher keeps it until all its
 * participants are done. */
static struct {
    pthread_mutex_t mu; /* sleeping, and starting threads */
    pthread_cond_t work_cv, done_cv;
    pthread_mutex_t launch_mu; /* one launch at a time */
    pthread_t *threads;
    int nthreads;
    uint64_t ticket;                      /* atomic */
    tp_job_t *job;                        /* atomic */
    int stop, pending, sleepers, waiting; /* atomic */
} pool = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .work_cv = PTHREAD_COND_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER,
    .launch_mu = PTHREAD_MUTEX_INITIALIZER,
};

static _Thread_local int tp_in_task;
static pthread_once_t tp_once = PTHREAD_ONCE_INIT;

static void relax(int i)
{
    if ((i & 63) == 63) {
        sched_yield(); /* more tasks than CPUs: let the others run */
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* ---- sizing -------------------------------------------------------------- */

static int env_count(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return 0;
    char *end;
    long n = strtol(v, &end, 10);
    return *end == '\0' && n > 0 ? (n > TP_MAX_TASKS ? TP_MAX_TASKS : (int)n) : 0;
}

static int cpu_count(void)
{
    static int cached;
    if (cached > 0)
        return cached;
    int n = 0;
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
#endif
    if (n <= 0)
        n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0)
        n = 1;
    cached = n > TP_MAX_TASKS ? TP_MAX_TASKS : n;
    return cached;
}

int tp_default_tasks(void)
{
    int n = env_count("TVM_NUM_THREADS");
    if (!n)
        n = env_count("OMP_NUM_THREADS");
    return n ? n : cpu_count();
}

/* ---- barrier ------------------------------------------------------------- */

static void bar_init(tp_bar_t *b, int n)
{
    b->magic = TP_BARRIER_MAGIC;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->n = n;
    b->count = 0;
    b->gen = 0;
}

static void bar_destroy(tp_bar_t *b)
{
    b->magic = 0;
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
}

int tp_barrier(int task_id, TVMParallelGroupEnv *penv)
{
    tp_bar_t *b = penv ? penv->sync_handle : NULL;
    if (!b || b->magic != TP_BARRIER_MAGIC || task_id < 0 || task_id >= b->n)
        return -1;
    if (b->n == 1)
        return 0;
    unsigned gen = LOAD(b->gen);
    if (ADD(b->count, 1) == b->n) {
        STORE(b->count, 0); /* nobody arrives again before gen moves */
        ADD(b->gen, 1);
        if (LOAD(b->sleepers)) {
            pthread_mutex_lock(&b->mu);
            pthread_cond_broadcast(&b->cv);
            pthread_mutex_unlock(&b->mu);
        }
        return 0;
    }
    for (int i = 0; i < TP_SPIN; i++) {
        if (LOAD(b->gen) != gen)
            return 0;
        relax(i);
    }
    pthread_mutex_lock(&b->mu);
    ADD(b->sleepers, 1);
    while (LOAD(b->gen) == gen)
        pthread_cond_wait(&b->cv, &b->mu);
    ADD(b->sleepers, -1);
    pthread_mutex_unlock(&b->mu);
    return 0;
}

/* ---- tasks --------------------------------------------------------------- */

static void run_task(tp_job_t *job, int task)
{
    int saved = tp_in_task;
    tp_in_task = 1;
    int rc = job->fn(task, &job->env, job->cdata);
    tp_in_task = saved;
    if (rc == 0)
        return;
    const char *msg = TVMGetLastError();
    pthread_mutex_lock(&job->bar.mu);
    size_t len = strlen(job->err);
    snprintf(job->err + len, sizeof(job->err) - len, "%sTask %d error: %s", len ? "\n" : "", task,
             msg && *msg ? msg : "(no message)");
    job->failed = 1;
    pthread_mutex_unlock(&job->bar.mu);
}

/* Wait for a ticket other than seen (0 when stopping). */
static uint64_t wait_ticket(uint64_t seen)
{
    uint64_t t;
    for (int i = 0; i < TP_SPIN; i++) {
        if ((t = LOAD(pool.ticket)) != seen || LOAD(pool.stop))
            return LOAD(pool.stop) ? 0 : t;
        relax(i);
    }
    pthread_mutex_lock(&pool.mu);
    ADD(pool.sleepers, 1);
    while ((t = LOAD(pool.ticket)) == seen && !LOAD(pool.stop))
        pthread_cond_wait(&pool.work_cv, &pool.mu);
    ADD(pool.sleepers, -1);
    pthread_mutex_unlock(&pool.mu);
    return LOAD(pool.stop) ? 0 : t;
}

static void *worker_main(void *arg)
{
    int idx = (int)(intptr_t)arg;
    /* Tickets are never 0, so a thread started for the current launch
     * takes part in it however late it starts running. */
    uint64_t seen = 0;
    for (;;) {
        uint64_t t = wait_ticket(seen);
        if (t == 0)
            break;
        seen = t;
        if (idx + 1 >= (int)(t & 0xffff))
            continue;
        run_task(LOAD(pool.job), idx + 1);
        if (ADD(pool.pending, -1) == 0 && LOAD(pool.waiting)) {
            pthread_mutex_lock(&pool.mu);
            pthread_cond_broadcast(&pool.done_cv);
            pthread_mutex_unlock(&pool.mu);
        }
    }
    return NULL;
}

/* A forked child has none of the parent's pool threads: start over. */
static void tp_atfork_child(void)
{
    pthread_mutex_init(&pool.mu, NULL);
    pthread_mutex_init(&pool.launch_mu, NULL);
    pthread_cond_init(&pool.work_cv, NULL);
    pthread_cond_init(&pool.done_cv, NULL);
    free(pool.threads);
    pool.threads = NULL;
    pool.nthreads = pool.stop = pool.pending = pool.sleepers = pool.waiting = 0;
    pool.ticket = 0;
    pool.job = NULL;
}

static void tp_register_atfork(void)
{
    pthread_atfork(NULL, NULL, tp_atfork_child);
}

/* Have at least want pool threads; called with pool.mu held. Pool threads
 * block every signal so that signals reach the session's main thread. */
static int grow(int want)
{
    if (want <= pool.nthreads)
        return 0;
    pthread_t *nt = realloc(pool.threads, (size_t)want * sizeof(*nt));
    if (!nt)
        return -1;
    pool.threads = nt;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = 0;
    while (pool.nthreads < want) {
        int e = pthread_create(&pool.threads[pool.nthreads], NULL, worker_main,
                               (void *)(intptr_t)pool.nthreads);
        if (e != 0) {
            log_warn("%s: pthread_create: %s", __func__, strerror(e));
            rc = -1;
            break;
        }
        pool.nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static int run_serial(FTVMParallelLambda fn, void *cdata, char *err, size_t errlen)
{
    tp_job_t *job = malloc(sizeof(*job));
    if (!job) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    job->fn = fn;
    job->cdata = cdata;
    job->ntask = 1;
    job->failed = 0;
    job->err[0] = '\0';
    bar_init(&job->bar, 1);
    job->env.sync_handle = &job->bar;
    job->env.num_task = 1;
    run_task(job, 0);
    int rc = job->failed ? -1 : 0;
    if (rc < 0)
        snprintf(err, errlen, "%s", job->err);
    bar_destroy(&job->bar);
    free(job);
    return rc;
}

/* Hand job to the pool threads (called under launch_mu). */
static void publish(tp_job_t *job, int n)
{
    static uint64_t seq;
    STORE(pool.job, job);
    STORE(pool.pending, n - 1);
    STORE(pool.ticket, (++seq << 16) | (uint64_t)n);
    if (LOAD(pool.sleepers)) {
        pthread_mutex_lock(&pool.mu);
        pthread_cond_broadcast(&pool.work_cv);
        pthread_mutex_unlock(&pool.mu);
    }
}

/* Wait until every pool thread of the launch has finished its task. */
static void wait_done(void)
{
    for (int i = 0; i < TP_SPIN; i++) {
        if (LOAD(pool.pending) == 0)
            return;
        relax(i);
    }
    pthread_mutex_lock(&pool.mu);
    STORE(pool.waiting, 1);
    while (LOAD(pool.pending) > 0)
        pthread_cond_wait(&pool.done_cv, &pool.mu);
    STORE(pool.waiting, 0);
    pthread_mutex_unlock(&pool.mu);
}

int tp_launch(FTVMParallelLambda fn, void *cdata, int num_task, char *err, size_t errlen)
{
    if (!fn) {
        snprintf(err, errlen, "parallel launch without a function");
        return -1;
    }
    if (num_task > TP_MAX_TASKS) {
        snprintf(err, errlen, "parallel launch of %d tasks (at most %d)", num_task, TP_MAX_TASKS);
        return -1;
    }
    int n = num_task > 0 ? num_task : tp_default_tasks();
    /* Nested or concurrent launches: serial is always correct (§2.5). */
    if (n == 1 || tp_in_task || pthread_mutex_trylock(&pool.launch_mu) != 0)
        return run_serial(fn, cdata, err, errlen);
    pthread_once(&tp_once, tp_register_atfork);

    tp_job_t *job = malloc(sizeof(*job));
    if (!job) {
        pthread_mutex_unlock(&pool.launch_mu);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_lock(&pool.mu);
    if (grow(n - 1) < 0 && num_task <= 0)
        n = pool.nthreads + 1; /* "use all workers": as many as we have */
    if (n - 1 > pool.nthreads) {
        pthread_mutex_unlock(&pool.mu);
        pthread_mutex_unlock(&pool.launch_mu);
        free(job);
        snprintf(err, errlen, "cannot start threads for %d parallel tasks", n);
        return -1;
    }
    pthread_mutex_unlock(&pool.mu);
    job->fn = fn;
    job->cdata = cdata;
    job->ntask = n;
    job->failed = 0;
    job->err[0] = '\0';
    bar_init(&job->bar, n);
    job->env.sync_handle = &job->bar;
    job->env.num_task = n;
    publish(job, n);
    run_task(job, 0);
    wait_done();
    pthread_mutex_unlock(&pool.launch_mu);

    int rc = job->failed ? -1 : 0;
    if (rc < 0)
        snprintf(err, errlen, "%s", job->err);
    bar_destroy(&job->bar);
    free(job);
    return rc;
}

void tp_shutdown(void)
{
    pthread_mutex_lock(&pool.launch_mu);
    pthread_mutex_lock(&pool.mu);
    STORE(pool.stop, 1);
    pthread_cond_broadcast(&pool.work_cv);
    int n = pool.nthreads;
    pthread_t *threads = pool.threads;
    pool.threads = NULL;
    pool.nthreads = 0;
    pthread_mutex_unlock(&pool.mu);
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    /* New threads count from 0 again and must not mistake the last
     * ticket for a new launch. */
    STORE(pool.ticket, 0);
    STORE(pool.job, NULL);
    STORE(pool.stop, 0);
    pthread_mutex_unlock(&pool.launch_mu);
}
