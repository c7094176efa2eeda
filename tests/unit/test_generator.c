/* Tests of the synthetic interaction generator: the model's promises
 * (determinism, ordering, id ranges, event mix, popularity skew, sessions,
 * planted tastes a learner can find) and the `generate` command (usage
 * errors, the Avro file, Kafka end to end on librdkafka's mock cluster).
 * Statistical checks use fixed seeds and margins far from the observed
 * values; each has a control run showing that the measure can fail.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <avro.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "codec.h"
#include "examples/generator/generator.h"
#include "util.h"

/* ---- helpers ---- */

static uint32_t id_of(const char *s, uint32_t len, char prefix) {
  cr_assert(len >= 2 && s[0] == prefix, "bad id '%.*s'", (int)len, s);
  cr_assert_eq(s[len], '\0', "id not NUL-terminated");
  uint64_t v = 0;
  for (uint32_t i = 1; i < len; i++) {
    cr_assert(s[i] >= '0' && s[i] <= '9', "bad id '%.*s'", (int)len, s);
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  cr_assert(v <= UINT32_MAX);
  return (uint32_t)v;
}

static int opt_str_eq(const char *a, uint32_t al, const char *b, uint32_t bl) {
  if (!a || !b)
    return a == b;
  return al == bl && !memcmp(a, b, al);
}

static int events_equal(const rs_interaction_t *a, const rs_interaction_t *b) {
  return opt_str_eq(a->user, a->user_len, b->user, b->user_len) &&
         opt_str_eq(a->item, a->item_len, b->item, b->item_len) &&
         opt_str_eq(a->device, a->device_len, b->device, b->device_len) &&
         opt_str_eq(a->page, a->page_len, b->page, b->page_len) &&
         a->event_type == b->event_type && a->has_value == b->has_value &&
         a->value == b->value && a->timestamp_ms == b->timestamp_ms;
}

static rs_gen_t *new_gen(uint64_t seed, uint32_t users, uint32_t items) {
  rs_gen_opts_t o;
  rs_gen_opts_default(&o);
  o.seed = seed;
  o.users = users;
  o.items = items;
  rs_gen_t *g = rs_gen_new(&o);
  cr_assert_not_null(g);
  return g;
}

/* ---- the model ---- */

Test(generator, same_seed_same_stream_other_seed_other_stream) {
  rs_gen_t *a = new_gen(42, 1000, 5000), *b = new_gen(42, 1000, 5000);
  rs_gen_t *c = new_gen(43, 1000, 5000);
  rs_interaction_t ea, eb, ec;
  int differ = 0;
  for (int i = 0; i < 10000; i++) {
    cr_assert_eq(rs_gen_next(a, &ea), 0);
    cr_assert_eq(rs_gen_next(b, &eb), 0);
    cr_assert_eq(rs_gen_next(c, &ec), 0);
    cr_assert(events_equal(&ea, &eb), "same seed diverged at event %d", i);
    differ += !events_equal(&ea, &ec);
  }
  cr_assert_gt(differ, 9000, "seed 43 repeats seed 42 (%d differ)", differ);
  cr_assert_eq(rs_gen_count(a), 10000);
  cr_assert_eq(memcmp(rs_gen_user_vector(a, 7), rs_gen_user_vector(b, 7),
                      sizeof(float) * RS_GEN_DIMS),
               0);
  cr_assert_neq(memcmp(rs_gen_user_vector(a, 7), rs_gen_user_vector(c, 7),
                       sizeof(float) * RS_GEN_DIMS),
                0);
  rs_gen_destroy(a);
  rs_gen_destroy(b);
  rs_gen_destroy(c);
}

Test(generator, latent_vectors_depend_only_on_seed_and_id) {
  rs_gen_t *a = new_gen(5, 100, 200), *b = new_gen(5, 300, 50);
  cr_assert_eq(memcmp(rs_gen_user_vector(a, 99), rs_gen_user_vector(b, 99),
                      sizeof(float) * RS_GEN_DIMS),
               0);
  cr_assert_eq(memcmp(rs_gen_item_vector(a, 49), rs_gen_item_vector(b, 49),
                      sizeof(float) * RS_GEN_DIMS),
               0);
  cr_assert_null(rs_gen_user_vector(a, 100));
  cr_assert_null(rs_gen_item_vector(b, 50));
  rs_gen_destroy(a);
  rs_gen_destroy(b);
}

Test(generator, rejects_bad_options) {
  rs_gen_opts_t o;
  rs_gen_opts_default(&o);
  o.users = 0;
  cr_assert_null(rs_gen_new(&o));
  rs_gen_opts_default(&o);
  o.items = 0;
  cr_assert_null(rs_gen_new(&o));
  rs_gen_opts_default(&o);
  o.affinity = -1;
  cr_assert_null(rs_gen_new(&o));
  rs_gen_opts_default(&o);
  o.start_time_ms = -5;
  cr_assert_null(rs_gen_new(&o));
  rs_gen_opts_default(&o);
  o.item_zipf = -0.5;
  cr_assert_null(rs_gen_new(&o));
  rs_gen_opts_default(&o);
  o.candidates = 0;
  cr_assert_null(rs_gen_new(&o));
  o.candidates = RS_GEN_MAX_CANDIDATES + 1;
  cr_assert_null(rs_gen_new(&o));
  o.candidates = RS_GEN_MAX_CANDIDATES;
  rs_gen_t *g = rs_gen_new(&o);
  cr_assert_not_null(g);
  rs_gen_destroy(g);
  cr_assert_null(rs_gen_new(NULL));
  cr_assert_eq(rs_gen_next(NULL, NULL), RS_EINVAL);
}

Test(generator, timestamps_start_at_start_time_and_never_decrease) {
  rs_gen_opts_t o;
  rs_gen_opts_default(&o);
  o.start_time_ms = 1000;
  rs_gen_t *g = rs_gen_new(&o);
  rs_interaction_t ev;
  rs_gen_next(g, &ev);
  cr_assert_eq(ev.timestamp_ms, 1000);
  int64_t prev = ev.timestamp_ms;
  for (int i = 1; i < 200000; i++) {
    rs_gen_next(g, &ev);
    cr_assert_geq(ev.timestamp_ms, prev, "event %d goes back in time", i);
    prev = ev.timestamp_ms;
  }
  cr_assert_gt(prev, 1000 + INT64_C(86400000), "200k events in under a day");
  rs_gen_destroy(g);
}

Test(generator, ids_within_ranges_and_every_user_appears) {
  enum { U = 37, I = 53 };
  rs_gen_t *g = new_gen(9, U, I);
  int seen_user[U] = {0}, seen_item[I] = {0};
  rs_interaction_t ev;
  for (int i = 0; i < 20000; i++) {
    rs_gen_next(g, &ev);
    uint32_t u = id_of(ev.user, ev.user_len, 'u');
    uint32_t it = id_of(ev.item, ev.item_len, 'i');
    cr_assert_lt(u, U);
    cr_assert_lt(it, I);
    seen_user[u] = seen_item[it] = 1;
    if (ev.device)
      cr_assert_eq(strlen(ev.device), ev.device_len);
    if (ev.page)
      cr_assert_eq(strlen(ev.page), ev.page_len);
  }
  for (int u = 0; u < U; u++)
    cr_assert(seen_user[u], "user u%d never acts", u);
  int items = 0;
  for (int i = 0; i < I; i++)
    items += seen_item[i];
  cr_assert_gt(items, I / 2);
  rs_gen_destroy(g);
}

Test(generator, event_mix_is_a_funnel_with_values) {
  enum { N = 200000, U = 1000 };
  rs_gen_t *g = new_gen(42, U, 5000);
  long n[RS_EVENT__COUNT] = {0};
  /* per user: last event type and item, to check funnel order */
  int32_t *last_type = calloc(U, sizeof(int32_t));
  uint32_t *last_item = calloc(U, sizeof(uint32_t));
  for (int u = 0; u < U; u++)
    last_type[u] = -1;
  rs_interaction_t ev;
  for (int i = 0; i < N; i++) {
    rs_gen_next(g, &ev);
    cr_assert(ev.event_type >= 0 && ev.event_type < RS_EVENT__COUNT);
    n[ev.event_type]++;
    uint32_t u = id_of(ev.user, ev.user_len, 'u');
    uint32_t it = id_of(ev.item, ev.item_len, 'i');
    switch (ev.event_type) {
    case RS_EVENT_VIEW:
      cr_assert(ev.has_value && ev.value > 0 && ev.value <= 900,
                "VIEW dwell %g", ev.value);
      break;
    case RS_EVENT_RATING:
      cr_assert(ev.has_value && ev.value >= 1 && ev.value <= 5 &&
                    ev.value == floor(ev.value),
                "rating %g", ev.value);
      break;
    default: /* each funnel step follows the previous one, same item */
      cr_assert_not(ev.has_value);
      cr_assert_eq(last_type[u], ev.event_type - 1,
                   "event %d: type %d after %d", i, ev.event_type,
                   last_type[u]);
      cr_assert_eq(last_item[u], it);
    }
    last_type[u] = ev.event_type;
    last_item[u] = it;
  }
  cr_assert_gt(n[RS_EVENT_VIEW], N / 2, "VIEW is not the majority");
  cr_assert_gt(n[RS_EVENT_VIEW], n[RS_EVENT_CLICK]);
  cr_assert_gt(n[RS_EVENT_CLICK], n[RS_EVENT_ADD_TO_CART]);
  cr_assert_gt(n[RS_EVENT_ADD_TO_CART], n[RS_EVENT_PURCHASE]);
  cr_assert_gt(n[RS_EVENT_PURCHASE], N / 200);
  cr_assert_gt(n[RS_EVENT_RATING], N / 200);
  free(last_type);
  free(last_item);
  rs_gen_destroy(g);
}

/* Share of events that go to the most frequent 1% of items. */
static double top1_share(double item_zipf) {
  enum { N = 100000, I = 5000 };
  rs_gen_opts_t o;
  rs_gen_opts_default(&o);
  o.item_zipf = item_zipf;
  rs_gen_t *g = rs_gen_new(&o);
  long *count = calloc(I, sizeof(long));
  rs_interaction_t ev;
  for (int i = 0; i < N; i++) {
    rs_gen_next(g, &ev);
    count[id_of(ev.item, ev.item_len, 'i')]++;
  }
  long top = 0;
  for (int k = 0; k < I / 100; k++) { /* partial selection of the maxima */
    int best = 0;
    for (int i = 1; i < I; i++)
      if (count[i] > count[best])
        best = i;
    top += count[best];
    count[best] = -1;
  }
  free(count);
  rs_gen_destroy(g);
  return (double)top / N;
}

Test(generator, popularity_is_zipf_skewed) {
  double zipf = top1_share(1.0), flat = top1_share(0.0);
  cr_log_info("top 1%% share: zipf %.3f, flat %.3f", zipf, flat);
  cr_assert_gt(zipf, 0.25, "top 1%% of items get %.3f of events", zipf);
  cr_assert_lt(flat, 0.10, "control without Zipf: top 1%% get %.3f", flat);
}

Test(generator, sessions_are_bursts_separated_by_long_gaps) {
  enum { U = 300 };
  rs_gen_t *g = new_gen(3, U, 1000);
  int64_t *last = calloc(U, sizeof(int64_t));
  long short_gaps = 0, long_gaps = 0;
  rs_interaction_t ev;
  for (int i = 0; i < 100000; i++) {
    rs_gen_next(g, &ev);
    uint32_t u = id_of(ev.user, ev.user_len, 'u');
    if (last[u]) {
      int64_t gap = ev.timestamp_ms - last[u];
      if (gap < 120000) {
        cr_assert_geq(gap, 5000, "in-session gap %lld ms", (long long)gap);
        short_gaps++;
      } else {
        cr_assert_geq(gap, 1800000,
                      "gap of %lld ms is neither in a session "
                      "nor between sessions",
                      (long long)gap);
        cr_assert_leq(gap, 86400000, "gap %lld ms over a day", (long long)gap);
        long_gaps++;
      }
    }
    last[u] = ev.timestamp_ms;
  }
  cr_assert_gt(short_gaps, long_gaps, "sessions of one event");
  cr_assert_gt(long_gaps, 5000, "no session breaks");
  free(last);
  rs_gen_destroy(g);
}

/* Planted structure, measured against ground truth:
 *  d_user: mean affinity of (user, item viewed) minus that of the same item
 *          with a random other user; popularity cancels out, tastes do not.
 *  d_item: mean cosine of two items viewed one after the other by the same
 *          user minus that of the first with a random viewed item: what
 *          co-visitation and factor models learn from.
 *  corr:   Pearson correlation of ratings with affinity. */
typedef struct planted {
  double d_user, d_item, corr, z_purchase, z_view;
} planted_t;

static double cosine(const float *a, const float *b) {
  double ab = 0, aa = 0, bb = 0;
  for (int k = 0; k < RS_GEN_DIMS; k++) {
    ab += (double)a[k] * b[k];
    aa += (double)a[k] * a[k];
    bb += (double)b[k] * b[k];
  }
  return ab / sqrt(aa * bb);
}

static planted_t measure_planted(double affinity) {
  enum { N = 100000, U = 1000, I = 5000 };
  rs_gen_opts_t o;
  rs_gen_opts_default(&o);
  o.affinity = affinity;
  rs_gen_t *g = rs_gen_new(&o);
  uint64_t rng = 12345;
  uint32_t *prev_view = malloc(U * sizeof(uint32_t));
  memset(prev_view, 0xff, U * sizeof(uint32_t));
  uint32_t *views = malloc(N * sizeof(uint32_t));
  size_t nviews = 0;
  double su = 0, si = 0, r = 0, z = 0, rr = 0, zz = 0, rz = 0;
  double zp = 0, zv = 0;
  long nu = 0, ni = 0, nr = 0, np = 0;
  rs_interaction_t ev;
  for (int k = 0; k < N; k++) {
    rs_gen_next(g, &ev);
    uint32_t u = id_of(ev.user, ev.user_len, 'u');
    uint32_t i = id_of(ev.item, ev.item_len, 'i');
    double zi = rs_gen_affinity(g, u, i);
    if (ev.event_type == RS_EVENT_VIEW) {
      uint32_t other = (u + 1 + (uint32_t)(rs_mix64(++rng) % (U - 1))) % U;
      su += zi - rs_gen_affinity(g, other, i);
      nu++;
      zv += zi;
      if (prev_view[u] != UINT32_MAX && nviews > 0) {
        uint32_t rnd = views[rs_mix64(++rng) % nviews];
        const float *a = rs_gen_item_vector(g, prev_view[u]);
        si += cosine(a, rs_gen_item_vector(g, i)) -
              cosine(a, rs_gen_item_vector(g, rnd));
        ni++;
      }
      prev_view[u] = i;
      views[nviews++] = i;
    } else if (ev.event_type == RS_EVENT_RATING) {
      r += ev.value, z += zi, rr += ev.value * ev.value, zz += zi * zi;
      rz += ev.value * zi;
      nr++;
    } else if (ev.event_type == RS_EVENT_PURCHASE) {
      zp += zi;
      np++;
    }
  }
  planted_t p;
  p.d_user = su / (double)nu;
  p.d_item = si / (double)ni;
  double mr = r / nr, mz = z / nr;
  p.corr =
      (rz / nr - mr * mz) / sqrt((rr / nr - mr * mr) * (zz / nr - mz * mz));
  p.z_purchase = zp / (double)np;
  p.z_view = zv / (double)nu;
  free(prev_view);
  free(views);
  rs_gen_destroy(g);
  return p;
}

Test(generator, planted_tastes_are_learnable) {
  planted_t on = measure_planted(2.0), off = measure_planted(0.0);
  cr_log_info("on: d_user %.3f d_item %.3f corr %.3f z_purchase %.2f "
              "z_view %.2f",
              on.d_user, on.d_item, on.corr, on.z_purchase, on.z_view);
  cr_log_info("off: d_user %.3f d_item %.3f corr %.3f z_purchase %.2f "
              "z_view %.2f",
              off.d_user, off.d_item, off.corr, off.z_purchase, off.z_view);
  cr_assert_gt(on.d_user, 0.8, "users' items match their tastes by only %.3f",
               on.d_user);
  cr_assert_lt(fabs(off.d_user), 0.1, "control without tastes: %.3f",
               off.d_user);
  cr_assert_gt(on.d_item, 0.1, "consecutive views alike by only %.3f",
               on.d_item);
  cr_assert_lt(fabs(off.d_item), 0.03, "control without tastes: %.3f",
               off.d_item);
  /* Funnel and ratings follow affinity whatever drove the item choice. */
  cr_assert_gt(on.z_purchase, on.z_view + 0.4, "purchases %.2f, views %.2f",
               on.z_purchase, on.z_view);
  cr_assert_gt(off.z_purchase, off.z_view + 0.4, "purchases %.2f, views %.2f",
               off.z_purchase, off.z_view);
  cr_assert_gt(on.corr, 0.4, "ratings vs affinity: r = %.3f", on.corr);
}

/* Mean planted affinity of viewed items and the share of views on the 1%
 * most popular items, over the first N events of a generator. */
static void view_stats(const rs_gen_opts_t *o, double *mean_z, double *top1) {
  enum { N = 50000 };
  rs_gen_t *g = rs_gen_new(o);
  cr_assert_not_null(g);
  uint32_t top_n = o->items / 100 ? o->items / 100 : 1;
  double cut = 0; /* popularity of the top_n-th most popular item */
  {
    double *p = malloc(sizeof(double) * o->items);
    for (uint32_t i = 0; i < o->items; i++)
      p[i] = rs_gen_item_popularity(g, i);
    for (uint32_t k = 0; k < top_n; k++) {
      uint32_t best = 0;
      for (uint32_t i = 1; i < o->items; i++)
        if (p[i] > p[best])
          best = i;
      cut = p[best];
      p[best] = -1;
    }
    free(p);
  }
  double z = 0;
  long n = 0, top = 0;
  rs_interaction_t ev;
  for (int k = 0; k < N; k++) {
    rs_gen_next(g, &ev);
    if (ev.event_type != RS_EVENT_VIEW)
      continue;
    uint32_t u = id_of(ev.user, ev.user_len, 'u');
    uint32_t i = id_of(ev.item, ev.item_len, 'i');
    z += rs_gen_affinity(g, u, i);
    top += rs_gen_item_popularity(g, i) >= cut;
    n++;
  }
  rs_gen_destroy(g);
  *mean_z = z / (double)n;
  *top1 = (double)top / (double)n;
}

/* The taste-vs-popularity knobs (--zipf, --affinity, --candidates): more
 * candidates and a higher affinity make choices follow taste (higher
 * planted affinity of what users view), a lower Zipf exponent moves views
 * away from the head. Controls: affinity 0 with many candidates is
 * popularity alone (mean affinity ~0). Observed (2,000 items, 50,000
 * events): mean z / top-1% share of views: defaults 1.21 / 0.42; 128
 * candidates and affinity 3 1.84 / 0.36; and zipf 0.5 1.96 / 0.09; and
 * affinity 0 0.00 / 0.09. */
Test(generator, taste_knobs_move_choices_from_popularity_to_taste) {
  rs_gen_opts_t o;
  rs_gen_opts_default(&o);
  o.items = 2000;
  double z_def, top_def, z_pers, top_pers, z_flat, top_flat, z_off, top_off;
  view_stats(&o, &z_def, &top_def);
  o.candidates = 128;
  o.affinity = 3;
  view_stats(&o, &z_pers, &top_pers);
  o.item_zipf = 0.5;
  view_stats(&o, &z_flat, &top_flat);
  o.affinity = 0;
  view_stats(&o, &z_off, &top_off);
  cr_log_info("mean z / top-1%% share: defaults %.2f / %.2f, 128 candidates "
              "affinity 3 %.2f / %.2f, and zipf 0.5 %.2f / %.2f, affinity 0 "
              "%.2f / %.2f",
              z_def, top_def, z_pers, top_pers, z_flat, top_flat, z_off,
              top_off);
  cr_assert_gt(z_pers, z_def + 0.4, "defaults %.2f, personal %.2f", z_def,
               z_pers);
  cr_assert_lt(fabs(z_off), 0.05, "control without taste: %.2f", z_off);
  cr_assert_lt(top_flat, 0.5 * top_pers, "zipf 1 %.2f, zipf 0.5 %.2f", top_pers,
               top_flat);
}

/* The knobs change choices only: planted vectors and (for the same Zipf
 * exponent) popularity stay what they were, which the simulator
 * (examples/simulator/sim_model.c) relies on. */
Test(generator, taste_knobs_leave_vectors_and_popularity_alone) {
  rs_gen_opts_t a, b;
  rs_gen_opts_default(&a);
  rs_gen_opts_default(&b);
  b.affinity = 3;
  b.candidates = 128;
  rs_gen_t *ga = rs_gen_new(&a), *gb = rs_gen_new(&b);
  b.item_zipf = 0.5;
  rs_gen_t *gc = rs_gen_new(&b);
  for (uint32_t u = 0; u < a.users; u++) {
    cr_assert_eq(memcmp(rs_gen_user_vector(ga, u), rs_gen_user_vector(gb, u),
                        sizeof(float) * RS_GEN_DIMS),
                 0);
    cr_assert_eq(memcmp(rs_gen_user_vector(ga, u), rs_gen_user_vector(gc, u),
                        sizeof(float) * RS_GEN_DIMS),
                 0);
  }
  for (uint32_t i = 0; i < a.items; i++) {
    cr_assert_eq(memcmp(rs_gen_item_vector(ga, i), rs_gen_item_vector(gc, i),
                        sizeof(float) * RS_GEN_DIMS),
                 0);
    cr_assert_eq(rs_gen_item_popularity(ga, i), rs_gen_item_popularity(gb, i));
  }
  rs_gen_destroy(ga);
  rs_gen_destroy(gb);
  rs_gen_destroy(gc);
}

/* The default stream is pinned: adding knobs must not change what the
 * defaults generate (documented figures, the replay and crash tests and
 * the simulator were measured on it). FNV-1a over the first 20,000 events;
 * the constant is the stream before --candidates existed. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ c[i]) * UINT64_C(0x100000001b3);
  return h;
}

Test(generator, default_stream_is_pinned) {
  rs_gen_opts_t o;
  rs_gen_opts_default(&o);
  rs_gen_t *g = rs_gen_new(&o);
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  rs_interaction_t ev;
  for (int k = 0; k < 20000; k++) {
    rs_gen_next(g, &ev);
    h = fnv(h, ev.user, ev.user_len);
    h = fnv(h, ev.item, ev.item_len);
    h = fnv(h, &ev.event_type, sizeof ev.event_type);
    h = fnv(h, &ev.value, sizeof ev.value);
    h = fnv(h, &ev.timestamp_ms, sizeof ev.timestamp_ms);
    if (ev.page)
      h = fnv(h, ev.page, ev.page_len);
    if (ev.device)
      h = fnv(h, ev.device, ev.device_len);
  }
  rs_gen_destroy(g);
  cr_log_info("default stream hash %016llx", (unsigned long long)h);
  cr_assert_eq(h, UINT64_C(0x4790c6445ce53389),
               "default stream changed: %016llx", (unsigned long long)h);
}

Test(generator, parse_time) {
  int64_t t;
  cr_assert_eq(rs_gen_parse_time("2026-01-01T00:00:00Z", &t), 0);
  cr_assert_eq(t, RS_GEN_DEFAULT_START_MS);
  cr_assert_eq(rs_gen_parse_time("2026-01-01", &t), 0);
  cr_assert_eq(t, RS_GEN_DEFAULT_START_MS);
  cr_assert_eq(rs_gen_parse_time("2026-01-01T01:30:00+01:30", &t), 0);
  cr_assert_eq(t, RS_GEN_DEFAULT_START_MS);
  cr_assert_eq(rs_gen_parse_time("2025-12-31 23:00:00.250-01:00", &t), 0);
  cr_assert_eq(t, RS_GEN_DEFAULT_START_MS + 250);
  cr_assert_eq(rs_gen_parse_time("2024-02-29T12:00:00Z", &t), 0);
  cr_assert_eq(t, INT64_C(1709208000000));
  cr_assert_eq(rs_gen_parse_time("1767225600000", &t), 0);
  cr_assert_eq(t, RS_GEN_DEFAULT_START_MS);
  const char *bad[] = {"",
                       "2026-01-01T00:00:00", /* no zone */
                       "2026-13-01T00:00:00Z",
                       "2025-02-29T00:00:00Z",
                       "2026-01-01T24:00:00Z",
                       "2026-01-01T00:00:00Zjunk",
                       "1969-12-31T23:59:59Z",
                       "-5",
                       "yesterday"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    cr_assert_neq(rs_gen_parse_time(bad[i], &t), 0, "accepted '%s'", bad[i]);
}

