/* The operator test harness (see harness.h): a host that records what an
 * operator does instead of talking to Kafka. It is deliberately independent
 * of the engine's runtime and config loader, so an operator can be tested
 * before or without them; it shares only util.c (arena, typed scalars) and
 * the state library (state/), which backs state_* exactly as the engine is
 * meant to: a store in a private temporary directory, one column family
 * named after the operator type, and a write-back cache in front of it.
 * Restarts close and reopen that directory, so what survives one is what a
 * checkpoint wrote, nothing more. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

/* The opaque handle operators see. Each translation unit may give these
 * tags its own definition; the harness never meets the engine's. */
struct rs_op {
  rs_harness_t *h;
};

struct rs_counter {
  char *name;
  char *help;
  uint64_t value;
};

typedef struct emitted {
  uint32_t port;
  rs_record_t rec;
} emitted_t;

typedef struct log_line {
  int level;
  char *text;
} log_line_t;

struct rs_harness {
  const rs_operator_def_t *def;
  struct rs_op op;
  rs_host_api_t host;
  void *ctx;
  int initialized;
  uint32_t n_ports;
  uint64_t unwanted_ports; /* bit p: port_wanted(p) answers 0 */
  char **strings;          /* option strings */
  size_t n_strings;
  rs_arena_t arena;
  emitted_t *emitted;
  size_t n_emitted, cap_emitted;
  rs_harness_dead_t *dead;
  size_t n_dead, cap_dead;
  rs_counter_t **counters;
  size_t n_counters;
  log_line_t *log;
  size_t n_log;
  uint64_t seed;
  /* Counted for every operator, as the engine's runtime does. */
  rs_counter_t *c_in, *c_out, *c_dlq;
  char **opt_copy; /* the options as given, kept for restarts */

  /* Keyed state. */
  char state_dir[4096];
  rs_store_t *store;
  rs_cache_t *cache;
  int cf;
  size_t cache_bytes;
  /* What state_get lends the operator. Poisoned at the next state_* call
   * so a value used after its borrow ends shows up as wrong data (or, if
   * the buffer moved, as a use-after-free under ASan). */
  rs_buf_t lent;
  rs_buf_t peek; /* what rs_harness_state_get lends the test */
  int in_scan;
  int in_query; /* query() runs: reads only, no emit or dead letter */
  char errmsg[1024];
  /* ABI minor 2: the one peer whose state peer_state_get reads (through
   * the peer harness's own cache), set by rs_harness_new_with_peer. */
  char *peer_name;
  rs_harness_t *peer;
  /* host->idle_notify: the interval the operator asked for (0: none). */
  int64_t idle_ms;
};

static void *dup_bytes(const void *p, size_t n) {
  if (!p)
    return NULL;
  char *d = rs_malloc(n + 1);
  if (d) {
    memcpy(d, p, n);
    d[n] = '\0';
  }
  return d;
}

/* ---- option parsing ---- */

static int grow_strings(char ***strings, size_t *n) {
  char **p = rs_realloc(*strings, (*n + 1) * sizeof(char *));
  if (!p)
    return RS_ENOMEM;
  *strings = p;
  return 0;
}

static int enum_index(const char *values, const char *v, int *out) {
  int i = 0;
  size_t vl = strlen(v);
  for (const char *s = values; s; i++) {
    const char *bar = strchr(s, '|');
    size_t n = bar ? (size_t)(bar - s) : strlen(s);
    if (n == vl && strncmp(s, v, n) == 0) {
      *out = i;
      return 0;
    }
    s = bar ? bar + 1 : NULL;
  }
  return RS_EINVAL;
}

static int in_bounds(const rs_option_def_t *o, double v) {
  return o->min > o->max || (v >= o->min && v <= o->max);
}

static int set_option(const rs_option_def_t *o, void *ctx, const char *v,
                      char ***strings, size_t *n_strings, char *errstr,
                      size_t errstr_size) {
  char *field = (char *)ctx + o->offset;
  int64_t i64 = 0;
  double d = 0;
  int b = 0, rc = 0;
  const char *expected = "";
  switch (o->type) {
  case RS_OPT_BOOL:
    rc = rs_parse_bool(v, &b);
    expected = "a boolean (true/false)";
    if (!rc)
      memcpy(field, &b, sizeof(int));
    return rc ? rs_seterr(errstr, errstr_size, RS_ECONFIG,
                          "option '%s': '%s' is not %s", o->name, v, expected)
              : 0;
  case RS_OPT_INT:
    rc = rs_parse_int64(v, &i64);
    expected = "an integer";
    d = (double)i64;
    break;
  case RS_OPT_DOUBLE:
    rc = rs_parse_double(v, &d);
    expected = "a number";
    break;
  case RS_OPT_DURATION:
    rc = rs_parse_duration_ms(v, &i64);
    expected = "a duration (e.g. 250ms, 30s, 5m)";
    d = (double)i64;
    break;
  case RS_OPT_SIZE:
    rc = rs_parse_size(v, &i64);
    expected = "a size (e.g. 512, 64KiB, 1MiB)";
    d = (double)i64;
    break;
  case RS_OPT_STRING: {
    char *s = rs_strdup(v);
    if (!s || grow_strings(strings, n_strings)) {
      rs_free(s);
      return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
    }
    (*strings)[(*n_strings)++] = s;
    memcpy(field, &s, sizeof(char *));
    return 0;
  }
  case RS_OPT_ENUM:
    if (!o->enum_values || enum_index(o->enum_values, v, &b))
      return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                       "option '%s': '%s' is not one of %s", o->name, v,
                       o->enum_values ? o->enum_values : "(none)");
    memcpy(field, &b, sizeof(int));
    return 0;
  default:
    return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                     "option '%s': unknown option type %d", o->name,
                     (int)o->type);
  }
  if (rc)
    return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                     "option '%s': '%s' is not %s", o->name, v, expected);
  if (!in_bounds(o, d))
    return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                     "option '%s': %s is out of range [%.17g, %.17g]", o->name,
                     v, o->min, o->max);
  if (o->type == RS_OPT_DOUBLE)
    memcpy(field, &d, sizeof(double));
  else
    memcpy(field, &i64, sizeof(int64_t));
  return 0;
}

