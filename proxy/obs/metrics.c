#include "proxy/obs/metrics.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/obs/log.h"

#define METRICS_PREFIX "smtp_tls_proxy_"

/*
 * The label values of starttls, handshakes, failures and refusals come from
 * code, but some of them (a failure reason, a cipher name) depend on what a
 * peer did. A cap per family and listener keeps a hostile peer from growing
 * memory and the exposition without bound: values past the cap are counted
 * under "other". Values are also cut at METRICS_LABEL_LEN_MAX bytes.
 */
#define METRICS_LABEL_VALUES_MAX 64
#define METRICS_LABEL_LEN_MAX 128
#define METRICS_OTHER "other"

/* One labelled counter. labels are owned, immutable once published. */
struct metrics_series {
    char *labels[2];
    atomic_uint_least64_t count;
};

/*
 * A counter family of one listener with one or two dynamic labels.
 * Increments scan series[0..n) without a lock: n is published with a
 * release store after the new series is complete, so an acquire load of n
 * makes every series below it safe to read. The mutex only orders writers
 * that add a series.
 */
struct metrics_family {
    pthread_mutex_t lock;
    atomic_size_t n;
    struct metrics_series series[METRICS_LABEL_VALUES_MAX];
    atomic_uint_least64_t other; /* past the cap, or labelled "other" */
};

struct metrics_listener {
    struct metrics_listener *next; /* registry order = exposition order */
    char *name;
    char *direction;               /* the listener's: "in" | "out" */
    atomic_uint_least64_t connections_total;
    atomic_int_least64_t connections_active;
    atomic_uint_least64_t bytes_in;  /* from clients */
    atomic_uint_least64_t bytes_out; /* to clients */
    struct metrics_family starttls;        /* result */
    struct metrics_family handshakes;      /* version, cipher */
    struct metrics_family tls_failures;    /* reason */
    struct metrics_family policy_refusals; /* policy */
    struct metrics_family outbound_auth;   /* auth, result */
};

/* Listeners are added at start-up and on SIGHUP and never freed, so the
 * list is only ever appended to; the lock guards appends and rendering. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metrics_listener *registry_head;
static struct metrics_listener **registry_tail = &registry_head;
static int registry_count;

static void family_init(struct metrics_family *f)
{
    pthread_mutex_init(&f->lock, NULL);
    atomic_init(&f->n, 0);
    atomic_init(&f->other, 0);
    for (size_t i = 0; i < METRICS_LABEL_VALUES_MAX; i++)
        atomic_init(&f->series[i].count, 0);
}

struct metrics_listener *metrics_listener(const char *name, const char *direction)
{
    struct metrics_listener *m;

    pthread_mutex_lock(&registry_lock);
    for (m = registry_head; m != NULL; m = m->next) {
        if (strcmp(m->name, name) != 0)
            continue;
        if (strcmp(m->direction, direction) == 0)
            goto out; /* SIGHUP kept this listener: keep its counters */
        /* Every family but connections_* is keyed by name alone, so two
         * listeners of one name would yield duplicate series. */
        log_warn("metrics listener=%s direction=%s also used with direction=%s: "
                 "its series will be duplicated", name, direction, m->direction);
    }

    m = calloc(1, sizeof(*m));
    if (m == NULL)
        goto fail_alloc;
    m->name = strdup(name);
    if (m->name == NULL)
        goto fail_name;
    m->direction = strdup(direction);
    if (m->direction == NULL)
        goto fail_direction;
    atomic_init(&m->connections_total, 0);
    atomic_init(&m->connections_active, 0);
    atomic_init(&m->bytes_in, 0);
    atomic_init(&m->bytes_out, 0);
    family_init(&m->starttls);
    family_init(&m->handshakes);
    family_init(&m->tls_failures);
    family_init(&m->policy_refusals);
    family_init(&m->outbound_auth);
    *registry_tail = m;
    registry_tail = &m->next;
    registry_count++;
out:
    pthread_mutex_unlock(&registry_lock);
    return m;

