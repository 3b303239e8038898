/*
 * PROXY protocol, per HAProxy's "proxy-protocol.txt" (versions 1 and 2).
 */
#include "proxy/core/proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v2sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static bool parse_port(const char *s, uint16_t *port)
{
    unsigned long v = 0;

    if (*s == '\0' || (s[0] == '0' && s[1] != '\0'))
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > 65535)
            return false;
    }
    *port = (uint16_t)v;
    return true;
}

static bool set_addr(struct sockaddr_storage *ss, int family, const char *host, uint16_t port)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        return inet_pton(AF_INET, host, &a->sin_addr) == 1;
    }
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    return inet_pton(AF_INET6, host, &a->sin6_addr) == 1;
}

/*
 * "PROXY" SP proto SP src SP dst SP sport SP dport CRLF, at most 107
 * octets, in printable US-ASCII with single spaces (proxy-protocol.txt
 * §2.1). Anything else is refused rather than read leniently: a NUL or a
 * second space would let the text the parser checks differ from the text
 * the next reader of the line sees. After "UNKNOWN" the rest of the line
 * is ignored, as the specification says.
 */
static int parse_v1(const uint8_t *p, size_t n, size_t *used, struct sockaddr_storage *src,
                    struct sockaddr_storage *dst)
{
    char line[108];
    const uint8_t *lf = memchr(p, '\n', n < 107 ? n : 107);

    if (lf == NULL)
        return n >= 107 ? PROXYPROTO_ERR : PROXYPROTO_AGAIN;
    size_t len = (size_t)(lf - p) + 1;
    if (len < 8 || p[len - 2] != '\r')
        return PROXYPROTO_ERR;
    for (size_t i = 0; i < len - 2; i++)
        if (p[i] < 0x20 || p[i] > 0x7e)
            return PROXYPROTO_ERR;
    memcpy(line, p, len - 2);
    line[len - 2] = '\0';
    *used = len;

    /* Fields split at single spaces: an empty one (two spaces, or a space
     * at the end) makes the line invalid. */
    char *f[7] = {0};
    int nf = 0;
    for (char *t = line; nf < 7; nf++) {
        f[nf] = t;
        char *sp = strchr(t, ' ');
        if (sp == NULL) {
            nf++;
            break;
        }
        *sp = '\0';
        t = sp + 1;
    }
    if (nf < 2 || strcmp(f[0], "PROXY") != 0)
        return PROXYPROTO_ERR;
    if (strcmp(f[1], "UNKNOWN") == 0) {
        src->ss_family = dst->ss_family = AF_UNSPEC;
        return PROXYPROTO_OK;
    }
    int family = strcmp(f[1], "TCP4") == 0 ? AF_INET : strcmp(f[1], "TCP6") == 0 ? AF_INET6 : 0;
    uint16_t sport, dport;
    if (family == 0 || nf != 6 || !parse_port(f[4], &sport) || !parse_port(f[5], &dport) ||
        !set_addr(src, family, f[2], sport) || !set_addr(dst, family, f[3], dport))
        return PROXYPROTO_ERR;
    return PROXYPROTO_OK;
}

/* The TLVs after the address block (PROXY protocol §2.2.7): each a type
 * octet and a 16-bit length, exactly filling what is left. Their values
 * (ALPN, authority, CRC32C, SSL, NETNS...) are not used. */
static bool tlvs_well_formed(const uint8_t *t, size_t n)
{
    while (n > 0) {
        if (n < 3)
            return false;
        size_t len = ((size_t)t[1] << 8) | t[2];
        if (len > n - 3)
            return false;
        t += 3 + len;
        n -= 3 + len;
    }
    return true;
}

