/*
 * Unit tests for proxy/policy/tlsrpt.c: the _smtp._tls record (RFC 8460
 * §3), its choice among several TXT records, and the names of result and
 * policy types (§4.3, §4.4).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/policy/tlsrpt.h"

static void test_txt_parse(void **state)
{
    static const struct {
        const char *text;
        size_t n, ignored; /* n == 0: invalid */
        const char *first; /* uri of rua[0] */
    } rows[] = {
        /* §3's examples */
        {"v=TLSRPTv1;rua=mailto:reports@example.com", 1, 0, "reports@example.com"},
        {"v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt", 1, 0,
         "https://reporting.example.com/v1/tlsrpt"},
        {"v=TLSRPTv1; rua=mailto:a@example.com,https://r.example/x", 2, 0, "a@example.com"},
        {"v=TLSRPTv1 ; rua=mailto:a@example.com , mailto:b@example.com ;", 2, 0, "a@example.com"},
        /* percent-decoding of mailto: commas, semicolons, "!" are encoded */
        {"v=TLSRPTv1; rua=mailto:tls%3Brpt%21x@example.com", 1, 0, "tls;rpt!x@example.com"},
        {"v=TLSRPTv1; rua=mailto:a%40b@example.com", 0, 1, NULL}, /* two "@" */
        {"v=TLSRPTv1; rua=mailto:a%2Cb@example.com", 0, 1, NULL}, /* a comma inside */
        {"v=TLSRPTv1; rua=mailto:a%20b@example.com", 0, 1, NULL}, /* space */
        {"v=TLSRPTv1; rua=mailto:a%00@example.com", 0, 1, NULL},
        {"v=TLSRPTv1; rua=mailto:a%4@example.com", 0, 1, NULL},
        {"v=TLSRPTv1; rua=mailto:a%zz@example.com", 0, 1, NULL},
        {"v=TLSRPTv1; rua=mailto:a@example.com%", 0, 1, NULL},
        {"v=TLSRPTv1; rua=MAILTO:a@example.com?subject=x", 1, 0, "a@example.com"},
        {"v=TLSRPTv1; rua=HTTPS://r.example/", 1, 0, "https://r.example/"},
        /* other schemes are ignored; a record with nothing usable is none */
        {"v=TLSRPTv1; rua=http://r.example/,mailto:a@example.com", 1, 1, "a@example.com"},
        {"v=TLSRPTv1; rua=ftp://r.example/", 0, 1, NULL},
        {"v=TLSRPTv1; rua=https:///nohost", 0, 1, NULL},
        {"v=TLSRPTv1; rua=https://", 0, 1, NULL},
        {"v=TLSRPTv1; rua=mailto:@example.com", 0, 1, NULL},
        {"v=TLSRPTv1; rua=mailto:a@", 0, 1, NULL},
        /* rua in two fields; extensions ignored */
        {"v=TLSRPTv1; rua=mailto:a@x.example; ext=1; rua=mailto:b@x.example", 2, 0, "a@x.example"},
        /* syntax errors */
        {"v=TLSRPTv1", 0, 0, NULL},
        {"v=TLSRPTv1; ext=1", 0, 0, NULL}, /* no rua */
        {"v=TLSRPTv1; rua=", 0, 0, NULL},
        {"v=TLSRPTv1; rua=mailto:a@x.example,", 0, 0, NULL},
        {"v=TLSRPTv1; rua=mailto:a!b@x.example", 0, 1, NULL}, /* "!" must be encoded */
        {"v=TLSRPTv1; rua=mailto:a\"b@x.example", 0, 1, NULL},
        {"v=tlsrptv1; rua=mailto:a@x.example", 0, 0, NULL},
        {"v=TLSRPTv2; rua=mailto:a@x.example", 0, 0, NULL},
        {" v=TLSRPTv1; rua=mailto:a@x.example", 0, 0, NULL},
        {"v=TLSRPTv1 rua=mailto:a@x.example", 0, 0, NULL},
        {"v=TLSRPTv1; RUA=mailto:a@x.example", 0, 0, NULL},
        {"v=TLSRPTv1; rua=mailto:a@x.example; x=", 0, 0, NULL},
        {"v=TLSRPTv1; rua=mailto:a@x.example;; x=1", 0, 0, NULL},
    };

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        static struct tlsrpt_record r;
        const char *why = NULL;
        int rc = tlsrpt_txt_parse(rows[i].text, strlen(rows[i].text), &r, &why);

        if (rows[i].n == 0) {
            if (rc != TLSRPT_ERR)
                fail_msg("row %zu \"%s\": accepted", i, rows[i].text);
            assert_non_null(why);
            if (rows[i].ignored != r.ignored)
                fail_msg("row %zu: ignored %zu, want %zu", i, r.ignored, rows[i].ignored);
            continue;
        }
        if (rc != TLSRPT_OK)
            fail_msg("row %zu \"%s\": %s", i, rows[i].text, why);
        assert_int_equal(r.n, rows[i].n);
        assert_int_equal(r.ignored, rows[i].ignored);
        assert_string_equal(r.rua[0].uri, rows[i].first);
    }
}

