/*
 * Unit tests for proxy/policy/tlsrpt_result.c: how a session's outcome is
 * reported (RFC 8460 §4.3 result types, §4.4 policy types), row by row as
 * tlsrpt_result.h documents it, and the TLSA policy-string.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/policy/tlsrpt_result.h"

#define NO -1 /* not recorded */
#define OK -2 /* success */

enum { TLSA = TLSRPT_POLICY_TLSA, STS = TLSRPT_POLICY_STS, NPF = TLSRPT_POLICY_NONE };

static void check(int line, struct tlsrpt_outcome o, int type, int want)
{
    struct tlsrpt_verdict v = tlsrpt_classify(&o);

    if (want == NO) {
        if (v.record)
            fail_msg("row at line %d: recorded, want nothing", line);
        return;
    }
    if (!v.record)
        fail_msg("row at line %d: not recorded", line);
    if ((int)v.type != type)
        fail_msg("row at line %d: type %s, want %s", line, tlsrpt_policy_type_str(v.type),
                 tlsrpt_policy_type_str((enum tlsrpt_policy_type)type));
    if (want == OK && !v.success)
        fail_msg("row at line %d: %s, want success", line, tlsrpt_result_str(v.result));
    if (want != OK && (v.success || (int)v.result != want))
        fail_msg("row at line %d: %s, want %s", line,
                 v.success ? "success" : tlsrpt_result_str(v.result),
                 tlsrpt_result_str((enum tlsrpt_result)want));
}

#define ROW(tls, cert, dane, sts, off, type, want)                                                 \
    check(__LINE__, (struct tlsrpt_outcome){tls, cert, dane, sts, off}, type, want)

static void test_dane(void **state)
{
    (void)state;
    /* success only with TLS and a match */
    ROW(TLSRPT_TLS_OK, TLSRPT_CERT_UNCHECKED, TLSRPT_DANE_MATCH, 0, false, TLSA, OK);
    /* the PKIX result does not matter under DANE */
    ROW(TLSRPT_TLS_OK, TLSRPT_CERT_NOT_TRUSTED, TLSRPT_DANE_MATCH, 0, false, TLSA, OK);
    /* a mismatch, enforced (the handshake failed) or only logged */
    ROW(TLSRPT_TLS_CERT_FAILED, TLSRPT_CERT_UNCHECKED, TLSRPT_DANE_NO_MATCH, 0, false, TLSA,
        TLSRPT_TLSA_INVALID);
    ROW(TLSRPT_TLS_OK, TLSRPT_CERT_OK, TLSRPT_DANE_NO_MATCH, 0, false, TLSA, TLSRPT_TLSA_INVALID);
    ROW(TLSRPT_TLS_CERT_FAILED, TLSRPT_CERT_OK, TLSRPT_DANE_NAME_MISMATCH, 0, false, TLSA,
        TLSRPT_CERTIFICATE_HOST_MISMATCH);
    ROW(TLSRPT_TLS_CERT_FAILED, TLSRPT_CERT_EXPIRED, TLSRPT_DANE_CHAIN_INVALID, 0, false, TLSA,
        TLSRPT_CERTIFICATE_NOT_TRUSTED);
    ROW(TLSRPT_TLS_CERT_FAILED, TLSRPT_CERT_OTHER, TLSRPT_DANE_ERROR, 0, false, TLSA,
        TLSRPT_VALIDATION_FAILURE);
    ROW(TLSRPT_TLS_CERT_FAILED, TLSRPT_CERT_OK, TLSRPT_DANE_MATCH, 0, false, TLSA,
        TLSRPT_VALIDATION_FAILURE);
    /* no TLS to check */
    ROW(TLSRPT_TLS_NO_STARTTLS, 0, TLSRPT_DANE_MATCH, 0, false, TLSA,
        TLSRPT_STARTTLS_NOT_SUPPORTED);
    ROW(TLSRPT_TLS_REFUSED, 0, TLSRPT_DANE_ERROR, 0, false, TLSA, TLSRPT_STARTTLS_NOT_SUPPORTED);
    ROW(TLSRPT_TLS_FAILED, 0, TLSRPT_DANE_ERROR, 0, false, TLSA, TLSRPT_VALIDATION_FAILURE);
    /* secure records, none usable: whatever TLS did */
    ROW(TLSRPT_TLS_OK, TLSRPT_CERT_OK, TLSRPT_DANE_UNUSABLE, 0, false, TLSA, TLSRPT_TLSA_INVALID);
    ROW(TLSRPT_TLS_NO_STARTTLS, 0, TLSRPT_DANE_UNUSABLE, 0, false, TLSA, TLSRPT_TLSA_INVALID);
    /* a DNSSEC failure ends the attempt before it connects */
    ROW(TLSRPT_TLS_UNKNOWN, 0, TLSRPT_DANE_DNS_FAILED, 0, false, TLSA, TLSRPT_DNSSEC_INVALID);
    ROW(TLSRPT_TLS_OK, 0, TLSRPT_DANE_DNS_FAILED, 0, false, TLSA, TLSRPT_DNSSEC_INVALID);
    /* a session that never got to the EHLO reply is not counted */
    ROW(TLSRPT_TLS_UNKNOWN, 0, TLSRPT_DANE_MATCH, 0, false, TLSA, NO);
    ROW(TLSRPT_TLS_UNKNOWN, 0, TLSRPT_DANE_UNUSABLE, 0, false, TLSA, NO);
    /* DANE comes before MTA-STS */
    ROW(TLSRPT_TLS_OK, TLSRPT_CERT_OK, TLSRPT_DANE_MATCH, TLSRPT_MTASTS_FETCH_ERROR, false, TLSA,
        OK);
}

