/*
 * The inbound front end; see inbound.h. RFC 5321 §3.1 (greeting), RFC 3207
 * (STARTTLS), Postfix's XCLIENT_README (XCLIENT). The relay engine does the
 * rest.
 */
#include "proxy/core/inbound.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Replies the proxy owns. Enhanced status codes per RFC 3463. */
static const char R_STARTTLS[] = "220 2.0.0 Ready to start TLS\r\n";
static const char R_STARTTLS_ARGS[] = "501 5.5.4 Syntax: STARTTLS takes no arguments\r\n";
static const char R_TLS_ACTIVE[] = "503 5.5.1 TLS already active\r\n";
static const char R_EHLO_FIRST[] = "503 5.5.1 Send EHLO first\r\n";
static const char R_IN_TXN[] = "503 5.5.1 STARTTLS not permitted during a mail transaction\r\n";
static const char R_XCLIENT[] = "421 4.3.0 Backend refused XCLIENT, closing connection\r\n";
static const char R_BACKEND_TIMEOUT[] = "421 4.4.2 Backend timeout, closing connection\r\n";
static const char R_INTERNAL[] = "421 4.3.0 Internal error, closing connection\r\n";

static const char *const state_names[] = {
    [INBOUND_GREETING] = "GREETING",   [INBOUND_XEHLO] = "XEHLO",
    [INBOUND_XCLIENT] = "XCLIENT",     [INBOUND_RELAY] = "RELAY",
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
    if (e->state == INBOUND_CLOSED || e->state == s)
        return;
    enum inbound_state from = e->state;
    e->state = s;
    if (e->relay.io.on_state != NULL)
        e->relay.io.on_state(e->relay.io.arg, "inbound", inbound_state_str(from),
                             inbound_state_str(s));
}

static void to_client(struct inbound *e, const void *p, size_t n)
{
    e->relay.io.to_client(e->relay.io.arg, p, n);
}

static void to_server_str(struct inbound *e, const char *s)
{
    e->relay.io.to_server(e->relay.io.arg, (const uint8_t *)s, strlen(s));
}

static void close_with(struct inbound *e, const char *reply, enum reason reason)
{
    if (e->state == INBOUND_CLOSED)
        return;
    if (reply != NULL)
        to_client(e, reply, strlen(reply));
    enter_state(e, INBOUND_CLOSED);
    inbound_free(e); /* nothing is greeted or relayed any more */
    e->actions |= ENGINE_ACT_CLOSE;
    e->reason = reason;
    relay_close(&e->relay, NULL, reason); /* nothing more from it either */
}

/* After every call into the relay: its close is the session's. */
static void follow(struct inbound *e)
{
    if (e->relay.state == RELAY_CLOSED)
        close_with(e, NULL, e->relay.reason);
}

/* ---- client commands the front end answers (hooks of the relay) ---- */

#define IN(s) (1u << (s))

/* MAIL, RCPT, DATA, BDAT under require_tls. */
static enum relay_verdict cmd_transaction(struct inbound *e, const struct relay_command *c,
                                          const char **reply)
{
    (void)c;
    if (!e->cfg.require_tls || e->tls_active)
        return RELAY_PASS;
    *reply = RELAY_R_NEED_TLS;
    return RELAY_REFUSE;
}

static enum relay_verdict cmd_starttls(struct inbound *e, const struct relay_command *c,
                                       const char **reply)
{
    if (c->arg < c->len - 2)
        *reply = R_STARTTLS_ARGS;
    else if (e->tls_active)
        *reply = R_TLS_ACTIVE;
    else if (!e->relay.ehlo_sent)
        *reply = R_EHLO_FIRST;
    else if (e->relay.in_txn)
        *reply = R_IN_TXN;
    else {
        /* From here until the handshake, any plaintext from the client is
         * hostile (RFC 3207 §4.2, CVE-2011-0411): it is dropped. The 220
         * goes out when every earlier reply has (on_turn). */
        enter_state(e, INBOUND_STARTTLS);
        return RELAY_YIELD;
    }
    return RELAY_REFUSE;
}

