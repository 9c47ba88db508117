/* Graph JSON, storage planning and params blobs (RUNTIME.md §3.1, §3.2
 * steps 1-3, §3.4). Everything read here is untrusted: each index is checked
 * against what it indexes, and each error names the node or field. */
#include "server/graph.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"

#define NDARRAY_MAGIC 0xDD5E40F096B4A13FULL
#define PARAMS_MAGIC 0xF7E58D4F05049CB7ULL
#define GRAPH_MAX_BYTES ((uint64_t)1 << 40)

static int gerr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int gerr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- dtypes ------------------------------------------------------------------ */

static int parse_uint(const char **s, long *out)
{
    char *end;
    if (**s < '0' || **s > '9')
        return -1;
    *out = strtol(*s, &end, 10);
    *s = end;
    return *out > 0 && *out <= 65535 ? 0 : -1;
}

int graph_parse_dtype(const char *s, rpc_dtype_t *out)
{
    static const struct {
        const char *prefix;
        uint8_t code, default_bits;
    } kinds[] = {{"bfloat", 4, 16}, {"float", 2, 32}, {"uint", 1, 32}, {"int", 0, 32}};
    if (!strcmp(s, "bool")) {
        *out = (rpc_dtype_t){1, 1, 1};
        return 0;
    }
    if (!strcmp(s, "handle")) {
        *out = (rpc_dtype_t){3, 64, 1};
        return 0;
    }
    if (!strcmp(s, "void") || !*s) {
        *out = (rpc_dtype_t){3, 0, 0};
        return 0;
    }
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        size_t n = strlen(kinds[i].prefix);
        if (strncmp(s, kinds[i].prefix, n) != 0)
            continue;
        const char *p = s + n;
        long bits = kinds[i].default_bits, lanes = 1;
        if (*p >= '0' && *p <= '9' && (parse_uint(&p, &bits) < 0 || bits > 255))
            return -1;
        if (*p == 'x' && (++p, parse_uint(&p, &lanes) < 0))
            return -1;
        if (*p)
            return -1;
        *out = (rpc_dtype_t){kinds[i].code, (uint8_t)bits, (uint16_t)lanes};
        return 0;
    }
    return -1;
}

int64_t graph_entry_bytes(const graph_entry_t *e)
{
    int64_t elem = ((int64_t)e->dtype.bits * e->dtype.lanes + 7) / 8;
    int64_t n = elem;
    for (int i = 0; i < e->ndim; i++) {
        if (e->shape[i] < 0 || (e->shape[i] && n > (int64_t)GRAPH_MAX_BYTES / e->shape[i]))
            return -1;
        n *= e->shape[i];
    }
    return n;
}

/* ---- JSON helpers ------------------------------------------------------------- */

static int get_u32(const json_t *v, uint32_t *out)
{
    int64_t i;
    if (!json_is(v, JSON_INT) || json_get_int(v, &i) < 0 || i < 0 || i > UINT32_MAX)
        return -1;
    *out = (uint32_t)i;
    return 0;
}

static int parse_entry_ref(const json_t *v, graph_entry_ref_t *r)
{
    size_t n = json_array_len(v);
    if (!json_is(v, JSON_ARRAY) || n < 2 || n > 3 || get_u32(json_array_get(v, 0), &r->node) < 0 ||
        get_u32(json_array_get(v, 1), &r->index) < 0)
        return -1;
    return 0;
}

static char *dup_string(const json_t *v)
{
    const char *s = json_get_string(v);
    return s && strlen(s) == v->u.str.len ? strdup(s) : NULL;
}

