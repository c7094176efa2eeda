/* The built-in `bandit_reward` operator: exploration over topn_emit's
 * lists, the join of feedback with the impressions shown, rewards, and
 * off-policy estimates (issue 6; DESIGN.md section 1).
 *
 * Inputs: 0 = topn_emit's recommendations (RS_KIND_RECOMMENDATION, its
 * `n` ranked candidates); 1 = feedback (RS_KIND_FEEDBACK, `parse` with
 * `record: feedback`), co-partitioned by user. Anything else on either
 * input is dead-lettered, and so is feedback past record.h's bounds
 * (|value| > RS_MAX_ABS_VALUE, timestamp after RS_MAX_TIMESTAMP_MS) that
 * did not come through the codec.
 *
 * Where exploration happens (departure from DESIGN.md's picture, which
 * draws bandit_reward before topn_emit): here, after topn_emit. topn_emit
 * ranks `n` candidates greedily; this operator chooses the `slots` items
 * actually shown, slot by slot, with the policy of bandit_policy.h, and
 * emits the final recommendation (same user, impression id, model version
 * and time; items with topn's scores and the policy's true propensities)
 * on port `recommendations`. So the propensities logged are those of the
 * draw that made the list, and the impressions joined are exactly the
 * lists shown; topn_emit stays greedy and needs no change.
 *
 * Rewards. Feedback that names an impression id is joined with that
 * impression's stored list; without an id (null or ""), with the user's
 * latest impression (of the last USER_MAX) that showed the item. A
 * match emits a reward record (RS_KIND_REWARD, schemas/reward.avsc) on port
 * `rewards` (mf_update learns from it as a positive interaction when fed
 * back). Duplicates are per (impression, item): `first` keeps the first,
 * `sum` emits each later one too (flag SUM) and adds it. Feedback later
 * than the impression's time + reward_window, for an impression not (or no
 * longer) in state, or for an item the impression did not show, goes out
 * unchanged on port `unmatched` and is counted.
 *
 * Port `unclicked`: when an impression closes, each slot that got no
 * feedback goes out as a feedback record (RS_KIND_FEEDBACK, type DISMISS,
 * value default_reward, the impression id and the item, time of the
 * close), only when the port is wired: mf_update's weight_unclicked learns
 * them as negatives against the clicks of the same impression.
 *
 * Feedback naming an impression not in state waits for it (the inputs are
 * not ordered with each other) under "f" + impression id until the
 * watermark passes its time + reward_window, then goes out unmatched.
 *
 * Windows close in event time. Each partition's watermark is the largest
 * event time seen on either input minus `max_out_of_orderness`; an
 * impression closes when the watermark passes its time + reward_window:
 * a list with no matched feedback emits one default reward (item null,
 * reward `default_reward`, flag DEFAULT); every slot's item then counts one
 * show and its reward (default_reward for slots without feedback) in the
 * policy's statistics; the IPS sums are updated; the impression leaves
 * state. The host has no event-time timers (RS_ENOTSUP), so, as sessionize
 * does, the operator keeps an in-memory min-heap of (deadline, impression
 * id) per partition, rebuilt from state by one state_scan the first time
 * the partition is seen in this process. Outputs caused by the watermark
 * carry the source position of the record that moved it.
 *
 * Off-policy estimates of the greedy target policy (bandit_policy.h): per
 * closed impression, R = the sum of its slots' rewards and w = 1/P(list)
 * if the list shown equals the greedy list, else 0; IPS = sum(w R) / n,
 * SNIPS = sum(w R) / sum(w). The sums are counters (micro-units: the
 * metrics endpoint exposes them as monotonic counters, the ratio is the
 * estimate; one impression adds at most INT64_MAX) and, in full precision,
 * the shared state entry "e".
 *
 * Randomness: one host->random(impression id, input offset) seeds a
 * splitmix64 stream per emission: deterministic per seed, key, offset.
 *
 * State (integers little-endian):
 *  "m" + impression id (partition): 0 u8 version 2 | 1 u8 flags (1: the
 *     greedy list) | 2 u16 slots | 4 u32 user length | 8 i64 impression
 *     time | 16 f64 list propensity | 24 u32 matched slots | 28 u32 linucb
 *     dim | 32 user | then per slot: u32 item length | u8 rewarded | 3 x 0
 *     | f64 propensity | f64 reward | f64 score | item bytes | dim floats.
 *     Version 1: the same without the score (slot header 24 bytes).
 *  "f" + impression id (partition): feedback waiting for its impression
 *     (layout at keep_early).
 *  "u" + user (partition): u8 count, then newest first: u16 length + id.
 *  "w" (partition): i64 largest event time seen, u64 batches processed
 *     (the agenda is rebuilt when the count is not the one last written).
 *  "a" + item (shared): f64 shows, f64 reward.
 *  "g" + item (shared, thompson_model residual): f64 closed slots, f64 sum
 *     of residuals.
 *  "A" + user (partition, arms user): the user's arms, at most
 *     user_arms_max (layout at uarm_load). Before session 10: "p" / "q" +
 *     u32 user length + user + item, as "a" / "g" per (user, item),
 *     migrated at the partition's agenda rebuild (uarm_migrate).
 *  "c" (shared, residual): the calibration sums (br_calib_t).
 *  "e" (shared): f64 closed impressions, f64 sum w R, f64 sum w.
 *  "t" (shared): int64 impressions emitted (epsilon decay).
 *  "L" (shared, linucb): u32 d, A^-1 and b.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bandit_policy.h"
#include "bandit_reward.h"
#include "recstream/operator.h"
#include "util.h"

#define BR_VERSION 2 /* 1: slots without the score (SLOT_HDR1), still read */
#define IMP_HDR 32
#define SLOT_HDR 32
#define SLOT_HDR1 24
#define PEND_HDR 16
#define PEND_MAX 32 /* early feedback records kept per impression id */
#define USER_MAX 8
#define MAX_SLOTS 1000
#define STREAM_BANDIT UINT64_C(0x42414e44)

enum { UNCLICKED_ALL = 0, UNCLICKED_WITH_FEEDBACK = 1 };
enum { ARMS_ITEM = 0, ARMS_USER = 1 };
enum { ARM_IMPS_ALL = 0, ARM_IMPS_WITH_FEEDBACK = 1 };
enum {
  PORT_RECS = 0,
  PORT_REWARDS = 1,
  PORT_UNMATCHED = 2,
  PORT_UNCLICKED = 3
};
static const char *const br_ports[] = {"recommendations", "rewards",
                                       "unmatched", "unclicked", NULL};

typedef struct br_due {
  int64_t deadline;
  char *id; /* the state key: 'm' + impression id, or 'f' + impression id */
  uint32_t id_len;
} br_due_t;

typedef struct br_part {
  int32_t partition;
  int valid;      /* the agenda matches the state (seq) */
  uint64_t seq;   /* batches this agenda has seen, as stored in "w" */
  int64_t max_ts; /* INT64_MIN: none */
  br_due_t *heap;
  size_t n, cap;
  /* Agenda entries of early feedback ("f" + id) per bucket of the id's
   * hash: every "f" key in the partition's state has its entry in the
   * agenda until the watermark passes it, so a zero count means no
   * feedback waits for an impression with an id of that bucket, and an
   * impression need not look for any (take_early): a state lookup saved
   * per list, mostly of a key that is not there. */
  uint32_t *early;
} br_part_t;

#define EARLY_BUCKETS 4096u

static uint32_t early_bucket(const char *id, uint32_t len) {
  uint32_t h = 2166136261u;
  for (uint32_t i = 0; i < len; i++)
    h = (h ^ (unsigned char)id[i]) * 16777619u;
  return h & (EARLY_BUCKETS - 1);
}

/* One arm of a user's arms record ("A" + user). */
typedef struct br_uarm {
  const char *item;
  uint32_t len;
  int64_t last; /* event time of the newest impression counted in it */
  double shows, reward, res_n, res_sum;
} br_uarm_t;

typedef struct br_ctx {
  /* Options. */
  int policy; /* greedy|epsilon_greedy|thompson */
  int64_t slots;
  double epsilon, decay;
  double score_weight, prior_alpha, prior_beta, floor;
  int64_t samples;
  int64_t window_ms, lateness_ms;
  double default_reward;
  int duplicates;        /* first|sum */
  int unclicked;         /* all|with_feedback: port unclicked */
  int arm_owner;         /* arms: item|user, whose statistics an arm is */
  int arm_imps;          /* arm_impressions: all|with_feedback */
  int64_t user_arms_max; /* arms user: arms kept per user */
  char *model;           /* linucb: the mf_update instance */
  double alpha;          /* linucb */
  int thompson_model;    /* beta|residual */
  double res_sd, res_prior_sd;
  int residual;     /* policy thompson with thompson_model residual */
  br_calib_t calib; /* residual: loaded from "c" per emission and close */

  rs_op_t *op;
  const rs_host_api_t *host;
  br_part_t *parts;
  size_t n_parts;

  /* Scratch. */
  unsigned char *buf, *buf2;
  size_t buf_cap, buf2_cap;
  char *key;
  size_t key_cap;
  br_arm_t *arms;
  /* The user whose arms get_arm reads (arms user: from c->ua; NULL: the
   * item's), set by the emission and the close; the key and partition
   * arm_key built. */
  const char *arm_user;
  int32_t arm_kpart;
  size_t arm_klen;
  /* arms user: the arms record of c->arm_user, decoded (uarm_load) into
   * ua[ua_n], sorted by item bytes; items point into ua_val (the stored
   * value, copied), the impression being closed, or the migration's copy
   * of the old keys. */
  br_uarm_t *ua;
  size_t ua_n, ua_cap;
  unsigned char *ua_val, *ua_out;
  size_t ua_val_cap, ua_out_cap;
  unsigned char *mig;
  size_t mig_n, mig_cap;
  double *work;
  uint32_t *order, *greedy;
  double *prop;
  size_t arms_cap, work_cap;

  /* linucb */
  int peer;
  br_lin_t lin; /* lin.d == 0 until the model's k is known */
  double *lin_mem;
  float *feat; /* features of the current candidates, then pu, q */
  size_t feat_cap;
  double *ucb;
  size_t ucb_cap;

  double est[3]; /* closed impressions, sum w R, sum w */
  rs_counter_t *c_rebuilt, *c_early, *c_imp, *c_rewards, *c_clicks, *c_default,
      *c_unclicked, *c_dup, *c_late, *c_unmatched, *c_explored, *c_ips_n,
      *c_ips_wr, *c_ips_w, *c_ua_evicted, *c_ua_migrated;
} br_ctx_t;