static const struct verb_rule {
    enum smtp_verb verb;
    unsigned states; /* IN(INBOUND_*) in which the front end answers it */
    enum relay_verdict (*handler)(struct inbound *e, const struct relay_command *c,
                                  const char **reply);
} verbs[] = {
    {SMTP_VERB_STARTTLS, IN(INBOUND_RELAY), cmd_starttls},
    {SMTP_VERB_MAIL, IN(INBOUND_RELAY), cmd_transaction},
    {SMTP_VERB_RCPT, IN(INBOUND_RELAY), cmd_transaction},
    {SMTP_VERB_DATA, IN(INBOUND_RELAY), cmd_transaction},
    {SMTP_VERB_BDAT, IN(INBOUND_RELAY), cmd_transaction},
};

static enum relay_verdict on_command(void *arg, const struct relay_command *c,
                                     const char **reply)
{
    struct inbound *e = arg;

    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (verbs[i].verb == c->verb && (verbs[i].states & IN(e->state)))
            return verbs[i].handler(e, c, reply);
    }
    return RELAY_PASS; /* everything else is the relay's */
}

/* Every reply before the STARTTLS has been delivered: RFC 3207 §4 lets the
 * TLS negotiation start right after this line. */
static void on_turn(void *arg)
{
    struct inbound *e = arg;

    if (e->state != INBOUND_STARTTLS)
        return;
    to_client(e, R_STARTTLS, sizeof(R_STARTTLS) - 1);
    enter_state(e, INBOUND_HANDSHAKE);
    e->actions |= ENGINE_ACT_START_TLS_CLIENT;
}

/* ---- the greeting and XCLIENT (replies the relay hands back) ---- */

static bool ieq(const uint8_t *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = a[i];
        if (c >= 'a' && c <= 'z')
            c = (uint8_t)(c - 'a' + 'A');
        if (c != (uint8_t)b[i])
            return false;
    }
    return true;
}

/* Whether an EHLO reply lists keyword (upper case) on a line of its own
 * (RFC 5321 §4.1.1.1: "250-KEYWORD params"). */
static bool ehlo_offers(const uint8_t *p, size_t len, const char *keyword)
{
    size_t k = strlen(keyword);
    bool first = true;

    for (size_t i = 0; i < len;) {
        const uint8_t *nl = memchr(p + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - p) + 1 : len;
        size_t w = i + 4;
        if (!first && end - w >= k && ieq(p + w, keyword, k) &&
            (end - w == k || p[w + k] == ' ' || p[w + k] == '\r'))
            return true;
        first = false;
        i = end;
    }
    return false;
}

/* Reports a reply of the backend's through io.on_event, on one line. */
static void report(struct inbound *e, const char *event, const uint8_t *p, size_t len)
{
    char line[512];
    size_t n = 0;

    if (e->relay.io.on_event == NULL)
        return;
    for (size_t i = 0; i < len && n < sizeof(line) - 1; i++) {
        if (p[i] == '\r')
            continue;
        if (p[i] == '\n') {
            if (i + 1 < len && n < sizeof(line) - 1)
                line[n++] = ' ';
            continue;
        }
        line[n++] = (char)p[i];
    }
    line[n] = '\0';
    e->relay.io.on_event(e->relay.io.arg, event, line);
}

/* The domain a greeting names first (RFC 5321 §4.3.1: "220 domain ..."),
 * for the EHLO reply the relay writes for a HELO-only backend. */
static int keep_domain(struct inbound *e, const uint8_t *p, size_t len)
{
    size_t n = 0;

    while (4 + n < len && n < RELAY_NAME_MAX && p[4 + n] != ' ' && p[4 + n] != '\r' &&
           p[4 + n] != '\n')
        n++;
    return relay_set_server_domain(&e->relay, p + 4, n);
}

