/*
 * tlsrpt_redis: a fleet's TLS-RPT counts in Redis (mta_sts.redis), and the
 * lock that makes exactly one instance send each domain's report of a day.
 * The second user of <hiredis/...>, synchronously: every call here blocks
 * for at most TLSRPT_REDIS_TIMEOUT_MS per command, so it runs only on a
 * thread of its own (the counter's) or on the reporter's loop, never on a
 * worker's.
 *
 * Keys (D is "YYYY-MM-DD", T a policy type's name):
 *     tlsrpt:c:<D>:<domain>:<T>  hash: "s" successes, "f" failures,
 *                                "d <result> <sending-ip> <mx-host>
 *                                <receiving-ip>" ("-" unknown) a failure
 *                                detail's count, at most
 *                                TLSRPT_DETAILS_MAX of those, the failures
 *                                of further details in "x"
 *     tlsrpt:lock:<D>:<domain>   the instance building the report (NX EX)
 *     tlsrpt:sent:<D>:<domain>   the report went to every destination
 * Every key expires (TLSRPT_REDIS_KEEP_S), so Redis needs no cleaning.
 *
 * The local day files stay this instance's truth: Redis down (or never
 * answering within the timeout) means each instance reports its own
 * counts, under its own sent marker.
 */
#ifndef SMTP_TLS_PROXY_TLSRPT_REDIS_H
#define SMTP_TLS_PROXY_TLSRPT_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/policy/tlsrpt.h"

#define TLSRPT_REDIS_TIMEOUT_MS 1000
#define TLSRPT_REDIS_RETRY_MS 5000
#define TLSRPT_REDIS_KEEP_S (5 * 86400)
#define TLSRPT_REDIS_LOCK_S 3600
/* Results waiting for the counter's thread; more are dropped (counted). */
#define TLSRPT_REDIS_QUEUE_MAX 1024
/* Results the counter's thread sends in one pipeline. */
#define TLSRPT_REDIS_BATCH 128
/* A detail field: "d " and four fields, each at most a name. */
#define TLSRPT_REDIS_FIELD_MAX (2 + 4 * (TLSRPT_NAME_MAX + 1) + 1)

/* --- Pure: the fields of a hash (unit-tested) --- */

/* The detail field of a failed attempt a into out; false for a success. */
bool tlsrpt_redis_detail_field(const struct tlsrpt_attempt *a, char out[TLSRPT_REDIS_FIELD_MAX]);

/* Adds one field of a counts hash (name len bytes, value its text) into
 * s: "s", "f", "x" and detail fields; false for a field or value out of
 * form (skipped). A detail beyond s's rows counts in details_dropped. */
bool tlsrpt_redis_merge_field(struct tlsrpt_stats *s, const char *name, size_t len,
                              const char *value);

/* --- The connection (one thread at a time) --- */

struct tlsrpt_redis;

/* ip:port of mta_sts.redis (an IP address, never a name); instance names
 * the lock holder (copied; NULL: host name, pid and a random number). No
 * connection yet: each call connects when it needs to, at most once per
 * TLSRPT_REDIS_RETRY_MS after a failure. NULL on ENOMEM. */
struct tlsrpt_redis *tlsrpt_redis_new(const char *ip, int port, const char *instance);
void tlsrpt_redis_free(struct tlsrpt_redis *r);
const char *tlsrpt_redis_instance(const struct tlsrpt_redis *r);

/* Counts a[0..n) (a Lua script call each, pipelined: bounded details,
 * EXPIRE). Returns how many were counted: n, or fewer when Redis is down. */
size_t tlsrpt_redis_count(struct tlsrpt_redis *r, const struct tlsrpt_attempt *a, size_t n);

enum tlsrpt_redis_claim {
    TLSRPT_REDIS_DOWN = -1, /* no answer: report the local counts */
    TLSRPT_REDIS_HELD = 0,  /* the lock is ours: build from Redis */
    TLSRPT_REDIS_SENT = 1,  /* another instance sent it */
    TLSRPT_REDIS_LOCKED = 2 /* another instance holds the lock */
};

/* Takes the lock of (day, domain) unless sent; a lock already ours is held. */
enum tlsrpt_redis_claim tlsrpt_redis_claim(struct tlsrpt_redis *r, const char *day_text,
                                           const char *domain);

/* The fleet's counts of (day, domain) into out[] (one per type found, *n of
 * them). 0, or -1 when Redis is down or a reply is out of form. */
int tlsrpt_redis_load(struct tlsrpt_redis *r, int64_t day, const char *domain,
                      struct tlsrpt_stats out[3], size_t *n);

/* Marks (day, domain) sent and lets the lock go. 0 or -1. */
int tlsrpt_redis_mark_sent(struct tlsrpt_redis *r, const char *day_text, const char *domain);

/* --- The counter: results queued by the recording threads --- */

struct tlsrpt_redis_counter;

/* Starts its thread with a connection of its own. NULL on failure. */
struct tlsrpt_redis_counter *tlsrpt_redis_counter_start(const char *ip, int port);

/* Queues a (copied) from any thread; never blocks on the network. false
 * when the queue is full (dropped and counted). */
bool tlsrpt_redis_counter_add(struct tlsrpt_redis_counter *c, const struct tlsrpt_attempt *a);

/* Results dropped (queue full, or Redis down when their turn came). */
uint64_t tlsrpt_redis_counter_dropped(struct tlsrpt_redis_counter *c);

/* Counts what is queued (for at most drain_ms; the rest is dropped),
 * stops and frees c (NULL: 0). Returns the results dropped in all. */
uint64_t tlsrpt_redis_counter_stop(struct tlsrpt_redis_counter *c, unsigned drain_ms);

#endif
