/* The demo's closed loop in process, without Kafka: mf_update ->
 * topn_emit -> bandit_reward in three harnesses (topn_emit reading
 * mf_update's model as its peer), driven by the simulator's user model
 * (examples/simulator/sim_model.h) in simulated time. Each action picks a
 * user; a user with an unseen list looks at it (clicks become CLICK
 * interactions through the pipeline and feedback into bandit_reward),
 * otherwise acts organically (a VIEW); every interaction makes a fresh
 * list. Users are split in two variants like configs/demo_loop.yaml's
 * experiment (own instances each): `model` (MF + bandit, options as the
 * demo) and `popularity` (min_user_events 1000000, greedy). No latency, no
 * clock: deterministic for a seed.
 *
 * The test asserts model > popularity > random on a small world. With
 * RS_LOOP=1 in the environment, `loop/measure` runs the world and options
 * given by RS_LOOP_* variables (see measure_from_env) and prints the CTR
 * per window: how docs/DEMO.md's parameter choices were explored. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "examples/simulator/sim_model.h"
#include "operators/mf_update/mf_kernel.h"
#include "operators/mf_update/mf_update.h"
#include "operators/harness.h"
#include "util.h"

extern const rs_operator_def_t rs_op_mf_update;
extern const rs_operator_def_t rs_op_topn_emit;
extern const rs_operator_def_t rs_op_bandit_reward;

#define MAX_OPTS 64
#define MAX_SHOWN 64
#define MAX_WINS 200

typedef struct opts {
  const char *kv[MAX_OPTS + 1];
  int n;
} opts_t;

/* Appends "k=v,k=v" pairs (later keys replace earlier ones). */
static void opts_add(opts_t *o, const char *list) {
  if (!list || !*list)
    return;
  char *copy = strdup(list), *save = NULL;
  for (char *t = strtok_r(copy, ",", &save); t;
       t = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(t, '=');
    cr_assert_not_null(eq, "option %s: expected k=v", t);
    *eq = 0;
    int at = o->n;
    for (int i = 0; i < o->n; i += 2)
      if (!strcmp(o->kv[i], t))
        at = i;
    cr_assert(at + 2 <= MAX_OPTS);
    if (at < o->n) { /* replaced */
      free((void *)o->kv[at]);
      free((void *)o->kv[at + 1]);
    }
    o->kv[at] = strdup(t);
    o->kv[at + 1] = strdup(eq + 1);
    if (at == o->n)
      o->n += 2;
    o->kv[o->n] = NULL;
  }
  free(copy);
}

static void opts_free(opts_t *o) {
  for (int i = 0; i < o->n; i++)
    free((void *)o->kv[i]);
  o->n = 0;
}

typedef struct world {
  uint32_t users, items;
  double rate, seconds, warmup, window, drift, new_items;
  double look; /* probability that a user with an unseen list looks at it */
  /* Feedback -> mf_update's input 1 and bandit_reward's `unclicked` ->
   * its input 2, as configs/demo_loop.yaml wires them (weight_unclicked). */
  int unclicked_to_mf;
  uint64_t seed;
  const char *mf, *topn, *bandit;  /* model variant's options */
  const char *pop_mf, *pop_bandit; /* popularity variant's overrides */
} world_t;

typedef struct variant {
  rs_harness_t *mf, *tn, *br;
  int64_t offset;
} variant_t;

typedef struct win {
  double shown, clicks, e_model, e_oracle, e_random;
} win_t;

typedef struct pending {
  uint32_t n, items[MAX_SHOWN];
  char imp[64];
} pending_t;

typedef struct loop {
  const world_t *w;
  rs_sim_t *sim;
  variant_t v[2];
  pending_t *pend;
  win_t wins[MAX_WINS][2];
  size_t n_wins;
  long unclicked, unclicked_learned; /* model variant: pushed, learned */
  uint16_t *events; /* RS_LOOP_DIAG: interactions per (user, item) */
  uint64_t rng;
} loop_t;

static char err[1024];

