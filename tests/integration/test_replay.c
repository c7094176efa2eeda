/* `recstream replay` on the embedded broker: parity with a live run (state
 * entry for entry, redirected outputs record for record), hand-off to a
 * live run with no gap and no overlap, interrupted replays resumed, the
 * time seek against a brute-force scan on out-of-order timestamps,
 * retention gaps reported, and the refusals that keep it safe.
 */
#include <avro.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"
#include "replay.h"
#include "state/store.h"
#include "util.h"

static const char *const topics[] = {"in",       "in.dlq",       "out",
                                     "backfill", "backfill.dlq", NULL};

/* Stateful, with state shared across partitions (item counters): equal
 * states need equal processing order. */
static const char yaml[] =
    "app: rp\n"
    "state: { commit_interval: 100ms }\n"
    "processing: { order: deterministic, max_idle: 5s }\n"
    "sources: [ { name: in, topic: in } ]\n"
    "operators:\n"
    "  - { name: parse, type: parse, input: in, format: avro }\n"
    "  - { name: stats, type: user_stats, input: parse }\n"
    "sinks: [ { name: out, input: stats, topic: out } ]\n";

static char cfg_path[256];

static const char *config_file(void) {
  snprintf(cfg_path, sizeof cfg_path, "%s-replay.yaml", it_state_dir());
  FILE *f = fopen(cfg_path, "w");
  cr_assert(f != NULL);
  fputs(yaml, f);
  fclose(f);
  return cfg_path;
}

static char *dir_of(const char *name) {
  static char buf[4][300];
  static int k;
  char *b = buf[k++ % 4];
  snprintf(b, 300, "%s/%s", it_state_dir(), name);
  return b;
}

/* ---- a canonical dump of a state directory ---- */

typedef struct dump {
  rs_buf_t b;
  const char *cf;
} dump_t;

static void hex(rs_buf_t *b, const void *p, size_t n) {
  static const char d[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    char two[2] = {d[((const unsigned char *)p)[i] >> 4],
                   d[((const unsigned char *)p)[i] & 15]};
    rs_buf_append(b, two, 2);
  }
}

static int dump_entry(void *opaque, int32_t partition, const void *key,
                      size_t key_len, const void *value, size_t value_len) {
  dump_t *d = opaque;
  char head[300];
  int n = snprintf(head, sizeof head, "%s %d ", d->cf, (int)partition);
  rs_buf_append(&d->b, head, (size_t)n);
  hex(&d->b, key, key_len);
  rs_buf_append(&d->b, " ", 1);
  hex(&d->b, value, value_len);
  rs_buf_append(&d->b, "\n", 1);
  return 0;
}

/* Every operator entry and the input offsets (output ends differ by
 * design: another topic). */
static char *dump_state(const char *dir, size_t *entries, int offsets) {
  rs_store_t *s;
  char err[512];
  cr_assert_eq(rs_store_open_readonly(dir, &s, err, sizeof err), 0, "%s", err);
  dump_t d = {0};
  size_t before = 0;
  *entries = 0;
  for (int cf = 0; cf < rs_store_cf_count(s); cf++) {
    d.cf = rs_store_cf_name(s, cf);
    if (!strncmp(d.cf, "__", 2) || !strcmp(d.cf, "default"))
      continue;
    cr_assert_eq(rs_store_scan_all(s, cf, dump_entry, &d), 0);
    for (size_t i = before; i < d.b.len; i++)
      *entries += d.b.data[i] == '\n';
    before = d.b.len;
  }
  rs_offset_t *offs;
  size_t n;
  cr_assert_eq(rs_store_read_offsets(s, &offs, &n), 0);
  for (int p = 0; p < 4 && offsets; p++)
    for (size_t i = 0; i < n; i++)
      if (!strcmp(offs[i].topic, "in") && offs[i].partition == p) {
        char line[64];
        int k = snprintf(line, sizeof line, "offset in %d %lld\n", p,
                         (long long)offs[i].next_offset);
        rs_buf_append(&d.b, line, (size_t)k);
      }
  rs_store_offsets_free(offs, n);
  rs_store_destroy(s);
  rs_buf_append(&d.b, "", 1);
  return d.b.data;
}

/* Asserts that two state directories hold the same entries (and, with
 * offsets, the same input offsets); returns how many entries. */
static size_t assert_same_state(const char *x, const char *y, int offsets,
                                const char *what) {
  size_t n1, n2;
  char *a = dump_state(dir_of(x), &n1, offsets);
  char *b = dump_state(dir_of(y), &n2, offsets);
  cr_assert_eq(n1, n2, "%s: %zu vs %zu entries", what, n1, n2);
  cr_assert(!strcmp(a, b), "%s", what);
  free(a);
  free(b);
  return n1;
}

