/*
 * Outbound TLS policy rules and their matching; see rules.h.
 */
#include "proxy/policy/rules.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/core/addr.h"

static const uint8_t *net_bytes(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
    return (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
}

/* Whether the first prefix bits of a and b agree. */
static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned full = prefix / 8, rest = prefix % 8;

    if (memcmp(a, b, full) != 0)
        return false;
    return rest == 0 || ((a[full] ^ b[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

/* Fills r->net/prefix from an address or CIDR text. IPv4-mapped IPv6 rules
 * ("::ffff:192.0.2.0/120") become IPv4 rules, as mapped addresses are matched
 * as IPv4 too: one spelling per network keeps "most specific" well defined. */
static int parse_net(const char *text, const char *shown_text, struct policy_rule *r, char *why,
                     size_t whylen)
{
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(text, '/');
    size_t alen = slash ? (size_t)(slash - text) : strlen(text);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&r->net;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&r->net;
    unsigned bits, prefix = 0;
    uint8_t host_bits;

    memset(&r->net, 0, sizeof r->net);
    if (alen >= sizeof addr)
        return 0;
    memcpy(addr, text, alen);
    addr[alen] = '\0';
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        bits = 32;
    } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        bits = 128;
    } else {
        return 0; /* not an address: the caller tries a host name */
    }

    if (!slash) {
        prefix = bits;
    } else {
        const char *d = slash + 1;

        if (!*d || strlen(d) > 3 || strspn(d, "0123456789") != strlen(d) ||
            (prefix = (unsigned)atoi(d)) > bits) {
            snprintf(why, whylen, "\"%s\": prefix length must be 0 to %u", shown_text,
                     bits);
            return -1;
        }
    }

    /* "192.0.2.1/24" is refused rather than silently widened: it is either
     * a typo in the address or in the length, and only the user knows which. */
    for (unsigned b = prefix; b < bits; b++) {
        host_bits = net_bytes(&r->net)[b / 8] & (uint8_t)(0x80 >> (b % 8));
        if (host_bits) {
            snprintf(why, whylen, "\"%s\": address has bits set beyond the /%u prefix",
                     shown_text, prefix);
            return -1;
        }
    }

    if (bits == 128 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) && prefix >= 96) {
        struct in_addr v4;

        memcpy(&v4, &s6->sin6_addr.s6_addr[12], sizeof v4);
        memset(&r->net, 0, sizeof r->net);
        s4->sin_family = AF_INET;
        s4->sin_addr = v4;
        prefix -= 96;
    }
    r->is_net = true;
    r->prefix = prefix;
    return 1;
}

/* A rule's match: an address or CIDR, an exact host name, or ".suffix" for
 * every name below a domain. */
int policy_rule_parse(const char *text, const char *shown_text, struct policy_rule *r, char *why,
                      size_t whylen)
{
    int rc = parse_net(text, shown_text, r, why, whylen);

    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (text[0] == '*' && text[1] == '.') {
        /* The suggestion quotes the text too, so it is made of shown_text:
         * text itself may hold a newline that would split the message. */
        snprintf(why, whylen, "\"%s\": write \"%s\" to match every name below a domain",
                 shown_text, shown_text[0] == '*' ? shown_text + 1 : shown_text);
        return -1;
    }
    if (!addr_valid_hostname(text[0] == '.' ? text + 1 : text) || strchr(text, '/')) {
        snprintf(why, whylen,
                 "\"%s\" is not a host name, \".domain\" suffix, IP address or CIDR network",
                 shown_text);
        return -1;
    }
    r->is_net = false;
    return 0;
}

bool policy_rule_same(const struct policy_rule *a, const struct policy_rule *b)
{
    if (a->is_net != b->is_net)
        return false;
    if (!a->is_net) {
        size_t la = addr_name_len(a->match), lb = addr_name_len(b->match);

        return la == lb && strncasecmp(a->match, b->match, la) == 0;
    }
    return a->net.ss_family == b->net.ss_family && a->prefix == b->prefix &&
           prefix_equal(net_bytes(&a->net), net_bytes(&b->net), a->prefix);
}

/* The address bytes of an AF_INET/AF_INET6 address into bytes (16 octets
 * of room), IPv4-mapped IPv6 as IPv4; returns the family, 0 for others. */
static int sockaddr_bytes(const struct sockaddr *addr, uint8_t *bytes)
{
    if (addr->sa_family == AF_INET) {
        memcpy(bytes, &((const struct sockaddr_in *)(const void *)addr)->sin_addr, 4);
        return AF_INET;
    }
    if (addr->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr;

        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            memcpy(bytes, &a6->s6_addr[12], 4);
            return AF_INET;
        }
        memcpy(bytes, a6, 16);
        return AF_INET6;
    }
    return 0;
}

