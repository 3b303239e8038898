/*
 * A session's MTA-STS lookup on its loop; see mta_sts_get.h.
 *
 * A job is one domain's discovery on one loop: the TXT query, then, when
 * the cache asks for it, the fetch. Requests wait in its list; a refresh
 * (a cached policy that still applies while a new one is fetched) answers
 * them after the TXT query and goes on fetching with nobody waiting.
 */
#include "proxy/service/mta_sts_get.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/obs/log.h"
#include "proxy/service/mta_sts_redis.h"

#define WELL_KNOWN "/.well-known/mta-sts.txt" /* RFC 8461 §3.2 */

struct mta_sts_job {
    struct mta_sts_loop *l;
    struct mta_sts_svc *svc;
    struct mta_sts_job *next;
    char domain[MTA_STS_NAME_MAX + 1];
    char id[MTA_STS_ID_MAX + 1];
    struct resolver_query q;
    struct https_get g;
    struct mta_sts_req *waiters;
    bool waiting;                 /* for another loop's fetch of the domain (l->poll) */
    struct mta_sts_redis_req *rq; /* asking the fleet's Redis first, or NULL */
};

#define TXT_RECORDS_MAX 64
#define POLL_MS 100 /* how often a loop looks whether another's fetch ended */

static void start_fetch(struct mta_sts_job *j, struct mta_sts_answer *a);
static void fetch_or_share(struct mta_sts_job *j, struct mta_sts_answer *a);
static void finish(struct mta_sts_job *j, struct mta_sts_answer *a);

/* The lookups of l that wait for other loops' fetches: answered once those
 * end (a mutex and a table lookup each, every POLL_MS; no thread is woken
 * for it), or fetched here when they are taking too long. */
static void on_poll(uv_timer_t *t)
{
    struct mta_sts_loop *l = t->data;
    struct mta_sts_job *j, *next;
    bool more = false;

    for (j = l->jobs; j != NULL; j = next) {
        struct mta_sts_answer a;

        /* A callback may start lookups (put first in the list) but frees
         * no job other than its own. */
        next = j->next;
        if (!j->waiting)
            continue;
        switch (mta_sts_svc_poll(j->svc, j->domain, mta_sts_svc_now(j->svc), &a)) {
        case MTA_STS_NEXT_WAIT:
            more = true;
            break;
        case MTA_STS_NEXT_FETCH:
            j->waiting = false;
            fetch_or_share(j, &a);
            break;
        default:
            j->waiting = false;
            finish(j, &a);
        }
    }
    if (!more)
        uv_timer_stop(t);
}

static void wait_for_other(struct mta_sts_job *j)
{
    struct mta_sts_loop *l = j->l;

    j->waiting = true;
    if (!l->poll_init) {
        uv_timer_init(l->loop, &l->poll);
        l->poll.data = l;
        l->poll_init = true;
    }
    if (!uv_is_active((uv_handle_t *)&l->poll))
        uv_timer_start(&l->poll, on_poll, POLL_MS, POLL_MS);
}

void mta_sts_loop_init(struct mta_sts_loop *l, uv_loop_t *loop, struct resolver *r)
{
    memset(l, 0, sizeof(*l));
    l->loop = loop;
    l->resolver = r;
    l->port = 443;
}

void mta_sts_loop_set_resolver(struct mta_sts_loop *l, struct resolver *r)
{
    l->resolver = r;
}

void mta_sts_loop_set_target(struct mta_sts_loop *l, uint16_t port, const struct sockaddr *addr)
{
    l->port = port != 0 ? port : 443;
    l->has_addr = addr != NULL;
    if (addr != NULL)
        memcpy(&l->addr, addr,
               addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in));
}

static void unlink_job(struct mta_sts_job *j)
{
    struct mta_sts_job **pp = &j->l->jobs;

    while (*pp != NULL && *pp != j)
        pp = &(*pp)->next;
    if (*pp == j)
        *pp = j->next;
    j->next = NULL;
}

/* Gives every waiter its own reference to a's policy, one at a time (a
 * callback may cancel a later waiter, or start a new lookup), then drops
 * a's own. */