static void variant_open(variant_t *v, const world_t *w, int popularity) {
  opts_t mf = {0}, tn = {0}, br = {0};
  opts_add(&mf, w->mf);
  opts_add(&tn, w->topn);
  opts_add(&br, w->bandit);
  if (popularity) {
    opts_add(&mf, w->pop_mf);
    opts_add(&br, w->pop_bandit);
  }
  v->mf = rs_harness_new(&rs_op_mf_update, mf.kv, err, sizeof err);
  cr_assert_not_null(v->mf, "mf_update: %s", err);
  v->tn = rs_harness_new_with_peer(&rs_op_topn_emit, tn.kv, "mf", v->mf, err,
                                   sizeof err);
  cr_assert_not_null(v->tn, "topn_emit: %s", err);
  v->br = rs_harness_new(&rs_op_bandit_reward, br.kv, err, sizeof err);
  cr_assert_not_null(v->br, "bandit_reward: %s", err);
  v->offset = 0;
  opts_free(&mf); /* the harnesses keep copies */
  opts_free(&tn);
  opts_free(&br);
}

static void variant_close(variant_t *v) {
  rs_harness_destroy(v->br);
  rs_harness_destroy(v->tn);
  rs_harness_destroy(v->mf);
}

static int64_t ts_of(double t) {
  return 1767225600000LL + (int64_t)llround(t * 1000.0);
}

/* bandit_reward's unclicked slots (port `unclicked`) of its last push into
 * mf_update's third input, when the world routes them there (as
 * configs/demo_loop.yaml does through the `unclicked` topic). */
static void feed_unclicked(loop_t *l, int vi) {
  variant_t *v = &l->v[vi];
  size_t n = rs_harness_emitted_count(v->br, 3);
  if (!l->w->unclicked_to_mf || !n)
    return;
  for (size_t i = 0; i < n; i++) {
    rs_record_t r = *rs_harness_emitted(v->br, 3, i);
    r.src_offset = v->offset++;
    int64_t before = rs_harness_counter(v->mf, "learned");
    cr_assert_eq(rs_harness_push_input(v->mf, 2, 0, &r, 1), 0, "mf: %s",
                 rs_harness_errmsg(v->mf));
    if (vi == 0) {
      l->unclicked++;
      l->unclicked_learned += rs_harness_counter(v->mf, "learned") - before;
    }
  }
}

/* One interaction through the variant's pipeline; the list it made (if
 * any) becomes the user's pending list. */
static void interact(loop_t *l, int vi, uint32_t user, uint32_t item, int type,
                     double t) {
  variant_t *v = &l->v[vi];
  uint16_t *ev = l->events ? l->events + (size_t)user * l->w->items + item : 0;
  if (ev && *ev < UINT16_MAX)
    (*ev)++;
  char uid[16], iid[16];
  snprintf(uid, sizeof uid, "u%u", user);
  snprintf(iid, sizeof iid, "i%u", item);
  rs_interaction_t ia = {.user = uid,
                         .user_len = (uint32_t)strlen(uid),
                         .item = iid,
                         .item_len = (uint32_t)strlen(iid),
                         .event_type = type,
                         .timestamp_ms = ts_of(t)};
  rs_record_t rec = {.kind = RS_KIND_INTERACTION,
                     .key = uid,
                     .key_len = strlen(uid),
                     .value = "raw",
                     .value_len = 3,
                     .payload = &ia,
                     .timestamp_ms = ia.timestamp_ms,
                     .src_offset = v->offset++};
  rs_harness_clear(v->mf);
  rs_harness_clear(v->tn);
  rs_harness_clear(v->br);
  cr_assert_eq(rs_harness_push(v->mf, 0, &rec, 1), 0, "mf: %s",
               rs_harness_errmsg(v->mf));
  for (size_t i = 0; i < rs_harness_emitted_count(v->mf, 0); i++) {
    const rs_record_t *m = rs_harness_emitted(v->mf, 0, i);
    cr_assert_eq(rs_harness_push(v->tn, 0, m, 1), 0, "topn: %s",
                 rs_harness_errmsg(v->tn));
  }
  for (size_t i = 0; i < rs_harness_emitted_count(v->tn, 0); i++) {
    const rs_record_t *r = rs_harness_emitted(v->tn, 0, i);
    cr_assert_eq(rs_harness_push_input(v->br, 0, 0, r, 1), 0, "bandit: %s",
                 rs_harness_errmsg(v->br));
  }
  feed_unclicked(l, vi);
  size_t n = rs_harness_emitted_count(v->br, 0);
  if (!n)
    return;
  const rs_recommendation_t *r = rs_harness_emitted(v->br, 0, n - 1)->payload;
  pending_t *p = l->pend + user;
  p->n = 0;
  for (uint32_t k = 0; k < r->n_items && k < MAX_SHOWN; k++) {
    uint32_t it;
    cr_assert_eq(
        rs_sim_parse_item(l->sim, r->items[k].item, r->items[k].item_len, &it),
        0);
    p->items[p->n++] = it;
  }
  snprintf(p->imp, sizeof p->imp, "%.*s", (int)r->impression_id_len,
           r->impression_id);
}

