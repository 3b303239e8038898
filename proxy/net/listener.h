/*
 * listener: one listening socket on one event loop. The socket is made here
 * (not by uv_tcp_bind) so that SO_REUSEPORT is set before bind; every
 * pending connection is handed to the owner's on_accept, which accepts it
 * from l->tcp. The listener knows nothing of sessions or workers.
 */
#ifndef SMTP_TLS_PROXY_LISTENER_H
#define SMTP_TLS_PROXY_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "proxy/core/addr.h"

struct listener;

/* A connection is pending on l->tcp: accept it (or not: libuv then stops
 * polling the socket until the next accept attempt). */
typedef void (*listener_accept_cb)(struct listener *l);

struct listener {
    uv_tcp_t tcp;
    listener_accept_cb on_accept;
    void *owner;      /* borrowed, for on_accept */
    size_t slot;      /* the owner's index for this listener */
    char name[128];   /* for log lines */
    bool open;
};

/* Binds and listens on addr. 0 or a negative libuv code, with a message
 * naming the listener and the address in msg ("listener mx: cannot listen
 * on 0.0.0.0:25: address already in use"). */
int listener_open(struct listener *l, uv_loop_t *loop, const char *name, const struct addr *addr,
                  listener_accept_cb on_accept, void *owner, size_t slot, char *msg,
                  size_t msglen);

/* Idempotent; the handle is embedded, so the loop must run once more before
 * the struct may be reused. */
void listener_close(struct listener *l);

#endif
