#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy/obs/log.h"

/* log_set_fd is the test hook; it is declared in log.h. */

struct capture {
    int rfd;
    int wfd;
    char buf[65536];
    size_t len;
};

static int setup(void **state)
{
    struct capture *c = calloc(1, sizeof(*c));
    int fds[2];

    assert_non_null(c);
    assert_int_equal(pipe(fds), 0);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    c->rfd = fds[0];
    c->wfd = fds[1];
    log_set_fd(c->wfd);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct capture *c = *state;

    log_set_fd(2);
    log_init(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    close(c->rfd);
    close(c->wfd);
    free(c);
    return 0;
}

/* Everything logged since the last call, NUL-terminated. */
static const char *drain(struct capture *c)
{
    c->len = 0;
    for (;;) {
        ssize_t n = read(c->rfd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
        if (n <= 0)
            break;
        c->len += (size_t)n;
    }
    c->buf[c->len] = '\0';
    return c->buf;
}

static void assert_ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    assert_true(len >= n);
    assert_string_equal(s + len - n, suffix);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* "2026-11-28T15:20:01.123Z": digits where digits belong. */
static void assert_timestamp(const char *ts)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        if (shape[i] == 'd')
            assert_true(ts[i] >= '0' && ts[i] <= '9');
        else
            assert_int_equal(ts[i], shape[i]);
    }
}

static void test_level_filter(void **state)
{
    struct capture *c = *state;

    log_init(LOG_LEVEL_WARN, LOG_FORMAT_TEXT);
    assert_true(log_enabled(LOG_LEVEL_ERROR));
    assert_true(log_enabled(LOG_LEVEL_WARN));
    assert_false(log_enabled(LOG_LEVEL_INFO));
    assert_false(log_enabled(LOG_LEVEL_DEBUG));

    log_debug("x=debug");
    log_info("x=info");
    log_warn("x=warn");
    log_error("x=error");
    const char *out = drain(c);
    assert_int_equal(count_lines(out), 2);
    assert_null(strstr(out, "x=info"));
    assert_null(strstr(out, "x=debug"));
    assert_non_null(strstr(out, " warn x=warn\n"));
    assert_non_null(strstr(out, " error x=error\n"));

    log_set_level(LOG_LEVEL_DEBUG);
    log_debug("x=%d", 42);
    out = drain(c);
    assert_non_null(strstr(out, " debug x=42\n"));

    log_set_level(LOG_LEVEL_ERROR);
    log_warn("x=warn");
    assert_string_equal(drain(c), "");
}

static void test_text_shape(void **state)
{
    struct capture *c = *state;

    log_init(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    log_info("session=3f2a listener=mx end=%s", "quit");
    const char *out = drain(c);
    assert_int_equal(count_lines(out), 1);
    assert_timestamp(out);
    assert_string_equal(out + 24, " info session=3f2a listener=mx end=quit\n");
}

static void test_text_control_chars(void **state)
{
    struct capture *c = *state;

    log_init(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    /* A CR LF from a peer must not forge a second line. */
    log_info("helo=%s", "evil\r\n2026-01-01T00:00:00.000Z error forged");
    const char *out = drain(c);
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, " info helo=evil\\x0d\\x0a2026-01-01T00:00:00.000Z error forged\n"));
}

