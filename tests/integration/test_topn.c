/* parse -> mf_update -> topn_emit -> sink on the embedded broker: the
 * runtime's side of the ABI minor-2 peer calls (topn_emit reads
 * mf_update's column family through the engine's cache) and the
 * recommendation encoder in a sink. Every valid interaction yields one
 * recommendation keyed by its user, with a unique impression id and at
 * most n items the user has not consumed (the history bound is larger
 * than any user's stream here); a config whose `model` names no operator
 * fails to start with a message naming it. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest.h"
#include "util.h"

static const char *const topics[] = {"in", "in.dlq", "recs", NULL};

static const char yaml[] =
    "app: itest-topn\n"
    "kafka: { brokers: embedded }\n"
    "state: { commit_interval: 200ms }\n"
    "sources: [ { name: in, topic: in } ]\n"
    "operators:\n"
    "  - { name: parse, type: parse, input: in, format: avro }\n"
    /* topn before the model it reads: every instance exists before the
     * first init(), so the order of declaration does not matter. */
    "  - { name: topn, type: topn_emit, input: mf, model: mf, n: 5 }\n"
    "  - { name: mf, type: mf_update, input: parse, k: 8, min_user_events: "
    "2 }\n"
    "sinks: [ { name: out, input: topn, topic: recs, format: json } ]\n";

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

Test(topn_pipeline, every_interaction_yields_a_recommendation, .timeout = 180) {
  rs_mock_t *m = it_cluster(1, 2, topics);
  cr_assert_not_null(m);
  const long total = 3000;
  const int users = 50;
  cr_assert_eq(it_produce(m->bootstraps, "in", total, users, 0, "avro"), 0);
  char brokers[512];
  snprintf(brokers, sizeof brokers, "kafka.brokers=%s", m->bootstraps);
  const char *sets[] = {brokers};
  it_engine_t t;
  cr_assert_eq(it_engine_start(&t, yaml, sets, 1, 1), 0, "%s", t.err);
  cr_assert_eq(it_engine_join(&t, 0), 0, "%s", t.err);
  cr_assert_eq(rs_engine_counter(t.e, "topn", "emissions"), (uint64_t)total);
  cr_assert_gt(rs_engine_counter(t.e, "topn", "exact_scanned"), 0);
  it_engine_free(&t);

  it_msg_t *out;
  size_t n = it_consume_all(m->bootstraps, "recs", (size_t)total, 60000, &out);
  cr_assert_eq(n, (size_t)total, "recs holds %zu records", n);
  char **imps = calloc(n, sizeof(char *));
  size_t with_items = 0;
  for (size_t i = 0; i < n; i++) {
    json_error_t je;
    json_t *j = json_loadb(out[i].val, out[i].len, 0, &je);
    cr_assert_not_null(j, "%.*s: %s", (int)out[i].len, out[i].val, je.text);
    const char *user = json_string_value(json_object_get(j, "user_id"));
    cr_assert_not_null(user);
    cr_assert_eq(strlen(user), out[i].key_len);
    cr_assert(!memcmp(user, out[i].key, out[i].key_len), "key is the user");
    imps[i] = rs_strdup(json_string_value(json_object_get(j, "impression_id")));
    json_t *items = json_object_get(j, "items");
    cr_assert_leq(json_array_size(items), 5);
    with_items += json_array_size(items) > 0;
    /* it_produce: event k is user k % users, item (k * 7919) % 1000,
     * time base + k. Items of the user's events up to this one are
     * consumed and must not be recommended. */
    long u = atol(user + 1);
    long k0 = (long)(json_integer_value(json_object_get(j, "timestamp")) -
                     1767225600000LL);
    cr_assert(k0 >= 0 && k0 < total && k0 % users == u, "k0 %ld", k0);
    for (size_t x = 0; x < json_array_size(items); x++) {
      json_t *it = json_array_get(items, x);
      const char *name = json_string_value(json_object_get(it, "item_id"));
      cr_assert_not_null(name);
      cr_assert_eq(json_number_value(json_object_get(it, "propensity")), 1.0);
      for (long e = u; e <= k0; e += users) {
        char mine[32];
        snprintf(mine, sizeof mine, "i%ld", (e * 7919) % 1000);
        cr_assert_str_neq(mine, name,
                          "user %s was recommended %s, consumed "
                          "at event %ld (emission at %ld)",
                          user, name, e, k0);
      }
    }
    json_decref(j);
  }
  cr_assert_gt(with_items, n / 2);
  qsort(imps, n, sizeof(char *), cmp_str);
  for (size_t i = 1; i < n; i++)
    cr_assert_str_neq(imps[i - 1], imps[i], "impression id repeated");
  for (size_t i = 0; i < n; i++)
    rs_free(imps[i]);
  free(imps);
  it_msgs_free(out, n);

  /* A model that is not there. */
  char bad_yaml[sizeof yaml + 16];
  snprintf(bad_yaml, sizeof bad_yaml, "%s", yaml);
  char *at = strstr(bad_yaml, "model: mf");
  cr_assert_not_null(at);
  memcpy(at, "model: xx", 9);
  it_engine_t t2;
  int rc = it_engine_start(&t2, bad_yaml, sets, 1, 1);
  cr_assert_neq(rc, 0);
  cr_assert(strstr(t2.err, "'xx'"), "%s", t2.err);
  it_engine_free(&t2);
  rs_mock_destroy(m);
}

