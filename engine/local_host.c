/* The in-process host of local_host.h: one operator, real keyed state
 * (store + write-back cache in a private temporary directory), no Kafka.
 * The state calls are the runtime's, one to one; random() is the runtime's
 * formula and seed, so a replay of a file draws the numbers a pipeline
 * would for the same keys and offsets. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "local_host.h"

#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "options.h"
#include "state/cache.h"
#include "state/store.h"
#include "util.h"

struct rs_op {
  rs_local_t *l;
};

struct rs_counter {
  struct rs_counter *next;
  char *name;
  uint64_t value;
};

struct rs_local {
  const rs_operator_def_t *def;
  char *name;
  struct rs_op op;
  rs_host_api_t host;
  rs_local_opts_t opts;
  void *ctx;
  int inited;
  uint64_t seed;
  rs_arena_t arena;
  rs_counter_t *counters;
  uint64_t dead;
  char dir[4096];
  rs_store_t *store;
  rs_cache_t *cache;
  int cf;
  int64_t idle_ms; /* host->idle_notify (0: not asked) */
};

/* Emits go to on_emit, or nowhere: then no port is wanted. */
static int l_port_wanted(rs_op_t *op, uint32_t port) {
  const rs_local_t *l = op->l;
  uint32_t n = 1;
  if (l->def->output_ports)
    for (n = 0; l->def->output_ports[n];)
      n++;
  return l->opts.on_emit != NULL && port < n;
}

static int l_emit(rs_op_t *op, uint32_t port, const rs_record_t *rec) {
  rs_local_t *l = op->l;
  return l->opts.on_emit ? l->opts.on_emit(l->opts.opaque, port, rec) : 0;
}

static int l_dead(rs_op_t *op, const rs_record_t *rec, const char *error) {
  rs_local_t *l = op->l;
  l->dead++;
  return l->opts.on_dead ? l->opts.on_dead(l->opts.opaque, rec, error) : 0;
}

static void *l_batch_alloc(rs_op_t *op, size_t size) {
  return rs_arena_alloc(&op->l->arena, size);
}

static void l_log(rs_op_t *op, int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  rs_vlog(level, op->l->name, fmt, ap);
  va_end(ap);
}

static rs_counter_t *l_counter(rs_op_t *op, const char *name,
                               const char *help) {
  (void)help;
  for (rs_counter_t *c = op->l->counters; c; c = c->next)
    if (!strcmp(c->name, name))
      return c;
  rs_counter_t *c = rs_calloc(1, sizeof(*c));
  if (!c || !(c->name = rs_strdup(name))) {
    rs_free(c);
    return NULL;
  }
  c->next = op->l->counters;
  op->l->counters = c;
  return c;
}

static void l_counter_add(rs_counter_t *c, uint64_t n) {
  if (c)
    c->value += n;
}

static int l_fail(rs_op_t *op, int rc) {
  if (rc == RS_ESTATE)
    l_log(op, RS_LOG_ERROR, "state: %s", rs_store_errmsg(op->l->store));
  return rc;
}

static int l_get(rs_op_t *op, int32_t p, const void *k, size_t kl, void **v,
                 size_t *vl) {
  const void *cv = NULL;
  int rc = rs_cache_get(op->l->cache, op->l->cf, p, k, kl, &cv, vl);
  *v = (void *)cv;
  return l_fail(op, rc);
}
static int l_put(rs_op_t *op, int32_t p, const void *k, size_t kl,
                 const void *v, size_t vl) {
  return l_fail(op, rs_cache_put(op->l->cache, op->l->cf, p, k, kl, v, vl));
}
static int l_del(rs_op_t *op, int32_t p, const void *k, size_t kl) {
  return l_fail(op, rs_cache_delete(op->l->cache, op->l->cf, p, k, kl));
}
static int l_scan(rs_op_t *op, int32_t p, const void *prefix, size_t pl,
                  int (*cb)(void *, const void *, size_t, const void *, size_t),
                  void *opaque) {
  return l_fail(
      op, rs_cache_scan(op->l->cache, op->l->cf, p, prefix, pl, cb, opaque));
}
static int l_get_floats(rs_op_t *op, int32_t p, const void *k, size_t kl,
                        float *out, size_t dim) {
  return l_fail(
      op, rs_cache_get_floats(op->l->cache, op->l->cf, p, k, kl, out, dim));
}
static int l_put_floats(rs_op_t *op, int32_t p, const void *k, size_t kl,
                        const float *v, size_t dim) {
  return l_fail(op,
                rs_cache_put_floats(op->l->cache, op->l->cf, p, k, kl, v, dim));
}
static int l_counter_state(rs_op_t *op, int32_t p, const void *k, size_t kl,
                           int64_t delta, int64_t *result) {
  return l_fail(op, rs_cache_counter_add(op->l->cache, op->l->cf, p, k, kl,
                                         delta, result));
}
/* ABI minor 2: the one peer of opts (handle 0), read through its own
 * cache; without a peer there is nothing to open. */