bool policy_nets_contain(const struct policy_rule *rules, size_t n, const struct sockaddr *addr)
{
    uint8_t bytes[16];
    int family = sockaddr_bytes(addr, bytes);

    for (size_t i = 0; family && i < n; i++)
        if (rules[i].is_net && rules[i].net.ss_family == family &&
            prefix_equal(net_bytes(&rules[i].net), bytes, rules[i].prefix))
            return true;
    return false;
}

/*
 * Precedence, most specific first:
 *   1. a rule naming the host exactly ("mx.example.net");
 *   2. the address rule with the longest prefix ("192.0.2.7", then
 *      "192.0.2.0/24", ...);
 *   3. the ".suffix" rule with the longest suffix (".mail.example.net" beats
 *      ".example.net");
 *   4. t->fallback.
 * An exact name is the most deliberate statement a rule can make about one
 * destination, so it wins outright. Between an address and a domain suffix the
 * address wins: it describes the machine actually connected to, while a suffix
 * covers whatever a domain's MX records point at. A suffix matches names below
 * the domain only: ".example.net" matches "mx.example.net" but not
 * "example.net" (write both rules for both). Names compare without regard to
 * case or a trailing dot. IPv4-mapped IPv6 addresses are matched as IPv4.
 */
const struct policy_rule *policy_rule_for(const struct policy_table *t, const char *host,
                                          const struct sockaddr *addr)
{
    const struct policy_rule *net = NULL, *suffix = NULL;
    uint8_t bytes[16];
    int family = 0;
    size_t hlen = host ? addr_name_len(host) : 0;

    if (addr && (family = sockaddr_bytes(addr, bytes)) != 0) {
        /* matched as an address */
    } else if (host && inet_pton(AF_INET, host, bytes) == 1) {
        /* The caller only knows the destination as an IP literal. */
        family = AF_INET;
    } else if (host && inet_pton(AF_INET6, host, bytes) == 1) {
        family = AF_INET6;
        if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(const void *)bytes)) {
            memmove(bytes, bytes + 12, 4);
            family = AF_INET;
        }
    }

    for (size_t i = 0; i < t->nrules; i++) {
        const struct policy_rule *r = &t->rules[i];

        if (r->is_net) {
            if (family && r->net.ss_family == family &&
                prefix_equal(net_bytes(&r->net), bytes, r->prefix) &&
                (!net || r->prefix > net->prefix))
                net = r;
        } else if (hlen) {
            size_t rlen = addr_name_len(r->match);

            if (r->match[0] != '.') {
                if (rlen == hlen && strncasecmp(r->match, host, hlen) == 0)
                    return r;
            } else if (hlen > rlen && strncasecmp(host + hlen - rlen, r->match, rlen) == 0 &&
                       (!suffix || rlen > addr_name_len(suffix->match))) {
                suffix = r;
            }
        }
    }
    return net ? net : suffix;
}

enum outbound_policy policy_for(const struct policy_table *t, const char *host,
                                const struct sockaddr *addr)
{
    const struct policy_rule *r = policy_rule_for(t, host, addr);
    return r ? r->policy : t->fallback;
}

const char *policy_str(enum outbound_policy p)
{
    switch (p) {
    case OUTBOUND_NONE:
        return "none";
    case OUTBOUND_OPPORTUNISTIC:
        return "opportunistic";
    case OUTBOUND_REQUIRED:
        return "required";
    case OUTBOUND_VERIFY:
        return "verify";
    case OUTBOUND_DANE:
        return "dane";
    }
    return "unknown";
}

bool policy_table_verifies(const struct policy_table *t)
{
    if (t->fallback == OUTBOUND_VERIFY)
        return true;
    for (size_t i = 0; i < t->nrules; i++)
        if (t->rules[i].policy == OUTBOUND_VERIFY)
            return true;
    return false;
}
