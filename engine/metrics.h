/* What a running engine shows to the outside (engine/http.c serves it): a
 * snapshot of its figures, taken on the loop thread by
 * rs_engine_snapshot() (runtime.c), rendered here as the Prometheus text
 * exposition format (version 0.0.4) and as JSON (the graph, readiness).
 * Rendering is pure: a snapshot in, text out; no engine needed, which is
 * how the unit tests build odd names and values.
 *
 * Metric names (all prefixed recstream_): counters end in _total, times
 * are in seconds, sizes in bytes. Per-operator figures carry the label
 * operator="<node name>"; counters an operator registers itself through
 * host->counter become recstream_<operator type>_<counter>_total. An
 * operator split by an experiment has one instance per variant: its series
 * carry variant="<name>" as well.
 *
 * CTR per experiment variant: for each experiment, the split operators
 * that register both an "impressions" and a "clicks" counter
 * (bandit_reward) give recstream_experiment_impressions_total and
 * recstream_experiment_clicks_total{experiment=...,variant=...} (their
 * sums per variant) and the gauge recstream_experiment_ctr = clicks /
 * impressions since the start (NaN before the first impression).
 */
#ifndef RS_METRICS_H
#define RS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "graph.h"
#include "runtime.h"
#include "state/cache.h"
#include "util.h"

/* Latency histogram with fixed bucket bounds (rs_hist_bounds, seconds;
 * the last bucket is +Inf). Cumulative counts are computed when rendered. */
#define RS_HIST_N 14
extern const double rs_hist_bounds[RS_HIST_N - 1];
typedef struct rs_histogram {
  uint64_t bucket[RS_HIST_N]; /* observations per bucket (not cumulative) */
  uint64_t count;
  uint64_t sum_ns;
} rs_histogram_t;
void rs_histogram_observe(rs_histogram_t *h, uint64_t ns);

/* Latency from outside the process (event time to output, produce to
 * acknowledgement): 1 ms .. 1 h, the last bucket +Inf (rs_lat_bounds,
 * seconds; rs_lat_bounds_ns the same in ns for observing). */
#define RS_LAT_N 18
extern const double rs_lat_bounds[RS_LAT_N - 1];
typedef struct rs_lat_histogram {
  uint64_t bucket[RS_LAT_N]; /* observations per bucket (not cumulative) */
  uint64_t count;
  uint64_t sum_ns;
} rs_lat_histogram_t;
void rs_lat_observe(rs_lat_histogram_t *h, uint64_t ns);
/* The q-quantile (0 < q < 1) of h's observations as Prometheus'
 * histogram_quantile computes it (linear within the bucket; the +Inf
 * bucket answers its lower bound); -1 without observations. */
double rs_lat_quantile(const rs_lat_histogram_t *h, double q);

/* RocksDB's key figures per column family (state/rocks.h). */
typedef struct rs_metric_cf {
  const char *name;
  uint64_t estimated_keys, sst_bytes, memtable_bytes, pending_compaction_bytes;
} rs_metric_cf_t;

typedef struct rs_metric_counter {
  size_t node; /* graph node index */
  const char *name;
  const char *help;
  uint64_t value;
} rs_metric_counter_t;

/* One operator instance of a split operator (an experiment's variant):
 * its process() time, for the histograms and the graph's variants. */
typedef struct rs_metric_inst {
  size_t node;         /* graph node index */
  const char *variant; /* the variant's name */
  rs_histogram_t proc; /* process() time per batch */
} rs_metric_inst_t;

typedef struct rs_metric_part {
  const char *topic;
  int32_t partition;
  int assigned;
  int64_t position;       /* next offset to process (-1: unknown) */
  int64_t high_watermark; /* from the client's cache (-1: unknown) */
} rs_metric_part_t;

