/* Tests of the `user_stats` operator through the harness, which backs its
 * state with a real store and cache: exact output lines and stored bytes
 * for known inputs, counting across batches and partitions (user state
 * per partition, the item counter shared), dead letters, corrupt state,
 * emit none, restarts after a checkpoint and after a crash, eviction under
 * a tiny cache bound, and the fallback for hosts without the minor-1
 * counter helper. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operators/harness.h"

extern const rs_operator_def_t rs_op_user_stats;

static char err[1024];

static rs_harness_t *make(const char *const *options) {
  err[0] = '\0';
  rs_harness_t *h =
      rs_harness_new(&rs_op_user_stats, options, err, sizeof(err));
  cr_assert_not_null(h, "rs_harness_new: %s", err);
  return h;
}

/* An interaction and the record carrying it; both borrowed by the push. */
typedef struct event {
  rs_interaction_t ia;
  rs_record_t rec;
} event_t;

static void ev(event_t *e, const char *user, const char *item, int type,
               int has_value, double value, int64_t ts, int32_t partition,
               int64_t offset) {
  e->ia = (rs_interaction_t){.user = user,
                             .user_len = (uint32_t)strlen(user),
                             .item = item,
                             .item_len = (uint32_t)strlen(item),
                             .event_type = type,
                             .has_value = has_value,
                             .value = value,
                             .timestamp_ms = ts};
  e->rec = (rs_record_t){.kind = RS_KIND_INTERACTION,
                         .key = user,
                         .key_len = strlen(user),
                         .value = "raw",
                         .value_len = 3,
                         .payload = &e->ia,
                         .timestamp_ms = ts,
                         .src_partition = partition,
                         .src_offset = offset};
}

/* Pushes events[0..n) as one batch of `partition`. */
static int push(rs_harness_t *h, int32_t partition, event_t *events, size_t n) {
  rs_record_t recs[64];
  cr_assert_leq(n, 64);
  for (size_t i = 0; i < n; i++)
    recs[i] = events[i].rec;
  return rs_harness_push(h, partition, recs, n);
}

static void push_ok(rs_harness_t *h, int32_t partition, event_t *events,
                    size_t n) {
  int rc = push(h, partition, events, n);
  cr_assert_eq(rc, 0, "push: %d", rc);
}

/* Emitted value i as a string (static buffer). */
static const char *line(rs_harness_t *h, size_t i) {
  static char out[2048];
  const rs_record_t *r = rs_harness_emitted(h, 0, i);
  cr_assert_not_null(r, "no output %zu (have %zu)", i,
                     rs_harness_emitted_count(h, 0));
  cr_assert_lt(r->value_len, sizeof(out));
  memcpy(out, r->value, r->value_len);
  out[r->value_len] = '\0';
  return out;
}

static void assert_line(rs_harness_t *h, size_t i, const char *expected) {
  cr_assert_str_eq(line(h, i), expected, "output %zu", i);
}

/* Value of field `name` in output i, parsed as an integer. */
static int64_t field(rs_harness_t *h, size_t i, const char *name) {
  const char *l = line(h, i);
  char pat[64];
  snprintf(pat, sizeof(pat), " %s=", name);
  const char *p = strstr(l, pat);
  cr_assert_not_null(p, "no %s in '%s'", name, l);
  return strtoll(p + strlen(pat), NULL, 10);
}

/* The user state as documented in user_stats.c, decoded independently. */
typedef struct decoded {
  int64_t events, counts[5], first_ts, last_ts;
  double value_sum;
  char item[1100];
  size_t item_len;
} decoded_t;

static int64_t le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return (int64_t)v;
}

static decoded_t user_state(rs_harness_t *h, int32_t partition,
                            const char *user) {
  const void *v;
  size_t n;
  int rc = rs_harness_state_get(h, partition, user, strlen(user), &v, &n);
  cr_assert_eq(rc, 0, "state of %d/%s: %d", partition, user, rc);
  const unsigned char *p = v;
  cr_assert_geq(n, 80);
  cr_assert_eq(p[0], 1, "version");
  decoded_t d = {0};
  d.item_len = (size_t)p[2] | (size_t)p[3] << 8;
  cr_assert_eq(n, 80 + d.item_len);
  d.events = le64(p + 8);
  for (int i = 0; i < 5; i++)
    d.counts[i] = le64(p + 16 + 8 * i);
  int64_t bits = le64(p + 56);
  memcpy(&d.value_sum, &bits, 8);
  d.first_ts = le64(p + 64);
  d.last_ts = le64(p + 72);
  memcpy(d.item, p + 80, d.item_len);
  return d;
}

