/* Benchmark of the state store (state/), not part of the test suite:
 *
 *   cmake --build build --target bench_state && build/bench/bench_state \
 *       [--keys 1000000] [--ops 5000000] [--raw-ops 500000] \
 *       [--cache 256MiB] [--dir /tmp]
 *
 * In one run (about 30 s and 600 MiB of RSS with the defaults):
 *  1. loads a hot set of --keys keys with 256-byte values into RocksDB;
 *  2. read-modify-write (get, change 8 bytes, put) with Zipf(1.0) key
 *     choice, single thread: raw RocksDB point get+put (rs_store_*) vs the
 *     write-back cache (rs_cache_*) with a checkpoint every second or when
 *     the cache asks for one, as the engine would, timing the checkpoints
 *     too; the cached sequence runs twice, from an empty cache (cold) and
 *     again (warm, the steady state). Prints the rates and ratios (target:
 *     warm cached >= 10x raw);
 *  3. checkpoint latency (synced WAL) for 10k and 100k dirty keys;
 *  4. reopen/restore time: open the directory and read the offsets.
 * Absolute numbers on a shared machine are noise; the ratio is the figure
 * of merit.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "state/cache.h"
#include "state/store.h"
#include "util.h"

#define VAL_LEN 256

_Noreturn static void die(const char *what, const char *err) {
  fprintf(stderr, "bench_state: %s: %s\n", what, err);
  exit(1);
}

static void check(int rc, rs_store_t *s, const char *what) {
  if (rc)
    die(what, s ? rs_store_errmsg(s) : rs_strerror(rc));
}

static double secs(uint64_t t0) {
  return (double)(rs_now_ns() - t0) / 1e9;
}

static void make_key(unsigned char k[8], uint64_t i) {
  for (int b = 0; b < 8; b++)
    k[b] = (unsigned char)(i >> (56 - 8 * b));
}

/* Zipf(1.0) over [0, n): inverse CDF by binary search, precomputed so the
 * timed loops pay only an array read. Ranks are scattered over the key
 * space so hot keys are not neighbours in RocksDB. */
static uint32_t *zipf_sequence(size_t n, size_t count, uint64_t seed) {
  double *cdf = malloc(n * sizeof *cdf);
  uint32_t *seq = malloc(count * sizeof *seq);
  if (!cdf || !seq)
    die("zipf", "out of memory");
  double sum = 0;
  for (size_t i = 0; i < n; i++)
    cdf[i] = (sum += 1.0 / (double)(i + 1));
  uint64_t x = seed;
  for (size_t j = 0; j < count; j++) {
    x = rs_mix64(x + 0x9e3779b97f4a7c15ull);
    double u = (double)(x >> 11) / 9007199254740992.0 * sum;
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (cdf[mid] < u)
        lo = mid + 1;
      else
        hi = mid;
    }
    seq[j] = (uint32_t)(rs_mix64(lo) % n);
  }
  free(cdf);
  return seq;
}

/* Read-modify-write of ops keys from seq through the cache, with a
 * checkpoint every second or when the cache asks for one. Returns seconds. */
static double run_cached(rs_store_t *s, rs_cache_t *c, int cf,
                         const uint32_t *seq, size_t ops, size_t *checkpoints,
                         double *ckpt_s) {
  unsigned char key[8], val[VAL_LEN];
  uint64_t t0 = rs_now_ns(), last = t0;
  for (size_t j = 0; j < ops; j++) {
    uint32_t i = seq[j];
    make_key(key, i);
    const void *v;
    size_t n;
    check(rs_cache_get(c, cf, (int32_t)(i % 8), key, 8, &v, &n), s,
          "cache get");
    memcpy(val, v, n);
    uint64_t cnt;
    memcpy(&cnt, val + 8, 8);
    cnt++;
    memcpy(val + 8, &cnt, 8);
    check(rs_cache_put(c, cf, (int32_t)(i % 8), key, 8, val, n), s,
          "cache put");
    if ((j & 1023) == 0) {
      uint64_t now = rs_now_ns();
      if (now - last >= 1000000000ull || rs_cache_needs_checkpoint(c)) {
        rs_offset_t off = {.topic = "in", .next_offset = (int64_t)j};
        check(rs_store_checkpoint(s, c, &off, 1), s, "checkpoint");
        ++*checkpoints;
        last = rs_now_ns();
        *ckpt_s += (double)(last - now) / 1e9;
      }
    }
  }
  return secs(t0);
}

