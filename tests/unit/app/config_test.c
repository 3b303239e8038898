/*
 * Unit tests for proxy/config.c: the shipped example files load, defaults and
 * tls merging are right, every kind of mistake is reported with the exact
 * "FILE:LINE: message" text, and policy lookup picks the most specific rule.
 *
 * Files that must exist (certificates, keys, @include) are written under
 * $TEST_TMPDIR; everything else is loaded from strings.
 */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <limits.h>
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
#include "proxy/policy/rules.h"

#define DEFAULT_CIPHERS                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"     \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"     \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

static char tmp_root[PATH_MAX];

/* A fresh directory under $TEST_TMPDIR (or /tmp outside Bazel) per call, so
 * that tests never see each other's files. The caller frees the result. */
static char *make_dir(const char *name)
{
    char *path;

    if (!tmp_root[0]) {
        const char *t = getenv("TEST_TMPDIR");

        snprintf(tmp_root, sizeof tmp_root, "%s/config_test.XXXXXX", t ? t : "/tmp");
        assert_non_null(mkdtemp(tmp_root));
    }
    assert_true(asprintf(&path, "%s/%s", tmp_root, name) > 0);
    assert_int_equal(mkdir(path, 0700), 0);
    return path;
}

static char *write_file(const char *dir, const char *name, const char *text)
{
    char *path;
    FILE *f;

    assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    return path;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char *text;
    long len;

    if (!f)
        fail_msg("cannot open %s (run from the runfiles directory)", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    len = ftell(f);
    assert_true(len > 0);
    rewind(f);
    text = malloc((size_t)len + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
    text[len] = '\0';
    fclose(f);
    return text;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);

    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

/* Loads text that must be valid; fails the test with the messages if not. */
static struct config *load_ok(const char *text)
{
    struct config *c = NULL;
    char err[4096];

    if (config_load_string(text, "t.conf", &c, err, sizeof err) != 0)
        fail_msg("unexpected errors:\n%s", err);
    assert_non_null(c);
    return c;
}

/* Loads text that must fail and compares the whole error text. */
static void expect_err(const char *text, const char *want)
{
    struct config *c = (struct config *)1;
    char err[4096];
    int rc = config_load_string(text, "t.conf", &c, err, sizeof err);

    if (rc == 0)
        fail_msg("loaded, but expected: %s", want);
    assert_true(rc < 0);
    assert_null(c);
    if (strcmp(err, want) != 0)
        fail_msg("got:\n%s\nwant:\n%s", err, want);
}

/* A listener so that a fragment under test is a complete config. */
#define IN_OK "inbound = ( { name = \"in\"; listen = \"127.0.0.1:2525\"; backend = \"127.0.0.1:25\"; } );\n"

static uint16_t port_of(const struct addr *a)
{
    if (a->sa.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->sa)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->sa)->sin6_port);
}

static const char *ip_of(const struct addr *a, char *buf, size_t len)
{
    const void *src = a->sa.ss_family == AF_INET
                          ? (const void *)&((const struct sockaddr_in *)&a->sa)->sin_addr
                          : (const void *)&((const struct sockaddr_in6 *)&a->sa)->sin6_addr;

    return inet_ntop(a->sa.ss_family, src, buf, (socklen_t)len);
}

/* ------------------------------------------------------------------------ */
/* Good files                                                               */

static void test_example_config(void **state)
{
    static const char *const files[] = {"rsa.pem",        "rsa.key",       "ecdsa.pem",
                                        "ecdsa.key",      "submission.pem", "submission.key"};
    char *dir = make_dir("example"), *text = read_file("config/smtp-tls-proxy.conf");
    char *path = write_file(dir, "smtp-tls-proxy.conf", text);
    struct config *c = NULL;
    char err[4096], ip[64];

    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        free(write_file(dir, files[i], "placeholder\n"));
    if (config_load(path, &c, err, sizeof err) != 0)
        fail_msg("example config does not load:\n%s", err);

    assert_string_equal(c->file, path);
    assert_int_equal(c->workers, 0);
    assert_int_equal(c->log_level, LOG_LEVEL_INFO);
    assert_int_equal(c->log_format, LOG_FORMAT_TEXT);
    assert_true(c->metrics_enabled);
    assert_int_equal(port_of(&c->metrics_listen), 9925);
    assert_int_equal(c->shutdown_timeout, 30);
    assert_int_equal(c->tls.ncertificates, 2);
    assert_int_equal(c->tls.nkeys, 2);
    assert_true(c->tls.certificates[0][0] == '/');
    assert_true(ends_with(c->tls.certificates[0], "/example/rsa.pem"));
    assert_true(ends_with(c->tls.keys[1], "/example/ecdsa.key"));
    assert_string_equal(c->tls.ciphers, DEFAULT_CIPHERS);
    assert_string_equal(c->tls.ca_file, "/etc/ssl/certs/ca-certificates.crt");

    assert_int_equal(c->ninbound, 2);
    assert_string_equal(c->inbound[0].name, "mx");
    assert_string_equal(ip_of(&c->inbound[0].listen, ip, sizeof ip), "0.0.0.0");
    assert_int_equal(port_of(&c->inbound[0].listen), 25);
    assert_int_equal(c->inbound[0].tls.ncertificates, 2);
    assert_int_equal(c->inbound[0].opts.tls_mode, SESSION_TLS_STARTTLS);
    assert_int_equal(c->inbound[0].opts.bare_newline, SESSION_BARE_NEWLINE_NORMALIZE);
    assert_false(c->inbound[0].opts.received_header);

    assert_string_equal(c->inbound[1].name, "submissions");
    assert_int_equal(c->inbound[1].listen.sa.ss_family, AF_INET6);
    assert_string_equal(c->inbound[1].listen.host, "::");
    assert_string_equal(c->inbound[1].opts.backend.host, "::1");
    assert_int_equal(c->inbound[1].opts.tls_mode, SESSION_TLS_IMPLICIT);
    assert_true(c->inbound[1].opts.require_tls);
    assert_int_equal(c->inbound[1].opts.backend_client_info, SESSION_CLIENT_INFO_XCLIENT);
    assert_int_equal(c->inbound[1].opts.bare_newline, SESSION_BARE_NEWLINE_REJECT);
    assert_true(c->inbound[1].opts.received_header);
    assert_int_equal(c->inbound[1].opts.max_connections, 500);
    assert_int_equal(c->inbound[1].opts.timeouts.connect, 10);
    assert_int_equal(c->inbound[1].opts.timeouts.handshake, 30);
    assert_int_equal(c->inbound[1].opts.timeouts.idle, 600);
    assert_int_equal(c->inbound[1].tls.ncertificates, 1);
    assert_true(ends_with(c->inbound[1].tls.certificates[0], "/submission.pem"));
    assert_int_equal(c->inbound[1].tls.min_version, 13);

    assert_int_equal(c->noutbound, 2);
    assert_true(c->outbound[0].opts.original_dst);
    assert_int_equal(c->outbound[0].opts.policy.nrules, 4);
    assert_int_equal(c->outbound[0].opts.policy.fallback, OUTBOUND_OPPORTUNISTIC);
    assert_false(c->outbound[1].opts.original_dst);
    assert_string_equal(c->outbound[1].opts.destination.host, "smtp.example.net");
    assert_int_equal(c->outbound[1].opts.destination.port, 587);
    assert_int_equal(c->outbound[1].opts.destination.salen, 0);
    assert_int_equal(c->outbound[1].opts.policy.fallback, OUTBOUND_VERIFY);

    config_free(c);
    free(path);
    free(text);
    free(dir);
}

