/*
 * TLS-RPT records, results, counts, reports and day-file lines; see
 * tlsrpt.h.
 */
#include "proxy/policy/tlsrpt.h"

#include <string.h>

#include "proxy/policy/mta_sts.h"

static void set_why(const char **why, const char *s)
{
    if (why != NULL)
        *why = s;
}

static bool is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_wsp(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* RFC 3986 §2: the characters a URI may hold. In a TLS-RPT record commas,
 * semicolons and exclamation points "MUST be encoded" (RFC 8460 §3), so
 * they end a URI or make it invalid. */
static bool uri_char(unsigned char c)
{
    return is_alnum(c) || (c != 0 && strchr("-._~:/?#[]@$&'()*+=%", c) != NULL);
}

static bool prefix_nocase(const char *s, size_t len, const char *p)
{
    size_t n = strlen(p);

    if (len < n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)s[i]) != (unsigned char)p[i])
            return false;
    return true;
}

/* A mailto: URI (RFC 6068) as one address: the part before any "?" header
 * fields, percent-decoded, a local part and a domain around one "@", no
 * space, control character or comma (RFC 6068's address separator, which
 * TLS-RPT would have encoded: we take one address per URI). */
static bool mailto(const char *s, size_t len, struct tlsrpt_rua *out)
{
    size_t n = 0, at = 0, ats = 0;

    for (size_t i = 0; i < len && s[i] != '?'; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 2 < len ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = hi >= 0 ? hexval((unsigned char)s[i + 2]) : -1;
            if (lo < 0)
                return false;
            c = hi * 16 + lo;
            i += 2;
        }
        if (c <= 0x20 || c >= 0x7f || c == ',' || n == TLSRPT_URI_MAX)
            return false;
        if (c == '@')
            ats++, at = n;
        out->uri[n++] = (char)c;
    }
    out->uri[n] = '\0';
    out->kind = TLSRPT_URI_MAILTO;
    return ats == 1 && at > 0 && at + 1 < n;
}

/* An https: URI is kept as published (it is a URI to POST to), when it
 * names a host: "https://" and at least one character of authority. */
static bool https(const char *s, size_t len, struct tlsrpt_rua *out)
{
    if (len > TLSRPT_URI_MAX || len <= 8 || s[8] == '/' || s[8] == '?' || s[8] == '#' ||
        memcmp(s + 6, "//", 2) != 0)
        return false;
    memcpy(out->uri, "https:", 6);
    memcpy(out->uri + 6, s + 6, len - 6);
    out->uri[len] = '\0';
    out->kind = TLSRPT_URI_HTTPS;
    return true;
}

static void add_uri(struct tlsrpt_record *r, const char *s, size_t len)
{
    struct tlsrpt_rua *slot = &r->rua[r->n];
    bool ok;

    if (r->n == TLSRPT_RUA_MAX) {
        r->ignored++;
        return;
    }
    /* URI schemes are case-insensitive (RFC 3986 §3.1). */
    if (prefix_nocase(s, len, "mailto:"))
        ok = mailto(s + 7, len - 7, slot);
    else if (prefix_nocase(s, len, "https:"))
        ok = https(s, len, slot);
    else
        ok = false;
    if (ok)
        r->n++;
    else
        r->ignored++;
}

/* tlsrpt-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".") */
static bool ext_name(const char *s, size_t len)
{
    if (len == 0 || len > 32 || !is_alnum((unsigned char)s[0]))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!is_alnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
            return false;
    return true;
}

/* The parser proper; on failure tlsrpt_txt_parse keeps only the count of
 * ignored URIs. */
