/*
 * tls: BoringSSL over in-memory buffers. Ciphertext goes in with tls_feed()
 * and comes out of tls_out(); plaintext goes in with tls_write() and comes
 * out of tls_read(). No sockets, no libuv: conn.c moves the bytes.
 * Only the files of proxy/tls include <openssl/...>.
 */
#ifndef SMTP_TLS_PROXY_TLS_H
#define SMTP_TLS_PROXY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/core/buf.h"

/* The TLS 1.2 suites used when tls.ciphers is not set: forward-secret AEAD
 * suites only, ECDSA before RSA at equal strength. TLS 1.3 suites are not
 * configurable in BoringSSL (all three are AEADs). */
#define TLS_DEFAULT_CIPHERS                                      \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* What a context is made from (config fills it in; every string is owned by
 * whoever owns the struct). */
struct tls_options {
    char **certificates;  /* PEM chain files, ncertificates of them (may be 0) */
    size_t ncertificates;
    char **keys;          /* one key file per certificate, same order */
    size_t nkeys;
    int min_version;      /* 12 or 13 */
    char *ciphers;        /* TLS 1.2 cipher list, BoringSSL syntax */
    char *ca_file;
    char *ticket_keys;    /* server: session ticket key file; NULL = BoringSSL's own keys */
    /* Where each file was named in the configuration ("FILE:LINE"), so that
     * a message about it can say so; NULL arrays or entries when unknown.
     * certificate_at has ncertificates entries, key_at nkeys. */
    char **certificate_at;
    char **key_at;
    char *ticket_keys_at;
};

/* Session ticket key files (tls.ticket_keys): records of TLS_TICKET_KEY_LEN
 * bytes (16-byte name, 32-byte HMAC-SHA256 key, 32-byte AES-256 key), or
 * one record of TLS_TICKET_KEY_LEN_48 bytes (16-byte name, 16-byte AES-128
 * key, 16-byte HMAC key: nginx's older format). */
#define TLS_TICKET_KEY_LEN 80
#define TLS_TICKET_KEY_LEN_48 48

enum tls_status {
    TLS_OK = 0,      /* done / produced data */
    TLS_AGAIN = 1,   /* needs more ciphertext (tls_feed) */
    TLS_CLOSED = 2,  /* peer sent close_notify */
    TLS_ERR = -1,    /* fatal; tls_error() says why */
};

/* A shared, reference-counted context (SSL_CTX and its certificates). */
struct tls_ctx;

/*
 * Server context from cfg: certificates[i] with keys[i]. With several, each
 * handshake picks by the client's SNI against the certificates' DNS names
 * (subjectAltName dNSName; exact first, then a wildcard "*.example.net" for
 * exactly one label), then among those by key type (ECDSA/Ed25519 when the
 * client can use it, else RSA); no SNI, or no name that matches: by key type
 * among all. With no certificates, an in-memory self-signed ECDSA P-256
 * certificate for "localhost" is made. TLS 1.2 minimum (1.3 if
 * cfg->min_version == 13), no renegotiation, no 0-RTT, cfg->ciphers for TLS
 * 1.2 (forward-secret AEAD default). A client offering ALPN is refused with
 * the no_application_protocol alert: SMTP has no ALPN identifier, so such a
 * client means another protocol (RFC 7301 §3.2; the ALPACA cross-protocol
 * attack). Session tickets (TLS 1.2 and 1.3) are encrypted with the first
 * key of cfg->ticket_keys and decrypted with any of them, else with
 * BoringSSL's automatic in-memory keys. Returns NULL and writes a message
 * naming the file to err, prefixed with its "FILE:LINE: " when cfg knows it.
 */
struct tls_ctx *tls_ctx_server_new(const struct tls_options *cfg, char *err, size_t errlen);

/*
 * Client context for outbound. verify: load cfg->ca_file and make peer
 * verification possible (tls_new_client decides per connection).
 */
struct tls_ctx *tls_ctx_client_new(const struct tls_options *cfg, char *err, size_t errlen);

void tls_ctx_ref(struct tls_ctx *c);
void tls_ctx_unref(struct tls_ctx *c); /* accepts NULL */

struct tls;