fail_direction:
    free(m->name);
fail_name:
    free(m);
fail_alloc:
    pthread_mutex_unlock(&registry_lock);
    log_error("metrics listener=%s error=\"out of memory\"", name);
    return NULL;
}

int metrics_listener_count(void)
{
    pthread_mutex_lock(&registry_lock);
    int n = registry_count;
    pthread_mutex_unlock(&registry_lock);
    return n;
}

void metrics_connection_open(struct metrics_listener *m)
{
    if (m == NULL)
        return;
    /* Relaxed: each counter is independent and only its sum matters. */
    atomic_fetch_add_explicit(&m->connections_total, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->connections_active, 1, memory_order_relaxed);
}

void metrics_connection_close(struct metrics_listener *m)
{
    if (m == NULL)
        return;
    atomic_fetch_sub_explicit(&m->connections_active, 1, memory_order_relaxed);
}

void metrics_bytes(struct metrics_listener *m, uint64_t in, uint64_t out)
{
    if (m == NULL)
        return;
    if (in > 0)
        atomic_fetch_add_explicit(&m->bytes_in, in, memory_order_relaxed);
    if (out > 0)
        atomic_fetch_add_explicit(&m->bytes_out, out, memory_order_relaxed);
}

/* Stored values are cut at METRICS_LABEL_LEN_MAX, so a value matches when
 * it agrees with the stored one up to that length. */
static bool label_eq(const char *stored, const char *v)
{
    return strncmp(stored, v, METRICS_LABEL_LEN_MAX) == 0;
}

static bool series_match(const struct metrics_series *s, int nlabels, const char *a,
                         const char *b)
{
    return label_eq(s->labels[0], a) && (nlabels < 2 || label_eq(s->labels[1], b));
}

static void family_inc(struct metrics_family *f, int nlabels, const char *a, const char *b)
{
    a = a != NULL ? a : "unknown";
    b = b != NULL ? b : "unknown";

    /* A real value spelled "other" would collide with the overflow series. */
    if (label_eq(METRICS_OTHER, a) && (nlabels < 2 || label_eq(METRICS_OTHER, b))) {
        atomic_fetch_add_explicit(&f->other, 1, memory_order_relaxed);
        return;
    }

    size_t n = atomic_load_explicit(&f->n, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        if (series_match(&f->series[i], nlabels, a, b)) {
            atomic_fetch_add_explicit(&f->series[i].count, 1, memory_order_relaxed);
            return;
        }
    }

    pthread_mutex_lock(&f->lock);
    /* Another thread may have added this value between the scan and the
     * lock; only lock holders change n, so a relaxed load is current. */
    size_t m = atomic_load_explicit(&f->n, memory_order_relaxed);
    for (size_t i = n; i < m; i++) {
        if (series_match(&f->series[i], nlabels, a, b)) {
            atomic_fetch_add_explicit(&f->series[i].count, 1, memory_order_relaxed);
            goto out;
        }
    }
    if (m < METRICS_LABEL_VALUES_MAX) {
        struct metrics_series *s = &f->series[m];
        s->labels[0] = strndup(a, METRICS_LABEL_LEN_MAX);
        s->labels[1] = nlabels > 1 ? strndup(b, METRICS_LABEL_LEN_MAX) : NULL;
        if (s->labels[0] != NULL && (nlabels < 2 || s->labels[1] != NULL)) {
            atomic_store_explicit(&s->count, 1, memory_order_relaxed);
            atomic_store_explicit(&f->n, m + 1, memory_order_release);
            goto out;
        }
        free(s->labels[0]);
        free(s->labels[1]);
        s->labels[0] = s->labels[1] = NULL;
    }
    atomic_fetch_add_explicit(&f->other, 1, memory_order_relaxed);
out:
    pthread_mutex_unlock(&f->lock);
}

void metrics_starttls(struct metrics_listener *m, const char *result)
{
    if (m != NULL)
        family_inc(&m->starttls, 1, result, NULL);
}

