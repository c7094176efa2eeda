/* The built-in `topn_emit` operator: turns the records mf_update emits
 * (RS_KIND_MF_UPDATE: the interaction and the user's vector after it) into
 * top-N recommendation records (RS_KIND_RECOMMENDATION,
 * schemas/recommendation.avsc), DESIGN.md section 1.
 *
 * Where the model comes from. The item factors, biases, counts and
 * time-decayed popularity are mf_update's; rs_mf_update_t carries only the
 * user's side. They are read in place from the mf_update instance named
 * by option `model`: host->peer_context (ABI minor 3) lends its context
 * and rs__mf_view (operators/mf_update/mf_update.h) its dense, aligned
 * item matrix (n_items rows of kp floats, zero padded) and per-item
 * arrays, which mf_update writes through to its state on every change.
 * So there is no copy to keep coherent: every score is the model's as of
 * the record being served, including items bpr moved as sampled
 * negatives (which no record names), and a whole-catalogue scan is a
 * sequential pass over one float matrix (about 4 ns per item at k = 8)
 * instead of a state lookup per item (about 110 ns). The view is asked
 * for again per record (the arrays move as the catalogue grows). A
 * `model` that is not an mf_update instance fails init(). Item names
 * ("r" + BE32 id) are read through peer_state_get once per item and kept
 * (an id's name never changes while the model lives; the names are
 * dropped when another model instance is seen, see tn_ctx_t): 20 state
 * lookups per list were a third of the operator's time at n = 20.
 * mf_update's user record ("u" + user: events at 8, bias at 16, vector at
 * 32, for the session trigger) is read through peer_state_get.
 *
 * Inputs: mf_update's records (RS_KIND_MF_UPDATE), and optionally, as a
 * second input, sessionize's `sessions` port (RS_KIND_SESSION); anything
 * else is dead-lettered. A closed session emits a list for its user
 * (trigger 's'), scored with the user's vector from mf_update's
 * partition-local user record ("u" + user: events at 8, bias at 16,
 * vector at 32; cold below the model record's min_user_events); it does
 * not change history. `on_interaction: false` leaves interactions only
 * steps 1-3 below. min_interval applies to both triggers.
 *
 * Per mf_update record:
 *  1. history: the item goes to the end of the user's consumed list
 *     (distinct items, oldest dropped beyond `history`);
 *  2. co-visitation: for each of the user's `recent_items` latest earlier
 *     items j, the pair (item, j) is counted in both items' neighbour
 *     lists, each bounded at `neighbours` entries by Space-Saving (a full
 *     list replaces its smallest entry by the new neighbour with that
 *     count + 1), so memory per item is fixed and heavy pairs stay;
 *  3. popularity: the item's pop_log (mf_update's, monotone in the item's
 *     events, comparable across items at any time) updates a top list of
 *     `popular` items: exact, since an item's rank can rise only when one
 *     of its events arrives, which passes through here;
 *  4. trigger: an emission unless `min_interval` > 0 and the user's last
 *     emission is less than min_interval of event time before this record
 *     (then counted as `suppressed`; the next record after the interval
 *     emits the then-latest list: there are no event-time timers yet, see
 *     NOTES.md);
 *  5. candidates: the whole catalogue if it has fewer than
 *     `exact_scan_below` items, else the neighbours of the recent items
 *     plus the popular list (at most recent_items * neighbours + popular,
 *     whatever the catalogue size); consumed items are excluded; exact
 *     scores as mf_update computes them (isgd <p,q>; bpr <p,q> + bias +
 *     score_log_count * ln(count); explicit mean + user bias + item bias
 *     + <p,q>, unclipped; bpr and isgd plus explore * |p| /
 *     sqrt(1 + count) when `explore` > 0); ties broken by lower internal
 *     id. A cold user
 *     (RS_MF_F_COLD) gets the popular list by popularity (RS_REC_F_POPULAR).
 *  6. output: key = the user, impression id = 16 hex digits of
 *     host->random(user, offset) + "-", the trigger ('i' or 's'), then
 *     partition "." offset "." ordinal of the input (unique per input
 *     position and trigger, deterministic), propensity 1
 *     for every slot (greedy; exploration comes with bandit_reward).
 *
 * State (this operator's), integers little-endian:
 *  user (partition), "u" + user: 0 1 version (1), 1 3 reserved, 4 4 n,
 *     8 8 last emission event time (INT64_MIN: never), 16 4n item ids
 *     oldest first. Not kept with history 0 and min_interval 0 (nothing
 *     in it could change an output; user_kept()).
 *  last list (partition), "l" + user: 0 1 version (1), 1 1 flags (1: the
 *     popular list of a cold user; 0 in lists written before the flag),
 *     2 2 impression id length L, 4 4 n, 8 8 event time, 16 8 model
 *     version, 24 L impression id, then n x (4 item id, 4 score binary32).
 *  neighbours (shared), "c" + BE32 item id: entries of (4 item id,
 *     4 count) with no header.
 *  popular list (shared), "p": entries of (4 item id, 8 pop_log binary64),
 *     kept in memory (loaded in init()) and written by checkpoint() when
 *     it changed, with the offsets it reflects (not on every change).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operators/mf_update/mf_kernel.h"
#include "operators/mf_update/mf_update.h"
#include "recstream/operator.h"

#define TN_LAYOUT 1
#define MF_LAYOUT 1
#define USER_HDR 16
#define LAST_HDR 24
#define NO_ITEM UINT32_MAX
#define STREAM_IMP UINT64_C(0x494d5052)
#define IMP_MAX 96

typedef struct pop_entry {
  uint32_t item;
  double pop_log;
} pop_entry_t;

typedef struct cand {
  uint32_t item;
  float score;
} cand_t;

typedef struct tn_ctx {
  /* Options. */
  char *model;
  int64_t n;
  int64_t min_interval_ms;
  int64_t recent;
  int64_t neighbours;
  int64_t popular;
  int64_t history;
  int64_t exact_scan_below;
  int on_interaction;
  double explore;

  rs_op_t *op;
  const rs_host_api_t *host;
  int peer;

  pop_entry_t *pop;
  uint32_t n_pop;

  /* The model: mf_update's context (host->peer_context) and its view
   * (rs__mf_view), refreshed per record: the item matrix, biases, counts
   * and popularity are read in place, never copied. */
  void *mf;
  rs_mf_view_t mv;
  int pop_dirty; /* the popular list differs from state "p" */
  /* ln(count) per item for bpr's score_log_count term, with the count it
   * was computed for (recomputed when mf_update's count moved): a log per
   * scored item cost as much as the rest of the score. */
  double *lc;
  int64_t *lc_n;
  size_t lc_items;
  /* explore: 1 / sqrt(1 + count) per item (same cache, same counts), and
   * explore * |u| of the user being scored. */
  double *eb;
  double eb_user;

  /* Item names ("r" + BE32 id in the model's state), cached as read: an
   * id's name never changes while the model lives (mf_update only appends
   * ids), so an emission reads each name from state once per process
   * instead of once per list. names_at[id] is 1 + the name's offset in
   * names (0: not read yet), names_len[id] its length. Dropped whenever
   * the model is not the instance they were read from (rs_mf_view_t
   * instance: a restarted model may give an id to another name). */
  char *names;
  size_t names_n, names_cap;
  uint32_t *names_at, *names_len;
  size_t names_items;
  uint64_t names_instance; /* 0: none read yet */

  const char *variant; /* host->variant, "" outside experiments */
  uint32_t variant_len;
  /* Scratch, grown with host->realloc. */
  unsigned char *ubuf; /* user record */
  size_t ubuf_cap;
  uint32_t *cands;
  size_t cands_cap;
  uint32_t *hist_sorted;
  size_t hist_cap;
  unsigned char *nbuf; /* a neighbour list */
  size_t nbuf_cap;
  cand_t *top; /* the N best, a min-heap on (score, -item) */
  char *key;
  size_t key_cap;
  float *uvec; /* a user vector read from the model (session trigger) */
  size_t uvec_cap;
  void *upad_mem; /* the scoring vector: kp floats, zero padded, aligned */
  float *upad;
  uint32_t upad_kp;

  rs_counter_t *c_emit, *c_supp, *c_cands, *c_exact, *c_pop, *c_impr;
} tn_ctx_t;

