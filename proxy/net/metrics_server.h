/*
 * metrics_server: the HTTP endpoint for the metrics registry on
 * metrics_listen: GET /metrics (Prometheus text 0.0.4) and GET /healthz.
 */
#ifndef SMTP_TLS_PROXY_METRICS_SERVER_H
#define SMTP_TLS_PROXY_METRICS_SERVER_H

#include <uv.h>

#include "proxy/core/addr.h"

/* Starts the HTTP endpoint on loop; 0 or a negative libuv code (logged).
 * Port 0 binds an ephemeral port: see metrics_server_port(). metrics_server_start and
 * metrics_server_stop run on loop's thread (or before the loop runs); only one
 * endpoint exists at a time (UV_EALREADY otherwise). */
int metrics_server_start(uv_loop_t *loop, const struct addr *addr);
/* The port the endpoint listens on, or UV_ENOTCONN when it is not serving.
 * Any thread. */
int metrics_server_port(void);
/* Closes the listening handle and every client connection; their memory is
 * freed by close callbacks, so the loop must run once more. No-op if not
 * serving. */
void metrics_server_stop(void);

#endif
