/* A/B experiments: reading and checking the `experiments:` section, the
 * deterministic split, per-variant option mappings, and the record of the
 * split in the state directory. See experiments.h and docs/CONFIG.md. */
#include "experiments.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "graph.h"
#include "options.h"
#include "recstream/error.h"
#include "recstream/record.h"

static int xerr(const rs_config_t *cfg, const rs_ynode_t *at, char *errstr,
                size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int xerr(const rs_config_t *cfg, const rs_ynode_t *at, char *errstr,
                size_t errstr_size, const char *fmt, ...) {
  if (!errstr || !errstr_size)
    return RS_ECONFIG;
  int n = rs_config_where(cfg, at->line, at->col, errstr, errstr_size);
  if (n < 0 || (size_t)n >= errstr_size)
    return RS_ECONFIG;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errstr + n, errstr_size - (size_t)n, fmt, ap);
  va_end(ap);
  return RS_ECONFIG;
}

static int valid_name(const char *s) {
  if (!*s)
    return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
      return 0;
  return 1;
}

/* A scalar value of key in map (NULL when absent); marks it used. */
static int scalar(const rs_config_t *cfg, const rs_ynode_t *map,
                  const char *label, const char *key, int required,
                  const rs_ynode_t **out, char *errstr, size_t errstr_size) {
  rs_ypair_t *p = rs_ymap_find(map, key);
  *out = NULL;
  if (!p)
    return required ? xerr(cfg, map, errstr, errstr_size,
                           "%s: missing required key '%s'", label, key)
                    : 0;
  p->used = 1;
  if (p->value->type != RS_Y_SCALAR || !*p->value->scalar)
    return xerr(cfg, p->value, errstr, errstr_size,
                "%s.%s: expected a non-empty value", label, key);
  *out = p->value;
  return 0;
}

static int unknown_keys(const rs_config_t *cfg, const rs_ynode_t *map,
                        const char *label, const char *known, char *errstr,
                        size_t errstr_size) {
  for (size_t i = 0; i < map->n; i++)
    if (!map->pairs[i].used) {
      rs_ynode_t at = {.line = map->pairs[i].line, .col = map->pairs[i].col};
      return xerr(cfg, &at, errstr, errstr_size,
                  "%s: unknown key '%s' (expected one of: %s)", label,
                  map->pairs[i].key, known);
    }
  return 0;
}

static long find_op(const rs_graph_t *g, const char *name) {
  for (size_t i = 0; i < g->n; i++)
    if (g->nodes[i].kind == RS_NODE_OPERATOR && !strcmp(g->nodes[i].name, name))
      return (long)i;
  return -1;
}

static const char *const structural[] = {
    "name", "type", "input", "inputs", "dead_letter_topic", NULL};

rs_ynode_t *rs_experiments_options(const rs_experiment_t *x, uint32_t v,
                                   const char *op_name,
                                   const rs_ynode_t *base) {
  const rs_ynode_t *ov = NULL;
  if (v < x->n && x->v[v].overrides) {
    rs_ypair_t *p = rs_ymap_find(x->v[v].overrides, op_name);
    if (p && p->value->type == RS_Y_MAP)
      ov = p->value;
  }
  size_t cap = base->n + (ov ? ov->n : 0);
  rs_ynode_t *m = rs_calloc(1, sizeof(*m));
  if (!m)
    return NULL;
  *m = (rs_ynode_t){.type = RS_Y_MAP, .line = base->line, .col = base->col};
  m->pairs = rs_calloc(cap ? cap : 1, sizeof(rs_ypair_t));
  if (!m->pairs) {
    rs_free(m);
    return NULL;
  }
  for (size_t i = 0; i < base->n; i++) {
    m->pairs[m->n] = base->pairs[i];
    m->pairs[m->n].used = 0;
    for (int k = 0; structural[k]; k++)
      if (!strcmp(base->pairs[i].key, structural[k]))
        m->pairs[m->n].used = 1;
    m->n++;
  }
  for (size_t i = 0; ov && i < ov->n; i++) {
    size_t j = 0;
    while (j < m->n && strcmp(m->pairs[j].key, ov->pairs[i].key))
      j++;
    m->pairs[j] = ov->pairs[i];
    m->pairs[j].used = 0;
    if (j == m->n)
      m->n++;
  }
  return m;
}

