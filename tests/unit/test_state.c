/* Unit tests of the state store (state/): the write-back cache (hits,
 * misses, cached absence, the byte bound, write-back of evicted dirty
 * entries, resizing, oversized values), the checkpoint batch (state and
 * offsets together or not at all), prefix scans merging cache, pending
 * batch and RocksDB, partition drops, the value helpers, and the error
 * paths of opening a state directory (locked, corrupt, missing). Each test
 * works in its own mkdtemp directory under /tmp and removes it.
 */
#define _XOPEN_SOURCE 700
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "state/cache.h"
#include "state/store.h"

static char g_dir[64];
static char g_err[1024];

static int rm_one(const char *p, const struct stat *st, int flag,
                  struct FTW *f) {
  (void)st;
  (void)flag;
  (void)f;
  return remove(p);
}

static void mkdir_tmp(void) {
  strcpy(g_dir, "/tmp/rs_state_XXXXXX");
  cr_assert_not_null(mkdtemp(g_dir));
}

static void rm_tmp(void) {
  if (g_dir[0])
    nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  g_dir[0] = '\0';
}

TestSuite(state, .init = mkdir_tmp, .fini = rm_tmp);

static const char *const k_cfs[] = {"counts", "vectors"};

static rs_store_t *open_store(void) {
  rs_store_t *s = NULL;
  int rc = rs_store_open(g_dir, k_cfs, 2, NULL, &s, g_err, sizeof g_err);
  cr_assert_eq(rc, 0, "open: %s", g_err);
  return s;
}

static const char *get_str(rs_cache_t *c, int cf, int32_t p, const char *k) {
  static char out[4096];
  const void *v;
  size_t n;
  int rc = rs_cache_get(c, cf, p, k, strlen(k), &v, &n);
  if (rc == RS_ENOENT)
    return NULL;
  cr_assert_eq(rc, 0, "get %s: %d", k, rc);
  cr_assert_lt(n, sizeof out);
  memcpy(out, v, n);
  out[n] = '\0';
  return out;
}

static const char *raw_str(rs_store_t *s, int cf, int32_t p, const char *k) {
  static char out[4096];
  const void *v;
  size_t n;
  int rc = rs_store_get(s, cf, p, k, strlen(k), &v, &n);
  if (rc == RS_ENOENT)
    return NULL;
  cr_assert_eq(rc, 0, "raw get %s: %d %s", k, rc, rs_store_errmsg(s));
  cr_assert_lt(n, sizeof out);
  memcpy(out, v, n);
  out[n] = '\0';
  return out;
}

static void put_str(rs_cache_t *c, int cf, int32_t p, const char *k,
                    const char *v) {
  cr_assert_eq(rs_cache_put(c, cf, p, k, strlen(k), v, strlen(v)), 0);
}

Test(state, column_families_and_open_defaults) {
  rs_store_t *s = open_store();
  cr_expect_geq(rs_store_cf(s, "counts"), 0);
  cr_expect_geq(rs_store_cf(s, "vectors"), 0);
  cr_expect_geq(rs_store_cf(s, RS_STORE_OFFSETS_CF), 0);
  cr_expect_eq(rs_store_cf(s, "nope"), RS_ENOENT);
  cr_expect_str_eq(rs_store_dir(s), g_dir);
  rs_store_destroy(s);
  /* Reopening with fewer names still opens the ones on disk. */
  rs_store_t *s2 = NULL;
  cr_assert_eq(rs_store_open(g_dir, NULL, 0, NULL, &s2, g_err, sizeof g_err), 0,
               "%s", g_err);
  cr_expect_geq(rs_store_cf(s2, "vectors"), 0);
  rs_store_destroy(s2);
}

Test(state, hit_miss_and_cached_absence) {
  rs_store_t *s = open_store();
  int cf = rs_store_cf(s, "counts");
  cr_assert_eq(rs_store_put(s, cf, 3, "k", 1, "v1", 2), 0);
  rs_cache_t *c;
  cr_assert_eq(rs_cache_create(s, 1 << 20, &c), 0);
  rs_cache_stats_t st;

  cr_expect_str_eq(get_str(c, cf, 3, "k"), "v1");
  rs_cache_stats(c, &st);
  cr_expect_eq(st.misses, 1);
  cr_expect_eq(st.hits, 0);
  cr_expect_str_eq(get_str(c, cf, 3, "k"), "v1");
  rs_cache_stats(c, &st);
  cr_expect_eq(st.hits, 1);

  /* Same key, other partition: a different entry, absent. Its absence is
   * cached: the second read does not go to RocksDB. */
  cr_expect_null(get_str(c, cf, 4, "k"));
  cr_expect_null(get_str(c, cf, 4, "k"));
  rs_cache_stats(c, &st);
  cr_expect_eq(st.misses, 2);
  cr_expect_eq(st.hits, 2);
  cr_expect_eq(st.dirty_bytes, 0);
  cr_expect_eq(st.entries, 2);

  /* A write is dirty and not in RocksDB until a checkpoint. */
  put_str(c, cf, 3, "k", "v2");
  cr_expect_str_eq(get_str(c, cf, 3, "k"), "v2");
  cr_expect_str_eq(raw_str(s, cf, 3, "k"), "v1");
  rs_cache_stats(c, &st);
  cr_expect_gt(st.dirty_bytes, 0);
  cr_assert_eq(rs_store_checkpoint(s, c, NULL, 0), 0);
  cr_expect_str_eq(raw_str(s, cf, 3, "k"), "v2");
  rs_cache_stats(c, &st);
  cr_expect_eq(st.dirty_bytes, 0);

  /* A delete is a tombstone until the checkpoint. */
  cr_assert_eq(rs_cache_delete(c, cf, 3, "k", 1), 0);
  cr_expect_null(get_str(c, cf, 3, "k"));
  cr_expect_str_eq(raw_str(s, cf, 3, "k"), "v2");
  cr_assert_eq(rs_store_checkpoint(s, c, NULL, 0), 0);
  cr_expect_null(raw_str(s, cf, 3, "k"));
  rs_cache_destroy(c);
  rs_store_destroy(s);
}

