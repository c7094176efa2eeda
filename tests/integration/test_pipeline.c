/* Whole graphs on the embedded broker: records flow from a topic through
 * parse to an output topic and the dead-letter topic; nothing is lost,
 * order per key is kept, offsets are committed only behind acknowledged
 * outputs, and memory stays bounded behind a slow sink. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec.h"
#include "itest.h"
#include "state/store.h"
#include "util.h"

static const char *const topics[] = {"in", "in.dlq", "out", NULL};

static const char pipeline_yaml[] =
    "app: itest\n"
    "kafka: { brokers: embedded }\n"
    "state: { commit_interval: 200ms }\n"
    "sources: [ { name: in, topic: in } ]\n"
    "operators:\n"
    "  - { name: parse, type: parse, input: in, format: avro }\n"
    "sinks: [ { name: out, input: parse, topic: out, format: json } ]\n";

/* Decodes every output record and checks: each valid input seq appears
 * exactly once, and per key the seqs rise in output order. Returns the
 * number of distinct seqs seen; *dups gets duplicates. */
static long check_outputs(it_msg_t *m, size_t n, long total, long bad_every,
                          long *dups) {
  rs_codec_t *codec;
  char err[256];
  cr_assert_eq(rs_codec_new(&codec, NULL, err, sizeof err), 0);
  unsigned char *seen = calloc((size_t)total, 1);
  long *last = calloc(100000, sizeof(long));
  for (size_t i = 0; i < 100000; i++)
    last[i] = -1;
  rs_arena_t a;
  rs_arena_init(&a, 4096);
  long distinct = 0;
  *dups = 0;
  for (size_t i = 0; i < n; i++) {
    rs_interaction_t it;
    rs_arena_reset(&a);
    int rc = rs_codec_decode(codec, RS_FORMAT_JSON, m[i].val, m[i].len, &it,
                             (void *(*)(void *, size_t))rs_arena_alloc, &a, err,
                             sizeof err);
    cr_assert_eq(rc, 0, "output %zu does not decode: %s", i, err);
    long seq = it_seq_of(&it);
    cr_assert(seq >= 0 && seq < total, "bad seq %ld", seq);
    cr_assert(!bad_every || (seq + 1) % bad_every != 0,
              "a bad record's seq %ld came out", seq);
    long user = strtol(it.user + 1, NULL, 10);
    cr_assert_eq(m[i].key_len, it.user_len);
    cr_assert(!memcmp(m[i].key, it.user, it.user_len), "key is not the user");
    if (seen[seq]) {
      (*dups)++;
    } else {
      seen[seq] = 1;
      distinct++;
      cr_assert_gt(seq, last[user],
                   "user u%ld: seq %ld came after %ld (order broken)", user,
                   seq, last[user]);
      last[user] = seq;
    }
  }
  rs_arena_free(&a);
  free(seen);
  free(last);
  rs_codec_destroy(codec);
  return distinct;
}

/* After a clean stop the state's stored offsets (which win at the next
 * start) are the end of every input partition, and the group's committed
 * offsets never pass them. The group's may lag: after a lost assignment
 * (the broker-outage test) the final commit can come while the member is
 * still rejoining, and the broker refuses it. */
static void assert_committed_to_end(const char *bootstrap, const char *group,
                                    int partitions) {
  rs_store_t *s;
  char err[512];
  cr_assert_eq(
      rs_store_open(it_state_dir(), NULL, 0, NULL, &s, err, sizeof err), 0,
      "%s", err);
  rs_offset_t *offs;
  size_t n;
  cr_assert_eq(rs_store_read_offsets(s, &offs, &n), 0);
  for (int p = 0; p < partitions; p++) {
    int64_t end = it_end_offset(bootstrap, "in", p);
    int64_t stored = -1;
    for (size_t i = 0; i < n; i++)
      if (!strcmp(offs[i].topic, "in") && offs[i].partition == p)
        stored = offs[i].next_offset;
    cr_assert_eq(stored, end, "partition %d: stored %lld, end %lld", p,
                 (long long)stored, (long long)end);
    int64_t c = it_committed(bootstrap, group, "in", p);
    cr_assert_leq(c, end, "partition %d: committed %lld, end %lld", p,
                  (long long)c, (long long)end);
  }
  rs_store_offsets_free(offs, n);
  rs_store_destroy(s);
}

