/*
 * The outbound negotiation engine; see outbound.h. RFC 3207 (STARTTLS),
 * RFC 7435 (opportunistic security), RFC 5321 §4.1.4 (HELO fallback).
 */
#include "proxy/core/outbound.h"

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
static const char R_EHLO_FIRST[] = "503 5.5.1 Send EHLO first\r\n";
static const char R_NOOP[] = "250 2.0.0 OK\r\n";
static const char R_BYE[] = "221 2.0.0 Bye\r\n";
static const char R_LOST[] = "421 4.4.2 Destination connection lost\r\n";
static const char R_PROTOCOL[] = "421 4.5.0 Destination protocol error, closing connection\r\n";
static const char R_FALLBACK_FAILED[] =
    "421 4.4.2 Destination unavailable after TLS fallback, try again later\r\n";

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
    if (o->state != OUTBOUND_CLOSED)
        o->state = s;
}

static void to_client(struct outbound *o, const void *p, size_t n)
{
    o->io.to_client(o->io.arg, p, n);
}

static void to_server(struct outbound *o, const void *p, size_t n)
{
    o->io.to_server(o->io.arg, p, n);
}

static void close_with(struct outbound *o, const char *reply, const char *reason)
{
    if (o->state == OUTBOUND_CLOSED)
        return;
    if (o->state == OUTBOUND_RELAY) {
        inbound_abort(&o->relay, reply, reason);
    } else if (reply != NULL) {
        to_client(o, reply, strlen(reply));
    }
    o->state = OUTBOUND_CLOSED;
    o->actions |= OUTBOUND_ACT_CLOSE;
    o->reason = reason;
}

void outbound_init(struct outbound *o, const struct outbound_cfg *cfg,
                   const struct inbound_io *io)
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
static void tls_failed(struct outbound *o, const char *why)
{
    o->tls_note = why;
    if (o->cfg.policy == OUTBOUND_OPPORTUNISTIC) {
        /* The destination's state after a failed STARTTLS is unknown:
         * start over on a new connection, in plaintext. The client has
         * seen only the greeting so far and notices nothing. */
        o->tls_tried = true;
        enter_state(o, OUTBOUND_RECONNECT);
        o->actions |= OUTBOUND_ACT_RECONNECT;
        return;
    }
    bool cert = o->cfg.policy == OUTBOUND_VERIFY && strncmp(why, "certificate", 11) == 0;
    close_with(o, cert ? R_CERT : R_TLS_FAILED, "policy_refusal");
}

static void start_relay(struct outbound *o)
{
    struct inbound_cfg cfg = {
        .relay_only = true,
        .reject_bare_newline = o->cfg.reject_bare_newline,
    };
    inbound_init_relay(&o->relay, &cfg, &o->io, o->server_tls, o->caps);
    enter_state(o, OUTBOUND_RELAY);
}

/* Hands the client its EHLO (or HELO) reply and starts relaying. */
static void finish_ehlo(struct outbound *o, const uint8_t *r, size_t len)
{
    uint8_t out[SMTP_REPLY_MAX + 64];
    size_t outlen;

    int caps = smtp_ehlo_rewrite(r, len, o->server_tls ? SMTP_EHLO_TLS_ACTIVE : 0, out,
                                 sizeof(out), &outlen);
    if (caps < 0) {
        close_with(o, R_PROTOCOL, "protocol_error");
        return;
    }
    o->caps = (unsigned)caps;
    if (o->client_helo) {
        /* A HELO client gets a HELO reply: the domain line alone. */
        size_t eol = 0;
        while (eol < len && r[eol] != '\r')
            eol++;
        to_client(o, "250 ", 4);
        to_client(o, r + 4, eol > 4 ? eol - 4 : 0);
        to_client(o, "\r\n", 2);
        o->caps = 0; /* no extensions for a HELO session */
    } else {
        to_client(o, out, outlen);
    }
    start_relay(o);
}