void metrics_handshake(struct metrics_listener *m, const char *version, const char *cipher)
{
    if (m != NULL)
        family_inc(&m->handshakes, 2, version, cipher);
}

void metrics_tls_failure(struct metrics_listener *m, const char *reason)
{
    if (m != NULL)
        family_inc(&m->tls_failures, 1, reason, NULL);
}

void metrics_policy_refusal(struct metrics_listener *m, const char *policy)
{
    if (m != NULL)
        family_inc(&m->policy_refusals, 1, policy, NULL);
}

void metrics_outbound_auth(struct metrics_listener *m, const char *auth, const char *result)
{
    if (m != NULL)
        family_inc(&m->outbound_auth, 2, auth, result);
}

/* --- exposition ------------------------------------------------------- */

/* A growing text buffer; after an allocation failure every append is a
 * no-op and the render returns NULL. */
struct text {
    char *p;
    size_t len;
    size_t cap;
    bool failed;
};

static bool text_reserve(struct text *t, size_t n)
{
    if (t->failed)
        return false;
    if (t->cap - t->len > n)
        return true;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap - t->len <= n)
        cap *= 2;
    char *p = realloc(t->p, cap);
    if (p == NULL) {
        t->failed = true;
        return false;
    }
    t->p = p;
    t->cap = cap;
    return true;
}

