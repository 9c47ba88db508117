/* server: the RPC server daemon (PROTOCOL.md §1.8, §2, §3.5). The parent
 * process accepts connections, runs handshakes without blocking, keeps the
 * tracker link and enforces session timeouts; each session runs in a forked
 * worker (session.c) so a crash in user code ends only that session. */
#ifndef TVMRPC_SERVER_H
#define TVMRPC_SERVER_H

#include "base/acl.h"
#include "server/session.h"

typedef struct server_config {
    const char *host; /* bind address, or the proxy's address with through_proxy */
    int port, port_end;
    const char *tracker; /* "host:port" or NULL */
    const char *key;     /* device key; "" by default as in TVM */
    const char *custom_addr;
    const char *load_library; /* "a.so:b.so", loaded in each worker */
    int through_proxy;
    int no_fork;
    int handshake_timeout_ms;
    const acl_t *allow;        /* peers outside are refused at accept; NULL = everyone */
    size_t max_conns_per_peer; /* unfinished handshakes per peer address; 0 = no limit */
    session_config_t session;
} server_config_t;

void server_config_defaults(server_config_t *cfg);
/* Serve until SIGINT/SIGTERM on sig_fd. Returns the exit status. */
int server_run(const server_config_t *cfg, int sig_fd);

/* Parse the options after the first token of a client key (" -timeout=N").
 * Returns the timeout in seconds (0 = none). Exposed for tests. */
double server_parse_timeout(const char *key);
/* Does the client key's first token equal "client:" + expect? */
int server_key_matches(const char *client_key, const char *expect);

#endif
