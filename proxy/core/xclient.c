#include "proxy/core/xclient.h"

#include <stdio.h>
#include <string.h>

#include "proxy/core/addr.h"

size_t xclient_line(char *out, size_t cap, const struct sockaddr *peer, const char *name)
{
    char ip[64];

    if (peer->sa_family != AF_INET && peer->sa_family != AF_INET6)
        return 0;
    /* The value goes on the line as it is: a host name needs no xtext
     * encoding (RFC 3461 §4), and anything else never gets there. */
    if (name == NULL ||
        (strcmp(name, XCLIENT_NAME_TEMPUNAVAIL) != 0 && !addr_valid_hostname(name)))
        name = XCLIENT_NAME_UNAVAILABLE;
    addr_format_ip(peer, ip, sizeof(ip));
    int n = snprintf(out, cap, "XCLIENT ADDR=%s%s PORT=%u NAME=%s\r\n",
                     peer->sa_family == AF_INET6 ? "IPV6:" : "", ip, addr_port(peer), name);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}