static int l_peer_open(rs_op_t *op, const char *name) {
  const rs_local_t *l = op->l;
  if (!name || !l->opts.peer || !l->opts.peer_name ||
      strcmp(name, l->opts.peer_name))
    return RS_ENOENT;
  return 0;
}
static int l_peer_get(rs_op_t *op, int handle, int32_t p, const void *k,
                      size_t kl, void **v, size_t *vl) {
  rs_local_t *peer = op->l->opts.peer;
  if (handle != 0 || !peer)
    return RS_EINVAL;
  const void *cv = NULL;
  int rc = rs_cache_get(peer->cache, peer->cf, p, k, kl, &cv, vl);
  *v = (void *)cv;
  return l_fail(op, rc);
}
static void *l_peer_context(rs_op_t *op, int handle,
                            const rs_operator_def_t **def) {
  rs_local_t *peer = op->l->opts.peer;
  *def = handle == 0 && peer ? peer->def : NULL;
  return *def ? peer->ctx : NULL;
}
static int l_timer(rs_op_t *op, int32_t p, int64_t when, const void *tag,
                   size_t tl) {
  return RS_ENOTSUP;
}

/* Recorded only: this host has no clock (a replay of a file is never idle
 * in wall-clock terms); rs_local_idle() delivers an idle batch when its
 * caller decides. init() only, like the engine's. */
static int l_idle_notify(rs_op_t *op, int64_t idle_ms) {
  rs_local_t *l = op->l;
  if (l->inited || idle_ms <= 0)
    return RS_EINVAL;
  l->idle_ms = idle_ms;
  return 0;
}