static void text_put(struct text *t, const char *s, size_t n)
{
    if (!text_reserve(t, n))
        return;
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_printf(struct text *t, const char *fmt, ...)
{
    va_list ap;
    char small[256];

    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->failed = true;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        text_put(t, small, (size_t)n);
        return;
    }
    if (!text_reserve(t, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/*
 * A label value in the text format 0.0.4: backslash, double quote and line
 * feed escaped as \\ \" \n. The format requires UTF-8, so a byte that is
 * not part of valid UTF-8 (a cut value, a peer's junk) becomes U+FFFD.
 */
static void put_label_value(struct text *t, const char *v)
{
    const unsigned char *u = (const unsigned char *)v;
    size_t n = strlen(v);

    text_put(t, "\"", 1);
    for (size_t i = 0; i < n;) {
        size_t k;
        if (u[i] == '\\') {
            text_put(t, "\\\\", 2);
            i++;
        } else if (u[i] == '"') {
            text_put(t, "\\\"", 2);
            i++;
        } else if (u[i] == '\n') {
            text_put(t, "\\n", 2);
            i++;
        } else if ((k = log_utf8_char_len(u + i, n - i)) == 0) {
            text_put(t, "\xef\xbf\xbd", 3);
            i++;
        } else {
            text_put(t, v + i, k);
            i += k;
        }
    }
    text_put(t, "\"", 1);
}

static void put_header(struct text *t, const char *name, const char *type, const char *help)
{
    text_printf(t, "# HELP " METRICS_PREFIX "%s %s\n# TYPE " METRICS_PREFIX "%s %s\n", name, help,
                name, type);
}

/* name{listener="...",<label>="..."} */
static void put_sample_start(struct text *t, const char *name, const struct metrics_listener *m)
{
    text_printf(t, METRICS_PREFIX "%s{listener=", name);
    put_label_value(t, m->name);
}

static void put_family(struct text *t, const char *name, const char *label0,
                       const char *label1, const struct metrics_family *f,
                       const struct metrics_listener *m)
{
    size_t n = atomic_load_explicit(&f->n, memory_order_acquire);

    for (size_t i = 0; i < n; i++) {
        const struct metrics_series *s = &f->series[i];
        put_sample_start(t, name, m);
        text_printf(t, ",%s=", label0);
        put_label_value(t, s->labels[0]);
        if (label1 != NULL) {
            text_printf(t, ",%s=", label1);
            put_label_value(t, s->labels[1]);
        }
        text_printf(t, "} %" PRIu64 "\n",
                    (uint64_t)atomic_load_explicit(&s->count, memory_order_relaxed));
    }
    uint64_t other = atomic_load_explicit(&f->other, memory_order_relaxed);
    if (other > 0) {
        put_sample_start(t, name, m);
        text_printf(t, ",%s=\"" METRICS_OTHER "\"", label0);
        if (label1 != NULL)
            text_printf(t, ",%s=\"" METRICS_OTHER "\"", label1);
        text_printf(t, "} %" PRIu64 "\n", other);
    }
}

char *metrics_render(size_t *len)
{
    struct text t = {0};
    const struct metrics_listener *m;

    pthread_mutex_lock(&registry_lock);

    put_header(&t, "connections_total", "counter",
               "Client connections accepted. direction is the listener's: "
               "in = inbound listener (internet to legacy backend), "
               "out = outbound listener (legacy MTA to the internet).");
    for (m = registry_head; m != NULL; m = m->next) {
        put_sample_start(&t, "connections_total", m);
        text_put(&t, ",direction=", 11);
        put_label_value(&t, m->direction);
        text_printf(&t, "} %" PRIu64 "\n",
                    (uint64_t)atomic_load_explicit(&m->connections_total, memory_order_relaxed));
    }

    put_header(&t, "connections_active", "gauge",
               "Client connections open now. direction is the listener's, "
               "as in connections_total.");
    for (m = registry_head; m != NULL; m = m->next) {
        put_sample_start(&t, "connections_active", m);
        text_put(&t, ",direction=", 11);
        put_label_value(&t, m->direction);
        text_printf(&t, "} %" PRId64 "\n",
                    (int64_t)atomic_load_explicit(&m->connections_active, memory_order_relaxed));
    }

    put_header(&t, "starttls_total", "counter", "STARTTLS upgrades attempted, by result.");
    for (m = registry_head; m != NULL; m = m->next)
        put_family(&t, "starttls_total", "result", NULL, &m->starttls, m);

    put_header(&t, "tls_handshakes_total", "counter",
               "TLS handshakes completed, by protocol version and cipher.");
    for (m = registry_head; m != NULL; m = m->next)
        put_family(&t, "tls_handshakes_total", "version", "cipher", &m->handshakes, m);

    put_header(&t, "tls_failures_total", "counter", "TLS handshakes failed, by reason.");
    for (m = registry_head; m != NULL; m = m->next)
        put_family(&t, "tls_failures_total", "reason", NULL, &m->tls_failures, m);

    put_header(&t, "policy_refusals_total", "counter",
               "Outbound messages refused because the TLS policy could not be met, by policy.");
    for (m = registry_head; m != NULL; m = m->next)
        put_family(&t, "policy_refusals_total", "policy", NULL, &m->policy_refusals, m);

    put_header(&t, "outbound_auth_total", "counter",
               "Outbound sessions whose destination had to be authenticated, by method "
               "(dane, policy) and result: ok, fail (refused), logged (enforce = false: "
               "the refusal was only logged).");
    for (m = registry_head; m != NULL; m = m->next)
        put_family(&t, "outbound_auth_total", "auth", "result", &m->outbound_auth, m);

    put_header(&t, "bytes_total", "counter",
               "Bytes relayed on the client side of each session. direction is the data's, "
               "not the listener's: in = received from clients, out = sent to clients.");
    for (m = registry_head; m != NULL; m = m->next) {
        put_sample_start(&t, "bytes_total", m);
        text_printf(&t, ",direction=\"in\"} %" PRIu64 "\n",
                    (uint64_t)atomic_load_explicit(&m->bytes_in, memory_order_relaxed));
        put_sample_start(&t, "bytes_total", m);
        text_printf(&t, ",direction=\"out\"} %" PRIu64 "\n",
                    (uint64_t)atomic_load_explicit(&m->bytes_out, memory_order_relaxed));
    }

    pthread_mutex_unlock(&registry_lock);

    if (t.failed) {
        free(t.p);
        return NULL;
    }
    if (len != NULL)
        *len = t.len;
    return t.p;
}