/* ---- the command ---- */

/* Runs the command with stderr captured; returns its exit status. */
static int run_cmd(char *errbuf, size_t errsz, int argc, char **argv) {
  char path[] = "/tmp/rs_gen_stderr_XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  fflush(stderr);
  int saved = dup(2);
  dup2(fd, 2);
  int rc = rs_cmd_generate(argc, argv);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  lseek(fd, 0, SEEK_SET);
  ssize_t n = read(fd, errbuf, errsz - 1);
  errbuf[n > 0 ? n : 0] = '\0';
  close(fd);
  unlink(path);
  fprintf(stderr, "%s", errbuf); /* keep it visible in the test log */
  return rc;
}

/* Runs `generate` with the NULL-terminated arguments that follow. */
static int run_va(char *errbuf, size_t errsz, ...) {
  char *argv[64] = {"generate"};
  int argc = 1;
  va_list ap;
  va_start(ap, errsz);
  for (char *a; (a = va_arg(ap, char *)) && argc < 63;)
    argv[argc++] = a;
  va_end(ap);
  argv[argc] = NULL;
  return run_cmd(errbuf, errsz, argc, argv);
}

#define RUN(buf, ...) run_va(buf, sizeof(buf), __VA_ARGS__, (char *)NULL)

Test(generate_cmd, usage_errors_exit_2_naming_the_flag) {
  char err[4096];
  cr_assert_eq(RUN(err, "--out", "/tmp/x.avro", "--users", "ten"), 2);
  cr_assert_not_null(strstr(err, "--users"), "%s", err);
  cr_assert_not_null(strstr(err, "--help"), "%s", err);
  cr_assert_eq(RUN(err, "--out", "/tmp/x.avro", "--frobnicate"), 2);
  cr_assert_not_null(strstr(err, "--frobnicate"), "%s", err);
  cr_assert_eq(RUN(err, "--out", "/tmp/x.avro", "--events", "-3"), 2);
  cr_assert_not_null(strstr(err, "--events"), "%s", err);
  cr_assert_eq(RUN(err, "--out", "/tmp/x.avro", "--format", "xml"), 2);
  cr_assert_not_null(strstr(err, "--format"), "%s", err);
  cr_assert_eq(RUN(err, "--brokers", "localhost:9092"), 2);
  cr_assert_not_null(strstr(err, "--topic"), "%s", err);
  cr_assert_eq(RUN(err, "--events", "10"), 2); /* no output at all */
  cr_assert_eq(RUN(err, "--brokers", "localhost:9092", "--topic", "t",
                   "--property", "no.such.property=1"),
               2);
  cr_assert_not_null(strstr(err, "no.such.property"), "%s", err);
  cr_assert_eq(RUN(err, "--out", "/tmp/x.avro", "--start-time", "noon"), 2);
  cr_assert_not_null(strstr(err, "--start-time"), "%s", err);
  cr_assert_eq(RUN(err, "--out", "/tmp/x.avro", "--zipf", "-1"), 2);
  cr_assert_not_null(strstr(err, "--zipf"), "%s", err);
  cr_assert_eq(RUN(err, "--out", "/tmp/x.avro", "--affinity", "much"), 2);
  cr_assert_not_null(strstr(err, "--affinity"), "%s", err);
  cr_assert_eq(RUN(err, "--out", "/tmp/x.avro", "--candidates", "0"), 2);
  cr_assert_not_null(strstr(err, "--candidates"), "%s", err);
  cr_assert_eq(RUN(err, "--out", "/tmp/x.avro", "--candidates", "1025"), 2);
  cr_assert_not_null(strstr(err, "--candidates"), "%s", err);
}

