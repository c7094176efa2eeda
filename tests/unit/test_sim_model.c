/* The closed-loop simulator's user model (examples/simulator/sim_model.c):
 * determinism, the click model's monotonicity, the oracle's optimality,
 * drift and item arrival. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "examples/generator/generator.h"
#include "examples/simulator/sim_model.h"

static rs_sim_t *make(uint64_t seed, double drift) {
  rs_sim_opts_t o;
  rs_sim_opts_default(&o);
  o.seed = seed;
  o.users = 50;
  o.items = 400;
  o.drift = drift;
  rs_sim_t *s = rs_sim_new(&o);
  cr_assert_not_null(s);
  return s;
}

Test(sim_model, deterministic_by_seed) {
  rs_sim_t *a = make(7, 0.2), *b = make(7, 0.2), *c = make(8, 0.2);
  uint64_t ra = 1, rb = 1, rc = 1;
  int differs = 0;
  for (int k = 0; k < 200; k++) {
    uint32_t ia = rs_sim_organic(a, (uint32_t)k % 50, k * 0.1, &ra);
    uint32_t ib = rs_sim_organic(b, (uint32_t)k % 50, k * 0.1, &rb);
    uint32_t ic = rs_sim_organic(c, (uint32_t)k % 50, k * 0.1, &rc);
    cr_assert_eq(ia, ib);
    cr_assert_eq(rs_sim_z(a, 3, ia, k), rs_sim_z(b, 3, ia, k));
    differs |= ia != ic;
  }
  cr_assert(differs, "another seed gives other choices");
  rs_sim_destroy(a);
  rs_sim_destroy(b);
  rs_sim_destroy(c);
}

Test(sim_model, tastes_are_the_generators) {
  /* At t = 0 (no drift yet) the affinity is the generator's. */
  rs_sim_t *s = make(42, 0.5);
  rs_gen_opts_t go;
  rs_gen_opts_default(&go);
  go.seed = 42;
  go.users = 50;
  go.items = 400;
  rs_gen_t *g = rs_gen_new(&go);
  cr_assert_not_null(g);
  for (uint32_t u = 0; u < 50; u += 7)
    for (uint32_t i = 0; i < 400; i += 37)
      cr_assert_float_eq(rs_sim_z(s, u, i, 0), rs_gen_affinity(g, u, i), 1e-5);
  rs_gen_destroy(g);
  rs_sim_destroy(s);
}

Test(sim_model, click_probability_monotone) {
  rs_sim_t *s = make(1, 0);
  for (double z = -4; z < 4; z += 0.25)
    cr_assert_lt(rs_sim_pref(s, z), rs_sim_pref(s, z + 0.25));
  for (uint32_t k = 0; k < 50; k++)
    cr_assert_gt(rs_sim_position_bias(k), rs_sim_position_bias(k + 1));
  cr_assert_float_eq(rs_sim_position_bias(0), 1.0, 1e-12);
  /* click = pref x bias: higher preference and earlier slot click more. */
  uint32_t lo = 0, hi = 0;
  for (uint32_t i = 1; i < 400; i++) {
    if (rs_sim_z(s, 2, i, 0) < rs_sim_z(s, 2, lo, 0))
      lo = i;
    if (rs_sim_z(s, 2, i, 0) > rs_sim_z(s, 2, hi, 0))
      hi = i;
  }
  for (uint32_t k = 0; k < 10; k++) {
    cr_assert_gt(rs_sim_click_prob(s, 2, hi, k, 0),
                 rs_sim_click_prob(s, 2, lo, k, 0));
    cr_assert_gt(rs_sim_click_prob(s, 2, hi, k, 0),
                 rs_sim_click_prob(s, 2, hi, k + 1, 0));
    double p = rs_sim_click_prob(s, 2, hi, k, 0);
    cr_assert(p > 0 && p < 1);
  }
  rs_sim_destroy(s);
}

Test(sim_model, oracle_beats_every_list) {
  rs_sim_t *s = make(3, 0.2);
  uint64_t rng = 9;
  for (uint32_t u = 0; u < 50; u++) {
    double t = u * 1.0;
    double oracle = rs_sim_oracle_ctr(s, u, 10, t);
    /* Random lists, and the oracle's own items in a worse order. */
    for (int r = 0; r < 20; r++)
      cr_assert_geq(oracle + 1e-12, rs_sim_random_ctr(s, u, 10, t, &rng));
    uint32_t present = rs_sim_items_at(s, t), best[10] = {0};
    double bz[10];
    for (int k = 0; k < 10; k++)
      bz[k] = -1e9;
    for (uint32_t i = 0; i < present; i++) {
      double z = rs_sim_z(s, u, i, t);
      for (int k = 0; k < 10; k++)
        if (z > bz[k]) {
          memmove(bz + k + 1, bz + k, (size_t)(9 - k) * sizeof *bz);
          memmove(best + k + 1, best + k, (size_t)(9 - k) * sizeof *best);
          bz[k] = z;
          best[k] = i;
          break;
        }
    }
    cr_assert_float_eq(rs_sim_list_ctr(s, u, best, 10, t), oracle, 1e-9);
    uint32_t rev[10];
    for (int k = 0; k < 10; k++)
      rev[k] = best[9 - k];
    cr_assert_lt(rs_sim_list_ctr(s, u, rev, 10, t), oracle);
  }
  rs_sim_destroy(s);
}

