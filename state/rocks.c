/* RocksDB adapter (see rocks.h). This file owns every rocksdb_* call and
 * every `char *errptr`: each one is freed here and turned into an rs_err_t
 * with a message that names the state directory and, where the user can
 * act, what to do. It never deletes or recreates a directory on error.
 */
#include "state/rocks.h"

#include <errno.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RS__OFFSETS_CF "__offsets"

struct rs__rocks {
  rocksdb_t *db;
  rocksdb_options_t *opts;
  rocksdb_cache_t *cache;
  rocksdb_block_based_table_options_t *table;
  rocksdb_readoptions_t *ropts;
  rocksdb_writeoptions_t *wopts_nosync;
  rocksdb_writeoptions_t *wopts_sync;
  int sync;
  int readonly; /* opened with rocksdb_open_for_read_only_column_families */
  size_t n_cf;
  char **cf_names;
  rocksdb_column_family_handle_t **cfs;
  char *dir;
  char errmsg[1024];
};

struct rs__rocks_batch {
  rocksdb_writebatch_wi_t *wi; /* indexed, or */
  rocksdb_writebatch_t *wb;    /* plain */
};

struct rs__rocks_iter {
  rocksdb_iterator_t *it;
  rocksdb_readoptions_t *ropts;
  char *upper;
  size_t upper_len;
};

void rs_store_opts_init(rs_store_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->block_cache_bytes = 64u << 20;
  o->write_buffer_bytes = 16u << 20;
  o->compression = RS_COMPRESSION_DEFAULT;
  o->create_if_missing = 1;
  o->sync = 1;
}

/* Keeps RocksDB's message for a runtime failure, frees it, and returns
 * RS_ESTATE. */
static int take_err(rs__rocks_t *r, char *err, const char *what) {
  snprintf(r->errmsg, sizeof r->errmsg, "state directory %s: %s: %s", r->dir,
           what, err);
  rocksdb_free(err);
  return RS_ESTATE;
}

static int is_lock_error(const char *e) {
  return strstr(e, "lock hold by current process") ||
         strstr(e, "Resource temporarily unavailable") ||
         (strstr(e, "/LOCK") && strstr(e, "While lock file"));
}

/* Classifies a failed open. The message always names the directory. */
static int open_error(const char *dir, char *err, int defaulted_compression,
                      char *errstr, size_t errstr_size) {
  int rc;
  if (is_lock_error(err))
    rc = rs_seterr(errstr, errstr_size, RS_ESTATE,
                   "state directory %s " RS_STORE_LOCKED_MSG
                   " (lock held); stop it or use another state.dir (%s)",
                   dir, err);
  else if (strstr(err, "create_if_missing is false"))
    rc = rs_seterr(errstr, errstr_size, RS_ENOENT,
                   "state directory %s holds no state database and "
                   "create_if_missing is off; point state.dir at an existing "
                   "state directory, rebuild it with `recstream replay`, or "
                   "start empty with `recstream run --reset-state` (%s)",
                   dir, err);
  else if (strstr(err, "Permission denied"))
    rc = rs_seterr(errstr, errstr_size, RS_ESTATE,
                   "state directory %s is not accessible to this user: %s", dir,
                   err);
  else if (strstr(err, "is not linked with the binary") &&
           !defaulted_compression)
    rc = rs_seterr(errstr, errstr_size, RS_ECONFIG,
                   "state directory %s: the configured state.compression is "
                   "not available in this RocksDB build: %s",
                   dir, err);
  else
    rc = rs_seterr(errstr, errstr_size, RS_ESTATE,
                   "state directory %s is corrupt or unreadable: %s; rebuild "
                   "it with `recstream replay`, or start empty with "
                   "`recstream run --reset-state` (nothing was deleted)",
                   dir, err);
  rocksdb_free(err);
  return rc;
}

static int compression_code(rs_compression_t c) {
  switch (c) {
  case RS_COMPRESSION_NONE:
    return rocksdb_no_compression;
  case RS_COMPRESSION_ZSTD:
    return rocksdb_zstd_compression;
  case RS_COMPRESSION_SNAPPY:
    return rocksdb_snappy_compression;
  case RS_COMPRESSION_LZ4:
  case RS_COMPRESSION_DEFAULT:
  default:
    return rocksdb_lz4_compression;
  }
}

