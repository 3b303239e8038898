/*
 * session: one proxied SMTP session. It owns both legs (client and server
 * conn), the session timer and one dialogue engine, driven through the
 * engine's table of operations (core/engine.h); it runs the engine's
 * actions, the deadlines and the lifecycle. A session is freed when its last
 * handle has closed and no request (a name lookup) can call back into it.
 *
 * Whoever runs an event loop (the worker) keeps one session_set for it and
 * hands accepted connections to session_accept(); everything else about
 * sessions stays inside this module.
 */
#ifndef SMTP_TLS_PROXY_SESSION_H
#define SMTP_TLS_PROXY_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>

#include <uv.h>

#include "proxy/net/resolver.h"
#include "proxy/obs/metrics.h"
#include "proxy/service/tlsrpt_store.h"
#include "proxy/session/options.h"
#include "proxy/tls/tls.h"

struct mta_sts_svc;  /* proxy/service/mta_sts_svc.h */
struct mta_sts_loop; /* proxy/service/mta_sts_get.h */

/*
 * One listener's settings as of one configuration: immutable, shared by
 * every session that listener accepts until the next reload. It lives
 * inside something reference-counted by its owner; a session keeps it alive
 * with hold() and gives it back with release() (both callable from any
 * worker thread).
 */
struct session_profile {
    const char *name;
    bool outbound;
    const struct session_inbound_opts *in;   /* when !outbound */
    const struct session_outbound_opts *out; /* when outbound */
    struct tls_ctx *tls;                     /* server (inbound) or client context */
    struct metrics_listener *metrics;        /* may be NULL */
    atomic_uint *active;                     /* open sessions of this listener, all workers */
    struct tlsrpt_store *tls_rpt;            /* outbound tls_rpt = true: where results go
                                                (borrowed, outlives the profile); else NULL */
    void (*hold)(const struct session_profile *p);
    void (*release)(const struct session_profile *p);
    /* Outbound with opts mta_sts: the process's MTA-STS policy service
     * (proxy/service/mta_sts_svc.h), borrowed, outliving the profile. */
    struct mta_sts_svc *mta_sts;
};

struct session;

/* The sessions of one event loop. The caller owns the struct; only this
 * module reads or writes its fields. */
struct session_set {
    uv_loop_t *loop;
    struct session *head;
    unsigned count;
    bool stopping;
    void (*on_empty)(struct session_set *set);
    void *owner;
    struct resolver *resolver;  /* borrowed: the loop's; NULL = none */
    struct mta_sts_loop *mta_sts; /* borrowed: the loop's MTA-STS lookups; NULL = none */
};

/* on_empty is called (from the loop) when the set is stopping and its last
 * session has been freed, or at once by session_set_stop() if it is empty. */
void session_set_init(struct session_set *set, uv_loop_t *loop,
                      void (*on_empty)(struct session_set *set), void *owner);

/* The resolver new sessions of set look names up with (borrowed: the
 * caller keeps it open while any session may use it, i.e. closes it with
 * resolver_close(), which waits for their lookups). NULL: none. */
void session_set_resolver(struct session_set *set, struct resolver *r);

/* The loop-local context (proxy/service/mta_sts_get.h) with which new
 * sessions of set look recipient domains' policies up in their profile's
 * MTA-STS service (borrowed, like the resolver). NULL: none. */
void session_set_mta_sts(struct session_set *set, struct mta_sts_loop *l);

/* From now on accepted connections are refused with 421 4.3.2. */
void session_set_stop(struct session_set *set);

/* Ends every session now: 421 4.3.2 to each client, then close. */
void session_set_shutdown(struct session_set *set);

/* Makes fd, a connection the caller accepted (non-blocking), a new session
 * of set, using profile (NULL: the listener was removed by a reload; the
 * connection is closed). The session owns fd from the call on. Never fails
 * visibly: a failure is logged and the connection dropped. */
void session_accept(struct session_set *set, int fd, const struct session_profile *profile);

#endif
