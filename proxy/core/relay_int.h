/*
 * relay_int: what relay.c and relay_rcpt.c share, not part of the relay's
 * API.
 */
#ifndef SMTP_TLS_PROXY_RELAY_INT_H
#define SMTP_TLS_PROXY_RELAY_INT_H

#include "proxy/core/relay.h"

/* What to do with one RCPT the relay would forward: a relay_rcpt_verdict
 * (RELAY_RCPT_REFUSE: its answer is r->rcpt_reply), or a negative
 * relay_rcpt_parse status for a path that does not parse. Consumes a
 * decision made by relay_rcpt_resume(); else asks hooks.rcpt, if any. */
int relay_rcpt_ask(struct relay *r, const struct relay_command *c);

#endif
