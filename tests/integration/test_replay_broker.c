/* The time seek of `recstream replay` against a real Kafka broker, where
 * rd_kafka_offsets_for_times answers from the broker's time index (the
 * embedded broker answers -1 to every time, so test_replay.c only covers
 * the binary-search fallback; the decision on an answer is unit-tested in
 * tests/unit/test_replay_pos.c).
 *
 * Runs when RS_TEST_KAFKA_BROKERS names a broker (host:port,...; Kafka >=
 * 0.10.1, topic creation allowed), and is skipped with that said
 * otherwise. It creates a topic of its own (recstream-seek-test-<time>-
 * <pid>, CreateTime timestamps), writes 2,000 records whose timestamps are
 * out of offset order and all distinct (RS_TEST_KAFKA_TOPIC: use that
 * existing topic instead, whose partition 0 must be empty, and keep it),
 * and checks for many times that the
 * broker's answer is used (no probe) and equals a brute-force scan, and
 * that the fallback search agrees with it on the same topic. The topic is
 * deleted at the end.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "replay.h"

static rd_kafka_t *client(rd_kafka_type_t type, const char *brokers) {
  char e[512];
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  cr_assert_eq(rd_kafka_conf_set(c, "bootstrap.servers", brokers, e, sizeof e),
               RD_KAFKA_CONF_OK, "%s", e);
  if (type == RD_KAFKA_CONSUMER) {
    rd_kafka_conf_set(c, "enable.partition.eof", "true", e, sizeof e);
    rd_kafka_conf_set(c, "fetch.wait.max.ms", "10", e, sizeof e);
  }
  rd_kafka_t *rk = rd_kafka_new(type, c, e, sizeof e);
  cr_assert_not_null(rk, "%s", e);
  return rk;
}

/* Waits for the admin result event of the request just sent on q; the
 * first topic's error (0 when none), its message in e. */
static rd_kafka_resp_err_t admin_wait(rd_kafka_queue_t *q,
                                      rd_kafka_event_type_t t, char *e,
                                      size_t e_size) {
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
  cr_assert_not_null(ev, "no answer from the broker in 60 s");
  rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
  snprintf(e, e_size, "%s", err ? rd_kafka_event_error_string(ev) : "");
  const rd_kafka_topic_result_t **res = NULL;
  size_t n = 0;
  if (!err && t == RD_KAFKA_EVENT_CREATETOPICS_RESULT)
    res = rd_kafka_CreateTopics_result_topics(
        rd_kafka_event_CreateTopics_result(ev), &n);
  else if (!err && t == RD_KAFKA_EVENT_DELETETOPICS_RESULT)
    res = rd_kafka_DeleteTopics_result_topics(
        rd_kafka_event_DeleteTopics_result(ev), &n);
  if (!err && n > 0 && rd_kafka_topic_result_error(res[0])) {
    err = rd_kafka_topic_result_error(res[0]);
    snprintf(e, e_size, "%s", rd_kafka_topic_result_error_string(res[0]));
  }
  rd_kafka_event_destroy(ev);
  return err;
}

