/* Benchmark: what the http: endpoint costs the pipeline while Prometheus
 * scrapes it.
 *
 *   cmake --build build -j2 --target bench_metrics &&
 *   build/bench/bench_metrics [--records N] [--partitions P] [--rounds R]
 *
 * Pipeline: in -> parse -> user_stats -> sink (at_least_once, arrival
 * order, 10,000 users), as in bench_guarantee. Three kinds of run, each in a
 * fresh process with a fresh in-process broker and the same input:
 *   off       http unset (no endpoint at all);
 *   scraped   http on, a client thread GETs /metrics every second (what a
 *             Prometheus scrape interval of 1 s costs);
 *   hammered  http on, GET /metrics back to back (an upper bound: the
 *             per-scrape cost made visible in a short run).
 * Kinds alternate for --rounds rounds (default 5); each round's ratio of
 * records/s (first input to last acknowledged output) to the round's off
 * run is taken, and the median of those ratios is the figure: the target
 * is scraped / off >= 0.97 (a round's runs are minutes apart at most, so
 * a shared machine's load changes less within a round than across). Also
 * measured directly on the finished engine: the loop time one scrape
 * (snapshot + exposition) and one rate sample take. The load average is
 * printed at the start and the end. Also printed: scrapes done (in all, and
 * while records were being processed: the consumer group join before the first
 * record takes most of a short run), the scrape latency seen by the client
 * (p50, p99), body size, peak RSS per process. Default 1,000,000 records
 * over 16 partitions (about 0.5 GiB peak RSS with the in-process broker).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "graph.h"
#include "kafka.h"
#include "metrics.h"
#include "registry.h"
#include "util.h"

static long n_records = 1000000;
static int n_partitions = 16;

typedef struct result {
  double rate, wall, rss_mib;
  double cpu_us; /* CPU time (whole process, user + system) per record */
  long scrapes, scrapes_during; /* in all; while records were processed */
  double p50_ms, p99_ms;
  size_t body_bytes;
  double render_us; /* one snapshot + exposition of the finished engine */
  double tick_us;   /* one rate sample (the endpoint's 1 s tick) */
} result_t;

typedef struct scraper {
  rs_engine_t *e;
  long interval_ms; /* 0: back to back */
  atomic_int stop;
  double lat_ms[100000];
  uint64_t at_ns[100000]; /* when each scrape started */
  long n;
  size_t body_bytes;
} scraper_t;

/* One GET /metrics; the body's size, or 0 on failure. */
static size_t scrape(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
    if (fd >= 0)
      close(fd);
    return 0;
  }
  static const char req[] = "GET /metrics HTTP/1.1\r\nHost: b\r\n\r\n";
  size_t total = 0;
  if (write(fd, req, sizeof req - 1) == (ssize_t)sizeof req - 1) {
    char buf[65536];
    ssize_t k;
    while ((k = read(fd, buf, sizeof buf)) > 0)
      total += (size_t)k;
  }
  close(fd);
  return total;
}

static void *scraper_main(void *arg) {
  scraper_t *s = arg;
  int port;
  while (!(port = rs_engine_http_port(s->e)) && !atomic_load(&s->stop))
    usleep(1000);
  while (!atomic_load(&s->stop)) {
    uint64_t t0 = rs_now_ns();
    size_t got = scrape(port);
    uint64_t dt = rs_now_ns() - t0;
    if (got && s->n < (long)RS_ARRAY_SIZE(s->lat_ms)) {
      s->at_ns[s->n] = t0;
      s->lat_ms[s->n++] = (double)dt / 1e6;
      s->body_bytes = got;
    }
    /* Sleep in short steps so the end of the run is not waited out. */
    for (long slept = 0; slept < s->interval_ms && !atomic_load(&s->stop);
         slept += 10)
      usleep(10000);
  }
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double *v, long n, double p) {
  if (!n)
    return 0;
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  long i = (long)(p * (double)(n - 1) + 0.5);
  return v[i];
}

