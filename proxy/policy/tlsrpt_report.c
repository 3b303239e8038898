/*
 * TLS-RPT day-file lines, per-policy counts and the report JSON; see
 * tlsrpt.h.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "proxy/policy/mta_sts.h"
#include "proxy/policy/tlsrpt.h"

static void set_why(const char **why, const char *s)
{
    if (why != NULL)
        *why = s;
}

/* A host name as the day file and reports carry it: lower case LDH, no
 * trailing dot (the syntax of an MTA-STS name without a wildcard). */
static bool name_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            return false;
    return len > 0 && s[0] != '*' && mta_sts_pattern_valid(s, len);
}

/* An address in the text §4.4 asks for: dotted decimal, or IPv6 as RFC
 * 5952 writes it (lower case, no leading zeros, "::" for the longest run),
 * which is what inet_ntop produces: anything else is not canonical. */
static bool ip_ok(const char *s, size_t len)
{
    char tmp[TLSRPT_IP_MAX + 1], back[INET6_ADDRSTRLEN];
    unsigned char bin[16];
    int af;

    if (len == 0 || len > TLSRPT_IP_MAX || memchr(s, '\0', len) != NULL)
        return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    af = memchr(tmp, ':', len) != NULL ? AF_INET6 : AF_INET;
    return inet_pton(af, tmp, bin) == 1 && inet_ntop(af, bin, back, sizeof(back)) != NULL &&
           strcmp(back, tmp) == 0;
}

static const char *or_dash(const char *s)
{
    return s[0] != '\0' ? s : "-";
}

int tlsrpt_line_format(const struct tlsrpt_attempt *a, char *buf, size_t cap)
{
    int w;

    if (a->time < 0 || !name_ok(a->domain, strlen(a->domain)) ||
        (unsigned)a->type > TLSRPT_POLICY_NONE ||
        (!a->success && (unsigned)a->result >= TLSRPT_RESULT_COUNT) ||
        (a->sending_ip[0] != '\0' && !ip_ok(a->sending_ip, strlen(a->sending_ip))) ||
        (a->receiving_ip[0] != '\0' && !ip_ok(a->receiving_ip, strlen(a->receiving_ip))) ||
        (a->mx_host[0] != '\0' && !name_ok(a->mx_host, strlen(a->mx_host))))
        return TLSRPT_ERR;
    w = snprintf(buf, cap, "tlsrpt1 %" PRId64 " %s %s %s %s %s %s\n", a->time,
                 tlsrpt_policy_type_str(a->type), a->domain,
                 a->success ? "success" : tlsrpt_result_str(a->result), or_dash(a->sending_ip),
                 or_dash(a->mx_host), or_dash(a->receiving_ip));
    if (w < 0 || (size_t)w >= cap)
        return TLSRPT_ERR_SPACE;
    return w;
}

/* Copies an optional field ("-" = unknown) of len bytes into out. */
static void put_opt(char *out, const char *s, size_t len)
{
    if (len == 1 && s[0] == '-')
        len = 0;
    memcpy(out, s, len);
    out[len] = '\0';
}

int tlsrpt_line_parse(const char *text, size_t len, struct tlsrpt_attempt *a, size_t *consumed,
                      const char **why)
{
    const char *tok[8], *nl;
    size_t tlen[8], n, start = 0, k = 0;
    int64_t t = 0;
    int v;

    memset(a, 0, sizeof(*a));
    *consumed = 0;
    nl = text != NULL ? memchr(text, '\n', len < TLSRPT_LINE_MAX ? len : TLSRPT_LINE_MAX) : NULL;
    if (nl == NULL) {
        set_why(why, "no LF within a line's length (cut short, or too long)");
        return TLSRPT_ERR;
    }
    n = (size_t)(nl - text);
    /* Exactly eight fields, single spaces, none empty. */
    for (size_t i = 0; i <= n; i++) {
        if (i < n && text[i] != ' ')
            continue;
        if (i == start || k == 8) {
            set_why(why, "not eight space-separated fields");
            return TLSRPT_ERR;
        }
        tok[k] = text + start;
        tlen[k++] = i - start;
        start = i + 1;
    }
    if (k != 8 || tlen[0] != 7 || memcmp(tok[0], "tlsrpt1", 7) != 0) {
        set_why(why, "not a tlsrpt1 line");
        return TLSRPT_ERR;
    }
    if (tlen[1] > 18 || (tlen[1] > 1 && tok[1][0] == '0')) {
        set_why(why, "bad time");
        return TLSRPT_ERR;
    }
    for (size_t i = 0; i < tlen[1]; i++) {
        if (tok[1][i] < '0' || tok[1][i] > '9') {
            set_why(why, "bad time");
            return TLSRPT_ERR;
        }
        t = t * 10 + (tok[1][i] - '0');
    }
    a->time = t;
    if ((v = tlsrpt_policy_type_parse(tok[2], tlen[2])) < 0) {
        set_why(why, "bad policy type");
        return TLSRPT_ERR;
    }
    a->type = (enum tlsrpt_policy_type)v;
    if (!name_ok(tok[3], tlen[3])) {
        set_why(why, "bad policy domain");
        return TLSRPT_ERR;
    }
    memcpy(a->domain, tok[3], tlen[3]);
    if (tlen[4] == 7 && memcmp(tok[4], "success", 7) == 0) {
        a->success = true;
    } else if ((v = tlsrpt_result_parse(tok[4], tlen[4])) >= 0) {
        a->result = (enum tlsrpt_result)v;
    } else {
        set_why(why, "bad result");
        return TLSRPT_ERR;
    }
    if (!(tlen[5] == 1 && tok[5][0] == '-') && !ip_ok(tok[5], tlen[5])) {
        set_why(why, "bad sending address");
        return TLSRPT_ERR;
    }
    if (!(tlen[6] == 1 && tok[6][0] == '-') && !name_ok(tok[6], tlen[6])) {
        set_why(why, "bad mx host");
        return TLSRPT_ERR;
    }
    if (!(tlen[7] == 1 && tok[7][0] == '-') && !ip_ok(tok[7], tlen[7])) {
        set_why(why, "bad receiving address");
        return TLSRPT_ERR;
    }
    put_opt(a->sending_ip, tok[5], tlen[5]);
    put_opt(a->mx_host, tok[6], tlen[6]);
    put_opt(a->receiving_ip, tok[7], tlen[7]);
    *consumed = n + 1;
    return TLSRPT_OK;
}

