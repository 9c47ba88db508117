/* Ranges of runtime-owned host memory clients may address (hostmem.h).
 * A flat array: a process holds a few hundred ranges at most (one per
 * storage slot of each live executor) and lookups happen per copy, not per
 * kernel call. */
#include "server/hostmem.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct range {
    uintptr_t base;
    uint64_t n;
} range_t;

static pthread_mutex_t hm_mu = PTHREAD_MUTEX_INITIALIZER;
static range_t *hm_v;
static size_t hm_n, hm_cap;

int hostmem_add(const void *p, uint64_t n)
{
    int rc = 0;
    pthread_mutex_lock(&hm_mu);
    if (hm_n == hm_cap) {
        size_t ncap = hm_cap ? hm_cap * 2 : 64;
        range_t *nv = realloc(hm_v, ncap * sizeof(*nv));
        if (!nv) {
            rc = -1;
            goto out;
        }
        hm_v = nv;
        hm_cap = ncap;
    }
    hm_v[hm_n].base = (uintptr_t)p;
    hm_v[hm_n].n = n;
    hm_n++;
out:
    pthread_mutex_unlock(&hm_mu);
    return rc;
}

void hostmem_remove(const void *p)
{
    pthread_mutex_lock(&hm_mu);
    for (size_t i = 0; i < hm_n; i++) {
        if (hm_v[i].base == (uintptr_t)p) {
            hm_v[i] = hm_v[--hm_n];
            break;
        }
    }
    pthread_mutex_unlock(&hm_mu);
}

int hostmem_contains(uint64_t p, uint64_t n)
{
    int found = 0;
    pthread_mutex_lock(&hm_mu);
    for (size_t i = 0; i < hm_n && !found; i++) {
        uint64_t base = hm_v[i].base, size = hm_v[i].n;
        found = p >= base && p - base <= size && n <= size - (p - base);
    }
    pthread_mutex_unlock(&hm_mu);
    return found;
}
