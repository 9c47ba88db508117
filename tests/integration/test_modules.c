/* test_modules: run compiled code on a real tvmrpc server (RUNTIME.md §1.3-
 * §1.5, §1.7, §2, §4) with the fixture libraries of tests/fixtures, which
 * stand in for TVM's output. Requests are raw packets built with the codec,
 * so every byte the server sees is one a TVM client could send: a v0.20
 * client by default, a v0.26 one with TVMRPC_TEST_GEN=ffi (the fixtures keep
 * the classic library ABI, which is independent of the wire generation). */
#include "harness.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/net.h"
#include "rawcli.h"
#include "rpc/rpc.h"

#define N 1024

static hproc_t srv;

/* The generation every session speaks (TVMRPC_TEST_GEN). */
static const rpc_codec_t *codec = &rpc_codec_classic;

static int is_ffi(void)
{
    return codec == &rpc_codec_ffi;
}

/* A global name that differs between the generations (RUNTIME.md §1.4). */
static const char *gname(const char *classic, const char *ffi)
{
    return is_ffi() ? ffi : classic;
}

/* ---- the raw client (rawcli.h) in the generation under test -------------------- */

static int cli_connect(rawcli_t *c, const char *key_suffix)
{
    return rawcli_open(c, "127.0.0.1", srv.port, key_suffix, codec);
}

static int upload_bytes(rawcli_t *c, const char *name, const void *p, size_t n)
{
    rpc_value_t a[2] = {rv_str(name), rv_bytes(p, n)};
    return rawcli_gcall(c, "tvm.rpc.server.upload", a, 2, NULL);
}

/* A fixture file's bytes (caller frees), or NULL with a message. */
static char *fixture_bytes(const char *file, size_t *n)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", h_fixture_dir(), file);
    char *p = h_read_file(path, n);
    if (!p)
        fprintf(stderr, "missing fixture %s\n", path);
    return p;
}

static int upload_fixture(rawcli_t *c, const char *file, const char *as)
{
    size_t n;
    char *p = fixture_bytes(file, &n);
    if (!p)
        return -1;
    int rc = upload_bytes(c, as ? as : file, p, n);
    free(p);
    return rc;
}

/* Upload and load a fixture; the module handle or 0. */
static uint64_t load_fixture(rawcli_t *c, const char *file)
{
    rpc_value_t a = rv_str(file), m;
    if (upload_fixture(c, file, NULL) != 0 ||
        rawcli_gcall(c, "tvm.rpc.server.load_module", &a, 1, &m))
        return 0;
    return m.kind == RV_MODULE ? m.u.h : 0;
}

/* A float32[n] on the server, optionally filled. */
static int alloc_vec(rawcli_t *c, rpc_tensor_t *t, int64_t n, const float *init)
{
    memset(t, 0, sizeof(*t));
    t->dev.type = 1;
    t->ndim = 1;
    t->dtype.code = 2;
    t->dtype.bits = 32;
    t->dtype.lanes = 1;
    t->shape[0] = n;
    if (rawcli_alloc(c, t) < 0)
        return -1;
    return init ? rawcli_copy_to(c, t, init, (size_t)n * 4) : 0;
}

static void fill_seq(float *v, int n, float scale)
{
    for (int i = 0; i < n; i++)
        v[i] = scale * (float)i + 0.25f;
}

/* ---- setup ---------------------------------------------------------------------- */

static int group_setup(void **state)
{
    return h_start_fixture_server(&srv);
}

static int group_teardown(void **state)
{
    h_stop(&srv);
    return 0;
}

static void connect_or_fail(rawcli_t *c)
{
    if (cli_connect(c, NULL) != 0) {
        h_dump_log(&srv);
        fail_msg("cannot open a session");
    }
}

/* ---- the v0.20-module trace's flow ------------------------------------------------ */

static void test_vadd_flow(void **state)
{
    rawcli_t c;
    connect_or_fail(&c);
    uint64_t mod = load_fixture(&c, "vadd.so");
    assert_true(mod != 0);
    uint64_t f = rawcli_mod_func(&c, mod, "vadd", 1);
    assert_true(f != 0);

    float a[N], b[N], out[N];
    fill_seq(a, N, 1.0f);
    fill_seq(b, N, -0.5f);
    rpc_tensor_t ta, tb, tc;
    assert_int_equal(alloc_vec(&c, &ta, N, a), 0);
    assert_int_equal(alloc_vec(&c, &tb, N, b), 0);
    assert_int_equal(alloc_vec(&c, &tc, N, NULL), 0);
    rpc_value_t args[3] = {rv_tensor(&ta), rv_tensor(&tb), rv_tensor(&tc)}, r;
    assert_int_equal(rawcli_call(&c, f, args, 3, &r), 0);
    assert_int_equal(r.kind, RV_NONE);
    assert_int_equal(rawcli_copy_from(&c, &tc, out, sizeof(out)), 0);
    for (int i = 0; i < N; i++)
        assert_true(out[i] == a[i] + b[i]);

    /* time_evaluator('vadd', cpu0, number=10, repeat=2), as in the trace. */
    rpc_value_t te[12] = {rv_handle(RV_MODULE, mod),
                          rv_str("vadd"),
                          rv_int(1),
                          rv_int(0),
                          rv_int(10),
                          rv_int(2),
                          rv_int(0),
                          rv_int(100),
                          rv_int(0),
                          rv_int(1),
                          rv_int(0),
                          rv_str("")};
    assert_int_equal(rawcli_gcall(&c, "runtime.RPCTimeEvaluator", te, 12, &r), 0);
    assert_int_equal(r.kind, RV_FUNC);
    uint64_t tf = r.u.h;
    assert_int_equal(rawcli_call(&c, tf, args, 3, &r), 0);
    assert_int_equal(r.kind, RV_BYTES);
    assert_int_equal(r.u.s.len, 16);
    double secs[2];
    memcpy(secs, r.u.s.p, 16);
    assert_true(secs[0] > 0 && secs[0] < 1 && secs[1] > 0 && secs[1] < 1);

    assert_int_equal(rawcli_free_handle(&c, tf, 10), 0);
    assert_int_equal(rawcli_free_handle(&c, f, 10), 0);
    assert_int_equal(rawcli_free_handle(&c, mod, 9), 0);
    /* Freed: the handles are gone. */
    assert_int_equal(rawcli_call(&c, f, args, 3, &r), 1);
    rawcli_close(&c);
}

