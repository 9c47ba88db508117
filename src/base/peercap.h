/* peercap: open connections per peer address, with a cap.
 *
 * A daemon calls peercap_take when it accepts a connection and refuses the
 * connection if that fails; it calls peercap_release once the connection's
 * socket is closed. Counting is per IP address (IPv4-mapped IPv6 counts as
 * the IPv4 address), not per port, so one host's connections add up.
 *
 * A hash table keyed by address, open addressing with linear probing and a
 * random seed (peers cannot aim collisions at one bucket without knowing
 * it). An address is only in the table while it holds a connection, and
 * the table shrinks as they leave, so memory follows the number of peers
 * connected right now (under 100 bytes each), which the caller's overall
 * connection limit already bounds. take and release are O(1) on average. */
#ifndef TVMRPC_PEERCAP_H
#define TVMRPC_PEERCAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PEERCAP_FULL (-1)  /* the address already holds cap connections */
#define PEERCAP_NOMEM (-2) /* the table could not grow */

typedef struct peercap_slot peercap_slot_t;

typedef struct peercap {
    size_t cap;            /* connections allowed per address; 0 = no limit, nothing counted */
    peercap_slot_t *slots; /* nslots entries, a power of two; NULL until first use */
    size_t nslots, used;   /* table size, addresses holding a connection */
    uint64_t seed[2];
} peercap_t;

void peercap_init(peercap_t *pc, size_t cap);
void peercap_free(peercap_t *pc);

/* Count one more connection from the peer. 0, PEERCAP_FULL or PEERCAP_NOMEM
 * (nothing counted then). Addresses other than AF_INET/AF_INET6 are not
 * counted and always allowed. */
int peercap_take(peercap_t *pc, const struct sockaddr_storage *ss);
/* One connection from the peer closed. Must match an earlier successful take. */
void peercap_release(peercap_t *pc, const struct sockaddr_storage *ss);
/* Connections counted for the peer (0 when cap is 0). */
size_t peercap_count(const peercap_t *pc, const struct sockaddr_storage *ss);

/* The same, with the address as text ("10.0.0.7", "::1", as net_accept
 * reports it); text that is no address is not counted and always allowed. */
int peercap_take_ip(peercap_t *pc, const char *ip);
void peercap_release_ip(peercap_t *pc, const char *ip);
/* The address in text form as a sockaddr; -1 (ss zeroed, so never counted)
 * for text that is no IPv4 or IPv6 address. */
int peercap_parse_ip(const char *ip, struct sockaddr_storage *ss);

#endif
