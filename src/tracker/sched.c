#include "tracker/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sched_req {
    sched_queue_t *queue;
    sched_owner_t *owner;
    double priority;
    uint64_t seq;    /* arrival order within the key */
    size_t heap_idx; /* position in queue->heap, for O(log n) removal */
    sched_req_t *owner_prev, *owner_next;
};

struct sched_queue {
    char *key;
    sched_slot_t *free_head, *free_tail;
    size_t nfree;
    sched_req_t **heap;
    size_t nreq, heap_cap;
    uint64_t next_seq;
    sched_queue_t *hash_next;  /* bucket chain */
    sched_queue_t *order_next; /* creation order */
};

struct sched {
    sched_limits_t lim;
    sched_grant_fn *grant;
    void *ctx;
    sched_queue_t **buckets;
    size_t nbuckets, nqueues;
    sched_queue_t *first, *last;
};

/* ---- key -> queue map ---------------------------------------------------- */

static uint64_t hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static sched_queue_t *queue_find(const sched_t *s, const char *key)
{
    sched_queue_t *q = s->buckets[hash_key(key) & (s->nbuckets - 1)];
    while (q && strcmp(q->key, key) != 0)
        q = q->hash_next;
    return q;
}

static int map_grow(sched_t *s)
{
    size_t n = s->nbuckets * 2;
    sched_queue_t **b = calloc(n, sizeof(*b));
    if (!b)
        return -1;
    for (sched_queue_t *q = s->first; q; q = q->order_next) {
        size_t i = hash_key(q->key) & (n - 1);
        q->hash_next = b[i];
        b[i] = q;
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
    return 0;
}

static sched_queue_t *queue_get(sched_t *s, const char *key, char *err, size_t errlen)
{
    sched_queue_t *q = queue_find(s, key);
    if (q)
        return q;
    if (s->nqueues >= s->lim.max_keys) {
        snprintf(err, errlen, "too many device keys (limit %zu)", s->lim.max_keys);
        return NULL;
    }
    if (s->nqueues >= s->nbuckets && map_grow(s) < 0)
        goto oom;
    q = calloc(1, sizeof(*q));
    if (!q || !(q->key = strdup(key))) {
        free(q);
        goto oom;
    }
    size_t i = hash_key(key) & (s->nbuckets - 1);
    q->hash_next = s->buckets[i];
    s->buckets[i] = q;
    if (s->last)
        s->last->order_next = q;
    else
        s->first = q;
    s->last = q;
    s->nqueues++;
    return q;
oom:
    snprintf(err, errlen, "out of memory");
    return NULL;
}

/* ---- free slots: FIFO per queue, list per owner --------------------------- */

static void fifo_push_back(sched_queue_t *q, sched_slot_t *sl)
{
    sl->next = NULL;
    sl->prev = q->free_tail;
    if (q->free_tail)
        q->free_tail->next = sl;
    else
        q->free_head = sl;
    q->free_tail = sl;
    q->nfree++;
}

static void fifo_unlink(sched_queue_t *q, sched_slot_t *sl)
{
    if (sl->prev)
        sl->prev->next = sl->next;
    else
        q->free_head = sl->next;
    if (sl->next)
        sl->next->prev = sl->prev;
    else
        q->free_tail = sl->prev;
    sl->prev = sl->next = NULL;
    q->nfree--;
}

static void slot_destroy(sched_slot_t *sl)
{
    sched_owner_t *o = sl->owner;
    if (sl->owner_prev)
        sl->owner_prev->owner_next = sl->owner_next;
    else
        o->slots = sl->owner_next;
    if (sl->owner_next)
        sl->owner_next->owner_prev = sl->owner_prev;
    o->nslots--;
    free(sl->host);
    free(sl->matchkey);
    json_free(sl->port);
    free(sl);
}

/* ---- requests: binary heap per queue, list per owner ---------------------- */

static int req_before(const sched_req_t *a, const sched_req_t *b)
{
    if (a->priority != b->priority)
        return a->priority > b->priority;
    return a->seq < b->seq;
}

static void heap_set(sched_queue_t *q, size_t i, sched_req_t *r)
{
    q->heap[i] = r;
    r->heap_idx = i;
}

static void heap_up(sched_queue_t *q, size_t i)
{
    sched_req_t *r = q->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!req_before(r, q->heap[parent]))
            break;
        heap_set(q, i, q->heap[parent]);
        i = parent;
    }
    heap_set(q, i, r);
}

static void heap_down(sched_queue_t *q, size_t i)
{
    sched_req_t *r = q->heap[i];
    for (;;) {
        size_t best = i, l = 2 * i + 1, rt = l + 1;
        const sched_req_t *cand = r;
        if (l < q->nreq && req_before(q->heap[l], cand)) {
            best = l;
            cand = q->heap[l];
        }
        if (rt < q->nreq && req_before(q->heap[rt], cand))
            best = rt;
        if (best == i)
            break;
        heap_set(q, i, q->heap[best]);
        i = best;
    }
    heap_set(q, i, r);
}

static int heap_push(sched_queue_t *q, sched_req_t *r)
{
    if (q->nreq == q->heap_cap) {
        size_t ncap = q->heap_cap ? q->heap_cap * 2 : 8;
        sched_req_t **h = realloc(q->heap, ncap * sizeof(*h));
        if (!h)
            return -1;
        q->heap = h;
        q->heap_cap = ncap;
    }
    heap_set(q, q->nreq++, r);
    heap_up(q, q->nreq - 1);
    return 0;
}

