/*
 * Per-recipient authentication of a transparent outbound session
 * (`destination = "original"` with `dane = true`): the session always tries
 * STARTTLS and keeps the chain the destination sent; at each RCPT the relay
 * asks (relay.h, hooks.rcpt) and this file decides for the recipient's
 * domain with policy/decide.h, after these lookups:
 *
 *   MX of the domain          bogus, SERVFAIL, error: temporary (4.4.3)
 *                             insecure, NXDOMAIN: DANE does not apply
 *                             no MX records: the domain itself (RFC 5321 §5.1)
 *   A or AAAA of each host    of the connected address's family, up to
 *   (at most RCPT_HOSTS)      RCPT_HOSTS hosts; the host whose secure
 *                             addresses include the connected one is the
 *                             MX host this session reached (RFC 7672
 *                             §2.2.2: insecure addresses, no DANE)
 *   TLSA at _port._tcp.host   the port of the original destination;
 *                             usable records: tls_dane_verify() on the kept
 *                             chain with the MX host and the domain as
 *                             reference identifiers (DANE-TA)
 *
 * A decision is bounded by RCPT_DECISION_MS (450 4.4.3 when it runs out);
 * the lookups are counted in s->handles and s->resolving and cancelled when
 * the session closes. Decisions are cached per session for RCPT_CACHE
 * domains (beyond, the oldest is decided again).
 *
 * With mta_sts = true, once DANE does not apply (dane = false, an insecure
 * MX set, the connected host not among the secure ones, no secure TLSA),
 * the domain's MTA-STS policy is asked for (rcpt_sts.h: at once from a warm
 * cache, else the decision waits for the service, within the same
 * deadline; a policy still awaited then is a failed fetch, delivered as
 * without MTA-STS, RFC 8461 §3.3). Its MX hosts are the ones looked up
 * above, secure or not: the hosts whose addresses include the connected
 * one, and of those the ones whose names match the policy's mx patterns
 * (RFC 8461 §4.1); the kept chain must be PKIX-valid (the listener's
 * ca_file) for such a host's name (§4.2, tls_chain_check_host).
 *
 * A `policies` verify rule for the domain wants the kept chain PKIX-valid
 * for the domain or a name below it (tls_chain_valid_for_domain).
 *
 * Every refused recipient, and with enforce = false every one that would
 * have been, gets one line (event=rcpt_refused, result=refused|logged) and
 * a count in outbound_auth_total{auth,result}; an authenticated one counts
 * result="ok". The end line's auth= names the strongest authentication any
 * recipient got (dane > mta-sts > policy > none).
 *
 * With tls_rpt = true the first decision for each recipient domain (looked
 * up, not a rule's) is also the session's TLS-RPT result for that domain
 * (tlsrpt.c), for up to RCPT_RPT_DOMAINS domains a session: tlsa where
 * DANE decided, sts where a policy in enforce or testing mode did (or its
 * fetch failed with nothing cached: sts-policy-fetch-error), else
 * no-policy-found. A policy still awaited at the deadline records nothing
 * (whether one exists is not known).
 */
#include "proxy/session/session_int.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/obs/log.h"
#include "proxy/policy/decide.h"
#include "proxy/policy/rules.h"
#include "proxy/session/rcpt_sts.h"
#include "proxy/tls/tls.h"
#include "proxy/tls/tls_dane.h"

#define RCPT_CACHE 8
#define RCPT_HOSTS 8
#define RCPT_CHAIN_MAX 8
#define RCPT_CHAIN_BYTES 65536
#define RCPT_DECISION_MS 10000
/* Recipient domains a session records TLS-RPT results for (each once);
 * those beyond are not recorded. */
#define RCPT_RPT_DOMAINS 32

struct rcpt_host {
    struct resolver_query q; /* first: the callback finds the host from it */
    char name[256];
    bool connected; /* an address of it is the connected one, secure or not */
};