/* attrs of a tvm_op: every value a string; func_name and the three counts required. */
static int parse_op_attrs(graph_node_t *n, const json_t *attrs, size_t id, char *err, size_t errlen)
{
    static const char *const required[] = {"func_name", "num_inputs", "num_outputs",
                                           "flatten_data"};
    if (!json_is(attrs, JSON_OBJECT))
        return gerr(err, errlen, "node %zu (%s): tvm_op needs an attrs object", id, n->name);
    for (size_t i = 0; i < 4; i++) {
        if (!json_is(json_object_get(attrs, required[i]), JSON_STRING))
            return gerr(err, errlen, "node %zu (%s): invalid format: attrs.%s missing", id, n->name,
                        required[i]);
    }
    n->func_name = dup_string(json_object_get(attrs, "func_name"));
    char *end;
    const char *outs = json_get_string(json_object_get(attrs, "num_outputs"));
    long no = strtol(outs, &end, 10);
    if (!n->func_name || *end || no < 1 || no > 65536)
        return gerr(err, errlen, "node %zu (%s): bad func_name or num_outputs", id, n->name);
    n->num_outputs = (uint32_t)no;
    n->flatten_data = strcmp(json_get_string(json_object_get(attrs, "flatten_data")), "0") != 0;
    return 0;
}

static int parse_node(graph_node_t *n, const json_t *v, size_t id, char *err, size_t errlen)
{
    if (!json_is(v, JSON_OBJECT))
        return gerr(err, errlen, "node %zu is not an object", id);
    const json_t *attrs = NULL;
    for (size_t i = 0; i < v->u.obj.n; i++) {
        const char *k = v->u.obj.keys[i];
        if (strcmp(k, "op") && strcmp(k, "name") && strcmp(k, "inputs") && strcmp(k, "attrs") &&
            strcmp(k, "attr") && strcmp(k, "control_deps"))
            return gerr(err, errlen, "node %zu: key %s is not supported", id, k);
        if (!strcmp(k, "attrs") || !strcmp(k, "attr"))
            attrs = v->u.obj.vals[i];
    }
    const char *op = json_get_string(json_object_get(v, "op"));
    n->name = dup_string(json_object_get(v, "name"));
    const json_t *inputs = json_object_get(v, "inputs");
    if (!op || !n->name || !json_is(inputs, JSON_ARRAY))
        return gerr(err, errlen, "node %zu: op, name and inputs are required", id);
    if (strcmp(op, "null") != 0 && strcmp(op, "tvm_op") != 0)
        return gerr(err, errlen, "node %zu (%s): Can only take tvm_op as op, not %s", id, n->name,
                    op);
    n->is_op = !strcmp(op, "tvm_op");
    n->num_outputs = 1;
    if (n->is_op && parse_op_attrs(n, attrs, id, err, errlen) < 0)
        return -1;
    n->ninputs = json_array_len(inputs);
    n->inputs = calloc(n->ninputs ? n->ninputs : 1, sizeof(*n->inputs));
    if (!n->inputs)
        return gerr(err, errlen, "out of memory");
    for (size_t i = 0; i < n->ninputs; i++) {
        graph_entry_ref_t *r = &n->inputs[i];
        if (parse_entry_ref(json_array_get(inputs, i), r) < 0)
            return gerr(err, errlen, "node %zu (%s): input %zu is not [node, index]", id, n->name,
                        i);
        /* Operators run in node order: an input must come from an earlier node. */
        if (r->node >= id)
            return gerr(err, errlen,
                        "node %zu (%s): input %zu refers to node %u, not an earlier one", id,
                        n->name, i, r->node);
    }
    return 0;
}

static int parse_u32_list(const json_t *v, uint32_t **out, size_t *n, uint32_t bound,
                          const char *what, char *err, size_t errlen)
{
    if (!json_is(v, JSON_ARRAY))
        return gerr(err, errlen, "%s must be a list of integers", what);
    *n = json_array_len(v);
    *out = calloc(*n ? *n : 1, sizeof(**out));
    if (!*out)
        return gerr(err, errlen, "out of memory");
    for (size_t i = 0; i < *n; i++) {
        if (get_u32(json_array_get(v, i), &(*out)[i]) < 0 || (*out)[i] >= bound)
            return gerr(err, errlen, "%s[%zu] is not an integer below %u", what, i, bound);
    }
    return 0;
}