static void test_no_policy(void **state)
{
    (void)state;
    ROW(TLSRPT_TLS_OK, TLSRPT_CERT_OK, 0, 0, false, NPF, OK);
    /* without a published policy, a certificate problem that did not
     * stop TLS is no failure */
    ROW(TLSRPT_TLS_OK, TLSRPT_CERT_NAME_MISMATCH, 0, 0, false, NPF, OK);
    ROW(TLSRPT_TLS_NO_STARTTLS, 0, 0, 0, false, NPF, TLSRPT_STARTTLS_NOT_SUPPORTED);
    ROW(TLSRPT_TLS_REFUSED, 0, 0, 0, false, NPF, TLSRPT_STARTTLS_NOT_SUPPORTED);
    ROW(TLSRPT_TLS_FAILED, 0, 0, 0, false, NPF, TLSRPT_VALIDATION_FAILURE);
    /* policy verify: the certificate failed the handshake */
    ROW(TLSRPT_TLS_CERT_FAILED, TLSRPT_CERT_NAME_MISMATCH, 0, 0, false, NPF,
        TLSRPT_CERTIFICATE_HOST_MISMATCH);
    ROW(TLSRPT_TLS_CERT_FAILED, TLSRPT_CERT_EXPIRED, 0, 0, false, NPF, TLSRPT_CERTIFICATE_EXPIRED);
    ROW(TLSRPT_TLS_CERT_FAILED, TLSRPT_CERT_NOT_TRUSTED, 0, 0, false, NPF,
        TLSRPT_CERTIFICATE_NOT_TRUSTED);
    ROW(TLSRPT_TLS_CERT_FAILED, TLSRPT_CERT_OTHER, 0, 0, false, NPF, TLSRPT_VALIDATION_FAILURE);
    ROW(TLSRPT_TLS_CERT_FAILED, TLSRPT_CERT_UNCHECKED, 0, 0, false, NPF, TLSRPT_VALIDATION_FAILURE);
    /* policy none, or no EHLO reply: nothing */
    ROW(TLSRPT_TLS_NO_STARTTLS, 0, 0, 0, true, NPF, NO);
    ROW(TLSRPT_TLS_UNKNOWN, 0, 0, 0, false, NPF, NO);
}

static void test_sts(void **state)
{
    (void)state;
    ROW(TLSRPT_TLS_OK, TLSRPT_CERT_OK, 0, TLSRPT_MTASTS_APPLIED, false, STS, OK);
    ROW(TLSRPT_TLS_OK, TLSRPT_CERT_NAME_MISMATCH, 0, TLSRPT_MTASTS_APPLIED, false, STS,
        TLSRPT_CERTIFICATE_HOST_MISMATCH);
    ROW(TLSRPT_TLS_OK, TLSRPT_CERT_EXPIRED, 0, TLSRPT_MTASTS_APPLIED, false, STS,
        TLSRPT_CERTIFICATE_EXPIRED);
    ROW(TLSRPT_TLS_OK, TLSRPT_CERT_UNCHECKED, 0, TLSRPT_MTASTS_APPLIED, false, STS,
        TLSRPT_VALIDATION_FAILURE);
    ROW(TLSRPT_TLS_NO_STARTTLS, 0, 0, TLSRPT_MTASTS_APPLIED, false, STS,
        TLSRPT_STARTTLS_NOT_SUPPORTED);
    ROW(TLSRPT_TLS_UNKNOWN, 0, 0, TLSRPT_MTASTS_APPLIED, false, STS, NO);
    ROW(TLSRPT_TLS_UNKNOWN, 0, 0, TLSRPT_MTASTS_FETCH_ERROR, false, STS,
        TLSRPT_STS_POLICY_FETCH_ERROR);
    ROW(TLSRPT_TLS_OK, 0, 0, TLSRPT_MTASTS_INVALID, false, STS, TLSRPT_STS_POLICY_INVALID);
    ROW(TLSRPT_TLS_OK, 0, 0, TLSRPT_MTASTS_WEBPKI_INVALID, false, STS, TLSRPT_STS_WEBPKI_INVALID);
}

