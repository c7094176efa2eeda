/* An A/B experiment on the embedded broker: parse -> mf -> topn with
 * mf and topn split into variants A (n: 5) and B (n: 2, weight 2). Every
 * recommendation carries the variant its user hashes to, B's lists are
 * never longer than 2 while A's are longer (the override reached B's
 * instance only), the emissions counter sums both instances, /metrics
 * labels the instances' counters by variant, `recstream report`'s reading
 * of the topics counts per variant the impressions and the clicks given
 * to them on a feedback topic, and a restart with another split of the
 * same state directory is refused. */
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "experiments.h"
#include "itest.h"
#include "metrics.h"
#include "report.h"
#include "util.h"

static const char *const topics[] = {"in", "in.dlq", "recs", "fb", NULL};

static const char yaml[] =
    "app: itest-ab\n"
    "kafka: { brokers: embedded }\n"
    "state: { commit_interval: 200ms }\n"
    "sources: [ { name: in, topic: in } ]\n"
    "operators:\n"
    "  - { name: parse, type: parse, input: in, format: avro }\n"
    "  - { name: mf, type: mf_update, input: parse, k: 8, min_user_events: "
    "2 }\n"
    "  - { name: topn, type: topn_emit, input: mf, model: mf, n: 5 }\n"
    "sinks: [ { name: out, input: topn, topic: recs, format: avro } ]\n"
    "experiments:\n"
    "  - name: ab\n"
    "    salt: itest\n"
    "    operators: [mf, topn]\n"
    "    variants:\n"
    "      - { name: A, weight: 1 }\n"
    "      - { name: B, weight: 2, overrides: { topn: { n: 2 } } }\n";

static void *alloc(void *opaque, size_t n) {
  (void)opaque;
  return rs_malloc(n);
}

