/*
 * tlsrpt: SMTP TLS Reporting (RFC 8460), the pure part: the
 * `_smtp._tls.<domain>` TXT record (§3), the result types (§4.3), the
 * per-day counts of one policy (§4.1, §4.4), the report JSON (§4.4), and
 * the line form in which a session's result is appended to the day's file
 * (tls_rpt.directory) so counts can be rebuilt after a crash. No I/O, no
 * allocation: fixed-size structs with explicit bounds, caller buffers.
 */
#ifndef SMTP_TLS_PROXY_TLSRPT_H
#define SMTP_TLS_PROXY_TLSRPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLSRPT_RUA_MAX 8       /* destinations kept from one record */
#define TLSRPT_URI_MAX 512     /* one destination, decoded */
#define TLSRPT_NAME_MAX 253    /* a domain or host name, no trailing dot */
#define TLSRPT_IP_MAX 45       /* INET6_ADDRSTRLEN - 1 */
#define TLSRPT_DETAILS_MAX 100 /* distinct failure-details rows per policy */
#define TLSRPT_LINE_MAX 704    /* one day-file line, LF included (the longest: 669) */

enum tlsrpt_status {
    TLSRPT_OK = 0,
    TLSRPT_ERR = -1,       /* invalid input; *why says what */
    TLSRPT_ERR_SPACE = -2, /* the output buffer is too small */
};

/* --- The TXT record (§3) --- */

enum tlsrpt_uri_kind {
    TLSRPT_URI_MAILTO, /* uri holds the decoded address, without "mailto:" */
    TLSRPT_URI_HTTPS,  /* uri holds the URI as published, "https://..." */
};

struct tlsrpt_rua {
    enum tlsrpt_uri_kind kind;
    char uri[TLSRPT_URI_MAX + 1];
};

struct tlsrpt_record {
    size_t n; /* usable destinations in rua[] */
    struct tlsrpt_rua rua[TLSRPT_RUA_MAX];
    size_t ignored; /* URIs of other schemes, or over TLSRPT_RUA_MAX */
};

/*
 * Parses one record's text (len bytes, borrowed) strictly by the §3 ABNF:
 * "v=TLSRPTv1" first, ";"-separated fields, rua=URI *("," URI) (in one or
 * more rua fields), extension fields checked and ignored. Only mailto: and
 * https: URIs are kept (§3: the two schemes defined); a mailto: address is
 * percent-decoded (commas, semicolons and "!" must be encoded in the
 * record) and must then be one address: no "?" header part, no comma, no
 * space or control character, one "@". TLSRPT_OK with at least one
 * destination, else TLSRPT_ERR, a static reason in *why, r->n 0 (and
 * r->ignored what was seen before the error).
 */
int tlsrpt_txt_parse(const char *text, size_t len, struct tlsrpt_record *r, const char **why);

/*
 * Discovery from the TXT RRset of _smtp._tls.<domain> (count RDATAs, wire
 * form, borrowed). §3: records that do not begin with "v=TLSRPTv1" are
 * discarded, the strings of one record are concatenated, and unless
 * exactly one record remains the domain does not implement TLS-RPT.
 */
int tlsrpt_txt_select(const uint8_t *const *rdata, const size_t *len, size_t count,
                      struct tlsrpt_record *r, const char **why);

/* --- Result types (§4.3) --- */

enum tlsrpt_result {
    /* §4.3.1 negotiation failures (validation-failure: also §4.3.3, the general one) */
    TLSRPT_STARTTLS_NOT_SUPPORTED,
    TLSRPT_CERTIFICATE_HOST_MISMATCH,
    TLSRPT_CERTIFICATE_EXPIRED,
    TLSRPT_CERTIFICATE_NOT_TRUSTED,
    TLSRPT_VALIDATION_FAILURE,
    /* §4.3.2.1 DANE */
    TLSRPT_TLSA_INVALID,
    TLSRPT_DNSSEC_INVALID,
    TLSRPT_DANE_REQUIRED,
    /* §4.3.2.2 MTA-STS */
    TLSRPT_STS_POLICY_FETCH_ERROR,
    TLSRPT_STS_POLICY_INVALID,
    TLSRPT_STS_WEBPKI_INVALID,
    TLSRPT_RESULT_COUNT
};

/* "starttls-not-supported", ... (static; "unknown" out of range). */
const char *tlsrpt_result_str(enum tlsrpt_result r);

/* The result named by len bytes of s, or -1. */
int tlsrpt_result_parse(const char *s, size_t len);

enum tlsrpt_policy_type {
    TLSRPT_POLICY_STS,  /* "sts" */
    TLSRPT_POLICY_TLSA, /* "tlsa" */
    TLSRPT_POLICY_NONE, /* "no-policy-found" */
};