/* __tvm_main__: a function in C-target output, a string in LLVM output. */
static void test_tvm_main(void **state)
{
    rawcli_t c;
    connect_or_fail(&c);
    uint64_t vmod = load_fixture(&c, "vadd.so"), lmod = load_fixture(&c, "llvm_style.so");
    assert_true(vmod && lmod);
    float x[8], y[8], out[8];
    fill_seq(x, 8, 1.0f);
    fill_seq(y, 8, 3.0f);
    rpc_tensor_t tx, ty, to;
    assert_int_equal(alloc_vec(&c, &tx, 8, x), 0);
    assert_int_equal(alloc_vec(&c, &ty, 8, y), 0);
    assert_int_equal(alloc_vec(&c, &to, 8, NULL), 0);
    rpc_value_t args[3] = {rv_tensor(&tx), rv_tensor(&ty), rv_tensor(&to)};

    uint64_t vm = rawcli_mod_func(&c, vmod, "__tvm_main__", 1);
    assert_true(vm != 0);
    assert_int_equal(rawcli_call(&c, vm, args, 3, NULL), 0);
    assert_int_equal(rawcli_copy_from(&c, &to, out, sizeof(out)), 0);
    for (int i = 0; i < 8; i++)
        assert_true(out[i] == x[i] + y[i]);

    uint64_t lm = rawcli_mod_func(&c, lmod, "__tvm_main__", 1);
    assert_true(lm != 0);
    assert_int_equal(rawcli_call(&c, lm, args, 3, NULL), 0);
    assert_int_equal(rawcli_copy_from(&c, &to, out, sizeof(out)), 0);
    for (int i = 0; i < 8; i++)
        assert_true(out[i] == 2 * x[7 - i] + y[i]);

    /* Missing names, the loader's variables and libc are not functions. */
    assert_int_equal(rawcli_mod_func(&c, vmod, "no_such_kernel", 1), 0);
    assert_string_equal(c.exc, "");
    assert_int_equal(rawcli_mod_func(&c, lmod, "__tvm_module_ctx", 1), 0);
    assert_int_equal(rawcli_mod_func(&c, lmod, "__TVMBackendAllocWorkspace", 1), 0);
    assert_int_equal(rawcli_mod_func(&c, vmod, "malloc", 1), 0);
    assert_int_equal(rawcli_mod_func(&c, vmod, "printf", 1), 0);
    /* runtime.ModuleGetFunction / ffi.ModuleGetFunction are the same lookup. */
    rpc_value_t ga[3] = {rv_handle(RV_MODULE, vmod), rv_str("vadd"), rv_bool(0)}, r;
    assert_int_equal(
        rawcli_gcall(&c, gname("runtime.ModuleGetFunction", "ffi.ModuleGetFunction"), ga, 3, &r),
        0);
    assert_int_equal(r.kind, RV_FUNC);
    /* Module kinds, for clients that ask the server rather than themselves. */
    rpc_value_t ka = rv_handle(RV_MODULE, vmod);
    assert_int_equal(
        rawcli_gcall(&c, gname("runtime.ModuleGetTypeKey", "ffi.ModuleGetKind"), &ka, 1, &r), 0);
    assert_int_equal(r.kind, RV_STR);
    assert_int_equal(r.u.s.len, 7);
    assert_memory_equal(r.u.s.p, "library", 7);
    rawcli_close(&c);
}

/* ---- LLVM-style library: context pointers, parallel launch, errors ------------------- */

