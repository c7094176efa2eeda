/* Tests of the `sessionize` operator through the harness (real store and
 * cache): sessions of in-order streams with every output field checked,
 * the gap and close boundaries from both sides, disorder within the
 * watermark bound changing nothing, late records extending, merging,
 * starting sessions or going to the late port, max_session_duration
 * splits, the max_events bound on state, restarts (clean and crash) in
 * the middle of open sessions and pending records, batching not
 * mattering, per-partition watermarks, the state_ttl purge, dead letters,
 * option errors and corrupt state. Then a property test: 1,200 random
 * streams with bounded disorder against a reference written from the
 * definition in docs/SESSIONS.md. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operators/harness.h"

extern const rs_operator_def_t rs_op_sessionize;

enum { OUT = 0, SESSIONS = 1, LATE = 2 };

static char err[1024];

static rs_harness_t *make(const char *const *options) {
  err[0] = '\0';
  rs_harness_t *h =
      rs_harness_new(&rs_op_sessionize, options, err, sizeof(err));
  cr_assert_not_null(h, "rs_harness_new: %s", err);
  return h;
}

/* An input event; strings are copied in so a stream owns its bytes. */
typedef struct ev {
  char user[16];
  char item[16];
  int type;
  int has_value;
  double value;
  int64_t t;
  int64_t offset;
  rs_interaction_t ia;
  rs_record_t rec;
} ev_t;

static void ev_set(ev_t *e, const char *user, const char *item, int type,
                   int64_t t, int64_t offset) {
  memset(e, 0, sizeof(*e));
  snprintf(e->user, sizeof e->user, "%s", user);
  snprintf(e->item, sizeof e->item, "%s", item);
  e->type = type;
  e->has_value = type != RS_EVENT_CLICK;
  e->value = type == RS_EVENT_RATING ? 4.0 : 1.5;
  e->t = t;
  e->offset = offset;
}

/* Builds the record (pointers into e, which must not move until pushed). */
static rs_record_t *ev_rec(ev_t *e, int32_t partition) {
  e->ia = (rs_interaction_t){.user = e->user,
                             .user_len = (uint32_t)strlen(e->user),
                             .item = e->item,
                             .item_len = (uint32_t)strlen(e->item),
                             .event_type = e->type,
                             .has_value = e->has_value,
                             .value = e->value,
                             .timestamp_ms = e->t};
  e->rec = (rs_record_t){.kind = RS_KIND_INTERACTION,
                         .key = e->user,
                         .key_len = strlen(e->user),
                         .value = "raw",
                         .value_len = 3,
                         .payload = &e->ia,
                         .timestamp_ms = e->t,
                         .src_partition = partition,
                         .src_offset = e->offset};
  return &e->rec;
}

/* Pushes events[0..n) in batches of `batch` records. */
static int push_n(rs_harness_t *h, int32_t partition, ev_t *events, size_t n,
                  size_t batch) {
  rs_record_t recs[256];
  cr_assert_leq(batch, 256);
  for (size_t i = 0; i < n; i += batch) {
    size_t m = n - i < batch ? n - i : batch;
    for (size_t k = 0; k < m; k++)
      recs[k] = *ev_rec(&events[i + k], partition);
    int rc = rs_harness_push(h, partition, recs, m);
    if (rc)
      return rc;
  }
  return 0;
}

static void push_ok(rs_harness_t *h, int32_t partition, ev_t *events,
                    size_t n) {
  int rc = push_n(h, partition, events, n, 1);
  cr_assert_eq(rc, 0, "push: %s (%d)", rs_harness_errmsg(h), rc);
}

/* One event pushed alone. */
static void push1(rs_harness_t *h, int32_t partition, const char *user,
                  const char *item, int type, int64_t t) {
  static int64_t offset = 0;
  ev_t e;
  ev_set(&e, user, item, type, t, offset++);
  push_ok(h, partition, &e, 1);
}

static int64_t fnv_id(const char *user, int64_t start) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const char *p = user; *p; p++)
    h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
  for (int i = 0; i < 8; i++)
    h = (h ^ (unsigned char)((uint64_t)start >> (8 * i))) * 0x100000001b3ull;
  return (int64_t)(h & (uint64_t)INT64_MAX);
}

static const rs_session_t *session(rs_harness_t *h, size_t i) {
  const rs_record_t *r = rs_harness_emitted(h, SESSIONS, i);
  cr_assert_not_null(r, "no session %zu (have %zu)", i,
                     rs_harness_emitted_count(h, SESSIONS));
  cr_assert_eq(r->kind, RS_KIND_SESSION);
  cr_assert_not_null(r->payload);
  const rs_session_t *s = r->payload;
  cr_assert_eq(r->key_len, s->user_len);
  cr_assert(!memcmp(r->key, s->user, s->user_len));
  cr_assert_eq(r->timestamp_ms, s->end_ms);
  return s;
}

static const rs_session_event_t *event(rs_harness_t *h, size_t i) {
  const rs_record_t *r = rs_harness_emitted(h, OUT, i);
  cr_assert_not_null(r, "no event %zu (have %zu)", i,
                     rs_harness_emitted_count(h, OUT));
  cr_assert_eq(r->kind, RS_KIND_SESSION_EVENT);
  const rs_session_event_t *se = r->payload;
  cr_assert_not_null(se);
  cr_assert_not_null(se->interaction);
  cr_assert_eq(r->timestamp_ms, se->interaction->timestamp_ms);
  return se;
}

static int user_is(const rs_session_t *s, const char *user) {
  return s->user_len == strlen(user) && !memcmp(s->user, user, s->user_len);
}

static void fmt_session(const rs_session_t *s, char *buf, size_t size) {
  int n =
      snprintf(buf, size,
               "%.*s id=%" PRId64 " [%" PRId64 ",%" PRId64 "] n=%" PRId64
               " c=%" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64
               " dwell=%.17g rating=%.17g late=%" PRId64 " summ=%" PRId64
               " split=%d items=",
               (int)s->user_len, s->user, s->session_id, s->start_ms, s->end_ms,
               s->events, s->counts[0], s->counts[1], s->counts[2],
               s->counts[3], s->counts[4], s->dwell_seconds, s->rating_sum,
               s->late_events, s->summarised_events, s->split);
  for (uint32_t i = 0; i < s->n_items && n > 0 && (size_t)n < size; i++)
    n += snprintf(buf + n, size - (size_t)n, "%.*s:%" PRId64 ",",
                  (int)s->items[i].item_len, s->items[i].item,
                  s->items[i].count);
  for (uint32_t i = 0; i < s->n_merged && n > 0 && (size_t)n < size; i++)
    n += snprintf(buf + n, size - (size_t)n, " m%" PRId64, s->merged_ids[i]);
}

static void fmt_event(const rs_record_t *r, char *buf, size_t size) {
  const rs_session_event_t *se = r->payload;
  const rs_interaction_t *ia = se->interaction;
  snprintf(buf, size,
           "%.*s %.*s t=%" PRId64 " id=%" PRId64 " start=%" PRId64
           " pos=%" PRId64 " prev=%" PRId64 " late=%d",
           (int)ia->user_len, ia->user, (int)ia->item_len, ia->item,
           ia->timestamp_ms, se->session_id, se->session_start_ms, se->position,
           se->since_prev_ms, se->late);
}

/* Every output of port `port` from index `from`, one line each, into a
 * malloc'ed string; with src positions when `src` is set. */
static char *dump(rs_harness_t *h, uint32_t port, size_t from, int src) {
  size_t cap = 4096, len = 0;
  char *out = malloc(cap);
  out[0] = '\0';
  for (size_t i = from; i < rs_harness_emitted_count(h, port); i++) {
    const rs_record_t *r = rs_harness_emitted(h, port, i);
    char line[4096];
    if (port == SESSIONS)
      fmt_session(r->payload, line, sizeof line);
    else if (port == OUT)
      fmt_event(r, line, sizeof line);
    else
      snprintf(line, sizeof line, "%.*s t=%" PRId64, (int)r->key_len,
               (const char *)r->key, r->timestamp_ms);
    size_t ll = strlen(line) + 64;
    if (len + ll + 1 > cap) {
      cap = 2 * (len + ll + 1);
      out = realloc(out, cap);
    }
    if (src)
      len +=
          (size_t)sprintf(out + len, "%s @%d/%" PRId64 "/%u\n", line,
                          (int)r->src_partition, r->src_offset, r->src_ordinal);
    else
      len += (size_t)sprintf(out + len, "%s\n", line);
  }
  return out;
}

/* The stored entry of `user` (USER layout, docs/SESSIONS.md) as of a
 * checkpoint taken now: the operator keeps entries in memory and writes
 * them, grouped in buckets, at checkpoints. 0 with *v and *n (borrowed
 * until the next harness call), or RS_ENOENT. */
static int user_state(rs_harness_t *h, int32_t partition, const char *user,
                      const unsigned char **v, size_t *n) {
  cr_assert_eq(rs_harness_checkpoint(h), 0, "%s", rs_harness_errmsg(h));
  const void *mv;
  size_t mn;
  if (rs_harness_state_get(h, partition, "m", 1, &mv, &mn))
    return RS_ENOENT;
  const unsigned char *m = mv;
  cr_assert_eq(mn, 32);
  cr_assert_eq(m[0], 2, "meta version");
  size_t ul = strlen(user);
  uint64_t x = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < ul; i++)
    x = (x ^ (unsigned char)user[i]) * 0x100000001b3ull;
  x ^= x >> 29;
  uint32_t b = (uint32_t)(x & ((1u << m[1]) - 1));
  unsigned char key[5] = {'s', (unsigned char)(b >> 24),
                          (unsigned char)(b >> 16), (unsigned char)(b >> 8),
                          (unsigned char)b};
  const void *bv;
  size_t bn;
  if (rs_harness_state_get(h, partition, key, sizeof key, &bv, &bn))
    return RS_ENOENT;
  const unsigned char *p = bv;
  cr_assert_geq(bn, 8);
  cr_assert_eq(p[0], 1, "bucket version");
  uint32_t count;
  memcpy(&count, p + 4, 4);
  size_t off = 8;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t len[2];
    cr_assert_leq(off + 8, bn);
    memcpy(len, p + off, 8);
    cr_assert_leq(off + 8 + len[0] + len[1], bn);
    if (len[0] == ul && !memcmp(p + off + 8, user, ul)) {
      *v = p + off + 8 + ul;
      *n = len[1];
      return 0;
    }
    off += 8 + len[0] + len[1];
  }
  cr_assert_eq(off, bn, "bucket length");
  return RS_ENOENT;
}

/* ------------------------------------------------------------------ */

