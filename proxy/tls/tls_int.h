/*
 * tls_int.h: what tls.c, tls_ctx.c and tls_verify.c share and nobody else
 * sees (listed in srcs, not hdrs, of //proxy/tls). The struct layouts live
 * here so that the engine, the contexts and the verification can each have
 * a file of their own; the public API stays in tls.h.
 */
#ifndef SMTP_TLS_PROXY_TLS_INT_H
#define SMTP_TLS_PROXY_TLS_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/base.h>
#include <openssl/ssl.h>

#include "proxy/core/buf.h"
#include "proxy/tls/tls.h"
#include "proxy/tls/tls_dane.h"

/* One certificate chain with its key, kept as DER buffers so that every
 * handshake shares them by reference. */
struct tls_cert {
    CRYPTO_BUFFER **chain; /* leaf first */
    size_t nchain;
    EVP_PKEY *key;
    int type;              /* EVP_PKEY_RSA, EVP_PKEY_EC or EVP_PKEY_ED25519 */
    uint16_t tls13_sigalg; /* EC keys: the one TLS 1.3 signature scheme of its curve */
    char **names;          /* the leaf's subjectAltName dNSNames, lower case */
    size_t nnames;
};

/* One session ticket key (see tls_ticket.c). */
struct tls_ticket_key {
    uint8_t name[16];
    uint8_t hmac[32];
    uint8_t aes[32];
    size_t hmac_len;       /* 32, or 16 in a 48-byte record */
    const EVP_CIPHER *cipher; /* AES-256-CBC, or AES-128-CBC in a 48-byte record */
};

struct tls_ctx {
    SSL_CTX *ssl_ctx;
    BIO_METHOD *bio_method;   /* per context, so there is no global state to set up */
    atomic_int refs;          /* contexts are shared by the worker threads */
    X509_STORE *store;        /* client: trust anchors from ca_file */
    CRYPTO_BUFFER_POOL *pool; /* client: one copy of each peer certificate */
    char *lenient_ciphers;    /* client: the suites of a lenient connection */
    struct tls_ticket_key *ticket_keys; /* server: [0] encrypts, all decrypt; NULL = BoringSSL's */
    size_t nticket_keys;
    size_t ncerts;
    struct tls_cert certs[];  /* server: certs[0] is also the SSL_CTX default */
};

struct tls {
    SSL *ssl;
    struct tls_ctx *ctx;
    struct buf in;         /* ciphertext fed by the caller, read by the BIO */
    const uint8_t *lent;   /* ciphertext lent by the caller (tls_lend), read after in */
    size_t lent_len;
    struct buf out;        /* ciphertext written by BoringSSL through the BIO */
    char *verify_name;     /* client: name to match, until the handshake is done */
    char *errbuf;          /* allocated only for a composed error message */
    const char *err;       /* static, or errbuf */
    int verify_err;        /* client: X509_V_* of the peer's chain, -1 before */
    bool cert_failed;      /* the last TLS_ERR was the peer certificate failing verification */
    bool verify;           /* client: a failed verification fails the handshake */
    /* client, DANE mode (tls_new_client_dane): the usable TLSA records
     * (borrowed), and the outcome of matching the chain against them:
     * -1 before, else an enum tls_dane_result, with its static why. */
    const struct tlsa_set *dane;
    int dane_result;
    const char *dane_why;
};

/* tls_ctx.c: writes a message to err (errlen bytes; err may be NULL),
 * prefixed with "AT: " when at (a "FILE:LINE" of the configuration) is not
 * NULL. */
__attribute__((format(printf, 4, 5)))
void tls_say(char *err, size_t errlen, const char *at, const char *fmt, ...);

/* tls_ticket.c: reads the ticket key file path into c and installs the
 * ticket callback on c->ssl_ctx; 0, or -1 with a message in err (at is
 * where the configuration names the file). */
int tls_ticket_keys_load(struct tls_ctx *c, const char *path, const char *at, char *err,
                         size_t errlen);

/* tls_ticket.c: wipes and frees c's ticket keys. */
void tls_ticket_keys_free(struct tls_ctx *c);

/* tls.c: the BIO over an engine's buffers. Each context makes its own, so
 * there is no global state to set up; NULL when out of memory. */
BIO_METHOD *tls_bio_method_new(void);

/* tls_verify.c: whether s is an IPv4 or IPv6 address literal. */
bool tls_is_ip_literal(const char *s);

/* tls_verify.c: the client's custom verification callback (SSL_set_custom_verify):
 * records the X509_V_* result of the peer's chain in t->verify_err and fails
 * the handshake with a matching alert only when t->verify is set. */
enum ssl_verify_result_t tls_on_verify(SSL *ssl, uint8_t *alert);

/* tls_verify.c: "DANE <result>: <why>" for a failed DANE match into buf. */
void tls_dane_describe(const struct tls *t, char *buf, size_t len);

/* tls_verify.c: a static string for an X509_V_* result, -1 meaning that no
 * verification took place. */
const char *tls_verify_why(int e);

#endif
