/*
 * listener: listening sockets, in two halves.
 *
 * Binding (listener_probe, listener_socket) is plain socket code that runs on
 * the main thread, before any worker uses the result: a bind error is then
 * an answer the caller can act on (refuse to start, refuse a reload) rather
 * than something each worker finds out alone. The workers' sockets carry
 * SO_REUSEPORT so the kernel spreads connections across them; the probe does
 * not, so that an address somebody else holds (another instance, a Postfix
 * master) is found even when that holder set SO_REUSEPORT too.
 *
 * Serving (listener_start) watches one bound socket on one event loop with
 * a uv_poll_t and accepts with accept4() itself, handing every new
 * descriptor to the owner. Accepting ourselves, rather than through
 * uv_listen, is what lets a listener stop when the process runs out of file
 * descriptors: libuv has no way to pause a listening handle, and a
 * level-triggered socket with a pending connection that cannot be accepted
 * otherwise wakes the loop forever. On EMFILE/ENFILE (and ENOBUFS/ENOMEM)
 * the listener uses the loop's reserve descriptor to accept one pending
 * connection and close it at once (so that client learns something),
 * stops watching for LISTENER_BACKOFF_MIN_MS, doubling up to
 * LISTENER_BACKOFF_MAX_MS while the shortage lasts, and resumes by itself.
 * Its warnings are rate-limited: one line per second per listener and kind
 * of event, the next one saying how many were suppressed.
 */
#ifndef SMTP_TLS_PROXY_LISTENER_H
#define SMTP_TLS_PROXY_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "proxy/core/addr.h"

#define LISTENER_BACKLOG 1024
#define LISTENER_BACKOFF_MIN_MS 100
#define LISTENER_BACKOFF_MAX_MS 1000
/* Connections accepted per wake-up, so that one busy listener cannot
 * starve the loop's sessions. */
#define LISTENER_ACCEPT_BATCH 64

struct listener;

/* A connection was accepted: fd (non-blocking, close-on-exec) is the
 * owner's from now on. May not free the listener (listener_close may be
 * called). */
typedef void (*listener_accept_cb)(struct listener *l, int fd);

/* One warning kind's rate limit. */
struct listener_rate {
    uint64_t last_ms;   /* loop time of the last line logged, 0: none yet */
    unsigned suppressed;
};

enum listener_event {
    LISTENER_EV_PAUSED,    /* out of descriptors (or memory): accepting paused */
    LISTENER_EV_DROPPED,   /* a pending connection accepted and closed at once */
    LISTENER_EV_FAILED,    /* any other accept error */
    LISTENER_EV_COUNT,
};

struct listener {
    uv_poll_t poll;
    uv_timer_t backoff;
    uv_loop_t *loop;
    int fd;
    int *reserve;              /* the loop's reserve descriptor (borrowed), or NULL */
    listener_accept_cb on_accept;
    void *owner;               /* borrowed, for on_accept */
    const void *data;          /* the owner's, untouched here */
    char name[128];            /* for log lines; the owner may rename */
    unsigned backoff_ms;       /* 0: accepting normally */
    uint64_t paused_since_ms;
    struct listener_rate rate[LISTENER_EV_COUNT];
    unsigned handles;          /* open handles; freed when 0 after close */
    bool closing;
};

/* Whether anybody holds addr: binds a socket without SO_REUSEPORT (with
 * SO_REUSEADDR, so our own connections in TIME_WAIT do not count) and closes
 * it. 0 or a negative errno; "msg" names the listener and the address. Call
 * it only for addresses this process does not listen on itself. */
int listener_probe(const char *name, const struct addr *addr, char *msg, size_t msglen);

/* A non-blocking socket with SO_REUSEPORT bound to addr and listening, in
 * *fd. 0 or a negative errno, with a message as listener_probe. */
int listener_socket(const char *name, const struct addr *addr, int *fd, char *msg,
                    size_t msglen);

/* The message of the two above: "listener mx: cannot listen on
 * 127.0.0.1:25: address already in use". */
void listener_error(char *msg, size_t msglen, const char *name, const struct addr *addr, int rc);

/* A descriptor to keep in reserve (on /dev/null), or -1. */
int listener_reserve_open(void);

/* Starts accepting on fd (from listener_socket) on loop; the listener owns
 * fd from then on, also on failure (closed). reserve is the loop's reserve
 * descriptor, shared by its listeners, or NULL. A new listener, or NULL with
 * the libuv code in *err. Loop thread, or before the loop runs. */
struct listener *listener_start(uv_loop_t *loop, int fd, int *reserve, const char *name,
                                listener_accept_cb on_accept, void *owner, int *err);

/* Stops accepting and closes the socket (connections still queued on it
 * are reset by the kernel; new ones are refused once no socket is left on
 * the address). The memory is freed by the close callbacks: the loop must
 * run once more. Idempotent; accepts NULL. */
void listener_close(struct listener *l);

#endif
