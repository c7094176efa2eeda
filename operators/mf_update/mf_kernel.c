/* mf_update's numerics (see mf_kernel.h). Every loop runs over a padded
 * length kp (a multiple of RS_MF_LANES) with restrict pointers and no
 * branches, which gcc and clang vectorise; reductions keep RS_MF_LANES
 * partial sums and add them in a fixed tree, so results are the same
 * whether or not a loop was vectorised. */
#include "mf_kernel.h"

#include <math.h>

#ifdef __clang__
/* No fused multiply-add contraction: the same results as gcc -std=c11. */
#pragma STDC FP_CONTRACT OFF
#endif

static inline float sum_lanes(const float *acc) {
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) +
         ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

float rs_mf_dot(const float *restrict a, const float *restrict b, uint32_t kp) {
  float acc[RS_MF_LANES] = {0};
  for (uint32_t i = 0; i < kp; i += RS_MF_LANES)
    for (uint32_t j = 0; j < RS_MF_LANES; j++)
      acc[j] += a[i + j] * b[i + j];
  return sum_lanes(acc);
}

int rs_mf_all_finite(const float *v, uint32_t kp) {
  /* x * 0 is 0 for finite x and NaN for Inf or NaN; the sum is NaN as soon
   * as one term is. */
  float acc[RS_MF_LANES] = {0};
  for (uint32_t i = 0; i < kp; i += RS_MF_LANES)
    for (uint32_t j = 0; j < RS_MF_LANES; j++)
      acc[j] += v[i + j] * 0.0f;
  return sum_lanes(acc) == 0.0f;
}

int rs_mf_all_within(const float *v, uint32_t kp, float bound) {
  /* A lane counts the components not within the bound; NaN compares
   * false, so it counts too. */
  int out[RS_MF_LANES] = {0};
  for (uint32_t i = 0; i < kp; i += RS_MF_LANES)
    for (uint32_t j = 0; j < RS_MF_LANES; j++)
      out[j] |= !(fabsf(v[i + j]) <= bound);
  int any = 0;
  for (uint32_t j = 0; j < RS_MF_LANES; j++)
    any |= out[j];
  return !any;
}

static inline float clampf(float x, float lo, float hi) {
  return x < lo ? lo : x > hi ? hi : x;
}

void rs_mf_hyper_rates(rs_mf_hyper_t *h, float lr, float lr_bias) {
  h->lr_p = h->lr_q = h->lr_qj = lr;
  h->lr_bu = h->lr_bi = h->lr_bj = lr_bias;
}

/* Squared norm of the gradient rows of a pair step (g q - reg p and
 * g p - reg q), before the step. Only computed for AdaGrad. */
static void pair_gsq(const float *restrict p, const float *restrict q,
                     uint32_t kp, float g, float reg, float *gp, float *gq) {
  float ap[RS_MF_LANES] = {0}, aq[RS_MF_LANES] = {0};
  for (uint32_t i = 0; i < kp; i += RS_MF_LANES)
    for (uint32_t j = 0; j < RS_MF_LANES; j++) {
      float a = g * q[i + j] - reg * p[i + j];
      float b = g * p[i + j] - reg * q[i + j];
      ap[j] += a * a;
      aq[j] += b * b;
    }
  *gp = sum_lanes(ap);
  *gq = sum_lanes(aq);
}

/* p += lr_p (g q - reg p); q += lr_q (g p_old - reg q), simultaneously. */
static void pair_step(float *restrict p, float *restrict q, uint32_t kp,
                      float g, float lr_p, float lr_q, float reg) {
  for (size_t i = 0; i < kp; i++) {
    float pi = p[i], qi = q[i];
    p[i] = pi + lr_p * (g * qi - reg * pi);
    q[i] = qi + lr_q * (g * pi - reg * qi);
  }
}

float rs_mf_step_isgd(float *p, float *q, uint32_t kp, rs_mf_hyper_t *h) {
  float pred = rs_mf_dot(p, q, kp);
  float e = clampf(1.0f - pred, -h->clip, h->clip);
  float g = h->w * e;
  if (h->want_gsq)
    pair_gsq(p, q, kp, g, h->reg, &h->gsq[0], &h->gsq[1]);
  pair_step(p, q, kp, g, h->lr_p, h->lr_q, h->reg);
  return pred;
}

