/* The simulator's user model: see sim_model.h. Planted vectors come from
 * the generator (examples/generator), which owns them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "examples/generator/generator.h"
#include "sim_model.h"
#include "util.h"

#define CANDIDATES 16
#define MAX_ORACLE_N 128

struct rs_sim {
  rs_sim_opts_t o;
  rs_gen_t *gen; /* users 2U (second half = drift targets), items I */
};

void rs_sim_opts_default(rs_sim_opts_t *o) {
  o->seed = 42;
  o->users = 200;
  o->items = 1000;
  o->new_items = 0.2;
  o->horizon_s = 60;
  o->drift = 0.2;
  o->affinity = 2.0;
  o->popularity = 0.5;
  o->pref_bias = -3.0;
  o->pref_slope = 1.5;
}

rs_sim_t *rs_sim_new(const rs_sim_opts_t *o) {
  if (!o || o->users < 1 || o->users > (1u << 30) || o->items < 2 ||
      !(o->new_items >= 0 && o->new_items <= 0.9) || !(o->horizon_s > 0) ||
      !(o->drift >= 0 && o->drift <= 10) || !(o->affinity >= 0) ||
      !isfinite(o->affinity) || !(o->popularity >= 0 && o->popularity <= 2) ||
      !isfinite(o->pref_bias) || !(o->pref_slope >= 0) ||
      !isfinite(o->pref_slope))
    return NULL;
  rs_sim_t *s = rs_calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->o = *o;
  rs_gen_opts_t go;
  rs_gen_opts_default(&go);
  go.seed = o->seed;
  go.users = 2 * o->users;
  go.items = o->items;
  s->gen = rs_gen_new(&go);
  if (!s->gen) {
    rs_free(s);
    return NULL;
  }
  return s;
}

void rs_sim_destroy(rs_sim_t *s) {
  if (!s)
    return;
  rs_gen_destroy(s->gen);
  rs_free(s);
}

uint64_t rs_sim_rand(uint64_t *state) {
  *state += UINT64_C(0x9e3779b97f4a7c15);
  return rs_mix64(*state);
}

double rs_sim_unit(uint64_t *state) {
  return (double)(rs_sim_rand(state) >> 11) * 0x1.0p-53;
}

static uint32_t below(uint64_t *rng, uint32_t n) {
  return (uint32_t)(((rs_sim_rand(rng) >> 32) * (uint64_t)n) >> 32);
}

uint32_t rs_sim_items_at(const rs_sim_t *s, double t_s) {
  double first = s->o.items * (1.0 - s->o.new_items);
  double frac = t_s <= 0 ? 0 : t_s >= s->o.horizon_s ? 1 : t_s / s->o.horizon_s;
  double n = first + (s->o.items - first) * frac;
  uint32_t k = (uint32_t)n;
  if (k < 1)
    k = 1;
  return k > s->o.items ? s->o.items : k;
}

double rs_sim_z(const rs_sim_t *s, uint32_t user, uint32_t item, double t_s) {
  const float *u0 = rs_gen_user_vector(s->gen, user);
  const float *u1 = rs_gen_user_vector(s->gen, s->o.users + user);
  const float *v = rs_gen_item_vector(s->gen, item);
  if (!u0 || !u1 || !v || user >= s->o.users)
    return 0;
  double a = s->o.drift * (t_s > 0 ? t_s : 0) / 60.0;
  double c = cos(a), sn = sin(a), d0 = 0, d1 = 0;
  for (int k = 0; k < RS_GEN_DIMS; k++) {
    d0 += (double)u0[k] * v[k];
    d1 += (double)u1[k] * v[k];
  }
  return sqrt((double)RS_GEN_DIMS) * (c * d0 + sn * d1);
}

double rs_sim_pref(const rs_sim_t *s, double z) {
  return 1.0 / (1.0 + exp(-(s->o.pref_bias + s->o.pref_slope * z)));
}

double rs_sim_position_bias(uint32_t position) {
  return 1.0 / log2((double)position + 2.0);
}

