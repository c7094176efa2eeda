/* The built-in `sessionize` operator: event-time session windows per user.
 *
 * Semantics (docs/SESSIONS.md has the full page). A session is a maximal
 * run of one user's events whose consecutive event times are at most `gap`
 * apart: a gap of exactly `gap` keeps the session together, `gap` + 1 ms
 * starts a new one. A session whose span (last - first event time) would
 * exceed `max_session_duration` is split: the event that would stretch it
 * starts the next session and the first is marked `split`.
 *
 * Time. Each input partition has a watermark W = (largest event time seen
 * in that partition) - max_out_of_orderness. A record with event time
 * t >= W is *within bounds*: it waits (pending) until W reaches t and is
 * then applied, pending records in (event time, arrival) order. So records
 * out of order within the bound give exactly the sessions, ids, positions
 * and outputs of the same records sorted by event time (ties keep arrival
 * order). A record with t < W is *late*: it is applied at once if it falls
 * within `gap` of an open session (extending it, or merging the open
 * sessions it bridges: the earliest keeps its id and lists the others in
 * merged_session_ids), or starts a session of its own if even that
 * session would still be open (t + gap + grace >= W) and t is not within
 * the gap after the user's last closed session; otherwise it is sent on
 * port `late` unchanged and counted (late_records). A session closes when
 * W > end + gap + grace; its summary goes out on port `sessions`.
 *
 * Everything is driven by the records themselves, one at a time, in input
 * order: after each record the pending records W has reached are applied,
 * then sessions are closed in (deadline, user, id) order, so the outputs
 * are a pure function of the partition's input order, however it is cut
 * into batches. Outputs caused by the watermark (applied pending records,
 * summaries) carry the source position of the record that moved it; that
 * keeps exactly_once's per-input output ordinals the same on a replay.
 *
 * Departure from DESIGN.md ("timers fire on event time"): the host's
 * timer_set is not implemented (RS_ENOTSUP), so the operator keeps its own
 * event-time agenda per partition: an in-memory priority queue of (close
 * deadline, user, session id) and one of pending records (event time,
 * arrival sequence; their bytes in memory, one chunk per batch), each a
 * sorted FIFO ring for in-order pushes plus a min-heap for the rest. Both are
 * rebuilt from the state by one state_scan the first time a partition is seen
 * in this process (and again if the partition's state changed behind the
 * operator's back, e.g. it was dropped), then kept up to date on every change.
 * Heap entries may be stale (a session extended or merged since): each is
 * checked against the state when it reaches the top, re-queued at the session's
 * current deadline or skipped. `idle_close` (off by default; wall-clock,
 * non-deterministic): the host's idle batch (host->idle_notify) steps the
 * partition's watermark just past its latest close deadline, as a record
 * would (sz_idle, at the end of this file).
 *
 * Memory and checkpoints. The user entries of a partition are all kept in
 * memory (an open-addressing table, encoded as in the state, loaded and
 * checked in full by the rebuild scan; blocks from slabs, reused), so a
 * record costs no state call: process() changes them in memory (in place
 * in their encoding for an event extending the latest session or starting
 * one after it, and for a close) and marks them dirty, and checkpoint()
 * writes the changed ones,
 * so they reach RocksDB in the same batch as the input offsets. They are
 * grouped in 2^k buckets by a hash of the user, one state entry each, and a
 * checkpoint rewrites the buckets holding a changed user: RocksDB pays per
 * key, and a key per user made checkpoints cost more than the processing.
 * The buckets double (every bucket rewritten once) when they average more
 * than SZ_BUCKET_USERS users. The meta entry and the pending records are
 * still written at the end of each batch (one entry each); between
 * checkpoints the state is therefore not a snapshot, and a batch that fails
 * part way marks the instance failed: later batches and checkpoints are
 * refused, and the engine restarts from the last checkpoint.
 *
 * State (partition-scoped keys, integers little-endian unless said):
 *
 *   "m"           partition meta, 32 bytes: version 2 (1 byte), k (1 byte:
 *                 2^k user buckets), 6 reserved zero bytes, largest event
 *                 time seen (int64; INT64_MIN: none; after an idle close
 *                 the stepped watermark + max_out_of_orderness), records
 *                 seen (uint64: the arrival sequence), the watermark when
 *                 it was written (int64). Version 1 (k = 0, users under "u"
 *                 user) is still read; its user entries move into buckets
 *                 at the next checkpoint.
 *   "p" be64(s)   the records of one batch that still waited for the
 *                 watermark at the batch's end (s: arrival number of one
 *                 of them), each as u64 arrival number + PENDING below
 *                 (records applied within their batch are never copied).
 *                 Records at or before the stored watermark have been
 *                 applied since; the entry goes when all have.
 *   "s" be32(b)   user bucket b (< 2^k): u8 version 1, 3 reserved, u32
 *                 count, then per user in byte order of the user id: u32
 *                 user length, u32 entry length, user id, entry (layout
 *                 USER below). User u is in bucket H(u) mod 2^k, H = FNV-1a
 *                 64 over its bytes, then h ^ (h >> 29). An empty bucket
 *                 has no entry.
 *
 * USER, version 1:
 *   0 u8 version 1 | 1 u8 reserved | 2 u16 open sessions | 4 u32 reserved
 *   8 i64 end of the user's latest closed session (INT64_MIN: none)
 *  16 the open sessions in start order, each:
 *       0 id | 8 start | 16 end | 24 events | 32 summarised events |
 *      40 latest summarised event time | 48 late events |
 *      56 5 x i64 events per type | 96 f64 dwell sum | 104 f64 rating sum |
 *     112 u32 kept events | 116 u8 merged ids | 117 u8 flags (1: split) |
 *     118 u16 reserved | 120 merged ids (i64 each) | kept events, oldest
 *     first, each: i64 time, u8 type, 3 reserved, u32 item length, item
 * PENDING, version 1:
 *   0 u8 version 1 | 1 u8 event type | 2 u8 flags (1 value, 2 device,
 *   4 page) | 3 reserved | 4 u32 user length | 8 item | 12 device |
 *  16 page lengths | 20 u32 reserved | 24 f64 value | 32 i64 time |
 *  40 user, item, device, page bytes
 *
 * A user entry is dropped once the user has no open session and the
 * watermark is more than max(state_ttl, 2 gap + grace) past the end of
 * their last session (before that, it is what tells a late record that
 * it belongs to a closed session). Stored values that do not parse stop
 * the engine with a logged error (corrupt state, or another operator's).
 *
 * Session ids: FNV-1a 64 over the user id then the session's start when
 * it was created (8 bytes little-endian), top bit cleared. Deterministic
 * and stable: a late event that moves the start keeps the id.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "recstream/operator.h"

#define SZ_VERSION 1
#define SZ_META_VERSION 2 /* 1: user entries under "u" user, no buckets */
#define SZ_BUCKET_KEY 5
#define SZ_BUCKET_HDR 8
#define SZ_BUCKET_USERS 32 /* users per bucket before the buckets double */
#define SZ_MAX_NB_LOG 24
#define SZ_AHEAD 4        /* records between prefetch stages */
#define SZ_UENT_BLOCK 384 /* bytes of a user's block: header, id, value */
#define SZ_INLINE_MIN 64  /* value bytes in the block, at least */
#define SZ_NONE INT64_MIN
#define SZ_USER_HDR 16
#define SZ_SESS_HDR 120
#define SZ_EVENT_HDR 16
#define SZ_PEND_HDR 40
#define SZ_META_LEN 32
#define SZ_CHUNK_KEY 9
#define SZ_PEND_REC (8 + SZ_PEND_HDR)
#define SZ_MAX_MERGED 16
#define SZ_MAX_OPEN 65535
#define SZ_FEW_EVENTS 24 /* summaries group these without sorting */

enum { PORT_OUT = 0, PORT_SESSIONS = 1, PORT_LATE = 2 };

static const char *const sz_ports[] = {"out", "sessions", "late", NULL};

/* A kept event; item points into the state value being decoded or a
 * record. */
typedef struct sz_event {
  int64_t ts;
  const char *item;
  uint32_t item_len;
  uint32_t type;
} sz_event_t;

typedef struct sz_sess {
  int64_t id, start, end, events, summarised, summ_max_ts, late;
  int64_t counts[RS_EVENT__COUNT];
  double dwell, rating;
  uint32_t split;
  uint32_t n_merged;
  int64_t merged[SZ_MAX_MERGED];
  sz_event_t *ev; /* owned, reused across users */
  size_t n_ev, cap_ev;
} sz_sess_t;

/* A decoded user entry. Sessions past n keep their ev buffers as spares. */
typedef struct sz_user {
  int64_t horizon;
  size_t n, cap;
  sz_sess_t *s;
} sz_user_t;

/* The records of one batch that had to wait for the watermark, encoded
 * as in the state (one "p" entry per chunk); freed when the last of them
 * is applied. */
typedef struct sz_chunk {
  struct sz_chunk *prev, *next;
  uint64_t first_seq; /* its key */
  uint32_t live;      /* records not applied yet */
  int stored;         /* written to the state */
  unsigned char *data;
  size_t len, cap;
} sz_chunk_t;

/* A pending record: (time, arrival) and where its bytes are: in the
 * current batch (ia), or, once a batch ended with it still waiting, in a
 * chunk. */
typedef struct sz_pend {
  int64_t t;
  uint64_t seq;
  uint64_t hash; /* of the user */
  sz_chunk_t *chunk;
  size_t off;
  const rs_interaction_t *ia;
} sz_pend_t;

/* A user's entry, kept in memory for the partition (the "u" value,
 * encoded as in the state). The state is written from these at
 * checkpoint(): put when present, delete when purged. An entry goes when it
 * is absent, written, and no agenda entry points at it. */
typedef struct sz_uent {
  uint64_t hash;
  unsigned char *val; /* USER layout (len 0 when absent), in the block */
  size_t len, cap;
  uint32_t refs;   /* agenda entries pointing here */
  uint8_t present; /* the user has an entry */
  uint8_t dirty;   /* differs from the state; on the partition's list */
  uint8_t legacy;  /* also stored under "u" user (meta version 1): delete */
  uint8_t heap;    /* val is its own allocation, not in this block */
  /* Where the latest open session's header and its last kept event are in
   * val (0: no last event), as the in-place paths last wrote them; 0 when
   * unknown (any other writer clears it; the walk over the sessions then
   * finds them). In memory only. */
  uint32_t h_last, h_last_ev;
  uint32_t user_len;
  char user[];
} sz_uent_t;

/* A slot of the user table: the hash beside the entry, so that probing
 * past other users touches no entry. */
typedef struct sz_slot {
  uint64_t hash;
  sz_uent_t *e; /* NULL: empty */
} sz_slot_t;

/* Agenda entry: close session `id` of the user once the watermark passes
 * `key` (stale when the session was extended or merged since). */
typedef struct sz_due {
  int64_t key;
  int64_t id;
  sz_uent_t *ent; /* holds a reference */
} sz_due_t;

typedef struct sz_part {
  int loaded;
  int64_t max_t;     /* largest event time seen */
  uint64_t seq;      /* records seen */
  int64_t saved_max; /* what the meta entry holds */
  uint64_t saved_seq;
  unsigned nb_log, saved_nb_log; /* 2^nb_log user buckets */
  /* The pending records and the close agenda are each a FIFO ring plus a
   * heap: a push not earlier than the ring's last entry (nearly all of them
   * with a time-ordered input: records arrive in time order and new
   * sessions are created in it) is appended to the ring, any other goes to
   * the heap, and a pop takes the smaller of the two heads. The same order
   * as one heap (each is sorted by the same total order), but the usual
   * push and pop are sequential accesses instead of a chain of cache
   * misses down a heap of many thousand entries. */
  sz_pend_t *pend; /* heap */
  size_t n_pend, cap_pend;
  sz_pend_t *pring; /* ring, sorted */
  size_t pr_head, pr_n, pr_cap;
  sz_chunk_t *chunks; /* every chunk with live records */
  sz_chunk_t *open;   /* the current batch's */
  sz_due_t *due;      /* heap */
  size_t n_due, cap_due;
  sz_due_t *dring; /* ring, sorted */
  size_t dr_head, dr_n, dr_cap;
  /* Every user entry of the partition (complete once loaded: a user not
   * here has none), open addressing with linear probing. */
  sz_slot_t *tab;
  size_t tab_cap, tab_n;
  sz_uent_t **dirty; /* entries to write at the next checkpoint */
  size_t n_dirty, cap_dirty;
} sz_part_t;

typedef struct sz_ctx {
  /* Options, written by the host before init(). */
  int64_t gap, grace, ooo, max_duration, max_events, state_ttl, idle_close;

  rs_op_t *op;
  const rs_host_api_t *host;
  int64_t ttl; /* effective: max(state_ttl, 2 gap + grace) */
  sz_part_t **parts;
  size_t n_parts;
  sz_user_t u;
  unsigned char *out, *key; /* scratch: encoding, key */
  size_t cap_out, cap_key;
  struct sz_group *groups; /* scratch for distinct items */
  size_t cap_groups;
  uint64_t *hashes; /* of the batch's users, for prefetching */
  size_t cap_hashes;
  size_t *bstart; /* scratch for checkpoints: users by bucket */
  size_t cap_bstart;
  struct sz_uent **order;
  size_t cap_order;
  /* Standard user blocks come from slabs (a malloc per user cost more
   * than the rest of its record); freed ones are reused, linked through
   * val. */
  struct sz_uent *spare;
  struct sz_slab *slabs;
  unsigned char *slab_next; /* uncarved blocks of the newest slab */
  size_t slab_left, slab_blocks;
  /* The record being processed: outputs carry its source position. */
  const rs_record_t *cur;
  uint32_t ordinal;
  char why[256];
  rs_counter_t *c_late, *c_late_acc, *c_opened, *c_closed, *c_merged, *c_split,
      *c_purged, *c_reloads;
  int warned_open; /* logged the first record refused by SZ_MAX_OPEN */
  int failed;      /* a batch failed: memory is ahead of the state, unusable */
  int idle_on;     /* idle_close set and the host delivers idle batches */
} sz_ctx_t;

typedef struct sz_group {
  const char *item;
  uint32_t item_len;
  uint32_t first; /* index of its first kept event */
  int64_t count;
} sz_group_t;

