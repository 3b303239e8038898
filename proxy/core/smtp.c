/*
 * Pure SMTP: see smtp.h. Nothing here allocates or performs I/O, and every
 * loop is bounded by the length it was given.
 */
#include "proxy/core/smtp.h"

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_SCAN 1 /* skip_lines: used when the CPU has AVX2 */
#endif

const char SMTP_R_TOO_LONG[] = "500 5.5.2 Line too long\r\n";
const char SMTP_R_BARE_NL[] = "500 5.5.2 Bare CR or LF in command not allowed\r\n";

int smtp_line(const uint8_t *data, size_t len, size_t max, size_t *linelen)
{
    size_t lim = len < max ? len : max;
    const uint8_t *lf = memchr(data, '\n', lim);

    if (lf == NULL) {
        *linelen = 0;
        return len >= max ? SMTP_ERR_TOO_LONG : SMTP_AGAIN;
    }
    size_t n = (size_t)(lf - data) + 1;
    *linelen = n;
    /* RFC 5321 §2.3.8: a line ends with CRLF, and CR or LF must not occur
     * alone. A bare LF or CR anywhere makes the whole line unacceptable, so
     * that a lenient server behind us can never split it differently. */
    if (n < 2 || data[n - 2] != '\r')
        return SMTP_ERR_BARE_NL;
    if (memchr(data, '\r', n - 2) != NULL)
        return SMTP_ERR_BARE_NL;
    return SMTP_OK;
}

int smtp_skip_line(const uint8_t *data, size_t len, size_t *skipped)
{
    const uint8_t *lf = memchr(data, '\n', len);

    if (lf == NULL) {
        *skipped = len;
        return SMTP_AGAIN;
    }
    *skipped = (size_t)(lf - data) + 1;
    return SMTP_OK;
}

static const struct {
    const char *name;
    enum smtp_verb verb;
} verbs[] = {
    {"HELO", SMTP_VERB_HELO},         {"EHLO", SMTP_VERB_EHLO},
    {"MAIL", SMTP_VERB_MAIL},         {"RCPT", SMTP_VERB_RCPT},
    {"DATA", SMTP_VERB_DATA},         {"BDAT", SMTP_VERB_BDAT},
    {"RSET", SMTP_VERB_RSET},         {"NOOP", SMTP_VERB_NOOP},
    {"QUIT", SMTP_VERB_QUIT},         {"VRFY", SMTP_VERB_VRFY},
    {"EXPN", SMTP_VERB_EXPN},         {"HELP", SMTP_VERB_HELP},
    {"STARTTLS", SMTP_VERB_STARTTLS}, {"AUTH", SMTP_VERB_AUTH},
    {"XCLIENT", SMTP_VERB_XCLIENT},   {"XFORWARD", SMTP_VERB_XFORWARD},
    {"ETRN", SMTP_VERB_ETRN},         {"TURN", SMTP_VERB_TURN},
    {"ATRN", SMTP_VERB_ATRN},         {"BURL", SMTP_VERB_BURL},
};

static int upper(int c)
{
    return c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c;
}

/* Case-insensitive comparison of an ASCII word with a NUL-terminated name. */
static bool word_is(const uint8_t *w, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (name[i] == '\0' || upper(w[i]) != (unsigned char)name[i])
            return false;
    }
    return name[i] == '\0';
}

enum smtp_verb smtp_verb(const uint8_t *line, size_t len, size_t *argoff)
{
    size_t n = 0;

    while (n < len && line[n] != ' ' && line[n] != '\t' && line[n] != '\v' &&
           line[n] != '\f' && line[n] != '\r' && line[n] != '\n' && line[n] != '\0')
        n++;
    *argoff = n < len && line[n] == ' ' ? n + 1 : n;
    /* RFC 5321 §4.1.1: verb, then SP, then arguments. Anything else (which
     * a server such as Postfix may tokenise as another verb) is refused. */
    if (n == 0 || (n < len && line[n] != ' ' && line[n] != '\r') ||
        memchr(line, '\0', len) != NULL)
        return SMTP_VERB_INVALID;
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (word_is(line, n, verbs[i].name))
            return verbs[i].verb;
    }
    return SMTP_VERB_UNKNOWN;
}

