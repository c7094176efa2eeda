/* `recstream eval`: replays a time-ordered interaction log through the
 * mf_update operator in-process (engine/local_host.c: the operator code and
 * state path of a pipeline, no Kafka) and measures it prequentially: every
 * event is first predicted, then learned.
 *
 * Ranking (isgd, bpr). An event is evaluated the first time its user meets
 * its item (later events of the pair, e.g. the click after a view, are
 * learned but not scored: the item is no longer a recommendation). Before
 * learning it, every known item the user has not consumed is scored; the
 * rank of the true item gives HR@N (= recall@N with one relevant item),
 * NDCG@N, AP@N (averaged: MAP@N) and the reciprocal rank (MRR). Ties are
 * broken at random in expectation (the metric averaged over the tied
 * positions), so a baseline with many equal scores is neither favoured nor
 * punished. An item never seen before cannot be ranked: a miss for every
 * method. Coverage is the share of known items that appeared in some top-N
 * list. A user with fewer than min_user_events events is ranked by the
 * operator's time-decayed popularity (its cold-start path).
 *
 * Methods on the same events: the model; most-popular-unseen by
 * time-decayed popularity (half-life as the operator's) and by all-time
 * counts, both kept here, independently of the operator; random (the exact
 * expectation of a uniformly random ranking); and, for data from
 * `recstream generate`, an oracle that knows the planted factors and
 * popularity (--oracle): it ranks by log popularity + affinity * planted
 * affinity, the log-probability the generator draws new items from.
 *
 * Ratings (explicit): every RATING is predicted before learning (clipped to
 * the rating range: the operator's score) -> MAE and RMSE, against the
 * running global mean; the protocol of River's progressive_val_score.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "eval.h"
#include "examples/generator/generator.h"
#include "graph.h"
#include "local_host.h"
#include "log.h"
#include "mf_kernel.h"
#include "mf_update.h"
#include "registry.h"
#include "util.h"

#define PROG "recstream eval"
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

static const char eval_help[] =
    "Usage: recstream eval --input FILE --format FORMAT [options]\n"
    "\n"
    "Replays a time-ordered interaction log through the mf_update operator,\n"
    "in-process (the operator code and state path of a pipeline, no Kafka),\n"
    "and measures it prequentially: each event is predicted, then learned.\n"
    "Implicit objectives (isgd, bpr): the rank of the true item among the\n"
    "known items the user has not consumed, on the first event of each\n"
    "(user, item) -> recall@N (= HR@N), NDCG@N, MAP@N, MRR, coverage, for\n"
    "the model and, on the same events, most-popular-unseen (time-decayed\n"
    "and all-time), random and, with --oracle, the planted truth. Explicit:\n"
    "MAE and RMSE of the prediction before learning each rating, against the\n"
    "running mean.\n"
    "\n"
    "Input:\n"
    "  -i, --input FILE       the interaction log\n"
    "  -f, --format FORMAT    movielens (u.data: user TAB item TAB rating TAB\n"
    "                         timestamp), ml1m (ratings.dat: user::item::\n"
    "                         rating::timestamp), csv (a header naming user,\n"
    "                         item and timestamp columns, optionally rating "
    "or\n"
    "                         value and event_type) or avro (an object\n"
    "                         container file, as `recstream generate --out`\n"
    "                         writes). Default: avro for *.avro files\n"
    "      --time-unit U      s or ms: unit of text-format timestamps\n"
    "                         (default s, as in MovieLens)\n"
    "      --strict           stop at the first bad line (default: report it\n"
    "                         with its line number, count it, go on)\n"
    "      --order ORDER      time (default: stable sort by timestamp) or "
    "file\n"
    "      --max-events N     replay only the first N events (after sorting)\n"
    "\n"
    "Model:\n"
    "  -c, --config CONFIG    take the options of the mf_update operator in\n"
    "                         this pipeline file (default: its defaults)\n"
    "      --operator NAME    which mf_update operator of CONFIG, if several\n"
    "  -O, --option K=V       set one of its options, e.g. -O objective=isgd\n"
    "                         -O k=32 (repeatable; see `recstream operators\n"
    "                         mf_update`)\n"
    "      --set S.K=V        override a value of CONFIG (as `run --set`)\n"
    "\n"
    "Measurement and output:\n"
    "  -n, --n N              list length N of recall@N, NDCG@N, MAP@N\n"
    "                         (default 10)\n"
    "      --warmup W         events before the summary's main figures: a\n"
    "                         count or a percentage (default 10%); figures\n"
    "                         over all events are printed too\n"
    "      --oracle SPEC      the generator behind a `recstream generate`\n"
    "                         file, to score the planted truth:\n"
    "                         seed=S,users=U,items=I[,zipf=Z,affinity=A]\n"
    "                         (the values given to generate; defaults 42,\n"
    "                         1000, 5000, 1, 2)\n"
    "      --json OUT         write the results as JSON (- for stdout)\n"
    "      --series OUT       write a CSV series: each metric per window\n"
    "      --window N         events per series window (default 1000)\n"
    "      --plot OUT.png     plot the series (recall@N, or MAE) of every\n"
    "                         method with gnuplot, which must be installed\n"
    "      --log-level LEVEL  error, warn (default), info or debug\n"
    "  -h, --help             this help\n"
    "\n"
    "MovieLens files are not shipped with recstream; see README.md for where\n"
    "to get them. Exit status: 0 done, 1 failure (unreadable input, a bad\n"
    "line with --strict, gnuplot missing or failing), 2 bad usage or bad\n"
    "config.\n";

/* ---------------------------------------------------------- metrics */

enum { M_MODEL, M_POP_DECAY, M_POP_ALL, M_RANDOM, M_ORACLE, N_METHODS };
static const char *const method_key[N_METHODS] = {
    "model", "popularity_decayed", "popularity_all_time", "random", "oracle"};
static const char *const method_label[N_METHODS] = {
    "model", "popularity, time-decayed", "popularity, all-time",
    "random (expectation)", "oracle (planted factors)"};

typedef struct acc {
  double hr, ndcg, ap, rr;
  double abs_err, sq_err;
  uint64_t n;
} acc_t;

typedef struct method {
  acc_t all, after, win;
  uint8_t *covered;
  uint64_t n_covered;
} method_t;

typedef struct oracle {
  int on;
  rs_gen_opts_t go;
  rs_gen_t *gen;
  uint32_t *gen_user; /* log user -> generator user */
  uint32_t *gen_item; /* log item -> generator item */
  double *log_pop;    /* log item -> ln popularity */
} oracle_t;

typedef struct eval {
  /* options */
  const char *input, *json_out, *series_out, *plot_out;
  rs_eval_format_t format;
  int have_format;
  int64_t time_unit_ms;
  int strict, order_file;
  int64_t max_events;
  uint32_t n;
  int64_t warmup;
  double warmup_pct;
  int64_t window;
  const char *config, *operator_name;
  const char **sets;
  size_t n_sets;
  const char **opts;
  size_t n_opts;
  oracle_t oracle;

  /* run */
  rs_eval_log_t log;
  rs_config_t *cfg;
  rs_registry_t *reg;
  rs_graph_t *graph;
  const rs_operator_cfg_t *opcfg;
  rs_local_t *local;
  void *mf;
  rs_mf_view_t view;

  /* per item (operator index), kept here */
  uint32_t cap;
  int64_t *count;
  double *pop_log;
  uint32_t *log_item; /* operator index -> log item */
  int32_t *op_index;  /* log item -> operator index, -1 */
  uint8_t *mask;      /* consumed by the current user */
  double *score;
  float *fscore;
  float *uvec;
  double *harmonic; /* H(0..) */
  size_t n_harmonic;
  /* per user: consumed items (operator indices) */
  uint32_t **consumed;
  uint32_t *n_consumed, *cap_consumed;
  /* first-meeting check: set of (user, item) */
  uint64_t *pairs;
  size_t n_pairs, cap_pairs;

  method_t m[N_METHODS];
  int n_methods_on;
  double mean_sum;
  uint64_t mean_n;
  uint64_t evaluated, evaluated_after, unknown_items, cold_events;
  uint64_t replayed;
  double seconds;
  FILE *series;
  char series_tmp[4096];
  uint64_t win_events;
  /* the record emitted for the current push */
  rs_mf_update_t last;
  int got_last;
  double inv_tau;
  int64_t half_life_ms;
} eval_t;