void rs_experiments_free_map(rs_ynode_t *m) {
  if (m)
    rs_free(m->pairs);
  rs_free(m);
}

static int check_overrides(const rs_config_t *cfg, const rs_graph_t *g,
                           rs_experiment_t *x, uint32_t v, const char *label,
                           char *errstr, size_t errstr_size) {
  const rs_ynode_t *ov = x->v[v].overrides;
  for (size_t i = 0; i < ov->n; i++) {
    const rs_ypair_t *p = &ov->pairs[i];
    rs_ynode_t at = {.line = p->line, .col = p->col};
    long node = find_op(g, p->key);
    if (node < 0)
      return xerr(cfg, &at, errstr, errstr_size,
                  "%s.overrides: no operator named '%s' in this pipeline",
                  label, p->key);
    if (p->value->type != RS_Y_MAP)
      return xerr(cfg, p->value, errstr, errstr_size,
                  "%s.overrides.%s: expected a mapping of option: value", label,
                  p->key);
    for (size_t k = 0; k < p->value->n; k++)
      for (int s = 0; structural[s]; s++)
        if (!strcmp(p->value->pairs[k].key, structural[s])) {
          rs_ynode_t a2 = {.line = p->value->pairs[k].line,
                           .col = p->value->pairs[k].col};
          return xerr(cfg, &a2, errstr, errstr_size,
                      "%s.overrides.%s: '%s' cannot differ between variants "
                      "(only operator options can)",
                      label, p->key, structural[s]);
        }
    /* The operator's options with the overrides, on a scratch context:
     * unknown options, types and bounds are reported here. */
    const rs_gnode_t *gn = &g->nodes[node];
    rs_ynode_t *m = rs_experiments_options(x, v, p->key,
                                           cfg->operators[gn->cfg_index].node);
    void *ctx = rs_calloc(1, gn->def->ctx_size ? gn->def->ctx_size : 1);
    int rc = RS_ENOMEM;
    if (m && ctx) {
      char l2[400];
      snprintf(l2, sizeof l2, "%s.overrides '%s'", label, p->key);
      rc = rs_options_apply(cfg, gn->def, m, l2, ctx, errstr, errstr_size);
      rs_options_free(gn->def, ctx);
    }
    rs_free(ctx);
    rs_experiments_free_map(m);
    if (rc)
      return rc;
    int seen = 0;
    for (size_t k = 0; k < x->n_ops; k++)
      seen |= x->ops[k] == (size_t)node;
    if (!seen)
      x->ops[x->n_ops++] = (size_t)node;
  }
  return 0;
}