const char *smtp_verb_str(enum smtp_verb v)
{
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (verbs[i].verb == v)
            return verbs[i].name;
    }
    return "UNKNOWN";
}

int smtp_bdat_args(const uint8_t *args, size_t len, uint64_t *size, bool *last)
{
    size_t i = 0;
    uint64_t v = 0;

    while (len > 0 && (args[len - 1] == '\r' || args[len - 1] == '\n'))
        len--;
    if (i >= len || args[i] < '0' || args[i] > '9')
        return SMTP_ERR_SYNTAX;
    for (; i < len && args[i] >= '0' && args[i] <= '9'; i++) {
        /* 18 digits cannot overflow; nobody sends a 1 EB chunk. */
        if (i >= 18)
            return SMTP_ERR_SYNTAX;
        v = v * 10 + (uint64_t)(args[i] - '0');
    }
    *size = v;
    *last = false;
    if (i == len)
        return SMTP_OK;
    if (args[i] != ' ')
        return SMTP_ERR_SYNTAX;
    while (i < len && args[i] == ' ')
        i++;
    if (len - i == 4 && word_is(args + i, 4, "LAST")) {
        *last = true;
        return SMTP_OK;
    }
    return SMTP_ERR_SYNTAX;
}

int smtp_reply_line(struct smtp_reply *r, const uint8_t *line, size_t len)
{
    if (len < 5 || len > SMTP_REPLY_LINE_MAX)
        return SMTP_ERR_SYNTAX;
    size_t text = len - 2; /* without CRLF */
    /* RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39. */
    if (line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' || line[2] < '0' ||
        line[2] > '9')
        return SMTP_ERR_SYNTAX;
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (r->code != 0 && r->code != code)
        return SMTP_ERR_SYNTAX;
    if (text > 3 && line[3] != ' ' && line[3] != '-')
        return SMTP_ERR_SYNTAX;
    r->code = code;
    r->lines++;
    r->size += len;
    if (r->lines > SMTP_REPLY_LINES_MAX || r->size > SMTP_REPLY_MAX)
        return SMTP_ERR_SYNTAX;
    return text > 3 && line[3] == '-' ? SMTP_AGAIN : SMTP_OK;
}

int smtp_reply(const uint8_t *data, size_t len, size_t *replylen, int *code)
{
    struct smtp_reply r = {0};
    size_t off = 0;

    for (;;) {
        size_t n;
        int rc = smtp_line(data + off, len - off, SMTP_REPLY_LINE_MAX, &n);
        if (rc == SMTP_AGAIN)
            return off + (len - off) > SMTP_REPLY_MAX ? SMTP_ERR_TOO_LONG : SMTP_AGAIN;
        if (rc != SMTP_OK)
            return rc;
        rc = smtp_reply_line(&r, data + off, n);
        off += n;
        if (rc == SMTP_OK) {
            *replylen = off;
            *code = r.code;
            return SMTP_OK;
        }
        if (rc != SMTP_AGAIN)
            return rc;
    }
}

/* Keywords passed through: their commands are single lines whose framing
 * the proxy tracks, and none of them changes who speaks next. */
static const char *const ehlo_allowed[] = {
    "SIZE",     "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN",   "SMTPUTF8",
    "CHUNKING", "BINARYMIME", "DELIVERBY", "ETRN",               "HELP",  "VRFY",
    "EXPN",     "MTRK",       "NO-SOLICITING", "MT-PRIORITY",    "RRVS",  "LIMITS",
    "FUTURERELEASE",
};

static const struct {
    const char *name;
    unsigned cap;
} ehlo_caps[] = {
    {"STARTTLS", SMTP_CAP_STARTTLS},     {"PIPELINING", SMTP_CAP_PIPELINING},
    {"CHUNKING", SMTP_CAP_CHUNKING},     {"AUTH", SMTP_CAP_AUTH},
    {"SIZE", SMTP_CAP_SIZE},             {"8BITMIME", SMTP_CAP_8BITMIME},
    {"SMTPUTF8", SMTP_CAP_SMTPUTF8},     {"BINARYMIME", SMTP_CAP_BINARYMIME},
    {"REQUIRETLS", SMTP_CAP_REQUIRETLS},
};

