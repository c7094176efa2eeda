/* Config loader and graph validation: good configs load with the values they
 * say; each class of mistake yields its own message with file:line:column. */
#include <criterion/criterion.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "graph.h"
#include "kafka.h"
#include "registry.h"

/* Loads yaml as "bad.yaml", builds the graph; returns rc, message in err. */
static int load(const char *yaml, const char *const *sets, size_t n_sets,
                char *err, size_t errsz) {
  rs_config_t *cfg = NULL;
  rs_registry_t *reg = NULL;
  rs_graph_t *g = NULL;
  err[0] = '\0';
  int rc = rs_config_load_string("bad.yaml", yaml, strlen(yaml), sets, n_sets,
                                 &cfg, err, errsz);
  if (!rc)
    rc = rs_registry_new(&reg, err, errsz);
  if (!rc)
    rc = rs_graph_build(cfg, reg, &g, err, errsz);
  rs_graph_destroy(g);
  rs_registry_destroy(reg);
  rs_config_destroy(cfg);
  return rc;
}

#define HEAD                                                                   \
  "app: t\n"                                                                   \
  "sources:\n"                                                                 \
  "  - { name: in, topic: in }\n"

#define TAIL                                                                   \
  "sinks:\n"                                                                   \
  "  - { name: out, input: parse, topic: out }\n"

#define PARSE                                                                  \
  "operators:\n"                                                               \
  "  - { name: parse, type: parse, input: in }\n"

Test(config, good_demo_config_loads) {
  char err[1024];
  char path[1024];
  snprintf(path, sizeof path, "%s/configs/demo.yaml", RS_SOURCE_DIR);
  rs_config_t *cfg = NULL;
  unsetenv("KAFKA_BROKERS");
  int rc = rs_config_load(path, NULL, 0, &cfg, err, sizeof err);
  cr_assert_eq(rc, 0, "%s", err);
  cr_assert_str_eq(cfg->app, "demo");
  cr_assert_str_eq(cfg->kafka.brokers, "embedded");
  cr_assert_eq(cfg->state.commit_interval_ms, 1000);
  cr_assert_eq(cfg->n_sources, 1);
  cr_assert_eq(cfg->n_operators, 2);
  cr_assert_str_eq(cfg->operators[0].dead_letter_topic, "interactions.dlq");
  cr_assert_str_eq(cfg->operators[1].type, "user_stats");
  cr_assert_eq(cfg->state.guarantee, RS_GUARANTEE_EXACTLY_ONCE);
  cr_assert_eq(cfg->sinks[0].format, 2 /* json */);
  rs_config_destroy(cfg);
}

/* Every config the project ships (the demo's, the examples the docs name)
 * loads and builds its graph, experiments included. */
Test(config, every_shipped_config_validates) {
  char pattern[1024], err[1024];
  snprintf(pattern, sizeof pattern, "%s/configs/*.yaml", RS_SOURCE_DIR);
  glob_t gl;
  cr_assert_eq(glob(pattern, 0, NULL, &gl), 0, "no %s", pattern);
  cr_assert_geq(gl.gl_pathc, 5, "only %zu configs", gl.gl_pathc);
  for (size_t i = 0; i < gl.gl_pathc; i++) {
    FILE *f = fopen(gl.gl_pathv[i], "r");
    cr_assert_not_null(f, "%s", gl.gl_pathv[i]);
    static char text[65536];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    cr_assert_lt(n, sizeof text - 1, "%s is too long for the test",
                 gl.gl_pathv[i]);
    text[n] = '\0';
    cr_assert_eq(load(text, NULL, 0, err, sizeof err), 0, "%s: %s",
                 gl.gl_pathv[i], err);
  }
  globfree(&gl);
}

Test(config, good_full_config_values_and_env) {
  char err[1024], path[1024];
  snprintf(path, sizeof path, "%s/tests/data/configs/good_full.yaml",
           RS_SOURCE_DIR);
  setenv("RS_TEST_BROKERS", "127.0.0.1:1234", 1);
  rs_config_t *cfg = NULL;
  int rc = rs_config_load(path, NULL, 0, &cfg, err, sizeof err);
  unsetenv("RS_TEST_BROKERS");
  cr_assert_eq(rc, 0, "%s", err);
  cr_assert_str_eq(cfg->kafka.brokers, "127.0.0.1:1234");
  cr_assert_str_eq(cfg->kafka.group_id, "full-group");
  cr_assert_str_eq(cfg->kafka.auto_offset_reset, "latest");
  cr_assert_eq(cfg->kafka.n_props, 2);
  cr_assert_str_eq(cfg->kafka.prop_keys[0], "statistics.interval.ms");
  cr_assert_eq(cfg->state.commit_interval_ms, 250);
  cr_assert_eq(cfg->processing.high_water_bytes, 1 << 20);
  cr_assert_eq(cfg->processing.low_water_bytes, 256 << 10);
  cr_assert_eq(cfg->sources[0].partitions, 3);
  cr_assert_eq(cfg->n_sinks, 2);
  rs_config_destroy(cfg);
}

Test(config, env_empty_is_named_as_such) {
  setenv("RS_TEST_EMPTY", "", 1);
  const char *y =
      "app: t\nkafka: { brokers: \"${RS_TEST_EMPTY}\" }\n" HEAD TAIL PARSE;
  rs_config_t *cfg = NULL;
  char err[512];
  cr_assert_eq(rs_config_load_string("x.yaml", y + 7, strlen(y + 7), NULL, 0,
                                     &cfg, err, sizeof err),
               RS_ECONFIG);
  unsetenv("RS_TEST_EMPTY");
  cr_assert(strstr(err, "environment variable RS_TEST_EMPTY is empty (set "
                        "it, or write ${RS_TEST_EMPTY:-default})"),
            "%s", err);
}

Test(config, env_default_used_when_unset) {
  unsetenv("RS_TEST_BROKERS");
  const char *y =
      "app: t\nkafka: { brokers: \"${RS_TEST_BROKERS:-h:1}\" }\n" HEAD TAIL
          PARSE;
  rs_config_t *cfg = NULL;
  char err[512];
  cr_assert_eq(rs_config_load_string("x.yaml", y + 7, strlen(y + 7), NULL, 0,
                                     &cfg, err, sizeof err),
               0, "%s", err);
  cr_assert_str_eq(cfg->kafka.brokers, "h:1");
  rs_config_destroy(cfg);
}

Test(config, http_is_off_by_default_and_reads_port_and_bind) {
  const char *y = HEAD PARSE TAIL;
  rs_config_t *cfg = NULL;
  char err[512];
  cr_assert_eq(rs_config_load_string("x.yaml", y, strlen(y), NULL, 0, &cfg, err,
                                     sizeof err),
               0, "%s", err);
  cr_assert_eq(cfg->http.port, -1);
  cr_assert_str_eq(cfg->http.bind, "127.0.0.1");
  rs_config_destroy(cfg);
  const char *y2 = "http: { port: 9464, bind: \"::1\" }\n" HEAD PARSE TAIL;
  cr_assert_eq(rs_config_load_string("x.yaml", y2, strlen(y2), NULL, 0, &cfg,
                                     err, sizeof err),
               0, "%s", err);
  cr_assert_eq(cfg->http.port, 9464);
  cr_assert_str_eq(cfg->http.bind, "::1");
  rs_config_destroy(cfg);
  const char *sets[] = {"http.port=0"};
  cr_assert_eq(rs_config_load_string("x.yaml", y, strlen(y), sets, 1, &cfg, err,
                                     sizeof err),
               0, "%s", err);
  cr_assert_eq(cfg->http.port, 0);
  rs_config_destroy(cfg);
}

