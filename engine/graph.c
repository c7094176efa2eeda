/* Graph construction and validation. Each kind of graph mistake has its
 * own message naming the config position, because a wrong graph is the
 * most common way a pipeline file goes wrong. */
#include "graph.h"

#include <stdio.h>
#include <string.h>

#include "experiments.h"
#include "options.h"

static const char *const default_ports[] = {"out", NULL};

static const char *kind_name(rs_node_kind_t k) {
  return k == RS_NODE_SOURCE ? "source"
         : k == RS_NODE_SINK ? "sink"
                             : "operator";
}

/* The config section a node comes from, as errors name it. */
static const char *section_name(rs_node_kind_t k) {
  return k == RS_NODE_SOURCE ? "sources"
         : k == RS_NODE_SINK ? "sinks"
                             : "operators";
}

static const rs_ynode_t *node_cfg(const rs_graph_t *g, const rs_gnode_t *n) {
  switch (n->kind) {
  case RS_NODE_SOURCE:
    return g->cfg->sources[n->cfg_index].node;
  case RS_NODE_OPERATOR:
    return g->cfg->operators[n->cfg_index].node;
  default:
    return g->cfg->sinks[n->cfg_index].node;
  }
}

/* Position of key `key` of node n's mapping (or of the mapping). */
static void pos(const rs_graph_t *g, const rs_gnode_t *n, const char *key,
                char *buf, size_t size) {
  const rs_ynode_t *m = node_cfg(g, n);
  rs_ypair_t *p = key ? rs_ymap_find(m, key) : NULL;
  if (p)
    rs_config_where(g->cfg, p->value->line, p->value->col, buf, size);
  else
    rs_config_where(g->cfg, m->line, m->col, buf, size);
}

const char *rs_graph_port_name(const rs_gnode_t *n, uint32_t port) {
  return port < n->n_ports ? n->port_names[port] : "?";
}

static ssize_t find_node(const rs_graph_t *g, const char *name, size_t len) {
  for (size_t i = 0; i < g->n; i++)
    if (strlen(g->nodes[i].name) == len &&
        !strncmp(g->nodes[i].name, name, len))
      return (ssize_t)i;
  return -1;
}

/* Resolves "node" or "node.port" for the input of node `self`. */
static int resolve_input(rs_graph_t *g, rs_gnode_t *self, const char *ref,
                         const char *key, rs_edge_t *out, char *errstr,
                         size_t errstr_size) {
  char where[512];
  pos(g, self, key, where, sizeof where);
  const char *dot = strchr(ref, '.');
  size_t nl = dot ? (size_t)(dot - ref) : strlen(ref);
  ssize_t idx = find_node(g, ref, nl);
  if (idx < 0)
    return rs_seterr(errstr, errstr_size, RS_EGRAPH,
                     "%s%s '%s'.%s: no source or operator named '%.*s'", where,
                     section_name(self->kind), self->name, key, (int)nl, ref);
  rs_gnode_t *from = &g->nodes[idx];
  if (from->kind == RS_NODE_SINK)
    return rs_seterr(errstr, errstr_size, RS_EGRAPH,
                     "%s%s '%s'.%s: '%s' is a sink; sinks have no output to "
                     "read",
                     where, section_name(self->kind), self->name, key,
                     from->name);
  if (from == self)
    return rs_seterr(errstr, errstr_size, RS_EGRAPH,
                     "%s%s '%s'.%s: an operator cannot read its own output",
                     where, section_name(self->kind), self->name, key);
  uint32_t port = 0;
  if (dot) {
    int found = 0;
    for (uint32_t p = 0; p < from->n_ports; p++)
      if (!strcmp(from->port_names[p], dot + 1)) {
        port = p;
        found = 1;
      }
    if (!found) {
      rs_buf_t b = {0};
      for (uint32_t p = 0; p < from->n_ports; p++)
        rs_buf_printf(&b, "%s%s", p ? ", " : "", from->port_names[p]);
      rs_seterr(errstr, errstr_size, RS_EGRAPH,
                "%s%s '%s'.%s: %s '%s' has no output port '%s' (ports: %s)",
                where, section_name(self->kind), self->name, key,
                kind_name(from->kind), from->name, dot + 1,
                b.data ? b.data : "");
      rs_buf_free(&b);
      return RS_EGRAPH;
    }
  }
  out->from = (size_t)idx;
  out->port = port;
  return 0;
}