Test(generate_cmd, help_lists_every_option_with_defaults) {
  char path[] = "/tmp/rs_gen_stdout_XXXXXX";
  int fd = mkstemp(path);
  fflush(stdout);
  int saved = dup(1);
  dup2(fd, 1);
  char *argv[] = {"generate", "--help", NULL};
  int rc = rs_cmd_generate(2, argv);
  fflush(stdout);
  dup2(saved, 1);
  close(saved);
  char buf[8192];
  lseek(fd, 0, SEEK_SET);
  ssize_t n = read(fd, buf, sizeof buf - 1);
  buf[n > 0 ? n : 0] = '\0';
  close(fd);
  unlink(path);
  cr_assert_eq(rc, 0);
  const char *want[] = {"--brokers",       "--topic",
                        "--users",         "--items",
                        "--events",        "--seed",
                        "--format",        "--schema-id",
                        "--rate",          "--out",
                        "--start-time",    "--bad-every",
                        "--property",      "--zipf",
                        "--affinity",      "--candidates",
                        "default: 1000",   "default: 5000",
                        "default: 100000", "default: 42",
                        "default: avro",   "2026-01-01T00:00:00Z"};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    cr_assert_not_null(strstr(buf, want[i]), "help lacks '%s'", want[i]);
}

static void read_field_str(avro_value_t *rec, const char *name, char *out,
                           size_t outsz) {
  avro_value_t f, b;
  const char *s = NULL;
  size_t len = 0;
  cr_assert_eq(avro_value_get_by_name(rec, name, &f, NULL), 0);
  if (avro_value_get_type(&f) == AVRO_UNION) {
    cr_assert_eq(avro_value_get_current_branch(&f, &b), 0);
    if (avro_value_get_type(&b) == AVRO_NULL) {
      out[0] = '\0';
      return;
    }
    f = b;
  }
  cr_assert_eq(avro_value_get_string(&f, &s, &len), 0);
  snprintf(out, outsz, "%s", s);
}