static int add_name(rs__rocks_t *r, const char *name) {
  for (size_t i = 0; i < r->n_cf; i++)
    if (strcmp(r->cf_names[i], name) == 0)
      return 0;
  char **n = rs_realloc(r->cf_names, (r->n_cf + 1) * sizeof *n);
  if (!n)
    return RS_ENOMEM;
  r->cf_names = n;
  if (!(n[r->n_cf] = rs_strdup(name)))
    return RS_ENOMEM;
  r->n_cf++;
  return 0;
}

static void set_options(rs__rocks_t *r, const rs_store_opts_t *o,
                        int compression) {
  rocksdb_options_set_create_if_missing(r->opts,
                                        (unsigned char)o->create_if_missing);
  rocksdb_options_set_create_missing_column_families(r->opts, 1);
  rocksdb_options_set_write_buffer_size(r->opts, o->write_buffer_bytes);
  rocksdb_options_set_max_write_buffer_number(r->opts, 2);
  /* Bound memtables across all column families (one per operator), not
   * just per family: four write buffers' worth in total. */
  rocksdb_options_set_db_write_buffer_size(r->opts, 4 * o->write_buffer_bytes);
  rocksdb_options_set_compression(r->opts, compression);
  /* Column families keep one LOG and few background threads: the engine is
   * the only writer and its checkpoints are already batched. */
  rocksdb_options_set_max_background_jobs(r->opts, 2);
  rocksdb_options_set_keep_log_file_num(r->opts, 2);
}

void rs__rocks_close(rs__rocks_t *r) {
  if (!r)
    return;
  if (r->db && !r->readonly) {
    /* Flush memtables so a clean restart does not replay the WAL (a crash
     * still does). A failed flush loses nothing: the WAL has the data. */
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    for (size_t i = 0; i < r->n_cf; i++) {
      char *err = NULL;
      rocksdb_flush_cf(r->db, fo, r->cfs[i], &err);
      rocksdb_free(err);
    }
    rocksdb_flushoptions_destroy(fo);
  }
  /* Handles go before the database they belong to. */
  if (r->cfs) {
    for (size_t i = 0; i < r->n_cf; i++)
      if (r->cfs[i])
        rocksdb_column_family_handle_destroy(r->cfs[i]);
  }
  if (r->db)
    rocksdb_close(r->db);
  if (r->ropts)
    rocksdb_readoptions_destroy(r->ropts);
  if (r->wopts_sync)
    rocksdb_writeoptions_destroy(r->wopts_sync);
  if (r->wopts_nosync)
    rocksdb_writeoptions_destroy(r->wopts_nosync);
  if (r->table)
    rocksdb_block_based_options_destroy(r->table);
  if (r->cache)
    rocksdb_cache_destroy(r->cache);
  if (r->opts)
    rocksdb_options_destroy(r->opts);
  for (size_t i = 0; i < r->n_cf; i++)
    rs_free(r->cf_names[i]);
  rs_free(r->cf_names);
  rs_free(r->cfs);
  rs_free(r->dir);
  rs_free(r);
}

/* A handle with its options and read/write options but no database yet. */
static rs__rocks_t *rocks_new(const char *dir, size_t block_cache_bytes) {
  rs__rocks_t *r = rs_calloc(1, sizeof *r);
  if (!r || !(r->dir = rs_strdup(dir))) {
    rs_free(r);
    return NULL;
  }
  r->opts = rocksdb_options_create();
  r->cache = rocksdb_cache_create_lru(block_cache_bytes);
  r->table = rocksdb_block_based_options_create();
  rocksdb_block_based_options_set_block_cache(r->table, r->cache);
  rocksdb_options_set_block_based_table_factory(r->opts, r->table);
  r->ropts = rocksdb_readoptions_create();
  r->wopts_sync = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(r->wopts_sync, 1);
  r->wopts_nosync = rocksdb_writeoptions_create();
  return r;
}

