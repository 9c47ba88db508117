/* The client library (include/tvmrpc/client.h) without a real server:
 * keys, chunk plans, value translation and reply parsing against the
 * spec's hex examples (PROTOCOL.md §2.3, §4.10, §4.12, §4.13), then whole
 * sessions against scripted in-process servers on 127.0.0.1: the recorded
 * TVM sessions (the client must send exactly what TVM's Python client
 * sent), chunked copies, handshake refusals and unsolicited exceptions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/net.h"
#include "client/rpc_client.h"
#include "trace.h"
#include "tvmrpc/client.h"

#define IO_MS 10000

static size_t hex(const char *s, uint8_t *out)
{
    size_t n = 0;
    while (*s) {
        if (*s == ' ' || *s == '\n') {
            s++;
            continue;
        }
        unsigned v;
        sscanf(s, "%2x", &v);
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

static void expect_hex(const uint8_t *got, size_t n, const char *want_hex)
{
    uint8_t want[512];
    size_t wn = hex(want_hex, want);
    assert_int_equal(n, wn);
    assert_memory_equal(got, want, wn);
}

/* ---- keys (§2.3) ------------------------------------------------------------ */

static void test_key_format(void **state)
{
    char k[256];
    assert_int_equal(rcl_format_key(k, sizeof(k), "", 0), 0);
    assert_string_equal(k, "client:");
    assert_int_equal(rcl_format_key(k, sizeof(k), NULL, 0), 0);
    assert_string_equal(k, "client:");
    assert_int_equal(rcl_format_key(k, sizeof(k), "rasp3b:0.7151893663724195", 60), 0);
    assert_string_equal(k, "client:rasp3b:0.7151893663724195 -timeout=60");
    /* Whole seconds print as Python ints (also what TVM's C++ server parses). */
    assert_int_equal(rcl_format_key(k, sizeof(k), "k", 10.0), 0);
    assert_string_equal(k, "client:k -timeout=10");
    assert_int_equal(rcl_format_key(k, sizeof(k), "k", 2.5), 0);
    assert_string_equal(k, "client:k -timeout=2.5");
    assert_int_equal(rcl_format_key(k, sizeof(k), "k", 0.1), 0);
    assert_string_equal(k, "client:k -timeout=0.1");
    assert_int_equal(rcl_format_key(k, sizeof(k), "k", 1e-05), 0);
    assert_string_equal(k, "client:k -timeout=1e-05");
    assert_int_equal(rcl_format_key(k, sizeof(k), "k", -1), -1);
    assert_int_equal(rcl_format_key(k, sizeof(k), "k", NAN), -1);
    assert_int_equal(rcl_format_key(k, sizeof(k), "k", INFINITY), -1);
    /* Too long for the buffer, or for a server (RPC_MAX_KEY_LEN). */
    assert_int_equal(rcl_format_key(k, 10, "abcdef", 0), -1);
    char big[RPC_MAX_KEY_LEN + 1], out[RPC_MAX_KEY_LEN + 64];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(rcl_format_key(out, sizeof(out), big, 0), -1);
}

static void test_number_format(void **state)
{
    char n[64];
    rcl_format_number(n, sizeof(n), 1);
    assert_string_equal(n, "1");
    rcl_format_number(n, sizeof(n), 123456789);
    assert_string_equal(n, "123456789");
    rcl_format_number(n, sizeof(n), 0.3);
    assert_string_equal(n, "0.3");
    rcl_format_number(n, sizeof(n), 1.0 / 3);
    assert_string_equal(n, "0.3333333333333333");
}

/* ---- chunk plans (§4.10) ------------------------------------------------------ */

static void test_chunk_plan(void **state)
{
    uint64_t block, count;
    /* No limit from the server: one packet, whatever the size. */
    assert_int_equal(rcl_plan_chunks(1 << 30, 0, 2, &block, &count), 0);
    assert_int_equal(block, 1 << 30);
    assert_int_equal(count, 1);
    assert_int_equal(rcl_plan_chunks(0, 0, 1, &block, &count), 0);
    assert_int_equal(count, 1);
    /* overhead = 44 + 8 * ndim: 52 for ndim 1, 60 for ndim 2 */
    assert_int_equal(RCL_COPY_OVERHEAD(1), 52);
    assert_int_equal(rcl_plan_chunks(64, 52, 1, &block, &count), -1);
    assert_int_equal(rcl_plan_chunks(64, 53, 1, &block, &count), 0);
    assert_int_equal(block, 1);
    assert_int_equal(count, 64);
    assert_int_equal(rcl_plan_chunks(64, 76, 2, &block, &count), 0);
    assert_int_equal(block, 16);
    assert_int_equal(count, 4);
    assert_int_equal(rcl_plan_chunks(65, 76, 2, &block, &count), 0);
    assert_int_equal(count, 5); /* 4 full blocks and a 1-byte remainder */
    assert_int_equal(rcl_plan_chunks(15, 76, 2, &block, &count), 0);
    assert_int_equal(count, 1);
    assert_int_equal(rcl_plan_chunks(0, 76, 2, &block, &count), 0);
    assert_int_equal(count, 1);
}

/* ---- replies ---------------------------------------------------------------- */