int rs_harness_set_options(const rs_operator_def_t *def, void *ctx,
                           const char *const *options, char ***strings,
                           size_t *n_strings, char *errstr,
                           size_t errstr_size) {
  size_t n_given = 0;
  while (options && options[2 * n_given])
    n_given++;
  for (size_t i = 0; i < n_given; i++) {
    const char *key = options[2 * i], *val = options[2 * i + 1];
    if (!val)
      return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                       "option '%s' has no value", key);
    size_t k = 0;
    while (k < def->n_options && strcmp(def->options[k].name, key) != 0)
      k++;
    if (k == def->n_options)
      return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                       "unknown option '%s' for operator %s", key, def->name);
    for (size_t j = 0; j < i; j++)
      if (strcmp(options[2 * j], key) == 0)
        return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                         "option '%s' is given twice", key);
  }
  for (size_t k = 0; k < def->n_options; k++) {
    const rs_option_def_t *o = &def->options[k];
    const char *v = o->default_value;
    for (size_t i = 0; i < n_given; i++)
      if (strcmp(options[2 * i], o->name) == 0)
        v = options[2 * i + 1];
    if (!v)
      return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                       "missing required option '%s' for operator %s", o->name,
                       def->name);
    int rc = set_option(o, ctx, v, strings, n_strings, errstr, errstr_size);
    if (rc)
      return rc;
  }
  return 0;
}

/* ---- the host API ---- */

static rs_interaction_t *dup_interaction(const rs_interaction_t *in) {
  rs_interaction_t *c = rs_malloc(sizeof(*c));
  if (c) {
    *c = *in;
    c->user = dup_bytes(in->user, in->user_len);
    c->item = dup_bytes(in->item, in->item_len);
    c->device = dup_bytes(in->device, in->device_len);
    c->page = dup_bytes(in->page, in->page_len);
  }
  return c;
}

static void free_interaction(rs_interaction_t *in) {
  if (!in)
    return;
  rs_free((void *)in->user);
  rs_free((void *)in->item);
  rs_free((void *)in->device);
  rs_free((void *)in->page);
  rs_free(in);
}

/* Deep copies of the payload kinds the harness knows (NULL: unknown kind
 * or out of memory). */
static const void *dup_payload(const rs_record_t *rec) {
  if (!rec->payload)
    return NULL;
  if (rec->kind == RS_KIND_INTERACTION)
    return dup_interaction(rec->payload);
  if (rec->kind == RS_KIND_MF_UPDATE) {
    /* An rs_mf_update_t starts with its interaction; plus the vector. */
    const rs_mf_update_t *mi = rec->payload;
    rs_mf_update_t *mc = rs_malloc(sizeof(*mc));
    if (mc) {
      *mc = *mi;
      const rs_interaction_t *in = &mi->interaction;
      mc->interaction.user = dup_bytes(in->user, in->user_len);
      mc->interaction.item = dup_bytes(in->item, in->item_len);
      mc->interaction.device = dup_bytes(in->device, in->device_len);
      mc->interaction.page = dup_bytes(in->page, in->page_len);
      mc->user_vector =
          dup_bytes(mi->user_vector, sizeof(float) * (size_t)mi->dim);
    }
    return mc;
  }
  if (rec->kind == RS_KIND_RECOMMENDATION) {
    const rs_recommendation_t *r = rec->payload;
    rs_recommendation_t *c = rs_malloc(sizeof(*c));
    rs_scored_item_t *items = rs_calloc(r->n_items + 1, sizeof(*items));
    if (!c || !items) {
      rs_free(c);
      rs_free(items);
      return NULL;
    }
    *c = *r;
    c->user = dup_bytes(r->user, r->user_len);
    c->impression_id = dup_bytes(r->impression_id, r->impression_id_len);
    c->variant = r->variant ? dup_bytes(r->variant, r->variant_len) : NULL;
    for (uint32_t i = 0; i < r->n_items; i++) {
      items[i] = r->items[i];
      items[i].item = dup_bytes(r->items[i].item, r->items[i].item_len);
    }
    c->items = items;
    return c;
  }
  if (rec->kind == RS_KIND_FEEDBACK) {
    const rs_feedback_t *f = rec->payload;
    rs_feedback_t *c = rs_malloc(sizeof(*c));
    if (c) {
      *c = *f;
      c->user = dup_bytes(f->user, f->user_len);
      c->item = dup_bytes(f->item, f->item_len);
      c->impression_id = f->impression_id
                             ? dup_bytes(f->impression_id, f->impression_id_len)
                             : NULL;
    }
    return c;
  }
  if (rec->kind == RS_KIND_REWARD) {
    const rs_reward_t *f = rec->payload;
    rs_reward_t *c = rs_malloc(sizeof(*c));
    if (c) {
      *c = *f;
      c->user = dup_bytes(f->user, f->user_len);
      c->impression_id = dup_bytes(f->impression_id, f->impression_id_len);
      c->item = f->item ? dup_bytes(f->item, f->item_len) : NULL;
    }
    return c;
  }
  if (rec->kind == RS_KIND_SESSION_EVENT) {
    const rs_session_event_t *se = rec->payload;
    rs_session_event_t *c = rs_malloc(sizeof(*c));
    if (c) {
      *c = *se;
      c->interaction =
          se->interaction ? dup_interaction(se->interaction) : NULL;
    }
    return c;
  }
  if (rec->kind == RS_KIND_SESSION) {
    const rs_session_t *s = rec->payload;
    rs_session_t *c = rs_malloc(sizeof(*c));
    rs_session_item_t *items = rs_calloc(s->n_items + 1, sizeof(*items));
    int64_t *merged = rs_calloc(s->n_merged + 1, sizeof(int64_t));
    if (!c || !items || !merged) {
      rs_free(c);
      rs_free(items);
      rs_free(merged);
      return NULL;
    }
    *c = *s;
    c->user = dup_bytes(s->user, s->user_len);
    for (uint32_t i = 0; i < s->n_items; i++) {
      items[i] = s->items[i];
      items[i].item = dup_bytes(s->items[i].item, s->items[i].item_len);
    }
    if (s->n_merged)
      memcpy(merged, s->merged_ids, s->n_merged * sizeof(int64_t));
    c->items = items;
    c->merged_ids = merged;
    return c;
  }
  return NULL;
}