static int is_explicit(const eval_t *e) {
  return e->view.objective == RS_MF_OBJ_EXPLICIT;
}

static void acc_add(acc_t *a, const acc_t *x) {
  a->hr += x->hr;
  a->ndcg += x->ndcg;
  a->ap += x->ap;
  a->rr += x->rr;
  a->abs_err += x->abs_err;
  a->sq_err += x->sq_err;
  a->n += x->n;
}

/* H(n) = 1 + 1/2 + ... + 1/n, exact from the table. */
static double harm(const eval_t *e, uint64_t n) {
  if (n < e->n_harmonic)
    return e->harmonic[n];
  double x = (double)n; /* asymptotic, beyond the table */
  return log(x) + 0.5772156649015329 + 1 / (2 * x) - 1 / (12 * x * x);
}

/* Expected metrics when the true item ranks uniformly in g+1 .. g+t+1. */
static void rank_metrics(const eval_t *e, uint64_t g, uint64_t t, acc_t *x) {
  double m = (double)(t + 1);
  uint64_t lo = g + 1, hi = g + t + 1, top = hi < e->n ? hi : e->n;
  memset(x, 0, sizeof *x);
  x->n = 1;
  for (uint64_t r = lo; r <= top; r++) {
    x->hr += 1.0;
    x->ndcg += 1.0 / log2((double)r + 1.0);
    x->ap += 1.0 / (double)r;
  }
  x->hr /= m;
  x->ndcg /= m;
  x->ap /= m;
  x->rr = (harm(e, hi) - harm(e, lo - 1)) / m;
}

/* Rank of item t among items 0..n-1 not masked: greater and tied. */
static void rank_of(const eval_t *e, const double *s, uint32_t n, uint32_t t,
                    const uint32_t *excl, uint32_t n_excl, uint64_t *greater,
                    uint64_t *ties) {
  double st = s[t];
  uint64_t g = 0, q = 0;
  for (uint32_t i = 0; i < n; i++) {
    g += s[i] > st;
    q += s[i] == st;
  }
  q--; /* t itself */
  for (uint32_t k = 0; k < n_excl; k++) {
    double v = s[excl[k]];
    g -= v > st;
    q -= v == st;
  }
  (void)e;
  *greater = g;
  *ties = q;
}

/* Marks the top-N unmasked items of s as covered. */
static void cover_top(eval_t *e, method_t *m, const double *s, uint32_t n) {
  uint32_t best[256];
  uint32_t nb = 0, want = e->n < 256 ? e->n : 256;
  for (uint32_t i = 0; i < n; i++) {
    if (e->mask[i])
      continue;
    if (nb == want && !(s[i] > s[best[nb - 1]]))
      continue;
    uint32_t k = nb < want ? nb++ : nb - 1;
    while (k > 0 && s[i] > s[best[k - 1]]) {
      best[k] = best[k - 1];
      k--;
    }
    best[k] = i;
  }
  for (uint32_t k = 0; k < nb; k++)
    if (!m->covered[best[k]]) {
      m->covered[best[k]] = 1;
      m->n_covered++;
    }
}

static int grow_items(eval_t *e, uint32_t need) {
  if (need <= e->cap)
    return 0;
  uint32_t cap = e->cap ? e->cap : 1024;
  while (cap < need)
    cap *= 2;
#define GROW(p, T)                                                             \
  do {                                                                         \
    T *np = rs_realloc(e->p, sizeof(T) * cap);                                 \
    if (!np)                                                                   \
      return RS_ENOMEM;                                                        \
    memset(np + e->cap, 0, sizeof(T) * (cap - e->cap));                        \
    e->p = np;                                                                 \
  } while (0)
  GROW(count, int64_t);
  GROW(pop_log, double);
  GROW(log_item, uint32_t);
  GROW(mask, uint8_t);
  GROW(score, double);
  GROW(fscore, float);
  for (int k = 0; k < N_METHODS; k++)
    GROW(m[k].covered, uint8_t);
#undef GROW
  e->cap = cap;
  return 0;
}

static int pair_seen_add(eval_t *e, uint32_t user, uint32_t item) {
  /* open addressing on (user, item) + 1; returns 1 if it was there */
  if (2 * (e->n_pairs + 1) > e->cap_pairs) {
    size_t cap = e->cap_pairs ? e->cap_pairs * 2 : 4096;
    uint64_t *np = rs_calloc(cap, sizeof(uint64_t));
    if (!np)
      return RS_ENOMEM;
    for (size_t i = 0; i < e->cap_pairs; i++)
      if (e->pairs[i]) {
        size_t j = rs_mix64(e->pairs[i]) & (cap - 1);
        while (np[j])
          j = (j + 1) & (cap - 1);
        np[j] = e->pairs[i];
      }
    rs_free(e->pairs);
    e->pairs = np;
    e->cap_pairs = cap;
  }
  uint64_t key = (((uint64_t)user << 32) | item) + 1;
  size_t j = rs_mix64(key) & (e->cap_pairs - 1);
  for (; e->pairs[j]; j = (j + 1) & (e->cap_pairs - 1))
    if (e->pairs[j] == key)
      return 1;
  e->pairs[j] = key;
  e->n_pairs++;
  return 0;
}

static int consume(eval_t *e, uint32_t user, uint32_t idx) {
  if (e->n_consumed[user] == e->cap_consumed[user]) {
    uint32_t cap = e->cap_consumed[user] ? e->cap_consumed[user] * 2 : 8;
    uint32_t *p = rs_realloc(e->consumed[user], cap * sizeof(uint32_t));
    if (!p)
      return RS_ENOMEM;
    e->consumed[user] = p;
    e->cap_consumed[user] = cap;
  }
  e->consumed[user][e->n_consumed[user]++] = idx;
  return 0;
}

/* Scores one method into e->score and adds its metrics. */
static void score_method(eval_t *e, int k, uint32_t n_items, uint32_t t,
                         const uint32_t *excl, uint32_t n_excl, int after) {
  method_t *m = &e->m[k];
  acc_t x;
  if (k == M_RANDOM) {
    uint64_t cands = (uint64_t)n_items - n_excl;
    rank_metrics(e, 0, cands - 1, &x);
  } else {
    uint64_t g, q;
    rank_of(e, e->score, n_items, t, excl, n_excl, &g, &q);
    rank_metrics(e, g, q, &x);
    cover_top(e, m, e->score, n_items);
  }
  acc_add(&m->all, &x);
  acc_add(&m->win, &x);
  if (after)
    acc_add(&m->after, &x);
}

static void miss_all(eval_t *e, int after) {
  acc_t x = {.n = 1};
  for (int k = 0; k < N_METHODS; k++) {
    acc_add(&e->m[k].all, &x);
    acc_add(&e->m[k].win, &x);
    if (after)
      acc_add(&e->m[k].after, &x);
  }
}