/* A server engine; holds a reference to ctx. NULL on -ENOMEM. */
struct tls *tls_new_server(struct tls_ctx *ctx);

/* A client engine sending SNI sni (may be NULL for an IP literal). With
 * verify, the chain must validate against ca_file and the certificate must
 * match verify_name (SAN dNSName, or IP address; a name only in the subject
 * CN does not count, RFC 9525 §6.3), else the handshake fails with a reason
 * starting "certificate"; a NULL or empty verify_name fails verification,
 * never skips the name check. Without verify, the result is still recorded
 * for tls_verify_result().
 * lenient (opportunistic delivery, RFC 7435: any encryption beats
 * plaintext): this connection also accepts TLS 1.0 and 1.1 and every suite
 * BoringSSL still implements (CBC, RSA key exchange) after the context's
 * own list; otherwise the context's minimum version and suites hold. */
struct tls *tls_new_client(struct tls_ctx *ctx, const char *sni, bool verify,
                           const char *verify_name, bool lenient);

/* A client engine that authenticates the server by DANE (RFC 7672 §3.1)
 * instead of PKIX: the chain it presents (leaf first) is matched against
 * the usable records of set (borrowed: it must outlive the handshake) with
 * name as the one reference identifier for DANE-TA (the TLSA base domain,
 * which is also the SNI sent; required). ca_file is not consulted. With
 * enforce, a chain that does not match fails the handshake as a
 * certificate failure (tls_error_is_certificate; tls_error names the DANE
 * result); without, the handshake goes on and tls_dane_status tells. lenient
 * as for tls_new_client. NULL on -ENOMEM or without a name. */
struct tlsa_set;
struct tls *tls_new_client_dane(struct tls_ctx *ctx, const struct tlsa_set *set, const char *name,
                                bool enforce, bool lenient);

/* A DANE engine after the certificate check: its enum tls_dane_result
 * (TLS_DANE_MATCH_EE or _TA when authenticated), with a static explanation
 * of a failure in *why (may be NULL); -1 when t is not a DANE engine or the
 * check has not happened. */
int tls_dane_status(const struct tls *t, const char **why);

void tls_free(struct tls *t); /* accepts NULL */

/* Appends ciphertext from the peer. 0 or -ENOMEM. */
int tls_feed(struct tls *t, const uint8_t *data, size_t len);
/* Lends len bytes of ciphertext at data to the engine without copying
 * them: BoringSSL reads them after anything fed before, until tls_unlend(),
 * which copies what it left into the engine's own buffer (0 or -ENOMEM).
 * data must stay valid and unchanged until then, and nothing else may be
 * fed or lent in between. For a read buffer that is reused by the next
 * read: the common case, all of it consumed, costs no copy. */
void tls_lend(struct tls *t, const uint8_t *data, size_t len);
int tls_unlend(struct tls *t);
/* Ciphertext fed (or lent) but not yet consumed by BoringSSL. */
size_t tls_pending_in(const struct tls *t);

/* Drives the handshake: TLS_OK when complete, TLS_AGAIN, or TLS_ERR. Output
 * (ciphertext to send) accumulates in tls_out(). */
int tls_handshake(struct tls *t);

/* Decrypts into buf (cap bytes): TLS_OK with *n > 0, TLS_AGAIN (n = 0),
 * TLS_CLOSED, or TLS_ERR. Reading can also queue ciphertext (a KeyUpdate
 * reply, a fatal alert), so drain tls_out() after it as after the handshake. */
int tls_read(struct tls *t, uint8_t *buf, size_t cap, size_t *n);

/* Encrypts all len bytes into tls_out(). TLS_OK or TLS_ERR. */
int tls_write(struct tls *t, const uint8_t *data, size_t len);

/* Queues a close_notify alert into tls_out(). */
void tls_shutdown(struct tls *t);

/* Ciphertext waiting to be sent; the caller drains it (buf_consume/buf_move). */
struct buf *tls_out(struct tls *t);

/* After the handshake: "TLSv1.3", cipher standard name (NULL before the
 * handshake), SNI the client sent (server side; NULL if none). Static or
 * engine-owned strings. */
const char *tls_version(const struct tls *t);
const char *tls_cipher(const struct tls *t);
const char *tls_sni(const struct tls *t);

