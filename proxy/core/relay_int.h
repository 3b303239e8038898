/*
 * relay_int: what relay.c and relay_rcpt.c share, not part of the relay's
 * API.
 */
#ifndef SMTP_TLS_PROXY_RELAY_INT_H
#define SMTP_TLS_PROXY_RELAY_INT_H

#include "proxy/core/relay.h"

/* Where the recipient decision of the RCPT at the head of the client's
 * unread bytes stands (struct relay, rcpt). The RCPT line is read twice:
 * once to ask, once more after relay_rcpt_resume() to act. */
enum relay_rcpt_state {
    RELAY_RCPT_IDLE,
    RELAY_RCPT_WAITING,  /* hooks.rcpt said WAIT: the line stays unread */
    RELAY_RCPT_FORWARD,  /* resumed: forward it when read again */
    RELAY_RCPT_ANSWERED, /* resumed: its answer is in the FIFO; read it, drop it */
};

/* relay_rcpt_ask()'s answer beyond enum relay_rcpt_verdict: the line was
 * answered already, nothing more to do. */
#define RELAY_RCPT_DONE 3

/* What to do with one RCPT the relay would forward: a relay_rcpt_verdict
 * (RELAY_RCPT_REFUSE: its answer in *reply), RELAY_RCPT_DONE, or a negative
 * relay_rcpt_parse status for a path that does not parse. Consumes a
 * decision made by relay_rcpt_resume(); else asks hooks.rcpt, if any. */
int relay_rcpt_ask(struct relay *r, const struct relay_command *c, const char **reply);

/* A reply of the proxy's own that is no client error (not counted towards
 * RELAY_ERROR_LIMIT), in its place in the reply order. */
void relay_reply_own(struct relay *r, const char *text);

#endif
