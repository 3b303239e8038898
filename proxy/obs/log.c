#include "proxy/obs/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * Every line is built in a thread-local buffer and handed to the kernel with
 * one write(2), so lines from different worker threads never interleave and
 * no lock is held while writing. LOG_LINE_MAX bounds the whole line,
 * newline included: a longer event is cut and marked with "..." rather than
 * split over two lines, which a log collector would take for two events.
 */
#define LOG_LINE_MAX 8192
/* The formatted message before it is rendered as text or JSON. */
#define LOG_MSG_MAX LOG_LINE_MAX

/* Room kept back at the end of a line for the truncation marks and the
 * closing characters; the longest is JSON's ...","truncated":true}\n. */
#define LOG_TAIL_RESERVE 32

static atomic_int log_level = LOG_LEVEL_INFO;
static atomic_int log_format = LOG_FORMAT_TEXT;
static atomic_int log_fd = 2;

static _Thread_local char msg_buf[LOG_MSG_MAX];
static _Thread_local char line_buf[LOG_LINE_MAX];

/* A bounded line under construction. Once something did not fit, full is set
 * and every later append is ignored, so callers need not check each one. */
struct line {
    char *p;
    size_t len;
    size_t limit; /* appends stop here; the tail reserve lies beyond */
    bool full;
};

static const char *level_str(enum log_level level)
{
    switch (level) {
    case LOG_LEVEL_ERROR:
        return "error";
    case LOG_LEVEL_WARN:
        return "warn";
    case LOG_LEVEL_INFO:
        return "info";
    case LOG_LEVEL_DEBUG:
        return "debug";
    }
    return "unknown";
}

void log_init(enum log_level level, enum log_format format)
{
    atomic_store(&log_level, (int)level);
    atomic_store(&log_format, (int)format);
}

void log_set_level(enum log_level level)
{
    atomic_store(&log_level, (int)level);
}

void log_set_fd(int fd)
{
    atomic_store(&log_fd, fd);
}

int log_enabled(enum log_level level)
{
    /* Relaxed is enough: a level change only has to become visible soon,
     * and no other memory is published with it. */
    return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

/* Appends n bytes only if all of them fit, so an escape sequence or a
 * UTF-8 character is never cut in half. Returns 0, or -1 once full. */
static int put(struct line *l, const char *s, size_t n)
{
    if (l->full || n > l->limit - l->len) {
        l->full = true;
        return -1;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
    return 0;
}

static int put_str(struct line *l, const char *s)
{
    return put(l, s, strlen(s));
}

/* Appends as much of s as fits without cutting a UTF-8 character, then
 * marks the line full if anything was left out. */
static void put_cut(struct line *l, const char *s, size_t n)
{
    if (l->full)
        return;
    if (n <= l->limit - l->len) {
        put(l, s, n);
        return;
    }
    n = l->limit - l->len;
    /* s[n] is the first byte left out: if it continues a character, the
     * bytes of that character already counted in go too. */
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    put(l, s, n);
    l->full = true;
}

/* Appends without the limit, into the tail reserve; only for the final
 * marker and closing characters, which LOG_TAIL_RESERVE accounts for. */
static void put_tail(struct line *l, const char *s)
{
    size_t n = strlen(s);
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

static void put_timestamp(struct line *l)
{
    struct timespec ts;
    struct tm tm;
    char buf[40];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof(buf) - n, ".%03ldZ", ts.tv_nsec / 1000000);
    put_str(l, buf);
}

/*
 * Length of the well-formed UTF-8 character at s (at most n bytes
 * available), or 0 if the bytes there are not one: overlong forms,
 * surrogates and code points above U+10FFFF are rejected too (RFC 3629 §4).
 */
size_t log_utf8_char_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the 2nd byte */

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/*
 * Appends s as the inside of a JSON string (RFC 8259 §7): quote and
 * backslash escaped, control characters as \u00XX, valid UTF-8 copied, and
 * each byte that is not part of valid UTF-8 replaced by U+FFFD, so the line
 * stays valid JSON whatever bytes a peer put into a logged value.
 */
static void put_json_chars(struct line *l, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    char esc[8];

    for (size_t i = 0; i < n && !l->full;) {
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(l, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            put(l, esc, 6);
            i++;
        } else {
            size_t k = log_utf8_char_len(u + i, n - i);
            if (k == 0) {
                put(l, "\\ufffd", 6);
                i++;
            } else {
                put(l, s + i, k);
                i += k;
            }
        }
    }
}

/* Text mode keeps the message as the caller wrote it, except that control
 * characters become \xNN: a CR or LF from a peer must not start a forged
 * log line. */
static void put_text_chars(struct line *l, const char *s, size_t n)
{
    char esc[8];
    size_t run = 0; /* start of the pending run of plain bytes */

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != 0x7f)
            continue;
        put_cut(l, s + run, i - run);
        snprintf(esc, sizeof(esc), "\\x%02x", c);
        put(l, esc, 4);
        run = i + 1;
    }
    put_cut(l, s + run, n - run);
}

