/* Benchmark: what a topn_emit emission costs as the catalogue grows.
 *
 *   build/bench/bench_topn [--sizes 10000,100000,1000000] [--seconds S]
 *                          [--k K]
 *
 * For each catalogue size I, in-process (engine/local_host.c, the
 * engine's state store and write-back cache, no Kafka): an mf_update
 * instance (isgd, k = 32, every user warm) learns one event per item so
 * the model holds I items, then a topn_emit instance reading that model
 * through the minor-2 peer calls receives mf_update's records for a
 * skewed stream (item rank ~ I * u^3, 10,000 users): a warm-up of 20,000
 * untimed events (co-visitation lists and the popular list fill), then
 * events one at a time for S seconds (default 2; at least 20 events),
 * each timed around topn_emit's process() only. Three configurations:
 *   candidates: exact_scan_below 0, so every emission scores only its
 *               candidates (popular 50 + recent_items 5 x neighbours 20);
 *   default:    exact_scan_below 20000: catalogues below it are scanned
 *               whole (exact top-N), larger ones use the candidates;
 *   exact:      exact_scan_below 1e9: every emission scans the whole
 *               catalogue (mf_update's item matrix), for comparison.
 * Printed per size and configuration: emissions/s, p50 and p99 per
 * emission, items scored per emission, and the cost (mean and median)
 * relative to the smallest catalogue of the same configuration in this run
 * (the figure of merit: with candidates it must stay far below the size
 * ratio; the exact scan shows what it is compared with). Peak RSS.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "local_host.h"
#include "operators/mf_update/mf_update.h"
#include "util.h"

extern const rs_operator_def_t rs_op_topn_emit;

#define USERS 10000
#define WARM 20000
#define MAX_SIZES 8

static double seconds = 2.0;
static int k_factors = 32;

/* mf_update's records, handed on to topn_emit one push at a time. */
typedef struct relay {
  rs_local_t *tn;
  int timed;
  uint64_t ns;
} relay_t;

static int on_mf_emit(void *opaque, uint32_t port, const rs_record_t *rec) {
  relay_t *r = opaque;
  (void)port;
  if (!r->tn)
    return 0;
  uint64_t t0 = rs_now_ns();
  int rc = rs_local_push(r->tn, 0, rec, 1);
  r->ns = rs_now_ns() - t0;
  return rc;
}

