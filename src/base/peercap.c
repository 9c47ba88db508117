#include "base/peercap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"

#define MIN_SLOTS 16

/* n == 0 marks a free slot: an address leaves the table with its last
 * connection. */
struct peercap_slot {
    uint8_t addr[16]; /* IPv6 form; IPv4 as ::ffff:a.b.c.d */
    uint32_t n;       /* open connections */
    uint32_t h;       /* hash of addr, so probing and resizing need no rehash */
};

/* ---- keys ---------------------------------------------------------------------- */

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* The 16-byte key of an address; -1 if it is not IPv4 or IPv6. */
static int key_of(const struct sockaddr_storage *ss, uint8_t key[16])
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        memcpy(key, v4_mapped, 12);
        memcpy(key + 12, &sin->sin_addr, 4);
        return 0;
    }
    if (ss->ss_family == AF_INET6) {
        /* A dual-stack socket shows IPv4 peers mapped: same bytes as above. */
        memcpy(key, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

int peercap_parse_ip(const char *ip, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
        ss->ss_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
        ss->ss_family = AF_INET6;
        return 0;
    }
    return -1;
}

/* SipHash-1-3 of the 16-byte key: keyed, so peers that pick their
 * addresses (an IPv6 /64 has plenty) cannot line them up in one probe run. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void sip_round(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = ROTL(v[1], 13) ^ v[0];
    v[0] = ROTL(v[0], 32);
    v[2] += v[3];
    v[3] = ROTL(v[3], 16) ^ v[2];
    v[0] += v[3];
    v[3] = ROTL(v[3], 21) ^ v[0];
    v[2] += v[1];
    v[1] = ROTL(v[1], 17) ^ v[2];
    v[2] = ROTL(v[2], 32);
}

static uint32_t key_hash(const peercap_t *pc, const uint8_t key[16])
{
    uint64_t v[4] = {pc->seed[0] ^ 0x736f6d6570736575ULL, pc->seed[1] ^ 0x646f72616e646f6dULL,
                     pc->seed[0] ^ 0x6c7967656e657261ULL, pc->seed[1] ^ 0x7465646279746573ULL};
    const uint64_t m[3] = {le64(key), le64(key + 8), (uint64_t)16 << 56};
    for (int i = 0; i < 3; i++) {
        v[3] ^= m[i];
        sip_round(v);
        v[0] ^= m[i];
    }
    v[2] ^= 0xff;
    for (int i = 0; i < 3; i++)
        sip_round(v);
    uint64_t h = v[0] ^ v[1] ^ v[2] ^ v[3];
    return (uint32_t)(h ^ h >> 32);
}

/* ---- table --------------------------------------------------------------------- */

static size_t find(const peercap_t *pc, const uint8_t key[16], uint32_t h)
{
    size_t mask = pc->nslots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const peercap_slot_t *s = &pc->slots[i];
        if (!s->n || (s->h == h && memcmp(s->addr, key, 16) == 0))
            return i; /* the load stays below 1/2, so a free slot ends every run */
    }
}

static int resize(peercap_t *pc, size_t nslots)
{
    peercap_slot_t *old = pc->slots;
    size_t nold = pc->nslots;
    pc->slots = calloc(nslots, sizeof(*pc->slots));
    if (!pc->slots) {
        pc->slots = old;
        return -1;
    }
    pc->nslots = nslots;
    for (size_t i = 0; i < nold; i++) {
        if (old[i].n)
            pc->slots[find(pc, old[i].addr, old[i].h)] = old[i];
    }
    free(old);
    return 0;
}

/* Linear probing without tombstones: pull later members of the run back
 * into the hole, so lookups never have to skip deleted slots. */
static void delete_at(peercap_t *pc, size_t hole)
{
    size_t mask = pc->nslots - 1;
    for (size_t j = (hole + 1) & mask; pc->slots[j].n; j = (j + 1) & mask) {
        size_t home = pc->slots[j].h & mask;
        /* Entry j may move to the hole unless its home lies in (hole, j]. */
        int stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            pc->slots[hole] = pc->slots[j];
            hole = j;
        }
    }
    pc->slots[hole].n = 0;
    pc->used--;
}

/* ---- public -------------------------------------------------------------------- */

void peercap_init(peercap_t *pc, size_t cap)
{
    memset(pc, 0, sizeof(*pc));
    pc->cap = cap;
    if (getrandom(pc->seed, sizeof(pc->seed), GRND_NONBLOCK) != (ssize_t)sizeof(pc->seed)) {
        pc->seed[0] = (uint64_t)time(NULL) * 6364136223846793005ULL ^ (uint64_t)getpid();
        pc->seed[1] = (uint64_t)(uintptr_t)pc ^ (uint64_t)clock();
    }
}

void peercap_free(peercap_t *pc)
{
    free(pc->slots);
    pc->slots = NULL;
    pc->nslots = pc->used = 0;
}

int peercap_take(peercap_t *pc, const struct sockaddr_storage *ss)
{
    uint8_t key[16];
    if (!pc->cap || key_of(ss, key) < 0)
        return 0;
    uint32_t h = key_hash(pc, key);
    if (pc->slots) {
        peercap_slot_t *s = &pc->slots[find(pc, key, h)];
        if (s->n >= pc->cap)
            return PEERCAP_FULL;
        if (s->n) {
            s->n++;
            return 0;
        }
    }
    /* A new address: keep the load at most 1/2 so probe runs stay short. */
    if ((pc->used + 1) * 2 > pc->nslots && resize(pc, pc->nslots ? pc->nslots * 2 : MIN_SLOTS) < 0)
        return PEERCAP_NOMEM;
    peercap_slot_t *s = &pc->slots[find(pc, key, h)];
    memcpy(s->addr, key, 16);
    s->h = h;
    s->n = 1;
    pc->used++;
    return 0;
}

void peercap_release(peercap_t *pc, const struct sockaddr_storage *ss)
{
    uint8_t key[16];
    if (!pc->cap || !pc->slots || key_of(ss, key) < 0)
        return;
    size_t i = find(pc, key, key_hash(pc, key));
    if (!pc->slots[i].n || --pc->slots[i].n)
        return;
    delete_at(pc, i);
    /* Shrink after a crowd has left; at 1/8 so a steady load does not flap. */
    if (pc->nslots > MIN_SLOTS && pc->used * 8 < pc->nslots)
        resize(pc, pc->nslots / 2);
}

size_t peercap_count(const peercap_t *pc, const struct sockaddr_storage *ss)
{
    uint8_t key[16];
    if (!pc->cap || !pc->slots || key_of(ss, key) < 0)
        return 0;
    return pc->slots[find(pc, key, key_hash(pc, key))].n;
}

int peercap_take_ip(peercap_t *pc, const char *ip)
{
    struct sockaddr_storage ss;
    return peercap_parse_ip(ip, &ss) < 0 ? 0 : peercap_take(pc, &ss);
}

void peercap_release_ip(peercap_t *pc, const char *ip)
{
    struct sockaddr_storage ss;
    if (peercap_parse_ip(ip, &ss) == 0)
        peercap_release(pc, &ss);
}