Test(pipeline, fifty_thousand_records_flow_through_parse_to_sink_and_dlq,
     .timeout = 300) {
  rs_mock_t *m = it_cluster(1, 4, topics);
  cr_assert(m != NULL);
  const long total = 50050, bad_every = 1001;
  long bad = it_produce(m->bootstraps, "in", total, 997, bad_every, "avro");
  cr_assert_eq(bad, 50);
  char brokers[512];
  snprintf(brokers, sizeof brokers, "kafka.brokers=%s", m->bootstraps);
  const char *sets[] = {brokers};
  it_engine_t t;
  cr_assert_eq(it_engine_start(&t, pipeline_yaml, sets, 1, 1), 0, "%s", t.err);
  cr_assert_eq(it_engine_join(&t, 0), 0, "%s", t.err);
  rs_engine_stats_t st;
  rs_engine_get_stats(t.e, &st);
  cr_assert_eq(st.records_in, (uint64_t)total);
  cr_assert_eq(st.records_out, (uint64_t)(total - bad));
  cr_assert_eq(st.dead_lettered, (uint64_t)bad);
  cr_assert_eq(rs_engine_counter(t.e, "parse", "dead_lettered"), (uint64_t)bad);
  it_engine_free(&t);

  it_msg_t *out;
  size_t n =
      it_consume_all(m->bootstraps, "out", (size_t)(total - bad), 60000, &out);
  cr_assert_eq(n, (size_t)(total - bad), "output holds %zu records", n);
  long dups;
  cr_assert_eq(check_outputs(out, n, total, bad_every, &dups), total - bad);
  cr_assert_eq(dups, 0);
  it_msgs_free(out, n);

  /* The DLQ holds exactly the bad records, with their original bytes and
   * headers naming the error and the source position. */
  it_msg_t *dlq, *in;
  size_t nd = it_consume_all(m->bootstraps, "in.dlq", (size_t)bad, 30000, &dlq);
  size_t ni = it_consume_all(m->bootstraps, "in", (size_t)total, 60000, &in);
  cr_assert_eq(nd, (size_t)bad);
  cr_assert_eq(ni, (size_t)total);
  for (size_t i = 0; i < nd; i++) {
    cr_assert(dlq[i].hdr_error && *dlq[i].hdr_error);
    cr_assert_str_eq(dlq[i].hdr_source_topic, "in");
    int32_t sp = (int32_t)atoi(dlq[i].hdr_source_partition);
    int64_t so = atoll(dlq[i].hdr_source_offset);
    int found = 0;
    for (size_t k = 0; k < ni && !found; k++)
      if (in[k].partition == sp && in[k].offset == so) {
        found = 1;
        cr_assert_eq(in[k].len, dlq[i].len);
        cr_assert(!memcmp(in[k].val, dlq[i].val, in[k].len),
                  "DLQ bytes differ from the original");
        cr_assert_eq(in[k].key_len, dlq[i].key_len);
      }
    cr_assert(found, "DLQ record names %d/%lld, which does not exist", sp,
              (long long)so);
  }
  it_msgs_free(dlq, nd);
  it_msgs_free(in, ni);
  assert_committed_to_end(m->bootstraps, "itest", 4);
  rs_mock_destroy(m);
}

typedef struct outage {
  rs_mock_t *m;
  const char *bootstrap;
  long want;
  int down;
  rs_engine_t *e; /* when set, a delivery failure also ends the wait */
} outage_t;

static int has_some_output(void *arg) {
  outage_t *o = arg;
  int64_t sum = 0;
  for (int p = 0; p < 4; p++)
    sum += it_end_offset(o->bootstrap, "out", p);
  return sum >= o->want;
}

static int output_done_or_failed(void *arg) {
  outage_t *o = arg;
  rs_engine_stats_t s;
  rs_engine_get_stats(o->e, &s);
  return s.delivery_failures > 0 || has_some_output(arg);
}