static unsigned keyword_cap(const uint8_t *kw, size_t n)
{
    for (size_t i = 0; i < sizeof(ehlo_caps) / sizeof(ehlo_caps[0]); i++) {
        if (word_is(kw, n, ehlo_caps[i].name))
            return ehlo_caps[i].cap;
    }
    return 0;
}

/* Keywords the proxy owns: no configuration passes or drops them. */
static const char *const ehlo_owned[] = {"STARTTLS", "AUTH", "REQUIRETLS", "XCLIENT",
                                         "XFORWARD"};

static bool word_in(const uint8_t *kw, size_t n, const char *const *list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (word_is(kw, n, list[i]))
            return true;
    return false;
}

bool smtp_ehlo_keyword_configurable(const char *kw)
{
    size_t n = strlen(kw);

    if (n == 0 || n > 64 || kw[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = kw[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return false;
    }
    return !word_in((const uint8_t *)kw, n, ehlo_owned,
                    sizeof(ehlo_owned) / sizeof(ehlo_owned[0]));
}

static bool keyword_kept(const uint8_t *kw, size_t n, unsigned flags,
                         const struct smtp_ehlo_policy *pol)
{
    bool owned = word_in(kw, n, ehlo_owned, sizeof(ehlo_owned) / sizeof(ehlo_owned[0]));

    if (pol != NULL && !owned) {
        if (word_in(kw, n, (const char *const *)pol->discard, pol->ndiscard))
            return false;
        if (word_in(kw, n, (const char *const *)pol->pass, pol->npass) &&
            !((flags & SMTP_EHLO_NO_CHUNKING) &&
              (word_is(kw, n, "CHUNKING") || word_is(kw, n, "BINARYMIME"))))
            return true;
    }
    if (flags & SMTP_EHLO_TLS_ACTIVE) {
        /* Over TLS the backend may offer AUTH: the password is protected. */
        if (word_is(kw, n, "AUTH") || word_is(kw, n, "REQUIRETLS"))
            return true;
    }
    if ((flags & SMTP_EHLO_NO_CHUNKING) &&
        (word_is(kw, n, "CHUNKING") || word_is(kw, n, "BINARYMIME")))
        return false;
    for (size_t i = 0; i < sizeof(ehlo_allowed) / sizeof(ehlo_allowed[0]); i++) {
        if (word_is(kw, n, ehlo_allowed[i]))
            return true;
    }
    return false;
}

/* Writes one reply line "ddd" sep text CRLF; false when out is too small. */
static bool put_line(uint8_t *out, size_t outcap, size_t *o, const uint8_t *code, char sep,
                     const uint8_t *text, size_t n)
{
    if (outcap - *o < 4 + n + 2)
        return false;
    memcpy(out + *o, code, 3);
    out[*o + 3] = (uint8_t)sep;
    memcpy(out + *o + 4, text, n);
    memcpy(out + *o + 4 + n, "\r\n", 2);
    *o += 4 + n + 2;
    return true;
}

int smtp_ehlo_rewrite(const uint8_t *reply, size_t len, unsigned flags, uint8_t *out,
                      size_t outcap, size_t *outlen)
{
    return smtp_ehlo_rewrite_ex(reply, len, flags, NULL, out, outcap, outlen);
}

int smtp_ehlo_rewrite_ex(const uint8_t *reply, size_t len, unsigned flags,
                         const struct smtp_ehlo_policy *policy, uint8_t *out, size_t outcap,
                         size_t *outlen)
{
    /* Kept lines as (text offset, text length) pairs, line 0 first. */
    size_t start[SMTP_REPLY_LINES_MAX + 1], tlen[SMTP_REPLY_LINES_MAX + 1];
    size_t nkept = 0, off = 0;
    unsigned caps = 0;
    int last = SMTP_AGAIN;
    bool first = true;
    struct smtp_reply r = {0};
    static const uint8_t starttls[] = "STARTTLS";

    while (off < len) {
        size_t n;
        if (smtp_line(reply + off, len - off, SMTP_REPLY_LINE_MAX, &n) != SMTP_OK)
            return -1;
        int rc = smtp_reply_line(&r, reply + off, n);
        if (rc != SMTP_OK && rc != SMTP_AGAIN)
            return -1;
        const uint8_t *text = reply + off + 4;
        size_t textlen = n > 6 ? n - 6 : 0;
        if (first) {
            start[nkept] = off + 4;
            tlen[nkept++] = textlen;
            first = false;
        } else {
            size_t kw = 0;
            while (kw < textlen && text[kw] != ' ' && text[kw] != '=')
                kw++;
            caps |= keyword_cap(text, kw);
            if (keyword_kept(text, kw, flags, policy)) {
                start[nkept] = off + 4;
                tlen[nkept++] = textlen;
            } else if (policy != NULL && policy->dropped != NULL && out != NULL) {
                policy->dropped(policy->arg, text, kw);
            }
        }
        off += n;
        last = rc;
        if (rc == SMTP_OK)
            break;
    }
    if (off != len || last != SMTP_OK || r.code / 100 != 2)
        return -1;

    if (out == NULL)
        return (int)caps; /* only the capabilities were wanted */
    size_t o = 0;
    size_t total = nkept + ((flags & SMTP_EHLO_ADD_STARTTLS) ? 1 : 0);
    size_t line = 0;
    for (size_t i = 0; i < nkept; i++) {
        if (!put_line(out, outcap, &o, reply, ++line < total ? '-' : ' ', reply + start[i],
                      tlen[i]))
            return -1;
        if (i == 0 && (flags & SMTP_EHLO_ADD_STARTTLS)) {
            if (!put_line(out, outcap, &o, reply, ++line < total ? '-' : ' ', starttls,
                          sizeof(starttls) - 1))
                return -1;
        }
    }
    *outlen = o;
    return (int)caps;
}

enum data_state {
    D_BOL,    /* at the start of a line, as both we and the server see it */
    D_MID,    /* inside a line */
    D_CR,     /* a CR inside a line, held back */
    D_DOT,    /* a '.' at the start of a line */
    D_DOT_CR, /* ".<CR>" at the start of a line, CR held back */
    D_FIXBOL, /* after a CRLF made of a bare CR: a line start for the server only */
    D_LFBOL,  /* after a CRLF made of a bare LF: a line start for both */
    D_LFDOT,  /* a '.' right after it */
};

void smtp_data_init(struct smtp_data *d, bool reject_bare)
{
    d->state = D_BOL;
    d->reject_bare = reject_bare;
}

/* The index of the first CR or LF in in[i, len), or len. Message content
 * is almost all ordinary line text, so this is where smtp_data_scan spends
 * its time: 16 bytes per step with SSE2 (8 with plain 64-bit words
 * elsewhere) rather than one. Never reads at or past len. */
static size_t find_crlf(const uint8_t *in, size_t i, size_t len)
{
#if defined(__SSE2__)
    const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
    while (len - i >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(in + i));
        unsigned m = (unsigned)_mm_movemask_epi8(
            _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
        if (m != 0)
            return i + (size_t)__builtin_ctz(m);
        i += 16;
    }
#else
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    while (len - i >= 8) {
        uint64_t v, a, b;
        memcpy(&v, in + i, 8);
        a = v ^ (ones * '\r');
        b = v ^ (ones * '\n');
        /* A zero byte in a or b: exact test (no false positives). */
        a = ~(((a & ~highs) + ~highs) | a) & highs;
        b = ~(((b & ~highs) + ~highs) | b) & highs;
        if ((a | b) != 0)
            break; /* the byte loop below finds which */
        i += 8;
    }
#endif
    while (i < len && in[i] != '\r' && in[i] != '\n')
        i++;
    return i;
}

/* An ordinary line end: CRLF followed by a byte that keeps the scan in
 * D_MID (not '.', CR or LF). Needs len - i >= 3. */
static bool plain_eol(const uint8_t *in, size_t i)
{
    return in[i] == '\r' && in[i + 1] == '\n' && in[i + 2] != '.' && in[i + 2] != '\r' &&
           in[i + 2] != '\n';
}

#if defined(HAVE_AVX2_SCAN)
/* One 64-byte block of skip_lines: 0 when every CR in it starts a
 * plain_eol() and every LF follows a CR (carry: in[-1] is a CR; updated),
 * else the block's bad CR/LF positions as bits. cr, lf and sp have bit j
 * set when in[j] is a CR, an LF, or any of '.', CR and LF; in[64] and
 * in[65] are read too. */
static inline uint64_t bad_eols(const uint8_t *in, uint64_t cr, uint64_t lf, uint64_t sp,
                                uint64_t *carry)
{
    uint64_t n0 = in[64], n1 = in[65];
    uint64_t lf1 = (lf >> 1) | (uint64_t)(n0 == '\n') << 63;
    uint64_t sp2 = (sp >> 2) | (uint64_t)(n0 == '\r' || n0 == '\n' || n0 == '.') << 62 |
                   (uint64_t)(n1 == '\r' || n1 == '\n' || n1 == '.') << 63;
    uint64_t crp = (cr << 1) | *carry;

    *carry = cr >> 63;
    return (cr & ~lf1) | (lf & ~crp) | (cr & lf1 & sp2);
}

/* The blocks of skip_lines, from in[*i] while 66 bytes are left: the index
 * of the first bad CR/LF, or len with *i past the clean blocks. AVX2, so
 * only when the CPU has it (any x86-64 since 2015). */
__attribute__((target("avx2"))) static size_t skip_blocks_avx2(const uint8_t *in, size_t *i,
                                                               size_t len, uint64_t *carry)
{
    const __m256i vcr = _mm256_set1_epi8('\r'), vlf = _mm256_set1_epi8('\n');
    const __m256i vdot = _mm256_set1_epi8('.');

    for (size_t j = *i; len - j >= 66; j += 64, *i = j) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(in + j));
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(in + j + 32));
        __m256i ca = _mm256_cmpeq_epi8(a, vcr), cb = _mm256_cmpeq_epi8(b, vcr);
        __m256i la = _mm256_cmpeq_epi8(a, vlf), lb = _mm256_cmpeq_epi8(b, vlf);
        __m256i sa = _mm256_or_si256(_mm256_or_si256(ca, la), _mm256_cmpeq_epi8(a, vdot));
        __m256i sb = _mm256_or_si256(_mm256_or_si256(cb, lb), _mm256_cmpeq_epi8(b, vdot));
        uint64_t cr =
            (uint32_t)_mm256_movemask_epi8(ca) | (uint64_t)(uint32_t)_mm256_movemask_epi8(cb) << 32;
        uint64_t lf =
            (uint32_t)_mm256_movemask_epi8(la) | (uint64_t)(uint32_t)_mm256_movemask_epi8(lb) << 32;
        uint64_t sp =
            (uint32_t)_mm256_movemask_epi8(sa) | (uint64_t)(uint32_t)_mm256_movemask_epi8(sb) << 32;
        uint64_t bad = bad_eols(in + j, cr, lf, sp, carry);
        if (bad != 0)
            return j + (size_t)__builtin_ctzll(bad);
    }
    return len;
}
#endif

