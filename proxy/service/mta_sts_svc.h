/*
 * mta_sts_svc: the MTA-STS policy service (RFC 8461 §3.3, §5.1). One cache
 * of recipient domains' policies, shared by every worker loop of the
 * process, bounded in entries (least recently used evicted first),
 * persisted crash-safe to a file (mta_sts.cache) so that a restart does not
 * reopen the first-contact window.
 *
 * Two halves:
 *   - this file's synchronous core (mta_sts_svc.c): the table under one
 *     mutex, the decisions of proxy/policy's mta_sts_cache_decide() applied
 *     to it, and the save thread. Every call takes the time as an argument
 *     (or the service's clock), so the logic is tested with a fake clock.
 *   - the asynchronous lookup a session uses on its loop (mta_sts_get.c):
 *     the `_mta-sts.<domain>` TXT lookup through the loop's resolver, then,
 *     when the cache says so, GET https://mta-sts.<domain>/.well-known/
 *     mta-sts.txt through proxy/net/https_get, certificate verified against
 *     the service's CA file. Lookups of one domain on one loop share one
 *     TXT query and one fetch.
 *
 * A warm cache costs no system call: an entry whose TXT record was checked
 * less than txt_recheck seconds ago answers from memory, and mta_sts_get()
 * returns that answer directly (no callback, no loop round trip). After
 * that grace period the TXT id is checked again: an unchanged id extends
 * the grace without a fetch, a new id fetches the policy in the background
 * while the cached one keeps applying (§3.3), and so does a policy due for
 * its proactive refresh (§3.3: "once per day", or half its max_age). A
 * failed fetch keeps the cached policy until it expires and spaces retries
 * of the same id five minutes apart. Domains without a policy are cached
 * negatively for the same grace period, so they cost no lookup per session
 * either.
 */
#ifndef SMTP_TLS_PROXY_MTA_STS_SVC_H
#define SMTP_TLS_PROXY_MTA_STS_SVC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proxy/policy/mta_sts.h"

#define MTA_STS_SVC_ENTRIES_DEFAULT 10000
#define MTA_STS_SVC_RECHECK_DEFAULT 300  /* seconds between TXT checks of a domain */
#define MTA_STS_SVC_SAVE_DELAY_MS 3000   /* the cache file is written at most this often */
#define MTA_STS_SVC_FILE_MAX (64u << 20) /* a longer cache file is read up to here */

struct tls_ctx;

struct mta_sts_svc_options {
    const char *cache_file; /* NULL: memory only (copied) */
    const char *ca_file;    /* trust for the policy fetch (copied); NULL: none loads */
    size_t max_entries;     /* 0: MTA_STS_SVC_ENTRIES_DEFAULT */
    unsigned txt_recheck;   /* seconds; 0: MTA_STS_SVC_RECHECK_DEFAULT */
    unsigned save_delay_ms; /* 0: MTA_STS_SVC_SAVE_DELAY_MS */
    /* A Redis shared by a fleet (mta_sts_redis.h): an IP address with its
     * port (copied), or NULL. */
    const struct sockaddr *redis;
    /* The clock (unix seconds); NULL: time(). Tests pass a fake one. */
    int64_t (*clock)(void *arg);
    void *clock_arg;
};

/*
 * One domain's policy as fetched: immutable once published, shared by the
 * cache and by every answer that holds it (reference-counted; release with
 * mta_sts_snapshot_unref from any thread). Sized to its mx patterns (a
 * struct mta_sts_policy reserves room for 64 of them, 16 KiB, which for
 * 10,000 cached domains would be 160 MiB).
 */
struct mta_sts_snapshot {
    atomic_int refs;
    char domain[MTA_STS_NAME_MAX + 1]; /* lower case, no trailing dot */
    char id[MTA_STS_ID_MAX + 1];       /* the TXT id it was fetched under */
    int64_t fetched, expires;          /* unix seconds: expires = fetched + max_age */
    enum mta_sts_mode mode;
    uint32_t max_age;
    size_t n_mx;
    char mx[][MTA_STS_NAME_MAX + 1]; /* as mta_sts_policy_parse stores them */
};

void mta_sts_snapshot_unref(struct mta_sts_snapshot *s); /* accepts NULL */

/* §4.1: whether host (len bytes, an MX host name) matches one of s's mx
 * patterns (mta_sts_mx_match). */
bool mta_sts_snapshot_allows(const struct mta_sts_snapshot *s, const char *host, size_t len);

