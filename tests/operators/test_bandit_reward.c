/* Tests of bandit_reward: the policies (bandit_policy.c) on hand-worked
 * cases, propensities that sum to 1 and match the frequencies of many
 * draws, the feedback join through the harness (on time, duplicate, sum,
 * missing id, late, unknown, window close with the default reward, a
 * restart), a regret test in a synthetic Bernoulli environment, the IPS
 * estimate of a known target policy, and mf_update learning from
 * feedback. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operators/bandit_reward/bandit_policy.h"
#include "operators/bandit_reward/bandit_reward.h"
#include "operators/harness.h"

extern const rs_operator_def_t rs_op_bandit_reward;
extern const rs_operator_def_t rs_op_mf_update;

static char err[1024];

static rs_harness_t *make(const char *const *options) {
  err[0] = '\0';
  rs_harness_t *h =
      rs_harness_new(&rs_op_bandit_reward, options, err, sizeof(err));
  cr_assert_not_null(h, "rs_harness_new: %s", err);
  return h;
}

/* ---------------------------------------------------------- records */

#define MAXC 16
static const char *const names[MAXC] = {"i0",  "i1",  "i2",  "i3", "i4",  "i5",
                                        "i6",  "i7",  "i8",  "i9", "i10", "i11",
                                        "i12", "i13", "i14", "i15"};

/* Pushes topn_emit's list of the named items (scores given, or 0) as an
 * impression `imp` for `user` at ts. */
static void push_items(rs_harness_t *h, const char *user, const char *imp,
                       const char *const *item_names, const double *scores,
                       uint32_t n, int64_t ts, int64_t offset) {
  rs_scored_item_t items[MAXC];
  for (uint32_t j = 0; j < n; j++)
    items[j] = (rs_scored_item_t){.item = item_names[j],
                                  .item_len = (uint32_t)strlen(item_names[j]),
                                  .score = scores ? scores[j] : 0,
                                  .propensity = 1};
  rs_recommendation_t r = {.user = user,
                           .user_len = (uint32_t)strlen(user),
                           .impression_id = imp,
                           .impression_id_len = (uint32_t)strlen(imp),
                           .items = items,
                           .n_items = n,
                           .model_version = 7,
                           .timestamp_ms = ts};
  rs_record_t rec = {.kind = RS_KIND_RECOMMENDATION,
                     .key = user,
                     .key_len = strlen(user),
                     .payload = &r,
                     .timestamp_ms = ts,
                     .src_offset = offset};
  int rc = rs_harness_push_input(h, 0, 0, &rec, 1);
  cr_assert_eq(rc, 0, "push list: %d %s", rc, rs_harness_errmsg(h));
}

/* The first n of names[] (i0, i1, ...). */
static void push_list(rs_harness_t *h, const char *user, const char *imp,
                      const double *scores, uint32_t n, int64_t ts,
                      int64_t offset) {
  push_items(h, user, imp, names, scores, n, ts, offset);
}

static void push_fb(rs_harness_t *h, const char *user, const char *imp,
                    const char *item, int type, double value, int64_t ts,
                    int64_t offset) {
  int rc =
      rs_harness_push_feedback(h, 1, user, imp, item, type, value, ts, offset);
  cr_assert_eq(rc, 0, "push feedback: %d %s", rc, rs_harness_errmsg(h));
}

static const rs_recommendation_t *last_list(rs_harness_t *h) {
  size_t n = rs_harness_emitted_count(h, 0);
  cr_assert(n > 0);
  const rs_record_t *r = rs_harness_emitted(h, 0, n - 1);
  cr_assert_eq(r->kind, RS_KIND_RECOMMENDATION);
  return r->payload;
}

static int item_no(const rs_scored_item_t *it) {
  return atoi(it->item + 1);
}

/* ------------------------------------------------ the policies alone */

static double work[4096 * 40];

Test(bandit_policy, epsilon_greedy_hand_worked) {
  /* Posterior means with prior (1, 1): A (6+1)/(8+2) = 0.7, B 1/4 = 0.25,
   * C 1/2 = 0.5. Greedy A, C, B. epsilon 0.3: slot 0 q = (0.8, 0.1, 0.1);
   * slot 1 after A: C 0.7 + 0.15, B 0.15. */
  br_arm_t arms[3] = {{0, 8, 6, 0, 0}, {0, 2, 0, 0, 0}, {0, 0, 0, 0, 0}};
  br_policy_t p = {.kind = BR_EPSILON,
                   .epsilon = 0.3,
                   .score_weight = 0,
                   .prior_alpha = 1,
                   .prior_beta = 1};
  uint32_t order[3], greedy[3];
  double prop[3], dist[3];
  int seen_second = 0;
  for (uint64_t seed = 1; seed < 200; seed++) {
    br_rng_t r;
    br_rng_seed(&r, seed);
    double pl = br_choose(&p, arms, 3, 3, &r, order, prop, greedy, dist, work);
    cr_assert_eq(greedy[0], 0);
    cr_assert_eq(greedy[1], 2);
    cr_assert_eq(greedy[2], 1);
    cr_assert_float_eq(dist[0], 0.8, 1e-12);
    cr_assert_float_eq(dist[1], 0.1, 1e-12);
    cr_assert_float_eq(dist[2], 0.1, 1e-12);
    cr_assert_float_eq(prop[0], dist[order[0]], 1e-12);
    cr_assert_float_eq(prop[2], 1.0, 1e-12); /* the last one left */
    cr_assert_float_eq(pl, prop[0] * prop[1] * prop[2], 1e-12);
    if (order[0] == 0) {
      cr_assert_float_eq(prop[1], order[1] == 2 ? 0.85 : 0.15, 1e-12);
      seen_second = 1;
    }
  }
  cr_assert(seen_second);
  /* score_weight: a model score of 1 outweighs any reward estimate. */
  arms[1].score = 1;
  p.score_weight = 1;
  p.epsilon = 0;
  br_rng_t r;
  br_rng_seed(&r, 5);
  br_choose(&p, arms, 3, 1, &r, order, prop, greedy, dist, work);
  cr_assert_eq(order[0], 1);
  cr_assert_float_eq(prop[0], 1.0, 1e-12);
}

Test(bandit_policy, thompson_follows_the_posterior) {
  /* Beta(91, 11) against Beta(11, 91): the first wins nearly every draw,
   * so q0 = 0.99 * 1 + 0.01 / 3 for it, 0.01 / 3 for the others. */
  br_arm_t arms[3] = {
      {0, 100, 10, 0, 0}, {0, 100, 90, 0, 0}, {0, 100, 10, 0, 0}};
  br_policy_t p = {.kind = BR_THOMPSON,
                   .score_weight = 0,
                   .prior_alpha = 1,
                   .prior_beta = 1,
                   .floor = 0.01,
                   .samples = 32};
  uint32_t order[3], greedy[3];
  double prop[3], dist[3];
  br_rng_t r;
  br_rng_seed(&r, 9);
  br_choose(&p, arms, 3, 3, &r, order, prop, greedy, dist, work);
  cr_assert_eq(greedy[0], 1);
  cr_assert_float_eq(dist[1], 0.99 + 0.01 / 3, 1e-9);
  cr_assert_float_eq(dist[0], 0.01 / 3, 1e-9);
  /* Beta sampler: mean a / (a + b), here 2 / 7. */
  double s = 0;
  for (int k = 0; k < 20000; k++)
    s += br_rng_beta(&r, 2, 5);
  cr_assert_float_eq(s / 20000, 2.0 / 7.0, 0.01);
  s = 0;
  for (int k = 0; k < 20000; k++)
    s += br_rng_beta(&r, 0.5, 0.5);
  cr_assert_float_eq(s / 20000, 0.5, 0.01);
}

/* The samplers' first two moments, within 5 standard errors of 200,000
 * draws: normal (0, 1); gamma (shape, shape) on each path: boosted
 * Marsaglia-Tsang below 1, the sum of exponentials for integer shapes up
 * to 4, Marsaglia-Tsang otherwise; beta (a/(a+b), ab/((a+b)^2(a+b+1))). */
static void check_moments(const char *what,
                          double (*draw)(br_rng_t *, double, double), double a,
                          double b, double mean, double var,
                          double kurt_excess) {
  enum { N = 200000 };
  br_rng_t r;
  br_rng_seed(&r, 77);
  double s = 0, ss = 0;
  for (int k = 0; k < N; k++) {
    double x = draw(&r, a, b);
    s += x;
    ss += x * x;
  }
  double m = s / N, v = ss / N - m * m;
  double se_m = sqrt(var / N), se_v = var * sqrt((2 + kurt_excess) / N);
  cr_expect(fabs(m - mean) < 5 * se_m, "%s(%g, %g): mean %.5f, not %.5f", what,
            a, b, m, mean);
  cr_expect(fabs(v - var) < 5 * se_v, "%s(%g, %g): variance %.5f, not %.5f",
            what, a, b, v, var);
}

static double draw_normal(br_rng_t *r, double a, double b) {
  (void)a;
  (void)b;
  return br_rng_normal(r);
}

static double draw_gamma(br_rng_t *r, double a, double b) {
  (void)b;
  return br_rng_gamma(r, a);
}

Test(bandit_policy, samplers_have_the_right_moments) {
  check_moments("normal", draw_normal, 0, 0, 0, 1, 0);
  const double shapes[] = {0.3, 0.5, 1, 2, 3, 4, 5, 2.5, 11, 60};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    check_moments("gamma", draw_gamma, shapes[i], 0, shapes[i], shapes[i],
                  6 / shapes[i]);
  const double ab[][2] = {{1, 1}, {2, 1}, {1, 200}, {3, 40}, {1.5, 7}, {4, 4}};
  for (size_t i = 0; i < sizeof ab / sizeof ab[0]; i++) {
    double a = ab[i][0], b = ab[i][1], n = a + b;
    double var = a * b / (n * n * (n + 1));
    /* excess kurtosis of Beta(a, b) */
    double ek = 6 * ((a - b) * (a - b) * (n + 1) - a * b * (n + 2)) /
                (a * b * (n + 2) * (n + 3));
    check_moments("beta", br_rng_beta, a, b, a / n, var, ek);
  }
}

Test(bandit_policy, thompson_hand_worked) {
  /* One slot, floor 0, so q0 of an arm is the probability that its
   * posterior draw is the larger. A: 1 show, 1 reward: Beta(2, 1); B: no
   * shows: Beta(1, 1) = U. P(A > U) = int 2x * x dx = 2/3 (integer shapes:
   * the exponential-sum path). C: 10 shows, no reward: Beta(1, 11) against
   * B: P(C > U) = E[C] = 1/12 (shape 11: Marsaglia-Tsang). */
  br_arm_t ab[2] = {{0, 1, 1, 0, 0}, {0, 0, 0, 0, 0}};
  br_arm_t cb[2] = {{0, 10, 0, 0, 0}, {0, 0, 0, 0, 0}};
  br_policy_t p = {.kind = BR_THOMPSON,
                   .score_weight = 0,
                   .prior_alpha = 1,
                   .prior_beta = 1,
                   .floor = 0,
                   .samples = 4096};
  uint32_t order[2], greedy[2];
  double prop[2], dist[2], share_a = 0, share_c = 0;
  enum { RUNS = 50 };
  for (uint64_t seed = 1; seed <= RUNS; seed++) {
    br_rng_t r;
    br_rng_seed(&r, seed * 104729);
    br_choose(&p, ab, 2, 1, &r, order, prop, greedy, dist, work);
    cr_assert_eq(greedy[0], 0);
    cr_assert_float_eq(dist[0] + dist[1], 1, 1e-9);
    cr_assert_float_eq(prop[0], dist[order[0]], 1e-12);
    share_a += dist[0] / RUNS;
    br_choose(&p, cb, 2, 1, &r, order, prop, greedy, dist, work);
    cr_assert_eq(greedy[0], 1);
    share_c += dist[0] / RUNS;
  }
  /* 204,800 draws: standard errors 0.0010 and 0.0006 */
  cr_assert_float_eq(share_a, 2.0 / 3.0, 0.005, "share %f", share_a);
  cr_assert_float_eq(share_c, 1.0 / 12.0, 0.003, "share %f", share_c);
}

