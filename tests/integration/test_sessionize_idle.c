/* sessionize's idle_close through the whole engine on the embedded broker:
 * the runtime's idle timer (host->idle_notify) delivers an idle batch once
 * the input partition has run nothing for idle_close of wall-clock time,
 * and the summaries it makes reach the sink topic like any output.
 *
 * One engine, two sessionize operators reading the same parse: `idle`
 * with idle_close 1s and `plain` without. Three events of one user go in
 * and nothing more, so no watermark ever passes the session. The test
 * waits (bounded, generously: a wait for a result, not a timing claim)
 * for idle's summary on its topic, checks it, and checks that plain,
 * which saw the same records, closed nothing and asked for no idle
 * batches. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "itest.h"

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
} end_arg_t;

static int has_record(void *arg) {
  const end_arg_t *a = arg;
  return it_end_offset(a->bootstrap, a->topic, 0) > 0;
}

Test(sessionize_idle, idle_partition_closes_its_session_on_the_sink_topic,
     .timeout = 120) {
  rs_mock_t *m = it_cluster(1, 1, topics);
  cr_assert_not_null(m);
  cr_assert_eq(it_produce(m->bootstraps, "interactions", 3, 1, 0, "avro"), 0);
  char brokers[512];
  snprintf(brokers, sizeof brokers, "kafka.brokers=%s", m->bootstraps);
  const char *sets[] = {brokers};
  it_engine_t t;
  cr_assert_eq(it_engine_start(&t, yaml, sets, 1, 0), 0, "%s", t.err);

  end_arg_t a = {m->bootstraps, "sessions-idle"};
  int got = it_wait(has_record, &a, 20000);
  cr_assert_eq(it_engine_join(&t, 1), 0, "%s", t.err);
  cr_assert(got, "no session summary on sessions-idle within 20 s");
  cr_assert_eq(rs_engine_counter(t.e, "idle", "sessions_closed"), 1);
  cr_assert_geq(rs_engine_counter(t.e, "idle", "idle_batches"), 1);
  cr_assert_eq(rs_engine_counter(t.e, "plain", "records_in"), 3);
  cr_assert_eq(rs_engine_counter(t.e, "plain", "sessions_closed"), 0);
  cr_assert_eq(rs_engine_counter(t.e, "plain", "idle_batches"), 0);
  it_engine_free(&t);
  /* The idle batch's output was tracked like a run's: the input position
   * was committed past it once it was acknowledged. */
  cr_assert_eq(it_committed(m->bootstraps, "idle", "interactions", 0), 3);

  it_msg_t *out;
  size_t n = it_consume_all(m->bootstraps, "sessions-idle", 1, 20000, &out);
  cr_assert_eq(n, 1, "one summary, got %zu", n);
  json_error_t je;
  json_t *j = json_loadb(out[0].val, out[0].len, 0, &je);
  cr_assert_not_null(j, "%.*s: %s", (int)out[0].len, out[0].val, je.text);
  cr_assert_str_eq(json_string_value(json_object_get(j, "user_id")), "u0");
  cr_assert_eq(json_integer_value(json_object_get(j, "events")), 3);
  cr_assert_eq(json_integer_value(json_object_get(j, "start")),
               1767225600000LL);
  cr_assert_eq(json_integer_value(json_object_get(j, "end")), 1767225600002LL);
  json_decref(j);
  it_msgs_free(out, n);
  n = it_consume_all(m->bootstraps, "sessions-plain", 0, 10000, &out);
  cr_assert_eq(n, 0, "without idle_close the session stays open");
  it_msgs_free(out, n);
  rs_mock_destroy(m);
}
