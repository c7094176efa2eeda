/* The keyed store over RocksDB (see store.h): partition-prefixed keys, raw
 * point and range operations, the value helpers (float vectors, counters),
 * and the checkpoint that writes cache state and input offsets in one
 * atomic batch. RocksDB itself is reached only through rocks.h.
 */
#include "state/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/cache.h"

struct rs_store {
  rs__rocks_t *db;
  int offsets_cf;
  rs_buf_t key;  /* scratch: prefixed key */
  rs_buf_t key2; /* scratch: range ends */
  rs_buf_t val;  /* the value rs_store_get() lends out */
  uint64_t ckpts, ckpt_last_bytes, ckpt_total_bytes;
};

int rs__state_key(rs_buf_t *b, int32_t partition, const void *key,
                  size_t key_len) {
  uint32_t p = (uint32_t)partition;
  unsigned char pre[4] = {(unsigned char)(p >> 24), (unsigned char)(p >> 16),
                          (unsigned char)(p >> 8), (unsigned char)p};
  rs_buf_reset(b);
  if (rs_buf_reserve(b, 4 + key_len + 1))
    return RS_ENOMEM;
  memcpy(b->data, pre, 4);
  if (key_len)
    memcpy(b->data + 4, key, key_len);
  b->len = 4 + key_len;
  return 0;
}

int rs__state_prefix_end(const void *p, size_t n, rs_buf_t *out) {
  const unsigned char *s = p;
  while (n > 0 && s[n - 1] == 0xff)
    n--;
  if (n == 0)
    return RS_ENOENT;
  rs_buf_reset(out);
  if (rs_buf_append(out, s, n))
    return RS_ENOMEM;
  out->data[n - 1] = (char)(s[n - 1] + 1);
  return 0;
}

void rs__state_floats_encode(unsigned char *dst, const float *v, size_t dim) {
  for (size_t i = 0; i < dim; i++) {
    uint32_t u;
    memcpy(&u, &v[i], 4);
    dst[4 * i] = (unsigned char)u;
    dst[4 * i + 1] = (unsigned char)(u >> 8);
    dst[4 * i + 2] = (unsigned char)(u >> 16);
    dst[4 * i + 3] = (unsigned char)(u >> 24);
  }
}

void rs__state_floats_decode(float *dst, const unsigned char *src, size_t dim) {
  for (size_t i = 0; i < dim; i++) {
    const unsigned char *b = src + 4 * i;
    uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                 (uint32_t)b[3] << 24;
    memcpy(&dst[i], &u, 4);
  }
}

void rs__state_i64_encode(unsigned char dst[8], int64_t v) {
  uint64_t u = (uint64_t)v;
  for (int i = 0; i < 8; i++)
    dst[i] = (unsigned char)(u >> (8 * i));
}

int64_t rs__state_i64_decode(const unsigned char src[8]) {
  uint64_t u = 0;
  for (int i = 0; i < 8; i++)
    u |= (uint64_t)src[i] << (8 * i);
  return (int64_t)u;
}

int rs_store_open(const char *dir, const char *const *cf_names, size_t n_cf,
                  const rs_store_opts_t *opts, rs_store_t **out, char *errstr,
                  size_t errstr_size) {
  *out = NULL;
  rs_store_t *s = rs_calloc(1, sizeof *s);
  if (!s)
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  int rc =
      rs__rocks_open(dir, cf_names, n_cf, opts, &s->db, errstr, errstr_size);
  if (rc) {
    rs_free(s);
    return rc;
  }
  s->offsets_cf = rs__rocks_cf_find(s->db, RS_STORE_OFFSETS_CF);
  *out = s;
  return 0;
}

