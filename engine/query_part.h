/* Where the interactive query (GET /v1/recommendations/{user}) looks for a
 * key: the partition the producer of the source topic put it in, computed
 * with the partitioner named by kafka.properties.partitioner (librdkafka's
 * names; unset: librdkafka's default, consistent_random). The *_random
 * partitioners hash non-empty keys like their plain ones, and a query key
 * is never empty, so each maps to its hash function. */
#ifndef RS_QUERY_PART_H
#define RS_QUERY_PART_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef int32_t (*rs_partitioner_fn)(const rd_kafka_topic_t *rkt,
                                     const void *key, size_t keylen,
                                     int32_t partition_cnt, void *rkt_opaque,
                                     void *msg_opaque);

/* The partitioner of cfg (its name in *name, static or cfg's): 0 with *fn
 * set, or *fn NULL for "random" (a key can be in any partition); RS_ECONFIG
 * for a name librdkafka does not have. */
int rs_query_partitioner(const rs_config_t *cfg, rs_partitioner_fn *fn,
                         const char **name, char *errstr, size_t errstr_size);

/* With partitioner random a key can have an answer in several partitions
 * (each keeps its own state for it): the newest one is the user's latest.
 * The "event_time_ms" integer of a query answer (a JSON object of len
 * bytes), or INT64_MIN when it has none. */
int64_t rs_query_answer_time(const char *json, size_t len);

#endif
