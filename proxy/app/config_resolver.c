/*
 * The resolver block (DESIGN.md "Contract, second part"):
 *
 *     resolver = { servers = [ "127.0.0.1:53" ]; dnssec = "validate";
 *                  trust_anchor = "/usr/share/dns/root.key"; };
 *
 * into struct resolver_options, which the resolver module defines.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/app/config_int.h"

static const char *const dnssec_names[] = {"validate", "trust-ad", "off", NULL};

static bool is_loopback(const struct addr *a)
{
    if (a->sa.ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)&a->sa)->sin_addr.s_addr) >> 24) == 127;
    if (a->sa.ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&a->sa)->sin6_addr);
    return false;
}

/* One server: "ip:port", "[v6]:port", or a bare IP for port 53. Never a
 * name: the resolver cannot look up its own servers. */
static int parse_server(const char *text, struct addr *a, char *why, size_t whylen)
{
    char buf[300];
    struct in6_addr ip;

    if (inet_pton(AF_INET, text, &ip) == 1 || inet_pton(AF_INET6, text, &ip) == 1) {
        snprintf(buf, sizeof buf, strchr(text, ':') ? "[%s]:53" : "%s:53", text);
        text = buf;
    }
    if (cfg_parse_addr(text, false, a, why, whylen) < 0)
        return -1;
    if (a->port == 0) {
        snprintf(why, whylen, "port 0");
        return -1;
    }
    return 0;
}

#define RESOLV_CONF "/etc/resolv.conf"

/* With trust-ad and no servers: the nameserver lines of /etc/resolv.conf
 * (resolv.conf(5); at most RESOLVER_MAX_SERVERS, as the C library's 3). */
static void resolv_conf_servers(struct loader *ld, const config_setting_t *at,
                                struct resolver_options *r)
{
    FILE *f = fopen(RESOLV_CONF, "r");
    char line[512];
    bool whole = true;

    if (f == NULL) {
        cfg_fail(ld, at, "resolver.dnssec: \"trust-ad\" without servers uses those of "
                 RESOLV_CONF ", which cannot be read: %s", strerror(errno));
        return;
    }
    while (fgets(line, sizeof line, f) != NULL && r->nservers < RESOLVER_MAX_SERVERS) {
        bool start = whole;
        char *save = NULL, *kw, *ip, why[256];

        whole = strchr(line, '\n') != NULL; /* the rest of an overlong line is no line */
        if (!start)
            continue;
        kw = strtok_r(line, " \t\r\n", &save);
        if (kw == NULL || strcmp(kw, "nameserver") != 0 ||
            (ip = strtok_r(NULL, " \t\r\n", &save)) == NULL)
            continue;
        if (parse_server(ip, &r->servers[r->nservers], why, sizeof why) < 0) {
            cfg_fail(ld, at, "resolver.dnssec: \"trust-ad\" without servers uses those of "
                     RESOLV_CONF ", and its nameserver %s is not an IP address: %s", ip, why);
            continue;
        }
        r->nservers++;
    }
    fclose(f);
    if (r->nservers == 0)
        cfg_fail(ld, at, "resolver.dnssec: \"trust-ad\" needs servers, and " RESOLV_CONF
                 " names none: set resolver.servers to a validating resolver on the loopback "
                 "interface");
}

static void load_servers(struct loader *ld, const config_setting_t *blk, struct resolver_options *r)
{
    const config_setting_t *s = cfg_member(blk, "servers");

    if (s == NULL)
        return;
    if (!config_setting_is_list(s) && !config_setting_is_array(s)) {
        cfg_fail(ld, s, "resolver.servers: expected a list of \"address:port\" strings");
        return;
    }
    unsigned n = (unsigned)config_setting_length(s);
    if (n == 0) {
        cfg_fail(ld, s, "resolver.servers: the list is empty (leave it out to use "
                 "/etc/resolv.conf)");
        return;
    }
    if (n > RESOLVER_MAX_SERVERS) {
        cfg_fail(ld, s, "resolver.servers: at most %d servers", RESOLVER_MAX_SERVERS);
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, i);
        char why[256];

        if (config_setting_type(e) != CONFIG_TYPE_STRING) {
            cfg_fail(ld, e, "resolver.servers[%u]: expected \"address:port\"", i);
            continue;
        }
        if (parse_server(config_setting_get_string(e), &r->servers[r->nservers], why,
                         sizeof why) < 0) {
            cfg_fail(ld, e, "resolver.servers[%u]: expected an IP address with an optional "
                     "port: %s", i, why);
            continue;
        }
        r->nservers++;
    }
}

