/* test_ffi_modules: ffi-generation libraries (TVM >= 0.21, tvm-ffi ABI;
 * RUNTIME.md §2.7-§2.10) on a real tvmrpc server, driven by the C client
 * in the ffi wire generation as a v0.26 client would. The fixtures
 * (tests/fixtures/ffi_*.c) stand in for TVM's C and LLVM output.
 *
 * Covered: load + call with arrays (numbers checked), argument errors
 * raised by the kernel, the main entry, result kinds (objects included),
 * LLVM-style context symbols (workspace, parallel launch, InitOnce +
 * lookup + call of global functions), import blobs (known and unknown
 * kinds, malformed blobs with the session still serving), the ffi system
 * library, the time evaluator on ffi functions, and libraries of either
 * ABI in sessions of either wire generation. */
#include "harness.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tvmrpc/client.h"

#define IO_MS 30000
#define N 1024

typedef tvmrpc_sess_t sess_t;

static hproc_t srv;
/* The open session: a failed test leaves it open, and the server serves
 * one session at a time, so the next test closes it first. */
static sess_t *cur;

/* ---- client helpers ---------------------------------------------------------------- */

static sess_t *sess_open(int generation)
{
    char err[512];
    tvmrpc_opts_t o;
    tvmrpc_close(cur);
    cur = NULL;
    tvmrpc_opts_init(&o);
    o.timeout_ms = IO_MS;
    o.generation = generation;
    sess_t *s = tvmrpc_connect_opts("127.0.0.1", srv.port, "", &o, err, sizeof(err));
    if (!s) {
        h_dump_log(&srv);
        fail_msg("connect: %s", err);
    }
    return cur = s;
}

static void sess_close(sess_t *s)
{
    tvmrpc_close(s);
    if (s == cur)
        cur = NULL;
}

static int load(sess_t *s, const char *file, uint64_t *mod)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", h_fixture_dir(), file);
    h_sess_ok(s, tvmrpc_upload_file(s, path, file), "upload");
    tvmrpc_value_t a = tvmrpc_v_str(file), m;
    int rc = h_call_global(s, "tvm.rpc.server.load_module", &a, 1, &m);
    if (rc == TVMRPC_OK) {
        assert_int_equal(m.kind, TVMRPC_MODULE);
        *mod = m.u.h;
    }
    return rc;
}

static uint64_t load_ok(sess_t *s, const char *file)
{
    uint64_t m = 0;
    h_sess_ok(s, load(s, file, &m), file);
    return m;
}

static uint64_t must_func(sess_t *s, uint64_t mod, const char *name)
{
    uint64_t f = h_mod_func(s, mod, name);
    if (!f)
        fail_msg("module has no function %s", name);
    return f;
}

static tvmrpc_array_t vec(sess_t *s, int64_t n, const float *init)
{
    tvmrpc_array_t a;
    tvmrpc_device_t cpu = {1, 0};
    tvmrpc_dtype_t f32 = {2, 32, 1};
    h_sess_ok(s, tvmrpc_array_alloc(s, cpu, 1, &n, f32, NULL, &a), "alloc");
    if (init)
        h_sess_ok(s, tvmrpc_array_copy_from_host(s, &a, init, (size_t)n * 4), "copy in");
    return a;
}

static void get(sess_t *s, const tvmrpc_array_t *a, float *out, int64_t n)
{
    h_sess_ok(s, tvmrpc_array_copy_to_host(s, a, out, (size_t)n * 4), "copy out");
}

static void fill_seq(float *v, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        v[i] = scale * (float)i + 0.25f;
}

static int64_t call_int(sess_t *s, uint64_t f, const tvmrpc_value_t *args, int n)
{
    tvmrpc_value_t r;
    h_sess_ok(s, tvmrpc_call(s, f, args, n, &r), "call");
    assert_int_equal(r.kind, TVMRPC_INT);
    return r.u.i;
}

