/* The keyed state store: one RocksDB database per instance directory, one
 * column family per operator instance plus "__offsets" (DESIGN.md
 * section 3).
 *
 * Keys are stored as a 4-byte big-endian input partition followed by the
 * operator's key, so a partition's state is one contiguous range that can
 * be scanned, moved or dropped as a whole. The calls here go straight to
 * RocksDB (microseconds each): the engine's hot path goes through the
 * write-back cache (cache.h) instead, and the raw calls serve tools (state
 * inspect), restore and benchmarks.
 *
 * A checkpoint writes one atomic WriteBatch holding every dirty cache entry
 * and the next input offsets, so state and its input position are always
 * consistent; without a checkpoint call nothing of the cache reaches disk.
 *
 * Errors: rs_err_t values. Runtime calls keep a message readable with
 * rs_store_errmsg() until the next call on the store.
 *
 * Not thread-safe: a store (and its caches) is used by one thread at a time.
 */
#ifndef RS_STATE_STORE_H
#define RS_STATE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "state/rocks.h"

#define RS_STORE_OFFSETS_CF "__offsets"
/* Extra int64 fields an offset record may carry (e.g. the acknowledged
 * end offset of each output partition, for exactly_once). */
#define RS_OFFSET_MAX_EXTRA 8

typedef struct rs_store rs_store_t;
typedef struct rs_cache rs_cache_t;

/* Called per entry of a scan, in ascending key order, with the key without
 * its partition prefix. Key and value are borrowed until the callback
 * returns. A non-zero return stops the scan and is returned by it. */
typedef int (*rs_state_scan_cb)(void *opaque, const void *key, size_t key_len,
                                const void *value, size_t value_len);

/* Opens `dir` (creating it when opts->create_if_missing) with one column
 * family per name in cf_names plus "__offsets"; column families already on
 * disk are opened too. opts may be NULL for the defaults. Errors (with a
 * message naming the directory and how to recover): RS_ESTATE (locked by
 * another process, corrupt, unreadable), RS_ENOENT (missing and
 * create_if_missing off), RS_ECONFIG. Nothing is ever wiped. Free with
 * rs_store_destroy(). */
int rs_store_open(const char *dir, const char *const *cf_names, size_t n_cf,
                  const rs_store_opts_t *opts, rs_store_t **out, char *errstr,
                  size_t errstr_size);
/* Closes the database. Dirty entries of a cache not checkpointed are lost
 * (as in a crash); destroy caches first. */
void rs_store_destroy(rs_store_t *s);

/* The index of a column family (>= 0) or RS_ENOENT. */
int rs_store_cf(const rs_store_t *s, const char *name);
/* Borrowed until rs_store_destroy() returns. */
const char *rs_store_dir(const rs_store_t *s);
/* Message of the last failed runtime call; borrowed until the next call on
 * the store. */
const char *rs_store_errmsg(const rs_store_t *s);

/* Point read. 0 and *value and *value_len set (borrowed until the next call on
 * the store), RS_ENOENT if absent, RS_ESTATE on failure. */
int rs_store_get(rs_store_t *s, int cf, int32_t partition, const void *key,
                 size_t key_len, const void **value, size_t *value_len);
/* Unbatched, unsynced writes, visible immediately: for tools and tests.
 * The engine writes through the cache and checkpoints instead. */
int rs_store_put(rs_store_t *s, int cf, int32_t partition, const void *key,
                 size_t key_len, const void *value, size_t value_len);
int rs_store_delete(rs_store_t *s, int cf, int32_t partition, const void *key,
                    size_t key_len);
/* Every entry of `partition` whose key starts with prefix (prefix_len may
 * be 0), in key order. cb must not call into the store. */
int rs_store_scan(rs_store_t *s, int cf, int32_t partition, const void *prefix,
                  size_t prefix_len, rs_state_scan_cb cb, void *opaque);
/* Deletes all of a partition's state in cf with one range tombstone,
 * written at once (synced if opts.sync). Not for partitions a live cache
 * holds entries of: use rs_cache_drop_partition() there. */
int rs_store_drop_partition(rs_store_t *s, int cf, int32_t partition);