static void test_minimal_config(void **state)
{
    char *dir = make_dir("minimal"), *text = read_file("config/minimal.conf");
    char *path = write_file(dir, "minimal.conf", text);
    struct config *c = NULL;
    char err[4096];

    free(write_file(dir, "server.pem", "x"));
    free(write_file(dir, "server.key", "x"));
    if (config_load(path, &c, err, sizeof err) != 0)
        fail_msg("minimal config does not load:\n%s", err);
    assert_int_equal(c->ninbound, 1);
    assert_int_equal(c->noutbound, 0);
    assert_int_equal(c->inbound[0].tls.ncertificates, 1);
    assert_true(ends_with(c->inbound[0].tls.keys[0], "/minimal/server.key"));
    config_free(c);
    free(path);
    free(text);
    free(dir);
}

static void test_defaults(void **state)
{
    struct config *c = load_ok(IN_OK "outbound = ( { name = \"out\"; listen = \"127.0.0.1:10025\"; } );");
    const struct config_inbound *in = &c->inbound[0];
    const struct config_outbound *o = &c->outbound[0];

    assert_string_equal(c->file, "t.conf");
    assert_int_equal(c->workers, 0);
    assert_int_equal(c->log_level, LOG_LEVEL_INFO);
    assert_int_equal(c->log_format, LOG_FORMAT_TEXT);
    assert_false(c->metrics_enabled);
    assert_int_equal(c->shutdown_timeout, 30);
    assert_int_equal(c->tls.ncertificates, 0);
    assert_int_equal(c->tls.min_version, 12);
    assert_string_equal(c->tls.ciphers, DEFAULT_CIPHERS);
    assert_string_equal(c->tls.ca_file, "/etc/ssl/certs/ca-certificates.crt");

    assert_string_equal(in->name, "in");
    assert_int_equal(in->opts.tls_mode, SESSION_TLS_STARTTLS);
    assert_false(in->opts.require_tls);
    assert_false(in->opts.proxy_protocol);
    assert_int_equal(in->opts.backend_client_info, SESSION_CLIENT_INFO_NONE);
    assert_int_equal(in->opts.bare_newline, SESSION_BARE_NEWLINE_NORMALIZE);
    assert_false(in->opts.received_header);
    assert_int_equal(in->opts.max_connections, 10000);
    assert_int_equal(in->opts.timeouts.connect, 10);
    assert_int_equal(in->opts.timeouts.handshake, 30);
    assert_int_equal(in->opts.timeouts.idle, 300);
    assert_int_equal(in->tls.min_version, 12);
    assert_string_equal(in->tls.ciphers, DEFAULT_CIPHERS);
    assert_int_equal(in->line, 1);

    assert_string_equal(o->name, "out");
    assert_true(o->opts.original_dst);
    assert_int_equal(o->opts.policy.fallback, OUTBOUND_OPPORTUNISTIC);
    assert_int_equal(o->opts.policy.nrules, 0);
    assert_int_equal(o->opts.max_connections, 10000);
    assert_int_equal(o->opts.timeouts.connect, 30);
    assert_int_equal(o->opts.timeouts.handshake, 30);
    assert_int_equal(o->opts.timeouts.idle, 300);
    assert_int_equal(o->line, 2);
    config_free(c);
}

static void test_builtin_default(void **state)
{
    struct config *c = config_default();
    char ip[64];

    assert_non_null(c);
    assert_string_equal(c->file, "(built-in)");
    assert_int_equal(c->ninbound, 1);
    assert_int_equal(c->noutbound, 0);
    assert_string_equal(c->inbound[0].name, "default");
    assert_string_equal(ip_of(&c->inbound[0].listen, ip, sizeof ip), "127.0.0.1");
    assert_int_equal(port_of(&c->inbound[0].listen), 2525);
    assert_int_equal(c->inbound[0].listen.salen, sizeof(struct sockaddr_in));
    assert_string_equal(ip_of(&c->inbound[0].opts.backend, ip, sizeof ip), "127.0.0.1");
    assert_int_equal(c->inbound[0].opts.backend.port, 25);
    assert_int_equal(c->inbound[0].opts.tls_mode, SESSION_TLS_STARTTLS);
    assert_int_equal(c->inbound[0].tls.ncertificates, 0);
    assert_string_equal(c->inbound[0].tls.ciphers, DEFAULT_CIPHERS);
    assert_int_equal(c->log_level, LOG_LEVEL_INFO);
    config_free(c);
    config_free(NULL);
}

static void test_all_values(void **state)
{
    struct config *c = load_ok(
        "workers = 4; log_level = \"debug\"; log_format = \"json\";\n"
        "metrics_listen = \"[::1]:9925\"; shutdown_timeout = 0;\n"
        "inbound = ( { name = \"a.b_c-1\"; listen = \"[::1]:2525\"; backend = \"localhost:25\";\n"
        "  tls_mode = \"implicit\"; require_tls = true; proxy_protocol = true;\n"
        "  backend_client_info = \"proxy-v2\"; bare_newline = \"reject\"; max_connections = 1000000;\n"
        "  received_header = true;\n"
        "  timeouts = { connect = 1; handshake = 86400; idle = 7; }; } );\n"
        "outbound = ( { name = \"o1\"; listen = \"127.0.0.1:10025\"; destination = \"192.0.2.1:25\"; policy = \"none\"; },\n"
        "  { name = \"o2\"; listen = \"127.0.0.1:10026\"; destination = \"[2001:db8::1]:2525\"; policy = \"required\"; },\n"
        "  { name = \"o3\"; listen = \"127.0.0.1:10027\"; destination = \"MX.Example.NET.:25\"; } );\n");
    char ip[64];

    assert_int_equal(c->workers, 4);
    assert_int_equal(c->log_level, LOG_LEVEL_DEBUG);
    assert_int_equal(c->log_format, LOG_FORMAT_JSON);
    assert_true(c->metrics_enabled);
    assert_int_equal(c->metrics_listen.sa.ss_family, AF_INET6);
    assert_int_equal(c->metrics_listen.salen, sizeof(struct sockaddr_in6));
    assert_int_equal(c->shutdown_timeout, 0);

    assert_string_equal(c->inbound[0].name, "a.b_c-1");
    assert_string_equal(c->inbound[0].listen.host, "::1");
    assert_int_equal(port_of(&c->inbound[0].listen), 2525);
    /* "localhost" is 127.0.0.1 without a lookup, and keeps its text. */
    assert_string_equal(c->inbound[0].opts.backend.host, "localhost");
    assert_string_equal(ip_of(&c->inbound[0].opts.backend, ip, sizeof ip), "127.0.0.1");
    assert_int_equal(c->inbound[0].opts.tls_mode, SESSION_TLS_IMPLICIT);
    assert_true(c->inbound[0].opts.require_tls);
    assert_true(c->inbound[0].opts.proxy_protocol);
    assert_int_equal(c->inbound[0].opts.backend_client_info, SESSION_CLIENT_INFO_PROXY_V2);
    assert_int_equal(c->inbound[0].opts.bare_newline, SESSION_BARE_NEWLINE_REJECT);
    assert_true(c->inbound[0].opts.received_header);
    assert_int_equal(c->inbound[0].opts.max_connections, 1000000);
    assert_int_equal(c->inbound[0].opts.timeouts.connect, 1);
    assert_int_equal(c->inbound[0].opts.timeouts.handshake, 86400);
    assert_int_equal(c->inbound[0].opts.timeouts.idle, 7);

    assert_false(c->outbound[0].opts.original_dst);
    assert_string_equal(ip_of(&c->outbound[0].opts.destination, ip, sizeof ip), "192.0.2.1");
    assert_int_equal(port_of(&c->outbound[0].opts.destination), 25);
    assert_int_equal(c->outbound[0].opts.policy.fallback, OUTBOUND_NONE);
    assert_string_equal(ip_of(&c->outbound[1].opts.destination, ip, sizeof ip), "2001:db8::1");
    assert_int_equal(c->outbound[1].opts.destination.port, 2525);
    assert_int_equal(c->outbound[1].opts.policy.fallback, OUTBOUND_REQUIRED);
    /* A name stays unresolved: the runtime looks it up per connection. */
    assert_string_equal(c->outbound[2].opts.destination.host, "MX.Example.NET.");
    assert_int_equal(c->outbound[2].opts.destination.salen, 0);
    assert_int_equal(c->outbound[2].opts.destination.sa.ss_family, 0);
    config_free(c);
}