/* Fails with what the engine and the output topic show. */
static void outage_stuck(it_engine_t *t, outage_t *o, long total) {
  rs_engine_stats_t s;
  rs_engine_get_stats(t->e, &s);
  int64_t end[4];
  for (int p = 0; p < 4; p++)
    end[p] = it_end_offset(o->bootstrap, "out", p);
  uint64_t now = rs_now_ns();
  cr_assert_fail(
      "output did not complete: out ends %" PRId64 " %" PRId64 " %" PRId64
      " %" PRId64 " of %ld; engine: in %" PRIu64
      ", last ack %.1f s ago, delivery failures %" PRIu64 ", pauses %" PRIu64
      " (%" PRIu64 " of the partitions), checkpoints %" PRIu64 " of %" PRIu64
      " captures, %" PRIu64 " checkpoint pauses, commits %" PRIu64,
      end[0], end[1], end[2], end[3], total, s.records_in,
      s.last_ack_ns ? (double)(now - s.last_ack_ns) / 1e9 : -1.0,
      s.delivery_failures, s.pauses, s.partition_pauses, s.checkpoints,
      s.checkpoint_captures, s.checkpoint_pauses, s.commits);
}

Test(pipeline, produce_errors_and_broker_outage_lose_nothing, .timeout = 300) {
  rs_mock_t *m = it_cluster(3, 4, topics);
  cr_assert(m != NULL);
  const long total = 20000;
  cr_assert_eq(it_produce(m->bootstraps, "in", total, 500, 0, "avro"), 0);
  /* Retriable produce errors: librdkafka must retry them, the engine must
   * not lose or duplicate (idempotent producer). */
  rd_kafka_mock_push_request_errors(
      m->mc, 0 /* ApiKey Produce */, 6,
      RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
      RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
      RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
      RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT);
  char brokers[512];
  snprintf(brokers, sizeof brokers, "kafka.brokers=%s", m->bootstraps);
  /* A produce request the embedded broker loses when it goes down is
   * retried after request.timeout.ms: 5 s rather than 30 s. Rarely (3
   * times in hundreds of runs on a loaded machine) one output of the
   * outage is never acknowledged at all: the output topic ends one record
   * short, no delivery report comes, and the engine, rightly, does not
   * checkpoint past it. message.timeout.ms bounds that wait (30 s instead
   * of librdkafka's 300 s): the engine then stops without committing past
   * the failed output, and a restart must resume and lose nothing. */
  const char *sets[] = {brokers, "processing.batch_size=200",
                        "kafka.properties.request.timeout.ms=5000",
                        "kafka.properties.message.timeout.ms=30000"};
  const size_t n_sets = sizeof sets / sizeof sets[0];
  it_engine_t t;
  cr_assert_eq(it_engine_start(&t, pipeline_yaml, sets, n_sets, 0), 0, "%s",
               t.err);
  /* Once output flows, take the leader of the output partitions down for
   * a few seconds mid-stream. */
  outage_t o = {m, m->bootstraps, 2000, 0, NULL};
  cr_assert(it_wait(has_some_output, &o, 60000));
  for (int p = 0; p < 4; p++)
    rd_kafka_mock_partition_set_leader(m->mc, "out", p, 2);
  rd_kafka_mock_broker_set_down(m->mc, 2);
  struct timespec ts = {3, 0};
  nanosleep(&ts, NULL); /* the outage itself, not a synchronisation */
  rd_kafka_mock_broker_set_up(m->mc, 2);
  o.want = total;
  o.e = t.e;
  if (!it_wait(output_done_or_failed, &o, 120000))
    outage_stuck(&t, &o, total);
  rs_engine_stats_t st;
  rs_engine_get_stats(t.e, &st);
  if (st.delivery_failures) {
    fprintf(stderr, "broker outage: an output was never acknowledged and "
                    "timed out; restarting the engine on its state\n");
    cr_assert_neq(it_engine_join(&t, 1), 0, "stopped by the failed output");
    it_engine_free(&t);
    /* To the end of the input this time: the replay from the last
     * checkpoint writes outputs again, so the output topic's count no
     * longer says when it is done. */
    cr_assert_eq(it_engine_start(&t, pipeline_yaml, sets, n_sets, 1), 0, "%s",
                 t.err);
    cr_assert_eq(it_engine_join(&t, 0), 0, "%s", t.err);
  } else {
    cr_assert_eq(it_engine_join(&t, 1), 0, "%s", t.err);
  }
  rs_engine_get_stats(t.e, &st);
  cr_assert_eq(st.delivery_failures, 0);
  it_engine_free(&t);
  it_msg_t *out;
  int64_t written = 0;
  for (int p = 0; p < 4; p++)
    written += it_end_offset(m->bootstraps, "out", p);
  size_t n = it_consume_all(m->bootstraps, "out", (size_t)written, 60000, &out);
  cr_assert_eq(n, (size_t)written);
  long dups;
  /* Nothing lost. Duplicates are not asserted away here: when a broker of
   * the embedded cluster is set down with a produce request in flight, it
   * may have appended the batch and lost the response, and its sequence
   * check then lets the idempotent producer's retry in again (seen once
   * in ~15 runs, 387 duplicates, before and after the state store). A
   * real broker rejects the retry as a duplicate sequence. They are
   * printed, and must be whole records (check_outputs decodes each). */
  cr_assert_eq(check_outputs(out, n, total, 0, &dups), total);
  if (dups)
    fprintf(stderr,
            "broker outage: %ld duplicate outputs (the restart's replay "
            "under at_least_once, or the embedded broker's idempotence "
            "gap)\n",
            dups);
  it_msgs_free(out, n);
  assert_committed_to_end(m->bootstraps, "itest", 4);
  rs_mock_destroy(m);
}