/* f(a, b, c) must give c = a + b for n elements. */
static void check_vadd(sess_t *s, uint64_t f, int64_t n)
{
    float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4), *c = malloc((size_t)n * 4);
    fill_seq(a, n, 1.0f);
    fill_seq(b, n, -0.5f);
    tvmrpc_array_t ta = vec(s, n, a), tb = vec(s, n, b), tc = vec(s, n, NULL);
    tvmrpc_value_t args[3] = {tvmrpc_v_tensor(&ta), tvmrpc_v_tensor(&tb), tvmrpc_v_tensor(&tc)}, r;
    h_sess_ok(s, tvmrpc_call(s, f, args, 3, &r), "vadd");
    assert_int_equal(r.kind, TVMRPC_NONE);
    get(s, &tc, c, n);
    for (int64_t i = 0; i < n; i++)
        assert_true(c[i] == a[i] + b[i]);
    tvmrpc_array_free(s, &ta);
    tvmrpc_array_free(s, &tb);
    tvmrpc_array_free(s, &tc);
    free(a);
    free(b);
    free(c);
}

/* ---- setup -------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    h_sess_log(&srv); /* a failed check shows the server's log */
    return h_start_fixture_server(&srv);
}

static int group_teardown(void **state)
{
    tvmrpc_close(cur);
    h_stop(&srv);
    return 0;
}

/* ---- C-target library: load, call, entry, errors, results ------------------------- */

static void test_vadd(void **state)
{
    sess_t *s = sess_open(TVMRPC_GEN_FFI);
    uint64_t mod = load_ok(s, "ffi_vadd.so");
    uint64_t f = must_func(s, mod, "vadd");
    check_vadd(s, f, N); /* 4 KiB: through a workspace buffer */
    check_vadd(s, f, 7);
    /* The v0.26 client's entry_name is "main": __tvm_ffi_main. */
    check_vadd(s, must_func(s, mod, "main"), 33);
    /* Missing names, and the loader's variables, are none. */
    assert_int_equal(h_mod_func(s, mod, "no_such_function"), 0);
    assert_int_equal(h_mod_func(s, mod, "_library_ctx"), 0);
    assert_int_equal(h_mod_func(s, mod, "__tvm_main__"), 0);
    h_sess_ok(s, tvmrpc_free_handle(s, mod, TVMRPC_MODULE), "free module");
    check_vadd(s, f, 5); /* the function keeps its module alive */
    h_sess_ok(s, tvmrpc_free_handle(s, f, TVMRPC_FUNC), "free function");
    sess_close(s);
}

static void test_arg_errors(void **state)
{
    sess_t *s = sess_open(TVMRPC_GEN_FFI);
    uint64_t mod = load_ok(s, "ffi_vadd.so");
    uint64_t f = must_func(s, mod, "vadd");
    tvmrpc_array_t a = vec(s, 4, NULL), b = vec(s, 4, NULL), c5 = vec(s, 5, NULL);
    tvmrpc_value_t args[3] = {tvmrpc_v_tensor(&a), tvmrpc_v_tensor(&b), tvmrpc_v_tensor(&a)};

    h_sess_expect_error(
        s, tvmrpc_call(s, f, args, 2, NULL),
        "TypeError: Mismatched number of arguments when calling `vadd`: expected 3, got 2");
    args[1] = tvmrpc_v_int(3);
    h_sess_expect_error(
        s, tvmrpc_call(s, f, args, 3, NULL),
        "TypeError: Mismatched type on argument #1 when calling `vadd`, expected Tensor");
    args[1] = tvmrpc_v_tensor(&b);
    args[2] = tvmrpc_v_tensor(&c5);
    h_sess_expect_error(s, tvmrpc_call(s, f, args, 3, NULL),
                        "ValueError: Argument vadd.B.shape[0] has an unsatisfied constraint: n == "
                        "B.shape[0]");
    tvmrpc_array_t d;
    int64_t n4 = 4;
    tvmrpc_device_t cpu = {1, 0};
    tvmrpc_dtype_t f64 = {2, 64, 1};
    h_sess_ok(s, tvmrpc_array_alloc(s, cpu, 1, &n4, f64, NULL, &d), "alloc f64");
    args[2] = tvmrpc_v_tensor(&d);
    h_sess_expect_error(s, tvmrpc_call(s, f, args, 3, NULL),
                        "ValueError: Mismatched dtype on argument #2 when calling `vadd`");
    /* The server's own checks come first: arrays must be this session's. */
    tvmrpc_array_t fake = a;
    fake.data = 0x1000;
    args[2] = tvmrpc_v_tensor(&fake);
    h_sess_expect_error(s, tvmrpc_call(s, f, args, 3, NULL), "not allocated in this session");
    /* Modules cannot be passed to compiled code. */
    args[2] = tvmrpc_v_handle(TVMRPC_MODULE, mod);
    h_sess_expect_error(
        s, tvmrpc_call(s, f, args, 3, NULL),
        "TypeError: argument 2 (type code 9): modules, functions and objects cannot");
    /* A kernel failing without raising. */
    h_sess_expect_error(s, tvmrpc_call(s, must_func(s, mod, "fail_silent"), NULL, 0, NULL),
                        "TVMError: fail_silent failed (returned -1) without an error message");
    /* Still serving: a good call works. */
    check_vadd(s, f, 4);
    sess_close(s);
}

