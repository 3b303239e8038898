/*
 * The names a session goes by: the proxy's own host name (its EHLO to a
 * backend, Received: lines), and the client and server legs' peers as the
 * log lines name them.
 */
#include "proxy/session/session_int.h"

#include <stdio.h>
#include <unistd.h>

#include "proxy/core/addr.h"

static char helo_name[256];
static uv_once_t helo_once = UV_ONCE_INIT;

static void init_helo_name(void)
{
    if (gethostname(helo_name, sizeof(helo_name) - 1) != 0 || helo_name[0] == '\0')
        snprintf(helo_name, sizeof(helo_name), "smtp-tls-proxy");
}

const char *session_host_name(void)
{
    uv_once(&helo_once, init_helo_name);
    return helo_name;
}

const char *session_client_name(const struct session *s)
{
    static _Thread_local char client[ADDR_STRLEN];

    if (s->p != NULL && s->p->outbound)
        return s->client_addr[0] ? s->client_addr : "-";
    if (s->peer.sa.sa_family != AF_INET && s->peer.sa.sa_family != AF_INET6)
        return "-";
    return addr_format(&s->peer.sa, client, sizeof(client));
}

const char *session_server_name(const struct session *s)
{
    static _Thread_local char backend[sizeof(s->server_addr)];

    if (s->p == NULL || s->ops == NULL) /* before the engine: nowhere yet */
        return "-";
    if (s->p->outbound)
        return s->server_addr[0] ? s->server_addr : "-";
    return addr_format_spec(&s->p->in->backend, s->p->in->backend.port, backend, sizeof(backend));
}
