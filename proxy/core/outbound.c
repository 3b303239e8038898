/*
 * The outbound negotiation engine; see outbound.h. RFC 3207 (STARTTLS),
 * RFC 7435 (opportunistic security), RFC 5321 §4.1.4 (HELO fallback).
 */
#include "proxy/core/outbound.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char R_NO_STARTTLS[] =
    "421 4.7.5 TLS required by policy, but the destination does not offer STARTTLS\r\n";
static const char R_TLS_FAILED[] =
    "421 4.7.5 TLS required by policy, but STARTTLS with the destination failed\r\n";
static const char R_CERT[] =
    "421 4.7.5 TLS required by policy, but the destination's certificate did not verify\r\n";
static const char R_GREETING[] =
    "421 4.7.5 TLS required by policy, but the destination refused the session\r\n";
/* DANE (RFC 7672 §2.2): TLSA records under DNSSEC make TLS and a matching
 * certificate mandatory; the replies say so, so that the sender's operator
 * knows where to look. */
static const char R_DANE_NO_STARTTLS[] =
    "421 4.7.5 STARTTLS not offered by the destination, which publishes DANE TLSA records\r\n";
static const char R_DANE_TLS_FAILED[] =
    "421 4.7.5 TLS with the destination failed, and its DANE TLSA records require it\r\n";
static const char R_DANE_CERT[] = "421 4.7.5 DANE authentication of the destination failed\r\n";
static const char R_EHLO_FIRST[] = "503 5.5.1 Send EHLO first\r\n";
static const char R_NOOP[] = "250 2.0.0 OK\r\n";
static const char R_BYE[] = "221 2.0.0 Bye\r\n";
static const char R_LOST[] = "421 4.4.2 Destination connection lost\r\n";
static const char R_PROTOCOL[] = "421 4.5.0 Destination protocol error, closing connection\r\n";
static const char R_FALLBACK_FAILED[] =
    "421 4.4.2 Destination unavailable after TLS fallback, try again later\r\n";
static const char R_DEST_TIMEOUT[] = "421 4.4.2 Destination timeout, closing connection\r\n";

static const char *const state_names[] = {
    [OUTBOUND_GREETING] = "GREETING",       [OUTBOUND_CLIENT_EHLO] = "CLIENT_EHLO",
    [OUTBOUND_EHLO] = "EHLO",               [OUTBOUND_HELO] = "HELO",
    [OUTBOUND_STARTTLS] = "STARTTLS",       [OUTBOUND_HANDSHAKE] = "HANDSHAKE",
    [OUTBOUND_EHLO_TLS] = "EHLO_TLS",       [OUTBOUND_RECONNECT] = "RECONNECT",
    [OUTBOUND_RE_GREETING] = "RE_GREETING", [OUTBOUND_RE_EHLO] = "RE_EHLO",
    [OUTBOUND_RELAY] = "RELAY",             [OUTBOUND_REFUSED] = "REFUSED",
    [OUTBOUND_CLOSED] = "CLOSED",
};

