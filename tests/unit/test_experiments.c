/* A/B experiments and their report: the split is deterministic (fixed
 * assignments that must not change between runs or releases) and follows
 * the weights over many users; variant options are the operator's with the
 * overrides; the split recorded in a state directory refuses a change;
 * Wilson and Newcombe intervals on hand-worked numbers (Newcombe 1998,
 * Stat. Med. 17:873, example 56/70 vs 48/80, method 10); the report
 * aggregation counts impressions once and clicks once per impression. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "experiments.h"
#include "graph.h"
#include "registry.h"
#include "report.h"

static const char yaml[] =
    "app: t\n"
    "sources: [ { name: in, topic: in } ]\n"
    "operators:\n"
    "  - { name: parse, type: parse, input: in, format: avro }\n"
    "  - { name: mf, type: mf_update, input: parse, k: 8 }\n"
    "  - { name: topn, type: topn_emit, input: mf, model: mf, n: 5 }\n"
    "sinks: [ { name: out, input: topn, topic: recs } ]\n"
    "experiments:\n"
    "  - name: ranking\n"
    "    salt: s1\n"
    "    operators: [mf]\n"
    "    variants:\n"
    "      - { name: A, weight: 1 }\n"
    "      - name: B\n"
    "        weight: 3\n"
    "        overrides: { topn: { n: 3 }, mf: { k: 4 } }\n";

typedef struct loaded {
  rs_config_t *cfg;
  rs_registry_t *reg;
  rs_graph_t *g;
} loaded_t;

static void load(loaded_t *l, const char *y) {
  char err[1024];
  cr_assert_eq(rs_config_load_string("x.yaml", y, strlen(y), NULL, 0, &l->cfg,
                                     err, sizeof err),
               0, "%s", err);
  cr_assert_eq(rs_registry_new(&l->reg, err, sizeof err), 0, "%s", err);
  cr_assert_eq(rs_graph_build(l->cfg, l->reg, &l->g, err, sizeof err), 0, "%s",
               err);
}

static void unload(loaded_t *l) {
  rs_graph_destroy(l->g);
  rs_registry_destroy(l->reg);
  rs_config_destroy(l->cfg);
}

static size_t node(const rs_graph_t *g, const char *name) {
  for (size_t i = 0; i < g->n; i++)
    if (!strcmp(g->nodes[i].name, name))
      return i;
  cr_assert_fail("no node %s", name);
  return 0;
}

Test(experiments, config_reads_variants_weights_and_operators) {
  loaded_t l;
  load(&l, yaml);
  cr_assert_not_null(l.g->exp);
  cr_assert_eq(l.g->exp->n, 1);
  const rs_experiment_t *x = &l.g->exp->x[0];
  cr_assert_str_eq(x->name, "ranking");
  cr_assert_str_eq(x->salt, "s1");
  cr_assert_eq(x->n, 2);
  cr_assert_str_eq(x->v[0].name, "A");
  cr_assert_float_eq(x->v[0].upper, 0.25, 1e-12);
  cr_assert_eq(x->v[1].upper, 1.0);
  cr_assert_eq(x->n_ops, 2); /* topn from overrides, mf from both */
  cr_assert_eq(rs_experiments_for_node(l.g->exp, node(l.g, "topn")), x);
  cr_assert_eq(rs_experiments_for_node(l.g->exp, node(l.g, "mf")), x);
  cr_assert_null(rs_experiments_for_node(l.g->exp, node(l.g, "parse")));
  /* Variant B's topn options: n replaced, model kept; A's: the base. */
  const rs_ynode_t *base = l.cfg->operators[2].node;
  rs_ynode_t *b = rs_experiments_options(x, 1, "topn", base);
  rs_ynode_t *a = rs_experiments_options(x, 0, "topn", base);
  cr_assert_str_eq(rs_ymap_find(b, "n")->value->scalar, "3");
  cr_assert_str_eq(rs_ymap_find(b, "model")->value->scalar, "mf");
  cr_assert_str_eq(rs_ymap_find(a, "n")->value->scalar, "5");
  cr_assert_eq(a->n, base->n);
  rs_experiments_free_map(a);
  rs_experiments_free_map(b);
  rs_buf_t d = {0};
  cr_assert_eq(rs_experiments_describe(l.g->exp, l.g, &d), 0);
  cr_assert_str_eq(d.data, "experiment ranking salt s1: A=0.250000 "
                           "B=0.750000 operators: topn mf\n");
  rs_buf_free(&d);
  unload(&l);
  /* No section: no experiments. */
  char plain[sizeof yaml];
  snprintf(plain, sizeof plain, "%.*s",
           (int)(strstr(yaml, "experiments:") - yaml), yaml);
  load(&l, plain);
  cr_assert_null(l.g->exp);
  unload(&l);
}

