/*
 * The fleet's TLS-RPT counts and report lock in Redis; see tlsrpt_redis.h.
 */
#include "proxy/service/tlsrpt_redis.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "proxy/obs/log.h"
#include "proxy/service/tlsrpt_store.h"

/* KEYS[1] the hash; ARGV: "s"/"f", the detail field or "", the most detail
 * fields the hash may have, the expiry. Atomic: two instances never both
 * take the last detail field. */
static const char COUNT_LUA[] =
    "local k=KEYS[1] redis.call('HINCRBY',k,ARGV[1],1) "
    "if ARGV[2]~='' then "
    "local n=redis.call('HLEN',k)-redis.call('HEXISTS',k,'s')"
    "-redis.call('HEXISTS',k,'f')-redis.call('HEXISTS',k,'x') "
    "if redis.call('HEXISTS',k,ARGV[2])==1 or n<tonumber(ARGV[3]) then "
    "redis.call('HINCRBY',k,ARGV[2],1) else redis.call('HINCRBY',k,'x',1) end end "
    "redis.call('EXPIRE',k,ARGV[4]) return 1";

/* --- fields ----------------------------------------------------------------
 */

static const char *dash(const char *s)
{
    return s[0] != '\0' ? s : "-";
}

bool tlsrpt_redis_detail_field(const struct tlsrpt_attempt *a, char out[TLSRPT_REDIS_FIELD_MAX])
{
    if (a->success)
        return false;
    int n = snprintf(out, TLSRPT_REDIS_FIELD_MAX, "d %s %s %s %s", tlsrpt_result_str(a->result),
                     dash(a->sending_ip), dash(a->mx_host), dash(a->receiving_ip));
    return n > 0 && n < TLSRPT_REDIS_FIELD_MAX;
}

static bool parse_count(const char *v, uint64_t *out)
{
    char *end;

    if (v == NULL || *v < '0' || *v > '9')
        return false;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = x;
    return true;
}

/* One space-separated word of [*p, end) into out (cap bytes), "-" as "". */
static bool word(const char **p, const char *end, char *out, size_t cap, bool last)
{
    const char *s = *p, *e = s;

    while (e < end && *e != ' ')
        e++;
    if (e == s || (size_t)(e - s) >= cap || (last ? e != end : e == end))
        return false;
    for (const char *q = s; q < e; q++)
        if ((unsigned char)*q <= ' ' || (unsigned char)*q >= 0x7f)
            return false;
    if (e - s == 1 && *s == '-') {
        out[0] = '\0';
    } else {
        memcpy(out, s, (size_t)(e - s));
        out[e - s] = '\0';
    }
    *p = last ? e : e + 1;
    return true;
}

bool tlsrpt_redis_merge_field(struct tlsrpt_stats *s, const char *name, size_t len,
                              const char *value)
{
    uint64_t v;

    if (!parse_count(value, &v))
        return false;
    if (len == 1 && (name[0] == 's' || name[0] == 'f' || name[0] == 'x')) {
        if (name[0] == 's')
            s->success += v;
        else if (name[0] == 'f')
            s->failure += v;
        else
            s->details_dropped += v;
        return true;
    }
    if (len < 2 || name[0] != 'd' || name[1] != ' ')
        return false;
    const char *p = name + 2, *end = name + len;
    char result[64];
    struct tlsrpt_detail d = {0};
    if (!word(&p, end, result, sizeof(result), false) ||
        !word(&p, end, d.sending_ip, sizeof(d.sending_ip), false) ||
        !word(&p, end, d.mx_host, sizeof(d.mx_host), false) ||
        !word(&p, end, d.receiving_ip, sizeof(d.receiving_ip), true))
        return false;
    int r = tlsrpt_result_parse(result, strlen(result));
    if (r < 0)
        return false;
    d.result = (enum tlsrpt_result)r;
    d.count = v;
    for (size_t i = 0; i < s->n; i++) {
        struct tlsrpt_detail *o = &s->detail[i];
        if (o->result == d.result && strcmp(o->sending_ip, d.sending_ip) == 0 &&
            strcmp(o->mx_host, d.mx_host) == 0 && strcmp(o->receiving_ip, d.receiving_ip) == 0) {
            o->count += v;
            return true;
        }
    }
    if (s->n < TLSRPT_DETAILS_MAX)
        s->detail[s->n++] = d;
    else
        s->details_dropped += v;
    return true;
}

/* --- the connection --------------------------------------------------------
 */

