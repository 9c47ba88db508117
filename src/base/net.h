/* net: socket helpers after Redis's anet. Functions return -1 on failure and
 * describe the failure in err[NET_ERR_LEN] (may be NULL). */
#ifndef TVMRPC_NET_H
#define TVMRPC_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define NET_ERR_LEN 256
#define NET_IP_LEN 64 /* enough for any IPv6 text form */

/* Bind and listen on the first free port in [port, port_end), exactly like
 * TVM's tools: only EADDRINUSE moves on to the next port, any other bind
 * error fails at once. host goes through getaddrinfo, so IPv4 and IPv6
 * literals and names work. *bound receives the port. Non-blocking, CLOEXEC. */
int net_listen_range(const char *host, int port, int port_end, int backlog, int *bound, char *err);
/* Accept one connection (non-blocking listener): returns fd (non-blocking,
 * CLOEXEC, TCP_NODELAY, keepalive), or -1 with errno EAGAIN when none is pending, or
 * NET_ACCEPT_BUSY (err set) when out of descriptors or memory: the
 * connection stays queued, so a level-triggered caller must stop watching
 * the listener for a while instead of retrying at once. */
#define NET_ACCEPT_BUSY (-2)
#define NET_ACCEPT_PAUSE_MS 500
int net_accept(int lfd, char *ip, size_t iplen, int *port, char *err);

/* Blocking connect with a timeout (ms, -1 = OS default) trying every address
 * getaddrinfo returns. The fd is blocking, CLOEXEC, TCP_NODELAY. */
int net_connect(const char *host, int port, int timeout_ms, char *err);
/* net_connect, retried with exponential backoff (100 ms doubling, capped at
 * 2 s) while the total time stays under total_ms. */
int net_connect_retry(const char *host, int port, int total_ms, char *err);

int net_set_nonblock(int fd, int on);
int net_set_nodelay(int fd);
/* SO_KEEPALIVE with these probes (a vanished host is noticed within about
 * two minutes of silence); set on every accepted and connected socket. */
#define NET_KEEPALIVE_IDLE_S 60
#define NET_KEEPALIVE_INTVL_S 10
#define NET_KEEPALIVE_COUNT 6
int net_set_keepalive(int fd);
int net_set_cloexec(int fd);

/* Text IP of the peer / local end ("127.0.0.1", "::1"); IPv4-mapped IPv6
 * addresses are shown as plain IPv4. */
int net_peer_ip(int fd, char *ip, size_t iplen, int *port);
int net_local_port(int fd);

/* Blocking full read/write with a per-call deadline (ms, -1 = none). Return
 * 0, or -1 with err set ("connection closed by peer", "timed out", strerror).
 * A read that hits EOF before any byte sets *eof (if non-NULL). */
int net_read_full(int fd, void *p, size_t n, int timeout_ms, int *eof, char *err);
int net_write_full(int fd, const void *p, size_t n, int timeout_ms, char *err);

/* A read-ahead buffer over a socket, for request/reply loops: the reader
 * owns every byte received on fd after net_reader_init, so all reads of
 * that fd must go through it. */
typedef struct net_reader {
    int fd;
    uint8_t *buf;
    size_t cap, pos, len;
} net_reader_t;
int net_reader_init(net_reader_t *rd, int fd, size_t cap);
void net_reader_free(net_reader_t *rd);
/* Like net_read_full. */
int net_reader_read(net_reader_t *rd, void *p, size_t n, int timeout_ms, int *eof, char *err);
static inline size_t net_reader_buffered(const net_reader_t *rd)
{
    return rd->len - rd->pos;
}
/* One writev for the whole message where the kernel takes it (avoids Nagle
 * stalls between header and body); loops on partial writes. iov is modified. */
int net_writev_full(int fd, struct iovec *iov, int iovcnt, int timeout_ms, char *err);

/* Split "host:port" or "[v6]:port" into parts. */
int net_parse_hostport(const char *s, char *host, size_t hostlen, int *port, char *err);

#endif