/*
 * One token of a message: either key=value (value possibly "quoted" with
 * \" \\ \xNN escapes, as log_quote writes it) or a free word. Spans point
 * into the message; a quoted value is decoded into the caller's scratch.
 */
struct token {
    const char *key;
    size_t keylen; /* 0 for a free word */
    const char *val;
    size_t vallen;
};

static bool is_key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the quoted string starting after the opening quote at *pp into
 * scratch (at least as large as the input). An unterminated quote, e.g. one
 * cut by truncation, runs to the end of the message. */
static size_t unquote(const char **pp, const char *end, char *scratch)
{
    const char *p = *pp;
    size_t n = 0;

    while (p < end && *p != '"') {
        if (*p == '\\' && p + 1 < end) {
            if (p[1] == '"' || p[1] == '\\') {
                scratch[n++] = p[1];
                p += 2;
                continue;
            }
            if (p[1] == 'x' && end - p >= 4 && hexval(p[2]) >= 0 && hexval(p[3]) >= 0) {
                scratch[n++] = (char)(hexval(p[2]) * 16 + hexval(p[3]));
                p += 4;
                continue;
            }
        }
        scratch[n++] = *p++;
    }
    if (p < end)
        p++; /* closing quote */
    *pp = p;
    return n;
}

/* Reads the next token from *pp; false at the end of the message. */
static bool next_token(const char **pp, const char *end, struct token *t, char *scratch)
{
    const char *p = *pp;

    while (p < end && *p == ' ')
        p++;
    if (p == end)
        return false;

    const char *k = p;
    while (p < end && is_key_char(*p))
        p++;
    if (p > k && p < end && *p == '=') {
        t->key = k;
        t->keylen = (size_t)(p - k);
        p++;
        if (p < end && *p == '"') {
            p++;
            t->val = scratch;
            t->vallen = unquote(&p, end, scratch);
        } else {
            t->val = p;
            while (p < end && *p != ' ')
                p++;
            t->vallen = (size_t)(p - t->val);
        }
    } else if (*k == '"') {
        p = k + 1;
        t->key = NULL;
        t->keylen = 0;
        t->val = scratch;
        t->vallen = unquote(&p, end, scratch);
    } else {
        t->key = NULL;
        t->keylen = 0;
        t->val = k;
        while (p < end && *p != ' ')
            p++;
        t->vallen = (size_t)(p - k);
    }
    *pp = p;
    return true;
}

/* "ts" and "level" belong to the line itself, and "msg" collects the free
 * words; a message pair with one of these keys joins the free words so the
 * object never holds the same key twice. */
static bool is_reserved_key(const struct token *t)
{
    static const char *const reserved[] = {"ts", "level", "msg"};
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (t->keylen == strlen(reserved[i]) && memcmp(t->key, reserved[i], t->keylen) == 0)
            return true;
    return false;
}

/*
 * {"ts":"...","level":"info","msg":"free words","key":"value",...}
 * Every value stays a JSON string, numbers included: a field then has one
 * type in every line, which is what typed log stores want, and no digit
 * string (a session id like "0042") changes meaning.
 */
