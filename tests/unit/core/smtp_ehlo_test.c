/*
 * smtp: the EHLO rewrite (smtp_ehlo_rewrite). The header comments of
 * proxy/smtp.h are the spec.
 */
#include "tests/unit/core/smtp_fixture.c.h"

/* ---------- smtp_ehlo_rewrite ---------- */

static int rewrite(const char *in, unsigned flags, char *out, size_t outcap)
{
    size_t outlen = 0;
    int caps = smtp_ehlo_rewrite(U(in), strlen(in), flags, (uint8_t *)out, outcap - 1, &outlen);
    if (caps >= 0) {
        assert_true(outlen <= strlen(in) + 16);
        out[outlen] = '\0';
    } else {
        out[0] = '\0';
    }
    return caps;
}

static char dropped_words[256];

static void on_dropped(void *arg, const uint8_t *kw, size_t n)
{
    (void)arg;
    strncat(dropped_words, (const char *)kw, n);
    strcat(dropped_words, ",");
}

/* ehlo_keywords: pass keeps a keyword outside the allowlist, discard drops
 * an allowlisted one, keywords the proxy owns are untouched by either, and
 * every drop is reported. */
static void test_ehlo_policy(void **state)
{
    static const char in[] = "250-mx\r\n250-XEXAMPLE 1\r\n250-SIZE 100\r\n250-STARTTLS\r\n"
                             "250-XCLIENT ADDR\r\n250-XOTHER\r\n250 8BITMIME\r\n";
    const char *pass[] = {"XEXAMPLE", "XCLIENT"};
    const char *discard[] = {"SIZE", "STARTTLS"};
    struct smtp_ehlo_policy pol = {.pass = pass, .npass = 2, .discard = discard, .ndiscard = 2,
                                   .dropped = on_dropped};
    uint8_t out[512];
    size_t outlen = 0;

    (void)state;
    dropped_words[0] = '\0';
    int caps = smtp_ehlo_rewrite_ex(SL(in), SMTP_EHLO_ADD_STARTTLS, &pol, out, sizeof(out),
                                    &outlen);
    assert_true(caps >= 0);
    assert_true(caps & SMTP_CAP_SIZE); /* what the backend offered */
    static const char want[] = "250-mx\r\n250-STARTTLS\r\n250-XEXAMPLE 1\r\n250 8BITMIME\r\n";
    assert_int_equal(outlen, sizeof(want) - 1);
    assert_memory_equal(out, want, outlen);
    assert_string_equal(dropped_words, "SIZE,STARTTLS,XCLIENT,XOTHER,");
    assert_true(smtp_ehlo_keyword_configurable("DELIVERBY"));
    assert_true(smtp_ehlo_keyword_configurable("x-vendor-1"));
    assert_false(smtp_ehlo_keyword_configurable("STARTTLS"));
    assert_false(smtp_ehlo_keyword_configurable("auth"));
    assert_false(smtp_ehlo_keyword_configurable("two words"));
    assert_false(smtp_ehlo_keyword_configurable("-LEADING"));
    assert_false(smtp_ehlo_keyword_configurable(""));
}

static void test_ehlo_single_line(void **state)
{
    char out[256];

    assert_int_equal(rewrite("250 host\r\n", SMTP_EHLO_ADD_STARTTLS, out, sizeof(out)), 0);
    assert_string_equal(out, "250-host\r\n250 STARTTLS\r\n");
    assert_int_equal(rewrite("250 host\r\n", 0, out, sizeof(out)), 0);
    assert_string_equal(out, "250 host\r\n");
    /* No text at all on the first line. */
    assert_int_equal(rewrite("250\r\n", SMTP_EHLO_ADD_STARTTLS, out, sizeof(out)), 0);
    assert_int_equal(strncmp(out, "250", 3), 0);
    assert_non_null(strstr(out, "250 STARTTLS\r\n"));
}

