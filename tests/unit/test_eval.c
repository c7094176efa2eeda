/* `recstream eval`: the log readers (rs_eval_read) on good and bad input,
 * and the command end to end through the built binary: the model beats
 * popularity on a small generated data set (fixed seed and data, so the
 * margin is a fixed number, not a chance), explicit MF beats the running
 * mean on ratings planted from known factors, JSON/series/plot outputs,
 * and every error path (usage, bad lines with --strict, a missing
 * gnuplot, an oracle that does not fit the file). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "examples/generator/generator.h"
#include "operators/mf_update/eval.h"
#include "util.h"

static char dir[256];

static void setup(void) {
  snprintf(dir, sizeof dir, "/tmp/rs_test_eval_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_assert_eq(system(cmd), 0);
}

TestSuite(eval, .init = setup, .fini = teardown);

static const char *path(const char *name) {
  static char p[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
  return p[k];
}

static void write_file(const char *name, const char *text) {
  FILE *f = fopen(path(name), "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
}

/* Runs `recstream ARGS` (a shell fragment), output (stdout and stderr)
 * into out (NUL-terminated, truncated), returns the exit status. */
static int recstream(char *out, size_t size, const char *args) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "cd '%s' && '%s/recstream' %s 2>&1", dir,
           RS_BINARY_DIR, args);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  size_t n = fread(out, 1, size - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char out[1 << 16];

static json_t *load_json(const char *name) {
  json_error_t je;
  json_t *j = json_load_file(path(name), 0, &je);
  cr_assert_not_null(j, "%s: %s", name, je.text);
  return j;
}

static double metric(json_t *root, const char *section, const char *method,
                     const char *name) {
  json_t *v = json_object_get(
      json_object_get(json_object_get(root, section), method), name);
  cr_assert(json_is_number(v), "%s.%s.%s missing", section, method, name);
  return json_number_value(v);
}

/* ------------------------------------------------------------ readers */

static rs_eval_read_opts_t ropts(rs_eval_format_t f, int strict) {
  return (rs_eval_read_opts_t){.format = f,
                               .time_unit_ms = 1000,
                               .strict = strict,
                               .errors = NULL,
                               .max_reported = 0};
}

Test(eval, movielens_lines_and_bad_lines) {
  write_file("u.data", "196\t242\t3\t881250949\n"
                       "186\t302\t3\n"             /* 3 fields */
                       "22\t377\t1\t878887116\r\n" /* CRLF is fine */
                       "\n"                        /* blank: skipped */
                       "244\t51\tabc\t880606923\n" /* rating */
                       "166\t346\t1\tsoon\n"       /* timestamp */
                       "\t346\t1\t886397596\n"     /* no user */
                       "298\t474\t4\t884182806\n");
  rs_eval_log_t log = {0};
  char err[512];
  rs_eval_read_opts_t o = ropts(RS_EVAL_MOVIELENS, 0);
  cr_assert_eq(rs_eval_read(path("u.data"), &o, &log, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(log.n, 3);
  cr_assert_eq(log.bad, 4);
  cr_assert_eq(log.ev[0].type, RS_EVENT_RATING);
  cr_assert_float_eq(log.ev[0].value, 3, 0);
  cr_assert_eq(log.ev[0].ts_ms, 881250949000LL);
  cr_assert_eq(log.ev[1].line, 3);
  cr_assert_eq(log.ev[2].line, 8);
  cr_assert_eq(log.users.n, 3);
  cr_assert_eq(memcmp(log.users.s[log.ev[1].user], "22", 2), 0);
  cr_assert_eq(rs_eval_sort(&log), 0);
  cr_assert_eq(log.ev[0].line, 3, "sorted by time");
  rs_eval_log_free(&log);

  rs_eval_log_t l2 = {0};
  o = ropts(RS_EVAL_MOVIELENS, 1);
  cr_assert_eq(rs_eval_read(path("u.data"), &o, &l2, err, sizeof err),
               RS_EDECODE);
  cr_assert(strstr(err, "u.data:2: expected 4 fields"), "%s", err);
  rs_eval_log_free(&l2);
}

Test(eval, ml1m_csv_and_errors) {
  write_file("ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n"
                            "2::3068::4\n");
  rs_eval_log_t log = {0};
  char err[512];
  rs_eval_read_opts_t o = ropts(RS_EVAL_ML1M, 0);
  cr_assert_eq(rs_eval_read(path("ratings.dat"), &o, &log, err, sizeof err), 0);
  cr_assert_eq(log.n, 2);
  cr_assert_eq(log.bad, 1);
  cr_assert_eq(memcmp(log.items.s[log.ev[0].item], "1193", 4), 0);
  rs_eval_log_free(&log);

  write_file("a.csv", "userId,movieId,rating,timestamp\n"
                      "7,\"Heat, 1995\",4.5,1000\n"
                      "8,\"say \"\"hi\"\"\",2,999\n"
                      "9,x,2,\n" /* empty timestamp */
                      "10,\"open,3,5\n");
  o = ropts(RS_EVAL_CSV, 0);
  cr_assert_eq(rs_eval_read(path("a.csv"), &o, &log, err, sizeof err), 0);
  cr_assert_eq(log.n, 2);
  cr_assert_eq(log.bad, 2);
  cr_assert_eq(log.items.len[log.ev[0].item], 10);
  cr_assert_eq(memcmp(log.items.s[log.ev[0].item], "Heat, 1995", 10), 0);
  cr_assert_eq(memcmp(log.items.s[log.ev[1].item], "say \"hi\"", 8), 0);
  cr_assert_float_eq(log.ev[0].value, 4.5, 0);
  rs_eval_log_free(&log);

  write_file("b.csv", "user_id,item_id,event_type,value,ts\n"
                      "u1,i1,VIEW,12.5,5\n"
                      "u1,i1,CLICK,,6\n"
                      "u1,i1,BUY,,7\n");
  o = ropts(RS_EVAL_CSV, 0);
  o.time_unit_ms = 1;
  cr_assert_eq(rs_eval_read(path("b.csv"), &o, &log, err, sizeof err), 0);
  cr_assert_eq(log.n, 2);
  cr_assert_eq(log.bad, 1);
  cr_assert_eq(log.ev[1].type, RS_EVENT_CLICK);
  cr_assert_eq(log.ev[1].has_value, 0);
  cr_assert_eq(log.ev[0].ts_ms, 5);
  rs_eval_log_free(&log);

  write_file("c.csv", "who,what,when\nu,i,1\n");
  cr_assert_eq(rs_eval_read(path("c.csv"), &o, &log, err, sizeof err),
               RS_EDECODE);
  cr_assert(strstr(err, "c.csv:1: the CSV header must name"), "%s", err);
  rs_eval_log_free(&log);
  cr_assert_eq(rs_eval_read(path("nope.csv"), &o, &log, err, sizeof err),
               RS_EIO);
  o.format = RS_EVAL_AVRO;
  cr_assert_eq(rs_eval_read(path("a.csv"), &o, &log, err, sizeof err),
               RS_EDECODE);
  cr_assert(strstr(err, "not a readable Avro"), "%s", err);
  rs_eval_log_free(&log);
}

/* ------------------------------------------------------------ command */

Test(eval, model_beats_popularity_on_generated_data) {
  int rc = recstream(out, sizeof out,
                     "generate --out g.avro --users 300 --items 200 "
                     "--events 40000 --seed 5");
  cr_assert_eq(rc, 0, "%s", out);
  rc = recstream(out, sizeof out,
                 "eval -i g.avro --oracle seed=5,users=300,items=200 "
                 "--json r.json --series s.csv --window 1000");
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "recall@10"), "%s", out);
  json_t *j = load_json("r.json");
  double model = metric(j, "after_warmup", "model", "recall");
  double pop = metric(j, "after_warmup", "popularity_decayed", "recall");
  double pop_all = metric(j, "after_warmup", "popularity_all_time", "recall");
  double rnd = metric(j, "after_warmup", "random", "recall");
  double oracle = metric(j, "after_warmup", "oracle", "recall");
  /* Popularity-driven data (the generator's defaults: an oracle that
   * knows the planted tastes is only 2x popularity here). Measured on this
   * fixed data (gcc): model 0.280, popularity 0.215, oracle 0.435 (0.277
   * with the defaults before AdaGrad). The data and the
   * replay are deterministic, so these ratios are fixed numbers; the
   * thresholds leave room for floating-point differences between
   * compilers. */
  cr_assert_gt(model, 1.2 * pop, "model %.4f vs popularity %.4f", model, pop);
  cr_assert_gt(model, 1.15 * pop_all, "model %.4f vs all-time %.4f", model,
               pop_all);
  cr_assert_gt(pop, 2 * rnd);
  cr_assert_gt(oracle, model, "the planted truth is the upper reference");
  cr_assert_gt(metric(j, "after_warmup", "model", "ndcg"),
               metric(j, "after_warmup", "popularity_decayed", "ndcg"));
  cr_assert_eq(json_integer_value(json_object_get(j, "events")), 40000);
  cr_assert_eq(json_integer_value(json_object_get(j, "warmup_events")), 4000);
  json_t *ctr = json_object_get(j, "counters");
  /* bpr learns nothing while fewer than 2 items are known (no negative) */
  json_int_t learned = json_integer_value(json_object_get(ctr, "learned"));
  cr_assert_eq(
      learned + json_integer_value(json_object_get(ctr, "not_learned")), 40000);
  cr_assert_gt(learned, 39900);
  cr_assert_eq(json_integer_value(json_object_get(ctr, "nonfinite_updates")),
               0);
  json_decref(j);
  /* The series: a header and one row per 1000 events. */
  FILE *f = fopen(path("s.csv"), "r");
  cr_assert_not_null(f);
  char line[1024];
  int rows = 0;
  cr_assert_not_null(fgets(line, sizeof line, f));
  cr_assert(strstr(line, "events,evaluated,model_recall"), "%s", line);
  while (fgets(line, sizeof line, f))
    rows++;
  fclose(f);
  cr_assert_eq(rows, 40);

  /* The same run twice gives the same figures (determinism). */
  rc = recstream(out, sizeof out, "eval -i g.avro --json r2.json");
  cr_assert_eq(rc, 0, "%s", out);
  json_t *j2 = load_json("r2.json");
  cr_assert_float_eq(metric(j2, "after_warmup", "model", "recall"), model, 0);
  json_decref(j2);
}

/* Taste-driven data (`generate --affinity 4 --candidates 64`, the setting
 * examples/generator/README.md chose for evaluating recommenders): the
 * model must beat popularity 2.2x and reach 45% of the oracle, and a
 * model that cannot learn (learning rate ~0) must not, which shows the
 * thresholds can fail. Measured on this fixed data (gcc): model 0.344,
 * popularity 0.145 (2.37x), oracle 0.687 (model at 50%); the defaults
 * before AdaGrad (plain SGD, learning rate 0.05) reached 0.310 (2.14x,
 * 45%) and fail; the frozen model 0.146 (it ranks by its count^0.75 term:
 * popularity). */
Test(eval, model_doubles_popularity_on_taste_driven_data) {
  int rc = recstream(out, sizeof out,
                     "generate --out t.avro --users 300 --items 200 "
                     "--events 40000 --seed 5 --affinity 4 --candidates 64");
  cr_assert_eq(rc, 0, "%s", out);
  rc = recstream(out, sizeof out,
                 "eval -i t.avro --oracle seed=5,users=300,items=200,"
                 "affinity=4 --json t.json");
  cr_assert_eq(rc, 0, "%s", out);
  json_t *j = load_json("t.json");
  double model = metric(j, "after_warmup", "model", "recall");
  double pop = metric(j, "after_warmup", "popularity_decayed", "recall");
  double pop_all = metric(j, "after_warmup", "popularity_all_time", "recall");
  double oracle = metric(j, "after_warmup", "oracle", "recall");
  json_decref(j);
  cr_log_info("taste-driven: model %.4f popularity %.4f / %.4f oracle %.4f",
              model, pop, pop_all, oracle);
  cr_assert_gt(model, 2.2 * pop, "model %.4f vs popularity %.4f", model, pop);
  cr_assert_gt(model, 2.2 * pop_all, "model %.4f vs all-time %.4f", model,
               pop_all);
  cr_assert_gt(model, 0.45 * oracle, "model %.4f vs oracle %.4f", model,
               oracle);
  cr_assert_gt(oracle, model);

  /* Control: the same measure on a model that does not learn. */
  rc = recstream(out, sizeof out,
                 "eval -i t.avro --oracle seed=5,users=300,items=200,"
                 "affinity=4 --json f.json -O learning_rate=1e-9 "
                 "-O bias_learning_rate=0");
  cr_assert_eq(rc, 0, "%s", out);
  j = load_json("f.json");
  double frozen = metric(j, "after_warmup", "model", "recall");
  json_decref(j);
  cr_assert_lt(frozen, 1.2 * pop, "frozen model %.4f vs popularity %.4f",
               frozen, pop);
}

/* Ratings drawn from known factors: round(3 + 1.3 z(u, i) + noise),
 * clamped to 1..5, in MovieLens u.data format. */
static void planted_ratings(const char *name, const char *sep) {
  rs_gen_opts_t o;
  rs_gen_opts_default(&o);
  o.users = 200;
  o.items = 150;
  o.seed = 3;
  rs_gen_t *g = rs_gen_new(&o);
  FILE *f = fopen(path(name), "w");
  cr_assert_not_null(f);
  uint64_t s = 77;
  int64_t t = 880000000;
  for (int n = 0; n < 15000; n++) {
    uint32_t u = (uint32_t)(rs_mix64(s++) % 200);
    uint32_t i = (uint32_t)(rs_mix64(s++) % 150);
    double noise = ((double)(rs_mix64(s++) % 1000) / 1000.0 - 0.5) * 0.8;
    double r = round(3 + 1.3 * rs_gen_affinity(g, u, i) + noise);
    r = r < 1 ? 1 : r > 5 ? 5 : r;
    fprintf(f, "%u%s%u%s%.0f%s%lld\n", u, sep, i, sep, r, sep,
            (long long)(t += 7));
  }
  fclose(f);
  rs_gen_destroy(g);
}

Test(eval, explicit_beats_the_running_mean) {
  planted_ratings("u.data", "\t");
  int rc = recstream(out, sizeof out,
                     "eval -i u.data -f movielens -O objective=explicit "
                     "-O k=8 -O learning_rate=0.2 -O adaptive=none "
                     "--json e.json");
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "MAE"), "%s", out);
  json_t *j = load_json("e.json");
  double mae = metric(j, "after_warmup", "model", "mae");
  double base = metric(j, "after_warmup", "global_mean", "mae");
  double rmse = metric(j, "after_warmup", "model", "rmse");
  /* Measured: 0.8265 against 0.9195 (fixed data, deterministic). */
  cr_assert_lt(mae, 0.95 * base, "model MAE %.4f, mean %.4f", mae, base);
  cr_assert_geq(rmse, mae);
  json_decref(j);

  /* The same ratings as MovieLens 1M's ratings.dat (user::item::rating::
   * timestamp) give the same figures: the ml1m reader end to end. */
  planted_ratings("ratings.dat", "::");
  rc = recstream(out, sizeof out,
                 "eval -i ratings.dat -f ml1m -O objective=explicit "
                 "-O k=8 -O learning_rate=0.2 -O adaptive=none "
                 "--json m.json");
  cr_assert_eq(rc, 0, "%s", out);
  j = load_json("m.json");
  cr_assert_eq(json_integer_value(json_object_get(j, "events")), 15000);
  cr_assert_eq(json_integer_value(json_object_get(j, "bad_lines")), 0);
  cr_assert_float_eq(metric(j, "after_warmup", "model", "mae"), mae, 0);
  json_decref(j);
}

