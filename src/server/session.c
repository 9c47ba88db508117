/* One RPC session: read a packet, execute it, write one reply (PROTOCOL.md
 * §4.1). Every length and handle from the client is checked before use: a
 * bad request becomes a kException, a malformed packet ends the session. */
#include "server/session.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/log.h"
#include "base/net.h"
#include "server/hostmem.h"

#define MAX_ARGS 256
#define CPU_DEVICE 1
#define MAX_ALLOC ((uint64_t)1 << 40)
#define SESSION_READAHEAD 65536

/* Everything a client holds a handle to: functions, modules, objects.
 * Handles are the addresses of these records, validated on every use. */
typedef struct sobj {
    rpc_kind_t kind; /* RV_FUNC, RV_MODULE or RV_OBJECT */
    int refs;
    const sobj_ops_t *ops;
    void *self;
    struct sobj *next;
} sobj_t;

typedef struct alloc {
    uint8_t *p;
    uint64_t n;
} alloc_t;

struct session {
    int fd;
    const char *peer;
    const session_config_t *cfg;
    const rpc_codec_t *codec;       /* NULL until the generation is known (§4.12) */
    const rpc_codec_t *reply_codec; /* for replies while still undecided */
    int initialized;
    ws_t ws;
    sobj_t *objs;
    alloc_t *allocs;
    size_t nallocs, cap_allocs;
    buf_t in, out, scratch;
    net_reader_t rd; /* all reads of fd: one recv serves a whole small request */
    rpc_value_t args[MAX_ARGS];
    rpc_tensor_t tensors[MAX_ARGS];
    int nargs;
};

/* ---- helpers for global functions ---------------------------------------- */

const ws_t *session_workspace(const session_t *s)
{
    return &s->ws;
}

buf_t *session_scratch(session_t *s)
{
    return &s->scratch;
}

static alloc_t *alloc_find(const session_t *s, uint64_t p)
{
    for (size_t i = 0; i < s->nallocs; i++)
        if ((uint64_t)(uintptr_t)s->allocs[i].p == p)
            return &s->allocs[i];
    return NULL;
}

int session_check_range(const session_t *s, uint64_t p, uint64_t n)
{
    for (size_t i = 0; i < s->nallocs; i++) {
        uint64_t base = (uint64_t)(uintptr_t)s->allocs[i].p;
        if (p >= base && p - base <= s->allocs[i].n && n <= s->allocs[i].n - (p - base))
            return 0;
    }
    /* Storage of runtime objects (graph executor) handed out as arrays. */
    return hostmem_contains(p, n) ? 0 : -1;
}

/* ---- replies --------------------------------------------------------------- */

static int send_out(session_t *s)
{
    char err[NET_ERR_LEN];
    if (net_write_full(s->fd, buf_head(&s->out), s->out.len, -1, err) < 0) {
        log_warn("session %s: %s", s->peer, err);
        return -1;
    }
    buf_reset(&s->out);
    return 0;
}

static int reply_exception(session_t *s, const char *msg)
{
    const rpc_codec_t *c =
        s->codec ? s->codec
        : s->reply_codec
            ? s->reply_codec
            : (s->cfg->undecided_default == RPC_PROTOCOL_FFI ? &rpc_codec_ffi : &rpc_codec_classic);
    buf_reset(&s->out);
    size_t at = rpc_packet_begin(&s->out, RPC_EXCEPTION);
    c->encode_exception(&s->out, msg, strlen(msg));
    rpc_packet_end(&s->out, at);
    log_debug("session %s: exception: %s", s->peer, msg);
    return send_out(s);
}

static int reply_void(session_t *s)
{
    buf_reset(&s->out);
    size_t at = rpc_packet_begin(&s->out, RPC_RETURN);
    if (s->codec)
        s->codec->encode_void(&s->out);
    else if (s->reply_codec)
        s->reply_codec->encode_void(&s->out);
    else
        buf_append_i32le(&s->out, 0); /* generation-neutral: zero values (§4.12) */
    rpc_packet_end(&s->out, at);
    return send_out(s);
}