static const rs_option_def_t tn_options[] = {
    {RS_OPT_STRING, "model", "mf", offsetof(tn_ctx_t, model), 0, -1,
     RS_OPT_PEER("mf_update"),
     "Name (the `name:` in the config) of the mf_update operator whose item "
     "factors, biases and popularity are read (read-only) to score items."},
    {RS_OPT_INT, "n", "10", offsetof(tn_ctx_t, n), 1, 1000, NULL,
     "Items per recommendation."},
    {RS_OPT_BOOL, "on_interaction", "true", offsetof(tn_ctx_t, on_interaction),
     0, -1, NULL,
     "Emit for every interaction (mf_update record). With false, interactions "
     "only update history, co-visitation and popularity, and closed sessions "
     "(a second input from sessionize's `sessions` port) trigger the "
     "emissions."},
    {RS_OPT_DURATION, "min_interval", "0", offsetof(tn_ctx_t, min_interval_ms),
     0, 1e12, NULL,
     "At most one emission per user per this much event time (0: one per "
     "interaction). A record inside the interval updates history and "
     "neighbours but emits nothing; the next record after it emits the "
     "latest list."},
    {RS_OPT_INT, "recent_items", "5", offsetof(tn_ctx_t, recent), 0, 64, NULL,
     "The user's latest consumed items whose co-visitation neighbours are "
     "candidates (and which are paired with each new item)."},
    {RS_OPT_INT, "neighbours", "20", offsetof(tn_ctx_t, neighbours), 1, 1024,
     NULL,
     "Co-visitation neighbours kept per item (Space-Saving: the heaviest "
     "pairs stay)."},
    {RS_OPT_INT, "popular", "50", offsetof(tn_ctx_t, popular), 0, 10000, NULL,
     "Most popular items (time-decayed, as mf_update counts them) kept as "
     "candidates for everyone and as the list for cold users."},
    {RS_OPT_INT, "history", "100", offsetof(tn_ctx_t, history), 0, 100000, NULL,
     "Distinct consumed items kept per user and excluded from their "
     "recommendations (oldest forgotten first)."},
    {RS_OPT_INT, "exact_scan_below", "20000",
     offsetof(tn_ctx_t, exact_scan_below), 0, 1e9, NULL,
     "Catalogues with fewer items than this are scored whole (exact top-N); "
     "larger ones only on the candidates, so the cost per emission stays "
     "bounded."},
    {RS_OPT_DOUBLE, "explore", "0", offsetof(tn_ctx_t, explore), 0, 100, NULL,
     "Optimism for items the model has seen little of (bpr and isgd): "
     "explore * norm(u) / sqrt(1 + count) is added to each item's score, "
     "norm(u) the length of the user's vector and count the item's events "
     "in mf_update, so items with few events can reach the candidates, be "
     "shown and be learned (docs/DEMO.md, \"Exploring the catalogue\"). "
     "0: the model's score alone."},
};

/* ------------------------------------------------------------ helpers */