Test(sessionize, in_order_sessions_and_every_output_field) {
  const char *opts[] = {"gap", "30s", "grace", "0s", NULL};
  rs_harness_t *h = make(opts);
  push1(h, 0, "alice", "i1", RS_EVENT_VIEW, 1000);
  push1(h, 0, "bob", "i9", RS_EVENT_CLICK, 5000);
  push1(h, 0, "alice", "i2", RS_EVENT_CLICK, 11000);
  push1(h, 0, "alice", "i1", RS_EVENT_RATING, 21000);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 0);
  cr_assert_eq(rs_harness_emitted_count(h, OUT), 4);

  int64_t aid = fnv_id("alice", 1000), bid = fnv_id("bob", 5000);
  const rs_session_event_t *e = event(h, 0);
  cr_assert_eq(e->session_id, aid);
  cr_assert_eq(e->position, 1);
  cr_assert_eq(e->since_prev_ms, -1);
  cr_assert_eq(e->session_start_ms, 1000);
  cr_assert_eq(e->late, 0);
  e = event(h, 1);
  cr_assert_eq(e->session_id, bid);
  cr_assert_eq(e->position, 1);
  e = event(h, 2);
  cr_assert_eq(e->session_id, aid);
  cr_assert_eq(e->position, 2);
  cr_assert_eq(e->since_prev_ms, 10000);
  cr_assert_eq(e->session_start_ms, 1000);
  cr_assert_str_eq(e->interaction->item, "i2");
  e = event(h, 3);
  cr_assert_eq(e->position, 3);
  cr_assert_eq(e->since_prev_ms, 10000);

  /* W = 60 s: bob's deadline 35 s and alice's 51 s have passed. */
  push1(h, 0, "carol", "i5", RS_EVENT_VIEW, 60000);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 2);
  const rs_session_t *b = session(h, 0), *a = session(h, 1);
  cr_assert(user_is(b, "bob"), "closing order is by deadline");
  cr_assert(user_is(a, "alice"));
  cr_assert_eq(a->session_id, aid);
  cr_assert_eq(a->start_ms, 1000);
  cr_assert_eq(a->end_ms, 21000);
  cr_assert_eq(a->events, 3);
  cr_assert_eq(a->counts[RS_EVENT_VIEW], 1);
  cr_assert_eq(a->counts[RS_EVENT_CLICK], 1);
  cr_assert_eq(a->counts[RS_EVENT_RATING], 1);
  cr_assert_eq(a->counts[RS_EVENT_PURCHASE], 0);
  cr_assert_eq(a->dwell_seconds, 1.5);
  cr_assert_eq(a->rating_sum, 4.0);
  cr_assert_eq(a->n_items, 2);
  cr_assert_eq(a->items[0].item_len, 2);
  cr_assert(!memcmp(a->items[0].item, "i1", 2));
  cr_assert_eq(a->items[0].count, 2);
  cr_assert(!memcmp(a->items[1].item, "i2", 2));
  cr_assert_eq(a->items[1].count, 1);
  cr_assert_eq(a->summarised_events, 0);
  cr_assert_eq(a->late_events, 0);
  cr_assert_eq(a->split, 0);
  cr_assert_eq(a->n_merged, 0);
  cr_assert_eq(b->session_id, bid);
  cr_assert_eq(b->events, 1);
  cr_assert_eq(b->dwell_seconds, 0.0);

  /* Summaries carry the position of the record that moved the
   * watermark. */
  const rs_record_t *r = rs_harness_emitted(h, SESSIONS, 1);
  cr_assert_eq(r->src_offset, rs_harness_emitted(h, OUT, 4)->src_offset);
  cr_assert_eq(rs_harness_counter(h, "sessions_closed"), 2);
  cr_assert_eq(rs_harness_counter(h, "sessions_opened"), 3);
  cr_assert_eq(rs_harness_counter(h, "late_records"), 0);
  /* Closed sessions leave state: alice keeps only her horizon entry. */
  const unsigned char *v;
  size_t n;
  cr_assert_eq(user_state(h, 0, "alice", &v, &n), 0);
  cr_assert_eq(n, 16, "closed sessions are removed from state");
  rs_harness_destroy(h);
}

Test(sessionize, gap_is_inclusive_on_both_sides) {
  /* gap 10 s: exactly 10 s apart is one session, 10.001 s apart two. */
  const char *opts[] = {"gap", "10s", "grace", "0s", NULL};
  rs_harness_t *h = make(opts);
  push1(h, 0, "a", "i", RS_EVENT_VIEW, 0);
  push1(h, 0, "b", "i", RS_EVENT_VIEW, 0);
  push1(h, 0, "a", "i", RS_EVENT_VIEW, 10000);
  push1(h, 0, "b", "i", RS_EVENT_VIEW, 10001);
  cr_assert_eq(event(h, 2)->session_id, fnv_id("a", 0));
  cr_assert_eq(event(h, 2)->position, 2);
  cr_assert_eq(event(h, 3)->session_id, fnv_id("b", 10001));
  cr_assert_eq(event(h, 3)->position, 1);
  /* b's first session [0,0] closed once W > 0 + 10 s: at W = 10.001 s. */
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 1);
  cr_assert(user_is(session(h, 0), "b"));
  cr_assert_eq(session(h, 0)->events, 1);

  /* Closing: a's session [0,10 s] has deadline 20 s. W = 20 s exactly
   * keeps it open (an event at 20 s would still join it)... */
  push1(h, 0, "c", "i", RS_EVENT_VIEW, 20000);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 1);
  push1(h, 0, "a", "i", RS_EVENT_VIEW, 20000);
  cr_assert_eq(event(h, 5)->session_id, fnv_id("a", 0));
  cr_assert_eq(event(h, 5)->position, 3);
  /* ...its deadline is now 30 s; W = 30.001 s closes it. */
  push1(h, 0, "c", "i", RS_EVENT_VIEW, 30000);
  size_t before = rs_harness_emitted_count(h, SESSIONS);
  cr_assert_eq(before, 2); /* b's second session [10.001,10.001] */
  push1(h, 0, "c", "i", RS_EVENT_VIEW, 30001);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), before + 1);
  cr_assert(user_is(session(h, before), "a"));
  cr_assert_eq(session(h, before)->events, 3);
  cr_assert_eq(session(h, before)->end_ms, 20000);
  rs_harness_destroy(h);
}

/* A fixed stream of several users with sessions, as events sorted by
 * time: 40 events, user k acting every 3-9 s with pauses. */
static size_t fixed_stream(ev_t *out) {
  size_t n = 0;
  int64_t t = 100000;
  for (int i = 0; i < 40; i++) {
    char user[8], item[8];
    snprintf(user, sizeof user, "u%d", (i * 7) % 4);
    snprintf(item, sizeof item, "i%d", (i * 5) % 6);
    t += 300 + (i % 5) * 900 + (i % 9 == 0 ? 25000 : 0);
    ev_set(&out[n], user, item, i % 5, t, n);
    n++;
  }
  return n;
}

Test(sessionize, disorder_within_the_bound_changes_nothing) {
  const char *opts[] = {"gap", "12s", "grace", "2s", "max_out_of_orderness",
                        "8s",  NULL};
  ev_t sorted[64], shuffled[64];
  size_t n = fixed_stream(sorted);
  /* Arrival order: sort by t + jitter with jitter in [0, 8 s], so every
   * event is at most 8 s older than the newest before it. */
  int64_t key[64];
  for (size_t i = 0; i < n; i++) {
    shuffled[i] = sorted[i];
    key[i] = sorted[i].t + (int64_t)((i * 7919) % 13) * 600;
  }
  for (size_t i = 1; i < n; i++)
    for (size_t j = i; j > 0 && key[j - 1] > key[j]; j--) {
      ev_t te = shuffled[j];
      shuffled[j] = shuffled[j - 1];
      shuffled[j - 1] = te;
      int64_t tk = key[j];
      key[j] = key[j - 1];
      key[j - 1] = tk;
    }
  int moved = 0;
  for (size_t i = 0; i < n; i++)
    moved += shuffled[i].t != sorted[i].t;
  cr_assert_gt(moved, 10, "the shuffle must actually reorder");
  /* Offsets follow arrival order in both streams. */
  for (size_t i = 0; i < n; i++)
    shuffled[i].offset = sorted[i].offset = (int64_t)i;

  rs_harness_t *a = make(opts), *b = make(opts);
  push_ok(a, 0, sorted, n);
  push_ok(b, 0, shuffled, n);
  /* Flush: one far event closes everything. */
  push1(a, 0, "zz", "i", RS_EVENT_VIEW, 10000000);
  push1(b, 0, "zz", "i", RS_EVENT_VIEW, 10000000);
  char *ea = dump(a, OUT, 0, 0), *eb = dump(b, OUT, 0, 0);
  char *sa = dump(a, SESSIONS, 0, 0), *sb = dump(b, SESSIONS, 0, 0);
  cr_assert_str_eq(eb, ea);
  cr_assert_str_eq(sb, sa);
  cr_assert_gt(rs_harness_emitted_count(a, SESSIONS), 5);
  cr_assert_eq(rs_harness_emitted_count(b, LATE), 0);
  cr_assert_eq(rs_harness_counter(b, "late_accepted"), 0);
  /* Positions are event-time ranks: since_prev is never negative. */
  for (size_t i = 0; i < rs_harness_emitted_count(b, OUT); i++)
    cr_assert(event(b, i)->since_prev_ms >= -1);
  free(ea);
  free(eb);
  free(sa);
  free(sb);
  rs_harness_destroy(a);
  rs_harness_destroy(b);
}

Test(sessionize, records_wait_for_the_watermark) {
  const char *opts[] = {"gap", "10s", "grace", "0s", "max_out_of_orderness",
                        "5s",  NULL};
  rs_harness_t *h = make(opts);
  push1(h, 0, "a", "i1", RS_EVENT_VIEW, 10000);
  push1(h, 0, "a", "i2", RS_EVENT_VIEW, 8000); /* within 5 s: not late */
  cr_assert_eq(rs_harness_emitted_count(h, OUT), 0, "W = 5 s: both wait");
  push1(h, 0, "b", "i", RS_EVENT_VIEW, 14000); /* W = 9 s */
  cr_assert_eq(rs_harness_emitted_count(h, OUT), 1);
  cr_assert_eq(event(h, 0)->interaction->timestamp_ms, 8000);
  ev_t rel;
  ev_set(&rel, "b", "i", RS_EVENT_VIEW, 15000, 42);
  push_ok(h, 0, &rel, 1); /* W = 10 s */
  cr_assert_eq(rs_harness_emitted_count(h, OUT), 2);
  const rs_session_event_t *e = event(h, 1);
  cr_assert_eq(e->interaction->timestamp_ms, 10000);
  cr_assert_eq(e->position, 2);
  cr_assert_eq(e->since_prev_ms, 2000);
  cr_assert_eq(e->session_id, fnv_id("a", 8000));
  /* The released record's output carries the releasing record's
   * position. */
  cr_assert_eq(rs_harness_emitted(h, OUT, 1)->src_offset, 42);
  cr_assert_eq(rs_harness_counter(h, "late_accepted"), 0);
  rs_harness_destroy(h);
}

