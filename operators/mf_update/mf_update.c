/* The built-in `mf_update` operator: incremental matrix factorisation, one
 * SGD step per interaction, in the stream (DESIGN.md section 1).
 *
 * Objectives (option `objective`): `isgd`, positive-only incremental SGD
 * towards 1 for the observed pair (Vinagre, Jorge & Gama, UMAP 2014);
 * `bpr`, online pairwise ranking (Rendle et al. 2009) against `negatives`
 * items drawn from popularity^negative_exponent; `explicit`, biased MF on
 * ratings (running global mean + user bias + item bias + dot product). The
 * numerics are in mf_kernel.c; this file owns state, sampling, weights,
 * cold start, the NaN/Inf guard and the output record.
 *
 * Determinism. Randomness comes only from host->random: initial vectors
 * from (seed, user or item id), negatives from (seed, user, input offset).
 * User state is scoped by partition. The item model is shared by all
 * partitions (RS_PARTITION_SHARED) and so also depends on how partitions
 * interleave, which `processing.order: deterministic` fixes.
 *
 * Item model in memory. Every item's row (vector, bias, AdaGrad
 * accumulators, count, decayed popularity) is also held in the context in
 * dense aligned arrays, loaded from state in init() and written through to
 * state on every change: the state store stays the durable copy
 * (checkpointed with the offsets), the arrays are what negative sampling,
 * cold start and full-catalogue scoring (`recstream eval`, later topn_emit)
 * read without a state lookup per item. This operator is the only writer
 * of its column family, so the two never differ. Memory: about
 * 4 * (k + 8) + 40 bytes per item, bounded by max_items.
 *
 * Time-decayed popularity is kept as pop_log = log(sum over the item's
 * events of exp(t / tau)), tau = popularity_half_life / ln 2, t the event
 * time in ms. The decayed count at time T is exp(pop_log - T / tau), so
 * items compare by pop_log at any T, and an event updates it with one
 * log-add-exp: no per-item timestamps and no overflow.
 *
 * Negative sampling (bpr): a Fenwick tree over integer weights
 * round(1024 * count^negative_exponent), so sampling and updates are
 * O(log items) and a tree rebuilt from state after a restart is bit for
 * bit the one the uninterrupted run had.
 *
 * State, all integers little-endian, floats IEEE-754 binary32 LE:
 *
 *  user (partition-local), key "u" + user id, 32 + 4k bytes:
 *     0  1 version (1)           1  1 objective (0 isgd, 1 bpr, 2 explicit)
 *     2  2 reserved (0)          4  4 k
 *     8  8 events (int64)
 *    16  4 bias                 20  4 AdaGrad accumulator of the vector
 *    24  4 AdaGrad accumulator of the bias       28  4 reserved (0)
 *    32 4k vector
 *  item dictionary (shared): key "d" + item id -> 4-byte internal id;
 *     reverse, key "r" + 4-byte big-endian id -> item id
 *  item (shared), key "i" + 4-byte big-endian id, 40 + 4k bytes:
 *     0  1 version (1)  1 1 reserved  2 2 reserved  4 4 k
 *     8  8 count (int64)            16  8 pop_log (binary64)
 *    24  4 bias  28 4 vector accumulator  32 4 bias accumulator
 *    36  4 reserved (0)             40 4k vector
 *  clicks (partition-local, weight_unclicked), key "k" + user: u8 n
 *     (<= 128), then n entries oldest first: u64 FNV-1a hash of the
 *     impression id, u32 internal item id (the user's last clicks naming
 *     an impression; unclicked slots of that impression rank below them)
 *  model (shared), key "m", 40 bytes:
 *     0  1 version (1)  1 1 objective  2 2 min_user_events (uint16,
 *     saturated; for readers such as topn_emit; 0 in older states)  4 4 k
 *     8  8 model version (updates applied)   16 4 items
 *    20  4 score_log_count (binary32: bpr's negative_exponent, else 0;
 *          read by topn_emit to score like this operator; older states
 *          hold 0 here)
 *    24  8 sum of ratings (binary64)         32 8 ratings (int64)
 * State written with another layout version, objective or k stops the
 * engine with a message: the model cannot be reinterpreted; replay it
 * (`recstream run --reset-state`).
 *
 * Output, port `out` (unless emit: none): one RS_KIND_MF_UPDATE record per
 * accepted interaction (record.h: rs_mf_update_t), key = the input key.
 * Records that are not interactions, or interactions with no user or item,
 * an unknown event type or a non-finite value, are dead-lettered.
 *
 * Scores. isgd: <p, q>. explicit: global mean + user bias + item bias +
 * <p, q>, clipped to the rating range. bpr: <p, q> + item bias +
 * negative_exponent * ln(count): pairs against negatives drawn from
 * count^negative_exponent learn a score relative to that distribution, so
 * its log is added back (the "logQ correction" of sampled softmax); without
 * it the model would rank against popularity. Measured: on `recstream
 * generate` data recall@10 rose from 0.17 to 0.26 at 100k events.
 *
 * NaN/Inf guard: an update whose result is not finite, or that leaves a
 * vector component beyond +-ABS_MAX (a weight out of all proportion, a
 * diverging learning rate), is discarded before it reaches state and
 * counted (`nonfinite_updates`); the error term is also clipped to
 * +-error_clip and a step's weight to W_MAX. Stored rows that are not
 * finite (corrupt state) are re-initialised, logged and counted
 * (`nonfinite_state`).
 *
 * Ratings. explicit: a RATING whose value is outside [rating_min,
 * rating_max] is dead-lettered (it would move the global mean and the
 * biases without bound); the running mean counts only ratings whose step
 * was committed. isgd and bpr (rating_weight: value): a RATING's weight is
 * its value capped at rating_max.
 */
#include "mf_update.h"

#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "mf_kernel.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "mf_update stores float32 vectors in memory order: little-endian only"
#endif

#define MF_LAYOUT 1
#define USER_HDR 32
#define ITEM_HDR 40
#define META_LEN 40
#define NO_ITEM UINT32_MAX
#define NEG_MAX 64
#define FW_SCALE 1024.0
/* Bounds of one step (the NaN/Inf guard, in the file comment): no step is
 * weighted more than W_MAX (the largest event weight that can be set), and
 * a step that leaves a vector component of the user or of an item it moved
 * beyond +-ABS_MAX is discarded, so one record cannot move the model
 * without bound. Learned components stay far below it (|x| of a few
 * units); it catches what is finite but runaway. */
#define W_MAX 1000.0
#define ABS_MAX 1e4f

enum { EMIT_UPDATES = 0, EMIT_NONE = 1 };
enum { ADAPT_NONE = 0, ADAPT_ADAGRAD = 1 };
enum { RW_VALUE = 0, RW_ONE = 1 };

/* host->random streams */
#define STREAM_USER_INIT UINT64_C(0x5553455249)
#define STREAM_ITEM_INIT UINT64_C(0x4954454d49)
#define STREAM_NEG UINT64_C(0x4e4547)

#define CLICKED_MAX 128 /* clicks remembered per user (state "k") */
#define CLICKED_ENT 12

typedef struct mf_ctx {
  /* Options. */
  int objective;
  int64_t k;
  double lr, lr_bias, reg, reg_bias, init_scale;
  int adaptive;
  int64_t negatives;
  double neg_exponent;
  double w_type[RS_EVENT__COUNT - 1]; /* VIEW, CLICK, ADD_TO_CART, PURCHASE */
  int rating_weight;
  double feedback_weight;
  double w_unclicked;
  unsigned char clicked[1 + CLICKED_MAX * CLICKED_ENT];
  int64_t dwell_ref_ms;
  double dwell_cap;
  int64_t half_life_ms;
  int64_t min_user_events;
  int64_t seed;
  double rating_min, rating_max;
  double error_clip;
  int64_t max_items;
  int emit;

  rs_op_t *op;
  const rs_host_api_t *host;
  uint32_t kp;
  double inv_tau; /* ln 2 / half-life, per ms */
  uint64_t seed_mix;

  /* Item model (see the file comment). */
  void *items_mem;
  float *items; /* cap rows of kp floats */
  float *item_bias, *item_acc, *item_acc_bias;
  int64_t *item_count;
  double *item_pop;
  uint64_t *fw; /* Fenwick tree, 1-based, cap + 1 */
  uint64_t *fw_w;
  uint64_t fw_total;
  uint32_t n_items, cap;

  /* Model record. */
  uint64_t version;
  double rating_sum;
  int64_t rating_n;
  int meta_dirty;

  /* Scratch: the user record (header + vector, aligned so the vector is),
   * backups and copies of item rows, the item record, keys. */
  void *scratch_mem;
  unsigned char *ubuf;
  float *pbak; /* user vector before the step */
  float *qrow; /* positive item row being updated */
  float *qneg; /* NEG_MAX negative rows */
  unsigned char *ibuf;
  char *key;
  size_t key_cap;

  rs_counter_t *c_learned, *c_skipped, *c_guard, *c_bad_state, *c_users,
      *c_items, *c_refused;
  char reason[256];
  uint64_t instance; /* rs_mf_view_t */
} mf_ctx_t;

