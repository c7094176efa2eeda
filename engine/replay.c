/* `recstream replay` (replay.h, docs/REPLAY.md).
 *
 * The command plans first, without touching any state: per source
 * partition the low and high watermarks, the start and end offsets the
 * arguments resolve to (a time through the broker's time index, or a
 * binary search when the broker cannot answer), and what lies below the
 * low watermark (removed by retention: reported, never skipped silently).
 * Then it writes the plan into the state directory (REPLAY_PLAN, so that
 * --resume continues the same ranges) and runs the engine in replay mode:
 * ranges assigned directly, outside the consumer group, deterministic
 * order, outputs suppressed or redirected, a checkpoint every
 * state.commit_interval and at the end.
 */
#include "replay.h"

#include <avro.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <inttypes.h>
#include <signal.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "config.h"
#include "graph.h"
#include "kafka.h"
#include "log.h"
#include "recstream/error.h"
#include "registry.h"
#include "runtime.h"
#include "state/store.h"
#include "util.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

#define PLAN_FILE RS_STATE_REPLAY_PLAN
#define PLAN_TMP RS_STATE_REPLAY_PLAN_TMP

/* ------------------------------------------------------------ grammar */

static int digits(const char **p, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (!isdigit((unsigned char)**p))
      return -1;
    v = v * 10 + (**p - '0');
    (*p)++;
  }
  *out = v;
  return 0;
}

int rs_parse_iso8601(const char *s, int64_t *ms) {
  const char *p = s;
  int Y, M, D, h, m, sec, frac = 0;
  if (digits(&p, 4, &Y) || *p++ != '-' || digits(&p, 2, &M) || *p++ != '-' ||
      digits(&p, 2, &D) || (*p != 'T' && *p != 't' && *p != ' '))
    return -1;
  p++;
  if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &m) || *p++ != ':' ||
      digits(&p, 2, &sec))
    return -1;
  if (*p == '.') {
    p++;
    int n = 0, scale = 100;
    while (isdigit((unsigned char)*p)) {
      if (n < 3)
        frac += (*p - '0') * scale, scale /= 10;
      n++;
      p++;
    }
    if (n == 0)
      return -1;
  }
  int tz = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int sign = *p++ == '-' ? -1 : 1, th, tm;
    if (digits(&p, 2, &th) || *p++ != ':' || digits(&p, 2, &tm) || th > 23 ||
        tm > 59)
      return -1;
    tz = sign * (th * 60 + tm);
  } else {
    return -1; /* a time without a zone is ambiguous */
  }
  if (*p || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
    return -1;
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
  if (D > mdays[M - 1] || (M == 2 && D == 29 && !leap))
    return -1;
  /* Days since 1970-01-01 (proleptic Gregorian), without the C library's
   * time zone. */
  int y = Y - (M <= 2);
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (M + (M > 2 ? -3 : 9)) + 2) / 5 + D - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  int64_t days = era * 146097 + doe - 719468;
  *ms = ((days * 24 + h) * 60 + m) * 60000 + (int64_t)sec * 1000 + frac -
        (int64_t)tz * 60000;
  return 0;
}

static int parse_relative(const char *s, int64_t now_ms, int64_t *ms) {
  if (*s != '-' || !isdigit((unsigned char)s[1]))
    return -1;
  char *end;
  errno = 0;
  long long n = strtoll(s + 1, &end, 10);
  if (errno || n < 0)
    return -1;
  int64_t unit;
  if (!strcmp(end, "ms"))
    unit = 1;
  else if (!strcmp(end, "s"))
    unit = 1000;
  else if (!strcmp(end, "m"))
    unit = 60000;
  else if (!strcmp(end, "h"))
    unit = 3600000;
  else if (!strcmp(end, "d"))
    unit = 86400000;
  else
    return -1;
  if (n > INT64_MAX / unit)
    return -1;
  *ms = now_ms - (int64_t)n * unit;
  return 0;
}

void rs_pos_free(rs_pos_t *p) {
  for (size_t i = 0; i < p->n_offsets; i++)
    rs_free(p->offsets[i].topic);
  rs_free(p->offsets);
  p->offsets = NULL;
  p->n_offsets = 0;
}

static int parse_i64(const char *s, size_t n, int64_t *out) {
  if (n == 0 || n > 19)
    return -1;
  int64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isdigit((unsigned char)s[i]) || v > (INT64_MAX - (s[i] - '0')) / 10)
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return 0;
}

static int parse_offsets(const char *s, rs_pos_t *out, char *errstr,
                         size_t errstr_size) {
  size_t cap = 1;
  for (const char *c = s; *c; c++)
    cap += *c == ',';
  out->offsets = rs_calloc(cap, sizeof(*out->offsets));
  if (!out->offsets)
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  const char *item = s;
  for (;;) {
    const char *end = strchr(item, ',');
    size_t len = end ? (size_t)(end - item) : strlen(item);
    /* TOPIC:P:O or P:O; a topic name may not hold ':' in Kafka. */
    const char *c2 = NULL, *c1 = NULL;
    for (size_t i = len; i-- > 0;)
      if (item[i] == ':') {
        if (!c2)
          c2 = item + i;
        else if (!c1)
          c1 = item + i;
        else
          c1 = item; /* a third colon: invalid below */
      }
    int64_t part, off;
    const char *pstart = c1 ? c1 + 1 : item;
    if (!c2 || (c1 == item && c1[0] == ':') ||
        parse_i64(pstart, (size_t)(c2 - pstart), &part) ||
        parse_i64(c2 + 1, (size_t)(item + len - c2 - 1), &off) ||
        part > INT32_MAX || (c1 && c1 == item)) {
      rs_pos_free(out);
      return rs_seterr(errstr, errstr_size, RS_EINVAL,
                       "'%.*s': expected PARTITION:OFFSET or "
                       "TOPIC:PARTITION:OFFSET (non-negative integers)",
                       (int)len, item);
    }
    rs_pos_offset_t *o = &out->offsets[out->n_offsets++];
    o->partition = (int32_t)part;
    o->offset = off;
    if (c1) {
      o->topic = rs_malloc((size_t)(c1 - item) + 1);
      if (!o->topic) {
        rs_pos_free(out);
        return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
      }
      memcpy(o->topic, item, (size_t)(c1 - item));
      o->topic[c1 - item] = '\0';
    }
    /* One offset per partition: a second one for the same partition (or a
     * bare P:O and a TOPIC:P:O, which both cover that topic's partition P)
     * would leave which one counts to the order of the list. */
    for (size_t i = 0; i + 1 < out->n_offsets; i++) {
      const rs_pos_offset_t *q = &out->offsets[i];
      if (q->partition != o->partition ||
          (q->topic && o->topic && strcmp(q->topic, o->topic)))
        continue;
      char prev[320];
      snprintf(prev, sizeof prev, "%s%s%d:%lld", q->topic ? q->topic : "",
               q->topic ? ":" : "", (int)q->partition, (long long)q->offset);
      const char *t = o->topic ? o->topic : q->topic;
      int mixed = !o->topic != !q->topic;
      int rc = rs_seterr(errstr, errstr_size, RS_EINVAL,
                         "'%.*s': partition %d%s%s is already given by '%s'; "
                         "list each partition once%s",
                         (int)len, item, (int)o->partition,
                         t ? " of topic " : "", t ? t : "", prev,
                         mixed ? " (P:O without a topic stands for partition "
                                 "P of every source topic)"
                               : "");
      rs_pos_free(out);
      return rc;
    }
    if (!end)
      break;
    item = end + 1;
  }
  return 0;
}

