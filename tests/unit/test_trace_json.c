/* Our tracker framing (tracker/proto.h) and JSON writer (base/json.h)
 * against every tracker message real TVM sent in the recorded traces.
 *
 * The TVM side serializes with Python's json.dumps, and some peers (the C++
 * and JVM servers) compare tracker replies as text, so re-dumping each
 * parsed message must give back exactly the recorded bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "tracker/proto.h"
#include "trace.h"

static const char *const tracker_traces[] = {"v0.20-tracker.txt", "v0.26-tracker.txt"};
#define NTRACES (sizeof(tracker_traces) / sizeof(tracker_traces[0]))

static trace_t traces[NTRACES];

static int setup_all(void **state)
{
    char err[1024];
    for (size_t i = 0; i < NTRACES; i++) {
        if (trace_load_named(&traces[i], tracker_traces[i], err, sizeof(err)) < 0) {
            fprintf(stderr, "test_trace_json: %s\n", err);
            return -1;
        }
    }
    return 0;
}

static int teardown_all(void **state)
{
    for (size_t i = 0; i < NTRACES; i++)
        trace_free(&traces[i]);
    return 0;
}

/* A frame as proto_parse_frame sees it. */
typedef struct frame {
    const char *json;
    size_t len;
} frame_t;

/* Split one direction (after its 4-byte magic) with proto_parse_frame,
 * checking that every shorter prefix is reported incomplete. */
static size_t frames_of(const trace_t *t, int c, trace_dir_t d, frame_t *out, size_t max)
{
    const trace_stream_t *s = trace_stream(t, c, d);
    assert_non_null(s);
    assert_true(s->len >= 4);
    assert_int_equal(le32(s->data), TRACKER_MAGIC);
    size_t n = 0;
    char err[128];
    for (size_t off = 4; off < s->len; n++) {
        const uint8_t *p = s->data + off;
        size_t left = s->len - off, used = 0, jl;
        const char *json;
        if (proto_parse_frame(p, left, TRACKER_MAX_FRAME, &json, &jl, &used, err, sizeof(err)) !=
            PROTO_OK)
            fail_msg("%s c%d %s @%zu: not a whole frame (%s)", t->name, c, trace_dir_name(d), off,
                     err);
        for (size_t k = 0; k < used; k++) {
            const char *j2;
            size_t l2, u2;
            assert_int_equal(
                proto_parse_frame(p, k, TRACKER_MAX_FRAME, &j2, &l2, &u2, err, sizeof(err)),
                PROTO_INCOMPLETE);
        }
        assert_true(n < max);
        out[n].json = json;
        out[n].len = jl;
        off += used;
    }
    return n;
}

static void check_roundtrip(const trace_t *t, const frame_t *f)
{
    char err[128] = "";
    json_t *v = json_parse(f->json, f->len, NULL, err, sizeof(err));
    if (!v)
        fail_msg("%s: json_parse failed on %.*s: %s", t->name, (int)f->len, f->json, err);
    buf_t out;
    buf_init(&out, 0);
    assert_int_equal(json_dump(v, &out), 0);
    if (out.len != f->len || memcmp(buf_head(&out), f->json, f->len) != 0)
        fail_msg("%s: json_dump gives\n  %.*s\nTVM sent\n  %.*s", t->name, (int)out.len,
                 (const char *)buf_head(&out), (int)f->len, f->json);
    buf_free(&out);
    json_free(v);
}

static void test_every_message_roundtrips(void **state)
{
    size_t total = 0;
    for (size_t i = 0; i < NTRACES; i++) {
        const trace_t *t = &traces[i];
        for (int c = 0; c < t->nconns; c++) {
            for (int d = 0; d < 2; d++) {
                frame_t f[64];
                size_t n = frames_of(t, c, (trace_dir_t)d, f, 64);
                for (size_t k = 0; k < n; k++)
                    check_roundtrip(t, &f[k]);
                total += n;
            }
        }
    }
    assert_int_equal(total, 2 * 18); /* 9 requests and 9 replies per trace */
}

static json_t *parse(const frame_t *f)
{
    char err[128];
    json_t *v = json_parse(f->json, f->len, NULL, err, sizeof(err));
    assert_non_null(v);
    return v;
}

static int is_bare_zero(const json_t *v)
{
    return json_is(v, JSON_INT) && v->u.i == 0;
}

/* The reply shape for each request code (PROTOCOL.md §1.4). */
static void check_reply_shape(int64_t code, const json_t *r)
{
    switch (code) {
    case TRACKER_PUT:
    case TRACKER_UPDATE_INFO:
        assert_true(is_bare_zero(r));
        break;
    case TRACKER_REQUEST: {
        const json_t *addr = json_array_get(r, 1);
        assert_true(is_bare_zero(json_array_get(r, 0)));
        assert_int_equal(json_array_len(addr), 3);
        assert_string_equal(json_get_string(json_array_get(addr, 0)), "127.0.0.1");
        break;
    }
    case TRACKER_SUMMARY: {
        const json_t *body = json_array_get(r, 1);
        assert_true(is_bare_zero(json_array_get(r, 0)));
        assert_true(json_is(json_object_get(body, "queue_info"), JSON_OBJECT));
        assert_true(json_is(json_object_get(body, "server_info"), JSON_ARRAY));
        break;
    }
    case TRACKER_GET_PENDING_MATCHKEYS:
        /* A bare list of matchkeys, no status code. */
        assert_true(json_is(r, JSON_ARRAY));
        for (size_t i = 0; i < json_array_len(r); i++)
            assert_non_null(json_get_string(json_array_get(r, i)));
        break;
    default:
        fail_msg("unexpected request code %lld", (long long)code);
    }
}

/* Requests are lists led by their code; each gets one reply, in order. */
static void test_request_reply_pairs(void **state)
{
    for (size_t i = 0; i < NTRACES; i++) {
        const trace_t *t = &traces[i];
        for (int c = 0; c < t->nconns; c++) {
            frame_t rq[64], rp[64];
            size_t nq = frames_of(t, c, TRACE_C2S, rq, 64);
            size_t np = frames_of(t, c, TRACE_S2C, rp, 64);
            assert_int_equal(nq, np);
            for (size_t k = 0; k < nq; k++) {
                json_t *q = parse(&rq[k]), *r = parse(&rp[k]);
                int64_t code = -1;
                assert_true(json_is(q, JSON_ARRAY));
                assert_int_equal(json_get_int(json_array_get(q, 0), &code), 0);
                check_reply_shape(code, r);
                json_free(q);
                json_free(r);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_message_roundtrips),
        cmocka_unit_test(test_request_reply_pairs),
    };
    return cmocka_run_group_tests_name("trace_json", tests, setup_all, teardown_all);
}
