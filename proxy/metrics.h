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
 * never freed, so sessions may keep the pointer. direction: "in" | "out". */
struct metrics_listener;
struct metrics_listener *metrics_listener(const char *name, const char *direction);

void metrics_connection_open(struct metrics_listener *m);  /* total++, active++ */
void metrics_connection_close(struct metrics_listener *m); /* active-- */
/* result: "ok" | "failed" | "refused" ... (static strings). */
void metrics_starttls(struct metrics_listener *m, const char *result);
void metrics_handshake(struct metrics_listener *m, const char *version, const char *cipher);
void metrics_tls_failure(struct metrics_listener *m, const char *reason);
void metrics_policy_refusal(struct metrics_listener *m, const char *policy);
/* Bytes from the client ("in") and to the client ("out"). */
void metrics_bytes(struct metrics_listener *m, uint64_t in, uint64_t out);

/* The whole exposition as text; caller frees. */
char *metrics_render(size_t *len);

/* Starts the HTTP endpoint on loop; 0 or a negative libuv code. */
int metrics_serve(uv_loop_t *loop, const struct config_addr *addr);
void metrics_stop(void);

#endif