static void live_run(const char *bootstrap, const char *dir, const char *group,
                     rs_engine_stats_t *st) {
  char b[512], d[320], g[64];
  snprintf(b, sizeof b, "kafka.brokers=%s", bootstrap);
  snprintf(d, sizeof d, "state.dir=%s", dir);
  snprintf(g, sizeof g, "kafka.group_id=%s", group);
  const char *sets[] = {b, d, g};
  it_engine_t e;
  cr_assert_eq(it_engine_start(&e, yaml, sets, 3, 1), 0, "%s", e.err);
  cr_assert_eq(it_engine_join(&e, 0), 0, "%s", e.err);
  if (st)
    rs_engine_get_stats(e.e, st);
  it_engine_free(&e);
}

static int by_pos(const void *a, const void *b) {
  const it_msg_t *x = a, *y = b;
  if (x->partition != y->partition)
    return x->partition < y->partition ? -1 : 1;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int64_t total_of(const char *bootstrap, const char *topic) {
  int64_t n = 0;
  for (int p = 0; p < 4; p++)
    n += it_end_offset(bootstrap, topic, p);
  return n;
}

Test(replay, parity_with_a_live_run, .timeout = 180) {
  rs_mock_t *m = it_cluster(1, 4, topics);
  cr_assert(m != NULL);
  cr_assert_eq(it_produce(m->bootstraps, "in", 6000, 120, 0, "avro"), 0);
  const char *cfg = config_file();
  rs_engine_stats_t st;
  live_run(m->bootstraps, dir_of("live"), "g-live", &st);
  cr_assert_eq(st.records_in, 6000);

  char out[16384];
  int rc = it_cli(out, sizeof out,
                  "replay %s --set kafka.brokers=%s --state-dir %s --output "
                  "topic:backfill --progress none",
                  cfg, m->bootstraps, dir_of("replayed"));
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "records:            6000 of 6000 planned"), "%s", out);
  size_t n1 = assert_same_state("live", "replayed", 1,
                                "the replayed state differs from the live one");
  cr_assert_gt(n1, 120, "%zu entries", n1); /* users + items */

  /* Outputs: the same records, partition by partition, in order. */
  int64_t no = total_of(m->bootstraps, "out");
  cr_assert_eq(no, 6000);
  cr_assert_eq(total_of(m->bootstraps, "backfill"), no);
  it_msg_t *x, *y;
  size_t nx = it_consume_all(m->bootstraps, "out", (size_t)no, 30000, &x);
  size_t ny = it_consume_all(m->bootstraps, "backfill", (size_t)no, 30000, &y);
  cr_assert_eq(nx, (size_t)no);
  cr_assert_eq(ny, nx);
  qsort(x, nx, sizeof *x, by_pos);
  qsort(y, ny, sizeof *y, by_pos);
  for (size_t i = 0; i < nx; i++) {
    cr_assert_eq(x[i].partition, y[i].partition);
    cr_assert_eq(x[i].offset, y[i].offset);
    cr_assert_eq(x[i].len, y[i].len, "record %zu", i);
    cr_assert(!memcmp(x[i].val, y[i].val, x[i].len), "record %zu", i);
    cr_assert_eq(x[i].key_len, y[i].key_len);
    cr_assert(!memcmp(x[i].key, y[i].key, x[i].key_len));
  }
  it_msgs_free(x, nx);
  it_msgs_free(y, ny);

  /* --output none writes nothing and says how much it withheld. */
  rc = it_cli(out, sizeof out,
              "replay %s --set kafka.brokers=%s --state-dir %s --progress none",
              cfg, m->bootstraps, dir_of("quiet"));
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "outputs withheld:   6000"), "%s", out);
  cr_assert_eq(total_of(m->bootstraps, "backfill"), no);
  assert_same_state("live", "quiet", 1, "--output none changed the state");
  rs_mock_destroy(m);
}

static void iso(int64_t ms, char *buf, size_t n) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char s[32];
  strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf, n, "%s.%03dZ", s, (int)(ms % 1000));
}

/* Replay up to a time, then `run` the rest: the same state as one run over
 * everything, with every record processed exactly once. */
