/* test_graph_executor: whole models through the graph executor (RUNTIME.md
 * §1.6, §3) on a real tvmrpc server, driven by the C client library the way
 * TVM v0.19's Python GraphModule drives it. The model is the fixture
 * network of tests/fixtures (net_model.h): kernels in net_kernels.c, graph
 * JSON, params and export_library-style import blobs from gen_net. Every
 * output is compared with a plain C computation of the same network.
 *
 * Also: the legacy create + load_params flow, the time evaluator on run
 * and run_from_inputs, every class of bad input (each must be a clear
 * error and leave the session working), a session through the tracker,
 * and a replay of the v0.19-graph-py trace's requests with our fixture
 * library in place of the recorded one (whose upload the trace truncates):
 * reply kinds and shapes must match TVM's, and the recorded input must
 * give our reference output. */
#include "harness.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../fixtures/net_reference.h"
#include "base/buf.h"
#include "base/net.h"
#include "rawcli.h"
#include "rpc/rpc.h"
#include "trace.h"
#include "tvmrpc/client.h"

#define IO_MS 30000
#define TOL 1e-4f

static hproc_t srv;

/* ---- the reference network (net_reference.h) ------------------------------------ */

static void expect_close(const float *got, const float *want, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        if (fabsf(got[i] - want[i]) > TOL * (1 + fabsf(want[i])))
            fail_msg("%s: output[%d] = %.7g, reference %.7g", what, i, got[i], want[i]);
}

/* ---- files --------------------------------------------------------------------- */

static char *fixture(const char *name, size_t *len)
{
    char path[PATH_MAX];
    size_t n;
    snprintf(path, sizeof(path), "%s/%s", h_fixture_dir(), name);
    char *p = h_read_file(path, len ? len : &n);
    if (!p)
        fail_msg("missing fixture %s", path);
    return p;
}

/* s with the first occurrence of from replaced by to (caller frees). */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    if (!at)
        fail_msg("replace: \"%s\" not found", from);
    size_t pre = (size_t)(at - s);
    char *out = malloc(strlen(s) + strlen(to) + 1);
    memcpy(out, s, pre);
    strcpy(out + pre, to);
    strcat(out, at + strlen(from));
    return out;
}

/* ---- client helpers ------------------------------------------------------------ */

typedef tvmrpc_sess_t sess_t;

static sess_t *sess_open(int port)
{
    char err[512];
    tvmrpc_opts_t o;
    tvmrpc_opts_init(&o);
    o.timeout_ms = IO_MS;
    sess_t *s = tvmrpc_connect_opts("127.0.0.1", port, "", &o, err, sizeof(err));
    if (!s) {
        h_dump_log(&srv);
        fail_msg("connect: %s", err);
    }
    return s;
}

static uint64_t upload_load(sess_t *s, const char *file)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", h_fixture_dir(), file);
    h_sess_ok(s, tvmrpc_upload_file(s, path, file), "upload");
    tvmrpc_value_t a = tvmrpc_v_str(file), m;
    h_sess_ok(s, h_call_global(s, "tvm.rpc.server.load_module", &a, 1, &m), "load_module");
    assert_int_equal(m.kind, TVMRPC_MODULE);
    return m.u.h;
}

/* What Python's GraphModule looks up (and the optional functions). */
typedef struct gm {
    uint64_t mod;
    uint64_t set_input, run, get_output, get_input, get_num_outputs, get_input_index,
        get_input_info, get_num_inputs, load_params, share_params;
    uint64_t set_input_zero_copy, set_output_zero_copy, run_from_inputs, get_output_info;
} gm_t;

static void gm_open(sess_t *s, uint64_t exec, gm_t *g)
{
    static const char *const names[] = {"set_input",           "run",
                                        "get_output",          "get_input",
                                        "get_num_outputs",     "get_input_index",
                                        "get_input_info",      "get_num_inputs",
                                        "load_params",         "share_params",
                                        "set_input_zero_copy", "set_output_zero_copy",
                                        "run_from_inputs",     "get_output_info"};
    uint64_t *slots[] = {&g->set_input,           &g->run,
                         &g->get_output,          &g->get_input,
                         &g->get_num_outputs,     &g->get_input_index,
                         &g->get_input_info,      &g->get_num_inputs,
                         &g->load_params,         &g->share_params,
                         &g->set_input_zero_copy, &g->set_output_zero_copy,
                         &g->run_from_inputs,     &g->get_output_info};
    g->mod = exec;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        *slots[i] = h_mod_func(s, exec, names[i]);
        if (!*slots[i])
            fail_msg("executor has no function %s", names[i]);
    }
    assert_int_equal(h_mod_func(s, exec, "no_such_function"), 0);
}

static void gm_close(sess_t *s, gm_t *g)
{
    uint64_t *fs = &g->set_input;
    for (int i = 0; i < 14; i++)
        h_sess_ok(s, tvmrpc_free_handle(s, fs[i], TVMRPC_FUNC), "free function");
    h_sess_ok(s, tvmrpc_free_handle(s, g->mod, TVMRPC_MODULE), "free executor");
}

/* GraphModule.set_input: get_input(key), then copy into the live buffer. */
static void py_set_input(sess_t *s, const gm_t *g, const char *name, const void *data, size_t n)
{
    tvmrpc_value_t a = tvmrpc_v_str(name), r;
    h_sess_ok(s, tvmrpc_call(s, g->get_input, &a, 1, &r), "get_input");
    assert_int_equal(r.kind, TVMRPC_TENSOR);
    tvmrpc_array_t arr = *r.u.arr;
    assert_true(arr.handle != 0);
    h_sess_ok(s, tvmrpc_array_copy_from_host(s, &arr, data, n), "copy into get_input's array");
    h_sess_ok(s, tvmrpc_array_free(s, &arr), "free input array");
}

/* GraphModule.get_output(i).numpy(). */
static void py_get_output(sess_t *s, const gm_t *g, int idx, void *out, size_t n)
{
    tvmrpc_value_t a = tvmrpc_v_int(idx), r;
    h_sess_ok(s, tvmrpc_call(s, g->get_output, &a, 1, &r), "get_output");
    assert_int_equal(r.kind, TVMRPC_TENSOR);
    tvmrpc_array_t arr = *r.u.arr;
    assert_int_equal(arr.ndim, 2);
    assert_int_equal(arr.shape[1], NET_OUT);
    h_sess_ok(s, tvmrpc_array_copy_to_host(s, &arr, out, n), "copy from get_output's array");
    h_sess_ok(s, tvmrpc_array_free(s, &arr), "free output array");
}