Test(config, log_section_is_unset_by_default_and_reads_level_and_format) {
  const char *y = HEAD PARSE TAIL;
  rs_config_t *cfg = NULL;
  char err[512];
  cr_assert_eq(rs_config_load_string("x.yaml", y, strlen(y), NULL, 0, &cfg, err,
                                     sizeof err),
               0, "%s", err);
  cr_assert_null(cfg->log.level);
  cr_assert_null(cfg->log.format);
  rs_config_destroy(cfg);
  const char *y2 =
      "log: { level: \"warn,http=debug\", format: json }\n" HEAD PARSE TAIL;
  cr_assert_eq(rs_config_load_string("x.yaml", y2, strlen(y2), NULL, 0, &cfg,
                                     err, sizeof err),
               0, "%s", err);
  cr_assert_str_eq(cfg->log.level, "warn,http=debug");
  cr_assert_str_eq(cfg->log.format, "json");
  rs_config_destroy(cfg);
  const char *sets[] = {"log.format=text"};
  cr_assert_eq(rs_config_load_string("x.yaml", y2, strlen(y2), sets, 1, &cfg,
                                     err, sizeof err),
               0, "%s", err);
  cr_assert_str_eq(cfg->log.format, "text");
  rs_config_destroy(cfg);
}

Test(config, set_overrides_values_operators_and_properties) {
  const char *y = HEAD PARSE TAIL;
  const char *sets[] = {"state.commit_interval=5s", "kafka.brokers=b:9",
                        "kafka.properties.security.protocol=SSL",
                        "operators.parse.format=json"};
  rs_config_t *cfg = NULL;
  char err[512];
  cr_assert_eq(rs_config_load_string("x.yaml", y, strlen(y), sets, 4, &cfg, err,
                                     sizeof err),
               0, "%s", err);
  cr_assert_eq(cfg->state.commit_interval_ms, 5000);
  cr_assert_str_eq(cfg->kafka.brokers, "b:9");
  cr_assert_eq(cfg->kafka.n_props, 1);
  cr_assert_str_eq(cfg->kafka.prop_keys[0], "security.protocol");
  cr_assert_str_eq(cfg->kafka.prop_values[0], "SSL");
  rs_ypair_t *p = rs_ymap_find(cfg->operators[0].node, "format");
  cr_assert(p != NULL);
  cr_assert_str_eq(p->value->scalar, "json");
  rs_config_destroy(cfg);
}

/* A deliberate loop (sources' loopback): `in` is parsed and written to
 * topic `back`, which source `back` reads again (valid at_least_once). */
#define LOOPBACK                                                               \
  "app: t\n"                                                                   \
  "sources:\n"                                                                 \
  "  - { name: in, topic: in }\n"                                              \
  "  - { name: back, topic: back, loopback: true }\n"                          \
  "operators:\n"                                                               \
  "  - { name: parse, type: parse, input: in }\n"                              \
  "  - { name: again, type: parse, input: back }\n"                            \
  "sinks:\n"                                                                   \
  "  - { name: fed, input: parse, topic: back }\n"                             \
  "  - { name: out, input: again, topic: out }\n"

/* sessionize with idle_close (at_least_once, arrival order: valid). */
#define SESSIONS_IDLE                                                          \
  "operators:\n"                                                               \
  "  - { name: parse, type: parse, input: in }\n"                              \
  "  - { name: s, type: sessionize, input: parse, grace: 1m,\n"                \
  "      idle_close: 5m }\n"                                                   \
  "sinks:\n"                                                                   \
  "  - { name: out, input: s.sessions, topic: out }\n"

typedef struct bad_case {
  const char *name;
  const char *yaml;
  const char *set; /* optional --set */
  const char *expected;
} bad_case_t;

