/*
 * The response parser of the HTTPS client; see http_response.h.
 *
 * Lines (the status line, header fields, chunk-size lines, trailer fields)
 * are gathered into p->line, bounded, and parsed whole; body bytes are
 * never copied, only pointed at. A line ends at LF; a CR right before it is
 * dropped, and a CR anywhere else makes the line invalid (RFC 9112 §2.2:
 * a bare CR is not a line end, and reading it as one is how responses get
 * split differently by different readers).
 */
#include "proxy/core/http_response.h"

#include <string.h>

enum state {
    ST_STATUS, /* reading the status line */
    ST_HEADER, /* reading header field lines */
    ST_LENGTH, /* Content-Length body */
    ST_CLOSE, /* body up to the end of the connection */
    ST_CHUNK_SIZE, /* chunk-size [ chunk-ext ] CRLF */
    ST_CHUNK_DATA,
    ST_CHUNK_END, /* the CRLF after chunk data */
    ST_TRAILER, /* trailer fields after the last chunk */
    ST_DONE,
    ST_ERROR,
};

enum line_result { LINE_AGAIN, LINE_DONE, LINE_TOO_LONG };

void http_response_init(struct http_response_parser *p, size_t head_max, size_t body_max)
{
    memset(p, 0, sizeof(*p));
    p->state = ST_STATUS;
    p->head_max = head_max;
    p->body_max = body_max;
}

static enum http_response_event fail(struct http_response_parser *p, enum http_response_event e)
{
    p->state = ST_ERROR;
    p->error = e;
    return e;
}

/* Gathers bytes up to and including the next LF into p->line: at most
 * linemax in the line (line end included), and at most budget bytes taken
 * now. LINE_DONE leaves the line, without its end, in
 * p->line[0..p->linelen) for the caller, who resets linelen. */
static enum line_result take_line(struct http_response_parser *p, const uint8_t *d, size_t n,
                                  size_t *used, size_t linemax, size_t budget)
{
    const uint8_t *lf = memchr(d, '\n', n);
    size_t k = lf != NULL ? (size_t)(lf - d) + 1 : n;

    if (linemax > sizeof(p->line))
        linemax = sizeof(p->line);
    if (k > linemax - p->linelen || k > budget) {
        *used = 0;
        return LINE_TOO_LONG;
    }
    memcpy(p->line + p->linelen, d, k);
    p->linelen += k;
    *used = k;
    if (lf == NULL)
        return LINE_AGAIN;
    p->linelen--; /* the LF */
    if (p->linelen > 0 && p->line[p->linelen - 1] == '\r')
        p->linelen--;
    return LINE_DONE;
}

/* Field values and reason phrases: VCHAR, obs-text, SP and HTAB only
 * (RFC 9110 §5.5); NUL, CR, LF and the other controls are refused. */
static bool text_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* tchar of RFC 9110 §5.6.2. */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool name_is(const char *s, size_t n, const char *want)
{
    if (strlen(want) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(s[i]) != want[i])
            return false;
    return true;
}

/* "HTTP/1.x SP 3DIGIT [ SP reason-phrase ]" (RFC 9112 §4). A missing
 * reason phrase is accepted with or without its SP; the major version must
 * be 1 and any minor version is read as 1.1 would be (RFC 9110 §2.5). */
static enum http_response_event parse_status(struct http_response_parser *p)
{
    const char *s = p->line;
    size_t n = p->linelen;

    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || s[7] < '0' || s[7] > '9' || s[8] != ' ')
        return fail(p, HTTP_RESPONSE_ERR_STATUS_LINE);
    for (size_t i = 9; i < 12; i++)
        if (s[i] < '0' || s[i] > '9')
            return fail(p, HTTP_RESPONSE_ERR_STATUS_LINE);
    if (n > 12 && (s[12] != ' ' || !text_ok(s + 13, n - 13)))
        return fail(p, HTTP_RESPONSE_ERR_STATUS_LINE);
    int status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    /* 101 switches to another protocol, which this client never asks for. */
    if (status < 100 || status > 599 || status == 101)
        return fail(p, HTTP_RESPONSE_ERR_STATUS_LINE);
    p->status = status;
    p->minor_version = s[7] - '0';
    p->state = ST_HEADER;
    return HTTP_RESPONSE_AGAIN;
}

/* Content-Length = 1*DIGIT; a list of equal values ("42, 42") is the same
 * length, unequal ones (also in separate fields) are an error (RFC 9110
 * §8.6, RFC 9112 §6.3 item 5). Values beyond 2^64 saturate: they are over
 * any body_max anyway. */