struct session_rcpt {
    struct relay_hooks hooks; /* the relay's (outbound_cfg.hooks): arg is s */
    struct session *s;
    uv_timer_t timer; /* the deadline of the decision under way */
    uint8_t *chain;   /* DER copies of the destination's chain (tls_peer_chain) */
    const uint8_t *der[RCPT_CHAIN_MAX];
    size_t len[RCPT_CHAIN_MAX];
    size_t nchain;
    bool any_pass;
    enum decide_auth best; /* strongest auth a recipient got */
    struct {
        char domain[256];
        struct decide_verdict v;
    } cache[RCPT_CACHE];
    unsigned ncache, next;
    /* The decision under way. */
    bool pending;
    char domain[256];
    struct resolver_query mx;
    struct rcpt_host hosts[RCPT_HOSTS];
    unsigned nhosts, hosts_left;
    bool mx_secure; /* dane = true and a secure MX set: DANE may apply */
    /* MTA-STS, asked for once DANE does not apply. */
    struct mta_sts_req sts_req;
    struct decide_sts sts; /* what the domain's policy says of the session */
    bool sts_answered;     /* sts holds on_sts's answer for decided() */
    int match;             /* the host holding the connected address, or -1 */
    enum decide_dane fail; /* how a host's lookup failed (TEMPFAIL, BOGUS) or NA */
    struct resolver_query tlsa;
    char tlsa_name[300];
    /* TLS-RPT: the TLSA check of the decision under way (on_tlsa), and
     * the domains recorded so far (FNV-1a hashes). */
    enum tlsrpt_dane rpt_dane;
    const struct tlsa_set *rpt_set; /* on_tlsa's, during its decision only */
    /* The MTA-STS answer of the decision under way (sts_judge), its policy
     * referenced until the decision is made. */
    struct session_rpt_sts rpt_sts;
    struct mta_sts_snapshot *rpt_policy;
    uint64_t rpt_done[RCPT_RPT_DOMAINS];
    unsigned nrpt_done;
};

struct session_rcpt *session_rcpt_of(const struct session *s)
{
    const struct relay_hooks *h = s->p != NULL && s->p->outbound ? s->engine.out.cfg.hooks : NULL;

    /* The only hooks an outbound engine is given are a session_rcpt's. */
    return h != NULL ? (struct session_rcpt *)((char *)h - offsetof(struct session_rcpt, hooks))
                     : NULL;
}

bool session_rcpt_wanted(const struct session *s)
{
    return s->p->outbound && s->p->out->original_dst && (s->p->out->dane || session_sts_wanted(s));
}

static void on_timer_closed(uv_handle_t *h)
{
    session_drop_handle(h->data);
}

int session_rcpt_init(struct session *s)
{
    struct session_rcpt *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return UV_ENOMEM;
    r->s = s;
    r->match = -1;
    uv_timer_init(s->set->loop, &r->timer);
    r->timer.data = s;
    s->handles++; /* until on_timer_closed */
    r->hooks = (struct relay_hooks){.arg = s, .rcpt = session_rcpt_hook};
    s->engine.out.cfg.hooks = &r->hooks;
    return 0;
}

void session_rcpt_close(struct session *s)
{
    struct session_rcpt *r = session_rcpt_of(s);

    if (r != NULL && !uv_is_closing((uv_handle_t *)&r->timer))
        uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}

void session_rcpt_free(struct session *s)
{
    struct session_rcpt *r = session_rcpt_of(s);

    if (r == NULL)
        return;
    s->engine.out.cfg.hooks = NULL;
    mta_sts_snapshot_unref(r->rpt_policy);
    free(r->chain);
    free(r);
}

static unsigned cancel(struct resolver_query *q)
{
    return resolver_cancel(q) ? 1 : 0;
}

unsigned session_rcpt_cancel(struct session *s)
{
    struct session_rcpt *r = session_rcpt_of(s);
    unsigned n = 0;

    if (r == NULL)
        return 0;
    n += cancel(&r->mx) + cancel(&r->tlsa) + session_sts_cancel(&r->sts_req);
    for (unsigned i = 0; i < r->nhosts; i++)
        n += cancel(&r->hosts[i].q);
    return n;
}

void session_rcpt_tls_ready(struct session *s, struct tls *t)
{
    struct session_rcpt *r = session_rcpt_of(s);

    if (r == NULL)
        return;
    free(r->chain);
    r->chain = NULL;
    r->nchain = 0;
    int n = tls_peer_chain(t, RCPT_CHAIN_MAX, RCPT_CHAIN_BYTES, &r->chain, r->der, r->len);
    if (n > 0)
        r->nchain = (size_t)n;
    log_debug("session=%s event=chain_kept certificates=%d", s->id, n);
}