/* Fixed-size float vectors, stored as little-endian float32 arrays.
 * get: RS_ENOENT if absent, RS_ERANGE if the stored dimension differs from
 * dim; out is the caller's buffer of dim floats. */
int rs_store_get_floats(rs_store_t *s, int cf, int32_t partition,
                        const void *key, size_t key_len, float *out,
                        size_t dim);
int rs_store_put_floats(rs_store_t *s, int cf, int32_t partition,
                        const void *key, size_t key_len, const float *v,
                        size_t dim);
/* int64 counters, stored as 8 little-endian bytes; an absent counter is 0.
 * Adds delta and stores the sum in *result (may be NULL). RS_ERANGE if
 * the stored value is not 8 bytes. */
int rs_store_counter_add(rs_store_t *s, int cf, int32_t partition,
                         const void *key, size_t key_len, int64_t delta,
                         int64_t *result);

/* The position of one input partition (or, by convention of the caller,
 * any other stream position) stored in "__offsets". */
typedef struct rs_offset {
  const char *topic; /* borrowed until the call returns; see read_offsets */
  int32_t partition;
  int64_t next_offset; /* the next input offset to process */
  size_t n_extra;      /* <= RS_OFFSET_MAX_EXTRA */
  int64_t extra[RS_OFFSET_MAX_EXTRA];
} rs_offset_t;

/* Writes ONE atomic WriteBatch holding every dirty entry of cache (may be
 * NULL), the entries it spilled on eviction since the last checkpoint, and
 * the n offsets (upserted; offsets not given keep their stored value),
 * with the WAL fsynced if opts.sync. On success the cache's entries are
 * clean; on failure (RS_ESTATE) nothing was written and the cache is as
 * before, so the call may be retried. */
int rs_store_checkpoint(rs_store_t *s, rs_cache_t *cache,
                        const rs_offset_t *offsets, size_t n);
/* The same checkpoint in steps, so that the write can leave the thread
 * that owns the store and cache (the engine's loop):
 *  1. rs_store_checkpoint_stage(): on the owning thread, at a consistent
 *     point T. Copies the spilled writes and the n offsets into a new
 *     batch, and marks every dirty cache entry clean but pinned: they stay
 *     cached (and readable: the database does not have them yet) until
 *     step 4, and their bytes are not copied here but read by step 3.
 *     Work on the cache goes on meanwhile; an entry changed after T gets
 *     a new block, dirty for the next checkpoint, and its pinned block
 *     stays as it was at T until step 4 (copy on write).
 *     At most one staged checkpoint per cache (RS_EINVAL otherwise; also
 *     for rs_store_checkpoint() while one is staged).
 *  2. rs_store_staged_add_offsets(): optional, owning thread, before the
 *     write: more offset records (e.g. output ends learned after T).
 *  3. rs_store_staged_write(): on any thread, once; appends the pinned
 *     entries of T to the staged batch (the costly part: ~5 us an entry
 *     on the test machine) and writes it; touches only the staged batch,
 *     the pinned blocks and RocksDB's thread-safe write (the message of a
 *     failure goes to errstr), and frees the batch once written. The
 *     owning thread must not destroy the store or the cache until it
 *     returned.
 *  4. rs_store_staged_done(): owning thread, after a successful write:
 *     counts it (rs_store_stats), unpins, drops the spilled writes it
 *     held, frees st.
 * A failed write leaves the previous checkpoint on disk; the staged one
 * may be written again (step 3), or dropped with rs_store_staged_free()
 * when the cache will not be checkpointed again (the engine stops: its
 * entries staged at T are clean in the cache and would be missing from a
 * later checkpoint). */
typedef struct rs_store_staged rs_store_staged_t;
int rs_store_checkpoint_stage(rs_store_t *s, rs_cache_t *cache,
                              const rs_offset_t *offsets, size_t n,
                              rs_store_staged_t **out);
int rs_store_staged_add_offsets(rs_store_t *s, rs_store_staged_t *st,
                                const rs_offset_t *offsets, size_t n);