Test(replay, hand_off_to_a_live_run, .timeout = 180) {
  rs_mock_t *m = it_cluster(1, 4, topics);
  cr_assert(m != NULL);
  cr_assert_eq(it_produce(m->bootstraps, "in", 3000, 60, 0, "avro"), 0);
  /* Where the second half starts in partition 0. */
  const int64_t half0 = it_end_offset(m->bootstraps, "in", 0);
  usleep(30000); /* a later produce time for the second half */
  cr_assert_eq(it_produce(m->bootstraps, "in", 3000, 60, 0, "avro"), 0);
  const char *cfg = config_file();
  live_run(m->bootstraps, dir_of("single"), "g-single", NULL);

  /* Split at the first timestamp of the second half. */
  it_msg_t *msgs;
  size_t n = it_consume_all(m->bootstraps, "in", 6000, 30000, &msgs);
  cr_assert_eq(n, 6000);
  it_msgs_free(msgs, n);
  rd_kafka_t *rk;
  {
    char e[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", m->bootstraps, e, sizeof e);
    rd_kafka_conf_set(c, "enable.partition.eof", "true", e, sizeof e);
    rd_kafka_conf_set(c, "fetch.wait.max.ms", "10", e, sizeof e);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof e);
    cr_assert(rk != NULL);
  }
  /* The timestamp of the record at the start of the second produce run
   * in partition 0, found by its offset: every record of the first run was
   * created before the 30 ms pause, so its timestamp is earlier. (Looking
   * for the pause in the timestamps instead found a gap inside the first
   * run on a loaded machine.) */
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, "in", NULL);
  cr_assert_eq(rd_kafka_consume_start(rkt, 0, 0), 0);
  int64_t split = -1;
  for (int64_t got = 0; got < it_end_offset(m->bootstraps, "in", 0);) {
    rd_kafka_message_t *msg = rd_kafka_consume(rkt, 0, 5000);
    cr_assert(msg != NULL);
    if (!msg->err) {
      int64_t ts = rd_kafka_message_timestamp(msg, NULL);
      if (msg->offset == half0)
        split = ts;
      got++;
    }
    rd_kafka_message_destroy(msg);
  }
  rd_kafka_consume_stop(rkt, 0);
  rd_kafka_topic_destroy(rkt);
  rd_kafka_destroy(rk);
  cr_assert_geq(split, 0, "no record at offset %" PRId64 " in partition 0",
                half0);
  char when[64];
  iso(split, when, sizeof when);

  char out[16384];
  int rc = it_cli(out, sizeof out,
                  "replay %s --set kafka.brokers=%s --state-dir %s --to %s "
                  "--progress none",
                  cfg, m->bootstraps, dir_of("handoff"), when);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "records:            3000 of 3000 planned"), "%s", out);
  cr_assert(strstr(out, "continue live with: recstream run"), "%s", out);
  /* The rest, live, on the replay's state: the stored offsets win over
   * the group's (which has none here). */
  rs_engine_stats_t st;
  live_run(m->bootstraps, dir_of("handoff"), "g-handoff", &st);
  cr_assert_eq(st.records_in, 3000, "no gap, no overlap");
  assert_same_state("single", "handoff", 1,
                    "replay + run differs from one run");
  rs_mock_destroy(m);
}

/* Killed inside a checkpoint, then resumed with the same command plus
 * --resume: the same state as an uninterrupted replay. */
Test(replay, interrupted_replay_resumes, .timeout = 180) {
  rs_mock_t *m = it_cluster(1, 4, topics);
  cr_assert(m != NULL);
  cr_assert_eq(it_produce(m->bootstraps, "in", 40000, 500, 0, "avro"), 0);
  const char *cfg = config_file();
  char out[16384];
  int rc = it_cli(out, sizeof out,
                  "replay %s --set kafka.brokers=%s --state-dir %s --progress "
                  "none",
                  cfg, m->bootstraps, dir_of("whole"));
  cr_assert_eq(rc, 0, "%s", out);
  /* Killed at its second checkpoint write. */
  setenv("RECSTREAM_CRASH_POINT", "checkpoint_after_write:2", 1);
  rc = it_cli(
      out, sizeof out,
      "replay %s --set kafka.brokers=%s --set state.commit_interval=10ms "
      "--state-dir %s --progress none",
      cfg, m->bootstraps, dir_of("cut"));
  unsetenv("RECSTREAM_CRASH_POINT");
  cr_assert_eq(rc, 128 + SIGKILL, "rc %d: %s", rc, out);
  /* Resuming needs the flag... */
  rc = it_cli(out, sizeof out,
              "replay %s --set kafka.brokers=%s --state-dir %s --progress none",
              cfg, m->bootstraps, dir_of("cut"));
  cr_assert_eq(rc, 2, "%s", out);
  cr_assert(strstr(out, "--resume"), "%s", out);
  rc = it_cli(out, sizeof out,
              "replay %s --set kafka.brokers=%s --state-dir %s --resume "
              "--progress none",
              cfg, m->bootstraps, dir_of("cut"));
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "recstream replay: complete"), "%s", out);
  assert_same_state("whole", "cut", 1, "the resumed replay differs");
  /* A complete replay has nothing to resume. */
  rc = it_cli(out, sizeof out,
              "replay %s --set kafka.brokers=%s --state-dir %s --resume "
              "--progress none",
              cfg, m->bootstraps, dir_of("cut"));
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "nothing to resume"), "%s", out);
  rs_mock_destroy(m);
}