static void free_payload(const rs_record_t *r) {
  if (!r->payload)
    return;
  if (r->kind == RS_KIND_INTERACTION) {
    free_interaction((rs_interaction_t *)r->payload);
  } else if (r->kind == RS_KIND_MF_UPDATE) {
    rs_mf_update_t *m = (rs_mf_update_t *)r->payload;
    rs_free((void *)m->user_vector);
    rs_interaction_t *in = &m->interaction;
    rs_free((void *)in->user);
    rs_free((void *)in->item);
    rs_free((void *)in->device);
    rs_free((void *)in->page);
    rs_free(m);
  } else if (r->kind == RS_KIND_RECOMMENDATION) {
    rs_recommendation_t *rr = (rs_recommendation_t *)r->payload;
    for (uint32_t i = 0; i < rr->n_items; i++)
      rs_free((void *)rr->items[i].item);
    rs_free((void *)rr->items);
    rs_free((void *)rr->user);
    rs_free((void *)rr->impression_id);
    rs_free((void *)rr->variant);
    rs_free(rr);
  } else if (r->kind == RS_KIND_FEEDBACK) {
    rs_feedback_t *f = (rs_feedback_t *)r->payload;
    rs_free((void *)f->user);
    rs_free((void *)f->item);
    rs_free((void *)f->impression_id);
    rs_free(f);
  } else if (r->kind == RS_KIND_REWARD) {
    rs_reward_t *f = (rs_reward_t *)r->payload;
    rs_free((void *)f->user);
    rs_free((void *)f->item);
    rs_free((void *)f->impression_id);
    rs_free(f);
  } else if (r->kind == RS_KIND_SESSION_EVENT) {
    rs_session_event_t *se = (rs_session_event_t *)r->payload;
    free_interaction((rs_interaction_t *)se->interaction);
    rs_free(se);
  } else if (r->kind == RS_KIND_SESSION) {
    rs_session_t *s = (rs_session_t *)r->payload;
    for (uint32_t i = 0; i < s->n_items; i++)
      rs_free((void *)s->items[i].item);
    rs_free((void *)s->items);
    rs_free((void *)s->merged_ids);
    rs_free((void *)s->user);
    rs_free(s);
  }
}

static int h_port_wanted(rs_op_t *op, uint32_t port) {
  const rs_harness_t *h = op->h;
  return port < h->n_ports && !(port < 64 && (h->unwanted_ports >> port) & 1);
}

void rs_harness_set_port_wanted(rs_harness_t *h, uint32_t port, int wanted) {
  if (port >= 64)
    return;
  if (wanted)
    h->unwanted_ports &= ~((uint64_t)1 << port);
  else
    h->unwanted_ports |= (uint64_t)1 << port;
}

static int h_emit(rs_op_t *op, uint32_t port, const rs_record_t *rec) {
  rs_harness_t *h = op->h;
  if (port >= h->n_ports || !rec || h->in_query)
    return RS_EINVAL;
  if (rs_grow((void **)&h->emitted, &h->cap_emitted, h->n_emitted + 1,
              sizeof(emitted_t)))
    return RS_ENOMEM;
  rs_record_t r = *rec;
  r.key = dup_bytes(rec->key, rec->key_len);
  r.value = dup_bytes(rec->value, rec->value_len);
  r.payload = dup_payload(rec);
  h->emitted[h->n_emitted++] = (emitted_t){port, r};
  h->c_out->value++;
  return 0;
}

static int h_dead_letter(rs_op_t *op, const rs_record_t *rec,
                         const char *error) {
  rs_harness_t *h = op->h;
  if (!rec || !error || h->in_query)
    return RS_EINVAL;
  if (rs_grow((void **)&h->dead, &h->cap_dead, h->n_dead + 1,
              sizeof(rs_harness_dead_t)))
    return RS_ENOMEM;
  h->dead[h->n_dead++] = (rs_harness_dead_t){
      .key = dup_bytes(rec->key, rec->key_len),
      .key_len = rec->key_len,
      .value = dup_bytes(rec->value, rec->value_len),
      .value_len = rec->value_len,
      .error = rs_strdup(error),
      .src_partition = rec->src_partition,
      .src_offset = rec->src_offset,
  };
  h->c_dlq->value++;
  return 0;
}

