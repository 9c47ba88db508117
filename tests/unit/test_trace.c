/* The trace reader (tests/support/trace.c) against the real captures in
 * shared/spec/traces: every file parses, offsets are contiguous, the step
 * table in each header agrees with the body, and the facts the README
 * states about the traffic hold. Also checks that damaged input is an
 * error, never a crash.
 *
 * Missing traces are a failure, not a skip: without them these tests would
 * silently check nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

typedef enum kind { K_SESSION, K_TRACKER, K_PROXY } kind_t;

/* The README's file table. */
static const struct {
    const char *file;
    int steps;
    kind_t kind;
} files[] = {
    {"v0.19-graph-py.txt", 13, K_SESSION},   {"v0.19-graph-cpp.txt", 13, K_SESSION},
    {"v0.20-session-py.txt", 15, K_SESSION}, {"v0.20-session-cpp.txt", 10, K_SESSION},
    {"v0.20-module-py.txt", 13, K_SESSION},  {"v0.20-module-cpp.txt", 13, K_SESSION},
    {"v0.20-error-py.txt", 9, K_SESSION},    {"v0.20-error-cpp.txt", 8, K_SESSION},
    {"v0.20-tracker.txt", 11, K_TRACKER},    {"v0.20-proxy.txt", 14, K_PROXY},
    {"v0.26-session-py.txt", 15, K_SESSION}, {"v0.26-session-cpp.txt", 10, K_SESSION},
    {"v0.26-module-py.txt", 13, K_SESSION},  {"v0.26-module-cpp.txt", 13, K_SESSION},
    {"v0.26-error-py.txt", 9, K_SESSION},    {"v0.26-error-cpp.txt", 8, K_SESSION},
    {"v0.26-tracker.txt", 11, K_TRACKER},    {"v0.26-proxy.txt", 14, K_PROXY},
};
#define NFILES (sizeof(files) / sizeof(files[0]))

enum { RPC_SHUTDOWN = 1, RPC_INIT_SERVER = 2, RPC_RETURN = 4, RPC_EXCEPTION = 5 };

static trace_t traces[NFILES];

static int setup_all(void **state)
{
    char err[1024];
    for (size_t i = 0; i < NFILES; i++) {
        if (trace_load_named(&traces[i], files[i].file, err, sizeof(err)) < 0) {
            fprintf(stderr, "test_trace: %s\n", err);
            return -1; /* cmocka reports the group setup as failed */
        }
    }
    return 0;
}

static int teardown_all(void **state)
{
    for (size_t i = 0; i < NFILES; i++)
        trace_free(&traces[i]);
    return 0;
}

static const uint8_t *sdata(const trace_t *t, int c, trace_dir_t d, size_t *len)
{
    const trace_stream_t *s = trace_stream(t, c, d);
    assert_non_null(s);
    *len = s->len;
    return s->data;
}

static trace_unit_t *units_of(const trace_t *t, int c, trace_dir_t d, kind_t k, size_t *n)
{
    trace_unit_t *u;
    char err[256];
    int rc = trace_split_units(trace_stream(t, c, d),
                               k == K_TRACKER ? TRACE_PROTO_TRACKER : TRACE_PROTO_RPC, d, &u, n,
                               err, sizeof(err));
    if (rc < 0)
        fail_msg("%s c%d %s: %s", t->name, c, trace_dir_name(d), err);
    return u;
}

/* ---- the directory ------------------------------------------------------ */

static void test_spec_dir_found(void **state)
{
    char dir[PATH_MAX], err[1024];
    if (trace_spec_dir(dir, sizeof(dir), err, sizeof(err)) < 0)
        fail_msg("%s", err);
}

/* Every *.txt in the directory is one of the README's files and parses. */
static void test_every_file_in_dir_parses(void **state)
{
    char path[PATH_MAX], err[1024];
    assert_int_equal(trace_path("", path, sizeof(path), err, sizeof(err)), 0);
    DIR *d = opendir(path);
    assert_non_null(d);
    size_t ntxt = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 4, ".txt") != 0)
            continue;
        int known = 0;
        for (size_t i = 0; i < NFILES; i++)
            known |= strcmp(files[i].file, e->d_name) == 0;
        if (!known)
            fail_msg("%s is not in the README's file table", e->d_name);
        trace_t t;
        if (trace_load_named(&t, e->d_name, err, sizeof(err)) < 0)
            fail_msg("%s", err);
        trace_free(&t);
        ntxt++;
    }
    closedir(d);
    assert_int_equal(ntxt, NFILES);
}