/* Listener tls blocks override single keys of the global block; certificate
 * and key travel together; relative paths resolve against the file's
 * directory. */
static void test_tls_merge(void **state)
{
    char *dir = make_dir("merge"), *path;
    struct config *c = NULL;
    char err[4096];

    free(write_file(dir, "g.pem", "x"));
    free(write_file(dir, "g.key", "x"));
    free(write_file(dir, "l.pem", "x"));
    free(write_file(dir, "l.key", "x"));
    path = write_file(dir, "t.conf",
                      "tls = { certificate = \"g.pem\"; key = \"g.key\"; min_version = \"1.3\";\n"
                      "        ciphers = \"ECDHE-RSA-AES128-GCM-SHA256\"; ca_file = \"ca.pem\"; };\n"
                      "inbound = (\n"
                      "  { name = \"a\"; listen = \"127.0.0.1:1\"; backend = \"127.0.0.1:2\";\n"
                      "    tls = { ciphers = \"ECDHE-RSA-CHACHA20-POLY1305\"; }; },\n"
                      "  { name = \"b\"; listen = \"127.0.0.1:3\"; backend = \"127.0.0.1:4\";\n"
                      "    tls = { certificate = (\"l.pem\"); key = [\"l.key\"]; min_version = \"1.2\"; }; },\n"
                      "  { name = \"c\"; listen = \"127.0.0.1:5\"; backend = \"127.0.0.1:6\";\n"
                      "    tls = { ca_file = \"/abs/ca.pem\"; }; }\n"
                      ");\n");
    if (config_load(path, &c, err, sizeof err) != 0)
        fail_msg("%s", err);

    assert_int_equal(c->tls.min_version, 13);
    assert_true(ends_with(c->tls.certificates[0], "/merge/g.pem"));
    assert_true(ends_with(c->tls.ca_file, "/merge/ca.pem"));

    /* a: only ciphers replaced. */
    assert_string_equal(c->inbound[0].tls.ciphers, "ECDHE-RSA-CHACHA20-POLY1305");
    assert_int_equal(c->inbound[0].tls.min_version, 13);
    assert_int_equal(c->inbound[0].tls.ncertificates, 1);
    assert_true(ends_with(c->inbound[0].tls.certificates[0], "/merge/g.pem"));
    assert_true(ends_with(c->inbound[0].tls.keys[0], "/merge/g.key"));
    /* A deep copy, not a shared pointer. */
    assert_ptr_not_equal(c->inbound[0].tls.certificates[0], c->tls.certificates[0]);

    /* b: certificate and key replaced as a pair, min_version lowered. */
    assert_int_equal(c->inbound[1].tls.ncertificates, 1);
    assert_true(ends_with(c->inbound[1].tls.certificates[0], "/merge/l.pem"));
    assert_true(ends_with(c->inbound[1].tls.keys[0], "/merge/l.key"));
    assert_int_equal(c->inbound[1].tls.min_version, 12);
    assert_string_equal(c->inbound[1].tls.ciphers, "ECDHE-RSA-AES128-GCM-SHA256");

    /* c: absolute paths stay as written. */
    assert_string_equal(c->inbound[2].tls.ca_file, "/abs/ca.pem");
    assert_true(ends_with(c->inbound[2].tls.certificates[0], "/merge/g.pem"));

    config_free(c);
    free(path);
    free(dir);
}