struct tlsrpt_redis {
    char ip[64];
    int port;
    char instance[128];
    redisContext *c;
    uint64_t retry_at; /* ms, monotonic */
};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct tlsrpt_redis *tlsrpt_redis_new(const char *ip, int port, const char *instance)
{
    struct tlsrpt_redis *r = calloc(1, sizeof(*r));
    char host[64] = "";
    uint32_t rnd = 0;

    if (r == NULL)
        return NULL;
    snprintf(r->ip, sizeof(r->ip), "%s", ip);
    r->port = port;
    if (instance != NULL) {
        snprintf(r->instance, sizeof(r->instance), "%s", instance);
    } else {
        gethostname(host, sizeof(host) - 1);
        if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            rnd = (uint32_t)now_ms();
        snprintf(r->instance, sizeof(r->instance), "%s:%ld:%08x", host, (long)getpid(), rnd);
    }
    return r;
}

void tlsrpt_redis_free(struct tlsrpt_redis *r)
{
    if (r == NULL)
        return;
    if (r->c != NULL)
        redisFree(r->c);
    free(r);
}

const char *tlsrpt_redis_instance(const struct tlsrpt_redis *r)
{
    return r->instance;
}

static void down(struct tlsrpt_redis *r, const char *why)
{
    log_warn("event=tlsrpt_redis_failed redis=%s:%d error=\"%s\" msg=\"TLS-RPT "
             "uses this instance's own counts; Redis is tried again in %d s\"",
             r->ip, r->port, why, TLSRPT_REDIS_RETRY_MS / 1000);
    if (r->c != NULL)
        redisFree(r->c);
    r->c = NULL;
    r->retry_at = now_ms() + TLSRPT_REDIS_RETRY_MS;
}

static bool conn(struct tlsrpt_redis *r)
{
    struct timeval tv = {TLSRPT_REDIS_TIMEOUT_MS / 1000, (TLSRPT_REDIS_TIMEOUT_MS % 1000) * 1000};

    if (r->c != NULL)
        return true;
    if (now_ms() < r->retry_at)
        return false;
    r->c = redisConnectWithTimeout(r->ip, r->port, tv);
    if (r->c == NULL) {
        down(r, "out of memory");
        return false;
    }
    if (r->c->err != 0 || redisSetTimeout(r->c, tv) != REDIS_OK) {
        down(r, r->c->errstr[0] != '\0' ? r->c->errstr : "connect failed");
        return false;
    }
    return true;
}

/* One command; NULL (and the connection dropped) on a transport error or
 * an error reply. The caller frees the reply. */
static redisReply *cmd(struct tlsrpt_redis *r, int argc, const char **argv)
{
    if (!conn(r))
        return NULL;
    redisReply *rep = redisCommandArgv(r->c, argc, argv, NULL);
    if (rep == NULL) {
        down(r, r->c->errstr[0] != '\0' ? r->c->errstr : "no reply");
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        char why[160];
        snprintf(why, sizeof(why), "%.*s", (int)(rep->len < 150 ? rep->len : 150), rep->str);
        freeReplyObject(rep);
        down(r, why);
        return NULL;
    }
    return rep;
}

static void key(char *out, size_t cap, const char *what, const char *day_text, const char *domain)
{
    snprintf(out, cap, "tlsrpt:%s:%s:%s", what, day_text, domain);
}

size_t tlsrpt_redis_count(struct tlsrpt_redis *r, const struct tlsrpt_attempt *a, size_t n)
{
    char day_text[TLSRPT_DAY_TEXT], k[TLSRPT_NAME_MAX + 64], field[TLSRPT_REDIS_FIELD_MAX];
    char max[16], keep[16];
    size_t sent = 0, done = 0, skipped = 0;

    if (n == 0 || !conn(r))
        return 0;
    snprintf(max, sizeof(max), "%d", TLSRPT_DETAILS_MAX);
    snprintf(keep, sizeof(keep), "%d", TLSRPT_REDIS_KEEP_S);
    /* Pipelined: every command queued, then every reply read. */
    for (size_t i = 0; i < n; i++) {
        field[0] = '\0';
        if (!tlsrpt_day_text(tlsrpt_day(a[i].time), day_text)) {
            skipped++; /* out of years 0 to 9999: no day to count it in */
            continue;
        }
        snprintf(k, sizeof(k), "tlsrpt:c:%s:%s:%s", day_text, a[i].domain,
                 tlsrpt_policy_type_str(a[i].type));
        tlsrpt_redis_detail_field(&a[i], field);
        const char *argv[] = {"EVAL", COUNT_LUA, "1", k, a[i].success ? "s" : "f",
                              field,  max,       keep};
        if (redisAppendCommandArgv(r->c, 8, argv, NULL) != REDIS_OK)
            break;
        sent++;
    }
    for (; done < sent; done++) {
        void *rep = NULL;
        if (redisGetReply(r->c, &rep) != REDIS_OK || rep == NULL) {
            down(r, r->c->errstr[0] != '\0' ? r->c->errstr : "no reply");
            return skipped + done;
        }
        bool err = ((redisReply *)rep)->type == REDIS_REPLY_ERROR;
        freeReplyObject(rep);
        if (err) {
            /* The connection is dropped after an error, as by cmd(). */
            down(r, "the counting script failed");
            return skipped + done;
        }
    }
    if (sent + skipped < n)
        down(r, "out of memory");
    return skipped + done;
}