/* The shared item counter, or -1 if absent. */
static int64_t item_count(rs_harness_t *h, const char *item) {
  char key[256];
  snprintf(key, sizeof(key), "item:%s", item);
  const void *v;
  size_t n;
  int rc =
      rs_harness_state_get(h, RS_PARTITION_SHARED, key, strlen(key), &v, &n);
  if (rc == RS_ENOENT)
    return -1;
  cr_assert_eq(rc, 0);
  cr_assert_eq(n, 8);
  return le64(v);
}

static int logged(rs_harness_t *h, const char *needle) {
  for (size_t i = 0; i < rs_harness_log_count(h); i++)
    if (strstr(rs_harness_log_line(h, i, NULL), needle))
      return 1;
  return 0;
}

Test(user_stats, output_text_and_state_bytes_are_exact) {
  rs_harness_t *h = make(NULL);
  event_t e[3];
  ev(&e[0], "alice", "i1", RS_EVENT_VIEW, 1, 2.5, 1000, 0, 10);
  ev(&e[1], "alice", "i2", RS_EVENT_RATING, 1, 4.0, 900, 0, 11);
  ev(&e[2], "b\\ob x", "it\tem", RS_EVENT_CLICK, 0, 0, 5, 0, 12);
  push_ok(h, 0, e, 3);
  cr_assert_eq(rs_harness_emitted_count(h, 0), 3);
  assert_line(h, 0,
              "user=alice events=1 views=1 clicks=0 carts=0 purchases=0 "
              "ratings=0 value_sum=2.5 first_ts=1000 last_ts=1000 "
              "last_item=i1 item_events=1 ts=1000");
  assert_line(h, 1,
              "user=alice events=2 views=1 clicks=0 carts=0 purchases=0 "
              "ratings=1 value_sum=6.5 first_ts=900 last_ts=1000 "
              "last_item=i2 item_events=1 ts=900");
  assert_line(h, 2,
              "user=b\\x5Cob\\x20x events=1 views=0 clicks=1 carts=0 "
              "purchases=0 ratings=0 value_sum=0 first_ts=5 last_ts=5 "
              "last_item=it\\x09em item_events=1 ts=5");

  const rs_record_t *r = rs_harness_emitted(h, 0, 2);
  cr_assert_eq(r->kind, RS_KIND_BYTES);
  cr_assert_eq(r->key_len, 6);
  cr_assert_eq(memcmp(r->key, "b\\ob x", 6), 0, "key is not the user");
  cr_assert_eq(r->src_partition, 0);
  cr_assert_eq(r->src_offset, 12);
  cr_assert_eq(r->src_ordinal, 0);
  cr_assert_eq(r->timestamp_ms, 5);
  cr_assert_null(r->payload);

  /* The stored bytes of alice after the first event, layout version 1. */
  rs_harness_t *h1 = make(NULL);
  push_ok(h1, 0, e, 1);
  static const unsigned char expected[] = {
      1,    0,  2, 0, 0, 0, 0,    0,    /* version, reserved, item len */
      1,    0,  0, 0, 0, 0, 0,    0,    /* events */
      1,    0,  0, 0, 0, 0, 0,    0,    /* views */
      0,    0,  0, 0, 0, 0, 0,    0,    /* clicks */
      0,    0,  0, 0, 0, 0, 0,    0,    /* carts */
      0,    0,  0, 0, 0, 0, 0,    0,    /* purchases */
      0,    0,  0, 0, 0, 0, 0,    0,    /* ratings */
      0,    0,  0, 0, 0, 0, 0x04, 0x40, /* value_sum 2.5 */
      0xe8, 3,  0, 0, 0, 0, 0,    0,    /* first_ts 1000 */
      0xe8, 3,  0, 0, 0, 0, 0,    0,    /* last_ts 1000 */
      'i',  '1'};
  const void *v;
  size_t n;
  cr_assert_eq(rs_harness_state_get(h1, 0, "alice", 5, &v, &n), 0);
  cr_assert_eq(n, sizeof(expected));
  cr_assert_eq(memcmp(v, expected, n), 0, "stored layout changed");
  rs_harness_destroy(h1);
  rs_harness_destroy(h);
}