static void test_init_generation(void **state)
{
    uint8_t p[16];
    /* payloads after the code: neutral (§4.13.1), classic C1, ffi F1 */
    assert_int_equal(rcl_init_generation(p, hex("00 00 00 00", p)), TVMRPC_GEN_UNKNOWN);
    assert_int_equal(rcl_init_generation(p, hex("01 00 00 00 04 00 00 00", p)), TVMRPC_GEN_CLASSIC);
    assert_int_equal(rcl_init_generation(p, hex("01 00 00 00 00 00 00 00", p)), TVMRPC_GEN_FFI);
    assert_int_equal(rcl_init_generation(p, hex("01 00 00 00 0B 00 00 00", p)), -1);
    assert_int_equal(rcl_init_generation(p, hex("02 00 00 00 04 00 00 00", p)), -1);
    assert_int_equal(rcl_init_generation(p, hex("00 00 00", p)), -1);
    assert_int_equal(rcl_init_generation(p, hex("00 00 00 00 00", p)), -1);
}

static void test_exception_text(void **state)
{
    uint8_t p[256];
    const char *msg;
    size_t len;
    /* C4 payload (classic tag 11) */
    size_t n = hex("01 00 00 00 0B 00 00 00 10 00 00 00 00 00 00 00 56 61 6C 75 65 45 72 72 6F 72 "
                   "3A 20 62 6F 6F 6D",
                   p);
    assert_int_equal(rcl_exception_text(p, n, &msg, &len), 0);
    assert_int_equal(len, 16);
    assert_memory_equal(msg, "ValueError: boom", 16);
    assert_int_equal(rcl_exception_code(msg, len), TVMRPC_ERR_REMOTE);
    /* ffi RawStr (tag 8) */
    p[4] = 8;
    assert_int_equal(rcl_exception_text(p, n, &msg, &len), 0);
    assert_memory_equal(msg, "ValueError: boom", 16);
    /* Truncated, or not a string */
    assert_int_equal(rcl_exception_text(p, n - 1, &msg, &len), -1);
    n = hex("01 00 00 00 00 00 00 00 05 00 00 00 00 00 00 00", p);
    assert_int_equal(rcl_exception_text(p, n, &msg, &len), -1);
    const char *t = "RPCSessionTimeoutError: Your 1.0s session has expired";
    assert_int_equal(rcl_exception_code(t, strlen(t)), TVMRPC_ERR_TIMEOUT);
    assert_int_equal(rcl_exception_code("RPCSessionTimeoutError", 22), TVMRPC_ERR_REMOTE);
}

/* ---- requests against the spec's hex ---------------------------------------- */

static void encode(const rpc_codec_t *c, const tvmrpc_value_t *args, int n, buf_t *out)
{
    rpc_value_t w[8];
    rpc_tensor_t t[8];
    char err[128];
    buf_reset(out);
    for (int i = 0; i < n; i++)
        assert_int_equal(rcl_to_wire(&args[i], &w[i], &t[i], err, sizeof(err)), TVMRPC_OK);
    assert_int_equal(c->encode_args(out, w, n), 0);
}

static void test_args_match_spec(void **state)
{
    buf_t b;
    buf_init(&b, 0);
    /* C3 arguments: "abc", 42 */
    tvmrpc_value_t a[2] = {tvmrpc_v_str("abc"), tvmrpc_v_int(42)};
    encode(&rpc_codec_classic, a, 2, &b);
    expect_hex(buf_head(&b), b.len,
               "02 00 00 00 0B 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00 61 62 63 2A 00 00 00 "
               "00 00 00 00");
    /* C5a: float32[4] template on cpu(0), scope null */
    tvmrpc_array_t arr;
    memset(&arr, 0, sizeof(arr));
    arr.dev.type = 1;
    arr.ndim = 1;
    arr.dtype.code = 2;
    arr.dtype.bits = 32;
    arr.dtype.lanes = 1;
    arr.shape[0] = 4;
    tvmrpc_value_t c5[2] = {tvmrpc_v_tensor(&arr), tvmrpc_v_none()};
    encode(&rpc_codec_classic, c5, 2, &b);
    expect_hex(buf_head(&b), b.len,
               "02 00 00 00 07 00 00 00 04 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 "
               "00 01 00 00 00 02 20 01 00 04 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00");
    /* C9: kDevGetAttr(cuda(0), kExist) */
    tvmrpc_value_t c9[2] = {tvmrpc_v_device(2, 0), tvmrpc_v_int(0)};
    encode(&rpc_codec_classic, c9, 2, &b);
    expect_hex(buf_head(&b), b.len,
               "02 00 00 00 06 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 "
               "00");
    /* C5d: kDevStreamSync(cpu(0), null stream) */
    tvmrpc_value_t c5d[2] = {tvmrpc_v_device(1, 0), tvmrpc_v_handle(TVMRPC_HANDLE, 0)};
    encode(&rpc_codec_classic, c5d, 2, &b);
    expect_hex(buf_head(&b), b.len,
               "02 00 00 00 06 00 00 00 03 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 "
               "00");
    buf_free(&b);
}