static uint32_t get_u32(const unsigned char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static void put_u32(unsigned char *p, uint32_t v) {
  memcpy(p, &v, 4);
}
static void put_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

static int grow(tn_ctx_t *c, void **p, size_t *cap, size_t need) {
  if (need <= *cap)
    return 0;
  size_t n = *cap ? *cap : 64;
  while (n < need)
    n *= 2;
  void *q = c->host->realloc(*p, n);
  if (!q)
    return RS_ENOMEM;
  *p = q;
  *cap = n;
  return 0;
}

static int make_key(tn_ctx_t *c, char tag, const char *s, size_t len) {
  int rc = grow(c, (void **)&c->key, &c->key_cap, len + 1);
  if (rc)
    return rc;
  c->key[0] = tag;
  memcpy(c->key + 1, s, len);
  return 0;
}

static int fail(tn_ctx_t *c, int rc, const char *what) {
  c->host->log(c->op, RS_LOG_ERROR, "topn_emit: %s: %s", what, rs_strerror(rc));
  return rc;
}

/* --------------------------------------------------------- the model */

/* Refreshes the view of mf_update's model (cheap: pointers and a few
 * numbers). Needed before every use: the peer's arrays move as it grows,
 * and the context is asked for again so a restarted peer is never read
 * through a stale pointer. */
static int read_model(tn_ctx_t *c) {
  const rs_operator_def_t *def = NULL;
  c->mf = c->host->peer_context(c->op, c->peer, &def);
  if (!c->mf || def != &rs_op_mf_update)
    return RS_ESTATE;
  rs__mf_view(c->mf, &c->mv);
  if (c->names_instance != c->mv.instance) {
    c->names_n = 0;
    if (c->names_items)
      memset(c->names_at, 0, c->names_items * sizeof *c->names_at);
    c->names_instance = c->mv.instance;
  }
  return 0;
}

/* Item `it`'s name (see names in tn_ctx_t): borrowed until the next call
 * (the pool may move). */
static int item_name(tn_ctx_t *c, uint32_t it, const char **name,
                     uint32_t *len) {
  if (it >= c->names_items) {
    size_t cap = c->names_items ? c->names_items : 1024;
    while (cap <= it)
      cap *= 2;
    uint32_t *at = c->host->realloc(c->names_at, cap * sizeof *at);
    if (!at)
      return RS_ENOMEM;
    c->names_at = at;
    uint32_t *ln = c->host->realloc(c->names_len, cap * sizeof *ln);
    if (!ln)
      return RS_ENOMEM;
    c->names_len = ln;
    memset(at + c->names_items, 0, (cap - c->names_items) * sizeof *at);
    c->names_items = cap;
  }
  if (!c->names_at[it]) {
    unsigned char key[5] = {'r'};
    put_be32(key + 1, it);
    void *v;
    size_t n;
    int rc = c->host->peer_state_get(c->op, c->peer, RS_PARTITION_SHARED, key,
                                     5, &v, &n);
    if (rc)
      return rc == RS_ENOENT ? RS_ESTATE : rc;
    if (n > UINT32_MAX || c->names_n + n + 1 > UINT32_MAX)
      return RS_ENOMEM;
    int grc = grow(c, (void **)&c->names, &c->names_cap, c->names_n + n + 1);
    if (grc)
      return grc;
    memcpy(c->names + c->names_n, v, n);
    c->names_at[it] = (uint32_t)c->names_n + 1;
    c->names_len[it] = (uint32_t)n;
    c->names_n += n;
  }
  *name = c->names + c->names_at[it] - 1;
  *len = c->names_len[it];
  return 0;
}

/* Refreshes item `it`'s cached ln(count) and 1 / sqrt(1 + count) when
 * mf_update's count of it moved. */
static inline void count_terms(tn_ctx_t *c, uint32_t it) {
  int64_t n = c->mv.item_count[it];
  if (c->lc_n[it] != n) {
    c->lc_n[it] = n;
    c->lc[it] = n > 0 ? log((double)n) : 0.0;
    c->eb[it] = 1.0 / sqrt(1.0 + (double)(n > 0 ? n : 0));
  }
}

/* bpr's score_log_count * ln(count) of item `it`, cached per count. */
static double log_count_term(tn_ctx_t *c, uint32_t it) {
  count_terms(c, it);
  return c->mv.score_log_count * c->lc[it];
}

/* explore's optimism for item `it` (eb_user: explore * |u|). */
static double explore_term(tn_ctx_t *c, uint32_t it) {
  count_terms(c, it);
  return c->eb_user * c->eb[it];
}

/* Sizes the ln(count) cache to the catalogue; new entries are count 0,
 * ln term 0, which is right for them. */
static int grow_lc(tn_ctx_t *c) {
  size_t n = c->mv.n_items;
  int want = (c->mv.objective == RS_MF_OBJ_BPR && c->mv.score_log_count != 0) ||
             (c->explore > 0 && c->mv.objective != RS_MF_OBJ_EXPLICIT);
  if (!want || n <= c->lc_items)
    return 0;
  size_t cap = c->lc_items ? c->lc_items : 1024;
  while (cap < n)
    cap *= 2;
  double *lc = c->host->realloc(c->lc, cap * sizeof(double));
  if (!lc)
    return RS_ENOMEM;
  c->lc = lc;
  int64_t *ln = c->host->realloc(c->lc_n, cap * sizeof(int64_t));
  if (!ln)
    return RS_ENOMEM;
  c->lc_n = ln;
  double *eb = c->host->realloc(c->eb, cap * sizeof(double));
  if (!eb)
    return RS_ENOMEM;
  c->eb = eb;
  for (size_t i = c->lc_items; i < cap; i++)
    eb[i] = 1.0; /* count 0 */
  memset(c->lc + c->lc_items, 0, (cap - c->lc_items) * sizeof(double));
  memset(c->lc_n + c->lc_items, 0, (cap - c->lc_items) * sizeof(int64_t));
  c->lc_items = cap;
  return 0;
}

/* rs_mf_dot's arithmetic (RS_MF_LANES partial sums over the padded row,
 * combined in its fixed order), so a score is bit for bit mf_update's,
 * but inlined here: the whole-catalogue scan calls it per item. */
static inline float dot_kp(const float *restrict a, const float *restrict b,
                           uint32_t kp) {
  /* Pointers, not 32-bit indices: with indices that may wrap gcc
   * vectorised this as a gather, three times slower. */
  float acc[RS_MF_LANES] = {0};
  for (const float *end = a + kp; a < end; a += RS_MF_LANES, b += RS_MF_LANES)
    for (size_t j = 0; j < RS_MF_LANES; j++)
      acc[j] += a[j] * b[j];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) +
         ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* Item `it`'s exact score as mf_update computes it (its file comment,
 * "Scores"; explicit unclipped), `u` the user vector padded to kp with
 * zeros and aligned like the item rows. */
__attribute__((always_inline)) static inline float
score_item(tn_ctx_t *c, uint32_t it, const float *u, float ubias) {
  const rs_mf_view_t *m = &c->mv;
  float dot = dot_kp(u, m->items + (size_t)it * m->kp, m->kp);
  switch (m->objective) {
  case RS_MF_OBJ_BPR:
    return (float)((double)dot + m->item_bias[it] +
                   (m->score_log_count != 0 ? log_count_term(c, it) : 0.0) +
                   (c->eb_user != 0 ? explore_term(c, it) : 0.0));
  case RS_MF_OBJ_EXPLICIT:
    return (float)(m->global_mean + ubias + m->item_bias[it] + dot);
  default:
    return c->eb_user != 0 ? (float)((double)dot + explore_term(c, it)) : dot;
  }
}

/* ------------------------------------------------------- popularity */

static int put_pop(tn_ctx_t *c) {
  size_t n = (size_t)c->n_pop * 12;
  unsigned char *b = n ? c->host->malloc(n) : NULL;
  if (n && !b)
    return RS_ENOMEM;
  for (uint32_t i = 0; i < c->n_pop; i++) {
    put_u32(b + 12 * i, c->pop[i].item);
    memcpy(b + 12 * i + 4, &c->pop[i].pop_log, 8);
  }
  int rc = c->host->state_put(c->op, RS_PARTITION_SHARED, "p", 1, b, n);
  c->host->free(b);
  return rc;
}

static int pop_before(const pop_entry_t *a, const pop_entry_t *b) {
  return a->pop_log > b->pop_log ||
         (a->pop_log == b->pop_log && a->item < b->item);
}

/* Keeps c->pop sorted best first, at most `popular` entries. */
static int pop_update(tn_ctx_t *c, uint32_t item, double pop_log) {
  if (!c->popular)
    return 0;
  uint32_t i = 0;
  while (i < c->n_pop && c->pop[i].item != item)
    i++;
  pop_entry_t e = {item, pop_log};
  if (i == c->n_pop) {
    if (c->n_pop == (uint32_t)c->popular) {
      if (!pop_before(&e, &c->pop[c->n_pop - 1]))
        return 0;
      i = c->n_pop - 1;
    } else {
      i = c->n_pop++;
    }
  }
  c->pop[i] = e;
  while (i > 0 && pop_before(&c->pop[i], &c->pop[i - 1])) {
    pop_entry_t t = c->pop[i];
    c->pop[i] = c->pop[i - 1];
    c->pop[--i] = t;
  }
  c->pop_dirty = 1; /* written by checkpoint(), with the offsets */
  return 0;
}

