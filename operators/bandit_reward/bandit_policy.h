/* The exploration policies of bandit_reward, as pure functions (no host,
 * no state): given the candidates topn_emit ranked (their model scores)
 * and each one's reward statistics, choose the shown list slot by slot and
 * return the exact probability with which each slot's item was drawn.
 * tests/operators/test_bandit_reward.c tests them directly.
 *
 * Every policy ranks by value_i = score_weight * score_i + theta_i, where
 * theta_i is the item's reward estimate: the posterior mean
 * (reward_i + prior_alpha) / (shows_i + prior_alpha + prior_beta) for
 * greedy and epsilon_greedy, a draw from Beta(prior_alpha + reward_i,
 * prior_beta + shows_i - reward_i) for thompson. Slots are filled in order
 * without replacement; slot s draws from a distribution q_s over the items
 * not yet placed:
 *   greedy          q = 1 on the best remaining item;
 *   epsilon_greedy  q = (1 - eps) on the best remaining item + eps / |R|;
 *   thompson        `samples` posterior draws per emission; q(j) = (1 -
 *                   floor) * (share of draws in which j is the best
 *                   remaining item) + floor / |R|.
 * The item is drawn from q_s and q_s(item) is its logged propensity: the
 * exact conditional probability of that draw given the earlier slots (and,
 * for thompson, given the posterior draws, which are part of the policy's
 * randomness; floor > 0 keeps every item's probability positive, which
 * unbiased off-policy estimates need). The product over slots is the
 * probability of the whole list. */
#ifndef RS_BANDIT_POLICY_H
#define RS_BANDIT_POLICY_H

#include <stddef.h>
#include <stdint.h>

enum { BR_GREEDY = 0, BR_EPSILON = 1, BR_THOMPSON = 2, BR_LINUCB = 3 };

typedef struct br_rng {
  uint64_t s;
} br_rng_t;

void br_rng_seed(br_rng_t *r, uint64_t seed);
uint64_t br_rng_next(br_rng_t *r);
double br_rng_uniform(br_rng_t *r); /* in [0, 1) */
double br_rng_normal(br_rng_t *r);
double br_rng_gamma(br_rng_t *r, double shape); /* shape > 0, scale 1 */
double br_rng_beta(br_rng_t *r, double a, double b);

typedef struct br_arm {
  double score;  /* topn_emit's score */
  double shows;  /* closed impressions that showed the item */
  double reward; /* rewards they earned (clamped to [0, shows] for Beta) */
} br_arm_t;

typedef struct br_policy {
  int kind;
  double epsilon; /* this emission's epsilon (after decay) */
  double score_weight;
  double prior_alpha, prior_beta;
  double floor; /* thompson */
  uint32_t samples;
} br_policy_t;

/* Doubles of scratch br_choose needs for n arms. */
size_t br_work_size(const br_policy_t *p, uint32_t n);

/* Chooses `slots` (<= n) of the n arms: order[s] is the arm shown in slot
 * s, prop[s] its propensity; greedy[s] the target (greedy) policy's arm for
 * slot s. dist0 (n doubles, or NULL) receives q_0, the first slot's whole
 * distribution. work: br_work_size() doubles. Returns the product of
 * prop[0..slots). */
double br_choose(const br_policy_t *p, const br_arm_t *arms, uint32_t n,
                 uint32_t slots, br_rng_t *rng, uint32_t *order, double *prop,
                 uint32_t *greedy, double *dist0, double *work);

/* LinUCB (Li et al. 2010) with one shared linear model over d features:
 * A = I + sum x x^T and b = sum r x; kept as A^-1 (updated by
 * Sherman-Morrison) and b. theta = A^-1 b. */
typedef struct br_lin {
  uint32_t d;
  double *ainv; /* d x d, row-major */
  double *b;    /* d */
} br_lin_t;

/* Sets A^-1 = I, b = 0 (ainv and b are the caller's, d*d and d). */
void br_lin_reset(br_lin_t *l);
/* theta^T x and sqrt(x^T A^-1 x) (scratch: d doubles). */
void br_lin_score(const br_lin_t *l, const float *x, double *mean,
                  double *width, double *scratch);
/* Learns reward r for features x (scratch: d doubles). */
void br_lin_update(br_lin_t *l, const float *x, double r, double *scratch);

#endif