static void *h_batch_alloc(rs_op_t *op, size_t size) {
  return rs_arena_alloc(&op->h->arena, size);
}

static void h_log(rs_op_t *op, int level, const char *fmt, ...) {
  rs_harness_t *h = op->h;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  log_line_t *l = rs_realloc(h->log, (h->n_log + 1) * sizeof(*l));
  if (!l)
    return;
  h->log = l;
  h->log[h->n_log++] = (log_line_t){level, rs_strdup(buf)};
  if (getenv("RS_HARNESS_VERBOSE"))
    fprintf(stderr, "[%s] %d: %s\n", h->def->name, level, buf);
}

static rs_counter_t *h_counter(rs_op_t *op, const char *name,
                               const char *help) {
  rs_harness_t *h = op->h;
  for (size_t i = 0; i < h->n_counters; i++)
    if (strcmp(h->counters[i]->name, name) == 0)
      return h->counters[i];
  rs_counter_t **arr =
      rs_realloc(h->counters, (h->n_counters + 1) * sizeof(*arr));
  if (!arr)
    return NULL;
  h->counters = arr;
  rs_counter_t *c = rs_calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->name = rs_strdup(name);
  c->help = rs_strdup(help ? help : "");
  h->counters[h->n_counters++] = c;
  return c;
}

static void h_counter_add(rs_counter_t *c, uint64_t n) {
  if (c)
    c->value += n;
}

/* ---- keyed state ---- */

static int state_fail(rs_harness_t *h, const char *what, int rc) {
  snprintf(h->errmsg, sizeof(h->errmsg), "%s: %s (%s)", what,
           rc == RS_ESTATE ? rs_store_errmsg(h->store) : rs_strerror(rc),
           rs_err_name(rc));
  return rc;
}

/* Reads key through cache and lends a copy until the next state_* call
 * (the borrow rule of the host API). */
static int lend(rs_harness_t *h, rs_cache_t *cache, int cf, int32_t partition,
                const void *key, size_t key_len, void **value,
                size_t *value_len, const char *what) {
  const void *v;
  size_t n;
  int rc = rs_cache_get(cache, cf, partition, key, key_len, &v, &n);
  if (rc == RS_ENOENT)
    return rc;
  if (rc)
    return state_fail(h, what, rc);
  rs_buf_reset(&h->lent);
  if (rs_buf_reserve(&h->lent, n + 1))
    return RS_ENOMEM;
  if (n)
    memcpy(h->lent.data, v, n);
  h->lent.len = n;
  *value = h->lent.data;
  *value_len = n;
  return 0;
}

/* Every state_* call starts here: it ends the borrow of the last value
 * state_get lent, and refuses what the engine would refuse. */
static int state_enter(rs_harness_t *h, const char *what, int32_t partition,
                       const void *key, size_t key_len) {
  if (h->lent.len)
    memset(h->lent.data, 0xA5, h->lent.len);
  if (h->in_scan) {
    snprintf(h->errmsg, sizeof(h->errmsg),
             "%s called from a state_scan callback", what);
    return RS_EINVAL;
  }
  if (h->in_query && !strstr(what, "get") && !strstr(what, "scan")) {
    snprintf(h->errmsg, sizeof(h->errmsg), "%s called from query()", what);
    return RS_EINVAL;
  }
  if (partition < 0 && partition != RS_PARTITION_SHARED) {
    snprintf(h->errmsg, sizeof(h->errmsg),
             "%s: partition %d is neither a partition nor "
             "RS_PARTITION_SHARED",
             what, (int)partition);
    return RS_EINVAL;
  }
  if (!key && key_len) {
    snprintf(h->errmsg, sizeof(h->errmsg), "%s: NULL key of %zu bytes", what,
             key_len);
    return RS_EINVAL;
  }
  if (!h->cache) {
    snprintf(h->errmsg, sizeof(h->errmsg), "%s: no state store is open", what);
    return RS_ESTATE;
  }
  return 0;
}

static int h_state_get(rs_op_t *op, int32_t partition, const void *key,
                       size_t key_len, void **value, size_t *value_len) {
  rs_harness_t *h = op->h;
  int rc = state_enter(h, "state_get", partition, key, key_len);
  if (rc)
    return rc;
  return lend(h, h->cache, h->cf, partition, key, key_len, value, value_len,
              "state_get");
}

static int h_state_put(rs_op_t *op, int32_t partition, const void *key,
                       size_t key_len, const void *value, size_t value_len) {
  rs_harness_t *h = op->h;
  int rc = state_enter(h, "state_put", partition, key, key_len);
  if (!rc && !value && value_len)
    rc = RS_EINVAL;
  if (!rc && (rc = rs_cache_put(h->cache, h->cf, partition, key, key_len, value,
                                value_len)))
    state_fail(h, "state_put", rc);
  return rc;
}

static int h_state_delete(rs_op_t *op, int32_t partition, const void *key,
                          size_t key_len) {
  rs_harness_t *h = op->h;
  int rc = state_enter(h, "state_delete", partition, key, key_len);
  if (!rc && (rc = rs_cache_delete(h->cache, h->cf, partition, key, key_len)))
    state_fail(h, "state_delete", rc);
  return rc;
}

