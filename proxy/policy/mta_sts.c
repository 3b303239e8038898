/*
 * MTA-STS records, policies and MX matching; see mta_sts.h. The cache is in
 * mta_sts_cache.c.
 */
#include "proxy/policy/mta_sts.h"

#include <string.h>

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(unsigned char c)
{
    return is_alpha(c) || is_digit(c);
}

static bool is_wsp(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

static void set_why(const char **why, const char *s)
{
    if (why != NULL)
        *why = s;
}

int mta_sts_txt_concat(const uint8_t *rdata, size_t len, char *out, size_t cap, size_t *outlen)
{
    size_t pos = 0, n = 0;

    if (cap == 0)
        return MTA_STS_ERR_SPACE;
    out[0] = '\0';
    *outlen = 0;
    if (rdata == NULL || len == 0)
        return MTA_STS_ERR;
    /* RFC 1035 §3.3.14: TXT-DATA is one or more <character-string>s, each a
     * length octet and that many octets. */
    while (pos < len) {
        size_t l = rdata[pos++];
        if (l > len - pos)
            return MTA_STS_ERR;
        if (l >= cap - n) {
            /* What fits stays readable, so a caller can still see how a
             * record too long to keep begins. */
            memcpy(out + n, rdata + pos, cap - 1 - n);
            out[cap - 1] = '\0';
            *outlen = cap - 1;
            return MTA_STS_ERR_SPACE;
        }
        memcpy(out + n, rdata + pos, l);
        n += l;
        pos += l;
    }
    out[n] = '\0';
    *outlen = n;
    return MTA_STS_OK;
}

/* §3.1: sts-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
 * (the policy's sts-policy-ext-name of §3.2 is the same). */
static bool ext_name(const char *s, size_t len)
{
    if (len == 0 || len > 32 || !is_alnum((unsigned char)s[0]))
        return false;
    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_alnum(c) && c != '_' && c != '-' && c != '.')
            return false;
    }
    return true;
}

/* §3.1: sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E): no "=", ";", space
 * or control character. */
static bool ext_value_char(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e && c != '=' && c != ';';
}

/* The parser proper; mta_sts_txt_parse hands out only a complete result. */
static int txt_parse(const char *text, size_t len, struct mta_sts_txt *out, const char **why)
{
    static const char version[] = "v=STSv1";
    size_t pos = sizeof(version) - 1;
    bool have_id = false;

    memset(out, 0, sizeof(*out));
    /* sts-text-record = sts-version 1*(sts-field-delim sts-field)
     *                   [sts-field-delim]; sts-version = %s"v=" %s"STSv1"
     * (case-sensitive, RFC 7405). */
    if (text == NULL || len < pos || memcmp(text, version, pos) != 0) {
        set_why(why, "does not begin with v=STSv1");
        return MTA_STS_ERR;
    }
    for (;;) {
        size_t name, name_len, value, value_len;

        /* sts-field-delim = *WSP ";" *WSP */
        while (pos < len && is_wsp((unsigned char)text[pos]))
            pos++;
        if (pos == len)
            break;
        if (text[pos] != ';') {
            set_why(why, "fields are not separated by \";\"");
            return MTA_STS_ERR;
        }
        pos++;
        while (pos < len && is_wsp((unsigned char)text[pos]))
            pos++;
        if (pos == len)
            break; /* the optional trailing delimiter */
        name = pos;
        while (pos < len && text[pos] != '=' && text[pos] != ';' &&
               !is_wsp((unsigned char)text[pos]))
            pos++;
        name_len = pos - name;
        if (pos == len || text[pos] != '=' || !ext_name(text + name, name_len)) {
            set_why(why, "a field is not name=value");
            return MTA_STS_ERR;
        }
        value = ++pos;
        while (pos < len && ext_value_char((unsigned char)text[pos]))
            pos++;
        value_len = pos - value;
        if (value_len == 0 ||
            (pos < len && text[pos] != ';' && !is_wsp((unsigned char)text[pos]))) {
            set_why(why, "a field value is empty or has a forbidden character");
            return MTA_STS_ERR;
        }
        if (name_len == 2 && memcmp(text + name, "id", 2) == 0) {
            /* sts-id = %s"id=" 1*32(ALPHA / DIGIT). A second id is ignored
             * like a repeated policy field (§3.2, first instance wins). */
            if (have_id)
                continue;
            if (value_len > MTA_STS_ID_MAX) {
                set_why(why, "id is longer than 32 characters");
                return MTA_STS_ERR;
            }
            for (size_t i = 0; i < value_len; i++) {
                if (!is_alnum((unsigned char)text[value + i])) {
                    set_why(why, "id has a character other than a letter or digit");
                    return MTA_STS_ERR;
                }
            }
            memcpy(out->id, text + value, value_len);
            out->id[value_len] = '\0';
            have_id = true;
        }
        /* Extension fields: syntax checked above, meaning ignored. */
    }
    if (!have_id) {
        set_why(why, "no id field");
        return MTA_STS_ERR;
    }
    return MTA_STS_OK;
}

