/* b64: base64 (RFC 4648 §4, standard alphabet, '=' padding), for the
 * WebSocket handshake. */
#ifndef TVMRPC_PROXY_B64_H
#define TVMRPC_PROXY_B64_H

#include <stddef.h>
#include <stdint.h>

/* Characters b64_encode writes for n input bytes, without the NUL. */
#define B64_ENCODED_LEN(n) ((((n) + 2) / 3) * 4)

/* Encode n bytes into out (B64_ENCODED_LEN(n) + 1 bytes, NUL-terminated).
 * Returns the text length. */
size_t b64_encode(const uint8_t *p, size_t n, char *out);
/* Decode exactly len characters of canonical padded base64 (no whitespace,
 * length a multiple of 4, zero pad bits). Returns the byte count written to
 * out (which must hold len / 4 * 3 bytes), or -1 if the text is not valid. */
long b64_decode(const char *s, size_t len, uint8_t *out);

#endif