Test(state, value_grows_and_shrinks_in_place) {
  rs_store_t *s = open_store();
  int cf = rs_store_cf(s, "counts");
  rs_cache_t *c;
  cr_assert_eq(rs_cache_create(s, 1 << 20, &c), 0);
  char big[3000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  put_str(c, cf, 0, "k", "a");
  put_str(c, cf, 0, "k", big);
  cr_expect_str_eq(get_str(c, cf, 0, "k"), big);
  put_str(c, cf, 0, "k", "bb");
  cr_expect_str_eq(get_str(c, cf, 0, "k"), "bb");
  rs_cache_stats_t st;
  rs_cache_stats(c, &st);
  cr_expect_eq(st.entries, 1);
  cr_assert_eq(rs_store_checkpoint(s, c, NULL, 0), 0);
  cr_expect_str_eq(raw_str(s, cf, 0, "k"), "bb");
  rs_cache_destroy(c);
  rs_store_destroy(s);
}

Test(state, byte_bound_is_respected_and_evictions_write_back) {
  rs_store_t *s = open_store();
  int cf = rs_store_cf(s, "counts");
  rs_cache_t *c;
  const size_t bound = 64 * 1024;
  cr_assert_eq(rs_cache_create(s, bound, &c), 0);
  char key[32], val[200];
  rs_cache_stats_t st;
  for (int i = 0; i < 5000; i++) {
    snprintf(key, sizeof key, "key-%05d", i);
    memset(val, 'a' + i % 26, sizeof val);
    cr_assert_eq(rs_cache_put(c, cf, i % 3, key, strlen(key), val,
                              (size_t)(50 + i % 150)),
                 0);
    rs_cache_stats(c, &st);
    cr_assert_leq(st.total_bytes, bound, "after put %d: %zu > %zu", i,
                  st.total_bytes, bound);
    if (i % 7 == 0) { /* reads of evicted and absent keys also respect it */
      snprintf(key, sizeof key, "key-%05d", i / 2);
      const void *v;
      size_t n;
      cr_assert_eq(rs_cache_get(c, cf, (i / 2) % 3, key, strlen(key), &v, &n),
                   0);
      cr_assert_eq(n, (size_t)(50 + (i / 2) % 150));
      cr_assert_eq(rs_cache_get(c, cf, 7, key, strlen(key), &v, &n), RS_ENOENT);
      rs_cache_stats(c, &st);
      cr_assert_leq(st.total_bytes, bound);
    }
  }
  rs_cache_stats(c, &st);
  cr_expect_gt(st.evictions, 1000);
  cr_expect_gt(st.writebacks, 1000);
  cr_expect_gt(st.spill_bytes, 0);

  /* Evicted dirty entries are readable through the cache (from the
   * pending batch) but not yet in the database: a crash now must not leave
   * state ahead of the offsets. */
  cr_expect_eq(rs_cache_needs_checkpoint(c), 1);
  cr_expect_null(raw_str(s, cf, 0, "key-00000"));
  const void *v;
  size_t n;
  cr_assert_eq(rs_cache_get(c, cf, 0, "key-00000", 9, &v, &n), 0);
  cr_expect_eq(n, 50);
  cr_expect_eq(((const char *)v)[0], 'a');

  cr_assert_eq(rs_store_checkpoint(s, c, NULL, 0), 0);
  cr_expect_eq(rs_cache_needs_checkpoint(c), 0);
  rs_cache_stats(c, &st);
  cr_expect_eq(st.spill_bytes, 0);
  cr_expect_eq(st.dirty_bytes, 0);
  rs_cache_destroy(c);
  rs_store_destroy(s);

  /* Everything, evicted or not, is in the database after reopening. */
  s = open_store();
  for (int i = 0; i < 5000; i++) {
    snprintf(key, sizeof key, "key-%05d", i);
    const void *rv;
    size_t rn;
    cr_assert_eq(rs_store_get(s, cf, i % 3, key, strlen(key), &rv, &rn), 0,
                 "%s", key);
    cr_assert_eq(rn, (size_t)(50 + i % 150));
    cr_assert_eq(((const char *)rv)[0], 'a' + i % 26);
  }
  rs_store_destroy(s);
}

Test(state, hot_entries_survive_a_stream_of_cold_ones) {
  rs_store_t *s = open_store();
  int cf = rs_store_cf(s, "counts");
  rs_cache_t *c;
  cr_assert_eq(rs_cache_create(s, 32 * 1024, &c), 0);
  char key[32], val[100] = {0};
  for (int i = 0; i < 5; i++) {
    snprintf(key, sizeof key, "hot-%d", i);
    cr_assert_eq(rs_cache_put(c, cf, 0, key, strlen(key), val, sizeof val), 0);
  }
  rs_cache_stats_t st0, st;
  rs_cache_stats(c, &st0);
  for (int i = 0; i < 3000; i++) {
    snprintf(key, sizeof key, "cold-%d", i);
    cr_assert_eq(rs_cache_put(c, cf, 0, key, strlen(key), val, sizeof val), 0);
    snprintf(key, sizeof key, "hot-%d", i % 5);
    const void *v;
    size_t n;
    cr_assert_eq(rs_cache_get(c, cf, 0, key, strlen(key), &v, &n), 0);
  }
  rs_cache_stats(c, &st);
  cr_expect_gt(st.evictions, 2000);
  cr_expect_eq(st.misses, st0.misses, "hot keys were evicted: %llu misses",
               (unsigned long long)(st.misses - st0.misses));
  rs_cache_destroy(c);
  rs_store_destroy(s);
}

Test(state, oversized_value_bypasses_the_cache) {
  rs_store_t *s = open_store();
  int cf = rs_store_cf(s, "counts");
  rs_cache_t *c;
  cr_assert_eq(rs_cache_create(s, 16 * 1024, &c), 0);
  size_t big = 64 * 1024;
  char *val = malloc(big);
  memset(val, 'z', big);
  cr_assert_eq(rs_cache_put(c, cf, 1, "huge", 4, val, big), 0);
  rs_cache_stats_t st;
  rs_cache_stats(c, &st);
  cr_expect_leq(st.total_bytes, st.bound_bytes);
  const void *v;
  size_t n;
  cr_assert_eq(rs_cache_get(c, cf, 1, "huge", 4, &v, &n), 0);
  cr_expect_eq(n, big);
  cr_expect_eq(memcmp(v, val, big), 0);
  rs_cache_stats(c, &st);
  cr_expect_leq(st.total_bytes, st.bound_bytes);
  cr_assert_eq(rs_store_checkpoint(s, c, NULL, 0), 0);
  cr_assert_eq(rs_store_get(s, cf, 1, "huge", 4, &v, &n), 0);
  cr_expect_eq(n, big);
  free(val);
  rs_cache_destroy(c);
  rs_store_destroy(s);
}

Test(state, offsets_round_trip_sorted_with_extras) {
  rs_store_t *s = open_store();
  rs_offset_t in[3] = {
      {.topic = "interactions", .partition = 2, .next_offset = 1000},
      {.topic = "interactions",
       .partition = 0,
       .next_offset = 7,
       .n_extra = 2,
       .extra = {55, -1}},
      {.topic = "a", .partition = 1, .next_offset = INT64_MAX},
  };
  cr_assert_eq(rs_store_checkpoint(s, NULL, in, 3), 0);
  /* A later checkpoint upserts: partition 2 moves on, the others stay. */
  rs_offset_t upd = {
      .topic = "interactions", .partition = 2, .next_offset = 2000};
  cr_assert_eq(rs_store_checkpoint(s, NULL, &upd, 1), 0);
  rs_offset_t *out;
  size_t n;
  cr_assert_eq(rs_store_read_offsets(s, &out, &n), 0);
  cr_assert_eq(n, 3);
  cr_expect_str_eq(out[0].topic, "a");
  cr_expect_eq(out[0].next_offset, INT64_MAX);
  cr_expect_str_eq(out[1].topic, "interactions");
  cr_expect_eq(out[1].partition, 0);
  cr_expect_eq(out[1].n_extra, 2);
  cr_expect_eq(out[1].extra[0], 55);
  cr_expect_eq(out[1].extra[1], -1);
  cr_expect_eq(out[2].partition, 2);
  cr_expect_eq(out[2].next_offset, 2000);
  cr_expect_eq(out[2].n_extra, 0);
  rs_store_offsets_free(out, n);
  rs_offset_t bad = {.topic = "t", .n_extra = RS_OFFSET_MAX_EXTRA + 1};
  cr_expect_eq(rs_store_checkpoint(s, NULL, &bad, 1), RS_EINVAL);
  /* A malformed record is a clear error, not garbage offsets. */
  int ocf = rs_store_cf(s, RS_STORE_OFFSETS_CF);
  cr_assert_eq(rs_store_put(s, ocf, 0, "x", 1, "short", 5), 0);
  cr_expect_eq(rs_store_read_offsets(s, &out, &n), RS_ESTATE);
  cr_expect(strstr(rs_store_errmsg(s), "__offsets is malformed") != NULL, "%s",
            rs_store_errmsg(s));
  cr_expect(strstr(rs_store_errmsg(s), g_dir) != NULL);
  rs_store_destroy(s);
}

Test(state, checkpoint_is_atomic_state_and_offsets) {
  rs_store_t *s = open_store();
  int cf = rs_store_cf(s, "counts");
  rs_cache_t *c;
  cr_assert_eq(rs_cache_create(s, 32 * 1024, &c), 0);
  char key[32];
  /* Checkpoint 1: 500 counters at 1, input at offset 500. */
  for (int i = 0; i < 500; i++) {
    snprintf(key, sizeof key, "user-%d", i);
    cr_assert_eq(rs_cache_counter_add(c, cf, 0, key, strlen(key), 1, NULL), 0);
  }
  rs_offset_t off = {.topic = "in", .partition = 0, .next_offset = 500};
  cr_assert_eq(rs_store_checkpoint(s, c, &off, 1), 0);
  /* Then more input is processed (state changes, some of it evicted into
   * the pending batch) but the process dies before the next checkpoint. */
  for (int i = 0; i < 500; i++) {
    snprintf(key, sizeof key, "user-%d", i);
    cr_assert_eq(rs_cache_counter_add(c, cf, 0, key, strlen(key), 10, NULL), 0);
  }
  cr_assert_eq(rs_cache_delete(c, cf, 0, "user-0", 6), 0);
  rs_cache_stats_t st;
  rs_cache_stats(c, &st);
  cr_expect_gt(st.writebacks, 0);
  rs_cache_destroy(c); /* "crash": no checkpoint */
  rs_store_destroy(s);

  s = open_store();
  rs_offset_t *out;
  size_t n;
  cr_assert_eq(rs_store_read_offsets(s, &out, &n), 0);
  cr_assert_eq(n, 1);
  cr_expect_eq(out[0].next_offset, 500);
  rs_store_offsets_free(out, n);
  for (int i = 0; i < 500; i++) {
    snprintf(key, sizeof key, "user-%d", i);
    int64_t v;
    cr_assert_eq(rs_store_counter_add(s, cf, 0, key, strlen(key), 0, &v), 0);
    cr_assert_eq(v, 1, "%s = %lld after the crash", key, (long long)v);
  }
  /* Checkpoint 2 takes state and offsets together. */
  cr_assert_eq(rs_cache_create(s, 32 * 1024, &c), 0);
  for (int i = 0; i < 500; i++) {
    snprintf(key, sizeof key, "user-%d", i);
    cr_assert_eq(rs_cache_counter_add(c, cf, 0, key, strlen(key), 10, NULL), 0);
  }
  off.next_offset = 1000;
  cr_assert_eq(rs_store_checkpoint(s, c, &off, 1), 0);
  rs_cache_destroy(c);
  rs_store_destroy(s);
  s = open_store();
  cr_assert_eq(rs_store_read_offsets(s, &out, &n), 0);
  cr_expect_eq(out[0].next_offset, 1000);
  rs_store_offsets_free(out, n);
  for (int i = 0; i < 500; i++) {
    snprintf(key, sizeof key, "user-%d", i);
    int64_t v;
    cr_assert_eq(rs_store_counter_add(s, cf, 0, key, strlen(key), 0, &v), 0);
    cr_assert_eq(v, 11);
  }
  rs_store_destroy(s);
}

typedef struct scan_out {
  char text[4096];
  int stop_after;
  int seen;
} scan_out_t;

static int scan_cb(void *opaque, const void *key, size_t key_len,
                   const void *value, size_t value_len) {
  scan_out_t *o = opaque;
  size_t l = strlen(o->text);
  snprintf(o->text + l, sizeof o->text - l, "%.*s=%.*s;", (int)key_len,
           (const char *)key, (int)value_len, (const char *)value);
  if (++o->seen == o->stop_after)
    return 42;
  return 0;
}

Test(state, prefix_scan_merges_cache_batch_and_db) {
  rs_store_t *s = open_store();
  int cf = rs_store_cf(s, "counts");
  const char *db[] = {"a1", "a2", "a3", "a5", "b1"};
  for (size_t i = 0; i < 5; i++)
    cr_assert_eq(rs_store_put(s, cf, 1, db[i], 2, "db", 2), 0);
  cr_assert_eq(rs_store_put(s, cf, 0, "a0", 2, "p0", 2), 0);
  cr_assert_eq(rs_store_put(s, cf, 2, "a9", 2, "p2", 2), 0);
  rs_cache_t *c;
  cr_assert_eq(rs_cache_create(s, 1 << 20, &c), 0);
  put_str(c, cf, 1, "a2", "dirty");
  cr_assert_eq(rs_cache_delete(c, cf, 1, "a3", 2), 0);
  put_str(c, cf, 1, "a4", "new");
  cr_expect_null(get_str(c, cf, 1, "a6"));         /* cached absence: skipped */
  cr_expect_str_eq(get_str(c, cf, 1, "a5"), "db"); /* clean cached copy */
  put_str(c, cf, 2, "a1", "other partition");

  scan_out_t o = {0};
  cr_assert_eq(rs_cache_scan(c, cf, 1, "a", 1, scan_cb, &o), 0);
  cr_expect_str_eq(o.text, "a1=db;a2=dirty;a4=new;a5=db;");
  memset(&o, 0, sizeof o);
  cr_assert_eq(rs_cache_scan(c, cf, 1, NULL, 0, scan_cb, &o), 0);
  cr_expect_str_eq(o.text, "a1=db;a2=dirty;a4=new;a5=db;b1=db;");
  memset(&o, 0, sizeof o);
  o.stop_after = 2;
  cr_expect_eq(rs_cache_scan(c, cf, 1, NULL, 0, scan_cb, &o), 42);
  cr_expect_str_eq(o.text, "a1=db;a2=dirty;");

  /* The raw store sees only the database. */
  memset(&o, 0, sizeof o);
  cr_assert_eq(rs_store_scan(s, cf, 1, "a", 1, scan_cb, &o), 0);
  cr_expect_str_eq(o.text, "a1=db;a2=db;a3=db;a5=db;");
  rs_cache_destroy(c);

  /* Entries spilled into the pending batch take part too: with a tiny
   * cache almost everything below lives in the batch. */
  cr_assert_eq(rs_cache_create(s, 4096, &c), 0);
  cr_assert_eq(rs_cache_delete(c, cf, 1, "a1", 2), 0);
  char k[8];
  for (int i = 0; i < 200; i++) {
    snprintf(k, sizeof k, "c%03d", i);
    put_str(c, cf, 1, k, "s");
  }
  rs_cache_stats_t st;
  rs_cache_stats(c, &st);
  cr_expect_gt(st.writebacks, 100);
  memset(&o, 0, sizeof o);
  cr_assert_eq(rs_cache_scan(c, cf, 1, "a", 1, scan_cb, &o), 0);
  cr_expect_str_eq(o.text, "a2=db;a3=db;a5=db;");
  memset(&o, 0, sizeof o);
  cr_assert_eq(rs_cache_scan(c, cf, 1, "c19", 3, scan_cb, &o), 0);
  cr_expect_str_eq(o.text, "c190=s;c191=s;c192=s;c193=s;c194=s;c195=s;c196=s;"
                           "c197=s;c198=s;c199=s;");
  rs_cache_destroy(c);
  rs_store_destroy(s);
}

static int count_cb(void *opaque, const void *key, size_t key_len,
                    const void *value, size_t value_len) {
  ++*(int *)opaque;
  return 0;
}

static int count_part(rs_store_t *s, rs_cache_t *c, int cf, int32_t p) {
  int n = 0;
  int rc = c ? rs_cache_scan(c, cf, p, NULL, 0, count_cb, &n)
             : rs_store_scan(s, cf, p, NULL, 0, count_cb, &n);
  cr_assert_eq(rc, 0);
  return n;
}

Test(state, drop_partition_in_store_and_cache) {
  rs_store_t *s = open_store();
  int cf = rs_store_cf(s, "counts");
  int other = rs_store_cf(s, "vectors");
  char k[16];
  for (int p = 0; p < 4; p++)
    for (int i = 0; i < 100; i++) {
      snprintf(k, sizeof k, "k%d", i);
      cr_assert_eq(rs_store_put(s, cf, p, k, strlen(k), "v", 1), 0);
      cr_assert_eq(rs_store_put(s, other, p, k, strlen(k), "v", 1), 0);
    }
  cr_assert_eq(rs_store_drop_partition(s, cf, 2), 0);
  cr_expect_eq(count_part(s, NULL, cf, 1), 100);
  cr_expect_eq(count_part(s, NULL, cf, 2), 0);
  cr_expect_eq(count_part(s, NULL, cf, 3), 100);
  cr_expect_eq(count_part(s, NULL, other, 2), 100);
  cr_expect_eq(rs_store_drop_partition(s, cf, -1), RS_EINVAL);

  /* Through the cache the drop is tombstones, written with the next
   * checkpoint: before it, the database still holds the partition. */
  rs_cache_t *c;
  cr_assert_eq(rs_cache_create(s, 1 << 20, &c), 0);
  put_str(c, cf, 3, "new", "dirty");
  cr_expect_str_eq(get_str(c, cf, 3, "k5"), "v");
  cr_assert_eq(rs_cache_drop_partition(c, cf, 3), 0);
  cr_expect_eq(count_part(s, c, cf, 3), 0);
  cr_expect_null(get_str(c, cf, 3, "k5"));
  cr_expect_null(get_str(c, cf, 3, "new"));
  cr_expect_eq(count_part(s, NULL, cf, 3), 100);
  cr_expect_eq(count_part(s, c, cf, 1), 100);
  cr_assert_eq(rs_store_checkpoint(s, c, NULL, 0), 0);
  cr_expect_eq(count_part(s, NULL, cf, 3), 0);
  cr_expect_eq(count_part(s, NULL, cf, 1), 100);
  rs_cache_destroy(c);
  rs_store_destroy(s);
}

Test(state, float_vectors_and_counters) {
  rs_store_t *s = open_store();
  int cf = rs_store_cf(s, "vectors");
  rs_cache_t *c;
  cr_assert_eq(rs_cache_create(s, 1 << 20, &c), 0);
  float v[4] = {1.5f, -2.25f, 0.0f, 3.0e10f}, out[4] = {0};
  cr_assert_eq(rs_cache_put_floats(c, cf, 0, "item", 4, v, 4), 0);
  cr_assert_eq(rs_cache_get_floats(c, cf, 0, "item", 4, out, 4), 0);
  cr_expect_eq(memcmp(v, out, sizeof v), 0);
  cr_expect_eq(rs_cache_get_floats(c, cf, 0, "item", 4, out, 3), RS_ERANGE);
  cr_expect_eq(rs_cache_get_floats(c, cf, 0, "none", 4, out, 4), RS_ENOENT);
  /* Stored as little-endian float32: 1.5f is 0x3fc00000. */
  const void *raw;
  size_t n;
  cr_assert_eq(rs_cache_get(c, cf, 0, "item", 4, &raw, &n), 0);
  cr_assert_eq(n, 16);
  const unsigned char want[4] = {0x00, 0x00, 0xc0, 0x3f};
  cr_expect_eq(memcmp(raw, want, 4), 0);

  int64_t r = 0;
  cr_assert_eq(rs_cache_counter_add(c, cf, 0, "n", 1, 5, &r), 0);
  cr_expect_eq(r, 5);
  cr_assert_eq(rs_cache_counter_add(c, cf, 0, "n", 1, -7, &r), 0);
  cr_expect_eq(r, -2);
  cr_expect_eq(rs_cache_counter_add(c, cf, 0, "item", 4, 1, &r), RS_ERANGE);
  cr_assert_eq(rs_store_checkpoint(s, c, NULL, 0), 0);
  rs_cache_destroy(c);

  /* The raw store reads what the cache wrote, and has the same helpers. */
  cr_assert_eq(rs_store_get_floats(s, cf, 0, "item", 4, out, 4), 0);
  cr_expect_eq(memcmp(v, out, sizeof v), 0);
  cr_expect_eq(rs_store_get_floats(s, cf, 0, "item", 4, out, 5), RS_ERANGE);
  cr_assert_eq(rs_store_put_floats(s, cf, 1, "x", 1, v, 2), 0);
  cr_assert_eq(rs_store_get_floats(s, cf, 1, "x", 1, out, 2), 0);
  cr_expect_eq(out[1], -2.25f);
  cr_assert_eq(rs_store_counter_add(s, cf, 0, "n", 1, 2, &r), 0);
  cr_expect_eq(r, 0);
  cr_assert_eq(rs_store_counter_add(s, cf, 0, "m", 1, INT64_MAX, &r), 0);
  cr_expect_eq(r, INT64_MAX);
  rs_store_destroy(s);
}

/* ---- error paths ---- */

Test(state, locked_directory_in_process) {
  rs_store_t *s = open_store();
  rs_store_t *s2 = NULL;
  int rc = rs_store_open(g_dir, NULL, 0, NULL, &s2, g_err, sizeof g_err);
  cr_expect_eq(rc, RS_ESTATE);
  cr_expect_null(s2);
  cr_expect(strstr(g_err, "is in use by another recstream process") != NULL,
            "%s", g_err);
  cr_expect(strstr(g_err, g_dir) != NULL, "%s", g_err);
  cr_expect(strstr(g_err, "state.dir") != NULL, "%s", g_err);
  rs_store_destroy(s);
  /* Released on close. */
  s = open_store();
  rs_store_destroy(s);
}

Test(state, locked_directory_by_another_process) {
  int ready[2], done[2];
  cr_assert_eq(pipe(ready), 0);
  cr_assert_eq(pipe(done), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    rs_store_t *s = NULL;
    char e[512];
    char ok = rs_store_open(g_dir, NULL, 0, NULL, &s, e, sizeof e) ? 'n' : 'y';
    if (write(ready[1], &ok, 1) != 1)
      _exit(2);
    char b;
    if (read(done[0], &b, 1) != 1)
      _exit(3);
    rs_store_destroy(s);
    _exit(0);
  }
  char ok = 0;
  cr_assert_eq(read(ready[0], &ok, 1), 1);
  cr_assert_eq(ok, 'y', "the child could not open the directory");
  rs_store_t *s = NULL;
  int rc = rs_store_open(g_dir, NULL, 0, NULL, &s, g_err, sizeof g_err);
  cr_expect_eq(rc, RS_ESTATE);
  cr_expect(strstr(g_err, "is in use by another recstream process (lock "
                          "held); stop it or use another state.dir") != NULL,
            "%s", g_err);
  cr_expect(strstr(g_err, g_dir) != NULL, "%s", g_err);
  cr_assert_eq(write(done[1], "x", 1), 1);
  int status;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  s = open_store(); /* the child's exit released the lock */
  rs_store_destroy(s);
}

static void write_file(const char *name, const char *text) {
  char p[256];
  snprintf(p, sizeof p, "%s/%s", g_dir, name);
  FILE *f = fopen(p, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
}

static void expect_corrupt(void) {
  rs_store_t *s = NULL;
  int rc = rs_store_open(g_dir, k_cfs, 2, NULL, &s, g_err, sizeof g_err);
  cr_expect_eq(rc, RS_ESTATE, "rc %d: %s", rc, g_err);
  cr_expect_null(s);
  cr_expect(strstr(g_err, g_dir) != NULL, "%s", g_err);
  cr_expect(strstr(g_err, "recstream replay") != NULL, "%s", g_err);
  cr_expect(strstr(g_err, "--reset-state") != NULL, "%s", g_err);
}

Test(state, corrupt_directory_garbage_current) {
  rs_store_t *s = open_store();
  rs_store_destroy(s);
  write_file("CURRENT", "garbage without newline");
  expect_corrupt();
  /* Nothing was wiped: the LOCK and the options files are still there. */
  char p[256];
  snprintf(p, sizeof p, "%s/LOCK", g_dir);
  cr_expect_eq(access(p, F_OK), 0);
}

Test(state, corrupt_directory_missing_manifest) {
  rs_store_t *s = open_store();
  rs_store_destroy(s);
  write_file("CURRENT", "MANIFEST-999999\n");
  expect_corrupt();
}

Test(state, missing_directory_without_create) {
  rs_store_opts_t o;
  rs_store_opts_init(&o);
  o.create_if_missing = 0;
  char missing[128];
  snprintf(missing, sizeof missing, "%s/not-there", g_dir);
  rs_store_t *s = NULL;
  int rc = rs_store_open(missing, NULL, 0, &o, &s, g_err, sizeof g_err);
  cr_expect_eq(rc, RS_ENOENT);
  cr_expect_null(s);
  cr_expect(strstr(g_err, missing) != NULL, "%s", g_err);
  cr_expect(strstr(g_err, "create_if_missing") != NULL, "%s", g_err);
  cr_expect_neq(access(missing, F_OK), 0, "the directory was created");
  /* An existing but empty directory is not a database either. */
  rc = rs_store_open(g_dir, NULL, 0, &o, &s, g_err, sizeof g_err);
  cr_expect_eq(rc, RS_ENOENT, "%s", g_err);
  cr_expect(strstr(g_err, g_dir) != NULL, "%s", g_err);
  cr_expect(strstr(g_err, "recstream replay") != NULL, "%s", g_err);
  /* A missing parent is reported as such. */
  char deep[160];
  snprintf(deep, sizeof deep, "%s/a/b", g_dir);
  o.create_if_missing = 1;
  rc = rs_store_open(deep, NULL, 0, &o, &s, g_err, sizeof g_err);
  cr_expect_eq(rc, RS_ESTATE);
  cr_expect(strstr(g_err, "cannot create state directory") != NULL, "%s",
            g_err);
  /* A file is not a state directory. */
  char file[160];
  snprintf(file, sizeof file, "%s/file", g_dir);
  fclose(fopen(file, "w"));
  rc = rs_store_open(file, NULL, 0, &o, &s, g_err, sizeof g_err);
  cr_expect_eq(rc, RS_ESTATE);
  cr_expect(strstr(g_err, "is not a directory") != NULL, "%s", g_err);
  /* With create_if_missing the same call creates it. */
  o.create_if_missing = 1;
  cr_assert_eq(rs_store_open(missing, NULL, 0, &o, &s, g_err, sizeof g_err), 0,
               "%s", g_err);
  rs_store_destroy(s);
}

Test(state, compression_choices_open) {
  rs_store_opts_t o;
  rs_store_opts_init(&o);
  rs_compression_t all[] = {RS_COMPRESSION_NONE, RS_COMPRESSION_LZ4,
                            RS_COMPRESSION_ZSTD, RS_COMPRESSION_SNAPPY,
                            RS_COMPRESSION_DEFAULT};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    o.compression = all[i];
    rs_store_t *s = NULL;
    int rc = rs_store_open(g_dir, k_cfs, 2, &o, &s, g_err, sizeof g_err);
    /* An unavailable codec must be a clear configuration error. */
    cr_expect(rc == 0 || rc == RS_ECONFIG, "compression %d: %s", (int)all[i],
              g_err);
    rs_store_destroy(s);
  }
}

/* ---- allocation failure ---- */

static unsigned long g_allocs, g_fail_every;
static void *failing_malloc(size_t n) {
  return ++g_allocs % g_fail_every == 0 ? NULL : malloc(n);
}
static void *failing_calloc(size_t n, size_t m) {
  return ++g_allocs % g_fail_every == 0 ? NULL : calloc(n, m);
}
static void *failing_realloc(void *p, size_t n) {
  return ++g_allocs % g_fail_every == 0 ? NULL : realloc(p, n);
}

/* From here every `every`-th allocation of the engine's allocator fails,
 * until rs_set_allocator(NULL). */
static void fail_allocations(unsigned long every) {
  static const rs_allocator_t failing = {failing_malloc, failing_calloc,
                                         failing_realloc, free};
  g_allocs = 0;
  g_fail_every = every;
  rs_set_allocator(&failing);
}

Test(state, allocation_failures_are_errors_not_crashes) {
  rs_store_t *s = open_store();
  int cf = rs_store_cf(s, "counts");
  rs_cache_t *c;
  cr_assert_eq(rs_cache_create(s, 16 * 1024, &c), 0);
  char key[32], val[600];
  memset(val, 'q', sizeof val);
  int enomem = 0;
  for (unsigned long every = 3; every < 12; every++) {
    fail_allocations(every);
    for (int i = 0; i < 400; i++) {
      size_t kl = (size_t)snprintf(key, sizeof key, "k%d", (i * 7) % 97);
      const void *v;
      size_t n;
      int rc;
      switch (i % 5) {
      case 0:
      case 1:
        rc = rs_cache_put(c, cf, i % 2, key, kl, val, (size_t)(i % 600));
        break;
      case 2:
        rc = rs_cache_get(c, cf, i % 2, key, kl, &v, &n);
        rc = rc == RS_ENOENT ? 0 : rc;
        break;
      case 3:
        rc = rs_cache_delete(c, cf, i % 2, key, kl);
        break;
      default: {
        int cnt = 0;
        rc = rs_cache_scan(c, cf, i % 2, "k1", 2, count_cb, &cnt);
      }
      }
      cr_assert(rc == 0 || rc == RS_ENOMEM, "op %d: %d", i % 5, rc);
      enomem += rc == RS_ENOMEM;
    }
    rs_set_allocator(NULL);
    cr_assert_eq(rs_store_checkpoint(s, c, NULL, 0), 0);
  }
  cr_expect_gt(enomem, 0);
  /* After memory returns, the cache and the database agree. */
  for (int k = 0; k < 97; k++)
    for (int p = 0; p < 2; p++) {
      size_t kl = (size_t)snprintf(key, sizeof key, "k%d", k);
      const void *v;
      size_t n;
      int rc = rs_cache_get(c, cf, p, key, kl, &v, &n);
      char copy[600];
      size_t cn = 0;
      if (rc == 0)
        memcpy(copy, v, cn = n);
      const void *rv;
      size_t rn;
      int rrc = rs_store_get(s, cf, p, key, kl, &rv, &rn);
      cr_assert_eq(rc, rrc, "k%d p%d: cache %d, db %d", k, p, rc, rrc);
      if (rc == 0) {
        cr_assert_eq(cn, rn);
        cr_assert_eq(memcmp(copy, rv, rn), 0);
      }
    }
  rs_cache_destroy(c);
  rs_store_destroy(s);
}

/* Figures for metrics: checkpoint bytes, RocksDB's per column family
 * properties and the block cache. */
Test(state, stats_count_checkpoint_bytes_and_rocksdb_figures) {
  rs_store_t *s = open_store();
  int cf = rs_store_cf(s, "counts");
  rs_store_stats_t st;
  rs_store_stats(s, &st);
  cr_assert_eq(st.checkpoints, 0);
  cr_assert_eq(st.checkpoint_last_bytes, 0);
  cr_assert_gt(st.block_cache_capacity, 0);
  rs_cache_t *c;
  cr_assert_eq(rs_cache_create(s, 1 << 20, &c), 0);
  char key[32];
  for (int i = 0; i < 300; i++) {
    snprintf(key, sizeof key, "user-%d", i);
    put_str(c, cf, 0, key, "a value of some bytes");
  }
  cr_assert_eq(rs_store_checkpoint(s, c, NULL, 0), 0);
  rs_store_stats(s, &st);
  cr_assert_eq(st.checkpoints, 1);
  /* 300 entries of at least key + value bytes each. */
  cr_assert_gt(st.checkpoint_last_bytes, 300 * (6 + 21));
  uint64_t first = st.checkpoint_last_bytes;
  put_str(c, cf, 0, "one-more", "x");
  cr_assert_eq(rs_store_checkpoint(s, c, NULL, 0), 0);
  rs_store_stats(s, &st);
  cr_assert_eq(st.checkpoints, 2);
  cr_assert_lt(st.checkpoint_last_bytes, first);
  cr_assert_eq(st.checkpoint_total_bytes, first + st.checkpoint_last_bytes);
  rs_store_cf_stats_t cs;
  cr_assert_eq(rs_store_cf_stats(s, cf, &cs), 0);
  cr_assert_geq(cs.estimated_keys, 250, "%llu",
                (unsigned long long)cs.estimated_keys);
  cr_assert_gt(cs.memtable_bytes, 0);
  rs_store_cf_stats_t other;
  cr_assert_eq(rs_store_cf_stats(s, rs_store_cf(s, "vectors"), &other), 0);
  cr_assert_eq(other.estimated_keys, 0);
  cr_assert_eq(rs_store_cf_stats(s, 99, &cs), RS_EINVAL);
  rs_cache_destroy(c);
  rs_store_destroy(s);
}

/* The asynchronous checkpoint's steps (rs_store_checkpoint_stage ...
 * staged_done): what was staged at T stays readable while the database
 * does not have it yet, under a cache far too small to hold what comes
 * after: pinned entries are not evicted, the spill as of T stays readable,
 * and what is spilled after T survives the write. */
Test(state, staged_checkpoint_pins_entries_until_written) {
  rs_store_t *s = open_store();
  int cf = rs_store_cf(s, "counts");
  rs_cache_t *c;
  cr_assert_eq(rs_cache_create(s, 8 * 1024, &c), 0);
  char key[32], val[64];
  /* Before T: enough to spill some, then 20 hot ones. */
  for (int i = 0; i < 200; i++) {
    snprintf(key, sizeof key, "s%03d", i);
    snprintf(val, sizeof val, "s-value-%d", i);
    cr_assert_eq(rs_cache_put(c, cf, 0, key, strlen(key), val, strlen(val)), 0);
  }
  for (int i = 0; i < 20; i++) {
    snprintf(key, sizeof key, "p%02d", i);
    snprintf(val, sizeof val, "p-value-%d", i);
    cr_assert_eq(rs_cache_put(c, cf, 0, key, strlen(key), val, strlen(val)), 0);
  }
  rs_cache_stats_t cs;
  rs_cache_stats(c, &cs);
  cr_assert_gt(cs.spill_bytes, 0, "nothing spilled before T");
  rs_offset_t off = {.topic = "in", .partition = 0, .next_offset = 220};
  rs_store_staged_t *st;
  cr_assert_eq(rs_store_checkpoint_stage(s, c, &off, 1, &st), 0);
  cr_assert_eq(rs_store_staged_empty(st), 0);
  /* One staged checkpoint at a time; no synchronous one meanwhile. */
  rs_store_staged_t *st2;
  cr_assert_eq(rs_store_checkpoint_stage(s, c, &off, 1, &st2), RS_EINVAL);
  cr_assert_eq(rs_store_checkpoint(s, c, &off, 1), RS_EINVAL);
  rs_cache_stats(c, &cs);
  cr_expect_eq(cs.dirty_bytes, 0, "staged entries are clean");

  /* After T: a flood of new entries through the tiny cache. */
  for (int i = 0; i < 500; i++) {
    snprintf(key, sizeof key, "f%03d", i);
    snprintf(val, sizeof val, "f-value-%d", i);
    cr_assert_eq(rs_cache_put(c, cf, 0, key, strlen(key), val, strlen(val)), 0);
  }
  rs_cache_stats(c, &cs);
  uint64_t misses = cs.misses;
  cr_assert_gt(cs.evictions, 400);
  for (int i = 0; i < 20; i++) {
    snprintf(key, sizeof key, "p%02d", i);
    snprintf(val, sizeof val, "p-value-%d", i);
    cr_assert_null(raw_str(s, cf, 0, key), "%s written before the write", key);
    const char *got = get_str(c, cf, 0, key);
    cr_assert(got && !strcmp(got, val), "pinned %s reads %s", key,
              got ? got : "(absent)");
  }
  rs_cache_stats(c, &cs);
  cr_assert_eq(cs.misses, misses, "a pinned entry was evicted");
  for (int i = 0; i < 200; i += 7) { /* the spill as of T */
    snprintf(key, sizeof key, "s%03d", i);
    snprintf(val, sizeof val, "s-value-%d", i);
    const char *got = get_str(c, cf, 0, key);
    cr_assert(got && !strcmp(got, val), "%s reads %s", key,
              got ? got : "(absent)");
  }
  /* Changed after T: dirty again, for the next checkpoint. */
  cr_assert_eq(rs_cache_put(c, cf, 0, "p00", 3, "newer", 5), 0);
  cr_assert_str_eq(get_str(c, cf, 0, "p00"), "newer");

  cr_assert_eq(rs_store_staged_write(st, g_err, sizeof g_err), 0, "%s", g_err);
  rs_store_staged_done(s, c, st);
  cr_assert_str_eq(raw_str(s, cf, 0, "p01"), "p-value-1");
  cr_assert_str_eq(raw_str(s, cf, 0, "p00"), "p-value-0");
  cr_assert_str_eq(raw_str(s, cf, 0, "s000"), "s-value-0");
  cr_assert_null(raw_str(s, cf, 0, "f000"), "written before its checkpoint");
  rs_offset_t *offs;
  size_t n;
  cr_assert_eq(rs_store_read_offsets(s, &offs, &n), 0);
  cr_assert_eq(n, 1);
  cr_assert_eq(offs[0].next_offset, 220);
  rs_store_offsets_free(offs, n);

  /* Unpinned: another flood evicts them, and every value is still there,
   * the ones spilled after T included. */
  for (int i = 0; i < 500; i++) {
    snprintf(key, sizeof key, "g%03d", i);
    cr_assert_eq(rs_cache_put(c, cf, 0, key, strlen(key), "g", 1), 0);
  }
  rs_cache_stats(c, &cs);
  cr_assert_leq(cs.total_bytes, cs.bound_bytes);
  for (int i = 0; i < 500; i++) {
    snprintf(key, sizeof key, "f%03d", i);
    snprintf(val, sizeof val, "f-value-%d", i);
    const char *got = get_str(c, cf, 0, key);
    cr_assert(got && !strcmp(got, val), "%s reads %s", key,
              got ? got : "(absent)");
  }
  cr_assert_str_eq(get_str(c, cf, 0, "p00"), "newer");
  cr_assert_str_eq(get_str(c, cf, 0, "p05"), "p-value-5");
  cr_assert_eq(rs_store_checkpoint(s, c, NULL, 0), 0);
  rs_cache_destroy(c);
  rs_store_destroy(s);
  s = open_store();
  cr_assert_str_eq(raw_str(s, cf, 0, "p00"), "newer");
  cr_assert_str_eq(raw_str(s, cf, 0, "f499"), "f-value-499");
  cr_assert_str_eq(raw_str(s, cf, 0, "f000"), "f-value-0");
  cr_assert_str_eq(raw_str(s, cf, 0, "s199"), "s-value-199");
  rs_store_destroy(s);
}

/* D1: with most of the cache pinned by a staged checkpoint, finding a
 * victim must not walk past the pinned entries (they are off the CLOCK
 * ring): counted in steps of the hand, not measured in time. */
Test(state, eviction_skips_pinned_entries_in_constant_steps) {
  rs_store_t *s = open_store();
  int cf = rs_store_cf(s, "counts");
  rs_cache_t *c;
  cr_assert_eq(rs_cache_create(s, 64 * 1024, &c), 0);
  char key[32], val[64];
  for (int i = 0; i < 2000; i++) { /* fills the cache with dirty entries */
    snprintf(key, sizeof key, "k%05d", i);
    snprintf(val, sizeof val, "value-%d", i);
    cr_assert_eq(rs_cache_put(c, cf, 0, key, strlen(key), val, strlen(val)), 0);
  }
  rs_cache_stats_t cs0, cs;
  rs_cache_stats(c, &cs0);
  cr_assert_gt(cs0.dirty_bytes, cs0.bound_bytes / 2);
  rs_offset_t off = {.topic = "in", .partition = 0, .next_offset = 2000};
  rs_store_staged_t *st;
  cr_assert_eq(rs_store_checkpoint_stage(s, c, &off, 1, &st), 0);
  size_t pinned = cs0.entries;
  cr_assert_gt(pinned, 300, "only %zu entries cached", pinned);
  for (int i = 0; i < 1000; i++) { /* new keys: each one evicts */
    snprintf(key, sizeof key, "n%05d", i);
    cr_assert_eq(rs_cache_put(c, cf, 0, key, strlen(key), "n", 1), 0);
  }
  rs_cache_stats(c, &cs);
  uint64_t ev = cs.evictions - cs0.evictions;
  uint64_t steps = cs.victim_steps - cs0.victim_steps;
  cr_assert_gt(ev, 900);
  cr_assert_leq(steps, 4 * ev + 64,
                "%" PRIu64 " steps of the hand for %" PRIu64
                " evictions with %zu entries pinned",
                steps, ev, pinned);
  /* Durable: the pinned entries are back on the ring and evictable. */
  cr_assert_eq(rs_store_staged_write(st, g_err, sizeof g_err), 0, "%s", g_err);
  rs_store_staged_done(s, c, st);
  rs_cache_stats(c, &cs);
  cr_assert_leq(cs.total_bytes, cs.bound_bytes);
  cr_assert_str_eq(get_str(c, cf, 0, "k01999"), "value-1999");
  cr_assert_str_eq(get_str(c, cf, 0, "n00999"), "n");
  rs_cache_destroy(c);
  rs_store_destroy(s);
}

/* The writer builds the staged batch from the pinned entries in place, on
 * its own thread, while the owner goes on changing them: each change must
 * leave the block the writer reads alone (copy on write), so what is
 * written is the state of T and the cache reads the new one. Half the
 * changes come before the write starts (fails deterministically when a
 * change writes in place), half while it runs (for -fsanitize=thread). */
typedef struct {
  rs_store_staged_t *st;
  int rc;
  char err[256];
} writer_t;

static void *write_thread(void *arg) {
  writer_t *w = arg;
  w->rc = rs_store_staged_write(w->st, w->err, sizeof w->err);
  return NULL;
}

static void change_after_t(rs_cache_t *c, int cf, int i) {
  char key[32], val[256];
  snprintf(key, sizeof key, "k%04d", i);
  switch (i % 4) {
  case 0: /* same size: would fit in place */
    snprintf(val, sizeof val, "w%04d-after-T", i);
    put_str(c, cf, 0, key, val);
    break;
  case 1: /* outgrows its block */
    snprintf(val, sizeof val, "w%04d-after-T-%0200d", i, i);
    put_str(c, cf, 0, key, val);
    break;
  case 2:
    cr_assert_eq(rs_cache_delete(c, cf, 0, key, strlen(key)), 0);
    break;
  default: /* read only */
    cr_assert_not_null(get_str(c, cf, 0, key));
  }
  snprintf(key, sizeof key, "t%04d", i); /* a staged tombstone comes back */
  if (i % 2 == 0)
    put_str(c, cf, 0, key, "back");
}

static void expect_t(rs_store_t *s, int cf, int i) {
  char key[32], val[64];
  snprintf(key, sizeof key, "k%04d", i);
  snprintf(val, sizeof val, "v%04d-at-T", i);
  const char *got = raw_str(s, cf, 0, key);
  cr_assert(got && !strcmp(got, val), "stored %s is %s, not %s", key,
            got ? got : "(absent)", val);
  snprintf(key, sizeof key, "t%04d", i);
  cr_assert_null(raw_str(s, cf, 0, key), "staged tombstone %s not written",
                 key);
}

Test(state, staged_entries_changed_while_the_writer_reads_them) {
  rs_store_t *s = open_store();
  int cf = rs_store_cf(s, "counts");
  rs_cache_t *c;
  cr_assert_eq(rs_cache_create(s, 4 << 20, &c), 0);
  char key[32], val[64];
  enum { N = 4000 };
  for (int i = 0; i < N; i++) {
    snprintf(key, sizeof key, "t%04d", i);
    put_str(c, cf, 0, key, "before");
  }
  cr_assert_eq(rs_store_checkpoint(s, c, NULL, 0), 0);
  for (int i = 0; i < N; i++) { /* T: N values, N tombstones */
    snprintf(key, sizeof key, "k%04d", i);
    snprintf(val, sizeof val, "v%04d-at-T", i);
    put_str(c, cf, 0, key, val);
    snprintf(key, sizeof key, "t%04d", i);
    cr_assert_eq(rs_cache_delete(c, cf, 0, key, strlen(key)), 0);
  }
  rs_offset_t off = {.topic = "in", .partition = 0, .next_offset = N};
  writer_t w = {0};
  cr_assert_eq(rs_store_checkpoint_stage(s, c, &off, 1, &w.st), 0);
  for (int i = 0; i < N / 2; i++)
    change_after_t(c, cf, i);
  rs_cache_stats_t cs;
  rs_cache_stats(c, &cs);
  cr_assert_gt(cs.retired_bytes, 0, "no staged block was kept for the writer");
  cr_assert_leq(cs.total_bytes, cs.bound_bytes);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, write_thread, &w), 0);
  for (int i = N / 2; i < N; i++)
    change_after_t(c, cf, i);
  cr_assert_eq(pthread_join(th, NULL), 0);
  cr_assert_eq(w.rc, 0, "%s", w.err);
  rs_store_staged_done(s, c, w.st);
  rs_cache_stats(c, &cs);
  cr_assert_eq(cs.retired_bytes, 0, "retired blocks not freed when durable");
  for (int i = 0; i < N; i++)
    expect_t(s, cf, i);
  for (int i = 0; i < N; i += 37) { /* the cache has the changes */
    snprintf(key, sizeof key, "k%04d", i);
    const char *got = get_str(c, cf, 0, key);
    if (i % 4 == 2)
      cr_assert_null(got, "%s deleted after T reads %s", key, got);
    else
      cr_assert(got && got[0] == (i % 4 == 3 ? 'v' : 'w'), "%s reads %s", key,
                got ? got : "(absent)");
  }
  cr_assert_eq(rs_store_checkpoint(s, c, NULL, 0), 0);
  cr_assert_str_eq(raw_str(s, cf, 0, "t0000"), "back");
  cr_assert_null(raw_str(s, cf, 0, "t0001"));
  cr_assert_null(raw_str(s, cf, 0, "k0002"));
  cr_assert_str_eq(raw_str(s, cf, 0, "k0000"), "w0000-after-T");
  cr_assert_str_eq(raw_str(s, cf, 0, "k0003"), "v0003-at-T");
  rs_cache_destroy(c);
  rs_store_destroy(s);
}