static const bad_case_t bad_cases[] = {
    {"yaml_syntax", "app: t\nsources: [ { name: in\n", NULL,
     "bad.yaml:3:1: YAML syntax: did not find expected ',' or '}' while "
     "parsing a flow mapping"},
    {"unknown_top_key", HEAD PARSE TAIL "sinkz: []\n", NULL,
     "bad.yaml:8:1: config: unknown key 'sinkz' (expected one of: app, kafka, "
     "state, processing, http, log, sources, operators, sinks, plugins, "
     "experiments)"},
    {"unknown_state_key",
     "state: { dir: /tmp/x, comit_interval: 1s }\n" HEAD PARSE TAIL, NULL,
     "bad.yaml:1:23: state: unknown key 'comit_interval' (expected one of: "
     "dir, commit_interval, guarantee, cache, block_cache, write_buffer, "
     "compression, sync)"},
    {"bad_duration", "state:\n  commit_interval: fast\n" HEAD PARSE TAIL, NULL,
     "bad.yaml:2:20: state.commit_interval: expected a duration like 250ms, "
     "30s, 5m or 2h, got 'fast'"},
    {"duration_out_of_range", "state:\n  commit_interval: 2h\n" HEAD PARSE TAIL,
     NULL,
     "bad.yaml:2:20: state.commit_interval: 2h is out of range [10ms, 1h]"},
    {"bad_size", "processing: { high_water: lots }\n" HEAD PARSE TAIL, NULL,
     "bad.yaml:1:27: processing.high_water: expected a size like 512, 64KiB "
     "or 1MiB, got 'lots'"},
    {"bad_enum", "state: { guarantee: sometimes }\n" HEAD PARSE TAIL, NULL,
     "bad.yaml:1:21: state.guarantee: expected one of at_least_once, "
     "exactly_once, transactional, got 'sometimes'"},
    {"unknown_http_key", "http: { port: 9000, host: x }\n" HEAD PARSE TAIL,
     NULL,
     "bad.yaml:1:21: http: unknown key 'host' (expected one of: port, bind)"},
    {"http_port_out_of_range", "http: { port: 70000 }\n" HEAD PARSE TAIL, NULL,
     "bad.yaml:1:15: http.port: 70000 is out of range [0, 65535]"},
    {"http_port_not_a_number", "http: { port: eighty }\n" HEAD PARSE TAIL, NULL,
     "bad.yaml:1:15: http.port: expected an integer, got 'eighty'"},
    {"http_bad_bind", "http: { port: 1, bind: localhost }\n" HEAD PARSE TAIL,
     NULL,
     "bad.yaml:1:24: http.bind: expected an IPv4 or IPv6 address like "
     "127.0.0.1 or ::1, got 'localhost'"},
    {"http_not_a_map", "http: 9000\n" HEAD PARSE TAIL, NULL,
     "bad.yaml:1:7: config.http: expected a mapping, got a value"},
    {"missing_sources", "app: t\n" PARSE TAIL, NULL,
     "bad.yaml:1:1: config: missing required key 'sources'"},
    {"unset_env",
     "kafka: { brokers: \"${RS_SURELY_UNSET_VAR}\" }\n" HEAD PARSE TAIL, NULL,
     "bad.yaml:1:19: environment variable RS_SURELY_UNSET_VAR is not set (set "
     "it, or write ${RS_SURELY_UNSET_VAR:-default})"},
    {"unknown_operator_type",
     HEAD "operators:\n  - { name: parse, type: parze, input: in }\n" TAIL,
     NULL,
     "bad.yaml:5:26: operators 'parse'.type: unknown operator type 'parze' "
     "(known: parse, user_stats, sessionize, mf_update, topn_emit, "
     "bandit_reward; plugins: add more)"},
    {"unknown_input",
     HEAD "operators:\n  - { name: parse, type: parse, input: inn }\n" TAIL,
     NULL,
     "bad.yaml:5:40: operators 'parse'.input: no source or operator named "
     "'inn'"},
    {"cycle",
     HEAD "operators:\n"
          "  - { name: parse, type: parse, input: p2 }\n"
          "  - { name: p2, type: parse, input: parse }\n" TAIL,
     NULL,
     "bad.yaml:5:5: operators 'parse': the graph has a cycle (p2 reads from "
     "parse, which depends on it): parse -> p2 -> parse"},
    {"no_path_to_sink",
     HEAD "operators:\n"
          "  - { name: parse, type: parse, input: in }\n"
          "  - { name: orphan, type: parse, input: parse }\n" TAIL,
     NULL,
     "bad.yaml:6:13: operators 'orphan': has no path to a sink, so its "
     "output would be discarded; add a sink or remove it"},
    {"duplicate_name",
     HEAD "operators:\n  - { name: in, type: parse, input: in }\n" TAIL, NULL,
     "bad.yaml:5:13: operators 'in': the name is already used by the source "
     "at line 3; names must be unique across sources, operators and sinks"},
    {"unknown_option",
     HEAD "operators:\n  - { name: parse, type: parse, input: in, fromat: "
          "json }\n" TAIL,
     NULL, NULL /* prefix checked below */},
    {"option_out_of_range",
     HEAD "operators:\n  - { name: parse, type: parse, input: in, "
          "max_record_bytes: 1GiB }\n" TAIL,
     NULL,
     "bad.yaml:5:62: operators 'parse'.max_record_bytes: 1GiB is out of range "
     "[64, 67108864]"},
    {"option_bad_enum",
     HEAD "operators:\n  - { name: parse, type: parse, input: in, format: xml "
          "}\n" TAIL,
     NULL,
     "bad.yaml:5:52: operators 'parse'.format: expected one of "
     "avro|confluent|json, got 'xml'"},
    {"sink_into_source",
     HEAD PARSE "sinks:\n  - { name: out, input: parse, topic: in }\n", NULL,
     "bad.yaml:7:39: sinks 'out'.topic: 'in' is also read by source 'in'; the "
     "pipeline would consume its own output (if that loop is deliberate, set "
     "loopback: true on the source)"},
    {"dead_letters_into_source",
     HEAD "operators:\n  - { name: parse, type: parse, input: in, "
          "dead_letter_topic: in }\n" TAIL,
     NULL,
     "bad.yaml:5:63: operators 'parse'.dead_letter_topic: 'in' is also read "
     "by source 'in'; dead letters would be consumed again (choose a topic "
     "no source reads)"},
    {"input_and_inputs",
     HEAD "operators:\n  - { name: parse, type: parse, input: in, inputs: "
          "[in] }\n" TAIL,
     NULL,
     "bad.yaml:5:44: operators 'parse': give either 'input' or 'inputs', not "
     "both"},
    {"duplicate_key", "app: t\napp: u\n" HEAD PARSE TAIL, NULL,
     "bad.yaml:2:1: duplicate key 'app' (first at line 1)"},
    {"section_wrong_type", "state: [1, 2]\n" HEAD PARSE TAIL, NULL,
     "bad.yaml:1:8: config.state: expected a mapping, got a list"},
    {"bad_set", HEAD PARSE TAIL, "commit_interval",
     "--set 'commit_interval': expected section.key=value"},
    {"set_unknown_operator", HEAD PARSE TAIL, "operators.nope.format=json",
     "--set 'operators.nope.format=json': no entry named 'nope' in "
     "'operators'"},
    {"sink_unknown_port",
     HEAD PARSE "sinks:\n  - { name: out, input: parse.late, topic: out }\n",
     NULL,
     "bad.yaml:7:25: sinks 'out'.input: operator 'parse' has no output port "
     "'late' (ports: out)"},
    {"duplicate_source_topic",
     "sources:\n  - { name: a, topic: t }\n  - { name: b, topic: t }\n"
     "operators:\n  - { name: parse, type: parse, input: a }\n"
     "  - { name: p2, type: parse, input: b }\n"
     "sinks:\n  - { name: out, input: parse, topic: out }\n"
     "  - { name: out2, input: p2, topic: out2 }\n",
     NULL,
     "bad.yaml:3:23: sources 'b'.topic: topic 't' is already read by source "
     "'a'; read it once and fan out from there"},
    {"pattern_topic",
     "sources:\n  - { name: in, topic: \"^in.*\" }\n" PARSE TAIL, NULL,
     "bad.yaml:2:24: sources 'in'.topic: '^in.*' looks like a pattern; "
     "sources name one topic each"},
    {"missing_type", HEAD "operators:\n  - { name: parse, input: in }\n" TAIL,
     NULL, "bad.yaml:5:5: operators 'parse': missing required key 'type'"},
    {"bad_name",
     HEAD "operators:\n  - { name: \"pa rse\", type: parse, "
          "input: in }\n" TAIL,
     NULL,
     "bad.yaml:5:13: operators[0].name: 'pa rse' may only contain letters, "
     "digits, '_' and '-'"},
    {"bad_log_level", "log: { level: \"warn,http=loud\" }\n" HEAD PARSE TAIL,
     NULL,
     "bad.yaml:1:15: log.level: expected error, warn, info or debug, got "
     "'loud' in 'warn,http=loud'"},
    {"bad_log_format", "log: { format: xml }\n" HEAD PARSE TAIL, NULL,
     "bad.yaml:1:16: log.format: expected text or json, got 'xml'"},
    {"unknown_log_key", "log: { level: info, colour: true }\n" HEAD PARSE TAIL,
     NULL,
     "bad.yaml:1:21: log: unknown key 'colour' (expected one of: level, "
     "format)"},
    {"bad_log_level_set", HEAD PARSE TAIL, "log.level=verbose",
     "bad.yaml: --set 'log.level=verbose': log.level: expected error, warn, "
     "info or debug, got 'verbose' in 'verbose'"},
    {"exp_weight_not_positive",
     HEAD PARSE TAIL
     "experiments:\n  - name: x\n    variants:\n"
     "      - { name: A, weight: 1 }\n      - { name: B, weight: -2 }\n",
     NULL,
     "bad.yaml:12:28: experiments 'x'.variants 'B'.weight: expected a number "
     "> 0 and <= 1e9, got '-2'"},
    {"exp_unknown_operator",
     HEAD PARSE TAIL "experiments:\n  - name: x\n    variants:\n"
                     "      - { name: A, weight: 1 }\n      - { name: B, "
                     "weight: 1, overrides: { nope: { format: json } } }\n",
     NULL,
     "bad.yaml:12:44: experiments 'x'.variants 'B'.overrides: no operator "
     "named 'nope' in this pipeline"},
    {"exp_unknown_option",
     HEAD PARSE TAIL "experiments:\n  - name: x\n    variants:\n"
                     "      - { name: A, weight: 1 }\n      - { name: B, "
                     "weight: 1, overrides: { parse: { fromat: json } } }\n",
     NULL,
     "bad.yaml:12:53: experiments 'x'.variants 'B'.overrides 'parse': unknown "
     "option 'fromat' for operator type 'parse' (expected one of: name, type, "
     "input(s), dead_letter_topic, format, schema, schema_ids, "
     "max_record_bytes, record)"},
    {"exp_bad_option_value",
     HEAD PARSE TAIL "experiments:\n  - name: x\n    variants:\n"
                     "      - { name: A, weight: 1 }\n      - { name: B, "
                     "weight: 1, overrides: { parse: { format: xml } } }\n",
     NULL,
     "bad.yaml:12:61: experiments 'x'.variants 'B'.overrides 'parse'.format: "
     "expected one of avro|confluent|json, got 'xml'"},
    {"exp_structural_override",
     HEAD PARSE TAIL "experiments:\n  - name: x\n    variants:\n"
                     "      - { name: A, weight: 1 }\n      - { name: B, "
                     "weight: 1, overrides: { parse: { input: in } } }\n",
     NULL,
     "bad.yaml:12:53: experiments 'x'.variants 'B'.overrides.parse: 'input' "
     "cannot differ between variants (only operator options can)"},
    {"exp_duplicate_variant",
     HEAD PARSE TAIL "experiments:\n  - name: x\n    variants:\n"
                     "      - { name: A, weight: 1 }\n      - { name: A, "
                     "weight: 1, overrides: { parse: { format: json } } }\n",
     NULL,
     "bad.yaml:12:17: experiments 'x'.variants[1].name: variant 'A' is named "
     "twice"},
    {"exp_one_variant",
     HEAD PARSE TAIL
     "experiments:\n  - name: x\n    variants:\n"
     "      - { name: A, weight: 1, overrides: { parse: { format: json } } }\n",
     NULL,
     "bad.yaml:11:7: experiments 'x'.variants: expected a list of at least two "
     "variants"},
    {"exp_splits_nothing",
     HEAD PARSE TAIL
     "experiments:\n  - name: x\n    variants:\n"
     "      - { name: A, weight: 1 }\n      - { name: B, weight: 3 }\n",
     NULL,
     "bad.yaml:9:5: experiments 'x': splits no operator (give 'overrides' in a "
     "variant or list 'operators')"},
    {"exp_missing_weight",
     HEAD PARSE TAIL "experiments:\n  - name: x\n    variants:\n"
                     "      - { name: A }\n      - { name: B, weight: 3 }\n",
     NULL,
     "bad.yaml:11:9: experiments 'x'.variants 'A': missing required key "
     "'weight'"},
    {"exp_unknown_key",
     HEAD PARSE TAIL "experiments:\n  - name: x\n    variants:\n"
                     "      - { name: A, weight: 1, overides: {} }\n      - { "
                     "name: B, weight: 3 }\n",
     NULL,
     "bad.yaml:11:31: experiments 'x'.variants 'A': unknown key 'overides' "
     "(expected one of: name, weight, overrides)"},
    {"exp_duplicate_experiment",
     HEAD PARSE TAIL "experiments:\n  - name: x\n    variants:\n"
                     "      - { name: A, weight: 1 }\n      - { name: B, "
                     "weight: 1, overrides: { parse: { format: json } } }\n"
                     "  - name: x\n    operators: [parse]\n    variants: [ { "
                     "name: A, weight: 1 }, { name: B, weight: 1 } ]\n",
     NULL, "bad.yaml:13:5: experiments 'x': the name is used twice"},
    {"exp_operator_in_two",
     HEAD PARSE TAIL "experiments:\n  - name: x\n    variants:\n"
                     "      - { name: A, weight: 1 }\n      - { name: B, "
                     "weight: 1, overrides: { parse: { format: json } } }\n"
                     "  - name: y\n    operators: [parse]\n    variants: [ { "
                     "name: A, weight: 1 }, { name: B, weight: 1 } ]\n",
     NULL,
     "bad.yaml:13:5: experiments 'y': operator 'parse' is already split by "
     "experiment 'x'; an operator takes part in one experiment"},
    {"exp_not_a_list", HEAD PARSE TAIL "experiments: { name: x }\n", NULL,
     "bad.yaml:8:14: experiments: expected a list of experiments"},
    /* Wall-clock options (RS_OPT_WALL_CLOCK: sessionize's idle_close) where
     * outputs must be a function of the input. */
    {"idle_close_exactly_once",
     "state: { guarantee: exactly_once }\n" HEAD SESSIONS_IDLE, NULL,
     "bad.yaml:8:19: "
     "operators 's'.idle_close: acts on wall-clock time, so outputs are not a "
     "function of the input, which state.guarantee exactly_once needs (a "
     "replay must regenerate the same outputs); leave idle_close at 0 or use "
     "at_least_once"},
    {"idle_close_deterministic",
     "processing: { order: deterministic }\n" HEAD SESSIONS_IDLE, NULL,
     "bad.yaml:8:19: "
     "operators 's'.idle_close: acts on wall-clock time, so a run cannot be "
     "reproduced as processing.order deterministic promises; leave idle_close "
     "at 0 or use processing.order arrival"},
    {"idle_close_set_exactly_once", HEAD SESSIONS_IDLE,
     "state.guarantee=exactly_once",
     "bad.yaml:7:19: "
     "operators 's'.idle_close: acts on wall-clock time, so outputs are not a "
     "function of the input, which state.guarantee exactly_once needs (a "
     "replay must regenerate the same outputs); leave idle_close at 0 or use "
     "at_least_once"},
    /* sources' loopback: only on a source a sink writes, not exactly_once,
     * a boolean; without it the loop is refused as sink_into_source. */
    {"loopback_without_a_sink_writing_it",
     "app: t\nsources:\n  - { name: in, topic: in, loopback: true }\n" PARSE
         TAIL,
     NULL,
     "bad.yaml:3:38: sources 'in'.loopback: no sink writes topic 'in'; "
     "loopback is only for a source that reads the pipeline's own output "
     "(remove it)"},
    {"loopback_exactly_once", "state: { guarantee: exactly_once }\n" LOOPBACK,
     NULL,
     "bad.yaml:5:42: sources 'back'.loopback: not available with "
     "state.guarantee exactly_once (a checkpoint keeps topic 'back''s input "
     "offsets and its output ends under the same name); use at_least_once"},
    {"loopback_set_exactly_once", LOOPBACK, "state.guarantee=exactly_once",
     "bad.yaml:4:42: sources 'back'.loopback: not available with "
     "state.guarantee exactly_once (a checkpoint keeps topic 'back''s input "
     "offsets and its output ends under the same name); use at_least_once"},
    {"loopback_not_a_bool",
     "app: t\nsources:\n  - { name: in, topic: in, loopback: maybe }\n" PARSE
         TAIL,
     NULL,
     "bad.yaml:3:38: sources 'in'.loopback: expected true or false (also "
     "yes/no, on/off, 1/0), got 'maybe'"},
    {"loopback_off_is_the_old_check", LOOPBACK, "sources.back.loopback=false",
     "bad.yaml:9:39: sinks 'fed'.topic: 'back' is also read by source 'back'; "
     "the pipeline would consume its own output (if that loop is deliberate, "
     "set loopback: true on the source)"},
    /* bandit_reward's bound on the arms kept per user (arms user). */
    {"bandit_user_arms_max_zero",
     HEAD "operators:\n  - { name: b, type: bandit_reward, input: mf, arms: "
          "user, user_arms_max: 0 }\n  - { name: mf, type: mf_update, "
          "input: in }\nsinks:\n  - { name: out, input: b, "
          "topic: out }\n",
     NULL,
     "bad.yaml:5:75: operators 'b'.user_arms_max: 0 is out of range [1, "
     "65536]"},
    {"bandit_user_arms_max_not_an_int",
     HEAD "operators:\n  - { name: b, type: bandit_reward, input: mf, arms: "
          "user, user_arms_max: lots }\n  - { name: mf, type: mf_update, "
          "input: in }\nsinks:\n  - { name: out, input: b, "
          "topic: out }\n",
     NULL,
     "bad.yaml:5:75: operators 'b'.user_arms_max: expected an integer, got "
     "'lots'"},
    /* One pipeline per file: what follows the first document is not
     * ignored. */
    {"second_document", HEAD PARSE TAIL "---\napp: second\nbogus: 1\n", NULL,
     "bad.yaml:8:1: a second YAML document: a config file holds one pipeline "
     "(one document)"},
    {"broken_after_document_end", HEAD PARSE TAIL "...\n{ [ :\n", NULL,
     "bad.yaml:9:1: YAML syntax after the first document: did not find "
     "expected <document start>"},
    /* kafka.properties are checked by validate, not first by run. */
    {"kafka_unknown_property",
     "kafka: { properties: { bogus.prop: 1 } }\n" HEAD PARSE TAIL, NULL,
     "bad.yaml:1:36: kafka.properties.bogus.prop: No such configuration "
     "property: \"bogus.prop\""},
    {"kafka_property_the_guarantee_fixes",
     "kafka:\n  properties:\n    enable.auto.commit: true\n" HEAD PARSE TAIL,
     NULL,
     "bad.yaml:3:25: kafka.properties.enable.auto.commit: recstream needs "
     "enable.auto.commit=false for its delivery guarantee; remove the "
     "property"},
    {"kafka_bad_property_value", HEAD PARSE TAIL, "kafka.properties.acks=some",
     "bad.yaml: --set 'kafka.properties.acks=some': kafka.properties.acks: "
     "Invalid value for configuration property \"request.required.acks\""},
    /* --set errors name the --set, not a line of the file. */
    {"set_names_itself", HEAD PARSE TAIL, "operators.parse.format=xml",
     "bad.yaml: --set 'operators.parse.format=xml': operators 'parse'.format: "
     "expected one of avro|confluent|json, got 'xml'"},
    {"set_empty_segment", HEAD PARSE TAIL, ".app=x",
     "--set '.app=x': expected section.key=value"},
    /* model: names the mf_update operator read (RS_OPT_PEER), checked by
     * validate rather than first by init(). */
    {"topn_model_names_nothing",
     HEAD PARSE "  - { name: t, type: topn_emit, input: parse, model: nosuch "
                "}\nsinks:\n  - { name: out, input: t, topic: out }\n",
     NULL,
     "bad.yaml:6:54: operators 't'.model: no operator named 'nosuch' in this "
     "config (it reads that operator's state; expected one of type mf_update)"},
    {"topn_model_names_a_parse",
     HEAD PARSE "  - { name: t, type: topn_emit, input: parse, model: parse "
                "}\nsinks:\n  - { name: out, input: t, topic: out }\n",
     NULL,
     "bad.yaml:6:54: operators 't'.model: 'parse' is a parse operator, not one "
     "of type mf_update"},
    {"bandit_model_names_itself",
     HEAD PARSE "  - { name: b, type: bandit_reward, input: parse, model: b "
                "}\nsinks:\n  - { name: out, input: b, topic: out }\n",
     NULL,
     "bad.yaml:6:58: operators 'b'.model: 'b' is this operator itself; name "
     "another operator of type mf_update"},
    /* A tag would be ignored (the key gives the type): refused. */
    {"yaml_core_tag",
     HEAD PARSE "  - { name: s, type: sessionize, input: parse, gap: !!int 5, "
                "grace: 1m }\n" TAIL,
     NULL,
     "bad.yaml:6:53: YAML tag '!!int' is not supported: a value's type comes "
     "from its key; write the value without a tag"},
    {"yaml_local_tag",
     "app: t\nsources:\n  - { name: in, topic: !mine in }\n" PARSE TAIL, NULL,
     "bad.yaml:3:24: YAML tag '!mine' is not supported: a value's type comes "
     "from its key; write the value without a tag"},
    {"yaml_merge_key",
     HEAD "operators:\n  - &p { name: parse, type: parse, input: in }\n"
          "  - { <<: *p, name: parse2 }\n" TAIL,
     NULL,
     "bad.yaml:6:7: merge keys ('<<') are not supported: write the keys out "
     "in each mapping (anchors and aliases of whole values work)"},
    /* kafka.properties may not restate what a config key says (the client
     * would follow the property, the engine's checks and logs the key), nor
     * turn off what the engine relies on. */
    {"kafka_property_group_id",
     "kafka:\n  group_id: g\n  properties:\n    group.id: other\n" HEAD PARSE
         TAIL,
     NULL,
     "bad.yaml:4:15: kafka.properties.group.id: set kafka.group_id instead; "
     "recstream sets group.id from that key, and its checks and logs go by "
     "the key"},
    {"kafka_property_bootstrap_set", HEAD PARSE TAIL,
     "kafka.properties.bootstrap.servers=h:9092",
     "bad.yaml: --set 'kafka.properties.bootstrap.servers=h:9092': "
     "kafka.properties.bootstrap.servers: set kafka.brokers instead; "
     "recstream sets bootstrap.servers from that key, and its checks and logs "
     "go by the key"},
    {"kafka_property_broker_list_alias",
     "kafka: { properties: { metadata.broker.list: \"h:9092\" } }\n" HEAD PARSE
         TAIL,
     NULL,
     "bad.yaml:1:46: kafka.properties.metadata.broker.list: set kafka.brokers "
     "instead; recstream sets bootstrap.servers (which metadata.broker.list "
     "is another name for) from that key, and its checks and logs go by the "
     "key"},
    {"kafka_property_auto_offset_reset",
     "kafka: { properties: { auto.offset.reset: latest } }\n" HEAD PARSE TAIL,
     NULL,
     "bad.yaml:1:43: kafka.properties.auto.offset.reset: set "
     "kafka.auto_offset_reset instead; recstream sets auto.offset.reset from "
     "that key, and its checks and logs go by the key"},
    {"kafka_property_partition_eof_off", HEAD PARSE TAIL,
     "kafka.properties.enable.partition.eof=false",
     "bad.yaml: --set 'kafka.properties.enable.partition.eof=false': "
     "kafka.properties.enable.partition.eof: recstream needs "
     "enable.partition.eof=true to know where each partition ends "
     "(--exit-at-end, processing.order deterministic, exactly_once's "
     "start-up scan); remove the property"},
    /* A YAML null is no value: not the text "~" or "null". */
    {"null_source_topic",
     "app: t\nsources:\n  - { name: in, topic: ~ }\n" PARSE TAIL, NULL,
     "bad.yaml:3:24: sources 'in'.topic: '~' is YAML's null, not a value; "
     "omit the key to get its default, or quote it (\"~\") for the text"},
    {"null_state_dir", "state:\n  dir: null\n" HEAD PARSE TAIL, NULL,
     "bad.yaml:2:8: state.dir: 'null' is YAML's null, not a value; omit the "
     "key to get its default, or quote it (\"null\") for the text"},
    {"null_group_id", "kafka: { group_id: NULL }\n" HEAD PARSE TAIL, NULL,
     "bad.yaml:1:20: kafka.group_id: 'NULL' is YAML's null, not a value; "
     "omit the key to get its default, or quote it (\"NULL\") for the text"},
    {"null_sink_topic",
     HEAD PARSE "sinks:\n  - { name: out, input: parse, topic: Null }\n", NULL,
     "bad.yaml:7:39: sinks 'out'.topic: 'Null' is YAML's null, not a value; "
     "omit the key to get its default, or quote it (\"Null\") for the text"},
    {"empty_operator_option",
     HEAD "operators:\n  - name: parse\n    type: parse\n    input: in\n"
          "    format:\n" TAIL,
     NULL,
     "bad.yaml:8:12: operators 'parse'.format: no value (YAML reads an empty "
     "value as null); write one, or omit the key to get its default"},
    {"null_list_item",
     HEAD
     "operators:\n  - { name: parse, type: parse, inputs: [in, ~] }\n" TAIL,
     NULL,
     "bad.yaml:5:46: operators 'parse'.inputs[1]: '~' is YAML's null, not a "
     "value; remove the item, or quote it (\"~\") for the text"},
    /* A default is literal text: a nested reference would come out as its
     * text. */
    {"env_nested_default",
     "kafka: { brokers: \"${RS_SURELY_UNSET_VAR:-${RS_OTHER:-h:1}}\" }\n" HEAD
         PARSE TAIL,
     NULL,
     "bad.yaml:1:19: '${' inside the default of ${RS_SURELY_UNSET_VAR:-...} "
     "in \"${RS_SURELY_UNSET_VAR:-${RS_OTHER:-h:1}}\": defaults do not nest "
     "(a default is literal text up to the first '}'); write the default "
     "out"},
    /* Topic names Kafka would refuse only when the pipeline first uses
     * them. */
    {"bad_sink_topic",
     HEAD PARSE "sinks:\n  - { name: out, input: parse, topic: \"bad "
                "topic/x\" }\n",
     NULL,
     "bad.yaml:7:39: sinks 'out'.topic: 'bad topic/x' is not a valid Kafka "
     "topic name (1 to 249 letters, digits, '.', '_' or '-'; not '.' or "
     "'..')"},
    {"bad_source_topic",
     "app: t\nsources:\n  - { name: in, topic: \"in:1\" }\n" PARSE TAIL, NULL,
     "bad.yaml:3:24: sources 'in'.topic: 'in:1' is not a valid Kafka topic "
     "name (1 to 249 letters, digits, '.', '_' or '-'; not '.' or '..')"},
    {"dot_dead_letter_topic",
     HEAD "operators:\n  - { name: parse, type: parse, input: in, "
          "dead_letter_topic: \"..\" }\n" TAIL,
     NULL,
     "bad.yaml:5:63: operators 'parse'.dead_letter_topic: '..' is not a valid "
     "Kafka topic name (1 to 249 letters, digits, '.', '_' or '-'; not '.' "
     "or '..')"},
    {"bad_topic_set", HEAD PARSE TAIL, "sinks.out.topic=a/b",
     "bad.yaml: --set 'sinks.out.topic=a/b': sinks 'out'.topic: 'a/b' is not "
     "a valid Kafka topic name (1 to 249 letters, digits, '.', '_' or '-'; "
     "not '.' or '..')"},
    {"kafka_property_transactional_id", HEAD PARSE TAIL,
     "kafka.properties.transactional.id=t1",
     "bad.yaml: --set 'kafka.properties.transactional.id=t1': "
     "kafka.properties.transactional.id: recstream's producer is not "
     "transactional (state.guarantee exactly_once holds by replay and "
     "idempotent output, docs/CONFIG.md); remove the property"},
    {"log_level_unknown_component",
     "log: { level: \"warn,parse=debug,pasre=debug\" }\n" HEAD PARSE TAIL, NULL,
     "bad.yaml:1:15: log.level: unknown component 'pasre' in "
     "'warn,parse=debug,pasre=debug' (components: engine, http, kafka, "
     "replay, state, and the operators: parse)"},
    {"log_level_unknown_component_set", HEAD PARSE TAIL,
     "log.level=kafka=debug,nosuch=info",
     "bad.yaml: --set 'log.level=kafka=debug,nosuch=info': log.level: unknown "
     "component 'nosuch' in 'kafka=debug,nosuch=info' (components: engine, "
     "http, kafka, replay, state, and the operators: parse)"},
    {"exp_weight_too_large",
     HEAD PARSE TAIL
     "experiments:\n  - name: x\n    variants:\n"
     "      - { name: A, weight: 1 }\n      - { name: B, weight: 2e9 }\n",
     NULL,
     "bad.yaml:12:28: experiments 'x'.variants 'B'.weight: expected a number "
     "> 0 and <= 1e9, got '2e9'"},
};