float rs_mf_step_bpr(float *restrict p, float *restrict qi, float *restrict qj,
                     float *bi, float *bj, uint32_t kp, rs_mf_hyper_t *h) {
  float acc[RS_MF_LANES] = {0};
  for (uint32_t i = 0; i < kp; i += RS_MF_LANES)
    for (uint32_t j = 0; j < RS_MF_LANES; j++)
      acc[j] += p[i + j] * (qi[i + j] - qj[i + j]);
  float x = sum_lanes(acc) + (*bi - *bj);
  /* -dL/dx = w sigmoid(-x), in (0, w): needs no clip. */
  float s = h->w / (1.0f + expf(x));
  float reg = h->reg, b_i = *bi, b_j = *bj;
  if (h->want_gsq) {
    float gp[RS_MF_LANES] = {0}, ga[RS_MF_LANES] = {0}, gb[RS_MF_LANES] = {0};
    for (uint32_t i = 0; i < kp; i += RS_MF_LANES)
      for (uint32_t j = 0; j < RS_MF_LANES; j++) {
        float pv = p[i + j], a = qi[i + j], b = qj[i + j];
        float dp = s * (a - b) - reg * pv, da = s * pv - reg * a,
              db = -s * pv - reg * b;
        gp[j] += dp * dp;
        ga[j] += da * da;
        gb[j] += db * db;
      }
    h->gsq[0] = sum_lanes(gp);
    h->gsq[1] = sum_lanes(ga);
    h->gsq[2] = sum_lanes(gb);
    float dbi = s - h->reg_bias * b_i, dbj = -s - h->reg_bias * b_j;
    h->gsq[3] = 0;
    h->gsq[4] = dbi * dbi;
    h->gsq[5] = dbj * dbj;
  }
  float lp = h->lr_p, la = h->lr_q, lb = h->lr_qj;
  for (size_t i = 0; i < kp; i++) {
    float pv = p[i], a = qi[i], b = qj[i];
    p[i] = pv + lp * (s * (a - b) - reg * pv);
    qi[i] = a + la * (s * pv - reg * a);
    qj[i] = b + lb * (-s * pv - reg * b);
  }
  *bi = b_i + h->lr_bi * (s - h->reg_bias * b_i);
  *bj = b_j + h->lr_bj * (-s - h->reg_bias * b_j);
  return x;
}

float rs_mf_step_explicit(float *p, float *q, float *bu, float *bi, float mu,
                          float r, uint32_t kp, rs_mf_hyper_t *h) {
  float pred = mu + *bu + *bi + rs_mf_dot(p, q, kp);
  float e = clampf(r - pred, -h->clip, h->clip);
  float g = h->w * e;
  float b_u = *bu, b_i = *bi;
  if (h->want_gsq) {
    pair_gsq(p, q, kp, g, h->reg, &h->gsq[0], &h->gsq[1]);
    float du = g - h->reg_bias * b_u, di = g - h->reg_bias * b_i;
    h->gsq[2] = 0;
    h->gsq[3] = du * du;
    h->gsq[4] = di * di;
    h->gsq[5] = 0;
  }
  pair_step(p, q, kp, g, h->lr_p, h->lr_q, h->reg);
  *bu = b_u + h->lr_bu * (g - h->reg_bias * b_u);
  *bi = b_i + h->lr_bi * (g - h->reg_bias * b_i);
  return pred;
}

static double sq(const float *v, uint32_t kp) {
  double s = 0;
  for (uint32_t i = 0; i < kp; i++)
    s += (double)v[i] * v[i];
  return s;
}

static double ddot(const float *a, const float *b, uint32_t kp) {
  double s = 0;
  for (uint32_t i = 0; i < kp; i++)
    s += (double)a[i] * b[i];
  return s;
}

double rs_mf_loss_isgd(const float *p, const float *q, uint32_t kp,
                       const rs_mf_hyper_t *h) {
  double e = 1.0 - ddot(p, q, kp);
  return h->w / 2.0 * e * e + h->reg / 2.0 * (sq(p, kp) + sq(q, kp));
}

double rs_mf_loss_bpr(const float *p, const float *qi, const float *qj,
                      float bi, float bj, uint32_t kp, const rs_mf_hyper_t *h) {
  double x = ddot(p, qi, kp) - ddot(p, qj, kp) + bi - bj;
  /* -log sigmoid(x) = log(1 + e^-x) */
  return h->w * log1p(exp(-x)) +
         h->reg / 2.0 * (sq(p, kp) + sq(qi, kp) + sq(qj, kp)) +
         h->reg_bias / 2.0 * ((double)bi * bi + (double)bj * bj);
}

double rs_mf_loss_explicit(const float *p, const float *q, float bu, float bi,
                           float mu, float r, uint32_t kp,
                           const rs_mf_hyper_t *h) {
  double e = (double)r - ((double)mu + bu + bi + ddot(p, q, kp));
  return h->w / 2.0 * e * e + h->reg / 2.0 * (sq(p, kp) + sq(q, kp)) +
         h->reg_bias / 2.0 * ((double)bu * bu + (double)bi * bi);
}

void rs_mf_score_all(const float *restrict items, const float *restrict bias,
                     uint32_t n, const float *restrict u, uint32_t kp,
                     float *restrict out) {
  for (uint32_t i = 0; i < n; i++)
    out[i] = rs_mf_dot(u, items + (size_t)i * kp, kp);
  if (bias)
    for (uint32_t i = 0; i < n; i++)
      out[i] += bias[i];
}