Test(bandit_policy, thompson_residual_hand_worked) {
  /* Gaussian on the score residual, sigma 0.5, tau 1, prediction = score
   * (a 0, b 1). A: score 0.5, 3 residuals summing to 0.6: lambda = 1 +
   * 3 / 0.25 = 13, m = (0.6 / 0.25) / 13 = 0.184615..., sd = 1 / sqrt(13).
   * B: score 0.6, no residuals: m 0, sd 1. Greedy: A (0.6846 > 0.6). A
   * wins a draw when 0.5 + N(m, 1/13) > 0.6 + N(0, 1): probability
   * Phi(0.084615 / sqrt(1 + 1/13)) = Phi(0.081539) = 0.53249. */
  br_arm_t arms[2] = {{.score = 0.5, .res_n = 3, .res_sum = 0.6},
                      {.score = 0.6}};
  br_policy_t p = {.kind = BR_THOMPSON,
                   .score_weight = 1,
                   .prior_alpha = 1,
                   .prior_beta = 1,
                   .floor = 0,
                   .samples = 4096,
                   .residual = 1,
                   .res_sd = 0.5,
                   .res_prior_sd = 1,
                   .cal_a = 0,
                   .cal_b = 1};
  double m, sd;
  br_residual_posterior(&p, &arms[0], &m, &sd);
  cr_assert_float_eq(m, 2.4 / 13, 1e-12);
  cr_assert_float_eq(sd, 1 / sqrt(13), 1e-12);
  br_residual_posterior(&p, &arms[1], &m, &sd);
  cr_assert_float_eq(m, 0, 1e-12);
  cr_assert_float_eq(sd, 1, 1e-12);
  uint32_t order[2], greedy[2];
  double prop[2], dist[2], share = 0;
  enum { RUNS = 50 };
  for (uint64_t seed = 1; seed <= RUNS; seed++) {
    br_rng_t r;
    br_rng_seed(&r, seed * 7717);
    br_choose(&p, arms, 2, 2, &r, order, prop, greedy, dist, work);
    cr_assert_eq(greedy[0], 0);
    cr_assert_float_eq(dist[0] + dist[1], 1, 1e-9);
    share += dist[0] / RUNS;
  }
  /* 204,800 draws: standard error 0.0011 */
  cr_assert_float_eq(share, 0.53249, 0.006, "share %f", share);
  /* A calibration a + b * score that lowers B below A for sure: b = 0
   * leaves 0 + N(m, .) against 0 + N(0, 1) for B. */
  p.cal_b = 0;
  p.cal_a = 0.2;
  cr_assert_float_eq(br_predict(&p, 3), 0.2, 1e-12);

  /* The calibration line: (0,0) (1,0) (2,1) (3,1) ten times: mean s 1.5,
   * mean r 0.5, var s 1.25, cov 0.5: b = 0.4, a = 0.5 - 0.6 = -0.1. Fewer
   * than BR_CALIB_MIN points: a = 0, b = score_weight. A falling line is
   * clamped flat: b = 0, a = mean r. */
  br_calib_t cal = {0};
  double a, b;
  for (int k = 0; k < 10; k++) {
    br_calib_add(&cal, 0, 0);
    br_calib_add(&cal, 1, 0);
    br_calib_add(&cal, 2, 1);
    if (k == 5) {
      br_calib_fit(&cal, 2.5, &a, &b);
      cr_assert_eq(a, 0);
      cr_assert_eq(b, 2.5);
    }
    br_calib_add(&cal, 3, 1);
  }
  br_calib_fit(&cal, 2.5, &a, &b);
  cr_assert_float_eq(b, 0.4, 1e-12);
  cr_assert_float_eq(a, -0.1, 1e-12);
  br_calib_t fall = {0};
  for (int k = 0; k < 20; k++) {
    br_calib_add(&fall, 0, 1);
    br_calib_add(&fall, 1, 0);
  }
  br_calib_fit(&fall, 1, &a, &b);
  cr_assert_eq(b, 0);
  cr_assert_float_eq(a, 0.5, 1e-12);
}

/* Slot 0's distribution sums to 1 and the frequencies of many draws match
 * the mean logged propensity of each item within 4.5 standard errors. */
static void check_frequencies(br_policy_t *p) {
  br_arm_t arms[5] = {{0.3, 10, 2, 3, 0.5},
                      {0.1, 4, 3, 0, 0},
                      {0.0, 0, 0, 0, 0},
                      {0.2, 30, 3, 10, -1},
                      {0.1, 1, 1, 1, 0.2}};
  enum { DRAWS = 20000 };
  double mean_q[5] = {0}, count[5] = {0};
  uint32_t order[5], greedy[5];
  double prop[5], dist[5];
  for (uint64_t k = 0; k < DRAWS; k++) {
    br_rng_t r;
    br_rng_seed(&r, 1000 + k * 7919);
    br_choose(p, arms, 5, 3, &r, order, prop, greedy, dist, work);
    double sum = 0;
    for (int j = 0; j < 5; j++) {
      sum += dist[j];
      mean_q[j] += dist[j] / DRAWS;
      cr_assert(dist[j] > 0, "item %d has propensity 0", j);
    }
    cr_assert_float_eq(sum, 1.0, 1e-9);
    cr_assert_float_eq(prop[0], dist[order[0]], 1e-12);
    count[order[0]]++;
    for (int s = 1; s < 3; s++)
      cr_assert(prop[s] > 0 && prop[s] <= 1);
  }
  for (int j = 0; j < 5; j++) {
    double f = count[j] / DRAWS,
           se = sqrt(mean_q[j] * (1 - mean_q[j]) / DRAWS) + 1e-9;
    cr_assert(fabs(f - mean_q[j]) < 4.5 * se,
              "policy %d item %d: frequency %.4f, propensity %.4f", p->kind, j,
              f, mean_q[j]);
  }
}

Test(bandit_policy, propensities_match_frequencies) {
  br_policy_t eps = {.kind = BR_EPSILON,
                     .epsilon = 0.3,
                     .score_weight = 1,
                     .prior_alpha = 1,
                     .prior_beta = 1};
  check_frequencies(&eps);
  br_policy_t ts = {.kind = BR_THOMPSON,
                    .score_weight = 1,
                    .prior_alpha = 1,
                    .prior_beta = 1,
                    .floor = 0.05,
                    .samples = 16};
  check_frequencies(&ts);
  ts.residual = 1;
  ts.res_sd = 0.5;
  ts.res_prior_sd = 0.3;
  ts.cal_b = 1;
  check_frequencies(&ts);
}

/* ------------------------------------------------ through the harness */

Test(bandit_reward, emits_the_list_with_propensities) {
  const char *opts[] = {
      "policy", "epsilon_greedy", "epsilon", "0.5", "slots", "2", NULL};
  rs_harness_t *h = make(opts);
  double scores[4] = {4, 3, 2, 1};
  push_list(h, "u1", "imp-1", scores, 4, 1000, 10);
  cr_assert_eq(rs_harness_emitted_count(h, 0), 1);
  const rs_record_t *o = rs_harness_emitted(h, 0, 0);
  const rs_recommendation_t *r = o->payload;
  cr_assert_eq(r->n_items, 2);
  cr_assert_str_eq(r->impression_id, "imp-1");
  cr_assert_eq(r->model_version, 7);
  cr_assert_eq(o->src_offset, 10);
  /* slot 0: greedy i0 with 0.5 + 0.5 / 4, any other 0.125 */
  double want0 = item_no(&r->items[0]) == 0 ? 0.625 : 0.125;
  cr_assert_float_eq(r->items[0].propensity, want0, 1e-12);
  cr_assert(r->items[1].propensity > 0 && r->items[1].propensity <= 1);
  cr_assert_eq(rs_harness_counter(h, "impressions"), 1);
  /* Deterministic: the same input in a fresh instance gives the same. */
  rs_harness_t *h2 = make(opts);
  push_list(h2, "u1", "imp-1", scores, 4, 1000, 10);
  const rs_recommendation_t *r2 = last_list(h2);
  cr_assert_str_eq(r2->items[0].item, r->items[0].item);
  cr_assert_str_eq(r2->items[1].item, r->items[1].item);
  rs_harness_destroy(h2);
  /* greedy: topn's order, propensity 1 */
  const char *g[] = {"policy", "greedy", "slots", "3", NULL};
  rs_harness_t *h3 = make(g);
  push_list(h3, "u1", "imp-1", scores, 4, 1000, 10);
  r2 = last_list(h3);
  for (int s = 0; s < 3; s++) {
    cr_assert_eq(item_no(&r2->items[s]), s);
    cr_assert_float_eq(r2->items[s].propensity, 1.0, 1e-12);
  }
  rs_harness_destroy(h3);
  rs_harness_destroy(h);
}

Test(bandit_reward, epsilon_decay) {
  /* epsilon 1, decay 1: the t-th impression explores with 1 / (1 + t). Two
   * candidates, i0 greedy by score: q(i0) = 1 - eps / 2. */
  const char *opts[] = {"epsilon", "1", "decay", "1", "slots", "1", NULL};
  rs_harness_t *h = make(opts);
  double scores[2] = {1, 0};
  for (int t = 0; t < 4; t++) {
    char imp[16];
    snprintf(imp, sizeof imp, "imp-%d", t);
    push_list(h, "u", imp, scores, 2, 1000 + t, t);
    const rs_recommendation_t *r = last_list(h);
    double eps = 1.0 / (1 + t);
    double want = item_no(&r->items[0]) == 0 ? 1 - eps / 2 : eps / 2;
    cr_assert_float_eq(r->items[0].propensity, want, 1e-12, "t %d", t);
  }
  rs_harness_destroy(h);
}

static const rs_reward_t *reward_at(rs_harness_t *h, size_t i) {
  cr_assert(rs_harness_emitted_count(h, 1) > i, "no reward %zu", i);
  const rs_record_t *r = rs_harness_emitted(h, 1, i);
  cr_assert_eq(r->kind, RS_KIND_REWARD);
  return r->payload;
}

Test(bandit_reward, join_duplicate_late_missing_and_close) {
  const char *opts[] = {
      "policy", "greedy",         "slots", "3", "reward_window",
      "100ms",  "default_reward", "-0.5",  NULL};
  rs_harness_t *h = make(opts);
  push_list(h, "u1", "imp-1", NULL, 3, 1000, 1);
  /* on time, by id */
  push_fb(h, "u1", "imp-1", "i1", RS_FEEDBACK_CLICK, 1, 1050, 100);
  const rs_reward_t *w = reward_at(h, 0);
  cr_assert_str_eq(w->impression_id, "imp-1");
  cr_assert_str_eq(w->item, "i1");
  cr_assert_eq(w->position, 1);
  cr_assert_eq(w->reward, 1);
  cr_assert_eq(w->propensity, 1);
  cr_assert_eq(w->impression_ms, 1000);
  cr_assert_eq(w->flags, 0);
  cr_assert_eq(rs_harness_counter(h, "clicks"), 1);
  /* duplicate: counted once */
  push_fb(h, "u1", "imp-1", "i1", RS_FEEDBACK_CLICK, 1, 1060, 101);
  cr_assert_eq(rs_harness_emitted_count(h, 1), 1);
  cr_assert_eq(rs_harness_counter(h, "duplicates"), 1);
  /* missing id: joined by user + item */
  push_fb(h, "u1", NULL, "i2", RS_FEEDBACK_PURCHASE, 5, 1070, 102);
  w = reward_at(h, 1);
  cr_assert_str_eq(w->impression_id, "imp-1");
  cr_assert_eq(w->position, 2);
  cr_assert_eq(w->flags, RS_REWARD_F_JOINED_BY_ITEM);
  cr_assert_eq(w->reward, 5);
  /* unknown impression: waits for it (until the watermark passes 1080 +
   * 100); item not shown: unmatched at once */
  push_fb(h, "u1", "imp-9", "i1", RS_FEEDBACK_CLICK, 1, 1080, 103);
  cr_assert_eq(rs_harness_counter(h, "early_feedback"), 1);
  cr_assert_eq(rs_harness_counter(h, "unmatched_feedback"), 0);
  push_fb(h, "u1", "imp-1", "i7", RS_FEEDBACK_CLICK, 1, 1080, 104);
  cr_assert_eq(rs_harness_counter(h, "unmatched_feedback"), 1);
  cr_assert_eq(rs_harness_emitted_count(h, 2), 1);
  /* a second impression that nobody answers */
  push_list(h, "u1", "imp-2", NULL, 3, 1090, 2);
  /* late: after imp-1's window (1000 + 100), before the watermark closes it
   * (max_out_of_orderness 0: the watermark is this record's time) */
  push_fb(h, "u1", "imp-1", "i0", RS_FEEDBACK_CLICK, 1, 1101, 105);
  cr_assert_eq(rs_harness_counter(h, "late_feedback"), 1);
  cr_assert_eq(rs_harness_emitted_count(h, 1), 2);
  /* 1101 > 1100 closed imp-1: it had feedback, so no default reward, and
   * the statistics count a show per slot: i0 -0.5 (default), i1 1, i2 5. */
  double shows, rew;
  void *ctx = rs_harness_ctx(h);
  cr_assert_eq(rs__bandit_arm(ctx, "i1", &shows, &rew), 0);
  cr_assert_eq(shows, 1);
  cr_assert_eq(rew, 1);
  cr_assert_eq(rs__bandit_arm(ctx, "i0", &shows, &rew), 0);
  cr_assert_eq(rew, -0.5);
  cr_assert_eq(rs__bandit_arm(ctx, "i2", &shows, &rew), 0);
  cr_assert_eq(rew, 5);
  /* Feedback after the close: the impression is gone, so it waits like
   * early feedback (this operator cannot tell the two apart). */
  push_fb(h, "u1", "imp-1", "i0", RS_FEEDBACK_CLICK, 1, 1095, 106);
  cr_assert_eq(rs_harness_counter(h, "unmatched_feedback"), 1);
  cr_assert_eq(rs_harness_counter(h, "early_feedback"), 2);
  /* imp-2 closes at a restart-surviving watermark: state only. The
   * waiting feedback (imp-9 until 1180, imp-1 until 1195) expires into
   * unmatched at the same watermark, after the restart too. */
  cr_assert_eq(rs_harness_checkpoint(h), 0);
  cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
  rs_harness_clear(h);
  push_fb(h, "u2", "imp-x", "i0", RS_FEEDBACK_CLICK, 1, 1200, 107);
  cr_assert_eq(rs_harness_emitted_count(h, 2), 2);
  cr_assert_eq(rs_harness_counter(h, "unmatched_feedback"), 1 + 2);
  const rs_feedback_t *uf = rs_harness_emitted(h, 2, 0)->payload;
  cr_assert_eq(rs_harness_emitted(h, 2, 0)->kind, RS_KIND_FEEDBACK);
  cr_assert_str_eq(uf->impression_id, "imp-9");
  cr_assert_eq(uf->item_len, 2);
  cr_assert(!memcmp(uf->item, "i1", 2));
  cr_assert_eq(uf->timestamp_ms, 1080);
  cr_assert_eq(rs_harness_emitted_count(h, 1), 1);
  w = reward_at(h, 0);
  cr_assert_str_eq(w->impression_id, "imp-2");
  cr_assert_null(w->item);
  cr_assert_eq(w->position, -1);
  cr_assert_eq(w->flags, RS_REWARD_F_DEFAULT);
  cr_assert_eq(w->reward, -0.5);
  cr_assert_eq(rs_harness_counter(h, "default_rewards"), 1);
  cr_assert_eq(rs_harness_counter(h, "ips_impressions"), 2);
  /* greedy logs the greedy list: w = 1, R(imp-1) = -0.5 + 1 + 5,
   * R(imp-2) = 3 * -0.5 */
  double n, ips, snips;
  rs__bandit_estimates(rs_harness_ctx(h), &n, &ips, &snips);
  cr_assert_eq(n, 2);
  cr_assert_float_eq(ips, (5.5 - 1.5) / 2, 1e-12);
  cr_assert_float_eq(snips, (5.5 - 1.5) / 2, 1e-12);
  rs_harness_destroy(h);
}