int rs__rocks_open(const char *dir, const char *const *cf_names, size_t n_cf,
                   const rs_store_opts_t *opts, rs__rocks_t **out, char *errstr,
                   size_t errstr_size) {
  *out = NULL;
  rs_store_opts_t o;
  rs_store_opts_init(&o);
  if (opts) {
    o = *opts;
    if (!o.block_cache_bytes)
      o.block_cache_bytes = 64u << 20;
    if (!o.write_buffer_bytes)
      o.write_buffer_bytes = 16u << 20;
  }
  struct stat st;
  if (stat(dir, &st) != 0) {
    if (errno != ENOENT)
      return rs_seterr(errstr, errstr_size, RS_ESTATE, "state directory %s: %s",
                       dir, strerror(errno));
    if (!o.create_if_missing)
      return rs_seterr(errstr, errstr_size, RS_ENOENT,
                       "state directory %s does not exist and "
                       "create_if_missing is off; point state.dir at the "
                       "instance's state directory, or enable it to start "
                       "empty",
                       dir);
    /* RocksDB would create it too, but a missing parent should be reported
     * as such, not as an unreadable database. */
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
      return rs_seterr(errstr, errstr_size, RS_ESTATE,
                       "cannot create state directory %s: %s", dir,
                       strerror(errno));
  } else if (!S_ISDIR(st.st_mode)) {
    return rs_seterr(errstr, errstr_size, RS_ESTATE,
                     "state directory %s is not a directory", dir);
  }

  rs__rocks_t *r = rocks_new(dir, o.block_cache_bytes);
  if (!r)
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  r->sync = o.sync;

  /* Every column family on disk must be opened, so list them first. A
   * failure here means no database yet (or a broken one, which the open
   * below reports properly). */
  int rc = add_name(r, "default");
  if (!rc)
    rc = add_name(r, RS__OFFSETS_CF);
  char *err = NULL;
  size_t n_have = 0;
  char **have = rocksdb_list_column_families(r->opts, dir, &n_have, &err);
  if (err) {
    rocksdb_free(err);
    err = NULL;
  }
  for (size_t i = 0; !rc && have && i < n_have; i++)
    rc = add_name(r, have[i]);
  if (have)
    rocksdb_list_column_families_destroy(have, n_have);
  for (size_t i = 0; !rc && i < n_cf; i++)
    rc = add_name(r, cf_names[i]);
  if (!rc && !(r->cfs = rs_calloc(r->n_cf, sizeof *r->cfs)))
    rc = RS_ENOMEM;
  const rocksdb_options_t **cf_opts =
      rc ? NULL : rs_calloc(r->n_cf, sizeof *cf_opts);
  if (rc || !cf_opts) {
    rs__rocks_close(r);
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < r->n_cf; i++)
    cf_opts[i] = r->opts;

  int defaulted = o.compression == RS_COMPRESSION_DEFAULT;
  set_options(r, &o, compression_code(o.compression));
  r->db = rocksdb_open_column_families(r->opts, dir, (int)r->n_cf,
                                       (const char *const *)r->cf_names,
                                       cf_opts, r->cfs, &err);
  if (err && defaulted && strstr(err, "is not linked with the binary")) {
    /* lz4 is only the default: fall back to no compression. */
    rocksdb_free(err);
    err = NULL;
    set_options(r, &o, rocksdb_no_compression);
    r->db = rocksdb_open_column_families(r->opts, dir, (int)r->n_cf,
                                         (const char *const *)r->cf_names,
                                         cf_opts, r->cfs, &err);
  }
  rs_free(cf_opts);
  if (err) {
    memset(r->cfs, 0, r->n_cf * sizeof *r->cfs);
    r->db = NULL;
    rc = open_error(dir, err, defaulted, errstr, errstr_size);
    rs__rocks_close(r);
    return rc;
  }
  *out = r;
  return 0;
}

