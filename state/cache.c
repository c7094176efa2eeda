/* The write-back state cache (see cache.h for the contract and why evicted
 * dirty entries go to a pending batch rather than the database).
 *
 * Layout: a chained hash table (xxh3 of the key, seeded by column family
 * and partition) over entries that each live in one block holding header,
 * key and value. Blocks come from size classes (64, 96, 128, 192, ... 1 MiB,
 * larger ones exact) with a small per-class free list, so a hit allocates
 * nothing and a put that fits its block updates in place. Entries sit on an
 * CLOCK ring and, while dirty, on a dirty list so a
 * checkpoint costs O(dirty entries), not O(cache).
 *
 * Accounting: total bytes = live blocks + free-list blocks + the bucket
 * array. After any call returns it is <= the bound; an entry that alone
 * would not fit is not cached (a put then goes straight to the pending
 * batch, a read is served from a scratch buffer).
 */
#include "state/cache.h"

#include <stdlib.h>
#include <string.h>

#define F_DIRTY 1u
#define F_ABSENT 2u  /* a cached miss, or a tombstone when also dirty */
#define F_REF 4u     /* used since the CLOCK hand last passed */
#define F_PINNED 8u  /* staged, unchanged since: on the pinned list */
#define N_CLASSES 29 /* 64 << 14 = 1 MiB is the largest class */
#define CLS_LARGE 0xffu

typedef struct entry entry_t;
struct entry {
  entry_t *hnext;         /* hash chain; free-list link when free */
  entry_t *lprev, *lnext; /* CLOCK ring, or the pinned list (F_PINNED) */
  entry_t *dprev, *dnext;
  uint64_t hash;
  int32_t partition;
  int32_t cf;
  uint32_t klen, vlen;
  uint32_t cap;   /* bytes available for key + value */
  uint32_t bytes; /* accounted size of the block */
  uint8_t flags;
  uint8_t cls;
  unsigned char data[]; /* key, then value */
};

struct rs_cache {
  rs_store_t *store;
  rs__rocks_t *db;
  rs__rocks_batch_t *spill;
  /* While a staged checkpoint is being written (staged): its entries are
   * pinned (off the CLOCK ring, on the pinned list), and evictions go to
   * spill_next as well as spill, which becomes the spill once the
   * checkpoint is durable. */
  rs__rocks_batch_t *spill_next;
  int staged;
  entry_t *phead; /* pinned entries (lprev/lnext), not on the ring */
  size_t npinned;
  /* The staged entries as the writer sees them (rs__cache_pin_staged),
   * and the blocks of pinned entries changed since (retired: out of the
   * table and every list but this one, linked by lnext), which the
   * writer may still be reading: freed by rs__cache_durable(). */
  rs__staged_ent_t *stg;
  size_t nstg, stg_cap;
  entry_t *rhead;
  size_t retired_bytes;
  size_t ndirty;
  entry_t **buckets;
  size_t nbuckets; /* a power of two */
  size_t n;
  entry_t *hand; /* CLOCK hand on the ring of entries */
  entry_t *dhead;
  entry_t *freel[N_CLASSES];
  size_t free_bytes, free_cap;
  size_t live_bytes, dirty_bytes, bound;
  uint64_t hits, misses, evictions, writebacks, victim_steps;
  rs_buf_t key;  /* prefixed key of the current call */
  rs_buf_t ekey; /* prefixed key of an entry being spilled or staged */
  rs_buf_t val;  /* values read but too large to cache */
  rs_buf_t fbuf; /* encoded float vectors */
  entry_t **scan;
  size_t scan_cap;
};

static size_t class_size(unsigned cls) {
  return (size_t)((cls & 1) ? 96 : 64) << (cls / 2);
}

static unsigned class_for(size_t size) {
  for (unsigned i = 0; i < N_CLASSES; i++)
    if (class_size(i) >= size)
      return i;
  return CLS_LARGE;
}

static size_t total_bytes(const rs_cache_t *c) {
  return c->live_bytes + c->free_bytes + c->nbuckets * sizeof(entry_t *);
}

static uint64_t key_hash(int cf, int32_t partition, const void *key,
                         size_t klen) {
  uint64_t seed = (uint64_t)(uint32_t)cf << 32 | (uint32_t)partition;
  return rs_hash64(key, klen, seed);
}