static const rs_option_def_t sz_options[] = {
    {RS_OPT_DURATION, "gap", "30m", offsetof(sz_ctx_t, gap), 0, 30.0 * 86400000,
     NULL,
     "Inactivity gap: consecutive events of a user at most this far apart "
     "in event time belong to one session. Inclusive: events exactly `gap` "
     "apart share a session, `gap` + 1ms apart do not."},
    {RS_OPT_DURATION, "grace", NULL, offsetof(sz_ctx_t, grace), 0,
     30.0 * 86400000, NULL,
     "Required, no default. How long after a session's end + gap, in event "
     "time (watermark), it stays open for late records; a session closes "
     "and its summary is emitted once the watermark is past end + gap + "
     "grace. Records too late for any open session go to port `late`. A "
     "user holds at most 65,535 open sessions: a record that would open "
     "another is dead-lettered (reachable only when (gap + grace) / (gap + "
     "1ms) exceeds that; docs/SESSIONS.md, Limits)."},
    {RS_OPT_DURATION, "max_out_of_orderness", "0s", offsetof(sz_ctx_t, ooo), 0,
     86400000.0, NULL,
     "Watermark lag: a partition's watermark is the largest event time seen "
     "in it minus this. Records at or after the watermark wait until it "
     "reaches them and are then applied in event-time order, so disorder "
     "within this bound changes nothing; enriched events come out up to "
     "this much (in event time) later. 0: records are applied on arrival "
     "and any record older than the newest one seen is late."},
    {RS_OPT_DURATION, "max_session_duration", "0",
     offsetof(sz_ctx_t, max_duration), 0, 365.0 * 86400000, NULL,
     "Longest session span (last - first event time, inclusive bound); the "
     "event that would stretch a session further starts the next one and "
     "the first is marked `split`. 0: no limit."},
    {RS_OPT_INT, "max_events_per_session", "200",
     offsetof(sz_ctx_t, max_events), 1, 100000, NULL,
     "Events of a session kept in state with their item and time (for the "
     "summary's item list, distinct items and late inserts). Older events "
     "beyond this are summarised: still counted in events, types and sums, "
     "but no longer kept."},
    {RS_OPT_DURATION, "state_ttl", "0", offsetof(sz_ctx_t, state_ttl), 0,
     3650.0 * 86400000, NULL,
     "How long a user with no open session is remembered: their entry is "
     "deleted once the watermark is this far past the end of their last "
     "session. Raised to 2 x gap + grace when smaller (the entry tells a "
     "late record that it belongs to a closed session); 0 means exactly "
     "that."},
    {RS_OPT_DURATION, "idle_close", "0", offsetof(sz_ctx_t, idle_close), 0,
     86400000.0, RS_OPT_WALL_CLOCK,
     "Off (0) by default. Non-deterministic: when a partition has processed "
     "no record for this long in wall-clock time, its watermark steps just "
     "past the latest close deadline of its open sessions, as a record "
     "would move it: waiting records are applied and every open session "
     "closes (summaries on port `sessions`). Later records are judged "
     "against that watermark (late ones extend nothing closed: within the "
     "gap after a user's closed session they go to port `late`). Refused "
     "with state.guarantee exactly_once and processing.order deterministic; "
     "ignored, with a warning, in replays (also of files) and recstream "
     "eval. Choose more than gap + grace + max_out_of_orderness. See "
     "docs/SESSIONS.md."},
};

/* ---------------------------------------------------------- helpers */

static int64_t sat_add(int64_t a, int64_t b) { /* b >= 0 */
  return a > INT64_MAX - b ? INT64_MAX : a + b;
}

static int64_t sat_sub(int64_t a, int64_t b) { /* b >= 0 */
  return a < INT64_MIN + b ? INT64_MIN : a - b;
}

static int64_t diff(int64_t later, int64_t earlier) { /* later >= earlier */
  uint64_t d = (uint64_t)later - (uint64_t)earlier;
  return d > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)d;
}

/* Little-endian fixed-width fields; one load or store on LE hosts. */
static void put64(unsigned char *p, uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  memcpy(p, &v, 8);
#else
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
#endif
}

static uint64_t get64(const unsigned char *p) {
  uint64_t v = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  memcpy(&v, p, 8);
#else
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
#endif
  return v;
}

static void put32(unsigned char *p, uint32_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  memcpy(p, &v, 4);
#else
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
#endif
}

static uint32_t get32(const unsigned char *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
#else
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
#endif
}

static void put_be64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (56 - 8 * i));
}

static uint64_t get_be64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

static void put_f64(unsigned char *p, double d) {
  uint64_t b;
  memcpy(&b, &d, 8);
  put64(p, b);
}

static double get_f64(const unsigned char *p) {
  uint64_t b = get64(p);
  double d;
  memcpy(&d, &b, 8);
  return d;
}

static int64_t session_id(const char *user, size_t len, int64_t start) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++)
    h = (h ^ (unsigned char)user[i]) * 0x100000001b3ull;
  for (int i = 0; i < 8; i++)
    h = (h ^ (unsigned char)((uint64_t)start >> (8 * i))) * 0x100000001b3ull;
  return (int64_t)(h & (uint64_t)INT64_MAX);
}

static int64_t deadline(const sz_ctx_t *c, int64_t end) {
  return sat_add(sat_add(end, c->gap), c->grace);
}

static int64_t watermark(const sz_ctx_t *c, const sz_part_t *p) {
  return p->max_t == SZ_NONE ? SZ_NONE : sat_sub(p->max_t, c->ooo);
}

/* Grows *buf to hold n elements of size sz. */
static int grow(const rs_host_api_t *h, void *buf, size_t *cap, size_t n,
                size_t sz) {
  void **b = buf;
  if (n <= *cap)
    return 0;
  size_t nc = *cap ? *cap : 8;
  while (nc < n)
    nc *= 2;
  void *p = h->realloc(*b, nc * sz);
  if (!p)
    return RS_ENOMEM;
  *b = p;
  *cap = nc;
  return 0;
}

static int grow_bytes(sz_ctx_t *c, unsigned char **buf, size_t *cap, size_t n) {
  return grow(c->host, buf, cap, n, 1);
}

/* "u" + user in c->key. */
static int user_key(sz_ctx_t *c, const char *user, size_t len) {
  if (grow_bytes(c, &c->key, &c->cap_key, len + 1))
    return RS_ENOMEM;
  c->key[0] = 'u';
  memcpy(c->key + 1, user, len);
  return 0;
}

static void chunk_key(unsigned char k[SZ_CHUNK_KEY], uint64_t first_seq) {
  k[0] = 'p';
  put_be64(k + 1, first_seq);
}

/* ------------------------------------------------------------ heaps */

static int pend_less(const sz_pend_t *a, const sz_pend_t *b) {
  return a->t != b->t ? a->t < b->t : a->seq < b->seq;
}

/* Makes room for one more entry in the ring *buf (n entries from *head,
 * capacity *cap, a power of two, entries of sz bytes), keeping their
 * order; the ring starts at 0 afterwards. */
static int ring_room(const rs_host_api_t *h, void *buf, size_t *head, size_t n,
                     size_t *cap, size_t sz) {
  if (n < *cap)
    return 0;
  size_t nc = *cap ? 2 * *cap : 64, first = *cap - *head;
  unsigned char *old = *(unsigned char **)buf, *b = h->malloc(nc * sz);
  if (!b)
    return RS_ENOMEM;
  if (n) {
    if (first > n)
      first = n;
    memcpy(b, old + *head * sz, first * sz);
    memcpy(b + first * sz, old, (n - first) * sz);
  }
  h->free(old);
  *(unsigned char **)buf = b;
  *head = 0;
  *cap = nc;
  return 0;
}

static int pend_push(sz_ctx_t *c, sz_part_t *p, int64_t t, uint64_t seq,
                     uint64_t hash, sz_chunk_t *chunk, size_t off,
                     const rs_interaction_t *ia) {
  sz_pend_t x = {t, seq, hash, chunk, off, ia};
  if (!p->pr_n ||
      !pend_less(&x, &p->pring[(p->pr_head + p->pr_n - 1) & (p->pr_cap - 1)])) {
    if (ring_room(c->host, &p->pring, &p->pr_head, p->pr_n, &p->pr_cap,
                  sizeof(sz_pend_t)))
      return RS_ENOMEM;
    p->pring[(p->pr_head + p->pr_n++) & (p->pr_cap - 1)] = x;
    return 0;
  }
  if (grow(c->host, &p->pend, &p->cap_pend, p->n_pend + 1, sizeof(sz_pend_t)))
    return RS_ENOMEM;
  size_t i = p->n_pend++;
  while (i > 0 && pend_less(&x, &p->pend[(i - 1) / 2])) {
    p->pend[i] = p->pend[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  p->pend[i] = x;
  return 0;
}

static size_t pend_count(const sz_part_t *p) {
  return p->n_pend + p->pr_n;
}

/* The first pending record (NULL: none). */
static const sz_pend_t *pend_top(const sz_part_t *p) {
  const sz_pend_t *r = p->pr_n ? &p->pring[p->pr_head] : NULL;
  if (!p->n_pend)
    return r;
  return r && pend_less(r, &p->pend[0]) ? r : &p->pend[0];
}

static sz_pend_t pend_pop(sz_part_t *p) {
  if (p->pr_n &&
      (!p->n_pend || pend_less(&p->pring[p->pr_head], &p->pend[0]))) {
    sz_pend_t top = p->pring[p->pr_head];
    p->pr_head = (p->pr_head + 1) & (p->pr_cap - 1);
    p->pr_n--;
    return top;
  }
  sz_pend_t top = p->pend[0], x = p->pend[--p->n_pend];
  size_t i = 0, n = p->n_pend;
  for (;;) {
    size_t k = 2 * i + 1;
    if (k >= n)
      break;
    if (k + 1 < n && pend_less(&p->pend[k + 1], &p->pend[k]))
      k++;
    if (!pend_less(&p->pend[k], &x))
      break;
    p->pend[i] = p->pend[k];
    i = k;
  }
  if (n)
    p->pend[i] = x;
  return top;
}

static int due_less(const sz_due_t *a, const sz_due_t *b) {
  if (a->key != b->key)
    return a->key < b->key;
  const sz_uent_t *x = a->ent, *y = b->ent;
  if (x != y) {
    size_t n = x->user_len < y->user_len ? x->user_len : y->user_len;
    int r = memcmp(x->user, y->user, n);
    if (r || x->user_len != y->user_len)
      return r ? r < 0 : x->user_len < y->user_len;
  }
  return a->id < b->id;
}

/* The agenda's heap part (sessions re-queued at a later deadline after
 * an extension: about a third of the pushes in the bench; new sessions go
 * to the ring) is 4-ary: half the levels of a binary one, and a node's
 * children share one or two cache lines. Any heap pops in the same
 * (key, user, id) order. */
#define SZ_DUE_ARITY 4

static int due_push(sz_ctx_t *c, sz_part_t *p, int64_t key, sz_uent_t *ent,
                    int64_t id) {
  sz_due_t x = {key, id, ent};
  if (!p->dr_n ||
      !due_less(&x, &p->dring[(p->dr_head + p->dr_n - 1) & (p->dr_cap - 1)])) {
    if (ring_room(c->host, &p->dring, &p->dr_head, p->dr_n, &p->dr_cap,
                  sizeof(sz_due_t)))
      return RS_ENOMEM;
    ent->refs++;
    p->dring[(p->dr_head + p->dr_n++) & (p->dr_cap - 1)] = x;
    return 0;
  }
  if (grow(c->host, &p->due, &p->cap_due, p->n_due + 1, sizeof(sz_due_t)))
    return RS_ENOMEM;
  ent->refs++;
  size_t i = p->n_due++;
  while (i > 0 && due_less(&x, &p->due[(i - 1) / SZ_DUE_ARITY])) {
    p->due[i] = p->due[(i - 1) / SZ_DUE_ARITY];
    i = (i - 1) / SZ_DUE_ARITY;
  }
  p->due[i] = x;
  return 0;
}

static size_t due_count(const sz_part_t *p) {
  return p->n_due + p->dr_n;
}

/* The first agenda entry (NULL: none). */
static const sz_due_t *due_top(const sz_part_t *p) {
  const sz_due_t *r = p->dr_n ? &p->dring[p->dr_head] : NULL;
  if (!p->n_due)
    return r;
  return r && due_less(r, &p->due[0]) ? r : &p->due[0];
}

/* Removes the top; the caller owns its reference (uent_unref). */
static sz_due_t due_pop(sz_part_t *p) {
  if (p->dr_n && (!p->n_due || due_less(&p->dring[p->dr_head], &p->due[0]))) {
    sz_due_t top = p->dring[p->dr_head];
    p->dr_head = (p->dr_head + 1) & (p->dr_cap - 1);
    p->dr_n--;
    return top;
  }
  sz_due_t top = p->due[0], x = p->due[--p->n_due];
  size_t i = 0, n = p->n_due;
  for (;;) {
    size_t k = SZ_DUE_ARITY * i + 1, end = k + SZ_DUE_ARITY;
    if (k >= n)
      break;
    if (end > n)
      end = n;
    for (size_t j = k + 1; j < end; j++)
      if (due_less(&p->due[j], &p->due[k]))
        k = j;
    if (!due_less(&p->due[k], &x))
      break;
    p->due[i] = p->due[k];
    i = k;
  }
  if (n)
    p->due[i] = x;
  return top;
}

/* ---------------------------------------------------- user table */

static uint64_t user_hash(const char *user, size_t len) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++)
    h = (h ^ (unsigned char)user[i]) * 0x100000001b3ull;
  return h ^ h >> 29;
}

/* The slot of user in p->tab: its entry, or the empty slot it would take. */
static size_t uent_slot(const sz_part_t *p, uint64_t h, const char *user,
                        size_t len) {
  size_t mask = p->tab_cap - 1, i = (size_t)h & mask;
  for (const sz_slot_t *s; (s = &p->tab[i])->e; i = (i + 1) & mask)
    if (s->hash == h && s->e->user_len == len && !memcmp(s->e->user, user, len))
      break;
  return i;
}

/* Faults in the whole pages of [mem, mem + n) now, in one call: every
 * byte of it is about to be written, and a page fault per 4 KiB page,
 * taken one at a time on first touch, cost more than the rest of the
 * records that touched them (measured; a trap per page is dear in a VM).
 * Only a hint: the memory is the same either way. */
static void prefault(void *mem, size_t n) {
#ifdef MADV_POPULATE_WRITE
  uintptr_t a = ((uintptr_t)mem + 4095) & ~(uintptr_t)4095,
            b = ((uintptr_t)mem + n) & ~(uintptr_t)4095;
  if (b > a)
    (void)madvise((void *)a, b - a, MADV_POPULATE_WRITE);
#else
  (void)mem;
  (void)n;
#endif
}

