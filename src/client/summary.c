#include "client/summary.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Python's str() of a JSON scalar, as the query tool prints addresses. */
static void py_str(const json_t *v, buf_t *out)
{
    if (json_is(v, JSON_STRING)) {
        buf_append(out, v->u.str.s, v->u.str.len);
    } else if (json_is(v, JSON_NULL) || !v) {
        buf_append_str(out, "None");
    } else if (json_is(v, JSON_BOOL)) {
        buf_append_str(out, v->u.boolean ? "True" : "False");
    } else {
        json_dump(v, out); /* numbers print the same in JSON and Python */
    }
}

/* Length in code points (Python's len() of the decoded str). */
static size_t text_width(const char *s, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        w += ((unsigned char)s[i] & 0xC0) != 0x80;
    return w;
}

static void pad_to(buf_t *out, size_t have, size_t width)
{
    for (; have < width; have++)
        buf_append_u8(out, ' ');
}

static void ljust(buf_t *out, const char *s, size_t width)
{
    buf_append_str(out, s);
    pad_to(out, text_width(s, strlen(s)), width);
}

static void dashes(buf_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf_append_u8(out, '-');
    buf_append_u8(out, '\n');
}

static const char *server_key(const json_t *info)
{
    const char *k = json_get_string(json_object_get(info, "key"));
    return k ? k : "";
}

static int cmp_server(const void *a, const void *b)
{
    const json_t *x = *(const json_t *const *)a, *y = *(const json_t *const *)b;
    int c = strcmp(server_key(x), server_key(y));
    /* qsort is not stable; fall back to original position for ties. */
    return c ? c : (x < y ? -1 : x > y);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void server_line(const json_t *info, summary_layout_t layout, buf_t *out)
{
    const json_t *addr = json_object_get(info, "addr");
    buf_t a;
    buf_init(&a, 0);
    py_str(json_array_get(addr, 0), &a);
    buf_append_u8(&a, ':');
    py_str(json_array_get(addr, 1), &a);
    size_t w = text_width((const char *)buf_head(&a), a.len);
    if (layout == SUMMARY_LAYOUT_V08) {
        buf_append(out, buf_head(&a), a.len);
        buf_append_u8(out, '\t');
    } else if (layout == SUMMARY_LAYOUT_V09) {
        pad_to(out, w, 21);
        buf_append(out, buf_head(&a), a.len);
        buf_append_str(out, "    ");
    } else {
        buf_append(out, buf_head(&a), a.len);
        pad_to(out, w, 21);
        buf_append_str(out, "    ");
    }
    buf_free(&a);
    buf_append_str(out, server_key(info));
    buf_append_u8(out, '\n');
}

/* Servers whose key splits on ':' to "server", key, ... count toward key. */
static size_t count_total(const json_t *servers, const char *key)
{
    size_t n = 0, klen = strlen(key);
    for (size_t i = 0; i < json_array_len(servers); i++) {
        const char *sk = server_key(json_array_get(servers, i));
        const char *c1 = strchr(sk, ':');
        if (!c1)
            continue;
        const char *field = c1 + 1;
        const char *c2 = strchr(field, ':');
        size_t flen = c2 ? (size_t)(c2 - field) : strlen(field);
        n += flen == klen && strncmp(field, key, klen) == 0;
    }
    return n;
}

static int format_servers(const json_t *servers, summary_layout_t layout, buf_t *out)
{
    size_t n = json_array_len(servers);
    const json_t **sorted = calloc(n ? n : 1, sizeof(*sorted));
    if (!sorted)
        return -1;
    for (size_t i = 0; i < n; i++)
        sorted[i] = json_array_get(servers, i);
    if (layout != SUMMARY_LAYOUT_V08)
        qsort(sorted, n, sizeof(*sorted), cmp_server);
    size_t hdr = layout == SUMMARY_LAYOUT_V08 ? 28 : 30;
    buf_append_str(out, "Server List\n");
    dashes(out, hdr);
    buf_append_str(out, layout == SUMMARY_LAYOUT_V08 ? "server-address\tkey\n"
                                                     : "server-address           key\n");
    dashes(out, hdr);
    for (size_t i = 0; i < n; i++)
        server_line(sorted[i], layout, out);
    dashes(out, hdr);
    free(sorted);
    return 0;
}

static int format_queues(const json_t *queues, const json_t *servers, buf_t *out)
{
    size_t n = queues->u.obj.n, w = 0;
    const char **keys = calloc(n ? n : 1, sizeof(*keys));
    if (!keys)
        return -1;
    for (size_t i = 0; i < n; i++) {
        keys[i] = queues->u.obj.keys[i];
        size_t kw = text_width(keys[i], strlen(keys[i]));
        w = kw > w ? kw : w;
    }
    qsort(keys, n, sizeof(*keys), cmp_str);
    size_t d = (w > 3 ? w : 3) + 24;
    buf_append_str(out, "\nQueue Status\n");
    dashes(out, d);
    ljust(out, "key", w);
    buf_append_str(out, "   total  free  pending\n");
    dashes(out, d);
    for (size_t i = 0; i < n; i++) {
        const json_t *row = json_object_get(queues, keys[i]);
        int64_t fr = 0, pend = 0;
        json_get_int(json_object_get(row, "free"), &fr);
        json_get_int(json_object_get(row, "pending"), &pend);
        size_t total = count_total(servers, keys[i]);
        if (total == 0 && pend == 0)
            continue;
        char num[32];
        ljust(out, keys[i], w);
        buf_append_str(out, "   ");
        snprintf(num, sizeof(num), "%zu", total);
        ljust(out, num, 5);
        buf_append_str(out, "  ");
        snprintf(num, sizeof(num), "%lld", (long long)fr);
        ljust(out, num, 4);
        buf_append_str(out, "  ");
        snprintf(num, sizeof(num), "%lld", (long long)pend);
        ljust(out, num, 7);
        buf_append_u8(out, '\n');
    }
    dashes(out, d);
    free(keys);
    return 0;
}

int summary_format(const json_t *body, summary_layout_t layout, buf_t *out)
{
    const json_t *queues = json_object_get(body, "queue_info");
    const json_t *servers = json_object_get(body, "server_info");
    if (!json_is(queues, JSON_OBJECT) || !json_is(servers, JSON_ARRAY))
        return -1;
    if (format_servers(servers, layout, out) < 0)
        return -1;
    return format_queues(queues, servers, out);
}

int summary_format_query(const char *host, int port, const json_t *body, summary_layout_t layout,
                         buf_t *out)
{
    buf_printf(out, "Tracker address %s:%d\n\n", host, port);
    if (summary_format(body, layout, out) < 0)
        return -1;
    return buf_append_u8(out, '\n');
}