/* Tags that say only what the value already is pass. */
Test(config, plain_yaml_tags_pass) {
  char err[2048];
  int rc = load("app: !!str t\nsources: !!seq\n  - !!map { name: in, topic: "
                "! in }\n" PARSE TAIL,
                NULL, 0, err, sizeof err);
  cr_assert_eq(rc, 0, "%s", err);
}

Test(config, every_bad_config_has_its_exact_message) {
  char err[2048];
  size_t checked = 0;
  for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
    const bad_case_t *c = &bad_cases[i];
    const char *sets[1] = {c->set};
    int rc = load(c->yaml, sets, c->set ? 1 : 0, err, sizeof err);
    cr_expect_neq(rc, 0, "%s: loaded, but should fail", c->name);
    if (c->expected)
      cr_expect_str_eq(err, c->expected, "%s: got: %s", c->name, err);
    checked++;
  }
  cr_assert_geq(checked, 12);
}

Test(config, unknown_option_lists_the_valid_ones) {
  char err[2048];
  int rc = load(bad_cases[19].yaml, NULL, 0, err, sizeof err);
  cr_assert_eq(rc, RS_ECONFIG);
  cr_assert(
      strstr(err, "bad.yaml:5:44: operators 'parse': unknown option "
                  "'fromat' for operator type 'parse' (expected one "
                  "of: name, type, input(s), dead_letter_topic, format") == err,
      "%s", err);
}