Test(experiments, split_is_stable_and_follows_the_weights) {
  loaded_t l;
  load(&l, yaml);
  const rs_experiment_t *x = &l.g->exp->x[0];
  /* Pinned: a change of the hash would move users between variants of
   * running experiments. */
  static const struct {
    const char *user;
    uint32_t v;
  } pinned[] = {{"u0", 0}, {"u1", 0},    {"u2", 1},
                {"u3", 1}, {"alice", 1}, {"bob", 0}};
  char got[256] = "";
  for (size_t i = 0; i < sizeof pinned / sizeof pinned[0]; i++)
    snprintf(got + strlen(got), sizeof got - strlen(got), "{\"%s\", %u}, ",
             pinned[i].user,
             rs_experiment_assign(x, pinned[i].user, strlen(pinned[i].user)));
  for (size_t i = 0; i < sizeof pinned / sizeof pinned[0]; i++)
    cr_expect_eq(
        rs_experiment_assign(x, pinned[i].user, strlen(pinned[i].user)),
        pinned[i].v, "%s: assignments now %s", pinned[i].user, got);
  /* Weights 1:3 over 100k users: within 1 percentage point (the standard
   * deviation of the share is 0.14 points). */
  const int n = 100000;
  int count[2] = {0, 0};
  char u[32];
  for (int i = 0; i < n; i++) {
    int k = snprintf(u, sizeof u, "user-%d", i);
    uint32_t v = rs_experiment_assign(x, u, (size_t)k);
    cr_assert_lt(v, 2);
    count[v]++;
    cr_assert_eq(rs_experiment_assign(x, u, (size_t)k), v, "not stable");
  }
  cr_assert_float_eq((double)count[0] / n, 0.25, 0.01, "A got %d of %d",
                     count[0], n);
  /* Another salt is another split: about 1/4 * 3/4 * 2 of the users
   * change variant, not none. */
  rs_experiment_t y = *x;
  y.salt = "s2";
  int moved = 0;
  for (int i = 0; i < 10000; i++) {
    int k = snprintf(u, sizeof u, "user-%d", i);
    moved += rs_experiment_assign(x, u, (size_t)k) !=
             rs_experiment_assign(&y, u, (size_t)k);
  }
  cr_assert_float_eq(moved / 10000.0, 0.375, 0.03, "%d moved", moved);
  /* Records are routed by their key. */
  rs_record_t r = {.key = "alice", .key_len = 5};
  cr_assert_eq(rs_experiment_record_variant(x, &r), 1);
  r.key = "bob";
  r.key_len = 3;
  cr_assert_eq(rs_experiment_record_variant(x, &r), 0);
  unload(&l);
}

Test(experiments, state_dir_records_the_split_and_refuses_another) {
  char dir[] = "/tmp/rs-exp-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  loaded_t l;
  load(&l, yaml);
  char err[2048];
  cr_assert_eq(rs_experiments_check_state(l.g->exp, l.g, dir, err, sizeof err),
               0, "%s", err);
  cr_assert_eq(rs_experiments_check_state(l.g->exp, l.g, dir, err, sizeof err),
               0, "%s", err); /* the same split again */
  unload(&l);
  char other[sizeof yaml];
  snprintf(other, sizeof other, "%s", yaml);
  memcpy(strstr(other, "weight: 3"), "weight: 2", 9);
  load(&l, other);
  cr_assert_eq(rs_experiments_check_state(l.g->exp, l.g, dir, err, sizeof err),
               RS_ECONFIG);
  cr_assert(strstr(err, "another split") && strstr(err, "A=0.250000") &&
                strstr(err, "A=0.333333"),
            "%s", err);
  unload(&l);
  char path[128];
  snprintf(path, sizeof path, "%s/EXPERIMENTS", dir);
  unlink(path);
  rmdir(dir);
}

