/* Readers of the interaction logs `recstream eval` replays: MovieLens 100K
 * u.data (tab-separated), MovieLens 1M ratings.dat ("::"-separated), CSV
 * with a header naming the columns, and Avro object container files as
 * `recstream generate --out` writes them. Every event passes the same
 * rules as a decoded Kafka record (rs_interaction_validate); a line that
 * does not is reported with its number and counted, never guessed at.
 * User and item ids are interned into string tables so the replay holds
 * each id once. */
#include <avro.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "eval.h"
#include "util.h"

int rs_eval_format_parse(const char *s, rs_eval_format_t *out) {
  static const char *const names[] = {"movielens", "ml1m", "csv", "avro"};
  for (int i = 0; i < 4; i++)
    if (!strcmp(s, names[i])) {
      *out = (rs_eval_format_t)i;
      return 0;
    }
  return -1;
}

/* ------------------------------------------------------ string table */

static int strings_rehash(rs_eval_strings_t *t, uint32_t n_slots) {
  uint32_t *slots = rs_calloc(n_slots, sizeof(uint32_t));
  if (!slots)
    return RS_ENOMEM;
  for (uint32_t i = 0; i < t->n; i++) {
    uint64_t h = rs_hash64(t->s[i], t->len[i], 0);
    uint32_t j = (uint32_t)h & (n_slots - 1);
    while (slots[j])
      j = (j + 1) & (n_slots - 1);
    slots[j] = i + 1;
  }
  rs_free(t->slots);
  t->slots = slots;
  t->n_slots = n_slots;
  return 0;
}

static int intern(rs_eval_strings_t *t, const char *s, size_t len,
                  uint32_t *out) {
  if (2 * (t->n + 1) > t->n_slots &&
      strings_rehash(t, t->n_slots ? t->n_slots * 2 : 1024))
    return RS_ENOMEM;
  uint64_t h = rs_hash64(s, len, 0);
  uint32_t j = (uint32_t)h & (t->n_slots - 1);
  for (; t->slots[j]; j = (j + 1) & (t->n_slots - 1)) {
    uint32_t i = t->slots[j] - 1;
    if (t->len[i] == len && !memcmp(t->s[i], s, len)) {
      *out = i;
      return 0;
    }
  }
  if (t->n == t->cap) {
    uint32_t cap = t->cap ? t->cap * 2 : 1024;
    char **ns = rs_realloc(t->s, cap * sizeof(char *));
    if (!ns)
      return RS_ENOMEM;
    t->s = ns;
    uint32_t *nl = rs_realloc(t->len, cap * sizeof(uint32_t));
    if (!nl)
      return RS_ENOMEM;
    t->len = nl;
    t->cap = cap;
  }
  char *d = rs_strndup(s, len);
  if (!d)
    return RS_ENOMEM;
  t->s[t->n] = d;
  t->len[t->n] = (uint32_t)len;
  t->slots[j] = t->n + 1;
  *out = t->n++;
  return 0;
}

static void strings_free(rs_eval_strings_t *t) {
  for (uint32_t i = 0; i < t->n; i++)
    rs_free(t->s[i]);
  rs_free(t->s);
  rs_free(t->len);
  rs_free(t->slots);
  memset(t, 0, sizeof(*t));
}

void rs_eval_log_free(rs_eval_log_t *log) {
  rs_free(log->ev);
  strings_free(&log->users);
  strings_free(&log->items);
  memset(log, 0, sizeof(*log));
}

/* ------------------------------------------------------------ events */

typedef struct reader {
  const char *path;
  const rs_eval_read_opts_t *o;
  rs_eval_log_t *log;
  char *errstr;
  size_t errstr_size;
} reader_t;

/* Reports a bad line; RS_EDECODE when strict (message in errstr). */
static int bad(reader_t *r, uint64_t line, const char *why) {
  r->log->bad++;
  if (r->o->strict)
    return rs_seterr(r->errstr, r->errstr_size, RS_EDECODE,
                     "%s:%" PRIu64 ": %s (--strict stops at the first bad "
                     "line)",
                     r->path, line, why);
  if (r->o->errors && r->log->bad <= r->o->max_reported)
    fprintf(r->o->errors, "%s:%" PRIu64 ": %s\n", r->path, line, why);
  return 0;
}