static void call0(sess_t *s, uint64_t f, const char *what)
{
    h_sess_ok(s, tvmrpc_call(s, f, NULL, 0, NULL), what);
}

static int64_t call_int(sess_t *s, uint64_t f, const tvmrpc_value_t *args, int n)
{
    tvmrpc_value_t r;
    h_sess_ok(s, tvmrpc_call(s, f, args, n, &r), "call");
    assert_int_equal(r.kind, TVMRPC_INT);
    return r.u.i;
}

static tvmrpc_array_t alloc_f32(sess_t *s, int ndim, const int64_t *shape, const float *init)
{
    tvmrpc_array_t a;
    tvmrpc_dtype_t f32 = {2, 32, 1};
    tvmrpc_device_t cpu = {1, 0};
    h_sess_ok(s, tvmrpc_array_alloc(s, cpu, ndim, shape, f32, NULL, &a), "alloc");
    if (init)
        h_sess_ok(s, tvmrpc_array_copy_from_host(s, &a, init, (size_t)tvmrpc_array_nbytes(&a)),
                  "fill");
    return a;
}

static const int64_t x_shape[4] = {1, NET_C, NET_H, NET_W}, y_shape[2] = {1, NET_OUT};

/* An executor from a factory library: load, ModuleGetFunction "default",
 * call it with cpu(0). */
static uint64_t factory_exec(sess_t *s, const char *file, uint64_t *factory)
{
    uint64_t fac = upload_load(s, file);
    uint64_t dflt = h_mod_func(s, fac, "default");
    assert_true(dflt != 0);
    tvmrpc_value_t dev = tvmrpc_v_device(1, 0), r;
    h_sess_ok(s, tvmrpc_call(s, dflt, &dev, 1, &r), "default(cpu0)");
    assert_int_equal(r.kind, TVMRPC_MODULE);
    h_sess_ok(s, tvmrpc_free_handle(s, dflt, TVMRPC_FUNC), "free default");
    if (factory)
        *factory = fac;
    else
        h_sess_ok(s, tvmrpc_free_handle(s, fac, TVMRPC_MODULE), "free factory");
    return r.u.h;
}

/* Run with input seeded seed and compare with the reference. */
static void check_run(sess_t *s, const gm_t *g, uint32_t seed, const char *what)
{
    float x[NET_IN_ELEMS], y[NET_OUT], want[NET_OUT];
    net_fill(x, NET_IN_ELEMS, seed);
    net_reference(x, want);
    py_set_input(s, g, "data", x, sizeof(x));
    call0(s, g->run, "run");
    py_get_output(s, g, 0, y, sizeof(y));
    expect_close(y, want, NET_OUT, what);
}

/* runtime.RPCTimeEvaluator(mod, name, cpu0, number=10, repeat=2, ...) called
 * once with args: two positive timings. */
static void time_it(sess_t *s, uint64_t mod, const char *name, const tvmrpc_value_t *args, int n)
{
    tvmrpc_value_t r;
    uint64_t te;
    h_sess_ok(s, h_time_evaluator(s, mod, name, 10, 2, &te), "RPCTimeEvaluator");
    h_sess_ok(s, tvmrpc_call(s, te, args, n, &r), "time evaluator call");
    assert_int_equal(r.kind, TVMRPC_BYTES);
    assert_int_equal(r.u.s.len, 16);
    double t[2];
    memcpy(t, r.u.s.p, 16);
    assert_true(t[0] > 0 && t[1] > 0 && t[0] < 1);
    h_sess_ok(s, tvmrpc_free_handle(s, te, TVMRPC_FUNC), "free evaluator");
}

/* ---- setup ------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    h_sess_log(&srv); /* a failed check shows the server's log */
    return h_start_fixture_server(&srv);
}

static int group_teardown(void **state)
{
    h_stop(&srv);
    return 0;
}

/* ---- the factory flow (§3.5 sequence 1) ------------------------------------------- */

