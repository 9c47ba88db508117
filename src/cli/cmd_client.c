/* Client verbs for everyday farm work, built on include/tvmrpc/client.h:
 *   tvmrpc call  [conn] FUNC [ARG...]        call a global function, print the result
 *   tvmrpc run   [conn] LIB [FUNC] [ARG...]  upload a library, load it, call (and time) a function
 * Connection options and "+" chains of steps in one session: chain.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "cli/chain.h"
#include "cli/commands.h"
#include "tvmrpc/client.h"

#define MAX_ARGS 32

/* "42" int, "2.5" float, "s:text" string, "i:7", "f:1", else a string. */
static tvmrpc_value_t parse_arg(const char *a)
{
    char *end;
    if (!strncmp(a, "s:", 2))
        return tvmrpc_v_str(a + 2);
    if (!strncmp(a, "i:", 2))
        return tvmrpc_v_int(strtoll(a + 2, NULL, 0));
    if (!strncmp(a, "f:", 2))
        return tvmrpc_v_float(strtod(a + 2, NULL));
    errno = 0;
    long long i = strtoll(a, &end, 10);
    if (*a && !*end && !errno)
        return tvmrpc_v_int(i);
    double d = strtod(a, &end);
    if (*a && !*end)
        return tvmrpc_v_float(d);
    return tvmrpc_v_str(a);
}

static void print_value(const tvmrpc_value_t *v)
{
    buf_t b;
    buf_init(&b, 0);
    switch (v->kind) {
    case TVMRPC_NONE:
        buf_append_str(&b, "None");
        break;
    case TVMRPC_INT:
        buf_printf(&b, "%lld", (long long)v->u.i);
        break;
    case TVMRPC_BOOL:
        buf_append_str(&b, v->u.i ? "True" : "False");
        break;
    case TVMRPC_FLOAT:
        json_py_float(&b, v->u.f);
        break;
    case TVMRPC_STR:
        buf_append(&b, v->u.s.p, v->u.s.len);
        break;
    case TVMRPC_BYTES:
        buf_printf(&b, "<%zu bytes>", v->u.s.len);
        break;
    case TVMRPC_FUNC:
        buf_printf(&b, "<remote function 0x%llx>", (unsigned long long)v->u.h);
        break;
    case TVMRPC_MODULE:
        buf_printf(&b, "<remote module 0x%llx>", (unsigned long long)v->u.h);
        break;
    default:
        buf_printf(&b, "<remote value of kind %d>", (int)v->kind);
        break;
    }
    buf_append_u8(&b, '\n');
    fwrite(buf_head(&b), 1, b.len, stdout);
    buf_free(&b);
}

static int call_check(step_t *st, char *err, size_t errlen)
{
    if (st->npos < 1 || st->npos > MAX_ARGS + 1) {
        snprintf(err, errlen, st->npos < 1 ? "missing FUNC" : "too many arguments");
        return CHECK_USAGE;
    }
    return CHECK_OK;
}

static int call_exec(tvmrpc_sess_t *s, step_t *st, char *err, size_t errlen)
{
    tvmrpc_value_t args[MAX_ARGS], ret;
    for (int i = 1; i < st->npos; i++)
        args[i - 1] = parse_arg(st->pos[i]);
    uint64_t f = 0;
    int rc = tvmrpc_get_func(s, st->pos[0], &f);
    if (rc == 0)
        rc = tvmrpc_call(s, f, args, st->npos - 1, &ret);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", st->pos[0], tvmrpc_last_error(s));
        return -1;
    }
    print_value(&ret);
    tvmrpc_free_handle(s, f, TVMRPC_FUNC);
    return 0;
}

const verb_t verb_call = {
    "call",
    "FUNC [ARG...]",
    "Call a global function on a remote server and print the result.\n"
    "ARGs: 42 (int), 2.5 (float), anything else a string; force with i:, f:, s:.",
    NULL,
    call_check,
    call_exec,
};

/* ---- run ------------------------------------------------------------------- */

typedef struct run_ctx {
    tvmrpc_sess_t *s;
    tvmrpc_array_t arrays[MAX_ARGS];
    int narrays;
} run_ctx_t;

