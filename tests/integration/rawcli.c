#include "rawcli.h"

#include <stdio.h>
#include <unistd.h>

#include "base/net.h"

/* kInitServer("0.8.0") with no arguments, as TVM clients send it. */
static const uint8_t k_init[29] = {0x15, 0, 0, 0, 0, 0,   0,   0,   2,   0,   0, 0, 5, 0, 0,
                                   0,    0, 0, 0, 0, '0', '.', '8', '.', '0', 0, 0, 0, 0};
static const uint8_t k_shutdown[12] = {4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};

void rawcli_attach(rawcli_t *c, int fd, const rpc_codec_t *codec)
{
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->codec = codec;
    buf_init(&c->in, 0);
}

int rawcli_detach(rawcli_t *c)
{
    int fd = c->fd;
    buf_free(&c->in);
    c->fd = -1;
    return fd;
}

void rawcli_close(rawcli_t *c)
{
    if (c->fd >= 0) {
        net_write_full(c->fd, k_shutdown, sizeof(k_shutdown), 1000, NULL);
        close(c->fd);
    }
    rawcli_detach(c);
}

int rawcli_send(rawcli_t *c, const void *p, size_t n)
{
    return net_write_full(c->fd, p, n, RAWCLI_IO_MS, NULL);
}

int rawcli_recv(rawcli_t *c, int32_t *code, int timeout_ms)
{
    uint8_t hdr[RPC_PACKET_HEADER];
    if (net_read_full(c->fd, hdr, sizeof(hdr), timeout_ms, NULL, NULL) < 0)
        return -1;
    uint64_t len = le64(hdr);
    if (len < 4 || len - 4 > RAWCLI_MAX_BODY)
        return -1;
    *code = (int32_t)le32(hdr + 8);
    buf_reset(&c->in);
    uint8_t *p = buf_tail(&c->in, (size_t)len - 4);
    if (!p || net_read_full(c->fd, p, (size_t)len - 4, RAWCLI_IO_MS, NULL, NULL) < 0)
        return -1;
    buf_commit(&c->in, (size_t)len - 4);
    return 0;
}

/* Magic, "client:" KEY; the server's reply must be SUCCESS and its key. */
static int handshake(rawcli_t *c, const char *key)
{
    buf_t b;
    buf_init(&b, 0);
    buf_append_i32le(&b, RPC_MAGIC);
    buf_append_i32le(&b, (int32_t)(7 + strlen(key)));
    buf_append_str(&b, "client:");
    buf_append_str(&b, key);
    int rc = rawcli_send(c, buf_head(&b), b.len);
    buf_free(&b);
    uint8_t st[8], skey[64];
    if (rc < 0 || net_read_full(c->fd, st, 8, RAWCLI_IO_MS, NULL, NULL) < 0 ||
        le32(st) != RPC_CODE_SUCCESS || le32(st + 4) > sizeof(skey))
        return -1;
    return net_read_full(c->fd, skey, le32(st + 4), RAWCLI_IO_MS, NULL, NULL);
}

int rawcli_open(rawcli_t *c, const char *host, int port, const char *key, const rpc_codec_t *codec)
{
    char err[NET_ERR_LEN];
    rawcli_attach(c, net_connect(host, port, 5000, err), codec);
    if (c->fd < 0)
        return -1;
    int32_t code;
    if (handshake(c, key ? key : "") < 0 || rawcli_send(c, k_init, sizeof(k_init)) < 0 ||
        rawcli_recv(c, &code, RAWCLI_IO_MS) < 0 || code != RPC_RETURN) {
        close(rawcli_detach(c));
        return -1;
    }
    return 0;
}

int rawcli_reply_value(rawcli_t *c, rpc_value_t *out, rpc_tensor_t *t)
{
    int nv;
    char err[128];
    rd_t r = rd_make(buf_head(&c->in), c->in.len);
    return c->codec->decode(&r, out, t, 1, &nv, err, sizeof(err)) == 0 && nv == 1 ? 0 : -1;
}

int rawcli_request(rawcli_t *c, int32_t code, const uint64_t *prefix, const rpc_value_t *args,
                   int n, int timeout_ms)
{
    buf_t b;
    buf_init(&b, 0);
    c->exc[0] = '\0';
    size_t at = rpc_packet_begin(&b, code);
    if (prefix)
        buf_append_u64le(&b, *prefix);
    c->codec->encode_args(&b, args, n);
    rpc_packet_end(&b, at);
    int rc = rawcli_send(c, buf_head(&b), b.len);
    buf_free(&b);
    int32_t rcode;
    if (rc < 0 || rawcli_recv(c, &rcode, timeout_ms) < 0)
        return -1;
    rpc_value_t v;
    rpc_tensor_t t;
    if (rcode == RPC_EXCEPTION && rawcli_reply_value(c, &v, &t) == 0 &&
        (v.kind == RV_STR || v.kind == RV_BYTES))
        snprintf(c->exc, sizeof(c->exc), "%.*s", (int)v.u.s.len, v.u.s.p);
    return rcode;
}

