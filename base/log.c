/*
 * log.c - one leveled logger, one line per event, key=value fields.
 *
 * Lines go to stderr in a single write() so that lines from several
 * processes sharing a terminal or file do not interleave mid-line.
 * The level and node id are process-wide: a process runs one node.
 */
#include "base.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static enum nx_log_level current_level = NX_LOG_INFO;
static char current_node[24];

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int nx_log_level_parse(const char *name)
{
    for (size_t i = 0; i < NX_ARRAY_LEN(level_names); i++)
        if (strcmp(name, level_names[i]) == 0)
            return (int)i;
    return -1;
}

void nx_log_set_level(enum nx_log_level level)
{
    current_level = level;
}
enum nx_log_level nx_log_get_level(void)
{
    return current_level;
}

void nx_log_set_node(const char *node_id)
{
    if (node_id == NULL)
        current_node[0] = '\0';
    else
        snprintf(current_node, sizeof current_node, "%s", node_id);
}

static size_t format_timestamp(char *out, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(out + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
    return n + (m > 0 ? (size_t)m : 0);
}

void nx_logv(enum nx_log_level level, const char *event, const char *fmt, va_list ap)
{
    if (level < current_level)
        return;
    char line[LOG_LINE_MAX];
    char ts[40];
    format_timestamp(ts, sizeof ts);
    int n;
    if (current_node[0])
        n = snprintf(line, sizeof line, "ts=%s level=%s node=%s event=%s", ts, level_names[level],
                     current_node, event);
    else
        n = snprintf(line, sizeof line, "ts=%s level=%s event=%s", ts, level_names[level], event);
    size_t len = n > 0 ? (size_t)n : 0;
    if (fmt && fmt[0] && len < sizeof line - 2) {
        line[len++] = ' ';
        n = vsnprintf(line + len, sizeof line - len, fmt, ap);
        if (n > 0)
            len += (size_t)n;
    }
    if (len > sizeof line - 2)
        len = sizeof line - 2; /* truncated line still ends in a newline */
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nowhere left to report a failed log write */
}

void nx_log(enum nx_log_level level, const char *event, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    nx_logv(level, event, fmt, ap);
    va_end(ap);
}
