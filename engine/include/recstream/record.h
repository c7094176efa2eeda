/* Records that flow between operators.
 *
 * A record is a small struct of borrowed pointers: the bytes it points at
 * (key, raw value, typed payload) live in the batch that carries it and are
 * valid until the operator's process() callback returns. An operator that
 * emits a record it built itself allocates the bytes with host->batch_alloc(),
 * which lives until the whole batch has left the graph.
 */
#ifndef RECSTREAM_RECORD_H
#define RECSTREAM_RECORD_H

#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What payload points at. Values are part of the ABI: append only. */
typedef enum rs_kind {
  RS_KIND_BYTES = 0,          /* no payload: value/value_len are the record */
  RS_KIND_INTERACTION = 1,    /* payload is a const rs_interaction_t * */
  RS_KIND_SESSION_EVENT = 2,  /* payload is a const rs_session_event_t * */
  RS_KIND_SESSION = 3,        /* payload is a const rs_session_t * */
  RS_KIND_MF_UPDATE = 4,      /* payload is a const rs_mf_update_t * */
  RS_KIND_RECOMMENDATION = 5, /* payload is a const rs_recommendation_t * */
  RS_KIND_FEEDBACK = 6,       /* payload is a const rs_feedback_t * */
  RS_KIND_REWARD = 7,         /* payload is a const rs_reward_t * */
} rs_kind_t;

/* Upper bounds of input records: the codec refuses decoded interactions
 * and feedback beyond them, and rs_interaction_problem() interactions from
 * elsewhere (plugins). Why: operators add durations to timestamps
 * (ts + window) and sum values (dwell seconds, ratings, rewards) over many
 * records. RS_MAX_TIMESTAMP_MS is 9999-12-31T23:59:59.999Z (about 2^47.8),
 * so any duration up to ~290 million years can be added without
 * overflowing int64. With |value| <= RS_MAX_ABS_VALUE a sum over billions
 * of records stays finite, and integers up to 2^53 (9.007e15) are exact. */
#define RS_MAX_TIMESTAMP_MS INT64_C(253402300799999)
#define RS_MAX_ABS_VALUE 1e15

/* Event types of schemas/interaction.avsc, in schema order. */
typedef enum rs_event_type {
  RS_EVENT_VIEW = 0,
  RS_EVENT_CLICK = 1,
  RS_EVENT_ADD_TO_CART = 2,
  RS_EVENT_PURCHASE = 3,
  RS_EVENT_RATING = 4,
  RS_EVENT__COUNT = 5
} rs_event_type_t;

/* A user interaction, as defined by schemas/interaction.avsc. Strings are
 * not NUL-terminated; use the _len fields. Optional strings are NULL when
 * absent. */
typedef struct rs_interaction {
  const char *user;
  const char *item;
  const char *device;
  const char *page;
  uint32_t user_len;
  uint32_t item_len;
  uint32_t device_len;
  uint32_t page_len;
  int32_t event_type; /* rs_event_type_t */
  int32_t has_value;  /* 1 when value was present */
  double value;       /* rating (RATING) or dwell seconds (others) */
  int64_t timestamp_ms;
} rs_interaction_t;

/* An accepted interaction with its place in its user's session, as the
 * sessionize operator emits it (schemas/session_event.avsc). */
typedef struct rs_session_event {
  const rs_interaction_t *interaction;
  int64_t session_id;       /* stable for the session's lifetime */
  int64_t session_start_ms; /* the session's start after this event */
  /* Event time since the previous event of the session (the latest one
   * at or before this event's time); -1 for the first event of a session,
   * or when that predecessor was summarised away (max_events). */
  int64_t since_prev_ms;
  int64_t position; /* events in the session once this one was accepted */
  int32_t late;     /* 1: accepted after the watermark had passed it */
  int32_t reserved; /* 0 */
} rs_session_event_t;

/* One distinct item of a session summary, with how many kept events of
 * the session name it. */
typedef struct rs_session_item {
  const char *item;
  uint32_t item_len;
  uint32_t reserved; /* 0 */
  int64_t count;
} rs_session_item_t;

/* A closed session, as the sessionize operator emits it on port
 * `sessions` (schemas/session.avsc). */
typedef struct rs_session {
  const char *user;
  uint32_t user_len;
  uint32_t n_items;               /* entries of items */
  const rs_session_item_t *items; /* distinct items of the kept events */
  const int64_t *merged_ids;      /* ids of sessions merged into this one */
  uint32_t n_merged;
  int32_t split; /* 1: ended by max_session_duration, not by the gap */
  int64_t session_id;
  int64_t start_ms; /* first event time */
  int64_t end_ms;   /* last event time */
  int64_t events;
  int64_t counts[RS_EVENT__COUNT]; /* events per rs_event_type_t */
  int64_t late_events;       /* accepted after the watermark passed them */
  int64_t summarised_events; /* counted, but beyond max_events: not kept */
  double dwell_seconds;      /* sum of value over non-RATING events */
  double rating_sum;         /* sum of value over RATING events */
} rs_session_t;