int rs_store_open_readonly(const char *dir, rs_store_t **out, char *errstr,
                           size_t errstr_size) {
  *out = NULL;
  rs_store_t *s = rs_calloc(1, sizeof *s);
  if (!s)
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  int rc = rs__rocks_open_readonly(dir, &s->db, errstr, errstr_size);
  if (rc) {
    rs_free(s);
    return rc;
  }
  s->offsets_cf = rs__rocks_cf_find(s->db, RS_STORE_OFFSETS_CF);
  if (s->offsets_cf < 0) {
    rs_store_destroy(s);
    return rs_seterr(errstr, errstr_size, RS_ESTATE,
                     "state directory %s holds a RocksDB database without "
                     "the " RS_STORE_OFFSETS_CF " column family: not a "
                     "recstream state directory; rebuild it with `recstream "
                     "replay`, or start empty with `recstream run "
                     "--reset-state`",
                     dir);
  }
  *out = s;
  return 0;
}

void rs_store_destroy(rs_store_t *s) {
  if (!s)
    return;
  rs__rocks_close(s->db);
  rs_buf_free(&s->key);
  rs_buf_free(&s->key2);
  rs_buf_free(&s->val);
  rs_free(s);
}

rs__rocks_t *rs__store_rocks(rs_store_t *s) {
  return s->db;
}

int rs_store_cf(const rs_store_t *s, const char *name) {
  int i = rs__rocks_cf_find(s->db, name);
  return i < 0 ? RS_ENOENT : i;
}

int rs_store_cf_count(const rs_store_t *s) {
  return (int)rs__rocks_cf_count(s->db);
}

const char *rs_store_cf_name(const rs_store_t *s, int cf) {
  return rs__rocks_cf_name(s->db, cf);
}

const char *rs_store_dir(const rs_store_t *s) {
  return rs__rocks_dir(s->db);
}

const char *rs_store_errmsg(const rs_store_t *s) {
  return rs__rocks_errmsg(s->db);
}

int rs_store_get(rs_store_t *s, int cf, int32_t partition, const void *key,
                 size_t key_len, const void **value, size_t *value_len) {
  int rc = rs__state_key(&s->key, partition, key, key_len);
  if (!rc)
    rc = rs__rocks_get(s->db, NULL, cf, s->key.data, s->key.len, &s->val);
  if (rc)
    return rc;
  *value = s->val.data;
  *value_len = s->val.len;
  return 0;
}

int rs_store_put(rs_store_t *s, int cf, int32_t partition, const void *key,
                 size_t key_len, const void *value, size_t value_len) {
  int rc = rs__state_key(&s->key, partition, key, key_len);
  return rc ? rc
            : rs__rocks_put(s->db, cf, s->key.data, s->key.len, value,
                            value_len);
}

int rs_store_delete(rs_store_t *s, int cf, int32_t partition, const void *key,
                    size_t key_len) {
  int rc = rs__state_key(&s->key, partition, key, key_len);
  return rc ? rc : rs__rocks_delete(s->db, cf, s->key.data, s->key.len);
}

int rs_store_scan(rs_store_t *s, int cf, int32_t partition, const void *prefix,
                  size_t prefix_len, rs_state_scan_cb cb, void *opaque) {
  int rc = rs__state_key(&s->key, partition, prefix, prefix_len);
  if (rc)
    return rc;
  int has_end = rs__state_prefix_end(s->key.data, s->key.len, &s->key2) == 0;
  rs__rocks_iter_t *it =
      rs__rocks_iter_create(s->db, NULL, cf, s->key.data, s->key.len,
                            has_end ? s->key2.data : NULL, s->key2.len);
  if (!it)
    return cf < 0 || (size_t)cf >= rs__rocks_cf_count(s->db) ? RS_EINVAL
                                                             : RS_ENOMEM;
  for (; !rc && rs__rocks_iter_valid(it); rs__rocks_iter_next(it)) {
    size_t kn, vn;
    const char *k = rs__rocks_iter_key(it, &kn);
    const void *v = rs__rocks_iter_value(it, &vn);
    rc = cb(opaque, k + 4, kn - 4, v, vn);
  }
  if (!rc)
    rc = rs__rocks_iter_status(s->db, it);
  rs__rocks_iter_destroy(it);
  return rc;
}

