/* Rendering of an engine snapshot: Prometheus text exposition format and
 * JSON. See metrics.h for the naming rules. */
#include "metrics.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments.h"

/* 10 us .. 2.5 s: a batch of up to processing.batch_size records. */
const double rs_hist_bounds[RS_HIST_N - 1] = {
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
    0.0025,  0.005,    0.01,    0.025,  0.1,     2.5};

void rs_histogram_observe(rs_histogram_t *h, uint64_t ns) {
  double s = (double)ns / 1e9;
  size_t i = 0;
  while (i < RS_HIST_N - 1 && s > rs_hist_bounds[i])
    i++;
  h->bucket[i]++;
  h->count++;
  h->sum_ns += ns;
}

/* 1 ms .. 1 h: event time to output spans network, queues and lag. */
const double rs_lat_bounds[RS_LAT_N - 1] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1,     2.5,    5,     10,   30,    60,   300, 3600};
static const uint64_t lat_bounds_ns[RS_LAT_N - 1] = {
    1000000ull,      2500000ull,     5000000ull,     10000000ull,
    25000000ull,     50000000ull,    100000000ull,   250000000ull,
    500000000ull,    1000000000ull,  2500000000ull,  5000000000ull,
    10000000000ull,  30000000000ull, 60000000000ull, 300000000000ull,
    3600000000000ull};

void rs_lat_observe(rs_lat_histogram_t *h, uint64_t ns) {
  size_t i = 0;
  while (i < RS_LAT_N - 1 && ns > lat_bounds_ns[i])
    i++;
  h->bucket[i]++;
  h->count++;
  h->sum_ns += ns;
}

double rs_lat_quantile(const rs_lat_histogram_t *h, double q) {
  if (!h->count)
    return -1;
  double rank = q * (double)h->count;
  uint64_t cum = 0;
  for (size_t i = 0; i < RS_LAT_N; i++) {
    uint64_t before = cum;
    cum += h->bucket[i];
    if ((double)cum < rank || !h->bucket[i])
      continue;
    if (i == RS_LAT_N - 1)
      return rs_lat_bounds[RS_LAT_N - 2];
    double lo = i ? rs_lat_bounds[i - 1] : 0, hi = rs_lat_bounds[i];
    return lo + (hi - lo) * (rank - (double)before) / (double)h->bucket[i];
  }
  return rs_lat_bounds[RS_LAT_N - 2];
}

void rs_metrics_snapshot_free(rs_metrics_snapshot_t *s) {
  rs_free(s->node_e2e);
  rs_free(s->cfs);
  rs_free(s->node_out);
  rs_free(s->node_hist);
  rs_free(s->counters);
  rs_free(s->counter_variants);
  rs_free(s->insts);
  rs_free(s->parts);
  memset(s, 0, sizeof(*s));
}

void rs_metrics_sanitize(const char *name, char *buf, size_t size) {
  size_t i = 0;
  for (; name[i] && i + 1 < size; i++) {
    char ch = name[i];
    int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
             (ch >= '0' && ch <= '9') || ch == '_';
    buf[i] = ok ? ch : '_';
  }
  if (size)
    buf[i] = '\0';
}

/* v with the characters in `special` escaped as backslash + (n for a
 * newline, else the character itself); runs without them are appended at
 * once (a scrape renders thousands of label values and HELP texts). */
static int put_escaped(rs_buf_t *b, const char *v, const char *special) {
  for (;;) {
    size_t run = strcspn(v, special);
    if (run && rs_buf_append(b, v, run))
      return RS_ENOMEM;
    v += run;
    if (!*v)
      return 0;
    char esc[2] = {'\\', *v == '\n' ? 'n' : *v};
    if (rs_buf_append(b, esc, 2))
      return RS_ENOMEM;
    v++;
  }
}

/* Label values: backslash, double quote and newline escaped. */
static int put_label_value(rs_buf_t *b, const char *v) {
  return put_escaped(b, v, "\\\"\n");
}

/* HELP text: backslash and newline escaped. */
static int put_help(rs_buf_t *b, const char *name, const char *help,
                    const char *type) {
  if (rs_buf_printf(b, "# HELP %s ", name) || put_escaped(b, help, "\\\n"))
    return RS_ENOMEM;
  return rs_buf_printf(b, "\n# TYPE %s %s\n", name, type) ? RS_ENOMEM : 0;
}

static int put_u64(rs_buf_t *b, const char *name, const char *help,
                   const char *type, uint64_t v) {
  if (put_help(b, name, help, type) ||
      rs_buf_printf(b, "%s %llu\n", name, (unsigned long long)v))
    return RS_ENOMEM;
  return 0;
}

