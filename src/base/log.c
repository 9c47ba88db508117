#include "log.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static const char *log_name = "tvmrpc";
static log_level_t log_level = LOG_INFO;
static FILE *log_stream;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_init(const char *name, log_level_t level)
{
    log_name = name;
    log_level = level;
}

void log_set_level(log_level_t level)
{
    log_level = level;
}

log_level_t log_get_level(void)
{
    return log_level;
}

void log_set_silent(int silent)
{
    if (silent && log_level < LOG_WARN)
        log_level = LOG_WARN;
}

void log_set_stream(FILE *fp)
{
    log_stream = fp;
}

int log_level_parse(const char *s, log_level_t *out)
{
    static const char *const names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i <= LOG_OFF; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    return -1;
}

size_t log_format(char *out, size_t outlen, log_level_t level, const char *name, double unix_time,
                  const char *fmt, va_list ap)
{
    if (outlen < 2)
        return 0;
    time_t secs = (time_t)unix_time;
    int millis = (int)((unix_time - (double)secs) * 1000.0);
    struct tm tm;
    gmtime_r(&secs, &tm);
    int n = snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis, name,
                     level_names[level]);
    size_t used = n < 0 ? 0 : (size_t)n;
    if (used < outlen - 1) {
        int m = vsnprintf(out + used, outlen - used, fmt, ap);
        used += m < 0 ? 0 : (size_t)m;
    }
    /* A truncated line still ends with a newline, so lines never merge. */
    if (used > outlen - 2)
        used = outlen - 2;
    out[used++] = '\n';
    out[used] = '\0';
    return used;
}

static void log_emit(log_level_t level, const char *fmt, va_list ap)
{
    if (level < log_level)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char line[LOG_LINE_MAX];
    size_t n = log_format(line, sizeof(line), level, log_name,
                          (double)ts.tv_sec + (double)ts.tv_nsec / 1e9, fmt, ap);
    /* One write per line: lines from forked workers do not interleave. */
    FILE *fp = log_stream ? log_stream : stderr;
    if (fp == stderr) {
        ssize_t unused = write(STDERR_FILENO, line, n);
        (void)unused;
    } else {
        fwrite(line, 1, n, fp);
        fflush(fp);
    }
}

#define LOG_FN(fname, level)                                                                       \
    void fname(const char *fmt, ...)                                                               \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        log_emit(level, fmt, ap);                                                                  \
        va_end(ap);                                                                                \
    }

LOG_FN(log_debug, LOG_DEBUG)
LOG_FN(log_info, LOG_INFO)
LOG_FN(log_warn, LOG_WARN)
LOG_FN(log_error, LOG_ERROR)