int rs_store_scan_all(rs_store_t *s, int cf, rs_state_scan_all_cb cb,
                      void *opaque) {
  rs__rocks_iter_t *it = rs__rocks_iter_create(s->db, NULL, cf, "", 0, NULL, 0);
  if (!it)
    return cf < 0 || (size_t)cf >= rs__rocks_cf_count(s->db) ? RS_EINVAL
                                                             : RS_ENOMEM;
  int rc = 0;
  for (; !rc && rs__rocks_iter_valid(it); rs__rocks_iter_next(it)) {
    size_t kn, vn;
    const unsigned char *k = rs__rocks_iter_key(it, &kn);
    const void *v = rs__rocks_iter_value(it, &vn);
    if (kn < 4) {
      rc = rs__rocks_fail(s->db, RS_ESTATE,
                          "a key is shorter than its 4-byte partition "
                          "prefix: not a recstream operator column family");
      break;
    }
    int32_t p = (int32_t)((uint32_t)k[0] << 24 | (uint32_t)k[1] << 16 |
                          (uint32_t)k[2] << 8 | (uint32_t)k[3]);
    rc = cb(opaque, p, k + 4, kn - 4, v, vn);
  }
  if (!rc)
    rc = rs__rocks_iter_status(s->db, it);
  rs__rocks_iter_destroy(it);
  return rc;
}

int rs_store_drop_partition(rs_store_t *s, int cf, int32_t partition) {
  if (partition < 0)
    return RS_EINVAL;
  int rc = rs__state_key(&s->key, partition, NULL, 0);
  if (rc)
    return rc;
  /* Kafka partitions are non-negative, so the prefix is below 0x80000000
   * and always has a 4-byte successor. */
  if (rs__state_prefix_end(s->key.data, 4, &s->key2))
    return RS_EINTERNAL;
  return rs__rocks_delete_range(s->db, cf, s->key.data, 4, s->key2.data,
                                s->key2.len);
}

int rs__kv_get_floats(const rs__kv_t *kv, int cf, int32_t partition,
                      const void *key, size_t key_len, float *out, size_t dim) {
  const void *v;
  size_t n;
  int rc = kv->get(kv->h, cf, partition, key, key_len, &v, &n);
  if (rc)
    return rc;
  if (n != dim * 4)
    return RS_ERANGE;
  rs__state_floats_decode(out, v, dim);
  return 0;
}

int rs__kv_put_floats(const rs__kv_t *kv, int cf, int32_t partition,
                      const void *key, size_t key_len, const float *v,
                      size_t dim) {
  rs_buf_reset(kv->scratch);
  if (rs_buf_reserve(kv->scratch, dim * 4 + 1))
    return RS_ENOMEM;
  rs__state_floats_encode((unsigned char *)kv->scratch->data, v, dim);
  return kv->put(kv->h, cf, partition, key, key_len, kv->scratch->data,
                 dim * 4);
}

int rs__kv_counter_add(const rs__kv_t *kv, int cf, int32_t partition,
                       const void *key, size_t key_len, int64_t delta,
                       int64_t *result) {
  const void *v;
  size_t n;
  int64_t cur = 0;
  int rc = kv->get(kv->h, cf, partition, key, key_len, &v, &n);
  if (rc == 0) {
    if (n != 8)
      return RS_ERANGE;
    cur = rs__state_i64_decode(v);
  } else if (rc != RS_ENOENT) {
    return rc;
  }
  cur = (int64_t)((uint64_t)cur + (uint64_t)delta); /* wraps, never UB */
  unsigned char b[8];
  rs__state_i64_encode(b, cur);
  if (result)
    *result = cur;
  return kv->put(kv->h, cf, partition, key, key_len, b, 8);
}

static int store_get(void *h, int cf, int32_t partition, const void *key,
                     size_t key_len, const void **value, size_t *value_len) {
  return rs_store_get(h, cf, partition, key, key_len, value, value_len);
}

static int store_put(void *h, int cf, int32_t partition, const void *key,
                     size_t key_len, const void *value, size_t value_len) {
  return rs_store_put(h, cf, partition, key, key_len, value, value_len);
}