static int put_i64(rs_buf_t *b, const char *name, const char *help, int64_t v) {
  if (put_help(b, name, help, "gauge") ||
      rs_buf_printf(b, "%s %lld\n", name, (long long)v))
    return RS_ENOMEM;
  return 0;
}

static int put_seconds(rs_buf_t *b, const char *name, const char *help,
                       uint64_t ns) {
  if (put_help(b, name, help, "counter") ||
      rs_buf_printf(b, "%s %.9f\n", name, (double)ns / 1e9))
    return RS_ENOMEM;
  return 0;
}

static int put_seconds_gauge(rs_buf_t *b, const char *name, const char *help,
                             uint64_t ns) {
  if (put_help(b, name, help, "gauge") ||
      rs_buf_printf(b, "%s %.9f\n", name, (double)ns / 1e9))
    return RS_ENOMEM;
  return 0;
}

/* One sample of an operator counter, its family name precomputed. */
typedef struct fam_sample {
  char family[160];
  const char *help;
  const char *op;
  const char *type;
  size_t node;
  uint64_t value;
  const char *variant; /* NULL: not an experiment's instance */
} fam_sample_t;

static int cmp_sample(const void *a, const void *b) {
  const fam_sample_t *x = a, *y = b;
  int c = strcmp(x->family, y->family);
  if (c)
    return c;
  if (x->node != y->node)
    return x->node < y->node ? -1 : 1;
  return strcmp(x->variant ? x->variant : "", y->variant ? y->variant : "");
}

static void family_of(const rs_gnode_t *n, const char *counter, char *buf,
                      size_t size) {
  /* The engine's own per-operator counters share one family across
   * operator types; the operators' own are named after their type. */
  if (!strcmp(counter, "records_in") || !strcmp(counter, "records_out") ||
      !strcmp(counter, "dead_lettered")) {
    snprintf(buf, size, "recstream_%s_total", counter);
    return;
  }
  char type[64], name[80];
  rs_metrics_sanitize(n->def ? n->def->name : "operator", type, sizeof type);
  rs_metrics_sanitize(counter, name, sizeof name);
  size_t len = strlen(name);
  int has_total = len >= 6 && !strcmp(name + len - 6, "_total");
  snprintf(buf, size, "recstream_%s_%s%s", type, name,
           has_total ? "" : "_total");
}

static int render_counters(const rs_metrics_snapshot_t *s, rs_buf_t *b) {
  if (!s->n_counters)
    return 0;
  fam_sample_t *v = rs_calloc(s->n_counters, sizeof(*v));
  if (!v)
    return RS_ENOMEM;
  for (size_t i = 0; i < s->n_counters; i++) {
    const rs_metric_counter_t *c = &s->counters[i];
    const rs_gnode_t *n = &s->g->nodes[c->node];
    family_of(n, c->name, v[i].family, sizeof v[i].family);
    v[i].help = c->help && *c->help ? c->help : c->name;
    v[i].op = n->name;
    v[i].type = n->def ? n->def->name : "";
    v[i].node = c->node;
    v[i].value = c->value;
    v[i].variant = s->counter_variants ? s->counter_variants[i] : NULL;
  }
  qsort(v, s->n_counters, sizeof(*v), cmp_sample);
  int rc = 0;
  for (size_t i = 0; i < s->n_counters && !rc; i++) {
    if (i == 0 || strcmp(v[i].family, v[i - 1].family))
      rc = put_help(b, v[i].family, v[i].help, "counter");
    if (!rc)
      rc =
          rs_buf_printf(b, "%s{operator=\"", v[i].family) ||
                  put_label_value(b, v[i].op) ||
                  rs_buf_printf(b, "\",type=\"") ||
                  put_label_value(b, v[i].type) ||
                  (v[i].variant && (rs_buf_printf(b, "\",variant=\"") ||
                                    put_label_value(b, v[i].variant))) ||
                  rs_buf_printf(b, "\"} %llu\n", (unsigned long long)v[i].value)
              ? RS_ENOMEM
              : 0;
  }
  rs_free(v);
  return rc;
}

/* One histogram's series: cumulative buckets over `bounds` (n - 1 finite
 * bounds in seconds, then +Inf), sum (sum_digits decimals) and count.
 * `labels` is the rendered label set (k="v",...; "" for none). */