/* The line of the first listener of c that looks names up (a fixed
 * destination that is a name other than localhost), or of the tls_rpt
 * block (_smtp._tls TXT lookups), or 0. */
static int resolver_user_line(const struct config *c)
{
    if (c->tls_rpt.enabled)
        return c->tls_rpt.line > 0 ? c->tls_rpt.line : 1;
    for (size_t i = 0; i < c->noutbound; i++) {
        const struct session_outbound_opts *o = &c->outbound[i].opts;

        if (!o->original_dst && o->destination.salen == 0 &&
            strcasecmp(o->destination.host, "localhost") != 0 &&
            strcasecmp(o->destination.host, "localhost.") != 0)
            return c->outbound[i].line > 0 ? c->outbound[i].line : 1;
    }
    return 0;
}

void cfg_resolver_defaults(struct resolver_options *r)
{
    memset(r, 0, sizeof(*r));
    r->dnssec = RESOLVER_DNSSEC_VALIDATE;
}

void cfg_load_resolver(struct loader *ld, const config_setting_t *root)
{
    static const char *const keys[] = {"servers", "dnssec", "trust_anchor", NULL};
    struct resolver_options *r = &ld->c->resolver;
    const config_setting_t *blk = cfg_get_group(ld, root, "", "resolver");
    const char *ta = NULL;
    int v, has_ta = 0;

    if (blk != NULL) {
        cfg_check_keys(ld, blk, "resolver", keys);
        load_servers(ld, blk, r);
        if (cfg_get_enum(ld, blk, "resolver", "dnssec", dnssec_names, &v) > 0)
            r->dnssec = (enum resolver_dnssec)v;
        has_ta = cfg_get_string(ld, blk, "resolver", "trust_anchor", &ta);
    }
    if (has_ta < 0)
        return;
    if (r->dnssec == RESOLVER_DNSSEC_TRUST_AD) {
        const config_setting_t *at = cfg_member(blk, "dnssec");
        bool from_resolv_conf = r->nservers == 0;

        /* The AD bit is only as trustworthy as the path it travels: on the
         * loopback interface, from a validating resolver on this host. The
         * servers of /etc/resolv.conf are read now, so that a remote one is
         * an error here rather than an AD bit believed later. trust_anchor
         * is the recursor's business then: accepted and ignored. */
        if (from_resolv_conf)
            resolv_conf_servers(ld, at, r);
        for (size_t i = 0; i < r->nservers; i++) {
            char t[ADDR_STRLEN];

            if (!is_loopback(&r->servers[i]))
                cfg_fail(ld, at, "resolver.dnssec: \"trust-ad\" is allowed only with loopback "
                         "servers, and %s%s is not one (the AD bit of a remote resolver can be "
                         "forged): use \"validate\"",
                         addr_format((const struct sockaddr *)&r->servers[i].sa, t, sizeof t),
                         from_resolv_conf ? " (from " RESOLV_CONF ")" : "");
        }
        return;
    }
    if (r->dnssec != RESOLVER_DNSSEC_VALIDATE) {
        if (has_ta > 0)
            cfg_fail(ld, cfg_member(blk, "trust_anchor"), "resolver.trust_anchor: only "
                     "used with dnssec = \"validate\"");
        return;
    }
    r->trust_anchor = cfg_resolve_path(ld, has_ta > 0 ? ta : RESOLVER_DEFAULT_TRUST_ANCHOR);
    if (r->trust_anchor == NULL)
        return;
    /* Checked where it was written or where lookups happen: a proxy that
     * never looks a name up starts without dns-root-data. */
    int user = resolver_user_line(ld->c), rc;
    if ((has_ta > 0 || user > 0) && (rc = cfg_check_readable(r->trust_anchor)) < 0) {
        if (has_ta > 0)
            cfg_fail_unreadable(ld, cfg_member(blk, "trust_anchor"), "resolver.trust_anchor", ta,
                                r->trust_anchor, rc, NULL);
        else
            cfg_fail_line(ld, NULL, blk ? (int)config_setting_source_line(blk) : user,
                          "resolver.trust_anchor: cannot read the default \"%s\": %s (this "
                          "destination is looked up with DNSSEC validation: install "
                          "dns-root-data, set resolver.trust_anchor, or set resolver.dnssec = "
                          "\"off\")",
                          r->trust_anchor, strerror(-rc));
    }
}

void cfg_resolver_clear(struct resolver_options *r)
{
    free(r->trust_anchor);
    r->trust_anchor = NULL;
}
