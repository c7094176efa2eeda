/* Read-only access to a running mf_update instance, for the code built
 * into recstream with it: `recstream eval` (which scores every item before
 * each event, prequentially), the tests and the benchmark. Third-party
 * operators cannot reach this; they get rs_mf_update_t records.
 *
 * Every pointer in an rs_mf_view_t is borrowed until the next call into
 * the operator (process() may grow the arrays).
 */
#ifndef RS_MF_UPDATE_H
#define RS_MF_UPDATE_H

#include <stddef.h>
#include <stdint.h>

#include "recstream/operator.h"

enum { RS_MF_OBJ_ISGD = 0, RS_MF_OBJ_BPR = 1, RS_MF_OBJ_EXPLICIT = 2 };

typedef struct rs_mf_view {
  int objective;          /* RS_MF_OBJ_* */
  uint32_t k;             /* factors */
  uint32_t kp;            /* row stride in floats (k padded) */
  uint32_t n_items;       /* items known, internal ids 0..n_items-1 */
  const float *items;     /* n_items rows of kp floats, RS_MF_ALIGN-aligned */
  const float *item_bias; /* n_items */
  const int64_t *item_count;  /* events per item */
  const double *item_pop_log; /* time-decayed popularity, log scale: items
                                 compare by it at any time (see the file
                                 comment of mf_update.c) */
  /* bpr: a score is <user, item> + bias + score_log_count * ln(count); 0
   * for the other objectives (see mf_update.c, "Scores"). */
  double score_log_count;
  int64_t min_user_events;
  int64_t popularity_half_life_ms;
  double global_mean; /* explicit: running mean of ratings (before any: the
                        middle of the rating range) */
  double rating_min, rating_max;
  uint64_t version; /* model updates so far */
  /* This model's instance in the process (1, 2, ...; set at init, never
   * reused): an item id names the same item for as long as the instance
   * lives (items are only appended), and only then. */
  uint64_t instance;
} rs_mf_view_t;

extern const rs_operator_def_t rs_op_mf_update;

void rs__mf_view(void *ctx, rs_mf_view_t *out);

/* The internal id of an item: 0 with *idx set, RS_ENOENT when the item was
 * never seen, or a state error. */
int rs__mf_item_index(void *ctx, const char *item, size_t len, uint32_t *idx);

/* The user's stored vector (kp floats into vec, padding zero), bias and
 * event count: 0, or RS_ENOENT for a user never seen (vec then holds the
 * deterministic initial vector, bias 0, events 0), or a state error. */
int rs__mf_user(void *ctx, int32_t partition, const char *user, size_t len,
                float *vec, float *bias, int64_t *events);

#endif
