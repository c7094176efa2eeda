/* The dataflow runtime: one libuv loop that consumes the source topics,
 * pushes batches through the operator graph as plain function calls,
 * produces sink and dead-letter records, applies backpressure and commits
 * input offsets once every output derived from them is acknowledged
 * (at-least-once). See DESIGN.md section 2.
 */
#ifndef RS_RUNTIME_H
#define RS_RUNTIME_H

#include <stdint.h>

#include "config.h"
#include "graph.h"

typedef struct rs_engine rs_engine_t;

struct rs_engine_stats;

/* Replay (recstream replay): one source partition read over a fixed
 * range of offsets, assigned directly (outside the consumer group). */
typedef struct rs_replay_part {
  const char *topic;
  int32_t partition;
  int64_t start; /* first offset to process (the stored one wins) */
  int64_t end;   /* first offset not to process */
} rs_replay_part_t;

typedef struct rs_engine_opts {
  /* Stop (cleanly) once every assigned partition has reached its end. */
  int exit_at_end;
  /* Handle SIGINT/SIGTERM: the first drains and stops, a second one stops
   * without waiting for outstanding deliveries (nothing unacknowledged is
   * committed either way). */
  int handle_signals;
  /* The state directory was just wiped or restored on purpose (run
   * --reset-state / --restore-from): do not refuse to start when the store
   * holds no offsets for partitions the consumer group has committed. */
  int state_reset;
  /* Replay: read exactly these ranges (every source partition listed,
   * none other), in deterministic order, without joining the consumer
   * group or committing to it; stop once every range is processed. The
   * final checkpoint stores each partition's next offset with the state
   * (a later `run` on the same state continues there). */
  const rs_replay_part_t *replay;
  size_t n_replay;
  /* Write no output at all (sinks and dead letters): counted in
   * stats.withheld instead. */
  int suppress_output;
  /* Dead letters go to this topic instead of the configured ones. */
  const char *dlq_topic;
  /* Called on the loop thread every progress_ms (0: never). */
  void (*progress)(void *opaque, const struct rs_engine_stats *st);
  void *progress_opaque;
  uint64_t progress_ms;
  /* The records will come from files (rs_engine_run_feed): no wall clock
   * of their own, so host->idle_notify answers RS_ENOTSUP. */
  int files;
} rs_engine_opts_t;

typedef struct rs_engine_stats {
  uint64_t records_in; /* consumed from sources and processed */
  uint64_t refetched;  /* delivered again by the client after a pause;
                          skipped: nothing is processed twice */
  uint64_t
      records_out; /* produced to sinks (all acknowledged after a clean stop) */
  uint64_t dead_lettered; /* dead letters produced (acked after a clean stop) */
  uint64_t delivery_failures;
  uint64_t batches;
  uint64_t pauses;           /* backpressure episodes (draining stopped) */
  uint64_t partition_pauses; /* ...long enough to pause the partitions */
  uint64_t paused_ns;
  uint64_t commits;
  uint64_t queue_full_waits;
  int64_t max_inflight_bytes;
  uint64_t first_input_ns;     /* rs_now_ns() when the first record arrived */
  uint64_t last_ack_ns;        /* rs_now_ns() of the last delivery report */
  uint64_t checkpoints;        /* state checkpoints written */
  uint64_t checkpoint_ns;      /* time spent writing them (off the loop) */
  uint64_t checkpoint_wait_ns; /* request to end (acks and write too) */
  uint64_t suppressed;         /* exactly_once: regenerated outputs not sent
                                  again because the output topic had them */
  uint64_t scanned_outputs;    /* exactly_once: output records read at start */
  uint64_t ordering_giveups;   /* deterministic order: waits for a lagging
                                  partition that ran out (processing.max_idle) */
  uint64_t input_gaps;         /* input records skipped over (removed by
                                  retention before they were processed) */
  uint64_t run_start_ns;       /* rs_now_ns() when rs_engine_run() began */
  uint64_t prepare_ns; /* spent before consuming: stored offsets, checks,
                          the exactly_once output scan */
  uint64_t withheld;   /* outputs not written (opts.suppress_output) */
  uint64_t withheld_dead_letters; /* ...of them, dead letters */
  int interrupted; /* stopped by a signal or rs_engine_stop() before the
                      end (an exit_at_end run: before its end) */

  /* Checkpoints do not stop processing (runtime.c, "Checkpoints"): */
  uint64_t checkpoint_captures;    /* checkpoints taken (written or not) */
  uint64_t checkpoint_hold_ns;     /* loop time they took: capture (operator
                                      callbacks, pinning the dirty entries)
                                      and end (offsets, commit, unpinning) */
  uint64_t checkpoint_hold_max_ns; /* the longest such hold */
  uint64_t checkpoint_ack_wait_ns; /* capture to the acknowledgement of the
                                      last output produced before it */
  uint64_t checkpoint_pauses;      /* processing paused because the cache's
                                      spill grew past its early-checkpoint mark
                                      while a checkpoint waited (it resumes when
                                      that one completes) */
  uint64_t paused_revokes; /* revocations that found the input paused in the
                              client and resumed the revoked partitions */
} rs_engine_stats_t;

