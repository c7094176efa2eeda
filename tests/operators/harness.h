/* In-process operator harness: plays the engine's side of the operator ABI
 * without Kafka, so an operator test can push records in and assert on what
 * comes out and on the state it keeps.
 *
 * It implements a whole rs_host_api_t (ABI minor 3): emit() and
 * dead_letter() collect deep copies (they survive later pushes),
 * batch_alloc() serves from an arena reset at the start of every push,
 * counters are readable by name, random() is deterministic, timer_set
 * returns RS_ENOTSUP like the current engine, and idle batches
 * (idle_notify) come when the test calls rs_harness_idle(). Like the engine's
 * runtime, it counts records_in (records pushed), records_out (successful
 * emits) and dead_lettered for every operator; host->counter() with one of
 * those names returns the same counter. Options are given as YAML scalar
 * strings and written into the operator context from its option table, with
 * defaults, bounds and unknown-key rejection, before init() runs.
 *
 * Keyed state is the real thing: each harness owns a RocksDB store (state/)
 * in a private mkdtemp directory under $TMPDIR (default /tmp), with one
 * column family named after the operator type, and a write-back cache over
 * it bounded at RS_HARNESS_CACHE_BYTES (see rs_harness_set_cache_bytes to
 * exercise eviction). state_get/put/delete/scan and the minor-1 helpers
 * go through that cache, RS_PARTITION_SHARED included (stored under the
 * partition prefix 0xFFFFFFFF). Nothing reaches the store before
 * rs_harness_checkpoint(); rs_harness_restart() closes and reopens it, so
 * a test sees exactly what a restarted engine would. The harness also
 * checks the borrowing rules: the value state_get lends is overwritten at
 * the next state_* call, state_* from inside a scan callback is refused,
 * and partitions below 0 other than RS_PARTITION_SHARED are RS_EINVAL.
 * The directory is removed by rs_harness_destroy(); a test that fails an
 * assertion before destroying its harness leaves it behind for inspection
 * (rs_harness_state_dir names it).
 *
 * Not thread-safe; one harness per test is the intended use.
 */
#ifndef RS_TEST_HARNESS_H
#define RS_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "recstream/operator.h"
#include "state/cache.h"

/* Default bound of the harness's state cache. */
#define RS_HARNESS_CACHE_BYTES ((size_t)1 << 20)

typedef struct rs_harness rs_harness_t;

/* A record sent to the dead-letter topic: the original key and value
 * (copied), the error and the source position. */
typedef struct rs_harness_dead {
  const void *key;
  size_t key_len;
  const void *value;
  size_t value_len;
  const char *error;
  int32_t src_partition;
  int64_t src_offset;
} rs_harness_dead_t;

/* Creates an instance of `def` with an empty state directory. `options` is
 * NULL or a NULL-terminated list of key, value, key, value, ... with values
 * as YAML scalars ("1MiB", "true", "30s"); they are copied (restarts reuse
 * them). On failure returns NULL with a message in errstr (state, option
 * and init() errors alike). Free with rs_harness_destroy(), which runs
 * destroy(), drops state not checkpointed and removes the directory. */
rs_harness_t *rs_harness_new(const rs_operator_def_t *def,
                             const char *const *options, char *errstr,
                             size_t errstr_size);
void rs_harness_destroy(rs_harness_t *h);
/* As rs_harness_new, with a peer for the ABI minor-2 peer_* calls:
 * host->peer_open(op, peer_name) returns handle 0, and peer_state_get
 * reads `peer`'s state through its cache (what that harness's operator
 * wrote, checkpointed or not), with the borrowing rule of state_get. Any
 * other name is RS_ENOENT. `peer` is borrowed: destroy it after h. */
rs_harness_t *rs_harness_new_with_peer(const rs_operator_def_t *def,
                                       const char *const *options,
                                       const char *peer_name,
                                       rs_harness_t *peer, char *errstr,
                                       size_t errstr_size);

/* Writes typed option values from def's option table into ctx: each given
 * value (key/value pairs as above), else the default; rejects unknown and
 * repeated keys, missing required options, malformed values and values out
 * of bounds. RS_OPT_STRING values are rs_strdup()ed and appended to
 * *strings (an array of *n_strings pointers, grown with rs_realloc) so the
 * caller can free them. Returns 0 or RS_ECONFIG with a message naming the
 * option. */
int rs_harness_set_options(const rs_operator_def_t *def, void *ctx,
                           const char *const *options, char ***strings,
                           size_t *n_strings, char *errstr, size_t errstr_size);

/* Runs process() on one batch from input 0 (or `input`) of `partition`.
 * Returns what process() returned. The records are borrowed for the call. */
int rs_harness_push(rs_harness_t *h, int32_t partition, const rs_record_t *recs,
                    size_t n);
int rs_harness_push_input(rs_harness_t *h, uint32_t input, int32_t partition,
                          const rs_record_t *recs, size_t n);
/* One feedback record (user, impression id or NULL, item, type, value,
 * event time ts, input offset) from `input` of partition 0. */
int rs_harness_push_feedback(rs_harness_t *h, uint32_t input, const char *user,
                             const char *imp, const char *item, int type,
                             double value, int64_t ts, int64_t offset);
/* host->idle_notify: the harness records the interval the operator asked
 * for in init() (rs_harness_idle_ms: 0 when it asked for none; a restart
 * starts from 0 again) and has no clock of its own: rs_harness_idle()
 * delivers an idle batch for `partition` (process() with count 0 and
 * records NULL, as the engine does once the partition ran nothing for the
 * interval). RS_EINVAL when the operator asked for none. */
