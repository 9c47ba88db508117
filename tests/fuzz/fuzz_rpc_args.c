/* libFuzzer harness for the session codecs (PROTOCOL.md §4.4, §4.6).
 * Byte 0 picks the generation and the entry point; the rest is untrusted
 * packet payload. Whatever decodes must re-encode and decode to the same
 * kinds and sizes, in the same generation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"

#define MAX_VALS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip(const rpc_codec_t *c, const rpc_value_t *v, int n)
{
    buf_t b;
    buf_init(&b, 0);
    if (c->encode_args(&b, v, n) < 0)
        abort();
    rpc_value_t w[MAX_VALS];
    rpc_tensor_t t[MAX_VALS];
    char err[160];
    int m;
    rd_t r = rd_make(buf_head(&b), b.len);
    if (c->decode(&r, w, t, MAX_VALS, &m, err, sizeof(err)) < 0 || m != n)
        abort();
    for (int i = 0; i < n; i++) {
        /* Strings may come back as bytes-or-str only if they went out that way. */
        if (w[i].kind != v[i].kind)
            abort();
        if ((v[i].kind == RV_STR || v[i].kind == RV_BYTES) &&
            (w[i].u.s.len != v[i].u.s.len || memcmp(w[i].u.s.p, v[i].u.s.p, v[i].u.s.len)))
            abort();
    }
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const rpc_codec_t *c = data[0] & 1 ? &rpc_codec_ffi : &rpc_codec_classic;
    rd_t r = rd_make(data + 1, size - 1);
    rpc_value_t v[MAX_VALS];
    rpc_tensor_t t[MAX_VALS];
    char err[160];
    int n;
    if (data[0] & 2) {
        rpc_tensor_t rt;
        rpc_value_t out;
        c->decode_call_result(&r, &out, &rt, err, sizeof(err));
        return 0;
    }
    if (c->decode(&r, v, t, MAX_VALS, &n, err, sizeof(err)) == 0) {
        /* Results that carry only a tag cannot be sent as arguments. */
        roundtrip(c, v, n);
        buf_t b;
        buf_init(&b, 0);
        for (int i = 0; i < n; i++) {
            c->encode_value(&b, &v[i]);
            if (v[i].kind != RV_TENSOR)
                c->encode_call_result(&b, &v[i]);
        }
        buf_free(&b);
    }
    return 0;
}