int mta_sts_txt_parse(const char *text, size_t len, struct mta_sts_txt *out, const char **why)
{
    struct mta_sts_txt t;
    int rc = txt_parse(text, len, &t, why);

    memset(out, 0, sizeof(*out));
    if (rc == MTA_STS_OK)
        *out = t;
    return rc;
}

/* Whether text (n bytes) begins with tag and then ';' or a space or tab:
 * §3.1 discards records "that do not begin with v=STSv1;", and erratum 6285
 * notes that the ABNF also allows "v=STSv1 ;"; what follows is for the
 * strict parser to judge. */
static bool begins_with_tag(const char *t, size_t n, const char *tag)
{
    size_t k = strlen(tag);
    return n > k && memcmp(t, tag, k) == 0 && (t[k] == ';' || is_wsp((unsigned char)t[k]));
}

size_t mta_sts_txt_pick(const uint8_t *const *rdata, const size_t *len, size_t count,
                        const char *tag, char *out, size_t *outlen)
{
    char text[MTA_STS_TXT_MAX];
    size_t n, found = 0;

    *outlen = 0;
    for (size_t i = 0; i < count; i++) {
        int rc = mta_sts_txt_concat(rdata[i], len[i], text, sizeof(text), &n);
        if ((rc != MTA_STS_OK && rc != MTA_STS_ERR_SPACE) || !begins_with_tag(text, n, tag))
            continue;
        if (++found == 1) {
            memcpy(out, text, n);
            *outlen = rc == MTA_STS_OK ? n : SIZE_MAX;
        }
    }
    return found;
}

int mta_sts_txt_select(const uint8_t *const *rdata, const size_t *len, size_t count,
                       struct mta_sts_txt *out, const char **why)
{
    char chosen[MTA_STS_TXT_MAX];
    size_t chosen_len;

    memset(out, 0, sizeof(*out));
    size_t found = mta_sts_txt_pick(rdata, len, count, "v=STSv1", chosen, &chosen_len);
    if (found == 0) {
        set_why(why, "no v=STSv1 TXT record");
        return MTA_STS_ERR;
    }
    if (found > 1) {
        set_why(why, "several v=STSv1 TXT records");
        return MTA_STS_ERR;
    }
    if (chosen_len == SIZE_MAX) {
        set_why(why, "the v=STSv1 TXT record is longer than 4095 octets");
        return MTA_STS_ERR;
    }
    return mta_sts_txt_parse(chosen, chosen_len, out, why);
}

/* RFC 5321 §4.1.2 Domain = sub-domain *("." sub-domain), sub-domain =
 * Let-dig [Ldh-str]: letters, digits, inner hyphens; labels of 1..63
 * (RFC 1035 §2.3.4), at most MTA_STS_NAME_MAX in all. No trailing dot. */
