/*
 * destination: where an outbound session goes. Either the fixed next hop
 * of the listener (an address, or a host name resolved per session) or the
 * address the client was heading for before iptables REDIRECTed it to the
 * proxy (SO_ORIGINAL_DST, IPv4 and IPv6).
 */
#ifndef SMTP_TLS_PROXY_DESTINATION_H
#define SMTP_TLS_PROXY_DESTINATION_H

#include <uv.h>

#include "proxy/core/addr.h"

struct destination {
    struct sockaddr_storage sa; /* where to dial (once known) */
    char host[256];             /* the name for SNI, verification and policy, or the IP */
    char text[300];             /* "host:port" for logs */
};

/* The fixed next hop a. Returns 0 when d->sa is known (an IP literal), 1 when
 * d->host must be resolved first (destination_resolve). */
int destination_fixed(struct destination *d, const struct addr *a);

/* The original destination of the redirected connection client. 0, or
 * UV_ENOENT when it was not redirected (the "original" destination is the
 * proxy itself: dialling it would loop), or another negative libuv code. */
int destination_original(struct destination *d, uv_tcp_t *client);

/* Starts resolving d->host (port from a) with req; cb follows exactly once,
 * even after uv_cancel(), so the caller must count req as outstanding until
 * then. 0 or a libuv code (then cb is not called). */
int destination_resolve(struct destination *d, const struct addr *a, uv_loop_t *loop,
                        uv_getaddrinfo_t *req, uv_getaddrinfo_cb cb);

/* In cb: takes the first address of res into d->sa and frees res. 0, or the
 * status / UV_EAI_NODATA when there is no address. */
int destination_resolved(struct destination *d, int status, struct addrinfo *res);

/* The SNI to send: d->host, or NULL when it is an IP literal (RFC 6066 §3). */
const char *destination_sni(const struct destination *d);

#endif
