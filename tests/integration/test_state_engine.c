/* The engine with its state store on the embedded broker: offsets stored
 * with the state win over the group's, a lost state directory is refused
 * rather than silently restarted, exactly_once suppresses precisely the
 * regenerated outputs already in the output topic (and at_least_once
 * does not), and deterministic order makes two runs write identical
 * output partitions. Crashes are simulated by rolling the stored
 * checkpoint back, which is what a SIGKILL between checkpoints leaves;
 * the crash harness (tests/crash) does it with real kills. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "itest.h"
#include "state/store.h"
#include "util.h"

static const char *const topics[] = {"in", "in.dlq", "out", NULL};

static const char yaml[] = "app: st\n"
                           "state: { commit_interval: 100ms }\n"
                           "sources: [ { name: in, topic: in } ]\n"
                           "operators:\n"
                           "  - { name: parse, type: parse, input: in, "
                           "format: avro }\n"
                           "sinks: [ { name: out, input: parse, topic: out, "
                           "format: json } ]\n";

/* Runs the pipeline to the end of its input; returns its stats. */
static const char *group_set = "kafka.group_id=st";
static const char *cur_yaml = yaml; /* the pipeline run() runs */

static rs_engine_stats_t run(const char *bootstrap, const char *guarantee,
                             const char *order, const char *out_topic,
                             int reset, int expect_rc, char *err_out) {
  char b[512], g[64], o[64];
  snprintf(b, sizeof b, "kafka.brokers=%s", bootstrap);
  snprintf(g, sizeof g, "state.guarantee=%s", guarantee);
  snprintf(o, sizeof o, "processing.order=%s", order);
  const char *sets[] = {b, g, o, "processing.max_idle=5s", group_set};
  char y[1024];
  snprintf(y, sizeof y, "%s", cur_yaml);
  if (strcmp(out_topic, "out")) { /* a second output topic */
    char *at = strstr(y, "topic: out");
    cr_assert(at != NULL);
    char tail[512];
    snprintf(tail, sizeof tail, "%s", at + strlen("topic: out"));
    snprintf(at, sizeof y - (size_t)(at - y), "topic: %s%s", out_topic, tail);
  }
  it_engine_t e;
  memset(&e, 0, sizeof e);
  int rc = it_engine_start_opts(&e, y, sets, 5, 1, reset);
  if (!rc)
    rc = it_engine_join(&e, 0);
  if (err_out)
    snprintf(err_out, 2048, "%s", e.err);
  cr_assert_eq(rc, expect_rc, "rc %d: %s", rc, e.err);
  rs_engine_stats_t st;
  memset(&st, 0, sizeof st);
  if (e.e)
    rs_engine_get_stats(e.e, &st);
  it_engine_free(&e);
  return st;
}

/* Rewrites the stored checkpoint as if the process had died earlier:
 * input partitions back to `in_off` (or their stored value, if lower),
 * output ends back to `out_off`. */
static void roll_back(int64_t in_off, int64_t out_off) {
  rs_store_t *s;
  char err[512];
  cr_assert_eq(
      rs_store_open(it_state_dir(), NULL, 0, NULL, &s, err, sizeof err), 0,
      "%s", err);
  rs_offset_t *offs;
  size_t n;
  cr_assert_eq(rs_store_read_offsets(s, &offs, &n), 0);
  cr_assert_gt(n, 0);
  for (size_t i = 0; i < n; i++) {
    int64_t to = !strcmp(offs[i].topic, "in") ? in_off : out_off;
    if (offs[i].next_offset > to)
      offs[i].next_offset = to;
  }
  cr_assert_eq(rs_store_checkpoint(s, NULL, offs, n), 0);
  rs_store_offsets_free(offs, n);
  rs_store_destroy(s);
}

static int64_t topic_total(const char *bootstrap, const char *topic) {
  int64_t sum = 0;
  for (int p = 0; p < 4; p++)
    sum += it_end_offset(bootstrap, topic, p);
  return sum;
}