static void format_json(struct line *l, enum log_level level, const char *msg,
                        size_t msglen, bool cut)
{
    /* A decoded quoted value is never longer than its encoding. */
    static _Thread_local char scratch[LOG_MSG_MAX];
    const char *end = msg + msglen;
    const char *p;
    struct token t;
    bool in_string = false;
    bool any = false;

    put_str(l, "{\"ts\":\"");
    put_timestamp(l);
    put_str(l, "\",\"level\":\"");
    put_str(l, level_str(level));
    put_str(l, "\"");

    /* Pass 1: the free words, joined by one space, into "msg". */
    for (p = msg; !l->full && next_token(&p, end, &t, scratch);) {
        const char *v = t.val;
        size_t vn = t.vallen;
        if (t.keylen > 0 && !is_reserved_key(&t))
            continue;
        if (t.keylen > 0 && !(t.keylen == 3 && memcmp(t.key, "msg", 3) == 0)) {
            /* "ts=..." or "level=...": keep the whole pair as words. */
            v = t.key;
            vn = (size_t)(p - t.key);
        }
        if (put(l, any ? " " : ",\"msg\":\"", any ? 1 : 8) == 0)
            in_string = true;
        any = true;
        put_json_chars(l, v, vn);
    }
    if (any && !l->full) {
        put_str(l, "\"");
        in_string = false;
    }

    /* Pass 2: the pairs, in the order written. */
    for (p = msg; !l->full && next_token(&p, end, &t, scratch);) {
        if (t.keylen == 0 || is_reserved_key(&t))
            continue;
        size_t mark = l->len;
        put_str(l, ",\"");
        put_json_chars(l, t.key, t.keylen);
        if (put_str(l, "\":\"") < 0) {
            /* Not even the key fitted: drop the pair as a whole. */
            l->len = mark;
            break;
        }
        in_string = true;
        put_json_chars(l, t.val, t.vallen);
        if (put_str(l, "\"") == 0)
            in_string = false;
    }

    /* A line cut inside a string gets "..." there, as in text mode; a cut
     * message or one cut between pairs has no string to mark, so every
     * shortened line also says "truncated":true for a machine to find. */
    if (in_string)
        put_tail(l, "...\"");
    if (l->full || cut)
        put_tail(l, ",\"truncated\":true");
    put_tail(l, "}");
}

static void format_text(struct line *l, enum log_level level, const char *msg,
                        size_t msglen)
{
    put_timestamp(l);
    put_str(l, " ");
    put_str(l, level_str(level));
    put_str(l, " ");
    put_text_chars(l, msg, msglen);
    if (l->full)
        put_tail(l, "...");
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            /* Nowhere left to report a failure to log; drop the line. */
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
    if (!log_enabled(level))
        return;

    int saved_errno = errno; /* callers log errno-based messages, then use it */
    bool cut = false;
    int n = vsnprintf(msg_buf, sizeof(msg_buf), fmt, ap);
    size_t msglen;
    if (n < 0) {
        msglen = 0;
    } else if ((size_t)n >= sizeof(msg_buf)) {
        /* Cut the message itself; the line formatter then marks it. */
        msglen = sizeof(msg_buf) - 1;
        cut = true;
    } else {
        msglen = (size_t)n;
    }

    struct line l = {
        .p = line_buf,
        .len = 0,
        .limit = sizeof(line_buf) - LOG_TAIL_RESERVE - 1,
        .full = false,
    };
    if (atomic_load_explicit(&log_format, memory_order_relaxed) == LOG_FORMAT_JSON) {
        format_json(&l, level, msg_buf, msglen, cut);
    } else {
        format_text(&l, level, msg_buf, msglen);
        if (cut && !l.full)
            put_tail(&l, "...");
    }
    put_tail(&l, "\n");

    write_all(atomic_load_explicit(&log_fd, memory_order_relaxed), line_buf, l.len);
    errno = saved_errno;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

static bool needs_quote(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '\\' || *p == 0x7f)
            return true;
    return false;
}

const char *log_quote(const char *s, char *out, size_t outlen)
{
    if (outlen == 0)
        return out;
    if (s == NULL)
        s = "";
    if (!needs_quote(s)) {
        snprintf(out, outlen, "%s", s);
        return out;
    }
    if (outlen < 3) {
        out[0] = '\0';
        return out;
    }

    /* Leave room for the closing quote and the NUL; a sequence that does
     * not fit whole is dropped, so the result always parses back. */
    size_t n = 0, room = outlen - 2;
    out[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        size_t k;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            k = 2;
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02x", *p);
            k = 4;
        } else {
            esc[0] = (char)*p;
            k = 1;
        }
        if (k > room - n)
            break;
        memcpy(out + n, esc, k);
        n += k;
    }
    out[n++] = '"';
    out[n] = '\0';
    return out;
}
