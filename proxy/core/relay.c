/*
 * The relay engine; see relay.h. The rules it enforces come from RFC 5321
 * (framing, order), RFC 2920 (pipelining), RFC 3207 §4.2 (nothing learnt
 * before TLS survives it), RFC 3030 (BDAT) and RFC 4954 (AUTH).
 */
#include "proxy/core/relay.h"
#include "proxy/core/relay_fifo.h"
#include "proxy/core/relay_int.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Replies the proxy owns. Enhanced status codes per RFC 3463. */
const char RELAY_R_NEED_TLS[] = "530 5.7.0 Must issue a STARTTLS command first\r\n";
const char RELAY_R_PROTOCOL[] = "421 4.5.0 Backend protocol error, closing connection\r\n";
const char RELAY_R_LOST[] = "421 4.4.2 Backend connection lost\r\n";
const char RELAY_R_IDLE[] = "421 4.4.2 Idle timeout exceeded, closing connection\r\n";
const char RELAY_R_TOO_MANY_ERRORS[] = "421 4.7.0 Too many errors, closing connection\r\n";
static const char R_INTERNAL[] = "421 4.3.0 Internal error, closing connection\r\n";
static const char R_EHLO_AFTER_TLS[] = "503 5.5.1 Send EHLO again after STARTTLS\r\n";
static const char R_NO_STARTTLS[] = "502 5.5.1 STARTTLS not offered\r\n";
static const char R_RESERVED[] = "550 5.7.0 Command reserved for the proxy\r\n";
static const char R_NOT_IMPL[] = "502 5.5.1 Command not implemented\r\n";
static const char R_SYNTAX[] = "500 5.5.2 Syntax error in command\r\n";
static const char R_BDAT_SYNTAX[] = "501 5.5.4 Syntax: BDAT size [LAST]\r\n";
static const char R_BDAT_NO_CHUNKING[] = "503 5.5.1 BDAT without CHUNKING\r\n";
static const char R_BARE_NL_DATA[] =
    "521 5.5.2 Message contains bare CR or LF, refused (SMTP smuggling protection)\r\n";

static const char *const state_names[] = {
    [RELAY_COMMAND] = "COMMAND", [RELAY_HOLD] = "HOLD",       [RELAY_SKIP] = "SKIP",
    [RELAY_DATA] = "DATA",       [RELAY_BDAT] = "BDAT",       [RELAY_AUTH] = "AUTH",
    [RELAY_YIELDED] = "YIELDED", [RELAY_CLOSED] = "CLOSED",
};

