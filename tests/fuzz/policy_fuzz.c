/*
 * Fuzz target for proxy/policy/rules.c: rule texts as an operator writes
 * them in `policies`, and destinations as DNS and the client name them.
 * Input layout:
 *   byte 0   bits 0-1 the fallback policy; bit 2: an address is given,
 *            bit 3: it is IPv6 (16 bytes) rather than IPv4 (4 bytes)
 *   then     the address bytes, if given
 *   rest     lines separated by '\n': each but the last is a rule, its
 *            first byte the policy (low two bits), the rest the match text;
 *            the last line is the host name (empty: none)
 * Invariants (abort on violation):
 *   - policy_rule_parse is 0 or -1; -1 comes with a message quoting the
 *     text as shown (control characters replaced) and no raw control
 *     character; a parsed network has its family's prefix range, no host bits,
 *     and an IPv4-mapped network of /96 or more became IPv4;
 *   - policy_rule_same is reflexive and symmetric;
 *   - policy_for gives the fallback or some rule's policy; a host that
 *     differs only in case or a trailing dot gets the same; an IP-literal
 *     host is matched as the address it spells; an IPv4-mapped address as
 *     the IPv4 one;
 *   - policy_table_verifies agrees with the table;
 *   - decide_rcpt (decide.c), its input from the first four bytes and the
 *     policy the table gave: a pass never comes with a reason, a refusal
 *     always with a 450 reply; enforce = false never refuses and changes
 *     nothing else; auth=dane and auth=mta-sts only with TLS and what they
 *     require; what passes in plaintext passes with TLS; the sts trusted
 *     bit names which certificate failure it was (STS_NAME when trusted,
 *     STS_UNTRUSTED when not, only with TLS, an allowed MX host and no
 *     valid name) and changes nothing else.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/policy/decide.h"
#include "proxy/policy/rules.h"
#include "tests/fuzz/fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RULES 64

/* A NUL-terminated heap copy of p[0..n), exactly sized. */
static char *dup_text(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);

    CHECK(s != NULL);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* text as the configuration loader shows it: control characters replaced
 * (the caller's job; messages must quote only this). */
static char *shown_copy(const char *text)
{
    size_t n = strlen(text);
    char *s = dup_text((const uint8_t *)text, n);

    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            s[i] = '?';
    return s;
}

static void check_parsed(const char *text, const struct policy_rule *r)
{
    if (!r->is_net) {
        CHECK(text[0] != '\0');
        return;
    }
    const uint8_t *b;
    unsigned bits;
    if (r->net.ss_family == AF_INET) {
        b = (const uint8_t *)&((const struct sockaddr_in *)&r->net)->sin_addr;
        bits = 32;
    } else {
        CHECK(r->net.ss_family == AF_INET6);
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)&r->net)->sin6_addr;
        CHECK(!IN6_IS_ADDR_V4MAPPED(a6) || r->prefix < 96);
        b = a6->s6_addr;
        bits = 128;
    }
    CHECK(r->prefix <= bits);
    for (unsigned i = r->prefix; i < bits; i++)
        CHECK((b[i / 8] & (0x80 >> (i % 8))) == 0);
}

static enum outbound_policy lookup(const struct policy_table *t, const char *host,
                                   const struct sockaddr *addr)
{
    enum outbound_policy p = policy_for(t, host, addr);
    bool known = p == t->fallback;

    for (size_t i = 0; i < t->nrules && !known; i++)
        known = t->rules[i].policy == p;
    CHECK(known);
    return p;
}

/* The host in other case and with a trailing dot gets the same policy
 * (unless the dot would turn an IP literal into a name). */