/* The binary-search fallback (the embedded broker has no time index)
 * against a brute-force scan, on timestamps out of order by up to 20
 * records, for times before, between and after the records (16 times,
 * each sought twice: a probe costs a fetch round trip). */
Test(replay, time_seek_agrees_with_a_scan, .timeout = 180) {
  static const char *const t1[] = {"ts", NULL};
  rs_mock_t *m = it_cluster(1, 1, t1);
  cr_assert(m != NULL);
  const int n = 3000;
  const int64_t base = 1767225600000LL;
  int64_t *ts = calloc((size_t)n, sizeof *ts);
  cr_assert(ts != NULL);
  char e[512];
  rd_kafka_conf_t *pc = rd_kafka_conf_new();
  rd_kafka_conf_set(pc, "bootstrap.servers", m->bootstraps, e, sizeof e);
  rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, e, sizeof e);
  cr_assert(p != NULL);
  for (int i = 0; i < n; i++) {
    ts[i] = base + i * 10 + ((i * 7919) % 41 - 20) * 10;
    cr_assert_eq(rd_kafka_producev(
                     p, RD_KAFKA_V_TOPIC("ts"), RD_KAFKA_V_PARTITION(0),
                     RD_KAFKA_V_VALUE("x", 1), RD_KAFKA_V_TIMESTAMP(ts[i]),
                     RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                 0);
  }
  cr_assert_eq(rd_kafka_flush(p, 30000), 0);
  rd_kafka_destroy(p);
  rd_kafka_conf_t *cc = rd_kafka_conf_new();
  rd_kafka_conf_set(cc, "bootstrap.servers", m->bootstraps, e, sizeof e);
  rd_kafka_conf_set(cc, "enable.partition.eof", "true", e, sizeof e);
  rd_kafka_conf_set(cc, "fetch.wait.max.ms", "10", e, sizeof e);
  rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, cc, e, sizeof e);
  cr_assert(c != NULL);
  unsigned seed = 12345;
  int broker_answers = 0, probes = 0;
  for (int k = 0; k < 16; k++) {
    int64_t t;
    if (k == 0)
      t = base - 100000; /* before every record */
    else if (k == 1)
      t = base + n * 10 + 1000; /* after every record */
    else if (k == 2)
      t = ts[0];
    else
      t = base - 500 + (int64_t)(rand_r(&seed) % (n * 10 + 1000));
    int64_t want = n;
    for (int i = 0; i < n; i++)
      if (ts[i] >= t) {
        want = i;
        break;
      }
    for (int ask = 0; ask < 2; ask++) {
      int64_t got = -7;
      rs_seek_stats_t st;
      cr_assert_eq(
          rs_seek_time(c, "ts", 0, 0, n, t, 100, ask, &got, &st, e, sizeof e),
          0, "%s", e);
      cr_assert_eq(got, want, "time %lld (ask broker %d): %lld, want %lld",
                   (long long)t, ask, (long long)got, (long long)want);
      broker_answers += st.broker_answered;
      probes += st.probes;
    }
  }
  /* The embedded broker cannot answer by time: every seek searched. */
  cr_assert_eq(broker_answers, 0);
  cr_assert_gt(probes, 0);
  rd_kafka_destroy(c);
  free(ts);
  rs_mock_destroy(m);
}

/* Offsets removed by retention are reported in the plan (the embedded
 * broker keeps about 100,000 records per partition). */