double rs_sim_click_prob(const rs_sim_t *s, uint32_t user, uint32_t item,
                         uint32_t position, double t_s) {
  return rs_sim_pref(s, rs_sim_z(s, user, item, t_s)) *
         rs_sim_position_bias(position);
}

uint32_t rs_sim_organic(const rs_sim_t *s, uint32_t user, double t_s,
                        uint64_t *rng) {
  uint32_t present = rs_sim_items_at(s, t_s);
  uint32_t cand[CANDIDATES];
  double w[CANDIDATES], total = 0;
  for (int c = 0; c < CANDIDATES; c++) {
    cand[c] = below(rng, present);
    w[c] = pow(rs_gen_item_popularity(s->gen, cand[c]), s->o.popularity) *
           exp(s->o.affinity * rs_sim_z(s, user, cand[c], t_s));
    total += w[c];
  }
  double r = rs_sim_unit(rng) * total;
  for (int c = 0; c < CANDIDATES; c++) {
    if (r < w[c])
      return cand[c];
    r -= w[c];
  }
  return cand[CANDIDATES - 1];
}

double rs_sim_list_ctr(const rs_sim_t *s, uint32_t user, const uint32_t *items,
                       uint32_t n, double t_s) {
  if (!n)
    return 0;
  double e = 0;
  for (uint32_t k = 0; k < n; k++)
    e += rs_sim_click_prob(s, user, items[k], k, t_s);
  return e / n;
}

double rs_sim_oracle_ctr(const rs_sim_t *s, uint32_t user, uint32_t n,
                         double t_s) {
  uint32_t present = rs_sim_items_at(s, t_s);
  if (n > present)
    n = present;
  if (n > MAX_ORACLE_N)
    n = MAX_ORACLE_N;
  if (!n)
    return 0;
  double top[MAX_ORACLE_N]; /* descending */
  uint32_t have = 0;
  for (uint32_t i = 0; i < present; i++) {
    double p = rs_sim_pref(s, rs_sim_z(s, user, i, t_s));
    if (have == n && p <= top[n - 1])
      continue;
    uint32_t k = have < n ? have++ : n - 1;
    while (k > 0 && top[k - 1] < p) {
      top[k] = top[k - 1];
      k--;
    }
    top[k] = p;
  }
  double e = 0;
  for (uint32_t k = 0; k < n; k++)
    e += top[k] * rs_sim_position_bias(k);
  return e / n;
}

double rs_sim_random_ctr(const rs_sim_t *s, uint32_t user, uint32_t n,
                         double t_s, uint64_t *rng) {
  uint32_t present = rs_sim_items_at(s, t_s);
  if (n > present)
    n = present;
  if (n > MAX_ORACLE_N)
    n = MAX_ORACLE_N;
  uint32_t pick[MAX_ORACLE_N];
  for (uint32_t k = 0; k < n; k++) {
    uint32_t i;
    int dup;
    do { /* n <= present: terminates; rejection is cheap for small n */
      i = below(rng, present);
      dup = 0;
      for (uint32_t j = 0; j < k; j++)
        dup |= pick[j] == i;
    } while (dup);
    pick[k] = i;
  }
  return rs_sim_list_ctr(s, user, pick, n, t_s);
}

static int parse_id(char prefix, uint32_t limit, const char *id, size_t len,
                    uint32_t *out) {
  if (!id || len < 2 || len > 11 || id[0] != prefix)
    return -1;
  uint64_t v = 0;
  for (size_t k = 1; k < len; k++) {
    if (id[k] < '0' || id[k] > '9' || (k == 1 && id[k] == '0' && len > 2))
      return -1;
    v = v * 10 + (uint64_t)(id[k] - '0');
  }
  if (v >= limit)
    return -1;
  *out = (uint32_t)v;
  return 0;
}

int rs_sim_parse_item(const rs_sim_t *s, const char *id, size_t len,
                      uint32_t *item) {
  return parse_id('i', s->o.items, id, len, item);
}

int rs_sim_parse_user(const rs_sim_t *s, const char *id, size_t len,
                      uint32_t *user) {
  return parse_id('u', s->o.users, id, len, user);
}