/* Reads an OCF file and checks it against the generator's stream with the
 * same options, skipping every bad_every-th event (replaced by an invalid
 * record, which the file leaves out). Returns the record count. */
static long check_ocf(const char *path, const rs_gen_opts_t *o,
                      long bad_every) {
  avro_file_reader_t r;
  cr_assert_eq(avro_file_reader(path, &r), 0, "%s", avro_strerror());
  avro_schema_t ws = avro_file_reader_get_writer_schema(r);
  avro_value_iface_t *iface = avro_generic_class_from_schema(ws);
  avro_value_t rec;
  avro_generic_value_new(iface, &rec);
  rs_gen_t *g = rs_gen_new(o);
  long n = 0, k = 0;
  rs_interaction_t ev;
  while (avro_file_reader_read_value(r, &rec) == 0) {
    do {
      rs_gen_next(g, &ev);
      k++;
    } while (bad_every && k % bad_every == 0);
    char user[32], item[32], device[32], page[32];
    read_field_str(&rec, "user_id", user, sizeof user);
    read_field_str(&rec, "item_id", item, sizeof item);
    read_field_str(&rec, "device", device, sizeof device);
    read_field_str(&rec, "page", page, sizeof page);
    avro_value_t f, b;
    int type;
    int64_t ts;
    avro_value_get_by_name(&rec, "event_type", &f, NULL);
    avro_value_get_enum(&f, &type);
    avro_value_get_by_name(&rec, "timestamp", &f, NULL);
    avro_value_get_long(&f, &ts);
    avro_value_get_by_name(&rec, "value", &f, NULL);
    avro_value_get_current_branch(&f, &b);
    double value = 0;
    int has_value = avro_value_get_type(&b) == AVRO_DOUBLE;
    if (has_value)
      avro_value_get_double(&b, &value);
    cr_assert_str_eq(user, ev.user, "record %ld", n);
    cr_assert_str_eq(item, ev.item, "record %ld", n);
    cr_assert_str_eq(device, ev.device ? ev.device : "", "record %ld", n);
    cr_assert_str_eq(page, ev.page ? ev.page : "", "record %ld", n);
    cr_assert_eq(type, ev.event_type, "record %ld", n);
    cr_assert_eq(ts, ev.timestamp_ms, "record %ld", n);
    cr_assert_eq(has_value, ev.has_value, "record %ld", n);
    cr_assert_eq(value, ev.value, "record %ld", n);
    n++;
  }
  rs_gen_destroy(g);
  avro_value_decref(&rec);
  avro_value_iface_decref(iface);
  avro_schema_decref(ws);
  avro_file_reader_close(r);
  return n;
}