static int read_one(const rs_config_t *cfg, const rs_graph_t *g,
                    const rs_ynode_t *item, size_t idx, rs_experiment_t *x,
                    char *errstr, size_t errstr_size) {
  char label[200];
  snprintf(label, sizeof label, "experiments[%zu]", idx);
  if (item->type != RS_Y_MAP)
    return xerr(cfg, item, errstr, errstr_size, "%s: expected a mapping",
                label);
  const rs_ynode_t *n, *salt;
  int rc = scalar(cfg, item, label, "name", 1, &n, errstr, errstr_size);
  if (rc)
    return rc;
  if (!valid_name(n->scalar))
    return xerr(cfg, n, errstr, errstr_size,
                "%s.name: '%s' may only contain letters, digits, '_' and '-'",
                label, n->scalar);
  snprintf(label, sizeof label, "experiments '%s'", n->scalar);
  if ((rc = scalar(cfg, item, label, "salt", 0, &salt, errstr, errstr_size)))
    return rc;
  x->name = rs_strdup(n->scalar);
  x->salt = rs_strdup(salt ? salt->scalar : n->scalar);
  x->ops = rs_calloc(g->n ? g->n : 1, sizeof(size_t));
  if (!x->name || !x->salt || !x->ops)
    return RS_ENOMEM;
  rs_ypair_t *vp = rs_ymap_find(item, "variants");
  if (!vp)
    return xerr(cfg, item, errstr, errstr_size,
                "%s: missing required key 'variants'", label);
  vp->used = 1;
  const rs_ynode_t *vs = vp->value;
  if (vs->type != RS_Y_SEQ || vs->n < 2)
    return xerr(cfg, vs, errstr, errstr_size,
                "%s.variants: expected a list of at least two variants", label);
  x->v = rs_calloc(vs->n, sizeof(*x->v));
  if (!x->v)
    return RS_ENOMEM;
  double total = 0;
  for (size_t i = 0; i < vs->n; i++) {
    const rs_ynode_t *vi = vs->items[i];
    char vl[300];
    snprintf(vl, sizeof vl, "%s.variants[%zu]", label, i);
    if (vi->type != RS_Y_MAP)
      return xerr(cfg, vi, errstr, errstr_size, "%s: expected a mapping", vl);
    const rs_ynode_t *vn, *w;
    if ((rc = scalar(cfg, vi, vl, "name", 1, &vn, errstr, errstr_size)))
      return rc;
    if (!valid_name(vn->scalar))
      return xerr(cfg, vn, errstr, errstr_size,
                  "%s.name: '%s' may only contain letters, digits, '_' and "
                  "'-'",
                  vl, vn->scalar);
    for (size_t j = 0; j < x->n; j++)
      if (!strcmp(x->v[j].name, vn->scalar))
        return xerr(cfg, vn, errstr, errstr_size,
                    "%s.name: variant '%s' is named twice", vl, vn->scalar);
    snprintf(vl, sizeof vl, "%s.variants '%s'", label, vn->scalar);
    rs_xvariant_t *v = &x->v[x->n++];
    if (!(v->name = rs_strdup(vn->scalar)))
      return RS_ENOMEM;
    if ((rc = scalar(cfg, vi, vl, "weight", 1, &w, errstr, errstr_size)))
      return rc;
    if (rs_parse_double(w->scalar, &v->weight) || !isfinite(v->weight) ||
        v->weight <= 0 || v->weight > 1e9)
      return xerr(cfg, w, errstr, errstr_size,
                  "%s.weight: expected a number > 0 and <= 1e9, got '%s'", vl,
                  w->scalar);
    total += v->weight;
    rs_ypair_t *op = rs_ymap_find(vi, "overrides");
    if (op) {
      op->used = 1;
      if (op->value->type != RS_Y_MAP)
        return xerr(cfg, op->value, errstr, errstr_size,
                    "%s.overrides: expected a mapping of operator name to "
                    "options",
                    vl);
      v->overrides = op->value;
      if ((rc = check_overrides(cfg, g, x, (uint32_t)(x->n - 1), vl, errstr,
                                errstr_size)))
        return rc;
    }
    if ((rc = unknown_keys(cfg, vi, vl, "name, weight, overrides", errstr,
                           errstr_size)))
      return rc;
  }
  double acc = 0;
  for (size_t i = 0; i < x->n; i++) {
    acc += x->v[i].weight;
    x->v[i].upper = i + 1 == x->n ? 1.0 : acc / total;
  }
  /* operators: split these even when no variant overrides them. */
  rs_ypair_t *ops = rs_ymap_find(item, "operators");
  if (ops) {
    ops->used = 1;
    if (ops->value->type != RS_Y_SEQ)
      return xerr(cfg, ops->value, errstr, errstr_size,
                  "%s.operators: expected a list of operator names", label);
    for (size_t i = 0; i < ops->value->n; i++) {
      const rs_ynode_t *o = ops->value->items[i];
      long node = o->type == RS_Y_SCALAR ? find_op(g, o->scalar) : -1;
      if (node < 0)
        return xerr(cfg, o, errstr, errstr_size,
                    "%s.operators[%zu]: no operator named '%s' in this "
                    "pipeline",
                    label, i, o->type == RS_Y_SCALAR ? o->scalar : "?");
      int seen = 0;
      for (size_t k = 0; k < x->n_ops; k++)
        seen |= x->ops[k] == (size_t)node;
      if (!seen)
        x->ops[x->n_ops++] = (size_t)node;
    }
  }
  if (!x->n_ops)
    return xerr(cfg, item, errstr, errstr_size,
                "%s: splits no operator (give 'overrides' in a variant or "
                "list 'operators')",
                label);
  return unknown_keys(cfg, item, label, "name, salt, variants, operators",
                      errstr, errstr_size);
}

