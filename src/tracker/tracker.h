/* tracker: the RPC tracker daemon (PROTOCOL.md §1), single-threaded on the
 * ev loop. Connection handling and message dispatch live here; the queue
 * logic lives in sched.c. */
#ifndef TVMRPC_TRACKER_H
#define TVMRPC_TRACKER_H

#include <stddef.h>

#include "base/acl.h"

typedef struct tracker_config {
    const char *host; /* bind address, default "0.0.0.0" */
    int port, port_end;
    const char *stop_key;     /* STOP is honoured only with this key; NULL = never */
    int handshake_timeout_ms; /* to send the 4-byte magic */
    size_t max_frame;         /* bytes of JSON per frame */
    size_t max_conns;
    size_t max_conns_per_peer; /* the same per peer IP address; 0 = no limit */
    size_t max_outbuf;         /* unread reply bytes before a peer is dropped */
    const acl_t *allow;        /* peers outside are refused at accept; NULL = everyone */
} tracker_config_t;

typedef struct tracker tracker_t;

void tracker_config_defaults(tracker_config_t *cfg);
/* Bind and prepare. NULL with err on failure. */
tracker_t *tracker_create(const tracker_config_t *cfg, char *err, size_t errlen);
int tracker_port(const tracker_t *t);
/* Serve until STOP with the right key or a SIGINT/SIGTERM on sig_fd (-1 = none). */
int tracker_run(tracker_t *t, int sig_fd);
void tracker_free(tracker_t *t);

#endif