static void test_free_args(void **state)
{
    rpc_value_t w[2];
    buf_t b;
    buf_init(&b, 0);
    /* C7: classic frees carry the type code (10 = function) */
    int n = rcl_free_args(TVMRPC_GEN_CLASSIC, 0x00007F0000001000ull, TVMRPC_FUNC, w);
    assert_int_equal(n, 2);
    rpc_codec_classic.encode_args(&b, w, n);
    expect_hex(buf_head(&b), b.len,
               "02 00 00 00 03 00 00 00 00 00 00 00 00 10 00 00 00 7F 00 00 0A 00 00 00 00 00 00 "
               "00");
    assert_int_equal(rcl_free_args(TVMRPC_GEN_UNKNOWN, 1, TVMRPC_MODULE, w), 2);
    assert_int_equal(w[1].u.i, 9);
    assert_int_equal(rcl_free_args(TVMRPC_GEN_CLASSIC, 1, TVMRPC_OBJECT, w), 2);
    assert_int_equal(w[1].u.i, 8);
    assert_int_equal(rcl_free_args(TVMRPC_GEN_CLASSIC, 1, TVMRPC_TENSOR, w), 2);
    assert_int_equal(w[1].u.i, 13);
    /* ffi: the handle alone, index 4 */
    n = rcl_free_args(TVMRPC_GEN_FFI, 0x00007F0000001000ull, TVMRPC_FUNC, w);
    assert_int_equal(n, 1);
    buf_reset(&b);
    rpc_codec_ffi.encode_args(&b, w, n);
    expect_hex(buf_head(&b), b.len, "01 00 00 00 04 00 00 00 00 10 00 00 00 7F 00 00");
    assert_int_equal(rcl_free_args(TVMRPC_GEN_CLASSIC, 1, TVMRPC_INT, w), -1);
    assert_int_equal(rcl_free_args(TVMRPC_GEN_CLASSIC, 1, TVMRPC_HANDLE, w), -1);
    buf_free(&b);
}

static void test_copy_headers(void **state)
{
    rpc_tensor_t t;
    memset(&t, 0, sizeof(t));
    t.data = 0x00007F0000002000ull;
    t.dev.type = 1;
    t.ndim = 1;
    t.dtype.code = 2;
    t.dtype.bits = 32;
    t.dtype.lanes = 1;
    t.shape[0] = 4;
    buf_t b;
    buf_init(&b, 0);
    /* C5c without its 16 data bytes: packet_nbytes counts them */
    rcl_copy_header(&b, RPC_COPY_TO_REMOTE, &t, 16);
    expect_hex(buf_head(&b), b.len,
               "44 00 00 00 00 00 00 00 07 00 00 00 00 20 00 00 00 7F 00 00 01 00 00 00 00 00 00 "
               "00 01 00 00 00 02 20 01 00 04 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 10 00 "
               "00 00 00 00 00 00");
    /* C6 exactly */
    buf_reset(&b);
    rcl_copy_header(&b, RPC_COPY_FROM_REMOTE, &t, 16);
    expect_hex(buf_head(&b), b.len,
               "34 00 00 00 00 00 00 00 06 00 00 00 00 20 00 00 00 7F 00 00 01 00 00 00 00 00 00 "
               "00 01 00 00 00 02 20 01 00 04 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 10 00 "
               "00 00 00 00 00 00");
    buf_free(&b);
}

static void test_value_translation(void **state)
{
    rpc_value_t w;
    rpc_tensor_t t;
    tvmrpc_value_t back;
    tvmrpc_array_t arr;
    char err[128];
    tvmrpc_value_t vals[] = {
        tvmrpc_v_none(),
        tvmrpc_v_int(INT64_MIN),
        tvmrpc_v_bool(7),
        tvmrpc_v_float(-0.25),
        tvmrpc_v_str("hi"),
        tvmrpc_v_bytes("\0\1\2", 3),
        tvmrpc_v_handle(TVMRPC_HANDLE, 5),
        tvmrpc_v_handle(TVMRPC_FUNC, 6),
        tvmrpc_v_handle(TVMRPC_MODULE, 7),
        tvmrpc_v_handle(TVMRPC_OBJECT, 8),
        tvmrpc_v_device(1, 3),
        tvmrpc_v_dtype(2, 16, 4),
    };
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        assert_int_equal(rcl_to_wire(&vals[i], &w, &t, err, sizeof(err)), TVMRPC_OK);
        rcl_from_wire(&w, &back, &arr);
        assert_int_equal(back.kind, vals[i].kind);
        if (vals[i].kind == TVMRPC_STR || vals[i].kind == TVMRPC_BYTES) {
            assert_int_equal(back.u.s.len, vals[i].u.s.len);
            assert_memory_equal(back.u.s.p, vals[i].u.s.p, vals[i].u.s.len);
        } else if (vals[i].kind == TVMRPC_BOOL) {
            assert_int_equal(back.u.i, 1);
        } else if (vals[i].kind != TVMRPC_NONE) {
            assert_memory_equal(&back.u, &vals[i].u, sizeof(back.u.dev));
        }
    }
    /* Refused locally: devices outside 1..127 would make a server drop us. */
    tvmrpc_value_t bad = tvmrpc_v_device(0, 0);
    assert_int_equal(rcl_to_wire(&bad, &w, &t, err, sizeof(err)), TVMRPC_ERR_ARG);
    bad = tvmrpc_v_device(129, 0);
    assert_int_equal(rcl_to_wire(&bad, &w, &t, err, sizeof(err)), TVMRPC_ERR_ARG);
    memset(&arr, 0, sizeof(arr));
    arr.dev.type = 1;
    arr.ndim = 33;
    bad = tvmrpc_v_tensor(&arr);
    assert_int_equal(rcl_to_wire(&bad, &w, &t, err, sizeof(err)), TVMRPC_ERR_ARG);
    arr.ndim = 1;
    arr.shape[0] = -1;
    assert_int_equal(rcl_to_wire(&bad, &w, &t, err, sizeof(err)), TVMRPC_ERR_ARG);
    bad = tvmrpc_v_tensor(NULL);
    assert_int_equal(rcl_to_wire(&bad, &w, &t, err, sizeof(err)), TVMRPC_ERR_ARG);
    bad.kind = (tvmrpc_kind_t)99;
    assert_int_equal(rcl_to_wire(&bad, &w, &t, err, sizeof(err)), TVMRPC_ERR_ARG);
    bad = tvmrpc_v_bytes(NULL, 3);
    assert_int_equal(rcl_to_wire(&bad, &w, &t, err, sizeof(err)), TVMRPC_ERR_ARG);
}

