/* The RocksDB adapter: the only place that includes rocksdb/c.h.
 *
 * It owns one RocksDB database per state directory with one column family
 * per name asked for (plus "default" and any found on disk), a pending
 * "indexed" write batch type the cache spills into, and the translation of
 * RocksDB's `char **errptr` idiom into rs_err_t plus a message. Nothing of
 * RocksDB's types crosses this header: handles are opaque and column
 * families are small integer indexes.
 *
 * Runtime calls (get/put/iterate) report failures as RS_ESTATE and keep the
 * message in the handle (rs__rocks_errmsg()), so hot-path callers need no
 * errstr buffer. Open takes errstr like every set-up call.
 */
#ifndef RS_STATE_ROCKS_H
#define RS_STATE_ROCKS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Part of the message of a failed open when another process holds the
 * database's lock: callers that must tell "running" apart from "broken"
 * (recstream state checkpoint/purge) look for it. */
#define RS_STORE_LOCKED_MSG "is in use by another recstream process"

typedef enum rs_compression {
  RS_COMPRESSION_DEFAULT = 0, /* lz4 if this RocksDB has it, else none */
  RS_COMPRESSION_NONE,
  RS_COMPRESSION_LZ4,
  RS_COMPRESSION_ZSTD,
  RS_COMPRESSION_SNAPPY
} rs_compression_t;

/* RocksDB tuning, under `state:` in the config. Zero fields take defaults
 * (see rs_store_opts_init()). */
typedef struct rs_store_opts {
  size_t block_cache_bytes;  /* shared LRU block cache; default 64 MiB */
  size_t write_buffer_bytes; /* memtable size per column family; 16 MiB;
                                all memtables together stay under 4x this */
  rs_compression_t compression;
  int create_if_missing; /* create the directory and database if absent */
  int sync;              /* fsync the WAL on every checkpoint write */
} rs_store_opts_t;

/* Fills the defaults: 64 MiB block cache, 16 MiB write buffers, default
 * compression, create_if_missing=1, sync=1. */
void rs_store_opts_init(rs_store_opts_t *o);

typedef struct rs__rocks rs__rocks_t;
typedef struct rs__rocks_batch rs__rocks_batch_t;
typedef struct rs__rocks_iter rs__rocks_iter_t;

/* Opens (or creates) the database in `dir` with the named column families
 * (created if missing). Errors: RS_ESTATE for a locked, corrupt or
 * unreadable directory, RS_ENOENT for a missing one with
 * create_if_missing=0, RS_ECONFIG for an unsupported compression. The
 * message names the directory and how to recover. Free with
 * rs__rocks_close(). */
int rs__rocks_open(const char *dir, const char *const *cf_names, size_t n_cf,
                   const rs_store_opts_t *opts, rs__rocks_t **out, char *errstr,
                   size_t errstr_size);
void rs__rocks_close(rs__rocks_t *r);
/* Opens an existing database read-only with every column family on disk.
 * Takes no lock, so it works while another process has the database open
 * (it sees what that process had written when it was opened: for the
 * engine, which writes only at checkpoints, its last checkpoint), and it
 * writes nothing into `dir`. Errors: RS_ENOENT (no such directory),
 * RS_ESTATE (not a database, corrupt, unreadable). Writes through the
 * handle fail with RS_ESTATE. */
int rs__rocks_open_readonly(const char *dir, rs__rocks_t **out, char *errstr,
                            size_t errstr_size);
/* A consistent RocksDB checkpoint of r into `target`, which must not exist
 * (RocksDB creates it; SST files are hard-linked when on the same file
 * system). Memtables are flushed first (log_size_for_flush 0). */
int rs__rocks_checkpoint(rs__rocks_t *r, const char *target, char *errstr,
                         size_t errstr_size);
/* rocksdb_destroy_db(): deletes RocksDB's own files in dir (and dir if it
 * is then empty). Fails with RS_ESTATE if the database is open anywhere
 * (lock held). The caller decides whether dir is a state directory. */
int rs__rocks_destroy_db(const char *dir, char *errstr, size_t errstr_size);

/* Index of a column family, or -1. */
int rs__rocks_cf_find(const rs__rocks_t *r, const char *name);
size_t rs__rocks_cf_count(const rs__rocks_t *r);
/* Borrowed until rs__rocks_close() returns. */
const char *rs__rocks_cf_name(const rs__rocks_t *r, int cf);
const char *rs__rocks_dir(const rs__rocks_t *r);
/* The message of the last failed runtime call; borrowed until the next
 * call on r. */