/* @include is relative to the including file; errors name the included file. */
static void test_include(void **state)
{
    char *dir = make_dir("include"), *path, *inc;
    struct config *c = NULL;
    char err[4096], want[512];

    inc = write_file(dir, "listeners.conf", IN_OK);
    path = write_file(dir, "main.conf", "workers = 2;\n@include \"listeners.conf\"\n");
    if (config_load(path, &c, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(c->workers, 2);
    assert_int_equal(c->ninbound, 1);
    config_free(c);
    free(path);
    free(inc);

    inc = write_file(dir, "bad.conf", "\nlog_level = \"loud\";\n");
    path = write_file(dir, "main2.conf", "@include \"bad.conf\"\n" IN_OK "workers = -1;\n");
    assert_int_equal(config_load(path, &c, err, sizeof err), -EINVAL);
    snprintf(want, sizeof want,
             "%s:3: workers: must be between 0 and 1024, got -1\n"
             "bad.conf:2: log_level: expected \"error\", \"warn\", \"info\" or \"debug\", got \"loud\"",
             path);
    assert_string_equal(err, want);
    free(path);
    free(inc);
    free(dir);
}

/* ------------------------------------------------------------------------ */
/* Bad files: the exact text of each message                                */

static void test_syntax_errors(void **state)
{
    expect_err("workers = ;\n", "t.conf:1: syntax error");
    expect_err("workers = 1;\nworkers = 2;\n", "t.conf:2: duplicate setting name");
    expect_err("\n\ninbound = ( { name = \"x\" ", "t.conf:3: syntax error");
}

static void test_unknown_keys(void **state)
{
    expect_err(IN_OK "wrokers = 1;\n", "t.conf:2: unknown key \"wrokers\"");
    expect_err(IN_OK "Log_Level = \"info\";\n",
               "t.conf:2: unknown key \"Log_Level\" (did you mean \"log_level\"?)");
    expect_err("inbound = ( { name = \"in\"; listen = \"127.0.0.1:2525\";\n"
               "  backend = \"127.0.0.1:25\"; xyz = 1; } );\n",
               "t.conf:2: unknown key \"xyz\" in inbound[0]");
    expect_err("inbound = ( { name = \"in\"; listen = \"127.0.0.1:2525\"; backend = \"127.0.0.1:25\";\n"
               "  timeouts = { read = 5; }; } );\n",
               "t.conf:2: unknown key \"read\" in inbound[0].timeouts");
    expect_err(IN_OK "tls = {\n  cert = \"a.pem\";\n};\n", "t.conf:3: unknown key \"cert\" in tls");
    expect_err(IN_OK "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\";\n"
               "  tls = { verify = true; }; } );\n",
               "t.conf:3: unknown key \"verify\" in outbound[0].tls");
    expect_err(IN_OK "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\";\n"
               "  policies = ( { match = \"a.example\"; policy = \"none\"; port = 25; } ); } );\n",
               "t.conf:3: unknown key \"port\" in outbound[0].policies[0]");
    /* Valid in inbound, not in outbound. */
    expect_err(IN_OK "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\";\n"
               "  backend = \"127.0.0.1:25\"; } );\n",
               "t.conf:3: unknown key \"backend\" in outbound[0]");
}

static void test_wrong_types(void **state)
{
    expect_err(IN_OK "log_level = 3;\n", "t.conf:2: log_level: expected a string");
    expect_err(IN_OK "workers = \"4\";\n", "t.conf:2: workers: expected an integer");
    expect_err(IN_OK "shutdown_timeout = 1.5;\n", "t.conf:2: shutdown_timeout: expected an integer");
    expect_err(IN_OK "tls = \"x\";\n", "t.conf:2: tls: expected a group { ... }");
    expect_err(IN_OK "tls = { min_version = 1.2; };\n", "t.conf:2: tls.min_version: expected a string");
    expect_err(IN_OK "tls = { certificate = 5; key = \"/dev/null\"; };\n",
               "t.conf:2: tls.certificate: expected a file name or a list of file names");
    expect_err(IN_OK "tls = { certificate = (\"/dev/null\", 5); key = (\"/dev/null\", \"/dev/null\"); };\n",
               "t.conf:2: tls.certificate[1]: expected a file name");
    expect_err("inbound = { name = \"x\"; };\n",
               "t.conf:1: inbound: expected a list of groups, e.g. inbound = ( { ... }, { ... } );");
    expect_err(IN_OK "outbound = ( \"relay\" );\n", "t.conf:2: outbound[0]: expected a group { ... }");
    expect_err("inbound = ( { name = \"in\"; listen = \"127.0.0.1:2525\"; backend = \"127.0.0.1:25\";\n"
               "  require_tls = \"yes\"; proxy_protocol = 1; received_header = \"on\"; timeouts = 5; } );\n",
               "t.conf:2: inbound[0].require_tls: expected true or false\n"
               "t.conf:2: inbound[0].proxy_protocol: expected true or false\n"
               "t.conf:2: inbound[0].received_header: expected true or false\n"
               "t.conf:2: inbound[0].timeouts: expected a group { ... }");
    expect_err("inbound = ( { name = 1; listen = \"127.0.0.1:2525\"; backend = \"127.0.0.1:25\"; } );\n",
               "t.conf:1: inbound[0].name: expected a string");
    expect_err(IN_OK "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\"; policies = { }; } );\n",
               "t.conf:2: outbound[0].policies: expected a list of groups, e.g. policies = ( { ... }, { ... } );");
}

static void test_ehlo_keywords(void **state)
{
    (void)state;
    struct config *c = NULL;
    char err[1024] = "";
    assert_int_equal(config_load_string(
                         "inbound = ( { name = \"in\"; listen = \"127.0.0.1:2525\";\n"
                         "  backend = \"127.0.0.1:25\";\n"
                         "  ehlo_keywords = { pass = [ \"XEXAMPLE\" ]; discard = [ \"SIZE\", \"VRFY\" ]; };\n"
                         "} );\n",
                         "t.conf", &c, err, sizeof(err)),
                     0);
    assert_int_equal(c->inbound[0].opts.ehlo_keywords.npass, 1);
    assert_string_equal(c->inbound[0].opts.ehlo_keywords.pass[0], "XEXAMPLE");
    assert_int_equal(c->inbound[0].opts.ehlo_keywords.ndiscard, 2);
    config_free(c);
    expect_err("inbound = ( { name = \"in\"; listen = \"127.0.0.1:2525\"; backend = \"127.0.0.1:25\";\n"
               "  ehlo_keywords = { pass = [ \"STARTTLS\" ]; drop = [ ]; }; } );\n",
               "t.conf:2: unknown key \"drop\" in inbound[0].ehlo_keywords\n"
               "t.conf:2: inbound[0].ehlo_keywords.pass: \"STARTTLS\" is not an EHLO keyword the "
               "configuration may change (the proxy owns STARTTLS, AUTH, REQUIRETLS, XCLIENT and "
               "XFORWARD)");
    expect_err("inbound = ( { name = \"in\"; listen = \"127.0.0.1:2525\"; backend = \"127.0.0.1:25\";\n"
               "  proxy_protocol = true; proxy_protocol_from = [ \"10.0.0.0/8\", \"lb.example\" ]; } );\n",
               "t.conf:2: inbound[0].proxy_protocol_from: \"lb.example\" is not an IP address or CIDR "
               "network");
}

static void test_bad_enums(void **state)
{
    expect_err("inbound = ( { name = \"in\"; listen = \"127.0.0.1:2525\"; backend = \"127.0.0.1:25\";\n"
               "\n"
               "\n"
               "\n"
               "\n"
               "\n"
               "  tls_mode = \"foo\"; } );\n",
               "t.conf:7: inbound[0].tls_mode: expected \"starttls\" or \"implicit\", got \"foo\"");
    expect_err(IN_OK "log_format = \"xml\";\n",
               "t.conf:2: log_format: expected \"text\" or \"json\", got \"xml\"");
    expect_err("inbound = ( { name = \"in\"; listen = \"127.0.0.1:2525\"; backend = \"127.0.0.1:25\";\n"
               "  backend_client_info = \"proxy\"; bare_newline = \"strip\"; } );\n",
               "t.conf:2: inbound[0].backend_client_info: expected \"none\", \"xclient\", \"proxy-v1\" or "
               "\"proxy-v2\", got \"proxy\"\n"
               "t.conf:2: inbound[0].bare_newline: expected \"normalize\" or \"reject\", got \"strip\"");
    expect_err(IN_OK "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\"; policy = \"strict\"; } );\n",
               "t.conf:2: outbound[0].policy: expected \"none\", \"opportunistic\", \"required\" or "
               "\"verify\", got \"strict\"");
    expect_err(IN_OK "tls = { min_version = \"1.1\"; };\n",
               "t.conf:2: tls.min_version: expected \"1.2\" or \"1.3\", got \"1.1\"");
    /* Control characters in a value are not echoed raw. */
    expect_err(IN_OK "log_level = \"in\\nfo\";\n",
               "t.conf:2: log_level: expected \"error\", \"warn\", \"info\" or \"debug\", got \"in?fo\"");
}

static void test_missing_required(void **state)
{
    expect_err("inbound = (\n"
               "  { name = \"a\"; listen = \"127.0.0.1:1\"; backend = \"127.0.0.1:2\"; },\n"
               "  {\n"
               "    name = \"b\";\n"
               "    listen = \"127.0.0.1:3\";\n"
               "  }\n"
               ");\n",
               "t.conf:3: inbound[1]: missing required key \"backend\"");
    expect_err(IN_OK "outbound = ( { } );\n",
               "t.conf:2: outbound[0]: missing required key \"name\"\n"
               "t.conf:2: outbound[0]: missing required key \"listen\"");
    expect_err(IN_OK "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\";\n"
               "  policies = ( { match = \"x.example\"; } ); } );\n",
               "t.conf:3: outbound[0].policies[0]: missing required key \"policy\"");
}

static void test_no_listeners(void **state)
{
    expect_err("", "t.conf:1: no listeners: define at least one inbound or outbound listener");
    expect_err("workers = 1;\n\ninbound = ();\noutbound = [];\n",
               "t.conf:3: no listeners: define at least one inbound or outbound listener");
    /* An outbound listener alone is fine. */
    config_free(load_ok("outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\"; } );"));
}

static void test_ranges(void **state)
{
    expect_err("inbound = ( { name = \"in\"; listen = \"127.0.0.1:2525\"; backend = \"127.0.0.1:25\";\n"
               "  max_command_line = 511; timeouts = { min_data_rate = -1; }; } );\n",
               "t.conf:2: inbound[0].max_command_line: must be between 512 and 32768, got 511\n"
               "t.conf:2: inbound[0].timeouts.min_data_rate: must be between 0 and 1000000000, got -1");
    expect_err(IN_OK "workers = 1025;\n", "t.conf:2: workers: must be between 0 and 1024, got 1025");
    expect_err(IN_OK "shutdown_timeout = -1;\n",
               "t.conf:2: shutdown_timeout: must be between 0 and 86400, got -1");
    expect_err(IN_OK "shutdown_timeout = 86401;\n",
               "t.conf:2: shutdown_timeout: must be between 0 and 86400, got 86401");
    expect_err("inbound = ( { name = \"in\"; listen = \"127.0.0.1:2525\"; backend = \"127.0.0.1:25\";\n"
               "  max_connections = 0;\n"
               "  timeouts = { connect = 0; handshake = 86401; idle = 100000000000L; }; } );\n",
               "t.conf:2: inbound[0].max_connections: must be between 1 and 1000000, got 0\n"
               "t.conf:3: inbound[0].timeouts.connect: must be between 1 and 86400, got 0\n"
               "t.conf:3: inbound[0].timeouts.handshake: must be between 1 and 86400, got 86401\n"
               "t.conf:3: inbound[0].timeouts.idle: must be between 1 and 86400, got 100000000000");
    expect_err(IN_OK "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\"; max_connections = 1000001; } );\n",
               "t.conf:2: outbound[0].max_connections: must be between 1 and 1000000, got 1000001");
    /* The edges themselves are fine. */
    config_free(load_ok(IN_OK "workers = 1024; shutdown_timeout = 86400;"));
}

static void test_bad_addresses(void **state)
{
#define LISTEN(addr) "inbound = ( { name = \"in\"; listen = \"" addr "\"; backend = \"127.0.0.1:25\"; } );"
    expect_err(LISTEN("mail.example.com:25"),
               "t.conf:1: inbound[0].listen: \"mail.example.com:25\": host must be an IP address or "
               "\"localhost\" (host names are not resolved here)");
    expect_err(LISTEN("127.0.0.1:0"),
               "t.conf:1: inbound[0].listen: \"127.0.0.1:0\": port must be a number between 1 and 65535");
    expect_err(LISTEN("127.0.0.1:65536"),
               "t.conf:1: inbound[0].listen: \"127.0.0.1:65536\": port must be a number between 1 and 65535");
    expect_err(LISTEN("127.0.0.1:smtp"),
               "t.conf:1: inbound[0].listen: \"127.0.0.1:smtp\": port must be a number between 1 and 65535");
    expect_err(LISTEN("127.0.0.1:"),
               "t.conf:1: inbound[0].listen: \"127.0.0.1:\": port must be a number between 1 and 65535");
    expect_err(LISTEN("127.0.0.1"),
               "t.conf:1: inbound[0].listen: expected \"host:port\", got \"127.0.0.1\"");
    expect_err(LISTEN(":25"), "t.conf:1: inbound[0].listen: \":25\": missing host");
    expect_err(LISTEN("::1:25"),
               "t.conf:1: inbound[0].listen: \"::1:25\": an IPv6 address needs brackets, e.g. \"[::1]:25\"");
    expect_err(LISTEN("[::1]25"), "t.conf:1: inbound[0].listen: expected \"[address]:port\", got \"[::1]25\"");
    expect_err(LISTEN("[127.0.0.1]:25"),
               "t.conf:1: inbound[0].listen: \"[127.0.0.1]:25\": \"127.0.0.1\" is not an IPv6 address");
    expect_err(LISTEN("256.0.0.1:25"),
               "t.conf:1: inbound[0].listen: \"256.0.0.1:25\": host must be an IP address or \"localhost\" "
               "(host names are not resolved here)");
#undef LISTEN
    expect_err("inbound = ( { name = \"in\"; listen = \"127.0.0.1:2525\"; backend = \"backend:25\"; } );",
               "t.conf:1: inbound[0].backend: \"backend:25\": host must be an IP address or \"localhost\" "
               "(host names are not resolved here)");
    expect_err(IN_OK "metrics_listen = \"*:9925\";\n",
               "t.conf:2: metrics_listen: \"*:9925\": host must be an IP address or \"localhost\" (host "
               "names are not resolved here)");
    expect_err(IN_OK "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\"; destination = \"-x-.example:25\"; } );\n",
               "t.conf:2: outbound[0].destination: expected \"original\" or \"host:port\": "
               "\"-x-.example:25\": \"-x-.example\" is neither an IP address nor a valid host name");
    expect_err(IN_OK "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\"; destination = \"orig\"; } );\n",
               "t.conf:2: outbound[0].destination: expected \"original\" or \"host:port\": expected "
               "\"host:port\", got \"orig\"");
    expect_err(IN_OK "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\"; destination = \"192.0.2.300:25\"; } );\n",
               "t.conf:2: outbound[0].destination: expected \"original\" or \"host:port\": "
               "\"192.0.2.300:25\": \"192.0.2.300\" is neither an IP address nor a valid host name");
}

static void test_duplicates(void **state)
{
    expect_err("inbound = (\n"
               "  { name = \"mx\"; listen = \"127.0.0.1:1\"; backend = \"127.0.0.1:2\"; }\n"
               ");\n"
               "outbound = (\n"
               "  { name = \"mx\";\n"
               "    listen = \"127.0.0.1:3\"; }\n"
               ");\n",
               "t.conf:5: outbound[0].name: \"mx\" is already used by inbound[0] (line 2)");
    expect_err("inbound = (\n"
               "  { name = \"a\"; listen = \"0.0.0.0:25\"; backend = \"127.0.0.1:2\"; },\n"
               "  { name = \"b\"; listen = \"0.0.0.0:25\"; backend = \"127.0.0.1:2\"; },\n"
               "  { name = \"c\"; listen = \"127.0.0.1:25\"; backend = \"127.0.0.1:2\"; },\n"
               "  { name = \"d\"; listen = \"[::1]:25\"; backend = \"127.0.0.1:2\"; }\n"
               ");\n"
               "metrics_listen = \"[::1]:25\";\n",
               "t.conf:3: inbound[1].listen: \"0.0.0.0:25\" is already used by inbound[0] (line 2)\n"
               "t.conf:4: inbound[2].listen: \"127.0.0.1:25\" overlaps \"0.0.0.0:25\" of inbound[0] (line 2)\n"
               "t.conf:7: metrics_listen: \"[::1]:25\" clashes with the listen address \"[::1]:25\" of inbound[3] "
               "(line 5)");
    expect_err("inbound = ( { name = \"a\"; listen = \"127.0.0.1:25\"; backend = \"localhost:25\"; } );\n",
               "t.conf:1: inbound[0].backend: same address as listen: the proxy would connect to itself");
    expect_err(IN_OK "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\";\n"
               "  policies = ( { match = \"MX.example.net.\"; policy = \"none\"; },\n"
               "               { match = \"mx.example.net\"; policy = \"verify\"; },\n"
               "               { match = \"192.0.2.0/24\"; policy = \"none\"; },\n"
               "               { match = \"::ffff:192.0.2.0/120\"; policy = \"none\"; } ); } );\n",
               "t.conf:4: outbound[0].policies[1].match: \"mx.example.net\" repeats "
               "outbound[0].policies[0] (\"MX.example.net.\")\n"
               "t.conf:6: outbound[0].policies[3].match: \"::ffff:192.0.2.0/120\" repeats "
               "outbound[0].policies[2] (\"192.0.2.0/24\")");
    expect_err("inbound = ( { name = \"a b\"; listen = \"127.0.0.1:1\"; backend = \"127.0.0.1:2\"; },\n"
               "  { name = \"\"; listen = \"127.0.0.1:3\"; backend = \"127.0.0.1:2\"; } );\n",
               "t.conf:1: inbound[0].name: \"a b\" may contain only letters, digits, '.', '_' and '-' (it "
               "appears in logs and metric labels)\n"
               "t.conf:2: inbound[1].name: must be 1 to 64 characters long");
}

static void test_bad_policies(void **state)
{
#define RULE(m) IN_OK "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\";\n" \
                "  policies = ( { match = \"" m "\"; policy = \"none\"; } ); } );\n"
    expect_err(RULE("192.0.2.1/24"),
               "t.conf:3: outbound[0].policies[0].match: \"192.0.2.1/24\": address has bits set beyond the /24 prefix");
    expect_err(RULE("192.0.2.0/33"),
               "t.conf:3: outbound[0].policies[0].match: \"192.0.2.0/33\": prefix length must be 0 to 32");
    expect_err(RULE("2001:db8::/129"),
               "t.conf:3: outbound[0].policies[0].match: \"2001:db8::/129\": prefix length must be 0 to 128");
    expect_err(RULE("192.0.2.0/"),
               "t.conf:3: outbound[0].policies[0].match: \"192.0.2.0/\": prefix length must be 0 to 32");
    expect_err(RULE("*.example.com"),
               "t.conf:3: outbound[0].policies[0].match: \"*.example.com\": write \".example.com\" to match "
               "every name below a domain");
    expect_err(RULE("exa mple.com"),
               "t.conf:3: outbound[0].policies[0].match: \"exa mple.com\" is not a host name, \".domain\" "
               "suffix, IP address or CIDR network");
    expect_err(RULE("example.com/24"),
               "t.conf:3: outbound[0].policies[0].match: \"example.com/24\" is not a host name, \".domain\" "
               "suffix, IP address or CIDR network");
    expect_err(RULE(""),
               "t.conf:3: outbound[0].policies[0].match: \"\" is not a host name, \".domain\" suffix, IP "
               "address or CIDR network");
    expect_err(RULE("."),
               "t.conf:3: outbound[0].policies[0].match: \".\" is not a host name, \".domain\" suffix, IP "
               "address or CIDR network");
#undef RULE
    expect_err(IN_OK "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\";\n"
               "  policies = ( 5, { match = 1; policy = \"sometimes\"; } ); } );\n",
               "t.conf:3: outbound[0].policies[0]: expected a group { match = ...; policy = ...; }\n"
               "t.conf:3: outbound[0].policies[1].policy: expected \"none\", \"opportunistic\", \"required\" or "
               "\"verify\", got \"sometimes\"\n"
               "t.conf:3: outbound[0].policies[1].match: expected a string");
}

static void test_bad_tls_files(void **state)
{
    expect_err(IN_OK "tls = {\n  certificate = \"/nonexistent/x.pem\";\n  key = \"/dev/null\";\n};\n",
               "t.conf:3: tls.certificate: cannot read \"/nonexistent/x.pem\": No such file or directory");
    expect_err(IN_OK "tls = { certificate = \"/dev/null\"; key = \"/\"; };\n",
               "t.conf:2: tls.key: cannot read \"/\": Is a directory");
    expect_err(IN_OK "tls = { certificate = [\"/dev/null\", \"/dev/null\"];\n  key = \"/dev/null\"; };\n",
               "t.conf:3: tls.key: 1 key file for 2 certificates (they pair up in order)");
    expect_err(IN_OK "tls = { certificate = \"/dev/null\"; };\n",
               "t.conf:2: tls.certificate: a certificate needs its key: set tls.key too");
    expect_err("inbound = ( { name = \"in\"; listen = \"127.0.0.1:2525\"; backend = \"127.0.0.1:25\";\n"
               "  tls = { key = \"/dev/null\"; }; } );\n",
               "t.conf:2: inbound[0].tls.key: a key needs its certificate: set inbound[0].tls.certificate too");
    expect_err(IN_OK "tls = { certificate = []; key = []; ciphers = \"\"; ca_file = \"\"; };\n",
               "t.conf:2: tls.certificate: the list of files is empty\n"
               "t.conf:2: tls.key: the list of files is empty\n"
               "t.conf:2: tls.ciphers: must not be empty\n"
               "t.conf:2: tls.ca_file: must not be empty");
}

/* A relative certificate name that does not exist: shown as shown_name,
 * both as written and as resolved. */
static void expect_relative_unreadable(const char *dirname, const char *name,
                                       const char *shown_name)
{
    char *dir = make_dir(dirname), *path, want[PATH_MAX + 256], real[PATH_MAX], text[256];
    struct config *c = NULL;
    char err[4096];

    snprintf(text, sizeof text, IN_OK "tls = { certificate = \"%s\"; key = \"/dev/null\"; };\n",
             name);
    path = write_file(dir, "t.conf", text);
    assert_int_equal(config_load(path, &c, err, sizeof err), -EINVAL);
    assert_null(c);
    assert_non_null(realpath(dir, real));
    snprintf(want, sizeof want,
             "%s:2: tls.certificate: cannot read \"%s\": No such file or directory "
             "(resolved to \"%s/%s\")",
             path, shown_name, real, shown_name);
    assert_string_equal(err, want);
    free(path);
    free(dir);
}

/* A relative name that does not exist is shown as written and as resolved. */
static void test_relative_unreadable(void **state)
{
    expect_relative_unreadable("relative", "x.pem", "x.pem");
}

/* A control character in a relative name is made safe in the resolved name
 * too: a raw newline would split one problem into two lines (config_fuzz). */
static void test_relative_unreadable_shown_safely(void **state)
{
    expect_relative_unreadable("relative_nl", "a\nb.pem", "a?b.pem");
}

/* ca_file must be readable only where something verifies with it, and a
 * shared one is reported once. */
static void test_ca_file(void **state)
{
    config_free(load_ok(IN_OK "tls = { ca_file = \"/nonexistent/ca.pem\"; };\n"
                        "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\"; policy = \"required\"; } );\n"));
    expect_err(IN_OK "tls = { ca_file = \"/nonexistent/ca.pem\"; };\n"
               "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\"; policy = \"verify\"; },\n"
               "  { name = \"p\"; listen = \"127.0.0.1:10026\";\n"
               "    policies = ( { match = \"a.example\"; policy = \"verify\"; } ); } );\n",
               "t.conf:2: tls.ca_file: cannot read \"/nonexistent/ca.pem\": No such file or directory "
               "(needed by policy \"verify\" in outbound[0])");
    expect_err(IN_OK "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\"; policy = \"verify\";\n"
               "  tls = { ca_file = \"/nonexistent/own.pem\"; }; } );\n",
               "t.conf:3: outbound[0].tls.ca_file: cannot read \"/nonexistent/own.pem\": No such file or "
               "directory (needed by policy \"verify\" in outbound[0])");
}

/* The resolver block (DESIGN.md "Contract, second part"). */
#define OUT_NAMED "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\"; destination = \"mx.example.net:25\"; } );\n"

static void test_resolver(void **state)
{
    char ip[64];
    struct config *c = load_ok(IN_OK);

    assert_int_equal(c->resolver.nservers, 0);
    assert_int_equal(c->resolver.dnssec, RESOLVER_DNSSEC_VALIDATE);
    assert_string_equal(c->resolver.trust_anchor, RESOLVER_DEFAULT_TRUST_ANCHOR);
    config_free(c);

    char *dir = make_dir("resolver");
    char *ta = write_file(dir, "ta.key", "example.net. IN DS 1 8 2 00\n");
    char *text;
    assert_true(asprintf(&text, IN_OK "resolver = { servers = [ \"127.0.0.53:5353\", \"::1\", "
                         "\"192.0.2.1\" ]; dnssec = \"validate\"; trust_anchor = \"%s\"; };\n",
                         ta) > 0);
    c = load_ok(text);
    assert_int_equal(c->resolver.nservers, 3);
    assert_string_equal(ip_of(&c->resolver.servers[0], ip, sizeof ip), "127.0.0.53");
    assert_int_equal(c->resolver.servers[0].port, 5353);
    assert_string_equal(ip_of(&c->resolver.servers[1], ip, sizeof ip), "::1");
    assert_int_equal(c->resolver.servers[1].port, 53);
    assert_int_equal(c->resolver.servers[2].port, 53);
    assert_string_equal(c->resolver.trust_anchor, ta);
    config_free(c);
    free(text);

    c = load_ok(IN_OK OUT_NAMED "resolver = { dnssec = \"off\"; };\n");
    assert_int_equal(c->resolver.dnssec, RESOLVER_DNSSEC_OFF);
    assert_null(c->resolver.trust_anchor);
    config_free(c);

    /* An unreadable default anchor matters only where a name is looked up. */
    config_free(load_ok(IN_OK "outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\"; "
                        "destination = \"localhost:25\"; } );\n"
                        "resolver = { servers = [ \"127.0.0.1\" ]; };\n"));
    expect_err(IN_OK "resolver = {\n servers = ( \"ns.example.net:53\", 5 );\n"
               " dnssec = \"maybe\"; port = 53; };\n",
               "t.conf:3: resolver.servers[0]: expected an IP address with an optional port: "
               "\"ns.example.net:53\": host must be an IP address or \"localhost\" (host names "
               "are not resolved here)\n"
               "t.conf:3: resolver.servers[1]: expected \"address:port\"\n"
               "t.conf:4: unknown key \"port\" in resolver\n"
               "t.conf:4: resolver.dnssec: expected \"validate\", \"trust-ad\" or \"off\", got \"maybe\"");
    expect_err(IN_OK "resolver = { servers = [ ]; };\n",
               "t.conf:2: resolver.servers: the list is empty (leave it out to use /etc/resolv.conf)");
    expect_err(IN_OK "resolver = { dnssec = \"trust-ad\";\n servers = [ \"192.0.2.1\" ]; };\n",
               "t.conf:2: resolver.dnssec: \"trust-ad\" is allowed only with loopback servers, and "
               "192.0.2.1:53 is not one (the AD bit of a remote resolver can be forged): use \"validate\"");
    /* Loopback servers, v4 and v6: accepted; trust_anchor is ignored. */
    c = load_ok(IN_OK "resolver = { dnssec = \"trust-ad\"; trust_anchor = \"/nonexistent\";\n"
                " servers = [ \"127.0.0.53\", \"[::1]:5353\" ]; };\n");
    assert_int_equal(c->resolver.dnssec, RESOLVER_DNSSEC_TRUST_AD);
    assert_int_equal(c->resolver.nservers, 2);
    assert_null(c->resolver.trust_anchor);
    config_free(c);
    expect_err(IN_OK "resolver = { dnssec = \"off\";\n trust_anchor = \"x.key\"; };\n",
               "t.conf:3: resolver.trust_anchor: only used with dnssec = \"validate\"");
    expect_err(IN_OK "resolver = {\n trust_anchor = \"/nonexistent/root.key\"; };\n",
               "t.conf:3: resolver.trust_anchor: cannot read \"/nonexistent/root.key\": No such file "
               "or directory");
    free(ta);
    free(dir);
}

/* Every problem is reported, in file order, however the loader visits them. */
static void test_many_errors_sorted(void **state)
{
    expect_err("workers = 5000;\n"
               "inbound = (\n"
               "  { name = \"a\"; listen = \"127.0.0.1:1\"; backend = \"127.0.0.1:2\"; tls_mode = \"x\"; }\n"
               ");\n"
               "tls = { min_version = \"1.0\"; };\n"
               "bogus = 1;\n",
               "t.conf:1: workers: must be between 0 and 1024, got 5000\n"
               "t.conf:3: inbound[0].tls_mode: expected \"starttls\" or \"implicit\", got \"x\"\n"
               "t.conf:5: tls.min_version: expected \"1.2\" or \"1.3\", got \"1.0\"\n"
               "t.conf:6: unknown key \"bogus\"");
}

static void test_error_buffer(void **state)
{
    struct config *c = NULL;
    char small[24];

    memset(small, 'x', sizeof small);
    assert_int_equal(config_load_string("workers = 5000; log_level = 1;", "t.conf", &c, small,
                                        sizeof small),
                     -EINVAL);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_memory_equal(small, "t.conf:1: workers: must ", sizeof small - 1);
    /* A zero-length buffer is allowed. */
    assert_int_equal(config_load_string("workers = 5000;", "t.conf", &c, NULL, 0), -EINVAL);
    assert_null(c);
}

static void test_missing_file(void **state)
{
    struct config *c = (struct config *)1;
    char err[256];

    assert_int_equal(config_load("/nonexistent/smtp.conf", &c, err, sizeof err), -ENOENT);
    assert_null(c);
    assert_string_equal(err, "/nonexistent/smtp.conf: cannot read: No such file or directory");
    assert_int_equal(config_load("/", &c, err, sizeof err), -EISDIR);
    assert_string_equal(err, "/: cannot read: Is a directory");
}

/* ------------------------------------------------------------------------ */
/* Policy lookup                                                            */

static struct config *policy_config(void)
{
    return load_ok("outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\"; policy = \"opportunistic\";\n"
                   "  policies = (\n"
                   "    { match = \"mx.example.net\"; policy = \"verify\"; },\n"
                   "    { match = \".example.net\"; policy = \"required\"; },\n"
                   "    { match = \".mail.example.net\"; policy = \"none\"; },\n"
                   "    { match = \"example.org.\"; policy = \"none\"; },\n"
                   "    { match = \"192.0.2.0/24\"; policy = \"required\"; },\n"
                   "    { match = \"192.0.2.128/25\"; policy = \"none\"; },\n"
                   "    { match = \"192.0.2.200\"; policy = \"verify\"; },\n"
                   "    { match = \"2001:db8::/32\"; policy = \"none\"; },\n"
                   "    { match = \"2001:db8:1::/48\"; policy = \"verify\"; },\n"
                   "    { match = \"::ffff:198.51.100.0/120\"; policy = \"verify\"; }\n"
                   "  ); } );\n");
}

static struct sockaddr_storage sa(const char *ip)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof ss);
    if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        ss.ss_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr), 1);
        ss.ss_family = AF_INET6;
    }
    return ss;
}