static void test_call_results(void **state)
{
    uint8_t p[256];
    rpc_value_t w;
    rpc_tensor_t t;
    tvmrpc_value_t v;
    tvmrpc_array_t arr;
    char err[128];
    /* C3 reply: "abc:42" */
    size_t n = hex("02 00 00 00 00 00 00 00 0B 00 00 00 0B 00 00 00 00 00 00 00 06 00 00 00 00 00 "
                   "00 00 61 62 63 3A 34 32",
                   p);
    rd_t r = rd_make(p, n);
    assert_int_equal(rpc_codec_classic.decode_call_result(&r, &w, &t, err, sizeof(err)), 0);
    rcl_from_wire(&w, &v, &arr);
    assert_int_equal(v.kind, TVMRPC_STR);
    assert_int_equal(v.u.s.len, 6);
    assert_memory_equal(v.u.s.p, "abc:42", 6);
    /* C8: an NDArray float32[10] with its object handle */
    n = hex("03 00 00 00 00 00 00 00 07 00 00 00 03 00 00 00 0D 00 00 00 00 00 00 00 00 20 00 00 "
            "00 7F 00 00 01 00 00 00 00 00 00 00 01 00 00 00 02 20 01 00 0A 00 00 00 00 00 00 00 "
            "00 00 00 00 00 00 00 00 00 40 00 00 00 7F 00 00",
            p);
    r = rd_make(p, n);
    assert_int_equal(rpc_codec_classic.decode_call_result(&r, &w, &t, err, sizeof(err)), 0);
    rcl_from_wire(&w, &v, &arr);
    assert_int_equal(v.kind, TVMRPC_TENSOR);
    assert_ptr_equal(v.u.arr, &arr);
    assert_int_equal(arr.data, 0x00007F0000002000ull);
    assert_int_equal(arr.handle, 0x00007F0000004000ull);
    assert_int_equal(arr.ndim, 1);
    assert_int_equal(arr.shape[0], 10);
    assert_int_equal(arr.dtype.bits, 32);
    assert_int_equal(tvmrpc_array_nbytes(&arr), 40);
}

static void test_tracker_messages(void **state)
{
    char *req = rcl_request_text("rasp\"3b", 1);
    assert_string_equal(req, "[4, \"rasp\\\"3b\", \"\", 1]");
    free(req);
    const char *text = "[0, [\"127.0.0.1\", 9640, \"t1:0.9035544610277166\"]]";
    json_t *j = json_parse(text, strlen(text), NULL, NULL, 0);
    char host[64], mk[64];
    int port;
    assert_int_equal(rcl_parse_grant(j, host, sizeof(host), &port, mk, sizeof(mk)), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 9640);
    assert_string_equal(mk, "t1:0.9035544610277166");
    json_free(j);
    const char *bad[] = {"[1, [\"h\", 1, \"k\"]]",
                         "[0, [\"h\", 0, \"k\"]]",
                         "[0, [\"h\", 1]]",
                         "[0, [null, 1, \"k\"]]",
                         "[0]",
                         "0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = json_parse(bad[i], strlen(bad[i]), NULL, NULL, 0);
        assert_non_null(j);
        assert_int_equal(rcl_parse_grant(j, host, sizeof(host), &port, mk, sizeof(mk)), -1);
        json_free(j);
    }
}

static void test_strerror(void **state)
{
    assert_string_equal(tvmrpc_strerror(TVMRPC_ERR_TIMEOUT), "session timed out");
    assert_string_equal(tvmrpc_strerror(TVMRPC_ERR_REMOTE), "remote error");
    assert_string_equal(tvmrpc_strerror(42), "unknown error");
}

/* ---- scripted servers on 127.0.0.1 ---------------------------------------------- */

typedef struct fake fake_t;
typedef void fake_script(fake_t *f, int fd);

struct fake {
    int lfd, port;
    pthread_t th;
    fake_script *script;
    void *arg;
    char fail[1024]; /* first problem the script saw; checked after the join */
};

