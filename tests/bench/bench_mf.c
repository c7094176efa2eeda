/* Benchmark: what mf_update costs.
 *
 *   build/bench/bench_mf [--records N] [--partitions P] [--seconds S]
 *
 *  1. The raw update kernel (operators/mf_update/mf_kernel.c), one core,
 *     at k = 32, 64, 128: isgd, bpr (one negative) and explicit steps per
 *     second over 10,000 user and 2,000 item rows in memory picked by a
 *     fixed pseudo-random sequence (target >= 3M/s at k = 64).
 *  2. Full-catalogue scoring: items scored per second by rs_mf_score_all
 *     over 100,000 items at k = 32, 64, 128.
 *  3. The operator itself in-process (engine/local_host.c: state through
 *     the write-back cache, no Kafka), bpr (defaults: AdaGrad, 4
 *     negatives; and plain SGD, the default before) and isgd, k = 64, on
 *     generated events: events per second, and as a ratio to the kernel.
 *  4. The pipeline on the embedded broker, each run in a process of its
 *     own (fork, as bench_guarantee does): in -> parse -> sink, and the
 *     same with mf_update (bpr, k = 64, emit: none) reading parse's output;
 *     records/s from the first input to the last acknowledged output, and
 *     their ratio, median of --rounds (3) alternating runs. (--measure
 *     parse|mf runs one of them in this process, for a profiler.)
 * Absolute rates on a shared machine are noise; the ratios measured in one
 * run are the figures of merit. Peak RSS is printed per phase.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "examples/generator/generator.h"
#include "kafka.h"
#include "local_host.h"
#include "operators/mf_update/mf_kernel.h"
#include "operators/mf_update/mf_update.h"
#include "util.h"

static double seconds_per_case = 1.0;

static float *rows(size_t n, uint32_t kp, uint64_t seed) {
  float *m = aligned_alloc(RS_MF_ALIGN, sizeof(float) * kp * n);
  if (!m)
    bench_die("alloc", "out of memory");
  for (size_t i = 0; i < n * kp; i++)
    m[i] = (float)((double)(rs_mix64(seed + i) >> 11) * 0x1.0p-53 - 0.5) * 0.2f;
  return m;
}

static volatile float sink;

/* Steps per second of one objective at k. */
static double kernel_rate(int obj, uint32_t k) {
  uint32_t kp = rs_mf_padded(k), nu = 10000, ni = 2000;
  float *u = rows(nu, kp, 1), *it = rows(ni, kp, 2);
  float *bias = calloc(ni + nu, sizeof(float));
  rs_mf_hyper_t h = {.reg = 0.01f, .reg_bias = 0.01f, .w = 1, .clip = 10};
  rs_mf_hyper_rates(&h, 0.01f, 0.01f);
  uint64_t s = 12345, done = 0;
  uint64_t t0 = rs_now_ns(), until = t0 + (uint64_t)(seconds_per_case * 1e9);
  float acc = 0;
  while (rs_now_ns() < until) {
    for (int b = 0; b < 4096; b++) {
      uint64_t r = rs_mix64(s++);
      uint32_t a = (uint32_t)(r % nu), i = (uint32_t)((r >> 32) % ni),
               j = (uint32_t)((r >> 16) % ni);
      float *p = u + (size_t)a * kp, *q = it + (size_t)i * kp;
      if (obj == 0)
        acc += rs_mf_step_isgd(p, q, kp, &h);
      else if (obj == 1)
        acc += rs_mf_step_bpr(p, q, it + (size_t)j * kp, &bias[i], &bias[j], kp,
                              &h);
      else
        acc += rs_mf_step_explicit(p, q, &bias[ni + a], &bias[i], 3.5f,
                                   (float)(r % 5 + 1), kp, &h);
    }
    done += 4096;
  }
  double secs = (double)(rs_now_ns() - t0) / 1e9;
  sink = acc;
  free(u);
  free(it);
  free(bias);
  return (double)done / secs;
}

static double scoring_rate(uint32_t k) {
  uint32_t kp = rs_mf_padded(k), n = 100000;
  float *items = rows(n, kp, 3), *u = rows(1, kp, 4);
  float *bias = calloc(n, sizeof(float)), *out = malloc(sizeof(float) * n);
  uint64_t t0 = rs_now_ns(), until = t0 + (uint64_t)(seconds_per_case * 1e9);
  uint64_t scored = 0;
  while (rs_now_ns() < until) {
    rs_mf_score_all(items, bias, n, u, kp, out);
    u[0] += out[n / 2] * 1e-9f; /* depend on the result */
    scored += n;
  }
  double secs = (double)(rs_now_ns() - t0) / 1e9;
  free(items);
  free(u);
  free(bias);
  free(out);
  return (double)scored / secs;
}