const char *session_rcpt_auth(const struct session *s)
{
    const struct session_rcpt *r = session_rcpt_of(s);

    return r != NULL && r->any_pass ? decide_auth_str(r->best) : "none";
}

/* What the session knows for every recipient: rules, fallback, TLS. */
static void base_input(const struct session *s, const char *domain, struct decide_input *in)
{
    const struct session_outbound_opts *o = s->p->out;
    /* A name rule for the domain comes first. Address rules are the
     * destination's, already applied to the connection. */
    const struct policy_rule *rule = domain[0] ? policy_rule_for(&o->policy, domain, NULL) : NULL;
    enum outbound_policy p = rule ? rule->policy : o->policy.fallback;

    memset(in, 0, sizeof(*in));
    in->rule = rule != NULL;
    in->rule_policy = p;
    in->fallback = o->policy.fallback;
    in->tls = s->engine.out.server_tls;
    in->pkix_session = s->d.out.verified;
    in->enforce = o->enforce;
    /* Only a verify rule asks whether the chain is valid for the domain:
     * a PKIX verification per recipient domain costs. */
    const struct session_rcpt *r = session_rcpt_of(s);
    if (in->rule && p == OUTBOUND_VERIFY && in->tls && r->nchain > 0)
        in->pkix_domain = tls_chain_valid_for_domain(s->p->tls, r->der, r->len, r->nchain, domain);
    in->sts = r->sts; /* DECIDE_STS_NO_POLICY unless sts_wait found one */
}

/* The verdict for domain: logged, counted, remembered; the reply to give
 * (static) or NULL to forward. */
static const char *apply(struct session *s, const char *domain, struct decide_verdict v)
{
    struct session_rcpt *r = session_rcpt_of(s);
    const char *auth = decide_auth_str(v.auth);

    if (v.result == DECIDE_PASS) {
        if (!r->any_pass || v.auth > r->best)
            r->best = v.auth;
        r->any_pass = true;
        if (v.auth != DECIDE_AUTH_NONE)
            metrics_outbound_auth(s->p->metrics, auth, "ok");
        log_debug("session=%s event=rcpt_auth domain=%s auth=%s", s->id, domain[0] ? domain : "-",
                  auth);
        return NULL;
    }
    char q[300];
    log_warn("session=%s listener=%s event=rcpt_refused destination=%s domain=%s auth=%s "
             "result=%s why=%s",
             s->id, s->p->name, s->server_addr, domain[0] ? domain : "-", auth,
             decide_result_str(v.result), log_quote(decide_why_str(v.why), q, sizeof(q)));
    metrics_outbound_auth(s->p->metrics, auth, v.result == DECIDE_LOGGED ? "logged" : "fail");
    return v.result == DECIDE_REFUSE_TEMP ? decide_reply(v.why) : NULL;
}

static void remember(struct session_rcpt *r, const char *domain, struct decide_verdict v)
{
    unsigned i = r->ncache < RCPT_CACHE ? r->ncache++ : r->next++ % RCPT_CACHE;

    snprintf(r->cache[i].domain, sizeof(r->cache[i].domain), "%s", domain);
    r->cache[i].v = v;
}

static const struct decide_verdict *cached(const struct session_rcpt *r, const char *domain)
{
    for (unsigned i = 0; i < r->ncache; i++)
        if (strcmp(r->cache[i].domain, domain) == 0)
            return &r->cache[i].v;
    return NULL;
}

static void decided(struct session_rcpt *r, enum decide_dane dane);
static void answered(struct session *s);

/* Forgets the MTA-STS answer kept for TLS-RPT. */
static void sts_rpt_reset(struct session_rcpt *r)
{
    mta_sts_snapshot_unref(r->rpt_policy);
    r->rpt_policy = NULL;
    r->rpt_sts = (struct session_rpt_sts){.sts = TLSRPT_MTASTS_NA};
}

/* TLS-RPT: what answer a and r->sts (its judgement) come to. A failed
 * fetch with nothing cached is sts-policy-fetch-error, sts-policy-invalid
 * or sts-webpki-invalid (RFC 8460 §4.3.2.1), as it failed; a failed TXT
 * lookup is none of them (no policy is known to exist: it counts as
 * no-policy-found). A policy in enforce or testing mode is kept (a's
 * reference taken) for its text. */