Test(generate_cmd, out_file_round_trips) {
  char path[] = "/tmp/rs_gen_out_XXXXXX";
  close(mkstemp(path));
  char err[4096];
  cr_assert_eq(RUN(err, "--out", path, "--events", "3000", "--seed", "7",
                   "--users", "100", "--items", "400", "--start-time",
                   "2026-03-01T12:00:00Z"),
               0, "%s", err);
  cr_assert_not_null(strstr(err, "3000 records"), "summary: %s", err);
  rs_gen_opts_t o;
  rs_gen_opts_default(&o);
  o.seed = 7;
  o.users = 100;
  o.items = 400;
  o.start_time_ms = INT64_C(1772366400000);
  cr_assert_eq(check_ocf(path, &o, 0), 3000);

  /* Invalid records replace events and stay out of the file. */
  cr_assert_eq(RUN(err, "--out", path, "--events", "1000", "--seed", "7",
                   "--users", "100", "--items", "400", "--start-time",
                   "1772366400000", "--bad-every", "10"),
               0, "%s", err);
  cr_assert_eq(check_ocf(path, &o, 10), 900);
  unlink(path);
}

Test(generate_cmd, unwritable_out_file_exits_1) {
  char err[4096];
  cr_assert_eq(RUN(err, "--out", "/nonexistent-dir/x.avro", "--events", "10"),
               1);
  cr_assert_not_null(strstr(err, "/nonexistent-dir/x.avro"), "%s", err);
}

