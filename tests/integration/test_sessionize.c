/* generator -> parse -> sessionize -> sinks on the embedded broker, with
 * the example pipeline configs/sessions.yaml itself (only the brokers
 * set): a seeded generator stream goes in, keyed by user with each user on
 * a fixed partition, followed by one far-future record per partition that
 * moves every watermark past all real sessions. The sessions topic must
 * then hold exactly the sessions a reference computes from the generated
 * events by the definition (gap 30m inclusive, spans of at most 4h), with
 * their users, bounds, sizes and split flags; the session-events topic one
 * record per generated event; the late topic nothing. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "examples/generator/generator.h"
#include "itest.h"
#include "util.h"

#define PARTS 4
#define GAP_MS (30 * 60 * 1000LL)
#define MAX_SPAN_MS (4 * 3600 * 1000LL)

static const char *const topics[] = {"interactions",      "interactions.dlq",
                                     "session-events",    "sessions",
                                     "interactions.late", NULL};

typedef struct gen_ev {
  int user;
  int64_t t;
} gen_ev_t;

static int by_user_time(const void *a, const void *b) {
  const gen_ev_t *x = a, *y = b;
  if (x->user != y->user)
    return x->user < y->user ? -1 : 1;
  return x->t < y->t ? -1 : x->t > y->t;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s", path);
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return buf;
}

Test(sessionize_pipeline, seeded_stream_gives_the_expected_sessions,
     .timeout = 300) {
  rs_mock_t *m = it_cluster(1, PARTS, topics);
  cr_assert_not_null(m);
  const long n = 30000;
  const int users = 400;

  /* The seeded stream, produced with each user on partition user % 4. */
  rs_gen_opts_t o;
  rs_gen_opts_default(&o);
  o.seed = 4;
  o.users = (uint32_t)users;
  rs_gen_t *g = rs_gen_new(&o);
  cr_assert_not_null(g);
  gen_ev_t *evs = calloc((size_t)n, sizeof *evs);
  char err[512];
  rd_kafka_conf_t *pc = rd_kafka_conf_new();
  rd_kafka_conf_set(pc, "bootstrap.servers", m->bootstraps, err, sizeof err);
  rd_kafka_conf_set(pc, "linger.ms", "5", err, sizeof err);
  rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof err);
  cr_assert_not_null(p, "%s", err);
  rs_codec_t *codec;
  cr_assert_eq(rs_codec_new(&codec, NULL, err, sizeof err), 0);
  rs_buf_t b = {0};
  int64_t max_t = 0;
  for (long k = 0; k < n + PARTS; k++) {
    rs_interaction_t ia;
    int32_t part;
    if (k < n) {
      cr_assert_eq(rs_gen_next(g, &ia), 0);
      evs[k].user = atoi(ia.user + 1);
      evs[k].t = ia.timestamp_ms;
      max_t = ia.timestamp_ms;
      part = evs[k].user % PARTS;
    } else {
      /* One record per partition a day after the end: every real
       * session's deadline (end + 30m + 5m) is then behind the
       * watermark (its time - 30s). */
      part = (int32_t)(k - n);
      ia = (rs_interaction_t){.user = "~flush",
                              .user_len = 6,
                              .item = "none",
                              .item_len = 4,
                              .event_type = RS_EVENT_CLICK,
                              .timestamp_ms = max_t + 86400000};
    }
    rs_buf_reset(&b);
    cr_assert_eq(
        rs_codec_encode(codec, RS_FORMAT_AVRO, &ia, 0, &b, err, sizeof err), 0,
        "%s", err);
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(
                p, RD_KAFKA_V_TOPIC("interactions"), RD_KAFKA_V_PARTITION(part),
                RD_KAFKA_V_KEY(ia.user, ia.user_len),
                RD_KAFKA_V_VALUE(b.data, b.len),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
      rd_kafka_poll(p, 10);
    cr_assert_eq(e, 0, "%s", rd_kafka_err2str(e));
    rd_kafka_poll(p, 0);
  }
  cr_assert_eq(rd_kafka_flush(p, 30000), 0);
  rd_kafka_destroy(p);
  rs_buf_free(&b);
  rs_codec_destroy(codec);
  rs_gen_destroy(g);

  /* The reference, from the definition. */
  qsort(evs, (size_t)n, sizeof *evs, by_user_time);
  char **want = calloc((size_t)n, sizeof *want);
  size_t nw = 0;
  for (long i = 0; i < n;) {
    long j = i + 1;
    while (j < n && evs[j].user == evs[i].user &&
           evs[j].t - evs[j - 1].t <= GAP_MS &&
           evs[j].t - evs[i].t <= MAX_SPAN_MS)
      j++;
    int split = j < n && evs[j].user == evs[i].user &&
                evs[j].t - evs[j - 1].t <= GAP_MS;
    char line[256];
    snprintf(line, sizeof line, "u%d %lld %lld %ld %d", evs[i].user,
             (long long)evs[i].t, (long long)evs[j - 1].t, j - i, split);
    want[nw++] = strdup(line);
    i = j;
  }
  cr_assert_gt(nw, 1000, "the stream should have many sessions (%zu)", nw);
  fprintf(stderr, "reference: %zu sessions from %ld events of %d users\n", nw,
          n, users);

  /* The example pipeline, unchanged but for the brokers. */
  char path[1024], brokers[512];
  snprintf(path, sizeof path, "%s/configs/sessions.yaml", RS_SOURCE_DIR);
  snprintf(brokers, sizeof brokers, "kafka.brokers=%s", m->bootstraps);
  const char *sets[] = {brokers};
  it_engine_t t;
  cr_assert_eq(it_engine_start(&t, read_file(path), sets, 1, 1), 0, "%s",
               t.err);
  cr_assert_eq(it_engine_join(&t, 0), 0, "%s", t.err);
  cr_assert_eq(rs_engine_counter(t.e, "sessionize", "sessions_closed"),
               (uint64_t)nw);
  cr_assert_eq(rs_engine_counter(t.e, "sessionize", "late_records"), 0);
  cr_assert_eq(rs_engine_counter(t.e, "parse", "dead_lettered"), 0);
  it_engine_free(&t);

  it_msg_t *out;
  size_t ns = it_consume_all(m->bootstraps, "sessions", nw, 60000, &out);
  cr_assert_eq(ns, nw, "sessions topic holds %zu, reference %zu", ns, nw);
  char **got = calloc(ns, sizeof *got);
  for (size_t i = 0; i < ns; i++) {
    json_error_t je;
    json_t *j = json_loadb(out[i].val, out[i].len, 0, &je);
    cr_assert_not_null(j, "%.*s: %s", (int)out[i].len, out[i].val, je.text);
    const char *user = json_string_value(json_object_get(j, "user_id"));
    cr_assert_not_null(user);
    cr_assert_eq(out[i].key_len, strlen(user));
    cr_assert(!memcmp(out[i].key, user, out[i].key_len), "key is the user");
    char line[256];
    snprintf(line, sizeof line, "%s %lld %lld %lld %d", user,
             (long long)json_integer_value(json_object_get(j, "start")),
             (long long)json_integer_value(json_object_get(j, "end")),
             (long long)json_integer_value(json_object_get(j, "events")),
             json_is_true(json_object_get(j, "split")));
    got[i] = strdup(line);
    json_decref(j);
  }
  it_msgs_free(out, ns);
  qsort(want, nw, sizeof *want, cmp_str);
  qsort(got, ns, sizeof *got, cmp_str);
  for (size_t i = 0; i < nw; i++)
    cr_assert_str_eq(got[i], want[i]);

  /* Every generated event came out enriched (the flush records wait for a
   * watermark that never reaches them); nothing was late. */
  size_t ne =
      it_consume_all(m->bootstraps, "session-events", (size_t)n, 60000, &out);
  cr_assert_eq(ne, (size_t)n);
  it_msgs_free(out, ne);
  size_t nl =
      it_consume_all(m->bootstraps, "interactions.late", 0, 30000, &out);
  cr_assert_eq(nl, 0);
  it_msgs_free(out, nl);

  for (size_t i = 0; i < nw; i++) {
    free(want[i]);
    free(got[i]);
  }
  free(want);
  free(got);
  free(evs);
  rs_mock_destroy(m);
}

