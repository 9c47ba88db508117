/* acl: "--allow CIDR[,CIDR...]" lists. A peer whose address is outside every
 * listed network is refused at accept. An empty list allows everyone. */
#ifndef TVMRPC_ACL_H
#define TVMRPC_ACL_H

#include <stddef.h>
#include <stdint.h>

typedef struct acl_net {
    int family;       /* 4 or 6 */
    uint8_t addr[16]; /* network address, host bits cleared */
    int prefix;       /* prefix length in bits */
} acl_net_t;

typedef struct acl {
    acl_net_t *nets;
    size_t n;
} acl_t;

/* Parse "10.0.0.0/8,192.168.1.7,::1/128". -1 with err naming the bad entry. */
int acl_parse(acl_t *acl, const char *spec, char *err, size_t errlen);
void acl_free(acl_t *acl);
/* Is the textual address ip (as net_accept reports it) allowed? */
int acl_allows(const acl_t *acl, const char *ip);

#endif
