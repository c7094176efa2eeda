/* The closed loop's benchmark (issue 6):
 *   build/bench/bench_loop [--records N] [--rate R] [--seconds S]
 *                          [--warmup W] [--pipeline full|demo|loop]
 *                          [--latency-pipeline full|demo|loop]
 *                          [--kafka KEY=VALUE]... [--commit-interval D]
 *                          [--sync true|false] [--batch-size N]
 *                          [--sim-kafka KEY=VALUE]... [--partitions N]
 *                          [--skip-throughput] [--raw-roundtrip]
 *                          [--skip-latency]
 * 1. Throughput: N interactions on the embedded broker read by raw
 *    librdkafka (the engine's fetch settings) and by the pipeline, each in
 *    a fresh process; the pipeline's rate as a ratio to raw consume
 *    measured in the same run. Pipelines: `full` (part 1's default) has
 *    all five operator types: parse (interactions and feedback),
 *    sessionize (closed sessions as topn_emit's second input), mf_update,
 *    topn_emit (n 20, whole-catalogue scan of 1,000 items) and
 *    bandit_reward (Thompson, 10 slots); `demo` (part 2's default) is
 *    configs/demo_loop.yaml's pipeline as of session 7, the same without
 *    sessionize and without the A/B split (session 8's loop through the
 *    topic `unclicked` and its options are not in it); `loop` is
 * configs/loop.yaml's parse -> mf_update -> topn_emit.
 * 2. Latency: `recstream simulate` (in-process, rs_cmd_simulate) at R
 *    user actions per second (default 5,000), with feedback, against that
 *    pipeline running in a thread: p50/p99 from an interaction being
 *    produced to its recommendation being consumed (the simulator's JSON),
 *    then the engine's own counters (batches, checkpoints and how long
 *    they held the loop) and a time breakdown (interaction produced ->
 *    list handed to the producer, produce -> ack, process() per batch per
 *    operator, records per batch).
 * 3. --raw-roundtrip (run before part 2, in its own child): the same
 *    Kafka path with no engine, same settings and rate: simulator-like
 *    producer -> embedded broker -> a relay consuming with the engine's
 *    consumer settings and producing each interaction back at once with
 *    its producer settings -> broker -> simulator-like consumer; p50/p99
 *    of produce -> consumed. The floor the engine's figure sits on: what
 *    the broker, the clients and their threads cost on this machine.
 *    --skip-latency leaves part 2 out (settings sweeps of the raw path).
 * The latency settings are configs/demo_loop.yaml's (kept in step by hand:
 * a bench has no source directory at run time: 1 partition per topic,
 * fetch.wait.max.ms 1, linger.ms 3, and simulate's own linger.ms 3);
 * --kafka, --sim-kafka, --partitions, --commit-interval and --batch-size
 * override them to compare settings in one place.
 * Numbers, not pass/fail: no thresholds here (docs/DEMO.md). */
#include <librdkafka/rdkafka.h>
#include <math.h>
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
/* --kafka's other pairs again, for the raw round trip's relay clients. */
enum { MAX_KAFKA_PROPS = 16 };
static char *kafka_kv[MAX_KAFKA_PROPS];
static int n_kafka_kv;
static int raw_rt = 0, skip_latency = 0;
/* The engine fixes enable.idempotence=true on its producer (engine/kafka.c);
 * --raw-idempotence false shows what that costs on the raw path. */
static const char *idempotence = "true";
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
  /* The asynchronous checkpoints' hold, without the final synchronous one
   * of the stop (counted in full: its waits and write). Read while the
   * engine runs: aligned 64-bit counters, a figure, not a synchronized
   * snapshot. */
  rs_engine_stats_t run;
  rs_engine_get_stats(x.e, &run);
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
  printf("   during the run (before the stop's synchronous checkpoint): %llu "
         "captures, loop held %.2f ms per checkpoint on average (capture and "
         "end), the longest single hold %.2f ms\n",
         (unsigned long long)run.checkpoint_captures,
         run.checkpoint_captures ? (double)run.checkpoint_hold_ns / 1e6 /
                                       (double)run.checkpoint_captures
                                 : 0.0,
         (double)run.checkpoint_hold_max_ns / 1e6);
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