static int add_event(reader_t *r, const rs_interaction_t *ia, uint64_t line) {
  char why[256];
  if (rs_interaction_validate(ia, why, sizeof why))
    return bad(r, line, why);
  rs_eval_log_t *log = r->log;
  if (rs_grow((void **)&log->ev, &log->cap, log->n + 1, sizeof(*log->ev)))
    return RS_ENOMEM;
  rs_eval_event_t *e = &log->ev[log->n];
  if (intern(&log->users, ia->user, ia->user_len, &e->user) ||
      intern(&log->items, ia->item, ia->item_len, &e->item))
    return RS_ENOMEM;
  e->type = ia->event_type;
  e->has_value = ia->has_value;
  e->value = ia->has_value ? ia->value : 0;
  e->ts_ms = ia->timestamp_ms;
  e->line = line;
  log->n++;
  return 0;
}

static int parse_i64(const char *s, size_t n, int64_t *out) {
  char buf[32];
  if (n == 0 || n >= sizeof buf)
    return -1;
  memcpy(buf, s, n);
  buf[n] = '\0';
  return rs_parse_int64(buf, out);
}

static int parse_dbl(const char *s, size_t n, double *out) {
  char buf[64];
  if (n == 0 || n >= sizeof buf)
    return -1;
  memcpy(buf, s, n);
  buf[n] = '\0';
  return rs_parse_double(buf, out);
}

/* Splits line on sep (a string) into at most max fields. */
static size_t split(const char *line, size_t len, const char *sep,
                    const char **f, size_t *fl, size_t max) {
  size_t sl = strlen(sep), n = 0, start = 0;
  for (size_t i = 0; i + sl <= len && n + 1 < max;) {
    if (!memcmp(line + i, sep, sl)) {
      f[n] = line + start;
      fl[n++] = i - start;
      i += sl;
      start = i;
    } else {
      i++;
    }
  }
  f[n] = line + start;
  fl[n++] = len - start;
  return n;
}

/* CSV fields (RFC 4180 quoting within one line) into buf; f/fl point into
 * buf. Returns the count, or -1 for an unterminated quote. */