int rs_cache_create(rs_store_t *store, size_t bound_bytes, rs_cache_t **out) {
  *out = NULL;
  rs_cache_t *c = rs_calloc(1, sizeof *c);
  if (!c)
    return RS_ENOMEM;
  c->store = store;
  c->db = rs__store_rocks(store);
  c->bound = bound_bytes ? bound_bytes : RS_CACHE_DEFAULT_BYTES;
  c->free_cap = RS_MIN(c->bound / 64, (size_t)4 << 20);
  c->nbuckets = 64;
  while (c->nbuckets * sizeof(entry_t *) * 64 < c->bound &&
         c->nbuckets < ((size_t)1 << 16))
    c->nbuckets *= 2;
  c->buckets = rs_calloc(c->nbuckets, sizeof *c->buckets);
  c->spill = rs__rocks_batch_create();
  if (!c->buckets || !c->spill) {
    rs_cache_destroy(c);
    return RS_ENOMEM;
  }
  *out = c;
  return 0;
}

void rs_cache_destroy(rs_cache_t *c) {
  if (!c)
    return;
  size_t pinned = 0;
  for (entry_t *e = c->phead, *next; e; e = next, pinned++) {
    next = e->lnext;
    rs_free(e);
  }
  for (entry_t *e = c->rhead, *next; e; e = next) {
    next = e->lnext;
    rs_free(e);
  }
  rs_free(c->stg);
  entry_t *e = c->hand;
  for (size_t i = pinned; i < c->n; i++) {
    entry_t *next = e->lnext;
    rs_free(e);
    e = next;
  }
  for (unsigned i = 0; i < N_CLASSES; i++)
    for (entry_t *f = c->freel[i], *next; f; f = next) {
      next = f->hnext;
      rs_free(f);
    }
  rs__rocks_batch_destroy(c->spill);
  rs__rocks_batch_destroy(c->spill_next);
  rs_free(c->buckets);
  rs_free(c->scan);
  rs_buf_free(&c->key);
  rs_buf_free(&c->ekey);
  rs_buf_free(&c->val);
  rs_buf_free(&c->fbuf);
  rs_free(c);
}

/* ---- lists ---- */

/* CLOCK: entries form a ring; a hit only sets F_REF in the entry it
 * already touched, where LRU would also write both list neighbours (two
 * more cache misses per hit on a large cache). The hand sweeps, clearing
 * F_REF, and evicts the first entry found without it. */
static void pinned_unlink(rs_cache_t *c, entry_t *e) {
  if (e->lprev)
    e->lprev->lnext = e->lnext;
  else
    c->phead = e->lnext;
  if (e->lnext)
    e->lnext->lprev = e->lprev;
  e->lprev = e->lnext = NULL;
  e->flags &= (uint8_t)~F_PINNED;
  c->npinned--;
}

static void ring_unlink(rs_cache_t *c, entry_t *e) {
  if (e->flags & F_PINNED) {
    pinned_unlink(c, e);
    return;
  }
  if (e->lnext == e) {
    c->hand = NULL;
  } else {
    e->lprev->lnext = e->lnext;
    e->lnext->lprev = e->lprev;
    if (c->hand == e)
      c->hand = e->lnext;
  }
  e->lprev = e->lnext = NULL;
}

/* New entries go just behind the hand: a full sweep before eviction. */
static void ring_push(rs_cache_t *c, entry_t *e) {
  entry_t *h = c->hand;
  if (!h) {
    e->lprev = e->lnext = c->hand = e;
    return;
  }
  e->lnext = h;
  e->lprev = h->lprev;
  h->lprev->lnext = e;
  h->lprev = e;
}

static void touch(entry_t *e) {
  e->flags |= F_REF;
}

/* Staged for the checkpoint being written and not changed since: the
 * database does not have its value yet, so it must stay. Such entries are
 * off the ring (rs__cache_pin_staged moves them to the pinned list, O(dirty)
 * like the staging itself), so the hand never walks past them: with most of
 * the cache pinned, an eviction still costs O(1) amortized. A change
 * retires the pinned block (retire) and caches the new value in a new
 * entry on the ring: a dirty one may go, eviction spills it. */