Test(bandit_reward, thompson_residual_learns_at_close) {
  /* Two slots, scores 0.5 and 0.2, score_weight 1: before 30 closed slots
   * the prediction is the score itself. A click on i0 and none on i1:
   * residuals 1 - 0.5 = 0.5 and 0 - 0.2 = -0.2 at the close. */
  const char *opts[] = {
      "policy",        "thompson", "thompson_model", "residual", "slots", "2",
      "reward_window", "10ms",     "floor",          "0",        NULL};
  rs_harness_t *h = make(opts);
  const double sc[2] = {0.5, 0.2};
  push_list(h, "u1", "imp-1", sc, 2, 1000, 1);
  cr_assert_eq(last_list(h)->n_items, 2);
  push_fb(h, "u1", "imp-1", "i0", RS_FEEDBACK_CLICK, 1, 1001, 2);
  void *ctx = rs_harness_ctx(h);
  double n, sum, a, b;
  cr_assert_eq(rs__bandit_residual(ctx, "i0", &n, &sum, &a, &b), 0);
  cr_assert_eq(n, 0);                          /* still open */
  push_list(h, "u2", "imp-2", sc, 2, 1011, 3); /* closes imp-1 */
  cr_assert_eq(rs__bandit_residual(ctx, "i0", &n, &sum, &a, &b), 0);
  cr_assert_eq(n, 1);
  cr_assert_float_eq(sum, 0.5, 1e-12);
  cr_assert_eq(a, 0);
  cr_assert_eq(b, 1);
  cr_assert_eq(rs__bandit_residual(ctx, "i1", &n, &sum, &a, &b), 0);
  cr_assert_eq(n, 1);
  cr_assert_float_eq(sum, -0.2, 1e-12);
  /* The Beta statistics are kept too (one show each). */
  double shows, rew;
  cr_assert_eq(rs__bandit_arm(ctx, "i0", &shows, &rew), 0);
  cr_assert_eq(shows, 1);
  cr_assert_eq(rew, 1);
  /* Survives a restart (state only). */
  cr_assert_eq(rs_harness_checkpoint(h), 0);
  cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
  cr_assert_eq(rs__bandit_residual(rs_harness_ctx(h), "i1", &n, &sum, &a, &b),
               0);
  cr_assert_float_eq(sum, -0.2, 1e-12);
  rs_harness_destroy(h);
}

/* The same with arms user: the residuals are the user's own, kept in its
 * record (flag 1 with the residual fields) and not in the shared "g"
 * entries; they survive a restart. The calibration stays shared. */
Test(bandit_reward, thompson_residual_per_user_arms) {
  const char *opts[] = {"policy", "thompson", "thompson_model", "residual",
                        "slots",  "2",        "reward_window",  "10ms",
                        "floor",  "0",        "arms",           "user",
                        NULL};
  rs_harness_t *h = make(opts);
  const double sc[2] = {0.5, 0.2};
  push_list(h, "u1", "imp-1", sc, 2, 1000, 1);
  push_fb(h, "u1", "imp-1", "i0", RS_FEEDBACK_CLICK, 1, 1001, 2);
  push_list(h, "u2", "imp-2", sc, 2, 1011, 3); /* closes imp-1 */
  void *ctx = rs_harness_ctx(h);
  double n, sum, a, b;
  cr_assert_eq(rs__bandit_user_residual(ctx, 0, "u1", "i0", &n, &sum), 0);
  cr_assert_eq(n, 1);
  cr_assert_float_eq(sum, 0.5, 1e-12);
  cr_assert_eq(rs__bandit_user_residual(ctx, 0, "u1", "i1", &n, &sum), 0);
  cr_assert_eq(n, 1);
  cr_assert_float_eq(sum, -0.2, 1e-12);
  cr_assert_eq(rs__bandit_user_residual(ctx, 0, "u2", "i0", &n, &sum), 0);
  cr_assert_eq(n, 0, "u2's list is still open");
  cr_assert_eq(rs__bandit_residual(ctx, "i0", &n, &sum, &a, &b), 0);
  cr_assert_eq(n, 0, "no shared residual with arms user");
  cr_assert_eq(a, 0);
  cr_assert_eq(b, 1);
  double shows, rew;
  cr_assert_eq(rs__bandit_user_arm(ctx, 0, "u1", "i0", &shows, &rew), 0);
  cr_assert_eq(shows, 1);
  cr_assert_eq(rew, 1);
  cr_assert_eq(rs_harness_checkpoint(h), 0);
  cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
  ctx = rs_harness_ctx(h);
  cr_assert_eq(rs__bandit_user_residual(ctx, 0, "u1", "i1", &n, &sum), 0);
  cr_assert_eq(n, 1);
  cr_assert_float_eq(sum, -0.2, 1e-12);
  cr_assert_eq(rs__bandit_user_arm(ctx, 0, "u1", "i0", &shows, &rew), 0);
  cr_assert_eq(shows, 1);
  cr_assert_eq(rew, 1);
  rs_harness_destroy(h);
}

Test(bandit_reward, early_feedback_waits_for_its_impression) {
  const char *opts[] = {"policy",        "greedy", "slots", "3",
                        "reward_window", "100ms",  NULL};
  rs_harness_t *h = make(opts);
  /* Feedback before its impression (the inputs are not ordered with each
   * other), twice for i1: kept, joined when the impression arrives. */
  push_fb(h, "u1", "imp-1", "i1", RS_FEEDBACK_CLICK, 1, 1000, 1);
  push_fb(h, "u1", "imp-1", "i1", RS_FEEDBACK_CLICK, 1, 1001, 2);
  cr_assert_eq(rs_harness_counter(h, "early_feedback"), 2);
  cr_assert_eq(rs_harness_emitted_count(h, 1), 0);
  cr_assert_eq(rs_harness_emitted_count(h, 2), 0);
  push_list(h, "u1", "imp-1", NULL, 3, 999, 3);
  cr_assert_eq(rs_harness_emitted_count(h, 1), 1);
  const rs_reward_t *w = reward_at(h, 0);
  cr_assert_str_eq(w->impression_id, "imp-1");
  cr_assert_str_eq(w->item, "i1");
  cr_assert_eq(w->position, 1);
  cr_assert_eq(w->timestamp_ms, 1000);
  cr_assert_eq(rs_harness_counter(h, "clicks"), 1);
  cr_assert_eq(rs_harness_counter(h, "duplicates"), 1);
  cr_assert_eq(rs_harness_counter(h, "unmatched_feedback"), 0);
  /* Waiting survives a restart: feedback for imp-2, restart, then imp-2. */
  push_fb(h, "u2", "imp-2", "i0", RS_FEEDBACK_CLICK, 1, 1010, 4);
  cr_assert_eq(rs_harness_checkpoint(h), 0);
  cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
  rs_harness_clear(h);
  push_list(h, "u2", "imp-2", NULL, 3, 1005, 5);
  cr_assert_eq(rs_harness_emitted_count(h, 1), 1);
  cr_assert_str_eq(reward_at(h, 0)->impression_id, "imp-2");
  cr_assert_eq(reward_at(h, 0)->position, 0);
  /* Feedback whose impression comes after the window: unmatched when the
   * watermark passes 1020 + 100, not at once; the impression arriving later
   * finds nothing waiting. */
  push_fb(h, "u3", "imp-3", "i2", RS_FEEDBACK_CLICK, 1, 1020, 6);
  push_list(h, "u4", "imp-4", NULL, 3, 1120, 7);
  cr_assert_eq(rs_harness_emitted_count(h, 2), 0);
  push_list(h, "u4", "imp-5", NULL, 3, 1121, 8);
  cr_assert_eq(rs_harness_emitted_count(h, 2), 1);
  push_list(h, "u3", "imp-3", NULL, 3, 1122, 9);
  /* imp-1 and imp-2 closed with their feedback (no default reward);
   * imp-3 found nothing waiting: still only imp-2's reward since the
   * restart. */
  cr_assert_eq(rs_harness_emitted_count(h, 1), 1);
  cr_assert_eq(rs_harness_counter(h, "default_rewards"), 0);
  rs_harness_destroy(h);
}

/* The in-memory agenda follows the state: when another instance wrote the
 * partition (a rebalance), the next batch rebuilds it, so an impression
 * that instance opened still closes here. */
Test(bandit_reward, agenda_rebuilt_when_the_state_changed_underneath) {
  const char *opts[] = {"policy",        "greedy", "slots", "2",
                        "reward_window", "100ms",  NULL};
  rs_harness_t *a = make(opts), *b = make(opts);
  push_list(a, "u1", "imp-a", NULL, 2, 1000, 1);
  push_list(b, "u2", "imp-b", NULL, 2, 1000, 1);
  cr_assert_eq(rs_harness_counter(b, "agenda_rebuilds"), 1);
  /* b's partition now also holds a's impression and a's batch count. */
  const void *v;
  size_t n;
  cr_assert_eq(rs_harness_state_get(a, 0, "mimp-a", 6, &v, &n), 0);
  unsigned char imp[512];
  cr_assert(n <= sizeof imp);
  memcpy(imp, v, n);
  cr_assert_eq(rs_harness_state_put(b, 0, "mimp-a", 6, imp, n), 0);
  cr_assert_eq(rs_harness_state_get(a, 0, "w", 1, &v, &n), 0);
  cr_assert_eq(n, 16);
  unsigned char w[16];
  memcpy(w, v, 16);
  w[8] += 7; /* another instance's count */
  cr_assert_eq(rs_harness_state_put(b, 0, "w", 1, w, 16), 0);
  push_list(b, "u2", "imp-b2", NULL, 2, 1200, 2);
  cr_assert_eq(rs_harness_counter(b, "agenda_rebuilds"), 2);
  cr_assert_eq(rs_harness_counter(b, "default_rewards"), 2, "imp-a closed");
  /* Unchanged state: no rebuild per batch. */
  push_list(b, "u2", "imp-b3", NULL, 2, 1201, 3);
  cr_assert_eq(rs_harness_counter(b, "agenda_rebuilds"), 2);
  rs_harness_destroy(a);
  rs_harness_destroy(b);
}

/* State written by the previous version: a version-1 impression (slot
 * header without the score) and an 8-byte watermark are still read: the
 * impression joins feedback and closes with its default reward. */
Test(bandit_reward, reads_version_1_state) {
  const char *opts[] = {"policy",        "thompson", "thompson_model",
                        "residual",      "slots",    "2",
                        "reward_window", "100ms",    NULL};
  rs_harness_t *h = make(opts);
  unsigned char v[32 + 2 + 2 * (24 + 2)];
  memset(v, 0, sizeof v);
  v[0] = 1; /* version 1 */
  uint16_t slots = 2;
  uint32_t ulen = 2;
  int64_t ts = 1000;
  double plist = 1, prop = 1;
  memcpy(v + 2, &slots, 2);
  memcpy(v + 4, &ulen, 4);
  memcpy(v + 8, &ts, 8);
  memcpy(v + 16, &plist, 8);
  memcpy(v + 32, "u1", 2);
  size_t off = 34;
  for (int k = 0; k < 2; k++) {
    uint32_t il = 2;
    memcpy(v + off, &il, 4);
    memcpy(v + off + 8, &prop, 8);
    memcpy(v + off + 24, k ? "i1" : "i0", 2);
    off += 26;
  }
  cr_assert_eq(off, sizeof v);
  cr_assert_eq(rs_harness_state_put(h, 0, "mold", 4, v, sizeof v), 0);
  int64_t w = 1000;
  cr_assert_eq(rs_harness_state_put(h, 0, "w", 1, &w, 8), 0);
  push_fb(h, "u1", "old", "i1", RS_FEEDBACK_CLICK, 1, 1010, 1);
  cr_assert_eq(rs_harness_emitted_count(h, 1), 1, "%s", rs_harness_errmsg(h));
  cr_assert_eq(reward_at(h, 0)->position, 1);
  push_list(h, "u2", "new", NULL, 2, 1200, 2); /* closes "old" */
  double shows, rew, n, sum, a, b;
  cr_assert_eq(rs__bandit_arm(rs_harness_ctx(h), "i1", &shows, &rew), 0);
  cr_assert_eq(shows, 1);
  cr_assert_eq(rew, 1);
  /* no score in version 1: no residual */
  cr_assert_eq(rs__bandit_residual(rs_harness_ctx(h), "i1", &n, &sum, &a, &b),
               0);
  cr_assert_eq(n, 0);
  rs_harness_destroy(h);
}