static void test_llvm_style(void **state)
{
    rawcli_t c;
    connect_or_fail(&c);
    uint64_t mod = load_fixture(&c, "llvm_style.so");
    assert_true(mod != 0);
    rpc_value_t r;

    uint64_t nt = rawcli_mod_func(&c, mod, "num_tasks", 1);
    assert_int_equal(rawcli_call(&c, nt, NULL, 0, &r), 0);
    assert_int_equal(r.kind, RV_INT);
    assert_int_equal(r.u.i, 4); /* TVM_NUM_THREADS=4 in the server's environment */

    enum { M = 10007 };
    static float x[M], y[M], out[M];
    fill_seq(x, M, 0.5f);
    fill_seq(y, M, 2.0f);
    rpc_tensor_t tx, ty, to;
    assert_int_equal(alloc_vec(&c, &tx, M, x), 0);
    assert_int_equal(alloc_vec(&c, &ty, M, y), 0);
    assert_int_equal(alloc_vec(&c, &to, M, NULL), 0);
    rpc_value_t args[3] = {rv_tensor(&tx), rv_tensor(&ty), rv_tensor(&to)};
    uint64_t sa = rawcli_mod_func(&c, mod, "scale_add", 1);
    for (int rep = 0; rep < 20; rep++) {
        assert_int_equal(rawcli_call(&c, sa, args, 3, NULL), 0);
        assert_int_equal(rawcli_copy_from(&c, &to, out, sizeof(out)), 0);
        for (int i = 0; i < M; i++)
            assert_true(out[i] == 2 * x[M - 1 - i] + y[i]);
    }

    assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "nested", 1), NULL, 0, &r), 0);
    assert_int_equal(r.u.i, 3 * 1001);

    assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "par_fail", 1), NULL, 0, &r), 1);
    assert_non_null(strstr(c.exc, "Task 1 error: task one says no"));

    uint64_t fn = rawcli_mod_func(&c, mod, "fail_neg", 1);
    rpc_value_t a = rv_int(21);
    assert_int_equal(rawcli_call(&c, fn, &a, 1, &r), 0);
    assert_int_equal(r.kind, RV_INT);
    assert_int_equal(r.u.i, 42);
    a = rv_int(-1);
    assert_int_equal(rawcli_call(&c, fn, &a, 1, &r), 1);
    assert_string_equal(c.exc, "TVMError: fail_neg: negative input");
    /* The session goes on after a kernel error. */
    a = rv_int(5);
    assert_int_equal(rawcli_call(&c, fn, &a, 1, &r), 0);
    assert_int_equal(r.u.i, 10);
    rawcli_close(&c);
}

/* Compiled code finds functions in the context module's imports and in the
 * global table; ImportModule refuses cycles. */
static int time_eval(rawcli_t *c, uint64_t mod, const char *name, int number, int repeat,
                     int min_ms, int cooldown, int flush, const char *pre, uint64_t *h);

static void test_env_lookup(void **state)
{
    rawcli_t c;
    connect_or_fail(&c);
    uint64_t lmod = load_fixture(&c, "llvm_style.so"), vmod = load_fixture(&c, "vadd.so");
    assert_true(lmod && vmod);
    float x[16], out[16];
    fill_seq(x, 16, 1.0f);
    rpc_tensor_t tx;
    assert_int_equal(alloc_vec(&c, &tx, 16, x), 0);
    uint64_t ec = rawcli_mod_func(&c, lmod, "env_call", 1);
    rpc_value_t args[2] = {rv_tensor(&tx), rv_str("addone")}, r;

    assert_int_equal(rawcli_call(&c, ec, args, 2, &r), 1);
    assert_non_null(strstr(c.exc, "Cannot find function addone in the imported modules or "
                                  "global registry"));
    assert_int_equal(rawcli_mod_func(&c, lmod, "addone", 1), 0);

    rpc_value_t imp[2] = {rv_handle(RV_MODULE, lmod), rv_handle(RV_MODULE, vmod)};
    assert_int_equal(rawcli_gcall(&c, "tvm.rpc.server.ImportModule", imp, 2, &r), 0);
    assert_int_equal(rawcli_call(&c, ec, args, 2, &r), 0);
    assert_int_equal(rawcli_copy_from(&c, &tx, out, sizeof(out)), 0);
    for (int i = 0; i < 16; i++)
        assert_true(out[i] == x[i] + 1);
    assert_true(rawcli_mod_func(&c, lmod, "addone", 1) != 0);
    assert_int_equal(rawcli_mod_func(&c, lmod, "addone", 0), 0);
    /* The time evaluator looks into imports in classic sessions only
     * (RUNTIME.md §4.1). */
    uint64_t te;
    if (is_ffi()) {
        assert_int_equal(time_eval(&c, lmod, "addone", 1, 1, 0, 0, 0, "", &te), 1);
        assert_string_equal(c.exc, "TVMError: Cannot find addone in the global registry");
    } else {
        assert_int_equal(time_eval(&c, lmod, "addone", 1, 1, 0, 0, 0, "", &te), 0);
        rpc_value_t targ = rv_tensor(&tx);
        assert_int_equal(rawcli_call(&c, te, &targ, 1, &r), 0);
        assert_int_equal(r.kind, RV_BYTES);
        assert_int_equal(r.u.s.len, 8);
    }

    rpc_value_t back[2] = {rv_handle(RV_MODULE, vmod), rv_handle(RV_MODULE, lmod)};
    assert_int_equal(rawcli_gcall(&c, "tvm.rpc.server.ImportModule", back, 2, &r), 1);
    assert_non_null(strstr(c.exc, "Cyclic dependency detected during import"));
    rpc_value_t self[2] = {rv_handle(RV_MODULE, vmod), rv_handle(RV_MODULE, vmod)};
    assert_int_equal(rawcli_gcall(&c, "tvm.rpc.server.ImportModule", self, 2, &r), 1);

    /* A global (native) function through the environment. */
    args[1] = rv_str("tvm.contrib.random.random_fill");
    assert_int_equal(rawcli_call(&c, ec, args, 2, &r), 0);
    assert_int_equal(rawcli_copy_from(&c, &tx, out, sizeof(out)), 0);
    for (int i = 0; i < 16; i++)
        assert_true(out[i] >= 1 && out[i] < 10);

    /* From a parallel task: natives work, RPC globals (which use session
     * state) are refused instead of racing the session. */
    uint64_t pc = rawcli_mod_func(&c, lmod, "par_call", 1);
    args[1] = rv_str("tvm.contrib.random.random_fill");
    assert_int_equal(rawcli_call(&c, pc, args, 2, &r), 0);
    args[1] = rv_str("testing.nop");
    assert_int_equal(rawcli_call(&c, pc, args, 2, &r), 1);
    assert_non_null(strstr(c.exc, "Task 1 error: testing.nop: global functions can be called "
                                  "only from the session's thread"));

    /* The module stays usable through its functions after the client frees
     * the module handles. */
    assert_int_equal(rawcli_free_handle(&c, lmod, 9), 0);
    assert_int_equal(rawcli_free_handle(&c, vmod, 9), 0);
    args[1] = rv_str("addone");
    assert_int_equal(rawcli_call(&c, ec, args, 2, &r), 0);
    rawcli_close(&c);
}