static void feedback(loop_t *l, int vi, uint32_t user, const char *imp,
                     uint32_t item, double t) {
  variant_t *v = &l->v[vi];
  char uid[16], iid[16];
  snprintf(uid, sizeof uid, "u%u", user);
  snprintf(iid, sizeof iid, "i%u", item);
  rs_feedback_t f = {.user = uid,
                     .user_len = (uint32_t)strlen(uid),
                     .impression_id = imp,
                     .impression_id_len = (uint32_t)strlen(imp),
                     .item = iid,
                     .item_len = (uint32_t)strlen(iid),
                     .type = RS_FEEDBACK_CLICK,
                     .value = 1,
                     .timestamp_ms = ts_of(t)};
  rs_record_t rec = {.kind = RS_KIND_FEEDBACK,
                     .key = uid,
                     .key_len = strlen(uid),
                     .payload = &f,
                     .timestamp_ms = f.timestamp_ms,
                     .src_offset = v->offset++};
  rs_harness_clear(v->br);
  cr_assert_eq(rs_harness_push_input(v->br, 1, 0, &rec, 1), 0, "feedback: %s",
               rs_harness_errmsg(v->br));
  if (l->w->unclicked_to_mf)
    cr_assert_eq(rs_harness_push_input(v->mf, 1, 0, &rec, 1), 0, "mf: %s",
                 rs_harness_errmsg(v->mf));
  feed_unclicked(l, vi);
}

/* One user action, as `recstream simulate` does it (sim_cmd.c act()). */
static void act(loop_t *l, double t) {
  uint32_t user = (uint32_t)((rs_sim_rand(&l->rng) >> 32) * l->w->users >> 32);
  int vi = (int)(user & 1); /* the variant split */
  pending_t *p = l->pend + user;
  int clicked = 0;
  if (p->n && (l->w->look >= 1 || rs_sim_unit(&l->rng) < l->w->look)) {
    size_t wi = (size_t)(t / l->w->window);
    if (wi >= l->n_wins)
      wi = l->n_wins - 1;
    win_t *w = &l->wins[wi][vi];
    pending_t seen = *p;
    p->n = 0;
    for (uint32_t k = 0; k < seen.n; k++) {
      double pr = rs_sim_click_prob(l->sim, user, seen.items[k], k, t);
      w->e_model += pr;
      if (rs_sim_unit(&l->rng) < pr) {
        w->clicks++;
        clicked = 1;
        feedback(l, vi, user, seen.imp, seen.items[k], t);
        interact(l, vi, user, seen.items[k], RS_EVENT_CLICK, t);
      }
    }
    w->shown += seen.n;
    w->e_oracle += rs_sim_oracle_ctr(l->sim, user, seen.n, t) * seen.n;
    w->e_random += rs_sim_random_ctr(l->sim, user, seen.n, t, &l->rng) * seen.n;
  }
  if (!clicked)
    interact(l, vi, user, rs_sim_organic(l->sim, user, t, &l->rng),
             RS_EVENT_VIEW, t);
}

