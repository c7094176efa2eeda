/* Operator plugin ABI: the example plugin loads and is usable in a graph;
 * wrong-ABI, truncated and symbol-less shared objects are refused with a
 * message naming the file, never a crash. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "graph.h"
#include "options.h"
#include "registry.h"

static void plugin_path(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%s/plugins/%s.so", RS_BINARY_DIR, name);
}

Test(plugin, example_operator_loads_and_describes_itself) {
  rs_registry_t *reg;
  char err[1024], path[1024];
  cr_assert_eq(rs_registry_new(&reg, err, sizeof err), 0, "%s", err);
  plugin_path(path, sizeof path, "rs_example_operator");
  cr_assert_eq(rs_registry_load_plugin(reg, path, err, sizeof err), 0, "%s",
               err);
  const rs_operator_def_t *d = rs_registry_find(reg, "event_filter");
  cr_assert(d != NULL);
  cr_assert_eq(d->n_options, 2);
  rs_buf_t b = {0};
  rs_options_describe(d, 1, &b);
  cr_assert(strstr(b.data, "| `keep` | string |") != NULL, "%s", b.data);
  rs_buf_free(&b);
  /* Loading the same operator twice is a name clash, not a crash. */
  cr_assert_eq(rs_registry_load_plugin(reg, path, err, sizeof err), RS_EPLUGIN);
  cr_assert(strstr(err, "an operator named 'event_filter' is already "
                        "registered") != NULL,
            "%s", err);
  rs_registry_destroy(reg);
}

Test(plugin, example_operator_options_are_validated_in_a_graph) {
  char path[1024], yaml[2048], err[1024];
  plugin_path(path, sizeof path, "rs_example_operator");
  snprintf(yaml, sizeof yaml,
           "plugins: [ \"%s\" ]\n"
           "sources: [ { name: in } ]\n"
           "operators:\n"
           "  - { name: parse, type: parse, input: in }\n"
           "  - { name: f, type: event_filter, input: parse, min_rating: x }\n"
           "sinks: [ { name: out, input: f, topic: out } ]\n",
           path);
  rs_config_t *cfg;
  cr_assert_eq(rs_config_load_string("p.yaml", yaml, strlen(yaml), NULL, 0,
                                     &cfg, err, sizeof err),
               0, "%s", err);
  cr_assert_str_eq(cfg->plugins[0], path);
  rs_registry_t *reg;
  cr_assert_eq(rs_registry_new(&reg, err, sizeof err), 0);
  cr_assert_eq(rs_registry_load_plugin(reg, cfg->plugins[0], err, sizeof err),
               0, "%s", err);
  rs_graph_t *g = NULL;
  cr_assert_eq(rs_graph_build(cfg, reg, &g, err, sizeof err), RS_ECONFIG);
  cr_assert_str_eq(err, "p.yaml:5:62: operators 'f'.min_rating: expected a "
                        "number, got 'x'");
  rs_registry_destroy(reg);
  rs_config_destroy(cfg);
}

Test(plugin, wrong_abi_major_is_refused) {
  rs_registry_t *reg;
  char err[1024], path[1024];
  cr_assert_eq(rs_registry_new(&reg, err, sizeof err), 0);
  plugin_path(path, sizeof path, "rs_test_bad_abi");
  cr_assert_eq(rs_registry_load_plugin(reg, path, err, sizeof err), RS_EABI);
  char expected[2048];
  snprintf(expected, sizeof expected,
           "plugin %s: built for operator ABI 2.0, this engine speaks ABI "
           "1.x; rebuild it against this engine's headers",
           path);
  cr_assert_str_eq(err, expected);
  cr_assert_null(rs_registry_find(reg, "bad_abi"));
  rs_registry_destroy(reg);
}

Test(plugin, truncated_definition_is_refused) {
  rs_registry_t *reg;
  char err[1024], path[1024];
  cr_assert_eq(rs_registry_new(&reg, err, sizeof err), 0);
  plugin_path(path, sizeof path, "rs_test_truncated_def");
  cr_assert_eq(rs_registry_load_plugin(reg, path, err, sizeof err), RS_EABI);
  cr_assert(strstr(err, "struct_size 24 is smaller than the 80 bytes every "
                        "operator definition needs") != NULL,
            "%s", err);
  rs_registry_destroy(reg);
}

Test(plugin, missing_symbol_is_refused) {
  rs_registry_t *reg;
  char err[1024], path[1024];
  cr_assert_eq(rs_registry_new(&reg, err, sizeof err), 0);
  plugin_path(path, sizeof path, "rs_test_no_symbol");
  cr_assert_eq(rs_registry_load_plugin(reg, path, err, sizeof err), RS_EPLUGIN);
  cr_assert(strstr(err, "does not export the symbol 'recstream_operator'") !=
                NULL,
            "%s", err);
  rs_registry_destroy(reg);
}

Test(plugin, a_bare_file_name_is_in_the_current_directory) {
  /* Not searched for on the library path: "x.so" beside the config (or
   * given to --plugin) is ./x.so. */
  char dir[1024], cwd[1024], err[1024];
  snprintf(dir, sizeof dir, "%s/plugins", RS_BINARY_DIR);
  cr_assert(getcwd(cwd, sizeof cwd) != NULL);
  cr_assert_eq(chdir(dir), 0);
  rs_registry_t *reg;
  cr_assert_eq(rs_registry_new(&reg, err, sizeof err), 0);
  int rc =
      rs_registry_load_plugin(reg, "rs_example_operator.so", err, sizeof err);
  cr_assert_eq(chdir(cwd), 0);
  cr_assert_eq(rc, 0, "%s", err);
  cr_assert(rs_registry_find(reg, "event_filter") != NULL);
  rs_registry_destroy(reg);
}

Test(plugin, missing_file_is_refused) {
  rs_registry_t *reg;
  char err[1024];
  cr_assert_eq(rs_registry_new(&reg, err, sizeof err), 0);
  cr_assert_eq(
      rs_registry_load_plugin(reg, "/nonexistent/op.so", err, sizeof err),
      RS_EPLUGIN);
  cr_assert(strstr(err, "plugin /nonexistent/op.so: cannot load:") == err, "%s",
            err);
  rs_registry_destroy(reg);
}

Test(plugin, builtin_definitions_pass_the_same_checks) {
  rs_registry_t *reg;
  char err[1024];
  cr_assert_eq(rs_registry_new(&reg, err, sizeof err), 0, "%s", err);
  cr_assert_geq(rs_registry_count(reg), 1);
  for (size_t i = 0; i < rs_registry_count(reg); i++)
    cr_assert_eq(rs_operator_def_check(rs_registry_at(reg, i), "builtin", err,
                                       sizeof err),
                 0, "%s", err);
  rs_registry_destroy(reg);
}