const char *relay_state_str(enum relay_state s)
{
    return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

static void enter_state(struct relay *r, enum relay_state s)
{
    /* CLOSED is final: nothing may revive a session being torn down. */
    if (r->state == RELAY_CLOSED)
        return;
    /* The tail of an overlong line is still to be skipped before anything
     * is read as a command again. */
    if (r->skip_pending && (s == RELAY_COMMAND || s == RELAY_AUTH))
        s = RELAY_SKIP;
    enum relay_state from = r->state;
    r->state = s;
    if (from != s && r->io.on_state != NULL)
        r->io.on_state(r->io.arg, "relay", relay_state_str(from), relay_state_str(s));
}

static void to_client(struct relay *r, const void *p, size_t n)
{
    r->io.to_client(r->io.arg, p, n);
}

static void to_client_str(struct relay *r, const char *s)
{
    to_client(r, s, strlen(s));
}

static void to_server(struct relay *r, const void *p, size_t n)
{
    r->io.to_server(r->io.arg, p, n);
}

static void close_with(struct relay *r, const char *reply, enum reason reason)
{
    if (r->state == RELAY_CLOSED)
        return;
    if (reply != NULL)
        to_client_str(r, reply);
    enter_state(r, RELAY_CLOSED);
    r->reason = reason;
}

/* Emits the proxy's own replies that have reached the head of the FIFO. */
static void drain(struct relay *r)
{
    struct relay_entry x;

    while (relay_fifo_head(r, &x) && r->state != RELAY_CLOSED) {
        if (x.kind == PEND_LOCAL) {
            to_client_str(r, x.text);
            relay_fifo_pop(r);
        } else if (x.kind == PEND_CLOSE) {
            relay_fifo_pop(r);
            close_with(r, x.text, REASON_PROTOCOL_ERROR);
        } else if (x.kind == PEND_TURN) {
            /* Every earlier reply has been delivered: the user may speak
             * (RFC 3207 §4 lets TLS start right after its 220). */
            relay_fifo_pop(r);
            r->hooks.turn(r->hooks.arg);
        } else {
            break;
        }
    }
}

/* A reply of the proxy's own. Each one is an error the client made; the
 * RELAY_ERROR_LIMIT-th is followed by the 421 and the close, and nothing
 * the client sends after it is read. */
static void reply_local(struct relay *r, const char *text)
{
    int rc = relay_fifo_push(r, PEND_LOCAL, text);
    if (rc == 0 && (text[0] == '4' || text[0] == '5') && ++r->errors >= RELAY_ERROR_LIMIT &&
        !r->error_limit) {
        r->error_limit = true;
        rc = relay_fifo_push(r, PEND_CLOSE, RELAY_R_TOO_MANY_ERRORS);
    }
    if (rc != 0)
        close_with(r, R_INTERNAL, REASON_INTERNAL_ERROR);
    drain(r);
}

static void forward(struct relay *r, const uint8_t *line, size_t len, enum relay_pending kind)
{
    (void)relay_fifo_push(r, kind, NULL);
    to_server(r, line, len);
}

void relay_init(struct relay *r, const struct relay_cfg *cfg, const struct engine_io *io,
                const struct relay_hooks *hooks)
{
    memset(r, 0, sizeof(*r));
    r->cfg = *cfg;
    r->io = *io;
    if (hooks != NULL)
        r->hooks = *hooks;
    r->caps = cfg->caps;
    r->state = RELAY_COMMAND;
}

/* ---- client commands ---- */

/*
 * The relay reads commands in RELAY_COMMAND only, so what decides whether a
 * verb is relayed is the phase of the session, not the engine state: the
 * verb table's "allowed" column is a set of phases.
 */
enum phase {
    PHASE_PLAIN,      /* no TLS where it matters */
    PHASE_TLS_GREET,  /* TLS started, the client has not said EHLO again */
    PHASE_TLS,
};

#define IN(p) (1u << (p))
#define ANY (IN(PHASE_PLAIN) | IN(PHASE_TLS_GREET) | IN(PHASE_TLS))
#define GREETED (IN(PHASE_PLAIN) | IN(PHASE_TLS))

/* Why a verb outside its phases is refused, unless its entry says. */
static const char *const phase_refusal[] = {
    [PHASE_PLAIN] = RELAY_R_NEED_TLS, /* RFC 4954 §4: no credentials in plaintext */
    [PHASE_TLS_GREET] = R_EHLO_AFTER_TLS,
    [PHASE_TLS] = NULL,
};

struct verb_rule;
typedef void (*verb_fn)(struct relay *r, const struct relay_command *c,
                        const struct verb_rule *v, const char *refuse);

struct verb_rule {
    uint8_t kind;        /* enum relay_pending its reply answers */
    uint8_t allowed;     /* IN(phase) bits in which it is relayed */
    bool own_refusal;    /* the handler answers a refusal itself (BDAT: syntax first) */
    const char *refusal; /* a verb never relayed: this answer */
    verb_fn handler;
};

static void cmd_forward(struct relay *r, const struct relay_command *c,
                        const struct verb_rule *v, const char *refuse)
{
    (void)refuse;
    forward(r, c->line, c->len, (enum relay_pending)v->kind);
}

/* A copy of p[0, n) in a block of its size into *to (NULL when n is 0 or
 * above RELAY_NAME_MAX); -1 when out of memory. */
static int keep_name(char **to, const uint8_t *p, size_t n)
{
    const uint8_t *nul = memchr(p, '\0', n);

    free(*to);
    *to = NULL;
    if (nul != NULL) /* a C string ends there: what follows is not the name */
        n = (size_t)(nul - p);
    if (n == 0 || n > RELAY_NAME_MAX)
        return 0;
    if ((*to = malloc(n + 1)) == NULL)
        return -1;
    memcpy(*to, p, n);
    (*to)[n] = '\0';
    return 0;
}

void relay_free(struct relay *r)
{
    relay_fifo_free(r);
    r->ntext = 0;
    free(r->client_helo);
    free(r->server_domain);
    r->client_helo = r->server_domain = NULL;
}

int relay_set_server_domain(struct relay *r, const uint8_t *p, size_t n)
{
    return keep_name(&r->server_domain, p, n);
}

static void cmd_ehlo(struct relay *r, const struct relay_command *c, const struct verb_rule *v,
                     const char *refuse)
{
    size_t n = 0, end = c->len - 2;

    /* The first word of the argument, for a HELO fallback and the
     * Received: line; none when it does not fit. */
    while (r->cfg.helo_fallback && c->arg + n < end && c->line[c->arg + n] != ' ')
        n++;
    if (r->cfg.helo_fallback && keep_name(&r->client_helo, c->line + c->arg, n) != 0) {
        close_with(r, R_INTERNAL, REASON_INTERNAL_ERROR);
        return;
    }
    r->ehlo_sent = true;
    r->need_ehlo = false;
    cmd_forward(r, c, v, refuse);
}

static void cmd_mail(struct relay *r, const struct relay_command *c, const struct verb_rule *v,
                     const char *refuse)
{
    r->in_txn = true;
    r->prefix_done = false; /* a new message: its content gets the prefix */
    cmd_forward(r, c, v, refuse);
}

/* DATA, AUTH, QUIT: what follows is content, a response or nothing,
 * depending on the reply; hold it, uninterpreted, until the reply is in. */
static void cmd_hold(struct relay *r, const struct relay_command *c, const struct verb_rule *v,
                     const char *refuse)
{
    if (c->verb == SMTP_VERB_QUIT)
        r->quit = true;
    cmd_forward(r, c, v, refuse);
    enter_state(r, RELAY_HOLD);
}

/* The prefix (hooks.prefix) for the message now starting, or 0 bytes. */
static size_t message_prefix(struct relay *r, uint8_t *out)
{
    if (r->prefix_done || r->hooks.prefix == NULL)
        return 0;
    r->prefix_done = true;
    size_t n = r->hooks.prefix(r->hooks.arg, out, RELAY_PREFIX_MAX);
    return n <= RELAY_PREFIX_MAX ? n : 0;
}

/* RFC 3030 §2: a chunk is exactly as long as its BDAT says. The first
 * chunk of a message carries the prefix in front of the client's octets,
 * and the command sent says so; the server's one reply still answers the
 * client's one command, so nothing is added to the reply order. */
static void bdat_forward(struct relay *r, const struct relay_command *c, uint64_t size, bool last)
{
    uint8_t pre[RELAY_PREFIX_MAX];
    size_t n = message_prefix(r, pre);

    if (n == 0) {
        forward(r, c->line, c->len, last ? PEND_BDAT_LAST : PEND_BDAT);
        return;
    }
    char line[64];
    int k = snprintf(line, sizeof(line), "BDAT %llu%s\r\n", (unsigned long long)(size + n),
                     last ? " LAST" : "");
    forward(r, (const uint8_t *)line, (size_t)k, last ? PEND_BDAT_LAST : PEND_BDAT);
    to_server(r, pre, n);
}

static void cmd_bdat(struct relay *r, const struct relay_command *c, const struct verb_rule *v,
                     const char *refuse)
{
    uint64_t size;
    bool last;

    (void)v;
    if (smtp_bdat_args(c->line + c->arg, c->len - c->arg, &size, &last) != SMTP_OK) {
        /* Without a size there is no chunk to skip: the client is told and
         * what follows is read as commands, as any server would. */
        reply_local(r, R_BDAT_SYNTAX);
        return;
    }
    if (refuse == NULL && !(r->caps & SMTP_CAP_CHUNKING))
        refuse = R_BDAT_NO_CHUNKING;
    r->bdat_left = size;
    r->bdat_discard = refuse != NULL;
    if (refuse != NULL) {
        /* The chunk octets are content, never commands: drop them. */
        reply_local(r, refuse);
    } else {
        bdat_forward(r, c, size, last);
        r->in_txn = true;
    }
    if (size > 0)
        enter_state(r, RELAY_BDAT);
}

void relay_reply_own(struct relay *r, const char *text)
{
    if (relay_fifo_push(r, PEND_LOCAL, text) != 0)
        close_with(r, R_INTERNAL, REASON_INTERNAL_ERROR);
    drain(r);
}

/* A recipient the user decides about (hooks.rcpt): relay_rcpt.c asks. */
static void cmd_rcpt(struct relay *r, const struct relay_command *c, const struct verb_rule *v,
                     const char *refuse)
{
    const char *reply = NULL;
    int rc = relay_rcpt_ask(r, c, &reply);

    if (rc < 0)
        reply_local(r, rc == RELAY_RCPT_NOT_ALABEL ? RELAY_R_RCPT_NOT_ALABEL : RELAY_R_RCPT_SYNTAX);
    else if (rc == RELAY_RCPT_WAIT)
        r->rcpt = RELAY_RCPT_WAITING; /* the line stays unread: client_line() */
    else if (rc == RELAY_RCPT_REFUSE)
        relay_reply_own(r, reply);
    else if (rc == RELAY_RCPT_PASS)
        cmd_forward(r, c, v, refuse);
}

static const struct verb_rule verbs[] = {
    [SMTP_VERB_UNKNOWN] = {PEND_OTHER, GREETED, false, NULL, cmd_forward},
    [SMTP_VERB_HELO] = {PEND_HELO, ANY, false, NULL, cmd_ehlo},
    [SMTP_VERB_EHLO] = {PEND_EHLO, ANY, false, NULL, cmd_ehlo},
    [SMTP_VERB_MAIL] = {PEND_MAIL, GREETED, false, NULL, cmd_mail},
    [SMTP_VERB_RCPT] = {PEND_RCPT, GREETED, false, NULL, cmd_rcpt},
    [SMTP_VERB_DATA] = {PEND_DATA, GREETED, false, NULL, cmd_hold},
    [SMTP_VERB_BDAT] = {PEND_BDAT, GREETED, true, NULL, cmd_bdat},
    [SMTP_VERB_RSET] = {PEND_RSET, ANY, false, NULL, cmd_forward},
    [SMTP_VERB_NOOP] = {PEND_OTHER, ANY, false, NULL, cmd_forward},
    [SMTP_VERB_QUIT] = {PEND_QUIT, ANY, false, NULL, cmd_hold},
    [SMTP_VERB_VRFY] = {PEND_OTHER, GREETED, false, NULL, cmd_forward},
    [SMTP_VERB_EXPN] = {PEND_OTHER, GREETED, false, NULL, cmd_forward},
    [SMTP_VERB_HELP] = {PEND_OTHER, ANY, false, NULL, cmd_forward},
    /* The relay never offers STARTTLS; a user that does takes it first. */
    [SMTP_VERB_STARTTLS] = {PEND_OTHER, 0, false, R_NO_STARTTLS, NULL},
    [SMTP_VERB_AUTH] = {PEND_AUTH, IN(PHASE_TLS), false, NULL, cmd_hold},
    [SMTP_VERB_XCLIENT] = {PEND_OTHER, 0, false, R_RESERVED, NULL},
    [SMTP_VERB_XFORWARD] = {PEND_OTHER, 0, false, R_RESERVED, NULL},
    [SMTP_VERB_ETRN] = {PEND_OTHER, GREETED, false, NULL, cmd_forward},
    /* TURN and ATRN reverse the roles: never relayed. */
    [SMTP_VERB_TURN] = {PEND_OTHER, 0, false, R_NOT_IMPL, NULL},
    [SMTP_VERB_ATRN] = {PEND_OTHER, 0, false, R_NOT_IMPL, NULL},
    [SMTP_VERB_BURL] = {PEND_OTHER, GREETED, false, NULL, cmd_forward},
    [SMTP_VERB_INVALID] = {PEND_OTHER, 0, false, R_SYNTAX, NULL},
};

static enum phase phase(const struct relay *r)
{
    if (!r->cfg.tls)
        return PHASE_PLAIN;
    return r->need_ehlo ? PHASE_TLS_GREET : PHASE_TLS;
}

static void yield(struct relay *r)
{
    /* From here until relay_tls_started() the client's bytes are the
     * user's: any plaintext behind STARTTLS is hostile (RFC 3207 §4.2,
     * CVE-2011-0411) and the user drops it. */
    enter_state(r, RELAY_YIELDED);
    (void)relay_fifo_push(r, PEND_TURN, NULL);
    drain(r);
}

static void command(struct relay *r, const uint8_t *line, size_t len)
{
    struct relay_command c = {.line = line, .len = len};
    const char *refuse = NULL;

    r->progress++;
    c.verb = smtp_verb(line, len, &c.arg);
    assert((unsigned)c.verb < sizeof(verbs) / sizeof(verbs[0]));
    const struct verb_rule *v = &verbs[c.verb];

    /* The hook saw a RCPT that waited once already. */
    if (r->hooks.command != NULL && !(c.verb == SMTP_VERB_RCPT && r->rcpt != RELAY_RCPT_IDLE)) {
        switch (r->hooks.command(r->hooks.arg, &c, &refuse)) {
        case RELAY_PASS:
            refuse = NULL;
            break;
        case RELAY_REFUSE:
            assert(refuse != NULL);
            break;
        case RELAY_YIELD:
            yield(r);
            return;
        default:
            assert(!"bad verdict");
            return;
        }
    }
    if (refuse == NULL && !(v->allowed & IN(phase(r))))
        refuse = v->refusal != NULL ? v->refusal : phase_refusal[phase(r)];
    if (refuse != NULL && !v->own_refusal) {
        reply_local(r, refuse);
        return;
    }
    v->handler(r, &c, v, refuse);
}

static void emit_server(void *arg, const uint8_t *p, size_t n)
{
    to_server(arg, p, n);
}

/* The longest line accepted here: an AUTH challenge response or an AUTH
 * command (its initial response, RFC 4954 §4) may be SMTP_AUTH_LINE_MAX,
 * anything else the configured command line limit. The verb is known from
 * the first five octets, before the line is complete. */
static size_t line_limit(const struct relay *r, const uint8_t *p, size_t n)
{
    size_t max = r->cfg.max_line ? r->cfg.max_line : SMTP_CMD_LINE_MAX;

    if (r->state == RELAY_AUTH ||
        (n >= 5 && strncasecmp((const char *)p, "AUTH ", 5) == 0))
        return max > SMTP_AUTH_LINE_MAX ? max : SMTP_AUTH_LINE_MAX;
    return max;
}

/* One line read in RELAY_COMMAND or RELAY_AUTH; returns the bytes used, or
 * 0 when the line is incomplete. */
static size_t client_line(struct relay *r, const uint8_t *p, size_t n)
{
    size_t k = 0;
    bool auth = r->state == RELAY_AUTH;
    int rc = smtp_line(p, n, line_limit(r, p, n), &k);

    if (rc == SMTP_AGAIN)
        return 0;
    if (rc == SMTP_OK) {
        if (auth) {
            r->progress++;
            forward(r, p, k, PEND_AUTH);
            enter_state(r, RELAY_HOLD);
        } else {
            command(r, p, k);
        }
        return r->rcpt == RELAY_RCPT_WAITING ? 0 : k;
    }
    r->progress++;
    if (auth) {
        /* An unusable AUTH response: cancel the exchange (RFC 4954 §4, "*")
         * and let the client see the server's answer to that. */
        forward(r, (const uint8_t *)"*\r\n", 3, PEND_AUTH);
        enter_state(r, RELAY_HOLD);
    } else {
        reply_local(r, rc == SMTP_ERR_TOO_LONG ? SMTP_R_TOO_LONG : SMTP_R_BARE_NL);
    }
    if (rc != SMTP_ERR_TOO_LONG)
        return k;
    /* Skip the rest of the line once the hold, if any, is over. Nothing
     * was consumed: SKIP reads the same bytes again. */
    r->skip_pending = true;
    if (r->state == RELAY_COMMAND)
        enter_state(r, RELAY_COMMAND);
    return 0;
}

size_t relay_client(struct relay *r, const uint8_t *p, size_t n)
{
    size_t off = 0;

    while (off < n) {
        size_t k = 0;
        int rc;

        if (r->error_limit && r->state != RELAY_CLOSED)
            return off; /* the 421 is coming: nothing more is read */
        switch (r->state) {
        case RELAY_CLOSED:
            return n; /* after close nothing matters */
        case RELAY_HOLD:
        case RELAY_YIELDED:
            return off;
        case RELAY_SKIP:
            rc = smtp_skip_line(p + off, n - off, &k);
            off += k;
            if (rc == SMTP_OK) {
                r->skip_pending = false;
                enter_state(r, RELAY_COMMAND);
            }
            break;
        case RELAY_BDAT:
            k = n - off < r->bdat_left ? n - off : (size_t)r->bdat_left;
            if (!r->bdat_discard)
                to_server(r, p + off, k);
            off += k;
            r->bdat_left -= k;
            if (r->bdat_left == 0) {
                r->progress++;
                enter_state(r, RELAY_COMMAND);
            }
            break;
        case RELAY_DATA:
            rc = smtp_data_scan(&r->data, p + off, n - off, &k, emit_server, r);
            off += k;
            r->progress++;
            if (rc == SMTP_OK) {
                (void)relay_fifo_push(r, PEND_DOT, NULL);
                enter_state(r, RELAY_COMMAND);
            } else if (rc == SMTP_ERR_BARE_NL) {
                /* The server never sees an end of data for this message,
                 * so it cannot deliver it. */
                close_with(r, R_BARE_NL_DATA, REASON_BARE_NEWLINE);
                return n;
            }
            break;
        case RELAY_AUTH:
        case RELAY_COMMAND: {
            if (r->count >= RELAY_FIFO_MAX - 1 || r->rcpt == RELAY_RCPT_WAITING)
                return off; /* pipelining depth bound: wait for replies */
            enum relay_state before = r->state;
            k = client_line(r, p + off, n - off);
            if (k == 0 && r->state == before)
                return off; /* an incomplete line */
            off += k;
            break;
        }
        }
    }
    return off;
}

/* ---- server replies ---- */

static void on_keyword_dropped(void *arg, const uint8_t *kw, size_t n)
{
    const struct engine_io *io = arg;
    char word[65];

    if (io->on_debug == NULL)
        return;
    n = n < sizeof(word) - 1 ? n : sizeof(word) - 1;
    memcpy(word, kw, n);
    word[n] = '\0';
    io->on_debug(io->arg, "ehlo_keyword_dropped", word);
}

void relay_ehlo_policy(const struct smtp_ehlo_policy *cfg, const struct engine_io *io,
                       struct smtp_ehlo_policy *pol)
{
    static const struct smtp_ehlo_policy none = {0};

    *pol = cfg != NULL ? *cfg : none;
    pol->dropped = on_keyword_dropped;
    pol->arg = (void *)io;
}

static void reply_ehlo(struct relay *r, const uint8_t *p, size_t len)
{
    struct smtp_ehlo_policy pol;
    uint8_t out[SMTP_REPLY_MAX + 64];
    size_t outlen;
    unsigned flags = 0;

    if (r->cfg.tls)
        flags |= SMTP_EHLO_TLS_ACTIVE;
    else if (r->cfg.offer_starttls)
        flags |= SMTP_EHLO_ADD_STARTTLS;
    relay_ehlo_policy(r->cfg.ehlo, &r->io, &pol);
    int caps = smtp_ehlo_rewrite_ex(p, len, flags, &pol, out, sizeof(out), &outlen);
    if (caps < 0) {
        close_with(r, RELAY_R_PROTOCOL, REASON_PROTOCOL_ERROR);
        return;
    }
    r->caps = (unsigned)caps;
    to_client(r, out, outlen);
}

/*
 * A HELO-only server (RFC 5321 §4.1.1.1 lets an old one answer EHLO with
 * 500 or 502) would leave the client without STARTTLS. The proxy sends it
 * the client's HELO instead and answers the EHLO itself. Only when nothing
 * else is pending (a client that pipelined behind its EHLO gets the
 * server's refusal as it is: the order of what the server has read cannot
 * be changed any more), and with a domain to say.
 */
static bool helo_fallback(struct relay *r)
{
    if (!r->cfg.helo_fallback || r->count > 0 || r->state != RELAY_COMMAND ||
        r->client_helo == NULL)
        return false;
    char line[RELAY_NAME_MAX + 8];
    int n = snprintf(line, sizeof(line), "HELO %s\r\n", r->client_helo);
    to_server(r, line, (size_t)n); /* one write, one line */
    (void)relay_fifo_push(r, PEND_HELO_FALLBACK, NULL);
    return true;
}

static bool domain_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '_' || c == '[' || c == ']' || c == ':';
}