Test(sessionize_pipeline, example_config_validates) {
  char path[1024], err[1024];
  snprintf(path, sizeof path, "%s/configs/sessions.yaml", RS_SOURCE_DIR);
  rs_config_t *cfg = NULL;
  rs_registry_t *reg = NULL;
  rs_graph_t *g = NULL;
  unsetenv("KAFKA_BROKERS");
  cr_assert_eq(rs_config_load(path, NULL, 0, &cfg, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(rs_registry_new(&reg, err, sizeof err), 0, "%s", err);
  cr_assert_eq(rs_graph_build(cfg, reg, &g, err, sizeof err), 0, "%s", err);
  /* The three ports go to three sinks. */
  cr_assert_eq(cfg->n_sinks, 3);
  cr_assert_str_eq(cfg->sinks[1].input, "sessionize.sessions");
  rs_graph_destroy(g);
  /* A wrong port is refused with the ports listed. */
  const char *bad[] = {"sinks.late.input=sessionize.lat"};
  rs_config_t *cfg2 = NULL;
  cr_assert_eq(rs_config_load(path, bad, 1, &cfg2, err, sizeof err), 0, "%s",
               err);
  cr_assert_neq(rs_graph_build(cfg2, reg, &g, err, sizeof err), 0);
  cr_assert(strstr(err, "ports: out, sessions, late") != NULL, "%s", err);
  rs_config_destroy(cfg2);
  rs_registry_destroy(reg);
  rs_config_destroy(cfg);
}
