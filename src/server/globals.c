/* The global functions a client can look up (RUNTIME.md §1.3, §1.8):
 * workspace files and the testing helpers TVM's RPC tests call. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json.h"
#include "server/graph_executor.h"
#include "server/module.h"
#include "server/session.h"
#include "server/timeeval.h"

#define MAX_DOWNLOAD ((uint64_t)4 << 30)

/* Copy a string argument into a NUL-terminated buffer; strings with NULs or
 * longer than the buffer are refused. */
static int arg_cstr(const rpc_value_t *args, int nargs, int i, char *out, size_t outlen,
                    char *err, size_t errlen)
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

static int resolve_arg(session_t *s, const rpc_value_t *args, int nargs, char *path,
                       char *err, size_t errlen)
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

static int fn_upload(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                     char *err, size_t errlen)
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
static int fn_remove(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                     char *err, size_t errlen)
{
    char path[PATH_MAX], why[256];
    if (resolve_arg(s, args, nargs, path, why, sizeof(why)) == 0 &&
        strcmp(path, session_workspace(s)->root) != 0)
        remove(path);
    return 0;
}

/* Comma-terminated full paths, as TVM's C++ server answers. */
static int fn_listdir(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                      char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (resolve_arg(s, args, nargs, path, err, errlen) < 0)
        return -1;
    DIR *d = opendir(path);
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

/* ---- testing helpers (TVM's own RPC tests) ---------------------------------- */

static int fn_echo(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                   char *err, size_t errlen)
{
    if (nargs < 1) {
        snprintf(err, errlen, "TypeError: echo expects an argument");
        return -1;
    }
    if (args[0].kind == RV_TENSOR) {
        snprintf(err, errlen, "TypeError: echo of an array argument is not supported");
        return -1;
    }
    /* Handing a handle out again is one more reference (PROTOCOL.md §4.7). */
    if (args[0].kind == RV_FUNC || args[0].kind == RV_MODULE || args[0].kind == RV_OBJECT) {
        if (!session_object_get(s, args[0].u.h, args[0].kind, NULL) ||
            session_object_retain(s, args[0].u.h) < 0) {
            snprintf(err, errlen, "ValueError: unknown handle");
            return -1;
        }
    }
    *ret = args[0];
    return 0;
}

static int fn_nop(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret, char *err,
                  size_t errlen)
{
    return 0;
}

static int fn_addone(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                     char *err, size_t errlen)
{
    if (nargs != 1 || (args[0].kind != RV_INT && args[0].kind != RV_FLOAT)) {
        snprintf(err, errlen, "TypeError: addone expects a number");
        return -1;
    }
    *ret = args[0];
    if (ret->kind == RV_INT)
        ret->u.i = (int64_t)((uint64_t)ret->u.i + 1);
    else
        ret->u.f += 1;
    return 0;
}

/* Python str() of a scalar argument, as rpc.test.strcat formats it. */
static void py_str(buf_t *b, const rpc_value_t *v)
{
    switch (v->kind) {
    case RV_INT:
        buf_printf(b, "%lld", (long long)v->u.i);
        break;
    case RV_BOOL:
        buf_append_str(b, v->u.i ? "True" : "False");
        break;
    case RV_FLOAT:
        json_py_float(b, v->u.f);
        break;
    case RV_STR:
        buf_append(b, v->u.s.p, (size_t)v->u.s.len);
        break;
    case RV_NONE:
        buf_append_str(b, "None");
        break;
    default:
        buf_append_str(b, "<object>");
        break;
    }
}

static int fn_strcat(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                     char *err, size_t errlen)
{
    if (nargs != 2 || args[0].kind != RV_STR) {
        snprintf(err, errlen, "TypeError: strcat expects (str, value)");
        return -1;
    }
    buf_t *b = session_scratch(s);
    py_str(b, &args[0]);
    buf_append_u8(b, ':');
    py_str(b, &args[1]);
    ret_scratch(s, ret, RV_STR);
    return 0;
}

static int fn_str_concat(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                         char *err, size_t errlen)
{
    if (nargs != 2 || args[0].kind != RV_STR || args[1].kind != RV_STR) {
        snprintf(err, errlen, "TypeError: runtime_str_concat expects two strings");
        return -1;
    }
    buf_t *b = session_scratch(s);
    py_str(b, &args[0]);
    py_str(b, &args[1]);
    ret_scratch(s, ret, RV_STR);
    return 0;
}

static int fn_except(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                     char *err, size_t errlen)
{
    if (nargs >= 1 && args[0].kind == RV_STR)
        snprintf(err, errlen, "ValueError: %.*s", (int)(args[0].u.s.len > 512 ? 512 : args[0].u.s.len),
                 args[0].u.s.p);
    else
        snprintf(err, errlen, "ValueError: rpc.test.except");
    return -1;
}

/* ffi generation: testing.test_raise_error(kind, message). */
static int fn_raise_error(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                          char *err, size_t errlen)
{
    if (nargs != 2 || args[0].kind != RV_STR || args[1].kind != RV_STR) {
        snprintf(err, errlen, "TypeError: test_raise_error expects (kind, message)");
        return -1;
    }
    snprintf(err, errlen, "%.*s: %.*s", (int)(args[0].u.s.len > 64 ? 64 : args[0].u.s.len),
             args[0].u.s.p, (int)(args[1].u.s.len > 512 ? 512 : args[1].u.s.len), args[1].u.s.p);
    return -1;
}

/* classic generation: testing.ErrorTest(x, y) fails unless x == y. */
static int fn_error_test(session_t *s, const rpc_value_t *args, int nargs, rpc_value_t *ret,
                         char *err, size_t errlen)
{
    if (nargs != 2 || args[0].kind != RV_INT || args[1].kind != RV_INT) {
        snprintf(err, errlen, "TypeError: ErrorTest expects (int, int)");
        return -1;
    }
    if (args[0].u.i == args[1].u.i)
        return 0;
    snprintf(err, errlen,
             "ValueError: Check failed: x == y (%lld vs. %lld) : expect x and y to be equal.",
             (long long)args[0].u.i, (long long)args[1].u.i);
    return -1;
}

static const rpc_global_t globals[] = {
    {"tvm.rpc.server.workpath", fn_workpath},
    {"tvm.rpc.server.upload", fn_upload},
    {"tvm.rpc.server.download", fn_download},
    {"tvm.rpc.server.remove", fn_remove},
    {"tvm.rpc.server.listdir", fn_listdir},
    {"tvm.rpc.server.load_module", module_fn_load_module},
    {"tvm.rpc.server.download_linked_module", module_fn_download_linked},
    {"tvm.rpc.server.ModuleGetFunction", module_fn_get_function},
    {"tvm.rpc.server.ImportModule", module_fn_import},
    {"runtime.ModuleGetFunction", module_fn_get_function},
    {"runtime.SystemLib", module_fn_system_lib},
    {"runtime.RPCTimeEvaluator", timeeval_fn_create},
    {"tvm.graph_executor.create", gexec_fn_create},
    {"cache_flush_cpu_non_first_arg", timeeval_fn_cache_flush},
    {"tvm.contrib.random.random_fill", timeeval_fn_random_fill},
    {"tvm.contrib.random.random_fill_for_measure", timeeval_fn_random_fill_measure},
    {"testing.echo", fn_echo},
    {"testing.nop", fn_nop},
    {"testing.ErrorTest", fn_error_test},
    {"testing.test_raise_error", fn_raise_error},
    {"rpc.test.addone", fn_addone},
    {"rpc.test.strcat", fn_strcat},
    {"rpc.test.runtime_str_concat", fn_str_concat},
    {"rpc.test.except", fn_except},
    {NULL, NULL},
};

const rpc_global_t *globals_find(const char *name, size_t len)
{
    for (const rpc_global_t *g = globals; g->name; g++)
        if (strlen(g->name) == len && memcmp(g->name, name, len) == 0)
            return g;
    return NULL;
}