Test(sessionize, late_within_grace_extends_and_merges) {
  const char *opts[] = {"gap", "10s", "grace", "60s", NULL};
  rs_harness_t *h = make(opts);
  push1(h, 0, "a", "i1", RS_EVENT_VIEW, 0);
  push1(h, 0, "a", "i2", RS_EVENT_VIEW, 5000);
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 30000); /* W = 30 s */
  /* Late (12 s < W), 7 s after a's end: extends the session. */
  push1(h, 0, "a", "i3", RS_EVENT_CLICK, 12000);
  cr_assert_eq(rs_harness_emitted_count(h, LATE), 0);
  const rs_session_event_t *e = event(h, 3);
  cr_assert_eq(e->late, 1);
  cr_assert_eq(e->session_id, fnv_id("a", 0));
  cr_assert_eq(e->position, 3);
  cr_assert_eq(e->since_prev_ms, 7000);
  /* Late, inside the session: inserted in time order. */
  push1(h, 0, "a", "i4", RS_EVENT_VIEW, 2000);
  e = event(h, 4);
  cr_assert_eq(e->position, 4);
  cr_assert_eq(e->since_prev_ms, 2000);

  /* Merge: b has sessions [20 s] and [38 s] (18 s apart); a late event at
   * 29 s is within 10 s of both. */
  push1(h, 0, "b", "j1", RS_EVENT_VIEW, 30000);
  push1(h, 0, "b", "j2", RS_EVENT_VIEW, 48000);
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 60000); /* W = 60 s */
  push1(h, 0, "b", "j3", RS_EVENT_VIEW, 39000);
  e = event(h, 8);
  cr_assert_eq(e->late, 1);
  cr_assert_eq(e->session_id, fnv_id("b", 30000));
  cr_assert_eq(e->position, 3);
  cr_assert_eq(e->session_start_ms, 30000);
  cr_assert_eq(rs_harness_counter(h, "sessions_merged"), 1);

  /* W = 200 s closes, by deadline: a (82 s), z's first (100 s), b (118
   * s), z's second (130 s). */
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 200000);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 4);
  const rs_session_t *sa = session(h, 0), *sb = session(h, 2);
  cr_assert(user_is(session(h, 1), "z"));
  cr_assert(user_is(sa, "a"));
  cr_assert_eq(sa->events, 4);
  cr_assert_eq(sa->late_events, 2);
  cr_assert_eq(sa->start_ms, 0);
  cr_assert_eq(sa->end_ms, 12000);
  cr_assert_eq(sa->n_items, 4);
  /* Items in event-time order: i1 (0), i4 (2 s), i2 (5 s), i3 (12 s). */
  cr_assert(!memcmp(sa->items[1].item, "i4", 2));
  cr_assert(!memcmp(sa->items[3].item, "i3", 2));
  cr_assert(user_is(sb, "b"));
  cr_assert_eq(sb->session_id, fnv_id("b", 30000));
  cr_assert_eq(sb->events, 3);
  cr_assert_eq(sb->start_ms, 30000);
  cr_assert_eq(sb->end_ms, 48000);
  cr_assert_eq(sb->n_merged, 1);
  cr_assert_eq(sb->merged_ids[0], fnv_id("b", 48000));
  cr_assert_eq(sb->late_events, 1);
  cr_assert(!memcmp(sb->items[1].item, "j3", 2), "merged items in time order");
  rs_harness_destroy(h);
}

Test(sessionize, too_late_records_go_to_the_late_port) {
  const char *opts[] = {"gap", "10s", "grace", "5s", NULL};
  rs_harness_t *h = make(opts);
  push1(h, 0, "a", "i1", RS_EVENT_VIEW, 0);
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 15001); /* W past 0 + 10 + 5 */
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 1);
  /* a's session is closed: a record within its gap is late, not a new
   * session. */
  ev_t e;
  ev_set(&e, "a", "i2", RS_EVENT_VIEW, 9000, 500);
  push_ok(h, 0, &e, 1);
  cr_assert_eq(rs_harness_emitted_count(h, LATE), 1);
  const rs_record_t *r = rs_harness_emitted(h, LATE, 0);
  cr_assert_eq(r->kind, RS_KIND_INTERACTION);
  cr_assert_eq(r->src_offset, 500);
  cr_assert_eq(r->value_len, 3);
  cr_assert(!memcmp(r->value, "raw", 3), "the original record, unchanged");
  const rs_interaction_t *ia = r->payload;
  cr_assert_eq(ia->timestamp_ms, 9000);
  cr_assert_str_eq(ia->item, "i2");
  /* A new user whose own session would already be closed: late too. */
  push1(h, 0, "b", "j", RS_EVENT_VIEW, 0);
  cr_assert_eq(rs_harness_emitted_count(h, LATE), 2);
  /* A new user late but not that late: a session of its own. */
  push1(h, 0, "c", "k", RS_EVENT_VIEW, 1);
  cr_assert_eq(rs_harness_emitted_count(h, LATE), 2);
  cr_assert_eq(event(h, 2)->late, 1);
  cr_assert_eq(event(h, 2)->session_id, fnv_id("c", 1));
  cr_assert_eq(rs_harness_counter(h, "late_records"), 2);
  cr_assert_eq(rs_harness_counter(h, "late_accepted"), 1);
  rs_harness_destroy(h);
}

Test(sessionize, max_session_duration_splits) {
  const char *opts[] = {"gap", "10s", "grace", "0s", "max_session_duration",
                        "20s", NULL};
  rs_harness_t *h = make(opts);
  /* 0, 8, 16 fit; 20 would still fit exactly (span 20 s, inclusive); 24
   * would make it 24 s: split. */
  int64_t ts[] = {0, 8000, 16000, 20000, 24000, 32000};
  for (size_t i = 0; i < 6; i++)
    push1(h, 0, "a", "i", RS_EVENT_VIEW, ts[i]);
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 100000);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 2);
  const rs_session_t *s1 = session(h, 0), *s2 = session(h, 1);
  cr_assert_eq(s1->start_ms, 0);
  cr_assert_eq(s1->end_ms, 20000);
  cr_assert_eq(s1->events, 4);
  cr_assert_eq(s1->split, 1);
  cr_assert_eq(s2->start_ms, 24000);
  cr_assert_eq(s2->end_ms, 32000);
  cr_assert_eq(s2->split, 0);
  cr_assert_eq(event(h, 4)->position, 1);
  cr_assert_eq(event(h, 4)->since_prev_ms, -1);
  cr_assert_eq(rs_harness_counter(h, "sessions_split"), 1);
  rs_harness_destroy(h);
}

Test(sessionize, max_events_bounds_the_state) {
  const char *opts[] = {"gap", "1m", "grace", "0s", "max_events_per_session",
                        "3",   NULL};
  rs_harness_t *h = make(opts);
  size_t sizes[6];
  for (int i = 0; i < 6; i++) {
    char item[8];
    snprintf(item, sizeof item, "i%d", i);
    push1(h, 0, "a", item, RS_EVENT_VIEW, 1000 * i);
    const unsigned char *v;
    cr_assert_eq(user_state(h, 0, "a", &v, &sizes[i]), 0);
  }
  cr_assert_gt(sizes[2], sizes[1]);
  cr_assert_eq(sizes[3], sizes[2], "the fourth event is summarised");
  cr_assert_eq(sizes[5], sizes[2]);
  cr_assert_eq(event(h, 5)->position, 6);
  cr_assert_eq(event(h, 5)->since_prev_ms, 1000);
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 1000000);
  const rs_session_t *s = session(h, 0);
  cr_assert_eq(s->events, 6);
  cr_assert_eq(s->summarised_events, 3);
  cr_assert_eq(s->counts[RS_EVENT_VIEW], 6);
  cr_assert_eq(s->dwell_seconds, 9.0);
  cr_assert_eq(s->n_items, 3);
  cr_assert(!memcmp(s->items[0].item, "i3", 2), "the newest are kept");
  cr_assert_eq(s->start_ms, 0);
  rs_harness_destroy(h);
}

/* A deterministic multi-user stream with mild disorder (within 4 s) and
 * some late records, for restart and batching tests. */
static size_t busy_stream(ev_t *out, size_t n) {
  uint64_t x = 7;
  int64_t t = 1000000;
  for (size_t i = 0; i < n; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    t += (int64_t)((x >> 33) % 3000);
    int64_t jitter = (int64_t)((x >> 13) % 4000);
    if ((x >> 50) % 40 == 0)
      jitter = 20000 + (int64_t)((x >> 20) % 40000); /* late */
    char user[8], item[8];
    snprintf(user, sizeof user, "u%d", (int)((x >> 40) % 9));
    snprintf(item, sizeof item, "i%d", (int)((x >> 24) % 13));
    ev_set(&out[i], user, item, (int)((x >> 45) % 5), t - jitter, (int64_t)i);
  }
  return n;
}

static const char *const busy_opts[] = {"gap",
                                        "15s",
                                        "grace",
                                        "20s",
                                        "max_out_of_orderness",
                                        "4s",
                                        "max_session_duration",
                                        "90s",
                                        "max_events_per_session",
                                        "6",
                                        NULL};

static void restart_case(int crash) {
  enum { N = 600, CUT = 250, AFTER = 60 };
  static ev_t evs[N];
  busy_stream(evs, N);
  rs_harness_t *a = make(busy_opts), *b = make(busy_opts);
  cr_assert_eq(push_n(a, 0, evs, CUT, 16), 0);
  size_t mark[3] = {rs_harness_emitted_count(a, OUT),
                    rs_harness_emitted_count(a, SESSIONS),
                    rs_harness_emitted_count(a, LATE)};
  cr_assert_eq(push_n(a, 0, evs + CUT, N - CUT, 16), 0);

  cr_assert_eq(push_n(b, 0, evs, CUT, 16), 0);
  const void *v;
  size_t n;
  cr_assert_eq(rs_harness_state_get(b, 0, "m", 1, &v, &n), 0);
  cr_assert_eq(rs_harness_checkpoint(b), 0, "%s", rs_harness_errmsg(b));
  if (crash) {
    /* Records after the checkpoint are lost with the crash; the engine
     * would replay them from the stored offset. */
    cr_assert_eq(push_n(b, 0, evs + CUT, AFTER, 16), 0);
    cr_assert_eq(rs_harness_restart(b, 1), 0, "%s", rs_harness_errmsg(b));
  } else {
    cr_assert_eq(rs_harness_restart(b, 0), 0, "%s", rs_harness_errmsg(b));
  }
  rs_harness_clear(b);
  cr_assert_eq(push_n(b, 0, evs + CUT, N - CUT, 16), 0);
  for (uint32_t port = 0; port < 3; port++) {
    char *x = dump(a, port, mark[port], 1), *y = dump(b, port, 0, 1);
    cr_assert_str_eq(y, x, "port %u differs after the restart", port);
    free(x);
    free(y);
  }
  cr_assert_gt(rs_harness_emitted_count(b, SESSIONS), 10);
  cr_assert_gt(rs_harness_counter(a, "late_records") +
                   rs_harness_counter(a, "late_accepted"),
               0);
  rs_harness_destroy(a);
  rs_harness_destroy(b);
}