static enum outbound_policy by_name(const struct config_outbound *o, const char *host)
{
    return policy_for(&o->opts.policy, host, NULL);
}

static enum outbound_policy by_addr(const struct config_outbound *o, const char *ip)
{
    struct sockaddr_storage ss = sa(ip);

    return policy_for(&o->opts.policy, NULL, (const struct sockaddr *)&ss);
}

static void test_policy_names(void **state)
{
    struct config *c = policy_config();
    const struct config_outbound *o = &c->outbound[0];

    assert_int_equal(by_name(o, "mx.example.net"), OUTBOUND_VERIFY);
    /* Case and a trailing dot do not matter, on either side. */
    assert_int_equal(by_name(o, "MX.Example.NET."), OUTBOUND_VERIFY);
    assert_int_equal(by_name(o, "example.org"), OUTBOUND_NONE);
    assert_int_equal(by_name(o, "EXAMPLE.ORG."), OUTBOUND_NONE);
    /* An exact rule does not cover subdomains. */
    assert_int_equal(by_name(o, "mx.example.org"), OUTBOUND_OPPORTUNISTIC);
    /* Suffix: names below the domain, not the domain itself. */
    assert_int_equal(by_name(o, "mx2.example.net"), OUTBOUND_REQUIRED);
    assert_int_equal(by_name(o, "a.b.example.net"), OUTBOUND_REQUIRED);
    assert_int_equal(by_name(o, "example.net"), OUTBOUND_OPPORTUNISTIC);
    assert_int_equal(by_name(o, "badexample.net"), OUTBOUND_OPPORTUNISTIC);
    /* The longer suffix wins, whatever the rule order. */
    assert_int_equal(by_name(o, "in.mail.example.net"), OUTBOUND_NONE);
    assert_int_equal(by_name(o, "IN.MAIL.EXAMPLE.NET."), OUTBOUND_NONE);
    /* ".mail.example.net" does not cover mail.example.net itself. */
    assert_int_equal(by_name(o, "mail.example.net"), OUTBOUND_REQUIRED);
    /* Fallbacks. */
    assert_int_equal(by_name(o, "other.test"), OUTBOUND_OPPORTUNISTIC);
    assert_int_equal(by_name(o, ""), OUTBOUND_OPPORTUNISTIC);
    assert_int_equal(policy_for(&o->opts.policy, NULL, NULL), OUTBOUND_OPPORTUNISTIC);
    config_free(c);
}