/* ["list_int", [...]] and friends: the data array of a typed attribute. */
static const json_t *typed_list(const json_t *attrs, const char *key, const char *tag, size_t n,
                                char *err, size_t errlen, int required)
{
    const json_t *v = json_object_get(attrs, key);
    if (!v) {
        if (required)
            gerr(err, errlen, "graph attrs.%s is required", key);
        return NULL;
    }
    const char *t = json_get_string(json_array_get(v, 0));
    const json_t *data = json_array_get(v, 1);
    if (!t || strcmp(t, tag) != 0 || !json_is(data, JSON_ARRAY) || json_array_len(data) != n) {
        gerr(err, errlen, "graph attrs.%s must be [\"%s\", list of %zu]", key, tag, n);
        return NULL;
    }
    return data;
}

static int parse_entry_attrs(graph_t *g, const json_t *attrs, char *err, size_t errlen)
{
    if (!json_is(attrs, JSON_OBJECT))
        return gerr(err, errlen, "graph attrs must be an object");
    for (size_t i = 0; i < attrs->u.obj.n; i++) {
        const char *k = attrs->u.obj.keys[i];
        const char *tag = json_get_string(json_array_get(attrs->u.obj.vals[i], 0));
        if (strcmp(k, "dltype") && strcmp(k, "storage_id") && strcmp(k, "shape") &&
            strcmp(k, "device_index") && strcmp(k, "storage_scope") &&
            (!tag || (strcmp(tag, "list_int") && strcmp(tag, "size_t"))))
            return gerr(err, errlen, "cannot skip graph attr %s", k);
    }
    size_t n = g->nentries;
    const json_t *dl = typed_list(attrs, "dltype", "list_str", n, err, errlen, 1);
    const json_t *sid = dl ? typed_list(attrs, "storage_id", "list_int", n, err, errlen, 1) : NULL;
    const json_t *sh = sid ? typed_list(attrs, "shape", "list_shape", n, err, errlen, 1) : NULL;
    if (!sh)
        return -1;
    err[0] = '\0';
    const json_t *dev = typed_list(attrs, "device_index", "list_int", n, err, errlen, 0);
    if (!dev && err[0])
        return -1;
    for (size_t i = 0; i < n; i++) {
        graph_entry_t *e = &g->entries[i];
        const char *dts = json_get_string(json_array_get(dl, i));
        if (!dts || graph_parse_dtype(dts, &e->dtype) < 0)
            return gerr(err, errlen, "entry %zu: unknown dltype", i);
        int bl = e->dtype.bits * e->dtype.lanes;
        if (bl % 8 && e->dtype.bits != 1 && e->dtype.bits != 4)
            return gerr(err, errlen, "entry %zu: dtype %s is not byte-sized", i, dts);
        if (get_u32(json_array_get(sid, i), &e->storage_id) < 0 || e->storage_id >= n)
            return gerr(err, errlen, "entry %zu: storage_id must be in [0, %zu)", i, n);
        const json_t *shape = json_array_get(sh, i);
        size_t nd = json_array_len(shape);
        if (!json_is(shape, JSON_ARRAY) || nd > GRAPH_MAX_NDIM)
            return gerr(err, errlen, "entry %zu: shape must be a list of at most %d ints", i,
                        GRAPH_MAX_NDIM);
        e->ndim = (int)nd;
        for (size_t d = 0; d < nd; d++) {
            if (!json_is(json_array_get(shape, d), JSON_INT) ||
                json_get_int(json_array_get(shape, d), &e->shape[d]) < 0 || e->shape[d] < 0)
                return gerr(err, errlen, "entry %zu: shape[%zu] is not a non-negative int", i, d);
        }
        int64_t dt = 0;
        if (dev && (json_get_int(json_array_get(dev, i), &dt) < 0 || dt < 1 || dt > 127))
            return gerr(err, errlen, "entry %zu: device_index is not a device type", i);
        e->device_type = (int)dt;
    }
    return 0;
}

