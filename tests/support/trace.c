/* trace: parser for tvm-rpc-rawtrace/1 files (see trace.h).
 *
 * One pass over the lines. Every number read from the file is bounded
 * before it sizes anything, and every structural promise of the format
 * (contiguous offsets, exact record lengths, @eof totals) is checked, so a
 * damaged trace is reported with its line number instead of silently
 * producing a wrong stream. */
#include "trace.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE_MAX_LEN 4096
/* Numbers in a trace are offsets and counts; anything above this is damage. */
#define NUM_MAX ((size_t)1 << 40)

typedef struct parser {
    trace_t *t;
    int line;
    int in_header;  /* still in the leading comment block */
    int hdr_steps;  /* steps announced by the header so far */
    int body_steps; /* @step lines seen so far */
    int cur_step;   /* body step in effect, -1 before the first */
    int rec_active; /* hex lines may follow */
    int rec_conn;
    trace_dir_t rec_dir;
    size_t rec_len, rec_got;
    char *err;
    size_t errlen;
} parser_t;

static int perr(parser_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int perr(parser_t *p, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (p->err && p->errlen)
        snprintf(p->err, p->errlen, "line %d: %s", p->line, msg);
    return -1;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Texts longer than a field are cut: they are only for messages. */
static void copy_text(char *dst, const char *src)
{
    size_t n = strnlen(src, TRACE_TEXT_LEN - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ---- token readers: advance *s on success, leave it alone on failure ---- */

static void skip_sp(const char **s)
{
    while (**s == ' ')
        (*s)++;
}

static int lit(const char **s, const char *w)
{
    size_t n = strlen(w);
    if (strncmp(*s, w, n) != 0)
        return 0;
    *s += n;
    return 1;
}

static int num(const char **s, size_t *v)
{
    const char *q = *s;
    size_t x = 0;
    if (*q < '0' || *q > '9')
        return 0;
    while (*q >= '0' && *q <= '9') {
        x = x * 10 + (size_t)(*q - '0');
        if (x > NUM_MAX)
            return 0;
        q++;
    }
    *s = q;
    *v = x;
    return 1;
}

static int conn_tok(const char **s, int *c)
{
    const char *q = *s;
    size_t v;
    if (!lit(&q, "c") || !num(&q, &v) || v >= TRACE_MAX_CONNS)
        return 0;
    *s = q;
    *c = (int)v;
    return 1;
}

static int dir_tok(const char **s, trace_dir_t *d)
{
    if (lit(s, "C>S")) {
        *d = TRACE_C2S;
        return 1;
    }
    if (lit(s, "S>C")) {
        *d = TRACE_S2C;
        return 1;
    }
    return 0;
}

static int step_tok(const char **s, int *n)
{
    const char *q = *s;
    size_t v;
    if (!lit(&q, "S") || !num(&q, &v) || v == 0 || v > 100000)
        return 0;
    *s = q;
    *n = (int)v;
    return 1;
}

static int role_word(const char **s, trace_role_t *r)
{
    if (lit(s, "server")) {
        *r = TRACE_ROLE_SERVER;
        return 1;
    }
    if (lit(s, "client")) {
        *r = TRACE_ROLE_CLIENT;
        return 1;
    }
    return 0;
}

/* "key=" followed by a number, as one space-separated token. */
static int kv_num(const char **s, const char *key, size_t *v)
{
    const char *q = *s;
    if (!lit(&q, key) || !lit(&q, "=") || !num(&q, v) || (*q != ' ' && *q != '\0'))
        return 0;
    *s = q;
    return 1;
}

/* Skip "t=<anything without spaces>" if present: timestamps are not used. */
static int skip_time(const char **s)
{
    if (!lit(s, "t="))
        return 0;
    while (**s && **s != ' ')
        (*s)++;
    return 1;
}

/* ---- growable arrays ---------------------------------------------------- */

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    void *n = realloc(*arr, ncap * elem);
    if (!n)
        return -1;
    *arr = n;
    *cap = ncap;
    return 0;
}

static int stream_append(trace_stream_t *s, const uint8_t *b, size_t n, int fill)
{
    if (n > TRACE_MAX_STREAM - s->len)
        return -1;
    if (grow((void **)&s->data, &s->cap, s->len + n, 1) < 0)
        return -1;
    if (fill)
        memset(s->data + s->len, TRACE_PLACEHOLDER, n);
    else if (n)
        memcpy(s->data + s->len, b, n);
    s->len += n;
    return 0;
}

static trace_event_t *push_event(parser_t *p, trace_ev_kind_t kind)
{
    trace_t *t = p->t;
    if (grow((void **)&t->events, &t->events_cap, t->nevents + 1, sizeof(*t->events)) < 0)
        return NULL;
    trace_event_t *e = &t->events[t->nevents++];
    memset(e, 0, sizeof(*e));
    e->kind = kind;
    e->step = p->cur_step;
    e->line = p->line;
    e->bursts = 1;
    return e;
}

/* Make room for step number n (1-based) and return it. */
static trace_step_t *step_slot(parser_t *p, int n)
{
    trace_t *t = p->t;
    if (n > t->nsteps) {
        trace_step_t *ns = realloc(t->steps, (size_t)n * sizeof(*ns));
        if (!ns)
            return NULL;
        memset(ns + t->nsteps, 0, (size_t)(n - t->nsteps) * sizeof(*ns));
        for (int i = t->nsteps; i < n; i++)
            ns[i].hdr_close_conn = -1;
        t->steps = ns;
        t->nsteps = n;
    }
    return &t->steps[n - 1];
}

/* ---- records ------------------------------------------------------------ */

static int finish_record(parser_t *p)
{
    if (!p->rec_active)
        return 0;
    p->rec_active = 0;
    if (p->rec_got != p->rec_len)
        return perr(p, "record of c%d %s has %zu of its %zu bytes", p->rec_conn,
                    trace_dir_name(p->rec_dir), p->rec_got, p->rec_len);
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int on_hex(parser_t *p, const char *s, size_t n)
{
    if (!p->rec_active)
        return perr(p, "hex line outside a record");
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\r'))
        n--;
    if (n == 0 || n % 2)
        return perr(p, "hex line with %zu digits", n);
    if (n / 2 > p->rec_len - p->rec_got)
        return perr(p, "record longer than its len=%zu", p->rec_len);
    trace_stream_t *st = &p->t->conns[p->rec_conn].dir[p->rec_dir];
    size_t base = st->len;
    if (stream_append(st, NULL, n / 2, 1) < 0)
        return perr(p, "out of memory or stream too large");
    for (size_t i = 0; i < n; i += 2) {
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return perr(p, "bad hex digit near column %zu", i + 3);
        st->data[base + i / 2] = (uint8_t)(hi << 4 | lo);
    }
    p->rec_got += n / 2;
    return 0;
}

/* !TRUNCATED omitted=M from=A to=B sha256_of_record=H */
static int on_truncated(parser_t *p, const char *s)
{
    size_t m, a, b;
    if (!p->rec_active)
        return perr(p, "!TRUNCATED outside a record");
    if (!lit(&s, "!TRUNCATED ") || !kv_num(&s, "omitted", &m) || !lit(&s, " ") ||
        !kv_num(&s, "from", &a) || !lit(&s, " ") || !kv_num(&s, "to", &b))
        return perr(p, "malformed !TRUNCATED line");
    trace_stream_t *st = &p->t->conns[p->rec_conn].dir[p->rec_dir];
    if (m == 0 || a != st->len || b != a + m)
        return perr(p,
                    "!TRUNCATED range [%zu, %zu) of %zu bytes does not continue the stream at %zu",
                    a, b, m, st->len);
    if (m > p->rec_len - p->rec_got)
        return perr(p, "!TRUNCATED omits more than the record holds");
    if (grow((void **)&st->trunc, &st->trunc_cap, st->ntrunc + 1, sizeof(*st->trunc)) < 0 ||
        stream_append(st, NULL, m, 1) < 0)
        return perr(p, "out of memory or stream too large");
    st->trunc[st->ntrunc].from = a;
    st->trunc[st->ntrunc].to = b;
    st->ntrunc++;
    p->rec_got += m;
    return 0;
}

static int opened_conn(parser_t *p, int c)
{
    if (!p->t->conns[c].opened)
        return perr(p, "c%d used before its @open", c);
    return 0;
}

/* DIR cN off=O len=L t=T [bursts=K] */
static int on_record(parser_t *p, const char *s)
{
    trace_dir_t d;
    int c;
    size_t off = 0, len = 0, bursts = 1;
    int have_off = 0, have_len = 0;
    if (!dir_tok(&s, &d) || !lit(&s, " ") || !conn_tok(&s, &c))
        return perr(p, "malformed record line");
    for (skip_sp(&s); *s; skip_sp(&s)) {
        if (kv_num(&s, "off", &off))
            have_off = 1;
        else if (kv_num(&s, "len", &len))
            have_len = 1;
        else if (!kv_num(&s, "bursts", &bursts) && !skip_time(&s))
            return perr(p, "unexpected field in record line: %.40s", s);
    }
    if (!have_off || !have_len)
        return perr(p, "record line without off= and len=");
    if (opened_conn(p, c) < 0)
        return -1;
    trace_stream_t *st = &p->t->conns[c].dir[d];
    if (st->has_eof)
        return perr(p, "record on c%d %s after its @eof", c, trace_dir_name(d));
    if (off != st->len)
        return perr(p, "c%d %s off=%zu but the stream holds %zu bytes", c, trace_dir_name(d), off,
                    st->len);
    if (len > TRACE_MAX_STREAM)
        return perr(p, "record len=%zu too large", len);
    trace_event_t *e = push_event(p, TRACE_EV_DATA);
    if (!e)
        return perr(p, "out of memory");
    e->conn = c;
    e->dir = d;
    e->off = off;
    e->len = len;
    e->bursts = bursts > INT_MAX ? INT_MAX : (int)bursts;
    p->rec_active = 1;
    p->rec_conn = c;
    p->rec_dir = d;
    p->rec_len = len;
    p->rec_got = 0;
    return 0;
}

/* ---- @ lines ------------------------------------------------------------ */

static int on_open(parser_t *p, const char *s)
{
    int c;
    if (!lit(&s, "@open ") || !conn_tok(&s, &c))
        return perr(p, "malformed @open line");
    trace_conn_t *cn = &p->t->conns[c];
    if (cn->opened)
        return perr(p, "c%d opened twice", c);
    cn->opened = 1;
    cn->open_step = p->cur_step;
    if (c + 1 > p->t->nconns)
        p->t->nconns = c + 1;
    trace_event_t *e = push_event(p, TRACE_EV_OPEN);
    if (!e)
        return perr(p, "out of memory");
    e->conn = c;
    return 0;
}

static int on_step(parser_t *p, const char *s)
{
    int n;
    if (!lit(&s, "@step ") || !step_tok(&s, &n) || !lit(&s, " "))
        return perr(p, "malformed @step line");
    if (n != p->body_steps + 1)
        return perr(p, "step S%02d follows S%02d", n, p->body_steps);
    skip_sp(&s);
    if (skip_time(&s))
        skip_sp(&s);
    trace_step_t *st = step_slot(p, n);
    if (!st)
        return perr(p, "out of memory");
    p->body_steps = n;
    p->cur_step = n - 1;
    st->in_body = 1;
    copy_text(st->body_text, s);
    for (int c = 0; c < TRACE_MAX_CONNS; c++)
        for (int d = 0; d < 2; d++)
            st->off[c][d] = p->t->conns[c].dir[d].len;
    st->first_event = p->t->nevents;
    return push_event(p, TRACE_EV_STEP) ? 0 : perr(p, "out of memory");
}

/* @eof cN DIR total=B t=T */
static int on_eof(parser_t *p, const char *s)
{
    int c;
    trace_dir_t d;
    size_t total;
    if (!lit(&s, "@eof ") || !conn_tok(&s, &c) || !lit(&s, " ") || !dir_tok(&s, &d) ||
        !lit(&s, " ") || !kv_num(&s, "total", &total))
        return perr(p, "malformed @eof line");
    if (opened_conn(p, c) < 0)
        return -1;
    trace_stream_t *st = &p->t->conns[c].dir[d];
    if (st->has_eof)
        return perr(p, "second @eof for c%d %s", c, trace_dir_name(d));
    if (total != st->len)
        return perr(p, "@eof c%d %s total=%zu but the stream holds %zu bytes", c, trace_dir_name(d),
                    total, st->len);
    st->has_eof = 1;
    trace_event_t *e = push_event(p, TRACE_EV_EOF);
    if (!e)
        return perr(p, "out of memory");
    e->conn = c;
    e->dir = d;
    e->off = total;
    return 0;
}

/* ---- comments ----------------------------------------------------------- */

/* "# DIR cN @O: text" in the body. Other comments are ignored. */
static int on_body_comment(parser_t *p, const char *s)
{
    trace_dir_t d;
    int c;
    size_t off;
    if (!lit(&s, "# ") || !dir_tok(&s, &d) || !lit(&s, " ") || !conn_tok(&s, &c) ||
        !lit(&s, " @") || !num(&s, &off) || !lit(&s, ":"))
        return 0;
    trace_t *t = p->t;
    if (grow((void **)&t->notes, &t->notes_cap, t->nnotes + 1, sizeof(*t->notes)) < 0)
        return perr(p, "out of memory");
    trace_note_t *n = &t->notes[t->nnotes++];
    n->conn = c;
    n->dir = d;
    n->off = off;
    skip_sp(&s);
    copy_text(n->text, s);
    return 0;
}

/* "cN: opened during step SNN; role ROLE: description" */
static int hdr_conn(parser_t *p, const char *s)
{
    int c, n;
    trace_role_t r;
    if (!conn_tok(&s, &c) || !lit(&s, ": opened during step ") || !step_tok(&s, &n) ||
        !lit(&s, "; role ") || !role_word(&s, &r) || !lit(&s, ":"))
        return perr(p, "malformed connection line in the header");
    trace_conn_t *cn = &p->t->conns[c];
    if (cn->hdr_present)
        return perr(p, "c%d listed twice in the header", c);
    cn->hdr_present = 1;
    cn->hdr_open_step = n - 1;
    cn->role = r;
    skip_sp(&s);
    copy_text(cn->role_text, s);
    if (c + 1 > p->t->nconns)
        p->t->nconns = c + 1;
    return 0;
}

static int hdr_step(parser_t *p, const char *s)
{
    int n;
    if (!step_tok(&s, &n) || *s != ' ')
        return perr(p, "malformed step line in the header");
    if (n != p->hdr_steps + 1)
        return perr(p, "header step S%02d follows S%02d", n, p->hdr_steps);
    trace_step_t *st = step_slot(p, n);
    if (!st)
        return perr(p, "out of memory");
    p->hdr_steps = n;
    st->in_header = 1;
    skip_sp(&s);
    copy_text(st->hdr_text, s);
    return 0;
}

/* "also cN (role) from DIR@X" */
static int hdr_also(parser_t *p, trace_step_t *st, const char **s)
{
    trace_also_t a;
    if (st->nalso >= TRACE_MAX_ALSO)
        return perr(p, "too many 'also' parts");
    if (!lit(s, "also ") || !conn_tok(s, &a.conn) || !lit(s, " (") || !role_word(s, &a.role) ||
        !lit(s, ") from ") || !dir_tok(s, &a.dir) || !lit(s, "@") || !num(s, &a.off))
        return perr(p, "malformed 'also' part: %.60s", *s);
    st->also[st->nalso++] = a;
    return 0;
}

/* "starts at DIR cN@X; cN stream offsets C>S@A S>C@B [(connection opened in
 * this step)][; also ...]*" */
static int hdr_start(parser_t *p, trace_step_t *st, const char *s)
{
    int c2;
    if (!lit(&s, "starts at ") || !dir_tok(&s, &st->hdr_dir) || !lit(&s, " ") ||
        !conn_tok(&s, &st->hdr_conn) || !lit(&s, "@") || !num(&s, &st->hdr_start) ||
        !lit(&s, "; ") || !conn_tok(&s, &c2) || !lit(&s, " stream offsets C>S@") ||
        !num(&s, &st->hdr_off[TRACE_C2S]) || !lit(&s, " S>C@") || !num(&s, &st->hdr_off[TRACE_S2C]))
        return perr(p, "malformed 'starts at' line");
    if (c2 != st->hdr_conn)
        return perr(p, "'starts at' names c%d but gives offsets of c%d", st->hdr_conn, c2);
    st->hdr_has_start = 1;
    if (lit(&s, " (connection opened in this step)"))
        st->hdr_opened = 1;
    while (lit(&s, "; "))
        if (hdr_also(p, st, &s) < 0)
            return -1;
    if (*s)
        return perr(p, "unexpected text after step offsets: %.60s", s);
    return 0;
}

/* "no bytes; TCP close of cN" or "no bytes on any relayed connection ..." */
static int hdr_no_bytes(parser_t *p, trace_step_t *st, const char *s)
{
    st->hdr_no_bytes = 1;
    if (lit(&s, "no bytes; TCP close of ")) {
        int c;
        if (!conn_tok(&s, &c))
            return perr(p, "malformed 'TCP close of' line");
        st->hdr_close_conn = c;
    }
    return 0;
}

static int on_header_comment(parser_t *p, const char *s)
{
    trace_t *t = p->t;
    s++; /* the '#' */
    if (lit(&s, " TVM RPC raw byte trace: ")) {
        copy_text(t->name, s);
        return 0;
    }
    if (lit(&s, " format: ")) {
        size_t n = strcspn(s, " ");
        snprintf(t->format, sizeof(t->format), "%.*s", (int)(n < 200 ? n : 200), s);
        return 0;
    }
    if (lit(&s, " protocol generation: ")) {
        copy_text(t->generation, s);
        return 0;
    }
    skip_sp(&s);
    if (s[0] == 'c' && s[1] >= '0' && s[1] <= '9')
        return hdr_conn(p, s);
    if (s[0] == 'S' && s[1] >= '0' && s[1] <= '9')
        return hdr_step(p, s);
    int is_start = strncmp(s, "starts at ", 10) == 0;
    int is_none = strncmp(s, "no bytes", 8) == 0;
    if (!is_start && !is_none)
        return 0; /* prose */
    if (p->hdr_steps == 0)
        return perr(p, "step detail before any step line");
    trace_step_t *st = &t->steps[p->hdr_steps - 1];
    if (st->hdr_has_start || st->hdr_no_bytes)
        return perr(p, "second detail line for header step S%02d", p->hdr_steps);
    return is_start ? hdr_start(p, st, s) : hdr_no_bytes(p, st, s);
}

/* ---- lines -------------------------------------------------------------- */

static int on_line(parser_t *p, const char *raw, size_t n)
{
    while (n && raw[n - 1] == '\r')
        n--;
    if (n >= 2 && raw[0] == ' ' && raw[1] == ' ' && p->rec_active)
        return on_hex(p, raw + 2, n - 2);
    if (n == 0) {
        p->in_header = 0;
        return 0;
    }
    char s[LINE_MAX_LEN];
    if (memchr(raw, '\0', n))
        return perr(p, "NUL byte in line");
    if (n >= sizeof(s)) {
        if (raw[0] != '#')
            return perr(p, "line of %zu characters", n);
        n = sizeof(s) - 1; /* long comments only need their start */
    }
    memcpy(s, raw, n);
    s[n] = '\0';
    if (s[0] == '!')
        return on_truncated(p, s);
    if (finish_record(p) < 0)
        return -1;
    if (s[0] == '#')
        return p->in_header ? on_header_comment(p, s) : on_body_comment(p, s);
    p->in_header = 0;
    if (s[0] == '@') {
        if (strncmp(s, "@open ", 6) == 0)
            return on_open(p, s);
        if (strncmp(s, "@step ", 6) == 0)
            return on_step(p, s);
        if (strncmp(s, "@eof ", 5) == 0)
            return on_eof(p, s);
        return perr(p, "unknown @ line");
    }
    if (strncmp(s, "C>S ", 4) == 0 || strncmp(s, "S>C ", 4) == 0)
        return on_record(p, s);
    if (s[0] == ' ')
        return perr(p, "hex line outside a record");
    return perr(p, "unrecognised line: %.40s", s);
}

int trace_parse(trace_t *t, const char *text, size_t len, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    parser_t p = {.t = t, .in_header = 1, .cur_step = -1, .err = err, .errlen = errlen};
    for (int c = 0; c < TRACE_MAX_CONNS; c++)
        t->conns[c].open_step = t->conns[c].hdr_open_step = -1;
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
        p.line++;
        if (on_line(&p, text + i, n) < 0)
            goto fail;
        i += n + (nl ? 1 : 0);
    }
    p.line++;
    if (finish_record(&p) < 0)
        goto fail;
    if (t->nsteps == 0) {
        perr(&p, "no steps");
        goto fail;
    }
    return 0;
fail:
    trace_free(t);
    return -1;
}

int trace_load(trace_t *t, const char *path, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    int bad = 0;
    for (;;) {
        if (grow((void **)&text, &cap, len + 65536, 1) < 0 || len > TRACE_MAX_STREAM * 4) {
            bad = 1;
            break;
        }
        size_t r = fread(text + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    bad |= ferror(f);
    fclose(f);
    if (bad) {
        free(text);
        set_err(err, errlen, "%s: read error or file too large", path);
        return -1;
    }
    char msg[512];
    int rc = trace_parse(t, text, len, msg, sizeof(msg));
    free(text);
    if (rc < 0)
        set_err(err, errlen, "%s: %s", path, msg);
    return rc;
}

void trace_free(trace_t *t)
{
    for (int c = 0; c < TRACE_MAX_CONNS; c++) {
        for (int d = 0; d < 2; d++) {
            free(t->conns[c].dir[d].data);
            free(t->conns[c].dir[d].trunc);
        }
    }
    free(t->steps);
    free(t->events);
    free(t->notes);
    memset(t, 0, sizeof(*t));
}

const trace_stream_t *trace_stream(const trace_t *t, int conn, trace_dir_t dir)
{
    if (conn < 0 || conn >= t->nconns || (dir != TRACE_C2S && dir != TRACE_S2C))
        return NULL;
    return &t->conns[conn].dir[dir];
}

int trace_is_truncated(const trace_stream_t *s, size_t off, size_t n)
{
    for (size_t i = 0; i < s->ntrunc; i++)
        if (off < s->trunc[i].to && s->trunc[i].from < off + n)
            return 1;
    return 0;
}

const char *trace_dir_name(trace_dir_t dir)
{
    return dir == TRACE_C2S ? "C>S" : "S>C";
}

/* ---- finding the spec directory ----------------------------------------- */

static int spec_ok(const char *dir)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/traces/README.md", dir);
    return n > 0 && (size_t)n < sizeof(path) && access(path, R_OK) == 0;
}

/* Try <d>/shared/spec for d = start and each of its parents. */
static int search_up(const char *start, char *out, size_t outlen)
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof(dir), "%s", start) >= (int)sizeof(dir))
        return -1;
    for (;;) {
        char cand[PATH_MAX];
        int n = snprintf(cand, sizeof(cand), "%s/shared/spec", dir[0] ? dir : "");
        if (n > 0 && (size_t)n < sizeof(cand) && spec_ok(cand)) {
            char *real = realpath(cand, NULL);
            int fits = snprintf(out, outlen, "%s", real ? real : cand) < (int)outlen;
            free(real);
            return fits ? 0 : -1;
        }
        char *slash = strrchr(dir, '/');
        if (!slash || dir[0] == '\0')
            return -1;
        *slash = '\0';
    }
}

int trace_spec_dir(char *out, size_t outlen, char *err, size_t errlen)
{
    const char *env = getenv("TVMRPC_SPEC_DIR");
    if (env && *env) {
        /* An explicit setting that is wrong is a configuration error, not a
         * reason to quietly test against some other copy. */
        if (spec_ok(env) && snprintf(out, outlen, "%s", env) < (int)outlen)
            return 0;
        set_err(err, errlen, "TVMRPC_SPEC_DIR=%s has no traces/README.md", env);
        return -1;
    }
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) && search_up(cwd, out, outlen) == 0)
        return 0;
    /* CMake compiles with absolute paths, so this finds the spec next to the
     * source checkout even when the build directory lives elsewhere. */
    if (__FILE__[0] == '/' && search_up(__FILE__, out, outlen) == 0)
        return 0;
    set_err(err, errlen,
            "cannot find the TVM RPC traces: set TVMRPC_SPEC_DIR, or put them at shared/spec "
            "next to the repository (tried the parents of %s and of %s)",
            getcwd(cwd, sizeof(cwd)) ? cwd : "the current directory", __FILE__);
    return -1;
}

