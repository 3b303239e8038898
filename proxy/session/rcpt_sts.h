/*
 * rcpt_sts: MTA-STS (RFC 8461) for the per-recipient decisions of a
 * transparent outbound session (rcpt_auth.c), apart so that the DANE
 * lookups and the policy's use stay separate: the request to the
 * profile's policy service on the session's loop, and what an answer
 * says of the session's TLS (policy/decide.h's struct decide_sts).
 * Private to the session module.
 */
#ifndef SMTP_TLS_PROXY_RCPT_STS_H
#define SMTP_TLS_PROXY_RCPT_STS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/policy/decide.h"
#include "proxy/service/mta_sts_get.h"
#include "proxy/session/session_int.h"

/* Whether s asks for its recipient domains' policies: an outbound
 * listener with mta_sts = true, a policy service and a loop to ask on. */
bool session_sts_wanted(const struct session *s);

/*
 * Asks for domain's policy with req (zeroed, idle; req->data is the
 * caller's). MTA_STS_GET_DONE with *a (the caller releases a->policy)
 * when the cache answers at once; 0 when cb follows (it counts in
 * s->resolving and s->handles until then: the callback, or the caller's
 * session_sts_cancel, stops the count); negative when it cannot be asked
 * (logged; the caller decides as without a policy).
 */
int session_sts_get(struct session *s, struct mta_sts_req *req, const char *domain, mta_sts_cb cb,
                    struct mta_sts_answer *a);

/* Cancels req if it waits: 1 (one request that stopped counting) or 0. */
unsigned session_sts_cancel(struct mta_sts_req *req);

/*
 * What answer a (read only) means for the session's TLS to domain: the
 * mode, and for enforce and testing whether one of the MX hosts that hold
 * the connected address (hosts, n names, lower case) matches an mx
 * pattern (RFC 8461 §4.1) and the kept chain (der/len, nchain) is
 * PKIX-valid against the listener's ca_file for that host's name (§4.2).
 * Logs what it found at debug.
 */
struct decide_sts session_sts_judge(const struct session *s, const char *domain,
                                    const struct mta_sts_answer *a, const char *const *hosts,
                                    size_t n, const uint8_t *const *der, const size_t *len,
                                    size_t nchain);

#endif
