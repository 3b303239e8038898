/*
 * Tests of proxy/service/tlsrpt_message.c: the gzip container read back
 * with zlib's inflate, the §5.1 file name, and the §5.3 mail: its header
 * fields, MIME structure and base64 body decoded back to the bytes given,
 * and the values refused because they would break a header.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "proxy/service/tlsrpt_message.h"

#define DAY 20422 /* 2025-11-30 */

static void test_gzip_round_trip(void **state)
{
    static uint8_t in[200000], back[200001];
    struct buf out = {0};
    z_stream z;

    (void)state;
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)("{\"policies\":[]}"[i % 15] ^ (i / 5000));
    assert_int_equal(tlsrpt_gzip(in, sizeof(in), &out), 0);
    const uint8_t *g = buf_head(&out);
    assert_true(buf_len(&out) > 18);
    assert_int_equal(g[0], 0x1f); /* RFC 1952 §2.3.1: ID1, ID2, CM = deflate */
    assert_int_equal(g[1], 0x8b);
    assert_int_equal(g[2], 8);
    assert_true(buf_len(&out) < sizeof(in) / 4);

    memset(&z, 0, sizeof(z));
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = (Bytef *)g;
    z.avail_in = (uInt)buf_len(&out);
    z.next_out = back;
    z.avail_out = sizeof(back);
    assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
    assert_int_equal(z.total_out, sizeof(in));
    assert_int_equal(z.avail_in, 0); /* one member, nothing after it */
    inflateEnd(&z);
    assert_memory_equal(back, in, sizeof(in));
    buf_free(&out);

    /* Empty input is still a valid member. */
    assert_int_equal(tlsrpt_gzip((const uint8_t *)"", 0, &out), 0);
    assert_true(buf_len(&out) >= 20);
    buf_free(&out);
}

static void test_filename(void **state)
{
    char f[128];

    (void)state;
    assert_int_equal(tlsrpt_filename(f, sizeof(f), "example.org", "example.net", DAY),
                     (int)strlen("example.org!example.net!1764460800!1764547199.json.gz"));
    assert_string_equal(f, "example.org!example.net!1764460800!1764547199.json.gz");
    assert_int_equal(tlsrpt_filename(f, 20, "example.org", "example.net", DAY), -ENOSPC);
}

static struct tlsrpt_mail mail(const uint8_t *gz, size_t len)
{
    struct tlsrpt_mail m = {.from = "tlsrpt@example.org",
                            .to = "rua@example.net",
                            .organization = "Example Inc",
                            .submitter = "example.org",
                            .domain = "example.net",
                            .report_id = "2025-11-30.example.net@example.org",
                            .day = DAY,
                            .now = 1764547200 + 3600,
                            .boundary = "tlsrpt-b0undary",
                            .message_id = "m1@example.org",
                            .gz = gz,
                            .gz_len = len};
    return m;
}

static int b64(char c)
{
    const char *t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = strchr(t, c);
    return c != '\0' && p != NULL ? (int)(p - t) : -1;
}

static void test_mail(void **state)
{
    uint8_t gz[301];
    struct buf out = {0};

    (void)state;
    for (size_t i = 0; i < sizeof(gz); i++)
        gz[i] = (uint8_t)(i * 31 + 7);
    struct tlsrpt_mail m = mail(gz, sizeof(gz));
    assert_int_equal(tlsrpt_mail_build(&out, &m), 0);
    assert_int_equal(buf_append(&out, "", 1), 0);
    const char *t = (const char *)buf_head(&out);

    /* The header, in that order, with the §5.3 subject. */
    const char *head = "From: <tlsrpt@example.org>\r\n"
                       "To: <rua@example.net>\r\n"
                       "Date: Mon, 01 Dec 2025 01:00:00 +0000\r\n"
                       "Message-ID: <m1@example.org>\r\n"
                       "Subject: Report Domain: example.net\r\n Submitter: example.org\r\n"
                       " Report-ID: <2025-11-30.example.net@example.org>\r\n"
                       "TLS-Report-Domain: example.net\r\n"
                       "TLS-Report-Submitter: example.org\r\n"
                       "MIME-Version: 1.0\r\n"
                       "Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n"
                       "\tboundary=\"tlsrpt-b0undary\"\r\n\r\n";
    assert_memory_equal(t, head, strlen(head));
    assert_non_null(strstr(t, "\r\n--tlsrpt-b0undary\r\nContent-Type: text/plain"));
    assert_non_null(strstr(t, "from Example Inc at example.org.\r\n"));
    const char *att = strstr(t, "--tlsrpt-b0undary\r\nContent-Type: application/tlsrpt+gzip\r\n"
                                "Content-Transfer-Encoding: base64\r\n"
                                "Content-Disposition: attachment;\r\n"
                                "\tfilename=\"example.org!example.net!1764460800!1764547199."
                                "json.gz\"\r\n\r\n");
    assert_non_null(att);
    const char *end = strstr(t, "\r\n--tlsrpt-b0undary--\r\n");
    assert_non_null(end);
    assert_string_equal(end, "\r\n--tlsrpt-b0undary--\r\n");

    /* Every line ends CRLF and is at most 78 characters; base64 decodes
     * back to the bytes given. */
    for (const char *p = t; *p != '\0';) {
        const char *crlf = strstr(p, "\r\n");
        assert_non_null(crlf);
        assert_true(crlf - p <= 78);
        assert_null(memchr(p, '\n', (size_t)(crlf - p)));
        p = crlf + 2;
    }
    const char *p = strstr(att, "\r\n\r\n") + 4;
    uint8_t dec[sizeof(gz) + 3];
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (; p < end + 2; p++) {
        if (*p == '\r' || *p == '\n')
            continue;
        if (*p == '=')
            break;
        int v = b64(*p);
        assert_true(v >= 0);
        acc = (acc << 6) | (uint32_t)v;
        if ((bits += 6) >= 8) {
            bits -= 8;
            dec[n++] = (uint8_t)(acc >> bits);
        }
    }
    assert_int_equal(n, sizeof(gz));
    assert_memory_equal(dec, gz, sizeof(gz));
    buf_free(&out);
}

/* Values that would end a header field or fake another are refused. */
static void test_mail_refused(void **state)
{
    struct buf out = {0};
    struct tlsrpt_mail m;

    (void)state;
    m = mail((const uint8_t *)"x", 1);
    m.to = "rua@example.net\r\nBcc: victim@example.com";
    assert_int_equal(tlsrpt_mail_build(&out, &m), -EINVAL);
    m = mail((const uint8_t *)"x", 1);
    m.report_id = "id>\tX";
    assert_int_equal(tlsrpt_mail_build(&out, &m), -EINVAL);
    m = mail((const uint8_t *)"x", 1);
    m.report_id = "a>b";
    assert_int_equal(tlsrpt_mail_build(&out, &m), -EINVAL);
    m = mail((const uint8_t *)"x", 1);
    m.domain = "";
    assert_int_equal(tlsrpt_mail_build(&out, &m), -EINVAL);
    assert_int_equal(buf_len(&out), 0);
    /* An organization that is not plain ASCII stays out of the text part. */
    m = mail((const uint8_t *)"x", 1);
    m.organization = "Caf\xc3\xa9";
    assert_int_equal(tlsrpt_mail_build(&out, &m), 0);
    assert_int_equal(buf_append(&out, "", 1), 0);
    assert_non_null(strstr((const char *)buf_head(&out), "from example.org.\r\n"));
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gzip_round_trip),
        cmocka_unit_test(test_filename),
        cmocka_unit_test(test_mail),
        cmocka_unit_test(test_mail_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