static void fk_fail(fake_t *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fk_fail(fake_t *f, const char *fmt, ...)
{
    if (f->fail[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->fail, sizeof(f->fail), fmt, ap);
    va_end(ap);
}

static void *fake_main(void *p)
{
    fake_t *f = p;
    struct pollfd pf = {.fd = f->lfd, .events = POLLIN};
    if (poll(&pf, 1, IO_MS) <= 0) {
        fk_fail(f, "no client connected");
        return NULL;
    }
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0) {
        fk_fail(f, "accept failed");
        return NULL;
    }
    f->script(f, fd);
    close(fd);
    return NULL;
}

static void fake_start(fake_t *f, fake_script *script, void *arg)
{
    memset(f, 0, sizeof(*f));
    char err[NET_ERR_LEN];
    f->lfd = net_listen_range("127.0.0.1", 0, 0, 4, &f->port, err);
    assert_true(f->lfd >= 0);
    f->script = script;
    f->arg = arg;
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_join(fake_t *f)
{
    pthread_join(f->th, NULL);
    close(f->lfd);
    if (f->fail[0])
        fail_msg("scripted server: %s", f->fail);
}

static int fk_read(fake_t *f, int fd, void *p, size_t n)
{
    char err[NET_ERR_LEN];
    if (net_read_full(fd, p, n, IO_MS, NULL, err) < 0) {
        fk_fail(f, "read: %s", err);
        return -1;
    }
    return 0;
}

static void fk_write(int fd, const void *p, size_t n)
{
    net_write_full(fd, p, n, IO_MS, NULL);
}

/* Read the client's handshake and answer with status (+ key on success). */
static int fk_handshake(fake_t *f, int fd, uint32_t status, const char *key)
{
    uint8_t h[8];
    char ckey[512];
    if (fk_read(f, fd, h, 8) < 0 || le32(h) != RPC_MAGIC || le32(h + 4) >= sizeof(ckey) ||
        fk_read(f, fd, ckey, le32(h + 4)) < 0) {
        fk_fail(f, "bad handshake");
        return -1;
    }
    uint8_t r[512];
    put_le32(r, status);
    size_t n = 4;
    if (status == RPC_CODE_SUCCESS) {
        put_le32(r + 4, (uint32_t)strlen(key));
        memcpy(r + 8, key, strlen(key));
        n = 8 + strlen(key);
    }
    fk_write(fd, r, n);
    return 0;
}

/* Next packet: code and body (malloc'ed). -1 at EOF or error. */
static int fk_packet(fake_t *f, int fd, int32_t *code, uint8_t **body, size_t *len)
{
    uint8_t h[12];
    if (net_read_full(fd, h, 12, IO_MS, NULL, NULL) < 0)
        return -1;
    *code = (int32_t)le32(h + 8);
    *len = (size_t)le64(h) - 4;
    *body = malloc(*len + 1);
    if (!*body || fk_read(f, fd, *body, *len) < 0) {
        free(*body);
        return -1;
    }
    return 0;
}

static void fk_send(int fd, int32_t code, const uint8_t *payload, size_t n)
{
    uint8_t h[12];
    put_le64(h, 4 + n);
    put_le32(h + 8, (uint32_t)code);
    struct iovec iov[2] = {{h, 12}, {(void *)payload, n}};
    net_writev_full(fd, iov, 2, IO_MS, NULL);
}

static void fk_send_hex(int fd, int32_t code, const char *payload_hex)
{
    uint8_t p[256];
    fk_send(fd, code, p, hex(payload_hex, p));
}

static int fk_init(fake_t *f, int fd, const char *reply_hex)
{
    int32_t code;
    uint8_t *body;
    size_t len;
    if (fk_handshake(f, fd, RPC_CODE_SUCCESS, "server:fake") < 0 ||
        fk_packet(f, fd, &code, &body, &len) < 0)
        return -1;
    free(body);
    if (code != RPC_INIT_SERVER || len != 17) {
        fk_fail(f, "expected the 29-byte kInitServer");
        return -1;
    }
    fk_send_hex(fd, RPC_RETURN, reply_hex);
    return 0;
}

/* ---- replay of recorded TVM sessions ---------------------------------------------- */

typedef struct replay {
    trace_t t;
    trace_unit_t *cu, *su; /* client requests, server replies, in order */
    size_t ncu, nsu;
} replay_t;

static void replay_load(replay_t *r, const char *name)
{
    char err[256];
    memset(r, 0, sizeof(*r));
    if (trace_load_named(&r->t, name, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    assert_int_equal(trace_split_units(trace_stream(&r->t, 0, TRACE_C2S), TRACE_PROTO_RPC,
                                       TRACE_C2S, &r->cu, &r->ncu, err, sizeof(err)),
                     0);
    assert_int_equal(trace_split_units(trace_stream(&r->t, 0, TRACE_S2C), TRACE_PROTO_RPC,
                                       TRACE_S2C, &r->su, &r->nsu, err, sizeof(err)),
                     0);
}

static void replay_free(replay_t *r)
{
    free(r->cu);
    free(r->su);
    trace_free(&r->t);
}

/* The recorded server: every request must be byte-identical to what TVM's
 * Python client sent; it is answered with the recorded reply. Requests and
 * replies pair up in order (strictly request/response); kShutdown, the
 * last request, has none. */
static void replay_script(fake_t *f, int fd)
{
    replay_t *r = f->arg;
    const trace_stream_t *cs = trace_stream(&r->t, 0, TRACE_C2S);
    const trace_stream_t *ss = trace_stream(&r->t, 0, TRACE_S2C);
    for (size_t i = 0; i < r->ncu; i++) {
        const trace_unit_t *u = &r->cu[i];
        uint8_t *got = malloc(u->len);
        if (!got || fk_read(f, fd, got, u->len) < 0) {
            fk_fail(f, "request %zu (code %lld): client sent less than recorded", i,
                    (long long)u->code);
            free(got);
            return;
        }
        for (size_t k = 0; k < u->len; k++) {
            if (got[k] != cs->data[u->off + k]) {
                fk_fail(f, "request %zu (code %lld) differs at byte %zu: got %02x, TVM sent %02x",
                        i, (long long)u->code, k, got[k], cs->data[u->off + k]);
                free(got);
                return;
            }
        }
        free(got);
        if (i < r->nsu)
            fk_write(fd, ss->data + r->su[i].off, r->su[i].len);
    }
    if (net_read_full(fd, &(char){0}, 1, IO_MS, NULL, NULL) == 0)
        fk_fail(f, "client sent more than recorded");
}

/* What the trace's client script did (README.md, scenario 1). */
static void run_session_scenario(int port, int want_gen)
{
    char err[256];
    tvmrpc_sess_t *s = tvmrpc_connect("127.0.0.1", port, "", 0, err, sizeof(err));
    assert_non_null(s);
    assert_string_equal(tvmrpc_server_key(s), "server:");
    assert_int_equal(tvmrpc_generation(s), want_gen);
    uint64_t echo;
    assert_int_equal(tvmrpc_get_func(s, "testing.echo", &echo), 0);
    tvmrpc_value_t v, a = tvmrpc_v_int(42);
    assert_int_equal(tvmrpc_call(s, echo, &a, 1, &v), 0);
    assert_int_equal(v.kind, TVMRPC_INT);
    assert_int_equal(v.u.i, 42);
    a = tvmrpc_v_float(3.5);
    assert_int_equal(tvmrpc_call(s, echo, &a, 1, &v), 0);
    assert_int_equal(v.kind, TVMRPC_FLOAT);
    assert_true(v.u.f == 3.5);
    a = tvmrpc_v_str("hello, tvm rpc");
    assert_int_equal(tvmrpc_call(s, echo, &a, 1, &v), 0);
    assert_int_equal(v.kind, TVMRPC_STR);
    assert_string_equal(v.u.s.p, "hello, tvm rpc");
    uint8_t b16[16], blob[1024], back[16 * 4];
    for (int i = 0; i < 16; i++)
        b16[i] = (uint8_t)i;
    a = tvmrpc_v_bytes(b16, 16);
    assert_int_equal(tvmrpc_call(s, echo, &a, 1, &v), 0);
    assert_int_equal(v.kind, TVMRPC_BYTES);
    assert_int_equal(v.u.s.len, 16);
    assert_memory_equal(v.u.s.p, b16, 16);
    for (int i = 0; i < 1024; i++)
        blob[i] = (uint8_t)i;
    assert_int_equal(tvmrpc_upload(s, blob, sizeof(blob), "trace_blob.bin"), 0);
    void *dl;
    size_t dlen;
    assert_int_equal(tvmrpc_download(s, "trace_blob.bin", &dl, &dlen), 0);
    assert_int_equal(dlen, 1024);
    assert_memory_equal(dl, blob, 1024);
    free(dl);
    assert_int_equal(tvmrpc_remove(s, "trace_blob.bin"), 0);
    tvmrpc_array_t arr;
    const int64_t shape[2] = {4, 4};
    tvmrpc_device_t cpu = {1, 0};
    tvmrpc_dtype_t f32 = {2, 32, 1};
    assert_int_equal(tvmrpc_array_alloc(s, cpu, 2, shape, f32, NULL, &arr), 0);
    float vals[16];
    for (int i = 0; i < 16; i++)
        vals[i] = 0.5f * (float)i;
    assert_int_equal(tvmrpc_array_copy_from_host(s, &arr, vals, sizeof(vals)), 0);
    assert_int_equal(tvmrpc_array_copy_to_host(s, &arr, back, sizeof(back)), 0);
    assert_memory_equal(back, vals, sizeof(vals));
    assert_int_equal(tvmrpc_array_free(s, &arr), 0);
    assert_int_equal(tvmrpc_free_handle(s, echo, TVMRPC_FUNC), 0);
    tvmrpc_close(s);
}

static void replay_session(const char *file, int gen)
{
    replay_t r;
    replay_load(&r, file);
    fake_t f;
    fake_start(&f, replay_script, &r);
    run_session_scenario(f.port, gen);
    fake_join(&f);
    replay_free(&r);
}

static void test_replay_classic_session(void **state)
{
    replay_session("v0.20-session-py.txt", TVMRPC_GEN_CLASSIC);
}

static void test_replay_ffi_session(void **state)
{
    replay_session("v0.26-session-py.txt", TVMRPC_GEN_FFI);
}

/* ---- chunked copies (§4.10) ----------------------------------------------------- */

#define CHUNK_MAX 100 /* the scripted server's GetCRTMaxPacketSize */

typedef struct chunk_state {
    uint8_t mem[1000]; /* the remote array */
    int lookups, calls, to_packets, from_packets, syncs;
    uint64_t max_seen;
} chunk_state_t;

static const char *const max_packet_name = "tvm.rpc.server.GetCRTMaxPacketSize";

static void chunk_copy_to(fake_t *f, chunk_state_t *c, int fd, const uint8_t *b, size_t n)
{
    uint64_t off = le64(b + 24 + 8 * 2); /* ndim 2: byte_offset after the shape */
    uint64_t nb = le64(b + 32 + 8 * 2);
    if (n != 40 + 16 + nb || off + nb > sizeof(c->mem) || off % (CHUNK_MAX - 60) != 0)
        fk_fail(f, "bad kCopyToRemote chunk at offset %llu", (unsigned long long)off);
    else
        memcpy(c->mem + off, b + 40 + 16, nb);
    c->to_packets++;
    fk_send_hex(fd, RPC_RETURN, "01 00 00 00 04 00 00 00");
}

static void chunk_copy_from(fake_t *f, chunk_state_t *c, int fd, const uint8_t *b, size_t n)
{
    uint64_t off = le64(b + 40);
    uint64_t nb = le64(b + 48);
    c->from_packets++;
    if (n != 56 || off + nb > sizeof(c->mem)) {
        fk_fail(f, "bad kCopyFromRemote chunk");
        return;
    }
    fk_send(fd, RPC_COPY_ACK, c->mem + off, (size_t)nb);
}

static void chunk_script(fake_t *f, int fd)
{
    chunk_state_t *c = f->arg;
    if (fk_init(f, fd, "00 00 00 00") < 0)
        return;
    int32_t code;
    uint8_t *b;
    size_t n;
    while (fk_packet(f, fd, &code, &b, &n) == 0) {
        if (n + 4 > c->max_seen && (code == RPC_COPY_TO_REMOTE || code == RPC_COPY_FROM_REMOTE))
            c->max_seen = n + 4;
        if (code == RPC_GET_GLOBAL_FUNC) {
            c->lookups++;
            if (n != 16 + strlen(max_packet_name) || memcmp(b + 16, max_packet_name, n - 16))
                fk_fail(f, "unexpected lookup");
            fk_send_hex(fd, RPC_RETURN, "01 00 00 00 03 00 00 00 34 12 00 00 00 00 00 00");
        } else if (code == RPC_CALL_FUNC) {
            c->calls++; /* (0x1234, no args) -> int 100 */
            if (n != 12 || le64(b) != 0x1234 || le32(b + 8) != 0)
                fk_fail(f, "unexpected call");
            fk_send_hex(fd, RPC_RETURN,
                        "02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 "
                        "00 64 00 00 00 00 00 00 00");
        } else if (code == RPC_COPY_TO_REMOTE) {
            chunk_copy_to(f, c, fd, b, n);
        } else if (code == RPC_COPY_FROM_REMOTE) {
            chunk_copy_from(f, c, fd, b, n);
        } else if (code == RPC_DEV_STREAM_SYNC) {
            c->syncs++;
            fk_send_hex(fd, RPC_RETURN, "01 00 00 00 04 00 00 00");
        } else if (code != RPC_SHUTDOWN) {
            fk_fail(f, "unexpected packet code %d", code);
        }
        free(b);
    }
}

static void test_chunked_copies(void **state)
{
    chunk_state_t c;
    memset(&c, 0, sizeof(c));
    fake_t f;
    fake_start(&f, chunk_script, &c);
    char err[256];
    tvmrpc_sess_t *s = tvmrpc_connect("127.0.0.1", f.port, "", 0, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(tvmrpc_generation(s), TVMRPC_GEN_UNKNOWN);
    tvmrpc_array_t a;
    memset(&a, 0, sizeof(a));
    a.data = 0x5000;
    a.dev.type = 1;
    a.ndim = 2;
    a.dtype.code = 1;
    a.dtype.bits = 8;
    a.dtype.lanes = 1;
    a.shape[0] = 5;
    a.shape[1] = 200;
    uint8_t data[1000], back[1000];
    for (int i = 0; i < 1000; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(tvmrpc_array_copy_from_host(s, &a, data, sizeof(data)), 0);
    assert_memory_equal(c.mem, data, sizeof(data));
    assert_int_equal(tvmrpc_array_copy_to_host(s, &a, back, sizeof(back)), 0);
    assert_memory_equal(back, data, sizeof(data));
    /* Wrong size: refused before anything is sent. */
    assert_int_equal(tvmrpc_array_copy_to_host(s, &a, back, 999), TVMRPC_ERR_ARG);
    tvmrpc_close(s);
    fake_join(&f);
    /* block = 100 - (44 + 16) = 40 bytes: 25 packets each way, each <= 100 */
    assert_int_equal(c.to_packets, 25);
    assert_int_equal(c.from_packets, 25);
    assert_true(c.max_seen <= CHUNK_MAX);
    /* Looked up and called once, then cached for the session. */
    assert_int_equal(c.lookups, 1);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.syncs, 2);
}

/* ---- refusals and unsolicited packets ------------------------------------------- */

static void status_script(fake_t *f, int fd)
{
    fk_handshake(f, fd, *(uint32_t *)f->arg, NULL);
}

static void expect_refused(uint32_t status, const char *want)
{
    fake_t f;
    fake_start(&f, status_script, &status);
    char err[256], expect[256];
    assert_null(tvmrpc_connect("127.0.0.1", f.port, "k", 5, err, sizeof(err)));
    fake_join(&f);
    snprintf(expect, sizeof(expect), want, f.port);
    assert_string_equal(err, expect);
}

static void test_handshake_refusals(void **state)
{
    expect_refused(RPC_CODE_MISMATCH,
                   "URL 127.0.0.1:%d cannot find server that matches key=client:k -timeout=5");
    expect_refused(RPC_CODE_DUPLICATE,
                   "URL 127.0.0.1:%d server already have key=client:k -timeout=5");
    expect_refused(0x12345678, "URL 127.0.0.1:%d is not TVM RPC server");
}

static void ffi_script(fake_t *f, int fd)
{
    if (fk_init(f, fd, "01 00 00 00 00 00 00 00") < 0)
        return;
    int32_t code;
    uint8_t *b;
    size_t n;
    /* kFreeHandle in ffi form: the handle alone (index 4) */
    if (fk_packet(f, fd, &code, &b, &n) < 0)
        return;
    if (code != RPC_FREE_HANDLE || n != 16 || le32(b) != 1 || le32(b + 4) != 4 || le64(b + 8) != 77)
        fk_fail(f, "unexpected ffi kFreeHandle");
    free(b);
    fk_send_hex(fd, RPC_EXCEPTION, "01 00 00 00 08 00 00 00 03 00 00 00 00 00 00 00 62 61 64");
}

static void test_ffi_detection(void **state)
{
    fake_t f;
    fake_start(&f, ffi_script, NULL);
    char err[256];
    tvmrpc_sess_t *s = tvmrpc_connect("127.0.0.1", f.port, "", 0, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(tvmrpc_generation(s), TVMRPC_GEN_FFI);
    assert_int_equal(tvmrpc_free_handle(s, 77, TVMRPC_FUNC), TVMRPC_ERR_REMOTE);
    assert_string_equal(tvmrpc_last_error(s), "bad");
    tvmrpc_close(s);
    fake_join(&f);
}

static volatile int timeout_sent;

static void timeout_script(fake_t *f, int fd)
{
    if (fk_init(f, fd, "01 00 00 00 04 00 00 00") < 0)
        return;
    const char *msg = "RPCSessionTimeoutError: Your 1.0s session has expired, try to increase the "
                      "\"session_timeout\" value.";
    uint8_t p[256];
    put_le32(p, 1);
    put_le32(p + 4, 11);
    put_le64(p + 8, strlen(msg));
    memcpy(p + 16, msg, strlen(msg));
    fk_send(fd, RPC_EXCEPTION, p, 16 + strlen(msg));
    shutdown(fd, SHUT_WR); /* as the server: exception, then the socket is gone */
    timeout_sent = 1;
    char sink[256];
    while (net_read_full(fd, sink, 1, IO_MS, NULL, NULL) == 0)
        ;
}

static int flag_set(void *arg)
{
    return *(volatile int *)arg;
}

static void test_unsolicited_timeout(void **state)
{
    fake_t f;
    timeout_sent = 0;
    fake_start(&f, timeout_script, NULL);
    char err[256];
    tvmrpc_sess_t *s = tvmrpc_connect("127.0.0.1", f.port, "", 1, err, sizeof(err));
    assert_non_null(s);
    for (int i = 0; i < IO_MS && !flag_set((void *)&timeout_sent); i++)
        usleep(1000);
    uint64_t h;
    assert_int_equal(tvmrpc_get_func(s, "x", &h), TVMRPC_ERR_TIMEOUT);
    assert_non_null(strstr(tvmrpc_last_error(s), "RPCSessionTimeoutError: Your 1.0s session"));
    /* Dead from now on, without touching the socket. */
    assert_int_equal(tvmrpc_get_func(s, "x", &h), TVMRPC_ERR_IO);
    assert_non_null(strstr(tvmrpc_last_error(s), "no longer usable"));
    tvmrpc_value_t v;
    assert_int_equal(tvmrpc_call(s, 1, NULL, 0, &v), TVMRPC_ERR_IO);
    tvmrpc_close(s);
    fake_join(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_format),
        cmocka_unit_test(test_number_format),
        cmocka_unit_test(test_chunk_plan),
        cmocka_unit_test(test_init_generation),
        cmocka_unit_test(test_exception_text),
        cmocka_unit_test(test_args_match_spec),
        cmocka_unit_test(test_free_args),
        cmocka_unit_test(test_copy_headers),
        cmocka_unit_test(test_value_translation),
        cmocka_unit_test(test_call_results),
        cmocka_unit_test(test_tracker_messages),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_replay_classic_session),
        cmocka_unit_test(test_replay_ffi_session),
        cmocka_unit_test(test_chunked_copies),
        cmocka_unit_test(test_handshake_refusals),
        cmocka_unit_test(test_ffi_detection),
        cmocka_unit_test(test_unsolicited_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