/* From in[i] (inside an ordinary line, in[i - 1] not CR), the index of
 * the first CR or LF that does not start a plain_eol() lying wholly before
 * len, or len. 64 bytes at a time: the CR, LF and '.' positions come out
 * as bit masks, and a block whose every CR starts a plain_eol() and whose
 * every LF follows a CR is passed with no branch per line (the benchmark's
 * lines are 78 bytes: a find_crlf call per line, and its mispredicted end,
 * were most of the scan). The last bytes go through find_crlf. Never reads
 * at or past len. Without AVX2, find_crlf line by line as before. */
static size_t skip_lines(const uint8_t *in, size_t i, size_t len)
{
#if defined(HAVE_AVX2_SCAN)
    if (__builtin_cpu_supports("avx2")) {
        uint64_t carry = 0; /* in[i - 1] is a CR */
        size_t bad = skip_blocks_avx2(in, &i, len, &carry);
        if (bad != len)
            return bad;
        /* A CR ending the last clean block starts a plain_eol(): go back
         * to it, so that its LF is not taken for a bare one. */
        i -= (size_t)carry;
    }
#endif
    i = find_crlf(in, i, len);
    while (len - i >= 3 && plain_eol(in, i))
        i = find_crlf(in, i + 3, len);
    return i;
}