static void check_host_spellings(const struct policy_table *t, const char *host,
                                 const struct sockaddr *addr, enum outbound_policy p)
{
    size_t n = strlen(host);
    char *other = malloc(n + 2);
    uint8_t tmp[16];

    CHECK(other != NULL);
    for (size_t i = 0; i < n; i++)
        other[i] = (char)(isupper((unsigned char)host[i]) ? tolower((unsigned char)host[i])
                                                          : toupper((unsigned char)host[i]));
    other[n] = '\0';
    CHECK(lookup(t, other, addr) == p);
    bool literal = inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
    if (!literal && n > 0 && host[n - 1] != '.') {
        other[n] = '.';
        other[n + 1] = '\0';
        CHECK(lookup(t, other, addr) == p);
    }
    free(other);
}

/* An IP-literal host without an address is matched as that address. */
static void check_literal(const struct policy_table *t, const char *host, enum outbound_policy p)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    else
        return;
    CHECK(lookup(t, NULL, (const struct sockaddr *)&ss) == p);
    CHECK(lookup(t, host, (const struct sockaddr *)&ss) == p);
}

/* An IPv4 address and its IPv4-mapped IPv6 form get the same policy. */
static void check_mapped(const struct policy_table *t, const struct sockaddr_storage *ss)
{
    struct sockaddr_in6 m;

    if (ss->ss_family != AF_INET)
        return;
    memset(&m, 0, sizeof(m));
    m.sin6_family = AF_INET6;
    m.sin6_addr.s6_addr[10] = m.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&m.sin6_addr.s6_addr[12], &((const struct sockaddr_in *)ss)->sin_addr, 4);
    CHECK(lookup(t, NULL, (const struct sockaddr *)ss) ==
          lookup(t, NULL, (const struct sockaddr *)&m));
}

