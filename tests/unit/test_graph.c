/* Graph JSON, storage planning and params blobs (RUNTIME.md §3). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "server/graph.h"

/* RUNTIME.md §3.1's minimal example. */
static const char *minimal =
    "{\"nodes\":[{\"op\":\"null\",\"name\":\"x\",\"inputs\":[]},{\"op\":\"null\",\"name\":\"p0\","
    "\"inputs\":[]},{\"op\":\"tvm_op\",\"name\":\"tvmgen_default_fused_add\",\"attrs\":{\"func_"
    "name\":"
    "\"tvmgen_default_fused_add\",\"num_inputs\":\"2\",\"num_outputs\":\"1\",\"flatten_data\":"
    "\"0\"},"
    "\"inputs\":[[0,0,0],[1,0,0]]}],\"arg_nodes\":[0,1],\"heads\":[[2,0,0]],\"attrs\":{\"dltype\":"
    "[\"list_str\",[\"float32\",\"float32\",\"float32\"]],\"storage_id\":[\"list_int\",[0,1,2]],"
    "\"shape\":[\"list_shape\",[[1,4],[1,4],[1,4]]]},\"node_row_ptr\":[0,1,2,3]}";

static void test_minimal_example(void **state)
{
    graph_t g;
    char err[256];
    assert_int_equal(graph_parse(&g, minimal, strlen(minimal), err, sizeof(err)), 0);
    assert_int_equal(g.nnodes, 3);
    assert_int_equal(g.narg_nodes, 2);
    assert_int_equal(g.nheads, 1);
    assert_int_equal(g.nentries, 3);
    assert_true(g.nodes[2].is_op);
    assert_string_equal(g.nodes[2].func_name, "tvmgen_default_fused_add");
    assert_int_equal(g.nodes[2].ninputs, 2);
    assert_int_equal(graph_eid(&g, g.heads[0]), 2);
    assert_int_equal(g.nslots, 3);
    assert_int_equal(g.slot_bytes[2], 16);
    graph_free(&g);
}

static char *replace(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    assert_non_null(at);
    char *out = malloc(strlen(s) + strlen(to) + 1);
    size_t pre = (size_t)(at - s);
    memcpy(out, s, pre);
    strcpy(out + pre, to);
    strcat(out, at + strlen(from));
    return out;
}

static void expect_error(const char *from, const char *to, const char *needle)
{
    char *bad = replace(minimal, from, to);
    graph_t g;
    char err[256] = "";
    assert_int_equal(graph_parse(&g, bad, strlen(bad), err, sizeof(err)), -1);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
    free(bad);
}

static void test_errors_name_the_culprit(void **state)
{
    expect_error("\"op\":\"tvm_op\"", "\"op\":\"conv\"", "Can only take tvm_op");
    expect_error("\"num_outputs\":\"1\",", "", "num_outputs");
    expect_error("[[0,0,0],[1,0,0]]", "[[0,0,0],[5,0,0]]", "node 2");
    expect_error("[[0,0,0],[1,0,0]]", "[[0,0,0],[1,3,0]]", "output 3 of node 1");
    expect_error("\"heads\":[[2,0,0]]", "\"heads\":[[9,0,0]]", "heads[0]");
    expect_error("\"node_row_ptr\":[0,1,2,3]", "\"node_row_ptr\":[0,1,2]", "node_row_ptr");
    expect_error("\"float32\",\"float32\",\"float32\"", "\"float32\",\"float33x\",\"float32\"",
                 "entry 1");
    expect_error("[0,1,2]]", "[0,1,7]]", "storage_id");
    expect_error("[[1,4],[1,4],[1,4]]", "[[1,4],[1,-4],[1,4]]", "entry 1");
    expect_error("\"arg_nodes\":[0,1]", "\"arg_nodes\":[0,2]", "arg_nodes[1]");
    expect_error("\"arg_nodes\"", "\"bogus\":1,\"arg_nodes\"", "key bogus is not supported");
    expect_error("\"storage_id\":[\"list_int\"",
                 "\"x\":[\"list_str\",[]],\"storage_id\":[\"list_int\"",
                 "cannot skip graph attr x");
    expect_error("{\"nodes\"", "[", "graph JSON");
}

