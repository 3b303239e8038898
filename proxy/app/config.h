/*
 * config: the libconfig file (DESIGN.md "Configuration") turned into plain
 * structs. Only config.c includes <libconfig.h>; everything else sees the
 * structs below, which own all of their strings.
 */
#ifndef SMTP_TLS_PROXY_CONFIG_H
#define SMTP_TLS_PROXY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "proxy/core/addr.h"
#include "proxy/obs/log.h"
#include "proxy/tls/tls.h"

enum config_tls_mode { CONFIG_TLS_STARTTLS, CONFIG_TLS_IMPLICIT };
enum config_client_info {
    CONFIG_CLIENT_INFO_NONE,
    CONFIG_CLIENT_INFO_XCLIENT,
    CONFIG_CLIENT_INFO_PROXY_V1,
    CONFIG_CLIENT_INFO_PROXY_V2,
};
/* What the proxy does with a bare CR or LF inside message content. */
enum config_bare_newline {
    CONFIG_BARE_NEWLINE_NORMALIZE, /* rewrite to CRLF, keeping the strict message end */
    CONFIG_BARE_NEWLINE_REJECT,    /* 521 5.5.2 and close, as Postfix's "reject" */
};
enum config_policy {
    CONFIG_POLICY_NONE,
    CONFIG_POLICY_OPPORTUNISTIC,
    CONFIG_POLICY_REQUIRED,
    CONFIG_POLICY_VERIFY,
};

struct config_timeouts {
    unsigned connect;     /* seconds */
    unsigned handshake;
    unsigned idle;
};

struct config_inbound {
    char *name;
    struct addr listen;
    struct addr backend;
    enum config_tls_mode tls_mode;
    bool require_tls;
    bool proxy_protocol;
    enum config_client_info backend_client_info;
    enum config_bare_newline bare_newline;
    unsigned max_connections;
    struct config_timeouts timeouts;
    struct tls_options tls; /* global block merged with the listener's overrides */
    int line;              /* where it was defined, for messages */
};

struct config_policy_rule {
    char *match;           /* as written */
    bool is_net;           /* address/CIDR rather than host name */
    struct sockaddr_storage net;
    unsigned prefix;       /* CIDR length; 32/128 for a single address */
    enum config_policy policy;
};

struct config_outbound {
    char *name;
    struct addr listen;
    bool original_dst;            /* destination = "original" */
    struct addr destination; /* when !original_dst */
    enum config_policy policy;
    struct config_policy_rule *policies;
    size_t npolicies;
    unsigned max_connections;
    struct config_timeouts timeouts;
    struct tls_options tls;
    int line;
};

struct config {
    char *file;                   /* path it was read from, or "(built-in)" */
    unsigned workers;             /* 0 = one per CPU */
    enum log_level log_level;
    enum log_format log_format;
    bool metrics_enabled;
    struct addr metrics_listen;
    unsigned shutdown_timeout;
    struct tls_options tls;        /* global defaults */
    struct config_inbound *inbound;
    size_t ninbound;
    struct config_outbound *outbound;
    size_t noutbound;
};

/*
 * Loads and validates FILE. On success returns a new config (free with
 * config_free) and 0. On failure sets *out to NULL and returns a negative
 * value (-EINVAL for a bad config, -errno when FILE cannot be opened,
 * -ENOMEM), and writes one "FILE:LINE: message" line per problem, in file
 * order, to err (a caller-owned buffer of errlen bytes, always NUL-terminated
 * when errlen > 0; lines separated by '\n', no trailing newline). The one
 * message without a line is "FILE: cannot read: <strerror>".
 * Relative paths in the file (certificates, keys, ca_file, @include) are
 * resolved against FILE's directory and stored absolute. Certificates and
 * keys must be readable, and ca_file too when an outbound listener can use
 * policy "verify"; none is parsed here: tls.c does that.
 */
int config_load(const char *file, struct config **out, char *err, size_t errlen);

/* Same as config_load, from a string; name is used in messages as FILE, and
 * its directory (the working directory if it has none) resolves relative
 * paths. */
int config_load_string(const char *text, const char *name, struct config **out,
                       char *err, size_t errlen);

/* The built-in default: inbound "default" 127.0.0.1:2525 -> 127.0.0.1:25,
 * STARTTLS, no certificate files (the caller makes a self-signed one). */
struct config *config_default(void);

/* Accepts NULL and half-built configs. */
void config_free(struct config *c);

/* Policy that applies to a destination: the most specific rule of o->policies.
 * Precedence: a rule naming host exactly, then the address rule with the
 * longest prefix matching addr, then the longest ".suffix" rule matching host
 * (names below the domain only), then o->policy. Names compare
 * case-insensitively without a trailing dot; IPv4-mapped IPv6 addresses match
 * IPv4 rules. host or addr may be NULL; a host that is an IP literal is
 * matched as an address when addr is NULL. Reasons in config.c. */
enum config_policy config_policy_for(const struct config_outbound *o, const char *host,
                                     const struct sockaddr *addr);

const char *config_policy_str(enum config_policy p);

#endif
