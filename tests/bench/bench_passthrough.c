/* Benchmark: source -> parse -> sink against raw librdkafka consumption of
 * the same topic, in one run on the embedded broker (in this process).
 *
 *   build/bench/bench_passthrough [--records N] [--partitions P]
 *
 * Also --latency-records N (5000), --latency-rate R (1000/s).
 *
 * Prints the raw consume rate, recstream's rate (from its first consumed
 * record to its last acknowledged output, and wall time including the
 * consumer-group join), their ratio, and peak RSS. Absolute numbers on a
 * shared machine are noise; the ratio is the figure of merit.
 *
 * Then it measures latency on a live pipeline: records are produced one by
 * one at --latency-rate per second, each carrying its send time, and a
 * consumer of the output topic records when each arrives; p50/p99/max of
 * (arrival - send) are printed. That is what a user sees: input produced to
 * output readable, through two broker round trips and the engine.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "common.h"
#include "config.h"
#include "graph.h"
#include "kafka.h"
#include "registry.h"
#include "runtime.h"
#include "util.h"

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

typedef struct lat_reader {
  const char *bootstrap;
  long want;
  uint64_t *lat_ns; /* by sequence number */
  long got;
  volatile long warm; /* warm-up records seen */
  volatile int stop;
} lat_reader_t;

/* Reads lat.out and records arrival - send for each record. */
static void *lat_read(void *arg) {
  lat_reader_t *r = arg;
  char err[512];
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  rd_kafka_conf_set(c, "bootstrap.servers", r->bootstrap, err, sizeof err);
  rd_kafka_conf_set(c, "group.id", "bench-lat", err, sizeof err);
  rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof err);
  rd_kafka_conf_set(c, "fetch.wait.max.ms", "5", err, sizeof err);
  rd_kafka_conf_set(c, "fetch.error.backoff.ms", "5", err, sizeof err);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
  for (int i = 0; i < 4; i++)
    rd_kafka_topic_partition_list_add(l, "lat.out", i)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  rs_codec_t *codec;
  rs_codec_new(&codec, NULL, err, sizeof err);
  rs_arena_t a;
  rs_arena_init(&a, 4096);
  while (!r->stop && r->got < r->want) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);
    if (!m)
      continue;
    uint64_t now = rs_now_ns();
    rs_interaction_t it;
    rs_arena_reset(&a);
    if (!m->err &&
        !rs_codec_decode(codec, RS_FORMAT_AVRO, m->payload, m->len, &it,
                         (void *(*)(void *, size_t))rs_arena_alloc, &a, err,
                         sizeof err) &&
        it.device && it.page[0] == 'w') {
      r->warm++;
    } else if (!m->err && it.device) {
      long seq = strtol(it.page, NULL, 10);
      uint64_t sent = strtoull(it.device, NULL, 10);
      if (seq >= 0 && seq < r->want && !r->lat_ns[seq]) {
        r->lat_ns[seq] = now - sent;
        r->got++;
      }
    }
    rd_kafka_message_destroy(m);
  }
  rs_arena_free(&a);
  rs_codec_destroy(codec);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return NULL;
}

static void *engine_main(void *arg) {
  char err[1024];
  if (rs_engine_run(arg, err, sizeof err))
    bench_die("latency run", err);
  return NULL;
}