/* Ranking evaluation of event ev before it is learned. */
static int eval_rank(eval_t *e, const rs_eval_event_t *ev, int after) {
  int32_t t = e->op_index[ev->item];
  e->evaluated++;
  if (after)
    e->evaluated_after++;
  if (t < 0) {
    e->unknown_items++;
    miss_all(e, after);
    return 0;
  }
  rs__mf_view(e->mf, &e->view);
  uint32_t n_items = e->view.n_items;
  const uint32_t *excl = e->consumed[ev->user];
  uint32_t n_excl = e->n_consumed[ev->user];
  for (uint32_t k = 0; k < n_excl; k++)
    e->mask[excl[k]] = 1;

  /* The model, or its cold-start path. */
  float bias;
  int64_t events;
  int rc = rs__mf_user(e->mf, 0, e->log.users.s[ev->user],
                       e->log.users.len[ev->user], e->uvec, &bias, &events);
  if (rc && rc != RS_ENOENT)
    return rc;
  if (events < e->view.min_user_events) {
    e->cold_events++;
    for (uint32_t i = 0; i < n_items; i++)
      e->score[i] = e->view.item_pop_log[i];
  } else {
    rs_mf_score_all(e->view.items,
                    e->view.objective == RS_MF_OBJ_BPR ? e->view.item_bias
                                                       : NULL,
                    n_items, e->uvec, e->view.kp, e->fscore);
    double corr = e->view.score_log_count;
    for (uint32_t i = 0; i < n_items; i++) {
      double sc =
          e->fscore[i] + (corr != 0 && e->view.item_count[i] > 0
                              ? corr * log((double)e->view.item_count[i])
                              : 0.0);
      /* a diverged model (huge finite factors) can overflow a dot product:
       * such a score ranks last rather than poisoning the counts */
      e->score[i] = sc == sc ? sc : -INFINITY;
    }
  }
  score_method(e, M_MODEL, n_items, (uint32_t)t, excl, n_excl, after);

  for (uint32_t i = 0; i < n_items; i++)
    e->score[i] = e->pop_log[i];
  score_method(e, M_POP_DECAY, n_items, (uint32_t)t, excl, n_excl, after);
  for (uint32_t i = 0; i < n_items; i++)
    e->score[i] = (double)e->count[i];
  score_method(e, M_POP_ALL, n_items, (uint32_t)t, excl, n_excl, after);
  score_method(e, M_RANDOM, n_items, (uint32_t)t, excl, n_excl, after);
  if (e->oracle.on) {
    uint32_t gu = e->oracle.gen_user[ev->user];
    double a = e->oracle.go.affinity;
    for (uint32_t i = 0; i < n_items; i++) {
      uint32_t li = e->log_item[i];
      e->score[i] =
          e->oracle.log_pop[li] +
          a * rs_gen_affinity(e->oracle.gen, gu, e->oracle.gen_item[li]);
    }
    score_method(e, M_ORACLE, n_items, (uint32_t)t, excl, n_excl, after);
  }
  for (uint32_t k = 0; k < n_excl; k++)
    e->mask[excl[k]] = 0;
  return 0;
}

static void add_err(method_t *m, double err, int after) {
  acc_t x = {.abs_err = fabs(err), .sq_err = err * err, .n = 1};
  acc_add(&m->all, &x);
  acc_add(&m->win, &x);
  if (after)
    acc_add(&m->after, &x);
}

static double clip(const eval_t *e, double v) {
  return v < e->view.rating_min   ? e->view.rating_min
         : v > e->view.rating_max ? e->view.rating_max
                                  : v;
}

static int on_emit(void *opaque, uint32_t port, const rs_record_t *rec) {
  eval_t *e = opaque;
  if (rec->kind == RS_KIND_MF_UPDATE && rec->payload) {
    e->last = *(const rs_mf_update_t *)rec->payload;
    e->got_last = 1;
  }
  return 0;
}

static void series_header(eval_t *e) {
  if (!e->series)
    return;
  fprintf(e->series, "events,evaluated");
  for (int k = 0; k < N_METHODS; k++) {
    if (k == M_ORACLE && !e->oracle.on)
      continue;
    if (is_explicit(e)) {
      if (k == M_MODEL || k == M_POP_DECAY)
        fprintf(e->series, ",%s_mae,%s_rmse",
                k == M_MODEL ? "model" : "global_mean",
                k == M_MODEL ? "model" : "global_mean");
    } else {
      fprintf(e->series, ",%s_recall", method_key[k]);
    }
  }
  if (!is_explicit(e))
    for (int k = 0; k < N_METHODS; k++)
      if (k != M_RANDOM && (k != M_ORACLE || e->oracle.on))
        fprintf(e->series, ",%s_ndcg", method_key[k]);
  fprintf(e->series, "\n");
}

static void series_row(eval_t *e) {
  uint64_t n = e->m[M_MODEL].win.n;
  if (e->series) {
    fprintf(e->series, "%" PRIu64 ",%" PRIu64, e->replayed, n);
    for (int k = 0; k < N_METHODS; k++) {
      const acc_t *w = &e->m[k].win;
      if (k == M_ORACLE && !e->oracle.on)
        continue;
      if (is_explicit(e)) {
        if (k == M_MODEL || k == M_POP_DECAY) {
          if (w->n)
            fprintf(e->series, ",%.6f,%.6f", w->abs_err / (double)w->n,
                    sqrt(w->sq_err / (double)w->n));
          else
            fprintf(e->series, ",NaN,NaN");
        }
      } else if (w->n) {
        fprintf(e->series, ",%.6f", w->hr / (double)w->n);
      } else {
        fprintf(e->series, ",NaN");
      }
    }
    if (!is_explicit(e))
      for (int k = 0; k < N_METHODS; k++)
        if (k != M_RANDOM && (k != M_ORACLE || e->oracle.on)) {
          const acc_t *w = &e->m[k].win;
          if (w->n)
            fprintf(e->series, ",%.6f", w->ndcg / (double)w->n);
          else
            fprintf(e->series, ",NaN");
        }
    fprintf(e->series, "\n");
  }
  for (int k = 0; k < N_METHODS; k++)
    memset(&e->m[k].win, 0, sizeof(acc_t));
  e->win_events = 0;
}

/* ----------------------------------------------------------- replay */