/* ------------------------------------------------ 3. raw round trip */

/* The latency run's Kafka path with no engine: a "simulator" thread
 * produces interactions at --rate with the simulator's producer settings
 * (and a feedback record for 60% of them, about what the demo's simulated
 * users click), a relay thread consumes both topics with the engine's
 * consumer settings and produces a 256-byte record per interaction to
 * `recommendations` at once with the engine's producer settings, and the
 * simulator thread consumes those as `recstream simulate` does (its
 * consumer settings, its 1 ms sleeps on the consumer between due actions).
 * Latency: the interaction's produce() call -> its record consumed, the
 * simulator's definition. What the engine adds on top of this is its own
 * fetch/queue/processing time; this is what the embedded broker, the two
 * librdkafka producers and consumers and their threads cost on this
 * machine with these settings. */
typedef struct raw_res {
  long n, produced, relayed;
  double p50, p90, p99, p999, max;
} raw_res_t;

typedef struct relay {
  rd_kafka_t *cons, *prod;
  volatile int stop;
  long relayed;
} relay_t;

static void kset(rd_kafka_conf_t *c, const char *k, const char *v) {
  char err[512];
  if (rd_kafka_conf_set(c, k, v, err, sizeof err) != RD_KAFKA_CONF_OK)
    bench_die(k, err);
}

static void kset_kv(rd_kafka_conf_t *c, const char *kv) {
  char key[256];
  const char *eq = strchr(kv, '=');
  snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
  kset(c, key, eq + 1);
}

/* The engine's client settings (engine/kafka.c defaults that matter for
 * latency, its fixed enable.idempotence=true on the producer, then the
 * demo's two, then --kafka). */
static rd_kafka_t *engine_client(const char *brokers, int consumer) {
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  char err[512];
  kset(c, "bootstrap.servers", brokers);
  if (consumer) {
    kset(c, "group.id", "bench-raw-relay"); /* assign() only */
    kset(c, "enable.auto.commit", "false");
    kset(c, "enable.partition.eof", "false");
    kset(c, "queued.min.messages", "1000000");
    kset(c, "fetch.wait.max.ms", fetch_wait);
  } else {
    kset(c, "enable.idempotence", idempotence);
    kset(c, "batch.num.messages", "10000");
    kset(c, "linger.ms", linger);
  }
  for (int i = 0; i < n_kafka_kv; i++)
    if (consumer ? strncmp(kafka_kv[i], "linger.ms=", 10)
                 : strncmp(kafka_kv[i], "fetch.wait.max.ms=", 18))
      kset_kv(c, kafka_kv[i]);
  rd_kafka_t *k = rd_kafka_new(consumer ? RD_KAFKA_CONSUMER : RD_KAFKA_PRODUCER,
                               c, err, sizeof err);
  if (!k)
    bench_die("raw round trip client", err);
  return k;
}

/* `recstream simulate`'s client settings (sim_cmd.c make_conf), then
 * --sim-kafka. */
static rd_kafka_t *sim_client(const char *brokers, int consumer) {
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  char err[512];
  kset(c, "bootstrap.servers", brokers);
  if (consumer) {
    kset(c, "group.id", "bench-raw-sim");
    kset(c, "enable.auto.commit", "false");
    kset(c, "fetch.wait.max.ms", "1");
    kset(c, "fetch.error.backoff.ms", "10");
    kset(c, "enable.partition.eof", "false");
  } else {
    kset(c, "linger.ms", "3");
    kset(c, "batch.num.messages", "1000");
    kset(c, "acks", "1");
    kset(c, "enable.idempotence", "false");
  }
  for (int i = 0; i < n_sim_props; i++)
    kset_kv(c, sim_props[i]);
  rd_kafka_t *k = rd_kafka_new(consumer ? RD_KAFKA_CONSUMER : RD_KAFKA_PRODUCER,
                               c, err, sizeof err);
  if (!k)
    bench_die("raw round trip client", err);
  rd_kafka_poll_set_consumer(k);
  return k;
}

