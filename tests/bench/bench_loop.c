/* The closed loop's benchmark (issue 6):
 *   build/bench/bench_loop [--records N] [--rate R] [--seconds S]
 * 1. Throughput: N interactions on the embedded broker read by raw
 *    librdkafka (the engine's fetch settings) and by the recommendation
 *    pipeline of configs/loop.yaml (parse -> mf_update -> topn_emit ->
 *    sink, 1,000 items), each in a fresh process; the pipeline's rate as
 *    a ratio to raw consume measured in the same run.
 * 2. Latency: `recstream simulate` (in-process, rs_cmd_simulate) at R
 *    user actions per second (default 5,000) against that pipeline running
 *    in a thread: p50/p99 from an interaction being produced to its
 *    recommendation being consumed, printed as the simulator's JSON.
 * Numbers, not pass/fail: no thresholds here (docs/DEMO.md). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "examples/simulator/sim_cmd.h"
#include "graph.h"
#include "registry.h"
#include "util.h"

static long n_records = 100000;
static double rate = 5000, seconds = 15;

/* configs/loop.yaml's pipeline and latency settings (kept in step by
 * hand: a bench has no source directory at run time). */
static void loop_yaml(char *out, size_t size, const char *brokers,
                      const char *dir) {
  snprintf(out, size,
           "app: bench-loop\n"
           "kafka:\n"
           "  brokers: \"%s\"\n"
           "  auto_offset_reset: earliest\n"
           "  properties: { fetch.wait.max.ms: 1, linger.ms: 0 }\n"
           "state: { dir: \"%s\", commit_interval: 5s, guarantee: "
           "at_least_once }\n"
           "processing: { batch_size: 100 }\n"
           "sources: [ { name: interactions, topic: interactions } ]\n"
           "operators:\n"
           "  - { name: parse, type: parse, input: interactions, format: avro "
           "}\n"
           "  - { name: mf, type: mf_update, input: parse, k: 8, "
           "learning_rate: 0.2, negative_exponent: 0, weight_click: 4, "
           "popularity_half_life: 5m }\n"
           "  - { name: topn, type: topn_emit, input: mf, model: mf, n: 10, "
           "history: 0, exact_scan_below: 20000 }\n"
           "sinks: [ { name: recommendations, input: topn, topic: "
           "recommendations, format: avro } ]\n",
           brokers, dir);
}

static const char *const topics[] = {"interactions", "recommendations",
                                     "feedback", NULL};

typedef struct tput {
  double raw, pipeline;
} tput_t;

static void throughput(const void *arg, void *out) {
  (void)arg;
  tput_t *t = out;
  rs_mock_t *m = bench_broker(topics, 4);
  bench_produce(m->bootstraps, "interactions", n_records, 1000);
  t->raw = bench_raw_consume(m->bootstraps, "interactions", 4, n_records);
  char yaml[4096], dir[1024];
  snprintf(dir, sizeof dir, "%s/tput", bench_state_root());
  loop_yaml(yaml, sizeof yaml, m->bootstraps, dir);
  rs_engine_stats_t st = bench_run(yaml, 0, NULL, NULL);
  if ((long)st.records_in != n_records)
    bench_die("run", "not every record was consumed");
  t->pipeline = (double)st.records_in /
                ((double)(st.last_ack_ns - st.first_input_ns) / 1e9);
  rs_mock_destroy(m);
}

typedef struct eng {
  rs_engine_t *e;
  int rc;
  char err[1024];
} eng_t;

static void *engine_thread(void *arg) {
  eng_t *x = arg;
  x->rc = rs_engine_run(x->e, x->err, sizeof x->err);
  return NULL;
}

static void latency(const void *arg, void *out) {
  (void)arg;
  (void)out;
  rs_mock_t *m = bench_broker(topics, 4);
  char yaml[4096], dir[1024], err[1024];
  snprintf(dir, sizeof dir, "%s/lat", bench_state_root());
  loop_yaml(yaml, sizeof yaml, m->bootstraps, dir);
  rs_config_t *cfg = NULL;
  rs_registry_t *reg = NULL;
  rs_graph_t *g = NULL;
  eng_t x = {0};
  rs_engine_opts_t o = {0};
  if (rs_config_load_string("bench.yaml", yaml, strlen(yaml), NULL, 0, &cfg,
                            err, sizeof err) ||
      rs_registry_new(&reg, err, sizeof err) ||
      rs_graph_build(cfg, reg, &g, err, sizeof err) ||
      rs_engine_new(cfg, g, &o, &x.e, err, sizeof err))
    bench_die("engine", err);
  pthread_t th;
  if (pthread_create(&th, NULL, engine_thread, &x))
    bench_die("engine", "cannot start its thread");
  char r[32], d[32];
  snprintf(r, sizeof r, "%g", rate);
  snprintf(d, sizeof d, "%g", seconds);
  /* The engine's group join takes ~3 s; the simulator's warm-up (a third)
   * covers it and the model's first minutes. */
  char *argv[] = {"simulate",
                  "--brokers",
                  (char *)m->bootstraps,
                  "--rate",
                  r,
                  "--duration",
                  d,
                  "--users",
                  "1000",
                  "--items",
                  "1000",
                  "--window",
                  "1",
                  "--no-feedback",
                  "--json",
                  NULL};
  int rc = rs_cmd_simulate((int)(sizeof argv / sizeof argv[0]) - 1, argv);
  fflush(stdout);
  rs_engine_stop(x.e);
  pthread_join(th, NULL);
  if (rc || x.rc)
    bench_die("loop", rc ? "simulate failed" : x.err);
  rs_engine_destroy(x.e);
  rs_graph_destroy(g);
  rs_registry_destroy(reg);
  rs_config_destroy(cfg);
  rs_mock_destroy(m);
}

int main(int argc, char **argv) {
  bench_init("bench_loop");
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--records") && i + 1 < argc)
      n_records = atol(argv[++i]);
    else if (!strcmp(argv[i], "--rate") && i + 1 < argc)
      rate = atof(argv[++i]);
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
      seconds = atof(argv[++i]);
    else {
      fprintf(stderr, "usage: bench_loop [--records N] [--rate R] "
                      "[--seconds S]\n");
      return 2;
    }
  }
  if (n_records < 1000 || rate < 1 || seconds < 3) {
    fprintf(stderr, "bench_loop: --records >= 1000, --rate >= 1, "
                    "--seconds >= 3\n");
    return 2;
  }
  tput_t t;
  bench_in_child("throughput", throughput, NULL, &t, sizeof t);
  printf("1. throughput, %ld interactions, 4 partitions, 1000 items:\n"
         "   raw consume %.0f records/s, loop pipeline %.0f records/s, "
         "ratio %.3f\n",
         n_records, t.raw, t.pipeline, t.pipeline / t.raw);
  printf("2. latency at %g actions/s for %gs (simulate --json; latency_ms "
         "is interaction produced -> its recommendation consumed):\n",
         rate, seconds);
  fflush(stdout);
  int dummy;
  bench_in_child("latency", latency, NULL, &dummy, sizeof dummy);
  return 0;
}
