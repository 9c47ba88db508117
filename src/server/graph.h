/* graph: the parts of TVM's graph executor (RUNTIME.md §3) that need no
 * kernels: graph JSON parsing and validation, dtype strings, storage
 * planning, and the params blob / NDArray record formats. The executor
 * module that runs kernels builds on these. */
#ifndef TVMRPC_GRAPH_H
#define TVMRPC_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "rpc/rpc.h"

#define GRAPH_MAX_NDIM 32

typedef struct graph_entry_ref {
    uint32_t node, index;
} graph_entry_ref_t;

typedef struct graph_node {
    char *name;
    int is_op;       /* "tvm_op"; 0 for "null" (inputs and weights) */
    char *func_name; /* tvm_op only; "__nop" and "__copy" are built in */
    uint32_t num_outputs;
    int flatten_data;
    graph_entry_ref_t *inputs;
    size_t ninputs;
} graph_node_t;

typedef struct graph_entry {
    rpc_dtype_t dtype;
    int ndim;
    int64_t shape[GRAPH_MAX_NDIM];
    uint32_t storage_id;
    int device_type; /* from device_index, or 0 = the executor's primary device */
} graph_entry_t;

typedef struct graph {
    graph_node_t *nodes;
    size_t nnodes;
    uint32_t *arg_nodes; /* node ids of inputs and weights; position = input index */
    size_t narg_nodes;
    graph_entry_ref_t *heads; /* outputs */
    size_t nheads;
    uint32_t *node_row_ptr; /* nnodes + 1 */
    graph_entry_t *entries; /* node_row_ptr[nnodes] of them */
    size_t nentries;
    uint64_t *slot_bytes; /* storage plan: bytes per storage id */
    size_t nslots;
} graph_t;

/* Parse and validate graph JSON; plan storage. 0, or -1 with err naming the
 * node or field at fault. */
int graph_parse(graph_t *g, const char *json, size_t len, char *err, size_t errlen);
void graph_free(graph_t *g);
/* Entry id of (node, output index). */
static inline uint32_t graph_eid(const graph_t *g, graph_entry_ref_t r)
{
    return g->node_row_ptr[r.node] + r.index;
}
/* Bytes of one entry (TVM's rule: ceil(bits*lanes/8) * prod(shape)); -1 on overflow. */
int64_t graph_entry_bytes(const graph_entry_t *e);

/* "float32", "int8", "uint1", "bool", "float16x4", "handle", ... -> dtype. */
int graph_parse_dtype(const char *s, rpc_dtype_t *out);

/* One NDArray record (§3.4) read from r into a fresh 64-byte aligned buffer
 * (*data, caller frees). The tensor's data field is left 0. */
int graph_read_ndarray(rd_t *r, rpc_tensor_t *t, void **data, uint64_t *nbytes, char *err,
                       size_t errlen);

typedef struct graph_params {
    size_t n;
    char **names;
    rpc_tensor_t *tensors;
    void **data;
    uint64_t *nbytes;
} graph_params_t;

/* A params blob (§3.4). With names_only, stops after the name list. */
int graph_read_params(graph_params_t *p, const void *blob, size_t len, int names_only, char *err,
                      size_t errlen);
void graph_params_free(graph_params_t *p);

#endif