static int put_series(rs_buf_t *b, const char *name, const char *labels,
                      const double *bounds, const uint64_t *bucket, size_t n,
                      uint64_t count, uint64_t sum_ns, int sum_digits) {
  const int has = labels[0] != 0;
  uint64_t cum = 0;
  for (size_t k = 0; k < n; k++) {
    cum += bucket[k];
    char le[32];
    if (k < n - 1)
      snprintf(le, sizeof le, "%g", bounds[k]);
    else
      snprintf(le, sizeof le, "+Inf");
    if (rs_buf_printf(b, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels,
                      has ? "," : "", le, (unsigned long long)cum))
      return RS_ENOMEM;
  }
  if (rs_buf_printf(b, "%s_sum%s%s%s %.*f\n", name, has ? "{" : "", labels,
                    has ? "}" : "", sum_digits, (double)sum_ns / 1e9) ||
      rs_buf_printf(b, "%s_count%s%s%s %llu\n", name, has ? "{" : "", labels,
                    has ? "}" : "", (unsigned long long)count))
    return RS_ENOMEM;
  return 0;
}

/* One operator's (or variant instance's) process-time series:
 * operator="op"[,variant="v"]. */
static int put_hist(rs_buf_t *b, const char *name, const char *op,
                    const char *variant, const rs_histogram_t *h) {
  rs_buf_t l = {0};
  int rc = rs_buf_printf(&l, "operator=\"") || put_label_value(&l, op) ||
                   (variant && (rs_buf_printf(&l, "\",variant=\"") ||
                                put_label_value(&l, variant))) ||
                   rs_buf_printf(&l, "\"") || rs_buf_append(&l, "", 1)
               ? RS_ENOMEM
               : put_series(b, name, l.data, rs_hist_bounds, h->bucket,
                            RS_HIST_N, h->count, h->sum_ns, 9);
  rs_buf_free(&l);
  return rc;
}

static int render_hists(const rs_metrics_snapshot_t *s, rs_buf_t *b) {
  static const char name[] = "recstream_operator_process_seconds";
  if (!s->node_hist && !s->n_insts)
    return 0;
  int any = 0;
  size_t k = 0; /* insts are in node order */
  for (size_t i = 0; i < s->g->n; i++) {
    const rs_gnode_t *n = &s->g->nodes[i];
    if (n->kind != RS_NODE_OPERATOR)
      continue;
    while (k < s->n_insts && s->insts[k].node < i)
      k++;
    int split = k < s->n_insts && s->insts[k].node == i;
    if (!split && !s->node_hist)
      continue;
    if (!any && put_help(b, name,
                         "time one call of the operator's process() took (one "
                         "batch of records of one partition)",
                         "histogram"))
      return RS_ENOMEM;
    any = 1;
    if (!split) {
      if (put_hist(b, name, n->name, NULL, &s->node_hist[i]))
        return RS_ENOMEM;
      continue;
    }
    for (; k < s->n_insts && s->insts[k].node == i; k++)
      if (put_hist(b, name, n->name, s->insts[k].variant, &s->insts[k].proc))
        return RS_ENOMEM;
  }
  return 0;
}

/* One latency histogram's series, with one label or none. */
static int put_lat(rs_buf_t *b, const char *name, const char *label,
                   const char *value, const rs_lat_histogram_t *h) {
  rs_buf_t l = {0};
  int rc = (label && (rs_buf_printf(&l, "%s=\"", label) ||
                      put_label_value(&l, value) || rs_buf_printf(&l, "\""))) ||
                   rs_buf_append(&l, "", 1)
               ? RS_ENOMEM
               : put_series(b, name, l.data, rs_lat_bounds, h->bucket, RS_LAT_N,
                            h->count, h->sum_ns, 6);
  rs_buf_free(&l);
  return rc;
}

static int render_latency(const rs_metrics_snapshot_t *s, rs_buf_t *b) {
  static const char e2e[] = "recstream_event_to_output_seconds";
  int any = 0;
  for (size_t i = 0; s->node_e2e && i < s->g->n; i++) {
    const rs_gnode_t *n = &s->g->nodes[i];
    if (n->kind != RS_NODE_SINK)
      continue;
    if (!any && put_help(b, e2e,
                         "an input record's timestamp (Kafka's, or the "
                         "file's) to its output handed to the producer, per "
                         "sink (wall clock; a timestamp in the future counts "
                         "as 0)",
                         "histogram"))
      return RS_ENOMEM;
    any = 1;
    if (put_lat(b, e2e, "sink", n->name, &s->node_e2e[i]))
      return RS_ENOMEM;
  }
  static const char ack[] = "recstream_output_ack_seconds";
  if (put_help(b, ack,
               "produce() of an output (sink or dead letter) to the "
               "broker's acknowledgement (librdkafka's message latency)",
               "histogram") ||
      put_lat(b, ack, NULL, NULL, &s->ack))
    return RS_ENOMEM;
  return 0;
}