/* A put whose value outgrows the entry's block and finds no memory for a
 * new one fails and leaves the value as it was: the cached value before
 * the put stays readable, and the next checkpoint writes it. (The old
 * block used to be freed before the new one was allocated: the key then
 * read the database's older value, here none.) */
Test(state, outgrowing_put_without_memory_keeps_the_value) {
  rs_store_t *s = open_store();
  int cf = rs_store_cf(s, "counts");
  rs_cache_t *c;
  cr_assert_eq(rs_cache_create(s, 1 << 20, &c), 0);
  put_str(c, cf, 0, "a", "small");
  static char big[4000];
  memset(big, 'x', sizeof big);
  fail_allocations(1); /* every allocation fails */
  int rc = rs_cache_put(c, cf, 0, "a", 1, big, sizeof big);
  rs_set_allocator(NULL);
  cr_assert_eq(rc, RS_ENOMEM);
  cr_assert_str_eq(get_str(c, cf, 0, "a"), "small");
  rs_cache_stats_t cs;
  rs_cache_stats(c, &cs);
  cr_assert_eq(cs.entries, 1);
  cr_assert_gt(cs.dirty_bytes, 0, "still dirty: the database lacks it");
  cr_assert_eq(rs_store_checkpoint(s, c, NULL, 0), 0);
  cr_assert_str_eq(raw_str(s, cf, 0, "a"), "small");
  /* With memory the same put works and replaces it. */
  cr_assert_eq(rs_cache_put(c, cf, 0, "a", 1, big, sizeof big), 0);
  cr_assert_eq(rs_store_checkpoint(s, c, NULL, 0), 0);
  const void *v;
  size_t n;
  cr_assert_eq(rs_cache_get(c, cf, 0, "a", 1, &v, &n), 0);
  cr_assert_eq(n, sizeof big);
  rs_cache_destroy(c);
  rs_store_destroy(s);
}

