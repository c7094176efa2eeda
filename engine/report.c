/* `recstream report`: CTR per experiment variant from the recommendations
 * and feedback topics. See report.h and docs/REPORT.md. */
#include "report.h"

#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recstream/error.h"

/* ---- statistics ---- */

void rs_wilson(uint64_t k, uint64_t n, double z, double *lo, double *hi) {
  if (n == 0 || k > n) {
    *lo = *hi = 0;
    return;
  }
  double nn = (double)n, p = (double)k / nn, z2 = z * z;
  double den = 1 + z2 / nn;
  double center = (p + z2 / (2 * nn)) / den;
  double half = z / den * sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn));
  *lo = center - half < 0 ? 0 : center - half;
  *hi = center + half > 1 ? 1 : center + half;
}

void rs_ctr_diff(uint64_t k1, uint64_t n1, uint64_t k2, uint64_t n2, double z,
                 double *d, double *lo, double *hi) {
  if (!n1 || !n2) {
    *d = *lo = *hi = 0;
    return;
  }
  double p1 = (double)k1 / (double)n1, p2 = (double)k2 / (double)n2;
  double l1, u1, l2, u2;
  rs_wilson(k1, n1, z, &l1, &u1);
  rs_wilson(k2, n2, z, &l2, &u2);
  *d = p1 - p2;
  *lo = *d - sqrt((p1 - l1) * (p1 - l1) + (u2 - p2) * (u2 - p2));
  *hi = *d + sqrt((u1 - p1) * (u1 - p1) + (p2 - l2) * (p2 - l2));
}

/* ---- aggregation ---- */

typedef struct imp {
  char *id; /* NULL: empty slot */
  uint32_t variant;
  uint32_t clicked;
} imp_t;

struct rs_report {
  imp_t *slots;
  size_t cap, n; /* cap: a power of two */
  rs_report_variant_t *v;
  size_t nv;
  uint64_t bad_recommendations, bad_feedback;
  uint64_t feedback_other;  /* not CLICK */
  uint64_t clicks_no_id;    /* CLICK without an impression id */
  uint64_t clicks_unknown;  /* naming no impression read */
  uint64_t clicks_repeated; /* a second click on one impression */
};

rs_report_t *rs_report_new(void) {
  return rs_calloc(1, sizeof(rs_report_t));
}

void rs_report_destroy(rs_report_t *r) {
  if (!r)
    return;
  for (size_t i = 0; i < r->cap; i++)
    rs_free(r->slots[i].id);
  rs_free(r->slots);
  for (size_t i = 0; i < r->nv; i++)
    rs_free(r->v[i].name);
  rs_free(r->v);
  rs_free(r);
}

static uint64_t hash(const char *s, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
  return h ^ (h >> 29);
}

static imp_t *find(rs_report_t *r, const char *id, size_t n) {
  if (!r->cap)
    return NULL;
  for (size_t i = hash(id, n) & (r->cap - 1);; i = (i + 1) & (r->cap - 1)) {
    imp_t *s = &r->slots[i];
    if (!s->id || (strlen(s->id) == n && !memcmp(s->id, id, n)))
      return s;
  }
}

static int grow(rs_report_t *r) {
  size_t cap = r->cap ? 2 * r->cap : 1024;
  imp_t *old = r->slots;
  size_t oc = r->cap;
  if (!(r->slots = rs_calloc(cap, sizeof(imp_t)))) {
    r->slots = old;
    return RS_ENOMEM;
  }
  r->cap = cap;
  for (size_t i = 0; i < oc; i++)
    if (old[i].id)
      *find(r, old[i].id, strlen(old[i].id)) = old[i];
  rs_free(old);
  return 0;
}

int rs_report_add_recommendation(rs_report_t *r,
                                 const rs_recommendation_t *rec) {
  const char *vn = rec->variant ? rec->variant : "";
  size_t vl = rec->variant ? rec->variant_len : 0;
  uint32_t v = 0;
  while (v < r->nv &&
         !(strlen(r->v[v].name) == vl && !memcmp(r->v[v].name, vn, vl)))
    v++;
  if (v == r->nv) {
    rs_report_variant_t *a = rs_realloc(r->v, (r->nv + 1) * sizeof(*a));
    if (!a)
      return RS_ENOMEM;
    r->v = a;
    a[v] = (rs_report_variant_t){.name = rs_strndup(vn, vl)};
    if (!a[v].name)
      return RS_ENOMEM;
    r->nv++;
  }
  if (2 * (r->n + 1) > r->cap && grow(r))
    return RS_ENOMEM;
  imp_t *s = find(r, rec->impression_id, rec->impression_id_len);
  if (s->id)
    return 0; /* the same impression again (a replay, a duplicate) */
  if (!(s->id = rs_strndup(rec->impression_id, rec->impression_id_len)))
    return RS_ENOMEM;
  s->variant = v;
  r->n++;
  r->v[v].impressions++;
  return 0;
}