static void assign_all(rd_kafka_t *k, const char *const *tps, int64_t off) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
  for (int t = 0; tps[t]; t++)
    for (int p = 0; p < partitions; p++)
      rd_kafka_topic_partition_list_add(l, tps[t], p)->offset = off;
  rd_kafka_resp_err_t e = rd_kafka_assign(k, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e)
    bench_die("assign", rd_kafka_err2str(e));
}

static void *relay_thread(void *arg) {
  relay_t *r = arg;
  char out[256];
  memset(out, 'r', sizeof out);
  while (!r->stop) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(r->cons, 100);
    if (m) {
      if (!m->err && !strcmp(rd_kafka_topic_name(m->rkt), "interactions") &&
          m->len >= 8) {
        memcpy(out, m->payload, 8);
        rd_kafka_resp_err_t e = rd_kafka_producev(
            r->prod, RD_KAFKA_V_TOPIC("recommendations"),
            RD_KAFKA_V_PARTITION(m->partition),
            RD_KAFKA_V_KEY(m->key, m->key_len),
            RD_KAFKA_V_VALUE(out, sizeof out),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (!e)
          r->relayed++;
      }
      rd_kafka_message_destroy(m);
    }
    rd_kafka_poll(r->prod, 0);
  }
  return NULL;
}