static int put_cf(rs_buf_t *b, const rs_metrics_snapshot_t *s, const char *name,
                  const char *help, size_t field) {
  if (put_help(b, name, help, "gauge"))
    return RS_ENOMEM;
  for (size_t i = 0; i < s->n_cfs; i++) {
    const rs_metric_cf_t *c = &s->cfs[i];
    uint64_t v = field == 0   ? c->estimated_keys
                 : field == 1 ? c->sst_bytes
                 : field == 2 ? c->memtable_bytes
                              : c->pending_compaction_bytes;
    if (rs_buf_printf(b, "%s{column_family=\"", name) ||
        put_label_value(b, c->name ? c->name : "") ||
        rs_buf_printf(b, "\"} %llu\n", (unsigned long long)v))
      return RS_ENOMEM;
  }
  return 0;
}

static int render_store(const rs_metrics_snapshot_t *s, rs_buf_t *b) {
  if (!s->has_store)
    return 0;
  if (put_cf(b, s, "recstream_rocksdb_estimated_keys",
             "keys in the column family (RocksDB's estimate; one column "
             "family per operator, __offsets holds the positions)",
             0) ||
      put_cf(b, s, "recstream_rocksdb_sst_bytes",
             "bytes of the column family's SST files", 1) ||
      put_cf(b, s, "recstream_rocksdb_memtable_bytes",
             "bytes of the column family's memtables", 2) ||
      put_cf(b, s, "recstream_rocksdb_pending_compaction_bytes",
             "bytes RocksDB estimates compaction has to rewrite", 3) ||
      put_u64(b, "recstream_rocksdb_block_cache_bytes",
              "bytes in RocksDB's block cache", "gauge",
              s->block_cache_bytes) ||
      put_u64(b, "recstream_rocksdb_block_cache_capacity_bytes",
              "bound of RocksDB's block cache (state.block_cache)", "gauge",
              s->block_cache_capacity) ||
      put_u64(b, "recstream_checkpoint_last_bytes",
              "bytes of the last checkpoint's write batch (state and "
              "offsets)",
              "gauge", s->checkpoint_last_bytes) ||
      put_u64(b, "recstream_checkpoint_bytes_total",
              "bytes of every checkpoint's write batch", "counter",
              s->checkpoint_total_bytes))
    return RS_ENOMEM;
  return 0;
}

static int render_sinks(const rs_metrics_snapshot_t *s, rs_buf_t *b) {
  int any = 0;
  for (size_t i = 0; i < s->g->n; i++) {
    const rs_gnode_t *n = &s->g->nodes[i];
    if (n->kind != RS_NODE_SINK)
      continue;
    if (!any && put_help(b, "recstream_sink_records_total",
                         "records produced to the sink's topic", "counter"))
      return RS_ENOMEM;
    any = 1;
    if (rs_buf_printf(b, "recstream_sink_records_total{sink=\"") ||
        put_label_value(b, n->name) || rs_buf_printf(b, "\",topic=\"") ||
        put_label_value(b, s->g->cfg->sinks[n->cfg_index].topic) ||
        rs_buf_printf(b, "\"} %llu\n",
                      (unsigned long long)(s->node_out ? s->node_out[i] : 0)))
      return RS_ENOMEM;
  }
  return 0;
}

static int part_labels(rs_buf_t *b, const char *metric,
                       const rs_metric_part_t *p) {
  return rs_buf_printf(b, "%s{topic=\"", metric) ||
                 put_label_value(b, p->topic) ||
                 rs_buf_printf(b, "\",partition=\"%d\"}", (int)p->partition)
             ? RS_ENOMEM
             : 0;
}

static int render_parts(const rs_metrics_snapshot_t *s, rs_buf_t *b) {
  if (!s->n_parts)
    return 0;
  if (put_help(b, "recstream_partition_assigned",
               "1 while the source partition is assigned to this instance",
               "gauge"))
    return RS_ENOMEM;
  for (size_t i = 0; i < s->n_parts; i++)
    if (part_labels(b, "recstream_partition_assigned", &s->parts[i]) ||
        rs_buf_printf(b, " %d\n", s->parts[i].assigned ? 1 : 0))
      return RS_ENOMEM;
  if (put_help(b, "recstream_partition_position",
               "next offset of the source partition to process", "gauge"))
    return RS_ENOMEM;
  for (size_t i = 0; i < s->n_parts; i++)
    if (s->parts[i].position >= 0 &&
        (part_labels(b, "recstream_partition_position", &s->parts[i]) ||
         rs_buf_printf(b, " %lld\n", (long long)s->parts[i].position)))
      return RS_ENOMEM;
  if (put_help(b, "recstream_consumer_lag",
               "records of the source partition not processed yet (high "
               "watermark, as last seen by the client, minus position)",
               "gauge"))
    return RS_ENOMEM;
  for (size_t i = 0; i < s->n_parts; i++) {
    const rs_metric_part_t *p = &s->parts[i];
    if (!p->assigned || p->position < 0 || p->high_watermark < 0)
      continue;
    int64_t lag = p->high_watermark - p->position;
    if (part_labels(b, "recstream_consumer_lag", p) ||
        rs_buf_printf(b, " %lld\n", (long long)(lag > 0 ? lag : 0)))
      return RS_ENOMEM;
  }
  return 0;
}