/* RS_LOOP_DIAG=1 (loop/measure; analysis only, it reads the world's
 * truth): at each window's start, for the model variant's users with a
 * vector, the model's score (as topn_emit computes it) over the whole
 * present catalogue against the world's preferences:
 *  - greedy: the model's top 10 by score, as a share of the oracle's CTR;
 *  - best10of20: the world's best 10 of the model's top 20, in the world's
 *    order: what a perfect re-ranker of topn_emit's 20 candidates could
 *    reach;
 *  - recall@K: the share of the oracle's top 10 in the model's top K;
 *  - events: the share of the oracle's top 10 with any / >= 3 events of
 *    the variant's users, and with an event of the user (what the engine
 *    could have learned them from).
 * How docs/DEMO.md ("Where the model's share stops") was measured. */
static int cmp_desc(const void *a, const void *b) {
  double x = ((const double *)a)[0], y = ((const double *)b)[0];
  return x < y ? 1 : x > y ? -1 : 0;
}

static uint32_t rank_of(const double *sorted, uint32_t n, uint32_t item) {
  for (uint32_t j = 0; j < n; j++)
    if ((uint32_t)sorted[2 * j + 1] == item)
      return j;
  return n;
}

static void diag(loop_t *l, double t) {
  void *ctx = rs_harness_ctx(l->v[0].mf);
  rs_mf_view_t v;
  rs__mf_view(ctx, &v);
  uint32_t present = rs_sim_items_at(l->sim, t),
           n = present < 10 ? present : 10, m = present < 20 ? present : 20;
  double *sc = calloc(2 * (size_t)present, sizeof(double)); /* score, item */
  double *tz = calloc(2 * (size_t)present, sizeof(double)); /* pref, item */
  float *u = aligned_alloc(RS_MF_ALIGN, 4 * (size_t)v.kp + RS_MF_ALIGN);
  cr_assert(sc && tz && u);
  double g = 0, b20 = 0, orc = 0, r20 = 0, r50 = 0, r100 = 0, any = 0, ge3 = 0,
         own = 0;
  int nu = 0;
  for (uint32_t user = 0; user < l->w->users; user += 2) { /* variant 0 */
    char id[16];
    float ub;
    int64_t ev;
    snprintf(id, sizeof id, "u%u", user);
    if (rs__mf_user(ctx, 0, id, strlen(id), u, &ub, &ev) || ev < 3)
      continue;
    for (uint32_t it = 0; it < present; it++) {
      uint32_t ix;
      snprintf(id, sizeof id, "i%u", it);
      double s = -1e30; /* never seen by the model */
      if (!rs__mf_item_index(ctx, id, strlen(id), &ix) && ix < v.n_items)
        s = rs_mf_dot(u, v.items + (size_t)ix * v.kp, v.kp) + v.item_bias[ix] +
            (v.item_count[ix] > 0
                 ? v.score_log_count * log((double)v.item_count[ix])
                 : 0);
      sc[2 * it] = s;
      sc[2 * it + 1] = it;
      tz[2 * it] = rs_sim_pref(l->sim, rs_sim_z(l->sim, user, it, t));
      tz[2 * it + 1] = it;
    }
    qsort(sc, present, 2 * sizeof(double), cmp_desc);
    qsort(tz, present, 2 * sizeof(double), cmp_desc);
    uint32_t list[10];
    for (uint32_t k = 0; k < n; k++)
      list[k] = (uint32_t)sc[2 * k + 1];
    g += rs_sim_list_ctr(l->sim, user, list, n, t);
    double best[40];
    for (uint32_t k = 0; k < m; k++) {
      best[2 * k + 1] = sc[2 * k + 1];
      best[2 * k] = rs_sim_pref(
          l->sim, rs_sim_z(l->sim, user, (uint32_t)sc[2 * k + 1], t));
    }
    qsort(best, m, 2 * sizeof(double), cmp_desc);
    for (uint32_t k = 0; k < n; k++)
      list[k] = (uint32_t)best[2 * k + 1];
    b20 += rs_sim_list_ctr(l->sim, user, list, n, t);
    orc += rs_sim_oracle_ctr(l->sim, user, n, t);
    for (uint32_t k = 0; k < n; k++) {
      uint32_t it = (uint32_t)tz[2 * k + 1],
               r = rank_of(sc, present < 100 ? present : 100, it);
      r20 += r < 20;
      r50 += r < 50;
      r100 += r < 100;
      double tot = 0;
      for (uint32_t us = 0; us < l->w->users; us += 2)
        tot += l->events[(size_t)us * l->w->items + it];
      any += tot > 0;
      ge3 += tot >= 3;
      own += l->events[(size_t)user * l->w->items + it] > 0;
    }
    nu++;
  }
  double d = 10.0 * nu;
  if (nu)
    printf("diag t %5.1f users %d greedy %.3f best10of20 %.3f recall@20 %.2f "
           "@50 %.2f @100 %.2f events any %.2f >=3 %.2f own %.2f\n",
           t, nu, g / orc, b20 / orc, r20 / d, r50 / d, r100 / d, any / d,
           ge3 / d, own / d);
  free(sc);
  free(tz);
  free(u);
}