/* The runtime's host->random (rs_op_random). */
static uint64_t l_random(rs_op_t *op, const void *key, size_t key_len,
                         int64_t offset, uint64_t stream) {
  return rs_op_random(op->l->seed, key, key_len, offset, stream);
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

void rs_local_destroy(rs_local_t *l) {
  if (!l)
    return;
  if (l->inited && RS_OPDEF_HAS(l->def, destroy))
    l->def->destroy(&l->op, l->ctx);
  if (l->ctx) {
    rs_options_free(l->def, l->ctx);
    rs_free(l->ctx);
  }
  rs_cache_destroy(l->cache);
  rs_store_destroy(l->store);
  if (l->dir[0])
    nftw(l->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  for (rs_counter_t *c = l->counters, *n; c; c = n) {
    n = c->next;
    rs_free(c->name);
    rs_free(c);
  }
  rs_arena_free(&l->arena);
  rs_free(l->name);
  rs_free(l);
}

int rs_local_new(const rs_operator_def_t *def, const char *name,
                 const rs_config_t *cfg, const rs_ynode_t *node,
                 const rs_local_opts_t *opts, rs_local_t **out, char *errstr,
                 size_t errstr_size) {
  *out = NULL;
  rs_local_t *l = rs_calloc(1, sizeof(*l));
  if (!l)
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  l->def = def;
  l->op.l = l;
  if (opts)
    l->opts = *opts;
  rs_arena_init(&l->arena, 64 * 1024);
  l->name = rs_strdup(name);
  l->ctx = rs_calloc(1, def->ctx_size ? def->ctx_size : 1);
  if (!l->name || !l->ctx) {
    rs_local_destroy(l);
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  }
  l->seed = rs_op_seed(name);
  l->host = (rs_host_api_t){
      .abi_version = RS_ABI_VERSION,
      .struct_size = sizeof(rs_host_api_t),
      .emit = l_emit,
      .dead_letter = l_dead,
      .batch_alloc = l_batch_alloc,
      .malloc = rs_malloc,
      .calloc = rs_calloc,
      .realloc = rs_realloc,
      .free = rs_free,
      .log = l_log,
      .counter = l_counter,
      .counter_add = l_counter_add,
      .state_get = l_get,
      .state_put = l_put,
      .state_delete = l_del,
      .state_scan = l_scan,
      .timer_set = l_timer,
      .random = l_random,
      .state_get_floats = l_get_floats,
      .state_put_floats = l_put_floats,
      .state_counter_add = l_counter_state,
      .peer_open = l_peer_open,
      .peer_state_get = l_peer_get,
      .variant = "",
      .port_wanted = l_port_wanted,
      .peer_context = l_peer_context,
      .idle_notify = l_idle_notify,
  };
  const char *tmp = getenv("TMPDIR");
  snprintf(l->dir, sizeof l->dir, "%s/recstream_local_XXXXXX",
           tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(l->dir)) {
    int rc = rs_seterr(errstr, errstr_size, RS_EIO,
                       "state: cannot create a temporary directory %s", l->dir);
    l->dir[0] = '\0';
    rs_local_destroy(l);
    return rc;
  }
  rs_store_opts_t so;
  rs_store_opts_init(&so);
  so.sync = 0; /* a throw-away database */
  const char *cfs[] = {name};
  int rc = rs_store_open(l->dir, cfs, 1, &so, &l->store, errstr, errstr_size);
  if (!rc && (l->cf = rs_store_cf(l->store, name)) < 0)
    rc = rs_seterr(errstr, errstr_size, RS_EINTERNAL,
                   "state: column family '%s' missing after open", name);
  if (!rc && (rc = rs_cache_create(l->store,
                                   opts && opts->cache_bytes ? opts->cache_bytes
                                                             : (size_t)1 << 30,
                                   &l->cache)))
    rs_seterr(errstr, errstr_size, rc, "state: cannot create the cache");
  char label[160];
  snprintf(label, sizeof label, "operators '%s'", name);
  if (!rc)
    rc = rs_options_apply(cfg, def, node, label, l->ctx, errstr, errstr_size);
  if (!rc && RS_OPDEF_HAS(def, init)) {
    char oerr[512] = "";
    rc = def->init(&l->op, l->ctx, &l->host, oerr, sizeof oerr);
    if (rc)
      rs_seterr(errstr, errstr_size, rc < 0 ? rc : RS_EINTERNAL,
                "operator '%s' (%s) failed to start: %s", name, def->name,
                oerr[0] ? oerr : rs_strerror(rc));
  }
  if (rc) {
    rs_local_destroy(l);
    return rc < 0 ? rc : RS_EINTERNAL;
  }
  l->inited = 1;
  *out = l;
  return 0;
}

int rs_local_push(rs_local_t *l, int32_t partition, const rs_record_t *recs,
                  size_t n) {
  rs_arena_reset(&l->arena);
  rs_batch_t b = {recs, n, partition, 0};
  return l->def->process(&l->op, l->ctx, &b);
}

int rs_local_idle(rs_local_t *l, int32_t partition) {
  if (!l->idle_ms)
    return RS_EINVAL;
  return rs_local_push(l, partition, NULL, 0);
}

void *rs_local_ctx(rs_local_t *l) {
  return l->ctx;
}

int64_t rs_local_counter(const rs_local_t *l, const char *name) {
  for (const rs_counter_t *c = l->counters; c; c = c->next)
    if (!strcmp(c->name, name))
      return (int64_t)c->value;
  return -1;
}

uint64_t rs_local_dead_count(const rs_local_t *l) {
  return l->dead;
}