static long split_csv(const char *line, size_t len, char *buf, const char **f,
                      size_t *fl, size_t max) {
  size_t n = 0, o = 0, i = 0;
  for (;;) {
    if (n == max)
      return (long)n;
    f[n] = buf + o;
    size_t start = o;
    if (i < len && line[i] == '"') {
      i++;
      for (;;) {
        if (i >= len)
          return -1;
        if (line[i] == '"') {
          if (i + 1 < len && line[i + 1] == '"') {
            buf[o++] = '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        buf[o++] = line[i++];
      }
      while (i < len && line[i] != ',')
        buf[o++] = line[i++]; /* text after the closing quote */
    } else {
      while (i < len && line[i] != ',')
        buf[o++] = line[i++];
    }
    fl[n++] = o - start;
    if (i >= len)
      return (long)n;
    i++; /* the comma */
  }
}

static void trim(const char **s, size_t *n) {
  while (*n && (**s == ' ' || **s == '\t')) {
    (*s)++;
    (*n)--;
  }
  while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
    (*n)--;
}

enum { COL_USER, COL_ITEM, COL_TIME, COL_VALUE, COL_TYPE, N_COLS };

static int col_of(const char *s, size_t n) {
  static const char *const names[N_COLS][6] = {
      {"user", "user_id", "userId", "userid", "user id", NULL},
      {"item", "item_id", "itemId", "movieId", "movie_id", "itemid"},
      {"timestamp", "time", "ts", "event_time", "timestamp_ms", NULL},
      {"rating", "value", "score", NULL, NULL, NULL},
      {"event_type", "type", "event", NULL, NULL, NULL}};
  for (int c = 0; c < N_COLS; c++)
    for (int k = 0; k < 6 && names[c][k]; k++)
      if (strlen(names[c][k]) == n && !memcmp(names[c][k], s, n))
        return c;
  return -1;
}

#define MAX_FIELDS 64

static int read_text(reader_t *r, FILE *fp) {
  const rs_eval_read_opts_t *o = r->o;
  char *line = NULL, *buf = NULL;
  size_t cap = 0, bufcap = 0;
  ssize_t got;
  uint64_t ln = 0;
  int col[N_COLS] = {-1, -1, -1, -1, -1};
  int have_header = o->format != RS_EVAL_CSV;
  int rc = 0;
  const char *f[MAX_FIELDS];
  size_t fl[MAX_FIELDS];
  char why[256];
  while (!rc && (got = getline(&line, &cap, fp)) >= 0) {
    ln++;
    size_t len = (size_t)got;
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      len--;
    if (len == 0)
      continue;
    long nf;
    if (o->format == RS_EVAL_CSV) {
      if (bufcap < len + 1) {
        rs_free(buf);
        bufcap = len + 1;
        if (!(buf = rs_malloc(bufcap))) {
          rc = RS_ENOMEM;
          break;
        }
      }
      nf = split_csv(line, len, buf, f, fl, MAX_FIELDS);
      if (nf < 0) {
        rc = bad(r, ln, "unterminated quoted field");
        continue;
      }
      for (long i = 0; i < nf; i++)
        trim(&f[i], &fl[i]);
    } else {
      nf = (long)split(line, len, o->format == RS_EVAL_ML1M ? "::" : "\t", f,
                       fl, MAX_FIELDS);
    }
    if (!have_header) {
      for (long i = 0; i < nf; i++) {
        int c = col_of(f[i], fl[i]);
        if (c >= 0 && col[c] < 0)
          col[c] = (int)i;
      }
      if (col[COL_USER] < 0 || col[COL_ITEM] < 0 || col[COL_TIME] < 0) {
        rc = rs_seterr(r->errstr, r->errstr_size, RS_EDECODE,
                       "%s:%" PRIu64 ": the CSV header must name a user "
                       "column (user, user_id, userId), an item column "
                       "(item, item_id, itemId, movieId) and a time column "
                       "(timestamp, time, ts); optional: rating or value, "
                       "event_type",
                       r->path, ln);
        break;
      }
      have_header = 1;
      continue;
    }
    if (o->format != RS_EVAL_CSV) {
      col[COL_USER] = 0;
      col[COL_ITEM] = 1;
      col[COL_VALUE] = 2;
      col[COL_TIME] = 3;
      if (nf != 4) {
        snprintf(why, sizeof why, "expected 4 fields separated by %s, got %ld",
                 o->format == RS_EVAL_ML1M ? "'::'" : "tabs", nf);
        rc = bad(r, ln, why);
        continue;
      }
    }
    int need = col[COL_USER];
    for (int c = 0; c < N_COLS; c++)
      need = col[c] > need ? col[c] : need;
    if (nf <= need) {
      snprintf(why, sizeof why, "expected at least %d fields, got %ld",
               need + 1, nf);
      rc = bad(r, ln, why);
      continue;
    }
    rs_interaction_t ia = {0};
    ia.user = f[col[COL_USER]];
    ia.user_len = (uint32_t)fl[col[COL_USER]];
    ia.item = f[col[COL_ITEM]];
    ia.item_len = (uint32_t)fl[col[COL_ITEM]];
    int64_t ts;
    if (parse_i64(f[col[COL_TIME]], fl[col[COL_TIME]], &ts)) {
      snprintf(why, sizeof why, "timestamp '%.*s' is not an integer",
               (int)(fl[col[COL_TIME]] > 40 ? 40 : fl[col[COL_TIME]]),
               f[col[COL_TIME]]);
      rc = bad(r, ln, why);
      continue;
    }
    if (ts > INT64_MAX / o->time_unit_ms || ts < INT64_MIN / o->time_unit_ms) {
      rc = bad(r, ln, "timestamp out of range");
      continue;
    }
    ia.timestamp_ms = ts * o->time_unit_ms;
    ia.event_type = col[COL_VALUE] >= 0 ? RS_EVENT_RATING : RS_EVENT_VIEW;
    if (col[COL_TYPE] >= 0) {
      ia.event_type = rs_event_type_parse(f[col[COL_TYPE]], fl[col[COL_TYPE]]);
      if (ia.event_type < 0) {
        snprintf(why, sizeof why,
                 "event type '%.*s' is not VIEW, CLICK, ADD_TO_CART, "
                 "PURCHASE or RATING",
                 (int)(fl[col[COL_TYPE]] > 40 ? 40 : fl[col[COL_TYPE]]),
                 f[col[COL_TYPE]]);
        rc = bad(r, ln, why);
        continue;
      }
    }
    if (col[COL_VALUE] >= 0 && fl[col[COL_VALUE]] > 0) {
      if (parse_dbl(f[col[COL_VALUE]], fl[col[COL_VALUE]], &ia.value) ||
          !isfinite(ia.value)) {
        snprintf(why, sizeof why, "value '%.*s' is not a finite number",
                 (int)(fl[col[COL_VALUE]] > 40 ? 40 : fl[col[COL_VALUE]]),
                 f[col[COL_VALUE]]);
        rc = bad(r, ln, why);
        continue;
      }
      ia.has_value = 1;
    }
    rc = add_event(r, &ia, ln);
  }
  if (!rc && ferror(fp))
    rc = rs_seterr(r->errstr, r->errstr_size, RS_EIO, "%s: read error: %s",
                   r->path, strerror(errno));
  if (!rc && o->format == RS_EVAL_CSV && !have_header)
    rc = rs_seterr(r->errstr, r->errstr_size, RS_EDECODE,
                   "%s: empty CSV file (no header)", r->path);
  free(line);
  rs_free(buf);
  return rc;
}

/* A string field, or a union with null holding one (NULL when null). */
static int avro_str(avro_value_t *rec, const char *name, const char **s,
                    size_t *n) {
  avro_value_t v, b;
  *s = NULL;
  *n = 0;
  if (avro_value_get_by_name(rec, name, &v, NULL))
    return 0; /* absent field */
  if (avro_value_get_type(&v) == AVRO_UNION) {
    if (avro_value_get_current_branch(&v, &b))
      return -1;
    v = b;
  }
  if (avro_value_get_type(&v) == AVRO_NULL)
    return 0;
  if (avro_value_get_type(&v) != AVRO_STRING)
    return -1;
  if (avro_value_get_string(&v, s, n))
    return -1;
  if (*n)
    (*n)--; /* avro-c counts the NUL */
  return 0;
}

static int read_avro(reader_t *r) {
  avro_file_reader_t fr;
  if (avro_file_reader(r->path, &fr))
    return rs_seterr(r->errstr, r->errstr_size, RS_EDECODE,
                     "%s: not a readable Avro object container file: %s",
                     r->path, avro_strerror());
  avro_schema_t schema = avro_file_reader_get_writer_schema(fr);
  avro_value_iface_t *iface = avro_generic_class_from_schema(schema);
  avro_value_t rec;
  int rc = 0;
  if (!iface || avro_generic_value_new(iface, &rec)) {
    avro_file_reader_close(fr);
    if (iface)
      avro_value_iface_decref(iface);
    avro_schema_decref(schema);
    return rs_seterr(r->errstr, r->errstr_size, RS_EDECODE,
                     "%s: unusable writer schema: %s", r->path,
                     avro_strerror());
  }
  uint64_t n = 0;
  int got;
  while (!rc && (got = avro_file_reader_read_value(fr, &rec)) == 0) {
    n++;
    rs_interaction_t ia = {0};
    const char *s;
    size_t len;
    avro_value_t v, b;
    int et = -1;
    int64_t ts = -1;
    if (avro_str(&rec, "user_id", &s, &len)) {
      rc = bad(r, n, "user_id is not a string");
      continue;
    }
    ia.user = s;
    ia.user_len = (uint32_t)len;
    if (avro_str(&rec, "item_id", &s, &len)) {
      rc = bad(r, n, "item_id is not a string");
      continue;
    }
    ia.item = s;
    ia.item_len = (uint32_t)len;
    if (!avro_value_get_by_name(&rec, "event_type", &v, NULL) &&
        avro_value_get_type(&v) == AVRO_ENUM && !avro_value_get_enum(&v, &et)) {
      const char *name = avro_schema_enum_get(avro_value_get_schema(&v), et);
      et = name ? rs_event_type_parse(name, strlen(name)) : -1;
    }
    if (et < 0) {
      rc = bad(r, n, "event_type missing or not a known event type");
      continue;
    }
    ia.event_type = et;
    if (!avro_value_get_by_name(&rec, "timestamp", &v, NULL) &&
        avro_value_get_type(&v) == AVRO_INT64)
      avro_value_get_long(&v, &ts);
    ia.timestamp_ms = ts;
    if (!avro_value_get_by_name(&rec, "value", &v, NULL)) {
      if (avro_value_get_type(&v) == AVRO_UNION &&
          !avro_value_get_current_branch(&v, &b))
        v = b;
      if (avro_value_get_type(&v) == AVRO_DOUBLE &&
          !avro_value_get_double(&v, &ia.value))
        ia.has_value = 1;
    }
    rc = add_event(r, &ia, n);
  }
  avro_value_decref(&rec);
  avro_value_iface_decref(iface);
  avro_schema_decref(schema);
  avro_file_reader_close(fr);
  return rc;
}

int rs_eval_read(const char *path, const rs_eval_read_opts_t *o,
                 rs_eval_log_t *log, char *errstr, size_t errstr_size) {
  reader_t r = {path, o, log, errstr, errstr_size};
  if (o->format == RS_EVAL_AVRO) {
    FILE *probe = fopen(path, "rb");
    if (!probe)
      return rs_seterr(errstr, errstr_size, RS_EIO, "cannot open %s: %s", path,
                       strerror(errno));
    /* The container magic first: avro-c's reader leaks on some
     * failures, and the message is clearer. */
    unsigned char magic[4] = {0};
    size_t got = fread(magic, 1, 4, probe);
    fclose(probe);
    if (got != 4 || memcmp(magic, "Obj\x01", 4))
      return rs_seterr(errstr, errstr_size, RS_EDECODE,
                       "%s: not a readable Avro object container file (it "
                       "does not start with Obj\\x01)",
                       path);
    return read_avro(&r);
  }
  FILE *fp = fopen(path, "r");
  if (!fp)
    return rs_seterr(errstr, errstr_size, RS_EIO, "cannot open %s: %s", path,
                     strerror(errno));
  int rc = read_text(&r, fp);
  fclose(fp);
  return rc;
}

/* Merge sort by time, stable. */
int rs_eval_sort(rs_eval_log_t *log) {
  size_t n = log->n;
  if (n < 2)
    return 0;
  rs_eval_event_t *tmp = rs_malloc(n * sizeof(*tmp));
  if (!tmp)
    return RS_ENOMEM;
  rs_eval_event_t *a = log->ev, *b = tmp;
  for (size_t w = 1; w < n; w *= 2) {
    for (size_t lo = 0; lo < n; lo += 2 * w) {
      size_t mid = lo + w < n ? lo + w : n,
             hi = lo + 2 * w < n ? lo + 2 * w : n;
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi)
        b[k++] = a[j].ts_ms < a[i].ts_ms ? a[j++] : a[i++];
      while (i < mid)
        b[k++] = a[i++];
      while (j < hi)
        b[k++] = a[j++];
    }
    rs_eval_event_t *t = a;
    a = b;
    b = t;
  }
  if (a != log->ev)
    memcpy(log->ev, a, n * sizeof(*a));
  rs_free(tmp);
  return 0;
}
