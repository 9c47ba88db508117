/* threadpool: the workers behind TVMBackendParallelLaunch (RUNTIME.md §2.5).
 * One launch runs task 0 on the caller and tasks 1..N-1 on pool threads,
 * all at once, so tasks may wait for each other in tp_barrier. Threads are
 * started on the first launch, never in a process that runs no kernels. */
#ifndef TVMRPC_THREADPOOL_H
#define TVMRPC_THREADPOOL_H

#include <stddef.h>

#include "tvmrpc/c_runtime_api.h"

#define TP_MAX_TASKS 1024

/* Tasks a launch with num_task == 0 gets: $TVM_NUM_THREADS, else
 * $OMP_NUM_THREADS, else the CPUs this process may run on. */
int tp_default_tasks(void);

/* Run fn(i, penv, cdata) once for every i in [0, N), concurrently, where
 * N = num_task if > 0, else tp_default_tasks(). A launch from inside a task,
 * or while another thread's launch is running, runs serially with N = 1.
 * Returns 0 when every task returned 0; otherwise -1 with one line
 * "Task <i> error: <message>" per failed task in err (the message is what
 * the task left in TVMGetLastError). */
int tp_launch(FTVMParallelLambda fn, void *cdata, int num_task, char *err, size_t errlen);

/* Wait until all tasks of the caller's launch have reached the barrier as
 * often as this one. Returns 0; -1 if penv is not a live launch. */
int tp_barrier(int task_id, TVMParallelGroupEnv *penv);

/* Stop and join the pool threads (tests; the server just exits). */
void tp_shutdown(void);

#endif
