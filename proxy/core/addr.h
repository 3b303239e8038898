/*
 * addr: socket addresses as the configuration names them, and the one
 * formatter for addresses in logs and messages. Pure: no I/O, no resolver.
 */
#ifndef SMTP_TLS_PROXY_ADDR_H
#define SMTP_TLS_PROXY_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* A socket address from "0.0.0.0:25", "[::1]:25" or "localhost:25" (always
 * 127.0.0.1), filled in numerically. host holds the text as written (without
 * brackets) for logs and SNI. Only an outbound fixed destination may name a
 * host ("mx.example.net:25"): then sa is zeroed and salen is 0, and the
 * runtime resolves host. */
struct addr {
    struct sockaddr_storage sa;
    socklen_t salen;
    char host[256];
    unsigned short port;
};

/* Longest text addr_format() writes: "[" v6 "]:" port. */
#define ADDR_STRLEN 56

/* Writes "ip:port" ("[v6]:port") of an AF_INET/AF_INET6 address into out
 * (NUL-terminated, truncated to outlen), "unknown" for any other family.
 * Returns out. */
const char *addr_format(const struct sockaddr *sa, char *out, size_t outlen);

/* Writes "host:port" of a, with brackets around an IPv6 host, port given
 * separately (a listener bound to port 0 reports the port it got). */
const char *addr_format_spec(const struct addr *a, unsigned port, char *out, size_t outlen);

/* Just the IP of an AF_INET/AF_INET6 address, no port ("?" otherwise). */
const char *addr_format_ip(const struct sockaddr *sa, char *out, size_t outlen);

/* The port of an AF_INET/AF_INET6 address in host order, 0 otherwise. */
unsigned addr_port(const struct sockaddr *sa);

/* RFC 1123 host name with an optional trailing dot (underscores tolerated,
 * an all-digit last label refused: "192.0.2.300" is a mistyped address). */
bool addr_valid_hostname(const char *s);

/* Length of a host name without its trailing dot. */
size_t addr_name_len(const char *s);

#endif