Test(user_stats, counts_per_user_across_batches) {
  rs_harness_t *h = make(NULL);
  event_t e[4];
  ev(&e[0], "a", "x", RS_EVENT_VIEW, 0, 0, 100, 2, 1);
  ev(&e[1], "b", "x", RS_EVENT_VIEW, 0, 0, 101, 2, 2);
  push_ok(h, 2, e, 2);
  ev(&e[0], "a", "y", RS_EVENT_CLICK, 0, 0, 102, 2, 3);
  push_ok(h, 2, e, 1);
  ev(&e[0], "a", "z", RS_EVENT_PURCHASE, 1, 30, 103, 2, 4);
  ev(&e[1], "b", "x", RS_EVENT_ADD_TO_CART, 0, 0, 104, 2, 5);
  ev(&e[2], "a", "x", RS_EVENT_VIEW, 0, 0, 99, 2, 6);
  push_ok(h, 2, e, 3);

  cr_assert_eq(rs_harness_emitted_count(h, 0), 6);
  int64_t a_events[] = {1, 0, 2, 3, 0, 4};
  for (size_t i = 0; i < 6; i++)
    if (a_events[i])
      cr_assert_eq(field(h, i, "events"), a_events[i], "output %zu", i);
  cr_assert_eq(field(h, 4, "events"), 2, "b's second event");
  decoded_t a = user_state(h, 2, "a");
  cr_assert_eq(a.events, 4);
  cr_assert_eq(a.counts[RS_EVENT_VIEW], 2);
  cr_assert_eq(a.counts[RS_EVENT_CLICK], 1);
  cr_assert_eq(a.counts[RS_EVENT_PURCHASE], 1);
  cr_assert_eq(a.value_sum, 30.0);
  cr_assert_eq(a.first_ts, 99);
  cr_assert_eq(a.last_ts, 103);
  cr_assert_eq(a.item_len, 1);
  cr_assert_eq(a.item[0], 'x', "last_item follows input order");
  decoded_t b = user_state(h, 2, "b");
  cr_assert_eq(b.events, 2);
  cr_assert_eq(b.counts[RS_EVENT_ADD_TO_CART], 1);
  cr_assert_eq(rs_harness_counter(h, "users_created"), 2);
  cr_assert_eq(rs_harness_counter(h, "records_in"), 6);
  cr_assert_eq(rs_harness_counter(h, "records_out"), 6);
  cr_assert_eq(item_count(h, "x"), 4);
  cr_assert_eq(item_count(h, "y"), 1);
  rs_harness_destroy(h);
}

Test(user_stats, event_type_counts_and_value_sum) {
  rs_harness_t *h = make(NULL);
  event_t e[7];
  ev(&e[0], "u", "i", RS_EVENT_VIEW, 1, 0.1, 1, 0, 0);
  ev(&e[1], "u", "i", RS_EVENT_CLICK, 1, 0.2, 2, 0, 1);
  ev(&e[2], "u", "i", RS_EVENT_ADD_TO_CART, 0, 99.0, 3, 0, 2); /* no value */
  ev(&e[3], "u", "i", RS_EVENT_PURCHASE, 0, 0, 4, 0, 3);
  ev(&e[4], "u", "i", RS_EVENT_PURCHASE, 0, 0, 5, 0, 4);
  ev(&e[5], "u", "i", RS_EVENT_RATING, 1, -1.5, 6, 0, 5);
  ev(&e[6], "u", "i", RS_EVENT_RATING, 1, 5, 7, 0, 6);
  push_ok(h, 0, e, 7);
  assert_line(h, 1,
              "user=u events=2 views=1 clicks=1 carts=0 purchases=0 "
              "ratings=0 value_sum=0.30000000000000004 first_ts=1 last_ts=2 "
              "last_item=i item_events=2 ts=2");
  assert_line(h, 6,
              "user=u events=7 views=1 clicks=1 carts=1 purchases=2 "
              "ratings=2 value_sum=3.7999999999999998 first_ts=1 last_ts=7 "
              "last_item=i item_events=7 ts=7");
  decoded_t d = user_state(h, 0, "u");
  int64_t counts[5] = {1, 1, 1, 2, 2};
  for (int i = 0; i < 5; i++)
    cr_assert_eq(d.counts[i], counts[i], "count %d", i);
  cr_assert_eq(d.value_sum, ((0.1 + 0.2) + -1.5) + 5.0);
  rs_harness_destroy(h);
}

