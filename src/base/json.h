/* json: a small DOM reader/writer, enough for tracker messages and graph JSON,
 * small enough for the device build.
 *
 * The writer reproduces Python's json.dumps defaults byte for byte
 * (separators ", " and ": ", non-ASCII escaped as \uXXXX, floats in repr
 * form), because TVM peers compare tracker replies as text. Objects keep
 * insertion order; json_object_set on an existing key replaces the value in
 * place, as a Python dict update does. */
#ifndef TVMRPC_JSON_H
#define TVMRPC_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef enum json_type {
    JSON_NULL,
    JSON_BOOL,
    JSON_INT,    /* integer literal that fits int64 */
    JSON_DOUBLE, /* anything with '.', exponent, or too big for int64 */
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
} json_type_t;

typedef struct json json_t;

struct json {
    json_type_t type;
    union {
        int boolean;
        int64_t i;
        double d;
        struct {
            char *s; /* NUL-terminated; may contain NULs from \u0000 */
            size_t len;
        } str;
        struct {
            json_t **items;
            size_t n, cap;
        } arr;
        struct {
            char **keys; /* NUL-terminated */
            json_t **vals;
            size_t n, cap;
        } obj;
    } u;
};

typedef struct json_limits {
    size_t max_depth; /* nesting of arrays/objects; 0 = default 64 */
    size_t max_nodes; /* total values; 0 = unlimited */
} json_limits_t;

/* Parse exactly one JSON value (surrounding whitespace allowed, nothing else).
 * Returns NULL on error with a NUL-terminated message in err (err may be NULL
 * when errlen is 0). Keys containing NUL are refused. */
json_t *json_parse(const char *text, size_t len, const json_limits_t *lim, char *err,
                   size_t errlen);
void json_free(json_t *v);
json_t *json_clone(const json_t *v);

json_t *json_new_null(void);
json_t *json_new_bool(int b);
json_t *json_new_int(int64_t i);
json_t *json_new_double(double d);
json_t *json_new_string(const char *s); /* copies */
json_t *json_new_stringn(const char *s, size_t len);
json_t *json_new_array(void);
json_t *json_new_object(void);
/* Take ownership of v. On failure (OOM) v is freed and -1 returned. */
int json_array_push(json_t *arr, json_t *v);
int json_object_set(json_t *obj, const char *key, json_t *v);

size_t json_array_len(const json_t *arr);                    /* 0 if not an array */
json_t *json_array_get(const json_t *arr, size_t i);         /* NULL if out of range / not array */
json_t *json_object_get(const json_t *obj, const char *key); /* NULL if absent */
/* Remove and return the value (ownership to caller), or NULL. */
json_t *json_object_take(json_t *obj, const char *key);

static inline int json_is(const json_t *v, json_type_t t)
{
    return v && v->type == t;
}
/* Integer value of an int, or of a double with an integral value in range:
 * 0 (out may be NULL), or -1 if neither. */
int json_get_int(const json_t *v, int64_t *out);
/* String contents or NULL. */
const char *json_get_string(const json_t *v);

/* Serialize like Python json.dumps(v). Exceptions: integers beyond int64 are
 * doubles, invalid UTF-8 bytes are escaped as \u00XX. Returns -1 on OOM /
 * buf cap, with nothing appended to out. */
int json_dump(const json_t *v, buf_t *out);
/* Python's str(float) (shortest repr: 10.0, 2.5, 1e-07, inf), appended to out. */
int json_py_float(buf_t *out, double d);
/* Convenience: heap string, caller frees. */
char *json_dumps(const json_t *v);

#endif