static void answer_all(struct mta_sts_job *j, struct mta_sts_answer *a)
{
    struct mta_sts_req *req;

    while ((req = j->waiters) != NULL) {
        struct mta_sts_answer mine = *a;

        j->waiters = req->next;
        req->next = NULL;
        req->job = NULL;
        if (mine.policy != NULL)
            atomic_fetch_add(&mine.policy->refs, 1);
        req->cb(req, &mine);
    }
    mta_sts_answer_release(a);
}

static void finish(struct mta_sts_job *j, struct mta_sts_answer *a)
{
    struct mta_sts_svc *svc = j->svc;

    unlink_job(j);
    answer_all(j, a);
    free(j);
    mta_sts_svc_unref(svc);
}

/* The loop's connection to svc's Redis, made or replaced as svc says; NULL
 * without one. Lookups that were asking another Redis go on without it. */
static struct mta_sts_redis *redis_of(struct mta_sts_loop *l, struct mta_sts_svc *svc)
{
    const struct sockaddr *addr = mta_sts_svc_redis(svc);

    if (addr == NULL)
        return NULL;
    if (l->redis != NULL && mta_sts_redis_is(l->redis, addr))
        return l->redis;
    if (l->redis != NULL) {
        for (struct mta_sts_job *j = l->jobs, *next; j != NULL; j = next) {
            struct mta_sts_answer a;
            next = j->next;
            if (j->rq != NULL) {
                mta_sts_redis_cancel(j->rq);
                j->rq = NULL;
                start_fetch(j, &a);
            }
        }
        mta_sts_redis_free(l->redis);
    }
    return l->redis = mta_sts_redis_new(l->loop, addr);
}

/* A policy fetched here goes to the fleet, for the rest of its max_age. */
static void share(struct mta_sts_job *j, const struct mta_sts_answer *a, int64_t now)
{
    static _Thread_local char text[MTA_STS_CACHE_TEXT_MAX];
    struct mta_sts_redis *r;
    char key[MTA_STS_NAME_MAX + 16];
    int n;

    if (a->policy == NULL || a->fetch_error != MTA_STS_FETCH_OK || a->policy->expires <= now ||
        (r = redis_of(j->l, j->svc)) == NULL ||
        (n = mta_sts_snapshot_format(a->policy, text, sizeof(text))) <= 0)
        return;
    snprintf(key, sizeof(key), "mta-sts:%s", j->domain);
    mta_sts_redis_set(r, key, text, (size_t)n, (unsigned)(a->policy->expires - now));
}

static void on_shared(void *arg, const char *value, size_t len)
{
    struct mta_sts_job *j = arg;
    struct mta_sts_answer a;

    j->rq = NULL;
    if (value != NULL &&
        mta_sts_svc_adopt(j->svc, j->domain, j->id, value, len, mta_sts_svc_now(j->svc), &a)) {
        log_info("event=mta_sts_shared domain=%s id=%s msg=\"policy from the fleet's Redis\"",
                 j->domain, j->id);
        finish(j, &a);
        return;
    }
    start_fetch(j, &a);
}

/* Another proxy of the fleet may have fetched the policy already: Redis
 * first, when there is one, then HTTPS. */
static void fetch_or_share(struct mta_sts_job *j, struct mta_sts_answer *a)
{
    struct mta_sts_redis *r = redis_of(j->l, j->svc);
    char key[MTA_STS_NAME_MAX + 16];

    if (r != NULL) {
        snprintf(key, sizeof(key), "mta-sts:%s", j->domain);
        if ((j->rq = mta_sts_redis_get(r, key, on_shared, j)) != NULL)
            return;
    }
    start_fetch(j, a);
}

