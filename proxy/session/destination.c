#include "proxy/session/destination.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
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
    /* RFC 6761 §6.3: localhost is the loopback address, never asked of DNS. */
    if (strcasecmp(a->host, "localhost") == 0 || strcasecmp(a->host, "localhost.") == 0) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&d->sa;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(a->port);
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
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

const char *destination_error_str(enum destination_error e)
{
    switch (e) {
    case DESTINATION_OK:
        return "ok";
    case DESTINATION_NOT_FOUND:
        return "not_found";
    case DESTINATION_DNS_FAILED:
        return "dns_failed";
    case DESTINATION_DNSSEC_BOGUS:
        return "dnssec_bogus";
    }
    return "unknown";
}

const char *destination_error_reply(enum destination_error e)
{
    switch (e) {
    case DESTINATION_NOT_FOUND:
        return "421 4.4.1 Destination host not found, try again later\r\n";
    case DESTINATION_DNSSEC_BOGUS:
        return "421 4.4.3 DNSSEC validation of the destination failed, try again later\r\n";
    case DESTINATION_OK:
    case DESTINATION_DNS_FAILED:
        break;
    }
    return "421 4.4.3 Destination lookup failed, try again later\r\n";
}

static const int lookup_types[2] = {RESOLVER_TYPE_A, RESOLVER_TYPE_AAAA};

unsigned destination_lookup_start(struct destination_lookup *l, struct resolver *r,
                                  const char *host, resolver_cb cb, void *data)
{
    unsigned started = 0;

    memset(l, 0, sizeof(*l));
    for (int i = 0; i < 2; i++) {
        l->q[i].data = data;
        int rc = resolver_query(r, &l->q[i], host, lookup_types[i], cb);
        if (rc == 0) {
            started++;
            continue;
        }
        l->done[i] = true;
        l->err[i] = DESTINATION_DNS_FAILED;
        snprintf(l->why[i], sizeof(l->why[i]), "%s",
                 rc == UV_ESHUTDOWN ? "no resolver" : uv_strerror(rc));
    }
    return started;
}

bool destination_lookup_answer(struct destination_lookup *l, struct resolver_query *q,
                               const struct resolver_result *res)
{
    int i = q == &l->q[0] ? 0 : 1;

    l->done[i] = true;
    l->security[i] = res->security;
    if (res->err != 0) {
        l->err[i] = DESTINATION_DNS_FAILED;
        snprintf(l->why[i], sizeof(l->why[i]), "%s", res->errstr ? res->errstr : "error");
    } else if (res->security == RESOLVER_BOGUS) {
        l->err[i] = DESTINATION_DNSSEC_BOGUS;
        snprintf(l->why[i], sizeof(l->why[i]), "%s", res->why_bogus ? res->why_bogus : "bogus");
    } else if (res->rcode == RESOLVER_RCODE_NXDOMAIN) {
        l->err[i] = DESTINATION_NOT_FOUND;
        snprintf(l->why[i], sizeof(l->why[i]), "NXDOMAIN");
    } else if (res->rcode != RESOLVER_RCODE_NOERROR) {
        l->err[i] = DESTINATION_DNS_FAILED;
        snprintf(l->why[i], sizeof(l->why[i]), "rcode %d%s", res->rcode,
                 res->rcode == RESOLVER_RCODE_SERVFAIL ? " (SERVFAIL)" : "");
    } else {
        /* The first record of the right size; CNAMEs are already followed. */
        for (size_t k = 0; k < res->count && !l->found[i]; k++) {
            if (i == 0 && res->len[k] == 4) {
                struct sockaddr_in *sin = (struct sockaddr_in *)&l->sa[0];
                sin->sin_family = AF_INET;
                memcpy(&sin->sin_addr, res->data[k], 4);
                l->found[0] = true;
            } else if (i == 1 && res->len[k] == 16) {
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&l->sa[1];
                sin6->sin6_family = AF_INET6;
                memcpy(&sin6->sin6_addr, res->data[k], 16);
                l->found[1] = true;
            }
        }
        if (!l->found[i]) {
            l->err[i] = DESTINATION_NOT_FOUND;
            snprintf(l->why[i], sizeof(l->why[i]), "no %s record", i == 0 ? "A" : "AAAA");
        }
    }
    return l->done[0] && l->done[1];
}

enum destination_error destination_lookup_finish(struct destination *d,
                                                 const struct destination_lookup *l,
                                                 unsigned short port, const char **why)
{
    for (int i = 0; i < 2; i++) {
        if (l->err[i] == DESTINATION_DNSSEC_BOGUS) {
            *why = l->why[i];
            return DESTINATION_DNSSEC_BOGUS;
        }
    }
    for (int i = 0; i < 2; i++) {
        if (!l->found[i])
            continue;
        memcpy(&d->sa, &l->sa[i], sizeof(d->sa));
        if (i == 0)
            ((struct sockaddr_in *)&d->sa)->sin_port = htons(port);
        else
            ((struct sockaddr_in6 *)&d->sa)->sin6_port = htons(port);
        d->addr_security = l->security[i];
        *why = NULL;
        return DESTINATION_OK;
    }
    /* No address: a failed lookup says more than a missing record. */
    int i = l->err[0] == DESTINATION_DNS_FAILED ? 0 : l->err[1] == DESTINATION_DNS_FAILED ? 1 : 0;
    *why = l->why[i];
    return l->err[i] == DESTINATION_OK ? DESTINATION_NOT_FOUND : l->err[i];
}

unsigned destination_lookup_cancel(struct destination_lookup *l)
{
    unsigned n = 0;

    for (int i = 0; i < 2; i++)
        if (resolver_cancel(&l->q[i]))
            n++;
    return n;
}

const char *destination_sni(const struct destination *d)
{
    struct in6_addr ip;

    if (d->host[0] == '\0' || inet_pton(AF_INET, d->host, &ip) == 1 ||
        inet_pton(AF_INET6, d->host, &ip) == 1)
        return NULL;
    return d->host;
}
