/*
 * dns: query building and strict, bounded response parsing for the
 * trust-ad stub resolver (see dns.h for what is checked and why).
 */
#include "proxy/core/dns.h"

#include <string.h>

const char *dns_status_str(int status)
{
    switch (status) {
    case DNS_OK:
        return "ok";
    case DNS_TRUNCATED:
        return "truncated";
    case DNS_ERR_NAME:
        return "bad name";
    case DNS_ERR_SPACE:
        return "no space";
    case DNS_ERR_NOT_OURS:
        return "not an answer to the query";
    case DNS_ERR_MALFORMED:
        return "malformed response";
    case DNS_ERR_TOO_MANY:
        return "too many records or CNAMEs";
    default:
        return "unknown";
    }
}

static uint8_t lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c - 'A' + 'a') : c;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

size_t dns_name_encode(uint8_t *out, const char *name)
{
    size_t n = 0;
    const char *p = name;

    if (name == NULL || *name == '\0')
        return 0;
    if (strcmp(name, ".") == 0) {
        out[0] = 0;
        return 1;
    }
    while (*p != '\0') {
        size_t l = 0;
        while (p[l] != '\0' && p[l] != '.')
            l++;
        /* An empty label ("a..b", ".a") is no name; a label is at most 63
         * octets and the whole name, with its root octet, at most 255. */
        if (l == 0 || l > 63 || n + 1 + l + 1 > DNS_MAX_NAME)
            return 0;
        out[n++] = (uint8_t)l;
        for (size_t i = 0; i < l; i++) {
            uint8_t c = (uint8_t)p[i];
            if (c <= 0x20 || c >= 0x7f || c == '\\')
                return 0;
            out[n++] = lower(c);
        }
        p += l;
        if (*p == '.')
            p++;
    }
    out[n++] = 0;
    return n;
}

int dns_query_build(uint8_t *out, size_t cap, uint16_t id, const char *name, uint16_t qtype)
{
    uint8_t qn[DNS_MAX_NAME];
    size_t n = dns_name_encode(qn, name);

    if (n == 0)
        return DNS_ERR_NAME;
    size_t total = DNS_HEADER_LEN + n + 4 + 11;
    if (cap < total)
        return DNS_ERR_SPACE;
    memset(out, 0, DNS_HEADER_LEN);
    put16(out, id);
    out[2] = 0x01; /* RD */
    out[3] = 0x20; /* AD: RFC 6840 §5.7, ask for the validator's verdict */
    put16(out + 4, 1);
    put16(out + 10, 1);
    uint8_t *p = out + DNS_HEADER_LEN;
    memcpy(p, qn, n);
    p += n;
    put16(p, qtype);
    put16(p + 2, DNS_CLASS_IN);
    p += 4;
    /* EDNS0 OPT (RFC 6891 §6.1.2): root owner, class = UDP size, TTL =
     * extended rcode 0, version 0, flags DO (RFC 3225 §3), no options. */
    p[0] = 0;
    put16(p + 1, DNS_TYPE_OPT);
    put16(p + 3, DNS_UDP_SIZE);
    p[5] = 0;
    p[6] = 0;
    p[7] = 0x80;
    p[8] = 0;
    put16(p + 9, 0);
    return (int)total;
}

/*
 * Reads the name at off into out (wire format, lower-cased, <= 255 octets)
 * and its length into *olen; *next is the offset just after the name's
 * octets in place (after its first pointer, if any). A pointer must point
 * past the header and strictly before the previous jump's target (before
 * itself for the first one), so the targets decrease and no loop can form.
 */
