/*
 * Fuzz target for proxy/policy/tlsa.c. Input layout: a sequence of records,
 * each one length octet followed by that many octets of TLSA RDATA (a
 * length past the end takes what is left). Every RDATA is an exactly sized
 * heap copy, so a read past its end is caught by ASan. Invariants (abort on
 * violation):
 *   - tlsa_parse: fails exactly for RDATA under 3 octets; otherwise the
 *     fields are the first three octets and the data the rest, in place;
 *   - tlsa_set_build: the verdict is NONE exactly for no records,
 *     AUTHENTICATE exactly when a kept record exists; every kept record is
 *     usable (usage 2/3, selector 0/1, matching type 0/1/2 with a length
 *     that fits), points into its RDATA, appears once; n <= min(total,
 *     TLSA_MAX_RECORDS); has_ee / has_ta are what the kept records say.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/policy/tlsa.h"
#include "tests/fuzz/fuzz_session.h" /* CHECK */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_IN 64

static bool expected_usable(const struct tlsa_record *r)
{
    if (r->usage != 2 && r->usage != 3)
        return false;
    if (r->selector > 1)
        return false;
    return (r->mtype == 0 && r->len > 0) || (r->mtype == 1 && r->len == 32) ||
           (r->mtype == 2 && r->len == 64);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *rd[MAX_IN];
    const uint8_t *crd[MAX_IN];
    size_t len[MAX_IN], n = 0, pos = 0;
    struct tlsa_set s;

    while (pos < size && n < MAX_IN) {
        size_t l = data[pos++];
        if (l > size - pos)
            l = size - pos;
        rd[n] = malloc(l ? l : 1);
        CHECK(rd[n] != NULL);
        memcpy(rd[n], data + pos, l);
        crd[n] = rd[n];
        len[n] = l;
        pos += l;

        struct tlsa_record r;
        int rc = tlsa_parse(rd[n], l, &r);
        CHECK((rc == TLSA_OK) == (l >= 3));
        if (rc == TLSA_OK) {
            CHECK(r.usage == rd[n][0] && r.selector == rd[n][1] && r.mtype == rd[n][2]);
            CHECK(r.data == rd[n] + 3 && r.len == l - 3);
            CHECK(tlsa_usable(&r) == expected_usable(&r));
        }
        n++;
    }

    enum tlsa_verdict v = tlsa_set_build(&s, crd, len, n);
    CHECK(s.total == n);
    CHECK(s.n <= n && s.n <= TLSA_MAX_RECORDS);
    CHECK((v == TLSA_VERDICT_NONE) == (n == 0));
    CHECK((v == TLSA_VERDICT_AUTHENTICATE) == (s.n > 0));
    bool ee = false, ta = false;
    for (size_t k = 0; k < s.n; k++) {
        const struct tlsa_record *r = &s.rec[k];
        bool inside = false;

        CHECK(expected_usable(r));
        for (size_t i = 0; i < n && !inside; i++)
            inside = r->data == rd[i] + 3 && r->len == len[i] - 3;
        CHECK(inside);
        for (size_t j = 0; j < k; j++)
            CHECK(!(s.rec[j].usage == r->usage && s.rec[j].selector == r->selector &&
                    s.rec[j].mtype == r->mtype && s.rec[j].len == r->len &&
                    memcmp(s.rec[j].data, r->data, r->len) == 0));
        ee |= r->usage == TLSA_USAGE_DANE_EE;
        ta |= r->usage == TLSA_USAGE_DANE_TA;
    }
    CHECK(ee == s.has_ee && ta == s.has_ta);
    for (size_t i = 0; i < n; i++)
        free(rd[i]);
    return 0;
}