enum mta_sts_result {
    MTA_STS_RESULT_NONE,     /* the domain has no policy: deliver as without MTA-STS
                              */
    MTA_STS_RESULT_POLICY,   /* apply answer.policy */
    MTA_STS_RESULT_TEMPFAIL, /* no policy is known because discovery failed (TXT
                              * SERVFAIL, fetch failed): §3.3 says deliver as
                              * without MTA-STS; TLS-RPT counts a failed fetch
                              * as answer.fetch_error says */
};

/* "none" | "policy" | "tempfail" (static). */
const char *mta_sts_result_str(enum mta_sts_result r);

/* How a policy fetch failed, as TLS-RPT tells them apart (RFC 8460
 * §4.3.2.1). */
enum mta_sts_fetch_error {
    MTA_STS_FETCH_OK = 0, /* no fetch failed */
    MTA_STS_FETCH_ERROR,  /* not fetched: no address, connect, TLS, HTTP status,
                           * size, timeout (sts-policy-fetch-error) */
    MTA_STS_FETCH_INVALID, /* fetched, but not a valid policy (sts-policy-invalid) */
    MTA_STS_FETCH_WEBPKI,  /* the policy host's certificate did not validate
                            * (sts-webpki-invalid) */
};

struct mta_sts_answer {
    enum mta_sts_result result;
    /* How a fetch of this lookup failed, also with RESULT_POLICY when the
     * cached policy still applies; MTA_STS_FETCH_OK when none did. */
    enum mta_sts_fetch_error fetch_error;
    const char *why; /* static: "cached", "fetched", "no record", "fetch failed: ..." */
    /* RESULT_POLICY: a reference the answer's receiver owns (release it with
     * mta_sts_answer_release, or keep it). NULL otherwise. */
    struct mta_sts_snapshot *policy;
};

void mta_sts_answer_release(struct mta_sts_answer *a); /* policy unref'd, set NULL */

struct mta_sts_svc;

/*
 * A service with o (copied). Loads o->cache_file when it exists: an entry
 * that does not parse is skipped with a warning "FILE:LINE: ...", expired
 * ones silently; the rest is kept. Builds the TLS client context of the
 * fetches from o->ca_file and starts the save thread when there is a file.
 * NULL and a message in err when the CA file is unusable, the file cannot
 * be read (other than absent), or memory runs out.
 */
struct mta_sts_svc *mta_sts_svc_new(const struct mta_sts_svc_options *o, char *err, size_t errlen);

/* Reference-counted: mta_sts_svc_new gives the caller one, every lookup in
 * flight on a loop holds one (a background refresh outlives the session
 * that started it). The last unref, from any thread, writes the file one
 * last time if anything changed, stops the save thread and frees
 * everything. unref accepts NULL. */
struct mta_sts_svc *mta_sts_svc_ref(struct mta_sts_svc *svc);
void mta_sts_svc_unref(struct mta_sts_svc *svc);

/* The service's clock. */
int64_t mta_sts_svc_now(const struct mta_sts_svc *svc);

/* The Redis of the fleet, or NULL (borrowed). */
const struct sockaddr *mta_sts_svc_redis(const struct mta_sts_svc *svc);

/* s in the cache file's form (mta_sts_cache_format): its length, or a
 * negative code. */
int mta_sts_snapshot_format(const struct mta_sts_snapshot *s, char *buf, size_t cap);

/*
 * A policy another proxy of the fleet fetched (text, len bytes: one entry
 * in the cache file's form, from Redis). Taken, and true with *a, only if
 * it parses, is for domain and for TXT id, has not expired at now and is
 * newer than the cached one; the fetch this replaces ends as with
 * mta_sts_svc_fetched(). false changes nothing.
 */
bool mta_sts_svc_adopt(struct mta_sts_svc *svc, const char *domain, const char *id,
                       const char *text, size_t len, int64_t now, struct mta_sts_answer *a);

/* The client context of policy fetches (borrowed; the service keeps it). */
struct tls_ctx *mta_sts_svc_tls(const struct mta_sts_svc *svc);

/*
 * Normalises a domain (len bytes) into out (MTA_STS_NAME_MAX + 1): lower
 * case, one trailing dot dropped. false for anything that is not a host
 * name (an address literal, "*.", an empty label, too long).
 */
bool mta_sts_svc_domain(const char *domain, size_t len, char *out);

/* --- The synchronous core: what mta_sts_get.c calls, and tests --- */

