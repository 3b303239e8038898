/*
 * TLSA records; see tlsa.h.
 */
#include "proxy/policy/tlsa.h"

#include <string.h>

int tlsa_parse(const uint8_t *rdata, size_t len, struct tlsa_record *r)
{
    memset(r, 0, sizeof(*r));
    if (rdata == NULL || len < 3)
        return TLSA_ERR_SHORT;
    r->usage = rdata[0];
    r->selector = rdata[1];
    r->mtype = rdata[2];
    r->data = rdata + 3;
    r->len = len - 3;
    return TLSA_OK;
}

const char *tlsa_unusable_reason(const struct tlsa_record *r)
{
    switch (r->usage) {
    case TLSA_USAGE_DANE_TA:
    case TLSA_USAGE_DANE_EE:
        break;
    case TLSA_USAGE_PKIX_TA:
        return "usage 0 (PKIX-TA) is not usable for SMTP (RFC 7672 section 3.1.3)";
    case TLSA_USAGE_PKIX_EE:
        return "usage 1 (PKIX-EE) is not usable for SMTP (RFC 7672 section 3.1.3)";
    default:
        return "unknown certificate usage";
    }
    if (r->selector != TLSA_SELECTOR_CERT && r->selector != TLSA_SELECTOR_SPKI)
        return "unknown selector";
    switch (r->mtype) {
    case TLSA_MTYPE_FULL:
        return r->len > 0 ? NULL : "empty data for matching type 0 (full)";
    case TLSA_MTYPE_SHA256:
        return r->len == TLSA_SHA256_LEN ? NULL : "SHA-256 data that is not 32 octets";
    case TLSA_MTYPE_SHA512:
        return r->len == TLSA_SHA512_LEN ? NULL : "SHA-512 data that is not 64 octets";
    default:
        return "unknown matching type";
    }
}

const char *tlsa_verdict_str(enum tlsa_verdict v)
{
    switch (v) {
    case TLSA_VERDICT_NONE:
        return "none";
    case TLSA_VERDICT_UNUSABLE:
        return "unusable";
    case TLSA_VERDICT_AUTHENTICATE:
        return "authenticate";
    }
    return "unknown";
}

static bool same(const struct tlsa_record *a, const struct tlsa_record *b)
{
    return a->usage == b->usage && a->selector == b->selector && a->mtype == b->mtype &&
           a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

enum tlsa_verdict tlsa_set_build(struct tlsa_set *s, const uint8_t *const *rdata,
                                 const size_t *len, size_t count)
{
    memset(s, 0, sizeof(*s));
    s->total = count;
    for (size_t i = 0; i < count; i++) {
        struct tlsa_record r;
        bool dup = false;

        if (tlsa_parse(rdata[i], len[i], &r) != TLSA_OK) {
            s->malformed++;
            continue;
        }
        if (!tlsa_usable(&r))
            continue;
        for (size_t k = 0; k < s->n && !dup; k++)
            dup = same(&s->rec[k], &r);
        if (dup || s->n == TLSA_MAX_RECORDS)
            continue;
        s->rec[s->n++] = r;
        if (r.usage == TLSA_USAGE_DANE_EE)
            s->has_ee = true;
        else
            s->has_ta = true;
    }
    if (count == 0)
        return TLSA_VERDICT_NONE;
    return s->n > 0 ? TLSA_VERDICT_AUTHENTICATE : TLSA_VERDICT_UNUSABLE;
}
