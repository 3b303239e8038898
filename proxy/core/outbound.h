/*
 * outbound: the dialogue engine of an outbound session (legacy client ->
 * proxy -> destination MTA). Pure, like inbound: bytes in, emitted bytes
 * and actions out.
 *
 * It owns the negotiation: the destination's greeting passes through; the
 * client's EHLO (or HELO, sent on as EHLO so STARTTLS can be seen) goes to
 * the destination; if STARTTLS is offered and policy allows, the proxy
 * upgrades the connection itself, repeats the EHLO over TLS and hands the
 * client that reply minus STARTTLS. Once the client has its EHLO reply,
 * everything is relayed by the inbound engine in relay mode (command FIFO,
 * DATA/BDAT tracking, bare CR/LF normalisation, AUTH only over TLS).
 *
 * Policy (RFC 7435 terms): NONE never tries TLS; OPPORTUNISTIC tries and,
 * when STARTTLS fails after being offered, asks for a fresh plaintext
 * connection (RECONNECT) on which it does not try again; REQUIRED and
 * VERIFY refuse with "421 4.7.5 ..." instead of sending anything of the
 * mail in plaintext. Certificate checking for VERIFY is the TLS layer's
 * job; a failed check arrives here as outbound_tls_failed().
 */
#ifndef SMTP_TLS_PROXY_OUTBOUND_H
#define SMTP_TLS_PROXY_OUTBOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/core/inbound.h"
#include "proxy/core/smtp.h"

enum outbound_policy {
    OUTBOUND_NONE,
    OUTBOUND_OPPORTUNISTIC,
    OUTBOUND_REQUIRED,
    OUTBOUND_VERIFY,
};

struct outbound_cfg {
    enum outbound_policy policy;
    bool reject_bare_newline;
};

enum outbound_state {
    OUTBOUND_GREETING,    /* waiting for the destination's greeting */
    OUTBOUND_CLIENT_EHLO, /* waiting for the client's EHLO/HELO */
    OUTBOUND_EHLO,        /* our EHLO sent in plaintext */
    OUTBOUND_HELO,        /* EHLO refused, HELO sent instead */
    OUTBOUND_STARTTLS,    /* STARTTLS sent */
    OUTBOUND_HANDSHAKE,   /* TLS handshake with the destination */
    OUTBOUND_EHLO_TLS,    /* EHLO repeated over TLS */
    OUTBOUND_RECONNECT,   /* waiting for a fresh plaintext connection */
    OUTBOUND_RE_GREETING, /* its greeting (not shown to the client) */
    OUTBOUND_RE_EHLO,     /* its EHLO reply */
    OUTBOUND_RELAY,       /* negotiation over: the relay engine runs */
    OUTBOUND_REFUSED,     /* policy forbids going on: the next command is refused */
    OUTBOUND_CLOSED,
};

const char *outbound_state_str(enum outbound_state s);

enum outbound_action {
    OUTBOUND_ACT_START_TLS = 1u << 0, /* TLS client handshake on the server leg */
    OUTBOUND_ACT_RECONNECT = 1u << 1, /* drop the server leg, dial again */
    OUTBOUND_ACT_CLOSE = 1u << 2,     /* flush to the client, close both */
};

/* What TLS achieved, for the log (RFC 7435 §3 keeps these distinct). */
enum outbound_tls_result {
    OUTBOUND_TLS_NONE,       /* plaintext */
    OUTBOUND_TLS_ENCRYPTED,  /* TLS, certificate not verified */
    OUTBOUND_TLS_VERIFIED,   /* TLS, chain and name verified */
};

struct outbound {
    struct outbound_cfg cfg;
    struct inbound_io io;
    enum outbound_state state;
    struct inbound relay;
    bool client_helo;      /* the client said HELO, not EHLO */
    bool tls_tried;        /* no second STARTTLS after a fallback */
    bool server_tls;
    unsigned caps;
    char domain[256];      /* the client's EHLO argument */
    const char *tls_note;  /* why TLS is not in use (static), or NULL */
    unsigned actions;
    const char *reason;
    uint64_t progress;
};

void outbound_init(struct outbound *o, const struct outbound_cfg *cfg,
                   const struct inbound_io *io);

/* As inbound_client/inbound_server. */
size_t outbound_client(struct outbound *o, const uint8_t *p, size_t n);
size_t outbound_server(struct outbound *o, const uint8_t *p, size_t n);
void outbound_server_eof(struct outbound *o);

/* The server leg's TLS handshake completed (and, under VERIFY, the
 * certificate was accepted). */
void outbound_tls_ready(struct outbound *o);
/* It failed, or the STARTTLS reply never came; why is a static or
 * session-lived string for the log. */
void outbound_tls_failed(struct outbound *o, const char *why);
/* After OUTBOUND_ACT_RECONNECT: the new plaintext connection is up. */
void outbound_reconnected(struct outbound *o);

void outbound_abort(struct outbound *o, const char *reply, const char *reason);
bool outbound_awaiting_server(const struct outbound *o);
unsigned outbound_take_actions(struct outbound *o);
/* Lines, chunks and replies seen so far (for per-command deadlines). */
uint64_t outbound_progress(const struct outbound *o);

#endif