/* "float32:4x1024" -> a remote array filled by tvm.contrib.random.random_fill. */
static int make_array(run_ctx_t *r, const char *spec, tvmrpc_value_t *out, char *err, size_t errlen)
{
    char dt[32];
    const char *colon = strchr(spec, ':');
    if (!colon || (size_t)(colon - spec) >= sizeof(dt)) {
        snprintf(err, errlen, "array spec '%s' is not DTYPE:DIMxDIM...", spec);
        return -1;
    }
    memcpy(dt, spec, (size_t)(colon - spec));
    dt[colon - spec] = '\0';
    tvmrpc_dtype_t dtype = {2, 32, 1};
    if (!strncmp(dt, "float", 5))
        dtype = (tvmrpc_dtype_t){2, (uint8_t)atoi(dt + 5), 1};
    else if (!strncmp(dt, "int", 3))
        dtype = (tvmrpc_dtype_t){0, (uint8_t)atoi(dt + 3), 1};
    else if (!strncmp(dt, "uint", 4))
        dtype = (tvmrpc_dtype_t){1, (uint8_t)atoi(dt + 4), 1};
    else {
        snprintf(err, errlen, "unknown dtype '%s'", dt);
        return -1;
    }
    int64_t shape[TVMRPC_MAX_NDIM];
    int ndim = 0;
    for (const char *p = colon + 1; *p && ndim < TVMRPC_MAX_NDIM; ndim++) {
        char *end;
        shape[ndim] = strtoll(p, &end, 10);
        if (end == p || shape[ndim] < 0) {
            snprintf(err, errlen, "bad shape in '%s'", spec);
            return -1;
        }
        p = *end == 'x' ? end + 1 : end;
        if (*end && *end != 'x') {
            snprintf(err, errlen, "bad shape in '%s'", spec);
            return -1;
        }
    }
    tvmrpc_array_t *a = &r->arrays[r->narrays];
    tvmrpc_device_t cpu = {1, 0};
    if (tvmrpc_array_alloc(r->s, cpu, ndim, shape, dtype, NULL, a) < 0) {
        snprintf(err, errlen, "%s", tvmrpc_last_error(r->s));
        return -1;
    }
    r->narrays++;
    uint64_t fill;
    tvmrpc_value_t av = tvmrpc_v_tensor(a);
    if (tvmrpc_get_func(r->s, "tvm.contrib.random.random_fill", &fill) == 0) {
        tvmrpc_call(r->s, fill, &av, 1, NULL);
        tvmrpc_free_handle(r->s, fill, TVMRPC_FUNC);
    }
    *out = av;
    return 0;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static int run_timed(run_ctx_t *r, uint64_t mod, const char *fname, const tvmrpc_value_t *args,
                     int nargs, int number, int repeat)
{
    uint64_t te, timer;
    tvmrpc_value_t te_args[12] = {
        tvmrpc_v_handle(TVMRPC_MODULE, mod),
        tvmrpc_v_str(fname),
        tvmrpc_v_int(1),
        tvmrpc_v_int(0),
        tvmrpc_v_int(number),
        tvmrpc_v_int(repeat),
        tvmrpc_v_int(0),
        tvmrpc_v_int(100),
        tvmrpc_v_int(0),
        tvmrpc_v_int(1),
        tvmrpc_v_int(0),
        tvmrpc_v_str(""),
    };
    tvmrpc_value_t tf, res;
    if (tvmrpc_get_func(r->s, "runtime.RPCTimeEvaluator", &te) < 0 ||
        tvmrpc_call(r->s, te, te_args, 12, &tf) < 0 || tf.kind != TVMRPC_FUNC)
        return -1;
    timer = tf.u.h;
    if (tvmrpc_call(r->s, timer, args, nargs, &res) < 0 || res.kind != TVMRPC_BYTES)
        return -1;
    size_t n = res.u.s.len / sizeof(double);
    double best = 0, sum = 0;
    for (size_t i = 0; i < n; i++) {
        double t;
        memcpy(&t, res.u.s.p + i * sizeof(double), sizeof(t));
        sum += t;
        best = i == 0 || t < best ? t : best;
    }
    printf("%s: mean %.6f ms, best %.6f ms over %zu repeats of %d runs\n", fname,
           n ? sum / (double)n * 1e3 : 0.0, best * 1e3, n, number);
    tvmrpc_free_handle(r->s, timer, TVMRPC_FUNC);
    tvmrpc_free_handle(r->s, te, TVMRPC_FUNC);
    return 0;
}

static int run_specs(step_t *st, opt_spec_t *out)
{
    const opt_spec_t specs[] = {
        {"time", OPT_INT, &st->number, "N",
         "time the function with the server's time evaluator, N runs per repeat", 0, 1000000},
        {"repeat", OPT_INT, &st->repeat, "R", "repeats for --time (default 3)", 1, 1000},
    };
    memcpy(out, specs, sizeof(specs));
    return (int)(sizeof(specs) / sizeof(specs[0]));
}

/* Before a device is taken: the arguments and the library file. */
static int run_check(step_t *st, char *err, size_t errlen)
{
    if (st->npos < 1 || st->npos > MAX_ARGS + 2) {
        snprintf(err, errlen, st->npos < 1 ? "missing LIB" : "too many arguments");
        return CHECK_USAGE;
    }
    FILE *fp = fopen(st->pos[0], "rb");
    if (!fp) {
        snprintf(err, errlen, "%s: %s", st->pos[0], strerror(errno));
        return CHECK_LOCAL;
    }
    fclose(fp);
    return CHECK_OK;
}

/* Upload LIB, load it and look FUNC up; *func is the function's handle. */
static int run_load(run_ctx_t *r, const char *lib, const char *fname, uint64_t *mod, uint64_t *func,
                    char *err, size_t errlen)
{
    uint64_t load = 0, getf = 0;
    tvmrpc_value_t name = tvmrpc_v_str(base_name(lib)), modv, fv;
    if (tvmrpc_upload_file(r->s, lib, base_name(lib)) < 0 ||
        tvmrpc_get_func(r->s, "tvm.rpc.server.load_module", &load) < 0) {
        snprintf(err, errlen, "%s", tvmrpc_last_error(r->s));
        return -1;
    }
    if (tvmrpc_call(r->s, load, &name, 1, &modv) < 0 || modv.kind != TVMRPC_MODULE) {
        snprintf(err, errlen, "load_module: %s", tvmrpc_last_error(r->s));
        return -1;
    }
    *mod = modv.u.h;
    tvmrpc_value_t gf[3] = {tvmrpc_v_handle(TVMRPC_MODULE, *mod), tvmrpc_v_str(fname),
                            tvmrpc_v_bool(1)};
    if (tvmrpc_get_func(r->s, "tvm.rpc.server.ModuleGetFunction", &getf) < 0 ||
        tvmrpc_call(r->s, getf, gf, 3, &fv) < 0 || fv.kind != TVMRPC_FUNC) {
        snprintf(err, errlen, "%s has no function %s", lib, fname);
        return -1;
    }
    *func = fv.u.h;
    tvmrpc_free_handle(r->s, getf, TVMRPC_FUNC);
    tvmrpc_free_handle(r->s, load, TVMRPC_FUNC);
    return 0;
}

/* ARGs from the command line: DTYPE:SHAPE is a random remote array. */
static int run_args(run_ctx_t *r, step_t *st, tvmrpc_value_t *args, int *nargs, char *err,
                    size_t errlen)
{
    *nargs = 0;
    for (int i = 2; i < st->npos; i++) {
        const char *a = st->pos[i];
        if (strchr(a, ':') && strncmp(a, "s:", 2) && strncmp(a, "i:", 2) && strncmp(a, "f:", 2)) {
            if (make_array(r, a, &args[(*nargs)++], err, errlen) < 0)
                return -1;
        } else {
            args[(*nargs)++] = parse_arg(a);
        }
    }
    return 0;
}

static int run_exec(tvmrpc_sess_t *s, step_t *st, char *err, size_t errlen)
{
    run_ctx_t r;
    memset(&r, 0, sizeof(r));
    r.s = s;
    const char *lib = st->pos[0], *fname = st->npos > 1 ? st->pos[1] : "__tvm_main__";
    tvmrpc_value_t args[MAX_ARGS], ret;
    int nargs = 0, rc = -1;
    uint64_t mod = 0, func = 0;
    if (run_load(&r, lib, fname, &mod, &func, err, errlen) < 0 ||
        run_args(&r, st, args, &nargs, err, errlen) < 0)
        goto out;
    if (tvmrpc_call(s, func, args, nargs, &ret) < 0) {
        snprintf(err, errlen, "%s: %s", fname, tvmrpc_last_error(s));
        goto out;
    }
    print_value(&ret);
    if (st->number > 0 && run_timed(&r, mod, fname, args, nargs, st->number, st->repeat) < 0) {
        snprintf(err, errlen, "time evaluator: %s", tvmrpc_last_error(s));
        goto out;
    }
    rc = 0;
out:
    for (int i = 0; i < r.narrays; i++)
        tvmrpc_array_free(s, &r.arrays[i]);
    return rc;
}

const verb_t verb_run = {
    "run",
    "LIB [FUNC] [ARG...]",
    "Upload a compiled library, load it on the server and call one of its functions.\n"
    "FUNC defaults to the library's entry (__tvm_main__). ARGs: DTYPE:SHAPE (e.g. "
    "float32:1024 or float32:4x4) for a random remote array, else a number or string as "
    "for 'call'.",
    run_specs,
    run_check,
    run_exec,
};
