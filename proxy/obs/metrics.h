/*
 * metrics: Prometheus counters (DESIGN.md "Log and metrics"), all named
 * smtp_tls_proxy_*, updated from any worker thread (atomics, plus a mutex
 * only when a new label value is first seen), and served over HTTP on
 * metrics_listen: GET /metrics (text format 0.0.4) and GET /healthz ("ok").
 */
#ifndef SMTP_TLS_PROXY_METRICS_H
#define SMTP_TLS_PROXY_METRICS_H

#include <stddef.h>
#include <stdint.h>


/* One per listener, created at start-up (and on SIGHUP for new names);
 * never freed, so sessions may keep the pointer. direction: "in" | "out".
 * Asking again for the same name and direction returns the same object, so
 * counters survive a reload. NULL only when out of memory; every update
 * function below accepts NULL and then does nothing. */
struct metrics_listener;
struct metrics_listener *metrics_listener(const char *name, const char *direction);
/* How many listeners metrics_listener() has created. */
int metrics_listener_count(void);

void metrics_connection_open(struct metrics_listener *m);  /* total++, active++ */
void metrics_connection_close(struct metrics_listener *m); /* active-- */
/* result: "ok" | "failed" | "refused" ... (static strings). For these
 * families each listener keeps at most 64 distinct label values (cut at
 * 128 bytes); later new values are counted under "other". NULL counts as
 * "unknown". The strings are copied. */
void metrics_starttls(struct metrics_listener *m, const char *result);
void metrics_handshake(struct metrics_listener *m, const char *version, const char *cipher);
void metrics_tls_failure(struct metrics_listener *m, const char *reason);
void metrics_policy_refusal(struct metrics_listener *m, const char *policy);
/* An outbound authentication outcome: auth "dane" | "policy" (| "mta-sts"
 * later), result "ok" | "fail" | "logged". Static strings. */
void metrics_outbound_auth(struct metrics_listener *m, const char *auth, const char *result);
/* Bytes from the client ("in") and to the client ("out"). */
void metrics_bytes(struct metrics_listener *m, uint64_t in, uint64_t out);

/* The whole exposition as text (NUL-terminated; *len, if len is not NULL,
 * excludes the NUL); caller frees. NULL when out of memory. */
char *metrics_render(size_t *len);

#endif