/* An operator reads each (node, port) once: a repeated input would hand
 * it every record of that port once per listing. Checks inputs[k] against
 * the ones before it ("parse" and "parse.out" are the same port). */
static int check_repeated_input(const rs_graph_t *g, const rs_gnode_t *n,
                                char *const *refs, size_t k, char *errstr,
                                size_t errstr_size) {
  const rs_edge_t *e = &n->inputs[k];
  for (size_t j = 0; j < k; j++) {
    if (n->inputs[j].from != e->from || n->inputs[j].port != e->port)
      continue;
    /* Only `inputs` lists more than one; point at the repeated entry. */
    const rs_ypair_t *p = rs_ymap_find(node_cfg(g, n), "inputs");
    const rs_ynode_t *at = p && p->value->type == RS_Y_SEQ && k < p->value->n
                               ? p->value->items[k]
                               : node_cfg(g, n);
    char where[512], as[160] = "";
    rs_config_where(g->cfg, at->line, at->col, where, sizeof where);
    if (strcmp(refs[j], refs[k]))
      snprintf(as, sizeof as, ", as '%s'", refs[j]);
    return rs_seterr(errstr, errstr_size, RS_EGRAPH,
                     "%soperators '%s'.inputs[%zu]: '%s' is already an input "
                     "of '%s' (inputs[%zu]%s); each input is read once, so "
                     "list it once",
                     where, n->name, k, refs[k], n->name, j, as);
  }
  return 0;
}

static int add_node(rs_graph_t *g, rs_node_kind_t kind, const char *name,
                    size_t cfg_index, char *errstr, size_t errstr_size) {
  rs_gnode_t *n = &g->nodes[g->n];
  n->kind = kind;
  n->name = name;
  n->cfg_index = cfg_index;
  for (size_t i = 0; i < g->n; i++)
    if (!strcmp(g->nodes[i].name, name)) {
      char where[512];
      pos(g, n, "name", where, sizeof where);
      const rs_ynode_t *first = node_cfg(g, &g->nodes[i]);
      return rs_seterr(errstr, errstr_size, RS_EGRAPH,
                       "%s%s '%s': the name is already used by the %s at "
                       "line %d; names must be unique across sources, "
                       "operators and sinks",
                       where, section_name(kind), name,
                       kind_name(g->nodes[i].kind), first->line);
    }
  g->n++;
  return 0;
}

/* Checks an operator's options by applying them to a scratch context. */
static int check_options(const rs_graph_t *g, const rs_gnode_t *n, char *errstr,
                         size_t errstr_size) {
  void *ctx = rs_calloc(1, n->def->ctx_size ? n->def->ctx_size : 1);
  if (!ctx)
    return RS_ENOMEM;
  char label[160];
  snprintf(label, sizeof label, "operators '%s'", n->name);
  int rc = rs_options_apply(g->cfg, n->def, node_cfg(g, n), label, ctx, errstr,
                            errstr_size);
  rs_options_free(n->def, ctx);
  rs_free(ctx);
  return rc;
}

enum { WHITE = 0, GREY = 1, BLACK = 2 };