static int load_pop(tn_ctx_t *c) {
  void *v;
  size_t n;
  int rc = c->host->state_get(c->op, RS_PARTITION_SHARED, "p", 1, &v, &n);
  if (rc == RS_ENOENT)
    return 0;
  if (rc)
    return rc;
  if (n % 12)
    return RS_ESTATE;
  const unsigned char *b = v;
  for (size_t i = 0; i < n / 12 && c->n_pop < (uint32_t)c->popular; i++) {
    c->pop[c->n_pop].item = get_u32(b + 12 * i);
    memcpy(&c->pop[c->n_pop].pop_log, b + 12 * i + 4, 8);
    c->n_pop++;
  }
  return 0;
}

/* ------------------------------------------------------ co-visitation */

/* Counts neighbour `nb` of item `it` (Space-Saving, see the top). */
static int covisit_add(tn_ctx_t *c, uint32_t it, uint32_t nb) {
  unsigned char key[5] = {'c'};
  put_be32(key + 1, it);
  void *v;
  size_t n = 0;
  int rc = c->host->state_get(c->op, RS_PARTITION_SHARED, key, 5, &v, &n);
  if (rc && rc != RS_ENOENT)
    return rc;
  if (rc == RS_ENOENT)
    n = 0;
  size_t cap = (size_t)c->neighbours;
  if ((rc = grow(c, (void **)&c->nbuf, &c->nbuf_cap, 8 * (cap + 1))))
    return rc;
  if (n % 8)
    n = 0; /* unreadable: start over rather than stop serving */
  if (n > 8 * cap)
    n = 8 * cap; /* `neighbours` was lowered: keep the first ones */
  if (n)
    memcpy(c->nbuf, v, n);
  size_t m = n / 8, at = m, min_at = 0;
  for (size_t i = 0; i < m; i++) {
    if (get_u32(c->nbuf + 8 * i) == nb)
      at = i;
    if (get_u32(c->nbuf + 8 * i + 4) < get_u32(c->nbuf + 8 * min_at + 4))
      min_at = i;
  }
  if (at < m) {
    put_u32(c->nbuf + 8 * at + 4, get_u32(c->nbuf + 8 * at + 4) + 1);
  } else if (m < cap) {
    put_u32(c->nbuf + 8 * m, nb);
    put_u32(c->nbuf + 8 * m + 4, 1);
    m++;
  } else {
    put_u32(c->nbuf + 8 * min_at, nb);
    put_u32(c->nbuf + 8 * min_at + 4, get_u32(c->nbuf + 8 * min_at + 4) + 1);
  }
  return c->host->state_put(c->op, RS_PARTITION_SHARED, key, 5, c->nbuf, 8 * m);
}

/* Appends item `it`'s neighbours to the candidates. */
static int covisit_cands(tn_ctx_t *c, uint32_t it, size_t *nc) {
  unsigned char key[5] = {'c'};
  put_be32(key + 1, it);
  void *v;
  size_t n;
  int rc = c->host->state_get(c->op, RS_PARTITION_SHARED, key, 5, &v, &n);
  if (rc == RS_ENOENT)
    return 0;
  if (rc)
    return rc;
  const unsigned char *b = v;
  for (size_t i = 0; i + 8 <= n; i += 8)
    c->cands[(*nc)++] = get_u32(b + i);
  return 0;
}

/* ------------------------------------------------------------ ranking */

/* Heap order: a is worse than b (lower score, or equal and higher id). */
static int worse(const cand_t *a, const cand_t *b) {
  return a->score < b->score || (a->score == b->score && a->item > b->item);
}

/* Restores the heap (worst at the root) below i in h[0..n). */
static void sift_down(cand_t *h, uint32_t n, uint32_t i) {
  for (;;) {
    uint32_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && worse(&h[l], &h[m]))
      m = l;
    if (r < n && worse(&h[r], &h[m]))
      m = r;
    if (m == i)
      return;
    cand_t t = h[i];
    h[i] = h[m];
    h[m] = t;
    i = m;
  }
}