typedef struct result {
  double ctr[2], model[2], oracle[2], random[2];
  long unclicked, unclicked_learned; /* model variant */
} result_t;

static void run_loop(const world_t *w, result_t *res, int print) {
  loop_t *l = calloc(1, sizeof *l);
  cr_assert_not_null(l);
  l->w = w;
  rs_sim_opts_t so;
  rs_sim_opts_default(&so);
  so.seed = w->seed;
  so.users = w->users;
  so.items = w->items;
  so.drift = w->drift;
  so.new_items = w->new_items;
  so.horizon_s = w->seconds;
  l->sim = rs_sim_new(&so);
  cr_assert_not_null(l->sim);
  l->pend = calloc(w->users, sizeof *l->pend);
  if (getenv("RS_LOOP_DIAG"))
    l->events = calloc((size_t)w->users * w->items, sizeof *l->events);
  l->rng = w->seed * 0x9e3779b97f4a7c15ULL + 1;
  l->n_wins = (size_t)ceil(w->seconds / w->window);
  cr_assert(l->n_wins <= MAX_WINS);
  variant_open(&l->v[0], w, 0);
  variant_open(&l->v[1], w, 1);
  long actions = (long)(w->rate * w->seconds);
  for (long a = 0; a < actions; a++) {
    double t = (double)a / w->rate;
    if (l->events && a > 0 &&
        (size_t)(t / w->window) !=
            (size_t)((double)(a - 1) / w->rate / w->window))
      diag(l, t);
    act(l, t);
  }
  memset(res, 0, sizeof *res);
  res->unclicked = l->unclicked;
  res->unclicked_learned = l->unclicked_learned;
  static const char *const names[2] = {"model", "popularity"};
  for (int vi = 0; vi < 2; vi++) {
    win_t tot = {0};
    for (size_t i = 0; i < l->n_wins; i++) {
      const win_t *x = &l->wins[i][vi];
      if ((double)i * w->window >= w->warmup - 1e-9) {
        tot.shown += x->shown;
        tot.clicks += x->clicks;
        tot.e_model += x->e_model;
        tot.e_oracle += x->e_oracle;
        tot.e_random += x->e_random;
      }
    }
    res->ctr[vi] = tot.clicks / tot.shown;
    res->model[vi] = tot.e_model / tot.shown;
    res->oracle[vi] = tot.e_oracle / tot.shown;
    res->random[vi] = tot.e_random / tot.shown;
    if (print) {
      printf("%-10s ctr %.4f expected %.4f oracle %.4f random %.4f  "
             "of oracle %.2f  x random %.2f\n  per window (expected/oracle):",
             names[vi], res->ctr[vi], res->model[vi], res->oracle[vi],
             res->random[vi], res->model[vi] / res->oracle[vi],
             res->model[vi] / res->random[vi]);
      for (size_t i = 0; i < l->n_wins; i++)
        printf(" %.2f", l->wins[i][vi].e_model / l->wins[i][vi].e_oracle);
      printf("\n");
    }
  }
  if (print)
    printf("model / popularity %.2f; unclicked slots to mf %ld, learned %ld\n",
           res->model[0] / res->model[1], res->unclicked,
           res->unclicked_learned);
  if (print)
    printf("model bandit: user arms evicted %lld\n",
           (long long)rs_harness_counter(l->v[0].br, "user_arms_evicted"));
  variant_close(&l->v[0]);
  variant_close(&l->v[1]);
  rs_sim_destroy(l->sim);
  free(l->pend);
  free(l->events);
  free(l);
}