static void on_fetch(struct https_get *g, const struct https_get_result *res)
{
    struct mta_sts_job *j = g->data;
    struct mta_sts_svc *svc = j->svc;
    struct mta_sts_policy *p = NULL;
    const char *why = https_get_status_str(res->status);
    /* RFC 8460 §4.3.2.1: a certificate the policy host presented that did
     * not validate is sts-webpki-invalid, a body that is not a policy
     * sts-policy-invalid, anything else sts-policy-fetch-error. */
    enum mta_sts_fetch_error err =
        res->status == HTTPS_GET_CERTIFICATE ? MTA_STS_FETCH_WEBPKI : MTA_STS_FETCH_ERROR;
    struct mta_sts_answer a;
    char q[200];

    if (res->status == HTTPS_GET_OK) {
        if ((p = malloc(sizeof(*p))) == NULL) {
            why = "out of memory";
        } else if (mta_sts_policy_parse((const char *)res->body, res->body_len, p, &why) !=
                   MTA_STS_OK) {
            free(p);
            p = NULL;
            err = MTA_STS_FETCH_INVALID;
        }
    }
    if (p != NULL)
        log_info("event=mta_sts_fetch domain=%s id=%s result=ok mode=%s max_age=%u "
                 "mx=%zu%s",
                 j->domain, j->id, mta_sts_mode_str(p->mode), (unsigned)p->max_age, p->n_mx,
                 p->max_age_clamped ? " max_age_clamped=true" : "");
    else
        log_warn("event=mta_sts_fetch domain=%s id=%s result=failed reason=\"%s\" "
                 "error=%s",
                 j->domain, j->id, why,
                 log_quote(res->status == HTTPS_GET_OK ? why : res->why, q, sizeof(q)));
    int64_t now = mta_sts_svc_now(svc);
    mta_sts_svc_fetched(svc, j->domain, j->id, p, p != NULL ? MTA_STS_FETCH_OK : err,
                        p != NULL ? "fetched" : why, now, &a);
    free(p);
    share(j, &a, now);
    finish(j, &a);
}

static void start_fetch(struct mta_sts_job *j, struct mta_sts_answer *a)
{
    struct mta_sts_loop *l = j->l;
    char host[HTTPS_GET_HOST_MAX + 16];
    int rc = UV_EINVAL;

    if (mta_sts_svc_tls(j->svc) != NULL &&
        snprintf(host, sizeof(host), "mta-sts.%s", j->domain) <= HTTPS_GET_HOST_MAX) {
        j->g.data = j;
        rc = https_get_start(&j->g, l->loop, l->resolver, mta_sts_svc_tls(j->svc), host, l->port,
                             WELL_KNOWN, l->has_addr ? (const struct sockaddr *)&l->addr : NULL,
                             l->limits, on_fetch);
    }
    if (rc == 0) {
        l->fetches++;
        return;
    }
    log_warn("event=mta_sts_fetch domain=%s id=%s result=failed reason=\"not "
             "started\" error=%s",
             j->domain, j->id, uv_strerror(rc));
    mta_sts_svc_fetched(j->svc, j->domain, j->id, NULL, MTA_STS_FETCH_ERROR, "fetch not started",
                        mta_sts_svc_now(j->svc), a);
    finish(j, a);
}

/* What the TXT RRset of _mta-sts.<domain> says (§3.1). */
static enum mta_sts_lookup classify(const struct resolver_result *res, struct mta_sts_txt *txt,
                                    const char **why)
{
    *why = "no record";
    if (res->err != 0 || res->rcode == RESOLVER_RCODE_SERVFAIL || res->security == RESOLVER_BOGUS) {
        *why = "txt lookup failed";
        return MTA_STS_LOOKUP_FAILED;
    }
    if (res->rcode != RESOLVER_RCODE_NOERROR || res->count == 0)
        return MTA_STS_LOOKUP_NONE;
    /* 64 records are more than any real RRset; dropping the tail could
     * hide a second v=STSv1 record, which makes the set invalid (§3.1:
     * exactly one), so more is refused whole. */
    const uint8_t *rd[TXT_RECORDS_MAX];
    size_t len[TXT_RECORDS_MAX], n = res->count;
    if (n > TXT_RECORDS_MAX) {
        *why = "too many TXT records";
        return MTA_STS_LOOKUP_NONE;
    }
    for (size_t i = 0; i < n; i++) {
        rd[i] = (const uint8_t *)res->data[i];
        len[i] = res->len[i] > 0 ? (size_t)res->len[i] : 0;
    }
    return mta_sts_txt_select(rd, len, n, txt, why) == MTA_STS_OK ? MTA_STS_LOOKUP_FOUND
                                                                  : MTA_STS_LOOKUP_NONE;
}