static int render_cache(const rs_metrics_snapshot_t *s, rs_buf_t *b) {
  if (!s->has_cache)
    return 0;
  const rs_cache_stats_t *c = &s->cache;
  if (put_u64(b, "recstream_state_cache_hits_total",
              "state reads served by the cache", "counter", c->hits) ||
      put_u64(b, "recstream_state_cache_misses_total",
              "state reads that went to RocksDB", "counter", c->misses) ||
      put_u64(b, "recstream_state_cache_evictions_total",
              "cache entries evicted for space", "counter", c->evictions) ||
      put_u64(b, "recstream_state_cache_writebacks_total",
              "dirty entries among the evicted, spilled to the next batch",
              "counter", c->writebacks) ||
      put_u64(b, "recstream_state_cache_entries", "entries in the cache",
              "gauge", c->entries) ||
      put_u64(b, "recstream_state_cache_bytes",
              "bytes the cache holds (entries, free blocks, table)", "gauge",
              c->total_bytes) ||
      put_u64(b, "recstream_state_cache_dirty_bytes",
              "bytes of entries changed since the last checkpoint", "gauge",
              c->dirty_bytes) ||
      put_u64(b, "recstream_state_cache_spill_bytes",
              "evicted dirty bytes awaiting the next checkpoint", "gauge",
              c->spill_bytes) ||
      put_u64(b, "recstream_state_cache_retired_bytes",
              "old blocks of entries changed while a checkpoint writes them, "
              "kept for its writer until it is durable (outside the bound)",
              "gauge", c->retired_bytes) ||
      put_u64(b, "recstream_state_cache_limit_bytes",
              "bound of the cache (state.cache)", "gauge", c->bound_bytes))
    return RS_ENOMEM;
  return 0;
}

/* Does node `node` register a counter named `name` (any instance)? */
static int has_counter(const rs_metrics_snapshot_t *s, size_t node,
                       const char *name) {
  for (size_t k = 0; k < s->n_counters; k++)
    if (s->counters[k].node == node && !strcmp(s->counters[k].name, name))
      return 1;
  return 0;
}

/* Sum of counter `name` over experiment x's split operators that count
 * both impressions and clicks, for the instances of variant `variant`. */
static uint64_t variant_sum(const rs_metrics_snapshot_t *s,
                            const rs_experiment_t *x, const char *variant,
                            const char *name) {
  uint64_t sum = 0;
  for (size_t k = 0; k < s->n_counters; k++) {
    const rs_metric_counter_t *c = &s->counters[k];
    const char *v = s->counter_variants ? s->counter_variants[k] : NULL;
    if (!v || strcmp(v, variant) || strcmp(c->name, name))
      continue;
    int split = 0;
    for (size_t o = 0; o < x->n_ops && !split; o++)
      split = x->ops[o] == c->node;
    if (split && has_counter(s, c->node, "impressions") &&
        has_counter(s, c->node, "clicks"))
      sum += c->value;
  }
  return sum;
}

static int exp_labels(rs_buf_t *b, const char *metric, const char *x,
                      const char *v) {
  return rs_buf_printf(b, "%s{experiment=\"", metric) ||
                 put_label_value(b, x) || rs_buf_printf(b, "\",variant=\"") ||
                 put_label_value(b, v) || rs_buf_printf(b, "\"}")
             ? RS_ENOMEM
             : 0;
}