int rs_report_add_feedback(rs_report_t *r, const rs_feedback_t *fb) {
  if (fb->type != RS_FEEDBACK_CLICK) {
    r->feedback_other++;
    return 0;
  }
  if (!fb->impression_id) {
    r->clicks_no_id++;
    return 0;
  }
  imp_t *s = find(r, fb->impression_id, fb->impression_id_len);
  if (!s || !s->id) {
    r->clicks_unknown++;
    return 0;
  }
  if (s->clicked) {
    r->clicks_repeated++;
    return 0;
  }
  s->clicked = 1;
  r->v[s->variant].clicks++;
  return 0;
}

static int cmp_variant(const void *a, const void *b) {
  return strcmp(((const rs_report_variant_t *)a)->name,
                ((const rs_report_variant_t *)b)->name);
}

size_t rs_report_variants(rs_report_t *r, const rs_report_variant_t **out) {
  /* Sorting renumbers the variants: remap the impressions' indexes. */
  uint32_t *map = rs_calloc(r->nv ? r->nv : 1, sizeof(*map));
  char **names = rs_calloc(r->nv ? r->nv : 1, sizeof(*names));
  if (map && names) {
    for (size_t i = 0; i < r->nv; i++)
      names[i] = r->v[i].name;
    qsort(r->v, r->nv, sizeof(*r->v), cmp_variant);
    for (size_t i = 0; i < r->nv; i++)
      for (size_t j = 0; j < r->nv; j++)
        if (r->v[j].name == names[i])
          map[i] = (uint32_t)j;
    for (size_t i = 0; i < r->cap; i++)
      if (r->slots[i].id)
        r->slots[i].variant = map[r->slots[i].variant];
  }
  rs_free(map);
  rs_free(names);
  *out = r->v;
  return r->nv;
}

static void json_name(rs_buf_t *out, const char *s) {
  rs_buf_printf(out, "\"");
  for (; *s; s++)
    if (*s == '"' || *s == '\\')
      rs_buf_printf(out, "\\%c", *s);
    else if ((unsigned char)*s < 0x20)
      rs_buf_printf(out, "\\u%04x", (unsigned)*s);
    else
      rs_buf_printf(out, "%c", *s);
  rs_buf_printf(out, "\"");
}

