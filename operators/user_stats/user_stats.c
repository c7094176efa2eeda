/* The built-in `user_stats` operator: a per-user aggregate of interactions
 * (event counts per type, value sum, event-time range, last item) and a
 * shared per-item popularity counter, with one text line out per input.
 *
 * It is the stateful operator the crash harness of issue 3 runs, so its
 * outputs are a pure function of its input order and its state: no clock,
 * no globals, nothing that depends on pointer or hash order. User state is
 * scoped by the batch's partition and so depends only on that partition's
 * order; the item counter lives in RS_PARTITION_SHARED and depends on how
 * partitions interleave (fixed by `processing.order: deterministic`).
 *
 * User state, key = the interaction's user, layout version 1, integers
 * little-endian at fixed offsets:
 *
 *   offset size field
 *        0    1 version, 1
 *        1    1 reserved, 0
 *        2    2 last_item_len (unsigned, <= 1024)
 *        4    4 reserved, 0
 *        8    8 events (int64)
 *       16   40 counts (5 x int64: VIEW, CLICK, ADD_TO_CART, PURCHASE,
 *               RATING; rs_event_type_t order)
 *       56    8 value_sum (IEEE-754 binary64 bits): sum of `value` over
 *               the interactions that have one
 *       64    8 first_ts (int64 ms): smallest event time seen
 *       72    8 last_ts (int64 ms): largest event time seen
 *       80    n last_item: the item of the latest interaction in input
 *               order, its first max_item_len bytes (shortened by up to
 *               3 more so it does not end inside a UTF-8 sequence)
 *
 * A stored value that is not exactly 80 + last_item_len bytes, has another
 * version or non-zero reserved bytes stops the engine with a logged error:
 * the state was written by something else or is corrupt, and counting on
 * top of it would publish wrong figures.
 *
 * Item popularity: key "item:" + item id in RS_PARTITION_SHARED, an int64
 * counter in state_counter_add's format (8 bytes little-endian), kept with
 * get/put of those 8 bytes when the host predates ABI minor 1.
 *
 * Output on port `out`, one RS_KIND_BYTES record per accepted interaction
 * (unless emit is none): key = the user, value = one line, no newline:
 *
 *   user=U events=N views=N clicks=N carts=N purchases=N ratings=N
 *   value_sum=S first_ts=T last_ts=T last_item=I item_events=N ts=T
 *
 * (a single line, fields separated by one space), all figures after this
 * record, S printed with "%.17g" (round-trips the double), item_events the
 * item's counter after this record, ts this interaction's event time. In
 * U and I, space, backslash, bytes below 0x20 and 0x7f are written as
 * \xHH (upper-case hex); other bytes as they are.
 *
 * Records that are not interactions, or interactions without a user or
 * item, with an unknown event type or a non-finite value, go to the
 * dead-letter topic with the reason.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "recstream/operator.h"

#define US_VERSION 1
#define US_HEADER 80
#define US_ITEM_MAX 1024
#define US_ITEM_PREFIX "item:"
#define US_ITEM_PREFIX_LEN 5

enum { EMIT_UPDATES = 0, EMIT_NONE = 1 };

typedef struct us_state {
  int64_t events;
  int64_t counts[RS_EVENT__COUNT];
  double value_sum;
  int64_t first_ts;
  int64_t last_ts;
  size_t last_item_len;
  char last_item[US_ITEM_MAX];
} us_state_t;

typedef struct us_ctx {
  /* Options, written by the host before init(). */
  int emit; /* index into "updates|none" */
  int64_t max_item_len;

  rs_op_t *op;
  const rs_host_api_t *host;
  rs_counter_t *users_created;
  int has_counter_add;
  int has_port_wanted; /* host->port_wanted (ABI minor 3) */
  int out_wanted;      /* port `out` is read: checked once per batch */
  unsigned char buf[US_HEADER + US_ITEM_MAX]; /* encoded user state */
  char reason[256];
} us_ctx_t;

_Static_assert(US_HEADER == 8 + 8 + 8 * RS_EVENT__COUNT + 8 + 8 + 8,
               "user state header layout");

static const rs_option_def_t us_options[] = {
    {RS_OPT_ENUM, "emit", "updates", offsetof(us_ctx_t, emit), 0, -1,
     "updates|none",
     "What goes out on port `out`: `updates` emits one line per accepted "
     "interaction with the user's figures after it (key = user); `none` "
     "only keeps state and emits nothing."},
    {RS_OPT_INT, "max_item_len", "64", offsetof(us_ctx_t, max_item_len), 1,
     US_ITEM_MAX, NULL,
     "Bytes of the last item id kept in a user's state and printed as "
     "`last_item` (1 to 1024). Longer ids are cut to this many bytes, less "
     "up to 3 so the cut does not fall inside a UTF-8 character. The item "
     "popularity counter always uses the whole id."},
};

