/*
 * The runtime; see runtime.h.
 */
#include "proxy/app/runtime.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proxy/obs/log.h"
#include "proxy/obs/metrics.h"
#include "proxy/policy/rules.h"
#include "proxy/service/mta_sts_svc.h"
#include "proxy/service/tlsrpt_redis.h"
#include "proxy/service/tlsrpt_reporter.h"

/* Listener-wide state that outlives reloads: the count of open sessions
 * (max_connections spans workers and configurations). Created when a name
 * is first seen, never freed, so profiles may point into it; the lock is
 * taken only while a configuration is being built. */
struct listener_state {
    char *name;
    atomic_uint active;
    struct listener_state *next;
};

static pthread_mutex_t states_lock = PTHREAD_MUTEX_INITIALIZER;
static struct listener_state *states;

static atomic_uint *active_counter(const char *name)
{
    struct listener_state *st;

    pthread_mutex_lock(&states_lock);
    for (st = states; st != NULL; st = st->next)
        if (strcmp(st->name, name) == 0)
            break;
    if (st == NULL && (st = calloc(1, sizeof(*st))) != NULL) {
        st->name = strdup(name);
        if (st->name == NULL) {
            free(st);
            st = NULL;
        } else {
            atomic_init(&st->active, 0);
            st->next = states;
            states = st;
        }
    }
    pthread_mutex_unlock(&states_lock);
    return st ? &st->active : NULL;
}

/* The MTA-STS policy service outlives reloads like the listener states: a
 * new runtime whose mta_sts block names the same cache file and CA file
 * takes the current service (and its warm cache) over; another block makes
 * a new one, which reads the file the old one has just written. Each
 * runtime holds a reference, the process one more (the current one). */
struct runtime_mta_sts {
    atomic_int refs;
    struct mta_sts_svc *svc;
    char *cache, *ca_file;
    bool has_redis;
    struct addr redis;
};

static struct runtime_mta_sts *mta_sts_current;

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void mta_sts_unref(struct runtime_mta_sts *m)
{
    if (m != NULL && atomic_fetch_sub(&m->refs, 1) == 1) {
        mta_sts_svc_unref(m->svc);
        free(m->cache);
        free(m->ca_file);
        free(m);
    }
}