/* After the handshake: whether it resumed an earlier session (a ticket). */
bool tls_resumed(const struct tls *t);

/* Client side: true if the peer chain verified and matched the name, or
 * for a DANE engine matched the TLSA records (*why is then "ok"); else
 * *why is a static string ("certificate has expired", "hostname mismatch",
 * "self signed certificate", ...; "no-match" and the other
 * tls_dane_result_str() names for DANE). why may be NULL. */
bool tls_verify_result(const struct tls *t, const char **why);

/* Client side: the class of what the PKIX check of the peer's chain found
 * (it runs whether or not verify was asked for), so that a caller can name
 * the failure (TLS-RPT result types) without reading tls_verify_result()'s
 * text. TLS_CERT_UNCHECKED before the check, and always for a DANE engine
 * (tls_dane_status tells there). */
enum tls_cert_problem {
    TLS_CERT_OK,
    TLS_CERT_UNCHECKED,
    TLS_CERT_NAME_MISMATCH, /* no SAN matches the name (or no name to match) */
    TLS_CERT_EXPIRED,       /* a certificate of the chain has expired */
    TLS_CERT_NOT_TRUSTED,   /* unknown CA, self-signed, chain, constraints, not yet valid */
    TLS_CERT_OTHER,         /* unparsable, out of memory, anything else */
};
enum tls_cert_problem tls_verify_problem(const struct tls *t);

/* Client side, after the handshake: copies of the chain the peer sent
 * (DER, leaf first), for decisions made after the handshake (per-recipient
 * DANE of a transparent session). At most max certificates (the leaf and
 * its nearest issuers) and max_bytes octets in all go into one heap block,
 * *block, which the caller frees; der[i] and len[i] point into it. Returns
 * the count (0: no certificate, *block NULL) or -ENOMEM. */
int tls_peer_chain(const struct tls *t, size_t max, size_t max_bytes, uint8_t **block,
                   const uint8_t **der, size_t *len);

/* Whether a kept chain (n DER certificates, leaf first, borrowed) is
 * PKIX-valid against ctx's ca_file now, for a recipient domain: a DNS name
 * of the leaf's subjectAltName is the domain itself or a name below it
 * (Postfix's smtp_tls_secure_cert_match = nexthop, dot-nexthop), a
 * wildcard "*.D" counting when D is either. Names compare
 * case-insensitively; the subject CN is never consulted (RFC 9525 §6.3).
 * False without ca_file, on a parse error or out of memory. */
bool tls_chain_valid_for_domain(struct tls_ctx *ctx, const uint8_t *const *der, const size_t *len,
                                size_t n, const char *domain);

/* Whether a kept chain (as above) is PKIX-valid against ctx's ca_file now
 * and, if so, valid for host exactly: MTA-STS (RFC 8461 §4.2) wants the MX
 * host's own name, a DNS name of the leaf's subjectAltName equal to it or
 * a wildcard "*.D" whose D is host minus its first label (RFC 6125 §6.4.3);
 * the subject CN is never consulted. TLS_CHAIN_UNTRUSTED also without
 * ca_file, on a parse error or out of memory. */
enum tls_chain_check {
    TLS_CHAIN_VALID,     /* trusted, and for host */
    TLS_CHAIN_NAME,      /* trusted, not for host */
    TLS_CHAIN_UNTRUSTED, /* not PKIX-valid */
};
enum tls_chain_check tls_chain_check_host(struct tls_ctx *ctx, const uint8_t *const *der,
                                          const size_t *len, size_t n, const char *host);

/* Why the last TLS_ERR happened: BoringSSL's reason (the first error-queue
 * entry of its TLS library, e.g. "WRONG_VERSION_NUMBER",
 * "TLSV1_ALERT_PROTOCOL_VERSION"), "certificate verify failed: <why>", or a
 * static description; valid until the next call on t. */
const char *tls_error(const struct tls *t);

/* Whether the last TLS_ERR was the peer's certificate failing verification
 * (so a caller picks its reply from this, never from tls_error()'s text). */
bool tls_error_is_certificate(const struct tls *t);

/* Library versions for -V. */
const char *tls_library_version(void);

#endif