static void test_results(void **state)
{
    sess_t *s = sess_open(TVMRPC_GEN_FFI);
    uint64_t mod = load_ok(s, "ffi_vadd.so");
    float x[4] = {1, 2, 3, 4.5f};
    tvmrpc_array_t tx = vec(s, 4, x);
    tvmrpc_value_t r, xa = tvmrpc_v_tensor(&tx);
    h_sess_ok(s, tvmrpc_call(s, must_func(s, mod, "vsum"), &xa, 1, &r), "vsum");
    assert_int_equal(r.kind, TVMRPC_FLOAT);
    assert_true(r.u.f == 10.5);

    uint64_t sc = must_func(s, mod, "scalars");
    tvmrpc_value_t a[4] = {tvmrpc_v_int(7), tvmrpc_v_float(1.25), tvmrpc_v_bool(1),
                           tvmrpc_v_str("hey")};
    assert_int_equal(call_int(s, sc, a, 4), 7000 + 12 + 100 + 3);
    a[3] = tvmrpc_v_str("a string longer than seven bytes");
    assert_int_equal(call_int(s, sc, a, 4), 7000 + 12 + 100 + 32);
    a[2] = tvmrpc_v_int(1); /* bool parameters do not take ints in this kernel */
    h_sess_expect_error(s, tvmrpc_call(s, sc, a, 4, NULL), "TypeError: scalars: expects");

    tvmrpc_value_t name = tvmrpc_v_str("bob");
    h_sess_ok(s, tvmrpc_call(s, must_func(s, mod, "greet"), &name, 1, &r), "greet");
    assert_int_equal(r.kind, TVMRPC_STR);
    assert_int_equal(r.u.s.len, strlen("hello, bob!"));
    assert_memory_equal(r.u.s.p, "hello, bob!", r.u.s.len);
    h_sess_ok(s, tvmrpc_call(s, must_func(s, mod, "short"), NULL, 0, &r), "short");
    assert_int_equal(r.kind, TVMRPC_STR);
    assert_int_equal(r.u.s.len, 2);
    assert_memory_equal(r.u.s.p, "ok", 2);
    h_sess_ok(s, tvmrpc_call(s, must_func(s, mod, "small_bytes"), NULL, 0, &r), "small_bytes");
    assert_int_equal(r.kind, TVMRPC_BYTES);
    assert_int_equal(r.u.s.len, 3);
    assert_memory_equal(r.u.s.p, "\1\0\2", 3);
    h_sess_expect_error(s, tvmrpc_call(s, must_func(s, mod, "array_ret"), NULL, 0, NULL),
                        "returned an object of type index 71");
    /* Both objects (the Str and the Array) were released by the server. */
    assert_int_equal(call_int(s, must_func(s, mod, "freed"), NULL, 0), 2);
    sess_close(s);
}

/* ---- LLVM-style library: context symbols only ------------------------------------- */