Test(user_stats, item_counter_is_shared_across_partitions) {
  rs_harness_t *h = make(NULL);
  event_t e[2];
  ev(&e[0], "a", "hit", RS_EVENT_VIEW, 0, 0, 1, 0, 0);
  push_ok(h, 0, e, 1);
  ev(&e[0], "b", "hit", RS_EVENT_VIEW, 0, 0, 1, 1, 0);
  ev(&e[1], "c", "other", RS_EVENT_VIEW, 0, 0, 1, 1, 1);
  push_ok(h, 1, e, 2);
  ev(&e[0], "a", "hit", RS_EVENT_CLICK, 0, 0, 2, 0, 1);
  push_ok(h, 0, e, 1);
  cr_assert_eq(field(h, 0, "item_events"), 1);
  cr_assert_eq(field(h, 1, "item_events"), 2, "partition 1 sees 0's count");
  cr_assert_eq(field(h, 2, "item_events"), 1);
  cr_assert_eq(field(h, 3, "item_events"), 3);
  cr_assert_eq(item_count(h, "hit"), 3);
  cr_assert_eq(item_count(h, "other"), 1);
  /* Not partition-scoped: no copy in partition 0 or 1. */
  const void *v;
  size_t n;
  cr_assert_eq(rs_harness_state_get(h, 0, "item:hit", 8, &v, &n), RS_ENOENT);
  cr_assert_eq(rs_harness_state_get(h, 1, "item:hit", 8, &v, &n), RS_ENOENT);
  rs_harness_destroy(h);
}

Test(user_stats, user_state_is_per_partition) {
  rs_harness_t *h = make(NULL);
  event_t e[1];
  ev(&e[0], "same", "i", RS_EVENT_VIEW, 1, 1, 10, 0, 0);
  push_ok(h, 0, e, 1);
  ev(&e[0], "same", "j", RS_EVENT_CLICK, 1, 2, 20, 1, 0);
  push_ok(h, 1, e, 1);
  ev(&e[0], "same", "k", RS_EVENT_VIEW, 1, 4, 30, 0, 1);
  push_ok(h, 0, e, 1);
  cr_assert_eq(field(h, 0, "events"), 1);
  cr_assert_eq(field(h, 1, "events"), 1, "partition 1 saw partition 0's user");
  cr_assert_eq(field(h, 2, "events"), 2);
  decoded_t p0 = user_state(h, 0, "same"), p1 = user_state(h, 1, "same");
  cr_assert_eq(p0.events, 2);
  cr_assert_eq(p0.value_sum, 5.0);
  cr_assert_eq(p0.counts[RS_EVENT_CLICK], 0);
  cr_assert_eq(p1.events, 1);
  cr_assert_eq(p1.value_sum, 2.0);
  cr_assert_eq(p1.counts[RS_EVENT_CLICK], 1);
  cr_assert_eq(rs_harness_counter(h, "users_created"), 2);
  rs_harness_destroy(h);
}

Test(user_stats, bad_records_go_to_dead_letter) {
  rs_harness_t *h = make(NULL);
  event_t e[8];
  ev(&e[0], "ok", "i", RS_EVENT_VIEW, 0, 0, 1, 0, 100);
  e[1].rec = (rs_record_t){.kind = RS_KIND_BYTES,
                           .key = "k",
                           .key_len = 1,
                           .value = "{json}",
                           .value_len = 6,
                           .src_partition = 0,
                           .src_offset = 101};
  ev(&e[2], "", "i", RS_EVENT_VIEW, 0, 0, 1, 0, 102);
  ev(&e[3], "u", "i", 7, 0, 0, 1, 0, 103);
  ev(&e[4], "u", "i", RS_EVENT_RATING, 1, INFINITY, 1, 0, 104);
  ev(&e[5], "u", "", RS_EVENT_VIEW, 0, 0, 1, 0, 105);
  ev(&e[6], "ok", "i", RS_EVENT_CLICK, 0, 0, 2, 0, 106);
  e[6].rec.payload = NULL;
  ev(&e[7], "ok", "i", RS_EVENT_CLICK, 0, 0, 3, 0, 107);
  push_ok(h, 0, e, 8);

  static const char *const reasons[] = {
      "user_stats expects interaction records (kind 1), got kind 0",
      "interaction has no user",
      "interaction has unknown event type 7",
      "interaction value is not finite",
      "interaction has no item",
      "interaction record has no payload"};
  cr_assert_eq(rs_harness_dead_count(h), 6);
  for (size_t i = 0; i < 6; i++) {
    const rs_harness_dead_t *d = rs_harness_dead(h, i);
    cr_assert(strstr(d->error, reasons[i]), "dead letter %zu: '%s' lacks '%s'",
              i, d->error, reasons[i]);
    cr_assert_eq(d->src_offset, 101 + (int64_t)i);
  }
  const rs_harness_dead_t *d = rs_harness_dead(h, 0);
  cr_assert_eq(d->value_len, 6);
  cr_assert_eq(memcmp(d->value, "{json}", 6), 0, "original bytes changed");
  cr_assert_eq(memcmp(d->key, "k", 1), 0);

  /* Good records around them are counted, bad ones leave no state. */
  cr_assert_eq(rs_harness_emitted_count(h, 0), 2);
  cr_assert_eq(rs_harness_emitted(h, 0, 0)->src_offset, 100);
  cr_assert_eq(rs_harness_emitted(h, 0, 1)->src_offset, 107);
  cr_assert_eq(field(h, 1, "events"), 2);
  const void *v;
  size_t n;
  cr_assert_eq(rs_harness_state_get(h, 0, "u", 1, &v, &n), RS_ENOENT);
  cr_assert_eq(item_count(h, "i"), 2);
  cr_assert_eq(rs_harness_counter(h, "dead_lettered"), 6);
  cr_assert_eq(rs_harness_counter(h, "records_out"), 2);
  rs_harness_destroy(h);
}