static void measure_latency(const char *bootstrap, long n, int rate) {
  char err[2048], yaml[1024];
  snprintf(yaml, sizeof yaml,
           "app: bench-lat\n"
           "kafka: { brokers: \"%s\", properties: { linger.ms: \"1\", "
           "fetch.wait.max.ms: \"5\" } }\n"
           "state: { dir: \"%s/lat\" }\n"
           "sources: [ { name: in, topic: lat } ]\n"
           "operators: [ { name: parse, type: parse, input: in } ]\n"
           "sinks: [ { name: out, input: parse, topic: lat.out } ]\n",
           bootstrap, bench_state_root());
  rs_config_t *cfg = NULL;
  rs_registry_t *reg = NULL;
  rs_graph_t *g = NULL;
  rs_engine_t *e = NULL;
  if (rs_config_load_string("lat.yaml", yaml, strlen(yaml), NULL, 0, &cfg, err,
                            sizeof err) ||
      rs_registry_new(&reg, err, sizeof err) ||
      rs_graph_build(cfg, reg, &g, err, sizeof err) ||
      rs_engine_new(cfg, g, NULL, &e, err, sizeof err))
    bench_die("latency config", err);
  pthread_t et, rt;
  pthread_create(&et, NULL, engine_main, e);
  lat_reader_t r = {bootstrap, n, calloc((size_t)n, sizeof(uint64_t)), 0, 0, 0};
  pthread_create(&rt, NULL, lat_read, &r);

  rd_kafka_conf_t *c = rd_kafka_conf_new();
  rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof err);
  rd_kafka_conf_set(c, "linger.ms", "0", err, sizeof err);
  rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
  rs_codec_t *codec;
  rs_codec_new(&codec, NULL, err, sizeof err);
  rs_buf_t b = {0};
  /* Warm-up: one second's worth of records, untimed, until all are through
   * (group join, connections, metadata), then the timed run. */
  uint64_t gap = 1000000000ull / (uint64_t)rate;
  for (int phase = 0; phase < 2; phase++) {
    long count = phase ? n : rate;
    uint64_t t0 = rs_now_ns();
    for (long k = 0; k < count; k++) {
      while (rs_now_ns() < t0 + (uint64_t)k * gap) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
        rd_kafka_poll(p, 0);
      }
      char user[16], page[24], sent[32];
      snprintf(user, sizeof user, "u%ld", k % 1000);
      snprintf(page, sizeof page, phase ? "%ld" : "w%ld", k);
      snprintf(sent, sizeof sent, "%llu", (unsigned long long)rs_now_ns());
      rs_interaction_t it = {.user = user,
                             .user_len = (uint32_t)strlen(user),
                             .item = "i1",
                             .item_len = 2,
                             .device = sent,
                             .device_len = (uint32_t)strlen(sent),
                             .page = page,
                             .page_len = (uint32_t)strlen(page),
                             .event_type = RS_EVENT_CLICK,
                             .timestamp_ms = 1767225600000LL + k};
      rs_buf_reset(&b);
      rs_codec_encode(codec, RS_FORMAT_AVRO, &it, 0, &b, err, sizeof err);
      rd_kafka_producev(
          p, RD_KAFKA_V_TOPIC("lat"), RD_KAFKA_V_KEY(user, strlen(user)),
          RD_KAFKA_V_VALUE(b.data, b.len),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      rd_kafka_poll(p, 0);
    }
    rd_kafka_flush(p, 30000);
    uint64_t warm_deadline = rs_now_ns() + 30000000000ull;
    while (!phase && r.warm < count && rs_now_ns() < warm_deadline) {
      struct timespec ts = {0, 10000000};
      nanosleep(&ts, NULL);
    }
  }
  uint64_t deadline = rs_now_ns() + 30000000000ull;
  while (r.got < n && rs_now_ns() < deadline) {
    struct timespec ts = {0, 10000000};
    nanosleep(&ts, NULL);
  }
  r.stop = 1;
  pthread_join(rt, NULL);
  rs_engine_stop(e);
  pthread_join(et, NULL);
  rs_engine_stats_t st;
  rs_engine_get_stats(e, &st);
  fprintf(stderr, "latency run: engine in %llu out %llu\n",
          (unsigned long long)st.records_in,
          (unsigned long long)st.records_out);
  if (getenv("RS_BENCH_DUMP"))
    for (long i = 0; i < n; i++)
      if (r.lat_ns[i] > 50000000)
        fprintf(stderr, "slow seq %ld: %.1f ms\n", i, r.lat_ns[i] / 1e6);
  uint64_t *v = malloc((size_t)r.got * sizeof(uint64_t));
  size_t k = 0;
  for (long i = 0; i < n; i++)
    if (r.lat_ns[i])
      v[k++] = r.lat_ns[i];
  qsort(v, k, sizeof(uint64_t), cmp_u64);
  if (k)
    printf("latency, produce -> output readable (%zu of %ld records at %d/s): "
           "p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
           k, n, rate, (double)v[k / 2] / 1e6, (double)v[k * 99 / 100] / 1e6,
           (double)v[k - 1] / 1e6);
  else
    printf("latency: no output arrived\n");
  free(v);
  free(r.lat_ns);
  rs_buf_free(&b);
  rs_codec_destroy(codec);
  rd_kafka_destroy(p);
  rs_engine_destroy(e);
  rs_graph_destroy(g);
  rs_registry_destroy(reg);
  rs_config_destroy(cfg);
}

