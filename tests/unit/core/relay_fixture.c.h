/*
 * The relay's replies and a backend's EHLO replies, as the relay and the
 * inbound front end tests expect them (the engines' own strings are
 * static: the tests spell them out, so a changed reply fails a test).
 */
#ifndef TESTS_UNIT_CORE_RELAY_FIXTURE_C_H
#define TESTS_UNIT_CORE_RELAY_FIXTURE_C_H

#define R_EHLO_AFTER_TLS "503 5.5.1 Send EHLO again after STARTTLS\r\n"
#define R_NEED_TLS "530 5.7.0 Must issue a STARTTLS command first\r\n"
#define R_BDAT_SYNTAX "501 5.5.4 Syntax: BDAT size [LAST]\r\n"
#define R_BDAT_NO_CHUNKING "503 5.5.1 BDAT without CHUNKING\r\n"
#define R_BARE_NL_DATA                                                                       \
    "521 5.5.2 Message contains bare CR or LF, refused (SMTP smuggling protection)\r\n"
#define R_PROTOCOL "421 4.5.0 Backend protocol error, closing connection\r\n"
#define R_LOST "421 4.4.2 Backend connection lost\r\n"
#define EHLO "EHLO client.example\r\n"
/* What a legacy backend offers, AUTH included, STARTTLS included (a server
 * that has it but is behind the proxy anyway). */
#define EHLO_REPLY                                                                           \
    "250-mx.example Hello client.example\r\n"                                                \
    "250-PIPELINING\r\n"                                                                     \
    "250-SIZE 10240000\r\n"                                                                  \
    "250-STARTTLS\r\n"                                                                       \
    "250-AUTH PLAIN LOGIN\r\n"                                                               \
    "250-XCLIENT NAME ADDR\r\n"                                                              \
    "250-8BITMIME\r\n"                                                                       \
    "250 ENHANCEDSTATUSCODES\r\n"
#define EHLO_REPLY_TLS                                                                       \
    "250-mx.example Hello client.example\r\n"                                                \
    "250-PIPELINING\r\n"                                                                     \
    "250-SIZE 10240000\r\n"                                                                  \
    "250-AUTH PLAIN LOGIN\r\n"                                                               \
    "250-8BITMIME\r\n"                                                                       \
    "250 ENHANCEDSTATUSCODES\r\n"

#endif