static int cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void raw_roundtrip(const void *arg, void *out) {
  (void)arg;
  raw_res_t *res = out;
  memset(res, 0, sizeof *res);
  rs_mock_t *m = bench_broker(topics, partitions);
  static const char *const in_topics[] = {"interactions", "feedback", NULL};
  static const char *const out_topics[] = {"recommendations", NULL};
  relay_t r = {.cons = engine_client(m->bootstraps, 1),
               .prod = engine_client(m->bootstraps, 0)};
  rd_kafka_poll_set_consumer(r.cons);
  assign_all(r.cons, in_topics, RD_KAFKA_OFFSET_BEGINNING);
  rd_kafka_t *sp = sim_client(m->bootstraps, 0);
  rd_kafka_t *sc = sim_client(m->bootstraps, 1);
  assign_all(sc, out_topics, RD_KAFKA_OFFSET_BEGINNING);
  pthread_t th;
  if (pthread_create(&th, NULL, relay_thread, &r))
    bench_die("relay", "cannot start its thread");
  double wu = warmup >= 0 ? warmup : seconds / 3;
  size_t cap = (size_t)(rate * seconds * 1.2) + 1024, n = 0;
  double *lat = malloc(cap * sizeof *lat);
  if (!lat)
    bench_die("raw round trip", "out of memory");
  uint64_t start = rs_now_ns(), end = (uint64_t)(seconds * 1e9);
  double interval = 1e9 / rate, due = 0;
  uint64_t rng = 42;
  char payload[64], fb[64];
  memset(payload, 'i', sizeof payload);
  memset(fb, 'f', sizeof fb);
  for (;;) {
    uint64_t now = rs_now_ns() - start;
    if (now >= end)
      break;
    for (int burst = 0; due <= (double)now && burst < 1000; burst++) {
      rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
      char key[16];
      int kl = snprintf(key, sizeof key, "u%u", (unsigned)(rng >> 33) % 1000);
      uint64_t t = rs_now_ns();
      memcpy(payload, &t, 8);
      if (!rd_kafka_producev(sp, RD_KAFKA_V_TOPIC("interactions"),
                             RD_KAFKA_V_KEY(key, (size_t)kl),
                             RD_KAFKA_V_VALUE(payload, sizeof payload),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END))
        res->produced++;
      if ((rng >> 20) % 10 < 6)
        rd_kafka_producev(
            sp, RD_KAFKA_V_TOPIC("feedback"), RD_KAFKA_V_KEY(key, (size_t)kl),
            RD_KAFKA_V_VALUE(fb, sizeof fb),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      due += interval;
    }
    rd_kafka_poll(sp, 0);
    double wait_ms = (due - (double)(rs_now_ns() - start)) / 1e6;
    int tmo = wait_ms <= 0 ? 0 : wait_ms < 10 ? (int)ceil(wait_ms) : 10;
    for (rd_kafka_message_t *msg; (msg = rd_kafka_consumer_poll(sc, tmo));
         tmo = 0) {
      if (!msg->err && msg->len >= 8 && n < cap) {
        uint64_t sent;
        memcpy(&sent, msg->payload, 8);
        uint64_t got = rs_now_ns();
        if ((double)(got - start) / 1e9 >= wu)
          lat[n++] = (double)(got - sent) / 1e6;
      }
      rd_kafka_message_destroy(msg);
    }
  }
  /* The last records on their way. */
  for (int k = 0; k < 20; k++) {
    rd_kafka_message_t *msg = rd_kafka_consumer_poll(sc, 10);
    if (!msg)
      continue;
    if (!msg->err && msg->len >= 8 && n < cap) {
      uint64_t sent;
      memcpy(&sent, msg->payload, 8);
      lat[n++] = (double)(rs_now_ns() - sent) / 1e6;
    }
    rd_kafka_message_destroy(msg);
  }
  r.stop = 1;
  pthread_join(th, NULL);
  res->relayed = r.relayed;
  rd_kafka_consumer_close(sc);
  rd_kafka_destroy(sc);
  rd_kafka_flush(sp, 5000);
  rd_kafka_destroy(sp);
  rd_kafka_consumer_close(r.cons);
  rd_kafka_destroy(r.cons);
  rd_kafka_flush(r.prod, 5000);
  rd_kafka_destroy(r.prod);
  rs_mock_destroy(m);
  res->n = (long)n;
  if (n) {
    qsort(lat, n, sizeof *lat, cmp_dbl);
    res->p50 = lat[n / 2];
    res->p90 = lat[(size_t)((double)n * 0.9)];
    res->p99 = lat[(size_t)((double)n * 0.99)];
    res->p999 = lat[(size_t)((double)n * 0.999)];
    res->max = lat[n - 1];
  }
  free(lat);
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
      if (n_kafka_kv < MAX_KAFKA_PROPS)
        kafka_kv[n_kafka_kv++] = (char *)kv;
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
    else if (!strcmp(argv[i], "--raw-roundtrip"))
      raw_rt = 1;
    else if (!strcmp(argv[i], "--skip-latency"))
      skip_latency = 1;
    else if (!strcmp(argv[i], "--raw-idempotence") && i + 1 < argc &&
             (!strcmp(argv[i + 1], "true") || !strcmp(argv[i + 1], "false")))
      idempotence = argv[++i];
    else {
      fprintf(strcmp(argv[i], "--help") ? stderr : stdout,
              "usage: bench_loop [--records N] [--rate R] [--seconds S] "
              "[--warmup W] [--pipeline full|demo|loop] "
              "[--latency-pipeline full|demo|loop] [--kafka KEY=VALUE]... "
              "[--commit-interval D] [--sync true|false] [--batch-size N] "
              "[--sim-kafka KEY=VALUE]... [--partitions N] "
              "[--skip-throughput] [--raw-roundtrip] [--skip-latency] "
              "[--raw-idempotence true|false]\n");
      return strcmp(argv[i], "--help") ? 2 : 0;
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
  if (raw_rt) {
    raw_res_t rr;
    bench_in_child("raw round trip", raw_roundtrip, NULL, &rr, sizeof rr);
    printf(
        "3. raw round trip, no engine (simulator settings -> embedded "
        "broker -> relay with the engine's settings -> broker -> "
        "simulator), %d partitions, %g interactions/s for %gs: "
        "relay idempotence %s, %ld produced, %ld relayed, %ld measured after "
        "the warm-up: p50 "
        "%.2f ms p90 %.2f ms p99 %.2f ms p99.9 %.2f ms max %.2f ms; load "
        "average now %s\n",
        partitions, rate, seconds, idempotence, rr.produced, rr.relayed, rr.n,
        rr.p50, rr.p90, rr.p99, rr.p999, rr.max, bench_loadavg());
    fflush(stdout);
  }
  if (skip_latency)
    return 0;
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
