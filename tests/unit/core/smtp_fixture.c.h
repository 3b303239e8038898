/*
 * smtp_fixture.c.h: includes and byte-string shorthands shared by
 * smtp_test.c, smtp_ehlo_test.c and smtp_data_test.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/core/smtp.h"

#define U(s) ((const uint8_t *)(s))
#define SL(s) U(s), (sizeof(s) - 1)