Test(replay_broker, offsets_for_times_answer_is_used_and_agrees_with_a_scan,
     .timeout = 300) {
  const char *brokers = getenv("RS_TEST_KAFKA_BROKERS");
  if (!brokers || !*brokers)
    cr_skip_test("RS_TEST_KAFKA_BROKERS is not set: the offsets_for_times "
                 "path of the time seek needs a real Kafka broker (the "
                 "embedded one answers -1); set it to host:port to run this");
  char topic[256], e[512];
  const char *given = getenv("RS_TEST_KAFKA_TOPIC");
  if (given && *given)
    snprintf(topic, sizeof topic, "%s", given);
  else
    snprintf(topic, sizeof topic, "recstream-seek-test-%lld-%d",
             (long long)time(NULL), (int)getpid());

  rd_kafka_t *p = client(RD_KAFKA_PRODUCER, brokers);
  rd_kafka_queue_t *q = rd_kafka_queue_new(p);
  if (!given || !*given) {
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, 1, 1, e, sizeof e);
    cr_assert_not_null(nt, "%s", e);
    cr_assert_eq(rd_kafka_NewTopic_set_config(nt, "message.timestamp.type",
                                              "CreateTime"),
                 0);
    rd_kafka_CreateTopics(p, &nt, 1, NULL, q);
    rd_kafka_NewTopic_destroy(nt);
    cr_assert_eq(
        admin_wait(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT, e, sizeof e), 0,
        "creating topic %s on %s: %s (set RS_TEST_KAFKA_TOPIC to an empty "
        "topic to use instead)",
        topic, brokers, e);
  }

  /* Out of offset order by up to 20 records, and distinct (i + j equal
   * for two records means |di| <= 20 < 100, so i % 100 differs). */
  const int n = 2000;
  const int64_t base = 1767225600000LL;
  int64_t *ts = calloc((size_t)n, sizeof *ts);
  cr_assert_not_null(ts);
  for (int i = 0; i < n; i++) {
    ts[i] = base + (int64_t)(i + (i * 7919) % 41 - 20) * 100 + i % 100;
    rd_kafka_resp_err_t err;
    while ((err = rd_kafka_producev(
                p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                RD_KAFKA_V_VALUE("x", 1), RD_KAFKA_V_TIMESTAMP(ts[i]),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
      rd_kafka_poll(p, 10);
    cr_assert_eq(err, 0, "%s", rd_kafka_err2str(err));
  }
  cr_assert_eq(rd_kafka_flush(p, 60000), 0);

  rd_kafka_t *c = client(RD_KAFKA_CONSUMER, brokers);
  int64_t lo = -1, hi = -1;
  cr_assert_eq(rd_kafka_query_watermark_offsets(c, topic, 0, &lo, &hi, 10000),
               0);
  cr_assert_eq(lo, 0, "%s [0] was not empty", topic);
  cr_assert_eq(hi, n, "%s [0] was not empty", topic);
  unsigned seed = 4242;
  int answered = 0;
  for (int k = 0; k < 24; k++) {
    int64_t t;
    if (k == 0)
      t = base - 100000; /* before every record */
    else if (k == 1)
      t = base + (int64_t)n * 100 + 10000; /* after every record */
    else if (k < 8)
      t = ts[rand_r(&seed) % n]; /* a record's own time */
    else
      t = base - 3000 + (int64_t)(rand_r(&seed) % (n * 100 + 6000));
    int64_t want = n;
    for (int i = 0; i < n; i++)
      if (ts[i] >= t) {
        want = i;
        break;
      }
    /* The broker's answer; the fallback only every fourth time (a probe
     * is a fetch round trip). */
    for (int ask = 1; ask >= (k % 4 ? 1 : 0); ask--) {
      int64_t got = -7;
      rs_seek_stats_t st;
      cr_assert_eq(rs_seek_time(c, topic, 0, lo, hi, t, 100, ask, &got, &st, e,
                                sizeof e),
                   0, "%s", e);
      cr_assert_eq(got, want, "time %lld (ask broker %d): %lld, want %lld",
                   (long long)t, ask, (long long)got, (long long)want);
      if (ask && want < n) {
        /* A record that late exists: the broker knows it, no search. */
        cr_assert_eq(st.broker_answered, 1,
                     "time %lld: the broker's answer was not used",
                     (long long)t);
        cr_assert_eq(st.probes, 0);
        answered++;
      }
      if (!ask)
        cr_assert_eq(st.broker_answered, 0);
    }
  }
  cr_assert_gt(answered, 0);
  rd_kafka_destroy(c);
  free(ts);

  if (!given || !*given) {
    rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(topic);
    rd_kafka_DeleteTopics(p, &dt, 1, NULL, q);
    rd_kafka_DeleteTopic_destroy(dt);
    if (admin_wait(q, RD_KAFKA_EVENT_DELETETOPICS_RESULT, e, sizeof e))
      cr_log_warn("topic %s was not deleted: %s", topic, e);
  }
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(p);
}