static void test_factory_flow(void **state)
{
    sess_t *s = sess_open(srv.port);
    uint64_t fac;
    gm_t g;
    gm_open(s, factory_exec(s, "net.so", &fac), &g);
    assert_int_equal(call_int(s, g.get_num_inputs, NULL, 0), 5); /* data + 4 weights */
    assert_int_equal(call_int(s, g.get_num_outputs, NULL, 0), 1);
    tvmrpc_value_t key = tvmrpc_v_str("data");
    assert_int_equal(call_int(s, g.get_input_index, &key, 1), 0);
    key = tvmrpc_v_str("p3");
    assert_int_equal(call_int(s, g.get_input_index, &key, 1), 4);
    key = tvmrpc_v_str("nope");
    assert_int_equal(call_int(s, g.get_input_index, &key, 1), -1);
    tvmrpc_value_t r;
    h_sess_ok(s, tvmrpc_call(s, g.get_input_info, NULL, 0, &r), "get_input_info");
    assert_int_equal(r.kind, TVMRPC_OBJECT);
    h_sess_ok(s, tvmrpc_free_handle(s, r.u.h, TVMRPC_OBJECT), "free info");
    h_sess_ok(s, tvmrpc_call(s, g.get_output_info, NULL, 0, &r), "get_output_info");
    assert_int_equal(r.kind, TVMRPC_OBJECT);
    h_sess_ok(s, tvmrpc_free_handle(s, r.u.h, TVMRPC_OBJECT), "free info");

    check_run(s, &g, NET_SEED_X, "factory executor");
    check_run(s, &g, NET_SEED_X + 1, "factory executor, second input");
    time_it(s, g.mod, "run", NULL, 0);

    /* get_output's array is the live buffer: a later run shows through. */
    float x[NET_IN_ELEMS], y[NET_OUT], want[NET_OUT];
    tvmrpc_value_t zero = tvmrpc_v_int(0);
    h_sess_ok(s, tvmrpc_call(s, g.get_output, &zero, 1, &r), "get_output");
    tvmrpc_array_t live = *r.u.arr;
    net_fill(x, NET_IN_ELEMS, NET_SEED_X + 2);
    net_reference(x, want);
    py_set_input(s, &g, "data", x, sizeof(x));
    call0(s, g.run, "run");
    h_sess_ok(s, tvmrpc_array_copy_to_host(s, &live, y, sizeof(y)), "copy live output");
    expect_close(y, want, NET_OUT, "live output array");

    /* get_output(index, out) and get_output(head name). */
    tvmrpc_array_t out = alloc_f32(s, 2, y_shape, NULL);
    tvmrpc_value_t a2[2] = {tvmrpc_v_int(0), tvmrpc_v_tensor(&out)};
    h_sess_ok(s, tvmrpc_call(s, g.get_output, a2, 2, NULL), "get_output(0, out)");
    memset(y, 0, sizeof(y));
    h_sess_ok(s, tvmrpc_array_copy_to_host(s, &out, y, sizeof(y)), "copy out");
    expect_close(y, want, NET_OUT, "get_output(0, out)");
    key = tvmrpc_v_str("tvmgen_default_fused_nn_dense_add");
    h_sess_ok(s, tvmrpc_call(s, g.get_output, &key, 1, &r), "get_output by name");
    assert_int_equal(r.kind, TVMRPC_TENSOR);
    h_sess_ok(s, tvmrpc_free_handle(s, r.u.arr->handle, TVMRPC_TENSOR), "free");

    /* set_input(index, array) and run_from_inputs, also timed. */
    net_fill(x, NET_IN_ELEMS, NET_SEED_X + 3);
    net_reference(x, want);
    tvmrpc_array_t in = alloc_f32(s, 4, x_shape, x);
    tvmrpc_value_t a3[2] = {tvmrpc_v_int(0), tvmrpc_v_tensor(&in)};
    h_sess_ok(s, tvmrpc_call(s, g.set_input, a3, 2, NULL), "set_input(0, array)");
    call0(s, g.run, "run");
    h_sess_ok(s, tvmrpc_array_copy_to_host(s, &live, y, sizeof(y)), "copy live output");
    expect_close(y, want, NET_OUT, "set_input by index");
    tvmrpc_value_t rfi[4] = {tvmrpc_v_int(1), tvmrpc_v_int(0), tvmrpc_v_str("data"),
                             tvmrpc_v_tensor(&in)};
    h_sess_ok(s, tvmrpc_call(s, g.run_from_inputs, rfi, 4, &r), "run_from_inputs");
    assert_int_equal(r.kind, TVMRPC_OBJECT);
    h_sess_ok(s, tvmrpc_free_handle(s, r.u.h, TVMRPC_OBJECT), "free outputs");
    time_it(s, g.mod, "run_from_inputs", rfi, 4);

    /* A second executor of the factory has its own storage. */
    gm_t g2;
    uint64_t dflt = h_mod_func(s, fac, "default");
    tvmrpc_value_t dev = tvmrpc_v_device(1, 0);
    h_sess_ok(s, tvmrpc_call(s, dflt, &dev, 1, &r), "default(cpu0) again");
    gm_open(s, r.u.h, &g2);
    check_run(s, &g2, NET_SEED_X + 4, "second executor");
    h_sess_ok(s, tvmrpc_array_copy_to_host(s, &live, y, sizeof(y)), "copy live output");
    expect_close(y, want, NET_OUT, "first executor untouched");

    /* The live array keeps its storage after the executor is gone. */
    gm_close(s, &g);
    h_sess_ok(s, tvmrpc_array_copy_to_host(s, &live, y, sizeof(y)), "copy after free");
    expect_close(y, want, NET_OUT, "array outliving its executor");
    h_sess_ok(s, tvmrpc_array_free(s, &live), "free live");

    /* Factory functions. */
    uint64_t gj = h_mod_func(s, fac, "get_graph_json");
    h_sess_ok(s, tvmrpc_call(s, gj, NULL, 0, &r), "get_graph_json");
    assert_int_equal(r.kind, TVMRPC_STR);
    char *json = fixture("net.json", NULL);
    assert_int_equal(r.u.s.len, strlen(json));
    assert_memory_equal(r.u.s.p, json, strlen(json));
    free(json);
    uint64_t gp = h_mod_func(s, fac, "get_graph_params");
    h_sess_ok(s, tvmrpc_call(s, gp, NULL, 0, &r), "get_graph_params");
    assert_int_equal(r.kind, TVMRPC_OBJECT);
    h_sess_ok(s, tvmrpc_free_handle(s, r.u.h, TVMRPC_OBJECT), "free params");
    uint64_t rp = h_mod_func(s, fac, "remove_params");
    h_sess_ok(s, tvmrpc_call(s, rp, NULL, 0, &r), "remove_params");
    assert_int_equal(r.kind, TVMRPC_MODULE);
    uint64_t bare = r.u.h;
    uint64_t bd = h_mod_func(s, bare, "default");
    h_sess_ok(s, tvmrpc_call(s, bd, &dev, 1, &r), "bare default(cpu0)");
    gm_t g3;
    gm_open(s, r.u.h, &g3);
    net_fill(x, NET_IN_ELEMS, NET_SEED_X);
    py_set_input(s, &g3, "data", x, sizeof(x));
    call0(s, g3.run, "run without weights");
    py_get_output(s, &g3, 0, y, sizeof(y));
    for (int i = 0; i < NET_OUT; i++)
        assert_true(y[i] == 0); /* zero weights, zeroed storage */
    gm_close(s, &g3);
    gm_close(s, &g2);
    tvmrpc_close(s);
}

/* Relay's pre-v0.8 key for the same entry. */
static void test_legacy_key(void **state)
{
    sess_t *s = sess_open(srv.port);
    gm_t g;
    gm_open(s, factory_exec(s, "net_legacykey.so", NULL), &g);
    check_run(s, &g, NET_SEED_X, "GraphRuntimeFactory");
    gm_close(s, &g);
    tvmrpc_close(s);
}

/* ---- legacy create + load_params (§3.5 sequence 2), sharing, zero copy ------------ */

static uint64_t create_exec(sess_t *s, uint64_t lib, const char *json)
{
    tvmrpc_value_t a[4] = {tvmrpc_v_str(json), tvmrpc_v_handle(TVMRPC_MODULE, lib), tvmrpc_v_int(1),
                           tvmrpc_v_int(0)},
                   r;
    h_sess_ok(s, h_call_global(s, "tvm.graph_executor.create", a, 4, &r),
              "tvm.graph_executor.create");
    assert_int_equal(r.kind, TVMRPC_MODULE);
    return r.u.h;
}