int rs_report_render(rs_report_t *r, int json, rs_buf_t *out) {
  const rs_report_variant_t *v;
  size_t n = rs_report_variants(r, &v);
  size_t len0 = out->len;
  if (json)
    rs_buf_printf(out, "{\"variants\":[");
  else
    rs_buf_printf(out, "%-12s %12s %10s %8s %19s %9s %21s\n", "variant",
                  "impressions", "clicks", "ctr", "ctr 95% ci", "diff",
                  "diff 95% ci");
  for (size_t i = 0; i < n; i++) {
    double lo, hi, d = 0, dlo = 0, dhi = 0;
    double ctr =
        v[i].impressions ? (double)v[i].clicks / (double)v[i].impressions : 0;
    rs_wilson(v[i].clicks, v[i].impressions, RS_Z95, &lo, &hi);
    if (i)
      rs_ctr_diff(v[i].clicks, v[i].impressions, v[0].clicks, v[0].impressions,
                  RS_Z95, &d, &dlo, &dhi);
    if (json) {
      rs_buf_printf(out, "%s{\"variant\":", i ? "," : "");
      json_name(out, v[i].name);
      rs_buf_printf(out,
                    ",\"impressions\":%llu,\"clicks\":%llu,\"ctr\":%.6f,"
                    "\"ctr_ci95\":[%.6f,%.6f]",
                    (unsigned long long)v[i].impressions,
                    (unsigned long long)v[i].clicks, ctr, lo, hi);
      if (i) {
        rs_buf_printf(out, ",\"diff_vs\":");
        json_name(out, v[0].name);
        rs_buf_printf(out, ",\"diff\":%.6f,\"diff_ci95\":[%.6f,%.6f]", d, dlo,
                      dhi);
      }
      rs_buf_printf(out, "}");
    } else {
      char name[64], ci[48], dd[16], dci[48];
      snprintf(name, sizeof name, "%s", *v[i].name ? v[i].name : "(none)");
      snprintf(ci, sizeof ci, "[%.4f, %.4f]", lo, hi);
      if (i) {
        snprintf(dd, sizeof dd, "%+.4f", d);
        snprintf(dci, sizeof dci, "[%+.4f, %+.4f]", dlo, dhi);
      } else {
        snprintf(dd, sizeof dd, "(ref)");
        dci[0] = '\0';
      }
      rs_buf_printf(out, "%-12s %12llu %10llu %8.4f %19s %9s %21s\n", name,
                    (unsigned long long)v[i].impressions,
                    (unsigned long long)v[i].clicks, ctr, ci, dd, dci);
    }
  }
  if (json)
    rs_buf_printf(out,
                  "],\"bad_recommendations\":%llu,\"bad_feedback\":%llu,"
                  "\"feedback_not_click\":%llu,\"clicks_without_impression_"
                  "id\":%llu,\"clicks_unknown_impression\":%llu,"
                  "\"clicks_repeated\":%llu}\n",
                  (unsigned long long)r->bad_recommendations,
                  (unsigned long long)r->bad_feedback,
                  (unsigned long long)r->feedback_other,
                  (unsigned long long)r->clicks_no_id,
                  (unsigned long long)r->clicks_unknown,
                  (unsigned long long)r->clicks_repeated);
  else
    rs_buf_printf(out,
                  "not counted: %llu undecodable recommendations, %llu "
                  "undecodable feedback, %llu feedback other than CLICK, "
                  "%llu clicks without impression id, %llu naming unknown "
                  "impressions, %llu repeated clicks\n",
                  (unsigned long long)r->bad_recommendations,
                  (unsigned long long)r->bad_feedback,
                  (unsigned long long)r->feedback_other,
                  (unsigned long long)r->clicks_no_id,
                  (unsigned long long)r->clicks_unknown,
                  (unsigned long long)r->clicks_repeated);
  return out->len > len0 || !n ? 0 : RS_ENOMEM;
}

/* ---- reading the topics ---- */

int rs_report_read_topic(const char *bootstrap, const char *topic,
                         int timeout_ms,
                         int (*cb)(void *opaque, const void *value, size_t len,
                                   int64_t offset),
                         void *opaque, char *errstr, size_t errstr_size) {
  char e[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, e, sizeof e) ||
      rd_kafka_conf_set(conf, "group.id", "recstream-report", e, sizeof e) ||
      rd_kafka_conf_set(conf, "enable.auto.commit", "false", e, sizeof e) ||
      rd_kafka_conf_set(conf, "enable.partition.eof", "false", e, sizeof e)) {
    rd_kafka_conf_destroy(conf);
    return rs_seterr(errstr, errstr_size, RS_EKAFKA, "%s", e);
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    return rs_seterr(errstr, errstr_size, RS_EKAFKA, "%s", e);
  }
  int rc = 0;
  /* The metadata of all topics, not of this one: a request naming a topic
   * that does not exist creates it on brokers that create topics on first
   * use (the embedded broker does), and a mistyped name would then read
   * as an empty topic. */
  const struct rd_kafka_metadata *md = NULL;
  const struct rd_kafka_metadata_topic *mt = NULL;
  rd_kafka_resp_err_t err =
      rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms > 0 ? timeout_ms : 10000);
  for (int i = 0; !err && i < md->topic_cnt && !mt; i++)
    if (!strcmp(md->topics[i].topic, topic))
      mt = &md->topics[i];
  rd_kafka_topic_partition_list_t *parts = NULL;
  int64_t *end = NULL;
  int left = 0;
  if (!err && !mt) {
    rc = rs_seterr(errstr, errstr_size, RS_EKAFKA,
                   "topic '%s' does not exist in the cluster", topic);
    goto out;
  }
  if (!err)
    err = mt->err;
  if (err) {
    rc = rs_seterr(errstr, errstr_size, RS_EKAFKA, "topic '%s': %s", topic,
                   rd_kafka_err2str(err));
    goto out;
  }
  int np = mt->partition_cnt;
  parts = rd_kafka_topic_partition_list_new(np);
  end = rs_calloc(np ? (size_t)np : 1, sizeof(*end));
  for (int i = 0; end && i < np; i++) {
    int32_t p = mt->partitions[i].id;
    int64_t lo = 0, hi = 0;
    err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi,
                                           timeout_ms > 0 ? timeout_ms : 10000);
    if (err) {
      rc = rs_seterr(errstr, errstr_size, RS_EKAFKA, "topic '%s' [%d]: %s",
                     topic, (int)p, rd_kafka_err2str(err));
      goto out;
    }
    if (p < np)
      end[p] = hi;
    if (hi > lo) {
      rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
          RD_KAFKA_OFFSET_BEGINNING;
      left++;
    }
  }
  if (!end) {
    rc = RS_ENOMEM;
    goto out;
  }
  if (left && (err = rd_kafka_assign(rk, parts))) {
    rc = rs_seterr(errstr, errstr_size, RS_EKAFKA, "assign: %s",
                   rd_kafka_err2str(err));
    goto out;
  }
  uint64_t waited = 0;
  while (left && !rc) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
    if (!m) {
      waited += 100;
      if (timeout_ms > 0 && waited > (uint64_t)timeout_ms)
        rc = rs_seterr(errstr, errstr_size, RS_EKAFKA,
                       "topic '%s': the end was not reached within "
                       "%d ms",
                       topic, timeout_ms);
      continue;
    }
    waited = 0;
    if (m->err) {
      if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        rc = rs_seterr(errstr, errstr_size, RS_EKAFKA, "topic '%s': %s", topic,
                       rd_kafka_message_errstr(m));
    } else {
      rc = cb(opaque, m->payload, m->len, m->offset);
      if (m->partition < np && m->offset + 1 == end[m->partition])
        left--;
    }
    rd_kafka_message_destroy(m);
  }