/* Undefined-symbol C target code reaching every runtime function. */
static void test_c_abi(void **state)
{
    rawcli_t c;
    connect_or_fail(&c);
    uint64_t mod = load_fixture(&c, "cabi.so");
    assert_true(mod != 0);
    rpc_value_t r;
    float x[64], out[64];
    memset(x, 0, sizeof(x));
    rpc_tensor_t tx;
    assert_int_equal(alloc_vec(&c, &tx, 64, x), 0);

    rpc_value_t args[2] = {rv_tensor(&tx), rv_str("tvm.contrib.random.random_fill_for_measure")};
    uint64_t ec = rawcli_mod_func(&c, mod, "c_env_call", 1);
    assert_int_equal(rawcli_call(&c, ec, args, 2, &r), 0);
    assert_int_equal(rawcli_copy_from(&c, &tx, out, sizeof(out)), 0);
    for (int i = 0; i < 64; i++)
        assert_true(out[i] >= 1 && out[i] < 10);
    args[1] = rv_str("tvm.contrib.random.random_fill");
    assert_int_equal(rawcli_call(&c, ec, args, 2, &r), 0);
    assert_int_equal(rawcli_call(&c, ec, args, 2, &r), 0); /* cached handle stays the same */
    args[1] = rv_str("no.such.function");
    assert_int_equal(rawcli_call(&c, ec, args, 2, &r), 1);
    assert_non_null(strstr(c.exc, "Cannot find function no.such.function"));
    /* A global RPC function called back from compiled code. */
    args[1] = rv_str("testing.nop");
    assert_int_equal(rawcli_call(&c, ec, args, 2, &r), 0);

    /* A string result of a global function, through compiled code. */
    rpc_value_t sa[2] = {rv_str("tvm.rpc.server.workpath"), rv_str("some/file.txt")};
    assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "c_call_str", 1), sa, 2, &r), 0);
    assert_int_equal(r.kind, RV_STR);
    assert_true(r.u.s.len > 14 && r.u.s.p[0] == '/' &&
                memcmp(r.u.s.p + r.u.s.len - 14, "/some/file.txt", 14) == 0);

    assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "c_run_once", 1), NULL, 0, &r), 0);
    assert_int_equal(r.u.i, 1);
    assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "c_last_error", 1), NULL, 0, &r), 0);
    assert_int_equal(r.kind, RV_BOOL);
    assert_int_equal(r.u.i, 1);

    const float in[5] = {1.0f, 0.5f, 3.14159265f, 65504.0f, 1e-8f};
    const float want[5] = {1.0f, 0.5f, 3.140625f, 65504.0f, 0.0f};
    rpc_tensor_t th;
    assert_int_equal(alloc_vec(&c, &th, 5, in), 0);
    rpc_value_t ha = rv_tensor(&th);
    assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "c_half", 1), &ha, 1, &r), 0);
    assert_int_equal(rawcli_copy_from(&c, &th, out, 5 * 4), 0);
    for (int i = 0; i < 5; i++)
        assert_true(out[i] == want[i]);

    fill_seq(x, 64, 1.0f);
    assert_int_equal(alloc_vec(&c, &tx, 64, x), 0);
    rpc_value_t pa[2] = {rv_tensor(&tx), rv_int(7)};
    assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "c_parallel", 1), pa, 2, &r), 0);
    assert_int_equal(rawcli_copy_from(&c, &tx, out, sizeof(out)), 0);
    for (int i = 0; i < 64; i++)
        assert_true(out[i] == x[i] + 7);
    rawcli_close(&c);
}

static void test_scalars(void **state)
{
    rawcli_t c;
    connect_or_fail(&c);
    uint64_t mod = load_fixture(&c, "vadd.so");
    rpc_value_t r, a[4] = {rv_int(7), rv_float(1.25), rv_str("hey"), rv_bool(1)};
    assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "scalars", 1), a, 4, &r), 0);
    assert_int_equal(r.kind, RV_STR);
    assert_int_equal(r.u.s.len, strlen("7,125,hey,1"));
    assert_memory_equal(r.u.s.p, "7,125,hey,1", r.u.s.len);

    float x[4] = {1, 2, 3, 4.5f};
    rpc_tensor_t tx;
    assert_int_equal(alloc_vec(&c, &tx, 4, x), 0);
    rpc_value_t xa = rv_tensor(&tx);
    assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "vsum", 1), &xa, 1, &r), 0);
    assert_int_equal(r.kind, RV_FLOAT);
    assert_true(r.u.f == 10.5);

    /* Array arguments must be memory this session allocated. */
    rpc_tensor_t fake = tx;
    fake.data = 0x1000;
    rpc_value_t fa = rv_tensor(&fake);
    assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "vsum", 1), &fa, 1, &r), 1);
    assert_non_null(strstr(c.exc, "not allocated in this session"));
    fake = tx;
    fake.shape[0] = 5; /* one element past the allocation */
    assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "vsum", 1), &fa, 1, &r), 1);
    fake = tx;
    fake.dev.type = 2;
    assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "vsum", 1), &fa, 1, &r), 1);
    assert_non_null(strstr(c.exc, "only the CPU"));
    /* The kernel's own checks. */
    assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "vadd", 1), &xa, 1, &r), 1);
    assert_string_equal(c.exc, "TVMError: vadd: num_args should be 3");
    rawcli_close(&c);
}

