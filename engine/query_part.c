/* The query's partitioner from the config. See query_part.h. */
#include "query_part.h"

#include <jansson.h>
#include <string.h>

#include "recstream/error.h"
#include "util.h"

int rs_query_partitioner(const rs_config_t *cfg, rs_partitioner_fn *fn,
                         const char **name, char *errstr, size_t errstr_size) {
  static const struct {
    const char *name;
    rs_partitioner_fn fn;
  } known[] = {
      {"consistent_random", rd_kafka_msg_partitioner_consistent},
      {"consistent", rd_kafka_msg_partitioner_consistent},
      {"murmur2_random", rd_kafka_msg_partitioner_murmur2},
      {"murmur2", rd_kafka_msg_partitioner_murmur2},
      {"fnv1a_random", rd_kafka_msg_partitioner_fnv1a},
      {"fnv1a", rd_kafka_msg_partitioner_fnv1a},
      {"random", NULL},
  };
  const char *want = "consistent_random";
  for (size_t i = 0; i < cfg->kafka.n_props; i++)
    if (!strcmp(cfg->kafka.prop_keys[i], "partitioner"))
      want = cfg->kafka.prop_values[i];
  *name = want;
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (!strcmp(known[i].name, want)) {
      *fn = known[i].fn;
      return 0;
    }
  *fn = NULL;
  return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                   "kafka.properties.partitioner=%s: not one of librdkafka's "
                   "partitioners (random, consistent, consistent_random, "
                   "murmur2, murmur2_random, fnv1a, fnv1a_random): the query "
                   "cannot tell which partition holds a user",
                   want);
}

int64_t rs_query_answer_time(const char *json, size_t len) {
  json_t *j = json_loadb(json, len, 0, NULL);
  json_t *t = json_object_get(j, "event_time_ms");
  int64_t ts = json_is_integer(t) ? (int64_t)json_integer_value(t) : INT64_MIN;
  json_decref(j);
  return ts;
}