int rs_pos_parse(const char *s, int64_t now_ms, rs_pos_t *out, char *errstr,
                 size_t errstr_size) {
  memset(out, 0, sizeof *out);
  if (!strcmp(s, "earliest")) {
    out->kind = RS_POS_EARLIEST;
    return 0;
  }
  if (!strcmp(s, "latest") || !strcmp(s, "now")) {
    out->kind = RS_POS_LATEST;
    return 0;
  }
  if (s[0] == '-') {
    out->kind = RS_POS_TIME;
    if (parse_relative(s, now_ms, &out->time_ms))
      return rs_seterr(errstr, errstr_size, RS_EINVAL,
                       "'%s': expected a relative time like -6h, -30m, -90s, "
                       "-2d or -500ms",
                       s);
    return 0;
  }
  if (strlen(s) >= 10 && s[4] == '-' && s[7] == '-') {
    out->kind = RS_POS_TIME;
    if (rs_parse_iso8601(s, &out->time_ms))
      return rs_seterr(errstr, errstr_size, RS_EINVAL,
                       "'%s': expected an ISO-8601 time with a zone, like "
                       "2026-11-01T00:00:00Z or 2026-11-01T01:00:00+01:00",
                       s);
    return 0;
  }
  if (strchr(s, ':')) {
    out->kind = RS_POS_OFFSETS;
    return parse_offsets(s, out, errstr, errstr_size);
  }
  return rs_seterr(errstr, errstr_size, RS_EINVAL,
                   "'%s': expected earliest, latest, now, an ISO-8601 time "
                   "(2026-11-01T00:00:00Z), a relative time (-6h) or "
                   "offsets (0:100,1:250)",
                   s);
}

/* ------------------------------------------------------------ seeking */

/* The first record at an offset >= o: its offset and timestamp, or
 * *found = hi when there is none before hi. */
static int probe(rd_kafka_topic_t *rkt, int32_t partition, int64_t o,
                 int64_t hi, int64_t *found, int64_t *ts, char *errstr,
                 size_t errstr_size) {
  *found = hi;
  if (o >= hi)
    return 0;
  if (rd_kafka_consume_start(rkt, partition, o) == -1)
    return rs_seterr(errstr, errstr_size, RS_EKAFKA,
                     "cannot read %s [%d] at %lld: %s",
                     rd_kafka_topic_name(rkt), (int)partition, (long long)o,
                     rd_kafka_err2str(rd_kafka_last_error()));
  int rc = 0;
  uint64_t t0 = rs_now_ns();
  for (;;) {
    rd_kafka_message_t *m = rd_kafka_consume(rkt, partition, 1000);
    if (!m) {
      if (rs_now_ns() - t0 > 30ull * 1000000000u) {
        rc = rs_seterr(errstr, errstr_size, RS_EKAFKA,
                       "reading %s [%d] at %lld: no answer in 30 s",
                       rd_kafka_topic_name(rkt), (int)partition, (long long)o);
        break;
      }
      continue;
    }
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      rd_kafka_message_destroy(m);
      break;
    }
    if (m->err) {
      rc = rs_seterr(errstr, errstr_size, RS_EKAFKA,
                     "reading %s [%d] at %lld: %s", rd_kafka_topic_name(rkt),
                     (int)partition, (long long)o, rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
      break;
    }
    if (m->offset >= o) {
      if (m->offset < hi) {
        *found = m->offset;
        *ts = rd_kafka_message_timestamp(m, NULL);
      }
      rd_kafka_message_destroy(m);
      break;
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consume_stop(rkt, partition);
  return rc;
}

/* Reads [from, to) and lowers *best to the first offset there whose
 * timestamp is >= ts_ms. */
static int scan_window(rd_kafka_topic_t *rkt, int32_t partition, int64_t from,
                       int64_t to, int64_t ts_ms, int64_t *best,
                       int64_t *scanned, char *errstr, size_t errstr_size) {
  if (from >= to)
    return 0;
  if (rd_kafka_consume_start(rkt, partition, from) == -1)
    return rs_seterr(errstr, errstr_size, RS_EKAFKA,
                     "cannot read %s [%d] at %lld: %s",
                     rd_kafka_topic_name(rkt), (int)partition, (long long)from,
                     rd_kafka_err2str(rd_kafka_last_error()));
  rd_kafka_message_t *ms[512];
  int rc = 0, done = 0;
  uint64_t t0 = rs_now_ns();
  while (!done && !rc) {
    ssize_t n = rd_kafka_consume_batch(rkt, partition, 1000, ms, 512);
    if (n <= 0 && rs_now_ns() - t0 > 30ull * 1000000000u)
      rc = rs_seterr(errstr, errstr_size, RS_EKAFKA,
                     "reading %s [%d] from %lld: no answer in 30 s",
                     rd_kafka_topic_name(rkt), (int)partition, (long long)from);
    for (ssize_t i = 0; i < n; i++) {
      rd_kafka_message_t *m = ms[i];
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        done = 1;
      } else if (m->err) {
        if (!rc)
          rc = rs_seterr(errstr, errstr_size, RS_EKAFKA, "reading %s [%d]: %s",
                         rd_kafka_topic_name(rkt), (int)partition,
                         rd_kafka_message_errstr(m));
      } else if (m->offset >= to) {
        done = 1;
      } else if (m->offset >= from) {
        (*scanned)++;
        if (m->offset < *best && rd_kafka_message_timestamp(m, NULL) >= ts_ms)
          *best = m->offset;
        if (m->offset == to - 1)
          done = 1;
      }
      rd_kafka_message_destroy(m);
    }
  }
  rd_kafka_consume_stop(rkt, partition);
  return rc;
}

int rs_seek_broker_answer(rd_kafka_resp_err_t err,
                          rd_kafka_resp_err_t partition_err, int64_t offset,
                          int64_t lo, int64_t hi, int64_t *out) {
  /* No answer (a timeout, an old broker, a partition error), or -1: a real
   * broker's "no record that late", but also the embedded broker's answer
   * to every time. The search then finds hi in the first case, the right
   * offset in the second. */
  if (err || partition_err || offset < 0)
    return 0;
  /* The first offset with a timestamp >= the time, over the whole
   * partition: past hi (records appended since the plan) means none in
   * [lo, hi); below lo cannot be (retention only raises lo) but is held
   * to the range all the same. */
  *out = offset < lo ? lo : offset > hi ? hi : offset;
  return 1;
}

int rs_seek_time(rd_kafka_t *rk, const char *topic, int32_t partition,
                 int64_t lo, int64_t hi, int64_t ts_ms, int64_t window,
                 int ask_broker, int64_t *out, rs_seek_stats_t *st,
                 char *errstr, size_t errstr_size) {
  rs_seek_stats_t dummy;
  if (!st)
    st = &dummy;
  memset(st, 0, sizeof *st);
  if (lo >= hi) {
    *out = hi;
    return 0;
  }
  if (ask_broker) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = ts_ms;
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, l, 10000);
    int used = rs_seek_broker_answer(err, l->elems[0].err, l->elems[0].offset,
                                     lo, hi, out);
    rd_kafka_topic_partition_list_destroy(l);
    if (used) {
      st->broker_answered = 1;
      return 0;
    }
  }
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  if (!rkt)
    return rs_seterr(errstr, errstr_size, RS_EKAFKA, "%s: %s", topic,
                     rd_kafka_err2str(rd_kafka_last_error()));
  /* Smallest o in [lo, hi] whose next record (at >= o) has a timestamp
   * >= ts_ms, hi when none: exact for timestamps in offset order. */
  int64_t a = lo, b = hi;
  int rc = 0;
  while (a < b && !rc) {
    int64_t mid = a + (b - a) / 2, found = hi, ts = 0;
    rc = probe(rkt, partition, mid, hi, &found, &ts, errstr, errstr_size);
    st->probes++;
    if (rc)
      break;
    if (found < hi && ts < ts_ms)
      a = found + 1;
    else
      b = mid;
  }
  int64_t best = hi;
  if (!rc && a < hi) {
    int64_t ts = 0;
    rc = probe(rkt, partition, a, hi, &best, &ts, errstr, errstr_size);
    st->probes++;
  }
  /* Records before the crossing that are later than ts_ms (out of
   * timestamp order) are found by reading back `window` records, then
   * window by window for as long as the last one held such a record. */
  int64_t upto = best;
  while (!rc && window > 0 && upto > lo) {
    int64_t from = upto - window < lo ? lo : upto - window;
    int64_t before = best;
    rc = scan_window(rkt, partition, from, upto, ts_ms, &best, &st->scanned,
                     errstr, errstr_size);
    if (best == before)
      break;
    upto = from;
  }
  rd_kafka_topic_destroy(rkt);
  if (!rc)
    *out = best;
  return rc;
}

/* ------------------------------------------------------------ the plan */

typedef struct pplan {
  char *topic;
  int32_t partition;
  int64_t lo, hi;    /* watermarks when planned */
  int64_t start;     /* first offset to process */
  int64_t end;       /* first offset not to process */
  int64_t below_low; /* requested offsets removed by retention */
} pplan_t;

