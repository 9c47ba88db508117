/* tvmrpc client: talk to a TVM RPC server (ours, TVM's Python or C++ one)
 * from C, directly, through a proxy, or through a tracker.
 *
 * Conventions:
 *  - Every function returns 0 (or a documented non-negative value) on
 *    success and a negative TVMRPC_ERR_* code on failure; nothing aborts.
 *    tvmrpc_last_error(s) then describes the failure; for TVMRPC_ERR_REMOTE
 *    and TVMRPC_ERR_TIMEOUT it is the server's exception text, verbatim.
 *  - TVMRPC_ERR_IO, _PROTOCOL and _TIMEOUT leave the connection unusable:
 *    every later call on the session fails with TVMRPC_ERR_IO. The other
 *    codes leave the session working.
 *  - Strings and bytes in a returned value, and a returned array, belong to
 *    the session and stay valid until the next call on that session; copy
 *    what you keep. Returned strings/bytes are followed by a NUL byte.
 *  - A session is not thread-safe: one request at a time, like TVM's.
 *
 * Wire contract: PROTOCOL.md §2 (handshake), §4 (session), §1.9 (tracker). */
#ifndef TVMRPC_CLIENT_H
#define TVMRPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors --------------------------------------------------------------- */

enum tvmrpc_error {
    TVMRPC_OK = 0,
    TVMRPC_ERR_ARG = -1,       /* the call was refused locally; nothing was sent */
    TVMRPC_ERR_IO = -2,        /* connect/read/write failed or timed out; session dead */
    TVMRPC_ERR_PROTOCOL = -3,  /* the peer sent something undecodable; session dead */
    TVMRPC_ERR_REMOTE = -4,    /* the server answered with an exception; session fine */
    TVMRPC_ERR_TIMEOUT = -5,   /* RPCSessionTimeoutError: the server ended the session */
    TVMRPC_ERR_NOT_FOUND = -6, /* no such global function on the server */
    TVMRPC_ERR_NOMEM = -7,     /* out of memory locally */
};

/* Short name of an error code ("remote error", ...). */
const char *tvmrpc_strerror(int code);

/* ---- values ---------------------------------------------------------------- */

#define TVMRPC_MAX_NDIM 32

typedef struct tvmrpc_device {
    int32_t type; /* DLPack device type: 1 cpu, 2 cuda, ... (1..127) */
    int32_t id;
} tvmrpc_device_t;

typedef struct tvmrpc_dtype {
    uint8_t code; /* 0 int, 1 uint, 2 float, ... */
    uint8_t bits;
    uint16_t lanes;
} tvmrpc_dtype_t;

/* A remote array: compact row-major, data lives on the server. */
typedef struct tvmrpc_array {
    uint64_t data; /* remote data pointer */
    tvmrpc_device_t dev;
    int32_t ndim;
    tvmrpc_dtype_t dtype;
    int64_t shape[TVMRPC_MAX_NDIM];
    uint64_t byte_offset;
    /* Remote array object for arrays a function returned (freed with
     * kFreeHandle); 0 for arrays from tvmrpc_array_alloc (kDevFreeData). */
    uint64_t handle;
} tvmrpc_array_t;

typedef enum tvmrpc_kind {
    TVMRPC_NONE = 0,
    TVMRPC_INT,
    TVMRPC_BOOL,
    TVMRPC_FLOAT,
    TVMRPC_STR,
    TVMRPC_BYTES,
    TVMRPC_HANDLE, /* opaque pointer: data pointers, streams */
    TVMRPC_DEVICE,
    TVMRPC_DTYPE,
    TVMRPC_TENSOR, /* argument: DLTensor by value; result: a remote array */
    TVMRPC_FUNC,   /* remote function handle */
    TVMRPC_MODULE, /* remote module handle */
    TVMRPC_OBJECT, /* remote object reference */
} tvmrpc_kind_t;