/* Keeps the first greeting for a backend that turns out not to offer
 * XCLIENT; one longer than SMTP_REPLY_LINE_MAX is cut to its first line.
 * Returns -1 when out of memory. */
static int keep_greeting(struct inbound *e, const uint8_t *p, size_t len)
{
    bool cut = len > SMTP_REPLY_LINE_MAX;

    if (cut) {
        const uint8_t *nl = memchr(p, '\n', len);
        len = nl ? (size_t)(nl - p) + 1 : 0; /* a line is at most SMTP_REPLY_LINE_MAX */
    }
    if (len > SMTP_REPLY_LINE_MAX || len < 4)
        len = 0;
    e->greeting_len = 0;
    if (len == 0)
        return 0;
    if (e->greeting == NULL && (e->greeting = malloc(SMTP_REPLY_LINE_MAX)) == NULL)
        return -1;
    memcpy(e->greeting, p, len);
    if (cut)
        e->greeting[3] = ' '; /* now the only, so the last, line */
    e->greeting_len = (uint16_t)len;
    return 0;
}

/* The kept greeting has served (XCLIENT offered or not). */
static void drop_greeting(struct inbound *e)
{
    free(e->greeting);
    e->greeting = NULL;
    e->greeting_len = 0;
}

static void on_reply(void *arg, const uint8_t *p, size_t len, int code)
{
    struct inbound *e = arg;

    switch (e->state) {
    case INBOUND_GREETING:
        if (keep_domain(e, p, len) != 0) {
            close_with(e, R_INTERNAL, REASON_INTERNAL_ERROR);
            return;
        }
        if (code == 220 && e->cfg.xclient != NULL) {
            /* Postfix XCLIENT: tell the backend who the client really is;
             * its answer is a new greeting, which the client gets. First
             * EHLO alone: XCLIENT is sent only once the reply offers it
             * (Postfix >= 3.9 answers pipelined commands with 554). */
            if (keep_greeting(e, p, len) != 0) {
                close_with(e, R_INTERNAL, REASON_INTERNAL_ERROR);
                return;
            }
            to_server_str(e, "EHLO ");
            to_server_str(e, e->cfg.helo_name);
            to_server_str(e, "\r\n");
            relay_expect(&e->relay);
            enter_state(e, INBOUND_XEHLO);
            return;
        }
        /* Even a refusal is the backend's to make: the client hears it
         * out and the relay takes over (a 421 closes it). */
        to_client(e, p, len);
        enter_state(e, INBOUND_RELAY);
        return;
    case INBOUND_XEHLO:
        if (code == 421) {
            to_client(e, p, len); /* the relay closes behind it */
            return;
        }
        if (code / 100 == 2 && ehlo_offers(p, len, "XCLIENT")) {
            drop_greeting(e); /* XCLIENT's 220 is the client's greeting */
            to_server_str(e, e->cfg.xclient);
            relay_expect(&e->relay);
            enter_state(e, INBOUND_XCLIENT);
            return;
        }
        /* Configured but not offered (not in the backend's
         * smtpd_authorized_xclient_hosts, or no Postfix at all): the
         * session still works, the backend just sees the proxy's address. */
        report(e, "xclient_not_offered", p, len);
        if (e->greeting_len > 0)
            to_client(e, e->greeting, e->greeting_len);
        drop_greeting(e);
        enter_state(e, INBOUND_RELAY);
        return;
    case INBOUND_XCLIENT:
        if (code != 220) {
            report(e, "xclient_refused", p, len);
            close_with(e, R_XCLIENT, REASON_XCLIENT_REFUSED);
            return;
        }
        if (keep_domain(e, p, len) != 0) {
            close_with(e, R_INTERNAL, REASON_INTERNAL_ERROR);
            return;
        }
        to_client(e, p, len);
        enter_state(e, INBOUND_RELAY);
        return;
    default:
        return;
    }
}

/* ---- the Received: line (received_header) ---- */

/* A line being folded (RFC 5322 §2.2.3): words go on the current line
 * while it stays under 78 characters, else on a new one after CRLF TAB. */