static void test_llvm_style(void **state)
{
    sess_t *s = sess_open(TVMRPC_GEN_FFI);
    uint64_t mod = load_ok(s, "ffi_llvm.so");
    tvmrpc_value_t r;
    h_sess_ok(s, tvmrpc_call(s, must_func(s, mod, "ctx_check"), NULL, 0, &r), "ctx_check");
    assert_int_equal(r.kind, TVMRPC_BOOL);
    assert_int_equal(r.u.i, 1);
    assert_int_equal(call_int(s, must_func(s, mod, "num_tasks"), NULL, 0), 4);

    enum { M = 100 };
    float x[M], y[M], out[M];
    fill_seq(x, M, 1.0f);
    fill_seq(y, M, 3.0f);
    tvmrpc_array_t tx = vec(s, M, x), ty = vec(s, M, y), to = vec(s, M, NULL);
    tvmrpc_value_t args[3] = {tvmrpc_v_tensor(&tx), tvmrpc_v_tensor(&ty), tvmrpc_v_tensor(&to)};
    const char *entries[] = {"scale_add", "main"};
    for (int e = 0; e < 2; e++) {
        h_sess_ok(s, tvmrpc_array_copy_from_host(s, &to, x, sizeof(x)), "reset out");
        h_sess_ok(s, tvmrpc_call(s, must_func(s, mod, entries[e]), args, 3, &r), entries[e]);
        get(s, &to, out, M);
        for (int i = 0; i < M; i++)
            assert_true(out[i] == 2 * x[M - 1 - i] + y[i]);
    }

    /* A native global through InitOnce + lookup + call. */
    float z[M] = {0};
    tvmrpc_array_t tz = vec(s, M, z);
    tvmrpc_value_t za = tvmrpc_v_tensor(&tz);
    h_sess_ok(s, tvmrpc_call(s, must_func(s, mod, "env_fill"), &za, 1, &r), "env_fill");
    get(s, &tz, out, M);
    for (int i = 0; i < M; i++)
        assert_true(out[i] >= 1 && out[i] < 10);

    /* A session global (testing.echo) called back with every kind of value. */
    uint64_t echo = must_func(s, mod, "env_echo");
    tvmrpc_value_t v = tvmrpc_v_int(42);
    assert_int_equal(call_int(s, echo, &v, 1), 42);
    v = tvmrpc_v_float(2.5);
    h_sess_ok(s, tvmrpc_call(s, echo, &v, 1, &r), "echo float");
    assert_true(r.kind == TVMRPC_FLOAT && r.u.f == 2.5);
    const char *text = "a string that does not fit inline";
    v = tvmrpc_v_str(text);
    h_sess_ok(s, tvmrpc_call(s, echo, &v, 1, &r), "echo str");
    assert_int_equal(r.kind, TVMRPC_STR);
    assert_int_equal(r.u.s.len, strlen(text));
    assert_memory_equal(r.u.s.p, text, r.u.s.len);
    v = tvmrpc_v_str("tiny");
    h_sess_ok(s, tvmrpc_call(s, echo, &v, 1, &r), "echo small str");
    assert_true(r.kind == TVMRPC_STR && r.u.s.len == 4 && memcmp(r.u.s.p, "tiny", 4) == 0);
    /* Each handle was initialised once: fill and echo. */
    assert_int_equal(call_int(s, must_func(s, mod, "init_count"), NULL, 0), 2);
    /* Four tasks racing on one handle: one initialisation. */
    assert_int_equal(call_int(s, must_func(s, mod, "par_once"), NULL, 0), 1);

    h_sess_expect_error(
        s, tvmrpc_call(s, must_func(s, mod, "env_missing"), NULL, 0, NULL),
        "RuntimeError: Cannot find function no.such.function in the imported modules");
    h_sess_expect_error(s, tvmrpc_call(s, must_func(s, mod, "raise_ctx"), NULL, 0, NULL),
                        "ValueError: raised through the context pointer");
    /* Errors raised with the Parts symbol from LLVM code. */
    h_sess_expect_error(s, tvmrpc_call(s, must_func(s, mod, "scale_add"), args, 1, NULL),
                        "TypeError: Mismatched number of arguments when calling `scale_add`");
    sess_close(s);
}