typedef struct tvmrpc_value {
    tvmrpc_kind_t kind;
    union {
        int64_t i; /* INT, BOOL */
        double f;
        uint64_t h; /* HANDLE, FUNC, MODULE, OBJECT */
        tvmrpc_device_t dev;
        tvmrpc_dtype_t dtype;
        struct {
            const char *p;
            size_t len;
        } s;                 /* STR, BYTES */
        tvmrpc_array_t *arr; /* TENSOR */
    } u;
} tvmrpc_value_t;

static inline tvmrpc_value_t tvmrpc_v_none(void)
{
    tvmrpc_value_t v = {TVMRPC_NONE, {0}};
    return v;
}
static inline tvmrpc_value_t tvmrpc_v_int(int64_t i)
{
    tvmrpc_value_t v = {TVMRPC_INT, {0}};
    v.u.i = i;
    return v;
}
static inline tvmrpc_value_t tvmrpc_v_bool(int b)
{
    tvmrpc_value_t v = {TVMRPC_BOOL, {0}};
    v.u.i = b != 0;
    return v;
}
static inline tvmrpc_value_t tvmrpc_v_float(double f)
{
    tvmrpc_value_t v = {TVMRPC_FLOAT, {0}};
    v.u.f = f;
    return v;
}
/* NUL-terminated text; use tvmrpc_v_bytes for binary data. */
static inline tvmrpc_value_t tvmrpc_v_str(const char *s)
{
    tvmrpc_value_t v = {TVMRPC_STR, {0}};
    size_t n = 0;
    while (s[n])
        n++;
    v.u.s.p = s;
    v.u.s.len = n;
    return v;
}
static inline tvmrpc_value_t tvmrpc_v_bytes(const void *p, size_t len)
{
    tvmrpc_value_t v = {TVMRPC_BYTES, {0}};
    v.u.s.p = (const char *)p;
    v.u.s.len = len;
    return v;
}
static inline tvmrpc_value_t tvmrpc_v_handle(tvmrpc_kind_t kind, uint64_t h)
{
    tvmrpc_value_t v = {kind, {0}};
    v.u.h = h;
    return v;
}
static inline tvmrpc_value_t tvmrpc_v_device(int32_t type, int32_t id)
{
    tvmrpc_value_t v = {TVMRPC_DEVICE, {0}};
    v.u.dev.type = type;
    v.u.dev.id = id;
    return v;
}
static inline tvmrpc_value_t tvmrpc_v_dtype(uint8_t code, uint8_t bits, uint16_t lanes)
{
    tvmrpc_value_t v = {TVMRPC_DTYPE, {0}};
    v.u.dtype.code = code;
    v.u.dtype.bits = bits;
    v.u.dtype.lanes = lanes;
    return v;
}
static inline tvmrpc_value_t tvmrpc_v_tensor(const tvmrpc_array_t *a)
{
    tvmrpc_value_t v = {TVMRPC_TENSOR, {0}};
    v.u.arr = (tvmrpc_array_t *)a;
    return v;
}

/* ---- sessions -------------------------------------------------------------- */

typedef struct tvmrpc_sess tvmrpc_sess_t;

/* Session generations (PROTOCOL.md §0.3). */
enum tvmrpc_generation {
    TVMRPC_GEN_UNKNOWN = 0, /* server gave the neutral kInitServer reply: spoken as classic */
    TVMRPC_GEN_CLASSIC = 1, /* TVM <= 0.20 */
    TVMRPC_GEN_FFI = 2,     /* TVM >= 0.21 */
};

typedef struct tvmrpc_opts {
    double session_timeout; /* seconds; > 0 asks the server to end the session then */
    int timeout_ms;         /* bound on connect, handshake and every later I/O; -1 = none */
    int generation;         /* TVMRPC_GEN_UNKNOWN = learn it from the server, else force */
} tvmrpc_opts_t;

/* Defaults: no session timeout, blocking I/O (as TVM's client), auto generation. */
void tvmrpc_opts_init(tvmrpc_opts_t *o);