Test(pipeline, permanent_delivery_failure_stops_without_committing_past_it,
     .timeout = 120) {
  rs_mock_t *m = it_cluster(1, 2, topics);
  cr_assert(m != NULL);
  cr_assert_eq(it_produce(m->bootstraps, "in", 3000, 50, 0, "avro"), 0);
  /* A non-retriable error on every produce to the output topic. */
  rd_kafka_mock_topic_set_error(m->mc, "out",
                                RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  char brokers[512];
  snprintf(brokers, sizeof brokers, "kafka.brokers=%s", m->bootstraps);
  const char *sets[] = {brokers, "kafka.properties.message.timeout.ms=5000"};
  it_engine_t t;
  cr_assert_eq(it_engine_start(&t, pipeline_yaml, sets, 2, 0), 0, "%s", t.err);
  int rc = it_engine_join(&t, 0); /* it must stop by itself */
  cr_assert_eq(rc, RS_EDELIVERY, "rc %d: %s", rc, t.err);
  cr_assert(strstr(t.err, "failed permanently") != NULL, "%s", t.err);
  it_engine_free(&t);
  for (int p = 0; p < 2; p++) {
    int64_t c = it_committed(m->bootstraps, "itest", "in", p);
    cr_assert(c < 0,
              "partition %d committed %lld although nothing was "
              "delivered",
              p, (long long)c);
  }
  rs_mock_destroy(m);
}

Test(pipeline, slow_sink_pauses_input_and_bounds_memory, .timeout = 300) {
  rs_mock_t *m = it_cluster(2, 2, topics);
  cr_assert(m != NULL);
  const long total = 8000;
  cr_assert_eq(it_produce(m->bootstraps, "in", total, 300, 0, "avro"), 0);
  /* The output lives on broker 2, which answers slowly. */
  for (int p = 0; p < 2; p++)
    rd_kafka_mock_partition_set_leader(m->mc, "out", p, 2);
  rd_kafka_mock_broker_set_rtt(m->mc, 2, 200);
  char brokers[512];
  snprintf(brokers, sizeof brokers, "kafka.brokers=%s", m->bootstraps);
  const char *sets[] = {
      brokers, "processing.high_water=64KiB", "processing.low_water=16KiB",
      "processing.max_inflight_records=1000", "processing.batch_size=100"};
  it_engine_t t;
  cr_assert_eq(it_engine_start(&t, pipeline_yaml, sets, 5, 1), 0, "%s", t.err);
  cr_assert_eq(it_engine_join(&t, 0), 0, "%s", t.err);
  rs_engine_stats_t st;
  rs_engine_get_stats(t.e, &st);
  it_engine_free(&t);
  cr_assert_gt(st.pauses, 0, "the input was never paused");
  /* In flight never exceeds the high-water mark plus one batch of output
   * (each JSON record here is under 300 bytes). */
  cr_assert_leq(st.max_inflight_bytes, 64 * 1024 + 100 * 300,
                "max in flight %lld bytes", (long long)st.max_inflight_bytes);
  cr_assert_eq(
      st.records_out, (uint64_t)total, "records in %llu, out %llu, pauses %llu",
      (unsigned long long)st.records_in, (unsigned long long)st.records_out,
      (unsigned long long)st.pauses);
  it_msg_t *out;
  size_t n = it_consume_all(m->bootstraps, "out", (size_t)total, 60000, &out);
  long dups;
  cr_assert_eq(check_outputs(out, n, total, 0, &dups), total);
  cr_assert_eq(dups, 0, "pausing made %ld duplicates", dups);
  it_msgs_free(out, n);
  rs_mock_destroy(m);
}

Test(pipeline, example_plugin_runs_in_a_pipeline, .timeout = 120) {
  rs_mock_t *m = it_cluster(1, 2, topics);
  cr_assert(m != NULL);
  const long total = 3000; /* event types cycle VIEW, CLICK, ADD_TO_CART */
  cr_assert_eq(it_produce(m->bootstraps, "in", total, 40, 0, "avro"), 0);
  char yaml[2048];
  snprintf(
      yaml, sizeof yaml,
      "app: plug\n"
      "kafka: { brokers: \"%s\" }\n"
      "plugins: [ \"%s/plugins/rs_example_operator.so\" ]\n"
      "sources: [ { name: in, topic: in } ]\n"
      "operators:\n"
      "  - { name: parse, type: parse, input: in }\n"
      "  - { name: clicks, type: event_filter, input: parse, keep: CLICK "
      "}\n"
      "sinks: [ { name: out, input: clicks, topic: out, format: json } ]\n",
      m->bootstraps, RS_BINARY_DIR);
  it_engine_t t;
  cr_assert_eq(it_engine_start(&t, yaml, NULL, 0, 1), 0, "%s", t.err);
  cr_assert_eq(it_engine_join(&t, 0), 0, "%s", t.err);
  cr_assert_eq(rs_engine_counter(t.e, "clicks", "dropped"),
               (uint64_t)(total - total / 3));
  it_engine_free(&t);
  it_msg_t *out;
  size_t n =
      it_consume_all(m->bootstraps, "out", (size_t)total / 3, 30000, &out);
  cr_assert_eq(n, (size_t)total / 3);
  for (size_t i = 0; i < n; i++)
    cr_assert(strstr(out[i].val, "\"event_type\":\"CLICK\"") != NULL, "%s",
              out[i].val);
  it_msgs_free(out, n);
  rs_mock_destroy(m);
}

/* Sources with different partition counts that meet in one operator: the
 * engine warns at start (its state is per input partition, so one key's
 * records from the two topics never meet), naming the operator, both
 * sources and their counts; with equal counts it says nothing. Run as the
 * program, to read its log. */
static void copart_config(const char *path, const char *second) {
  FILE *f = fopen(path, "w");
  cr_assert(f != NULL, "%s", path);
  fprintf(f,
          "app: copart\n"
          "sources:\n"
          "  - { name: a, topic: a }\n"
          "  - { name: b, topic: %s }\n"
          "operators:\n"
          "  - { name: pa, type: parse, input: a }\n"
          "  - { name: pb, type: parse, input: b }\n"
          "  - { name: mf, type: mf_update, inputs: [pa, pb] }\n"
          "sinks: [ { name: o, input: mf, topic: o } ]\n",
          second);
  cr_assert_eq(fclose(f), 0);
}

Test(pipeline, copartition_warning_names_operator_and_counts, .timeout = 120) {
  static const char *const tp[] = {"a", "same", "o", NULL};
  rs_mock_t *m = it_cluster(1, 4, tp);
  cr_assert(m != NULL);
  char err[512], path[1024], dir[1024], out[16384];
  cr_assert_eq(rs_mock_create_topic(m, "fewer", 2, err, sizeof err), 0, "%s",
               err);
  const char *second[] = {"fewer", "same"};
  mkdir(it_state_dir(), 0700); /* may exist */
  for (int k = 0; k < 2; k++) {
    snprintf(path, sizeof path, "%s/copart-%d.yaml", it_state_dir(), k);
    snprintf(dir, sizeof dir, "%s/copart-state-%d", it_state_dir(), k);
    copart_config(path, second[k]);
    int rc = it_cli(out, sizeof out,
                    "run %s --set kafka.brokers=%s --state-dir %s "
                    "--exit-at-end",
                    path, m->bootstraps, dir);
    cr_assert_eq(rc, 0, "%s", out);
    const char *w = strstr(out, "operator 'mf' reads records of source 'a'");
    if (k == 0) {
      cr_assert(w != NULL, "no warning:\n%s", out);
      cr_assert(strstr(w, "(topic a, 4 partitions) and of source 'b' (topic "
                          "fewer, 2 partitions)") != NULL,
                "%s", out);
      cr_assert(strstr(out, " WARN ") != NULL, "%s", out);
    } else {
      cr_assert(w == NULL, "a warning with equal counts:\n%s", out);
    }
  }
  rs_mock_destroy(m);
}

/* An output a sink cannot encode (here a NaN value for a JSON sink, from
 * a test plugin) goes to the dead-letter topic of the operator that
 * emitted it, with the reason and the source position; the rest flows
 * and the run ends normally. Before, the run stopped at that offset, and
 * again after every restart. */
Test(pipeline, output_a_sink_cannot_encode_is_dead_lettered, .timeout = 120) {
  rs_mock_t *m = it_cluster(1, 2, topics);
  cr_assert(m != NULL);
  const long total = 400;
  cr_assert_eq(it_produce(m->bootstraps, "in", total, 40, 0, "avro"), 0);
  cr_assert_eq(setenv("RS_TEST_CC_NAN", "1", 1), 0);
  char yaml[2048];
  snprintf(yaml, sizeof yaml,
           "app: nan\n"
           "kafka: { brokers: \"%s\" }\n"
           "plugins: [ \"%s/plugins/rs_test_checkpoint_counter.so\" ]\n"
           "sources: [ { name: in, topic: in } ]\n"
           "operators:\n"
           "  - { name: parse, type: parse, input: in }\n"
           "  - { name: cc, type: checkpoint_counter, input: parse }\n"
           "sinks: [ { name: out, input: cc, topic: out, format: json } ]\n",
           m->bootstraps, RS_BINARY_DIR);
  it_engine_t t;
  cr_assert_eq(it_engine_start(&t, yaml, NULL, 0, 1), 0, "%s", t.err);
  cr_assert_eq(it_engine_join(&t, 0), 0, "%s", t.err);
  uint64_t dead = rs_engine_counter(t.e, "cc", "dead_lettered");
  it_engine_free(&t);
  int64_t bad = 0; /* offsets divisible by 10, per partition */
  for (int p = 0; p < 2; p++)
    bad += (it_end_offset(m->bootstraps, "in", p) + 9) / 10;
  cr_assert_gt(bad, 0);
  cr_assert_eq(dead, (uint64_t)bad);
  it_msg_t *out, *dl;
  size_t n =
      it_consume_all(m->bootstraps, "out", (size_t)(total - bad), 30000, &out);
  size_t nd = it_consume_all(m->bootstraps, "in.dlq", (size_t)bad, 30000, &dl);
  cr_assert_eq(n, (size_t)(total - bad));
  cr_assert_eq(nd, (size_t)bad);
  for (size_t i = 0; i < nd; i++) {
    cr_assert(dl[i].hdr_error &&
                  strstr(dl[i].hdr_error,
                         "sink 'out' cannot encode this output of operator "
                         "'cc': json: field 'value' is not finite"),
              "%s", dl[i].hdr_error ? dl[i].hdr_error : "(no error header)");
    cr_assert(dl[i].hdr_source_offset &&
                  atoll(dl[i].hdr_source_offset) % 10 == 0,
              "%s", dl[i].hdr_source_offset ? dl[i].hdr_source_offset : "-");
    cr_assert_eq(dl[i].len, 0);
  }
  it_msgs_free(out, n);
  it_msgs_free(dl, nd);
  rs_mock_destroy(m);
}