static void test_legacy_create(void **state)
{
    sess_t *s = sess_open(srv.port);
    uint64_t lib = upload_load(s, "net_lib.so");
    char *json = fixture("net.json", NULL);
    size_t plen;
    char *params = fixture("net.params", &plen);
    gm_t g, g2;
    gm_open(s, create_exec(s, lib, json), &g);
    tvmrpc_value_t pb = tvmrpc_v_bytes(params, plen);
    h_sess_ok(s, tvmrpc_call(s, g.load_params, &pb, 1, NULL), "load_params");
    check_run(s, &g, NET_SEED_X, "create + load_params");

    /* share_params: a second executor uses the first one's weights. */
    gm_open(s, create_exec(s, lib, json), &g2);
    tvmrpc_value_t sp[2] = {tvmrpc_v_handle(TVMRPC_MODULE, g.mod), tvmrpc_v_bytes(params, plen)};
    h_sess_ok(s, tvmrpc_call(s, g2.share_params, sp, 2, NULL), "share_params");
    check_run(s, &g2, NET_SEED_X + 5, "shared weights");

    /* Zero copy: the executor reads and writes our arrays directly. */
    float x[NET_IN_ELEMS], y[NET_OUT], want[NET_OUT];
    net_fill(x, NET_IN_ELEMS, NET_SEED_X + 6);
    net_reference(x, want);
    tvmrpc_array_t in = alloc_f32(s, 4, x_shape, x), out = alloc_f32(s, 2, y_shape, NULL);
    tvmrpc_value_t zi[2] = {tvmrpc_v_str("data"), tvmrpc_v_tensor(&in)};
    tvmrpc_value_t zo[2] = {tvmrpc_v_int(0), tvmrpc_v_tensor(&out)};
    h_sess_ok(s, tvmrpc_call(s, g2.set_input_zero_copy, zi, 2, NULL), "set_input_zero_copy");
    h_sess_ok(s, tvmrpc_call(s, g2.set_output_zero_copy, zo, 2, NULL), "set_output_zero_copy");
    call0(s, g2.run, "run zero copy");
    h_sess_ok(s, tvmrpc_array_copy_to_host(s, &out, y, sizeof(y)), "copy zero-copy output");
    expect_close(y, want, NET_OUT, "zero copy");
    tvmrpc_value_t zn[2] = {tvmrpc_v_str("tvmgen_default_fused_nn_dense_add:0"),
                            tvmrpc_v_tensor(&out)};
    h_sess_ok(s, tvmrpc_call(s, g2.set_output_zero_copy, zn, 2, NULL),
              "set_output_zero_copy by name");
    zi[0] = tvmrpc_v_str("not_an_input"); /* ignored, as in TVM */
    h_sess_ok(s, tvmrpc_call(s, g2.set_input_zero_copy, zi, 2, NULL),
              "set_input_zero_copy unknown");
    time_it(s, g2.mod, "run", NULL, 0);
    gm_close(s, &g2);
    gm_close(s, &g);
    h_sess_ok(s, tvmrpc_array_free(s, &in), "free");
    h_sess_ok(s, tvmrpc_array_free(s, &out), "free");
    free(json);
    free(params);
    tvmrpc_close(s);
}

/* ---- bad input: each a clear error, the session keeps working ---------------------- */

static void expect_create_error(sess_t *s, uint64_t lib, const char *json, const char *needle)
{
    tvmrpc_value_t a[4] = {tvmrpc_v_str(json), tvmrpc_v_handle(TVMRPC_MODULE, lib), tvmrpc_v_int(1),
                           tvmrpc_v_int(0)},
                   r;
    h_sess_expect_error(s, h_call_global(s, "tvm.graph_executor.create", a, 4, &r), needle);
}

/* A run that fails in a kernel names the node. */
static void expect_run_error(sess_t *s, uint64_t lib, const char *json, const char *needle)
{
    gm_t g;
    gm_open(s, create_exec(s, lib, json), &g);
    h_sess_expect_error(s, tvmrpc_call(s, g.run, NULL, 0, NULL), needle);
    gm_close(s, &g);
}

static void test_bad_graphs(void **state)
{
    sess_t *s = sess_open(srv.port);
    uint64_t lib = upload_load(s, "net_lib.so");
    char *json = fixture("net.json", NULL), *bad;
    expect_create_error(s, lib, "{\"nodes\": [", "graph JSON");
    expect_create_error(s, lib, "[]", "graph JSON must be an object");
    bad = replace(json, "\"heads\"", "\"headz\"");
    expect_create_error(s, lib, bad, "key headz is not supported");
    free(bad);
    bad = replace(json, "\"op\": \"tvm_op\"", "\"op\": \"conv2d\"");
    expect_create_error(s, lib, bad, "Can only take tvm_op as op");
    free(bad);
    bad = replace(json, "\"storage_id\"", "\"storage_idx\"");
    expect_create_error(s, lib, bad, "storage_id");
    free(bad);
    bad = replace(json, "[0, 1, 2, 3, 3, 4, 5, 6]", "[0, 1, 2, 3, 3, 4, 5, 60]");
    expect_create_error(s, lib, bad, "entry 7: storage_id");
    free(bad);
    bad = replace(json, "[[4, 0, 0], [5, 0, 0]", "[[4, 0, 0], [9, 0, 0]");
    expect_create_error(s, lib, bad, "node 7 (tvmgen_default_fused_nn_dense_add)");
    free(bad);
    bad = replace(json, "\"func_name\": \"tvmgen_default_fused_nn_dense_add\"",
                  "\"func_name\": \"tvmgen_default_fused_nn_softmax\"");
    expect_create_error(s, lib, bad, "no such function in module: tvmgen_default_fused_nn_softmax");
    free(bad);
    bad = replace(json, "\"float32\", \"float32\"", "\"float32\", \"floaty\"");
    expect_create_error(s, lib, bad, "entry 1: unknown dltype");
    free(bad);

    /* Wrong arguments to create. */
    tvmrpc_value_t a[4] = {tvmrpc_v_str(json), tvmrpc_v_handle(TVMRPC_MODULE, lib), tvmrpc_v_int(2),
                           tvmrpc_v_int(0)},
                   r;
    h_sess_expect_error(s, h_call_global(s, "tvm.graph_executor.create", a, 4, &r),
                        "device type 2");
    h_sess_expect_error(s, h_call_global(s, "tvm.graph_executor.create", a, 3, &r), "pairs");
    a[1] = tvmrpc_v_int(7);
    h_sess_expect_error(s, h_call_global(s, "tvm.graph_executor.create", a, 4, &r),
                        "must be a module");

    /* Graphs the kernels reject at run time: the node is named. */
    bad = replace(json, "[[1, 3, 16, 16]", "[[1, 3, 8, 32]");
    expect_run_error(s, lib, bad,
                     "node 3 (tvmgen_default_fused_nn_conv2d_add_nn_relu) failed: "
                     "Assert fail");
    free(bad);
    bad = replace(json,
                  "\"flatten_data\": \"0\", \"func_name\": \"tvmgen_default_fused_nn_dense_add\"",
                  "\"flatten_data\": \"1\", \"func_name\": \"tvmgen_default_fused_nn_dense_add\"");
    expect_run_error(s, lib, bad, "arg[0].ndim is expected to equal 2, got 1");
    free(bad);

    /* The session still works. */
    gm_t g;
    gm_open(s, create_exec(s, lib, json), &g);
    gm_close(s, &g);
    free(json);
    tvmrpc_close(s);
}