Test(sessionize, restart_in_the_middle_of_open_sessions) {
  restart_case(0);
}

Test(sessionize, crash_and_replay_in_the_middle_of_open_sessions) {
  restart_case(1);
}

Test(sessionize, batching_does_not_change_outputs) {
  enum { N = 400 };
  static ev_t evs[N];
  busy_stream(evs, N);
  rs_harness_t *a = make(busy_opts), *b = make(busy_opts);
  cr_assert_eq(push_n(a, 0, evs, N, 1), 0);
  cr_assert_eq(push_n(b, 0, evs, N, 37), 0);
  for (uint32_t port = 0; port < 3; port++) {
    char *x = dump(a, port, 0, 1), *y = dump(b, port, 0, 1);
    cr_assert_str_eq(y, x, "port %u", port);
    free(x);
    free(y);
  }
  rs_harness_destroy(a);
  rs_harness_destroy(b);
}

Test(sessionize, partitions_have_their_own_watermark) {
  const char *opts[] = {"gap", "10s", "grace", "0s", NULL};
  rs_harness_t *h = make(opts);
  push1(h, 1, "a", "i", RS_EVENT_VIEW, 0);
  push1(h, 0, "b", "i", RS_EVENT_VIEW, 0);
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 100000);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 1);
  cr_assert(user_is(session(h, 0), "b"));
  /* In partition 1, 5 s is not late: its watermark is still 0. */
  push1(h, 1, "a", "i", RS_EVENT_VIEW, 5000);
  cr_assert_eq(event(h, 3)->position, 2);
  cr_assert_eq(event(h, 3)->late, 0);
  rs_harness_destroy(h);
}

Test(sessionize, idle_users_are_purged_after_state_ttl) {
  const char *opts[] = {"gap", "10s", "grace", "5s", "state_ttl", "100s", NULL};
  rs_harness_t *h = make(opts);
  const unsigned char *v;
  size_t n;
  push1(h, 0, "a", "i", RS_EVENT_VIEW, 0);
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 50000);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 1);
  cr_assert_eq(user_state(h, 0, "a", &v, &n), 0);
  /* Purged once W > end 0 + 100 s. */
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 100000);
  cr_assert_eq(user_state(h, 0, "a", &v, &n), 0,
               "W = 100 s is not past the ttl");
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 100001);
  cr_assert_eq(user_state(h, 0, "a", &v, &n), RS_ENOENT);
  cr_assert_eq(rs_harness_counter(h, "users_purged"), 1);
  /* A user active again before the ttl is not purged. */
  push1(h, 0, "b", "i", RS_EVENT_VIEW, 100002);
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 120000); /* b closed at W > 115 s */
  push1(h, 0, "b", "i", RS_EVENT_VIEW, 150000);
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 201000); /* old purge entry due */
  cr_assert_eq(user_state(h, 0, "b", &v, &n), 0);
  cr_assert_eq(rs_harness_counter(h, "users_purged"), 1);
  /* The purge agenda survives a restart. */
  cr_assert_eq(rs_harness_checkpoint(h), 0);
  cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 400000);
  cr_assert_eq(user_state(h, 0, "b", &v, &n), RS_ENOENT);
  cr_assert_eq(rs_harness_counter(h, "users_purged"), 2);
  rs_harness_destroy(h);
}

Test(sessionize, ttl_is_raised_to_what_late_records_need) {
  /* state_ttl 0: kept until W > end + 2 gap + grace = 25 s. */
  const char *opts[] = {"gap", "10s", "grace", "5s", NULL};
  rs_harness_t *h = make(opts);
  const unsigned char *v;
  size_t n;
  push1(h, 0, "a", "i", RS_EVENT_VIEW, 0);
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 25000);
  cr_assert_eq(user_state(h, 0, "a", &v, &n), 0);
  /* Here a record at 10 s (t + gap + grace = 25 s >= W) belongs to the
   * closed session: late. */
  push1(h, 0, "a", "i", RS_EVENT_VIEW, 10000);
  cr_assert_eq(rs_harness_emitted_count(h, LATE), 1);
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 25001);
  cr_assert_eq(user_state(h, 0, "a", &v, &n), RS_ENOENT);
  rs_harness_destroy(h);
}

Test(sessionize, bad_records_are_dead_lettered) {
  const char *opts[] = {"grace", "1m", NULL};
  rs_harness_t *h = make(opts);
  rs_record_t bytes = {.kind = RS_KIND_BYTES, .value = "x", .value_len = 1};
  ev_t e[3];
  ev_set(&e[0], "a", "", RS_EVENT_VIEW, 5, 1);
  ev_set(&e[1], "a", "i", 9, 5, 2);
  ev_set(&e[2], "a", "i", RS_EVENT_VIEW, 5, 3);
  rs_record_t recs[4] = {bytes, *ev_rec(&e[0], 0), *ev_rec(&e[1], 0),
                         *ev_rec(&e[2], 0)};
  e[2].ia.value = INFINITY;
  cr_assert_eq(rs_harness_push(h, 0, recs, 4), 0);
  cr_assert_eq(rs_harness_dead_count(h), 4);
  cr_assert(strstr(rs_harness_dead(h, 0)->error, "interaction") != NULL);
  cr_assert_str_eq(rs_harness_dead(h, 1)->error, "interaction has no item");
  cr_assert(strstr(rs_harness_dead(h, 2)->error, "event type 9") != NULL);
  cr_assert_str_eq(rs_harness_dead(h, 3)->error,
                   "interaction value is not finite");
  cr_assert_eq(rs_harness_emitted_count(h, OUT), 0);
  rs_harness_destroy(h);
}

Test(sessionize, option_errors) {
  rs_harness_t *h = rs_harness_new(&rs_op_sessionize, NULL, err, sizeof err);
  cr_assert_null(h);
  cr_assert(strstr(err, "grace") != NULL, "%s", err);
  /* idle_close: tests/operators/test_sessionize_idle.c. */
  const char *bad[] = {"grace", "1m", "max_events_per_session", "0", NULL};
  h = rs_harness_new(&rs_op_sessionize, bad, err, sizeof err);
  cr_assert_null(h);
  cr_assert(strstr(err, "max_events_per_session") != NULL, "%s", err);
  const char *neg[] = {"grace", "-5s", NULL};
  h = rs_harness_new(&rs_op_sessionize, neg, err, sizeof err);
  cr_assert_null(h);
  cr_assert(strstr(err, "grace") != NULL, "%s", err);
}

Test(sessionize, corrupt_state_stops_with_a_message) {
  const char *opts[] = {"grace", "1m", NULL};
  rs_harness_t *h = make(opts);
  push1(h, 0, "a", "i", RS_EVENT_VIEW, 0);
  cr_assert_eq(rs_harness_checkpoint(h), 0);
  /* Entries are read when a partition's state is loaded (first batch,
   * restart): a corrupt bucket stops it with a message. */
  unsigned char meta[32] = {2};
  cr_assert_eq(rs_harness_state_put(h, 0, "m", 1, meta, sizeof meta), 0);
  cr_assert_eq(rs_harness_state_put(h, 0, "s\0\0\0\0", 5, "garbage", 7), 0);
  cr_assert_eq(rs_harness_checkpoint(h), 0);
  cr_assert_eq(rs_harness_restart(h, 0), 0);
  ev_t e;
  ev_set(&e, "a", "i", RS_EVENT_VIEW, 1, 9);
  cr_assert_eq(push_n(h, 0, &e, 1, 1), RS_ESTATE);
  int found = 0;
  for (size_t i = 0; i < rs_harness_log_count(h); i++) {
    int level;
    const char *l = rs_harness_log_line(h, i, &level);
    found |= level == RS_LOG_ERROR && strstr(l, "user bucket 0") &&
             strstr(l, "rebuild the state by replay");
  }
  cr_assert(found, "no error logged");
  /* A failed batch leaves memory part way: no checkpoint from it, the
   * engine restarts from the last one. */
  cr_assert_neq(rs_harness_checkpoint(h), 0);
  cr_assert_eq(rs_harness_restart(h, 1), 0);
  /* A user entry that does not parse (here under the version-1 key, which
   * is still read), found by the rebuild scan. */
  meta[0] = 1;
  cr_assert_eq(rs_harness_state_put(h, 0, "m", 1, meta, sizeof meta), 0);
  cr_assert_eq(
      rs_harness_state_put(h, 0, "s\0\0\0\0", 5, "\1\0\0\0\0\0\0\0", 8), 0);
  cr_assert_eq(rs_harness_state_put(h, 0, "ub", 2, "\x01", 1), 0);
  cr_assert_eq(rs_harness_checkpoint(h), 0);
  ev_set(&e, "c", "i", RS_EVENT_VIEW, 1, 10);
  cr_assert_eq(push_n(h, 0, &e, 1, 1), RS_ESTATE);
  found = 0;
  for (size_t i = 0; i < rs_harness_log_count(h); i++) {
    int level;
    const char *l = rs_harness_log_line(h, i, &level);
    found |= level == RS_LOG_ERROR && strstr(l, "user 'b'") != NULL;
  }
  cr_assert(found, "no error logged for user b");
  rs_harness_destroy(h);
}

Test(sessionize, dropped_partition_state_is_noticed) {
  const char *opts[] = {"gap", "10s", "grace", "0s", "max_out_of_orderness",
                        "5s",  NULL};
  rs_harness_t *h = make(opts);
  push1(h, 0, "a", "i", RS_EVENT_VIEW, 10000);
  cr_assert_eq(rs_harness_emitted_count(h, OUT), 0, "pending");
  /* Someone replaces the partition's meta entry (as a restore of another
   * state would): the agenda is rebuilt from the state, not trusted. */
  unsigned char meta[32] = {1};
  cr_assert_eq(rs_harness_state_put(h, 0, "m", 1, meta, sizeof meta), 0);
  push1(h, 0, "b", "i", RS_EVENT_VIEW, 100000);
  cr_assert_eq(rs_harness_counter(h, "state_reloads"), 1);
  /* The pending record of a was still in the state: released now. */
  cr_assert_eq(rs_harness_emitted_count(h, OUT), 1);
  cr_assert_eq(event(h, 0)->interaction->timestamp_ms, 10000);
  rs_harness_destroy(h);
}

