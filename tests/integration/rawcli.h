/* rawcli: a hand-built RPC client for the integration tests. Every packet
 * is built here with the codecs of src/rpc, not by the public client
 * (tvmrpc/client.h), so a test controls each byte a TVM client of either
 * generation would send, can stop anywhere (half a copy, no kShutdown),
 * and checks the server against an encoder independent of the client's. */
#ifndef TVMRPC_TEST_RAWCLI_H
#define TVMRPC_TEST_RAWCLI_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/buf.h"
#include "rpc/rpc.h"

/* Bound of every read and write. */
#define RAWCLI_IO_MS 30000
/* Largest reply body accepted: the tests' replies are small, so anything
 * bigger is a framing error, not data. */
#define RAWCLI_MAX_BODY ((uint64_t)1 << 20)

typedef struct rawcli {
    int fd;
    const rpc_codec_t *codec; /* generation of the packed sequences */
    buf_t in;                 /* body of the last reply (after its code) */
    rpc_tensor_t rt;          /* tensor of the last array result */
    char exc[4096];           /* text of the last kException, or "" */
} rawcli_t;

/* Connect, handshake as "client:" KEY (a server's key plus options, or a
 * tracker's matchkey), then kInitServer. 0, or -1 with c->fd closed or -1. */
int rawcli_open(rawcli_t *c, const char *host, int port, const char *key, const rpc_codec_t *codec);
/* Around an fd whose handshake the caller did itself. */
void rawcli_attach(rawcli_t *c, int fd, const rpc_codec_t *codec);
/* kShutdown, close. */
void rawcli_close(rawcli_t *c);
/* Free the buffers but leave the connection as it is: returns the fd. */
int rawcli_detach(rawcli_t *c);

/* Send bytes as they are (a whole packet, or part of one). 0 or -1. */
int rawcli_send(rawcli_t *c, const void *p, size_t n);
/* Read one packet: its code in *code, its body in c->in. 0 or -1. */
int rawcli_recv(rawcli_t *c, int32_t *code, int timeout_ms);
/* A request whose payload is a packed sequence after an optional u64
 * prefix (a function handle); waits for the reply. Its code, or -1. An
 * exception's text is in c->exc. */
int rawcli_request(rawcli_t *c, int32_t code, const uint64_t *prefix, const rpc_value_t *args,
                   int n, int timeout_ms);
/* The single value of the last reply (c->in). 0 or -1. */
int rawcli_reply_value(rawcli_t *c, rpc_value_t *out, rpc_tensor_t *t);
/* rawcli_request without prefix that must return one value. 0 or -1. */
int rawcli_syscall(rawcli_t *c, int32_t code, const rpc_value_t *args, int n, rpc_value_t *out);

/* kGetGlobalFunc: the handle, or 0. */
uint64_t rawcli_get_global(rawcli_t *c, const char *name);
/* kCallFunc. 0: result in *ret (may be NULL); 1: exception (c->exc); -1: I/O. */
int rawcli_call_to(rawcli_t *c, uint64_t h, const rpc_value_t *args, int n, rpc_value_t *ret,
                   int timeout_ms);
int rawcli_call(rawcli_t *c, uint64_t h, const rpc_value_t *args, int n, rpc_value_t *ret);
/* A global function by name, as rawcli_call; -1 if there is no such function. */
int rawcli_gcall(rawcli_t *c, const char *name, const rpc_value_t *args, int n, rpc_value_t *ret);
/* tvm.rpc.server.ModuleGetFunction: the handle, or 0 (exception in c->exc). */
uint64_t rawcli_mod_func(rawcli_t *c, uint64_t mod, const char *name, int query_imports);
/* kFreeHandle: classic sends the handle's type code too, ffi only the handle. */
int rawcli_free_handle(rawcli_t *c, uint64_t h, int type_code);

/* kDevAllocDataWithScope for the shape, dtype and device in *t; sets t->data. */
int rawcli_alloc(rawcli_t *c, rpc_tensor_t *t);
/* The header of a kCopyToRemote of nbytes into t; the data is to follow. */
int rawcli_copy_to_begin(rawcli_t *c, const rpc_tensor_t *t, uint64_t nbytes);
/* A whole kCopyToRemote, acknowledged. */
int rawcli_copy_to(rawcli_t *c, const rpc_tensor_t *t, const void *data, size_t nbytes);
/* kCopyFromRemote of exactly nbytes into out. */
int rawcli_copy_from(rawcli_t *c, const rpc_tensor_t *t, void *out, size_t nbytes);

/* ---- values ---- */

static inline rpc_value_t rv_none(void)
{
    rpc_value_t v = {.kind = RV_NONE};
    return v;
}

static inline rpc_value_t rv_int(int64_t i)
{
    rpc_value_t v = {.kind = RV_INT};
    v.u.i = i;
    return v;
}

static inline rpc_value_t rv_bool(int b)
{
    rpc_value_t v = {.kind = RV_BOOL};
    v.u.i = b;
    return v;
}

static inline rpc_value_t rv_float(double f)
{
    rpc_value_t v = {.kind = RV_FLOAT};
    v.u.f = f;
    return v;
}

static inline rpc_value_t rv_bytes(const void *p, size_t n)
{
    rpc_value_t v = {.kind = RV_BYTES};
    v.u.s.p = p;
    v.u.s.len = n;
    return v;
}

static inline rpc_value_t rv_str(const char *s)
{
    rpc_value_t v = rv_bytes(s, strlen(s));
    v.kind = RV_STR;
    return v;
}

static inline rpc_value_t rv_handle(rpc_kind_t kind, uint64_t h)
{
    rpc_value_t v = {.kind = kind};
    v.u.h = h;
    return v;
}

static inline rpc_value_t rv_tensor(rpc_tensor_t *t)
{
    rpc_value_t v = {.kind = RV_TENSOR};
    v.t = t;
    return v;
}

#endif