/* Connect to a server or a proxy. key is the device key ("" for a server
 * started without one); "client:" is prepended and " -timeout=N" appended
 * when session_timeout > 0. Returns NULL with a message in err on failure
 * (TVM's texts: "... cannot find server that matches key=...", ...). */
tvmrpc_sess_t *tvmrpc_connect(const char *host, int port, const char *key, double session_timeout,
                              char *err, size_t errlen);
tvmrpc_sess_t *tvmrpc_connect_opts(const char *host, int port, const char *key,
                                   const tvmrpc_opts_t *opts, char *err, size_t errlen);

/* Ask a tracker for a server of this key and connect to it (PROTOCOL.md
 * §1.9): up to max_retry REQUESTs, each waiting for the grant without a
 * time limit. Fails with "Cannot request KEY after N retry, last_error:...". */
tvmrpc_sess_t *tvmrpc_request(const char *tracker_host, int tracker_port, const char *key,
                              int priority, double session_timeout, int max_retry, char *err,
                              size_t errlen);
/* As tvmrpc_request; opts->timeout_ms also bounds the wait for the grant. */
tvmrpc_sess_t *tvmrpc_request_opts(const char *tracker_host, int tracker_port, const char *key,
                                   int priority, int max_retry, const tvmrpc_opts_t *opts,
                                   char *err, size_t errlen);

/* Free the cached function handles, send kShutdown, close, free. NULL ok. */
void tvmrpc_close(tvmrpc_sess_t *s);

const char *tvmrpc_last_error(const tvmrpc_sess_t *s);
/* Bound every later read/write (ms, -1 = none). */
int tvmrpc_set_timeout(tvmrpc_sess_t *s, int timeout_ms);
/* TVMRPC_GEN_*: what the server's kInitServer reply said (or what was forced). */
int tvmrpc_generation(const tvmrpc_sess_t *s);
/* The key the server answered the handshake with, e.g. "server:rasp4". */
const char *tvmrpc_server_key(const tvmrpc_sess_t *s);

/* ---- functions ------------------------------------------------------------- */

/* Look up a global function; *func receives a handle to free with
 * tvmrpc_free_handle(s, h, TVMRPC_FUNC). TVMRPC_ERR_NOT_FOUND if absent. */
int tvmrpc_get_func(tvmrpc_sess_t *s, const char *name, uint64_t *func);
/* Call a remote function. ret may be NULL. */
int tvmrpc_call(tvmrpc_sess_t *s, uint64_t func, const tvmrpc_value_t *args, int nargs,
                tvmrpc_value_t *ret);
/* Drop one reference to a handle the server gave out; kind is TVMRPC_FUNC,
 * TVMRPC_MODULE, TVMRPC_OBJECT or TVMRPC_TENSOR (returned arrays). */
int tvmrpc_free_handle(tvmrpc_sess_t *s, uint64_t handle, tvmrpc_kind_t kind);

/* ---- workspace files (tvm.rpc.server.*) -------------------------------------- */

int tvmrpc_upload(tvmrpc_sess_t *s, const void *data, size_t len, const char *remote_name);
/* remote_name NULL = the local file's base name. */
int tvmrpc_upload_file(tvmrpc_sess_t *s, const char *local_path, const char *remote_name);
/* *data is malloc'ed (caller frees), with a NUL byte after *len bytes. */
int tvmrpc_download(tvmrpc_sess_t *s, const char *remote_name, void **data, size_t *len);
int tvmrpc_download_file(tvmrpc_sess_t *s, const char *remote_name, const char *local_path);
int tvmrpc_remove(tvmrpc_sess_t *s, const char *remote_name);
/* Comma-terminated full paths, as the server answers; malloc'ed, caller frees. */
int tvmrpc_listdir(tvmrpc_sess_t *s, const char *remote_dir, char **list);

/* ---- devices and arrays ------------------------------------------------------ */