int rs_store_get_floats(rs_store_t *s, int cf, int32_t partition,
                        const void *key, size_t key_len, float *out,
                        size_t dim) {
  rs__kv_t kv = {s, store_get, store_put, &s->val};
  return rs__kv_get_floats(&kv, cf, partition, key, key_len, out, dim);
}

int rs_store_put_floats(rs_store_t *s, int cf, int32_t partition,
                        const void *key, size_t key_len, const float *v,
                        size_t dim) {
  rs__kv_t kv = {s, store_get, store_put, &s->val};
  return rs__kv_put_floats(&kv, cf, partition, key, key_len, v, dim);
}

int rs_store_counter_add(rs_store_t *s, int cf, int32_t partition,
                         const void *key, size_t key_len, int64_t delta,
                         int64_t *result) {
  rs__kv_t kv = {s, store_get, store_put, &s->val};
  return rs__kv_counter_add(&kv, cf, partition, key, key_len, delta, result);
}

/* __offsets key: topic bytes, a NUL, the partition big-endian. Value: the
 * next offset then the extra fields, int64 little-endian each. */
static int offset_key(rs_buf_t *b, const char *topic, int32_t partition) {
  size_t tl = strlen(topic);
  rs_buf_reset(b);
  if (rs_buf_append(b, topic, tl + 1))
    return RS_ENOMEM;
  uint32_t p = (uint32_t)partition;
  unsigned char pre[4] = {(unsigned char)(p >> 24), (unsigned char)(p >> 16),
                          (unsigned char)(p >> 8), (unsigned char)p};
  return rs_buf_append(b, pre, 4);
}

int rs_store_delete_offset(rs_store_t *s, const char *topic,
                           int32_t partition) {
  int rc = offset_key(&s->key, topic, partition);
  if (!rc)
    rc = rs__rocks_get(s->db, NULL, s->offsets_cf, s->key.data, s->key.len,
                       &s->val);
  if (!rc)
    rc = rs__rocks_delete(s->db, s->offsets_cf, s->key.data, s->key.len);
  return rc;
}

static int check_offsets(const rs_offset_t *offsets, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!offsets[i].topic || offsets[i].n_extra > RS_OFFSET_MAX_EXTRA)
      return RS_EINVAL;
  return 0;
}

static int put_offsets(rs_store_t *s, rs__rocks_batch_t *b,
                       const rs_offset_t *offsets, size_t n) {
  int rc = 0;
  for (size_t i = 0; !rc && i < n; i++) {
    unsigned char v[8 * (1 + RS_OFFSET_MAX_EXTRA)];
    rs__state_i64_encode(v, offsets[i].next_offset);
    for (size_t j = 0; j < offsets[i].n_extra; j++)
      rs__state_i64_encode(v + 8 * (j + 1), offsets[i].extra[j]);
    rc = offset_key(&s->key, offsets[i].topic, offsets[i].partition);
    if (!rc)
      rs__rocks_batch_put(s->db, b, s->offsets_cf, s->key.data, s->key.len, v,
                          8 * (1 + offsets[i].n_extra));
  }
  return rc;
}

/* A plain batch seeded with what the cache spilled since the last
 * checkpoint, then every dirty entry and the offsets: appending to it
 * costs a copy each, where the spill's indexed batch would cost a
 * skiplist insert each. */
static int build_batch(rs_store_t *s, rs_cache_t *cache,
                       const rs_offset_t *offsets, size_t n, int dirty,
                       rs__rocks_batch_t **out) {
  *out = NULL;
  int rc = check_offsets(offsets, n);
  if (rc)
    return rc;
  if (cache && rs__cache_is_staged(cache))
    return RS_EINVAL; /* a staged checkpoint must be written first */
  rs__rocks_batch_t *b =
      rs__rocks_batch_plain(cache ? rs__cache_batch(cache) : NULL);
  if (!b)
    return RS_ENOMEM;
  rc = cache && dirty ? rs__cache_stage_dirty(cache, b) : 0;
  if (!rc)
    rc = put_offsets(s, b, offsets, n);
  if (rc) {
    rs__rocks_batch_destroy(b);
    return rc;
  }
  *out = b;
  return 0;
}

