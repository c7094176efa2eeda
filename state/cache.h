/* The write-back state cache in front of the store (DESIGN.md section 3):
 * the engine's hot path. Entries are keyed by (column family, partition,
 * key) and bounded in bytes (state.cache). A hit costs a hash lookup and
 * no allocation; a miss reads RocksDB once and caches the value, or the
 * fact that it is absent. Writes and deletes only mark entries dirty.
 *
 * Deviation from "evicting a dirty entry writes it to RocksDB": an evicted
 * dirty entry goes into a pending indexed WriteBatch (RocksDB's
 * WriteBatchWithIndex, one batch for all evictions), not into the
 * database. Reads of evicted keys see it; the next checkpoint writes it
 * together with the other dirty entries and the offsets. Writing it to the
 * database at eviction would put state ahead of the stored offsets, and a
 * crash would then replay inputs into state that already counted them. The
 * price is that evicted dirty bytes stay in memory until the next
 * checkpoint: rs_cache_stats().spill_bytes reports them, and the engine
 * checkpoints early when they grow (see rs_cache_needs_checkpoint()).
 *
 * Not thread-safe: one cache per engine thread (or external locking).
 */
#ifndef RS_STATE_CACHE_H
#define RS_STATE_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "state/store.h"

#define RS_CACHE_DEFAULT_BYTES ((size_t)256 << 20)

typedef struct rs_cache_stats {
  uint64_t hits;
  uint64_t misses;       /* reads that went to RocksDB */
  uint64_t evictions;    /* entries evicted for space */
  uint64_t writebacks;   /* dirty entries among them, spilled to the batch */
  uint64_t victim_steps; /* entries the CLOCK hand looked at to find victims
                            (pinned entries are off the ring: not counted) */
  size_t entries;
  size_t total_bytes; /* entries (key + value + overhead), free blocks and
                         the hash table; <= bound_bytes after every call,
                         except while a staged checkpoint pins entries
                         (rs_store_checkpoint_stage): then up to those */
  size_t dirty_bytes;
  size_t spill_bytes; /* evicted dirty data awaiting the next checkpoint */
  size_t bound_bytes;
  size_t retired_bytes; /* old blocks of staged entries changed after the
                           capture, kept for the checkpoint's writer until
                           it is durable; outside total_bytes and the bound */
} rs_cache_stats_t;

/* A cache of at most bound_bytes (0: RS_CACHE_DEFAULT_BYTES) over store,
 * which must outlive it. Free with rs_cache_destroy(); dirty entries not
 * checkpointed are then dropped, as in a crash. */
int rs_cache_create(rs_store_t *store, size_t bound_bytes, rs_cache_t **out);
void rs_cache_destroy(rs_cache_t *c);

/* 0 and *value and *value_len set (borrowed until the next call on the cache),
 * RS_ENOENT if absent or deleted, RS_ESTATE if RocksDB failed (message in
 * rs_store_errmsg()). */
int rs_cache_get(rs_cache_t *c, int cf, int32_t partition, const void *key,
                 size_t key_len, const void **value, size_t *value_len);
/* Copies value in; the entry is dirty until the next checkpoint. */
int rs_cache_put(rs_cache_t *c, int cf, int32_t partition, const void *key,
                 size_t key_len, const void *value, size_t value_len);
/* A tombstone until the next checkpoint. Deleting an absent key is 0. */
int rs_cache_delete(rs_cache_t *c, int cf, int32_t partition, const void *key,
                    size_t key_len);
/* Every live entry of the partition whose key starts with prefix, in key
 * order, merging the cache (dirty values and tombstones win), the pending
 * spill batch and RocksDB. Costs a walk of the cache's entries plus the
 * range in RocksDB: for occasional use, not per event. cb must not call
 * into the cache or the store. */
int rs_cache_scan(rs_cache_t *c, int cf, int32_t partition, const void *prefix,
                  size_t prefix_len, rs_state_scan_cb cb, void *opaque);
/* Deletes all of a partition's state in cf, as tombstones that the next
 * checkpoint writes (so the drop is atomic with the offsets). Cost is
 * proportional to the partition's size. */
int rs_cache_drop_partition(rs_cache_t *c, int cf, int32_t partition);

/* Float vectors and counters as in store.h, through the cache. */
int rs_cache_get_floats(rs_cache_t *c, int cf, int32_t partition,
                        const void *key, size_t key_len, float *out,
                        size_t dim);
int rs_cache_put_floats(rs_cache_t *c, int cf, int32_t partition,
                        const void *key, size_t key_len, const float *v,
                        size_t dim);
int rs_cache_counter_add(rs_cache_t *c, int cf, int32_t partition,
                         const void *key, size_t key_len, int64_t delta,
                         int64_t *result);

void rs_cache_stats(const rs_cache_t *c, rs_cache_stats_t *out);
/* 1 when the spill batch exceeds a quarter of the bound: the engine should
 * checkpoint at its next consistent point instead of waiting for the
 * commit interval, to keep memory near the bound. */
int rs_cache_needs_checkpoint(const rs_cache_t *c);

/* ---- internal to state/ (used by rs_store_checkpoint) ---- */
rs__rocks_batch_t *rs__cache_batch(rs_cache_t *c);
/* Adds every dirty entry to b (puts and deletes). */
int rs__cache_stage_dirty(rs_cache_t *c, rs__rocks_batch_t *b);
/* After the checkpoint batch was written: every entry is clean and the
 * spill batch is empty. */
void rs__cache_checkpointed(rs_cache_t *c);
/* Asynchronous checkpoints (rs_store_checkpoint_stage). At the capture,
 * on the owning thread: marks every dirty entry clean and pinned (not
 * evicted until rs__cache_durable(), so reads keep seeing them while the
 * database does not have them yet) and describes them in *ents (*n of
 * them; owned by the cache, valid until rs__cache_durable() or the
 * cache's destruction). The entries are not copied: a pinned entry is
 * never written or freed in place until rs__cache_durable(). Changing one
 * (put, delete) retires its block (out of the table, freed at
 * rs__cache_durable()) and caches the new value in a new, dirty entry for
 * the next checkpoint. Spilled writes go to a second batch as well, which
 * replaces the spill once the staged one is durable (the caller copied
 * the spill at T). RS_EINVAL when a staged checkpoint is already pending.
 *
 * So another thread may read *ents and the bytes they point to
 * (rs__cache_stage_entries) while the owning thread goes on using the
 * cache, until rs__cache_durable(). */
typedef struct rs__staged_ent {
  const unsigned char *data; /* key (klen bytes), then value (vlen) */
  uint32_t klen, vlen;
  int32_t partition;
  int cf;
  int del; /* a tombstone */
} rs__staged_ent_t;
int rs__cache_pin_staged(rs_cache_t *c, const rs__staged_ent_t **ents,
                         size_t *n);
/* Appends the staged entries to b (puts and deletes), on any thread: reads
 * only ents and their bytes; kb is the caller's key buffer. */
int rs__cache_stage_entries(rs__rocks_t *db, rs__rocks_batch_t *b,
                            const rs__staged_ent_t *ents, size_t n,
                            rs_buf_t *kb);
int rs__cache_is_staged(const rs_cache_t *c);
/* The staged checkpoint is written (and its writer is done with the
 * entries): unpins, frees the retired blocks, and drops the spilled writes
 * it held. */
void rs__cache_durable(rs_cache_t *c);

#endif
