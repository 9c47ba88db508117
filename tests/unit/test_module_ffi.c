/* module_ffi (RUNTIME.md §2.7-§2.10) without a server: the import-blob
 * parser (a valid blob, every prefix of it, every truncation of its body,
 * and one broken blob per rule), the ffi system library over the registry
 * (prefix rules, context symbols, singleton), calls across the two ABIs,
 * errors, and TVMFFIHandleInitOnce. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "server/module_ffi.h"
#include "tvmrpc/c_ffi_abi.h"

/* ---- blob builder ------------------------------------------------------------------ */

typedef struct bb {
    uint8_t p[1024];
    size_t n;
} bb_t;

static void bb_u64(bb_t *b, uint64_t v)
{
    put_le64(b->p + b->n, v);
    b->n += 8;
}

static void bb_str(bb_t *b, const char *s, size_t n)
{
    bb_u64(b, n);
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

/* indptr [0,1,2,2], child [1,2]: _lib imports cuda, which imports
 * relax.VMExecutable; the length field is filled in last. */
static void good_blob(bb_t *b)
{
    b->n = 8;
    bb_u64(b, 4);
    bb_u64(b, 0);
    bb_u64(b, 1);
    bb_u64(b, 2);
    bb_u64(b, 2);
    bb_u64(b, 2);
    bb_u64(b, 1);
    bb_u64(b, 2);
    bb_str(b, "_lib", 4);
    bb_str(b, "cuda", 4);
    bb_str(b, "PTX!", 4);
    bb_str(b, "relax.VMExecutable", 18);
    bb_str(b, "", 0);
    put_le64(b->p, b->n - 8);
}

/* Parse a copy of exactly n bytes, so any read past them is a heap error
 * under the sanitizers. */
static int parse_copy(const uint8_t *p, size_t n, mffi_blob_t *b, char *err, size_t errlen)
{
    uint8_t *q = malloc(n ? n : 1);
    memcpy(q, p, n);
    int rc = mffi_blob_parse(q, n, b, err, errlen);
    if (rc == 0) { /* entries point into the copy: check them before freeing */
        for (size_t i = 0; i < b->nmods; i++)
            assert_true(b->entries[i].kind >= q && b->entries[i].kind < q + n);
    }
    free(q);
    return rc;
}

static void test_blob_good(void **state)
{
    bb_t b;
    good_blob(&b);
    mffi_blob_t blob;
    char err[256] = "";
    assert_int_equal(mffi_blob_parse(b.p, b.n + 100, &blob, err, sizeof(err)), 0);
    assert_int_equal(blob.nmods, 3);
    assert_int_equal(blob.nchild, 2);
    assert_true(blob.entries[0].is_lib && !blob.entries[0].payload);
    assert_int_equal(blob.entries[1].kind_len, 4);
    assert_memory_equal(blob.entries[1].kind, "cuda", 4);
    assert_int_equal(blob.entries[1].payload_len, 4);
    assert_memory_equal(blob.entries[1].payload, "PTX!", 4);
    assert_int_equal(blob.entries[2].payload_len, 0);
    assert_int_equal(blob.indptr[1], 1);
    assert_int_equal(blob.child[1], 2);
    mffi_blob_free(&blob);
}

/* Fewer bytes than the length field promises: always a clean error. */
static void test_blob_every_prefix(void **state)
{
    bb_t b;
    good_blob(&b);
    for (size_t k = 0; k < b.n; k++) {
        mffi_blob_t blob;
        char err[256] = "";
        assert_int_equal(parse_copy(b.p, k, &blob, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "RuntimeError: __tvm_ffi__library_bin"));
        assert_null(blob.entries);
        assert_null(blob.indptr);
    }
    mffi_blob_t blob;
    char err[256];
    assert_int_equal(parse_copy(b.p, b.n, &blob, err, sizeof(err)), 0);
    mffi_blob_free(&blob);
}

/* A length field that agrees with a cut body: every cut is an error. */
static void test_blob_every_body_cut(void **state)
{
    bb_t b;
    good_blob(&b);
    for (size_t t = 0; t < b.n - 8; t++) {
        bb_t c = b;
        put_le64(c.p, t);
        mffi_blob_t blob;
        char err[256] = "";
        assert_int_equal(parse_copy(c.p, 8 + t, &blob, err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
    }
}

static void expect_bad(bb_t *b, const char *needle)
{
    put_le64(b->p, b->n - 8);
    mffi_blob_t blob;
    char err[256] = "";
    assert_int_equal(parse_copy(b->p, b->n, &blob, err, sizeof(err)), -1);
    if (!strstr(err, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, err);
}

/* One tree (indptr, child) and one list of entries. */
static void tree(bb_t *b, const uint64_t *ind, int nind, const uint64_t *ch, int nch)
{
    b->n = 8;
    bb_u64(b, (uint64_t)nind);
    for (int i = 0; i < nind; i++)
        bb_u64(b, ind[i]);
    bb_u64(b, (uint64_t)nch);
    for (int i = 0; i < nch; i++)
        bb_u64(b, ch[i]);
}

static void test_blob_bad(void **state)
{
    bb_t b;
    const uint64_t ind2[] = {0, 1, 1}, ch1[] = {1}, bad_ch[] = {7}, down[] = {0, 1, 0},
                   past[] = {0, 2, 2};
    tree(&b, ind2, 3, ch1, 1);
    bb_str(&b, "_lib", 4);
    bb_str(&b, "_lib", 4);
    expect_bad(&b, "more than one _lib");

    tree(&b, ind2, 3, bad_ch, 1);
    bb_str(&b, "_lib", 4);
    bb_str(&b, "c", 1);
    bb_str(&b, "", 0);
    expect_bad(&b, "imports a module that does not exist");

    tree(&b, down, 3, ch1, 1);
    bb_str(&b, "_lib", 4);
    bb_str(&b, "c", 1);
    bb_str(&b, "", 0);
    expect_bad(&b, "rows out of order");

    tree(&b, past, 3, ch1, 1);
    bb_str(&b, "_lib", 4);
    bb_str(&b, "c", 1);
    bb_str(&b, "", 0);
    expect_bad(&b, "does not match its entries");

    const uint64_t one[] = {0};
    tree(&b, one, 1, NULL, 0);
    expect_bad(&b, "holds no modules");

    tree(&b, ind2, 3, ch1, 1);
    bb_str(&b, "_lib", 4);
    bb_str(&b, "c", 1);
    bb_str(&b, "", 0);
    b.p[b.n++] = 0;
    expect_bad(&b, "trailing bytes");

    tree(&b, ind2, 3, ch1, 1);
    bb_str(&b, "_lib", 4);
    bb_str(&b, "", 0); /* empty kind */
    expect_bad(&b, "malformed entry");

    tree(&b, ind2, 3, ch1, 1);
    bb_str(&b, "_lib", 4);
    bb_u64(&b, 300); /* kind longer than allowed */
    memset(b.p + b.n, 'k', 300 < sizeof(b.p) - b.n ? 300 : 0);
    b.n += 300;
    expect_bad(&b, "malformed entry");

    b.n = 8;
    bb_u64(&b, UINT64_MAX); /* indptr count */
    expect_bad(&b, "import tree");

    tree(&b, ind2, 3, NULL, 0);
    b.n -= 8;
    bb_u64(&b, (uint64_t)1 << 40); /* child count */
    expect_bad(&b, "import tree");

    tree(&b, ind2, 3, ch1, 1);
    bb_str(&b, "_lib", 4);
    bb_str(&b, "c", 1);
    bb_u64(&b, UINT64_MAX); /* payload length */
    expect_bad(&b, "malformed entry");

    assert_int_equal(mffi_blob_parse(NULL, 0, &(mffi_blob_t){0}, (char[64]){0}, 64), -1);
}

/* ---- ffi system library, calls and errors ------------------------------------------- */

static void *sys_ctx, *user_var;

static int k_add(void *self, const TVMFFIAny *args, int32_t n, TVMFFIAny *r)
{
    if (n != 2 || args[0].type_index != kTVMFFIInt || args[1].type_index != kTVMFFIFloat) {
        const char *parts[] = {"k_add: expects ", NULL, "(int, float)"};
        TVMFFIErrorSetRaisedFromCStrParts("TypeError", parts, 3);
        return -1;
    }
    r->type_index = kTVMFFIFloat;
    r->v_float64 = (double)args[0].v_int64 + args[1].v_float64;
    return 0;
}

static int k_ctx(void *self, const TVMFFIAny *args, int32_t n, TVMFFIAny *r)
{
    r->type_index = kTVMFFIBool;
    r->v_int64 = sys_ctx != NULL;
    return 0;
}

/* Echo of its argument, whatever it is. */
static int k_echo(void *self, const TVMFFIAny *args, int32_t n, TVMFFIAny *r)
{
    *r = args[0];
    return 0;
}

static void reg(const char *name, TVMFFISafeCallType f)
{
    void *p;
    memcpy(&p, &f, sizeof(p));
    assert_int_equal(TVMFFIEnvModRegisterSystemLibSymbol(name, p), 0);
}

static mfunc_t *get(mod_t *m, const char *name)
{
    mfunc_t *f;
    char err[256];
    assert_int_equal(mod_get_function(m, name, 1, &f, err, sizeof(err)), 0);
    return f;
}

static void test_system_lib(void **state)
{
    reg("__tvm_ffi_utp_add", k_add);
    reg("__tvm_ffi_utp_ctx", k_ctx);
    reg("__tvm_ffi_echo", k_echo);
    assert_int_equal(TVMFFIEnvModRegisterSystemLibSymbol("utp___tvm_ffi__library_ctx", &sys_ctx),
                     0);
    assert_int_equal(TVMFFIEnvModRegisterSystemLibSymbol("utp_user_var", &user_var), 0);
    int marker;
    assert_int_equal(TVMFFIEnvModRegisterContextSymbol("user_var", &marker), 0);

    mod_t *m, *again, *plain;
    char err[256];
    assert_int_equal(module_syslib_get("utp_", 1, &m, err, sizeof(err)), 0);
    assert_int_equal(module_syslib_get("utp_", 1, &again, err, sizeof(err)), 0);
    assert_ptr_equal(m, again);          /* one per prefix for the process */
    assert_non_null(sys_ctx);            /* <prefix>__tvm_ffi__library_ctx was written */
    assert_ptr_equal(user_var, &marker); /* and the user's context symbol */

    /* Prefixed name first, then the plain one; classic names are not ffi. */
    mfunc_t *add = get(m, "add"), *echo = get(m, "echo");
    assert_non_null(add);
    assert_non_null(echo);
    assert_null(get(m, "notexist"));
    assert_null(get(m, "_library_ctx"));

    /* Through the packed ABI, as clients and the time evaluator call. */
    TVMValue args[2] = {{.v_int64 = 2}, {.v_float64 = 0.5}}, rv;
    int codes[2] = {kTVMArgInt, kTVMArgFloat}, rc;
    assert_int_equal(mfunc_call(add, args, codes, 2, &rv, &rc), 0);
    assert_int_equal(rc, kTVMArgFloat);
    assert_true(rv.v_float64 == 2.5);
    assert_int_equal(mfunc_call(add, args, codes, 1, &rv, &rc), -1);
    assert_string_equal(TVMGetLastError(), "TypeError: k_add: expects (int, float)");

    /* The unprefixed system library sees only unprefixed names. */
    assert_int_equal(module_syslib_get("", 1, &plain, err, sizeof(err)), 0);
    assert_null(get(plain, "add"));
    mfunc_t *e2 = get(plain, "echo");
    assert_non_null(e2);
    /* The classic system library of the same prefix is another module. */
    mod_t *classic;
    assert_int_equal(module_syslib_get("utp_", 0, &classic, err, sizeof(err)), 0);
    assert_ptr_not_equal(classic, m);
    assert_null(get(classic, "add"));

    /* TVMFFIFunctionCall on an ffi function: direct. */
    TVMFFIAny a[2], r;
    memset(a, 0, sizeof(a));
    memset(&r, 0, sizeof(r));
    a[0].type_index = kTVMFFIInt;
    a[0].v_int64 = 40;
    a[1].type_index = kTVMFFIFloat;
    a[1].v_float64 = 2;
    assert_int_equal(TVMFFIFunctionCall(add, a, 2, &r), 0);
    assert_true(r.type_index == kTVMFFIFloat && r.v_float64 == 42);
    assert_int_equal(TVMFFIFunctionCall(add, a, 1, &r), -1);
    assert_string_equal(TVMGetLastError(), "TypeError: k_add: expects (int, float)");

    /* Strings go in as RawStr; echoed back, they return as a copy. */
    const char *text = "longer than seven bytes";
    TVMValue sv = {.v_str = text};
    int sc = kTVMStr;
    assert_int_equal(mfunc_call(echo, &sv, &sc, 1, &rv, &rc), 0);
    assert_int_equal(rc, kTVMStr);
    assert_true(rv.v_str != text);
    assert_string_equal(rv.v_str, text);
    /* Modules cannot be passed to ffi code. */
    TVMValue mv = {.v_handle = m};
    int mc = kTVMModuleHandle;
    assert_int_equal(mfunc_call(echo, &mv, &mc, 1, &rv, &rc), -1);
    assert_non_null(strstr(TVMGetLastError(), "TypeError: argument 0 (type code 9)"));
    mfunc_release(add);
    mfunc_release(echo);
    mfunc_release(e2);
    mod_release(m);
    mod_release(again);
    mod_release(plain);
    mod_release(classic);
}

/* TVMFFIFunctionCall on a classic function (a native global). */
static void test_call_native(void **state)
{
    mfunc_t *fill = module_global_function("tvm.contrib.random.random_fill");
    assert_non_null(fill);
    float data[8] = {0};
    int64_t shape[1] = {8};
    DLTensor t = {data, {1, 0}, 1, {2, 32, 1}, shape, NULL, 0};
    TVMFFIAny a, r;
    memset(&a, 0, sizeof(a));
    memset(&r, 0, sizeof(r));
    a.type_index = kTVMFFIDLTensorPtr;
    a.v_ptr = &t;
    assert_int_equal(TVMFFIFunctionCall(fill, &a, 1, &r), 0);
    assert_int_equal(r.type_index, kTVMFFINone);
    for (int i = 0; i < 8; i++)
        assert_true(data[i] >= 1 && data[i] < 10);
    /* Objects of kinds a classic function cannot take are refused. */
    a.type_index = kTVMFFIArray;
    a.v_obj = &t;
    assert_int_equal(TVMFFIFunctionCall(fill, &a, 1, &r), -1);
    assert_non_null(strstr(TVMGetLastError(), "TypeError: "));
    assert_int_equal(TVMFFIFunctionCall(NULL, &a, 1, &r), -1);
}

static void test_errors(void **state)
{
    TVMFFIErrorSetRaisedFromCStr("ValueError", "bad value");
    assert_string_equal(TVMGetLastError(), "ValueError: bad value");
    TVMFFIErrorSetRaisedFromCStr(NULL, "no kind");
    assert_string_equal(TVMGetLastError(), "RuntimeError: no kind");
    const char *parts[] = {"a", NULL, "b", "c"};
    TVMFFIErrorSetRaisedFromCStrParts("IndexError", parts, 4);
    assert_string_equal(TVMGetLastError(), "IndexError: abc");
    TVMFFIErrorSetRaisedFromCStrParts("IndexError", parts, -3);
    assert_string_equal(TVMGetLastError(), "IndexError: ");
    /* Capped, never overflowing. */
    static char big[20000];
    memset(big, 'x', sizeof(big) - 1);
    const char *bp[] = {big, big};
    TVMFFIErrorSetRaisedFromCStrParts("RuntimeError", bp, 2);
    assert_true(strlen(TVMGetLastError()) < 8192);
    assert_int_equal(TVMFFIEnvModRegisterContextSymbol(NULL, NULL), -1);
    void *orig = (void *)1;
    assert_int_equal(TVMFFIEnvSetStream(2, 0, (void *)0x10, &orig), 0);
    assert_null(orig);
    assert_ptr_equal(TVMFFIEnvGetStream(2, 0), (void *)0x10);
    assert_null(TVMFFIEnvGetStream(1, 0));
    void *out = NULL;
    assert_int_equal(TVMFFIEnvTensorAlloc(NULL, &out), -1);
    assert_int_equal(TVMFFIEnvCheckSignals(), 0);
}

static int inits;

static int init_ok(void **out)
{
    inits++;
    *out = &inits;
    return 0;
}

static int init_null(void **out)
{
    return 0;
}

static int init_fail(void **out)
{
    TVMFFIErrorSetRaisedFromCStr("RuntimeError", "init failed");
    return -1;
}

static void test_init_once(void **state)
{
    void *h = NULL;
    assert_int_equal(TVMFFIHandleInitOnce(&h, init_ok), 0);
    assert_int_equal(TVMFFIHandleInitOnce(&h, init_ok), 0);
    assert_ptr_equal(h, &inits);
    assert_int_equal(inits, 1);
    void *h2 = NULL;
    assert_int_equal(TVMFFIHandleInitOnce(&h2, init_null), -1);
    assert_string_equal(TVMGetLastError(), "RuntimeError: init_func must return a non-NULL handle");
    assert_null(h2);
    assert_int_equal(TVMFFIHandleInitOnce(&h2, init_fail), -1);
    assert_null(h2);
    assert_int_equal(TVMFFIEnvModLookupFromImports(NULL, "no.such.function", &h2), -1);
    assert_non_null(strstr(TVMGetLastError(), "RuntimeError: Cannot find function no.such"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blob_good),
        cmocka_unit_test(test_blob_every_prefix),
        cmocka_unit_test(test_blob_every_body_cut),
        cmocka_unit_test(test_blob_bad),
        cmocka_unit_test(test_system_lib),
        cmocka_unit_test(test_call_native),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_init_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