static int reply_value(session_t *s, const rpc_value_t *v)
{
    buf_reset(&s->out);
    size_t at = rpc_packet_begin(&s->out, RPC_RETURN);
    (s->codec ? s->codec : s->reply_codec)->encode_value(&s->out, v);
    rpc_packet_end(&s->out, at);
    return send_out(s);
}

static int reply_handle(session_t *s, uint64_t h)
{
    rpc_value_t v = {.kind = RV_HANDLE};
    v.u.h = h;
    return reply_value(s, &v);
}

/* ---- decoding ------------------------------------------------------------- */

static const rpc_codec_t *codec_of(rpc_protocol_t p)
{
    return p == RPC_PROTOCOL_FFI ? &rpc_codec_ffi : &rpc_codec_classic;
}

static void set_generation(session_t *s, rpc_protocol_t p)
{
    s->codec = codec_of(p);
    if (s->cfg->generation_out)
        *s->cfg->generation_out = (int)p;
    log_debug("session %s: client speaks the %s generation", s->peer, s->codec->name);
}

/* Decode the packed sequence that fills r. While the generation is unknown,
 * parse it both ways (PROTOCOL.md §4.12): the generation whose strict parse
 * alone succeeds is the client's from then on. When both succeed (only a
 * one-argument device syscall can do that) answer in the configured default
 * and keep waiting for a decisive packet. -1: malformed, the session ends. */
static int decode_args(session_t *s, rd_t *r)
{
    char err[160], err2[160];
    if (s->codec) {
        if (s->codec->decode(r, s->args, s->tensors, MAX_ARGS, &s->nargs, err, sizeof(err)) == 0)
            return 0;
        log_warn("session %s: malformed arguments (%s generation): %s", s->peer, s->codec->name,
                 err);
        return -1;
    }
    rd_t rf = *r;
    int nf;
    int ffi_ok =
        rpc_codec_ffi.decode(&rf, s->args, s->tensors, MAX_ARGS, &nf, err2, sizeof(err2)) == 0;
    rd_t rc = *r;
    int classic_ok = rpc_codec_classic.decode(&rc, s->args, s->tensors, MAX_ARGS, &s->nargs, err,
                                              sizeof(err)) == 0;
    if (classic_ok && !ffi_ok) {
        set_generation(s, RPC_PROTOCOL_CLASSIC);
    } else if (ffi_ok && !classic_ok) {
        rf = *r;
        rpc_codec_ffi.decode(&rf, s->args, s->tensors, MAX_ARGS, &s->nargs, err, sizeof(err));
        set_generation(s, RPC_PROTOCOL_FFI);
    } else if (ffi_ok && classic_ok) {
        s->reply_codec = codec_of(s->cfg->undecided_default);
        return 0; /* both parses agree on the values (same bytes, same meaning) */
    } else {
        log_warn("session %s: malformed arguments (classic: %s; ffi: %s)", s->peer, err, err2);
        return -1;
    }
    r->left = 0;
    return 0;
}

rpc_protocol_t session_generation(const session_t *s)
{
    if (!s->codec)
        return RPC_PROTOCOL_AUTO;
    return s->codec == &rpc_codec_ffi ? RPC_PROTOCOL_FFI : RPC_PROTOCOL_CLASSIC;
}

static int arg_is(const session_t *s, int i, rpc_kind_t kind)
{
    return i < s->nargs && s->args[i].kind == kind;
}

/* ---- objects (functions, modules) ----------------------------------------- */

static sobj_t *obj_find(const session_t *s, uint64_t h)
{
    for (sobj_t *o = s->objs; o; o = o->next)
        if ((uint64_t)(uintptr_t)o == h)
            return o;
    return NULL;
}

uint64_t session_object_new(session_t *s, rpc_kind_t kind, const sobj_ops_t *ops, void *self)
{
    sobj_t *o = calloc(1, sizeof(*o));
    if (!o) {
        if (ops->destroy)
            ops->destroy(self);
        return 0;
    }
    o->kind = kind;
    o->refs = 1;
    o->ops = ops;
    o->self = self;
    o->next = s->objs;
    s->objs = o;
    return (uint64_t)(uintptr_t)o;
}