static int replay(eval_t *e, char *err, size_t errsz) {
  rs_mf_view_t v;
  rs__mf_view(e->mf, &v);
  e->view = v;
  e->uvec = NULL;
  void *ubase = rs_calloc(1, sizeof(float) * v.kp + RS_MF_ALIGN);
  if (!ubase)
    return RS_ENOMEM;
  e->uvec = (float *)(((uintptr_t)ubase + RS_MF_ALIGN - 1) &
                      ~(uintptr_t)(RS_MF_ALIGN - 1));
  uint32_t nu = e->log.users.n, ni = e->log.items.n;
  e->consumed = rs_calloc(nu ? nu : 1, sizeof(uint32_t *));
  e->n_consumed = rs_calloc(nu ? nu : 1, sizeof(uint32_t));
  e->cap_consumed = rs_calloc(nu ? nu : 1, sizeof(uint32_t));
  e->op_index = rs_malloc(sizeof(int32_t) * (ni ? ni : 1));
  e->n_harmonic = (size_t)ni + 2;
  e->harmonic = rs_malloc(sizeof(double) * e->n_harmonic);
  if (!e->consumed || !e->n_consumed || !e->cap_consumed || !e->op_index ||
      !e->harmonic) {
    rs_free(ubase);
    return RS_ENOMEM;
  }
  for (uint32_t i = 0; i < ni; i++)
    e->op_index[i] = -1;
  e->harmonic[0] = 0;
  for (size_t i = 1; i < e->n_harmonic; i++)
    e->harmonic[i] = e->harmonic[i - 1] + 1.0 / (double)i;
  size_t n = e->log.n;
  if (e->max_events > 0 && (size_t)e->max_events < n)
    n = (size_t)e->max_events;
  uint64_t warm = e->warmup >= 0 ? (uint64_t)e->warmup
                                 : (uint64_t)((double)n * e->warmup_pct / 100);
  e->warmup = (int64_t)warm;
  series_header(e);
  uint64_t t0 = rs_now_ns();
  int rc = 0;
  for (size_t k = 0; k < n && !rc; k++) {
    const rs_eval_event_t *ev = &e->log.ev[k];
    int after = k >= warm;
    rs__mf_view(e->mf, &e->view);
    if (!is_explicit(e)) {
      int seen = pair_seen_add(e, ev->user, ev->item);
      if (seen < 0) {
        rc = seen;
        break;
      }
      if (!seen && (rc = eval_rank(e, ev, after)))
        break;
    } else if (ev->type == RS_EVENT_RATING && ev->has_value) {
      e->evaluated++;
      if (after)
        e->evaluated_after++;
      double mean = e->mean_n ? e->mean_sum / (double)e->mean_n
                              : (e->view.rating_min + e->view.rating_max) / 2;
      add_err(&e->m[M_POP_DECAY], clip(e, mean) - ev->value, after);
    }
    /* Learn it. */
    rs_interaction_t ia = {
        .user = e->log.users.s[ev->user],
        .user_len = e->log.users.len[ev->user],
        .item = e->log.items.s[ev->item],
        .item_len = e->log.items.len[ev->item],
        .event_type = ev->type,
        .has_value = ev->has_value,
        .value = ev->value,
        .timestamp_ms = ev->ts_ms,
    };
    rs_record_t rec = {.kind = RS_KIND_INTERACTION,
                       .key = ia.user,
                       .key_len = ia.user_len,
                       .payload = &ia,
                       .timestamp_ms = ev->ts_ms,
                       .src_partition = 0,
                       .src_offset = (int64_t)k};
    e->got_last = 0;
    rc = rs_local_push(e->local, 0, &rec, 1);
    if (rc) {
      rs_seterr(err, errsz, rc,
                "the operator failed on event %zu (%s:%" PRIu64 "): %s", k,
                e->input, ev->line, rs_strerror(rc));
      break;
    }
    e->replayed++;
    e->win_events++;
    if (!e->got_last)
      goto window; /* dead-lettered: nothing learned */
    uint32_t idx = e->last.item_index;
    if (is_explicit(e) && ev->type == RS_EVENT_RATING && ev->has_value) {
      double pred = e->last.score;
      if (idx == UINT32_MAX)
        pred = clip(e, e->view.global_mean + e->last.user_bias);
      add_err(&e->m[M_MODEL], pred - ev->value, after);
      e->mean_sum += ev->value;
      e->mean_n++;
    }
    if (idx != UINT32_MAX) {
      if ((rc = grow_items(e, idx + 1)))
        break;
      if (e->op_index[ev->item] < 0) {
        e->op_index[ev->item] = (int32_t)idx;
        e->log_item[idx] = ev->item;
        e->pop_log[idx] = -INFINITY;
      }
      double tt = (double)ev->ts_ms * e->inv_tau, g = e->pop_log[idx];
      e->pop_log[idx] =
          g == -INFINITY ? tt : (g > tt ? g : tt) + log1p(exp(-fabs(g - tt)));
      e->count[idx]++;
      if (!is_explicit(e)) {
        /* consumed: once per pair */
        int first = 1;
        const uint32_t *c = e->consumed[ev->user];
        for (uint32_t q = e->n_consumed[ev->user]; q-- > 0;)
          if (c[q] == idx) {
            first = 0;
            break;
          }
        if (first && (rc = consume(e, ev->user, idx)))
          break;
      }
    }
  window:
    if (e->window > 0 && e->win_events == (uint64_t)e->window)
      series_row(e);
  }
  if (!rc && e->win_events)
    series_row(e);
  e->seconds = (double)(rs_now_ns() - t0) / 1e9;
  rs__mf_view(e->mf, &e->view);
  rs_free(ubase);
  e->uvec = NULL;
  return rc;
}

/* ------------------------------------------------------------ set-up */

static int parse_oracle(eval_t *e, const char *spec) {
  oracle_t *o = &e->oracle;
  rs_gen_opts_default(&o->go);
  char *s = rs_strdup(spec), *save = NULL;
  if (!s)
    return EXIT_FAIL;
  int rc = 0;
  for (char *kv = strtok_r(s, ",", &save); kv && !rc;
       kv = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(kv, '=');
    int64_t iv;
    double dv;
    if (!eq) {
      rc = rs_usage_error("eval", "--oracle: '%s' is not KEY=VALUE", kv);
      break;
    }
    *eq = '\0';
    const char *v = eq + 1;
    if (!strcmp(kv, "seed") && !rs_parse_int64(v, &iv) && iv >= 0)
      o->go.seed = (uint64_t)iv;
    else if (!strcmp(kv, "users") && !rs_parse_int64(v, &iv) && iv >= 1 &&
             iv <= UINT32_MAX)
      o->go.users = (uint32_t)iv;
    else if (!strcmp(kv, "items") && !rs_parse_int64(v, &iv) && iv >= 1 &&
             iv <= UINT32_MAX)
      o->go.items = (uint32_t)iv;
    else if (!strcmp(kv, "zipf") && !rs_parse_double(v, &dv) && dv >= 0)
      o->go.item_zipf = dv;
    else if (!strcmp(kv, "affinity") && !rs_parse_double(v, &dv) && dv >= 0)
      o->go.affinity = dv;
    else
      rc = rs_usage_error("eval",
                          "--oracle: bad '%s=%s' (keys: seed, users, items, "
                          "zipf, affinity)",
                          kv, v);
  }
  rs_free(s);
  o->on = !rc;
  return rc;
}

