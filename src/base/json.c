/* json: a recursive-descent reader and a Python-compatible writer.
 *
 * The reader is strict RFC 8259 over (text, len): the input need not be
 * NUL-terminated, so every byte access is checked against len. Raw bytes in
 * strings must be well-formed UTF-8 (TVM's peers decode each frame as UTF-8
 * before json.loads) and are stored as they come; \u escapes must form
 * valid code points.
 *
 * The writer mirrors json.dumps(v) with default arguments. Bytes of a string
 * built by the program (json_new_stringn) that are not well-formed UTF-8 have
 * no Python equivalent; each is written as \u00XX (its Latin-1 reading), so
 * output is always ASCII. */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_DEFAULT_DEPTH 64

/* ---------------------------------------------------------------- values */

static json_t *json_new(json_type_t type)
{
    json_t *v = calloc(1, sizeof(*v));
    if (v)
        v->type = type;
    return v;
}

json_t *json_new_null(void)
{
    return json_new(JSON_NULL);
}

json_t *json_new_bool(int b)
{
    json_t *v = json_new(JSON_BOOL);
    if (v)
        v->u.boolean = b != 0;
    return v;
}

json_t *json_new_int(int64_t i)
{
    json_t *v = json_new(JSON_INT);
    if (v)
        v->u.i = i;
    return v;
}

json_t *json_new_double(double d)
{
    json_t *v = json_new(JSON_DOUBLE);
    if (v)
        v->u.d = d;
    return v;
}

/* Wrap an already allocated, NUL-terminated string; frees s on failure. */
static json_t *json_string_take(char *s, size_t len)
{
    json_t *v = json_new(JSON_STRING);
    if (!v) {
        free(s);
        return NULL;
    }
    v->u.str.s = s;
    v->u.str.len = len;
    return v;
}