/* configs/demo_loop.yaml's operator options (kept in step by hand), with
 * its wiring: feedback into mf_update's second input and bandit_reward's
 * unclicked slots (the loopback topic `unclicked`) into its third. */
#define DEMO_MF                                                                \
  "k=16,learning_rate=0.3,adaptive=adagrad,negatives=16,"                      \
  "negative_exponent=0.5,bias_learning_rate=0,weight_click=1,"                 \
  "weight_unclicked=1,feedback_weight=0,"                                      \
  "popularity_half_life=5m,min_user_events=3"
#define DEMO_TOPN "n=20,min_interval=0s,exact_scan_below=20000,history=0"
#define DEMO_BANDIT                                                            \
  "policy=thompson,slots=10,reward_window=5s,unclicked=with_feedback,"         \
  "arms=user,arm_impressions=with_feedback,score_weight=0.2,prior_alpha=0.2,"  \
  "prior_beta=1"
/* The popularity variant's overrides (configs/demo_loop.yaml). */
#define POP_BANDIT                                                             \
  "policy=greedy,reward_window=1m,arms=item,arm_impressions=all,"              \
  "score_weight=1,prior_alpha=1,prior_beta=1"

/* The small world both loop tests run: the demo's options, 40 users. */
static world_t small_world(void) {
  return (world_t){.users = 40,
                   .items = 300,
                   .rate = 100,
                   .seconds = 40,
                   .warmup = 15,
                   .window = 5,
                   .drift = 0.2,
                   .new_items = 0.2,
                   .look = 1,
                   .unclicked_to_mf = 1,
                   .seed = 3,
                   .mf = DEMO_MF,
                   .topn = DEMO_TOPN,
                   .bandit = DEMO_BANDIT,
                   .pop_mf = "min_user_events=1000000,weight_unclicked=0",
                   .pop_bandit = POP_BANDIT};
}

/* The demo as configured: the unclicked slots reach mf_update and are
 * learned, and the order model > popularity > random holds. Deterministic;
 * measured: model 0.1904, popularity 0.0697, random 0.0453 (oracle 0.2697),
 * 10,913 slots fed back, all learned (with_feedback: only lists with a
 * click send theirs); before per-user arms (session 9) 0.1849, 0.0744,
 * 0.0448 (the variants share the world's random stream, so popularity
 * moves too). With learning_rate 0 for the model it falls to
 * popularity's level; with weight_unclicked 0 none is learned. (In the
 * demo's world the wiring moves 0.58 to 0.66 of the oracle, docs/DEMO.md;
 * this world is too small to assert a gain.) */
Test(loop, model_beats_popularity_beats_random, .timeout = 300) {
  world_t w = small_world();
  result_t r;
  run_loop(&w, &r, 0);
  cr_log_info("model %.4f popularity %.4f random %.4f oracle %.4f unclicked "
              "%ld learned %ld",
              r.model[0], r.model[1], r.random[0], r.oracle[0], r.unclicked,
              r.unclicked_learned);
  cr_assert_gt(r.unclicked, 1000, "unclicked slots fed back: %ld", r.unclicked);
  cr_assert_gt(r.unclicked_learned, r.unclicked / 2,
               "learned %ld of %ld unclicked slots", r.unclicked_learned,
               r.unclicked);
  cr_assert_gt(r.model[0], 1.6 * r.model[1], "model %.4f, popularity %.4f",
               r.model[0], r.model[1]);
  cr_assert_gt(r.model[1], 1.3 * r.random[1], "popularity %.4f, random %.4f",
               r.model[1], r.random[1]);
  cr_assert_lt(r.model[0], r.oracle[0]);
}

/* Without the loopback (session 7's demo: no unclicked slots, feedback
 * only into bandit_reward, reward_window 1m) the order holds too.
 * Deterministic; measured 0.1767, 0.0720, 0.0447 (oracle 0.2678). */