Test(config, missing_file_names_the_file) {
  rs_config_t *cfg = NULL;
  char err[512];
  int rc =
      rs_config_load("/nonexistent/x.yaml", NULL, 0, &cfg, err, sizeof err);
  cr_assert_eq(rc, RS_ECONFIG);
  cr_assert_str_eq(err, "/nonexistent/x.yaml: cannot open: No such file or "
                        "directory");
}

Test(config, endless_input_stops_at_the_cap) {
  /* /dev/zero never ends: the 16 MiB cap must stop the read itself. */
  rs_config_t *cfg = NULL;
  char err[512];
  cr_assert_eq(rs_config_load("/dev/zero", NULL, 0, &cfg, err, sizeof err),
               RS_ECONFIG);
  cr_assert_str_eq(err, "/dev/zero: larger than 16 MiB; is it a config file?");
  cr_assert_null(cfg);
}

Test(config, empty_file_is_an_error) {
  rs_config_t *cfg = NULL;
  char err[512];
  cr_assert_eq(
      rs_config_load_string("e.yaml", "", 0, NULL, 0, &cfg, err, sizeof err),
      RS_ECONFIG);
  cr_assert_str_eq(err, "e.yaml:1:1: the file is empty (expected a pipeline "
                        "mapping)");
}

Test(config, alias_bomb_is_refused) {
  /* Each level doubles: 2^20 nodes when expanded. */
  char y[4096] = "a0: &a0 [x, x]\n";
  for (int i = 1; i <= 20; i++) {
    char line[64];
    snprintf(line, sizeof line, "a%d: &a%d [*a%d, *a%d]\n", i, i, i - 1, i - 1);
    strcat(y, line);
  }
  rs_config_t *cfg = NULL;
  char err[512];
  cr_assert_eq(rs_config_load_string("bomb.yaml", y, strlen(y), NULL, 0, &cfg,
                                     err, sizeof err),
               RS_ECONFIG);
  cr_assert(strstr(err, "more than 100000 nodes") != NULL, "%s", err);
}