static struct runtime_mta_sts *mta_sts_service(const struct config_mta_sts *c, char *err,
                                               size_t errlen)
{
    struct runtime_mta_sts *m = NULL;

    pthread_mutex_lock(&states_lock);
    if (mta_sts_current != NULL && same(mta_sts_current->cache, c->cache) &&
        same(mta_sts_current->ca_file, c->ca_file) && mta_sts_current->has_redis == c->has_redis &&
        (!c->has_redis || (mta_sts_current->redis.salen == c->redis.salen &&
                           memcmp(&mta_sts_current->redis.sa, &c->redis.sa, c->redis.salen) == 0))) {
        m = mta_sts_current;
        atomic_fetch_add(&m->refs, 1);
        goto out;
    }
    if (mta_sts_current != NULL && mta_sts_current->cache != NULL)
        mta_sts_svc_save(mta_sts_current->svc);
    struct mta_sts_svc_options o = {
        .cache_file = c->cache,
        .ca_file = c->ca_file,
        .redis = c->has_redis ? (const struct sockaddr *)&c->redis.sa : NULL,
    };
    if ((m = calloc(1, sizeof(*m))) == NULL || (c->cache && !(m->cache = strdup(c->cache))) ||
        (c->ca_file && !(m->ca_file = strdup(c->ca_file)))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if ((m->svc = mta_sts_svc_new(&o, err, errlen)) == NULL)
        goto fail;
    atomic_init(&m->refs, 2); /* this runtime's and the process's */
    m->has_redis = c->has_redis;
    m->redis = c->redis;
    mta_sts_unref(mta_sts_current);
    mta_sts_current = m;
    log_info("event=mta_sts_service cache=%s ca_file=%s", c->cache ? c->cache : "(memory)",
             c->ca_file ? c->ca_file : "-");
    goto out;

fail:
    if (m != NULL) {
        free(m->cache);
        free(m->ca_file);
        free(m);
    }
    m = NULL;
out:
    pthread_mutex_unlock(&states_lock);
    return m;
}

struct mta_sts_svc *runtime_mta_sts(const struct runtime *rt)
{
    return rt->mta_sts != NULL ? rt->mta_sts->svc : NULL;
}

void runtime_release_services(void)
{
    pthread_mutex_lock(&states_lock);
    struct runtime_mta_sts *m = mta_sts_current;
    mta_sts_current = NULL;
    pthread_mutex_unlock(&states_lock);
    mta_sts_unref(m);
}

static void profile_hold(const struct session_profile *p)
{
    runtime_ref(((const struct runtime_profile *)(const void *)p)->rt);
}

static void profile_release(const struct session_profile *p)
{
    runtime_unref(((const struct runtime_profile *)(const void *)p)->rt);
}

static void runtime_free(struct runtime *rt)
{
    for (size_t i = 0; i < rt->nprofiles; i++)
        tls_ctx_unref(rt->profiles[i].p.tls);
    free(rt->profiles);
    tlsrpt_store_close(rt->tls_rpt);
    mta_sts_unref(rt->mta_sts);
    config_free(rt->cfg);
    free(rt);
}

/* The CA bundle is required only where some policy verifies; elsewhere it
 * only lets the log say whether a certificate would have verified, and a
 * machine without one (a slim container) must still start. */
static struct tls_ctx *outbound_ctx(const struct config_outbound *o, char *err, size_t errlen)
{
    struct tls_options t = o->tls;
    struct tls_ctx *ctx = tls_ctx_client_new(&t, err, errlen);

    if (ctx == NULL && !policy_table_verifies(&o->opts.policy) && t.ca_file != NULL) {
        char q[600];
        log_warn("listener=%s event=ca_file_unusable error=%s msg=\"certificates "
                 "will be logged as unverified\"",
                 o->name, log_quote(err, q, sizeof(q)));
        t.ca_file = NULL;
        ctx = tls_ctx_client_new(&t, err, errlen);
    }
    return ctx;
}

struct runtime *runtime_new(struct config *cfg, char *err, size_t errlen)
{
    struct runtime *rt = calloc(1, sizeof(*rt));
    size_t n = cfg->ninbound + cfg->noutbound;

    if (rt == NULL || (rt->profiles = calloc(n + 1, sizeof(*rt->profiles))) == NULL) {
        snprintf(err, errlen, "out of memory");
        free(rt);
        return NULL;
    }
    atomic_init(&rt->refs, 1);
    if (cfg->tls_rpt.enabled) {
        char why[512];
        /* Made here rather than by the loader; given to the user the proxy
         * will run as, when it is started as root to drop privileges. */
        if (mkdir(cfg->tls_rpt.directory, 0750) == 0 && cfg->drop_privileges && geteuid() == 0 &&
            chown(cfg->tls_rpt.directory, cfg->uid, cfg->gid) != 0)
            log_warn("tls_rpt=store dir=%s error=\"cannot give it to user %s: %s\"",
                     cfg->tls_rpt.directory, cfg->user, strerror(errno));
        rt->tls_rpt =
            tlsrpt_store_open(cfg->tls_rpt.directory, 0, (int64_t)time(NULL), why, sizeof(why));
        if (rt->tls_rpt == NULL) {
            snprintf(err, errlen, "tls_rpt.directory: %s", why);
            goto err;
        }
    }
    if (cfg->mta_sts.enabled && (rt->mta_sts = mta_sts_service(&cfg->mta_sts, err, errlen)) == NULL)
        goto err;
    for (size_t i = 0; i < n; i++) {
        struct runtime_profile *rp = &rt->profiles[i];
        struct session_profile *p = &rp->p;
        bool out = i >= cfg->ninbound;
        const struct config_inbound *in = out ? NULL : &cfg->inbound[i];
        const struct config_outbound *o = out ? &cfg->outbound[i - cfg->ninbound] : NULL;

        rp->rt = rt;
        rp->tls_rpt = out && o->tls_rpt ? rt->tls_rpt : NULL;
        p->tls_rpt = rp->tls_rpt;
        p->name = out ? o->name : in->name;
        p->outbound = out;
        p->in = out ? NULL : &in->opts;
        p->out = out ? &o->opts : NULL;
        p->metrics = metrics_listener(p->name, out ? "out" : "in");
        p->active = active_counter(p->name);
        p->hold = profile_hold;
        p->release = profile_release;
        p->mta_sts = out && o->opts.mta_sts ? rt->mta_sts->svc : NULL;
        p->tls = out ? outbound_ctx(o, err, errlen) : tls_ctx_server_new(&in->tls, err, errlen);
        if (p->active == NULL) {
            snprintf(err, errlen, "out of memory");
            tls_ctx_unref(p->tls);
            p->tls = NULL;
        }
        if (p->tls == NULL)
            goto err;
        rt->nprofiles++;
        if (!out && in->tls.ncertificates == 0)
            log_warn("listener=%s event=self_signed_certificate msg=\"no tls.certificate "
                     "configured: serving an in-memory self-signed ECDSA P-256 certificate; "
                     "peers that verify will refuse it\"",
                     in->name);
    }
    rt->cfg = cfg;
    return rt;

err:
    /* cfg stays the caller's. */
    runtime_free(rt);
    return NULL;
}

void runtime_ref(struct runtime *rt)
{
    atomic_fetch_add(&rt->refs, 1);
}

void runtime_unref(struct runtime *rt)
{
    if (rt != NULL && atomic_fetch_sub(&rt->refs, 1) == 1)
        runtime_free(rt);
}

/* The reporter outlives runtimes: one per process, or two would send the
 * same reports. */
static struct tlsrpt_reporter *reporter;

/* The fleet's TLS-RPT counts (mta_sts.redis with tls_rpt): a counter per
 * Redis address, outliving runtimes as the reporter does. A runtime's store
 * points to one, so one a reload stops using is kept until exit (a reload
 * that changes the address is rare). Main thread only. */
struct rpt_counter {
    struct tlsrpt_redis_counter *c;
    struct addr addr;
    struct rpt_counter *next;
};
static struct rpt_counter *rpt_counters;

static struct tlsrpt_redis_counter *rpt_counter(const struct addr *a)
{
    struct rpt_counter *k;
    char ip[INET6_ADDRSTRLEN] = "";

    for (k = rpt_counters; k != NULL; k = k->next)
        if (k->addr.salen == a->salen && memcmp(&k->addr.sa, &a->sa, a->salen) == 0)
            return k->c;
    if (a->sa.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->sa)->sin6_addr, ip, sizeof(ip));
    else
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->sa)->sin_addr, ip, sizeof(ip));
    if ((k = calloc(1, sizeof(*k))) == NULL ||
        (k->c = tlsrpt_redis_counter_start(ip, a->port)) == NULL) {
        free(k);
        log_error("tls_rpt=redis error=\"cannot start the counter\" msg=\"this "
                  "instance's results are not in the fleet's counts\"");
        return NULL;
    }
    k->addr = *a;
    k->next = rpt_counters;
    rpt_counters = k;
    return k->c;
}