static const char *const event_field[RS_EVENT__COUNT] = {
    "views", "clicks", "carts", "purchases", "ratings"};

static void put_le64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static size_t encode_state(unsigned char *p, const us_state_t *s) {
  memset(p, 0, US_HEADER);
  p[0] = US_VERSION;
  p[2] = (unsigned char)s->last_item_len;
  p[3] = (unsigned char)(s->last_item_len >> 8);
  put_le64(p + 8, (uint64_t)s->events);
  for (int i = 0; i < RS_EVENT__COUNT; i++)
    put_le64(p + 16 + 8 * i, (uint64_t)s->counts[i]);
  uint64_t bits;
  memcpy(&bits, &s->value_sum, 8);
  put_le64(p + 56, bits);
  put_le64(p + 64, (uint64_t)s->first_ts);
  put_le64(p + 72, (uint64_t)s->last_ts);
  memcpy(p + US_HEADER, s->last_item, s->last_item_len);
  return US_HEADER + s->last_item_len;
}

/* 0, or -1 with the problem in why. Copies everything out of p. */
static int decode_state(us_state_t *s, const unsigned char *p, size_t n,
                        char *why, size_t why_size) {
  if (n < US_HEADER) {
    snprintf(why, why_size, "%zu bytes, shorter than the %d-byte header", n,
             US_HEADER);
    return -1;
  }
  if (p[0] != US_VERSION) {
    snprintf(why, why_size, "layout version %u (this build reads %d)",
             (unsigned)p[0], US_VERSION);
    return -1;
  }
  size_t item_len = (size_t)p[2] | (size_t)p[3] << 8;
  if (p[1] || p[4] || p[5] || p[6] || p[7] || item_len > US_ITEM_MAX ||
      n != US_HEADER + item_len) {
    snprintf(why, why_size,
             "%zu bytes with last_item_len %zu and reserved bytes "
             "%02x %02x%02x%02x%02x (expected %zu bytes, reserved 0)",
             n, item_len, p[1], p[4], p[5], p[6], p[7], US_HEADER + item_len);
    return -1;
  }
  s->events = (int64_t)get_le64(p + 8);
  for (int i = 0; i < RS_EVENT__COUNT; i++)
    s->counts[i] = (int64_t)get_le64(p + 16 + 8 * i);
  uint64_t bits = get_le64(p + 56);
  memcpy(&s->value_sum, &bits, 8);
  s->first_ts = (int64_t)get_le64(p + 64);
  s->last_ts = (int64_t)get_le64(p + 72);
  s->last_item_len = item_len;
  memcpy(s->last_item, p + US_HEADER, item_len);
  return 0;
}

/* How many bytes of an n-byte item to keep: at most max, and not ending
 * inside a UTF-8 sequence (backs off over up to 3 continuation bytes). */
static size_t kept_item_len(const char *item, size_t n, size_t max) {
  if (n <= max)
    return n;
  size_t k = max;
  for (int i = 0; i < 3 && k > 0 && ((unsigned char)item[k] & 0xC0) == 0x80;
       i++)
    k--;
  return k;
}

static int us_init(rs_op_t *op, void *vctx, const rs_host_api_t *host,
                   char *errstr, size_t errstr_size) {
  us_ctx_t *c = vctx;
  c->op = op;
  c->host = host;
  if (c->emit != EMIT_UPDATES && c->emit != EMIT_NONE) {
    snprintf(errstr, errstr_size, "emit: bad value %d", c->emit);
    return RS_ECONFIG;
  }
  if (c->max_item_len < 1 || c->max_item_len > US_ITEM_MAX) {
    snprintf(errstr, errstr_size, "max_item_len: %" PRId64 " is not in 1..%d",
             c->max_item_len, US_ITEM_MAX);
    return RS_ECONFIG;
  }
  if (!RS_HOST_HAS(host, state_get) || !RS_HOST_HAS(host, state_put)) {
    snprintf(errstr, errstr_size,
             "the host provides no keyed state (state_get/state_put)");
    return RS_ENOTSUP;
  }
  c->has_counter_add = RS_HOST_HAS(host, state_counter_add);
  c->has_port_wanted = RS_HOST_HAS(host, port_wanted);
  c->users_created = host->counter(
      op, "users_created",
      "users seen for the first time in their partition (state created)");
  if (!c->users_created) {
    snprintf(errstr, errstr_size, "out of memory creating counters");
    return RS_ENOMEM;
  }
  return 0;
}

/* Why rec cannot be counted, or NULL. */
static const char *check(us_ctx_t *c, const rs_record_t *rec) {
  if (rec->kind != RS_KIND_INTERACTION) {
    snprintf(c->reason, sizeof(c->reason),
             "user_stats expects interaction records (kind %d), got kind "
             "%" PRIu32 "; put it after parse",
             RS_KIND_INTERACTION, rec->kind);
    return c->reason;
  }
  const rs_interaction_t *ia = rec->payload;
  return rs_interaction_problem(ia, c->reason, sizeof c->reason);
}

