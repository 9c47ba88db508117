/* The global functions a client can look up (RUNTIME.md §1): the table
 * for both generations, and the workspace file functions (§1.3). The
 * testing helpers of §1.8 live in globals_testing.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/globals_testing.h"
#include "server/graph_executor.h"
#include "server/module.h"
#include "server/session.h"
#include "server/timeeval.h"

#define MAX_DOWNLOAD ((uint64_t)4 << 30)

/* Copy a string argument into a NUL-terminated buffer; strings with NULs or
 * longer than the buffer are refused. */
static int arg_cstr(const rpc_value_t *args, int nargs, int i, char *out, size_t outlen, char *err,
                    size_t errlen)
{
    if (i >= nargs || (args[i].kind != RV_STR && args[i].kind != RV_BYTES)) {
        snprintf(err, errlen, "TypeError: argument %d must be a string", i);
        return -1;
    }
    uint64_t n = args[i].u.s.len;
    if (n >= outlen || memchr(args[i].u.s.p, '\0', (size_t)n)) {
        snprintf(err, errlen, "ValueError: argument %d is not a valid path", i);
        return -1;
    }
    memcpy(out, args[i].u.s.p, (size_t)n);
    out[n] = '\0';
    return 0;
}

static int resolve_arg(session_t *s, const rpc_value_t *args, int nargs, char *path, char *err,
                       size_t errlen)
{
    char name[PATH_MAX];
    if (arg_cstr(args, nargs, 0, name, sizeof(name), err, errlen) < 0)
        return -1;
    char why[PATH_MAX + 64];
    if (ws_resolve(session_workspace(s), name, path, PATH_MAX, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "PermissionError: %.*s", (int)(errlen > 20 ? errlen - 20 : 0), why);
        return -1;
    }
    return 0;
}

static void ret_scratch(session_t *s, rpc_value_t *ret, rpc_kind_t kind)
{
    buf_t *b = session_scratch(s);
    ret->kind = kind;
    ret->u.s.p = (const char *)buf_head(b);
    ret->u.s.len = b->len;
}

static int fn_workpath(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                       char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (resolve_arg(s, args, nargs, path, err, errlen) < 0)
        return -1;
    buf_append_str(session_scratch(s), path);
    ret_scratch(s, ret, RV_STR);
    return 0;
}

static int fn_upload(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret, char *err,
                     size_t errlen)
{
    char name[PATH_MAX];
    if (arg_cstr(args, nargs, 0, name, sizeof(name), err, errlen) < 0)
        return -1;
    if (nargs != 2 || (args[1].kind != RV_BYTES && args[1].kind != RV_STR)) {
        snprintf(err, errlen, "TypeError: upload expects (name, bytes)");
        return -1;
    }
    char why[PATH_MAX + 64];
    if (ws_write_file(session_workspace(s), name, args[1].u.s.p, (size_t)args[1].u.s.len, why,
                      sizeof(why)) < 0) {
        snprintf(err, errlen, "RPCError: %.*s", (int)(errlen > 20 ? errlen - 20 : 0), why);
        return -1;
    }
    return 0;
}