/* One attempt of a read-only open: 0, or the RocksDB message in *err. */
static int open_readonly_once(rs__rocks_t *r, char **err) {
  size_t n_have = 0;
  char **have = rocksdb_list_column_families(r->opts, r->dir, &n_have, err);
  if (*err)
    return RS_ESTATE;
  int rc = 0;
  for (size_t i = 0; !rc && i < n_have; i++)
    rc = add_name(r, have[i]);
  rocksdb_list_column_families_destroy(have, n_have);
  if (!rc && !(r->cfs = rs_calloc(r->n_cf, sizeof *r->cfs)))
    rc = RS_ENOMEM;
  const rocksdb_options_t **cf_opts =
      rc ? NULL : rs_calloc(r->n_cf, sizeof *cf_opts);
  if (rc || !cf_opts)
    return RS_ENOMEM;
  for (size_t i = 0; i < r->n_cf; i++)
    cf_opts[i] = r->opts;
  r->db = rocksdb_open_for_read_only_column_families(
      r->opts, r->dir, (int)r->n_cf, (const char *const *)r->cf_names, cf_opts,
      r->cfs, 0, err);
  rs_free(cf_opts);
  if (*err) {
    memset(r->cfs, 0, r->n_cf * sizeof *r->cfs);
    r->db = NULL;
    return RS_ESTATE;
  }
  return 0;
}

/* Forgets the column families of a failed attempt. */
static void forget_cfs(rs__rocks_t *r) {
  for (size_t i = 0; i < r->n_cf; i++)
    rs_free(r->cf_names[i]);
  rs_free(r->cf_names);
  rs_free(r->cfs);
  r->cf_names = NULL;
  r->cfs = NULL;
  r->n_cf = 0;
}