typedef struct rs_metrics_snapshot {
  const rs_graph_t *g;
  rs_engine_stats_t stats;       /* rs_engine_get_stats() */
  const char *state;             /* "init", "running", "stopping", "done" */
  int ready;                     /* running and consuming partitions */
  size_t assigned_partitions;    /* source partitions assigned */
  int paused;                    /* backpressure: not draining now */
  uint64_t paused_ns;            /* stats.paused_ns plus the current pause */
  int64_t inflight_records;      /* outputs produced, not yet acknowledged */
  int64_t inflight_bytes;        /* ...and their bytes */
  int64_t producer_queue;        /* rd_kafka_outq_len() (-1: no producer) */
  int has_cache;                 /* cache below is meaningful */
  rs_cache_stats_t cache;        /* state cache */
  rs_histogram_t *node_hist;     /* per node: operators' process() time per
                                    batch (NULL: none) */
  uint64_t *node_out;            /* per node: records a sink produced */
  rs_metric_counter_t *counters; /* every operator counter, any order */
  size_t n_counters;
  /* Per counter: the experiment variant of the operator instance that owns
   * it, rendered as a `variant` label; NULL (the array or an entry): none. */
  const char **counter_variants;
  /* Split operators (experiments): every variant's instance, in node
   * order and variant order within a node. A node listed here has its
   * histograms per variant (node_hist[node] is not rendered) and a
   * "variants" list in the graph JSON. NULL/0: no experiment. */
  rs_metric_inst_t *insts;
  size_t n_insts;
  rs_metric_part_t *parts;
  size_t n_parts;
  rs_lat_histogram_t *node_e2e; /* per node (sinks): input record's
                                   timestamp to its output handed to the
                                   producer (NULL: none) */
  rs_lat_histogram_t ack;       /* produce() to the broker's ack */
  int has_store;                /* the fields below are meaningful */
  rs_metric_cf_t *cfs;          /* RocksDB, per column family */
  size_t n_cfs;
  uint64_t block_cache_bytes; /* RocksDB block cache usage */
  uint64_t block_cache_capacity;
  uint64_t checkpoint_last_bytes;  /* the last checkpoint's write batch */
  uint64_t checkpoint_total_bytes; /* every checkpoint's, summed */
  /* Set by the HTTP endpoint, which samples every second: records/s per
   * node over the last rate_window_s (NULL: no two samples yet). */
  const double *rate_in, *rate_out;
  const double *rate_inst_in, *rate_inst_out; /* per insts[k] (or NULL) */
  double rate_window_s;
} rs_metrics_snapshot_t;

/* What flowed through node i so far, for rates: records consumed from a
 * source's assigned partitions (sum of positions) / handed to and emitted by
 * an operator / produced by a sink. */
uint64_t rs_metrics_node_in(const rs_metrics_snapshot_t *s, size_t i);
uint64_t rs_metrics_node_out(const rs_metrics_snapshot_t *s, size_t i);
/* The same for one variant instance insts[k]: its records_in/records_out
 * counters. A split node's node totals above sum its variants. */
uint64_t rs_metrics_inst_in(const rs_metrics_snapshot_t *s, size_t k);
uint64_t rs_metrics_inst_out(const rs_metrics_snapshot_t *s, size_t k);

/* Fills *out from the engine (loop thread, or before/after the loop).
 * Free with rs_metrics_snapshot_free(). 0 or RS_ENOMEM. */
int rs_engine_snapshot(const rs_engine_t *e, rs_metrics_snapshot_t *out);
/* The same without what rates do not need (state cache and RocksDB
 * figures, watermarks): the endpoint's once-a-second rate sample. */
int rs_engine_snapshot_counts(const rs_engine_t *e, rs_metrics_snapshot_t *out);
void rs_metrics_snapshot_free(rs_metrics_snapshot_t *s);

/* Prometheus text exposition format (Content-Type
 * RS_METRICS_CONTENT_TYPE), appended to out. 0 or RS_ENOMEM. */
#define RS_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
int rs_metrics_render(const rs_metrics_snapshot_t *s, rs_buf_t *out);
/* {"state", "rate_window_s", "nodes":[{"name","kind","type","topic",
 *  "counters":{...},"rates":{"in_per_s","out_per_s"}[,"variants":[{"name",
 *  "counters","rates"}...]]}...], (a split operator's counters summed over
 *  its variants, each variant instance's under "variants"; their rates
 *  when s->rate_inst_in is set)
 *  "edges":[{"from","port","to","records_per_s"}...]} appended to out
 *  (rates only when s->rate_in is set; an edge's rate is its source node's
 *  output rate, all ports together). */
int rs_metrics_graph_json(const rs_metrics_snapshot_t *s, rs_buf_t *out);
/* {"ready":bool,"state":...,"assigned_partitions":n}; returns the HTTP
 * status for /readyz (200 ready, 503 not) or -1 on RS_ENOMEM. */
int rs_metrics_ready_json(const rs_metrics_snapshot_t *s, rs_buf_t *out);

/* Copies name with every character outside [a-zA-Z0-9_] as '_' (a metric
 * name part); writes at most size-1 characters. */
void rs_metrics_sanitize(const char *name, char *buf, size_t size);

#endif