/* What the mf_update operator emits for every interaction it receives
 * (kind RS_KIND_MF_UPDATE): the event, and the model after learning from
 * it, so that later operators (topn_emit, bandit_reward) need no second
 * state lookup. `interaction` comes first, so the payload is also a valid
 * const rs_interaction_t *. user_vector points at dim floats, a copy made
 * for this batch (16-byte aligned); like the interaction's strings it is
 * valid as long as the record's other bytes. */
typedef struct rs_mf_update {
  rs_interaction_t interaction;
  const float *user_vector; /* the user's factors after this event */
  uint32_t dim;             /* number of floats at user_vector (k) */
  uint32_t flags;           /* RS_MF_F_* */
  uint32_t item_index;      /* the item's internal id in mf_update's
                               dictionary; UINT32_MAX if it has none */
  float user_bias;          /* after this event (0 for isgd) */
  float score;              /* the model's prediction for (user, item)
                               before learning from this event */
  float weight;             /* weight it was learned with; 0 if not */
  int64_t user_events;      /* the user's events, this one included */
  uint64_t model_version;   /* model updates so far, this one included */
} rs_mf_update_t;

/* rs_mf_update_t.flags. COLD: fewer than min_user_events events, serve
 * this user by (time-decayed) popularity. LEARNED: the event updated the
 * model. NEW_ITEM: the item's first event. GUARDED: the NaN/Inf guard
 * discarded the update. */
#define RS_MF_F_COLD 1u
#define RS_MF_F_LEARNED 2u
#define RS_MF_F_NEW_ITEM 4u
#define RS_MF_F_GUARDED 8u

/* Why a record's timestamp and (when has_value) value break the bounds
 * above, for records that did not come through the codec (NULL: they do
 * not): "<what> timestamp is negative ...", "<what> value is not finite",
 * ... The message is a constant or written into buf (size n). */
static inline const char *rs_bounds_problem(const char *what, int64_t ts,
                                            int has_value, double value,
                                            char *buf, size_t n) {
  if (ts < 0) {
    snprintf(buf, n, "%s timestamp is negative (%" PRId64 ")", what, ts);
    return buf;
  }
  if (ts > RS_MAX_TIMESTAMP_MS) {
    snprintf(buf, n,
             "%s timestamp is after 9999-12-31T23:59:59.999Z (%" PRId64
             "); expected milliseconds since the Unix epoch",
             what, ts);
    return buf;
  }
  if (has_value && !isfinite(value)) {
    snprintf(buf, n, "%s value is not finite", what);
    return buf;
  }
  if (has_value && fabs(value) > RS_MAX_ABS_VALUE) {
    snprintf(buf, n,
             "%s value is out of range: |value| must be <= 1e15 "
             "(got %.17g)",
             what, value);
    return buf;
  }
  return NULL;
}

/* Why operators cannot use an interaction (NULL: they can): no user, no
 * item, an unknown event type, or its timestamp or value past the bounds
 * (rs_bounds_problem). The message is a constant or written into buf
 * (size n). Header-only, for plugins too. */
static inline const char *rs_interaction_problem(const rs_interaction_t *ia,
                                                 char *buf, size_t n) {
  if (!ia)
    return "interaction record has no payload";
  if (!ia->user || ia->user_len == 0)
    return "interaction has no user";
  if (!ia->item || ia->item_len == 0)
    return "interaction has no item";
  if (ia->event_type < 0 || ia->event_type >= RS_EVENT__COUNT) {
    snprintf(buf, n, "interaction has unknown event type %" PRId32,
             ia->event_type);
    return buf;
  }
  return rs_bounds_problem("interaction", ia->timestamp_ms, ia->has_value,
                           ia->value, buf, n);
}

/* One ranked item of a recommendation (schemas/recommendation.avsc,
 * ScoredItem). */
typedef struct rs_scored_item {
  const char *item;
  uint32_t item_len;
  uint32_t reserved; /* 0 */
  double score;      /* what the list was ranked by */
  double propensity; /* probability the policy showed it here, (0, 1] */
} rs_scored_item_t;

/* A top-N list for one user, as the topn_emit operator emits it (kind
 * RS_KIND_RECOMMENDATION, schemas/recommendation.avsc). The impression id
 * is unique and deterministic: the same input position always yields the
 * same id, and feedback names it. */