static void test_policy_addresses(void **state)
{
    struct config *c = policy_config();
    const struct config_outbound *o = &c->outbound[0];

    /* Longest prefix wins. */
    assert_int_equal(by_addr(o, "192.0.2.1"), OUTBOUND_REQUIRED);
    assert_int_equal(by_addr(o, "192.0.2.127"), OUTBOUND_REQUIRED);
    assert_int_equal(by_addr(o, "192.0.2.128"), OUTBOUND_NONE);
    assert_int_equal(by_addr(o, "192.0.2.200"), OUTBOUND_VERIFY);
    assert_int_equal(by_addr(o, "192.0.3.1"), OUTBOUND_OPPORTUNISTIC);
    /* IPv6. */
    assert_int_equal(by_addr(o, "2001:db8:ffff::1"), OUTBOUND_NONE);
    assert_int_equal(by_addr(o, "2001:db8:1::25"), OUTBOUND_VERIFY);
    assert_int_equal(by_addr(o, "2001:db9::1"), OUTBOUND_OPPORTUNISTIC);
    /* IPv4-mapped addresses match IPv4 rules, and mapped rules match IPv4. */
    assert_int_equal(by_addr(o, "::ffff:192.0.2.200"), OUTBOUND_VERIFY);
    assert_int_equal(by_addr(o, "::ffff:192.0.2.1"), OUTBOUND_REQUIRED);
    assert_int_equal(by_addr(o, "198.51.100.7"), OUTBOUND_VERIFY);
    assert_int_equal(by_addr(o, "::ffff:198.51.100.7"), OUTBOUND_VERIFY);
    /* No family crossing otherwise. */
    assert_int_equal(by_addr(o, "::192.0.2.1"), OUTBOUND_OPPORTUNISTIC);
    /* An IP literal given as the host is matched as an address. */
    assert_int_equal(by_name(o, "192.0.2.200"), OUTBOUND_VERIFY);
    assert_int_equal(by_name(o, "2001:db8:1::1"), OUTBOUND_VERIFY);
    assert_int_equal(by_name(o, "::ffff:192.0.2.130"), OUTBOUND_NONE);
    config_free(c);
}

