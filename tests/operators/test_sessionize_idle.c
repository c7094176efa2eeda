/* sessionize's `idle_close` through the harness, which delivers idle
 * batches on demand (rs_harness_idle: what the engine does once a
 * partition ran no record for idle_close of wall-clock time). An idle
 * batch steps the partition's watermark just past the latest close
 * deadline of its open sessions (docs/SESSIONS.md, "Idle partitions"):
 * waiting records are applied, every open session closes with its summary,
 * later records are judged against the new watermark; nothing changes
 * when nothing is open; other partitions are untouched; the step is the
 * one a record would make and survives a restart. Also: off by default,
 * option bounds, and a host without idle batches. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operators/harness.h"

extern const rs_operator_def_t rs_op_sessionize;

enum { OUT = 0, SESSIONS = 1, LATE = 2 };

static char err[1024];

static rs_harness_t *make(const char *const *options) {
  err[0] = '\0';
  rs_harness_t *h = rs_harness_new(&rs_op_sessionize, options, err, sizeof err);
  cr_assert_not_null(h, "rs_harness_new: %s", err);
  return h;
}

/* Pushes one interaction of `user` at event time t (offset counts up). */
static void push1(rs_harness_t *h, int32_t partition, const char *user,
                  int64_t t) {
  static int64_t offset = 0;
  rs_interaction_t ia = {.user = user,
                         .user_len = (uint32_t)strlen(user),
                         .item = "item",
                         .item_len = 4,
                         .event_type = RS_EVENT_VIEW,
                         .has_value = 1,
                         .value = 1.0,
                         .timestamp_ms = t};
  rs_record_t r = {.kind = RS_KIND_INTERACTION,
                   .key = user,
                   .key_len = strlen(user),
                   .value = "raw",
                   .value_len = 3,
                   .payload = &ia,
                   .timestamp_ms = t,
                   .src_partition = partition,
                   .src_offset = offset++};
  int rc = rs_harness_push(h, partition, &r, 1);
  cr_assert_eq(rc, 0, "push: %d %s", rc, rs_harness_errmsg(h));
}

static void idle(rs_harness_t *h, int32_t partition) {
  int rc = rs_harness_idle(h, partition);
  cr_assert_eq(rc, 0, "idle: %d %s", rc, rs_harness_errmsg(h));
}

/* Session summary i as "user [start,end] n=events late=late_events". */
static const char *summary(rs_harness_t *h, size_t i) {
  static char buf[256];
  const rs_record_t *r = rs_harness_emitted(h, SESSIONS, i);
  cr_assert_not_null(r, "no summary %zu (have %zu)", i,
                     rs_harness_emitted_count(h, SESSIONS));
  const rs_session_t *s = r->payload;
  snprintf(buf, sizeof buf, "%.*s [%" PRId64 ",%" PRId64 "] n=%" PRId64,
           (int)s->user_len, s->user, s->start_ms, s->end_ms, s->events);
  return buf;
}

/* Every summary from index `from` but those of user "~flush", in full,
 * one per line (malloc'ed). */
static char *all_summaries(rs_harness_t *h, size_t from) {
  size_t n = rs_harness_emitted_count(h, SESSIONS), len = 0;
  char *out = calloc(1, 256 * (n + 1));
  for (size_t i = from; i < n; i++) {
    const rs_session_t *s = rs_harness_emitted(h, SESSIONS, i)->payload;
    if (s->user_len == 6 && !memcmp(s->user, "~flush", 6))
      continue;
    len += (size_t)sprintf(
        out + len,
        "%.*s id=%" PRId64 " [%" PRId64 ",%" PRId64 "] n=%" PRId64
        " late=%" PRId64 " dwell=%.17g items=%u\n",
        (int)s->user_len, s->user, s->session_id, s->start_ms, s->end_ms,
        s->events, s->late_events, s->dwell_seconds, s->n_items);
  }
  return out;
}

