#include "tracker/proto.h"

#include <stdio.h>

proto_status_t proto_parse_frame(const uint8_t *p, size_t n, size_t max, const char **json,
                                 size_t *json_len, size_t *consumed, char *err, size_t errlen)
{
    if (n < 4)
        return PROTO_INCOMPLETE;
    int32_t len = (int32_t)le32(p);
    if (len <= 0 || (size_t)len > max) {
        snprintf(err, errlen, "frame length %d outside (0, %zu]", len, max);
        return PROTO_ERROR;
    }
    if (n - 4 < (size_t)len)
        return PROTO_INCOMPLETE;
    *json = (const char *)p + 4;
    *json_len = (size_t)len;
    *consumed = 4 + (size_t)len;
    return PROTO_OK;
}

int proto_append_frame(buf_t *out, const char *json, size_t len)
{
    if (len > INT32_MAX || buf_reserve(out, 4 + len) < 0)
        return -1;
    buf_append_i32le(out, (int32_t)len);
    return buf_append(out, json, len);
}

const char *proto_code_name(int code)
{
    static const char *const names[] = {
        "PING", "STOP", "PUT", "REQUEST", "UPDATE_INFO", "SUMMARY", "GET_PENDING_MATCHKEYS"};
    if (code == TRACKER_FAIL)
        return "FAIL";
    if (code == TRACKER_SUCCESS)
        return "SUCCESS";
    if (code >= TRACKER_PING && code <= TRACKER_GET_PENDING_MATCHKEYS)
        return names[code - 1];
    return "UNKNOWN";
}
