/*
 * transcript.c.h: the driver the dialogue-engine tests share (inbound,
 * outbound, relay). It plays the session: it records what the engine sends
 * to the client and to the server, collects actions, and offers unconsumed
 * bytes again after every step, as the session does.
 *
 * Included (h2o's .c.h style) by a test file after it defines:
 *   TRANSCRIPT_ENGINE             the engine's type, e.g. struct inbound
 *   TRANSCRIPT_CLIENT(e, p, n)    feeds client bytes, returns the consumed
 *   TRANSCRIPT_SERVER(e, p, n)    the same for server bytes
 *   TRANSCRIPT_TAKE_ACTIONS(e)    returns and clears ENGINE_ACT_* bits
 * The engine lives in t->e; the test sets it up after alloc_t(), with
 * engine_io from transcript_io(t).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/core/engine.h"

#define CAP (1u << 17)
#define MAX_EVENTS 64

struct event {
    unsigned action;
    size_t at_client; /* bytes sent to the client when it was taken */
    size_t at_server;
};

struct t {
    TRANSCRIPT_ENGINE e;
    uint8_t cli[CAP];
    size_t ncli, rcli; /* recorded, and read so far by expect_cli */
    uint8_t srv[CAP];
    size_t nsrv, rsrv;
    uint8_t cpend[CAP]; /* client bytes the engine has not consumed yet */
    size_t ncpend;
    uint8_t spend[CAP];
    size_t nspend;
    unsigned actions; /* taken, not yet looked at by the test */
    struct event ev[MAX_EVENTS];
    unsigned nev;
    char states[1024]; /* "engine:FROM>TO " for every on_state call */
    size_t nstates;
};

static void on_client(void *arg, const uint8_t *p, size_t n)
{
    struct t *t = arg;

    assert_true(t->ncli + n <= CAP);
    memcpy(t->cli + t->ncli, p, n);
    t->ncli += n;
}

static void on_server(void *arg, const uint8_t *p, size_t n)
{
    struct t *t = arg;

    assert_true(t->nsrv + n <= CAP);
    memcpy(t->srv + t->nsrv, p, n);
    t->nsrv += n;
}

static void on_state(void *arg, const char *engine, const char *from, const char *to)
{
    struct t *t = arg;
    int k = snprintf(t->states + t->nstates, sizeof(t->states) - t->nstates, "%s:%s>%s ",
                     engine, from, to);

    if (k > 0 && (size_t)k < sizeof(t->states) - t->nstates)
        t->nstates += (size_t)k;
}

static inline struct engine_io transcript_io(struct t *t)
{
    return (struct engine_io){
        .arg = t, .to_client = on_client, .to_server = on_server, .on_state = on_state};
}

/* What the engine allocated for itself (a user defines it before the
 * include); nothing by default. */
#ifndef TRANSCRIPT_FREE
#define TRANSCRIPT_FREE(e) ((void)(e))
#endif

/* Drivers still allocated: a failed assertion leaves the test early, and
 * the teardown frees what it left behind. */
static struct t *live[4];

static struct t *alloc_t(void)
{
    struct t *t = calloc(1, sizeof(*t));

    assert_non_null(t);
    for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
        if (live[i] == NULL) {
            live[i] = t;
            return t;
        }
    }
    fail_msg("too many live drivers");
    return NULL;
}

static inline void release(struct t *t)
{
    for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
        if (live[i] == t)
            live[i] = NULL;
    }
    TRANSCRIPT_FREE(&t->e);
    free(t);
}

static inline int teardown(void **state)
{
    for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
        if (live[i] != NULL)
            TRANSCRIPT_FREE(&live[i]->e);
        free(live[i]);
        live[i] = NULL;
    }
    return 0;
}

static inline void collect(struct t *t)
{
    unsigned a = TRANSCRIPT_TAKE_ACTIONS(&t->e);

    if (a == 0)
        return;
    t->actions |= a;
    if (t->nev < MAX_EVENTS)
        t->ev[t->nev++] = (struct event){a, t->ncli, t->nsrv};
}

static size_t take(uint8_t *buf, size_t *n, size_t k)
{
    assert_true(k <= *n);
    memmove(buf, buf + k, *n - k);
    *n -= k;
    return k;
}

/* Offers pending bytes to the engine until neither side makes progress. */
static inline void pump(struct t *t)
{
    for (;;) {
        size_t k = 0;
        if (t->ncpend > 0) {
            k += take(t->cpend, &t->ncpend, TRANSCRIPT_CLIENT(&t->e, t->cpend, t->ncpend));
            collect(t);
        }
        if (t->nspend > 0) {
            k += take(t->spend, &t->nspend, TRANSCRIPT_SERVER(&t->e, t->spend, t->nspend));
            collect(t);
        }
        if (k == 0)
            return;
    }
}

static inline void client_n(struct t *t, const void *p, size_t n)
{
    assert_true(t->ncpend + n <= CAP);
    memcpy(t->cpend + t->ncpend, p, n);
    t->ncpend += n;
    pump(t);
}

static inline void server_n(struct t *t, const void *p, size_t n)
{
    assert_true(t->nspend + n <= CAP);
    memcpy(t->spend + t->nspend, p, n);
    t->nspend += n;
    pump(t);
}

static inline void client(struct t *t, const char *s)
{
    client_n(t, s, strlen(s));
}

static inline void server(struct t *t, const char *s)
{
    server_n(t, s, strlen(s));
}

static void expect_new(const uint8_t *buf, size_t n, size_t *r, const char *want,
                       const char *side)
{
    size_t got = n - *r;

    if (got != strlen(want) || memcmp(buf + *r, want, got) != 0)
        fail_msg("to %s: expected [%s], got [%.*s]", side, want, (int)got,
                 (const char *)buf + *r);
    *r = n;
}

/* What reached the client since the last check. */
static inline void expect_cli(struct t *t, const char *want)
{
    expect_new(t->cli, t->ncli, &t->rcli, want, "client");
}

/* What reached the server since the last check. */
static inline void expect_srv(struct t *t, const char *want)
{
    expect_new(t->srv, t->nsrv, &t->rsrv, want, "server");
}

static inline unsigned actions(struct t *t)
{
    unsigned a = t->actions;

    t->actions = 0;
    return a;
}

static inline bool contains(const uint8_t *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);

    for (size_t i = 0; i + k <= n; i++) {
        if (memcmp(hay + i, needle, k) == 0)
            return true;
    }
    return false;
}