/* Exact name > longest address rule > longest suffix > default. */
static void test_policy_precedence(void **state)
{
    struct config *c = policy_config();
    const struct config_outbound *o = &c->outbound[0];
    struct sockaddr_storage net24 = sa("192.0.2.1"), none = sa("203.0.113.1");

    /* Exact name beats an address rule. */
    assert_int_equal(policy_for(&o->opts.policy, "mx.example.net", (struct sockaddr *)&net24),
                     OUTBOUND_VERIFY);
    /* An address rule beats a suffix rule. */
    assert_int_equal(policy_for(&o->opts.policy, "other.example.net", (struct sockaddr *)&net24),
                     OUTBOUND_REQUIRED);
    assert_int_equal(policy_for(&o->opts.policy, "in.mail.example.net", (struct sockaddr *)&net24),
                     OUTBOUND_REQUIRED);
    /* The suffix applies when no address rule matches. */
    assert_int_equal(policy_for(&o->opts.policy, "in.mail.example.net", (struct sockaddr *)&none),
                     OUTBOUND_NONE);
    assert_int_equal(policy_for(&o->opts.policy, "x.test", (struct sockaddr *)&none),
                     OUTBOUND_OPPORTUNISTIC);
    config_free(c);
}

static void test_policy_default_only(void **state)
{
    struct config *c = load_ok("outbound = ( { name = \"o\"; listen = \"127.0.0.1:10025\"; policy = \"none\";\n"
                               "  policies = ( { match = \"0.0.0.0/0\"; policy = \"required\"; },\n"
                               "               { match = \"::/0\"; policy = \"verify\"; } ); } );\n");
    const struct config_outbound *o = &c->outbound[0];

    assert_int_equal(by_name(o, "any.example"), OUTBOUND_NONE);
    assert_int_equal(by_addr(o, "203.0.113.9"), OUTBOUND_REQUIRED);
    assert_int_equal(by_addr(o, "2001:db8::9"), OUTBOUND_VERIFY);
    config_free(c);
}

