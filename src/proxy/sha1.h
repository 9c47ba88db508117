/* sha1: SHA-1 (FIPS 180-4), only for the WebSocket handshake
 * (Sec-WebSocket-Accept, RFC 6455 §4.2.2). Not for anything that needs a
 * secure hash. */
#ifndef TVMRPC_PROXY_SHA1_H
#define TVMRPC_PROXY_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define SHA1_LEN 20

typedef struct sha1 {
    uint32_t h[5];
    uint64_t nbytes;   /* message bytes hashed so far */
    uint8_t block[64]; /* partial block */
    size_t used;       /* bytes in block */
} sha1_t;

void sha1_init(sha1_t *s);
void sha1_update(sha1_t *s, const void *p, size_t n);
void sha1_final(sha1_t *s, uint8_t out[SHA1_LEN]);
/* One-shot convenience. */
void sha1(const void *p, size_t n, uint8_t out[SHA1_LEN]);

#endif
