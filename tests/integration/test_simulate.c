/* `recstream simulate` against configs/loop.yaml on the embedded broker:
 * the closed loop runs (interactions in, lists out, clicks back, feedback
 * produced) and the MF model's CTR beats a random list's and the
 * popularity-only variant of the same pipeline (min_user_events above any
 * count), both run at once on two embedded clusters. Plus the command's
 * usage errors. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "itest.h"
#include "util.h"

#define LOOP_S "14"

static const char *bin(void) {
  static char path[1024];
  snprintf(path, sizeof path, "%s/recstream", RS_BINARY_DIR);
  return path;
}

static int sh(const char *cmd, rs_buf_t *out) {
  FILE *f = popen(cmd, "r");
  cr_assert(f != NULL);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    if (out)
      rs_buf_append(out, buf, n);
  int st = pclose(f);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

Test(simulate_cli, help_and_usage_errors) {
  char cmd[2048];
  rs_buf_t b = {0};
  snprintf(cmd, sizeof cmd, "%s simulate --help", bin());
  cr_assert_eq(sh(cmd, &b), 0);
  cr_assert(b.data && strstr(b.data, "Usage: recstream simulate"));
  static const struct {
    const char *args, *says;
  } bad[] = {
      {"", "--brokers is required"},
      {"-b x --users 0", "--users expects"},
      {"-b x --items 5", "--items expects"},
      {"-b x --duration 0", "--duration expects"},
      {"-b x --duration 10q", "--duration expects"},
      {"-b x --rate -1", "--rate expects"},
      {"-b x --drift nan", "--drift expects"},
      {"-b x --new-items 0.95", "--new-items expects"},
      {"-b x --duration 10 --warmup 10", "--warmup"},
      {"-b x --duration 4", "--window"},
      {"-b x -X novalue", "-X expects KEY=VALUE"},
      {"-b x --input-topic ''", "must not be empty"},
      {"-b x --bogus", "unknown option"},
      {"-b x extra", "unexpected argument"},
      {"-b x --seed", "needs a value"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    rs_buf_reset(&b);
    snprintf(cmd, sizeof cmd, "%s simulate %s 2>&1", bin(), bad[i].args);
    cr_expect_eq(sh(cmd, &b), 2, "simulate %s", bad[i].args);
    cr_expect(b.data && strstr(b.data, bad[i].says), "simulate %s said: %s",
              bad[i].args, b.data ? b.data : "");
  }
  /* No engine answering: a runtime failure, said so (the embedded broker
   * creates topics on first use, so the topic itself exists). */
  const char *const topics[] = {"interactions", "recommendations", NULL};
  rs_mock_t *m = it_cluster(1, 1, topics);
  cr_assert_not_null(m);
  rs_buf_reset(&b);
  snprintf(cmd, sizeof cmd,
           "%s simulate -b %s --duration 1 --window 1 --warmup 0 2>&1", bin(),
           m->bootstraps);
  cr_expect_eq(sh(cmd, &b), 1);
  cr_expect(b.data && strstr(b.data, "no recommendation arrived"), "said: %s",
            b.data ? b.data : "");
  rs_mock_destroy(m);
  rs_buf_free(&b);
}

/* configs/loop.yaml's text. */
static const char *loop_yaml(void) {
  static char text[16384];
  FILE *f = fopen(RS_SOURCE_DIR "/configs/loop.yaml", "r");
  cr_assert_not_null(f);
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  cr_assert(n > 0 && n < sizeof text - 1);
  text[n] = 0;
  return text;
}

typedef struct loop {
  rs_mock_t *m;
  it_engine_t t;
  FILE *sim;
  rs_buf_t out;
} loop_t;

static void loop_start(loop_t *l, const char *state, int popularity) {
  static const char *const topics[] = {"interactions", "interactions.dlq",
                                       "recommendations", "feedback", NULL};
  memset(l, 0, sizeof *l);
  l->m = it_cluster(1, 2, topics);
  cr_assert_not_null(l->m);
  char brokers[512], dir[1024];
  snprintf(brokers, sizeof brokers, "kafka.brokers=%s", l->m->bootstraps);
  snprintf(dir, sizeof dir, "state.dir=%s/%s", it_state_dir(), state);
  const char *sets[] = {brokers, dir, "kafka.auto_offset_reset=earliest",
                        popularity ? "operators.mf.min_user_events=1000000"
                                   : "operators.mf.min_user_events=3"};
  cr_assert_eq(it_engine_start(&l->t, loop_yaml(), sets, 4, 0), 0, "%s",
               l->t.err);
  char cmd[2048];
  snprintf(
      cmd, sizeof cmd,
      "%s simulate -b %s --users 50 --items 500 --rate 300 --duration " LOOP_S
      " --window 2 --warmup 6 --seed 3 --json",
      bin(), l->m->bootstraps);
  l->sim = popen(cmd, "r");
  cr_assert_not_null(l->sim);
}

static json_t *loop_finish(loop_t *l) {
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, l->sim)) > 0)
    rs_buf_append(&l->out, buf, n);
  int st = pclose(l->sim);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "simulate: %d", st);
  cr_assert_eq(it_engine_join(&l->t, 1), 0, "%s", l->t.err);
  it_engine_free(&l->t);
  rs_mock_destroy(l->m);
  json_error_t je;
  json_t *j = json_loadb(l->out.data, l->out.len, 0, &je);
  cr_assert_not_null(j, "%s: %.*s", je.text, (int)l->out.len, l->out.data);
  rs_buf_free(&l->out);
  return j;
}

static double num(json_t *v, const char *k) {
  return json_number_value(json_object_get(v, k));
}

Test(simulate, closed_loop_model_beats_random_and_popularity, .timeout = 120) {
  loop_t model, pop;
  loop_start(&model, "model", 0);
  loop_start(&pop, "pop", 1);
  json_t *jm = loop_finish(&model), *jp = loop_finish(&pop);
  json_t *vm = json_array_get(json_object_get(jm, "variants"), 0);
  json_t *vp = json_array_get(json_object_get(jp, "variants"), 0);
  cr_assert_not_null(vm);
  cr_assert_not_null(vp);
  cr_assert_gt(num(jm, "recommendations"), 1000);
  cr_assert_gt(num(jm, "feedback"), 0);
  cr_assert_gt(num(json_object_get(jm, "latency_ms"), "n"), 0);
  double m_ctr = num(vm, "ctr"), m_exp = num(vm, "expected_ctr");
  double p_exp = num(vp, "expected_ctr"), rnd = num(vm, "random_ctr");
  double oracle = num(vm, "oracle_ctr");
  cr_log_info("model ctr %.4f (expected %.4f), popularity expected %.4f, "
              "random %.4f, oracle %.4f",
              m_ctr, m_exp, p_exp, rnd, oracle);
  cr_assert_gt(m_exp, rnd, "model %f vs random %f", m_exp, rnd);
  cr_assert_gt(m_exp, p_exp, "model %f vs popularity %f", m_exp, p_exp);
  cr_assert_lt(m_exp, oracle);
  json_decref(jm);
  json_decref(jp);
}