static const rs_option_def_t br_options[] = {
    {RS_OPT_ENUM, "policy", "epsilon_greedy", offsetof(br_ctx_t, policy), 0, -1,
     "greedy|epsilon_greedy|thompson|linucb",
     "Exploration policy choosing the shown slots among topn_emit's "
     "candidates: `greedy` (no exploration, propensity 1), `epsilon_greedy` "
     "(each slot: a uniformly random remaining candidate with probability "
     "epsilon, else the best by score_weight * score + posterior mean "
     "reward), `thompson` (Beta-Bernoulli posterior per item; each slot "
     "draws from the share of `samples` posterior draws in which each "
     "candidate is best, mixed with `floor`), `linucb` (one shared linear "
     "model over features from the user's and the item's factors in "
     "`model`, [1, p_u * q_i]; each slot takes the best remaining "
     "score_weight * score + theta^T x + alpha * width, propensity 1)."},
    {RS_OPT_INT, "slots", "10", offsetof(br_ctx_t, slots), 1, MAX_SLOTS, NULL,
     "Items shown per recommendation, chosen from topn_emit's `n` candidates "
     "(set topn_emit's n larger than slots to give exploration room; lists "
     "with fewer candidates show them all)."},
    {RS_OPT_DOUBLE, "epsilon", "0.1", offsetof(br_ctx_t, epsilon), 0, 1, NULL,
     "epsilon_greedy: exploration probability per slot before decay."},
    {RS_OPT_DOUBLE, "decay", "0", offsetof(br_ctx_t, decay), 0, 1e6, NULL,
     "epsilon_greedy: the t-th impression (t from 0, over all partitions) "
     "explores with epsilon / (1 + decay * t); 0 keeps epsilon constant."},
    {RS_OPT_DOUBLE, "score_weight", "1", offsetof(br_ctx_t, score_weight), 0,
     1e6, NULL,
     "Weight of topn_emit's model score against the item's reward estimate "
     "in every policy's ranking value (0: rank by observed rewards only)."},
    {RS_OPT_DOUBLE, "prior_alpha", "1", offsetof(br_ctx_t, prior_alpha), 1e-6,
     1e6, NULL,
     "Beta prior successes per item (thompson's prior, and the pseudo-count "
     "of the posterior mean all policies rank by)."},
    {RS_OPT_DOUBLE, "prior_beta", "1", offsetof(br_ctx_t, prior_beta), 1e-6,
     1e6, NULL, "Beta prior failures per item (see prior_alpha)."},
    {RS_OPT_INT, "samples", "16", offsetof(br_ctx_t, samples), 1, 4096, NULL,
     "thompson: posterior draws per emission; a slot's propensities are the "
     "shares of draws won, so they are exact for the draw made."},
    {RS_OPT_DOUBLE, "floor", "0.01", offsetof(br_ctx_t, floor), 0, 1, NULL,
     "thompson: probability mass spread uniformly over the remaining "
     "candidates of each slot, so every propensity stays positive (needed "
     "by unbiased off-policy estimates)."},
    {RS_OPT_DURATION, "reward_window", "30m", offsetof(br_ctx_t, window_ms), 1,
     1e12, NULL,
     "Feedback counts when its event time is at most this long after the "
     "impression's; the impression closes (default reward if nothing "
     "matched) once the watermark passes its time + reward_window."},
    {RS_OPT_DURATION, "max_out_of_orderness", "0",
     offsetof(br_ctx_t, lateness_ms), 0, 1e12, NULL,
     "The watermark trails the largest event time seen (both inputs, per "
     "partition) by this much, so feedback this late still finds its "
     "impression open."},
    {RS_OPT_DOUBLE, "default_reward", "0", offsetof(br_ctx_t, default_reward),
     -1e9, 1e9, NULL,
     "Reward of a slot (and of the whole impression's default reward "
     "record) without feedback when the window closes."},
    {RS_OPT_ENUM, "unclicked", "all", offsetof(br_ctx_t, unclicked), 0, -1,
     "all|with_feedback",
     "Which closing impressions emit their slots without feedback on port "
     "`unclicked` (when it is wired): `all`, or `with_feedback`, only lists "
     "in which at least one slot got feedback (the only ones mf_update's "
     "weight_unclicked learns from: it ranks them below the list's clicks; "
     "a list without any may not have been seen at all)."},
    {RS_OPT_ENUM, "duplicates", "first", offsetof(br_ctx_t, duplicates), 0, -1,
     "first|sum",
     "Several feedback records for one (impression, item): `first` counts "
     "the first only (later ones are counted as duplicates), `sum` adds "
     "them all and emits a reward record for each."},
    {RS_OPT_STRING, "model", "mf", offsetof(br_ctx_t, model), 0, -1,
     RS_OPT_PEER("mf_update"),
     "linucb: name of the mf_update operator whose user and item factors "
     "give the features (read-only, like topn_emit's `model`)."},
    {RS_OPT_DOUBLE, "alpha", "1", offsetof(br_ctx_t, alpha), 0, 1e6, NULL,
     "linucb: weight of the confidence width (exploration)."},
    {RS_OPT_ENUM, "arms", "item", offsetof(br_ctx_t, arm_owner), 0, -1,
     "item|user",
     "Whose statistics the reward estimates are (the Beta posteriors every "
     "policy ranks by, and thompson_model residual's residuals). `item`: "
     "one per item, over everyone's impressions. `user`: one per (user, "
     "item), over the impressions shown to that user only: the user's own "
     "clicks on the item, kept with the user's partition in one record per "
     "user of at most user_arms_max arms (docs/DEMO.md, \"Per-user arms\")."},
    {RS_OPT_INT, "user_arms_max", "256", offsetof(br_ctx_t, user_arms_max), 1,
     65536, NULL,
     "arms user: arms kept per user (one state record per user, read once "
     "per list). A close that counts an item the full record lacks first "
     "evicts the arm shown least recently (event time of its newest "
     "counted impression; ties: the smallest item bytes), which falls back "
     "to the prior. 256 holds about 13 lists of 20 candidates with no "
     "overlap, far more than the candidates a user is shown while they "
     "matter; a record of 256 arms is about 9 KB."},
    {RS_OPT_ENUM, "arm_impressions", "all", offsetof(br_ctx_t, arm_imps), 0, -1,
     "all|with_feedback",
     "Which closed impressions count in the Beta statistics (shows and "
     "rewards): `all`, or only those `with_feedback` (any feedback joined "
     "to the impression). A list nobody answered may never have been seen "
     "(a client that shows only the latest list), and its slots would count "
     "as unclicked shows; with_feedback leaves them out (docs/DEMO.md, "
     "\"Per-user arms\"). The impression's rewards, estimates and "
     "unclicked slots are unchanged."},
    {RS_OPT_ENUM, "thompson_model", "beta", offsetof(br_ctx_t, thompson_model),
     0, -1, "beta|residual",
     "thompson: what each item's draw is. `beta`: score_weight * score + a "
     "draw from the item's Beta-Bernoulli posterior of its reward. "
     "`residual`: a Gaussian on the model score's residual: a + b * score + "
     "a draw of the item's residual delta ~ N(m, 1 / lambda), where a + b * "
     "score is the score calibrated to rewards (least squares over every "
     "closed slot; a = 0, b = score_weight for the first 30) and m, lambda "
     "the posterior of the mean of the item's residuals r - (a + b * score) "
     "(prior N(0, residual_prior_sd^2), noise residual_sd)."},
    {RS_OPT_DOUBLE, "residual_sd", "0.5", offsetof(br_ctx_t, res_sd), 1e-6, 1e6,
     NULL,
     "thompson_model residual: standard deviation of one slot's reward "
     "around a + b * score + delta (a click is 0/1: about 0.5 at most)."},
    {RS_OPT_DOUBLE, "residual_prior_sd", "0.1",
     offsetof(br_ctx_t, res_prior_sd), 1e-6, 1e6, NULL,
     "thompson_model residual: prior standard deviation of an item's "
     "residual delta, i.e. how far an item's reward may stray from what its "
     "score predicts before any feedback (larger: more exploration)."},
};

/* ------------------------------------------------------------ helpers */

static int grow(br_ctx_t *c, void **p, size_t *cap, size_t need, size_t el) {
  if (need <= *cap)
    return 0;
  size_t n = *cap ? *cap : 64;
  while (n < need)
    n *= 2;
  void *q = c->host->realloc(*p, n * el);
  if (!q)
    return RS_ENOMEM;
  *p = q;
  *cap = n;
  return 0;
}

static int make_key(br_ctx_t *c, char tag, const char *s, size_t len) {
  int rc = grow(c, (void **)&c->key, &c->key_cap, len + 1, 1);
  if (rc)
    return rc;
  c->key[0] = tag;
  if (len)
    memcpy(c->key + 1, s, len);
  return 0;
}

static char *batch_dup(br_ctx_t *c, const void *p, size_t n) {
  char *d = c->host->batch_alloc(c->op, n + 1);
  if (d) {
    if (n)
      memcpy(d, p, n);
    d[n] = '\0';
  }
  return d;
}

static int corrupt(br_ctx_t *c, const char *what) {
  c->host->log(c->op, RS_LOG_ERROR,
               "bandit_reward: corrupt state entry (%s); rebuild the state "
               "with replay",
               what);
  return RS_ESTATE;
}

/* ------------------------------------------------------- the agenda */

static int due_less(const br_due_t *a, const br_due_t *b) {
  if (a->deadline != b->deadline)
    return a->deadline < b->deadline;
  uint32_t n = a->id_len < b->id_len ? a->id_len : b->id_len;
  int k = memcmp(a->id, b->id, n);
  return k ? k < 0 : a->id_len < b->id_len;
}

static int heap_push(br_ctx_t *c, br_part_t *p, int64_t deadline,
                     const char *id, uint32_t id_len) {
  if (grow(c, (void **)&p->heap, &p->cap, p->n + 1, sizeof(br_due_t)))
    return RS_ENOMEM;
  char *d = c->host->malloc(id_len + 1u);
  if (!d)
    return RS_ENOMEM;
  memcpy(d, id, id_len);
  d[id_len] = '\0';
  if (id_len && id[0] == 'f')
    p->early[early_bucket(id + 1, id_len - 1)]++;
  size_t i = p->n++;
  p->heap[i] = (br_due_t){deadline, d, id_len};
  while (i > 0) {
    size_t up = (i - 1) / 2;
    if (!due_less(&p->heap[i], &p->heap[up]))
      break;
    br_due_t t = p->heap[i];
    p->heap[i] = p->heap[up];
    p->heap[up] = t;
    i = up;
  }
  return 0;
}

static void heap_pop(br_part_t *p) {
  const br_due_t *top = &p->heap[0];
  if (top->id_len && top->id[0] == 'f')
    p->early[early_bucket(top->id + 1, top->id_len - 1)]--;
  p->heap[0] = p->heap[--p->n];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < p->n && due_less(&p->heap[l], &p->heap[m]))
      m = l;
    if (r < p->n && due_less(&p->heap[r], &p->heap[m]))
      m = r;
    if (m == i)
      break;
    br_due_t t = p->heap[i];
    p->heap[i] = p->heap[m];
    p->heap[m] = t;
    i = m;
  }
}

typedef struct scan_ctx {
  br_ctx_t *c;
  br_part_t *p;
  int rc;
} scan_ctx_t;

/* x in micro-units for a counter: round(x * 1e6), 0 for x <= 0 or NaN,
 * and INT64_MAX from 2^63 on, where llround() would overflow (undefined;
 * LLONG_MIN in practice). A reward of 1e15 with w = 1/P(list) >= 1 is
 * already past it, and P(list) can be tiny. */
static uint64_t micro(double x) {
  double m = x * 1e6;
  if (!(m > 0))
    return 0;
  if (m >= 0x1p63)
    return (uint64_t)INT64_MAX;
  return (uint64_t)llround(m);
}