static char *json_memdup(const char *s, size_t len)
{
    if (len == SIZE_MAX)
        return NULL;
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    if (len)
        memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

json_t *json_new_stringn(const char *s, size_t len)
{
    if (!s && len)
        return NULL;
    char *copy = json_memdup(s, len);
    return copy ? json_string_take(copy, len) : NULL;
}

json_t *json_new_string(const char *s)
{
    return s ? json_new_stringn(s, strlen(s)) : NULL;
}

json_t *json_new_array(void)
{
    return json_new(JSON_ARRAY);
}

json_t *json_new_object(void)
{
    return json_new(JSON_OBJECT);
}

void json_free(json_t *v)
{
    if (!v)
        return;
    switch (v->type) {
    case JSON_STRING:
        free(v->u.str.s);
        break;
    case JSON_ARRAY:
        for (size_t i = 0; i < v->u.arr.n; i++)
            json_free(v->u.arr.items[i]);
        free(v->u.arr.items);
        break;
    case JSON_OBJECT:
        for (size_t i = 0; i < v->u.obj.n; i++) {
            free(v->u.obj.keys[i]);
            json_free(v->u.obj.vals[i]);
        }
        free(v->u.obj.keys);
        free(v->u.obj.vals);
        break;
    default:
        break;
    }
    free(v);
}

/* Doubling keeps pushes amortized O(1); 0 means the next size would overflow. */
static size_t json_next_cap(size_t cap, size_t elem)
{
    if (cap == 0)
        return 4;
    if (cap > SIZE_MAX / 2 / elem)
        return 0;
    return cap * 2;
}

static int json_arr_reserve(json_t *a)
{
    if (a->u.arr.n < a->u.arr.cap)
        return 0;
    size_t ncap = json_next_cap(a->u.arr.cap, sizeof(json_t *));
    if (!ncap)
        return -1;
    json_t **items = realloc(a->u.arr.items, ncap * sizeof(*items));
    if (!items)
        return -1;
    a->u.arr.items = items;
    a->u.arr.cap = ncap;
    return 0;
}

/* keys and vals grow together; cap is only raised once both have room. */
static int json_obj_reserve(json_t *o)
{
    if (o->u.obj.n < o->u.obj.cap)
        return 0;
    size_t ncap = json_next_cap(o->u.obj.cap, sizeof(json_t *));
    if (!ncap)
        return -1;
    char **keys = realloc(o->u.obj.keys, ncap * sizeof(*keys));
    if (!keys)
        return -1;
    o->u.obj.keys = keys;
    json_t **vals = realloc(o->u.obj.vals, ncap * sizeof(*vals));
    if (!vals)
        return -1;
    o->u.obj.vals = vals;
    o->u.obj.cap = ncap;
    return 0;
}

int json_array_push(json_t *arr, json_t *v)
{
    if (!v || !json_is(arr, JSON_ARRAY) || json_arr_reserve(arr) < 0) {
        json_free(v);
        return -1;
    }
    arr->u.arr.items[arr->u.arr.n++] = v;
    return 0;
}

/* Index of key in o, or o->u.obj.n when absent. Linear: objects in tracker
 * messages and graph JSON have a handful of keys. */
static size_t json_obj_find(const json_t *o, const char *key)
{
    size_t i;
    for (i = 0; i < o->u.obj.n; i++)
        if (strcmp(o->u.obj.keys[i], key) == 0)
            break;
    return i;
}

/* Set with an owned key: replace in place like a Python dict, else append. */
static int json_obj_put(json_t *o, char *key, json_t *v)
{
    size_t i = json_obj_find(o, key);
    if (i < o->u.obj.n) {
        free(key);
        json_free(o->u.obj.vals[i]);
        o->u.obj.vals[i] = v;
        return 0;
    }
    if (json_obj_reserve(o) < 0) {
        free(key);
        json_free(v);
        return -1;
    }
    o->u.obj.keys[o->u.obj.n] = key;
    o->u.obj.vals[o->u.obj.n++] = v;
    return 0;
}

int json_object_set(json_t *obj, const char *key, json_t *v)
{
    if (!v || !key || !json_is(obj, JSON_OBJECT)) {
        json_free(v);
        return -1;
    }
    char *k = json_memdup(key, strlen(key));
    if (!k) {
        json_free(v);
        return -1;
    }
    return json_obj_put(obj, k, v);
}

size_t json_array_len(const json_t *arr)
{
    return json_is(arr, JSON_ARRAY) ? arr->u.arr.n : 0;
}

json_t *json_array_get(const json_t *arr, size_t i)
{
    return i < json_array_len(arr) ? arr->u.arr.items[i] : NULL;
}

json_t *json_object_get(const json_t *obj, const char *key)
{
    if (!json_is(obj, JSON_OBJECT) || !key)
        return NULL;
    size_t i = json_obj_find(obj, key);
    return i < obj->u.obj.n ? obj->u.obj.vals[i] : NULL;
}

json_t *json_object_take(json_t *obj, const char *key)
{
    if (!json_is(obj, JSON_OBJECT) || !key)
        return NULL;
    size_t i = json_obj_find(obj, key);
    if (i == obj->u.obj.n)
        return NULL;
    json_t *v = obj->u.obj.vals[i];
    free(obj->u.obj.keys[i]);
    size_t tail = obj->u.obj.n - i - 1;
    memmove(obj->u.obj.keys + i, obj->u.obj.keys + i + 1, tail * sizeof(char *));
    memmove(obj->u.obj.vals + i, obj->u.obj.vals + i + 1, tail * sizeof(json_t *));
    obj->u.obj.n--;
    return v;
}

int json_get_int(const json_t *v, int64_t *out)
{
    int64_t i;
    if (json_is(v, JSON_INT)) {
        i = v->u.i;
    } else if (json_is(v, JSON_DOUBLE) && v->u.d == floor(v->u.d) &&
               v->u.d >= -9223372036854775808.0 && v->u.d < 9223372036854775808.0) {
        /* Both bounds are exact powers of two, so the cast cannot overflow;
         * the floor test also rules out NaN and infinities. */
        i = (int64_t)v->u.d;
    } else {
        return -1;
    }
    if (out)
        *out = i;
    return 0;
}

const char *json_get_string(const json_t *v)
{
    return json_is(v, JSON_STRING) ? v->u.str.s : NULL;
}

static json_t *json_clone_array(const json_t *v)
{
    json_t *c = json_new_array();
    for (size_t i = 0; c && i < v->u.arr.n; i++) {
        if (json_array_push(c, json_clone(v->u.arr.items[i])) < 0) {
            json_free(c);
            return NULL;
        }
    }
    return c;
}

static json_t *json_clone_object(const json_t *v)
{
    json_t *c = json_new_object();
    for (size_t i = 0; c && i < v->u.obj.n; i++) {
        if (json_object_set(c, v->u.obj.keys[i], json_clone(v->u.obj.vals[i])) < 0) {
            json_free(c);
            return NULL;
        }
    }
    return c;
}

json_t *json_clone(const json_t *v)
{
    if (!v)
        return NULL;
    switch (v->type) {
    case JSON_STRING:
        return json_new_stringn(v->u.str.s, v->u.str.len);
    case JSON_ARRAY:
        return json_clone_array(v);
    case JSON_OBJECT:
        return json_clone_object(v);
    default: {
        json_t *c = json_new(v->type);
        if (c)
            c->u = v->u;
        return c;
    }
    }
}

/* ---------------------------------------------------------------- reader */

typedef struct jp {
    const char *s;
    size_t len, pos;
    size_t depth, max_depth;
    size_t nodes, max_nodes;
    char *err;
    size_t errlen;
} jp_t;

/* Record what went wrong at the current offset. The innermost failure writes
 * the message and every caller just propagates NULL, so it is never
 * overwritten by a less precise one. */
static int jp_error(jp_t *p, const char *what)
{
    if (p->pos >= p->len)
        what = "unexpected end of input";
    if (p->errlen)
        snprintf(p->err, p->errlen, "json: %s at offset %zu", what, p->pos);
    return -1;
}

static json_t *jp_fail(jp_t *p, const char *what)
{
    jp_error(p, what);
    return NULL;
}

/* Next byte, or -1 at the end of input. */
static int jp_peek(const jp_t *p)
{
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static void jp_ws(jp_t *p)
{
    for (int c = jp_peek(p); c == ' ' || c == '\t' || c == '\n' || c == '\r'; c = jp_peek(p))
        p->pos++;
}

static int jp_isdigit(const jp_t *p)
{
    int c = jp_peek(p);
    return c >= '0' && c <= '9';
}

static json_t *jp_value(jp_t *p);

/* true, false and null. */
static json_t *jp_literal(jp_t *p, const char *word, json_t *(*make)(void))
{
    size_t n = strlen(word), have = p->len - p->pos;
    if (memcmp(p->s + p->pos, word, have < n ? have : n) != 0)
        return jp_fail(p, "invalid value");
    if (have < n) { /* a cut-off "tru" is truncation, not a bad word */
        p->pos = p->len;
        return jp_fail(p, "invalid value");
    }
    p->pos += n;
    json_t *v = make();
    return v ? v : jp_fail(p, "out of memory");
}

static json_t *jp_new_true(void)
{
    return json_new_bool(1);
}

static json_t *jp_new_false(void)
{
    return json_new_bool(0);
}

/* Digits of an integer literal (optional '-') if they fit int64. */
static int jp_to_i64(const char *s, size_t n, int64_t *out)
{
    int neg = s[0] == '-';
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t acc = 0;
    for (size_t i = (size_t)neg; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (acc > (limit - d) / 10)
            return -1;
        acc = acc * 10 + d;
    }
    if (neg)
        *out = acc == limit ? INT64_MIN : -(int64_t)acc;
    else
        *out = (int64_t)acc;
    return 0;
}

/* strtod needs a terminator the input lacks, so copy the (already validated)
 * literal first; long literals are legal and get a heap copy. */
static json_t *jp_to_double(jp_t *p, size_t start)
{
    size_t n = p->pos - start;
    char small[64], *tmp = n < sizeof(small) ? small : malloc(n + 1);
    if (!tmp)
        return jp_fail(p, "out of memory");
    memcpy(tmp, p->s + start, n);
    tmp[n] = '\0';
    double d = strtod(tmp, NULL);
    if (tmp != small)
        free(tmp);
    /* Python would read 1e400 as inf and then write "Infinity", which no
     * strict reader accepts back; refuse it here instead. */
    if (isinf(d)) {
        p->pos = start;
        return jp_fail(p, "number out of range");
    }
    json_t *v = json_new_double(d);
    return v ? v : jp_fail(p, "out of memory");
}

static int jp_digits(jp_t *p)
{
    if (!jp_isdigit(p))
        return -1;
    while (jp_isdigit(p))
        p->pos++;
    return 0;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)? */
static json_t *jp_number(jp_t *p)
{
    size_t start = p->pos;
    int integral = 1;
    if (jp_peek(p) == '-')
        p->pos++;
    if (jp_peek(p) == '0') {
        p->pos++;
        if (jp_isdigit(p))
            return jp_fail(p, "leading zero in number");
    } else if (jp_digits(p) < 0) {
        return jp_fail(p, "invalid value");
    }
    if (jp_peek(p) == '.') {
        p->pos++;
        integral = 0;
        if (jp_digits(p) < 0)
            return jp_fail(p, "expected digit after '.'");
    }
    if (jp_peek(p) == 'e' || jp_peek(p) == 'E') {
        p->pos++;
        integral = 0;
        if (jp_peek(p) == '+' || jp_peek(p) == '-')
            p->pos++;
        if (jp_digits(p) < 0)
            return jp_fail(p, "expected digit in exponent");
    }
    int64_t i;
    if (integral && jp_to_i64(p->s + start, p->pos - start, &i) == 0) {
        json_t *v = json_new_int(i);
        return v ? v : jp_fail(p, "out of memory");
    }
    return jp_to_double(p, start);
}

static size_t utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Four hex digits at s[i..i+3], all before end. -1 if not. */
static long jp_hex4(const char *s, size_t i, size_t end)
{
    long v = 0;
    if (end - i < 4)
        return -1;
    for (size_t k = i; k < i + 4; k++) {
        int c = (unsigned char)s[k], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* p->pos is on the '\' of "\uXXXX": consume the code point (and the low
 * half of a surrogate pair) and append it as UTF-8. Python keeps lone
 * surrogates, but they cannot be stored as UTF-8, so they are refused.
 * Returns NULL or what is wrong, leaving pos on the escape. */
static const char *jp_unicode(jp_t *p, size_t end, char *out, size_t *n)
{
    size_t i = p->pos + 2;
    long hi = jp_hex4(p->s, i, end), lo = -1;
    if (hi < 0)
        return "invalid \\u escape";
    uint32_t cp = (uint32_t)hi;
    i += 4;
    if (hi >= 0xd800 && hi <= 0xdbff && end - i >= 6 && p->s[i] == '\\' && p->s[i + 1] == 'u')
        lo = jp_hex4(p->s, i + 2, end);
    if (hi >= 0xd800 && hi <= 0xdfff) {
        if (hi > 0xdbff || lo < 0xdc00 || lo > 0xdfff)
            return "lone surrogate";
        cp = 0x10000 + (((uint32_t)hi - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
        i += 6;
    }
    p->pos = i;
    *n += utf8_encode(cp, out + *n);
    return NULL;
}

/* p->pos is on a '\' that the string scan proved is followed by a byte
 * before end. */
static int jp_escape(jp_t *p, size_t end, char *out, size_t *n)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    int c = (unsigned char)p->s[p->pos + 1];
    const char *hit = c ? strchr(from, c) : NULL;
    if (hit) {
        out[(*n)++] = to[hit - from];
        p->pos += 2;
        return 0;
    }
    if (c != 'u')
        return jp_error(p, "invalid escape");
    const char *why = jp_unicode(p, end, out, n);
    return why ? jp_error(p, why) : 0;
}

/* Offset of the closing quote of the string whose body starts at pos. */
static int jp_string_end(const jp_t *p, size_t *end)
{
    size_t i = p->pos;
    while (i < p->len && p->s[i] != '"')
        i += p->s[i] == '\\' ? 2 : 1;
    if (i >= p->len)
        return -1;
    *end = i;
    return 0;
}

static size_t utf8_decode(const unsigned char *p, size_t n, uint32_t *cp);

static int jp_string_body(jp_t *p, size_t end, char *out, size_t *n)
{
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20)
            return jp_error(p, "control character in string");
        if (c == '\\') {
            if (jp_escape(p, end, out, n) < 0)
                return -1;
            continue;
        }
        if (c >= 0x80) {
            /* Raw non-ASCII must be well-formed UTF-8: TVM's Python peers
             * decode every frame as UTF-8 first and drop the connection
             * otherwise, and ill-formed bytes would make two different keys
             * print the same. */
            uint32_t cp;
            size_t used = utf8_decode((const unsigned char *)p->s + p->pos, end - p->pos, &cp);
            if (used == 0)
                return jp_error(p, "invalid UTF-8 in string");
            memcpy(out + *n, p->s + p->pos, used);
            *n += used;
            p->pos += used;
            continue;
        }
        out[(*n)++] = (char)c;
        p->pos++;
    }
    return 0;
}

/* Decode a string at p->pos (on the opening quote) into a fresh buffer.
 * Escapes never expand (6 bytes of \uXXXX give at most 3 of UTF-8, 12 give
 * 4), so the raw length bounds the decoded one. */
static char *jp_string(jp_t *p, size_t *outlen)
{
    size_t end, n = 0;
    p->pos++;
    if (jp_string_end(p, &end) < 0) {
        p->pos = p->len;
        jp_error(p, "unterminated string");
        return NULL;
    }
    char *out = malloc(end - p->pos + 1);
    if (!out) {
        jp_error(p, "out of memory");
        return NULL;
    }
    if (jp_string_body(p, end, out, &n) < 0) {
        free(out);
        return NULL;
    }
    p->pos++;
    out[n] = '\0';
    *outlen = n;
    return out;
}

/* Nesting is checked on the way in so a hostile document cannot exhaust
 * the stack. */
static int jp_enter(jp_t *p)
{
    if (++p->depth > p->max_depth)
        return jp_error(p, "nesting too deep");
    p->pos++;
    jp_ws(p);
    return 0;
}

/* After an element: 1 if another follows (',' consumed), 0 at the closing
 * bracket (consumed), -1 otherwise. */
static int jp_next(jp_t *p, char close, const char *what)
{
    jp_ws(p);
    int c = jp_peek(p);
    if (c == ',' || c == close) {
        p->pos++;
        return c == ',';
    }
    return jp_error(p, what);
}

static json_t *jp_array(jp_t *p)
{
    if (jp_enter(p) < 0)
        return NULL;
    json_t *arr = json_new_array();
    if (!arr)
        return jp_fail(p, "out of memory");
    int more = 1;
    if (jp_peek(p) == ']') {
        p->pos++;
        more = 0;
    }
    while (more) {
        json_t *v = jp_value(p);
        if (!v || json_array_push(arr, v) < 0) {
            if (v)
                jp_fail(p, "out of memory");
            json_free(arr);
            return NULL;
        }
        more = jp_next(p, ']', "expected ',' or ']'");
        if (more < 0) {
            json_free(arr);
            return NULL;
        }
    }
    p->depth--;
    return arr;
}

/* One "key": value member. Keys are stored NUL-terminated, so a key with an
 * embedded \u0000 could not be told apart from its prefix; refuse it. */
static int jp_member(jp_t *p, json_t *obj)
{
    size_t klen;
    jp_ws(p);
    if (jp_peek(p) != '"')
        return jp_error(p, "expected string key");
    size_t at = p->pos;
    char *key = jp_string(p, &klen);
    if (!key)
        return -1;
    if (strlen(key) != klen) {
        free(key);
        p->pos = at;
        return jp_error(p, "NUL in object key");
    }
    jp_ws(p);
    if (jp_peek(p) != ':') {
        free(key);
        return jp_error(p, "expected ':'");
    }
    p->pos++;
    json_t *v = jp_value(p);
    if (!v) {
        free(key);
        return -1;
    }
    if (json_obj_put(obj, key, v) < 0)
        return jp_error(p, "out of memory");
    return 0;
}

static json_t *jp_object(jp_t *p)
{
    if (jp_enter(p) < 0)
        return NULL;
    json_t *obj = json_new_object();
    if (!obj)
        return jp_fail(p, "out of memory");
    int more = 1;
    if (jp_peek(p) == '}') {
        p->pos++;
        more = 0;
    }
    while (more) {
        if (jp_member(p, obj) < 0 || (more = jp_next(p, '}', "expected ',' or '}'")) < 0) {
            json_free(obj);
            return NULL;
        }
    }
    p->depth--;
    return obj;
}

static json_t *jp_value(jp_t *p)
{
    jp_ws(p);
    int c = jp_peek(p);
    if (c < 0)
        return jp_fail(p, "unexpected end of input");
    if (p->max_nodes && ++p->nodes > p->max_nodes)
        return jp_fail(p, "too many values");
    switch (c) {
    case '{':
        return jp_object(p);
    case '[':
        return jp_array(p);
    case '"': {
        size_t n;
        char *s = jp_string(p, &n);
        if (!s)
            return NULL;
        json_t *v = json_string_take(s, n);
        return v ? v : jp_fail(p, "out of memory");
    }
    case 't':
        return jp_literal(p, "true", jp_new_true);
    case 'f':
        return jp_literal(p, "false", jp_new_false);
    case 'n':
        return jp_literal(p, "null", json_new_null);
    default: /* NaN, Infinity and other junk fail here as "invalid value" */
        return jp_number(p);
    }
}

json_t *json_parse(const char *text, size_t len, const json_limits_t *lim, char *err, size_t errlen)
{
    jp_t p = {.s = text, .len = text ? len : 0, .err = err, .errlen = err ? errlen : 0};
    p.max_depth = lim && lim->max_depth ? lim->max_depth : JSON_DEFAULT_DEPTH;
    p.max_nodes = lim ? lim->max_nodes : 0;
    json_t *v = jp_value(&p);
    if (!v)
        return NULL;
    jp_ws(&p);
    if (p.pos != p.len) {
        json_free(v);
        return jp_fail(&p, "trailing characters");
    }
    return v;
}

/* ---------------------------------------------------------------- writer */

/* Decode one well-formed UTF-8 sequence (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF). Returns its length, 0 if p[0] does
 * not start one. */
static size_t utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
    uint32_t c = p[0], min;
    size_t need;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2, min = 0x80, c &= 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        need = 3, min = 0x800, c &= 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4, min = 0x10000, c &= 0x07;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (p[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return need;
}

/* \uXXXX in lowercase hex as Python writes it; astral code points become a
 * surrogate pair. */
static int jw_codepoint(buf_t *out, uint32_t cp)
{
    if (cp < 0x10000)
        return buf_printf(out, "\\u%04x", (unsigned)cp);
    cp -= 0x10000;
    return buf_printf(out, "\\u%04x\\u%04x", (unsigned)(0xd800 + (cp >> 10)),
                      (unsigned)(0xdc00 + (cp & 0x3ff)));
}

/* Write the escape for the character starting at p; returns the number of
 * input bytes it covered, 0 on failure. */
static size_t jw_escape(buf_t *out, const unsigned char *p, size_t n)
{
    static const char from[] = "\"\\\n\r\t\b\f", to[] = "\"\\nrtbf";
    const char *hit = p[0] ? strchr(from, p[0]) : NULL;
    if (hit) {
        char esc[2] = {'\\', to[hit - from]};
        return buf_append(out, esc, 2) < 0 ? 0 : 1;
    }
    uint32_t cp = p[0];
    size_t used = cp >= 0x80 ? utf8_decode(p, n, &cp) : 1;
    if (used == 0) /* not UTF-8: escape the lone byte as its Latin-1 reading */
        used = 1;
    return jw_codepoint(out, cp) < 0 ? 0 : used;
}

/* Python's ensure_ascii escapes everything outside ' '..'~' plus '"' and
 * '\\'; runs of plain bytes are copied in one go. */
static int jw_string(buf_t *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, plain = 0;
    if (buf_append_u8(out, '"') < 0)
        return -1;
    while (i < len) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\') {
            i++;
            continue;
        }
        if (buf_append(out, p + plain, i - plain) < 0)
            return -1;
        size_t used = jw_escape(out, p + i, len - i);
        if (used == 0)
            return -1;
        i += used;
        plain = i;
    }
    if (buf_append(out, p + plain, i - plain) < 0)
        return -1;
    return buf_append_u8(out, '"');
}

/* Add one unit in the last digit of a "%e" mantissa, in place. Returns 0 if
 * that would carry past the first digit (a shorter form exists then). */
static int jw_bump(char *tmp)
{
    for (char *q = strchr(tmp, 'e') - 1; q >= tmp; q--) {
        if (*q == '.')
            continue;
        if (*q != '9') {
            (*q)++;
            return 1;
        }
        *q = '0';
    }
    return 0;
}

/* Shortest decimal digits that read back as d (d finite, >= 0), closest to d
 * among those, as Python's repr picks them. The correctly rounded %e form at
 * each precision is the closest candidate; only when d is a power of two is
 * the interval that reads back as d lopsided (wider above), so the next
 * candidate up may fit when the closest, below, does not. Writes the digits
 * without trailing zeros and returns the decimal exponent of the first. */
static int jw_shortest(double d, char *digits)
{
    char tmp[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec, d);
        double back = strtod(tmp, NULL);
        if (back == d || (back < d && jw_bump(tmp) && strtod(tmp, NULL) == d))
            break;
    }
    char *e = strchr(tmp, 'e');
    size_t n = 0;
    for (const char *q = tmp; q < e; q++)
        if (*q != '.')
            digits[n++] = *q;
    while (n > 1 && digits[n - 1] == '0')
        n--;
    digits[n] = '\0';
    return atoi(e + 1);
}

