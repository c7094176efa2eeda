/* The operator graph built from a config: sources, operators and sinks as
 * nodes, inputs as edges from (node, output port). Building it performs
 * every check that needs no connection (names, types, ports, cycles, paths
 * to sinks, operator options), so `validate` is exactly this.
 */
#ifndef RS_GRAPH_H
#define RS_GRAPH_H

#include "config.h"
#include "registry.h"
#include "util.h"

typedef enum rs_node_kind {
  RS_NODE_SOURCE = 0,
  RS_NODE_OPERATOR = 1,
  RS_NODE_SINK = 2
} rs_node_kind_t;

typedef struct rs_edge {
  size_t from;   /* node index */
  uint32_t port; /* output port of `from` */
} rs_edge_t;

typedef struct rs_gnode {
  rs_node_kind_t kind;
  const char *name;
  size_t cfg_index;             /* into cfg->sources / operators / sinks */
  const rs_operator_def_t *def; /* operators only */
  size_t n_ports;               /* output ports (sinks: 0) */
  const char *const *port_names;
  rs_edge_t *inputs;
  size_t n_inputs;
} rs_gnode_t;

typedef struct rs_graph {
  const rs_config_t *cfg;
  rs_gnode_t *nodes;
  size_t n;
  size_t *order;              /* topological order of all nodes */
  struct rs_experiments *exp; /* the `experiments:` section (NULL: none) */
  /* Per node, a bitset of the sources whose records reach it (reach_words
   * words each): rs_graph_reaches(). */
  uint64_t *reach;
  size_t reach_words;
} rs_graph_t;

/* Borrowed: cfg and reg must outlive the graph. Free with
 * rs_graph_destroy(). RS_EGRAPH or RS_ECONFIG with file:line:col. */
int rs_graph_build(const rs_config_t *cfg, const rs_registry_t *reg,
                   rs_graph_t **out, char *errstr, size_t errstr_size);
void rs_graph_destroy(rs_graph_t *g);
/* Graphviz DOT of the graph. */
int rs_graph_to_dot(const rs_graph_t *g, rs_buf_t *out);
/* Whether output port `port` of node `node` is read (host->port_wanted):
 * by an operator (always: it keeps state), or by a sink unless outputs are
 * suppressed (replay --output none). *withheld_sinks (may be NULL) gets the
 * number of suppressed sinks that read it. */
int rs_graph_port_wanted(const rs_graph_t *g, size_t node, uint32_t port,
                         int suppress_output, uint32_t *withheld_sinks);
/* Co-partitioning: an operator keeps its state per input partition, so
 * the records of one key from two sources meet only when both topics have
 * the same partition count (and partitioner). Given each source's count
 * (parts[i] for cfg->sources[i]; <= 0: unknown, not compared), finds the
 * first operator (in topological order) that records of two sources with
 * different counts reach: 1 and its node in *op, the two sources (cfg
 * indices) in *s1 < *s2; 0 when there is none. RS_ENOMEM on failure. */
int rs_graph_copartition(const rs_graph_t *g, const int32_t *parts, size_t *op,
                         size_t *s1, size_t *s2);
/* Whether records of source cfg->sources[src] reach node `node` (through
 * any path; a source reaches itself). */
int rs_graph_reaches(const rs_graph_t *g, size_t src, size_t node);
/* The topic operator cfg->operators[op] writes the dead letters of source
 * cfg->sources[src]'s records to: its dead_letter_topic, or else
 * "<source topic>.dlq", written into buf. The one rule for the graph check
 * (no dead-letter topic may be a source topic) and the runtime. */
const char *rs_graph_dlq_topic(const rs_config_t *cfg, size_t op, size_t src,
                               char *buf, size_t size);
/* Name of a node's output port. */
const char *rs_graph_port_name(const rs_gnode_t *n, uint32_t port);

#endif