int trace_path(const char *name, char *out, size_t outlen, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    if (trace_spec_dir(dir, sizeof(dir), err, errlen) < 0)
        return -1;
    if (snprintf(out, outlen, "%s/traces/%s", dir, name) >= (int)outlen) {
        set_err(err, errlen, "path too long");
        return -1;
    }
    return 0;
}

int trace_load_named(trace_t *t, const char *name, char *err, size_t errlen)
{
    char path[PATH_MAX];
    memset(t, 0, sizeof(*t));
    if (trace_path(name, path, sizeof(path), err, errlen) < 0)
        return -1;
    return trace_load(t, path, err, errlen);
}

/* ---- protocol units ----------------------------------------------------- */

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t ld64(const uint8_t *p)
{
    return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32;
}

typedef struct splitter {
    const trace_stream_t *s;
    trace_unit_t *units;
    size_t n, cap;
    char *err;
    size_t errlen;
} splitter_t;

static int add_unit(splitter_t *sp, trace_unit_kind_t kind, size_t off, size_t len, size_t body,
                    size_t nbody, int64_t code)
{
    if (grow((void **)&sp->units, &sp->cap, sp->n + 1, sizeof(*sp->units)) < 0) {
        set_err(sp->err, sp->errlen, "out of memory");
        return -1;
    }
    trace_unit_t u = {kind, off, len, body, nbody, code};
    sp->units[sp->n++] = u;
    return 0;
}