static int txt_parse(const char *text, size_t len, struct tlsrpt_record *r, const char **why)
{
    static const char version[] = "v=TLSRPTv1";
    size_t pos = sizeof(version) - 1;
    bool have_rua = false;

    memset(r, 0, sizeof(*r));
    /* §3: tlsrpt-record = tlsrpt-version 1*(field-delim tlsrpt-field)
     * [field-delim]; tlsrpt-version = %s"v=TLSRPTv1" (case-sensitive). */
    if (text == NULL || len < pos || memcmp(text, version, pos) != 0) {
        set_why(why, "does not begin with v=TLSRPTv1");
        return TLSRPT_ERR;
    }
    for (;;) {
        size_t name, name_len;

        /* field-delim = *WSP ";" *WSP */
        while (pos < len && is_wsp((unsigned char)text[pos]))
            pos++;
        if (pos == len)
            break;
        if (text[pos] != ';') {
            set_why(why, "fields are not separated by \";\"");
            return TLSRPT_ERR;
        }
        pos++;
        while (pos < len && is_wsp((unsigned char)text[pos]))
            pos++;
        if (pos == len)
            break;
        name = pos;
        while (pos < len && text[pos] != '=' && text[pos] != ';' &&
               !is_wsp((unsigned char)text[pos]))
            pos++;
        name_len = pos - name;
        if (pos == len || text[pos] != '=' || !ext_name(text + name, name_len)) {
            set_why(why, "a field is not name=value");
            return TLSRPT_ERR;
        }
        pos++;
        if (name_len == 3 && memcmp(text + name, "rua", 3) == 0) {
            /* tlsrpt-rua = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri) */
            have_rua = true;
            for (;;) {
                size_t u = pos;
                while (pos < len && uri_char((unsigned char)text[pos]))
                    pos++;
                if (pos == u) {
                    set_why(why, "an empty rua URI");
                    return TLSRPT_ERR;
                }
                add_uri(r, text + u, pos - u);
                size_t after = pos;
                while (after < len && is_wsp((unsigned char)text[after]))
                    after++;
                if (after == len || text[after] != ',')
                    break;
                for (pos = after + 1; pos < len && is_wsp((unsigned char)text[pos]); pos++)
                    ;
            }
            if (pos < len && text[pos] != ';' && !is_wsp((unsigned char)text[pos])) {
                set_why(why, "a rua URI with a character that must be encoded");
                return TLSRPT_ERR;
            }
        } else {
            /* tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E) */
            size_t v = pos;
            while (pos < len && (unsigned char)text[pos] >= 0x21 &&
                   (unsigned char)text[pos] <= 0x7e && text[pos] != '=' && text[pos] != ';')
                pos++;
            if (pos == v || (pos < len && text[pos] != ';' && !is_wsp((unsigned char)text[pos]))) {
                set_why(why, "an extension value is empty or has a forbidden character");
                return TLSRPT_ERR;
            }
        }
    }
    if (!have_rua) {
        set_why(why, "no rua field");
        return TLSRPT_ERR;
    }
    if (r->n == 0) {
        set_why(why, "no usable mailto: or https: destination");
        return TLSRPT_ERR;
    }
    return TLSRPT_OK;
}

int tlsrpt_txt_parse(const char *text, size_t len, struct tlsrpt_record *r, const char **why)
{
    int rc = txt_parse(text, len, r, why);

    if (rc != TLSRPT_OK)
        r->n = 0; /* no destination of a record that is not one */
    return rc;
}

int tlsrpt_txt_select(const uint8_t *const *rdata, const size_t *len, size_t count,
                      struct tlsrpt_record *r, const char **why)
{
    char chosen[MTA_STS_TXT_MAX];
    size_t chosen_len;

    memset(r, 0, sizeof(*r));
    size_t found = mta_sts_txt_pick(rdata, len, count, "v=TLSRPTv1", chosen, &chosen_len);
    if (found != 1) {
        set_why(why, found == 0 ? "no v=TLSRPTv1 TXT record" : "several v=TLSRPTv1 TXT records");
        return TLSRPT_ERR;
    }
    if (chosen_len == SIZE_MAX) {
        set_why(why, "the v=TLSRPTv1 TXT record is longer than 4095 octets");
        return TLSRPT_ERR;
    }
    return tlsrpt_txt_parse(chosen, chosen_len, r, why);
}

/* §4.3, in the order of enum tlsrpt_result. */
static const char *const result_names[TLSRPT_RESULT_COUNT] = {
    "starttls-not-supported", "certificate-host-mismatch",
    "certificate-expired",    "certificate-not-trusted",
    "validation-failure",     "tlsa-invalid",
    "dnssec-invalid",         "dane-required",
    "sts-policy-fetch-error", "sts-policy-invalid",
    "sts-webpki-invalid",
};

const char *tlsrpt_result_str(enum tlsrpt_result r)
{
    return (unsigned)r < TLSRPT_RESULT_COUNT ? result_names[r] : "unknown";
}

int tlsrpt_result_parse(const char *s, size_t len)
{
    for (int i = 0; i < TLSRPT_RESULT_COUNT; i++)
        if (strlen(result_names[i]) == len && memcmp(result_names[i], s, len) == 0)
            return i;
    return -1;
}

/* §4.4 policy-type: "tlsa" / "sts" / "no-policy-found". */
const char *tlsrpt_policy_type_str(enum tlsrpt_policy_type t)
{
    switch (t) {
    case TLSRPT_POLICY_STS:
        return "sts";
    case TLSRPT_POLICY_TLSA:
        return "tlsa";
    case TLSRPT_POLICY_NONE:
        return "no-policy-found";
    }
    return "unknown";
}

int tlsrpt_policy_type_parse(const char *s, size_t len)
{
    for (int t = TLSRPT_POLICY_STS; t <= TLSRPT_POLICY_NONE; t++) {
        const char *name = tlsrpt_policy_type_str((enum tlsrpt_policy_type)t);
        if (strlen(name) == len && memcmp(name, s, len) == 0)
            return t;
    }
    return -1;
}