Test(topn_pipeline, example_config_validates) {
  char path[1024], err[1024];
  snprintf(path, sizeof path, "%s/configs/recommend.yaml", RS_SOURCE_DIR);
  rs_config_t *cfg = NULL;
  rs_registry_t *reg = NULL;
  rs_graph_t *g = NULL;
  unsetenv("KAFKA_BROKERS");
  cr_assert_eq(rs_config_load(path, NULL, 0, &cfg, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(rs_registry_new(&reg, err, sizeof err), 0, "%s", err);
  cr_assert_eq(rs_graph_build(cfg, reg, &g, err, sizeof err), 0, "%s", err);
  cr_assert_eq(cfg->n_sinks, 1);
  cr_assert_str_eq(cfg->sinks[0].input, "topn");
  rs_graph_destroy(g);
  rs_registry_destroy(reg);
  rs_config_destroy(cfg);
}

/* parse -> sessionize -> mf_update -> topn_emit with sessionize's
 * `sessions` port as topn_emit's second input and on_interaction: false:
 * one recommendation per closed session, none per interaction. Each user's
 * events are 50 ms apart and the gap 20 ms, so every event closes a
 * session once the watermark passes it. */
static const char session_yaml[] =
    "app: itest-topn-s\n"
    "kafka: { brokers: embedded }\n"
    "state: { commit_interval: 200ms }\n"
    "sources: [ { name: in, topic: in } ]\n"
    "operators:\n"
    "  - { name: parse, type: parse, input: in, format: avro }\n"
    "  - { name: sess, type: sessionize, input: parse, gap: 20ms, grace: 0ms,"
    " max_out_of_orderness: 0ms }\n"
    "  - { name: mf, type: mf_update, input: sess, k: 8, min_user_events: 2 }\n"
    "  - { name: topn, type: topn_emit, inputs: [mf, sess.sessions], model: mf,"
    " n: 5, on_interaction: false }\n"
    "sinks: [ { name: out, input: topn, topic: recs, format: json } ]\n";

Test(topn_pipeline, closed_sessions_trigger_recommendations, .timeout = 180) {
  rs_mock_t *m = it_cluster(1, 2, topics);
  cr_assert_not_null(m);
  const long total = 2000;
  cr_assert_eq(it_produce(m->bootstraps, "in", total, 50, 0, "avro"), 0);
  char brokers[512];
  snprintf(brokers, sizeof brokers, "kafka.brokers=%s", m->bootstraps);
  const char *sets[] = {brokers};
  it_engine_t t;
  cr_assert_eq(it_engine_start(&t, session_yaml, sets, 1, 1), 0, "%s", t.err);
  cr_assert_eq(it_engine_join(&t, 0), 0, "%s", t.err);
  uint64_t closed = rs_engine_counter(t.e, "sess", "sessions_closed");
  uint64_t emitted = rs_engine_counter(t.e, "topn", "emissions");
  cr_assert_gt(closed, (uint64_t)total / 2, "%llu sessions closed",
               (unsigned long long)closed);
  cr_assert_eq(emitted, closed);
  it_engine_free(&t);
  it_msg_t *out;
  size_t n = it_consume_all(m->bootstraps, "recs", (size_t)closed, 60000, &out);
  cr_assert_eq(n, (size_t)closed);
  size_t warm = 0;
  for (size_t i = 0; i < n; i++) {
    json_error_t je;
    json_t *j = json_loadb(out[i].val, out[i].len, 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    const char *imp = json_string_value(json_object_get(j, "impression_id"));
    cr_assert(imp && strstr(imp, "-s"), "%s", imp ? imp : "(none)");
    const char *user = json_string_value(json_object_get(j, "user_id"));
    cr_assert(user && strlen(user) == out[i].key_len &&
              !memcmp(user, out[i].key, out[i].key_len));
    warm += json_array_size(json_object_get(j, "items")) > 0;
    json_decref(j);
  }
  cr_assert_gt(warm, n / 2);
  it_msgs_free(out, n);
  rs_mock_destroy(m);
}
