/*
 * Fuzz target for proxy/smtp.c. Input layout:
 *   byte 0   flags: bits 0-2 the smtp_ehlo_rewrite flags, bit 3 data-scan
 *            starts in reject mode as well
 *   byte 1   seed for the split points
 *   rest     the bytes given to every parser
 * Every parser sees an exactly sized heap copy, so a read past the end is
 * caught by ASan. Invariants checked (abort on violation):
 *   - smtp_line / smtp_skip_line / smtp_reply: spans within the input, and
 *     consistent with a straightforward reading of the input;
 *   - smtp_ehlo_rewrite: output within bounds, a well-formed reply with one
 *     STARTTLS exactly when asked, no AUTH before TLS, no XCLIENT/XFORWARD;
 *   - smtp_data_scan, both modes: any split gives the output, status and
 *     position of a single call; used <= len; normalised output has no bare
 *     CR/LF and no end-of-data before the reported end, which is where RFC
 *     5321 puts it; reject mode stops exactly at the first bare CR/LF.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/smtp.h"
#include "tests/fuzz/fuzz_session.h" /* CHECK */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);

    CHECK(q != NULL);
    if (n)
        memcpy(q, p, n);
    return q;
}

static const uint8_t *find_byte(const uint8_t *p, size_t n, uint8_t c)
{
    return n ? memchr(p, c, n) : NULL;
}

/* ---------- framing ---------- */

static void check_line(const uint8_t *in, size_t len, size_t max)
{
    size_t n = 12345;
    int rc = smtp_line(in, len, max, &n);
    size_t lim = len < max ? len : max;
    const uint8_t *lf = find_byte(in, lim, '\n');

    switch (rc) {
    case SMTP_OK:
        CHECK(lf != NULL && n == (size_t)(lf - in) + 1);
        CHECK(n >= 2 && in[n - 2] == '\r');
        CHECK(find_byte(in, n - 2, '\r') == NULL);
        break;
    case SMTP_AGAIN:
        CHECK(lf == NULL && len < max);
        break;
    case SMTP_ERR_TOO_LONG:
        CHECK(lf == NULL && len >= max);
        break;
    case SMTP_ERR_BARE_NL:
        CHECK(n >= 1 && n <= lim);
        CHECK(in[n - 1] == '\n' || in[n - 1] == '\r');
        break;
    default:
        CHECK(!"smtp_line status");
    }
}

static void check_skip(const uint8_t *in, size_t len)
{
    size_t n = 12345;
    int rc = smtp_skip_line(in, len, &n);
    const uint8_t *lf = find_byte(in, len, '\n');

    if (rc == SMTP_OK)
        CHECK(lf != NULL && n == (size_t)(lf - in) + 1);
    else
        CHECK(rc == SMTP_AGAIN && lf == NULL && n == len);
}

static void check_verb(const uint8_t *in, size_t len)
{
    size_t arg = 12345;
    enum smtp_verb v = smtp_verb(in, len, &arg);

    CHECK(arg <= len);
    CHECK(smtp_verb_str(v) != NULL);
    if (v == SMTP_VERB_BDAT) {
        uint64_t size;
        bool last;
        int rc = smtp_bdat_args(in + arg, len - arg, &size, &last);
        CHECK(rc == SMTP_OK || rc == SMTP_ERR_SYNTAX);
        if (rc == SMTP_OK)
            CHECK(size < 1000000000000000000ull);
    }
    /* BDAT arguments on the raw input as well. */
    uint64_t size;
    bool last;
    int rc = smtp_bdat_args(in, len, &size, &last);
    CHECK(rc == SMTP_OK || rc == SMTP_ERR_SYNTAX);
}

static bool valid_code(const uint8_t *l)
{
    return l[0] >= '2' && l[0] <= '5' && l[1] >= '0' && l[1] <= '5' && l[2] >= '0' &&
           l[2] <= '9';
}

