/* listener: the accept side the tracker, proxy and server share.
 *
 * A readable listening socket is drained in bounded batches (a connection
 * storm cannot starve established peers). Each peer must pass --allow, the
 * daemon's overall connection cap and the per-address cap (peercap), in that
 * order, before the owner's callback sees it; refusals are logged as
 * "<name>: <port_name><ip>:<port>: <why>; refusing". When accept fails for
 * want of descriptors, the socket stays readable: it is unwatched for
 * NET_ACCEPT_PAUSE_MS instead of being spun on and flooding the log. */
#ifndef TVMRPC_LISTENER_H
#define TVMRPC_LISTENER_H

#include <stddef.h>
#include <sys/socket.h>

#include "base/acl.h"
#include "base/ev.h"
#include "base/peercap.h"

/* An admitted peer: fd is the owner's, and so is the count taken for addr in
 * peers (peercap_release it, or peercap_release_ip(ip), once fd is closed).
 * Nonzero ends the current batch. */
typedef int (*listener_conn_fn)(void *data, int fd, const char *ip, int port,
                                const struct sockaddr_storage *addr);
/* Connections open now, held against max_conns. */
typedef size_t (*listener_count_fn)(void *data);

typedef struct listener_config {
    const char *name;        /* log prefix: "tracker", "proxy", "server" */
    const char *port_name;   /* before the peer in log lines: "" or "web " */
    const acl_t *allow;      /* NULL or empty: everyone */
    size_t max_conns;        /* 0: no overall cap (count unused) */
    listener_count_fn count; /* required when max_conns is set */
    peercap_t *peers;        /* may be shared by several listeners */
    const char *peer_full;   /* why, in the log, when peers refuses an address */
    int batch;               /* accepts per wake-up */
    listener_conn_fn on_conn;
    void *data;
} listener_config_t;

typedef struct listener {
    listener_config_t cfg;
    ev_loop_t *loop;
    int fd;
    int on;            /* the owner wants connections */
    ev_timer_t *pause; /* out of descriptors: watching again when it fires */
} listener_t;

/* Set up l for the listening socket fd (which stays the caller's); not yet
 * watched. */
void listener_init(listener_t *l, ev_loop_t *loop, int fd, const listener_config_t *cfg);
/* Watch the socket (on) or stop. While a pause runs, on only takes effect
 * when it ends. -1 if the loop cannot watch it. */
int listener_enable(listener_t *l, int on);

#endif