/* 1 when the batch holds nothing (no state, no offset): no need to write. */
int rs_store_staged_empty(rs_store_staged_t *st);
int rs_store_staged_write(rs_store_staged_t *st, char *errstr,
                          size_t errstr_size);
void rs_store_staged_done(rs_store_t *s, rs_cache_t *cache,
                          rs_store_staged_t *st);
void rs_store_staged_free(rs_store_staged_t *st);

/* Every stored offset record, sorted by (topic, partition). *out is an
 * array of *n records (topics included); free with
 * rs_store_offsets_free(). */
int rs_store_read_offsets(rs_store_t *s, rs_offset_t **out, size_t *n);
void rs_store_offsets_free(rs_offset_t *offsets, size_t n);

/* Figures for metrics (cheap: RocksDB properties kept in memory). */
typedef struct rs_store_stats {
  uint64_t block_cache_bytes;      /* shared block cache usage */
  uint64_t block_cache_capacity;   /* ...and its bound (state.block_cache) */
  uint64_t checkpoints;            /* rs_store_checkpoint() writes */
  uint64_t checkpoint_last_bytes;  /* the last one's write batch */
  uint64_t checkpoint_total_bytes; /* all of them together */
} rs_store_stats_t;
void rs_store_stats(rs_store_t *s, rs_store_stats_t *out);
typedef struct rs_store_cf_stats {
  uint64_t estimated_keys;           /* rocksdb.estimate-num-keys */
  uint64_t sst_bytes;                /* rocksdb.total-sst-files-size */
  uint64_t memtable_bytes;           /* rocksdb.cur-size-all-mem-tables */
  uint64_t pending_compaction_bytes; /* ...estimate-pending-compaction-bytes */
} rs_store_cf_stats_t;
/* One column family's figures (0 where RocksDB has none); RS_EINVAL for a
 * bad index. */
int rs_store_cf_stats(rs_store_t *s, int cf, rs_store_cf_stats_t *out);

/* ---- tools: inspect, savepoints, reset and restore (docs/STATE.md) ---- */

/* Files recstream itself keeps in a state directory, next to RocksDB's:
 * the pid of the running engine and the savepoint request/result files of
 * `recstream state checkpoint` (protocol in engine/state_cmd.h). */
#define RS_STATE_PID_FILE "RECSTREAM_PID"
#define RS_STATE_SAVEPOINT_REQUEST "SAVEPOINT_REQUEST"
#define RS_STATE_SAVEPOINT_REQUEST_TMP "SAVEPOINT_REQUEST.tmp"
#define RS_STATE_SAVEPOINT_RESULT "SAVEPOINT_RESULT"
#define RS_STATE_SAVEPOINT_RESULT_TMP "SAVEPOINT_RESULT.tmp"
/* `recstream replay` records its plan here (engine/replay.c). */
#define RS_STATE_REPLAY_PLAN "REPLAY_PLAN"
#define RS_STATE_REPLAY_PLAN_TMP "REPLAY_PLAN.tmp"

/* Opens an existing state database read-only with all its column
 * families. It takes no lock, so it works while an engine runs on the
 * directory (showing its last checkpoint), and writes nothing there.
 * Errors: RS_ENOENT (no such directory), RS_ESTATE (not a database,
 * corrupt, unreadable; the message names the directory and says how to
 * recover: `recstream replay` or `recstream run --reset-state`). Writes
 * through the store fail with RS_ESTATE. */
int rs_store_open_readonly(const char *dir, rs_store_t **out, char *errstr,
                           size_t errstr_size);
/* Column families, "default" and "__offsets" included: indexes
 * 0..count-1; the name is borrowed until rs_store_destroy() (NULL for a
 * bad index). */
int rs_store_cf_count(const rs_store_t *s);
const char *rs_store_cf_name(const rs_store_t *s, int cf);

/* Called per entry of rs_store_scan_all() with the partition decoded from
 * the key's prefix (RS_PARTITION_SHARED, -1, for shared state) and the
 * operator's key. Borrowed until it returns; non-zero stops the scan. */
typedef int (*rs_state_scan_all_cb)(void *opaque, int32_t partition,
                                    const void *key, size_t key_len,
                                    const void *value, size_t value_len);