static result_t measure(const char *kind) {
  result_t r;
  memset(&r, 0, sizeof r);
  char err[2048];
  static const char *const topics[] = {"in", "in.dlq", "out", NULL};
  rs_mock_t *m = bench_broker(topics, n_partitions);
  bench_produce(m->bootstraps, "in", n_records, 10000);
  bench_reset_peak_rss();
  int http = strcmp(kind, "off") != 0;
  char yaml[2048];
  snprintf(yaml, sizeof yaml,
           "app: bench\n"
           "kafka: { brokers: \"%s\" }\n"
           "state: { dir: \"%s/state\" }\n"
           "%s"
           "sources: [ { name: in, topic: in } ]\n"
           "operators:\n"
           "  - { name: parse, type: parse, input: in }\n"
           "  - { name: stats, type: user_stats, input: parse }\n"
           "sinks: [ { name: out, input: stats, topic: out } ]\n",
           m->bootstraps, bench_state_root(),
           http ? "http: { port: 0 }\n" : "");
  rs_config_t *cfg = NULL;
  rs_registry_t *reg = NULL;
  rs_graph_t *g = NULL;
  rs_engine_t *e = NULL;
  if (rs_config_load_string("bench.yaml", yaml, strlen(yaml), NULL, 0, &cfg,
                            err, sizeof err) ||
      rs_registry_new(&reg, err, sizeof err) ||
      rs_graph_build(cfg, reg, &g, err, sizeof err))
    bench_die("config", err);
  rs_engine_opts_t o = {.exit_at_end = 1};
  if (rs_engine_new(cfg, g, &o, &e, err, sizeof err))
    bench_die("engine", err);
  scraper_t *s = calloc(1, sizeof *s);
  s->e = e;
  s->interval_ms = !strcmp(kind, "scraped") ? 1000 : 0;
  pthread_t th;
  if (http && pthread_create(&th, NULL, scraper_main, s))
    bench_die("thread", "pthread_create");
  uint64_t t0 = rs_now_ns();
  double c0 = bench_cpu_seconds();
  if (rs_engine_run(e, err, sizeof err))
    bench_die("run", err);
  r.wall = (double)(rs_now_ns() - t0) / 1e9;
  /* The scraper thread's own CPU (client side) is in it too. */
  r.cpu_us = (bench_cpu_seconds() - c0) * 1e6 / (double)n_records;
  atomic_store(&s->stop, 1);
  if (http)
    pthread_join(th, NULL);
  rs_engine_stats_t st;
  rs_engine_get_stats(e, &st);
  if ((long)st.records_in != n_records)
    bench_die(kind, "not every record was processed");
  r.rate = (double)st.records_in /
           ((double)(st.last_ack_ns - st.first_input_ns) / 1e9);
  r.rss_mib = bench_peak_rss_mib();
  r.scrapes = s->n;
  for (long i = 0; i < s->n; i++)
    r.scrapes_during +=
        s->at_ns[i] >= st.first_input_ns && s->at_ns[i] <= st.last_ack_ns;
  r.p50_ms = pct(s->lat_ms, s->n, 0.5);
  r.p99_ms = pct(s->lat_ms, s->n, 0.99);
  r.body_bytes = s->body_bytes;
  free(s);
  /* What one scrape costs the loop, measured on the finished engine (the
   * same figures as while it ran): snapshot and rendering, and the rate
   * sample the endpoint takes every second. */
  enum { REPS = 200 };
  rs_buf_t body = {0};
  uint64_t r0 = rs_now_ns();
  for (int i = 0; i < REPS; i++) {
    rs_metrics_snapshot_t snap;
    if (rs_engine_snapshot(e, &snap))
      bench_die(kind, "snapshot");
    rs_buf_reset(&body);
    if (rs_metrics_render(&snap, &body))
      bench_die(kind, "render");
    rs_metrics_snapshot_free(&snap);
  }
  r.render_us = (double)(rs_now_ns() - r0) / 1e3 / REPS;
  r0 = rs_now_ns();
  for (int i = 0; i < REPS; i++) {
    rs_metrics_snapshot_t snap;
    if (rs_engine_snapshot_counts(e, &snap))
      bench_die(kind, "snapshot");
    for (size_t k = 0; k < snap.g->n; k++)
      (void)(rs_metrics_node_in(&snap, k) + rs_metrics_node_out(&snap, k));
    rs_metrics_snapshot_free(&snap);
  }
  r.tick_us = (double)(rs_now_ns() - r0) / 1e3 / REPS;
  rs_buf_free(&body);
  rs_engine_destroy(e);
  rs_graph_destroy(g);
  rs_registry_destroy(reg);
  rs_config_destroy(cfg);
  rs_mock_destroy(m);
  return r;
}

static void measure_into(const void *kind, void *out) {
  *(result_t *)out = measure(kind);
}

static result_t in_child(const char *kind) {
  result_t r;
  bench_in_child(kind, measure_into, kind, &r, sizeof r);
  return r;
}

