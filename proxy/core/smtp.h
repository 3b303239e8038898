/*
 * smtp: the pure SMTP layer. Line framing with limits, command verbs, reply
 * parsing, the EHLO keyword rewrite and DATA/BDAT content tracking. No I/O,
 * no allocation: bytes in, spans and verdicts out. Every function here only
 * reads the bytes it is given and never past them.
 */
#ifndef SMTP_TLS_PROXY_SMTP_H
#define SMTP_TLS_PROXY_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_status {
    SMTP_OK = 0,
    SMTP_AGAIN = 1,           /* need more bytes */
    SMTP_ERR_TOO_LONG = -1,   /* no line end within the limit */
    SMTP_ERR_BARE_NL = -2,    /* bare CR or LF (RFC 5321 §2.3.8) */
    SMTP_ERR_SYNTAX = -3,     /* malformed reply or argument */
};

/*
 * RFC 5321 §4.5.3.1.4 sets 512 octets for a command line, and SMTP
 * extensions raise it: SIZE (RFC 1870), DSN's ORCPT/ENVID/RET/NOTIFY (RFC
 * 3461, up to +500 for RCPT), AUTH= (RFC 4954), SMTPUTF8 addresses (RFC 6531)
 * and REQUIRETLS together make real MAIL and RCPT lines well over 1 KB, so
 * the default is 4096 octets including CRLF (a listener's
 * max_command_line changes it). An AUTH line with an initial response, and
 * every line answering an AUTH challenge, may be 12288 octets (RFC 4954
 * §4; XOAUTH2 tokens are over 1 KB). Replies get 1024 octets per line and
 * are bounded in lines and total size.
 */
#define SMTP_CMD_LINE_MAX 4096
#define SMTP_AUTH_LINE_MAX 12288
#define SMTP_REPLY_LINE_MAX 1024
#define SMTP_REPLY_LINES_MAX 100
#define SMTP_REPLY_MAX 16384

/*
 * Finds the first CRLF-terminated line in data[0, len). Returns SMTP_OK with
 * *linelen = its length including CRLF; SMTP_AGAIN when there is no LF yet
 * and fewer than max bytes; SMTP_ERR_TOO_LONG when max bytes hold no line
 * end; SMTP_ERR_BARE_NL when the line holds a CR not followed by LF or ends
 * in a LF without CR (*linelen then covers the offending line through its
 * LF, so the caller can skip it whole; a bare CR with no LF in sight yet
 * gives SMTP_AGAIN, since the line is refused whole once its end arrives).
 */
int smtp_line(const uint8_t *data, size_t len, size_t max, size_t *linelen);

/* The replies to a command line refused by smtp_line (RFC 3463 codes). */
extern const char SMTP_R_TOO_LONG[];
extern const char SMTP_R_BARE_NL[];

/* Skips to the end of an overlong line: SMTP_OK with *skipped covering the
 * LF, or SMTP_AGAIN with *skipped = len. */
int smtp_skip_line(const uint8_t *data, size_t len, size_t *skipped);

enum smtp_verb {
    SMTP_VERB_UNKNOWN = 0,
    SMTP_VERB_HELO,
    SMTP_VERB_EHLO,
    SMTP_VERB_MAIL,
    SMTP_VERB_RCPT,
    SMTP_VERB_DATA,
    SMTP_VERB_BDAT,
    SMTP_VERB_RSET,
    SMTP_VERB_NOOP,
    SMTP_VERB_QUIT,
    SMTP_VERB_VRFY,
    SMTP_VERB_EXPN,
    SMTP_VERB_HELP,
    SMTP_VERB_STARTTLS,
    SMTP_VERB_AUTH,
    SMTP_VERB_XCLIENT,
    SMTP_VERB_XFORWARD,
    SMTP_VERB_ETRN,
    SMTP_VERB_TURN,   /* TURN/ATRN reverse the roles: never relayed */
    SMTP_VERB_ATRN,
    SMTP_VERB_BURL,
    SMTP_VERB_INVALID, /* leading white space, NUL, or a verb not ended by SP */
};

/* The verb of a command line (CRLF included or not), case-insensitive, and
 * where its arguments start (*argoff: past the verb and one space, or len).
 * A line that other servers could split differently — leading white space,
 * a NUL, a verb followed by a tab — is SMTP_VERB_INVALID, so a verb the
 * proxy must intercept can never slip past it disguised. */
enum smtp_verb smtp_verb(const uint8_t *line, size_t len, size_t *argoff);
const char *smtp_verb_str(enum smtp_verb v);

/* Parses BDAT's "size [LAST]" (RFC 3030 §2). */
int smtp_bdat_args(const uint8_t *args, size_t len, uint64_t *size, bool *last);

/* One reply being assembled line by line (RFC 5321 §4.2). */
struct smtp_reply {
    int code;        /* 0 until the first line */
    unsigned lines;
    size_t size;
};

/*
 * Feeds one reply line (including CRLF). SMTP_OK: that was the last line;
 * SMTP_AGAIN: continuation lines follow; SMTP_ERR_SYNTAX: not "ddd[ -]text",
 * a code that changes between lines, or over the line/size bounds.
 */
