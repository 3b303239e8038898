/*
 * Unit tests for the tls_rpt block and the outbound tls_rpt key
 * (proxy/app/config_tlsrpt.c): defaults, values, the directory made when
 * missing, and the FILE:LINE errors for what cannot work.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy/app/config.h"

static char tmp[512];

static struct config *load_ok(const char *text)
{
    struct config *c = NULL;
    char err[4096];

    if (config_load_string(text, "t.conf", &c, err, sizeof err) != 0)
        fail_msg("unexpected errors:\n%s", err);
    assert_non_null(c);
    return c;
}

static void expect_err(const char *text, const char *want)
{
    struct config *c = (struct config *)1;
    char err[4096];
    int rc = config_load_string(text, "t.conf", &c, err, sizeof err);

    if (rc == 0)
        fail_msg("loaded, but expected: %s", want);
    assert_null(c);
    if (strstr(err, want) == NULL)
        fail_msg("got:\n%s\nwant:\n%s", err, want);
}

#define OUT(extra)                                                                                 \
    "outbound = ( { name = \"relay\"; listen = \"127.0.0.1:10025\";\n"                             \
    "  destination = \"192.0.2.25:25\";\n" extra " } );\n"

static char *text(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *text(const char *fmt, ...)
{
    static char buf[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

static int setup(void **state)
{
    const char *t = getenv("TEST_TMPDIR");

    (void)state;
    snprintf(tmp, sizeof tmp, "%s", t != NULL ? t : "/tmp");
    return 0;
}

static void test_absent(void **state)
{
    struct config *c = load_ok(OUT(""));

    assert_false(c->tls_rpt.enabled);
    assert_false(c->outbound[0].tls_rpt);
    config_free(c);
}

/* A missing directory is accepted (the runtime makes it; loading changes
 * nothing on disk); organization and submit default. */
static void test_values_and_defaults(void **state)
{
    char dir[600];
    struct stat st;

    snprintf(dir, sizeof dir, "%s/rpt-new", tmp);
    rmdir(dir);
    struct config *c =
        load_ok(text(OUT("  tls_rpt = true;") "tls_rpt = { contact = \"tlsrpt@example.org\";\n"
                                              "  directory = \"%s\"; };\n",
                     dir));
    assert_true(c->tls_rpt.enabled);
    assert_true(c->outbound[0].tls_rpt);
    assert_string_equal(c->tls_rpt.contact, "tlsrpt@example.org");
    assert_string_equal(c->tls_rpt.organization, "example.org");
    assert_string_equal(c->tls_rpt.directory, dir);
    assert_string_equal(c->tls_rpt.submit.host, "127.0.0.1");
    assert_int_equal(c->tls_rpt.submit.port, 25);
    assert_int_equal(stat(dir, &st), -1);
    config_free(c);

    c = load_ok(text(OUT("") "tls_rpt = { organization = \"Example \\\"Mail\\\" Inc\";\n"
                             "  contact = \"postmaster@example.org\"; directory = \"%s\";\n"
                             "  submit = \"[::1]:2525\"; };\n",
                     dir));
    assert_string_equal(c->tls_rpt.organization, "Example \"Mail\" Inc");
    assert_string_equal(c->tls_rpt.submit.host, "::1");
    assert_int_equal(c->tls_rpt.submit.port, 2525);
    assert_false(c->outbound[0].tls_rpt);
    config_free(c);
}

static void test_errors(void **state)
{
    char dir[600], file[600];

    snprintf(dir, sizeof dir, "%s/rpt-ok", tmp);
    mkdir(dir, 0750);
    expect_err(OUT("  tls_rpt = true;"),
               "t.conf:3: outbound[0].tls_rpt: results are recorded into tls_rpt.directory, "
               "but there is no tls_rpt block");
    expect_err(OUT("  tls_rpt = 1;"), "t.conf:3: outbound[0].tls_rpt:");
    expect_err(text(OUT("") "tls_rpt = { contact = \"a@example.org\"; };\n"),
               "t.conf:4: tls_rpt: missing required key \"directory\"");
    expect_err(
        text(OUT("") "tls_rpt = {\n contact = \"a b@example.org\";\n directory = \"%s\"; };\n",
             dir),
        "t.conf:5: tls_rpt.contact: \"a b@example.org\" is not an address");
    const char *bad[] = {"nobody",          "@example.org",  "a@",
                         "a@b@example.org", "a@Example.ORG", "<a@example.org>",
                         "a@exa_mple.org"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_err(
            text(OUT("") "tls_rpt = { contact = \"%s\"; directory = \"%s\"; };\n", bad[i], dir),
            "t.conf:4: tls_rpt.contact:");
    expect_err(text(OUT("") "tls_rpt = { contact = \"a@example.org\"; directory = \"%s\";\n"
                            "  submit = \"mail.example.org:25\"; };\n",
                    dir),
               "t.conf:5: tls_rpt.submit:");
    expect_err(text(OUT("") "tls_rpt = { contact = \"a@example.org\"; directory = \"%s\";\n"
                            "  organization = \"\"; };\n",
                    dir),
               "t.conf:5: tls_rpt.organization:");
    expect_err(text(OUT("") "tls_rpt = { contact = \"a@example.org\"; directory = \"%s\";\n"
                            "  report_to = \"x\"; };\n",
                    dir),
               "t.conf:5: unknown key \"report_to\" in tls_rpt");
    /* A file where the directory should be, and a directory that cannot
     * be made (its parent is missing). */
    snprintf(file, sizeof file, "%s/rpt-file", tmp);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    expect_err(
        text(OUT("") "tls_rpt = { contact = \"a@example.org\";\n  directory = \"%s\"; };\n", file),
        "t.conf:5: tls_rpt.directory: ");
    expect_err(text(OUT("") "tls_rpt = { contact = \"a@example.org\";\n"
                            "  directory = \"%s/missing/sub\"; };\n",
                    tmp),
               "cannot be used for the day's results: No such file or directory");
    /* A missing one whose parent is a file. */
    expect_err(text(OUT("") "tls_rpt = { contact = \"a@example.org\";\n"
                            "  directory = \"%s/sub\"; };\n",
                    file),
               "cannot be used for the day's results: Not a directory");
}

/* The reports look _smtp._tls TXT up: with DNSSEC validation the default
 * trust anchor must then be readable, and when it is not the error names
 * the tls_rpt block's line (the destination here needs no lookup). */
static void test_trust_anchor_needed(void **state)
{
    char dir[600];

    snprintf(dir, sizeof dir, "%s/rpt-ta", tmp);
    const char *conf = text(OUT("") "tls_rpt = {\n"
                                    "  contact = \"a@example.org\"; directory = \"%s\"; };\n",
                            dir);
    if (access(RESOLVER_DEFAULT_TRUST_ANCHOR, R_OK) == 0)
        config_free(load_ok(conf));
    else
        expect_err(conf, "t.conf:4: resolver.trust_anchor: cannot read the default");
    /* Without validation no anchor is needed. */
    config_free(
        load_ok(text(OUT("") "resolver = { dnssec = \"off\"; };\n"
                             "tls_rpt = { contact = \"a@example.org\"; directory = \"%s\"; };\n",
                     dir)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_absent),
        cmocka_unit_test(test_values_and_defaults),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_trust_anchor_needed),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
