/*
 * The MTA-STS policy cache's decisions, bookkeeping and file form; see
 * mta_sts.h. Pure: the clock is an argument.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "proxy/policy/mta_sts.h"

static void set_why(const char **why, const char *s)
{
    if (why != NULL)
        *why = s;
}

const char *mta_sts_action_str(enum mta_sts_action a)
{
    switch (a) {
    case MTA_STS_NO_POLICY:
        return "no-policy";
    case MTA_STS_USE:
        return "use";
    case MTA_STS_USE_AND_REFRESH:
        return "use-and-refresh";
    case MTA_STS_FETCH:
        return "fetch";
    }
    return "unknown";
}

bool mta_sts_cache_valid(const struct mta_sts_cache_entry *e, int64_t now)
{
    /* §5.1 step 1: "a cached policy whose time-since-fetch has not
     * exceeded its max_age". */
    return e != NULL && e->has_policy && now < e->expires;
}

/* §3.3: after a failed fetch, no new attempt for the same id for five
 * minutes. A clock that went backwards lifts the spacing. */
static bool retry_blocked(const struct mta_sts_cache_entry *e, const char *id, int64_t now)
{
    return e != NULL && e->failed_at != 0 && strcmp(e->failed_id, id) == 0 && now >= e->failed_at &&
           now - e->failed_at < MTA_STS_RETRY_SECS;
}

/* §3.3: "MTAs SHOULD proactively refresh cached policies before they
 * expire; a suggested refresh frequency is once per day." A policy shorter
 * than two days is refreshed at half its life, so a refresh can fail once
 * and still be retried before the policy lapses. */
static bool refresh_due(const struct mta_sts_cache_entry *e, int64_t now)
{
    int64_t every = e->policy.max_age / 2;

    if (every > MTA_STS_REFRESH_SECS)
        every = MTA_STS_REFRESH_SECS;
    return now - e->fetched >= every;
}

enum mta_sts_action mta_sts_cache_decide(const struct mta_sts_cache_entry *e,
                                         enum mta_sts_lookup lookup, const char *txt_id,
                                         int64_t now)
{
    bool valid = mta_sts_cache_valid(e, now);

    if (lookup != MTA_STS_LOOKUP_FOUND || txt_id == NULL || txt_id[0] == '\0')
        /* No live record (absent, or DNS failing): a valid cached policy
         * still applies (§3.3), else none does. Refreshing needs the id a
         * policy is fetched under, so it waits for the record. */
        return valid ? MTA_STS_USE : MTA_STS_NO_POLICY;
    if (!valid)
        return retry_blocked(e, txt_id, now) ? MTA_STS_NO_POLICY : MTA_STS_FETCH;
    if (strcmp(e->id, txt_id) != 0 || refresh_due(e, now))
        return retry_blocked(e, txt_id, now) ? MTA_STS_USE : MTA_STS_USE_AND_REFRESH;
    return MTA_STS_USE;
}

/* §3.1: 1*32(ALPHA / DIGIT), over exactly n octets (a NUL is not an end). */
static bool id_valid(const char *id, size_t n)
{
    if (id == NULL || n == 0 || n > MTA_STS_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return false;
    }
    return true;
}

int mta_sts_cache_store(struct mta_sts_cache_entry *e, const char *domain, size_t len,
                        const char *txt_id, const struct mta_sts_policy *p, int64_t now)
{
    if (len > 0 && domain[len - 1] == '.')
        len--;
    /* A domain is a pattern without the wildcard. */
    if ((len >= 1 && domain[0] == '*') || !mta_sts_pattern_valid(domain, len) || txt_id == NULL ||
        !id_valid(txt_id, strlen(txt_id)))
        return MTA_STS_ERR;
    memset(e, 0, sizeof(*e));
    for (size_t i = 0; i < len; i++) {
        char c = domain[i];
        e->domain[i] = c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
    }
    strcpy(e->id, txt_id);
    e->policy = *p;
    e->has_policy = true;
    e->fetched = now;
    /* §3.2 max_age: cache "for up to this value from the last policy fetch
     * time". */
    e->expires = now + (int64_t)p->max_age;
    return MTA_STS_OK;
}

void mta_sts_cache_fetch_failed(struct mta_sts_cache_entry *e, const char *txt_id, int64_t now)
{
    size_t n = txt_id != NULL ? strlen(txt_id) : 0;

    if (n > MTA_STS_ID_MAX)
        n = MTA_STS_ID_MAX;
    memcpy(e->failed_id, txt_id != NULL ? txt_id : "", n);
    e->failed_id[n] = '\0';
    e->failed_at = now;
}

int mta_sts_cache_format(const struct mta_sts_cache_entry *e, char *buf, size_t cap)
{
    size_t n = 0;
    int w;

    if (!e->has_policy)
        return MTA_STS_ERR;
    w = snprintf(buf, cap,
                 "mta-sts-cache 1\ndomain %s\nid %s\nfetched %" PRId64 "\nexpires %" PRId64
                 "\nmode %s\nmax_age %" PRIu32 "\n",
                 e->domain, e->id, e->fetched, e->expires, mta_sts_mode_str(e->policy.mode),
                 e->policy.max_age);
    if (w < 0 || (size_t)w >= cap)
        return MTA_STS_ERR_SPACE;
    n = (size_t)w;
    for (size_t i = 0; i < e->policy.n_mx; i++) {
        w = snprintf(buf + n, cap - n, "mx %s\n", e->policy.mx[i]);
        if (w < 0 || (size_t)w >= cap - n)
            return MTA_STS_ERR_SPACE;
        n += (size_t)w;
    }
    w = snprintf(buf + n, cap - n, "end\n");
    if (w < 0 || (size_t)w >= cap - n)
        return MTA_STS_ERR_SPACE;
    return (int)(n + (size_t)w);
}