static void test_ehlo_insert_after_first_line(void **state)
{
    char out[512];
    const char in[] = "250-mx.example Hello\r\n"
                      "250-PIPELINING\r\n"
                      "250-SIZE 10240000\r\n"
                      "250-8BITMIME\r\n"
                      "250 CHUNKING\r\n";
    int caps = rewrite(in, SMTP_EHLO_ADD_STARTTLS, out, sizeof(out));

    assert_int_equal(caps, SMTP_CAP_PIPELINING | SMTP_CAP_SIZE | SMTP_CAP_8BITMIME |
                               SMTP_CAP_CHUNKING);
    assert_string_equal(out, "250-mx.example Hello\r\n"
                             "250-STARTTLS\r\n"
                             "250-PIPELINING\r\n"
                             "250-SIZE 10240000\r\n"
                             "250-8BITMIME\r\n"
                             "250 CHUNKING\r\n");
}

static void test_ehlo_backend_keywords_removed(void **state)
{
    char out[1024];
    const char in[] = "250-mx.example\r\n"
                      "250-STARTTLS\r\n"
                      "250-PIPELINING\r\n"
                      "250-AUTH PLAIN LOGIN\r\n"
                      "250-AUTH=LOGIN\r\n"
                      "250-XCLIENT NAME ADDR\r\n"
                      "250-XFORWARD NAME ADDR\r\n"
                      "250-X-UNKNOWN-THING 1\r\n"
                      "250-ENHANCEDSTATUSCODES\r\n"
                      "250 XEXCH50\r\n";
    int caps = rewrite(in, SMTP_EHLO_ADD_STARTTLS, out, sizeof(out));

    assert_int_equal(caps, SMTP_CAP_STARTTLS | SMTP_CAP_PIPELINING | SMTP_CAP_AUTH);
    /* Exactly one STARTTLS, ours, right after the first line; the last kept
     * line gets "250 ". */
    assert_string_equal(out, "250-mx.example\r\n"
                             "250-STARTTLS\r\n"
                             "250-PIPELINING\r\n"
                             "250 ENHANCEDSTATUSCODES\r\n");
}

static void test_ehlo_starttls_removed_without_adding(void **state)
{
    char out[512];
    const char in[] = "250-mx\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n";

    assert_int_equal(rewrite(in, 0, out, sizeof(out)), SMTP_CAP_STARTTLS | SMTP_CAP_AUTH);
    assert_string_equal(out, "250 mx\r\n");
    assert_int_equal(rewrite(in, SMTP_EHLO_TLS_ACTIVE, out, sizeof(out)),
                     SMTP_CAP_STARTTLS | SMTP_CAP_AUTH);
    assert_string_equal(out, "250-mx\r\n250 AUTH PLAIN\r\n");
}

static void test_ehlo_auth_kept_with_tls(void **state)
{
    char out[512];
    const char in[] = "250-mx\r\n"
                      "250-AUTH PLAIN LOGIN\r\n"
                      "250-AUTH=LOGIN\r\n"
                      "250-REQUIRETLS\r\n"
                      "250-XCLIENT ADDR\r\n"
                      "250 SIZE\r\n";

    assert_int_equal(rewrite(in, SMTP_EHLO_TLS_ACTIVE, out, sizeof(out)),
                     SMTP_CAP_AUTH | SMTP_CAP_REQUIRETLS | SMTP_CAP_SIZE);
    assert_string_equal(out, "250-mx\r\n"
                             "250-AUTH PLAIN LOGIN\r\n"
                             "250-AUTH=LOGIN\r\n"
                             "250-REQUIRETLS\r\n"
                             "250 SIZE\r\n");
    /* Before TLS the same reply loses AUTH and REQUIRETLS. */
    assert_int_equal(rewrite(in, SMTP_EHLO_ADD_STARTTLS, out, sizeof(out)),
                     SMTP_CAP_AUTH | SMTP_CAP_REQUIRETLS | SMTP_CAP_SIZE);
    assert_string_equal(out, "250-mx\r\n250-STARTTLS\r\n250 SIZE\r\n");
}