static bool domain_valid(const char *s, size_t len)
{
    size_t label = 0;

    if (len == 0 || len > MTA_STS_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!is_alnum(c) && c != '-')
            return false;
        if (c == '-' && label == 0)
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0 && s[len - 1] != '-';
}

bool mta_sts_pattern_valid(const char *s, size_t len)
{
    if (len > MTA_STS_NAME_MAX)
        return false;
    /* §3.2: sts-policy-mx-value = ["*."] Domain; the wildcard only as the
     * whole leftmost label. */
    if (len >= 2 && s[0] == '*' && s[1] == '.')
        return domain_valid(s + 2, len - 2);
    return domain_valid(s, len);
}

const char *mta_sts_mode_str(enum mta_sts_mode m)
{
    switch (m) {
    case MTA_STS_MODE_NONE:
        return "none";
    case MTA_STS_MODE_TESTING:
        return "testing";
    case MTA_STS_MODE_ENFORCE:
        return "enforce";
    }
    return "unknown";
}

int mta_sts_mode_parse(const char *s, size_t len)
{
    /* §3.2: sts-policy-mode-value = %s"testing" / %s"enforce" / %s"none". */
    for (int m = MTA_STS_MODE_NONE; m <= MTA_STS_MODE_ENFORCE; m++) {
        const char *name = mta_sts_mode_str((enum mta_sts_mode)m);
        if (strlen(name) == len && memcmp(name, s, len) == 0)
            return m;
    }
    return -1;
}

static bool key_is(const char *key, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(key, want, len) == 0;
}