Test(state_engine, stored_offsets_win_over_the_group, .timeout = 120) {
  rs_mock_t *m = it_cluster(1, 4, topics);
  cr_assert(m != NULL);
  cr_assert_eq(it_produce(m->bootstraps, "in", 2000, 50, 0, "avro"), 0);
  rs_engine_stats_t st =
      run(m->bootstraps, "at_least_once", "arrival", "out", 0, 0, NULL);
  cr_assert_eq(st.records_in, 2000);
  cr_assert_geq(st.checkpoints, 1);
  for (int p = 0; p < 4; p++)
    cr_assert_eq(it_committed(m->bootstraps, "st", "in", p),
                 it_end_offset(m->bootstraps, "in", p));
  /* The group has committed the end of every partition; the state says
   * 100. The state's position wins: 4 x (end - 100) records again. */
  roll_back(100, 0);
  cr_assert_eq(it_produce(m->bootstraps, "in", 300, 50, 0, "avro"), 0);
  st = run(m->bootstraps, "at_least_once", "arrival", "out", 0, 0, NULL);
  cr_assert_eq(st.records_in, 2300 - 400, "records_in %llu",
               (unsigned long long)st.records_in);
  /* And the next run, with state and group agreeing, reads nothing. */
  st = run(m->bootstraps, "at_least_once", "arrival", "out", 0, 0, NULL);
  cr_assert_eq(st.records_in, 0);
  rs_mock_destroy(m);
}

Test(state_engine, lost_state_directory_is_refused, .timeout = 120) {
  rs_mock_t *m = it_cluster(1, 4, topics);
  cr_assert(m != NULL);
  cr_assert_eq(it_produce(m->bootstraps, "in", 500, 50, 0, "avro"), 0);
  run(m->bootstraps, "at_least_once", "arrival", "out", 0, 0, NULL);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", it_state_dir());
  cr_assert_eq(system(cmd), 0);
  char err[2048];
  run(m->bootstraps, "at_least_once", "arrival", "out", 0, RS_ESTATE, err);
  cr_assert(strstr(err, "holds no state") && strstr(err, "--reset-state") &&
                strstr(err, it_state_dir()),
            "%s", err);
  /* With the broker down the check cannot be made: refused too, not
   * skipped as if the group had committed nothing. */
  rd_kafka_mock_broker_set_down(m->mc, 1);
  run(m->bootstraps, "at_least_once", "arrival", "out", 0, RS_EKAFKA, err);
  cr_assert(strstr(err, "holds no state") && strstr(err, "cannot be checked"),
            "%s", err);
  rd_kafka_mock_broker_set_up(m->mc, 1);
  /* Told to, it starts empty from the group's offsets: nothing new. */
  rs_engine_stats_t st =
      run(m->bootstraps, "at_least_once", "arrival", "out", 1, 0, NULL);
  cr_assert_eq(st.records_in, 0);
  rs_mock_destroy(m);
}

/* A "crash" after everything was written but before any checkpoint of
 * the second half: the replay regenerates those outputs. */
static void crash_and_replay(const char *guarantee, int per_input,
                             int64_t *total_out, rs_engine_stats_t *second) {
  rs_mock_t *m = it_cluster(1, 4, topics);
  cr_assert(m != NULL);
  cr_assert_eq(it_produce(m->bootstraps, "in", 4000, 100, 0, "avro"), 0);
  /* it_produce keys by user: the partitions hold about 1000 each; the
   * rollback below needs each to hold more than 300. */
  rs_engine_stats_t st =
      run(m->bootstraps, guarantee, "deterministic", "out", 0, 0, NULL);
  cr_assert_eq(st.records_in, 4000);
  int64_t first = topic_total(m->bootstraps, "out");
  cr_assert_eq(first, 4000 * per_input);
  /* Back to input offset 300 per partition, and output ends back to 100
   * per partition (before the outputs of inputs 300+ were written). */
  roll_back(300, 100);
  *second = run(m->bootstraps, guarantee, "deterministic", "out", 0, 0, NULL);
  cr_assert_eq(second->records_in, 4000 - 4 * 300);
  *total_out = topic_total(m->bootstraps, "out");
  it_msg_t *msgs;
  size_t n =
      it_consume_all(m->bootstraps, "out", (size_t)*total_out, 30000, &msgs);
  cr_assert_eq((int64_t)n, *total_out);
  if (!strcmp(guarantee, "exactly_once")) {
    /* Every output names its source; each source position once. */
    for (size_t i = 0; i < n; i++) {
      cr_assert(msgs[i].hdr_src != NULL, "output %zu has no source header", i);
      cr_assert(!strncmp(msgs[i].hdr_src, "in/", 3), "%s", msgs[i].hdr_src);
      for (size_t j = i + 1; j < n && j < i + 50; j++)
        cr_assert(strcmp(msgs[i].hdr_src, msgs[j].hdr_src),
                  "source %s written twice", msgs[i].hdr_src);
    }
  }
  it_msgs_free(msgs, n);
  rs_mock_destroy(m);
}