/* mf_update through the in-process host: events/s. */
static double operator_rate(const char *objective, long n_events) {
  char yaml[512], err[1024];
  snprintf(yaml, sizeof yaml,
           "app: b\nsources: [{name: in, topic: in}]\n"
           "operators: [{name: mf, type: mf_update, input: in, objective: %s,"
           " emit: updates}]\n"
           "sinks: [{name: out, input: mf, topic: out}]\n",
           objective);
  rs_config_t *cfg;
  if (rs_config_load_string("bench", yaml, strlen(yaml), NULL, 0, &cfg, err,
                            sizeof err))
    bench_die("config", err);
  rs_local_t *l;
  if (rs_local_new(&rs_op_mf_update, "mf", cfg, cfg->operators[0].node, NULL,
                   &l, err, sizeof err))
    bench_die("local host", err);
  rs_gen_opts_t go;
  rs_gen_opts_default(&go);
  go.users = 10000;
  go.items = 2000;
  rs_gen_t *g = rs_gen_new(&go);
  /* Events are generated up front so only the operator is timed. */
  enum { B = 64 };
  rs_interaction_t *ev = malloc(sizeof(*ev) * (size_t)n_events);
  char(*ids)[2][16] = malloc(sizeof(*ids) * (size_t)n_events);
  for (long i = 0; i < n_events; i++) {
    rs_gen_next(g, &ev[i]);
    memcpy(ids[i][0], ev[i].user, ev[i].user_len + 1);
    memcpy(ids[i][1], ev[i].item, ev[i].item_len + 1);
    ev[i].user = ids[i][0];
    ev[i].item = ids[i][1];
  }
  rs_record_t recs[B];
  uint64_t t0 = rs_now_ns();
  for (long i = 0; i < n_events;) {
    int n = 0;
    for (; n < B && i < n_events; n++, i++)
      recs[n] = (rs_record_t){.kind = RS_KIND_INTERACTION,
                              .key = ev[i].user,
                              .key_len = ev[i].user_len,
                              .payload = &ev[i],
                              .src_offset = i};
    if (rs_local_push(l, 0, recs, (size_t)n))
      bench_die("operator", "process failed");
  }
  double secs = (double)(rs_now_ns() - t0) / 1e9;
  rs_local_destroy(l);
  rs_config_destroy(cfg);
  rs_gen_destroy(g);
  free(ev);
  free(ids);
  return (double)n_events / secs;
}

/* ---- pipeline, one run per process ---- */

static long n_records = 400000;
static int n_partitions = 8;

typedef struct result {
  double rate, rss;
} result_t;

static result_t pipeline_once(int with_mf) {
  static const char *const topics[] = {"in", "out", "out2", "in.dlq", NULL};
  rs_mock_t *m = bench_broker(topics, n_partitions);
  bench_produce(m->bootstraps, "in", n_records, 10000);
  bench_reset_peak_rss();
  char yaml[2048];
  snprintf(yaml, sizeof yaml,
           "app: bench\n"
           "kafka: { brokers: \"%s\" }\n"
           "state: { dir: \"%s/s%d\" }\n"
           "sources: [ { name: in, topic: in } ]\n"
           "operators:\n"
           "  - { name: parse, type: parse, input: in }\n"
           "%s"
           "sinks:\n"
           "  - { name: out, input: parse, topic: out }\n"
           "%s",
           m->bootstraps, bench_state_root(), with_mf,
           with_mf ? "  - { name: mf, type: mf_update, input: parse, "
                     "objective: bpr, k: 64, emit: none }\n"
                   : "",
           with_mf ? "  - { name: out2, input: mf, topic: out2 }\n" : "");
  rs_engine_stats_t st = bench_run(yaml, 0, NULL, NULL);
  if ((long)st.records_in != n_records)
    bench_die("run", "not every record was consumed");
  result_t r = {(double)st.records_in /
                    ((double)(st.last_ack_ns - st.first_input_ns) / 1e9),
                bench_peak_rss_mib()};
  rs_mock_destroy(m);
  return r;
}

