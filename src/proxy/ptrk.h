/* ptrk: the proxy's link to the tracker (PROTOCOL.md §1, §3.4), non-blocking
 * on the proxy's ev loop so a slow or unreachable tracker never stalls the
 * relays: non-blocking connect, magic exchange, frames queued and written
 * whole, replies matched to requests in order (the tracker answers every
 * request of a connection in order, and the proxy never sends REQUEST).
 *
 * The link reconnects by itself with exponential backoff (1 s doubling to
 * 10 s); a request without an answer for 10 s counts as a lost link. The
 * owner re-registers everything in its `up` callback, which runs on every
 * (re)connect. Host names are resolved with getaddrinfo at each connect
 * attempt, which blocks briefly for names that are not numeric. */
#ifndef TVMRPC_PROXY_PTRK_H
#define TVMRPC_PROXY_PTRK_H

#include <stdint.h>

#include "base/ev.h"
#include "base/json.h"

typedef struct ptrk ptrk_t;

typedef struct ptrk_cb {
    /* The magic exchange succeeded: (re)register. */
    void (*up)(void *ctx);
    /* The link went down (reconnect is scheduled). */
    void (*down)(void *ctx, const char *why);
    /* Reply to the GET_PENDING_MATCHKEYS request numbered seq: a JSON list. */
    void (*pending)(void *ctx, uint64_t seq, const json_t *keys);
} ptrk_cb_t;

ptrk_t *ptrk_create(ev_loop_t *loop, const char *host, int port, const ptrk_cb_t *cb, void *ctx);
void ptrk_free(ptrk_t *t);
int ptrk_is_up(const ptrk_t *t);

/* Queue a request. Each returns the request's sequence number (increasing
 * over the life of the link object), or 0 if the link is not up. */
uint64_t ptrk_put(ptrk_t *t, const char *key, int port, const char *matchkey,
                  const char *custom_addr);
uint64_t ptrk_update_info(ptrk_t *t, const char *info_key, int port, const char *custom_addr);
/* 0 also when a GET_PENDING_MATCHKEYS is already waiting for its answer. */
uint64_t ptrk_get_pending(ptrk_t *t);
/* Drop the connection and reconnect at once, once the current callback
 * returns (closing is the only way to make the tracker forget our slots). */
void ptrk_reset(ptrk_t *t, const char *why);

#endif