Test(bandit_reward, duplicates_sum_and_bad_input) {
  const char *opts[] = {"duplicates", "sum", "policy", "greedy", NULL};
  rs_harness_t *h = make(opts);
  push_list(h, "u1", "imp-1", NULL, 2, 1000, 1);
  push_fb(h, "u1", "imp-1", "i0", RS_FEEDBACK_CLICK, 1, 1001, 2);
  push_fb(h, "u1", "imp-1", "i0", RS_FEEDBACK_PURCHASE, 2, 1002, 3);
  cr_assert_eq(rs_harness_emitted_count(h, 1), 2);
  cr_assert_eq(reward_at(h, 1)->flags, RS_REWARD_F_SUM);
  cr_assert_eq(reward_at(h, 1)->reward, 2);
  cr_assert_eq(rs_harness_counter(h, "duplicates"), 1);
  /* wrong kinds on either input are dead-lettered */
  rs_record_t bytes = {.kind = RS_KIND_BYTES, .value = "x", .value_len = 1};
  cr_assert_eq(rs_harness_push_input(h, 0, 0, &bytes, 1), 0);
  cr_assert_eq(rs_harness_push_input(h, 1, 0, &bytes, 1), 0);
  cr_assert_eq(rs_harness_dead_count(h), 2);
  cr_assert(strstr(rs_harness_dead(h, 1)->error, "expects feedback"));
  rs_harness_destroy(h);
  const char *bad[] = {"policy", "linucb", NULL}; /* no model `mf` */
  cr_assert_null(rs_harness_new(&rs_op_bandit_reward, bad, err, sizeof err));
  cr_assert(strstr(err, "'mf'"), "%s", err);
  const char *bad2[] = {"policy", "ucb1", NULL};
  cr_assert_null(rs_harness_new(&rs_op_bandit_reward, bad2, err, sizeof err));
}

Test(bandit_reward, huge_rewards_saturate_the_ips_counters) {
  /* The largest reward the codec lets through, 1e15, on a greedy list
   * (w = 1): w * R * 1e6 = 1e21 does not fit a long long, and llround()
   * of it gave LLONG_MIN, a negative counter. It saturates at INT64_MAX;
   * the estimate itself (doubles) is exact. */
  const char *opts[] = {"policy",        "greedy", "slots", "1",
                        "reward_window", "100ms",  NULL};
  rs_harness_t *h = make(opts);
  push_list(h, "u1", "imp-1", NULL, 1, 1000, 1);
  push_fb(h, "u1", "imp-1", "i0", RS_FEEDBACK_PURCHASE, 1e15, 1050, 2);
  push_list(h, "u2", "imp-2", NULL, 1, 2000, 3); /* closes imp-1 */
  cr_assert_eq(rs_harness_counter(h, "ips_impressions"), 1);
  cr_assert_eq(rs_harness_counter(h, "ips_weighted_reward_micro"), INT64_MAX,
               "%lld",
               (long long)rs_harness_counter(h, "ips_weighted_reward_micro"));
  cr_assert_eq(rs_harness_counter(h, "ips_weight_micro"), 1000000);
  double n, ips, snips;
  rs__bandit_estimates(rs_harness_ctx(h), &n, &ips, &snips);
  cr_assert_eq(ips, 1e15);
  /* Beyond the codec's bound (a plugin's feedback): dead-lettered. */
  push_fb(h, "u2", "imp-2", "i0", RS_FEEDBACK_PURCHASE, -1.0000001e15, 2010, 4);
  cr_assert_eq(rs_harness_dead_count(h), 1);
  cr_assert(strstr(rs_harness_dead(h, 0)->error,
                   "feedback value is out of range: |value| must be <= 1e15"),
            "%s", rs_harness_dead(h, 0)->error);
  cr_assert_eq(rs_harness_emitted_count(h, 1), 1); /* imp-1's reward only */
  rs_harness_destroy(h);
}

Test(bandit_reward, reward_window_at_the_largest_timestamps) {
  const char *opts[] = {"policy",        "greedy", "slots", "2",
                        "reward_window", "100ms",  NULL};
  rs_harness_t *h = make(opts);
  const int64_t t = RS_MAX_TIMESTAMP_MS - 1000;
  push_list(h, "u1", "imp-1", NULL, 2, t, 1);
  push_fb(h, "u1", "imp-1", "i1", RS_FEEDBACK_CLICK, 1, t + 10, 2);
  cr_assert_eq(rs_harness_emitted_count(h, 1), 1);
  cr_assert_eq(reward_at(h, 0)->reward, 1);
  cr_assert_eq(reward_at(h, 0)->impression_ms, t);
  push_fb(h, "u1", "imp-1", "i0", RS_FEEDBACK_CLICK, 1, t + 101, 3);
  cr_assert_eq(rs_harness_counter(h, "late_feedback"), 1);
  /* Feedback past the codec's bound (a plugin's) is dead-lettered. */
  push_fb(h, "u1", "imp-1", "i0", RS_FEEDBACK_CLICK, 1, RS_MAX_TIMESTAMP_MS + 1,
          4);
  cr_assert_eq(rs_harness_dead_count(h), 1);
  cr_assert(strstr(rs_harness_dead(h, 0)->error,
                   "feedback timestamp is after 9999-12-31T23:59:59.999Z "
                   "(253402300800000)"),
            "%s", rs_harness_dead(h, 0)->error);
  /* Lists are not bounded (they come from topn_emit or a plugin): one at
   * INT64_MAX - 50 has its window end (+ 100 ms) past INT64_MAX.
   * imp_ms + window wrapped negative, so all feedback for it was late; the
   * window end now saturates. */
  push_list(h, "u2", "imp-2", NULL, 2, INT64_MAX - 50, 5);
  push_fb(h, "u2", "imp-2", "i0", RS_FEEDBACK_CLICK, 1, RS_MAX_TIMESTAMP_MS, 6);
  cr_assert_eq(rs_harness_counter(h, "late_feedback"), 1);
  cr_assert_eq(rs_harness_emitted_count(h, 1), 2);
  cr_assert_str_eq(reward_at(h, 1)->impression_id, "imp-2");
  rs_harness_destroy(h);
}

/* ------------------------------------------- synthetic environments */