static void count_write(rs_store_t *s, size_t bytes) {
  s->ckpts++;
  s->ckpt_last_bytes = bytes;
  s->ckpt_total_bytes += bytes;
}

int rs_store_checkpoint(rs_store_t *s, rs_cache_t *cache,
                        const rs_offset_t *offsets, size_t n) {
  rs__rocks_batch_t *b;
  int rc = build_batch(s, cache, offsets, n, 1, &b);
  if (rc)
    return rc;
  size_t bytes = rs__rocks_batch_bytes(b);
  if (!rc)
    rc = rs__rocks_batch_write(s->db, b, -1);
  rs__rocks_batch_destroy(b);
  if (!rc)
    count_write(s, bytes);
  /* On failure nothing was written and the cache is untouched. */
  if (!rc && cache)
    rs__cache_checkpointed(cache);
  return rc;
}

/* The staged batch holds the spill as of T and the offsets; the dirty
 * entries of T are added by the write (rs_store_staged_write), on the
 * writer's thread, from the cache's pinned blocks (ents): building the
 * batch is the costly part of the capture (~5 us per entry here, mostly
 * the batch's growing buffer faulting in fresh pages). */
struct rs_store_staged {
  rs__rocks_t *db;
  rs__rocks_batch_t *b;         /* NULL once written */
  const rs__staged_ent_t *ents; /* owned by the cache */
  size_t n_ents;
  int built;     /* ents are in b */
  rs_buf_t kbuf; /* the writer's key buffer */
  size_t bytes;  /* of the batch, when written */
};

int rs_store_checkpoint_stage(rs_store_t *s, rs_cache_t *cache,
                              const rs_offset_t *offsets, size_t n,
                              rs_store_staged_t **out) {
  *out = NULL;
  rs_store_staged_t *st = rs_calloc(1, sizeof *st);
  if (!st)
    return RS_ENOMEM;
  int rc = build_batch(s, cache, offsets, n, 0, &st->b);
  if (!rc && cache &&
      (rc = rs__cache_pin_staged(cache, &st->ents, &st->n_ents)))
    rs__rocks_batch_destroy(st->b);
  if (rc) {
    rs_free(st);
    return rc;
  }
  st->db = s->db;
  *out = st;
  return 0;
}

int rs_store_staged_add_offsets(rs_store_t *s, rs_store_staged_t *st,
                                const rs_offset_t *offsets, size_t n) {
  int rc = check_offsets(offsets, n);
  return rc ? rc : put_offsets(s, st->b, offsets, n);
}

int rs_store_staged_empty(rs_store_staged_t *st) {
  return st->n_ents == 0 && (!st->b || rs__rocks_batch_count(st->b) == 0);
}

int rs_store_staged_write(rs_store_staged_t *st, char *errstr,
                          size_t errstr_size) {
  if (!st->built) {
    /* Appended after the spill's copy (the newer values win), and after
     * the offsets, which are in a column family of their own. A retry
     * after a failure here appends the same writes again: harmless. */
    if (rs__cache_stage_entries(st->db, st->b, st->ents, st->n_ents,
                                &st->kbuf)) {
      snprintf(errstr, errstr_size, "out of memory");
      return RS_ENOMEM;
    }
    st->built = 1;
  }
  if (!st->b)
    return 0; /* written already (store.h: once) */
  st->bytes = rs__rocks_batch_bytes(st->b);
  int rc =
      rs__rocks_batch_write_detached(st->db, st->b, -1, errstr, errstr_size);
  if (!rc) { /* freed here, off the loop: ~5-17 ms for a 17 MB batch */
    rs__rocks_batch_destroy(st->b);
    st->b = NULL;
  }
  return rc;
}

