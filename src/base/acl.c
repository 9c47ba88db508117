#include "base/acl.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Textual address to bytes; returns the family (4 or 6) or 0. */
static int parse_addr(const char *s, uint8_t out[16])
{
    if (inet_pton(AF_INET, s, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, s, out) == 1) {
        /* ::ffff:a.b.c.d is an IPv4 peer on a dual-stack socket. */
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(out, mapped, 12) == 0) {
            memmove(out, out + 12, 4);
            return 4;
        }
        return 6;
    }
    return 0;
}

static void mask_host_bits(uint8_t *a, int bytes, int prefix)
{
    for (int i = 0; i < bytes; i++) {
        int keep = prefix - i * 8;
        uint8_t m = keep >= 8 ? 0xff : keep <= 0 ? 0 : (uint8_t)(0xff << (8 - keep));
        a[i] &= m;
    }
}

static int parse_net(const char *item, acl_net_t *net)
{
    char buf[128];
    if (strlen(item) >= sizeof(buf))
        return -1;
    strcpy(buf, item);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    memset(net, 0, sizeof(*net));
    net->family = parse_addr(buf, net->addr);
    if (!net->family)
        return -1;
    int max = net->family == 4 ? 32 : 128;
    net->prefix = max;
    if (slash) {
        char *end;
        long p = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || p < 0 || p > max)
            return -1;
        net->prefix = (int)p;
    }
    mask_host_bits(net->addr, max / 8, net->prefix);
    return 0;
}

int acl_parse(acl_t *acl, const char *spec, char *err, size_t errlen)
{
    memset(acl, 0, sizeof(*acl));
    size_t cap = 1;
    for (const char *p = spec; *p; p++)
        cap += *p == ',';
    acl->nets = calloc(cap, sizeof(*acl->nets));
    if (!acl->nets) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *p = spec;
    while (*p) {
        size_t len = strcspn(p, ",");
        char item[128];
        if (len == 0 || len >= sizeof(item)) {
            snprintf(err, errlen, "empty or overlong entry in allow list '%s'", spec);
            goto fail;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (parse_net(item, &acl->nets[acl->n]) < 0) {
            snprintf(err, errlen, "'%s' is not an address or CIDR network", item);
            goto fail;
        }
        acl->n++;
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
fail:
    acl_free(acl);
    return -1;
}

void acl_free(acl_t *acl)
{
    free(acl->nets);
    acl->nets = NULL;
    acl->n = 0;
}

int acl_allows(const acl_t *acl, const char *ip)
{
    if (!acl || acl->n == 0)
        return 1;
    uint8_t a[16];
    int fam = parse_addr(ip, a);
    for (size_t i = 0; fam && i < acl->n; i++) {
        const acl_net_t *net = &acl->nets[i];
        if (net->family != fam)
            continue;
        uint8_t m[16];
        memcpy(m, a, 16);
        mask_host_bits(m, fam == 4 ? 4 : 16, net->prefix);
        if (memcmp(m, net->addr, fam == 4 ? 4 : 16) == 0)
            return 1;
    }
    return 0;
}