/* Device syscalls (PROTOCOL.md §4.5.9), for what the helpers below do not cover. */
enum tvmrpc_syscall {
    TVMRPC_SYS_SET_DEVICE = 11,
    TVMRPC_SYS_GET_ATTR = 12,
    TVMRPC_SYS_ALLOC_DATA = 13,
    TVMRPC_SYS_FREE_DATA = 14,
    TVMRPC_SYS_STREAM_SYNC = 15,
    TVMRPC_SYS_COPY_AMONG_REMOTE = 16,
    TVMRPC_SYS_ALLOC_DATA_WITH_SCOPE = 17,
    TVMRPC_SYS_CREATE_STREAM = 18,
    TVMRPC_SYS_FREE_STREAM = 19,
    TVMRPC_SYS_SET_STREAM = 20,
    TVMRPC_SYS_GET_CURRENT_STREAM = 21,
};
/* Send one syscall; ret (may be NULL) gets its single reply value. */
int tvmrpc_syscall(tvmrpc_sess_t *s, int code, const tvmrpc_value_t *args, int nargs,
                   tvmrpc_value_t *ret);

/* 1 if the server has the device, 0 if not (kDevGetAttr kind 0). */
int tvmrpc_device_exists(tvmrpc_sess_t *s, int dev_type, int dev_id);
/* Any other attribute (PROTOCOL.md §5.2), e.g. 14 = total memory. */
int tvmrpc_device_attr(tvmrpc_sess_t *s, tvmrpc_device_t dev, int kind, tvmrpc_value_t *ret);
int tvmrpc_stream_sync(tvmrpc_sess_t *s, tvmrpc_device_t dev, uint64_t stream);

/* Bytes of a compact array, or -1 if the shape is invalid. */
int64_t tvmrpc_array_nbytes(const tvmrpc_array_t *a);
/* Allocate (kDevAllocDataWithScope). mem_scope NULL = default memory. */
int tvmrpc_array_alloc(tvmrpc_sess_t *s, tvmrpc_device_t dev, int ndim, const int64_t *shape,
                       tvmrpc_dtype_t dtype, const char *mem_scope, tvmrpc_array_t *out);
/* Whole-array copies; nbytes must equal tvmrpc_array_nbytes(a). Chunked
 * when the server limits packet sizes (PROTOCOL.md §4.10); the data is
 * sent from and received into the caller's buffer without staging. */
int tvmrpc_array_copy_from_host(tvmrpc_sess_t *s, const tvmrpc_array_t *a, const void *data,
                                size_t nbytes);
int tvmrpc_array_copy_to_host(tvmrpc_sess_t *s, const tvmrpc_array_t *a, void *data, size_t nbytes);
/* Copy between two remote arrays of the same byte size (kCopyAmongRemote). */
int tvmrpc_array_copy(tvmrpc_sess_t *s, const tvmrpc_array_t *from, const tvmrpc_array_t *to);
/* Release an array (kDevFreeData, or kFreeHandle for returned arrays) and zero it. */
int tvmrpc_array_free(tvmrpc_sess_t *s, tvmrpc_array_t *a);

/* ---- workspace transfers with progress (tvmrpc put / get) -------------------
 * The same packets as tvmrpc_upload / tvmrpc_download; only the socket I/O
 * is cut into 1 MiB slices so a caller can show the bytes moving. done and
 * total count the bytes of the packet on the wire: the file plus a few dozen
 * bytes of framing. cb may be NULL. */

typedef void (*tvmrpc_progress_fn)(void *user, uint64_t done, uint64_t total);

int tvmrpc_upload_progress(tvmrpc_sess_t *s, const void *data, size_t len, const char *remote_name,
                           tvmrpc_progress_fn cb, void *user);
/* *data belongs to the session (no copy, unlike tvmrpc_download): valid,
 * and followed by a NUL byte, until the next call on s. */
int tvmrpc_download_progress(tvmrpc_sess_t *s, const char *remote_name, const void **data,
                             size_t *len, tvmrpc_progress_fn cb, void *user);

#ifdef __cplusplus
}
#endif

#endif
