/*
 * tlsa: DANE TLSA records (RFC 6698 §2.1) and their usability for SMTP
 * (RFC 7672 §3.1). Pure: RDATA in, a parsed record set out, no allocation
 * (records borrow the caller's RDATA), no I/O.
 *
 * For SMTP only DANE-TA(2) and DANE-EE(3) are usable; PKIX-TA(0) and
 * PKIX-EE(1) are not (RFC 7672 §3.1.3: an SMTP client cannot know which CAs
 * the server's operator meant). A record is also unusable when its selector
 * or matching type is unknown, or when its data cannot be what the matching
 * type says (a SHA-256 digest that is not 32 bytes, empty full data). If a
 * secure TLSA RRset has no usable record at all, the connection is still
 * encrypted, without authentication (RFC 7672 §2.2: "mandatory unauthenticated
 * TLS").
 */
#ifndef SMTP_TLS_PROXY_TLSA_H
#define SMTP_TLS_PROXY_TLSA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tlsa_usage {
    TLSA_USAGE_PKIX_TA = 0,
    TLSA_USAGE_PKIX_EE = 1,
    TLSA_USAGE_DANE_TA = 2,
    TLSA_USAGE_DANE_EE = 3,
};

enum tlsa_selector {
    TLSA_SELECTOR_CERT = 0, /* the whole certificate (DER) */
    TLSA_SELECTOR_SPKI = 1, /* its SubjectPublicKeyInfo (DER) */
};

enum tlsa_mtype {
    TLSA_MTYPE_FULL = 0,   /* the selected data itself */
    TLSA_MTYPE_SHA256 = 1,
    TLSA_MTYPE_SHA512 = 2,
};

#define TLSA_SHA256_LEN 32
#define TLSA_SHA512_LEN 64
/* Records kept per RRset; more are counted but ignored (a DoS bound: each
 * one costs a digest per certificate of the chain). */
#define TLSA_MAX_RECORDS 16

struct tlsa_record {
    uint8_t usage, selector, mtype;
    const uint8_t *data; /* borrowed from the RDATA given to tlsa_parse */
    size_t len;
};

enum tlsa_status {
    TLSA_OK = 0,
    TLSA_ERR_SHORT = -1, /* fewer than 3 octets of RDATA */
};

/* Parses one RDATA (usage, selector, matching type, data) into r. TLSA_OK,
 * or TLSA_ERR_SHORT. Never reads past rdata + len. */
int tlsa_parse(const uint8_t *rdata, size_t len, struct tlsa_record *r);

/* Why a parsed record is not usable for SMTP, or NULL when it is (static
 * strings, for logs: "unknown selector", "SHA-256 data that is not 32
 * octets", ...). */
const char *tlsa_unusable_reason(const struct tlsa_record *r);

static inline bool tlsa_usable(const struct tlsa_record *r)
{
    return tlsa_unusable_reason(r) == NULL;
}

/* What a TLSA RRset asks of the connection. */
enum tlsa_verdict {
    TLSA_VERDICT_NONE,        /* no records: DANE does not apply */
    TLSA_VERDICT_UNUSABLE,    /* records, none usable: encrypt, no authentication */
    TLSA_VERDICT_AUTHENTICATE, /* usable records: a match is required */
};

/* "none", "unusable", "authenticate": static, for logs. */
const char *tlsa_verdict_str(enum tlsa_verdict v);

/* The usable records of one RRset. */
struct tlsa_set {
    struct tlsa_record rec[TLSA_MAX_RECORDS]; /* usable ones only */
    size_t n;
    size_t total;        /* records given, usable or not */
    size_t malformed;    /* RDATA too short to parse */
    bool has_ee, has_ta; /* any usable DANE-EE / DANE-TA */
};

/* Builds s from count RDATAs (rdata[i] of len[i] octets, borrowed: they
 * must outlive s) and returns its verdict. Duplicates are kept once. */
enum tlsa_verdict tlsa_set_build(struct tlsa_set *s, const uint8_t *const *rdata,
                                 const size_t *len, size_t count);

#endif
