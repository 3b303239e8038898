/*
 * The TLS-RPT schedule; see tlsrpt_reporter.h.
 */
#include "proxy/service/tlsrpt_reporter.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <uv.h>

#include "proxy/net/resolver.h"
#include "proxy/obs/log.h"
#include "proxy/policy/tlsrpt.h"
#include "proxy/service/tlsrpt_redis.h"
#include "proxy/service/tlsrpt_send.h"
#include "proxy/service/tlsrpt_store.h"
#include "proxy/tls/tls.h"

#define RETRY_FIRST_S (30 * 60)
#define RETRY_MAX_S (6 * 3600)

struct day_state {
    int64_t day;
    bool done;
    unsigned attempts;
    int64_t next_try;
};

struct tlsrpt_reporter {
    pthread_t th;
    uv_loop_t loop;
    uv_async_t stop;
    uv_timer_t timer;
    struct resolver *resolver;
    struct tls_ctx *tls;
    struct tlsrpt_send *job;
    int64_t job_day;
    bool stopping;
    unsigned delay_s;
    int64_t pruned; /* the day of the last prune */
    /* The settings, owned copies. */
    char *directory, *organization, *contact, *ca_file, *trust_anchor;
    struct sockaddr_storage submit;
    struct sockaddr_storage redis_addr; /* ss_family 0: none */
    struct tlsrpt_redis *redis;
    struct resolver_options ro;
    unsigned interval_s, max_delay_s;
    struct day_state days[TLSRPT_REPORTER_DAYS];
};

static struct day_state *state_of(struct tlsrpt_reporter *r, int64_t day)
{
    struct day_state *oldest = &r->days[0];

    for (size_t i = 0; i < TLSRPT_REPORTER_DAYS; i++) {
        if (r->days[i].day == day)
            return &r->days[i];
        if (r->days[i].day < oldest->day)
            oldest = &r->days[i];
    }
    memset(oldest, 0, sizeof(*oldest));
    oldest->day = day;
    return oldest;
}

static void tick(struct tlsrpt_reporter *r);

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static void close_all(struct tlsrpt_reporter *r)
{
    uv_close((uv_handle_t *)&r->timer, on_closed);
    uv_close((uv_handle_t *)&r->stop, on_closed);
    resolver_close(r->resolver);
    r->resolver = NULL;
}

static void on_sent(void *arg, const struct tlsrpt_send_result *res)
{
    struct tlsrpt_reporter *r = arg;
    struct day_state *d = state_of(r, r->job_day);
    int64_t now = (int64_t)time(NULL);

    r->job = NULL;
    if (res->failed == 0 && res->locked == 0) {
        d->done = true;
    } else {
        unsigned pause = RETRY_FIRST_S << (d->attempts < 4 ? d->attempts : 4);
        d->attempts++;
        d->next_try = now + (pause < RETRY_MAX_S ? pause : RETRY_MAX_S);
    }
    if (r->stopping)
        close_all(r);
}

static void tick(struct tlsrpt_reporter *r)
{
    int64_t now = (int64_t)time(NULL), today = tlsrpt_day(now);

    if (r->job != NULL || r->stopping)
        return;
    /* Days past retrying are kept a while for whoever wants to look. */
    if (r->pruned != today) {
        r->pruned = today;
        int n = tlsrpt_store_prune(r->directory, today - TLSRPT_REPORTER_KEEP_DAYS);
        if (n > 0)
            log_info("tls_rpt=reporter pruned_days=%d", n);
    }
    for (int64_t day = today - 1; day >= today - TLSRPT_REPORTER_DAYS; day--) {
        struct day_state *d = state_of(r, day);
        if (d->done || now < (day + 1) * 86400 + (int64_t)r->delay_s || d->next_try > now)
            continue;
        struct tlsrpt_send_options o = {.directory = r->directory,
                                        .organization = r->organization,
                                        .contact = r->contact,
                                        .submit = (const struct sockaddr *)&r->submit,
                                        .resolver = r->resolver,
                                        .tls = r->tls,
                                        .redis = r->redis};
        int err;
        r->job_day = day;
        r->job = tlsrpt_send_day(&r->loop, &o, day, on_sent, r, &err);
        if (r->job == NULL) {
            log_error("tls_rpt=reporter error=\"cannot start the reports: %s\"", uv_strerror(err));
            d->next_try = now + RETRY_FIRST_S;
            continue;
        }
        return;
    }
}

static void on_timer(uv_timer_t *t)
{
    tick(t->data);
}

static void on_stop(uv_async_t *a)
{
    struct tlsrpt_reporter *r = a->data;

    r->stopping = true;
    if (r->job != NULL)
        tlsrpt_send_stop(r->job); /* on_sent closes the rest */
    else
        close_all(r);
}