static void test_storage_sharing_and_metadata(void **state)
{
    /* Entries 0 and 2 share storage id 0: the slot is as big as the larger. */
    char *shared = replace(minimal, "[0,1,2]]", "[0,1,0]]");
    char *bigger = replace(shared, "[[1,4],[1,4],[1,4]]", "[[1,4],[1,4],[2,4]]");
    char *withmeta =
        replace(bigger, "\"node_row_ptr\"", "\"metadata\":{},\"ignored\":1,\"node_row_ptr\"");
    graph_t g;
    char err[256];
    assert_int_equal(graph_parse(&g, bigger, strlen(bigger), err, sizeof(err)), 0);
    assert_int_equal(g.nslots, 2);
    assert_int_equal(g.slot_bytes[0], 32);
    assert_int_equal(g.slot_bytes[1], 16);
    graph_free(&g);
    /* Keys after "metadata" are not read (TVM's reader stops there), so the
     * required node_row_ptr is missing. */
    assert_int_equal(graph_parse(&g, withmeta, strlen(withmeta), err, sizeof(err)), -1);
    free(shared);
    free(bigger);
    free(withmeta);
}

static void test_dtypes(void **state)
{
    rpc_dtype_t d;
    assert_int_equal(graph_parse_dtype("float32", &d), 0);
    assert_true(d.code == 2 && d.bits == 32 && d.lanes == 1);
    assert_int_equal(graph_parse_dtype("uint8", &d), 0);
    assert_true(d.code == 1 && d.bits == 8);
    assert_int_equal(graph_parse_dtype("int", &d), 0);
    assert_true(d.code == 0 && d.bits == 32);
    assert_int_equal(graph_parse_dtype("bfloat", &d), 0);
    assert_true(d.code == 4 && d.bits == 16);
    assert_int_equal(graph_parse_dtype("float16x4", &d), 0);
    assert_true(d.bits == 16 && d.lanes == 4);
    assert_int_equal(graph_parse_dtype("bool", &d), 0);
    assert_true(d.code == 1 && d.bits == 1);
    assert_int_equal(graph_parse_dtype("handle", &d), 0);
    assert_true(d.code == 3 && d.bits == 64);
    assert_int_equal(graph_parse_dtype("float32x", &d), -1);
    assert_int_equal(graph_parse_dtype("int999", &d), -1);
    assert_int_equal(graph_parse_dtype("double", &d), -1);
}

static void put_u64(buf_t *b, uint64_t v)
{
    buf_append_u64le(b, v);
}

static void put_ndarray(buf_t *b, const int64_t *shape, int ndim, const float *vals, size_t n)
{
    put_u64(b, 0xDD5E40F096B4A13FULL);
    put_u64(b, 0);
    buf_append_i32le(b, 1);
    buf_append_i32le(b, 0);
    buf_append_i32le(b, ndim);
    uint8_t dt[4] = {2, 32, 1, 0};
    buf_append(b, dt, 4);
    for (int i = 0; i < ndim; i++)
        buf_append_i64le(b, shape[i]);
    buf_append_i64le(b, (int64_t)(n * 4));
    buf_append(b, vals, n * 4);
}

static void test_params_blob(void **state)
{
    buf_t b;
    buf_init(&b, 0);
    put_u64(&b, 0xF7E58D4F05049CB7ULL);
    put_u64(&b, 0);
    put_u64(&b, 2);
    put_u64(&b, 2);
    buf_append_str(&b, "p0");
    put_u64(&b, 6);
    buf_append_str(&b, "weight");
    put_u64(&b, 2);
    const float a[4] = {1, 2, 3, 4}, w[1] = {5};
    const int64_t s4[2] = {1, 4};
    put_ndarray(&b, s4, 2, a, 4);
    put_ndarray(&b, NULL, 0, w, 1); /* a scalar */
    graph_params_t p;
    char err[256];
    assert_int_equal(graph_read_params(&p, buf_head(&b), b.len, 0, err, sizeof(err)), 0);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.names[1], "weight");
    assert_int_equal(p.nbytes[0], 16);
    assert_memory_equal(p.data[0], a, 16);
    assert_int_equal(p.tensors[1].ndim, 0);
    graph_params_free(&p);
    assert_int_equal(graph_read_params(&p, buf_head(&b), b.len, 1, err, sizeof(err)), 0);
    assert_int_equal(p.n, 2);
    graph_params_free(&p);
    /* Cut inside the last array's data: the message says so. */
    assert_int_equal(graph_read_params(&p, buf_head(&b), b.len - 1, 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "params weight: Invalid DLTensor file format: truncated"));
    /* Every truncation is an error, never an overread (ASan watches). */
    for (size_t n = 0; n < b.len; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, buf_head(&b), n);
        assert_int_equal(graph_read_params(&p, copy, n, 0, err, sizeof(err)), -1);
        free(copy);
    }
    /* Wrong magic. */
    buf_head(&b)[0] ^= 1;
    assert_int_equal(graph_read_params(&p, buf_head(&b), b.len, 0, err, sizeof(err)), -1);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_example),
        cmocka_unit_test(test_errors_name_the_culprit),
        cmocka_unit_test(test_storage_sharing_and_metadata),
        cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_params_blob),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