/* A params blob of the given weights, each float32 with this shape. */
typedef struct pspec {
    const char *name;
    int ndim;
    int64_t shape[4];
} pspec_t;

static void params_blob(buf_t *b, const pspec_t *ps, int n)
{
    buf_append_u64le(b, 0xF7E58D4F05049CB7ULL);
    buf_append_u64le(b, 0);
    buf_append_u64le(b, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        buf_append_u64le(b, strlen(ps[i].name));
        buf_append_str(b, ps[i].name);
    }
    buf_append_u64le(b, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        int64_t elems = 1;
        buf_append_u64le(b, 0xDD5E40F096B4A13FULL);
        buf_append_u64le(b, 0);
        buf_append_i32le(b, 1);
        buf_append_i32le(b, 0);
        buf_append_i32le(b, ps[i].ndim);
        uint8_t dt[4] = {2, 32, 1, 0};
        buf_append(b, dt, 4);
        for (int d = 0; d < ps[i].ndim; d++) {
            buf_append_i64le(b, ps[i].shape[d]);
            elems *= ps[i].shape[d];
        }
        buf_append_i64le(b, elems * 4);
        for (int64_t k = 0; k < elems; k++)
            buf_append_u32le(b, 0x3f800000u); /* 1.0f */
    }
}

static void expect_params_error(sess_t *s, const gm_t *g, const void *p, size_t n,
                                const char *needle)
{
    tvmrpc_value_t pb = tvmrpc_v_bytes(p, n);
    h_sess_expect_error(s, tvmrpc_call(s, g->load_params, &pb, 1, NULL), needle);
}

static void test_bad_params_and_inputs(void **state)
{
    sess_t *s = sess_open(srv.port);
    uint64_t lib = upload_load(s, "net_lib.so");
    char *json = fixture("net.json", NULL);
    size_t plen;
    char *params = fixture("net.params", &plen);
    gm_t g;
    gm_open(s, create_exec(s, lib, json), &g);

    /* Truncated anywhere, wrong magics, a weight of the wrong shape. */
    static const size_t cuts[] = {0, 7, 16, 30, 60, 200, 5000, 80000};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++)
        expect_params_error(s, &g, params, cuts[i], "Invalid");
    expect_params_error(s, &g, params, plen - 1, "params p3: Invalid DLTensor file format");
    char *copy = malloc(plen);
    memcpy(copy, params, plen);
    copy[0] ^= 1;
    expect_params_error(s, &g, copy, plen, "Invalid parameters file format");
    memcpy(copy, params, plen);
    copy[16 + 8 + 4 * 10 + 8] ^= 1; /* magic, reserved, four names, count: p0's record */
    expect_params_error(s, &g, copy, plen, "params p0: Invalid DLTensor file format: bad magic");
    free(copy);
    buf_t b;
    buf_init(&b, 0);
    const pspec_t wrong[] = {{"p1", 1, {NET_K}}, {"p2", 2, {NET_OUT, 7}}};
    params_blob(&b, wrong, 2);
    expect_params_error(s, &g, buf_head(&b), b.len,
                        "parameter p2 is float32[10,7] = 280 bytes, but input p2 is "
                        "float32[10,2048] = 81920 bytes");
    buf_reset(&b);
    const pspec_t unknown[] = {{"not_in_graph", 1, {3}}};
    params_blob(&b, unknown, 1);
    tvmrpc_value_t pb = tvmrpc_v_bytes(buf_head(&b), b.len);
    h_sess_ok(s, tvmrpc_call(s, g.load_params, &pb, 1, NULL), "unknown names are ignored");
    buf_free(&b);
    h_sess_expect_error(s, tvmrpc_call(s, g.load_params, NULL, 0, NULL), "load_params expects");

    /* Inputs of the wrong size or dtype, bad keys. */
    const int64_t small[4] = {1, 3, 8, 8};
    tvmrpc_array_t in = alloc_f32(s, 4, small, NULL);
    tvmrpc_value_t si[2] = {tvmrpc_v_str("data"), tvmrpc_v_tensor(&in)};
    h_sess_expect_error(
        s, tvmrpc_call(s, g.set_input, si, 2, NULL),
        "set_input: input data (index 0) is float32[1,3,16,16] = 3072 bytes; the array "
        "given is float32[1,3,8,8] = 768 bytes");
    tvmrpc_array_t d64;
    tvmrpc_dtype_t f64 = {2, 64, 1};
    tvmrpc_device_t cpu = {1, 0};
    h_sess_ok(s, tvmrpc_array_alloc(s, cpu, 4, x_shape, f64, NULL, &d64), "alloc f64");
    si[1] = tvmrpc_v_tensor(&d64);
    h_sess_expect_error(s, tvmrpc_call(s, g.set_input, si, 2, NULL),
                        "float64[1,3,16,16] = 6144 bytes");
    si[0] = tvmrpc_v_int(5);
    h_sess_expect_error(s, tvmrpc_call(s, g.set_input, si, 2, NULL),
                        "input index 5 is out of range");
    si[0] = tvmrpc_v_str("nope"); /* unknown names are ignored */
    h_sess_ok(s, tvmrpc_call(s, g.set_input, si, 2, NULL), "set_input unknown name");
    tvmrpc_value_t k = tvmrpc_v_str("nope"), r;
    h_sess_ok(s, tvmrpc_call(s, g.get_input, &k, 1, &r), "get_input unknown name");
    assert_int_equal(r.kind, TVMRPC_NONE);
    k = tvmrpc_v_int(-1);
    h_sess_expect_error(s, tvmrpc_call(s, g.get_input, &k, 1, &r), "out of range");
    k = tvmrpc_v_int(1);
    h_sess_expect_error(s, tvmrpc_call(s, g.get_output, &k, 1, &r),
                        "output index 1 is out of range");
    k = tvmrpc_v_str("reshape_nop");
    h_sess_expect_error(s, tvmrpc_call(s, g.get_output, &k, 1, &r),
                        "Invalid output node:reshape_nop");
    k = tvmrpc_v_int(3);
    h_sess_expect_error(s, tvmrpc_call(s, g.get_input_index, &k, 1, &r),
                        "Input key is not a string");
    tvmrpc_value_t go[2] = {tvmrpc_v_int(0), tvmrpc_v_tensor(&in)};
    h_sess_expect_error(s, tvmrpc_call(s, g.get_output, go, 2, NULL),
                        "output 0 is float32[1,10]; the array given is float32[1,3,8,8]");
    tvmrpc_value_t zc[2] = {tvmrpc_v_str("data"), tvmrpc_v_tensor(&in)};
    h_sess_expect_error(s, tvmrpc_call(s, g.set_input_zero_copy, zc, 2, NULL),
                        "set_input_zero_copy: input data is float32[1,3,16,16]");
    const int64_t wider[4] = {1, NET_C, NET_H, NET_W + 1};
    tvmrpc_array_t big = alloc_f32(s, 4, wider, NULL), shifted = big;
    shifted.byte_offset = 4; /* inside the allocation, but not 64-byte aligned */
    shifted.shape[3] = NET_W;
    zc[1] = tvmrpc_v_tensor(&shifted);
    h_sess_expect_error(s, tvmrpc_call(s, g.set_input_zero_copy, zc, 2, NULL), "64-byte aligned");
    tvmrpc_value_t rfi[3] = {tvmrpc_v_int(1), tvmrpc_v_int(0), tvmrpc_v_str("data")};
    h_sess_expect_error(s, tvmrpc_call(s, g.run_from_inputs, rfi, 3, NULL), "pairs");
    tvmrpc_value_t rfi2[4] = {tvmrpc_v_int(1), tvmrpc_v_int(0), tvmrpc_v_str("nope"),
                              tvmrpc_v_tensor(&big)};
    h_sess_expect_error(s, tvmrpc_call(s, g.run_from_inputs, rfi2, 4, NULL),
                        "nope is not a valid input name");
    tvmrpc_value_t shp[2] = {tvmrpc_v_int(3), tvmrpc_v_bytes(params, plen)};
    h_sess_expect_error(s, tvmrpc_call(s, g.share_params, shp, 2, NULL), "share_params expects");

    /* Still fully working: weights, input, run. */
    pb = tvmrpc_v_bytes(params, plen);
    h_sess_ok(s, tvmrpc_call(s, g.load_params, &pb, 1, NULL), "load_params");
    check_run(s, &g, NET_SEED_X, "after the errors");
    gm_close(s, &g);
    h_sess_ok(s, tvmrpc_array_free(s, &in), "free");
    h_sess_ok(s, tvmrpc_array_free(s, &d64), "free");
    h_sess_ok(s, tvmrpc_array_free(s, &big), "free");
    free(json);
    free(params);
    tvmrpc_close(s);
}