static void *run(void *arg)
{
    struct tlsrpt_reporter *r = arg;

    uv_run(&r->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void free_reporter(struct tlsrpt_reporter *r)
{
    tls_ctx_unref(r->tls);
    tlsrpt_redis_free(r->redis);
    free(r->directory);
    free(r->organization);
    free(r->contact);
    free(r->ca_file);
    free(r->trust_anchor);
    free(r);
}

static bool str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static socklen_t addr_len(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static bool same_redis(const struct tlsrpt_reporter *r, const struct sockaddr *o)
{
    if (o == NULL || r->redis_addr.ss_family == 0)
        return o == NULL && r->redis_addr.ss_family == 0;
    return memcmp(&r->redis_addr, o, addr_len(o)) == 0;
}

/* The Redis connection of r->redis_addr (hiredis takes text). */
static struct tlsrpt_redis *redis_of(const struct sockaddr *sa)
{
    char ip[INET6_ADDRSTRLEN];
    int port;

    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        port = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        port = ntohs(s4->sin_port);
    }
    return tlsrpt_redis_new(ip, port, NULL);
}

bool tlsrpt_reporter_same(const struct tlsrpt_reporter *r, const struct tlsrpt_reporter_options *o)
{
    const struct resolver_options *a = &r->ro, *b = o->resolver;

    if (!str_eq(r->directory, o->directory) || !str_eq(r->organization, o->organization) ||
        !str_eq(r->contact, o->contact) || !str_eq(r->ca_file, o->ca_file) ||
        memcmp(&r->submit, &o->submit, sizeof(r->submit)) != 0 || !same_redis(r, o->redis) ||
        a->nservers != b->nservers || a->dnssec != b->dnssec ||
        !str_eq(a->trust_anchor, b->trust_anchor))
        return false;
    for (size_t i = 0; i < a->nservers; i++)
        if (a->servers[i].port != b->servers[i].port ||
            a->servers[i].salen != b->servers[i].salen ||
            memcmp(&a->servers[i].sa, &b->servers[i].sa, a->servers[i].salen) != 0)
            return false;
    return true;
}

struct tlsrpt_reporter *tlsrpt_reporter_start(const struct tlsrpt_reporter_options *o, char *err,
                                              size_t errlen)
{
    struct tlsrpt_reporter *r = calloc(1, sizeof(*r));
    uint32_t rnd = 0;

    if (r == NULL)
        goto fail_nomem;
    r->directory = strdup(o->directory);
    r->organization = o->organization ? strdup(o->organization) : NULL;
    r->contact = strdup(o->contact);
    r->ca_file = o->ca_file ? strdup(o->ca_file) : NULL;
    r->ro = *o->resolver;
    r->trust_anchor = o->resolver->trust_anchor ? strdup(o->resolver->trust_anchor) : NULL;
    r->ro.trust_anchor = r->trust_anchor;
    r->submit = o->submit;
    r->interval_s = o->interval_s ? o->interval_s : 300;
    r->max_delay_s = o->max_delay_s ? o->max_delay_s : 3600;
    if (o->redis != NULL) {
        memcpy(&r->redis_addr, o->redis, addr_len(o->redis));
        if ((r->redis = redis_of(o->redis)) == NULL)
            goto fail_free;
    }
    if (r->directory == NULL || r->contact == NULL)
        goto fail_free;
    if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        rnd = (uint32_t)time(NULL);
    r->delay_s = rnd % r->max_delay_s;
    if (r->ca_file != NULL) {
        struct tls_options t = {.min_version = 12, .ca_file = r->ca_file};
        /* Without it only the https: destinations fail; mail still goes. */
        if ((r->tls = tls_ctx_client_new(&t, err, errlen)) == NULL)
            log_warn("tls_rpt=reporter ca_file=%s error=\"%s\" msg=\"https: report "
                     "destinations will fail\"",
                     r->ca_file, err);
    }
    if (uv_loop_init(&r->loop) != 0)
        goto fail_free;
    if ((r->resolver = resolver_new(&r->loop, &r->ro, err, errlen)) == NULL)
        goto fail_loop;
    uv_async_init(&r->loop, &r->stop, on_stop);
    r->stop.data = r;
    uv_timer_init(&r->loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, on_timer, o->first_ms ? o->first_ms : 10 * 1000,
                   (uint64_t)r->interval_s * 1000);
    if (pthread_create(&r->th, NULL, run, r) != 0) {
        snprintf(err, errlen, "cannot start the reporter thread");
        close_all(r);
        uv_run(&r->loop, UV_RUN_DEFAULT);
        goto fail_loop;
    }
    log_info("tls_rpt=reporter dir=%s delay_s=%u msg=\"reports of each UTC day are sent after "
             "its end plus this delay\"",
             r->directory, r->delay_s);
    return r;

fail_loop:
    uv_loop_close(&r->loop);
    goto fail_err;
fail_free:
    snprintf(err, errlen, "out of memory");
fail_err:
    free_reporter(r);
    return NULL;
fail_nomem:
    snprintf(err, errlen, "out of memory");
    return NULL;
}

void tlsrpt_reporter_stop(struct tlsrpt_reporter *r)
{
    if (r == NULL)
        return;
    uv_async_send(&r->stop);
    pthread_join(r->th, NULL);
    uv_loop_close(&r->loop);
    free_reporter(r);
}