static void test_txt_kinds_and_bounds(void **state)
{
    static struct tlsrpt_record r;
    static char text[4096];
    size_t n;

    const char *t = "v=TLSRPTv1; rua=mailto:a@x.example,https://r.example/p?q=%2C";
    assert_int_equal(tlsrpt_txt_parse(t, strlen(t), &r, NULL), TLSRPT_OK);
    assert_int_equal(r.rua[0].kind, TLSRPT_URI_MAILTO);
    assert_int_equal(r.rua[1].kind, TLSRPT_URI_HTTPS);
    assert_string_equal(r.rua[1].uri, "https://r.example/p?q=%2C"); /* https: kept encoded */

    /* Eight destinations are kept, the rest counted as ignored. */
    n = (size_t)snprintf(text, sizeof(text), "v=TLSRPTv1; rua=");
    for (int i = 0; i < 12; i++)
        n +=
            (size_t)snprintf(text + n, sizeof(text) - n, "%smailto:r%d@x.example", i ? "," : "", i);
    assert_int_equal(tlsrpt_txt_parse(text, n, &r, NULL), TLSRPT_OK);
    assert_int_equal(r.n, TLSRPT_RUA_MAX);
    assert_int_equal(r.ignored, 4);
    assert_string_equal(r.rua[7].uri, "r7@x.example");

    /* A mailto: address longer than 512 octets is ignored, one of 512 kept. */
    n = (size_t)snprintf(text, sizeof(text), "v=TLSRPTv1; rua=mailto:");
    memset(text + n, 'a', 500), n += 500;
    n += (size_t)snprintf(text + n, sizeof(text) - n, "@x.example.x"); /* 512 */
    assert_int_equal(tlsrpt_txt_parse(text, n, &r, NULL), TLSRPT_OK);
    assert_int_equal(strlen(r.rua[0].uri), 512);
    text[n++] = 'y';
    assert_int_equal(tlsrpt_txt_parse(text, n, &r, NULL), TLSRPT_ERR);
    assert_int_equal(r.ignored, 1);

    /* Length, not NUL, ends the text. */
    t = "v=TLSRPTv1; rua=mailto:a@x.example;junk";
    assert_int_equal(tlsrpt_txt_parse(t, strlen(t) - 4, &r, NULL), TLSRPT_OK);
}

static size_t wire(uint8_t *out, const char *a, const char *b)
{
    size_t n = 0, l = strlen(a);

    out[n++] = (uint8_t)l, memcpy(out + n, a, l), n += l;
    if (b != NULL) {
        l = strlen(b);
        out[n++] = (uint8_t)l, memcpy(out + n, b, l), n += l;
    }
    return n;
}