static void test_headers(void **state)
{
    for (size_t i = 0; i < NFILES; i++) {
        const trace_t *t = &traces[i];
        char stem[TRACE_TEXT_LEN];
        snprintf(stem, sizeof(stem), "%.*s", (int)(strlen(files[i].file) - 4), files[i].file);
        assert_string_equal(t->name, stem);
        assert_string_equal(t->format, "tvm-rpc-rawtrace/1");
        const char *gen = strncmp(stem, "v0.26", 5) == 0 ? "tvm-ffi" : "classic";
        if (strncmp(t->generation, gen, strlen(gen)) != 0)
            fail_msg("%s: generation '%s', expected %s", stem, t->generation, gen);
        assert_int_equal(t->nsteps, files[i].steps);
    }
}

/* ---- offsets and events ------------------------------------------------- */

static void check_contiguous(const trace_t *t)
{
    size_t pos[TRACE_MAX_CONNS][2] = {{0}};
    int eof[TRACE_MAX_CONNS][2] = {{0}};
    for (size_t i = 0; i < t->nevents; i++) {
        const trace_event_t *e = &t->events[i];
        if (e->kind == TRACE_EV_DATA) {
            assert_false(eof[e->conn][e->dir]);
            assert_int_equal(e->off, pos[e->conn][e->dir]);
            assert_true(e->bursts >= 1);
            pos[e->conn][e->dir] += e->len;
        } else if (e->kind == TRACE_EV_EOF) {
            assert_int_equal(e->off, pos[e->conn][e->dir]);
            eof[e->conn][e->dir] = 1;
        }
    }
    for (int c = 0; c < t->nconns; c++) {
        for (int d = 0; d < 2; d++) {
            const trace_stream_t *s = trace_stream(t, c, (trace_dir_t)d);
            assert_int_equal(s->len, pos[c][d]);
            /* Every relayed connection was closed before the capture ended. */
            assert_true(s->has_eof && eof[c][d]);
        }
    }
}

static void test_offsets_contiguous(void **state)
{
    for (size_t i = 0; i < NFILES; i++)
        check_contiguous(&traces[i]);
}

/* ---- steps -------------------------------------------------------------- */

/* First DATA event of conn in step s (events from the @step line on). */
static const trace_event_t *first_data(const trace_t *t, int s, int conn)
{
    for (size_t i = t->steps[s].first_event + 1; i < t->nevents; i++) {
        const trace_event_t *e = &t->events[i];
        if (e->kind == TRACE_EV_STEP)
            break;
        if (e->kind == TRACE_EV_DATA && e->conn == conn)
            return e;
    }
    return NULL;
}

static int step_has(const trace_t *t, int s, trace_ev_kind_t kind, int conn)
{
    for (size_t i = t->steps[s].first_event + 1; i < t->nevents; i++) {
        const trace_event_t *e = &t->events[i];
        if (e->kind == TRACE_EV_STEP)
            break;
        if (e->kind == kind && (conn < 0 || e->conn == conn))
            return 1;
    }
    return 0;
}

static void check_step_start(const trace_t *t, int s)
{
    const trace_step_t *st = &t->steps[s];
    const trace_event_t *e = first_data(t, s, st->hdr_conn);
    if (!e || e->dir != st->hdr_dir || e->off != st->hdr_start)
        fail_msg("%s S%02d: header says it starts at %s c%d@%zu", t->name, s + 1,
                 trace_dir_name(st->hdr_dir), st->hdr_conn, st->hdr_start);
    assert_int_equal(st->off[st->hdr_conn][TRACE_C2S], st->hdr_off[TRACE_C2S]);
    assert_int_equal(st->off[st->hdr_conn][TRACE_S2C], st->hdr_off[TRACE_S2C]);
    assert_int_equal(st->hdr_opened, step_has(t, s, TRACE_EV_OPEN, st->hdr_conn));
    /* The connections with traffic are exactly the named ones. */
    for (int c = 0; c < t->nconns; c++) {
        int named = c == st->hdr_conn;
        for (int a = 0; a < st->nalso; a++) {
            if (st->also[a].conn != c)
                continue;
            named = 1;
            const trace_event_t *ae = first_data(t, s, c);
            assert_non_null(ae);
            assert_int_equal(ae->dir, st->also[a].dir);
            assert_int_equal(ae->off, st->also[a].off);
            assert_int_equal(st->also[a].role, t->conns[c].role);
        }
        if (named != step_has(t, s, TRACE_EV_DATA, c))
            fail_msg("%s S%02d: traffic on c%d does not match the header", t->name, s + 1, c);
    }
}

