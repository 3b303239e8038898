/*
 * reason: why a session ended. One enum shared by the engines, the session,
 * the log line (end=...) and the metrics, so that no decision ever depends
 * on the wording of a message. reason_str() gives the stable log spelling
 * (README lists them; tests and log processors match on it).
 */
#ifndef SMTP_TLS_PROXY_REASON_H
#define SMTP_TLS_PROXY_REASON_H

enum reason {
    REASON_NONE = 0,          /* still running (logged as "unknown") */
    REASON_QUIT,              /* the client said QUIT and got its 221 */
    REASON_CLIENT_CLOSED,     /* the client closed or reset the connection */
    REASON_BACKEND_CLOSED,    /* inbound backend closed */
    REASON_DESTINATION_CLOSED,/* outbound destination closed */
    REASON_DESTINATION_REFUSED, /* the plaintext fallback was refused too */
    REASON_BACKEND_UNREACHABLE, /* connect (or resolve) failed or timed out */
    REASON_BACKEND_TIMEOUT,   /* a reply from the server leg took too long */
    REASON_TIMEOUT,           /* the client was idle too long */
    REASON_TLS_FAILED,        /* a TLS handshake failed */
    REASON_TLS_TIMEOUT,       /* a TLS handshake took too long */
    REASON_PROTOCOL_ERROR,    /* a peer broke SMTP framing */
    REASON_BARE_NEWLINE,      /* bare CR/LF in content under "reject" */
    REASON_POLICY_REFUSAL,    /* outbound TLS policy could not be met */
    REASON_MAX_CONNECTIONS,   /* refused at accept: listener full */
    REASON_SHUTDOWN,          /* the proxy is stopping */
    REASON_XCLIENT_REFUSED,   /* the backend refused XCLIENT */
    REASON_PROXY_HEADER_INVALID, /* a load balancer's PROXY header was bad */
    REASON_PROXY_HEADER_TIMEOUT, /* ... or never came */
    REASON_PROXY_HEADER_UNTRUSTED, /* a peer not in proxy_protocol_from */
    REASON_NO_DESTINATION,    /* outbound: nowhere to go (not redirected) */
    REASON_INTERNAL_ERROR,    /* out of memory and the like */
    REASON_ACCEPT_FAILED,     /* accept(2) failed after the listener woke */
    REASON_LISTENER_REMOVED,  /* a reload removed the listener meanwhile */
    REASON_DESTINATION_NOT_FOUND, /* outbound: the host name has no address (NXDOMAIN, NODATA) */
    REASON_DNS_FAILED,        /* outbound: the lookup failed (SERVFAIL, timeout, no resolver) */
    REASON_DNSSEC_BOGUS,      /* outbound: an answer failed DNSSEC validation */
    REASON_COUNT
};

/* The log spelling, e.g. "client_closed"; "unknown" for REASON_NONE or a
 * value out of range. Static strings. */
const char *reason_str(enum reason r);

#endif