int64_t tlsrpt_day(int64_t unix_time)
{
    return unix_time >= 0 ? unix_time / 86400 : -((-unix_time + 86399) / 86400);
}

void tlsrpt_stats_init(struct tlsrpt_stats *s, const char *domain, enum tlsrpt_policy_type type,
                       int64_t day)
{
    size_t n = strlen(domain);

    memset(s, 0, sizeof(*s));
    if (n > TLSRPT_NAME_MAX)
        n = TLSRPT_NAME_MAX;
    for (size_t i = 0; i < n; i++)
        s->domain[i] = domain[i] >= 'A' && domain[i] <= 'Z' ? (char)(domain[i] + 32) : domain[i];
    s->type = type;
    s->day = day;
}

int tlsrpt_stats_add(struct tlsrpt_stats *s, const struct tlsrpt_attempt *a)
{
    if (strcmp(s->domain, a->domain) != 0 || s->type != a->type || tlsrpt_day(a->time) != s->day ||
        (!a->success && (unsigned)a->result >= TLSRPT_RESULT_COUNT))
        return TLSRPT_ERR;
    if (a->success) {
        s->success++;
        return TLSRPT_OK;
    }
    s->failure++;
    /* §4.4 failure-details: one row per distinct (result-type,
     * sending-mta-ip, receiving-mx-hostname, receiving-ip), with its
     * failed-session-count. */
    for (size_t i = 0; i < s->n; i++) {
        struct tlsrpt_detail *d = &s->detail[i];
        if (d->result == a->result && strcmp(d->sending_ip, a->sending_ip) == 0 &&
            strcmp(d->mx_host, a->mx_host) == 0 && strcmp(d->receiving_ip, a->receiving_ip) == 0) {
            d->count++;
            return TLSRPT_OK;
        }
    }
    if (s->n == TLSRPT_DETAILS_MAX) {
        s->details_dropped++;
        return TLSRPT_OK;
    }
    struct tlsrpt_detail *d = &s->detail[s->n++];
    d->result = a->result;
    memcpy(d->sending_ip, a->sending_ip, sizeof(d->sending_ip));
    memcpy(d->mx_host, a->mx_host, sizeof(d->mx_host));
    memcpy(d->receiving_ip, a->receiving_ip, sizeof(d->receiving_ip));
    d->sending_ip[TLSRPT_IP_MAX] = d->receiving_ip[TLSRPT_IP_MAX] = '\0';
    d->mx_host[TLSRPT_NAME_MAX] = '\0';
    d->count = 1;
    return TLSRPT_OK;
}

/* The JSON writer: appends while there is room, remembers overflow. */
struct out {
    char *buf;
    size_t cap, n;
    bool full;
};