Test(state_engine, exactly_once_suppresses_regenerated_outputs,
     .timeout = 180) {
  int64_t total;
  rs_engine_stats_t st;
  crash_and_replay("exactly_once", 1, &total, &st);
  cr_assert_eq(total, 4000, "%lld outputs", (long long)total);
  cr_assert_eq(st.suppressed, st.records_in, "suppressed %llu of %llu",
               (unsigned long long)st.suppressed,
               (unsigned long long)st.records_in);
  cr_assert_gt(st.scanned_outputs, 0);
}

/* Two sinks write every input to the same topic, one after the other in
 * each batch: outputs of one topic do not come in source-offset order, and
 * two outputs share each source offset (ordinals 0 and 1). Suppression is
 * by exact source position, so still exactly once. */
Test(state_engine, exactly_once_with_outputs_out_of_source_order,
     .timeout = 180) {
  cur_yaml = "app: st\n"
             "state: { commit_interval: 100ms }\n"
             "sources: [ { name: in, topic: in } ]\n"
             "operators:\n"
             "  - { name: parse, type: parse, input: in, format: avro }\n"
             "sinks:\n"
             "  - { name: out, input: parse, topic: out, format: json }\n"
             "  - { name: again, input: parse, topic: out, format: avro }\n";
  int64_t total;
  rs_engine_stats_t st;
  crash_and_replay("exactly_once", 2, &total, &st);
  cr_assert_eq(total, 8000, "%lld outputs", (long long)total);
  cr_assert_eq(st.suppressed, 2 * st.records_in, "suppressed %llu of %llu",
               (unsigned long long)st.suppressed,
               (unsigned long long)st.records_in);
}

Test(state_engine, at_least_once_duplicates_whole_records, .timeout = 180) {
  int64_t total;
  rs_engine_stats_t st;
  crash_and_replay("at_least_once", 1, &total, &st);
  cr_assert_eq(st.suppressed, 0);
  cr_assert_eq(total, 4000 + (int64_t)st.records_in);
}

Test(state_engine, deterministic_order_writes_identical_partitions,
     .timeout = 180) {
  static const char *const t2[] = {"in", "in.dlq", "out", "out2", NULL};
  rs_mock_t *m = it_cluster(1, 4, t2);
  cr_assert(m != NULL);
  cr_assert_eq(it_produce(m->bootstraps, "in", 6000, 200, 0, "avro"), 0);
  rs_engine_stats_t a =
      run(m->bootstraps, "exactly_once", "deterministic", "out", 0, 0, NULL);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", it_state_dir());
  cr_assert_eq(system(cmd), 0);
  group_set = "kafka.group_id=st-second"; /* from the start again */
  rs_engine_stats_t b =
      run(m->bootstraps, "exactly_once", "deterministic", "out2", 0, 0, NULL);
  cr_assert_eq(a.records_in, 6000);
  cr_assert_eq(b.records_in, 6000);
  cr_assert_eq(a.ordering_giveups, 0);
  cr_assert_eq(b.ordering_giveups, 0);
  it_msg_t *x, *y;
  size_t nx = it_consume_all(m->bootstraps, "out", 6000, 30000, &x);
  size_t ny = it_consume_all(m->bootstraps, "out2", 6000, 30000, &y);
  cr_assert_eq(nx, (size_t)6000);
  cr_assert_eq(ny, nx);
  /* Per partition, record for record. */
  size_t checked = 0;
  for (int p = 0; p < 4; p++) {
    size_t i = 0, j = 0;
    for (;;) {
      while (i < nx && x[i].partition != p)
        i++;
      while (j < ny && y[j].partition != p)
        j++;
      if (i == nx || j == ny) {
        cr_assert(i == nx && j == ny, "partition %d lengths differ", p);
        break;
      }
      cr_assert_eq(x[i].offset, y[j].offset);
      cr_assert_str_eq(x[i].hdr_src, y[j].hdr_src);
      cr_assert_eq(x[i].len, y[j].len);
      cr_assert(!memcmp(x[i].val, y[j].val, x[i].len));
      checked++;
      i++;
      j++;
    }
  }
  cr_assert_eq(checked, nx);
  it_msgs_free(x, nx);
  it_msgs_free(y, ny);
  rs_mock_destroy(m);
}

