/*
 * tlsrpt_send: the reports of one UTC day (RFC 8460 §4, §5), on an event
 * loop: for every policy domain with results in the store's folder of that
 * day and not yet marked sent, look up _smtp._tls.<domain> TXT (§3), build
 * the §4.4 JSON from the day file, gzip it, and deliver it to each rua in
 * turn: https: by POST (application/tlsrpt+gzip, §5.4), mailto: as the
 * multipart/report mail of §5.3 handed to the submit server over SMTP.
 * Domains go one at a time, so memory stays at one report's.
 *
 * What was delivered is recorded crash-safe (appended and fsynced) in
 * <dir>/<day>/.sent/<domain>: a line "ok <uri>" per destination that took
 * the report, then "done" once every destination has (or the domain has no
 * TLSRPT record, or nothing to report). A later call for the same day
 * skips a domain that is done and, for one that is not, the destinations
 * that took it already, so a restart or a retry never sends twice. A
 * temporary failure (DNS SERVFAIL, a destination down) leaves the domain
 * to the next call.
 *
 * The caller's loop must not be a worker's: building and compressing a
 * report and reading its day file happen on it, synchronously.
 */
#ifndef SMTP_TLS_PROXY_TLSRPT_SEND_H
#define SMTP_TLS_PROXY_TLSRPT_SEND_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "proxy/net/resolver.h"
#include "proxy/service/tlsrpt_redis.h"
#include "proxy/tls/tls.h"

struct tlsrpt_send_options {
    const char *directory;         /* tls_rpt.directory */
    const char *organization;      /* organization-name */
    const char *contact;           /* contact-info and the mail's sender */
    const struct sockaddr *submit; /* tls_rpt.submit; NULL: mailto: fails */
    struct resolver *resolver;     /* TXT lookups, https hosts */
    struct tls_ctx *tls;           /* client context (CA file) for https: */
    unsigned timeout_ms;           /* per delivery; 0: 60 s */
    /* The fleet's counts and report lock (tlsrpt_redis.h), borrowed until
     * cb; NULL: this instance's own counts only. With it, a domain is sent
     * by whichever instance takes its lock, from the fleet's counts, and
     * skipped by the others; Redis not answering, this instance sends its
     * own counts (each instance may then report its own share). */
    struct tlsrpt_redis *redis;
};

struct tlsrpt_send_result {
    unsigned domains; /* with a file that day */
    unsigned sent;    /* delivered to every destination now */
    unsigned already; /* done before this call */
    unsigned nothing; /* no TLSRPT record, or no result that parsed */
    unsigned failed;  /* left for a later call */
    unsigned locked;  /* another instance holds its lock: left for a later call */
};

typedef void (*tlsrpt_send_cb)(void *arg, const struct tlsrpt_send_result *r);

struct tlsrpt_send;

/*
 * Starts the reports of day with o (strings and addresses copied; the
 * resolver and context borrowed, referenced until cb). cb comes once, on
 * loop, never from inside this call, when nothing of the job is left.
 * Returns the job, or NULL (UV_EINVAL, UV_ENOMEM in *err) and cb never comes.
 */
struct tlsrpt_send *tlsrpt_send_day(uv_loop_t *loop, const struct tlsrpt_send_options *o,
                                    int64_t day, tlsrpt_send_cb cb, void *arg, int *err);

/* Asks the job to stop after the delivery in progress (bounded by its
 * timeout); cb still comes, with what was done. */
void tlsrpt_send_stop(struct tlsrpt_send *j);

/* The submitter of contact: its domain ("" when it has none). */
const char *tlsrpt_submitter(const char *contact);

#endif