/* The EHLO reply for a HELO-only server: its domain (the HELO reply's first
 * word, else the greeting's) and STARTTLS while the client leg is
 * plaintext, nothing else: every other keyword would be a promise the
 * server behind cannot keep (not even 8BITMIME: a BODY= parameter would
 * reach a server that never heard of it). */
static void reply_own_ehlo(struct relay *r, const uint8_t *p, size_t len)
{
    char domain[256];
    size_t n = 0;

    for (size_t i = 4; i < len && n < sizeof(domain) - 1 && domain_char(p[i]); i++)
        domain[n++] = (char)p[i];
    domain[n] = '\0';
    if (n == 0 || (len > 4 + n && p[4 + n] != ' ' && p[4 + n] != '\r'))
        snprintf(domain, sizeof(domain), "%s",
                 r->server_domain != NULL && r->server_domain[0] ? r->server_domain
                                                                 : "localhost");
    bool starttls = !r->cfg.tls && r->cfg.offer_starttls;
    to_client_str(r, starttls ? "250-" : "250 ");
    to_client_str(r, domain);
    to_client_str(r, starttls ? "\r\n250 STARTTLS\r\n" : "\r\n");
}

static void reply(struct relay *r, const uint8_t *p, size_t len, int code)
{
    struct relay_entry x;
    bool ok = code / 100 == 2;

    r->progress++;
    if (!relay_fifo_head(r, &x)) {
        /* RFC 5321 §3.8: a server may announce its shutdown with 421 at
         * any time; any other reply that answers nothing is an error. */
        if (code == 421) {
            to_client(r, p, len);
            close_with(r, NULL, REASON_BACKEND_CLOSED);
        } else {
            close_with(r, RELAY_R_PROTOCOL, REASON_PROTOCOL_ERROR);
        }
        return;
    }
    enum relay_pending kind = x.kind;
    assert(kind != PEND_LOCAL && kind != PEND_TURN && kind != PEND_CLOSE);
    if (code / 100 == 3 && !(kind == PEND_DATA && code == 354) &&
        !(kind == PEND_AUTH && code == 334) && kind != PEND_USER) {
        /* RFC 5321 §4.2.1: 3xx means "send more". After any other command
         * than DATA (354) and AUTH (334) the server would read what
         * follows as something the proxy reads as commands: the two would
         * frame the session differently (XEXCH50 -> 354). Never relayed. */
        close_with(r, RELAY_R_PROTOCOL, REASON_PROTOCOL_ERROR);
        return;
    }
    relay_fifo_pop(r);

    switch (kind) {
    case PEND_EHLO:
        if (ok) {
            r->in_txn = false;
            reply_ehlo(r, p, len);
            break;
        }
        if ((code == 500 || code == 502) && helo_fallback(r))
            break;
        to_client(r, p, len);
        break;
    case PEND_HELO_FALLBACK:
        if (!ok) {
            to_client(r, p, len); /* the client's EHLO fails as HELO did */
            break;
        }
        r->in_txn = false;
        r->caps = 0; /* no EHLO, no extensions: BDAT is refused */
        reply_own_ehlo(r, p, len);
        break;
    case PEND_HELO:
        if (ok) {
            r->in_txn = false;
            r->caps = 0; /* no EHLO, no extensions: BDAT is refused */
        }
        to_client(r, p, len);
        break;
    case PEND_MAIL:
        if (!ok)
            r->in_txn = false;
        to_client(r, p, len);
        break;
    case PEND_DATA:
        to_client(r, p, len);
        if (code == 354) {
            uint8_t pre[RELAY_PREFIX_MAX];
            size_t n = message_prefix(r, pre);
            smtp_data_init(&r->data, r->cfg.reject_bare_newline);
            enter_state(r, RELAY_DATA);
            if (n > 0)
                to_server(r, pre, n); /* whole lines: the data scan is at a line start */
        } else if (r->state == RELAY_HOLD) {
            enter_state(r, RELAY_COMMAND);
        }
        break;
    case PEND_DOT:
        r->in_txn = false;
        to_client(r, p, len);
        break;
    case PEND_BDAT_LAST:
    case PEND_RSET:
        if (ok)
            r->in_txn = false;
        to_client(r, p, len);
        break;
    case PEND_AUTH:
        to_client(r, p, len);
        if (r->state == RELAY_HOLD)
            enter_state(r, code == 334 ? RELAY_AUTH : RELAY_COMMAND);
        break;
    case PEND_QUIT:
        to_client(r, p, len);
        close_with(r, NULL, REASON_QUIT);
        return;
    case PEND_RCPT:
    case PEND_BDAT:
    case PEND_OTHER:
        to_client(r, p, len);
        break;
    case PEND_USER:
        r->hooks.reply(r->hooks.arg, p, len, code);
        break;
    case PEND_LOCAL:
    case PEND_TURN:
    case PEND_CLOSE:
        break;
    }
    if (code == 421) {
        /* The server is closing the session; so do we. */
        close_with(r, NULL, REASON_BACKEND_CLOSED);
        return;
    }
    drain(r);
}