static void check_steps(const trace_t *t)
{
    size_t pos[TRACE_MAX_CONNS][2] = {{0}};
    int s = -1;
    for (size_t i = 0; i < t->nevents; i++) {
        const trace_event_t *e = &t->events[i];
        if (e->kind == TRACE_EV_STEP) {
            s++;
            assert_int_equal(t->steps[s].first_event, i);
            assert_memory_equal(t->steps[s].off, pos, sizeof(pos));
        } else if (e->kind == TRACE_EV_DATA) {
            pos[e->conn][e->dir] += e->len;
        }
        assert_int_equal(e->step, s);
    }
    assert_int_equal(s + 1, t->nsteps);
    for (s = 0; s < t->nsteps; s++) {
        const trace_step_t *st = &t->steps[s];
        assert_true(st->in_header && st->in_body);
        assert_string_equal(st->hdr_text, st->body_text);
        assert_true(st->hdr_has_start != st->hdr_no_bytes);
        if (st->hdr_has_start) {
            check_step_start(t, s);
            continue;
        }
        assert_false(step_has(t, s, TRACE_EV_DATA, -1));
        if (st->hdr_close_conn >= 0)
            assert_true(step_has(t, s, TRACE_EV_EOF, st->hdr_close_conn));
    }
}

static void test_step_table(void **state)
{
    for (size_t i = 0; i < NFILES; i++)
        check_steps(&traces[i]);
}

static void test_connections(void **state)
{
    for (size_t i = 0; i < NFILES; i++) {
        const trace_t *t = &traces[i];
        assert_true(t->nconns >= 1);
        for (int c = 0; c < t->nconns; c++) {
            const trace_conn_t *cn = &t->conns[c];
            if (!cn->opened || !cn->hdr_present)
                fail_msg("%s c%d: in the %s only", t->name, c, cn->opened ? "body" : "header");
            assert_int_equal(cn->open_step, cn->hdr_open_step);
            assert_int_not_equal(cn->role, TRACE_ROLE_UNKNOWN);
        }
    }
}

/* ---- README facts: handshakes ------------------------------------------- */

static void check_key(const trace_t *t, int c, trace_dir_t d, uint32_t magic, const char *key)
{
    size_t n;
    const uint8_t *p = sdata(t, c, d, &n);
    size_t kl = strlen(key);
    if (n < 8 + kl)
        fail_msg("%s c%d %s: only %zu bytes", t->name, c, trace_dir_name(d), n);
    const uint8_t want[4] = {magic & 0xff, magic >> 8 & 0xff, magic >> 16 & 0xff, magic >> 24};
    assert_memory_equal(p, want, 4);
    assert_int_equal(p[4] | p[5] << 8 | p[6] << 16 | (uint32_t)p[7] << 24, kl);
    if (memcmp(p + 8, key, kl) != 0)
        fail_msg("%s c%d %s: key is '%.*s', expected '%s'", t->name, c, trace_dir_name(d), (int)kl,
                 (const char *)p + 8, key);
}