/* Two instances of one app, each with its own state directory: the second
 * joins while the first is busy, partitions move, the first checkpoints
 * what it gives up (state, offsets, a synchronous commit) and the second
 * starts from the group's offsets. Nothing is lost. */
/* Whether the engine has processed anything (its stats are read while it
 * runs: a torn read only delays the wait by a poll). */
static int processed_some(void *arg) {
  rs_engine_stats_t st;
  rs_engine_get_stats(arg, &st);
  return st.records_in > 0;
}

static int outputs_reach(void *arg) {
  const char **a = arg;
  return topic_total(a[0], "out") >= atol(a[1]);
}

/* Every partition of "in" committed by the group at its end: the whole
 * input processed, checkpointed and its outputs acknowledged (a commit
 * follows the checkpoint), with the group settled (the embedded broker
 * refuses commits while it rebalances). Counting outputs instead would stop
 * early: a handover may repeat outputs (see below). */
static int all_committed(void *arg) {
  const char *bootstrap = arg;
  for (int p = 0; p < 4; p++)
    if (it_committed(bootstrap, "st", "in", p) !=
        it_end_offset(bootstrap, "in", p))
      return 0;
  return 1;
}

/* Raises stored[p] to the next offset of input partition p (of 4) kept in
 * the state directory dir, where that is later. */
static void stored_in_offsets(const char *dir, int64_t stored[4]) {
  rs_store_t *s;
  char err[512];
  cr_assert_eq(rs_store_open(dir, NULL, 0, NULL, &s, err, sizeof err), 0, "%s",
               err);
  rs_offset_t *offs;
  size_t n;
  cr_assert_eq(rs_store_read_offsets(s, &offs, &n), 0);
  for (size_t i = 0; i < n; i++)
    if (!strcmp(offs[i].topic, "in") && offs[i].partition < 4 &&
        offs[i].next_offset > stored[offs[i].partition])
      stored[offs[i].partition] = offs[i].next_offset;
  rs_store_offsets_free(offs, n);
  rs_store_destroy(s);
}

/* The second instance joins (empty state) while the output broker (2) is
 * slow; once it has work the output is made prompt, the group must get
 * every partition committed at its end, and both instances stop. */
static void second_joins(rs_mock_t *m, it_engine_t *one, it_engine_t *two,
                         const char *const *sets, size_t n_sets,
                         rs_engine_stats_t *st1, rs_engine_stats_t *st2) {
  cr_assert_eq(it_engine_start_opts(two, yaml, sets, n_sets, 0, 1), 0, "%s",
               two->err);
  /* The group rebalances (which takes the embedded broker seconds). */
  cr_assert(it_wait(processed_some, two->e, 120000),
            "the second instance got no partition");
  rd_kafka_mock_broker_set_rtt(m->mc, 2, 0);
  cr_assert(it_wait(all_committed, (void *)m->bootstraps, 180000),
            "the group did not commit every partition at its end");
  cr_assert_eq(it_engine_join(two, 1), 0, "%s", two->err);
  cr_assert_eq(it_engine_join(one, 1), 0, "%s", one->err);
  rs_engine_get_stats(one->e, st1);
  rs_engine_get_stats(two->e, st2);
}

/* Two instances share the input; the second joins mid-stream. Both use
 * deterministic order so that every partition is part-way through when
 * the group rebalances (arrival order tends to finish partitions one at a
 * time, so the second instance could be handed only finished ones). */