static int tab_grow(sz_ctx_t *c, sz_part_t *p) {
  size_t cap = p->tab_cap ? 2 * p->tab_cap : 64;
  sz_slot_t *old = p->tab, *t = c->host->calloc(cap, sizeof(*t));
  if (!t)
    return RS_ENOMEM;
  prefault(t, cap * sizeof(*t));
  size_t oc = p->tab_cap, mask = cap - 1;
  p->tab = t;
  p->tab_cap = cap;
  for (size_t i = 0; i < oc; i++)
    if (old[i].e) {
      size_t j = (size_t)old[i].hash & mask;
      while (t[j].e)
        j = (j + 1) & mask;
      t[j] = old[i];
    }
  c->host->free(old);
  return 0;
}

typedef struct sz_slab {
  struct sz_slab *next;
  uint64_t pad; /* blocks start 16-byte aligned */
} sz_slab_t;

#define SZ_SLAB_MIN 256  /* blocks of the first slab (96 KiB); doubling */
#define SZ_SLAB_MAX 4096 /* up to 1.5 MiB */

/* A standard (SZ_UENT_BLOCK) block with a zeroed header: a freed one, or
 * carved from a slab. Slabs go at destroy(): the operator keeps the
 * memory of its peak number of users. */
static sz_uent_t *block_new(sz_ctx_t *c) {
  sz_uent_t *e = c->spare;
  if (e) {
    c->spare = (sz_uent_t *)(void *)e->val;
  } else {
    if (!c->slab_left) {
      size_t nb = c->slab_blocks ? 2 * c->slab_blocks : SZ_SLAB_MIN;
      nb = nb > SZ_SLAB_MAX ? SZ_SLAB_MAX : nb;
      size_t bytes = sizeof(sz_slab_t) + nb * SZ_UENT_BLOCK;
      sz_slab_t *s = c->host->malloc(bytes);
      if (!s)
        return NULL;
      prefault(s, bytes);
      s->next = c->slabs;
      c->slabs = s;
      c->slab_next = (unsigned char *)(s + 1);
      c->slab_left = c->slab_blocks = nb;
    }
    e = (sz_uent_t *)(void *)c->slab_next;
    c->slab_next += SZ_UENT_BLOCK;
    c->slab_left--;
  }
  /* The next new user's block (a freed one, or slab memory not touched
   * since it was faulted in) is written whole by its first record (entry
   * header, user id, a session): fetch it for writing now, records ahead
   * of its use, instead of a write miss per line then. */
  const char *next = c->spare       ? (const char *)c->spare
                     : c->slab_left ? (const char *)c->slab_next
                                    : NULL;
  if (next)
    for (int l = 0; l < SZ_UENT_BLOCK / 64; l++)
      __builtin_prefetch(next + 64 * l, 1);
  memset(e, 0, sizeof(*e));
  return e;
}

/* The user's entry (a new absent one when unknown); h = user_hash. */
static int uent_get(sz_ctx_t *c, sz_part_t *p, uint64_t h, const char *user,
                    size_t len, sz_uent_t **out) {
  if ((p->tab_n + 1) * 4 > p->tab_cap * 3 && tab_grow(c, p))
    return RS_ENOMEM;
  size_t i = uent_slot(p, h, user, len);
  if (!p->tab[i].e) {
    /* One block: header, user, then room for a typical value, so that a
     * record's user costs one run of adjacent cache lines. */
    size_t at = (sizeof(sz_uent_t) + len + 7) & ~(size_t)7,
           size = at + SZ_INLINE_MIN > SZ_UENT_BLOCK ? at + SZ_INLINE_MIN
                                                     : SZ_UENT_BLOCK;
    sz_uent_t *e;
    if (size == SZ_UENT_BLOCK) {
      if (!(e = block_new(c)))
        return RS_ENOMEM;
    } else if (!(e = c->host->calloc(1, size))) {
      return RS_ENOMEM;
    }
    e->hash = h;
    e->user_len = (uint32_t)len;
    memcpy(e->user, user, len);
    e->val = (unsigned char *)e + at;
    e->cap = size - at;
    p->tab[i] = (sz_slot_t){h, e};
    p->tab_n++;
  }
  *out = p->tab[i].e;
  return 0;
}

static void uent_free(sz_ctx_t *c, sz_uent_t *e) {
  if (e->heap)
    c->host->free(e->val);
  size_t at = (sizeof(sz_uent_t) + e->user_len + 7) & ~(size_t)7;
  if (at + SZ_INLINE_MIN <= SZ_UENT_BLOCK) { /* a slab block */
    e->val = (unsigned char *)c->spare;
    c->spare = e;
  } else {
    c->host->free(e);
  }
}

/* Room for an n-byte value in e (its current bytes kept). */
static int uent_reserve(sz_ctx_t *c, sz_uent_t *e, size_t n) {
  if (n <= e->cap)
    return 0;
  size_t cap = 2 * e->cap > n ? 2 * e->cap : n;
  unsigned char *v;
  if (!e->heap) {
    if (!(v = c->host->malloc(cap)))
      return RS_ENOMEM;
    memcpy(v, e->val, e->len);
    e->heap = 1;
  } else if (!(v = c->host->realloc(e->val, cap))) {
    return RS_ENOMEM;
  }
  e->val = v;
  e->cap = cap;
  return 0;
}

/* Drops e from the table and frees it when nothing needs it any more:
 * absent, written, unreferenced. */
static void uent_release(sz_ctx_t *c, sz_part_t *p, sz_uent_t *e) {
  if (e->present || e->dirty || e->refs)
    return;
  size_t mask = p->tab_cap - 1, i = uent_slot(p, e->hash, e->user, e->user_len);
  /* Backward-shift deletion keeps every probe sequence unbroken. */
  for (size_t j = (i + 1) & mask; p->tab[j].e; j = (j + 1) & mask) {
    size_t home = (size_t)p->tab[j].hash & mask;
    if (((j - home) & mask) >= ((j - i) & mask)) {
      p->tab[i] = p->tab[j];
      i = j;
    }
  }
  p->tab[i].e = NULL;
  p->tab_n--;
  uent_free(c, e);
}

static void uent_unref(sz_ctx_t *c, sz_part_t *p, sz_uent_t *e) {
  e->refs--;
  uent_release(c, p, e);
}

static int uent_dirty(sz_ctx_t *c, sz_part_t *p, sz_uent_t *e) {
  if (e->dirty)
    return 0;
  if (grow(c->host, &p->dirty, &p->cap_dirty, p->n_dirty + 1,
           sizeof(sz_uent_t *)))
    return RS_ENOMEM;
  p->dirty[p->n_dirty++] = e;
  e->dirty = 1;
  return 0;
}

static void chunk_free(sz_ctx_t *c, sz_part_t *p, sz_chunk_t *ch) {
  if (ch->prev)
    ch->prev->next = ch->next;
  else
    p->chunks = ch->next;
  if (ch->next)
    ch->next->prev = ch->prev;
  if (p->open == ch)
    p->open = NULL;
  c->host->free(ch->data);
  c->host->free(ch);
}

static sz_chunk_t *chunk_new(sz_ctx_t *c, sz_part_t *p, uint64_t first_seq) {
  sz_chunk_t *ch = c->host->calloc(1, sizeof(*ch));
  if (!ch)
    return NULL;
  ch->first_seq = first_seq;
  ch->next = p->chunks;
  if (p->chunks)
    p->chunks->prev = ch;
  p->chunks = ch;
  return ch;
}

static void part_clear(sz_ctx_t *c, sz_part_t *p) {
  while (p->chunks)
    chunk_free(c, p, p->chunks);
  p->n_due = p->dr_n = 0;
  for (size_t i = 0; i < p->tab_cap; i++)
    if (p->tab[i].e) {
      uent_free(c, p->tab[i].e);
      p->tab[i].e = NULL;
    }
  p->tab_n = 0;
  p->n_dirty = 0;
  p->n_pend = p->pr_n = 0;
  p->max_t = p->saved_max = SZ_NONE;
  p->seq = p->saved_seq = 0;
  p->nb_log = p->saved_nb_log = 0;
  p->loaded = 0;
}

/* ---------------------------------------------------- user entries */

static void sess_reset(sz_sess_t *s) {
  sz_event_t *ev = s->ev;
  size_t cap = s->cap_ev;
  memset(s, 0, sizeof(*s));
  s->ev = ev;
  s->cap_ev = cap;
  s->summ_max_ts = SZ_NONE;
}

/* Room for one more session in c->u (spares keep their event buffers). */
static int user_room(sz_ctx_t *c) {
  sz_user_t *u = &c->u;
  if (u->n + 1 > u->cap) {
    size_t old = u->cap;
    if (grow(c->host, &u->s, &u->cap, u->n + 1, sizeof(sz_sess_t)))
      return RS_ENOMEM;
    memset(u->s + old, 0, (u->cap - old) * sizeof(sz_sess_t));
  }
  return 0;
}

/* Makes room for a session at index k (shifting the rest up) and resets
 * it; the spare slot past n keeps its event buffer. */
static sz_sess_t *sess_insert(sz_ctx_t *c, size_t k) {
  sz_user_t *u = &c->u;
  if (user_room(c))
    return NULL;
  sz_sess_t spare = u->s[u->n];
  memmove(u->s + k + 1, u->s + k, (u->n - k) * sizeof(sz_sess_t));
  u->s[k] = spare;
  u->n++;
  sess_reset(&u->s[k]);
  return &u->s[k];
}

static void sess_remove(sz_user_t *u, size_t k) {
  sz_sess_t gone = u->s[k];
  memmove(u->s + k, u->s + k + 1, (u->n - k - 1) * sizeof(sz_sess_t));
  u->s[--u->n] = gone;
}

/* Decodes the header and merged ids of session k at *off of the entry p
 * (n bytes) into s (not its kept events: their count in *kept) and moves
 * *off to its first kept event; -1 (reason in c->why) when it does not
 * parse. */
static int sess_decode_hdr(sz_ctx_t *c, const unsigned char *p, size_t n,
                           size_t *offp, sz_sess_t *s, size_t k,
                           uint32_t *keptp) {
  size_t off = *offp;
  if (n - off < SZ_SESS_HDR) {
    snprintf(c->why, sizeof c->why, "session %zu is cut short at byte %zu", k,
             off);
    return -1;
  }
  const unsigned char *h = p + off;
  s->id = (int64_t)get64(h);
  s->start = (int64_t)get64(h + 8);
  s->end = (int64_t)get64(h + 16);
  s->events = (int64_t)get64(h + 24);
  s->summarised = (int64_t)get64(h + 32);
  s->summ_max_ts = (int64_t)get64(h + 40);
  s->late = (int64_t)get64(h + 48);
  for (int t = 0; t < RS_EVENT__COUNT; t++)
    s->counts[t] = (int64_t)get64(h + 56 + 8 * t);
  s->dwell = get_f64(h + 96);
  s->rating = get_f64(h + 104);
  uint32_t kept = get32(h + 112);
  s->n_merged = h[116];
  s->split = h[117] & 1;
  off += SZ_SESS_HDR;
  if (s->n_merged > SZ_MAX_MERGED || (h[117] & ~1u) || h[118] || h[119] ||
      n - off < (size_t)s->n_merged * 8 || kept > (uint64_t)s->events ||
      s->start > s->end) {
    snprintf(c->why, sizeof c->why, "session %zu header is inconsistent", k);
    return -1;
  }
  for (uint32_t m = 0; m < s->n_merged; m++, off += 8)
    s->merged[m] = (int64_t)get64(p + off);
  *keptp = kept;
  *offp = off;
  return 0;
}

/* Decodes session k at *off of the entry p (n bytes) into s (its kept
 * items point into p) and moves *off past it; -1 (reason in c->why) when
 * it does not parse. */
static int sess_decode(sz_ctx_t *c, const unsigned char *p, size_t n,
                       size_t *offp, sz_sess_t *s, size_t k) {
  size_t off = *offp;
  uint32_t kept;
  int rc = sess_decode_hdr(c, p, n, &off, s, k, &kept);
  if (rc)
    return rc;
  if (grow(c->host, &s->ev, &s->cap_ev, kept, sizeof(sz_event_t)))
    return RS_ENOMEM;
  for (uint32_t e = 0; e < kept; e++) {
    if (n - off < SZ_EVENT_HDR) {
      snprintf(c->why, sizeof c->why,
               "session %zu event %" PRIu32 " is cut short", k, e);
      return -1;
    }
    sz_event_t *ev = &s->ev[e];
    ev->ts = (int64_t)get64(p + off);
    ev->type = p[off + 8];
    ev->item_len = get32(p + off + 12);
    off += SZ_EVENT_HDR;
    if (ev->type >= RS_EVENT__COUNT || n - off < ev->item_len) {
      snprintf(c->why, sizeof c->why,
               "session %zu event %" PRIu32 " is malformed", k, e);
      return -1;
    }
    ev->item = (const char *)p + off;
    off += ev->item_len;
  }
  s->n_ev = kept;
  *offp = off;
  return 0;
}

static int user_decode(sz_ctx_t *c, const unsigned char *p, size_t n) {
  sz_user_t *u = &c->u;
  u->n = 0;
  if (n < SZ_USER_HDR || p[0] != SZ_VERSION || p[1] || p[4] || p[5] || p[6] ||
      p[7]) {
    snprintf(c->why, sizeof c->why,
             "%zu bytes, header %02x %02x (expected >= %d bytes, version %d)",
             n, n ? p[0] : 0, n > 1 ? p[1] : 0, SZ_USER_HDR, SZ_VERSION);
    return -1;
  }
  size_t count = (size_t)p[2] | (size_t)p[3] << 8;
  u->horizon = (int64_t)get64(p + 8);
  size_t off = SZ_USER_HDR;
  for (size_t k = 0; k < count; k++) {
    int rc;
    if (user_room(c))
      return RS_ENOMEM;
    /* every field is set by sess_decode */
    if ((rc = sess_decode(c, p, n, &off, &u->s[u->n], k)))
      return rc;
    u->n++;
  }
  if (off != n) {
    snprintf(c->why, sizeof c->why, "%zu trailing bytes", n - off);
    return -1;
  }
  return 0;
}

