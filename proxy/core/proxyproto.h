/*
 * proxyproto: the HAProxy PROXY protocol, versions 1 (text) and 2
 * (binary), both ways: parsing the header a load balancer puts in front of
 * a connection, and writing one for a backend. Pure: no I/O.
 */
#ifndef SMTP_TLS_PROXY_PROXYPROTO_H
#define SMTP_TLS_PROXY_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest header parsed: v1 is at most 107 octets; v2 may carry up to the
 * protocol's maximum of 16 + 65535 octets (addresses plus TLVs: the TLVs'
 * framing is checked, their values are skipped). */
#define PROXYPROTO_MAX (16 + 65535)

enum proxyproto_status {
    PROXYPROTO_OK = 0,
    PROXYPROTO_AGAIN = 1,
    PROXYPROTO_ERR = -1,
};

/*
 * Parses a header at the start of p. PROXYPROTO_OK with *used = its length
 * and the addresses filled in (ss_family AF_UNSPEC for "UNKNOWN" / LOCAL:
 * keep the real peer); PROXYPROTO_AGAIN if more bytes are needed;
 * PROXYPROTO_ERR if this is not a valid header.
 */
int proxyproto_parse(const uint8_t *p, size_t n, size_t *used, struct sockaddr_storage *src,
                     struct sockaddr_storage *dst);

/* Writes a v1 or v2 header for src -> dst (both AF_INET or both AF_INET6;
 * anything else gives "UNKNOWN" / LOCAL). Returns its length (<= cap), or
 * 0 if cap is too small (108 always suffices for v1, 52 for v2). */
size_t proxyproto_v1(char *out, size_t cap, const struct sockaddr *src,
                     const struct sockaddr *dst);
size_t proxyproto_v2(uint8_t *out, size_t cap, const struct sockaddr *src,
                     const struct sockaddr *dst);

#endif