const char *tlsrpt_policy_type_str(enum tlsrpt_policy_type t);
int tlsrpt_policy_type_parse(const char *s, size_t len);

/* --- One session's result, and its day-file line --- */

struct tlsrpt_attempt {
    int64_t time; /* unix seconds */
    enum tlsrpt_policy_type type;
    char domain[TLSRPT_NAME_MAX + 1]; /* the policy domain, lower case */
    bool success;
    enum tlsrpt_result result; /* when !success */
    /* Addresses as inet_ntop writes them (RFC 5952 for IPv6, §4.4). */
    char sending_ip[TLSRPT_IP_MAX + 1];   /* "" = unknown */
    char mx_host[TLSRPT_NAME_MAX + 1];    /* "" = unknown */
    char receiving_ip[TLSRPT_IP_MAX + 1]; /* "" = unknown */
};

/*
 * The day-file line of a:
 *     tlsrpt1 TIME TYPE DOMAIN RESULT SENDING-IP MX-HOST RECEIVING-IP LF
 * single spaces, RESULT "success" or a result type, "-" for an unknown
 * field. Written to buf (cap bytes; TLSRPT_LINE_MAX + 1 always suffices).
 * Returns the length (NUL written, not counted), TLSRPT_ERR_SPACE, or
 * TLSRPT_ERR when a field would not parse back (a name that is not a host
 * name, an address that is not one in canonical text).
 */
int tlsrpt_line_format(const struct tlsrpt_attempt *a, char *buf, size_t cap);

/*
 * Parses the first line of text (len bytes, borrowed) in exactly that form
 * into *a; *consumed is its length through the LF. A last line without its
 * LF (a write cut short) is TLSRPT_ERR, as is anything else out of form.
 */
int tlsrpt_line_parse(const char *text, size_t len, struct tlsrpt_attempt *a, size_t *consumed,
                      const char **why);

/* --- Counts of one (policy domain, policy type, UTC day) --- */

struct tlsrpt_detail {
    enum tlsrpt_result result;
    char sending_ip[TLSRPT_IP_MAX + 1];
    char mx_host[TLSRPT_NAME_MAX + 1];
    char receiving_ip[TLSRPT_IP_MAX + 1];
    uint64_t count;
};

struct tlsrpt_stats {
    char domain[TLSRPT_NAME_MAX + 1];
    enum tlsrpt_policy_type type;
    int64_t day; /* days since 1970-01-01 (UTC) */
    uint64_t success, failure;
    size_t n; /* rows in detail[] */
    /* Failures whose row did not fit: in failure, not in any row (the
     * caller logs it; §4.4's summary stays exact). */
    uint64_t details_dropped;
    struct tlsrpt_detail detail[TLSRPT_DETAILS_MAX];
};

/* The UTC day of a unix time (floor, also before 1970). */
int64_t tlsrpt_day(int64_t unix_time);

/* Empties s for domain (NUL-terminated, copied lower case), type and day. */
void tlsrpt_stats_init(struct tlsrpt_stats *s, const char *domain, enum tlsrpt_policy_type type,
                       int64_t day);

/* Counts a into s: TLSRPT_OK, or TLSRPT_ERR (s untouched) when a is of
 * another domain, type or day. A failure with the same (result, addresses,
 * host) as a row adds to it; a new one takes a new row while there is
 * room, else counts in details_dropped. */
int tlsrpt_stats_add(struct tlsrpt_stats *s, const struct tlsrpt_attempt *a);

/* --- The report (§4.4) --- */

struct tlsrpt_report {
    const char *organization; /* organization-name */
    const char *contact;      /* contact-info */
    const char *report_id;    /* report-id */
    int64_t day;              /* date-range: that UTC day, 00:00:00 to 23:59:59 */
};

struct tlsrpt_report_policy {
    const struct tlsrpt_stats *stats;
    const char *const *policy_string; /* policy-string[]: e.g. the STS policy lines */
    size_t n_strings;
    /* mx-host: the STS mx patterns. §4.4 describes one pattern "provided
     * as a string", but a policy may have several: written as a JSON array
     * of strings (left out when n_mx is 0). A deliberate choice. */
    const char *const *mx_host;
    size_t n_mx;
};

/*
 * Writes the report JSON for n policies into buf (cap bytes, NUL-terminated
 * when it fits). Strings are escaped for JSON (quotes, backslash, control
 * characters; bytes that are not UTF-8 become U+FFFD); empty optional
 * fields are left out. Returns the length, or TLSRPT_ERR_SPACE.
 */
long tlsrpt_report_json(char *buf, size_t cap, const struct tlsrpt_report *r,
                        const struct tlsrpt_report_policy *p, size_t n);

#endif
