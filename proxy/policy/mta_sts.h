/*
 * mta_sts: SMTP MTA Strict Transport Security (RFC 8461), the pure part:
 * the `_mta-sts.<domain>` TXT record (§3.1), the policy file (§3.2), MX
 * host matching (§4.1), and the policy cache's decisions and its
 * line-based serialisation (§3.3, §5.1; mta_sts_cache.c). No I/O, no
 * allocation: every result is a fixed-size struct the caller owns, and every
 * parser reads only the bytes it is given (no NUL terminator needed).
 *
 * Choices where the RFC leaves room (each also noted where it is made):
 *   - A non-repeated field that appears again (version, mode, max_age in the
 *     policy; id in the TXT record) keeps its first instance (§3.2: "If any
 *     non-repeated field--i.e., all fields excepting mx--is duplicated, all
 *     entries except for the first SHALL be ignored"); later ones are not
 *     checked.
 *   - max_age above 31557600 (§3.2: "maximum value of 31557600") is clamped
 *     to it and flagged: the ABNF allows ten digits, and refusing the whole
 *     policy would only downgrade the domain to no policy at all. More than
 *     ten digits is a syntax error.
 *   - mx values are ASCII host names: §3.2 asks for A-labels ("the mx value
 *     MUST specify the Punycode-encoded A-label"), so a U-label is invalid.
 *   - An mx line whose value is not ["*."] Domain makes the policy invalid
 *     (ignoring it could enforce a list that lacks the real MX); so do more
 *     than MTA_STS_MX_MAX distinct patterns and lines over MTA_STS_LINE_MAX.
 *   - Empty lines are skipped (real policies end with one more often than
 *     not); unknown keys are ignored (§3.2) whatever their value.
 */
#ifndef SMTP_TLS_PROXY_MTA_STS_H
#define SMTP_TLS_PROXY_MTA_STS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MTA_STS_ID_MAX 32             /* §3.1: id = 1*32(ALPHA / DIGIT) */
#define MTA_STS_NAME_MAX 253          /* a domain name without its trailing dot */
#define MTA_STS_MX_MAX 64             /* distinct mx patterns kept (our bound) */
#define MTA_STS_LINE_MAX 1024         /* one policy line, terminator excluded */
#define MTA_STS_POLICY_MAX 65536      /* the caller's cap on the HTTPS body */
#define MTA_STS_TXT_MAX 4096          /* one TXT record's concatenated text */
#define MTA_STS_MAX_AGE_MAX 31557600u /* §3.2 */

enum mta_sts_status {
    MTA_STS_OK = 0,
    MTA_STS_ERR = -1,       /* invalid input; *why says what */
    MTA_STS_ERR_SPACE = -2, /* the output buffer is too small */
};

/* --- The TXT record (§3.1) --- */

struct mta_sts_txt {
    char id[MTA_STS_ID_MAX + 1]; /* NUL-terminated */
};

/*
 * Concatenates the character-strings of one TXT RDATA (RFC 1035 §3.3.14:
 * one or more <length octet><bytes>) into out (cap bytes, NUL-terminated),
 * as RFC 8461 §3.1 and RFC 8460 §3 ask ("treated as if those strings are
 * concatenated together without adding spaces"). MTA_STS_OK with *outlen;
 * MTA_STS_ERR for empty RDATA or a length octet past the end;
 * MTA_STS_ERR_SPACE when the text does not fit (out then holds the first
 * cap - 1 octets, *outlen says so). Also used by tlsrpt.c.
 */
int mta_sts_txt_concat(const uint8_t *rdata, size_t len, char *out, size_t cap, size_t *outlen);

/*
 * Of count TXT RDATAs, the one whose text begins with version tag (e.g.
 * "v=STSv1", then ';' or a space or tab: RFC 8461 §3.1 with erratum 6285,
 * RFC 8460 §3), copied into out (MTA_STS_TXT_MAX bytes) with its length in
 * *outlen. Records of broken wire form are discarded; one longer than
 * MTA_STS_TXT_MAX still counts (so that it and another make "several")
 * and sets *outlen to SIZE_MAX. Returns how many records carry the tag:
 * the caller takes out only when that is one. Also used by tlsrpt.c.
 */
size_t mta_sts_txt_pick(const uint8_t *const *rdata, const size_t *len, size_t count,
                        const char *tag, char *out, size_t *outlen);

