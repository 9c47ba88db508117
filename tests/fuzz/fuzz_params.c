/* libFuzzer harness for params blobs (relay.save_param_dict, RUNTIME.md
 * §3.4) where they are used: GraphExecutor.load_params on a live executor,
 * which checks every size and then copies into the executor's storage.
 * (fuzz_graph covers graph_read_params alone, mixed with graph JSON; here
 * the whole input is the blob and the copy runs too.)
 *
 * The executor runs the fixture network's graph (net.json of
 * tests/fixtures/gen_net.c: input data float32[1,3,16,16], weights p0..p3)
 * with empty kernels. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/graph.h"
#include "server/graph_executor.h"
#include "server/module.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* net.json, one node per line. */
static const char graph_json[] =
    "{\"nodes\": ["
    "{\"op\": \"null\", \"name\": \"data\", \"inputs\": []}, "
    "{\"op\": \"null\", \"name\": \"p0\", \"inputs\": []}, "
    "{\"op\": \"null\", \"name\": \"p1\", \"inputs\": []}, "
    "{\"op\": \"tvm_op\", \"name\": \"conv\", \"attrs\": {\"num_outputs\": \"1\", "
    "\"num_inputs\": \"3\", \"flatten_data\": \"0\", \"func_name\": \"conv\"}, "
    "\"inputs\": [[0, 0, 0], [1, 0, 0], [2, 0, 0]]}, "
    "{\"op\": \"tvm_op\", \"name\": \"reshape_nop\", \"attrs\": {\"num_outputs\": \"1\", "
    "\"num_inputs\": \"1\", \"flatten_data\": \"0\", \"func_name\": \"__nop\"}, "
    "\"inputs\": [[3, 0, 0]]}, "
    "{\"op\": \"null\", \"name\": \"p2\", \"inputs\": []}, "
    "{\"op\": \"null\", \"name\": \"p3\", \"inputs\": []}, "
    "{\"op\": \"tvm_op\", \"name\": \"dense\", \"attrs\": {\"num_outputs\": \"1\", "
    "\"num_inputs\": \"3\", \"flatten_data\": \"0\", \"func_name\": \"dense\"}, "
    "\"inputs\": [[4, 0, 0], [5, 0, 0], [6, 0, 0]]}], "
    "\"arg_nodes\": [0, 1, 2, 5, 6], \"heads\": [[7, 0, 0]], \"attrs\": {"
    "\"dltype\": [\"list_str\", [\"float32\", \"float32\", \"float32\", \"float32\", "
    "\"float32\", \"float32\", \"float32\", \"float32\"]], "
    "\"storage_id\": [\"list_int\", [0, 1, 2, 3, 3, 4, 5, 6]], "
    "\"shape\": [\"list_shape\", [[1, 3, 16, 16], [8, 3, 3, 3], [8], [1, 8, 16, 16], "
    "[1, 2048], [10, 2048], [10], [1, 10]]]}, "
    "\"node_row_ptr\": [0, 1, 2, 3, 4, 5, 6, 7, 8]}";

static int empty_kernel(TVMValue *args, int *codes, int n, TVMValue *ret, int *ret_code, void *res)
{
    return 0;
}

static int lib_get_function(mod_t *m, const char *name, mfunc_t **out, char *err, size_t errlen)
{
    *out = mfunc_new(name, empty_kernel, NULL, NULL, m);
    return 0;
}

static const mod_vt_t lib_vt = {.type_key = "library", .get_function = lib_get_function};

static mfunc_t *load_params;

/* One executor for the whole run: load_params must leave it usable. */
static int setup(void)
{
    char err[1024];
    DLDevice cpu = {1, 0};
    mod_t *lib = mod_new(&lib_vt, NULL), *exec = NULL;
    if (!lib ||
        gexec_create(graph_json, strlen(graph_json), lib, &cpu, 1, &exec, err, sizeof(err)) < 0 ||
        mod_get_function(exec, "load_params", 0, &load_params, err, sizeof(err)) < 0 ||
        !load_params)
        abort();
    mod_release(exec); /* load_params keeps it alive */
    mod_release(lib);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready)
        ready = setup() == 0;
    TVMByteArray blob = {(const char *)data, size};
    TVMValue arg = {.v_handle = &blob}, ret;
    int code = kTVMBytes, ret_code = kTVMNullptr;
    mfunc_call(load_params, &arg, &code, 1, &ret, &ret_code);

    /* The reader alone too, with and without the arrays. */
    char err[256];
    graph_params_t p;
    for (int names_only = 0; names_only < 2; names_only++)
        if (graph_read_params(&p, data, size, names_only, err, sizeof(err)) == 0) {
            if (!names_only)
                for (size_t i = 0; i < p.n; i++)
                    if (p.nbytes[i] > size)
                        abort(); /* an array's data must come from the blob */
            graph_params_free(&p);
        }
    return 0;
}