int rs__rocks_open_readonly(const char *dir, rs__rocks_t **out, char *errstr,
                            size_t errstr_size) {
  *out = NULL;
  struct stat st;
  if (stat(dir, &st) != 0) {
    if (errno == ENOENT)
      return rs_seterr(errstr, errstr_size, RS_ENOENT,
                       "state directory %s does not exist; check state.dir "
                       "(a relative path is taken from the current "
                       "directory)",
                       dir);
    return rs_seterr(errstr, errstr_size, RS_ESTATE, "state directory %s: %s",
                     dir, strerror(errno));
  }
  if (!S_ISDIR(st.st_mode))
    return rs_seterr(errstr, errstr_size, RS_ESTATE,
                     "state directory %s is not a directory", dir);
  char cur[4096];
  snprintf(cur, sizeof cur, "%s/CURRENT", dir);
  if (access(cur, F_OK) != 0 && errno == ENOENT)
    return rs_seterr(errstr, errstr_size, RS_ESTATE,
                     "state directory %s holds no state database (no CURRENT "
                     "file); rebuild it with `recstream replay`, or start "
                     "empty with `recstream run --reset-state`",
                     dir);
  rs__rocks_t *r = rocks_new(dir, 8u << 20);
  if (!r)
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  r->readonly = 1;
  rocksdb_options_set_create_if_missing(r->opts, 0);
  rocksdb_options_set_max_background_jobs(r->opts, 1);
  char *err = NULL;
  int rc = 0;
  /* A running engine may delete a WAL or table file between our reading
   * the MANIFEST and opening the file (flush, compaction): try again. */
  for (int attempt = 0; attempt < 3; attempt++) {
    if (err) {
      rocksdb_free(err);
      err = NULL;
      forget_cfs(r);
      struct timespec ts = {0, 50 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
    rc = open_readonly_once(r, &err);
    if (!rc || !err || !strstr(err, "No such file"))
      break;
  }
  if (rc) {
    if (err)
      rc = open_error(dir, err, 1, errstr, errstr_size);
    else
      rs_seterr(errstr, errstr_size, rc, "out of memory");
    rs__rocks_close(r);
    return rc;
  }
  *out = r;
  return 0;
}

int rs__rocks_checkpoint(rs__rocks_t *r, const char *target, char *errstr,
                         size_t errstr_size) {
  if (r->readonly)
    return rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "state directory %s is open read-only: a savepoint "
                     "needs the database open for writing",
                     r->dir);
  char *err = NULL;
  rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(r->db, &err);
  if (!err)
    rocksdb_checkpoint_create(cp, target, 0, &err);
  if (cp)
    rocksdb_checkpoint_object_destroy(cp);
  if (err) {
    int rc = rs_seterr(errstr, errstr_size, RS_ESTATE,
                       "cannot write a savepoint of state directory %s into "
                       "%s: %s",
                       r->dir, target, err);
    rocksdb_free(err);
    return rc;
  }
  return 0;
}

int rs__rocks_destroy_db(const char *dir, char *errstr, size_t errstr_size) {
  rocksdb_options_t *o = rocksdb_options_create();
  char *err = NULL;
  rocksdb_destroy_db(o, dir, &err);
  rocksdb_options_destroy(o);
  if (!err)
    return 0;
  int rc;
  if (is_lock_error(err))
    rc = rs_seterr(errstr, errstr_size, RS_ESTATE,
                   "state directory %s " RS_STORE_LOCKED_MSG
                   " (lock held); stop it first (%s)",
                   dir, err);
  else
    rc = rs_seterr(errstr, errstr_size, RS_ESTATE,
                   "cannot delete the state database in %s: %s", dir, err);
  rocksdb_free(err);
  return rc;
}

int rs__rocks_cf_find(const rs__rocks_t *r, const char *name) {
  for (size_t i = 0; i < r->n_cf; i++)
    if (strcmp(r->cf_names[i], name) == 0)
      return (int)i;
  return -1;
}

size_t rs__rocks_cf_count(const rs__rocks_t *r) {
  return r->n_cf;
}

const char *rs__rocks_cf_name(const rs__rocks_t *r, int cf) {
  return cf >= 0 && (size_t)cf < r->n_cf ? r->cf_names[cf] : NULL;
}

const char *rs__rocks_dir(const rs__rocks_t *r) {
  return r->dir;
}

const char *rs__rocks_errmsg(const rs__rocks_t *r) {
  return r->errmsg;
}

int rs__rocks_fail(rs__rocks_t *r, int err, const char *what) {
  snprintf(r->errmsg, sizeof r->errmsg, "state directory %s: %s", r->dir, what);
  return err;
}

static int bad_cf(rs__rocks_t *r, int cf) {
  if (cf >= 0 && (size_t)cf < r->n_cf)
    return 0;
  snprintf(r->errmsg, sizeof r->errmsg, "no column family #%d", cf);
  return RS_EINVAL;
}

int rs__rocks_get(rs__rocks_t *r, rs__rocks_batch_t *batch, int cf,
                  const void *key, size_t key_len, rs_buf_t *val) {
  if (bad_cf(r, cf))
    return RS_EINVAL;
  char *err = NULL;
  size_t n = 0;
  if (batch && (!batch->wi || !rocksdb_writebatch_wi_count(batch->wi)))
    batch = NULL; /* plain batches are write-only; empty ones cost a lookup */
  char *v =
      batch
          ? rocksdb_writebatch_wi_get_from_batch_and_db_cf(
                batch->wi, r->db, r->ropts, r->cfs[cf], key, key_len, &n, &err)
          : rocksdb_get_cf(r->db, r->ropts, r->cfs[cf], key, key_len, &n, &err);
  if (err)
    return take_err(r, err, "read");
  if (!v)
    return RS_ENOENT;
  rs_buf_reset(val);
  int rc = rs_buf_append(val, v, n);
  rocksdb_free(v);
  return rc;
}

int rs__rocks_put(rs__rocks_t *r, int cf, const void *key, size_t key_len,
                  const void *val, size_t val_len) {
  if (bad_cf(r, cf))
    return RS_EINVAL;
  char *err = NULL;
  rocksdb_put_cf(r->db, r->wopts_nosync, r->cfs[cf], key, key_len, val, val_len,
                 &err);
  return err ? take_err(r, err, "write") : 0;
}

int rs__rocks_delete(rs__rocks_t *r, int cf, const void *key, size_t key_len) {
  if (bad_cf(r, cf))
    return RS_EINVAL;
  char *err = NULL;
  rocksdb_delete_cf(r->db, r->wopts_nosync, r->cfs[cf], key, key_len, &err);
  return err ? take_err(r, err, "delete") : 0;
}

int rs__rocks_delete_range(rs__rocks_t *r, int cf, const void *begin,
                           size_t begin_len, const void *end, size_t end_len) {
  if (bad_cf(r, cf))
    return RS_EINVAL;
  char *err = NULL;
  rocksdb_delete_range_cf(r->db, r->sync ? r->wopts_sync : r->wopts_nosync,
                          r->cfs[cf], begin, begin_len, end, end_len, &err);
  return err ? take_err(r, err, "range delete") : 0;
}

rs__rocks_batch_t *rs__rocks_batch_create(void) {
  rs__rocks_batch_t *b = rs_calloc(1, sizeof *b);
  if (!b)
    return NULL;
  /* overwrite_keys=1: a key written twice is indexed once, so reads see
   * the newest pending value. */
  b->wi = rocksdb_writebatch_wi_create(0, 1);
  return b;
}

rs__rocks_batch_t *rs__rocks_batch_plain(rs__rocks_batch_t *src) {
  rs__rocks_batch_t *b = rs_calloc(1, sizeof *b);
  if (!b)
    return NULL;
  size_t n = 0;
  const char *rep = NULL;
  if (src && src->wi && rocksdb_writebatch_wi_count(src->wi))
    rep = rocksdb_writebatch_wi_data(src->wi, &n);
  else if (src && src->wb && rocksdb_writebatch_count(src->wb))
    rep = rocksdb_writebatch_data(src->wb, &n);
  b->wb = rep ? rocksdb_writebatch_create_from(rep, n)
              : rocksdb_writebatch_create();
  return b;
}

void rs__rocks_batch_destroy(rs__rocks_batch_t *b) {
  if (!b)
    return;
  if (b->wi)
    rocksdb_writebatch_wi_destroy(b->wi);
  if (b->wb)
    rocksdb_writebatch_destroy(b->wb);
  rs_free(b);
}

void rs__rocks_batch_put(rs__rocks_t *r, rs__rocks_batch_t *b, int cf,
                         const void *key, size_t key_len, const void *val,
                         size_t val_len) {
  if (b->wi)
    rocksdb_writebatch_wi_put_cf(b->wi, r->cfs[cf], key, key_len, val, val_len);
  else
    rocksdb_writebatch_put_cf(b->wb, r->cfs[cf], key, key_len, val, val_len);
}

void rs__rocks_batch_delete(rs__rocks_t *r, rs__rocks_batch_t *b, int cf,
                            const void *key, size_t key_len) {
  if (b->wi)
    rocksdb_writebatch_wi_delete_cf(b->wi, r->cfs[cf], key, key_len);
  else
    rocksdb_writebatch_delete_cf(b->wb, r->cfs[cf], key, key_len);
}

int rs__rocks_batch_count(rs__rocks_batch_t *b) {
  return b->wi ? rocksdb_writebatch_wi_count(b->wi)
               : rocksdb_writebatch_count(b->wb);
}

size_t rs__rocks_batch_bytes(rs__rocks_batch_t *b) {
  size_t n = 0;
  if (b->wi)
    rocksdb_writebatch_wi_data(b->wi, &n);
  else
    rocksdb_writebatch_data(b->wb, &n);
  return n;
}

void rs__rocks_batch_clear(rs__rocks_batch_t *b) {
  if (b->wi)
    rocksdb_writebatch_wi_clear(b->wi);
  else
    rocksdb_writebatch_clear(b->wb);
}

int rs__rocks_batch_write_detached(rs__rocks_t *r, rs__rocks_batch_t *b,
                                   int sync, char *errstr, size_t errstr_size) {
  char *err = NULL;
  int s = sync < 0 ? r->sync : sync;
  const rocksdb_writeoptions_t *wo = s ? r->wopts_sync : r->wopts_nosync;
  if (b->wi)
    rocksdb_write_writebatch_wi(r->db, wo, b->wi, &err);
  else
    rocksdb_write(r->db, wo, b->wb, &err);
  if (!err)
    return 0;
  rs_seterr(errstr, errstr_size, RS_ESTATE,
            "state directory %s: checkpoint write: %s", r->dir, err);
  rocksdb_free(err);
  return RS_ESTATE;
}

/* The same, on the thread that owns r: the message goes to r's errmsg. */
int rs__rocks_batch_write(rs__rocks_t *r, rs__rocks_batch_t *b, int sync) {
  return rs__rocks_batch_write_detached(r, b, sync, r->errmsg,
                                        sizeof r->errmsg);
}

rs__rocks_iter_t *rs__rocks_iter_create(rs__rocks_t *r,
                                        rs__rocks_batch_t *batch, int cf,
                                        const void *lower, size_t lower_len,
                                        const void *upper, size_t upper_len) {
  if (bad_cf(r, cf))
    return NULL;
  rs__rocks_iter_t *it = rs_calloc(1, sizeof *it);
  if (!it)
    return NULL;
  if (upper && !(it->upper = rs_malloc(upper_len))) {
    rs_free(it);
    return NULL;
  }
  if (upper) {
    memcpy(it->upper, upper, upper_len);
    it->upper_len = upper_len;
  }
  it->ropts = rocksdb_readoptions_create();
  /* The bound lets RocksDB stop at the range end instead of scanning the
   * next partition's tombstones; the batch's delta is bounded by hand in
   * rs__rocks_iter_valid(). */
  if (upper)
    rocksdb_readoptions_set_iterate_upper_bound(it->ropts, it->upper,
                                                upper_len);
  rocksdb_iterator_t *base =
      rocksdb_create_iterator_cf(r->db, it->ropts, r->cfs[cf]);
  it->it = batch && batch->wi
               ? rocksdb_writebatch_wi_create_iterator_with_base_cf(
                     batch->wi, base, r->cfs[cf])
               : base;
  rocksdb_iter_seek(it->it, lower, lower_len);
  return it;
}

void rs__rocks_iter_destroy(rs__rocks_iter_t *it) {
  if (!it)
    return;
  rocksdb_iter_destroy(it->it);
  rocksdb_readoptions_destroy(it->ropts);
  rs_free(it->upper);
  rs_free(it);
}

int rs__rocks_iter_valid(rs__rocks_iter_t *it) {
  if (!rocksdb_iter_valid(it->it))
    return 0;
  if (!it->upper)
    return 1;
  size_t n;
  const char *k = rocksdb_iter_key(it->it, &n);
  size_t m = RS_MIN(n, it->upper_len);
  int c = memcmp(k, it->upper, m);
  return c < 0 || (c == 0 && n < it->upper_len);
}

void rs__rocks_iter_next(rs__rocks_iter_t *it) {
  rocksdb_iter_next(it->it);
}

const void *rs__rocks_iter_key(rs__rocks_iter_t *it, size_t *len) {
  return rocksdb_iter_key(it->it, len);
}

const void *rs__rocks_iter_value(rs__rocks_iter_t *it, size_t *len) {
  return rocksdb_iter_value(it->it, len);
}

int rs__rocks_iter_status(rs__rocks_t *r, rs__rocks_iter_t *it) {
  char *err = NULL;
  rocksdb_iter_get_error(it->it, &err);
  return err ? take_err(r, err, "scan") : 0;
}

int rs__rocks_cf_figures(rs__rocks_t *r, int cf, uint64_t out[4]) {
  static const char *const props[4] = {
      "rocksdb.estimate-num-keys", "rocksdb.total-sst-files-size",
      "rocksdb.cur-size-all-mem-tables",
      "rocksdb.estimate-pending-compaction-bytes"};
  if (bad_cf(r, cf))
    return RS_EINVAL;
  for (int i = 0; i < 4; i++)
    if (rocksdb_property_int_cf(r->db, r->cfs[cf], props[i], &out[i]))
      out[i] = 0;
  return 0;
}

void rs__rocks_cache_figures(rs__rocks_t *r, uint64_t *usage,
                             uint64_t *capacity) {
  *usage = r->cache ? rocksdb_cache_get_usage(r->cache) : 0;
  *capacity = r->cache ? rocksdb_cache_get_capacity(r->cache) : 0;
}
