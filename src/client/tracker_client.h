/* tracker_client: the blocking side of the tracker protocol, used by the
 * query tool, RPC servers, the proxy's registration and the client library. */
#ifndef TVMRPC_TRACKER_CLIENT_H
#define TVMRPC_TRACKER_CLIENT_H

#include <stddef.h>

#include "base/json.h"

/* Connect (with bounded retry for up to retry_ms) and exchange the magic.
 * Returns the fd or -1 with err. */
int tc_connect(const char *host, int port, int retry_ms, int timeout_ms, char *err, size_t errlen);
/* Send one frame holding text (one send for header and body). */
int tc_send(int fd, const char *text, int timeout_ms, char *err, size_t errlen);
/* Receive one frame and parse it. timeout_ms -1 waits forever (REQUEST). */
int tc_recv(int fd, json_t **out, int timeout_ms, char *err, size_t errlen);
/* tc_send + tc_recv. */
int tc_call(int fd, const char *text, json_t **out, int timeout_ms, char *err, size_t errlen);
/* SUMMARY: *body receives element 1 of [0, {...}]. */
int tc_summary(int fd, json_t **body, int timeout_ms, char *err, size_t errlen);

#endif
