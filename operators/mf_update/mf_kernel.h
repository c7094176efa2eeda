/* The numerics of mf_update: dot products, the one-step SGD updates of the
 * three objectives, their losses (for finite-difference tests) and
 * full-catalogue scoring. Pure functions on float32 arrays: no state, no
 * allocation, no randomness, so the operator, `recstream eval`, the tests
 * and the benchmark all run exactly this code.
 *
 * Vectors are padded to a multiple of RS_MF_LANES floats (the padding is
 * zero and stays zero: every update of a zero coordinate against a zero
 * coordinate is zero) and RS_MF_ALIGN-byte aligned, so the loops have no
 * tail and the compiler vectorises them (see -fopt-info-vec in
 * docs/OPERATORS.md). Sums use RS_MF_LANES partial accumulators combined in
 * a fixed order: the result does not depend on how the compiler vectorises,
 * and no -ffast-math reassociation is needed.
 */
#ifndef RS_MF_KERNEL_H
#define RS_MF_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#define RS_MF_LANES 8
#define RS_MF_ALIGN 32

/* k rounded up to a multiple of RS_MF_LANES. */
static inline uint32_t rs_mf_padded(uint32_t k) {
  return (k + RS_MF_LANES - 1) / RS_MF_LANES * RS_MF_LANES;
}

/* Hyper-parameters of one step. Step sizes per parameter row: lr_p (user
 * vector), lr_q (the item's, or the positive item's), lr_qj (the negative
 * item's, BPR), lr_bu, lr_bi, lr_bj (biases); they differ only under
 * AdaGrad. reg/reg_bias are the L2 weights, w the event weight, clip the
 * bound on the error term |r - prediction| (ISGD, explicit). When
 * want_gsq is set, a step also stores the squared norm of each row's
 * gradient in gsq: [p, q (or qi), qj, bu, bi (or bi), bj] for AdaGrad. */
typedef struct rs_mf_hyper {
  float lr_p, lr_q, lr_qj, lr_bu, lr_bi, lr_bj;
  float reg, reg_bias, w, clip;
  int want_gsq;
  float gsq[6];
} rs_mf_hyper_t;

/* Fills every step size of h with lr (vectors) and lr_bias (biases). */
void rs_mf_hyper_rates(rs_mf_hyper_t *h, float lr, float lr_bias);

/* <a, b> over kp (padded) floats. */
float rs_mf_dot(const float *a, const float *b, uint32_t kp);

/* ISGD (Vinagre et al. 2014), loss w/2 (1 - <p,q>)^2 + reg/2 (|p|^2 +
 * |q|^2): one simultaneous SGD step on p and q. Returns the prediction
 * <p,q> before the step. */
float rs_mf_step_isgd(float *p, float *q, uint32_t kp, rs_mf_hyper_t *h);

/* BPR (Rendle et al. 2009) for one (positive i, negative j) pair:
 * x = <p, qi - qj> + bi - bj, loss -w log sigmoid(x) + reg/2 (|p|^2 +
 * |qi|^2 + |qj|^2) + reg_bias/2 (bi^2 + bj^2). One simultaneous step on p,
 * qi, qj, bi, bj. Returns x before the step. */
float rs_mf_step_bpr(float *p, float *qi, float *qj, float *bi, float *bj,
                     uint32_t kp, rs_mf_hyper_t *h);

/* Biased MF on a rating r: prediction mu + bu + bi + <p,q>, loss
 * w/2 (r - prediction)^2 + reg/2 (|p|^2 + |q|^2) + reg_bias/2 (bu^2 +
 * bi^2). One simultaneous step on p, q, bu, bi (mu is not learned here: it
 * is the running mean). Returns the prediction before the step. */
float rs_mf_step_explicit(float *p, float *q, float *bu, float *bi, float mu,
                          float r, uint32_t kp, rs_mf_hyper_t *h);

/* The losses the steps descend, in double (for finite differences). */
double rs_mf_loss_isgd(const float *p, const float *q, uint32_t kp,
                       const rs_mf_hyper_t *h);
double rs_mf_loss_bpr(const float *p, const float *qi, const float *qj,
                      float bi, float bj, uint32_t kp, const rs_mf_hyper_t *h);
double rs_mf_loss_explicit(const float *p, const float *q, float bu, float bi,
                           float mu, float r, uint32_t kp,
                           const rs_mf_hyper_t *h);

/* Scores n item rows of `items` (row i at items + i * kp) against u:
 * out[i] = <u, row i> (+ bias[i] when bias is not NULL). */
void rs_mf_score_all(const float *items, const float *bias, uint32_t n,
                     const float *u, uint32_t kp, float *out);

/* 1 when every one of the kp floats is finite. */
int rs_mf_all_finite(const float *v, uint32_t kp);
/* 1 when every one of the kp floats is within [-bound, bound] (so finite). */
int rs_mf_all_within(const float *v, uint32_t kp, float bound);

#endif