static int64_t plus_window(const br_ctx_t *c, int64_t t) {
  return t > INT64_MAX - c->window_ms ? INT64_MAX : t + c->window_ms;
}

static int rebuild_cb(void *opaque, const void *key, size_t key_len,
                      const void *value, size_t value_len) {
  scan_ctx_t *s = opaque;
  const unsigned char *v = value;
  const char *k = key;
  int64_t t;
  if (key_len < 2)
    return s->rc = corrupt(s->c, "agenda key");
  if (k[0] == 'm') {
    if (value_len < IMP_HDR || (v[0] != BR_VERSION && v[0] != 1))
      return s->rc = corrupt(s->c, "impression");
    memcpy(&t, v + 8, 8);
    t = plus_window(s->c, t);
  } else {
    if (value_len < PEND_HDR || v[0] != 1)
      return s->rc = corrupt(s->c, "early feedback");
    memcpy(&t, v + 8, 8);
  }
  return s->rc = heap_push(s->c, s->p, t, k, (uint32_t)key_len);
}

static void part_clear(br_ctx_t *c, br_part_t *p) {
  for (size_t k = 0; k < p->n; k++)
    c->host->free(p->heap[k].id);
  p->n = 0;
  p->valid = 0;
  if (p->early)
    memset(p->early, 0, EARLY_BUCKETS * sizeof *p->early);
}

/* The partition's agenda, ready for a batch: rebuilt from state (one scan
 * of the impressions "m" and of the early feedback "f") the first time the
 * partition is seen, and whenever the batch count stored in "w" is not the
 * one this instance last wrote: the state changed underneath (another
 * instance had the partition after a rebalance, or a failed batch left
 * the agenda ahead of the state). */
static int uarm_migrate(br_ctx_t *c, int32_t partition);

static int part_of(br_ctx_t *c, int32_t partition, br_part_t **out) {
  br_part_t *p = NULL;
  for (size_t i = 0; i < c->n_parts && !p; i++)
    if (c->parts[i].partition == partition)
      p = &c->parts[i];
  if (!p) {
    br_part_t *np = c->host->realloc(c->parts, (c->n_parts + 1) * sizeof(*np));
    if (!np)
      return RS_ENOMEM;
    c->parts = np;
    uint32_t *early = c->host->calloc(EARLY_BUCKETS, sizeof *early);
    if (!early)
      return RS_ENOMEM;
    p = &c->parts[c->n_parts++];
    memset(p, 0, sizeof(*p));
    p->partition = partition;
    p->early = early;
  }
  void *v;
  size_t n;
  int64_t max_ts = INT64_MIN;
  uint64_t seq = 0;
  int rc = c->host->state_get(c->op, partition, "w", 1, &v, &n);
  if (rc == 0) {
    if (n != 8 && n != 16) /* 8: before the batch count */
      return corrupt(c, "watermark");
    memcpy(&max_ts, v, 8);
    if (n == 16)
      memcpy(&seq, (char *)v + 8, 8);
  } else if (rc != RS_ENOENT)
    return rc;
  *out = p;
  if (p->valid && p->seq == seq)
    return 0;
  part_clear(c, p);
  p->max_ts = max_ts;
  p->seq = seq;
  scan_ctx_t s = {c, p, 0};
  rc = c->host->state_scan(c->op, partition, "m", 1, rebuild_cb, &s);
  if (!rc && !s.rc)
    rc = c->host->state_scan(c->op, partition, "f", 1, rebuild_cb, &s);
  if (s.rc)
    return s.rc;
  if (rc)
    return rc;
  if (c->arm_owner == ARMS_USER && (rc = uarm_migrate(c, partition)))
    return rc;
  c->host->counter_add(c->c_rebuilt, 1);
  p->valid = 1;
  return 0;
}

/* After a batch: the watermark and the batch count the agenda matches. */
static int part_store(br_ctx_t *c, br_part_t *p) {
  unsigned char w[16];
  p->seq++;
  memcpy(w, &p->max_ts, 8);
  memcpy(w + 8, &p->seq, 8);
  return c->host->state_put(c->op, p->partition, "w", 1, w, sizeof w);
}

/* ------------------------------------------------------ statistics */

/* The key of item's arm into c->key (c->arm_klen bytes, partition
 * c->arm_kpart): "a" + item (arms item). */
static int arm_key(br_ctx_t *c, const char *item, uint32_t len) {
  c->arm_klen = 1 + (size_t)len;
  c->arm_kpart = RS_PARTITION_SHARED;
  return make_key(c, 'a', item, len);
}

/* ------------------------------------------------ per-user arms record */

/* "A" + user (partition), arms user: the user's arms, sorted by item
 * bytes (memcmp, then the shorter first):
 *   0 u8 version 1 | 1 u8 flags (1: residual fields) | 2 u16 0 | 4 u32
 *   count | then per arm: u32 item length | i64 last (event time of the
 *   newest impression counted) | f64 shows | f64 reward | [f64 residual
 *   n | f64 residual sum] | item bytes.
 * Before session 10 the same statistics were one entry per (user, item),
 * "p" / "q" + u32 user length + user + item (16 bytes each): migrated into
 * the records when a partition's agenda is rebuilt (uarm_migrate). */
#define UA_VERSION 1
#define UA_HDR 8
#define UA_ARM 28
#define UA_RES 16

static int ua_cmp(const char *a, uint32_t al, const char *b, uint32_t bl) {
  int k = memcmp(a, b, al < bl ? al : bl);
  return k ? k : (al > bl) - (al < bl);
}

static int uarm_key(br_ctx_t *c, const char *user, uint32_t ulen) {
  return make_key(c, 'A', user, ulen);
}

/* Loads user's record into c->ua (empty when absent): the one state read
 * of a list's emission and of a close. */
static int uarm_load(br_ctx_t *c, int32_t partition, const char *user,
                     uint32_t ulen) {
  int rc = uarm_key(c, user, ulen);
  if (rc)
    return rc;
  void *v;
  size_t n;
  c->ua_n = 0;
  rc = c->host->state_get(c->op, partition, c->key, 1 + (size_t)ulen, &v, &n);
  if (rc == RS_ENOENT)
    return 0;
  if (rc)
    return rc;
  if (grow(c, (void **)&c->ua_val, &c->ua_val_cap, n + 1, 1))
    return RS_ENOMEM;
  memcpy(c->ua_val, v, n);
  const unsigned char *b = c->ua_val;
  uint32_t count;
  if (n < UA_HDR || b[0] != UA_VERSION || (b[1] & ~1u) || b[2] || b[3])
    return corrupt(c, "user arms");
  memcpy(&count, b + 4, 4);
  size_t es = UA_ARM + ((b[1] & 1) ? UA_RES : 0);
  if (count > (n - UA_HDR) / es)
    return corrupt(c, "user arms");
  if (grow(c, (void **)&c->ua, &c->ua_cap, count + 1, sizeof *c->ua))
    return RS_ENOMEM;
  size_t off = UA_HDR;
  for (uint32_t k = 0; k < count; k++) {
    br_uarm_t *a = &c->ua[k];
    if (off + es > n)
      return corrupt(c, "user arms");
    memcpy(&a->len, b + off, 4);
    if (a->len > n - off - es)
      return corrupt(c, "user arms");
    memcpy(&a->last, b + off + 4, 8);
    memcpy(&a->shows, b + off + 12, 8);
    memcpy(&a->reward, b + off + 20, 8);
    a->res_n = a->res_sum = 0;
    if (b[1] & 1) {
      memcpy(&a->res_n, b + off + 28, 8);
      memcpy(&a->res_sum, b + off + 36, 8);
    }
    a->item = (const char *)b + off + es;
    off += es + a->len;
    if (k && ua_cmp(c->ua[k - 1].item, c->ua[k - 1].len, a->item, a->len) >= 0)
      return corrupt(c, "user arms (order)");
  }
  if (off != n)
    return corrupt(c, "user arms");
  c->ua_n = count;
  return 0;
}

