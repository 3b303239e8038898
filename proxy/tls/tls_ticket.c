/*
 * tls_ticket: session ticket keys from a file (tls.ticket_keys), so that
 * every instance of a fleet behind one load balancer can resume the
 * sessions of the others, in TLS 1.3 and TLS 1.2 alike (BoringSSL uses the
 * same ticket format and callback for both).
 *
 * The file is a sequence of 80-byte records: a 16-byte key name (sent in
 * clear in each ticket, to find the key again), a 32-byte HMAC-SHA256 key
 * and a 32-byte AES-256-CBC key -- the layout nginx and HAProxy read. A file
 * of exactly 48 bytes is one key in nginx's older layout: name, AES-128
 * key, HMAC key (16 bytes each). The first record encrypts new tickets;
 * every record decrypts, and a ticket found under a later record is renewed
 * under the first. Rotation: put a new record first, keep the previous ones
 * for as long as their tickets should still resume, drop the oldest, and
 * send SIGHUP (the keys are read with the rest of the configuration).
 *
 * Without the file, BoringSSL keeps its own random in-memory key, rotated
 * every 48 hours: resumption then works per process and per
 * configuration generation.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/cipher.h>
#include <openssl/digest.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "proxy/tls/tls.h"
#include "proxy/tls/tls_int.h"

/* More keys than anyone rotates through; bounds the file we read. */
#define MAX_TICKET_KEYS 64

void tls_ticket_keys_free(struct tls_ctx *c)
{
    if (c->ticket_keys != NULL) {
        OPENSSL_cleanse(c->ticket_keys, c->nticket_keys * sizeof *c->ticket_keys);
        free(c->ticket_keys);
    }
    c->ticket_keys = NULL;
    c->nticket_keys = 0;
}

/* BoringSSL's ticket callback (SSL_CTX_set_tlsext_ticket_key_cb): encrypt
 * with keys[0]; decrypt with the key the ticket names, 0 (a full handshake)
 * when none has that name, 2 (renew the ticket) when it is not keys[0]. */
static int on_ticket_key(SSL *ssl, uint8_t *key_name, uint8_t *iv, EVP_CIPHER_CTX *ectx,
                         HMAC_CTX *hctx, int encrypt)
{
    const struct tls_ctx *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));

    if (encrypt) {
        const struct tls_ticket_key *k = &c->ticket_keys[0];
        memcpy(key_name, k->name, SSL_TICKET_KEY_NAME_LEN);
        if (!RAND_bytes(iv, EVP_CIPHER_iv_length(k->cipher)) ||
            !EVP_EncryptInit_ex(ectx, k->cipher, NULL, k->aes, iv) ||
            !HMAC_Init_ex(hctx, k->hmac, k->hmac_len, EVP_sha256(), NULL))
            return -1;
        return 1;
    }
    for (size_t i = 0; i < c->nticket_keys; i++) {
        const struct tls_ticket_key *k = &c->ticket_keys[i];
        if (memcmp(key_name, k->name, SSL_TICKET_KEY_NAME_LEN) != 0)
            continue;
        if (!HMAC_Init_ex(hctx, k->hmac, k->hmac_len, EVP_sha256(), NULL) ||
            !EVP_DecryptInit_ex(ectx, k->cipher, NULL, k->aes, iv))
            return -1;
        return i == 0 ? 1 : 2;
    }
    return 0;
}

/* Splits the file's bytes into keys (see the top of the file). */
static void parse_keys(struct tls_ticket_key *keys, size_t nkeys, const uint8_t *d, size_t rec)
{
    for (size_t i = 0; i < nkeys; i++, d += rec) {
        struct tls_ticket_key *k = &keys[i];
        memcpy(k->name, d, 16);
        if (rec == TLS_TICKET_KEY_LEN) {
            memcpy(k->hmac, d + 16, 32);
            memcpy(k->aes, d + 48, 32);
            k->hmac_len = 32;
            k->cipher = EVP_aes_256_cbc();
        } else {
            memcpy(k->aes, d + 16, 16);
            memcpy(k->hmac, d + 32, 16);
            k->hmac_len = 16;
            k->cipher = EVP_aes_128_cbc();
        }
    }
}

int tls_ticket_keys_load(struct tls_ctx *c, const char *path, const char *at, char *err,
                         size_t errlen)
{
    uint8_t buf[MAX_TICKET_KEYS * TLS_TICKET_KEY_LEN + 1];
    size_t len = 0, rec, n;
    int rc = -1;
    FILE *f = fopen(path, "rb");

    if (f == NULL) {
        tls_say(err, errlen, at, "tls.ticket_keys: cannot load \"%s\": %s", path, strerror(errno));
        return -1;
    }
    while (len < sizeof buf && (n = fread(buf + len, 1, sizeof buf - len, f)) > 0)
        len += n;
    if (ferror(f)) {
        tls_say(err, errlen, at, "tls.ticket_keys: cannot load \"%s\": %s", path, strerror(errno));
        goto out;
    }
    if (len == TLS_TICKET_KEY_LEN_48) {
        rec = TLS_TICKET_KEY_LEN_48;
    } else if (len > 0 && len % TLS_TICKET_KEY_LEN == 0 && len < sizeof buf) {
        rec = TLS_TICKET_KEY_LEN;
    } else {
        tls_say(err, errlen, at,
                "tls.ticket_keys: \"%s\": %s%zu bytes: expected 1 to %d records of %d bytes, "
                "or one key of %d bytes",
                path, len == sizeof buf ? "more than " : "", len == sizeof buf ? len - 1 : len,
                MAX_TICKET_KEYS, TLS_TICKET_KEY_LEN, TLS_TICKET_KEY_LEN_48);
        goto out;
    }
    c->nticket_keys = len / rec;
    c->ticket_keys = calloc(c->nticket_keys, sizeof *c->ticket_keys);
    if (c->ticket_keys == NULL) {
        c->nticket_keys = 0;
        tls_say(err, errlen, at, "tls.ticket_keys: cannot load \"%s\": out of memory", path);
        goto out;
    }
    parse_keys(c->ticket_keys, c->nticket_keys, buf, rec);
    SSL_CTX_set_tlsext_ticket_key_cb(c->ssl_ctx, on_ticket_key);
    rc = 0;

out:
    OPENSSL_cleanse(buf, sizeof buf);
    fclose(f);
    return rc;
}