/* ------------------------------------------------- property test -- */

typedef struct ref_ev {
  int user;
  int item;
  int type;
  int64_t t;
  size_t arrival;
  /* Filled by the reference: where it lands. */
  int64_t id, start, prev, pos;
} ref_ev_t;

typedef struct prop_cfg {
  int64_t gap, grace, ooo, maxdur, maxev;
  char opt[5][16];
  int long_sessions; /* most steps within the gap: sessions of ~20 events,
                        some past SZ_FEW_EVENTS (summaries sort their items) */
} prop_cfg_t;

static uint64_t rnd(uint64_t *x) {
  *x += 0x9e3779b97f4a7c15ull;
  uint64_t z = *x;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int by_user_time(const void *a, const void *b) {
  const ref_ev_t *x = *(ref_ev_t *const *)a, *y = *(ref_ev_t *const *)b;
  if (x->user != y->user)
    return x->user < y->user ? -1 : 1;
  if (x->t != y->t)
    return x->t < y->t ? -1 : 1;
  return x->arrival < y->arrival ? -1 : x->arrival > y->arrival;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The reference, straight from the definition: per user, events sorted by
 * (time, arrival); a session continues while the next event is at most
 * gap after the previous one and the span stays within max duration. */
static size_t reference(const prop_cfg_t *cfg, ref_ev_t *evs, size_t n,
                        char **lines) {
  ref_ev_t **s = malloc(n * sizeof *s);
  for (size_t i = 0; i < n; i++)
    s[i] = &evs[i];
  qsort(s, n, sizeof *s, by_user_time);
  size_t out = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i + 1;
    while (j < n && s[j]->user == s[i]->user &&
           s[j]->t - s[j - 1]->t <= cfg->gap &&
           (!cfg->maxdur || s[j]->t - s[i]->t <= cfg->maxdur))
      j++;
    /* Session s[i..j). */
    char user[16];
    snprintf(user, sizeof user, "u%d", s[i]->user);
    int64_t id = fnv_id(user, s[i]->t), counts[5] = {0};
    double dwell = 0, rating = 0;
    for (size_t k = i; k < j; k++) {
      s[k]->id = id;
      s[k]->start = s[i]->t;
      s[k]->pos = (int64_t)(k - i + 1);
      s[k]->prev = k == i ? -1 : s[k]->t - s[k - 1]->t;
      counts[s[k]->type]++;
      if (s[k]->type == RS_EVENT_RATING)
        rating += 4.0;
      else if (s[k]->type != RS_EVENT_CLICK)
        dwell += 1.5;
    }
    int split =
        j < n && s[j]->user == s[i]->user && s[j]->t - s[j - 1]->t <= cfg->gap;
    /* Kept: the newest maxev events; items by first occurrence. */
    size_t kept = j - i < (size_t)cfg->maxev ? j - i : (size_t)cfg->maxev;
    char items[2048] = "";
    size_t il = 0;
    for (size_t k = j - kept; k < j; k++) {
      int seen = 0;
      for (size_t q = j - kept; q < k; q++)
        seen |= s[q]->item == s[k]->item;
      if (seen)
        continue;
      int count = 0;
      for (size_t q = k; q < j; q++)
        count += s[q]->item == s[k]->item;
      il += (size_t)snprintf(items + il, sizeof items - il, "i%d:%d,",
                             s[k]->item, count);
    }
    char line[4096];
    snprintf(line, sizeof line,
             "%s id=%" PRId64 " [%" PRId64 ",%" PRId64 "] n=%zu c=%" PRId64
             "/%" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64
             " dwell=%.17g rating=%.17g late=0 summ=%zu split=%d items=%s",
             user, id, s[i]->t, s[j - 1]->t, j - i, counts[0], counts[1],
             counts[2], counts[3], counts[4], dwell, rating, (j - i) - kept,
             split, items);
    lines[out++] = strdup(line);
    i = j;
  }
  free(s);
  return out;
}

/* One random stream: bounded disorder, pushed in random batches into
 * partition `part` of h; returns 0 on mismatch (with a message). */
static void one_stream(rs_harness_t **hp, const prop_cfg_t *cfg, int32_t part,
                       uint64_t seed, int *restarts) {
  uint64_t x = seed;
  size_t n = 1 + rnd(&x) % (cfg->long_sessions ? 120 : 60);
  int users = 1 + (int)(rnd(&x) % (cfg->long_sessions ? 2 : 5));
  ref_ev_t *evs = calloc(n, sizeof *evs);
  int64_t *key = calloc(n, sizeof *key);
  int64_t *tu = calloc((size_t)users, sizeof *tu);
  for (int u = 0; u < users; u++)
    tu[u] = 1000000 + (int64_t)(rnd(&x) % 100000);
  for (size_t i = 0; i < n; i++) {
    int u = (int)(rnd(&x) % (uint64_t)users);
    /* Steps around the gap, sometimes exactly on it. */
    uint64_t r = rnd(&x) % 10;
    if (cfg->long_sessions && r >= 6 && rnd(&x) % 8)
      r = 0;
    int64_t step =
        r < 6   ? (int64_t)(rnd(&x) % (uint64_t)(cfg->gap + 1))
        : r < 8 ? cfg->gap + (int64_t)(rnd(&x) % 3)
                : cfg->gap + (int64_t)(rnd(&x) % (uint64_t)(5 * cfg->gap + 1));
    if (rnd(&x) % 7 == 0)
      step = 0; /* equal times */
    tu[u] += step;
    evs[i] = (ref_ev_t){.user = u,
                        .item = (int)(rnd(&x) % 6),
                        .type = (int)(rnd(&x) % 5),
                        .t = tu[u]};
    key[i] = evs[i].t +
             (cfg->ooo ? (int64_t)(rnd(&x) % (uint64_t)(cfg->ooo + 1)) : 0);
  }
  /* Arrival order: by t + jitter (<= ooo), stable: every event is at most
   * ooo older than any before it. Equal-time events of one user keep
   * their generation order as arrival order (the reference's tie-break). */
  size_t *ord = malloc(n * sizeof *ord);
  for (size_t i = 0; i < n; i++)
    ord[i] = i;
  for (size_t i = 1; i < n; i++)
    for (size_t j = i; j > 0 && key[ord[j - 1]] > key[ord[j]]; j--) {
      size_t tmp = ord[j];
      ord[j] = ord[j - 1];
      ord[j - 1] = tmp;
    }
  ev_t *in = calloc(n + 1, sizeof *in);
  for (size_t a = 0; a < n; a++) {
    ref_ev_t *e = &evs[ord[a]];
    e->arrival = a;
    char user[16], item[16];
    snprintf(user, sizeof user, "u%d", e->user);
    snprintf(item, sizeof item, "i%d", e->item);
    ev_set(&in[a], user, item, e->type, e->t, (int64_t)a);
  }
  int64_t maxt = 0;
  for (size_t i = 0; i < n; i++)
    maxt = evs[i].t > maxt ? evs[i].t : maxt;
  ev_set(&in[n], "zz", "flush", RS_EVENT_CLICK,
         maxt + cfg->ooo + cfg->gap + cfg->grace + 1, (int64_t)n);

  rs_harness_t *h = *hp;
  rs_harness_clear(h);
  size_t cut = rnd(&x) % 9 == 0 ? (size_t)(rnd(&x) % (n + 1)) : n + 1;
  for (size_t a = 0; a <= n;) {
    if (a == cut) {
      cr_assert_eq(rs_harness_checkpoint(h), 0);
      cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
      (*restarts)++;
      cut = n + 2;
    }
    size_t b = 1 + rnd(&x) % 8, m = n + 1 - a < b ? n + 1 - a : b;
    if (cut > a && cut < a + m)
      m = cut - a;
    int rc = push_n(h, part, in + a, m, m);
    cr_assert_eq(rc, 0, "push: %s", rs_harness_errmsg(h));
    a += m;
  }

  char **want = calloc(n, sizeof *want);
  size_t nw = reference(cfg, evs, n, want);
  size_t ns = rs_harness_emitted_count(h, SESSIONS);
  char **got = calloc(ns + 1, sizeof *got);
  for (size_t i = 0; i < ns; i++) {
    char line[4096];
    fmt_session(rs_harness_emitted(h, SESSIONS, i)->payload, line, sizeof line);
    got[i] = strdup(line);
  }
  qsort(want, nw, sizeof *want, cmp_str);
  qsort(got, ns, sizeof *got, cmp_str);
  cr_assert_eq(ns, nw, "seed %" PRIu64 ": %zu sessions, reference %zu", seed,
               ns, nw);
  for (size_t i = 0; i < nw; i++)
    cr_assert_str_eq(got[i], want[i], "seed %" PRIu64, seed);
  cr_assert_eq(rs_harness_emitted_count(h, LATE), 0, "seed %" PRIu64, seed);
  /* Enriched events: one per input (and the flush record's, unless it
   * waits for the watermark), each where the reference puts it. */
  size_t nout = n + (cfg->ooo == 0);
  cr_assert_eq(rs_harness_emitted_count(h, OUT), nout, "seed %" PRIu64, seed);
  for (size_t i = 0; i < nout; i++) {
    const rs_record_t *r = rs_harness_emitted(h, OUT, i);
    const rs_session_event_t *se = r->payload;
    const rs_interaction_t *ia = se->interaction;
    if (!strcmp(ia->user, "zz"))
      continue;
    int u = atoi(ia->user + 1);
    const ref_ev_t *m = NULL;
    for (size_t k = 0; k < n && !m; k++)
      if (evs[k].user == u && evs[k].t == ia->timestamp_ms &&
          evs[k].pos == se->position && evs[k].id == se->session_id)
        m = &evs[k];
    cr_assert_not_null(m,
                       "seed %" PRIu64 ": event %s@%" PRId64 " pos %" PRId64
                       " is not the reference's",
                       seed, ia->user, ia->timestamp_ms, se->position);
    cr_assert_eq(se->since_prev_ms, m->prev, "seed %" PRIu64, seed);
    cr_assert_eq(se->session_start_ms, m->start, "seed %" PRIu64, seed);
    cr_assert_eq(se->late, 0);
  }
  for (size_t i = 0; i < nw; i++)
    free(want[i]);
  for (size_t i = 0; i < ns; i++)
    free(got[i]);
  free(want);
  free(got);
  free(in);
  free(ord);
  free(tu);
  free(key);
  free(evs);
}

Test(sessionize, property_random_streams_match_the_reference, .timeout = 300) {
  static const prop_cfg_t cfgs[] = {
      {10000, 0, 0, 0, 200, {"10s", "0s", "0s", "0", "200"}, 0},
      {10000, 5000, 3000, 0, 4, {"10s", "5s", "3s", "0", "4"}, 0},
      {30000, 1000, 20000, 60000, 200, {"30s", "1s", "20s", "1m", "200"}, 0},
      {5000, 20000, 7000, 12000, 3, {"5s", "20s", "7s", "12s", "3"}, 0},
      {1, 0, 2, 0, 1, {"1ms", "0s", "2ms", "0", "1"}, 0},
      {60000, 0, 60000, 0, 10, {"1m", "0s", "1m", "0", "10"}, 0},
      {10000, 2000, 3000, 0, 200, {"10s", "2s", "3s", "0", "200"}, 1},
  };
  int streams = 0, restarts = 0;
  uint64_t seed = 1;
  for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
    const prop_cfg_t *cfg = &cfgs[c];
    const char *opts[] = {"gap",
                          cfg->opt[0],
                          "grace",
                          cfg->opt[1],
                          "max_out_of_orderness",
                          cfg->opt[2],
                          "max_session_duration",
                          cfg->opt[3],
                          "max_events_per_session",
                          cfg->opt[4],
                          NULL};
    rs_harness_t *h = make(opts);
    /* Each stream in a partition of its own: independent watermarks. */
    for (int32_t part = 0; part < 200; part++, streams++)
      one_stream(&h, cfg, part, seed++ * 0x9e3779b97f4a7c15ull, &restarts);
    rs_harness_destroy(h);
  }
  cr_assert_geq(streams, 1000);
  cr_assert_gt(restarts, 50, "restarts mid-stream: %d", restarts);
}

