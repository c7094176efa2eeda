/* The closed loop on the embedded broker: parse -> mf_update -> topn_emit
 * -> bandit_reward, with feedback as a second source feeding bandit_reward
 * and mf_update. Phase 1 runs the interactions: one explored list per
 * interaction, propensities in (0, 1]. Phase 2 (same state) reads feedback
 * naming the first slot of some of those impressions, plus one late record
 * per partition that closes every reward window: one reward per click, one
 * default reward per other impression, and mf_update learns the clicks. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest.h"
#include "util.h"

static const char *const topics[] = {"in",      "fb",  "recs",
                                     "rewards", "unm", NULL};

static const char yaml[] =
    "app: itest-bandit\n"
    "kafka: { brokers: embedded }\n"
    "state: { commit_interval: 200ms }\n"
    "sources: [ { name: in, topic: in }, { name: fb, topic: fb } ]\n"
    "operators:\n"
    "  - { name: parse, type: parse, input: in, format: avro }\n"
    "  - { name: pfb, type: parse, input: fb, format: json, record: "
    "feedback }\n"
    "  - { name: mf, type: mf_update, inputs: [parse, pfb], k: 8, "
    "objective: isgd }\n"
    "  - { name: topn, type: topn_emit, input: mf, model: mf, n: 8 }\n"
    "  - { name: bandit, type: bandit_reward, inputs: [topn, pfb], policy: "
    "thompson, slots: 4, reward_window: 1h }\n"
    "sinks:\n"
    "  - { name: o1, input: bandit.recommendations, topic: recs, format: "
    "json }\n"
    "  - { name: o2, input: bandit.rewards, topic: rewards, format: json }\n"
    "  - { name: o3, input: bandit.unmatched, topic: unm, format: json }\n";

static void produce_fb(rd_kafka_t *p, const char *user, size_t user_len,
                       const char *imp, const char *item, long long ts,
                       int32_t part, const char *type) {
  char val[512];
  int n = snprintf(val, sizeof val,
                   "{\"user_id\":\"%.*s\",\"impression_id\":\"%s\","
                   "\"item_id\":\"%s\",\"type\":\"%s\",\"value\":1,"
                   "\"timestamp\":%lld}",
                   (int)user_len, user, imp, item, type, ts);
  rd_kafka_resp_err_t e;
  while ((e = rd_kafka_producev(
              p, RD_KAFKA_V_TOPIC("fb"), RD_KAFKA_V_PARTITION(part),
              RD_KAFKA_V_KEY(user, user_len), RD_KAFKA_V_VALUE(val, (size_t)n),
              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
         RD_KAFKA_RESP_ERR__QUEUE_FULL)
    rd_kafka_poll(p, 10);
  cr_assert_eq(e, 0, "%s", rd_kafka_err2str(e));
}

Test(bandit_pipeline, closed_loop_rewards, .timeout = 120) {
  rs_mock_t *m = it_cluster(1, 2, topics);
  cr_assert_not_null(m);
  const long total = 400;
  cr_assert_eq(it_produce(m->bootstraps, "in", total, 20, 0, "avro"), 0);
  char brokers[512];
  snprintf(brokers, sizeof brokers, "kafka.brokers=%s", m->bootstraps);
  const char *sets[] = {brokers};
  it_engine_t t;
  cr_assert_eq(it_engine_start(&t, yaml, sets, 1, 1), 0, "%s", t.err);
  cr_assert_eq(it_engine_join(&t, 0), 0, "%s", t.err);
  cr_assert_eq(rs_engine_counter(t.e, "bandit", "impressions"),
               (uint64_t)total);
  it_engine_free(&t);

  it_msg_t *out;
  size_t n = it_consume_all(m->bootstraps, "recs", (size_t)total, 60000, &out);
  cr_assert_eq(n, (size_t)total);
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", m->bootstraps, err, sizeof err);
  rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  cr_assert_not_null(p, "%s", err);
  long clicks = 0, with_items = 0;
  long long max_ts = 0;
  for (size_t i = 0; i < n; i++) {
    json_error_t je;
    json_t *j = json_loadb(out[i].val, out[i].len, 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    json_t *items = json_object_get(j, "items");
    cr_assert_leq(json_array_size(items), 4);
    long long ts = json_integer_value(json_object_get(j, "timestamp"));
    max_ts = ts > max_ts ? ts : max_ts;
    for (size_t x = 0; x < json_array_size(items); x++) {
      double pr = json_number_value(
          json_object_get(json_array_get(items, x), "propensity"));
      cr_assert(pr > 0 && pr <= 1, "propensity %g", pr);
    }
    if (json_array_size(items) > 0) {
      with_items++;
      if (i % 3 == 0) {
        produce_fb(p, out[i].key, out[i].key_len,
                   json_string_value(json_object_get(j, "impression_id")),
                   json_string_value(
                       json_object_get(json_array_get(items, 0), "item_id")),
                   ts + 5, out[i].partition, "CLICK");
        clicks++;
      }
    }
    json_decref(j);
  }
  /* One record per partition two hours later closes every window; it
   * names no impression (an id bandit_reward has not seen would wait for
   * its impression), so it is unmatched at once. */
  for (int32_t part = 0; part < 2; part++)
    produce_fb(p, "flush", 5, "", "none", max_ts + 7200000, part,
               "DISMISS"); /* teaches mf_update nothing */
  cr_assert_eq(rd_kafka_flush(p, 30000), 0);
  rd_kafka_destroy(p);
  it_msgs_free(out, n);
  cr_assert_gt(clicks, 50);

  cr_assert_eq(it_engine_start(&t, yaml, sets, 1, 1), 0, "%s", t.err);
  cr_assert_eq(it_engine_join(&t, 0), 0, "%s", t.err);
  cr_assert_eq(rs_engine_counter(t.e, "bandit", "clicks"), (uint64_t)clicks);
  cr_assert_eq(rs_engine_counter(t.e, "bandit", "unmatched_feedback"), 2);
  cr_assert_eq(rs_engine_counter(t.e, "bandit", "default_rewards"),
               (uint64_t)(total - clicks));
  cr_assert_eq(rs_engine_counter(t.e, "bandit", "ips_impressions"),
               (uint64_t)total);
  cr_assert_eq(rs_engine_counter(t.e, "mf", "learned"), (uint64_t)clicks);
  it_engine_free(&t);
  n = it_consume_all(m->bootstraps, "rewards", (size_t)total, 60000, &out);
  cr_assert_eq(n, (size_t)total, "rewards holds %zu", n);
  size_t defaults = 0;
  for (size_t i = 0; i < n; i++) {
    json_t *j = json_loadb(out[i].val, out[i].len, 0, NULL);
    cr_assert_not_null(j);
    defaults += json_is_true(json_object_get(j, "default_reward"));
    json_decref(j);
  }
  cr_assert_eq(defaults, (size_t)(total - clicks));
  it_msgs_free(out, n);
  rs_mock_destroy(m);
}