out:
  rs_free(end);
  if (parts)
    rd_kafka_topic_partition_list_destroy(parts);
  if (md)
    rd_kafka_metadata_destroy(md);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return rc;
}

typedef struct collect {
  rs_report_t *r;
  rs_format_t fmt;
  uint64_t read; /* records of the current topic that decoded */
} collect_t;

static void *heap_alloc(void *opaque, size_t n) {
  (void)opaque;
  return rs_malloc(n);
}

static int on_reco(void *opaque, const void *value, size_t len,
                   int64_t offset) {
  collect_t *c = opaque;
  rs_recommendation_t rec;
  char err[256];
  (void)offset;
  /* Strings are copied with rs_malloc and freed right after. */
  if (rs_recommendation_decode(c->fmt, value, len, &rec, heap_alloc, NULL, err,
                               sizeof err)) {
    c->r->bad_recommendations++;
    return 0;
  }
  c->read++;
  int rc = rs_report_add_recommendation(c->r, &rec);
  rs_free((void *)rec.user);
  rs_free((void *)rec.impression_id);
  rs_free((void *)rec.variant);
  return rc;
}

typedef struct blocks {
  void *p[4];
  int n;
} blocks_t;

static void *block_alloc(void *opaque, size_t n) {
  blocks_t *b = opaque;
  return b->n < 4 ? (b->p[b->n++] = rs_malloc(n)) : NULL;
}

static int on_feedback(void *opaque, const void *value, size_t len,
                       int64_t offset) {
  collect_t *c = opaque;
  rs_feedback_t fb;
  char err[256];
  blocks_t b = {{0}, 0};
  (void)offset;
  int rc = 0;
  if (rs_feedback_decode(c->fmt, value, len, &fb, block_alloc, &b, err,
                         sizeof err))
    c->r->bad_feedback++;
  else {
    c->read++;
    rc = rs_report_add_feedback(c->r, &fb);
  }
  for (int i = 0; i < b.n; i++)
    rs_free(b.p[i]);
  return rc;
}

int rs_report_collect(rs_report_t *r, const char *bootstrap,
                      const char *reco_topic, rs_format_t reco_fmt,
                      const char *feedback_topic, rs_format_t fb_fmt,
                      int timeout_ms, char *errstr, size_t errstr_size) {
  collect_t c = {r, reco_fmt, 0};
  uint64_t bad0 = r->bad_recommendations;
  int rc = rs_report_read_topic(bootstrap, reco_topic, timeout_ms, on_reco, &c,
                                errstr, errstr_size);
  /* A topic of which nothing decodes is the wrong topic or format: a
   * table of zeros would hide it. */
  if (!rc && !c.read && r->bad_recommendations > bad0)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "none of the %llu records of topic '%s' reads as a "
                     "recommendation in %s; the wrong topic, or --format?",
                     (unsigned long long)(r->bad_recommendations - bad0),
                     reco_topic, rs_format_name(reco_fmt));
  if (!rc && feedback_topic) {
    c.fmt = fb_fmt;
    c.read = 0;
    bad0 = r->bad_feedback;
    rc = rs_report_read_topic(bootstrap, feedback_topic, timeout_ms,
                              on_feedback, &c, errstr, errstr_size);
    if (!rc && !c.read && r->bad_feedback > bad0)
      return rs_seterr(errstr, errstr_size, RS_EDECODE,
                       "none of the %llu records of topic '%s' reads as "
                       "feedback in %s; the wrong topic, or "
                       "--feedback-format?",
                       (unsigned long long)(r->bad_feedback - bad0),
                       feedback_topic, rs_format_name(fb_fmt));
  }
  return rc;
}