static void check_reply(const uint8_t *in, size_t len)
{
    size_t n = 12345;
    int code = -1;
    int rc = smtp_reply(in, len, &n, &code);

    if (rc == SMTP_OK) {
        CHECK(n >= 5 && n <= len && n <= SMTP_REPLY_MAX);
        CHECK(code >= 200 && code <= 559);
        CHECK(in[n - 2] == '\r' && in[n - 1] == '\n');
        /* Line by line, it is what smtp_reply_line says. */
        struct smtp_reply r = {0};
        size_t off = 0;
        int lrc = SMTP_AGAIN;
        while (off < n) {
            size_t ln;
            CHECK(smtp_line(in + off, n - off, SMTP_REPLY_LINE_MAX, &ln) == SMTP_OK);
            CHECK(valid_code(in + off));
            lrc = smtp_reply_line(&r, in + off, ln);
            off += ln;
            CHECK(lrc == (off == n ? SMTP_OK : SMTP_AGAIN));
        }
        CHECK(r.code == code);
        /* A reply ends where it ends: a prefix through it is the same reply,
         * a shorter one is incomplete. */
        size_t n2;
        int code2;
        CHECK(smtp_reply(in, n, &n2, &code2) == SMTP_OK && n2 == n && code2 == code);
        CHECK(smtp_reply(in, n - 1, &n2, &code2) == SMTP_AGAIN);
    } else if (rc == SMTP_AGAIN) {
        CHECK(len <= SMTP_REPLY_MAX);
    } else {
        CHECK(rc == SMTP_ERR_SYNTAX || rc == SMTP_ERR_TOO_LONG || rc == SMTP_ERR_BARE_NL);
    }
}

/* ---------- EHLO rewrite ---------- */

static bool word_eq(const uint8_t *w, size_t n, const char *name)
{
    size_t k = strlen(name);

    if (n != k)
        return false;
    for (size_t i = 0; i < n; i++) {
        int c = w[i] >= 'a' && w[i] <= 'z' ? w[i] - 32 : w[i];
        if (c != name[i])
            return false;
    }
    return true;
}

static void check_ehlo(const uint8_t *in, size_t len, unsigned flags)
{
    size_t cap = len + 16;
    uint8_t *out = malloc(cap);
    size_t outlen = 12345;
    CHECK(out != NULL);
    int caps = smtp_ehlo_rewrite(in, len, flags, out, cap, &outlen);

    size_t rn;
    int rcode;
    int rrc = smtp_reply(in, len, &rn, &rcode);
    if (rrc == SMTP_OK && rn == len && rcode / 100 == 2)
        CHECK(caps >= 0); /* every complete positive reply is rewritten */
    if (caps < 0) {
        free(out);
        return;
    }
    /* Accepted input is a (possibly incomplete, see smtp_test's
     * test_ehlo_rejects_incomplete) positive reply. */
    CHECK(rrc == SMTP_OK || rrc == SMTP_AGAIN);
    CHECK(outlen <= cap);
    CHECK(outlen >= 6);

    /* The output: well-formed lines, one code, '-' on all but the last. */
    size_t off = 0, line = 0;
    unsigned starttls = 0;
    while (off < outlen) {
        size_t ln;
        CHECK(smtp_line(out + off, outlen - off, SMTP_REPLY_LINE_MAX + 1, &ln) == SMTP_OK);
        CHECK(ln >= 6);
        CHECK(memcmp(out + off, out, 3) == 0 && valid_code(out + off));
        CHECK(out[off + 3] == (off + ln == outlen ? ' ' : '-'));
        const uint8_t *text = out + off + 4;
        size_t tl = ln - 6, kw = 0;
        while (kw < tl && text[kw] != ' ' && text[kw] != '=')
            kw++;
        if (line > 0) {
            if (word_eq(text, kw, "STARTTLS"))
                starttls++;
            CHECK(!word_eq(text, kw, "XCLIENT") && !word_eq(text, kw, "XFORWARD"));
            if (!(flags & SMTP_EHLO_TLS_ACTIVE))
                CHECK(!word_eq(text, kw, "AUTH"));
            if (flags & SMTP_EHLO_NO_CHUNKING)
                CHECK(!word_eq(text, kw, "CHUNKING") && !word_eq(text, kw, "BINARYMIME"));
            if (line == 1 && (flags & SMTP_EHLO_ADD_STARTTLS))
                CHECK(tl == 8 && memcmp(text, "STARTTLS", 8) == 0);
        }
        off += ln;
        line++;
    }
    CHECK(starttls == ((flags & SMTP_EHLO_ADD_STARTTLS) ? 1u : 0u));

    /* Exactly enough room works; one byte less fails cleanly. */
    uint8_t *tight = malloc(outlen);
    size_t tl2;
    CHECK(tight != NULL);
    CHECK(smtp_ehlo_rewrite(in, len, flags, tight, outlen, &tl2) == caps && tl2 == outlen);
    CHECK(memcmp(tight, out, outlen) == 0);
    CHECK(smtp_ehlo_rewrite(in, len, flags, tight, outlen - 1, &tl2) == -1);
    free(tight);
    free(out);
}

