/*
 * Workers; see worker.h.
 */
#include "proxy/app/worker.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "proxy/net/listener.h"
#include "proxy/obs/log.h"

struct worker {
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wake;            /* a new runtime, or "stop", from the main thread */
    uv_timer_t grace;           /* shutdown_timeout after stop */
    struct listener *listeners;
    size_t nlisteners;
    /* Touched only on this worker's thread: */
    struct runtime *rt;
    const struct session_profile **profiles; /* per listener slot; NULL: removed */
    struct session_set sessions;
    bool stopping;
    /* Posted by the main thread: */
    _Atomic(struct runtime *) next_rt;
    atomic_bool stop_requested;
    atomic_uint shutdown_timeout;
};

static struct worker *workers;
static unsigned nworkers;

/* Looks every listener's profile up by name once per configuration, so the
 * accept path is an array index. */
static void adopt(struct worker *w, struct runtime *rt)
{
    struct runtime *old = w->rt;

    w->rt = rt;
    for (size_t i = 0; i < w->nlisteners; i++) {
        w->profiles[i] = runtime_profile(rt, w->listeners[i].name);
        if (w->profiles[i] == NULL && old != NULL && runtime_profile(old, w->listeners[i].name))
            log_warn("listener=%s event=listener_removed msg=\"no longer configured: its "
                     "address stays bound and connections are closed until a restart\"",
                     w->listeners[i].name);
    }
    runtime_unref(old);
}

static void on_accept(struct listener *l)
{
    struct worker *w = l->owner;

    session_accept(&w->sessions, (uv_stream_t *)&l->tcp, w->profiles[l->slot]);
}

static void on_sessions_done(struct session_set *set)
{
    struct worker *w = set->owner;

    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_close((uv_handle_t *)&w->grace, NULL);
}

static void on_grace(uv_timer_t *t)
{
    struct worker *w = t->data;

    session_set_shutdown(&w->sessions);
}

static void on_wake(uv_async_t *a)
{
    struct worker *w = a->data;
    struct runtime *rt = atomic_exchange(&w->next_rt, NULL);

    if (rt != NULL)
        adopt(w, rt);
    if (!atomic_load(&w->stop_requested) || w->stopping)
        return;
    w->stopping = true;
    for (size_t i = 0; i < w->nlisteners; i++)
        listener_close(&w->listeners[i]);
    if (w->sessions.count > 0)
        uv_timer_start(&w->grace, on_grace, (uint64_t)atomic_load(&w->shutdown_timeout) * 1000,
                       0);
    session_set_stop(&w->sessions);
}

static void worker_main(void *arg)
{
    struct worker *w = arg;

    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static int worker_init(struct worker *w, struct runtime *rt, char *msg, size_t msglen)
{
    const struct config *cfg = rt->cfg;
    size_t n = cfg->ninbound + cfg->noutbound;

    uv_loop_init(&w->loop);
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->wake.data = w;
    uv_timer_init(&w->loop, &w->grace);
    w->grace.data = w;
    session_set_init(&w->sessions, &w->loop, on_sessions_done, w);
    w->listeners = calloc(n + 1, sizeof(*w->listeners));
    w->profiles = calloc(n + 1, sizeof(*w->profiles));
    if (w->listeners == NULL || w->profiles == NULL) {
        snprintf(msg, msglen, "out of memory");
        return UV_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        bool out = i >= cfg->ninbound;
        const char *name = out ? cfg->outbound[i - cfg->ninbound].name : cfg->inbound[i].name;
        const struct addr *a =
            out ? &cfg->outbound[i - cfg->ninbound].listen : &cfg->inbound[i].listen;
        int rc = listener_open(&w->listeners[i], &w->loop, name, a, on_accept, w, i, msg, msglen);
        if (rc != 0)
            return rc;
        w->nlisteners++;
    }
    runtime_ref(rt);
    adopt(w, rt);
    return 0;
}

/* Undoes worker_init on a loop that never ran. */
static void worker_destroy(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        listener_close(&w->listeners[i]);
    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_close((uv_handle_t *)&w->grace, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    runtime_unref(w->rt);
    runtime_unref(atomic_exchange(&w->next_rt, NULL));
    free(w->listeners);
    free(w->profiles);
}

int workers_start(struct runtime *rt, unsigned n, char *msg, size_t msglen)
{
    workers = calloc(n, sizeof(*workers));
    if (workers == NULL) {
        snprintf(msg, msglen, "out of memory");
        return UV_ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        int rc = worker_init(&workers[i], rt, msg, msglen);
        if (rc != 0) {
            for (unsigned j = 0; j <= i; j++)
                worker_destroy(&workers[j]);
            free(workers);
            workers = NULL;
            return rc;
        }
    }
    nworkers = n;
    for (unsigned i = 0; i < n; i++)
        uv_thread_create(&workers[i].thread, worker_main, &workers[i]);
    return 0;
}

void workers_install(struct runtime *rt)
{
    for (unsigned i = 0; i < nworkers; i++) {
        runtime_ref(rt);
        runtime_unref(atomic_exchange(&workers[i].next_rt, rt));
        uv_async_send(&workers[i].wake);
    }
}

void workers_stop_and_join(unsigned shutdown_timeout)
{
    for (unsigned i = 0; i < nworkers; i++) {
        atomic_store(&workers[i].shutdown_timeout, shutdown_timeout);
        atomic_store(&workers[i].stop_requested, true);
        uv_async_send(&workers[i].wake);
    }
    for (unsigned i = 0; i < nworkers; i++) {
        struct worker *w = &workers[i];
        uv_thread_join(&w->thread);
        uv_loop_close(&w->loop);
        runtime_unref(w->rt);
        runtime_unref(atomic_exchange(&w->next_rt, NULL));
        free(w->listeners);
        free(w->profiles);
    }
    free(workers);
    workers = NULL;
    nworkers = 0;
}
