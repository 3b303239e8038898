#include "proxy/session/destination.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Linux netfilter: the address a REDIRECTed connection was headed for. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

int destination_fixed(struct destination *d, const struct addr *a)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->host, sizeof(d->host), "%s", a->host);
    addr_format_spec(a, a->port, d->text, sizeof(d->text));
    if (a->salen > 0) {
        memcpy(&d->sa, &a->sa, a->salen);
        return 0;
    }
    return 1;
}

int destination_original(struct destination *d, uv_tcp_t *client)
{
    uv_os_fd_t fd;
    struct sockaddr_storage dst, local;
    socklen_t len = sizeof(dst);
    int llen = sizeof(local);
    char here[ADDR_STRLEN];

    memset(d, 0, sizeof(*d));
    if (uv_fileno((uv_handle_t *)client, &fd) != 0 ||
        uv_tcp_getsockname(client, (struct sockaddr *)&local, &llen) != 0)
        return UV_EINVAL;
    int rc = local.ss_family == AF_INET6
                 ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len)
                 : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len);
    if (rc != 0)
        return UV_ENOENT;
    addr_format((const struct sockaddr *)&local, here, sizeof(here));
    addr_format((const struct sockaddr *)&dst, d->text, sizeof(d->text));
    if (strcmp(here, d->text) == 0)
        return UV_ENOENT;
    d->sa = dst;
    addr_format_ip((const struct sockaddr *)&dst, d->host, sizeof(d->host));
    return 0;
}

int destination_resolve(struct destination *d, const struct addr *a, uv_loop_t *loop,
                        uv_getaddrinfo_t *req, uv_getaddrinfo_cb cb)
{
    char port[8];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};

    snprintf(port, sizeof(port), "%u", a->port);
    return uv_getaddrinfo(loop, req, cb, d->host, port, &hints);
}

int destination_resolved(struct destination *d, int status, struct addrinfo *res)
{
    if (status == 0 && (res == NULL || res->ai_addrlen > sizeof(d->sa)))
        status = UV_EAI_NODATA;
    if (status == 0)
        memcpy(&d->sa, res->ai_addr, res->ai_addrlen);
    uv_freeaddrinfo(res);
    return status;
}

const char *destination_sni(const struct destination *d)
{
    struct in6_addr ip;

    if (d->host[0] == '\0' || inet_pton(AF_INET, d->host, &ip) == 1 ||
        inet_pton(AF_INET6, d->host, &ip) == 1)
        return NULL;
    return d->host;
}