static atomic_uint_fast64_t mf_instances;

static const rs_option_def_t mf_options[] = {
    {RS_OPT_ENUM, "objective", "bpr", offsetof(mf_ctx_t, objective), 0, -1,
     "isgd|bpr|explicit",
     "What one step learns: `isgd`, implicit positive-only SGD towards 1 for "
     "the observed (user, item) (Vinagre et al. 2014); `bpr`, pairwise "
     "ranking of the observed item above `negatives` sampled items (Rendle "
     "et al. 2009); `explicit`, biased MF on RATING values (global mean + "
     "user bias + item bias + dot product); other event types then pass "
     "through unlearned."},
    {RS_OPT_INT, "k", "64", offsetof(mf_ctx_t, k), 1, 1024, NULL,
     "Number of latent factors per user and item."},
    {RS_OPT_DOUBLE, "learning_rate", "0.1", offsetof(mf_ctx_t, lr), 1e-9, 10,
     NULL,
     "SGD step size of the factor vectors (with adaptive: adagrad, the base "
     "rate divided by the root of the accumulated squared gradient)."},
    {RS_OPT_DOUBLE, "bias_learning_rate", "0.05", offsetof(mf_ctx_t, lr_bias),
     0, 10, NULL, "SGD step size of the user and item biases (bpr, explicit)."},
    {RS_OPT_DOUBLE, "regularization", "0.01", offsetof(mf_ctx_t, reg), 0, 10,
     NULL, "L2 weight on the factor vectors."},
    {RS_OPT_DOUBLE, "bias_regularization", "0.01", offsetof(mf_ctx_t, reg_bias),
     0, 10, NULL, "L2 weight on the biases."},
    {RS_OPT_DOUBLE, "init_scale", "0.1", offsetof(mf_ctx_t, init_scale), 0, 10,
     NULL,
     "Standard deviation of the initial vector components (uniform, "
     "deterministic per id and seed)."},
    {RS_OPT_ENUM, "adaptive", "adagrad", offsetof(mf_ctx_t, adaptive), 0, -1,
     "none|adagrad",
     "Per-parameter adaptive step: `adagrad` keeps one accumulator of "
     "squared gradients per vector and per bias (row-wise AdaGrad) and "
     "divides the rates by its square root; `none` is plain SGD."},
    {RS_OPT_INT, "negatives", "4", offsetof(mf_ctx_t, negatives), 0, NEG_MAX,
     NULL,
     "bpr: negative items sampled per event, from item popularity raised to "
     "negative_exponent (the observed item is never its own negative)."},
    {RS_OPT_DOUBLE, "negative_exponent", "0.75",
     offsetof(mf_ctx_t, neg_exponent), 0, 2, NULL,
     "bpr: negatives are drawn with probability proportional to "
     "count^negative_exponent: 0 is uniform over known items, 1 is "
     "proportional to popularity."},
    {RS_OPT_DOUBLE, "weight_view", "1", offsetof(mf_ctx_t, w_type[0]), 0, 1000,
     NULL, "Weight of a VIEW in the implicit objectives (0: not learned)."},
    {RS_OPT_DOUBLE, "weight_click", "2", offsetof(mf_ctx_t, w_type[1]), 0, 1000,
     NULL, "Weight of a CLICK."},
    {RS_OPT_DOUBLE, "weight_add_to_cart", "3", offsetof(mf_ctx_t, w_type[2]), 0,
     1000, NULL, "Weight of an ADD_TO_CART."},
    {RS_OPT_DOUBLE, "weight_purchase", "5", offsetof(mf_ctx_t, w_type[3]), 0,
     1000, NULL, "Weight of a PURCHASE."},
    {RS_OPT_ENUM, "rating_weight", "value", offsetof(mf_ctx_t, rating_weight),
     0, -1, "value|one",
     "Weight of a RATING in the implicit objectives: its value, capped at "
     "rating_max (a rating above the scale counts as rating_max), or 1. (The "
     "explicit objective learns every rating with weight 1.)"},
    {RS_OPT_DURATION, "dwell_reference", "0", offsetof(mf_ctx_t, dwell_ref_ms),
     0, 86400000, NULL,
     "Dwell-time weighting of implicit events that carry a value (dwell "
     "seconds): the weight is multiplied by dwell / dwell_reference, capped "
     "at dwell_cap. 0 turns it off."},
    {RS_OPT_DOUBLE, "dwell_cap", "3", offsetof(mf_ctx_t, dwell_cap), 0, 1000,
     NULL, "Largest dwell-time factor."},
    {RS_OPT_DURATION, "popularity_half_life", "1d",
     offsetof(mf_ctx_t, half_life_ms), 1000, 315360000000.0, NULL,
     "Half-life of the time-decayed item popularity that serves cold-start "
     "users (event time)."},
    {RS_OPT_INT, "min_user_events", "3", offsetof(mf_ctx_t, min_user_events), 0,
     1000000, NULL,
     "A user with fewer events than this is cold: flagged RS_MF_F_COLD in "
     "the output and served by time-decayed popularity. Their events are "
     "learned all the same."},
    {RS_OPT_INT, "seed", "0", offsetof(mf_ctx_t, seed), 0, 9.2e18, NULL,
     "Seed of initial vectors and negative sampling (with the user or item "
     "id and the input offset)."},
    {RS_OPT_DOUBLE, "rating_min", "1", offsetof(mf_ctx_t, rating_min), -1e9,
     1e9, NULL,
     "explicit: smallest rating; predictions are clipped to it, and a RATING "
     "below it is dead-lettered."},
    {RS_OPT_DOUBLE, "rating_max", "5", offsetof(mf_ctx_t, rating_max), -1e9,
     1e9, NULL,
     "explicit: largest rating; predictions are clipped to it, and a RATING "
     "above it is dead-lettered. isgd and bpr with rating_weight: value: the "
     "largest weight of a RATING."},
    {RS_OPT_DOUBLE, "error_clip", "10", offsetof(mf_ctx_t, error_clip), 1e-6,
     1e9, NULL,
     "isgd and explicit: the error term of a step is clipped to "
     "+-error_clip (part of the NaN/Inf guard)."},
    {RS_OPT_INT, "max_items", "1000000", offsetof(mf_ctx_t, max_items), 1,
     100000000, NULL,
     "Most items the model holds (memory: about 4 * (k + 8) + 40 bytes "
     "each). Events of further new items pass through unlearned, counted as "
     "items_refused."},
    {RS_OPT_ENUM, "emit", "updates", offsetof(mf_ctx_t, emit), 0, -1,
     "updates|none",
     "`updates`: one RS_KIND_MF_UPDATE record per accepted interaction (the "
     "event, the user's vector after it, flags, model version); `none`: only "
     "learn."},
    {RS_OPT_DOUBLE, "feedback_weight", "1", offsetof(mf_ctx_t, feedback_weight),
     0, 1000, NULL,
     "Weight per unit of value of feedback records (RS_KIND_FEEDBACK, e.g. a "
     "second input from `parse` with `record: feedback`) and of "
     "bandit_reward's reward records: each with an item and a value > 0 is "
     "learned as a positive interaction with weight feedback_weight * value "
     "(not for the explicit objective; DISMISS and default rewards teach "
     "nothing). Feedback updates the model and popularity but emits no "
     "record. 0 ignores feedback."},
    {RS_OPT_DOUBLE, "weight_unclicked", "0", offsetof(mf_ctx_t, w_unclicked), 0,
     1000, NULL,
     "bpr: weight of an unclicked slot, learned as a negative against the "
     "items clicked in the same impression: one BPR step per (clicked, "
     "unclicked) pair, the clicked item ranked above. Unclicked slots are "
     "DISMISS feedback records naming an impression and an item (what "
     "bandit_reward emits on port `unclicked` when an impression closes); "
     "the clicks are feedback or reward records with a value > 0 naming an "
     "impression, on any input, remembered per user (the last 128, state "
     "\"k\" + user) whatever feedback_weight is. A slot of an impression "
     "without a click teaches nothing. These steps change no count, "
     "popularity or event count and emit nothing. 0 (the default): DISMISS "
     "teaches nothing."},
};

