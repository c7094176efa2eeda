#include "common.h"

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "codec.h"
#include "config.h"
#include "graph.h"
#include "kafka.h"
#include "registry.h"
#include "util.h"

static const char *prog_name = "bench";

void bench_init(const char *prog) {
  prog_name = prog;
}

_Noreturn void bench_die(const char *what, const char *err) {
  fprintf(stderr, "%s: %s: %s\n", prog_name, what, err);
  exit(1);
}

void bench_produce(const char *bootstrap, const char *topic, long n,
                   long users) {
  char err[512];
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof err);
  rd_kafka_conf_set(c, "linger.ms", "20", err, sizeof err);
  rd_kafka_conf_set(c, "queue.buffering.max.messages", "1000000", err,
                    sizeof err);
  rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
  if (!p)
    bench_die("producer", err);
  rs_codec_t *codec;
  if (rs_codec_new(&codec, NULL, err, sizeof err))
    bench_die("codec", err);
  rs_buf_t b = {0};
  for (long k = 0; k < n; k++) {
    char user[24], item[24];
    snprintf(user, sizeof user, "u%ld", k % users);
    snprintf(item, sizeof item, "i%ld", (k * 7919) % 5000);
    rs_interaction_t it = {.user = user,
                           .user_len = (uint32_t)strlen(user),
                           .item = item,
                           .item_len = (uint32_t)strlen(item),
                           .event_type = (int32_t)(k % 4),
                           .has_value = 1,
                           .value = 12.5,
                           .timestamp_ms = 1767225600000LL + k};
    rs_buf_reset(&b);
    if (rs_codec_encode(codec, RS_FORMAT_AVRO, &it, 0, &b, err, sizeof err))
      bench_die("encode", err);
    while (rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic),
                             RD_KAFKA_V_KEY(user, strlen(user)),
                             RD_KAFKA_V_VALUE(b.data, b.len),
                             RD_KAFKA_V_TIMESTAMP(it.timestamp_ms),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
      rd_kafka_poll(p, 10);
    rd_kafka_poll(p, 0);
  }
  if (rd_kafka_flush(p, 120000))
    bench_die("flush", "input not delivered");
  rs_buf_free(&b);
  rs_codec_destroy(codec);
  rd_kafka_destroy(p);
}

/* A consumer of topic's partitions 0..partitions-1 from their start,
 * assigned (no group protocol), with the engine's fetch settings
 * (engine/kafka.c) so that it reads as the engine does; *q its queue. */
static rd_kafka_t *raw_consumer(const char *bootstrap, const char *group,
                                const char *topic, int partitions,
                                rd_kafka_queue_t **q) {
  char err[512];
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof err);
  rd_kafka_conf_set(c, "group.id", group, err, sizeof err);
  rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof err);
  rd_kafka_conf_set(c, "queued.min.messages", "1000000", err, sizeof err);
  rd_kafka_conf_set(c, "fetch.wait.max.ms", "100", err, sizeof err);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
  if (!rk)
    bench_die("consumer", err);
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t *l =
      rd_kafka_topic_partition_list_new(partitions);
  for (int i = 0; i < partitions; i++)
    rd_kafka_topic_partition_list_add(l, topic, i)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  *q = rd_kafka_queue_get_consumer(rk);
  return rk;
}

/* bench_raw_copy's delivery reports: count them and note the time of the
 * last (the engine's rate ends at its last acknowledged output too). */
typedef struct {
  long delivered, failed;
  uint64_t last_ns;
} raw_copy_dr_t;

static void raw_copy_dr(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque) {
  (void)rk;
  raw_copy_dr_t *d = opaque;
  if (m->err)
    d->failed++;
  else
    d->delivered++;
  d->last_ns = rs_now_ns();
}

/* Consumes n messages of topic from the start; with out_topic, produces
 * each (key and value copied, same partition) there and waits for every
 * delivery. Records/s from the first input to the last consumed, or to
 * the last delivery report with out_topic. */