/* Beyond the bound the reference's "sorted" answer is not what comes out,
 * and the difference is visible: sorted, {0}, {15 s}, {30 s} are three
 * sessions; here 15 s arrives after the watermark (30 s) passed its own
 * deadline (25 s, grace 0) and goes to the late port. */
Test(sessionize, disorder_beyond_the_bound_is_not_hidden) {
  const char *opts[] = {"gap", "10s", "grace", "0s", NULL};
  rs_harness_t *h = make(opts);
  push1(h, 0, "a", "i", RS_EVENT_VIEW, 0);
  push1(h, 0, "a", "i", RS_EVENT_VIEW, 30000);
  push1(h, 0, "a", "i", RS_EVENT_VIEW, 15000);
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 100000);
  cr_assert_eq(rs_harness_emitted_count(h, SESSIONS), 2);
  cr_assert_eq(rs_harness_emitted_count(h, LATE), 1);
  cr_assert_eq(rs_harness_counter(h, "late_records"), 1);
  rs_harness_destroy(h);
}

/* A batch's waiting records are stored together; after some of them were
 * applied, a restart must apply only the others (the stored watermark
 * says which), once each. */
Test(sessionize, partly_applied_pending_records_survive_a_restart) {
  const char *opts[] = {"gap", "1m", "grace", "0s", "max_out_of_orderness",
                        "10s", NULL};
  rs_harness_t *h = make(opts);
  ev_t b1[2];
  ev_set(&b1[0], "x", "i", RS_EVENT_VIEW, 10000, 0);
  ev_set(&b1[1], "y", "i", RS_EVENT_VIEW, 12000, 1);
  cr_assert_eq(push_n(h, 0, b1, 2, 2), 0); /* W = 2 s: both wait */
  cr_assert_eq(rs_harness_emitted_count(h, OUT), 0);
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 20500); /* W = 10.5 s: x applied */
  cr_assert_eq(rs_harness_emitted_count(h, OUT), 1);
  cr_assert_eq(rs_harness_checkpoint(h), 0);
  cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
  push1(h, 0, "z", "i", RS_EVENT_VIEW, 30000); /* W = 20 s */
  cr_assert_eq(rs_harness_emitted_count(h, OUT), 2, "y only (z@20.5 s waits)");
  cr_assert_str_eq(event(h, 0)->interaction->user, "x");
  cr_assert_str_eq(event(h, 1)->interaction->user, "y");
  /* Once every record of the first batch is applied its entry is gone. */
  const void *v;
  size_t n;
  unsigned char key[9] = {'p', 0, 0, 0, 0, 0, 0, 0, 1};
  cr_assert_eq(rs_harness_state_get(h, 0, key, sizeof key, &v, &n), RS_ENOENT);
  rs_harness_destroy(h);
}

/* Many users: the user buckets double as users arrive (each doubling
 * rewrites every bucket), idle users are swept, and restarts (clean, and a
 * crash after a checkpoint) in the middle give the outputs of an
 * uninterrupted run. */
Test(sessionize, many_users_in_growing_buckets_survive_restarts) {
  enum { N = 3000, CUT1 = 900, CUT2 = 2100 };
  static ev_t evs[N];
  uint64_t x = 11;
  int64_t t = 5000000;
  for (size_t i = 0; i < N; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    t += (int64_t)((x >> 33) % 400);
    char user[16], item[8];
    snprintf(user, sizeof user, "user%d", (int)((x >> 40) % 500));
    snprintf(item, sizeof item, "i%d", (int)((x >> 24) % 50));
    ev_set(&evs[i], user, item, (int)((x >> 45) % 5),
           t - (int64_t)((x >> 13) % 3000), (int64_t)i);
  }
  const char *opts[] = {"gap", "20s", "grace", "5s", "max_out_of_orderness",
                        "3s",  NULL};
  rs_harness_t *a = make(opts), *b = make(opts);
  /* a runs uninterrupted; its outputs in three pieces, at the cuts. */
  size_t cut[4] = {0, CUT1, CUT2, N};
  char *want[3][3];
  size_t mark[3] = {0, 0, 0};
  for (int piece = 0; piece < 3; piece++) {
    cr_assert_eq(
        push_n(a, 0, evs + cut[piece], cut[piece + 1] - cut[piece], 50), 0);
    for (uint32_t port = 0; port < 3; port++) {
      want[piece][port] = dump(a, port, mark[port], 1);
      mark[port] = rs_harness_emitted_count(a, port);
    }
  }

  /* b: a checkpoint and a clean restart after the first piece, a crash
   * after the second (losing records pushed after its checkpoint, which
   * are pushed again as the engine would replay them). */
  for (int piece = 0; piece < 3; piece++) {
    rs_harness_clear(b);
    size_t early = piece == 0 ? 100 : 0; /* few users: few buckets first */
    cr_assert_eq(push_n(b, 0, evs + cut[piece], early, 50), 0);
    cr_assert_eq(rs_harness_checkpoint(b), 0, "%s", rs_harness_errmsg(b));
    cr_assert_eq(push_n(b, 0, evs + cut[piece] + early,
                        cut[piece + 1] - cut[piece] - early, 50),
                 0);
    for (uint32_t port = 0; port < 3; port++) {
      char *got = dump(b, port, 0, 1);
      cr_assert_str_eq(got, want[piece][port], "piece %d port %u", piece, port);
      free(got);
      free(want[piece][port]);
    }
    cr_assert_eq(rs_harness_checkpoint(b), 0, "%s", rs_harness_errmsg(b));
    if (piece == 0) {
      cr_assert_eq(rs_harness_restart(b, 0), 0, "%s", rs_harness_errmsg(b));
    } else if (piece == 1) {
      cr_assert_eq(push_n(b, 0, evs + CUT2, 300, 50), 0);
      cr_assert_eq(rs_harness_restart(b, 1), 0, "%s", rs_harness_errmsg(b));
    }
  }
  const void *mv;
  size_t mn;
  cr_assert_eq(rs_harness_state_get(b, 0, "m", 1, &mv, &mn), 0);
  cr_assert_geq(((const unsigned char *)mv)[1], 3, "buckets doubled");
  cr_assert_gt(rs_harness_counter(b, "users_purged"), 100, "swept");
  cr_assert_gt(rs_harness_emitted_count(a, SESSIONS), 500);
  rs_harness_destroy(a);
  rs_harness_destroy(b);
}

/* The buckets double when one new user tips them over: every bucket is
 * rewritten then, not only the new user's, so after a restart every user
 * is found exactly once. */
Test(sessionize, doubling_buckets_rewrites_every_bucket) {
  const char *opts[] = {"gap", "1h", "grace", "1h", NULL};
  rs_harness_t *h = make(opts);
  enum { U = 33 };
  char user[8];
  for (int u = 0; u < U; u++) {
    snprintf(user, sizeof user, "u%d", u);
    push1(h, 0, user, "i", RS_EVENT_VIEW, 1000 + u);
    if (u == U - 2)
      cr_assert_eq(rs_harness_checkpoint(h), 0); /* 32 users, 1 bucket */
  }
  cr_assert_eq(rs_harness_checkpoint(h), 0);
  const void *mv;
  size_t mn;
  cr_assert_eq(rs_harness_state_get(h, 0, "m", 1, &mv, &mn), 0);
  cr_assert_eq(((const unsigned char *)mv)[1], 1, "two buckets");
  cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
  rs_harness_clear(h);
  for (int u = 0; u < U; u++) {
    snprintf(user, sizeof user, "u%d", u);
    push1(h, 0, user, "j", RS_EVENT_VIEW, 2000 + u);
    cr_assert_eq(event(h, (size_t)u)->position, 2, "user %d", u);
  }
  rs_harness_destroy(h);
}

/* State written by the previous layout (meta version 1, one entry per
 * user under "u" user) is read, and moved into buckets at the next
 * checkpoint. */