Test(config, dot_output_names_every_node_and_edge) {
  const char *y = HEAD PARSE TAIL;
  rs_config_t *cfg = NULL;
  rs_registry_t *reg = NULL;
  rs_graph_t *g = NULL;
  char err[512];
  cr_assert_eq(rs_config_load_string("x.yaml", y, strlen(y), NULL, 0, &cfg, err,
                                     sizeof err),
               0);
  cr_assert_eq(rs_registry_new(&reg, err, sizeof err), 0);
  cr_assert_eq(rs_graph_build(cfg, reg, &g, err, sizeof err), 0, "%s", err);
  rs_buf_t b = {0};
  rs_graph_to_dot(g, &b);
  cr_assert(strstr(b.data, "digraph \"t\"") != NULL);
  cr_assert(strstr(b.data, "\"in\" -> \"parse\";") != NULL, "%s", b.data);
  cr_assert(strstr(b.data, "\"parse\" -> \"out\";") != NULL, "%s", b.data);
  rs_buf_free(&b);
  rs_graph_destroy(g);
  rs_registry_destroy(reg);
  rs_config_destroy(cfg);
}

Test(util, durations_and_sizes) {
  int64_t v;
  cr_assert_eq(rs_parse_duration_ms("250ms", &v), 0);
  cr_assert_eq(v, 250);
  cr_assert_eq(rs_parse_duration_ms("30s", &v), 0);
  cr_assert_eq(v, 30000);
  cr_assert_eq(rs_parse_duration_ms("5m", &v), 0);
  cr_assert_eq(v, 300000);
  cr_assert_eq(rs_parse_duration_ms("2h", &v), 0);
  cr_assert_eq(v, 7200000);
  cr_assert_eq(rs_parse_duration_ms("1.5s", &v), 0);
  cr_assert_eq(v, 1500);
  cr_assert_neq(rs_parse_duration_ms("-1s", &v), 0);
  cr_assert_neq(rs_parse_duration_ms("5 parsecs", &v), 0);
  cr_assert_neq(rs_parse_duration_ms("0.5ms", &v), 0);
  /* Plain decimals only: what strtod would also read is refused. */
  const char *odd[] = {" 1s", "+1s",   "0x10s", "1e3ms", "infs",
                       "nan", "1..5s", ".s",    "",      "s"};
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
    cr_expect_neq(rs_parse_duration_ms(odd[i], &v), 0, "'%s'", odd[i]);
  cr_assert_eq(rs_parse_duration_ms(".5s", &v), 0);
  cr_assert_eq(v, 500);
  cr_assert_eq(rs_parse_duration_ms("1 s", &v), 0); /* as documented */
  cr_assert_eq(v, 1000);
  /* Integers and numbers: leading white space is refused like trailing. */
  int64_t iv;
  double dv;
  const char *spaced[] = {" 5", "5 ", "\t5", "\n5", "", " "};
  for (size_t i = 0; i < sizeof spaced / sizeof spaced[0]; i++) {
    cr_expect_neq(rs_parse_int64(spaced[i], &iv), 0, "'%s'", spaced[i]);
    cr_expect_neq(rs_parse_double(spaced[i], &dv), 0, "'%s'", spaced[i]);
  }
  cr_assert_eq(rs_parse_int64("-5", &iv), 0);
  cr_assert_eq(iv, -5);
  cr_assert_eq(rs_parse_double("2.5", &dv), 0);
  cr_assert_eq(dv, 2.5);
  cr_assert_neq(rs_parse_size("0x10MiB", &v), 0);
  cr_assert_eq(rs_parse_size("64KiB", &v), 0);
  cr_assert_eq(v, 65536);
  cr_assert_eq(rs_parse_size("1MiB", &v), 0);
  cr_assert_eq(v, 1048576);
  cr_assert_eq(rs_parse_size("10kB", &v), 0);
  cr_assert_eq(v, 10000);
  cr_assert_neq(rs_parse_size("1XB", &v), 0);
  char buf[32];
  rs_format_duration(90000, buf, sizeof buf);
  cr_assert_str_eq(buf, "90s");
  rs_format_duration(1500, buf, sizeof buf);
  cr_assert_str_eq(buf, "1500ms");
}

