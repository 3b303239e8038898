/*
 * tlsrpt_message: the forms in which a TLS-RPT report travels (RFC 8460
 * §5): the JSON in a gzip container (§5: "application/tlsrpt+gzip"), its
 * file name (§5.1), and the multipart/report mail of §5.3. No I/O.
 */
#ifndef SMTP_TLS_PROXY_TLSRPT_MESSAGE_H
#define SMTP_TLS_PROXY_TLSRPT_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/core/buf.h"

/* Compresses len bytes of in into out (appended) as one gzip member
 * (RFC 1952; zlib's deflate, modification time 0). 0 or -ENOMEM / -EIO. */
int tlsrpt_gzip(const uint8_t *in, size_t len, struct buf *out);

struct tlsrpt_mail {
    const char *from;         /* the contact address: From and the envelope */
    const char *to;           /* the rua address */
    const char *organization; /* for the text part; printable ASCII or left out */
    const char *submitter;    /* the sender's domain (§5.1 "sender") */
    const char *domain;       /* the policy domain */
    const char *report_id;
    int64_t day;            /* the report's UTC day */
    int64_t now;            /* for Date:, unix seconds */
    const char *boundary;   /* a MIME boundary (letters, digits, '-', '_', '.') */
    const char *message_id; /* "local@domain", without <> */
    const uint8_t *gz;      /* the gzip'd report */
    size_t gz_len;
};

/* "submitter!domain!begin!end.json.gz" (§5.1, with the day's first and
 * last second) into out (cap bytes). Its length, or -ENOSPC. */
int tlsrpt_filename(char *out, size_t cap, const char *submitter, const char *domain, int64_t day);

/*
 * The §5.3 message into out (appended), CRLF line ends: From, To, Date,
 * Message-ID, Subject "Report Domain: D Submitter: S Report-ID: <ID>"
 * (folded before "Submitter" and "Report-ID", RFC 5322 §2.2.3),
 * TLS-Report-Domain, TLS-Report-Submitter, MIME-Version and Content-Type
 * multipart/report; report-type="tlsrpt"; a text/plain part, then the
 * report as application/tlsrpt+gzip in base64 with its file name. Every
 * header field value must be printable ASCII without CR or LF: -EINVAL
 * otherwise, -ENOMEM, or 0.
 */
int tlsrpt_mail_build(struct buf *out, const struct tlsrpt_mail *m);

#endif