Test(state_engine, rebalance_hands_partitions_over_at_their_checkpoint,
     .timeout = 240) {
  rs_mock_t *m = it_cluster(2, 4, topics);
  cr_assert(m != NULL);
  const long total = 40000;
  cr_assert_eq(it_produce(m->bootstraps, "in", total, 500, 0, "avro"), 0);
  /* The output lives on broker 2, which answers slowly: with the small
   * in-flight cap below the first instance is still busy when the second
   * joins. */
  for (int p = 0; p < 4; p++)
    rd_kafka_mock_partition_set_leader(m->mc, "out", p, 2);
  rd_kafka_mock_broker_set_rtt(m->mc, 2, 500);
  char b[512], d1[256], d2[256];
  snprintf(b, sizeof b, "kafka.brokers=%s", m->bootstraps);
  snprintf(d1, sizeof d1, "state.dir=%s/one", it_state_dir());
  snprintf(d2, sizeof d2, "state.dir=%s/two", it_state_dir());
  /* Slow enough that the second instance joins mid-stream. */
  /* request.timeout.ms: a produce request the embedded broker loses (it
   * drops delayed requests in some transitions) is retried after 5 s, not
   * 30 s. */
  const char *s1[] = {b,
                      d1,
                      "state.guarantee=exactly_once",
                      "processing.batch_size=100",
                      "processing.order=deterministic",
                      "processing.max_inflight_records=1000",
                      "kafka.properties.request.timeout.ms=5000"};
  const char *s2[sizeof s1 / sizeof s1[0]]; /* the same in its own dir */
  memcpy(s2, s1, sizeof s1);
  s2[1] = d2;
  it_engine_t one, two;
  cr_assert_eq(it_engine_start(&one, yaml, s1, 7, 0), 0, "%s", one.err);
  char want[32];
  snprintf(want, sizeof want, "%ld", total / 20);
  const char *arg[] = {m->bootstraps, want};
  cr_assert(it_wait(outputs_reach, arg, 60000), "no output from the first");
  /* A new instance has no state for partitions the group has committed:
   * it must be told to start with empty state (without a changelog the
   * state of moved partitions does not follow them; DESIGN.md section 4),
   * otherwise it refuses. */
  it_engine_t refused;
  cr_assert_eq(it_engine_start(&refused, yaml, s2, 7, 0), 0, "%s", refused.err);
  cr_assert_eq(it_engine_join(&refused, 0), RS_ESTATE, "%s", refused.err);
  cr_assert(strstr(refused.err, "holds no state") != NULL, "%s", refused.err);
  it_engine_free(&refused);
  rs_engine_stats_t st1, st2;
  second_joins(m, &one, &two, s2, 7, &st1, &st2);
  cr_assert_gt(st2.records_in, 0, "the second instance got no partition");
  /* Nothing lost: every input processed and checkpointed, every output
   * there. Exact handover (no input processed twice) needs the revoking
   * member's commit to be accepted; the embedded broker refuses commits
   * while the group is joining (REBALANCE_IN_PROGRESS), which real Kafka
   * accepts, so here a handover may repeat what was processed since the
   * last accepted commit. */
  cr_assert_geq(st1.records_in + st2.records_in, (uint64_t)total);
  int64_t n_out = topic_total(m->bootstraps, "out");
  cr_assert_geq(n_out, total);
  /* ...and every input has its output: no gap at the handover. */
  it_msg_t *msgs;
  size_t got =
      it_consume_all(m->bootstraps, "out", (size_t)n_out, 30000, &msgs);
  cr_assert_eq(got, (size_t)n_out);
  int64_t ends[4];
  char *seen[4];
  for (int p = 0; p < 4; p++) {
    ends[p] = it_end_offset(m->bootstraps, "in", p);
    seen[p] = calloc((size_t)ends[p] + 1, 1);
    cr_assert(seen[p] != NULL);
  }
  for (size_t i = 0; i < got; i++) {
    long long sp, so;
    unsigned ord;
    cr_assert(msgs[i].hdr_src != NULL, "output %zu has no source header", i);
    cr_assert_eq(sscanf(msgs[i].hdr_src, "in/%lld/%lld/%u", &sp, &so, &ord), 3,
                 "%s", msgs[i].hdr_src);
    cr_assert(sp >= 0 && sp < 4 && so >= 0 && so < ends[sp], "%s",
              msgs[i].hdr_src);
    seen[sp][so] = 1;
  }
  for (int p = 0; p < 4; p++) {
    for (int64_t o = 0; o < ends[p]; o++)
      cr_assert(seen[p][o], "input %d/%lld has no output", p, (long long)o);
    free(seen[p]);
  }
  it_msgs_free(msgs, got);
  it_engine_free(&one);
  it_engine_free(&two);
  /* Where each partition stands is what the states say (they win over the
   * group's offsets, which the embedded broker may have refused during
   * the rebalances): the later of the two states is the end of the
   * input. */
  int64_t stored[4] = {-1, -1, -1, -1};
  stored_in_offsets(d1 + strlen("state.dir="), stored);
  stored_in_offsets(d2 + strlen("state.dir="), stored);
  for (int p = 0; p < 4; p++)
    cr_assert_eq(stored[p], it_end_offset(m->bootstraps, "in", p),
                 "partition %d", p);
  rs_mock_destroy(m);
}