enum tlsrpt_redis_claim tlsrpt_redis_claim(struct tlsrpt_redis *r, const char *day_text,
                                           const char *domain)
{
    char sent[TLSRPT_NAME_MAX + 64], lock[TLSRPT_NAME_MAX + 64], ttl[16];
    redisReply *rep;

    key(sent, sizeof(sent), "sent", day_text, domain);
    key(lock, sizeof(lock), "lock", day_text, domain);
    snprintf(ttl, sizeof(ttl), "%d", TLSRPT_REDIS_LOCK_S);
    const char *ex[] = {"EXISTS", sent};
    if ((rep = cmd(r, 2, ex)) == NULL)
        return TLSRPT_REDIS_DOWN;
    bool is_sent = rep->type == REDIS_REPLY_INTEGER && rep->integer > 0;
    freeReplyObject(rep);
    if (is_sent)
        return TLSRPT_REDIS_SENT;
    const char *set[] = {"SET", lock, r->instance, "NX", "EX", ttl};
    if ((rep = cmd(r, 6, set)) == NULL)
        return TLSRPT_REDIS_DOWN;
    bool got = rep->type == REDIS_REPLY_STATUS;
    freeReplyObject(rep);
    if (got)
        return TLSRPT_REDIS_HELD;
    /* Ours from an earlier try of this process: still held. */
    const char *get[] = {"GET", lock};
    if ((rep = cmd(r, 2, get)) == NULL)
        return TLSRPT_REDIS_DOWN;
    bool ours = rep->type == REDIS_REPLY_STRING && strcmp(rep->str, r->instance) == 0;
    freeReplyObject(rep);
    return ours ? TLSRPT_REDIS_HELD : TLSRPT_REDIS_LOCKED;
}

int tlsrpt_redis_load(struct tlsrpt_redis *r, int64_t day, const char *domain,
                      struct tlsrpt_stats out[3], size_t *n)
{
    static const enum tlsrpt_policy_type types[] = {TLSRPT_POLICY_STS, TLSRPT_POLICY_TLSA,
                                                    TLSRPT_POLICY_NONE};
    char day_text[TLSRPT_DAY_TEXT], k[TLSRPT_NAME_MAX + 64];

    *n = 0;
    if (!tlsrpt_day_text(day, day_text))
        return -1;
    for (size_t t = 0; t < 3; t++) {
        snprintf(k, sizeof(k), "tlsrpt:c:%s:%s:%s", day_text, domain,
                 tlsrpt_policy_type_str(types[t]));
        const char *argv[] = {"HGETALL", k};
        redisReply *rep = cmd(r, 2, argv);
        if (rep == NULL)
            return -1;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements % 2 != 0) {
            freeReplyObject(rep);
            return -1;
        }
        if (rep->elements == 0) {
            freeReplyObject(rep);
            continue;
        }
        struct tlsrpt_stats *s = &out[*n];
        tlsrpt_stats_init(s, domain, types[t], day);
        for (size_t i = 0; i + 1 < rep->elements; i += 2) {
            redisReply *f = rep->element[i], *v = rep->element[i + 1];
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
                !tlsrpt_redis_merge_field(s, f->str, f->len, v->str))
                log_warn("tls_rpt=redis key=%s msg=\"a field out of form, skipped\"", k);
        }
        freeReplyObject(rep);
        (*n)++;
    }
    return 0;
}

int tlsrpt_redis_mark_sent(struct tlsrpt_redis *r, const char *day_text, const char *domain)
{
    char sent[TLSRPT_NAME_MAX + 64], lock[TLSRPT_NAME_MAX + 64], keep[16];
    redisReply *rep;

    key(sent, sizeof(sent), "sent", day_text, domain);
    key(lock, sizeof(lock), "lock", day_text, domain);
    snprintf(keep, sizeof(keep), "%d", TLSRPT_REDIS_KEEP_S);
    const char *set[] = {"SET", sent, r->instance, "EX", keep};
    if ((rep = cmd(r, 5, set)) == NULL)
        return -1;
    freeReplyObject(rep);
    const char *del[] = {"DEL", lock};
    if ((rep = cmd(r, 2, del)) != NULL)
        freeReplyObject(rep);
    return 0;
}

/* --- the counter -----------------------------------------------------------
 */