static int fn_download(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                       char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (resolve_arg(s, args, nargs, path, err, errlen) < 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size > MAX_DOWNLOAD) {
        snprintf(err, errlen, "RPCError: Cannot open %s", path);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    buf_t *b = session_scratch(s);
    uint8_t *p = buf_tail(b, (size_t)st.st_size);
    ssize_t got = 0;
    while (p && got < st.st_size) {
        ssize_t r = read(fd, p + got, (size_t)(st.st_size - got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += r;
    }
    close(fd);
    if (!p || got != st.st_size) {
        snprintf(err, errlen, "RPCError: cannot read %s", path);
        return -1;
    }
    buf_commit(b, (size_t)got);
    ret_scratch(s, ret, RV_BYTES);
    return 0;
}

/* Never an error (MetaSchedule removes "" and files that may not exist). */
static int fn_remove(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret, char *err,
                     size_t errlen)
{
    char path[PATH_MAX], why[256];
    if (resolve_arg(s, args, nargs, path, why, sizeof(why)) == 0 &&
        strcmp(path, session_workspace(s)->root) != 0)
        remove(path);
    return 0;
}

/* Comma-terminated full paths, as TVM's C++ server answers. */
static int fn_listdir(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret, char *err,
                      size_t errlen)
{
    char path[PATH_MAX];
    if (resolve_arg(s, args, nargs, path, err, errlen) < 0)
        return -1;
    DIR *d = opendir(path);
    /* A missing directory: classic C++ servers raise, ffi ones answer "". */
    if (!d && session_generation(s) == RPC_PROTOCOL_FFI) {
        ret->kind = RV_STR;
        ret->u.s.p = "";
        ret->u.s.len = 0;
        return 0;
    }
    if (!d) {
        snprintf(err, errlen, "RPCError: ListDir %s error: %s", path, strerror(errno));
        return -1;
    }
    buf_t *b = session_scratch(s);
    size_t plen = strlen(path);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        buf_printf(b, "%s%s%s,", path, plen && path[plen - 1] == '/' ? "" : "/", e->d_name);
    }
    closedir(d);
    ret_scratch(s, ret, RV_STR);
    return 0;
}

/* ffi.ModuleGetKind / runtime.ModuleGetTypeKey: "library" for a loaded
 * library. Stock clients answer these locally for remote modules
 * (RUNTIME.md §1.1); served for clients that ask anyway. */
static int fn_module_kind(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                          char *err, size_t errlen)
{
    const mod_t *m =
        nargs == 1 && args[0].kind == RV_MODULE ? module_from_handle(s, args[0].u.h) : NULL;
    if (!m) {
        snprintf(err, errlen, "TypeError: expected a module this session holds");
        return -1;
    }
    buf_append_str(session_scratch(s), m->vt->type_key);
    ret_scratch(s, ret, RV_STR);
    return 0;
}

/* One table for both generations: a name only one generation's clients
 * ask for is harmless to the other (docs/protocol.md lists who asks for
 * what). Where the two generations' names differ, both are here. */
static const rpc_global_t globals[] = {
    /* workspace files (RUNTIME.md §1.3), same names in both generations */
    {"tvm.rpc.server.workpath", fn_workpath},
    {"tvm.rpc.server.upload", fn_upload},
    {"tvm.rpc.server.download", fn_download},
    {"tvm.rpc.server.remove", fn_remove},
    {"tvm.rpc.server.listdir", fn_listdir},
    {"tvm.rpc.server.load_module", module_fn_load_module},
    {"tvm.rpc.server.download_linked_module", module_fn_download_linked},
    /* modules (§1.4) */
    {"tvm.rpc.server.ModuleGetFunction", module_fn_get_function},
    {"tvm.rpc.server.ImportModule", module_fn_import},
    {"runtime.ModuleGetFunction", module_fn_get_function},
    {"ffi.ModuleGetFunction", module_fn_get_function},
    {"runtime.ModuleGetTypeKey", fn_module_kind},
    {"ffi.ModuleGetKind", fn_module_kind},
    {"runtime.SystemLib", module_fn_system_lib},
    /* ffi kernels register through TVMFFIEnvModRegisterSystemLibSymbol and
     * are looked up as __tvm_ffi_<prefix><name> (§2.10). */
    {"ffi.SystemLib", module_fn_ffi_system_lib},
    /* measurement (§1.5, §1.7) and the classic graph executor (§1.6) */
    {"runtime.RPCTimeEvaluator", timeeval_fn_create},
    {"cache_flush_cpu_non_first_arg", timeeval_fn_cache_flush},
    {"tvm.contrib.random.random_fill", timeeval_fn_random_fill},
    {"tvm.contrib.random.random_fill_for_measure", timeeval_fn_random_fill_measure},
    {"tvm.graph_executor.create", gexec_fn_create},
    /* testing helpers (§1.8) */
    {"testing.echo", testing_fn_echo},
    {"testing.nop", testing_fn_nop},
    {"testing.ErrorTest", testing_fn_error_test},
    {"testing.test_raise_error", testing_fn_raise_error},
    {"testing.test_raise_error_callback", testing_fn_raise_error_callback},
    {"testing.object_use_count", testing_fn_object_use_count},
    {"runtime.ShapeTuple", testing_fn_shape},
    {"runtime.GetShapeTupleSize", testing_fn_shape_size},
    {"runtime.GetShapeTupleElem", testing_fn_shape_elem},
    {"ffi.Shape", testing_fn_shape},
    {"rpc.testing.GetShapeSize", testing_fn_shape_size},
    {"rpc.testing.GetShapeElem", testing_fn_shape_elem},
    {"rpc.test.addone", testing_fn_addone},
    {"rpc.test.strcat", testing_fn_strcat},
    {"rpc.test.runtime_str_concat", testing_fn_str_concat},
    {"rpc.test.except", testing_fn_except},
    {"rpc.test.remote_array_func", testing_fn_remote_array_func},
    {"rpc.test.remote_tensor_func", testing_fn_remote_array_func},
    {"rpc.test.add_to_lhs", testing_fn_add_to_lhs},
    {"rpc.test.remote_return_nd", testing_fn_remote_return_nd},
    {NULL, NULL},
};

const rpc_global_t *globals_find(const char *name, size_t len)
{
    for (const rpc_global_t *g = globals; g->name; g++)
        if (strlen(g->name) == len && memcmp(g->name, name, len) == 0)
            return g;
    return NULL;
}