static int h_state_scan(rs_op_t *op, int32_t partition, const void *prefix,
                        size_t prefix_len,
                        int (*cb)(void *opaque, const void *key, size_t key_len,
                                  const void *value, size_t value_len),
                        void *opaque) {
  rs_harness_t *h = op->h;
  int rc = state_enter(h, "state_scan", partition, prefix, prefix_len);
  if (rc)
    return rc;
  if (!cb)
    return RS_EINVAL;
  h->in_scan = 1;
  rc =
      rs_cache_scan(h->cache, h->cf, partition, prefix, prefix_len, cb, opaque);
  h->in_scan = 0;
  if (rc == RS_ESTATE)
    state_fail(h, "state_scan", rc);
  return rc;
}

static int h_state_get_floats(rs_op_t *op, int32_t partition, const void *key,
                              size_t key_len, float *out, size_t dim) {
  rs_harness_t *h = op->h;
  int rc = state_enter(h, "state_get_floats", partition, key, key_len);
  if (!rc &&
      (rc = rs_cache_get_floats(h->cache, h->cf, partition, key, key_len, out,
                                dim)) &&
      rc != RS_ENOENT)
    state_fail(h, "state_get_floats", rc);
  return rc;
}

static int h_state_put_floats(rs_op_t *op, int32_t partition, const void *key,
                              size_t key_len, const float *v, size_t dim) {
  rs_harness_t *h = op->h;
  int rc = state_enter(h, "state_put_floats", partition, key, key_len);
  if (!rc && (rc = rs_cache_put_floats(h->cache, h->cf, partition, key, key_len,
                                       v, dim)))
    state_fail(h, "state_put_floats", rc);
  return rc;
}

static int h_state_counter_add(rs_op_t *op, int32_t partition, const void *key,
                               size_t key_len, int64_t delta, int64_t *result) {
  rs_harness_t *h = op->h;
  int rc = state_enter(h, "state_counter_add", partition, key, key_len);
  if (!rc && (rc = rs_cache_counter_add(h->cache, h->cf, partition, key,
                                        key_len, delta, result)))
    state_fail(h, "state_counter_add", rc);
  return rc;
}

/* Handle 0 is the peer; there is only one. */
static int h_peer_open(rs_op_t *op, const char *name) {
  rs_harness_t *h = op->h;
  if (!name)
    return RS_EINVAL;
  if (!h->peer || strcmp(name, h->peer_name))
    return RS_ENOENT;
  return 0;
}

static int h_peer_state_get(rs_op_t *op, int handle, int32_t partition,
                            const void *key, size_t key_len, void **value,
                            size_t *value_len) {
  rs_harness_t *h = op->h;
  int rc = state_enter(h, "peer_state_get", partition, key, key_len);
  if (rc)
    return rc;
  if (handle != 0 || !h->peer || !h->peer->cache) {
    snprintf(h->errmsg, sizeof(h->errmsg), "peer_state_get: bad handle %d",
             handle);
    return RS_EINVAL;
  }
  return lend(h, h->peer->cache, h->peer->cf, partition, key, key_len, value,
              value_len, "peer_state_get");
}

static void *h_peer_context(rs_op_t *op, int handle,
                            const rs_operator_def_t **def) {
  rs_harness_t *h = op->h;
  *def = handle == 0 && h->peer ? h->peer->def : NULL;
  return *def ? h->peer->ctx : NULL;
}

/* Recorded only: the harness has no clock; rs_harness_idle() delivers an
 * idle batch when the test says so. Allowed in init() only, like the
 * engine's. */
static int h_idle_notify(rs_op_t *op, int64_t idle_ms) {
  rs_harness_t *h = op->h;
  if (h->initialized || idle_ms <= 0)
    return RS_EINVAL;
  h->idle_ms = idle_ms;
  return 0;
}

static int h_timer_set(rs_op_t *op, int32_t partition, int64_t when_ms,
                       const void *tag, size_t tag_len) {
  return RS_ENOTSUP;
}

static uint64_t h_random(rs_op_t *op, const void *key, size_t key_len,
                         int64_t offset, uint64_t stream) {
  uint64_t k = rs_hash64(key, key_len, op->h->seed);
  return rs_mix64(k ^ rs_mix64((uint64_t)offset ^ rs_mix64(stream + 1)));
}

/* ---- lifecycle ---- */