static void test_handshakes(void **state)
{
    static const uint8_t tmagic[4] = {0x71, 0xf2, 0x02, 0x00};
    for (size_t i = 0; i < NFILES; i++) {
        const trace_t *t = &traces[i];
        if (files[i].kind == K_SESSION) {
            assert_int_equal(t->nconns, 1);
            assert_int_equal(t->conns[0].role, TRACE_ROLE_CLIENT);
            check_key(t, 0, TRACE_C2S, TRACE_RPC_MAGIC, "client:");
            check_key(t, 0, TRACE_S2C, TRACE_RPC_MAGIC, "server:");
        } else if (files[i].kind == K_TRACKER) {
            assert_int_equal(t->nconns, 3);
            for (int c = 0; c < t->nconns; c++) {
                size_t n;
                assert_true(sdata(t, c, TRACE_C2S, &n) && n >= 4);
                assert_memory_equal(t->conns[c].dir[TRACE_C2S].data, tmagic, 4);
                assert_memory_equal(sdata(t, c, TRACE_S2C, &n), tmagic, 4);
            }
            assert_int_equal(t->conns[0].role, TRACE_ROLE_SERVER);
            assert_int_equal(t->conns[1].role, TRACE_ROLE_CLIENT);
            assert_int_equal(t->conns[2].role, TRACE_ROLE_CLIENT);
        } else {
            /* The proxy tells each side the other side's key. */
            assert_int_equal(t->nconns, 3);
            assert_int_equal(t->conns[0].role, TRACE_ROLE_SERVER);
            assert_int_equal(t->conns[1].role, TRACE_ROLE_CLIENT);
            assert_int_equal(t->conns[2].role, TRACE_ROLE_SERVER);
            check_key(t, 0, TRACE_C2S, TRACE_RPC_MAGIC, "server:tracepd");
            check_key(t, 0, TRACE_S2C, TRACE_RPC_MAGIC, "client:tracepd");
            check_key(t, 1, TRACE_C2S, TRACE_RPC_MAGIC, "client:tracepd");
            check_key(t, 1, TRACE_S2C, TRACE_RPC_MAGIC, "server:tracepd");
            check_key(t, 2, TRACE_C2S, TRACE_RPC_MAGIC, "server:tracepd");
            assert_int_equal(t->conns[2].dir[TRACE_S2C].len, 0); /* no client came */
        }
    }
}

/* ---- README facts: units ------------------------------------------------ */

/* The annotations mark exactly the unit starts, and their decoded numbers
 * agree with ours. */
static void check_notes(const trace_t *t, int c, trace_dir_t d, const trace_unit_t *u, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < t->nnotes; i++) {
        const trace_note_t *nt = &t->notes[i];
        if (nt->conn != c || nt->dir != d)
            continue;
        if (k >= n || nt->off != u[k].off)
            fail_msg("%s c%d %s: annotation @%zu is not at a unit start", t->name, c,
                     trace_dir_name(d), nt->off);
        const char *at;
        if (u[k].kind == TRACE_UNIT_PACKET && (at = strstr(nt->text, "int32 code ")))
            assert_int_equal(strtoll(at + 11, NULL, 10), u[k].code);
        if (u[k].kind == TRACE_UNIT_FRAME && (at = strstr(nt->text, "int32 length ")))
            assert_int_equal(strtoll(at + 13, NULL, 10), u[k].nbody);
        k++;
    }
    if (k != n)
        fail_msg("%s c%d %s: %zu units but %zu annotations", t->name, c, trace_dir_name(d), n, k);
}

/* kInitServer: code, u64 version length, "0.8.0" (PROTOCOL.md §4.5). */
static void check_init_server(const trace_t *t, int c, trace_dir_t d, const trace_unit_t *u)
{
    const uint8_t *p = t->conns[c].dir[d].data + u->body;
    static const uint8_t ver[] = {5, 0, 0, 0, 0, 0, 0, 0, '0', '.', '8', '.', '0'};
    assert_int_equal(u->code, RPC_INIT_SERVER);
    assert_true(u->nbody >= 4 + sizeof(ver));
    assert_memory_equal(p + 4, ver, sizeof(ver));
}

/* One RPC conversation: requests on rq, replies on rp (for the proxy's
 * server connection these are S>C and C>S). */
static void check_conversation(const trace_t *t, int c, trace_dir_t rq, int shutdown)
{
    size_t nq, np;
    trace_unit_t *q = units_of(t, c, rq, K_SESSION, &nq);
    trace_unit_t *p = units_of(t, c, (trace_dir_t)!rq, K_SESSION, &np);
    assert_true(nq >= 2 && np >= 2);
    check_init_server(t, c, rq, &q[1]);
    assert_int_equal(p[1].code, RPC_RETURN);
    /* Strictly request/reply; kShutdown alone has no reply. */
    if (shutdown) {
        assert_int_equal(q[nq - 1].code, RPC_SHUTDOWN);
        assert_int_equal(np, nq - 1);
    }
    for (size_t i = 1; i < np; i++)
        assert_true(p[i].code == RPC_RETURN || p[i].code == RPC_EXCEPTION || p[i].code == 8);
    free(q);
    free(p);
}