/* §3.2 step 1: one slot per storage id, as large as its largest entry. */
static int plan_storage(graph_t *g, char *err, size_t errlen)
{
    uint32_t max = 0;
    for (size_t i = 0; i < g->nentries; i++)
        max = g->entries[i].storage_id > max ? g->entries[i].storage_id : max;
    g->nslots = g->nentries ? (size_t)max + 1 : 0;
    g->slot_bytes = calloc(g->nslots ? g->nslots : 1, sizeof(*g->slot_bytes));
    int *slot_dev = calloc(g->nslots ? g->nslots : 1, sizeof(*slot_dev));
    if (!g->slot_bytes || !slot_dev) {
        free(slot_dev);
        return gerr(err, errlen, "out of memory");
    }
    uint64_t total = 0;
    int rc = 0;
    for (size_t i = 0; i < g->nentries && rc == 0; i++) {
        const graph_entry_t *e = &g->entries[i];
        int64_t bytes = graph_entry_bytes(e);
        if (bytes < 0) {
            rc = gerr(err, errlen, "entry %zu: tensor size overflows", i);
            break;
        }
        int dev = e->device_type ? e->device_type : -1;
        if (slot_dev[e->storage_id] && slot_dev[e->storage_id] != dev) {
            rc = gerr(err, errlen, "The same pool entry cannot be assigned to multiple devices");
            break;
        }
        slot_dev[e->storage_id] = dev;
        if ((uint64_t)bytes > g->slot_bytes[e->storage_id]) {
            total += (uint64_t)bytes - g->slot_bytes[e->storage_id];
            g->slot_bytes[e->storage_id] = (uint64_t)bytes;
        }
        if (total > GRAPH_MAX_BYTES)
            rc = gerr(err, errlen, "storage plan exceeds %llu bytes",
                      (unsigned long long)GRAPH_MAX_BYTES);
    }
    free(slot_dev);
    return rc;
}

static int check_structure(graph_t *g, char *err, size_t errlen)
{
    if (g->nnodes == 0 || !g->node_row_ptr)
        return gerr(err, errlen, "graph has no nodes");
    if (g->node_row_ptr[0] != 0)
        return gerr(err, errlen, "node_row_ptr must start at 0");
    for (size_t i = 0; i < g->nnodes; i++) {
        uint32_t outs = g->node_row_ptr[i + 1] - g->node_row_ptr[i];
        if (g->node_row_ptr[i + 1] < g->node_row_ptr[i] || outs != g->nodes[i].num_outputs)
            return gerr(err, errlen, "node %zu (%s): node_row_ptr gives %u outputs, expected %u", i,
                        g->nodes[i].name, outs, g->nodes[i].num_outputs);
        for (size_t k = 0; k < g->nodes[i].ninputs; k++) {
            graph_entry_ref_t r = g->nodes[i].inputs[k];
            if (r.index >= g->nodes[r.node].num_outputs)
                return gerr(err, errlen, "node %zu (%s): input %zu uses output %u of node %u", i,
                            g->nodes[i].name, k, r.index, r.node);
        }
    }
    for (size_t i = 0; i < g->narg_nodes; i++)
        if (g->nodes[g->arg_nodes[i]].is_op)
            return gerr(err, errlen, "arg_nodes[%zu] is an operator, not an input", i);
    for (size_t i = 0; i < g->nheads; i++)
        if (g->heads[i].index >= g->nodes[g->heads[i].node].num_outputs)
            return gerr(err, errlen, "heads[%zu] refers to a missing output", i);
    return 0;
}

