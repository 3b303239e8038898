#include "proxy/session/report.h"

#include <inttypes.h>

#include "proxy/obs/log.h"
#include "proxy/policy/rules.h"

void report_session_end(const struct session_report *r, struct metrics_listener *m)
{
    char sni[300], note[300], verified[300];
    const char *version = r->tls_version ? r->tls_version : "none";
    const char *cipher = r->tls_cipher ? r->tls_cipher : "-";

    metrics_bytes(m, r->bytes_in, r->bytes_out);
    if (r->reason == REASON_POLICY_REFUSAL)
        metrics_policy_refusal(m, policy_str(r->policy));
    if (r->outbound && r->auth != NULL && r->auth_result != NULL)
        metrics_outbound_auth(m, r->auth, r->auth_result);
    if (!r->outbound) {
        log_quote(r->sni && r->sni[0] ? r->sni : "-", sni, sizeof(sni));
        log_info("session=%s listener=%s dir=in client=%s backend=%s tls=%s cipher=%s sni=%s "
                 "bytes_in=%" PRIu64 " bytes_out=%" PRIu64 " ms=%" PRIu64 " end=%s",
                 r->id, r->listener, r->client, r->server, version, cipher, sni, r->bytes_in,
                 r->bytes_out, r->ms, reason_str(r->reason));
        return;
    }
    /* RFC 7435 §3: plaintext, encrypted-unverified and verified are told
     * apart; the line never claims more than was achieved. */
    const char *security = r->tls_version == NULL ? "plaintext"
                           : r->verified          ? "tls-verified"
                                                  : "tls-unverified";
    log_quote(r->tls_version == NULL ? "-" : r->verified ? "yes" : r->verify_note, verified,
              sizeof(verified));
    log_quote(r->tls_note ? r->tls_note : "-", note, sizeof(note));
    log_info("session=%s listener=%s dir=out client=%s destination=%s policy=%s security=%s "
             "auth=%s tls=%s cipher=%s verified=%s tls_note=%s bytes_in=%" PRIu64
             " bytes_out=%" PRIu64 " ms=%" PRIu64 " end=%s",
             r->id, r->listener, r->client, r->server, policy_str(r->policy), security,
             r->auth ? r->auth : "none", version, cipher, verified, note, r->bytes_in, r->bytes_out,
             r->ms, reason_str(r->reason));
}