const char *outbound_state_str(enum outbound_state s)
{
    return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

static void enter_state(struct outbound *o, enum outbound_state s)
{
    /* CLOSED is final: nothing may revive a session being torn down. */
    if (o->state == OUTBOUND_CLOSED || o->state == s)
        return;
    enum outbound_state from = o->state;
    o->state = s;
    if (o->io.on_state != NULL)
        o->io.on_state(o->io.arg, "outbound", outbound_state_str(from), outbound_state_str(s));
}

static void to_client(struct outbound *o, const void *p, size_t n)
{
    o->io.to_client(o->io.arg, p, n);
}

static void to_client_str(struct outbound *o, const char *s)
{
    to_client(o, s, strlen(s));
}

static void to_server(struct outbound *o, const void *p, size_t n)
{
    o->io.to_server(o->io.arg, p, n);
}

static void close_with(struct outbound *o, const char *reply, enum reason reason)
{
    if (o->state == OUTBOUND_CLOSED)
        return;
    if (reply != NULL)
        to_client_str(o, reply);
    if (o->state == OUTBOUND_RELAY)
        relay_close(&o->relay, NULL, reason); /* nothing more from it either */
    enter_state(o, OUTBOUND_CLOSED);
    o->actions |= ENGINE_ACT_CLOSE;
    o->reason = reason;
}

/* After every call into the relay: its close is the session's. */
static void follow(struct outbound *o)
{
    if (o->state == OUTBOUND_RELAY && o->relay.state == RELAY_CLOSED)
        close_with(o, NULL, o->relay.reason);
}

void outbound_init(struct outbound *o, const struct outbound_cfg *cfg,
                   const struct engine_io *io)
{
    memset(o, 0, sizeof(*o));
    o->cfg = *cfg;
    o->io = *io;
    o->state = OUTBOUND_GREETING;
}

static void send_ehlo(struct outbound *o, const char *verb)
{
    char line[300];
    int n = snprintf(line, sizeof(line), "%s%s%s\r\n", verb, o->domain[0] ? " " : "",
                     o->domain);
    to_server(o, line, (size_t)n);
}

/* TLS could not be had although it was offered or required. */
static void tls_failed(struct outbound *o, enum engine_tls_failure kind, const char *detail)
{
    o->tls_note = detail;
    if (o->cfg.policy == OUTBOUND_OPPORTUNISTIC) {
        /* The destination's state after a failed STARTTLS is unknown:
         * start over on a new connection, in plaintext. The client has
         * seen only the greeting so far and notices nothing. */
        o->tls_tried = true;
        enter_state(o, OUTBOUND_RECONNECT);
        o->actions |= ENGINE_ACT_RECONNECT;
        return;
    }
    bool cert = kind == ENGINE_TLS_CERTIFICATE;
    if (o->cfg.policy == OUTBOUND_DANE)
        close_with(o, cert ? R_DANE_CERT : R_DANE_TLS_FAILED, REASON_POLICY_REFUSAL);
    else
        close_with(o, cert && o->cfg.policy == OUTBOUND_VERIFY ? R_CERT : R_TLS_FAILED,
                   REASON_POLICY_REFUSAL);
}

static bool strict(const struct outbound *o)
{
    return o->cfg.policy == OUTBOUND_REQUIRED || o->cfg.policy == OUTBOUND_VERIFY ||
           o->cfg.policy == OUTBOUND_DANE;
}

static const char *no_starttls_reply(const struct outbound *o)
{
    return o->cfg.policy == OUTBOUND_DANE ? R_DANE_NO_STARTTLS : R_NO_STARTTLS;
}

static void start_relay(struct outbound *o)
{
    struct relay_cfg cfg = {
        .tls = o->server_tls,
        .reject_bare_newline = o->cfg.reject_bare_newline,
        .caps = o->caps,
        .max_line = o->cfg.max_line,
        .ehlo = o->cfg.ehlo,
    };
    /* DANE without enforcement: this is where the refusal would have
     * been (every strict refusal happens before the relay starts). */
    if (o->cfg.dane_audit && !o->server_tls && o->io.on_refusal_logged != NULL)
        o->io.on_refusal_logged(o->io.arg, o->tls_note ? o->tls_note : "no TLS");
    /* The relay refuses STARTTLS (the proxy owns the server leg's TLS) and
     * relays AUTH only when that leg is encrypted. Hooks only when the
     * session decides per recipient. */
    relay_init(&o->relay, &cfg, &o->io, o->cfg.hooks);
    enter_state(o, OUTBOUND_RELAY);
}

void outbound_rcpt_resume(struct outbound *o, const char *reply)
{
    if (o->state == OUTBOUND_RELAY)
        relay_rcpt_resume(&o->relay, reply);
}

/* Hands the client its EHLO (or HELO) reply and starts relaying. */
static void finish_ehlo(struct outbound *o, const uint8_t *r, size_t len)
{
    uint8_t out[SMTP_REPLY_MAX + 64];
    size_t outlen;
    struct smtp_ehlo_policy pol;

    relay_ehlo_policy(o->cfg.ehlo, &o->io, &pol);
    int caps = smtp_ehlo_rewrite_ex(r, len, o->server_tls ? SMTP_EHLO_TLS_ACTIVE : 0, &pol, out,
                                    sizeof(out), &outlen);
    if (caps < 0) {
        close_with(o, R_PROTOCOL, REASON_PROTOCOL_ERROR);
        return;
    }
    o->caps = (unsigned)caps;
    if (o->client_helo) {
        /* A HELO client gets a HELO reply: the domain line alone. */
        size_t eol = 0;
        while (eol < len && r[eol] != '\r')
            eol++;
        to_client(o, "250 ", 4);
        if (eol > 4) /* "250\r\n" has no domain: write nothing for it */
            to_client(o, r + 4, eol - 4);
        to_client(o, "\r\n", 2);
        o->caps = 0; /* no extensions for a HELO session */
    } else {
        to_client(o, out, outlen);
    }
    start_relay(o);
}

/* A refused EHLO (and no HELO to fall back to): TLS is impossible. */
static void ehlo_refused(struct outbound *o, const uint8_t *r, size_t len)
{
    o->tls_note = "EHLO refused";
    if (strict(o)) {
        close_with(o, no_starttls_reply(o), REASON_POLICY_REFUSAL);
        return;
    }
    to_client(o, r, len);
    start_relay(o);
}

static void reply(struct outbound *o, const uint8_t *r, size_t len, int code, bool more)
{
    bool ok = code / 100 == 2;

    o->progress++;
    switch (o->state) {
    case OUTBOUND_GREETING:
        to_client(o, r, len);
        if (code == 220) {
            enter_state(o, OUTBOUND_CLIENT_EHLO);
        } else if (code == 421) {
            close_with(o, NULL, REASON_DESTINATION_CLOSED);
        } else if (strict(o)) {
            /* Relaying would send the mail in plaintext: anyone able to
             * rewrite the greeting could downgrade the policy. */
            o->tls_note = "destination refused the session";
            enter_state(o, OUTBOUND_REFUSED);
        } else {
            start_relay(o); /* a refusing server: let the client hear it out */
        }
        return;
    case OUTBOUND_EHLO:
        if (!ok) {
            if (o->client_helo) {
                send_ehlo(o, "HELO");
                enter_state(o, OUTBOUND_HELO);
            } else {
                ehlo_refused(o, r, len);
            }
            return;
        }
        int caps = smtp_ehlo_rewrite(r, len, 0, NULL, 0, NULL);
        if (caps < 0) {
            close_with(o, R_PROTOCOL, REASON_PROTOCOL_ERROR);
            return;
        }
        if ((caps & SMTP_CAP_STARTTLS) && o->cfg.policy != OUTBOUND_NONE && !o->tls_tried) {
            to_server(o, "STARTTLS\r\n", 10);
            enter_state(o, OUTBOUND_STARTTLS);
            return;
        }
        if (strict(o)) {
            o->tls_note = "STARTTLS not offered";
            close_with(o, no_starttls_reply(o), REASON_POLICY_REFUSAL);
            return;
        }
        if (o->tls_note == NULL)
            o->tls_note = o->cfg.policy == OUTBOUND_NONE ? "policy none" : "STARTTLS not offered";
        finish_ehlo(o, r, len);
        return;
    case OUTBOUND_HELO:
        ehlo_refused(o, r, len);
        return;
    case OUTBOUND_STARTTLS:
        if (code != 220) {
            tls_failed(o, ENGINE_TLS_HANDSHAKE, "STARTTLS refused");
            return;
        }
        if (more) {
            /* Anything behind the 220 was sent before the handshake and
             * would be read as if it came over TLS (response injection,
             * CVE-2021-38371): a protocol violation, never a reply. */
            tls_failed(o, ENGINE_TLS_HANDSHAKE, "data after the 220 reply to STARTTLS");
            return;
        }
        enter_state(o, OUTBOUND_HANDSHAKE);
        o->actions |= ENGINE_ACT_START_TLS_SERVER;
        return;
    case OUTBOUND_EHLO_TLS:
        if (!ok) {
            tls_failed(o, ENGINE_TLS_HANDSHAKE, "EHLO refused after STARTTLS");
            return;
        }
        finish_ehlo(o, r, len);
        return;
    case OUTBOUND_RE_GREETING:
        if (code != 220) {
            close_with(o, R_FALLBACK_FAILED, REASON_DESTINATION_REFUSED);
            return;
        }
        send_ehlo(o, "EHLO");
        enter_state(o, OUTBOUND_RE_EHLO);
        return;
    case OUTBOUND_RE_EHLO:
        if (!ok) {
            if (o->client_helo) {
                send_ehlo(o, "HELO");
                enter_state(o, OUTBOUND_HELO);
            } else {
                to_client(o, r, len);
                start_relay(o);
            }
            return;
        }
        finish_ehlo(o, r, len);
        return;
    case OUTBOUND_CLIENT_EHLO:
    case OUTBOUND_HANDSHAKE:
    case OUTBOUND_RECONNECT:
    case OUTBOUND_REFUSED:
        /* Nothing was asked: a reply now answers no command. */
        close_with(o, R_PROTOCOL, REASON_PROTOCOL_ERROR);
        return;
    case OUTBOUND_RELAY:
    case OUTBOUND_CLOSED:
        return;
    }
}

static size_t op_server(void *v, const uint8_t *p, size_t n)
{
    struct outbound *o = v;
    size_t off = 0;

    while (off < n) {
        if (o->state == OUTBOUND_RELAY) {
            off += relay_server(&o->relay, p + off, n - off);
            follow(o);
            break;
        }
        if (o->state == OUTBOUND_CLOSED || o->state == OUTBOUND_RECONNECT)
            return n;
        size_t k;
        int code;
        int rc = smtp_reply(p + off, n - off, &k, &code);
        if (rc == SMTP_AGAIN)
            return off;
        if (rc != SMTP_OK) {
            if (o->state == OUTBOUND_STARTTLS)
                tls_failed(o, ENGINE_TLS_HANDSHAKE, "malformed reply to STARTTLS");
            else
                close_with(o, R_PROTOCOL, REASON_PROTOCOL_ERROR);
            return n;
        }
        reply(o, p + off, k, code, off + k < n);
        off += k;
        if (o->state == OUTBOUND_HANDSHAKE || o->state == OUTBOUND_RECONNECT)
            return n;
    }
    return off;
}

/* ---- the client's commands before the relay runs ---- */

#define IN(s) (1u << (s))

static size_t cmd_ehlo(struct outbound *o, const uint8_t *line, size_t len, size_t arg,
                       enum smtp_verb verb)
{
    size_t dlen = len - 2 > arg ? len - 2 - arg : 0;

    if (dlen >= sizeof(o->domain))
        dlen = sizeof(o->domain) - 1;
    /* Odd arguments are the destination's to judge, as sent. */
    memcpy(o->domain, line + arg, dlen);
    o->domain[dlen] = '\0';
    o->client_helo = verb == SMTP_VERB_HELO;
    /* Always EHLO: only an EHLO reply can offer STARTTLS. */
    send_ehlo(o, "EHLO");
    enter_state(o, OUTBOUND_EHLO);
    return len;
}

static size_t cmd_quit(struct outbound *o, const uint8_t *line, size_t len, size_t arg,
                       enum smtp_verb verb)
{
    (void)line, (void)len, (void)arg, (void)verb;
    close_with(o, R_BYE, REASON_QUIT);
    return SIZE_MAX; /* everything: nothing more is read */
}

static size_t cmd_noop(struct outbound *o, const uint8_t *line, size_t len, size_t arg,
                       enum smtp_verb verb)
{
    (void)line, (void)arg, (void)verb;
    to_client_str(o, R_NOOP);
    return len;
}

static const struct verb_rule {
    enum smtp_verb verb;
    unsigned states; /* IN(OUTBOUND_*) in which it is answered */
    /* Returns the bytes used, SIZE_MAX for all that was given. */
    size_t (*handler)(struct outbound *o, const uint8_t *line, size_t len, size_t arg,
                      enum smtp_verb verb);
} verbs[] = {
    {SMTP_VERB_EHLO, IN(OUTBOUND_CLIENT_EHLO), cmd_ehlo},
    {SMTP_VERB_HELO, IN(OUTBOUND_CLIENT_EHLO), cmd_ehlo},
    {SMTP_VERB_QUIT, IN(OUTBOUND_CLIENT_EHLO) | IN(OUTBOUND_REFUSED), cmd_quit},
    {SMTP_VERB_NOOP, IN(OUTBOUND_CLIENT_EHLO), cmd_noop},
};

/* A command no entry answers in this state. */
static size_t cmd_other(struct outbound *o, size_t len)
{
    if (o->state == OUTBOUND_REFUSED) {
        close_with(o, R_GREETING, REASON_POLICY_REFUSAL);
        return SIZE_MAX;
    }
    to_client_str(o, R_EHLO_FIRST);
    return len;
}

/* One command line before the relay runs (the client's EHLO, or anything
 * after a refused greeting). Returns the bytes used: 0 for an incomplete
 * line, SIZE_MAX for everything. */
static size_t client_command(struct outbound *o, const uint8_t *p, size_t n)
{
    size_t k, arg;
    int rc = smtp_line(p, n, o->cfg.max_line ? o->cfg.max_line : SMTP_CMD_LINE_MAX, &k);

    if (rc == SMTP_AGAIN)
        return 0;
    if (rc != SMTP_OK && o->state == OUTBOUND_REFUSED)
        return cmd_other(o, k);
    if (rc == SMTP_ERR_TOO_LONG) {
        /* Nothing is pending yet, so the reply can go out at once; the
         * tail of the line is then read as garbage and refused too. */
        to_client_str(o, SMTP_R_TOO_LONG);
        return SIZE_MAX;
    }
    if (rc == SMTP_ERR_BARE_NL) {
        to_client_str(o, SMTP_R_BARE_NL);
        return k;
    }
    if (o->state == OUTBOUND_CLIENT_EHLO)
        o->progress++;
    enum smtp_verb verb = smtp_verb(p, k, &arg);
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (verbs[i].verb == verb && (verbs[i].states & IN(o->state)))
            return verbs[i].handler(o, p, k, arg, verb);
    }
    return cmd_other(o, k);
}