static double raw_run(const char *bootstrap, const char *topic, int partitions,
                      long n, const char *out_topic) {
  char err[512];
  rd_kafka_queue_t *q;
  rd_kafka_t *rk =
      raw_consumer(bootstrap, out_topic ? "bench-raw-copy" : "bench-raw", topic,
                   partitions, &q);
  rd_kafka_t *p = NULL;
  raw_copy_dr_t dr = {0};
  if (out_topic) {
    /* The engine's producer settings (engine/kafka.c), except its queue
     * limits and in-flight cap (this copy may hold more: never slower).
     * It names the input's partition where the engine's sink runs the
     * partitioner on the key. */
    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    rd_kafka_conf_set(pc, "bootstrap.servers", bootstrap, err, sizeof err);
    rd_kafka_conf_set(pc, "enable.idempotence", "true", err, sizeof err);
    rd_kafka_conf_set(pc, "linger.ms", "5", err, sizeof err);
    rd_kafka_conf_set(pc, "batch.num.messages", "10000", err, sizeof err);
    rd_kafka_conf_set(pc, "queue.buffering.max.messages", "1000000", err,
                      sizeof err);
    rd_kafka_conf_set_dr_msg_cb(pc, raw_copy_dr);
    rd_kafka_conf_set_opaque(pc, &dr);
    if (!(p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof err)))
      bench_die("producer", err);
  }
  rd_kafka_message_t *msgs[1000];
  long got = 0;
  uint64_t t0 = 0;
  while (got < n) {
    ssize_t k = rd_kafka_consume_batch_queue(q, 100, msgs, 1000);
    for (ssize_t i = 0; i < k; i++) {
      rd_kafka_message_t *m = msgs[i];
      if (!m->err) {
        if (!t0)
          t0 = rs_now_ns();
        got++;
        rd_kafka_resp_err_t e = 0;
        while (p && (e = rd_kafka_producev(
                         p, RD_KAFKA_V_TOPIC(out_topic),
                         RD_KAFKA_V_PARTITION(m->partition),
                         RD_KAFKA_V_KEY(m->key, m->key_len),
                         RD_KAFKA_V_VALUE(m->payload, m->len),
                         RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                         RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
          rd_kafka_poll(p, 10);
        if (e)
          bench_die("raw copy", rd_kafka_err2str(e));
      }
      rd_kafka_message_destroy(m);
    }
    if (p)
      rd_kafka_poll(p, 0);
  }
  uint64_t end = rs_now_ns();
  if (p) {
    if (rd_kafka_flush(p, 120000) || dr.delivered != n)
      bench_die("raw copy",
                dr.failed ? "outputs failed" : "outputs not delivered");
    end = dr.last_ns;
    rd_kafka_destroy(p);
  }
  rd_kafka_queue_destroy(q);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return (double)n / ((double)(end - t0) / 1e9);
}

double bench_raw_consume(const char *bootstrap, const char *topic,
                         int partitions, long n) {
  return raw_run(bootstrap, topic, partitions, n, NULL);
}

double bench_raw_copy(const char *bootstrap, const char *topic, int partitions,
                      long n, const char *out_topic) {
  return raw_run(bootstrap, topic, partitions, n, out_topic);
}

double bench_peak_rss_mib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  double kib = 0;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "VmHWM:", 6))
      kib = atof(line + 6);
  if (f)
    fclose(f);
  return kib / 1024;
}

void bench_reset_peak_rss(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (f) {
    fputs("5", f);
    fclose(f);
  }
}

static char state_root[] = "/tmp/rs-bench-state-XXXXXX";

static void remove_state_root(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", state_root);
  if (system(cmd) != 0)
    fprintf(stderr, "%s: could not remove %s\n", prog_name, state_root);
}

const char *bench_state_root(void) {
  static int made;
  if (!made) {
    if (!mkdtemp(state_root))
      bench_die("mkdtemp", state_root);
    atexit(remove_state_root);
    made = 1;
  }
  return state_root;
}

void bench_in_child(const char *what, void (*fn)(const void *arg, void *out),
                    const void *arg, void *out, size_t size) {
  int fd[2];
  if (pipe(fd))
    bench_die("pipe", "failed");
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0)
    bench_die("fork", "failed");
  if (pid == 0) {
    close(fd[0]);
    fn(arg, out);
    ssize_t w = write(fd[1], out, size);
    _exit(w == (ssize_t)size ? 0 : 1);
  }
  close(fd[1]);
  ssize_t got = read(fd[0], out, size);
  close(fd[0]);
  int st;
  waitpid(pid, &st, 0);
  if (got != (ssize_t)size || !WIFEXITED(st) || WEXITSTATUS(st))
    bench_die(what, "the measuring process failed");
}

double bench_cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

double bench_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

rs_engine_stats_t bench_run(const char *yaml, int state_reset, double *wall_s,
                            double *cpu_s) {
  rs_engine_opts_t o = {.exit_at_end = 1, .state_reset = state_reset};
  return bench_run_opts(yaml, &o, wall_s, cpu_s, NULL);
}

rs_engine_stats_t bench_run_opts(const char *yaml, const rs_engine_opts_t *o,
                                 double *wall_s, double *cpu_s,
                                 uint64_t *end_ns) {
  char err[2048];
  rs_config_t *cfg = NULL;
  rs_registry_t *reg = NULL;
  rs_graph_t *g = NULL;
  rs_engine_t *e = NULL;
  if (rs_config_load_string("bench.yaml", yaml, strlen(yaml), NULL, 0, &cfg,
                            err, sizeof err) ||
      rs_registry_new(&reg, err, sizeof err) ||
      rs_graph_build(cfg, reg, &g, err, sizeof err))
    bench_die("config", err);
  if (rs_engine_new(cfg, g, o, &e, err, sizeof err))
    bench_die("engine", err);
  uint64_t t0 = rs_now_ns();
  double c0 = bench_cpu_seconds();
  if (rs_engine_run(e, err, sizeof err))
    bench_die("run", err);
  if (end_ns)
    *end_ns = rs_now_ns();
  if (cpu_s)
    *cpu_s = bench_cpu_seconds() - c0;
  if (wall_s)
    *wall_s = (double)(rs_now_ns() - t0) / 1e9;
  rs_engine_stats_t st;
  rs_engine_get_stats(e, &st);
  rs_engine_destroy(e);
  rs_graph_destroy(g);
  rs_registry_destroy(reg);
  rs_config_destroy(cfg);
  return st;
}

rs_mock_t *bench_broker(const char *const *topics, int partitions) {
  char err[2048];
  rs_mock_t *m;
  if (rs_mock_start(1, &m, err, sizeof err))
    bench_die("broker", err);
  for (size_t i = 0; topics[i]; i++)
    if (rs_mock_create_topic(m, topics[i], partitions, err, sizeof err))
      bench_die("topic", err);
  return m;
}

const char *bench_loadavg(void) {
  static char text[64];
  double l[3];
  if (getloadavg(l, 3) != 3)
    return "?";
  snprintf(text, sizeof text, "%.2f %.2f %.2f", l[0], l[1], l[2]);
  return text;
}
