/*
 * Unit tests for proxy/app/config_mta_sts.c: the top-level mta_sts block
 * (cache, ca_file, redis) and the outbound mta_sts key, their defaults,
 * and their errors (FILE:LINE).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/app/config.h"

static struct config *load_ok(const char *text)
{
    struct config *c = NULL;
    char err[4096];

    if (config_load_string(text, "/tmp/t.conf", &c, err, sizeof err) != 0)
        fail_msg("unexpected errors:\n%s", err);
    assert_non_null(c);
    return c;
}

static void expect_err(const char *text, const char *want)
{
    struct config *c = (struct config *)1;
    char err[4096];
    int rc = config_load_string(text, "/tmp/t.conf", &c, err, sizeof err);

    if (rc == 0)
        fail_msg("loaded, but expected: %s", want);
    assert_null(c);
    if (strcmp(err, want) != 0)
        fail_msg("got:\n%s\nwant:\n%s", err, want);
}

#define OUT(extra)                                                                                 \
    "outbound = ( { name = \"relay\"; listen = \"127.0.0.1:10025\";\n"                             \
    "  destination = \"192.0.2.25:25\";\n" extra " } );\n"

/* Any readable file: the loader checks that it can be read, tls.c parses
 * it when the service starts. */
#define CA "/proc/self/status"

static void test_defaults(void **state)
{
    struct config *c = load_ok(OUT(""));

    assert_false(c->outbound[0].opts.mta_sts);
    assert_false(c->mta_sts.enabled);
    assert_null(c->mta_sts.cache);
    config_free(c);
}

static void test_values(void **state)
{
    struct config *c = load_ok(OUT("  mta_sts = true;") "mta_sts = { cache = \"sts.cache\"; "
                                                        "ca_file = \"" CA "\"; };\n");

    assert_true(c->outbound[0].opts.mta_sts);
    assert_true(c->mta_sts.enabled);
    /* Relative to the file's directory. */
    assert_string_equal(c->mta_sts.cache, "/tmp/sts.cache");
    assert_string_equal(c->mta_sts.ca_file, CA);
    config_free(c);
    c = load_ok(OUT("") "mta_sts = { redis = \"[::1]:6380\"; };\n");
    assert_true(c->mta_sts.has_redis);
    assert_int_equal(c->mta_sts.redis.port, 6380);
    config_free(c);
    /* The CA file defaults to the global tls.ca_file. */
    c = load_ok(OUT("  mta_sts = true;") "tls = { ca_file = \"" CA "\"; };\n");
    assert_string_equal(c->mta_sts.ca_file, CA);
    assert_null(c->mta_sts.cache);
    config_free(c);
}

static void test_errors(void **state)
{
    expect_err(OUT("  mta_sts = true;") "mta_sts = {\n  ca_file = \"/nonexistent/ca.pem\";\n};\n",
               "/tmp/t.conf:5: mta_sts.ca_file: cannot read \"/nonexistent/ca.pem\": No such "
               "file or directory");
    expect_err(OUT("") "mta_sts = { cache = \"/nonexistent/dir/sts.cache\"; };\n",
               "/tmp/t.conf:4: mta_sts.cache: \"/nonexistent/dir/sts.cache\": its directory is "
               "not writable: No such file or directory");
    expect_err(OUT("") "mta_sts = { cache = \"\"; };\n",
               "/tmp/t.conf:4: mta_sts.cache: empty file name (leave the key out to keep the "
               "cache in memory)");
    expect_err(OUT("") "mta_sts = {\n redis = \"redis.example:6379\"; };\n",
               "/tmp/t.conf:5: mta_sts.redis: expected \"address:port\" (an IP address): "
               "\"redis.example:6379\": host must be an IP address or \"localhost\" (host "
               "names are not resolved here)");
    expect_err(OUT("") "mta_sts = { cahce = \"x\"; };\n",
               "/tmp/t.conf:4: unknown key \"cahce\" in mta_sts");
    expect_err(OUT("  mta_sts = 1;"), "/tmp/t.conf:3: outbound[0].mta_sts: expected true or false");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