void runtime_services(const struct runtime *rt)
{
    const struct config_tls_rpt *t = &rt->cfg->tls_rpt;
    const struct config_mta_sts *m = &rt->cfg->mta_sts;
    struct tlsrpt_reporter_options o = {0};
    char err[512];

    if (t->enabled && rt->tls_rpt != NULL)
        tlsrpt_store_set_counter(rt->tls_rpt, m->has_redis ? rpt_counter(&m->redis) : NULL);
    if (!t->enabled) {
        tlsrpt_reporter_stop(reporter);
        reporter = NULL;
        return;
    }
    o.directory = t->directory;
    o.organization = t->organization;
    o.contact = t->contact;
    memcpy(&o.submit, &t->submit.sa, t->submit.salen);
    o.resolver = &rt->cfg->resolver;
    o.ca_file = rt->cfg->tls.ca_file;
    o.redis = m->has_redis ? (const struct sockaddr *)&m->redis.sa : NULL;
    if (reporter != NULL && tlsrpt_reporter_same(reporter, &o))
        return;
    tlsrpt_reporter_stop(reporter);
    if ((reporter = tlsrpt_reporter_start(&o, err, sizeof(err))) == NULL)
        log_error("tls_rpt=reporter error=\"%s\" msg=\"no reports will be sent\"", err);
}

void runtime_services_stop(void)
{
    tlsrpt_reporter_stop(reporter);
    reporter = NULL;
    /* The workers are joined: nothing records any more. */
    while (rpt_counters != NULL) {
        struct rpt_counter *k = rpt_counters;
        rpt_counters = k->next;
        tlsrpt_redis_counter_stop(k->c, 2000);
        free(k);
    }
}

const struct session_profile *runtime_profile(const struct runtime *rt, const char *name)
{
    for (size_t i = 0; i < rt->nprofiles; i++)
        if (strcmp(rt->profiles[i].p.name, name) == 0)
            return &rt->profiles[i].p;
    return NULL;
}