static void on_txt(struct resolver_query *q, const struct resolver_result *res)
{
    struct mta_sts_job *j = q->data;
    struct mta_sts_svc *svc = j->svc;
    struct mta_sts_txt txt = {{0}};
    struct mta_sts_answer a;
    const char *why;
    enum mta_sts_lookup lookup = classify(res, &txt, &why);

    snprintf(j->id, sizeof(j->id), "%s", txt.id);
    enum mta_sts_next next =
        mta_sts_svc_txt(svc, j->domain, lookup, j->id, mta_sts_svc_now(svc), &a);
    log_debug("event=mta_sts_txt domain=%s lookup=%s id=%s next=%s", j->domain, why,
              j->id[0] != '\0' ? j->id : "-",
              next == MTA_STS_NEXT_DONE      ? "done"
              : next == MTA_STS_NEXT_REFRESH ? "refresh"
              : next == MTA_STS_NEXT_WAIT    ? "wait"
                                             : "fetch");
    switch (next) {
    case MTA_STS_NEXT_DONE:
        if (a.result == MTA_STS_RESULT_NONE || a.why == NULL)
            a.why = why;
        finish(j, &a);
        break;
    case MTA_STS_NEXT_REFRESH:
        /* The waiters have their answer; the fetch goes on for the
         * cache. The job stays listed so that later requests that miss
         * the cache join it. */
        answer_all(j, &a);
        fetch_or_share(j, &a);
        break;
    case MTA_STS_NEXT_FETCH:
        fetch_or_share(j, &a);
        break;
    case MTA_STS_NEXT_WAIT:
        wait_for_other(j);
        break;
    }
}

/* The job of (svc, name) on l, or NULL. */
static struct mta_sts_job *job_find(struct mta_sts_svc *svc, struct mta_sts_loop *l,
                                    const char *name)
{
    for (struct mta_sts_job *j = l->jobs; j != NULL; j = j->next)
        if (j->svc == svc && strcmp(j->domain, name) == 0)
            return j;
    return NULL;
}

/* A new job for name (normalised) on l, its TXT query sent; NULL and *why
 * when it cannot start. */
static struct mta_sts_job *job_start(struct mta_sts_svc *svc, struct mta_sts_loop *l,
                                     const char *name, const char **why)
{
    char qname[MTA_STS_NAME_MAX + 16];
    struct mta_sts_job *j = calloc(1, sizeof(*j));

    if (j == NULL) {
        *why = "out of memory";
        return NULL;
    }
    j->l = l;
    j->svc = mta_sts_svc_ref(svc);
    strcpy(j->domain, name);
    j->q.data = j;
    snprintf(qname, sizeof(qname), "_mta-sts.%s", name);
    int rc = l->resolver != NULL
                 ? resolver_query(l->resolver, &j->q, qname, RESOLVER_TYPE_TXT, on_txt)
                 : UV_EINVAL;
    if (rc != 0) {
        mta_sts_svc_unref(j->svc);
        free(j);
        *why = "txt lookup not started";
        return NULL;
    }
    l->txt_queries++;
    j->next = l->jobs;
    l->jobs = j;
    return j;
}

int mta_sts_get(struct mta_sts_svc *svc, struct mta_sts_loop *l, const char *domain, size_t len,
                struct mta_sts_req *req, mta_sts_cb cb, struct mta_sts_answer *a)
{
    char name[MTA_STS_NAME_MAX + 1];
    struct mta_sts_job *j;

