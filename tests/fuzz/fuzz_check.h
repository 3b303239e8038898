/*
 * fuzz_check: CHECK(cond), the fuzz drivers' invariant: on violation it
 * names the condition and aborts, which libFuzzer (or replay_main) reports
 * with the input. Unlike assert it stays on in every build.
 */
#ifndef SMTP_TLS_PROXY_FUZZ_CHECK_H
#define SMTP_TLS_PROXY_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(c)                                                                             \
    do {                                                                                     \
        if (!(c)) {                                                                          \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c);        \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

#endif
