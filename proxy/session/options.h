/*
 * options: what a session of one listener needs to know, as plain structs.
 * The configuration loader (app/config) fills them in; the session only
 * reads them. No library types here, so the loader and its tests build
 * without the event loop.
 */
#ifndef SMTP_TLS_PROXY_SESSION_OPTIONS_H
#define SMTP_TLS_PROXY_SESSION_OPTIONS_H

#include <stdbool.h>

#include "proxy/core/addr.h"
#include "proxy/core/smtp.h"
#include "proxy/policy/rules.h"

struct session_timeouts {
    unsigned connect;     /* seconds */
    unsigned handshake;
    unsigned idle;
    unsigned min_data_rate; /* bytes/s inside DATA/BDAT content; 0 = off */
};

enum session_tls_mode { SESSION_TLS_STARTTLS, SESSION_TLS_IMPLICIT };

/* How the backend learns who the real client is. */
enum session_client_info {
    SESSION_CLIENT_INFO_NONE,
    SESSION_CLIENT_INFO_XCLIENT,
    SESSION_CLIENT_INFO_PROXY_V1,
    SESSION_CLIENT_INFO_PROXY_V2,
};

/* What the proxy does with a bare CR or LF inside message content. */
enum session_bare_newline {
    SESSION_BARE_NEWLINE_NORMALIZE, /* rewrite to CRLF, keeping the strict message end */
    SESSION_BARE_NEWLINE_REJECT,    /* 521 5.5.2 and close, as Postfix's "reject" */
};

struct session_inbound_opts {
    struct addr backend;
    enum session_tls_mode tls_mode;
    bool require_tls;
    bool proxy_protocol;
    /* Networks allowed to send a PROXY header (addresses or CIDRs; match
     * unused); none: any peer. Others are refused before a byte is read. */
    struct policy_rule *proxy_from;
    size_t nproxy_from;
    enum session_client_info backend_client_info;
    enum session_bare_newline bare_newline;
    bool received_header;         /* a Received: line in each message relayed over TLS */
    unsigned max_connections;
    unsigned max_command_line;    /* octets, CRLF included */
    struct smtp_ehlo_policy ehlo_keywords; /* pass / discard lists (owned) */
    struct session_timeouts timeouts;
};

struct session_outbound_opts {
    bool original_dst;            /* destination = "original" */
    struct addr destination;      /* when !original_dst */
    struct policy_table policy;   /* `policy` and `policies` */
    /* RFC 7672 for a fixed destination that is a host name: secure TLSA
     * records at _port._tcp.host authenticate it (after a matching
     * `policies` rule, before `policy`). enforce = false: every refusal
     * that DANE would make is logged and counted instead. */
    bool dane;
    bool enforce;
    /* RFC 8461 for the recipient domains: their policies come from the
     * profile's MTA-STS service (session_profile.mta_sts). */
    bool mta_sts;
    unsigned max_connections;
    unsigned max_command_line;    /* octets, CRLF included */
    struct smtp_ehlo_policy ehlo_keywords; /* pass / discard lists (owned) */
    struct session_timeouts timeouts;
};

#endif