/* ---- system library ------------------------------------------------------------------ */

static void test_system_lib(void **state)
{
    rawcli_t c;
    connect_or_fail(&c);
    rpc_value_t r;
    /* syslib.so is classic-ABI code: runtime.SystemLib in either wire
     * generation (the server answers both names in every session); ffi
     * system libraries are test_ffi_modules' part. */
    const char *syslib = "runtime.SystemLib";
    /* Empty registry: lookups give none, not an error. */
    assert_int_equal(rawcli_gcall(&c, syslib, NULL, 0, &r), 0);
    assert_int_equal(r.kind, RV_MODULE);
    assert_int_equal(rawcli_mod_func(&c, r.u.h, "notexist", 1), 0);
    assert_string_equal(c.exc, "");

    /* Loading the object runs its constructors, which register symbols. */
    assert_true(load_fixture(&c, "syslib.so") != 0);
    assert_int_equal(rawcli_gcall(&c, syslib, NULL, 0, &r), 0);
    uint64_t sys = r.u.h;
    uint64_t f = rawcli_mod_func(&c, sys, "sysfx_add_one", 1);
    assert_true(f != 0);
    float x[4] = {1, 2, 3, 4}, out[4];
    rpc_tensor_t tx;
    assert_int_equal(alloc_vec(&c, &tx, 4, x), 0);
    rpc_value_t xa = rv_tensor(&tx);
    assert_int_equal(rawcli_call(&c, f, &xa, 1, &r), 0);
    assert_int_equal(rawcli_copy_from(&c, &tx, out, sizeof(out)), 0);
    assert_true(out[3] == 5);
    assert_int_equal(rawcli_mod_func(&c, sys, "sysfx_two", 1), 0); /* only with the prefix */

    rpc_value_t pfx = rv_str("myprefix_");
    assert_int_equal(rawcli_gcall(&c, syslib, &pfx, 1, &r), 0);
    uint64_t psys = r.u.h;
    uint64_t two = rawcli_mod_func(&c, psys, "sysfx_two", 1);
    assert_true(two != 0);
    assert_int_equal(rawcli_call(&c, two, NULL, 0, &r), 0);
    assert_int_equal(r.u.i, 2); /* the loader set <prefix>__tvm_module_ctx */
    assert_true(rawcli_mod_func(&c, psys, "sysfx_add_one", 1) != 0); /* unprefixed fallback */
    rawcli_close(&c);
}

/* ---- import blobs ----------------------------------------------------------------------- */

static void expect_load_error(rawcli_t *c, const char *file, const char *needle)
{
    rpc_value_t a = rv_str(file), r;
    assert_int_equal(upload_fixture(c, file, NULL), 0);
    assert_int_equal(rawcli_gcall(c, "tvm.rpc.server.load_module", &a, 1, &r), 1);
    if (!strstr(c->exc, needle))
        fail_msg("%s: expected \"%s\" in \"%s\"", file, needle, c->exc);
}

static void test_blobs(void **state)
{
    rawcli_t c;
    connect_or_fail(&c);
    rpc_value_t r;
    float x[4] = {1, 2, 3, 4}, out[4];
    rpc_tensor_t tx;
    assert_int_equal(alloc_vec(&c, &tx, 4, x), 0);
    rpc_value_t xa = rv_tensor(&tx);

    static const char *const good[] = {"blob_tree.so", "blob_legacy.so"};
    for (int k = 0; k < 2; k++) {
        uint64_t mod = load_fixture(&c, good[k]);
        assert_true(mod != 0);
        assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "blob_add_one", 1), &xa, 1, &r),
                         0);
        assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "blob_has_ctx", 1), NULL, 0, &r),
                         0);
        assert_int_equal(r.u.i, 1);
    }
    assert_int_equal(rawcli_copy_from(&c, &tx, out, sizeof(out)), 0);
    assert_true(out[0] == 3);

    expect_load_error(&c, "blob_cuda.so",
                      "Binary was created using cuda but a loader of that name is not "
                      "registered");
    /* The factory loads now (docs/models.md); this fixture's graph is "{}". */
    expect_load_error(&c, "blob_gef.so", "GraphExecutorFactory: graph needs nodes");
    expect_load_error(&c, "blob_trunc.so", "__tvm_dev_mblob is truncated");
    expect_load_error(&c, "blob_cycle.so", "Cyclic dependency detected during import");
    expect_load_error(&c, "blob_badtree.so", "which does not exist");
    /* The session survives all of them. */
    assert_true(load_fixture(&c, "blob_tree.so") != 0);
    rawcli_close(&c);
}

/* ---- linking uploads ------------------------------------------------------------------- */

static void check_vadd(rawcli_t *c, uint64_t mod)
{
    float a[64], b[64], out[64];
    fill_seq(a, 64, 1.0f);
    fill_seq(b, 64, 2.0f);
    rpc_tensor_t ta, tb, tc;
    assert_int_equal(alloc_vec(c, &ta, 64, a), 0);
    assert_int_equal(alloc_vec(c, &tb, 64, b), 0);
    assert_int_equal(alloc_vec(c, &tc, 64, NULL), 0);
    rpc_value_t args[3] = {rv_tensor(&ta), rv_tensor(&tb), rv_tensor(&tc)};
    uint64_t f = rawcli_mod_func(c, mod, "vadd", 1);
    assert_true(f != 0);
    assert_int_equal(rawcli_call(c, f, args, 3, NULL), 0);
    assert_int_equal(rawcli_copy_from(c, &tc, out, sizeof(out)), 0);
    for (int i = 0; i < 64; i++)
        assert_true(out[i] == a[i] + b[i]);
}