static void flush(smtp_emit_cb emit, void *arg, const uint8_t *in, size_t from, size_t to)
{
    if (to > from)
        emit(arg, in + from, to - from);
}

int smtp_data_scan(struct smtp_data *d, const uint8_t *in, size_t len, size_t *used,
                   smtp_emit_cb emit, void *arg)
{
    static const uint8_t crlf[] = "\r\n";
    static const uint8_t dot[] = ".";
    size_t i = 0, run = 0;

    while (i < len) {
        uint8_t c = in[i];
        bool bare_lf = false, bare_cr = false;

        switch ((enum data_state)d->state) {
        case D_LFBOL:
            /* A bare LF ends a line, as Postfix's "normalize" has it: the
             * client dot-stuffed the line after it (smtplib does), so its
             * leading '.' is a stuffing dot, relayed as it is... */
            if (c == '.') {
                d->state = D_LFDOT;
                i++;
                break;
            }
            d->state = D_MID;
            continue;
        case D_LFDOT:
            /* ...except a lone "." there: under RFC 5321 it ends nothing
             * (no CRLF before it), so it is relayed stuffed and the server
             * does not end the message either. */
            if (c == '\r' || c == '\n') {
                flush(emit, arg, in, run, i);
                emit(arg, dot, 1);
                run = i;
            }
            d->state = D_MID;
            continue;
        case D_FIXBOL:
            if (c == '.') {
                /* Under the strict reading this '.' sits inside a line; a
                 * lenient server sees it at a line start, so stuff it. */
                flush(emit, arg, in, run, i);
                emit(arg, dot, 1);
                run = i;
                d->state = D_MID;
                i++;
                break;
            }
            d->state = D_MID;
            /* FALLTHROUGH */
        case D_MID:
        case D_BOL:
            if (d->state == D_BOL && c == '.') {
                d->state = D_DOT;
                i++;
                break;
            }
            if (c == '\n') {
                bare_lf = true;
                break;
            }
            if (c == '\r') {
                if (i + 1 < len && in[i + 1] == '\n') {
                    i += 2;
                    d->state = D_BOL;
                } else if (i + 1 < len) {
                    flush(emit, arg, in, run, i);
                    run = ++i;
                    d->state = D_CR;
                    bare_cr = true;
                } else {
                    flush(emit, arg, in, run, i);
                    run = ++i;
                    d->state = D_CR;
                }
                break;
            }
            d->state = D_MID;
            /* Fast path: the rest of an ordinary line, and of the lines
             * after it as long as each CRLF is followed by a byte that
             * would take D_BOL straight back here (not '.', CR or LF). */
            i = skip_lines(in, i + 1, len);
            break;
        case D_CR:
            if (c == '\n') {
                emit(arg, crlf, 2);
                run = ++i;
                d->state = D_BOL;
            } else {
                bare_cr = true;
            }
            break;
        case D_DOT:
            if (c == '\r') {
                if (i + 1 < len && in[i + 1] == '\n') {
                    /* <CRLF>.<CRLF>: the end of the data. */
                    i += 2;
                    flush(emit, arg, in, run, i);
                    *used = i;
                    d->state = D_BOL;
                    return SMTP_OK;
                }
                flush(emit, arg, in, run, i);
                run = ++i;
                d->state = D_DOT_CR;
                if (i < len)
                    bare_cr = true;
            } else if (c == '\n') {
                bare_lf = true;
            } else {
                d->state = D_MID;
                i++;
            }
            break;
        case D_DOT_CR:
            if (c == '\n') {
                emit(arg, crlf, 2);
                *used = i + 1;
                d->state = D_BOL;
                return SMTP_OK;
            }
            bare_cr = true;
            break;
        }

        if (!bare_lf && !bare_cr)
            continue;
        /* A bare CR (held back, next byte in[i] not yet consumed) or a bare
         * LF at in[i]. */
        flush(emit, arg, in, run, i);
        if (d->reject_bare) {
            *used = i;
            return SMTP_ERR_BARE_NL;
        }
        bool after_dot = d->state == D_DOT || d->state == D_DOT_CR;
        if (after_dot) {
            /* "." then our CRLF would end the message early: keep the line
             * a non-terminator by doubling the dot. */
            emit(arg, dot, 1);
        }
        emit(arg, crlf, 2);
        if (bare_lf)
            i++;
        run = i;
        d->state = bare_lf ? D_LFBOL : D_FIXBOL;
    }
    flush(emit, arg, in, run, i);
    *used = len;
    return SMTP_AGAIN;
}