/* The partition's stored watermark (meta entry "m", written every batch). */
static int64_t stored_watermark(rs_harness_t *h, int32_t partition) {
  const void *v;
  size_t n;
  cr_assert_eq(rs_harness_state_get(h, partition, "m", 1, &v, &n), 0);
  cr_assert_eq(n, 32);
  int64_t w;
  memcpy(&w, (const char *)v + 24, 8);
  return w;
}

#define GAP 10000
#define GRACE 5000

static const char *const opts_idle[] = {"gap",        "10s", "grace", "5s",
                                        "idle_close", "1m",  NULL};

Test(sessionize_idle, idle_batch_closes_open_sessions_with_summaries) {
  rs_harness_t *h = make(opts_idle);
  cr_assert_eq(rs_harness_idle_ms(h), 60000, "asked the host for 1m");
  push1(h, 0, "a", 0);
  push1(h, 0, "b", 500);
  push1(h, 0, "a", 1000);
  push1(h, 1, "c", 700);
  cr_assert_eq(rs_harness_emitted_count(h, OUT), 4);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 0);
  idle(h, 0);
  /* Both of partition 0's sessions, in (deadline, user, id) order: b's
   * ends first. Partition 1's stays open. */
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 2);
  cr_assert_str_eq(summary(h, 0), "b [500,500] n=1");
  cr_assert_str_eq(summary(h, 1), "a [0,1000] n=2");
  for (size_t i = 0; i < 2; i++) {
    const rs_record_t *r = rs_harness_emitted(h, SESSIONS, i);
    cr_assert_eq(r->src_partition, 0);
    cr_assert_eq(r->src_offset, -1, "no input record: src_offset -1");
    cr_assert_eq(r->src_ordinal, (uint32_t)i);
  }
  cr_assert_eq(rs_harness_counter(h, "sessions_closed"), 2);
  /* The watermark is just past a's deadline (end + gap + grace). */
  cr_assert_eq(stored_watermark(h, 0), 1000 + GAP + GRACE + 1);
  cr_assert_eq(rs_harness_emitted_count(h, OUT), 4, "no output but summaries");
  idle(h, 1);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 3);
  cr_assert_str_eq(summary(h, 2), "c [700,700] n=1");
  rs_harness_destroy(h);
}

Test(sessionize_idle, idle_batch_applies_waiting_records_first) {
  const char *opts[] = {
      "gap", "10s",        "grace", "5s", "max_out_of_orderness",
      "30s", "idle_close", "1m",    NULL};
  rs_harness_t *h = make(opts);
  push1(h, 0, "a", 20000);
  push1(h, 0, "a", 0); /* within the 30 s bound: both wait */
  cr_assert_eq(rs_harness_emitted_count(h, OUT), 0);
  idle(h, 0);
  /* Applied in event-time order, then closed as one session. */
  cr_assert_eq(rs_harness_emitted_count(h, OUT), 2);
  const rs_session_event_t *e0 = rs_harness_emitted(h, OUT, 0)->payload;
  const rs_session_event_t *e1 = rs_harness_emitted(h, OUT, 1)->payload;
  cr_assert_eq(e0->interaction->timestamp_ms, 0);
  cr_assert_eq(e1->interaction->timestamp_ms, 20000);
  cr_assert_eq(e1->since_prev_ms, -1, "20 s apart: a new session (gap 10s)");
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 2);
  cr_assert_str_eq(summary(h, 0), "a [0,0] n=1");
  cr_assert_str_eq(summary(h, 1), "a [20000,20000] n=1");
  cr_assert_eq(stored_watermark(h, 0), 20000 + GAP + GRACE + 1);
  rs_harness_destroy(h);
}

/* Records after an idle close are judged against the stepped watermark
 * W = 5000 + gap + grace + 1 = 20001, by the rules for late records. */