size_t relay_server(struct relay *r, const uint8_t *p, size_t n)
{
    size_t off = 0;

    while (off < n && r->state != RELAY_CLOSED) {
        size_t k;
        int code;
        int rc = smtp_reply(p + off, n - off, &k, &code);
        if (rc == SMTP_AGAIN)
            return off;
        if (rc != SMTP_OK) {
            close_with(r, RELAY_R_PROTOCOL, REASON_PROTOCOL_ERROR);
            return n;
        }
        reply(r, p + off, k, code);
        off += k;
    }
    return r->state == RELAY_CLOSED ? n : off;
}

void relay_server_eof(struct relay *r)
{
    close_with(r, r->quit ? NULL : RELAY_R_LOST, REASON_BACKEND_CLOSED);
}

void relay_tls_started(struct relay *r, bool ehlo_again)
{
    if (r->state == RELAY_CLOSED)
        return;
    r->cfg.tls = true;
    r->need_ehlo = ehlo_again;
    r->ehlo_sent = false;
    r->in_txn = false;
    r->caps = 0;
    enter_state(r, RELAY_COMMAND);
}

void relay_expect(struct relay *r)
{
    (void)relay_fifo_push(r, PEND_USER, NULL);
}

void relay_close(struct relay *r, const char *reply_text, enum reason reason)
{
    close_with(r, reply_text, reason);
}

bool relay_in_content(const struct relay *r)
{
    return r->state == RELAY_DATA || r->state == RELAY_BDAT;
}