static void pinned_push(rs_cache_t *c, entry_t *e) {
  e->flags |= F_PINNED;
  c->npinned++;
  e->lprev = NULL;
  e->lnext = c->phead;
  if (c->phead)
    c->phead->lprev = e;
  c->phead = e;
}

static void pin(rs_cache_t *c, entry_t *e) {
  ring_unlink(c, e);
  pinned_push(c, e);
}

static void unpin(rs_cache_t *c, entry_t *e) {
  pinned_unlink(c, e);
  ring_push(c, e);
}

static void hash_unlink(rs_cache_t *c, entry_t *e);

/* A pinned entry about to change (put, delete): the checkpoint's writer
 * may be reading its block on another thread, so the block is left as it
 * is, taken out of the table and the pinned list (the caller caches the
 * new value in a new entry), and freed by rs__cache_durable(). Pinned
 * entries are clean: nothing to take off the dirty list. */
static void retire(rs_cache_t *c, entry_t *e) {
  hash_unlink(c, e);
  pinned_unlink(c, e);
  c->n--;
  c->live_bytes -= e->bytes;
  c->retired_bytes += e->bytes;
  e->lnext = c->rhead;
  c->rhead = e;
}

/* Undoes retire(c, e) (e is still the last one retired) when the new
 * entry could not be cached for want of memory: the change failed, and
 * the key must keep reading its value of T (the database does not have it
 * yet). */
static void unretire(rs_cache_t *c, entry_t *e) {
  c->rhead = e->lnext;
  c->retired_bytes -= e->bytes;
  c->live_bytes += e->bytes;
  c->n++;
  entry_t **b = &c->buckets[e->hash & (c->nbuckets - 1)];
  e->hnext = *b;
  *b = e;
  pinned_push(c, e);
}

static entry_t *victim(rs_cache_t *c, const entry_t *protect) {
  entry_t *h = c->hand; /* two turns of the ring at most */
  for (size_t i = 0; h && i <= 2 * (c->n - c->npinned); i++) {
    c->victim_steps++;
    if (h != protect && !(h->flags & F_REF)) {
      c->hand = h->lnext;
      return h;
    }
    h->flags &= (uint8_t)~F_REF;
    h = h->lnext;
  }
  return NULL;
}

static void dirty_set(rs_cache_t *c, entry_t *e) {
  if (e->flags & F_DIRTY)
    return;
  if (e->flags & F_PINNED)
    unpin(c, e); /* changed after T: evictable again (spilled if evicted) */
  e->flags |= F_DIRTY;
  c->ndirty++;
  e->dprev = NULL;
  e->dnext = c->dhead;
  if (c->dhead)
    c->dhead->dprev = e;
  c->dhead = e;
  c->dirty_bytes += e->bytes;
}

static void dirty_clear(rs_cache_t *c, entry_t *e) {
  if (!(e->flags & F_DIRTY))
    return;
  e->flags &= (uint8_t)~F_DIRTY;
  c->ndirty--;
  if (e->dprev)
    e->dprev->dnext = e->dnext;
  else
    c->dhead = e->dnext;
  if (e->dnext)
    e->dnext->dprev = e->dprev;
  e->dprev = e->dnext = NULL;
  c->dirty_bytes -= e->bytes;
}

static void hash_unlink(rs_cache_t *c, entry_t *e) {
  entry_t **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
  while (*pp != e)
    pp = &(*pp)->hnext;
  *pp = e->hnext;
  e->hnext = NULL;
}

