/*
 * What the DANE handshake and kept-chain tests share: server and client
 * contexts from tests/unit/tls/testdata, the server-ecdsa + CA chain file,
 * TLSA RDATA for a test certificate, and an in-memory handshake. Included
 * by those tests (after cmocka and the BoringSSL headers they use).
 */
#define TD "tests/unit/tls/testdata/"

/* ---- fixtures ---- */

static struct tls_ctx *server_ctx(const char *cert, const char *key)
{
    char *certs[1] = {(char *)cert}, *keys[1] = {(char *)key}, err[256] = "";
    struct tls_options o = {
        .certificates = certs, .ncertificates = 1, .keys = keys, .nkeys = 1, .min_version = 12};
    struct tls_ctx *ctx = tls_ctx_server_new(&o, err, sizeof err);

    if (ctx == NULL)
        fail_msg("server ctx %s: %s", cert, err);
    return ctx;
}

/* A client context with or without the test CA: DANE must not need it. */
static struct tls_ctx *client_ctx(bool with_ca)
{
    char err[256] = "";
    struct tls_options o = {.min_version = 12, .ca_file = with_ca ? TD "ca.pem" : NULL};
    struct tls_ctx *ctx = tls_ctx_client_new(&o, err, sizeof err);

    if (ctx == NULL)
        fail_msg("client ctx: %s", err);
    return ctx;
}

/* server-ecdsa followed by the CA, as a server that sends its chain. */
static char chain_file[512];

static void make_chain_file(void)
{
    const char *dir = getenv("TEST_TMPDIR");
    char buf[8192];
    const char *parts[] = {TD "server-ecdsa.pem", TD "ca.pem"};

    snprintf(chain_file, sizeof chain_file, "%s/server-chain.pem", dir ? dir : "/tmp");
    FILE *out = fopen(chain_file, "w");
    assert_non_null(out);
    for (size_t i = 0; i < 2; i++) {
        FILE *in = fopen(parts[i], "r");
        assert_non_null(in);
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0)
            assert_int_equal(fwrite(buf, 1, n, out), n);
        fclose(in);
    }
    fclose(out);
}

/* One TLSA RDATA (SHA-256) for the certificate in file: of the whole
 * certificate (sel 0) or its SPKI (sel 1). */
static size_t record(uint8_t out[35], uint8_t usage, uint8_t sel, const char *file)
{
    FILE *f = fopen(file, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    uint8_t *der = NULL;
    int n = sel == 0 ? i2d_X509(x, &der) : i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    assert_true(n > 0);
    out[0] = usage, out[1] = sel, out[2] = 1;
    SHA256(der, (size_t)n, out + 3);
    OPENSSL_free(der);
    X509_free(x);
    return 35;
}

static uint8_t rd[2][35];
static struct tlsa_set set;

static void set_of(size_t n, const size_t *len)
{
    const uint8_t *p[2] = {rd[0], rd[1]};
    assert_int_equal(tlsa_set_build(&set, p, len, n), TLSA_VERDICT_AUTHENTICATE);
}

static void xfer(struct tls *from, struct tls *to)
{
    struct buf *o = tls_out(from);
    if (buf_len(o) == 0)
        return;
    assert_int_equal(tls_feed(to, buf_head(o), buf_len(o)), 0);
    buf_consume(o, buf_len(o));
}

static void handshake(struct tls *c, struct tls *s, int *cst, int *sst)
{
    int cs = TLS_AGAIN, ss = TLS_AGAIN;
    for (int i = 0; i < 10 && (cs == TLS_AGAIN || ss == TLS_AGAIN); i++) {
        if (cs == TLS_AGAIN)
            cs = tls_handshake(c);
        xfer(c, s);
        if (ss == TLS_AGAIN)
            ss = tls_handshake(s);
        xfer(s, c);
    }
    *cst = cs;
    *sst = ss;
}
