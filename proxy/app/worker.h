/*
 * worker: one event-loop thread. Each worker binds its own listening
 * sockets with SO_REUSEPORT, so the kernel spreads connections across
 * workers and no lock is taken on the accept path. A worker owns the
 * sessions it accepted from start to end.
 *
 * runtime: what a reload (SIGHUP) replaces as a whole — the configuration
 * and the TLS contexts made from it. Sessions hold a reference to the
 * runtime they started with, so a reload never changes a live session.
 */
#ifndef SMTP_TLS_PROXY_WORKER_H
#define SMTP_TLS_PROXY_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>

#include <uv.h>

#include "proxy/app/config.h"
#include "proxy/obs/metrics.h"
#include "proxy/tls/tls.h"

struct runtime {
    atomic_int refs;
    struct config *cfg;
    struct tls_ctx **inbound_tls;  /* server contexts, one per cfg->inbound[i] */
    struct tls_ctx **outbound_tls; /* client contexts, one per cfg->outbound[i] */
};

/* Builds contexts for cfg (taking ownership of cfg on success). NULL and a
 * message in err on failure (cfg is then left to the caller). */
struct runtime *runtime_new(struct config *cfg, char *err, size_t errlen);
/* The current runtime with a new reference. */
struct runtime *runtime_acquire(void);
/* Makes rt current (the caller's reference moves in). */
void runtime_install(struct runtime *rt);
void runtime_unref(struct runtime *rt); /* accepts NULL */

/* Listener-wide state shared by all workers, kept for the process life. */
struct listener_shared {
    char name[128];
    bool outbound;
    atomic_uint active;
    struct metrics_listener *metrics;
};

struct worker;

/* Creates n workers whose listeners are bound to the sockets of the current
 * runtime's config. 0 or a negative code; on error msg says which address
 * could not be bound. */
int workers_start(unsigned n, char *msg, size_t msglen);
/* Asks all workers to stop accepting and to end their sessions within
 * shutdown_timeout seconds; returns after every worker has finished. */
void workers_stop_and_join(unsigned shutdown_timeout);



struct session;

struct worker {
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wake;           /* "stop" from the main thread */
    uv_timer_t grace;          /* shutdown_timeout after stop */
    unsigned index;
    struct listener *listeners;
    size_t nlisteners;
    struct session *sessions;  /* doubly linked, for shutdown */
    unsigned nsessions;
    atomic_bool stop_requested;
    unsigned shutdown_timeout;
    bool stopping;
};

/* Called by a session when its last handle has closed (it is unlinked). */
void worker_session_done(struct worker *w);
#endif
