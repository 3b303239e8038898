#include "proxy/core/addr.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
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

/* RFC 1123 host name with an optional trailing dot. Underscores are
 * tolerated because real DNS data has them. A last label of digits only is
 * refused: no top-level domain is numeric, so "192.0.2.300" is a mistyped
 * address, not a name to look up. */
bool addr_valid_hostname(const char *s)
{
    size_t len = strlen(s), label = 0;
    bool all_digits = true;

    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i <= len; i++) {
        char ch = i < len ? s[i] : '.';

        if (ch == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            if (i == len && all_digits)
                return false;
            label = 0;
            all_digits = true;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
                   (ch == '-' && label > 0)) {
            label++;
            all_digits = false;
        } else if (ch >= '0' && ch <= '9') {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

/* Length of a host name without its trailing dot: "example.com." and
 * "example.com" are the same name. */
size_t addr_name_len(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && s[n - 1] == '.' ? n - 1 : n;
}
