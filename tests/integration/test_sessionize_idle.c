/* sessionize's idle_close through the whole engine on the embedded broker:
 * the runtime's idle timer (host->idle_notify) delivers an idle batch once
 * an input partition has run nothing for idle_close of wall-clock time,
 * and the summaries it makes reach the sink topic like any output.
 *
 * One engine, two sessionize operators reading the same parse: `idle`
 * with idle_close 1s and `plain` without. Two partitions: three events of
 * u0 go to partition 0, one of u1 to partition 1, and nothing more, so no
 * watermark ever passes those sessions. The test waits (bounded,
 * generously: a wait for a result, not a timing claim) for idle's two
 * summaries; then one more record of u0 on partition 0, later than the
 * stepped watermark, must give a third (the record re-armed partition 0's
 * idle clock). Idle batches come once per idle period and partition:
 * exactly three (partition 1, idle all along, gets no second one when the
 * timer fires for partition 0). The input offsets are committed past
 * them. plain, which saw the same records, asked for no idle batches: u0's
 * first session closes only when the later record moves partition 0's
 * watermark, with the summary the idle close made; the others stay open. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "itest.h"
#include "util.h"

#define BASE 1767225600000LL
#define LATER (BASE + 2 * 3600 * 1000) /* past end + 30m + 1m + 1 */

static const char *const topics[] = {"interactions", "interactions.dlq",
                                     "sessions-idle", "sessions-plain", NULL};

static const char *const yaml =
    "app: idle\n"
    "kafka: { brokers: embedded }\n"
    "state: { commit_interval: 500ms }\n"
    "sources:\n"
    "  - { name: interactions, topic: interactions }\n"
    "operators:\n"
    "  - { name: parse, type: parse, input: interactions, format: avro }\n"
    "  - { name: idle, type: sessionize, input: parse, gap: 30m, grace: 1m,\n"
    "      idle_close: 1s }\n"
    "  - { name: plain, type: sessionize, input: parse, gap: 30m, grace: 1m }\n"
    "sinks:\n"
    "  - { name: s-idle, input: idle.sessions, topic: sessions-idle,\n"
    "      format: json }\n"
    "  - { name: s-plain, input: plain.sessions, topic: sessions-plain,\n"
    "      format: json }\n";

typedef struct {
  const char *bootstrap;
  const char *topic;
  int64_t want;
} end_arg_t;

/* Records in both partitions of a->topic reach a->want. */
static int has_records(void *arg) {
  const end_arg_t *a = arg;
  int64_t n = 0;
  for (int32_t p = 0; p < 2; p++) {
    int64_t e = it_end_offset(a->bootstrap, a->topic, p);
    n += e > 0 ? e : 0;
  }
  return n >= a->want;
}

/* Avro interactions of `user` at event times ts[0..n) into `partition`. */
static void produce(const char *bootstrap, int32_t partition, const char *user,
                    const int64_t *ts, size_t n) {
  char err[512];
  rd_kafka_conf_t *pc = rd_kafka_conf_new();
  rd_kafka_conf_set(pc, "bootstrap.servers", bootstrap, err, sizeof err);
  rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof err);
  cr_assert_not_null(p, "%s", err);
  rs_codec_t *codec;
  cr_assert_eq(rs_codec_new(&codec, NULL, err, sizeof err), 0, "%s", err);
  rs_buf_t b = {0};
  for (size_t i = 0; i < n; i++) {
    rs_interaction_t ia = {.user = user,
                           .user_len = (uint32_t)strlen(user),
                           .item = "i9",
                           .item_len = 2,
                           .event_type = RS_EVENT_CLICK,
                           .timestamp_ms = ts[i]};
    rs_buf_reset(&b);
    cr_assert_eq(
        rs_codec_encode(codec, RS_FORMAT_AVRO, &ia, 1, &b, err, sizeof err), 0,
        "%s", err);
    cr_assert_eq(rd_kafka_producev(p, RD_KAFKA_V_TOPIC("interactions"),
                                   RD_KAFKA_V_PARTITION(partition),
                                   RD_KAFKA_V_KEY(user, strlen(user)),
                                   RD_KAFKA_V_VALUE(b.data, b.len),
                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                   RD_KAFKA_V_END),
                 0);
  }
  cr_assert_eq(rd_kafka_flush(p, 30000), 0);
  rd_kafka_destroy(p);
  rs_buf_free(&b);
  rs_codec_destroy(codec);
}