static void heap_push(cand_t *h, uint32_t *n, uint32_t cap, cand_t x) {
  if (*n == cap) {
    if (!worse(&h[0], &x))
      return;
    h[0] = x;
  } else {
    h[(*n)++] = x;
    for (uint32_t i = *n - 1; i > 0;) {
      uint32_t p = (i - 1) / 2;
      if (!worse(&h[i], &h[p]))
        break;
      cand_t t = h[i];
      h[i] = h[p];
      h[p] = t;
      i = p;
    }
    return;
  }
  sift_down(h, *n, 0);
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* The heap's n entries best first, in place: the worst (the root) goes
 * to the end, n - 1 times (a heapsort, O(n log n) for any n up to the
 * option's 1,000; an insertion sort of the heap's nearly ascending array
 * was quadratic there). `worse` is a total order on them (finite scores,
 * distinct items), so this is the one order any sort gives. */
static void sort_best(cand_t *h, uint32_t n) {
  for (uint32_t k = n; k > 1; k--) {
    cand_t t = h[0];
    h[0] = h[k - 1];
    h[k - 1] = t;
    sift_down(h, k - 1, 0);
  }
}

static int consumed(const uint32_t *sorted, size_t n, uint32_t it) {
  return n && bsearch(&it, sorted, n, sizeof(uint32_t), cmp_u32) != NULL;
}

/* ------------------------------------------------------------ process */

/* Who an emission is for, whatever triggered it. */
typedef struct who {
  const char *user;
  uint32_t user_len;
  uint32_t dim;
  const float *vec; /* NULL: popularity */
  float bias;
  int cold; /* popularity */
  uint64_t version;
  char trigger; /* 'i' interaction, 's' session close: part of the id */
} who_t;

/* Copies the user's k floats into the aligned, zero-padded scoring vector
 * (kp floats, like mf_update's rows, so rs_mf_dot has no tail). */
static int pad_user(tn_ctx_t *c, const float *vec, uint32_t k, uint32_t kp) {
  if (kp > c->upad_kp) {
    void *m = c->host->realloc(c->upad_mem, 4 * (size_t)kp + RS_MF_ALIGN);
    if (!m)
      return RS_ENOMEM;
    c->upad_mem = m;
    c->upad = (float *)(((uintptr_t)m + RS_MF_ALIGN - 1) &
                        ~(uintptr_t)(RS_MF_ALIGN - 1));
    c->upad_kp = kp;
  }
  memcpy(c->upad, vec, 4 * (size_t)k);
  memset(c->upad + k, 0, 4 * ((size_t)kp - k));
  return 0;
}

static int emit(tn_ctx_t *c, int32_t partition, const rs_record_t *rec,
                const who_t *w, const uint32_t *hist, uint32_t nh) {
  int rc = read_model(c);
  if (rc)
    return rc;
  const rs_mf_view_t *m = &c->mv;
  int popular_only = w->cold || !w->vec;
  if (!popular_only && w->dim != m->k) {
    c->host->log(c->op, RS_LOG_ERROR,
                 "topn_emit: user vector of %" PRIu32 " floats, model '%s' "
                 "has k = %" PRIu32,
                 w->dim, c->model, m->k);
    return RS_ESTATE;
  }
  if (!popular_only &&
      ((rc = pad_user(c, w->vec, m->k, m->kp)) || (rc = grow_lc(c))))
    return rc;
  c->eb_user = 0;
  if (!popular_only && c->explore > 0 && m->objective != RS_MF_OBJ_EXPLICIT) {
    double sq = 0;
    for (uint32_t j = 0; j < m->k; j++)
      sq += (double)w->vec[j] * w->vec[j];
    c->eb_user = c->explore * sqrt(sq);
  }
  /* Consumed items, sorted for lookups. */
  if ((rc = grow(c, (void **)&c->hist_sorted, &c->hist_cap,
                 4 * ((size_t)nh + 1))))
    return rc;
  memcpy(c->hist_sorted, hist, 4 * (size_t)nh);
  qsort(c->hist_sorted, nh, 4, cmp_u32);

  uint32_t nt = 0, cap = (uint32_t)c->n;
  int exact = !popular_only && (int64_t)m->n_items < c->exact_scan_below;
  if (exact) {
    /* The whole catalogue, straight from the item matrix; consumed items
     * skipped by walking the sorted history alongside. */
    uint32_t h = 0;
    for (uint32_t it = 0; it < m->n_items; it++) {
      while (h < nh && c->hist_sorted[h] < it)
        h++;
      if (h < nh && c->hist_sorted[h] == it)
        continue;
      cand_t x = {it, score_item(c, it, c->upad, w->bias)};
      /* Ids rise, so once the heap is full an equal score loses too. */
      if (nt == cap && !(x.score > c->top[0].score))
        continue;
      if (isfinite(x.score))
        heap_push(c->top, &nt, cap, x);
    }
    c->host->counter_add(c->c_exact, m->n_items);
  } else {
    size_t nc = 0;
    uint32_t r = nh < (uint32_t)c->recent ? nh : (uint32_t)c->recent;
    size_t need = (size_t)c->n_pop +
                  (popular_only ? 0 : (size_t)r * (size_t)c->neighbours);
    if ((rc = grow(c, (void **)&c->cands, &c->cands_cap, 4 * (need + 1))))
      return rc;
    for (uint32_t i = 0; i < c->n_pop; i++)
      c->cands[nc++] = c->pop[i].item;
    for (uint32_t i = 0; !popular_only && i < r; i++)
      if ((rc = covisit_cands(c, hist[nh - 1 - i], &nc)))
        return rc;
    qsort(c->cands, nc, 4, cmp_u32);
    size_t u = 0;
    for (size_t i = 0; i < nc; i++)
      if (!u || c->cands[i] != c->cands[u - 1])
        c->cands[u++] = c->cands[i];
    nc = u;
    c->host->counter_add(c->c_cands, nc);
    double top_pop = c->n_pop ? c->pop[0].pop_log : 0;
    for (size_t i = 0; i < nc; i++) {
      uint32_t it = c->cands[i];
      if (it >= m->n_items || consumed(c->hist_sorted, nh, it))
        continue;
      cand_t x = {it, popular_only ? (float)exp(m->item_pop_log[it] - top_pop)
                                   : score_item(c, it, c->upad, w->bias)};
      if (isfinite(x.score))
        heap_push(c->top, &nt, cap, x);
    }
  }
  sort_best(c->top, nt);

  /* The record. */
  rs_recommendation_t *rr = c->host->batch_alloc(c->op, sizeof(*rr));
  rs_scored_item_t *items =
      c->host->batch_alloc(c->op, sizeof(*items) * (nt ? nt : 1));
  char *imp = c->host->batch_alloc(c->op, IMP_MAX);
  if (!rr || !items || !imp)
    return RS_ENOMEM;
  uint64_t rnd = c->host->random(c->op, w->user, w->user_len, rec->src_offset,
                                 STREAM_IMP + (uint64_t)w->trigger);
  int il = snprintf(
      imp, IMP_MAX, "%016" PRIx64 "-%c%" PRId32 ".%" PRId64 ".%" PRIu32, rnd,
      w->trigger, rec->src_partition, rec->src_offset, rec->src_ordinal);
  if (il < 0 || il >= IMP_MAX)
    return RS_EINTERNAL;
  for (uint32_t i = 0; i < nt; i++) {
    const char *v;
    uint32_t n;
    if ((rc = item_name(c, c->top[i].item, &v, &n)))
      return rc;
    char *name = c->host->batch_alloc(c->op, n ? n : 1);
    if (!name)
      return RS_ENOMEM;
    memcpy(name, v, n);
    items[i] = (rs_scored_item_t){.item = name,
                                  .item_len = n,
                                  .score = c->top[i].score,
                                  .propensity = 1.0};
  }
  *rr = (rs_recommendation_t){.user = w->user,
                              .user_len = w->user_len,
                              .impression_id = imp,
                              .impression_id_len = (uint32_t)il,
                              .items = items,
                              .n_items = nt,
                              .flags = popular_only ? RS_REC_F_POPULAR : 0,
                              .model_version = w->version,
                              .timestamp_ms = rec->timestamp_ms,
                              .variant = c->variant,
                              .variant_len = c->variant_len};

  /* The last list, for reward joins and queries. */
  size_t ll = LAST_HDR + (size_t)il + 8 * (size_t)nt;
  unsigned char *lb = c->host->batch_alloc(c->op, ll);
  if (!lb)
    return RS_ENOMEM;
  memset(lb, 0, LAST_HDR);
  lb[0] = TN_LAYOUT;
  lb[1] = popular_only ? 1 : 0;
  lb[2] = (unsigned char)il;
  lb[3] = (unsigned char)(il >> 8);
  put_u32(lb + 4, nt);
  memcpy(lb + 8, &rec->timestamp_ms, 8);
  memcpy(lb + 16, &w->version, 8);
  memcpy(lb + LAST_HDR, imp, (size_t)il);
  for (uint32_t i = 0; i < nt; i++) {
    put_u32(lb + LAST_HDR + il + 8 * i, c->top[i].item);
    memcpy(lb + LAST_HDR + il + 8 * i + 4, &c->top[i].score, 4);
  }
  if ((rc = make_key(c, 'l', w->user, w->user_len)) ||
      (rc = c->host->state_put(c->op, partition, c->key, 1 + w->user_len, lb,
                               ll)))
    return rc;

  rs_record_t out = *rec;
  out.kind = RS_KIND_RECOMMENDATION;
  out.payload = rr;
  out.key = w->user;
  out.key_len = w->user_len;
  out.value = NULL;
  out.value_len = 0;
  if ((rc = c->host->emit(c->op, 0, &out)))
    return rc;
  c->host->counter_add(c->c_emit, 1);
  c->host->counter_add(c->c_impr, nt);
  if (popular_only)
    c->host->counter_add(c->c_pop, 1);
  return 0;
}

/* Whether the user record is needed: with history 0 and min_interval 0
 * neither of its parts (consumed items, last emission time) can change an
 * output, so it is neither read nor written (two state lookups per
 * record; the demo's settings). A later start with min_interval > 0 then
 * finds no last emission for these users: their first trigger emits. */
static int user_kept(const tn_ctx_t *c) {
  return c->history > 0 || c->min_interval_ms > 0;
}

/* Loads the user's record into ubuf: history at ubuf + USER_HDR. */
static int load_user(tn_ctx_t *c, int32_t partition, const char *user,
                     uint32_t len, uint32_t *nh_out, int64_t *last_emit) {
  /* ubuf first: the value state_get lends must not outlive a state call,
   * and its absence (a new user) must not be mistaken for an empty one. */
  size_t hcap = (size_t)c->history;
  int rc = grow(c, (void **)&c->ubuf, &c->ubuf_cap, USER_HDR + 4 * hcap + 4);
  if (rc)
    return rc;
  if (!user_kept(c)) {
    *nh_out = 0;
    *last_emit = INT64_MIN;
    return 0;
  }
  if ((rc = make_key(c, 'u', user, len)))
    return rc;
  void *v;
  size_t n = 0;
  rc = c->host->state_get(c->op, partition, c->key, 1 + (size_t)len, &v, &n);
  if (rc && rc != RS_ENOENT)
    return rc;
  *nh_out = 0;
  *last_emit = INT64_MIN;
  if (!rc && n >= USER_HDR && ((unsigned char *)v)[0] == TN_LAYOUT &&
      (n - USER_HDR) % 4 == 0) {
    uint32_t nh = (uint32_t)((n - USER_HDR) / 4);
    memcpy(last_emit, (unsigned char *)v + 8, 8);
    /* `history` lowered since: keep the newest. */
    size_t skip = nh > hcap ? nh - hcap : 0;
    nh -= (uint32_t)skip;
    memcpy(c->ubuf + USER_HDR, (unsigned char *)v + USER_HDR + 4 * skip,
           4 * (size_t)nh);
    *nh_out = nh;
  } else if (!rc) {
    c->host->log(c->op, RS_LOG_WARN,
                 "topn_emit: unreadable user record (%zu bytes) replaced", n);
  }
  return 0;
}

static int save_user(tn_ctx_t *c, int32_t partition, const char *user,
                     uint32_t len, uint32_t nh, int64_t last_emit) {
  if (!user_kept(c))
    return 0;
  c->ubuf[0] = TN_LAYOUT;
  memset(c->ubuf + 1, 0, 7);
  put_u32(c->ubuf + 4, nh);
  memcpy(c->ubuf + 8, &last_emit, 8);
  int rc = make_key(c, 'u', user, len);
  if (rc)
    return rc;
  return c->host->state_put(c->op, partition, c->key, 1 + (size_t)len, c->ubuf,
                            USER_HDR + 4 * (size_t)nh);
}

/* min_interval: whether a trigger at `ts` may emit. The sum
 * last_emit + min_interval is formed only where it fits in int64 (records
 * from plugins are not bounded by the codec); beyond, no ts reaches it. */
static int may_fire(const tn_ctx_t *c, int64_t last_emit, int64_t ts) {
  return c->min_interval_ms <= 0 || last_emit == INT64_MIN ||
         (last_emit <= INT64_MAX - c->min_interval_ms &&
          ts >= last_emit + c->min_interval_ms) ||
         ts < last_emit; /* time went back: start over */
}

static int on_update(tn_ctx_t *c, int32_t partition, const rs_record_t *rec) {
  const rs_mf_update_t *mu = rec->payload;
  const rs_interaction_t *in = &mu->interaction;
  if (!in->user || !in->user_len)
    return c->host->dead_letter(c->op, rec, "topn_emit: record has no user");
  uint32_t nh;
  int64_t last_emit;
  int rc = load_user(c, partition, in->user, in->user_len, &nh, &last_emit);
  if (rc)
    return rc;
  uint32_t *hist = (uint32_t *)(void *)(c->ubuf + USER_HDR);
  size_t hcap = (size_t)c->history;

  uint32_t it = mu->item_index;
  if (it != NO_ITEM) {
    /* Co-visitation with the latest earlier items. */
    uint32_t paired = 0;
    for (uint32_t i = nh; i > 0 && paired < (uint32_t)c->recent; i--) {
      uint32_t j = hist[i - 1];
      if (j == it)
        continue;
      if ((rc = covisit_add(c, it, j)) || (rc = covisit_add(c, j, it)))
        return rc;
      paired++;
    }
    /* History: distinct, newest last. */
    uint32_t w = 0;
    for (uint32_t i = 0; i < nh; i++)
      if (hist[i] != it)
        hist[w++] = hist[i];
    nh = w;
    if (hcap) {
      if (nh == hcap) {
        memmove(hist, hist + 1, 4 * ((size_t)nh - 1));
        nh--;
      }
      hist[nh++] = it;
    }
    /* Popularity from the model. */
    if ((rc = read_model(c)))
      return rc;
    if (it < c->mv.n_items && (rc = pop_update(c, it, c->mv.item_pop_log[it])))
      return rc;
  }

  if (!c->on_interaction) {
    /* Only learning from it; sessions trigger. */
  } else if (may_fire(c, last_emit, rec->timestamp_ms)) {
    who_t w = {.user = in->user,
               .user_len = in->user_len,
               .dim = mu->dim,
               .vec = mu->user_vector,
               .bias = mu->user_bias,
               .cold = (mu->flags & RS_MF_F_COLD) != 0,
               .version = mu->model_version,
               .trigger = 'i'};
    if ((rc = emit(c, partition, rec, &w, hist, nh)))
      return rc;
    last_emit = rec->timestamp_ms;
  } else {
    c->host->counter_add(c->c_supp, 1);
  }
  return save_user(c, partition, in->user, in->user_len, nh, last_emit);
}

/* A closed session (sessionize's `sessions` port): the user's vector is
 * read from mf_update's user record ("u" + user, partition-local: the
 * inputs are co-partitioned by user), cold below the model's
 * min_user_events. */
static int on_session(tn_ctx_t *c, int32_t partition, const rs_record_t *rec) {
  const rs_session_t *ss = rec->payload;
  if (!ss->user || !ss->user_len)
    return c->host->dead_letter(c->op, rec, "topn_emit: session has no user");
  uint32_t nh;
  int64_t last_emit;
  int rc = load_user(c, partition, ss->user, ss->user_len, &nh, &last_emit);
  if (rc)
    return rc;
  if (!may_fire(c, last_emit, rec->timestamp_ms)) {
    c->host->counter_add(c->c_supp, 1);
    return 0;
  }
  if ((rc = read_model(c)))
    return rc;
  uint32_t k = c->mv.k;
  who_t w = {.user = ss->user,
             .user_len = ss->user_len,
             .dim = k,
             .version = c->mv.version,
             .cold = 1,
             .trigger = 's'};
  if ((rc = grow(c, (void **)&c->uvec, &c->uvec_cap, 4 * ((size_t)k + 1))) ||
      (rc = make_key(c, 'u', ss->user, ss->user_len)))
    return rc;
  void *v;
  size_t n;
  rc = c->host->peer_state_get(c->op, c->peer, partition, c->key,
                               1 + (size_t)ss->user_len, &v, &n);
  if (rc && rc != RS_ENOENT)
    return rc;
  if (!rc) {
    const unsigned char *b = v;
    if (n != 32 + 4 * (size_t)k || b[0] != MF_LAYOUT) {
      c->host->log(c->op, RS_LOG_ERROR,
                   "topn_emit: user record of '%s' has %zu bytes, not %zu",
                   c->model, n, 32 + 4 * (size_t)k);
      return RS_ESTATE;
    }
    int64_t events;
    memcpy(&events, b + 8, 8);
    memcpy(&w.bias, b + 16, 4);
    memcpy(c->uvec, b + 32, 4 * (size_t)k);
    w.vec = c->uvec;
    w.cold = events < c->mv.min_user_events;
  }
  /* emit() must see the history that load_user left in ubuf. */
  if ((rc = emit(c, partition, rec, &w,
                 (const uint32_t *)(void *)(c->ubuf + USER_HDR), nh)))
    return rc;
  return save_user(c, partition, ss->user, ss->user_len, nh, rec->timestamp_ms);
}

static int one(tn_ctx_t *c, int32_t partition, const rs_record_t *rec) {
  if (rec->kind == RS_KIND_MF_UPDATE && rec->payload)
    return on_update(c, partition, rec);
  if (rec->kind == RS_KIND_SESSION && rec->payload)
    return on_session(c, partition, rec);
  return c->host->dead_letter(
      c->op, rec, "topn_emit: not an mf_update record or a closed session");
}

static int tn_process(rs_op_t *op, void *vctx, const rs_batch_t *batch) {
  tn_ctx_t *c = vctx;
  if (batch->partition < 0)
    return fail(c, RS_EINVAL, "batch without a partition");
  for (size_t i = 0; i < batch->count; i++) {
    int rc = one(c, batch->partition, &batch->records[i]);
    if (rc < 0)
      return fail(c, rc, "processing a record");
  }
  (void)op;
  return 0;
}

/* ------------------------------------------------------------ query */

/* A JSON text grown with host->realloc. */
typedef struct jbuf {
  tn_ctx_t *c;
  char *p;
  size_t n, cap;
  int err;
} jbuf_t;

static void jput(jbuf_t *j, const char *s, size_t n) {
  if (j->err)
    return;
  if (j->n + n + 1 > j->cap) {
    size_t cap = j->cap ? j->cap : 256;
    while (cap < j->n + n + 1)
      cap *= 2;
    char *q = j->c->host->realloc(j->p, cap);
    if (!q) {
      j->err = RS_ENOMEM;
      return;
    }
    j->p = q;
    j->cap = cap;
  }
  memcpy(j->p + j->n, s, n);
  j->n += n;
  j->p[j->n] = '\0';
}

static void jputs(jbuf_t *j, const char *s) {
  jput(j, s, strlen(s));
}

/* A JSON string of n bytes: escaped, bytes that are not UTF-8 as U+FFFD. */
static void jstr(jbuf_t *j, const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s, *end = p + n;
  jput(j, "\"", 1);
  while (p < end) {
    unsigned char ch = *p;
    if (ch == '"' || ch == '\\') {
      char e[2] = {'\\', (char)ch};
      jput(j, e, 2);
      p++;
    } else if (ch < 0x20) {
      char e[8];
      snprintf(e, sizeof e, "\\u%04x", ch);
      jput(j, e, 6);
      p++;
    } else if (ch < 0x80) {
      jput(j, (const char *)p, 1);
      p++;
    } else {
      size_t len = ch >= 0xf0 && ch < 0xf5   ? 4
                   : ch >= 0xe0 && ch < 0xf0 ? 3
                   : ch >= 0xc2 && ch < 0xe0 ? 2
                                             : 0;
      size_t k = 1;
      while (len && k < len && p + k < end && (p[k] & 0xc0) == 0x80)
        k++;
      if (len && k == len) {
        jput(j, (const char *)p, len);
        p += len;
      } else {
        jput(j, "\xef\xbf\xbd", 3);
        p++;
      }
    }
  }
  jput(j, "\"", 1);
}

/* GET /v1/recommendations/{user}: the last list emitted for the user, from
 * "l" + user, with item names from the model's "r" rows:
 * {"impression_id","event_time_ms","model_version","popular",
 *  "items":[{"item","score"}...]}. RS_ENOENT before the user's first
 * emission. */
static int tn_query(rs_op_t *op, void *vctx, int32_t partition, const void *key,
                    size_t key_len, char **json, size_t *json_len) {
  tn_ctx_t *c = vctx;
  (void)op;
  *json = NULL;
  *json_len = 0;
  if (!key_len || key_len > UINT32_MAX)
    return RS_ENOENT;
  int rc = make_key(c, 'l', key, key_len);
  if (rc)
    return rc;
  void *v;
  size_t n;
  if ((rc = c->host->state_get(c->op, partition, c->key, 1 + key_len, &v, &n)))
    return rc;
  /* Borrowed until the next state call: copied before the name reads. */
  const unsigned char *b = v;
  if (n < LAST_HDR || b[0] != TN_LAYOUT)
    return RS_ESTATE;
  size_t il = (size_t)b[2] | (size_t)b[3] << 8;
  uint32_t nt = get_u32(b + 4);
  if (n != LAST_HDR + il + 8 * (size_t)nt)
    return RS_ESTATE;
  unsigned char *copy = c->host->malloc(n);
  if (!copy)
    return RS_ENOMEM;
  memcpy(copy, v, n);
  int64_t ts;
  uint64_t version;
  memcpy(&ts, copy + 8, 8);
  memcpy(&version, copy + 16, 8);
  jbuf_t j = {.c = c};
  char num[64];
  jputs(&j, "{\"impression_id\":");
  jstr(&j, (const char *)copy + LAST_HDR, il);
  snprintf(num, sizeof num,
           ",\"event_time_ms\":%" PRId64 ",\"model_version\":%" PRIu64, ts,
           version);
  jputs(&j, num);
  jputs(&j, copy[1] & 1 ? ",\"popular\":true" : ",\"popular\":false");
  jputs(&j, ",\"items\":[");
  for (uint32_t i = 0; i < nt && !j.err; i++) {
    const unsigned char *e = copy + LAST_HDR + il + 8 * (size_t)i;
    uint32_t it = get_u32(e);
    float score;
    memcpy(&score, e + 4, 4);
    unsigned char rkey[5] = {'r'};
    put_be32(rkey + 1, it);
    rc = c->host->peer_state_get(c->op, c->peer, RS_PARTITION_SHARED, rkey, 5,
                                 &v, &n);
    if (rc && rc != RS_ENOENT)
      break;
    jputs(&j, i ? ",{\"item\":" : "{\"item\":");
    if (rc == RS_ENOENT) { /* a name the model lost: say so, not fail */
      snprintf(num, sizeof num, "null,\"item_index\":%" PRIu32, it);
      jputs(&j, num);
    } else {
      jstr(&j, v, n);
    }
    rc = 0;
    if (isfinite(score))
      snprintf(num, sizeof num, ",\"score\":%.9g}", (double)score);
    else
      snprintf(num, sizeof num, ",\"score\":null}");
    jputs(&j, num);
  }
  jputs(&j, "]}");
  c->host->free(copy);
  if (rc || j.err) {
    c->host->free(j.p);
    return rc ? rc : j.err;
  }
  *json = j.p;
  *json_len = j.n;
  return 0;
}

static int tn_init(rs_op_t *op, void *vctx, const rs_host_api_t *host,
                   char *errstr, size_t errstr_size) {
  tn_ctx_t *c = vctx;
  c->op = op;
  c->host = host;
  /* The experiment variant this instance serves (ABI minor 3), stamped on
   * every recommendation. */
  c->variant = RS_HOST_HAS(host, variant) ? host->variant : "";
  c->variant_len = (uint32_t)strlen(c->variant);
  if (!RS_HOST_HAS(host, peer_open) || !RS_HOST_HAS(host, peer_state_get)) {
    snprintf(errstr, errstr_size,
             "the host cannot read another operator's state (ABI minor 2)");
    return RS_ENOTSUP;
  }
  c->peer = host->peer_open(op, c->model);
  if (c->peer < 0) {
    snprintf(errstr, errstr_size,
             "model: no other operator named '%s' to read factors from",
             c->model);
    return RS_ECONFIG;
  }
  /* The item matrix is read in place from mf_update's context (ABI minor
   * 3's peer_context), never through a state lookup per item. */
  if (!RS_HOST_HAS(host, peer_context)) {
    snprintf(errstr, errstr_size,
             "the host cannot lend another operator's context (ABI minor 3, "
             "peer_context)");
    return RS_ENOTSUP;
  }
  const rs_operator_def_t *pdef = NULL;
  c->mf = host->peer_context(op, c->peer, &pdef);
  if (!c->mf || pdef != &rs_op_mf_update) {
    snprintf(errstr, errstr_size,
             "model: '%s' is a %s operator, not an mf_update", c->model,
             pdef ? pdef->name : "unknown");
    return RS_ECONFIG;
  }
  c->top = host->calloc((size_t)c->n, sizeof(cand_t));
  c->pop = host->calloc((size_t)c->popular + 1, sizeof(pop_entry_t));
  c->c_emit = host->counter(op, "emissions", "recommendations emitted");
  c->c_supp = host->counter(op, "suppressed",
                            "triggers inside min_interval (no emission)");
  c->c_cands = host->counter(op, "candidates",
                             "items scored from co-visitation + popular");
  c->c_exact = host->counter(op, "exact_scanned",
                             "items scored by whole-catalogue scans");
  c->c_pop = host->counter(op, "popular_emissions",
                           "emissions for cold users (popularity)");
  c->c_impr = host->counter(op, "impressions",
                            "items recommended (slots of every emitted list)");
  if (!c->top || !c->pop) {
    host->free(c->top);
    host->free(c->pop);
    snprintf(errstr, errstr_size, "out of memory");
    return RS_ENOMEM;
  }
  int rc = load_pop(c);
  if (rc) {
    host->free(c->top);
    host->free(c->pop);
    snprintf(errstr, errstr_size, "cannot read the popular list: %s",
             rs_strerror(rc));
    return rc;
  }
  return 0;
}

static void tn_destroy(rs_op_t *op, void *vctx) {
  tn_ctx_t *c = vctx;
  (void)op;
  c->host->free(c->top);
  c->host->free(c->pop);
  c->host->free(c->ubuf);
  c->host->free(c->cands);
  c->host->free(c->hist_sorted);
  c->host->free(c->nbuf);
  c->host->free(c->key);
  c->host->free(c->uvec);
  c->host->free(c->upad_mem);
  c->host->free(c->lc);
  c->host->free(c->lc_n);
  c->host->free(c->eb);
  c->host->free(c->names);
  c->host->free(c->names_at);
  c->host->free(c->names_len);
}

/* The popular list is kept in memory and stored here, with the offsets
 * it reflects, rather than on every change. */
static int tn_checkpoint(rs_op_t *op, void *vctx) {
  tn_ctx_t *c = vctx;
  (void)op;
  if (!c->pop_dirty)
    return 0;
  int rc = put_pop(c);
  if (!rc)
    c->pop_dirty = 0;
  return rc;
}

const rs_operator_def_t rs_op_topn_emit = {
    .abi_version = RS_ABI_VERSION,
    .struct_size = sizeof(rs_operator_def_t),
    .name = "topn_emit",
    .description =
        "Top-N recommendations from mf_update's records and model: "
        "co-visitation and popular candidates (or the whole catalogue when "
        "small), exact MF scores, consumed items excluded; one "
        "recommendation record per trigger.",
    .ctx_size = sizeof(tn_ctx_t),
    .options = tn_options,
    .n_options = sizeof(tn_options) / sizeof(tn_options[0]),
    .min_inputs = 1,
    .max_inputs = 2,
    .init = tn_init,
    .process = tn_process,
    .checkpoint = tn_checkpoint,
    .destroy = tn_destroy,
    .query = tn_query,
};