static size_t op_client(void *v, const uint8_t *p, size_t n)
{
    struct outbound *o = v;
    size_t off = 0;

    while (off < n) {
        switch (o->state) {
        case OUTBOUND_RELAY: {
            off += relay_client(&o->relay, p + off, n - off);
            follow(o);
            return o->state == OUTBOUND_CLOSED ? n : off;
        }
        case OUTBOUND_CLIENT_EHLO:
        case OUTBOUND_REFUSED: {
            size_t k = client_command(o, p + off, n - off);
            if (k == 0)
                return off;
            if (k == SIZE_MAX)
                return n;
            off += k;
            break;
        }
        case OUTBOUND_CLOSED:
            return n;
        default:
            /* Negotiating: what the client sends ahead waits. */
            return off;
        }
    }
    return off;
}

/* ---- the other engine operations ---- */

static void op_server_eof(void *v)
{
    struct outbound *o = v;

    switch (o->state) {
    case OUTBOUND_RELAY:
        relay_server_eof(&o->relay);
        follow(o);
        return;
    case OUTBOUND_STARTTLS:
    case OUTBOUND_HANDSHAKE:
    case OUTBOUND_EHLO_TLS:
        tls_failed(o, ENGINE_TLS_HANDSHAKE, "connection closed during STARTTLS");
        return;
    case OUTBOUND_RECONNECT:
        return;
    default:
        close_with(o, R_LOST, REASON_DESTINATION_CLOSED);
        return;
    }
}

