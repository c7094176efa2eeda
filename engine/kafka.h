/* librdkafka adapter: client configuration from a pipeline config, the
 * embedded broker (librdkafka's mock cluster), and translation of
 * rd_kafka_resp_err_t into rs_err_t. No other engine file builds an
 * rd_kafka_conf_t or interprets a librdkafka error code (the generator and
 * the tests, which have no pipeline config, configure their own clients). */
#ifndef RS_KAFKA_H
#define RS_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "config.h"

typedef enum rs_client_role {
  RS_CLIENT_CONSUMER = 0,
  RS_CLIENT_PRODUCER = 1
} rs_client_role_t;

/* Whether `kafka.properties` may hold key: value: not a property the engine
 * sets from a config key (bootstrap.servers and its alias
 * metadata.broker.list, group.id, auto.offset.reset: the message names the
 * key), not one the engine fixes to another value (enable.auto.commit,
 * enable.auto.offset.store, enable.partition.eof, enable.idempotence), and
 * accepted by librdkafka. RS_ECONFIG with why (a sentence without the key)
 * when not. */
int rs_kafka_check_property(const char *key, const char *value, char *why,
                            size_t why_size);

/* A client configuration: what the config's keys say and the engine's
 * defaults for the role, then kafka.properties from the config (the user's
 * word wins over the defaults; properties rs_kafka_check_property refuses
 * are refused here too), then the settings the engine depends on. Free with
 * rd_kafka_conf_destroy() or pass ownership to rd_kafka_new(). */
int rs_kafka_conf_new(const rs_config_t *cfg, const char *bootstrap,
                      rs_client_role_t role, rd_kafka_conf_t **out,
                      char *errstr, size_t errstr_size);
int rs_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                      char *errstr, size_t errstr_size);

int rs_err_from_kafka(rd_kafka_resp_err_t err);

/* The embedded broker. */
typedef struct rs_mock {
  rd_kafka_t *rk; /* owns the cluster */
  rd_kafka_mock_cluster_t *mc;
  const char *bootstraps; /* valid until rs_mock_destroy() */
} rs_mock_t;

int rs_mock_start(int n_brokers, rs_mock_t **out, char *errstr,
                  size_t errstr_size);
/* Creates the topic unless it exists. */
int rs_mock_create_topic(rs_mock_t *m, const char *topic, int partitions,
                         char *errstr, size_t errstr_size);
void rs_mock_destroy(rs_mock_t *m);

#endif