/* "u<n>" / "i<n>" with n < limit -> n. */
static int gen_id(const char *s, uint32_t len, char prefix, uint32_t limit,
                  uint32_t *out) {
  if (len < 2 || len > 11 || s[0] != prefix)
    return -1;
  uint64_t v = 0;
  for (uint32_t i = 1; i < len; i++) {
    if (s[i] < '0' || s[i] > '9' || (i == 1 && s[i] == '0' && len > 2))
      return -1;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (v >= limit)
    return -1;
  *out = (uint32_t)v;
  return 0;
}

static int oracle_prepare(eval_t *e, char *err, size_t errsz) {
  oracle_t *o = &e->oracle;
  if (!o->on)
    return 0;
  o->gen = rs_gen_new(&o->go);
  o->gen_user = rs_malloc(sizeof(uint32_t) * (e->log.users.n + 1));
  o->gen_item = rs_malloc(sizeof(uint32_t) * (e->log.items.n + 1));
  o->log_pop = rs_malloc(sizeof(double) * (e->log.items.n + 1));
  if (!o->gen || !o->gen_user || !o->gen_item || !o->log_pop)
    return rs_seterr(err, errsz, RS_ENOMEM, "--oracle: out of memory");
  for (uint32_t u = 0; u < e->log.users.n; u++)
    if (gen_id(e->log.users.s[u], e->log.users.len[u], 'u', o->go.users,
               &o->gen_user[u]))
      return rs_seterr(err, errsz, RS_EINVAL,
                       "--oracle: user '%.*s' is not one of the generator's "
                       "users (u0..u%" PRIu32 "): is this the file `recstream "
                       "generate` wrote with these options?",
                       (int)RS_MIN(e->log.users.len[u], 40), e->log.users.s[u],
                       o->go.users - 1);
  for (uint32_t i = 0; i < e->log.items.n; i++)
    if (gen_id(e->log.items.s[i], e->log.items.len[i], 'i', o->go.items,
               &o->gen_item[i]))
      return rs_seterr(err, errsz, RS_EINVAL,
                       "--oracle: item '%.*s' is not one of the generator's "
                       "items (i0..i%" PRIu32 ")",
                       (int)RS_MIN(e->log.items.len[i], 40), e->log.items.s[i],
                       o->go.items - 1);
  for (uint32_t i = 0; i < e->log.items.n; i++)
    o->log_pop[i] = log(rs_gen_item_popularity(o->gen, o->gen_item[i]));
  return 0;
}

static const char default_yaml[] =
    "app: eval\n"
    "sources: [ { name: in, topic: in } ]\n"
    "operators: [ { name: mf, type: mf_update, input: in } ]\n"
    "sinks: [ { name: out, input: mf, topic: out } ]\n";

/* Loads the config (the given file, or a one-operator pipeline), checks
 * it as `validate` does, and picks the mf_update operator. */
static int load_model_config(eval_t *e, char *err, size_t errsz) {
  const char **sets = rs_calloc(e->n_sets + e->n_opts + 1, sizeof(char *));
  char **owned = rs_calloc(e->n_opts + 1, sizeof(char *));
  if (!sets || !owned) {
    rs_free(sets);
    rs_free(owned);
    return rs_seterr(err, errsz, RS_ENOMEM, "out of memory");
  }
  int rc = 0;
  for (int pass = 0; pass < 2 && !rc; pass++) {
    size_t ns = 0;
    for (size_t i = 0; i < e->n_sets; i++)
      sets[ns++] = e->sets[i];
    if (pass == 1) {
      for (size_t i = 0; i < e->n_opts && !rc; i++) {
        rs_buf_t b = {0};
        if (rs_buf_printf(&b, "operators.%s.%s", e->opcfg->name, e->opts[i]))
          rc = RS_ENOMEM;
        owned[i] = b.data;
        sets[ns++] = b.data;
      }
      rs_graph_destroy(e->graph);
      rs_registry_destroy(e->reg);
      rs_config_destroy(e->cfg);
      e->graph = NULL;
      e->reg = NULL;
      e->cfg = NULL;
    }
    if (!rc)
      rc = e->config ? rs_config_load(e->config, sets, ns, &e->cfg, err, errsz)
                     : rs_config_load_string("(eval defaults)", default_yaml,
                                             strlen(default_yaml), sets, ns,
                                             &e->cfg, err, errsz);
    if (!rc)
      rc = rs_registry_new(&e->reg, err, errsz);
    for (size_t i = 0; !rc && i < e->cfg->n_plugins; i++)
      rc = rs_registry_load_plugin(e->reg, e->cfg->plugins[i], err, errsz);
    if (!rc)
      rc = rs_graph_build(e->cfg, e->reg, &e->graph, err, errsz);
    if (rc)
      break;
    e->opcfg = NULL;
    size_t found = 0;
    for (size_t i = 0; i < e->cfg->n_operators; i++) {
      const rs_operator_cfg_t *oc = &e->cfg->operators[i];
      if (e->operator_name ? !strcmp(oc->name, e->operator_name)
                           : !strcmp(oc->type, "mf_update")) {
        e->opcfg = oc;
        found++;
      }
    }
    if (e->operator_name && e->opcfg && strcmp(e->opcfg->type, "mf_update"))
      rc = rs_seterr(err, errsz, RS_ECONFIG,
                     "%s: operator '%s' is a %s, not an mf_update", e->config,
                     e->operator_name, e->opcfg->type);
    else if (!found)
      rc = rs_seterr(err, errsz, RS_ECONFIG, "%s: no %s%s%s", e->config,
                     e->operator_name ? "operator named '"
                                      : "mf_update "
                                        "operator",
                     e->operator_name ? e->operator_name : "",
                     e->operator_name ? "'" : "");
    else if (found > 1)
      rc = rs_seterr(err, errsz, RS_ECONFIG,
                     "%s: %zu mf_update operators; choose one with "
                     "--operator NAME",
                     e->config, found);
    if (!e->n_opts)
      break;
  }
  for (size_t i = 0; i < e->n_opts; i++)
    rs_free(owned[i]);
  rs_free(owned);
  rs_free(sets);
  return rc;
}

/* Path of an executable gnuplot, or NULL. RECSTREAM_GNUPLOT overrides. */
static const char *find_gnuplot(char *buf, size_t size) {
  const char *env = getenv("RECSTREAM_GNUPLOT");
  if (env && *env)
    return access(env, X_OK) == 0 ? env : NULL;
  const char *path = getenv("PATH");
  if (!path)
    path = "/usr/bin:/bin";
  while (*path) {
    size_t n = strcspn(path, ":");
    if (n && n + 9 < size) {
      snprintf(buf, size, "%.*s/gnuplot", (int)n, path);
      if (access(buf, X_OK) == 0)
        return buf;
    }
    path += n + (path[n] == ':');
  }
  return NULL;
}

static int plot(eval_t *e, const char *gnuplot, const char *data, char *err,
                size_t errsz) {
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "'%s' 2>&1", gnuplot);
  if (strchr(gnuplot, '\'') || strchr(data, '\'') || strchr(e->plot_out, '\''))
    return rs_seterr(err, errsz, RS_EINVAL,
                     "--plot: paths with a quote (') are not supported");
  FILE *g = popen(cmd, "w");
  if (!g)
    return rs_seterr(err, errsz, RS_EIO, "--plot: cannot run %s: %s", gnuplot,
                     strerror(errno));
  fprintf(g,
          "set terminal png size 1100,650\n"
          "set termoption noenhanced\n"
          "set output '%s'\n"
          "set datafile separator ','\n"
          "set datafile missing 'NaN'\n"
          "set key outside right top\n"
          "set grid\n"
          "set xlabel 'events replayed'\n",
          e->plot_out);
  if (is_explicit(e)) {
    fprintf(g,
            "set title 'prequential MAE per %" PRId64 " events (%s)'\n"
            "set ylabel 'MAE'\n"
            "plot '%s' using 1:3 with lines lw 2 title 'model', "
            "'' using 1:5 with lines title 'global mean'\n",
            e->window, e->input, data);
  } else {
    fprintf(g,
            "set title 'prequential recall@%u per %" PRId64 " events (%s)'\n"
            "set ylabel 'recall@%u'\n"
            "plot '%s' using 1:3 with lines lw 2 title 'model', "
            "'' using 1:4 with lines title 'popularity, decayed', "
            "'' using 1:5 with lines title 'popularity, all-time', "
            "'' using 1:6 with lines title 'random'%s\n",
            e->n, e->window, e->input, e->n, data,
            e->oracle.on ? ", '' using 1:7 with lines title 'oracle'" : "");
  }
  int st = pclose(g);
  if (st != 0)
    return rs_seterr(err, errsz, RS_EIO,
                     "--plot: gnuplot failed (status %d); its messages are "
                     "above",
                     st);
  return 0;
}

/* ----------------------------------------------------------- report */

static double mean_of(double s, uint64_t n) {
  return n ? s / (double)n : 0.0;
}

static json_t *acc_json(const eval_t *e, const method_t *m, const acc_t *a,
                        int k) {
  json_t *o = json_object();
  if (is_explicit(e)) {
    json_object_set_new(o, "mae", json_real(mean_of(a->abs_err, a->n)));
    json_object_set_new(o, "rmse", json_real(sqrt(mean_of(a->sq_err, a->n))));
  } else {
    json_object_set_new(o, "recall", json_real(mean_of(a->hr, a->n)));
    json_object_set_new(o, "hit_rate", json_real(mean_of(a->hr, a->n)));
    json_object_set_new(o, "ndcg", json_real(mean_of(a->ndcg, a->n)));
    json_object_set_new(o, "map", json_real(mean_of(a->ap, a->n)));
    json_object_set_new(o, "mrr", json_real(mean_of(a->rr, a->n)));
    if (k != M_RANDOM)
      json_object_set_new(
          o, "coverage",
          json_real(e->view.n_items
                        ? (double)m->n_covered / (double)e->view.n_items
                        : 0.0));
  }
  json_object_set_new(o, "events", json_integer((json_int_t)a->n));
  return o;
}