static void sts_rpt(struct session_rcpt *r, struct mta_sts_answer *a)
{
    static const enum tlsrpt_sts failure[] = {
        [MTA_STS_FETCH_ERROR] = TLSRPT_MTASTS_FETCH_ERROR,
        [MTA_STS_FETCH_INVALID] = TLSRPT_MTASTS_INVALID,
        [MTA_STS_FETCH_WEBPKI] = TLSRPT_MTASTS_WEBPKI_INVALID,
    };

    sts_rpt_reset(r);
    if (r->s->p->tls_rpt == NULL)
        return;
    if (a->result == MTA_STS_RESULT_TEMPFAIL && a->fetch_error != MTA_STS_FETCH_OK) {
        r->rpt_sts.sts = failure[a->fetch_error];
    } else if (r->sts.mode == DECIDE_STS_ENFORCE || r->sts.mode == DECIDE_STS_TESTING) {
        r->rpt_sts.sts = TLSRPT_MTASTS_APPLIED;
        r->rpt_sts.cert =
            tlsrpt_sts_cert(r->sts.mx_ok, r->sts.name_ok, r->sts.trusted, r->s->d.out.rpt.cert);
        r->rpt_policy = a->policy;
        a->policy = NULL;
        r->rpt_sts.policy = r->rpt_policy;
    }
}

/* What the policy in a says, for the MX hosts that hold the connected
 * address. */
static void sts_judge(struct session_rcpt *r, struct mta_sts_answer *a)
{
    const char *names[RCPT_HOSTS];
    size_t n = 0;

    for (unsigned i = 0; i < r->nhosts; i++)
        if (r->hosts[i].connected)
            names[n++] = r->hosts[i].name;
    r->sts = session_sts_judge(r->s, r->domain, a, names, n, r->der, r->len, r->nchain);
    sts_rpt(r, a);
}

static void on_sts(struct mta_sts_req *req, struct mta_sts_answer *a)
{
    struct session_rcpt *r = req->data;

    answered(r->s); /* a closing session cancels req: only a live one hears */
    sts_judge(r, a);
    mta_sts_answer_release(a);
    r->sts_answered = true;
    decided(r, DECIDE_DANE_NA);
}

/* MTA-STS after DANE (DESIGN.md's precedence): when DANE does not apply,
 * the domain's policy. True when the decision waits for it (on_sts decides
 * again); false when r->sts is what to decide with. */
static bool sts_wait(struct session_rcpt *r, enum decide_dane dane)
{
    struct mta_sts_answer a = {0};

    if (r->sts_answered) {
        r->sts_answered = false; /* on_sts's decision: r->sts is its answer */
        return false;
    }
    r->sts = (struct decide_sts){.mode = DECIDE_STS_NO_POLICY};
    sts_rpt_reset(r);
    if (dane != DECIDE_DANE_NA || !session_sts_wanted(r->s))
        return false;
    r->sts_req.data = r;
    int rc = session_sts_get(r->s, &r->sts_req, r->domain, on_sts, &a);
    if (rc == 0) {
        r->s->action = "looking up a recipient domain's MTA-STS policy";
        return true;
    }
    if (rc == MTA_STS_GET_DONE) /* a warm cache: no loop round trip */
        sts_judge(r, &a);
    mta_sts_answer_release(&a);
    return false;
}

/* The decision under way is made: the relay hears it and reads on. */
static void finish(struct session_rcpt *r, struct decide_verdict v, bool keep)
{
    struct session *s = r->s;

    uv_timer_stop(&r->timer);
    r->pending = false;
    if (keep)
        remember(r, r->domain, v);
    const char *reply = apply(s, r->domain, v);
    outbound_rcpt_resume(&s->engine.out, reply);
    session_client_resumed(s);
}

/* TLS-RPT: the first decision for a domain, as what DANE came to, or
 * where it does not apply what MTA-STS did (r->rpt_sts). */
