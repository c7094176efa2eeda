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
 * probability of the whole list.
 *
 * Thompson's residual model (`thompson_model: residual`) replaces the Beta
 * draw by a Gaussian on the residual of the model score: the reward of item
 * i shown with score s is modelled as r = a + b * s + delta_i + noise,
 * where a + b * s is the score calibrated to rewards (one least-squares
 * line over every closed slot, br_calib_fit) and delta_i the item's
 * residual, prior N(0, tau^2) (residual_prior_sd), noise N(0, sigma^2)
 * (residual_sd). After n_i closed slots with residuals e (e = r - a - b s)
 * summing to S_i the posterior is N(m_i, 1 / lambda_i), lambda_i = 1/tau^2
 * + n_i/sigma^2, m_i = (S_i / sigma^2) / lambda_i. Ranking value: a + b s +
 * m_i (greedy, the target policy), a + b s + a draw of delta_i (thompson).
 * So the MF score carries what the model knows about the user, and the
 * residual what the rewards add per item, with its uncertainty. */
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
  double score;   /* topn_emit's score */
  double shows;   /* closed impressions that showed the item */
  double reward;  /* rewards they earned (clamped to [0, shows] for Beta) */
  double res_n;   /* residual model: closed slots, and */
  double res_sum; /* the sum of their residuals r - (a + b * score) */
} br_arm_t;

typedef struct br_policy {
  int kind;
  double epsilon; /* this emission's epsilon (after decay) */
  double score_weight;
  double prior_alpha, prior_beta;
  double floor; /* thompson */
  uint32_t samples;
  int residual;        /* thompson_model residual (else Beta) */
  double res_sd;       /* sigma: residual noise */
  double res_prior_sd; /* tau: prior sd of an item's residual */
  double cal_a, cal_b; /* calibrated prediction a + b * score */
} br_policy_t;

/* The calibrated prediction a + b * score. */
double br_predict(const br_policy_t *p, double score);
/* The posterior of an item's residual (residual model): mean and sd. */
void br_residual_posterior(const br_policy_t *p, const br_arm_t *a,
                           double *mean, double *sd);

/* The calibration line, fitted by least squares over (score, reward) of
 * closed slots: sums n, sum s, sum r, sum s^2, sum s r. */
typedef struct br_calib {
  double n, s, r, ss, sr;
} br_calib_t;

#define BR_CALIB_MIN 30 /* slots before the fit replaces a = 0, b = w */

void br_calib_add(br_calib_t *c, double score, double reward);
/* a and b: the least-squares line when n >= BR_CALIB_MIN and the scores
 * vary, its slope clamped at >= 0 (a higher model score never predicts a
 * lower reward); else a = 0, b = score_weight (the uncalibrated score). */
void br_calib_fit(const br_calib_t *c, double score_weight, double *a,
                  double *b);

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