/* Encodes c->u into c->out; the length in *len. */
static int user_encode(sz_ctx_t *c, size_t *len) {
  const sz_user_t *u = &c->u;
  size_t n = SZ_USER_HDR;
  for (size_t k = 0; k < u->n; k++) {
    n += SZ_SESS_HDR + 8 * (size_t)u->s[k].n_merged;
    for (size_t e = 0; e < u->s[k].n_ev; e++)
      n += SZ_EVENT_HDR + u->s[k].ev[e].item_len;
  }
  if (grow_bytes(c, &c->out, &c->cap_out, n))
    return RS_ENOMEM;
  unsigned char *p = c->out;
  memset(p, 0, SZ_USER_HDR);
  p[0] = SZ_VERSION;
  p[2] = (unsigned char)u->n;
  p[3] = (unsigned char)(u->n >> 8);
  put64(p + 8, (uint64_t)u->horizon);
  size_t off = SZ_USER_HDR;
  for (size_t k = 0; k < u->n; k++) {
    const sz_sess_t *s = &u->s[k];
    unsigned char *h = p + off;
    memset(h, 0, SZ_SESS_HDR);
    put64(h, (uint64_t)s->id);
    put64(h + 8, (uint64_t)s->start);
    put64(h + 16, (uint64_t)s->end);
    put64(h + 24, (uint64_t)s->events);
    put64(h + 32, (uint64_t)s->summarised);
    put64(h + 40, (uint64_t)s->summ_max_ts);
    put64(h + 48, (uint64_t)s->late);
    for (int t = 0; t < RS_EVENT__COUNT; t++)
      put64(h + 56 + 8 * t, (uint64_t)s->counts[t]);
    put_f64(h + 96, s->dwell);
    put_f64(h + 104, s->rating);
    put32(h + 112, (uint32_t)s->n_ev);
    h[116] = (unsigned char)s->n_merged;
    h[117] = (unsigned char)(s->split ? 1 : 0);
    off += SZ_SESS_HDR;
    for (uint32_t m = 0; m < s->n_merged; m++, off += 8)
      put64(p + off, (uint64_t)s->merged[m]);
    for (size_t e = 0; e < s->n_ev; e++) {
      const sz_event_t *ev = &s->ev[e];
      memset(p + off, 0, SZ_EVENT_HDR);
      put64(p + off, (uint64_t)ev->ts);
      p[off + 8] = (unsigned char)ev->type;
      put32(p + off + 12, ev->item_len);
      off += SZ_EVENT_HDR;
      memcpy(p + off, ev->item, ev->item_len);
      off += ev->item_len;
    }
  }
  *len = off;
  return 0;
}

static int state_error(sz_ctx_t *c, int32_t partition, const char *what,
                       const char *user, size_t len, int rc) {
  c->host->log(c->op, RS_LOG_ERROR,
               "partition %" PRId32 " user '%.*s': %s failed: %s", partition,
               (int)(len > 64 ? 64 : len), user, what, rs_strerror(rc));
  return rc;
}

/* Decodes the user's entry e into c->u (empty when absent); *found says
 * which. Kept items point into e->val, which stays as it is until
 * user_store replaces it. */
static int user_load(sz_ctx_t *c, int32_t partition, const sz_uent_t *e,
                     int *found) {
  c->u.n = 0;
  c->u.horizon = SZ_NONE;
  *found = 0;
  if (!e->present)
    return 0;
  int rc = user_decode(c, e->val, e->len);
  if (rc == RS_ENOMEM)
    return rc;
  if (rc) {
    c->host->log(c->op, RS_LOG_ERROR,
                 "partition %" PRId32 " user '%.*s': stored state is not a "
                 "version-%d sessionize entry: %s; it was written by another "
                 "operator or is corrupt: rebuild the state by replay",
                 partition, (int)(e->user_len > 64 ? 64 : e->user_len), e->user,
                 SZ_VERSION, c->why);
    return RS_ESTATE;
  }
  *found = 1;
  return 0;
}

/* Encodes c->u as e's new value, to be written at the next checkpoint
 * (c->u's kept items no longer valid). */
static int user_store(sz_ctx_t *c, sz_part_t *p, int32_t partition,
                      sz_uent_t *e) {
  size_t n;
  int rc;
  if (c->u.n > SZ_MAX_OPEN) {
    c->host->log(c->op, RS_LOG_ERROR,
                 "partition %" PRId32 " user '%.*s': more than %d open "
                 "sessions, which the record paths refuse before they get "
                 "here (a bug: please report it)",
                 partition, (int)(e->user_len > 64 ? 64 : e->user_len), e->user,
                 SZ_MAX_OPEN);
    return RS_ERANGE;
  }
  if ((rc = user_encode(c, &n)) || (rc = uent_dirty(c, p, e)))
    return rc;
  /* c->u no longer points into e->val: encoding copied what it needed. */
  if (uent_reserve(c, e, n))
    return RS_ENOMEM;
  memcpy(e->val, c->out, n);
  e->len = n;
  e->h_last = 0;
  e->present = 1;
  return 0;
}

static int meta_store(sz_ctx_t *c, sz_part_t *p, int32_t partition);

static int uent_by_user(const void *a, const void *b) {
  const sz_uent_t *x = *(sz_uent_t *const *)a, *y = *(sz_uent_t *const *)b;
  size_t n = x->user_len < y->user_len ? x->user_len : y->user_len;
  int r = memcmp(x->user, y->user, n);
  return r ? r : (x->user_len > y->user_len) - (x->user_len < y->user_len);
}

/* Writes the buckets holding a changed user entry of p to the state, each
 * as one value (its users in byte order); doubles the buckets first when
 * they hold more than SZ_BUCKET_USERS users each on average (then every
 * bucket is rewritten). The meta entry records how many there are. */
static int part_flush(sz_ctx_t *c, sz_part_t *p, int32_t partition) {
  int rc;
  /* Users with no open session whose last one ended more than the ttl
   * before the watermark are dropped here rather than on a schedule: a
   * sweep per checkpoint costs less than an agenda entry per closed
   * session, and outputs cannot tell (past the ttl, the entry no longer
   * decides whether a late record belongs to a closed session). */
  int64_t w = watermark(c, p);
  for (size_t i = 0; w != SZ_NONE && i < p->tab_cap; i++) {
    sz_uent_t *e = p->tab[i].e;
    if (!e || !e->present || e->val[2] || e->val[3] ||
        w <= sat_add((int64_t)get64(e->val + 8), c->ttl))
      continue;
    if ((rc = uent_dirty(c, p, e)))
      return rc;
    e->present = 0;
    e->len = 0;
    e->h_last = 0;
    c->host->counter_add(c->c_purged, 1);
  }
  unsigned nb_log = p->nb_log;
  while (nb_log < SZ_MAX_NB_LOG && p->tab_n > (size_t)SZ_BUCKET_USERS << nb_log)
    nb_log++;
  if (!p->n_dirty && nb_log == p->nb_log)
    return 0;
  size_t nb = (size_t)1 << nb_log, mask = nb - 1;
  int all = nb_log != p->nb_log;
  /* Per bucket: -1 clean, else the index of its first user in c->order. */
  if (grow(c->host, &c->bstart, &c->cap_bstart, nb + 1, sizeof(size_t)))
    return RS_ENOMEM;
  size_t *start = c->bstart;
  for (size_t b = 0; b <= nb; b++)
    start[b] = all ? 0 : SIZE_MAX;
  for (size_t i = 0; i < p->n_dirty; i++) {
    sz_uent_t *e = p->dirty[i];
    start[e->hash & mask] = 0;
    if (e->legacy) {
      if ((rc = user_key(c, e->user, e->user_len)) ||
          (rc = c->host->state_delete(c->op, partition, c->key,
                                      e->user_len + 1)))
        return rc == RS_ENOMEM ? rc
                               : state_error(c, partition, "deleting state",
                                             e->user, e->user_len, rc);
      e->legacy = 0;
    }
  }
  /* Counting sort of the users of those buckets by the hashes in the
   * table's slots: no entry is read here (the ttl sweep above still reads
   * every entry once per checkpoint; this pass no longer reads them a
   * second time). Absent users are skipped while encoding. */
  size_t n = 0;
  for (size_t i = 0; i < p->tab_cap; i++) {
    if (p->tab[i].e && start[p->tab[i].hash & mask] != SIZE_MAX) {
      start[p->tab[i].hash & mask]++;
      n++;
    }
  }
  if (grow(c->host, &c->order, &c->cap_order, n ? n : 1, sizeof(sz_uent_t *)))
    return RS_ENOMEM;
  size_t sum = 0;
  for (size_t b = 0; b < nb; b++)
    if (start[b] != SIZE_MAX) {
      size_t k = start[b];
      start[b] = sum;
      sum += k;
    }
  for (size_t i = 0; i < p->tab_cap; i++) {
    sz_uent_t *e = p->tab[i].e;
    if (e && start[p->tab[i].hash & mask] != SIZE_MAX)
      c->order[start[p->tab[i].hash & mask]++] = e;
  }
  /* start[b] is now the end of bucket b; buckets follow each other. */
  size_t from = 0, ahead = 0;
  for (size_t b = 0; b < nb; b++) {
    if (start[b] == SIZE_MAX)
      continue;
    size_t to = start[b], bytes = SZ_BUCKET_HDR, users = 0;
    /* The entries of the next buckets, while this one is written. */
    for (ahead = ahead > to ? ahead : to; ahead < n && ahead < to + 32;
         ahead++) {
      __builtin_prefetch(c->order[ahead]);
      __builtin_prefetch((const char *)c->order[ahead] + 64);
    }
    unsigned char key[SZ_BUCKET_KEY] = {
        's', (unsigned char)(b >> 24), (unsigned char)(b >> 16),
        (unsigned char)(b >> 8), (unsigned char)b};
    for (size_t i = from; i < to; i++)
      if (c->order[i]->present) {
        c->order[users++ + from] = c->order[i];
        bytes += 8 + c->order[i]->user_len + c->order[i]->len;
      }
    if (!users) {
      rc = c->host->state_delete(c->op, partition, key, sizeof key);
    } else {
      qsort(c->order + from, users, sizeof(sz_uent_t *), uent_by_user);
      if (grow_bytes(c, &c->out, &c->cap_out, bytes))
        return RS_ENOMEM;
      unsigned char *o = c->out;
      memset(o, 0, SZ_BUCKET_HDR);
      o[0] = 1;
      put32(o + 4, (uint32_t)users);
      o += SZ_BUCKET_HDR;
      for (size_t i = from; i < from + users; i++) {
        const sz_uent_t *e = c->order[i];
        put32(o, e->user_len);
        put32(o + 4, (uint32_t)e->len);
        memcpy(o + 8, e->user, e->user_len);
        memcpy(o + 8 + e->user_len, e->val, e->len);
        o += 8 + e->user_len + e->len;
      }
      rc = c->host->state_put(c->op, partition, key, sizeof key, c->out, bytes);
    }
    if (rc)
      return state_error(c, partition, "writing a user bucket", "", 0, rc);
    from = to;
  }
  p->nb_log = nb_log;
  if ((rc = meta_store(c, p, partition)))
    return rc;
  for (size_t i = 0; i < p->n_dirty; i++) {
    p->dirty[i]->dirty = 0;
    uent_release(c, p, p->dirty[i]);
  }
  p->n_dirty = 0;
  return 0;
}

/* --------------------------------------------------------- outputs */

static int emit(sz_ctx_t *c, uint32_t port, rs_record_t *r) {
  r->src_partition = c->cur->src_partition;
  r->src_offset = c->cur->src_offset;
  r->src_ordinal = c->ordinal++;
  return c->host->emit(c->op, port, r);
}

/* ia's enriched event: it is event number `position` of session id
 * (started at start). */
static int emit_event(sz_ctx_t *c, const rs_interaction_t *ia, int64_t id,
                      int64_t start, int64_t position, int64_t since_prev,
                      int late) {
  rs_session_event_t *se = c->host->batch_alloc(c->op, sizeof(*se));
  if (!se)
    return RS_ENOMEM;
  *se = (rs_session_event_t){.interaction = ia,
                             .session_id = id,
                             .session_start_ms = start,
                             .since_prev_ms = since_prev,
                             .position = position,
                             .late = late};
  rs_record_t r = {.kind = RS_KIND_SESSION_EVENT,
                   .key = ia->user,
                   .key_len = ia->user_len,
                   .payload = se,
                   .timestamp_ms = ia->timestamp_ms};
  return emit(c, PORT_OUT, &r);
}

static int group_by_item(const void *a, const void *b) {
  const sz_group_t *x = a, *y = b;
  size_t n = x->item_len < y->item_len ? x->item_len : y->item_len;
  int r = memcmp(x->item, y->item, n);
  if (r)
    return r;
  if (x->item_len != y->item_len)
    return x->item_len < y->item_len ? -1 : 1;
  return x->first < y->first ? -1 : x->first > y->first;
}

static int group_by_first(const void *a, const void *b) {
  const sz_group_t *x = a, *y = b;
  return x->first < y->first ? -1 : x->first > y->first;
}

/* Groups c->groups[0..n) (one per kept event, in order: item, first =
 * its index, count 1) into the distinct items with their counts, in order
 * of first occurrence; returns how many, their item bytes in *bytes. */
static size_t group_items(sz_ctx_t *c, size_t n, size_t *bytes) {
  sz_group_t *g = c->groups;
  size_t m = 0, b = 0;
  if (n <= SZ_FEW_EVENTS) {
    /* Few (the usual case): each event against the groups so far, in
     * place (m <= e). */
    for (size_t e = 0; e < n; e++) {
      size_t k = 0;
      while (k < m && (g[k].item_len != g[e].item_len ||
                       memcmp(g[k].item, g[e].item, g[e].item_len)))
        k++;
      if (k < m) {
        g[k].count++;
      } else {
        g[m++] = g[e];
        b += g[e].item_len;
      }
    }
  } else {
    qsort(g, n, sizeof(sz_group_t), group_by_item);
    for (size_t e = 0; e < n; e++) {
      if (m && g[m - 1].item_len == g[e].item_len &&
          !memcmp(g[m - 1].item, g[e].item, g[e].item_len)) {
        g[m - 1].count++;
        continue;
      }
      g[m++] = g[e];
      b += g[e].item_len;
    }
    qsort(g, m, sizeof(sz_group_t), group_by_first);
  }
  *bytes = b;
  return m;
}

/* The summary of session s (its header fields; the distinct items are
 * c->groups[0..m), `bytes` of item text), all of it in one batch
 * allocation: the record, the items, the merged ids, then the text. */
