/*
 * Fuzz target for proxy/policy/tlsrpt.c and tlsrpt_report.c. The first
 * input octet picks the parser (modulo 3), the rest is its input, always an
 * exactly sized heap copy so ASan sees any read past the end:
 *   0  a TXT RRset (records of one length octet and that many octets) for
 *      tlsrpt_txt_select, each record also as text for tlsrpt_txt_parse;
 *   1  day-file text for tlsrpt_line_parse, line after line, each counted
 *      into per-policy stats;
 *   2  report strings: the input, split at its first two NULs, as
 *      organization, contact and report id of a report with one policy.
 * Invariants (abort on violation):
 *   - a parsed record has 1..8 destinations (none after an error); a mailto: one is an address
 *     with one "@" and no space, control character or comma; an https:
 *     one begins "https://" and names a host;
 *   - a line that parses is written back byte for byte as read (the form
 *     is canonical) and counts into stats of its own domain, type and day;
 *     the stats' rows never exceed their bound and add up with
 *     details_dropped to the failures;
 *   - the report JSON has no raw control character and balanced brackets
 *     outside strings; with any smaller buffer it is TLSRPT_ERR_SPACE and
 *     nothing is written past the buffer (ASan).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/policy/tlsrpt.h"
#include "tests/fuzz/fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RECORDS 32

static uint8_t *copy(const uint8_t *p, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);

    CHECK(c != NULL);
    memcpy(c, p, n);
    return c;
}

static void check_record(const struct tlsrpt_record *r)
{
    CHECK(r->n >= 1 && r->n <= TLSRPT_RUA_MAX);
    for (size_t i = 0; i < r->n; i++) {
        const char *u = r->rua[i].uri;
        size_t n = strlen(u);

        CHECK(n > 0 && n <= TLSRPT_URI_MAX);
        if (r->rua[i].kind == TLSRPT_URI_HTTPS) {
            CHECK(n > 8 && memcmp(u, "https://", 8) == 0 && u[8] != '/');
            continue;
        }
        CHECK(r->rua[i].kind == TLSRPT_URI_MAILTO);
        const char *at = strchr(u, '@');
        CHECK(at != NULL && at > u && at[1] != '\0' && strchr(at + 1, '@') == NULL);
        for (size_t k = 0; k < n; k++)
            CHECK((unsigned char)u[k] > 0x20 && (unsigned char)u[k] < 0x7f && u[k] != ',');
    }
}

static void fuzz_txt(const uint8_t *data, size_t size)
{
    uint8_t *rd[MAX_RECORDS];
    const uint8_t *crd[MAX_RECORDS];
    size_t len[MAX_RECORDS], n = 0, pos = 0;
    static struct tlsrpt_record r;

    while (pos < size && n < MAX_RECORDS) {
        size_t l = data[pos++];
        if (l > size - pos)
            l = size - pos;
        rd[n] = copy(data + pos, l);
        crd[n] = rd[n];
        len[n] = l;
        pos += l;
        if (tlsrpt_txt_parse((const char *)rd[n], l, &r, NULL) == TLSRPT_OK) {
            CHECK(l >= 10 && memcmp(rd[n], "v=TLSRPTv1", 10) == 0);
            check_record(&r);
        }
        n++;
    }
    if (tlsrpt_txt_select(crd, len, n, &r, NULL) == TLSRPT_OK)
        check_record(&r);
    else
        CHECK(r.n == 0);
    for (size_t i = 0; i < n; i++)
        free(rd[i]);
}

static void fuzz_lines(const uint8_t *data, size_t size)
{
    static struct tlsrpt_stats s;
    char *in = (char *)copy(data, size);
    char out[TLSRPT_LINE_MAX + 1];
    struct tlsrpt_attempt a;
    size_t pos = 0, used;
    bool started = false;

    while (pos < size && tlsrpt_line_parse(in + pos, size - pos, &a, &used, NULL) == TLSRPT_OK) {
        CHECK(used > 0 && used <= size - pos && used <= TLSRPT_LINE_MAX);
        int n = tlsrpt_line_format(&a, out, sizeof(out));
        CHECK(n > 0 && (size_t)n == used && memcmp(out, in + pos, used) == 0);
        if (!started) {
            tlsrpt_stats_init(&s, a.domain, a.type, tlsrpt_day(a.time));
            started = true;
        }
        bool mine =
            strcmp(s.domain, a.domain) == 0 && s.type == a.type && s.day == tlsrpt_day(a.time);
        CHECK((tlsrpt_stats_add(&s, &a) == TLSRPT_OK) == mine);
        CHECK(s.n <= TLSRPT_DETAILS_MAX);
        uint64_t sum = s.details_dropped;
        for (size_t i = 0; i < s.n; i++)
            sum += s.detail[i].count;
        CHECK(sum == s.failure);
        pos += used;
    }
    free(in);
}

static void check_json(const char *j, size_t n)
{
    int depth = 0;
    bool in_str = false;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)j[i];
        CHECK(c >= 0x20);
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"')
            in_str = true;
        else if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']')
            CHECK(--depth >= 0);
    }
    CHECK(!in_str && depth == 0);
}

static void fuzz_report(const uint8_t *data, size_t size)
{
    static struct tlsrpt_stats s;
    static char full[1 << 19];
    char *in;
    const char *f[3];
    struct tlsrpt_attempt a;

    if (size > 1024) /* enough for every escape; long strings only slow it down */
        size = 1024;
    in = malloc(size + 3);
    CHECK(in != NULL);
    memcpy(in, data, size);
    in[size] = in[size + 1] = in[size + 2] = '\0';
    f[0] = in;
    f[1] = f[0] + strlen(f[0]) + 1;
    f[2] = f[1] + strlen(f[1]) + 1;
    if (f[1] > in + size)
        f[1] = in + size;
    if (f[2] > in + size)
        f[2] = in + size;

    tlsrpt_stats_init(&s, "example.net", TLSRPT_POLICY_STS, 20000);
    memset(&a, 0, sizeof(a));
    a.time = 20000 * 86400LL;
    a.type = TLSRPT_POLICY_STS;
    strcpy(a.domain, "example.net");
    a.result = TLSRPT_VALIDATION_FAILURE;
    strcpy(a.mx_host, "mx.example.net");
    CHECK(tlsrpt_stats_add(&s, &a) == TLSRPT_OK);
    struct tlsrpt_report r = {f[0], f[1], f[2], 20000};
    struct tlsrpt_report_policy p = {&s, f, 3, f, 1};
    long n = tlsrpt_report_json(full, sizeof(full), &r, &p, 1);
    CHECK(n > 0 && (size_t)n < sizeof(full) && full[n] == '\0');
    check_json(full, (size_t)n);
    /* Smaller buffers, exactly sized on the heap: refused, never overrun.
     * A few sizes per input, chosen by it, keep the target fast. */
    size_t caps[4] = {(size_t)n, (size_t)n / 2, 1, (size_t)(size > 0 ? data[size - 1] : 0)};
    for (size_t i = 0; i < 4; i++) {
        size_t cap = caps[i] < (size_t)n ? caps[i] : (size_t)n;
        char *b = malloc(cap ? cap : 1);
        CHECK(b != NULL);
        CHECK(tlsrpt_report_json(b, cap, &r, &p, 1) == TLSRPT_ERR_SPACE);
        free(b);
    }
    free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % 3) {
    case 0:
        fuzz_txt(data + 1, size - 1);
        break;
    case 1:
        fuzz_lines(data + 1, size - 1);
        break;
    default:
        fuzz_report(data + 1, size - 1);
        break;
    }
    return 0;
}