/* Index of item in c->ua, or -1 - (where it would go). */
static long uarm_find(const br_ctx_t *c, const char *item, uint32_t len) {
  size_t lo = 0, hi = c->ua_n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int k = ua_cmp(c->ua[mid].item, c->ua[mid].len, item, len);
    if (!k)
      return (long)mid;
    if (k < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return -1 - (long)lo;
}

/* Drops the arm shown least recently (ties: the smallest item bytes). */
static void uarm_evict(br_ctx_t *c) {
  size_t v = 0;
  for (size_t k = 1; k < c->ua_n; k++)
    if (c->ua[k].last < c->ua[v].last)
      v = k; /* sorted by item: the first of equal `last` is the smallest */
  memmove(c->ua + v, c->ua + v + 1, (c->ua_n - v - 1) * sizeof *c->ua);
  c->ua_n--;
  c->host->counter_add(c->c_ua_evicted, 1);
}

/* item's arm in c->ua, added (after an eviction when the record is full)
 * when absent; its `last` moved to `when`. item must outlive the store. */
static int uarm_touch(br_ctx_t *c, const char *item, uint32_t len, int64_t when,
                      br_uarm_t **out) {
  long i = uarm_find(c, item, len);
  if (i < 0) {
    if (c->ua_n >= (size_t)c->user_arms_max) {
      uarm_evict(c);
      i = uarm_find(c, item, len);
    }
    if (grow(c, (void **)&c->ua, &c->ua_cap, c->ua_n + 1, sizeof *c->ua))
      return RS_ENOMEM;
    size_t at = (size_t)(-1 - i);
    memmove(c->ua + at + 1, c->ua + at, (c->ua_n - at) * sizeof *c->ua);
    c->ua[at] = (br_uarm_t){.item = item, .len = len, .last = when};
    c->ua_n++;
    i = (long)at;
  }
  br_uarm_t *a = &c->ua[i];
  if (when > a->last)
    a->last = when;
  *out = a;
  return 0;
}

/* Writes c->ua as user's record (at most user_arms_max arms). */
static int uarm_store(br_ctx_t *c, int32_t partition, const char *user,
                      uint32_t ulen) {
  while (c->ua_n > (size_t)c->user_arms_max)
    uarm_evict(c); /* the bound was lowered since the record was written */
  size_t es = UA_ARM + (c->residual ? UA_RES : 0), n = UA_HDR;
  for (size_t k = 0; k < c->ua_n; k++)
    n += es + c->ua[k].len;
  if (grow(c, (void **)&c->ua_out, &c->ua_out_cap, n, 1))
    return RS_ENOMEM;
  unsigned char *b = c->ua_out;
  uint32_t count = (uint32_t)c->ua_n;
  memset(b, 0, UA_HDR);
  b[0] = UA_VERSION;
  b[1] = c->residual ? 1 : 0;
  memcpy(b + 4, &count, 4);
  size_t off = UA_HDR;
  for (size_t k = 0; k < c->ua_n; k++) {
    const br_uarm_t *a = &c->ua[k];
    memcpy(b + off, &a->len, 4);
    memcpy(b + off + 4, &a->last, 8);
    memcpy(b + off + 12, &a->shows, 8);
    memcpy(b + off + 20, &a->reward, 8);
    if (c->residual) {
      memcpy(b + off + 28, &a->res_n, 8);
      memcpy(b + off + 36, &a->res_sum, 8);
    }
    if (a->len)
      memcpy(b + off + es, a->item, a->len);
    off += es + a->len;
  }
  int rc = uarm_key(c, user, ulen);
  if (rc)
    return rc;
  return c->host->state_put(c->op, partition, c->key, 1 + (size_t)ulen, b, n);
}

/* Migration of the per-pair layout: the scan copies every "p" and "q"
 * entry (u32 key length | u32 value length | key | value) into c->mig. */
static int mig_cb(void *opaque, const void *key, size_t key_len,
                  const void *value, size_t value_len) {
  br_ctx_t *c = opaque;
  size_t need = c->mig_n + 8 + key_len + value_len;
  if (key_len > UINT32_MAX || value_len > UINT32_MAX ||
      grow(c, (void **)&c->mig, &c->mig_cap, need, 1))
    return RS_ENOMEM;
  uint32_t kl = (uint32_t)key_len, vl = (uint32_t)value_len;
  memcpy(c->mig + c->mig_n, &kl, 4);
  memcpy(c->mig + c->mig_n + 4, &vl, 4);
  memcpy(c->mig + c->mig_n + 8, key, key_len);
  memcpy(c->mig + c->mig_n + 8 + key_len, value, value_len);
  c->mig_n = need;
  return 0;
}

/* One entry of c->mig at *off (0 past end): key, key length, value. */
static int mig_next(br_ctx_t *c, size_t *off, size_t end, const char **k,
                    uint32_t *kl, const unsigned char **v) {
  uint32_t vl, ul;
  if (*off >= end)
    return 0;
  memcpy(kl, c->mig + *off, 4);
  memcpy(&vl, c->mig + *off + 4, 4);
  *k = (const char *)c->mig + *off + 8;
  *v = c->mig + *off + 8 + *kl;
  if (*kl < 5)
    return corrupt(c, "per-pair user arm key");
  memcpy(&ul, *k + 1, 4);
  if (ul > *kl - 5 || vl != 16)
    return corrupt(c, "per-pair user arm");
  *off += 8 + (size_t)*kl + vl;
  return 1;
}

/* arms user: moves a partition's per-pair entries ("p": shows and rewards,
 * "q": residuals; both in key order, merged per (user, item)) into the
 * users' records, their `last` the oldest possible (they carry no time),
 * then deletes them; a user with more than user_arms_max keeps the bound
 * by the usual eviction (ties: the smaller item bytes go). Residuals are
 * dropped unless thompson_model is residual (they were unused). Runs at
 * each agenda rebuild; after the first, the scans find nothing. */
static int uarm_migrate(br_ctx_t *c, int32_t partition) {
  int rc;
  c->mig_n = 0;
  if ((rc = c->host->state_scan(c->op, partition, "p", 1, mig_cb, c)))
    return rc;
  size_t p_end = c->mig_n;
  if ((rc = c->host->state_scan(c->op, partition, "q", 1, mig_cb, c)))
    return rc;
  size_t po = 0, qo = p_end, moved = 0;
  const char *cur = NULL; /* the user whose record c->ua holds */
  uint32_t cur_len = 0;
  const char *pk = NULL, *qk = NULL;
  uint32_t pkl = 0, qkl = 0;
  const unsigned char *pv = NULL, *qv = NULL;
  int hp = mig_next(c, &po, p_end, &pk, &pkl, &pv);
  int hq = mig_next(c, &qo, c->mig_n, &qk, &qkl, &qv);
  while (hp > 0 || hq > 0) {
    if (hp < 0 || hq < 0)
      return hp < 0 ? hp : hq;
    /* The same (user, item) under both tags: one arm. */
    int d = hp <= 0   ? 1
            : hq <= 0 ? -1
                      : ua_cmp(pk + 1, pkl - 1, qk + 1, qkl - 1);
    const char *k = d <= 0 ? pk : qk;
    uint32_t kl = d <= 0 ? pkl : qkl, ul;
    memcpy(&ul, k + 1, 4);
    const char *user = k + 5, *item = k + 5 + ul;
    uint32_t il = kl - 5 - ul;
    if (d <= 0 || c->residual) {
      if (!cur || cur_len != ul || memcmp(cur, user, ul)) {
        if (cur && (rc = uarm_store(c, partition, cur, cur_len)))
          return rc;
        if ((rc = uarm_load(c, partition, user, ul)))
          return rc;
        cur = user;
        cur_len = ul;
      }
      br_uarm_t *a;
      double x[2];
      if ((rc = uarm_touch(c, item, il, INT64_MIN, &a)))
        return rc;
      if (d <= 0) {
        memcpy(x, pv, 16);
        a->shows += x[0];
        a->reward += x[1];
      }
      if (d >= 0 && c->residual) {
        memcpy(x, qv, 16);
        a->res_n += x[0];
        a->res_sum += x[1];
      }
    }
    if (d <= 0) {
      if ((rc = c->host->state_delete(c->op, partition, pk, pkl)))
        return rc;
      moved++;
      hp = mig_next(c, &po, p_end, &pk, &pkl, &pv);
    }
    if (d >= 0) {
      if ((rc = c->host->state_delete(c->op, partition, qk, qkl)))
        return rc;
      moved++;
      hq = mig_next(c, &qo, c->mig_n, &qk, &qkl, &qv);
    }
  }
  if (hp < 0 || hq < 0)
    return hp < 0 ? hp : hq;
  if (cur && (rc = uarm_store(c, partition, cur, cur_len)))
    return rc;
  c->ua_n = 0;              /* its items pointed into c->mig */
  if (c->mig_cap > 65536) { /* a one-off copy of the old entries */
    c->host->free(c->mig);
    c->mig = NULL;
    c->mig_n = c->mig_cap = 0;
  }
  if (moved) {
    c->host->counter_add(c->c_ua_migrated, moved);
    c->host->log(c->op, RS_LOG_INFO,
                 "bandit_reward: partition %d: %zu per-pair user arm entries "
                 "moved into per-user records",
                 (int)partition, moved);
  }
  return 0;
}

/* item's statistics: with arms user and c->arm_user set, from the user's
 * record loaded in c->ua (prior: zeros when absent); else "a" (+ "g"). */
static int get_arm(br_ctx_t *c, const char *item, uint32_t len, br_arm_t *a) {
  a->shows = a->reward = a->res_n = a->res_sum = 0;
  if (c->arm_owner == ARMS_USER && c->arm_user) {
    long i = uarm_find(c, item, len);
    if (i >= 0) {
      a->shows = c->ua[i].shows;
      a->reward = c->ua[i].reward;
      a->res_n = c->ua[i].res_n;
      a->res_sum = c->ua[i].res_sum;
    }
    return 0;
  }
  int rc = arm_key(c, item, len);
  if (rc)
    return rc;
  void *v;
  size_t n;
  rc = c->host->state_get(c->op, c->arm_kpart, c->key, c->arm_klen, &v, &n);
  if (rc && rc != RS_ENOENT)
    return rc;
  if (rc == 0) {
    if (n != 16)
      return corrupt(c, "item statistics");
    memcpy(&a->shows, v, 8);
    memcpy(&a->reward, (char *)v + 8, 8);
  }
  if (!c->residual)
    return 0;
  c->key[0] = 'g';
  rc = c->host->state_get(c->op, c->arm_kpart, c->key, c->arm_klen, &v, &n);
  c->key[0] = 'a'; /* add_arm writes c->key */
  if (rc == RS_ENOENT)
    return 0;
  if (rc)
    return rc;
  if (n != 16)
    return corrupt(c, "item residuals");
  memcpy(&a->res_n, v, 8);
  memcpy(&a->res_sum, (char *)v + 8, 8);
  return 0;
}

/* The calibration sums ("c", shared) into c->calib. */
static int get_calib(br_ctx_t *c) {
  void *v;
  size_t n;
  memset(&c->calib, 0, sizeof c->calib);
  int rc = c->host->state_get(c->op, RS_PARTITION_SHARED, "c", 1, &v, &n);
  if (rc == RS_ENOENT)
    return 0;
  if (rc)
    return rc;
  if (n != sizeof c->calib)
    return corrupt(c, "score calibration");
  memcpy(&c->calib, v, sizeof c->calib);
  return 0;
}

static int put_calib(br_ctx_t *c) {
  return c->host->state_put(c->op, RS_PARTITION_SHARED, "c", 1, &c->calib,
                            sizeof c->calib);
}

/* Residual model: one closed slot of item (score, reward r), shown at
 * `when`. The residual is taken against the calibration before this slot
 * joins it. */
static int add_residual(br_ctx_t *c, const char *item, uint32_t len,
                        double score, double r, int64_t when) {
  double a, b;
  br_calib_fit(&c->calib, c->score_weight, &a, &b);
  double e = r - (a + b * score);
  br_calib_add(&c->calib, score, r);
  if (c->arm_owner == ARMS_USER && c->arm_user) {
    br_uarm_t *u;
    int rc = uarm_touch(c, item, len, when, &u);
    if (!rc) {
      u->res_n += 1;
      u->res_sum += e;
    }
    return rc;
  }
  br_arm_t arm;
  int rc = get_arm(c, item, len, &arm); /* c->key = the arm's */
  if (rc)
    return rc;
  c->key[0] = 'g';
  double v[2] = {arm.res_n + 1, arm.res_sum + e};
  return c->host->state_put(c->op, c->arm_kpart, c->key, c->arm_klen, v,
                            sizeof v);
}

static int add_arm(br_ctx_t *c, const char *item, uint32_t len, double reward,
                   int64_t when) {
  if (c->arm_owner == ARMS_USER && c->arm_user) {
    br_uarm_t *u;
    int rc = uarm_touch(c, item, len, when, &u);
    if (!rc) {
      u->shows += 1;
      u->reward += reward;
    }
    return rc;
  }
  br_arm_t a;
  int rc = get_arm(c, item, len, &a);
  if (rc)
    return rc;
  unsigned char v[16];
  a.shows += 1;
  a.reward += reward;
  memcpy(v, &a.shows, 8);
  memcpy(v + 8, &a.reward, 8);
  return c->host->state_put(c->op, c->arm_kpart, c->key, c->arm_klen, v,
                            sizeof v);
}

void rs__bandit_estimates(void *vctx, double *n, double *ips, double *snips) {
  br_ctx_t *c = vctx;
  *n = c->est[0];
  *ips = c->est[0] > 0 ? c->est[1] / c->est[0] : NAN;
  *snips = c->est[2] > 0 ? c->est[1] / c->est[2] : NAN;
}

int rs__bandit_arm(void *vctx, const char *item, double *shows,
                   double *reward) {
  br_ctx_t *c = vctx;
  br_arm_t a;
  c->arm_user = NULL;
  int rc = get_arm(c, item, (uint32_t)strlen(item), &a);
  *shows = a.shows;
  *reward = a.reward;
  return rc;
}

/* (user, item)'s statistics from the user's record (arms user). */
static int user_arm(br_ctx_t *c, int partition, const char *user,
                    const char *item, br_arm_t *a) {
  *a = (br_arm_t){0};
  c->arm_user = user;
  int rc = uarm_load(c, partition, user, (uint32_t)strlen(user));
  if (!rc)
    rc = get_arm(c, item, (uint32_t)strlen(item), a);
  c->arm_user = NULL;
  return rc;
}

int rs__bandit_user_arm(void *vctx, int partition, const char *user,
                        const char *item, double *shows, double *reward) {
  br_arm_t a;
  int rc = user_arm(vctx, partition, user, item, &a);
  *shows = a.shows;
  *reward = a.reward;
  return rc;
}

int rs__bandit_user_residual(void *vctx, int partition, const char *user,
                             const char *item, double *n, double *sum) {
  br_arm_t a;
  int rc = user_arm(vctx, partition, user, item, &a);
  *n = a.res_n;
  *sum = a.res_sum;
  return rc;
}

int rs__bandit_residual(void *vctx, const char *item, double *n, double *sum,
                        double *a, double *b) {
  br_ctx_t *c = vctx;
  br_arm_t arm;
  c->arm_user = NULL;
  int rc = get_arm(c, item, (uint32_t)strlen(item), &arm);
  if (!rc)
    rc = get_calib(c);
  *n = arm.res_n;
  *sum = arm.res_sum;
  br_calib_fit(&c->calib, c->score_weight, a, b);
  return rc;
}

/* ----------------------------------------------------- impressions */

static int emit_reward(br_ctx_t *c, const rs_record_t *src, uint32_t *ord,
                       const rs_reward_t *r) {
  rs_reward_t *copy = c->host->batch_alloc(c->op, sizeof(*copy));
  if (!copy)
    return RS_ENOMEM;
  *copy = *r;
  rs_record_t out = {.kind = RS_KIND_REWARD,
                     .key = r->user,
                     .key_len = r->user_len,
                     .payload = copy,
                     .timestamp_ms = r->timestamp_ms,
                     .src_partition = src->src_partition,
                     .src_ordinal = (*ord)++,
                     .src_offset = src->src_offset};
  c->host->counter_add(c->c_rewards, 1);
  return c->host->emit(c->op, PORT_REWARDS, &out);
}

static int put_lin(br_ctx_t *c);

/* Port `unclicked`: a slot of a closing impression that got no feedback,
 * as a feedback record (type DISMISS, value default_reward) naming the
 * impression and the item, for mf_update's weight_unclicked. Nothing when
 * the port is not wired. */
static int emit_unclicked(br_ctx_t *c, const rs_record_t *src, uint32_t *ord,
                          const char *user, uint32_t ulen, const char *id,
                          uint32_t id_len, const char *item, uint32_t il,
                          int64_t when) {
  if (RS_HOST_HAS(c->host, port_wanted) &&
      !c->host->port_wanted(c->op, PORT_UNCLICKED))
    return 0;
  rs_feedback_t *f = c->host->batch_alloc(c->op, sizeof(*f));
  if (!f)
    return RS_ENOMEM;
  *f = (rs_feedback_t){.user = batch_dup(c, user, ulen),
                       .user_len = ulen,
                       .impression_id = batch_dup(c, id, id_len),
                       .impression_id_len = id_len,
                       .item = batch_dup(c, item, il),
                       .item_len = il,
                       .type = RS_FEEDBACK_DISMISS,
                       .value = c->default_reward,
                       .timestamp_ms = when};
  if (!f->user || !f->impression_id || !f->item)
    return RS_ENOMEM;
  rs_record_t out = {.kind = RS_KIND_FEEDBACK,
                     .key = f->user,
                     .key_len = ulen,
                     .payload = f,
                     .timestamp_ms = when,
                     .src_partition = src->src_partition,
                     .src_ordinal = (*ord)++,
                     .src_offset = src->src_offset};
  c->host->counter_add(c->c_unclicked, 1);
  return c->host->emit(c->op, PORT_UNCLICKED, &out);
}

/* Closes impression `id`: default reward, statistics, estimates. */
static int close_impression(br_ctx_t *c, int32_t partition,
                            const rs_record_t *src, uint32_t *ord,
                            const char *id, uint32_t id_len, int64_t when) {
  int rc = make_key(c, 'm', id, id_len);
  if (rc)
    return rc;
  void *v;
  size_t n;
  rc = c->host->state_get(c->op, partition, c->key, 1 + (size_t)id_len, &v, &n);
  if (rc == RS_ENOENT)
    return 0;
  if (rc)
    return rc;
  if (grow(c, (void **)&c->buf, &c->buf_cap, n, 1))
    return RS_ENOMEM;
  memcpy(c->buf, v, n); /* v is borrowed until the next state call */
  const unsigned char *b = c->buf;
  if (n < IMP_HDR || (b[0] != BR_VERSION && b[0] != 1))
    return corrupt(c, "impression");
  size_t sh = b[0] == 1 ? SLOT_HDR1 : SLOT_HDR;
  uint16_t slots;
  uint32_t ulen, matched, dim;
  int64_t imp_ms;
  double plist;
  memcpy(&dim, b + 28, 4);
  memcpy(&slots, b + 2, 2);
  memcpy(&ulen, b + 4, 4);
  memcpy(&imp_ms, b + 8, 8);
  memcpy(&plist, b + 16, 8);
  memcpy(&matched, b + 24, 4);
  if ((size_t)IMP_HDR + ulen > n)
    return corrupt(c, "impression");
  const char *user = (const char *)b + IMP_HDR;
  c->arm_user = user; /* b is c->buf: stable until this close returns */
  size_t off = IMP_HDR + (size_t)ulen;
  double total = 0;
  if (c->residual && (rc = get_calib(c)))
    return rc;
  /* arms user: the user's record, read once, written once (its new arms'
   * items point into b); untouched when this close counts nothing. */
  int user_arms = c->arm_owner == ARMS_USER &&
                  (c->residual || c->arm_imps == ARM_IMPS_ALL || matched > 0);
  if (user_arms && (rc = uarm_load(c, partition, user, ulen)))
    return rc;
  for (uint16_t s = 0; s < slots; s++) {
    uint32_t il;
    if (off + sh > n)
      return corrupt(c, "impression slot");
    memcpy(&il, b + off, 4);
    if (off + sh + il > n)
      return corrupt(c, "impression slot");
    if (off + sh + il + 4 * (size_t)dim > n)
      return corrupt(c, "impression slot");
    double r, score = NAN;
    memcpy(&r, b + off + 16, 8);
    if (sh == SLOT_HDR)
      memcpy(&score, b + off + 24, 8);
    if (!b[off + 4]) {
      r = c->default_reward;
      if ((c->unclicked == UNCLICKED_ALL || matched > 0) &&
          (rc = emit_unclicked(c, src, ord, user, ulen, id, id_len,
                               (const char *)b + off + sh, il, when)))
        return rc;
    }
    total += r;
    if (c->residual && isfinite(score) &&
        (rc =
             add_residual(c, (const char *)b + off + sh, il, score, r, imp_ms)))
      return rc;
    if (dim && dim == c->lin.d) {
      if (grow(c, (void **)&c->feat, &c->feat_cap, dim, 4) ||
          grow(c, (void **)&c->ucb, &c->ucb_cap, dim, 8))
        return RS_ENOMEM;
      memcpy(c->feat, b + off + sh + il, 4 * (size_t)dim);
      br_lin_update(&c->lin, c->feat, r, c->ucb);
    }
    if ((c->arm_imps == ARM_IMPS_ALL || matched > 0) &&
        (rc = add_arm(c, (const char *)b + off + sh, il, r, imp_ms)))
      return rc;
    off += sh + il + 4 * (size_t)dim;
  }
  if (user_arms && (rc = uarm_store(c, partition, user, ulen)))
    return rc;
  if (c->residual && (rc = put_calib(c)))
    return rc;
  if (dim && dim == c->lin.d && (rc = put_lin(c)))
    return rc;
  if (matched == 0) {
    rs_reward_t r = {.user = batch_dup(c, user, ulen),
                     .user_len = ulen,
                     .impression_id = batch_dup(c, id, id_len),
                     .impression_id_len = id_len,
                     .position = -1,
                     .flags = RS_REWARD_F_DEFAULT,
                     .type = -1,
                     .reward = c->default_reward,
                     .propensity = plist,
                     .impression_ms = imp_ms,
                     .timestamp_ms = when};
    if (!r.user || !r.impression_id)
      return RS_ENOMEM;
    c->host->counter_add(c->c_default, 1);
    if ((rc = emit_reward(c, src, ord, &r)))
      return rc;
  }
  /* Off-policy estimate of the greedy target policy. */
  double w = (b[1] & 1) && plist > 0 ? 1.0 / plist : 0.0;
  c->est[0] += 1;
  c->est[1] += w * total;
  c->est[2] += w;
  c->host->counter_add(c->c_ips_n, 1);
  if (w * total > 0)
    c->host->counter_add(c->c_ips_wr, micro(w * total));
  if (w > 0)
    c->host->counter_add(c->c_ips_w, micro(w));
  unsigned char e[24];
  memcpy(e, c->est, sizeof e);
  if ((rc =
           c->host->state_put(c->op, RS_PARTITION_SHARED, "e", 1, e, sizeof e)))
    return rc;
  if ((rc = make_key(c, 'm', id, id_len)))
    return rc;
  return c->host->state_delete(c->op, partition, c->key, 1 + (size_t)id_len);
}

static int expire_early(br_ctx_t *c, int32_t partition, const rs_record_t *src,
                        uint32_t *ord, const char *id, uint32_t id_len,
                        int64_t wm);

/* Moves the partition's watermark with event time ts and closes what it
 * passes. */
static int advance(br_ctx_t *c, br_part_t *p, const rs_record_t *src,
                   uint32_t *ord, int64_t ts) {
  if (ts > p->max_ts)
    p->max_ts = ts; /* stored after the batch (part_store) */
  int64_t wm = p->max_ts == INT64_MIN ? INT64_MIN
               : p->max_ts < INT64_MIN + c->lateness_ms
                   ? INT64_MIN
                   : p->max_ts - c->lateness_ms;
  while (p->n && p->heap[0].deadline < wm) {
    br_due_t d = p->heap[0];
    heap_pop(p);
    int rc = d.id[0] == 'm' ? close_impression(c, p->partition, src, ord,
                                               d.id + 1, d.id_len - 1, wm)
                            : expire_early(c, p->partition, src, ord, d.id + 1,
                                           d.id_len - 1, wm);
    c->host->free(d.id);
    if (rc)
      return rc;
  }
  return 0;
}

/* ---------------------------------------------------------- linucb */

static int put_lin(br_ctx_t *c) {
  uint32_t d = c->lin.d;
  size_t n = 4 + 8 * ((size_t)d * d + d);
  if (grow(c, (void **)&c->buf2, &c->buf2_cap, n, 1))
    return RS_ENOMEM;
  memcpy(c->buf2, &d, 4);
  memcpy(c->buf2 + 4, c->lin_mem, 8 * ((size_t)d * d + d));
  return c->host->state_put(c->op, RS_PARTITION_SHARED, "L", 1, c->buf2, n);
}

/* The model's k (0: no model yet); sets up c->lin for d = k + 1. */
static int lin_setup(br_ctx_t *c, uint32_t *k_out) {
  void *v;
  size_t n;
  *k_out = 0;
  int rc = c->host->peer_state_get(c->op, c->peer, RS_PARTITION_SHARED, "m", 1,
                                   &v, &n);
  if (rc == RS_ENOENT)
    return 0;
  if (rc)
    return rc;
  uint32_t k;
  if (n < 8)
    return corrupt(c, "model record of the `model` operator");
  memcpy(&k, (char *)v + 4, 4);
  if (k == 0 || k > 4096)
    return corrupt(c, "model record of the `model` operator");
  uint32_t d = k + 1;
  *k_out = k;
  if (c->lin.d == d)
    return 0;
  if (c->lin.d)
    return corrupt(c, "linucb dimension differs from the model's k + 1");
  size_t cells = (size_t)d * d + d;
  c->lin_mem = c->host->malloc(8 * cells);
  if (!c->lin_mem)
    return RS_ENOMEM;
  c->lin.d = d;
  c->lin.ainv = c->lin_mem;
  c->lin.b = c->lin_mem + (size_t)d * d;
  rc = c->host->state_get(c->op, RS_PARTITION_SHARED, "L", 1, &v, &n);
  if (rc == RS_ENOENT) {
    br_lin_reset(&c->lin);
    return 0;
  }
  if (rc)
    return rc;
  uint32_t sd = 0;
  if (n == 4 + 8 * cells)
    memcpy(&sd, v, 4);
  if (sd != d)
    return corrupt(c, "linucb model");
  memcpy(c->lin_mem, (char *)v + 4, 8 * cells);
  return 0;
}

/* The k floats at `at` of a peer value of at + 4k bytes (zeros when
 * absent or of another size). */
static int peer_vec(br_ctx_t *c, int32_t partition, const void *key,
                    size_t key_len, size_t at, uint32_t k, float *out) {
  void *v;
  size_t n;
  int rc =
      c->host->peer_state_get(c->op, c->peer, partition, key, key_len, &v, &n);
  if (rc == RS_ENOENT || (rc == 0 && n != at + 4 * (size_t)k)) {
    memset(out, 0, 4 * (size_t)k);
    return 0;
  }
  if (rc)
    return rc;
  memcpy(out, (char *)v + at, 4 * (size_t)k);
  return 0;
}

/* LinUCB's choice: features x_j = [1, p_u * q_j] from the model (all zero
 * but the 1 when the user or item has no factors); each slot takes the
 * best remaining score_weight * score + theta^T x + alpha * width, the
 * greedy list the best without the width. Deterministic: propensity 1. */
static int linucb_choose(br_ctx_t *c, int32_t partition,
                         const rs_recommendation_t *r, uint32_t slots,
                         uint32_t *order, double *prop, uint32_t *greedy,
                         uint32_t *dim) {
  uint32_t n = r->n_items, k;
  int rc = lin_setup(c, &k);
  if (rc)
    return rc;
  uint32_t d = k ? k + 1 : 0;
  *dim = d;
  if (grow(c, (void **)&c->feat, &c->feat_cap, ((size_t)n + 2) * (d + 1), 4) ||
      grow(c, (void **)&c->ucb, &c->ucb_cap, 2 * (size_t)n + d + 1, 8))
    return RS_ENOMEM;
  double *ucb = c->ucb, *mean = c->ucb + n, *scratch = c->ucb + 2 * (size_t)n;
  float *pu = c->feat + (size_t)n * d, *q = pu + d;
  if (d) {
    if ((rc = make_key(c, 'u', r->user, r->user_len)) ||
        (rc = peer_vec(c, partition, c->key, 1 + (size_t)r->user_len, 32, k,
                       pu)))
      return rc;
  }
  for (uint32_t j = 0; j < n; j++) {
    double m = 0, w = 0;
    if (d) {
      float *x = c->feat + (size_t)j * d;
      void *v;
      size_t vn;
      if ((rc = make_key(c, 'd', r->items[j].item, r->items[j].item_len)))
        return rc;
      rc = c->host->peer_state_get(c->op, c->peer, RS_PARTITION_SHARED, c->key,
                                   1 + (size_t)r->items[j].item_len, &v, &vn);
      if (rc && rc != RS_ENOENT)
        return rc;
      memset(q, 0, 4 * (size_t)k);
      if (rc == 0 && vn == 4) {
        uint32_t id;
        unsigned char ik[5] = {'i'};
        memcpy(&id, v, 4);
        ik[1] = (unsigned char)(id >> 24);
        ik[2] = (unsigned char)(id >> 16);
        ik[3] = (unsigned char)(id >> 8);
        ik[4] = (unsigned char)id;
        if ((rc = peer_vec(c, RS_PARTITION_SHARED, ik, 5, 40, k, q)))
          return rc;
      }
      x[0] = 1;
      for (uint32_t i = 0; i < k; i++)
        x[i + 1] = pu[i] * q[i];
      br_lin_score(&c->lin, x, &m, &w, scratch);
    }
    mean[j] = c->score_weight * r->items[j].score + m;
    ucb[j] = mean[j] + c->alpha * w;
  }
  for (int pass = 0; pass < 2; pass++) {
    const double *v = pass ? ucb : mean;
    uint32_t *out = pass ? order : greedy;
    for (uint32_t s = 0; s < slots; s++) {
      uint32_t best = UINT32_MAX;
      for (uint32_t j = 0; j < n; j++) {
        int taken = 0;
        for (uint32_t t = 0; t < s && !taken; t++)
          taken = out[t] == j;
        if (!taken && (best == UINT32_MAX || v[j] > v[best]))
          best = j;
      }
      out[s] = best;
      prop[s] = 1.0;
    }
  }
  return 0;
}

static int take_early(br_ctx_t *c, br_part_t *p, const rs_record_t *src,
                      uint32_t *ord, const char *id, uint32_t id_len);

static int on_recommendation(br_ctx_t *c, br_part_t *p, const rs_record_t *rec,
                             uint32_t *ord) {
  const rs_recommendation_t *r = rec->payload;
  uint32_t n = r->n_items, slots = (uint32_t)c->slots;
  if (slots > n)
    slots = n;
  br_policy_t pol = {.kind = c->policy,
                     .epsilon = c->epsilon,
                     .score_weight = c->score_weight,
                     .prior_alpha = c->prior_alpha,
                     .prior_beta = c->prior_beta,
                     .floor = c->floor,
                     .samples = (uint32_t)c->samples,
                     .residual = c->residual,
                     .res_sd = c->res_sd,
                     .res_prior_sd = c->res_prior_sd};
  int64_t t = 0;
  int rc;
  if (c->residual) {
    if ((rc = get_calib(c)))
      return rc;
    br_calib_fit(&c->calib, c->score_weight, &pol.cal_a, &pol.cal_b);
  }
  if (c->policy == BR_EPSILON && c->decay > 0) {
    if ((rc = c->host->state_counter_add(c->op, RS_PARTITION_SHARED, "t", 1, 1,
                                         &t)))
      return rc;
    pol.epsilon = c->epsilon / (1.0 + c->decay * (double)(t - 1));
  }
  if (grow(c, (void **)&c->arms, &c->arms_cap, n + 1, sizeof(br_arm_t)) ||
      grow(c, (void **)&c->work, &c->work_cap, br_work_size(&pol, n) + 1,
           sizeof(double)))
    return RS_ENOMEM;
  uint32_t *order = c->host->batch_alloc(c->op, sizeof(uint32_t) * 2 * (n + 1));
  double *prop = c->host->batch_alloc(c->op, sizeof(double) * (n + 1));
  rs_scored_item_t *items =
      c->host->batch_alloc(c->op, sizeof(rs_scored_item_t) * (n + 1));
  rs_recommendation_t *out = c->host->batch_alloc(c->op, sizeof(*out));
  if (!order || !prop || !items || !out)
    return RS_ENOMEM;
  uint32_t *greedy = order + n + 1;
  c->arm_user = r->user;
  if (c->arm_owner == ARMS_USER &&
      (rc = uarm_load(c, p->partition, r->user, r->user_len)))
    return rc; /* one read for all the candidates */
  for (uint32_t j = 0; j < n; j++) {
    if ((rc = get_arm(c, r->items[j].item, r->items[j].item_len, &c->arms[j])))
      return rc;
    c->arms[j].score = r->items[j].score;
  }
  double plist = 1;
  uint32_t dim = 0;
  if (c->policy == BR_LINUCB) {
    if ((rc = linucb_choose(c, p->partition, r, slots, order, prop, greedy,
                            &dim)))
      return rc;
  } else {
    br_rng_t rng;
    br_rng_seed(&rng, c->host->random(c->op, r->impression_id,
                                      r->impression_id_len, rec->src_offset,
                                      STREAM_BANDIT + rec->src_ordinal));
    plist = br_choose(&pol, c->arms, n, slots, &rng, order, prop, greedy, NULL,
                      c->work);
  }
  int is_greedy = 1;
  size_t need = IMP_HDR + (size_t)r->user_len;
  for (uint32_t s = 0; s < slots; s++) {
    is_greedy &= order[s] == greedy[s];
    items[s] = r->items[order[s]];
    items[s].propensity = prop[s];
    need += SLOT_HDR + (size_t)items[s].item_len + 4 * (size_t)dim;
  }
  *out = *r;
  out->items = items;
  out->n_items = slots;
  rs_record_t o = *rec;
  o.payload = out;
  o.src_ordinal = (*ord)++;
  if ((rc = c->host->emit(c->op, PORT_RECS, &o)))
    return rc;
  c->host->counter_add(c->c_imp, 1);
  if (!is_greedy)
    c->host->counter_add(c->c_explored, 1);

  /* The impression, for joins and the close. */
  if (grow(c, (void **)&c->buf, &c->buf_cap, need, 1))
    return RS_ENOMEM;
  unsigned char *b = c->buf;
  memset(b, 0, IMP_HDR);
  b[0] = BR_VERSION;
  b[1] = is_greedy ? 1 : 0;
  uint16_t s16 = (uint16_t)slots;
  memcpy(b + 2, &s16, 2);
  memcpy(b + 4, &r->user_len, 4);
  memcpy(b + 8, &r->timestamp_ms, 8);
  memcpy(b + 16, &plist, 8);
  memcpy(b + 28, &dim, 4);
  memcpy(b + IMP_HDR, r->user, r->user_len);
  size_t off = IMP_HDR + r->user_len;
  for (uint32_t s = 0; s < slots; s++) {
    memset(b + off, 0, SLOT_HDR);
    memcpy(b + off, &items[s].item_len, 4);
    memcpy(b + off + 8, &prop[s], 8);
    memcpy(b + off + 24, &items[s].score, 8);
    memcpy(b + off + SLOT_HDR, items[s].item, items[s].item_len);
    off += SLOT_HDR + items[s].item_len;
    if (dim) {
      memcpy(b + off, c->feat + (size_t)order[s] * dim, 4 * (size_t)dim);
      off += 4 * (size_t)dim;
    }
  }
  if ((rc = make_key(c, 'm', r->impression_id, r->impression_id_len)) ||
      (rc = c->host->state_put(c->op, p->partition, c->key,
                               1 + (size_t)r->impression_id_len, b, off)))
    return rc;
  if ((rc = heap_push(c, p, plus_window(c, r->timestamp_ms), c->key,
                      1 + r->impression_id_len)))
    return rc;

  /* The user's latest impressions, for feedback without an id. */
  if ((rc = make_key(c, 'u', r->user, r->user_len)))
    return rc;
  void *v;
  size_t n_old = 0;
  unsigned char ubuf[1 + USER_MAX * (2 + 256)];
  size_t ulen = 1;
  ubuf[0] = 0;
  if (r->impression_id_len <= 256) {
    ubuf[0] = 1;
    uint16_t l16 = (uint16_t)r->impression_id_len;
    memcpy(ubuf + 1, &l16, 2);
    memcpy(ubuf + 3, r->impression_id, l16);
    ulen = 3 + (size_t)l16;
  }
  rc = c->host->state_get(c->op, p->partition, c->key, 1 + (size_t)r->user_len,
                          &v, &n_old);
  if (rc && rc != RS_ENOENT)
    return rc;
  if (rc == 0 && n_old >= 1) {
    const unsigned char *u = v;
    size_t pos = 1;
    for (unsigned k = 0; k < u[0] && ubuf[0] < USER_MAX; k++) {
      uint16_t l;
      if (pos + 2 > n_old)
        return corrupt(c, "user impressions");
      memcpy(&l, u + pos, 2);
      if (l > 256 || pos + 2 + l > n_old)
        return corrupt(c, "user impressions");
      memcpy(ubuf + ulen, u + pos, 2 + (size_t)l);
      ulen += 2 + (size_t)l;
      pos += 2 + (size_t)l;
      ubuf[0]++;
    }
  }
  if ((rc = c->host->state_put(c->op, p->partition, c->key,
                               1 + (size_t)r->user_len, ubuf, ulen)))
    return rc;
  return take_early(c, p, rec, ord, r->impression_id, r->impression_id_len);
}

/* Loads impression id into c->buf; the slot showing item or -1. 1 if the
 * impression exists. */
static int load_impression(br_ctx_t *c, int32_t partition, const char *id,
                           uint32_t id_len, const char *item, uint32_t item_len,
                           size_t *n_out, int *slot, size_t *slot_off) {
  int rc = make_key(c, 'm', id, id_len);
  if (rc)
    return rc;
  void *v;
  size_t n;
  rc = c->host->state_get(c->op, partition, c->key, 1 + (size_t)id_len, &v, &n);
  if (rc == RS_ENOENT)
    return 0;
  if (rc)
    return rc;
  if (grow(c, (void **)&c->buf, &c->buf_cap, n, 1))
    return RS_ENOMEM;
  memcpy(c->buf, v, n);
  const unsigned char *b = c->buf;
  if (n < IMP_HDR || (b[0] != BR_VERSION && b[0] != 1))
    return corrupt(c, "impression");
  size_t sh = b[0] == 1 ? SLOT_HDR1 : SLOT_HDR;
  uint16_t slots;
  uint32_t ulen, dim;
  memcpy(&slots, b + 2, 2);
  memcpy(&ulen, b + 4, 4);
  memcpy(&dim, b + 28, 4);
  size_t off = IMP_HDR + (size_t)ulen;
  *slot = -1;
  for (uint16_t s = 0; s < slots; s++) {
    uint32_t il;
    if (off + sh > n)
      return corrupt(c, "impression slot");
    memcpy(&il, b + off, 4);
    if (off + sh + il > n)
      return corrupt(c, "impression slot");
    if (off + sh + il + 4 * (size_t)dim > n)
      return corrupt(c, "impression slot");
    if (il == item_len && !memcmp(b + off + sh, item, il)) {
      *slot = s;
      *slot_off = off;
      break;
    }
    off += sh + il + 4 * (size_t)dim;
  }
  *n_out = n;
  return 1;
}

static int unmatched(br_ctx_t *c, const rs_record_t *rec, uint32_t *ord,
                     rs_counter_t *ctr) {
  c->host->counter_add(ctr, 1);
  rs_record_t o = *rec;
  o.src_ordinal = (*ord)++;
  return c->host->emit(c->op, PORT_UNMATCHED, &o);
}

static int keep_early(br_ctx_t *c, br_part_t *p, const rs_record_t *rec,
                      uint32_t *ord);

/* may_wait: feedback naming an impression not in state waits for it
 * (keep_early) instead of being unmatched at once. */
static int on_feedback(br_ctx_t *c, br_part_t *p, const rs_record_t *rec,
                       uint32_t *ord, int may_wait) {
  const rs_feedback_t *fb = rec->payload;
  size_t n = 0, soff = 0;
  int slot = -1, found = 0, rc;
  const char *id = fb->impression_id;
  uint32_t id_len = fb->impression_id_len;
  uint32_t flags = 0;
  char idbuf[256];
  if (id && id_len) {
    if ((found = load_impression(c, p->partition, id, id_len, fb->item,
                                 fb->item_len, &n, &slot, &soff)) < 0)
      return found;
  } else {
    /* By user + item: the newest of the user's latest impressions that
     * showed the item. */
    flags |= RS_REWARD_F_JOINED_BY_ITEM;
    if ((rc = make_key(c, 'u', fb->user, fb->user_len)))
      return rc;
    void *v;
    size_t un;
    rc = c->host->state_get(c->op, p->partition, c->key,
                            1 + (size_t)fb->user_len, &v, &un);
    if (rc && rc != RS_ENOENT)
      return rc;
    unsigned char ubuf[1 + USER_MAX * (2 + 256)];
    if (rc == 0) {
      if (un > sizeof ubuf || un < 1)
        return corrupt(c, "user impressions");
      memcpy(ubuf, v, un);
      size_t pos = 1;
      for (unsigned k = 0; k < ubuf[0] && !found; k++) {
        uint16_t l;
        if (pos + 2 > un)
          return corrupt(c, "user impressions");
        memcpy(&l, ubuf + pos, 2);
        if (l > sizeof idbuf || pos + 2 + l > un)
          return corrupt(c, "user impressions");
        memcpy(idbuf, ubuf + pos + 2, l);
        id = idbuf;
        id_len = l;
        if ((rc = load_impression(c, p->partition, id, id_len, fb->item,
                                  fb->item_len, &n, &slot, &soff)) < 0)
          return rc;
        found = rc == 1 && slot >= 0;
        pos += 2 + (size_t)l;
      }
    }
  }
  if (!found && may_wait && !(flags & RS_REWARD_F_JOINED_BY_ITEM))
    return keep_early(c, p, rec, ord);
  if (!found || slot < 0)
    return unmatched(c, rec, ord, c->c_unmatched);
  unsigned char *b = c->buf;
  int64_t imp_ms;
  memcpy(&imp_ms, b + 8, 8);
  if (fb->timestamp_ms > plus_window(c, imp_ms))
    return unmatched(c, rec, ord, c->c_late);
  double reward = fb->value, prev;
  memcpy(&prev, b + soff + 16, 8);
  if (b[soff + 4]) {
    c->host->counter_add(c->c_dup, 1);
    if (c->duplicates == 0)
      return 0;
    flags |= RS_REWARD_F_SUM;
  } else {
    uint32_t matched;
    memcpy(&matched, b + 24, 4);
    matched++;
    memcpy(b + 24, &matched, 4);
    b[soff + 4] = 1;
    prev = 0;
  }
  double sum = prev + reward;
  memcpy(b + soff + 16, &sum, 8);
  double prop;
  memcpy(&prop, b + soff + 8, 8);
  if ((rc = make_key(c, 'm', id, id_len)) ||
      (rc = c->host->state_put(c->op, p->partition, c->key, 1 + (size_t)id_len,
                               b, n)))
    return rc;
  if (fb->type == RS_FEEDBACK_CLICK)
    c->host->counter_add(c->c_clicks, 1);
  rs_reward_t r = {.user = fb->user,
                   .user_len = fb->user_len,
                   .impression_id = batch_dup(c, id, id_len),
                   .impression_id_len = id_len,
                   .item = fb->item,
                   .item_len = fb->item_len,
                   .position = slot,
                   .flags = flags,
                   .type = fb->type,
                   .reward = reward,
                   .propensity = prop,
                   .impression_ms = imp_ms,
                   .timestamp_ms = fb->timestamp_ms};
  if (!r.impression_id)
    return RS_ENOMEM;
  return emit_reward(c, rec, ord, &r);
}

/* ------------------------------------------------ early feedback */

/* Feedback whose impression is not in state (yet: the two inputs are not
 * ordered with each other) waits under "f" + impression id:
 *   0 u8 version 1 | 1 u8 count | 2 6 x 0 | 8 i64 deadline (the first
 *   record's time + reward_window) | then per record: u32 user length |
 *   u32 item length | i32 type | u32 0 | f64 value | i64 time | user | item.
 * The impression's arrival joins them (take_early); the watermark passing
 * the deadline makes them unmatched (expire_early). */
#define PEND_REC 32

static int keep_early(br_ctx_t *c, br_part_t *p, const rs_record_t *rec,
                      uint32_t *ord) {
  const rs_feedback_t *fb = rec->payload;
  int rc = make_key(c, 'f', fb->impression_id, fb->impression_id_len);
  if (rc)
    return rc;
  size_t klen = 1 + (size_t)fb->impression_id_len;
  void *v;
  size_t n = 0;
  rc = c->host->state_get(c->op, p->partition, c->key, klen, &v, &n);
  if (rc && rc != RS_ENOENT)
    return rc;
  int fresh = rc == RS_ENOENT;
  if (!fresh && (n < PEND_HDR || ((unsigned char *)v)[0] != 1))
    return corrupt(c, "early feedback");
  if (!fresh && ((unsigned char *)v)[1] >= PEND_MAX)
    return unmatched(c, rec, ord, c->c_unmatched);
  size_t add = PEND_REC + (size_t)fb->user_len + fb->item_len;
  if (grow(c, (void **)&c->buf2, &c->buf2_cap, (fresh ? PEND_HDR : n) + add, 1))
    return RS_ENOMEM;
  unsigned char *b = c->buf2;
  if (fresh) {
    memset(b, 0, PEND_HDR);
    b[0] = 1;
    int64_t deadline = plus_window(c, fb->timestamp_ms);
    memcpy(b + 8, &deadline, 8);
    n = PEND_HDR;
  } else {
    memcpy(b, v, n);
  }
  b[1]++;
  unsigned char *e = b + n;
  int32_t type = fb->type;
  memset(e, 0, PEND_REC);
  memcpy(e, &fb->user_len, 4);
  memcpy(e + 4, &fb->item_len, 4);
  memcpy(e + 8, &type, 4);
  memcpy(e + 16, &fb->value, 8);
  memcpy(e + 24, &fb->timestamp_ms, 8);
  memcpy(e + PEND_REC, fb->user, fb->user_len);
  memcpy(e + PEND_REC + fb->user_len, fb->item, fb->item_len);
  if ((rc = c->host->state_put(c->op, p->partition, c->key, klen, b, n + add)))
    return rc;
  c->host->counter_add(c->c_early, 1);
  if (fresh) {
    int64_t deadline;
    memcpy(&deadline, b + 8, 8);
    return heap_push(c, p, deadline, c->key, (uint32_t)klen);
  }
  return 0;
}

/* Takes "f" + id out of state and hands each record kept there, as a
 * feedback record positioned at src, to on_feedback (join = 1) or to the
 * unmatched port (join = 0). */
static int drain_early(br_ctx_t *c, br_part_t *p, const rs_record_t *src,
                       uint32_t *ord, const char *id, uint32_t id_len, int join,
                       int64_t wm) {
  int rc = make_key(c, 'f', id, id_len);
  if (rc)
    return rc;
  size_t klen = 1 + (size_t)id_len;
  void *v;
  size_t n;
  rc = c->host->state_get(c->op, p->partition, c->key, klen, &v, &n);
  if (rc == RS_ENOENT)
    return 0;
  if (rc)
    return rc;
  /* The records outlive this function (emitted): batch memory. */
  unsigned char *b = c->host->batch_alloc(c->op, n ? n : 1);
  char *idc = batch_dup(c, id, id_len);
  if (!b || !idc)
    return RS_ENOMEM;
  memcpy(b, v, n);
  if (n < PEND_HDR || b[0] != 1)
    return corrupt(c, "early feedback");
  int64_t deadline;
  memcpy(&deadline, b + 8, 8);
  if (!join && deadline >= wm)
    return 0; /* a newer entry under the same id: its own agenda entry */
  if ((rc = c->host->state_delete(c->op, p->partition, c->key, klen)))
    return rc;
  size_t off = PEND_HDR;
  for (unsigned k = 0; k < b[1]; k++) {
    rs_feedback_t *fb = c->host->batch_alloc(c->op, sizeof(*fb));
    if (!fb)
      return RS_ENOMEM;
    uint32_t ul, il;
    int32_t type;
    if (off + PEND_REC > n)
      return corrupt(c, "early feedback");
    memcpy(&ul, b + off, 4);
    memcpy(&il, b + off + 4, 4);
    if (off + PEND_REC + (size_t)ul + il > n)
      return corrupt(c, "early feedback");
    memcpy(&type, b + off + 8, 4);
    *fb = (rs_feedback_t){.user = (const char *)b + off + PEND_REC,
                          .user_len = ul,
                          .impression_id = idc,
                          .impression_id_len = id_len,
                          .item = (const char *)b + off + PEND_REC + ul,
                          .item_len = il,
                          .type = type};
    memcpy(&fb->value, b + off + 16, 8);
    memcpy(&fb->timestamp_ms, b + off + 24, 8);
    off += PEND_REC + (size_t)ul + il;
    rs_record_t r = {.kind = RS_KIND_FEEDBACK,
                     .key = fb->user,
                     .key_len = ul,
                     .payload = fb,
                     .timestamp_ms = fb->timestamp_ms,
                     .src_partition = src->src_partition,
                     .src_ordinal = *ord,
                     .src_offset = src->src_offset};
    rc = join ? on_feedback(c, p, &r, ord, 0)
              : unmatched(c, &r, ord, c->c_unmatched);
    if (rc)
      return rc;
  }
  return 0;
}

static int take_early(br_ctx_t *c, br_part_t *p, const rs_record_t *src,
                      uint32_t *ord, const char *id, uint32_t id_len) {
  if (!p->early[early_bucket(id, id_len)])
    return 0; /* nothing waits under an id of this bucket (br_part_t) */
  return drain_early(c, p, src, ord, id, id_len, 1, INT64_MIN);
}

static int expire_early(br_ctx_t *c, int32_t partition, const rs_record_t *src,
                        uint32_t *ord, const char *id, uint32_t id_len,
                        int64_t wm) {
  br_part_t *p = NULL;
  for (size_t i = 0; i < c->n_parts && !p; i++)
    if (c->parts[i].partition == partition)
      p = &c->parts[i];
  return p ? drain_early(c, p, src, ord, id, id_len, 0, wm) : RS_EINVAL;
}

static const char *check(const rs_record_t *rec, uint32_t input, char *buf,
                         size_t n) {
  uint32_t want = input == 0 ? RS_KIND_RECOMMENDATION : RS_KIND_FEEDBACK;
  if (rec->kind != want || !rec->payload) {
    snprintf(buf, n,
             "bandit_reward input %" PRIu32 " expects %s records (kind %" PRIu32
             "), got kind %" PRIu32,
             input, input == 0 ? "recommendation" : "feedback", want,
             rec->kind);
    return buf;
  }
  if (input == 0) {
    const rs_recommendation_t *r = rec->payload;
    if (!r->user || !r->impression_id || !r->impression_id_len ||
        (r->n_items && !r->items) || r->impression_id_len > 65535)
      return "recommendation without user or impression id";
    for (uint32_t j = 0; j < r->n_items; j++)
      if (!r->items[j].item || !isfinite(r->items[j].score))
        return "recommendation item without id or with a score that is not "
               "finite";
    return NULL;
  }
  const rs_feedback_t *f = rec->payload;
  if (!f->user || !f->user_len || !f->item || !f->item_len ||
      !isfinite(f->value))
    return "feedback without user or item, or with a value that is not finite";
  /* The codec's bounds (record.h), for feedback that did not come through
   * it (plugins): a huge reward would swamp the arm statistics for good. */
  const char *why =
      rs_bounds_problem("feedback", f->timestamp_ms, 1, f->value, buf, n);
  if (why)
    return why;
  if (f->impression_id_len > 256)
    return "feedback impression_id longer than 256 bytes";
  return NULL;
}

static int br_process(rs_op_t *op, void *vctx, const rs_batch_t *batch) {
  br_ctx_t *c = vctx;
  if (batch->partition < 0)
    return RS_EINVAL;
  br_part_t *p;
  int rc = part_of(c, batch->partition, &p);
  if (rc)
    return rc;
  char why[192];
  for (size_t k = 0; k < batch->count; k++) {
    const rs_record_t *rec = &batch->records[k];
    uint32_t ord = rec->src_ordinal;
    const char *bad = check(rec, batch->input, why, sizeof why);
    if (bad) {
      rc = c->host->dead_letter(op, rec, bad);
      if (rc < 0)
        return rc;
      continue;
    }
    if (batch->input == 0)
      rc = on_recommendation(c, p, rec, &ord);
    else
      rc = on_feedback(c, p, rec, &ord, 1);
    if (!rc)
      rc = advance(c, p, rec, &ord, rec->timestamp_ms);
    if (rc) {
      c->host->log(op, RS_LOG_ERROR, "bandit_reward failed: %s",
                   rs_strerror(rc));
      part_clear(c, p); /* ahead of the state: rebuilt if processing resumes */
      return rc;
    }
  }
  if ((rc = part_store(c, p)))
    part_clear(c, p);
  return rc;
}

static int br_init(rs_op_t *op, void *vctx, const rs_host_api_t *host,
                   char *errstr, size_t errstr_size) {
  br_ctx_t *c = vctx;
  c->op = op;
  c->host = host;
  if (c->policy < 0 || c->policy > BR_LINUCB || c->duplicates < 0 ||
      c->duplicates > 1 || c->thompson_model < 0 || c->thompson_model > 1)
    return rs_seterr(errstr, errstr_size, RS_ECONFIG, "bad enum value");
  c->residual = c->policy == BR_THOMPSON && c->thompson_model == 1;
  if (!RS_HOST_HAS(host, state_counter_add))
    return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                     "bandit_reward needs a host with ABI minor 1");
  if (c->policy == BR_LINUCB) {
    if (!RS_HOST_HAS(host, peer_open) || !RS_HOST_HAS(host, peer_state_get))
      return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                       "policy linucb needs a host with ABI minor 2 (peer "
                       "state reads)");
    c->peer = host->peer_open(op, c->model);
    if (c->peer < 0)
      return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                       "model: no operator named '%s' in the graph (linucb "
                       "reads its user and item factors)",
                       c->model);
  }
  c->c_imp = host->counter(op, "impressions", "Recommendations emitted");
  c->c_rebuilt = host->counter(op, "agenda_rebuilds",
                               "Partition agendas rebuilt from state");
  c->c_early = host->counter(op, "early_feedback",
                             "Feedback kept waiting for its impression");
  c->c_rewards = host->counter(op, "rewards", "Reward records emitted");
  c->c_clicks = host->counter(op, "clicks", "CLICK feedback joined");
  c->c_default =
      host->counter(op, "default_rewards", "Impressions closed unrewarded");
  c->c_unclicked = host->counter(op, "unclicked_slots",
                                 "Slots closed without feedback, emitted on "
                                 "port unclicked");
  c->c_dup = host->counter(op, "duplicates", "Repeated feedback per item");
  c->c_late = host->counter(op, "late_feedback",
                            "Feedback after its impression's reward_window");
  c->c_unmatched = host->counter(op, "unmatched_feedback",
                                 "Feedback naming no open impression");
  c->c_explored =
      host->counter(op, "explored", "Impressions that differ from greedy");
  c->c_ips_n = host->counter(op, "ips_impressions",
                             "Closed impressions in the IPS estimates");
  c->c_ips_wr =
      host->counter(op, "ips_weighted_reward_micro",
                    "Sum of w*R (x1e6); IPS = this / ips_impressions / 1e6");
  c->c_ips_w =
      host->counter(op, "ips_weight_micro",
                    "Sum of w (x1e6); SNIPS = ips_weighted_reward / this");
  c->c_ua_evicted =
      host->counter(op, "user_arms_evicted",
                    "arms user: arms evicted from full user records");
  c->c_ua_migrated =
      host->counter(op, "user_arms_migrated",
                    "arms user: per-pair entries of the old layout moved into "
                    "user records");
  void *v;
  size_t n;
  int rc = host->state_get(op, RS_PARTITION_SHARED, "e", 1, &v, &n);
  if (rc == 0 && n == sizeof c->est)
    memcpy(c->est, v, sizeof c->est);
  else if (rc != 0 && rc != RS_ENOENT)
    return rs_seterr(errstr, errstr_size, rc, "reading estimates: %s",
                     rs_strerror(rc));
  return 0;
}

