/*
 * The shared harness and invariants of the dialogue fuzz drivers; see
 * fuzz_session.h.
 */
#include "fuzz_session.h"

#include <string.h>

static size_t drop(uint8_t *buf, size_t *n, size_t k)
{
    CHECK(k <= *n);
    memmove(buf, buf + k, *n - k);
    *n -= k;
    return k;
}

void fuzz_pump(struct fuzz_session *s)
{
    for (int guard = 0; guard < 100000; guard++) {
        size_t k = 0;
        if (s->ncpend > 0)
            k += drop(s->cpend, &s->ncpend, s->client(s->arg, s->cpend, s->ncpend));
        if (s->nspend > 0)
            k += drop(s->spend, &s->nspend, s->server(s->arg, s->spend, s->nspend));
        if (k == 0)
            return;
    }
    CHECK(!"pump does not settle");
}

static void feed(struct fuzz_session *s, bool to_client, const uint8_t *p, size_t n,
                 bool bytewise)
{
    uint8_t *buf = to_client ? s->cpend : s->spend;
    size_t *len = to_client ? &s->ncpend : &s->nspend;
    size_t step = bytewise ? 1 : n;

    for (size_t off = 0; off < n; off += step) {
        size_t k = n - off < step ? n - off : step;
        if (*len + k > FUZZ_PEND_CAP)
            return; /* the session stops reading when its buffer is full */
        memcpy(buf + *len, p + off, k);
        *len += k;
        fuzz_pump(s);
    }
}

void fuzz_play(struct fuzz_session *s, const uint8_t *data, size_t size)
{
    size_t off = 0;

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
            feed(s, true, seg + 1, n - 1, seg[0] == 'c');
            break;
        case 'S':
        case 's':
            feed(s, false, seg + 1, n - 1, seg[0] == 's');
            break;
        default:
            if (!s->event(s->arg, seg[0], seg + 1, n - 1))
                feed(s, (seg[0] & 1) == 0, seg, n, false);
            break;
        }
    }
}

/* ---- invariants ---- */

static bool is_digit_in(uint8_t c, char lo, char hi)
{
    return c >= (uint8_t)lo && c <= (uint8_t)hi;
}

static void reply_line_done(struct fuzz_check *c)
{
    const uint8_t *l = c->line;
    size_t n = c->n;

    CHECK(n >= 5 && l[n - 2] == '\r' && l[n - 1] == '\n');
    CHECK(memchr(l, '\r', n - 2) == NULL);
    CHECK(is_digit_in(l[0], '2', '5') && is_digit_in(l[1], '0', '5') &&
          is_digit_in(l[2], '0', '9'));
    if (c->in_multi)
        CHECK(memcmp(c->code, l, 3) == 0);
    memcpy(c->code, l, 3);
    CHECK(n == 5 || l[3] == ' ' || l[3] == '-');
    c->in_multi = n > 5 && l[3] == '-';
    c->n = 0;
}

void fuzz_check_client(struct fuzz_check *c, const uint8_t *p, size_t n)
{
    CHECK(n > 0);
    CHECK(!c->closed);
    for (size_t i = 0; i < n; i++) {
        CHECK(c->n < sizeof(c->line));
        c->line[c->n++] = p[i];
        if (p[i] == '\n')
            reply_line_done(c);
        if (c->ntail == sizeof(c->tail)) {
            memmove(c->tail, c->tail + 1, sizeof(c->tail) - 1);
            c->ntail--;
        }
        c->tail[c->ntail++] = p[i];
    }
}

bool fuzz_check_tail_is(const struct fuzz_check *c, const char *s)
{
    size_t k = strlen(s);

    return k <= c->ntail && memcmp(c->tail + c->ntail - k, s, k) == 0;
}

