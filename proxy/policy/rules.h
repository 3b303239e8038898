/*
 * rules: the outbound TLS policy table of one listener (`policy` and
 * `policies` in the configuration) and the choice of the rule that applies
 * to one destination. Pure: no I/O, no resolver.
 */
#ifndef SMTP_TLS_PROXY_RULES_H
#define SMTP_TLS_PROXY_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "proxy/core/outbound.h"

struct policy_rule {
    char *match;           /* as written (owned by whoever owns the table) */
    bool is_net;           /* address/CIDR rather than host name */
    struct sockaddr_storage net;
    unsigned prefix;       /* CIDR length; 32/128 for a single address */
    enum outbound_policy policy;
};

struct policy_table {
    enum outbound_policy fallback; /* `policy`: when no rule matches */
    struct policy_rule *rules;
    size_t nrules;
};

/*
 * Parses a rule's match: an address or CIDR ("192.0.2.0/24", "2001:db8::/32";
 * IPv4-mapped IPv6 networks become IPv4 ones), an exact host name, or
 * ".suffix" for every name below a domain. Fills r's is_net/net/prefix (not
 * match or policy). Returns 0 or -1 with a message in why that quotes
 * shown_text (text made safe for messages by the caller).
 */
int policy_rule_parse(const char *text, const char *shown_text, struct policy_rule *r, char *why,
                      size_t whylen);

/* Whether two parsed rules match the same destinations (a repeated rule). */
bool policy_rule_same(const struct policy_rule *a, const struct policy_rule *b);

/* Policy that applies to a destination: the most specific rule of t.
 * Precedence: a rule naming host exactly, then the address rule with the
 * longest prefix matching addr, then the longest ".suffix" rule matching host
 * (names below the domain only), then t->fallback. Names compare
 * case-insensitively without a trailing dot; IPv4-mapped IPv6 addresses match
 * IPv4 rules. host or addr may be NULL; a host that is an IP literal is
 * matched as an address when addr is NULL. */
enum outbound_policy policy_for(const struct policy_table *t, const char *host,
                                const struct sockaddr *addr);

/* The rule policy_for() takes its answer from, or NULL when none matches
 * and t->fallback applies (DANE and MTA-STS come before `policy`, never
 * before an explicit rule). */
const struct policy_rule *policy_rule_for(const struct policy_table *t, const char *host,
                                          const struct sockaddr *addr);

/* Whether addr lies in one of the n address/CIDR rules (IPv4-mapped IPv6
 * addresses match IPv4 rules; name rules never match). */
bool policy_nets_contain(const struct policy_rule *rules, size_t n, const struct sockaddr *addr);

/* Whether any rule of t (or its fallback) is `verify`. */
bool policy_table_verifies(const struct policy_table *t);

/* "none" | "opportunistic" | "required" | "verify" | "dane". */
const char *policy_str(enum outbound_policy p);

#endif
