/*
 * tlsrpt_store: the day's TLS-RPT results (RFC 8460 §4), recorded by the
 * outbound sessions of every worker thread and read back once a day by the
 * reporter (tlsrpt_send.h). The files are the truth; memory holds only the
 * counts of the current UTC day, for bounds and for inspection.
 *
 * Layout under the configured directory (tls_rpt.directory):
 *     <dir>/<YYYY-MM-DD>/<policy-domain>        day-file lines (tlsrpt.h)
 *     <dir>/<YYYY-MM-DD>/.sent/<policy-domain>  what was delivered (tlsrpt_send.h)
 *     <dir>/<YYYY-MM-DD>/.policy/<policy-domain>.<type>  the policy's text (§4.4
 *                                 policy-string, mx-host), replaced whole by rename
 * A policy domain is a host name (letters, digits, '-', '.'), so it can
 * neither leave its folder nor collide with ".sent".
 *
 * Crash safety: one record is one line appended with one write(2) to a file
 * opened O_APPEND, so concurrent writers never interleave within a line and
 * a crash can at worst cut the last line of a file short; a reload (and the
 * reporter) skips a line that does not parse, and tlsrpt_store_open() ends
 * such a cut line with a LF so that the next record starts a line of its
 * own. There is no fsync per record: a power loss (not a process crash,
 * whose writes the kernel keeps) can lose the last seconds of results,
 * which costs a few counts in a statistical report, while an fsync per
 * outbound session would put a disk flush on every worker loop. The day's
 * files are fsynced once, by the reporter, before it reads them
 * (tlsrpt_store_load), that is at the day's rollover and off the loops.
 */
#ifndef SMTP_TLS_PROXY_TLSRPT_STORE_H
#define SMTP_TLS_PROXY_TLSRPT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/policy/tlsrpt.h"

/* Policy domains counted per day; results for more are dropped (and
 * counted, and warned about), which bounds both memory and the number of
 * files a day can create. */
#define TLSRPT_STORE_DOMAINS_MAX 10000
/* "YYYY-MM-DD" and its NUL (years 0000 to 9999). */
#define TLSRPT_DAY_TEXT 11

struct tlsrpt_store;

/* Writes day (days since 1970-01-01) as "YYYY-MM-DD" into out. Returns
 * false for a day outside years 0 to 9999 (out is then ""). */
bool tlsrpt_day_text(int64_t day, char out[TLSRPT_DAY_TEXT]);

/*
 * Opens the store in dir (created if missing, mode 0750; the path is
 * copied) and rebuilds the counts of the day of now (unix seconds) from its
 * files. max_domains 0 means TLSRPT_STORE_DOMAINS_MAX. NULL with a message
 * in err when dir cannot be created or written, or on ENOMEM.
 */
struct tlsrpt_store *tlsrpt_store_open(const char *dir, size_t max_domains, int64_t now, char *err,
                                       size_t errlen);

/* Frees s (NULL accepted). No tlsrpt_record() may be running or follow. */
void tlsrpt_store_close(struct tlsrpt_store *s);

/* The directory s was opened on (owned by s). */
const char *tlsrpt_store_dir(const struct tlsrpt_store *s);

/*
 * Records one attempt (a->time decides the day), from any thread: appends
 * its line to the day's file of a->domain and counts it. A later day than
 * the current one starts that day (the counts of the previous one are
 * dropped from memory, its files stay); an earlier day (a session that
 * began before midnight) is appended to that day's file, uncounted.
 * Returns 0; UV-style negative errno: -EINVAL for an attempt whose line
 * would not parse back, -ENOSPC when the day already has max_domains other
 * domains (dropped and counted), or the error of mkdir/open/write (the
 * file is cut back to where it was before a short write). Blocks for one
 * small write(2); never logs more than a line per thousand drops.
 */
int tlsrpt_record(struct tlsrpt_store *s, const struct tlsrpt_attempt *a);

