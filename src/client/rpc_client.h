/* rpc_client: internals of the C client library (include/tvmrpc/client.h).
 * Everything here works on bytes and values only, so unit tests reach it
 * without a socket; rpc_client.c does the I/O. */
#ifndef TVMRPC_RPC_CLIENT_H
#define TVMRPC_RPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/json.h"
#include "rpc/rpc.h"
#include "tvmrpc/client.h"

/* Bytes of a copy packet besides the data: code, DLTensor, nbytes (§4.10). */
#define RCL_COPY_OVERHEAD(ndim) (44 + 8 * (uint64_t)(ndim))

/* Python str() of the number a Python caller would have passed: integral
 * values print as ints ("10"), others in repr form ("2.5"). */
void rcl_format_number(char *out, size_t outlen, double v);
/* "client:" + key, plus " -timeout=N" when session_timeout > 0 (§2.3).
 * -1 if session_timeout is negative or not finite, or the key is too long. */
int rcl_format_key(char *out, size_t outlen, const char *key, double session_timeout);

/* Plan a copy of nbytes as §4.10 does. max_packet 0 = the server set no
 * limit: one packet. Otherwise blocks of max_packet - overhead bytes and a
 * final remainder. 0, or -1 if max_packet leaves no room for data. */
int rcl_plan_chunks(uint64_t nbytes, uint64_t max_packet, int ndim, uint64_t *block,
                    uint64_t *count);

/* The generation told by the payload (after the code) of the kReturn that
 * answers kInitServer (§4.12 client side): TVMRPC_GEN_*, or -1. */
int rcl_init_generation(const uint8_t *p, size_t n);
/* Message of a kException payload of either generation. 0 or -1. */
int rcl_exception_text(const uint8_t *p, size_t n, const char **msg, size_t *len);
/* TVMRPC_ERR_TIMEOUT for an RPCSessionTimeoutError, else TVMRPC_ERR_REMOTE. */
int rcl_exception_code(const char *msg, size_t len);

/* Public value -> wire value; a TENSOR argument's DLTensor goes into *t.
 * TVMRPC_OK or TVMRPC_ERR_ARG with a message. */
int rcl_to_wire(const tvmrpc_value_t *v, rpc_value_t *w, rpc_tensor_t *t, char *err, size_t errlen);
/* Wire value -> public value; a returned array is described in *arr. */
void rcl_from_wire(const rpc_value_t *w, tvmrpc_value_t *v, tvmrpc_array_t *arr);
void rcl_array_to_tensor(const tvmrpc_array_t *a, rpc_tensor_t *t);

/* Packet header, DLTensor and nbytes of a kCopyToRemote (whose nbytes of
 * data the caller sends right after) or kCopyFromRemote. */
int rcl_copy_header(buf_t *out, int32_t code, const rpc_tensor_t *t, uint64_t nbytes);
/* kFreeHandle arguments: classic (handle, type code), ffi (handle).
 * Returns the count, or -1 for a kind that has no handle. */
int rcl_free_args(int generation, uint64_t h, tvmrpc_kind_t kind, rpc_value_t *args);

/* The tracker's answer to REQUEST: [0, [host, port, matchkey]]. 0 or -1. */
int rcl_parse_grant(const json_t *reply, char *host, size_t hostlen, int *port, char *matchkey,
                    size_t mklen);
/* [4, key, "", priority] as Python's json.dumps writes it; heap, caller frees. */
char *rcl_request_text(const char *key, int priority);

#endif