Test(replay, retention_gap_is_reported, .timeout = 120) {
  static const char *const t1[] = {"in", "in.dlq", "out", NULL};
  rs_mock_t *m = it_cluster(1, 1, t1);
  cr_assert(m != NULL);
  char e[512];
  rd_kafka_conf_t *pc = rd_kafka_conf_new();
  rd_kafka_conf_set(pc, "bootstrap.servers", m->bootstraps, e, sizeof e);
  rd_kafka_conf_set(pc, "linger.ms", "20", e, sizeof e);
  rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, e, sizeof e);
  cr_assert(p != NULL);
  static char big[1000];
  for (int i = 0; i < 8000; i++) {
    while (rd_kafka_producev(p, RD_KAFKA_V_TOPIC("in"),
                             RD_KAFKA_V_VALUE(big, sizeof big),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
      rd_kafka_poll(p, 10);
  }
  cr_assert_eq(rd_kafka_flush(p, 30000), 0);
  rd_kafka_destroy(p);
  rd_kafka_t *c;
  {
    rd_kafka_conf_t *cc = rd_kafka_conf_new();
    rd_kafka_conf_set(cc, "bootstrap.servers", m->bootstraps, e, sizeof e);
    c = rd_kafka_new(RD_KAFKA_CONSUMER, cc, e, sizeof e);
  }
  int64_t lo = -1, hi = -1;
  cr_assert_eq(rd_kafka_query_watermark_offsets(c, "in", 0, &lo, &hi, 10000),
               0);
  rd_kafka_destroy(c);
  cr_assert_eq(hi, 8000);
  cr_assert_gt(lo, 0, "the broker kept everything; nothing to test");
  const char *cfg = config_file();
  char out[16384];
  int rc = it_cli(out, sizeof out,
                  "replay %s --set kafka.brokers=%s --state-dir %s --from 0:0 "
                  "--dry-run",
                  cfg, m->bootstraps, dir_of("gap"));
  cr_assert_eq(rc, 0, "%s", out);
  char want[160];
  snprintf(want, sizeof want,
           "in [0]: %lld requested offsets lie below the low watermark %lld",
           (long long)lo, (long long)lo);
  cr_assert(strstr(out, want), "%s", out);
  cr_assert(strstr(out, "missing (retention)"), "%s", out);
  rs_mock_destroy(m);
}

/* What keeps a replay safe, and every bad argument, each with a message
 * that says what to do. */
Test(replay, refusals_and_bad_arguments, .timeout = 120) {
  rs_mock_t *m = it_cluster(1, 4, topics);
  cr_assert(m != NULL);
  cr_assert_eq(it_produce(m->bootstraps, "in", 200, 20, 0, "avro"), 0);
  const char *cfg = config_file();
  char out[16384];
  const char *B = m->bootstraps;
  struct {
    int rc;
    const char *args, *want;
  } cases[] = {
      {2, "--from yesterday", "expected earliest, latest, now"},
      {2, "--from 2026-13-01T00:00:00Z", "ISO-8601"},
      {2, "--from 2026-11-01T00:00:00", "ISO-8601"},
      {2, "--to -6x", "relative time"},
      {2, "--from 0:abc", "PARTITION:OFFSET"},
      {2, "--from 9:0", "not a partition of a source topic"},
      {2, "--to 0:999999", "before the requested"},
      {2, "--from 0:10 --to 0:5", "after --to"},
      {2, "--dry-run --from 0:10,0:20",
       "--from '0:20': partition 0 is already given by '0:10'"},
      {2, "--to in:1:50,1:60", "partition 1 of topic in is already given"},
      {2, "--output live", "--yes"},
      {2, "--output sideways", "expected none, live or topic:NAME"},
      {2, "--output topic:in", "source topic"},
      {2, "--output topic:a/b", "--output topic:a/b: not a valid Kafka topic"},
      {2, "--set sources.in.topic=back.dlq --output topic:back",
       "--output topic:back: its dead letters would go to back.dlq, a source "
       "topic"},
      {1, "--resume", "a replay's state directory"},
      {2, "--bogus", "unknown or ambiguous option '--bogus'"},
      {2, "--seek-window -1", "--seek-window"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int rc = it_cli(out, sizeof out,
                    "replay %s --set kafka.brokers=%s --state-dir %s %s", cfg,
                    B, dir_of("x"), cases[i].args);
    cr_assert_eq(rc, cases[i].rc, "%s: rc %d: %s", cases[i].args, rc, out);
    cr_assert(strstr(out, cases[i].want), "%s: %s", cases[i].args, out);
  }
  int rc = it_cli(out, sizeof out, "replay %s", cfg);
  cr_assert_eq(rc, 2, "%s", out);
  cr_assert(strstr(out, "embedded"), "%s", out);
  rc = it_cli(out, sizeof out, "replay %s --set kafka.brokers=%s --resume", cfg,
              B);
  cr_assert_eq(rc, 2, "%s", out);
  cr_assert(strstr(out, "--resume needs --state-dir"), "%s", out);
  rc = it_cli(out, sizeof out, "replay --help");
  cr_assert_eq(rc, 0);
  cr_assert(strstr(out, "--from POS") && strstr(out, "--resume"), "%s", out);

  /* An existing state is never written into or deleted without --force;
   * not even with --force while a process has it open. */
  rc = it_cli(out, sizeof out,
              "replay %s --set kafka.brokers=%s --state-dir %s --progress none",
              cfg, B, dir_of("busy"));
  cr_assert_eq(rc, 0, "%s", out);
  rc = it_cli(out, sizeof out,
              "replay %s --set kafka.brokers=%s --state-dir %s --progress none",
              cfg, B, dir_of("busy"));
  cr_assert_eq(rc, 2, "%s", out);
  cr_assert(strstr(out, "already holds state") && strstr(out, "--force"), "%s",
            out);
  char b[512], d[320];
  snprintf(b, sizeof b, "kafka.brokers=%s", B);
  snprintf(d, sizeof d, "state.dir=%s", dir_of("busy"));
  const char *sets[] = {b, d, "kafka.group_id=g-busy"};
  it_engine_t eng;
  cr_assert_eq(it_engine_start(&eng, yaml, sets, 3, 0), 0, "%s", eng.err);
  rc = it_cli(out, sizeof out,
              "replay %s --set kafka.brokers=%s --state-dir %s --force "
              "--progress none",
              cfg, B, dir_of("busy"));
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, dir_of("busy")) && strstr(out, "lock"), "%s", out);
  cr_assert_eq(it_engine_join(&eng, 1), 0, "%s", eng.err);
  it_engine_free(&eng);
  /* --dry-run writes nothing. */
  rc = it_cli(out, sizeof out,
              "replay %s --set kafka.brokers=%s --state-dir %s "
              "--dry-run",
              cfg, B, dir_of("dry"));
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "records to replay: 200"), "%s", out);
  cr_assert_eq(access(dir_of("dry"), F_OK), -1, "--dry-run created %s",
               dir_of("dry"));
  rs_mock_destroy(m);
}