int main(int argc, char **argv) {
  int rounds = 5;
  bench_init("bench_metrics");
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--records") && i + 1 < argc)
      n_records = atol(argv[++i]);
    else if (!strcmp(argv[i], "--partitions") && i + 1 < argc)
      n_partitions = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
      rounds = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: bench_metrics [--records N] [--partitions P] "
                      "[--rounds R]\n");
      return 2;
    }
  }
  if (n_records < 1000 || n_partitions < 1 || rounds < 1 || rounds > 20)
    bench_die("arguments",
              "--records >= 1000, --partitions >= 1, --rounds 1..20");
  printf("%ld Avro interactions over %d partitions, in -> parse -> "
         "user_stats -> sink; a fresh process and broker per run\n",
         n_records, n_partitions);
  static const char *const kinds[] = {"off", "scraped", "hammered"};
  double rate[3][20], during[3][20], cpu[3][20], ratio_s[20], ratio_h[20],
      render[20], tick[20], cratio[20];
  double load0[3] = {0};
  getloadavg(load0, 3);
  printf("load average at start: %.2f %.2f %.2f (%ld CPUs online)\n", load0[0],
         load0[1], load0[2], sysconf(_SC_NPROCESSORS_ONLN));
  for (int k = 0; k < rounds; k++) {
    for (int j = 0; j < 3; j++) {
      int w = (k + j) % 3; /* rotate which goes first */
      result_t r = in_child(kinds[w]);
      rate[w][k] = r.rate;
      cpu[w][k] = r.cpu_us;
      during[w][k] = (double)r.scrapes_during;
      if (w == 0) {
        render[k] = r.render_us;
        tick[k] = r.tick_us;
      }
      printf("%-9s %9.0f records/s  %.2f CPU-us/record  wall %.2f s  peak RSS "
             "%.0f MiB",
             kinds[w], r.rate, r.cpu_us, r.wall, r.rss_mib);
      if (w)
        printf("  %ld scrapes (%ld while processing), latency p50 %.2f ms "
               "p99 %.2f ms, %zu bytes",
               r.scrapes, r.scrapes_during, r.p50_ms, r.p99_ms, r.body_bytes);
      printf("\n");
    }
    ratio_s[k] = rate[1][k] / rate[0][k];
    ratio_h[k] = rate[2][k] / rate[0][k];
    cratio[k] = cpu[1][k] / cpu[0][k];
    printf("round %d: scraped / off %.3f, hammered / off %.3f; CPU per "
           "record scraped / off %.3f\n",
           k + 1, ratio_s[k], ratio_h[k], cratio[k]);
  }
  double load1[3] = {0};
  getloadavg(load1, 3);
  printf("load average at end: %.2f %.2f %.2f\n", load1[0], load1[1], load1[2]);
  double off = bench_median(rate[0], rounds),
         scr = bench_median(rate[1], rounds),
         ham = bench_median(rate[2], rounds);
  printf("median records/s: off %.0f, scraped every 1 s %.0f, scraped back "
         "to back %.0f\n",
         off, scr, ham);
  printf("ratio scraped / off, median of the %d rounds' ratios: %.3f  (target "
         ">= 0.97)\n",
         rounds, bench_median(ratio_s, rounds));
  printf("ratio hammered / off, median of the rounds' ratios: %.3f\n",
         bench_median(ratio_h, rounds));
  double coff = bench_median(cpu[0], rounds),
         cscr = bench_median(cpu[1], rounds),
         cham = bench_median(cpu[2], rounds);
  printf("CPU-us/record (medians): off %.3f, scraped %.3f (ratio %.3f), "
         "hammered %.3f (ratio %.3f; the client's CPU included)\n",
         coff, cscr, cscr / coff, cham, cham / coff);
  /* Throughput on a machine shared with other jobs follows their load;
   * CPU time per record much less so. */
  printf("CPU per record, scraped / off, median of the rounds' ratios: "
         "%.3f (the cost as CPU: 1.03 would be 3%%)\n",
         bench_median(cratio, rounds));
  double hd = bench_median(during[2], rounds);
  printf("hammered: median %.0f scrapes while processing (%.0f per second "
         "of processing)\n",
         hd, hd / ((double)n_records / ham));
  double rus = bench_median(render, rounds), tus = bench_median(tick, rounds);
  printf("cost on the loop, measured: one scrape (snapshot + exposition) "
         "%.1f us, one rate sample %.1f us: scraped every second and "
         "sampled every second = %.4f%% of the loop's time\n",
         rus, tus, (rus + tus) / 1e4);
  return 0;
}