/* "user start end events" of a JSON summary. */
static void describe(const it_msg_t *m, char *buf, size_t size) {
  json_error_t je;
  json_t *j = json_loadb(m->val, m->len, 0, &je);
  cr_assert_not_null(j, "%.*s: %s", (int)m->len, m->val, je.text);
  snprintf(buf, size, "%s %lld %lld %lld",
           json_string_value(json_object_get(j, "user_id")),
           (long long)(json_integer_value(json_object_get(j, "start")) - BASE),
           (long long)(json_integer_value(json_object_get(j, "end")) - BASE),
           (long long)json_integer_value(json_object_get(j, "events")));
  json_decref(j);
}

Test(sessionize_idle, idle_partitions_close_their_sessions_on_the_sink_topic,
     .timeout = 120) {
  rs_mock_t *m = it_cluster(1, 2, topics);
  cr_assert_not_null(m);
  const int64_t t0[] = {BASE, BASE + 1, BASE + 2}, t1[] = {BASE + 1},
                t2[] = {LATER};
  produce(m->bootstraps, 0, "u0", t0, 3);
  produce(m->bootstraps, 1, "u1", t1, 1);
  char brokers[512];
  snprintf(brokers, sizeof brokers, "kafka.brokers=%s", m->bootstraps);
  const char *sets[] = {brokers};
  it_engine_t t;
  cr_assert_eq(it_engine_start(&t, yaml, sets, 1, 0), 0, "%s", t.err);

  end_arg_t a = {m->bootstraps, "sessions-idle", 2};
  int got = it_wait(has_records, &a, 20000);
  if (got) {
    produce(m->bootstraps, 0, "u0", t2, 1);
    a.want = 3;
    got = it_wait(has_records, &a, 20000) ? 2 : 1;
  }
  cr_assert_eq(it_engine_join(&t, 1), 0, "%s", t.err);
  cr_assert(got, "no two summaries on sessions-idle within 20 s");
  cr_assert_eq(got, 2, "no third summary within 20 s of the later record");
  cr_assert_eq(rs_engine_counter(t.e, "idle", "sessions_closed"), 3);
  cr_assert_eq(rs_engine_counter(t.e, "idle", "idle_batches"), 3,
               "once per idle period and partition");
  cr_assert_eq(rs_engine_counter(t.e, "idle", "late_records"), 0);
  cr_assert_eq(rs_engine_counter(t.e, "plain", "records_in"), 5);
  cr_assert_eq(rs_engine_counter(t.e, "plain", "sessions_closed"), 1);
  cr_assert_eq(rs_engine_counter(t.e, "plain", "idle_batches"), 0);
  it_engine_free(&t);
  /* The idle batches' outputs were tracked like a run's: the input
   * positions were committed past them once they were acknowledged. */
  cr_assert_eq(it_committed(m->bootstraps, "idle", "interactions", 0), 4);
  cr_assert_eq(it_committed(m->bootstraps, "idle", "interactions", 1), 1);

  it_msg_t *out;
  size_t n = it_consume_all(m->bootstraps, "sessions-idle", 3, 20000, &out);
  cr_assert_eq(n, 3, "three summaries, got %zu", n);
  int seen = 0;
  size_t first = n;
  for (size_t i = 0; i < n; i++) {
    char d[256];
    describe(&out[i], d, sizeof d);
    if (!strcmp(d, "u0 0 2 3")) {
      seen |= 1;
      first = i;
    } else if (!strcmp(d, "u1 1 1 1")) {
      seen |= 2;
    } else if (!strcmp(d, "u0 7200000 7200000 1")) {
      seen |= 4;
    } else {
      cr_assert_fail("unexpected summary %s", d);
    }
  }
  cr_assert_eq(seen, 7);
  /* Without idle_close, u0's first session closed by event time only,
   * with the summary the idle close made. */
  it_msg_t *plain;
  size_t np = it_consume_all(m->bootstraps, "sessions-plain", 1, 10000, &plain);
  cr_assert_eq(np, 1, "plain: one summary, got %zu", np);
  cr_assert_eq(plain[0].len, out[first].len);
  cr_assert(!memcmp(plain[0].val, out[first].val, plain[0].len), "%.*s vs %.*s",
            (int)plain[0].len, plain[0].val, (int)out[first].len,
            out[first].val);
  it_msgs_free(plain, np);
  it_msgs_free(out, n);
  rs_mock_destroy(m);
}