typedef struct plan {
  pplan_t *parts;
  size_t n;
  char *from, *to, *output;
  int complete;
} plan_t;

static void plan_free(plan_t *p) {
  for (size_t i = 0; i < p->n; i++)
    rs_free(p->parts[i].topic);
  rs_free(p->parts);
  rs_free(p->from);
  rs_free(p->to);
  rs_free(p->output);
  memset(p, 0, sizeof *p);
}

static char *path_join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = rs_malloc(n);
  if (p)
    snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static int plan_write(const plan_t *p, const char *dir, char *errstr,
                      size_t errstr_size) {
  json_t *root = json_object(), *parts = json_array();
  json_object_set_new(root, "from", json_string(p->from));
  json_object_set_new(root, "to", json_string(p->to));
  json_object_set_new(root, "output", json_string(p->output));
  json_object_set_new(root, "complete", json_boolean(p->complete));
  for (size_t i = 0; i < p->n; i++) {
    const pplan_t *q = &p->parts[i];
    json_array_append_new(
        parts, json_pack("{s:s, s:i, s:I, s:I}", "topic", q->topic, "partition",
                         (int)q->partition, "start", (json_int_t)q->start,
                         "end", (json_int_t)q->end));
  }
  json_object_set_new(root, "partitions", parts);
  char *tmp = path_join(dir, PLAN_TMP), *fin = path_join(dir, PLAN_FILE);
  int rc = 0;
  if (!tmp || !fin)
    rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  else if (json_dump_file(root, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) ||
           rename(tmp, fin))
    rc = rs_seterr(errstr, errstr_size, RS_EIO, "cannot write %s: %s", fin,
                   strerror(errno));
  rs_free(tmp);
  rs_free(fin);
  json_decref(root);
  return rc;
}

static int plan_read(plan_t *p, const char *dir, char *errstr,
                     size_t errstr_size) {
  char *fin = path_join(dir, PLAN_FILE);
  if (!fin)
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  json_error_t je;
  json_t *root = json_load_file(fin, 0, &je);
  int rc = 0;
  json_t *parts = root ? json_object_get(root, "partitions") : NULL;
  const char *from = NULL, *to = NULL, *output = NULL;
  int complete = 0;
  if (!root) {
    rc = rs_seterr(errstr, errstr_size, RS_ESTATE,
                   "--resume: %s: %s (is %s a replay's state directory?)", fin,
                   je.text, dir);
  } else if (json_unpack(root, "{s:s, s:s, s:s, s:b}", "from", &from, "to", &to,
                         "output", &output, "complete", &complete) ||
             !json_is_array(parts)) {
    rc = rs_seterr(errstr, errstr_size, RS_ESTATE,
                   "--resume: %s is not a replay plan", fin);
  } else {
    p->n = json_array_size(parts);
    p->parts = rs_calloc(p->n ? p->n : 1, sizeof(*p->parts));
    p->from = rs_strdup(from);
    p->to = rs_strdup(to);
    p->output = rs_strdup(output);
    p->complete = complete;
    if (!p->parts || !p->from || !p->to || !p->output)
      rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < p->n; i++) {
      const char *t;
      int part;
      json_int_t s, e;
      if (json_unpack(json_array_get(parts, i), "{s:s, s:i, s:I, s:I}", "topic",
                      &t, "partition", &part, "start", &s, "end", &e) ||
          part < 0 || s < 0 || e < s) {
        rc =
            rs_seterr(errstr, errstr_size, RS_ESTATE,
                      "--resume: %s: partition entry %zu is malformed", fin, i);
        break;
      }
      p->parts[i].topic = rs_strdup(t);
      if (!p->parts[i].topic) {
        rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
        break;
      }
      p->parts[i].partition = part;
      p->parts[i].start = s;
      p->parts[i].end = e;
      p->parts[i].lo = p->parts[i].hi = -1;
    }
  }
  if (root)
    json_decref(root);
  rs_free(fin);
  return rc;
}

/* The offset a position resolves to in one partition (is_end: --to). */
static int resolve(rd_kafka_t *rk, const rs_pos_t *pos, pplan_t *q, int is_end,
                   int64_t window, int64_t *out, char *errstr,
                   size_t errstr_size) {
  switch (pos->kind) {
  case RS_POS_EARLIEST:
    *out = q->lo;
    return 0;
  case RS_POS_LATEST:
    *out = q->hi;
    return 0;
  case RS_POS_TIME: {
    rs_seek_stats_t st;
    int rc =
        rs_seek_time(rk, q->topic, q->partition, q->lo, q->hi, pos->time_ms,
                     window, 1, out, &st, errstr, errstr_size);
    if (!rc)
      rs_log(RS_LOG_INFO, "replay",
             "%s [%d]: time %lld ms is at offset %lld (%s)", q->topic,
             (int)q->partition, (long long)pos->time_ms, (long long)*out,
             st.broker_answered
                 ? "the broker's time index"
                 : "binary search; the broker gave no answer by time");
    return rc;
  }
  case RS_POS_OFFSETS:
    for (size_t i = 0; i < pos->n_offsets; i++) {
      const rs_pos_offset_t *o = &pos->offsets[i];
      if (o->partition == q->partition &&
          (!o->topic || !strcmp(o->topic, q->topic))) {
        *out = o->offset;
        return 0;
      }
    }
    *out = is_end ? q->hi : q->lo; /* not listed: the whole partition */
    return 0;
  }
  return RS_EINVAL;
}

static int build_plan(const rs_config_t *cfg, rd_kafka_t *rk,
                      const rs_pos_t *from, const rs_pos_t *to, int64_t window,
                      plan_t *p, char *errstr, size_t errstr_size) {
  int rc = 0;
  for (size_t s = 0; s < cfg->n_sources && !rc; s++) {
    const char *topic = cfg->sources[s].topic;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err =
        rkt ? rd_kafka_metadata(rk, 0, rkt, &md, 10000) : rd_kafka_last_error();
    if (!err && (md->topic_cnt != 1 || md->topics[0].err ||
                 md->topics[0].partition_cnt <= 0))
      err = md->topic_cnt == 1 && md->topics[0].err
                ? md->topics[0].err
                : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    if (err) {
      rc = rs_seterr(errstr, errstr_size, RS_EKAFKA,
                     "source topic %s: %s (is kafka.brokers right?)", topic,
                     rd_kafka_err2str(err));
    } else {
      int n = md->topics[0].partition_cnt;
      pplan_t *np = rs_realloc(p->parts, (p->n + (size_t)n) * sizeof(*np));
      if (!np) {
        rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
      } else {
        p->parts = np;
        for (int i = 0; i < n && !rc; i++) {
          pplan_t *q = &p->parts[p->n];
          memset(q, 0, sizeof *q);
          q->topic = rs_strdup(topic);
          q->partition = md->topics[0].partitions[i].id;
          if (!q->topic) {
            rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
            break;
          }
          p->n++;
          err = rd_kafka_query_watermark_offsets(rk, topic, q->partition,
                                                 &q->lo, &q->hi, 10000);
          if (err) {
            rc = rs_seterr(errstr, errstr_size, RS_EKAFKA,
                           "%s [%d]: cannot read its offsets: %s", topic,
                           (int)q->partition, rd_kafka_err2str(err));
            break;
          }
          rc = resolve(rk, from, q, 0, window, &q->start, errstr, errstr_size);
          if (!rc)
            rc = resolve(rk, to, q, 1, window, &q->end, errstr, errstr_size);
          if (rc)
            break;
          if (q->end > q->hi) {
            rc = rs_seterr(errstr, errstr_size, RS_EINVAL,
                           "--to: %s [%d] ends at offset %lld, before the "
                           "requested %lld",
                           topic, (int)q->partition, (long long)q->hi,
                           (long long)q->end);
            break;
          }
          if (q->start > q->end) {
            rc = rs_seterr(errstr, errstr_size, RS_EINVAL,
                           "%s [%d]: --from resolves to offset %lld, after "
                           "--to's %lld",
                           topic, (int)q->partition, (long long)q->start,
                           (long long)q->end);
            break;
          }
          if (q->start < q->lo) {
            /* Removed by retention: say so, start at what is there. */
            q->below_low = (q->end < q->lo ? q->end : q->lo) - q->start;
            q->start = q->lo;
            if (q->end < q->start)
              q->end = q->start;
          }
        }
      }
    }
    if (md)
      rd_kafka_metadata_destroy(md);
    if (rkt)
      rd_kafka_topic_destroy(rkt);
  }
  /* An OFFSETS argument naming a partition that does not exist. */
  const rs_pos_t *args[] = {from, to};
  for (int k = 0; k < 2 && !rc; k++)
    for (size_t i = 0; i < args[k]->n_offsets && !rc; i++) {
      const rs_pos_offset_t *o = &args[k]->offsets[i];
      int hit = 0;
      for (size_t j = 0; j < p->n; j++)
        hit |= p->parts[j].partition == o->partition &&
               (!o->topic || !strcmp(o->topic, p->parts[j].topic));
      if (!hit)
        rc = rs_seterr(errstr, errstr_size, RS_EINVAL,
                       "%s: %s%s%d is not a partition of a source topic",
                       k ? "--to" : "--from", o->topic ? o->topic : "",
                       o->topic ? ":" : "partition ", (int)o->partition);
    }
  return rc;
}