static enum http_response_event parse_length(struct http_response_parser *p, const char *v,
                                             size_t n)
{
    size_t i = 0;

    for (;;) {
        uint64_t x = 0;
        size_t start = i;
        while (i < n && v[i] >= '0' && v[i] <= '9') {
            unsigned d = (unsigned)(v[i++] - '0');
            x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
        }
        if (i == start)
            return fail(p, HTTP_RESPONSE_ERR_FRAMING);
        if (p->have_length && x != p->content_length)
            return fail(p, HTTP_RESPONSE_ERR_FRAMING);
        p->have_length = true;
        p->content_length = x;
        while (i < n && is_ows(v[i]))
            i++;
        if (i == n)
            return HTTP_RESPONSE_AGAIN;
        if (v[i++] != ',')
            return fail(p, HTTP_RESPONSE_ERR_FRAMING);
        while (i < n && is_ows(v[i]))
            i++;
    }
}

/* Transfer-Encoding: the only coding this client can undo is chunked, and
 * chunked is applied once (RFC 9112 §6.1), so the codings of all fields
 * together must be exactly "chunked". Anything else (gzip, chunked twice)
 * leaves a body that cannot be read, which is an error, not a guess. */
static enum http_response_event parse_te(struct http_response_parser *p, const char *v, size_t n)
{
    if (p->have_te || !name_is(v, n, "chunked"))
        return fail(p, HTTP_RESPONSE_ERR_FRAMING);
    p->have_te = true;
    p->chunked = true;
    return HTTP_RESPONSE_AGAIN;
}

/* Content-Type = type "/" subtype *( OWS ";" OWS parameter ) (RFC 9110
 * §8.3.1); only the media type is kept, lower-cased. One field only: two
 * are two different answers to "what is this". An invalid value is kept as
 * "" (no media type), which no caller accepts. */
static enum http_response_event parse_type(struct http_response_parser *p, const char *v, size_t n)
{
    size_t i = 0, slash = 0;

    if (p->have_type)
        return fail(p, HTTP_RESPONSE_ERR_HEADER);
    p->have_type = true;
    while (i < n && (is_tchar((unsigned char)v[i]) || v[i] == '/')) {
        if (v[i] == '/') {
            if (slash != 0 || i == 0)
                return HTTP_RESPONSE_AGAIN;
            slash = i;
        }
        i++;
    }
    if (slash == 0 || slash + 1 == i || i > HTTP_RESPONSE_MEDIA_TYPE_MAX)
        return HTTP_RESPONSE_AGAIN;
    size_t end = i;
    while (i < n && is_ows(v[i]))
        i++;
    if (i < n && v[i] != ';')
        return HTTP_RESPONSE_AGAIN;
    for (size_t k = 0; k < end; k++)
        p->media_type[k] = lower(v[k]);
    p->media_type[end] = '\0';
    return HTTP_RESPONSE_AGAIN;
}

/* field-name ":" OWS field-value OWS (RFC 9112 §5). No whitespace before
 * the colon (§5.1: such a message must be rejected), no obs-fold (§5.2:
 * a line that starts with whitespace). Only the fields that decide the
 * framing and the media type are looked at; Location and the rest are
 * ignored (a redirect is never followed, RFC 8461 §3.3). */
static enum http_response_event parse_field(struct http_response_parser *p, bool trailer)
{
    const char *s = p->line;
    size_t n = p->linelen, i = 0;

    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i == n || s[i] != ':')
        return fail(p, HTTP_RESPONSE_ERR_HEADER);
    size_t namelen = i++;
    while (i < n && is_ows(s[i]))
        i++;
    while (n > i && is_ows(s[n - 1]))
        n--;
    const char *v = s + i;
    size_t vlen = n - i;
    if (!text_ok(v, vlen))
        return fail(p, HTTP_RESPONSE_ERR_HEADER);
    if (trailer)
        return HTTP_RESPONSE_AGAIN; /* checked for syntax only */
    if (name_is(s, namelen, "content-length"))
        return parse_length(p, v, vlen);
    if (name_is(s, namelen, "transfer-encoding"))
        return parse_te(p, v, vlen);
    if (name_is(s, namelen, "content-type"))
        return parse_type(p, v, vlen);
    return HTTP_RESPONSE_AGAIN;
}

/* The empty line after the header fields: decide the framing (RFC 9112
 * §6.3), or go back for the final response after an interim one. */
