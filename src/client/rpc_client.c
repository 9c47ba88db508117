/* The C client library: one blocking connection per session, one request
 * at a time (PROTOCOL.md §4.1). The generation's codec is a per-session
 * pointer, chosen from the server's kInitServer reply (§4.12). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/net.h"
#include "client/rpc_client.h"
#include "client/tracker_client.h"

/* Classic servers send tracebacks with their exceptions: keep room. */
#define ERR_LEN 8192
/* Replies larger than this are refused: a download is capped at 4 GiB by
 * servers, and a hostile peer must not make us allocate without bound. */
#define MAX_REPLY (((uint64_t)4 << 30) + 65536)
#define MAX_ARGS 1024
#define MAX_PACKET_FUNC "tvm.rpc.server.GetCRTMaxPacketSize"
#define CLIENT_READAHEAD 65536

/* Functions the workspace helpers look up once and free at close, as the
 * stock client caches them. */
enum { FN_UPLOAD, FN_DOWNLOAD, FN_REMOVE, FN_LISTDIR, FN_COUNT };
static const char *const fn_names[FN_COUNT] = {
    "tvm.rpc.server.upload",
    "tvm.rpc.server.download",
    "tvm.rpc.server.remove",
    "tvm.rpc.server.listdir",
};

struct tvmrpc_sess {
    int fd;
    int timeout_ms;
    int gen;
    const rpc_codec_t *codec;
    int dead; /* the stream is out of sync or gone: refuse everything */
    char host[256];
    int port;
    char server_key[RPC_MAX_KEY_LEN + 1];
    char err[ERR_LEN];
    char dead_why[ERR_LEN];
    buf_t out, in;
    net_reader_t rd;     /* every read of fd; a whole small reply costs one recv */
    uint64_t max_packet; /* from GetCRTMaxPacketSize, cached once known (§4.10) */
    uint64_t fn[FN_COUNT];
    rpc_tensor_t ret_tensor;
    tvmrpc_array_t ret_arr;
};

const char *tvmrpc_strerror(int code)
{
    switch (code) {
    case TVMRPC_OK:
        return "success";
    case TVMRPC_ERR_ARG:
        return "invalid argument";
    case TVMRPC_ERR_IO:
        return "connection error";
    case TVMRPC_ERR_PROTOCOL:
        return "protocol error";
    case TVMRPC_ERR_REMOTE:
        return "remote error";
    case TVMRPC_ERR_TIMEOUT:
        return "session timed out";
    case TVMRPC_ERR_NOT_FOUND:
        return "function not found";
    case TVMRPC_ERR_NOMEM:
        return "out of memory";
    default:
        return "unknown error";
    }
}

/* ---- errors --------------------------------------------------------------- */

