/*
 * report: what one session leaves behind when it ends: the one log line
 * (DESIGN.md "Log and metrics") and the counters that are settled at the
 * end (bytes, policy refusals, the active gauge).
 */
#ifndef SMTP_TLS_PROXY_REPORT_H
#define SMTP_TLS_PROXY_REPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "proxy/core/outbound.h"
#include "proxy/core/reason.h"
#include "proxy/obs/metrics.h"

struct session_report {
    const char *id;
    const char *listener;
    bool outbound;
    const char *client;        /* "ip:port" */
    const char *server;        /* backend or destination as "host:port", or "-" */
    const char *tls_version;   /* of the encrypted leg, NULL for plaintext */
    const char *tls_cipher;
    const char *sni;           /* inbound: the client's SNI, "" if none */
    enum outbound_policy policy;  /* outbound only, from here on */
    bool verified;             /* the destination's certificate verified */
    const char *verify_note;   /* why it did not ("no" if unknown) */
    const char *tls_note;      /* why TLS is not in use, NULL if it is */
    const char *auth;          /* outbound: "none" | "dane" | "policy" */
    const char *auth_result;   /* outbound_auth_total result to count, or NULL */
    uint64_t bytes_in, bytes_out; /* from / to the client */
    uint64_t ms;
    enum reason reason;
};

/* Writes the session's end line and settles its counters in m (may be NULL). */
void report_session_end(const struct session_report *r, struct metrics_listener *m);

#endif
