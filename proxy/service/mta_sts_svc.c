/*
 * The MTA-STS policy service's shared cache, its decisions and its file;
 * see mta_sts_svc.h.
 *
 * Locking: one mutex (svc->lock) over the table, the LRU list, the counters
 * and the dirty flag. Snapshots are immutable once published, so an answer
 * holds one without the lock. The save thread copies references to the
 * snapshots under the lock and formats and writes them without it; saves
 * are serialised by svc->save_lock.
 */
#include "proxy/service/mta_sts_svc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proxy/obs/log.h"
#include "proxy/tls/tls.h"

struct entry {
    char domain[MTA_STS_NAME_MAX + 1];
    uint32_t hash;
    struct entry *hnext;           /* bucket chain */
    struct entry *prev, *next;     /* LRU: svc->lru_head is the most recent */
    struct mta_sts_snapshot *snap; /* the policy, or NULL: none known */
    int64_t checked;               /* last TXT check that needed no fetch; 0: never */
    /* The last failed fetch (§3.3 retry spacing), as in mta_sts_cache_entry. */
    int64_t failed_at;
    char failed_id[MTA_STS_ID_MAX + 1];
    enum mta_sts_fetch_error failed_how; /* with failed_at */
    /* A loop fetches this domain until then; 0: no fetch, or it ended
     * (mta_sts_svc_fetched); in the past: overran or abandoned. */
    int64_t fetch_until;
};

struct mta_sts_svc {
    atomic_int refs;
    pthread_mutex_t lock;
    struct entry **buckets;
    size_t nbuckets; /* a power of two */
    struct entry *lru_head, *lru_tail;
    size_t count, policies, max_entries;
    unsigned recheck;
    int64_t (*clock)(void *arg);
    void *clock_arg;
    struct tls_ctx *tls;
    bool has_redis;
    struct sockaddr_storage redis;
    struct mta_sts_svc_stats stats;

    /* Persistence. */
    char *file;
    unsigned save_delay_ms;
    bool dirty, stopping, has_thread;
    pthread_cond_t cond;
    pthread_t thread;
    pthread_mutex_t save_lock;
};

void mta_sts_snapshot_unref(struct mta_sts_snapshot *s)
{
    if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1)
        free(s);
}