static void put(struct out *o, const char *s, size_t len)
{
    if (o->full || len >= o->cap - o->n) {
        o->full = true;
        return;
    }
    memcpy(o->buf + o->n, s, len);
    o->n += len;
    o->buf[o->n] = '\0';
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void putu(struct out *o, uint64_t v)
{
    char tmp[24];
    int w = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
    put(o, tmp, (size_t)w);
}

/* The length of the well-formed UTF-8 sequence at s (RFC 3629 §4: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, size_t left)
{
    unsigned c = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xbf;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else
        return 0;
    if (left < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

/* A JSON string (RFC 8259 §7). */
static void put_str(struct out *o, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
    size_t left = strlen((const char *)p);

    put(o, "\"", 1);
    while (left > 0) {
        size_t n = utf8_len(p, left);
        char esc[8];

        if (n == 0) {
            puts_(o, "\\ufffd");
            n = 1;
        } else if (*p == '"' || *p == '\\') {
            esc[0] = '\\', esc[1] = (char)*p;
            put(o, esc, 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            put(o, esc, 6);
        } else {
            put(o, (const char *)p, n);
        }
        p += n;
        left -= n;
    }
    put(o, "\"", 1);
}

static void put_key(struct out *o, const char *key)
{
    put_str(o, key);
    put(o, ":", 1);
}

static void put_str_array(struct out *o, const char *const *v, size_t n)
{
    put(o, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            put(o, ",", 1);
        put_str(o, v[i]);
    }
    put(o, "]", 1);
}

/* A UTC day as RFC 3339 date-times (§4.4 date-range; §4.1: reports cover
 * "a full day, from 0000-2400 UTC"). The civil date of a day count is
 * the usual era arithmetic of the proleptic Gregorian calendar. */
static void put_day(struct out *o, const char *key, int64_t day, const char *clock)
{
    int64_t z = day + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    char tmp[48];
    int w;

    w = snprintf(tmp, sizeof(tmp), "%04" PRId64 "-%02" PRId64 "-%02" PRId64 "T%sZ", y, m, d, clock);
    put_key(o, key);
    put(o, "\"", 1);
    put(o, tmp, (size_t)w);
    put(o, "\"", 1);
}

static void put_policy(struct out *o, const struct tlsrpt_report_policy *p)
{
    const struct tlsrpt_stats *s = p->stats;

    puts_(o, "{\"policy\":{");
    put_key(o, "policy-type");
    put_str(o, tlsrpt_policy_type_str(s->type));
    if (p->n_strings > 0) {
        put(o, ",", 1);
        put_key(o, "policy-string");
        put_str_array(o, p->policy_string, p->n_strings);
    }
    put(o, ",", 1);
    put_key(o, "policy-domain");
    put_str(o, s->domain);
    if (p->n_mx > 0) {
        put(o, ",", 1);
        put_key(o, "mx-host");
        put_str_array(o, p->mx_host, p->n_mx);
    }
    puts_(o, "},\"summary\":{");
    put_key(o, "total-successful-session-count");
    putu(o, s->success);
    put(o, ",", 1);
    put_key(o, "total-failure-session-count");
    putu(o, s->failure);
    puts_(o, "},\"failure-details\":[");
    for (size_t i = 0; i < s->n; i++) {
        const struct tlsrpt_detail *d = &s->detail[i];
        if (i > 0)
            put(o, ",", 1);
        put(o, "{", 1);
        put_key(o, "result-type");
        put_str(o, tlsrpt_result_str(d->result));
        if (d->sending_ip[0] != '\0') {
            put(o, ",", 1);
            put_key(o, "sending-mta-ip");
            put_str(o, d->sending_ip);
        }
        if (d->mx_host[0] != '\0') {
            put(o, ",", 1);
            put_key(o, "receiving-mx-hostname");
            put_str(o, d->mx_host);
        }
        if (d->receiving_ip[0] != '\0') {
            put(o, ",", 1);
            put_key(o, "receiving-ip");
            put_str(o, d->receiving_ip);
        }
        put(o, ",", 1);
        put_key(o, "failed-session-count");
        putu(o, d->count);
        put(o, "}", 1);
    }
    puts_(o, "]}");
}

long tlsrpt_report_json(char *buf, size_t cap, const struct tlsrpt_report *r,
                        const struct tlsrpt_report_policy *p, size_t n)
{
    struct out o = {buf, cap, 0, cap == 0};

    if (cap > 0)
        buf[0] = '\0';
    /* §4.4, in its order. */
    put(&o, "{", 1);
    put_key(&o, "organization-name");
    put_str(&o, r->organization);
    puts_(&o, ",\"date-range\":{");
    put_day(&o, "start-datetime", r->day, "00:00:00");
    put(&o, ",", 1);
    put_day(&o, "end-datetime", r->day, "23:59:59");
    puts_(&o, "},");
    put_key(&o, "contact-info");
    put_str(&o, r->contact);
    put(&o, ",", 1);
    put_key(&o, "report-id");
    put_str(&o, r->report_id);
    puts_(&o, ",\"policies\":[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            put(&o, ",", 1);
        put_policy(&o, &p[i]);
    }
    puts_(&o, "]}");
    return o.full ? TLSRPT_ERR_SPACE : (long)o.n;
}
