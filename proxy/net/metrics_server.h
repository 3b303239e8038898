/*
 * metrics_server: the HTTP endpoint for the metrics registry on
 * metrics_listen: GET /metrics (Prometheus text 0.0.4) and GET /healthz.
 */
#ifndef SMTP_TLS_PROXY_METRICS_SERVER_H
#define SMTP_TLS_PROXY_METRICS_SERVER_H

#include <stdbool.h>

#include <uv.h>

#include "proxy/core/addr.h"

/* Starts the HTTP endpoint on loop; 0 or a negative libuv code (logged).
 * Port 0 binds an ephemeral port: see metrics_server_port(). metrics_server_start and
 * metrics_server_stop run on loop's thread (or before the loop runs); only one
 * endpoint exists at a time (UV_EALREADY otherwise). */
int metrics_server_start(uv_loop_t *loop, const struct addr *addr);
/* Moves the endpoint to addr (starts it if it is not serving): the new
 * socket is bound before the old one is closed, so on failure (a negative
 * libuv code, logged) the old endpoint keeps serving. Clients being served
 * finish on the old connection. Loop thread. */
int metrics_server_move(uv_loop_t *loop, const struct addr *addr);
/* While on, /healthz answers 503 "draining" (the proxy stops accepting and
 * a load balancer should send elsewhere). Any thread. */
void metrics_server_set_draining(bool on);
/* The port the endpoint listens on, or UV_ENOTCONN when it is not serving.
 * Any thread. */
int metrics_server_port(void);
/* Closes the listening handle and every client connection; their memory is
 * freed by close callbacks, so the loop must run once more. No-op if not
 * serving. */
void metrics_server_stop(void);

#endif
