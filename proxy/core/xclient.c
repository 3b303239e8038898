#include "proxy/core/xclient.h"

#include <stdio.h>

#include "proxy/core/addr.h"

size_t xclient_line(char *out, size_t cap, const struct sockaddr *peer)
{
    char ip[64];

    if (peer->sa_family != AF_INET && peer->sa_family != AF_INET6)
        return 0;
    addr_format_ip(peer, ip, sizeof(ip));
    int n = snprintf(out, cap, "XCLIENT ADDR=%s%s PORT=%u NAME=[UNAVAILABLE]\r\n",
                     peer->sa_family == AF_INET6 ? "IPV6:" : "", ip, addr_port(peer));
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}