/* cfg and g are borrowed and must outlive the engine. Starts the embedded
 * broker when kafka.brokers is "embedded", creates the Kafka clients and
 * initialises every operator. Free with rs_engine_destroy(). */
int rs_engine_new(const rs_config_t *cfg, const rs_graph_t *g,
                  const rs_engine_opts_t *opts, rs_engine_t **out, char *errstr,
                  size_t errstr_size);
/* Runs until stopped. 0 after a clean stop; otherwise an rs_err_t with the
 * reason in errstr. Committed offsets never pass an unacknowledged output. */
int rs_engine_run(rs_engine_t *e, char *errstr, size_t errstr_size);
/* Asks a running engine to drain and stop. Safe from any thread. */
/* The stored positions of a files replay are recorded with the state as
 * offsets of this prefix + the source topic (':' cannot occur in a Kafka
 * topic name). */
#define RS_FEED_POSITIONS_PREFIX "files:"

/* One record of a replayed file (`recstream replay --files`). */
typedef struct rs_feed_rec {
  const void *key;
  size_t key_len;
  const void *value; /* as the source topic would hold it */
  size_t len;
  int64_t timestamp_ms;
} rs_feed_rec_t;

/* Instead of rs_engine_run(): processes records that do not come from
 * Kafka through source `src`. parts[p][0..counts[p]) are partition p's
 * records in order (their offsets 0, 1, ...), merged across partitions by
 * the rule of processing.order deterministic ((timestamp, partition) of
 * each partition's next record). State is checkpointed every
 * state.commit_interval and at the end with each partition's position in
 * the files (RS_FEED_POSITIONS_PREFIX, not an input offset: records from
 * files have no position in the topics); a second run on the same state
 * and the same records continues from there. Outputs, unless suppressed,
 * are produced at_least_once. rs_engine_stop() interrupts it. */
int rs_engine_run_feed(rs_engine_t *e, size_t src,
                       const rs_feed_rec_t *const *parts, const size_t *counts,
                       int32_t n_parts, char *errstr, size_t errstr_size);

void rs_engine_stop(rs_engine_t *e);
void rs_engine_get_stats(const rs_engine_t *e, rs_engine_stats_t *out);
/* Bootstrap servers the engine uses (the embedded broker's if any). */
const char *rs_engine_bootstrap(const rs_engine_t *e);
/* Reads an operator counter by operator and counter name (0 if absent). */
uint64_t rs_engine_counter(const rs_engine_t *e, const char *op,
                           const char *counter);
void rs_engine_destroy(rs_engine_t *e);
/* The port the http: endpoint listens on; 0 while it does not (http.port
 * unset, or rs_engine_run() has not bound it yet). Safe from any thread. */
int rs_engine_http_port(const rs_engine_t *e);
/* The graph the engine runs (borrowed). */
const rs_graph_t *rs_engine_graph(const rs_engine_t *e);

/* Interactive query (GET /v1/recommendations/{key}, DESIGN.md section 6):
 * the key is hashed to a partition of the source topic upstream of the
 * first operator (in graph order) whose def has `query`, with the
 * partitioner kafka.properties.partitioner names (query_part.h; default
 * librdkafka's consistent_random: CRC32 of the key) modulo the partition
 * count. The count is read from the cluster's metadata after each
 * assignment, on libuv's thread pool (never blocking the loop); until it
 * is known the answer is RS_QUERY_NO_METADATA. Only the instance that owns
 * that partition has the key's state. An operator split by an experiment
 * answers from the instance of the key's variant. */
typedef enum rs_query_status {
  RS_QUERY_OK = 0,      /* answered: json */
  RS_QUERY_UNKNOWN,     /* the partition is ours; nothing kept for the key */
  RS_QUERY_NOT_OWNED,   /* another instance owns the key's partition */
  RS_QUERY_NOT_READY,   /* not running, or no partition assigned yet */
  RS_QUERY_NO_OPERATOR, /* no operator of the graph answers queries */
  RS_QUERY_NO_METADATA  /* the source topic's partition count is unknown */
} rs_query_status_t;

typedef struct rs_query_answer {
  rs_query_status_t status;
  const char *op_name;     /* answering operator's node name (borrowed) */
  const char *op_type;     /* ...and type */
  const char *topic;       /* the source topic the key was hashed for */
  const char *variant;     /* the key's experiment variant (NULL: not split) */
  const char *partitioner; /* kafka.properties.partitioner or its default */
  int32_t partition;       /* the key's partition (-1: unknown) */
  int32_t n_partitions;
  int32_t *owned; /* partitions of `topic` assigned here (rs_free) */
  size_t n_owned;
  char *json; /* RS_QUERY_OK: the operator's JSON value (rs_free) */
  size_t json_len;
} rs_query_answer_t;

/* Answers a query on the loop thread (between batches). 0 with out->status
 * set, or an error (the operator's query failed, RS_ENOMEM) with the
 * reason in errstr. Free with rs_query_answer_free(). */
int rs_engine_query(rs_engine_t *e, const void *key, size_t key_len,
                    rs_query_answer_t *out, char *errstr, size_t errstr_size);
void rs_query_answer_free(rs_query_answer_t *a);

#endif