Test(user_stats, corrupt_stored_value_stops_with_a_message) {
  rs_harness_t *h = make(NULL);
  event_t e[1];
  ev(&e[0], "u", "i", RS_EVENT_VIEW, 0, 0, 1, 0, 0);

  /* Too short. */
  cr_assert_eq(rs_harness_state_put(h, 0, "u", 1, "garbage", 7), 0);
  cr_assert_eq(push(h, 0, e, 1), RS_ESTATE);
  cr_assert(logged(h, "partition 0 user 'u': stored state is not a "
                      "version-1 user_stats record: 7 bytes, shorter than "
                      "the 80-byte header"));

  /* Right size, another version. */
  unsigned char b[82] = {2, 0, 2, 0};
  cr_assert_eq(rs_harness_state_put(h, 0, "u", 1, b, sizeof(b)), 0);
  cr_assert_eq(push(h, 0, e, 1), RS_ESTATE);
  cr_assert(logged(h, "layout version 2 (this build reads 1)"));

  /* Version 1, but the item length disagrees with the size. */
  b[0] = 1;
  b[2] = 3;
  cr_assert_eq(rs_harness_state_put(h, 0, "u", 1, b, sizeof(b)), 0);
  cr_assert_eq(push(h, 0, e, 1), RS_ESTATE);
  cr_assert(logged(h, "82 bytes with last_item_len 3"));

  /* The shared counter is not 8 bytes. */
  b[2] = 2;
  cr_assert_eq(rs_harness_state_put(h, 0, "u", 1, b, sizeof(b)), 0);
  cr_assert_eq(
      rs_harness_state_put(h, RS_PARTITION_SHARED, "item:i", 6, "abc", 3), 0);
  cr_assert_eq(push(h, 0, e, 1), RS_ERANGE);
  cr_assert(logged(h, "shared state 'item:i' is not an 8-byte counter"));

  cr_assert_eq(rs_harness_emitted_count(h, 0), 0);
  cr_assert_eq(rs_harness_dead_count(h), 0, "state errors are not bad input");

  /* A valid value is read and extended. */
  cr_assert_eq(rs_harness_state_put(h, RS_PARTITION_SHARED, "item:i", 6,
                                    "\x05\0\0\0\0\0\0\0", 8),
               0);
  cr_assert_eq(push(h, 0, e, 1), 0);
  assert_line(h, 0,
              "user=u events=1 views=1 clicks=0 carts=0 purchases=0 "
              "ratings=0 value_sum=0 first_ts=0 last_ts=1 last_item=i "
              "item_events=6 ts=1");
  rs_harness_destroy(h);
}

Test(user_stats, emit_none_keeps_state_only) {
  const char *opts[] = {"emit", "none", NULL};
  rs_harness_t *h = make(opts);
  event_t e[3];
  ev(&e[0], "u", "i", RS_EVENT_VIEW, 0, 0, 1, 0, 0);
  ev(&e[1], "u", "i", RS_EVENT_CLICK, 0, 0, 2, 0, 1);
  ev(&e[2], "v", "i", RS_EVENT_CLICK, 0, 0, 2, 0, 2);
  push_ok(h, 0, e, 3);
  cr_assert_eq(rs_harness_emitted_count(h, 0), 0);
  cr_assert_eq(rs_harness_counter(h, "records_out"), 0);
  cr_assert_eq(user_state(h, 0, "u").events, 2);
  cr_assert_eq(user_state(h, 0, "v").events, 1);
  cr_assert_eq(item_count(h, "i"), 3);
  cr_assert_eq(rs_harness_counter(h, "users_created"), 2);
  rs_harness_destroy(h);
}

