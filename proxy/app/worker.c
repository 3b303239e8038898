/*
 * Workers and the runtime; see worker.h.
 */
#include "proxy/app/worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/net/listener.h"
#include "proxy/obs/log.h"
#include "proxy/session/session.h"

static uv_mutex_t rt_lock;
static struct runtime *rt_current;
static struct worker *workers;
static unsigned nworkers;
static struct listener_shared *shared;
static size_t nshared;

static void runtime_free(struct runtime *rt)
{
    if (rt->cfg != NULL) {
        for (size_t i = 0; rt->inbound_tls && i < rt->cfg->ninbound; i++)
            tls_ctx_unref(rt->inbound_tls[i]);
        for (size_t i = 0; rt->outbound_tls && i < rt->cfg->noutbound; i++)
            tls_ctx_unref(rt->outbound_tls[i]);
    }
    free(rt->inbound_tls);
    free(rt->outbound_tls);
    config_free(rt->cfg);
    free(rt);
}

struct runtime *runtime_new(struct config *cfg, char *err, size_t errlen)
{
    struct runtime *rt = calloc(1, sizeof(*rt));

    if (rt == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&rt->refs, 1);
    rt->inbound_tls = calloc(cfg->ninbound + 1, sizeof(*rt->inbound_tls));
    rt->outbound_tls = calloc(cfg->noutbound + 1, sizeof(*rt->outbound_tls));
    if (rt->inbound_tls == NULL || rt->outbound_tls == NULL) {
        snprintf(err, errlen, "out of memory");
        goto err;
    }
    for (size_t i = 0; i < cfg->ninbound; i++) {
        rt->inbound_tls[i] = tls_ctx_server_new(&cfg->inbound[i].tls, err, errlen);
        if (rt->inbound_tls[i] == NULL)
            goto err;
        if (cfg->inbound[i].tls.ncertificates == 0)
            log_warn("listener=%s event=self_signed_certificate msg=\"no tls.certificate "
                     "configured: serving an in-memory self-signed ECDSA P-256 certificate; "
                     "peers that verify will refuse it\"",
                     cfg->inbound[i].name);
    }
    for (size_t i = 0; i < cfg->noutbound; i++) {
        /* The CA bundle is required only where some policy verifies;
         * elsewhere it only lets the log say whether a certificate would
         * have verified, and a machine without one (a slim container) must
         * still start. */
        const struct config_outbound *o = &cfg->outbound[i];
        struct tls_options tcfg = o->tls;
        bool verifies = o->policy == CONFIG_POLICY_VERIFY;
        for (size_t j = 0; j < o->npolicies; j++)
            verifies = verifies || o->policies[j].policy == CONFIG_POLICY_VERIFY;
        rt->outbound_tls[i] = tls_ctx_client_new(&tcfg, err, errlen);
        if (rt->outbound_tls[i] == NULL && !verifies && tcfg.ca_file != NULL) {
            char q[600];
            log_warn("listener=%s event=ca_file_unusable error=%s msg=\"certificates "
                     "will be logged as unverified\"",
                     o->name, log_quote(err, q, sizeof(q)));
            tcfg.ca_file = NULL;
            rt->outbound_tls[i] = tls_ctx_client_new(&tcfg, err, errlen);
        }
        if (rt->outbound_tls[i] == NULL)
            goto err;
    }
    rt->cfg = cfg;
    return rt;

err:
    /* cfg stays the caller's. */
    for (size_t i = 0; rt->inbound_tls && i < cfg->ninbound; i++)
        tls_ctx_unref(rt->inbound_tls[i]);
    for (size_t i = 0; rt->outbound_tls && i < cfg->noutbound; i++)
        tls_ctx_unref(rt->outbound_tls[i]);
    free(rt->inbound_tls);
    free(rt->outbound_tls);
    free(rt);
    return NULL;
}

struct runtime *runtime_acquire(void)
{
    uv_mutex_lock(&rt_lock);
    struct runtime *rt = rt_current;
    atomic_fetch_add(&rt->refs, 1);
    uv_mutex_unlock(&rt_lock);
    return rt;
}

void runtime_install(struct runtime *rt)
{
    static bool init;

    if (!init) {
        uv_mutex_init(&rt_lock);
        init = true;
    }
    uv_mutex_lock(&rt_lock);
    struct runtime *old = rt_current;
    rt_current = rt;
    uv_mutex_unlock(&rt_lock);
    runtime_unref(old);
}

void runtime_unref(struct runtime *rt)
{
    if (rt != NULL && atomic_fetch_sub(&rt->refs, 1) == 1)
        runtime_free(rt);
}

