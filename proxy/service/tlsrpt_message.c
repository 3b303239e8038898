/*
 * The gzip container, the file name and the mail of a TLS-RPT report; see
 * tlsrpt_message.h.
 */
#include "proxy/service/tlsrpt_message.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

int tlsrpt_gzip(const uint8_t *in, size_t len, struct buf *out)
{
    z_stream z;
    int rc;

    memset(&z, 0, sizeof(z));
    /* 15 + 16: a gzip header and trailer rather than zlib's (RFC 1952). */
    if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    if (len > UINT32_MAX) {
        deflateEnd(&z);
        return -EINVAL;
    }
    do {
        size_t room = deflateBound(&z, len) + 64;
        uint8_t *p = buf_reserve(out, room);
        if (p == NULL) {
            deflateEnd(&z);
            return -ENOMEM;
        }
        z.next_out = p;
        z.avail_out = (uInt)room;
        rc = deflate(&z, Z_FINISH);
        buf_commit(out, room - z.avail_out);
    } while (rc == Z_OK || rc == Z_BUF_ERROR);
    deflateEnd(&z);
    return rc == Z_STREAM_END ? 0 : -EIO;
}

int tlsrpt_filename(char *out, size_t cap, const char *submitter, const char *domain, int64_t day)
{
    int n = snprintf(out, cap, "%s!%s!%lld!%lld.json.gz", submitter, domain,
                     (long long)(day * 86400), (long long)(day * 86400 + 86399));

    return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

/* A header field value: printable ASCII and spaces, nothing that could end
 * the field or start another (RFC 5322 §2.2). */
static bool value_ok(const char *v)
{
    if (v == NULL || v[0] == '\0' || strlen(v) > 900)
        return false;
    for (const char *p = v; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            return false;
    return true;
}

static int put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int put(struct buf *b, const char *fmt, ...)
{
    char line[2048];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line))
        return -EINVAL;
    return buf_append(b, line, (size_t)n) != 0 ? -ENOMEM : 0;
}

/* Base64 (RFC 2045 §6.8) in lines of 76 characters, each with its CRLF. */
static int base64(struct buf *b, const uint8_t *in, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char line[80];
    size_t n = 0;

    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        line[n++] = tab[(v >> 18) & 63];
        line[n++] = tab[(v >> 12) & 63];
        line[n++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        line[n++] = i + 2 < len ? tab[v & 63] : '=';
        if (n == 76 || i + 3 >= len) {
            line[n++] = '\r';
            line[n++] = '\n';
            if (buf_append(b, line, n) != 0)
                return -ENOMEM;
            n = 0;
        }
    }
    return 0;
}

int tlsrpt_mail_build(struct buf *out, const struct tlsrpt_mail *m)
{
    char date[64], fname[600], day[16];
    time_t now = (time_t)m->now, start = (time_t)(m->day * 86400);
    struct tm tm;
    int rc = 0;

    if (!value_ok(m->from) || !value_ok(m->to) || !value_ok(m->submitter) || !value_ok(m->domain) ||
        !value_ok(m->report_id) || !value_ok(m->boundary) || !value_ok(m->message_id) ||
        strchr(m->report_id, '>') != NULL)
        return -EINVAL;
    if (gmtime_r(&now, &tm) == NULL)
        return -EINVAL;
    /* RFC 5322 §3.3, in the C locale's English names. */
    static const char *const wd[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const mo[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    snprintf(date, sizeof(date), "%s, %02d %s %04d %02d:%02d:%02d +0000", wd[tm.tm_wday % 7],
             tm.tm_mday, mo[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (gmtime_r(&start, &tm) == NULL)
        return -EINVAL;
    snprintf(day, sizeof(day), "%04d-%02d-%02d", (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100,
             tm.tm_mday % 100);
    if (tlsrpt_filename(fname, sizeof(fname), m->submitter, m->domain, m->day) < 0)
        return -EINVAL;
    bool org = value_ok(m->organization);

    if ((rc = put(out, "From: <%s>\r\nTo: <%s>\r\nDate: %s\r\nMessage-ID: <%s>\r\n", m->from, m->to,
                  date, m->message_id)) != 0 ||
        (rc = put(out, "Subject: Report Domain: %s\r\n Submitter: %s\r\n Report-ID: <%s>\r\n",
                  m->domain, m->submitter, m->report_id)) != 0 ||
        (rc = put(out, "TLS-Report-Domain: %s\r\nTLS-Report-Submitter: %s\r\n", m->domain,
                  m->submitter)) != 0 ||
        (rc = put(out,
                  "MIME-Version: 1.0\r\n"
                  "Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n"
                  "\tboundary=\"%s\"\r\n"
                  "\r\n"
                  "This is a multipart message in MIME format.\r\n"
                  "\r\n",
                  m->boundary)) != 0 ||
        (rc = put(out,
                  "--%s\r\n"
                  "Content-Type: text/plain; charset=us-ascii\r\n"
                  "Content-Transfer-Encoding: 7bit\r\n"
                  "\r\n"
                  "This is an aggregate TLS report (RFC 8460)\r\nfor %s, UTC day %s,\r\n"
                  "from %s%s%s.\r\n"
                  "\r\n",
                  m->boundary, m->domain, day, org ? m->organization : m->submitter,
                  org ? " at " : "", org ? m->submitter : "")) != 0 ||
        (rc = put(out,
                  "--%s\r\n"
                  "Content-Type: application/tlsrpt+gzip\r\n"
                  "Content-Transfer-Encoding: base64\r\n"
                  "Content-Disposition: attachment;\r\n"
                  "\tfilename=\"%s\"\r\n"
                  "\r\n",
                  m->boundary, fname)) != 0 ||
        (rc = base64(out, m->gz, m->gz_len)) != 0 ||
        (rc = put(out, "\r\n--%s--\r\n", m->boundary)) != 0)
        return rc;
    return 0;
}