static int short_unit(splitter_t *sp, size_t off, const char *what)
{
    set_err(sp->err, sp->errlen, "stream of %zu bytes ends inside the %s at offset %zu", sp->s->len,
            what, off);
    return -1;
}

/* i32 length at off, then that many bytes; the unit's body is the bytes. */
static int take_sized(splitter_t *sp, size_t off, size_t hdr, size_t *len_out, const char *what)
{
    size_t left = sp->s->len - off;
    if (left < hdr + 4)
        return short_unit(sp, off, what);
    int32_t n = (int32_t)ld32(sp->s->data + off + hdr);
    if (n < 0) {
        set_err(sp->err, sp->errlen, "negative length %d in the %s at offset %zu", n, what, off);
        return -1;
    }
    if ((size_t)n > left - hdr - 4)
        return short_unit(sp, off, what);
    *len_out = (size_t)n;
    return 0;
}

static int split_tracker(splitter_t *sp)
{
    const trace_stream_t *s = sp->s;
    if (s->len == 0)
        return 0;
    if (s->len < 4)
        return short_unit(sp, 0, "tracker magic");
    if (add_unit(sp, TRACE_UNIT_MAGIC, 0, 4, 0, 0, ld32(s->data)) < 0)
        return -1;
    for (size_t off = 4; off < s->len;) {
        size_t n;
        if (take_sized(sp, off, 0, &n, "tracker frame") < 0)
            return -1;
        if (n == 0) {
            set_err(sp->err, sp->errlen, "empty tracker frame at offset %zu", off);
            return -1;
        }
        if (add_unit(sp, TRACE_UNIT_FRAME, off, 4 + n, off + 4, n, (int64_t)n) < 0)
            return -1;
        off += 4 + n;
    }
    return 0;
}