/* ------------------------------------------------------------ files */

/* Every record of the files matching a glob, in file (name) order, placed
 * in partitions as librdkafka's default partitioner places keyed records
 * (CRC32 of the key), each partition in file order. */
typedef struct files {
  rs_buf_t data;         /* raw Avro datums and keys, back to back */
  size_t *off;           /* per record: value at data+off, then key */
  uint32_t *vlen, *klen; /* per record */
  int64_t *ts;           /* per record */
  int32_t *part;         /* per record */
  size_t n, cap;
  size_t n_files;
  rs_feed_rec_t **parts; /* after files_place() */
  size_t *counts;
  int32_t n_parts;
} files_t;

static void files_free(files_t *f) {
  rs_buf_free(&f->data);
  rs_free(f->off);
  rs_free(f->vlen);
  rs_free(f->klen);
  rs_free(f->ts);
  rs_free(f->part);
  for (int32_t p = 0; f->parts && p < f->n_parts; p++)
    rs_free(f->parts[p]);
  rs_free(f->parts);
  rs_free(f->counts);
  memset(f, 0, sizeof *f);
}

static int files_grow(files_t *f) {
  if (f->n < f->cap)
    return 0;
  size_t cap = f->cap ? f->cap * 2 : 4096;
  size_t *off = rs_realloc(f->off, cap * sizeof(*off));
  if (off)
    f->off = off;
  uint32_t *vl = rs_realloc(f->vlen, cap * sizeof(*vl));
  if (vl)
    f->vlen = vl;
  uint32_t *kl = rs_realloc(f->klen, cap * sizeof(*kl));
  if (kl)
    f->klen = kl;
  int64_t *ts = rs_realloc(f->ts, cap * sizeof(*ts));
  if (ts)
    f->ts = ts;
  int32_t *pa = rs_realloc(f->part, cap * sizeof(*pa));
  if (pa)
    f->part = pa;
  if (!off || !vl || !kl || !ts || !pa)
    return RS_ENOMEM;
  f->cap = cap;
  return 0;
}

static int read_file(files_t *f, const char *path, avro_schema_t want,
                     char *errstr, size_t errstr_size) {
  /* avro-c leaks when it fails to open a file that is not a container:
   * look at the magic ("Obj" 1) first. */
  unsigned char magic[4] = {0};
  FILE *fp = fopen(path, "rb");
  size_t got = fp ? fread(magic, 1, sizeof magic, fp) : 0;
  if (fp)
    fclose(fp);
  if (!fp)
    return rs_seterr(errstr, errstr_size, RS_EIO, "%s: %s", path,
                     strerror(errno));
  if (got != 4 || memcmp(magic, "Obj\x01", 4))
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "%s: not a readable Avro object container file (no "
                     "container header)",
                     path);
  avro_file_reader_t r;
  if (avro_file_reader(path, &r))
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "%s: not a readable Avro object container file: %s", path,
                     avro_strerror());
  int rc = 0;
  avro_schema_t ws = avro_file_reader_get_writer_schema(r);
  avro_value_iface_t *iface = NULL;
  avro_value_t v;
  int has_v = 0;
  if (!avro_schema_equal(ws, want)) {
    rc = rs_seterr(errstr, errstr_size, RS_EDECODE,
                   "%s: its records are not interactions (the writer schema "
                   "is not schemas/interaction.avsc)",
                   path);
  } else {
    iface = avro_generic_class_from_schema(ws);
    if (!iface || avro_generic_value_new(iface, &v))
      rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "avro: %s",
                     avro_strerror());
    else
      has_v = 1;
  }
  int iu = avro_schema_record_field_get_index(want, "user_id");
  int it = avro_schema_record_field_get_index(want, "timestamp");
  if (!rc && (iu < 0 || it < 0))
    rc = rs_seterr(errstr, errstr_size, RS_EINTERNAL,
                   "interaction schema without user_id or timestamp");
  size_t i_user = iu < 0 ? 0 : (size_t)iu, i_ts = it < 0 ? 0 : (size_t)it;
  for (size_t rec = 0; !rc; rec++) {
    int e = avro_file_reader_read_value(r, &v);
    if (e == EOF)
      break;
    avro_value_t fu, ft;
    const char *user = NULL;
    size_t ulen = 0, vsize = 0;
    int64_t ts = 0;
    if (e || avro_value_get_by_index(&v, i_user, &fu, NULL) ||
        avro_value_get_string(&fu, &user, &ulen) ||
        avro_value_get_by_index(&v, i_ts, &ft, NULL) ||
        avro_value_get_long(&ft, &ts) || avro_value_sizeof(&v, &vsize)) {
      rc = rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "%s: record %zu cannot be read: %s", path, rec,
                     avro_strerror());
      break;
    }
    if (ulen > 0)
      ulen--; /* avro-c counts the terminating NUL */
    if (files_grow(f) || rs_buf_reserve(&f->data, vsize + ulen)) {
      rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
      break;
    }
    avro_writer_t w =
        avro_writer_memory(f->data.data + f->data.len, (int64_t)vsize);
    if (!w || avro_value_write(w, &v)) {
      if (w)
        avro_writer_free(w);
      rc = rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "%s: record %zu cannot be encoded: %s", path, rec,
                     avro_strerror());
      break;
    }
    avro_writer_free(w);
    f->off[f->n] = f->data.len;
    f->vlen[f->n] = (uint32_t)vsize;
    f->klen[f->n] = (uint32_t)ulen;
    f->ts[f->n] = ts;
    f->data.len += vsize;
    memcpy(f->data.data + f->data.len, user, ulen);
    f->data.len += ulen;
    f->n++;
  }
  if (has_v)
    avro_value_decref(&v);
  if (iface)
    avro_value_iface_decref(iface);
  avro_schema_decref(ws); /* the getter returned a reference of ours */
  avro_file_reader_close(r);
  return rc;
}

static int files_read(files_t *f, const char *pattern, char *errstr,
                      size_t errstr_size) {
  glob_t g;
  int gr = glob(pattern, 0, NULL, &g);
  if (gr == GLOB_NOMATCH)
    return rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "--files %s: no file matches", pattern);
  if (gr)
    return rs_seterr(errstr, errstr_size, RS_EIO, "--files %s: %s", pattern,
                     gr == GLOB_NOSPACE ? "out of memory" : "read error");
  avro_schema_t want = NULL;
  int rc = 0;
  if (avro_schema_from_json_length(rs_schema_interaction_json,
                                   strlen(rs_schema_interaction_json), &want))
    rc = rs_seterr(errstr, errstr_size, RS_EINTERNAL,
                   "compiled-in interaction schema: %s", avro_strerror());
  for (size_t i = 0; !rc && i < g.gl_pathc; i++) { /* glob sorts names */
    rc = read_file(f, g.gl_pathv[i], want, errstr, errstr_size);
    f->n_files++;
  }
  if (want)
    avro_schema_decref(want);
  globfree(&g);
  return rc;
}