static void expect_load_error(sess_t *s, const char *file, const char *needle)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", h_fixture_dir(), file);
    h_sess_ok(s, tvmrpc_upload_file(s, path, file), "upload");
    tvmrpc_value_t a = tvmrpc_v_str(file), m;
    h_sess_expect_error(s, h_call_global(s, "tvm.rpc.server.load_module", &a, 1, &m), needle);
}

static void expect_default_error(sess_t *s, const char *file, const char *needle)
{
    uint64_t fac = upload_load(s, file), dflt = h_mod_func(s, fac, "default");
    tvmrpc_value_t dev = tvmrpc_v_device(1, 0), r;
    assert_true(dflt != 0);
    h_sess_expect_error(s, tvmrpc_call(s, dflt, &dev, 1, &r), needle);
    dev = tvmrpc_v_device(2, 0);
    h_sess_expect_error(s, tvmrpc_call(s, dflt, &dev, 1, &r), "device type 2 is not supported");
    tvmrpc_value_t notdev = tvmrpc_v_int(1);
    h_sess_expect_error(s, tvmrpc_call(s, dflt, &notdev, 1, &r), "argument 0 must be a device");
    h_sess_ok(s, tvmrpc_free_handle(s, dflt, TVMRPC_FUNC), "free");
    h_sess_ok(s, tvmrpc_free_handle(s, fac, TVMRPC_MODULE), "free");
}

static void test_bad_factories(void **state)
{
    sess_t *s = sess_open(srv.port);
    expect_load_error(s, "net_badmagic.so",
                      "GraphExecutorFactory: weight p1: Invalid DLTensor file format: bad magic");
    expect_load_error(s, "net_trunc.so",
                      "GraphExecutorFactory: weight p2: Invalid DLTensor file "
                      "format: truncated");
    expect_load_error(s, "net_badcount.so", "GraphExecutorFactory: 5 weight names for 4 weights");
    expect_load_error(s, "net_badjson.so", "GraphExecutorFactory: key headz is not supported");
    expect_default_error(s, "net_badparam.so",
                         "weight p2 is float32[10,1024] = 40960 bytes, but input p2 is "
                         "float32[10,2048] = 81920 bytes");
    expect_default_error(s, "net_nofunc.so",
                         "no such function in module: tvmgen_default_fused_nn_softmax");
    gm_t g;
    gm_open(s, factory_exec(s, "net.so", NULL), &g);
    check_run(s, &g, NET_SEED_X, "after bad factories");
    gm_close(s, &g);
    tvmrpc_close(s);
}

/* ---- through the tracker ---------------------------------------------------------- */