/* Adds 1 to the item's shared counter; the new count in *out. */
static int item_add(us_ctx_t *c, const rs_interaction_t *ia, int64_t *out) {
  size_t klen = US_ITEM_PREFIX_LEN + (size_t)ia->item_len;
  char *key = c->host->batch_alloc(c->op, klen);
  if (!key)
    return RS_ENOMEM;
  memcpy(key, US_ITEM_PREFIX, US_ITEM_PREFIX_LEN);
  memcpy(key + US_ITEM_PREFIX_LEN, ia->item, ia->item_len);
  int rc;
  if (c->has_counter_add) {
    rc = c->host->state_counter_add(c->op, RS_PARTITION_SHARED, key, klen, 1,
                                    out);
  } else {
    void *v;
    size_t n;
    int64_t cur = 0;
    rc = c->host->state_get(c->op, RS_PARTITION_SHARED, key, klen, &v, &n);
    if (rc == 0 && n != 8)
      rc = RS_ERANGE;
    else if (rc == 0)
      cur = (int64_t)get_le64(v);
    else if (rc == RS_ENOENT)
      rc = 0;
    if (rc == 0) {
      unsigned char b[8];
      cur = (int64_t)((uint64_t)cur + 1);
      put_le64(b, (uint64_t)cur);
      rc = c->host->state_put(c->op, RS_PARTITION_SHARED, key, klen, b, 8);
      *out = cur;
    }
  }
  if (rc == RS_ERANGE)
    c->host->log(c->op, RS_LOG_ERROR,
                 "shared state '%.*s' is not an 8-byte counter (written by "
                 "something else, or corrupt); rebuild the state by replay",
                 (int)(klen > 80 ? 80 : klen), key);
  else if (rc)
    c->host->log(c->op, RS_LOG_ERROR,
                 "shared state '%.*s': counter update failed: %s",
                 (int)(klen > 80 ? 80 : klen), key, rs_strerror(rc));
  return rc;
}

/* Line writer over a buffer sized from the record's strings. */
typedef struct line {
  char *p;
  size_t len, cap;
} line_t;

static void put_escaped(line_t *l, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    unsigned char b = (unsigned char)s[i];
    if (b <= 0x20 || b == 0x7f || b == '\\') {
      l->p[l->len++] = '\\';
      l->p[l->len++] = 'x';
      l->p[l->len++] = hex[b >> 4];
      l->p[l->len++] = hex[b & 15];
    } else {
      l->p[l->len++] = (char)b;
    }
  }
}