/* Partitions (CRC32 of the key, librdkafka's default for keyed records). */
static int files_place(files_t *f, rd_kafka_topic_t *rkt, int32_t n_parts,
                       char *errstr, size_t errstr_size) {
  f->n_parts = n_parts;
  f->parts = rs_calloc((size_t)n_parts, sizeof(*f->parts));
  f->counts = rs_calloc((size_t)n_parts, sizeof(*f->counts));
  if (!f->parts || !f->counts)
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  for (size_t i = 0; i < f->n; i++) {
    const char *key = f->data.data + f->off[i] + f->vlen[i];
    f->part[i] = f->klen[i] ? rd_kafka_msg_partitioner_consistent(
                                  rkt, key, f->klen[i], n_parts, NULL, NULL)
                            : (int32_t)(i % (size_t)n_parts);
    f->counts[f->part[i]]++;
  }
  for (int32_t p = 0; p < n_parts; p++) {
    f->parts[p] =
        rs_calloc(f->counts[p] ? f->counts[p] : 1, sizeof(**f->parts));
    if (!f->parts[p])
      return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
    f->counts[p] = 0;
  }
  for (size_t i = 0; i < f->n; i++) {
    int32_t p = f->part[i];
    const char *v = f->data.data + f->off[i];
    f->parts[p][f->counts[p]++] = (rs_feed_rec_t){.key = v + f->vlen[i],
                                                  .key_len = f->klen[i],
                                                  .value = v,
                                                  .len = f->vlen[i],
                                                  .timestamp_ms = f->ts[i]};
  }
  return 0;
}

/* --files feeds raw Avro datums of the interaction schema: every parse
 * operator reading the source must expect that. */
static int check_parse_formats(const rs_config_t *cfg, char *errstr,
                               size_t errstr_size) {
  for (size_t i = 0; i < cfg->n_operators; i++) {
    const rs_operator_cfg_t *o = &cfg->operators[i];
    if (strcmp(o->type, "parse"))
      continue;
    rs_ypair_t *fmt = rs_ymap_find(o->node, "format");
    const char *v = fmt && fmt->value && fmt->value->type == RS_Y_SCALAR
                        ? fmt->value->scalar
                        : "avro";
    if (strcmp(v, "avro"))
      return rs_seterr(errstr, errstr_size, RS_EINVAL,
                       "--files feeds the records of Avro container files as "
                       "raw Avro, but operator '%s' parses format '%s' (set "
                       "operators.%s.format=avro)",
                       o->name, v, o->name);
  }
  return 0;
}

static volatile sig_atomic_t g_interrupted;
/* --files runs no loop: the first signal is noted (the progress callback
 * stops the engine, which checkpoints), a second one leaves at once. */
static void on_interrupt(int sig) {
  if (g_interrupted)
    _exit(128 + sig);
  g_interrupted = 1;
}

/* ------------------------------------------------------------ progress */

typedef struct progress {
  int tty;
  int quiet;      /* --progress none */
  rs_engine_t *e; /* --files: stopped here on SIGINT/SIGTERM */
  int64_t total;
  uint64_t t0;
  uint64_t last_line;
  int drew;
} progress_t;

static void fmt_secs(char *buf, size_t n, double s) {
  if (s < 0 || s > 1e7) {
    snprintf(buf, n, "--:--");
    return;
  }
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

static void on_progress(void *opaque, const struct rs_engine_stats *st) {
  progress_t *p = opaque;
  if (g_interrupted && p->e) {
    rs_engine_stop(p->e);
    return;
  }
  if (p->quiet)
    return;
  uint64_t now = rs_now_ns();
  if (!p->tty && now - p->last_line < 5ull * 1000000000u)
    return;
  p->last_line = now;
  double el = (double)(now - p->t0) / 1e9;
  double done = (double)st->records_in;
  double frac = p->total > 0 ? done / (double)p->total : 1.0;
  if (frac > 1)
    frac = 1;
  double rate = el > 0 ? done / el : 0;
  char e1[32], e2[32];
  fmt_secs(e1, sizeof e1, el);
  fmt_secs(e2, sizeof e2, rate > 0 ? ((double)p->total - done) / rate : -1.0);
  if (p->tty) {
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
      bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr,
            "\r[%s] %5.1f%%  %llu/%lld records  %.0f records/s  elapsed %s  "
            "ETA %s ",
            bar, frac * 100, (unsigned long long)st->records_in,
            (long long)p->total, rate, e1, e2);
    p->drew = 1;
  } else {
    fprintf(stderr,
            "recstream replay: %.1f%% (%llu of %lld records), %.0f "
            "records/s, elapsed %s, ETA %s\n",
            frac * 100, (unsigned long long)st->records_in, (long long)p->total,
            rate, e1, e2);
  }
  fflush(stderr);
}

/* ------------------------------------------------------------ command */

static const char replay_help[] =
    "Usage: recstream replay CONFIG [--from POS] [--to POS] [--state-dir DIR]\n"
    "                        [--output none|live|topic:NAME] [--dry-run]\n"
    "                        [--force] [--resume] [--yes] [--set ...]\n"
    "\n"
    "Processes a bounded range of the source topics through the pipeline, in\n"
    "deterministic order, into a state directory, then exits 0. `recstream\n"
    "run CONFIG --state-dir DIR` continues live exactly where it stopped:\n"
    "the offsets stored with the state win over the consumer group's.\n"
    "The replay itself never joins or commits to the consumer group.\n"
    "\n"
    "Positions (POS):\n"
    "  earliest                 each partition's first record (--from "
    "default)\n"
    "  latest, now              each partition's end when the replay starts\n"
    "                           (--to default)\n"
    "  2026-11-01T00:00:00Z     ISO-8601 with a zone: the first offset whose\n"
    "                           timestamp is at or after it (for --to: the\n"
    "                           first one not replayed)\n"
    "  -6h, -30m, -90s, -2d     the same, relative to now\n"
    "  0:100,1:250              offsets per partition (TOPIC:P:O for one\n"
    "                           source topic), each partition once;\n"
    "                           unlisted partitions: whole\n"
    "\n"
    "Options:\n"
    "  --from POS               where to start (default earliest)\n"
    "  --to POS                 where to stop, exclusive (default latest)\n"
    "  --state-dir DIR          the state directory to build (default:\n"
    "                           state.dir with \"-replay-<UTC time>\" "
    "appended)\n"
    "  --output MODE            none (default): write nothing, count it;\n"
    "                           topic:NAME: every sink writes to NAME, dead\n"
    "                           letters to NAME.dlq; live: the configured\n"
    "                           sinks (needs --yes)\n"
    "  --dry-run                print the plan and exit without writing\n"
    "  --force                  delete an existing state in DIR first\n"
    "  --resume                 continue an interrupted replay in DIR (its\n"
    "                           recorded plan; --from/--to not allowed)\n"
    "  --yes                    confirm --output live\n"
    "  --files GLOB             replay the Avro object container files\n"
    "                           matching GLOB (e.g. exports, or `recstream\n"
    "                           generate --out`) instead of topics: records\n"
    "                           of the interaction schema, files in name\n"
    "                           order, placed in partitions as librdkafka's\n"
    "                           default partitioner places keyed records,\n"
    "                           merged by event time like processing.order\n"
    "                           deterministic; the state gets no input\n"
    "                           offsets (files have no Kafka positions),\n"
    "                           but its positions in the files, so an\n"
    "                           interrupted one resumes (--resume)\n"
    "  --partitions N           --files: partitions of the source topic\n"
    "                           (default: asked from the broker)\n"
    "  --seek-window N          records read back from a time's crossing for\n"
    "                           records out of timestamp order (default "
    "10000)\n"
    "  --progress MODE          auto (default: a bar on a terminal, a line\n"
    "                           every 5 s otherwise), bar, lines or none\n"
    "  --set SECTION.KEY=VALUE  override a config value (repeatable)\n"
    "  --log-level LEVEL        error, warn (default here), info or debug\n"
    "  -h, --help               this help\n"
    "\n"
    "SIGINT/SIGTERM stop at the next checkpoint (a second one at once).\n"
    "Exit status: 0 every range replayed and checkpointed, 1 runtime\n"
    "failure or interrupted (the last checkpoint stays: --resume\n"
    "continues), 2 bad usage or bad config.\n";

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "recstream replay: ");
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry 'recstream replay --help'.\n");
  return EXIT_USAGE;
}

static int dir_state(const char *dir) {
  /* 0 missing, 1 empty, 2 non-empty */
  struct stat sb;
  if (stat(dir, &sb))
    return 0;
  char *probe_path = path_join(dir, "CURRENT");
  int has_db = probe_path && access(probe_path, F_OK) == 0;
  rs_free(probe_path);
  if (has_db)
    return 2;
  char *plan = path_join(dir, PLAN_FILE);
  int has_plan = plan && access(plan, F_OK) == 0;
  rs_free(plan);
  return has_plan ? 2 : 1;
}