Test(sessionize, version_1_user_entries_move_into_buckets) {
  const char *opts[] = {"gap", "1h", "grace", "1h", NULL};
  rs_harness_t *h = make(opts);
  push1(h, 0, "a", "i", RS_EVENT_VIEW, 1000);
  const unsigned char *v;
  size_t n;
  cr_assert_eq(user_state(h, 0, "a", &v, &n), 0);
  unsigned char entry[512], meta[32];
  cr_assert_leq(n, sizeof entry);
  memcpy(entry, v, n);
  const void *mv;
  size_t mn;
  cr_assert_eq(rs_harness_state_get(h, 0, "m", 1, &mv, &mn), 0);
  memcpy(meta, mv, sizeof meta);
  meta[0] = 1;
  meta[1] = 0;
  cr_assert_eq(rs_harness_state_put(h, 0, "m", 1, meta, sizeof meta), 0);
  cr_assert_eq(rs_harness_state_put(h, 0, "ua", 2, entry, n), 0);
  cr_assert_eq(
      rs_harness_state_put(h, 0, "s\0\0\0\0", 5, "\1\0\0\0\0\0\0\0", 8), 0);
  cr_assert_eq(rs_harness_checkpoint(h), 0);
  cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
  push1(h, 0, "a", "j", RS_EVENT_VIEW, 2000);
  cr_assert_eq(event(h, 1)->position, 2, "a's session was read");
  cr_assert_eq(user_state(h, 0, "a", &v, &n), 0); /* checks meta version 2 */
  const void *old;
  cr_assert_eq(rs_harness_state_get(h, 0, "ua", 2, &old, &n), RS_ENOENT);
  rs_harness_destroy(h);
}

/* A mixed workload through every path (in-order appends, new sessions,
 * splits, summarised events, records waiting for the watermark, late
 * records extending, merging or going to the late port, purges, bucket
 * doubling, clean and crash restarts, three partitions interleaved) and
 * every output in order, with source positions: its digest is the one
 * recorded from the implementation before the performance work of
 * session 7 (outputs must not change). SZ_GOLDEN_DUMP=file writes the
 * dump for a diff. */
static uint64_t fnv_bytes(uint64_t h, const char *s) {
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h;
}

static uint64_t mixed_workload(const char *const *opts, uint64_t seed,
                               int64_t ooo, int64_t gap, FILE *dumpf) {
  enum { N = 2500, P = 3 };
  static ev_t evs[P][N];
  uint64_t x = seed;
  for (int p = 0; p < P; p++) {
    int64_t tu[40], key[N];
    for (int u = 0; u < 40; u++)
      tu[u] = 1000000 + (int64_t)(rnd(&x) % (uint64_t)(4 * gap));
    for (size_t i = 0; i < N; i++) {
      int u = (int)(rnd(&x) % 40);
      uint64_t r = rnd(&x) % 20;
      int64_t step = r < 12   ? (int64_t)(rnd(&x) % (uint64_t)(gap / 2 + 1))
                     : r < 15 ? gap + (int64_t)(rnd(&x) % 3) - 1
                              : (int64_t)(rnd(&x) % (uint64_t)(8 * gap));
      tu[u] += step;
      char user[16], item[16];
      snprintf(user, sizeof user, "u%d", u);
      snprintf(item, sizeof item, "i%d", (int)(rnd(&x) % 9));
      ev_set(&evs[p][i], user, item, (int)(rnd(&x) % 5), tu[u], 0);
      /* Arrival: by t + jitter within the bound, 1 in 12 far later. */
      key[i] =
          tu[u] + (ooo ? (int64_t)(rnd(&x) % (uint64_t)(ooo + 1)) : 0) +
          (rnd(&x) % 12 == 0 ? (int64_t)(rnd(&x) % (uint64_t)(3 * gap)) : 0);
    }
    for (size_t i = 1; i < N; i++)
      for (size_t j = i; j > 0 && key[j - 1] > key[j]; j--) {
        ev_t tmp = evs[p][j];
        evs[p][j] = evs[p][j - 1];
        evs[p][j - 1] = tmp;
        int64_t k = key[j];
        key[j] = key[j - 1];
        key[j - 1] = k;
      }
    for (size_t i = 0; i < N; i++)
      evs[p][i].offset = (int64_t)i;
  }
  rs_harness_t *h = make(opts);
  size_t pos[P] = {0}, ck[P] = {0};
  uint64_t d = 0xcbf29ce484222325ull;
  int step = 0;
  for (int left = 1; left; step++) {
    left = 0;
    for (int p = 0; p < P; p++) {
      if (pos[p] >= N)
        continue;
      left = 1;
      size_t m = 1 + rnd(&x) % 40;
      m = N - pos[p] < m ? N - pos[p] : m;
      cr_assert_eq(push_n(h, p, evs[p] + pos[p], m, m), 0, "%s",
                   rs_harness_errmsg(h));
      pos[p] += m;
    }
    if (step % 25 == 24 || !left) {
      for (uint32_t port = 0; port < 3; port++) {
        char *s = dump(h, port, 0, 1);
        d = fnv_bytes(d, s);
        if (dumpf)
          fprintf(dumpf, "-- step %d port %u\n%s", step, port, s);
        free(s);
      }
      rs_harness_clear(h);
    }
    if (step % 25 == 24) {
      int crash = step % 75 == 74;
      cr_assert_eq(rs_harness_checkpoint(h), 0, "%s", rs_harness_errmsg(h));
      if (!crash)
        memcpy(ck, pos, sizeof ck);
      cr_assert_eq(rs_harness_restart(h, crash), 0, "%s", rs_harness_errmsg(h));
      if (crash) /* what the engine replays from the last checkpoint */
        memcpy(pos, ck, sizeof pos);
    } else if (step % 5 == 4) {
      cr_assert_eq(rs_harness_checkpoint(h), 0, "%s", rs_harness_errmsg(h));
      memcpy(ck, pos, sizeof ck);
    }
  }
  char line[256];
  snprintf(line, sizeof line,
           "late %" PRIu64 " acc %" PRIu64 " merged %" PRIu64 " split %" PRIu64
           " purged %" PRIu64 " closed %" PRIu64,
           rs_harness_counter(h, "late_records"),
           rs_harness_counter(h, "late_accepted"),
           rs_harness_counter(h, "sessions_merged"),
           rs_harness_counter(h, "sessions_split"),
           rs_harness_counter(h, "users_purged"),
           rs_harness_counter(h, "sessions_closed"));
  if (dumpf)
    fprintf(dumpf, "-- counters %s\n", line);
  d = fnv_bytes(d, line);
  rs_harness_destroy(h);
  return d;
}

Test(sessionize, outputs_of_a_mixed_workload_are_unchanged, .timeout = 300) {
  const char *dp = getenv("SZ_GOLDEN_DUMP");
  FILE *f = dp ? fopen(dp, "w") : NULL;
  const char *o1[] = {"gap",
                      "10s",
                      "grace",
                      "4s",
                      "max_out_of_orderness",
                      "3s",
                      "max_session_duration",
                      "25s",
                      "max_events_per_session",
                      "5",
                      NULL};
  const char *o2[] = {
      "gap", "10s",       "grace", "20s", "max_events_per_session",
      "200", "state_ttl", "90s",   NULL};
  const char *o3[] = {"gap", "7s", "grace", "0s", "max_out_of_orderness",
                      "7s",  NULL};
  uint64_t d[3] = {mixed_workload(o1, 101, 3000, 10000, f),
                   mixed_workload(o2, 202, 0, 10000, f),
                   mixed_workload(o3, 303, 7000, 7000, f)};
  if (f)
    fclose(f);
  static const uint64_t want[3] = {0x50a91e716b24cf33ull, 0x7f5520eebc086278ull,
                                   0xe564f53a8e92ce58ull};
  for (int i = 0; i < 3; i++)
    cr_expect_eq(d[i], want[i], "workload %d: digest %#" PRIx64, i, d[i]);
}

/* The close agenda under strain: many distinct deadlines, jumps of event
 * time (30-60 s, beyond ooo + gap + grace), entries re-queued when their
 * session was extended, and a restart that rebuilds the agenda with many
 * sessions open: summaries come out exactly once, each while the record
 * that moved the watermark past its deadline is processed, in (deadline,
 * user, id) order, the same as without the restart. (Written for a
 * calendar-queue agenda, which failed it when a bucket was left unsorted
 * or an insertion ignored order; the queue was not kept: no measurable
 * gain over the heap.) */
static int64_t deadline_of(const rs_session_t *s) {
  return s->end_ms + 1000 + 10000; /* gap 1 s, grace 10 s */
}

static int due_before(const rs_session_t *a, const rs_session_t *b) {
  if (deadline_of(a) != deadline_of(b))
    return deadline_of(a) < deadline_of(b);
  size_t n = a->user_len < b->user_len ? a->user_len : b->user_len;
  int r = memcmp(a->user, b->user, n);
  if (r || a->user_len != b->user_len)
    return r ? r < 0 : a->user_len < b->user_len;
  return a->session_id < b->session_id;
}

Test(sessionize, agenda_orders_closes_across_jumps_and_a_restart) {
  enum { N = 4000, CUT = 2300 };
  static ev_t evs[N];
  uint64_t x = 77;
  int64_t t = 1000000;
  for (size_t i = 0; i < N; i++) {
    /* Mostly small steps (sessions extended, re-queued), sometimes a jump
     * past the ring (30-60 s), users in a window that drifts. */
    uint64_t r = rnd(&x) % 100;
    t += r < 2 ? 30000 + (int64_t)(rnd(&x) % 30000) : (int64_t)(rnd(&x) % 40);
    char user[16];
    snprintf(user, sizeof user, "u%d",
             (int)((i / 50) + rnd(&x) % 60)); /* ids sort as strings */
    ev_set(&evs[i], user, "i", RS_EVENT_VIEW, t, (int64_t)i);
  }
  ev_set(&evs[N - 1], "zz", "i", RS_EVENT_VIEW, t + 1000000, N - 1);
  const char *opts[] = {"gap", "1s", "grace", "10s", NULL};
  rs_harness_t *a = make(opts), *b = make(opts);
  /* a: one record at a time, checking each record's summaries. */
  size_t seen = 0;
  int64_t max_t = INT64_MIN;
  for (size_t i = 0; i < N; i++) {
    cr_assert_eq(push_n(a, 0, evs + i, 1, 1), 0, "%s", rs_harness_errmsg(a));
    max_t = evs[i].t > max_t ? evs[i].t : max_t;
    size_t n = rs_harness_emitted_count(a, SESSIONS);
    for (size_t k = seen; k < n; k++) {
      const rs_session_t *s = session(a, k);
      cr_assert_lt(deadline_of(s), max_t, "closed before its deadline");
      if (k > seen)
        cr_assert(due_before(session(a, k - 1), s), "record %zu: order", i);
    }
    /* Nothing still open is overdue. */
    seen = n;
  }
  cr_assert_eq(rs_harness_counter(a, "sessions_closed"),
               rs_harness_counter(a, "sessions_opened") - 1, "all but zz's");
  cr_assert_gt(seen, 300);
  /* b: batches, a checkpoint and restart in the middle (agenda rebuilt
   * with many sessions open), then the rest: the same outputs. */
  cr_assert_eq(push_n(b, 0, evs, CUT, 64), 0);
  size_t mark = rs_harness_emitted_count(b, SESSIONS);
  cr_assert_eq(rs_harness_checkpoint(b), 0, "%s", rs_harness_errmsg(b));
  cr_assert_eq(rs_harness_restart(b, 0), 0, "%s", rs_harness_errmsg(b));
  cr_assert_eq(push_n(b, 0, evs + CUT, N - CUT, 64), 0);
  char *want = dump(a, SESSIONS, 0, 0);
  char *got1 = dump(b, SESSIONS, 0, 0);
  cr_assert_str_eq(got1, want);
  free(want);
  free(got1);
  cr_assert_gt(mark, 100);
  rs_harness_destroy(a);
  rs_harness_destroy(b);
}

