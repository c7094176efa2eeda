/* See bandit_policy.h. */
#include "bandit_policy.h"

#include <math.h>
#include <string.h>

void br_rng_seed(br_rng_t *r, uint64_t seed) {
  r->s = seed;
}

/* splitmix64: small, fast, and good enough for sampling. */
uint64_t br_rng_next(br_rng_t *r) {
  uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

double br_rng_uniform(br_rng_t *r) {
  return (double)(br_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Marsaglia's polar method: exact, and no cos() (the pair's second normal
 * is dropped: br_rng_t holds no spare). */
double br_rng_normal(br_rng_t *r) {
  for (;;) {
    double u = 2.0 * br_rng_uniform(r) - 1.0, v = 2.0 * br_rng_uniform(r) - 1.0;
    double s = u * u + v * v;
    if (s < 1.0 && s > 0.0)
      return u * sqrt(-2.0 * log(s) / s);
  }
}

/* A gamma sampler prepared for one shape, so that many draws of the same
 * shape (Thompson's samples of one arm) pay for the constants once. */
typedef struct gamma_prep {
  double d, c, inv_shape; /* Marsaglia-Tsang; inv_shape: boost (< 1) */
  int k;                  /* integer shape 1..GAMMA_SMALL_INT: sum of Exp */
} gamma_prep_t;

#define GAMMA_SMALL_INT 4

static gamma_prep_t gamma_prepare(double shape) {
  gamma_prep_t g = {0};
  if (shape >= 1.0 && shape <= GAMMA_SMALL_INT && shape == floor(shape)) {
    g.k = (int)shape;
    return g;
  }
  if (shape < 1.0) {
    g.inv_shape = 1.0 / shape;
    shape += 1.0;
  }
  g.d = shape - 1.0 / 3.0;
  g.c = 1.0 / sqrt(9.0 * g.d);
  return g;
}

/* Gamma(k) for a small integer k is a sum of k Exp(1): -log of a product
 * of k uniforms in (0, 1] (exact; one log). Otherwise Marsaglia and Tsang
 * (2000); shape < 1 by boosting Gamma(shape + 1) with U^(1/shape). */
static double gamma_draw(br_rng_t *r, const gamma_prep_t *g) {
  if (g->k) {
    double prod = 1.0 - br_rng_uniform(r);
    for (int i = 1; i < g->k; i++)
      prod *= 1.0 - br_rng_uniform(r);
    return -log(prod);
  }
  double boost =
      g->inv_shape > 0 ? pow(1.0 - br_rng_uniform(r), g->inv_shape) : 1.0;
  for (;;) {
    double x = br_rng_normal(r), v = 1.0 + g->c * x;
    if (v <= 0)
      continue;
    v = v * v * v;
    double u = 1.0 - br_rng_uniform(r);
    if (u < 1.0 - 0.0331 * x * x * x * x ||
        log(u) < 0.5 * x * x + g->d * (1.0 - v + log(v)))
      return g->d * v * boost;
  }
}

double br_rng_gamma(br_rng_t *r, double shape) {
  gamma_prep_t g = gamma_prepare(shape);
  return gamma_draw(r, &g);
}

double br_rng_beta(br_rng_t *r, double a, double b) {
  double x = br_rng_gamma(r, a), y = br_rng_gamma(r, b);
  return x + y > 0 ? x / (x + y) : 0.5;
}

size_t br_work_size(const br_policy_t *p, uint32_t n) {
  size_t m = p->kind == BR_THOMPSON ? (p->samples ? p->samples : 1) : 0;
  /* mean, used, q; thompson: the draws, then each sample's arms in
   * ranking order and its cursor (uint32_t, two to a double) */
  return (size_t)n * (m + 3) + (m * n + m + 1) / 2;
}

/* The `top` best of arms 0..n-1 by v into ord[0..top), best first, ties
 * by lower index (the order in which best() below would pick them): a
 * bounded insertion sort, O(n * top). Slot s has s arms placed before it,
 * so a sample's best unplaced arm is always among its first s + 1. */
static void rank_arms(const double *v, uint32_t n, uint32_t top,
                      uint32_t *ord) {
  uint32_t len = 0;
  for (uint32_t i = 0; i < n && top > 0; i++) {
    if (len == top && !(v[i] > v[ord[top - 1]]))
      continue; /* not better than the last kept */
    uint32_t j = len < top ? len++ : top - 1;
    while (j > 0 && v[i] > v[ord[j - 1]]) {
      ord[j] = ord[j - 1];
      j--;
    }
    ord[j] = i;
  }
}

static double posterior_mean(const br_policy_t *p, const br_arm_t *a) {
  return (a->reward + p->prior_alpha) /
         (a->shows + p->prior_alpha + p->prior_beta);
}

double br_predict(const br_policy_t *p, double score) {
  return p->cal_a + p->cal_b * score;
}

void br_residual_posterior(const br_policy_t *p, const br_arm_t *a,
                           double *mean, double *sd) {
  double s2 = p->res_sd * p->res_sd, t2 = p->res_prior_sd * p->res_prior_sd;
  double n = a->res_n > 0 ? a->res_n : 0;
  double lambda = 1.0 / t2 + n / s2;
  *mean = (a->res_sum / s2) / lambda;
  *sd = 1.0 / sqrt(lambda);
}

void br_calib_add(br_calib_t *c, double score, double reward) {
  c->n += 1;
  c->s += score;
  c->r += reward;
  c->ss += score * score;
  c->sr += score * reward;
}

void br_calib_fit(const br_calib_t *c, double score_weight, double *a,
                  double *b) {
  *a = 0;
  *b = score_weight;
  if (c->n < BR_CALIB_MIN)
    return;
  double ms = c->s / c->n, mr = c->r / c->n;
  double vs = c->ss / c->n - ms * ms, cv = c->sr / c->n - ms * mr;
  if (!(vs > 1e-12))
    return;
  *b = cv / vs > 0 ? cv / vs : 0;
  *a = mr - *b * ms;
}

/* The ranking value's mean: calibrated score plus the residual's posterior
 * mean (residual model), else score_weight * score + Beta posterior mean. */
static double value_mean(const br_policy_t *p, const br_arm_t *a) {
  if (p->residual) {
    double m, sd;
    br_residual_posterior(p, a, &m, &sd);
    return br_predict(p, a->score) + m;
  }
  return p->score_weight * a->score + posterior_mean(p, a);
}

/* The best arm among those with used[j] == 0 by v (ties: lower index). */
static uint32_t best(const double *v, const double *used, uint32_t n) {
  uint32_t b = UINT32_MAX;
  for (uint32_t j = 0; j < n; j++)
    if (used[j] == 0 && (b == UINT32_MAX || v[j] > v[b]))
      b = j;
  return b;
}

double br_choose(const br_policy_t *p, const br_arm_t *arms, uint32_t n,
                 uint32_t slots, br_rng_t *rng, uint32_t *order, double *prop,
                 uint32_t *greedy, double *dist0, double *work) {
  double *mean = work, *used = work + n, *q = work + 2 * (size_t)n;
  double *draws = work + 3 * (size_t)n; /* thompson: samples x n */
  uint32_t m = p->samples ? p->samples : 1;
  if (slots > n)
    slots = n;
  for (uint32_t j = 0; j < n; j++) {
    mean[j] = value_mean(p, &arms[j]);
    used[j] = 0;
  }
  /* The target policy: greedy on the posterior mean. */
  for (uint32_t s = 0; s < slots; s++) {
    greedy[s] = best(mean, used, n);
    used[greedy[s]] = 1;
  }
  memset(used, 0, sizeof(double) * n);
  if (p->kind == BR_THOMPSON && p->residual)
    for (uint32_t j = 0; j < n; j++) {
      double mu, sd;
      br_residual_posterior(p, &arms[j], &mu, &sd);
      mu += br_predict(p, arms[j].score);
      for (uint32_t k = 0; k < m; k++)
        draws[(size_t)k * n + j] = mu + sd * br_rng_normal(rng);
    }
  else if (p->kind == BR_THOMPSON)
    /* Arm by arm: the m draws of one arm share its two gamma shapes. */
    for (uint32_t j = 0; j < n; j++) {
      double sh = arms[j].shows > 0 ? arms[j].shows : 0;
      double rw = arms[j].reward < 0 ? 0 : arms[j].reward;
      if (rw > sh)
        rw = sh;
      gamma_prep_t ga = gamma_prepare(p->prior_alpha + rw),
                   gb = gamma_prepare(p->prior_beta + sh - rw);
      double base = p->score_weight * arms[j].score;
      for (uint32_t k = 0; k < m; k++) {
        double x = gamma_draw(rng, &ga), y = gamma_draw(rng, &gb);
        draws[(size_t)k * n + j] = base + (x + y > 0 ? x / (x + y) : 0.5);
      }
    }
  /* Thompson: each sample's best remaining arm for every slot, from its
   * arms ranked once (a cursor skips the arms already placed) instead of
   * a scan of all arms per sample and slot. */
  uint32_t *rank = (uint32_t *)(draws + (size_t)m * n), *cur = rank + m * n;
  if (p->kind == BR_THOMPSON)
    for (uint32_t k = 0; k < m; k++) {
      rank_arms(draws + (size_t)k * n, n, slots, rank + (size_t)k * n);
      cur[k] = 0;
    }
  double list = 1.0;
  for (uint32_t s = 0; s < slots; s++) {
    uint32_t left = n - s;
    for (uint32_t j = 0; j < n; j++)
      q[j] = 0;
    if (p->kind == BR_THOMPSON) {
      double share = (1.0 - p->floor) / (double)m;
      for (uint32_t k = 0; k < m; k++) {
        const uint32_t *r = rank + (size_t)k * n;
        while (used[r[cur[k]]])
          cur[k]++;
        q[r[cur[k]]] += share;
      }
      for (uint32_t j = 0; j < n; j++)
        if (!used[j])
          q[j] += p->floor / (double)left;
    } else {
      double eps = p->kind == BR_EPSILON ? p->epsilon : 0.0;
      q[best(mean, used, n)] += 1.0 - eps;
      if (eps > 0)
        for (uint32_t j = 0; j < n; j++)
          if (!used[j])
            q[j] += eps / (double)left;
    }
    if (s == 0 && dist0)
      memcpy(dist0, q, sizeof(double) * n);
    /* Draw from q (in arm order); rounding leaves the last candidate. */
    double u = br_rng_uniform(rng), acc = 0;
    uint32_t pick = UINT32_MAX, last = UINT32_MAX;
    for (uint32_t j = 0; j < n; j++) {
      if (used[j] || q[j] <= 0)
        continue;
      last = j;
      acc += q[j];
      if (u < acc) {
        pick = j;
        break;
      }
    }
    if (pick == UINT32_MAX)
      pick = last;
    order[s] = pick;
    prop[s] = q[pick];
    used[pick] = 1;
    list *= q[pick];
  }
  return list;
}

void br_lin_reset(br_lin_t *l) {
  memset(l->ainv, 0, sizeof(double) * l->d * l->d);
  memset(l->b, 0, sizeof(double) * l->d);
  for (uint32_t i = 0; i < l->d; i++)
    l->ainv[(size_t)i * l->d + i] = 1.0;
}

void br_lin_score(const br_lin_t *l, const float *x, double *mean,
                  double *width, double *ax) {
  uint32_t d = l->d;
  double m = 0, w = 0;
  for (uint32_t i = 0; i < d; i++) {
    double s = 0, t = 0;
    for (uint32_t j = 0; j < d; j++) {
      s += l->ainv[(size_t)i * d + j] * x[j];
      t += l->ainv[(size_t)i * d + j] * l->b[j];
    }
    ax[i] = s;
    w += x[i] * s;
    m += t * x[i];
  }
  *mean = m;
  *width = w > 0 ? sqrt(w) : 0;
}

void br_lin_update(br_lin_t *l, const float *x, double r, double *ax) {
  uint32_t d = l->d;
  /* A^-1 <- A^-1 - (A^-1 x)(A^-1 x)^T / (1 + x^T A^-1 x); A symmetric. */
  double den = 1.0;
  for (uint32_t i = 0; i < d; i++) {
    double s = 0;
    for (uint32_t j = 0; j < d; j++)
      s += l->ainv[(size_t)i * d + j] * x[j];
    ax[i] = s;
    den += x[i] * s;
  }
  for (uint32_t i = 0; i < d; i++)
    for (uint32_t j = 0; j < d; j++)
      l->ainv[(size_t)i * d + j] -= ax[i] * ax[j] / den;
  for (uint32_t i = 0; i < d; i++)
    l->b[i] += r * x[i];
}
