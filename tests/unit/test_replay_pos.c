/* The grammar of `recstream replay --from/--to` positions (engine/replay.c):
 * ISO-8601 times against known epoch values, relative times, offsets, and
 * every malformed form refused with a message. */
#include <criterion/criterion.h>
#include <string.h>

#include "recstream/error.h"
#include "replay.h"

static const int64_t now = 1795000000000LL;

static rs_pos_t ok(const char *s) {
  rs_pos_t p;
  char err[512];
  cr_assert_eq(rs_pos_parse(s, now, &p, err, sizeof err), 0, "%s: %s", s, err);
  return p;
}

Test(replay_pos, iso8601_times) {
  struct {
    const char *s;
    int64_t ms;
  } cases[] = {
      {"1970-01-01T00:00:00Z", 0},
      {"2026-01-01T00:00:00Z", 1767225600000LL},
      {"2026-11-01T00:00:00Z", 1793491200000LL},
      {"2026-11-01T01:00:00+01:00", 1793491200000LL},
      {"2026-10-31T19:30:00-04:30", 1793491200000LL},
      {"2026-11-01T00:00:00.250Z", 1793491200250LL},
      {"2026-11-01T00:00:00.5Z", 1793491200500LL},
      {"2026-11-01T00:00:00.123456Z", 1793491200123LL},
      {"2024-02-29T12:00:00Z", 1709208000000LL},
      {"2000-03-01T00:00:00z", 951868800000LL},
      {"1969-12-31T23:59:59Z", -1000},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int64_t ms = 0;
    cr_assert_eq(rs_parse_iso8601(cases[i].s, &ms), 0, "%s", cases[i].s);
    cr_assert_eq(ms, cases[i].ms, "%s: %lld", cases[i].s, (long long)ms);
    rs_pos_t p = ok(cases[i].s);
    cr_assert_eq(p.kind, RS_POS_TIME);
    cr_assert_eq(p.time_ms, cases[i].ms);
  }
}

Test(replay_pos, relative_times_and_keywords) {
  cr_assert_eq(ok("-6h").time_ms, now - 6 * 3600000LL);
  cr_assert_eq(ok("-30m").time_ms, now - 30 * 60000LL);
  cr_assert_eq(ok("-90s").time_ms, now - 90000);
  cr_assert_eq(ok("-2d").time_ms, now - 2 * 86400000LL);
  cr_assert_eq(ok("-500ms").time_ms, now - 500);
  cr_assert_eq(ok("-0s").time_ms, now);
  cr_assert_eq(ok("earliest").kind, RS_POS_EARLIEST);
  cr_assert_eq(ok("latest").kind, RS_POS_LATEST);
  cr_assert_eq(ok("now").kind, RS_POS_LATEST);
}

Test(replay_pos, offsets) {
  rs_pos_t p = ok("0:100,1:250,in.topic-x:3:7");
  cr_assert_eq(p.kind, RS_POS_OFFSETS);
  cr_assert_eq(p.n_offsets, 3);
  cr_assert_null(p.offsets[0].topic);
  cr_assert_eq(p.offsets[0].partition, 0);
  cr_assert_eq(p.offsets[0].offset, 100);
  cr_assert_eq(p.offsets[1].partition, 1);
  cr_assert_eq(p.offsets[1].offset, 250);
  cr_assert_str_eq(p.offsets[2].topic, "in.topic-x");
  cr_assert_eq(p.offsets[2].partition, 3);
  cr_assert_eq(p.offsets[2].offset, 7);
  rs_pos_free(&p);
}

Test(replay_pos, malformed_positions_are_refused) {
  const char *bad[] = {"",
                       "yesterday",
                       "2026-13-01T00:00:00Z",
                       "2026-02-30T00:00:00Z",
                       "2025-02-29T00:00:00Z",
                       "2026-11-01T24:00:00Z",
                       "2026-11-01T00:00:00",
                       "2026-11-01",
                       "2026-11-01T00:00:00.Z",
                       "2026-11-01T00:00:00+1:00",
                       "2026-11-01T00:00:00Z junk",
                       "-6",
                       "-6x",
                       "--6h",
                       "-h",
                       "-99999999999999999999d",
                       "-9223372036854775807d",
                       "0:",
                       ":5",
                       "0:-1",
                       "a:b",
                       "0:1,",
                       "0:1,,2:3",
                       "t:0:1:2",
                       ":0:1",
                       "0:99999999999999999999",
                       "0:9999999999999999999",
                       "99999999999:0"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    rs_pos_t p;
    char err[512] = "";
    cr_assert_eq(rs_pos_parse(bad[i], now, &p, err, sizeof err), RS_EINVAL,
                 "'%s' was accepted", bad[i]);
    cr_assert(err[0] != '\0', "'%s': no message", bad[i]);
  }
}