static void op_tls_ready(void *v)
{
    struct outbound *o = v;

    if (o->state != OUTBOUND_HANDSHAKE)
        return;
    /* RFC 3207 §4.2: forget what the plaintext EHLO said; ask again. */
    o->server_tls = true;
    o->tls_note = NULL;
    o->caps = 0;
    send_ehlo(o, "EHLO");
    enter_state(o, OUTBOUND_EHLO_TLS);
}

static void op_tls_failed(void *v, enum engine_tls_failure kind, const char *detail)
{
    struct outbound *o = v;

    if (o->state == OUTBOUND_STARTTLS || o->state == OUTBOUND_HANDSHAKE ||
        o->state == OUTBOUND_EHLO_TLS)
        tls_failed(o, kind, detail);
    else
        close_with(o, R_LOST, kind == ENGINE_TLS_TIMEOUT ? REASON_TLS_TIMEOUT : REASON_TLS_FAILED);
}

static void op_reconnected(void *v)
{
    struct outbound *o = v;

    if (o->state == OUTBOUND_RECONNECT)
        enter_state(o, OUTBOUND_RE_GREETING);
}

static bool op_awaiting_server(const void *v)
{
    const struct outbound *o = v;

    switch (o->state) {
    case OUTBOUND_RELAY:
        return relay_awaiting_server(&o->relay);
    case OUTBOUND_CLIENT_EHLO:
    case OUTBOUND_REFUSED:
    case OUTBOUND_CLOSED:
        return false;
    default:
        return true;
    }
}