    if (req->job != NULL)
        return UV_EBUSY;
    memset(a, 0, sizeof(*a));
    if (!mta_sts_svc_domain(domain, len, name)) {
        a->result = MTA_STS_RESULT_NONE;
        a->why = "not a domain name";
        return MTA_STS_GET_DONE;
    }
    if (mta_sts_svc_peek(svc, name, mta_sts_svc_now(svc), a))
        return MTA_STS_GET_DONE;
    if ((j = job_find(svc, l, name)) == NULL && (j = job_start(svc, l, name, &a->why)) == NULL) {
        a->result = MTA_STS_RESULT_TEMPFAIL;
        return MTA_STS_GET_DONE;
    }
    req->cb = cb;
    req->job = j;
    req->next = j->waiters;
    j->waiters = req;
    return 0;
}

int mta_sts_refresh(struct mta_sts_svc *svc, struct mta_sts_loop *l, const char *domain)
{
    char name[MTA_STS_NAME_MAX + 1];
    const char *why;

    if (!mta_sts_svc_domain(domain, strlen(domain), name))
        return UV_EINVAL;
    if (job_find(svc, l, name) != NULL)
        return 0;
    if (job_start(svc, l, name, &why) == NULL)
        return UV_ENOMEM;
    l->refreshes++;
    return 0;
}

static void on_sweep(uv_timer_t *t)
{
    struct mta_sts_loop *l = t->data;
    char names[MTA_STS_SWEEP_MAX][MTA_STS_NAME_MAX + 1];
    size_t n;

    if (l->sweep_svc == NULL)
        return;
    n = mta_sts_svc_due(l->sweep_svc, mta_sts_svc_now(l->sweep_svc), names, MTA_STS_SWEEP_MAX);
    for (size_t i = 0; i < n; i++)
        mta_sts_refresh(l->sweep_svc, l, names[i]);
    if (n > 0)
        log_debug("event=mta_sts_sweep due=%zu", n);
}

void mta_sts_loop_sweep(struct mta_sts_loop *l, struct mta_sts_svc *svc, unsigned every_ms)
{
    if (svc != NULL)
        mta_sts_svc_ref(svc);
    mta_sts_svc_unref(l->sweep_svc);
    l->sweep_svc = svc;
    if (svc == NULL) {
        if (l->sweep_init)
            uv_timer_stop(&l->sweep);
        return;
    }
    if (!l->sweep_init) {
        uv_timer_init(l->loop, &l->sweep);
        l->sweep.data = l;
        l->sweep_init = true;
    }
    uv_timer_start(&l->sweep, on_sweep, every_ms, every_ms);
}

bool mta_sts_req_active(const struct mta_sts_req *req)
{
    return req->job != NULL;
}

void mta_sts_cancel(struct mta_sts_req *req)
{
    struct mta_sts_job *j = req->job;

    if (j == NULL)
        return;
    for (struct mta_sts_req **pp = &j->waiters; *pp != NULL; pp = &(*pp)->next)
        if (*pp == req) {
            *pp = req->next;
            break;
        }
    req->job = NULL;
    req->next = NULL;
}

void mta_sts_loop_close(struct mta_sts_loop *l)
{
    struct mta_sts_job *j;

    mta_sts_loop_sweep(l, NULL, 0);
    /* The loop struct outlives the loop's last run (its owner's). */
    if (l->sweep_init) {
        uv_close((uv_handle_t *)&l->sweep, NULL);
        l->sweep_init = false;
    }
    if (l->poll_init) {
        uv_close((uv_handle_t *)&l->poll, NULL);
        l->poll_init = false;
    }
    while ((j = l->jobs) != NULL) {
        l->jobs = j->next;
        resolver_cancel(&j->q);
        if (https_get_active(&j->g) || j->rq != NULL)
            mta_sts_svc_abandon(j->svc, j->domain); /* other loops wait for it */
        https_get_cancel(&j->g);
        mta_sts_redis_cancel(j->rq);
        for (struct mta_sts_req *req = j->waiters, *n; req != NULL; req = n) {
            n = req->next;
            req->job = NULL;
            req->next = NULL;
        }
        mta_sts_svc_unref(j->svc);
        free(j);
    }
    mta_sts_redis_free(l->redis);
    l->redis = NULL;
}