static void rpt(struct session_rcpt *r, enum decide_dane dane)
{
    uint64_t h = 14695981039346656037u;
    static const enum tlsrpt_dane as[] = {
        [DECIDE_DANE_NA] = TLSRPT_DANE_NA,
        [DECIDE_DANE_TEMPFAIL] = TLSRPT_DANE_DNS_FAILED,
        [DECIDE_DANE_BOGUS] = TLSRPT_DANE_DNS_FAILED,
        [DECIDE_DANE_MATCH] = TLSRPT_DANE_MATCH,
        [DECIDE_DANE_MISMATCH] = TLSRPT_DANE_ERROR, /* r->rpt_dane says which */
        [DECIDE_DANE_UNUSABLE] = TLSRPT_DANE_UNUSABLE,
    };

    if (r->s->p->tls_rpt == NULL)
        return;
    for (const char *c = r->domain; *c; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211u;
    for (unsigned i = 0; i < r->nrpt_done; i++)
        if (r->rpt_done[i] == h)
            return;
    if (r->nrpt_done == RCPT_RPT_DOMAINS)
        return;
    r->rpt_done[r->nrpt_done++] = h;
    /* The MX host reached: the secure one DANE found, else (MTA-STS) the
     * first whose addresses hold the connected one. */
    const char *mx = r->match >= 0 ? r->hosts[r->match].name : "";
    for (unsigned i = 0; r->match < 0 && i < r->nhosts && mx[0] == '\0'; i++)
        if (r->hosts[i].connected)
            mx = r->hosts[i].name;
    session_tlsrpt_rcpt(r->s, r->domain, mx, dane == DECIDE_DANE_MISMATCH ? r->rpt_dane : as[dane],
                        r->rpt_set, &r->rpt_sts);
}

static void decided(struct session_rcpt *r, enum decide_dane dane)
{
    struct decide_input in;

    if (sts_wait(r, dane))
        return;
    base_input(r->s, r->domain, &in);
    in.dane = dane;
    struct decide_verdict v = decide_rcpt(&in);
    if (!in.rule)
        rpt(r, dane); /* a rule decides without DANE: nothing known to report */
    sts_rpt_reset(r);
    finish(r, v, true);
}

/* One lookup answered: it no longer counts (a closing session cancels
 * its lookups, so an answer comes only to a live one). */
static void answered(struct session *s)
{
    s->resolving--;
    s->handles--;
}

static int query(struct session_rcpt *r, struct resolver_query *q, const char *name, int type,
                 resolver_cb cb)
{
    q->data = r;
    int rc = resolver_query(r->s->set->resolver, q, name, type, cb);
    if (rc == 0) {
        r->s->resolving++;
        r->s->handles++; /* until the callback or its cancel in session_close */
    }
    return rc;
}

/* How a failed answer counts: BOGUS, TEMPFAIL, or NA when it did not fail. */
static enum decide_dane failure(const struct resolver_result *res)
{
    if (res->err == 0 && res->security == RESOLVER_BOGUS)
        return DECIDE_DANE_BOGUS;
    if (res->err != 0 ||
        (res->rcode != RESOLVER_RCODE_NOERROR && res->rcode != RESOLVER_RCODE_NXDOMAIN))
        return DECIDE_DANE_TEMPFAIL;
    return DECIDE_DANE_NA;
}

static void on_tlsa(struct resolver_query *q, const struct resolver_result *res)
{
    struct session_rcpt *r = q->data;
    struct tlsa_set set;
    enum decide_dane f = failure(res);

    answered(r->s);
    if (f != DECIDE_DANE_NA || res->security != RESOLVER_SECURE || res->count == 0) {
        log_debug("session=%s event=rcpt_tlsa name=%s dnssec=%s records=%zu", r->s->id,
                  r->tlsa_name, resolver_security_str(res->security), res->count);
        decided(r, f);
        return;
    }
    enum tlsa_verdict tv = session_tlsa_set(res, &set);
    if (tv != TLSA_VERDICT_AUTHENTICATE) {
        decided(r, DECIDE_DANE_UNUSABLE);
        return;
    }
    /* DANE-TA's reference identifiers: the TLSA base domain (the MX host)
     * and the next-hop domain (RFC 7672 §3.2.2, as Postfix). */
    const char *names[2] = {r->hosts[r->match].name, r->domain}, *why = NULL;
    enum tls_dane_result dr =
        r->nchain == 0 ? TLS_DANE_ERROR
                       : tls_dane_verify(&set, r->der, r->len, r->nchain, names, 2, 0, &why);
    log_debug("session=%s event=rcpt_dane name=%s result=%s why=%s", r->s->id, r->tlsa_name,
              tls_dane_result_str(dr), why ? why : "-");
    r->rpt_dane = session_tlsrpt_dane((int)dr);
    r->rpt_set = &set;
    decided(r, dr == TLS_DANE_MATCH_EE || dr == TLS_DANE_MATCH_TA ? DECIDE_DANE_MATCH
                                                                  : DECIDE_DANE_MISMATCH);
    r->rpt_set = NULL;
}

/* Whether rdata (an A or AAAA record) is the connected address. */
static bool is_connected(const struct session *s, const char *rdata, int len)
{
    const struct sockaddr_storage *sa = &s->d.out.dest.sa;

    if (sa->ss_family == AF_INET && len == 4)
        return memcmp(rdata, &((const struct sockaddr_in *)sa)->sin_addr, 4) == 0;
    if (sa->ss_family == AF_INET6 && len == 16)
        return memcmp(rdata, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16) == 0;
    return false;
}

static unsigned dest_port(const struct session *s)
{
    const struct sockaddr_storage *sa = &s->d.out.dest.sa;

    return ntohs(sa->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)sa)->sin6_port
                                           : ((const struct sockaddr_in *)sa)->sin_port);
}

