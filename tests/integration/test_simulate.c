/* `recstream simulate` against configs/demo_loop.yaml, the demo's one
 * engine with its A/B experiment (variant `model`: MF + bandit_reward
 * Thompson; `popularity`: the same pipeline with cold users and a greedy
 * bandit), on the embedded broker: the closed loop runs (interactions in,
 * lists out, clicks back as interactions and feedback, joined by
 * bandit_reward) and, after the warm-up, the model variant's expected CTR
 * beats popularity's, which beats a random list's. Plus the command's
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
      {"-b x --look 0", "--look expects"},
      {"-b x --look 1.5", "--look expects"},
      {"-b x --duration 10 --warmup 10", "--warmup"},
      {"-b x --duration 4", "--window"},
      {"-b x -X novalue", "-X expects KEY=VALUE"},
      {"-b x --input-topic ''", "must not be empty"},
      {"-b x --bogus", "unknown option"},
      {"-b x extra", "unexpected argument"},
      {"-b x --seed", "needs a value"},
      {"-b x --feedback-linger -1", "--feedback-linger expects"},
      {"-b x --feedback-linger 1001", "--feedback-linger expects"},
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

/* configs/demo_loop.yaml's text. */
static const char *demo_yaml(void) {
  const char *text = it_config_text("demo_loop.yaml");
  cr_assert_not_null(text, "cannot read configs/demo_loop.yaml");
  return text;
}

static double num(json_t *v, const char *k) {
  return json_number_value(json_object_get(v, k));
}

static json_t *variant(json_t *j, const char *name) {
  json_t *vs = json_object_get(j, "variants"), *v;
  size_t i;
  json_array_foreach(vs, i, v) {
    if (!strcmp(json_string_value(json_object_get(v, "variant")), name))
      return v;
  }
  cr_assert_fail("no variant %s", name);
  return NULL;
}

/* Margins: in this world the model variant's expected CTR measured 2.0-3x
 * popularity's and popularity 1.5-1.9x random's (here on the loaded 2-core
 * machine: 0.173, 0.085, 0.046; test_bandit_loop's in-process loop
 * agrees); the asserts stay well below both. With mf's learning_rate at
 * 0.0001 (`--set operators.mf.learning_rate=0.0001`: a model that does not
 * learn) the model variant measured 0.072 against popularity's 0.076 and
 * this test failed. */
#define MODEL_OVER_POPULARITY 1.3
#define POPULARITY_OVER_RANDOM 1.1

Test(simulate, demo_experiment_model_beats_popularity_beats_random,
     .timeout = 120) {
  /* unclicked: bandit.unclicked fed back to mf (a loopback source). */
  static const char *const topics[] = {"interactions",    "interactions.dlq",
                                       "recommendations", "feedback",
                                       "unclicked",       NULL};
  rs_mock_t *m = it_cluster(1, 4, topics);
  cr_assert_not_null(m);
  char brokers[512], dir[1024];
  snprintf(brokers, sizeof brokers, "kafka.brokers=%s", m->bootstraps);
  snprintf(dir, sizeof dir, "state.dir=%s/demo", it_state_dir());
  /* http.port 0: any free port, not the demo's fixed one (another suite
   * or test may hold it). */
  const char *sets[] = {brokers, dir, "kafka.auto_offset_reset=earliest",
                        "http.port=0"};
  it_engine_t t;
  cr_assert_eq(it_engine_start(&t, demo_yaml(), sets, 4, 0), 0, "%s", t.err);
  char cmd[2048];
  snprintf(
      cmd, sizeof cmd,
      "%s simulate -b %s --users 50 --items 500 --rate 300 --duration " LOOP_S
      " --window 2 --warmup 6 --seed 3 --json --feedback-linger 500",
      bin(), m->bootstraps);
  rs_buf_t out = {0};
  int st = sh(cmd, &out);
  cr_assert_eq(it_engine_join(&t, 1), 0, "%s", t.err);
  it_engine_free(&t);
  /* The feedback records go out on their own producer (a longer linger,
   * here longer than the simulator's last 200 ms of reading lists): every
   * one the simulator made is on the topic when it exits. */
  int64_t on_topic = 0;
  for (int32_t p = 0; p < 4; p++)
    on_topic += it_end_offset(m->bootstraps, "feedback", p);
  rs_mock_destroy(m);
  cr_assert_eq(st, 0, "simulate: %d", st);
  json_error_t je;
  json_t *j = json_loadb(out.data, out.len, 0, &je);
  cr_assert_not_null(j, "%s: %.*s", je.text, (int)out.len, out.data);
  rs_buf_free(&out);
  cr_assert_gt(num(j, "recommendations"), 1000);
  cr_assert_gt(num(j, "feedback"), 0);
  cr_assert_eq((double)on_topic, num(j, "feedback"),
               "feedback on the topic %lld, produced %.0f", (long long)on_topic,
               num(j, "feedback"));
  cr_assert_eq(num(j, "bad_recommendations"), 0);
  cr_assert_gt(num(json_object_get(j, "latency_ms"), "n"), 0);
  cr_assert_eq(json_array_size(json_object_get(j, "variants")), 2);
  json_t *vm = variant(j, "model"), *vp = variant(j, "popularity");
  cr_assert_gt(num(vm, "lists"), 200);
  cr_assert_gt(num(vp, "lists"), 200);
  double me = num(vm, "expected_ctr"), pe = num(vp, "expected_ctr");
  double mr = num(vm, "random_ctr"), pr = num(vp, "random_ctr");
  cr_log_info("model expected %.4f (ctr %.4f, oracle %.4f, random %.4f); "
              "popularity expected %.4f (ctr %.4f, random %.4f)",
              me, num(vm, "ctr"), num(vm, "oracle_ctr"), mr, pe, num(vp, "ctr"),
              pr);
  cr_assert_gt(me, MODEL_OVER_POPULARITY * pe, "model %f vs popularity %f", me,
               pe);
  cr_assert_gt(pe, POPULARITY_OVER_RANDOM * pr, "popularity %f vs random %f",
               pe, pr);
  cr_assert_gt(me, mr);
  cr_assert_lt(me, num(vm, "oracle_ctr"));
  json_decref(j);
}
