/*
 * log: one line per event on stderr, text or JSON (DESIGN.md "Log and
 * metrics"). Messages are "key=value" pairs separated by single spaces; a
 * value containing spaces or quotes is written key="..." with \" and \\
 * escapes (log_quote helps). In JSON mode the same pairs become one object:
 * {"ts":"...","level":"info","session":"3f2a",...}. Thread-safe: each line is
 * written with a single write(2).
 */
#ifndef SMTP_TLS_PROXY_LOG_H
#define SMTP_TLS_PROXY_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

void log_init(enum log_level level, enum log_format format);
void log_set_level(enum log_level level);
int log_enabled(enum log_level level);
/* Where lines go: stderr (2) unless changed, e.g. by tests capturing the
 * output. The caller keeps owning fd. */
void log_set_fd(int fd);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                  \
    do {                                                \
        if (log_enabled(LOG_LEVEL_DEBUG))              \
            log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);     \
    } while (0)

/* Writes s into out (size outlen, NUL-terminated) as a log value: unchanged
 * if it has no space, quote, backslash or control character, else quoted and
 * escaped (control characters as \xNN). Returns out. */
const char *log_quote(const char *s, char *out, size_t outlen);

/* Length of the well-formed UTF-8 character at s (at most n bytes
 * available), or 0 if the bytes there are not one (RFC 3629 §4: no overlong
 * forms, surrogates or code points above U+10FFFF). Shared with metrics. */
size_t log_utf8_char_len(const unsigned char *s, size_t n);

#endif
