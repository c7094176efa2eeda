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

/* Whether a text value needs quotes. */
static int needs_quotes(const char *v) {
  if (!*v)
    return 1;
  for (; *v; v++)
    if (*v == ' ' || *v == '"' || *v == '=' || *v == '|' || *v == '\\' ||
        (unsigned char)*v < 0x20)
      return 1;
  return 0;
}

static int is_int(const char *v) {
  size_t n = 0;
  if (*v == '-')
    v++;
  for (; v[n]; n++)
    if (v[n] < '0' || v[n] > '9')
      return 0;
  return n > 0 && n <= 18 && !(n > 1 && v[0] == '0');
}

/* The fields, formatted for the line: " | k=v ..." or ",\"k\":v...". */
static void fields(const char *const *kv, int json, char *out, size_t size) {
  size_t n = 0;
  out[0] = '\0';
  int first = 1;
  for (size_t i = 0; kv && kv[i] && n + 1 < size; i += 2) {
    const char *k = kv[i], *v = kv[i + 1];
    if (!v)
      continue;
    char ek[128], ev[2048];
    json_escape(k, ek, sizeof ek);
    if (json) {
      int reserved = !strcmp(k, "time") || !strcmp(k, "level") ||
                     !strcmp(k, "component") || !strcmp(k, "msg");
      if (is_int(v))
        snprintf(ev, sizeof ev, "%s", v);
      else {
        ev[0] = '"';
        size_t l = json_escape(v, ev + 1, sizeof ev - 2);
        ev[l + 1] = '"';
        ev[l + 2] = '\0';
      }
      n += (size_t)snprintf(out + n, size - n, ",\"%s%s\":%s",
                            reserved ? "kv_" : "", ek, ev);
    } else {
      const char *sep = first ? " | " : " ";
      if (needs_quotes(v)) {
        /* Quotes and backslashes escaped; control characters as the JSON
         * escaper writes them. */
        json_escape(v, ev, sizeof ev);
        n += (size_t)snprintf(out + n, size - n, "%s%s=\"%s\"", sep, ek, ev);
      } else {
        n += (size_t)snprintf(out + n, size - n, "%s%s=%s", sep, ek, v);
      }
    }
    first = 0;
    if (n >= size)
      n = size - 1;
  }
}

void rs_vlog(int level, const char *component, const char *fmt, va_list ap) {
  rs_vlog_kv(level, component, NULL, fmt, ap);
}

void rs_vlog_kv(int level, const char *component, const char *const *kv,
                const char *fmt, va_list ap) {
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
    char f[4096];
    fields(kv, 1, f, sizeof f);
    fprintf(
        stderr,
        "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",\"level\":\"%s\","
        "\"component\":\"%s\",\"msg\":\"%s\"%s}\n",
        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
        tm.tm_sec, (int)(ms % 1000), lower[li], ecomp, emsg, f);
    return;
  }
  char f[4096];
  fields(kv, 0, f, sizeof f);
  fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s %s: %s%s\n",
          tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
          tm.tm_sec, (int)(ms % 1000), names[li], component, msg, f);
}

void rs_log_kv(int level, const char *component, const char *const *kv,
               const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  rs_vlog_kv(level, component, kv, fmt, ap);
  va_end(ap);
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

static int configure(const char *spec, int apply, char *err, size_t err_size);

int rs_log_configure(const char *spec, char *err, size_t err_size) {
  return configure(spec, 1, err, err_size);
}

int rs_log_check(const char *spec, char *err, size_t err_size) {
  return configure(spec, 0, err, err_size);
}

static int configure(const char *spec, int apply, char *err, size_t err_size) {
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
  if (!apply)
    return 0;
  g_level = level;
  for (int i = 0; i < n; i++) {
    memcpy(g_comp[i].name, names[i], sizeof names[i]);
    g_comp[i].level = levels[i];
  }
  g_n_comp = n;
  return 0;
}