static void test_link_object(void **state)
{
    rawcli_t c;
    connect_or_fail(&c);
    rpc_value_t r;
    uint64_t mod = load_fixture(&c, "vadd.o");
    if (!mod)
        fail_msg("load vadd.o: %s", c.exc);
    check_vadd(&c, mod);
    rpc_value_t a = rv_str("vadd.o");
    assert_int_equal(rawcli_gcall(&c, "tvm.rpc.server.download_linked_module", &a, 1, &r), 0);
    assert_int_equal(r.kind, RV_BYTES);
    assert_true(r.u.s.len > 4 && memcmp(r.u.s.p, "\177ELF", 4) == 0);
    size_t linked = (size_t)r.u.s.len;
    /* Exactly <name>.so, next to the upload (MetaSchedule removes it so). */
    a = rv_str("vadd.o.so");
    assert_int_equal(rawcli_gcall(&c, "tvm.rpc.server.download", &a, 1, &r), 0);
    assert_int_equal(r.u.s.len, linked);

    /* .so files come back as they are. */
    size_t n;
    char *orig = fixture_bytes("vadd.so", &n);
    assert_non_null(orig);
    assert_int_equal(upload_fixture(&c, "vadd.so", NULL), 0);
    a = rv_str("vadd.so");
    assert_int_equal(rawcli_gcall(&c, "tvm.rpc.server.download_linked_module", &a, 1, &r), 0);
    assert_int_equal(r.u.s.len, n);
    assert_memory_equal(r.u.s.p, orig, n);
    free(orig);

    static const char junk[] = "this is not an object file";
    assert_int_equal(upload_bytes(&c, "junk.o", junk, sizeof(junk)), 0);
    a = rv_str("junk.o");
    assert_int_equal(rawcli_gcall(&c, "tvm.rpc.server.load_module", &a, 1, &r), 1);
    assert_non_null(strstr(c.exc, "linking"));
    rawcli_close(&c);
}

/* A one-member ustar archive written by hand, so the member name can be
 * anything (including an escape attempt). */
static size_t make_tar(char *out, size_t outlen, const char *member, const char *data, size_t len)
{
    memset(out, 0, outlen);
    char *h = out;
    snprintf(h, 100, "%s", member);
    snprintf(h + 100, 8, "%07o", 0644);
    snprintf(h + 108, 8, "%07o", 0);
    snprintf(h + 116, 8, "%07o", 0);
    snprintf(h + 124, 12, "%011o", (unsigned)len);
    snprintf(h + 136, 12, "%011o", 0);
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += (unsigned char)h[i];
    snprintf(h + 148, 8, "%06o", sum);
    memcpy(out + 512, data, len);
    return 512 + ((len + 511) / 512) * 512 + 1024;
}

static void test_link_tar(void **state)
{
    rawcli_t c;
    connect_or_fail(&c);
    rpc_value_t r;
    uint64_t mod = load_fixture(&c, "model.tar");
    if (!mod)
        fail_msg("load model.tar: %s", c.exc);
    check_vadd(&c, mod);
    /* Loading again extracts into a fresh directory. */
    rpc_value_t a = rv_str("model.tar");
    assert_int_equal(rawcli_gcall(&c, "tvm.rpc.server.load_module", &a, 1, &r), 0);
    assert_int_equal(r.kind, RV_MODULE);
    assert_int_equal(rawcli_gcall(&c, "tvm.rpc.server.download_linked_module", &a, 1, &r), 0);
    assert_true(r.u.s.len > 4 && memcmp(r.u.s.p, "\177ELF", 4) == 0);

    static char tarbuf[8192];
    size_t n = make_tar(tarbuf, sizeof(tarbuf), "../escape.o", "x", 1);
    assert_int_equal(upload_bytes(&c, "evil.tar", tarbuf, n), 0);
    a = rv_str("evil.tar");
    assert_int_equal(rawcli_gcall(&c, "tvm.rpc.server.load_module", &a, 1, &r), 1);
    assert_non_null(strstr(c.exc, "outside"));
    n = make_tar(tarbuf, sizeof(tarbuf), "/tmp/abs.o", "x", 1);
    assert_int_equal(upload_bytes(&c, "abs.tar", tarbuf, n), 0);
    a = rv_str("abs.tar");
    assert_int_equal(rawcli_gcall(&c, "tvm.rpc.server.load_module", &a, 1, &r), 1);
    assert_non_null(strstr(c.exc, "outside"));
    rawcli_close(&c);
}

/* ---- errors ----------------------------------------------------------------------------- */