static void br_destroy(rs_op_t *op, void *vctx) {
  br_ctx_t *c = vctx;
  (void)op;
  for (size_t i = 0; i < c->n_parts; i++) {
    part_clear(c, &c->parts[i]);
    c->host->free(c->parts[i].heap);
    c->host->free(c->parts[i].early);
  }
  c->host->free(c->parts);
  c->host->free(c->buf);
  c->host->free(c->buf2);
  c->host->free(c->lin_mem);
  c->host->free(c->feat);
  c->host->free(c->ucb);
  c->host->free(c->key);
  c->host->free(c->arms);
  c->host->free(c->work);
  c->host->free(c->ua);
  c->host->free(c->ua_val);
  c->host->free(c->ua_out);
  c->host->free(c->mig);
}

extern const rs_operator_def_t rs_op_bandit_reward;
const rs_operator_def_t rs_op_bandit_reward = {
    .abi_version = RS_ABI_VERSION,
    .struct_size = sizeof(rs_operator_def_t),
    .name = "bandit_reward",
    .description =
        "Explores over topn_emit's ranked candidates (epsilon-greedy or "
        "Thompson sampling) and emits the shown list with true propensities "
        "on `recommendations`; joins feedback (second input) with the "
        "impressions by impression id or user + item within reward_window, "
        "emits rewards (default_reward when the window closes without "
        "feedback) on `rewards`, and keeps IPS/SNIPS estimates of the greedy "
        "policy.",
    .ctx_size = sizeof(br_ctx_t),
    .options = br_options,
    .n_options = RS_ARRAY_SIZE(br_options),
    .output_ports = br_ports,
    .min_inputs = 1,
    .max_inputs = 2,
    .init = br_init,
    .process = br_process,
    .on_timer = NULL,
    .checkpoint = NULL,
    .destroy = br_destroy,
};
