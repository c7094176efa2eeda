/* Replay throughput vs live `run` throughput of the same graph (parse ->
 * user_stats -> sink) over the same topic, in one process and one run
 * (issue 7's target: replay >= 1.5x live).
 *
 * live:   the engine as `recstream run` runs it (consumer group, arrival
 *         order, at_least_once, outputs produced and acknowledged);
 * replay: the engine as `recstream replay` runs it (ranges assigned
 *         directly, deterministic order, outputs suppressed), into a fresh
 *         state directory each time.
 * The target (issue 7) is replay >= 1.5x live in its default, arrival,
 * order; the ratio to live in deterministic order is printed too.
 * Rates count from the first record to the end of the run (the final
 * checkpoint included), so the group join of the live run is not charged.
 *
 *   build/bench/bench_replay [--records N] [--partitions P] [--rounds R]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "graph.h"
#include "kafka.h"
#include "registry.h"
#include "runtime.h"
#include "util.h"

static long n_records = 400000;
static int n_partitions = 8;

typedef struct res {
  double rate, rss;
  rs_engine_stats_t st;
} res_t;

/* mode: 0 live in arrival order, 1 replay, 2 live in deterministic order */
static res_t run_once(const char *bootstrap, int mode, int k) {
  char yaml[2048], err[2048];
  int replay = mode == 1;
  snprintf(yaml, sizeof yaml,
           "app: bench\n"
           "kafka: { brokers: \"%s\", group_id: bench-%d }\n"
           "state: { dir: \"%s/state-%d-%d\" }\n"
           "processing: { order: %s, max_idle: 5s }\n"
           "sources: [ { name: in, topic: in } ]\n"
           "operators:\n"
           "  - { name: parse, type: parse, input: in }\n"
           "  - { name: stats, type: user_stats, input: parse }\n"
           "sinks: [ { name: out, input: stats, topic: out } ]\n",
           bootstrap, k * 3 + mode, bench_state_root(), mode, k,
           mode == 2 ? "deterministic" : "arrival");
  rs_replay_part_t *ranges = calloc((size_t)n_partitions, sizeof(*ranges));
  if (!ranges)
    bench_die("ranges", "out of memory");
  for (int p = 0; p < n_partitions; p++)
    ranges[p] = (rs_replay_part_t){.topic = "in", .partition = p};
  if (replay) {
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
    if (!rk)
      bench_die("client", err);
    for (int p = 0; p < n_partitions; p++) {
      int64_t lo, hi;
      if (rd_kafka_query_watermark_offsets(rk, "in", p, &lo, &hi, 10000))
        bench_die("watermarks", "no answer");
      ranges[p].start = lo;
      ranges[p].end = hi;
    }
    rd_kafka_destroy(rk);
  }
  rs_engine_opts_t o = {.exit_at_end = 1, .state_reset = 1};
  if (replay) {
    o.replay = ranges;
    o.n_replay = (size_t)n_partitions;
    o.suppress_output = 1;
  }
  bench_reset_peak_rss();
  uint64_t t_end = 0;
  res_t r;
  r.st = bench_run_opts(yaml, &o, NULL, NULL, &t_end);
  if ((long)r.st.records_in != n_records)
    bench_die(replay ? "replay" : "live", "not every record was processed");
  r.rate =
      (double)r.st.records_in / ((double)(t_end - r.st.first_input_ns) / 1e9);
  r.rss = bench_peak_rss_mib();
  free(ranges);
  return r;
}

int main(int argc, char **argv) {
  int rounds = 3, only = -1; /* --only live|replay: for profilers */
  bench_init("bench_replay");
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--records") && i + 1 < argc)
      n_records = atol(argv[++i]);
    else if (!strcmp(argv[i], "--partitions") && i + 1 < argc)
      n_partitions = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
      rounds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--only") && i + 1 < argc)
      only = !strcmp(argv[++i], "replay")        ? 1
             : !strcmp(argv[i], "deterministic") ? 2
                                                 : 0;
    else {
      fprintf(stderr, "usage: bench_replay [--records N] [--partitions P] "
                      "[--rounds R] [--only live|replay|deterministic]\n");
      return 2;
    }
  }
  if (n_records < 1000 || n_partitions < 1 || rounds < 1 || rounds > 20)
    bench_die("arguments",
              "--records >= 1000, --partitions >= 1, --rounds 1..20");
  static const char *const topics[] = {"in", "in.dlq", "out", NULL};
  rs_mock_t *m = bench_broker(topics, n_partitions);
  bench_produce(m->bootstraps, "in", n_records, 10000);
  printf("%ld Avro interactions over %d partitions; parse -> user_stats -> "
         "sink\n",
         n_records, n_partitions);
  double raw = bench_raw_consume(m->bootstraps, "in", n_partitions, n_records);
  printf("%-34s %9.0f records/s\n", "raw librdkafka consume:", raw);
  static const char *const names[] = {
      "live run (arrival, outputs):", "replay (deterministic, no output):",
      "live run (deterministic, outputs):"};
  double rate[3][20];
  for (int k = 0; k < rounds; k++)
    for (int j = 0; j < 3; j++) { /* rotate which goes first */
      int mode = (k + j) % 3;
      if (only >= 0 && mode != only)
        continue;
      res_t r = run_once(m->bootstraps, mode, k);
      rate[mode][k] = r.rate;
      printf("%-36s %9.0f records/s  peak RSS %.0f MiB\n", names[mode], r.rate,
             r.rss);
    }
  if (only >= 0) {
    rs_mock_destroy(m);
    return 0;
  }
  /* Each round's three runs are close in time: on a machine whose load
   * drifts, the median of the per-round ratios is the steadier figure. */
  double rr[2][20];
  for (int k = 0; k < rounds; k++) {
    rr[0][k] = rate[1][k] / rate[0][k];
    rr[1][k] = rate[1][k] / rate[2][k];
  }
  double med[3];
  for (int i = 0; i < 3; i++)
    med[i] = bench_median(rate[i], rounds);
  printf("medians: live arrival %.0f, live deterministic %.0f, replay %.0f "
         "records/s\n",
         med[0], med[2], med[1]);
  printf("ratio replay / live in arrival order (the default):   %.2f  "
         "(target >= 1.5)\n",
         med[1] / med[0]);
  printf("ratio replay / live, same order mode (deterministic): %.2f\n",
         med[1] / med[2]);
  printf("ratio replay / raw consume:                           %.2f\n",
         med[1] / raw);
  printf("median of per-round ratios (%d rounds): replay / live arrival "
         "%.2f, replay / live deterministic %.2f\n",
         rounds, bench_median(rr[0], rounds), bench_median(rr[1], rounds));
  rs_mock_destroy(m);
  return 0;
}
