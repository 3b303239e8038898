/*
 * xclient: the XCLIENT line (Postfix's extension) that tells a backend who
 * the real client is. Pure.
 */
#ifndef SMTP_TLS_PROXY_XCLIENT_H
#define SMTP_TLS_PROXY_XCLIENT_H

#include <stddef.h>
#include <sys/socket.h>

/* Longest line xclient_line() writes, CRLF and NUL included. */
#define XCLIENT_LINE_MAX 200

/* Writes "XCLIENT ADDR=<ip> PORT=<port> NAME=[UNAVAILABLE]\r\n" for peer
 * (IPv6 addresses carry the "IPV6:" tag) into out. Returns its length, or 0
 * when peer is neither AF_INET nor AF_INET6 or cap is too small. */
size_t xclient_line(char *out, size_t cap, const struct sockaddr *peer);

#endif