struct fold {
    char *out;
    size_t cap, n, col;
    bool full;
};

static void put(struct fold *f, const char *s)
{
    size_t k = strlen(s);

    if (f->full || f->n + k >= f->cap) {
        f->full = true;
        return;
    }
    memcpy(f->out + f->n, s, k);
    f->n += k;
    f->col += k;
}

/* A new line of the header (CRLF TAB), then s. */
static void line(struct fold *f, const char *s)
{
    put(f, "\r\n\t");
    f->col = 1;
    put(f, s);
}

/* " " and the words a, b, c (concatenated: one word), folded before them
 * when they would make the line too long. */
static void word(struct fold *f, const char *a, const char *b, const char *c)
{
    size_t k = strlen(a) + strlen(b) + strlen(c);

    if (f->col + 1 + k >= 78 && f->col > 1) {
        put(f, "\r\n\t");
        f->col = 1;
    } else {
        put(f, " ");
    }
    put(f, a);
    put(f, b);
    put(f, c);
}

static bool domain_or_literal(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == '[' || c == ']' || c == ':'))
            return false;
    }
    return true;
}

size_t inbound_received_format(char *out, size_t cap, const struct inbound_received *ri,
                               const char *helo)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct fold f = {.out = out, .cap = cap};
    struct tm tm;
    time_t t = (time_t)ri->when;
    char date[64];

    if (gmtime_r(&t, &tm) == NULL)
        return 0;
    /* RFC 5322 §3.3 date-time, in UTC. */
    snprintf(date, sizeof(date), "%s, %d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    put(&f, "Received: from");
    word(&f, domain_or_literal(helo) ? helo : "unknown", "", "");
    word(&f, "(", domain_or_literal(ri->client_name) ? ri->client_name : "unknown", "");
    word(&f, "[", ri->client_ip, "])");
    line(&f, "by");
    word(&f, ri->by, "", "");
    word(&f, "(smtp-tls-proxy)", "", "");
    word(&f, "with", "", "");
    word(&f, "ESMTPS", "", "");
    word(&f, "id", "", "");
    word(&f, ri->id, "", "");
    line(&f, "(version=");
    put(&f, ri->tls_version);
    word(&f, "cipher=", ri->tls_cipher, ");");
    line(&f, date);
    put(&f, "\r\n");
    if (f.full)
        return 0;
    out[f.n] = '\0';
    return f.n;
}

int inbound_set_received(struct inbound *e, const struct inbound_received *ri)
{
    if (e->received == NULL && (e->received = malloc(sizeof(*e->received))) == NULL)
        return -1;
    *e->received = *ri;
    return 0;
}

void inbound_free(struct inbound *e)
{
    drop_greeting(e);
    free(e->received);
    e->received = NULL;
    relay_free(&e->relay);
}

/* The relay asks at the start of every message's content. */
static size_t on_prefix(void *arg, uint8_t *out, size_t cap)
{
    struct inbound *e = arg;

    if (e->received == NULL || !e->tls_active)
        return 0;
    return inbound_received_format((char *)out, cap, e->received, relay_client_helo(&e->relay));
}

void inbound_init(struct inbound *e, const struct inbound_cfg *cfg, const struct engine_io *io)
{
    memset(e, 0, sizeof(*e));
    e->cfg = *cfg;
    /* RFC 5321 §3.1: the client waits for the greeting. Whatever it sends
     * ahead is held, so nothing reaches the backend before the greeting
     * (and XCLIENT, when configured) is through. */
    e->state = INBOUND_GREETING;
    e->tls_active = cfg->implicit_tls;
    struct relay_cfg rcfg = {
        .tls = cfg->implicit_tls,
        .offer_starttls = true,
        .reject_bare_newline = cfg->reject_bare_newline,
        .helo_fallback = true,
        .max_line = cfg->max_line,
        .ehlo = cfg->ehlo,
    };
    struct relay_hooks hooks = {.arg = e,
                                .command = on_command,
                                .turn = on_turn,
                                .reply = on_reply,
                                .prefix = on_prefix};
    relay_init(&e->relay, &rcfg, io, &hooks);
    /* The backend speaks first: its greeting is the first reply owed. */
    relay_expect(&e->relay);
}

