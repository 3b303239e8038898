/*
 * listener: one listening socket of one worker. Sockets are created here
 * (not by uv_tcp_bind) so that SO_REUSEPORT can be set before bind.
 */
#ifndef SMTP_TLS_PROXY_LISTENER_H
#define SMTP_TLS_PROXY_LISTENER_H

#include <stdbool.h>

#include <uv.h>

#include "proxy/app/config.h"

struct worker;
struct listener_shared;

struct listener {
    uv_tcp_t tcp;
    struct worker *w;
    struct listener_shared *shared; /* borrowed: lives for the process */
    bool open;
};

/* Binds and listens on addr for worker w. 0 or a negative errno-style code
 * (a libuv code) naming why in msg ("cannot bind 0.0.0.0:25: ..."). */
int listener_open(struct listener *l, struct worker *w, struct listener_shared *shared,
                  const struct addr *addr, char *msg, size_t msglen);
void listener_close(struct listener *l);

#endif