int smtp_reply_line(struct smtp_reply *r, const uint8_t *line, size_t len);

/*
 * Finds one complete reply at the head of data. SMTP_OK with *replylen and
 * *code; SMTP_AGAIN when incomplete (within bounds); SMTP_ERR_SYNTAX or
 * SMTP_ERR_TOO_LONG / SMTP_ERR_BARE_NL when it can never be a valid reply.
 */
int smtp_reply(const uint8_t *data, size_t len, size_t *replylen, int *code);

/* EHLO keywords the rewrite knows about, as bits of its return value. */
enum smtp_cap {
    SMTP_CAP_STARTTLS = 1u << 0,
    SMTP_CAP_PIPELINING = 1u << 1,
    SMTP_CAP_CHUNKING = 1u << 2,
    SMTP_CAP_AUTH = 1u << 3,
    SMTP_CAP_SIZE = 1u << 4,
    SMTP_CAP_8BITMIME = 1u << 5,
    SMTP_CAP_SMTPUTF8 = 1u << 6,
    SMTP_CAP_BINARYMIME = 1u << 7,
    SMTP_CAP_REQUIRETLS = 1u << 8,
};

/* How to rewrite: */
enum smtp_ehlo_flags {
    SMTP_EHLO_ADD_STARTTLS = 1u << 0, /* insert 250-STARTTLS after line 1 */
    SMTP_EHLO_TLS_ACTIVE = 1u << 1,   /* keep AUTH and REQUIRETLS */
    SMTP_EHLO_NO_CHUNKING = 1u << 2,  /* drop CHUNKING and BINARYMIME */
};

/*
 * Rewrites a complete, positive (2xx) EHLO reply: the first line (the
 * domain) stays first; keywords the proxy cannot honestly offer are dropped
 * (STARTTLS — the proxy owns it —, AUTH before TLS per RFC 4954 §4, XCLIENT
 * and XFORWARD, and every keyword outside the allowlist, whose framing the
 * proxy would not track); STARTTLS is inserted when asked; continuation
 * marks are recomputed so exactly the last line has "250 ". Output goes to
 * out (outcap >= len + 16 always suffices; out NULL: only parse and return
 * the capabilities). Returns the SMTP_CAP_* bits the
 * ORIGINAL reply advertised (keywords match case-insensitively as whole
 * words) or -1 when the reply does not parse.
 */
int smtp_ehlo_rewrite(const uint8_t *reply, size_t len, unsigned flags, uint8_t *out,
                      size_t outcap, size_t *outlen);

/* A listener's changes to the built-in keyword allowlist (ehlo_keywords in
 * the configuration; the strings are borrowed). pass: further keywords to
 * keep (the operator vouches that their commands are single lines the relay
 * may frame as such); discard: allowlisted keywords to drop. Keywords the
 * proxy owns (STARTTLS, AUTH, REQUIRETLS, XCLIENT, XFORWARD) are never
 * affected. dropped, if set, hears every keyword removed (for a debug log). */
struct smtp_ehlo_policy {
    const char *const *pass;
    size_t npass;
    const char *const *discard;
    size_t ndiscard;
    void (*dropped)(void *arg, const uint8_t *kw, size_t n);
    void *arg;
};

/* smtp_ehlo_rewrite with a policy (NULL: the built-in allowlist alone). */
int smtp_ehlo_rewrite_ex(const uint8_t *reply, size_t len, unsigned flags,
                         const struct smtp_ehlo_policy *policy, uint8_t *out, size_t outcap,
                         size_t *outlen);

/* Whether kw may appear in a policy's pass or discard list: an RFC 5321
 * ehlo-keyword ((ALPHA / DIGIT) *(ALPHA / DIGIT / "-")) that the proxy
 * does not own. */
bool smtp_ehlo_keyword_configurable(const char *kw);

/* Tracks DATA content from the 354 up to and including <CRLF>.<CRLF>. */
struct smtp_data {
    uint8_t state;
    bool reject_bare; /* bare CR/LF is an error instead of being normalised */
};

/* Receives the bytes to send on (verbatim spans and inserted bytes). */
typedef void (*smtp_emit_cb)(void *arg, const uint8_t *p, size_t n);

void smtp_data_init(struct smtp_data *d, bool reject_bare);

/*
 * Scans content. Everything is consumed except at the end of data: returns
 * SMTP_OK with *used covering the final CRLF.CRLF; SMTP_AGAIN (*used == len)
 * when the message goes on; SMTP_ERR_BARE_NL (reject mode) with *used up to
 * the offending byte. Bytes are passed to emit as they should reach the
 * server: verbatim, except that (normalise mode) a bare CR or LF becomes
 * CRLF and a '.' right after such a made-up line start is doubled, so even
 * a lenient server ends the message exactly where RFC 5321 §4.1.1.4 does. A
 * trailing CR is held back until its successor is seen, so a client that
 * vanishes mid-DATA can never complete an end-of-data sequence.
 */
int smtp_data_scan(struct smtp_data *d, const uint8_t *in, size_t len, size_t *used,
                   smtp_emit_cb emit, void *arg);

#endif