/* One offset per partition: a partition listed twice (or a bare P:O and a
 * TOPIC:P:O for the same P) is refused, not settled by the order of the
 * list; different topics' partitions of one number are two partitions. */
Test(replay_pos, a_partition_listed_twice_is_refused) {
  struct {
    const char *s, *want;
  } cases[] = {
      {"0:10,0:20", "'0:20': partition 0 is already given by '0:10'; list "
                    "each partition once"},
      {"1:5,0:10,2:7,0:10", "'0:10': partition 0 is already given by '0:10'"},
      {"in:3:1,x:3:2,in:3:9", "'in:3:9': partition 3 of topic in is already "
                              "given by 'in:3:1'; list each partition once"},
      {"0:10,in:0:20", "'in:0:20': partition 0 of topic in is already given "
                       "by '0:10'; list each partition once (P:O without a "
                       "topic stands for partition P of every source topic)"},
      {"in:0:20,0:10", "'0:10': partition 0 of topic in is already given by "
                       "'in:0:20'"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    rs_pos_t p;
    char err[512] = "";
    cr_assert_eq(rs_pos_parse(cases[i].s, now, &p, err, sizeof err), RS_EINVAL,
                 "'%s' was accepted", cases[i].s);
    cr_assert(strstr(err, cases[i].want), "'%s': %s", cases[i].s, err);
  }
  rs_pos_t p = ok("in:0:1,x:0:2,1:3,in:2:4");
  cr_assert_eq(p.n_offsets, 4);
  rs_pos_free(&p);
}

/* How the time seek uses a real answer of rd_kafka_offsets_for_times (the
 * embedded broker never gives one; tests/integration/test_replay_broker.c
 * asks a real broker when RS_TEST_KAFKA_BROKERS is set). */
Test(replay_pos, broker_answer_to_offsets_for_times) {
  const rd_kafka_resp_err_t ok_ = RD_KAFKA_RESP_ERR_NO_ERROR;
  struct {
    rd_kafka_resp_err_t err, part_err;
    int64_t offset, lo, hi;
    int used;
    int64_t want;
  } cases[] = {
      /* An offset in the range is the answer as it is. */
      {ok_, ok_, 1500, 1000, 2000, 1, 1500},
      {ok_, ok_, 1000, 1000, 2000, 1, 1000},
      {ok_, ok_, 1999, 1000, 2000, 1, 1999},
      {ok_, ok_, 0, 0, 1, 1, 0},
      /* Records appended since the plan: none in [lo, hi) is that late. */
      {ok_, ok_, 2000, 1000, 2000, 1, 2000},
      {ok_, ok_, 2500, 1000, 2000, 1, 2000},
      /* Below the range (cannot happen: held to it all the same). */
      {ok_, ok_, 10, 1000, 2000, 1, 1000},
      /* -1: no record that late on a real broker, every time on the
       * embedded one: the search decides. */
      {ok_, ok_, -1, 1000, 2000, 0, -7},
      /* No answer: the call or the partition failed. */
      {RD_KAFKA_RESP_ERR__TIMED_OUT, ok_, 1500, 1000, 2000, 0, -7},
      {ok_, RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION, 1500, 1000, 2000, 0, -7},
      {ok_, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 1500, 1000, 2000, 0,
       -7},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int64_t out = -7;
    int used =
        rs_seek_broker_answer(cases[i].err, cases[i].part_err, cases[i].offset,
                              cases[i].lo, cases[i].hi, &out);
    cr_assert_eq(used, cases[i].used, "case %zu: used %d", i, used);
    cr_assert_eq(out, cases[i].want, "case %zu: %lld", i, (long long)out);
  }
}