static void test_policy_str(void **state)
{
    assert_string_equal(policy_str(OUTBOUND_NONE), "none");
    assert_string_equal(policy_str(OUTBOUND_OPPORTUNISTIC), "opportunistic");
    assert_string_equal(policy_str(OUTBOUND_REQUIRED), "required");
    assert_string_equal(policy_str(OUTBOUND_VERIFY), "verify");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_config),
        cmocka_unit_test(test_minimal_config),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_builtin_default),
        cmocka_unit_test(test_all_values),
        cmocka_unit_test(test_tls_merge),
        cmocka_unit_test(test_include),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_bad_enums),
        cmocka_unit_test(test_ehlo_keywords),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_no_listeners),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_bad_policies),
        cmocka_unit_test(test_bad_tls_files),
        cmocka_unit_test(test_relative_unreadable),
        cmocka_unit_test(test_relative_unreadable_shown_safely),
        cmocka_unit_test(test_ca_file),
        cmocka_unit_test(test_resolver),
        cmocka_unit_test(test_many_errors_sorted),
        cmocka_unit_test(test_error_buffer),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_policy_names),
        cmocka_unit_test(test_policy_addresses),
        cmocka_unit_test(test_policy_precedence),
        cmocka_unit_test(test_policy_default_only),
        cmocka_unit_test(test_policy_str),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
