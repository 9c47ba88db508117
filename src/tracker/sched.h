/* sched: the tracker's scheduling state, independent of sockets
 * (PROTOCOL.md §1.6–§1.7).
 *
 * Per device key there is a queue holding
 *   - free slots: FIFO of (owner, host, port, matchkey) announced by PUT;
 *   - requests:   a heap ordered by (higher priority, earlier arrival).
 * Whenever both are non-empty the oldest slot goes to the best request.
 *
 * Owners are the tracker's connections; each embeds a sched_owner_t so the
 * slots and requests it created can be listed (GET_PENDING_MATCHKEYS) and
 * dropped at once when it disconnects. */
#ifndef TVMRPC_SCHED_H
#define TVMRPC_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "base/json.h"

typedef struct sched sched_t;
typedef struct sched_queue sched_queue_t;
typedef struct sched_slot sched_slot_t;
typedef struct sched_req sched_req_t;

typedef struct sched_owner {
    sched_slot_t *slots; /* queued slots this owner PUT, newest first */
    sched_req_t *reqs;   /* queued requests this owner made */
    size_t nslots, nreqs;
} sched_owner_t;

struct sched_slot {
    sched_queue_t *queue;
    sched_owner_t *owner;
    char *host;                /* address handed to the client */
    json_t *port;              /* echoed exactly as the server sent it (number or string) */
    char *matchkey;            /* one-time token the server will admit */
    sched_slot_t *prev, *next; /* queue's free FIFO */
    sched_slot_t *owner_prev, *owner_next; /* owner's list */
};

/* Deliver a grant. Return 0 if it was handed to the requester, -1 if the
 * requester cannot take it (the request is dropped, the slot requeued at
 * the end). Must not call back into sched. */
typedef int sched_grant_fn(void *ctx, sched_owner_t *requester, const sched_slot_t *slot);

typedef struct sched_limits {
    size_t max_keys;            /* distinct device keys (queues are never removed) */
    size_t max_slots_per_owner; /* queued slots one connection may hold */
    size_t max_reqs_per_owner;  /* queued requests one connection may hold */
} sched_limits_t;

sched_t *sched_create(const sched_limits_t *lim, sched_grant_fn *grant, void *ctx);
void sched_free(sched_t *s);

void sched_owner_init(sched_owner_t *o);
/* Forget everything the owner has queued (it disconnected). */
void sched_owner_drop(sched_t *s, sched_owner_t *o);

/* PUT: queue a free slot and run the key's scheduler. 0, or -1 with err
 * (limit reached / OOM). port is copied. */
int sched_put(sched_t *s, sched_owner_t *o, const char *key, const char *host, const json_t *port,
              const char *matchkey, char *err, size_t errlen);
/* REQUEST: queue a request and run the key's scheduler. */
int sched_request(sched_t *s, sched_owner_t *o, const char *key, double priority, char *err,
                  size_t errlen);

/* Queues in creation order, for SUMMARY. */
const sched_queue_t *sched_queues(const sched_t *s);
const sched_queue_t *sched_queue_next(const sched_queue_t *q);
const char *sched_queue_key(const sched_queue_t *q);
size_t sched_queue_free(const sched_queue_t *q);
size_t sched_queue_pending(const sched_queue_t *q);
size_t sched_nqueues(const sched_t *s);

#endif