void *session_object_get(const session_t *s, uint64_t h, rpc_kind_t kind, const sobj_ops_t *ops)
{
    sobj_t *o = obj_find(s, h);
    return o && o->kind == kind && (!ops || o->ops == ops) ? o->self : NULL;
}

int session_object_retain(session_t *s, uint64_t h)
{
    sobj_t *o = obj_find(s, h);
    if (!o)
        return -1;
    o->refs++;
    return 0;
}

int session_object_refs(const session_t *s, uint64_t h)
{
    const sobj_t *o = obj_find(s, h);
    return o ? o->refs : -1;
}

static void obj_destroy(sobj_t *o)
{
    if (o->ops->destroy)
        o->ops->destroy(o->self);
    free(o);
}

static void obj_release(session_t *s, sobj_t *o)
{
    if (--o->refs > 0)
        return;
    for (sobj_t **pp = &s->objs; *pp; pp = &(*pp)->next) {
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    }
    obj_destroy(o);
}

/* Global functions are function objects whose self is the table entry. */
static int global_call(session_t *s, void *self, const rpc_value_t *args, int nargs,
                       rpc_value_t *ret, char *err, size_t errlen)
{
    const rpc_global_t *g = self;
    return g->fn(s, args, nargs, ret, err, errlen);
}

static const sobj_ops_t global_ops = {.type_key = "runtime.PackedFunc", .call = global_call};

/* ---- request handlers ----------------------------------------------------- */

static int on_init(session_t *s, rd_t *r)
{
    uint64_t vlen;
    const uint8_t *ver;
    if (rd_u64(r, &vlen) < 0 || vlen > 64 || rd_bytes(r, (size_t)vlen, &ver) < 0) {
        log_warn("session %s: malformed kInitServer", s->peer);
        return -1;
    }
    if (s->initialized)
        return reply_exception(s, "RPCError: Server has already been initialized");
    if (vlen != strlen(RPC_PROTOCOL_VERSION) || memcmp(ver, RPC_PROTOCOL_VERSION, vlen) != 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "RPCError: Version mismatch: client %.*s, server %s", (int)vlen,
                 (const char *)ver, RPC_PROTOCOL_VERSION);
        return reply_exception(s, msg);
    }
    /* No constructor: the neutral reply, generation still unknown. */
    if (r->left == 4 && le32(r->p) == 0) {
        s->initialized = 1;
        return reply_void(s);
    }
    if (decode_args(s, r) < 0)
        return -1;
    if (s->nargs == 1 && arg_is(s, 0, RV_STR) && s->args[0].u.s.len == 16 &&
        memcmp(s->args[0].u.s.p, "rpc.LocalSession", 16) == 0) {
        s->initialized = 1;
        return reply_void(s);
    }
    char msg[256];
    if (s->nargs >= 1 && arg_is(s, 0, RV_STR))
        snprintf(msg, sizeof(msg),
                 "RPCError: session constructor %.*s is not supported by this server "
                 "(only rpc.LocalSession)",
                 (int)(s->args[0].u.s.len > 64 ? 64 : s->args[0].u.s.len), s->args[0].u.s.p);
    else
        snprintf(msg, sizeof(msg), "RPCError: the session constructor name must be a string");
    return reply_exception(s, msg);
}

static int on_get_global(session_t *s, rd_t *r)
{
    if (decode_args(s, r) < 0)
        return -1;
    if (s->nargs != 1 || !arg_is(s, 0, RV_STR))
        return reply_exception(s, "TypeError: GetGlobalFunc expects one string");
    const rpc_global_t *g = globals_find(s->args[0].u.s.p, (size_t)s->args[0].u.s.len);
    /* Absent functions are handle 0, not an error (clients probe with it). */
    uint64_t h = g ? session_object_new(s, RV_FUNC, &global_ops, (void *)g) : 0;
    if (g && !h)
        return reply_exception(s, "MemoryError: out of memory");
    return reply_handle(s, h);
}

