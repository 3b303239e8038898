/*
 * resolver: the one asynchronous DNS resolver of an event loop (libunbound,
 * with in-process DNSSEC validation; with dnssec = "trust-ad" the stub of
 * resolver_stub.h, which believes the AD bit of loopback recursors). A worker owns one resolver; its
 * lookups run in libunbound's thread and their answers are delivered on the
 * loop: libunbound's file descriptor (ub_fd) is watched with a uv_poll_t and
 * ub_process() runs the callbacks when it becomes readable.
 *
 * A lookup lives in a caller-owned struct resolver_query. Its callback comes
 * exactly once, on the loop, unless resolver_cancel() is called first, after
 * which it never comes (ub_cancel): a session that closes cancels its lookups
 * and counts each one as outstanding only until its callback or its cancel.
 */
#ifndef SMTP_TLS_PROXY_RESOLVER_H
#define SMTP_TLS_PROXY_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "proxy/net/resolver_options.h"

/* DNS RR types and rcodes the proxy asks for or looks at. */
#define RESOLVER_TYPE_A 1
#define RESOLVER_TYPE_MX 15
#define RESOLVER_TYPE_TXT 16
#define RESOLVER_TYPE_AAAA 28
#define RESOLVER_TYPE_TLSA 52
#define RESOLVER_RCODE_NOERROR 0
#define RESOLVER_RCODE_SERVFAIL 2
#define RESOLVER_RCODE_NXDOMAIN 3

/* What DNSSEC says about an answer (RFC 4035 §4.3). */
enum resolver_security {
    RESOLVER_INSECURE, /* no chain of trust reaches it (or dnssec = "off") */
    RESOLVER_SECURE,   /* validated from the trust anchor */
    RESOLVER_BOGUS,    /* a chain of trust exists and the answer fails it */
};

/* "secure", "insecure" or "bogus": static, for logs. */
const char *resolver_security_str(enum resolver_security s);

/* One answer, valid only during the callback (copy what you keep). */
struct resolver_result {
    int err;        /* 0, or negative: the lookup itself failed (see errstr) */
    const char *errstr; /* static: why err, or NULL */
    int rcode;      /* RESOLVER_RCODE_*; SERVFAIL also for a bogus answer */
    enum resolver_security security;
    const char *why_bogus; /* libunbound's explanation when bogus, or NULL */
    size_t count;          /* records of the asked type (after CNAMEs) */
    char *const *data;     /* their RDATA, wire format */
    const int *len;
    int ttl;
};

struct resolver;
struct resolver_query;
typedef void (*resolver_cb)(struct resolver_query *q, const struct resolver_result *res);

struct resolver_query {
    void *data;           /* the caller's */
    /* Private: */
    struct resolver *r;
    resolver_cb cb;
    int id;
    void *stub;           /* the trust-ad backend's lookup (resolver_stub.c) */
    bool active;          /* between resolver_query() and its callback / cancel */
};

/* A resolver on loop with opts (copied). NULL with a message in err when
 * libunbound refuses the settings (an unreadable trust anchor, say). */
struct resolver *resolver_new(uv_loop_t *loop, const struct resolver_options *opts, char *err,
                              size_t errlen);

/* Looks name up (type rrtype, class IN) into q; cb follows on the loop, never
 * from inside this call. 0, or a negative code (then cb never comes):
 * UV_ESHUTDOWN once the resolver is closing, UV_EINVAL for a bad name,
 * UV_ENOMEM. */
int resolver_query(struct resolver *r, struct resolver_query *q, const char *name, int rrtype,
                   resolver_cb cb);

/* Cancels q if it is active: its callback will not come. Returns true when
 * it was active (the caller stops counting it). */
bool resolver_cancel(struct resolver_query *q);

/* True when q is between resolver_query() and its callback or cancel. */
bool resolver_active(const struct resolver_query *q);

/* Accepts no new lookups; the resolver frees itself once its last active
 * lookup has called back or been cancelled (at once when there is none),
 * on the loop. Accepts NULL. */
void resolver_close(struct resolver *r);

/* Whether r was built from settings equal to opts (a reload keeps it then). */
bool resolver_built_from(const struct resolver *r, const struct resolver_options *opts);

#endif