static void test_ehlo_case_insensitive_whole_words(void **state)
{
    char out[512];
    const char in[] = "250-mx\r\n"
                      "250-starttls\r\n"
                      "250-StartTLSX\r\n"
                      "250-8bitmime\r\n"
                      "250-8BITMIMEX\r\n"
                      "250-pipelining\r\n"
                      "250-Chunking\r\n"
                      "250-SIZEX 10\r\n"
                      "250 smtputf8\r\n";
    int caps = rewrite(in, SMTP_EHLO_ADD_STARTTLS, out, sizeof(out));

    assert_int_equal(caps, SMTP_CAP_STARTTLS | SMTP_CAP_8BITMIME | SMTP_CAP_PIPELINING |
                               SMTP_CAP_CHUNKING | SMTP_CAP_SMTPUTF8);
    assert_string_equal(out, "250-mx\r\n"
                             "250-STARTTLS\r\n"
                             "250-8bitmime\r\n"
                             "250-pipelining\r\n"
                             "250-Chunking\r\n"
                             "250 smtputf8\r\n");
}

static void test_ehlo_only_starttlsx(void **state)
{
    char out[256];

    /* STARTTLSX is not STARTTLS: no cap, and it is dropped as unknown. */
    assert_int_equal(rewrite("250-mx\r\n250 STARTTLSX\r\n", SMTP_EHLO_ADD_STARTTLS, out,
                             sizeof(out)),
                     0);
    assert_string_equal(out, "250-mx\r\n250 STARTTLS\r\n");
}

static void test_ehlo_no_chunking(void **state)
{
    char out[256];
    const char in[] = "250-mx\r\n250-CHUNKING\r\n250-BINARYMIME\r\n250 8BITMIME\r\n";

    assert_int_equal(rewrite(in, SMTP_EHLO_NO_CHUNKING, out, sizeof(out)),
                     SMTP_CAP_CHUNKING | SMTP_CAP_BINARYMIME | SMTP_CAP_8BITMIME);
    assert_string_equal(out, "250-mx\r\n250 8BITMIME\r\n");
}

static void test_ehlo_all_caps_bits(void **state)
{
    char out[1024];
    const char in[] = "250-mx\r\n250-STARTTLS\r\n250-PIPELINING\r\n250-CHUNKING\r\n"
                      "250-AUTH LOGIN\r\n250-SIZE\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
                      "250-BINARYMIME\r\n250 REQUIRETLS\r\n";

    assert_int_equal(rewrite(in, 0, out, sizeof(out)),
                     SMTP_CAP_STARTTLS | SMTP_CAP_PIPELINING | SMTP_CAP_CHUNKING |
                         SMTP_CAP_AUTH | SMTP_CAP_SIZE | SMTP_CAP_8BITMIME | SMTP_CAP_SMTPUTF8 |
                         SMTP_CAP_BINARYMIME | SMTP_CAP_REQUIRETLS);
}

static void test_ehlo_first_line_never_a_keyword(void **state)
{
    char out[256];

    /* The domain line is kept as is even if it reads like a keyword, and
     * does not count as one. */
    assert_int_equal(rewrite("250-STARTTLS\r\n250 SIZE\r\n", SMTP_EHLO_ADD_STARTTLS, out,
                             sizeof(out)),
                     SMTP_CAP_SIZE);
    assert_string_equal(out, "250-STARTTLS\r\n250-STARTTLS\r\n250 SIZE\r\n");
}

static void test_ehlo_rejects(void **state)
{
    char out[256];

    assert_int_equal(rewrite("", 0, out, sizeof(out)), -1);
    assert_int_equal(rewrite("550 no\r\n", 0, out, sizeof(out)), -1);
    assert_int_equal(rewrite("354 no\r\n", 0, out, sizeof(out)), -1);
    assert_int_equal(rewrite("250-a\r\n251 b\r\n", 0, out, sizeof(out)), -1);
    assert_int_equal(rewrite("250 a\n", 0, out, sizeof(out)), -1);
    assert_int_equal(rewrite("250 a\r\n250 trailing\r\n", 0, out, sizeof(out)), -1);
    assert_int_equal(rewrite("garbage\r\n", 0, out, sizeof(out)), -1);
    assert_int_equal(rewrite("250 a", 0, out, sizeof(out)), -1);
}