static void on_host(struct resolver_query *q, const struct resolver_result *res)
{
    struct session_rcpt *r = q->data;
    struct rcpt_host *h = (struct rcpt_host *)q;
    enum decide_dane f = failure(res);

    answered(r->s);
    if (r->mx_secure &&
        (f == DECIDE_DANE_BOGUS || (f == DECIDE_DANE_TEMPFAIL && r->fail == DECIDE_DANE_NA)))
        r->fail = f;
    for (size_t i = 0; f == DECIDE_DANE_NA && i < res->count; i++) {
        if (!is_connected(r->s, res->data[i], res->len[i]))
            continue;
        h->connected = true; /* MTA-STS: DNSSEC or not */
        if (r->mx_secure && res->security == RESOLVER_SECURE && r->match < 0)
            r->match = (int)(h - r->hosts);
    }
    if (--r->hosts_left > 0)
        return;
    if (r->match < 0) {
        /* Not among the secure MX hosts; a failed lookup might have been
         * it, and a DNS failure is never a downgrade. */
        decided(r, r->fail);
        return;
    }
    snprintf(r->tlsa_name, sizeof(r->tlsa_name), "_%u._tcp.%s", dest_port(r->s),
             r->hosts[r->match].name);
    if (query(r, &r->tlsa, r->tlsa_name, RESOLVER_TYPE_TLSA, on_tlsa) != 0)
        decided(r, DECIDE_DANE_TEMPFAIL);
}

/* An MX RDATA's exchange (after the preference), uncompressed wire format,
 * into out as a dotted lower-case name without the root's dot; false when
 * it is malformed, too long, or the root (a null MX, RFC 7505). */
static bool mx_name(const char *rdata, int len, char *out, size_t cap)
{
    const uint8_t *p = (const uint8_t *)rdata;
    size_t n = len > 0 ? (size_t)len : 0, i = 2, o = 0;

    while (i < n && p[i] != 0) {
        size_t l = p[i++];
        if (l > 63 || i + l > n || o + l + 2 > cap || o + l + 1 > 254)
            return false; /* a compression pointer included: never in unbound's answers */
        if (o > 0)
            out[o++] = '.';
        for (size_t k = 0; k < l; k++) {
            uint8_t c = p[i + k];
            out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
        }
        i += l;
    }
    out[o] = '\0';
    return i < n && o > 0;
}