bool fuzz_lenient(void)
{
    static int lenient = -1; /* the environment is read once */

    if (lenient < 0)
        lenient = getenv("INBOUND_FUZZ_STRICT_ONLY") == NULL && getenv("FUZZ_STRICT_ONLY") == NULL;
    return lenient;
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

static void check_command(struct fuzz_check *c, const uint8_t *p, size_t n)
{
    const struct relay *r = c->relay;
    size_t arg;
    enum smtp_verb v = smtp_verb(p, n, &arg);

    /* AUTH with an initial response may be longer (RFC 4954 §4). */
    CHECK(n >= 2 && n <= (v == SMTP_VERB_AUTH ? SMTP_AUTH_LINE_MAX : SMTP_CMD_LINE_MAX));
    CHECK(p[n - 2] == '\r' && p[n - 1] == '\n');
    CHECK(memchr(p, '\r', n - 2) == NULL && memchr(p, '\n', n - 2) == NULL);

    enum smtp_verb checked[2] = {v, c->lenient ? lenient_verb(p, n) : v};
    if (checked[1] != SMTP_VERB_UNKNOWN)
        CHECK(checked[1] == v); /* the proxy and a lenient server agree */
    for (int k = 0; k < 2; k++) {
        enum smtp_verb w = checked[k];
        CHECK(w != SMTP_VERB_XCLIENT && w != SMTP_VERB_XFORWARD && w != SMTP_VERB_STARTTLS &&
              w != SMTP_VERB_TURN && w != SMTP_VERB_ATRN);
        if (w == SMTP_VERB_AUTH)
            CHECK(r->cfg.tls && !r->need_ehlo);
        if (transaction_verb(w)) {
            CHECK(!r->need_ehlo);
            CHECK(!c->require_tls || r->cfg.tls);
        }
    }
}

void fuzz_check_relayed(struct fuzz_check *c, const uint8_t *p, size_t n)
{
    const struct relay *r = c->relay;

    CHECK(n > 0);
    CHECK(r != NULL);
    CHECK(!c->closed && !c->server_blocked);
    switch (r->state) {
    case RELAY_HOLD:
    case RELAY_SKIP:
    case RELAY_YIELDED:
    case RELAY_CLOSED:
        CHECK(!"bytes to the server in this state");
        break;
    case RELAY_BDAT:
        CHECK(!r->bdat_discard);
        break;
    case RELAY_COMMAND:
        check_command(c, p, n);
        break;
    case RELAY_AUTH:
        CHECK(n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n');
        CHECK(r->cfg.tls);
        break;
    case RELAY_DATA:
        /* The server sees well-formed lines and exactly one end of data,
         * as the last thing sent in this state. */
        CHECK(c->data_active && !c->data_ended);
        for (size_t i = 0; i < n; i++) {
            CHECK(!c->data_ended);
            memmove(c->data_win, c->data_win + 1, sizeof(c->data_win) - 1);
            c->data_win[sizeof(c->data_win) - 1] = p[i];
            if (p[i] == '\n')
                CHECK(c->data_win[3] == '\r');
            if (c->data_win[3] == '\r')
                CHECK(p[i] == '\n');
            if (memcmp(c->data_win, "\r\n.\r\n", 5) == 0)
                c->data_ended = true;
        }
        break;
    }
}

void fuzz_check_after(struct fuzz_check *c)
{
    const struct relay *r = c->relay;

    /* Only whole replies are ever written. */
    CHECK(c->n == 0 && !c->in_multi);
    if (r == NULL)
        return;
    CHECK(r->count <= RELAY_FIFO_MAX);
    if (r->state == RELAY_CLOSED)
        CHECK(r->reason != REASON_NONE);
    if (r->state == RELAY_DATA && !c->data_active) {
        c->data_active = true;
        c->data_ended = false;
        memcpy(c->data_win, "xxx\r\n", 5);
    } else if (r->state != RELAY_DATA && c->data_active) {
        /* Content ends with the end of data, or the session is over (a
         * bare newline refused, the server gone). */
        CHECK(c->data_ended || r->state == RELAY_CLOSED || c->closed);
        /* No CR left dangling at the end of what the server got. */
        CHECK(c->data_win[4] != '\r' || r->state == RELAY_CLOSED || c->closed);
        c->data_active = false;
    }
}
