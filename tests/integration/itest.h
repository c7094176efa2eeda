/* Helpers for integration tests on the embedded broker (librdkafka's mock
 * cluster, real Kafka protocol on loopback): producing test input, running
 * an engine in a thread, reading a topic back, reading committed offsets.
 * Waits are on conditions with deadlines, never fixed sleeps. */
#ifndef RS_ITEST_H
#define RS_ITEST_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "graph.h"
#include "kafka.h"
#include "registry.h"
#include "runtime.h"

/* Starts a mock cluster and creates each topic with `partitions`. */
rs_mock_t *it_cluster(int brokers, int partitions, const char *const *topics);

/* The text of configs/NAME in the source tree (a static buffer, valid until
 * the next call), or NULL when it cannot be read whole. */
const char *it_config_text(const char *name);

/* Runs the recstream binary of this build with the printf-formatted
 * arguments; returns its exit status (128 + signal when killed, -1 when it
 * could not be started), its stdout and stderr in out. */
int it_cli(char *out, size_t out_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Produces n interactions keyed by user "u<k % users>" with the sequence
 * number k in the `page` field ("seq-<k>") and timestamp base+k. Every
 * bad_every-th record (0: none) is replaced by invalid bytes (kinds cycle:
 * truncated Avro, bytes that are not Avro). Returns the number of bad
 * records produced, or -1 on failure. format: "avro" or "json". */
long it_produce(const char *bootstrap, const char *topic, long n, int users,
                long bad_every, const char *format);

typedef struct it_msg {
  int32_t partition;
  int64_t offset;
  char *key;
  size_t key_len;
  char *val;
  size_t len;
  char *hdr_error; /* DLQ headers, NULL when absent */
  char *hdr_source_offset;
  char *hdr_source_topic;
  char *hdr_source_partition;
  char *hdr_src; /* exactly_once source header "topic/partition/offset/ord" */
} it_msg_t;

/* Reads a whole topic from the beginning until every partition is at its
 * end and at least `min` messages were read, or timeout_ms passes. */
size_t it_consume_all(const char *bootstrap, const char *topic, size_t min,
                      int timeout_ms, it_msg_t **out);
void it_msgs_free(it_msg_t *m, size_t n);

/* Committed offset of group for topic/partition (-1001 when none). */
int64_t it_committed(const char *bootstrap, const char *group,
                     const char *topic, int32_t partition);
/* High watermark of a partition. */
int64_t it_end_offset(const char *bootstrap, const char *topic,
                      int32_t partition);

/* An engine running in its own thread. */
typedef struct it_engine {
  rs_config_t *cfg;
  rs_registry_t *reg;
  rs_graph_t *graph;
  rs_engine_t *e;
  pthread_t thread;
  int rc;
  char err[2048];
} it_engine_t;

/* This test process's state directory (removed at exit). */
const char *it_state_dir(void);

/* Loads yaml with the sets, builds and starts the engine. 0 or rs_err_t.
 * Unless yaml or a set names state.dir, it is it_state_dir(). */
int it_engine_start(it_engine_t *t, const char *yaml, const char *const *sets,
                    size_t n_sets, int exit_at_end);
/* The same with rs_engine_opts_t.state_reset. */
int it_engine_start_opts(it_engine_t *t, const char *yaml,
                         const char *const *sets, size_t n_sets,
                         int exit_at_end, int state_reset);
/* Waits for the engine thread to end (stopping it first if stop != 0);
 * returns rs_engine_run's result. */
int it_engine_join(it_engine_t *t, int stop);
void it_engine_free(it_engine_t *t);

/* Polls cond(arg) every 20 ms until true or timeout_ms; returns cond's
 * last value. */
int it_wait(int (*cond)(void *), void *arg, int timeout_ms);

/* Sequence number from a decoded interaction's page "seq-<k>", or -1. */
long it_seq_of(const rs_interaction_t *it);

/* One HTTP/1.1 request to 127.0.0.1:port on a fresh connection (read until
 * the server closes it): status, content type, body (malloc'd; free it).
 * 0 or -1 (connection or protocol failure). */
typedef struct it_resp {
  int status;
  char ctype[128];
  char *body;
  size_t len;
} it_resp_t;
int it_http_req(int port, const char *method, const char *path, it_resp_t *r);
/* The value of the sample series (name{labels} as rendered) in the
 * engine's /metrics on port (thread-safe while the engine runs, unlike
 * rs_engine_counter); -1 when absent or the request failed. */
double it_metric(int port, const char *series);

#endif