/* The records of an Avro container file produced to a topic as the file
 * holds them (raw Avro, key = user, Kafka timestamp = event time): a
 * replay of the file and a replay of the topic build the same state. */
Test(replay, files_replay_equals_topic_replay, .timeout = 180) {
  rs_mock_t *m = it_cluster(1, 4, topics);
  cr_assert(m != NULL);
  char file[300], out[16384];
  snprintf(file, sizeof file, "%s-events.avro", it_state_dir());
  int rc = it_cli(out, sizeof out,
                  "generate --out %s --events 6000 --users 150 --items 400 "
                  "--seed 11",
                  file);
  cr_assert_eq(rc, 0, "%s", out);

  avro_file_reader_t r;
  cr_assert_eq(avro_file_reader(file, &r), 0, "%s", avro_strerror());
  avro_schema_t ws = avro_file_reader_get_writer_schema(r);
  avro_value_iface_t *iface = avro_generic_class_from_schema(ws);
  avro_value_t v;
  cr_assert_eq(avro_generic_value_new(iface, &v), 0);
  int iu = avro_schema_record_field_get_index(ws, "user_id");
  int it = avro_schema_record_field_get_index(ws, "timestamp");
  cr_assert(iu >= 0 && it >= 0);
  char e[512];
  rd_kafka_conf_t *pc = rd_kafka_conf_new();
  rd_kafka_conf_set(pc, "bootstrap.servers", m->bootstraps, e, sizeof e);
  rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, e, sizeof e);
  cr_assert(p != NULL);
  static char buf[65536];
  long n = 0;
  while (avro_file_reader_read_value(r, &v) == 0) {
    avro_value_t fu, ft;
    const char *user;
    size_t ulen, size;
    int64_t ts;
    cr_assert_eq(avro_value_get_by_index(&v, (size_t)iu, &fu, NULL), 0);
    cr_assert_eq(avro_value_get_string(&fu, &user, &ulen), 0);
    cr_assert_eq(avro_value_get_by_index(&v, (size_t)it, &ft, NULL), 0);
    cr_assert_eq(avro_value_get_long(&ft, &ts), 0);
    cr_assert_eq(avro_value_sizeof(&v, &size), 0);
    cr_assert_leq(size, sizeof buf);
    avro_writer_t w = avro_writer_memory(buf, (int64_t)size);
    cr_assert_eq(avro_value_write(w, &v), 0);
    avro_writer_free(w);
    cr_assert_eq(rd_kafka_producev(
                     p, RD_KAFKA_V_TOPIC("in"), RD_KAFKA_V_KEY(user, ulen - 1),
                     RD_KAFKA_V_VALUE(buf, size), RD_KAFKA_V_TIMESTAMP(ts),
                     RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                 0);
    rd_kafka_poll(p, 0);
    n++;
  }
  cr_assert_eq(n, 6000);
  cr_assert_eq(rd_kafka_flush(p, 30000), 0);
  rd_kafka_destroy(p);
  avro_value_decref(&v);
  avro_value_iface_decref(iface);
  avro_schema_decref(ws);
  avro_file_reader_close(r);

  const char *cfg = config_file();
  rc = it_cli(out, sizeof out,
              "replay %s --set kafka.brokers=%s --state-dir %s --progress none "
              "--output topic:out",
              cfg, m->bootstraps, dir_of("from-topic"));
  cr_assert_eq(rc, 0, "%s", out);
  rc = it_cli(out, sizeof out,
              "replay %s --set kafka.brokers=%s --state-dir %s --files %s "
              "--progress none --output topic:backfill",
              cfg, m->bootstraps, dir_of("from-file"), file);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "records:            6000 of 6000 planned"), "%s", out);
  size_t n1 =
      assert_same_state("from-topic", "from-file", 0,
                        "the file replay differs from the topic replay");
  cr_assert_gt(n1, 150);
  /* The outputs too (they show the interleaving of partitions: each
   * carries the item's count so far). */
  it_msg_t *x, *y;
  size_t nx = it_consume_all(m->bootstraps, "out", 6000, 30000, &x);
  size_t ny = it_consume_all(m->bootstraps, "backfill", 6000, 30000, &y);
  cr_assert_eq(nx, 6000);
  cr_assert_eq(ny, nx);
  qsort(x, nx, sizeof *x, by_pos);
  qsort(y, ny, sizeof *y, by_pos);
  for (size_t i = 0; i < nx; i++) {
    cr_assert_eq(x[i].partition, y[i].partition);
    cr_assert_eq(x[i].len, y[i].len, "record %zu", i);
    cr_assert(!memcmp(x[i].val, y[i].val, x[i].len), "record %zu: %.*s / %.*s",
              i, (int)x[i].len, x[i].val, (int)y[i].len, y[i].val);
  }
  it_msgs_free(x, nx);
  it_msgs_free(y, ny);

  /* A files replay killed inside a checkpoint resumes from the positions
   * stored with the state: the same state as an uninterrupted one. */
  char big[300];
  snprintf(big, sizeof big, "%s-big.avro", it_state_dir());
  rc = it_cli(out, sizeof out,
              "generate --out %s --events 40000 --users 300 --items 500 "
              "--seed 12",
              big);
  cr_assert_eq(rc, 0, "%s", out);
  rc = it_cli(out, sizeof out,
              "replay %s --set kafka.brokers=%s --state-dir %s --files %s "
              "--progress none",
              cfg, m->bootstraps, dir_of("files-whole"), big);
  cr_assert_eq(rc, 0, "%s", out);
  setenv("RECSTREAM_CRASH_POINT", "checkpoint_after_write:1", 1);
  rc = it_cli(
      out, sizeof out,
      "replay %s --set kafka.brokers=%s --set state.commit_interval=10ms "
      "--state-dir %s --files %s --progress none",
      cfg, m->bootstraps, dir_of("files-cut"), big);
  unsetenv("RECSTREAM_CRASH_POINT");
  cr_assert_eq(rc, 128 + SIGKILL, "rc %d: %s", rc, out);
  rc = it_cli(out, sizeof out,
              "replay %s --set kafka.brokers=%s --state-dir %s --files %s "
              "--resume --progress none",
              cfg, m->bootstraps, dir_of("files-cut"), file);
  cr_assert_eq(rc, 2, "another file: %s", out);
  rc = it_cli(out, sizeof out,
              "replay %s --set kafka.brokers=%s --state-dir %s --resume "
              "--progress none",
              cfg, m->bootstraps, dir_of("files-cut"));
  cr_assert_eq(rc, 0, "%s", out);
  const char *rec = strstr(out, "records:            ");
  cr_assert(rec != NULL, "%s", out);
  long resumed = atol(rec + strlen("records:            "));
  cr_assert(resumed > 0 && resumed < 40000,
            "the kill was not mid-way: %ld records after --resume", resumed);
  assert_same_state("files-whole", "files-cut", 1,
                    "the resumed files replay differs");

  /* Files that are not interaction containers, and a pattern matching
   * nothing, are refused with the file named. */
  char bad[300];
  snprintf(bad, sizeof bad, "%s-bad.avro", it_state_dir());
  FILE *f = fopen(bad, "w");
  cr_assert(f != NULL);
  fputs("not avro", f);
  fclose(f);
  rc = it_cli(out, sizeof out,
              "replay %s --set kafka.brokers=%s --state-dir %s --files %s", cfg,
              m->bootstraps, dir_of("bad"), bad);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, bad) && strstr(out, "not a readable Avro"), "%s", out);
  rc = it_cli(
      out, sizeof out,
      "replay %s --set kafka.brokers=%s --state-dir %s --files '%s/none*'", cfg,
      m->bootstraps, dir_of("bad"), it_state_dir());
  cr_assert_eq(rc, 2, "%s", out);
  cr_assert(strstr(out, "no file matches"), "%s", out);
  rc = it_cli(out, sizeof out,
              "replay %s --set kafka.brokers=%s --files %s --from earliest",
              cfg, m->bootstraps, file);
  cr_assert_eq(rc, 2, "%s", out);
  rc = it_cli(out, sizeof out,
              "replay %s --set kafka.brokers=%s --state-dir %s --files %s "
              "--resume --output topic:out",
              cfg, m->bootstraps, dir_of("from-topic"), file);
  cr_assert_eq(rc, 2, "%s", out);
  cr_assert(strstr(out, "read topics, not files"), "%s", out);
  rc = it_cli(out, sizeof out,
              "replay %s --set kafka.brokers=%s --files %s --set "
              "operators.parse.format=json --state-dir %s",
              cfg, m->bootstraps, file, dir_of("json"));
  cr_assert_eq(rc, 2, "%s", out);
  cr_assert(strstr(out, "operators.parse.format=avro"), "%s", out);
  rs_mock_destroy(m);
}