static int summary_out(sz_ctx_t *c, const char *user, size_t user_len,
                       const sz_sess_t *s, size_t m, size_t bytes) {
  size_t o_items = (sizeof(rs_session_t) + 15) & ~(size_t)15,
         o_merged = o_items + (m ? m : 1) * sizeof(rs_session_item_t),
         o_text = o_merged + 8 * ((size_t)s->n_merged + 1);
  char *mem = c->host->batch_alloc(c->op, o_text + bytes + user_len + 1);
  if (!mem)
    return RS_ENOMEM;
  rs_session_t *out = (rs_session_t *)(void *)mem;
  rs_session_item_t *items = (rs_session_item_t *)(void *)(mem + o_items);
  int64_t *merged = (int64_t *)(void *)(mem + o_merged);
  char *text = mem + o_text;
  memcpy(text, user, user_len);
  char *t = text + user_len;
  for (size_t g = 0; g < m; g++) {
    memcpy(t, c->groups[g].item, c->groups[g].item_len);
    items[g] =
        (rs_session_item_t){t, c->groups[g].item_len, 0, c->groups[g].count};
    t += c->groups[g].item_len;
  }
  memcpy(merged, s->merged, 8 * (size_t)s->n_merged);
  *out = (rs_session_t){.user = text,
                        .user_len = (uint32_t)user_len,
                        .n_items = (uint32_t)m,
                        .items = items,
                        .merged_ids = merged,
                        .n_merged = s->n_merged,
                        .split = (int32_t)s->split,
                        .session_id = s->id,
                        .start_ms = s->start,
                        .end_ms = s->end,
                        .events = s->events,
                        .late_events = s->late,
                        .summarised_events = s->summarised,
                        .dwell_seconds = s->dwell,
                        .rating_sum = s->rating};
  memcpy(out->counts, s->counts, sizeof(out->counts));
  rs_record_t r = {.kind = RS_KIND_SESSION,
                   .key = text,
                   .key_len = user_len,
                   .payload = out,
                   .timestamp_ms = s->end};
  return emit(c, PORT_SESSIONS, &r);
}

static int emit_summary(sz_ctx_t *c, const char *user, size_t user_len,
                        const sz_sess_t *s) {
  /* Distinct items with counts, in order of first occurrence. */
  size_t n = s->n_ev, bytes;
  if (grow(c->host, &c->groups, &c->cap_groups, n ? n : 1, sizeof(sz_group_t)))
    return RS_ENOMEM;
  for (size_t e = 0; e < n; e++)
    c->groups[e] =
        (sz_group_t){s->ev[e].item, s->ev[e].item_len, (uint32_t)e, 1};
  size_t m = group_items(c, n, &bytes);
  return summary_out(c, user, user_len, s, m, bytes);
}

/* ------------------------------------------------------ the model */

/* Adds ia to s (kept in event-time order, ties after earlier arrivals);
 * *since_prev gets the time since its predecessor in the session. */
static int sess_add(sz_ctx_t *c, sz_sess_t *s, const rs_interaction_t *ia,
                    int64_t *since_prev) {
  int64_t t = ia->timestamp_ms;
  if (grow(c->host, &s->ev, &s->cap_ev, s->n_ev + 1, sizeof(sz_event_t)))
    return RS_ENOMEM;
  size_t k = s->n_ev;
  while (k > 0 && s->ev[k - 1].ts > t)
    k--;
  memmove(s->ev + k + 1, s->ev + k, (s->n_ev - k) * sizeof(sz_event_t));
  s->ev[k] = (sz_event_t){t, ia->item, ia->item_len, (uint32_t)ia->event_type};
  s->n_ev++;
  if (k > 0)
    *since_prev = diff(t, s->ev[k - 1].ts);
  else if (s->summarised > 0 && s->summ_max_ts <= t)
    *since_prev = diff(t, s->summ_max_ts);
  else
    *since_prev = -1;
  if (s->events == 0 || t < s->start)
    s->start = t;
  if (s->events == 0 || t > s->end)
    s->end = t;
  s->events++;
  s->counts[ia->event_type]++;
  if (ia->has_value) {
    if (ia->event_type == RS_EVENT_RATING)
      s->rating += ia->value;
    else
      s->dwell += ia->value;
  }
  while (s->n_ev > (size_t)c->max_events) {
    if (s->ev[0].ts > s->summ_max_ts)
      s->summ_max_ts = s->ev[0].ts;
    s->summarised++;
    memmove(s->ev, s->ev + 1, (s->n_ev - 1) * sizeof(sz_event_t));
    s->n_ev--;
  }
  return 0;
}

/* A new session for ia at its place in start order; queued for closing. */
static int sess_new(sz_ctx_t *c, sz_part_t *p, sz_uent_t *e,
                    const rs_interaction_t *ia, sz_sess_t **out) {
  int64_t t = ia->timestamp_ms;
  size_t k = c->u.n;
  while (k > 0 && c->u.s[k - 1].start > t)
    k--;
  sz_sess_t *s = sess_insert(c, k);
  if (!s)
    return RS_ENOMEM;
  s->id = session_id(ia->user, ia->user_len, t);
  c->host->counter_add(c->c_opened, 1);
  *out = s;
  return due_push(c, p, deadline(c, t), e, s->id);
}

/* Merges open sessions lo+1..hi into lo (they are consecutive in time). */
static int sess_merge(sz_ctx_t *c, size_t lo, size_t hi) {
  sz_sess_t *a = &c->u.s[lo];
  for (size_t k = lo + 1; k <= hi; k++) {
    const sz_sess_t *b = &c->u.s[k];
    if (grow(c->host, &a->ev, &a->cap_ev, a->n_ev + b->n_ev,
             sizeof(sz_event_t)))
      return RS_ENOMEM;
    memcpy(a->ev + a->n_ev, b->ev, b->n_ev * sizeof(sz_event_t));
    a->n_ev += b->n_ev;
    if (b->start < a->start)
      a->start = b->start;
    if (b->end > a->end)
      a->end = b->end;
    a->events += b->events;
    a->summarised += b->summarised;
    if (b->summarised && b->summ_max_ts > a->summ_max_ts)
      a->summ_max_ts = b->summ_max_ts;
    a->late += b->late;
    for (int t = 0; t < RS_EVENT__COUNT; t++)
      a->counts[t] += b->counts[t];
    a->dwell += b->dwell;
    a->rating += b->rating;
    a->split = b->split;
    if (a->n_merged < SZ_MAX_MERGED)
      a->merged[a->n_merged++] = b->id;
    for (uint32_t m = 0; m < b->n_merged && a->n_merged < SZ_MAX_MERGED; m++)
      a->merged[a->n_merged++] = b->merged[m];
  }
  /* Events of later sessions are later: a is still in time order. */
  c->host->counter_add(c->c_merged, hi - lo);
  for (size_t k = hi; k > lo; k--)
    sess_remove(&c->u, k);
  return 0;
}

/* The offset just past the session at off of the encoded entry v (len
 * bytes), 0 when it does not fit; *last_ev gets the offset of its last
 * kept event (0: none). */
static size_t sess_skip(const unsigned char *v, size_t len, size_t off,
                        size_t *last_ev) {
  if (off > len || len - off < SZ_SESS_HDR)
    return 0;
  const unsigned char *h = v + off;
  uint32_t kept = get32(h + 112);
  size_t o = off + SZ_SESS_HDR + 8 * (size_t)h[116];
  *last_ev = 0;
  for (uint32_t x = 0; x < kept; x++) {
    if (o > len || len - o < SZ_EVENT_HDR ||
        len - o - SZ_EVENT_HDR < get32(v + o + 12))
      return 0;
    *last_ev = o;
    o += SZ_EVENT_HDR + get32(v + o + 12);
  }
  return o > len ? 0 : o;
}

#ifndef NDEBUG
/* Debug builds (the sanitizer suite): the hints of e agree with a walk
 * over its sessions; a stale hint would silently corrupt the user's
 * sessions, so it stops the process instead. A user with many open
 * sessions is walked only at power-of-two counts (the walk is linear in
 * them: at every event it made a bot's 65,535 sessions quadratic, minutes
 * under ASan). */
static void hints_check(const sz_uent_t *e) {
  if (!e->h_last)
    return;
  const unsigned char *v = e->val;
  size_t count = (size_t)v[2] | (size_t)v[3] << 8, off = SZ_USER_HDR;
  if (count > 64 && (count & (count - 1)))
    return;
  size_t last = 0, last_ev = 0;
  for (size_t k = 0; k < count && off; k++) {
    last = off;
    off = sess_skip(v, e->len, off, &last_ev);
  }
  if (!e->present || !count || off != e->len || last != e->h_last ||
      last_ev != e->h_last_ev) {
    fprintf(stderr,
            "sessionize: stale in-memory hint for a user (h_last %u, walk "
            "%zu; h_last_ev %u, walk %zu)\n",
            e->h_last, last, e->h_last_ev, last_ev);
    abort();
  }
}
#else
#define hints_check(e) ((void)0)
#endif

/* Appends ia's kept event (EVENT layout) at o. */
static unsigned char *put_event(unsigned char *o, const rs_interaction_t *ia) {
  memset(o, 0, SZ_EVENT_HDR);
  put64(o, (uint64_t)ia->timestamp_ms);
  o[8] = (unsigned char)ia->event_type;
  put32(o + 12, ia->item_len);
  memcpy(o + SZ_EVENT_HDR, ia->item, ia->item_len);
  return o + SZ_EVENT_HDR + ia->item_len;
}

/* ia would open one more session for a user who has SZ_MAX_OPEN open (the
 * count is 16 bits in the entry): it is dead-lettered before anything of
 * it is applied, and the operator goes on. A record applied on arrival or
 * late is c->cur itself; one that waited for the watermark goes with its
 * user as key and the source position of the record that released it (as
 * the outputs the watermark causes do: a replay cut into other batches
 * sends the same), its original bytes no longer being held. */
static int refuse_open(sz_ctx_t *c, const rs_interaction_t *ia) {
  const rs_record_t *cur = c->cur;
  int waited = cur->payload != ia;
  rs_record_t r = *cur;
  if (waited)
    r = (rs_record_t){.kind = RS_KIND_INTERACTION,
                      .key = ia->user,
                      .key_len = ia->user_len,
                      .payload = ia,
                      .timestamp_ms = ia->timestamp_ms,
                      .src_partition = cur->src_partition,
                      .src_offset = cur->src_offset};
  char why[640];
  int ul = (int)(ia->user_len > 64 ? 64 : ia->user_len),
      il = (int)(ia->item_len > 64 ? 64 : ia->item_len);
  snprintf(why, sizeof why,
           "user '%.*s' has %d open sessions, the most sessionize keeps per "
           "user; this record (event time %" PRId64 ") would open one more. "
           "Each event more than gap after the user's previous one opens a "
           "session that stays open gap + grace after it (gap %" PRId64
           " ms, grace %" PRId64 " ms, max_out_of_orderness %" PRId64
           " ms): a bot or a broken clock; filter the user, or raise gap or "
           "lower grace%s%.*s%s",
           ul, ia->user, SZ_MAX_OPEN, ia->timestamp_ms, c->gap, c->grace,
           c->ooo,
           waited ? ". The record waited for the watermark: sent with the "
                    "source offset of the record that released it; item '"
                  : "",
           waited ? il : 0, waited ? ia->item : "", waited ? "'" : "");
  if (!c->warned_open) {
    c->warned_open = 1;
    c->host->log(c->op, RS_LOG_WARN,
                 "dead-lettered (logged for the first such record only; each "
                 "goes to the dead-letter path with this reason): %s",
                 why);
  }
  int rc = c->host->dead_letter(c->op, &r, why);
  return rc < 0 ? rc : 0;
}

/* The common cases of apply_in_bounds, on the encoded entry (the bytes
 * user_encode would write, without decoding and encoding the rest): ia
 * extends the user's latest session at its end (t >= end, within the gap
 * and the duration bound) while it keeps fewer than max_events events, so
 * only its header changes and one kept event is appended; or ia starts a
 * new session after all of the user's (none open, or t past the latest's
 * end + gap, or within it but past the duration bound: a split), appended
 * at the end. *done 0: anything else (or an entry that does not parse),
 * for the general path. */
static int fast_in_bounds(sz_ctx_t *c, sz_part_t *p, sz_uent_t *e,
                          const rs_interaction_t *ia, int *done) {
  *done = 0;
  hints_check(e);
  const unsigned char *v = e->val;
  size_t len = e->len, count = 0, off = SZ_USER_HDR, last = 0, last_ev = 0;
  if (e->present) {
    if (len < SZ_USER_HDR || v[0] != SZ_VERSION)
      return 0;
    count = (size_t)v[2] | (size_t)v[3] << 8;
    if (count && e->h_last) {
      /* Known from the last in-place write: no walk over the sessions
       * and their kept events. */
      last = e->h_last;
      last_ev = e->h_last_ev;
    } else {
      for (size_t k = 0; k < count; k++) {
        last = off;
        if (!(off = sess_skip(v, len, off, &last_ev)))
          return 0;
      }
      if (off != len)
        return 0;
    }
  }
  int64_t t = ia->timestamp_ms;
  int rc;
  if (count) {
    const unsigned char *h = v + last;
    int64_t start = (int64_t)get64(h + 8), end = (int64_t)get64(h + 16);
    uint32_t kept = get32(h + 112);
    if (t < end || !last_ev)
      return 0;
    int64_t last_ts = (int64_t)get64(v + last_ev);
    if (t <= sat_add(end, c->gap)) {
      if (c->max_duration && t > sat_add(start, c->max_duration)) {
        /* Split: a new session below, this one marked. */
        if (count + 1 > SZ_MAX_OPEN) {
          *done = 1;
          return refuse_open(c, ia);
        }
        if ((rc = uent_dirty(c, p, e)))
          return rc;
        e->val[last + 117] |= 1;
        c->host->counter_add(c->c_split, 1);
      } else {
        if (kept + 1 > (uint64_t)c->max_events || last_ts > t)
          return 0;
        /* Appended to the latest session. */
        size_t n = len + SZ_EVENT_HDR + ia->item_len;
        if ((rc = uent_reserve(c, e, n)) || (rc = uent_dirty(c, p, e)))
          return rc;
        unsigned char *hh = e->val + last;
        put_event(e->val + len, ia);
        e->len = n;
        e->h_last = (uint32_t)last;
        e->h_last_ev = (uint32_t)len;
        int64_t events = (int64_t)get64(hh + 24) + 1;
        put64(hh + 16, (uint64_t)t);
        put64(hh + 24, (uint64_t)events);
        unsigned char *cnt = hh + 56 + 8 * ia->event_type;
        put64(cnt, get64(cnt) + 1);
        if (ia->has_value) {
          unsigned char *sum =
              hh + (ia->event_type == RS_EVENT_RATING ? 104 : 96);
          put_f64(sum, get_f64(sum) + ia->value);
        }
        put32(hh + 112, kept + 1);
        *done = 1;
        return emit_event(c, ia, (int64_t)get64(hh), start, events,
                          diff(t, last_ts), 0);
      }
    } else if (count + 1 > SZ_MAX_OPEN) {
      *done = 1;
      return refuse_open(c, ia);
    }
  }
  /* A new session, after every open one (their starts are <= t). */
  size_t at = e->present ? len : SZ_USER_HDR,
         n = at + SZ_SESS_HDR + SZ_EVENT_HDR + ia->item_len;
  if ((rc = uent_reserve(c, e, n)) || (rc = uent_dirty(c, p, e)))
    return rc;
  unsigned char *w = e->val;
  if (!e->present) {
    memset(w, 0, SZ_USER_HDR);
    w[0] = SZ_VERSION;
    put64(w + 8, (uint64_t)SZ_NONE);
    e->present = 1;
  }
  w[2] = (unsigned char)(count + 1);
  w[3] = (unsigned char)((count + 1) >> 8);
  unsigned char *h = w + at;
  int64_t id = session_id(ia->user, ia->user_len, t);
  memset(h, 0, SZ_SESS_HDR);
  put64(h, (uint64_t)id);
  put64(h + 8, (uint64_t)t);
  put64(h + 16, (uint64_t)t);
  put64(h + 24, 1);
  put64(h + 40, (uint64_t)SZ_NONE);
  put64(h + 56 + 8 * ia->event_type, 1);
  if (ia->has_value) {
    double sum = 0.0; /* as sess_add: 0.0 + value */
    sum += ia->value;
    put_f64(h + (ia->event_type == RS_EVENT_RATING ? 104 : 96), sum);
  }
  put32(h + 112, 1);
  put_event(h + SZ_SESS_HDR, ia);
  e->len = n;
  e->h_last = (uint32_t)at;
  e->h_last_ev = (uint32_t)(at + SZ_SESS_HDR);
  *done = 1;
  c->host->counter_add(c->c_opened, 1);
  if ((rc = due_push(c, p, deadline(c, t), e, id)))
    return rc;
  return emit_event(c, ia, id, t, 1, -1, 0);
}

