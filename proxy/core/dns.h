/*
 * dns: the DNS messages of the stub resolver behind dnssec = "trust-ad"
 * (RFC 1035 §4, RFC 6891 EDNS0, RFC 6840 §5.7 the AD bit). Pure: a query is
 * built into the caller's buffer, a response parsed from the caller's bytes
 * into a caller-owned struct dns_answer, nothing read past the input and no
 * allocation. The I/O (UDP, TCP on TC, retries) is proxy/net's.
 *
 * Parsing is strict because the bytes come from the network: the header must
 * answer this query (ID, QR, opcode), the one question must echo it (name
 * case-insensitively, type, class IN), every RR of every section must frame
 * exactly inside the message and nothing may follow the last one. Names are
 * at most 255 octets, labels at most 63, and a compression pointer must
 * point strictly before itself (so no loop and no forward reference).
 */
#ifndef SMTP_TLS_PROXY_DNS_H
#define SMTP_TLS_PROXY_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_HEADER_LEN 12
#define DNS_MAX_NAME 255  /* wire octets, RFC 1035 §2.3.4 */
#define DNS_UDP_SIZE 1232 /* the EDNS0 UDP size we advertise (DNS flag day 2020) */
#define DNS_MAX_MSG 65535 /* a TCP message's 2-octet length */
#define DNS_MAX_QUERY (DNS_HEADER_LEN + DNS_MAX_NAME + 4 + 11)
#define DNS_MAX_CNAMES 8 /* CNAMEs followed inside one answer */
#define DNS_MAX_RECORDS                                                                            \
    64 /* records of the asked type kept from one answer                                           \
        */
#define DNS_STORE (DNS_MAX_MSG + 1)

#define DNS_TYPE_A 1
#define DNS_TYPE_CNAME 5
#define DNS_TYPE_MX 15
#define DNS_TYPE_OPT 41
#define DNS_CLASS_IN 1
#define DNS_RCODE_NOERROR 0
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_NXDOMAIN 3

enum dns_status {
    DNS_OK = 0,
    DNS_TRUNCATED = 1,      /* TC set: ask again over TCP (RFC 7766 §5) */
    DNS_ERR_NAME = -1,      /* the name asked for is not a valid host name */
    DNS_ERR_SPACE = -2,     /* the output buffer is too small */
    DNS_ERR_NOT_OURS = -3,  /* ID, QR, opcode or question do not answer the query */
    DNS_ERR_MALFORMED = -4, /* framing, a name, a pointer or an RDATA is wrong */
    DNS_ERR_TOO_MANY = -5,  /* more than DNS_MAX_RECORDS records, or a longer CNAME chain */
};

/* "ok", "truncated", ...: static, for logs. */
const char *dns_status_str(int status);

/*
 * Encodes a presentation name ("mx.example.com", a final dot optional; no
 * escapes, no empty label) into wire format, lower-cased, into out
 * (>= DNS_MAX_NAME octets). Returns its length, or 0 if name is not valid.
 */
size_t dns_name_encode(uint8_t *out, const char *name);

/*
 * Writes a query for name (type qtype, class IN) with identifier id into out
 * (cap octets; DNS_MAX_QUERY always suffices): RD=1, AD=1 (RFC 6840 §5.7:
 * we want the AD bit back), and an EDNS0 OPT record with DO=1 and a UDP
 * size of DNS_UDP_SIZE. Returns its length, or DNS_ERR_NAME / DNS_ERR_SPACE.
 * The ID should be random (RFC 5452 §9.2); the caller draws it.
 */
int dns_query_build(uint8_t *out, size_t cap, uint16_t id, const char *name, uint16_t qtype);

/*
 * One parsed answer. data[i] / len[i] are the RDATA of the records of the
 * asked type, owned by the struct (store): names inside MX RDATA are
 * decompressed, as libunbound delivers them, so that the RDATA stands alone.
 */
struct dns_answer {
    int rcode;    /* the header's RCODE (0..15) */
    bool ad;      /* AD set: the (trusted) server validated it */
    size_t count; /* records of the asked type, after CNAMEs */
    char *data[DNS_MAX_RECORDS];
    int len[DNS_MAX_RECORDS];
    uint32_t ttl; /* least TTL of the kept records and CNAMEs followed; 0 when none */
    size_t used;  /* octets of store in use */
    uint8_t store[DNS_STORE];
};

/*
 * Parses a response msg (len octets) to the query (id, name, qtype) into a
 * (caller-owned, about 66 KiB). DNS_OK with a filled in, DNS_TRUNCATED when
 * TC is set (a holds only rcode and ad), or a negative enum dns_status; on
 * an error a is unspecified. The records kept are those of type qtype and
 * class IN owned by name, or by the end of the chain of CNAMEs that starts
 * at name, followed in the answer section up to DNS_MAX_CNAMES deep.
 */
int dns_response_parse(const uint8_t *msg, size_t len, uint16_t id, const char *name,
                       uint16_t qtype, struct dns_answer *a);

#endif
