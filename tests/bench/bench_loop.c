/* The closed loop's benchmark (issue 6):
 *   build/bench/bench_loop [--records N] [--rate R] [--seconds S]
 *                          [--warmup W] [--pipeline full|demo|loop]
 *                          [--latency-pipeline full|demo|loop]
 *                          [--kafka KEY=VALUE]... [--commit-interval D]
 *                          [--sync true|false] [--batch-size N]
 *                          [--sim-kafka KEY=VALUE]... [--partitions N]
 *                          [--skip-throughput]
 * 1. Throughput: N interactions on the embedded broker read by raw
 *    librdkafka (the engine's fetch settings) and by the pipeline, each in
 *    a fresh process; the pipeline's rate as a ratio to raw consume
 *    measured in the same run. Pipelines: `full` (part 1's default) has
 *    all five operator types: parse (interactions and feedback),
 *    sessionize (closed sessions as topn_emit's second input), mf_update,
 *    topn_emit (n 20, whole-catalogue scan of 1,000 items) and
 *    bandit_reward (Thompson, 10 slots); `demo` (part 2's default) is
 *    configs/demo_loop.yaml's pipeline, the same without sessionize and
 *    without the A/B split; `loop` is configs/loop.yaml's parse ->
 *    mf_update -> topn_emit.
 * 2. Latency: `recstream simulate` (in-process, rs_cmd_simulate) at R
 *    user actions per second (default 5,000), with feedback, against that
 *    pipeline running in a thread: p50/p99 from an interaction being
 *    produced to its recommendation being consumed (the simulator's JSON),
 *    then the engine's own counters (batches, checkpoints and how long
 *    they held the loop) and a time breakdown (interaction produced ->
 *    list handed to the producer, produce -> ack, process() per batch per
 *    operator, records per batch).
 * The latency settings are configs/demo_loop.yaml's (kept in step by hand:
 * a bench has no source directory at run time: 1 partition per topic,
 * fetch.wait.max.ms 1, linger.ms 3, and simulate's own linger.ms 3);
 * --kafka, --sim-kafka, --partitions, --commit-interval and --batch-size
 * override them to compare settings in one place.
 * Numbers, not pass/fail: no thresholds here (docs/DEMO.md). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "examples/simulator/sim_cmd.h"
#include "graph.h"
#include "metrics.h"
#include "registry.h"
#include "util.h"

static long n_records = 100000;
static double rate = 5000, seconds = 15, warmup = -1;
static int skip_tput = 0;
static const char *commit_interval = "5s", *state_sync = "false";
static long batch_size = 100;
/* Of every topic on the embedded broker in the latency run (the demo's
 * embedded.partitions); the throughput run has 4. */
static int partitions = 1;
/* The engine's librdkafka properties: configs/demo_loop.yaml's two, which
 * --kafka replaces, and the rest of --kafka's. */
static const char *fetch_wait = "1", *linger = "3";
static char kafka_props[2048] = "";
/* The simulator's own librdkafka properties (its -X), e.g. its producer's
 * linger.ms: on the embedded broker a fetch returns one produced message
 * set per partition, so how the simulator batches its interactions sets how
 * many records the engine can read per fetch (docs/DEMO.md, "Latency"). */
enum { MAX_SIM_PROPS = 16 };
static char *sim_props[MAX_SIM_PROPS];
static int n_sim_props;

enum { P_FULL, P_DEMO, P_LOOP };
static const char *const pipe_names[] = {"full", "demo", "loop", NULL};
static int tput_pipe = P_FULL, lat_pipe = P_DEMO;

/* The pipelines (see the top), with configs/demo_loop.yaml's latency
 * settings. */