/* A change to a staged entry that cannot be cached for want of memory
 * fails, and the key keeps reading its value of T (the old block is put
 * back, not left retired: the database does not have it yet). */
Test(state, staged_entry_change_without_memory_keeps_the_value_of_t) {
  rs_store_t *s = open_store();
  int cf = rs_store_cf(s, "counts");
  rs_cache_t *c;
  cr_assert_eq(rs_cache_create(s, 1 << 20, &c), 0);
  put_str(c, cf, 0, "a", "at-T");
  put_str(c, cf, 0, "b", "at-T");
  rs_store_staged_t *st;
  cr_assert_eq(rs_store_checkpoint_stage(s, c, NULL, 0, &st), 0);
  fail_allocations(1); /* every allocation fails */
  int rput = rs_cache_put(c, cf, 0, "a", 1, "later", 5);
  int rdel = rs_cache_delete(c, cf, 0, "b", 1);
  rs_set_allocator(NULL);
  cr_assert_eq(rput, RS_ENOMEM);
  cr_assert_eq(rdel, RS_ENOMEM);
  rs_cache_stats_t cs;
  rs_cache_stats(c, &cs);
  cr_assert_eq(cs.retired_bytes, 0);
  cr_assert_eq(cs.entries, 2);
  cr_assert_str_eq(get_str(c, cf, 0, "a"), "at-T");
  cr_assert_str_eq(get_str(c, cf, 0, "b"), "at-T");
  /* ...and stays pinned: a change with memory works, after T. */
  put_str(c, cf, 0, "a", "later");
  cr_assert_eq(rs_store_staged_write(st, g_err, sizeof g_err), 0, "%s", g_err);
  rs_store_staged_done(s, c, st);
  cr_assert_str_eq(raw_str(s, cf, 0, "a"), "at-T");
  cr_assert_str_eq(raw_str(s, cf, 0, "b"), "at-T");
  cr_assert_str_eq(get_str(c, cf, 0, "a"), "later");
  cr_assert_eq(rs_store_checkpoint(s, c, NULL, 0), 0);
  cr_assert_str_eq(raw_str(s, cf, 0, "a"), "later");
  rs_cache_destroy(c);
  rs_store_destroy(s);
}