/* ---- the command ---- */

static const char report_help[] =
    "Usage: recstream report --brokers LIST [options]\n"
    "\n"
    "Reads the recommendations topic and the feedback topic from their\n"
    "beginning to their current end and prints, per experiment variant:\n"
    "impressions (distinct impression ids), clicks (impressions with at\n"
    "least one CLICK feedback naming them), CTR with its 95% Wilson\n"
    "interval, and the CTR difference to the first variant (by name) with\n"
    "its 95% Newcombe interval. See docs/REPORT.md.\n"
    "\n"
    "Options:\n"
    "  --brokers LIST            bootstrap servers (required)\n"
    "  --recommendations TOPIC   default: recommendations\n"
    "  --feedback TOPIC          default: feedback; '' for none\n"
    "  --format FMT              recommendations: avro|confluent|json "
    "(default avro)\n"
    "  --feedback-format FMT     feedback: avro|confluent|json (default "
    "json)\n"
    "  --timeout-ms N            give up when a topic stalls this long "
    "(default 10000)\n"
    "  --json                    one JSON object instead of the table\n"
    "  -h, --help                this text\n";

int rs_cmd_report(int argc, char **argv) {
  static const struct option longopts[] = {
      {"brokers", required_argument, 0, 'b'},
      {"recommendations", required_argument, 0, 'r'},
      {"feedback", required_argument, 0, 'f'},
      {"format", required_argument, 0, 'F'},
      {"feedback-format", required_argument, 0, 'G'},
      {"timeout-ms", required_argument, 0, 't'},
      {"json", no_argument, 0, 'j'},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  const char *brokers = NULL, *reco = "recommendations", *fbt = "feedback";
  rs_format_t rf = RS_FORMAT_AVRO, ff = RS_FORMAT_JSON;
  int json = 0;
  int64_t timeout = 10000;
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (ch) {
    case 'b':
      brokers = optarg;
      break;
    case 'r':
      reco = optarg;
      break;
    case 'f':
      fbt = optarg;
      break;
    case 'F':
    case 'G':
      if (rs_format_parse(optarg, ch == 'F' ? &rf : &ff)) {
        fprintf(stderr,
                "recstream report: %s: expected avro, confluent or json, "
                "got '%s'\n",
                ch == 'F' ? "--format" : "--feedback-format", optarg);
        return 2;
      }
      break;
    case 't':
      if (rs_parse_int64(optarg, &timeout) || timeout < 1 ||
          timeout > 3600000) {
        fprintf(stderr,
                "recstream report: --timeout-ms: expected 1..3600000, got "
                "'%s'\n",
                optarg);
        return 2;
      }
      break;
    case 'j':
      json = 1;
      break;
    case 'h':
      fputs(report_help, stdout);
      return 0;
    default:
      fprintf(stderr,
              ch == ':' ? "recstream report: option '%s' needs a value\n\n%s"
                        : "recstream report: unknown or ambiguous option "
                          "'%s'\n\n%s",
              argv[optind - 1], report_help);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "recstream report: unexpected argument '%s'\n",
            argv[optind]);
    return 2;
  }
  if (!brokers || !*brokers || !*reco) {
    fprintf(stderr,
            "recstream report: --brokers (and a non-empty "
            "--recommendations topic) are required\n\n%s",
            report_help);
    return 2;
  }
  rs_report_t *r = rs_report_new();
  char err[1024] = "";
  int rc = r ? rs_report_collect(r, brokers, reco, rf, *fbt ? fbt : NULL, ff,
                                 (int)timeout, err, sizeof err)
             : RS_ENOMEM;
  rs_buf_t out = {0};
  if (!rc)
    rc = rs_report_render(r, json, &out);
  if (rc)
    fprintf(stderr, "recstream report: %s\n", err[0] ? err : rs_strerror(rc));
  else
    fwrite(out.data, 1, out.len, stdout);
  rs_buf_free(&out);
  rs_report_destroy(r);
  return rc ? 1 : 0;
}