static void reply(struct outbound *o, const uint8_t *r, size_t len, int code, bool more)
{
    bool ok = code / 100 == 2;
    bool strict = o->cfg.policy == OUTBOUND_REQUIRED || o->cfg.policy == OUTBOUND_VERIFY;

    o->progress++;
    switch (o->state) {
    case OUTBOUND_GREETING:
        to_client(o, r, len);
        if (code == 220) {
            enter_state(o, OUTBOUND_CLIENT_EHLO);
        } else if (code == 421) {
            close_with(o, NULL, "destination_closed");
        } else if (strict) {
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
            } else if (strict) {
                o->tls_note = "EHLO refused";
                close_with(o, R_NO_STARTTLS, "policy_refusal");
            } else {
                o->tls_note = "EHLO refused";
                to_client(o, r, len);
                start_relay(o);
            }
            return;
        }
        int caps = smtp_ehlo_rewrite(r, len, 0, NULL, 0, NULL);
        if (caps < 0) {
            close_with(o, R_PROTOCOL, "protocol_error");
            return;
        }
        if ((caps & SMTP_CAP_STARTTLS) && o->cfg.policy != OUTBOUND_NONE && !o->tls_tried) {
            to_server(o, "STARTTLS\r\n", 10);
            enter_state(o, OUTBOUND_STARTTLS);
            return;
        }
        if (strict) {
            o->tls_note = "STARTTLS not offered";
            close_with(o, R_NO_STARTTLS, "policy_refusal");
            return;
        }
        if (o->tls_note == NULL)
            o->tls_note = o->cfg.policy == OUTBOUND_NONE ? "policy none" : "STARTTLS not offered";
        finish_ehlo(o, r, len);
        return;
    case OUTBOUND_HELO:
        if (strict) {
            o->tls_note = "EHLO refused";
            close_with(o, R_NO_STARTTLS, "policy_refusal");
            return;
        }
        o->tls_note = "EHLO refused";
        to_client(o, r, len);
        start_relay(o);
        return;
    case OUTBOUND_STARTTLS:
        if (code != 220) {
            tls_failed(o, "STARTTLS refused");
            return;
        }
        if (more) {
            /* Anything behind the 220 was sent before the handshake and
             * would be read as if it came over TLS (response injection,
             * CVE-2021-38371): a protocol violation, never a reply. */
            tls_failed(o, "data after the 220 reply to STARTTLS");
            return;
        }
        enter_state(o, OUTBOUND_HANDSHAKE);
        o->actions |= OUTBOUND_ACT_START_TLS;
        return;
    case OUTBOUND_EHLO_TLS:
        if (!ok) {
            tls_failed(o, "EHLO refused after STARTTLS");
            return;
        }
        finish_ehlo(o, r, len);
        return;
    case OUTBOUND_RE_GREETING:
        if (code != 220) {
            close_with(o, R_FALLBACK_FAILED, "destination_refused");
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
        close_with(o, R_PROTOCOL, "protocol_error");
        return;
    case OUTBOUND_RELAY:
    case OUTBOUND_CLOSED:
        return;
    }
}

size_t outbound_server(struct outbound *o, const uint8_t *p, size_t n)
{
    size_t off = 0;

    while (off < n) {
        if (o->state == OUTBOUND_RELAY) {
            off += inbound_server(&o->relay, p + off, n - off);
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
                tls_failed(o, "malformed reply to STARTTLS");
            else
                close_with(o, R_PROTOCOL, "protocol_error");
            return n;
        }
        reply(o, p + off, k, code, off + k < n);
        off += k;
        if (o->state == OUTBOUND_HANDSHAKE || o->state == OUTBOUND_RECONNECT)
            return n;
    }
    return off;
}

/* The client's first command, before the destination has been greeted. */
static size_t client_first(struct outbound *o, const uint8_t *p, size_t n)
{
    size_t k, arg;
    int rc = smtp_line(p, n, SMTP_CMD_LINE_MAX, &k);

    if (rc == SMTP_AGAIN)
        return 0;
    if (rc == SMTP_ERR_TOO_LONG) {
        /* Nothing is pending yet, so the reply can go out at once; the
         * tail of the line is then read as garbage and refused too. */
        to_client(o, SMTP_R_TOO_LONG, strlen(SMTP_R_TOO_LONG));
        return n;
    }
    if (rc == SMTP_ERR_BARE_NL) {
        to_client(o, SMTP_R_BARE_NL, strlen(SMTP_R_BARE_NL));
        return k;
    }
    o->progress++;
    enum smtp_verb verb = smtp_verb(p, k, &arg);
    switch (verb) {
    case SMTP_VERB_EHLO:
    case SMTP_VERB_HELO: {
        size_t dlen = k - 2 > arg ? k - 2 - arg : 0;
        if (dlen >= sizeof(o->domain))
            dlen = sizeof(o->domain) - 1;
        memcpy(o->domain, p + arg, dlen);
        o->domain[dlen] = '\0';
        if (dlen == 0 || strpbrk(o->domain, " \t") != NULL) {
            /* Let the destination judge odd arguments, as sent. */
        }
        o->client_helo = verb == SMTP_VERB_HELO;
        /* Always EHLO: only an EHLO reply can offer STARTTLS. */
        send_ehlo(o, "EHLO");
        enter_state(o, OUTBOUND_EHLO);
        return k;
    }
    case SMTP_VERB_QUIT:
        close_with(o, R_BYE, "quit");
        return n;
    case SMTP_VERB_NOOP:
        to_client(o, R_NOOP, sizeof(R_NOOP) - 1);
        return k;
    default:
        to_client(o, R_EHLO_FIRST, sizeof(R_EHLO_FIRST) - 1);
        return k;
    }
}