/* ---- workers ---- */

static void maybe_finish(struct worker *w)
{
    if (w->stopping && w->nsessions == 0) {
        uv_close((uv_handle_t *)&w->wake, NULL);
        uv_close((uv_handle_t *)&w->grace, NULL);
    }
}

void worker_session_done(struct worker *w)
{
    w->nsessions--;
    maybe_finish(w);
}

static void on_grace(uv_timer_t *t)
{
    struct worker *w = t->data;

    /* Sessions unlink themselves only when their handles have closed, so
     * walking the list while shutting sessions down is safe. */
    for (struct session *s = w->sessions; s != NULL; s = session_next(s))
        session_shutdown(s);
}

static void on_wake(uv_async_t *a)
{
    struct worker *w = a->data;

    if (!atomic_load(&w->stop_requested) || w->stopping)
        return;
    w->stopping = true;
    for (size_t i = 0; i < w->nlisteners; i++)
        listener_close(&w->listeners[i]);
    if (w->nsessions > 0)
        uv_timer_start(&w->grace, on_grace, (uint64_t)w->shutdown_timeout * 1000, 0);
    maybe_finish(w);
}

static void worker_main(void *arg)
{
    struct worker *w = arg;

    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static struct listener_shared *shared_for(const char *name, bool outbound)
{
    for (size_t i = 0; i < nshared; i++) {
        if (strcmp(shared[i].name, name) == 0)
            return &shared[i];
    }
    return NULL;
}

int workers_start(unsigned n, char *msg, size_t msglen)
{
    struct runtime *rt = runtime_acquire();
    const struct config *cfg = rt->cfg;
    size_t nl = cfg->ninbound + cfg->noutbound;
    int rc = 0;

    shared = calloc(nl + 1, sizeof(*shared));
    workers = calloc(n, sizeof(*workers));
    if (shared == NULL || workers == NULL) {
        snprintf(msg, msglen, "out of memory");
        runtime_unref(rt);
        return UV_ENOMEM;
    }
    for (size_t i = 0; i < cfg->ninbound; i++) {
        snprintf(shared[nshared].name, sizeof(shared[nshared].name), "%s", cfg->inbound[i].name);
        shared[nshared].metrics = metrics_listener(cfg->inbound[i].name, "in");
        nshared++;
    }
    for (size_t i = 0; i < cfg->noutbound; i++) {
        snprintf(shared[nshared].name, sizeof(shared[nshared].name), "%s",
                 cfg->outbound[i].name);
        shared[nshared].outbound = true;
        shared[nshared].metrics = metrics_listener(cfg->outbound[i].name, "out");
        nshared++;
    }
    nworkers = n;
    for (unsigned i = 0; i < n; i++) {
        struct worker *w = &workers[i];
        w->index = i;
        uv_loop_init(&w->loop);
        uv_async_init(&w->loop, &w->wake, on_wake);
        w->wake.data = w;
        uv_timer_init(&w->loop, &w->grace);
        w->grace.data = w;
        w->listeners = calloc(nl + 1, sizeof(*w->listeners));
        if (w->listeners == NULL) {
            snprintf(msg, msglen, "out of memory");
            rc = UV_ENOMEM;
            goto out;
        }
        for (size_t j = 0; j < cfg->ninbound; j++) {
            rc = listener_open(&w->listeners[w->nlisteners], w,
                               shared_for(cfg->inbound[j].name, false), &cfg->inbound[j].listen,
                               msg, msglen);
            if (rc != 0)
                goto out;
            w->nlisteners++;
        }
        for (size_t j = 0; j < cfg->noutbound; j++) {
            rc = listener_open(&w->listeners[w->nlisteners], w,
                               shared_for(cfg->outbound[j].name, true),
                               &cfg->outbound[j].listen, msg, msglen);
            if (rc != 0)
                goto out;
            w->nlisteners++;
        }
    }
    for (unsigned i = 0; i < n; i++)
        uv_thread_create(&workers[i].thread, worker_main, &workers[i]);
out:
    runtime_unref(rt);
    return rc;
}

void workers_stop_and_join(unsigned shutdown_timeout)
{
    for (unsigned i = 0; i < nworkers; i++) {
        workers[i].shutdown_timeout = shutdown_timeout;
        atomic_store(&workers[i].stop_requested, true);
        uv_async_send(&workers[i].wake);
    }
    for (unsigned i = 0; i < nworkers; i++) {
        uv_thread_join(&workers[i].thread);
        uv_loop_close(&workers[i].loop);
        free(workers[i].listeners);
    }
    free(workers);
    workers = NULL;
    nworkers = 0;
}