/* The input was paused for backpressure (partition_pauses counts the
 * pauses long enough to pause the partitions in the client). */
static int input_paused(void *arg) {
  rs_engine_stats_t st;
  rs_engine_get_stats(arg, &st);
  return st.partition_pauses > 0;
}

/* A rebalance while the input is paused for backpressure: the partitions
 * handed back to the same instance must be fetched again once the
 * outputs are acknowledged. librdkafka keeps a partition's pause across
 * unassign and assign, so before the fix they stayed paused for good and
 * were never processed, checkpointed or committed (with asynchronous
 * checkpoints processing runs ahead into backpressure; the barrier
 * checkpoints rarely let it). The output broker answers after 10 s, so
 * the first instance is paused when the second joins and its revocation
 * waits for the outputs; the group's coordinator and the input stay on
 * the prompt broker. */
static void rebalance_while_paused(const char *strategy) {
  rs_mock_t *m = it_cluster(2, 4, topics);
  cr_assert(m != NULL);
  const long total = 10000;
  for (int p = 0; p < 4; p++) {
    rd_kafka_mock_partition_set_leader(m->mc, "in", p, 1);
    rd_kafka_mock_partition_set_leader(m->mc, "out", p, 2);
  }
  rd_kafka_mock_coordinator_set(m->mc, "group", "st", 1);
  cr_assert_eq(it_produce(m->bootstraps, "in", total, 500, 0, "avro"), 0);
  rd_kafka_mock_broker_set_rtt(m->mc, 2, 10000);
  char b[512], d1[256], d2[256];
  snprintf(b, sizeof b, "kafka.brokers=%s", m->bootstraps);
  snprintf(d1, sizeof d1, "state.dir=%s/paused1", it_state_dir());
  snprintf(d2, sizeof d2, "state.dir=%s/paused2", it_state_dir());
  /* api.version.request.timeout.ms: above the slow broker's 10 s, so that
   * the clients do not fall back to guessing an old broker version. */
  const char *s1[] = {b,
                      d1,
                      "processing.batch_size=100",
                      "processing.max_inflight_records=1000",
                      "kafka.properties.api.version.request.timeout.ms=30000",
                      strategy};
  const char *s2[sizeof s1 / sizeof s1[0]]; /* the same in its own dir */
  memcpy(s2, s1, sizeof s1);
  s2[1] = d2;
  it_engine_t one, two;
  size_t n_sets = strategy ? 6 : 5;
  cr_assert_eq(it_engine_start(&one, yaml, s1, n_sets, 0), 0, "%s", one.err);
  cr_assert(it_wait(input_paused, one.e, 60000),
            "the first instance never paused its input");
  rs_engine_stats_t st1, st2;
  second_joins(m, &one, &two, s2, n_sets, &st1, &st2);
  cr_assert_geq(st1.records_in + st2.records_in, (uint64_t)total);
  /* The case under test happened: a revocation found the input paused in
   * the client (else the slow broker let it resume before the group
   * rebalanced, and the test proved nothing). */
  cr_assert_gt(st1.paused_revokes, 0,
               "no revocation found the input paused in the client");
  it_engine_free(&one);
  it_engine_free(&two);
  rs_mock_destroy(m);
}

Test(state_engine, rebalance_while_paused_fetches_reassigned_partitions,
     .timeout = 240) {
  rebalance_while_paused(NULL);
}

