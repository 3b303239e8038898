/*
 * outbound: the negotiation engine of an outbound session (legacy client ->
 * proxy -> destination MTA). Pure, like inbound: bytes in, emitted bytes
 * and actions out; the session drives it through outbound_engine_ops
 * (engine.h), whose functions take a struct outbound *.
 *
 * It owns the negotiation: the destination's greeting passes through; the
 * client's EHLO (or HELO, sent on as EHLO so STARTTLS can be seen) goes to
 * the destination; if STARTTLS is offered and policy allows, the proxy
 * upgrades the connection itself, repeats the EHLO over TLS and hands the
 * client that reply minus STARTTLS. Once the client has its EHLO reply,
 * everything is the relay engine's (relay.h: command FIFO, DATA/BDAT
 * tracking, bare CR/LF normalisation, AUTH only when the server leg is TLS).
 *
 * Policy (RFC 7435 terms): NONE never tries TLS; OPPORTUNISTIC tries and,
 * when STARTTLS fails after being offered, asks for a fresh plaintext
 * connection (RECONNECT) on which it does not try again; REQUIRED and
 * VERIFY refuse with "421 4.7.5 ..." instead of sending anything of the
 * mail in plaintext. Certificate checking for VERIFY is the TLS layer's
 * job; a failed check arrives as tls_failed(ENGINE_TLS_CERTIFICATE), which
 * under VERIFY gets its own reply. DANE is strict too, with replies that
 * name DANE (a failed certificate check is a failed DANE match there).
 */
#ifndef SMTP_TLS_PROXY_OUTBOUND_H
#define SMTP_TLS_PROXY_OUTBOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/core/engine.h"
#include "proxy/core/reason.h"
#include "proxy/core/relay.h"
#include "proxy/core/smtp.h"

enum outbound_policy {
    OUTBOUND_NONE,
    OUTBOUND_OPPORTUNISTIC,
    OUTBOUND_REQUIRED,
    OUTBOUND_VERIFY,
    /* RFC 7672: the destination publishes usable TLSA records under DNSSEC.
     * Strict like VERIFY, with replies of its own; never a configured value
     * (the session chooses it after the TLSA lookup), and the TLS layer
     * authenticates by DANE instead of PKIX. */
    OUTBOUND_DANE,
};

struct outbound_cfg {
    enum outbound_policy policy;
    bool reject_bare_newline;
    size_t max_line;          /* longest command line (0: SMTP_CMD_LINE_MAX) */
    const struct smtp_ehlo_policy *ehlo; /* ehlo_keywords (borrowed), or NULL */
    /* DANE applies but is not enforced (enforce = false): policy is the
     * configured one, and where OUTBOUND_DANE would have refused (the relay
     * starts without TLS), io.on_refusal_logged says why instead. */
    bool dane_audit;
    /* Optional (borrowed, must outlive o): the relay's hooks, for
     * per-recipient decisions of a transparent session (hooks.rcpt; a
     * command hook must not take STARTTLS); NULL: the relay runs with no
     * hooks. */
    const struct relay_hooks *hooks;
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

/* What TLS achieved, for the log (RFC 7435 §3 keeps these distinct). */
enum outbound_tls_result {
    OUTBOUND_TLS_NONE,       /* plaintext */
    OUTBOUND_TLS_ENCRYPTED,  /* TLS, certificate not verified */
    OUTBOUND_TLS_VERIFIED,   /* TLS, chain and name verified */
};

/* The session may read the fields marked (ro), and set cfg.policy before
 * the destination's greeting arrives; the rest is private. */
struct outbound {
    struct outbound_cfg cfg;
    struct engine_io io;
    enum outbound_state state; /* (ro) */
    struct relay relay;        /* (ro) the relay phase, from OUTBOUND_RELAY on */
    bool client_helo;          /* the client said HELO, not EHLO */
    bool tls_tried;            /* no second STARTTLS after a fallback */
    bool server_tls;           /* (ro) the server leg is encrypted */
    unsigned caps;             /* (ro) SMTP_CAP_* of the EHLO reply the client got */
    char domain[256];          /* the client's EHLO argument */
    const char *tls_note;      /* (ro) why TLS is not in use (static or the
                                  detail given to tls_failed), or NULL */
    unsigned actions;          /* ENGINE_ACT_*, taken by take_actions */
    enum reason reason;        /* (ro) why it closed; REASON_NONE while it runs */
    uint64_t progress;         /* replies and lines of the negotiation */
};

/* Sets up o for a new session; the destination's greeting is awaited.
 * cfg and io are copied. */
void outbound_init(struct outbound *o, const struct outbound_cfg *cfg,
                   const struct engine_io *io);

/* The engine operations; o is a struct outbound *. tls_failed: during
 * STARTTLS, the handshake or the EHLO over TLS, policy decides (RECONNECT
 * under opportunistic, a 421 4.7.5 refusal under required and verify, the
 * certificate's own reply for ENGINE_TLS_CERTIFICATE under verify and
 * dane, DANE's own replies under dane); at any
 * other time the session is closed with "421 4.4.2 Destination connection
 * lost". deadline: waiting for the STARTTLS reply it is
 * tls_failed(ENGINE_TLS_NO_REPLY), in the handshake
 * tls_failed(ENGINE_TLS_TIMEOUT); with a reply owed "421 4.4.2 Destination
 * timeout" (REASON_BACKEND_TIMEOUT); else "421 4.4.2 Idle timeout exceeded"
 * (REASON_TIMEOUT). */
extern const struct engine_ops outbound_engine_ops;

/* relay_rcpt_resume() on the relay, while it runs; nothing otherwise. The
 * caller then offers the client's unread bytes again. */
void outbound_rcpt_resume(struct outbound *o, const char *reply);

#endif