static int parse_top(graph_t *g, const json_t *root, char *err, size_t errlen)
{
    const json_t *nodes = NULL, *args = NULL, *heads = NULL, *attrs = NULL, *rows = NULL;
    if (!json_is(root, JSON_OBJECT))
        return gerr(err, errlen, "graph JSON must be an object");
    for (size_t i = 0; i < root->u.obj.n; i++) {
        const char *k = root->u.obj.keys[i];
        const json_t *v = root->u.obj.vals[i];
        if (!strcmp(k, "metadata"))
            break; /* TVM's reader stops here */
        if (!strcmp(k, "nodes"))
            nodes = v;
        else if (!strcmp(k, "arg_nodes"))
            args = v;
        else if (!strcmp(k, "heads"))
            heads = v;
        else if (!strcmp(k, "attrs"))
            attrs = v;
        else if (!strcmp(k, "node_row_ptr"))
            rows = v;
        else
            return gerr(err, errlen, "key %s is not supported", k);
    }
    if (!json_is(nodes, JSON_ARRAY) || !args || !heads || !attrs || !rows)
        return gerr(err, errlen, "graph needs nodes, arg_nodes, heads, attrs and node_row_ptr");
    g->nnodes = json_array_len(nodes);
    g->nodes = calloc(g->nnodes ? g->nnodes : 1, sizeof(*g->nodes));
    if (!g->nodes)
        return gerr(err, errlen, "out of memory");
    for (size_t i = 0; i < g->nnodes; i++)
        if (parse_node(&g->nodes[i], json_array_get(nodes, i), i, err, errlen) < 0)
            return -1;
    size_t nrows;
    if (parse_u32_list(rows, &g->node_row_ptr, &nrows, UINT32_MAX, "node_row_ptr", err, errlen) < 0)
        return -1;
    if (nrows != g->nnodes + 1)
        return gerr(err, errlen, "node_row_ptr has %zu values, expected %zu", nrows, g->nnodes + 1);
    if (parse_u32_list(args, &g->arg_nodes, &g->narg_nodes, (uint32_t)g->nnodes, "arg_nodes", err,
                       errlen) < 0)
        return -1;
    g->nheads = json_array_len(heads);
    g->heads = calloc(g->nheads ? g->nheads : 1, sizeof(*g->heads));
    if (!json_is(heads, JSON_ARRAY) || !g->heads)
        return gerr(err, errlen, "heads must be a list of entries");
    for (size_t i = 0; i < g->nheads; i++)
        if (parse_entry_ref(json_array_get(heads, i), &g->heads[i]) < 0 ||
            g->heads[i].node >= g->nnodes)
            return gerr(err, errlen, "heads[%zu] is not a valid [node, index]", i);
    if (check_structure(g, err, errlen) < 0)
        return -1;
    g->nentries = g->node_row_ptr[g->nnodes];
    g->entries = calloc(g->nentries ? g->nentries : 1, sizeof(*g->entries));
    if (!g->entries)
        return gerr(err, errlen, "out of memory");
    if (parse_entry_attrs(g, attrs, err, errlen) < 0)
        return -1;
    return plan_storage(g, err, errlen);
}

int graph_parse(graph_t *g, const char *json, size_t len, char *err, size_t errlen)
{
    memset(g, 0, sizeof(*g));
    json_limits_t lim = {.max_depth = 16, .max_nodes = 0};
    char jerr[160];
    json_t *root = json_parse(json, len, &lim, jerr, sizeof(jerr));
    if (!root)
        return gerr(err, errlen, "graph JSON: %s", jerr);
    int rc = parse_top(g, root, err, errlen);
    json_free(root);
    if (rc < 0)
        graph_free(g);
    return rc;
}

void graph_free(graph_t *g)
{
    for (size_t i = 0; g->nodes && i < g->nnodes; i++) {
        free(g->nodes[i].name);
        free(g->nodes[i].func_name);
        free(g->nodes[i].inputs);
    }
    free(g->nodes);
    free(g->arg_nodes);
    free(g->heads);
    free(g->node_row_ptr);
    free(g->entries);
    free(g->slot_bytes);
    memset(g, 0, sizeof(*g));
}

/* ---- NDArray records and params blobs (§3.4) ---------------------------------- */

