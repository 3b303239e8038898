#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy/obs/log.h"
#include "proxy/obs/metrics.h"

/* The registry is process-wide and never shrinks, so every test uses
 * listener names of its own. */

/* The value of the sample whose line starts with prefix, or -1. */
static long long sample(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
            return strtoll(p + n + 1, NULL, 10);
    }
    return -1;
}

static char *render(void)
{
    size_t len = 0;
    char *text = metrics_render(&len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

static void test_same_listener(void **state)
{
    (void)state;
    int before = metrics_listener_count();
    struct metrics_listener *a = metrics_listener("same", "in");
    struct metrics_listener *b = metrics_listener("same", "in");
    assert_non_null(a);
    assert_ptr_equal(a, b);
    assert_int_equal(metrics_listener_count(), before + 1);

    /* NULL (metrics_listener out of memory) is accepted everywhere. */
    metrics_connection_open(NULL);
    metrics_connection_close(NULL);
    metrics_starttls(NULL, "ok");
    metrics_handshake(NULL, "TLSv1.3", "x");
    metrics_tls_failure(NULL, "x");
    metrics_policy_refusal(NULL, "verify");
    metrics_outbound_auth(NULL, "dane", "ok");
    metrics_bytes(NULL, 1, 2);
}

static void test_render_lines(void **state)
{
    (void)state;
    struct metrics_listener *m = metrics_listener("mx", "in");
    struct metrics_listener *o = metrics_listener("relay", "out");

    for (int i = 0; i < 3; i++)
        metrics_connection_open(m);
    metrics_connection_close(m);
    metrics_connection_open(o);
    metrics_starttls(m, "ok");
    metrics_starttls(m, "ok");
    metrics_starttls(m, "failed");
    metrics_handshake(m, "TLSv1.3", "TLS_AES_128_GCM_SHA256");
    metrics_tls_failure(m, "no_shared_cipher");
    metrics_policy_refusal(o, "verify");
    metrics_outbound_auth(o, "dane", "ok");
    metrics_outbound_auth(o, "dane", "ok");
    metrics_outbound_auth(o, "dane", "logged");
    metrics_outbound_auth(o, "policy", "fail");
    metrics_bytes(m, 10342, 1211);
    metrics_bytes(m, 8, 0);

    char *t = render();
    static const char *const expected[] = {
        "# HELP smtp_tls_proxy_connections_total ",
        "# TYPE smtp_tls_proxy_connections_total counter\n",
        "smtp_tls_proxy_connections_total{listener=\"mx\",direction=\"in\"} 3\n",
        "smtp_tls_proxy_connections_total{listener=\"relay\",direction=\"out\"} 1\n",
        "# TYPE smtp_tls_proxy_connections_active gauge\n",
        "smtp_tls_proxy_connections_active{listener=\"mx\",direction=\"in\"} 2\n",
        "smtp_tls_proxy_connections_active{listener=\"relay\",direction=\"out\"} 1\n",
        "# TYPE smtp_tls_proxy_starttls_total counter\n",
        "smtp_tls_proxy_starttls_total{listener=\"mx\",result=\"ok\"} 2\n",
        "smtp_tls_proxy_starttls_total{listener=\"mx\",result=\"failed\"} 1\n",
        "# TYPE smtp_tls_proxy_tls_handshakes_total counter\n",
        ("smtp_tls_proxy_tls_handshakes_total{listener=\"mx\",version=\"TLSv1.3\","
         "cipher=\"TLS_AES_128_GCM_SHA256\"} 1\n"),
        "# TYPE smtp_tls_proxy_tls_failures_total counter\n",
        "smtp_tls_proxy_tls_failures_total{listener=\"mx\",reason=\"no_shared_cipher\"} 1\n",
        "# TYPE smtp_tls_proxy_policy_refusals_total counter\n",
        "smtp_tls_proxy_policy_refusals_total{listener=\"relay\",policy=\"verify\"} 1\n",
        "# TYPE smtp_tls_proxy_outbound_auth_total counter\n",
        "smtp_tls_proxy_outbound_auth_total{listener=\"relay\",auth=\"dane\",result=\"ok\"} 2\n",
        ("smtp_tls_proxy_outbound_auth_total{listener=\"relay\",auth=\"dane\","
         "result=\"logged\"} 1\n"),
        ("smtp_tls_proxy_outbound_auth_total{listener=\"relay\",auth=\"policy\","
         "result=\"fail\"} 1\n"),
        "# TYPE smtp_tls_proxy_bytes_total counter\n",
        "smtp_tls_proxy_bytes_total{listener=\"mx\",direction=\"in\"} 10350\n",
        "smtp_tls_proxy_bytes_total{listener=\"mx\",direction=\"out\"} 1211\n",
        "smtp_tls_proxy_bytes_total{listener=\"relay\",direction=\"in\"} 0\n",
    };
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        if (strstr(t, expected[i]) == NULL)
            fail_msg("missing: %s\nin:\n%s", expected[i], t);
    }
    /* The two meanings of direction are spelled out. */
    assert_non_null(strstr(t, "# HELP smtp_tls_proxy_bytes_total "));
    assert_non_null(strstr(t, "in = received from clients, out = sent to clients"));
    assert_non_null(strstr(t, "direction is the listener's"));
    /* Families in order, each header once, every line terminated. */
    const char *a = strstr(t, "# TYPE smtp_tls_proxy_connections_total");
    const char *b = strstr(t, "# TYPE smtp_tls_proxy_bytes_total");
    assert_true(a < b);
    assert_int_equal(t[strlen(t) - 1], '\n');
    free(t);
}

static void test_label_escaping(void **state)
{
    (void)state;
    struct metrics_listener *m = metrics_listener("we\"ird\\name\n", "in");

    metrics_tls_failure(m, "a\"b\\c\nd");
    metrics_tls_failure(m, "bad\xff\xc3utf8 caf\xc3\xa9");
    metrics_tls_failure(m, NULL);
    char *t = render();
    assert_non_null(strstr(t, "smtp_tls_proxy_tls_failures_total{listener=\"we\\\"ird\\\\name\\n\","
                              "reason=\"a\\\"b\\\\c\\nd\"} 1\n"));
    assert_non_null(strstr(t, "reason=\"bad\xef\xbf\xbd\xef\xbf\xbdutf8 caf\xc3\xa9\"} 1\n"));
    assert_non_null(strstr(t, "smtp_tls_proxy_tls_failures_total{listener=\"we\\\"ird\\\\name\\n\","
                              "reason=\"unknown\"} 1\n"));
    free(t);
}

static void test_label_cap(void **state)
{
    (void)state;
    struct metrics_listener *m = metrics_listener("capped", "in");
    char reason[32];
    char prefix[128];

    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 70; i++) {
            snprintf(reason, sizeof(reason), "reason%d", i);
            metrics_tls_failure(m, reason);
        }
    }
    /* A real "other" joins the overflow series rather than duplicating it. */
    metrics_tls_failure(m, "other");

    char *t = render();
    for (int i = 0; i < 64; i++) {
        snprintf(prefix, sizeof(prefix),
                 "smtp_tls_proxy_tls_failures_total{listener=\"capped\",reason=\"reason%d\"}", i);
        assert_int_equal(sample(t, prefix), 2);
    }
    assert_int_equal(sample(t, "smtp_tls_proxy_tls_failures_total{listener=\"capped\","
                               "reason=\"reason64\"}"),
                     -1);
    assert_int_equal(sample(t, "smtp_tls_proxy_tls_failures_total{listener=\"capped\","
                               "reason=\"other\"}"),
                     2 * 6 + 1);
    /* Only one "other" line. */
    const char *first = strstr(t, "{listener=\"capped\",reason=\"other\"}");
    assert_non_null(first);
    assert_null(strstr(first + 1, "{listener=\"capped\",reason=\"other\"}"));
    free(t);

    /* Two-label family: both labels "other" past the cap. */
    struct metrics_listener *h = metrics_listener("capped2", "out");
    for (int i = 0; i < 65; i++) {
        snprintf(reason, sizeof(reason), "C%d", i);
        metrics_handshake(h, "TLSv1.2", reason);
    }
    t = render();
    assert_int_equal(sample(t, "smtp_tls_proxy_tls_handshakes_total{listener=\"capped2\","
                               "version=\"TLSv1.2\",cipher=\"C63\"}"),
                     1);
    assert_int_equal(sample(t, "smtp_tls_proxy_tls_handshakes_total{listener=\"capped2\","
                               "version=\"other\",cipher=\"other\"}"),
                     1);
    free(t);
}