static const char *const obj_name[] = {"isgd", "bpr", "explicit"};

static int method_on(const eval_t *e, int k) {
  if (is_explicit(e))
    return k == M_MODEL || k == M_POP_DECAY;
  return k != M_ORACLE || e->oracle.on;
}

static const char *label(const eval_t *e, int k) {
  if (is_explicit(e) && k == M_POP_DECAY)
    return "global mean (running)";
  return method_label[k];
}

static const char *key(const eval_t *e, int k) {
  if (is_explicit(e) && k == M_POP_DECAY)
    return "global_mean";
  return method_key[k];
}

/* Whether path can be written (it, or a new file in its directory), so
 * that a bad --json fails before the replay rather than after it. */
static int check_writable(const char *opt, const char *path, char *err,
                          size_t errsz) {
  struct stat st;
  if (stat(path, &st) == 0) {
    if (S_ISDIR(st.st_mode))
      return rs_seterr(err, errsz, RS_EIO, "%s: %s is a directory", opt, path);
    if (access(path, W_OK))
      return rs_seterr(err, errsz, RS_EIO, "%s: cannot write %s: %s", opt, path,
                       strerror(errno));
    return 0;
  }
  if (errno != ENOENT)
    return rs_seterr(err, errsz, RS_EIO, "%s: cannot write %s: %s", opt, path,
                     strerror(errno));
  const char *slash = strrchr(path, '/');
  char dir[4096];
  if (!slash)
    snprintf(dir, sizeof dir, ".");
  else
    snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path),
             path);
  const char *why = stat(dir, &st)             ? strerror(errno)
                    : !S_ISDIR(st.st_mode)     ? "not a directory"
                    : access(dir, W_OK | X_OK) ? strerror(errno)
                                               : NULL;
  if (why)
    return rs_seterr(err, errsz, RS_EIO, "%s: cannot write %s: %s: %s", opt,
                     path, dir, why);
  return 0;
}

static int write_json(eval_t *e, char *err, size_t errsz) {
  json_t *root = json_object();
  json_object_set_new(root, "input", json_string(e->input));
  static const char *const fmts[] = {"movielens", "ml1m", "csv", "avro"};
  json_object_set_new(root, "format", json_string(fmts[e->format]));
  json_object_set_new(root, "operator", json_string(e->opcfg->name));
  json_object_set_new(root, "objective",
                      json_string(obj_name[e->view.objective]));
  json_object_set_new(root, "k", json_integer(e->view.k));
  json_object_set_new(root, "n", json_integer(e->n));
  json_object_set_new(root, "events", json_integer((json_int_t)e->replayed));
  json_object_set_new(root, "bad_lines", json_integer((json_int_t)e->log.bad));
  json_object_set_new(root, "warmup_events", json_integer(e->warmup));
  json_object_set_new(root, "evaluated",
                      json_integer((json_int_t)e->evaluated));
  json_object_set_new(root, "evaluated_after_warmup",
                      json_integer((json_int_t)e->evaluated_after));
  json_object_set_new(root, "unknown_item_events",
                      json_integer((json_int_t)e->unknown_items));
  json_object_set_new(root, "cold_start_events",
                      json_integer((json_int_t)e->cold_events));
  json_object_set_new(root, "items", json_integer(e->view.n_items));
  json_object_set_new(root, "users", json_integer(e->log.users.n));
  json_object_set_new(root, "model_version",
                      json_integer((json_int_t)e->view.version));
  json_object_set_new(root, "seconds", json_real(e->seconds));
  json_t *aw = json_object(), *al = json_object();
  for (int k = 0; k < N_METHODS; k++) {
    if (!method_on(e, k))
      continue;
    json_object_set_new(aw, key(e, k),
                        acc_json(e, &e->m[k], &e->m[k].after, k));
    json_object_set_new(al, key(e, k), acc_json(e, &e->m[k], &e->m[k].all, k));
  }
  json_object_set_new(root, "after_warmup", aw);
  json_object_set_new(root, "all", al);
  json_t *ctr = json_object();
  static const char *const names[] = {
      "learned",       "not_learned",   "nonfinite_updates", "nonfinite_state",
      "users_created", "items_created", "items_refused"};
  for (size_t i = 0; i < RS_ARRAY_SIZE(names); i++)
    json_object_set_new(ctr, names[i],
                        json_integer(rs_local_counter(e->local, names[i])));
  json_object_set_new(ctr, "dead_lettered",
                      json_integer((json_int_t)rs_local_dead_count(e->local)));
  json_object_set_new(root, "counters", ctr);
  int rc = 0;
  if (!strcmp(e->json_out, "-")) {
    if (json_dumpf(root, stdout, JSON_INDENT(2)) || fputc('\n', stdout) < 0)
      rc = rs_seterr(err, errsz, RS_EIO, "--json: cannot write stdout");
  } else if (json_dump_file(root, e->json_out, JSON_INDENT(2))) {
    rc = rs_seterr(err, errsz, RS_EIO, "--json: cannot write %s: %s",
                   e->json_out, strerror(errno));
  }
  json_decref(root);
  return rc;
}

static void print_table(const eval_t *e, FILE *f, int after) {
  if (is_explicit(e)) {
    fprintf(f, "  %-28s %9s %9s %9s\n", "method", "MAE", "RMSE", "ratings");
  } else {
    char h1[32], h2[32], h3[32];
    snprintf(h1, sizeof h1, "recall@%u", e->n);
    snprintf(h2, sizeof h2, "NDCG@%u", e->n);
    snprintf(h3, sizeof h3, "MAP@%u", e->n);
    fprintf(f, "  %-28s %9s %9s %9s %9s %9s\n", "method", h1, h2, h3, "MRR",
            "coverage");
  }
  for (int k = 0; k < N_METHODS; k++) {
    if (!method_on(e, k))
      continue;
    const method_t *m = &e->m[k];
    const acc_t *a = after ? &m->after : &m->all;
    char lab[64];
    snprintf(lab, sizeof lab, "%s%s%s", label(e, k), k == M_MODEL ? " " : "",
             k == M_MODEL ? obj_name[e->view.objective] : "");
    if (is_explicit(e)) {
      fprintf(f, "  %-28s %9.4f %9.4f %9" PRIu64 "\n", lab,
              mean_of(a->abs_err, a->n), sqrt(mean_of(a->sq_err, a->n)), a->n);
    } else {
      char cov[16] = "-";
      if (k != M_RANDOM)
        snprintf(cov, sizeof cov, "%.4f",
                 e->view.n_items
                     ? (double)m->n_covered / (double)e->view.n_items
                     : 0.0);
      fprintf(f, "  %-28s %9.4f %9.4f %9.4f %9.4f %9s\n", lab,
              mean_of(a->hr, a->n), mean_of(a->ndcg, a->n),
              mean_of(a->ap, a->n), mean_of(a->rr, a->n), cov);
    }
  }
}