static bool op_in_content(const void *v)
{
    const struct outbound *o = v;

    return o->state == OUTBOUND_RELAY && relay_in_content(&o->relay);
}

static void op_deadline(void *v)
{
    struct outbound *o = v;

    if (o->state == OUTBOUND_STARTTLS)
        /* No answer to STARTTLS is a failed STARTTLS: policy decides. */
        tls_failed(o, ENGINE_TLS_NO_REPLY, "no reply to STARTTLS");
    else if (o->state == OUTBOUND_HANDSHAKE)
        tls_failed(o, ENGINE_TLS_TIMEOUT, "handshake timeout");
    else if (op_awaiting_server(o))
        close_with(o, R_DEST_TIMEOUT, REASON_BACKEND_TIMEOUT);
    else
        close_with(o, RELAY_R_IDLE, REASON_TIMEOUT);
}

static void op_abort(void *v, const char *reply_text, enum reason reason)
{
    close_with(v, reply_text, reason);
}

static uint64_t op_progress(const void *v)
{
    const struct outbound *o = v;

    return o->progress + o->relay.progress;
}

static enum reason op_reason(const void *v)
{
    return ((const struct outbound *)v)->reason;
}

static unsigned op_take_actions(void *v)
{
    struct outbound *o = v;
    unsigned a = o->actions;

    o->actions = 0;
    return a;
}

const struct engine_ops outbound_engine_ops = {
    .name = "outbound",
    .client = op_client,
    .server = op_server,
    .server_eof = op_server_eof,
    .tls_ready = op_tls_ready,
    .tls_failed = op_tls_failed,
    .reconnected = op_reconnected,
    .deadline = op_deadline,
    .abort = op_abort,
    .awaiting_server = op_awaiting_server,
    .in_content = op_in_content,
    .progress = op_progress,
    .reason = op_reason,
    .take_actions = op_take_actions,
};