static void test_txt_select(void **state)
{
    uint8_t w[3][300];
    const uint8_t *rd[3] = {w[0], w[1], w[2]};
    size_t len[3];
    static struct tlsrpt_record r;
    const char *why;

    /* §3: strings concatenated without spaces; other records discarded. */
    len[0] = wire(w[0], "v=spf1 -all", NULL);
    len[1] = wire(w[1], "v=TLSRPTv1; rua=mailto:re", "ports@x.example");
    assert_int_equal(tlsrpt_txt_select(rd, len, 2, &r, &why), TLSRPT_OK);
    assert_string_equal(r.rua[0].uri, "reports@x.example");
    /* Not exactly one: the domain does not implement TLS-RPT. */
    len[2] = wire(w[2], "v=TLSRPTv1; rua=mailto:b@x.example", NULL);
    assert_int_equal(tlsrpt_txt_select(rd, len, 3, &r, &why), TLSRPT_ERR);
    assert_non_null(strstr(why, "several"));
    assert_int_equal(tlsrpt_txt_select(rd, len, 1, &r, &why), TLSRPT_ERR);
    assert_int_equal(tlsrpt_txt_select(rd, len, 0, &r, &why), TLSRPT_ERR);
    /* A record too long to keep still counts as one (then invalid). */
    static uint8_t big[5200];
    const uint8_t *rd2[2] = {big, w[1]};
    size_t len2[2] = {11, 0};
    memcpy(big, "\x0av=TLSRPTv1", 11);
    for (; len2[0] + 256 <= sizeof(big); len2[0] += 256)
        big[len2[0]] = 255, memset(big + len2[0] + 1, ';', 255);
    len2[1] = len[1];
    assert_int_equal(tlsrpt_txt_select(rd2, len2, 2, &r, &why), TLSRPT_ERR);
    assert_non_null(strstr(why, "several"));
    assert_int_equal(tlsrpt_txt_select(rd2, len2, 1, &r, &why), TLSRPT_ERR);
    assert_non_null(strstr(why, "longer"));
    /* "v=TLSRPTv10" is another record. */
    len[0] = wire(w[0], "v=TLSRPTv10; rua=mailto:c@x.example", NULL);
    assert_int_equal(tlsrpt_txt_select(rd, len, 2, &r, &why), TLSRPT_OK);
    assert_string_equal(r.rua[0].uri, "reports@x.example");
}

static void test_names(void **state)
{
    static const char *const want[] = {
        "starttls-not-supported", "certificate-host-mismatch",
        "certificate-expired",    "certificate-not-trusted",
        "validation-failure",     "tlsa-invalid",
        "dnssec-invalid",         "dane-required",
        "sts-policy-fetch-error", "sts-policy-invalid",
        "sts-webpki-invalid",
    };

    assert_int_equal(sizeof(want) / sizeof(want[0]), TLSRPT_RESULT_COUNT);
    for (int i = 0; i < TLSRPT_RESULT_COUNT; i++) {
        assert_string_equal(tlsrpt_result_str((enum tlsrpt_result)i), want[i]);
        assert_int_equal(tlsrpt_result_parse(want[i], strlen(want[i])), i);
    }
    assert_int_equal(tlsrpt_result_str(TLSRPT_STS_WEBPKI_INVALID)[0], 's');
    assert_string_equal(tlsrpt_result_str(TLSRPT_RESULT_COUNT), "unknown");
    assert_int_equal(tlsrpt_result_parse("tlsa-invalid", 4), -1);
    assert_int_equal(tlsrpt_result_parse("success", 7), -1);
    assert_string_equal(tlsrpt_policy_type_str(TLSRPT_POLICY_NONE), "no-policy-found");
    assert_int_equal(tlsrpt_policy_type_parse("sts", 3), TLSRPT_POLICY_STS);
    assert_int_equal(tlsrpt_policy_type_parse("tlsa", 4), TLSRPT_POLICY_TLSA);
    assert_int_equal(tlsrpt_policy_type_parse("ts", 2), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_txt_parse),
        cmocka_unit_test(test_txt_kinds_and_bounds),
        cmocka_unit_test(test_txt_select),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