int rs_experiments_build(const rs_config_t *cfg, const rs_graph_t *g,
                         rs_experiments_t **out, char *errstr,
                         size_t errstr_size) {
  *out = NULL;
  rs_ypair_t *p =
      cfg->root->type == RS_Y_MAP ? rs_ymap_find(cfg->root, "experiments") : 0;
  if (!p)
    return 0;
  p->used = 1;
  if (p->value->type != RS_Y_SEQ)
    return xerr(cfg, p->value, errstr, errstr_size,
                "experiments: expected a list of experiments");
  rs_experiments_t *x = rs_calloc(1, sizeof(*x));
  if (!x || !(x->x = rs_calloc(p->value->n ? p->value->n : 1,
                               sizeof(rs_experiment_t)))) {
    rs_free(x);
    return RS_ENOMEM;
  }
  int rc = 0;
  for (size_t i = 0; i < p->value->n && !rc; i++) {
    rs_experiment_t *e = &x->x[x->n++];
    rc = read_one(cfg, g, p->value->items[i], i, e, errstr, errstr_size);
    for (size_t j = 0; j + 1 < x->n && !rc; j++) {
      if (!strcmp(x->x[j].name, e->name))
        rc = xerr(cfg, p->value->items[i], errstr, errstr_size,
                  "experiments '%s': the name is used twice", e->name);
      for (size_t a = 0; a < e->n_ops && !rc; a++)
        for (size_t b = 0; b < x->x[j].n_ops && !rc; b++)
          if (e->ops[a] == x->x[j].ops[b])
            rc = xerr(cfg, p->value->items[i], errstr, errstr_size,
                      "experiments '%s': operator '%s' is already split by "
                      "experiment '%s'; an operator takes part in one "
                      "experiment",
                      e->name, g->nodes[e->ops[a]].name, x->x[j].name);
    }
  }
  if (rc) {
    rs_experiments_destroy(x);
    return rc;
  }
  *out = x;
  return 0;
}

void rs_experiments_destroy(rs_experiments_t *x) {
  if (!x)
    return;
  for (size_t i = 0; i < x->n; i++) {
    for (size_t j = 0; j < x->x[i].n; j++)
      rs_free(x->x[i].v[j].name);
    rs_free(x->x[i].v);
    rs_free(x->x[i].name);
    rs_free(x->x[i].salt);
    rs_free(x->x[i].ops);
  }
  rs_free(x->x);
  rs_free(x);
}

const rs_experiment_t *rs_experiments_for_node(const rs_experiments_t *x,
                                               size_t node) {
  for (size_t i = 0; x && i < x->n; i++)
    for (size_t j = 0; j < x->x[i].n_ops; j++)
      if (x->x[i].ops[j] == node)
        return &x->x[i];
  return NULL;
}