Test(sessionize_idle,
     records_after_an_idle_close_are_judged_by_the_new_watermark) {
  rs_harness_t *h = make(opts_idle);
  push1(h, 0, "a", 0);
  push1(h, 0, "a", 5000);
  idle(h, 0);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 1);
  cr_assert_eq(stored_watermark(h, 0), 20001);
  /* Within the gap after a's closed session: its session was emitted, so
   * the record goes to port late, unchanged. */
  push1(h, 0, "a", 8000);
  cr_assert_eq(rs_harness_emitted_count(h, LATE), 1);
  cr_assert_eq(rs_harness_emitted(h, LATE, 0)->timestamp_ms, 8000);
  /* Late, but a session of its own would still be open at W (its deadline
   * 7000 + 15000 >= 20001): accepted, marked late. */
  push1(h, 0, "b", 7000);
  cr_assert_eq(rs_harness_emitted_count(h, OUT), 3);
  const rs_session_event_t *eb = rs_harness_emitted(h, OUT, 2)->payload;
  cr_assert_eq(eb->late, 1);
  /* Beyond grace even for a session of its own: port late. */
  push1(h, 0, "c", 1000);
  cr_assert_eq(rs_harness_emitted_count(h, LATE), 2);
  cr_assert_eq(rs_harness_counter(h, "late_records"), 2);
  /* At the watermark or after: on time, a new session. */
  push1(h, 0, "a", 20001);
  cr_assert_eq(rs_harness_emitted_count(h, OUT), 4);
  const rs_session_event_t *ea = rs_harness_emitted(h, OUT, 3)->payload;
  cr_assert_eq(ea->late, 0);
  cr_assert_eq(ea->since_prev_ms, -1);
  /* And event time closes what opened since, as usual. */
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 1);
  push1(h, 0, "z", 60000);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 3);
  cr_assert_str_eq(summary(h, 1), "b [7000,7000] n=1");
  cr_assert_str_eq(summary(h, 2), "a [20001,20001] n=1");
  rs_harness_destroy(h);
}

Test(sessionize_idle, idle_batch_with_nothing_open_emits_nothing) {
  rs_harness_t *h = make(opts_idle);
  idle(h, 0); /* a partition never seen */
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 0);
  push1(h, 0, "a", 0);
  push1(h, 0, "z", 100000); /* closes a by event time */
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 1);
  idle(h, 0); /* z's session is open: closed */
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 2);
  int64_t w = stored_watermark(h, 0);
  cr_assert_eq(w, 100000 + GAP + GRACE + 1);
  idle(h, 0); /* nothing open: nothing emitted, watermark unchanged */
  idle(h, 3);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 2);
  cr_assert_eq(rs_harness_emitted_count(h, OUT), 2);
  cr_assert_eq(stored_watermark(h, 0), w);
  cr_assert_eq(rs_harness_counter(h, "sessions_closed"), 2);
  rs_harness_destroy(h);
}

/* The idle step is the one a record moving the watermark to the same
 * place makes: the same summaries, in the same order, and the same
 * handling of what follows. */
Test(sessionize_idle, idle_step_equals_the_step_a_record_would_make) {
  const char *opts[] = {
      "gap", "10s",        "grace", "5s", "max_out_of_orderness",
      "2s",  "idle_close", "1m",    NULL};
  rs_harness_t *a = make(opts), *b = make(opts);
  const char *users[] = {"u1", "u2", "u3", "u4"};
  int64_t t[] = {0, 300, 9000, 1200, 15000, 14000, 16500, 23000, 22000};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    push1(a, 0, users[i % 4], t[i]);
    push1(b, 0, users[i % 4], t[i]);
  }
  idle(a, 0);
  /* b: a record far enough ahead that its watermark lands where a's did;
   * its own event and session are then discarded from the comparison. */
  int64_t w = stored_watermark(a, 0);
  push1(b, 0, "~flush", w + 2000);
  cr_assert_eq(stored_watermark(b, 0), w);
  char *sa = all_summaries(a, 0), *sb = all_summaries(b, 0);
  cr_assert_gt(rs_harness_emitted_count(a, SESSIONS), 3);
  cr_assert_str_eq(sa, sb);
  free(sa);
  free(sb);
  /* The same records afterwards give the same outputs. */
  size_t fa = rs_harness_emitted_count(a, SESSIONS),
         fb = rs_harness_emitted_count(b, SESSIONS);
  int64_t later[] = {w - 100, w + 10, 3000, w + 40000};
  for (size_t i = 0; i < 4; i++) {
    push1(a, 0, users[i], later[i]);
    push1(b, 0, users[i], later[i]);
  }
  sa = all_summaries(a, fa);
  sb = all_summaries(b, fb);
  cr_assert_str_eq(sa, sb);
  free(sa);
  free(sb);
  cr_assert_eq(rs_harness_counter(a, "late_records"),
               rs_harness_counter(b, "late_records"));
  rs_harness_destroy(a);
  rs_harness_destroy(b);
}

