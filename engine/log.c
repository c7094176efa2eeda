/* Log lines with a timestamp, level and component; written with one
 * fprintf so lines from librdkafka's threads do not interleave. Text:
 * "TIME LEVEL component: message"; JSON (--log-format json): one object a
 * line, {"time","level","component","msg"}. Levels: a default and, set
 * before the engine starts (the table is read without locks), one per
 * component (--log-level warn,http=debug). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "util.h"

#define MAX_COMPONENTS 32

static int g_level = RS_LOG_INFO;
static int g_json;
static struct {
  char name[64];
  int level;
} g_comp[MAX_COMPONENTS];
static int g_n_comp;

void rs_log_set_level(int level) {
  g_level = level;
}
int rs_log_level(void) {
  return g_level;
}
void rs_log_set_format(int json) {
  g_json = json;
}

static int level_of(const char *component) {
  for (int i = 0; i < g_n_comp; i++)
    if (!strcmp(g_comp[i].name, component))
      return g_comp[i].level;
  return g_level;
}

/* Appends s to out as the inside of a JSON string: quotes, backslashes
 * and control characters escaped, bytes that are not UTF-8 as U+FFFD. */
static size_t json_escape(const char *s, char *out, size_t size) {
  size_t n = 0;
#define PUT(str, len)                                                          \
  do {                                                                         \
    if (n + (len) + 1 < size) {                                                \
      memcpy(out + n, (str), (len));                                           \
      n += (len);                                                              \
    }                                                                          \
  } while (0)
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    unsigned char c = *p;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      PUT(e, 2);
      p++;
    } else if (c < 0x20) {
      char e[8];
      int l = snprintf(e, sizeof e, "\\u%04x", c);
      PUT(e, (size_t)l);
      p++;
    } else if (c < 0x80) {
      PUT(p, 1);
      p++;
    } else {
      size_t len = c >= 0xf0 && c < 0xf5   ? 4
                   : c >= 0xe0             ? 3
                   : c >= 0xc2 && c < 0xe0 ? 2
                                           : 0;
      size_t k = 1;
      while (len && k < len && (p[k] & 0xc0) == 0x80)
        k++;
      if (len && k == len) {
        PUT(p, len);
        p += len;
      } else {
        PUT("\xef\xbf\xbd", 3);
        p++;
      }
    }
  }
#undef PUT
  out[n] = '\0';
  return n;
}

void rs_vlog(int level, const char *component, const char *fmt, va_list ap) {
  if (level > level_of(component))
    return;
  static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
  static const char *lower[] = {"error", "warn", "info", "debug"};
  int li = level < 0 ? 0 : level > 3 ? 3 : level;
  int64_t ms = rs_wall_ms();
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char msg[2048];
  vsnprintf(msg, sizeof msg, fmt, ap);
  if (g_json) {
    char emsg[6 * sizeof msg], ecomp[256];
    json_escape(msg, emsg, sizeof emsg);
    json_escape(component, ecomp, sizeof ecomp);
    fprintf(
        stderr,
        "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",\"level\":\"%s\","
        "\"component\":\"%s\",\"msg\":\"%s\"}\n",
        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
        tm.tm_sec, (int)(ms % 1000), lower[li], ecomp, emsg);
    return;
  }
  fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s %s: %s\n",
          tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
          tm.tm_sec, (int)(ms % 1000), names[li], component, msg);
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

int rs_log_parse_format(const char *s, int *json) {
  if (!strcmp(s, "text") || !strcmp(s, "json")) {
    *json = !strcmp(s, "json");
    return 0;
  }
  return -1;
}

int rs_log_configure(const char *spec, char *err, size_t err_size) {
  int level = g_level, n = 0;
  char names[MAX_COMPONENTS][64];
  int levels[MAX_COMPONENTS];
  int have_default = 0;
  const char *p = spec;
  for (;;) {
    size_t len = strcspn(p, ",");
    char item[128];
    if (len == 0 || len >= sizeof item) {
      snprintf(err, err_size,
               "expected LEVEL or COMPONENT=LEVEL items separated by ',' "
               "(levels: error, warn, info, debug), got '%s'",
               spec);
      return -1;
    }
    memcpy(item, p, len);
    item[len] = '\0';
    char *eq = strchr(item, '=');
    const char *lv = eq ? eq + 1 : item;
    int v;
    if (rs_log_parse_level(lv, &v)) {
      snprintf(err, err_size,
               "expected error, warn, info or debug, got '%s' in '%s'", lv,
               spec);
      return -1;
    }
    if (!eq) {
      if (have_default) {
        snprintf(err, err_size, "two default levels in '%s'", spec);
        return -1;
      }
      have_default = 1;
      level = v;
    } else {
      *eq = '\0';
      if (!*item || strlen(item) >= sizeof names[0]) {
        snprintf(err, err_size, "bad component name in '%s'", spec);
        return -1;
      }
      if (n == MAX_COMPONENTS) {
        snprintf(err, err_size, "at most %d components in '%s'", MAX_COMPONENTS,
                 spec);
        return -1;
      }
      memcpy(names[n], item, strlen(item) + 1); /* length checked above */
      levels[n++] = v;
    }
    if (!p[len])
      break;
    p += len + 1;
  }
  g_level = level;
  for (int i = 0; i < n; i++) {
    memcpy(g_comp[i].name, names[i], sizeof names[i]);
    g_comp[i].level = levels[i];
  }
  g_n_comp = n;
  return 0;
}