static int on_call(session_t *s, rd_t *r)
{
    uint64_t h;
    if (rd_u64(r, &h) < 0 || decode_args(s, r) < 0) {
        log_warn("session %s: malformed kCallFunc", s->peer);
        return -1;
    }
    sobj_t *o = obj_find(s, h);
    if (!o || o->kind != RV_FUNC || !o->ops->call)
        return reply_exception(s, "ValueError: unknown function handle");
    rpc_value_t ret = {.kind = RV_NONE};
    char err[1024] = "";
    buf_reset(&s->scratch);
    if (o->ops->call(s, o->self, s->args, s->nargs, &ret, err, sizeof(err)) < 0)
        return reply_exception(s, err[0] ? err : "RPCError: function failed");
    buf_reset(&s->out);
    size_t at = rpc_packet_begin(&s->out, RPC_RETURN);
    (s->codec ? s->codec : s->reply_codec)->encode_call_result(&s->out, &ret);
    rpc_packet_end(&s->out, at);
    return send_out(s);
}

static int on_free_handle(session_t *s, rd_t *r)
{
    if (decode_args(s, r) < 0)
        return -1;
    if (s->nargs < 1 || !arg_is(s, 0, RV_HANDLE))
        return reply_exception(s, "TypeError: FreeHandle expects a handle");
    sobj_t *o = obj_find(s, s->args[0].u.h);
    if (!o)
        return reply_exception(s, "ValueError: unknown handle");
    obj_release(s, o);
    return reply_void(s);
}

static const char *device_name(int type)
{
    static const char *const names[] = {"",       "cpu",       "cuda",    "cuda_host",    "opencl",
                                        "aocl",   "sdaccel",   "vulkan",  "metal",        "vpi",
                                        "rocm",   "rocm_host", "ext_dev", "cuda_managed", "oneapi",
                                        "webgpu", "hexagon"};
    return type >= 0 && type < (int)(sizeof(names) / sizeof(names[0])) ? names[type] : "unknown";
}

static int device_not_enabled(session_t *s, rpc_device_t dev)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "RPCError: Device API %s is not enabled.", device_name(dev.type));
    return reply_exception(s, msg);
}

static int on_get_attr(session_t *s)
{
    if (s->nargs != 2 || !arg_is(s, 0, RV_DEVICE) || !arg_is(s, 1, RV_INT))
        return reply_exception(s, "TypeError: DevGetAttr expects (device, kind)");
    rpc_device_t dev = s->args[0].u.dev;
    int64_t kind = s->args[1].u.i;
    rpc_value_t v = {.kind = RV_NONE};
    if (dev.type != CPU_DEVICE) {
        if (kind != 0)
            return device_not_enabled(s, dev);
        v.kind = RV_INT;
        v.u.i = 0;
    } else if (kind == 0) {
        v.kind = RV_INT;
        v.u.i = 1;
    } else if (kind == 14) {
        struct sysinfo si;
        v.kind = RV_INT;
        v.u.i = sysinfo(&si) == 0 ? (int64_t)si.totalram * si.mem_unit : -1;
    }
    return reply_value(s, &v);
}

static int alloc_add(session_t *s, uint64_t nbytes, uint64_t align, uint64_t *out)
{
    if (nbytes > MAX_ALLOC)
        return -1;
    if (align < 64)
        align = 64;
    if (align & (align - 1) || align > 4096)
        return -1;
    if (s->nallocs == s->cap_allocs) {
        size_t ncap = s->cap_allocs ? s->cap_allocs * 2 : 16;
        alloc_t *na = realloc(s->allocs, ncap * sizeof(*na));
        if (!na)
            return -1;
        s->allocs = na;
        s->cap_allocs = ncap;
    }
    void *p;
    if (posix_memalign(&p, (size_t)align, nbytes ? (size_t)nbytes : 1) != 0)
        return -1;
    s->allocs[s->nallocs].p = p;
    s->allocs[s->nallocs].n = nbytes;
    s->nallocs++;
    *out = (uint64_t)(uintptr_t)p;
    return 0;
}