static void check_decide(const uint8_t *data, size_t size, enum outbound_policy p)
{
    if (size < 4)
        return;
    struct decide_input in = {
        .rule = data[1] & 1,
        .rule_policy = p,
        .fallback = (enum outbound_policy)((data[1] >> 1) & 3),
        .dane = (enum decide_dane)(data[2] % 6),
        .sts = {(enum decide_sts_mode)((data[2] >> 3) & 3), data[2] & 0x20, data[2] & 0x40,
                data[2] & 0x80},
        .tls = data[3] & 1,
        .pkix_domain = data[3] & 2,
        .pkix_session = data[3] & 4,
        .enforce = data[3] & 8,
    };
    struct decide_verdict v = decide_rcpt(&in);
    CHECK(v.result == DECIDE_PASS || v.result == DECIDE_REFUSE_TEMP || v.result == DECIDE_LOGGED);
    CHECK((v.result == DECIDE_PASS) == (v.why == DECIDE_WHY_NONE));
    if (v.result != DECIDE_PASS) {
        const char *r = decide_reply(v.why);
        CHECK(r != NULL && strncmp(r, "450 4.", 6) == 0);
    }
    CHECK(in.enforce || v.result != DECIDE_REFUSE_TEMP);
    struct decide_input other = in;
    other.enforce = !in.enforce;
    struct decide_verdict o = decide_rcpt(&other);
    CHECK(o.auth == v.auth && o.why == v.why &&
          (o.result == DECIDE_PASS) == (v.result == DECIDE_PASS));
    if (v.result == DECIDE_PASS && v.auth == DECIDE_AUTH_DANE)
        CHECK(in.tls && !in.rule && in.dane == DECIDE_DANE_MATCH);
    if (v.result == DECIDE_PASS && v.auth == DECIDE_AUTH_MTA_STS)
        CHECK(in.tls && !in.rule && in.sts.mode == DECIDE_STS_ENFORCE && in.sts.name_ok &&
              in.sts.mx_ok);
    if (v.result == DECIDE_PASS && !in.tls) {
        CHECK(v.auth == DECIDE_AUTH_NONE);
        other = in;
        other.tls = true;
        CHECK(decide_rcpt(&other).result == DECIDE_PASS);
    }
    if (in.rule && (p == OUTBOUND_NONE || p == OUTBOUND_OPPORTUNISTIC))
        CHECK(v.result == DECIDE_PASS);
    if (v.why == DECIDE_WHY_STS_NAME || v.why == DECIDE_WHY_STS_UNTRUSTED)
        CHECK(in.tls && in.sts.mx_ok && !in.sts.name_ok &&
              in.sts.trusted == (v.why == DECIDE_WHY_STS_NAME));
    other = in;
    other.sts.trusted = !in.sts.trusted;
    o = decide_rcpt(&other);
    CHECK(o.result == v.result && o.auth == v.auth);
    CHECK(o.why == v.why || ((o.why == DECIDE_WHY_STS_NAME || o.why == DECIDE_WHY_STS_UNTRUSTED) &&
                             (v.why == DECIDE_WHY_STS_NAME || v.why == DECIDE_WHY_STS_UNTRUSTED)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct policy_rule rules[MAX_RULES];
    struct policy_table t = {.rules = rules, .nrules = 0};
    struct sockaddr_storage ss;
    const struct sockaddr *addr = NULL;
    char *host = NULL;

    if (size < 1)
        return 0;
    t.fallback = (enum outbound_policy)(data[0] & 3);
    size_t pos = 1;
    memset(&ss, 0, sizeof(ss));
    if (data[0] & 4) {
        size_t alen = data[0] & 8 ? 16 : 4;
        if (size < pos + alen)
            return 0;
        if (alen == 16) {
            ss.ss_family = AF_INET6;
            memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, data + pos, 16);
        } else {
            ss.ss_family = AF_INET;
            memcpy(&((struct sockaddr_in *)&ss)->sin_addr, data + pos, 4);
        }
        addr = (const struct sockaddr *)&ss;
        pos += alen;
    }

    while (pos <= size) {
        const uint8_t *nl = memchr(data + pos, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - (data + pos)) : size - pos;
        if (!nl) { /* the last line: the host */
            host = len ? dup_text(data + pos, len) : NULL;
            break;
        }
        if (len > 0 && t.nrules < MAX_RULES) {
            struct policy_rule *r = &rules[t.nrules];
            char *text = dup_text(data + pos + 1, len - 1);
            char why[512];

            memset(r, 0x5A, sizeof(*r));
            why[0] = '\0';
            char *shown = shown_copy(text);
            int rc = policy_rule_parse(text, shown, r, why, sizeof(why));
            CHECK(rc == 0 || rc == -1);
            if (rc < 0) {
                CHECK(why[0] != '\0' && memchr(why, '\0', sizeof(why)) != NULL);
                CHECK(strlen(text) > 200 || strstr(why, shown) != NULL);
                for (const char *w = why; *w; w++)
                    CHECK((unsigned char)*w >= 0x20);
                free(text);
            } else {
                check_parsed(text, r);
                r->match = text;
                r->policy = (enum outbound_policy)(data[pos] & 3);
                CHECK(policy_rule_same(r, r));
                for (size_t i = 0; i < t.nrules; i++)
                    CHECK(policy_rule_same(r, &rules[i]) == policy_rule_same(&rules[i], r));
                t.nrules++;
            }
            free(shown);
        }
        pos += len + 1;
    }

    bool verifies = t.fallback == OUTBOUND_VERIFY;
    for (size_t i = 0; i < t.nrules; i++)
        verifies |= rules[i].policy == OUTBOUND_VERIFY;
    CHECK(policy_table_verifies(&t) == verifies);

    enum outbound_policy p = lookup(&t, host, addr);
    lookup(&t, NULL, NULL);
    if (addr)
        check_mapped(&t, &ss);
    if (host) {
        check_host_spellings(&t, host, addr, p);
        if (!addr)
            check_literal(&t, host, p);
    }
    CHECK(policy_str(p) != NULL && strcmp(policy_str(p), "unknown") != 0);
    check_decide(data, size, p);

    for (size_t i = 0; i < t.nrules; i++)
        free(rules[i].match);
    free(host);
    return 0;
}