int graph_read_ndarray(rd_t *r, rpc_tensor_t *t, void **data, uint64_t *nbytes, char *err,
                       size_t errlen)
{
    uint64_t magic, reserved;
    int64_t size;
    memset(t, 0, sizeof(*t));
    *data = NULL;
    if (rd_u64(r, &magic) < 0 || magic != NDARRAY_MAGIC || rd_u64(r, &reserved) < 0)
        return gerr(err, errlen, "Invalid DLTensor file format: bad magic");
    uint32_t dtype_raw;
    if (rd_i32(r, &t->dev.type) < 0 || rd_i32(r, &t->dev.id) < 0 || rd_i32(r, &t->ndim) < 0 ||
        rd_u32(r, &dtype_raw) < 0)
        return gerr(err, errlen, "Invalid DLTensor file format: truncated header");
    t->dtype =
        (rpc_dtype_t){(uint8_t)dtype_raw, (uint8_t)(dtype_raw >> 8), (uint16_t)(dtype_raw >> 16)};
    if (t->dev.type != 1)
        return gerr(err, errlen, "Invalid DLTensor file format: device type %d is not CPU",
                    t->dev.type);
    if (t->ndim < 0 || t->ndim > RPC_MAX_NDIM)
        return gerr(err, errlen, "Invalid DLTensor file format: ndim %d", t->ndim);
    int64_t expect = (t->dtype.bits + 7) / 8; /* lanes are ignored here, as in TVM */
    for (int i = 0; i < t->ndim; i++) {
        if (rd_i64(r, &t->shape[i]) < 0 || t->shape[i] < 0 ||
            (t->shape[i] && expect > (int64_t)GRAPH_MAX_BYTES / t->shape[i]))
            return gerr(err, errlen, "Invalid DLTensor file format: bad shape");
        expect *= t->shape[i];
    }
    if (rd_i64(r, &size) < 0)
        return gerr(err, errlen, "Invalid DLTensor file format: truncated header");
    if (size != expect)
        return gerr(err, errlen, "Invalid DLTensor file format: data size %lld, expected %lld",
                    (long long)size, (long long)expect);
    if ((uint64_t)size > r->left)
        return gerr(err, errlen,
                    "Invalid DLTensor file format: truncated: %lld data bytes, %zu left",
                    (long long)size, r->left);
    const uint8_t *p;
    rd_bytes(r, (size_t)size, &p);
    if (posix_memalign(data, 64, size ? (size_t)size : 1) != 0)
        return gerr(err, errlen, "out of memory");
    memcpy(*data, p, (size_t)size);
    *nbytes = (uint64_t)size;
    return 0;
}

int graph_read_params(graph_params_t *p, const void *blob, size_t len, int names_only, char *err,
                      size_t errlen)
{
    memset(p, 0, sizeof(*p));
    rd_t r = rd_make(blob, len);
    uint64_t magic, reserved, n, count;
    if (rd_u64(&r, &magic) < 0 || magic != PARAMS_MAGIC || rd_u64(&r, &reserved) < 0 ||
        rd_u64(&r, &n) < 0 || n > r.left / 8)
        return gerr(err, errlen, "Invalid parameters file format");
    p->names = calloc(n ? n : 1, sizeof(*p->names));
    p->tensors = calloc(n ? n : 1, sizeof(*p->tensors));
    p->data = calloc(n ? n : 1, sizeof(*p->data));
    p->nbytes = calloc(n ? n : 1, sizeof(*p->nbytes));
    if (!p->names || !p->tensors || !p->data || !p->nbytes)
        goto oom;
    p->n = (size_t)n;
    for (size_t i = 0; i < p->n; i++) {
        uint64_t sl;
        const uint8_t *s;
        if (rd_u64(&r, &sl) < 0 || sl > r.left || rd_bytes(&r, (size_t)sl, &s) < 0 ||
            memchr(s, '\0', (size_t)sl))
            goto bad;
        if (!(p->names[i] = strndup((const char *)s, (size_t)sl)))
            goto oom;
    }
    if (names_only)
        return 0;
    if (rd_u64(&r, &count) < 0 || count != n)
        goto bad;
    for (size_t i = 0; i < p->n; i++) {
        char why[160];
        if (graph_read_ndarray(&r, &p->tensors[i], &p->data[i], &p->nbytes[i], why, sizeof(why)) <
            0) {
            gerr(err, errlen, "params %s: %s", p->names[i], why);
            graph_params_free(p);
            return -1;
        }
    }
    return 0;
bad:
    graph_params_free(p);
    return gerr(err, errlen, "Invalid parameters file format");
oom:
    graph_params_free(p);
    return gerr(err, errlen, "out of memory");
}

void graph_params_free(graph_params_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        if (p->names)
            free(p->names[i]);
        if (p->data)
            free(p->data[i]);
    }
    free(p->names);
    free(p->tensors);
    free(p->data);
    free(p->nbytes);
    memset(p, 0, sizeof(*p));
}