int rs_harness_idle(rs_harness_t *h, int32_t partition);
int64_t rs_harness_idle_ms(const rs_harness_t *h);
/* Runs the operator's query() (ABI minor 3) for key in partition, as the
 * engine does for GET /v1/recommendations/{key}: with state writes,
 * emit() and dead_letter() refused (RS_EINVAL) while it runs. 0 with
 * *json (NUL-terminated, free with rs_free) and *json_len; the operator's
 * error otherwise (RS_ENOENT: nothing kept for the key), RS_ENOTSUP when
 * the operator has no query(). */
int rs_harness_query(rs_harness_t *h, int32_t partition, const void *key,
                     size_t key_len, char **json, size_t *json_len);
/* Runs checkpoint() if the operator has one, then writes every dirty
 * state entry to the store in one batch (rs_store_checkpoint with no
 * offsets). Returns the first error: the operator's, or RS_ESTATE with a
 * message in rs_harness_errmsg(). */
int rs_harness_checkpoint(rs_harness_t *h);

/* Simulates the engine process going away and coming back over the same
 * state directory. crash == 0 (clean shutdown): the operator's
 * checkpoint(), destroy(), then a store checkpoint. crash != 0: destroy()
 * only (to free the instance), so state written since the last
 * rs_harness_checkpoint() is lost. Either way the cache is dropped, the
 * store closed and reopened, a new cache (same bound) created, and the
 * operator re-created: zeroed context, the same options, init(). Counters,
 * logs and collected records are the harness's and carry over (the
 * operator's host->counter() calls find its counters again). Returns 0, or
 * the error of the failing step with a message in rs_harness_errmsg();
 * after a failed re-init, pushes return RS_EINVAL. */
int rs_harness_restart(rs_harness_t *h, int crash);

/* Sets the state cache's byte bound (0: RS_HARNESS_CACHE_BYTES). Replaces
 * the cache at once, which is only allowed while it holds nothing dirty
 * (before the first state write, or right after a checkpoint): else
 * RS_EINVAL. The bound also applies after restarts. */
int rs_harness_set_cache_bytes(rs_harness_t *h, size_t bytes);
/* The state cache's statistics (evictions, spill bytes, ...). */
void rs_harness_cache_stats(const rs_harness_t *h, rs_cache_stats_t *out);

/* Reads state as the operator would (through the cache, so uncheckpointed
 * writes are visible). 0 with *value (NUL-terminated for convenience)
 * borrowed until the next rs_harness_* call, RS_ENOENT if absent. */
int rs_harness_state_get(rs_harness_t *h, int32_t partition, const void *key,
                         size_t key_len, const void **value, size_t *value_len);
/* Writes state as the operator would (dirty until the next checkpoint),
 * e.g. to plant a corrupt value. */
int rs_harness_state_put(rs_harness_t *h, int32_t partition, const void *key,
                         size_t key_len, const void *value, size_t value_len);
/* The state directory; borrowed until rs_harness_destroy(). */
const char *rs_harness_state_dir(const rs_harness_t *h);
/* Why the last failing state call, checkpoint or restart failed. */
const char *rs_harness_errmsg(const rs_harness_t *h);
/* Emulates an older host: host->struct_size becomes struct_size (0 or
 * anything larger than the table restores the full size), so RS_HOST_HAS
 * reports later fields absent. Operators usually look once, in init():
 * restart after setting it. */
void rs_harness_set_host_struct_size(rs_harness_t *h, uint32_t struct_size);

/* What host->port_wanted (ABI minor 3) answers for `port` (< 64): every
 * port of the operator is wanted until set otherwise, ports past the
 * operator's last are never. Emits on an unwanted port are still collected,
 * so a test sees what the operator emitted there (e.g. a record it did not
 * build). Operators usually ask per batch: set it before pushing. */
void rs_harness_set_port_wanted(rs_harness_t *h, uint32_t port, int wanted);

/* Records emitted on `port` since creation or the last clear, in order.
 * Key, value and (for RS_KIND_INTERACTION, RS_KIND_SESSION_EVENT,
 * RS_KIND_SESSION, RS_KIND_MF_UPDATE, its user vector included, and
 * RS_KIND_RECOMMENDATION, its items included, RS_KIND_FEEDBACK and
 * RS_KIND_REWARD) payload
 * are deep copies owned by the harness; payloads
 * of other kinds are not copied and set to NULL. */
size_t rs_harness_emitted_count(const rs_harness_t *h, uint32_t port);
const rs_record_t *rs_harness_emitted(const rs_harness_t *h, uint32_t port,
                                      size_t i);
size_t rs_harness_dead_count(const rs_harness_t *h);
const rs_harness_dead_t *rs_harness_dead(const rs_harness_t *h, size_t i);
/* Forgets collected emitted and dead-lettered records (not counters). */
void rs_harness_clear(rs_harness_t *h);

/* The value of counter `name`, or -1 if the operator never created it. */
int64_t rs_harness_counter(const rs_harness_t *h, const char *name);

/* Lines the operator logged, oldest first (level, then message). */
size_t rs_harness_log_count(const rs_harness_t *h);
const char *rs_harness_log_line(const rs_harness_t *h, size_t i, int *level);

/* The operator context (white-box tests) and the host table it was given. */
void *rs_harness_ctx(rs_harness_t *h);
const rs_host_api_t *rs_harness_host(rs_harness_t *h);
/* Seed of host->random() (default 42). */
void rs_harness_set_seed(rs_harness_t *h, uint64_t seed);

#endif