static int rm_rf(const char *dir) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd);
}

int main(int argc, char **argv) {
  size_t keys = 1000000, ops = 5000000, raw_ops = 500000;
  int64_t cache_bytes = 256 << 20;
  const char *base = "/tmp";
  for (int i = 1; i + 1 < argc; i += 2) {
    int64_t v = 0;
    if (!strcmp(argv[i], "--dir")) {
      base = argv[i + 1];
      continue;
    }
    if (rs_parse_size(argv[i + 1], &v) || v <= 0)
      die(argv[i], "expects a positive number");
    if (!strcmp(argv[i], "--keys"))
      keys = (size_t)v;
    else if (!strcmp(argv[i], "--ops"))
      ops = (size_t)v;
    else if (!strcmp(argv[i], "--raw-ops"))
      raw_ops = (size_t)v;
    else if (!strcmp(argv[i], "--cache"))
      cache_bytes = v;
    else
      die(argv[i], "unknown option");
  }
  char dir[512];
  snprintf(dir, sizeof dir, "%s/rs_bench_state_XXXXXX", base);
  if (!mkdtemp(dir))
    die("mkdtemp", dir);

  char err[1024];
  rs_store_t *s;
  const char *cfs[] = {"bench"};
  rs_store_opts_t opts;
  rs_store_opts_init(&opts);
  if (rs_store_open(dir, cfs, 1, &opts, &s, err, sizeof err))
    die("open", err);
  int cf = rs_store_cf(s, "bench");

  /* 1. load */
  unsigned char key[8], val[VAL_LEN];
  memset(val, 'v', sizeof val);
  uint64_t t0 = rs_now_ns();
  for (size_t i = 0; i < keys; i++) {
    make_key(key, i);
    memcpy(val, &i, sizeof i);
    check(rs_store_put(s, cf, (int32_t)(i % 8), key, 8, val, VAL_LEN), s,
          "load");
  }
  printf("load: %zu keys x %d B in %.2f s\n", keys, VAL_LEN, secs(t0));

  size_t nseq = RS_MAX(ops, raw_ops);
  uint32_t *seq = zipf_sequence(keys, nseq, 42);

  /* 2a. raw RocksDB read-modify-write */
  t0 = rs_now_ns();
  for (size_t j = 0; j < raw_ops; j++) {
    uint32_t i = seq[j];
    make_key(key, i);
    const void *v;
    size_t n;
    check(rs_store_get(s, cf, (int32_t)(i % 8), key, 8, &v, &n), s, "raw get");
    memcpy(val, v, n);
    uint64_t cnt;
    memcpy(&cnt, val + 8, 8);
    cnt++;
    memcpy(val + 8, &cnt, 8);
    check(rs_store_put(s, cf, (int32_t)(i % 8), key, 8, val, n), s, "raw put");
  }
  double raw_s = secs(t0);
  double raw_rate = (double)raw_ops / raw_s;
  printf("raw RocksDB get+put: %zu ops in %.2f s = %.0f ops/s (%.2f us/op)\n",
         raw_ops, raw_s, raw_rate, 1e6 * raw_s / (double)raw_ops);

  /* 2b. through the cache, checkpointing as the engine would: a cold pass
   * (empty cache, every first touch a miss) then the same sequence warm. */
  rs_cache_t *c;
  check(rs_cache_create(s, (size_t)cache_bytes, &c), NULL, "cache");
  double cached_rate = 0;
  for (int pass = 0; pass < 2; pass++) {
    rs_cache_stats_t st0, st;
    rs_cache_stats(c, &st0);
    size_t checkpoints = 0;
    double ckpt_s = 0;
    t0 = rs_now_ns();
    double cached_s = run_cached(s, c, cf, seq, ops, &checkpoints, &ckpt_s);
    cached_rate = (double)ops / cached_s;
    rs_cache_stats(c, &st);
    uint64_t hits = st.hits - st0.hits, misses = st.misses - st0.misses;
    printf("cached get+put (%s): %zu ops in %.2f s = %.0f ops/s (%.3f us/op)"
           "; %zu checkpoints took %.2f s; hit rate %.4f, %llu evictions, "
           "%.0f MiB cached\n",
           pass ? "warm" : "cold", ops, cached_s, cached_rate,
           1e6 * cached_s / (double)ops, checkpoints, ckpt_s,
           (double)hits / (double)(hits + misses ? hits + misses : 1),
           (unsigned long long)(st.evictions - st0.evictions),
           (double)st.total_bytes / 1048576.0);
    printf("RATIO cached (%s)/raw read-modify-write: %.1fx%s\n",
           pass ? "warm" : "cold", cached_rate / raw_rate,
           pass ? " (target >= 10x)" : "");
  }
  check(rs_store_checkpoint(s, c, NULL, 0), s, "checkpoint");
  rs_cache_destroy(c);

  /* 3. checkpoint latency for N dirty keys (fresh keys, synced WAL), three
   * runs each since background flushes make single runs noisy */
  size_t sizes[] = {10000, 100000};
  for (size_t k = 0; k < 2; k++) {
    double ms[3];
    for (int rep = 0; rep < 3; rep++) {
      check(rs_cache_create(s, (size_t)1 << 30, &c), NULL, "cache");
      for (size_t i = 0; i < sizes[k]; i++) {
        uint64_t id = keys + (k * 3 + (size_t)rep) * 1000000 + i;
        make_key(key, id);
        check(rs_cache_put(c, cf, (int32_t)(id % 8), key, 8, val, VAL_LEN), s,
              "put");
      }
      rs_offset_t off = {.topic = "in", .next_offset = 1};
      t0 = rs_now_ns();
      check(rs_store_checkpoint(s, c, &off, 1), s, "checkpoint");
      ms[rep] = secs(t0) * 1e3;
      rs_cache_destroy(c);
    }
    double lo = ms[0], hi = ms[0];
    for (int rep = 1; rep < 3; rep++) {
      lo = ms[rep] < lo ? ms[rep] : lo;
      hi = ms[rep] > hi ? ms[rep] : hi;
    }
    printf("checkpoint of %zu dirty keys (%d B values, WAL fsync): median "
           "%.1f ms (min %.1f, max %.1f)\n",
           sizes[k], VAL_LEN, ms[0] + ms[1] + ms[2] - lo - hi, lo, hi);
  }

  /* 4. reopen and restore offsets, after a clean close (which flushes) */
  t0 = rs_now_ns();
  rs_store_destroy(s);
  double close_s = secs(t0);
  t0 = rs_now_ns();
  if (rs_store_open(dir, cfs, 1, &opts, &s, err, sizeof err))
    die("reopen", err);
  rs_offset_t *offs;
  size_t noffs;
  check(rs_store_read_offsets(s, &offs, &noffs), s, "read offsets");
  double reopen_s = secs(t0);
  rs_store_offsets_free(offs, noffs);
  /* First reads after restart go to disk: time a cold pass. */
  check(rs_cache_create(s, (size_t)cache_bytes, &c), NULL, "cache");
  size_t warm = RS_MIN((size_t)100000, nseq);
  t0 = rs_now_ns();
  for (size_t j = 0; j < warm; j++) {
    make_key(key, seq[j]);
    const void *v;
    size_t n;
    check(rs_cache_get(c, cf, (int32_t)(seq[j] % 8), key, 8, &v, &n), s, "get");
  }
  double warm_s = secs(t0);
  printf("close (flushes memtables): %.1f ms; reopen + read offsets: %.1f "
         "ms; first %zu Zipf reads after restart: %.2f s\n",
         close_s * 1e3, reopen_s * 1e3, warm, warm_s);
  rs_cache_destroy(c);
  rs_store_destroy(s);
  free(seq);

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("peak RSS: %.0f MiB\n", (double)ru.ru_maxrss / 1024.0);
  return rm_rf(dir) ? 1 : 0;
}