Test(experiments_pipeline, variants_follow_the_users_hash, .timeout = 120) {
  rs_mock_t *m = it_cluster(1, 2, topics);
  cr_assert_not_null(m);
  const long total = 1200;
  cr_assert_eq(it_produce(m->bootstraps, "in", total, 40, 0, "avro"), 0);
  char brokers[512];
  snprintf(brokers, sizeof brokers, "kafka.brokers=%s", m->bootstraps);
  const char *sets[] = {brokers};
  it_engine_t t;
  cr_assert_eq(it_engine_start(&t, yaml, sets, 1, 1), 0, "%s", t.err);
  cr_assert_eq(it_engine_join(&t, 0), 0, "%s", t.err);
  cr_assert_eq(rs_engine_counter(t.e, "topn", "emissions"), (uint64_t)total);
  const rs_experiment_t *x = &t.graph->exp->x[0];
  rs_metrics_snapshot_t s;
  cr_assert_eq(rs_engine_snapshot(t.e, &s), 0);
  rs_buf_t mb = {0};
  cr_assert_eq(rs_metrics_render(&s, &mb), 0);
  cr_assert_eq(rs_buf_append(&mb, "", 1), 0);
  cr_assert(strstr(mb.data, "recstream_topn_emit_emissions_total{operator="
                            "\"topn\",type=\"topn_emit\",variant=\"B\"}"),
            "%s", mb.data);
  rs_buf_free(&mb);
  rs_metrics_snapshot_free(&s);

  it_msg_t *out;
  size_t n = it_consume_all(m->bootstraps, "recs", (size_t)total, 60000, &out);
  cr_assert_eq(n, (size_t)total);
  size_t per[2] = {0, 0}, longer_than_2[2] = {0, 0};
  rd_kafka_conf_t *pc = rd_kafka_conf_new();
  char e[256];
  cr_assert_eq(
      rd_kafka_conf_set(pc, "bootstrap.servers", m->bootstraps, e, sizeof e),
      RD_KAFKA_CONF_OK);
  rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, e, sizeof e);
  cr_assert_not_null(p, "%s", e);
  size_t clicks[2] = {0, 0};
  for (size_t i = 0; i < n; i++) {
    rs_recommendation_t r;
    char err[256];
    cr_assert_eq(rs_recommendation_decode(RS_FORMAT_AVRO, out[i].val,
                                          out[i].len, &r, alloc, NULL, err,
                                          sizeof err),
                 0, "%s", err);
    uint32_t v = rs_experiment_assign(x, r.user, r.user_len);
    cr_assert_str_eq(r.variant, x->v[v].name, "user %s", r.user);
    per[v]++;
    longer_than_2[v] += r.n_items > 2;
    /* A click on every third impression. */
    if (i % 3 == 0) {
      char fb[256];
      int len = snprintf(fb, sizeof fb,
                         "{\"user_id\":\"%s\",\"impression_id\":\"%s\","
                         "\"item_id\":\"i1\",\"type\":\"CLICK\","
                         "\"timestamp\":1}",
                         r.user, r.impression_id);
      cr_assert_eq(rd_kafka_producev(p, RD_KAFKA_V_TOPIC("fb"),
                                     RD_KAFKA_V_VALUE(fb, (size_t)len),
                                     RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                     RD_KAFKA_V_END),
                   0);
      clicks[v]++;
    }
    rs_free((void *)r.user);
    rs_free((void *)r.impression_id);
    rs_free((void *)r.variant);
  }
  cr_assert_eq(rd_kafka_flush(p, 30000), 0);
  rd_kafka_destroy(p);
  it_msgs_free(out, n);
  /* 40 users, 1:2: both variants serve someone; only A's lists exceed 2. */
  cr_assert(per[0] > 0 && per[1] > 0, "A %zu, B %zu", per[0], per[1]);
  cr_assert_gt(longer_than_2[0], 0);
  cr_assert_eq(longer_than_2[1], 0);

  rs_report_t *rep = rs_report_new();
  char err[512];
  cr_assert_eq(rs_report_collect(rep, m->bootstraps, "recs", RS_FORMAT_AVRO,
                                 "fb", RS_FORMAT_JSON, 30000, err, sizeof err),
               0, "%s", err);
  const rs_report_variant_t *rv;
  cr_assert_eq(rs_report_variants(rep, &rv), 2);
  for (int v = 0; v < 2; v++) {
    cr_assert_str_eq(rv[v].name, x->v[v].name);
    cr_assert_eq(rv[v].impressions, per[v]);
    cr_assert_eq(rv[v].clicks, clicks[v]);
  }
  rs_report_destroy(rep);
  /* A topic of which nothing decodes in the format given (the wrong topic
   * or format) is an error, not a table of zeros. */
  rep = rs_report_new();
  cr_assert_eq(rs_report_collect(rep, m->bootstraps, "recs", RS_FORMAT_JSON,
                                 "fb", RS_FORMAT_JSON, 30000, err, sizeof err),
               RS_EDECODE);
  cr_assert(strstr(err, "records of topic 'recs' reads as a recommendation in "
                        "json; the wrong topic, or --format?"),
            "%s", err);
  rs_report_destroy(rep);
  rep = rs_report_new();
  cr_assert_eq(rs_report_collect(rep, m->bootstraps, "recs", RS_FORMAT_AVRO,
                                 "fb", RS_FORMAT_AVRO, 30000, err, sizeof err),
               RS_EDECODE);
  cr_assert(strstr(err, "records of topic 'fb' reads as feedback in avro; the "
                        "wrong topic, or --feedback-format?"),
            "%s", err);
  rs_report_destroy(rep);
  /* A mistyped topic is an error, and asking does not create it (the
   * embedded broker creates topics a request names): the second ask
   * fails the same way. */
  for (int k = 0; k < 2; k++) {
    rep = rs_report_new();
    cr_assert_neq(rs_report_collect(rep, m->bootstraps, "recz", RS_FORMAT_AVRO,
                                    "fb", RS_FORMAT_JSON, 5000, err,
                                    sizeof err),
                  0, "ask %d", k);
    cr_assert(strstr(err, "topic 'recz' does not exist"), "%s", err);
    rs_report_destroy(rep);
  }
  it_engine_free(&t);

  /* Another split of the same state directory is refused. */
  char other[sizeof yaml];
  snprintf(other, sizeof other, "%s", yaml);
  memcpy(strstr(other, "weight: 2"), "weight: 3", 9);
  it_engine_t t2;
  cr_assert_neq(it_engine_start(&t2, other, sets, 1, 1), 0);
  cr_assert(strstr(t2.err, "another split"), "%s", t2.err);
  it_engine_free(&t2);
  rs_mock_destroy(m);
}