#define STS_CERT(mx_ok, name_ok, trusted, handshake, want)                                         \
    assert_int_equal(tlsrpt_sts_cert(mx_ok, name_ok, trusted, handshake), want)

static void test_sts_cert(void **state)
{
    (void)state;
    /* valid for an allowed MX host: success, whatever the handshake saw
     * (it checks the connected address's name, not the MX host's) */
    STS_CERT(true, true, true, TLSRPT_CERT_NAME_MISMATCH, TLSRPT_CERT_OK);
    STS_CERT(true, true, true, TLSRPT_CERT_UNCHECKED, TLSRPT_CERT_OK);
    /* MX not in the policy: validation-failure, also with a good chain */
    STS_CERT(false, false, false, TLSRPT_CERT_OK, TLSRPT_CERT_OTHER);
    STS_CERT(false, false, true, TLSRPT_CERT_EXPIRED, TLSRPT_CERT_OTHER);
    /* trusted, for another name */
    STS_CERT(true, false, true, TLSRPT_CERT_UNCHECKED, TLSRPT_CERT_NAME_MISMATCH);
    STS_CERT(true, false, true, TLSRPT_CERT_EXPIRED, TLSRPT_CERT_NAME_MISMATCH);
    /* untrusted: expired only when the handshake's check says so */
    STS_CERT(true, false, false, TLSRPT_CERT_EXPIRED, TLSRPT_CERT_EXPIRED);
    STS_CERT(true, false, false, TLSRPT_CERT_NOT_TRUSTED, TLSRPT_CERT_NOT_TRUSTED);
    STS_CERT(true, false, false, TLSRPT_CERT_UNCHECKED, TLSRPT_CERT_NOT_TRUSTED);
    STS_CERT(true, false, false, TLSRPT_CERT_NAME_MISMATCH, TLSRPT_CERT_NOT_TRUSTED);
    /* and through tlsrpt_classify: the result types */
    ROW(TLSRPT_TLS_OK, tlsrpt_sts_cert(false, false, true, TLSRPT_CERT_OK), 0,
        TLSRPT_MTASTS_APPLIED, false, STS, TLSRPT_VALIDATION_FAILURE);
    ROW(TLSRPT_TLS_OK, tlsrpt_sts_cert(true, false, true, TLSRPT_CERT_OK), 0, TLSRPT_MTASTS_APPLIED,
        false, STS, TLSRPT_CERTIFICATE_HOST_MISMATCH);
    ROW(TLSRPT_TLS_OK, tlsrpt_sts_cert(true, false, false, TLSRPT_CERT_OK), 0,
        TLSRPT_MTASTS_APPLIED, false, STS, TLSRPT_CERTIFICATE_NOT_TRUSTED);
    ROW(TLSRPT_TLS_OK, tlsrpt_sts_cert(true, false, false, TLSRPT_CERT_EXPIRED), 0,
        TLSRPT_MTASTS_APPLIED, false, STS, TLSRPT_CERTIFICATE_EXPIRED);
    /* no TLS: the negotiation's failure, not the chain's */
    ROW(TLSRPT_TLS_NO_STARTTLS, tlsrpt_sts_cert(true, false, false, TLSRPT_CERT_UNCHECKED), 0,
        TLSRPT_MTASTS_APPLIED, false, STS, TLSRPT_STARTTLS_NOT_SUPPORTED);
}

static void test_tlsa_string(void **state)
{
    static const uint8_t d[32] = {0x00, 0x01, 0xab, 0xff};
    struct tlsa_record r = {.usage = 3, .selector = 1, .mtype = 1, .data = d, .len = 32};
    char buf[80], small[70];

    (void)state;
    assert_int_equal(tlsrpt_tlsa_string(&r, buf, sizeof(buf)), 6 + 64);
    assert_string_equal(buf,
                        "3 1 1 0001abff00000000000000000000000000000000000000000000000000000000");
    /* exactly the room for it and its NUL, and one short */
    assert_int_equal(tlsrpt_tlsa_string(&r, buf, 71), 70);
    assert_int_equal(tlsrpt_tlsa_string(&r, small, sizeof(small)), TLSRPT_ERR_SPACE);
    assert_string_equal(small, "");
    r.len = 0;
    assert_int_equal(tlsrpt_tlsa_string(&r, buf, sizeof(buf)), 6);
    assert_string_equal(buf, "3 1 1 ");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dane),
        cmocka_unit_test(test_no_policy),
        cmocka_unit_test(test_sts),
        cmocka_unit_test(test_sts_cert),
        cmocka_unit_test(test_tlsa_string),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