static int read_name(const uint8_t *m, size_t len, size_t off, uint8_t *out, size_t *olen,
                     size_t *next)
{
    size_t n = 0, pos = off, limit = off;
    bool jumped = false;

    for (;;) {
        if (pos >= len)
            return DNS_ERR_MALFORMED;
        uint8_t c = m[pos];
        if ((c & 0xC0) == 0xC0) {
            if (pos + 1 >= len)
                return DNS_ERR_MALFORMED;
            size_t ptr = (size_t)(c & 0x3F) << 8 | m[pos + 1];
            if (ptr < DNS_HEADER_LEN || ptr >= limit)
                return DNS_ERR_MALFORMED;
            if (!jumped)
                *next = pos + 2;
            jumped = true;
            limit = ptr;
            pos = ptr;
            continue;
        }
        if (c & 0xC0) /* 0x40 and 0x80: extended label types (RFC 6891 §5) */
            return DNS_ERR_MALFORMED;
        if (n + 1 + c > DNS_MAX_NAME || pos + 1 + c > len)
            return DNS_ERR_MALFORMED;
        out[n++] = c;
        if (c == 0)
            break;
        for (size_t i = 0; i < c; i++)
            out[n++] = lower(m[pos + 1 + i]);
        pos += 1 + (size_t)c;
    }
    if (!jumped)
        *next = pos + 1;
    *olen = n;
    return DNS_OK;
}

struct rr {
    uint8_t owner[DNS_MAX_NAME];
    size_t olen;
    uint16_t type, cls;
    uint32_t ttl;
    size_t rdoff;
    uint16_t rdlen;
};

/* Reads the RR at *pos and moves *pos past it. */
static int read_rr(const uint8_t *m, size_t len, size_t *pos, struct rr *rr)
{
    size_t p;
    int rc = read_name(m, len, *pos, rr->owner, &rr->olen, &p);

    if (rc != DNS_OK)
        return rc;
    if (len - p < 10)
        return DNS_ERR_MALFORMED;
    rr->type = get16(m + p);
    rr->cls = get16(m + p + 2);
    rr->ttl = (uint32_t)get16(m + p + 4) << 16 | get16(m + p + 6);
    if (rr->ttl & 0x80000000u) /* RFC 2181 §8: a TTL with the top bit set is 0 */
        rr->ttl = 0;
    rr->rdlen = get16(m + p + 8);
    rr->rdoff = p + 10;
    if (len - rr->rdoff < rr->rdlen)
        return DNS_ERR_MALFORMED;
    *pos = rr->rdoff + rr->rdlen;
    return DNS_OK;
}

static bool same_name(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0; /* both already lower-cased */
}

/* A name filling exactly the RDATA from off to the end of rr's RDATA. */
static int rdata_name(const uint8_t *m, size_t len, const struct rr *rr, size_t off, uint8_t *out,
                      size_t *olen)
{
    size_t next;
    int rc = read_name(m, len, off, out, olen, &next);

    if (rc != DNS_OK)
        return rc;
    return next == rr->rdoff + rr->rdlen ? DNS_OK : DNS_ERR_MALFORMED;
}

/* Copies rr's RDATA into a's store, MX names decompressed. */
static int keep(const uint8_t *m, size_t len, const struct rr *rr, struct dns_answer *a)
{
    uint8_t buf[2 + DNS_MAX_NAME];
    const uint8_t *src = m + rr->rdoff;
    size_t n = rr->rdlen;

    if (a->count == DNS_MAX_RECORDS)
        return DNS_ERR_TOO_MANY;
    if ((rr->type == DNS_TYPE_A && n != 4) || (rr->type == 28 && n != 16))
        return DNS_ERR_MALFORMED;
    if (rr->type == DNS_TYPE_MX) {
        size_t nl;
        if (n < 3)
            return DNS_ERR_MALFORMED;
        int rc = rdata_name(m, len, rr, rr->rdoff + 2, buf + 2, &nl);
        if (rc != DNS_OK)
            return rc;
        memcpy(buf, src, 2);
        src = buf;
        n = 2 + nl;
    }
    if (DNS_STORE - a->used < n)
        return DNS_ERR_TOO_MANY;
    memcpy(a->store + a->used, src, n);
    a->data[a->count] = (char *)a->store + a->used;
    a->len[a->count] = (int)n;
    a->used += n;
    a->count++;
    if (rr->ttl < a->ttl)
        a->ttl = rr->ttl;
    return DNS_OK;
}

/*
 * One pass over the answer section (nan RRs from off) for target: keeps
 * its records of type qtype, or, when there are none, puts the first
 * CNAME's target into cname (*clen > 0).
 */