/* ---- the engine operations ---- */

static size_t op_client(void *v, const uint8_t *p, size_t n)
{
    struct inbound *e = v;

    switch (e->state) {
    case INBOUND_GREETING:
    case INBOUND_XEHLO:
    case INBOUND_XCLIENT:
        return 0;
    case INBOUND_RELAY: {
        size_t k = relay_client(&e->relay, p, n);
        follow(e);
        return e->state == INBOUND_RELAY ? k : n;
    }
    case INBOUND_STARTTLS:
    case INBOUND_HANDSHAKE:
    case INBOUND_CLOSED:
        /* Plaintext behind STARTTLS is discarded, never relayed or
         * answered; after close nothing matters. */
        return n;
    }
    return n;
}

static size_t op_server(void *v, const uint8_t *p, size_t n)
{
    struct inbound *e = v;

    if (e->state == INBOUND_CLOSED)
        return n;
    size_t k = relay_server(&e->relay, p, n);
    follow(e);
    return e->state == INBOUND_CLOSED ? n : k;
}

static void op_server_eof(void *v)
{
    struct inbound *e = v;

    if (e->state == INBOUND_CLOSED)
        return;
    relay_server_eof(&e->relay);
    follow(e);
}

static void op_tls_ready(void *v)
{
    struct inbound *e = v;

    if (e->state == INBOUND_CLOSED)
        return;
    e->tls_active = true;
    /* RFC 3207 §4.2: discard all knowledge obtained from the client and
     * the server before TLS; after STARTTLS the client must send EHLO
     * again. Implicit TLS completes before the backend has greeted. */
    relay_tls_started(&e->relay, !e->cfg.implicit_tls);
    if (e->state == INBOUND_HANDSHAKE)
        enter_state(e, INBOUND_RELAY);
}

static void op_tls_failed(void *v, enum engine_tls_failure kind, const char *detail)
{
    (void)detail;
    /* Nothing can be said in plaintext in the middle of a handshake. */
    close_with(v, NULL, kind == ENGINE_TLS_TIMEOUT ? REASON_TLS_TIMEOUT : REASON_TLS_FAILED);
}

static void op_reconnected(void *v)
{
    (void)v; /* inbound never asks to reconnect */
}

static bool op_awaiting_server(const void *v)
{
    const struct inbound *e = v;

    return e->state != INBOUND_CLOSED && relay_awaiting_server(&e->relay);
}

static bool op_in_content(const void *v)
{
    const struct inbound *e = v;

    return e->state == INBOUND_RELAY && relay_in_content(&e->relay);
}

static void op_deadline(void *v)
{
    struct inbound *e = v;

    if (e->state == INBOUND_HANDSHAKE)
        op_tls_failed(e, ENGINE_TLS_TIMEOUT, "handshake timeout");
    else if (op_awaiting_server(e))
        close_with(e, R_BACKEND_TIMEOUT, REASON_BACKEND_TIMEOUT);
    else
        close_with(e, RELAY_R_IDLE, REASON_TIMEOUT);
}

static void op_abort(void *v, const char *reply, enum reason reason)
{
    close_with(v, reply, reason);
}

static uint64_t op_progress(const void *v)
{
    const struct inbound *e = v;

    return e->relay.progress;
}

static enum reason op_reason(const void *v)
{
    return ((const struct inbound *)v)->reason;
}

static void op_release(void *v)
{
    inbound_free(v);
}

static unsigned op_take_actions(void *v)
{
    struct inbound *e = v;
    unsigned a = e->actions;

    e->actions = 0;
    return a;
}

const struct engine_ops inbound_engine_ops = {
    .name = "inbound",
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
    .release = op_release,
};