Test(eval, usage_and_input_errors) {
  cr_assert_eq(recstream(out, sizeof out, "eval --help"), 0);
  cr_assert(strstr(out, "--format"), "%s", out);
  cr_assert_eq(recstream(out, sizeof out, "eval"), 2);
  cr_assert(strstr(out, "--input FILE is required"), "%s", out);
  cr_assert_eq(recstream(out, sizeof out, "eval -i x.txt"), 2);
  cr_assert(strstr(out, "--format is required"), "%s", out);
  cr_assert_eq(recstream(out, sizeof out, "eval -i x -f parquet"), 2);
  cr_assert_eq(recstream(out, sizeof out, "eval -i x -f csv -n 0"), 2);
  cr_assert_eq(recstream(out, sizeof out, "eval -i x -f csv --warmup 120%"), 2);
  cr_assert_eq(recstream(out, sizeof out, "eval -i x -f csv --oracle seed"), 2);
  write_file("u.data", "1\t2\t3\t4\n1\t3\t5\n2\t2\t4\t9\n");
  cr_assert_eq(recstream(out, sizeof out, "eval -i u.data -f movielens -O k=0"),
               2);
  cr_assert(strstr(out, "k"), "%s", out);
  cr_assert_eq(
      recstream(out, sizeof out, "eval -i u.data -f movielens -O nope=1"), 2);
  cr_assert(strstr(out, "nope"), "%s", out);
  cr_assert_eq(recstream(out, sizeof out, "eval -i missing -f movielens"), 1);
  cr_assert(strstr(out, "cannot open"), "%s", out);
  /* A bad line is reported with its number; --strict stops there. */
  cr_assert_eq(
      recstream(out, sizeof out, "eval -i u.data -f movielens --json j.json"),
      0, "%s", out);
  cr_assert(strstr(out, "u.data:2: expected 4 fields"), "%s", out);
  json_t *j = load_json("j.json");
  cr_assert_eq(json_integer_value(json_object_get(j, "bad_lines")), 1);
  json_decref(j);
  /* An unwritable --json fails before the replay (no results table). */
  cr_assert_eq(recstream(out, sizeof out,
                         "eval -i u.data -f movielens --json /nonexistent/j"),
               1);
  cr_assert(strstr(out, "--json: cannot write /nonexistent/j: /nonexistent:") &&
                !strstr(out, "method"),
            "%s", out);
  cr_assert_eq(
      recstream(out, sizeof out, "eval -i u.data -f movielens --json /"), 1);
  cr_assert(strstr(out, "--json: / is a directory"), "%s", out);
  cr_assert_eq(
      recstream(out, sizeof out, "eval -i u.data -f movielens --strict"), 1);
  cr_assert(strstr(out, "u.data:2:") && strstr(out, "--strict"), "%s", out);
  /* An oracle needs generator ids. */
  cr_assert_eq(recstream(out, sizeof out,
                         "eval -i u.data -f movielens --oracle users=5"),
               1);
  cr_assert(strstr(out, "not one of the generator's users"), "%s", out);
  /* A config: its mf_update operator, or a clear refusal. */
  write_file("p.yaml", "app: a\nsources: [{name: in, topic: in}]\n"
                       "operators:\n"
                       "  - {name: parse, type: parse, input: in}\n"
                       "  - {name: m, type: mf_update, input: parse, k: 4}\n"
                       "sinks: [{name: out, input: m, topic: out}]\n");
  cr_assert_eq(recstream(out, sizeof out,
                         "eval -i u.data -f movielens -c p.yaml --json c.json"),
               0, "%s", out);
  j = load_json("c.json");
  cr_assert_eq(json_integer_value(json_object_get(j, "k")), 4);
  json_decref(j);
  cr_assert_eq(recstream(out, sizeof out,
                         "eval -i u.data -f movielens -c p.yaml "
                         "--operator parse"),
               2);
  cr_assert(strstr(out, "not an mf_update"), "%s", out);
}

