/* librdkafka adapter (see kafka.h). */
#include "kafka.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

int rs_err_from_kafka(rd_kafka_resp_err_t err) {
  switch (err) {
  case RD_KAFKA_RESP_ERR_NO_ERROR:
    return 0;
  case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    return RS_ERANGE;
  case RD_KAFKA_RESP_ERR__INVALID_ARG:
  case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
  case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    return RS_EINVAL;
  case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
  case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
  case RD_KAFKA_RESP_ERR__FATAL:
    return RS_EDELIVERY;
  default:
    return RS_EKAFKA;
  }
}

int rs_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                      char *errstr, size_t errstr_size) {
  char kerr[512];
  if (rd_kafka_conf_set(conf, key, value, kerr, sizeof kerr) !=
      RD_KAFKA_CONF_OK)
    return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                     "kafka property %s=%s: %s", key, value, kerr);
  return 0;
}

/* Settings the engine rests on, with the reason it does. */
typedef struct fixed {
  const char *key, *value, *why;
} fixed_t;
static const fixed_t consumer_fixed[] = {
    {"enable.auto.commit", "false", "for its delivery guarantee"},
    {"enable.auto.offset.store", "false", "for its delivery guarantee"},
    {"enable.partition.eof", "true",
     "to know where each partition ends (--exit-at-end, processing.order "
     "deterministic, exactly_once's start-up scan)"},
};
static const fixed_t producer_fixed[] = {
    {"enable.idempotence", "true", "for its delivery guarantee"},
};

/* Properties the engine sets from a key of the config: given again in
 * kafka.properties they would win in the client while the engine's own
 * checks and logs go by the key. */
static const char *const from_key[][3] = {
    /* property, config key, the property the engine sets */
    {"bootstrap.servers", "kafka.brokers", "bootstrap.servers"},
    {"metadata.broker.list", "kafka.brokers", "bootstrap.servers"},
    {"group.id", "kafka.group_id", "group.id"},
    {"auto.offset.reset", "kafka.auto_offset_reset", "auto.offset.reset"},
};

/* Why kafka.properties may not hold key: value (a sentence without the
 * key), or 0 when the engine has nothing against it. */
static int engine_refuses(const char *key, const char *value, char *why,
                          size_t why_size) {
  for (size_t j = 0; j < RS_ARRAY_SIZE(from_key); j++)
    if (!strcmp(key, from_key[j][0])) {
      char name[128] = "";
      if (strcmp(key, from_key[j][2])) /* an alias */
        snprintf(name, sizeof name, " (which %s is another name for)", key);
      snprintf(why, why_size,
               "set %s instead; recstream sets %s%s from that key, and its "
               "checks and logs go by the key",
               from_key[j][1], from_key[j][2], name);
      return RS_ECONFIG;
    }
  if (!strcmp(key, "transactional.id")) {
    /* It would make the producer transactional, and the engine never
     * begins a transaction: every produce would fail. */
    snprintf(why, why_size,
             "recstream's producer is not transactional (state.guarantee "
             "exactly_once holds by replay and idempotent output, "
             "docs/CONFIG.md); remove the property");
    return RS_ECONFIG;
  }
  const fixed_t *f = NULL;
  for (size_t j = 0; j < RS_ARRAY_SIZE(consumer_fixed); j++)
    if (!strcmp(key, consumer_fixed[j].key))
      f = &consumer_fixed[j];
  for (size_t j = 0; j < RS_ARRAY_SIZE(producer_fixed); j++)
    if (!strcmp(key, producer_fixed[j].key))
      f = &producer_fixed[j];
  if (!f || !strcmp(value, f->value))
    return 0;
  snprintf(why, why_size, "recstream needs %s=%s %s; remove the property", key,
           f->value, f->why);
  return RS_ECONFIG;
}

int rs_kafka_check_property(const char *key, const char *value, char *why,
                            size_t why_size) {
  if (engine_refuses(key, value, why, why_size))
    return RS_ECONFIG;
  /* librdkafka's own check, on a configuration that is thrown away. */
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  int ok =
      rd_kafka_conf_set(conf, key, value, why, why_size) == RD_KAFKA_CONF_OK;
  rd_kafka_conf_destroy(conf);
  return ok ? 0 : RS_ECONFIG;
}

