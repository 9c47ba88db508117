/* Our real `tvmrpc server` (and tracker) driven through the C client
 * library: every global function, every CPU syscall, the handshake and
 * packet-level error paths on raw sockets, session timeouts, crashed
 * workers, and tracker registration (PROTOCOL.md §1.8, §2, §4; RUNTIME.md
 * §1). Every wait is bounded.
 *
 * The whole suite runs once per generation: TVMRPC_TEST_GEN=ffi makes every
 * session speak the ffi generation (TVM >= 0.21), anything else the classic
 * one, to the same auto-detecting server (tests/CMakeLists.txt registers
 * both). */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/net.h"
#include "client/rpc_client.h"
#include "rpc/rpc.h"
#include "tvmrpc/client.h"

#define IO_MS 30000
#define KEY "dev"

static hproc_t srv; /* shared: --key dev --handshake-timeout 1 --max-packet 100 */

/* The generation sessions speak: TVMRPC_GEN_FFI, or TVMRPC_GEN_UNKNOWN
 * for classic (what a default client does: it speaks classic after the
 * server's generation-neutral kInitServer reply). */
static int test_gen = TVMRPC_GEN_UNKNOWN;

static int is_ffi(void)
{
    return test_gen == TVMRPC_GEN_FFI;
}

/* A global name that differs between the generations (RUNTIME.md §1.4, §1.8). */
static const char *gname(const char *classic, const char *ffi)
{
    return is_ffi() ? ffi : classic;
}

static const tvmrpc_device_t cpu0 = {1, 0};
static const tvmrpc_dtype_t f32 = {2, 32, 1};
static const tvmrpc_dtype_t u8 = {1, 8, 1};

/* What a test opened (h_track_sess, h_track_fd, h_proc_new) is released
 * by cleanup() even when an assertion fails mid-test: a session left open
 * would keep the one-session server busy. */
static int cleanup(void **state)
{
    h_cleanup();
    return 0;
}

/* ---- sessions --------------------------------------------------------------- */

static tvmrpc_sess_t *open_gen(int port, const char *key, double timeout, int gen)
{
    tvmrpc_opts_t o;
    tvmrpc_opts_init(&o);
    o.timeout_ms = IO_MS;
    o.session_timeout = timeout;
    o.generation = gen;
    char err[512];
    tvmrpc_sess_t *s =
        h_track_sess(tvmrpc_connect_opts("127.0.0.1", port, key, &o, err, sizeof(err)));
    if (!s)
        fail_msg("connect to %d: %s", port, err);
    return s;
}

static tvmrpc_sess_t *open_sess(void)
{
    return open_gen(srv.port, KEY, 0, test_gen);
}

#define ASSERT_RC(s, call, want)                                                                   \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != (want))                                                                         \
            fail_msg("%s = %d (%s), want %d", #call, rc_, (s) ? tvmrpc_last_error(s) : "",         \
                     (want));                                                                      \
    } while (0)
#define ASSERT_OK(s, call) ASSERT_RC(s, call, 0)

static void expect_error_text(tvmrpc_sess_t *s, const char *needle)
{
    if (!strstr(tvmrpc_last_error(s), needle))
        fail_msg("error '%s' does not mention '%s'", tvmrpc_last_error(s), needle);
}

static uint64_t func(tvmrpc_sess_t *s, const char *name)
{
    uint64_t h = 0;
    ASSERT_OK(s, tvmrpc_get_func(s, name, &h));
    assert_true(h != 0);
    return h;
}

/* Look a global up and call it; the session owns ret's memory. The handle
 * is left to the end of the session (the server frees it then). */
static int call2(tvmrpc_sess_t *s, const char *name, const tvmrpc_value_t *args, int n,
                 tvmrpc_value_t *ret)
{
    uint64_t h;
    int rc = tvmrpc_get_func(s, name, &h);
    return rc < 0 ? rc : tvmrpc_call(s, h, args, n, ret);
}

static void nop_ok(tvmrpc_sess_t *s)
{
    tvmrpc_value_t v;
    ASSERT_OK(s, call2(s, "testing.nop", NULL, 0, &v));
    assert_int_equal(v.kind, TVMRPC_NONE);
}

/* ---- raw sockets -------------------------------------------------------------- */

static int raw_connect(int port)
{
    char err[NET_ERR_LEN];
    int fd = h_track_fd(net_connect("127.0.0.1", port, IO_MS, err));
    if (fd < 0)
        fail_msg("%s", err);
    return fd;
}

static void raw_write(int fd, const void *p, size_t n)
{
    assert_int_equal(net_write_full(fd, p, n, IO_MS, NULL), 0);
}

static void raw_hello(int fd, const char *key)
{
    uint8_t b[256];
    put_le32(b, RPC_MAGIC);
    put_le32(b + 4, (uint32_t)strlen(key));
    memcpy(b + 8, key, strlen(key));
    raw_write(fd, b, 8 + strlen(key));
}

/* Handshake with "client:dev"; asserts SUCCESS. */
static int raw_session(int port)
{
    int fd = raw_connect(port);
    raw_hello(fd, "client:" KEY);
    uint8_t b[64];
    assert_int_equal(net_read_full(fd, b, 8, IO_MS, NULL, NULL), 0);
    assert_int_equal(le32(b), RPC_CODE_SUCCESS);
    assert_int_equal(le32(b + 4), strlen("server:" KEY));
    assert_int_equal(net_read_full(fd, b, le32(b + 4), IO_MS, NULL, NULL), 0);
    assert_memory_equal(b, "server:" KEY, strlen("server:" KEY));
    return fd;
}

static void raw_send(int fd, int32_t code, const void *payload, size_t n)
{
    uint8_t h[12];
    put_le64(h, 4 + n);
    put_le32(h + 8, (uint32_t)code);
    struct iovec iov[2] = {{h, 12}, {(void *)payload, n}};
    assert_int_equal(net_writev_full(fd, iov, n ? 2 : 1, IO_MS, NULL), 0);
}

/* Next packet: its code, body into b (cap bytes). -1 on EOF/timeout. */
static int32_t raw_recv(int fd, uint8_t *b, size_t cap, size_t *n)
{
    uint8_t h[12];
    if (net_read_full(fd, h, 12, IO_MS, NULL, NULL) < 0)
        return -1;
    *n = (size_t)le64(h) - 4;
    assert_true(*n <= cap);
    assert_int_equal(net_read_full(fd, b, *n, IO_MS, NULL, NULL), 0);
    return (int32_t)le32(h + 8);
}

static void raw_expect_exception(int fd, const char *needle)
{
    uint8_t b[1024];
    size_t n;
    assert_int_equal(raw_recv(fd, b, sizeof(b), &n), RPC_EXCEPTION);
    const char *msg;
    size_t len;
    assert_int_equal(rcl_exception_text(b, n, &msg, &len), 0);
    char text[1024];
    snprintf(text, sizeof(text), "%.*s", (int)len, msg);
    if (!strstr(text, needle))
        fail_msg("exception '%s' does not mention '%s'", text, needle);
}

static void raw_init(int fd, const char *version)
{
    uint8_t p[64];
    size_t vlen = strlen(version);
    put_le64(p, vlen);
    memcpy(p + 8, version, vlen);
    put_le32(p + 8 + vlen, 0);
    raw_send(fd, RPC_INIT_SERVER, p, 12 + vlen);
}

/* kGetGlobalFunc(name): tag 11 (classic) or RawStr 8 (ffi), per `ffi`. */
static void raw_get_global_gen(int fd, const char *name, int ffi)
{
    uint8_t p[256];
    put_le32(p, 1);
    put_le32(p + 4, ffi ? 8 : 11);
    put_le64(p + 8, strlen(name));
    memcpy(p + 16, name, strlen(name));
    raw_send(fd, RPC_GET_GLOBAL_FUNC, p, 16 + strlen(name));
}

static void raw_get_global(int fd, const char *name)
{
    raw_get_global_gen(fd, name, is_ffi());
}

/* ---- setup -------------------------------------------------------------------- */

static int setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    /* Sanitizer builds: let a SIGSEGV kill the worker as it would without
     * ASan (whose handler turns it into exit 1). No effect otherwise. */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof(opts), "%s%shandle_segv=0", asan ? asan : "", asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    const char *extra[] = {"--key", KEY, "--handshake-timeout", "1", "--max-packet", "100", NULL};
    return h_start_server(&srv, extra);
}