static void loop_yaml(char *out, size_t size, const char *brokers,
                      const char *dir, int pipe) {
  int fb = pipe != P_LOOP, sess = pipe == P_FULL;
  snprintf(out, size,
           "app: bench-loop\n"
           "kafka:\n"
           "  brokers: \"%s\"\n"
           "  auto_offset_reset: earliest\n"
           "  properties: { fetch.wait.max.ms: \"%s\", linger.ms: \"%s\"%s }\n"
           "state: { dir: \"%s\", commit_interval: %s, sync: %s, guarantee: "
           "at_least_once }\n"
           "processing: { batch_size: %ld }\n"
           "sources: [ { name: interactions, topic: interactions }%s ]\n"
           "operators:\n"
           "  - { name: parse, type: parse, input: interactions, format: avro "
           "}\n"
           "%s%s"
           "  - { name: mf, type: mf_update, input: parse, k: 8, "
           "learning_rate: 0.2, negative_exponent: 0, weight_click: 4, "
           "popularity_half_life: 5m, min_user_events: 3 }\n"
           "  - { name: topn, type: topn_emit, %s, model: mf, n: %d, "
           "history: 0, exact_scan_below: 20000 }\n"
           "%s"
           "sinks: [ { name: recommendations, input: %s, topic: "
           "recommendations, format: avro } ]\n",
           brokers, fetch_wait, linger, kafka_props, dir, commit_interval,
           state_sync, batch_size,
           fb ? ", { name: feedback, topic: feedback }" : "",
           fb ? "  - { name: parse_feedback, type: parse, input: feedback, "
                "format: avro, record: feedback }\n"
              : "",
           sess ? "  - { name: sess, type: sessionize, input: parse, gap: 30m, "
                  "grace: 1m }\n"
                : "",
           sess ? "inputs: [mf, sess.sessions]" : "input: mf", fb ? 20 : 10,
           fb ? "  - { name: bandit, type: bandit_reward, inputs: [topn, "
                "parse_feedback], policy: thompson, slots: 10, reward_window: "
                "1m }\n"
              : "",
           fb ? "bandit.recommendations" : "topn");
}