static void test_units(void **state)
{
    for (size_t i = 0; i < NFILES; i++) {
        const trace_t *t = &traces[i];
        for (int c = 0; c < t->nconns; c++) {
            for (int d = 0; d < 2; d++) {
                size_t n;
                trace_unit_t *u = units_of(t, c, (trace_dir_t)d, files[i].kind, &n);
                check_notes(t, c, (trace_dir_t)d, u, n);
                free(u);
            }
        }
        if (files[i].kind == K_SESSION)
            check_conversation(t, 0, TRACE_C2S, 1);
        if (files[i].kind == K_PROXY) {
            check_conversation(t, 1, TRACE_C2S, 1);
            check_conversation(t, 0, TRACE_S2C, 1);
        }
    }
}

/* Remote errors come back as kException (code 5). */
static void test_error_traces_have_exceptions(void **state)
{
    for (size_t i = 0; i < NFILES; i++) {
        if (!strstr(files[i].file, "-error-"))
            continue;
        size_t n, nexc = 0;
        trace_unit_t *u = units_of(&traces[i], 0, TRACE_S2C, K_SESSION, &n);
        for (size_t k = 0; k < n; k++)
            nexc += u[k].code == RPC_EXCEPTION;
        free(u);
        assert_true(nexc >= 2); /* the missing download and the missing load_module */
    }
}

/* The proxy passes the session through unchanged: after the handshakes,
 * what the client sent is what the server received, and back. */
static void test_proxy_passthrough(void **state)
{
    for (size_t i = 0; i < NFILES; i++) {
        if (files[i].kind != K_PROXY)
            continue;
        const trace_t *t = &traces[i];
        for (int d = 0; d < 2; d++) {
            size_t nc, ns;
            trace_unit_t *uc = units_of(t, 1, (trace_dir_t)d, K_PROXY, &nc);
            trace_unit_t *us = units_of(t, 0, (trace_dir_t)!d, K_PROXY, &ns);
            const trace_stream_t *sc = trace_stream(t, 1, (trace_dir_t)d);
            const trace_stream_t *ss = trace_stream(t, 0, (trace_dir_t)!d);
            assert_int_equal(sc->len - uc[0].len, ss->len - us[0].len);
            assert_memory_equal(sc->data + uc[0].len, ss->data + us[0].len, sc->len - uc[0].len);
            free(uc);
            free(us);
        }
    }
}

/* ---- truncation --------------------------------------------------------- */

static void test_truncation(void **state)
{
    for (size_t i = 0; i < NFILES; i++) {
        const trace_t *t = &traces[i];
        int want = strstr(files[i].file, "-module-") || strstr(files[i].file, "-graph-");
        for (int c = 0; c < t->nconns; c++) {
            for (int d = 0; d < 2; d++) {
                const trace_stream_t *s = trace_stream(t, c, (trace_dir_t)d);
                int here = want && c == 0 && d == TRACE_C2S;
                assert_int_equal(s->ntrunc, here ? 1 : 0);
                if (!here)
                    continue;
                /* The first 1024 bytes of the upload record are kept. */
                assert_int_equal(s->trunc[0].from, 1117);
                assert_true(s->trunc[0].to > s->trunc[0].from + 8192 - 1024 - 256);
                assert_true(trace_is_truncated(s, 1117, 1));
                assert_false(trace_is_truncated(s, 1116, 1));
                assert_true(trace_is_truncated(s, 1000, 200));
                assert_false(trace_is_truncated(s, s->trunc[0].to, 1));
                for (size_t k = s->trunc[0].from; k < s->trunc[0].to; k++)
                    assert_int_equal(s->data[k], TRACE_PLACEHOLDER);
            }
        }
    }
}

/* ---- synthetic input ---------------------------------------------------- */