/* Depth-first over inputs; reports the first cycle with its members. */
static int visit(rs_graph_t *g, size_t i, int *color, size_t *stack,
                 size_t depth, size_t *order, size_t *n_order, char *errstr,
                 size_t errstr_size) {
  color[i] = GREY;
  stack[depth] = i;
  rs_gnode_t *n = &g->nodes[i];
  for (size_t e = 0; e < n->n_inputs; e++) {
    size_t j = n->inputs[e].from;
    if (color[j] == GREY) {
      rs_buf_t b = {0};
      size_t k = depth;
      while (stack[k] != j)
        k--;
      for (size_t m = k; m <= depth; m++)
        rs_buf_printf(&b, "%s -> ", g->nodes[stack[m]].name);
      rs_buf_printf(&b, "%s", g->nodes[j].name);
      char where[512];
      pos(g, &g->nodes[j], NULL, where, sizeof where);
      rs_seterr(errstr, errstr_size, RS_EGRAPH,
                "%soperators '%s': the graph has a cycle (%s reads from "
                "%s, which depends on it): %s",
                where, g->nodes[j].name, n->name, g->nodes[j].name,
                b.data ? b.data : "");
      rs_buf_free(&b);
      return RS_EGRAPH;
    }
    if (color[j] == WHITE) {
      int rc = visit(g, j, color, stack, depth + 1, order, n_order, errstr,
                     errstr_size);
      if (rc)
        return rc;
    }
  }
  color[i] = BLACK;
  order[(*n_order)++] = i;
  return 0;
}

/* Sources with `loopback: true` read a topic that one of the pipeline's own
 * sinks writes. The flag must name a real loop (some sink writes the
 * topic), and exactly_once cannot run one: a checkpoint keeps a source
 * topic's next input offset and (exactly_once) an output topic's
 * acknowledged end under the same topic name, so for a topic that is both
 * the two would overwrite each other. */
static int check_loopbacks(const rs_config_t *cfg, char *errstr,
                           size_t errstr_size) {
  char where[512];
  for (size_t j = 0; j < cfg->n_sources; j++) {
    const rs_source_cfg_t *src = &cfg->sources[j];
    if (!src->loopback)
      continue;
    rs_ypair_t *p = rs_ymap_find(src->node, "loopback");
    const rs_ynode_t *at = p ? p->value : src->node;
    rs_config_where(cfg, at->line, at->col, where, sizeof where);
    size_t i = 0;
    while (i < cfg->n_sinks && strcmp(cfg->sinks[i].topic, src->topic))
      i++;
    if (i == cfg->n_sinks)
      return rs_seterr(errstr, errstr_size, RS_EGRAPH,
                       "%ssources '%s'.loopback: no sink writes topic '%s'; "
                       "loopback is only for a source that reads the "
                       "pipeline's own output (remove it)",
                       where, src->name, src->topic);
    if (cfg->state.guarantee == RS_GUARANTEE_EXACTLY_ONCE)
      return rs_seterr(errstr, errstr_size, RS_EGRAPH,
                       "%ssources '%s'.loopback: not available with "
                       "state.guarantee exactly_once (a checkpoint keeps "
                       "topic '%s''s input offsets and its output ends under "
                       "the same name); use at_least_once",
                       where, src->name, src->topic);
  }
  return 0;
}

const char *rs_graph_dlq_topic(const rs_config_t *cfg, size_t op, size_t src,
                               char *buf, size_t size) {
  if (cfg->operators[op].dead_letter_topic)
    return cfg->operators[op].dead_letter_topic;
  snprintf(buf, size, "%s.dlq", cfg->sources[src].topic);
  return buf;
}

int rs_graph_reaches(const rs_graph_t *g, size_t src, size_t node) {
  return (int)(g->reach[node * g->reach_words + src / 64] >> (src % 64) & 1);
}

/* The dead-letter topics operator node i may write (one per source that
 * reaches it) must not be source topics. */