/* CTR per experiment variant (metrics.h). */
static int render_experiments(const rs_metrics_snapshot_t *s, rs_buf_t *b) {
  const rs_experiments_t *xs = s->g->exp;
  static const char *const names[] = {"recstream_experiment_impressions_total",
                                      "recstream_experiment_clicks_total",
                                      "recstream_experiment_ctr"};
  static const char *const helps[] = {
      "recommendation lists shown, per experiment variant (the impressions "
      "counter of the split operators that count clicks, e.g. bandit_reward)",
      "clicks joined with the lists shown, per experiment variant",
      "clicks per list shown since the start, per experiment variant "
      "(recstream_experiment_clicks_total / "
      "recstream_experiment_impressions_total; NaN before the first list); "
      "over a window: rate(clicks) / rate(impressions)"};
  static const char *const types[] = {"counter", "counter", "gauge"};
  int any = 0;
  for (size_t i = 0; xs && i < xs->n && !any; i++)
    for (size_t o = 0; o < xs->x[i].n_ops && !any; o++)
      any = has_counter(s, xs->x[i].ops[o], "impressions") &&
            has_counter(s, xs->x[i].ops[o], "clicks");
  if (!any)
    return 0;
  for (size_t m = 0; m < 3; m++) {
    if (put_help(b, names[m], helps[m], types[m]))
      return RS_ENOMEM;
    for (size_t i = 0; i < xs->n; i++) {
      const rs_experiment_t *x = &xs->x[i];
      int counts = 0;
      for (size_t o = 0; o < x->n_ops && !counts; o++)
        counts = has_counter(s, x->ops[o], "impressions") &&
                 has_counter(s, x->ops[o], "clicks");
      if (!counts)
        continue;
      for (size_t v = 0; v < x->n; v++) {
        uint64_t imp = variant_sum(s, x, x->v[v].name, "impressions");
        uint64_t clk = variant_sum(s, x, x->v[v].name, "clicks");
        if (exp_labels(b, names[m], x->name, x->v[v].name))
          return RS_ENOMEM;
        int rc = m == 0   ? rs_buf_printf(b, " %llu\n", (unsigned long long)imp)
                 : m == 1 ? rs_buf_printf(b, " %llu\n", (unsigned long long)clk)
                 : imp ? rs_buf_printf(b, " %.9g\n", (double)clk / (double)imp)
                       : rs_buf_printf(b, " NaN\n");
        if (rc)
          return RS_ENOMEM;
      }
    }
  }
  return 0;
}

int rs_metrics_render(const rs_metrics_snapshot_t *s, rs_buf_t *b) {
  const rs_engine_stats_t *st = &s->stats;
  if (put_u64(b, "recstream_up", "1 while the engine runs its loop", "gauge",
              !strcmp(s->state, "running") ? 1 : 0) ||
      put_u64(b, "recstream_ready",
              "1 when partitions are assigned and being consumed", "gauge",
              s->ready ? 1 : 0) ||
      put_u64(b, "recstream_input_records_total",
              "records consumed from the sources and processed", "counter",
              st->records_in) ||
      put_u64(b, "recstream_refetched_records_total",
              "records delivered again after a pause and skipped", "counter",
              st->refetched) ||
      put_u64(b, "recstream_input_gaps_total",
              "input records removed by retention before being processed",
              "counter", st->input_gaps) ||
      put_u64(b, "recstream_batches_total", "batches processed", "counter",
              st->batches) ||
      put_u64(b, "recstream_dead_letters_total",
              "dead letters produced, all operators", "counter",
              st->dead_lettered) ||
      put_u64(b, "recstream_delivery_failures_total",
              "outputs the broker did not acknowledge", "counter",
              st->delivery_failures) ||
      put_u64(b, "recstream_backpressure_pauses_total",
              "times draining stopped because outputs were in flight",
              "counter", st->pauses) ||
      put_u64(b, "recstream_partition_pauses_total",
              "backpressure episodes long enough to pause the partitions",
              "counter", st->partition_pauses) ||
      put_seconds(b, "recstream_paused_seconds_total",
                  "time spent paused by backpressure", s->paused_ns) ||
      put_u64(b, "recstream_paused", "1 while backpressure holds processing",
              "gauge", s->paused ? 1 : 0) ||
      put_i64(b, "recstream_inflight_records",
              "outputs produced and not acknowledged yet",
              s->inflight_records) ||
      put_i64(b, "recstream_inflight_bytes",
              "bytes of outputs produced and not acknowledged yet",
              s->inflight_bytes) ||
      put_i64(b, "recstream_inflight_bytes_max",
              "highest recstream_inflight_bytes so far",
              st->max_inflight_bytes) ||
      put_i64(b, "recstream_producer_queue_length",
              "messages and requests queued in the producer client",
              s->producer_queue) ||
      put_u64(b, "recstream_producer_queue_full_waits_total",
              "times a produce waited for room in the client's queue",
              "counter", st->queue_full_waits) ||
      put_u64(b, "recstream_commits_total", "offset commits to the group",
              "counter", st->commits) ||
      put_u64(b, "recstream_checkpoints_total", "state checkpoints written",
              "counter", st->checkpoints) ||
      put_seconds(b, "recstream_checkpoint_seconds_total",
                  "time spent writing checkpoints (RocksDB write, off the "
                  "loop thread)",
                  st->checkpoint_ns) ||
      put_seconds(b, "recstream_checkpoint_wait_seconds_total",
                  "time from a checkpoint's request to its end (waiting for "
                  "outputs in flight included; processing goes on)",
                  st->checkpoint_wait_ns) ||
      put_seconds(b, "recstream_checkpoint_hold_seconds_total",
                  "loop time checkpoints took: capture and end; synchronous "
                  "ones (revocation, shutdown, replays) in full, waits for "
                  "acknowledgements and the write included",
                  st->checkpoint_hold_ns) ||
      put_seconds_gauge(b, "recstream_checkpoint_hold_max_seconds",
                        "the longest single checkpoint hold of the loop",
                        st->checkpoint_hold_max_ns) ||
      put_seconds(b, "recstream_checkpoint_ack_wait_seconds_total",
                  "time from checkpoints' capture to the acknowledgement of "
                  "every output produced before it",
                  st->checkpoint_ack_wait_ns) ||
      put_u64(b, "recstream_checkpoint_pauses_total",
              "processing paused because the state cache's spill grew "
              "while a checkpoint waited for acknowledgements",
              "counter", st->checkpoint_pauses) ||
      put_u64(b, "recstream_paused_revokes_total",
              "partition revocations that found the input paused for "
              "backpressure and resumed the revoked partitions",
              "counter", st->paused_revokes) ||
      put_u64(b, "recstream_suppressed_outputs_total",
              "exactly_once: regenerated outputs not sent again", "counter",
              st->suppressed) ||
      put_u64(b, "recstream_ordering_giveups_total",
              "deterministic order: waits for an idle partition given up",
              "counter", st->ordering_giveups) ||
      put_u64(b, "recstream_withheld_outputs_total",
              "outputs not written (output suppressed by the run mode)",
              "counter", st->withheld))
    return RS_ENOMEM;
  int rc;
  if ((rc = render_counters(s, b)) || (rc = render_hists(s, b)) ||
      (rc = render_sinks(s, b)) || (rc = render_parts(s, b)) ||
      (rc = render_cache(s, b)) || (rc = render_latency(s, b)) ||
      (rc = render_store(s, b)) || (rc = render_experiments(s, b)))
    return rc;
  return 0;
}