/* The text of the policy an attempt was made under (§4.4): policy-string
 * (the MTA-STS policy's lines, or the TLSA records in presentation form)
 * and, for STS, the mx patterns. Borrowed. At most TLSRPT_POLICY_LINES of
 * each, TLSRPT_POLICY_LINE_MAX bytes, no control characters. */
#define TLSRPT_POLICY_LINES 32
#define TLSRPT_POLICY_LINE_MAX 512
struct tlsrpt_policy_text {
    const char *const *strings;
    size_t n_strings;
    const char *const *mx;
    size_t n_mx;
};

/*
 * tlsrpt_record(), plus the policy's text when p is not NULL: written to
 * the day's .policy file of (domain, type) when it differs from what the
 * store last wrote there (a new file renamed over the old, so a reader
 * sees one whole version). A text out of bounds is -EINVAL, nothing
 * recorded.
 */
int tlsrpt_record_policy(struct tlsrpt_store *s, const struct tlsrpt_attempt *a,
                         const struct tlsrpt_policy_text *p);

/* Every result recorded from now on is also queued to c (tlsrpt_redis.h),
 * the fleet's counts in Redis (mta_sts.redis); NULL stops that. c must
 * outlive its use: set NULL (or close s) before stopping c. */
struct tlsrpt_redis_counter;
void tlsrpt_store_set_counter(struct tlsrpt_store *s, struct tlsrpt_redis_counter *c);

/* The current day's counts of (domain, type) into *success and *failure;
 * false when nothing is counted for them (both set to 0). */
bool tlsrpt_store_counts(struct tlsrpt_store *s, const char *domain, enum tlsrpt_policy_type type,
                         uint64_t *success, uint64_t *failure);

/* The current day, policy domains counted in it, and records dropped since
 * open (over max_domains, or unwritable). */
int64_t tlsrpt_store_day(struct tlsrpt_store *s);
size_t tlsrpt_store_domains(struct tlsrpt_store *s);
uint64_t tlsrpt_store_dropped(struct tlsrpt_store *s);

/* --- Reading a day back (the reporter; any thread, no store needed) --- */

/*
 * Calls cb(domain, arg) for every policy domain with a file in day's folder
 * of dir, in no particular order, at most TLSRPT_STORE_DOMAINS_MAX of them.
 * Returns how many, 0 when the folder does not exist, or a negative errno.
 * A cb that returns false stops the walk.
 */
int tlsrpt_store_walk(const char *dir, int64_t day, bool (*cb)(const char *domain, void *arg),
                      void *arg);

/*
 * Reads (after fsync) the file of domain for day into out[] (up to
 * TLSRPT_POLICY_TYPES entries, one per policy type seen, *n of them), every
 * line of another domain or day, or out of form, skipped and counted in
 * *skipped. Returns 0 or a negative errno (-ENOENT: no file).
 */
#define TLSRPT_POLICY_TYPES 3
int tlsrpt_store_load(const char *dir, int64_t day, const char *domain,
                      struct tlsrpt_stats out[TLSRPT_POLICY_TYPES], size_t *n, uint64_t *skipped);

/*
 * Removes the folders of days before before_day (names "YYYY-MM-DD" only;
 * within them only files a store or reporter writes: domain files and the
 * .sent and .policy folders). Returns how many day folders went, or a
 * negative errno for dir itself. Anything else found stays, and so does
 * its folder.
 */
int tlsrpt_store_prune(const char *dir, int64_t before_day);

/* A policy's text read back: the lines point into text. */
struct tlsrpt_policy_loaded {
    const char *strings[TLSRPT_POLICY_LINES];
    size_t n_strings;
    const char *mx[TLSRPT_POLICY_LINES];
    size_t n_mx;
    char text[TLSRPT_POLICY_LINES * 2 * (TLSRPT_POLICY_LINE_MAX + 4)];
};

/* Reads the .policy file of (domain, type) of day into *out: 0, -ENOENT
 * when there is none, another negative errno, or -EINVAL for a file out of
 * form (then *out is empty). */
int tlsrpt_store_load_policy(const char *dir, int64_t day, const char *domain,
                             enum tlsrpt_policy_type type, struct tlsrpt_policy_loaded *out);

#endif