int main(int argc, char **argv) {
  long n = 1000000;
  int partitions = 16;
  const char *props = "";
  long lat_n = 5000;
  int lat_rate = 1000;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--records") && i + 1 < argc)
      n = atol(argv[++i]);
    else if (!strcmp(argv[i], "--partitions") && i + 1 < argc)
      partitions = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--latency-records") && i + 1 < argc)
      lat_n = atol(argv[++i]);
    else if (!strcmp(argv[i], "--latency-rate") && i + 1 < argc)
      lat_rate = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--properties") && i + 1 < argc)
      props = argv[++i]; /* YAML flow mapping body, e.g. "a: 1, b: 2" */
    else {
      fprintf(stderr, "usage: bench_passthrough [--records N] "
                      "[--partitions P] [--latency-records N] "
                      "[--latency-rate R] [--properties 'k: v, ...']\n");
      return 2;
    }
  }
  char err[2048];
  bench_init("bench_passthrough");
  rs_mock_t *m;
  if (rs_mock_start(1, &m, err, sizeof err))
    bench_die("broker", err);
  const char *topics[] = {"bench", "bench.out", "bench.dlq",
                          "lat",   "lat.out",   "lat.dlq"};
  for (int i = 0; i < 6; i++)
    if (rs_mock_create_topic(m, topics[i], i < 3 ? partitions : 4, err,
                             sizeof err))
      bench_die("topic", err);
  printf("producing %ld Avro interactions over %d partitions...\n", n,
         partitions);
  bench_produce(m->bootstraps, "bench", n, 10000);

  double base_rss = bench_peak_rss_mib();
  bench_reset_peak_rss();
  double raw = bench_raw_consume(m->bootstraps, "bench", partitions, n);
  double raw_rss = bench_peak_rss_mib();
  printf("raw librdkafka consume:        %10.0f records/s\n", raw);

  char yaml[2048];
  snprintf(yaml, sizeof yaml,
           "app: bench\n"
           "kafka: { brokers: \"%s\", properties: { %s } }\n"
           "state: { dir: \"%s/main\" }\n"
           "sources: [ { name: in, topic: bench } ]\n"
           "operators: [ { name: parse, type: parse, input: in } ]\n"
           "sinks: [ { name: out, input: parse, topic: bench.out, format: "
           "avro } ]\n",
           m->bootstraps, props, bench_state_root());
  bench_reset_peak_rss();
  double wall;
  rs_engine_stats_t st = bench_run(yaml, 0, &wall, NULL);
  double busy = (double)(st.last_ack_ns - st.first_input_ns) / 1e9;
  double rate = (double)st.records_in / busy;
  if ((long)st.records_out != n)
    bench_die("run", "not every record came out");
  printf("recstream source->parse->sink: %10.0f records/s (first input to "
         "last ack, %.2f s; wall incl. group join %.2f s)\n",
         rate, busy, wall);
  printf("ratio recstream / raw consume: %10.2f  (target >= 0.40)\n",
         rate / raw);
  printf("backpressure pauses: %llu, max in-flight %.1f MiB\n",
         (unsigned long long)st.pauses,
         (double)st.max_inflight_bytes / (1 << 20));
  printf("peak RSS (whole process, in-process broker included): after "
         "producing the input %.0f MiB; raw consume phase %.0f MiB; "
         "recstream phase %.0f MiB\n",
         base_rss, raw_rss, bench_peak_rss_mib());
  measure_latency(m->bootstraps, lat_n, lat_rate);
  rs_mock_destroy(m);
  return 0;
}