/* ---- import blobs ------------------------------------------------------------------- */

static void test_blob(void **state)
{
    sess_t *s = sess_open(TVMRPC_GEN_FFI);
    float x[3] = {1, 2, 3}, out[3];
    tvmrpc_array_t tx = vec(s, 3, x);
    tvmrpc_value_t xa = tvmrpc_v_tensor(&tx);

    /* "_lib" root importing a "cuda" module this server cannot run. */
    uint64_t mod = load_ok(s, "ffi_blob.so");
    h_sess_ok(s, tvmrpc_call(s, must_func(s, mod, "addone"), &xa, 1, NULL), "addone");
    get(s, &tx, out, 3);
    assert_true(out[0] == 2 && out[1] == 3 && out[2] == 4);
    h_sess_expect_error(
        s, tvmrpc_call(s, must_func(s, mod, "launch_gpu"), NULL, 0, NULL),
        "RuntimeError: cannot call default_function_kernel: it belongs to a module of "
        "kind cuda");
    /* Looked up by a client, a name of the unknown module fails when called. */
    uint64_t k = must_func(s, mod, "some_kernel");
    h_sess_expect_error(s, tvmrpc_call(s, k, NULL, 0, NULL), "ffi.Module.load_from_bytes.cuda");

    /* A Relax model's layout: the unknown root does not hide the kernels. */
    uint64_t vm = load_ok(s, "ffi_blob_vm.so");
    h_sess_ok(s, tvmrpc_call(s, must_func(s, vm, "addone"), &xa, 1, NULL), "addone via root");
    get(s, &tx, out, 3);
    assert_true(out[0] == 3 && out[1] == 4 && out[2] == 5);
    h_sess_expect_error(s, tvmrpc_call(s, must_func(s, vm, "vm_load_executable"), NULL, 0, NULL),
                        "kind relax.VMExecutable");

    /* Malformed blobs are clear errors; the session keeps serving. */
    uint64_t bad;
    h_sess_expect_error(s, load(s, "ffi_blob_trunc.so", &bad),
                        "RuntimeError: __tvm_ffi__library_bin has a truncated or malformed entry");
    h_sess_expect_error(
        s, load(s, "ffi_blob_badtree.so", &bad),
        "RuntimeError: __tvm_ffi__library_bin imports a module that does not exist");
    h_sess_ok(s, tvmrpc_call(s, must_func(s, mod, "addone"), &xa, 1, NULL), "after bad loads");
    get(s, &tx, out, 3);
    assert_true(out[0] == 4);
    sess_close(s);
}

/* ---- system library ----------------------------------------------------------------- */

static int syslib(sess_t *s, const char *prefix, uint64_t *mod)
{
    tvmrpc_value_t a = prefix ? tvmrpc_v_str(prefix) : tvmrpc_v_none(), r;
    int rc = h_call_global(s, "ffi.SystemLib", &a, prefix ? 1 : 0, &r);
    if (rc == TVMRPC_OK) {
        assert_int_equal(r.kind, TVMRPC_MODULE);
        *mod = r.u.h;
    }
    return rc;
}

static void test_system_lib(void **state)
{
    sess_t *s = sess_open(TVMRPC_GEN_FFI);
    uint64_t m;
    assert_int_equal(syslib(s, NULL, &m), TVMRPC_OK);
    /* Empty registry: nothing is found. */
    assert_int_equal(h_mod_func(s, m, "sysffi_add_one"), 0);
    load_ok(s, "ffi_syslib.so"); /* its constructor registers the symbols */
    assert_true(h_mod_func(s, m, "sysffi_add_one") != 0);
    assert_int_equal(h_mod_func(s, m, "sysffi_two"), 0);
    assert_int_equal(h_mod_func(s, m, "notexist"), 0);
    float x[2] = {1, 2}, out[2];
    tvmrpc_array_t tx = vec(s, 2, x);
    tvmrpc_value_t xa = tvmrpc_v_tensor(&tx);
    h_sess_ok(s, tvmrpc_call(s, must_func(s, m, "sysffi_add_one"), &xa, 1, NULL), "add_one");
    get(s, &tx, out, 2);
    assert_true(out[0] == 2 && out[1] == 3);

    uint64_t p;
    h_sess_ok(s, syslib(s, "ffiprefix_", &p), "ffi.SystemLib(prefix)");
    assert_int_equal(call_int(s, must_func(s, p, "sysffi_two"), NULL, 0), 2); /* ctx was set */
    h_sess_ok(s, tvmrpc_call(s, must_func(s, p, "sysffi_add_one"), &xa, 1, NULL), "fallback name");
    get(s, &tx, out, 2);
    assert_true(out[0] == 3 && out[1] == 4);
    sess_close(s);
}

