/* relay: moves bytes between the two ends of a paired connection after the
 * proxy's handshake (PROTOCOL.md §3.2), on the ev loop.
 *
 * TCP to TCP, the bytes go through one pipe per direction with splice(2),
 * so bulk data never enters user space; everything else (WebSocket ends,
 * kernels without splice for sockets) reads into a bounded user-space
 * buffer. In both cases a source is read only while the bytes queued for
 * its destination stay below a bound, so a slow reader back-pressures the
 * writer through TCP instead of growing memory.
 *
 * When either end closes or fails, nothing more is read from either end;
 * what is queued for the surviving end is flushed, then it is closed too
 * (TVM's proxy behaves the same way: no half-open pairs). */
#ifndef TVMRPC_PROXY_RELAY_H
#define TVMRPC_PROXY_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "base/ev.h"
#include "proxy/ws.h"

typedef struct relay relay_t;

typedef struct relay_config {
    size_t high_water;      /* copy mode: bytes queued toward one end before its source is paused */
    size_t pipe_size;       /* splice mode: pipe size asked for (the pipe is the queue) */
    int splice;             /* use splice(2) for TCP-to-TCP pairs where the kernel allows */
    int linger_ms;          /* while closing: give up on an end that accepts no byte this long */
    int busy_poll_us;       /* after relaying bytes, poll instead of sleeping this long (0 = off) */
    int64_t *poll_until_ns; /* the loop's busy-poll deadline, shared by its relays; NULL = off */
} relay_config_t;

typedef struct relay_end_cfg {
    int fd;              /* connected, non-blocking; owned by the relay from now on */
    int ws;              /* the end speaks WebSocket frames */
    const ws_dec_t *dec; /* WebSocket decoder state from the handshake phase */
    const uint8_t *out;  /* wire-ready bytes to send first (the handshake reply) */
    size_t outlen;
    const char *name; /* for log lines, e.g. "client:abc (10.0.0.2:40112)" */
} relay_end_cfg_t;

/* Called once, from inside the loop, just before a finished relay frees itself. */
typedef void relay_done_fn(void *ctx, relay_t *r);

void relay_config_defaults(relay_config_t *cfg);
/* Start relaying. The fds belong to the relay even when this fails (they
 * are closed). Nothing is sent before the loop runs again. */
relay_t *relay_start(ev_loop_t *loop, const relay_config_t *cfg, const relay_end_cfg_t *a,
                     const relay_end_cfg_t *b, relay_done_fn *done, void *ctx, char *err,
                     size_t errlen);
/* Close both ends at once (shutdown path); done is not called. */
void relay_free(relay_t *r);
/* 1 if the pair moves its bytes with splice(2). */
int relay_uses_splice(const relay_t *r);
/* Timeout for the loop's next wait given the deadline in poll_until_ns: 0
 * (poll) before it, -1 (sleep until an event) after. A relayed message is
 * usually followed by an answer within tens of microseconds; polling for it
 * saves the proxy a sleep and a wake-up per hop, which on virtual machines
 * costs more than the hop itself. */
int relay_poll_timeout_ms(int64_t poll_until_ns);

#endif