/* Python's repr(float) ('r' format): positional for 1e-4 <= |d| < 1e16,
 * else d.ddde+XX; positional forms always carry a '.'. */
static int jw_double(buf_t *out, double d)
{
    static const char zeros[] = "000000000000000";
    if (isnan(d))
        return buf_append_str(out, "NaN");
    if (isinf(d))
        return buf_append_str(out, d < 0 ? "-Infinity" : "Infinity");
    char dg[24];
    int exp10 = jw_shortest(fabs(d), dg);
    int nd = (int)strlen(dg), decpt = exp10 + 1;
    const char *sign = signbit(d) ? "-" : "";
    if (decpt <= -4 || decpt > 16)
        return buf_printf(out, "%s%c%s%se%c%02d", sign, dg[0], nd > 1 ? "." : "", dg + 1,
                          exp10 < 0 ? '-' : '+', abs(exp10));
    if (decpt <= 0) /* 0.000ddd: at most three zeros here */
        return buf_printf(out, "%s0.%.*s%s", sign, -decpt, zeros, dg);
    if (decpt < nd)
        return buf_printf(out, "%s%.*s.%s", sign, decpt, dg, dg + decpt);
    /* at most 16 - 1 zeros before the ".0" */
    return buf_printf(out, "%s%s%.*s.0", sign, dg, decpt - nd, zeros);
}