static int on_alloc(session_t *s, int code)
{
    uint64_t nbytes, align, p;
    rpc_device_t dev;
    if (code == RPC_DEV_ALLOC_DATA) {
        if (s->nargs != 4 || !arg_is(s, 0, RV_DEVICE) || !arg_is(s, 1, RV_INT) ||
            !arg_is(s, 2, RV_INT) || s->args[1].u.i < 0 || s->args[2].u.i < 0)
            return reply_exception(
                s, "TypeError: DevAllocData expects (device, nbytes, alignment, type_hint)");
        dev = s->args[0].u.dev;
        nbytes = (uint64_t)s->args[1].u.i;
        align = (uint64_t)s->args[2].u.i;
    } else {
        if (s->nargs != 2 || !arg_is(s, 0, RV_TENSOR))
            return reply_exception(s, "TypeError: DevAllocDataWithScope expects (tensor, scope)");
        const rpc_value_t *scope = &s->args[1];
        if (!(scope->kind == RV_NONE ||
              (scope->kind == RV_STR &&
               (scope->u.s.len == 0 ||
                (scope->u.s.len == 6 && !memcmp(scope->u.s.p, "global", 6))))))
            return reply_exception(s, "ValueError: CPU memory has no scope other than global");
        const rpc_tensor_t *t = s->args[0].t;
        int64_t n = rpc_tensor_nbytes(t);
        if (n < 0)
            return reply_exception(s, "ValueError: tensor size overflows");
        dev = t->dev;
        nbytes = (uint64_t)n;
        align = (uint64_t)t->dtype.bits / 8 * t->dtype.lanes;
    }
    if (dev.type != CPU_DEVICE)
        return device_not_enabled(s, dev);
    if (alloc_add(s, nbytes, align, &p) < 0)
        return reply_exception(s, "MemoryError: cannot allocate the requested memory");
    return reply_handle(s, p);
}

static int on_free_data(session_t *s)
{
    if (s->nargs != 2 || !arg_is(s, 0, RV_DEVICE) || !arg_is(s, 1, RV_HANDLE))
        return reply_exception(s, "TypeError: DevFreeData expects (device, pointer)");
    alloc_t *a = alloc_find(s, s->args[1].u.h);
    if (!a)
        return reply_exception(s, "ValueError: pointer was not allocated by this session");
    free(a->p);
    *a = s->allocs[--s->nallocs];
    return reply_void(s);
}

static int tensor_range(const session_t *s, const rpc_tensor_t *t, uint64_t nbytes)
{
    return t->dev.type == CPU_DEVICE && t->byte_offset <= UINT64_MAX - t->data &&
                   session_check_range(s, t->data + t->byte_offset, nbytes) == 0
               ? 0
               : -1;
}

static int on_copy_among(session_t *s)
{
    if (s->nargs != 3 || !arg_is(s, 0, RV_TENSOR) || !arg_is(s, 1, RV_TENSOR))
        return reply_exception(s, "TypeError: CopyAmongRemote expects (from, to, stream)");
    const rpc_tensor_t *from = s->args[0].t, *to = s->args[1].t;
    int64_t n = rpc_tensor_nbytes(from);
    if (n < 0 || n != rpc_tensor_nbytes(to))
        return reply_exception(s, "ValueError: CopyAmongRemote needs tensors of equal size");
    if (tensor_range(s, from, (uint64_t)n) < 0 || tensor_range(s, to, (uint64_t)n) < 0)
        return reply_exception(s, "ValueError: copy outside memory this session allocated");
    memmove((void *)(uintptr_t)(to->data + to->byte_offset),
            (const void *)(uintptr_t)(from->data + from->byte_offset), (size_t)n);
    return reply_void(s);
}

static int on_syscall(session_t *s, int code, rd_t *r)
{
    if (decode_args(s, r) < 0)
        return -1;
    /* Device-scoped no-ops and stream calls: first argument is the device. */
    if (code != RPC_DEV_ALLOC_DATA_WITH_SCOPE && code != RPC_COPY_AMONG_REMOTE &&
        !arg_is(s, 0, RV_DEVICE))
        return reply_exception(s, "TypeError: expected a device as the first argument");
    switch (code) {
    case RPC_DEV_GET_ATTR:
        return on_get_attr(s);
    case RPC_DEV_ALLOC_DATA:
    case RPC_DEV_ALLOC_DATA_WITH_SCOPE:
        return on_alloc(s, code);
    case RPC_DEV_FREE_DATA:
        return on_free_data(s);
    case RPC_COPY_AMONG_REMOTE:
        return on_copy_among(s);
    default:
        break;
    }
    if (s->args[0].u.dev.type != CPU_DEVICE)
        return device_not_enabled(s, s->args[0].u.dev);
    if (code == RPC_DEV_CREATE_STREAM || code == RPC_DEV_GET_CURRENT_STREAM)
        return reply_handle(s, 0); /* CPU has no streams */
    return reply_void(s);          /* set device, stream sync/free/set */
}