static void test_errors(void **state)
{
    rawcli_t c;
    connect_or_fail(&c);
    rpc_value_t r, a = rv_str("no_such_module.so");
    assert_int_equal(rawcli_gcall(&c, "tvm.rpc.server.load_module", &a, 1, &r), 1);
    assert_non_null(strstr(c.exc, "cannot find file"));
    assert_non_null(strstr(c.exc, "no_such_module.so"));

    assert_int_equal(upload_bytes(&c, "kernel.ptx", "//", 2), 0);
    a = rv_str("kernel.ptx");
    assert_int_equal(rawcli_gcall(&c, "tvm.rpc.server.load_module", &a, 1, &r), 1);
    /* The loader's global name is the generation's own (RUNTIME.md §1.2:
     * runtime.module.loadfile_ptx, ffi.Module.load_from_file.ptx). */
    assert_non_null(strstr(c.exc, "Loader for `.ptx` files is not registered, resolved to ("));
    if (!is_ffi())
        assert_non_null(strstr(c.exc, "(runtime.module.loadfile_ptx)"));

    assert_int_equal(upload_bytes(&c, "bad.so", "not elf", 7), 0);
    a = rv_str("bad.so");
    assert_int_equal(rawcli_gcall(&c, "tvm.rpc.server.load_module", &a, 1, &r), 1);
    assert_non_null(strstr(c.exc, "Failed to load dynamic shared library"));

    a = rv_str("../outside.so");
    assert_int_equal(rawcli_gcall(&c, "tvm.rpc.server.load_module", &a, 1, &r), 1);

    uint64_t mod = load_fixture(&c, "faulty.so");
    assert_true(mod != 0);
    a = rv_str("boom: kernel assertion failed");
    assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "fail_msg", 1), &a, 1, &r), 1);
    assert_string_equal(c.exc, "TVMError: boom: kernel assertion failed");
    a = rv_str("ValueError: already has a kind");
    assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "fail_msg", 1), &a, 1, &r), 1);
    assert_string_equal(c.exc, "ValueError: already has a kind");
    assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "fail_silent", 1), NULL, 0, &r), 1);
    assert_non_null(strstr(c.exc, "fail_silent failed (returned -7)"));

    /* Module arguments must be modules. */
    rpc_value_t bad[3] = {rv_handle(RV_MODULE, 12345), rv_str("x"), rv_bool(1)};
    assert_int_equal(rawcli_gcall(&c, "tvm.rpc.server.ModuleGetFunction", bad, 3, &r), 1);
    rawcli_close(&c);
}

/* ---- time evaluator ------------------------------------------------------------------------ */

static int time_eval(rawcli_t *c, uint64_t mod, const char *name, int number, int repeat,
                     int min_ms, int cooldown, int flush, const char *pre, uint64_t *h)
{
    rpc_value_t te[12] = {mod ? rv_handle(RV_MODULE, mod) : (rpc_value_t){.kind = RV_NONE},
                          rv_str(name),
                          rv_int(1),
                          rv_int(0),
                          rv_int(number),
                          rv_int(repeat),
                          rv_int(min_ms),
                          rv_int(100),
                          rv_int(cooldown),
                          rv_int(2),
                          rv_int(flush),
                          rv_str(pre)};
    rpc_value_t r;
    int rc = rawcli_gcall(c, "runtime.RPCTimeEvaluator", te, 12, &r);
    *h = rc == 0 && r.kind == RV_FUNC ? r.u.h : 0;
    return rc;
}