/* Counter `name` of node `node`, summed over its variant instances (or of
 * the instance of `variant` only, when not NULL). */
static uint64_t counter_of(const rs_metrics_snapshot_t *s, size_t node,
                           const char *variant, const char *name) {
  uint64_t sum = 0;
  for (size_t k = 0; k < s->n_counters; k++) {
    if (s->counters[k].node != node || strcmp(s->counters[k].name, name))
      continue;
    const char *v = s->counter_variants ? s->counter_variants[k] : NULL;
    if (variant && (!v || strcmp(v, variant)))
      continue;
    sum += s->counters[k].value;
  }
  return sum;
}

uint64_t rs_metrics_inst_in(const rs_metrics_snapshot_t *s, size_t k) {
  return counter_of(s, s->insts[k].node, s->insts[k].variant, "records_in");
}

uint64_t rs_metrics_inst_out(const rs_metrics_snapshot_t *s, size_t k) {
  return counter_of(s, s->insts[k].node, s->insts[k].variant, "records_out");
}

static uint64_t source_total(const rs_metrics_snapshot_t *s, size_t i) {
  const char *topic = s->g->cfg->sources[s->g->nodes[i].cfg_index].topic;
  uint64_t sum = 0;
  for (size_t k = 0; k < s->n_parts; k++)
    if (s->parts[k].assigned && s->parts[k].position > 0 &&
        !strcmp(s->parts[k].topic, topic))
      sum += (uint64_t)s->parts[k].position;
  return sum;
}

uint64_t rs_metrics_node_in(const rs_metrics_snapshot_t *s, size_t i) {
  switch (s->g->nodes[i].kind) {
  case RS_NODE_SOURCE:
    return source_total(s, i);
  case RS_NODE_SINK:
    return s->node_out ? s->node_out[i] : 0;
  default:
    return counter_of(s, i, NULL, "records_in");
  }
}

uint64_t rs_metrics_node_out(const rs_metrics_snapshot_t *s, size_t i) {
  switch (s->g->nodes[i].kind) {
  case RS_NODE_SOURCE:
    return source_total(s, i);
  case RS_NODE_SINK:
    return s->node_out ? s->node_out[i] : 0;
  default:
    return counter_of(s, i, NULL, "records_out");
  }
}

static const char *kind_name(rs_node_kind_t k) {
  return k == RS_NODE_SOURCE ? "source"
         : k == RS_NODE_SINK ? "sink"
                             : "operator";
}

static int dump_into(json_t *root, rs_buf_t *out) {
  if (!root)
    return RS_ENOMEM;
  char *txt = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  if (!txt)
    return RS_ENOMEM;
  int rc = rs_buf_append(out, txt, strlen(txt)) ? RS_ENOMEM : 0;
  free(txt);
  return rc;
}

