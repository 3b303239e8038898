/*
 * The inbound dialogue engine; see inbound.h. The rules it enforces come
 * from RFC 5321 (framing, order), RFC 2920 (pipelining), RFC 3207
 * (STARTTLS), RFC 3030 (BDAT) and RFC 4954 (AUTH).
 */
#include "proxy/core/inbound.h"

#include <assert.h>
#include <string.h>

/* Replies the proxy owns. Enhanced status codes per RFC 3463. */
static const char R_STARTTLS[] = "220 2.0.0 Ready to start TLS\r\n";
static const char R_STARTTLS_ARGS[] = "501 5.5.4 Syntax: STARTTLS takes no arguments\r\n";
static const char R_TLS_ACTIVE[] = "503 5.5.1 TLS already active\r\n";
static const char R_EHLO_FIRST[] = "503 5.5.1 Send EHLO first\r\n";
static const char R_EHLO_AFTER_TLS[] = "503 5.5.1 Send EHLO again after STARTTLS\r\n";
static const char R_IN_TXN[] = "503 5.5.1 STARTTLS not permitted during a mail transaction\r\n";
static const char R_NEED_TLS[] = "530 5.7.0 Must issue a STARTTLS command first\r\n";
static const char R_NO_STARTTLS[] = "502 5.5.1 STARTTLS not offered\r\n";
static const char R_RESERVED[] = "550 5.7.0 Command reserved for the proxy\r\n";
static const char R_NOT_IMPL[] = "502 5.5.1 Command not implemented\r\n";
static const char R_SYNTAX[] = "500 5.5.2 Syntax error in command\r\n";
static const char R_BDAT_SYNTAX[] = "501 5.5.4 Syntax: BDAT size [LAST]\r\n";
static const char R_BDAT_NO_CHUNKING[] = "503 5.5.1 BDAT without CHUNKING\r\n";
static const char R_BARE_NL_DATA[] =
    "521 5.5.2 Message contains bare CR or LF, refused (SMTP smuggling protection)\r\n";
static const char R_PROTOCOL[] = "421 4.5.0 Backend protocol error, closing connection\r\n";
static const char R_LOST[] = "421 4.4.2 Backend connection lost\r\n";
static const char R_XCLIENT[] = "421 4.3.0 Backend refused XCLIENT, closing connection\r\n";

static const char *const state_names[] = {
    [INBOUND_COMMAND] = "COMMAND",     [INBOUND_HOLD] = "HOLD",
    [INBOUND_SKIP] = "SKIP",           [INBOUND_DATA] = "DATA",
    [INBOUND_BDAT] = "BDAT",           [INBOUND_AUTH] = "AUTH",
    [INBOUND_STARTTLS] = "STARTTLS",   [INBOUND_HANDSHAKE] = "HANDSHAKE",
    [INBOUND_CLOSED] = "CLOSED",
};

