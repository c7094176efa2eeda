/* Log lines with a timestamp, level and component; written with one
 * fprintf so lines from librdkafka's threads do not interleave. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "util.h"

static int g_level = RS_LOG_INFO;

void rs_log_set_level(int level) {
  g_level = level;
}
int rs_log_level(void) {
  return g_level;
}

void rs_vlog(int level, const char *component, const char *fmt, va_list ap) {
  if (level > g_level)
    return;
  static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
  int64_t ms = rs_wall_ms();
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char msg[2048];
  vsnprintf(msg, sizeof msg, fmt, ap);
  fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s %s: %s\n",
          tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
          tm.tm_sec, (int)(ms % 1000),
          names[level < 0   ? 0
                : level > 3 ? 3
                            : level],
          component, msg);
}

void rs_log(int level, const char *component, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  rs_vlog(level, component, fmt, ap);
  va_end(ap);
}

int rs_log_parse_level(const char *s, int *out) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  for (int i = 0; i < 4; i++)
    if (!strcmp(s, names[i])) {
      *out = i;
      return 0;
    }
  return -1;
}