static void test_json_pairs(void **state)
{
    struct capture *c = *state;
    char q[64];

    log_init(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
    log_info("session=3f2a k2=%s k3=v3 bytes_in=10342 hello world", log_quote("a b", q, sizeof(q)));
    const char *out = drain(c);
    assert_int_equal(count_lines(out), 1);
    assert_memory_equal(out, "{\"ts\":\"", 7);
    assert_timestamp(out + 7);
    assert_string_equal(out + 7 + 24,
                        "\",\"level\":\"info\",\"msg\":\"hello world\",\"session\":\"3f2a\","
                        "\"k2\":\"a b\",\"k3\":\"v3\",\"bytes_in\":\"10342\"}\n");
}

static void test_json_no_msg(void **state)
{
    struct capture *c = *state;

    log_init(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
    log_warn("a=1   b= c=3");
    const char *out = drain(c);
    assert_non_null(strstr(out, "\"level\":\"warn\",\"a\":\"1\",\"b\":\"\",\"c\":\"3\"}\n"));
    assert_null(strstr(out, "\"msg\""));

    log_warn("only words here");
    out = drain(c);
    assert_non_null(strstr(out, "\"level\":\"warn\",\"msg\":\"only words here\"}\n"));
}

static void test_json_reserved_keys(void **state)
{
    struct capture *c = *state;

    log_init(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
    log_info("start msg=hi ts=now level=x k=v");
    const char *out = drain(c);
    assert_non_null(strstr(out, "\"level\":\"info\",\"msg\":\"start hi ts=now level=x\",\"k\":\"v\"}\n"));
}

static void test_json_escaping(void **state)
{
    struct capture *c = *state;
    char q[128];

    log_init(LOG_LEVEL_INFO, LOG_FORMAT_JSON);

    /* log_quote's \" \\ \xNN come out as JSON's \" \\ \u00XX. */
    log_info("v=%s", log_quote("say \"hi\" \\ \x01\t", q, sizeof(q)));
    const char *out = drain(c);
    assert_non_null(strstr(out, "\"v\":\"say \\\"hi\\\" \\\\ \\u0001\\u0009\"}\n"));

    /* Unquoted value with a quote or backslash in it (not via log_quote). */
    log_info("w=a\"b\\c");
    out = drain(c);
    assert_non_null(strstr(out, "\"w\":\"a\\\"b\\\\c\"}\n"));

    /* Valid UTF-8 passes; each byte of invalid UTF-8 becomes U+FFFD:
     * stray bytes, an overlong '/', a surrogate, a cut sequence. */
    log_info("ok=caf\xc3\xa9 bad=\xff\xfe!\xc0\xaf!\xed\xa0\x80!\xe2\x82");
    out = drain(c);
    assert_non_null(strstr(out, "\"ok\":\"caf\xc3\xa9\""));
    assert_non_null(strstr(out, "\"bad\":\"\\ufffd\\ufffd!\\ufffd\\ufffd!\\ufffd\\ufffd\\ufffd!"
                                "\\ufffd\\ufffd\"}\n"));

    /* A free word that is a quoted string is decoded like a value. */
    log_info("%s k=v", log_quote("two words", q, sizeof(q)));
    out = drain(c);
    assert_non_null(strstr(out, "\"msg\":\"two words\",\"k\":\"v\"}\n"));
}

static void test_quote(void **state)
{
    char out[64];

    assert_string_equal(log_quote("plain", out, sizeof(out)), "plain");
    assert_string_equal(log_quote("", out, sizeof(out)), "");
    assert_string_equal(log_quote("caf\xc3\xa9", out, sizeof(out)), "caf\xc3\xa9");
    assert_string_equal(log_quote("a b", out, sizeof(out)), "\"a b\"");
    assert_string_equal(log_quote("a\"b", out, sizeof(out)), "\"a\\\"b\"");
    assert_string_equal(log_quote("a\\b", out, sizeof(out)), "\"a\\\\b\"");
    assert_string_equal(log_quote("x\r\n", out, sizeof(out)), "\"x\\x0d\\x0a\"");
    assert_string_equal(log_quote("\x7f", out, sizeof(out)), "\"\\x7f\"");
    assert_ptr_equal(log_quote("abc", out, sizeof(out)), out);

    /* Too small: escapes are never cut, the closing quote stays. */
    assert_string_equal(log_quote("a b c", out, 6), "\"a b\"");
    assert_string_equal(log_quote("ab\x01", out, 7), "\"ab\"");
    assert_string_equal(log_quote("plain", out, 4), "pla");
    assert_string_equal(log_quote("a b", out, 2), "");
}

static void test_text_truncation(void **state)
{
    struct capture *c = *state;
    char *big = malloc(20001);

    log_init(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    memset(big, 'a', 20000);
    big[20000] = '\0';
    log_info("k=%s", big);
    const char *out = drain(c);
    assert_int_equal(count_lines(out), 1);
    assert_true(c->len <= 8192);
    assert_true(c->len > 8000);
    assert_ends_with(out, c->len, "a...\n");

    /* Never cut inside a UTF-8 character. */
    for (size_t i = 0; i + 1 < 20000; i += 2) {
        big[i] = '\xc3';
        big[i + 1] = '\xa9';
    }
    log_info("k=x%s", big); /* odd offset of the pairs vs. the limit */
    out = drain(c);
    assert_true(c->len <= 8192);
    assert_ends_with(out, c->len, "\xc3\xa9...\n");
    log_info("k=%s", big);
    out = drain(c);
    assert_ends_with(out, c->len, "\xc3\xa9...\n");
    free(big);
}

static void test_json_truncation(void **state)
{
    struct capture *c = *state;
    char *big = malloc(20001);

    log_init(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
    memset(big, 'a', 20000);
    big[20000] = '\0';
    log_info("first=1 k=%s after=2", big);
    const char *out = drain(c);
    assert_int_equal(count_lines(out), 1);
    assert_true(c->len <= 8192);
    assert_true(c->len > 8000);
    assert_non_null(strstr(out, "\"first\":\"1\",\"k\":\"aaa"));
    assert_null(strstr(out, "after"));
    assert_ends_with(out, c->len, "aaaa...\",\"truncated\":true}\n");

    /* Controls expand sixfold; the cut never splits an escape. */
    memset(big, '\x01', 20000);
    log_info("k=%s", big);
    out = drain(c);
    assert_true(c->len <= 8192);
    assert_ends_with(out, c->len, "\\u0001...\",\"truncated\":true}\n");

    /* Many small pairs: cut between or inside them, still closed. */
    size_t n = 0;
    for (int i = 0; n + 16 < 20000; i++)
        n += (size_t)snprintf(big + n, 20001 - n, "k%d=v%d ", i, i);
    log_info("%s", big);
    out = drain(c);
    assert_true(c->len <= 8192);
    assert_ends_with(out, c->len, ",\"truncated\":true}\n");
    free(big);
}

struct thread_arg {
    int id;
};

static void *writer(void *p)
{
    const struct thread_arg *a = p;
    for (int i = 0; i < 1000; i++)
        log_info("thread=%d i=%d pad=%s", a->id, i, "0123456789abcdef0123456789abcdef");
    return NULL;
}

static void test_threads_no_interleaving(void **state)
{
    char path[] = "/tmp/log_test.XXXXXX";
    int fd = mkstemp(path);
    pthread_t t[4];
    struct thread_arg args[4];

    (void)state;
    assert_true(fd >= 0);
    unlink(path);
    fcntl(fd, F_SETFL, O_APPEND);
    log_init(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    log_set_fd(fd);
    for (int i = 0; i < 4; i++) {
        args[i].id = i;
        assert_int_equal(pthread_create(&t[i], NULL, writer, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);

    off_t size = lseek(fd, 0, SEEK_END);
    char *all = malloc((size_t)size + 1);
    assert_int_equal(pread(fd, all, (size_t)size, 0), size);
    all[size] = '\0';
    int seen[4] = {0};
    size_t lines = 0;
    for (char *line = all, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        int id, i;
        char pad[64];
        *nl = '\0';
        assert_timestamp(line);
        assert_int_equal(sscanf(line + 24, " info thread=%d i=%d pad=%63s", &id, &i, pad), 3);
        assert_string_equal(pad, "0123456789abcdef0123456789abcdef");
        assert_true(id >= 0 && id < 4);
        assert_int_equal(i, seen[id]); /* each thread's lines in order */
        seen[id]++;
        lines++;
    }
    assert_int_equal(lines, 4000);
    free(all);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_level_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_control_chars, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_pairs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_no_msg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_reserved_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_escaping, setup, teardown),
        cmocka_unit_test(test_quote),
        cmocka_unit_test_setup_teardown(test_text_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_no_interleaving, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