static int pipe_index(const char *name) {
  for (int i = 0; pipe_names[i]; i++)
    if (!strcmp(name, pipe_names[i]))
      return i;
  return -1;
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
  char yaml[8192], dir[1024];
  snprintf(dir, sizeof dir, "%s/tput", bench_state_root());
  loop_yaml(yaml, sizeof yaml, m->bootstraps, dir, tput_pipe);
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
  rs_mock_t *m = bench_broker(topics, partitions);
  char yaml[8192], dir[1024], err[1024];
  snprintf(dir, sizeof dir, "%s/lat", bench_state_root());
  loop_yaml(yaml, sizeof yaml, m->bootstraps, dir, lat_pipe);
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
  char r[32], d[32], wu[32];
  snprintf(r, sizeof r, "%g", rate);
  snprintf(d, sizeof d, "%g", seconds);
  snprintf(wu, sizeof wu, "%g", warmup >= 0 ? warmup : seconds / 3);
  /* The engine's group join takes ~3 s; the simulator's warm-up (a third)
   * covers it and the model's first minutes. */
  char *argv[] = {
      "simulate", "--brokers", (char *)m->bootstraps,
      "--rate",   r,           "--duration",
      d,          "--users",   "1000",
      "--items",  "1000",      "--window",
      "1",        "--warmup",  wu,
      "--json",   NULL, /* --no-feedback: the loop pipeline reads none */
      NULL};
  char *args[sizeof argv / sizeof argv[0] + 2 * MAX_SIM_PROPS];
  int argc = (int)(sizeof argv / sizeof argv[0]) - 2;
  memcpy(args, argv, (size_t)argc * sizeof *args);
  if (lat_pipe == P_LOOP)
    args[argc++] = "--no-feedback";
  for (int i = 0; i < n_sim_props; i++) {
    args[argc++] = "-X";
    args[argc++] = sim_props[i];
  }
  args[argc] = NULL;
  int rc = rs_cmd_simulate(argc, args);
  fflush(stdout);
  rs_engine_stop(x.e);
  pthread_join(th, NULL);
  if (rc || x.rc)
    bench_die("loop", rc ? "simulate failed" : x.err);
  rs_metrics_snapshot_t snap;
  if (rs_engine_snapshot(x.e, &snap))
    bench_die("engine", "no snapshot");
  rs_engine_stats_t st = snap.stats;
  double ck = st.checkpoints ? (double)st.checkpoints : 1;
  double cap = st.checkpoint_captures ? (double)st.checkpoint_captures : 1;
  printf("   engine: %llu records in %llu batches; %llu checkpoints, mean "
         "write %.2f ms (off the loop), request to end %.2f ms, acks %.2f "
         "ms; loop held %.2f ms on average, %.2f ms at most; %llu "
         "backpressure pauses (%.0f ms)\n",
         (unsigned long long)st.records_in, (unsigned long long)st.batches,
         (unsigned long long)st.checkpoints,
         (double)st.checkpoint_ns / 1e6 / ck,
         (double)st.checkpoint_wait_ns / 1e6 / cap,
         (double)st.checkpoint_ack_wait_ns / 1e6 / cap,
         (double)st.checkpoint_hold_ns / 1e6 / cap,
         (double)st.checkpoint_hold_max_ns / 1e6, (unsigned long long)st.pauses,
         (double)st.paused_ns / 1e6);
  /* Where the time goes (every list, warm-up included): the interaction's
   * Kafka timestamp (the simulator's produce) to the list handed to the
   * engine's producer (sim linger + broker + engine fetch + queueing +
   * processing); the engine's produce to the broker's ack (its linger +
   * broker); and each operator's process() time per batch. What is left of
   * the simulator's figure is the list's way back: broker -> the
   * simulator's fetch and poll. */
  for (size_t i = 0; i < snap.g->n; i++)
    if (snap.node_e2e && snap.node_e2e[i].count)
      printf("   breakdown: interaction produced -> list to the producer p50 "
             "%.1f ms p99 %.1f ms;",
             rs_lat_quantile(&snap.node_e2e[i], 0.5) * 1e3,
             rs_lat_quantile(&snap.node_e2e[i], 0.99) * 1e3);
  printf(" engine produce -> ack p50 %.1f ms p99 %.1f ms\n",
         rs_lat_quantile(&snap.ack, 0.5) * 1e3,
         rs_lat_quantile(&snap.ack, 0.99) * 1e3);
  printf("   process() per batch, mean us:");
  for (size_t i = 0; i < snap.g->n; i++)
    if (snap.node_hist && snap.node_hist[i].count)
      printf(" %s %.0f", snap.g->nodes[i].name,
             (double)snap.node_hist[i].sum_ns / 1e3 /
                 (double)snap.node_hist[i].count);
  printf(" (%.1f records per batch)\n",
         st.batches ? (double)st.records_in / (double)st.batches : 0.0);
  printf("   checkpoint write batches: %.0f KiB on average, the last %.0f "
         "KiB\n",
         (double)snap.checkpoint_total_bytes / 1024 / ck,
         (double)snap.checkpoint_last_bytes / 1024);
  /* Which operator's state the checkpoints write: RocksDB's memtables
   * hold what was written since the start (no flush in a short run). */
  printf("   written per column family (memtable KiB, keys):");
  for (size_t i = 0; i < snap.n_cfs; i++)
    printf(" %s %.0f/%llu", snap.cfs[i].name,
           (double)snap.cfs[i].memtable_bytes / 1024,
           (unsigned long long)snap.cfs[i].estimated_keys);
  printf("\n");
  rs_metrics_snapshot_free(&snap);
  fflush(stdout);
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
    else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
      warmup = atof(argv[++i]);
    else if (!strcmp(argv[i], "--pipeline") && i + 1 < argc &&
             pipe_index(argv[i + 1]) >= 0)
      tput_pipe = lat_pipe = pipe_index(argv[++i]);
    else if (!strcmp(argv[i], "--latency-pipeline") && i + 1 < argc &&
             pipe_index(argv[i + 1]) >= 0)
      lat_pipe = pipe_index(argv[++i]);
    else if (!strcmp(argv[i], "--kafka") && i + 1 < argc &&
             strchr(argv[i + 1], '=') &&
             strlen(kafka_props) + strlen(argv[i + 1]) + 8 <
                 sizeof kafka_props) {
      const char *kv = argv[++i], *eq = strchr(kv, '=');
      size_t n = strlen(kafka_props), kl = (size_t)(eq - kv);
      if (kl == 17 && !strncmp(kv, "fetch.wait.max.ms", kl))
        fetch_wait = eq + 1;
      else if (kl == 9 && !strncmp(kv, "linger.ms", kl))
        linger = eq + 1;
      else
        snprintf(kafka_props + n, sizeof kafka_props - n, ", %.*s: \"%s\"",
                 (int)kl, kv, eq + 1);
    } else if (!strcmp(argv[i], "--commit-interval") && i + 1 < argc)
      commit_interval = argv[++i];
    else if (!strcmp(argv[i], "--sync") && i + 1 < argc &&
             (!strcmp(argv[i + 1], "true") || !strcmp(argv[i + 1], "false")))
      state_sync = argv[++i];
    else if (!strcmp(argv[i], "--batch-size") && i + 1 < argc)
      batch_size = atol(argv[++i]);
    else if (!strcmp(argv[i], "--sim-kafka") && i + 1 < argc &&
             strchr(argv[i + 1], '=') && n_sim_props < MAX_SIM_PROPS)
      sim_props[n_sim_props++] = argv[++i];
    else if (!strcmp(argv[i], "--partitions") && i + 1 < argc)
      partitions = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--skip-throughput"))
      skip_tput = 1;
    else {
      fprintf(stderr,
              "usage: bench_loop [--records N] [--rate R] [--seconds S] "
              "[--warmup W] [--pipeline full|demo|loop] "
              "[--latency-pipeline full|demo|loop] [--kafka KEY=VALUE]... "
              "[--commit-interval D] [--sync true|false] [--batch-size N] "
              "[--sim-kafka KEY=VALUE]... [--partitions N] "
              "[--skip-throughput]\n");
      return 2;
    }
  }
  if (n_records < 1000 || rate < 1 || seconds < 3 || warmup >= seconds ||
      batch_size < 1 || partitions < 1 || partitions > 64) {
    fprintf(stderr, "bench_loop: --records >= 1000, --rate >= 1, "
                    "--seconds >= 3, --warmup < --seconds, --batch-size >= "
                    "1, --partitions 1..64\n");
    return 2;
  }
  const char *load = bench_loadavg();
  printf("commit_interval %s, sync %s, batch_size %ld, kafka "
         "fetch.wait.max.ms: %s, linger.ms: %s%s; load average at start: "
         "%s\n",
         commit_interval, state_sync, batch_size, fetch_wait, linger,
         kafka_props, load);
  for (int i = 0; i < n_sim_props; i++)
    printf("%s%s", i ? ", " : "simulator -X: ", sim_props[i]);
  if (n_sim_props)
    printf("\n");
  if (!skip_tput) {
    tput_t t;
    bench_in_child("throughput", throughput, NULL, &t, sizeof t);
    printf("1. throughput, pipeline %s, %ld interactions, 4 partitions, "
           "1000 items:\n"
           "   raw consume %.0f records/s, pipeline %.0f records/s, "
           "ratio %.3f\n",
           pipe_names[tput_pipe], n_records, t.raw, t.pipeline,
           t.pipeline / t.raw);
  }
  printf("2. latency, pipeline %s, %d partitions per topic, at %g actions/s "
         "for %gs (simulate --json; "
         "latency_ms is interaction produced -> its recommendation "
         "consumed):\n",
         pipe_names[lat_pipe], partitions, rate, seconds);
  fflush(stdout);
  int dummy;
  bench_in_child("latency", latency, NULL, &dummy, sizeof dummy);
  return 0;
}