struct tlsrpt_redis_counter {
    pthread_mutex_t mu;
    pthread_cond_t cv, idle;
    pthread_t th;
    struct tlsrpt_redis *r;
    struct tlsrpt_attempt *q;     /* a ring of TLSRPT_REDIS_QUEUE_MAX */
    struct tlsrpt_attempt *batch; /* TLSRPT_REDIS_BATCH taken out of it at once */
    size_t head, len;
    bool busy, stopping;
    uint64_t dropped, logged; /* in all, and at the last warning */
    uint64_t log_at;          /* no warning before (now_ms()) */
};

static void *counter_run(void *arg)
{
    struct tlsrpt_redis_counter *c = arg;
    struct tlsrpt_attempt *batch = c->batch;

    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (c->len == 0 && !c->stopping) {
            c->busy = false;
            pthread_cond_broadcast(&c->idle);
            pthread_cond_wait(&c->cv, &c->mu);
        }
        if (c->len == 0)
            break;
        size_t n = 0;
        while (n < TLSRPT_REDIS_BATCH && c->len > 0) {
            batch[n++] = c->q[c->head];
            c->head = (c->head + 1) % TLSRPT_REDIS_QUEUE_MAX;
            c->len--;
        }
        c->busy = true;
        pthread_mutex_unlock(&c->mu);
        size_t done = tlsrpt_redis_count(c->r, batch, n);
        pthread_mutex_lock(&c->mu);
        c->dropped += n - done;
        /* From this thread, at most once a minute: never a worker's. */
        if (c->dropped != c->logged && now_ms() >= c->log_at) {
            uint64_t d = c->dropped;
            c->logged = d;
            c->log_at = now_ms() + 60 * 1000;
            pthread_mutex_unlock(&c->mu);
            log_warn("tls_rpt=redis dropped=%llu msg=\"results not counted in Redis (queue "
                     "full or Redis down); the local day files have them\"",
                     (unsigned long long)d);
            pthread_mutex_lock(&c->mu);
        }
    }
    c->busy = false;
    pthread_cond_broadcast(&c->idle);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

struct tlsrpt_redis_counter *tlsrpt_redis_counter_start(const char *ip, int port)
{
    struct tlsrpt_redis_counter *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->q = calloc(TLSRPT_REDIS_QUEUE_MAX, sizeof(*c->q));
    c->batch = calloc(TLSRPT_REDIS_BATCH, sizeof(*c->batch));
    c->r = tlsrpt_redis_new(ip, port, NULL);
    if (c->q == NULL || c->batch == NULL || c->r == NULL)
        goto fail;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    pthread_cond_init(&c->idle, NULL);
    if (pthread_create(&c->th, NULL, counter_run, c) != 0) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        pthread_cond_destroy(&c->idle);
        goto fail;
    }
    return c;
fail:
    tlsrpt_redis_free(c->r);
    free(c->batch);
    free(c->q);
    free(c);
    return NULL;
}

bool tlsrpt_redis_counter_add(struct tlsrpt_redis_counter *c, const struct tlsrpt_attempt *a)
{
    bool ok = false;

    pthread_mutex_lock(&c->mu);
    if (c->len < TLSRPT_REDIS_QUEUE_MAX && !c->stopping) {
        c->q[(c->head + c->len) % TLSRPT_REDIS_QUEUE_MAX] = *a;
        c->len++;
        ok = true;
        pthread_cond_signal(&c->cv);
    } else {
        /* Not logged here: a worker must never wait on a log storm. */
        c->dropped++;
    }
    pthread_mutex_unlock(&c->mu);
    return ok;
}

uint64_t tlsrpt_redis_counter_dropped(struct tlsrpt_redis_counter *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t d = c->dropped;
    pthread_mutex_unlock(&c->mu);
    return d;
}

uint64_t tlsrpt_redis_counter_stop(struct tlsrpt_redis_counter *c, unsigned drain_ms)
{
    struct timespec until;

    if (c == NULL)
        return 0;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += drain_ms / 1000;
    until.tv_nsec += (long)(drain_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&c->mu);
    while ((c->len > 0 || c->busy) && pthread_cond_timedwait(&c->idle, &c->mu, &until) != ETIMEDOUT)
        ;
    /* What is still queued after drain_ms is given up. */
    c->dropped += c->len;
    c->len = 0;
    c->stopping = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->th, NULL);
    if (c->dropped > 0)
        log_warn("tls_rpt=redis dropped=%llu msg=\"results not counted in Redis "
                 "(queue full or Redis down); the local day files have them\"",
                 (unsigned long long)c->dropped);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    pthread_cond_destroy(&c->idle);
    uint64_t dropped = c->dropped;
    tlsrpt_redis_free(c->r);
    free(c->batch);
    free(c->q);
    free(c);
    return dropped;
}