int rawcli_syscall(rawcli_t *c, int32_t code, const rpc_value_t *args, int n, rpc_value_t *out)
{
    if (rawcli_request(c, code, NULL, args, n, RAWCLI_IO_MS) != RPC_RETURN)
        return -1;
    return rawcli_reply_value(c, out, &c->rt);
}

uint64_t rawcli_get_global(rawcli_t *c, const char *name)
{
    rpc_value_t a = rv_str(name), v;
    return rawcli_syscall(c, RPC_GET_GLOBAL_FUNC, &a, 1, &v) == 0 ? v.u.h : 0;
}

int rawcli_call_to(rawcli_t *c, uint64_t h, const rpc_value_t *args, int n, rpc_value_t *ret,
                   int timeout_ms)
{
    int code = rawcli_request(c, RPC_CALL_FUNC, &h, args, n, timeout_ms);
    if (code == RPC_EXCEPTION)
        return 1;
    if (code != RPC_RETURN)
        return -1;
    char err[128];
    rd_t r = rd_make(buf_head(&c->in), c->in.len);
    rpc_value_t tmp;
    return c->codec->decode_call_result(&r, ret ? ret : &tmp, &c->rt, err, sizeof(err));
}

int rawcli_call(rawcli_t *c, uint64_t h, const rpc_value_t *args, int n, rpc_value_t *ret)
{
    return rawcli_call_to(c, h, args, n, ret, RAWCLI_IO_MS);
}

int rawcli_gcall(rawcli_t *c, const char *name, const rpc_value_t *args, int n, rpc_value_t *ret)
{
    uint64_t h = rawcli_get_global(c, name);
    return h ? rawcli_call(c, h, args, n, ret) : -1;
}

uint64_t rawcli_mod_func(rawcli_t *c, uint64_t mod, const char *name, int query_imports)
{
    rpc_value_t a[3] = {rv_handle(RV_MODULE, mod), rv_str(name), rv_bool(query_imports)}, f;
    if (rawcli_gcall(c, "tvm.rpc.server.ModuleGetFunction", a, 3, &f) != 0)
        return 0;
    return f.kind == RV_FUNC ? f.u.h : 0;
}

int rawcli_free_handle(rawcli_t *c, uint64_t h, int type_code)
{
    rpc_value_t a[2] = {rv_handle(RV_HANDLE, h), rv_int(type_code)};
    int n = c->codec == &rpc_codec_ffi ? 1 : 2;
    return rawcli_request(c, RPC_FREE_HANDLE, NULL, a, n, RAWCLI_IO_MS) == RPC_RETURN ? 0 : -1;
}

int rawcli_alloc(rawcli_t *c, rpc_tensor_t *t)
{
    rpc_value_t a[2] = {rv_tensor(t), rv_none()}, v;
    if (rawcli_syscall(c, RPC_DEV_ALLOC_DATA_WITH_SCOPE, a, 2, &v) < 0 || !v.u.h)
        return -1;
    t->data = v.u.h;
    return 0;
}

/* Header of a copy packet; a kCopyToRemote's length counts the data after it. */
static int send_copy_header(rawcli_t *c, int32_t code, const rpc_tensor_t *t, uint64_t nbytes)
{
    buf_t b;
    buf_init(&b, 0);
    size_t at = rpc_packet_begin(&b, code);
    rpc_put_tensor(&b, t);
    buf_append_u64le(&b, nbytes);
    rpc_packet_end(&b, at);
    if (code == RPC_COPY_TO_REMOTE)
        put_le64(buf_head(&b) + at, le64(buf_head(&b) + at) + nbytes);
    int rc = rawcli_send(c, buf_head(&b), b.len);
    buf_free(&b);
    return rc;
}

int rawcli_copy_to_begin(rawcli_t *c, const rpc_tensor_t *t, uint64_t nbytes)
{
    return send_copy_header(c, RPC_COPY_TO_REMOTE, t, nbytes);
}

int rawcli_copy_to(rawcli_t *c, const rpc_tensor_t *t, const void *data, size_t nbytes)
{
    int32_t code;
    if (rawcli_copy_to_begin(c, t, nbytes) < 0 || rawcli_send(c, data, nbytes) < 0 ||
        rawcli_recv(c, &code, RAWCLI_IO_MS) < 0)
        return -1;
    return code == RPC_RETURN ? 0 : -1;
}

int rawcli_copy_from(rawcli_t *c, const rpc_tensor_t *t, void *out, size_t nbytes)
{
    int32_t code;
    if (send_copy_header(c, RPC_COPY_FROM_REMOTE, t, nbytes) < 0 ||
        rawcli_recv(c, &code, RAWCLI_IO_MS) < 0 || code != RPC_COPY_ACK || c->in.len != nbytes)
        return -1;
    memcpy(out, buf_head(&c->in), nbytes);
    return 0;
}
