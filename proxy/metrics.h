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

#include <uv.h>

#include "config.h"

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
/* result: "ok" | "failed" | "refused" ... (static strings). For these four
 * families each listener keeps at most 64 distinct label values (cut at
 * 128 bytes); later new values are counted under "other". NULL counts as
 * "unknown". The strings are copied. */
void metrics_starttls(struct metrics_listener *m, const char *result);
void metrics_handshake(struct metrics_listener *m, const char *version, const char *cipher);
void metrics_tls_failure(struct metrics_listener *m, const char *reason);
void metrics_policy_refusal(struct metrics_listener *m, const char *policy);
/* Bytes from the client ("in") and to the client ("out"). */
void metrics_bytes(struct metrics_listener *m, uint64_t in, uint64_t out);

/* The whole exposition as text (NUL-terminated; *len, if len is not NULL,
 * excludes the NUL); caller frees. NULL when out of memory. */
char *metrics_render(size_t *len);

/* Starts the HTTP endpoint on loop; 0 or a negative libuv code (logged).
 * Port 0 binds an ephemeral port: see metrics_port(). metrics_serve and
 * metrics_stop run on loop's thread (or before the loop runs); only one
 * endpoint exists at a time (UV_EALREADY otherwise). */
int metrics_serve(uv_loop_t *loop, const struct config_addr *addr);
/* The port the endpoint listens on, or UV_ENOTCONN when it is not serving.
 * Any thread. */
int metrics_port(void);
/* Closes the listening handle and every client connection; their memory is
 * freed by close callbacks, so the loop must run once more. No-op if not
 * serving. */
void metrics_stop(void);

#endif