static int scan(const uint8_t *m, size_t len, size_t off, unsigned nan, const uint8_t *target,
                size_t tlen, uint16_t qtype, struct dns_answer *a, uint8_t *cname, size_t *clen,
                uint32_t *cttl)
{
    struct rr rr;
    size_t pos = off;

    *clen = 0;
    for (unsigned i = 0; i < nan; i++) {
        int rc = read_rr(m, len, &pos, &rr);
        if (rc != DNS_OK)
            return rc;
        if (rr.cls != DNS_CLASS_IN || !same_name(rr.owner, rr.olen, target, tlen))
            continue;
        if (rr.type == qtype) {
            rc = keep(m, len, &rr, a);
            if (rc != DNS_OK)
                return rc;
        } else if (rr.type == DNS_TYPE_CNAME && *clen == 0) {
            rc = rdata_name(m, len, &rr, rr.rdoff, cname, clen);
            if (rc != DNS_OK)
                return rc;
            *cttl = rr.ttl;
        }
    }
    if (a->count > 0)
        *clen = 0;
    return DNS_OK;
}

int dns_response_parse(const uint8_t *msg, size_t len, uint16_t id, const char *name,
                       uint16_t qtype, struct dns_answer *a)
{
    uint8_t qn[DNS_MAX_NAME], got[DNS_MAX_NAME];
    size_t qlen = dns_name_encode(qn, name), glen, pos;

    if (qlen == 0)
        return DNS_ERR_NAME;
    if (len < DNS_HEADER_LEN || len > DNS_MAX_MSG)
        return DNS_ERR_MALFORMED;
    a->count = 0;
    a->used = 0;
    a->ttl = 0;
    a->rcode = msg[3] & 0x0F;
    a->ad = (msg[3] & 0x20) != 0;
    /* RFC 5452 §9.1: the ID, the response bit, the opcode (QUERY) and the
     * question must all be ours before anything else is believed. */
    if (get16(msg) != id || !(msg[2] & 0x80) || ((msg[2] >> 3) & 0x0F) != 0)
        return DNS_ERR_NOT_OURS;
    if (msg[2] & 0x02)
        return DNS_TRUNCATED;
    if (get16(msg + 4) != 1)
        return DNS_ERR_NOT_OURS;
    int rc = read_name(msg, len, DNS_HEADER_LEN, got, &glen, &pos);
    if (rc != DNS_OK)
        return rc;
    if (len - pos < 4)
        return DNS_ERR_MALFORMED;
    if (!same_name(got, glen, qn, qlen) || get16(msg + pos) != qtype ||
        get16(msg + pos + 2) != DNS_CLASS_IN)
        return DNS_ERR_NOT_OURS;
    pos += 4;

    /* Frame every RR of the three sections; nothing may follow them. Each
     * RR takes at least 11 octets, so huge counts end at the message's end. */
    size_t an_off = pos;
    unsigned nan = get16(msg + 6);
    unsigned total = nan + get16(msg + 8) + get16(msg + 10);
    struct rr rr;
    for (unsigned i = 0; i < total; i++) {
        rc = read_rr(msg, len, &pos, &rr);
        if (rc != DNS_OK)
            return rc;
    }
    if (pos != len)
        return DNS_ERR_MALFORMED;

    /* The records of the asked type for name, or for the end of its CNAME
     * chain inside this answer (RFC 1034 §3.6.2), a bounded number deep. */
    uint8_t cname[DNS_MAX_NAME];
    uint8_t target[DNS_MAX_NAME];
    size_t tlen = qlen, clen;
    uint32_t ttl = UINT32_MAX, cttl = 0;
    memcpy(target, qn, qlen);
    a->ttl = UINT32_MAX;
    for (unsigned depth = 0;; depth++) {
        rc = scan(msg, len, an_off, nan, target, tlen, qtype, a, cname, &clen, &cttl);
        if (rc != DNS_OK)
            return rc;
        if (clen == 0 || qtype == DNS_TYPE_CNAME)
            break;
        if (depth == DNS_MAX_CNAMES)
            return DNS_ERR_TOO_MANY;
        if (cttl < ttl)
            ttl = cttl;
        memcpy(target, cname, clen);
        tlen = clen;
    }
    if (a->count == 0)
        a->ttl = 0;
    else if (ttl < a->ttl)
        a->ttl = ttl;
    return DNS_OK;
}