/* The same with the incremental (cooperative) protocol, which users may
 * set through kafka.properties: the revocation takes only the partitions
 * that move (two of the four here) and resumes them in the client; the
 * ones that stay remain assigned and paused there (input_paused stays 1),
 * and resuming the input must resume them, or they stall. */
Test(state_engine, rebalance_cooperative_while_paused_keeps_the_rest_flowing,
     .timeout = 240) {
  rebalance_while_paused(
      "kafka.properties.partition.assignment.strategy=cooperative-sticky");
}

/* Offset commits the group refuses (REBALANCE_IN_PROGRESS, then the
 * member errors that make the client rejoin: its partitions are revoked
 * and handed back to it, possibly while the input is paused) are retried
 * by later checkpoints until the group has every partition at its end;
 * the state's offsets are there too. 40 refusals cover the commits of
 * the first seconds, the end's included (processing takes well under a
 * second here; a refused final commit left marked as committed would
 * never be sent again). */
Test(state_engine, refused_commits_are_retried_until_the_end_is_committed,
     .timeout = 240) {
  rs_mock_t *m = it_cluster(1, 4, topics);
  cr_assert(m != NULL);
  const long total = 4000;
  cr_assert_eq(it_produce(m->bootstraps, "in", total, 500, 0, "avro"), 0);
  rd_kafka_resp_err_t errs[40];
  for (int i = 0; i < 40; i++)
    errs[i] = i == 20   ? RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION
              : i == 30 ? RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID
                        : RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS;
  rd_kafka_mock_push_request_errors_array(m->mc, 8 /* OffsetCommit */, 40,
                                          errs);
  char b[512], d[256];
  snprintf(b, sizeof b, "kafka.brokers=%s", m->bootstraps);
  snprintf(d, sizeof d, "state.dir=%s/refused", it_state_dir());
  const char *sets[] = {b, d, "processing.batch_size=100"};
  it_engine_t one;
  cr_assert_eq(it_engine_start(&one, yaml, sets, 3, 0), 0, "%s", one.err);
  cr_assert(it_wait(all_committed, (void *)m->bootstraps, 120000),
            "the group did not commit every partition at its end");
  cr_assert_eq(it_engine_join(&one, 1), 0, "%s", one.err);
  rs_engine_stats_t st;
  rs_engine_get_stats(one.e, &st);
  cr_assert_geq(st.records_in, (uint64_t)total);
  it_engine_free(&one);
  int64_t stored[4] = {-1, -1, -1, -1};
  stored_in_offsets(d + strlen("state.dir="), stored);
  for (int p = 0; p < 4; p++)
    cr_assert_eq(stored[p], it_end_offset(m->bootstraps, "in", p),
                 "partition %d", p);
  rs_mock_destroy(m);
}

/* A state directory is one process's: a second engine on it is refused
 * with a message naming the directory; a corrupt one likewise, and it is
 * left as it was (never wiped). */
Test(state_engine, locked_and_corrupt_state_directories_are_refused,
     .timeout = 120) {
  rs_mock_t *m = it_cluster(1, 4, topics);
  cr_assert(m != NULL);
  char b[512];
  snprintf(b, sizeof b, "kafka.brokers=%s", m->bootstraps);
  const char *sets[] = {b};
  it_engine_t one, two;
  cr_assert_eq(it_engine_start(&one, yaml, sets, 1, 0), 0, "%s", one.err);
  int rc = it_engine_start(&two, yaml, sets, 1, 0);
  cr_assert_eq(rc, RS_ESTATE, "rc %d: %s", rc, two.err);
  cr_assert(strstr(two.err, it_state_dir()) && strstr(two.err, "lock"), "%s",
            two.err);
  it_engine_free(&two);
  cr_assert_eq(it_engine_join(&one, 1), 0, "%s", one.err);
  it_engine_free(&one);

  char dir[256], path[300];
  snprintf(dir, sizeof dir, "%s/corrupt", it_state_dir());
  cr_assert_eq(mkdir(dir, 0755), 0);
  snprintf(path, sizeof path, "%s/CURRENT", dir);
  FILE *f = fopen(path, "w");
  cr_assert(f != NULL);
  fputs("MANIFEST-999999\n", f);
  fclose(f);
  char ds[300];
  snprintf(ds, sizeof ds, "state.dir=%s", dir);
  const char *sets2[] = {b, ds};
  rc = it_engine_start(&two, yaml, sets2, 2, 0);
  cr_assert_eq(rc, RS_ESTATE, "rc %d: %s", rc, two.err);
  cr_assert(strstr(two.err, dir) != NULL, "%s", two.err);
  it_engine_free(&two);
  struct stat st;
  cr_assert_eq(stat(path, &st), 0, "the corrupt directory was touched");
  rs_mock_destroy(m);
}