/*
 * Parses one record's text (len bytes, borrowed) strictly by the §3.1 ABNF:
 * "v=STSv1" first, then ";"-separated fields, one of them id=1*32 alnum;
 * extension fields are checked for syntax and ignored. MTA_STS_OK and *out,
 * or MTA_STS_ERR with a static reason in *why (why may be NULL) and *out
 * empty (here and in mta_sts_txt_select).
 */
int mta_sts_txt_parse(const char *text, size_t len, struct mta_sts_txt *out, const char **why);

/*
 * Policy discovery from the whole TXT RRset of _mta-sts.<domain>: count
 * RDATAs (rdata[i], len[i] octets, borrowed). §3.1: records that do not
 * begin with "v=STSv1" are discarded; if not exactly one remains, or it is
 * syntactically invalid, the domain has no available policy. MTA_STS_OK and
 * *out for exactly one valid record, else MTA_STS_ERR and *why.
 */
int mta_sts_txt_select(const uint8_t *const *rdata, const size_t *len, size_t count,
                       struct mta_sts_txt *out, const char **why);

/* --- The policy file (§3.2) --- */

enum mta_sts_mode {
    MTA_STS_MODE_NONE = 0,
    MTA_STS_MODE_TESTING,
    MTA_STS_MODE_ENFORCE,
};

struct mta_sts_policy {
    enum mta_sts_mode mode;
    uint32_t max_age;     /* seconds, <= MTA_STS_MAX_AGE_MAX */
    bool max_age_clamped; /* the policy said more; worth a warning */
    size_t n_mx;
    /* Lower case, no trailing dot, distinct; "*.example.net" wildcards. */
    char mx[MTA_STS_MX_MAX][MTA_STS_NAME_MAX + 1];
};

/*
 * Parses a policy body of len bytes (at most MTA_STS_POLICY_MAX; borrowed,
 * not NUL-terminated) with LF or CRLF line ends into *p. version: STSv1,
 * mode and max_age are required, and at least one mx unless the mode is
 * none. MTA_STS_OK, or MTA_STS_ERR with a static reason in *why.
 */
int mta_sts_policy_parse(const char *text, size_t len, struct mta_sts_policy *p, const char **why);

/* "none" | "testing" | "enforce" (static). */
const char *mta_sts_mode_str(enum mta_sts_mode m);

/* The mode named by len bytes of s, or -1. */
int mta_sts_mode_parse(const char *s, size_t len);

/*
 * Whether one policy pattern (as mta_sts_policy_parse stores it) is
 * syntactically valid: ["*."] Domain, lower or upper case, at most
 * MTA_STS_NAME_MAX octets.
 */
bool mta_sts_pattern_valid(const char *s, size_t len);

/*
 * §4.1: whether host (len bytes, an MX host name or a name from the
 * certificate) matches pattern: equal ignoring ASCII case and one trailing
 * dot of host, or, for "*.rest", host is exactly one more label followed by
 * ".rest" ("*.example.com" matches "mx.example.com", not "example.com" nor
 * "a.b.example.com"). A host that is not a valid name never matches.
 */
bool mta_sts_mx_match(const char *pattern, const char *host, size_t len);

/* Whether host matches any mx pattern of p (§4.1 "the MX host is listed"). */
bool mta_sts_policy_allows(const struct mta_sts_policy *p, const char *host, size_t len);

/* --- The cache (§3.3, §5.1; mta_sts_cache.c) --- */

#define MTA_STS_RETRY_SECS 300     /* §3.3: a failed fetch, per id: 5 minutes */
#define MTA_STS_REFRESH_SECS 86400 /* §3.3: proactive refresh "once per day" */
#define MTA_STS_CACHE_TEXT_MAX (512 + MTA_STS_MX_MAX * (MTA_STS_NAME_MAX + 4))

/* One domain's cache entry. Everything down to policy is what the cache
 * file keeps; the failure bookkeeping lives in memory only. */
struct mta_sts_cache_entry {
    char domain[MTA_STS_NAME_MAX + 1]; /* lower case, no trailing dot */
    char id[MTA_STS_ID_MAX + 1];       /* the TXT id the policy was fetched under */
    int64_t fetched;                   /* unix seconds */
    int64_t expires;                   /* fetched + max_age */
    bool has_policy;
    struct mta_sts_policy policy;
    /* The last failed fetch: when, under which TXT id (0 / "" = none). */
    int64_t failed_at;
    char failed_id[MTA_STS_ID_MAX + 1];
};

