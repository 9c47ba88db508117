/* The parallel runtime behind TVMBackendParallelLaunch (RUNTIME.md §2.5):
 * task ids and counts, barriers, nesting, error propagation; plus the
 * workspace allocator and the half-float helpers of backend_api.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "server/threadpool.h"
#include "tvmrpc/c_runtime_api.h"

#define MAXT 64

typedef struct rec {
    int hits[MAXT];
    int num_task[MAXT];
    pthread_t who[MAXT];
} rec_t;

static int record(int task, TVMParallelGroupEnv *penv, void *cdata)
{
    rec_t *r = cdata;
    __atomic_add_fetch(&r->hits[task], 1, __ATOMIC_RELAXED);
    r->num_task[task] = penv->num_task;
    r->who[task] = pthread_self();
    return 0;
}

static void test_default_tasks(void **state)
{
    setenv("TVM_NUM_THREADS", "3", 1);
    assert_int_equal(tp_default_tasks(), 3);
    unsetenv("TVM_NUM_THREADS");
    setenv("OMP_NUM_THREADS", "5", 1);
    assert_int_equal(tp_default_tasks(), 5);
    setenv("TVM_NUM_THREADS", "junk", 1);
    assert_int_equal(tp_default_tasks(), 5);
    unsetenv("TVM_NUM_THREADS");
    unsetenv("OMP_NUM_THREADS");
    assert_true(tp_default_tasks() >= 1);
}

static void test_every_task_once(void **state)
{
    char err[256];
    for (int n = 1; n <= 9; n++) {
        rec_t r;
        memset(&r, 0, sizeof(r));
        assert_int_equal(tp_launch(record, &r, n, err, sizeof(err)), 0);
        for (int i = 0; i < MAXT; i++) {
            assert_int_equal(r.hits[i], i < n ? 1 : 0);
            if (i < n)
                assert_int_equal(r.num_task[i], n);
        }
        /* Task 0 runs on the caller, the others elsewhere. */
        assert_true(pthread_equal(r.who[0], pthread_self()));
        for (int i = 1; i < n; i++)
            assert_false(pthread_equal(r.who[i], pthread_self()));
    }
}

static void test_num_task_zero(void **state)
{
    char err[256];
    setenv("TVM_NUM_THREADS", "6", 1);
    rec_t r;
    memset(&r, 0, sizeof(r));
    assert_int_equal(tp_launch(record, &r, 0, err, sizeof(err)), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(r.hits[i], 1);
    assert_int_equal(r.hits[6], 0);
    assert_int_equal(r.num_task[0], 6);
    unsetenv("TVM_NUM_THREADS");
    assert_int_equal(tp_launch(record, &r, TP_MAX_TASKS + 1, err, sizeof(err)), -1);
}

typedef struct bar {
    int n, rounds;
    int *slots;
    int bad;
} bar_t;

/* Each round every task writes its slot, waits, then checks all slots. */
static int barrier_task(int task, TVMParallelGroupEnv *penv, void *cdata)
{
    bar_t *b = cdata;
    for (int r = 1; r <= b->rounds; r++) {
        __atomic_store_n(&b->slots[task], r, __ATOMIC_RELEASE);
        if (TVMBackendParallelBarrier(task, penv) != 0)
            return -1;
        for (int i = 0; i < b->n; i++) {
            int v = __atomic_load_n(&b->slots[i], __ATOMIC_ACQUIRE);
            if (v < r)
                __atomic_store_n(&b->bad, 1, __ATOMIC_RELAXED);
        }
        if (TVMBackendParallelBarrier(task, penv) != 0)
            return -1;
    }
    return 0;
}

static void test_barrier(void **state)
{
    char err[256];
    int slots[8] = {0};
    bar_t b = {8, 200, slots, 0};
    assert_int_equal(tp_launch(barrier_task, &b, 8, err, sizeof(err)), 0);
    assert_int_equal(b.bad, 0);
    /* One task: the barrier returns at once. */
    int one[1] = {0};
    bar_t b1 = {1, 5, one, 0};
    assert_int_equal(tp_launch(barrier_task, &b1, 1, err, sizeof(err)), 0);
    assert_int_equal(tp_barrier(0, NULL), -1);
    TVMParallelGroupEnv fake = {NULL, 2};
    assert_int_equal(tp_barrier(0, &fake), -1);
}

static int inner(int task, TVMParallelGroupEnv *penv, void *cdata)
{
    __atomic_add_fetch((int *)cdata, penv->num_task * 100 + 1, __ATOMIC_RELAXED);
    return 0;
}

static int outer(int task, TVMParallelGroupEnv *penv, void *cdata)
{
    return TVMBackendParallelLaunch(inner, cdata, 4);
}

static void test_nested_is_serial(void **state)
{
    char err[256];
    int acc = 0;
    assert_int_equal(tp_launch(outer, &acc, 3, err, sizeof(err)), 0);
    assert_int_equal(acc, 3 * 101); /* every inner launch: one task, num_task 1 */
}

static int failing(int task, TVMParallelGroupEnv *penv, void *cdata)
{
    if (task == 1 || task == 3) {
        TVMAPISetLastError(task == 1 ? "one broke" : "three broke");
        return -1;
    }
    return 0;
}

static void test_errors(void **state)
{
    char err[256];
    assert_int_equal(tp_launch(failing, NULL, 4, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "Task 1 error: one broke"));
    assert_non_null(strstr(err, "Task 3 error: three broke"));
    assert_null(strstr(err, "Task 0"));
    /* Through the backend API the message is the caller's last error. */
    assert_int_equal(TVMBackendParallelLaunch(failing, NULL, 2), -1);
    assert_string_equal(TVMGetLastError(), "Task 1 error: one broke");
    /* The pool still works afterwards. */
    rec_t r;
    memset(&r, 0, sizeof(r));
    assert_int_equal(tp_launch(record, &r, 4, err, sizeof(err)), 0);
    assert_int_equal(r.hits[3], 1);
    assert_int_equal(tp_launch(NULL, NULL, 2, err, sizeof(err)), -1);
}

static int sum_task(int task, TVMParallelGroupEnv *penv, void *cdata)
{
    int64_t *acc = cdata;
    for (int i = 0; i < 1000; i++)
        __atomic_add_fetch(acc, 1, __ATOMIC_RELAXED);
    return 0;
}

static void *launcher(void *arg)
{
    char err[256];
    for (int i = 0; i < 200; i++)
        if (tp_launch(sum_task, arg, 4, err, sizeof(err)) != 0)
            return (void *)1;
    return NULL;
}

/* Launches from several threads at once: each one still completes (the
 * ones that find the pool busy run serially). */
static void test_concurrent_launchers(void **state)
{
    int64_t acc[3] = {0, 0, 0};
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, launcher, &acc[i]), 0);
    for (int i = 0; i < 3; i++) {
        void *rv;
        pthread_join(t[i], &rv);
        assert_null(rv);
        assert_true(acc[i] >= 200 * 1000); /* serial launches run one task */
    }
}