uint32_t rs_experiment_assign(const rs_experiment_t *x, const void *user,
                              size_t user_len) {
  uint64_t h = 0xcbf29ce484222325ull;
  const unsigned char *s = (const unsigned char *)x->salt;
  for (; *s; s++)
    h = (h ^ *s) * 0x100000001b3ull;
  h = (h ^ 0) * 0x100000001b3ull;
  const unsigned char *u = user;
  for (size_t i = 0; i < user_len; i++)
    h = (h ^ u[i]) * 0x100000001b3ull;
  /* FNV's low bits mix poorly: finish with a 64-bit avalanche. */
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  double r = (double)(h >> 11) * 0x1.0p-53;
  for (uint32_t i = 0; i + 1 < x->n; i++)
    if (r < x->v[i].upper)
      return i;
  return (uint32_t)(x->n - 1);
}

uint32_t rs_experiment_record_variant(const rs_experiment_t *x,
                                      const rs_record_t *rec) {
  if (rec->key && rec->key_len)
    return rs_experiment_assign(x, rec->key, rec->key_len);
  if (rec->kind == RS_KIND_INTERACTION && rec->payload) {
    const rs_interaction_t *ia = rec->payload;
    return rs_experiment_assign(x, ia->user, ia->user_len);
  }
  return 0;
}

int rs_experiments_describe(const rs_experiments_t *x, const rs_graph_t *g,
                            rs_buf_t *out) {
  int rc = 0;
  for (size_t i = 0; x && i < x->n && !rc; i++) {
    const rs_experiment_t *e = &x->x[i];
    rc = rs_buf_printf(out, "experiment %s salt %s:", e->name, e->salt);
    for (size_t j = 0; j < e->n && !rc; j++)
      rc = rs_buf_printf(out, " %s=%.6f", e->v[j].name,
                         e->v[j].upper - (j ? e->v[j - 1].upper : 0));
    rc = rc ? rc : rs_buf_printf(out, " operators:");
    for (size_t j = 0; j < e->n_ops && !rc; j++)
      rc = rs_buf_printf(out, " %s", g->nodes[e->ops[j]].name);
    rc = rc ? rc : rs_buf_printf(out, "\n");
  }
  return rc ? RS_ENOMEM : 0;
}

int rs_experiments_check_state(const rs_experiments_t *x, const rs_graph_t *g,
                               const char *dir, char *errstr,
                               size_t errstr_size) {
  rs_buf_t want = {0};
  if (rs_experiments_describe(x, g, &want) || rs_buf_append(&want, "", 0)) {
    rs_buf_free(&want);
    return RS_ENOMEM;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/EXPERIMENTS", dir);
  FILE *f = fopen(path, "rb");
  int rc = 0;
  if (f) {
    char have[65536];
    size_t n = fread(have, 1, sizeof have - 1, f);
    fclose(f);
    have[n] = '\0';
    if (n != want.len || memcmp(have, want.data ? want.data : "", n)) {
      /* One line per experiment in the file; "; " between them here. */
      for (char *q = have; *q; q++)
        if (*q == '\n')
          *q = q[1] ? ';' : '\0';
      for (size_t i = 0; i < want.len; i++)
        if (want.data[i] == '\n')
          want.data[i] = i + 1 < want.len ? ';' : '\0';
      rc = rs_seterr(
          errstr, errstr_size, RS_ECONFIG,
          "experiments: the state in %s was built with another split of "
          "users (%s: '%s') than this config's ('%s'); users would be served "
          "by variant state built for others. Use a new state.dir for the "
          "new split, or delete %s to accept it",
          dir, path, n ? have : "no experiments",
          want.len ? want.data : "no experiments", path);
    }
  } else if (errno == ENOENT && want.len) {
    f = fopen(path, "wb");
    if (!f || fwrite(want.data, 1, want.len, f) != want.len || fclose(f))
      rc = rs_seterr(errstr, errstr_size, RS_EIO, "cannot write %s: %s", path,
                     strerror(errno));
  }
  rs_buf_free(&want);
  return rc;
}