Test(user_stats, restart_after_checkpoint_keeps_state) {
  rs_harness_t *h = make(NULL);
  event_t e[2];
  ev(&e[0], "u", "i", RS_EVENT_VIEW, 1, 1.25, 10, 0, 0);
  ev(&e[1], "w", "i", RS_EVENT_VIEW, 0, 0, 11, 1, 0);
  push_ok(h, 0, e, 1);
  push_ok(h, 1, e + 1, 1);
  cr_assert_eq(rs_harness_checkpoint(h), 0);
  cr_assert_eq(rs_harness_restart(h, 1), 0, "%s", rs_harness_errmsg(h));
  ev(&e[0], "u", "j", RS_EVENT_CLICK, 1, 2, 12, 0, 1);
  push_ok(h, 0, e, 1);
  assert_line(h, 2,
              "user=u events=2 views=1 clicks=1 carts=0 purchases=0 "
              "ratings=0 value_sum=3.25 first_ts=10 last_ts=12 last_item=j "
              "item_events=1 ts=12");

  /* A clean restart checkpoints by itself. */
  cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
  ev(&e[0], "u", "i", RS_EVENT_VIEW, 0, 0, 13, 0, 2);
  push_ok(h, 0, e, 1);
  cr_assert_eq(field(h, 3, "events"), 3);
  cr_assert_eq(field(h, 3, "item_events"), 3);
  cr_assert_eq(user_state(h, 1, "w").events, 1);
  cr_assert_eq(rs_harness_counter(h, "users_created"), 2,
               "a restored user was created again");
  rs_harness_destroy(h);
}

Test(user_stats, crash_loses_only_what_was_not_checkpointed) {
  rs_harness_t *h = make(NULL);
  event_t e[3];
  ev(&e[0], "u", "i", RS_EVENT_VIEW, 1, 1, 1, 0, 0);
  ev(&e[1], "u", "i", RS_EVENT_VIEW, 1, 1, 2, 0, 1);
  push_ok(h, 0, e, 2);
  cr_assert_eq(rs_harness_checkpoint(h), 0);
  ev(&e[0], "u", "i", RS_EVENT_CLICK, 1, 10, 3, 0, 2);
  ev(&e[1], "u", "k", RS_EVENT_CLICK, 1, 10, 4, 0, 3);
  ev(&e[2], "new", "i", RS_EVENT_CLICK, 1, 10, 5, 0, 4);
  push_ok(h, 0, e, 3);
  cr_assert_eq(field(h, 3, "events"), 4);
  cr_assert_eq(rs_harness_restart(h, 1), 0, "%s", rs_harness_errmsg(h));

  /* Back to the checkpoint: u has 2 events, i was seen twice, k and new
   * never happened. Replaying offset 2 gives the same line as before. */
  cr_assert_eq(user_state(h, 0, "u").events, 2);
  cr_assert_eq(user_state(h, 0, "u").value_sum, 2.0);
  cr_assert_eq(item_count(h, "i"), 2);
  cr_assert_eq(item_count(h, "k"), -1);
  const void *v;
  size_t n;
  cr_assert_eq(rs_harness_state_get(h, 0, "new", 3, &v, &n), RS_ENOENT);
  char before[2048];
  snprintf(before, sizeof(before), "%s", line(h, 2));
  push_ok(h, 0, e, 1);
  cr_assert_str_eq(line(h, 5), before, "replay differs from the first run");
  assert_line(h, 5,
              "user=u events=3 views=2 clicks=1 carts=0 purchases=0 "
              "ratings=0 value_sum=12 first_ts=1 last_ts=3 last_item=i "
              "item_events=3 ts=3");
  rs_harness_destroy(h);
}

/* Runs the same 3 rounds over `users` users in two partitions and returns
 * the harness (for its outputs). */
static rs_harness_t *run_many(size_t cache_bytes, int users, int crash_mid) {
  rs_harness_t *h = make(NULL);
  if (cache_bytes)
    cr_assert_eq(rs_harness_set_cache_bytes(h, cache_bytes), 0);
  static char names[400][16], items[400][16];
  cr_assert_leq(users, 400);
  for (int round = 0; round < 3; round++) {
    for (int base = 0; base < users; base += 50) {
      for (int32_t p = 0; p < 2; p++) {
        event_t e[25];
        size_t n = 0;
        for (int u = base + p; u < base + 50 && u < users; u += 2) {
          snprintf(names[u], sizeof(names[u]), "user-%03d", u);
          snprintf(items[u], sizeof(items[u]), "item-%d", (u * 7 + round) % 13);
          ev(&e[n], names[u], items[u], (u + round) % 5, 1, 0.5 * u,
             1000 * round + u, p, round * users + u);
          n++;
        }
        push_ok(h, p, e, n);
      }
    }
    if (crash_mid && round == 1) {
      cr_assert_eq(rs_harness_checkpoint(h), 0);
      cr_assert_eq(rs_harness_restart(h, 1), 0, "%s", rs_harness_errmsg(h));
    }
  }
  return h;
}