static void on_mx(struct resolver_query *q, const struct resolver_result *res)
{
    struct session_rcpt *r = q->data;
    enum decide_dane f = failure(res);

    answered(r->s);
    log_debug("session=%s event=rcpt_mx domain=%s dnssec=%s records=%zu rcode=%d", r->s->id,
              r->domain, resolver_security_str(res->security), res->count, res->rcode);
    /* DANE needs a secure MX set; MTA-STS needs the MX hosts, secure or
     * not (RFC 8461 §4.1). Without dane, a failed MX lookup is no DANE
     * failure: MTA-STS then finds no MX host (and refuses if it enforces). */
    bool dane = r->s->p->out->dane;
    r->mx_secure = dane && res->security == RESOLVER_SECURE;
    if (f != DECIDE_DANE_NA || res->rcode == RESOLVER_RCODE_NXDOMAIN ||
        (!r->mx_secure && !session_sts_wanted(r->s))) {
        decided(r, dane ? f : DECIDE_DANE_NA); /* an insecure MX set: DANE does not apply */
        return;
    }
    for (unsigned i = 0; i < RCPT_HOSTS; i++)
        r->hosts[i].connected = false;
    r->nhosts = 0;
    for (size_t i = 0; i < res->count && r->nhosts < RCPT_HOSTS; i++)
        if (mx_name(res->data[i], res->len[i], r->hosts[r->nhosts].name,
                    sizeof(r->hosts[r->nhosts].name)))
            r->nhosts++;
    if (res->count == 0) /* RFC 5321 §5.1: the domain is its own MX */
        snprintf(r->hosts[r->nhosts++].name, sizeof(r->hosts[0].name), "%s", r->domain);
    int type = r->s->d.out.dest.sa.ss_family == AF_INET6 ? RESOLVER_TYPE_AAAA : RESOLVER_TYPE_A;
    r->hosts_left = 0;
    for (unsigned i = 0; i < r->nhosts; i++) {
        if (query(r, &r->hosts[i].q, r->hosts[i].name, type, on_host) == 0)
            r->hosts_left++;
        else if (r->mx_secure)
            r->fail = DECIDE_DANE_TEMPFAIL;
    }
    if (r->hosts_left == 0)
        decided(r, r->nhosts == 0 || !r->mx_secure ? DECIDE_DANE_NA : DECIDE_DANE_TEMPFAIL);
}

/* The deadline came while only the policy was awaited (DNS had answered):
 * a discovery that did not end in time failed, and with nothing cached
 * (a cached policy answers at once) RFC 8461 §3.3 says deliver as without
 * MTA-STS. The lookup goes on for the cache; the verdict is not
 * remembered, so the domain's next recipient asks again. */
static void sts_timed_out(struct session_rcpt *r)
{
    struct decide_input in;

    log_info("session=%s event=rcpt_sts domain=%s result=timeout", r->s->id, r->domain);
    r->sts = (struct decide_sts){.mode = DECIDE_STS_NO_POLICY};
    base_input(r->s, r->domain, &in);
    in.dane = DECIDE_DANE_NA;
    finish(r, decide_rcpt(&in), false);
}

static void on_deadline(uv_timer_t *t)
{
    struct session *s = t->data;
    struct session_rcpt *r = session_rcpt_of(s);
    bool sts = mta_sts_req_active(&r->sts_req);
    unsigned n = session_rcpt_cancel(s);

    s->resolving -= n;
    s->handles -= n;
    if (!r->pending || s->closing)
        return;
    if (sts) {
        sts_timed_out(r);
        return;
    }
    struct decide_verdict v = {
        .result = s->p->out->enforce ? DECIDE_REFUSE_TEMP : DECIDE_LOGGED,
        .auth = DECIDE_AUTH_DANE,
        .why = DECIDE_WHY_TIMEOUT,
    };
    finish(r, v, false); /* not remembered: the next recipient tries again */
}

enum relay_rcpt_verdict session_rcpt_hook(void *arg, const char *domain, const char **reply)
{
    struct session *s = arg;
    struct session_rcpt *r = session_rcpt_of(s);
    struct decide_input in;
    const struct decide_verdict *c;

    base_input(s, domain, &in);
    if (in.rule || domain[0] == '\0' || (c = cached(r, domain)) != NULL) {
        /* Nothing to look up: a rule, an address literal, or known. */
        struct decide_verdict v = in.rule || domain[0] == '\0' ? decide_rcpt(&in) : *c;
        *reply = apply(s, domain, v);
        return *reply != NULL ? RELAY_RCPT_REFUSE : RELAY_RCPT_PASS;
    }
    snprintf(r->domain, sizeof(r->domain), "%s", domain);
    r->pending = true;
    r->nhosts = 0;
    r->match = -1;
    r->fail = DECIDE_DANE_NA;
    if (query(r, &r->mx, domain, RESOLVER_TYPE_MX, on_mx) != 0) {
        r->pending = false;
        in.dane = DECIDE_DANE_TEMPFAIL;
        *reply = apply(s, domain, decide_rcpt(&in));
        return *reply != NULL ? RELAY_RCPT_REFUSE : RELAY_RCPT_PASS;
    }
    log_debug("session=%s event=rcpt_lookup domain=%s", s->id, domain);
    uv_timer_start(&r->timer, on_deadline, RCPT_DECISION_MS, 0);
    s->action = "deciding a recipient's authentication";
    return RELAY_RCPT_WAIT;
}
