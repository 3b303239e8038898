/*
 * tlsrpt_reporter: the daily schedule of TLS-RPT reports, on a thread and
 * event loop of its own (never a worker's: building, compressing and
 * reading day files block). Shortly after each UTC midnight, plus a random
 * delay of up to max_delay_s chosen at start (so that a fleet of proxies
 * does not post to every receiver at 00:00:00), it runs tlsrpt_send_day()
 * for the previous day; a day with failures is tried again with a growing
 * pause (30 minutes, doubling, at most 6 hours), and days older than
 * TLSRPT_REPORTER_DAYS are given up (RFC 8460 §5.5 leaves the retry policy
 * to the sender). Once a day, folders older than TLSRPT_REPORTER_KEEP_DAYS
 * are removed.
 */
#ifndef SMTP_TLS_PROXY_TLSRPT_REPORTER_H
#define SMTP_TLS_PROXY_TLSRPT_REPORTER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "proxy/net/resolver_options.h"

#define TLSRPT_REPORTER_DAYS 3
/* Day folders older than this many days are removed (tlsrpt_store_prune). */
#define TLSRPT_REPORTER_KEEP_DAYS 14

struct tlsrpt_reporter_options {
    const char *directory, *organization, *contact;
    struct sockaddr_storage submit;
    const struct resolver_options *resolver; /* copied */
    const char *ca_file;                     /* for https: destinations; NULL: none trusted */
    unsigned interval_s;                     /* how often to look; 0: 300 */
    unsigned max_delay_s;                    /* 0: 3600 */
    unsigned first_ms;                       /* first look after start; 0: 10 s */
    /* mta_sts.redis (an IP address and port), NULL: none. With it the
     * reports are the fleet's, one instance sending each domain
     * (tlsrpt_send_options.redis); a domain another instance holds is
     * looked at again on the retry schedule. */
    const struct sockaddr *redis;
};

struct tlsrpt_reporter;

/* Starts the thread; NULL with a message in err. Everything is copied. */
struct tlsrpt_reporter *tlsrpt_reporter_start(const struct tlsrpt_reporter_options *o, char *err,
                                              size_t errlen);

/* Whether r was started with settings equal to o (a reload keeps it then). */
bool tlsrpt_reporter_same(const struct tlsrpt_reporter *r, const struct tlsrpt_reporter_options *o);

/* Stops and joins the thread: the delivery in progress ends first (bounded
 * by its timeout). Accepts NULL. */
void tlsrpt_reporter_stop(struct tlsrpt_reporter *r);

#endif
