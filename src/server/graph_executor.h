/* graph_executor: TVM's graph executor for clients up to v0.19 (RUNTIME.md
 * §3): the "GraphExecutor" module that runs a graph JSON's operators with
 * a library's kernels over planned storage, the "GraphExecutorFactory"
 * module a Relay export_library packs into __tvm_dev_mblob, and the global
 * tvm.graph_executor.create.
 *
 * Storage is one 64-byte aligned buffer per storage slot of the plan
 * (graph.c), so memory equals TVM's; entries are views of their slot.
 * Operators are bound once, at creation: run is a loop of direct kernel
 * calls over argument arrays built then. get_input and get_output hand out
 * the live buffers as arrays that keep their storage alive, and the
 * storage is listed in hostmem so clients may copy into and out of it. */
#ifndef TVMRPC_GRAPH_EXECUTOR_H
#define TVMRPC_GRAPH_EXECUTOR_H

#include <stddef.h>

#include "server/module.h"

/* Init (§3.2): parse json, plan and allocate storage on devs[0..ndev-1]
 * (CPU only), bind every operator to lib's functions (imports searched).
 * *out is a new GraphExecutor module. 0, or -1 with err naming the node,
 * entry or field at fault. */
int gexec_create(const char *json, size_t len, mod_t *lib, const DLDevice *devs, int ndev,
                 mod_t **out, char *err, size_t errlen);

/* blob_loader_fn for the GraphExecutorFactory (and GraphRuntimeFactory)
 * entry of __tvm_dev_mblob (§2.3, §3.5). */
int gexec_factory_load(rd_t *r, mod_t **out, char *err, size_t errlen);

/* tvm.graph_executor.create(graph_json, lib, device_type, device_id, ...). */
int gexec_fn_create(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret, char *err,
                    size_t errlen);

#endif