static uint64_t xs(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void push_event(rs_local_t *mf, long user, long item, int64_t off) {
  char u[24], it[24];
  int ul = snprintf(u, sizeof u, "u%ld", user);
  int il = snprintf(it, sizeof it, "i%ld", item);
  rs_interaction_t ia = {.user = u,
                         .user_len = (uint32_t)ul,
                         .item = it,
                         .item_len = (uint32_t)il,
                         .event_type = RS_EVENT_CLICK,
                         .timestamp_ms = 1767225600000LL + off};
  rs_record_t rec = {.kind = RS_KIND_INTERACTION,
                     .key = u,
                     .key_len = (size_t)ul,
                     .payload = &ia,
                     .timestamp_ms = ia.timestamp_ms,
                     .src_offset = off};
  if (rs_local_push(mf, 0, &rec, 1))
    bench_die("mf_update", "process failed");
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

typedef struct result {
  double rate, p50_us, p99_us, scored;
} result_t;

static const char *const mode_names[] = {"candidates", "default", "exact"};
static const long mode_below[] = {0, 20000, 1000000000L};

static result_t measure(long items, int mode, double *rss) {
  char yaml[1024], err[1024];
  snprintf(yaml, sizeof yaml,
           "app: b\nsources: [{name: in, topic: in}]\n"
           "operators:\n"
           " - {name: mf, type: mf_update, input: in, objective: isgd, k: %d,"
           " min_user_events: 1, max_items: %ld}\n"
           " - {name: topn, type: topn_emit, input: mf, model: mf,"
           " exact_scan_below: %ld}\n"
           "sinks: [{name: out, input: topn, topic: out}]\n",
           k_factors, items + 1, mode_below[mode]);
  rs_config_t *cfg;
  if (rs_config_load_string("bench", yaml, strlen(yaml), NULL, 0, &cfg, err,
                            sizeof err))
    bench_die("config", err);
  bench_reset_peak_rss();
  relay_t relay = {0};
  rs_local_opts_t mo = {.on_emit = on_mf_emit, .opaque = &relay};
  rs_local_t *mf, *tn;
  if (rs_local_new(&rs_op_mf_update, "mf", cfg, cfg->operators[0].node, &mo,
                   &mf, err, sizeof err))
    bench_die("mf_update", err);
  /* The catalogue: one event per item, topn_emit not yet attached. */
  int64_t off = 0;
  for (long i = 0; i < items; i++, off++)
    push_event(mf, i % USERS, i, off);
  rs_local_opts_t to = {.peer_name = "mf", .peer = mf};
  if (rs_local_new(&rs_op_topn_emit, "topn", cfg, cfg->operators[1].node, &to,
                   &tn, err, sizeof err))
    bench_die("topn_emit", err);
  /* The warm-up fills co-visitation and the popular list; the exact scan
   * uses neither, and 20,000 whole scans of 1M items would take minutes:
   * its warm-up only trains the model. */
  relay.tn = mode == 2 ? NULL : tn;
  uint64_t seed = 0x9e3779b97f4a7c15ULL;
  for (long i = 0; i < WARM; i++, off++) {
    double u = (double)(xs(&seed) >> 11) / 9007199254740992.0;
    push_event(mf, (long)(xs(&seed) % USERS), (long)(u * u * u * items), off);
  }
  relay.tn = tn;
  int64_t sc0 = rs_local_counter(tn, "candidates") +
                rs_local_counter(tn, "exact_scanned");
  size_t cap = 1 << 16, n = 0;
  uint64_t *lat = malloc(cap * sizeof(uint64_t));
  uint64_t total = 0, t_end = rs_now_ns() + (uint64_t)(seconds * 1e9);
  while (rs_now_ns() < t_end || n < 20) {
    double u = (double)(xs(&seed) >> 11) / 9007199254740992.0;
    push_event(mf, (long)(xs(&seed) % USERS), (long)(u * u * u * items), off++);
    if (n == cap)
      lat = realloc(lat, (cap *= 2) * sizeof(uint64_t));
    lat[n++] = relay.ns;
    total += relay.ns;
  }
  int64_t sc1 = rs_local_counter(tn, "candidates") +
                rs_local_counter(tn, "exact_scanned");
  qsort(lat, n, sizeof(uint64_t), cmp_u64);
  result_t r = {.rate = (double)n / ((double)total / 1e9),
                .p50_us = (double)lat[n / 2] / 1e3,
                .p99_us = (double)lat[(n * 99) / 100] / 1e3,
                .scored = (double)(sc1 - sc0) / (double)n};
  *rss = bench_peak_rss_mib();
  free(lat);
  rs_local_destroy(tn);
  rs_local_destroy(mf);
  rs_config_destroy(cfg);
  return r;
}

int main(int argc, char **argv) {
  bench_init("bench_topn");
  long sizes[MAX_SIZES] = {10000, 100000, 1000000};
  int n_sizes = 3;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
      seconds = atof(argv[++i]);
    } else if (!strcmp(argv[i], "--k") && i + 1 < argc) {
      k_factors = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
      n_sizes = 0;
      for (char *s = argv[++i]; *s && n_sizes < MAX_SIZES;) {
        char *end;
        sizes[n_sizes++] = strtol(s, &end, 10);
        s = *end ? end + 1 : end;
      }
    } else {
      fprintf(stderr,
              "usage: bench_topn [--sizes N,N,...] [--seconds S] [--k K]\n");
      return 2;
    }
  }
  if (n_sizes < 1 || seconds <= 0 || k_factors < 1 || k_factors > 1024)
    bench_die("arguments", "bad --sizes, --seconds or --k");
  const char *load = bench_loadavg();
  printf("topn_emit, k = %d, n = 10, %d users, skewed items; per emission "
         "(topn_emit's process() only); load average at start: %s\n",
         k_factors, USERS, load);
  /* Cost relative to the smallest catalogue of the same configuration:
   * by the mean (1 / emissions/s) and by the median, which a loaded
   * machine's stalls move less. */
  printf("%-11s %-10s %12s %9s %9s %10s %10s %10s %8s\n", "catalogue", "config",
         "emissions/s", "p50 us", "p99 us", "scored", "mean vs 1", "p50 vs 1",
         "RSS MiB");
  for (int mode = 0; mode < 3; mode++) {
    double first = 0, first_p50 = 0;
    for (int i = 0; i < n_sizes; i++) {
      double rss;
      result_t r = measure(sizes[i], mode, &rss);
      double cost = 1.0 / r.rate;
      if (i == 0) {
        first = cost;
        first_p50 = r.p50_us;
      }
      printf("%-11ld %-10s %12.0f %9.1f %9.1f %10.1f %9.2fx %9.2fx %8.0f\n",
             sizes[i], mode_names[mode], r.rate, r.p50_us, r.p99_us, r.scored,
             cost / first, r.p50_us / first_p50, rss);
      fflush(stdout);
    }
  }
  return 0;
}
