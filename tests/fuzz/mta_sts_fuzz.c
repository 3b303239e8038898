/*
 * Fuzz target for proxy/policy/mta_sts.c and mta_sts_cache.c. The first
 * input octet picks the parser (modulo 4), the rest is its input, always an
 * exactly sized heap copy so ASan sees any read past the end:
 *   0  a TXT RRset: records of one length octet and that many octets of
 *      RDATA (a length past the end takes what is left) for
 *      mta_sts_txt_select, each record also for mta_sts_txt_parse;
 *   1  a policy body for mta_sts_policy_parse, then the matcher on its
 *      output and on the input's first line as a host name;
 *   2  cache file text for mta_sts_cache_parse, entry after entry;
 *   3  cache decisions: a policy entry and a lookup driven by the octets.
 * Invariants (abort on violation):
 *   - a parsed id is 1..32 letters and digits; a record that parses begins
 *     with "v=STSv1";
 *   - a parsed policy has a mode, max_age <= 31557600, 0..64 distinct valid
 *     lower-case patterns, at least one unless mode none; every pattern
 *     matches a host made from it (its "*" as one label) and not that host
 *     with one more label in front (nor, for a wildcard, its base domain);
 *     the policy survives the cache file form unchanged;
 *   - a cache entry that parses is written back byte for byte as read (the
 *     form is canonical), and consumed never exceeds the input;
 *   - USE and USE_AND_REFRESH only with a valid cached policy; FETCH and
 *     NO_POLICY only without one, except NO_POLICY never with one.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/policy/mta_sts.h"
#include "tests/fuzz/fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RECORDS 32

static uint8_t *copy(const uint8_t *p, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);

    CHECK(c != NULL);
    memcpy(c, p, n);
    return c;
}

static void check_id(const char *id)
{
    size_t n = strlen(id);

    CHECK(n >= 1 && n <= MTA_STS_ID_MAX);
    for (size_t i = 0; i < n; i++)
        CHECK((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') ||
              (id[i] >= 'A' && id[i] <= 'Z'));
}

static void fuzz_txt(const uint8_t *data, size_t size)
{
    uint8_t *rd[MAX_RECORDS];
    const uint8_t *crd[MAX_RECORDS];
    size_t len[MAX_RECORDS], n = 0, pos = 0;
    struct mta_sts_txt t;

    while (pos < size && n < MAX_RECORDS) {
        size_t l = data[pos++];
        if (l > size - pos)
            l = size - pos;
        rd[n] = copy(data + pos, l);
        crd[n] = rd[n];
        len[n] = l;
        pos += l;

        /* The same octets as one record's text. */
        if (mta_sts_txt_parse((const char *)rd[n], l, &t, NULL) == MTA_STS_OK) {
            CHECK(l >= 7 && memcmp(rd[n], "v=STSv1", 7) == 0);
            check_id(t.id);
        }
        n++;
    }
    if (mta_sts_txt_select(crd, len, n, &t, NULL) == MTA_STS_OK)
        check_id(t.id);
    else
        CHECK(t.id[0] == '\0');
    for (size_t i = 0; i < n; i++)
        free(rd[i]);
}

static bool lower_only(const char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            return false;
    return true;
}

static void check_policy(const struct mta_sts_policy *p)
{
    char host[MTA_STS_NAME_MAX + 8];

    CHECK(p->mode <= MTA_STS_MODE_ENFORCE);
    CHECK(p->max_age <= MTA_STS_MAX_AGE_MAX);
    CHECK(p->n_mx <= MTA_STS_MX_MAX);
    CHECK(p->n_mx > 0 || p->mode == MTA_STS_MODE_NONE);
    for (size_t i = 0; i < p->n_mx; i++) {
        const char *m = p->mx[i];
        size_t n = strlen(m);

        CHECK(mta_sts_pattern_valid(m, n) && lower_only(m));
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(p->mx[j], m) != 0);
        /* A concrete host for the pattern: "*" becomes "x". */
        memcpy(host, m, n + 1);
        if (m[0] == '*')
            host[0] = 'x';
        CHECK(mta_sts_mx_match(m, host, n));
        CHECK(mta_sts_policy_allows(p, host, n));
        /* Upper case and a trailing dot name the same host. */
        host[n] = '.';
        host[0] = host[0] >= 'a' && host[0] <= 'z' ? (char)(host[0] - 32) : host[0];
        CHECK(mta_sts_mx_match(m, host, n + 1));
        /* One more label in front never matches this pattern. */
        if (n + 2 <= MTA_STS_NAME_MAX) {
            memmove(host + 2, host, n);
            host[0] = 'y', host[1] = '.';
            CHECK(!mta_sts_mx_match(m, host, n + 2));
        }
        /* A wildcard does not match its base domain. */
        if (m[0] == '*')
            CHECK(!mta_sts_mx_match(m, m + 2, n - 2));
    }
}