/* ---- Kafka, on librdkafka's mock cluster ---- */

typedef struct mock {
  rd_kafka_t *rk;
  rd_kafka_mock_cluster_t *mc;
  char bootstraps[256];
} mock_t;

static void mock_start(mock_t *m, const char *topic, int partitions) {
  char kerr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "3", kerr, sizeof kerr);
  m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof kerr);
  cr_assert_not_null(m->rk, "%s", kerr);
  m->mc = rd_kafka_mock_cluster_new(m->rk, 1);
  cr_assert_not_null(m->mc);
  snprintf(m->bootstraps, sizeof m->bootstraps, "%s",
           rd_kafka_mock_cluster_bootstraps(m->mc));
  cr_assert_eq(rd_kafka_mock_topic_create(m->mc, topic, partitions, 1),
               RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void mock_stop(mock_t *m) {
  rd_kafka_mock_cluster_destroy(m->mc);
  rd_kafka_destroy(m->rk);
}

static void *arena_alloc(void *opaque, size_t n) {
  return rs_arena_alloc(opaque, n);
}

Test(generate_cmd, produces_to_kafka_and_reads_back, .timeout = 120) {
  enum { N = 5000, BAD_EVERY = 100, PARTS = 3 };
  mock_t m;
  mock_start(&m, "interactions", PARTS);
  char err[8192];
  cr_assert_eq(RUN(err, "--brokers", m.bootstraps, "--topic", "interactions",
                   "--events", "5000", "--users", "200", "--bad-every", "100",
                   "--format", "confluent", "--schema-id", "9", "--property",
                   "log_level=3"),
               0, "%s", err);
  cr_assert_not_null(strstr(err, "5000 delivered"), "summary: %s", err);

  char kerr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", m.bootstraps, kerr, sizeof kerr);
  rd_kafka_conf_set(conf, "group.id", "test-generator", kerr, sizeof kerr);
  rd_kafka_conf_set(conf, "enable.partition.eof", "true", kerr, sizeof kerr);
  rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof kerr);
  cr_assert_not_null(c, "%s", kerr);
  rd_kafka_poll_set_consumer(c);
  rd_kafka_topic_partition_list_t *parts =
      rd_kafka_topic_partition_list_new(PARTS);
  for (int p = 0; p < PARTS; p++)
    rd_kafka_topic_partition_list_add(parts, "interactions", p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  cr_assert_eq(rd_kafka_assign(c, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(parts);

  rs_codec_t *codec;
  cr_assert_eq(rs_codec_new(&codec, NULL, kerr, sizeof kerr), 0, "%s", kerr);
  cr_assert_eq(rs_codec_add_schema_json(codec, 9, rs_schema_interaction_json,
                                        strlen(rs_schema_interaction_json),
                                        kerr, sizeof kerr),
               0, "%s", kerr);
  rs_arena_t arena;
  rs_arena_init(&arena, 0);
  long total = 0, invalid = 0, eofs = 0;
  int eof[PARTS] = {0};
  int64_t ts_sum = 0;
  int64_t last_ts[200] = {0};
  uint64_t deadline = rs_now_ns() + UINT64_C(60000000000);
  while (eofs < PARTS && rs_now_ns() < deadline) {
    rd_kafka_message_t *msg = rd_kafka_consumer_poll(c, 100);
    if (!msg)
      continue;
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      /* everything was produced and acknowledged before we started */
      eof[msg->partition] = 1;
      eofs = 0;
      for (int p = 0; p < PARTS; p++)
        eofs += eof[p];
      rd_kafka_message_destroy(msg);
      continue;
    }
    cr_assert_eq(msg->err, 0, "%s", rd_kafka_message_errstr(msg));
    total++;
    eof[msg->partition] = 0;
    cr_assert(msg->key_len > 1 && ((const char *)msg->key)[0] == 'u');
    rs_interaction_t ev;
    char derr[256];
    rs_arena_reset(&arena);
    if (rs_codec_decode(codec, RS_FORMAT_CONFLUENT, msg->payload, msg->len, &ev,
                        arena_alloc, &arena, derr, sizeof derr)) {
      invalid++;
    } else {
      cr_assert_eq(ev.user_len, msg->key_len);
      cr_assert_eq(memcmp(ev.user, msg->key, msg->key_len), 0);
      uint32_t uu = id_of(ev.user, ev.user_len, 'u');
      cr_assert_lt(uu, 200);
      /* one user's records share a partition: their order survives */
      cr_assert_geq(ev.timestamp_ms, last_ts[uu]);
      last_ts[uu] = ev.timestamp_ms;
      ts_sum += ev.timestamp_ms;
    }
    rd_kafka_message_destroy(msg);
  }
  cr_assert_eq(total, N, "consumed %ld of %d", total, N);
  cr_assert_eq(invalid, N / BAD_EVERY, "%ld records failed to decode", invalid);

  /* The valid records are exactly the generator's, minus the replaced. */
  rs_gen_opts_t o;
  rs_gen_opts_default(&o);
  o.users = 200;
  rs_gen_t *g = rs_gen_new(&o);
  int64_t want = 0;
  rs_interaction_t ev;
  for (int k = 1; k <= N; k++) {
    rs_gen_next(g, &ev);
    if (k % BAD_EVERY)
      want += ev.timestamp_ms;
  }
  cr_assert_eq(ts_sum, want);
  rs_gen_destroy(g);
  rs_arena_free(&arena);
  rs_codec_destroy(codec);
  rd_kafka_consumer_close(c);
  rd_kafka_destroy(c);
  mock_stop(&m);
}

Test(generate_cmd, every_kind_of_bad_record_fails_to_decode, .timeout = 120) {
  /* bad-every 1: every record invalid, cycling through the four kinds, in
   * each format. */
  const char *formats[] = {"avro", "confluent", "json"};
  for (int f = 0; f < 3; f++) {
    mock_t m;
    mock_start(&m, "bad", 1);
    char err[8192];
    cr_assert_eq(RUN(err, "--brokers", m.bootstraps, "--topic", "bad",
                     "--events", "8", "--bad-every", "1", "--format",
                     (char *)formats[f], "--property", "log_level=3"),
                 0, "%s", err);
    char kerr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", m.bootstraps, kerr,
                      sizeof kerr);
    rd_kafka_conf_set(conf, "group.id", "test-bad", kerr, sizeof kerr);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof kerr);
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *parts =
        rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, "bad", 0)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    rs_codec_t *codec;
    cr_assert_eq(rs_codec_new(&codec, NULL, kerr, sizeof kerr), 0);
    /* the id the command writes by default, so confluent records fail for
     * their content, not for an unknown id */
    cr_assert_eq(rs_codec_add_schema_json(codec, 1, rs_schema_interaction_json,
                                          strlen(rs_schema_interaction_json),
                                          kerr, sizeof kerr),
                 0, "%s", kerr);
    rs_format_t fmt;
    rs_format_parse(formats[f], &fmt);
    rs_arena_t arena;
    rs_arena_init(&arena, 0);
    int got = 0;
    uint64_t deadline = rs_now_ns() + UINT64_C(30000000000);
    while (got < 8 && rs_now_ns() < deadline) {
      rd_kafka_message_t *msg = rd_kafka_consumer_poll(c, 100);
      if (!msg)
        continue;
      if (!msg->err) {
        rs_interaction_t ev;
        char derr[256];
        cr_assert_neq(rs_codec_decode(codec, fmt, msg->payload, msg->len, &ev,
                                      arena_alloc, &arena, derr, sizeof derr),
                      0, "%s: bad record %d (kind %d) decoded", formats[f], got,
                      got % 4);
        cr_assert_gt(msg->key_len, 1);
        got++;
      }
      rd_kafka_message_destroy(msg);
    }
    cr_assert_eq(got, 8, "%s: consumed %d", formats[f], got);
    rs_arena_free(&arena);
    rs_codec_destroy(codec);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    mock_stop(&m);
  }
}

Test(generate_cmd, failed_delivery_exits_1, .timeout = 120) {
  mock_t m;
  mock_start(&m, "denied", 1);
  /* Every produce request is refused with a non-retriable error. */
  rd_kafka_resp_err_t errs[64];
  for (int i = 0; i < 64; i++)
    errs[i] = RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
  rd_kafka_mock_push_request_errors_array(m.mc, 0 /* Produce */, 64, errs);
  char err[8192];
  cr_assert_eq(RUN(err, "--brokers", m.bootstraps, "--topic", "denied",
                   "--events", "100", "--property", "log_level=0"),
               1, "%s", err);
  cr_assert(strstr(err, "deliver") || strstr(err, "fatal"), "%s", err);
  mock_stop(&m);
}

Test(generate_cmd, unreachable_broker_exits_1, .timeout = 120) {
  char err[8192];
  /* Port 1 on loopback: connection refused at once. */
  cr_assert_eq(RUN(err, "--brokers", "127.0.0.1:1", "--topic", "t", "--events",
                   "1000", "--property", "log_level=0"),
               1, "%s", err);
  cr_assert_not_null(strstr(err, "127.0.0.1:1"), "%s", err);
}
