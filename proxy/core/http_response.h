/*
 * http_response: an HTTP/1.1 response as a client reads it (RFC 9112), for
 * the MTA-STS policy fetch (net/https_get.c). An incremental parser: bytes
 * go in as they arrive, split anywhere; out come the head (status, framing,
 * media type) and the body as spans of the input, decoded from chunked
 * transfer coding when the server used it. Strict: whatever is not plainly
 * valid is an error, never guessed at, and every length is bounded (the head
 * by head_max, the body by body_max, a chunk-size line, a header line).
 * Pure: no I/O, no allocation; the parser is one caller-owned struct.
 */
#ifndef SMTP_TLS_PROXY_HTTP_RESPONSE_H
#define SMTP_TLS_PROXY_HTTP_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest status line, header line or trailer line (with its CRLF); a
 * longer one is HTTP_RESPONSE_ERR_HEAD_TOO_LARGE. */
#define HTTP_RESPONSE_LINE_MAX 8192
/* The longest chunk-size line, extensions included (RFC 9112 §7.1.1 lets a
 * recipient limit them). */
#define HTTP_RESPONSE_CHUNK_LINE_MAX 1024
/* The longest media type kept ("type/subtype"); a longer one counts as
 * absent. */
#define HTTP_RESPONSE_MEDIA_TYPE_MAX 127

enum http_response_event {
    HTTP_RESPONSE_AGAIN = 0, /* all input taken: feed more (or report EOF) */
    HTTP_RESPONSE_HEAD, /* the final head is complete: status etc. are set */
    HTTP_RESPONSE_BODY, /* *body holds the next *bodylen bytes of the body */
    HTTP_RESPONSE_DONE, /* the message is complete; later input is ignored */
    HTTP_RESPONSE_ERR_STATUS_LINE, /* not "HTTP/1.x NNN reason", or a 101 */
    HTTP_RESPONSE_ERR_HEADER, /* a malformed or duplicate header field */
    HTTP_RESPONSE_ERR_HEAD_TOO_LARGE, /* head (or trailer) over head_max, or a
                                         line too long */
    HTTP_RESPONSE_ERR_FRAMING, /* Content-Length invalid or in conflict, both
                                * Content-Length and Transfer-Encoding, a coding
                                * other than chunked */
    HTTP_RESPONSE_ERR_CHUNK, /* a malformed chunk-size line or chunk end */
    HTTP_RESPONSE_ERR_TOO_LARGE, /* the body is (or is announced as) over body_max
                                  */
    HTTP_RESPONSE_ERR_TRUNCATED, /* the connection ended before the message did */
};

/* How the body's end is found (RFC 9112 §6.3). */
enum http_response_framing {
    HTTP_RESPONSE_NO_BODY, /* 204 or 304 */
    HTTP_RESPONSE_LENGTH, /* Content-Length */
    HTTP_RESPONSE_CHUNKED, /* Transfer-Encoding: chunked */
    HTTP_RESPONSE_CLOSE, /* neither: the body ends when the connection does */
};

struct http_response_parser {
    /* Set when HTTP_RESPONSE_HEAD has been returned: */
    int status; /* 200..599 (1xx interim responses are skipped) */
    int minor_version; /* HTTP/1.<minor_version> */
    enum http_response_framing framing;
    uint64_t content_length; /* HTTP_RESPONSE_LENGTH only */
    /* Lower-cased "type/subtype" of Content-Type, parameters dropped; ""
     * when absent or not a valid media type. */
    char media_type[HTTP_RESPONSE_MEDIA_TYPE_MAX + 1];
    size_t body_len; /* body bytes returned so far */

    /* Private: */
    int state;
    enum http_response_event error; /* sticky, once an ERR_* was returned */
    size_t head_max, body_max;
    size_t head_len; /* head bytes so far (interim responses included) */
    size_t trailer_len;
    uint64_t remaining; /* of the Content-Length or of the current chunk */
    bool have_length, have_te, have_type, chunked;
    size_t linelen;
    char line[HTTP_RESPONSE_LINE_MAX];
};

/* Readies p for one response whose head (status line, header fields, the
 * empty line; interim 1xx responses count too) has at most head_max bytes
 * and whose body (decoded) at most body_max bytes. Never fails. */
void http_response_init(struct http_response_parser *p, size_t head_max, size_t body_max);

/*
 * Parses from data[0..len) (borrowed; len may be 0) and stops at the first
 * event: *used says how many bytes it took (the caller continues with the
 * rest), and with HTTP_RESPONSE_BODY *body and *bodylen point into data at the
 * body bytes (*bodylen > 0). Call again, with what is left (even nothing:
 * the end of a body may be known without more input), until AGAIN, DONE or
 * an error. HEAD comes once, before any BODY. An error is final: every
 * later call returns it again (*used = 0). Never reads past len, never
 * calls back.
 */
enum http_response_event http_response_feed(struct http_response_parser *p, const uint8_t *data,
                                            size_t len, size_t *used, const uint8_t **body,
                                            size_t *bodylen);

/*
 * The connection ended. clean: it ended with proof that nothing was cut
 * off (TLS close_notify). Returns DONE if the message is complete: it was
 * already, or its body is delimited by the close and the close is clean
 * (RFC 9112 §9.8: such a body is complete only with a closure alert);
 * otherwise HTTP_RESPONSE_ERR_TRUNCATED, or the error already met.
 */
enum http_response_event http_response_eof(struct http_response_parser *p, bool clean);

/* Whether the head's media type is mt (lower case, "type/subtype"); media
 * types compare case-insensitively (RFC 9110 §8.3.1). */
bool http_response_media_type_is(const struct http_response_parser *p, const char *mt);

/* "again" | "head" | "body" | "done" | "malformed status line" | ...: static,
 * for logs and tests. */
const char *http_response_event_str(enum http_response_event e);

#endif
