/*
 * MTA-STS for the recipients of a transparent session; see rcpt_sts.h.
 *
 * Which answers count (RFC 8461 §5): a policy (fetched now, cached, or the
 * cached one after a failed refresh) in enforce or testing mode; "none"
 * mode, no policy, and a discovery that failed with nothing cached are
 * DECIDE_STS_NO_POLICY (deliver as without MTA-STS).
 */
#include "proxy/session/rcpt_sts.h"

#include <string.h>

#include "proxy/obs/log.h"
#include "proxy/tls/tls.h"

bool session_sts_wanted(const struct session *s)
{
    return s->p->outbound && s->p->out->mta_sts && s->p->mta_sts != NULL && s->set->mta_sts != NULL;
}

int session_sts_get(struct session *s, struct mta_sts_req *req, const char *domain, mta_sts_cb cb,
                    struct mta_sts_answer *a)
{
    int rc = mta_sts_get(s->p->mta_sts, s->set->mta_sts, domain, strlen(domain), req, cb, a);

    if (rc == 0) {
        s->resolving++;
        s->handles++; /* until cb or session_sts_cancel */
    } else if (rc < 0) {
        log_warn("session=%s event=rcpt_sts domain=%s error=\"%s\"", s->id, domain,
                 uv_strerror(rc));
    }
    return rc;
}

unsigned session_sts_cancel(struct mta_sts_req *req)
{
    if (!mta_sts_req_active(req))
        return 0;
    mta_sts_cancel(req);
    return 1;
}

struct decide_sts session_sts_judge(const struct session *s, const char *domain,
                                    const struct mta_sts_answer *a, const char *const *hosts,
                                    size_t n, const uint8_t *const *der, const size_t *len,
                                    size_t nchain)
{
    struct decide_sts d = {.mode = DECIDE_STS_NO_POLICY};
    const struct mta_sts_snapshot *p = a->policy;
    const char *host = "-", *trusted = "-";

    if (a->result != MTA_STS_RESULT_POLICY || p == NULL) {
        log_debug("session=%s event=rcpt_sts domain=%s result=%s why=\"%s\"", s->id, domain,
                  mta_sts_result_str(a->result), a->why ? a->why : "-");
        return d;
    }
    switch (p->mode) {
    case MTA_STS_MODE_ENFORCE:
        d.mode = DECIDE_STS_ENFORCE;
        break;
    case MTA_STS_MODE_TESTING:
        d.mode = DECIDE_STS_TESTING;
        break;
    default:
        d.mode = DECIDE_STS_MODE_NONE;
        break;
    }
    if (d.mode != DECIDE_STS_MODE_NONE) {
        /* The first allowed host whose name the chain is valid for wins;
         * failing that, the best failure seen (trusted for another name
         * rather than untrusted). A PKIX check per allowed host: at most
         * the few MX hosts that hold the connected address. */
        for (size_t i = 0; i < n && !d.name_ok; i++) {
            if (!mta_sts_snapshot_allows(p, hosts[i], strlen(hosts[i])))
                continue;
            d.mx_ok = true;
            host = hosts[i];
            if (!s->engine.out.server_tls || nchain == 0)
                continue;
            enum tls_chain_check c = tls_chain_check_host(s->p->tls, der, len, nchain, hosts[i]);
            d.name_ok = c == TLS_CHAIN_VALID;
            d.trusted = d.trusted || c != TLS_CHAIN_UNTRUSTED;
            trusted = d.trusted ? "yes" : "no";
        }
    }
    log_debug("session=%s event=rcpt_sts domain=%s result=policy mode=%s id=%s fetch_failed=%s "
              "mx_hosts=%zu mx=%s mx_ok=%s trusted=%s name_ok=%s",
              s->id, domain, mta_sts_mode_str(p->mode), p->id,
              a->fetch_error != MTA_STS_FETCH_OK ? "yes" : "no", n, host, d.mx_ok ? "yes" : "no",
              trusted, d.name_ok ? "yes" : "no");
    return d;
}