static int check_dlq_topics(const rs_graph_t *g, size_t i, char *errstr,
                            size_t errstr_size) {
  const rs_config_t *cfg = g->cfg;
  const rs_gnode_t *n = &g->nodes[i];
  const rs_operator_cfg_t *oc = &cfg->operators[n->cfg_index];
  char where[512], buf[512];
  for (size_t s = 0; s < cfg->n_sources; s++) {
    if (!rs_graph_reaches(g, s, i))
      continue;
    const char *dlq = rs_graph_dlq_topic(cfg, n->cfg_index, s, buf, sizeof buf);
    if (!oc->dead_letter_topic && !rs_topic_name_ok(dlq)) {
      /* The config checked the source topic, not what ".dlq" makes of it
       * (an explicit dead_letter_topic is checked at load). */
      pos(g, n, "name", where, sizeof where);
      return rs_seterr(errstr, errstr_size, RS_EGRAPH,
                       "%soperators '%s': its dead letters for source '%s' "
                       "would go to '%s' (the default, <source topic>.dlq), "
                       "longer than the 249 characters of a Kafka topic "
                       "name: set dead_letter_topic on '%s'",
                       where, n->name, cfg->sources[s].name, dlq, n->name);
    }
    size_t j = 0;
    while (j < cfg->n_sources && strcmp(cfg->sources[j].topic, dlq))
      j++;
    if (j == cfg->n_sources)
      continue;
    if (oc->dead_letter_topic) {
      pos(g, n, "dead_letter_topic", where, sizeof where);
      return rs_seterr(errstr, errstr_size, RS_EGRAPH,
                       "%soperators '%s'.dead_letter_topic: '%s' is also "
                       "read by source '%s'; dead letters would be consumed "
                       "again (choose a topic no source reads)",
                       where, n->name, dlq, cfg->sources[j].name);
    }
    pos(g, n, "name", where, sizeof where);
    return rs_seterr(errstr, errstr_size, RS_EGRAPH,
                     "%soperators '%s': its dead letters for source '%s' go "
                     "to '%s' (the default, <source topic>.dlq), which is "
                     "also read by source '%s'; dead letters would be "
                     "consumed again: set dead_letter_topic on '%s' to a "
                     "topic no source reads",
                     where, n->name, cfg->sources[s].name, dlq,
                     cfg->sources[j].name, n->name);
  }
  return 0;
}

