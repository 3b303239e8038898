/*
 * The per-recipient decision; see decide.h for the precedence and the
 * choice of codes.
 */
#include "proxy/policy/decide.h"

#include <stddef.h>

static const struct {
    const char *reply; /* 450 with CRLF */
    const char *text;  /* for why= */
} whys[DECIDE_WHY_COUNT] = {
    [DECIDE_WHY_NONE] = {NULL, "-"},
    [DECIDE_WHY_RULE_NO_TLS] =
        {"450 4.7.5 Recipient domain's policy requires TLS, the session is not encrypted\r\n",
         "policies rule requires TLS, the session is plaintext"},
    [DECIDE_WHY_RULE_NAME] = {"450 4.7.5 Recipient domain's policy requires a certificate for "
                              "the domain, the destination's does not verify\r\n",
                              "policies rule verify: the chain is not valid for the domain"},
    [DECIDE_WHY_DANE_NO_TLS] =
        {"450 4.7.5 Recipient domain requires DANE, STARTTLS was not offered or failed\r\n",
         "DANE requires TLS: STARTTLS not offered or failed"},
    [DECIDE_WHY_DANE_MISMATCH] = {"450 4.7.5 Recipient domain requires DANE, the destination's "
                                  "certificate does not match its TLSA records\r\n",
                                  "DANE: TLSA records do not match the certificate"},
    [DECIDE_WHY_DANE_UNUSABLE_NO_TLS] =
        {"450 4.7.5 Recipient domain publishes TLSA records, TLS is mandatory and the session is "
         "not encrypted\r\n",
         "DANE: unusable TLSA records still require TLS"},
    [DECIDE_WHY_DNSSEC_BOGUS] = {"450 4.4.3 DNSSEC validation failed for the recipient domain's "
                                 "MX or TLSA records, try again later\r\n",
                                 "DNSSEC validation failed (bogus)"},
    [DECIDE_WHY_DNS_FAILED] = {"450 4.4.3 DNS lookup of the recipient domain's MX or TLSA "
                               "records failed, try again later\r\n",
                               "DNS lookup failed (SERVFAIL or error)"},
    [DECIDE_WHY_STS_NO_TLS] = {"450 4.7.5 Recipient domain's MTA-STS policy "
                               "requires TLS, STARTTLS was not used\r\n",
                               "MTA-STS requires TLS: STARTTLS not used"},
    [DECIDE_WHY_STS_NAME] = {"450 4.7.5 Recipient domain's MTA-STS policy: the destination's "
                             "certificate does not match its MX host name\r\n",
                             "MTA-STS: certificate name does not match the MX host"},
    [DECIDE_WHY_STS_MX] = {"450 4.7.5 Recipient domain's MTA-STS policy does not list the "
                           "destination as an MX host\r\n",
                           "MTA-STS: the destination is not an MX host of the policy"},
    [DECIDE_WHY_FALLBACK_NO_TLS] = {"450 4.7.5 Policy requires TLS, the session is not "
                                    "encrypted\r\n",
                                    "policy requires TLS, the session is plaintext"},
    [DECIDE_WHY_FALLBACK_VERIFY] = {"450 4.7.5 Policy requires a verified certificate, the "
                                    "destination's does not verify\r\n",
                                    "policy verify: the chain did not verify"},
    [DECIDE_WHY_STS_UNTRUSTED] = {"450 4.7.5 Recipient domain's MTA-STS policy: the "
                                  "destination's certificate is not trusted\r\n",
                                  "MTA-STS: certificate not trusted (PKIX)"},
    [DECIDE_WHY_TIMEOUT] = {"450 4.4.3 Recipient domain's DNS lookups timed out, try again "
                            "later\r\n",
                            "the lookups did not finish in time"},
};

const char *decide_reply(enum decide_why why)
{
    return (unsigned)why < DECIDE_WHY_COUNT ? whys[why].reply : NULL;
}

const char *decide_why_str(enum decide_why why)
{
    return (unsigned)why < DECIDE_WHY_COUNT ? whys[why].text : "?";
}

const char *decide_auth_str(enum decide_auth a)
{
    switch (a) {
    case DECIDE_AUTH_NONE:
        return "none";
    case DECIDE_AUTH_POLICY:
        return "policy";
    case DECIDE_AUTH_MTA_STS:
        return "mta-sts";
    case DECIDE_AUTH_DANE:
        return "dane";
    }
    return "?";
}

const char *decide_result_str(enum decide_result r)
{
    switch (r) {
    case DECIDE_PASS:
        return "pass";
    case DECIDE_REFUSE_TEMP:
        return "refused";
    case DECIDE_LOGGED:
        return "logged";
    }
    return "?";
}

static struct decide_verdict pass(enum decide_auth auth)
{
    return (struct decide_verdict){.result = DECIDE_PASS, .auth = auth, .why = DECIDE_WHY_NONE};
}