/* idle_close is valid with at_least_once and arrival order (the defaults),
 * and 0 is valid with exactly_once. */
Test(config, idle_close_loads_where_outputs_may_depend_on_wall_clock) {
  char err[1024];
  cr_assert_eq(load(HEAD SESSIONS_IDLE, NULL, 0, err, sizeof err), 0, "%s",
               err);
  const char *off[] = {"operators.s.idle_close=0"};
  cr_assert_eq(load("state: { guarantee: exactly_once }\n" HEAD SESSIONS_IDLE,
                    off, 1, err, sizeof err),
               0, "%s", err);
}

Test(config, loopback_source_reads_its_own_sink) {
  char err[1024];
  rs_config_t *cfg = NULL;
  cr_assert_eq(load(LOOPBACK, NULL, 0, err, sizeof err), 0, "%s", err);
  cr_assert_eq(rs_config_load_string("l.yaml", LOOPBACK, strlen(LOOPBACK), NULL,
                                     0, &cfg, err, sizeof err),
               0, "%s", err);
  cr_assert_eq(cfg->sources[0].loopback, 0);
  cr_assert_eq(cfg->sources[1].loopback, 1);
  rs_config_destroy(cfg);
}

/* Booleans read alike in every section: the words operator options take
 * (true/false, yes/no, on/off, 1/0), and anything else is refused with
 * the same list. */
