/* session: serve one RPC session on a connected socket, after the handshake
 * (PROTOCOL.md §4). Runs in the forked worker (or inline with --no-fork),
 * with blocking I/O: it is the only thing that process does. */
#ifndef TVMRPC_SESSION_H
#define TVMRPC_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "rpc/rpc.h"
#include "server/workspace.h"

typedef enum rpc_protocol {
    RPC_PROTOCOL_AUTO = 0, /* detect per session (PROTOCOL.md §4.12) */
    RPC_PROTOCOL_CLASSIC = 1,
    RPC_PROTOCOL_FFI = 2,
} rpc_protocol_t;

typedef struct session_config {
    const char *work_dir;    /* parent of per-session workspaces; NULL = $TMPDIR or /tmp */
    const char *workspace;   /* existing directory to serve in (the caller removes it), or NULL */
    uint64_t max_packet;     /* largest packet accepted, bytes */
    int idle_timeout_ms;     /* wait for the next packet at most this long (-1 = forever) */
    rpc_protocol_t protocol; /* forced generation, or AUTO */
    rpc_protocol_t undecided_default; /* generation used for replies nothing can decide */
    volatile int *generation_out;     /* if set, receives the generation once known */
} session_config_t;

typedef struct session session_t;

/* A global function. Arguments borrow from the request packet; results
 * that point to memory (strings, bytes) must stay valid until the reply is
 * sent: use session_scratch() for them. Return 0, or -1 with a message
 * "<Kind>: <text>" in err, which becomes the kException text. */
typedef int rpc_fn(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret, char *err,
                   size_t errlen);

typedef struct rpc_global {
    const char *name;
    rpc_fn *fn;
} rpc_global_t;

/* What a handle the client holds points to. call is set for functions;
 * destroy (may be NULL) runs when the last reference is freed or the
 * session ends. */
typedef struct sobj_ops {
    const char *type_key;
    int (*call)(session_t *s, void *self, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                char *err, size_t errlen);
    void (*destroy)(void *self);
} sobj_ops_t;

/* Register an object (kind RV_FUNC, RV_MODULE or RV_OBJECT) with one
 * reference; returns its handle for ret->u.h, or 0 on OOM (self destroyed). */
uint64_t session_object_new(session_t *s, rpc_kind_t kind, const sobj_ops_t *ops, void *self);
/* The object behind a handle the client sent, if it is of that kind (and,
 * when ops is non-NULL, of that type); NULL otherwise. */
void *session_object_get(const session_t *s, uint64_t h, rpc_kind_t kind, const sobj_ops_t *ops);
/* One more reference (a handle handed out again). */
int session_object_retain(session_t *s, uint64_t h);
/* References the client holds to h (testing.object_use_count), or -1 if
 * h is no handle of this session. */
int session_object_refs(const session_t *s, uint64_t h);

/* The table of global functions this server answers (globals.c). */
const rpc_global_t *globals_find(const char *name, size_t len);

void session_config_defaults(session_config_t *cfg);
/* Serve until kShutdown / EOF. 0 for a clean end, -1 on a protocol or I/O
 * error (logged). */
int session_serve(int fd, const char *peer, const session_config_t *cfg);

/* For global functions. */
const ws_t *session_workspace(const session_t *s);
buf_t *session_scratch(session_t *s);
/* The generation the client speaks (PROTOCOL.md §4.12): CLASSIC or FFI,
 * AUTO while undecided. Always decided when a function runs: its handle
 * came from a kGetGlobalFunc, whose string argument decides. Global
 * functions use it where the generations' servers answer differently
 * (RUNTIME.md §1.3 listdir). */
rpc_protocol_t session_generation(const session_t *s);
/* Validate that [p, p+n) lies in one allocation this session made. */
int session_check_range(const session_t *s, uint64_t p, uint64_t n);

#endif