static void heap_remove(sched_queue_t *q, sched_req_t *r)
{
    size_t i = r->heap_idx;
    sched_req_t *last = q->heap[--q->nreq];
    if (i == q->nreq)
        return;
    heap_set(q, i, last);
    heap_up(q, i);
    heap_down(q, last->heap_idx);
}

static void req_destroy(sched_req_t *r)
{
    sched_owner_t *o = r->owner;
    heap_remove(r->queue, r);
    if (r->owner_prev)
        r->owner_prev->owner_next = r->owner_next;
    else
        o->reqs = r->owner_next;
    if (r->owner_next)
        r->owner_next->owner_prev = r->owner_prev;
    o->nreqs--;
    free(r);
}

/* ---- the scheduler ------------------------------------------------------- */

/* Pair the oldest free slot with the best request while both exist. A grant
 * the requester cannot take drops the request and sends the slot to the
 * back of the FIFO, as TVM's tracker does. */
static void queue_run(sched_t *s, sched_queue_t *q)
{
    while (q->free_head && q->nreq > 0) {
        sched_slot_t *sl = q->free_head;
        sched_req_t *r = q->heap[0];
        fifo_unlink(q, sl);
        int rc = s->grant(s->ctx, r->owner, sl);
        req_destroy(r);
        if (rc == 0)
            slot_destroy(sl);
        else
            fifo_push_back(q, sl);
    }
}

int sched_put(sched_t *s, sched_owner_t *o, const char *key, const char *host, const json_t *port,
              const char *matchkey, char *err, size_t errlen)
{
    if (o->nslots >= s->lim.max_slots_per_owner) {
        snprintf(err, errlen, "too many queued slots on one connection (limit %zu)",
                 s->lim.max_slots_per_owner);
        return -1;
    }
    sched_queue_t *q = queue_get(s, key, err, errlen);
    if (!q)
        return -1;
    sched_slot_t *sl = calloc(1, sizeof(*sl));
    if (!sl)
        goto oom;
    sl->host = strdup(host);
    sl->matchkey = strdup(matchkey);
    sl->port = json_clone(port);
    if (!sl->host || !sl->matchkey || !sl->port) {
        free(sl->host);
        free(sl->matchkey);
        json_free(sl->port);
        free(sl);
        goto oom;
    }
    sl->queue = q;
    sl->owner = o;
    sl->owner_next = o->slots;
    if (o->slots)
        o->slots->owner_prev = sl;
    o->slots = sl;
    o->nslots++;
    fifo_push_back(q, sl);
    queue_run(s, q);
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

int sched_request(sched_t *s, sched_owner_t *o, const char *key, double priority, char *err,
                  size_t errlen)
{
    if (o->nreqs >= s->lim.max_reqs_per_owner) {
        snprintf(err, errlen, "too many queued requests on one connection (limit %zu)",
                 s->lim.max_reqs_per_owner);
        return -1;
    }
    sched_queue_t *q = queue_get(s, key, err, errlen);
    if (!q)
        return -1;
    sched_req_t *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->queue = q;
    r->owner = o;
    r->priority = priority;
    r->seq = q->next_seq++;
    if (heap_push(q, r) < 0) {
        free(r);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->owner_next = o->reqs;
    if (o->reqs)
        o->reqs->owner_prev = r;
    o->reqs = r;
    o->nreqs++;
    queue_run(s, q);
    return 0;
}

void sched_owner_init(sched_owner_t *o)
{
    memset(o, 0, sizeof(*o));
}

void sched_owner_drop(sched_t *s, sched_owner_t *o)
{
    (void)s;
    while (o->slots) {
        sched_slot_t *sl = o->slots;
        fifo_unlink(sl->queue, sl);
        slot_destroy(sl);
    }
    while (o->reqs)
        req_destroy(o->reqs);
}

sched_t *sched_create(const sched_limits_t *lim, sched_grant_fn *grant, void *ctx)
{
    sched_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->lim = *lim;
    s->grant = grant;
    s->ctx = ctx;
    s->nbuckets = 64;
    s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
    if (!s->buckets) {
        free(s);
        return NULL;
    }
    return s;
}

void sched_free(sched_t *s)
{
    if (!s)
        return;
    sched_queue_t *q = s->first;
    while (q) {
        sched_queue_t *next = q->order_next;
        /* Owners must have been dropped first; free whatever remains anyway. */
        while (q->free_head) {
            sched_slot_t *sl = q->free_head;
            fifo_unlink(q, sl);
            slot_destroy(sl);
        }
        while (q->nreq)
            req_destroy(q->heap[0]);
        free(q->heap);
        free(q->key);
        free(q);
        q = next;
    }
    free(s->buckets);
    free(s);
}

const sched_queue_t *sched_queues(const sched_t *s)
{
    return s->first;
}

const sched_queue_t *sched_queue_next(const sched_queue_t *q)
{
    return q->order_next;
}

const char *sched_queue_key(const sched_queue_t *q)
{
    return q->key;
}

size_t sched_queue_free(const sched_queue_t *q)
{
    return q->nfree;
}

size_t sched_queue_pending(const sched_queue_t *q)
{
    return q->nreq;
}

size_t sched_nqueues(const sched_t *s)
{
    return s->nqueues;
}
