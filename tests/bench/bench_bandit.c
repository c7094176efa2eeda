/* bandit_reward's cost per emission for each policy: process() alone on
 * the local host (engine state and cache), over synthetic topn_emit lists
 * of `candidates` items out of a 10,000-item catalogue for 1,000 users,
 * event time 1 ms apart with reward_window 1s, so each emission also
 * closes one earlier impression (its statistics and IPS update). The
 * greedy policy's cost is the baseline the ratios are measured against in
 * the same run.
 *
 *   bench_bandit [--emissions N] [--candidates C] [--slots S] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "local_host.h"
#include "util.h"

extern const rs_operator_def_t rs_op_bandit_reward;

static long emissions = 50000;
static int candidates = 20, slots = 10;

static uint64_t xs(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

typedef struct result {
  double per_emission_us;
} result_t;

static void measure(const void *arg, void *out) {
  const char *policy = arg;
  char yaml[1024], err[1024];
  snprintf(yaml, sizeof yaml,
           "app: b\nsources: [{name: in, topic: in}]\n"
           "operators:\n"
           " - {name: bandit, type: bandit_reward, input: in, %s, slots: %d,"
           " reward_window: 1s}\n"
           "sinks: [{name: out, input: bandit.recommendations, topic: out}]\n",
           policy, slots);
  rs_config_t *cfg;
  if (rs_config_load_string("bench", yaml, strlen(yaml), NULL, 0, &cfg, err,
                            sizeof err))
    bench_die("config", err);
  rs_local_opts_t o = {0};
  rs_local_t *l;
  if (rs_local_new(&rs_op_bandit_reward, "bandit", cfg, cfg->operators[0].node,
                   &o, &l, err, sizeof err))
    bench_die("bandit_reward", err);
  char(*names)[16] = malloc(10000 * sizeof *names);
  for (int i = 0; i < 10000; i++)
    snprintf(names[i], 16, "item-%d", i);
  rs_scored_item_t items[256];
  uint64_t seed = 0x9e3779b97f4a7c15ULL;
  uint64_t t0 = 0;
  for (long e = 0; e < emissions; e++) {
    if (e == emissions / 10)
      t0 = rs_now_ns(); /* after a warm-up tenth */
    for (int j = 0; j < candidates; j++) {
      int it = (int)(xs(&seed) % 10000);
      items[j] = (rs_scored_item_t){.item = names[it],
                                    .item_len = (uint32_t)strlen(names[it]),
                                    .score = 1.0 - 0.01 * j,
                                    .propensity = 1};
    }
    char user[16], imp[32];
    snprintf(user, sizeof user, "u%ld", e % 1000);
    snprintf(imp, sizeof imp, "imp-%ld", e);
    rs_recommendation_t r = {.user = user,
                             .user_len = (uint32_t)strlen(user),
                             .impression_id = imp,
                             .impression_id_len = (uint32_t)strlen(imp),
                             .items = items,
                             .n_items = (uint32_t)candidates,
                             .timestamp_ms = 1767225600000LL + e};
    rs_record_t rec = {.kind = RS_KIND_RECOMMENDATION,
                       .key = user,
                       .key_len = r.user_len,
                       .payload = &r,
                       .timestamp_ms = r.timestamp_ms,
                       .src_offset = e};
    if (rs_local_push(l, 0, &rec, 1))
      bench_die("push", "process failed");
  }
  double ns = (double)(rs_now_ns() - t0);
  ((result_t *)out)->per_emission_us =
      ns / 1e3 / (double)(emissions - emissions / 10);
  free(names);
  rs_local_destroy(l);
  rs_config_destroy(cfg);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--emissions") && i + 1 < argc)
      emissions = atol(argv[++i]);
    else if (!strcmp(argv[i], "--candidates") && i + 1 < argc)
      candidates = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--slots") && i + 1 < argc)
      slots = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: bench_bandit [--emissions N] [--candidates C "
                      "(<= 256)] [--slots S]\n");
      return strcmp(argv[i], "--help") ? 2 : 0;
    }
  }
  if (candidates < 1 || candidates > 256 || emissions < 10 || slots < 1) {
    fprintf(stderr, "bench_bandit: bad arguments\n");
    return 2;
  }
  bench_init("bench_bandit");
  static const char *const policies[] = {
      "policy: greedy", "policy: epsilon_greedy",
      "policy: thompson, samples: 8", "policy: thompson, samples: 32"};
  double base = 0;
  printf("bandit_reward process() per emission (%d candidates, %d slots, "
         "%ld emissions)\n",
         candidates, slots, emissions);
  for (size_t p = 0; p < sizeof policies / sizeof *policies; p++) {
    result_t r;
    bench_in_child(policies[p], measure, policies[p], &r, sizeof r);
    if (p == 0)
      base = r.per_emission_us;
    printf("  %-32s %8.2f us  %5.2fx greedy\n", policies[p], r.per_emission_us,
           r.per_emission_us / base);
  }
  return 0;
}
