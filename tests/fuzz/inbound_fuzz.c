/*
 * Fuzz target for proxy/inbound.c: a whole session driven by fuzz-chosen,
 * interleaved client and server chunks. Input layout:
 *   byte 0   configuration: bit 0 implicit_tls, 1 require_tls,
 *            2 reject_bare_newline, 3 relay mode (inbound_init_relay),
 *            4 relay: server leg is TLS, 5 relay: CHUNKING offered
 *   then     segments separated by 0xff, each starting with a tag:
 *            'C' client bytes in one chunk, 'c' client bytes one at a time,
 *            'S' / 's' the same for the server, 'T' the client's TLS
 *            handshake completes (only after START_TLS), 'E' the server
 *            closes, 'A' abort (timeout); any other tag: the whole segment
 *            goes to the client (even tag) or the server (odd tag).
 * The driver behaves like session.c: unconsumed bytes are kept and offered
 * again after every step.
 *
 * Invariants (abort on violation):
 *   - consumed <= given; in STARTTLS, HANDSHAKE and CLOSED all is consumed
 *     (kept plaintext would be replayed after the handshake);
 *   - no byte reaches the server between an accepted STARTTLS and
 *     inbound_tls_ready, nor after close, nor from a refused BDAT chunk;
 *   - every command line relayed is CRLF-terminated, has no bare CR/LF, fits
 *     the limit, and is never XCLIENT, XFORWARD, STARTTLS, TURN or ATRN, nor
 *     AUTH before TLS, nor a transaction command where policy forbids one;
 *   - the verb the proxy acts on is the verb a lenient server (Postfix's
 *     smtpd_token.c: any white space separates, leading white space is
 *     skipped, NUL ends the string) would read; set INBOUND_FUZZ_STRICT_ONLY
 *     in the environment to skip this one while hunting for other bugs;
 *   - the client receives only whole, well-formed replies, nothing after
 *     CLOSE; START_TLS comes right after the 220 with no reply owed.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/inbound.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                             \
    do {                                                                                     \
        if (!(c)) {                                                                          \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c);        \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

#define PEND_CAP 65536
#define STARTTLS_REPLY "220 2.0.0 Ready to start TLS\r\n"

/* The client stream, checked reply line by reply line. */
struct reply_stream {
    uint8_t line[4096];
    size_t n;
    bool in_multi;
    uint8_t code[3];
    uint8_t tail[sizeof(STARTTLS_REPLY) - 1]; /* last bytes written */
    size_t ntail;
};

struct drv {
    struct inbound e;
    struct inbound_cfg cfg;
    bool relay;
    bool tls_pending; /* START_TLS raised, handshake not done */
    bool closed;      /* CLOSE raised */
    bool lenient;     /* check verbs the way Postfix reads them */
    uint8_t cpend[PEND_CAP];
    size_t ncpend;
    uint8_t spend[PEND_CAP];
    size_t nspend;
    struct reply_stream out;
    /* Message content as the server receives it, from the 354 on. */
    bool data_active;
    bool data_ended;       /* CRLF.CRLF went out */
    uint8_t data_win[5];   /* the last bytes, "\r\n" before the first */
};

static bool is_digit_in(uint8_t c, char lo, char hi)
{
    return c >= (uint8_t)lo && c <= (uint8_t)hi;
}

static void reply_line_done(struct reply_stream *s)
{
    const uint8_t *l = s->line;
    size_t n = s->n;

    CHECK(n >= 5 && l[n - 2] == '\r' && l[n - 1] == '\n');
    CHECK(memchr(l, '\r', n - 2) == NULL);
    CHECK(is_digit_in(l[0], '2', '5') && is_digit_in(l[1], '0', '5') &&
          is_digit_in(l[2], '0', '9'));
    if (s->in_multi)
        CHECK(memcmp(s->code, l, 3) == 0);
    memcpy(s->code, l, 3);
    CHECK(n == 5 || l[3] == ' ' || l[3] == '-');
    s->in_multi = n > 5 && l[3] == '-';
    s->n = 0;
}

static void on_client(void *arg, const uint8_t *p, size_t n)
{
    struct drv *d = arg;
    struct reply_stream *s = &d->out;

    CHECK(n > 0);
    CHECK(!d->closed);
    CHECK(d->e.state != INBOUND_CLOSED);
    for (size_t i = 0; i < n; i++) {
        CHECK(s->n < sizeof(s->line));
        s->line[s->n++] = p[i];
        if (p[i] == '\n')
            reply_line_done(s);
        if (s->ntail == sizeof(s->tail)) {
            memmove(s->tail, s->tail + 1, sizeof(s->tail) - 1);
            s->ntail--;
        }
        s->tail[s->ntail++] = p[i];
    }
}