static void print_summary(const eval_t *e) {
  static const char *const fmts[] = {"movielens", "ml1m", "csv", "avro"};
  printf("recstream eval: %s (%s): %" PRIu64 " events replayed, %" PRIu64
         " bad lines skipped\n",
         e->input, fmts[e->format], e->replayed, e->log.bad);
  printf("  model: operator '%s', objective %s, k %u; %u items, %u users; "
         "%" PRIu64 " updates (model version); %.1f s (%.0f events/s)\n",
         e->opcfg->name, obj_name[e->view.objective], e->view.k,
         e->view.n_items, e->log.users.n, e->view.version, e->seconds,
         e->seconds > 0 ? (double)e->replayed / e->seconds : 0.0);
  int64_t guard = rs_local_counter(e->local, "nonfinite_updates");
  if (guard > 0)
    printf("  NaN/Inf guard: %" PRId64 " updates discarded\n", guard);
  if (rs_local_dead_count(e->local))
    printf("  rejected by the operator: %" PRIu64 " events\n",
           rs_local_dead_count(e->local));
  if (is_explicit(e)) {
    printf("  evaluated: %" PRIu64 " ratings, %" PRIu64
           " after a warm-up of %" PRId64 " events\n",
           e->evaluated, e->evaluated_after, e->warmup);
  } else {
    printf("  evaluated: %" PRIu64 " first (user, item) meetings, %" PRIu64
           " after a warm-up of %" PRId64 " events; %" PRIu64
           " of never-seen items (misses for all), %" PRIu64
           " of cold users (fewer than %" PRId64
           " events: served by popularity)\n",
           e->evaluated, e->evaluated_after, e->warmup, e->unknown_items,
           e->cold_events, e->view.min_user_events);
  }
  if (!e->evaluated_after) {
    /* Every table and ratio after the warm-up would be 0 / 0. */
    printf("\nafter warm-up: nothing evaluated (the warm-up of %" PRId64
           " events covers the evaluated ones; lower --warmup)\n",
           e->warmup);
    printf("\nall events:\n");
    print_table(e, stdout, 0);
    return;
  }
  printf("\nafter warm-up:\n");
  print_table(e, stdout, 1);
  printf("\nall events:\n");
  print_table(e, stdout, 0);
  if (!is_explicit(e)) {
    const acc_t *mo = &e->m[M_MODEL].after, *pd = &e->m[M_POP_DECAY].after,
                *pa = &e->m[M_POP_ALL].after, * or = &e->m[M_ORACLE].after;
    double r = mean_of(mo->hr, mo->n), rd = mean_of(pd->hr, pd->n),
           ra = mean_of(pa->hr, pa->n);
    printf("\nafter warm-up, recall@%u of the model: %.2fx popularity "
           "(decayed), %.2fx popularity (all-time)",
           e->n, rd > 0 ? r / rd : 0.0, ra > 0 ? r / ra : 0.0);
    if (e->oracle.on) {
      double ro = mean_of(or->hr, or->n);
      printf(", %.0f%% of the oracle", ro > 0 ? 100 * r / ro : 0.0);
    }
    printf("\n");
  } else {
    const acc_t *mo = &e->m[M_MODEL].after, *gm = &e->m[M_POP_DECAY].after;
    printf("\nafter warm-up, MAE of the model: %.4f (global mean %.4f)\n",
           mean_of(mo->abs_err, mo->n), mean_of(gm->abs_err, gm->n));
  }
}

/* -------------------------------------------------------------- main */

static void eval_free(eval_t *e) {
  rs_local_destroy(e->local);
  rs_graph_destroy(e->graph);
  rs_registry_destroy(e->reg);
  rs_config_destroy(e->cfg);
  for (uint32_t u = 0; e->consumed && u < e->log.users.n; u++)
    rs_free(e->consumed[u]);
  rs_eval_log_free(&e->log);
  rs_free(e->count);
  rs_free(e->pop_log);
  rs_free(e->log_item);
  rs_free(e->op_index);
  rs_free(e->mask);
  rs_free(e->score);
  rs_free(e->fscore);
  rs_free(e->harmonic);
  for (int k = 0; k < N_METHODS; k++)
    rs_free(e->m[k].covered);
  rs_free(e->consumed);
  rs_free(e->n_consumed);
  rs_free(e->cap_consumed);
  rs_free(e->pairs);
  rs_gen_destroy(e->oracle.gen);
  rs_free(e->oracle.gen_user);
  rs_free(e->oracle.gen_item);
  rs_free(e->oracle.log_pop);
  rs_free(e->sets);
  rs_free(e->opts);
}

enum {
  OPT_TIME_UNIT = 256,
  OPT_STRICT,
  OPT_ORDER,
  OPT_MAX_EVENTS,
  OPT_OPERATOR,
  OPT_SET,
  OPT_WARMUP,
  OPT_ORACLE,
  OPT_JSON,
  OPT_SERIES,
  OPT_WINDOW,
  OPT_PLOT,
  OPT_LOG_LEVEL,
};

