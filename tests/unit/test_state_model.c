/* Randomised model test of the state cache and checkpoints: thousands of
 * random puts, deletes, counter adds, reads, scans, partition drops,
 * checkpoints and simulated crashes (cache dropped without a checkpoint,
 * store reopened) against a plain in-memory model, with a cache small
 * enough that entries are constantly evicted, spilled, resized and read
 * back. After a crash the database must equal the model as of the last
 * checkpoint, offsets included.
 */
#define _XOPEN_SOURCE 700
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/cache.h"
#include "state/store.h"

#define N_CF 2
#define N_PART 3
#define N_KEY 60
#define MAX_VAL 700

typedef struct slot {
  int present;
  size_t len;
  unsigned char v[MAX_VAL];
} slot_t;

typedef struct model {
  slot_t s[N_CF][N_PART][N_KEY];
  int64_t offset;
} model_t;

static char g_dir[64];

static int rm_one(const char *p, const struct stat *st, int flag,
                  struct FTW *f) {
  (void)st;
  (void)flag;
  (void)f;
  return remove(p);
}

static void mkdir_tmp(void) {
  strcpy(g_dir, "/tmp/rs_state_model_XXXXXX");
  cr_assert_not_null(mkdtemp(g_dir));
}

static void rm_tmp(void) {
  nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(state_model, .init = mkdir_tmp, .fini = rm_tmp);

static uint64_t g_rng = 12345;
static uint32_t rnd(uint32_t n) {
  g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(g_rng >> 33) % n;
}

static void key_of(int k, char *buf, size_t *len) {
  /* Keys of different lengths that share prefixes, so scans by prefix and
   * key ordering are exercised. */
  *len = (size_t)snprintf(buf, 16, "%c%d", 'a' + k % 3, k);
}

static const char *const k_cfs[N_CF] = {"m0", "m1"};

static rs_store_t *open_store(int cfids[N_CF]) {
  rs_store_t *s;
  char err[512];
  cr_assert_eq(rs_store_open(g_dir, k_cfs, N_CF, NULL, &s, err, sizeof err), 0,
               "%s", err);
  for (int i = 0; i < N_CF; i++)
    cfids[i] = rs_store_cf(s, k_cfs[i]);
  return s;
}

typedef struct scan_check {
  const model_t *m;
  int cf, part;
  const char *prefix;
  int seen[N_KEY];
  int count;
  char last[16];
  size_t last_len;
} scan_check_t;

static int key_index(const void *key, size_t len) {
  char buf[16];
  cr_assert_lt(len, sizeof buf);
  memcpy(buf, key, len);
  buf[len] = '\0';
  return atoi(buf + 1);
}

static int check_cb(void *opaque, const void *key, size_t key_len,
                    const void *value, size_t value_len) {
  scan_check_t *sc = opaque;
  int k = key_index(key, key_len);
  cr_assert(k >= 0 && k < N_KEY);
  const slot_t *sl = &sc->m->s[sc->cf][sc->part][k];
  cr_assert(sl->present, "scan returned deleted key %.*s", (int)key_len,
            (const char *)key);
  cr_assert_eq(value_len, sl->len);
  cr_assert_eq(memcmp(value, sl->v, value_len), 0);
  cr_assert(!sc->seen[k], "key twice in scan");
  sc->seen[k] = 1;
  /* ascending order */
  size_t m = key_len < sc->last_len ? key_len : sc->last_len;
  int c = memcmp(sc->last, key, m);
  cr_assert(sc->count == 0 || c < 0 || (c == 0 && sc->last_len < key_len));
  memcpy(sc->last, key, key_len);
  sc->last_len = key_len;
  sc->count++;
  return 0;
}

static void check_scan(const model_t *m, rs_store_t *s, rs_cache_t *c,
                       const int cfids[N_CF], int cf, int part,
                       const char *prefix) {
  scan_check_t sc = {.m = m, .cf = cf, .part = part, .prefix = prefix};
  size_t pl = strlen(prefix);
  int rc = c ? rs_cache_scan(c, cfids[cf], part, prefix, pl, check_cb, &sc)
             : rs_store_scan(s, cfids[cf], part, prefix, pl, check_cb, &sc);
  cr_assert_eq(rc, 0);
  for (int k = 0; k < N_KEY; k++) {
    char kb[16];
    size_t kl;
    key_of(k, kb, &kl);
    int match = kl >= pl && memcmp(kb, prefix, pl) == 0;
    if (match && m->s[cf][part][k].present)
      cr_assert(sc.seen[k], "scan missed key %s", kb);
  }
}

static void check_all_raw(const model_t *m, rs_store_t *s,
                          const int cfids[N_CF]) {
  for (int cf = 0; cf < N_CF; cf++)
    for (int p = 0; p < N_PART; p++) {
      for (int k = 0; k < N_KEY; k++) {
        char kb[16];
        size_t kl;
        key_of(k, kb, &kl);
        const void *v;
        size_t n;
        int rc = rs_store_get(s, cfids[cf], p, kb, kl, &v, &n);
        const slot_t *sl = &m->s[cf][p][k];
        if (!sl->present) {
          cr_assert_eq(rc, RS_ENOENT, "cf %d p %d %s should be absent", cf, p,
                       kb);
          continue;
        }
        cr_assert_eq(rc, 0, "cf %d p %d %s missing", cf, p, kb);
        cr_assert_eq(n, sl->len);
        cr_assert_eq(memcmp(v, sl->v, n), 0);
      }
      check_scan(m, s, NULL, cfids, cf, p, "");
    }
  rs_offset_t *o;
  size_t n;
  cr_assert_eq(rs_store_read_offsets(s, &o, &n), 0);
  if (m->offset < 0) {
    cr_assert_eq(n, 0);
  } else {
    cr_assert_eq(n, 1);
    cr_assert_eq(o[0].next_offset, m->offset);
  }
  rs_store_offsets_free(o, n);
}

static void run_model(size_t bound, int steps, uint64_t seed) {
  static model_t cur, committed;
  memset(&cur, 0, sizeof cur);
  cur.offset = -1;
  committed = cur;
  g_rng = seed;
  int cfids[N_CF];
  rs_store_t *s = open_store(cfids);
  rs_cache_t *c;
  cr_assert_eq(rs_cache_create(s, bound, &c), 0);
  int crashes = 0, checkpoints = 0;
  uint64_t ev = 0, wb = 0, hits = 0, misses = 0;
  for (int step = 0; step < steps; step++) {
    int cf = (int)rnd(N_CF), p = (int)rnd(N_PART), k = (int)rnd(N_KEY);
    char kb[16];
    size_t kl;
    key_of(k, kb, &kl);
    slot_t *sl = &cur.s[cf][p][k];
    uint32_t op = rnd(1000);
    if (op < 350) { /* put, sizes spanning several size classes */
      size_t len = rnd(10) == 0 ? rnd(MAX_VAL) : rnd(40);
      for (size_t i = 0; i < len; i++)
        sl->v[i] = (unsigned char)rnd(256);
      sl->len = len;
      sl->present = 1;
      cr_assert_eq(rs_cache_put(c, cfids[cf], p, kb, kl, sl->v, len), 0);
    } else if (op < 450) {
      sl->present = 0;
      cr_assert_eq(rs_cache_delete(c, cfids[cf], p, kb, kl), 0);
    } else if (op < 550) { /* counter; RS_ERANGE on a non-counter value */
      int64_t r;
      int rc = rs_cache_counter_add(c, cfids[cf], p, kb, kl, 3, &r);
      if (sl->present && sl->len != 8) {
        cr_assert_eq(rc, RS_ERANGE);
      } else {
        cr_assert_eq(rc, 0);
        int64_t before = 0;
        if (sl->present)
          before = rs__state_i64_decode(sl->v);
        cr_assert_eq(r, before + 3);
        rs__state_i64_encode(sl->v, r);
        sl->len = 8;
        sl->present = 1;
      }
    } else if (op < 900) {
      const void *v;
      size_t n;
      int rc = rs_cache_get(c, cfids[cf], p, kb, kl, &v, &n);
      if (!sl->present) {
        cr_assert_eq(rc, RS_ENOENT, "step %d: %s should be absent", step, kb);
      } else {
        cr_assert_eq(rc, 0, "step %d: %s missing", step, kb);
        cr_assert_eq(n, sl->len, "step %d: %s length", step, kb);
        cr_assert_eq(memcmp(v, sl->v, n), 0);
      }
    } else if (op < 960) {
      const char *prefixes[] = {"", "a", "b1", "c5"};
      check_scan(&cur, s, c, cfids, cf, p, prefixes[rnd(4)]);
    } else if (op < 965) {
      cr_assert_eq(rs_cache_drop_partition(c, cfids[cf], p), 0);
      for (int i = 0; i < N_KEY; i++)
        cur.s[cf][p][i].present = 0;
    } else if (op < 975) {
      cur.offset = step;
      rs_offset_t off = {.topic = "in", .partition = 0, .next_offset = step};
      cr_assert_eq(rs_store_checkpoint(s, c, &off, 1), 0);
      committed = cur;
      checkpoints++;
    } else if (op < 978) { /* crash: the cache is lost, the database must be as
                of the last checkpoint */
      rs_cache_stats_t cs;
      rs_cache_stats(c, &cs);
      ev += cs.evictions;
      wb += cs.writebacks;
      hits += cs.hits;
      misses += cs.misses;
      rs_cache_destroy(c);
      rs_store_destroy(s);
      s = open_store(cfids);
      cur = committed;
      check_all_raw(&cur, s, cfids);
      cr_assert_eq(rs_cache_create(s, bound, &c), 0);
      crashes++;
    }
    rs_cache_stats_t st;
    rs_cache_stats(c, &st);
    cr_assert_leq(st.total_bytes, st.bound_bytes);
  }
  rs_cache_stats_t st;
  rs_cache_stats(c, &st);
  cr_log_info("bound %zu: %d crashes, %d checkpoints, %llu evictions, %llu "
              "writebacks, %llu hits, %llu misses",
              bound, crashes, checkpoints,
              (unsigned long long)(ev + st.evictions),
              (unsigned long long)(wb + st.writebacks),
              (unsigned long long)(hits + st.hits),
              (unsigned long long)(misses + st.misses));
  cr_assert_gt(crashes, 3);
  rs_offset_t off = {.topic = "in", .partition = 0, .next_offset = steps};
  cr_assert_eq(rs_store_checkpoint(s, c, &off, 1), 0);
  cur.offset = steps;
  rs_cache_destroy(c);
  rs_store_destroy(s);
  s = open_store(cfids);
  check_all_raw(&cur, s, cfids);
  rs_store_destroy(s);
}

Test(state_model, tiny_cache_constant_eviction) {
  run_model(6 * 1024, 20000, 1);
}

Test(state_model, medium_cache) {
  run_model(40 * 1024, 20000, 2);
}

Test(state_model, everything_fits) {
  run_model(8 << 20, 20000, 3);
}