static uint64_t env_state;
static double env_uniform(void) {
  br_rng_t r = {env_state};
  uint64_t x = br_rng_next(&r);
  env_state = r.s;
  return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

/* Runs T rounds of a one-slot bandit over K Bernoulli arms (click
 * probability p[j]); returns the expected regret after each checkpoint. */
static void run_env(const char *const *opts, const double *p, uint32_t K, int T,
                    const int *at, double *regret, int n_at,
                    const double *scores, rs_harness_t **keep) {
  rs_harness_t *h = make(opts);
  double best = 0, reg = 0;
  for (uint32_t j = 0; j < K; j++)
    best = p[j] > best ? p[j] : best;
  int next = 0;
  for (int t = 0; t < T; t++) {
    char imp[24];
    snprintf(imp, sizeof imp, "imp-%d", t);
    int64_t ts = 10 * (int64_t)t;
    rs_harness_clear(h);
    push_list(h, "u", imp, scores, K, ts, 2 * t);
    const rs_recommendation_t *r = last_list(h);
    int j = item_no(&r->items[0]);
    reg += best - p[j];
    if (env_uniform() < p[j])
      push_fb(h, "u", imp, names[j], RS_FEEDBACK_CLICK, 1, ts + 1, 2 * t + 1);
    if (next < n_at && t + 1 == at[next])
      regret[next++] = reg;
  }
  if (keep)
    *keep = h;
  else
    rs_harness_destroy(h);
}

Test(bandit_reward, regret_grows_sublinearly_and_beats_random) {
  static const double p[8] = {0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.6};
  const int at[2] = {500, 2000};
  double random_regret = 0;
  for (int j = 0; j < 8; j++)
    random_regret += (0.6 - p[j]) / 8;
  static const char *const *policies[3];
  const char *ts[] = {"policy", "thompson",      "slots", "1", "score_weight",
                      "0",      "reward_window", "5ms",   NULL};
  const char *eg[] = {"policy",
                      "epsilon_greedy",
                      "epsilon",
                      "1",
                      "decay",
                      "0.05",
                      "slots",
                      "1",
                      "score_weight",
                      "0",
                      "reward_window",
                      "5ms",
                      NULL};
  /* Scores all 0: the calibration stays flat (a = mean reward), the
   * residuals learn each arm's click rate. */
  const char *tr[] = {"policy",
                      "thompson",
                      "thompson_model",
                      "residual",
                      "slots",
                      "1",
                      "score_weight",
                      "0",
                      "residual_prior_sd",
                      "0.5",
                      "reward_window",
                      "5ms",
                      NULL};
  policies[0] = ts;
  policies[1] = eg;
  policies[2] = tr;
  for (int k = 0; k < 3; k++) {
    double reg[2];
    env_state = 12345;
    run_env(policies[k], p, 8, at[1], at, reg, 2, NULL, NULL);
    cr_log_info("%s: regret %.1f at %d, %.1f at %d (uniform: %.1f, %.1f)",
                policies[k][1], reg[0], at[0], reg[1], at[1],
                random_regret * at[0], random_regret * at[1]);
    cr_assert(reg[1] < 2.5 * reg[0], "%s: regret %.1f at T, %.1f at 4T",
              policies[k][1], reg[0], reg[1]);
    cr_assert(reg[1] < 0.35 * random_regret * at[1],
              "%s: regret %.1f, uniform random %.1f", policies[k][1], reg[1],
              random_regret * at[1]);
  }
}

Test(bandit_reward, ips_of_greedy_within_its_interval) {
  /* Logging: epsilon_greedy 0.5 over 4 items whose model scores make i0 the
   * greedy choice whatever the rewards (score_weight 100). Target: greedy,
   * always i0, true value p0 = 0.3. IPS has variance p0 / q0 - p0^2 per
   * impression, q0 = 0.5 + 0.5 / 4. */
  static const double p[4] = {0.3, 0.5, 0.2, 0.1};
  static const double scores[4] = {3, 2, 1, 0};
  const char *opts[] = {
      "epsilon", "0.5",           "slots", "1", "score_weight",
      "100",     "reward_window", "5ms",   NULL};
  enum { N = 4000 };
  int at[1] = {N};
  double reg[1];
  rs_harness_t *h;
  env_state = 777;
  run_env(opts, p, 4, N, at, reg, 1, scores, &h);
  double n, ips, snips;
  rs__bandit_estimates(rs_harness_ctx(h), &n, &ips, &snips);
  double q0 = 0.625, sd = sqrt(0.3 / q0 - 0.09) / sqrt(n);
  cr_log_info("IPS %.4f SNIPS %.4f (true 0.3, sd %.4f, n %.0f)", ips, snips, sd,
              n);
  cr_assert_eq(n, N - 1); /* the last impression is still open */
  cr_assert(fabs(ips - 0.3) < 1.96 * sd, "IPS %.4f, true 0.3 +- %.4f", ips,
            1.96 * sd);
  cr_assert(fabs(snips - 0.3) < 1.96 * sd, "SNIPS %.4f", snips);
  /* The counters carry the same sums (micro-units). */
  double c_ips = (double)rs_harness_counter(h, "ips_weighted_reward_micro") /
                 1e6 / (double)rs_harness_counter(h, "ips_impressions");
  cr_assert_float_eq(c_ips, ips, 1e-4);
  rs_harness_destroy(h);
}

/* ------------------------------------------ mf_update learns from it */

Test(bandit_reward, mf_update_learns_from_feedback_and_rewards) {
  const char *opts[] = {"feedback_weight", "2", "objective", "isgd", NULL};
  rs_harness_t *h = rs_harness_new(&rs_op_mf_update, opts, err, sizeof err);
  cr_assert_not_null(h, "%s", err);
  push_fb(h, "u1", "imp", "i1", RS_FEEDBACK_CLICK, 1, 1000, 1);
  cr_assert_eq(rs_harness_counter(h, "learned"), 1);
  cr_assert_eq(rs_harness_emitted_count(h, 0), 0); /* learns, no emission */
  push_fb(h, "u1", "imp", "i1", RS_FEEDBACK_DISMISS, 1, 1001, 2);
  push_fb(h, "u1", "imp", "i2", RS_FEEDBACK_CLICK, 0, 1002, 3);
  cr_assert_eq(rs_harness_counter(h, "learned"), 1);
  rs_reward_t rw = {.user = "u1",
                    .user_len = 2,
                    .impression_id = "imp",
                    .impression_id_len = 3,
                    .item = "i3",
                    .item_len = 2,
                    .type = RS_FEEDBACK_PURCHASE,
                    .reward = 3,
                    .propensity = 1,
                    .timestamp_ms = 1003};
  rs_record_t rec = {.kind = RS_KIND_REWARD,
                     .key = "u1",
                     .key_len = 2,
                     .payload = &rw,
                     .timestamp_ms = 1003};
  cr_assert_eq(rs_harness_push(h, 0, &rec, 1), 0);
  cr_assert_eq(rs_harness_counter(h, "learned"), 2);
  rw.flags = RS_REWARD_F_DEFAULT;
  rw.item = NULL;
  cr_assert_eq(rs_harness_push(h, 0, &rec, 1), 0);
  cr_assert_eq(rs_harness_counter(h, "learned"), 2);
  cr_assert_eq(rs_harness_dead_count(h), 0);
  rs_harness_destroy(h);
}

/* Port `unclicked`: when an impression closes, each slot without feedback
 * goes out as a DISMISS feedback record naming the impression and the item
 * (value default_reward), for mf_update's weight_unclicked; nothing when
 * the port is not wired. */
Test(bandit_reward, unclicked_slots_go_out_when_the_impression_closes) {
  const char *opts[] = {
      "policy", "greedy",         "slots", "3", "reward_window",
      "1s",     "default_reward", "-0.5",  NULL};
  for (int wanted = 1; wanted >= 0; wanted--) {
    rs_harness_t *h = make(opts);
    rs_harness_set_port_wanted(h, 3, wanted);
    const double scores[] = {3, 2, 1};
    push_list(h, "u1", "imp-1", scores, 3, 1000, 1);
    push_fb(h, "u1", "imp-1", "i1", RS_FEEDBACK_CLICK, 1, 1100, 2);
    cr_assert_eq(rs_harness_emitted_count(h, 3), 0, "open: nothing yet");
    push_list(h, "u1", "imp-2", scores, 3, 2500, 3); /* closes imp-1 */
    if (!wanted) {
      cr_assert_eq(rs_harness_emitted_count(h, 3), 0);
      cr_assert_eq(rs_harness_counter(h, "unclicked_slots"), 0);
      rs_harness_destroy(h);
      continue;
    }
    cr_assert_eq(rs_harness_emitted_count(h, 3), 2);
    cr_assert_eq(rs_harness_counter(h, "unclicked_slots"), 2);
    const char *want[] = {"i0", "i2"}; /* greedy shows i0 i1 i2 */
    for (size_t k = 0; k < 2; k++) {
      const rs_record_t *r = rs_harness_emitted(h, 3, k);
      cr_assert_eq(r->kind, RS_KIND_FEEDBACK);
      const rs_feedback_t *f = r->payload;
      cr_assert_eq(f->type, RS_FEEDBACK_DISMISS);
      cr_assert_float_eq(f->value, -0.5, 0);
      cr_assert_eq(f->user_len, 2);
      cr_assert(!memcmp(f->user, "u1", 2));
      cr_assert_eq(f->impression_id_len, 5);
      cr_assert(!memcmp(f->impression_id, "imp-1", 5));
      cr_assert_eq(f->item_len, 2);
      cr_assert(!memcmp(f->item, want[k], 2), "slot %zu: %.*s", k,
                (int)f->item_len, f->item);
      cr_assert_eq(r->key_len, 2);
      cr_assert_eq(r->timestamp_ms, 2500, "the close's time");
    }
    /* A list with no click: every slot. */
    push_list(h, "u1", "imp-3", scores, 3, 4000, 4); /* closes imp-2 */
    cr_assert_eq(rs_harness_emitted_count(h, 3), 5);
    rs_harness_destroy(h);
  }
}

/* unclicked: with_feedback: only lists in which some slot got feedback. */
Test(bandit_reward, unclicked_with_feedback_skips_lists_without_any) {
  const char *opts[] = {"policy",    "greedy",        "slots",
                        "3",         "reward_window", "1s",
                        "unclicked", "with_feedback", NULL};
  rs_harness_t *h = make(opts);
  const double scores[] = {3, 2, 1};
  push_list(h, "u1", "imp-1", scores, 3, 1000, 1);
  push_list(h, "u1", "imp-2", scores, 3, 1500, 2);
  push_fb(h, "u1", "imp-2", "i2", RS_FEEDBACK_CLICK, 1, 1600, 3);
  push_list(h, "u1", "imp-3", scores, 3, 2600, 4); /* closes both */
  cr_assert_eq(rs_harness_emitted_count(h, 3), 2);
  for (size_t k = 0; k < 2; k++) {
    const rs_feedback_t *f = rs_harness_emitted(h, 3, k)->payload;
    cr_assert(!memcmp(f->impression_id, "imp-2", 5), "only imp-2's slots");
    cr_assert(memcmp(f->item, "i2", 2), "not the clicked one");
  }
  rs_harness_destroy(h);
  const char *bad[] = {"unclicked", "some", NULL};
  cr_assert_null(rs_harness_new(&rs_op_bandit_reward, bad, err, sizeof err));
  cr_assert(strstr(err, "unclicked"), "%s", err);
}

Test(bandit_reward, option_table_is_documented) {
  cr_assert_str_eq(rs_op_bandit_reward.name, "bandit_reward");
  for (size_t i = 0; i < rs_op_bandit_reward.n_options; i++) {
    const rs_option_def_t *o = &rs_op_bandit_reward.options[i];
    cr_assert(o->description && strlen(o->description) > 20,
              "option %s lacks a description", o->name);
    cr_assert_not_null(o->default_value, "option %s", o->name);
  }
}

/* A corrupt impression or user index stops the operator with RS_ESTATE and
 * a logged message, never a crash. */
Test(bandit_reward, corrupt_state_is_an_error) {
  const char *opts[] = {"policy", "greedy", NULL};
  rs_harness_t *h = make(opts);
  push_list(h, "u1", "imp-1", NULL, 2, 1000, 1);
  cr_assert_eq(rs_harness_state_put(h, 0, "mimp-1", 6, "\x01junk", 5), 0);
  rs_feedback_t f = {.user = "u1",
                     .user_len = 2,
                     .impression_id = "imp-1",
                     .impression_id_len = 5,
                     .item = "i0",
                     .item_len = 2,
                     .value = 1,
                     .timestamp_ms = 1001};
  rs_record_t rec = {.kind = RS_KIND_FEEDBACK,
                     .key = "u1",
                     .key_len = 2,
                     .payload = &f,
                     .timestamp_ms = 1001};
  cr_assert_eq(rs_harness_push_input(h, 1, 0, &rec, 1), RS_ESTATE);
  /* user index with an id length past its end */
  cr_assert_eq(rs_harness_state_put(h, 0, "uu1", 3,
                                    "\x01\xff\x7f"
                                    "ab",
                                    5),
               0);
  f.impression_id = NULL;
  f.impression_id_len = 0;
  cr_assert_eq(rs_harness_push_input(h, 1, 0, &rec, 1), RS_ESTATE);
  int level, found = 0;
  for (size_t i = 0; i < rs_harness_log_count(h); i++)
    found |= strstr(rs_harness_log_line(h, i, &level), "corrupt") != NULL;
  cr_assert(found);
  rs_harness_destroy(h);
}

/* ----------------------------------------------------------- linucb */

Test(bandit_policy, linucb_hand_worked) {
  /* d = 2, A = I: learning r = 1 at x = (1, 0) gives A^-1 = diag(1/2, 1),
   * b = (1, 0), theta = (1/2, 0): at (1, 0) mean 1/2 and width sqrt(1/2);
   * at (0, 1) mean 0 and width 1. */
  double mem[6], scratch[2], m, w;
  br_lin_t l = {.d = 2, .ainv = mem, .b = mem + 4};
  br_lin_reset(&l);
  const float e0[2] = {1, 0}, e1[2] = {0, 1};
  br_lin_update(&l, e0, 1.0, scratch);
  cr_assert_float_eq(mem[0], 0.5, 1e-12);
  cr_assert_float_eq(mem[3], 1.0, 1e-12);
  cr_assert_float_eq(mem[1], 0.0, 1e-12);
  br_lin_score(&l, e0, &m, &w, scratch);
  cr_assert_float_eq(m, 0.5, 1e-12);
  cr_assert_float_eq(w, sqrt(0.5), 1e-12);
  br_lin_score(&l, e1, &m, &w, scratch);
  cr_assert_float_eq(m, 0.0, 1e-12);
  cr_assert_float_eq(w, 1.0, 1e-12);
  /* A second update at (1, 1) with r = 0: A = [[3, 1], [1, 2]] after both
   * (I + e0 e0^T + x x^T), inverse 1/5 [[2, -1], [-1, 3]]. */
  const float x[2] = {1, 1};
  br_lin_update(&l, x, 0.0, scratch);
  cr_assert_float_eq(mem[0], 0.4, 1e-12);
  cr_assert_float_eq(mem[1], -0.2, 1e-12);
  cr_assert_float_eq(mem[3], 0.6, 1e-12);
}

static void push_ia(rs_harness_t *mf, const char *user, const char *item,
                    int64_t ts) {
  rs_interaction_t ia = {.user = user,
                         .user_len = (uint32_t)strlen(user),
                         .item = item,
                         .item_len = (uint32_t)strlen(item),
                         .event_type = RS_EVENT_CLICK,
                         .timestamp_ms = ts};
  rs_record_t rec = {.kind = RS_KIND_INTERACTION,
                     .key = user,
                     .key_len = strlen(user),
                     .payload = &ia,
                     .timestamp_ms = ts};
  cr_assert_eq(rs_harness_push(mf, 0, &rec, 1), 0);
}

/* linucb through the harness, reading mf_update's factors: lists with
 * propensity 1, the model ("L": d = k + 1) learns at the close. */
Test(bandit_reward, linucb_reads_the_model_and_learns) {
  const char *mopts[] = {"objective", "isgd", "k", "4", NULL};
  rs_harness_t *mf = rs_harness_new(&rs_op_mf_update, mopts, err, sizeof err);
  cr_assert_not_null(mf, "%s", err);
  for (int t = 0; t < 20; t++)
    push_ia(mf, t % 2 ? "u1" : "u2", names[t % 4], t);
  const char *opts[] = {
      "policy",        "linucb", "model",        "mf", "slots", "2",
      "reward_window", "10ms",   "score_weight", "0",  NULL};
  rs_harness_t *h = rs_harness_new_with_peer(&rs_op_bandit_reward, opts, "mf",
                                             mf, err, sizeof err);
  cr_assert_not_null(h, "%s", err);
  push_list(h, "u1", "imp-1", NULL, 4, 1000, 1);
  const rs_recommendation_t *r = last_list(h);
  cr_assert_eq(r->n_items, 2);
  cr_assert_eq(r->items[0].propensity, 1.0);
  push_fb(h, "u1", "imp-1", r->items[0].item, RS_FEEDBACK_CLICK, 1, 1005, 2);
  const void *v;
  size_t n;
  cr_assert_eq(rs_harness_state_get(h, RS_PARTITION_SHARED, "L", 1, &v, &n),
               RS_ENOENT);
  push_list(h, "u1", "imp-2", NULL, 4, 1020, 3); /* closes imp-1 */
  cr_assert_eq(rs_harness_state_get(h, RS_PARTITION_SHARED, "L", 1, &v, &n), 0);
  cr_assert_eq(n, 4 + 8 * (25 + 5));
  double b0;
  memcpy(&b0, (const char *)v + 4 + 8 * 25, 8);
  cr_assert_float_eq(b0, 1.0, 1e-12); /* b[0] = sum r * x[0], x[0] = 1 */
  /* Restart: the model comes back from state. */
  cr_assert_eq(rs_harness_checkpoint(h), 0);
  cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
  push_list(h, "u1", "imp-3", NULL, 4, 1040, 4); /* closes imp-2 */
  cr_assert_eq(rs_harness_state_get(h, RS_PARTITION_SHARED, "L", 1, &v, &n), 0);
  memcpy(&b0, (const char *)v + 4 + 8 * 25, 8);
  cr_assert_float_eq(b0, 1.0, 1e-12); /* imp-2 had no reward */
  rs_harness_destroy(h);
  rs_harness_destroy(mf);
}

/* LinUCB in a synthetic linear environment: each round 6 arms with random
 * features x in [0, 1]^3 and click probability theta*^T x; regret after 4T
 * rounds grows sublinearly and beats uniform random. */
Test(bandit_policy, linucb_regret_in_a_linear_environment) {
  const double theta[3] = {0.1, 0.2, 0.6};
  double mem[12], scratch[3];
  br_lin_t l = {.d = 3, .ainv = mem, .b = mem + 9};
  br_lin_reset(&l);
  env_state = 4242;
  double reg = 0, rnd = 0, at_t = 0;
  const int T = 500;
  for (int t = 0; t < 4 * T; t++) {
    float x[6][3];
    double best = 0, mean_all = 0, pick_p = 0, top = -1e9;
    for (int a = 0; a < 6; a++) {
      double p = 0;
      for (int i = 0; i < 3; i++) {
        x[a][i] = (float)env_uniform();
        p += theta[i] * x[a][i];
      }
      double m, w;
      br_lin_score(&l, x[a], &m, &w, scratch);
      if (m + 0.5 * w > top) {
        top = m + 0.5 * w;
        pick_p = p;
      }
      best = p > best ? p : best;
      mean_all += p / 6;
    }
    int pick = -1;
    for (int a = 0; a < 6 && pick < 0; a++) {
      double m, w;
      br_lin_score(&l, x[a], &m, &w, scratch);
      if (m + 0.5 * w == top)
        pick = a;
    }
    double r = env_uniform() < pick_p ? 1 : 0;
    br_lin_update(&l, x[pick], r, scratch);
    reg += best - pick_p;
    rnd += best - mean_all;
    if (t + 1 == T)
      at_t = reg;
  }
  cr_log_info("linucb: regret %.1f at %d, %.1f at %d (uniform %.1f)", at_t, T,
              reg, 4 * T, rnd);
  cr_assert(reg < 3.0 * at_t, "regret %.1f at T, %.1f at 4T", at_t, reg);
  cr_assert(reg < 0.5 * rnd, "regret %.1f, uniform random %.1f", reg, rnd);
}

/* ------------------------------------- the demo chain's outputs, pinned */

/* configs/demo_loop.yaml's mf_update -> topn_emit -> bandit_reward chain
 * in harnesses (two variants, as its experiment splits users), driven by
 * a deterministic stream of views, clicks and feedback (some without an
 * impression id, some duplicated), with windows short enough that
 * impressions close. Every record topn_emit and bandit_reward emit (all
 * four ports) and their counters go into one FNV-1a digest, pinned: a
 * change meant to make either operator cheaper must leave it unchanged.
 * mf_update learns next to nothing here (learning_rate 1e-9: its vectors
 * stay near the deterministic initial ones), so the pin is about topn_emit
 * and bandit_reward rather than about how mf_update learns.
 *
 * With RS_CHAIN=1 in the environment, `chain/measure` runs a larger world
 * (RS_CHAIN_USERS, _ITEMS, _ACTIONS, _STEP_MS, _WINDOW, _LR) and prints
 * each operator's process() time per record (this thread's CPU time, the
 * clock's own cost taken off; compare runs made together): the A/B
 * figures of operators/topn_emit/NOTES.md and docs/DEMO.md ("Latency"). */

extern const rs_operator_def_t rs_op_topn_emit;

typedef struct chain_world {
  uint32_t users, items;
  long actions;
  int64_t step_ms;
  const char *window; /* bandit_reward's reward_window */
  const char *lr;     /* mf_update's learning_rate */
  int user_arms;      /* the model variant's bandit as configs/demo_loop.yaml's
                         since session 9: per-user arms from lists with feedback */
} chain_world_t;

typedef struct chain_var {
  rs_harness_t *mf, *tn, *br;
  int64_t off;
  uint64_t ns[3], n[3]; /* process() time and records per operator */
} chain_var_t;

typedef struct chain {
  chain_var_t v[2];
  uint64_t h; /* FNV-1a */
  struct {
    char imp[64];
    char items[10][16];
    uint32_t n;
  } * pend;
} chain_t;

static void fnv(chain_t *c, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    c->h = (c->h ^ b[i]) * 0x100000001b3ULL;
}
static void fnv_s(chain_t *c, const char *s, uint32_t n) {
  fnv(c, &n, 4);
  if (s && n)
    fnv(c, s, n);
}

static void digest_rec(chain_t *c, uint32_t port, const rs_record_t *r) {
  fnv(c, &port, 4);
  fnv(c, &r->kind, sizeof r->kind);
  fnv_s(c, r->key, (uint32_t)r->key_len);
  fnv(c, &r->timestamp_ms, 8);
  if (r->kind == RS_KIND_RECOMMENDATION) {
    const rs_recommendation_t *x = r->payload;
    fnv_s(c, x->user, x->user_len);
    fnv_s(c, x->impression_id, x->impression_id_len);
    fnv_s(c, x->variant, x->variant_len);
    fnv(c, &x->n_items, 4);
    fnv(c, &x->flags, 4);
    fnv(c, &x->model_version, 8);
    fnv(c, &x->timestamp_ms, 8);
    for (uint32_t i = 0; i < x->n_items; i++) {
      fnv_s(c, x->items[i].item, x->items[i].item_len);
      fnv(c, &x->items[i].score, 8);
      fnv(c, &x->items[i].propensity, 8);
    }
  } else if (r->kind == RS_KIND_REWARD) {
    const rs_reward_t *x = r->payload;
    fnv_s(c, x->user, x->user_len);
    fnv_s(c, x->impression_id, x->impression_id_len);
    fnv_s(c, x->item, x->item_len);
    fnv(c, &x->position, 4);
    fnv(c, &x->flags, 4);
    fnv(c, &x->type, 4);
    fnv(c, &x->reward, 8);
    fnv(c, &x->propensity, 8);
    fnv(c, &x->impression_ms, 8);
    fnv(c, &x->timestamp_ms, 8);
  } else if (r->kind == RS_KIND_FEEDBACK) {
    const rs_feedback_t *x = r->payload;
    fnv_s(c, x->user, x->user_len);
    fnv_s(c, x->impression_id, x->impression_id_len);
    fnv_s(c, x->item, x->item_len);
    fnv(c, &x->type, 4);
    fnv(c, &x->value, 8);
    fnv(c, &x->timestamp_ms, 8);
  }
}

static void digest_out(chain_t *c, rs_harness_t *h, uint32_t ports) {
  for (uint32_t p = 0; p < ports; p++)
    for (size_t i = 0; i < rs_harness_emitted_count(h, p); i++)
      digest_rec(c, p, rs_harness_emitted(h, p, i));
}

/* This thread's CPU time: other processes on a shared machine do not count
 * in it. It is a system call (about 1 us here): clock_cost() measures a
 * pair of them, which run_chain subtracts per record. */
static uint64_t thread_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static double clock_cost(void) {
  uint64_t sum = 0;
  for (int i = 0; i < 20000; i++) {
    uint64_t t0 = thread_ns();
    sum += thread_ns() - t0;
  }
  return (double)sum / 20000;
}

static void chain_push(chain_var_t *v, int op, rs_harness_t *h, uint32_t input,
                       const rs_record_t *r) {
  uint64_t t0 = thread_ns();
  int rc = rs_harness_push_input(h, input, 0, r, 1);
  v->ns[op] += thread_ns() - t0;
  v->n[op]++;
  if (rc)
    cr_assert_fail("op %d: %s", op, rs_harness_errmsg(h));
}

static void chain_interact(chain_t *c, int vi, uint32_t user, uint32_t item,
                           int type, int64_t ts) {
  chain_var_t *v = &c->v[vi];
  char uid[16], iid[16];
  snprintf(uid, sizeof uid, "u%u", user);
  snprintf(iid, sizeof iid, "i%u", item);
  rs_interaction_t ia = {.user = uid,
                         .user_len = (uint32_t)strlen(uid),
                         .item = iid,
                         .item_len = (uint32_t)strlen(iid),
                         .event_type = type,
                         .timestamp_ms = ts};
  rs_record_t rec = {.kind = RS_KIND_INTERACTION,
                     .key = uid,
                     .key_len = strlen(uid),
                     .value = "raw",
                     .value_len = 3,
                     .payload = &ia,
                     .timestamp_ms = ts,
                     .src_offset = v->off++};
  rs_harness_clear(v->mf);
  rs_harness_clear(v->tn);
  rs_harness_clear(v->br);
  chain_push(v, 0, v->mf, 0, &rec);
  for (size_t i = 0; i < rs_harness_emitted_count(v->mf, 0); i++)
    chain_push(v, 1, v->tn, 0, rs_harness_emitted(v->mf, 0, i));
  digest_out(c, v->tn, 1);
  for (size_t i = 0; i < rs_harness_emitted_count(v->tn, 0); i++)
    chain_push(v, 2, v->br, 0, rs_harness_emitted(v->tn, 0, i));
  digest_out(c, v->br, 4);
  size_t n = rs_harness_emitted_count(v->br, 0);
  if (!n)
    return;
  const rs_recommendation_t *r = rs_harness_emitted(v->br, 0, n - 1)->payload;
  cr_assert(r->n_items <= 10 && r->impression_id_len < 64);
  snprintf(c->pend[user].imp, 64, "%.*s", (int)r->impression_id_len,
           r->impression_id);
  for (uint32_t k = 0; k < r->n_items; k++)
    snprintf(c->pend[user].items[k], 16, "%.*s", (int)r->items[k].item_len,
             r->items[k].item);
  c->pend[user].n = r->n_items;
}

static void chain_feedback(chain_t *c, int vi, uint32_t user, const char *imp,
                           const char *item, int64_t ts) {
  chain_var_t *v = &c->v[vi];
  char uid[16];
  snprintf(uid, sizeof uid, "u%u", user);
  rs_feedback_t f = {.user = uid,
                     .user_len = (uint32_t)strlen(uid),
                     .impression_id = imp,
                     .impression_id_len = (uint32_t)strlen(imp),
                     .item = item,
                     .item_len = (uint32_t)strlen(item),
                     .type = RS_FEEDBACK_CLICK,
                     .value = 1,
                     .timestamp_ms = ts};
  rs_record_t rec = {.kind = RS_KIND_FEEDBACK,
                     .key = uid,
                     .key_len = strlen(uid),
                     .payload = &f,
                     .timestamp_ms = ts,
                     .src_offset = v->off++};
  rs_harness_clear(v->br);
  chain_push(v, 2, v->br, 1, &rec);
  digest_out(c, v->br, 4);
}

static uint64_t chain_rand(uint64_t *s) {
  *s += 0x9e3779b97f4a7c15ULL;
  uint64_t z = *s;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Runs the world; returns the digest, *per_rec the us of process() per
 * record of mf_update, topn_emit and bandit_reward (both variants). */
static uint64_t run_chain(const chain_world_t *w, double per_rec[3]) {
  chain_t *c = calloc(1, sizeof *c);
  cr_assert_not_null(c);
  c->pend = calloc(w->users, sizeof *c->pend);
  cr_assert_not_null(c->pend);
  c->h = 0xcbf29ce484222325ULL;
  for (int vi = 0; vi < 2; vi++) {
    const char *mf_opts[] = {"k",
                             "16",
                             "learning_rate",
                             w->lr,
                             "adaptive",
                             "adagrad",
                             "negatives",
                             "16",
                             "negative_exponent",
                             "0.5",
                             "bias_learning_rate",
                             "0",
                             "weight_click",
                             "1",
                             "popularity_half_life",
                             "5m",
                             "min_user_events",
                             vi ? "1000000" : "3",
                             NULL};
    const char *tn_opts[] = {
        "n", "20", "min_interval", "0s", "model", "mf", "history", "0", NULL};
    int ua = w->user_arms && !vi;
    const char *br_opts[] = {"policy",
                             vi ? "greedy" : "thompson",
                             "slots",
                             "10",
                             "reward_window",
                             w->window,
                             "arms",
                             ua ? "user" : "item",
                             "arm_impressions",
                             ua ? "with_feedback" : "all",
                             "score_weight",
                             ua ? "0.2" : "1",
                             "prior_alpha",
                             ua ? "0.2" : "1",
                             "prior_beta",
                             "1",
                             NULL};
    chain_var_t *v = &c->v[vi];
    v->mf = rs_harness_new(&rs_op_mf_update, mf_opts, err, sizeof err);
    cr_assert_not_null(v->mf, "mf_update: %s", err);
    v->tn = rs_harness_new_with_peer(&rs_op_topn_emit, tn_opts, "mf", v->mf,
                                     err, sizeof err);
    cr_assert_not_null(v->tn, "topn_emit: %s", err);
    v->br = rs_harness_new(&rs_op_bandit_reward, br_opts, err, sizeof err);
    cr_assert_not_null(v->br, "bandit_reward: %s", err);
    cr_assert_eq(rs_harness_set_cache_bytes(v->mf, (size_t)64 << 20), 0);
    cr_assert_eq(rs_harness_set_cache_bytes(v->tn, (size_t)64 << 20), 0);
    cr_assert_eq(rs_harness_set_cache_bytes(v->br, (size_t)256 << 20), 0);
  }
  uint64_t rng = 12345;
  for (long a = 0; a < w->actions; a++) {
    int64_t ts = 1767225600000LL + a * w->step_ms;
    uint32_t user = (uint32_t)(chain_rand(&rng) % w->users);
    int vi = (int)(user & 1);
    /* Items arrive over the run: a third at the start. */
    uint32_t known =
        w->items / 3 + (uint32_t)((uint64_t)(w->items * 2 / 3) * (uint64_t)a /
                                  (uint64_t)w->actions);
    uint64_t r = chain_rand(&rng);
    if (c->pend[user].n && r % 100 < 30) {
      uint32_t k = (uint32_t)(r >> 32) % c->pend[user].n;
      const char *imp = (r >> 8) % 8 == 0 ? "" : c->pend[user].imp;
      char item[16];
      memcpy(item, c->pend[user].items[k], 16);
      chain_feedback(c, vi, user, imp, item, ts);
      if ((r >> 16) % 16 == 0) /* a duplicate */
        chain_feedback(c, vi, user, imp, item, ts + 1);
      c->pend[user].n = 0;
      uint32_t it = (uint32_t)atoi(item + 1);
      chain_interact(c, vi, user, it, RS_EVENT_CLICK, ts);
    } else {
      double u = (double)(chain_rand(&rng) >> 11) / 9007199254740992.0;
      chain_interact(c, vi, user, (uint32_t)(u * u * known), RS_EVENT_VIEW, ts);
    }
  }
  static const char *const counters[] = {"emissions",
                                         "impressions",
                                         "popular_emissions",
                                         "candidates",
                                         "exact_scanned",
                                         "rewards",
                                         "clicks",
                                         "default_rewards",
                                         "unclicked_slots",
                                         "duplicates",
                                         "late_feedback",
                                         "unmatched_feedback",
                                         "early_feedback",
                                         "explored",
                                         "ips_impressions",
                                         "ips_weighted_reward_micro",
                                         "ips_weight_micro",
                                         NULL};
  for (int vi = 0; vi < 2; vi++) {
    for (int i = 0; counters[i]; i++) {
      int64_t x = rs_harness_counter(c->v[vi].tn, counters[i]);
      int64_t y = rs_harness_counter(c->v[vi].br, counters[i]);
      fnv(c, &x, 8);
      fnv(c, &y, 8);
      if (getenv("RS_CHAIN_COUNTERS"))
        printf("variant %d %s: topn %lld bandit %lld\n", vi, counters[i],
               (long long)x, (long long)y);
    }
  }
  if (getenv("RS_CHAIN_COUNTERS")) /* not in the digest */
    for (int vi = 0; vi < 2; vi++)
      printf("variant %d user_arms_evicted: %lld\n", vi,
             (long long)rs_harness_counter(c->v[vi].br, "user_arms_evicted"));
  double cc = clock_cost();
  for (int op = 0; op < 3; op++) {
    uint64_t ns = c->v[0].ns[op] + c->v[1].ns[op];
    uint64_t n = c->v[0].n[op] + c->v[1].n[op];
    per_rec[op] = n ? ((double)ns / (double)n - cc) / 1e3 : 0;
  }
  for (int vi = 0; vi < 2; vi++) {
    rs_harness_destroy(c->v[vi].br);
    rs_harness_destroy(c->v[vi].tn);
    rs_harness_destroy(c->v[vi].mf);
  }
  uint64_t h = c->h;
  free(c->pend);
  free(c);
  return h;
}

Test(chain, demo_outputs_are_pinned, .timeout = 300) {
  chain_world_t w = {.users = 200,
                     .items = 400,
                     .actions = 6000,
                     .step_ms = 5,
                     .window = "2s",
                     .lr = "1e-9"};
  double us[3];
  uint64_t h = run_chain(&w, us);
  cr_log_info("digest %016llx; us per record: mf %.1f topn %.1f bandit %.1f",
              (unsigned long long)h, us[0], us[1], us[2]);
  cr_assert_eq(h, UINT64_C(0xb18f5ea07b4b026e), "digest %016llx",
               (unsigned long long)h);
}

/* The same with the model variant's bandit as configs/demo_loop.yaml's
 * since session 9 (arms user, arm_impressions with_feedback, score_weight
 * 0.2, prior 0.2 / 1): pins the per-user arms' path (a change of this
 * digest alone means that path's outputs changed). */
Test(chain, demo_outputs_with_user_arms_are_pinned, .timeout = 300) {
  chain_world_t w = {.users = 200,
                     .items = 400,
                     .actions = 6000,
                     .step_ms = 5,
                     .window = "2s",
                     .lr = "1e-9",
                     .user_arms = 1};
  double us[3];
  uint64_t h = run_chain(&w, us);
  cr_log_info("digest %016llx; us per record: mf %.1f topn %.1f bandit %.1f",
              (unsigned long long)h, us[0], us[1], us[2]);
  cr_assert_eq(h, UINT64_C(0xa57425449da5ea88), "digest %016llx",
               (unsigned long long)h);
}

static double chain_env(const char *k, double dflt) {
  const char *v = getenv(k);
  return v && *v ? atof(v) : dflt;
}

/* RS_CHAIN=1 ./build/tests/operators_test_bandit_reward --filter
 * 'chain/measure' (defaults: 1,000 users and items as bench_loop's
 * simulator, 60,000 actions 1 ms apart, reward_window 20s, mf_update
 * learning as the demo's). */
Test(chain, measure, .timeout = 600) {
  if (!getenv("RS_CHAIN"))
    return; /* a no-op in the suite (cr_skip_test leaks under ASan) */
  const char *win = getenv("RS_CHAIN_WINDOW");
  const char *lr = getenv("RS_CHAIN_LR");
  chain_world_t w = {.users = (uint32_t)chain_env("RS_CHAIN_USERS", 1000),
                     .items = (uint32_t)chain_env("RS_CHAIN_ITEMS", 1000),
                     .actions = (long)chain_env("RS_CHAIN_ACTIONS", 60000),
                     .step_ms = (int64_t)chain_env("RS_CHAIN_STEP_MS", 1),
                     .window = win ? win : "20s",
                     .lr = lr ? lr : "0.3",
                     .user_arms = (int)chain_env("RS_CHAIN_USER_ARMS", 0)};
  double us[3];
  uint64_t h = run_chain(&w, us);
  printf("chain: %u users %u items %ld actions, digest %016llx\n"
         "  process() per record: mf_update %.2f us, topn_emit %.2f us, "
         "bandit_reward %.2f us\n",
         w.users, w.items, w.actions, (unsigned long long)h, us[0], us[1],
         us[2]);
}

/* arms user: the statistics are the user's own. u1 and u2 are shown the
 * same three items; u1 clicks i1, u2 nothing. After both close, (u1, i1)
 * is 1 show 1 reward, (u1, i0) and (u2, i1) 1 show 0 reward, and the
 * items' shared arms were not kept. Then greedy with score_weight 0 ranks
 * by the posterior mean (prior 1, 1): for u1, i1 at (1 + 1) / (1 + 2) =
 * 0.67 above i0 and i2 at 1 / 3; for u2 (i1 at 1/3 too) the tie keeps the
 * candidates' order, i0 first. With arms item both users would see i1
 * first (one show, one reward over everyone). */
Test(bandit_reward, arms_per_user) {
  const char *opts[] = {"policy",        "greedy", "slots", "3",
                        "reward_window", "100ms",  "arms",  "user",
                        "score_weight",  "0",      NULL};
  rs_harness_t *h = make(opts);
  void *ctx = rs_harness_ctx(h);
  push_list(h, "u1", "imp-1", NULL, 3, 1000, 1);
  push_list(h, "u2", "imp-2", NULL, 3, 1000, 2);
  push_fb(h, "u1", "imp-1", "i1", RS_FEEDBACK_CLICK, 1, 1050, 3);
  push_list(h, "u1", "imp-3", NULL, 3, 1200, 4); /* closes imp-1, imp-2 */
  double shows, rew;
  cr_assert_eq(rs__bandit_user_arm(ctx, 0, "u1", "i1", &shows, &rew), 0);
  cr_assert_eq(shows, 1);
  cr_assert_eq(rew, 1);
  cr_assert_eq(rs__bandit_user_arm(ctx, 0, "u1", "i0", &shows, &rew), 0);
  cr_assert_eq(shows, 1);
  cr_assert_eq(rew, 0);
  cr_assert_eq(rs__bandit_user_arm(ctx, 0, "u2", "i1", &shows, &rew), 0);
  cr_assert_eq(shows, 1);
  cr_assert_eq(rew, 0);
  cr_assert_eq(rs__bandit_arm(ctx, "i1", &shows, &rew), 0);
  cr_assert_eq(shows, 0, "the shared arm is not kept with arms user");
  /* imp-3 was ranked before its record's watermark closed the others */
  push_list(h, "u1", "imp-4", NULL, 3, 1210, 5);
  const rs_recommendation_t *r = last_list(h);
  cr_assert_eq(r->items[0].item_len, 2);
  cr_assert(!memcmp(r->items[0].item, "i1", 2), "u1 sees its click first");
  push_list(h, "u2", "imp-5", NULL, 3, 1220, 6);
  r = last_list(h);
  cr_assert(!memcmp(r->items[0].item, "i0", 2), "u2 keeps the order");
  rs_harness_destroy(h);
  const char *bad[] = {"arms", "both", NULL};
  cr_assert_null(rs_harness_new(&rs_op_bandit_reward, bad, err, sizeof err));
  cr_assert(strstr(err, "arms"), "%s", err);
}

/* arm_impressions with_feedback: of two closed lists of the same three
 * items, only the one with a click counts: i0 has 1 show (not 2) and i1 1
 * show 1 reward; with `all` (the default) i0 has 2 shows. The lists'
 * other outputs are the same either way (unclicked: all, the default,
 * sends the 3 + 2 unclicked slots of both). */
Test(bandit_reward, arm_impressions_with_feedback) {
  for (int wf = 0; wf < 2; wf++) {
    const char *opts[] = {"policy",
                          "greedy",
                          "slots",
                          "3",
                          "reward_window",
                          "100ms",
                          "arm_impressions",
                          wf ? "with_feedback" : "all",
                          NULL};
    rs_harness_t *h = make(opts);
    void *ctx = rs_harness_ctx(h);
    push_list(h, "u1", "imp-1", NULL, 3, 1000, 1);
    push_list(h, "u1", "imp-2", NULL, 3, 1010, 2);
    push_fb(h, "u1", "imp-2", "i1", RS_FEEDBACK_CLICK, 1, 1050, 3);
    push_list(h, "u1", "imp-3", NULL, 3, 1200, 4); /* closes imp-1, imp-2 */
    double shows, rew;
    cr_assert_eq(rs__bandit_arm(ctx, "i0", &shows, &rew), 0);
    cr_assert_eq(shows, wf ? 1 : 2, "with_feedback %d: %g shows", wf, shows);
    cr_assert_eq(rew, 0);
    cr_assert_eq(rs__bandit_arm(ctx, "i1", &shows, &rew), 0);
    cr_assert_eq(shows, wf ? 1 : 2);
    cr_assert_eq(rew, 1);
    cr_assert_eq(rs_harness_emitted_count(h, 3), 5, "unclicked slots (all)");
    rs_harness_destroy(h);
  }
  const char *bad[] = {"arm_impressions", "some", NULL};
  cr_assert_null(rs_harness_new(&rs_op_bandit_reward, bad, err, sizeof err));
  cr_assert(strstr(err, "arm_impressions"), "%s", err);
}

/* ------------------------------------------- per-user arms, bounded */

/* A list of the named items (score 0) for user as impression imp. */
static void push_named(rs_harness_t *h, const char *user, const char *imp,
                       const char *const *items, uint32_t n, int64_t ts,
                       int64_t offset) {
  push_items(h, user, imp, items, NULL, n, ts, offset);
}

/* Asserts u1's arm of item (0, 0: none, the prior). */
static void u1_arm(rs_harness_t *h, const char *item, double shows,
                   double reward) {
  double s, r;
  cr_assert_eq(rs__bandit_user_arm(rs_harness_ctx(h), 0, "u1", item, &s, &r), 0,
               "%s", rs_harness_errmsg(h));
  cr_assert(s == shows && r == reward, "u1 %s: %g shows %g reward, want %g %g",
            item, s, r, shows, reward);
}

/* user_arms_max 3, hand-worked. u1 is shown (each list closes at the next
 * u2 list, 200 ms later; reward_window 100ms; greedy on posterior means):
 *   t 1000 {i2, i1}, click i1  -> i1 (last 1000) 1/1, i2 (1000) 1/0
 *   t 1010 {i3}, click i3      -> + i3 (1010) 1/1: full
 *   t 1300 {i4, i2}            -> i4 (first: prior 0.5 > i2's 1/3) evicts
 *                                 the least recently shown: i1 and i2 both
 *                                 1000, the smaller item bytes go (i1);
 *                                 then i2 is shown again: 2/0 (1300)
 *   -- checkpoint + restart: the record is state --
 *   t 1600 {i5}                -> evicts i3 (1010; i2 was refreshed)
 *   t 1900 {i1}                -> evicts i2 (1300, tie with i4: smaller),
 *                                 and i1 comes back fresh: 1/0, not 1/1.
 * Evictions 3; an evicted arm reads as the prior (0 shows). */
Test(bandit_reward, user_arms_bound_evicts_least_recently_shown) {
  const char *opts[] = {
      "policy", "greedy", "slots",        "2", "reward_window", "100ms",
      "arms",   "user",   "score_weight", "0", "user_arms_max", "3",
      NULL};
  rs_harness_t *h = make(opts);
  const char *l1[] = {"i2", "i1"}, *l2[] = {"i3"}, *l3[] = {"i4", "i2"},
             *l4[] = {"i5"}, *l5[] = {"i1"}, *other[] = {"x"};
  push_named(h, "u1", "imp-1", l1, 2, 1000, 1);
  push_named(h, "u1", "imp-2", l2, 1, 1010, 2);
  push_fb(h, "u1", "imp-1", "i1", RS_FEEDBACK_CLICK, 1, 1020, 3);
  push_fb(h, "u1", "imp-2", "i3", RS_FEEDBACK_CLICK, 1, 1030, 4);
  push_named(h, "u2", "o-1", other, 1, 1200, 5); /* closes imp-1, imp-2 */
  u1_arm(h, "i1", 1, 1);
  u1_arm(h, "i2", 1, 0);
  u1_arm(h, "i3", 1, 1);
  cr_assert_eq(rs_harness_counter(h, "user_arms_evicted"), 0);
  push_named(h, "u1", "imp-3", l3, 2, 1300, 6);
  cr_assert(!strcmp(last_list(h)->items[0].item, "i4"));
  push_named(h, "u2", "o-2", other, 1, 1500, 7);
  u1_arm(h, "i1", 0, 0);
  u1_arm(h, "i2", 2, 0);
  u1_arm(h, "i3", 1, 1);
  u1_arm(h, "i4", 1, 0);
  cr_assert_eq(rs_harness_counter(h, "user_arms_evicted"), 1);
  cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
  u1_arm(h, "i2", 2, 0);
  push_named(h, "u1", "imp-4", l4, 1, 1600, 8);
  push_named(h, "u2", "o-3", other, 1, 1800, 9);
  u1_arm(h, "i2", 2, 0);
  u1_arm(h, "i3", 0, 0);
  u1_arm(h, "i4", 1, 0);
  u1_arm(h, "i5", 1, 0);
  push_named(h, "u1", "imp-5", l5, 1, 1900, 10);
  push_named(h, "u2", "o-4", other, 1, 2100, 11);
  u1_arm(h, "i1", 1, 0);
  u1_arm(h, "i2", 0, 0);
  u1_arm(h, "i4", 1, 0);
  u1_arm(h, "i5", 1, 0);
  cr_assert_eq(rs_harness_counter(h, "user_arms_evicted"), 3);
  /* u2's record is its own: x, 3 shows (o-4 still open) */
  double s, r;
  cr_assert_eq(rs__bandit_user_arm(rs_harness_ctx(h), 0, "u2", "x", &s, &r), 0);
  cr_assert_eq(s, 3, "u2's x: %g shows", s);
  rs_harness_destroy(h);
}

/* One state read per list for all its candidates: a list of 16 candidates
 * reads as many state entries as a list of 2 with arms user (the user's
 * record); with arms item, 14 more (one "a" + item per candidate). */
Test(bandit_reward, user_arms_one_read_per_list) {
  for (int user = 0; user < 2; user++) {
    const char *opts[] = {
        "policy", "greedy", "slots", "2", "arms", user ? "user" : "item", NULL};
    rs_harness_t *h = make(opts);
    push_list(h, "u1", "imp-0", NULL, 16, 1000, 1); /* the agenda is built */
    uint64_t gets[2];
    for (int k = 0; k < 2; k++) {
      rs_cache_stats_t a, b;
      rs_harness_cache_stats(h, &a);
      push_list(h, "u1", k ? "imp-16" : "imp-2", NULL, k ? 16 : 2, 1000, 2 + k);
      rs_harness_cache_stats(h, &b);
      gets[k] = (b.hits + b.misses) - (a.hits + a.misses);
    }
    cr_assert_eq(gets[1], gets[0] + (user ? 0 : 14),
                 "arms %s: %llu reads for 16 candidates, %llu for 2",
                 user ? "user" : "item", (unsigned long long)gets[1],
                 (unsigned long long)gets[0]);
    rs_harness_destroy(h);
  }
}

Test(bandit_reward, user_arms_max_bad_values) {
  static const char *const bad[] = {"0", "-1", "65537", "many", "1.5", NULL};
  for (int i = 0; bad[i]; i++) {
    const char *opts[] = {"arms", "user", "user_arms_max", bad[i], NULL};
    err[0] = '\0';
    cr_assert_null(rs_harness_new(&rs_op_bandit_reward, opts, err, sizeof err),
                   "user_arms_max %s accepted", bad[i]);
    cr_assert(strstr(err, "user_arms_max"), "%s: %s", bad[i], err);
  }
}

/* State of the per-pair layout (before session 10: "p" / "q" + u32 user
 * length + user + item, 16 bytes) is moved into the user's record when
 * the partition's agenda is built, and the old entries deleted: u1's i1
 * (3 shows, 2 rewards) then ranks first (posterior mean (2 + 1) / (3 + 2)
 * = 0.6 against i2's prior 0.5 and i0's (0 + 1) / (2 + 2) = 0.25). With
 * user_arms_max 1 the migration keeps the bound: the migrated arms carry
 * no time, the smaller item bytes (i0) are evicted. The first round reads
 * the old entries from RocksDB (a restart after planting) and checks the
 * result after another restart. A per-pair entry of another size is an
 * error, not a silent zero; so is a record of another version. */
static void plant_pair(rs_harness_t *h, char tag, const char *user,
                       const char *item, double shows, double reward) {
  char k[64];
  uint32_t ul = (uint32_t)strlen(user);
  k[0] = tag;
  memcpy(k + 1, &ul, 4);
  memcpy(k + 5, user, ul);
  memcpy(k + 5 + ul, item, strlen(item));
  double v[2] = {shows, reward};
  cr_assert_eq(
      rs_harness_state_put(h, 0, k, 5 + ul + strlen(item), v, sizeof v), 0);
}

/* A list for u1 (i0, i1), returning process()'s code. */
static int push_list_rc(rs_harness_t *h) {
  rs_scored_item_t it[2] = {{.item = "i0", .item_len = 2, .propensity = 1},
                            {.item = "i1", .item_len = 2, .propensity = 1}};
  rs_recommendation_t r = {.user = "u1",
                           .user_len = 2,
                           .impression_id = "imp-x",
                           .impression_id_len = 5,
                           .items = it,
                           .n_items = 2,
                           .timestamp_ms = 1000};
  rs_record_t rec = {.kind = RS_KIND_RECOMMENDATION,
                     .key = "u1",
                     .key_len = 2,
                     .payload = &r,
                     .timestamp_ms = 1000};
  return rs_harness_push_input(h, 0, 0, &rec, 1);
}

Test(bandit_reward, user_arms_old_layout_is_migrated) {
  for (int bound = 0; bound < 2; bound++) {
    const char *opts[] = {
        "policy",      "greedy", "slots",         "3",
        "arms",        "user",   "score_weight",  "0",
        "prior_alpha", "1",      "user_arms_max", bound ? "1" : "256",
        NULL};
    rs_harness_t *h = make(opts);
    plant_pair(h, 'p', "u1", "i1", 3, 2);
    plant_pair(h, 'p', "u1", "i0", 2, 0);
    plant_pair(h, 'q', "u1", "i0", 2,
               -0.5); /* arms user, no residual: dropped */
    plant_pair(h, 'p', "u2", "i2", 1, 1);
    for (int k = 0; bound && k < 2000; k++) { /* > 64 KiB copied */
      char item[8];
      snprintf(item, sizeof item, "j%04d", k);
      plant_pair(h, 'p', "u3", item, 1, 0);
    }
    if (!bound) /* from RocksDB, not the cache: a deployment's state */
      cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
    push_list(h, "u1", "imp-1", NULL, 3, 1000, 1);
    if (!bound) /* the records and deletions are state too */
      cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
    cr_assert_eq(rs_harness_counter(h, "user_arms_migrated"), bound ? 2004 : 4);
    const rs_recommendation_t *r = last_list(h);
    cr_assert_eq(item_no(&r->items[0]), 1, "i1 first: %d",
                 item_no(&r->items[0]));
    if (!bound) {
      cr_assert_eq(item_no(&r->items[2]), 0, "i0 last");
      u1_arm(h, "i0", 2, 0);
    } else {
      u1_arm(h, "i0", 0, 0);
      /* u3 keeps the largest item bytes of its 2,000 */
      cr_assert_eq(rs_harness_counter(h, "user_arms_evicted"), 1 + 1999);
      double s3, r3;
      cr_assert_eq(
          rs__bandit_user_arm(rs_harness_ctx(h), 0, "u3", "j1999", &s3, &r3),
          0);
      cr_assert_eq(s3, 1);
      cr_assert_eq(
          rs__bandit_user_arm(rs_harness_ctx(h), 0, "u3", "j1998", &s3, &r3),
          0);
      cr_assert_eq(s3, 0);
    }
    u1_arm(h, "i1", 3, 2);
    double s, rw;
    cr_assert_eq(rs__bandit_user_arm(rs_harness_ctx(h), 0, "u2", "i2", &s, &rw),
                 0);
    cr_assert(s == 1 && rw == 1);
    const void *v;
    size_t n;
    char k[] = {'p', 2, 0, 0, 0, 'u', '1', 'i', '1'};
    cr_assert_eq(rs_harness_state_get(h, 0, k, sizeof k, &v, &n), RS_ENOENT,
                 "the old entry is deleted");
    rs_harness_destroy(h);
  }
  const char *opts[] = {"arms", "user", NULL};
  rs_harness_t *h = make(opts);
  char k[] = {'p', 2, 0, 0, 0, 'u', '1', 'i', '1'};
  cr_assert_eq(rs_harness_state_put(h, 0, k, sizeof k, "12345678", 8), 0);
  cr_assert_eq(push_list_rc(h), RS_ESTATE);
  rs_harness_destroy(h);
  /* and a corrupt record of the new layout */
  h = make(opts);
  cr_assert_eq(rs_harness_state_put(h, 0, "Au1", 3, "\x02\0\0\0\0\0\0\0", 8),
               0);
  cr_assert_eq(push_list_rc(h), RS_ESTATE);
  int level, found = 0;
  for (size_t i = 0; i < rs_harness_log_count(h); i++)
    found |= strstr(rs_harness_log_line(h, i, &level), "user arms") != NULL;
  cr_assert(found);
  rs_harness_destroy(h);
}

/* ------------------------------ per-user arms: corrupt records, replay */

/* Plants u1's arms record (bytes rec) and pushes a list for u1: what the
 * operator answers. */
static int put_rec_and_push(const unsigned char *rec, size_t n) {
  const char *opts[] = {"arms", "user", NULL};
  rs_harness_t *h = make(opts);
  cr_assert_eq(rs_harness_state_put(h, 0, "Au1", 3, rec, n), 0);
  int rc = push_list_rc(h);
  rs_harness_destroy(h);
  return rc;
}
/* An arms record (layout above uarm_load in bandit_reward.c) of k items,
 * each 1 show and 1 reward, last shown at 5; flags 1: residual fields. */
static size_t mkrec(unsigned char *b, int flags, const char *const *items,
                    int k) {
  memset(b, 0, 8);
  b[0] = 1;
  b[1] = (unsigned char)flags;
  uint32_t c = (uint32_t)k;
  memcpy(b + 4, &c, 4);
  size_t off = 8, es = 28 + (flags ? 16 : 0);
  for (int i = 0; i < k; i++) {
    uint32_t l = (uint32_t)strlen(items[i]);
    memset(b + off, 0, es);
    memcpy(b + off, &l, 4);
    int64_t last = 5;
    memcpy(b + off + 4, &last, 8);
    double s = 1, r = 1;
    memcpy(b + off + 12, &s, 8);
    memcpy(b + off + 20, &r, 8);
    memcpy(b + off + es, items[i], l);
    off += es + l;
  }
  return off;
}
/* Every malformed record (truncated, trailing bytes, counts and lengths
 * past the end, items out of order or repeated, unknown flags) is
 * RS_ESTATE, never read; 50 records with random byte flips never crash
 * (ASan). */
Test(bandit_reward, user_arms_corrupt_records_stop_with_estate) {
  unsigned char b[512];
  const char *ok[] = {"i0", "i1", "x"};
  size_t n = mkrec(b, 0, ok, 3);
  cr_assert_eq(put_rec_and_push(b, n), 0, "valid");
  for (size_t t = 0; t < n; t++) /* every truncation */
    cr_assert_eq(put_rec_and_push(b, t), RS_ESTATE, "trunc %zu", t);
  unsigned char b2[513];
  memcpy(b2, b, n);
  b2[n] = 0;
  cr_assert_eq(put_rec_and_push(b2, n + 1), RS_ESTATE, "trailing");
  uint32_t big = 0xFFFFFFFFu;
  memcpy(b2, b, n);
  memcpy(b2 + 4, &big, 4);
  cr_assert_eq(put_rec_and_push(b2, n), RS_ESTATE, "count");
  memcpy(b2, b, n);
  memcpy(b2 + 8, &big, 4);
  cr_assert_eq(put_rec_and_push(b2, n), RS_ESTATE, "len");
  memcpy(b2, b, n);
  big = 0x7FFFFFF0u;
  memcpy(b2 + 8, &big, 4);
  cr_assert_eq(put_rec_and_push(b2, n), RS_ESTATE, "len2");
  const char *uns[] = {"i1", "i0"}, *dup[] = {"i0", "i0"},
             *pre[] = {"i00", "i0"};
  cr_assert_eq(put_rec_and_push(b, mkrec(b, 0, uns, 2)), RS_ESTATE, "unsorted");
  cr_assert_eq(put_rec_and_push(b, mkrec(b, 0, dup, 2)), RS_ESTATE, "dup");
  cr_assert_eq(put_rec_and_push(b, mkrec(b, 0, pre, 2)), RS_ESTATE,
               "prefix order");
  cr_assert_eq(put_rec_and_push(b, mkrec(b, 1, ok, 3)), 0,
               "residual flag, beta");
  cr_assert_eq(put_rec_and_push(b, mkrec(b, 2, ok, 3)), RS_ESTATE, "flag 2");
  const char *empty[] = {"", "a"};
  cr_assert_eq(put_rec_and_push(b, mkrec(b, 0, empty, 2)), 0, "empty item");
  /* random byte flips: never a crash */
  srand(1);
  for (int it = 0; it < 50; it++) {
    size_t m = mkrec(b, it & 1, ok, 3);
    int flips = 1 + rand() % 3;
    for (int f = 0; f < flips; f++)
      b[rand() % m] ^= (unsigned char)(1 + rand() % 255);
    int rc = put_rec_and_push(b, m);
    cr_assert(rc == 0 || rc == RS_ESTATE, "rc %d", rc);
  }
}

/* Replay with evictions (bound 2, three users, lists and clicks): a run
 * that checkpoints at list 40, goes on to 60, crashes and replays from 40
 * emits the same lists after 40 as a straight run, for Thompson (beta and
 * residual) and epsilon-greedy with with_feedback. */
static void seq_push(rs_harness_t *h, int from, int to) {
  char imp[32], user[8];
  for (int k = from; k < to; k++) {
    snprintf(imp, sizeof imp, "imp-%d", k);
    snprintf(user, sizeof user, "u%d", k % 3);
    push_list(h, user, imp, NULL, 5 + (k % 7), 1000 + 37 * k, 2 * k);
    if (k % 2) {
      const rs_recommendation_t *r = last_list(h);
      push_fb(h, user, imp, r->items[k % 3 ? 1 : 0].item, RS_FEEDBACK_CLICK, 1,
              1000 + 37 * k + 5, 2 * k + 1);
    }
  }
}
static void seq_lists(rs_harness_t *h, size_t from, char *out, size_t cap) {
  out[0] = 0;
  size_t n = rs_harness_emitted_count(h, 0);
  for (size_t i = from; i < n; i++) {
    const rs_record_t *r = rs_harness_emitted(h, 0, i);
    const rs_recommendation_t *l = r->payload;
    for (uint32_t j = 0; j < l->n_items; j++) {
      strncat(out, l->items[j].item, cap - strlen(out) - 1);
      strncat(out, ",", cap - strlen(out) - 1);
    }
    strncat(out, "|", cap - strlen(out) - 1);
  }
}
Test(bandit_reward, user_arms_replay_with_evictions_is_identical) {
  for (int pol = 0; pol < 3; pol++) {
    const char *opts[] = {"policy",
                          pol == 0   ? "thompson"
                          : pol == 1 ? "epsilon_greedy"
                                     : "thompson",
                          "slots",
                          "3",
                          "reward_window",
                          "100ms",
                          "arms",
                          "user",
                          "user_arms_max",
                          "2",
                          "thompson_model",
                          pol == 2 ? "residual" : "beta",
                          "arm_impressions",
                          pol == 1 ? "with_feedback" : "all",
                          NULL};
    static char a[1 << 16], b[1 << 16];
    rs_harness_t *h = make(opts);
    seq_push(h, 0, 40);
    size_t mid = rs_harness_emitted_count(h, 0);
    seq_push(h, 40, 80);
    seq_lists(h, mid, a, sizeof a);
    int64_t ev_a = rs_harness_counter(h, "user_arms_evicted");
    rs_harness_destroy(h);
    h = make(opts);
    seq_push(h, 0, 40);
    cr_assert_eq(rs_harness_checkpoint(h), 0);
    seq_push(h, 40, 60);
    cr_assert_eq(rs_harness_restart(h, 1), 0);
    size_t mid2 = rs_harness_emitted_count(h, 0);
    seq_push(h, 40, 80);
    seq_lists(h, mid2, b, sizeof b);
    cr_assert(ev_a > 0, "pol %d evictions %lld", pol, (long long)ev_a);
    cr_assert_str_eq(a, b, "pol %d", pol);
    rs_harness_destroy(h);
  }
}