/* What the TXT lookup of this delivery said. */
enum mta_sts_lookup {
    MTA_STS_LOOKUP_FOUND,  /* exactly one valid record: its id is given */
    MTA_STS_LOOKUP_NONE,   /* no (usable) record: NXDOMAIN, none, several, invalid */
    MTA_STS_LOOKUP_FAILED, /* temporary: SERVFAIL, timeout */
};

/* What to do for one delivery. */
enum mta_sts_action {
    MTA_STS_NO_POLICY,       /* apply no MTA-STS policy, fetch nothing */
    MTA_STS_USE,             /* apply the cached policy */
    MTA_STS_USE_AND_REFRESH, /* apply the cached policy and fetch anew (id changed, or due) */
    MTA_STS_FETCH,           /* nothing cached that applies: fetch; no policy until it lands */
};

/* "no-policy" | "use" | "use-and-refresh" | "fetch" (static, for logs). */
const char *mta_sts_action_str(enum mta_sts_action a);

/* Whether e (may be NULL) holds a policy that has not expired at now. */
bool mta_sts_cache_valid(const struct mta_sts_cache_entry *e, int64_t now);

/*
 * The decision for one delivery, given the domain's entry (NULL when there
 * is none), the TXT lookup's outcome and its id (used only for FOUND), and
 * the current time. Pure; e is not changed. The rules, with their sources:
 *   - a valid cached policy applies whatever DNS says (§3.3: "if no live
 *     policy can be discovered ... but a valid (non-expired) policy exists
 *     in the sender's cache, the sender MUST apply that cached policy");
 *   - a TXT id that differs from the cached one asks for a fetch (§3.1: the
 *     id changes with the policy), and so does a policy fetched more than
 *     a day ago, or more than half its max_age (§3.3: refresh proactively,
 *     "once per day");
 *   - no fetch of the same id within MTA_STS_RETRY_SECS of a failed one
 *     (§3.3: "limit further attempts to a period of five minutes or longer
 *     per version ID");
 *   - without a valid cached policy: FOUND fetches, NONE and FAILED apply
 *     none (§3.3: continue "as though the domain has not implemented
 *     MTA-STS").
 */
enum mta_sts_action mta_sts_cache_decide(const struct mta_sts_cache_entry *e,
                                         enum mta_sts_lookup lookup, const char *txt_id,
                                         int64_t now);

/* A fetch under txt_id succeeded at now with policy p: e becomes that
 * policy, fetched now, expiring after max_age (§3.3), failure forgotten.
 * domain (len bytes) is stored lower case without a trailing dot. Returns
 * MTA_STS_ERR (e untouched) for an invalid domain or id. */
int mta_sts_cache_store(struct mta_sts_cache_entry *e, const char *domain, size_t len,
                        const char *txt_id, const struct mta_sts_policy *p, int64_t now);

/* A fetch under txt_id failed at now: noted for the retry spacing; a cached
 * policy is kept until it expires (§3.3). */
void mta_sts_cache_fetch_failed(struct mta_sts_cache_entry *e, const char *txt_id, int64_t now);

/*
 * Serialises e (which has a policy) as lines, stable and versioned:
 *     mta-sts-cache 1
 *     domain example.com
 *     id 20160831085700Z
 *     fetched 1700000000
 *     expires 1700604800
 *     mode enforce
 *     max_age 604800
 *     mx mail.example.com          (once per pattern, in policy order)
 *     end
 * each ended by LF, into buf (cap bytes; MTA_STS_CACHE_TEXT_MAX always
 * suffices). Returns the length (no NUL counted; one is written when it
 * fits), MTA_STS_ERR_SPACE, or MTA_STS_ERR when e has no policy.
 */
int mta_sts_cache_format(const struct mta_sts_cache_entry *e, char *buf, size_t cap);

/*
 * Parses the first entry of text (len bytes, borrowed) in exactly the form
 * mta_sts_cache_format writes, so a cache file of concatenated entries
 * reads back entry by entry: *consumed is the length through "end\n". Every
 * field is checked as its parser would (domain, id, mode, mx patterns,
 * max_age <= 31557600, fetched <= expires <= fetched + max_age); an entry
 * cut short (a crash mid-write) is MTA_STS_ERR. The failure bookkeeping
 * starts empty.
 */
int mta_sts_cache_parse(const char *text, size_t len, struct mta_sts_cache_entry *e,
                        size_t *consumed, const char **why);

#endif