static void test_tracker(void **state)
{
    hproc_t trk, gs;
    char addr[64], err[512];
    assert_int_equal(h_start_tracker(&trk, NULL), 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", trk.port);
    const char *argv[] = {"server",    "--host", "127.0.0.1", "--port",   "0",
                          "--tracker", addr,     "--key",     "graphnet", NULL};
    assert_int_equal(h_spawn(&gs, argv), 0);
    tvmrpc_opts_t o;
    tvmrpc_opts_init(&o);
    o.timeout_ms = IO_MS;
    sess_t *s = tvmrpc_request_opts("127.0.0.1", trk.port, "graphnet", 1, 5, &o, err, sizeof(err));
    if (!s) {
        h_dump_log(&gs);
        h_dump_log(&trk);
        fail_msg("request: %s", err);
    }
    gm_t g;
    gm_open(s, factory_exec(s, "net.so", NULL), &g);
    check_run(s, &g, NET_SEED_X, "through the tracker");
    time_it(s, g.mod, "run", NULL, 0);
    gm_close(s, &g);
    tvmrpc_close(s);
    h_stop(&gs);
    h_stop(&trk);
}

/* ---- replay of the v0.19-graph-py trace ---------------------------------------------
 * Requests are decoded and re-encoded with our handles in place of TVM's;
 * the truncated upload of net.so is replaced by an upload of ours. Replies
 * must have TVM's packet code, value kinds and tensor shapes. */

#define MAX_MAP 256
#define MAX_VALS 16

typedef struct replay {
    rawcli_t cli; /* its own handshake; then rawcli_recv for the replies */
    uint64_t rec[MAX_MAP], ours[MAX_MAP];
    int nmap;
    float x[NET_IN_ELEMS]; /* the recorded input, from its copy to the server */
    int have_x, checked_output;
} replay_t;

/* TVM answers the same handle again for a second reference to an object
 * (two lookups of one global function) where we answer a new one: the
 * latest of ours is used, and kFreeHandle consumes one. */
static uint64_t map_handle(replay_t *r, uint64_t rec, int consume)
{
    if (rec == 0)
        return 0;
    for (int i = r->nmap - 1; i >= 0; i--) {
        if (r->rec[i] != rec)
            continue;
        uint64_t ours = r->ours[i];
        if (consume) {
            memmove(&r->rec[i], &r->rec[i + 1], (size_t)(r->nmap - i - 1) * sizeof(uint64_t));
            memmove(&r->ours[i], &r->ours[i + 1], (size_t)(r->nmap - i - 1) * sizeof(uint64_t));
            r->nmap--;
        }
        return ours;
    }
    fail_msg("replay: recorded handle %#llx was never returned", (unsigned long long)rec);
    return 0;
}

static void learn(replay_t *r, uint64_t rec, uint64_t ours)
{
    if ((rec == 0) != (ours == 0))
        fail_msg("replay: TVM answered handle %#llx, we answered %#llx", (unsigned long long)rec,
                 (unsigned long long)ours);
    if (rec && r->nmap < MAX_MAP) {
        r->rec[r->nmap] = rec;
        r->ours[r->nmap++] = ours;
    }
}

static int is_handle_kind(rpc_kind_t k)
{
    return k == RV_HANDLE || k == RV_FUNC || k == RV_MODULE || k == RV_OBJECT;
}

static void map_values(replay_t *r, rpc_value_t *v, int n, int consume)
{
    for (int i = 0; i < n; i++) {
        if (is_handle_kind(v[i].kind))
            v[i].u.h = map_handle(r, v[i].u.h, consume);
        else if (v[i].kind == RV_TENSOR)
            v[i].t->data = map_handle(r, v[i].t->data, 0);
    }
}

static int decode_seq(const uint8_t *p, size_t n, rpc_value_t *v, rpc_tensor_t *t)
{
    char err[128];
    int nv;
    rd_t rd = rd_make(p, n);
    if (rpc_codec_classic.decode(&rd, v, t, MAX_VALS, &nv, err, sizeof(err)) < 0)
        fail_msg("replay: undecodable sequence: %s", err);
    return nv;
}

/* The request body (code + payload) with our handles. */
static void rewrite(replay_t *r, const uint8_t *body, size_t n, buf_t *out)
{
    int32_t code = (int32_t)le32(body);
    const uint8_t *p = body + 4;
    size_t left = n - 4;
    rpc_value_t v[MAX_VALS];
    rpc_tensor_t t[MAX_VALS];
    size_t at = rpc_packet_begin(out, code);
    if (code == RPC_CALL_FUNC) {
        buf_append_u64le(out, map_handle(r, le64(p), 0));
        p += 8;
        left -= 8;
    }
    if (code == RPC_COPY_TO_REMOTE || code == RPC_COPY_FROM_REMOTE) {
        rd_t rd = rd_make(p, left);
        rpc_tensor_t tt;
        uint64_t nbytes;
        char err[128];
        assert_int_equal(rpc_get_tensor(&rd, &tt, err, sizeof(err)), 0);
        assert_int_equal(rd_u64(&rd, &nbytes), 0);
        tt.data = map_handle(r, tt.data, 0);
        rpc_put_tensor(out, &tt);
        buf_append_u64le(out, nbytes);
        if (code == RPC_COPY_TO_REMOTE && rd.left == sizeof(r->x)) {
            memcpy(r->x, rd.p, sizeof(r->x));
            r->have_x = 1;
        }
        buf_append(out, rd.p, rd.left);
    } else if (code == RPC_INIT_SERVER || code == RPC_SHUTDOWN) {
        buf_append(out, p, left);
    } else {
        int nv = decode_seq(p, left, v, t);
        map_values(r, v, nv, code == RPC_FREE_HANDLE);
        rpc_codec_classic.encode_args(out, v, nv);
    }
    rpc_packet_end(out, at);
    assert_int_equal(out->len, 8 + n); /* handles are fixed-size: same length as recorded */
}

/* Our kCallFunc(upload, "net.so", <our net.so>) for the truncated one. */
static void our_upload(replay_t *r, const uint8_t *body, buf_t *out)
{
    size_t len;
    char *so = fixture("net.so", &len);
    rpc_value_t a[2] = {{.kind = RV_STR}, {.kind = RV_BYTES}};
    a[0].u.s.p = "net.so";
    a[0].u.s.len = 6;
    a[1].u.s.p = so;
    a[1].u.s.len = len;
    size_t at = rpc_packet_begin(out, RPC_CALL_FUNC);
    buf_append_u64le(out, map_handle(r, le64(body + 4), 0));
    rpc_codec_classic.encode_args(out, a, 2);
    rpc_packet_end(out, at);
    free(so);
}

/* Same kinds, the same type codes, tensors of the same shape. */
static void compare_values(replay_t *r, const rpc_value_t *want, int nw, const rpc_value_t *got,
                           int ng, const char *step)
{
    if (nw != ng)
        fail_msg("%s: TVM answered %d values, we answered %d", step, nw, ng);
    for (int i = 0; i < nw; i++) {
        if (want[i].kind != got[i].kind)
            fail_msg("%s: value %d is of kind %d, TVM's of kind %d", step, i, got[i].kind,
                     want[i].kind);
        if (is_handle_kind(want[i].kind))
            learn(r, want[i].u.h, got[i].u.h);
        if (want[i].kind == RV_INT && i == 0 && want[i].u.i != got[i].u.i)
            fail_msg("%s: result type code %lld, TVM's %lld", step, (long long)got[i].u.i,
                     (long long)want[i].u.i);
        if (want[i].kind == RV_BYTES && want[i].u.s.len != got[i].u.s.len)
            fail_msg("%s: %llu bytes, TVM's %llu", step, (unsigned long long)got[i].u.s.len,
                     (unsigned long long)want[i].u.s.len);
        if (want[i].kind == RV_TENSOR) {
            const rpc_tensor_t *a = want[i].t, *b = got[i].t;
            assert_int_equal(a->ndim, b->ndim);
            assert_memory_equal(a->shape, b->shape, (size_t)a->ndim * 8);
            assert_memory_equal(&a->dtype, &b->dtype, sizeof(a->dtype));
            assert_memory_equal(&a->dev, &b->dev, sizeof(a->dev));
            learn(r, a->data, b->data);
        }
    }
}

static void check_reply(replay_t *r, int32_t code, const uint8_t *want, size_t wn, int32_t rcode,
                        const char *step)
{
    int32_t wcode = (int32_t)le32(want);
    if (wcode != code)
        fail_msg("%s: reply code %d, TVM's %d", step, code, wcode);
    if (rcode == RPC_INIT_SERVER)
        return; /* ours is the generation-neutral reply (PROTOCOL.md §4.12) */
    if (code == RPC_COPY_ACK) {
        if (r->cli.in.len != wn - 4)
            fail_msg("%s: copied %zu bytes, TVM %zu", step, r->cli.in.len, wn - 4);
        if (r->cli.in.len == NET_OUT * 4 && r->have_x) {
            float y[NET_OUT], ref[NET_OUT];
            memcpy(y, buf_head(&r->cli.in), sizeof(y));
            net_reference(r->x, ref);
            expect_close(y, ref, NET_OUT, "replayed session");
            r->checked_output = 1;
        }
        return;
    }
    if (code != RPC_RETURN)
        fail_msg("%s: reply code %d", step, code);
    rpc_value_t wv[MAX_VALS], gv[MAX_VALS];
    rpc_tensor_t wt[MAX_VALS], gt[MAX_VALS];
    int nw = decode_seq(want + 4, wn - 4, wv, wt);
    int ng = decode_seq(buf_head(&r->cli.in), r->cli.in.len, gv, gt);
    compare_values(r, wv, nw, gv, ng, step);
}

static void test_trace_replay(void **state)
{
    trace_t t;
    char err[512];
    if (trace_load_named(&t, "v0.19-graph-py.txt", err, sizeof(err)) < 0)
        fail_msg("%s", err);
    const trace_stream_t *cs = trace_stream(&t, 0, TRACE_C2S), *ss = trace_stream(&t, 0, TRACE_S2C);
    trace_unit_t *cu, *su;
    size_t ncu, nsu;
    assert_int_equal(trace_split_units(cs, TRACE_PROTO_RPC, TRACE_C2S, &cu, &ncu, err, sizeof(err)),
                     0);
    assert_int_equal(trace_split_units(ss, TRACE_PROTO_RPC, TRACE_S2C, &su, &nsu, err, sizeof(err)),
                     0);
    replay_t r = {0};
    rawcli_attach(&r.cli, net_connect("127.0.0.1", srv.port, 5000, err), &rpc_codec_classic);
    assert_true(r.cli.fd >= 0);
    /* Handshake as recorded: magic, "client:". */
    uint8_t hs[8], key[64];
    assert_int_equal(net_write_full(r.cli.fd, cs->data + cu[0].off, cu[0].len, IO_MS, err), 0);
    assert_int_equal(net_read_full(r.cli.fd, hs, 8, IO_MS, NULL, err), 0);
    assert_int_equal(le32(hs), RPC_MAGIC);
    assert_true(le32(hs + 4) < sizeof(key));
    assert_int_equal(net_read_full(r.cli.fd, key, le32(hs + 4), IO_MS, NULL, err), 0);
    size_t next = 1, sent = 0;
    for (size_t i = 1; i < ncu; i++) {
        const trace_unit_t *u = &cu[i];
        const uint8_t *body = cs->data + u->body;
        char step[64];
        snprintf(step, sizeof(step), "request at C>S@%zu (code %lld)", u->off, (long long)u->code);
        buf_t out;
        buf_init(&out, 0);
        if (trace_is_truncated(cs, u->off, u->len))
            our_upload(&r, body, &out);
        else
            rewrite(&r, body, u->nbody, &out);
        assert_int_equal(net_write_full(r.cli.fd, buf_head(&out), out.len, IO_MS, err), 0);
        buf_free(&out);
        sent++;
        if (u->code == RPC_SHUTDOWN)
            break;
        int32_t code;
        if (rawcli_recv(&r.cli, &code, IO_MS) < 0) {
            h_dump_log(&srv);
            fail_msg("%s: no reply", step);
        }
        assert_true(next < nsu);
        check_reply(&r, code, ss->data + su[next].body, su[next].nbody, (int32_t)u->code, step);
        next++;
    }
    assert_int_equal(next, nsu); /* every recorded reply was matched */
    assert_true(r.checked_output);
    assert_true(sent > 40);
    /* After kShutdown the server closes the connection. */
    uint8_t byte;
    int eof = 0;
    assert_int_equal(net_read_full(r.cli.fd, &byte, 1, IO_MS, &eof, err), -1);
    assert_true(eof);
    close(rawcli_detach(&r.cli));
    free(cu);
    free(su);
    trace_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_factory_flow),          cmocka_unit_test(test_legacy_key),
        cmocka_unit_test(test_legacy_create),         cmocka_unit_test(test_bad_graphs),
        cmocka_unit_test(test_bad_params_and_inputs), cmocka_unit_test(test_bad_factories),
        cmocka_unit_test(test_trace_replay),          cmocka_unit_test(test_tracker),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