const char *rs__rocks_errmsg(const rs__rocks_t *r);
/* RocksDB's key figures (metrics): per column family the properties
 * rocksdb.estimate-num-keys, rocksdb.total-sst-files-size,
 * rocksdb.cur-size-all-mem-tables and
 * rocksdb.estimate-pending-compaction-bytes into out[0..4) (0 where
 * RocksDB does not know one); the shared block cache's usage and
 * capacity. */
int rs__rocks_cf_figures(rs__rocks_t *r, int cf, uint64_t out[4]);
void rs__rocks_cache_figures(rs__rocks_t *r, uint64_t *usage,
                             uint64_t *capacity);
/* Sets the message to "state directory DIR: what" and returns err. */
int rs__rocks_fail(rs__rocks_t *r, int err, const char *what);

/* Point read. If batch is non-NULL, its pending writes override the DB.
 * 0 and the value copied into *val (replacing its contents), RS_ENOENT if
 * absent, RS_ESTATE on failure. */
int rs__rocks_get(rs__rocks_t *r, rs__rocks_batch_t *batch, int cf,
                  const void *key, size_t key_len, rs_buf_t *val);
int rs__rocks_put(rs__rocks_t *r, int cf, const void *key, size_t key_len,
                  const void *val, size_t val_len);
int rs__rocks_delete(rs__rocks_t *r, int cf, const void *key, size_t key_len);
/* Deletes [begin, end) directly (one range tombstone), synced per opts. */
int rs__rocks_delete_range(rs__rocks_t *r, int cf, const void *begin,
                           size_t begin_len, const void *end, size_t end_len);

/* A write batch, written atomically by rs__rocks_batch_write(). An
 * indexed one (rs__rocks_batch_create) is also readable through
 * rs__rocks_get/iter before it is written, at the cost of a skiplist insert
 * per write; a plain one (rs__rocks_batch_plain) only appends. Free with
 * rs__rocks_batch_destroy(). */
rs__rocks_batch_t *rs__rocks_batch_create(void);
/* A plain batch starting with a copy of src's writes (src may be NULL). */
rs__rocks_batch_t *rs__rocks_batch_plain(rs__rocks_batch_t *src);
void rs__rocks_batch_destroy(rs__rocks_batch_t *b);
void rs__rocks_batch_put(rs__rocks_t *r, rs__rocks_batch_t *b, int cf,
                         const void *key, size_t key_len, const void *val,
                         size_t val_len);
void rs__rocks_batch_delete(rs__rocks_t *r, rs__rocks_batch_t *b, int cf,
                            const void *key, size_t key_len);
int rs__rocks_batch_count(rs__rocks_batch_t *b);
/* Bytes of the batch's serialized form (what it holds in memory, roughly). */
size_t rs__rocks_batch_bytes(rs__rocks_batch_t *b);
void rs__rocks_batch_clear(rs__rocks_batch_t *b);
/* Writes the whole batch as one atomic write; sync per the open options
 * (or forced when sync > 0; sync < 0 means "per options"). */
int rs__rocks_batch_write(rs__rocks_t *r, rs__rocks_batch_t *b, int sync);
/* The same, callable from another thread while r is in use: it touches
 * nothing of r but RocksDB's thread-safe write, and the message of a
 * failure goes to errstr instead of rs__rocks_errmsg(). */
int rs__rocks_batch_write_detached(rs__rocks_t *r, rs__rocks_batch_t *b,
                                   int sync, char *errstr, size_t errstr_size);

/* Ordered iteration over [lower, upper) of a column family, with batch's
 * pending writes merged in when batch is non-NULL. The batch must not be
 * modified while the iterator lives. Free with rs__rocks_iter_destroy(). */
rs__rocks_iter_t *rs__rocks_iter_create(rs__rocks_t *r,
                                        rs__rocks_batch_t *batch, int cf,
                                        const void *lower, size_t lower_len,
                                        const void *upper, size_t upper_len);
void rs__rocks_iter_destroy(rs__rocks_iter_t *it);
int rs__rocks_iter_valid(rs__rocks_iter_t *it);
void rs__rocks_iter_next(rs__rocks_iter_t *it);
/* Borrowed until the iterator moves or is destroyed. */
const void *rs__rocks_iter_key(rs__rocks_iter_t *it, size_t *len);
const void *rs__rocks_iter_value(rs__rocks_iter_t *it, size_t *len);
/* 0 or RS_ESTATE (message in rs__rocks_errmsg()) once iteration ends. */
int rs__rocks_iter_status(rs__rocks_t *r, rs__rocks_iter_t *it);

#endif