int rs_metrics_graph_json(const rs_metrics_snapshot_t *s, rs_buf_t *out) {
  const rs_graph_t *g = s->g;
  json_t *root = json_object(), *nodes = json_array(), *edges = json_array();
  if (!root || !nodes || !edges) {
    json_decref(root);
    json_decref(nodes);
    json_decref(edges);
    return RS_ENOMEM;
  }
  json_object_set_new(root, "state", json_string(s->state));
  if (s->rate_in)
    json_object_set_new(root, "rate_window_s", json_real(s->rate_window_s));
  json_object_set_new(root, "nodes", nodes);
  json_object_set_new(root, "edges", edges);
  int bad = 0;
  for (size_t i = 0; i < g->n; i++) {
    const rs_gnode_t *n = &g->nodes[i];
    json_t *o = json_object(), *counters = json_object();
    bad |= !o || !counters;
    json_object_set_new(o, "name", json_string(n->name));
    json_object_set_new(o, "kind", json_string(kind_name(n->kind)));
    if (n->kind == RS_NODE_OPERATOR)
      json_object_set_new(o, "type", json_string(n->def->name));
    if (n->kind == RS_NODE_SOURCE)
      json_object_set_new(o, "topic",
                          json_string(g->cfg->sources[n->cfg_index].topic));
    if (n->kind == RS_NODE_SINK) {
      json_object_set_new(o, "topic",
                          json_string(g->cfg->sinks[n->cfg_index].topic));
      json_object_set_new(
          counters, "records_out",
          json_integer((json_int_t)(s->node_out ? s->node_out[i] : 0)));
    }
    /* A split operator's counters: summed over its variants here, each
     * variant's own under "variants". */
    for (size_t k = 0; k < s->n_counters; k++)
      if (s->counters[k].node == i)
        json_object_set_new(counters, s->counters[k].name,
                            json_integer((json_int_t)counter_of(
                                s, i, NULL, s->counters[k].name)));
    json_object_set_new(o, "counters", counters);
    if (s->rate_in)
      json_object_set_new(o, "rates",
                          json_pack("{s:f,s:f}", "in_per_s", s->rate_in[i],
                                    "out_per_s", s->rate_out[i]));
    json_t *vars = NULL;
    for (size_t k = 0; k < s->n_insts; k++) {
      if (s->insts[k].node != i)
        continue;
      if (!vars)
        bad |= json_object_set_new(o, "variants", vars = json_array());
      const char *vn = s->insts[k].variant;
      json_t *vo = json_object(), *vc = json_object();
      bad |= !vo || !vc;
      json_object_set_new(vo, "name", json_string(vn));
      for (size_t c = 0; c < s->n_counters; c++) {
        const char *cv = s->counter_variants ? s->counter_variants[c] : NULL;
        if (s->counters[c].node == i && cv && !strcmp(cv, vn))
          json_object_set_new(vc, s->counters[c].name,
                              json_integer((json_int_t)s->counters[c].value));
      }
      json_object_set_new(vo, "counters", vc);
      if (s->rate_inst_in)
        json_object_set_new(vo, "rates",
                            json_pack("{s:f,s:f}", "in_per_s",
                                      s->rate_inst_in[k], "out_per_s",
                                      s->rate_inst_out[k]));
      bad |= json_array_append_new(vars, vo);
    }
    bad |= json_array_append_new(nodes, o);
    for (size_t k = 0; k < n->n_inputs; k++) {
      json_t *ed = json_object();
      bad |= !ed;
      const rs_gnode_t *from = &g->nodes[n->inputs[k].from];
      json_object_set_new(ed, "from", json_string(from->name));
      json_object_set_new(
          ed, "port", json_string(rs_graph_port_name(from, n->inputs[k].port)));
      json_object_set_new(ed, "to", json_string(n->name));
      if (s->rate_out)
        json_object_set_new(ed, "records_per_s",
                            json_real(s->rate_out[n->inputs[k].from]));
      bad |= json_array_append_new(edges, ed);
    }
  }
  if (bad) {
    json_decref(root);
    return RS_ENOMEM;
  }
  return dump_into(root, out);
}

int rs_metrics_ready_json(const rs_metrics_snapshot_t *s, rs_buf_t *out) {
  json_t *root =
      json_pack("{s:b,s:s,s:I}", "ready", s->ready, "state", s->state,
                "assigned_partitions", (json_int_t)s->assigned_partitions);
  if (root && !s->ready)
    json_object_set_new(root, "reason",
                        json_string(strcmp(s->state, "running")
                                        ? "the engine is not running"
                                        : "no source partition assigned yet"));
  if (dump_into(root, out))
    return -1;
  return s->ready ? 200 : 503;
}
