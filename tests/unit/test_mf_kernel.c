/* mf_update's numerics (operators/mf_update/mf_kernel.c): every step's
 * update against the gradient of its loss by central finite differences,
 * a worked example checked against hand arithmetic, padding invariance,
 * the AdaGrad gradient norms and the finiteness check. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "operators/mf_update/mf_kernel.h"

#define KP 16 /* k = 13 padded */
#define K 13

static _Alignas(32) float P[KP], Q[KP], QJ[KP];

static void fill(float *v, unsigned seed) {
  memset(v, 0, sizeof(float) * KP);
  for (int i = 0; i < K; i++) {
    seed = seed * 1103515245u + 12345u;
    v[i] = ((float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f) * 0.6f;
  }
}

static rs_mf_hyper_t hyper(float lr) {
  rs_mf_hyper_t h = {.reg = 0.05f, .reg_bias = 0.02f, .w = 1.7f, .clip = 100};
  rs_mf_hyper_rates(&h, lr, lr);
  return h;
}

typedef double (*loss_fn)(void);
static float BI, BJ, BU, MU = 3.2f, R = 4.0f;
static int OBJ;

static double loss_now(void) {
  rs_mf_hyper_t h = hyper(0);
  if (OBJ == 0)
    return rs_mf_loss_isgd(P, Q, KP, &h);
  if (OBJ == 1)
    return rs_mf_loss_bpr(P, Q, QJ, BI, BJ, KP, &h);
  return rs_mf_loss_explicit(P, Q, BU, BI, MU, R, KP, &h);
}

/* Central difference of the loss in parameter *x. */
static double fd(float *x) {
  float keep = *x, eps = 1e-3f;
  *x = keep + eps;
  double up = loss_now();
  *x = keep - eps;
  double down = loss_now();
  *x = keep;
  return (up - down) / (2.0 * eps);
}

/* Applies one step with a tiny rate and checks (before - after) / lr
 * against the finite-difference gradient of every parameter. */
static void check_gradient(int obj) {
  OBJ = obj;
  fill(P, 1);
  fill(Q, 2);
  fill(QJ, 3);
  BI = 0.3f;
  BJ = -0.2f;
  BU = 0.1f;
  float *params[3] = {P, Q, QJ};
  float *biases[3] = {&BU, &BI, &BJ};
  double g[3][KP], gb[3];
  for (int v = 0; v < 3; v++)
    for (int i = 0; i < KP; i++)
      g[v][i] = fd(&params[v][i]);
  for (int b = 0; b < 3; b++)
    gb[b] = fd(biases[b]);
  float p0[KP], q0[KP], qj0[KP], bu0 = BU, bi0 = BI, bj0 = BJ;
  memcpy(p0, P, sizeof P);
  memcpy(q0, Q, sizeof Q);
  memcpy(qj0, QJ, sizeof QJ);
  const float lr = 1e-3f;
  rs_mf_hyper_t h = hyper(lr);
  if (obj == 0)
    rs_mf_step_isgd(P, Q, KP, &h);
  else if (obj == 1)
    rs_mf_step_bpr(P, Q, QJ, &BI, &BJ, KP, &h);
  else
    rs_mf_step_explicit(P, Q, &BU, &BI, MU, R, KP, &h);
  float *before[3] = {p0, q0, qj0};
  int checked = 0;
  for (int v = 0; v < 3; v++)
    for (int i = 0; i < KP; i++) {
      double step = -((double)params[v][i] - before[v][i]) / lr;
      if (obj != 1 && v == 2) {
        cr_assert_eq(params[v][i], before[v][i], "qj moved without bpr");
        continue;
      }
      cr_assert(fabs(step - g[v][i]) <= 2e-3 + 2e-3 * fabs(g[v][i]),
                "objective %d vector %d [%d]: step %.6f, gradient %.6f", obj, v,
                i, step, g[v][i]);
      checked++;
    }
  float bafter[3] = {BU, BI, BJ}, bbefore[3] = {bu0, bi0, bj0};
  for (int b = 0; b < 3; b++) {
    double step = -((double)bafter[b] - bbefore[b]) / lr;
    int used = obj == 2 ? b < 2 : obj == 1 ? b > 0 : 0;
    if (!used) {
      cr_assert_eq(bafter[b], bbefore[b], "bias %d moved", b);
      continue;
    }
    cr_assert(fabs(step - gb[b]) <= 2e-3 + 2e-3 * fabs(gb[b]),
              "objective %d bias %d: step %.6f, gradient %.6f", obj, b, step,
              gb[b]);
  }
  /* Padding stays zero, and the gradients are not all trivially zero. */
  for (int i = K; i < KP; i++)
    cr_assert(P[i] == 0 && Q[i] == 0 && QJ[i] == 0);
  double norm = 0;
  for (int i = 0; i < K; i++)
    norm += fabs(g[0][i]);
  cr_assert_gt(norm, 0.05, "degenerate test point");
  cr_assert_gt(checked, 2 * K - 1);
}

Test(mf_kernel, isgd_step_is_the_loss_gradient) {
  check_gradient(0);
}
Test(mf_kernel, bpr_step_is_the_loss_gradient) {
  check_gradient(1);
}
Test(mf_kernel, explicit_step_is_the_loss_gradient) {
  check_gradient(2);
}

/* One explicit step on k = 2, worked by hand:
 *   pred = mu + bu + bi + <p,q> = 3 + 0 + 0.5 + (0.1*0.3 + 0.2*-0.1) = 3.51
 *   e    = r - pred = 4 - 3.51 = 0.49
 *   p1 = 0.1  + 0.1 * (0.49 *  0.3 - 0.1 *  0.1) = 0.1137
 *   p2 = 0.2  + 0.1 * (0.49 * -0.1 - 0.1 *  0.2) = 0.1931
 *   q1 = 0.3  + 0.1 * (0.49 *  0.1 - 0.1 *  0.3) = 0.3019
 *   q2 = -0.1 + 0.1 * (0.49 *  0.2 - 0.1 * -0.1) = -0.0892
 *   bu = 0    + 0.2 * (0.49 - 0.05 * 0)          = 0.098
 *   bi = 0.5  + 0.2 * (0.49 - 0.05 * 0.5)        = 0.593 */
Test(mf_kernel, explicit_step_by_hand) {
  _Alignas(32) float p[8] = {0.1f, 0.2f}, q[8] = {0.3f, -0.1f};
  float bu = 0, bi = 0.5f;
  rs_mf_hyper_t h = {.reg = 0.1f, .reg_bias = 0.05f, .w = 1, .clip = 10};
  rs_mf_hyper_rates(&h, 0.1f, 0.2f);
  float pred = rs_mf_step_explicit(p, q, &bu, &bi, 3.0f, 4.0f, 8, &h);
  cr_assert_float_eq(pred, 3.51f, 1e-6);
  cr_assert_float_eq(p[0], 0.1137f, 1e-6);
  cr_assert_float_eq(p[1], 0.1931f, 1e-6);
  cr_assert_float_eq(q[0], 0.3019f, 1e-6);
  cr_assert_float_eq(q[1], -0.0892f, 1e-6);
  cr_assert_float_eq(bu, 0.098f, 1e-6);
  cr_assert_float_eq(bi, 0.593f, 1e-6);
}

/* ISGD by hand: <p,q> = 0.5*0.4 + 0.1*0.2 = 0.22, e = 0.78, w = 2:
 *   p = 0.5 + 0.1*(1.56*0.4 - 0) = 0.5624; q = 0.4 + 0.1*1.56*0.5 = 0.478 */
Test(mf_kernel, isgd_step_by_hand) {
  _Alignas(32) float p[8] = {0.5f, 0.1f}, q[8] = {0.4f, 0.2f};
  rs_mf_hyper_t h = {.reg = 0, .w = 2, .clip = 10};
  rs_mf_hyper_rates(&h, 0.1f, 0);
  float pred = rs_mf_step_isgd(p, q, 8, &h); /* the macro evaluates twice */
  cr_assert_float_eq(pred, 0.22f, 1e-6);
  cr_assert_float_eq(p[0], 0.5624f, 1e-6);
  cr_assert_float_eq(p[1], 0.1f + 0.1f * 1.56f * 0.2f, 1e-6);
  cr_assert_float_eq(q[0], 0.478f, 1e-6);
  cr_assert_float_eq(q[1], 0.2f + 0.1f * 1.56f * 0.1f, 1e-6);
}

Test(mf_kernel, error_clip_bounds_the_step) {
  _Alignas(32) float p[8] = {1}, q[8] = {1};
  float bu = 0, bi = 0;
  rs_mf_hyper_t h = {.reg = 0, .w = 1, .clip = 0.5f};
  rs_mf_hyper_rates(&h, 0.1f, 0.1f);
  /* r - pred = 1000 - 1 is clipped to 0.5 */
  rs_mf_step_explicit(p, q, &bu, &bi, 0, 1000, 8, &h);
  cr_assert_float_eq(p[0], 1.05f, 1e-6);
  cr_assert_float_eq(bu, 0.05f, 1e-6);
}

Test(mf_kernel, adagrad_norms_are_the_gradient_norms) {
  fill(P, 7);
  fill(Q, 8);
  rs_mf_hyper_t h = hyper(0);
  h.want_gsq = 1;
  float pred = rs_mf_dot(P, Q, KP);
  double g = h.w * (1.0 - pred), np = 0, nq = 0;
  for (int i = 0; i < KP; i++) {
    double a = g * Q[i] - h.reg * P[i], b = g * P[i] - h.reg * Q[i];
    np += a * a;
    nq += b * b;
  }
  rs_mf_step_isgd(P, Q, KP, &h); /* lr 0: only the norms */
  cr_assert(fabs(h.gsq[0] - np) < 1e-5 * (1 + np), "%g vs %g", h.gsq[0], np);
  cr_assert(fabs(h.gsq[1] - nq) < 1e-5 * (1 + nq), "%g vs %g", h.gsq[1], nq);
  cr_assert_gt(np, 0);
}

Test(mf_kernel, dot_score_all_and_finite) {
  _Alignas(32) float items[3 * 8] = {1,  2, 0, 0, 0, 0, 0, 0, //
                                     0,  0, 3, 0, 0, 0, 0, 1, //
                                     -1, 0, 0, 0, 0, 0, 0, 0};
  _Alignas(32) float u[8] = {1, 1, 1, 1, 1, 1, 1, 2};
  float bias[3] = {0.5f, 0, 0}, out[3];
  rs_mf_score_all(items, bias, 3, u, 8, out);
  cr_assert_float_eq(out[0], 3.5f, 1e-6);
  cr_assert_float_eq(out[1], 5.0f, 1e-6);
  cr_assert_float_eq(out[2], -1.0f, 1e-6);
  rs_mf_score_all(items, NULL, 3, u, 8, out);
  cr_assert_float_eq(out[0], 3.0f, 1e-6);
  cr_assert(rs_mf_all_finite(u, 8));
  u[5] = NAN;
  cr_assert_not(rs_mf_all_finite(u, 8));
  u[5] = INFINITY;
  cr_assert_not(rs_mf_all_finite(u, 8));
  u[5] = -INFINITY;
  cr_assert_not(rs_mf_all_finite(u, 8));
  u[5] = 3.4e38f;
  cr_assert(rs_mf_all_finite(u, 8));
  /* The guard's bound: every component within [-bound, bound], so finite;
   * NaN is never within. Any lane, and the last of a second block. */
  float w[16] = {0};
  cr_assert(rs_mf_all_within(w, 16, 1e4f));
  w[3] = 1e4f;
  w[15] = -1e4f;
  cr_assert(rs_mf_all_within(w, 16, 1e4f));
  w[15] = -10001.0f;
  cr_assert_not(rs_mf_all_within(w, 16, 1e4f));
  cr_assert(rs_mf_all_within(w, 8, 1e4f), "only the first 8 are looked at");
  w[15] = 0;
  w[6] = NAN;
  cr_assert_not(rs_mf_all_within(w, 16, 1e4f));
  w[6] = INFINITY;
  cr_assert_not(rs_mf_all_within(w, 16, 1e4f));
  w[6] = 3.4e38f;
  cr_assert_not(rs_mf_all_within(w, 16, 1e4f));
  cr_assert_eq(rs_mf_padded(1), 8);
  cr_assert_eq(rs_mf_padded(8), 8);
  cr_assert_eq(rs_mf_padded(65), 72);
}