/* exactly_once with outputs redirected: dead letters go to NAME.dlq, which
 * the engine must know up front like the configured dead-letter topics. */
Test(replay, exactly_once_redirect_writes_dead_letters, .timeout = 120) {
  rs_mock_t *m = it_cluster(1, 4, topics);
  cr_assert(m != NULL);
  cr_assert_eq(it_produce(m->bootstraps, "in", 600, 30, 50, "avro"), 12);
  const char *cfg = config_file();
  char out[16384];
  int rc = it_cli(out, sizeof out,
                  "replay %s --set kafka.brokers=%s --set "
                  "state.guarantee=exactly_once --state-dir %s --output "
                  "topic:backfill --progress none",
                  cfg, m->bootstraps, dir_of("eo"));
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "dead-lettered:      12"), "%s", out);
  cr_assert_eq(total_of(m->bootstraps, "backfill.dlq"), 12);
  cr_assert_eq(total_of(m->bootstraps, "backfill"), 600 - 12);
  rs_mock_destroy(m);
}

/* An operator failing during a files replay (no engine loop there) ends
 * the replay with exit 1 and the message, not an abort. */
Test(replay, files_replay_failure_is_reported, .timeout = 120) {
  char file[300], cfg[300], out[16384];
  snprintf(file, sizeof file, "%s-fail.avro", it_state_dir());
  int rc =
      it_cli(out, sizeof out, "generate --out %s --events 2000 --seed 3", file);
  cr_assert_eq(rc, 0, "%s", out);
  snprintf(cfg, sizeof cfg, "%s-fail.yaml", it_state_dir());
  FILE *f = fopen(cfg, "w");
  cr_assert(f != NULL);
  fprintf(f,
          "app: rpf\n"
          "plugins: [ \"%s/plugins/rs_test_checkpoint_counter.so\" ]\n"
          "sources: [ { name: in, topic: in } ]\n"
          "operators:\n"
          "  - { name: parse, type: parse, input: in, format: avro }\n"
          "  - { name: count, type: checkpoint_counter, input: parse }\n"
          "sinks: [ { name: out, input: count, topic: out, format: json } ]\n",
          RS_BINARY_DIR);
  fclose(f);
  setenv("RS_TEST_CC_FAIL", "1", 1);
  rc = it_cli(
      out, sizeof out,
      "replay %s --partitions 4 --files %s --state-dir %s --progress none", cfg,
      file, dir_of("fail"));
  unsetenv("RS_TEST_CC_FAIL");
  cr_assert_eq(rc, 1, "rc %d: %s", rc, out);
  cr_assert(strstr(out, "operator 'count'") && strstr(out, "--resume"), "%s",
            out);
}