Test(user_stats, eviction_under_a_tiny_cache_keeps_results) {
  const int users = 400;
  rs_harness_t *big = run_many(0, users, 0);
  rs_harness_t *tiny = run_many(4096, users, 1);
  rs_cache_stats_t st;
  rs_harness_cache_stats(tiny, &st);
  cr_assert_gt(st.evictions, 0, "the 4 KiB cache evicted nothing");
  cr_assert_eq(st.bound_bytes, 4096);
  rs_harness_cache_stats(big, &st);
  cr_assert_eq(st.evictions, 0);

  size_t n = rs_harness_emitted_count(big, 0);
  cr_assert_eq(n, 3 * (size_t)users);
  cr_assert_eq(rs_harness_emitted_count(tiny, 0), n);
  for (size_t i = 0; i < n; i++) {
    char a[2048];
    snprintf(a, sizeof(a), "%s", line(big, i));
    cr_assert_str_eq(line(tiny, i), a, "output %zu differs", i);
  }
  /* And the figures are the right ones, not just the same ones. */
  for (size_t i = 2 * (size_t)users; i < n; i++)
    cr_assert_eq(field(big, i, "events"), 3, "output %zu", i);
  decoded_t d = user_state(tiny, 1, "user-123");
  cr_assert_eq(d.events, 3);
  cr_assert_eq(d.value_sum, 3 * 61.5);
  cr_assert_eq(d.first_ts, 123);
  cr_assert_eq(d.last_ts, 2123);
  int64_t total = 0;
  for (int i = 0; i < 13; i++) {
    char item[16];
    snprintf(item, sizeof(item), "item-%d", i);
    int64_t c = item_count(tiny, item);
    cr_assert_eq(c, item_count(big, item), "%s", item);
    total += c < 0 ? 0 : c;
  }
  cr_assert_eq(total, 3 * users);
  cr_assert_eq(rs_harness_counter(tiny, "users_created"), users);
  rs_harness_destroy(big);
  rs_harness_destroy(tiny);
}

Test(user_stats, last_item_is_cut_at_max_item_len) {
  const char *opts[] = {"max_item_len", "5", NULL};
  rs_harness_t *h = make(opts);
  event_t e[3];
  ev(&e[0], "u", "abcdefgh", RS_EVENT_VIEW, 0, 0, 1, 0, 0);
  /* "ab" then U+00E9 (2 bytes) then U+20AC (3 bytes): byte 5 is inside
   * the euro sign, so the cut backs off to 4 bytes. */
  ev(&e[1], "u", "ab\xc3\xa9\xe2\x82\xac", RS_EVENT_VIEW, 0, 0, 2, 0, 1);
  ev(&e[2], "u", "abcde", RS_EVENT_VIEW, 0, 0, 3, 0, 2);
  push_ok(h, 0, e, 3);
  cr_assert(strstr(line(h, 0), " last_item=abcde "), "%s", line(h, 0));
  cr_assert(strstr(line(h, 1), " last_item=ab\xc3\xa9 "), "%s", line(h, 1));
  cr_assert(strstr(line(h, 2), " last_item=abcde "), "%s", line(h, 2));
  cr_assert_eq(user_state(h, 0, "u").item_len, 5);
  /* The counter keys on the whole id. */
  cr_assert_eq(item_count(h, "abcdefgh"), 1);
  cr_assert_eq(item_count(h, "abcde"), 1);
  rs_harness_destroy(h);
}

Test(user_stats, host_without_counter_helper_uses_get_and_put) {
  rs_harness_t *h = make(NULL);
  event_t e[1];
  ev(&e[0], "u", "i", RS_EVENT_VIEW, 0, 0, 1, 0, 0);
  push_ok(h, 0, e, 1);
  rs_harness_set_host_struct_size(
      h, (uint32_t)offsetof(rs_host_api_t, state_get_floats));
  cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
  ev(&e[0], "v", "i", RS_EVENT_VIEW, 0, 0, 2, 1, 0);
  push_ok(h, 1, e, 1);
  cr_assert_eq(field(h, 1, "item_events"), 2);
  cr_assert_eq(item_count(h, "i"), 2);
  cr_assert_eq(
      rs_harness_state_put(h, RS_PARTITION_SHARED, "item:i", 6, "ab", 2), 0);
  cr_assert_eq(push(h, 1, e, 1), RS_ERANGE);
  cr_assert(logged(h, "shared state 'item:i' is not an 8-byte counter"));
  rs_harness_destroy(h);
}