static const char good[] =
    "# TVM RPC raw byte trace: tiny\n"
    "# format: tvm-rpc-rawtrace/1 (x)\n"
    "#   c0: opened during step S01; role client: test\n"
    "#   S01  one\n"
    "#        starts at C>S c0@0; c0 stream offsets C>S@0 S>C@0 (connection opened in this step)\n"
    "#   S02  two\n"
    "#        no bytes; TCP close of c0\n"
    "\n"
    "@step S01 t=0.0 one\n"
    "@open c0 t=0.1\n"
    "# C>S c0 @0: note\n"
    "C>S c0 off=0 len=6 t=0.2 bursts=2\n"
    "  0102\n"
    "!TRUNCATED omitted=2 from=2 to=4 sha256_of_record=00\n"
    "  0506\n"
    "S>C c0 off=0 len=1 t=0.3\n"
    "  ff\n"
    "@step S02 t=1.0 two\n"
    "@eof c0 C>S total=6 t=1.1\n"
    "@eof c0 S>C total=1 t=1.2\n";

static void test_synthetic_good(void **state)
{
    trace_t t;
    char err[256] = "";
    if (trace_parse(&t, good, strlen(good), err, sizeof(err)) < 0)
        fail_msg("%s", err);
    assert_string_equal(t.name, "tiny");
    assert_string_equal(t.format, "tvm-rpc-rawtrace/1");
    assert_int_equal(t.nconns, 1);
    assert_int_equal(t.nsteps, 2);
    const trace_stream_t *s = trace_stream(&t, 0, TRACE_C2S);
    static const uint8_t want[] = {1, 2, TRACE_PLACEHOLDER, TRACE_PLACEHOLDER, 5, 6};
    assert_int_equal(s->len, 6);
    assert_memory_equal(s->data, want, 6);
    assert_int_equal(s->ntrunc, 1);
    assert_int_equal(s->trunc[0].from, 2);
    assert_int_equal(s->trunc[0].to, 4);
    assert_int_equal(t.nnotes, 1);
    assert_int_equal(t.events[2].bursts, 2);
    assert_int_equal(t.steps[1].off[0][TRACE_C2S], 6);
    assert_int_equal(t.steps[1].off[0][TRACE_S2C], 1);
    assert_int_equal(t.steps[1].hdr_close_conn, 0);
    assert_null(trace_stream(&t, 1, TRACE_C2S));
    check_contiguous(&t);
    check_steps(&t);
    trace_free(&t);
    trace_free(&t); /* freeing twice is harmless */
}

/* Replace the first occurrence of from in good by to. */
static char *mutate(const char *from, const char *to)
{
    const char *at = strstr(good, from);
    assert_non_null(at);
    size_t n = strlen(good) - strlen(from) + strlen(to) + 1;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%.*s%s%s", (int)(at - good), good, to, at + strlen(from));
    return s;
}