static void test_long_label(void **state)
{
    (void)state;
    struct metrics_listener *m = metrics_listener("long", "in");
    char a[300], b[300];

    /* Values agreeing on the first 128 bytes are one series. */
    memset(a, 'x', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(b));
    b[200] = 'y';
    metrics_tls_failure(m, a);
    metrics_tls_failure(m, b);
    char *t = render();
    char prefix[400];
    snprintf(prefix, sizeof(prefix),
             "smtp_tls_proxy_tls_failures_total{listener=\"long\",reason=\"%.128s\"}", a);
    assert_int_equal(sample(t, prefix), 2);
    free(t);
}

#define THREADS 4
#define ROUNDS 100000

struct worker_arg {
    struct metrics_listener *m;
    int id;
};

static void *worker(void *p)
{
    const struct worker_arg *a = p;
    static const char *const reasons[] = {"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"};

    for (int i = 0; i < ROUNDS; i++) {
        metrics_connection_open(a->m);
        metrics_bytes(a->m, 1, 2);
        metrics_starttls(a->m, i % 2 ? "ok" : "failed");
        /* New values appear in every thread at once: insertion races. */
        metrics_tls_failure(a->m, reasons[(i + a->id) % 8]);
        metrics_connection_close(a->m);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t t[THREADS];
    struct worker_arg args[THREADS];
    struct metrics_listener *m = metrics_listener("threads", "in");

    for (int i = 0; i < THREADS; i++) {
        args[i].m = m;
        args[i].id = i;
        assert_int_equal(pthread_create(&t[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);

    char *text = render();
    const long long total = (long long)THREADS * ROUNDS;
    assert_int_equal(sample(text, "smtp_tls_proxy_connections_total{listener=\"threads\","
                                  "direction=\"in\"}"),
                     total);
    assert_int_equal(sample(text, "smtp_tls_proxy_connections_active{listener=\"threads\","
                                  "direction=\"in\"}"),
                     0);
    assert_int_equal(sample(text, "smtp_tls_proxy_bytes_total{listener=\"threads\","
                                  "direction=\"in\"}"),
                     total);
    assert_int_equal(sample(text, "smtp_tls_proxy_bytes_total{listener=\"threads\","
                                  "direction=\"out\"}"),
                     2 * total);
    assert_int_equal(sample(text, "smtp_tls_proxy_starttls_total{listener=\"threads\","
                                  "result=\"ok\"}"),
                     total / 2);
    assert_int_equal(sample(text, "smtp_tls_proxy_starttls_total{listener=\"threads\","
                                  "result=\"failed\"}"),
                     total / 2);
    long long sum = 0;
    for (int r = 0; r < 8; r++) {
        char prefix[128];
        snprintf(prefix, sizeof(prefix),
                 "smtp_tls_proxy_tls_failures_total{listener=\"threads\",reason=\"r%d\"}", r);
        long long v = sample(text, prefix);
        assert_int_equal(v, total / 8); /* each value exactly once: no duplicates */
        sum += v;
    }
    assert_int_equal(sum, total);
    free(text);
}

int main(void)
{
    const struct CMUnitTest counters[] = {
        cmocka_unit_test(test_same_listener),
        cmocka_unit_test(test_render_lines),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_label_cap),
        cmocka_unit_test(test_long_label),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests_name("counters", counters, NULL, NULL) != 0;
}
