/* Structured logging: one line per event, "time level component: message
 * key=value ...", to stderr. Level is global for now. */
#ifndef RS_LOG_H
#define RS_LOG_H

#include <stdarg.h>

#include "recstream/operator.h"

void rs_log_set_level(int level);
/* "error", "warn", "info" or "debug" to its level: 0, or -1 if unknown. */
int rs_log_parse_level(const char *s, int *out);
int rs_log_level(void);
void rs_log(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rs_vlog(int level, const char *component, const char *fmt, va_list ap);

#endif
