/* timeeval: runtime.RPCTimeEvaluator (RUNTIME.md §4) and the measurement
 * helpers AutoTVM and MetaSchedule call through RPC (§1.7, §4.4). */
#ifndef TVMRPC_TIMEEVAL_H
#define TVMRPC_TIMEEVAL_H

#include "server/module.h"

/* cache_flush_cpu_non_first_arg, tvm.contrib.random.random_fill and
 * random_fill_for_measure with the packed ABI (compiled code may call them). */
extern const native_fn_t timeeval_natives[];

/* Global functions (registered in globals.c). */
int timeeval_fn_create(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                       char *err, size_t errlen);
int timeeval_fn_cache_flush(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                            char *err, size_t errlen);
int timeeval_fn_random_fill(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                            char *err, size_t errlen);
int timeeval_fn_random_fill_measure(session_t *s, const rpc_value_t *args, int nargs,
                                    rpc_value_t *ret, char *err, size_t errlen);

#endif