static void fuzz_policy(const uint8_t *data, size_t size)
{
    static struct mta_sts_policy p;
    static struct mta_sts_cache_entry e, back;
    static char text[MTA_STS_CACHE_TEXT_MAX];
    char *in = (char *)copy(data, size);
    const char *why = NULL;
    size_t line, used;

    if (mta_sts_policy_parse(in, size, &p, &why) == MTA_STS_OK) {
        check_policy(&p);
        /* Through the cache file and back: the same policy. */
        CHECK(mta_sts_cache_store(&e, "example.com", 11, "fuzz1", &p, 1000) == MTA_STS_OK);
        int n = mta_sts_cache_format(&e, text, sizeof(text));
        CHECK(n > 0);
        CHECK(mta_sts_cache_parse(text, (size_t)n, &back, &used, &why) == MTA_STS_OK);
        CHECK(used == (size_t)n);
        CHECK(back.policy.mode == p.mode && back.policy.max_age == p.max_age);
        CHECK(back.policy.n_mx == p.n_mx);
        for (size_t i = 0; i < p.n_mx; i++)
            CHECK(strcmp(back.policy.mx[i], p.mx[i]) == 0);
        CHECK(back.expires == 1000 + (int64_t)p.max_age);
    } else {
        CHECK(why != NULL);
    }
    /* The first line as a host name against every pattern: no crash, and a
     * match only for what looks like a name. */
    for (line = 0; line < size && in[line] != '\n'; line++)
        ;
    if (mta_sts_policy_allows(&p, in, line))
        CHECK(line > 0 && memchr(in, '*', line) == NULL);
    free(in);
}

static void fuzz_cache_file(const uint8_t *data, size_t size)
{
    static struct mta_sts_cache_entry e;
    static char out[MTA_STS_CACHE_TEXT_MAX];
    char *in = (char *)copy(data, size);
    size_t pos = 0, used;

    while (pos < size && mta_sts_cache_parse(in + pos, size - pos, &e, &used, NULL) == MTA_STS_OK) {
        CHECK(used > 0 && used <= size - pos);
        CHECK(e.has_policy && e.expires >= e.fetched);
        check_policy(&e.policy);
        int n = mta_sts_cache_format(&e, out, sizeof(out));
        CHECK(n > 0 && (size_t)n == used && memcmp(out, in + pos, used) == 0);
        pos += used;
    }
    free(in);
}

static int64_t take(const uint8_t **p, size_t *left)
{
    int64_t v = 0;

    for (int i = 0; i < 4 && *left > 0; i++, (*p)++, (*left)--)
        v = v << 8 | **p;
    return v;
}

static void fuzz_decide(const uint8_t *data, size_t size)
{
    static struct mta_sts_cache_entry e;
    struct mta_sts_policy p;
    const char *pol = "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 604800\n";
    static const char *const ids[] = {"a", "b", "c"};
    int64_t now = 0;

    CHECK(mta_sts_policy_parse(pol, strlen(pol), &p, NULL) == MTA_STS_OK);
    p.max_age = (uint32_t)(take(&data, &size) % (MTA_STS_MAX_AGE_MAX + 1));
    CHECK(mta_sts_cache_store(&e, "a.example", 9, "a", &p, take(&data, &size)) == MTA_STS_OK);
    while (size > 0) {
        uint8_t op = *data++;
        size--;
        now += take(&data, &size) % 200000 - 50000;
        const char *id = ids[(op >> 2) % 3];
        enum mta_sts_lookup l = (enum mta_sts_lookup)(op % 3);
        enum mta_sts_action a = mta_sts_cache_decide(&e, l, id, now);
        bool valid = mta_sts_cache_valid(&e, now);

        CHECK((a == MTA_STS_USE || a == MTA_STS_USE_AND_REFRESH) == valid);
        CHECK(a != MTA_STS_FETCH || l == MTA_STS_LOOKUP_FOUND);
        CHECK(l == MTA_STS_LOOKUP_FOUND || a == MTA_STS_USE || a == MTA_STS_NO_POLICY);
        if (a == MTA_STS_FETCH || a == MTA_STS_USE_AND_REFRESH) {
            if (op & 0x80)
                mta_sts_cache_fetch_failed(&e, id, now);
            else
                CHECK(mta_sts_cache_store(&e, "a.example", 9, id, &p, now) == MTA_STS_OK);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % 4) {
    case 0:
        fuzz_txt(data + 1, size - 1);
        break;
    case 1:
        fuzz_policy(data + 1, size - 1);
        break;
    case 2:
        fuzz_cache_file(data + 1, size - 1);
        break;
    default:
        fuzz_decide(data + 1, size - 1);
        break;
    }
    return 0;
}