static void test_time_evaluator(void **state)
{
    rawcli_t c;
    connect_or_fail(&c);
    uint64_t mod = load_fixture(&c, "vadd.so"), fmod = load_fixture(&c, "faulty.so");
    float a[N];
    fill_seq(a, N, 1.0f);
    rpc_tensor_t ta, tb, tc;
    assert_int_equal(alloc_vec(&c, &ta, N, a), 0);
    assert_int_equal(alloc_vec(&c, &tb, N, a), 0);
    assert_int_equal(alloc_vec(&c, &tc, N, NULL), 0);
    rpc_value_t args[3] = {rv_tensor(&ta), rv_tensor(&tb), rv_tensor(&tc)}, r;
    uint64_t h;

    /* min_repeat_ms grows number until a batch lasts 5 ms; with cooldown,
     * cache flushing and the AutoTVM preprocessor. */
    assert_int_equal(
        time_eval(&c, mod, "vadd", 1, 3, 5, 1, 1 << 16, "cache_flush_cpu_non_first_arg", &h), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(rawcli_call(&c, h, args, 3, &r), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(r.kind, RV_BYTES);
    assert_int_equal(r.u.s.len, 3 * 8);
    double secs[3];
    memcpy(secs, r.u.s.p, sizeof(secs));
    for (int i = 0; i < 3; i++)
        assert_true(secs[i] > 0 && secs[i] < 0.01);
    double elapsed = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(elapsed >= 0.015); /* three batches of at least 5 ms */

    /* repeat = 0: empty bytes. */
    assert_int_equal(time_eval(&c, mod, "vadd", 10, 0, 0, 0, 0, "", &h), 0);
    assert_int_equal(rawcli_call(&c, h, args, 3, &r), 0);
    assert_int_equal(r.kind, RV_BYTES);
    assert_int_equal(r.u.s.len, 0);

    /* A global function (mod = None). */
    assert_int_equal(time_eval(&c, 0, "testing.nop", 5, 2, 0, 0, 0, "", &h), 0);
    assert_int_equal(rawcli_call(&c, h, NULL, 0, &r), 0);
    assert_int_equal(r.u.s.len, 16);

    assert_int_equal(time_eval(&c, mod, "nope", 1, 1, 0, 0, 0, "", &h), 1);
    assert_string_equal(c.exc, "TVMError: Cannot find nope in the global registry");
    assert_int_equal(time_eval(&c, 0, "nope", 1, 1, 0, 0, 0, "", &h), 1);
    assert_string_equal(c.exc, "TVMError: Cannot find nope in the global function");
    assert_int_equal(time_eval(&c, mod, "vadd", 1, 1, 0, 0, 0, "nope", &h), 1);
    assert_string_equal(c.exc, "TVMError: Cannot find nope in the global function");

    /* Errors of the timed function are the call's error. */
    assert_int_equal(time_eval(&c, fmod, "fail_silent", 1, 1, 0, 0, 0, "", &h), 0);
    assert_int_equal(rawcli_call(&c, h, NULL, 0, &r), 1);
    assert_non_null(strstr(c.exc, "fail_silent failed"));
    rawcli_close(&c);
}

/* ---- measurement helpers through RPC --------------------------------------------------------- */

static void test_random_fill(void **state)
{
    rawcli_t c;
    connect_or_fail(&c);
    rpc_value_t r;
    float zero[300] = {0}, out[300];
    rpc_tensor_t t;
    static const char *const fns[] = {"tvm.contrib.random.random_fill",
                                      "tvm.contrib.random.random_fill_for_measure"};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(alloc_vec(&c, &t, 300, zero), 0);
        rpc_value_t a = rv_tensor(&t);
        assert_int_equal(rawcli_gcall(&c, fns[k], &a, 1, &r), 0);
        assert_int_equal(rawcli_copy_from(&c, &t, out, sizeof(out)), 0);
        for (int i = 0; i < 300; i++)
            assert_true(out[i] >= 1 && out[i] < 10);
    }
    /* int8: one integer 1..9 per byte. */
    rpc_tensor_t t8 = t;
    t8.dtype.code = 0;
    t8.dtype.bits = 8;
    t8.shape[0] = 1200;
    rpc_value_t a8 = rv_tensor(&t8);
    assert_int_equal(rawcli_gcall(&c, fns[0], &a8, 1, &r), 0);
    uint8_t bytes[1200];
    assert_int_equal(rawcli_copy_from(&c, &t8, bytes, sizeof(bytes)), 0);
    for (int i = 0; i < 1200; i++)
        assert_true(bytes[i] >= 1 && bytes[i] <= 9);
    /* 12-bit elements cannot be filled. */
    t8.dtype.bits = 12;
    t8.shape[0] = 10;
    assert_int_equal(rawcli_gcall(&c, fns[0], &a8, 1, &r), 1);

    rpc_value_t fl[2] = {rv_tensor(&t), rv_tensor(&t)};
    assert_int_equal(rawcli_gcall(&c, "cache_flush_cpu_non_first_arg", fl, 2, &r), 0);
    fl[1] = rv_int(3);
    assert_int_equal(rawcli_gcall(&c, "cache_flush_cpu_non_first_arg", fl, 2, &r), 1);
    rawcli_close(&c);
}

/* ---- crashes and hangs end the session, not the server ----------------------------------------
 */

static void expect_server_alive(void)
{
    rawcli_t c;
    connect_or_fail(&c);
    rpc_value_t r;
    assert_int_equal(rawcli_gcall(&c, "testing.nop", NULL, 0, &r), 0);
    rawcli_close(&c);
}

static void test_crash(void **state)
{
    rawcli_t c;
    connect_or_fail(&c);
    uint64_t mod = load_fixture(&c, "faulty.so");
    assert_true(mod != 0);
    int before = h_log_count(&srv, "worker killed by signal 11");
    assert_int_equal(rawcli_call(&c, rawcli_mod_func(&c, mod, "segv", 1), NULL, 0, NULL), -1);
    rawcli_close(&c);
    for (int i = 0; i < 500 && h_log_count(&srv, "worker killed by signal 11") == before; i++)
        usleep(10000);
    if (h_log_count(&srv, "worker killed by signal 11") != before + 1) {
        h_dump_log(&srv);
        fail_msg("no \"worker killed by signal 11\" in the server log");
    }
    expect_server_alive();
}

static void test_timeout(void **state)
{
    rawcli_t c;
    if (cli_connect(&c, " -timeout=2") != 0)
        fail_msg("cannot open a session");
    uint64_t mod = load_fixture(&c, "faulty.so");
    assert_true(mod != 0);
    uint64_t spin = rawcli_mod_func(&c, mod, "spin", 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(rawcli_call_to(&c, spin, NULL, 0, NULL, 15000), 1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_non_null(strstr(c.exc, "RPCSessionTimeoutError: "));
    assert_true(t1.tv_sec - t0.tv_sec < 10);
    rawcli_close(&c);
    for (int i = 0; i < 500 && h_log_count(&srv, "timed out") == 0; i++)
        usleep(10000);
    assert_true(h_log_count(&srv, "timed out") >= 1);
    expect_server_alive();
}

int main(void)
{
    const char *gen = getenv("TVMRPC_TEST_GEN");
    if (gen && strcmp(gen, "ffi") == 0)
        codec = &rpc_codec_ffi;
    else if (gen && *gen && strcmp(gen, "classic") != 0) {
        fprintf(stderr, "TVMRPC_TEST_GEN must be classic or ffi, not %s\n", gen);
        return 2;
    }
    fprintf(stderr, "generation under test: %s\n", codec->name);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vadd_flow),   cmocka_unit_test(test_tvm_main),
        cmocka_unit_test(test_llvm_style),  cmocka_unit_test(test_env_lookup),
        cmocka_unit_test(test_c_abi),       cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_system_lib),  cmocka_unit_test(test_blobs),
        cmocka_unit_test(test_link_object), cmocka_unit_test(test_link_tar),
        cmocka_unit_test(test_errors),      cmocka_unit_test(test_time_evaluator),
        cmocka_unit_test(test_random_fill), cmocka_unit_test(test_crash),
        cmocka_unit_test(test_timeout),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
