/* log: leveled, timestamped log lines on stderr, after OpenBSD's daemons:
 * log_warn("%s: ...", __func__). One line per event so operators can grep. */
#ifndef TVMRPC_LOG_H
#define TVMRPC_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

typedef enum log_level {
    LOG_DEBUG = 0,
    LOG_INFO = 1,
    LOG_WARN = 2,
    LOG_ERROR = 3,
    LOG_OFF = 4,
} log_level_t;

/* name: component shown in every line ("tracker", "server", ...). */
void log_init(const char *name, log_level_t level);
void log_set_level(log_level_t level);
log_level_t log_get_level(void);
/* --silent: only warnings and errors, as TVM's tools do. */
void log_set_silent(int silent);
/* Redirect output (tests); NULL restores stderr. */
void log_set_stream(FILE *fp);
/* Parse "debug" | "info" | "warn" | "error" | "off". -1 if unknown. */
int log_level_parse(const char *s, log_level_t *out);

/* Format one complete line (with trailing '\n') into out; returns its length
 * (truncated lines still end with '\n'). Exposed for tests. */
size_t log_format(char *out, size_t outlen, log_level_t level, const char *name, double unix_time,
                  const char *fmt, va_list ap);

void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