static enum http_response_event end_of_head(struct http_response_parser *p)
{
    if (p->status < 200) {
        /* An interim response (RFC 9110 §15.2): a client must be able to
         * parse it even unasked. Its fields mean nothing for the final one;
         * its bytes still count against head_max. */
        p->have_length = p->have_te = p->have_type = p->chunked = false;
        p->content_length = 0;
        p->media_type[0] = '\0';
        p->state = ST_STATUS;
        return HTTP_RESPONSE_AGAIN;
    }
    /* Both framings at once is how request smuggling works (RFC 9112
     * §6.1, §11.2); Transfer-Encoding in HTTP/1.0 means the framing is
     * faulty (§6.1). Either way the message cannot be trusted. */
    if (p->have_te && (p->have_length || p->minor_version == 0))
        return fail(p, HTTP_RESPONSE_ERR_FRAMING);
    if (p->status == 204 || p->status == 304) {
        p->framing = HTTP_RESPONSE_NO_BODY;
        p->state = ST_DONE;
    } else if (p->chunked) {
        p->framing = HTTP_RESPONSE_CHUNKED;
        p->state = ST_CHUNK_SIZE;
    } else if (p->have_length) {
        if (p->content_length > p->body_max)
            return fail(p, HTTP_RESPONSE_ERR_TOO_LARGE);
        p->framing = HTTP_RESPONSE_LENGTH;
        p->remaining = p->content_length;
        p->state = p->remaining > 0 ? ST_LENGTH : ST_DONE;
    } else {
        p->framing = HTTP_RESPONSE_CLOSE;
        p->state = ST_CLOSE;
    }
    return HTTP_RESPONSE_HEAD;
}

/* A head line (status line or header field) is complete. */
static enum http_response_event head_line(struct http_response_parser *p)
{
    if (!text_ok(p->line, p->linelen))
        return fail(p, p->state == ST_STATUS ? HTTP_RESPONSE_ERR_STATUS_LINE
                                             : HTTP_RESPONSE_ERR_HEADER);
    if (p->state == ST_STATUS)
        return parse_status(p);
    if (p->linelen == 0)
        return end_of_head(p);
    return parse_field(p, false);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* chunk-size [ chunk-ext ] (RFC 9112 §7.1): 1*HEXDIG, then optionally BWS
 * ";" and extensions, which are ignored (§7.1.1) but must be text. No sign,
 * no "0x", no spaces before the digits. A size that would take the body
 * past body_max is refused before a byte of it is read. */
static enum http_response_event chunk_size_line(struct http_response_parser *p)
{
    const char *s = p->line;
    size_t n = p->linelen, i = 0;
    uint64_t size = 0;
    int d;

