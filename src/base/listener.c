/* The accept loop shared by the daemons (see listener.h). */
#include "base/listener.h"

#include <stdio.h>
#include <unistd.h>

#include "base/log.h"
#include "base/net.h"

static void listener_on_readable(ev_loop_t *loop, int fd, void *data, int mask);

void listener_init(listener_t *l, ev_loop_t *loop, int fd, const listener_config_t *cfg)
{
    l->cfg = *cfg;
    l->loop = loop;
    l->fd = fd;
    l->on = 0;
    l->pause = NULL;
}

int listener_enable(listener_t *l, int on)
{
    l->on = on;
    if (l->pause)
        return 0; /* listener_resume applies l->on */
    if (!on) {
        ev_del(l->loop, l->fd, EV_READ);
        return 0;
    }
    return ev_add(l->loop, l->fd, EV_READ, listener_on_readable, l);
}

static int64_t listener_resume(ev_loop_t *loop, ev_timer_t *t, void *data)
{
    listener_t *l = data;
    l->pause = NULL;
    if (l->on)
        ev_add(loop, l->fd, EV_READ, listener_on_readable, l);
    return EV_NOMORE;
}

static void listener_pause(listener_t *l, const char *err)
{
    ev_del(l->loop, l->fd, EV_READ);
    if (l->pause)
        return;
    log_warn("%s: %s; not accepting for %d ms", l->cfg.name, err, NET_ACCEPT_PAUSE_MS);
    l->pause = ev_timer_add(l->loop, NET_ACCEPT_PAUSE_MS, listener_resume, l);
}

static int listener_refuse(const listener_t *l, const char *ip, int port, const char *why)
{
    log_warn("%s: %s%s:%d: %s; refusing", l->cfg.name, l->cfg.port_name, ip, port, why);
    return -1;
}

/* --allow first, then the overall cap, then the per-address cap. 0 with the
 * peer counted in cfg.peers (addr filled in), or -1 after a log line. */
static int listener_admit(listener_t *l, const char *ip, int port, struct sockaddr_storage *addr)
{
    const listener_config_t *c = &l->cfg;
    if (!acl_allows(c->allow, ip))
        return listener_refuse(l, ip, port, "not in --allow");
    if (c->max_conns && c->count(c->data) >= c->max_conns) {
        char why[64];
        snprintf(why, sizeof(why), "connection limit %zu reached", c->max_conns);
        return listener_refuse(l, ip, port, why);
    }
    /* net_accept's text form round-trips: the same key the kernel's address gives. */
    peercap_parse_ip(ip, addr);
    int rc = peercap_take(c->peers, addr);
    if (rc == PEERCAP_FULL)
        return listener_refuse(l, ip, port, c->peer_full);
    if (rc < 0)
        return listener_refuse(l, ip, port, "out of memory counting connections");
    return 0;
}

static void listener_on_readable(ev_loop_t *loop, int fd, void *data, int mask)
{
    listener_t *l = data;
    for (int i = 0; i < l->cfg.batch; i++) {
        char ip[NET_IP_LEN], err[NET_ERR_LEN] = "";
        int port = 0;
        int cfd = net_accept(fd, ip, sizeof(ip), &port, err);
        if (cfd == NET_ACCEPT_BUSY) {
            listener_pause(l, err);
            return;
        }
        if (cfd < 0) {
            if (err[0])
                log_warn("%s: %s", l->cfg.name, err);
            return;
        }
        struct sockaddr_storage addr;
        if (listener_admit(l, ip, port, &addr) < 0) {
            close(cfd);
            continue;
        }
        if (l->cfg.on_conn(l->cfg.data, cfd, ip, port, &addr))
            return;
    }
}