Test(user_stats, refuses_a_batch_without_a_partition) {
  rs_harness_t *h = make(NULL);
  event_t e[1];
  ev(&e[0], "u", "i", RS_EVENT_VIEW, 0, 0, 1, 0, 0);
  cr_assert_eq(push(h, RS_PARTITION_SHARED, e, 1), RS_EINVAL);
  cr_assert(logged(h, "user state needs a partition >= 0"));
  cr_assert_eq(rs_harness_emitted_count(h, 0), 0);
  rs_harness_destroy(h);
}

static void expect_init_error(const char *const *opts, const char *needle) {
  err[0] = '\0';
  rs_harness_t *h = rs_harness_new(&rs_op_user_stats, opts, err, sizeof(err));
  cr_assert_null(h, "accepted options that should fail with '%s'", needle);
  cr_assert(strstr(err, needle), "error '%s' lacks '%s'", err, needle);
}

Test(user_stats, options) {
  const char *a[] = {"emit", "all", NULL};
  expect_init_error(a, "option 'emit': 'all' is not one of updates|none");
  const char *b[] = {"max_item_len", "0", NULL};
  expect_init_error(b, "option 'max_item_len': 0 is out of range");
  const char *c[] = {"max_item_len", "1025", NULL};
  expect_init_error(c, "option 'max_item_len': 1025 is out of range");
  const char *ok[] = {"max_item_len", "1024", "emit", "updates", NULL};
  rs_harness_destroy(make(ok));

  cr_assert_str_eq(rs_op_user_stats.name, "user_stats");
  cr_assert_eq(rs_op_user_stats.n_options, 2);
  for (size_t i = 0; i < rs_op_user_stats.n_options; i++) {
    const rs_option_def_t *o = &rs_op_user_stats.options[i];
    cr_assert(o->description && strlen(o->description) > 40,
              "option %s lacks a description", o->name);
    cr_assert_not_null(o->default_value, "option %s", o->name);
  }
}

/* When nothing reads port `out` (host->port_wanted, e.g. a replay with
 * outputs suppressed) the line is not built: each emit carries the key and
 * source position only, the state is the same, and lines come back as soon
 * as the port is read again. A host without port_wanted gets lines. */
Test(user_stats, unread_output_is_not_built) {
  rs_harness_t *h = make(NULL), *ref = make(NULL);
  event_t e[2];
  ev(&e[0], "alice", "i1", RS_EVENT_VIEW, 1, 2.5, 1000, 0, 10);
  ev(&e[1], "bob", "i2", RS_EVENT_CLICK, 0, 0, 1001, 0, 11);
  rs_harness_set_port_wanted(h, 0, 0);
  push_ok(h, 0, e, 2);
  push_ok(ref, 0, e, 2);
  cr_assert_eq(rs_harness_emitted_count(h, 0), 2);
  for (size_t i = 0; i < 2; i++) {
    const rs_record_t *r = rs_harness_emitted(h, 0, i);
    cr_assert_eq(r->value_len, 0, "output %zu was built", i);
    cr_assert_eq(r->src_offset, 10 + (int64_t)i);
    cr_assert_eq(r->key_len, i ? 3u : 5u);
  }
  cr_assert_eq(rs_harness_counter(h, "records_out"), 2);
  decoded_t a = user_state(h, 0, "alice"), b = user_state(ref, 0, "alice");
  cr_assert_eq(a.events, b.events);
  cr_assert_eq(a.value_sum, b.value_sum);
  cr_assert_eq(item_count(h, "i2"), 1);

  rs_harness_set_port_wanted(h, 0, 1);
  push_ok(h, 0, e, 1);
  assert_line(h, 2,
              "user=alice events=2 views=2 clicks=0 carts=0 purchases=0 "
              "ratings=0 value_sum=5 first_ts=1000 last_ts=1000 "
              "last_item=i1 item_events=2 ts=1000");

  /* An ABI minor-2 host: no port_wanted, so the line is always built. */
  rs_harness_set_port_wanted(h, 0, 0);
  rs_harness_set_host_struct_size(h,
                                  (uint32_t)offsetof(rs_host_api_t, variant));
  cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
  push_ok(h, 0, e + 1, 1);
  cr_assert_gt(rs_harness_emitted(h, 0, 3)->value_len, 0);
  rs_harness_destroy(ref);
  rs_harness_destroy(h);
}