/* kCopyFromRemote: DLTensor, u64 nbytes -> kCopyAck with the raw bytes,
 * written straight from the allocation (no staging copy). */
static int on_copy_from(session_t *s, rd_t *r)
{
    rpc_tensor_t t;
    uint64_t nbytes;
    char err[128];
    if (rpc_get_tensor(r, &t, err, sizeof(err)) < 0 || rd_u64(r, &nbytes) < 0 || r->left) {
        log_warn("session %s: malformed kCopyFromRemote", s->peer);
        return -1;
    }
    if (tensor_range(s, &t, nbytes) < 0)
        return reply_exception(s, "ValueError: copy outside memory this session allocated");
    uint8_t hdr[RPC_PACKET_HEADER];
    put_le64(hdr, 4 + nbytes);
    put_le32(hdr + 8, RPC_COPY_ACK);
    struct iovec iov[2] = {{hdr, sizeof(hdr)},
                           {(void *)(uintptr_t)(t.data + t.byte_offset), (size_t)nbytes}};
    char nerr[NET_ERR_LEN];
    if (net_writev_full(s->fd, iov, 2, -1, nerr) < 0) {
        log_warn("session %s: %s", s->peer, nerr);
        return -1;
    }
    return 0;
}

/* kCopyToRemote streams its data part straight into the destination, so a
 * large upload is never buffered twice. body = bytes after the code. */
static int on_copy_to(session_t *s, uint64_t body)
{
    uint8_t head[24 + 8 * RPC_MAX_NDIM + 16];
    char err[NET_ERR_LEN];
    if (body < 24 + 16 || net_reader_read(&s->rd, head, 24, -1, NULL, err) < 0)
        goto malformed;
    int32_t ndim = (int32_t)le32(head + 16);
    if (ndim < 0 || ndim > RPC_MAX_NDIM || body < 24 + 8 * (uint64_t)ndim + 16 ||
        net_reader_read(&s->rd, head + 24, 8 * (size_t)ndim + 16, -1, NULL, err) < 0)
        goto malformed;
    rd_t r = rd_make(head, 24 + 8 * (size_t)ndim + 16);
    rpc_tensor_t t;
    uint64_t nbytes;
    if (rpc_get_tensor(&r, &t, err, sizeof(err)) < 0 || rd_u64(&r, &nbytes) < 0 ||
        nbytes != body - (24 + 8 * (uint64_t)ndim + 16))
        goto malformed;
    if (tensor_range(s, &t, nbytes) < 0) {
        /* Drain the data so the stream stays in sync, then report. */
        uint8_t sink[65536];
        for (uint64_t left = nbytes; left;) {
            size_t n = left > sizeof(sink) ? sizeof(sink) : (size_t)left;
            if (net_reader_read(&s->rd, sink, n, -1, NULL, err) < 0)
                goto malformed;
            left -= n;
        }
        return reply_exception(s, "ValueError: copy outside memory this session allocated");
    }
    if (net_reader_read(&s->rd, (void *)(uintptr_t)(t.data + t.byte_offset), (size_t)nbytes, -1,
                        NULL, err) < 0)
        goto malformed;
    return reply_void(s);
malformed:
    log_warn("session %s: malformed or truncated kCopyToRemote", s->peer);
    return -1;
}

/* ---- the loop ------------------------------------------------------------- */

