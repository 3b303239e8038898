#include "proxy/core/addr.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

const char *addr_format_ip(const struct sockaddr *sa, char *out, size_t outlen)
{
    const void *ip = NULL;

    if (sa->sa_family == AF_INET)
        ip = &((const struct sockaddr_in *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        ip = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (ip == NULL || inet_ntop(sa->sa_family, ip, out, (socklen_t)outlen) == NULL)
        snprintf(out, outlen, "?");
    return out;
}

unsigned addr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

const char *addr_format(const struct sockaddr *sa, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN];

    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) {
        snprintf(out, outlen, "unknown");
        return out;
    }
    addr_format_ip(sa, ip, sizeof(ip));
    bool v6 = sa->sa_family == AF_INET6;
    snprintf(out, outlen, "%s%s%s:%u", v6 ? "[" : "", ip, v6 ? "]" : "", addr_port(sa));
    return out;
}

const char *addr_format_spec(const struct addr *a, unsigned port, char *out, size_t outlen)
{
    bool v6 = strchr(a->host, ':') != NULL;

    snprintf(out, outlen, "%s%s%s:%u", v6 ? "[" : "", a->host, v6 ? "]" : "", port);
    return out;
}