const char *inbound_state_str(enum inbound_state s)
{
    return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

static void enter_state(struct inbound *e, enum inbound_state s)
{
    /* CLOSED is final: nothing may revive a session being torn down. */
    if (e->state == INBOUND_CLOSED)
        return;
    /* The tail of an overlong line is still to be skipped before anything
     * is read as a command again. */
    if (e->skip_pending && (s == INBOUND_COMMAND || s == INBOUND_AUTH))
        s = INBOUND_SKIP;
    e->state = s;
}

static void to_client(struct inbound *e, const void *p, size_t n)
{
    e->io.to_client(e->io.arg, p, n);
}

static void to_client_str(struct inbound *e, const char *s)
{
    to_client(e, s, strlen(s));
}

static void to_server(struct inbound *e, const void *p, size_t n)
{
    e->io.to_server(e->io.arg, p, n);
}

static void close_with(struct inbound *e, const char *reply, const char *reason)
{
    if (e->state == INBOUND_CLOSED)
        return;
    if (reply != NULL)
        to_client_str(e, reply);
    e->state = INBOUND_CLOSED;
    e->actions |= INBOUND_ACT_CLOSE;
    e->reason = reason;
}

static struct inbound_entry *fifo_head(struct inbound *e)
{
    return e->count ? &e->fifo[e->head] : NULL;
}

static void fifo_pop(struct inbound *e)
{
    e->head = (e->head + 1) % INBOUND_FIFO_MAX;
    e->count--;
}

static void fifo_push(struct inbound *e, enum inbound_pending kind, const char *text)
{
    assert(e->count < INBOUND_FIFO_MAX);
    struct inbound_entry *x = &e->fifo[(e->head + e->count) % INBOUND_FIFO_MAX];
    x->kind = (uint8_t)kind;
    x->text = text;
    e->count++;
}

/* Emits the proxy's own replies that have reached the head of the FIFO. */
static void drain(struct inbound *e)
{
    struct inbound_entry *x;

    while ((x = fifo_head(e)) != NULL && e->state != INBOUND_CLOSED) {
        if (x->kind == PEND_LOCAL) {
            to_client_str(e, x->text);
            fifo_pop(e);
        } else if (x->kind == PEND_STARTTLS) {
            /* Every earlier reply has been delivered: RFC 3207 §4 lets the
             * TLS negotiation start right after this line. */
            to_client_str(e, R_STARTTLS);
            fifo_pop(e);
            enter_state(e, INBOUND_HANDSHAKE);
            e->actions |= INBOUND_ACT_START_TLS;
        } else {
            break;
        }
    }
}

static void reply_local(struct inbound *e, const char *text)
{
    fifo_push(e, PEND_LOCAL, text);
    drain(e);
}

static void forward(struct inbound *e, const uint8_t *line, size_t len,
                    enum inbound_pending kind)
{
    fifo_push(e, kind, NULL);
    to_server(e, line, len);
}

void inbound_init(struct inbound *e, const struct inbound_cfg *cfg, const struct inbound_io *io)
{
    memset(e, 0, sizeof(*e));
    e->cfg = *cfg;
    e->io = *io;
    /* RFC 5321 §3.1: the client waits for the greeting. Whatever it sends
     * ahead is held, so nothing reaches the backend before the greeting
     * (and XCLIENT, when configured) is through. */
    e->state = INBOUND_HOLD;
    e->tls_active = cfg->implicit_tls;
    /* The backend speaks first: its greeting is the first reply owed. */
    fifo_push(e, PEND_GREETING, NULL);
}

void inbound_init_relay(struct inbound *e, const struct inbound_cfg *cfg,
                        const struct inbound_io *io, bool server_tls, unsigned caps)
{
    memset(e, 0, sizeof(*e));
    e->cfg = *cfg;
    e->cfg.relay_only = true;
    e->io = *io;
    e->state = INBOUND_COMMAND;
    e->tls_active = server_tls;
    e->ehlo_sent = true;
    e->greeted = true;
    e->caps = caps;
}

/* Transaction verbs that must wait for the client's EHLO after STARTTLS, or
 * for STARTTLS itself under require_tls. */
static const char *mail_gate(const struct inbound *e)
{
    if (e->need_ehlo)
        return R_EHLO_AFTER_TLS;
    if (e->cfg.require_tls && !e->tls_active)
        return R_NEED_TLS;
    return NULL;
}

static void command_bdat(struct inbound *e, const uint8_t *line, size_t len, size_t arg)
{
    uint64_t size;
    bool last;

    if (smtp_bdat_args(line + arg, len - arg, &size, &last) != SMTP_OK) {
        /* Without a size there is no chunk to skip: the client is told and
         * what follows is read as commands, as any server would. */
        reply_local(e, R_BDAT_SYNTAX);
        return;
    }
    const char *refuse = mail_gate(e);
    if (refuse == NULL && !(e->caps & SMTP_CAP_CHUNKING))
        refuse = R_BDAT_NO_CHUNKING;
    e->bdat_left = size;
    e->bdat_discard = refuse != NULL;
    if (refuse != NULL) {
        /* The chunk octets are content, never commands: drop them. */
        reply_local(e, refuse);
    } else {
        forward(e, line, len, last ? PEND_BDAT_LAST : PEND_BDAT);
        e->in_txn = true;
    }
    if (size > 0)
        enter_state(e, INBOUND_BDAT);
}

static void command(struct inbound *e, const uint8_t *line, size_t len)
{
    size_t arg;
    enum smtp_verb verb = smtp_verb(line, len, &arg);
    bool has_args = arg < len - 2;
    const char *refuse;

    e->progress++;
    switch (verb) {
    case SMTP_VERB_EHLO:
    case SMTP_VERB_HELO:
        e->ehlo_sent = true;
        e->need_ehlo = false;
        forward(e, line, len, verb == SMTP_VERB_EHLO ? PEND_EHLO : PEND_HELO);
        return;
    case SMTP_VERB_STARTTLS:
        if (e->cfg.relay_only)
            reply_local(e, R_NO_STARTTLS);
        else if (has_args)
            reply_local(e, R_STARTTLS_ARGS);
        else if (e->tls_active)
            reply_local(e, R_TLS_ACTIVE);
        else if (!e->ehlo_sent)
            reply_local(e, R_EHLO_FIRST);
        else if (e->in_txn)
            reply_local(e, R_IN_TXN);
        else {
            /* From here until the handshake, any plaintext from the client
             * is hostile (RFC 3207 §4.2, CVE-2011-0411): it is dropped. */
            enter_state(e, INBOUND_STARTTLS);
            fifo_push(e, PEND_STARTTLS, NULL);
            drain(e);
        }
        return;
    case SMTP_VERB_AUTH:
        /* RFC 4954 §4: no credentials over plaintext. */
        if (!e->tls_active)
            reply_local(e, R_NEED_TLS);
        else if (e->need_ehlo)
            reply_local(e, R_EHLO_AFTER_TLS);
        else {
            forward(e, line, len, PEND_AUTH);
            enter_state(e, INBOUND_HOLD);
        }
        return;
    case SMTP_VERB_XCLIENT:
    case SMTP_VERB_XFORWARD:
        reply_local(e, R_RESERVED);
        return;
    case SMTP_VERB_INVALID:
        reply_local(e, R_SYNTAX);
        return;
    case SMTP_VERB_TURN:
    case SMTP_VERB_ATRN:
        reply_local(e, R_NOT_IMPL);
        return;
    case SMTP_VERB_MAIL:
    case SMTP_VERB_RCPT:
    case SMTP_VERB_DATA:
        if ((refuse = mail_gate(e)) != NULL) {
            reply_local(e, refuse);
            return;
        }
        if (verb == SMTP_VERB_MAIL) {
            e->in_txn = true;
            forward(e, line, len, PEND_MAIL);
        } else if (verb == SMTP_VERB_RCPT) {
            forward(e, line, len, PEND_RCPT);
        } else {
            /* What follows DATA is content or commands depending on the
             * reply: hold it, uninterpreted, until the reply is in. */
            forward(e, line, len, PEND_DATA);
            enter_state(e, INBOUND_HOLD);
        }
        return;
    case SMTP_VERB_BDAT:
        command_bdat(e, line, len, arg);
        return;
    case SMTP_VERB_QUIT:
        e->quit = true;
        forward(e, line, len, PEND_QUIT);
        enter_state(e, INBOUND_HOLD);
        return;
    case SMTP_VERB_RSET:
        forward(e, line, len, PEND_RSET);
        return;
    case SMTP_VERB_NOOP:
    case SMTP_VERB_HELP:
        forward(e, line, len, PEND_OTHER);
        return;
    case SMTP_VERB_VRFY:
    case SMTP_VERB_EXPN:
    case SMTP_VERB_ETRN:
    case SMTP_VERB_BURL:
    case SMTP_VERB_UNKNOWN:
        if (e->need_ehlo) {
            reply_local(e, R_EHLO_AFTER_TLS);
            return;
        }
        forward(e, line, len, PEND_OTHER);
        return;
    }
    assert(!"unhandled verb");
}

static void emit_server(void *arg, const uint8_t *p, size_t n)
{
    to_server(arg, p, n);
}

size_t inbound_client(struct inbound *e, const uint8_t *p, size_t n)
{
    size_t off = 0;

    while (off < n) {
        size_t k = 0;
        int rc;

        switch (e->state) {
        case INBOUND_CLOSED:
        case INBOUND_STARTTLS:
        case INBOUND_HANDSHAKE:
            /* Plaintext behind STARTTLS is discarded, never relayed or
             * answered; after close nothing matters. */
            return n;
        case INBOUND_HOLD:
            return off;
        case INBOUND_SKIP:
            rc = smtp_skip_line(p + off, n - off, &k);
            off += k;
            if (rc == SMTP_OK) {
                e->skip_pending = false;
                enter_state(e, INBOUND_COMMAND);
            }
            break;
        case INBOUND_BDAT:
            k = n - off < e->bdat_left ? n - off : (size_t)e->bdat_left;
            if (!e->bdat_discard)
                to_server(e, p + off, k);
            off += k;
            e->bdat_left -= k;
            if (e->bdat_left == 0) {
                e->progress++;
                enter_state(e, INBOUND_COMMAND);
            }
            break;
        case INBOUND_DATA:
            rc = smtp_data_scan(&e->data, p + off, n - off, &k, emit_server, e);
            off += k;
            e->progress++;
            if (rc == SMTP_OK) {
                fifo_push(e, PEND_DOT, NULL);
                enter_state(e, INBOUND_COMMAND);
            } else if (rc == SMTP_ERR_BARE_NL) {
                /* The backend never sees an end of data for this message,
                 * so it cannot deliver it. */
                close_with(e, R_BARE_NL_DATA, "bare_newline");
                return n;
            }
            break;
        case INBOUND_AUTH:
        case INBOUND_COMMAND:
            if (e->count >= INBOUND_FIFO_MAX - 1)
                return off; /* pipelining depth bound: wait for replies */
            rc = smtp_line(p + off, n - off,
                           e->state == INBOUND_AUTH ? SMTP_AUTH_LINE_MAX : SMTP_CMD_LINE_MAX, &k);
            if (rc == SMTP_AGAIN)
                return off;
            if (rc != SMTP_OK) {
                e->progress++;
                if (e->state == INBOUND_AUTH) {
                    /* An unusable AUTH response: cancel the exchange
                     * (RFC 4954 §4, "*") and let the client see the
                     * backend's answer to that. */
                    forward(e, (const uint8_t *)"*\r\n", 3, PEND_AUTH);
                    enter_state(e, INBOUND_HOLD);
                } else {
                    reply_local(e, rc == SMTP_ERR_TOO_LONG ? SMTP_R_TOO_LONG : SMTP_R_BARE_NL);
                }
                if (rc == SMTP_ERR_TOO_LONG) {
                    /* Skip the rest of the line once the hold, if any,
                     * is over. */
                    e->skip_pending = true;
                    if (e->state == INBOUND_COMMAND)
                        enter_state(e, INBOUND_COMMAND);
                } else {
                    off += k;
                }
                break;
            }
            if (e->state == INBOUND_AUTH) {
                e->progress++;
                forward(e, p + off, k, PEND_AUTH);
                enter_state(e, INBOUND_HOLD);
            } else {
                command(e, p + off, k);
            }
            off += k;
            break;
        }
    }
    return off;
}

static void reply_ehlo(struct inbound *e, const uint8_t *r, size_t len)
{
    uint8_t out[SMTP_REPLY_MAX + 64];
    size_t outlen;
    unsigned flags = 0;

    if (e->tls_active)
        flags |= SMTP_EHLO_TLS_ACTIVE;
    else if (!e->cfg.relay_only)
        flags |= SMTP_EHLO_ADD_STARTTLS;
    int caps = smtp_ehlo_rewrite(r, len, flags, out, sizeof(out), &outlen);
    if (caps < 0) {
        close_with(e, R_PROTOCOL, "protocol_error");
        return;
    }
    e->caps = (unsigned)caps;
    to_client(e, out, outlen);
}

static void reply(struct inbound *e, const uint8_t *r, size_t len, int code)
{
    struct inbound_entry *x = fifo_head(e);
    bool ok = code / 100 == 2;

    e->progress++;
    if (x == NULL) {
        /* RFC 5321 §3.8: a server may announce its shutdown with 421 at
         * any time; any other reply that answers nothing is an error. */
        if (code == 421) {
            to_client(e, r, len);
            close_with(e, NULL, "backend_closed");
        } else {
            close_with(e, R_PROTOCOL, "protocol_error");
        }
        return;
    }
    enum inbound_pending kind = x->kind;
    assert(kind != PEND_LOCAL && kind != PEND_STARTTLS);
    fifo_pop(e);

    switch (kind) {
    case PEND_EHLO:
        if (ok) {
            e->in_txn = false;
            reply_ehlo(e, r, len);
            break;
        }
        to_client(e, r, len);
        break;
    case PEND_HELO:
        if (ok) {
            e->in_txn = false;
            e->caps = 0; /* no EHLO, no extensions: BDAT is refused */
        }
        to_client(e, r, len);
        break;
    case PEND_MAIL:
        if (!ok)
            e->in_txn = false;
        to_client(e, r, len);
        break;
    case PEND_DATA:
        to_client(e, r, len);
        if (code == 354) {
            smtp_data_init(&e->data, e->cfg.reject_bare_newline);
            enter_state(e, INBOUND_DATA);
        } else if (e->state == INBOUND_HOLD) {
            enter_state(e, INBOUND_COMMAND);
        }
        break;
    case PEND_DOT:
        e->in_txn = false;
        to_client(e, r, len);
        break;
    case PEND_BDAT_LAST:
        if (ok)
            e->in_txn = false;
        to_client(e, r, len);
        break;
    case PEND_RSET:
        if (ok)
            e->in_txn = false;
        to_client(e, r, len);
        break;
    case PEND_AUTH:
        to_client(e, r, len);
        if (e->state == INBOUND_HOLD)
            enter_state(e, code == 334 ? INBOUND_AUTH : INBOUND_COMMAND);
        break;
    case PEND_QUIT:
        to_client(e, r, len);
        close_with(e, NULL, "quit");
        return;
    case PEND_GREETING:
        if (code == 220 && e->cfg.xclient != NULL) {
            /* Postfix XCLIENT: tell the backend who the client really is;
             * its answer is a new greeting, which the client gets. */
            static const char ehlo[] = "EHLO ";
            to_server(e, ehlo, sizeof(ehlo) - 1);
            to_server(e, e->cfg.helo_name, strlen(e->cfg.helo_name));
            to_server(e, "\r\n", 2);
            to_server(e, e->cfg.xclient, strlen(e->cfg.xclient));
            fifo_push(e, PEND_XEHLO, NULL);
            fifo_push(e, PEND_XCLIENT, NULL);
            return;
        }
        to_client(e, r, len);
        e->greeted = true;
        enter_state(e, INBOUND_COMMAND);
        break;
    case PEND_XEHLO:
        if (!ok) {
            close_with(e, R_XCLIENT, "xclient_refused");
            return;
        }
        break;
    case PEND_XCLIENT:
        if (code != 220) {
            close_with(e, R_XCLIENT, "xclient_refused");
            return;
        }
        to_client(e, r, len);
        e->greeted = true;
        enter_state(e, INBOUND_COMMAND);
        break;
    case PEND_RCPT:
    case PEND_BDAT:
    case PEND_OTHER:
        to_client(e, r, len);
        break;
    case PEND_LOCAL:
    case PEND_STARTTLS:
        break;
    }
    if (code == 421) {
        /* The backend is closing the session; so do we. */
        close_with(e, NULL, "backend_closed");
        return;
    }
    drain(e);
}

size_t inbound_server(struct inbound *e, const uint8_t *p, size_t n)
{
    size_t off = 0;

    while (off < n && e->state != INBOUND_CLOSED) {
        size_t k;
        int code;
        int rc = smtp_reply(p + off, n - off, &k, &code);
        if (rc == SMTP_AGAIN)
            return off;
        if (rc != SMTP_OK) {
            close_with(e, R_PROTOCOL, "protocol_error");
            return n;
        }
        reply(e, p + off, k, code);
        off += k;
    }
    return e->state == INBOUND_CLOSED ? n : off;
}

void inbound_server_eof(struct inbound *e)
{
    close_with(e, e->quit ? NULL : R_LOST, "backend_closed");
}

void inbound_tls_ready(struct inbound *e)
{
    if (e->state == INBOUND_CLOSED)
        return;
    e->tls_active = true;
    /* RFC 3207 §4.2: discard all knowledge obtained from the client and
     * the server before TLS; the client must send EHLO again. */
    e->need_ehlo = !e->cfg.implicit_tls;
    e->ehlo_sent = false;
    e->in_txn = false;
    e->caps = 0;
    /* Implicit TLS completes before the backend has greeted. */
    enter_state(e, e->greeted ? INBOUND_COMMAND : INBOUND_HOLD);
}

void inbound_abort(struct inbound *e, const char *reply_text, const char *reason)
{
    close_with(e, reply_text, reason);
}

bool inbound_awaiting_server(const struct inbound *e)
{
    for (unsigned i = 0; i < e->count; i++) {
        uint8_t k = e->fifo[(e->head + i) % INBOUND_FIFO_MAX].kind;
        if (k != PEND_LOCAL && k != PEND_STARTTLS)
            return true;
    }
    return false;
}

unsigned inbound_take_actions(struct inbound *e)
{
    unsigned a = e->actions;
    e->actions = 0;
    return a;
}