static int fail(tvmrpc_sess_t *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record the failure; the codes that leave the stream unusable kill the session. */
static int fail(tvmrpc_sess_t *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    if ((code == TVMRPC_ERR_IO || code == TVMRPC_ERR_PROTOCOL || code == TVMRPC_ERR_TIMEOUT) &&
        !s->dead) {
        s->dead = 1;
        snprintf(s->dead_why, sizeof(s->dead_why), "%s", s->err);
    }
    return code;
}

/* Put context in front of the error just recorded (code may change). */
static int prefix_error(tvmrpc_sess_t *s, int code, const char *prefix)
{
    char why[ERR_LEN];
    snprintf(why, sizeof(why), "%s", s->err);
    return fail(s, code, "%s%s", prefix, why);
}

static int usable(tvmrpc_sess_t *s)
{
    if (!s->dead)
        return TVMRPC_OK;
    char why[ERR_LEN];
    snprintf(why, sizeof(why), "%s", s->dead_why);
    return fail(s, TVMRPC_ERR_IO, "session is no longer usable: %s", why);
}

/* ---- transport ------------------------------------------------------------ */

static int recv_exact(tvmrpc_sess_t *s, void *p, size_t n)
{
    char nerr[NET_ERR_LEN];
    if (net_reader_read(&s->rd, p, n, s->timeout_ms, NULL, nerr) < 0)
        return fail(s, TVMRPC_ERR_IO, "%s:%d: %s", s->host, s->port, nerr);
    return TVMRPC_OK;
}

/* Read the rest of a packet into s->in, followed by a NUL byte so string
 * results can be used as C strings. */
static int recv_body(tvmrpc_sess_t *s, uint64_t n)
{
    buf_reset(&s->in);
    uint8_t *p = n < SIZE_MAX ? buf_tail(&s->in, (size_t)n + 1) : NULL; /* 32-bit hosts */
    if (!p)
        return fail(s, TVMRPC_ERR_NOMEM, "cannot buffer a %llu-byte reply", (unsigned long long)n);
    int rc = recv_exact(s, p, (size_t)n);
    if (rc < 0)
        return rc;
    p[n] = '\0';
    buf_commit(&s->in, (size_t)n);
    return TVMRPC_OK;
}

/* Header of the next packet: *body is the byte count after the code. */
static int recv_header(tvmrpc_sess_t *s, int32_t *code, uint64_t *body)
{
    uint8_t hdr[RPC_PACKET_HEADER];
    uint64_t len;
    do { /* zero-length packets are legal and skipped (§4.1) */
        int rc = recv_exact(s, hdr, 8);
        if (rc < 0)
            return rc;
        len = le64(hdr);
    } while (len == 0);
    if (len < 4 || len > MAX_REPLY)
        return fail(s, TVMRPC_ERR_PROTOCOL, "reply of %llu bytes is out of range",
                    (unsigned long long)len);
    int rc = recv_exact(s, hdr + 8, 4);
    if (rc < 0)
        return rc;
    *code = (int32_t)le32(hdr + 8);
    *body = len - 4;
    return TVMRPC_OK;
}

/* The body of a kException: its text becomes the error. */
static int remote_error(tvmrpc_sess_t *s, uint64_t body, int unsolicited)
{
    int rc = recv_body(s, body);
    if (rc < 0)
        return rc;
    const char *msg;
    size_t len;
    if (rcl_exception_text(buf_head(&s->in), s->in.len, &msg, &len) < 0)
        return fail(s, TVMRPC_ERR_PROTOCOL, "undecodable exception packet");
    int code = rcl_exception_code(msg, len);
    if (unsolicited && code == TVMRPC_ERR_REMOTE) /* not an answer to anything: stream lost */
        code = TVMRPC_ERR_PROTOCOL;
    return fail(s, code, "%.*s", (int)(len > ERR_LEN - 1 ? ERR_LEN - 1 : len), msg);
}

/* Something arrived while no request was outstanding: in practice the
 * server's session-timeout exception (§2.5), or its close. */
static int check_unsolicited(tvmrpc_sess_t *s)
{
    if (!net_reader_buffered(&s->rd)) {
        struct pollfd pf = {.fd = s->fd, .events = POLLIN};
        if (poll(&pf, 1, 0) <= 0)
            return TVMRPC_OK;
        char b;
        ssize_t r = recv(s->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r == 0)
            return fail(s, TVMRPC_ERR_IO, "%s:%d: connection closed by the server", s->host,
                        s->port);
        if (r < 0)
            return errno == EAGAIN || errno == EINTR
                       ? TVMRPC_OK
                       : fail(s, TVMRPC_ERR_IO, "%s:%d: %s", s->host, s->port, strerror(errno));
    }
    int32_t code;
    uint64_t body;
    int rc = recv_header(s, &code, &body);
    if (rc < 0)
        return rc;
    if (code == RPC_EXCEPTION)
        return remote_error(s, body, 1);
    return fail(s, TVMRPC_ERR_PROTOCOL, "unexpected packet (code %d) from the server", code);
}

static int send_iov(tvmrpc_sess_t *s, struct iovec *iov, int cnt)
{
    int rc = check_unsolicited(s);
    if (rc < 0)
        return rc;
    char nerr[NET_ERR_LEN];
    if (net_writev_full(s->fd, iov, cnt, s->timeout_ms, nerr) == 0)
        return TVMRPC_OK;
    /* The server may have said why before it closed (a timeout exception). */
    rc = check_unsolicited(s);
    if (rc < 0)
        return rc;
    return fail(s, TVMRPC_ERR_IO, "%s:%d: %s", s->host, s->port, nerr);
}

static int send_out(tvmrpc_sess_t *s)
{
    struct iovec iov = {buf_head(&s->out), s->out.len};
    return send_iov(s, &iov, 1);
}

/* Wait for the header of kReturn (its body length in *body); kException
 * becomes the error. */
static int recv_return_header(tvmrpc_sess_t *s, uint64_t *body)
{
    int32_t code;
    int rc = recv_header(s, &code, body);
    if (rc < 0)
        return rc;
    if (code == RPC_EXCEPTION)
        return remote_error(s, *body, 0);
    if (code != RPC_RETURN)
        return fail(s, TVMRPC_ERR_PROTOCOL, "expected a reply, got packet code %d", code);
    return TVMRPC_OK;
}

/* Wait for kReturn (body in s->in). */
static int recv_return(tvmrpc_sess_t *s)
{
    uint64_t body;
    int rc = recv_return_header(s, &body);
    return rc < 0 ? rc : recv_body(s, body);
}

/* Decode the reply sequence. While the generation is unknown the session
 * speaks classic, but accepts either layout in replies. */
static int decode_reply(tvmrpc_sess_t *s, rpc_value_t *v, rpc_tensor_t *t, int max, int *n)
{
    char err[160];
    rd_t r = rd_make(buf_head(&s->in), s->in.len);
    if (s->codec->decode(&r, v, t, max, n, err, sizeof(err)) == 0)
        return TVMRPC_OK;
    if (s->gen == TVMRPC_GEN_UNKNOWN) {
        char err2[160];
        r = rd_make(buf_head(&s->in), s->in.len);
        if (rpc_codec_ffi.decode(&r, v, t, max, n, err2, sizeof(err2)) == 0)
            return TVMRPC_OK;
    }
    return fail(s, TVMRPC_ERR_PROTOCOL, "undecodable reply: %s", err);
}

/* A syscall's reply: one value (a void reply may also be empty, §4.12). */
static int reply_value(tvmrpc_sess_t *s, rpc_value_t *v)
{
    rpc_tensor_t t[1];
    int n;
    int rc = decode_reply(s, v, t, 1, &n);
    if (rc < 0)
        return rc;
    if (n == 0)
        v->kind = RV_NONE;
    if (v->kind == RV_TENSOR || v->kind == RV_NDARRAY)
        return fail(s, TVMRPC_ERR_PROTOCOL, "unexpected array in a syscall reply");
    return TVMRPC_OK;
}

/* ---- requests ------------------------------------------------------------- */

/* Encode args (public values) into s->out after what is already there. */
static int put_args(tvmrpc_sess_t *s, const tvmrpc_value_t *args, int nargs)
{
    if (nargs < 0 || nargs > MAX_ARGS || (nargs && !args))
        return fail(s, TVMRPC_ERR_ARG, "argument count %d outside [0, %d]", nargs, MAX_ARGS);
    int ntensors = 0;
    for (int i = 0; i < nargs; i++)
        ntensors += args[i].kind == TVMRPC_TENSOR;
    rpc_value_t *w = calloc((size_t)nargs + 1, sizeof(*w));
    rpc_tensor_t *t = calloc((size_t)ntensors + 1, sizeof(*t));
    int rc = w && t ? TVMRPC_OK : fail(s, TVMRPC_ERR_NOMEM, "out of memory");
    char err[160];
    for (int i = 0, ti = 0; i < nargs && rc == TVMRPC_OK; i++) {
        rc = rcl_to_wire(&args[i], &w[i], &t[ti], err, sizeof(err));
        if (rc < 0)
            rc = fail(s, rc, "argument %d: %s", i, err);
        ti += args[i].kind == TVMRPC_TENSOR;
    }
    if (rc == TVMRPC_OK && s->codec->encode_args(&s->out, w, nargs) < 0)
        rc = fail(s, TVMRPC_ERR_NOMEM, "cannot encode the arguments");
    free(w);
    free(t);
    return rc;
}

/* One request whose packet is a code plus a packed sequence of wire values. */
static int request_wire(tvmrpc_sess_t *s, int32_t code, const rpc_value_t *w, int n)
{
    buf_reset(&s->out);
    size_t at = rpc_packet_begin(&s->out, code);
    if (s->codec->encode_args(&s->out, w, n) < 0)
        return fail(s, TVMRPC_ERR_NOMEM, "cannot encode the request");
    rpc_packet_end(&s->out, at);
    int rc = send_out(s);
    return rc < 0 ? rc : recv_return(s);
}

static int get_func(tvmrpc_sess_t *s, const char *name, uint64_t *func)
{
    rpc_value_t w = {.kind = RV_STR};
    w.u.s.p = name;
    w.u.s.len = strlen(name);
    int rc = request_wire(s, RPC_GET_GLOBAL_FUNC, &w, 1);
    rpc_value_t v;
    if (rc == 0)
        rc = reply_value(s, &v);
    if (rc < 0)
        return rc;
    if (v.kind != RV_HANDLE && v.kind != RV_FUNC)
        return fail(s, TVMRPC_ERR_PROTOCOL, "GetGlobalFunc answered a non-handle");
    *func = v.u.h;
    if (!*func) /* absent functions are handle 0, not an exception (§4.5.9) */
        return fail(s, TVMRPC_ERR_NOT_FOUND, "the server has no function '%s'", name);
    return TVMRPC_OK;
}

int tvmrpc_get_func(tvmrpc_sess_t *s, const char *name, uint64_t *func)
{
    int rc = usable(s);
    if (rc < 0)
        return rc;
    if (!name || !func)
        return fail(s, TVMRPC_ERR_ARG, "tvmrpc_get_func: name and func are required");
    return get_func(s, name, func);
}

int tvmrpc_call(tvmrpc_sess_t *s, uint64_t func, const tvmrpc_value_t *args, int nargs,
                tvmrpc_value_t *ret)
{
    int rc = usable(s);
    if (rc < 0)
        return rc;
    buf_reset(&s->out);
    size_t at = rpc_packet_begin(&s->out, RPC_CALL_FUNC);
    buf_append_u64le(&s->out, func);
    if ((rc = put_args(s, args, nargs)) < 0)
        return rc;
    rpc_packet_end(&s->out, at);
    if ((rc = send_out(s)) < 0 || (rc = recv_return(s)) < 0)
        return rc;
    char err[160];
    rpc_value_t v;
    rd_t r = rd_make(buf_head(&s->in), s->in.len);
    if (s->codec->decode_call_result(&r, &v, &s->ret_tensor, err, sizeof(err)) < 0) {
        r = rd_make(buf_head(&s->in), s->in.len);
        if (s->gen != TVMRPC_GEN_UNKNOWN ||
            rpc_codec_ffi.decode_call_result(&r, &v, &s->ret_tensor, err, sizeof(err)) < 0)
            return fail(s, TVMRPC_ERR_PROTOCOL, "undecodable call result: %s", err);
    }
    if (ret)
        rcl_from_wire(&v, ret, &s->ret_arr);
    return TVMRPC_OK;
}

int tvmrpc_free_handle(tvmrpc_sess_t *s, uint64_t handle, tvmrpc_kind_t kind)
{
    int rc = usable(s);
    if (rc < 0)
        return rc;
    rpc_value_t w[2];
    int n = rcl_free_args(s->gen, handle, kind, w);
    if (n < 0)
        return fail(s, TVMRPC_ERR_ARG, "kind %d has no remote handle to free", (int)kind);
    rpc_value_t v;
    if ((rc = request_wire(s, RPC_FREE_HANDLE, w, n)) < 0)
        return rc;
    return reply_value(s, &v);
}

int tvmrpc_syscall(tvmrpc_sess_t *s, int code, const tvmrpc_value_t *args, int nargs,
                   tvmrpc_value_t *ret)
{
    int rc = usable(s);
    if (rc < 0)
        return rc;
    if (code < TVMRPC_SYS_SET_DEVICE || code > TVMRPC_SYS_GET_CURRENT_STREAM)
        return fail(s, TVMRPC_ERR_ARG, "%d is not a device syscall code (11..21)", code);
    buf_reset(&s->out);
    size_t at = rpc_packet_begin(&s->out, code);
    if ((rc = put_args(s, args, nargs)) < 0)
        return rc;
    rpc_packet_end(&s->out, at);
    rpc_value_t v;
    if ((rc = send_out(s)) < 0 || (rc = recv_return(s)) < 0 || (rc = reply_value(s, &v)) < 0)
        return rc;
    if (ret)
        rcl_from_wire(&v, ret, &s->ret_arr);
    return TVMRPC_OK;
}

/* ---- sessions ------------------------------------------------------------- */

void tvmrpc_opts_init(tvmrpc_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->timeout_ms = -1;
    o->generation = TVMRPC_GEN_UNKNOWN;
}

static void set_generation(tvmrpc_sess_t *s, int gen)
{
    s->gen = gen;
    s->codec = gen == TVMRPC_GEN_FFI ? &rpc_codec_ffi : &rpc_codec_classic;
}

static tvmrpc_sess_t *sess_new(const char *host, int port, const tvmrpc_opts_t *o)
{
    tvmrpc_sess_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->fd = -1;
    if (net_reader_init(&s->rd, -1, CLIENT_READAHEAD) < 0) {
        free(s);
        return NULL;
    }
    s->timeout_ms = o->timeout_ms;
    snprintf(s->host, sizeof(s->host), "%s", host);
    s->port = port;
    buf_init(&s->out, 0);
    buf_init(&s->in, 0);
    set_generation(s, TVMRPC_GEN_UNKNOWN);
    return s;
}

static void sess_free(tvmrpc_sess_t *s)
{
    if (s->fd >= 0)
        close(s->fd);
    buf_free(&s->out);
    buf_free(&s->in);
    net_reader_free(&s->rd);
    free(s);
}

/* §2.2, with the C++ runtime's error texts for the status word. */
static int handshake(tvmrpc_sess_t *s, const char *ckey)
{
    buf_reset(&s->out);
    buf_append_u32le(&s->out, RPC_MAGIC);
    buf_append_u32le(&s->out, (uint32_t)strlen(ckey));
    buf_append_str(&s->out, ckey);
    int rc = send_out(s);
    uint8_t w[4];
    if (rc < 0 || (rc = recv_exact(s, w, 4)) < 0)
        return prefix_error(s, rc, "handshake failed: ");
    uint32_t status = le32(w);
    if (status == RPC_CODE_MISMATCH)
        return fail(s, TVMRPC_ERR_IO, "URL %s:%d cannot find server that matches key=%s", s->host,
                    s->port, ckey);
    if (status == RPC_CODE_DUPLICATE)
        return fail(s, TVMRPC_ERR_IO, "URL %s:%d server already have key=%s", s->host, s->port,
                    ckey);
    if (status != RPC_CODE_SUCCESS)
        return fail(s, TVMRPC_ERR_PROTOCOL, "URL %s:%d is not TVM RPC server", s->host, s->port);
    if ((rc = recv_exact(s, w, 4)) < 0)
        return rc;
    uint32_t len = le32(w);
    if (len > RPC_MAX_KEY_LEN)
        return fail(s, TVMRPC_ERR_PROTOCOL, "URL %s:%d: server key of %u bytes", s->host, s->port,
                    len);
    if ((rc = recv_exact(s, s->server_key, len)) < 0)
        return rc;
    s->server_key[len] = '\0';
    return TVMRPC_OK;
}

/* kInitServer without constructor (29 bytes, both generations, §4.5.2);
 * the reply tells the server's generation (§4.12 client side). */
static int init_server(tvmrpc_sess_t *s, int forced)
{
    static const char init[] = "\x15\0\0\0\0\0\0\0" /* packet_nbytes 21 */
                               "\x02\0\0\0"         /* kInitServer */
                               "\x05\0\0\0\0\0\0\0" /* version length */
                               "0.8.0"
                               "\0\0\0\0"; /* num_args 0 */
    struct iovec iov = {(void *)init, sizeof(init) - 1};
    int rc = send_iov(s, &iov, 1);
    if (rc < 0 || (rc = recv_return(s)) < 0)
        return prefix_error(s, rc == TVMRPC_ERR_REMOTE ? TVMRPC_ERR_PROTOCOL : rc,
                            "cannot start the session: ");
    int gen = rcl_init_generation(buf_head(&s->in), s->in.len);
    if (gen < 0 && !forced)
        return fail(s, TVMRPC_ERR_PROTOCOL, "unrecognized reply to kInitServer");
    set_generation(s, forced ? forced : gen);
    return TVMRPC_OK;
}

tvmrpc_sess_t *tvmrpc_connect_opts(const char *host, int port, const char *key,
                                   const tvmrpc_opts_t *opts, char *err, size_t errlen)
{
    tvmrpc_opts_t def;
    if (!opts) {
        tvmrpc_opts_init(&def);
        opts = &def;
    }
    char ckey[RPC_MAX_KEY_LEN + 1];
    if (!host || port <= 0 || port > 65535 || opts->generation < TVMRPC_GEN_UNKNOWN ||
        opts->generation > TVMRPC_GEN_FFI ||
        rcl_format_key(ckey, sizeof(ckey), key, opts->session_timeout) < 0) {
        snprintf(err, errlen, "invalid host, port, key, generation or session_timeout");
        return NULL;
    }
    tvmrpc_sess_t *s = sess_new(host, port, opts);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    char nerr[NET_ERR_LEN];
    s->fd = net_connect(host, port, opts->timeout_ms, nerr);
    s->rd.fd = s->fd;
    if (s->fd < 0)
        fail(s, TVMRPC_ERR_IO, "Connect to %s:%d failed: %s", host, port, nerr);
    else if (handshake(s, ckey) == TVMRPC_OK && init_server(s, opts->generation) == TVMRPC_OK)
        return s;
    snprintf(err, errlen, "%s", s->err);
    sess_free(s);
    return NULL;
}

tvmrpc_sess_t *tvmrpc_connect(const char *host, int port, const char *key, double session_timeout,
                              char *err, size_t errlen)
{
    tvmrpc_opts_t o;
    tvmrpc_opts_init(&o);
    o.session_timeout = session_timeout;
    return tvmrpc_connect_opts(host, port, key, &o, err, errlen);
}

void tvmrpc_close(tvmrpc_sess_t *s)
{
    if (!s)
        return;
    /* As the stock client: free cached functions, then kShutdown (§4.11).
     * Failures here change nothing for the caller. */
    for (int i = 0; i < FN_COUNT && !s->dead; i++)
        if (s->fn[i])
            tvmrpc_free_handle(s, s->fn[i], TVMRPC_FUNC);
    if (!s->dead && s->fd >= 0) {
        static const uint8_t shutdown_pkt[12] = {4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};
        net_write_full(s->fd, shutdown_pkt, sizeof(shutdown_pkt), s->timeout_ms, NULL);
    }
    sess_free(s);
}

const char *tvmrpc_last_error(const tvmrpc_sess_t *s)
{
    return s ? s->err : "no session";
}

int tvmrpc_set_timeout(tvmrpc_sess_t *s, int timeout_ms)
{
    if (timeout_ms < -1)
        return fail(s, TVMRPC_ERR_ARG, "timeout %d ms is negative", timeout_ms);
    s->timeout_ms = timeout_ms;
    return TVMRPC_OK;
}

int tvmrpc_generation(const tvmrpc_sess_t *s)
{
    return s->gen;
}

const char *tvmrpc_server_key(const tvmrpc_sess_t *s)
{
    return s->server_key;
}

/* ---- tracker (§1.9) -------------------------------------------------------- */

/* One REQUEST on the tracker connection and the session it grants.
 * 1: session made, 0: RPC connect failed (retry), -1: tracker I/O failed
 * (reconnect), -2: the tracker answered nonsense (give up, as Python). */
static int request_once(int tfd, const char *key, int priority, const tvmrpc_opts_t *o,
                        tvmrpc_sess_t **out, char *last, size_t lastlen)
{
    char *req = rcl_request_text(key, priority);
    json_t *reply = NULL;
    if (!req) {
        snprintf(last, lastlen, "out of memory");
        return -2;
    }
    int rc = tc_call(tfd, req, &reply, o->timeout_ms, last, lastlen);
    free(req);
    if (rc < 0)
        return -1;
    char host[256], matchkey[RPC_MAX_KEY_LEN];
    int port;
    if (rcl_parse_grant(reply, host, sizeof(host), &port, matchkey, sizeof(matchkey)) < 0) {
        char *text = json_dumps(reply);
        snprintf(last, lastlen, "Invalid return value %.200s", text ? text : "?");
        free(text);
        json_free(reply);
        return -2;
    }
    json_free(reply);
    *out = tvmrpc_connect_opts(host, port, matchkey, o, last, lastlen);
    return *out ? 1 : 0;
}

tvmrpc_sess_t *tvmrpc_request_opts(const char *tracker_host, int tracker_port, const char *key,
                                   int priority, int max_retry, const tvmrpc_opts_t *opts,
                                   char *err, size_t errlen)
{
    tvmrpc_opts_t def;
    if (!opts) {
        tvmrpc_opts_init(&def);
        opts = &def;
    }
    if (!tracker_host || !key) {
        snprintf(err, errlen, "tracker host and key are required");
        return NULL;
    }
    char last[ERR_LEN] = "None";
    /* The first connection failing is an error of its own, as in
     * connect_tracker(); later ones count as attempts. */
    int tfd = tc_connect(tracker_host, tracker_port, 0, opts->timeout_ms, err, errlen);
    if (tfd < 0)
        return NULL;
    tvmrpc_sess_t *s = NULL;
    for (int i = 0; i < max_retry && !s; i++) {
        if (tfd < 0 && (tfd = tc_connect(tracker_host, tracker_port, 0, opts->timeout_ms, last,
                                         sizeof(last))) < 0)
            continue;
        int rc = request_once(tfd, key, priority, opts, &s, last, sizeof(last));
        if (rc == -2) {
            close(tfd);
            snprintf(err, errlen, "%s", last);
            return NULL;
        }
        if (rc == -1) {
            close(tfd);
            tfd = -1;
        }
    }
    if (tfd >= 0)
        close(tfd);
    if (!s)
        snprintf(err, errlen, "Cannot request %s after %d retry, last_error:%s", key, max_retry,
                 last);
    return s;
}

tvmrpc_sess_t *tvmrpc_request(const char *tracker_host, int tracker_port, const char *key,
                              int priority, double session_timeout, int max_retry, char *err,
                              size_t errlen)
{
    tvmrpc_opts_t o;
    tvmrpc_opts_init(&o);
    o.session_timeout = session_timeout;
    return tvmrpc_request_opts(tracker_host, tracker_port, key, priority, max_retry, &o, err,
                               errlen);
}

/* ---- workspace files -------------------------------------------------------- */

/* Call one of the cached workspace functions with a name and maybe data. */
static int call_ws(tvmrpc_sess_t *s, int fn, const tvmrpc_value_t *args, int nargs,
                   tvmrpc_value_t *ret)
{
    int rc = usable(s);
    if (rc < 0)
        return rc;
    if (!s->fn[fn] && (rc = get_func(s, fn_names[fn], &s->fn[fn])) < 0)
        return rc;
    return tvmrpc_call(s, s->fn[fn], args, nargs, ret);
}

int tvmrpc_upload(tvmrpc_sess_t *s, const void *data, size_t len, const char *remote_name)
{
    if (!remote_name || (!data && len))
        return fail(s, TVMRPC_ERR_ARG, "tvmrpc_upload: remote_name and data are required");
    tvmrpc_value_t args[2] = {tvmrpc_v_str(remote_name), tvmrpc_v_bytes(data, len)};
    return call_ws(s, FN_UPLOAD, args, 2, NULL);
}

/* Whole file into a malloc'ed buffer. */
static int read_file(tvmrpc_sess_t *s, const char *path, uint8_t **data, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return fail(s, TVMRPC_ERR_ARG, "cannot read %s: %s", path,
                    fd >= 0 && !S_ISREG(st.st_mode) ? "not a regular file" : strerror(e));
    }
    uint8_t *p = malloc(st.st_size ? (size_t)st.st_size : 1);
    size_t got = 0;
    while (p && got < (size_t)st.st_size) {
        ssize_t r = read(fd, p + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!p || got != (size_t)st.st_size) {
        free(p);
        return fail(s, p ? TVMRPC_ERR_ARG : TVMRPC_ERR_NOMEM, "cannot read %s", path);
    }
    *data = p;
    *len = got;
    return TVMRPC_OK;
}

int tvmrpc_upload_file(tvmrpc_sess_t *s, const char *local_path, const char *remote_name)
{
    if (!local_path)
        return fail(s, TVMRPC_ERR_ARG, "tvmrpc_upload_file: local_path is required");
    if (!remote_name) {
        const char *slash = strrchr(local_path, '/');
        remote_name = slash ? slash + 1 : local_path;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = read_file(s, local_path, &data, &len);
    if (rc < 0)
        return rc;
    rc = tvmrpc_upload(s, data, len, remote_name);
    free(data);
    return rc;
}

/* A string/bytes result copied to the heap (NUL-terminated). */
static int dup_result(tvmrpc_sess_t *s, const tvmrpc_value_t *v, void **data, size_t *len)
{
    if (v->kind != TVMRPC_BYTES && v->kind != TVMRPC_STR)
        return fail(s, TVMRPC_ERR_PROTOCOL, "expected bytes from the server, got kind %d",
                    (int)v->kind);
    char *p = malloc(v->u.s.len + 1);
    if (!p)
        return fail(s, TVMRPC_ERR_NOMEM, "out of memory");
    memcpy(p, v->u.s.p, v->u.s.len);
    p[v->u.s.len] = '\0';
    *data = p;
    if (len)
        *len = v->u.s.len;
    return TVMRPC_OK;
}

int tvmrpc_download(tvmrpc_sess_t *s, const char *remote_name, void **data, size_t *len)
{
    if (!remote_name || !data || !len)
        return fail(s, TVMRPC_ERR_ARG, "tvmrpc_download: remote_name, data and len are required");
    tvmrpc_value_t arg = tvmrpc_v_str(remote_name), ret;
    int rc = call_ws(s, FN_DOWNLOAD, &arg, 1, &ret);
    return rc < 0 ? rc : dup_result(s, &ret, data, len);
}

static int write_file(tvmrpc_sess_t *s, const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return fail(s, TVMRPC_ERR_ARG, "cannot write %s: %s", path, strerror(errno));
    size_t w = len ? fwrite(data, 1, len, fp) : 0;
    int bad = fclose(fp) != 0 || w != len;
    return bad ? fail(s, TVMRPC_ERR_ARG, "cannot write %s: %s", path, strerror(errno)) : TVMRPC_OK;
}

int tvmrpc_download_file(tvmrpc_sess_t *s, const char *remote_name, const char *local_path)
{
    if (!local_path)
        return fail(s, TVMRPC_ERR_ARG, "tvmrpc_download_file: local_path is required");
    void *data;
    size_t len;
    int rc = tvmrpc_download(s, remote_name, &data, &len);
    if (rc < 0)
        return rc;
    rc = write_file(s, local_path, data, len);
    free(data);
    return rc;
}

int tvmrpc_remove(tvmrpc_sess_t *s, const char *remote_name)
{
    if (!remote_name)
        return fail(s, TVMRPC_ERR_ARG, "tvmrpc_remove: remote_name is required");
    tvmrpc_value_t arg = tvmrpc_v_str(remote_name);
    return call_ws(s, FN_REMOVE, &arg, 1, NULL);
}

int tvmrpc_listdir(tvmrpc_sess_t *s, const char *remote_dir, char **list)
{
    if (!remote_dir || !list)
        return fail(s, TVMRPC_ERR_ARG, "tvmrpc_listdir: remote_dir and list are required");
    tvmrpc_value_t arg = tvmrpc_v_str(remote_dir), ret;
    int rc = call_ws(s, FN_LISTDIR, &arg, 1, &ret);
    return rc < 0 ? rc : dup_result(s, &ret, (void **)list, NULL);
}

/* ---- devices ---------------------------------------------------------------- */

int tvmrpc_device_attr(tvmrpc_sess_t *s, tvmrpc_device_t dev, int kind, tvmrpc_value_t *ret)
{
    tvmrpc_value_t args[2] = {tvmrpc_v_device(dev.type, dev.id), tvmrpc_v_int(kind)};
    return tvmrpc_syscall(s, TVMRPC_SYS_GET_ATTR, args, 2, ret);
}

int tvmrpc_device_exists(tvmrpc_sess_t *s, int dev_type, int dev_id)
{
    tvmrpc_device_t dev = {dev_type, dev_id};
    tvmrpc_value_t v;
    int rc = tvmrpc_device_attr(s, dev, 0, &v);
    if (rc < 0)
        return rc;
    if (v.kind != TVMRPC_INT && v.kind != TVMRPC_BOOL)
        return fail(s, TVMRPC_ERR_PROTOCOL, "kExist answered a non-integer");
    return v.u.i != 0;
}

int tvmrpc_stream_sync(tvmrpc_sess_t *s, tvmrpc_device_t dev, uint64_t stream)
{
    tvmrpc_value_t args[2] = {tvmrpc_v_device(dev.type, dev.id),
                              tvmrpc_v_handle(TVMRPC_HANDLE, stream)};
    return tvmrpc_syscall(s, TVMRPC_SYS_STREAM_SYNC, args, 2, NULL);
}

/* ---- arrays ----------------------------------------------------------------- */

int64_t tvmrpc_array_nbytes(const tvmrpc_array_t *a)
{
    if (!a || a->ndim < 0 || a->ndim > TVMRPC_MAX_NDIM)
        return -1;
    rpc_tensor_t t;
    rcl_array_to_tensor(a, &t);
    return rpc_tensor_nbytes(&t);
}

int tvmrpc_array_alloc(tvmrpc_sess_t *s, tvmrpc_device_t dev, int ndim, const int64_t *shape,
                       tvmrpc_dtype_t dtype, const char *mem_scope, tvmrpc_array_t *out)
{
    if (!out || ndim < 0 || ndim > TVMRPC_MAX_NDIM || (ndim && !shape))
        return fail(s, TVMRPC_ERR_ARG, "tvmrpc_array_alloc: bad shape or output");
    tvmrpc_array_t a;
    memset(&a, 0, sizeof(a));
    a.dev = dev;
    a.ndim = ndim;
    a.dtype = dtype;
    for (int i = 0; i < ndim; i++)
        a.shape[i] = shape[i];
    /* The template tensor has data 0 and byte_offset 0 (§4.5.9). */
    tvmrpc_value_t args[2] = {tvmrpc_v_tensor(&a),
                              mem_scope ? tvmrpc_v_str(mem_scope) : tvmrpc_v_none()};
    tvmrpc_value_t v;
    int rc = tvmrpc_syscall(s, TVMRPC_SYS_ALLOC_DATA_WITH_SCOPE, args, 2, &v);
    if (rc < 0)
        return rc;
    if (v.kind != TVMRPC_HANDLE || !v.u.h)
        return fail(s, TVMRPC_ERR_PROTOCOL, "allocation answered no pointer");
    a.data = v.u.h;
    *out = a;
    return TVMRPC_OK;
}

/* The server's packet limit, asked before every copy until known (§4.10). */
static int max_packet(tvmrpc_sess_t *s, uint64_t *out)
{
    uint64_t h;
    tvmrpc_value_t v;
    if (s->max_packet) {
        *out = s->max_packet;
        return TVMRPC_OK;
    }
    int rc = get_func(s, MAX_PACKET_FUNC, &h);
    if (rc == TVMRPC_ERR_NOT_FOUND) {
        *out = 0;
        return TVMRPC_OK;
    }
    /* The handle is kept, never freed, as stock clients do (§4.7). */
    if (rc < 0 || (rc = tvmrpc_call(s, h, NULL, 0, &v)) < 0)
        return rc;
    if (v.kind != TVMRPC_INT || v.u.i <= 0)
        return fail(s, TVMRPC_ERR_PROTOCOL, "%s answered no positive integer", MAX_PACKET_FUNC);
    s->max_packet = (uint64_t)v.u.i;
    *out = s->max_packet;
    return TVMRPC_OK;
}

/* Checks shared by both copy directions; fills the wire tensor and the plan. */
static int copy_prepare(tvmrpc_sess_t *s, const tvmrpc_array_t *a, const void *data, size_t nbytes,
                        rpc_tensor_t *t, uint64_t *block, uint64_t *count)
{
    int rc = usable(s);
    if (rc < 0)
        return rc;
    int64_t size = tvmrpc_array_nbytes(a);
    if (size < 0 || (uint64_t)size != nbytes || (!data && nbytes))
        return fail(s, TVMRPC_ERR_ARG, "copy of %zu bytes for an array of %lld bytes", nbytes,
                    (long long)size);
    if (a->dev.type < 1 || a->dev.type > 127)
        return fail(s, TVMRPC_ERR_ARG, "device type outside 1..127");
    uint64_t mp = 0;
    if ((rc = max_packet(s, &mp)) < 0)
        return rc;
    if (rcl_plan_chunks(nbytes, mp, a->ndim, block, count) < 0)
        return fail(s, TVMRPC_ERR_PROTOCOL, "server packet limit %llu is too small for a copy",
                    (unsigned long long)mp);
    rcl_array_to_tensor(a, t);
    return TVMRPC_OK;
}

/* kCopyToRemote: header and caller's data in one writev, no staging copy. */
static int copy_to_chunk(tvmrpc_sess_t *s, rpc_tensor_t *t, uint64_t base, const uint8_t *data,
                         uint64_t off, uint64_t len)
{
    /* Stock clients put the chunk offset in byte_offset (§4.10). */
    t->byte_offset = base + off;
    buf_reset(&s->out);
    if (rcl_copy_header(&s->out, RPC_COPY_TO_REMOTE, t, len) < 0)
        return fail(s, TVMRPC_ERR_NOMEM, "out of memory");
    struct iovec iov[2] = {{buf_head(&s->out), s->out.len}, {(void *)(data + off), (size_t)len}};
    int rc = send_iov(s, iov, len ? 2 : 1);
    return rc < 0 ? rc : recv_return(s); /* void or neutral reply: values ignored */
}

int tvmrpc_array_copy_from_host(tvmrpc_sess_t *s, const tvmrpc_array_t *a, const void *data,
                                size_t nbytes)
{
    rpc_tensor_t t;
    uint64_t block, count;
    int rc = copy_prepare(s, a, data, nbytes, &t, &block, &count);
    for (uint64_t i = 0; rc == TVMRPC_OK && i < count; i++) {
        uint64_t off = i * block;
        uint64_t len = nbytes - off < block ? nbytes - off : block;
        rc = copy_to_chunk(s, &t, a->byte_offset, data, off, len);
    }
    return rc < 0 ? rc : tvmrpc_stream_sync(s, a->dev, 0);
}

/* kCopyFromRemote: the kCopyAck payload lands in the caller's buffer. */
static int copy_from_chunk(tvmrpc_sess_t *s, rpc_tensor_t *t, uint64_t base, uint8_t *data,
                           uint64_t off, uint64_t len)
{
    t->byte_offset = base + off;
    buf_reset(&s->out);
    if (rcl_copy_header(&s->out, RPC_COPY_FROM_REMOTE, t, len) < 0)
        return fail(s, TVMRPC_ERR_NOMEM, "out of memory");
    int32_t code;
    uint64_t body;
    int rc = send_out(s);
    if (rc < 0 || (rc = recv_header(s, &code, &body)) < 0)
        return rc;
    if (code == RPC_EXCEPTION)
        return remote_error(s, body, 0);
    if (code != RPC_COPY_ACK || body != len)
        return fail(s, TVMRPC_ERR_PROTOCOL, "expected a %llu-byte kCopyAck, got code %d of %llu",
                    (unsigned long long)len, code, (unsigned long long)body);
    return recv_exact(s, data + off, (size_t)len);
}

int tvmrpc_array_copy_to_host(tvmrpc_sess_t *s, const tvmrpc_array_t *a, void *data, size_t nbytes)
{
    rpc_tensor_t t;
    uint64_t block, count;
    int rc = copy_prepare(s, a, data, nbytes, &t, &block, &count);
    for (uint64_t i = 0; rc == TVMRPC_OK && i < count; i++) {
        uint64_t off = i * block;
        uint64_t len = nbytes - off < block ? nbytes - off : block;
        rc = copy_from_chunk(s, &t, a->byte_offset, data, off, len);
    }
    return rc < 0 ? rc : tvmrpc_stream_sync(s, a->dev, 0);
}

int tvmrpc_array_copy(tvmrpc_sess_t *s, const tvmrpc_array_t *from, const tvmrpc_array_t *to)
{
    int64_t n = tvmrpc_array_nbytes(from);
    if (n < 0 || n != tvmrpc_array_nbytes(to))
        return fail(s, TVMRPC_ERR_ARG, "arrays of different byte sizes");
    tvmrpc_value_t args[3] = {tvmrpc_v_tensor(from), tvmrpc_v_tensor(to),
                              tvmrpc_v_handle(TVMRPC_HANDLE, 0)};
    return tvmrpc_syscall(s, TVMRPC_SYS_COPY_AMONG_REMOTE, args, 3, NULL);
}

int tvmrpc_array_free(tvmrpc_sess_t *s, tvmrpc_array_t *a)
{
    if (!a)
        return fail(s, TVMRPC_ERR_ARG, "tvmrpc_array_free: no array");
    int rc;
    if (a->handle) { /* returned arrays: the object owns the data (§4.7) */
        rc = tvmrpc_free_handle(s, a->handle, TVMRPC_TENSOR);
    } else {
        tvmrpc_value_t args[2] = {tvmrpc_v_device(a->dev.type, a->dev.id),
                                  tvmrpc_v_handle(TVMRPC_HANDLE, a->data)};
        rc = tvmrpc_syscall(s, TVMRPC_SYS_FREE_DATA, args, 2, NULL);
    }
    if (rc == TVMRPC_OK)
        memset(a, 0, sizeof(*a));
    return rc;
}

/* ==== workspace transfers with progress (tvmrpc put / get) ====================
 * Added for the command line. The packets are exactly those of tvmrpc_upload
 * and tvmrpc_download; only the socket I/O is sliced so the caller can be
 * told how far it got. */

#define PROGRESS_SLICE ((size_t)1 << 20)

/* The cached workspace function fn, looked up on first use. */
static int ws_func(tvmrpc_sess_t *s, int fn)
{
    int rc = usable(s);
    if (rc < 0)
        return rc;
    return s->fn[fn] ? TVMRPC_OK : get_func(s, fn_names[fn], &s->fn[fn]);
}

/* kCallFunc(fn, args) into s->out. */
static int build_call(tvmrpc_sess_t *s, uint64_t fn, const tvmrpc_value_t *args, int nargs)
{
    buf_reset(&s->out);
    size_t at = rpc_packet_begin(&s->out, RPC_CALL_FUNC);
    buf_append_u64le(&s->out, fn);
    int rc = put_args(s, args, nargs);
    if (rc == TVMRPC_OK)
        rpc_packet_end(&s->out, at);
    return rc;
}

/* Send s->out one slice at a time, reporting after each. */
static int send_out_progress(tvmrpc_sess_t *s, tvmrpc_progress_fn cb, void *user)
{
    size_t total = s->out.len;
    for (size_t off = 0; off < total;) {
        size_t n = total - off < PROGRESS_SLICE ? total - off : PROGRESS_SLICE;
        struct iovec iov = {buf_head(&s->out) + off, n};
        int rc = send_iov(s, &iov, 1);
        if (rc < 0)
            return rc;
        off += n;
        if (cb)
            cb(user, off, total);
    }
    return TVMRPC_OK;
}

/* recv_return, reading the body one slice at a time. */
static int recv_return_progress(tvmrpc_sess_t *s, tvmrpc_progress_fn cb, void *user)
{
    uint64_t body;
    int rc = recv_return_header(s, &body);
    if (rc < 0)
        return rc;
    buf_reset(&s->in);
    uint8_t *p = body < SIZE_MAX ? buf_tail(&s->in, (size_t)body + 1) : NULL;
    if (!p)
        return fail(s, TVMRPC_ERR_NOMEM, "cannot buffer a %llu-byte reply",
                    (unsigned long long)body);
    for (uint64_t off = 0; off < body;) {
        size_t n = body - off < PROGRESS_SLICE ? (size_t)(body - off) : PROGRESS_SLICE;
        if ((rc = recv_exact(s, p + off, n)) < 0)
            return rc;
        off += n;
        if (cb)
            cb(user, off, body);
    }
    p[body] = '\0';
    buf_commit(&s->in, (size_t)body);
    return TVMRPC_OK;
}

/* The kReturn in s->in as a call result, in either layout while the
 * generation is unknown (as tvmrpc_call decodes it). */
static int decode_ret(tvmrpc_sess_t *s, tvmrpc_value_t *ret)
{
    char err[160];
    rpc_value_t v;
    rd_t r = rd_make(buf_head(&s->in), s->in.len);
    if (s->codec->decode_call_result(&r, &v, &s->ret_tensor, err, sizeof(err)) < 0) {
        r = rd_make(buf_head(&s->in), s->in.len);
        if (s->gen != TVMRPC_GEN_UNKNOWN ||
            rpc_codec_ffi.decode_call_result(&r, &v, &s->ret_tensor, err, sizeof(err)) < 0)
            return fail(s, TVMRPC_ERR_PROTOCOL, "undecodable call result: %s", err);
    }
    rcl_from_wire(&v, ret, &s->ret_arr);
    return TVMRPC_OK;
}

int tvmrpc_upload_progress(tvmrpc_sess_t *s, const void *data, size_t len, const char *remote_name,
                           tvmrpc_progress_fn cb, void *user)
{
    if (!remote_name || (!data && len))
        return fail(s, TVMRPC_ERR_ARG, "tvmrpc_upload_progress: remote_name and data are required");
    tvmrpc_value_t args[2] = {tvmrpc_v_str(remote_name), tvmrpc_v_bytes(data, len)};
    int rc = ws_func(s, FN_UPLOAD);
    if (rc < 0 || (rc = build_call(s, s->fn[FN_UPLOAD], args, 2)) < 0 ||
        (rc = send_out_progress(s, cb, user)) < 0)
        return rc;
    return recv_return(s); /* upload answers None */
}

int tvmrpc_download_progress(tvmrpc_sess_t *s, const char *remote_name, const void **data,
                             size_t *len, tvmrpc_progress_fn cb, void *user)
{
    if (!remote_name || !data || !len)
        return fail(s, TVMRPC_ERR_ARG,
                    "tvmrpc_download_progress: remote_name, data and len are required");
    tvmrpc_value_t arg = tvmrpc_v_str(remote_name), ret;
    int rc = ws_func(s, FN_DOWNLOAD);
    if (rc < 0 || (rc = build_call(s, s->fn[FN_DOWNLOAD], &arg, 1)) < 0 || (rc = send_out(s)) < 0 ||
        (rc = recv_return_progress(s, cb, user)) < 0 || (rc = decode_ret(s, &ret)) < 0)
        return rc;
    if (ret.kind != TVMRPC_BYTES && ret.kind != TVMRPC_STR)
        return fail(s, TVMRPC_ERR_PROTOCOL, "expected bytes from the server, got kind %d",
                    (int)ret.kind);
    *data = ret.u.s.p;
    *len = ret.u.s.len;
    return TVMRPC_OK;
}