int rs_graph_build(const rs_config_t *cfg, const rs_registry_t *reg,
                   rs_graph_t **out, char *errstr, size_t errstr_size) {
  *out = NULL;
  rs_graph_t *g = rs_calloc(1, sizeof(*g));
  size_t total = cfg->n_sources + cfg->n_operators + cfg->n_sinks;
  if (!g)
    return RS_ENOMEM;
  g->cfg = cfg;
  g->nodes = rs_calloc(total ? total : 1, sizeof(*g->nodes));
  g->order = rs_calloc(total ? total : 1, sizeof(*g->order));
  int *color = rs_calloc(total ? total : 1, sizeof(int));
  size_t *stack = rs_calloc(total ? total : 1, sizeof(size_t));
  char where[512];
  int rc = 0;
  if (!g->nodes || !g->order || !color || !stack) {
    rc = RS_ENOMEM;
    goto done;
  }
  if (cfg->n_sources == 0) {
    rc = rs_seterr(errstr, errstr_size, RS_EGRAPH,
                   "%s: sources: at least one source is needed", cfg->file);
    goto done;
  }
  if (cfg->n_sinks == 0) {
    rc = rs_seterr(errstr, errstr_size, RS_EGRAPH,
                   "%s: sinks: at least one sink is needed", cfg->file);
    goto done;
  }
  for (size_t i = 0; i < cfg->n_sources && !rc; i++) {
    rc = add_node(g, RS_NODE_SOURCE, cfg->sources[i].name, i, errstr,
                  errstr_size);
    if (!rc) {
      g->nodes[g->n - 1].n_ports = 1;
      g->nodes[g->n - 1].port_names = default_ports;
    }
  }
  for (size_t i = 0; i < cfg->n_operators && !rc; i++) {
    rc = add_node(g, RS_NODE_OPERATOR, cfg->operators[i].name, i, errstr,
                  errstr_size);
    if (rc)
      break;
    rs_gnode_t *n = &g->nodes[g->n - 1];
    n->def = rs_registry_find(reg, cfg->operators[i].type);
    if (!n->def) {
      rs_buf_t b = {0};
      for (size_t k = 0; k < rs_registry_count(reg); k++)
        rs_buf_printf(&b, "%s%s", k ? ", " : "", rs_registry_at(reg, k)->name);
      pos(g, n, "type", where, sizeof where);
      rc = rs_seterr(errstr, errstr_size, RS_EGRAPH,
                     "%soperators '%s'.type: unknown operator type '%s' "
                     "(known: %s; plugins: add more)",
                     where, n->name, cfg->operators[i].type,
                     b.data ? b.data : "");
      rs_buf_free(&b);
      break;
    }
    n->port_names = n->def->output_ports && n->def->output_ports[0]
                        ? n->def->output_ports
                        : default_ports;
    while (n->port_names[n->n_ports])
      n->n_ports++;
  }
  for (size_t i = 0; i < cfg->n_sinks && !rc; i++)
    rc = add_node(g, RS_NODE_SINK, cfg->sinks[i].name, i, errstr, errstr_size);
  if (rc)
    goto done;

  /* Edges. */
  for (size_t i = 0; i < g->n && !rc; i++) {
    rs_gnode_t *n = &g->nodes[i];
    if (n->kind == RS_NODE_SOURCE)
      continue;
    size_t n_in = 1;
    char *const *refs = &cfg->sinks[n->cfg_index].input;
    const char *key = "input";
    if (n->kind == RS_NODE_OPERATOR) {
      const rs_operator_cfg_t *oc = &cfg->operators[n->cfg_index];
      n_in = oc->n_inputs;
      refs = oc->inputs;
      key = rs_ymap_find(oc->node, "inputs") ? "inputs" : "input";
      if (n_in < n->def->min_inputs || n_in > n->def->max_inputs) {
        pos(g, n, key, where, sizeof where);
        rc = rs_seterr(errstr, errstr_size, RS_EGRAPH,
                       "%soperators '%s': type '%s' takes %u to %u inputs, "
                       "got %zu",
                       where, n->name, n->def->name, n->def->min_inputs,
                       n->def->max_inputs, n_in);
        break;
      }
    }
    n->inputs = rs_calloc(n_in, sizeof(rs_edge_t));
    if (!n->inputs) {
      rc = RS_ENOMEM;
      break;
    }
    for (size_t k = 0; k < n_in && !rc; k++) {
      rc =
          resolve_input(g, n, refs[k], key, &n->inputs[k], errstr, errstr_size);
      n->n_inputs += !rc;
      if (!rc)
        rc = check_repeated_input(g, n, refs, k, errstr, errstr_size);
    }
  }
  if (rc)
    goto done;

  /* Cycles and topological order (inputs before readers). */
  size_t n_order = 0;
  for (size_t i = 0; i < g->n && !rc; i++)
    if (color[i] == WHITE)
      rc =
          visit(g, i, color, stack, 0, g->order, &n_order, errstr, errstr_size);
  if (rc)
    goto done;

  /* Which sources reach each node, in topological order. */
  g->reach_words = (cfg->n_sources + 63) / 64;
  g->reach = rs_calloc(g->n * g->reach_words, sizeof(uint64_t));
  if (!g->reach) {
    rc = RS_ENOMEM;
    goto done;
  }
  for (size_t k = 0; k < g->n; k++) {
    size_t v = g->order[k];
    const rs_gnode_t *n = &g->nodes[v];
    uint64_t *r = g->reach + v * g->reach_words;
    if (n->kind == RS_NODE_SOURCE)
      r[n->cfg_index / 64] |= 1ull << (n->cfg_index % 64);
    for (size_t e = 0; e < n->n_inputs; e++)
      for (size_t w = 0; w < g->reach_words; w++)
        r[w] |= g->reach[n->inputs[e].from * g->reach_words + w];
  }

  /* Every source and operator must reach a sink. Walk backwards from
   * sinks; color is reused as "reaches a sink". */
  memset(color, 0, g->n * sizeof(int));
  for (size_t k = g->n; k-- > 0;) {
    size_t i = g->order[k];
    if (g->nodes[i].kind == RS_NODE_SINK)
      color[i] = 1;
    if (color[i])
      for (size_t e = 0; e < g->nodes[i].n_inputs; e++)
        color[g->nodes[i].inputs[e].from] = 1;
  }
  for (size_t i = 0; i < g->n && !rc; i++) {
    rs_gnode_t *n = &g->nodes[i];
    if (color[i])
      continue;
    pos(g, n, "name", where, sizeof where);
    if (n->kind == RS_NODE_SOURCE)
      rc = rs_seterr(errstr, errstr_size, RS_EGRAPH,
                     "%ssources '%s': nothing reads from it on a path to a "
                     "sink; remove it or connect it",
                     where, n->name);
    else
      rc = rs_seterr(errstr, errstr_size, RS_EGRAPH,
                     "%soperators '%s': has no path to a sink, so its output "
                     "would be discarded; add a sink or remove it",
                     where, n->name);
  }
  if (rc)
    goto done;

  /* One source per topic, and a literal topic name: librdkafka would read
   * a name starting with '^' as a regular expression. */
  for (size_t i = 0; i < cfg->n_sources && !rc; i++) {
    const rs_source_cfg_t *src = &cfg->sources[i];
    rs_ypair_t *p = rs_ymap_find(src->node, "topic");
    const rs_ynode_t *at = p ? p->value : src->node;
    rs_config_where(cfg, at->line, at->col, where, sizeof where);
    if (src->topic[0] == '^')
      rc = rs_seterr(errstr, errstr_size, RS_EGRAPH,
                     "%ssources '%s'.topic: '%s' looks like a pattern; "
                     "sources name one topic each",
                     where, src->name, src->topic);
    for (size_t j = 0; j < i && !rc; j++)
      if (!strcmp(cfg->sources[j].topic, src->topic))
        rc = rs_seterr(errstr, errstr_size, RS_EGRAPH,
                       "%ssources '%s'.topic: topic '%s' is already read by "
                       "source '%s'; read it once and fan out from there",
                       where, src->name, src->topic, cfg->sources[j].name);
  }

  /* A sink writing into a source topic would feed itself forever, unless
   * the source declares the loop (`loopback: true`, docs/CONFIG.md). */
  for (size_t i = 0; i < cfg->n_sinks && !rc; i++)
    for (size_t j = 0; j < cfg->n_sources && !rc; j++)
      if (!cfg->sources[j].loopback &&
          !strcmp(cfg->sinks[i].topic, cfg->sources[j].topic)) {
        rs_ypair_t *p = rs_ymap_find(cfg->sinks[i].node, "topic");
        rs_config_where(cfg, p->value->line, p->value->col, where,
                        sizeof where);
        rc = rs_seterr(errstr, errstr_size, RS_EGRAPH,
                       "%ssinks '%s'.topic: '%s' is also read by source "
                       "'%s'; the pipeline would consume its own output "
                       "(if that loop is deliberate, set loopback: true on "
                       "the source)",
                       where, cfg->sinks[i].name, cfg->sinks[i].topic,
                       cfg->sources[j].name);
      }
  if (!rc)
    rc = check_loopbacks(cfg, errstr, errstr_size);

  /* Nor may dead letters go into a source topic (they would be read back
   * and fail again; and the state store keeps input and output positions
   * by topic name). Checked for the topic each source reaching the
   * operator would use, the default "<source topic>.dlq" included: the
   * runtime picks it with the same rs_graph_dlq_topic(). */
  for (size_t i = 0; i < g->n && !rc; i++)
    if (g->nodes[i].kind == RS_NODE_OPERATOR)
      rc = check_dlq_topics(g, i, errstr, errstr_size);

  for (size_t i = 0; i < g->n && !rc; i++)
    if (g->nodes[i].kind == RS_NODE_OPERATOR)
      rc = check_options(g, &g->nodes[i], errstr, errstr_size);
  if (!rc)
    rc = rs_experiments_build(cfg, g, &g->exp, errstr, errstr_size);

done:
  rs_free(color);
  rs_free(stack);
  if (rc) {
    rs_graph_destroy(g);
    return rc;
  }
  *out = g;
  return 0;
}