Test(sim_model, realised_clicks_match_expectation) {
  /* Bernoulli draws at the model's probabilities average to the expected
   * CTR the command reports (4 standard errors). */
  rs_sim_t *s = make(5, 0);
  uint64_t rng = 11;
  uint32_t list[10];
  for (uint32_t k = 0; k < 10; k++)
    list[k] = k * 13;
  double expect = rs_sim_list_ctr(s, 4, list, 10, 0);
  long clicks = 0, n = 0;
  for (int r = 0; r < 20000; r++)
    for (uint32_t k = 0; k < 10; k++, n++)
      clicks += rs_sim_unit(&rng) < rs_sim_click_prob(s, 4, list[k], k, 0);
  double got = (double)clicks / (double)n;
  double se = sqrt(expect * (1 - expect) / (double)n);
  cr_assert_lt(fabs(got - expect), 4 * se, "got %f expected %f", got, expect);
  rs_sim_destroy(s);
}

Test(sim_model, organic_choice_follows_taste) {
  /* Chosen items have a higher mean affinity than uniform ones. */
  rs_sim_t *s = make(6, 0);
  uint64_t rng = 3;
  double chosen = 0, uniform = 0;
  for (int r = 0; r < 4000; r++) {
    uint32_t u = (uint32_t)r % 50;
    chosen += rs_sim_z(s, u, rs_sim_organic(s, u, 0, &rng), 0);
    uniform += rs_sim_z(s, u, (uint32_t)(rs_sim_rand(&rng) % 320), 0);
  }
  cr_assert_gt(chosen / 4000, uniform / 4000 + 0.5);
  rs_sim_destroy(s);
}

Test(sim_model, drift_and_new_items) {
  rs_sim_t *s = make(2, 1.0);
  /* 20% of 400 items arrive over the 60 s horizon. */
  cr_assert_eq(rs_sim_items_at(s, 0), 320);
  cr_assert_eq(rs_sim_items_at(s, 30), 360);
  cr_assert_eq(rs_sim_items_at(s, 60), 400);
  cr_assert_eq(rs_sim_items_at(s, 1e9), 400);
  uint64_t rng = 1;
  for (int r = 0; r < 1000; r++)
    cr_assert_lt(rs_sim_organic(s, 1, 0, &rng), 320);
  /* Tastes move: after pi/2 radians (1.57 min at 1 rad/min) the affinity
   * is the drift target's, unrelated to the start. */
  double moved = 0;
  for (uint32_t i = 0; i < 400; i++)
    moved += fabs(rs_sim_z(s, 1, i, 0) - rs_sim_z(s, 1, i, 94.25));
  cr_assert_gt(moved / 400, 0.5);
  rs_sim_t *still = make(2, 0);
  for (uint32_t i = 0; i < 400; i += 11)
    cr_assert_float_eq(rs_sim_z(still, 1, i, 0), rs_sim_z(still, 1, i, 500),
                       1e-12);
  rs_sim_destroy(still);
  rs_sim_destroy(s);
}

Test(sim_model, ids_and_bad_options) {
  rs_sim_t *s = make(2, 0);
  uint32_t v;
  cr_assert_eq(rs_sim_parse_item(s, "i399", 4, &v), 0);
  cr_assert_eq(v, 399);
  cr_assert_eq(rs_sim_parse_item(s, "i400", 4, &v), -1);
  cr_assert_eq(rs_sim_parse_item(s, "i01", 3, &v), -1);
  cr_assert_eq(rs_sim_parse_item(s, "u1", 2, &v), -1);
  cr_assert_eq(rs_sim_parse_item(s, "i", 1, &v), -1);
  cr_assert_eq(rs_sim_parse_user(s, "u49", 3, &v), 0);
  cr_assert_eq(rs_sim_parse_user(s, "u50", 3, &v), -1);
  rs_sim_destroy(s);
  rs_sim_opts_t o;
  rs_sim_opts_default(&o);
  o.users = 0;
  cr_assert_null(rs_sim_new(&o));
  rs_sim_opts_default(&o);
  o.new_items = 0.95;
  cr_assert_null(rs_sim_new(&o));
  rs_sim_opts_default(&o);
  o.drift = NAN;
  cr_assert_null(rs_sim_new(&o));
  rs_sim_opts_default(&o);
  o.popularity = -1;
  cr_assert_null(rs_sim_new(&o));
  cr_assert_null(rs_sim_new(NULL));
}