/* ---- time evaluator ----------------------------------------------------------------- */

static void test_time_evaluator(void **state)
{
    sess_t *s = sess_open(TVMRPC_GEN_FFI);
    uint64_t mod = load_ok(s, "ffi_vadd.so");
    tvmrpc_array_t a = vec(s, N, NULL), b = vec(s, N, NULL), c = vec(s, N, NULL);
    tvmrpc_value_t args[3] = {tvmrpc_v_tensor(&a), tvmrpc_v_tensor(&b), tvmrpc_v_tensor(&c)};
    const char *names[] = {"vadd", "main"};
    for (int i = 0; i < 2; i++) {
        tvmrpc_value_t r;
        uint64_t tf;
        h_sess_ok(s, h_time_evaluator(s, mod, names[i], 10, 2, &tf), "RPCTimeEvaluator");
        h_sess_ok(s, tvmrpc_call(s, tf, args, 3, &r), "timed call");
        assert_int_equal(r.kind, TVMRPC_BYTES);
        assert_int_equal(r.u.s.len, 16);
        double secs[2];
        memcpy(secs, r.u.s.p, 16);
        assert_true(secs[0] > 0 && secs[0] < 1 && secs[1] > 0 && secs[1] < 1);
        /* An error in the timed function is the error of the call. */
        h_sess_expect_error(s, tvmrpc_call(s, tf, args, 2, NULL), "TypeError: Mismatched number");
        h_sess_ok(s, tvmrpc_free_handle(s, tf, TVMRPC_FUNC), "free evaluator");
    }
    sess_close(s);
}

/* ---- generations ---------------------------------------------------------------------- */

/* The library's ABI is the library's, the wire generation the client's:
 * the server converts, so every combination works. */
static void test_cross_generation(void **state)
{
    sess_t *s = sess_open(TVMRPC_GEN_CLASSIC);
    check_vadd(s, must_func(s, load_ok(s, "ffi_vadd.so"), "vadd"), 16);
    uint64_t mod = load_ok(s, "ffi_vadd.so");
    tvmrpc_value_t args[1] = {tvmrpc_v_int(1)};
    h_sess_expect_error(s, tvmrpc_call(s, must_func(s, mod, "vadd"), args, 1, NULL),
                        "TypeError: Mismatched number of arguments");
    sess_close(s);

    s = sess_open(TVMRPC_GEN_FFI);
    assert_int_equal(tvmrpc_generation(s), TVMRPC_GEN_FFI);
    mod = load_ok(s, "vadd.so"); /* classic C-target fixture */
    check_vadd(s, must_func(s, mod, "vadd"), 16);
    check_vadd(s, must_func(s, mod, "__tvm_main__"), 16);
    h_sess_expect_error(s, tvmrpc_call(s, must_func(s, mod, "vadd"), args, 1, NULL),
                        "TVMError: vadd: num_args should be 3");
    /* Both kinds of library side by side in one session. */
    check_vadd(s, must_func(s, load_ok(s, "ffi_vadd.so"), "vadd"), 16);
    sess_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vadd),           cmocka_unit_test(test_arg_errors),
        cmocka_unit_test(test_results),        cmocka_unit_test(test_llvm_style),
        cmocka_unit_test(test_blob),           cmocka_unit_test(test_system_lib),
        cmocka_unit_test(test_time_evaluator), cmocka_unit_test(test_cross_generation),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