static void free_collected(rs_harness_t *h) {
  for (size_t i = 0; i < h->n_emitted; i++) {
    rs_record_t *r = &h->emitted[i].rec;
    rs_free((void *)r->key);
    rs_free((void *)r->value);
    free_payload(r);
  }
  h->n_emitted = 0;
  for (size_t i = 0; i < h->n_dead; i++) {
    rs_free((void *)h->dead[i].key);
    rs_free((void *)h->dead[i].value);
    rs_free((void *)h->dead[i].error);
  }
  h->n_dead = 0;
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* Opens the store in h->state_dir with the operator's column family and a
 * new cache over it. */
static int state_open(rs_harness_t *h, char *errstr, size_t errstr_size) {
  rs_store_opts_t o;
  rs_store_opts_init(&o);
  /* Small memory per test; restarts simulate a process going away, not
   * the machine, so the WAL need not be fsynced. */
  o.block_cache_bytes = 1u << 20;
  o.write_buffer_bytes = 1u << 20;
  o.sync = 0;
  const char *cfs[] = {h->def->name};
  int rc =
      rs_store_open(h->state_dir, cfs, 1, &o, &h->store, errstr, errstr_size);
  if (rc)
    return rc;
  h->cf = rs_store_cf(h->store, h->def->name);
  if (h->cf < 0)
    return rs_seterr(errstr, errstr_size, RS_EINTERNAL,
                     "state: column family '%s' missing after open",
                     h->def->name);
  rc = rs_cache_create(h->store, h->cache_bytes, &h->cache);
  if (rc)
    return rs_seterr(errstr, errstr_size, rc, "state: cannot create cache: %s",
                     rs_strerror(rc));
  return 0;
}

/* Drops the cache (dirty entries are lost, as in a crash) and closes the
 * store. */
static void state_close(rs_harness_t *h) {
  rs_cache_destroy(h->cache);
  h->cache = NULL;
  rs_store_destroy(h->store);
  h->store = NULL;
  rs_buf_reset(&h->lent);
  rs_buf_reset(&h->peek);
}

/* Writes options into a zeroed context and runs init(). */
static int op_start(rs_harness_t *h, char *errstr, size_t errstr_size) {
  memset(h->ctx, 0, h->def->ctx_size ? h->def->ctx_size : 1);
  int rc =
      rs_harness_set_options(h->def, h->ctx, (const char *const *)h->opt_copy,
                             &h->strings, &h->n_strings, errstr, errstr_size);
  if (rc)
    return rc;
  h->idle_ms = 0;
  if (RS_OPDEF_HAS(h->def, init) &&
      (rc = h->def->init(&h->op, h->ctx, &h->host, errstr, errstr_size)) < 0)
    return rc;
  h->initialized = 1;
  return 0;
}

/* Runs destroy() and frees the option strings it could still read. */
static void op_stop(rs_harness_t *h) {
  if (h->initialized && RS_OPDEF_HAS(h->def, destroy))
    h->def->destroy(&h->op, h->ctx);
  h->initialized = 0;
  for (size_t i = 0; i < h->n_strings; i++)
    rs_free(h->strings[i]);
  rs_free(h->strings);
  h->strings = NULL;
  h->n_strings = 0;
}

static void free_options(char **opts) {
  for (size_t i = 0; opts && opts[i]; i += 2) {
    rs_free(opts[i]);
    rs_free(opts[i + 1]);
  }
  rs_free(opts);
}

/* A NULL-terminated copy of key/value pairs; values may be NULL (the
 * option parser reports those). */
static char **copy_options(const char *const *options) {
  size_t n = 0;
  while (options && options[2 * n])
    n++;
  char **c = rs_calloc(2 * n + 1, sizeof(char *));
  if (!c)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    c[2 * i] = rs_strdup(options[2 * i]);
    c[2 * i + 1] = options[2 * i + 1] ? rs_strdup(options[2 * i + 1]) : NULL;
    if (!c[2 * i] || (options[2 * i + 1] && !c[2 * i + 1])) {
      free_options(c);
      return NULL;
    }
  }
  return c;
}