Test(loop, without_unclicked_slots, .timeout = 300) {
  world_t w = small_world();
  w.unclicked_to_mf = 0;
  w.mf = DEMO_MF ",weight_unclicked=0,feedback_weight=1";
  w.bandit = "policy=thompson,slots=10,reward_window=1m,unclicked=all";
  result_t r;
  run_loop(&w, &r, 0);
  cr_log_info("model %.4f popularity %.4f random %.4f oracle %.4f", r.model[0],
              r.model[1], r.random[0], r.oracle[0]);
  cr_assert_eq(r.unclicked, 0);
  cr_assert_gt(r.model[0], 1.6 * r.model[1], "model %.4f, popularity %.4f",
               r.model[0], r.model[1]);
  cr_assert_gt(r.model[1], 1.3 * r.random[1], "popularity %.4f, random %.4f",
               r.model[1], r.random[1]);
  cr_assert_lt(r.model[0], r.oracle[0]);
}

static double env_num(const char *k, double dflt) {
  const char *v = getenv(k);
  return v && *v ? atof(v) : dflt;
}

static const char *env_str(const char *k, const char *dflt) {
  const char *v = getenv(k);
  return v ? v : dflt;
}

/* RS_LOOP=1 RS_LOOP_USERS=100 RS_LOOP_ITEMS=1000 RS_LOOP_RATE=300
 * RS_LOOP_SECONDS=30 RS_LOOP_WARMUP=10 RS_LOOP_WINDOW=3 RS_LOOP_SEED=42
 * RS_LOOP_DRIFT=0.2 RS_LOOP_NEW_ITEMS=0.2 RS_LOOP_MF=k=v,...
 * RS_LOOP_TOPN=... RS_LOOP_BANDIT=... (added to the demo's options)
 * RS_LOOP_LOOK=P RS_LOOP_UNCLICKED=0 (default 1, as the demo: feedback ->
 * mf input 1 and bandit_reward's port `unclicked` -> mf input 2; 0 cuts
 * both, for the options of session 7's demo add
 * RS_LOOP_MF=weight_unclicked=0,feedback_weight=1
 * RS_LOOP_BANDIT=reward_window=1m)
 * ./build/tests/operators_test_bandit_loop --filter 'loop/measure' */
Test(loop, measure) {
  if (!getenv("RS_LOOP"))
    return; /* a no-op in the suite (cr_skip_test leaks under ASan) */
  char mf[1024], tn[1024], br[1024];
  snprintf(mf, sizeof mf, "%s,%s", DEMO_MF, env_str("RS_LOOP_MF", ""));
  snprintf(tn, sizeof tn, "%s,%s", DEMO_TOPN, env_str("RS_LOOP_TOPN", ""));
  snprintf(br, sizeof br, "%s,%s", DEMO_BANDIT, env_str("RS_LOOP_BANDIT", ""));
  double secs = env_num("RS_LOOP_SECONDS", 30);
  world_t w = {.users = (uint32_t)env_num("RS_LOOP_USERS", 100),
               .items = (uint32_t)env_num("RS_LOOP_ITEMS", 1000),
               .rate = env_num("RS_LOOP_RATE", 300),
               .seconds = secs,
               .warmup = env_num("RS_LOOP_WARMUP", secs / 3),
               .window = env_num("RS_LOOP_WINDOW", secs / 10),
               .drift = env_num("RS_LOOP_DRIFT", 0.2),
               .new_items = env_num("RS_LOOP_NEW_ITEMS", 0.2),
               .look = env_num("RS_LOOP_LOOK", 1),
               .unclicked_to_mf = (int)env_num("RS_LOOP_UNCLICKED", 1),
               .seed = (uint64_t)env_num("RS_LOOP_SEED", 42),
               .mf = mf,
               .topn = tn,
               .bandit = br,
               .pop_mf = "min_user_events=1000000,weight_unclicked=0",
               .pop_bandit = POP_BANDIT};
  result_t r;
  printf("users %u items %u rate %g seconds %g seed %llu\nmf: %s\ntopn: "
         "%s\nbandit: %s\n",
         w.users, w.items, w.rate, w.seconds, (unsigned long long)w.seed, mf,
         tn, br);
  run_loop(&w, &r, 1);
}