/*
 * The fast path: true and *a when the domain (normalised) was TXT-checked
 * less than txt_recheck seconds before now and needs no fetch: a cached
 * policy or a cached "no policy". Touches the entry for the LRU order.
 * No system call.
 */
bool mta_sts_svc_peek(struct mta_sts_svc *svc, const char *domain, int64_t now,
                      struct mta_sts_answer *a);

/* What mta_sts_svc_txt() leaves to its caller. */
enum mta_sts_next {
    MTA_STS_NEXT_DONE,    /* *a is the answer; nothing to fetch */
    MTA_STS_NEXT_REFRESH, /* *a is the answer (the cached policy); fetch in the
                             background */
    MTA_STS_NEXT_FETCH,   /* no answer yet: fetch, then mta_sts_svc_fetched() */
    MTA_STS_NEXT_WAIT,    /* no answer yet: another loop is fetching this domain; ask
                             mta_sts_svc_poll() again later */
};

/* How long a fetch of one loop makes the others wait for it before they
 * fetch themselves (the fetch's own bound is HTTPS_GET_TOTAL_MS). */
#define MTA_STS_SVC_FETCH_HOLD 90

/*
 * The TXT lookup of domain ended at now with lookup (and id, for
 * MTA_STS_LOOKUP_FOUND). Applies mta_sts_cache_decide(), notes the check
 * (an entry is created for a domain seen for the first time, evicting the
 * least recently used one when full) and says what follows. Fetches are
 * shared across loops: while one loop fetches a domain, another gets WAIT
 * where it would fetch, and DONE with the cached policy where it would
 * refresh.
 */
enum mta_sts_next mta_sts_svc_txt(struct mta_sts_svc *svc, const char *domain,
                                  enum mta_sts_lookup lookup, const char *id, int64_t now,
                                  struct mta_sts_answer *a);

/*
 * The fetch of domain under TXT id ended at now: p is the parsed policy, or
 * NULL when the fetch or the parse failed (err says how, why, static, says
 * what). Stores or notes the failure (mta_sts_cache_store / _fetch_failed),
 * schedules a save, and sets *a: the new policy, the cached one with
 * fetch_error, or TEMPFAIL.
 */
void mta_sts_svc_fetched(struct mta_sts_svc *svc, const char *domain, const char *id,
                         const struct mta_sts_policy *p, enum mta_sts_fetch_error err,
                         const char *why, int64_t now, struct mta_sts_answer *a);

/*
 * The proactive refresh (§3.3: "MTAs SHOULD proactively refresh cached
 * policies before they expire"), so that a domain that gets mail less often
 * than its max_age keeps its policy: up to max domains (normalised, into
 * out) whose policy is valid and due for its refresh, not TXT-checked
 * within the grace period and not held back by the retry spacing, most
 * recently used first. The caller looks each one up as a delivery would
 * (mta_sts_refresh in mta_sts_get.h). Returns how many.
 */
size_t mta_sts_svc_due(struct mta_sts_svc *svc, int64_t now, char (*out)[MTA_STS_NAME_MAX + 1],
                       size_t max);

/*
 * For a lookup that got MTA_STS_NEXT_WAIT: DONE and *a once the other
 * loop's fetch has ended (its policy, or TEMPFAIL with fetch_error), WAIT
 * while it runs, FETCH when it has taken longer than MTA_STS_SVC_FETCH_HOLD
 * (or its entry was evicted): the caller fetches itself.
 */
enum mta_sts_next mta_sts_svc_poll(struct mta_sts_svc *svc, const char *domain, int64_t now,
                                   struct mta_sts_answer *a);

/* A fetch that mta_sts_svc_txt() or _poll() asked for will not end (its
 * loop is closing): the others stop waiting for it. */
void mta_sts_svc_abandon(struct mta_sts_svc *svc, const char *domain);

/* Counters, for tests and a metrics export. */
struct mta_sts_svc_stats {
    size_t entries;        /* domains in the table (with or without policy) */
    size_t policies;       /* of which with a policy */
    uint64_t evictions;    /* entries dropped to make room */
    uint64_t saves;        /* cache file writes that succeeded */
    uint64_t save_errors;  /* and that failed */
    uint64_t loaded;       /* entries read from the file at start */
    uint64_t load_skipped; /* entries of the file refused by the parser */
};

void mta_sts_svc_stats(struct mta_sts_svc *svc, struct mta_sts_svc_stats *out);

/* Writes the cache file now (tests; the save thread does it otherwise).
 * 0, or a negative errno (-ENOENT without a file). */
int mta_sts_svc_save(struct mta_sts_svc *svc);

#endif
