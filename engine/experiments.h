/* A/B experiments (the `experiments:` config section, docs/CONFIG.md):
 * users are split deterministically by hash(salt, user) into weighted
 * variants; every operator an experiment names gets one instance per
 * variant ("topn#B") with the variant's option overrides, its own state
 * column family and host->variant set to the variant's name. The runtime
 * routes each record of such an operator to the instance of its key's
 * variant (engine/runtime.c).
 */
#ifndef RS_EXPERIMENTS_H
#define RS_EXPERIMENTS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "util.h"

struct rs_graph;

typedef struct rs_xvariant {
  char *name;
  double weight;
  double upper; /* cumulative share of this and earlier variants, (0, 1] */
  const rs_ynode_t *overrides; /* mapping operator -> mapping, or NULL */
} rs_xvariant_t;

typedef struct rs_experiment {
  char *name;
  char *salt;
  rs_xvariant_t *v;
  size_t n;
  size_t *ops; /* graph node indexes of the operators it splits */
  size_t n_ops;
} rs_experiment_t;

typedef struct rs_experiments {
  rs_experiment_t *x;
  size_t n;
} rs_experiments_t;

/* Reads and checks cfg's `experiments:` against the graph's operators
 * (names, weights, unknown operators and options, duplicates, overrides
 * applied to a scratch context). *out is NULL when the section is absent.
 * RS_ECONFIG with file:line:col. */
int rs_experiments_build(const rs_config_t *cfg, const struct rs_graph *g,
                         rs_experiments_t **out, char *errstr,
                         size_t errstr_size);
void rs_experiments_destroy(rs_experiments_t *x);

/* The experiment that splits graph node `node`, or NULL. */
const rs_experiment_t *rs_experiments_for_node(const rs_experiments_t *x,
                                               size_t node);
/* The variant index of `user` in experiment x: FNV-1a 64 of salt, a 0
 * byte and the user, mapped to [0, 1) and looked up in the cumulative
 * weights. Deterministic across runs and machines. */
uint32_t rs_experiment_assign(const rs_experiment_t *x, const void *user,
                              size_t user_len);
/* The variant of a record: rs_experiment_assign() of its key (the user,
 * for every built-in operator's records), or of the interaction's user
 * when the record has no key; records with neither go to variant 0. */
struct rs_record;
uint32_t rs_experiment_record_variant(const rs_experiment_t *x,
                                      const struct rs_record *rec);
/* The options mapping of node `node`'s instance for variant v: the
 * operator's own mapping with the variant's overrides replacing or adding
 * keys. Free with rs_experiments_free_map(). NULL: out of memory. */
rs_ynode_t *rs_experiments_options(const rs_experiment_t *x, uint32_t v,
                                   const char *op_name, const rs_ynode_t *base);
void rs_experiments_free_map(rs_ynode_t *m);
/* The canonical text of the split ("experiment NAME salt S: A=0.5 B=0.5
 * [ops]" lines): what the state directory records. */
int rs_experiments_describe(const rs_experiments_t *x, const struct rs_graph *g,
                            rs_buf_t *out);
/* Records the split in <dir>/EXPERIMENTS on first use and refuses
 * (RS_ECONFIG) a state directory whose recorded split differs: users would
 * move between variants whose state was built for others. */
int rs_experiments_check_state(const rs_experiments_t *x,
                               const struct rs_graph *g, const char *dir,
                               char *errstr, size_t errstr_size);

#endif
