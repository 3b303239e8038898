/*
 * mta_sts_get: a session's MTA-STS policy lookup on its event loop, over
 * the shared cache of mta_sts_svc.h. One struct mta_sts_loop per worker
 * loop (the caller's, next to the loop's resolver) keeps that loop's
 * lookups in flight: requests for one domain share one TXT query and one
 * fetch (coalescing), each request is cancellable on its own. Across loops
 * a domain is fetched once too: a loop whose lookup finds another loop's
 * fetch under way waits for it (mta_sts_svc_poll, every 100 ms).
 *
 * The fetch is GET https://mta-sts.<domain>/.well-known/mta-sts.txt on port
 * 443 (RFC 8461 §3.3) through proxy/net/https_get: the certificate verified
 * against the service's CA file, no redirects, 200 and text/plain only,
 * 64 KiB, and the client's timeouts. Tests may send the fetches to another
 * port, or to a fixed address, with mta_sts_loop_set_target(); the host
 * name (SNI, Host, the certificate's name) stays mta-sts.<domain>.
 */
#ifndef SMTP_TLS_PROXY_MTA_STS_GET_H
#define SMTP_TLS_PROXY_MTA_STS_GET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "proxy/net/https_get.h"
#include "proxy/net/resolver.h"
#include "proxy/service/mta_sts_svc.h"

#define MTA_STS_GET_DONE 1 /* mta_sts_get(): answered at once, no callback */

struct mta_sts_job;
struct mta_sts_redis;

/* The loop-local part. The caller (the worker) owns it; only mta_sts_get.c
 * writes its fields. */
struct mta_sts_loop {
    uv_loop_t *loop;
    struct resolver *resolver; /* borrowed: the loop's */
    uint16_t port;             /* of the fetch: 443 */
    bool has_addr;             /* fetch from addr instead of resolving */
    struct sockaddr_storage addr;
    const struct https_get_limits *limits; /* NULL: https_get's defaults */
    struct mta_sts_job *jobs;              /* in flight on this loop, one per domain */
    uv_timer_t sweep;                      /* the proactive refresh, when started */
    bool sweep_init;
    struct mta_sts_redis *redis; /* the fleet's cache, when the service has one */
    uv_timer_t poll;             /* lookups waiting for another loop's fetch */
    bool poll_init;
    struct mta_sts_svc *sweep_svc; /* a reference, or NULL */
    uint64_t fetches;              /* started, for tests and metrics */
    uint64_t txt_queries;
    uint64_t refreshes; /* lookups the sweep started */
};

/* A loop's lookups use r (borrowed: the loop's resolver). One loop may
 * serve several services (a reload that changes the mta_sts block). */
void mta_sts_loop_init(struct mta_sts_loop *l, uv_loop_t *loop, struct resolver *r);

/* New lookups use r from now on (a reload that replaced the loop's
 * resolver); those under way finish on theirs. */
void mta_sts_loop_set_resolver(struct mta_sts_loop *l, struct resolver *r);

/* Tests and fixed set-ups: fetch on port (0: 443), and from addr (its own
 * port; NULL: resolve mta-sts.<domain>). addr is copied. */
void mta_sts_loop_set_target(struct mta_sts_loop *l, uint16_t port, const struct sockaddr *addr);

/* Abandons every lookup of l: no callback comes any more; the TXT queries
 * and fetches are cancelled. Call it before the resolver closes, never
 * from inside a callback of l. */
void mta_sts_loop_close(struct mta_sts_loop *l);

struct mta_sts_req;
/* The answer belongs to the callee: it releases a->policy (or keeps it). */
typedef void (*mta_sts_cb)(struct mta_sts_req *req, struct mta_sts_answer *a);

/* Zero it before its first use. */
struct mta_sts_req {
    void *data; /* the caller's */
    /* Private: */
    struct mta_sts_job *job;
    struct mta_sts_req *next;
    mta_sts_cb cb;
};

/*
 * The policy of domain (len bytes; one trailing dot ignored) for one
 * delivery, from svc (borrowed: it outlives the request) on loop l. When the cache can answer
 * without a lookup, returns MTA_STS_GET_DONE with *a filled in (the caller owns a->policy) and cb
 * never comes: a warm cache costs no system call and no loop round trip.
 * Otherwise returns 0 (the lookup holds a reference to svc until it ends)
 * and cb follows exactly once on l's loop, never from
 * inside this call, unless mta_sts_cancel(req) comes first. A name that
 * cannot have a policy (an address literal, too long) answers DONE with
 * MTA_STS_RESULT_NONE. Negative: UV_EBUSY when req is in use.
 */
int mta_sts_get(struct mta_sts_svc *svc, struct mta_sts_loop *l, const char *domain, size_t len,
                struct mta_sts_req *req, mta_sts_cb cb, struct mta_sts_answer *a);

/*
 * Looks domain up for the cache alone, as a delivery would but with nobody
 * waiting: the TXT record, then a fetch if the cache asks for one. Nothing
 * when a lookup of domain is already under way on l. 0 or a negative code.
 */
int mta_sts_refresh(struct mta_sts_svc *svc, struct mta_sts_loop *l, const char *domain);

/*
 * Every every_ms, refreshes up to MTA_STS_SWEEP_MAX of svc's policies that
 * are due (mta_sts_svc_due) from l. One loop of the process sweeps; a new
 * call replaces the service (a reference is kept), svc NULL stops.
 */
#define MTA_STS_SWEEP_MAX 16
#define MTA_STS_SWEEP_MS (60 * 1000)
void mta_sts_loop_sweep(struct mta_sts_loop *l, struct mta_sts_svc *svc, unsigned every_ms);

/* Whether req waits for its callback. */
bool mta_sts_req_active(const struct mta_sts_req *req);

/* Its callback will not come; req may be freed at once. The lookup itself
 * goes on for the others and for the cache. Accepts an idle req. */
void mta_sts_cancel(struct mta_sts_req *req);

#endif