void rs_store_staged_done(rs_store_t *s, rs_cache_t *cache,
                          rs_store_staged_t *st) {
  if (!st)
    return;
  if (st->bytes || !rs_store_staged_empty(st))
    count_write(s, st->bytes);
  if (cache)
    rs__cache_durable(cache);
  rs_store_staged_free(st);
}

void rs_store_staged_free(rs_store_staged_t *st) {
  if (!st)
    return;
  rs__rocks_batch_destroy(st->b);
  rs_buf_free(&st->kbuf);
  rs_free(st);
}

typedef struct offs_acc {
  rs_offset_t *v;
  size_t n, cap;
} offs_acc_t;

static int offs_cb(offs_acc_t *a, const char *k, size_t kn, const void *val,
                   size_t vn) {
  const char *nul = memchr(k, '\0', kn);
  if (!nul || (size_t)(k + kn - nul) != 5 || vn < 8 || vn % 8 ||
      vn > 8 * (1 + RS_OFFSET_MAX_EXTRA))
    return RS_ESTATE;
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 16;
    rs_offset_t *nv = rs_realloc(a->v, cap * sizeof *nv);
    if (!nv)
      return RS_ENOMEM;
    a->v = nv;
    a->cap = cap;
  }
  rs_offset_t *o = &a->v[a->n];
  memset(o, 0, sizeof *o);
  if (!(o->topic = rs_strndup(k, (size_t)(nul - k))))
    return RS_ENOMEM;
  a->n++;
  const unsigned char *p = (const unsigned char *)nul + 1;
  o->partition = (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                           (uint32_t)p[2] << 8 | (uint32_t)p[3]);
  o->next_offset = rs__state_i64_decode(val);
  o->n_extra = vn / 8 - 1;
  for (size_t j = 0; j < o->n_extra; j++)
    o->extra[j] =
        rs__state_i64_decode((const unsigned char *)val + 8 * (j + 1));
  return 0;
}

int rs_store_read_offsets(rs_store_t *s, rs_offset_t **out, size_t *n) {
  *out = NULL;
  *n = 0;
  offs_acc_t a = {0};
  rs__rocks_iter_t *it =
      rs__rocks_iter_create(s->db, NULL, s->offsets_cf, "", 0, NULL, 0);
  if (!it)
    return RS_ENOMEM;
  int rc = 0;
  for (; !rc && rs__rocks_iter_valid(it); rs__rocks_iter_next(it)) {
    size_t kn, vn;
    const char *k = rs__rocks_iter_key(it, &kn);
    const void *v = rs__rocks_iter_value(it, &vn);
    rc = offs_cb(&a, k, kn, v, vn);
    if (rc == RS_ESTATE)
      rs__rocks_fail(s->db, rc,
                     "a record in __offsets is malformed; rebuild the state "
                     "with `recstream replay`, or start empty with "
                     "--reset-state");
  }
  if (!rc)
    rc = rs__rocks_iter_status(s->db, it);
  rs__rocks_iter_destroy(it);
  if (rc) {
    rs_store_offsets_free(a.v, a.n);
    return rc;
  }
  *out = a.v;
  *n = a.n;
  return 0;
}

void rs_store_offsets_free(rs_offset_t *offsets, size_t n) {
  for (size_t i = 0; i < n; i++)
    rs_free((char *)offsets[i].topic);
  rs_free(offsets);
}

void rs_store_stats(rs_store_t *s, rs_store_stats_t *out) {
  memset(out, 0, sizeof(*out));
  rs__rocks_cache_figures(s->db, &out->block_cache_bytes,
                          &out->block_cache_capacity);
  out->checkpoints = s->ckpts;
  out->checkpoint_last_bytes = s->ckpt_last_bytes;
  out->checkpoint_total_bytes = s->ckpt_total_bytes;
}

int rs_store_cf_stats(rs_store_t *s, int cf, rs_store_cf_stats_t *out) {
  uint64_t v[4];
  int rc = rs__rocks_cf_figures(s->db, cf, v);
  if (rc)
    return rc;
  *out = (rs_store_cf_stats_t){v[0], v[1], v[2], v[3]};
  return 0;
}