size_t outbound_client(struct outbound *o, const uint8_t *p, size_t n)
{
    size_t off = 0;

    while (off < n) {
        switch (o->state) {
        case OUTBOUND_RELAY:
            return off + inbound_client(&o->relay, p + off, n - off);
        case OUTBOUND_CLIENT_EHLO: {
            size_t k = client_first(o, p + off, n - off);
            if (k == 0)
                return off;
            off += k;
            break;
        }
        case OUTBOUND_REFUSED: {
            size_t k, arg;
            int rc = smtp_line(p + off, n - off, SMTP_CMD_LINE_MAX, &k);
            if (rc == SMTP_AGAIN)
                return off;
            bool quit = rc == SMTP_OK && smtp_verb(p + off, k, &arg) == SMTP_VERB_QUIT;
            close_with(o, quit ? R_BYE : R_GREETING, quit ? "quit" : "policy_refusal");
            return n;
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

void outbound_server_eof(struct outbound *o)
{
    switch (o->state) {
    case OUTBOUND_RELAY:
        inbound_server_eof(&o->relay);
        return;
    case OUTBOUND_STARTTLS:
    case OUTBOUND_HANDSHAKE:
    case OUTBOUND_EHLO_TLS:
        tls_failed(o, "connection closed during STARTTLS");
        return;
    case OUTBOUND_RECONNECT:
        return;
    default:
        close_with(o, R_LOST, "destination_closed");
        return;
    }
}

void outbound_tls_ready(struct outbound *o)
{
    if (o->state != OUTBOUND_HANDSHAKE)
        return;
    /* RFC 3207 §4.2: forget what the plaintext EHLO said; ask again. */
    o->server_tls = true;
    o->tls_note = NULL;
    o->caps = 0;
    send_ehlo(o, "EHLO");
    enter_state(o, OUTBOUND_EHLO_TLS);
}

void outbound_tls_failed(struct outbound *o, const char *why)
{
    if (o->state == OUTBOUND_STARTTLS || o->state == OUTBOUND_HANDSHAKE ||
        o->state == OUTBOUND_EHLO_TLS)
        tls_failed(o, why);
    else
        close_with(o, R_LOST, "tls_failed");
}

void outbound_reconnected(struct outbound *o)
{
    if (o->state == OUTBOUND_RECONNECT)
        enter_state(o, OUTBOUND_RE_GREETING);
}

void outbound_abort(struct outbound *o, const char *reply_text, const char *reason)
{
    close_with(o, reply_text, reason);
}

bool outbound_awaiting_server(const struct outbound *o)
{
    switch (o->state) {
    case OUTBOUND_RELAY:
        return inbound_awaiting_server(&o->relay);
    case OUTBOUND_CLIENT_EHLO:
    case OUTBOUND_REFUSED:
    case OUTBOUND_CLOSED:
        return false;
    default:
        return true;
    }
}

unsigned outbound_take_actions(struct outbound *o)
{
    unsigned a = o->actions;
    o->actions = 0;
    if (o->state == OUTBOUND_RELAY || o->relay.actions) {
        if (inbound_take_actions(&o->relay) & INBOUND_ACT_CLOSE) {
            a |= OUTBOUND_ACT_CLOSE;
            o->reason = o->relay.reason;
            o->state = OUTBOUND_CLOSED;
        }
    }
    return a;
}

uint64_t outbound_progress(const struct outbound *o)
{
    return o->progress + o->relay.progress;
}