void rs_harness_destroy(rs_harness_t *h) {
  if (!h)
    return;
  op_stop(h);
  state_close(h);
  if (h->state_dir[0])
    nftw(h->state_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  free_options(h->opt_copy);
  free_collected(h);
  rs_free(h->emitted);
  rs_free(h->dead);
  for (size_t i = 0; i < h->n_counters; i++) {
    rs_free(h->counters[i]->name);
    rs_free(h->counters[i]->help);
    rs_free(h->counters[i]);
  }
  rs_free(h->counters);
  for (size_t i = 0; i < h->n_log; i++)
    rs_free(h->log[i].text);
  rs_free(h->log);
  rs_buf_free(&h->lent);
  rs_buf_free(&h->peek);
  rs_arena_free(&h->arena);
  rs_free(h->ctx);
  rs_free(h->peer_name);
  rs_free(h);
}

rs_harness_t *rs_harness_new(const rs_operator_def_t *def,
                             const char *const *options, char *errstr,
                             size_t errstr_size) {
  return rs_harness_new_with_peer(def, options, NULL, NULL, errstr,
                                  errstr_size);
}

rs_harness_t *rs_harness_new_with_peer(const rs_operator_def_t *def,
                                       const char *const *options,
                                       const char *peer_name,
                                       rs_harness_t *peer, char *errstr,
                                       size_t errstr_size) {
  if (!def || RS_ABI_MAJOR_OF(def->abi_version) != RS_ABI_MAJOR ||
      def->struct_size < offsetof(rs_operator_def_t, init) || !def->name) {
    rs_seterr(errstr, errstr_size, RS_EABI,
              "operator definition has another ABI major or is truncated");
    return NULL;
  }
  rs_harness_t *h = rs_calloc(1, sizeof(*h));
  if (!h) {
    rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
    return NULL;
  }
  h->def = def;
  h->op.h = h;
  h->seed = 42;
  h->cache_bytes = RS_HARNESS_CACHE_BYTES;
  h->n_ports = 1;
  if (def->output_ports) {
    h->n_ports = 0;
    while (def->output_ports[h->n_ports])
      h->n_ports++;
  }
  rs_arena_init(&h->arena, 64 * 1024);
  h->host = (rs_host_api_t){
      .abi_version = RS_ABI_VERSION,
      .struct_size = sizeof(rs_host_api_t),
      .emit = h_emit,
      .dead_letter = h_dead_letter,
      .batch_alloc = h_batch_alloc,
      .malloc = rs_malloc,
      .calloc = rs_calloc,
      .realloc = rs_realloc,
      .free = rs_free,
      .log = h_log,
      .counter = h_counter,
      .counter_add = h_counter_add,
      .state_get = h_state_get,
      .state_put = h_state_put,
      .state_delete = h_state_delete,
      .state_scan = h_state_scan,
      .timer_set = h_timer_set,
      .random = h_random,
      .state_get_floats = h_state_get_floats,
      .state_put_floats = h_state_put_floats,
      .state_counter_add = h_state_counter_add,
      .peer_open = h_peer_open,
      .peer_state_get = h_peer_state_get,
      .variant = "",
      .port_wanted = h_port_wanted,
      .peer_context = h_peer_context,
      .idle_notify = h_idle_notify,
  };
  if (peer_name && peer) {
    h->peer = peer;
    if (!(h->peer_name = rs_strdup(peer_name))) {
      rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
      rs_free(h);
      return NULL;
    }
  }
  h->ctx = rs_calloc(1, def->ctx_size ? def->ctx_size : 1);
  h->opt_copy = copy_options(options);
  h->c_in = h_counter(&h->op, "records_in", "records handed to the operator");
  h->c_out = h_counter(&h->op, "records_out", "records the operator emitted");
  h->c_dlq = h_counter(&h->op, "dead_lettered",
                       "records sent to the dead-letter topic");
  if (!h->ctx || !h->opt_copy || !h->c_in || !h->c_out || !h->c_dlq) {
    rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
    rs_harness_destroy(h);
    return NULL;
  }
  const char *tmp = getenv("TMPDIR");
  snprintf(h->state_dir, sizeof(h->state_dir), "%s/rs_harness_XXXXXX",
           tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(h->state_dir)) {
    rs_seterr(errstr, errstr_size, RS_EIO, "state: mkdtemp %s failed",
              h->state_dir);
    h->state_dir[0] = '\0';
    rs_harness_destroy(h);
    return NULL;
  }
  if (state_open(h, errstr, errstr_size) || op_start(h, errstr, errstr_size)) {
    h->initialized = 0; /* a failed init() is not followed by destroy() */
    rs_harness_destroy(h);
    return NULL;
  }
  return h;
}

int rs_harness_push_input(rs_harness_t *h, uint32_t input, int32_t partition,
                          const rs_record_t *recs, size_t n) {
  if (!RS_OPDEF_HAS(h->def, process))
    return RS_ENOTSUP;
  if (!h->initialized)
    return RS_EINVAL;
  rs_arena_reset(&h->arena);
  h->c_in->value += n;
  rs_batch_t batch = {recs, n, partition, input};
  return h->def->process(&h->op, h->ctx, &batch);
}

int rs_harness_push_feedback(rs_harness_t *h, uint32_t input, const char *user,
                             const char *imp, const char *item, int type,
                             double value, int64_t ts, int64_t offset) {
  rs_feedback_t f = {.user = user,
                     .user_len = (uint32_t)strlen(user),
                     .impression_id = imp,
                     .impression_id_len = imp ? (uint32_t)strlen(imp) : 0,
                     .item = item,
                     .item_len = (uint32_t)strlen(item),
                     .type = type,
                     .value = value,
                     .timestamp_ms = ts};
  rs_record_t rec = {.kind = RS_KIND_FEEDBACK,
                     .key = user,
                     .key_len = strlen(user),
                     .payload = &f,
                     .timestamp_ms = ts,
                     .src_offset = offset};
  return rs_harness_push_input(h, input, 0, &rec, 1);
}

int rs_harness_push(rs_harness_t *h, int32_t partition, const rs_record_t *recs,
                    size_t n) {
  return rs_harness_push_input(h, 0, partition, recs, n);
}

int rs_harness_idle(rs_harness_t *h, int32_t partition) {
  if (!h->initialized || !h->idle_ms)
    return RS_EINVAL;
  return rs_harness_push_input(h, 0, partition, NULL, 0);
}

int64_t rs_harness_idle_ms(const rs_harness_t *h) {
  return h->idle_ms;
}

int rs_harness_query(rs_harness_t *h, int32_t partition, const void *key,
                     size_t key_len, char **json, size_t *json_len) {
  *json = NULL;
  *json_len = 0;
  if (!RS_OPDEF_HAS(h->def, query))
    return RS_ENOTSUP;
  if (!h->initialized)
    return RS_EINVAL;
  h->in_query = 1;
  int rc =
      h->def->query(&h->op, h->ctx, partition, key, key_len, json, json_len);
  h->in_query = 0;
  if (rc) {
    rs_free(*json); /* the host frees what the operator left */
    *json = NULL;
    *json_len = 0;
  } else if (!*json) {
    rc = RS_EINTERNAL; /* success must come with an answer */
  } else {
    char *t = rs_realloc(*json, *json_len + 1);
    if (!t) {
      rs_free(*json);
      *json = NULL;
      return RS_ENOMEM;
    }
    t[*json_len] = '\0';
    *json = t;
  }
  return rc;
}

int rs_harness_checkpoint(rs_harness_t *h) {
  int rc = 0;
  if (h->initialized && RS_OPDEF_HAS(h->def, checkpoint) &&
      (rc = h->def->checkpoint(&h->op, h->ctx)) < 0)
    return rc;
  if (!h->store)
    return RS_ESTATE;
  rc = rs_store_checkpoint(h->store, h->cache, NULL, 0);
  return rc ? state_fail(h, "checkpoint", rc) : 0;
}

int rs_harness_restart(rs_harness_t *h, int crash) {
  int rc;
  h->errmsg[0] = '\0';
  /* The operator's own checkpoint() runs while it is alive; the store's
   * checkpoint after destroy(), so it also holds anything destroy() put. */
  if (!crash && h->initialized && RS_OPDEF_HAS(h->def, checkpoint) &&
      (rc = h->def->checkpoint(&h->op, h->ctx)) < 0)
    return rc;
  op_stop(h);
  if (!crash && h->store &&
      (rc = rs_store_checkpoint(h->store, h->cache, NULL, 0)))
    return state_fail(h, "checkpoint", rc);
  state_close(h);
  rs_arena_reset(&h->arena);
  if ((rc = state_open(h, h->errmsg, sizeof(h->errmsg))) ||
      (rc = op_start(h, h->errmsg, sizeof(h->errmsg)))) {
    h->initialized = 0;
    return rc;
  }
  return 0;
}

int rs_harness_set_cache_bytes(rs_harness_t *h, size_t bytes) {
  if (!bytes)
    bytes = RS_HARNESS_CACHE_BYTES;
  if (h->cache) {
    rs_cache_stats_t st;
    rs_cache_stats(h->cache, &st);
    if (st.dirty_bytes || st.spill_bytes) {
      snprintf(h->errmsg, sizeof(h->errmsg),
               "set_cache_bytes: the cache holds state not checkpointed");
      return RS_EINVAL;
    }
    rs_cache_t *c;
    int rc = rs_cache_create(h->store, bytes, &c);
    if (rc)
      return rc;
    rs_cache_destroy(h->cache);
    h->cache = c;
  }
  h->cache_bytes = bytes;
  return 0;
}

void rs_harness_cache_stats(const rs_harness_t *h, rs_cache_stats_t *out) {
  if (h->cache)
    rs_cache_stats(h->cache, out);
  else
    memset(out, 0, sizeof(*out));
}

int rs_harness_state_get(rs_harness_t *h, int32_t partition, const void *key,
                         size_t key_len, const void **value,
                         size_t *value_len) {
  if (!h->cache)
    return RS_ESTATE;
  const void *v;
  size_t n;
  int rc = rs_cache_get(h->cache, h->cf, partition, key, key_len, &v, &n);
  if (rc)
    return rc == RS_ENOENT ? rc : state_fail(h, "rs_harness_state_get", rc);
  rs_buf_reset(&h->peek);
  if (rs_buf_reserve(&h->peek, n + 1))
    return RS_ENOMEM;
  if (n)
    memcpy(h->peek.data, v, n);
  h->peek.len = n;
  h->peek.data[n] = '\0';
  *value = h->peek.data;
  *value_len = n;
  return 0;
}

int rs_harness_state_put(rs_harness_t *h, int32_t partition, const void *key,
                         size_t key_len, const void *value, size_t value_len) {
  if (!h->cache)
    return RS_ESTATE;
  int rc =
      rs_cache_put(h->cache, h->cf, partition, key, key_len, value, value_len);
  return rc ? state_fail(h, "rs_harness_state_put", rc) : 0;
}

const char *rs_harness_state_dir(const rs_harness_t *h) {
  return h->state_dir;
}

const char *rs_harness_errmsg(const rs_harness_t *h) {
  return h->errmsg;
}

void rs_harness_set_host_struct_size(rs_harness_t *h, uint32_t struct_size) {
  h->host.struct_size = struct_size && struct_size < sizeof(rs_host_api_t)
                            ? struct_size
                            : (uint32_t)sizeof(rs_host_api_t);
}

size_t rs_harness_emitted_count(const rs_harness_t *h, uint32_t port) {
  size_t n = 0;
  for (size_t i = 0; i < h->n_emitted; i++)
    n += h->emitted[i].port == port;
  return n;
}

const rs_record_t *rs_harness_emitted(const rs_harness_t *h, uint32_t port,
                                      size_t i) {
  for (size_t k = 0; k < h->n_emitted; k++)
    if (h->emitted[k].port == port && i-- == 0)
      return &h->emitted[k].rec;
  return NULL;
}

size_t rs_harness_dead_count(const rs_harness_t *h) {
  return h->n_dead;
}

const rs_harness_dead_t *rs_harness_dead(const rs_harness_t *h, size_t i) {
  return i < h->n_dead ? &h->dead[i] : NULL;
}

void rs_harness_clear(rs_harness_t *h) {
  free_collected(h);
}

int64_t rs_harness_counter(const rs_harness_t *h, const char *name) {
  for (size_t i = 0; i < h->n_counters; i++)
    if (strcmp(h->counters[i]->name, name) == 0)
      return (int64_t)h->counters[i]->value;
  return -1;
}

size_t rs_harness_log_count(const rs_harness_t *h) {
  return h->n_log;
}

const char *rs_harness_log_line(const rs_harness_t *h, size_t i, int *level) {
  if (i >= h->n_log)
    return NULL;
  if (level)
    *level = h->log[i].level;
  return h->log[i].text;
}

void *rs_harness_ctx(rs_harness_t *h) {
  return h->ctx;
}

const rs_host_api_t *rs_harness_host(rs_harness_t *h) {
  return &h->host;
}

void rs_harness_set_seed(rs_harness_t *h, uint64_t seed) {
  h->seed = seed;
}