static void test_synthetic_bad(void **state)
{
    static const char *const cases[][2] = {
        {"off=0 len=6", "off=1 len=6"},   /* gap */
        {"off=0 len=6", "off=0 len=7"},   /* record shorter than len */
        {"off=0 len=6", "off=0 len=5"},   /* record longer than len */
        {"  0102\n", "  010\n"},          /* odd digits */
        {"  0102\n", "  01zz\n"},         /* bad digit */
        {"from=2 to=4", "from=3 to=5"},   /* truncation not at the stream end */
        {"from=2 to=4", "from=2 to=5"},   /* to != from + omitted */
        {"omitted=2", "omitted=9"},       /* omits more than the record */
        {"total=6", "total=5"},           /* @eof total wrong */
        {"@open c0", "@open c99"},        /* connection number out of range */
        {"@open c0 t=0.1\n", ""},         /* data before @open */
        {"@step S02", "@step S03"},       /* step numbering */
        {"#   S02  two", "#   S03  two"}, /* header step numbering */
        {"S>C c0 off=0 len=1", "X>Y c0 off=0 len=1"},
        {"S>C c0 off=0 len=1", "S>C c0 len=1"},
        {"S>C c0 off=0 len=1", "S>C c0 off=0 len=99999999999999999999"},
        {"@eof c0 S>C", "@eof c0 S>C total=1 t=1.2\n@eof c0 S>C"},
        {"  ff\n", "  ff\n  ff\n"},
        {"@step S01", "@stop S01"},
        {"c0 stream offsets", "c1 stream offsets"},
        {"TCP close of c0", "TCP close of cX"},
        {"\n@step S01", "\n  0102\n@step S01"},
        {"@step S02 t=1.0 two\n", "@step S02 t=1.0 two\n  ab\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *s = mutate(cases[i][0], cases[i][1]);
        trace_t t;
        char err[256] = "";
        if (trace_parse(&t, s, strlen(s), err, sizeof(err)) == 0)
            fail_msg("case %zu (%s -> %s) parsed", i, cases[i][0], cases[i][1]);
        assert_true(strncmp(err, "line ", 5) == 0);
        trace_free(&t);
        free(s);
    }
    trace_t t;
    char err[64];
    assert_int_equal(trace_parse(&t, "", 0, err, sizeof(err)), -1);
    assert_int_equal(trace_parse(&t, "\0\n", 2, err, sizeof(err)), -1);
    assert_int_equal(trace_load(&t, "/nonexistent/trace.txt", err, sizeof(err)), -1);
}

/* Every prefix and many byte flips of a real trace either parse or fail
 * cleanly (run under the sanitizers, this is a small fuzz test). */
static void test_damaged_real_trace(void **state)
{
    char path[PATH_MAX], err[256];
    assert_int_equal(trace_path("v0.26-tracker.txt", path, sizeof(path), err, sizeof(err)), 0);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char text[65536];
    size_t len = fread(text, 1, sizeof(text), f);
    fclose(f);
    assert_true(len > 1000 && len < sizeof(text));
    trace_t t;
    for (size_t n = 0; n <= len; n += 7) {
        if (trace_parse(&t, text, n, err, sizeof(err)) == 0)
            trace_free(&t);
    }
    static char copy[65536];
    uint32_t x = 12345;
    for (int i = 0; i < 3000; i++) {
        memcpy(copy, text, len);
        for (int k = 0; k < 3; k++) {
            x = x * 1103515245u + 12345u;
            copy[(x >> 8) % len] = (char)(x >> 24);
        }
        if (trace_parse(&t, copy, len, err, sizeof(err)) == 0)
            trace_free(&t);
    }
}

static void test_split_units_bad(void **state)
{
    trace_unit_t *u;
    size_t n;
    char err[128];
    uint8_t frame[] = {0x71, 0xf2, 0x02, 0x00, 5, 0, 0, 0, '[', '6', ']'};
    trace_stream_t s = {.data = frame, .len = sizeof(frame)};
    assert_int_equal(trace_split_units(&s, TRACE_PROTO_TRACKER, TRACE_C2S, &u, &n, err, 128), -1);
    frame[4] = 3;
    assert_int_equal(trace_split_units(&s, TRACE_PROTO_TRACKER, TRACE_C2S, &u, &n, err, 128), 0);
    assert_int_equal(n, 2);
    assert_int_equal(u[1].off, 4);
    assert_int_equal(u[1].nbody, 3);
    free(u);
    frame[7] = 0x80; /* negative length */
    assert_int_equal(trace_split_units(&s, TRACE_PROTO_TRACKER, TRACE_C2S, &u, &n, err, 128), -1);
    uint8_t rpc[] = {0x71, 0xf2, 0x0f, 0x00, 0xff, 0xff, 0xff, 0x7f, 'c'};
    trace_stream_t r = {.data = rpc, .len = sizeof(rpc)};
    assert_int_equal(trace_split_units(&r, TRACE_PROTO_RPC, TRACE_C2S, &u, &n, err, 128), -1);
    /* A mismatch status carries no key. */
    r.len = 4;
    rpc[0] = 0x73;
    assert_int_equal(trace_split_units(&r, TRACE_PROTO_RPC, TRACE_S2C, &u, &n, err, 128), 0);
    assert_int_equal(n, 1);
    free(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_file_in_dir_parses),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_offsets_contiguous),
        cmocka_unit_test(test_step_table),
        cmocka_unit_test(test_connections),
        cmocka_unit_test(test_handshakes),
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_error_traces_have_exceptions),
        cmocka_unit_test(test_proxy_passthrough),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_damaged_real_trace),
    };
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(test_spec_dir_found),
        cmocka_unit_test(test_synthetic_good),
        cmocka_unit_test(test_synthetic_bad),
        cmocka_unit_test(test_split_units_bad),
    };
    int failed = cmocka_run_group_tests_name("trace_plain", plain, NULL, NULL);
    return failed + cmocka_run_group_tests_name("trace_real", tests, setup_all, teardown_all);
}
