/* Logging: one line per event to stderr, "time level component: message"
 * or a JSON object {"time","level","component","msg"} (rs_log_set_format),
 * optionally with key=value fields (rs_log_kv): text appends
 * " | key=value key2=value2" (a value with spaces, quotes, '=', '|' or
 * nothing in it is double-quoted with \" and \\ escaped), JSON adds them
 * as members after "msg" (values of up to 18 digits, optionally negative,
 * as numbers; keys named time, level, component or msg get a "kv_"
 * prefix).
 * A default level and optional per-component levels (rs_log_configure);
 * set both before threads log. */
#ifndef RS_LOG_H
#define RS_LOG_H

#include <stdarg.h>

#include "recstream/operator.h"

void rs_log_set_level(int level);
/* "error", "warn", "info" or "debug" to its level: 0, or -1 if unknown. */
int rs_log_parse_level(const char *s, int *out);
int rs_log_level(void);
/* "LEVEL", "COMPONENT=LEVEL" or both, comma-separated ("warn,http=debug");
 * components are "engine", "http", "kafka", ... and operator node names.
 * 0, or -1 with a message in err (nothing changed). */
int rs_log_configure(const char *spec, char *err, size_t err_size);
/* Checks a spec as rs_log_configure would, changing nothing. */
int rs_log_check(const char *spec, char *err, size_t err_size);
/* "text" or "json" to *json (0/1); -1 if neither. */
int rs_log_parse_format(const char *s, int *json);
void rs_log_set_format(int json);
void rs_log(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rs_vlog(int level, const char *component, const char *fmt, va_list ap);
/* A line with fields: kv is NULL or a NULL-terminated list of key, value,
 * key, value, ... (NULL values are skipped). */
void rs_log_kv(int level, const char *component, const char *const *kv,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void rs_vlog_kv(int level, const char *component, const char *const *kv,
                const char *fmt, va_list ap);

#endif