static void pipeline_into(const void *with_mf, void *out) {
  *(result_t *)out = pipeline_once(*(const int *)with_mf);
}

static result_t pipeline(int with_mf) {
  result_t r;
  bench_in_child("pipeline run", pipeline_into, &with_mf, &r, sizeof r);
  return r;
}

/* The operator in-process, bpr then isgd, and the peak RSS. */
static void operator_rates(const void *arg, void *out) {
  (void)arg;
  double *o3 = out;
  bench_reset_peak_rss();
  o3[0] = operator_rate("bpr", 300000);
  o3[1] = operator_rate("isgd", 300000);
  o3[2] = operator_rate("bpr, adaptive: none", 300000);
  o3[3] = bench_peak_rss_mib();
}

int main(int argc, char **argv) {
  int rounds = 3;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--records") && i + 1 < argc)
      n_records = atol(argv[++i]);
    else if (!strcmp(argv[i], "--partitions") && i + 1 < argc)
      n_partitions = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
      rounds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
      seconds_per_case = atof(argv[++i]);
    else if (!strcmp(argv[i], "--measure") && i + 1 < argc) {
      /* one pipeline run in this process (for a profiler) */
      bench_init("bench_mf");
      result_t r = pipeline_once(!strcmp(argv[++i], "mf"));
      printf("%.0f records/s, peak RSS %.0f MiB\n", r.rate, r.rss);
      return 0;
    } else {
      fprintf(stderr, "usage: bench_mf [--records N] [--partitions P] "
                      "[--rounds R] [--seconds S]\n");
      return 2;
    }
  }
  bench_init("bench_mf");
  static const char *const obj[] = {"isgd", "bpr (1 negative)", "explicit"};
  printf("1. update kernel, one core (steps/s; target >= 3M/s at k = 64)\n");
  double k64 = 0;
  for (uint32_t k = 32; k <= 128; k *= 2)
    for (int o = 0; o < 3; o++) {
      double r = kernel_rate(o, k);
      if (k == 64 && o == 0)
        k64 = r;
      printf("   k = %3u %-18s %8.2f M/s\n", k, obj[o], r / 1e6);
    }
  printf("2. full-catalogue scoring, 100,000 items\n");
  for (uint32_t k = 32; k <= 128; k *= 2)
    printf("   k = %3u  %8.1f M items scored/s (%.2f ms per user)\n", k,
           scoring_rate(k) / 1e6, 100000 / scoring_rate(k) * 1e3);
  printf("3. the operator in-process (state through the cache), k = 64, "
         "10,000 users, 2,000 items\n");
  /* In a child: RocksDB's threads must not exist in this process when
   * the pipeline runs fork (a forked child inherits its locks). */
  double o3[4];
  bench_in_child("operator run", operator_rates, NULL, o3, sizeof o3);
  printf("   bpr (defaults: adagrad, 4 negatives): %8.0f events/s; bpr "
         "plain SGD: %8.0f events/s; isgd: %8.0f events/s (isgd kernel "
         "alone: %.1fx faster)\n",
         o3[0], o3[2], o3[1], k64 / o3[1]);
  printf("   peak RSS %.0f MiB\n", o3[3]);
  if (rounds < 1)
    return 0;
  printf("4. pipeline on the embedded broker, %ld records, %d partitions, "
         "%d rounds (one process per run)\n",
         n_records, n_partitions, rounds);
  double *a = calloc((size_t)rounds, sizeof(double)),
         *b = calloc((size_t)rounds, sizeof(double));
  double rss_a = 0, rss_b = 0;
  for (int r = 0; r < rounds; r++) {
    result_t x = pipeline(0), y = pipeline(1);
    a[r] = x.rate;
    b[r] = y.rate;
    rss_a = x.rss > rss_a ? x.rss : rss_a;
    rss_b = y.rss > rss_b ? y.rss : rss_b;
    printf("   round %d: parse only %8.0f records/s, with mf_update %8.0f "
           "records/s\n",
           r + 1, x.rate, y.rate);
  }
  double ma = bench_median(a, rounds), mb = bench_median(b, rounds);
  printf("   median: parse only %.0f records/s, with mf_update %.0f "
         "records/s, ratio %.2f\n",
         ma, mb, mb / ma);
  printf("   peak RSS: parse only %.0f MiB, with mf_update %.0f MiB\n", rss_a,
         rss_b);
  free(a);
  free(b);
  return 0;
}