/* ---------- DATA ---------- */

struct sink {
    uint8_t *b;
    size_t n, cap;
};

static void on_emit(void *arg, const uint8_t *p, size_t n)
{
    struct sink *s = arg;

    CHECK(n > 0);
    CHECK(s->n + n <= s->cap);
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

struct scan {
    int rc;
    size_t used;
    struct sink out;
};

static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* mode 0: one call; 1: byte by byte; 2: random pieces. */
static void scan(const uint8_t *in, size_t len, bool reject, int mode, uint32_t seed,
                 struct scan *r)
{
    struct smtp_data d;
    size_t off = 0;

    r->out.cap = 2 * len + 16;
    r->out.b = malloc(r->out.cap);
    r->out.n = 0;
    CHECK(r->out.b != NULL);
    smtp_data_init(&d, reject);
    r->rc = SMTP_AGAIN;
    while (off < len) {
        size_t n = len - off;
        if (mode == 1)
            n = 1;
        else if (mode == 2)
            n = 1 + rnd(&seed) % (n < 64 ? n : 64);
        uint8_t *piece = dup_exact(in + off, n);
        size_t used = 12345;
        r->rc = smtp_data_scan(&d, piece, n, &used, on_emit, &r->out);
        free(piece);
        CHECK(used <= n);
        if (r->rc != SMTP_AGAIN) {
            CHECK(r->rc == SMTP_OK || (reject && r->rc == SMTP_ERR_BARE_NL));
            r->used = off + used;
            return;
        }
        CHECK(used == n);
        off += n;
    }
    r->used = off;
}

/* The first byte that is a bare CR (with a successor) or a bare LF. */
static size_t first_bare(const uint8_t *in, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
            return i;
        if (in[i] == '\r' && i + 1 < len && in[i + 1] != '\n')
            return i;
    }
    return len;
}

/* Where RFC 5321 ends the data (just past CRLF.CRLF, the first CRLF possibly
 * being the one that ended DATA), or 0 when it does not. */
static size_t strict_end(const uint8_t *in, size_t len)
{
    if (len >= 3 && memcmp(in, ".\r\n", 3) == 0)
        return 3;
    for (size_t i = 0; i + 5 <= len; i++) {
        if (memcmp(in + i, "\r\n.\r\n", 5) == 0)
            return i + 5;
    }
    return 0;
}

/* Normalising a CR, LF or CRLF to one '\n' makes input and output
 * comparable: the output must be the input with line ends repaired and
 * '.' inserted only in front of a '.' that starts a repaired line. */
static size_t canon(const uint8_t *in, size_t len, uint8_t *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\r') {
            out[o++] = '\n';
            if (i + 1 < len && in[i + 1] == '\n')
                i++;
        } else {
            out[o++] = in[i];
        }
    }
    return o;
}