static int parse_args(eval_t *e, int argc, char **argv) {
  static const struct option lo[] = {
      {"input", required_argument, NULL, 'i'},
      {"format", required_argument, NULL, 'f'},
      {"time-unit", required_argument, NULL, OPT_TIME_UNIT},
      {"strict", no_argument, NULL, OPT_STRICT},
      {"order", required_argument, NULL, OPT_ORDER},
      {"max-events", required_argument, NULL, OPT_MAX_EVENTS},
      {"config", required_argument, NULL, 'c'},
      {"operator", required_argument, NULL, OPT_OPERATOR},
      {"option", required_argument, NULL, 'O'},
      {"set", required_argument, NULL, OPT_SET},
      {"n", required_argument, NULL, 'n'},
      {"warmup", required_argument, NULL, OPT_WARMUP},
      {"oracle", required_argument, NULL, OPT_ORACLE},
      {"json", required_argument, NULL, OPT_JSON},
      {"series", required_argument, NULL, OPT_SERIES},
      {"window", required_argument, NULL, OPT_WINDOW},
      {"plot", required_argument, NULL, OPT_PLOT},
      {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  e->sets = rs_calloc((size_t)argc + 1, sizeof(char *));
  e->opts = rs_calloc((size_t)argc + 1, sizeof(char *));
  if (!e->sets || !e->opts)
    return EXIT_FAIL;
  e->n = 10;
  e->warmup = -1;
  e->warmup_pct = 10;
  e->window = 1000;
  e->time_unit_ms = 1000;
  int ch, rc;
  int64_t v;
  optind = 0;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":hi:f:c:O:n:", lo, NULL)) != -1) {
    switch (ch) {
    case 'i':
      e->input = optarg;
      break;
    case 'f':
      if (rs_eval_format_parse(optarg, &e->format))
        return rs_usage_error(
            "eval",
            "--format: expected movielens, ml1m, csv or avro, "
            "got '%s'",
            optarg);
      e->have_format = 1;
      break;
    case OPT_TIME_UNIT:
      if (!strcmp(optarg, "s"))
        e->time_unit_ms = 1000;
      else if (!strcmp(optarg, "ms"))
        e->time_unit_ms = 1;
      else
        return rs_usage_error("eval", "--time-unit: expected s or ms, got '%s'",
                              optarg);
      break;
    case OPT_STRICT:
      e->strict = 1;
      break;
    case OPT_ORDER:
      if (strcmp(optarg, "time") && strcmp(optarg, "file"))
        return rs_usage_error(
            "eval", "--order: expected time or file, got '%s'", optarg);
      e->order_file = !strcmp(optarg, "file");
      break;
    case OPT_MAX_EVENTS:
      if (rs_parse_int64(optarg, &v) || v < 1)
        return rs_usage_error("eval",
                              "--max-events: expected a positive integer, got "
                              "'%s'",
                              optarg);
      e->max_events = v;
      break;
    case 'c':
      e->config = optarg;
      break;
    case OPT_OPERATOR:
      e->operator_name = optarg;
      break;
    case 'O':
      if (!strchr(optarg, '=') || optarg[0] == '=')
        return rs_usage_error("eval", "--option: expected KEY=VALUE, got '%s'",
                              optarg);
      e->opts[e->n_opts++] = optarg;
      break;
    case OPT_SET:
      e->sets[e->n_sets++] = optarg;
      break;
    case 'n':
      if (rs_parse_int64(optarg, &v) || v < 1 || v > 1000)
        return rs_usage_error(
            "eval", "--n: expected an integer in [1, 1000], got '%s'", optarg);
      e->n = (uint32_t)v;
      break;
    case OPT_WARMUP: {
      size_t l = strlen(optarg);
      double d;
      if (l > 1 && optarg[l - 1] == '%') {
        char tmp[64];
        snprintf(tmp, sizeof tmp, "%.*s", (int)(l - 1), optarg);
        if (rs_parse_double(tmp, &d) || d < 0 || d > 100)
          return rs_usage_error("eval",
                                "--warmup: expected a count or a percentage in "
                                "[0%%, 100%%], got '%s'",
                                optarg);
        e->warmup = -1;
        e->warmup_pct = d;
      } else if (!rs_parse_int64(optarg, &v) && v >= 0) {
        e->warmup = v;
      } else {
        return rs_usage_error("eval",
                              "--warmup: expected a count or a percentage "
                              "(e.g. 10%%), got '%s'",
                              optarg);
      }
      break;
    }
    case OPT_ORACLE:
      if ((rc = parse_oracle(e, optarg)))
        return rc;
      break;
    case OPT_JSON:
      e->json_out = optarg;
      break;
    case OPT_SERIES:
      e->series_out = optarg;
      break;
    case OPT_WINDOW:
      if (rs_parse_int64(optarg, &v) || v < 1)
        return rs_usage_error(
            "eval", "--window: expected a positive integer, got '%s'", optarg);
      e->window = v;
      break;
    case OPT_PLOT:
      e->plot_out = optarg;
      break;
    case OPT_LOG_LEVEL: {
      int lvl;
      if (rs_log_parse_level(optarg, &lvl))
        return rs_usage_error(
            "eval",
            "--log-level: expected error, warn, info or debug, "
            "got '%s'",
            optarg);
      rs_log_set_level(lvl);
      break;
    }
    case 'h':
      fputs(eval_help, stdout);
      return -1;
    default:
      return rs_option_error("eval", ch, argv[optind - 1]);
    }
  }
  if (optind < argc)
    return rs_usage_error("eval", "unexpected argument '%s'", argv[optind]);
  if (!e->input)
    return rs_usage_error("eval", "--input FILE is required");
  if (!e->have_format) {
    size_t l = strlen(e->input);
    if (l > 5 && !strcmp(e->input + l - 5, ".avro"))
      e->format = RS_EVAL_AVRO;
    else
      return rs_usage_error("eval",
                            "--format is required (movielens, ml1m, csv or "
                            "avro) unless the input ends in .avro");
  }
  if (e->operator_name && !e->config)
    return rs_usage_error("eval", "--operator needs --config");
  if (e->n_sets && !e->config)
    return rs_usage_error("eval",
                          "--set needs --config (use -O KEY=VALUE for the "
                          "operator's options)");
  return 0;
}

int rs_cmd_eval(int argc, char **argv) {
  eval_t e;
  memset(&e, 0, sizeof e);
  rs_log_set_level(RS_LOG_WARN);
  int rc = parse_args(&e, argc, argv);
  if (rc) {
    eval_free(&e);
    return rc < 0 ? EXIT_OK : rc;
  }
  char err[2048] = "", gpbuf[4096];
  const char *gnuplot = NULL;
  if (e.plot_out && !(gnuplot = find_gnuplot(gpbuf, sizeof gpbuf))) {
    fprintf(stderr,
            PROG ": --plot needs gnuplot, which was not found%s (Debian: "
                 "apt-get install gnuplot-nox); run without --plot, or write "
                 "--series and plot that elsewhere\n",
            getenv("RECSTREAM_GNUPLOT") && *getenv("RECSTREAM_GNUPLOT")
                ? " at $RECSTREAM_GNUPLOT"
                : " in PATH");
    eval_free(&e);
    return EXIT_FAIL;
  }
  if ((rc = load_model_config(&e, err, sizeof err))) {
    fprintf(stderr, PROG ": %s\n", err[0] ? err : rs_strerror(rc));
    eval_free(&e);
    return rc == RS_ENOMEM ? EXIT_FAIL : EXIT_USAGE;
  }
  rs_eval_read_opts_t ro = {.format = e.format,
                            .time_unit_ms = e.time_unit_ms,
                            .strict = e.strict,
                            .errors = stderr,
                            .max_reported = 20};
  rc = rs_eval_read(e.input, &ro, &e.log, err, sizeof err);
  if (!rc && !e.order_file)
    rc = rs_eval_sort(&e.log);
  if (!rc && e.log.bad > ro.max_reported)
    fprintf(stderr,
            PROG ": %s: %" PRIu64 " bad lines in all (the first %" PRIu64
                 " are shown)\n",
            e.input, e.log.bad, ro.max_reported);
  if (!rc && e.log.n == 0)
    rc = rs_seterr(err, sizeof err, RS_EDECODE, "%s: no valid events", e.input);
  if (!rc)
    rc = oracle_prepare(&e, err, sizeof err);
  rs_local_opts_t lo = {.on_emit = on_emit, .opaque = &e};
  if (!rc)
    rc = rs_local_new(&rs_op_mf_update, e.opcfg->name, e.cfg, e.opcfg->node,
                      &lo, &e.local, err, sizeof err);
  if (!rc) {
    e.mf = rs_local_ctx(e.local);
    rs__mf_view(e.mf, &e.view);
    /* The decayed-popularity baseline uses the operator's half-life. */
    e.inv_tau = log(2.0) / (double)e.view.popularity_half_life_ms;
  }
  if (!rc && e.json_out && strcmp(e.json_out, "-"))
    rc = check_writable("--json", e.json_out, err, sizeof err);
  if (!rc && (e.series_out || e.plot_out)) {
    if (e.series_out) {
      e.series = fopen(e.series_out, "w");
      if (!e.series)
        rc = rs_seterr(err, sizeof err, RS_EIO, "--series: cannot write %s: %s",
                       e.series_out, strerror(errno));
    } else {
      const char *tmp = getenv("TMPDIR");
      snprintf(e.series_tmp, sizeof e.series_tmp, "%s/recstream_eval_XXXXXX",
               tmp && *tmp ? tmp : "/tmp");
      int fd = mkstemp(e.series_tmp);
      e.series = fd >= 0 ? fdopen(fd, "w") : NULL;
      if (!e.series)
        rc = rs_seterr(err, sizeof err, RS_EIO,
                       "--plot: cannot create a temporary file: %s",
                       strerror(errno));
    }
  }
  if (!rc)
    rc = replay(&e, err, sizeof err);
  if (e.series && fclose(e.series) && !rc)
    rc = rs_seterr(err, sizeof err, RS_EIO, "--series: write failed: %s",
                   strerror(errno));
  e.series = NULL;
  if (!rc)
    print_summary(&e);
  if (!rc && e.json_out)
    rc = write_json(&e, err, sizeof err);
  if (!rc && e.plot_out) {
    rc = plot(&e, gnuplot, e.series_out ? e.series_out : e.series_tmp, err,
              sizeof err);
    if (!rc)
      printf("plot written to %s\n", e.plot_out);
  }
  if (e.series_tmp[0])
    unlink(e.series_tmp);
  if (rc)
    fprintf(stderr, PROG ": %s\n", err[0] ? err : rs_strerror(rc));
  eval_free(&e);
  return rc ? EXIT_FAIL : EXIT_OK;
}