static entry_t *find(rs_cache_t *c, uint64_t h, int cf, int32_t partition,
                     const void *key, size_t klen) {
  for (entry_t *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
    if (e->hash == h && e->klen == klen && e->cf == cf &&
        e->partition == partition && memcmp(e->data, key, klen) == 0)
      return e;
  return NULL;
}

/* ---- blocks ---- */

static entry_t *block_alloc(rs_cache_t *c, size_t payload) {
  size_t size = sizeof(entry_t) + payload;
  unsigned cls = class_for(size);
  entry_t *e;
  size_t bytes;
  if (cls == CLS_LARGE) {
    bytes = size;
    e = rs_malloc(size);
  } else {
    bytes = class_size(cls);
    e = c->freel[cls];
    if (e) {
      c->freel[cls] = e->hnext;
      c->free_bytes -= bytes;
    } else {
      e = rs_malloc(bytes);
    }
  }
  if (!e)
    return NULL;
  memset(e, 0, sizeof *e);
  e->cls = (uint8_t)cls;
  e->bytes = (uint32_t)bytes;
  e->cap = (uint32_t)(bytes - sizeof(entry_t));
  c->live_bytes += bytes;
  return e;
}

/* keep: worth reusing soon (a resize or delete), not an eviction. */
static void block_free(rs_cache_t *c, entry_t *e, int keep) {
  c->live_bytes -= e->bytes;
  if (keep && e->cls != CLS_LARGE && c->free_bytes + e->bytes <= c->free_cap) {
    e->hnext = c->freel[e->cls];
    c->freel[e->cls] = e;
    c->free_bytes += e->bytes;
  } else {
    rs_free(e);
  }
}

static int trim_free_block(rs_cache_t *c) {
  for (int i = N_CLASSES - 1; i >= 0; i--) {
    entry_t *e = c->freel[i];
    if (e) {
      c->freel[i] = e->hnext;
      c->free_bytes -= class_size((unsigned)i);
      rs_free(e);
      return 1;
    }
  }
  return 0;
}

/* ---- spill and eviction ---- */

/* Writes that bypass the cache go to the spill (readable, written by the
 * next checkpoint) and, while one is being written, to spill_next too:
 * the staged batch holds a copy of the spill as it was, so only what
 * comes after it must outlive the write. */
static void spill_put(rs_cache_t *c, int cf, const void *k, size_t kn,
                      const void *v, size_t vn) {
  rs__rocks_batch_put(c->db, c->spill, cf, k, kn, v, vn);
  if (c->staged)
    rs__rocks_batch_put(c->db, c->spill_next, cf, k, kn, v, vn);
}

static void spill_delete(rs_cache_t *c, int cf, const void *k, size_t kn) {
  rs__rocks_batch_delete(c->db, c->spill, cf, k, kn);
  if (c->staged)
    rs__rocks_batch_delete(c->db, c->spill_next, cf, k, kn);
}

static int stage(rs_cache_t *c, rs__rocks_batch_t *b, entry_t *e,
                 rs_buf_t *kb) {
  if (rs__state_key(kb, e->partition, e->data, e->klen))
    return RS_ENOMEM;
  if (e->flags & F_ABSENT)
    rs__rocks_batch_delete(c->db, b, e->cf, kb->data, kb->len);
  else
    rs__rocks_batch_put(c->db, b, e->cf, kb->data, kb->len, e->data + e->klen,
                        e->vlen);
  return 0;
}

/* Takes e out of the table, the ring and the dirty list; its block stays
 * allocated (block_free, or attach() to put it back). */
static void detach(rs_cache_t *c, entry_t *e) {
  dirty_clear(c, e);
  hash_unlink(c, e);
  ring_unlink(c, e);
  c->n--;
}

static void remove_entry(rs_cache_t *c, entry_t *e, int keep) {
  detach(c, e);
  block_free(c, e, keep);
}

/* Undoes detach(c, e); dirty: it was dirty. */
static void attach(rs_cache_t *c, entry_t *e, int dirty) {
  entry_t **b = &c->buckets[e->hash & (c->nbuckets - 1)];
  e->hnext = *b;
  *b = e;
  ring_push(c, e);
  c->n++;
  if (dirty)
    dirty_set(c, e);
}

static int evict(rs_cache_t *c, entry_t *e) {
  if (e->flags & F_DIRTY) {
    if (stage(c, c->spill, e, &c->ekey) ||
        (c->staged && stage(c, c->spill_next, e, &c->ekey)))
      return RS_ENOMEM; /* keep it: dropping it would lose the write */
    c->writebacks++;
  }
  c->evictions++;
  remove_entry(c, e, 0);
  return 0;
}

/* RS_ENOMEM only if a dirty victim could not be spilled; the cache is then
 * over its bound until memory is available again. */
static int make_room(rs_cache_t *c, const entry_t *protect) {
  while (total_bytes(c) > c->bound) {
    entry_t *v = victim(c, protect);
    if (v) {
      if (evict(c, v))
        return RS_ENOMEM;
    } else if (!trim_free_block(c)) {
      break;
    }
  }
  return 0;
}

static void grow_table(rs_cache_t *c) {
  size_t nb = c->nbuckets * 2;
  entry_t **b = rs_calloc(nb, sizeof *b);
  if (!b)
    return; /* longer chains, still correct */
  for (size_t i = 0; i < c->nbuckets; i++)
    for (entry_t *e = c->buckets[i], *next; e; e = next) {
      next = e->hnext;
      e->hnext = b[e->hash & (nb - 1)];
      b[e->hash & (nb - 1)] = e;
    }
  rs_free(c->buckets);
  c->buckets = b;
  c->nbuckets = nb;
}

/* Caches (key, value) with flags. *out is NULL when the entry alone would
 * not fit in the bound (the caller then bypasses the cache). */
static int insert(rs_cache_t *c, uint64_t h, int cf, int32_t partition,
                  const void *key, size_t klen, const void *val, size_t vlen,
                  unsigned flags, entry_t **out) {
  *out = NULL;
  size_t need = sizeof(entry_t) + klen + vlen;
  unsigned cls = class_for(need);
  size_t bytes = cls == CLS_LARGE ? need : class_size(cls);
  if (klen > UINT32_MAX || vlen > UINT32_MAX ||
      bytes + c->nbuckets * sizeof(entry_t *) > c->bound)
    return 0;
  if (c->n >= c->nbuckets &&
      (c->nbuckets * 2 * sizeof(entry_t *)) * 4 <= c->bound)
    grow_table(c);
  entry_t *e = block_alloc(c, klen + vlen);
  if (!e)
    return RS_ENOMEM;
  e->hash = h;
  e->cf = cf;
  e->partition = partition;
  e->klen = (uint32_t)klen;
  e->vlen = (uint32_t)vlen;
  memcpy(e->data, key, klen);
  if (vlen)
    memcpy(e->data + klen, val, vlen);
  entry_t **b = &c->buckets[h & (c->nbuckets - 1)];
  e->hnext = *b;
  *b = e;
  ring_push(c, e);
  c->n++;
  e->flags = (uint8_t)(flags & F_ABSENT);
  if (flags & F_DIRTY)
    dirty_set(c, e);
  *out = e;
  return make_room(c, e);
}

/* Also points empty keys at "" so memcmp/memcpy never see NULL. */
static int bad_args(rs_cache_t *c, int cf, const void **key, size_t klen) {
  if (!klen)
    *key = "";
  return cf < 0 || (size_t)cf >= rs__rocks_cf_count(c->db) || !*key;
}

/* ---- public API ---- */

int rs_cache_get(rs_cache_t *c, int cf, int32_t partition, const void *key,
                 size_t key_len, const void **value, size_t *value_len) {
  if (bad_args(c, cf, &key, key_len))
    return RS_EINVAL;
  uint64_t h = key_hash(cf, partition, key, key_len);
  entry_t *e = find(c, h, cf, partition, key, key_len);
  if (e) {
    c->hits++;
    touch(e);
    if (e->flags & F_ABSENT)
      return RS_ENOENT;
    *value = e->data + e->klen;
    *value_len = e->vlen;
    return 0;
  }
  c->misses++;
  int rc = rs__state_key(&c->key, partition, key, key_len);
  if (!rc)
    rc = rs__rocks_get(c->db, c->spill, cf, c->key.data, c->key.len, &c->val);
  if (rc && rc != RS_ENOENT)
    return rc;
  int found = rc == 0;
  rc = insert(c, h, cf, partition, key, key_len, c->val.data,
              found ? c->val.len : 0, found ? 0 : F_ABSENT, &e);
  if (rc)
    return rc;
  if (!found)
    return RS_ENOENT;
  *value = e ? e->data + e->klen : (const void *)c->val.data;
  *value_len = e ? e->vlen : c->val.len;
  return 0;
}

int rs_cache_put(rs_cache_t *c, int cf, int32_t partition, const void *key,
                 size_t key_len, const void *value, size_t value_len) {
  if (bad_args(c, cf, &key, key_len) || bad_args(c, cf, &value, value_len))
    return RS_EINVAL;
  uint64_t h = key_hash(cf, partition, key, key_len);
  entry_t *e = find(c, h, cf, partition, key, key_len), *old = NULL;
  if (e && (e->flags & F_PINNED)) {
    retire(c, e); /* copy on write: the writer may be reading it */
    old = e;
    e = NULL;
  }
  if (e && key_len + value_len <= e->cap) {
    memmove(e->data + key_len, value, value_len);
    e->vlen = (uint32_t)value_len;
    e->flags &= (uint8_t)~F_ABSENT;
    dirty_set(c, e);
    touch(e);
    return 0;
  }
  /* Outgrew its block: out of the way, but kept until the new value is
   * cached or spilled, so that a put failing for want of memory leaves
   * the key's value as it was. */
  entry_t *grown = e;
  int grown_dirty = grown && (grown->flags & F_DIRTY);
  if (grown)
    detach(c, grown);
  int rc =
      insert(c, h, cf, partition, key, key_len, value, value_len, F_DIRTY, &e);
  /* Too large to cache (no entry, no error): it goes to the pending batch
   * like an eviction. */
  if (!rc && !e)
    rc = rs__state_key(&c->key, partition, key, key_len);
  if (rc && !e) { /* the put failed: the value before it stays readable */
    if (old)
      unretire(c, old); /* the value of T */
    if (grown)
      attach(c, grown, grown_dirty);
    return rc;
  }
  if (grown)
    block_free(c, grown, 1);
  if (!e) {
    spill_put(c, cf, c->key.data, c->key.len, value, value_len);
    c->writebacks++;
  }
  return rc;
}

int rs_cache_delete(rs_cache_t *c, int cf, int32_t partition, const void *key,
                    size_t key_len) {
  if (bad_args(c, cf, &key, key_len))
    return RS_EINVAL;
  uint64_t h = key_hash(cf, partition, key, key_len);
  entry_t *e = find(c, h, cf, partition, key, key_len), *old = NULL;
  if (e && (e->flags & F_PINNED)) {
    retire(c, e); /* copy on write: the writer may be reading it */
    old = e;
    e = NULL;
  }
  if (e) {
    e->flags |= F_ABSENT;
    e->vlen = 0;
    dirty_set(c, e);
    touch(e);
    return 0;
  }
  int rc = insert(c, h, cf, partition, key, key_len, NULL, 0,
                  F_ABSENT | F_DIRTY, &e);
  if (rc && !e && old)
    unretire(c, old);
  if (rc || e)
    return rc;
  if ((rc = rs__state_key(&c->key, partition, key, key_len))) {
    if (old)
      unretire(c, old);
    return rc;
  }
  spill_delete(c, cf, c->key.data, c->key.len);
  return 0;
}

static int key_cmp(const void *a, size_t an, const void *b, size_t bn) {
  int r = memcmp(a, b, RS_MIN(an, bn));
  return r ? r : (an < bn ? -1 : an > bn);
}

static int entry_cmp(const void *pa, const void *pb) {
  const entry_t *a = *(const entry_t *const *)pa;
  const entry_t *b = *(const entry_t *const *)pb;
  return key_cmp(a->data, a->klen, b->data, b->klen);
}

int rs_cache_scan(rs_cache_t *c, int cf, int32_t partition, const void *prefix,
                  size_t prefix_len, rs_state_scan_cb cb, void *opaque) {
  if (bad_args(c, cf, &prefix, prefix_len))
    return RS_EINVAL;
  size_t m = 0;
  for (size_t i = 0; i < c->nbuckets; i++)
    for (entry_t *e = c->buckets[i]; e; e = e->hnext) {
      if (e->cf != cf || e->partition != partition || e->klen < prefix_len ||
          memcmp(e->data, prefix, prefix_len) != 0)
        continue;
      if (m == c->scan_cap) {
        size_t cap = c->scan_cap ? c->scan_cap * 2 : 64;
        entry_t **s = rs_realloc(c->scan, cap * sizeof *s);
        if (!s)
          return RS_ENOMEM;
        c->scan = s;
        c->scan_cap = cap;
      }
      c->scan[m++] = e;
    }
  if (m > 1)
    qsort(c->scan, m, sizeof *c->scan, entry_cmp);

  int rc = rs__state_key(&c->key, partition, prefix, prefix_len);
  if (rc)
    return rc;
  int has_end = rs__state_prefix_end(c->key.data, c->key.len, &c->ekey) == 0;
  rs__rocks_iter_t *it =
      rs__rocks_iter_create(c->db, c->spill, cf, c->key.data, c->key.len,
                            has_end ? c->ekey.data : NULL, c->ekey.len);
  if (!it)
    return RS_ENOMEM;
  size_t i = 0;
  while (!rc) {
    const char *dk = NULL;
    size_t dkn = 0;
    if (rs__rocks_iter_valid(it)) {
      dk = rs__rocks_iter_key(it, &dkn);
      if (dkn < c->key.len || memcmp(dk, c->key.data, c->key.len) != 0)
        dk = NULL; /* past the prefix */
    }
    entry_t *e = i < m ? c->scan[i] : NULL;
    if (!dk && !e)
      break;
    int cmp = !dk ? 1 : !e ? -1 : key_cmp(dk + 4, dkn - 4, e->data, e->klen);
    if (cmp < 0) {
      size_t vn;
      const void *v = rs__rocks_iter_value(it, &vn);
      rc = cb(opaque, dk + 4, dkn - 4, v, vn);
      rs__rocks_iter_next(it);
      continue;
    }
    if (cmp == 0)
      rs__rocks_iter_next(it); /* the cache's version wins */
    i++;
    if (!(e->flags & F_ABSENT))
      rc = cb(opaque, e->data, e->klen, e->data + e->klen, e->vlen);
  }
  if (!rc)
    rc = rs__rocks_iter_status(c->db, it);
  rs__rocks_iter_destroy(it);
  return rc;
}

static int collect_key(void *opaque, const void *key, size_t key_len,
                       const void *value, size_t value_len) {
  rs_buf_t *b = opaque;
  uint32_t n = (uint32_t)key_len;
  if (rs_buf_append(b, &n, sizeof n) || rs_buf_append(b, key, key_len))
    return RS_ENOMEM;
  return 0;
}

int rs_cache_drop_partition(rs_cache_t *c, int cf, int32_t partition) {
  /* Tombstones rather than a range delete: the pending batch is a
   * WriteBatchWithIndex, which does not support DeleteRange, and the drop
   * must land in the same checkpoint as the offsets. */
  rs_buf_t keys = {0};
  int rc = rs_cache_scan(c, cf, partition, NULL, 0, collect_key, &keys);
  for (size_t off = 0; !rc && off < keys.len;) {
    uint32_t n;
    memcpy(&n, keys.data + off, sizeof n);
    off += sizeof n;
    rc = rs_cache_delete(c, cf, partition, keys.data + off, n);
    off += n;
  }
  rs_buf_free(&keys);
  return rc;
}

static int cache_get(void *h, int cf, int32_t partition, const void *key,
                     size_t key_len, const void **value, size_t *value_len) {
  return rs_cache_get(h, cf, partition, key, key_len, value, value_len);
}

static int cache_put(void *h, int cf, int32_t partition, const void *key,
                     size_t key_len, const void *value, size_t value_len) {
  return rs_cache_put(h, cf, partition, key, key_len, value, value_len);
}

int rs_cache_get_floats(rs_cache_t *c, int cf, int32_t partition,
                        const void *key, size_t key_len, float *out,
                        size_t dim) {
  rs__kv_t kv = {c, cache_get, cache_put, &c->fbuf};
  return rs__kv_get_floats(&kv, cf, partition, key, key_len, out, dim);
}

int rs_cache_put_floats(rs_cache_t *c, int cf, int32_t partition,
                        const void *key, size_t key_len, const float *v,
                        size_t dim) {
  rs__kv_t kv = {c, cache_get, cache_put, &c->fbuf};
  return rs__kv_put_floats(&kv, cf, partition, key, key_len, v, dim);
}

int rs_cache_counter_add(rs_cache_t *c, int cf, int32_t partition,
                         const void *key, size_t key_len, int64_t delta,
                         int64_t *result) {
  rs__kv_t kv = {c, cache_get, cache_put, &c->fbuf};
  return rs__kv_counter_add(&kv, cf, partition, key, key_len, delta, result);
}

void rs_cache_stats(const rs_cache_t *c, rs_cache_stats_t *out) {
  memset(out, 0, sizeof *out);
  out->hits = c->hits;
  out->misses = c->misses;
  out->evictions = c->evictions;
  out->writebacks = c->writebacks;
  out->victim_steps = c->victim_steps;
  out->entries = c->n;
  out->total_bytes = total_bytes(c);
  out->dirty_bytes = c->dirty_bytes;
  out->spill_bytes =
      rs__rocks_batch_count(c->spill) ? rs__rocks_batch_bytes(c->spill) : 0;
  out->bound_bytes = c->bound;
  out->retired_bytes = c->retired_bytes;
}

int rs_cache_needs_checkpoint(const rs_cache_t *c) {
  rs__rocks_batch_t *b = c->staged ? c->spill_next : c->spill;
  return rs__rocks_batch_count(b) && rs__rocks_batch_bytes(b) > c->bound / 4;
}

rs__rocks_batch_t *rs__cache_batch(rs_cache_t *c) {
  return c->spill;
}

int rs__cache_stage_dirty(rs_cache_t *c, rs__rocks_batch_t *b) {
  for (entry_t *e = c->dhead; e; e = e->dnext) {
    if (stage(c, b, e, &c->ekey))
      return RS_ENOMEM;
  }
  return 0;
}

int rs__cache_pin_staged(rs_cache_t *c, const rs__staged_ent_t **ents,
                         size_t *n) {
  *ents = NULL;
  *n = 0;
  if (c->staged)
    return RS_EINVAL;
  if (!c->spill_next && !(c->spill_next = rs__rocks_batch_create()))
    return RS_ENOMEM;
  if (rs_grow((void **)&c->stg, &c->stg_cap, c->ndirty, sizeof *c->stg))
    return RS_ENOMEM;
  c->staged = 1;
  size_t i = 0;
  for (entry_t *e = c->dhead, *next; e; e = next) {
    next = e->dnext;
    e->flags &= (uint8_t)~F_DIRTY;
    e->dprev = e->dnext = NULL;
    c->stg[i++] = (rs__staged_ent_t){.data = e->data,
                                     .klen = e->klen,
                                     .vlen = e->vlen,
                                     .partition = e->partition,
                                     .cf = e->cf,
                                     .del = (e->flags & F_ABSENT) != 0};
    pin(c, e);
  }
  c->nstg = i;
  c->dhead = NULL;
  c->dirty_bytes = 0;
  c->ndirty = 0;
  *ents = c->stg;
  *n = c->nstg;
  return 0;
}

int rs__cache_stage_entries(rs__rocks_t *db, rs__rocks_batch_t *b,
                            const rs__staged_ent_t *ents, size_t n,
                            rs_buf_t *kb) {
  for (size_t i = 0; i < n; i++) {
    const rs__staged_ent_t *x = &ents[i];
    if (rs__state_key(kb, x->partition, x->data, x->klen))
      return RS_ENOMEM;
    if (x->del)
      rs__rocks_batch_delete(db, b, x->cf, kb->data, kb->len);
    else
      rs__rocks_batch_put(db, b, x->cf, kb->data, kb->len, x->data + x->klen,
                          x->vlen);
  }
  return 0;
}

int rs__cache_is_staged(const rs_cache_t *c) {
  return c->staged;
}

void rs__cache_durable(rs_cache_t *c) {
  if (!c->staged)
    return;
  rs__rocks_batch_t *old = c->spill;
  c->spill = c->spill_next;
  c->spill_next = old;
  rs__rocks_batch_clear(old);
  c->staged = 0;
  c->nstg = 0;
  for (entry_t *e = c->rhead, *next; e; e = next) { /* O(changed) */
    next = e->lnext;
    c->live_bytes += e->bytes; /* block_free() takes them off */
    c->retired_bytes -= e->bytes;
    block_free(c, e, 1);
  }
  c->rhead = NULL;
  while (c->phead) /* back on the ring, O(pinned) */
    unpin(c, c->phead);
  make_room(c, NULL); /* what the pins held over the bound */
}

void rs__cache_checkpointed(rs_cache_t *c) {
  rs__rocks_batch_clear(c->spill);
  for (entry_t *e = c->dhead, *next; e; e = next) {
    next = e->dnext;
    e->flags &= (uint8_t)~F_DIRTY;
    e->dprev = e->dnext = NULL;
  }
  c->dhead = NULL;
  c->dirty_bytes = 0;
  c->ndirty = 0;
}