static int put_fmt(line_t *l, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static int put_fmt(line_t *l, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(l->p + l->len, l->cap - l->len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= l->cap - l->len)
    return RS_EINTERNAL;
  l->len += (size_t)n;
  return 0;
}

static int emit_line(us_ctx_t *c, const rs_record_t *rec,
                     const rs_interaction_t *ia, const us_state_t *s,
                     int64_t item_events) {
  if (!c->out_wanted) {
    /* Nobody reads `out` (a replay with outputs suppressed): the line is
     * not built; the emit still counts, and costs the host nothing. */
    rs_record_t out = {.kind = RS_KIND_BYTES,
                       .key = ia->user,
                       .key_len = ia->user_len,
                       .timestamp_ms = rec->timestamp_ms,
                       .src_partition = rec->src_partition,
                       .src_offset = rec->src_offset};
    return c->host->emit(c->op, 0, &out);
  }
  line_t l = {0};
  /* Escaping at most quadruples a string; 512 covers the names and
   * thirteen numbers of at most 24 characters each. */
  l.cap = 512 + 4 * ((size_t)ia->user_len + s->last_item_len);
  l.p = c->host->batch_alloc(c->op, l.cap);
  if (!l.p)
    return RS_ENOMEM;
  int rc;
  memcpy(l.p, "user=", 5);
  l.len = 5;
  put_escaped(&l, ia->user, ia->user_len);
  if ((rc = put_fmt(&l, " events=%" PRId64, s->events)))
    return rc;
  for (int i = 0; i < RS_EVENT__COUNT; i++)
    if ((rc = put_fmt(&l, " %s=%" PRId64, event_field[i], s->counts[i])))
      return rc;
  if ((rc = put_fmt(&l,
                    " value_sum=%.17g first_ts=%" PRId64 " last_ts=%" PRId64
                    " last_item=",
                    s->value_sum, s->first_ts, s->last_ts)))
    return rc;
  put_escaped(&l, s->last_item, s->last_item_len);
  if ((rc = put_fmt(&l, " item_events=%" PRId64 " ts=%" PRId64, item_events,
                    ia->timestamp_ms)))
    return rc;

  rs_record_t out = {
      .kind = RS_KIND_BYTES,
      .key = ia->user,
      .key_len = ia->user_len,
      .value = l.p,
      .value_len = l.len,
      .payload = NULL,
      .timestamp_ms = rec->timestamp_ms,
      .src_partition = rec->src_partition,
      .src_ordinal = 0,
      .src_offset = rec->src_offset,
  };
  return c->host->emit(c->op, 0, &out);
}

static int us_one(us_ctx_t *c, int32_t partition, const rs_record_t *rec) {
  const char *why = check(c, rec);
  if (why) {
    int rc = c->host->dead_letter(c->op, rec, why);
    return rc < 0 ? rc : 0;
  }
  const rs_interaction_t *ia = rec->payload;
  int shown = (int)(ia->user_len > 64 ? 64 : ia->user_len);

  us_state_t s;
  void *v;
  size_t n;
  int created = 0;
  int rc = c->host->state_get(c->op, partition, ia->user, ia->user_len, &v, &n);
  if (rc == RS_ENOENT) {
    memset(&s, 0, sizeof(s));
    s.first_ts = s.last_ts = ia->timestamp_ms;
    created = 1;
  } else if (rc) {
    c->host->log(c->op, RS_LOG_ERROR,
                 "partition %" PRId32 " user '%.*s': reading state failed: %s",
                 partition, shown, ia->user, rs_strerror(rc));
    return rc;
  } else if (decode_state(&s, v, n, c->reason, sizeof(c->reason))) {
    c->host->log(c->op, RS_LOG_ERROR,
                 "partition %" PRId32 " user '%.*s': stored state is not a "
                 "version-%d user_stats record: %s; it was written by "
                 "another operator or is corrupt: rebuild the state by replay",
                 partition, shown, ia->user, US_VERSION, c->reason);
    return RS_ESTATE;
  }

  s.events++;
  s.counts[ia->event_type]++;
  if (ia->has_value)
    s.value_sum += ia->value;
  if (ia->timestamp_ms < s.first_ts)
    s.first_ts = ia->timestamp_ms;
  if (ia->timestamp_ms > s.last_ts)
    s.last_ts = ia->timestamp_ms;
  s.last_item_len =
      kept_item_len(ia->item, ia->item_len, (size_t)c->max_item_len);
  memcpy(s.last_item, ia->item, s.last_item_len);

  int64_t item_events = 0;
  if ((rc = item_add(c, ia, &item_events)))
    return rc;
  size_t len = encode_state(c->buf, &s);
  rc =
      c->host->state_put(c->op, partition, ia->user, ia->user_len, c->buf, len);
  if (rc) {
    c->host->log(c->op, RS_LOG_ERROR,
                 "partition %" PRId32 " user '%.*s': writing state failed: %s",
                 partition, shown, ia->user, rs_strerror(rc));
    return rc;
  }
  if (created)
    c->host->counter_add(c->users_created, 1);
  if (c->emit == EMIT_NONE)
    return 0;
  return emit_line(c, rec, ia, &s, item_events);
}

static int us_process(rs_op_t *op, void *vctx, const rs_batch_t *batch) {
  us_ctx_t *c = vctx;
  if (batch->partition < 0) {
    c->host->log(op, RS_LOG_ERROR,
                 "batch of partition %" PRId32 ": user state needs a "
                 "partition >= 0",
                 batch->partition);
    return RS_EINVAL;
  }
  c->out_wanted = !c->has_port_wanted || c->host->port_wanted(op, 0);
  for (size_t i = 0; i < batch->count; i++) {
    int rc = us_one(c, batch->partition, &batch->records[i]);
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* Referenced by the built-in operator registry. */
extern const rs_operator_def_t rs_op_user_stats;
const rs_operator_def_t rs_op_user_stats = {
    .abi_version = RS_ABI_VERSION,
    .struct_size = sizeof(rs_operator_def_t),
    .name = "user_stats",
    .description =
        "Keeps per-user aggregates of interactions (events per type, value "
        "sum, first and last event time, last item) in partition-scoped "
        "state and a popularity counter per item shared by all partitions, "
        "and emits one text line per interaction with the user's figures "
        "after it, keyed by user. Deterministic: user figures depend only on "
        "their partition's order, item counts also on how partitions "
        "interleave. Records that are not valid interactions go to the "
        "dead-letter topic.",
    .ctx_size = sizeof(us_ctx_t),
    .options = us_options,
    .n_options = sizeof(us_options) / sizeof(us_options[0]),
    .output_ports = NULL,
    .min_inputs = 1,
    .max_inputs = 1,
    .init = us_init,
    .process = us_process,
    .on_timer = NULL,
    .checkpoint = NULL,
    .destroy = NULL,
};