typedef struct ropts {
  const char *from, *to, *state_dir, *output, *files;
  int partitions; /* --files: partitions of the source topic (0: ask) */
  int dry_run, force, resume, yes;
  int64_t window;
  const char *progress;
  const char **sets;
  size_t n_sets;
  const char *config;
} ropts_t;

static int parse_args(ropts_t *o, int argc, char **argv) {
  static const struct option lo[] = {
      {"from", required_argument, NULL, 'f'},
      {"to", required_argument, NULL, 't'},
      {"state-dir", required_argument, NULL, 'd'},
      {"output", required_argument, NULL, 'o'},
      {"dry-run", no_argument, NULL, 'n'},
      {"force", no_argument, NULL, 'F'},
      {"resume", no_argument, NULL, 'r'},
      {"yes", no_argument, NULL, 'y'},
      {"seek-window", required_argument, NULL, 'w'},
      {"files", required_argument, NULL, 'g'},
      {"partitions", required_argument, NULL, 'P'},
      {"progress", required_argument, NULL, 'p'},
      {"set", required_argument, NULL, 's'},
      {"log-level", required_argument, NULL, 'l'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  o->sets = calloc((size_t)argc + 1, sizeof(char *));
  if (!o->sets)
    return EXIT_RUNTIME;
  o->window = 10000;
  o->progress = "auto";
  o->output = "none";
  rs_log_set_level(RS_LOG_WARN);
  int ch;
  optind = 0;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
    switch (ch) {
    case 'f':
      o->from = optarg;
      break;
    case 't':
      o->to = optarg;
      break;
    case 'd':
      if (!*optarg)
        return usage("--state-dir: empty directory name");
      o->state_dir = optarg;
      break;
    case 'o':
      o->output = optarg;
      break;
    case 'n':
      o->dry_run = 1;
      break;
    case 'F':
      o->force = 1;
      break;
    case 'r':
      o->resume = 1;
      break;
    case 'y':
      o->yes = 1;
      break;
    case 'w': {
      char *end;
      errno = 0;
      long long v = strtoll(optarg, &end, 10);
      if (errno || *end || v < 0 || v > 100000000)
        return usage("--seek-window: expected an integer in [0, 100000000], "
                     "got '%s'",
                     optarg);
      o->window = v;
      break;
    }
    case 'g':
      if (!*optarg)
        return usage("--files: empty pattern");
      o->files = optarg;
      break;
    case 'P': {
      char *end;
      errno = 0;
      long v = strtol(optarg, &end, 10);
      if (errno || *end || v < 1 || v > 100000)
        return usage("--partitions: expected an integer in [1, 100000], got "
                     "'%s'",
                     optarg);
      o->partitions = (int)v;
      break;
    }
    case 'p':
      if (strcmp(optarg, "auto") && strcmp(optarg, "bar") &&
          strcmp(optarg, "lines") && strcmp(optarg, "none"))
        return usage("--progress: expected auto, bar, lines or none, got "
                     "'%s'",
                     optarg);
      o->progress = optarg;
      break;
    case 's':
      o->sets[o->n_sets++] = optarg;
      break;
    case 'l': {
      int lvl;
      if (rs_log_parse_level(optarg, &lvl))
        return usage("--log-level: expected error, warn, info or debug, got "
                     "'%s'",
                     optarg);
      rs_log_set_level(lvl);
      break;
    }
    case 'h':
      fputs(replay_help, stdout);
      return -1;
    default:
      return rs_option_error("replay", ch, argv[optind - 1]);
    }
  }
  if (optind >= argc)
    return usage("missing CONFIG (the pipeline YAML file)");
  if (optind + 1 < argc)
    return usage("unexpected argument '%s' after CONFIG", argv[optind + 1]);
  o->config = argv[optind];
  if (strcmp(o->output, "none") && strcmp(o->output, "live") &&
      (strncmp(o->output, "topic:", 6) || !o->output[6]))
    return usage("--output: expected none, live or topic:NAME, got '%s'",
                 o->output);
  if (!strcmp(o->output, "live") && !o->yes && !o->dry_run)
    return usage("--output live writes to the configured sinks, which live "
                 "consumers read; pass --yes to confirm");
  if (o->resume && (o->from || o->to))
    return usage("--resume continues the plan recorded in the state "
                 "directory; drop --from and --to");
  if (o->resume && o->force)
    return usage("--resume and --force contradict each other (--force "
                 "deletes the state --resume continues)");
  if (o->files && (o->from || o->to))
    return usage("--files replays whole files: --from and --to apply to "
                 "topics");
  if (o->partitions && !o->files)
    return usage("--partitions goes with --files (topics have their own)");
  if (o->resume && !o->state_dir)
    return usage("--resume needs --state-dir (the interrupted replay's)");
  return 0;
}

static void print_plan(const plan_t *p, const char *dir, const char *output,
                       FILE *f) {
  int64_t total = 0, gaps = 0;
  fprintf(f, "replay plan (from %s to %s):\n", p->from, p->to);
  fprintf(f, "  %-24s %9s %12s %12s %12s %12s\n", "topic", "partition", "low",
          "start", "end", "records");
  for (size_t i = 0; i < p->n; i++) {
    const pplan_t *q = &p->parts[i];
    char low[24];
    if (q->lo >= 0)
      snprintf(low, sizeof low, "%lld", (long long)q->lo);
    else
      snprintf(low, sizeof low, "-");
    fprintf(f, "  %-24s %9d %12s %12lld %12lld %12lld\n", q->topic,
            (int)q->partition, low, (long long)q->start, (long long)q->end,
            (long long)(q->end - q->start));
    total += q->end - q->start;
    gaps += q->below_low;
  }
  fprintf(f, "  records to replay: %lld\n", (long long)total);
  for (size_t i = 0; i < p->n; i++)
    if (p->parts[i].below_low > 0)
      fprintf(f,
              "  %s [%d]: %lld requested offsets lie below the low "
              "watermark %lld (removed by retention): they cannot be "
              "replayed\n",
              p->parts[i].topic, (int)p->parts[i].partition,
              (long long)p->parts[i].below_low, (long long)p->parts[i].lo);
  if (gaps)
    fprintf(f, "  missing (retention): %lld records in all\n", (long long)gaps);
  fprintf(f, "  state directory: %s\n", dir);
  if (!strcmp(output, "none"))
    fprintf(f, "  output: none (sinks and dead letters suppressed, counted)\n");
  else if (!strcmp(output, "live"))
    fprintf(f, "  output: the configured sinks and dead-letter topics\n");
  else
    fprintf(f, "  output: every sink to topic %s, dead letters to %s.dlq\n",
            output + 6, output + 6);
}

int rs_cmd_replay(int argc, char **argv) {
  ropts_t o = {0};
  int rc = parse_args(&o, argc, argv);
  if (rc) {
    free(o.sets);
    return rc < 0 ? EXIT_OK : rc;
  }
  char err[2048] = "";
  rs_config_t *cfg = NULL;
  rs_registry_t *reg = NULL;
  rs_graph_t *graph = NULL;
  rd_kafka_t *rk = NULL;
  rs_engine_t *e = NULL;
  plan_t plan = {0};
  rs_pos_t from = {0}, to = {0};
  rs_replay_part_t *ranges = NULL;
  char *dir = NULL;
  char *dlq = NULL;
  files_t files = {0};
  int exit_code = EXIT_OK;
  int64_t now_ms = (int64_t)time(NULL) * 1000;

  int erc = rs_config_load(o.config, o.sets, o.n_sets, &cfg, err, sizeof err);
  if (!erc)
    erc = rs_registry_new(&reg, err, sizeof err);
  for (size_t i = 0; !erc && i < cfg->n_plugins; i++)
    erc = rs_registry_load_plugin(reg, cfg->plugins[i], err, sizeof err);
  if (!erc)
    erc = rs_graph_build(cfg, reg, &graph, err, sizeof err);
  if (erc) {
    fprintf(stderr, "recstream replay: %s\n", err[0] ? err : rs_strerror(erc));
    exit_code = erc == RS_ENOMEM ? EXIT_RUNTIME : EXIT_USAGE;
    goto out;
  }
  int embedded = !strcmp(cfg->kafka.brokers, "embedded");
  if (embedded && (!o.files || strcmp(o.output, "none"))) {
    exit_code = usage("kafka.brokers is 'embedded', which starts an empty "
                      "broker: point it at the broker that holds the topics "
                      "(--set kafka.brokers=HOST:PORT)");
    goto out;
  }
  if (!strncmp(o.output, "topic:", 6)) {
    const char *name = o.output + 6;
    char dl[300] = ""; /* its dead-letter topic, NAME.dlq */
    if (strlen(name) < sizeof dl - 4)
      snprintf(dl, sizeof dl, "%s.dlq", name);
    if (!rs_topic_name_ok(name) || !rs_topic_name_ok(dl)) {
      exit_code = usage("--output topic:%s: not a valid Kafka topic name, or "
                        "too long for its dead-letter topic NAME.dlq (1 to "
                        "249 letters, digits, '.', '_' or '-'; not '.' or "
                        "'..')",
                        name);
      goto out;
    }
    for (size_t s = 0; s < cfg->n_sources; s++) {
      if (!strcmp(cfg->sources[s].topic, name)) {
        exit_code = usage("--output topic:%s: that is a source topic (the "
                          "replay would read its own output)",
                          name);
        goto out;
      }
      if (!strcmp(cfg->sources[s].topic, dl)) {
        exit_code = usage("--output topic:%s: its dead letters would go to "
                          "%s, a source topic (the replay would read them "
                          "back); choose another NAME",
                          name, dl);
        goto out;
      }
    }
  }
  if (!o.resume) {
    if (rs_pos_parse(o.from ? o.from : "earliest", now_ms, &from, err,
                     sizeof err)) {
      exit_code = usage("--from %s", err);
      goto out;
    }
    if (rs_pos_parse(o.to ? o.to : "latest", now_ms, &to, err, sizeof err)) {
      exit_code = usage("--to %s", err);
      goto out;
    }
  }

  /* The state directory. */
  if (o.state_dir) {
    dir = rs_strdup(o.state_dir);
  } else {
    char stamp[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    size_t n = strlen(cfg->state.dir) + strlen(stamp) + 16;
    dir = rs_malloc(n);
    if (dir)
      snprintf(dir, n, "%s-replay-%s", cfg->state.dir, stamp);
  }
  if (!dir) {
    fprintf(stderr, "recstream replay: out of memory\n");
    exit_code = EXIT_RUNTIME;
    goto out;
  }
  int ds = dir_state(dir);
  if (o.resume) {
    if (plan_read(&plan, dir, err, sizeof err)) {
      fprintf(stderr, "recstream replay: %s\n", err);
      exit_code = EXIT_RUNTIME;
      goto out;
    }
    if (strcmp(plan.output, o.output)) {
      exit_code = usage("--resume: the interrupted replay wrote --output %s; "
                        "pass the same",
                        plan.output);
      goto out;
    }
    if (!strncmp(plan.from, "files:", 6)) {
      /* The same files, placed in as many partitions as recorded. */
      if (o.files && strcmp(o.files, plan.from + 6)) {
        exit_code = usage("--resume: the interrupted replay read --files %s",
                          plan.from + 6);
        goto out;
      }
      o.files = plan.from + 6;
      o.partitions = (int)plan.n;
    } else if (o.files) {
      exit_code = usage("--resume: the interrupted replay read topics, not "
                        "files");
      goto out;
    }
    if (plan.complete) {
      printf("recstream replay: the replay in %s is complete; nothing to "
             "resume\n",
             dir);
      goto out;
    }
  } else if (ds == 2 && !o.force && !o.dry_run) {
    fprintf(stderr,
            "recstream replay: %s already holds state; a replay builds a "
            "fresh one. Choose another --state-dir, continue an interrupted "
            "replay with --resume, or pass --force to delete it first\n",
            dir);
    exit_code = EXIT_USAGE;
    goto out;
  }

  /* Plan (also for --resume: the watermarks, to report). */
  rd_kafka_conf_t *kc = NULL;
  if (o.files) {
    if (cfg->n_sources != 1) {
      exit_code =
          usage("--files feeds one source; the config has %zu", cfg->n_sources);
      goto out;
    }
    if (check_parse_formats(cfg, err, sizeof err)) {
      exit_code = usage("%s", err);
      goto out;
    }
  }
  if (o.files && embedded) {
    kc = rd_kafka_conf_new(); /* only for the partitioner below */
  } else {
    erc = rs_kafka_conf_new(cfg, cfg->kafka.brokers, RS_CLIENT_CONSUMER, &kc,
                            err, sizeof err);
    if (erc) {
      fprintf(stderr, "recstream replay: %s\n", err);
      exit_code = EXIT_USAGE;
      goto out;
    }
  }
  {
    char kerr[512];
    rs_kafka_conf_set(kc, "enable.partition.eof", "true", kerr, sizeof kerr);
    rs_kafka_conf_set(kc, "fetch.wait.max.ms", "10", kerr, sizeof kerr);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, kerr, sizeof kerr);
    if (!rk) {
      rd_kafka_conf_destroy(kc);
      erc = rs_seterr(err, sizeof err, RS_EKAFKA,
                      "cannot create a Kafka client: %s", kerr);
    }
  }
  if (!erc && o.files) {
    int32_t np = o.partitions;
    const char *topic = cfg->sources[0].topic;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt)
      erc = rs_seterr(err, sizeof err, RS_EKAFKA, "%s: %s", topic,
                      rd_kafka_err2str(rd_kafka_last_error()));
    if (!erc && !np && embedded)
      np = cfg->sources[0].partitions ? cfg->sources[0].partitions
                                      : cfg->kafka.embedded_partitions;
    if (!erc && !np) {
      const struct rd_kafka_metadata *md = NULL;
      rd_kafka_resp_err_t ke = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
      if (!ke && md->topic_cnt == 1 && !md->topics[0].err)
        np = md->topics[0].partition_cnt;
      if (md)
        rd_kafka_metadata_destroy(md);
      if (np <= 0)
        erc = rs_seterr(err, sizeof err, RS_EKAFKA,
                        "--files: the partition count of %s is unknown (%s); "
                        "pass --partitions N",
                        topic,
                        rd_kafka_err2str(
                            ke ? ke : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART));
    }
    if (!erc)
      erc = files_read(&files, o.files, err, sizeof err);
    if (!erc)
      erc = files_place(&files, rkt, np, err, sizeof err);
    if (rkt)
      rd_kafka_topic_destroy(rkt);
    if (o.resume) {
      /* The plan stays as recorded; the files must still be those. */
      for (int32_t p = 0; !erc && p < np; p++)
        if (plan.parts[p].partition != p ||
            plan.parts[p].end != (int64_t)files.counts[p])
          erc = rs_seterr(err, sizeof err, RS_ESTATE,
                          "--resume: %s now holds %zu records in partition "
                          "%d, the interrupted replay planned %lld: the files "
                          "changed (start over with --force)",
                          o.files, files.counts[p], (int)p,
                          (long long)plan.parts[p].end);
      goto planned;
    }
    size_t n = strlen(o.files) + 8;
    plan.from = rs_malloc(n);
    if (plan.from)
      snprintf(plan.from, n, "files:%s", o.files);
    plan.to = rs_strdup("end");
    plan.output = rs_strdup(o.output);
    plan.parts =
        rs_calloc((size_t)np > 0 ? (size_t)np : 1, sizeof(*plan.parts));
    if (!erc && (!plan.from || !plan.to || !plan.output || !plan.parts))
      erc = rs_seterr(err, sizeof err, RS_ENOMEM, "out of memory");
    for (int32_t p = 0; !erc && p < np; p++) {
      pplan_t *q = &plan.parts[plan.n++];
      q->topic = rs_strdup(topic);
      q->partition = p;
      q->lo = q->hi = -1;
      q->start = 0;
      q->end = (int64_t)files.counts[p];
      if (!q->topic)
        erc = rs_seterr(err, sizeof err, RS_ENOMEM, "out of memory");
    }
  } else if (!erc && !o.resume) {
    plan.from = rs_strdup(o.from ? o.from : "earliest");
    plan.to = rs_strdup(o.to ? o.to : "latest");
    plan.output = rs_strdup(o.output);
    erc = build_plan(cfg, rk, &from, &to, o.window, &plan, err, sizeof err);
  }
planned:
  if (erc) {
    fprintf(stderr, "recstream replay: %s\n", err[0] ? err : rs_strerror(erc));
    exit_code = erc == RS_EINVAL ? EXIT_USAGE : EXIT_RUNTIME;
    goto out;
  }
  if (rk) {
    rd_kafka_destroy(rk);
    rk = NULL;
  }
  print_plan(&plan, dir, o.output, o.dry_run ? stdout : stderr);
  if (o.files)
    fprintf(o.dry_run ? stdout : stderr,
            "  files: %zu (%zu records), in %d partitions of %s\n",
            files.n_files, files.n, (int)files.n_parts, cfg->sources[0].topic);
  if (o.dry_run) {
    if (ds == 2 && !o.resume)
      printf("  note: %s already holds state; the replay needs --force, "
             "--resume or another --state-dir\n",
             dir);
    goto out;
  }

  if (ds == 2 && o.force) {
    if (rs_store_destroy_dir(dir, err, sizeof err)) {
      fprintf(stderr, "recstream replay: --force: %s\n", err);
      exit_code = EXIT_RUNTIME;
      goto out;
    }
    fprintf(stderr, "recstream replay: --force: state in %s deleted\n", dir);
  }
  /* The plan goes into the directory first: --resume reads it back. */
  {
    if (rs_mkdir_parents(dir, "--state-dir", err, sizeof err)) {
      fprintf(stderr, "recstream replay: %s\n", err);
      exit_code = EXIT_RUNTIME;
      goto out;
    }
    if (mkdir(dir, 0755) && errno != EEXIST) {
      fprintf(stderr, "recstream replay: cannot create %s: %s\n", dir,
              strerror(errno));
      exit_code = EXIT_RUNTIME;
      goto out;
    }
  }
  if (!o.resume && plan_write(&plan, dir, err, sizeof err)) {
    fprintf(stderr, "recstream replay: %s\n", err);
    exit_code = EXIT_RUNTIME;
    goto out;
  }

  /* Outputs. */
  if (!strncmp(o.output, "topic:", 6)) {
    for (size_t i = 0; i < cfg->n_sinks; i++) {
      char *t = rs_strdup(o.output + 6);
      if (!t) {
        exit_code = EXIT_RUNTIME;
        goto out;
      }
      rs_free(cfg->sinks[i].topic);
      cfg->sinks[i].topic = t;
    }
    size_t n = strlen(o.output + 6) + 5;
    dlq = rs_malloc(n);
    if (!dlq) {
      exit_code = EXIT_RUNTIME;
      goto out;
    }
    snprintf(dlq, n, "%s.dlq", o.output + 6);
  }
  rs_free(cfg->state.dir);
  cfg->state.dir = rs_strdup(dir);
  ranges = rs_calloc(plan.n ? plan.n : 1, sizeof(*ranges));
  if (!cfg->state.dir || !ranges) {
    fprintf(stderr, "recstream replay: out of memory\n");
    exit_code = EXIT_RUNTIME;
    goto out;
  }
  int64_t total = 0;
  for (size_t i = 0; i < plan.n; i++) {
    ranges[i] = (rs_replay_part_t){.topic = plan.parts[i].topic,
                                   .partition = plan.parts[i].partition,
                                   .start = plan.parts[i].start,
                                   .end = plan.parts[i].end};
    total += plan.parts[i].end - plan.parts[i].start;
  }
  progress_t prog = {.tty = isatty(STDERR_FILENO),
                     .total = total,
                     .quiet = !strcmp(o.progress, "none")};
  if (!strcmp(o.progress, "bar"))
    prog.tty = 1;
  else if (!strcmp(o.progress, "lines"))
    prog.tty = 0;
  rs_engine_opts_t eo = {.handle_signals = 1,
                         .replay = o.files ? NULL : ranges,
                         .n_replay = o.files ? 0 : plan.n,
                         .suppress_output = !strcmp(o.output, "none"),
                         .dlq_topic = dlq,
                         .state_reset = 1,
                         .files = o.files != NULL};
  if (strcmp(o.progress, "none") || o.files) {
    eo.progress = on_progress;
    eo.progress_opaque = &prog;
    eo.progress_ms = prog.tty ? 250 : 1000;
  }
  erc = rs_engine_new(cfg, graph, &eo, &e, err, sizeof err);
  if (erc) {
    fprintf(stderr, "recstream replay: %s\n", err[0] ? err : rs_strerror(erc));
    exit_code = erc == RS_ECONFIG ? EXIT_USAGE : EXIT_RUNTIME;
    goto out;
  }
  prog.t0 = prog.last_line = rs_now_ns();
  if (o.files) {
    /* No engine loop to take signals: the progress callback stops it. */
    prog.e = e;
    struct sigaction sa = {.sa_handler = on_interrupt}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    erc = rs_engine_run_feed(e, 0, (const rs_feed_rec_t *const *)files.parts,
                             files.counts, files.n_parts, err, sizeof err);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
  } else {
    erc = rs_engine_run(e, err, sizeof err);
  }
  double secs = (double)(rs_now_ns() - prog.t0) / 1e9;
  rs_engine_stats_t st;
  rs_engine_get_stats(e, &st);
  if (prog.drew)
    fputc('\n', stderr);
  if (!erc && st.interrupted)
    erc = rs_seterr(err, sizeof err, RS_EINTERNAL,
                    "interrupted before the end of the ranges");
  if (!erc) {
    plan.complete = 1;
    if (plan_write(&plan, dir, err, sizeof err))
      fprintf(stderr, "recstream replay: %s\n", err), erc = RS_EIO;
  }
  printf("recstream replay: %s after %.2f s\n", erc ? "failed" : "complete",
         secs);
  printf("  records:            %llu of %lld planned%s (%.0f records/s)\n",
         (unsigned long long)st.records_in, (long long)total,
         o.resume ? ", the rest before --resume" : "",
         secs > 0 ? (double)st.records_in / secs : 0.0);
  for (size_t i = 0; i < plan.n; i++)
    printf("  %s [%d]: offsets %lld..%lld\n", plan.parts[i].topic,
           (int)plan.parts[i].partition, (long long)plan.parts[i].start,
           (long long)plan.parts[i].end);
  printf("  dead-lettered:      %llu\n", (unsigned long long)st.dead_lettered);
  for (size_t i = 0; i < graph->n; i++)
    if (graph->nodes[i].kind == RS_NODE_OPERATOR) {
      /* sessionize counts "late_records" (records past grace). */
      uint64_t late =
          rs_engine_counter(e, graph->nodes[i].name, "late") +
          rs_engine_counter(e, graph->nodes[i].name, "late_records");
      if (late)
        printf("  late (%s):%*s%llu\n", graph->nodes[i].name,
               (int)(12 > strlen(graph->nodes[i].name)
                         ? 12 - strlen(graph->nodes[i].name)
                         : 1),
               "", (unsigned long long)late);
    }
  if (!strcmp(o.output, "none"))
    printf("  outputs withheld:   %llu (--output none; %llu of them dead "
           "letters)\n",
           (unsigned long long)st.withheld,
           (unsigned long long)st.withheld_dead_letters);
  else
    printf("  outputs written:    %llu\n", (unsigned long long)st.records_out);
  if (st.input_gaps)
    printf("  input gaps:         %llu offsets without records (see the "
           "log)\n",
           (unsigned long long)st.input_gaps);
  printf("  checkpoints:        %llu\n", (unsigned long long)st.checkpoints);
  printf("  state directory:    %s\n", dir);
  if (!erc && !o.files)
    printf("  continue live with: recstream run %s --state-dir %s\n", o.config,
           dir);
  fflush(stdout);
  if (erc) {
    fprintf(stderr,
            "recstream replay: %s\n(the last checkpoint in %s stays; the "
            "same command with --resume continues)\n",
            err[0] ? err : rs_strerror(erc), dir);
    exit_code = EXIT_RUNTIME;
  }
out:
  if (e)
    rs_engine_destroy(e);
  if (rk)
    rd_kafka_destroy(rk);
  rs_free(ranges);
  rs_free(dlq);
  rs_free(dir);
  files_free(&files);
  plan_free(&plan);
  rs_pos_free(&from);
  rs_pos_free(&to);
  rs_graph_destroy(graph);
  rs_registry_destroy(reg);
  rs_config_destroy(cfg);
  free(o.sets);
  return exit_code;
}