static bool same_name(const char *a, const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

static int add_mx(struct mta_sts_policy *p, const char *v, size_t len, const char **why)
{
    if (len > 0 && v[len - 1] == '.')
        len--; /* a fully qualified spelling names the same host */
    if (!mta_sts_pattern_valid(v, len)) {
        set_why(why, "an mx value is not a host name or *.domain pattern");
        return MTA_STS_ERR;
    }
    for (size_t i = 0; i < p->n_mx; i++)
        if (strlen(p->mx[i]) == len && same_name(p->mx[i], v, len))
            return MTA_STS_OK;
    if (p->n_mx == MTA_STS_MX_MAX) {
        set_why(why, "more mx patterns than the 64 kept");
        return MTA_STS_ERR;
    }
    for (size_t i = 0; i < len; i++)
        p->mx[p->n_mx][i] = (char)lower((unsigned char)v[i]);
    p->mx[p->n_mx][len] = '\0';
    p->n_mx++;
    return MTA_STS_OK;
}

/* §3.2 max_age: sts-policy-max-age-value = 1*10DIGIT. */
static int parse_max_age(struct mta_sts_policy *p, const char *v, size_t len, const char **why)
{
    uint64_t n = 0;

    if (len == 0 || len > 10) {
        set_why(why, "max_age is not 1 to 10 digits");
        return MTA_STS_ERR;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_digit((unsigned char)v[i])) {
            set_why(why, "max_age is not 1 to 10 digits");
            return MTA_STS_ERR;
        }
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    /* "maximum value of 31557600": clamped, not refused (see mta_sts.h). */
    p->max_age_clamped = n > MTA_STS_MAX_AGE_MAX;
    p->max_age = p->max_age_clamped ? MTA_STS_MAX_AGE_MAX : (uint32_t)n;
    return MTA_STS_OK;
}

int mta_sts_policy_parse(const char *text, size_t len, struct mta_sts_policy *p, const char **why)
{
    bool have_version = false, have_mode = false, have_max_age = false;
    size_t pos = 0;

    memset(p, 0, sizeof(*p));
    if (text == NULL || len > MTA_STS_POLICY_MAX) {
        set_why(why, "policy larger than 64 KiB");
        return MTA_STS_ERR;
    }
    while (pos < len) {
        const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - line) : len - pos, k, v, vend;

        pos += n + (nl != NULL);
        /* sts-policy-term = LF / CRLF (erratum 6253: either). */
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (n == 0)
            continue;
        if (n > MTA_STS_LINE_MAX) {
            set_why(why, "a policy line longer than 1024 octets");
            return MTA_STS_ERR;
        }
        /* Values exclude CTLs (sts-policy-vchar), so does the rest of the
         * grammar; a stray CR or NUL is no policy of ours. */
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)line[i];
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                set_why(why, "a control character in the policy");
                return MTA_STS_ERR;
            }
        }
        /* sts-policy-field = name ":" *WSP value *WSP; no space before ":". */
        for (k = 0; k < n && line[k] != ':'; k++)
            ;
        if (k == n || !ext_name(line, k)) {
            set_why(why, "a policy line is not key: value");
            return MTA_STS_ERR;
        }
        for (v = k + 1; v < n && is_wsp((unsigned char)line[v]); v++)
            ;
        for (vend = n; vend > v && is_wsp((unsigned char)line[vend - 1]); vend--)
            ;
        const char *val = line + v;
        size_t vlen = vend - v;

        /* §3.2: "If any non-repeated field--i.e., all fields excepting
         * mx--is duplicated, all entries except for the first SHALL be
         * ignored." */
        if (key_is(line, k, "version")) {
            if (have_version)
                continue;
            /* sts-policy-version-value = %s"STSv1" */
            if (!(vlen == 5 && memcmp(val, "STSv1", 5) == 0)) {
                set_why(why, "version is not STSv1");
                return MTA_STS_ERR;
            }
            have_version = true;
        } else if (key_is(line, k, "mode")) {
            int m;
            if (have_mode)
                continue;
            if ((m = mta_sts_mode_parse(val, vlen)) < 0) {
                set_why(why, "mode is not enforce, testing or none");
                return MTA_STS_ERR;
            }
            p->mode = (enum mta_sts_mode)m;
            have_mode = true;
        } else if (key_is(line, k, "max_age")) {
            if (have_max_age)
                continue;
            if (parse_max_age(p, val, vlen, why) != MTA_STS_OK)
                return MTA_STS_ERR;
            have_max_age = true;
        } else if (key_is(line, k, "mx")) {
            if (add_mx(p, val, vlen, why) != MTA_STS_OK)
                return MTA_STS_ERR;
        }
        /* §3.2: unknown fields are ignored ("to allow for future
         * extension"). */
    }
    if (!have_version) {
        set_why(why, "no version field");
        return MTA_STS_ERR;
    }
    if (!have_mode) {
        set_why(why, "no mode field");
        return MTA_STS_ERR;
    }
    if (!have_max_age) {
        set_why(why, "no max_age field");
        return MTA_STS_ERR;
    }
    /* §3.2 mx: "required at least once, except when mode is none". */
    if (p->n_mx == 0 && p->mode != MTA_STS_MODE_NONE) {
        set_why(why, "no mx field");
        return MTA_STS_ERR;
    }
    return MTA_STS_OK;
}

bool mta_sts_mx_match(const char *pattern, const char *host, size_t len)
{
    size_t plen = strlen(pattern);

    /* §4.1: names compare case-insensitively; the absolute form with its
     * trailing dot is the same name. */
    if (len > 0 && host[len - 1] == '.')
        len--;
    if (!domain_valid(host, len))
        return false;
    if (plen >= 2 && pattern[0] == '*' && pattern[1] == '.') {
        /* §3.2/§4.1: "*.example.com" matches exactly one leftmost label:
         * "mx.example.com" but neither "example.com" nor
         * "a.b.example.com". */
        size_t slen = plen - 1; /* ".example.com" */
        if (len <= slen || !same_name(host + len - slen, pattern + 1, slen))
            return false;
        return memchr(host, '.', len - slen) == NULL;
    }
    return plen == len && same_name(pattern, host, len);
}

bool mta_sts_policy_allows(const struct mta_sts_policy *p, const char *host, size_t len)
{
    for (size_t i = 0; i < p->n_mx; i++)
        if (mta_sts_mx_match(p->mx[i], host, len))
            return true;
    return false;
}
