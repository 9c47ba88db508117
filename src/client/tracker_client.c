#include "client/tracker_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/net.h"
#include "tracker/proto.h"

int tc_connect(const char *host, int port, int retry_ms, int timeout_ms, char *err, size_t errlen)
{
    char nerr[NET_ERR_LEN] = "";
    int fd = retry_ms > 0 ? net_connect_retry(host, port, retry_ms, nerr)
                          : net_connect(host, port, timeout_ms, nerr);
    if (fd < 0) {
        snprintf(err, errlen, "cannot connect to tracker %s:%d: %s", host, port, nerr);
        return -1;
    }
    uint8_t magic[4];
    put_le32(magic, TRACKER_MAGIC);
    if (net_write_full(fd, magic, 4, timeout_ms, nerr) < 0 ||
        net_read_full(fd, magic, 4, timeout_ms, NULL, nerr) < 0) {
        snprintf(err, errlen, "tracker %s:%d: magic exchange failed: %s", host, port, nerr);
        close(fd);
        return -1;
    }
    if (le32(magic) != TRACKER_MAGIC) {
        snprintf(err, errlen, "%s:%d is not an RPC tracker", host, port);
        close(fd);
        return -1;
    }
    return fd;
}

int tc_send(int fd, const char *text, int timeout_ms, char *err, size_t errlen)
{
    size_t len = strlen(text);
    uint8_t hdr[4];
    put_le32(hdr, (uint32_t)len);
    struct iovec iov[2] = {{hdr, 4}, {(void *)text, len}};
    char nerr[NET_ERR_LEN] = "";
    if (net_writev_full(fd, iov, 2, timeout_ms, nerr) < 0) {
        snprintf(err, errlen, "tracker: %s", nerr);
        return -1;
    }
    return 0;
}

int tc_recv(int fd, json_t **out, int timeout_ms, char *err, size_t errlen)
{
    uint8_t hdr[4];
    char nerr[NET_ERR_LEN] = "";
    if (net_read_full(fd, hdr, 4, timeout_ms, NULL, nerr) < 0) {
        snprintf(err, errlen, "tracker: %s", nerr);
        return -1;
    }
    int32_t len = (int32_t)le32(hdr);
    if (len <= 0 || len > TRACKER_MAX_FRAME) {
        snprintf(err, errlen, "tracker: reply length %d out of range", len);
        return -1;
    }
    char *text = malloc((size_t)len);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = -1;
    if (net_read_full(fd, text, (size_t)len, timeout_ms, NULL, nerr) < 0) {
        snprintf(err, errlen, "tracker: %s", nerr);
        goto out;
    }
    char perr[128];
    *out = json_parse(text, (size_t)len, NULL, perr, sizeof(perr));
    if (!*out) {
        snprintf(err, errlen, "tracker: bad reply: %s", perr);
        goto out;
    }
    rc = 0;
out:
    free(text);
    return rc;
}

int tc_call(int fd, const char *text, json_t **out, int timeout_ms, char *err, size_t errlen)
{
    if (tc_send(fd, text, timeout_ms, err, errlen) < 0)
        return -1;
    return tc_recv(fd, out, timeout_ms, err, errlen);
}

int tc_summary(int fd, json_t **body, int timeout_ms, char *err, size_t errlen)
{
    json_t *reply;
    if (tc_call(fd, "[6]", &reply, timeout_ms, err, errlen) < 0)
        return -1;
    int64_t code;
    json_t *b = json_array_get(reply, 1);
    if (json_get_int(json_array_get(reply, 0), &code) < 0 || code != 0 ||
        !json_is(b, JSON_OBJECT)) {
        snprintf(err, errlen, "tracker: SUMMARY failed");
        json_free(reply);
        return -1;
    }
    /* Detach element 1 so the caller owns just the body. */
    reply->u.arr.items[1] = NULL;
    reply->u.arr.n = 1;
    json_free(reply);
    *body = b;
    return 0;
}