/* The first word of a command line as Postfix's tokenizer sees it. */
static enum smtp_verb lenient_verb(const uint8_t *line, size_t len)
{
    size_t i = 0, j;
    uint8_t word[16];

#define SPACE(c) ((c) == ' ' || (c) == '\t' || (c) == '\v' || (c) == '\f' || (c) == '\r' || (c) == '\n')
    while (i < len && line[i] != '\0' && SPACE(line[i]))
        i++;
    for (j = i; j < len && line[j] != '\0' && !SPACE(line[j]); j++)
        ;
#undef SPACE
    if (j - i == 0 || j - i > sizeof(word) - 2)
        return SMTP_VERB_UNKNOWN;
    memcpy(word, line + i, j - i);
    word[j - i] = '\r';
    word[j - i + 1] = '\n';
    size_t arg;
    return smtp_verb(word, j - i + 2, &arg);
}

static bool transaction_verb(enum smtp_verb v)
{
    return v == SMTP_VERB_MAIL || v == SMTP_VERB_RCPT || v == SMTP_VERB_DATA ||
           v == SMTP_VERB_BDAT;
}

static void check_command(struct drv *d, const uint8_t *p, size_t n)
{
    size_t arg;
    enum smtp_verb v = smtp_verb(p, n, &arg);

    CHECK(n >= 2 && n <= SMTP_CMD_LINE_MAX);
    CHECK(p[n - 2] == '\r' && p[n - 1] == '\n');
    CHECK(memchr(p, '\r', n - 2) == NULL && memchr(p, '\n', n - 2) == NULL);

    enum smtp_verb checked[2] = {v, d->lenient ? lenient_verb(p, n) : v};
    if (checked[1] != SMTP_VERB_UNKNOWN)
        CHECK(checked[1] == v); /* the proxy and a lenient server agree */
    for (int k = 0; k < 2; k++) {
        enum smtp_verb w = checked[k];
        CHECK(w != SMTP_VERB_XCLIENT && w != SMTP_VERB_XFORWARD && w != SMTP_VERB_STARTTLS &&
              w != SMTP_VERB_TURN && w != SMTP_VERB_ATRN);
        if (w == SMTP_VERB_AUTH)
            CHECK(d->e.tls_active && !d->e.need_ehlo);
        if (transaction_verb(w)) {
            CHECK(!d->e.need_ehlo);
            CHECK(!d->cfg.require_tls || d->e.tls_active);
        }
    }
}