static struct mta_sts_snapshot *snapshot_ref(struct mta_sts_snapshot *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

bool mta_sts_snapshot_allows(const struct mta_sts_snapshot *s, const char *host, size_t len)
{
    for (size_t i = 0; i < s->n_mx; i++)
        if (mta_sts_mx_match(s->mx[i], host, len))
            return true;
    return false;
}

/* The compact copy of e (which has a policy), or NULL (out of memory). */
static struct mta_sts_snapshot *snapshot_new(const struct mta_sts_cache_entry *e)
{
    size_t n = e->policy.n_mx;
    struct mta_sts_snapshot *s = malloc(sizeof(*s) + n * sizeof(s->mx[0]));

    if (s == NULL)
        return NULL;
    atomic_init(&s->refs, 1);
    memcpy(s->domain, e->domain, sizeof(s->domain));
    memcpy(s->id, e->id, sizeof(s->id));
    s->fetched = e->fetched;
    s->expires = e->expires;
    s->mode = e->policy.mode;
    s->max_age = e->policy.max_age;
    s->n_mx = n;
    memcpy(s->mx, e->policy.mx, n * sizeof(s->mx[0]));
    return s;
}

/* The cache entry s came from, into e (the caller's; 16 KiB), for the pure
 * decisions and the file format of proxy/policy. NULL s: no policy. */
static void snapshot_expand(const struct mta_sts_snapshot *s, struct mta_sts_cache_entry *e)
{
    memset(e, 0, offsetof(struct mta_sts_cache_entry, policy));
    memset(&e->policy, 0, offsetof(struct mta_sts_policy, mx));
    e->failed_at = 0;
    e->failed_id[0] = '\0';
    if (s == NULL)
        return;
    memcpy(e->domain, s->domain, sizeof(e->domain));
    memcpy(e->id, s->id, sizeof(e->id));
    e->fetched = s->fetched;
    e->expires = s->expires;
    e->has_policy = true;
    e->policy.mode = s->mode;
    e->policy.max_age = s->max_age;
    e->policy.n_mx = s->n_mx;
    memcpy(e->policy.mx, s->mx, s->n_mx * sizeof(s->mx[0]));
}

const char *mta_sts_result_str(enum mta_sts_result r)
{
    switch (r) {
    case MTA_STS_RESULT_NONE:
        return "none";
    case MTA_STS_RESULT_POLICY:
        return "policy";
    case MTA_STS_RESULT_TEMPFAIL:
        return "tempfail";
    }
    return "unknown";
}

void mta_sts_answer_release(struct mta_sts_answer *a)
{
    mta_sts_snapshot_unref(a->policy);
    a->policy = NULL;
}

static void answer(struct mta_sts_answer *a, enum mta_sts_result r, enum mta_sts_fetch_error err,
                   const char *why, struct mta_sts_snapshot *s)
{
    a->result = r;
    a->fetch_error = err;
    a->why = why;
    a->policy = s != NULL ? snapshot_ref(s) : NULL;
}

/* How e's last fetch failed (never MTA_STS_FETCH_OK: mta_sts_svc_fetched
 * stores no such failure), or otherwise when e is gone or none failed. */
static enum mta_sts_fetch_error failed_how(const struct entry *e,
                                           enum mta_sts_fetch_error otherwise)
{
    return e != NULL && e->failed_at != 0 ? e->failed_how : otherwise;
}

static int64_t system_clock(void *arg)
{
    return (int64_t)time(NULL);
}

int64_t mta_sts_svc_now(const struct mta_sts_svc *svc)
{
    return svc->clock(svc->clock_arg);
}

const struct sockaddr *mta_sts_svc_redis(const struct mta_sts_svc *svc)
{
    return svc->has_redis ? (const struct sockaddr *)&svc->redis : NULL;
}

int mta_sts_snapshot_format(const struct mta_sts_snapshot *s, char *buf, size_t cap)
{
    static _Thread_local struct mta_sts_cache_entry e;

    snapshot_expand(s, &e);
    return mta_sts_cache_format(&e, buf, cap);
}

struct tls_ctx *mta_sts_svc_tls(const struct mta_sts_svc *svc)
{
    return svc->tls;
}

bool mta_sts_svc_domain(const char *domain, size_t len, char *out)
{
    if (len > 0 && domain[len - 1] == '.')
        len--;
    /* A domain is a pattern without the wildcard; an IPv4 literal is a
     * valid host name by that syntax but has no _mta-sts record. */
    if (len == 0 || domain[0] == '*' || !mta_sts_pattern_valid(domain, len))
        return false;
    bool digits_only = true;
    for (size_t i = 0; i < len; i++) {
        char c = domain[i];
        out[i] = c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
        if (!(c >= '0' && c <= '9') && c != '.')
            digits_only = false;
    }
    out[len] = '\0';
    return !digits_only;
}

/* --- The table --- */

static uint32_t hash_of(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static struct entry *find(struct mta_sts_svc *svc, const char *domain)
{
    uint32_t h = hash_of(domain);

    for (struct entry *e = svc->buckets[h & (svc->nbuckets - 1)]; e != NULL; e = e->hnext)
        if (e->hash == h && strcmp(e->domain, domain) == 0)
            return e;
    return NULL;
}

static void lru_unlink(struct mta_sts_svc *svc, struct entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        svc->lru_head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        svc->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_front(struct mta_sts_svc *svc, struct entry *e)
{
    e->prev = NULL;
    e->next = svc->lru_head;
    if (svc->lru_head != NULL)
        svc->lru_head->prev = e;
    svc->lru_head = e;
    if (svc->lru_tail == NULL)
        svc->lru_tail = e;
}

static void touch(struct mta_sts_svc *svc, struct entry *e)
{
    if (svc->lru_head != e) {
        lru_unlink(svc, e);
        lru_front(svc, e);
    }
}

static void set_snap(struct mta_sts_svc *svc, struct entry *e, struct mta_sts_snapshot *s)
{
    if (e->snap != NULL)
        svc->policies--;
    mta_sts_snapshot_unref(e->snap);
    e->snap = s;
    if (s != NULL)
        svc->policies++;
}

static void drop(struct mta_sts_svc *svc, struct entry *e)
{
    struct entry **pp = &svc->buckets[e->hash & (svc->nbuckets - 1)];

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(svc, e);
    set_snap(svc, e, NULL);
    svc->count--;
    free(e);
}

/* The entry of domain (normalised), made when missing; the least recently
 * used entry makes room when the table is full. NULL when out of memory. */
static struct entry *get(struct mta_sts_svc *svc, const char *domain)
{
    struct entry *e = find(svc, domain);

    if (e != NULL) {
        touch(svc, e);
        return e;
    }
    if (svc->count >= svc->max_entries && svc->lru_tail != NULL) {
        /* An evicted policy is lost for this process and its file; the
         * bound is what keeps an attacker who names many recipient
         * domains from growing the heap. */
        drop(svc, svc->lru_tail);
        svc->stats.evictions++;
        svc->dirty = true;
    }
    if ((e = calloc(1, sizeof(*e))) == NULL)
        return NULL;
    strcpy(e->domain, domain);
    e->hash = hash_of(domain);
    e->hnext = svc->buckets[e->hash & (svc->nbuckets - 1)];
    svc->buckets[e->hash & (svc->nbuckets - 1)] = e;
    lru_front(svc, e);
    svc->count++;
    return e;
}

static void mark_dirty(struct mta_sts_svc *svc)
{
    svc->dirty = true;
    if (svc->has_thread)
        pthread_cond_signal(&svc->cond);
}

/* --- Decisions --- */

bool mta_sts_svc_peek(struct mta_sts_svc *svc, const char *domain, int64_t now,
                      struct mta_sts_answer *a)
{
    bool hit = false;

    pthread_mutex_lock(&svc->lock);
    struct entry *e = find(svc, domain);
    /* A check within the grace period said "use" (or "none"): that holds
     * until the policy expires; a refresh that falls due meanwhile waits
     * for the next check, at most txt_recheck seconds. */
    if (e != NULL && e->checked != 0 && now >= e->checked &&
        now - e->checked < (int64_t)svc->recheck && (e->snap == NULL || now < e->snap->expires)) {
        if (e->snap == NULL)
            answer(a, MTA_STS_RESULT_NONE, MTA_STS_FETCH_OK, "no record (cached)", NULL);
        else
            answer(a, MTA_STS_RESULT_POLICY, MTA_STS_FETCH_OK, "cached", e->snap);
        touch(svc, e);
        hit = true;
    }
    pthread_mutex_unlock(&svc->lock);
    return hit;
}

enum mta_sts_next mta_sts_svc_txt(struct mta_sts_svc *svc, const char *domain,
                                  enum mta_sts_lookup lookup, const char *id, int64_t now,
                                  struct mta_sts_answer *a)
{
    /* mta_sts_cache_decide() wants the whole entry: the snapshot's policy
     * with this entry's failures, expanded once per TXT lookup. */
    static _Thread_local struct mta_sts_cache_entry tmp;
    enum mta_sts_next next = MTA_STS_NEXT_DONE;

    pthread_mutex_lock(&svc->lock);
    struct entry *e = find(svc, domain);
    if (e != NULL) {
        snapshot_expand(e->snap, &tmp);
        tmp.failed_at = e->failed_at;
        memcpy(tmp.failed_id, e->failed_id, sizeof(tmp.failed_id));
    }
    enum mta_sts_action act = mta_sts_cache_decide(e != NULL ? &tmp : NULL, lookup, id, now);

    switch (act) {
    case MTA_STS_NO_POLICY:
        if (lookup == MTA_STS_LOOKUP_FAILED) {
            answer(a, MTA_STS_RESULT_TEMPFAIL, MTA_STS_FETCH_OK, "txt lookup failed", NULL);
        } else if (lookup == MTA_STS_LOOKUP_FOUND) {
            /* A record, nothing valid cached, and this id failed less
             * than five minutes ago (§3.3). */
            answer(a, MTA_STS_RESULT_TEMPFAIL, failed_how(e, MTA_STS_FETCH_ERROR),
                   "fetch failed recently", NULL);
        } else {
            answer(a, MTA_STS_RESULT_NONE, MTA_STS_FETCH_OK, "no record", NULL);
            if ((e = get(svc, domain)) != NULL) {
                if (e->snap != NULL) { /* expired */
                    set_snap(svc, e, NULL);
                    mark_dirty(svc);
                }
                e->checked = now;
            }
        }
        break;
    case MTA_STS_USE:
        answer(a, MTA_STS_RESULT_POLICY, MTA_STS_FETCH_OK, "cached", e->snap);
        touch(svc, e);
        /* An unchanged id (or a refresh held back by the retry spacing,
         * or a record gone while the policy lives, §3.3) extends the
         * grace without a fetch. DNS trouble does not: the next delivery
         * asks again. */
        if (lookup != MTA_STS_LOOKUP_FAILED)
            e->checked = now;
        break;
    case MTA_STS_USE_AND_REFRESH:
        answer(a, MTA_STS_RESULT_POLICY, MTA_STS_FETCH_OK, "cached, refreshing", e->snap);
        touch(svc, e);
        /* Others take the fast path while this fetch runs. */
        e->checked = now;
        if (e->fetch_until > now)
            break; /* another loop refreshes it */
        e->fetch_until = now + MTA_STS_SVC_FETCH_HOLD;
        next = MTA_STS_NEXT_REFRESH;
        break;
    case MTA_STS_FETCH:
        a->policy = NULL;
        /* The entry is made now, to carry the fetch under way. */
        if ((e = get(svc, domain)) != NULL && e->fetch_until > now) {
            next = MTA_STS_NEXT_WAIT;
            break;
        }
        if (e != NULL)
            e->fetch_until = now + MTA_STS_SVC_FETCH_HOLD;
        next = MTA_STS_NEXT_FETCH;
        break;
    }
    pthread_mutex_unlock(&svc->lock);
    return next;
}

bool mta_sts_svc_adopt(struct mta_sts_svc *svc, const char *domain, const char *id,
                       const char *text, size_t len, int64_t now, struct mta_sts_answer *a)
{
    static _Thread_local struct mta_sts_cache_entry e;
    struct mta_sts_snapshot *s;
    const char *why;
    size_t used;
    bool taken = false;

    if (mta_sts_cache_parse(text, len, &e, &used, &why) != MTA_STS_OK || used != len ||
        strcmp(e.domain, domain) != 0 || strcmp(e.id, id) != 0 || !mta_sts_cache_valid(&e, now) ||
        e.fetched > now + 60 || (s = snapshot_new(&e)) == NULL)
        return false;
    pthread_mutex_lock(&svc->lock);
    struct entry *en = get(svc, domain);
    if (en != NULL && (en->snap == NULL || en->snap->fetched < s->fetched)) {
        set_snap(svc, en, s);
        en->fetch_until = 0;
        en->failed_at = 0;
        en->failed_id[0] = '\0';
        en->checked = now;
        mark_dirty(svc);
        answer(a, MTA_STS_RESULT_POLICY, MTA_STS_FETCH_OK, "shared", s);
        taken = true;
    }
    pthread_mutex_unlock(&svc->lock);
    if (!taken)
        mta_sts_snapshot_unref(s);
    return taken;
}

void mta_sts_svc_fetched(struct mta_sts_svc *svc, const char *domain, const char *id,
                         const struct mta_sts_policy *p, enum mta_sts_fetch_error err,
                         const char *why, int64_t now, struct mta_sts_answer *a)
{
    static _Thread_local struct mta_sts_cache_entry tmp;
    struct mta_sts_snapshot *s = NULL;

    if (p != NULL) {
        if (mta_sts_cache_store(&tmp, domain, strlen(domain), id, p, now) != MTA_STS_OK) {
            why = "invalid domain or id";
            err = MTA_STS_FETCH_INVALID;
        } else if ((s = snapshot_new(&tmp)) == NULL) {
            why = "out of memory";
            err = MTA_STS_FETCH_ERROR;
        }
    } else if (err == MTA_STS_FETCH_OK) {
        err = MTA_STS_FETCH_ERROR;
    }
    pthread_mutex_lock(&svc->lock);
    struct entry *e = get(svc, domain);
    if (e != NULL)
        e->fetch_until = 0;
    if (s != NULL && e != NULL) {
        set_snap(svc, e, s);
        e->failed_at = 0;
        e->failed_id[0] = '\0';
        e->checked = now;
        mark_dirty(svc);
        answer(a, MTA_STS_RESULT_POLICY, MTA_STS_FETCH_OK, "fetched", s);
    } else {
        if (e != NULL) {
            e->failed_at = now;
            e->failed_how = err;
            snprintf(e->failed_id, sizeof(e->failed_id), "%s", id);
        }
        if (e != NULL && e->snap != NULL && now < e->snap->expires)
            /* §3.3: a failed refresh keeps the cached policy until max_age. */
            answer(a, MTA_STS_RESULT_POLICY, err, why, e->snap);
        else
            answer(a, MTA_STS_RESULT_TEMPFAIL, err, why, NULL);
        if (s != NULL) /* e == NULL: out of memory */
            mta_sts_snapshot_unref(s);
    }
    pthread_mutex_unlock(&svc->lock);
}

enum mta_sts_next mta_sts_svc_poll(struct mta_sts_svc *svc, const char *domain, int64_t now,
                                   struct mta_sts_answer *a)
{
    enum mta_sts_next next = MTA_STS_NEXT_DONE;

    a->policy = NULL;
    pthread_mutex_lock(&svc->lock);
    struct entry *e = find(svc, domain);
    if (e != NULL && e->fetch_until > now) {
        next = MTA_STS_NEXT_WAIT;
    } else if (e == NULL || e->fetch_until != 0) {
        /* Evicted meanwhile, or the other fetch overran its hold (a
         * clock step, a loop that stalled) or was abandoned: this loop
         * fetches. */
        if ((e = get(svc, domain)) != NULL)
            e->fetch_until = now + MTA_STS_SVC_FETCH_HOLD;
        next = MTA_STS_NEXT_FETCH;
    } else if (e->snap != NULL && now < e->snap->expires) {
        answer(a, MTA_STS_RESULT_POLICY, failed_how(e, MTA_STS_FETCH_OK), "fetched", e->snap);
        touch(svc, e);
    } else {
        answer(a, MTA_STS_RESULT_TEMPFAIL, failed_how(e, MTA_STS_FETCH_ERROR), "fetch failed",
               NULL);
    }
    pthread_mutex_unlock(&svc->lock);
    return next;
}

void mta_sts_svc_abandon(struct mta_sts_svc *svc, const char *domain)
{
    pthread_mutex_lock(&svc->lock);
    struct entry *e = find(svc, domain);
    if (e != NULL && e->fetch_until != 0)
        e->fetch_until = 1; /* over, and without an outcome: a waiter fetches */
    pthread_mutex_unlock(&svc->lock);
}

size_t mta_sts_svc_due(struct mta_sts_svc *svc, int64_t now, char (*out)[MTA_STS_NAME_MAX + 1],
                       size_t max)
{
    struct mta_sts_cache_entry head;
    size_t n = 0;

    pthread_mutex_lock(&svc->lock);
    for (struct entry *e = svc->lru_head; e != NULL && n < max; e = e->next) {
        struct mta_sts_snapshot *s = e->snap;

        if (s == NULL || now >= s->expires ||
            (e->checked != 0 && now >= e->checked && now - e->checked < (int64_t)svc->recheck))
            continue;
        /* mta_sts_cache_decide() looks at times, ids and max_age, never at
         * the mx patterns: the entry's head is enough, and costs no copy
         * of them per entry and sweep. */
        memset(&head, 0, offsetof(struct mta_sts_cache_entry, policy));
        memset(&head.policy, 0, offsetof(struct mta_sts_policy, mx));
        memcpy(head.domain, s->domain, sizeof(head.domain));
        memcpy(head.id, s->id, sizeof(head.id));
        head.fetched = s->fetched;
        head.expires = s->expires;
        head.has_policy = true;
        head.policy.mode = s->mode;
        head.policy.max_age = s->max_age;
        head.failed_at = e->failed_at;
        memcpy(head.failed_id, e->failed_id, sizeof(head.failed_id));
        if (mta_sts_cache_decide(&head, MTA_STS_LOOKUP_FOUND, s->id, now) ==
            MTA_STS_USE_AND_REFRESH)
            memcpy(out[n++], e->domain, sizeof(out[0]));
    }
    pthread_mutex_unlock(&svc->lock);
    return n;
}

void mta_sts_svc_stats(struct mta_sts_svc *svc, struct mta_sts_svc_stats *out)
{
    pthread_mutex_lock(&svc->lock);
    *out = svc->stats;
    out->entries = svc->count;
    out->policies = svc->policies;
    pthread_mutex_unlock(&svc->lock);
}

#include "proxy/service/mta_sts_svc_file.c.h"

/* --- Life cycle --- */

struct mta_sts_svc *mta_sts_svc_new(const struct mta_sts_svc_options *o, char *err, size_t errlen)
{
    struct mta_sts_svc *svc = calloc(1, sizeof(*svc));

    if (svc == NULL)
        goto fail_mem;
    atomic_init(&svc->refs, 1);
    pthread_mutex_init(&svc->lock, NULL);
    pthread_mutex_init(&svc->save_lock, NULL);
    pthread_cond_init(&svc->cond, NULL);
    svc->max_entries = o->max_entries != 0 ? o->max_entries : MTA_STS_SVC_ENTRIES_DEFAULT;
    svc->recheck = o->txt_recheck != 0 ? o->txt_recheck : MTA_STS_SVC_RECHECK_DEFAULT;
    svc->save_delay_ms = o->save_delay_ms != 0 ? o->save_delay_ms : MTA_STS_SVC_SAVE_DELAY_MS;
    svc->clock = o->clock != NULL ? o->clock : system_clock;
    if (o->redis != NULL) {
        svc->has_redis = true;
        memcpy(&svc->redis, o->redis,
               o->redis->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                               : sizeof(struct sockaddr_in));
    }
    svc->clock_arg = o->clock_arg;
    for (svc->nbuckets = 64; svc->nbuckets < svc->max_entries && svc->nbuckets < (1u << 24);)
        svc->nbuckets <<= 1;
    if ((svc->buckets = calloc(svc->nbuckets, sizeof(*svc->buckets))) == NULL)
        goto fail_mem;
    if (o->cache_file != NULL && (svc->file = strdup(o->cache_file)) == NULL)
        goto fail_mem;
    if (o->ca_file != NULL) {
        struct tls_options t;
        memset(&t, 0, sizeof(t));
        t.min_version = 12;
        t.ca_file = (char *)o->ca_file;
        if ((svc->tls = tls_ctx_client_new(&t, err, errlen)) == NULL)
            goto fail;
    }
    if (svc->file != NULL) {
        if (load(svc, err, errlen) != 0)
            goto fail;
        if (pthread_create(&svc->thread, NULL, save_thread, svc) != 0) {
            snprintf(err, errlen, "cannot start the mta_sts cache thread");
            goto fail;
        }
        svc->has_thread = true;
    }
    return svc;

fail_mem:
    snprintf(err, errlen, "out of memory");
fail:
    mta_sts_svc_unref(svc);
    return NULL;
}

struct mta_sts_svc *mta_sts_svc_ref(struct mta_sts_svc *svc)
{
    atomic_fetch_add(&svc->refs, 1);
    return svc;
}

void mta_sts_svc_unref(struct mta_sts_svc *svc)
{
    if (svc == NULL || atomic_fetch_sub(&svc->refs, 1) != 1)
        return;
    if (svc->has_thread) {
        pthread_mutex_lock(&svc->lock);
        svc->stopping = true;
        pthread_cond_signal(&svc->cond);
        pthread_mutex_unlock(&svc->lock);
        pthread_join(svc->thread, NULL);
        if (svc->dirty)
            mta_sts_svc_save(svc);
    }
    while (svc->lru_head != NULL)
        drop(svc, svc->lru_head);
    free(svc->buckets);
    free(svc->file);
    tls_ctx_unref(svc->tls);
    pthread_cond_destroy(&svc->cond);
    pthread_mutex_destroy(&svc->save_lock);
    pthread_mutex_destroy(&svc->lock);
    free(svc);
}
