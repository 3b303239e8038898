/*
 * mta_sts_redis: the Redis connection of one loop, for the MTA-STS policy
 * cache shared by a fleet of proxies (mta_sts.redis; hiredis, asynchronous
 * on the loop). Values are cache entries in the cache file's form
 * (mta_sts_cache_format), keys "mta-sts:<domain>", each with the policy's
 * remaining max_age as its expiry, so Redis forgets what has expired.
 *
 * Redis is an optimisation, never a dependency: a lookup that Redis cannot
 * answer within MTA_STS_REDIS_TIMEOUT_MS (down, slow, refusing) is a miss,
 * the connection is dropped and not tried again for MTA_STS_REDIS_RETRY_MS,
 * and the policy is fetched over HTTPS as without Redis. Whatever Redis
 * holds is parsed as strictly as the cache file: it is trusted as much as
 * the file (a fleet's Redis must be as well guarded), and a value is used
 * only for the TXT id of the lookup.
 */
#ifndef SMTP_TLS_PROXY_MTA_STS_REDIS_H
#define SMTP_TLS_PROXY_MTA_STS_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#define MTA_STS_REDIS_TIMEOUT_MS 1000
#define MTA_STS_REDIS_RETRY_MS 5000
#define MTA_STS_REDIS_VALUE_MAX 32768 /* longer values are misses */

struct mta_sts_redis;
struct mta_sts_redis_req;

/* value: the string stored at the key (len bytes, valid only during the
 * call), or NULL for none, an error or a timeout. */
typedef void (*mta_sts_redis_cb)(void *arg, const char *value, size_t len);

/* A connection to addr (an IP address with its port; copied) on loop,
 * made at the first command. NULL when out of memory. */
struct mta_sts_redis *mta_sts_redis_new(uv_loop_t *loop, const struct sockaddr *addr);

/* Whether r talks to addr. */
bool mta_sts_redis_is(const struct mta_sts_redis *r, const struct sockaddr *addr);

/* GET key; cb follows exactly once on the loop, never from inside this
 * call, unless mta_sts_redis_cancel() comes first. NULL (and no callback)
 * while the connection is held back after a failure, or out of memory. */
struct mta_sts_redis_req *mta_sts_redis_get(struct mta_sts_redis *r, const char *key,
                                            mta_sts_redis_cb cb, void *arg);

/* Its callback will not come; q is freed by r. */
void mta_sts_redis_cancel(struct mta_sts_redis_req *q);

/* SET key value EX ttl, not waiting for the reply (best effort). */
void mta_sts_redis_set(struct mta_sts_redis *r, const char *key, const char *value, size_t len,
                       unsigned ttl);

/* Closes the connection: no callback comes any more (cancel first what
 * you still track). What was sent is written and answered first, for at
 * most MTA_STS_REDIS_TIMEOUT_MS; r's handles close on the loop after.
 * Accepts NULL. */
void mta_sts_redis_free(struct mta_sts_redis *r);

#endif