static void on_server(void *arg, const uint8_t *p, size_t n)
{
    struct drv *d = arg;

    CHECK(n > 0);
    CHECK(!d->closed && !d->tls_pending);
    switch (d->e.state) {
    case INBOUND_STARTTLS:
    case INBOUND_HANDSHAKE:
    case INBOUND_CLOSED:
    case INBOUND_HOLD:
    case INBOUND_SKIP:
        CHECK(!"bytes to the server in this state");
        break;
    case INBOUND_BDAT:
        CHECK(!d->e.bdat_discard);
        break;
    case INBOUND_COMMAND:
        check_command(d, p, n);
        break;
    case INBOUND_AUTH:
        CHECK(n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n');
        CHECK(d->e.tls_active);
        break;
    case INBOUND_DATA:
        /* The server sees well-formed lines and exactly one end of data,
         * as the last thing sent in this state. */
        CHECK(d->data_active && !d->data_ended);
        for (size_t i = 0; i < n; i++) {
            CHECK(!d->data_ended);
            memmove(d->data_win, d->data_win + 1, sizeof(d->data_win) - 1);
            d->data_win[sizeof(d->data_win) - 1] = p[i];
            if (p[i] == '\n')
                CHECK(d->data_win[3] == '\r');
            if (d->data_win[3] == '\r')
                CHECK(p[i] == '\n');
            if (memcmp(d->data_win, "\r\n.\r\n", 5) == 0)
                d->data_ended = true;
        }
        break;
    }
}

static void after_call(struct drv *d, bool from_client, size_t given, size_t consumed)
{
    CHECK(consumed <= given);
    CHECK(d->e.count <= INBOUND_FIFO_MAX);
    /* Only whole replies are ever written. */
    CHECK(d->out.n == 0 && !d->out.in_multi);

    unsigned a = inbound_take_actions(&d->e);
    if (a & INBOUND_ACT_START_TLS) {
        CHECK(!d->relay && !d->e.tls_active && !d->tls_pending);
        CHECK(!d->closed);
        CHECK(d->e.state == INBOUND_HANDSHAKE || d->e.state == INBOUND_CLOSED);
        /* The 220 is the last thing written, unless the same call also
         * closed the session (a server talking out of turn behind the reply
         * before STARTTLS): then the close wins and no handshake starts. */
        if (!(a & INBOUND_ACT_CLOSE))
            CHECK(d->out.ntail == sizeof(d->out.tail) &&
                  memcmp(d->out.tail, STARTTLS_REPLY, sizeof(d->out.tail)) == 0);
        CHECK(!inbound_awaiting_server(&d->e));
        d->tls_pending = true;
        /* From here on the client leg carries TLS: no plaintext may be
         * left over for the session to offer again after the handshake. */
        if (from_client)
            CHECK(consumed == given);
        else
            CHECK(d->ncpend == 0);
    }
    if (a & INBOUND_ACT_CLOSE) {
        CHECK(d->e.state == INBOUND_CLOSED && d->e.reason != NULL);
        d->closed = true;
    }
    if (d->e.state == INBOUND_CLOSED)
        CHECK(d->closed || (a & INBOUND_ACT_CLOSE));

    if (d->e.state == INBOUND_DATA && !d->data_active) {
        d->data_active = true;
        d->data_ended = false;
        memcpy(d->data_win, "xxx\r\n", 5);
    } else if (d->e.state != INBOUND_DATA && d->data_active) {
        /* Content ends with the end of data, or the session is over (a
         * bare newline refused, the backend gone). */
        CHECK(d->data_ended || d->e.state == INBOUND_CLOSED);
        /* No CR left dangling at the end of what the server got. */
        CHECK(d->data_win[4] != '\r' || d->e.state == INBOUND_CLOSED);
        d->data_active = false;
    }
}

static size_t drop(uint8_t *buf, size_t *n, size_t k)
{
    memmove(buf, buf + k, *n - k);
    *n -= k;
    return k;
}

static void pump(struct drv *d)
{
    for (int guard = 0; guard < 100000; guard++) {
        size_t k = 0, c;
        if (d->ncpend > 0) {
            enum inbound_state before = d->e.state;
            c = inbound_client(&d->e, d->cpend, d->ncpend);
            after_call(d, true, d->ncpend, c);
            if (before == INBOUND_STARTTLS || before == INBOUND_HANDSHAKE ||
                before == INBOUND_CLOSED || d->e.state == INBOUND_STARTTLS ||
                d->e.state == INBOUND_HANDSHAKE || d->e.state == INBOUND_CLOSED)
                CHECK(c == d->ncpend);
            k += drop(d->cpend, &d->ncpend, c);
        }
        if (d->nspend > 0) {
            c = inbound_server(&d->e, d->spend, d->nspend);
            after_call(d, false, d->nspend, c);
            if (d->e.state == INBOUND_CLOSED)
                CHECK(c == d->nspend);
            k += drop(d->spend, &d->nspend, c);
        }
        if (k == 0)
            return;
    }
    CHECK(!"pump does not settle");
}

static void feed(struct drv *d, bool to_client, const uint8_t *p, size_t n, bool bytewise)
{
    uint8_t *buf = to_client ? d->cpend : d->spend;
    size_t *len = to_client ? &d->ncpend : &d->nspend;
    size_t step = bytewise ? 1 : n;

    for (size_t off = 0; off < n; off += step) {
        size_t k = n - off < step ? n - off : step;
        if (*len + k > PEND_CAP)
            return; /* the session stops reading when its buffer is full */
        memcpy(buf + *len, p + off, k);
        *len += k;
        pump(d);
    }
}

static struct drv drv;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct drv *d = &drv;
    static int lenient = -1;

    if (size < 1)
        return 0;
    if (lenient < 0)
        lenient = getenv("INBOUND_FUZZ_STRICT_ONLY") == NULL;
    memset(d, 0, sizeof(*d));
    d->lenient = lenient;
    d->cfg.implicit_tls = data[0] & 1;
    d->cfg.require_tls = (data[0] >> 1) & 1;
    d->cfg.reject_bare_newline = (data[0] >> 2) & 1;
    d->relay = (data[0] >> 3) & 1;
    struct inbound_io io = {.arg = d, .to_client = on_client, .to_server = on_server};
    if (d->relay) {
        d->cfg.implicit_tls = false;
        inbound_init_relay(&d->e, &d->cfg, &io, (data[0] >> 4) & 1,
                           ((data[0] >> 5) & 1) ? SMTP_CAP_CHUNKING | SMTP_CAP_PIPELINING
                                                : SMTP_CAP_PIPELINING);
        d->cfg = d->e.cfg;
    } else {
        inbound_init(&d->e, &d->cfg, &io);
        if (d->cfg.implicit_tls) {
            /* The handshake completes before the backend is dialled. */
            inbound_tls_ready(&d->e);
            after_call(d, false, 0, 0);
        }
    }

    size_t off = 1;
    while (off < size) {
        const uint8_t *seg = data + off;
        const uint8_t *sep = memchr(seg, 0xff, size - off);
        size_t n = sep ? (size_t)(sep - seg) : size - off;
        off += n + 1;
        if (n == 0)
            continue;
        switch (seg[0]) {
        case 'C':
        case 'c':
            feed(d, true, seg + 1, n - 1, seg[0] == 'c');
            break;
        case 'S':
        case 's':
            feed(d, false, seg + 1, n - 1, seg[0] == 's');
            break;
        case 'T':
            if (d->tls_pending) {
                d->tls_pending = false;
                inbound_tls_ready(&d->e);
                after_call(d, false, 0, 0);
                pump(d);
            }
            break;
        case 'E':
            inbound_server_eof(&d->e);
            after_call(d, false, 0, 0);
            CHECK(d->closed);
            break;
        case 'A':
            inbound_abort(&d->e, "421 4.4.2 Idle timeout\r\n", "idle_timeout");
            after_call(d, false, 0, 0);
            CHECK(d->closed);
            break;
        default:
            feed(d, (seg[0] & 1) == 0, seg, n, false);
            break;
        }
    }
    return 0;
}