void rs_graph_destroy(rs_graph_t *g) {
  if (!g)
    return;
  for (size_t i = 0; i < g->n; i++)
    rs_free(g->nodes[i].inputs);
  rs_free(g->nodes);
  rs_free(g->order);
  rs_free(g->reach);
  rs_experiments_destroy(g->exp);
  rs_free(g);
}

int rs_graph_to_dot(const rs_graph_t *g, rs_buf_t *out) {
  const rs_config_t *cfg = g->cfg;
  rs_buf_printf(
      out,
      "digraph \"%s\" {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n",
      cfg->app);
  for (size_t k = 0; k < g->n; k++) {
    const rs_gnode_t *n = &g->nodes[g->order[k]];
    switch (n->kind) {
    case RS_NODE_SOURCE:
      rs_buf_printf(out,
                    "  \"%s\" [shape=cylinder, label=\"%s\\ntopic: %s\"];\n",
                    n->name, n->name, cfg->sources[n->cfg_index].topic);
      break;
    case RS_NODE_OPERATOR:
      rs_buf_printf(out, "  \"%s\" [shape=box, label=\"%s\\n(%s)\"];\n",
                    n->name, n->name, n->def->name);
      break;
    case RS_NODE_SINK:
      rs_buf_printf(out,
                    "  \"%s\" [shape=cylinder, style=filled, "
                    "fillcolor=\"#e8f0fe\", label=\"%s\\ntopic: %s\"];\n",
                    n->name, n->name, cfg->sinks[n->cfg_index].topic);
      break;
    }
  }
  for (size_t k = 0; k < g->n; k++) {
    const rs_gnode_t *n = &g->nodes[g->order[k]];
    for (size_t e = 0; e < n->n_inputs; e++) {
      const rs_gnode_t *from = &g->nodes[n->inputs[e].from];
      if (n->inputs[e].port == 0)
        rs_buf_printf(out, "  \"%s\" -> \"%s\";\n", from->name, n->name);
      else
        rs_buf_printf(out, "  \"%s\" -> \"%s\" [label=\"%s\"];\n", from->name,
                      n->name, rs_graph_port_name(from, n->inputs[e].port));
    }
  }
  rs_buf_printf(out, "}\n");
  return 0;
}