    while (i < n && (d = hexval(s[i])) >= 0) {
        if (size > (UINT64_MAX >> 4))
            return fail(p, HTTP_RESPONSE_ERR_TOO_LARGE);
        size = size * 16 + (uint64_t)d;
        if (size > p->body_max - p->body_len)
            return fail(p, HTTP_RESPONSE_ERR_TOO_LARGE);
        i++;
    }
    if (i == 0)
        return fail(p, HTTP_RESPONSE_ERR_CHUNK);
    if (i < n) {
        while (i < n && is_ows(s[i]))
            i++;
        if (i == n || s[i] != ';' || !text_ok(s + i, n - i))
            return fail(p, HTTP_RESPONSE_ERR_CHUNK);
    }
    if (size == 0) {
        p->state = ST_TRAILER;
    } else {
        p->remaining = size;
        p->state = ST_CHUNK_DATA;
    }
    return HTTP_RESPONSE_AGAIN;
}

/* Hands out up to p->remaining bytes of body from d[0..n). */
static enum http_response_event body_span(struct http_response_parser *p, const uint8_t *d,
                                          size_t n, size_t *used, const uint8_t **body,
                                          size_t *bodylen, int next)
{
    size_t k = p->remaining < n ? (size_t)p->remaining : n;

    if (k == 0)
        return HTTP_RESPONSE_AGAIN;
    p->remaining -= k;
    p->body_len += k;
    *body = d;
    *bodylen = k;
    *used = k;
    if (p->remaining == 0)
        p->state = next;
    return HTTP_RESPONSE_BODY;
}

enum http_response_event http_response_feed(struct http_response_parser *p, const uint8_t *data,
                                            size_t len, size_t *used, const uint8_t **body,
                                            size_t *bodylen)
{
    size_t off = 0;

    *used = 0;
    *body = NULL;
    *bodylen = 0;
    for (;;) {
        const uint8_t *d = data + off;
        size_t n = len - off, k = 0;
        enum http_response_event e = HTTP_RESPONSE_AGAIN;
        enum line_result lr;

        switch (p->state) {
        case ST_ERROR:
            *used = off;
            return p->error;
        case ST_DONE:
            *used = off;
            return HTTP_RESPONSE_DONE;
        case ST_LENGTH:
        case ST_CHUNK_DATA:
            if (n == 0)
                break;
            e = body_span(p, d, n, &k, body, bodylen,
                          p->state == ST_LENGTH ? ST_DONE : ST_CHUNK_END);
            *used = off + k;
            return e;
        case ST_CLOSE:
            if (n == 0)
                break;
            if (n > p->body_max - p->body_len)
                return fail(p, HTTP_RESPONSE_ERR_TOO_LARGE);
            p->body_len += n;
            *body = d;
            *bodylen = n;
            *used = len;
            return HTTP_RESPONSE_BODY;
        case ST_STATUS:
        case ST_HEADER:
            if (n == 0)
                break;
            lr = take_line(p, d, n, &k, sizeof(p->line), p->head_max - p->head_len);
            if (lr == LINE_TOO_LONG)
                return fail(p, HTTP_RESPONSE_ERR_HEAD_TOO_LARGE);
            p->head_len += k;
            off += k;
            if (lr == LINE_AGAIN)
                break;
            e = head_line(p);
            p->linelen = 0;
            if (e != HTTP_RESPONSE_AGAIN) {
                *used = off;
                return e;
            }
            continue;
        case ST_CHUNK_SIZE:
        case ST_CHUNK_END:
            if (n == 0)
                break;
            /* The CRLF after chunk data is an empty line of its own. */
            lr = take_line(p, d, n, &k, p->state == ST_CHUNK_END ? 2 : HTTP_RESPONSE_CHUNK_LINE_MAX,
                           n);
            if (lr == LINE_TOO_LONG)
                return fail(p, HTTP_RESPONSE_ERR_CHUNK);
            off += k;
            if (lr == LINE_AGAIN)
                break;
            if (p->state == ST_CHUNK_END && p->linelen == 0)
                p->state = ST_CHUNK_SIZE;
            else if (p->state == ST_CHUNK_END)
                e = fail(p, HTTP_RESPONSE_ERR_CHUNK);
            else
                e = chunk_size_line(p);
            p->linelen = 0;
            if (e != HTTP_RESPONSE_AGAIN) {
                *used = off;
                return e;
            }
            continue;
        case ST_TRAILER:
            if (n == 0)
                break;
            lr = take_line(p, d, n, &k, sizeof(p->line), p->head_max - p->trailer_len);
            if (lr == LINE_TOO_LONG)
                return fail(p, HTTP_RESPONSE_ERR_HEAD_TOO_LARGE);
            p->trailer_len += k;
            off += k;
            if (lr == LINE_AGAIN)
                break;
            if (p->linelen == 0)
                p->state = ST_DONE;
            else if (!text_ok(p->line, p->linelen) || parse_field(p, true) != HTTP_RESPONSE_AGAIN)
                e = fail(p, HTTP_RESPONSE_ERR_HEADER);
            p->linelen = 0;
            if (e != HTTP_RESPONSE_AGAIN) {
                *used = off;
                return e;
            }
            continue;
        }
        *used = off;
        return HTTP_RESPONSE_AGAIN;
    }
}

enum http_response_event http_response_eof(struct http_response_parser *p, bool clean)
{
    switch (p->state) {
    case ST_DONE:
        return HTTP_RESPONSE_DONE;
    case ST_ERROR:
        return p->error;
    case ST_CLOSE:
        if (clean) {
            p->state = ST_DONE;
            return HTTP_RESPONSE_DONE;
        }
        break;
    default:
        break;
    }
    return fail(p, HTTP_RESPONSE_ERR_TRUNCATED);
}

bool http_response_media_type_is(const struct http_response_parser *p, const char *mt)
{
    return p->media_type[0] != '\0' && name_is(mt, strlen(mt), p->media_type);
}

const char *http_response_event_str(enum http_response_event e)
{
    switch (e) {
    case HTTP_RESPONSE_AGAIN:
        return "again";
    case HTTP_RESPONSE_HEAD:
        return "head";
    case HTTP_RESPONSE_BODY:
        return "body";
    case HTTP_RESPONSE_DONE:
        return "done";
    case HTTP_RESPONSE_ERR_STATUS_LINE:
        return "malformed status line";
    case HTTP_RESPONSE_ERR_HEADER:
        return "malformed header field";
    case HTTP_RESPONSE_ERR_HEAD_TOO_LARGE:
        return "head too large";
    case HTTP_RESPONSE_ERR_FRAMING:
        return "invalid message framing";
    case HTTP_RESPONSE_ERR_CHUNK:
        return "malformed chunk";
    case HTTP_RESPONSE_ERR_TOO_LARGE:
        return "body too large";
    case HTTP_RESPONSE_ERR_TRUNCATED:
        return "truncated";
    }
    return "unknown";
}