/* Applies an interaction that the watermark has reached: it joins the
 * user's latest session or starts the next one. */
static int apply_in_bounds(sz_ctx_t *c, sz_part_t *p, int32_t partition,
                           uint64_t hash, const rs_interaction_t *ia) {
  int found, rc;
  int64_t t = ia->timestamp_ms, since_prev = -1;
  sz_uent_t *e;
  if ((rc = uent_get(c, p, hash, ia->user, ia->user_len, &e)) ||
      (rc = fast_in_bounds(c, p, e, ia, &found)) || found ||
      (rc = user_load(c, partition, e, &found)))
    return rc;
  sz_sess_t *s = c->u.n ? &c->u.s[c->u.n - 1] : NULL;
  if (s && t >= s->end && t <= sat_add(s->end, c->gap) &&
      (!c->max_duration || t <= sat_add(s->start, c->max_duration))) {
    rc = sess_add(c, s, ia, &since_prev);
  } else {
    if (c->u.n >= SZ_MAX_OPEN) /* c->u is dropped: nothing was changed */
      return refuse_open(c, ia);
    if (s && t >= s->end && t <= sat_add(s->end, c->gap)) {
      s->split = 1;
      c->host->counter_add(c->c_split, 1);
    }
    if (!(rc = sess_new(c, p, e, ia, &s)))
      rc = sess_add(c, s, ia, &since_prev);
    since_prev = -1;
  }
  if (rc || (rc = user_store(c, p, partition, e)))
    return rc;
  return emit_event(c, ia, s->id, s->start, s->events, since_prev, 0);
}

/* Span of session s if t joined it. */
static int fits(const sz_ctx_t *c, const sz_sess_t *s, int64_t t) {
  if (!c->max_duration)
    return 1;
  int64_t lo = t < s->start ? t : s->start, hi = t > s->end ? t : s->end;
  return hi <= sat_add(lo, c->max_duration);
}

static int64_t distance(const sz_sess_t *s, int64_t t) {
  return t < s->start ? diff(s->start, t) : t > s->end ? diff(t, s->end) : 0;
}

/* A record the watermark had already passed (t < W). */
static int apply_late(sz_ctx_t *c, sz_part_t *p, int32_t partition,
                      const rs_record_t *rec, uint64_t hash,
                      const rs_interaction_t *ia, int64_t w) {
  int found, rc;
  int64_t t = ia->timestamp_ms, since_prev = -1;
  sz_uent_t *e;
  if ((rc = uent_get(c, p, hash, ia->user, ia->user_len, &e)) ||
      (rc = user_load(c, partition, e, &found)))
    return rc;
  sz_user_t *u = &c->u;
  size_t lo = u->n, hi = 0;
  for (size_t k = 0; k < u->n; k++)
    if (t >= sat_sub(u->s[k].start, c->gap) &&
        t <= sat_add(u->s[k].end, c->gap)) {
      if (lo == u->n)
        lo = k;
      hi = k;
    }
  sz_sess_t *s = NULL;
  if (lo < u->n) {
    int64_t first = u->s[lo].start < t ? u->s[lo].start : t;
    int64_t last = u->s[hi].end > t ? u->s[hi].end : t;
    if (!c->max_duration || last <= sat_add(first, c->max_duration)) {
      if (hi > lo && (rc = sess_merge(c, lo, hi)))
        return rc;
      s = &u->s[lo];
    } else {
      /* Merging all would be too long: the one candidate that holds t,
       * else the nearest that fits, the earlier on a tie. */
      for (size_t k = lo; k <= hi; k++)
        if (fits(c, &u->s[k], t) &&
            (!s || distance(&u->s[k], t) < distance(s, t)))
          s = &u->s[k];
    }
  }
  if (!s) {
    int belongs_closed =
        lo == u->n && u->horizon != SZ_NONE && t <= sat_add(u->horizon, c->gap);
    if (belongs_closed || deadline(c, t) < w) {
      c->host->counter_add(c->c_late, 1);
      uent_release(c, p, e); /* a new entry that stays absent */
      rs_record_t r = *rec;
      return emit(c, PORT_LATE, &r);
    }
    if (u->n >= SZ_MAX_OPEN) /* nothing merged on this path: c->u dropped */
      return refuse_open(c, ia);
    if ((rc = sess_new(c, p, e, ia, &s)))
      return rc;
  }
  if ((rc = sess_add(c, s, ia, &since_prev)))
    return rc;
  s->late++;
  c->host->counter_add(c->c_late_acc, 1);
  if ((rc = user_store(c, p, partition, e)))
    return rc;
  return emit_event(c, ia, s->id, s->start, s->events, since_prev, 1);
}

/* run_due on the encoded entry: the session is found by walking the
 * headers, only it is decoded (for its summary), and its bytes are cut
 * out. *done 0: an entry that does not parse, for the general path (which
 * reports it). */
static int fast_due(sz_ctx_t *c, sz_part_t *p, const sz_due_t *d, int *done) {
  sz_uent_t *e = d->ent;
  const unsigned char *v = e->val;
  size_t len = e->len, off = SZ_USER_HDR, at = 0, to = 0, last_ev;
  *done = 0;
  hints_check(e);
  if (!e->present) {
    *done = 1;
    return 0;
  }
  if (len < SZ_USER_HDR || v[0] != SZ_VERSION)
    return 0;
  size_t count = (size_t)v[2] | (size_t)v[3] << 8;
  if (count == 1 && e->h_last == SZ_USER_HDR) {
    /* The one open session, as the in-place paths wrote it: [16, len). */
    if ((int64_t)get64(v + SZ_USER_HDR) == d->id) {
      at = SZ_USER_HDR;
      to = len;
    }
  } else {
    for (size_t k = 0; k < count; k++) {
      size_t next = sess_skip(v, len, off, &last_ev);
      if (!next)
        return 0;
      if (!to && (int64_t)get64(v + off) == d->id) {
        at = off;
        to = next;
      }
      off = next;
    }
    if (off != len)
      return 0;
  }
  *done = 1;
  if (!to)
    return 0; /* closed or merged away since */
  int64_t end = (int64_t)get64(v + at + 16), dl = deadline(c, end);
  if (dl != d->key) /* extended since: due later, in its own order */
    return due_push(c, p, dl, e, d->id);
  sz_user_t *u = &c->u;
  int rc;
  size_t o = at, bytes;
  uint32_t kept;
  u->n = 0;
  if ((rc = user_room(c)))
    return rc;
  if ((rc = sess_decode_hdr(c, v, len, &o, &u->s[0], 0, &kept))) {
    *done = 0;
    return rc == RS_ENOMEM ? rc : 0;
  }
  /* Its summary straight from the encoded kept events, without decoding
   * them first (they fit in [at, to): the walk's sess_skip checked it,
   * or, for the one session known from the hints, the in-place paths
   * wrote them and a loaded entry was checked when it was read). */
  if (grow(c->host, &c->groups, &c->cap_groups, kept ? kept : 1,
           sizeof(sz_group_t)))
    return RS_ENOMEM;
  for (uint32_t x = 0; x < kept; x++) {
    uint32_t il = get32(v + o + 12);
    c->groups[x] = (sz_group_t){(const char *)v + o + SZ_EVENT_HDR, il, x, 1};
    o += SZ_EVENT_HDR + il;
  }
  size_t m = group_items(c, kept, &bytes);
  if ((rc = summary_out(c, e->user, e->user_len, &u->s[0], m, bytes)) ||
      (rc = uent_dirty(c, p, e)))
    return rc;
  c->host->counter_add(c->c_closed, 1);
  unsigned char *w = e->val;
  int64_t horizon = (int64_t)get64(w + 8);
  if (horizon == SZ_NONE || end > horizon)
    put64(w + 8, (uint64_t)end);
  memmove(w + at, w + to, len - to);
  e->len = len - (to - at);
  if (e->h_last > at) { /* the latest session moved down */
    e->h_last -= (uint32_t)(to - at);
    if (e->h_last_ev)
      e->h_last_ev -= (uint32_t)(to - at);
  } else {
    e->h_last = 0;
  }
  w[2] = (unsigned char)(count - 1);
  w[3] = (unsigned char)((count - 1) >> 8);
  hints_check(e);
  return 0;
}

/* Handles one agenda entry that the watermark has passed. */
static int run_due(sz_ctx_t *c, sz_part_t *p, int32_t partition,
                   const sz_due_t *d) {
  int found, rc;
  sz_uent_t *e = d->ent;
  if ((rc = fast_due(c, p, d, &found)) || found)
    return rc;
  if ((rc = user_load(c, partition, e, &found)) || !found)
    return rc;
  sz_user_t *u = &c->u;
  size_t k = 0;
  while (k < u->n && u->s[k].id != d->id)
    k++;
  if (k == u->n)
    return 0; /* closed or merged away since */
  int64_t dl = deadline(c, u->s[k].end);
  if (dl != d->key) /* extended since: due later, in its own order */
    return due_push(c, p, dl, e, d->id);
  if ((rc = emit_summary(c, e->user, e->user_len, &u->s[k])))
    return rc;
  c->host->counter_add(c->c_closed, 1);
  if (u->horizon == SZ_NONE || u->s[k].end > u->horizon)
    u->horizon = u->s[k].end;
  sess_remove(u, k);
  return user_store(c, p, partition, e);
}

/* ------------------------------------------------- pending records */

/* Appends ia, arrival `seq`, to the batch's chunk; *out_off gets where. */
static int pend_append(sz_ctx_t *c, sz_part_t *p, uint64_t seq,
                       const rs_interaction_t *ia, sz_chunk_t **out_ch,
                       size_t *out_off) {
  size_t dl = ia->device ? ia->device_len : 0, pl = ia->page ? ia->page_len : 0;
  size_t n = SZ_PEND_REC + (size_t)ia->user_len + ia->item_len + dl + pl;
  sz_chunk_t *ch = p->open;
  if (!ch && !(ch = p->open = chunk_new(c, p, seq)))
    return RS_ENOMEM;
  if (grow_bytes(c, &ch->data, &ch->cap, ch->len + n))
    return RS_ENOMEM;
  unsigned char *v = ch->data + ch->len;
  *out_off = ch->len;
  *out_ch = ch;
  ch->len += n;
  ch->live++;
  put64(v, seq);
  v += 8;
  memset(v, 0, SZ_PEND_HDR);
  v[0] = SZ_VERSION;
  v[1] = (unsigned char)ia->event_type;
  v[2] = (unsigned char)((ia->has_value ? 1 : 0) | (ia->device ? 2 : 0) |
                         (ia->page ? 4 : 0));
  put32(v + 4, ia->user_len);
  put32(v + 8, ia->item_len);
  put32(v + 12, (uint32_t)dl);
  put32(v + 16, (uint32_t)pl);
  put_f64(v + 24, ia->has_value ? ia->value : 0.0);
  put64(v + 32, (uint64_t)ia->timestamp_ms);
  unsigned char *o = v + SZ_PEND_HDR;
  memcpy(o, ia->user, ia->user_len);
  o += ia->user_len;
  memcpy(o, ia->item, ia->item_len);
  o += ia->item_len;
  if (dl)
    memcpy(o, ia->device, dl);
  o += dl;
  if (pl)
    memcpy(o, ia->page, pl);
  return 0;
}

/* Length of the pending record at v (n bytes available), or 0 when it is
 * malformed; its time in *t and arrival number in *seq. */
static size_t pend_parse(const unsigned char *v, size_t n, int64_t *t,
                         uint64_t *seq) {
  if (n < SZ_PEND_REC)
    return 0;
  const unsigned char *h = v + 8;
  uint64_t len = SZ_PEND_REC + (uint64_t)get32(h + 4) + get32(h + 8) +
                 get32(h + 12) + get32(h + 16);
  if (h[0] != SZ_VERSION || h[1] >= RS_EVENT__COUNT || (h[2] & ~7u) || h[3] ||
      len > n)
    return 0;
  *seq = get64(v);
  *t = (int64_t)get64(h + 32);
  return (size_t)len;
}

/* The pending record at e into batch memory (its bytes may be freed
 * before the batch leaves the graph). */
static int pend_take(sz_ctx_t *c, const sz_pend_t *e, rs_interaction_t **out) {
  const unsigned char *v = e->chunk->data + e->off + 8;
  size_t ul = get32(v + 4), il = get32(v + 8), dl = get32(v + 12),
         pl = get32(v + 16);
  rs_interaction_t *ia = c->host->batch_alloc(c->op, sizeof(*ia));
  char *text = c->host->batch_alloc(c->op, ul + il + dl + pl + 1);
  if (!ia || !text)
    return RS_ENOMEM;
  memcpy(text, v + SZ_PEND_HDR, ul + il + dl + pl);
  *ia = (rs_interaction_t){.user = text,
                           .user_len = (uint32_t)ul,
                           .item = text + ul,
                           .item_len = (uint32_t)il,
                           .device = (v[2] & 2) ? text + ul + il : NULL,
                           .device_len = (uint32_t)dl,
                           .page = (v[2] & 4) ? text + ul + il + dl : NULL,
                           .page_len = (uint32_t)pl,
                           .event_type = v[1],
                           .has_value = v[2] & 1,
                           .value = get_f64(v + 24),
                           .timestamp_ms = e->t};
  *out = ia;
  return 0;
}