Test(report, wilson_and_newcombe_on_hand_worked_numbers) {
  double lo, hi, d;
  rs_wilson(10, 100, RS_Z95, &lo, &hi);
  cr_assert_float_eq(lo, 0.055229, 1e-6);
  cr_assert_float_eq(hi, 0.174366, 1e-6);
  rs_wilson(0, 10, RS_Z95, &lo, &hi);
  cr_assert_eq(lo, 0);
  cr_assert_float_eq(hi, 0.277533, 1e-6);
  rs_wilson(10, 10, RS_Z95, &lo, &hi);
  cr_assert_float_eq(lo, 0.722467, 1e-6);
  cr_assert_float_eq(hi, 1.0, 1e-12);
  rs_wilson(0, 0, RS_Z95, &lo, &hi);
  cr_assert(lo == 0 && hi == 0);
  /* Newcombe (1998) table II, 56/70 - 48/80, method 10: .0524 to .3339. */
  rs_ctr_diff(56, 70, 48, 80, RS_Z95, &d, &lo, &hi);
  cr_assert_float_eq(d, 0.2, 1e-12);
  cr_assert_float_eq(lo, 0.052431, 1e-6);
  cr_assert_float_eq(hi, 0.333873, 1e-6);
  /* Swapped: the mirror image. */
  rs_ctr_diff(48, 80, 56, 70, RS_Z95, &d, &lo, &hi);
  cr_assert_float_eq(lo, -0.333873, 1e-6);
  cr_assert_float_eq(hi, -0.052431, 1e-6);
}

static rs_recommendation_t reco(const char *imp, const char *variant) {
  return (rs_recommendation_t){.user = "u",
                               .user_len = 1,
                               .impression_id = imp,
                               .impression_id_len = (uint32_t)strlen(imp),
                               .variant = variant,
                               .variant_len = (uint32_t)strlen(variant)};
}

static rs_feedback_t click(const char *imp, int type) {
  return (rs_feedback_t){.user = "u",
                         .user_len = 1,
                         .item = "i",
                         .item_len = 1,
                         .impression_id = imp,
                         .impression_id_len = imp ? (uint32_t)strlen(imp) : 0,
                         .type = type,
                         .value = 1};
}

Test(report, counts_impressions_and_clicks_once) {
  rs_report_t *r = rs_report_new();
  char id[32];
  /* B: 80 impressions, 48 clicked; A: 70, 56 clicked (ids interleaved). */
  for (int i = 0; i < 150; i++) {
    snprintf(id, sizeof id, "imp-%d", i);
    rs_recommendation_t x = reco(id, i % 2 && i < 141 ? "A" : "B");
    cr_assert_eq(rs_report_add_recommendation(r, &x), 0);
    cr_assert_eq(rs_report_add_recommendation(r, &x), 0); /* duplicate */
  }
  int a = 0, b = 0;
  for (int i = 0; i < 150; i++) {
    int is_a = i % 2 && i < 141;
    if (is_a ? a++ >= 56 : b++ >= 48)
      continue;
    snprintf(id, sizeof id, "imp-%d", i);
    rs_feedback_t f = click(id, RS_FEEDBACK_CLICK);
    cr_assert_eq(rs_report_add_feedback(r, &f), 0);
    cr_assert_eq(rs_report_add_feedback(r, &f), 0); /* repeated click */
  }
  rs_feedback_t f = click("imp-999", RS_FEEDBACK_CLICK);
  rs_report_add_feedback(r, &f);
  f = click(NULL, RS_FEEDBACK_CLICK);
  rs_report_add_feedback(r, &f);
  f = click("imp-0", RS_FEEDBACK_PURCHASE);
  rs_report_add_feedback(r, &f);
  const rs_report_variant_t *v;
  cr_assert_eq(rs_report_variants(r, &v), 2);
  cr_assert_str_eq(v[0].name, "A");
  cr_assert_eq(v[0].impressions, 70);
  cr_assert_eq(v[0].clicks, 56);
  cr_assert_str_eq(v[1].name, "B");
  cr_assert_eq(v[1].impressions, 80);
  cr_assert_eq(v[1].clicks, 48);
  rs_buf_t out = {0};
  cr_assert_eq(rs_report_render(r, 1, &out), 0);
  cr_assert(strstr(out.data, "\"variant\":\"B\",\"impressions\":80,"
                             "\"clicks\":48,\"ctr\":0.600000"),
            "%s", out.data);
  /* B - A = -(56/70 - 48/80): Newcombe's interval, mirrored. */
  cr_assert(strstr(out.data, "\"diff_vs\":\"A\",\"diff\":-0.200000,"
                             "\"diff_ci95\":[-0.333873,-0.052431]"),
            "%s", out.data);
  cr_assert(strstr(out.data, "\"feedback_not_click\":1,"
                             "\"clicks_without_impression_id\":1,"
                             "\"clicks_unknown_impression\":1,"
                             "\"clicks_repeated\":104"),
            "%s", out.data);
  out.len = 0;
  cr_assert_eq(rs_report_render(r, 0, &out), 0);
  cr_assert(strstr(out.data, "0.8000") && strstr(out.data, "-0.2000"), "%s",
            out.data);
  rs_buf_free(&out);
  rs_report_destroy(r);
}
