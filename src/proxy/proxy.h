/* proxy: the RPC proxy daemon (PROTOCOL.md §3), a drop-in for
 * `python -m tvm.exec.rpc_proxy`. Servers and clients both connect to it;
 * it pairs them by key and then relays bytes (relay.c). Without a tracker
 * it keeps one pool of waiting servers and one of waiting clients per
 * match key (§3.3); with a tracker it registers every waiting server there
 * under a fresh slot key and admits only clients presenting a slot key
 * (§3.4). The same endpoint is offered as WebSocket /ws on the web port
 * (§3.6). Peers are admitted at accept on both ports by --allow and by
 * connection caps, overall and per IP address (base/peercap.c).
 * Single-threaded on the ev loop; nothing blocks it except name
 * resolution of a non-numeric tracker host. */
#ifndef TVMRPC_PROXY_H
#define TVMRPC_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "base/acl.h"
#include "proxy/relay.h"

typedef struct proxy_config {
    const char *host; /* bind address of the RPC port; TVM's default 127.0.0.1 */
    int port, port_end;
    int web_port;            /* HTTP/WebSocket port; 0 = off */
    const char *web_host;    /* bind address of the web port; default 0.0.0.0 as tornado */
    const char *tracker;     /* "host:port", or NULL/"" for no tracker */
    const char *custom_addr; /* host the tracker hands to clients instead of our address */
    int timeout_server_ms, timeout_client_ms; /* no-tracker pools; TVM 600 s */
    int handshake_timeout_ms;
    size_t max_conns;          /* handshaking + waiting + 2 per pair */
    size_t max_conns_per_peer; /* the same, per peer IP address; 0 = no limit */
    const acl_t *allow;        /* --allow on both ports; NULL or empty = everyone */
    uint64_t ws_max_frame;
    relay_config_t relay;
} proxy_config_t;

typedef struct proxy proxy_t;

void proxy_config_defaults(proxy_config_t *cfg);
/* Bind and prepare. NULL with err on failure. A web port that cannot be
 * bound is only a warning (the TCP proxy matters more). */
proxy_t *proxy_create(const proxy_config_t *cfg, char *err, size_t errlen);
int proxy_port(const proxy_t *p);
int proxy_web_port(const proxy_t *p); /* 0 when off or not bound */
/* Serve until a byte arrives on sig_fd (sig.h's pipe; -1 = never). */
int proxy_run(proxy_t *p, int sig_fd);
void proxy_free(proxy_t *p);

/* ---- handshake parsing, exposed for tests ---------------------------------- */

/* The handshake itself is parsed by rpc_hs_parse (rpc/rpc.h). */

/* Classify a key as TVM's proxy does: "server:..." is a server, anything
 * else a client; the match key is the first whitespace-separated token
 * after the 7-character prefix ("client:abc -timeout=10" -> "abc").
 * -1 with a reason if there is no match key or the key holds a NUL byte. */
int proxy_key_parse(const uint8_t *key, size_t len, int *is_server, char *match, size_t matchlen,
                    const char **why);

#endif