/* Deletes chunk ch, from the state too if it was written. */
static int chunk_drop(sz_ctx_t *c, sz_part_t *p, int32_t partition,
                      sz_chunk_t *ch) {
  if (ch->stored) {
    unsigned char k[SZ_CHUNK_KEY];
    chunk_key(k, ch->first_seq);
    int rc = c->host->state_delete(c->op, partition, k, sizeof k);
    if (rc)
      return state_error(c, partition, "deleting pending records", "", 0, rc);
  }
  chunk_free(c, p, ch);
  return 0;
}

/* One record of chunk ch was applied: a chunk with none left goes,
 * unless it is still the current batch's. */
static int chunk_release(sz_ctx_t *c, sz_part_t *p, int32_t partition,
                         sz_chunk_t *ch) {
  if (--ch->live || ch == p->open)
    return 0;
  return chunk_drop(c, p, partition, ch);
}

/* At the end of a batch: its records still waiting (few: with a
 * time-ordered input most of a batch has been applied by then) are copied
 * into one chunk, written to the state as one entry. */
static int chunk_close(sz_ctx_t *c, sz_part_t *p, int32_t partition) {
  for (size_t i = 0; i < pend_count(p); i++) {
    sz_pend_t *e =
        i < p->n_pend
            ? &p->pend[i]
            : &p->pring[(p->pr_head + i - p->n_pend) & (p->pr_cap - 1)];
    if (!e->ia)
      continue;
    int rc = pend_append(c, p, e->seq, e->ia, &e->chunk, &e->off);
    if (rc)
      return rc;
    e->ia = NULL;
  }
  sz_chunk_t *ch = p->open;
  if (!ch)
    return 0;
  p->open = NULL;
  unsigned char k[SZ_CHUNK_KEY];
  chunk_key(k, ch->first_seq);
  int rc = c->host->state_put(c->op, partition, k, sizeof k, ch->data, ch->len);
  if (rc)
    return state_error(c, partition, "writing pending records", "", 0, rc);
  ch->stored = 1;
  return 0;
}

/* ------------------------------------------------ partition agenda */

static int meta_store(sz_ctx_t *c, sz_part_t *p, int32_t partition) {
  if (p->max_t == p->saved_max && p->seq == p->saved_seq &&
      p->nb_log == p->saved_nb_log)
    return 0;
  unsigned char v[SZ_META_LEN] = {SZ_META_VERSION, (unsigned char)p->nb_log};
  put64(v + 8, (uint64_t)p->max_t);
  put64(v + 16, p->seq);
  /* Every record still pending now is later than this watermark, and
   * every record of a stored chunk at or before it has been applied. */
  put64(v + 24, (uint64_t)watermark(c, p));
  int rc = c->host->state_put(c->op, partition, "m", 1, v, sizeof v);
  if (rc)
    return state_error(c, partition, "writing the partition's watermark", "", 0,
                       rc);
  p->saved_max = p->max_t;
  p->saved_seq = p->seq;
  p->saved_nb_log = p->nb_log;
  return 0;
}

/* Version 1 (user entries under "u" user) is read and rewritten as 2. */
static int meta_decode(const void *vv, size_t n, int64_t *max_t, uint64_t *seq,
                       int64_t *wm, unsigned *nb_log) {
  const unsigned char *v = vv;
  if (n != SZ_META_LEN || (v[0] != 1 && v[0] != SZ_META_VERSION) ||
      v[1] > SZ_MAX_NB_LOG || (v[0] == 1 && v[1]))
    return -1;
  *nb_log = v[1];
  for (int i = 2; i < 8; i++)
    if (v[i])
      return -1;
  *max_t = (int64_t)get64(v + 8);
  *seq = get64(v + 16);
  *wm = (int64_t)get64(v + 24);
  return 0;
}

typedef struct scan_arg {
  sz_ctx_t *c;
  sz_part_t *p;
  int64_t wm;       /* from the meta entry, which comes first */
  int meta;         /* there is one */
  uint64_t max_seq; /* of the pending records */
  int64_t max_pend;
} scan_arg_t;

/* A user's entry found by the rebuild scan: checked, kept in memory as it
 * is, and its sessions queued for closing. */
static int scan_user(sz_ctx_t *c, sz_part_t *p, const char *user, size_t ul,
                     const unsigned char *v, size_t vlen, int legacy) {
  /* Decoded in full once here, so that every entry in memory is well
   * formed (the in-place paths rely on it). */
  int rc = user_decode(c, v, vlen);
  sz_uent_t *e;
  if (rc == RS_ENOMEM)
    return rc;
  if (rc)
    goto bad;
  if ((rc = uent_get(c, p, user_hash(user, ul), user, ul, &e)) ||
      uent_reserve(c, e, vlen))
    return rc ? rc : RS_ENOMEM;
  if (e->present) {
    snprintf(c->why, sizeof c->why, "stored twice");
    goto bad;
  }
  memcpy(e->val, v, vlen);
  e->len = vlen;
  e->h_last = 0;
  e->present = 1;
  if (legacy) {
    e->legacy = 1;
    if ((rc = uent_dirty(c, p, e)))
      return rc;
  }
  for (size_t k = 0; k < c->u.n && !rc; k++)
    rc = due_push(c, p, deadline(c, c->u.s[k].end), e, c->u.s[k].id);
  return rc;
bad:;
  char why[sizeof c->why];
  memcpy(why, c->why, sizeof why);
  why[120] = '\0';
  snprintf(c->why, sizeof c->why, "user '%.*s' (%zu bytes): %.120s",
           (int)(ul > 64 ? 64 : ul), user, vlen, why);
  return RS_ESTATE;
}

/* One entry of the partition, while rebuilding its agenda. */
static int scan_one(void *opaque, const void *kk, size_t klen, const void *vv,
                    size_t vlen) {
  scan_arg_t *a = opaque;
  sz_ctx_t *c = a->c;
  sz_part_t *p = a->p;
  const unsigned char *k = kk, *v = vv;
  int rc = 0;
  if (klen == 1 && k[0] == 'm') {
    if (meta_decode(v, vlen, &p->max_t, &p->seq, &a->wm, &p->nb_log)) {
      snprintf(c->why, sizeof c->why, "the partition's meta entry (%zu bytes)",
               vlen);
      return RS_ESTATE;
    }
    p->saved_max = p->max_t;
    p->saved_seq = p->seq;
    p->saved_nb_log = p->nb_log;
    a->meta = 1;
  } else if (klen == SZ_CHUNK_KEY && k[0] == 'p') {
    /* A chunk: its records after the stored watermark still wait; the
     * others were applied (it is deleted after the scan if none wait). */
    sz_chunk_t *ch = chunk_new(c, p, get_be64(k + 1));
    if (!ch || grow_bytes(c, &ch->data, &ch->cap, vlen ? vlen : 1))
      return RS_ENOMEM;
    memcpy(ch->data, v, vlen);
    ch->len = vlen;
    ch->stored = 1;
    for (size_t off = 0, n; off < vlen && !rc; off += n) {
      int64_t t;
      uint64_t seq;
      if (!(n = pend_parse(v + off, vlen - off, &t, &seq))) {
        snprintf(c->why, sizeof c->why,
                 "pending records %" PRIu64 " (%zu bytes, bad at byte %zu)",
                 ch->first_seq, vlen, off);
        return RS_ESTATE;
      }
      if (a->wm != SZ_NONE && t <= a->wm)
        continue;
      const unsigned char *r = v + off + 8;
      rc = pend_push(c, p, t, seq,
                     user_hash((const char *)r + SZ_PEND_HDR, get32(r + 4)), ch,
                     off, NULL);
      ch->live++;
      /* Arrival numbers and the largest time stay past every pending
       * record's, whatever the meta entry says. */
      if (seq > a->max_seq)
        a->max_seq = seq;
      if (a->max_pend == SZ_NONE || t > a->max_pend)
        a->max_pend = t;
    }
  } else if (klen == SZ_BUCKET_KEY && k[0] == 's') {
    /* A bucket: its users, each length-prefixed, with their entries. */
    uint32_t b = (uint32_t)k[1] << 24 | (uint32_t)k[2] << 16 |
                 (uint32_t)k[3] << 8 | k[4];
    if (!a->meta || b >> p->nb_log || vlen < SZ_BUCKET_HDR || v[0] != 1 ||
        v[1] || v[2] || v[3]) {
      snprintf(c->why, sizeof c->why,
               "user bucket %" PRIu32 " (%zu bytes; %u buckets)", b, vlen,
               1u << p->nb_log);
      return RS_ESTATE;
    }
    size_t count = get32(v + 4), off = SZ_BUCKET_HDR;
    for (size_t i = 0; i < count && !rc; i++) {
      if (vlen - off < 8 || vlen - off - 8 < (size_t)get32(v + off) ||
          vlen - off - 8 - get32(v + off) < (size_t)get32(v + off + 4)) {
        snprintf(c->why, sizeof c->why,
                 "user bucket %" PRIu32 " (%zu bytes, user %zu cut short)", b,
                 vlen, i);
        return RS_ESTATE;
      }
      size_t ul = get32(v + off), ulen = get32(v + off + 4);
      const char *user = (const char *)v + off + 8;
      if ((user_hash(user, ul) & ((1u << p->nb_log) - 1)) != b) {
        snprintf(c->why, sizeof c->why,
                 "user '%.*s' in bucket %" PRIu32 " (belongs elsewhere)",
                 (int)(ul > 64 ? 64 : ul), user, b);
        return RS_ESTATE;
      }
      rc = scan_user(c, p, user, ul, v + off + 8 + ul, ulen, 0);
      off += 8 + ul + ulen;
    }
    if (!rc && off != vlen) {
      snprintf(c->why, sizeof c->why,
               "user bucket %" PRIu32 " (%zu trailing bytes)", b, vlen - off);
      return RS_ESTATE;
    }
  } else if (klen >= 1 && k[0] == 'u') {
    /* Version 1 kept each user under its own key: loaded, rewritten into
     * its bucket and deleted at the next checkpoint. */
    rc = scan_user(c, p, (const char *)k + 1, klen - 1, v, vlen, 1);
  } else {
    snprintf(c->why, sizeof c->why, "an entry with an unknown key (%zu bytes)",
             klen);
    return RS_ESTATE;
  }
  return rc;
}

/* The partition's agenda, ready for a batch: rebuilt by one scan the first
 * time, and whenever the stored meta no longer matches what this instance
 * last wrote (the state was dropped or replaced). */
static int part_ready(sz_ctx_t *c, int32_t partition, sz_part_t **out) {
  size_t idx = (size_t)partition;
  if (idx >= c->n_parts) {
    size_t old = c->n_parts;
    if (grow(c->host, &c->parts, &c->n_parts, idx + 1, sizeof(sz_part_t *)))
      return RS_ENOMEM;
    memset(c->parts + old, 0, (c->n_parts - old) * sizeof(sz_part_t *));
  }
  sz_part_t *p = c->parts[idx];
  if (!p) {
    p = c->host->calloc(1, sizeof(*p));
    if (!p)
      return RS_ENOMEM;
    c->parts[idx] = p;
    part_clear(c, p);
  }
  *out = p;
  void *v;
  size_t n;
  int64_t max_t = SZ_NONE;
  uint64_t seq = 0;
  int rc = c->host->state_get(c->op, partition, "m", 1, &v, &n);
  if (rc && rc != RS_ENOENT)
    return state_error(c, partition, "reading the partition's watermark", "", 0,
                       rc);
  int64_t wm;
  unsigned nb_log = 0;
  if (!rc && meta_decode(v, n, &max_t, &seq, &wm, &nb_log)) {
    c->host->log(c->op, RS_LOG_ERROR,
                 "partition %" PRId32 ": stored watermark entry is not a "
                 "version-%d sessionize entry (%zu bytes); rebuild the state "
                 "by replay",
                 partition, SZ_META_VERSION, n);
    return RS_ESTATE;
  }
  if (p->loaded && max_t == p->max_t && seq == p->seq && nb_log == p->nb_log)
    return 0;
  if (p->loaded)
    c->host->counter_add(c->c_reloads, 1);
  part_clear(c, p);
  scan_arg_t a = {c, p, SZ_NONE, 0, 0, SZ_NONE};
  rc = c->host->state_scan(c->op, partition, "", 0, scan_one, &a);
  for (sz_chunk_t *ch = p->chunks, *next; !rc && ch; ch = next) {
    next = ch->next;
    if (!ch->live)
      rc = chunk_drop(c, p, partition, ch);
  }
  if (!rc && a.max_seq > p->seq)
    p->seq = a.max_seq;
  if (!rc && a.max_pend != SZ_NONE &&
      (p->max_t == SZ_NONE || a.max_pend > p->max_t))
    p->max_t = a.max_pend;
  if (rc) {
    part_clear(c, p);
    if (rc == RS_ESTATE && c->why[0]) {
      c->host->log(c->op, RS_LOG_ERROR,
                   "partition %" PRId32 ": stored state does not parse: %s; "
                   "it was written by another operator or is corrupt: "
                   "rebuild the state by replay",
                   partition, c->why);
      c->why[0] = '\0';
    }
    return rc;
  }
  p->loaded = 1;
  return 0;
}

/* ------------------------------------------------------- process */

static const char *check(sz_ctx_t *c, const rs_record_t *rec) {
  if (rec->kind != RS_KIND_INTERACTION) {
    snprintf(c->why, sizeof c->why,
             "sessionize expects interaction records (kind %d), got kind "
             "%" PRIu32 "; put it after parse",
             RS_KIND_INTERACTION, rec->kind);
    return c->why;
  }
  const rs_interaction_t *ia = rec->payload;
  return rs_interaction_problem(ia, c->why, sizeof c->why);
}