typedef struct rs_recommendation {
  const char *user;
  const char *impression_id;
  uint32_t user_len;
  uint32_t impression_id_len;
  const rs_scored_item_t *items; /* best first */
  uint32_t n_items;
  uint32_t flags;         /* RS_REC_F_* */
  uint64_t model_version; /* model updates when the list was made */
  int64_t timestamp_ms;   /* event time of the triggering record */
  /* The experiment variant that made the list (host->variant; the
   * `experiments:` config section), "" or NULL outside experiments. */
  const char *variant;
  uint32_t variant_len;
  uint32_t reserved2; /* 0 */
} rs_recommendation_t;

/* rs_recommendation_t.flags. POPULAR: the user was cold (or the model had
 * no vector for them); the list is time-decayed popularity, and the scores
 * are popularity relative to the most popular item, in (0, 1]. */
#define RS_REC_F_POPULAR 1u

/* Feedback types of schemas/feedback.avsc, in schema order. */
typedef enum rs_feedback_type {
  RS_FEEDBACK_CLICK = 0,
  RS_FEEDBACK_ADD_TO_CART = 1,
  RS_FEEDBACK_PURCHASE = 2,
  RS_FEEDBACK_DISMISS = 3,
  RS_FEEDBACK__COUNT = 4
} rs_feedback_type_t;

/* A user's reaction to a shown recommendation (kind RS_KIND_FEEDBACK,
 * schemas/feedback.avsc), as `parse` with `record: feedback` emits it.
 * impression_id is NULL when absent (Avro null, JSON null or missing);
 * an empty string is treated the same way by bandit_reward (joined by
 * user + item). value is the reward: 1 for a click, larger for a
 * purchase, 0 for a dismissal. */
typedef struct rs_feedback {
  const char *user;
  const char *impression_id; /* NULL: unknown */
  const char *item;
  uint32_t user_len;
  uint32_t impression_id_len;
  uint32_t item_len;
  int32_t type;         /* rs_feedback_type_t */
  double value;         /* finite, |value| <= RS_MAX_ABS_VALUE */
  int64_t timestamp_ms; /* 0 .. RS_MAX_TIMESTAMP_MS */
} rs_feedback_t;

/* An impression's outcome, as bandit_reward emits it (kind RS_KIND_REWARD,
 * schemas/reward.avsc): the feedback joined with the slot of the
 * recommendation it names, or the default reward when the reward window
 * closed without feedback (item NULL, position -1, RS_REWARD_F_DEFAULT).
 * mf_update learns from rewards > 0 that name an item as a positive
 * interaction. */
typedef struct rs_reward {
  const char *user;
  const char *impression_id;
  const char *item; /* NULL for a default reward */
  uint32_t user_len;
  uint32_t impression_id_len;
  uint32_t item_len;
  int32_t position;      /* slot of item in the impression, -1: none */
  uint32_t flags;        /* RS_REWARD_F_* */
  int32_t type;          /* rs_feedback_type_t of the feedback; -1: none */
  double reward;         /* the reward counted for this feedback */
  double propensity;     /* the slot's logged propensity; for a default
                            reward, the whole list's probability */
  int64_t impression_ms; /* event time of the impression */
  int64_t timestamp_ms;  /* event time of the feedback (or window close) */
} rs_reward_t;

/* rs_reward_t.flags. DEFAULT: no feedback within reward_window. JOINED_BY_ITEM:
 * the feedback had no impression id and was joined by user + item. SUM:
 * a later duplicate added to an earlier reward (option `duplicates: sum`). */
#define RS_REWARD_F_DEFAULT 1u
#define RS_REWARD_F_JOINED_BY_ITEM 2u
#define RS_REWARD_F_SUM 4u

typedef struct rs_record {
  uint32_t kind;  /* rs_kind_t */
  uint32_t flags; /* reserved, 0 */
  const void *key;
  size_t key_len;
  const void
      *value; /* raw bytes: the record itself or what it was parsed from */
  size_t value_len;
  const void *payload;  /* typed view, per kind; NULL for RS_KIND_BYTES */
  int64_t timestamp_ms; /* event time */
  /* Where the input record this one derives from came from. Operators
   * copy these from the input record they derive an output from. */
  int32_t src_partition;
  uint32_t src_ordinal; /* n-th output derived from the same input */
  int64_t src_offset;
} rs_record_t;

/* A run of records from one input partition, in offset order. */
typedef struct rs_batch {
  const rs_record_t *records;
  size_t count;
  int32_t partition; /* the task's partition */
  uint32_t input;    /* index into the operator's inputs */
} rs_batch_t;

#ifdef __cplusplus
}
#endif
#endif
