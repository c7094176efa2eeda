/* Typed scalar parsing (integers, durations, sizes), error formatting,
 * clocks and hashing. Kept free of YAML so the CLI, the config loader and
 * operators share one definition of "30s" and "64MiB". */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <xxhash.h>

#include "util.h"

/* strtoll and strtod skip leading white space: " 5" would pass where a
 * trailing space does not; both are refused. */
int rs_parse_int64(const char *s, int64_t *out) {
  if (!s || !*s || isspace((unsigned char)*s))
    return RS_EINVAL;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || end == s)
    return RS_EINVAL;
  *out = v;
  return 0;
}

int rs_parse_double(const char *s, double *out) {
  if (!s || !*s || isspace((unsigned char)*s))
    return RS_EINVAL;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || end == s || !isfinite(v))
    return RS_EINVAL;
  *out = v;
  return 0;
}

int rs_parse_bool(const char *s, int *out) {
  static const char *yes[] = {"true", "yes", "on", "1"};
  static const char *no[] = {"false", "no", "off", "0"};
  for (size_t i = 0; i < RS_ARRAY_SIZE(yes); i++) {
    if (!strcmp(s, yes[i])) {
      *out = 1;
      return 0;
    }
    if (!strcmp(s, no[i])) {
      *out = 0;
      return 0;
    }
  }
  return RS_EINVAL;
}

/* Parses "<number><unit>" where unit is looked up in `units`; a bare
 * number takes multiplier `bare` (0 = not allowed). */
struct unit {
  const char *suffix;
  double mult;
};

static int parse_with_units(const char *s, const struct unit *units,
                            size_t n_units, double bare, int64_t *out) {
  if (!s || !*s)
    return RS_EINVAL;
  /* A plain decimal number: digits with at most one '.' (strtod alone
   * would also take " 1s", "+1s", "0x10s", "1e3ms" and "infs"). */
  const char *q = s;
  int dots = 0, digits = 0;
  for (; isdigit((unsigned char)*q) || *q == '.'; q++)
    *q == '.' ? dots++ : digits++;
  if (!digits || dots > 1)
    return RS_EINVAL;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end != q || !isfinite(v) || v < 0)
    return RS_EINVAL;
  while (*end == ' ')
    end++;
  double mult = 0;
  if (!*end) {
    mult = bare;
  } else {
    for (size_t i = 0; i < n_units; i++)
      if (!strcmp(end, units[i].suffix)) {
        mult = units[i].mult;
        break;
      }
  }
  if (mult == 0)
    return RS_EINVAL;
  double r = v * mult;
  if (r > 9.2e18 || r != floor(r))
    return RS_EINVAL;
  *out = (int64_t)r;
  return 0;
}

int rs_parse_duration_ms(const char *s, int64_t *out) {
  static const struct unit u[] = {{"ms", 1},      {"s", 1000},
                                  {"m", 60000},   {"min", 60000},
                                  {"h", 3600000}, {"d", 86400000}};
  return parse_with_units(s, u, RS_ARRAY_SIZE(u), 1, out);
}

int rs_parse_size(const char *s, int64_t *out) {
  static const struct unit u[] = {{"B", 1},           {"KiB", 1024.0},
                                  {"MiB", 1048576.0}, {"GiB", 1073741824.0},
                                  {"kB", 1000.0},     {"KB", 1000.0},
                                  {"MB", 1e6},        {"GB", 1e9}};
  return parse_with_units(s, u, RS_ARRAY_SIZE(u), 1, out);
}

void rs_format_duration(int64_t ms, char *buf, size_t size) {
  static const struct unit u[] = {
      {"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
  for (size_t i = 0; i < RS_ARRAY_SIZE(u); i++) {
    int64_t m = (int64_t)u[i].mult;
    if (ms != 0 && ms % m == 0) {
      snprintf(buf, size, "%lld%s", (long long)(ms / m), u[i].suffix);
      return;
    }
  }
  snprintf(buf, size, "%lldms", (long long)ms);
}

int rs_seterr(char *errstr, size_t errstr_size, int err, const char *fmt, ...) {
  if (errstr && errstr_size) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
  }
  return err;
}

uint64_t rs_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t rs_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t rs_mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

uint64_t rs_hash64(const void *p, size_t n, uint64_t seed) {
  return XXH3_64bits_withSeed(p, n, seed);
}

uint64_t rs_op_seed(const char *name) {
  return rs_hash64(name, strlen(name), 0x7265637374726d);
}

uint64_t rs_op_random(uint64_t seed, const void *key, size_t key_len,
                      int64_t offset, uint64_t stream) {
  uint64_t h = rs_hash64(key, key_len, seed);
  return rs_mix64(h ^
                  rs_mix64((uint64_t)offset * 0x9e3779b97f4a7c15ULL + stream));
}

int rs_mkdir_parents(const char *dir, const char *what, char *errstr,
                     size_t errstr_size) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
    return rs_seterr(errstr, errstr_size, RS_ECONFIG, "%s: path too long",
                     what);
  for (char *q = path + 1; *q; q++) {
    if (*q != '/')
      continue;
    *q = '\0';
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
      return rs_seterr(errstr, errstr_size, RS_ESTATE,
                       "%s %s: cannot create %s: %s", what, dir, path,
                       strerror(errno));
    *q = '/';
  }
  return 0;
}

int rs_option_error(const char *cmd, int ch, const char *option) {
  if (ch == ':')
    return rs_usage_error(cmd, "option '%s' needs a value", option);
  return rs_usage_error(cmd, "unknown or ambiguous option '%s'", option);
}

int rs_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "recstream %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry 'recstream %s --help'.\n", cmd);
  return 2;
}