static int teardown(void **state)
{
    int st = h_stop(&srv);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* ---- handshake ---------------------------------------------------------------- */

static void test_connect_and_key(void **state)
{
    tvmrpc_sess_t *s = open_sess();
    assert_string_equal(tvmrpc_server_key(s), "server:" KEY);
    /* auto server: neutral kInitServer reply, then classic unless forced */
    assert_int_equal(tvmrpc_generation(s), test_gen);
    nop_ok(s);
    h_close_sess(s);
    char err[512], want[512];
    assert_null(tvmrpc_connect("127.0.0.1", srv.port, "nope", 0, err, sizeof(err)));
    snprintf(want, sizeof(want), "URL 127.0.0.1:%d cannot find server that matches key=client:nope",
             srv.port);
    assert_string_equal(err, want);
    /* Nothing listens on port 1. */
    assert_null(tvmrpc_connect("127.0.0.1", 1, KEY, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "Connect to 127.0.0.1:1 failed"));
}

static void test_raw_wrong_key(void **state)
{
    int fd = raw_connect(srv.port);
    raw_hello(fd, "client:wrong");
    uint8_t b[8];
    assert_int_equal(net_read_full(fd, b, 4, IO_MS, NULL, NULL), 0);
    const uint8_t mismatch[4] = {0x73, 0xF2, 0x0F, 0x00};
    assert_memory_equal(b, mismatch, 4);
    assert_true(h_peer_closed(fd, IO_MS));
    h_close_fd(fd);
    /* Only the first token counts: options after it are fine. */
    fd = raw_connect(srv.port);
    raw_hello(fd, "client:" KEY " -timeout=100 -other=1");
    assert_int_equal(net_read_full(fd, b, 4, IO_MS, NULL, NULL), 0);
    assert_int_equal(le32(b), RPC_CODE_SUCCESS);
    h_close_fd(fd);
}

static void test_raw_wrong_magic(void **state)
{
    int fd = raw_connect(srv.port);
    uint8_t b[8] = {0xEF, 0xBE, 0xAD, 0xDE, 7, 0, 0, 0};
    raw_write(fd, b, 8);
    /* Closed without a single byte. */
    int eof = 0;
    assert_int_equal(net_read_full(fd, b, 1, IO_MS, &eof, NULL), -1);
    assert_true(eof);
    h_close_fd(fd);
    tvmrpc_sess_t *s = open_sess();
    nop_ok(s);
    h_close_sess(s);
}

static void test_raw_key_too_long(void **state)
{
    int fd = raw_connect(srv.port);
    uint8_t b[8];
    put_le32(b, RPC_MAGIC);
    put_le32(b + 4, 1u << 20);
    raw_write(fd, b, 8);
    int eof = 0;
    assert_int_equal(net_read_full(fd, b, 1, IO_MS, &eof, NULL), -1);
    assert_true(eof);
    h_close_fd(fd);
}

static void test_silent_peer(void **state)
{
    int before = h_log_count(&srv, "no handshake within 1000 ms");
    int idle = raw_connect(srv.port);
    /* It does not hold up a real client. */
    tvmrpc_sess_t *s = open_sess();
    nop_ok(s);
    h_close_sess(s);
    /* Dropped (at the session start, or after --handshake-timeout 1). */
    assert_true(h_peer_closed(idle, 5000));
    h_close_fd(idle);
    /* Alone, it is dropped by the handshake timeout. */
    idle = raw_connect(srv.port);
    assert_true(h_peer_closed(idle, 5000));
    h_close_fd(idle);
    assert_int_equal(h_wait_log_count(&srv, "no handshake within 1000 ms", before, 5000), 0);
}

/* ---- packet-level errors ------------------------------------------------------ */

static void test_raw_before_init(void **state)
{
    int fd = raw_session(srv.port);
    raw_get_global(fd, "testing.nop");
    raw_expect_exception(fd, "InitRemoteSession");
    uint8_t call[12] = {0};
    put_le64(call, 0x1234);
    raw_send(fd, RPC_CALL_FUNC, call, 12);
    raw_expect_exception(fd, "InitRemoteSession");
    /* Wrong version: exception, session still open. */
    raw_init(fd, "0.9.0");
    raw_expect_exception(fd, "Version mismatch");
    /* Right version: the generation-neutral reply (§4.12). A zero-length
     * packet before it is skipped (§4.1). */
    raw_write(fd, (uint8_t[8]){0}, 8);
    raw_init(fd, "0.8.0");
    uint8_t b[64];
    size_t n;
    assert_int_equal(raw_recv(fd, b, sizeof(b), &n), RPC_RETURN);
    assert_int_equal(n, 4);
    assert_int_equal(le32(b), 0);
    raw_init(fd, "0.8.0");
    raw_expect_exception(fd, "already been initialized");
    /* An unknown packet code ends the session without a reply. */
    raw_send(fd, 99, NULL, 0);
    assert_true(h_peer_closed(fd, IO_MS));
    h_close_fd(fd);
    tvmrpc_sess_t *s = open_sess();
    nop_ok(s);
    h_close_sess(s);
}

static void test_raw_oversized_packet(void **state)
{
    int fd = raw_session(srv.port);
    raw_init(fd, "0.8.0");
    uint8_t b[64];
    size_t n;
    assert_int_equal(raw_recv(fd, b, sizeof(b), &n), RPC_RETURN);
    /* 101 MiB announced, --max-packet 100: closed before any body is read. */
    uint8_t h[12];
    put_le64(h, ((uint64_t)101 << 20));
    put_le32(h + 8, RPC_CALL_FUNC);
    raw_write(fd, h, 12);
    assert_true(h_peer_closed(fd, IO_MS));
    h_close_fd(fd);
    /* The server serves the next client. */
    tvmrpc_sess_t *s = open_sess();
    nop_ok(s);
    h_close_sess(s);
}

/* ---- global functions --------------------------------------------------------- */

static void echo_same(tvmrpc_sess_t *s, uint64_t echo, tvmrpc_value_t a)
{
    tvmrpc_value_t v;
    ASSERT_OK(s, tvmrpc_call(s, echo, &a, 1, &v));
    assert_int_equal(v.kind, a.kind);
    switch (a.kind) {
    case TVMRPC_NONE:
        break;
    case TVMRPC_STR:
    case TVMRPC_BYTES:
        assert_int_equal(v.u.s.len, a.u.s.len);
        assert_memory_equal(v.u.s.p, a.u.s.p, a.u.s.len);
        assert_int_equal(v.u.s.p[v.u.s.len], '\0');
        break;
    case TVMRPC_FLOAT:
        assert_memory_equal(&v.u.f, &a.u.f, sizeof(double));
        break;
    case TVMRPC_DEVICE:
        assert_memory_equal(&v.u.dev, &a.u.dev, sizeof(v.u.dev));
        break;
    case TVMRPC_DTYPE:
        assert_memory_equal(&v.u.dtype, &a.u.dtype, sizeof(v.u.dtype));
        break;
    default:
        assert_true(v.u.h == a.u.h); /* INT, BOOL share the 64 bits */
        break;
    }
}

static void echo_battery(tvmrpc_sess_t *s)
{
    uint64_t echo = func(s, "testing.echo");
    static const char bin[] = {0, 1, 2, 0, (char)0xff, 'x'};
    echo_same(s, echo, tvmrpc_v_none());
    echo_same(s, echo, tvmrpc_v_int(42));
    echo_same(s, echo, tvmrpc_v_int(INT64_MIN));
    echo_same(s, echo, tvmrpc_v_int(INT64_MAX));
    echo_same(s, echo, tvmrpc_v_bool(1));
    echo_same(s, echo, tvmrpc_v_bool(0));
    echo_same(s, echo, tvmrpc_v_float(3.5));
    echo_same(s, echo, tvmrpc_v_float(-1e-300));
    echo_same(s, echo, tvmrpc_v_str(""));
    echo_same(s, echo, tvmrpc_v_str("short"));
    echo_same(s, echo, tvmrpc_v_str("hello, tvm rpc - a longer string"));
    echo_same(s, echo, tvmrpc_v_bytes(bin, sizeof(bin)));
    echo_same(s, echo, tvmrpc_v_bytes("", 0));
    echo_same(s, echo, tvmrpc_v_handle(TVMRPC_HANDLE, 0x7f00deadbeefull));
    echo_same(s, echo, tvmrpc_v_device(1, 0));
    echo_same(s, echo, tvmrpc_v_device(2, 7));
    echo_same(s, echo, tvmrpc_v_dtype(2, 32, 1));
    echo_same(s, echo, tvmrpc_v_dtype(0, 8, 4));
    /* Arrays cannot be echoed (there is no array object behind a DLTensor). */
    tvmrpc_array_t a;
    ASSERT_OK(s, tvmrpc_array_alloc(s, cpu0, 1, (int64_t[]){4}, f32, NULL, &a));
    tvmrpc_value_t arg = tvmrpc_v_tensor(&a), v;
    ASSERT_RC(s, tvmrpc_call(s, echo, &arg, 1, &v), TVMRPC_ERR_REMOTE);
    expect_error_text(s, "TypeError");
    ASSERT_OK(s, tvmrpc_array_free(s, &a));
    ASSERT_OK(s, tvmrpc_free_handle(s, echo, TVMRPC_FUNC));
}

static void test_echo_kinds(void **state)
{
    tvmrpc_sess_t *s = open_sess();
    echo_battery(s);
    h_close_sess(s);
}

/* A function handle handed out again is one more reference (§4.7): the
 * client may free it twice. */
static void test_echo_function_handle_refcount(void **state)
{
    tvmrpc_sess_t *s = open_sess();
    uint64_t echo = func(s, "testing.echo");
    tvmrpc_value_t arg = tvmrpc_v_handle(TVMRPC_FUNC, echo), v;
    ASSERT_OK(s, tvmrpc_call(s, echo, &arg, 1, &v));
    assert_int_equal(v.kind, TVMRPC_FUNC);
    assert_true(v.u.h == echo);
    ASSERT_OK(s, tvmrpc_free_handle(s, echo, TVMRPC_FUNC));
    /* The returned reference still works and can be freed. */
    tvmrpc_value_t one = tvmrpc_v_int(1);
    ASSERT_OK(s, tvmrpc_call(s, v.u.h, &one, 1, &v));
    ASSERT_OK(s, tvmrpc_free_handle(s, echo, TVMRPC_FUNC));
    h_close_sess(s);
}

/* Handles the server never gave out are refused, not reflected. */
static void test_echo_unknown_handles(void **state)
{
    tvmrpc_sess_t *s = open_sess();
    uint64_t echo = func(s, "testing.echo");
    tvmrpc_value_t v, arg = tvmrpc_v_handle(TVMRPC_MODULE, 0xbad0);
    ASSERT_RC(s, tvmrpc_call(s, echo, &arg, 1, &v), TVMRPC_ERR_REMOTE);
    arg = tvmrpc_v_handle(TVMRPC_OBJECT, 0xbad0);
    ASSERT_RC(s, tvmrpc_call(s, echo, &arg, 1, &v), TVMRPC_ERR_REMOTE);
    arg = tvmrpc_v_handle(TVMRPC_FUNC, 0xbad0);
    ASSERT_RC(s, tvmrpc_call(s, echo, &arg, 1, &v), TVMRPC_ERR_REMOTE);
    nop_ok(s);
    h_close_sess(s);
}

static void test_testing_helpers(void **state)
{
    tvmrpc_sess_t *s = open_sess();
    tvmrpc_value_t v, a[2];
    nop_ok(s);
    a[0] = tvmrpc_v_int(41);
    ASSERT_OK(s, call2(s, "rpc.test.addone", a, 1, &v));
    assert_int_equal(v.kind, TVMRPC_INT);
    assert_int_equal(v.u.i, 42);
    a[0] = tvmrpc_v_float(1.5);
    ASSERT_OK(s, call2(s, "rpc.test.addone", a, 1, &v));
    assert_int_equal(v.kind, TVMRPC_FLOAT);
    assert_true(v.u.f == 2.5);
    a[0] = tvmrpc_v_str("abc");
    a[1] = tvmrpc_v_int(42);
    ASSERT_OK(s, call2(s, "rpc.test.strcat", a, 2, &v));
    assert_int_equal(v.kind, TVMRPC_STR);
    assert_string_equal(v.u.s.p, "abc:42");
    a[1] = tvmrpc_v_bool(1);
    ASSERT_OK(s, call2(s, "rpc.test.strcat", a, 2, &v));
    assert_string_equal(v.u.s.p, "abc:True");
    a[1] = tvmrpc_v_none();
    ASSERT_OK(s, call2(s, "rpc.test.strcat", a, 2, &v));
    assert_string_equal(v.u.s.p, "abc:None");
    /* Python str() of floats: shortest repr, ".0" for whole numbers. */
    a[1] = tvmrpc_v_float(2.5);
    ASSERT_OK(s, call2(s, "rpc.test.strcat", a, 2, &v));
    assert_string_equal(v.u.s.p, "abc:2.5");
    a[1] = tvmrpc_v_float(0.1);
    ASSERT_OK(s, call2(s, "rpc.test.strcat", a, 2, &v));
    assert_string_equal(v.u.s.p, "abc:0.1");
    a[1] = tvmrpc_v_float(3.0);
    ASSERT_OK(s, call2(s, "rpc.test.strcat", a, 2, &v));
    assert_string_equal(v.u.s.p, "abc:3.0");
    a[0] = tvmrpc_v_str("foo");
    a[1] = tvmrpc_v_str("bar");
    ASSERT_OK(s, call2(s, "rpc.test.runtime_str_concat", a, 2, &v));
    assert_string_equal(v.u.s.p, "foobar");
    a[0] = tvmrpc_v_str("boom");
    ASSERT_RC(s, call2(s, "rpc.test.except", a, 1, &v), TVMRPC_ERR_REMOTE);
    assert_string_equal(tvmrpc_last_error(s), "ValueError: boom");
    /* Wrong argument types are remote TypeErrors; the session goes on. */
    ASSERT_RC(s, call2(s, "rpc.test.addone", a, 1, &v), TVMRPC_ERR_REMOTE);
    expect_error_text(s, "TypeError");
    nop_ok(s);
    h_close_sess(s);
}

/* A shape made on the server is an opaque object reference the client can
 * only pass back (RUNTIME.md §1.8): runtime.ShapeTuple in classic,
 * ffi.Shape in ffi. */
static void test_shape_objects(void **state)
{
    tvmrpc_sess_t *s = open_sess();
    const char *size = gname("runtime.GetShapeTupleSize", "rpc.testing.GetShapeSize");
    const char *elem = gname("runtime.GetShapeTupleElem", "rpc.testing.GetShapeElem");
    tvmrpc_value_t a[3] = {tvmrpc_v_int(2), tvmrpc_v_int(3), tvmrpc_v_int(-7)}, v;
    ASSERT_OK(s, call2(s, gname("runtime.ShapeTuple", "ffi.Shape"), a, 3, &v));
    assert_int_equal(v.kind, TVMRPC_OBJECT);
    uint64_t shape = v.u.h;
    tvmrpc_value_t b[2] = {tvmrpc_v_handle(TVMRPC_OBJECT, shape), tvmrpc_v_int(0)};
    ASSERT_OK(s, call2(s, size, b, 1, &v));
    assert_int_equal(v.kind, TVMRPC_INT);
    assert_int_equal(v.u.i, 3);
    for (int i = 0; i < 3; i++) {
        b[1] = tvmrpc_v_int(i);
        ASSERT_OK(s, call2(s, elem, b, 2, &v));
        assert_int_equal(v.kind, TVMRPC_INT);
        assert_int_equal(v.u.i, a[i].u.i);
    }
    b[1] = tvmrpc_v_int(3);
    ASSERT_RC(s, call2(s, elem, b, 2, &v), TVMRPC_ERR_REMOTE);
    expect_error_text(s, "IndexError");
    b[1] = tvmrpc_v_int(-1);
    ASSERT_RC(s, call2(s, elem, b, 2, &v), TVMRPC_ERR_REMOTE);
    /* Every handle handed out is one reference the client holds. */
    ASSERT_OK(s, call2(s, "testing.object_use_count", b, 1, &v));
    assert_int_equal(v.u.i, 1);
    ASSERT_OK(s, call2(s, "testing.echo", b, 1, &v));
    assert_int_equal(v.kind, TVMRPC_OBJECT);
    assert_true(v.u.h == shape);
    ASSERT_OK(s, call2(s, "testing.object_use_count", b, 1, &v));
    assert_int_equal(v.u.i, 2);
    ASSERT_OK(s, tvmrpc_free_handle(s, shape, TVMRPC_OBJECT));
    ASSERT_OK(s, call2(s, size, b, 1, &v));
    ASSERT_OK(s, tvmrpc_free_handle(s, shape, TVMRPC_OBJECT));
    ASSERT_RC(s, call2(s, size, b, 1, &v), TVMRPC_ERR_REMOTE);
    ASSERT_RC(s, call2(s, "testing.object_use_count", b, 1, &v), TVMRPC_ERR_REMOTE);
    /* Only shapes are shapes; only integers make one. */
    uint64_t nop = func(s, "testing.nop");
    b[0] = tvmrpc_v_handle(TVMRPC_FUNC, nop);
    ASSERT_RC(s, call2(s, size, b, 1, &v), TVMRPC_ERR_REMOTE);
    expect_error_text(s, "TypeError");
    a[1] = tvmrpc_v_str("x");
    ASSERT_RC(s, call2(s, gname("runtime.ShapeTuple", "ffi.Shape"), a, 3, &v), TVMRPC_ERR_REMOTE);
    ASSERT_OK(s, call2(s, gname("runtime.ShapeTuple", "ffi.Shape"), NULL, 0, &v));
    b[0] = v;
    ASSERT_OK(s, call2(s, size, b, 1, &v));
    assert_int_equal(v.u.i, 0);
    nop_ok(s);
    h_close_sess(s);
}

/* Functions the server makes on the fly: closures over an argument, and
 * one that raises (RUNTIME.md §1.8). */
static void test_made_functions(void **state)
{
    tvmrpc_sess_t *s = open_sess();
    tvmrpc_value_t a[2] = {tvmrpc_v_int(10)}, v;
    ASSERT_OK(s, call2(s, "rpc.test.add_to_lhs", a, 1, &v));
    assert_int_equal(v.kind, TVMRPC_FUNC);
    uint64_t add10 = v.u.h;
    a[0] = tvmrpc_v_int(32);
    ASSERT_OK(s, tvmrpc_call(s, add10, a, 1, &v));
    assert_int_equal(v.kind, TVMRPC_INT);
    assert_int_equal(v.u.i, 42);
    a[0] = tvmrpc_v_float(0.5);
    ASSERT_OK(s, tvmrpc_call(s, add10, a, 1, &v));
    assert_int_equal(v.kind, TVMRPC_FLOAT);
    assert_true(v.u.f == 10.5);
    a[0] = tvmrpc_v_str("x");
    ASSERT_RC(s, tvmrpc_call(s, add10, a, 1, &v), TVMRPC_ERR_REMOTE);
    expect_error_text(s, "TypeError");
    ASSERT_OK(s, tvmrpc_free_handle(s, add10, TVMRPC_FUNC));
    ASSERT_RC(s, tvmrpc_call(s, add10, a, 1, &v), TVMRPC_ERR_REMOTE);
    /* classic: a function that raises; ffi: raise an error of a kind. */
    a[0] = tvmrpc_v_str("the callback broke");
    ASSERT_OK(s, call2(s, "testing.test_raise_error_callback", a, 1, &v));
    assert_int_equal(v.kind, TVMRPC_FUNC);
    uint64_t cb = v.u.h;
    ASSERT_RC(s, tvmrpc_call(s, cb, NULL, 0, &v), TVMRPC_ERR_REMOTE);
    assert_string_equal(tvmrpc_last_error(s), "TVMError: the callback broke");
    ASSERT_OK(s, tvmrpc_free_handle(s, cb, TVMRPC_FUNC));
    a[0] = tvmrpc_v_str("ValueError");
    a[1] = tvmrpc_v_str("bad value");
    ASSERT_RC(s, call2(s, "testing.test_raise_error", a, 2, &v), TVMRPC_ERR_REMOTE);
    assert_string_equal(tvmrpc_last_error(s), "ValueError: bad value");
    a[0] = tvmrpc_v_int(1);
    a[1] = tvmrpc_v_int(2);
    ASSERT_RC(s, call2(s, "testing.ErrorTest", a, 2, &v), TVMRPC_ERR_REMOTE);
    expect_error_text(s, "expect x and y to be equal");
    nop_ok(s);
    h_close_sess(s);
}

static uint64_t nd_func(tvmrpc_sess_t *s, uint64_t maker, const char *name)
{
    tvmrpc_value_t a = tvmrpc_v_str(name), v;
    ASSERT_OK(s, tvmrpc_call(s, maker, &a, 1, &v));
    assert_int_equal(v.kind, TVMRPC_FUNC);
    return v.u.h;
}

static double elem_of(tvmrpc_sess_t *s, uint64_t f, const tvmrpc_value_t *args, int n)
{
    tvmrpc_value_t v;
    ASSERT_OK(s, tvmrpc_call(s, f, args, n, &v));
    assert_int_equal(v.kind, TVMRPC_FLOAT);
    return v.u.f;
}

/* Arrays the server owns, handed out as results (rpc.test.remote_return_nd):
 * the client reads, writes and passes them back like its own. */
static void test_server_owned_arrays(void **state)
{
    tvmrpc_sess_t *s = open_sess();
    uint64_t maker = func(s, "rpc.test.remote_return_nd");
    uint64_t get_arr = nd_func(s, maker, "get_arr"), get_elem = nd_func(s, maker, "get_elem");
    uint64_t arr_elem = nd_func(s, maker, "get_arr_elem"), refs = nd_func(s, maker, "ref_count");
    tvmrpc_value_t v;
    ASSERT_OK(s, tvmrpc_call(s, get_arr, NULL, 0, &v));
    assert_int_equal(v.kind, TVMRPC_TENSOR);
    tvmrpc_array_t arr = *v.u.arr;
    assert_int_equal(arr.ndim, 1);
    assert_int_equal(arr.shape[0], 10);
    assert_memory_equal(&arr.dtype, &f32, sizeof(f32));
    assert_true(arr.handle != 0 && arr.data != 0);
    float vals[10], back[10];
    ASSERT_OK(s, tvmrpc_array_copy_to_host(s, &arr, back, sizeof(back)));
    for (int i = 0; i < 10; i++) {
        assert_true(back[i] == 0.0f);
        vals[i] = (float)i + 1;
    }
    ASSERT_OK(s, tvmrpc_array_copy_from_host(s, &arr, vals, sizeof(vals)));
    tvmrpc_value_t a[2] = {tvmrpc_v_tensor(&arr), tvmrpc_v_int(3)};
    assert_true(elem_of(s, arr_elem, a, 2) == 4.0);
    a[1] = tvmrpc_v_int(10);
    ASSERT_RC(s, tvmrpc_call(s, arr_elem, a, 2, &v), TVMRPC_ERR_REMOTE);
    expect_error_text(s, "IndexError");
    /* get_elem reads its own (fresh) array. */
    a[0] = tvmrpc_v_int(0);
    assert_true(elem_of(s, get_elem, a, 1) == 0.0);
    ASSERT_OK(s, tvmrpc_call(s, refs, NULL, 0, &v));
    assert_int_equal(v.u.i, 1);
    /* Freeing the returned array drops the client's reference only. */
    ASSERT_OK(s, tvmrpc_array_free(s, &arr));
    ASSERT_OK(s, tvmrpc_call(s, get_arr, NULL, 0, &v));
    arr = *v.u.arr;
    ASSERT_OK(s, tvmrpc_array_copy_to_host(s, &arr, back, sizeof(back)));
    assert_memory_equal(back, vals, sizeof(vals));
    ASSERT_OK(s, tvmrpc_array_free(s, &arr));
    a[0] = tvmrpc_v_str("nope");
    ASSERT_RC(s, tvmrpc_call(s, maker, a, 1, &v), TVMRPC_ERR_REMOTE);
    expect_error_text(s, "ValueError");
    /* remote_array_func (classic) / remote_tensor_func (ffi): 3x4 ones. */
    const char *ones = gname("rpc.test.remote_array_func", "rpc.test.remote_tensor_func");
    tvmrpc_array_t m;
    float one[12];
    for (int i = 0; i < 12; i++)
        one[i] = 1.0f;
    ASSERT_OK(s, tvmrpc_array_alloc(s, cpu0, 2, (int64_t[]){3, 4}, f32, NULL, &m));
    ASSERT_OK(s, tvmrpc_array_copy_from_host(s, &m, one, sizeof(one)));
    a[0] = tvmrpc_v_tensor(&m);
    ASSERT_OK(s, call2(s, ones, a, 1, &v));
    one[5] = 2.0f;
    ASSERT_OK(s, tvmrpc_array_copy_from_host(s, &m, one, sizeof(one)));
    ASSERT_RC(s, call2(s, ones, a, 1, &v), TVMRPC_ERR_REMOTE);
    expect_error_text(s, "AssertionError");
    ASSERT_OK(s, tvmrpc_array_free(s, &m));
    nop_ok(s);
    h_close_sess(s);
}

static void test_unknown_global_and_handles(void **state)
{
    tvmrpc_sess_t *s = open_sess();
    uint64_t h = 123;
    ASSERT_RC(s, tvmrpc_get_func(s, "no.such.function", &h), TVMRPC_ERR_NOT_FOUND);
    ASSERT_RC(s, tvmrpc_get_func(s, "", &h), TVMRPC_ERR_NOT_FOUND);
    /* Bogus handles: calling and freeing them are remote errors. */
    tvmrpc_value_t v;
    ASSERT_RC(s, tvmrpc_call(s, 0xdead0, NULL, 0, &v), TVMRPC_ERR_REMOTE);
    ASSERT_RC(s, tvmrpc_free_handle(s, 0xdead0, TVMRPC_FUNC), TVMRPC_ERR_REMOTE);
    ASSERT_RC(s, tvmrpc_free_handle(s, 0, TVMRPC_MODULE), TVMRPC_ERR_REMOTE);
    /* A freed handle is gone. */
    h = func(s, "testing.nop");
    ASSERT_OK(s, tvmrpc_free_handle(s, h, TVMRPC_FUNC));
    ASSERT_RC(s, tvmrpc_free_handle(s, h, TVMRPC_FUNC), TVMRPC_ERR_REMOTE);
    ASSERT_RC(s, tvmrpc_call(s, h, NULL, 0, &v), TVMRPC_ERR_REMOTE);
    /* Local refusals send nothing. */
    ASSERT_RC(s, tvmrpc_free_handle(s, 1, TVMRPC_INT), TVMRPC_ERR_ARG);
    ASSERT_RC(s, tvmrpc_syscall(s, 3, NULL, 0, NULL), TVMRPC_ERR_ARG);
    tvmrpc_value_t bad = tvmrpc_v_device(0, 0);
    ASSERT_RC(s, tvmrpc_syscall(s, TVMRPC_SYS_SET_DEVICE, &bad, 1, NULL), TVMRPC_ERR_ARG);
    nop_ok(s);
    h_close_sess(s);
}

/* ---- workspace ------------------------------------------------------------------ */

static char *workpath(tvmrpc_sess_t *s, const char *name)
{
    tvmrpc_value_t a = tvmrpc_v_str(name), v;
    ASSERT_OK(s, call2(s, "tvm.rpc.server.workpath", &a, 1, &v));
    assert_int_equal(v.kind, TVMRPC_STR);
    return strdup(v.u.s.p);
}

static uint8_t *pattern(size_t n, uint32_t seed)
{
    uint8_t *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
    return p;
}

/* Entries of dirname(prefix) whose path starts with prefix. */
static int count_prefixed(const char *prefix)
{
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s", prefix);
    char *slash = strrchr(dir, '/');
    assert_non_null(slash);
    *slash = '\0';
    const char *base = slash + 1;
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strncmp(e->d_name, base, strlen(base)) == 0;
    if (d)
        closedir(d);
    return n;
}

static void workspace_battery(tvmrpc_sess_t *s)
{
    uint8_t *big = pattern(20 << 20, 7);
    void *got;
    size_t n;
    ASSERT_OK(s, tvmrpc_upload(s, big, 20 << 20, "big.bin"));
    ASSERT_OK(s, tvmrpc_download(s, "big.bin", &got, &n));
    assert_int_equal(n, 20 << 20);
    assert_memory_equal(got, big, n);
    free(got);
    free(big);
    ASSERT_OK(s, tvmrpc_upload(s, "", 0, "empty"));
    ASSERT_OK(s, tvmrpc_download(s, "empty", &got, &n));
    assert_int_equal(n, 0);
    free(got);
    char *root = workpath(s, "");
    char *x = workpath(s, "x");
    assert_true(root[0] == '/');
    char want[4096];
    snprintf(want, sizeof(want), "%s/x", root);
    assert_string_equal(x, want);
    char *list;
    ASSERT_OK(s, tvmrpc_listdir(s, "", &list));
    snprintf(want, sizeof(want), "%s/big.bin,", root);
    assert_non_null(strstr(list, want));
    snprintf(want, sizeof(want), "%s/empty,", root);
    assert_non_null(strstr(list, want));
    free(list);
    /* A missing directory: classic servers raise, ffi ones answer "" (§1.3). */
    if (tvmrpc_generation(s) == TVMRPC_GEN_FFI) {
        ASSERT_OK(s, tvmrpc_listdir(s, "missing", &list));
        assert_string_equal(list, "");
        free(list);
    } else {
        ASSERT_RC(s, tvmrpc_listdir(s, "missing", &list), TVMRPC_ERR_REMOTE);
        expect_error_text(s, "ListDir");
    }
    /* remove never fails, and remove("") keeps the workspace. */
    ASSERT_OK(s, tvmrpc_remove(s, "big.bin"));
    ASSERT_OK(s, tvmrpc_remove(s, "big.bin"));
    ASSERT_OK(s, tvmrpc_remove(s, ""));
    ASSERT_OK(s, tvmrpc_remove(s, "no/such/file"));
    ASSERT_RC(s, tvmrpc_download(s, "big.bin", &got, &n), TVMRPC_ERR_REMOTE);
    expect_error_text(s, "Cannot open");
    ASSERT_OK(s, tvmrpc_listdir(s, "", &list));
    assert_null(strstr(list, "big.bin"));
    free(list);
    /* Parent directories are not created. */
    ASSERT_RC(s, tvmrpc_upload(s, "a", 1, "nodir/a"), TVMRPC_ERR_REMOTE);
    /* The workspace itself is no file name, and nothing lands next to it. */
    ASSERT_RC(s, tvmrpc_upload(s, "a", 1, ""), TVMRPC_ERR_REMOTE);
    char sibling[4200];
    snprintf(sibling, sizeof(sibling), "%s.part-", root);
    assert_int_equal(count_prefixed(sibling), 0);
    free(root);
    free(x);
}

static void test_workspace(void **state)
{
    tvmrpc_sess_t *s = open_sess();
    workspace_battery(s);
    /* The file conveniences. */
    char local[256], back[256];
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(local, sizeof(local), "%s/tvmrpc-client-%d.bin", tmp, (int)getpid());
    snprintf(back, sizeof(back), "%s/tvmrpc-client-%d.back", tmp, (int)getpid());
    FILE *fp = fopen(local, "wb");
    assert_non_null(fp);
    uint8_t *data = pattern(100000, 3);
    assert_int_equal(fwrite(data, 1, 100000, fp), 100000);
    fclose(fp);
    ASSERT_OK(s, tvmrpc_upload_file(s, local, NULL));
    const char *base = strrchr(local, '/') + 1;
    ASSERT_OK(s, tvmrpc_download_file(s, base, back));
    fp = fopen(back, "rb");
    assert_non_null(fp);
    uint8_t *got = malloc(100001);
    assert_int_equal(fread(got, 1, 100001, fp), 100000);
    fclose(fp);
    assert_memory_equal(got, data, 100000);
    free(got);
    free(data);
    unlink(local);
    unlink(back);
    ASSERT_RC(s, tvmrpc_upload_file(s, "/nonexistent/file", "z"), TVMRPC_ERR_ARG);
    nop_ok(s);
    h_close_sess(s);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void test_path_escapes(void **state)
{
    tvmrpc_sess_t *s = open_sess();
    void *got;
    size_t n;
    ASSERT_RC(s, tvmrpc_download(s, "../x", &got, &n), TVMRPC_ERR_REMOTE);
    expect_error_text(s, "PermissionError");
    ASSERT_RC(s, tvmrpc_download(s, "/etc/passwd", &got, &n), TVMRPC_ERR_REMOTE);
    expect_error_text(s, "PermissionError");
    ASSERT_RC(s, tvmrpc_upload(s, "x", 1, "../x"), TVMRPC_ERR_REMOTE);
    ASSERT_RC(s, tvmrpc_listdir(s, "/", (char **)&got), TVMRPC_ERR_REMOTE);
    tvmrpc_value_t a = tvmrpc_v_str("a/../../b"), v;
    ASSERT_RC(s, call2(s, "tvm.rpc.server.workpath", &a, 1, &v), TVMRPC_ERR_REMOTE);
    /* Symlinks inside the workspace leading out: we share the machine with
     * the server, so plant them next to its files. */
    char outside[256], victim[300], link1[4200], link2[4200], path[4200];
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(outside, sizeof(outside), "%s/tvmrpc-outside-%d", tmp, (int)getpid());
    snprintf(victim, sizeof(victim), "%s/victim", outside);
    assert_int_equal(mkdir(outside, 0755), 0);
    FILE *fp = fopen(victim, "w");
    assert_non_null(fp);
    fputs("secret", fp);
    fclose(fp);
    char *root = workpath(s, "");
    snprintf(link1, sizeof(link1), "%s/outdir", root);
    snprintf(link2, sizeof(link2), "%s/outfile", root);
    assert_int_equal(symlink(outside, link1), 0);
    assert_int_equal(symlink(victim, link2), 0);
    ASSERT_RC(s, tvmrpc_download(s, "outdir/victim", &got, &n), TVMRPC_ERR_REMOTE);
    expect_error_text(s, "PermissionError");
    ASSERT_RC(s, tvmrpc_download(s, "outfile", &got, &n), TVMRPC_ERR_REMOTE);
    ASSERT_RC(s, tvmrpc_upload(s, "x", 1, "outdir/new"), TVMRPC_ERR_REMOTE);
    ASSERT_RC(s, tvmrpc_listdir(s, "outdir", (char **)&got), TVMRPC_ERR_REMOTE);
    ASSERT_OK(s, tvmrpc_remove(s, "outdir/victim"));
    ASSERT_OK(s, tvmrpc_remove(s, victim));
    snprintf(path, sizeof(path), "%s/new", outside);
    assert_true(exists(victim));
    assert_false(exists(path));
    /* Removing the link itself is fine (it is inside). */
    ASSERT_OK(s, tvmrpc_remove(s, "outfile"));
    assert_true(exists(victim));
    nop_ok(s);
    h_close_sess(s);
    unlink(victim);
    rmdir(outside);
    free(root);
}

/* ---- devices and arrays ----------------------------------------------------------- */

static void syscall_battery(tvmrpc_sess_t *s)
{
    tvmrpc_value_t v, a[4];
    tvmrpc_device_t cuda = {2, 0};
    assert_int_equal(tvmrpc_device_exists(s, 1, 0), 1);
    assert_int_equal(tvmrpc_device_exists(s, 1, 3), 1);
    assert_int_equal(tvmrpc_device_exists(s, 2, 0), 0);
    ASSERT_RC(s, tvmrpc_device_attr(s, cuda, 1, &v), TVMRPC_ERR_REMOTE);
    expect_error_text(s, "Device API cuda is not enabled.");
    ASSERT_OK(s, tvmrpc_device_attr(s, cpu0, 14, &v));
    assert_int_equal(v.kind, TVMRPC_INT);
    assert_true(v.u.i > 0);
    ASSERT_OK(s, tvmrpc_device_attr(s, cpu0, 1, &v));
    assert_int_equal(v.kind, TVMRPC_NONE);
    /* Streams: CPU has none; every call answers. */
    a[0] = tvmrpc_v_device(1, 0);
    ASSERT_OK(s, tvmrpc_syscall(s, TVMRPC_SYS_SET_DEVICE, a, 1, &v));
    ASSERT_OK(s, tvmrpc_syscall(s, TVMRPC_SYS_CREATE_STREAM, a, 1, &v));
    assert_int_equal(v.kind, TVMRPC_HANDLE);
    assert_int_equal(v.u.h, 0);
    ASSERT_OK(s, tvmrpc_syscall(s, TVMRPC_SYS_GET_CURRENT_STREAM, a, 1, &v));
    assert_int_equal(v.kind, TVMRPC_HANDLE);
    assert_int_equal(v.u.h, 0);
    a[1] = tvmrpc_v_handle(TVMRPC_HANDLE, 0);
    ASSERT_OK(s, tvmrpc_syscall(s, TVMRPC_SYS_SET_STREAM, a, 2, &v));
    ASSERT_OK(s, tvmrpc_syscall(s, TVMRPC_SYS_FREE_STREAM, a, 2, &v));
    ASSERT_OK(s, tvmrpc_stream_sync(s, cpu0, 0));
    ASSERT_RC(s, tvmrpc_stream_sync(s, cuda, 0), TVMRPC_ERR_REMOTE);
    a[0] = tvmrpc_v_device(2, 0);
    ASSERT_RC(s, tvmrpc_syscall(s, TVMRPC_SYS_CREATE_STREAM, a, 1, &v), TVMRPC_ERR_REMOTE);
    /* kDevAllocData / kDevFreeData */
    a[0] = tvmrpc_v_device(1, 0);
    a[1] = tvmrpc_v_int(1000);
    a[2] = tvmrpc_v_int(256);
    a[3] = tvmrpc_v_dtype(2, 32, 1);
    ASSERT_OK(s, tvmrpc_syscall(s, TVMRPC_SYS_ALLOC_DATA, a, 4, &v));
    assert_int_equal(v.kind, TVMRPC_HANDLE);
    assert_true(v.u.h != 0 && v.u.h % 256 == 0);
    a[1] = tvmrpc_v_handle(TVMRPC_HANDLE, v.u.h);
    ASSERT_OK(s, tvmrpc_syscall(s, TVMRPC_SYS_FREE_DATA, a, 2, NULL));
    ASSERT_RC(s, tvmrpc_syscall(s, TVMRPC_SYS_FREE_DATA, a, 2, NULL), TVMRPC_ERR_REMOTE);
    a[1] = tvmrpc_v_handle(TVMRPC_HANDLE, 0xdeadbeef);
    ASSERT_RC(s, tvmrpc_syscall(s, TVMRPC_SYS_FREE_DATA, a, 2, NULL), TVMRPC_ERR_REMOTE);
    a[0] = tvmrpc_v_device(2, 0);
    a[1] = tvmrpc_v_int(16);
    a[2] = tvmrpc_v_int(64);
    ASSERT_RC(s, tvmrpc_syscall(s, TVMRPC_SYS_ALLOC_DATA, a, 4, &v), TVMRPC_ERR_REMOTE);
    /* Wrong argument shapes are exceptions too. */
    ASSERT_RC(s, tvmrpc_syscall(s, TVMRPC_SYS_GET_ATTR, a, 1, &v), TVMRPC_ERR_REMOTE);
    nop_ok(s);
}

static void test_cpu_syscalls(void **state)
{
    tvmrpc_sess_t *s = open_sess();
    syscall_battery(s);
    h_close_sess(s);
}

static void array_battery(tvmrpc_sess_t *s)
{
    tvmrpc_array_t a, b;
    const int64_t shape[2] = {4, 4};
    /* Scopes: none, "global" and "" are CPU memory; others are refused. */
    ASSERT_OK(s, tvmrpc_array_alloc(s, cpu0, 2, shape, f32, NULL, &a));
    assert_true(a.data % 64 == 0);
    ASSERT_OK(s, tvmrpc_array_alloc(s, cpu0, 2, shape, f32, "global", &b));
    ASSERT_OK(s, tvmrpc_array_free(s, &b));
    ASSERT_OK(s, tvmrpc_array_alloc(s, cpu0, 2, shape, f32, "", &b));
    ASSERT_OK(s, tvmrpc_array_free(s, &b));
    ASSERT_RC(s, tvmrpc_array_alloc(s, cpu0, 2, shape, f32, "texture", &b), TVMRPC_ERR_REMOTE);
    tvmrpc_device_t cuda = {2, 0};
    ASSERT_RC(s, tvmrpc_array_alloc(s, cuda, 2, shape, f32, NULL, &b), TVMRPC_ERR_REMOTE);
    float vals[16], back[16];
    for (int i = 0; i < 16; i++)
        vals[i] = 0.5f * (float)i;
    ASSERT_OK(s, tvmrpc_array_copy_from_host(s, &a, vals, sizeof(vals)));
    ASSERT_OK(s, tvmrpc_array_copy_to_host(s, &a, back, sizeof(back)));
    assert_memory_equal(back, vals, sizeof(vals));
    /* Copy among remote arrays. */
    ASSERT_OK(s, tvmrpc_array_alloc(s, cpu0, 2, shape, f32, NULL, &b));
    ASSERT_OK(s, tvmrpc_array_copy(s, &a, &b));
    memset(back, 0, sizeof(back));
    ASSERT_OK(s, tvmrpc_array_copy_to_host(s, &b, back, sizeof(back)));
    assert_memory_equal(back, vals, sizeof(vals));
    /* Out of range on the server: one byte past the allocation. */
    tvmrpc_array_t off = a;
    off.data = a.data + 1;
    ASSERT_RC(s, tvmrpc_array_copy_from_host(s, &off, vals, sizeof(vals)), TVMRPC_ERR_REMOTE);
    expect_error_text(s, "outside memory this session allocated");
    ASSERT_RC(s, tvmrpc_array_copy_to_host(s, &off, back, sizeof(back)), TVMRPC_ERR_REMOTE);
    ASSERT_RC(s, tvmrpc_array_copy(s, &off, &b), TVMRPC_ERR_REMOTE);
    off.data = 0x1000;
    ASSERT_RC(s, tvmrpc_array_copy_to_host(s, &off, back, sizeof(back)), TVMRPC_ERR_REMOTE);
    /* ... and locally: wrong sizes never reach the wire. */
    ASSERT_RC(s, tvmrpc_array_copy_to_host(s, &a, back, sizeof(back) - 1), TVMRPC_ERR_ARG);
    tvmrpc_array_t small;
    ASSERT_OK(s, tvmrpc_array_alloc(s, cpu0, 1, shape, f32, NULL, &small));
    ASSERT_RC(s, tvmrpc_array_copy(s, &a, &small), TVMRPC_ERR_ARG);
    /* The session still works after all that. */
    memset(back, 0, sizeof(back));
    ASSERT_OK(s, tvmrpc_array_copy_to_host(s, &a, back, sizeof(back)));
    assert_memory_equal(back, vals, sizeof(vals));
    ASSERT_OK(s, tvmrpc_array_free(s, &small));
    ASSERT_OK(s, tvmrpc_array_free(s, &b));
    tvmrpc_array_t again = a;
    ASSERT_OK(s, tvmrpc_array_free(s, &a));
    assert_int_equal(a.data, 0);
    ASSERT_RC(s, tvmrpc_array_free(s, &again), TVMRPC_ERR_REMOTE);
    nop_ok(s);
}

static void test_arrays(void **state)
{
    tvmrpc_sess_t *s = open_sess();
    array_battery(s);
    h_close_sess(s);
}

static void test_array_64mib_round_trip(void **state)
{
    tvmrpc_sess_t *s = open_sess();
    const size_t n = (size_t)64 << 20;
    uint8_t *data = pattern(n, 11), *back = malloc(n);
    assert_non_null(back);
    tvmrpc_array_t a;
    int64_t shape[1] = {(int64_t)n};
    ASSERT_OK(s, tvmrpc_array_alloc(s, cpu0, 1, shape, u8, NULL, &a));
    ASSERT_OK(s, tvmrpc_array_copy_from_host(s, &a, data, n));
    memset(back, 0, n);
    ASSERT_OK(s, tvmrpc_array_copy_to_host(s, &a, back, n));
    assert_memory_equal(back, data, n);
    ASSERT_OK(s, tvmrpc_array_free(s, &a));
    free(data);
    free(back);
    h_close_sess(s);
}

/* ---- session lifetime ------------------------------------------------------------ */

static void test_session_timeout(void **state)
{
    int before = h_log_count(&srv, "timed out");
    tvmrpc_sess_t *s = open_gen(srv.port, KEY, 1, test_gen);
    nop_ok(s);
    /* Idle past the 1 s limit: the server says so, then ends the session. */
    assert_int_equal(h_wait_log_count(&srv, "timed out", before, 10000), 0);
    tvmrpc_value_t v;
    ASSERT_RC(s, call2(s, "testing.nop", NULL, 0, &v), TVMRPC_ERR_TIMEOUT);
    assert_string_equal(tvmrpc_last_error(s),
                        "RPCSessionTimeoutError: Your 1.0s session has expired, try to increase "
                        "the \"session_timeout\" value.");
    ASSERT_RC(s, call2(s, "testing.nop", NULL, 0, &v), TVMRPC_ERR_IO);
    h_close_sess(s);
    assert_non_null(strstr(tvmrpc_last_error(NULL), "no session"));
    /* The key carried the option in Python's format. */
    assert_true(h_log_count(&srv, "key=client:" KEY " -timeout=1 started") > 0);
    s = open_sess();
    nop_ok(s);
    h_close_sess(s);
}

/* The unsolicited timeout exception is encoded in the generation the
 * session speaks (§2.5): tag 11 classic, 8 ffi. */
static void timeout_tag(const char *first_hex_payload, uint32_t want_tag)
{
    int before = h_log_count(&srv, "timed out");
    int fd = raw_connect(srv.port);
    raw_hello(fd, "client:" KEY " -timeout=1");
    uint8_t b[1024];
    size_t n;
    assert_int_equal(net_read_full(fd, b, 8 + strlen("server:" KEY), IO_MS, NULL, NULL), 0);
    raw_init(fd, "0.8.0");
    assert_int_equal(raw_recv(fd, b, sizeof(b), &n), RPC_RETURN);
    /* kDevGetAttr(cpu(0), kExist) in the chosen generation: decides it. */
    uint8_t p[64];
    size_t pn = 0;
    for (const char *h = first_hex_payload; *h; h += 2) {
        while (*h == ' ')
            h++;
        unsigned v;
        sscanf(h, "%2x", &v);
        p[pn++] = (uint8_t)v;
    }
    raw_send(fd, RPC_DEV_GET_ATTR, p, pn);
    assert_int_equal(raw_recv(fd, b, sizeof(b), &n), RPC_RETURN);
    assert_int_equal(h_wait_log_count(&srv, "timed out", before, 10000), 0);
    assert_int_equal(raw_recv(fd, b, sizeof(b), &n), RPC_EXCEPTION);
    assert_true(n > 16);
    assert_int_equal(le32(b), 1);
    assert_int_equal(le32(b + 4), want_tag);
    assert_memory_equal(b + 16, "RPCSessionTimeoutError: ", 24);
    assert_true(h_peer_closed(fd, IO_MS));
    h_close_fd(fd);
}

static void test_timeout_exception_generation(void **state)
{
    timeout_tag("02000000 06000000 00000000 01000000 00000000 0000000000000000", 11);
    timeout_tag("02000000 06000000 01000000 00000000 01000000 0000000000000000", 8);
}

static void kill_worker(int sig)
{
    int before = h_log_count(&srv, "worker killed by signal");
    tvmrpc_sess_t *s = open_sess();
    nop_ok(s);
    pid_t kids[8];
    assert_int_equal(h_children(srv.pid, kids, 8), 1);
    assert_int_equal(kill(kids[0], sig), 0);
    /* The next request meets a closed connection: an I/O error, not a hang. */
    tvmrpc_value_t v;
    ASSERT_RC(s, call2(s, "testing.nop", NULL, 0, &v), TVMRPC_ERR_IO);
    ASSERT_RC(s, call2(s, "testing.nop", NULL, 0, &v), TVMRPC_ERR_IO);
    h_close_sess(s);
    assert_int_equal(h_wait_log_count(&srv, "worker killed by signal", before, 10000), 0);
    char want[64];
    snprintf(want, sizeof(want), "worker killed by signal %d", sig);
    assert_true(h_log_count(&srv, want) > 0);
    s = open_sess();
    nop_ok(s);
    h_close_sess(s);
}

static void test_worker_sigkill(void **state)
{
    kill_worker(SIGKILL);
}

static void test_worker_sigsegv(void **state)
{
    kill_worker(SIGSEGV);
}

/* ---- generations ------------------------------------------------------------------- */

static void battery_on(const char *protocol, int forced, int want_gen)
{
    hproc_t *p = h_proc_new();
    const char *extra[] = {"--key", KEY, "--protocol", protocol, NULL};
    assert_int_equal(h_start_server(p, extra), 0);
    tvmrpc_sess_t *s = open_gen(p->port, KEY, 0, forced);
    assert_int_equal(tvmrpc_generation(s), want_gen);
    echo_battery(s);
    workspace_battery(s);
    syscall_battery(s);
    array_battery(s);
    tvmrpc_value_t a = tvmrpc_v_str("x"), v;
    ASSERT_RC(s, call2(s, "rpc.test.except", &a, 1, &v), TVMRPC_ERR_REMOTE);
    assert_string_equal(tvmrpc_last_error(s), "ValueError: x");
    h_close_sess(s);
    h_stop(p);
}

static void test_classic_server(void **state)
{
    battery_on("classic", TVMRPC_GEN_UNKNOWN, TVMRPC_GEN_CLASSIC);
}

static void test_ffi_server(void **state)
{
    battery_on("ffi", TVMRPC_GEN_UNKNOWN, TVMRPC_GEN_FFI);
}

/* An auto server follows a client that speaks ffi from the start. */
static void test_auto_server_ffi_client(void **state)
{
    battery_on("auto", TVMRPC_GEN_FFI, TVMRPC_GEN_FFI);
}

/* Real work in one session of the given generation: echo, a file round
 * trip, an array round trip and a copy among remote arrays. */
static void real_work(int gen)
{
    tvmrpc_sess_t *s = open_gen(srv.port, KEY, 0, gen);
    assert_int_equal(tvmrpc_generation(s), gen);
    tvmrpc_value_t a = tvmrpc_v_str("which generation?"), v;
    ASSERT_OK(s, call2(s, "testing.echo", &a, 1, &v));
    assert_int_equal(v.kind, TVMRPC_STR);
    assert_string_equal(v.u.s.p, "which generation?");
    uint8_t *data = pattern(100000, (uint32_t)gen);
    void *got;
    size_t n;
    ASSERT_OK(s, tvmrpc_upload(s, data, 100000, "mixed.bin"));
    ASSERT_OK(s, tvmrpc_download(s, "mixed.bin", &got, &n));
    assert_int_equal(n, 100000);
    assert_memory_equal(got, data, n);
    free(got);
    tvmrpc_array_t x, y;
    const int64_t shape[1] = {25000};
    ASSERT_OK(s, tvmrpc_array_alloc(s, cpu0, 1, shape, f32, NULL, &x));
    ASSERT_OK(s, tvmrpc_array_alloc(s, cpu0, 1, shape, f32, NULL, &y));
    ASSERT_OK(s, tvmrpc_array_copy_from_host(s, &x, data, 100000));
    ASSERT_OK(s, tvmrpc_array_copy(s, &x, &y));
    uint8_t *back = malloc(100000);
    assert_non_null(back);
    ASSERT_OK(s, tvmrpc_array_copy_to_host(s, &y, back, 100000));
    assert_memory_equal(back, data, 100000);
    free(back);
    free(data);
    ASSERT_OK(s, tvmrpc_array_free(s, &x));
    ASSERT_OK(s, tvmrpc_array_free(s, &y));
    /* The server's own view of the session's generation: it answers a
     * listdir of a missing directory the way that generation's servers do. */
    char *list = NULL;
    int rc = tvmrpc_listdir(s, "missing", &list);
    assert_int_equal(rc, gen == TVMRPC_GEN_FFI ? TVMRPC_OK : TVMRPC_ERR_REMOTE);
    free(list);
    h_close_sess(s);
}

/* The generation is decided per session (PROTOCOL.md §4.12): one auto
 * server serves classic, then ffi, then classic clients again. */
static void test_mixed_generations(void **state)
{
    real_work(TVMRPC_GEN_CLASSIC);
    real_work(TVMRPC_GEN_FFI);
    real_work(TVMRPC_GEN_CLASSIC);
}

/* ... and never switches within one: after a decisive packet, the same
 * request in the other generation is malformed for the session, which
 * ends without a reply. */
static void switch_attempt(int first_ffi)
{
    int before = h_log_count(&srv, "malformed arguments");
    int fd = raw_session(srv.port);
    raw_init(fd, "0.8.0");
    uint8_t b[64];
    size_t n;
    assert_int_equal(raw_recv(fd, b, sizeof(b), &n), RPC_RETURN);
    raw_get_global_gen(fd, "testing.nop", first_ffi);
    assert_int_equal(raw_recv(fd, b, sizeof(b), &n), RPC_RETURN);
    /* one value: a handle, tag 3 (classic) or OpaquePtr 4 (ffi) */
    assert_int_equal(n, 16);
    assert_int_equal(le32(b), 1);
    assert_int_equal(le32(b + 4), first_ffi ? 4 : 3);
    raw_get_global_gen(fd, "testing.nop", !first_ffi);
    assert_int_equal(raw_recv(fd, b, sizeof(b), &n), -1);
    h_close_fd(fd);
    assert_int_equal(h_wait_log_count(&srv, "malformed arguments", before, 5000), 0);
}

static void test_generation_never_switches(void **state)
{
    switch_attempt(0);
    switch_attempt(1);
    real_work(test_gen == TVMRPC_GEN_FFI ? TVMRPC_GEN_FFI : TVMRPC_GEN_CLASSIC);
}

/* A first packed sequence that fits neither generation (tag 14 is invalid
 * in both): the session ends with a log line naming both parse errors and
 * no reply (§4.8); the server goes on serving either generation. */
static void test_undecodable_first_packet(void **state)
{
    const char *needle = "malformed arguments (classic: ";
    int before = h_log_count(&srv, needle);
    uint8_t p[64], b[64];
    size_t n;
    /* As kInitServer's constructor arguments ... */
    int fd = raw_session(srv.port);
    put_le64(p, 5);
    memcpy(p + 8, "0.8.0", 5);
    put_le32(p + 13, 1);
    put_le32(p + 17, 14);
    put_le64(p + 21, 0);
    raw_send(fd, RPC_INIT_SERVER, p, 29);
    assert_int_equal(raw_recv(fd, b, sizeof(b), &n), -1);
    h_close_fd(fd);
    assert_int_equal(h_wait_log_count(&srv, needle, before, 5000), 0);
    /* ... and as the first tagged request after the neutral kInitServer. */
    fd = raw_session(srv.port);
    raw_init(fd, "0.8.0");
    assert_int_equal(raw_recv(fd, b, sizeof(b), &n), RPC_RETURN);
    put_le32(p, 1);
    put_le32(p + 4, 14);
    put_le64(p + 8, 0);
    raw_send(fd, RPC_GET_GLOBAL_FUNC, p, 16);
    assert_int_equal(raw_recv(fd, b, sizeof(b), &n), -1);
    h_close_fd(fd);
    assert_int_equal(h_wait_log_count(&srv, needle, before + 1, 5000), 0);
    if (h_log_count(&srv, "ffi: unknown type index (type index 14)") < 2) {
        h_dump_log(&srv);
        fail_msg("the log does not give the ffi parse error");
    }
    tvmrpc_sess_t *s = open_gen(srv.port, KEY, 0, TVMRPC_GEN_CLASSIC);
    nop_ok(s);
    h_close_sess(s);
    s = open_gen(srv.port, KEY, 0, TVMRPC_GEN_FFI);
    nop_ok(s);
    h_close_sess(s);
}

static void echo_once(tvmrpc_sess_t *s)
{
    tvmrpc_value_t a = tvmrpc_v_str("via tracker"), v;
    ASSERT_OK(s, call2(s, "testing.echo", &a, 1, &v));
    assert_string_equal(v.u.s.p, "via tracker");
}

/* ---- proxy ------------------------------------------------------------------------ */

/* Through `tvmrpc proxy` with a server in --through-proxy mode: the same
 * client call, key = the server's device key (PROTOCOL.md §3). */
static void test_via_proxy(void **state)
{
    hproc_t *px = h_proc_new(), *p = h_proc_new();
    assert_int_equal(h_start_proxy(px, NULL), 0);
    assert_int_equal(h_start_server_through(p, px->port, "pxk", NULL), 0);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(h_wait_log_count(px, "waits for key pxk", round, H_TIMEOUT_MS), 0);
        tvmrpc_sess_t *s = open_gen(px->port, "pxk", 30, test_gen);
        assert_string_equal(tvmrpc_server_key(s), "server:pxk");
        echo_once(s);
        array_battery(s);
        h_close_sess(s);
    }
}

/* ---- tracker -------------------------------------------------------------------------- */

/* A tracker request in the suite's generation. */
static tvmrpc_sess_t *request_sess(int port, const char *key, double session_timeout)
{
    tvmrpc_opts_t o;
    tvmrpc_opts_init(&o);
    o.session_timeout = session_timeout;
    o.timeout_ms = IO_MS;
    o.generation = test_gen;
    char err[512];
    tvmrpc_sess_t *s =
        h_track_sess(tvmrpc_request_opts("127.0.0.1", port, key, 1, 5, &o, err, sizeof(err)));
    if (!s)
        fail_msg("request: %s", err);
    return s;
}

static void test_tracker_request(void **state)
{
    hproc_t *t = h_proc_new(), *p = h_proc_new();
    assert_int_equal(h_start_tracker(t, NULL), 0);
    char taddr[64];
    snprintf(taddr, sizeof(taddr), "127.0.0.1:%d", t->port);
    const char *extra[] = {"--tracker", taddr, "--key", "trk", NULL};
    assert_int_equal(h_start_server(p, extra), 0);
    const char *free1 = "\"trk\": {\"free\": 1";
    assert_int_equal(h_wait_summary(t->port, free1, 1, H_TIMEOUT_MS), 0);
    tvmrpc_sess_t *s = request_sess(t->port, "trk", 0);
    assert_string_equal(tvmrpc_server_key(s), "server:trk");
    echo_once(s);
    h_close_sess(s);
    /* The server offers itself again with a fresh matchkey. */
    assert_int_equal(h_wait_summary(t->port, free1, 1, H_TIMEOUT_MS), 0);
    s = request_sess(t->port, "trk", 5);
    echo_once(s);
    h_close_sess(s);
    assert_true(h_log_count(p, " -timeout=5 started") > 0);
    assert_int_equal(h_wait_summary(t->port, free1, 1, H_TIMEOUT_MS), 0);
    h_stop(p);
    h_stop(t);
}

/* A grant pointing at nothing: one attempt, then TVM's error text. */
static void test_tracker_request_retry_error(void **state)
{
    hproc_t *t = h_proc_new();
    assert_int_equal(h_start_tracker(t, NULL), 0);
    int dead_port = h_free_port();
    assert_true(dead_port > 0);
    int fake = h_track_fd(h_tracker_connect(t->port));
    char req[256];
    snprintf(req, sizeof(req), "[5, {\"key\": \"server:ghost\", \"addr\": [null, %d]}]", dead_port);
    char *r = h_tracker_call(fake, req);
    assert_string_equal(r, "0");
    free(r);
    snprintf(req, sizeof(req), "[3, \"ghost\", [%d, \"ghost:0.5\"], null]", dead_port);
    r = h_tracker_call(fake, req);
    assert_string_equal(r, "0");
    free(r);
    char msg[1024], want[256];
    assert_null(tvmrpc_request("127.0.0.1", t->port, "ghost", 1, 0, 1, msg, sizeof(msg)));
    snprintf(want, sizeof(want),
             "Cannot request ghost after 1 retry, last_error:Connect to 127.0.0.1:%d failed",
             dead_port);
    if (strncmp(msg, want, strlen(want)) != 0)
        fail_msg("got '%s'", msg);
    assert_null(tvmrpc_request("127.0.0.1", t->port, "ghost", 1, 0, 0, msg, sizeof(msg)));
    assert_string_equal(msg, "Cannot request ghost after 0 retry, last_error:None");
    h_close_fd(fake);
    h_stop(t);
    /* No tracker at all. */
    assert_null(tvmrpc_request("127.0.0.1", t->port, "ghost", 1, 0, 1, msg, sizeof(msg)));
    assert_non_null(strstr(msg, "cannot connect to tracker"));
}

static int start_tracker_on(hproc_t *t, int port)
{
    char p0[16], p1[16];
    snprintf(p0, sizeof(p0), "%d", port);
    snprintf(p1, sizeof(p1), "%d", port + 1);
    const char *argv[] = {"tracker", "--host", "127.0.0.1", "--port", p0, "--port-end", p1, NULL};
    return h_spawn_bound(t, argv);
}

/* The tracker restarts on the same port: the server registers again by itself. */
static void test_tracker_restart(void **state)
{
    int port = h_free_port();
    assert_true(port > 0);
    hproc_t *t = h_proc_new(), *p = h_proc_new();
    assert_int_equal(start_tracker_on(t, port), 0);
    char taddr[64];
    snprintf(taddr, sizeof(taddr), "127.0.0.1:%d", port);
    const char *extra[] = {"--tracker", taddr, "--key", "rst", NULL};
    assert_int_equal(h_start_server(p, extra), 0);
    const char *free1 = "\"rst\": {\"free\": 1";
    assert_int_equal(h_wait_summary(port, free1, 1, H_TIMEOUT_MS), 0);
    h_stop(t);
    int64_t t0 = h_now_ms();
    assert_int_equal(start_tracker_on(t, port), 0);
    /* Backoff starts at 1 s and the link is polled every 2 s. */
    if (h_wait_summary(port, free1, 1, 45000) < 0) {
        h_dump_log(p);
        fail_msg("the server did not register with the restarted tracker");
    }
    fprintf(stderr, "    re-registered %lld ms after the tracker restart\n",
            (long long)(h_now_ms() - t0));
    tvmrpc_sess_t *s = request_sess(port, "rst", 0);
    echo_once(s);
    h_close_sess(s);
    h_stop(p);
    h_stop(t);
}

int main(void)
{
    const char *gen = getenv("TVMRPC_TEST_GEN");
    if (gen && strcmp(gen, "ffi") == 0)
        test_gen = TVMRPC_GEN_FFI;
    else if (gen && *gen && strcmp(gen, "classic") != 0) {
        fprintf(stderr, "TVMRPC_TEST_GEN must be classic or ffi, not %s\n", gen);
        return 2;
    }
    fprintf(stderr, "generation under test: %s\n", is_ffi() ? "ffi" : "classic");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_connect_and_key, cleanup),
        cmocka_unit_test_teardown(test_raw_wrong_key, cleanup),
        cmocka_unit_test_teardown(test_raw_wrong_magic, cleanup),
        cmocka_unit_test_teardown(test_raw_key_too_long, cleanup),
        cmocka_unit_test_teardown(test_silent_peer, cleanup),
        cmocka_unit_test_teardown(test_raw_before_init, cleanup),
        cmocka_unit_test_teardown(test_raw_oversized_packet, cleanup),
        cmocka_unit_test_teardown(test_echo_kinds, cleanup),
        cmocka_unit_test_teardown(test_echo_function_handle_refcount, cleanup),
        cmocka_unit_test_teardown(test_echo_unknown_handles, cleanup),
        cmocka_unit_test_teardown(test_testing_helpers, cleanup),
        cmocka_unit_test_teardown(test_shape_objects, cleanup),
        cmocka_unit_test_teardown(test_made_functions, cleanup),
        cmocka_unit_test_teardown(test_server_owned_arrays, cleanup),
        cmocka_unit_test_teardown(test_unknown_global_and_handles, cleanup),
        cmocka_unit_test_teardown(test_workspace, cleanup),
        cmocka_unit_test_teardown(test_path_escapes, cleanup),
        cmocka_unit_test_teardown(test_cpu_syscalls, cleanup),
        cmocka_unit_test_teardown(test_arrays, cleanup),
        cmocka_unit_test_teardown(test_array_64mib_round_trip, cleanup),
        cmocka_unit_test_teardown(test_session_timeout, cleanup),
        cmocka_unit_test_teardown(test_timeout_exception_generation, cleanup),
        cmocka_unit_test_teardown(test_worker_sigkill, cleanup),
        cmocka_unit_test_teardown(test_worker_sigsegv, cleanup),
        cmocka_unit_test_teardown(test_classic_server, cleanup),
        cmocka_unit_test_teardown(test_ffi_server, cleanup),
        cmocka_unit_test_teardown(test_auto_server_ffi_client, cleanup),
        cmocka_unit_test_teardown(test_mixed_generations, cleanup),
        cmocka_unit_test_teardown(test_generation_never_switches, cleanup),
        cmocka_unit_test_teardown(test_undecodable_first_packet, cleanup),
        cmocka_unit_test_teardown(test_via_proxy, cleanup),
        cmocka_unit_test_teardown(test_tracker_request, cleanup),
        cmocka_unit_test_teardown(test_tracker_request_retry_error, cleanup),
        cmocka_unit_test_teardown(test_tracker_restart, cleanup),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
