/*
 * destination: where an outbound session goes. Either the fixed next hop
 * of the listener (an address, or a host name looked up per session through
 * the loop's resolver) or the address the client was heading for before
 * iptables REDIRECTed it to the proxy (SO_ORIGINAL_DST, IPv4 and IPv6).
 */
#ifndef SMTP_TLS_PROXY_DESTINATION_H
#define SMTP_TLS_PROXY_DESTINATION_H

#include <uv.h>

#include "proxy/core/addr.h"
#include "proxy/net/resolver.h"

struct destination {
    struct sockaddr_storage sa; /* where to dial (once known) */
    char host[256];             /* the name for SNI, verification and policy, or the IP */
    char text[300];             /* "host:port" for logs */
    enum resolver_security addr_security; /* of the address records (insecure for literals) */
};

/* The fixed next hop a. Returns 0 when d->sa is known (an IP literal, or
 * "localhost", which is 127.0.0.1 without DNS), 1 when d->host must be
 * looked up first (destination_lookup_start). */
int destination_fixed(struct destination *d, const struct addr *a);

/* The original destination of the redirected connection client. 0, or
 * UV_ENOENT when it was not redirected (the "original" destination is the
 * proxy itself: dialling it would loop), or another negative libuv code. */
int destination_original(struct destination *d, uv_tcp_t *client);

/* Why a host name gave no address to dial. The log field, the end reason
 * and the reply follow from it. */
enum destination_error {
    DESTINATION_OK,
    DESTINATION_NOT_FOUND,    /* NXDOMAIN, or neither A nor AAAA records */
    DESTINATION_DNS_FAILED,   /* SERVFAIL, REFUSED, timeout, no resolver */
    DESTINATION_DNSSEC_BOGUS, /* an answer failed validation: never used, never downgraded */
};

/* "ok", "not_found", "dns_failed", "dnssec_bogus": static, for logs. */
const char *destination_error_str(enum destination_error e);

/* The proxy's reply to the client for e (RFC 3463: 4.4.1 for a name without
 * address, 4.4.3 when the directory service failed, DNSSEC included). */
const char *destination_error_reply(enum destination_error e);

/* The A and AAAA lookups of a fixed destination, run side by side. */
struct destination_lookup {
    struct resolver_query q[2];          /* A, AAAA; q[i].data is the caller's */
    bool done[2];
    bool found[2];
    struct sockaddr_storage sa[2];
    enum resolver_security security[2];
    enum destination_error err[2];
    char why[2][160];                    /* the resolver's words, for the log */
};

/* Starts both lookups of host with the borrowed resolver r (NULL: none);
 * cb follows once per started lookup, each with q->data = data. Returns
 * how many started (0, 1 or 2); the caller counts them as outstanding until
 * their callbacks or destination_lookup_cancel(). */
unsigned destination_lookup_start(struct destination_lookup *l, struct resolver *r,
                                  const char *host, resolver_cb cb, void *data);

/* In cb: records the answer res of q. True when no lookup is outstanding
 * any more (then call destination_lookup_finish). */
bool destination_lookup_answer(struct destination_lookup *l, struct resolver_query *q,
                               const struct resolver_result *res);

/* Both lookups are over: the address to dial into d->sa (IPv4 first), with
 * port. DESTINATION_OK, or why not, with the resolver's explanation in
 * *why (static or inside l). A bogus answer of either type fails the whole
 * lookup (a DNSSEC failure is never a silent downgrade). */
enum destination_error destination_lookup_finish(struct destination *d,
                                                 const struct destination_lookup *l,
                                                 unsigned short port, const char **why);

/* Cancels whatever is outstanding; returns how many were (their callbacks
 * will not come). */
unsigned destination_lookup_cancel(struct destination_lookup *l);

/* The SNI to send: d->host, or NULL when it is an IP literal (RFC 6066 §3). */
const char *destination_sni(const struct destination *d);

#endif