/* C>S: magic, key length, key. S>C: status, and key length + key only
 * after a success status (PROTOCOL.md §2.2). */
static int split_handshake(splitter_t *sp, trace_dir_t dir, size_t *end)
{
    const trace_stream_t *s = sp->s;
    if (s->len < 4)
        return short_unit(sp, 0, "RPC handshake");
    uint32_t word = ld32(s->data);
    size_t n = 0, len = 4;
    if (dir == TRACE_C2S || word == TRACE_RPC_MAGIC) {
        if (take_sized(sp, 0, 4, &n, "RPC handshake") < 0)
            return -1;
        len = 8 + n;
    }
    *end = len;
    return add_unit(sp, TRACE_UNIT_HANDSHAKE, 0, len, len - n, n, word);
}

static int split_rpc(splitter_t *sp, trace_dir_t dir)
{
    const trace_stream_t *s = sp->s;
    size_t off;
    if (s->len == 0)
        return 0;
    if (split_handshake(sp, dir, &off) < 0)
        return -1;
    while (off < s->len) {
        if (s->len - off < 8)
            return short_unit(sp, off, "RPC packet length");
        uint64_t n = ld64(s->data + off);
        if (n > s->len - off - 8)
            return short_unit(sp, off, "RPC packet");
        int64_t code = n >= 4 ? (int32_t)ld32(s->data + off + 8) : -1;
        if (add_unit(sp, TRACE_UNIT_PACKET, off, 8 + (size_t)n, off + 8, (size_t)n, code) < 0)
            return -1;
        off += 8 + (size_t)n;
    }
    return 0;
}

int trace_split_units(const trace_stream_t *s, trace_proto_t proto, trace_dir_t dir,
                      trace_unit_t **units, size_t *n, char *err, size_t errlen)
{
    splitter_t sp = {.s = s, .err = err, .errlen = errlen};
    *units = NULL;
    *n = 0;
    int rc = proto == TRACE_PROTO_TRACKER ? split_tracker(&sp) : split_rpc(&sp, dir);
    if (rc < 0) {
        free(sp.units);
        return -1;
    }
    *units = sp.units;
    *n = sp.n;
    return 0;
}