static int dispatch(session_t *s, int32_t code, rd_t *r)
{
    s->reply_codec = NULL;
    if (!s->initialized && code != RPC_INIT_SERVER)
        return reply_exception(s, "RPCError: Need to call InitRemoteSession first");
    switch (code) {
    case RPC_INIT_SERVER:
        return on_init(s, r);
    case RPC_CALL_FUNC:
        return on_call(s, r);
    case RPC_GET_GLOBAL_FUNC:
        return on_get_global(s, r);
    case RPC_FREE_HANDLE:
        return on_free_handle(s, r);
    case RPC_COPY_FROM_REMOTE:
        return on_copy_from(s, r);
    default:
        if (code >= RPC_DEV_SET_DEVICE && code <= RPC_DEV_GET_CURRENT_STREAM)
            return on_syscall(s, code, r);
        log_warn("session %s: unexpected packet code %d; closing", s->peer, code);
        return -1;
    }
}

static int serve_loop(session_t *s)
{
    char err[NET_ERR_LEN];
    for (;;) {
        uint8_t hdr[RPC_PACKET_HEADER];
        int eof = 0;
        if (net_reader_read(&s->rd, hdr, 8, s->cfg->idle_timeout_ms, &eof, err) < 0) {
            if (eof)
                return 0; /* EOF at a packet boundary is a shutdown */
            log_warn("session %s: %s", s->peer, err);
            return -1;
        }
        uint64_t len = le64(hdr);
        if (len == 0)
            continue;
        if (len < 4 || len > s->cfg->max_packet) {
            log_warn("session %s: packet of %llu bytes outside [4, %llu] (--max-packet); closing",
                     s->peer, (unsigned long long)len, (unsigned long long)s->cfg->max_packet);
            return -1;
        }
        if (net_reader_read(&s->rd, hdr + 8, 4, -1, NULL, err) < 0) {
            log_warn("session %s: %s", s->peer, err);
            return -1;
        }
        int32_t code = (int32_t)le32(hdr + 8);
        uint64_t body = len - 4;
        if (code == RPC_SHUTDOWN)
            return 0;
        int rc;
        if (code == RPC_COPY_TO_REMOTE && s->initialized) {
            rc = on_copy_to(s, body);
        } else {
            buf_reset(&s->in);
            uint8_t *p = buf_tail(&s->in, (size_t)body);
            if (!p || net_reader_read(&s->rd, p, (size_t)body, -1, NULL, err) < 0) {
                log_warn("session %s: cannot read a %llu-byte packet: %s", s->peer,
                         (unsigned long long)body, p ? err : "out of memory");
                return -1;
            }
            buf_commit(&s->in, (size_t)body);
            rd_t r = rd_make(buf_head(&s->in), s->in.len);
            rc = dispatch(s, code, &r);
        }
        if (rc < 0)
            return -1;
    }
}

void session_config_defaults(session_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_packet = (uint64_t)4 << 30;
    cfg->idle_timeout_ms = -1;
}

int session_serve(int fd, const char *peer, const session_config_t *cfg)
{
    session_t *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    s->fd = fd;
    s->peer = peer;
    s->cfg = cfg;
    buf_init(&s->in, 0);
    buf_init(&s->out, 0);
    buf_init(&s->scratch, 0);
    char err[256];
    int rc = -1;
    if (net_reader_init(&s->rd, fd, SESSION_READAHEAD) < 0) {
        log_error("session %s: out of memory", peer);
        goto out;
    }
    if (cfg->workspace)
        snprintf(s->ws.root, sizeof(s->ws.root), "%s", cfg->workspace);
    else if (ws_create(&s->ws, cfg->work_dir, err, sizeof(err)) < 0) {
        log_error("session %s: %s", peer, err);
        goto out;
    }
    if (cfg->protocol != RPC_PROTOCOL_AUTO)
        set_generation(s, cfg->protocol);
    rc = serve_loop(s);
out:
    ws_destroy(&s->ws);
    while (s->objs) {
        sobj_t *o = s->objs;
        s->objs = o->next;
        obj_destroy(o);
    }
    for (size_t i = 0; i < s->nallocs; i++)
        free(s->allocs[i].p);
    free(s->allocs);
    buf_free(&s->in);
    buf_free(&s->out);
    buf_free(&s->scratch);
    net_reader_free(&s->rd);
    free(s);
    return rc;
}
