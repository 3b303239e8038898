/*
 * resolver_stub: the resolver's second backend, for dnssec = "trust-ad": a
 * stub that asks loopback recursors with RD, AD and EDNS0 DO (proxy/core/dns)
 * and believes their AD bit. Only proxy/net/resolver.c uses it, behind the
 * resolver.h API, which keeps the counting of active lookups.
 *
 * A lookup goes to the servers in order: over UDP from a fresh connected
 * socket per server (a random source port; the kernel drops datagrams from
 * any other address, and the source is checked again), with a random ID,
 * RESOLVER_STUB_UDP_MS per try and one retry; a TC answer is asked again
 * over TCP (2-octet length prefix, at most 64 KiB, RESOLVER_STUB_TCP_MS);
 * a timeout, a refused or malformed answer moves on to the next server.
 */
#ifndef SMTP_TLS_PROXY_RESOLVER_STUB_H
#define SMTP_TLS_PROXY_RESOLVER_STUB_H

#include <stddef.h>

#include <uv.h>

#include "proxy/net/resolver.h"

#define RESOLVER_STUB_UDP_MS 2500
#define RESOLVER_STUB_TCP_MS 5000

struct resolver_stub;

/* A stub on loop for o->servers (copied; at least one, all loopback: the
 * configuration loader has checked them). NULL with a message in err. */
struct resolver_stub *resolver_stub_new(uv_loop_t *loop, const struct resolver_options *o,
                                        char *err, size_t errlen);

/* Starts a lookup of name (type rrtype, class IN) for q; deliver(q, res)
 * follows on the loop, never from inside this call, unless
 * resolver_stub_cancel(q) comes first. 0, UV_EINVAL for a bad name, or
 * UV_ENOMEM (then deliver never comes). */
int resolver_stub_query(struct resolver_stub *s, struct resolver_query *q, const char *name,
                        int rrtype, resolver_cb deliver);

/* Forgets q's lookup: deliver will not come for it. */
void resolver_stub_cancel(struct resolver_query *q);

/* Frees s once the handles of its lookups (all delivered or cancelled by
 * now) have closed, then calls done(arg): at once when there are none. */
void resolver_stub_close(struct resolver_stub *s, void (*done)(void *arg), void *arg);

#endif
