/* libFuzzer target: arbitrary bytes as a pipeline config, through the
 * loader and the graph builder (with the built-in operators). Must never
 * crash, leak or hang; errors are fine. */
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "graph.h"
#include "registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const sets[] = {"state.commit_interval=2s",
                                     "operators.parse.format=json"};
  char err[1024];
  rs_config_t *cfg = NULL;
  /* Half the inputs also get --set overrides applied. */
  size_t n_sets = size && (data[0] & 1) ? 2 : 0;
  if (rs_config_load_string("fuzz.yaml", (const char *)data, size, sets, n_sets,
                            &cfg, err, sizeof err))
    return 0;
  rs_registry_t *reg = NULL;
  rs_graph_t *g = NULL;
  if (!rs_registry_new(&reg, err, sizeof err) &&
      !rs_graph_build(cfg, reg, &g, err, sizeof err)) {
    rs_buf_t b = {0};
    rs_graph_to_dot(g, &b);
    rs_buf_free(&b);
  }
  rs_graph_destroy(g);
  rs_registry_destroy(reg);
  rs_config_destroy(cfg);
  return 0;
}