/* State stored against one log, started against another (a restarted
 * embedded broker holds fewer records than the state has processed): the
 * engine refuses instead of silently skipping or reprocessing. */
Test(state_engine, state_of_another_log_is_refused, .timeout = 120) {
  rs_mock_t *m = it_cluster(1, 4, topics);
  cr_assert(m != NULL);
  cr_assert_eq(it_produce(m->bootstraps, "in", 2000, 50, 0, "avro"), 0);
  run(m->bootstraps, "at_least_once", "arrival", "out", 0, 0, NULL);
  rs_mock_destroy(m);
  m = it_cluster(1, 4, topics); /* empty again */
  cr_assert(m != NULL);
  cr_assert_eq(it_produce(m->bootstraps, "in", 40, 50, 0, "avro"), 0);
  char err[2048];
  run(m->bootstraps, "at_least_once", "arrival", "out", 0, RS_ESTATE, err);
  cr_assert(strstr(err, "belongs to another log") &&
                strstr(err, "--reset-state") && strstr(err, it_state_dir()),
            "%s", err);
  rs_mock_destroy(m);
}

/* An operator that keeps state in memory writes it in its checkpoint()
 * callback, which the engine calls before every checkpoint (also the last
 * one at shutdown): the count is in the store, with the offsets. */
Test(state_engine, operator_checkpoint_callback_writes_with_the_offsets,
     .timeout = 120) {
  rs_mock_t *m = it_cluster(1, 4, topics);
  cr_assert(m != NULL);
  cr_assert_eq(it_produce(m->bootstraps, "in", 3000, 50, 0, "avro"), 0);
  char y[1024];
  snprintf(y, sizeof y,
           "app: st\n"
           "state: { commit_interval: 100ms }\n"
           "plugins: [ \"%s/plugins/rs_test_checkpoint_counter.so\" ]\n"
           "sources: [ { name: in, topic: in } ]\n"
           "operators:\n"
           "  - { name: parse, type: parse, input: in, format: avro }\n"
           "  - { name: count, type: checkpoint_counter, input: parse }\n"
           "sinks: [ { name: out, input: count, topic: out, format: json } ]\n",
           RS_BINARY_DIR);
  char b[512];
  snprintf(b, sizeof b, "kafka.brokers=%s", m->bootstraps);
  const char *sets[] = {b, group_set};
  it_engine_t e;
  cr_assert_eq(it_engine_start(&e, y, sets, 2, 1), 0, "%s", e.err);
  cr_assert_eq(it_engine_join(&e, 0), 0, "%s", e.err);
  it_engine_free(&e);
  rs_store_t *s;
  char err[512];
  cr_assert_eq(rs_store_open_readonly(it_state_dir(), &s, err, sizeof err), 0,
               "%s", err);
  int cf = rs_store_cf(s, "count");
  cr_assert_geq(cf, 0);
  const void *v = NULL;
  size_t n = 0;
  cr_assert_eq(rs_store_get(s, cf, RS_PARTITION_SHARED, "seen", 4, &v, &n), 0,
               "checkpoint() was not called: no count in the state");
  cr_assert_eq(n, 8);
  int64_t seen = 0;
  for (int i = 7; i >= 0; i--)
    seen = seen * 256 + ((const unsigned char *)v)[i];
  cr_assert_eq(seen, 3000);
  rs_offset_t *offs;
  size_t k;
  cr_assert_eq(rs_store_read_offsets(s, &offs, &k), 0);
  int64_t sum = 0;
  for (size_t i = 0; i < k; i++)
    if (!strcmp(offs[i].topic, "in"))
      sum += offs[i].next_offset;
  rs_store_offsets_free(offs, k);
  cr_assert_eq(sum, 3000, "offsets and the count belong together");
  rs_store_destroy(s);
  rs_mock_destroy(m);
}
