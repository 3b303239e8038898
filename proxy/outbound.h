/* outbound: the dialogue engine of an outbound session (issue 3). */
#ifndef SMTP_TLS_PROXY_OUTBOUND_H
#define SMTP_TLS_PROXY_OUTBOUND_H
#endif