static struct decide_verdict refuse(const struct decide_input *in, enum decide_auth auth,
                                    enum decide_why why)
{
    return (struct decide_verdict){
        .result = in->enforce ? DECIDE_REFUSE_TEMP : DECIDE_LOGGED, .auth = auth, .why = why};
}

/* A `policy` value (a rule's or the fallback's) against the session. */
static struct decide_verdict by_policy(const struct decide_input *in, enum outbound_policy p,
                                       bool rule)
{
    switch (p) {
    case OUTBOUND_NONE:
    case OUTBOUND_OPPORTUNISTIC:
        return pass(DECIDE_AUTH_NONE);
    case OUTBOUND_REQUIRED:
        if (!in->tls)
            return refuse(in, DECIDE_AUTH_POLICY,
                          rule ? DECIDE_WHY_RULE_NO_TLS : DECIDE_WHY_FALLBACK_NO_TLS);
        return pass(DECIDE_AUTH_NONE);
    case OUTBOUND_VERIFY:
    case OUTBOUND_DANE: /* never configured; as strict as verify */
        if (!in->tls)
            return refuse(in, DECIDE_AUTH_POLICY,
                          rule ? DECIDE_WHY_RULE_NO_TLS : DECIDE_WHY_FALLBACK_NO_TLS);
        if (rule ? !in->pkix_domain : !in->pkix_session)
            return refuse(in, DECIDE_AUTH_POLICY,
                          rule ? DECIDE_WHY_RULE_NAME : DECIDE_WHY_FALLBACK_VERIFY);
        return pass(DECIDE_AUTH_POLICY);
    }
    return refuse(in, DECIDE_AUTH_POLICY, DECIDE_WHY_FALLBACK_VERIFY); /* unknown: strict */
}

/* What an MTA-STS policy's check found, in the order a sender meets it:
 * TLS (§5), the MX host (§4.1), then its certificate (§4.2). */
static enum decide_why sts_why(const struct decide_input *in)
{
    if (!in->tls)
        return DECIDE_WHY_STS_NO_TLS;
    if (!in->sts.mx_ok)
        return DECIDE_WHY_STS_MX;
    if (!in->sts.name_ok)
        return in->sts.trusted ? DECIDE_WHY_STS_NAME : DECIDE_WHY_STS_UNTRUSTED;
    return DECIDE_WHY_NONE;
}

struct decide_verdict decide_rcpt(const struct decide_input *in)
{
    if (in->rule)
        return by_policy(in, in->rule_policy, true);

    switch (in->dane) {
    case DECIDE_DANE_NA:
        break;
    case DECIDE_DANE_TEMPFAIL:
        return refuse(in, DECIDE_AUTH_DANE, DECIDE_WHY_DNS_FAILED);
    case DECIDE_DANE_BOGUS:
        return refuse(in, DECIDE_AUTH_DANE, DECIDE_WHY_DNSSEC_BOGUS);
    case DECIDE_DANE_MATCH:
        if (!in->tls) /* a match needs a chain: a caller's mistake, stay strict */
            return refuse(in, DECIDE_AUTH_DANE, DECIDE_WHY_DANE_NO_TLS);
        return pass(DECIDE_AUTH_DANE);
    case DECIDE_DANE_MISMATCH:
        return refuse(in, DECIDE_AUTH_DANE,
                      in->tls ? DECIDE_WHY_DANE_MISMATCH : DECIDE_WHY_DANE_NO_TLS);
    case DECIDE_DANE_UNUSABLE:
        /* RFC 7672 §2.2: encrypt, but nothing to authenticate with; an MTA-STS
         * policy does not come into it (DANE records exist). */
        if (!in->tls)
            return refuse(in, DECIDE_AUTH_DANE, DECIDE_WHY_DANE_UNUSABLE_NO_TLS);
        return pass(DECIDE_AUTH_NONE);
    }

    if (in->sts.mode == DECIDE_STS_ENFORCE || in->sts.mode == DECIDE_STS_TESTING) {
        enum decide_why why = sts_why(in);
        if (in->sts.mode == DECIDE_STS_ENFORCE)
            return why == DECIDE_WHY_NONE ? pass(DECIDE_AUTH_MTA_STS)
                                          : refuse(in, DECIDE_AUTH_MTA_STS, why);
        /* Testing (RFC 8461 §5): the fallback decides; a failure that it
         * lets through is still said (logged, counted), never made. */
        struct decide_verdict fb = by_policy(in, in->fallback, false);
        if (fb.result != DECIDE_PASS || why == DECIDE_WHY_NONE)
            return fb;
        return (struct decide_verdict){
            .result = DECIDE_LOGGED, .auth = DECIDE_AUTH_MTA_STS, .why = why};
    }
    return by_policy(in, in->fallback, false);
}
