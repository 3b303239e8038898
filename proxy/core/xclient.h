/*
 * xclient: the XCLIENT line (Postfix's extension) that tells a backend who
 * the real client is. Pure.
 */
#ifndef SMTP_TLS_PROXY_XCLIENT_H
#define SMTP_TLS_PROXY_XCLIENT_H

#include <stddef.h>
#include <sys/socket.h>

/* Longest line xclient_line() writes, CRLF and NUL included (a 253-octet
 * name fits). */
#define XCLIENT_LINE_MAX 384

/* The NAME values Postfix's XCLIENT_README gives for "no name". */
#define XCLIENT_NAME_UNAVAILABLE "[UNAVAILABLE]" /* none, or it does not confirm */
#define XCLIENT_NAME_TEMPUNAVAIL "[TEMPUNAVAIL]" /* the lookup failed for now */

/* Writes "XCLIENT ADDR=<ip> PORT=<port> NAME=<name>\r\n" for peer (IPv6
 * addresses carry the "IPV6:" tag) into out. name is the client's
 * forward-confirmed reverse name, XCLIENT_NAME_TEMPUNAVAIL, or NULL; a name
 * that is not a valid host name (addr_valid_hostname) becomes
 * XCLIENT_NAME_UNAVAILABLE, as does NULL. Returns the line's length, or 0
 * when peer is neither AF_INET nor AF_INET6 or cap is too small. */
size_t xclient_line(char *out, size_t cap, const struct sockaddr *peer, const char *name);

#endif