/* "Rewrites a complete ... reply": a reply whose last line still says
 * "250-" is not complete and must not be turned into one. */
static void test_ehlo_rejects_incomplete(void **state)
{
    char out[256];

    assert_int_equal(rewrite("250-mx\r\n250-SIZE\r\n", SMTP_EHLO_ADD_STARTTLS, out, sizeof(out)),
                     -1);
    assert_int_equal(rewrite("250-mx\r\n", 0, out, sizeof(out)), -1);
}

static void test_ehlo_outcap(void **state)
{
    const char in[] = "250-mx\r\n250-PIPELINING\r\n250 SIZE\r\n";
    uint8_t out[sizeof(in) + 16];
    size_t outlen;

    /* len + 16 always suffices... */
    assert_true(smtp_ehlo_rewrite(SL(in), SMTP_EHLO_ADD_STARTTLS, out, sizeof(in) - 1 + 16,
                                  &outlen) >= 0);
    /* ...and too little space is a failure, not an overflow. */
    assert_int_equal(smtp_ehlo_rewrite(SL(in), SMTP_EHLO_ADD_STARTTLS, out, 10, &outlen), -1);
}

static void test_ehlo_outcap_worst_case(void **state)
{
    /* The longest growth: an empty first line gains a separator, plus the
     * inserted STARTTLS line. */
    const char in[] = "250\r\n";
    uint8_t out[sizeof(in) + 16];
    size_t outlen = 0;

    assert_true(smtp_ehlo_rewrite(SL(in), SMTP_EHLO_ADD_STARTTLS, out, sizeof(in) - 1 + 16,
                                  &outlen) >= 0);
    assert_true(outlen <= sizeof(in) - 1 + 16);
}

static void test_ehlo_max_lines(void **state)
{
    /* 100 lines, all kept, plus STARTTLS: the rewrite does not overrun its
     * tables. */
    static char in[100 * 16 + 16];
    static uint8_t out[sizeof(in) + 16];
    size_t o = 0, outlen = 0;

    o += (size_t)sprintf(in + o, "250-mx\r\n");
    for (int i = 0; i < 98; i++)
        o += (size_t)sprintf(in + o, "250-SIZE %d\r\n", i);
    o += (size_t)sprintf(in + o, "250 SIZE\r\n");
    int caps = smtp_ehlo_rewrite(U(in), o, SMTP_EHLO_ADD_STARTTLS, out, sizeof(out), &outlen);
    assert_int_equal(caps, SMTP_CAP_SIZE);
    assert_true(outlen == o + 14);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ehlo_single_line),
        cmocka_unit_test(test_ehlo_policy),
        cmocka_unit_test(test_ehlo_insert_after_first_line),
        cmocka_unit_test(test_ehlo_backend_keywords_removed),
        cmocka_unit_test(test_ehlo_starttls_removed_without_adding),
        cmocka_unit_test(test_ehlo_auth_kept_with_tls),
        cmocka_unit_test(test_ehlo_case_insensitive_whole_words),
        cmocka_unit_test(test_ehlo_only_starttlsx),
        cmocka_unit_test(test_ehlo_no_chunking),
        cmocka_unit_test(test_ehlo_all_caps_bits),
        cmocka_unit_test(test_ehlo_first_line_never_a_keyword),
        cmocka_unit_test(test_ehlo_rejects),
        cmocka_unit_test(test_ehlo_rejects_incomplete),
        cmocka_unit_test(test_ehlo_outcap),
        cmocka_unit_test(test_ehlo_outcap_worst_case),
        cmocka_unit_test(test_ehlo_max_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