int rs_graph_copartition(const rs_graph_t *g, const int32_t *parts, size_t *op,
                         size_t *s1, size_t *s2) {
  size_t ns = g->cfg->n_sources, words = (ns + 63) / 64;
  if (!ns)
    return 0;
  /* reach[node]: the sources whose records reach the node. */
  uint64_t *reach = rs_calloc(g->n * words, sizeof(uint64_t));
  if (!reach)
    return RS_ENOMEM;
  int found = 0;
  for (size_t k = 0; k < g->n && !found; k++) {
    size_t v = g->order[k];
    const rs_gnode_t *n = &g->nodes[v];
    uint64_t *r = reach + v * words;
    if (n->kind == RS_NODE_SOURCE)
      r[n->cfg_index / 64] |= 1ull << (n->cfg_index % 64);
    for (size_t i = 0; i < n->n_inputs; i++)
      for (size_t w = 0; w < words; w++)
        r[w] |= reach[n->inputs[i].from * words + w];
    if (n->kind != RS_NODE_OPERATOR)
      continue;
    size_t first = ns;
    for (size_t s = 0; s < ns && !found; s++) {
      if (!(r[s / 64] >> (s % 64) & 1) || parts[s] <= 0)
        continue;
      if (first == ns) {
        first = s;
      } else if (parts[s] != parts[first]) {
        *op = v;
        *s1 = first;
        *s2 = s;
        found = 1;
      }
    }
  }
  rs_free(reach);
  return found;
}

int rs_graph_port_wanted(const rs_graph_t *g, size_t node, uint32_t port,
                         int suppress_output, uint32_t *withheld_sinks) {
  int wanted = 0;
  uint32_t withheld = 0;
  for (size_t i = 0; i < g->n; i++) {
    const rs_gnode_t *gn = &g->nodes[i];
    for (size_t k = 0; k < gn->n_inputs; k++) {
      if (gn->inputs[k].from != node || gn->inputs[k].port != port)
        continue;
      if (gn->kind == RS_NODE_SINK && suppress_output)
        withheld++;
      else
        wanted = 1;
    }
  }
  if (withheld_sinks)
    *withheld_sinks = withheld;
  return wanted;
}