Test(sessionize_idle, idle_step_survives_a_restart) {
  rs_harness_t *h = make(opts_idle);
  push1(h, 0, "a", 0);
  idle(h, 0);
  cr_assert_eq(rs_harness_checkpoint(h), 0, "%s", rs_harness_errmsg(h));
  cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
  cr_assert_eq(rs_harness_idle_ms(h), 60000, "asked again in init()");
  /* The stepped watermark came back with the state: a record within the
   * gap after a's closed session is late. */
  push1(h, 0, "a", 3000);
  cr_assert_eq(rs_harness_emitted_count(h, LATE), 1);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 1);
  idle(h, 0);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 1, "nothing open");
  rs_harness_destroy(h);
}

Test(sessionize_idle, off_by_default) {
  const char *opts[] = {"gap", "10s", "grace", "5s", NULL};
  rs_harness_t *h = make(opts);
  cr_assert_eq(rs_harness_idle_ms(h), 0, "asks for no idle batches");
  cr_assert_eq(rs_harness_idle(h, 0), RS_EINVAL);
  push1(h, 0, "a", 0);
  /* An empty batch is no idle batch for an instance that did not ask. */
  cr_assert_eq(rs_harness_push(h, 0, NULL, 0), 0);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 0);
  rs_harness_destroy(h);
}

Test(sessionize_idle, option_bounds_and_a_host_without_idle_batches) {
  const char *neg[] = {"grace", "5s", "idle_close", "-1s", NULL};
  cr_assert_null(rs_harness_new(&rs_op_sessionize, neg, err, sizeof err));
  cr_assert(strstr(err, "idle_close") != NULL, "%s", err);
  const char *big[] = {"grace", "5s", "idle_close", "2d", NULL};
  cr_assert_null(rs_harness_new(&rs_op_sessionize, big, err, sizeof err));
  cr_assert(strstr(err, "idle_close") != NULL, "%s", err);
  const char *bad[] = {"grace", "5s", "idle_close", "soon", NULL};
  cr_assert_null(rs_harness_new(&rs_op_sessionize, bad, err, sizeof err));
  cr_assert(strstr(err, "idle_close") != NULL, "%s", err);
  /* An older host (no idle_notify): it runs, says that idle_close is
   * ignored, and sessions close by event time only. */
  rs_harness_t *h = make(opts_idle);
  rs_harness_set_host_struct_size(
      h, (uint32_t)offsetof(rs_host_api_t, idle_notify));
  cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
  cr_assert_eq(rs_harness_idle_ms(h), 0);
  int found = 0;
  for (size_t i = 0; i < rs_harness_log_count(h); i++) {
    int level;
    const char *line = rs_harness_log_line(h, i, &level);
    found |= level == RS_LOG_WARN && strstr(line, "idle_close is ignored");
  }
  cr_assert(found, "a warning names idle_close");
  push1(h, 0, "a", 0);
  cr_assert_eq(rs_harness_push(h, 0, NULL, 0), 0);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 0);
  rs_harness_destroy(h);
}