/* The cursor of mta_sts_cache_parse: one LF-ended line at a time. */
struct reader {
    const char *text;
    size_t len, pos;
};

/* The next line "<key> <value>\n": its value in *v, *vlen. False at the end
 * of the input, for a line without LF (cut short), or another key. */
static bool field(struct reader *r, const char *key, const char **v, size_t *vlen)
{
    size_t klen = strlen(key), left = r->len - r->pos;
    const char *line = r->text + r->pos, *nl = memchr(line, '\n', left);
    size_t n;

    if (nl == NULL)
        return false;
    n = (size_t)(nl - line);
    if (n < klen + 1 || memcmp(line, key, klen) != 0 || line[klen] != ' ')
        return false;
    *v = line + klen + 1;
    *vlen = n - klen - 1;
    r->pos += n + 1;
    return true;
}

/* Decimal without sign or leading zeros, at most 18 digits (no overflow). */
static bool number(const char *v, size_t len, int64_t *out)
{
    int64_t n = 0;

    if (len == 0 || len > 18 || (len > 1 && v[0] == '0'))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        n = n * 10 + (v[i] - '0');
    }
    *out = n;
    return true;
}

int mta_sts_cache_parse(const char *text, size_t len, struct mta_sts_cache_entry *e,
                        size_t *consumed, const char **why)
{
    struct reader r = {text, len, 0};
    const char *v;
    size_t vlen;
    int64_t max_age;
    int mode;

    memset(e, 0, sizeof(*e));
    *consumed = 0;
    if (text == NULL || !field(&r, "mta-sts-cache", &v, &vlen) || vlen != 1 || v[0] != '1') {
        set_why(why, "not an mta-sts-cache 1 entry");
        return MTA_STS_ERR;
    }
    if (!field(&r, "domain", &v, &vlen) || (vlen > 0 && v[0] == '*') ||
        !mta_sts_pattern_valid(v, vlen)) {
        set_why(why, "bad domain line");
        return MTA_STS_ERR;
    }
    for (size_t i = 0; i < vlen; i++)
        if (v[i] >= 'A' && v[i] <= 'Z') {
            set_why(why, "domain not in lower case");
            return MTA_STS_ERR;
        }
    memcpy(e->domain, v, vlen);
    if (!field(&r, "id", &v, &vlen) || !id_valid(v, vlen)) {
        set_why(why, "bad id line");
        return MTA_STS_ERR;
    }
    memcpy(e->id, v, vlen);
    if (!field(&r, "fetched", &v, &vlen) || !number(v, vlen, &e->fetched) ||
        !field(&r, "expires", &v, &vlen) || !number(v, vlen, &e->expires)) {
        set_why(why, "bad fetched or expires line");
        return MTA_STS_ERR;
    }
    if (!field(&r, "mode", &v, &vlen) || (mode = mta_sts_mode_parse(v, vlen)) < 0) {
        set_why(why, "bad mode line");
        return MTA_STS_ERR;
    }
    e->policy.mode = (enum mta_sts_mode)mode;
    if (!field(&r, "max_age", &v, &vlen) || !number(v, vlen, &max_age) ||
        max_age > MTA_STS_MAX_AGE_MAX) {
        set_why(why, "bad max_age line");
        return MTA_STS_ERR;
    }
    e->policy.max_age = (uint32_t)max_age;
    if (e->expires < e->fetched || e->expires - e->fetched > max_age) {
        set_why(why, "expires is not within max_age of fetched");
        return MTA_STS_ERR;
    }
    while (field(&r, "mx", &v, &vlen)) {
        size_t k = e->policy.n_mx;
        if (k == MTA_STS_MX_MAX || !mta_sts_pattern_valid(v, vlen)) {
            set_why(why, "bad mx line, or too many");
            return MTA_STS_ERR;
        }
        for (size_t i = 0; i < vlen; i++)
            if (v[i] >= 'A' && v[i] <= 'Z') {
                set_why(why, "mx not in lower case");
                return MTA_STS_ERR;
            }
        for (size_t i = 0; i < k; i++)
            if (strlen(e->policy.mx[i]) == vlen && memcmp(e->policy.mx[i], v, vlen) == 0) {
                set_why(why, "repeated mx line");
                return MTA_STS_ERR;
            }
        memcpy(e->policy.mx[k], v, vlen);
        e->policy.mx[k][vlen] = '\0';
        e->policy.n_mx++;
    }
    if (e->policy.n_mx == 0 && e->policy.mode != MTA_STS_MODE_NONE) {
        set_why(why, "no mx line");
        return MTA_STS_ERR;
    }
    if (r.len - r.pos < 4 || memcmp(r.text + r.pos, "end\n", 4) != 0) {
        set_why(why, "no end line (entry cut short?)");
        return MTA_STS_ERR;
    }
    e->has_policy = true;
    *consumed = r.pos + 4;
    return MTA_STS_OK;
}