int rs_kafka_conf_new(const rs_config_t *cfg, const char *bootstrap,
                      rs_client_role_t role, rd_kafka_conf_t **out,
                      char *errstr, size_t errstr_size) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  int rc = rs_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr,
                             errstr_size);
  char client_id[256];
  snprintf(client_id, sizeof client_id, "recstream-%s", cfg->app);
  if (!rc)
    rc = rs_kafka_conf_set(conf, "client.id", client_id, errstr, errstr_size);
  if (!rc && role == RS_CLIENT_CONSUMER) {
    const char *defaults[][2] = {
        {"group.id", cfg->kafka.group_id},
        {"auto.offset.reset", cfg->kafka.auto_offset_reset},
        {"fetch.wait.max.ms", "100"},
        /* Kafka's pre-3.0 default: a restarted or failed instance's
         * partitions move on in 10 s rather than 45 s (heartbeats run on
         * librdkafka's thread, so a busy loop does not miss them). */
        {"session.timeout.ms", "10000"},
        {"queued.min.messages", "1000000"},
    };
    for (size_t i = 0; i < RS_ARRAY_SIZE(defaults) && !rc; i++)
      rc = rs_kafka_conf_set(conf, defaults[i][0], defaults[i][1], errstr,
                             errstr_size);
  } else if (!rc) {
    char msgs[32], kbytes[32];
    snprintf(msgs, sizeof msgs, "%lld",
             (long long)cfg->processing.max_inflight_records * 2 + 100000);
    snprintf(kbytes, sizeof kbytes, "%lld",
             (long long)(cfg->processing.high_water_bytes * 2 / 1024 + 65536));
    const char *defaults[][2] = {
        {"linger.ms", "5"},
        {"batch.num.messages", "10000"},
        {"queue.buffering.max.messages", msgs},
        {"queue.buffering.max.kbytes", kbytes},
    };
    for (size_t i = 0; i < RS_ARRAY_SIZE(defaults) && !rc; i++)
      rc = rs_kafka_conf_set(conf, defaults[i][0], defaults[i][1], errstr,
                             errstr_size);
  }
  const fixed_t *fixed =
      role == RS_CLIENT_CONSUMER ? consumer_fixed : producer_fixed;
  size_t n_fixed = role == RS_CLIENT_CONSUMER ? RS_ARRAY_SIZE(consumer_fixed)
                                              : RS_ARRAY_SIZE(producer_fixed);
  for (size_t i = 0; i < cfg->kafka.n_props && !rc; i++) {
    const char *k = cfg->kafka.prop_keys[i], *v = cfg->kafka.prop_values[i];
    char why[512];
    if (engine_refuses(k, v, why, sizeof why)) {
      rc = rs_seterr(errstr, errstr_size, RS_ECONFIG,
                     "%s: kafka.properties.%s=%s: %s", cfg->file, k, v, why);
      break;
    }
    /* Properties meant for one role are skipped on the other so that
     * librdkafka does not warn about them on every start. */
    if (role == RS_CLIENT_CONSUMER &&
        (!strncmp(k, "linger.ms", 9) || !strncmp(k, "batch.", 6) ||
         !strncmp(k, "queue.buffering", 15) || !strcmp(k, "acks") ||
         !strncmp(k, "compression", 11) || !strncmp(k, "message.", 8) ||
         !strcmp(k, "partitioner")))
      continue;
    if (role == RS_CLIENT_PRODUCER &&
        (!strcmp(k, "group.id") || !strncmp(k, "fetch.", 6) ||
         !strncmp(k, "session.timeout", 15) ||
         !strncmp(k, "partition.assignment", 20) ||
         !strncmp(k, "auto.offset", 11) || !strncmp(k, "max.poll", 8) ||
         !strncmp(k, "queued.", 7) || !strcmp(k, "isolation.level") ||
         !strncmp(k, "heartbeat", 9)))
      continue;
    char where[600];
    rc = rs_kafka_conf_set(conf, k, v, where, sizeof where);
    if (rc)
      rc = rs_seterr(errstr, errstr_size, RS_ECONFIG, "%s: %s", cfg->file,
                     where);
  }
  for (size_t j = 0; j < n_fixed && !rc; j++)
    rc = rs_kafka_conf_set(conf, fixed[j].key, fixed[j].value, errstr,
                           errstr_size);
  if (rc) {
    rd_kafka_conf_destroy(conf);
    return rc;
  }
  *out = conf;
  return 0;
}

int rs_mock_start(int n_brokers, rs_mock_t **out, char *errstr,
                  size_t errstr_size) {
  rs_mock_t *m = rs_calloc(1, sizeof(*m));
  if (!m)
    return RS_ENOMEM;
  char kerr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  /* The handle only hosts the cluster; keep it quiet. */
  rd_kafka_conf_set(conf, "log_level", "3", kerr, sizeof kerr);
  m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof kerr);
  if (!m->rk) {
    rd_kafka_conf_destroy(conf);
    rs_free(m);
    return rs_seterr(errstr, errstr_size, RS_EKAFKA,
                     "embedded broker: cannot create host handle: %s", kerr);
  }
  m->mc = rd_kafka_mock_cluster_new(m->rk, n_brokers);
  if (!m->mc) {
    rd_kafka_destroy(m->rk);
    rs_free(m);
    return rs_seterr(errstr, errstr_size, RS_EKAFKA,
                     "embedded broker: cannot start the mock cluster");
  }
  m->bootstraps = rd_kafka_mock_cluster_bootstraps(m->mc);
  *out = m;
  return 0;
}

int rs_mock_create_topic(rs_mock_t *m, const char *topic, int partitions,
                         char *errstr, size_t errstr_size) {
  rd_kafka_resp_err_t err =
      rd_kafka_mock_topic_create(m->mc, topic, partitions, 1);
  if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
    return rs_seterr(errstr, errstr_size, rs_err_from_kafka(err),
                     "embedded broker: cannot create topic %s: %s", topic,
                     rd_kafka_err2str(err));
  return 0;
}

void rs_mock_destroy(rs_mock_t *m) {
  if (!m)
    return;
  rd_kafka_mock_cluster_destroy(m->mc);
  rd_kafka_destroy(m->rk);
  rs_free(m);
}