Test(config, booleans_take_the_same_words_everywhere) {
  static const struct {
    const char *word;
    int value;
  } words[] = {{"true", 1},  {"yes", 1}, {"on", 1},  {"1", 1},
               {"false", 0}, {"no", 0},  {"off", 0}, {"0", 0}};
  char err[1024], y[512];
  for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
    rs_config_t *cfg = NULL;
    snprintf(y, sizeof y, "state: { sync: %s }\n" HEAD PARSE TAIL,
             words[i].word);
    cr_assert_eq(rs_config_load_string("b.yaml", y, strlen(y), NULL, 0, &cfg,
                                       err, sizeof err),
                 0, "%s: %s", words[i].word, err);
    cr_assert_eq(cfg->state.sync, words[i].value, "%s", words[i].word);
    rs_config_destroy(cfg);
    /* An operator's boolean option takes the same word. */
    snprintf(y, sizeof y,
             HEAD "operators:\n  - { name: parse, type: parse, input: in }\n"
                  "  - { name: mf, type: mf_update, input: parse }\n"
                  "  - { name: t, type: topn_emit, input: mf, model: mf, "
                  "on_interaction: %s }\n"
                  "sinks:\n  - { name: out, input: t, topic: out }\n",
             words[i].word);
    cr_assert_eq(load(y, NULL, 0, err, sizeof err), 0, "%s: %s", words[i].word,
                 err);
  }
  cr_assert_neq(load("state: { sync: maybe }\n" HEAD PARSE TAIL, NULL, 0, err,
                     sizeof err),
                0);
  cr_assert_str_eq(err, "bad.yaml:1:16: state.sync: expected true or false "
                        "(also yes/no, on/off, 1/0), got 'maybe'");
  const char *op =
      HEAD "operators:\n  - { name: parse, type: parse, input: in }\n"
           "  - { name: mf, type: mf_update, input: parse }\n"
           "  - { name: t, type: topn_emit, input: mf, model: mf, "
           "on_interaction: "
           "maybe }\n"
           "sinks:\n  - { name: out, input: t, topic: out }\n";
  cr_assert_neq(load(op, NULL, 0, err, sizeof err), 0);
  cr_assert(strstr(err, "expected true or false (also yes/no, on/off, 1/0)"),
            "%s", err);
}

/* Quoted, ~ and null are text; --set values are text as given. */
Test(config, quoted_nulls_are_text) {
  const char *y =
      "kafka: { group_id: \"~\" }\nstate: { dir: 'null' }\n"
      "app: t\nsources:\n  - { name: in, topic: \"null\" }\n" PARSE TAIL;
  rs_config_t *cfg = NULL;
  char err[1024];
  cr_assert_eq(rs_config_load_string("x.yaml", y, strlen(y), NULL, 0, &cfg, err,
                                     sizeof err),
               0, "%s", err);
  cr_assert_str_eq(cfg->kafka.group_id, "~");
  cr_assert_str_eq(cfg->state.dir, "null");
  cr_assert_str_eq(cfg->sources[0].topic, "null");
  rs_config_destroy(cfg);
  const char *sets[] = {"kafka.group_id=~"};
  cr_assert_eq(rs_config_load_string("x.yaml", y, strlen(y), sets, 1, &cfg, err,
                                     sizeof err),
               0, "%s", err);
  cr_assert_str_eq(cfg->kafka.group_id, "~");
  rs_config_destroy(cfg);
}

/* A reference ends at the first '}'; a '}' after it is ordinary text
 * (docs/CONFIG.md). */
Test(config, env_brace_after_a_reference_is_text) {
  unsetenv("RS_SURELY_UNSET_VAR");
  const char *y =
      "kafka: { group_id: \"${RS_SURELY_UNSET_VAR:-g}}\" }\n" HEAD PARSE TAIL;
  rs_config_t *cfg = NULL;
  char err[1024];
  cr_assert_eq(rs_config_load_string("x.yaml", y, strlen(y), NULL, 0, &cfg, err,
                                     sizeof err),
               0, "%s", err);
  cr_assert_str_eq(cfg->kafka.group_id, "g}");
  rs_config_destroy(cfg);
}

Test(config, topic_names_follow_kafkas_rule) {
  char longest[251];
  memset(longest, 'a', 249);
  longest[249] = '\0';
  cr_assert(rs_topic_name_ok(longest));
  longest[249] = 'a';
  longest[250] = '\0';
  cr_assert_not(rs_topic_name_ok(longest));
  const char *good[] = {"a", "in.dlq", "A_b-9", "...", ".a"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    cr_expect(rs_topic_name_ok(good[i]), "'%s'", good[i]);
  const char *bad[] = {"", ".", "..", "a b", "a/b", "a:b", "t\xc3\xa9", "^a"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_expect_not(rs_topic_name_ok(bad[i]), "'%s'", bad[i]);
}

/* A source's topic defaults to its name, which may be longer than Kafka
 * allows: the message says where the topic came from. */
Test(config, defaulted_source_topic_is_checked_too) {
  char y[1024], name[260];
  memset(name, 'n', 250);
  name[250] = '\0';
  snprintf(y, sizeof y, "app: t\nsources:\n  - { name: %s }\n" PARSE TAIL,
           name);
  char err[2048];
  cr_assert_neq(load(y, NULL, 0, err, sizeof err), 0);
  cr_assert(strstr(err, "bad.yaml:3:13: sources '") == err, "%s", err);
  cr_assert(strstr(err, "is not a valid Kafka topic name (1 to 249 letters, "
                        "digits, '.', '_' or '-'; not '.' or '..') (a "
                        "source's topic defaults to its name)"),
            "%s", err);
}

/* The properties the engine sets from config keys or relies on come from
 * those keys in the client configuration; others (client.id here) are the
 * user's. */
Test(config, client_config_follows_the_keys) {
  const char *y = "kafka:\n  group_id: g1\n  auto_offset_reset: latest\n"
                  "  properties: { client.id: mine, enable.partition.eof: "
                  "true }\n" HEAD PARSE TAIL;
  rs_config_t *cfg = NULL;
  char err[1024];
  cr_assert_eq(rs_config_load_string("x.yaml", y, strlen(y), NULL, 0, &cfg, err,
                                     sizeof err),
               0, "%s", err);
  rd_kafka_conf_t *conf = NULL;
  cr_assert_eq(
      rs_kafka_conf_new(cfg, "h:1", RS_CLIENT_CONSUMER, &conf, err, sizeof err),
      0, "%s", err);
  const char *want[][2] = {{"bootstrap.servers", "h:1"},
                           {"group.id", "g1"},
                           {"enable.partition.eof", "true"},
                           {"client.id", "mine"}};
  char v[256];
  size_t n;
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    n = sizeof v;
    cr_assert_eq(rd_kafka_conf_get(conf, want[i][0], v, &n), RD_KAFKA_CONF_OK,
                 "%s", want[i][0]);
    cr_expect_str_eq(v, want[i][1], "%s", want[i][0]);
  }
  /* A topic-level property: in the default topic configuration. */
  rd_kafka_topic_conf_t *tc = rd_kafka_conf_get_default_topic_conf(conf);
  n = sizeof v;
  cr_assert_not_null(tc);
  cr_assert_eq(rd_kafka_topic_conf_get(tc, "auto.offset.reset", v, &n),
               RD_KAFKA_CONF_OK);
  cr_expect_str_eq(v, "largest"); /* librdkafka's name for latest */
  rd_kafka_conf_destroy(conf);
  rs_config_destroy(cfg);
}