/* Every entry of cf in stored order: by partition (0, 1, ..., then
 * shared), then key. RS_ESTATE if a key is shorter than its prefix. */
int rs_store_scan_all(rs_store_t *s, int cf, rs_state_scan_all_cb cb,
                      void *opaque);
/* Deletes the stored offset record of (topic, partition): 0, or RS_ENOENT
 * if there was none. */
int rs_store_delete_offset(rs_store_t *s, const char *topic, int32_t partition);

/* Writes a consistent copy of the database (a RocksDB checkpoint,
 * memtables flushed first) into target_dir, which must not exist yet
 * (RS_EINVAL if it does) and whose parent must (RS_ENOENT). Table files
 * are hard-linked when on the same file system. Call it where the store
 * holds a checkpoint (state and offsets together), e.g. right after
 * rs_store_checkpoint(). Not on a read-only store. */
int rs_store_savepoint(rs_store_t *s, const char *target_dir, char *errstr,
                       size_t errstr_size);
/* Deletes the state database in dir (`run --reset-state`). Only a state
 * directory is touched: one holding RocksDB's files (CURRENT, IDENTITY,
 * MANIFEST-*, LOCK, ...); any other non-empty directory is refused with
 * RS_EINVAL and nothing in it is deleted. A missing or empty directory is
 * a success. RocksDB's files and recstream's own (RS_STATE_*) are
 * removed, anything else is left, and dir itself is removed once empty.
 * RS_ESTATE if a process has the database open (lock held). */
int rs_store_destroy_dir(const char *dir, char *errstr, size_t errstr_size);
/* Makes state_dir a copy of the savepoint in savepoint_dir (`run
 * --restore-from`). The savepoint is opened read-only first and must be a
 * valid database. state_dir must be missing or empty: RS_EINVAL if it
 * holds a database (the message says to pass --reset-state) or anything
 * else. Table files are hard-linked when on the same file system (they
 * are immutable), the rest copied, into a new sibling directory renamed
 * to state_dir at the end, so a failure leaves state_dir as it was.
 * Missing parents of state_dir are created. */
int rs_store_restore_dir(const char *savepoint_dir, const char *state_dir,
                         char *errstr, size_t errstr_size);

/* ---- internal to state/ ---- */
rs__rocks_t *rs__store_rocks(rs_store_t *s);
/* Writes the 4-byte partition prefix and key into b (replacing it). */
int rs__state_key(rs_buf_t *b, int32_t partition, const void *key,
                  size_t key_len);
/* The exclusive upper bound of all keys starting with p[0..n): 0 and the
 * bound in out, or RS_ENOENT if there is none (all bytes 0xff). */
int rs__state_prefix_end(const void *p, size_t n, rs_buf_t *out);
void rs__state_floats_encode(unsigned char *dst, const float *v, size_t dim);
void rs__state_floats_decode(float *dst, const unsigned char *src, size_t dim);
void rs__state_i64_encode(unsigned char dst[8], int64_t v);
int64_t rs__state_i64_decode(const unsigned char src[8]);

/* The float-vector and counter helpers, written once for any keyed
 * get/put pair (the store's and the cache's). `h` is the store or cache;
 * `scratch` holds the encoded vector until put returns. */
typedef struct rs__kv {
  void *h;
  int (*get)(void *h, int cf, int32_t partition, const void *key,
             size_t key_len, const void **value, size_t *value_len);
  int (*put)(void *h, int cf, int32_t partition, const void *key,
             size_t key_len, const void *value, size_t value_len);
  rs_buf_t *scratch;
} rs__kv_t;
int rs__kv_get_floats(const rs__kv_t *kv, int cf, int32_t partition,
                      const void *key, size_t key_len, float *out, size_t dim);
int rs__kv_put_floats(const rs__kv_t *kv, int cf, int32_t partition,
                      const void *key, size_t key_len, const float *v,
                      size_t dim);
int rs__kv_counter_add(const rs__kv_t *kv, int cf, int32_t partition,
                       const void *key, size_t key_len, int64_t delta,
                       int64_t *result);

#endif