static int parse_v2(const uint8_t *p, size_t n, size_t *used, struct sockaddr_storage *src,
                    struct sockaddr_storage *dst)
{
    if (n < 16)
        return PROXYPROTO_AGAIN;
    uint8_t ver_cmd = p[12], fam = p[13];
    size_t len = ((size_t)p[14] << 8) | p[15];
    if ((ver_cmd & 0xF0) != 0x20 || 16 + len > PROXYPROTO_MAX)
        return PROXYPROTO_ERR;
    if (n < 16 + len)
        return PROXYPROTO_AGAIN;
    *used = 16 + len;
    const uint8_t *a = p + 16;
    if ((ver_cmd & 0x0F) == 0x0) { /* LOCAL: a health check, keep the real peer */
        src->ss_family = dst->ss_family = AF_UNSPEC;
        return PROXYPROTO_OK;
    }
    if ((ver_cmd & 0x0F) != 0x1)
        return PROXYPROTO_ERR;
    memset(src, 0, sizeof(*src));
    memset(dst, 0, sizeof(*dst));
    if (fam == 0x11 && len >= 12) { /* TCP over IPv4 */
        if (!tlvs_well_formed(a + 12, len - 12))
            return PROXYPROTO_ERR;
        struct sockaddr_in *s4 = (struct sockaddr_in *)src, *d4 = (struct sockaddr_in *)dst;
        s4->sin_family = d4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, a, 4);
        memcpy(&d4->sin_addr, a + 4, 4);
        memcpy(&s4->sin_port, a + 8, 2);
        memcpy(&d4->sin_port, a + 10, 2);
        return PROXYPROTO_OK;
    }
    if (fam == 0x21 && len >= 36) { /* TCP over IPv6 */
        if (!tlvs_well_formed(a + 36, len - 36))
            return PROXYPROTO_ERR;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)src, *d6 = (struct sockaddr_in6 *)dst;
        s6->sin6_family = d6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, a, 16);
        memcpy(&d6->sin6_addr, a + 16, 16);
        memcpy(&s6->sin6_port, a + 32, 2);
        memcpy(&d6->sin6_port, a + 34, 2);
        return PROXYPROTO_OK;
    }
    if ((fam & 0xF0) == 0x00) { /* UNSPEC */
        src->ss_family = dst->ss_family = AF_UNSPEC;
        return PROXYPROTO_OK;
    }
    return PROXYPROTO_ERR;
}

int proxyproto_parse(const uint8_t *p, size_t n, size_t *used, struct sockaddr_storage *src,
                     struct sockaddr_storage *dst)
{
    size_t k = n < sizeof(v2sig) ? n : sizeof(v2sig);

    if (memcmp(p, v2sig, k) == 0)
        return k < sizeof(v2sig) ? PROXYPROTO_AGAIN : parse_v2(p, n, used, src, dst);
    k = n < 6 ? n : 6;
    if (memcmp(p, "PROXY ", k) == 0)
        return k < 6 ? PROXYPROTO_AGAIN : parse_v1(p, n, used, src, dst);
    return PROXYPROTO_ERR;
}

size_t proxyproto_v1(char *out, size_t cap, const struct sockaddr *src,
                     const struct sockaddr *dst)
{
    char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
    int n;

    if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)src, *b = (const void *)dst;
        inet_ntop(AF_INET, &a->sin_addr, s, sizeof(s));
        inet_ntop(AF_INET, &b->sin_addr, d, sizeof(d));
        n = snprintf(out, cap, "PROXY TCP4 %s %s %u %u\r\n", s, d, ntohs(a->sin_port),
                     ntohs(b->sin_port));
    } else if (src->sa_family == AF_INET6 && dst->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)src, *b = (const void *)dst;
        inet_ntop(AF_INET6, &a->sin6_addr, s, sizeof(s));
        inet_ntop(AF_INET6, &b->sin6_addr, d, sizeof(d));
        n = snprintf(out, cap, "PROXY TCP6 %s %s %u %u\r\n", s, d, ntohs(a->sin6_port),
                     ntohs(b->sin6_port));
    } else {
        n = snprintf(out, cap, "PROXY UNKNOWN\r\n");
    }
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t proxyproto_v2(uint8_t *out, size_t cap, const struct sockaddr *src,
                     const struct sockaddr *dst)
{
    size_t len;

    if (cap < 16)
        return 0;
    memcpy(out, v2sig, sizeof(v2sig));
    out[12] = 0x21; /* version 2, PROXY */
    if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)src, *b = (const void *)dst;
        len = 12;
        if (cap < 16 + len)
            return 0;
        out[13] = 0x11;
        memcpy(out + 16, &a->sin_addr, 4);
        memcpy(out + 20, &b->sin_addr, 4);
        memcpy(out + 24, &a->sin_port, 2);
        memcpy(out + 26, &b->sin_port, 2);
    } else if (src->sa_family == AF_INET6 && dst->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)src, *b = (const void *)dst;
        len = 36;
        if (cap < 16 + len)
            return 0;
        out[13] = 0x21;
        memcpy(out + 16, &a->sin6_addr, 16);
        memcpy(out + 32, &b->sin6_addr, 16);
        memcpy(out + 48, &a->sin6_port, 2);
        memcpy(out + 50, &b->sin6_port, 2);
    } else {
        len = 0;
        out[13] = 0x00;
    }
    out[14] = (uint8_t)(len >> 8);
    out[15] = (uint8_t)len;
    return 16 + len;
}
