/* libFuzzer harness for the GraphExecutorFactory entry of an import blob
 * (__tvm_dev_mblob, RUNTIME.md §2.3, §3.5): the bytes after the entry's
 * key: graph JSON, weight count, weight names, NDArray records, module
 * name. That is gexec_factory_load, the byte-level loader module.c calls
 * for the entry; the blob's own framing (entry count, keys, _lib,
 * _import_tree) is fuzz_blob's part.
 *
 * A factory that loads is then used as a client would: get_graph_json,
 * get_graph_params, remove_params, and default(cpu0) over a library whose
 * every function is an empty kernel, followed by run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/graph.h"
#include "server/graph_executor.h"
#include "server/module.h"

/* Storage beyond this is legal but only measures the allocator. */
#define MAX_STORAGE (64u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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

/* Call m[name](args) and drop whatever it returns. */
static int call(mod_t *m, const char *name, TVMValue *args, int *codes, int n, TVMValue *ret,
                int *ret_code)
{
    char err[256];
    mfunc_t *f = NULL;
    if (mod_get_function(m, name, 1, &f, err, sizeof(err)) < 0 || !f)
        return -1;
    *ret_code = kTVMNullptr;
    int rc = mfunc_call(f, args, codes, n, ret, ret_code);
    mfunc_release(f);
    return rc;
}

static void call_drop(mod_t *m, const char *name)
{
    TVMValue ret;
    int code;
    if (call(m, name, NULL, NULL, 0, &ret, &code) == 0)
        module_value_release(&ret, code);
}

/* The storage the graph JSON plans, or UINT64_MAX if it does not parse. */
static uint64_t planned_bytes(const char *json)
{
    char err[256];
    graph_t g;
    if (graph_parse(&g, json, strlen(json), err, sizeof(err)) < 0)
        return UINT64_MAX;
    uint64_t total = 0;
    for (size_t i = 0; i < g.nslots; i++)
        total = g.slot_bytes[i] > UINT64_MAX - total ? UINT64_MAX : total + g.slot_bytes[i];
    graph_free(&g);
    return total;
}

static void make_executor(mod_t *fac)
{
    TVMValue ret, dev;
    int code, devcode = kDLDevice;
    if (call(fac, "get_graph_json", NULL, NULL, 0, &ret, &code) < 0 || code != kTVMStr ||
        planned_bytes(ret.v_str) > MAX_STORAGE)
        return;
    char err[256];
    mod_t *lib = mod_new(&lib_vt, NULL);
    if (!lib || mod_import(fac, lib, err, sizeof(err)) < 0) {
        mod_release(lib);
        return;
    }
    mod_release(lib); /* the factory holds it */
    dev.v_device = (DLDevice){1, 0};
    /* The creator is named by the blob's module name; the seeds say "default". */
    mfunc_t *create = NULL;
    if (mod_get_function(fac, "default", 0, &create, err, sizeof(err)) < 0 || !create)
        return;
    code = kTVMNullptr;
    if (mfunc_call(create, &dev, &devcode, 1, &ret, &code) == 0 && code == kTVMModuleHandle) {
        call_drop(ret.v_handle, "run");
        call_drop(ret.v_handle, "get_num_outputs");
        mod_release(ret.v_handle);
    }
    mfunc_release(create);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[1024];
    mod_t *fac = NULL;
    rd_t r = rd_make(data, size);
    if (gexec_factory_load(&r, &fac, err, sizeof(err)) < 0) {
        mod_release(fac);
        return 0;
    }
    call_drop(fac, "get_graph_params");
    call_drop(fac, "remove_params");
    make_executor(fac);
    mod_release(fac);
    return 0;
}