Test(eval, plot_or_a_clear_message_without_gnuplot) {
  write_file("u.data", "1\t2\t3\t4\n1\t3\t5\t5\n2\t2\t4\t9\n2\t3\t1\t10\n");
  /* Without gnuplot: exit 1 before any work, saying what to do. */
  int rc = recstream(out, sizeof out,
                     "eval -i u.data -f movielens --plot p.png "
                     "| cat; RECSTREAM_GNUPLOT=/nonexistent '" RS_BINARY_DIR
                     "/recstream' eval -i u.data -f movielens --plot p.png");
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "--plot needs gnuplot"), "%s", out);
  cr_assert(strstr(out, "gnuplot-nox"), "%s", out);
  if (system("command -v gnuplot >/dev/null 2>&1") != 0)
    cr_skip_test("gnuplot is not installed: the plot itself is not tested");
  rc = recstream(out, sizeof out,
                 "eval -i u.data -f movielens --plot p.png --window 2");
  cr_assert_eq(rc, 0, "%s", out);
  FILE *f = fopen(path("p.png"), "rb");
  cr_assert_not_null(f, "no plot written: %s", out);
  unsigned char magic[8];
  cr_assert_eq(fread(magic, 1, 8, f), 8);
  fclose(f);
  cr_assert_eq(memcmp(magic, "\x89PNG\r\n\x1a\n", 8), 0);
}

/* A warm-up that covers every evaluated event: said, not a table of 0 / 0
 * (review s13: it printed 0.0000 everywhere and "0.00x popularity"). */
Test(eval, warmup_covering_everything_is_said) {
  write_file("u5.data", "1\t10\t3\t100\n2\t11\t4\t101\n1\t12\t5\t102\n"
                        "3\t10\t2\t103\n2\t12\t4\t104\n");
  cr_assert_eq(
      recstream(out, sizeof out, "eval -i u5.data -f movielens --warmup 100"),
      0, "%s", out);
  cr_assert(strstr(out, "after warm-up: nothing evaluated (the warm-up of 100 "
                        "events covers the evaluated ones; lower --warmup)"),
            "%s", out);
  cr_assert_null(strstr(out, "x popularity"), "%s", out);
  cr_assert(strstr(out, "all events:"), "%s", out);
}
