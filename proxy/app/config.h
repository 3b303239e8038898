/*
 * config: the libconfig file (DESIGN.md "Configuration") turned into plain
 * structs. Only the config*.c files include <libconfig.h>; everything else
 * sees the structs below, which own all of their strings.
 */
#ifndef SMTP_TLS_PROXY_CONFIG_H
#define SMTP_TLS_PROXY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "proxy/core/addr.h"
#include "proxy/net/resolver_options.h"
#include "proxy/obs/log.h"
#include "proxy/session/options.h"
#include "proxy/tls/tls.h"

/* One inbound listener: where it listens, its certificates, and what its
 * sessions need (a struct of the session module's). */
struct config_inbound {
    char *name;
    struct addr listen;
    struct tls_options tls;  /* global block merged with the listener's overrides */
    struct session_inbound_opts opts;
    int line;                /* where it was defined, for messages */
};

struct config_outbound {
    char *name;
    struct addr listen;
    struct tls_options tls;
    struct session_outbound_opts opts;
    bool tls_rpt; /* record this listener's results (needs the tls_rpt block) */
    int line;
};

/* The tls_rpt block (RFC 8460 reports); enabled when present. */
struct config_tls_rpt {
    bool enabled;
    char *organization;
    char *contact;
    char *directory; /* absolute */
    struct addr submit;
    int line;
};

/* The mta_sts block: the policy service (proxy/service/mta_sts_svc.h). */
struct config_mta_sts {
    bool enabled;  /* some outbound listener has mta_sts = true */
    char *cache;   /* absolute path of the cache file, or NULL: memory only */
    char *ca_file; /* absolute path: mta_sts.ca_file, else tls.ca_file, else the system's */
    bool has_redis; /* mta_sts.redis: the fleet's shared cache */
    struct addr redis;
    int line;      /* of the block, 0 without one */
};

struct config {
    char *file;                   /* path it was read from, or "(built-in)" */
    unsigned workers;             /* 0 = one per CPU */
    enum log_level log_level;
    enum log_format log_format;
    bool metrics_enabled;
    struct addr metrics_listen;
    unsigned shutdown_timeout;
    /* user/group: who to become after binding when started as root. Names
     * are resolved at load time (an unknown one is a config error). */
    bool drop_privileges;         /* user is set */
    char *user, *group;           /* group: as written, or user's primary group */
    uid_t uid;
    gid_t gid;
    struct tls_options tls;        /* global defaults */
    struct resolver_options resolver; /* the resolver block */
    struct config_tls_rpt tls_rpt;
    struct config_mta_sts mta_sts;    /* the mta_sts block */
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

#endif