int json_py_float(buf_t *out, double d)
{
    if (isnan(d))
        return buf_append_str(out, "nan");
    if (isinf(d))
        return buf_append_str(out, d < 0 ? "-inf" : "inf");
    return jw_double(out, d);
}

static int jw_value(buf_t *out, const json_t *v);

static int jw_array(buf_t *out, const json_t *v)
{
    if (buf_append_u8(out, '[') < 0)
        return -1;
    for (size_t i = 0; i < v->u.arr.n; i++) {
        if ((i && buf_append(out, ", ", 2) < 0) || jw_value(out, v->u.arr.items[i]) < 0)
            return -1;
    }
    return buf_append_u8(out, ']');
}

static int jw_object(buf_t *out, const json_t *v)
{
    if (buf_append_u8(out, '{') < 0)
        return -1;
    for (size_t i = 0; i < v->u.obj.n; i++) {
        const char *k = v->u.obj.keys[i];
        if ((i && buf_append(out, ", ", 2) < 0) || jw_string(out, k, strlen(k)) < 0 ||
            buf_append(out, ": ", 2) < 0 || jw_value(out, v->u.obj.vals[i]) < 0)
            return -1;
    }
    return buf_append_u8(out, '}');
}

static int jw_value(buf_t *out, const json_t *v)
{
    if (!v)
        return -1;
    switch (v->type) {
    case JSON_NULL:
        return buf_append_str(out, "null");
    case JSON_BOOL:
        return buf_append_str(out, v->u.boolean ? "true" : "false");
    case JSON_INT: {
        /* By hand: vsnprintf dominated the tracker's reply cost. */
        char tmp[24], *e = tmp + sizeof(tmp), *q = e;
        uint64_t u = v->u.i < 0 ? 0 - (uint64_t)v->u.i : (uint64_t)v->u.i;
        do
            *--q = (char)('0' + u % 10);
        while (u /= 10);
        if (v->u.i < 0)
            *--q = '-';
        return buf_append(out, q, (size_t)(e - q));
    }
    case JSON_DOUBLE:
        return jw_double(out, v->u.d);
    case JSON_STRING:
        return jw_string(out, v->u.str.s, v->u.str.len);
    case JSON_ARRAY:
        return jw_array(out, v);
    case JSON_OBJECT:
        return jw_object(out, v);
    }
    return -1;
}

int json_dump(const json_t *v, buf_t *out)
{
    size_t had = out->len;
    if (jw_value(out, v) == 0)
        return 0;
    out->len = had; /* leave no half-written document behind */
    return -1;
}

char *json_dumps(const json_t *v)
{
    buf_t b;
    buf_init(&b, 0);
    if (json_dump(v, &b) < 0) {
        buf_free(&b);
        return NULL;
    }
    char *s = buf_steal_cstr(&b);
    if (!s)
        buf_free(&b);
    return s;
}
