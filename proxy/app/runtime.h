/*
 * runtime: what a reload (SIGHUP) replaces as a whole — the configuration,
 * the TLS contexts made from it, and one session profile per listener.
 * Reference-counted: the main thread holds the current one, each worker its
 * own reference, and every session the profile it started with (through
 * session_profile.hold/release), so a reload never changes a live session.
 */
#ifndef SMTP_TLS_PROXY_RUNTIME_H
#define SMTP_TLS_PROXY_RUNTIME_H

#include <stdatomic.h>
#include <stddef.h>

#include "proxy/app/config.h"
#include "proxy/service/tlsrpt_store.h"
#include "proxy/session/session.h"

struct runtime_profile {
    struct session_profile p; /* first: session_profile pointers convert back */
    struct runtime *rt;
    /* Outbound with tls_rpt = true: where its sessions record their
     * results (tlsrpt_record, any thread); borrowed from rt. Else NULL. */
    struct tlsrpt_store *tls_rpt;
};

struct runtime_mta_sts;

struct runtime {
    atomic_int refs;
    struct runtime_mta_sts *mta_sts; /* the policy service its profiles point to, or NULL */
    struct config *cfg;
    struct runtime_profile *profiles; /* inbound listeners first, then outbound */
    size_t nprofiles;
    struct tlsrpt_store *tls_rpt; /* the tls_rpt block's store, or NULL */
};

/* Builds contexts and profiles for cfg, taking ownership of cfg on success.
 * NULL and a message in err on failure (cfg then stays the caller's). */
struct runtime *runtime_new(struct config *cfg, char *err, size_t errlen);

void runtime_ref(struct runtime *rt);
void runtime_unref(struct runtime *rt); /* accepts NULL */

/* Starts, keeps or stops the process's one TLS-RPT reporter thread to
 * match rt's tls_rpt block (main thread; after privileges are dropped and
 * after each reload). runtime_services_stop() stops it at shutdown. */
void runtime_services(const struct runtime *rt);
void runtime_services_stop(void);
/* Drops the process's hold on the MTA-STS service (main, at exit): once
 * the last runtime using it is gone, its cache file is written a last time.
 * A runtime made afterwards starts a new one. */
void runtime_release_services(void);

/* rt's MTA-STS policy service (borrowed while rt is held), or NULL when no
 * outbound listener uses one. */
struct mta_sts_svc *runtime_mta_sts(const struct runtime *rt);

/* The profile of the listener called name, or NULL. */
const struct session_profile *runtime_profile(const struct runtime *rt, const char *name);

#endif