/* ------------------------------------------- open sessions per user */

/* What open_limit_case collected: alice's enriched events and the dead
 * letters (the harness's lists are walked per access, so they are taken
 * and cleared after each push). */
typedef struct taken {
  char *alice;
  size_t len;
  size_t n_dead;
  int64_t dead_off[8];
  char dead_err[8][1024];
} taken_t;

static void take(rs_harness_t *h, taken_t *tk) {
  char *all = dump(h, OUT, 0, 0);
  for (const char *l = all; *l;) {
    const char *nl = strchr(l, '\n');
    size_t ll = nl ? (size_t)(nl - l) + 1 : strlen(l);
    if (!strncmp(l, "alice ", 6)) {
      tk->alice = realloc(tk->alice, tk->len + ll + 1);
      memcpy(tk->alice + tk->len, l, ll);
      tk->len += ll;
      tk->alice[tk->len] = '\0';
    }
    l += ll;
  }
  free(all);
  for (size_t i = 0; i < rs_harness_dead_count(h); i++, tk->n_dead++) {
    cr_assert_lt(tk->n_dead, 8);
    const rs_harness_dead_t *d = rs_harness_dead(h, i);
    tk->dead_off[tk->n_dead] = d->src_offset;
    snprintf(tk->dead_err[tk->n_dead], sizeof tk->dead_err[0], "%s", d->error);
  }
  rs_harness_clear(h);
}

static void push_take(rs_harness_t *h, ev_t *evs, size_t n, taken_t *tk) {
  int rc = push_n(h, 0, evs, n, n);
  cr_assert_eq(rc, 0, "push: %s (%d)", rs_harness_errmsg(h), rc);
  take(h, tk);
}

/* gap 0 and grace 1d: each event of the bot, 2 ms after the last, opens a
 * session that stays open, until it has 65,535 (the most a user entry
 * holds). The record that would open the 65,536th, and any later one that
 * would open another, on arrival or late, is dead-lettered; the batch
 * goes on, other users' records flow as if the bot were not there, a
 * record joining one of the bot's sessions is still applied, and
 * checkpoint and restart work. */
static void open_limit_case(int bot, taken_t *tk) {
  enum { LIMIT = 65535, B = 256 };
  const char *opts[] = {"gap", "0ms", "grace", "1d", NULL};
  rs_harness_t *h = make(opts);
  static ev_t evs[B];
  int64_t off = 0, t = 0, n_alice = 0;
  size_t n = 0;
  memset(tk, 0, sizeof(*tk));
  /* LIMIT + 1 bot records (one per 2 ms), alice's every 5,000th ms. */
  for (int64_t i = 0; i <= LIMIT; i++, t += 2) {
    if (t % 5000 == 0) {
      ev_set(&evs[n++], "alice", "a", RS_EVENT_VIEW, t, off++);
      n_alice++;
    }
    if (bot)
      ev_set(&evs[n++], "bot", "x", RS_EVENT_VIEW, t, off++);
    else
      off++;
    if (n >= B - 2 || i == LIMIT) {
      push_take(h, evs, n, tk);
      n = 0;
    }
  }
  int64_t last = t - 2; /* the refused record's time */
  if (bot) {
    cr_assert_eq(tk->n_dead, 1);
    cr_assert_eq(tk->dead_off[0], off - 1);
    cr_assert(strstr(tk->dead_err[0], "user 'bot' has 65535 open sessions") &&
                  strstr(tk->dead_err[0], "gap 0 ms, grace 86400000 ms"),
              "%s", tk->dead_err[0]);
    cr_assert_eq(rs_harness_counter(h, "sessions_opened"), LIMIT + n_alice);
    const unsigned char *v;
    size_t vn;
    cr_assert_eq(user_state(h, 0, "bot", &v, &vn), 0);
    cr_assert_eq((size_t)v[2] | (size_t)v[3] << 8, LIMIT);
    /* Joining the latest open session (gap 0 is inclusive) still works;
     * a late record between two sessions would open one: refused. */
    ev_set(&evs[0], "bot", "x", RS_EVENT_VIEW, last - 2, off++);
    ev_set(&evs[1], "bot", "x", RS_EVENT_VIEW, last - 3, off++);
    ev_set(&evs[2], "alice", "a", RS_EVENT_VIEW, last, off++);
    push_take(h, evs, 3, tk);
    cr_assert_eq(tk->n_dead, 2);
    cr_assert_eq(tk->dead_off[1], off - 2);
    cr_assert_eq(rs_harness_counter(h, "late_accepted"), 1);
    cr_assert_eq(rs_harness_counter(h, "late_records"), 0);
  } else {
    off += 2;
    ev_set(&evs[0], "alice", "a", RS_EVENT_VIEW, last, off++);
    push_take(h, evs, 1, tk);
  }
  cr_assert_eq(rs_harness_checkpoint(h), 0, "%s", rs_harness_errmsg(h));
  cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
  /* After the restart (the bot's entry read back from the state). */
  n = 0;
  if (bot)
    ev_set(&evs[n++], "bot", "x", RS_EVENT_VIEW, last + 2, off);
  off++;
  ev_set(&evs[n++], "alice", "a", RS_EVENT_VIEW, last + 2, off++);
  ev_set(&evs[n++], "alice", "b", RS_EVENT_VIEW, last + 2, off++);
  push_take(h, evs, n, tk);
  cr_assert_eq(tk->n_dead, bot ? 3 : 0);
  cr_assert_eq(rs_harness_checkpoint(h), 0, "%s", rs_harness_errmsg(h));
  rs_harness_destroy(h);
}

/* Options under which one user can pass the limit are said at start. */
Test(sessionize, options_that_allow_passing_the_open_limit_are_said) {
  const char *risky[] = {"gap", "0ms", "grace", "1d", NULL},
             *usual[] = {"gap", "30m", "grace", "1d", NULL};
  rs_harness_t *h = make(risky);
  int found = 0;
  for (size_t i = 0; i < rs_harness_log_count(h); i++) {
    int level;
    const char *l = rs_harness_log_line(h, i, &level);
    found |= level == RS_LOG_WARN &&
             strstr(l, "gap 0 ms, grace 86400000 ms and "
                       "max_out_of_orderness 0 ms let one user hold up to "
                       "86400001 open sessions; past 65535") != NULL;
  }
  cr_assert(found, "no warning at start");
  rs_harness_destroy(h);
  h = make(usual);
  for (size_t i = 0; i < rs_harness_log_count(h); i++) {
    int level;
    const char *l = rs_harness_log_line(h, i, &level);
    cr_assert_null(strstr(l, "open sessions"), "%s", l);
  }
  rs_harness_destroy(h);
}

Test(sessionize, a_user_beyond_the_open_session_limit_is_dead_lettered) {
  static taken_t with, without;
  open_limit_case(1, &with);
  open_limit_case(0, &without);
  cr_assert_gt(without.len, 0);
  cr_assert_str_eq(with.alice, without.alice,
                   "alice's events differ with the bot");
  free(with.alice);
  free(without.alice);
}

/* With max_out_of_orderness above 0 records wait for the watermark, and
 * the one that would open the 65,536th session is refused when a later
 * record releases it: dead-lettered with the bot as key and the
 * releasing record's source position (its own bytes are no longer held),
 * the message saying so and naming its item; what waited behind it is
 * still applied. */
Test(sessionize, a_record_that_waited_and_would_pass_the_open_limit) {
  enum { LIMIT = 65535, B = 256 };
  const char *opts[] = {"gap",  "0ms", "grace", "1d", "max_out_of_orderness",
                        "10ms", NULL};
  rs_harness_t *h = make(opts);
  static ev_t evs[B];
  taken_t tk;
  memset(&tk, 0, sizeof tk);
  int64_t off = 0, t = 0;
  size_t n = 0;
  for (int64_t i = 0; i <= LIMIT; i++, t += 2) {
    ev_set(&evs[n++], "bot", i == LIMIT ? "last" : "x", RS_EVENT_VIEW, t,
           off++);
    if (n == B || i == LIMIT) {
      push_take(h, evs, n, &tk);
      n = 0;
    }
  }
  int64_t last = t - 2;
  /* The last bot records (within 10 ms of the newest) wait: nothing
   * refused yet. */
  cr_assert_eq(tk.n_dead, 0);
  cr_assert_lt(rs_harness_counter(h, "sessions_opened"), LIMIT);
  /* alice's record moves the watermark past it, and waits itself. */
  int64_t release = off;
  ev_set(&evs[0], "alice", "a", RS_EVENT_VIEW, last + 100, off++);
  cr_assert_eq(push_n(h, 0, evs, 1, 1), 0, "%s", rs_harness_errmsg(h));
  cr_assert_eq(rs_harness_dead_count(h), 1);
  const rs_harness_dead_t *d = rs_harness_dead(h, 0);
  cr_assert(d->key_len == 3 && !memcmp(d->key, "bot", 3),
            "the refused record's user is the key");
  take(h, &tk);
  cr_assert_eq(tk.n_dead, 1);
  cr_assert_eq(tk.dead_off[0], release,
               "sent with the offset of the record that released it");
  cr_assert(strstr(tk.dead_err[0], "user 'bot' has 65535 open sessions") &&
                strstr(tk.dead_err[0], "max_out_of_orderness 10 ms") &&
                strstr(tk.dead_err[0],
                       "The record waited for the watermark: sent with the "
                       "source offset of the record that released it; item "
                       "'last'"),
            "%s", tk.dead_err[0]);
  cr_assert_eq(rs_harness_counter(h, "sessions_opened"), LIMIT);
  /* Released in turn, alice's record opens her session. */
  ev_set(&evs[0], "alice", "b", RS_EVENT_VIEW, last + 200, off++);
  push_take(h, evs, 1, &tk);
  cr_assert_eq(tk.n_dead, 1);
  cr_assert_eq(rs_harness_counter(h, "sessions_opened"), LIMIT + 1);
  cr_assert_not_null(tk.alice, "alice's first event was not applied");
  free(tk.alice);
  cr_assert_eq(rs_harness_checkpoint(h), 0, "%s", rs_harness_errmsg(h));
  rs_harness_destroy(h);
}
