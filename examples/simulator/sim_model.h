/* The closed-loop simulator's user model (`recstream simulate`).
 *
 * Pure and deterministic, no I/O, no clock: the caller passes the simulated
 * time. Tastes come from the generator's planted latent vectors
 * (examples/generator, rs_gen_user_vector / rs_gen_item_vector), so the
 * simulator's users are the generator's users. On top of them:
 *  - Drift. User u's true vector at time t (seconds) is
 *    cos(a) * v(u) + sin(a) * v(U + u), a = drift * t / 60: it rotates from
 *    its planted vector towards a second planted vector (the generator's
 *    user U + u) at `drift` radians per minute. Both are N(0, 1/8) per
 *    component, so the affinity z = sqrt(8) <u(t), i> stays ~N(0, 1).
 *  - New items. Items i0 .. i<items-1>; the first items * (1 - new_items)
 *    exist at t = 0, the rest arrive at a constant rate until `horizon_s`.
 *  - Organic choice. A user picks an item as the generator does in spirit
 *    (popularity x taste): 16 candidates drawn uniformly from the items
 *    present, one chosen with probability ~ pop(i)^popularity * exp(affinity *
 * z).
 *  - Clicks (position-based model). Shown item i at 0-based position k is
 *    clicked with probability pref(z) * bias(k), pref(z) = sigmoid(bias +
 *    slope * z), bias(k) = 1 / log2(k + 2), independently per slot.
 *  - CTR is clicks per shown item. The expected CTR of a list is
 *    sum_k pref(z_k) bias(k) / n. The oracle's list is the n items of
 *    highest pref in descending order (best possible by the rearrangement
 *    inequality); the random policy's is n distinct uniform items.
 */
#ifndef RS_SIM_MODEL_H
#define RS_SIM_MODEL_H

#include <stddef.h>
#include <stdint.h>

typedef struct rs_sim_opts {
  uint64_t seed;     /* default 42 */
  uint32_t users;    /* >= 1; default 200 */
  uint32_t items;    /* >= 2; default 1000 */
  double new_items;  /* fraction of items arriving during the run, [0, 0.9];
                        default 0.2 */
  double horizon_s;  /* time by which all items have arrived, > 0; 60 */
  double drift;      /* radians per minute, [0, 10]; default 0.2 */
  double affinity;   /* organic choice inverse temperature, >= 0; 2.0 */
  double popularity; /* exponent on the generator's popularity in the organic
                       choice, [0, 2]; default 0.5 */
  double pref_bias;  /* default -3.0 */
  double pref_slope; /* >= 0; default 1.5 */
} rs_sim_opts_t;

void rs_sim_opts_default(rs_sim_opts_t *o);

typedef struct rs_sim rs_sim_t;

/* NULL when an option is out of range or memory is short. */
rs_sim_t *rs_sim_new(const rs_sim_opts_t *o);
void rs_sim_destroy(rs_sim_t *s);

/* A splitmix64 stream; the caller owns the state. */
uint64_t rs_sim_rand(uint64_t *state);
double rs_sim_unit(uint64_t *state); /* [0, 1) */

/* Items present at time t (the first ones; never fewer than 1). */
uint32_t rs_sim_items_at(const rs_sim_t *s, double t_s);
/* True affinity z of user to item at time t (drifted). */
double rs_sim_z(const rs_sim_t *s, uint32_t user, uint32_t item, double t_s);
/* sigmoid(pref_bias + pref_slope * z). */
double rs_sim_pref(const rs_sim_t *s, double z);
/* 1 / log2(position + 2), position 0-based. */
double rs_sim_position_bias(uint32_t position);
double rs_sim_click_prob(const rs_sim_t *s, uint32_t user, uint32_t item,
                         uint32_t position, double t_s);
/* One organic choice (see above) among the items present at t. */
uint32_t rs_sim_organic(const rs_sim_t *s, uint32_t user, double t_s,
                        uint64_t *rng);
/* Expected clicks per shown item of a list (items best first). */
double rs_sim_list_ctr(const rs_sim_t *s, uint32_t user, const uint32_t *items,
                       uint32_t n, double t_s);
/* The oracle's expected CTR for a list of n (n <= items present). */
double rs_sim_oracle_ctr(const rs_sim_t *s, uint32_t user, uint32_t n,
                         double t_s);
/* The expected CTR of one random list of n distinct present items. */
double rs_sim_random_ctr(const rs_sim_t *s, uint32_t user, uint32_t n,
                         double t_s, uint64_t *rng);

/* Parses "i<n>" (n < items) into *item: 0, or -1 when not one of ours. */
int rs_sim_parse_item(const rs_sim_t *s, const char *id, size_t len,
                      uint32_t *item);
int rs_sim_parse_user(const rs_sim_t *s, const char *id, size_t len,
                      uint32_t *user);

#endif
