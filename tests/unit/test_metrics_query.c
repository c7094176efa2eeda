/* The interactive query's partitioner (engine/query_part.c): the one
 * kafka.properties.partitioner names, librdkafka's default otherwise, the
 * *_random ones hashing keys like their plain ones, an unknown name refused
 * with the names that exist. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "query_part.h"
#include "recstream/error.h"
#include "util.h"

static rs_config_t *load(const char *partitioner) {
  char yaml[512], err[512];
  snprintf(yaml, sizeof yaml,
           "app: q\n"
           "kafka: { brokers: embedded%s%s%s }\n"
           "sources: [ { name: in, topic: in } ]\n"
           "operators: [ { name: p, type: parse, input: in } ]\n"
           "sinks: [ { name: o, input: p, topic: o } ]\n",
           partitioner ? ", properties: { partitioner: " : "",
           partitioner ? partitioner : "", partitioner ? " }" : "");
  rs_config_t *cfg = NULL;
  cr_assert_eq(rs_config_load_string("q.yaml", yaml, strlen(yaml), NULL, 0,
                                     &cfg, err, sizeof err),
               0, "%s", err);
  return cfg;
}

Test(query_partitioner, default_and_each_named_one) {
  static const struct {
    const char *set, *name;
    rs_partitioner_fn want;
  } cases[] = {
      {NULL, "consistent_random", rd_kafka_msg_partitioner_consistent},
      {"consistent", "consistent", rd_kafka_msg_partitioner_consistent},
      {"consistent_random", "consistent_random",
       rd_kafka_msg_partitioner_consistent},
      {"murmur2", "murmur2", rd_kafka_msg_partitioner_murmur2},
      {"murmur2_random", "murmur2_random", rd_kafka_msg_partitioner_murmur2},
      {"fnv1a", "fnv1a", rd_kafka_msg_partitioner_fnv1a},
      {"fnv1a_random", "fnv1a_random", rd_kafka_msg_partitioner_fnv1a},
      {"random", "random", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    rs_config_t *cfg = load(cases[i].set);
    rs_partitioner_fn fn = (rs_partitioner_fn)1;
    const char *name = NULL;
    char err[256];
    cr_assert_eq(rs_query_partitioner(cfg, &fn, &name, err, sizeof err), 0,
                 "%s", err);
    cr_assert_str_eq(name, cases[i].name);
    cr_assert_eq(fn, cases[i].want, "%s", cases[i].name);
    rs_config_destroy(cfg);
  }
}

/* The hashes differ: a user the default places in one partition, murmur2
 * in another (what a query with the wrong partitioner would miss). */
Test(query_partitioner, murmur2_and_crc32_place_users_apart) {
  int differ = 0;
  for (int u = 0; u < 20; u++) {
    char k[8];
    int l = snprintf(k, sizeof k, "u%d", u);
    differ +=
        rd_kafka_msg_partitioner_murmur2(NULL, k, (size_t)l, 4, NULL, NULL) !=
        rd_kafka_msg_partitioner_consistent(NULL, k, (size_t)l, 4, NULL, NULL);
  }
  cr_assert_gt(differ, 0);
}

Test(query_partitioner, an_unknown_name_is_refused) {
  /* The config itself refuses it now (librdkafka's check, at its line)... */
  const char *yaml = "app: q\n"
                     "kafka: { brokers: embedded, properties: { partitioner: "
                     "round_robin } }\n"
                     "sources: [ { name: in, topic: in } ]\n"
                     "operators: [ { name: p, type: parse, input: in } ]\n"
                     "sinks: [ { name: o, input: p, topic: o } ]\n";
  rs_config_t *bad = NULL;
  char lerr[512];
  cr_assert_eq(rs_config_load_string("q.yaml", yaml, strlen(yaml), NULL, 0,
                                     &bad, lerr, sizeof lerr),
               RS_ECONFIG);
  cr_assert(strstr(lerr, "q.yaml:2:") == lerr &&
                strstr(lerr, "kafka.properties.partitioner: Invalid value"),
            "%s", lerr);
  /* ... and the query's own check still refuses what reaches it. */
  rs_config_t *cfg = load("murmur2");
  cr_assert_eq(cfg->kafka.n_props, 1);
  rs_free(cfg->kafka.prop_values[0]);
  cfg->kafka.prop_values[0] = rs_strdup("round_robin");
  rs_partitioner_fn fn;
  const char *name;
  char err[512];
  cr_assert_eq(rs_query_partitioner(cfg, &fn, &name, err, sizeof err),
               RS_ECONFIG);
  cr_assert_null(fn);
  cr_assert(strstr(err, "kafka.properties.partitioner=round_robin") &&
                strstr(err, "murmur2_random"),
            "%s", err);
  rs_config_destroy(cfg);
}