static int sz_one(sz_ctx_t *c, sz_part_t *p, int32_t partition,
                  const rs_record_t *rec, uint64_t hash) {
  const char *why = check(c, rec);
  if (why) {
    int rc = c->host->dead_letter(c->op, rec, why);
    c->why[0] = '\0';
    return rc < 0 ? rc : 0;
  }
  const rs_interaction_t *ia = rec->payload;
  int64_t t = ia->timestamp_ms;
  int rc;
  c->cur = rec;
  c->ordinal = 0;
  uint64_t seq = ++p->seq;
  if (p->max_t == SZ_NONE || t > p->max_t)
    p->max_t = t;
  int64_t w = watermark(c, p);
  if (t < w) {
    if ((rc = apply_late(c, p, partition, rec, hash, ia, w)))
      return rc;
  } else if ((rc = pend_push(c, p, t, seq, hash, NULL, 0, ia))) {
    /* Waits as it is (batch memory) until the watermark reaches it; only
     * the records still waiting at the batch's end are copied. */
    return rc;
  }
  /* Pending records the watermark has reached, in (time, arrival) order
   * (this record among them when it is not later than the watermark). */
  for (const sz_pend_t *top; (top = pend_top(p)) && top->t <= w;) {
    sz_pend_t e = pend_pop(p);
    rs_interaction_t *pia = (rs_interaction_t *)e.ia;
    if (e.chunk && (rc = pend_take(c, &e, &pia)))
      return rc;
    if ((rc = apply_in_bounds(c, p, partition, e.hash, pia)) ||
        (e.chunk && (rc = chunk_release(c, p, partition, e.chunk))))
      return rc;
  }
  /* Sessions (and idle users) the watermark has passed. */
  for (const sz_due_t *top; (top = due_top(p)) && top->key < w;) {
    sz_due_t d = due_pop(p);
    if ((top = due_top(p)) && top->key < w) {
      /* The next one's user, while this one is handled. */
      const char *b = (const char *)top->ent;
      for (int l = 0; l < 4; l++)
        __builtin_prefetch(b + 64 * l);
    }
    rc = run_due(c, p, partition, &d);
    uent_unref(c, p, d.ent);
    if (rc)
      return rc;
  }
  /* The next close is usually a record or two away, and its user's block
   * (last touched gap + grace of event time ago) is a cache miss: fetch
   * it now. */
  if (due_count(p)) {
    const char *b = (const char *)due_top(p)->ent;
    for (int l = 0; l < 4; l++)
      __builtin_prefetch(b + 64 * l);
  }
  return 0;
}

static int sz_idle(sz_ctx_t *c, int32_t partition);
static int sz_idle_init(sz_ctx_t *c, char *errstr, size_t errstr_size);

static int sz_process(rs_op_t *op, void *vctx, const rs_batch_t *batch) {
  sz_ctx_t *c = vctx;
  if (batch->count == 0 && c->idle_on)
    return sz_idle(c, batch->partition); /* host->idle_notify */
  int32_t partition = batch->partition;
  if (partition < 0) {
    c->host->log(op, RS_LOG_ERROR,
                 "batch of partition %" PRId32 ": sessions need a partition "
                 ">= 0 (each partition has its own watermark)",
                 partition);
    return RS_EINVAL;
  }
  if (c->failed) {
    c->host->log(op, RS_LOG_ERROR,
                 "an earlier batch failed: the sessions in memory are not "
                 "those of any checkpoint; restart from the last checkpoint");
    return RS_ESTATE;
  }
  sz_part_t *p = NULL;
  int rc = part_ready(c, partition, &p);
  size_t n = batch->count;
  if (!rc &&
      grow(c->host, &c->hashes, &c->cap_hashes, n ? n : 1, sizeof(uint64_t)))
    rc = RS_ENOMEM;
  /* A record's user is a random one among many: its table slot, entry and
   * value are each a cache miss. They are fetched a few records ahead
   * (hints only: a slot taken by another user, or a table that grows, just
   * makes one useless). */
  for (size_t i = 0; i < n && !rc; i++) {
    const rs_record_t *r = &batch->records[i];
    const rs_interaction_t *ia = r->payload;
    c->hashes[i] = r->kind == RS_KIND_INTERACTION && ia && ia->user
                       ? user_hash(ia->user, ia->user_len)
                       : 0;
  }
  for (size_t i = 0; i < n && !rc; i++) {
    size_t mask = p->tab_cap - 1;
    if (p->tab_cap) {
      if (i + SZ_AHEAD * 3 < n)
        __builtin_prefetch(&p->tab[c->hashes[i + SZ_AHEAD * 3] & mask]);
      if (i + SZ_AHEAD * 2 < n) {
        uint64_t h = c->hashes[i + SZ_AHEAD * 2];
        size_t j = (size_t)h & mask;
        const sz_uent_t *e = NULL;
        for (int k = 0; k < 4 && p->tab[j].e; k++, j = (j + 1) & mask)
          if (p->tab[j].hash == h) {
            e = p->tab[j].e;
            break;
          }
        if (e) {
          __builtin_prefetch(e);
          __builtin_prefetch((const char *)e + 64);
          __builtin_prefetch((const char *)e + 128);
          __builtin_prefetch((const char *)e + 192);
          __builtin_prefetch((const char *)e + 256);
        }
      }
    }
    rc = sz_one(c, p, partition, &batch->records[i], c->hashes[i]);
  }
  c->cur = NULL;
  if (!rc && (!(rc = chunk_close(c, p, partition))))
    rc = meta_store(c, p, partition);
  if (rc) {
    /* Memory is part way through a batch, and the state holds parts of it
     * (pending records, the meta entry) but not the user entries: neither
     * may be checkpointed. The engine stops and restarts from the last
     * checkpoint. */
    c->failed = 1;
    if (p)
      part_clear(c, p);
  }
  return rc;
}

/* Before each checkpoint: the user entries changed since the last one go
 * to the state, in the same write batch as the input offsets. */
static int sz_checkpoint(rs_op_t *op, void *vctx) {
  sz_ctx_t *c = vctx;
  if (c->failed) {
    c->host->log(op, RS_LOG_ERROR,
                 "not checkpointing: an earlier batch failed part way");
    return RS_ESTATE;
  }
  for (size_t i = 0; i < c->n_parts; i++) {
    int rc;
    if (c->parts[i] && c->parts[i]->loaded &&
        (rc = part_flush(c, c->parts[i], (int32_t)i))) {
      c->failed = 1;
      return rc;
    }
  }
  return 0;
}

/* ------------------------------------------------------- lifecycle */

static int sz_init(rs_op_t *op, void *vctx, const rs_host_api_t *host,
                   char *errstr, size_t errstr_size) {
  sz_ctx_t *c = vctx;
  c->op = op;
  c->host = host;
  if (c->gap < 0 || c->grace < 0 || c->ooo < 0 || c->max_duration < 0 ||
      c->state_ttl < 0 || c->max_events < 1) {
    snprintf(errstr, errstr_size,
             "durations must be >= 0 and "
             "max_events_per_session >= 1");
    return RS_ECONFIG;
  }
  if (!RS_HOST_HAS(host, state_get) || !RS_HOST_HAS(host, state_put) ||
      !RS_HOST_HAS(host, state_delete) || !RS_HOST_HAS(host, state_scan)) {
    snprintf(errstr, errstr_size,
             "the host provides no keyed state (state_get/put/delete/scan)");
    return RS_ENOTSUP;
  }
  int64_t floor = sat_add(sat_add(c->gap, c->gap), c->grace);
  c->ttl = c->state_ttl > floor ? c->state_ttl : floor;
  /* A user's sessions each start more than gap after the last and stay
   * open until the largest event time seen passes their end + gap + grace
   * + max_out_of_orderness: with these options one user can hold more than
   * SZ_MAX_OPEN at once, and records past that are dead-lettered
   * (refuse_open). Said at start, not first at the bot. */
  int64_t reach = sat_add(sat_add(c->gap, c->grace), c->ooo) / (c->gap + 1) + 1;
  if (reach > SZ_MAX_OPEN)
    host->log(op, RS_LOG_WARN,
              "gap %" PRId64 " ms, grace %" PRId64
              " ms and max_out_of_orderness %" PRId64
              " ms let one user hold up to %" PRId64
              " open sessions; past %d, a record that would open another "
              "is dead-lettered (docs/SESSIONS.md, Limits)",
              c->gap, c->grace, c->ooo, reach, SZ_MAX_OPEN);
  struct {
    rs_counter_t **c;
    const char *name, *help;
  } counters[] = {
      {&c->c_late, "late_records",
       "records later than grace for every open session, sent to port late"},
      {&c->c_late_acc, "late_accepted",
       "records behind the watermark accepted into an open (or new) session"},
      {&c->c_opened, "sessions_opened", "sessions started"},
      {&c->c_closed, "sessions_closed", "session summaries emitted"},
      {&c->c_merged, "sessions_merged",
       "sessions absorbed into an earlier one by a late record"},
      {&c->c_split, "sessions_split", "sessions ended by max_session_duration"},
      {&c->c_purged, "users_purged", "idle user entries deleted (state_ttl)"},
      {&c->c_reloads, "state_reloads",
       "partition agendas rebuilt because the state changed underneath"},
  };
  for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
    *counters[i].c = host->counter(op, counters[i].name, counters[i].help);
    if (!*counters[i].c) {
      snprintf(errstr, errstr_size, "out of memory creating counters");
      return RS_ENOMEM;
    }
  }
  return sz_idle_init(c, errstr, errstr_size);
}

static void sz_destroy(rs_op_t *op, void *vctx) {
  sz_ctx_t *c = vctx;
  const rs_host_api_t *h = c->host;
  if (!h)
    return;
  for (size_t i = 0; i < c->n_parts; i++)
    if (c->parts[i]) {
      part_clear(c, c->parts[i]);
      h->free(c->parts[i]->pend);
      h->free(c->parts[i]->pring);
      h->free(c->parts[i]->due);
      h->free(c->parts[i]->dring);
      h->free(c->parts[i]->tab);
      h->free(c->parts[i]->dirty);
      h->free(c->parts[i]);
    }
  h->free(c->parts);
  for (size_t k = 0; k < c->u.cap; k++)
    h->free(c->u.s[k].ev);
  h->free(c->u.s);
  h->free(c->out);
  h->free(c->key);
  h->free(c->groups);
  h->free(c->hashes);
  h->free(c->bstart);
  h->free(c->order);
  while (c->slabs) {
    sz_slab_t *s = c->slabs;
    c->slabs = s->next;
    h->free(s);
  }
}

/* Referenced by the built-in operator registry. */
extern const rs_operator_def_t rs_op_sessionize;
const rs_operator_def_t rs_op_sessionize = {
    .abi_version = RS_ABI_VERSION,
    .struct_size = sizeof(rs_operator_def_t),
    .name = "sessionize",
    .description =
        "Event-time session windows per user (the record key): a session is "
        "a run of events at most `gap` apart; it closes when the "
        "partition's watermark (largest event time - max_out_of_orderness) "
        "passes its end + gap + grace. Port `out`: every accepted event "
        "enriched with session id, start, position and time since the "
        "previous event (kind session_event). Port `sessions`: a summary per "
        "closed session (kind session). Port `late`: records too late for "
        "any open session, unchanged. Disorder within max_out_of_orderness "
        "does not change any output; late records within grace extend or "
        "merge open sessions. Sessions live in the keyed state store. See "
        "docs/SESSIONS.md.",
    .ctx_size = sizeof(sz_ctx_t),
    .options = sz_options,
    .n_options = sizeof(sz_options) / sizeof(sz_options[0]),
    .output_ports = sz_ports,
    .min_inputs = 1,
    .max_inputs = 1,
    .init = sz_init,
    .process = sz_process,
    .on_timer = NULL,
    .checkpoint = sz_checkpoint,
    .destroy = sz_destroy,
};

/* ------------------------------------------------------- idle_close */

/* Asks the host for idle batches when idle_close is set. A host that
 * delivers none (replays, of topics or files, and recstream eval's local
 * host; exactly_once and deterministic order are refused with the config
 * already) leaves closing to the watermark, said once in the log. */
static int sz_idle_init(sz_ctx_t *c, char *errstr, size_t errstr_size) {
  if (!c->idle_close)
    return 0;
  int rc = RS_HOST_HAS(c->host, idle_notify)
               ? c->host->idle_notify(c->op, c->idle_close)
               : RS_ENOTSUP;
  if (rc == RS_ENOTSUP) {
    c->host->log(c->op, RS_LOG_WARN,
                 "idle_close is ignored: this host delivers no wall-clock "
                 "idle batches (a replay, eval, exactly_once or "
                 "deterministic order); sessions close when the watermark "
                 "passes them");
    return 0;
  }
  if (rc) {
    snprintf(errstr, errstr_size,
             "idle_close: the host refused idle batches: %s", rs_strerror(rc));
    return rc;
  }
  c->idle_on = 1;
  return 0;
}

/* An idle batch: the partition processed no record for idle_close of
 * wall-clock time. Its watermark steps forward exactly as a record would
 * move it to just past the latest close deadline of its open sessions:
 * every waiting record is applied, in (event time, arrival) order, then
 * every open session closes, in (deadline, user, id) order, with its
 * summary on port `sessions`. The watermark stays there (the meta entry's
 * largest event time becomes it + max_out_of_orderness), so later records
 * are judged against it by the usual rules. With no open session and
 * nothing waiting nothing changes. When the step happens is wall-clock
 * time (non-deterministic); what it does depends only on the records
 * before it. Outputs carry no input position (src_offset -1). */
static int sz_idle(sz_ctx_t *c, int32_t partition) {
  if (partition < 0) {
    c->host->log(c->op, RS_LOG_ERROR,
                 "idle batch of partition %" PRId32 ": sessions need a "
                 "partition >= 0",
                 partition);
    return RS_EINVAL;
  }
  if (c->failed) {
    c->host->log(c->op, RS_LOG_ERROR,
                 "an earlier batch failed: the sessions in memory are not "
                 "those of any checkpoint; restart from the last checkpoint");
    return RS_ESTATE;
  }
  sz_part_t *p = NULL;
  int rc = part_ready(c, partition, &p);
  if (!rc && (pend_count(p) || due_count(p))) {
    rs_record_t src = {.src_partition = partition, .src_offset = -1};
    int64_t w = watermark(c, p), last = SZ_NONE;
    c->cur = &src;
    c->ordinal = 0;
    while (!rc && pend_count(p)) {
      sz_pend_t e = pend_pop(p);
      rs_interaction_t *pia = (rs_interaction_t *)e.ia;
      if (e.chunk && (rc = pend_take(c, &e, &pia)))
        break;
      if (!(rc = apply_in_bounds(c, p, partition, e.hash, pia)) && e.chunk)
        rc = chunk_release(c, p, partition, e.chunk);
    }
    while (!rc && due_count(p)) {
      sz_due_t d = due_pop(p);
      if (last == SZ_NONE || d.key > last)
        last = d.key;
      rc = run_due(c, p, partition, &d);
      uent_unref(c, p, d.ent);
    }
    c->cur = NULL;
    /* The largest key popped is the latest deadline closed (a stale entry
     * is never later than the deadline that closed or absorbed its
     * session), so the watermark just past it closes exactly these. */
    if (!rc && last != SZ_NONE && (w == SZ_NONE || sat_add(last, 1) > w))
      p->max_t = sat_add(sat_add(last, 1), c->ooo);
    if (!rc)
      rc = meta_store(c, p, partition);
  }
  if (rc) {
    c->failed = 1; /* as in sz_process: the engine restarts */
    if (p)
      part_clear(c, p);
  }
  return rc;
}
