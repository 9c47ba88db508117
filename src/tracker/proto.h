/* proto: the tracker wire format (PROTOCOL.md §1), shared by the tracker and
 * by everything that talks to it (servers, proxies, clients, query tool).
 *
 * After a 4-byte magic exchange, each direction carries frames of
 * i32 little-endian length + JSON text. */
#ifndef TVMRPC_TRACKER_PROTO_H
#define TVMRPC_TRACKER_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define TRACKER_MAGIC 0x0002F271
/* TVM >= 0.25 closes on frames of <= 0 or > 1 MiB; we do the same. */
#define TRACKER_MAX_FRAME (1024 * 1024)

enum tracker_code {
    TRACKER_FAIL = -1,
    TRACKER_SUCCESS = 0,
    TRACKER_PING = 1,
    TRACKER_STOP = 2,
    TRACKER_PUT = 3,
    TRACKER_REQUEST = 4,
    TRACKER_UPDATE_INFO = 5,
    TRACKER_SUMMARY = 6,
    TRACKER_GET_PENDING_MATCHKEYS = 7,
};

typedef enum proto_status {
    PROTO_OK = 0,
    PROTO_INCOMPLETE = -2, /* need more bytes; nothing consumed */
    PROTO_ERROR = -1,      /* invalid; close the connection */
} proto_status_t;

/* Incremental frame parser (picohttpparser style): look at the n bytes at p.
 * PROTO_OK: a whole frame is there; json and json_len point into p and
 * consumed is its total size. PROTO_INCOMPLETE: wait for more (at most
 * 4 + max bytes are ever needed). PROTO_ERROR: length <= 0 or > max; the
 * message in err says which. */
proto_status_t proto_parse_frame(const uint8_t *p, size_t n, size_t max, const char **json,
                                 size_t *json_len, size_t *consumed, char *err, size_t errlen);

/* Append one complete frame (header + text) so it can go out in one send. */
int proto_append_frame(buf_t *out, const char *json, size_t len);

const char *proto_code_name(int code);

#endif