static void check_data(const uint8_t *in, size_t len, uint32_t seed)
{
    for (int reject = 0; reject <= 1; reject++) {
        struct scan whole, other;
        scan(in, len, reject, 0, 0, &whole);

        size_t end = strict_end(in, len);
        size_t bare = first_bare(in, len);
        if (reject) {
            if (bare < len && (end == 0 || bare < end)) {
                CHECK(whole.rc == SMTP_ERR_BARE_NL);
                CHECK(whole.used == bare + (in[bare] == '\r' ? 1 : 0));
            } else if (end != 0) {
                CHECK(whole.rc == SMTP_OK && whole.used == end);
            } else {
                CHECK(whole.rc == SMTP_AGAIN && whole.used == len);
            }
            /* Reject mode only ever passes input through verbatim. */
            CHECK(whole.out.n <= whole.used);
            CHECK(memcmp(whole.out.b, in, whole.out.n) == 0);
        } else {
            if (end != 0)
                CHECK(whole.rc == SMTP_OK && whole.used == end);
            else
                CHECK(whole.rc == SMTP_AGAIN && whole.used == len);

            /* Well formed, and no end of data before the end. */
            const uint8_t *o = whole.out.b;
            size_t on = whole.out.n;
            for (size_t i = 0; i < on; i++) {
                if (o[i] == '\n')
                    CHECK(i > 0 && o[i - 1] == '\r');
                if (o[i] == '\r')
                    CHECK(i + 1 < on && o[i + 1] == '\n');
            }
            size_t oend = strict_end(o, on);
            if (whole.rc == SMTP_OK)
                CHECK(oend == on);
            else
                CHECK(oend == 0);

            /* Same text, line ends repaired, dots doubled only. */
            size_t consumed = whole.used;
            if (whole.rc == SMTP_AGAIN && consumed > 0 && in[consumed - 1] == '\r')
                consumed--; /* the held-back CR */
            uint8_t *ci = malloc(consumed + 1), *co = malloc(on + 1);
            CHECK(ci != NULL && co != NULL);
            size_t cin = canon(in, consumed, ci), con = canon(o, on, co);
            size_t a = 0, b = 0;
            while (b < con) {
                if (a < cin && ci[a] == co[b]) {
                    a++;
                    b++;
                    continue;
                }
                /* An inserted dot: one of a run of dots at a line start,
                 * the run being at least two long. */
                size_t k = b;
                while (k > 0 && co[k - 1] == '.')
                    k--;
                CHECK(co[b] == '.' && k < b && (k == 0 || co[k - 1] == '\n'));
                b++;
            }
            CHECK(a == cin);
            free(ci);
            free(co);
            /* Without bare line ends the output is the input. */
            if (bare >= consumed) {
                CHECK(on == consumed && memcmp(o, in, on) == 0);
            }
        }

        /* Any split, same result. */
        for (int mode = 1; mode <= 2; mode++) {
            if (mode == 1 && len > 1024)
                continue;
            scan(in, len, reject, mode, seed | 1u, &other);
            CHECK(other.rc == whole.rc);
            CHECK(other.used == whole.used);
            CHECK(other.out.n == whole.out.n);
            CHECK(memcmp(other.out.b, whole.out.b, whole.out.n) == 0);
            free(other.out.b);
        }
        free(whole.out.b);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned flags = data[0] & 7u;
    uint32_t seed = 0x9e3779b9u ^ ((uint32_t)data[1] << 8) ^ (uint32_t)size;
    uint8_t *in = dup_exact(data + 2, size - 2);
    size_t len = size - 2;

    check_line(in, len, SMTP_CMD_LINE_MAX);
    check_line(in, len, 8);
    check_line(in, len, len ? len : 1);
    check_skip(in, len);
    check_verb(in, len);
    check_reply(in, len);
    check_ehlo(in, len, flags);
    check_data(in, len, seed);
    free(in);
    return 0;
}