static void test_shutdown_restart(void **state)
{
    char err[256];
    rec_t r;
    memset(&r, 0, sizeof(r));
    assert_int_equal(tp_launch(record, &r, 5, err, sizeof(err)), 0);
    tp_shutdown();
    memset(&r, 0, sizeof(r));
    assert_int_equal(tp_launch(record, &r, 7, err, sizeof(err)), 0);
    for (int i = 0; i < 7; i++)
        assert_int_equal(r.hits[i], 1);
    tp_shutdown();
}

/* ---- the rest of backend_api.c ------------------------------------------------ */

static void test_workspace(void **state)
{
    void *p = TVMBackendAllocWorkspace(1, 0, 0, 2, 32);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    assert_int_equal(TVMBackendFreeWorkspace(1, 0, p), 0);
    p = TVMBackendAllocWorkspace(1, 0, 4097, 2, 32);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    memset(p, 0xab, 4097);
    assert_int_equal(TVMBackendFreeWorkspace(1, 0, p), 0);
    assert_null(TVMBackendAllocWorkspace(2, 0, 16, 2, 32));
    assert_non_null(strstr(TVMGetLastError(), "device type 2"));
    assert_null(TVMBackendAllocWorkspace(1, 0, UINT64_MAX, 2, 32));
}

static int once(void *cdata)
{
    return ++*(int *)cdata;
}

static void test_last_error_and_run_once(void **state)
{
    TVMAPISetLastError("hello");
    assert_string_equal(TVMGetLastError(), "hello");
    TVMAPISetLastError(NULL);
    assert_string_equal(TVMGetLastError(), "");
    void *h = NULL;
    int n = 0;
    assert_int_equal(TVMBackendRunOnce(&h, once, &n, 0), 1);
    assert_int_equal(TVMBackendRunOnce(&h, once, &n, 0), 0);
    assert_int_equal(n, 1);
}

static void test_half(void **state)
{
    static const struct {
        float f;
        uint16_t h;
    } cases[] = {
        {0.0f, 0x0000},           {-0.0f, 0x8000},         {1.0f, 0x3c00},
        {-2.0f, 0xc000},          {0.5f, 0x3800},          {65504.0f, 0x7bff},
        {65520.0f, 0x7c00},       {1e9f, 0x7c00},          {5.960464e-8f, 0x0001},
        {2.98e-8f, 0x0000},       {6.1035156e-5f, 0x0400}, {3.14159265f, 0x4248},
        {1.00048828125f, 0x3c00}, /* tie to even */
        {1.00146484375f, 0x3c02}, /* tie to even, up */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(__gnu_f2h_ieee(cases[i].f), cases[i].h);
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
            continue; /* NaNs */
        assert_int_equal(__gnu_f2h_ieee(__gnu_h2f_ieee((uint16_t)h)), h);
    }
    assert_true(__gnu_h2f_ieee(0x7e00) != __gnu_h2f_ieee(0x7e00)); /* NaN */
    assert_true(__gnu_h2f_ieee(0x0001) == 5.9604644775390625e-8f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_tasks),
        cmocka_unit_test(test_every_task_once),
        cmocka_unit_test(test_num_task_zero),
        cmocka_unit_test(test_barrier),
        cmocka_unit_test(test_nested_is_serial),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_concurrent_launchers),
        cmocka_unit_test(test_shutdown_restart),
        cmocka_unit_test(test_workspace),
        cmocka_unit_test(test_last_error_and_run_once),
        cmocka_unit_test(test_half),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