/* ------------------------------------------------------------ helpers */

static void put_u32(unsigned char *p, uint32_t v) {
  memcpy(p, &v, 4);
}
static uint32_t get_u32(const unsigned char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static void put_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

/* Aligned allocation through the host; *base is what to free. */
static void *alloc_aligned(mf_ctx_t *c, size_t size, void **base) {
  unsigned char *p = c->host->calloc(1, size + RS_MF_ALIGN);
  *base = p;
  if (!p)
    return NULL;
  uintptr_t a =
      ((uintptr_t)p + RS_MF_ALIGN - 1) & ~(uintptr_t)(RS_MF_ALIGN - 1);
  return (void *)a;
}

/* A key of prefix + bytes in c->key. */
static int make_key(mf_ctx_t *c, char prefix, const void *s, size_t n) {
  if (n + 1 > c->key_cap) {
    size_t cap = (n + 1) * 2;
    char *k = c->host->realloc(c->key, cap);
    if (!k)
      return RS_ENOMEM;
    c->key = k;
    c->key_cap = cap;
  }
  c->key[0] = prefix;
  memcpy(c->key + 1, s, n);
  return 0;
}

static inline uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* Deterministic initial vector: uniform with standard deviation
 * init_scale, from (operator seed, id, stream). */
static void init_vector(mf_ctx_t *c, const void *id, size_t n, uint64_t stream,
                        float *v) {
  uint64_t s = c->host->random(c->op, id, n, 0, stream ^ c->seed_mix);
  float a = (float)(c->init_scale * 1.7320508075688772); /* sqrt(3) */
  for (uint32_t i = 0; i < c->kp; i++) {
    if (i < (uint32_t)c->k) {
      double u = (double)(splitmix(&s) >> 11) * 0x1.0p-53; /* [0, 1) */
      v[i] = a * (float)(2.0 * u - 1.0);
    } else {
      v[i] = 0.0f;
    }
  }
}

static double logaddexp(double a, double b) {
  if (a == -INFINITY)
    return b;
  double m = a > b ? a : b;
  return m + log1p(exp(-fabs(a - b)));
}

/* ------------------------------------------------- Fenwick sampler */

static uint64_t fw_weight(const mf_ctx_t *c, int64_t count) {
  if (count <= 0)
    return 0;
  double x = (double)(count > (INT64_C(1) << 40) ? (INT64_C(1) << 40) : count);
  double w = pow(x, c->neg_exponent) * FW_SCALE;
  return w < 1 ? 1 : (uint64_t)llround(w);
}

static void fw_add(mf_ctx_t *c, uint32_t i, uint64_t delta) {
  for (uint32_t j = i + 1; j <= c->cap; j += j & (~j + 1))
    c->fw[j] += delta; /* modular: a decrease is a wrapped add */
}

static void fw_set(mf_ctx_t *c, uint32_t i, uint64_t w) {
  uint64_t d = w - c->fw_w[i];
  c->fw_w[i] = w;
  c->fw_total += d;
  fw_add(c, i, d);
}

static void fw_rebuild(mf_ctx_t *c) {
  memset(c->fw, 0, sizeof(uint64_t) * ((size_t)c->cap + 1));
  for (uint32_t j = 1; j <= c->cap; j++) {
    c->fw[j] += j - 1 < c->n_items ? c->fw_w[j - 1] : 0;
    uint32_t parent = j + (j & (~j + 1));
    if (parent <= c->cap)
      c->fw[parent] += c->fw[j];
  }
}

/* The item whose cumulative weight range holds r (r < fw_total). */
static uint32_t fw_find(const mf_ctx_t *c, uint64_t r) {
  uint32_t pos = 0, step = 1;
  while (step * 2 <= c->cap)
    step *= 2;
  for (; step; step /= 2)
    if (pos + step <= c->cap && c->fw[pos + step] <= r) {
      pos += step;
      r -= c->fw[pos];
    }
  return pos; /* 0-based item index */
}

/* ------------------------------------------------------- item model */

static int grow_items(mf_ctx_t *c, uint32_t need) {
  if (need <= c->cap)
    return 0;
  uint32_t cap = c->cap ? c->cap : 64;
  while (cap < need)
    cap = cap > UINT32_MAX / 2 ? need : cap * 2;
  size_t kp = c->kp;
  void *base;
  float *items = alloc_aligned(c, sizeof(float) * kp * cap, &base);
  float *bias = c->host->calloc(cap, sizeof(float));
  float *acc = c->host->calloc(cap, sizeof(float));
  float *accb = c->host->calloc(cap, sizeof(float));
  int64_t *cnt = c->host->calloc(cap, sizeof(int64_t));
  double *pop = c->host->calloc(cap, sizeof(double));
  uint64_t *fw = c->host->calloc((size_t)cap + 1, sizeof(uint64_t));
  uint64_t *fww = c->host->calloc(cap, sizeof(uint64_t));
  if (!items || !bias || !acc || !accb || !cnt || !pop || !fw || !fww) {
    c->host->free(base);
    c->host->free(bias);
    c->host->free(acc);
    c->host->free(accb);
    c->host->free(cnt);
    c->host->free(pop);
    c->host->free(fw);
    c->host->free(fww);
    return RS_ENOMEM;
  }
  size_t n = c->n_items;
  if (n) {
    memcpy(items, c->items, sizeof(float) * kp * n);
    memcpy(bias, c->item_bias, sizeof(float) * n);
    memcpy(acc, c->item_acc, sizeof(float) * n);
    memcpy(accb, c->item_acc_bias, sizeof(float) * n);
    memcpy(cnt, c->item_count, sizeof(int64_t) * n);
    memcpy(pop, c->item_pop, sizeof(double) * n);
    memcpy(fww, c->fw_w, sizeof(uint64_t) * n);
  }
  c->host->free(c->items_mem);
  c->host->free(c->item_bias);
  c->host->free(c->item_acc);
  c->host->free(c->item_acc_bias);
  c->host->free(c->item_count);
  c->host->free(c->item_pop);
  c->host->free(c->fw);
  c->host->free(c->fw_w);
  c->items_mem = base;
  c->items = items;
  c->item_bias = bias;
  c->item_acc = acc;
  c->item_acc_bias = accb;
  c->item_count = cnt;
  c->item_pop = pop;
  c->fw = fw;
  c->fw_w = fww;
  c->cap = cap;
  fw_rebuild(c);
  return 0;
}

static float *item_row(const mf_ctx_t *c, uint32_t i) {
  return c->items + (size_t)i * c->kp;
}

static int put_item(mf_ctx_t *c, uint32_t i) {
  unsigned char *b = c->ibuf;
  memset(b, 0, ITEM_HDR);
  b[0] = MF_LAYOUT;
  put_u32(b + 4, (uint32_t)c->k);
  memcpy(b + 8, &c->item_count[i], 8);
  memcpy(b + 16, &c->item_pop[i], 8);
  memcpy(b + 24, &c->item_bias[i], 4);
  memcpy(b + 28, &c->item_acc[i], 4);
  memcpy(b + 32, &c->item_acc_bias[i], 4);
  memcpy(b + ITEM_HDR, item_row(c, i), sizeof(float) * (size_t)c->k);
  unsigned char key[5] = {'i'};
  put_be32(key + 1, i);
  return c->host->state_put(c->op, RS_PARTITION_SHARED, key, 5, b,
                            ITEM_HDR + sizeof(float) * (size_t)c->k);
}

static int bad_state(mf_ctx_t *c, const char *what, const char *why) {
  c->host->log(c->op, RS_LOG_ERROR,
               "%s: %s; the state was written by another version or "
               "configuration of mf_update (objective and k cannot change "
               "under a stored model) or is corrupt: rebuild it by replay "
               "(recstream run --reset-state)",
               what, why);
  return RS_ESTATE;
}

static int check_hdr(mf_ctx_t *c, const unsigned char *v, int check_obj,
                     char *why, size_t why_size) {
  if (v[0] != MF_LAYOUT) {
    snprintf(why, why_size, "layout version %u (this build reads %d)",
             (unsigned)v[0], MF_LAYOUT);
    return -1;
  }
  if (check_obj && v[1] != (unsigned char)c->objective) {
    snprintf(why, why_size, "objective %u, configured %d", (unsigned)v[1],
             c->objective);
    return -1;
  }
  if (get_u32(v + 4) != (uint32_t)c->k) {
    snprintf(why, why_size, "k = %" PRIu32 ", configured %" PRId64,
             get_u32(v + 4), c->k);
    return -1;
  }
  return 0;
}

/* Loads item i from state into the arrays (init). */
static int load_item(mf_ctx_t *c, uint32_t i) {
  unsigned char key[5] = {'i'};
  put_be32(key + 1, i);
  void *v;
  size_t n;
  int rc = c->host->state_get(c->op, RS_PARTITION_SHARED, key, 5, &v, &n);
  char what[64];
  snprintf(what, sizeof what, "item %" PRIu32 " of the model", i);
  if (rc == RS_ENOENT)
    return bad_state(c, what, "missing although the model counts it");
  if (rc)
    return rc;
  const unsigned char *b = v;
  if (n != ITEM_HDR + sizeof(float) * (size_t)c->k)
    return bad_state(c, what, "wrong size");
  if (check_hdr(c, b, 0, c->reason, sizeof c->reason))
    return bad_state(c, what, c->reason);
  float *row = item_row(c, i);
  memset(row, 0, sizeof(float) * c->kp);
  memcpy(row, b + ITEM_HDR, sizeof(float) * (size_t)c->k);
  memcpy(&c->item_count[i], b + 8, 8);
  memcpy(&c->item_pop[i], b + 16, 8);
  memcpy(&c->item_bias[i], b + 24, 4);
  memcpy(&c->item_acc[i], b + 28, 4);
  memcpy(&c->item_acc_bias[i], b + 32, 4);
  if (!rs_mf_all_finite(row, c->kp) || !isfinite(c->item_bias[i])) {
    /* Re-initialised from the item id in the reverse dictionary. */
    unsigned char rk[5] = {'r'};
    put_be32(rk + 1, i);
    if ((rc = c->host->state_get(c->op, RS_PARTITION_SHARED, rk, 5, &v, &n)))
      return rc == RS_ENOENT ? bad_state(c, what, "no reverse dictionary entry")
                             : rc;
    init_vector(c, v, n, STREAM_ITEM_INIT, row);
    c->item_bias[i] = 0;
    c->host->counter_add(c->c_bad_state, 1);
    c->host->log(c->op, RS_LOG_WARN,
                 "item %" PRIu32 ": stored vector not finite; re-initialised",
                 i);
    if ((rc = put_item(c, i)))
      return rc;
  }
  c->fw_w[i] = fw_weight(c, c->item_count[i]);
  c->fw_total += c->fw_w[i];
  return 0;
}

static int put_meta(mf_ctx_t *c) {
  unsigned char b[META_LEN] = {MF_LAYOUT, (unsigned char)c->objective};
  uint16_t mue = c->min_user_events > UINT16_MAX ? UINT16_MAX
                                                 : (uint16_t)c->min_user_events;
  b[2] = (unsigned char)mue;
  b[3] = (unsigned char)(mue >> 8);
  put_u32(b + 4, (uint32_t)c->k);
  memcpy(b + 8, &c->version, 8);
  put_u32(b + 16, c->n_items);
  float slc = c->objective == RS_MF_OBJ_BPR ? (float)c->neg_exponent : 0.0f;
  memcpy(b + 20, &slc, 4);
  memcpy(b + 24, &c->rating_sum, 8);
  memcpy(b + 32, &c->rating_n, 8);
  c->meta_dirty = 0;
  return c->host->state_put(c->op, RS_PARTITION_SHARED, "m", 1, b, META_LEN);
}

static int load_model(mf_ctx_t *c) {
  void *v;
  size_t n;
  int rc = c->host->state_get(c->op, RS_PARTITION_SHARED, "m", 1, &v, &n);
  if (rc == RS_ENOENT)
    return 0;
  if (rc)
    return rc;
  unsigned char b[META_LEN];
  if (n != META_LEN)
    return bad_state(c, "model record", "wrong size");
  memcpy(b, v, META_LEN);
  if (check_hdr(c, b, 1, c->reason, sizeof c->reason))
    return bad_state(c, "model record", c->reason);
  memcpy(&c->version, b + 8, 8);
  uint32_t items = get_u32(b + 16);
  memcpy(&c->rating_sum, b + 24, 8);
  memcpy(&c->rating_n, b + 32, 8);
  if ((rc = grow_items(c, items)))
    return rc;
  c->fw_total = 0;
  for (uint32_t i = 0; i < items; i++) {
    c->n_items = i + 1;
    if ((rc = load_item(c, i)))
      return rc;
  }
  fw_rebuild(c);
  return 0;
}

/* -------------------------------------------------------------- init */

static void mf_destroy(rs_op_t *op, void *vctx);

static int mf_init(rs_op_t *op, void *vctx, const rs_host_api_t *host,
                   char *errstr, size_t errstr_size) {
  mf_ctx_t *c = vctx;
  c->op = op;
  c->host = host;
  if (!RS_HOST_HAS(host, state_get) || !RS_HOST_HAS(host, state_put) ||
      !RS_HOST_HAS(host, random)) {
    snprintf(errstr, errstr_size,
             "the host provides no keyed state or randomness");
    return RS_ENOTSUP;
  }
  if (!(c->rating_min < c->rating_max)) {
    snprintf(errstr, errstr_size,
             "rating_min (%g) must be smaller than rating_max (%g)",
             c->rating_min, c->rating_max);
    return RS_ECONFIG;
  }
  if (c->objective < 0 || c->objective > RS_MF_OBJ_EXPLICIT || c->k < 1 ||
      c->k > 1024 || c->negatives < 0 || c->negatives > NEG_MAX) {
    snprintf(errstr, errstr_size, "options out of range");
    return RS_ECONFIG;
  }
  if (c->w_unclicked > 0 && c->objective != RS_MF_OBJ_BPR) {
    snprintf(errstr, errstr_size,
             "weight_unclicked (%g) needs objective bpr: unclicked slots are "
             "learned as bpr negatives",
             c->w_unclicked);
    return RS_ECONFIG;
  }
  c->kp = rs_mf_padded((uint32_t)c->k);
  c->inv_tau = log(2.0) / (double)c->half_life_ms;
  c->seed_mix = (uint64_t)c->seed * UINT64_C(0x9e3779b97f4a7c15);
  size_t vec = sizeof(float) * c->kp;
  size_t ub = USER_HDR + vec;
  c->ubuf = alloc_aligned(c, ub + vec * (3 + NEG_MAX) + ITEM_HDR + vec,
                          &c->scratch_mem);
  if (!c->ubuf) {
    snprintf(errstr, errstr_size, "out of memory");
    return RS_ENOMEM;
  }
  c->pbak = (float *)(c->ubuf + ub);
  c->qrow = c->pbak + c->kp;
  c->qneg = c->qrow + c->kp;
  c->ibuf = (unsigned char *)(c->qneg + (size_t)c->kp * NEG_MAX);
  c->c_learned = host->counter(op, "learned", "events that updated the model");
  c->c_skipped = host->counter(
      op, "not_learned",
      "accepted events that did not update the model (weight 0, explicit "
      "non-ratings, no negative available, refused items)");
  c->c_guard = host->counter(
      op, "nonfinite_updates",
      "updates discarded by the NaN/Inf guard (a result not finite, or a "
      "vector component beyond +-1e4)");
  c->c_bad_state = host->counter(
      op, "nonfinite_state", "stored rows found non-finite and re-initialised");
  c->c_users = host->counter(op, "users_created", "users first seen");
  c->c_items = host->counter(op, "items_created", "items first seen");
  c->c_refused = host->counter(op, "items_refused",
                               "events of new items beyond max_items");
  if (!c->c_learned || !c->c_skipped || !c->c_guard || !c->c_bad_state ||
      !c->c_users || !c->c_items || !c->c_refused) {
    snprintf(errstr, errstr_size, "out of memory creating counters");
    mf_destroy(op, c); /* the host calls destroy() only after init succeeds */
    return RS_ENOMEM;
  }
  c->instance = (uint64_t)atomic_fetch_add(&mf_instances, 1) + 1;
  int rc = load_model(c);
  if (rc) {
    snprintf(errstr, errstr_size, "cannot load the stored model: %s%s",
             rs_strerror(rc), rc == RS_ESTATE ? " (see the log)" : "");
    mf_destroy(op, c);
    return rc;
  }
  return 0;
}

static void mf_destroy(rs_op_t *op, void *vctx) {
  mf_ctx_t *c = vctx;
  if (!c->host)
    return;
  c->host->free(c->items_mem);
  c->host->free(c->item_bias);
  c->host->free(c->item_acc);
  c->host->free(c->item_acc_bias);
  c->host->free(c->item_count);
  c->host->free(c->item_pop);
  c->host->free(c->fw);
  c->host->free(c->fw_w);
  c->host->free(c->scratch_mem);
  c->host->free(c->key);
}

/* ------------------------------------------------------------ events */

/* The interaction a record carries: parse's output, sessionize's enriched
 * events (their interaction), or another mf_update's records (which start
 * with theirs). NULL for other kinds. */
static const rs_interaction_t *interaction_of(const rs_record_t *rec) {
  if (rec->kind == RS_KIND_INTERACTION || rec->kind == RS_KIND_MF_UPDATE)
    return rec->payload;
  if (rec->kind == RS_KIND_SESSION_EVENT && rec->payload)
    return ((const rs_session_event_t *)rec->payload)->interaction;
  return NULL;
}

/* Feedback (RS_KIND_FEEDBACK) and bandit_reward's rewards (RS_KIND_REWARD)
 * as a positive interaction: a CLICK (PURCHASE, ADD_TO_CART for those
 * feedback types) on the item, learned with weight feedback_weight * value
 * (reward). Returns 0 with *w < 0 when there is nothing to learn (no item,
 * value <= 0, DISMISS, a default reward, or the explicit objective). */
/* The user, impression id and item of a feedback or reward record. */
typedef struct fb_ref {
  const char *user, *imp;
  uint32_t user_len, imp_len;
} fb_ref_t;

static int fb_ref(const rs_record_t *rec, fb_ref_t *r) {
  if (rec->kind == RS_KIND_FEEDBACK) {
    const rs_feedback_t *f = rec->payload;
    *r = (fb_ref_t){f->user, f->impression_id, f->user_len,
                    f->impression_id_len};
  } else if (rec->kind == RS_KIND_REWARD) {
    const rs_reward_t *w = rec->payload;
    *r = (fb_ref_t){w->user, w->impression_id, w->user_len,
                    w->impression_id_len};
  } else {
    return 0;
  }
  return r->user && r->user_len && r->imp && r->imp_len;
}

static uint64_t imp_hash(const fb_ref_t *r) {
  uint64_t h = UINT64_C(1469598103934665603); /* FNV-1a */
  for (uint32_t k = 0; k < r->imp_len; k++)
    h = (h ^ (unsigned char)r->imp[k]) * UINT64_C(1099511628211);
  return h;
}

/* The user's remembered clicks (state "k" + user) into c->clicked: u8 n,
 * then n entries of u64 impression hash + u32 item index, oldest first. */
static int clicked_load(mf_ctx_t *c, int32_t partition, const fb_ref_t *r) {
  int rc = make_key(c, 'k', r->user, r->user_len);
  if (rc)
    return rc;
  void *v;
  size_t n;
  c->clicked[0] = 0;
  rc = c->host->state_get(c->op, partition, c->key, 1 + (size_t)r->user_len, &v,
                          &n);
  if (rc == RS_ENOENT)
    return 0;
  if (rc)
    return rc;
  const unsigned char *b = v;
  if (n < 1 || b[0] > CLICKED_MAX || n != 1 + (size_t)b[0] * CLICKED_ENT) {
    char what[160];
    snprintf(what, sizeof what, "partition %" PRId32 " clicks of user '%.*s'",
             partition, (int)(r->user_len > 64 ? 64 : r->user_len), r->user);
    return bad_state(c, what, "wrong size");
  }
  memcpy(c->clicked, b, n);
  return 0;
}

/* A positive reward: remembers (impression, item) for the impression's
 * unclicked slots, which close later. */
static int clicked_add(mf_ctx_t *c, int32_t partition, const fb_ref_t *r,
                       uint32_t i) {
  int rc = clicked_load(c, partition, r);
  if (rc)
    return rc;
  unsigned n = c->clicked[0];
  uint64_t h = imp_hash(r);
  for (unsigned k = 0; k < n; k++) { /* the same click twice: kept once */
    const unsigned char *e = c->clicked + 1 + (size_t)k * CLICKED_ENT;
    uint64_t eh;
    uint32_t it;
    memcpy(&eh, e, 8);
    memcpy(&it, e + 8, 4);
    if (eh == h && it == i)
      return 0;
  }
  if (n == CLICKED_MAX) { /* drop the oldest */
    memmove(c->clicked + 1, c->clicked + 1 + CLICKED_ENT,
            (CLICKED_MAX - 1) * CLICKED_ENT);
    n--;
  }
  unsigned char *e = c->clicked + 1 + (size_t)n * CLICKED_ENT;
  memcpy(e, &h, 8);
  memcpy(e + 8, &i, 4);
  c->clicked[0] = (unsigned char)(n + 1);
  return c->host->state_put(c->op, partition, c->key, 1 + (size_t)r->user_len,
                            c->clicked, 1 + (size_t)(n + 1) * CLICKED_ENT);
}

/* The items clicked in the impression of unclicked slot r (other than
 * item i), into out[] (at most NEG_MAX). */
static int clicked_in(mf_ctx_t *c, int32_t partition, const fb_ref_t *r,
                      uint32_t i, uint32_t *out, uint32_t *n_out) {
  *n_out = 0;
  int rc = clicked_load(c, partition, r);
  if (rc)
    return rc;
  uint64_t h = imp_hash(r);
  for (unsigned k = 0; k < c->clicked[0] && *n_out < NEG_MAX; k++) {
    const unsigned char *e = c->clicked + 1 + (size_t)k * CLICKED_ENT;
    uint64_t eh;
    uint32_t it;
    memcpy(&eh, e, 8);
    memcpy(&it, e + 8, 4);
    if (eh == h && it != i && it < c->n_items)
      out[(*n_out)++] = it;
  }
  return 0;
}

/* The value a feedback or reward record counts as a click with (> 0), or
 * 0 (DISMISS, default rewards). */
static double clicked_value(const rs_record_t *rec) {
  if (rec->kind == RS_KIND_FEEDBACK) {
    const rs_feedback_t *f = rec->payload;
    return f->type == RS_FEEDBACK_DISMISS || !(f->value > 0) ? 0 : f->value;
  }
  const rs_reward_t *r = rec->payload;
  return (r->flags & RS_REWARD_F_DEFAULT) || !(r->reward > 0) ? 0 : r->reward;
}

static void feedback_interaction(const mf_ctx_t *c, const rs_record_t *rec,
                                 rs_interaction_t *ia, double *w,
                                 int *unclicked) {
  memset(ia, 0, sizeof(*ia));
  *w = -1;
  *unclicked = 0;
  int type;
  double value;
  if (rec->kind == RS_KIND_FEEDBACK) {
    const rs_feedback_t *f = rec->payload;
    ia->user = f->user;
    ia->user_len = f->user_len;
    ia->item = f->item;
    ia->item_len = f->item_len;
    ia->timestamp_ms = f->timestamp_ms;
    type = f->type;
    value = f->value;
    if (type == RS_FEEDBACK_DISMISS && c->w_unclicked > 0 &&
        c->objective == RS_MF_OBJ_BPR && f->impression_id &&
        f->impression_id_len && f->item && f->item_len) {
      *w = c->w_unclicked; /* an unclicked slot (weight_unclicked) */
      *unclicked = 1;
      ia->event_type = RS_EVENT_VIEW;
      return;
    }
  } else {
    const rs_reward_t *r = rec->payload;
    ia->user = r->user;
    ia->user_len = r->user_len;
    ia->item = r->item;
    ia->item_len = r->item_len;
    ia->timestamp_ms = r->timestamp_ms;
    type = r->type;
    value = (r->flags & RS_REWARD_F_DEFAULT) ? 0 : r->reward;
  }
  ia->event_type = type == RS_FEEDBACK_PURCHASE      ? RS_EVENT_PURCHASE
                   : type == RS_FEEDBACK_ADD_TO_CART ? RS_EVENT_ADD_TO_CART
                                                     : RS_EVENT_CLICK;
  if (c->objective == RS_MF_OBJ_EXPLICIT || type == RS_FEEDBACK_DISMISS ||
      !(value > 0) || !ia->item || !ia->item_len)
    return;
  *w = c->feedback_weight * value;
  if (!(*w > 0))
    *w = -1;
}

static const char *check(mf_ctx_t *c, const rs_record_t *rec) {
  if ((rec->kind == RS_KIND_FEEDBACK || rec->kind == RS_KIND_REWARD) &&
      rec->payload)
    return NULL;
  if (rec->kind != RS_KIND_INTERACTION && rec->kind != RS_KIND_MF_UPDATE &&
      rec->kind != RS_KIND_SESSION_EVENT) {
    snprintf(c->reason, sizeof c->reason,
             "mf_update expects interaction records (kind %d) or session "
             "events (kind %d), got kind %" PRIu32
             "; put it after parse or sessionize",
             RS_KIND_INTERACTION, RS_KIND_SESSION_EVENT, rec->kind);
    return c->reason;
  }
  const rs_interaction_t *ia = interaction_of(rec);
  const char *why = rs_interaction_problem(ia, c->reason, sizeof c->reason);
  if (why)
    return why;
  if (c->objective == RS_MF_OBJ_EXPLICIT && ia->event_type == RS_EVENT_RATING &&
      ia->has_value &&
      !(ia->value >= c->rating_min && ia->value <= c->rating_max)) {
    snprintf(c->reason, sizeof c->reason,
             "RATING value %.10g is outside [rating_min, rating_max] = "
             "[%.10g, %.10g] of mf_update's explicit objective; fix the "
             "producer's scale or set rating_min/rating_max to it",
             ia->value, c->rating_min, c->rating_max);
    return c->reason;
  }
  return NULL;
}

static double event_weight(const mf_ctx_t *c, const rs_interaction_t *ia) {
  if (c->objective == RS_MF_OBJ_EXPLICIT)
    return ia->event_type == RS_EVENT_RATING && ia->has_value ? 1.0 : 0.0;
  if (ia->event_type == RS_EVENT_RATING) {
    if (c->rating_weight == RW_ONE)
      return 1.0;
    if (!ia->has_value || !(ia->value > 0))
      return 0.0;
    return ia->value < c->rating_max ? ia->value : c->rating_max;
  }
  double w = c->w_type[ia->event_type];
  if (c->dwell_ref_ms > 0 && ia->has_value) {
    double f = ia->value * 1000.0 / (double)c->dwell_ref_ms;
    w *= f < c->dwell_cap ? f : c->dwell_cap;
  }
  return w;
}

/* The item's id, created when new (n_items == max_items: NO_ITEM). */
static int item_index(mf_ctx_t *c, const rs_interaction_t *ia, uint32_t *out,
                      int *created) {
  *created = 0;
  int rc = make_key(c, 'd', ia->item, ia->item_len);
  if (rc)
    return rc;
  void *v;
  size_t n;
  rc = c->host->state_get(c->op, RS_PARTITION_SHARED, c->key,
                          1 + (size_t)ia->item_len, &v, &n);
  if (rc == 0) {
    if (n != 4)
      return bad_state(c, "item dictionary entry", "not 4 bytes");
    uint32_t i = get_u32(v);
    if (i >= c->n_items)
      return bad_state(c, "item dictionary entry", "id past the item count");
    *out = i;
    return 0;
  }
  if (rc != RS_ENOENT)
    return rc;
  if (c->n_items >= (uint64_t)c->max_items) {
    *out = NO_ITEM;
    c->host->counter_add(c->c_refused, 1);
    return 0;
  }
  uint32_t i = c->n_items;
  if ((rc = grow_items(c, i + 1)))
    return rc;
  unsigned char idb[4];
  put_u32(idb, i);
  if ((rc = c->host->state_put(c->op, RS_PARTITION_SHARED, c->key,
                               1 + (size_t)ia->item_len, idb, 4)))
    return rc;
  unsigned char rk[5] = {'r'};
  put_be32(rk + 1, i);
  if ((rc = c->host->state_put(c->op, RS_PARTITION_SHARED, rk, 5, ia->item,
                               ia->item_len)))
    return rc;
  init_vector(c, ia->item, ia->item_len, STREAM_ITEM_INIT, item_row(c, i));
  c->item_bias[i] = c->item_acc[i] = c->item_acc_bias[i] = 0;
  c->item_count[i] = 0;
  c->item_pop[i] = -INFINITY;
  c->fw_w[i] = 0;
  c->n_items = i + 1;
  c->meta_dirty = 1;
  c->host->counter_add(c->c_items, 1);
  *created = 1;
  *out = i;
  return 0;
}

/* Reads the user's record into c->ubuf (or initialises it): 1 when new. */
static int load_user(mf_ctx_t *c, int32_t partition, const char *user,
                     size_t len, int *created) {
  *created = 0;
  int rc = make_key(c, 'u', user, len);
  if (rc)
    return rc;
  void *v;
  size_t n;
  float *p = (float *)(c->ubuf + USER_HDR);
  rc = c->host->state_get(c->op, partition, c->key, len + 1, &v, &n);
  if (rc == RS_ENOENT) {
    memset(c->ubuf, 0, USER_HDR);
    c->ubuf[0] = MF_LAYOUT;
    c->ubuf[1] = (unsigned char)c->objective;
    put_u32(c->ubuf + 4, (uint32_t)c->k);
    init_vector(c, user, len, STREAM_USER_INIT, p);
    *created = 1;
    return 0;
  }
  if (rc)
    return rc;
  int shown = (int)(len > 64 ? 64 : len);
  if (n != USER_HDR + sizeof(float) * (size_t)c->k ||
      check_hdr(c, v, 1, c->reason, sizeof c->reason)) {
    if (n != USER_HDR + sizeof(float) * (size_t)c->k)
      snprintf(c->reason, sizeof c->reason, "%zu bytes, expected %zu", n,
               USER_HDR + sizeof(float) * (size_t)c->k);
    char what[160];
    snprintf(what, sizeof what, "partition %" PRId32 " user '%.*s'", partition,
             shown, user);
    return bad_state(c, what, c->reason);
  }
  memcpy(c->ubuf, v, n);
  memset(p + c->k, 0, sizeof(float) * (c->kp - (size_t)c->k));
  float bias;
  memcpy(&bias, c->ubuf + 16, 4);
  if (!rs_mf_all_finite(p, c->kp) || !isfinite(bias)) {
    init_vector(c, user, len, STREAM_USER_INIT, p);
    memset(c->ubuf + 16, 0, 12);
    c->host->counter_add(c->c_bad_state, 1);
    c->host->log(c->op, RS_LOG_WARN,
                 "partition %" PRId32 " user '%.*s': stored vector not "
                 "finite; re-initialised",
                 partition, shown, user);
  }
  return 0;
}

/* bpr scores add back the log of the negative-sampling distribution (see
 * "Scores" at the top). */
static float log_count_term(const mf_ctx_t *c, uint32_t i) {
  return c->item_count[i] > 0
             ? (float)(c->neg_exponent * log((double)c->item_count[i]))
             : 0.0f;
}

/* The running mean of ratings; the middle of the range before any. */
static double global_mean(const mf_ctx_t *c) {
  return c->rating_n ? c->rating_sum / (double)c->rating_n
                     : (c->rating_min + c->rating_max) / 2;
}

static float clip_rating(const mf_ctx_t *c, float v) {
  return v < c->rating_min   ? (float)c->rating_min
         : v > c->rating_max ? (float)c->rating_max
                             : v;
}

static float rate(const mf_ctx_t *c, double base, float acc) {
  if (c->adaptive != ADAPT_ADAGRAD)
    return (float)base;
  /* The accumulator starts at 0.1 (TensorFlow's initial_accumulator_value):
   * the first steps are about 3x the base rate, not unbounded. */
  return (float)(base / sqrt((double)acc + 0.1));
}

/* Draws up to `want` distinct negatives other than pos into neg[]. */
static uint32_t sample_negatives(mf_ctx_t *c, const rs_record_t *rec,
                                 const rs_interaction_t *ia, uint32_t pos,
                                 uint32_t want, uint32_t *neg) {
  if (c->fw_total == 0 || c->n_items < 2)
    return 0;
  uint64_t s = c->host->random(c->op, ia->user, ia->user_len, rec->src_offset,
                               STREAM_NEG ^ c->seed_mix);
  uint32_t got = 0;
  for (uint32_t tries = 0; got < want && tries < 4 * want; tries++) {
    uint64_t r = splitmix(&s);
    /* 128-bit multiply: an unbiased-enough draw in [0, total). */
    uint64_t t = (uint64_t)(((unsigned __int128)r * c->fw_total) >> 64);
    uint32_t j = fw_find(c, t);
    if (j >= c->n_items || j == pos)
      continue;
    int dup = 0;
    for (uint32_t m = 0; m < got; m++)
      dup |= neg[m] == j;
    if (!dup)
      neg[got++] = j;
  }
  return got;
}

/* One SGD event. *flags gets RS_MF_F_LEARNED or RS_MF_F_GUARDED; *score
 * the prediction before the step. */
static int learn(mf_ctx_t *c, const rs_record_t *rec,
                 const rs_interaction_t *ia, uint32_t i, float w, int unclicked,
                 const uint32_t *refs, uint32_t n_refs, uint32_t *flags,
                 float *score) {
  uint32_t kp = c->kp;
  unsigned char *u = c->ubuf;
  float *p = (float *)(u + USER_HDR);
  float bu, acc_u, acc_bu;
  memcpy(&bu, u + 16, 4);
  memcpy(&acc_u, u + 20, 4);
  memcpy(&acc_bu, u + 24, 4);
  memcpy(c->pbak, p, sizeof(float) * kp);
  memcpy(c->qrow, item_row(c, i), sizeof(float) * kp);
  float bi = c->item_bias[i];
  rs_mf_hyper_t h = {.reg = (float)c->reg,
                     .reg_bias = (float)c->reg_bias,
                     .w = w,
                     .clip = (float)c->error_clip,
                     .want_gsq = c->adaptive == ADAPT_ADAGRAD};
  rs_mf_hyper_rates(&h, (float)c->lr, (float)c->lr_bias);
  h.lr_p = rate(c, c->lr, acc_u);
  h.lr_q = rate(c, c->lr, c->item_acc[i]);
  h.lr_bu = rate(c, c->lr_bias, acc_bu);
  h.lr_bi = rate(c, c->lr_bias, c->item_acc_bias[i]);
  float gq = 0, gp = 0, gbu = 0, gbi = 0;
  uint32_t neg[NEG_MAX], n_neg = 0;
  float bneg[NEG_MAX], gneg[NEG_MAX], gbneg[NEG_MAX];
  int ok = 1;
  if (c->objective == RS_MF_OBJ_ISGD) {
    *score = rs_mf_step_isgd(p, c->qrow, kp, &h);
    gp = h.gsq[0];
    gq = h.gsq[1];
  } else if (c->objective == RS_MF_OBJ_EXPLICIT) {
    /* As River's BiasedMF: predict with the mean so far, then learn with
     * the mean that includes this rating. */
    float pred = (float)global_mean(c) + bu + bi + rs_mf_dot(p, c->qrow, kp);
    *score = clip_rating(c, pred);
    double mu = (c->rating_sum + ia->value) / (double)(c->rating_n + 1);
    rs_mf_step_explicit(p, c->qrow, &bu, &bi, (float)mu, (float)ia->value, kp,
                        &h);
    gp = h.gsq[0];
    gq = h.gsq[1];
    gbu = h.gsq[3];
    gbi = h.gsq[4];
  } else {
    *score = rs_mf_dot(p, c->qrow, kp) + bi + log_count_term(c, i);
    if (unclicked) {
      memcpy(neg, refs, sizeof(uint32_t) * n_refs);
      n_neg = n_refs;
    } else {
      n_neg = sample_negatives(c, rec, ia, i, (uint32_t)c->negatives, neg);
    }
    for (uint32_t m = 0; m < n_neg; m++) {
      float *qj = c->qneg + (size_t)m * kp;
      memcpy(qj, item_row(c, neg[m]), sizeof(float) * kp);
      bneg[m] = c->item_bias[neg[m]];
      if (unclicked) {
        /* An unclicked slot: the sampled item ranks above item i (the
         * roles of bpr's pair swapped: qi is the sampled row). */
        h.lr_q = rate(c, c->lr, c->item_acc[neg[m]]);
        h.lr_bi = rate(c, c->lr_bias, c->item_acc_bias[neg[m]]);
        h.lr_qj = rate(c, c->lr, c->item_acc[i]);
        h.lr_bj = rate(c, c->lr_bias, c->item_acc_bias[i]);
        rs_mf_step_bpr(p, qj, c->qrow, &bneg[m], &bi, kp, &h);
        gneg[m] = h.gsq[1];
        gbneg[m] = h.gsq[4];
        gq += h.gsq[2];
        gbi += h.gsq[5];
      } else {
        h.lr_qj = rate(c, c->lr, c->item_acc[neg[m]]);
        h.lr_bj = rate(c, c->lr_bias, c->item_acc_bias[neg[m]]);
        rs_mf_step_bpr(p, c->qrow, qj, &bi, &bneg[m], kp, &h);
        gq += h.gsq[1];
        gbi += h.gsq[4];
        gneg[m] = h.gsq[2];
        gbneg[m] = h.gsq[5];
      }
      gp += h.gsq[0];
      ok &= rs_mf_all_within(qj, kp, ABS_MAX) && isfinite(bneg[m]);
    }
    if (n_neg == 0) {
      memcpy(p, c->pbak, sizeof(float) * kp);
      return 0; /* nothing to rank against yet */
    }
  }
  ok &= rs_mf_all_within(p, kp, ABS_MAX) &&
        rs_mf_all_within(c->qrow, kp, ABS_MAX) && isfinite(bu) &&
        isfinite(bi) && isfinite(*score);
  if (!ok) {
    memcpy(p, c->pbak, sizeof(float) * kp);
    *flags |= RS_MF_F_GUARDED;
    c->host->counter_add(c->c_guard, 1);
    return 0;
  }
  /* Commit: the item rows to the arrays and state; the user's record is
   * written by the caller from c->ubuf. */
  int rc;
  memcpy(item_row(c, i), c->qrow, sizeof(float) * kp);
  c->item_bias[i] = bi;
  if (h.want_gsq) {
    acc_u += gp / (float)c->k;
    acc_bu += gbu;
    c->item_acc[i] += gq / (float)c->k;
    c->item_acc_bias[i] += gbi;
  }
  for (uint32_t m = 0; m < n_neg; m++) {
    memcpy(item_row(c, neg[m]), c->qneg + (size_t)m * kp, sizeof(float) * kp);
    c->item_bias[neg[m]] = bneg[m];
    if (h.want_gsq) {
      c->item_acc[neg[m]] += gneg[m] / (float)c->k;
      c->item_acc_bias[neg[m]] += gbneg[m];
    }
    if ((rc = put_item(c, neg[m])))
      return rc;
  }
  memcpy(u + 16, &bu, 4);
  memcpy(u + 20, &acc_u, 4);
  memcpy(u + 24, &acc_bu, 4);
  *flags |= RS_MF_F_LEARNED;
  c->version++;
  c->meta_dirty = 1;
  return 0;
}

/* The model's prediction for (user in c->ubuf, item i) without learning. */
static float predict(const mf_ctx_t *c, uint32_t i) {
  const float *p = (const float *)(c->ubuf + USER_HDR);
  float d = rs_mf_dot(p, item_row(c, i), c->kp);
  if (c->objective == RS_MF_OBJ_ISGD)
    return d;
  if (c->objective == RS_MF_OBJ_BPR)
    return d + c->item_bias[i] + log_count_term(c, i);
  float bu;
  memcpy(&bu, c->ubuf + 16, 4);
  return clip_rating(c, (float)global_mean(c) + bu + c->item_bias[i] + d);
}

static int emit_update(mf_ctx_t *c, const rs_record_t *rec,
                       const rs_interaction_t *ia, uint32_t i, uint32_t flags,
                       float score, float w, int64_t events) {
  rs_mf_update_t *m = c->host->batch_alloc(c->op, sizeof(*m));
  float *vec = c->host->batch_alloc(c->op, sizeof(float) * (size_t)c->k);
  if (!m || !vec)
    return RS_ENOMEM;
  memcpy(vec, c->ubuf + USER_HDR, sizeof(float) * (size_t)c->k);
  memset(m, 0, sizeof(*m));
  m->interaction = *ia;
  m->user_vector = vec;
  m->dim = (uint32_t)c->k;
  m->flags = flags;
  m->item_index = i;
  memcpy(&m->user_bias, c->ubuf + 16, 4);
  m->score = score;
  m->weight = w;
  m->user_events = events;
  m->model_version = c->version;
  rs_record_t out = {
      .kind = RS_KIND_MF_UPDATE,
      .key = rec->key ? rec->key : ia->user,
      .key_len = rec->key ? rec->key_len : ia->user_len,
      .value = rec->value,
      .value_len = rec->value_len,
      .payload = m,
      .timestamp_ms = rec->timestamp_ms,
      .src_partition = rec->src_partition,
      .src_ordinal = rec->src_ordinal,
      .src_offset = rec->src_offset,
  };
  return c->host->emit(c->op, 0, &out);
}

static int mf_one(mf_ctx_t *c, int32_t partition, const rs_record_t *rec) {
  const char *why = check(c, rec);
  if (why) {
    int rc = c->host->dead_letter(c->op, rec, why);
    return rc < 0 ? rc : 0;
  }
  rs_interaction_t fia;
  double fw = -2; /* >= 0: feedback's weight; -1: feedback, not learned */
  int unclicked = 0;
  if (rec->kind == RS_KIND_FEEDBACK || rec->kind == RS_KIND_REWARD) {
    feedback_interaction(c, rec, &fia, &fw, &unclicked);
    /* A click naming its impression: remembered for the impression's
     * unclicked slots (weight_unclicked), whatever feedback_weight is. */
    fb_ref_t ref;
    int has_ref = fb_ref(rec, &ref);
    if (has_ref && !unclicked && c->w_unclicked > 0 &&
        c->objective == RS_MF_OBJ_BPR && clicked_value(rec) > 0 && fia.item &&
        fia.item_len) {
      uint32_t ci;
      int cnew, crc = item_index(c, &fia, &ci, &cnew);
      /* A new item is counted by the model record: its entry must exist. */
      if (!crc && ci != NO_ITEM && cnew)
        crc = put_item(c, ci);
      if (!crc && ci != NO_ITEM)
        crc = clicked_add(c, partition, &ref, ci);
      if (crc)
        return crc;
    }
    if (fw < 0) {
      c->host->counter_add(c->c_skipped, 1);
      return 0;
    }
  }
  const rs_interaction_t *ia = fw >= 0 ? &fia : interaction_of(rec);
  uint32_t i;
  int item_new, user_new, rc;
  if ((rc = item_index(c, ia, &i, &item_new)))
    return rc;
  if ((rc = load_user(c, partition, ia->user, ia->user_len, &user_new)))
    return rc;
  int64_t events;
  memcpy(&events, c->ubuf + 8, 8);
  uint32_t flags = item_new ? RS_MF_F_NEW_ITEM : 0;
  double wd = fw >= 0 ? fw : event_weight(c, ia);
  float w = (float)(wd < W_MAX ? wd : W_MAX), score = 0;
  uint32_t refs[NEG_MAX], n_refs = 0;
  fb_ref_t uref;
  if (unclicked && i != NO_ITEM && fb_ref(rec, &uref) &&
      (rc = clicked_in(c, partition, &uref, i, refs, &n_refs)))
    return rc;
  if (i != NO_ITEM && w > 0) {
    if ((rc = learn(c, rec, ia, i, w, unclicked, refs, n_refs, &flags, &score)))
      return rc;
  } else if (i != NO_ITEM) {
    score = predict(c, i);
  }
  if (!(flags & RS_MF_F_LEARNED)) {
    w = 0;
    c->host->counter_add(c->c_skipped, 1);
  } else {
    c->host->counter_add(c->c_learned, 1);
  }
  /* Only a committed step counts in the running mean (learn() stepped with
   * the mean including it); check() refused ratings outside the range. */
  if (c->objective == RS_MF_OBJ_EXPLICIT && (flags & RS_MF_F_LEARNED) &&
      ia->event_type == RS_EVENT_RATING && ia->has_value) {
    c->rating_sum += ia->value;
    c->rating_n++;
    c->meta_dirty = 1;
  }
  if (i != NO_ITEM) {
    if (!unclicked) { /* an unclicked slot is not an event of the item's */
      c->item_count[i]++;
      c->item_pop[i] =
          logaddexp(c->item_pop[i], (double)ia->timestamp_ms * c->inv_tau);
      fw_set(c, i, fw_weight(c, c->item_count[i]));
    }
    /* Also for an unclicked slot: learn() moved its row, or it is new and
     * the model record counts it. */
    if ((rc = put_item(c, i)))
      return rc;
  }
  if (!unclicked) /* a slot not clicked is not an event of the user's */
    events++;
  memcpy(c->ubuf + 8, &events, 8);
  if ((rc = make_key(c, 'u', ia->user, ia->user_len)) ||
      (rc = c->host->state_put(c->op, partition, c->key,
                               1 + (size_t)ia->user_len, c->ubuf,
                               USER_HDR + sizeof(float) * (size_t)c->k)))
    return rc;
  if (user_new)
    c->host->counter_add(c->c_users, 1);
  if (events < c->min_user_events)
    flags |= RS_MF_F_COLD;
  if (c->emit == EMIT_NONE || fw >= 0)
    return 0; /* feedback teaches the model; it triggers no emission */
  return emit_update(c, rec, ia, i, flags, score, w, events);
}

static int mf_process(rs_op_t *op, void *vctx, const rs_batch_t *batch) {
  mf_ctx_t *c = vctx;
  if (batch->partition < 0) {
    c->host->log(op, RS_LOG_ERROR,
                 "batch of partition %" PRId32 ": user state needs a "
                 "partition >= 0",
                 batch->partition);
    return RS_EINVAL;
  }
  int rc = 0;
  for (size_t k = 0; k < batch->count && rc >= 0; k++)
    rc = mf_one(c, batch->partition, &batch->records[k]);
  /* The model record goes with the batch, so a checkpoint (taken between
   * batches) always holds a count that matches the items it holds. */
  if (c->meta_dirty) {
    int mrc = put_meta(c);
    if (rc >= 0)
      rc = mrc;
  }
  if (rc < 0)
    c->host->log(op, RS_LOG_ERROR, "mf_update failed: %s", rs_strerror(rc));
  return rc < 0 ? rc : 0;
}

/* ------------------------------------------------ internal read access */

void rs__mf_view(void *vctx, rs_mf_view_t *out) {
  mf_ctx_t *c = vctx;
  out->objective = c->objective;
  out->k = (uint32_t)c->k;
  out->kp = c->kp;
  out->n_items = c->n_items;
  out->items = c->items;
  out->item_bias = c->item_bias;
  out->item_count = c->item_count;
  out->item_pop_log = c->item_pop;
  out->score_log_count = c->objective == RS_MF_OBJ_BPR ? c->neg_exponent : 0;
  out->min_user_events = c->min_user_events;
  out->popularity_half_life_ms = c->half_life_ms;
  out->global_mean = global_mean(c);
  out->rating_min = c->rating_min;
  out->rating_max = c->rating_max;
  out->version = c->version;
  out->instance = c->instance;
}

int rs__mf_item_index(void *vctx, const char *item, size_t len, uint32_t *idx) {
  mf_ctx_t *c = vctx;
  int rc = make_key(c, 'd', item, len);
  if (rc)
    return rc;
  void *v;
  size_t n;
  rc = c->host->state_get(c->op, RS_PARTITION_SHARED, c->key, len + 1, &v, &n);
  if (rc)
    return rc;
  if (n != 4 || get_u32(v) >= c->n_items)
    return RS_ESTATE;
  *idx = get_u32(v);
  return 0;
}

int rs__mf_user(void *vctx, int32_t partition, const char *user, size_t len,
                float *vec, float *bias, int64_t *events) {
  mf_ctx_t *c = vctx;
  int created;
  int rc = load_user(c, partition, user, len, &created);
  if (rc)
    return rc;
  memcpy(vec, c->ubuf + USER_HDR, sizeof(float) * c->kp);
  memcpy(bias, c->ubuf + 16, 4);
  memcpy(events, c->ubuf + 8, 8);
  return created ? RS_ENOENT : 0;
}

static const char *const mf_ports[] = {"out", NULL};

const rs_operator_def_t rs_op_mf_update = {
    .abi_version = RS_ABI_VERSION,
    .struct_size = sizeof(rs_operator_def_t),
    .name = "mf_update",
    .description =
        "Incremental matrix factorisation: one SGD step per interaction "
        "(isgd, bpr with popularity-sampled negatives, or explicit biased "
        "MF on ratings), user vectors in partition-scoped state, item "
        "vectors, biases, popularity and the item dictionary in state "
        "shared by all partitions. Emits, per interaction, an "
        "RS_KIND_MF_UPDATE record: the event, the user's vector after it, "
        "the pre-update score, a cold-start flag (fewer than "
        "min_user_events events: serve by time-decayed popularity) and the "
        "model version. Deterministic (randomness from seed, id and input "
        "offset); non-finite updates are discarded and counted. Measured "
        "with `recstream eval`; see the notes at the end of this page for "
        "how the defaults were chosen.",
    .ctx_size = sizeof(mf_ctx_t),
    .options = mf_options,
    .n_options = sizeof(mf_options) / sizeof(mf_options[0]),
    .output_ports = mf_ports,
    .min_inputs = 1,
    .max_inputs = 3,
    .init = mf_init,
    .process = mf_process,
    .on_timer = NULL,
    .checkpoint = NULL,
    .destroy = mf_destroy,
};
