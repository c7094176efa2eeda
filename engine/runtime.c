/* The dataflow runtime (see runtime.h).
 *
 * Threads: everything here runs on one libuv loop thread. librdkafka's own
 * threads only wake us: when the consumer queue or the producer's main queue
 * goes from empty to non-empty, librdkafka calls on_queue_event
 * (rd_kafka_queue_cb_event_enable), which does a uv_async_send. We then
 * drain with zero-timeout calls. No timer polls Kafka; the timers are the
 * commit interval and the backpressure pause delay. (The fd-based
 * rd_kafka_queue_io_event_enable is not used: in librdkafka 2.0.2
 * rd_kafka_consume_batch_queue() does not re-arm its one-wakeup-per-read flag,
 * so wakeups were lost and the loop stalled until the next timer; measured with
 * tests/bench/bench_passthrough.)
 *
 * Delivery: every consumed run of records (one source partition) gets a
 * tracker; every record produced from it (sink or dead letter) carries the
 * tracker as its opaque and increments its pending count, the delivery
 * report decrements it. A partition's committable offset only advances over
 * a prefix of trackers that are all complete, so a commit never passes an
 * output that the broker has not acknowledged. A failed delivery (after
 * librdkafka's own retries) marks its tracker failed forever and stops the
 * engine.
 *
 * Backpressure: when in-flight output bytes or records pass the high-water
 * mark, draining stops at once; delivery reports bring them under the
 * low-water mark and draining resumes. While draining is stopped the client
 * fills its own bounded prefetch queue (queued.max.messages.kbytes) and then
 * stops fetching. If the pressure lasts longer than PAUSE_AFTER_MS the
 * assigned partitions are also paused in the client
 * (rd_kafka_pause_partitions), which releases that prefetched data. Short
 * episodes do not pause the client: with librdkafka 2.0.2 a pause drops the
 * prefetched records and a resume costs up to a second before fetching
 * starts again, which made brief pressure slow runs down by 20x.
 */
#include "runtime.h"
#include "experiments.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "codec.h"
#include "http.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "options.h"
#include "query_part.h"
#include "state/cache.h"
#include "state/store.h"
#include "state_cmd.h"
#include "util.h"

/* Header naming an output's source under exactly_once:
 * "<input topic>/<partition>/<offset>/<ordinal>". */
#define SRC_HEADER "recstream.src"

/* ------------------------------------------------------------- types */

struct rs_counter {
  struct rs_counter *next;
  char *name;
  char *help;
  uint64_t value;
};

typedef struct outbuf {
  rs_record_t *recs;
  size_t n, cap;
  /* host->port_wanted: an operator or a writing sink reads the port. */
  int wanted;
  uint32_t withheld_sinks; /* suppressed sinks reading it (withheld count) */
} outbuf_t;

typedef struct part part_t;

/* One input record as process_run() sees it: from a Kafka message or a
 * file (rs_engine_run_feed). */
typedef struct inrec {
  const void *key;
  size_t key_len;
  const void *value;
  size_t len;
  int64_t timestamp_ms;
  int64_t offset;
} inrec_t;

typedef struct tracker {
  struct tracker *next;
  part_t *part;
  int64_t end_offset; /* next offset to consume after this run */
  int32_t pending;    /* outputs not yet acknowledged */
  int failed;
  uint32_t generation; /* part->generation when created */
  uint32_t epoch;      /* checkpoint epoch of its outputs (produce()) */
} tracker_t;

struct part {
  size_t src;
  int32_t partition;
  int assigned;
  int64_t stored_offset; /* next offset in the last checkpoint (-1: none) */
  int64_t sup_until;     /* exactly_once: highest input offset with an
                            output already in an output topic (-1: none) */
  /* processing.order: deterministic: fetched, not yet processed. */
  rd_kafka_message_t **buf;
  int64_t *bts; /* their timestamps, read once */
  size_t bhead, bn, bcap;
  uint64_t empty_since; /* when it ran out of buffered records (0: not) */
  int gave_up;          /* the wait for it ran out (counted once) */
  int resumed;          /* assigned at its stored offset, nothing since */
  int eof;              /* an end-of-partition event came since the last run */
  int64_t eof_offset;   /* offset that event named (-1: none yet) */
  int64_t next_offset;  /* after the last record processed (-1: none yet) */
  uint32_t generation;  /* bumped on every assignment */
  int64_t end_offset;   /* replay: first offset not to process (-1: none) */
  int range_paused;     /* replay: paused in the client, past its range */
  int64_t committable;  /* -1: nothing to commit yet */
  int64_t committed;
  tracker_t *head, *tail;
  /* host->idle_notify: loop time (ms) of its last run or assignment, and
   * bit r set once registration r's idle batch went out since then. */
  uint64_t idle_last;
  uint64_t idle_fired;
};

/* exactly_once: one source position found in an output partition by the
 * scan at start (a set, keyed by every field). */
typedef struct pos {
  uint32_t used;
  uint32_t out; /* output topic index */
  int32_t out_partition;
  uint32_t src; /* source index */
  int32_t src_partition;
  uint32_t ordinal;
  int64_t offset;
} pos_t;

typedef struct posset {
  pos_t *slots;
  size_t cap, n; /* cap: a power of two */
} posset_t;

/* Ordinals: per run, outputs so far per (output topic, input offset). All
 * outputs of one input record are produced within the run that carries
 * it, so the count is the same however a replay batches the input, and
 * whatever order the operators emit in. */
typedef struct ordslot {
  uint32_t out_plus1; /* 0: empty */
  uint32_t count;
  int64_t offset;
} ordslot_t;

/* An output topic: a sink's or a dead-letter topic. */
typedef struct outtopic {
  char *name;
  rd_kafka_topic_t *rkt;
  int32_t n_parts;     /* exactly_once: from metadata (explicit partitioning) */
  int32_t n_track;     /* length of the arrays below */
  int64_t *acked_end;  /* highest acknowledged offset + 1 (-1: none) */
  int64_t *stored_end; /* the same, as of the last checkpoint */
  int64_t *ckpt_end;   /* the same, of the outputs produced before the
                          checkpoint in flight was captured */
  uint32_t idx;        /* in e->outs */
} outtopic_t;

struct rs_op {
  rs_engine_t *e;
  size_t node;
  const rs_operator_def_t *def;
  void *ctx;
  int inited;
  rs_counter_t *counters;
  rs_counter_t *c_in, *c_out, *c_dlq;
  rs_histogram_t proc_hist; /* process() time per batch (metrics.h) */
  uint64_t seed;
  int cf; /* column family of its state */
  /* experiments: the node's instances for variants 1.. (node_rt_t.op is
   * variant 0's), the variant served, and a copy of the host API whose
   * `variant` names it. */
  struct rs_op *vnext;
  const rs_experiment_t *x;
  uint32_t vidx;
  rs_host_api_t host;
  char cf_name[160];
  rs_record_t *vrecs; /* routing scratch */
  size_t vcap;
};

typedef struct node_rt {
  outbuf_t *out; /* one per output port */
  size_t n_ports;
  struct rs_op *op; /* operators */
  outtopic_t *sink; /* sinks */
  uint64_t produced;
  rs_lat_histogram_t e2e; /* sinks: input's timestamp to produce() */
} node_rt_t;

typedef enum { ST_INIT, ST_RUNNING, ST_STOPPING, ST_DONE } state_t;

typedef struct ckpt ckpt_t; /* a checkpoint in flight (checkpoints below) */

struct rs_engine {
  const rs_config_t *cfg;
  const rs_graph_t *g;
  rs_engine_opts_t opts;
  rs_mock_t *mock;
  char *bootstrap;

  rd_kafka_t *consumer, *producer;
  /* cq: the consumer's events (rebalances, commit results, errors), served
   * always; mq: records (and per-partition events such as end-of-partition)
   * of every assigned partition, forwarded there at assignment, drained
   * only when the engine may process. Apart, a rebalance is never stuck
   * behind prefetched records while processing waits (backpressure). */
  rd_kafka_queue_t *cq, *mq, *pq;

  uv_loop_t loop;
  uv_async_t cwake, pwake; /* "queue became non-empty", from librdkafka */
  uv_idle_t idle;
  uv_timer_t commit_timer;
  uv_async_t async;
  uv_signal_t sigint, sigterm;
  int loop_inited;
  int handles_open;
  int destroying;            /* rs_engine_destroy() is purging the producer */
  atomic_int loop_running;   /* async handle usable from other threads */
  uv_mutex_t stop_lock;      /* orders uv_async_send against its close */
  atomic_int stop_requested; /* rs_engine_stop() before the loop ran */

  node_rt_t *nodes;
  rs_host_api_t host;
  rs_codec_t *codec;
  rs_buf_t enc;
  rs_arena_t arena;

  rd_kafka_message_t **msgs;
  inrec_t *inrecs; /* process_run()'s view of a run: batch_size of them */
  size_t n_src_rkts;
  const rd_kafka_topic_t **src_rkts; /* consumer topic handle per source */

  part_t ***parts; /* [source][partition] */
  int32_t *n_parts;
  size_t n_assigned;

  outtopic_t **outs; /* sink and dead-letter topics */
  size_t n_outs;
  posset_t written; /* exactly_once: outputs found by the start scan */
  ordslot_t *ords;  /* exactly_once: ordinals of the current run */
  size_t ords_cap, ords_n;
  size_t *ords_used;

  rs_store_t *store;
  rs_cache_t *cache;
  int eo;                /* state.guarantee: exactly_once */
  int ordered;           /* processing.order: deterministic */
  ckpt_t *ck;            /* the checkpoint in flight (at most one) */
  int ckpt_again;        /* requested while one was in flight */
  int ck_paused;         /* paused: the spill grew behind the one in flight */
  uint32_t epoch;        /* checkpoint epoch of outputs produced now */
  int64_t epoch_outputs; /* ...of them not yet acknowledged */
  uint64_t ckpt_requested_ns; /* of the request not yet captured (0: none) */
  int savepoint_requested;
  int pid_written;
  char crash_name[64]; /* RECSTREAM_CRASH_POINT (tests only) */
  long crash_countdown;
  size_t buffered; /* deterministic order: records in part buffers */
  part_t **heap;   /* deterministic order: merge() heap (heap_cap slots) */
  tracker_t *spare_tracker; /* process_run(): one kept for the next run */
  size_t heap_cap;
  int64_t buffered_bytes;
  uv_timer_t order_timer;
  uv_signal_t sigusr1;
  uv_timer_t progress_timer;
  int replay; /* opts.replay: ranges assigned directly, no group */
  int feed;   /* rs_engine_run_feed(): records from files, no consumer */
  uint64_t feed_last_progress;
  size_t feed_src;
  char feed_topic[300]; /* RS_FEED_POSITIONS_PREFIX + the source topic */

  /* Current run. */
  tracker_t *cur;
  size_t cur_src;
  int32_t cur_partition;
  struct rs_op *cur_op;

  int64_t inflight_records, inflight_bytes;
  int paused;       /* backpressure: not draining */
  int input_paused; /* partitions paused in the client too */
  uint64_t paused_since;
  uv_timer_t pause_timer;
  state_t state;
  int signals;
  int err;
  char errstr[1024];
  rs_engine_stats_t stats;
  rs_http_t *http;      /* http: endpoint (NULL: off) */
  atomic_int http_port; /* its bound port (0: not listening) */
  /* Interactive queries: an operator's query() runs (no state writes);
   * the query source's partition count (-1: unknown), read off the loop
   * after each assignment (query_refresh()): one read in flight at a
   * time, again when an assignment came during it. */
  int querying;
  int32_t query_nparts;
  int query_reading, query_stale;
  /* Metrics: event time to output handed to the producer, and produce()
   * to the broker's acknowledgement (metrics.h). */
  rs_lat_histogram_t ack_hist;
  const inrec_t *run_msgs; /* the current run's inputs, by offset */
  size_t run_n;
  /* host->idle_notify registrations (at most 64: a bit each in
   * part_t.idle_fired) and the one timer that serves them all. */
  struct idle_reg *idle_regs;
  size_t n_idle;
  uv_timer_t idle_timer;
  /* idle_hold(): holds in force (checkpoint barrier, backpressure, revoke
   * flush) and the loop time the first began. */
  int idle_holds;
  uint64_t idle_hold_since;
};

/* ------------------------------------------------------------ helpers */

static void fail(rs_engine_t *e, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void begin_stop(rs_engine_t *e);
static outtopic_t *find_out(const rs_engine_t *e, const char *name);
static void reset_idle_clocks(rs_engine_t *e);
static void idle_touch(rs_engine_t *e, part_t *p);
static void idle_hold(rs_engine_t *e, int hold);

static void fail(rs_engine_t *e, int err, const char *fmt, ...) {
  if (!e->err) {
    e->err = err;
    char msg[sizeof e->errstr]; /* fmt's arguments may be e->errstr */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(e->errstr, msg, sizeof msg);
    rs_log(RS_LOG_ERROR, "engine", "%s", e->errstr);
  }
  begin_stop(e);
}

static int outbuf_push(outbuf_t *b, const rs_record_t *r) {
  if (rs_grow((void **)&b->recs, &b->cap, b->n + 1, sizeof(*b->recs)))
    return RS_ENOMEM;
  b->recs[b->n++] = *r;
  return 0;
}

static part_t *get_part(rs_engine_t *e, size_t src, int32_t partition) {
  if (partition < 0)
    return NULL;
  if (partition >= e->n_parts[src]) {
    int32_t n = partition + 1 > 2 * e->n_parts[src] ? partition + 1
                                                    : 2 * e->n_parts[src];
    part_t **np = rs_realloc(e->parts[src], (size_t)n * sizeof(*np));
    if (!np)
      return NULL;
    memset(np + e->n_parts[src], 0,
           (size_t)(n - e->n_parts[src]) * sizeof(*np));
    e->parts[src] = np;
    e->n_parts[src] = n;
  }
  part_t *p = e->parts[src][partition];
  if (!p) {
    p = rs_calloc(1, sizeof(*p));
    if (!p)
      return NULL;
    p->src = src;
    p->partition = partition;
    p->committable = p->committed = -1;
    p->eof_offset = p->next_offset = -1;
    p->stored_offset = p->sup_until = -1;
    p->end_offset = -1;
    e->parts[src][partition] = p;
  }
  return p;
}

static ssize_t source_of_topic(const rs_engine_t *e, const char *topic) {
  for (size_t i = 0; i < e->cfg->n_sources; i++)
    if (!strcmp(e->cfg->sources[i].topic, topic))
      return (ssize_t)i;
  return -1;
}

/* Pops completed trackers; advances committable offsets. */
static void advance(rs_engine_t *e) {
  for (size_t s = 0; s < e->cfg->n_sources; s++)
    for (int32_t i = 0; i < e->n_parts[s]; i++) {
      part_t *p = e->parts[s][i];
      while (p && p->head && p->head->pending == 0 && !p->head->failed) {
        tracker_t *t = p->head;
        if (t->generation == p->generation)
          p->committable = t->end_offset;
        p->head = t->next;
        if (!p->head)
          p->tail = NULL;
        rs_free(t);
      }
    }
}

static void commit_offsets(rs_engine_t *e, int sync) {
  if (e->replay)
    return; /* outside the group: the position lives in the state only */
  if (e->err)
    return; /* a failed delivery may lie below what looks committable */
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
  for (size_t s = 0; s < e->cfg->n_sources; s++)
    for (int32_t i = 0; i < e->n_parts[s]; i++) {
      part_t *p = e->parts[s][i];
      if (!p || !p->assigned)
        continue;
      /* With state, never past the stored offset: the group's offset and
       * the state's stay together, as when checkpoints stopped processing
       * (committable may be ahead: outputs after the last checkpoint's
       * capture that are acknowledged already). */
      int64_t c = p->committable;
      if (e->store && c > p->stored_offset)
        c = p->stored_offset;
      if (c > p->committed)
        rd_kafka_topic_partition_list_add(l, e->cfg->sources[s].topic, i)
            ->offset = c;
    }
  if (l->cnt > 0) {
    rd_kafka_resp_err_t err = rd_kafka_commit(e->consumer, l, !sync);
    if (err) {
      char np[16];
      snprintf(np, sizeof np, "%d", l->cnt);
      const char *kv[] = {"error", rd_kafka_err2name(err), "partitions", np,
                          NULL};
      rs_log_kv(RS_LOG_WARN, "engine", kv,
                "offset commit failed: %s (retried at the next commit; "
                "nothing is lost, a restart before it reprocesses from the "
                "last committed offsets)",
                rd_kafka_err2str(err));
    } else {
      for (int k = 0; k < l->cnt; k++) {
        ssize_t s = source_of_topic(e, l->elems[k].topic);
        part_t *p =
            s >= 0 ? get_part(e, (size_t)s, l->elems[k].partition) : NULL;
        if (p)
          p->committed = l->elems[k].offset;
      }
      e->stats.commits++;
    }
  }
  rd_kafka_topic_partition_list_destroy(l);
}

/* ------------------------------------------------------- checkpoints */

/* Fault injection for the crash harness (tests/crash): with
 * RECSTREAM_CRASH_POINT=<name>:<n> in the environment the process kills
 * itself with SIGKILL the n-th time it passes the point named <name>
 * (checkpoint_before_write: the batch is staged, nothing written;
 * checkpoint_after_write: state and offsets written, Kafka not yet
 * committed). Read once at start; costs a compare per checkpoint. */
static void crash_point(rs_engine_t *e, const char *name) {
  if (!e->crash_name[0] || strcmp(e->crash_name, name))
    return;
  if (--e->crash_countdown == 0) {
    rs_log(RS_LOG_WARN, "engine", "RECSTREAM_CRASH_POINT: killing myself at %s",
           name);
    raise(SIGKILL);
  }
}

/* Checkpoints (DESIGN.md section 3), asynchronous: processing does not wait
 * for one (except the spill pause, see ck_paused).
 *
 *  1. Capture, on the loop between batches (never during process()), at a
 *     point T: the operators' checkpoint() callbacks run, the next input
 *     offset of every partition is taken, and the cache marks every dirty
 *     entry clean but pinned and copies what it spilled into the
 *     checkpoint's own RocksDB batch (state/store.h,
 *     rs_store_checkpoint_stage; the pinned entries are added to the batch
 *     by the write, off the loop, from their blocks, which the cache does
 *     not change meanwhile: copy on write). Outputs produced from here on
 *     belong to the next epoch (trackers carry the epoch of their outputs);
 *     the checkpoint waits for the delivery reports of its own epoch and the
 *     earlier ones only (ckpt_t.unacked), which new outputs never raise.
 *  2. Acknowledged: every output produced before T has a successful
 *     delivery report. exactly_once adds each output partition's
 *     acknowledged end at T, learned from those reports (ckpt_end). The
 *     batch goes to libuv's thread pool (uv_queue_work).
 *  3. Written: on the loop again, the stored offsets and stats are
 *     updated, the cache unpins, and the input offsets of T are committed
 *     to Kafka.
 * At most one checkpoint is in flight; a request meanwhile is taken when
 * it ends. Revocation, shutdown, the file feed and savepoints finish the
 * one in flight synchronously first (write_checkpoint). A failed
 * delivery stops the engine as before: the checkpoint is then not written
 * if it still waits for acknowledgements (the previous one stays). */
typedef enum { CK_ACKS, CK_WRITING, CK_DONE } ck_phase_t;

struct ckpt {
  rs_engine_t *e;
  rs_store_staged_t *st;
  rs_offset_t *offs; /* inputs at T, then (exactly_once) output ends */
  size_t n, cap;
  uint32_t epoch;  /* outputs of this epoch and before count here */
  int64_t unacked; /* ...of them not yet acknowledged */
  ck_phase_t phase;
  int sync_commit; /* commit to Kafka synchronously when done */
  int written;     /* the batch held something and was written */
  int queued;      /* in the thread pool: after_write() frees it */
  int finished;    /* completed on the loop before after_write() ran */
  uint64_t t_req, t_cap, t_acked, write_ns;
  uv_work_t req;
  uv_mutex_t mu;
  uv_cond_t cv;
  int worker_done; /* under mu */
  int rc;
  char err[512];
};

static void ck_free(ckpt_t *ck) {
  if (!ck)
    return;
  rs_store_staged_free(ck->st);
  rs_free(ck->offs);
  uv_cond_destroy(&ck->cv);
  uv_mutex_destroy(&ck->mu);
  rs_free(ck);
}

static int ck_add(ckpt_t *ck, const char *topic, int32_t partition,
                  int64_t next) {
  if (rs_grow((void **)&ck->offs, &ck->cap, ck->n + 1, sizeof(*ck->offs)))
    return RS_ENOMEM;
  ck->offs[ck->n++] = (rs_offset_t){
      .topic = topic, .partition = partition, .next_offset = next};
  return 0;
}

static void ck_hold(rs_engine_t *e, uint64_t ns) {
  e->stats.checkpoint_hold_ns += ns;
  if (ns > e->stats.checkpoint_hold_max_ns)
    e->stats.checkpoint_hold_max_ns = ns;
}

/* Step 1. 0 with e->ck set, or an error (the engine is failed). */
static int capture(rs_engine_t *e) {
  uint64_t t0 = rs_now_ns();
  /* Operators write what they keep in memory first (their checkpoint()
   * callback): those writes join this checkpoint's batch. */
  for (size_t i = 0; i < e->g->n; i++)
    for (struct rs_op *op = e->nodes[i].op; op; op = op->vnext) {
      if (!op->inited || !RS_OPDEF_HAS(op->def, checkpoint))
        continue;
      e->cur_op = op;
      int rc = op->def->checkpoint(op, op->ctx);
      e->cur_op = NULL;
      if (rc < 0) {
        fail(e, rc,
             "operator '%s' (%s): checkpoint() failed: %s; stopping (the "
             "previous checkpoint is intact)",
             e->g->nodes[i].name, op->def->name, rs_strerror(rc));
        return rc;
      }
    }
  ckpt_t *ck = rs_calloc(1, sizeof(*ck));
  if (!ck || uv_mutex_init(&ck->mu)) {
    rs_free(ck);
    fail(e, RS_ENOMEM, "checkpoint: out of memory");
    return RS_ENOMEM;
  }
  if (uv_cond_init(&ck->cv)) {
    uv_mutex_destroy(&ck->mu);
    rs_free(ck);
    fail(e, RS_ENOMEM, "checkpoint: out of memory");
    return RS_ENOMEM;
  }
  ck->e = e;
  int rc = 0;
  for (size_t s = 0; !rc && s < e->cfg->n_sources; s++)
    for (int32_t i = 0; !rc && i < e->n_parts[s]; i++) {
      part_t *p = e->parts[s][i];
      if (p && p->assigned && p->next_offset >= 0 &&
          p->next_offset != p->stored_offset)
        rc = ck_add(ck, e->cfg->sources[s].topic, i, p->next_offset);
    }
  /* Files (rs_engine_run_feed): each partition's position in the files,
   * under a name no Kafka topic can have, so a resumed replay of the same
   * files continues there. */
  for (int32_t i = 0; !rc && e->feed && i < e->n_parts[e->feed_src]; i++) {
    part_t *p = e->parts[e->feed_src][i];
    if (p && p->next_offset >= 0 && p->next_offset != p->stored_offset)
      rc = ck_add(ck, e->feed_topic, i, p->next_offset);
  }
  if (!rc)
    rc =
        rs_store_checkpoint_stage(e->store, e->cache, ck->offs, ck->n, &ck->st);
  if (rc) {
    ck_free(ck);
    fail(e, rc, "checkpoint: %s",
         rc == RS_ENOMEM ? "out of memory" : rs_store_errmsg(e->store));
    return rc;
  }
  /* The output ends at T start from what is acknowledged now; reports
   * of this epoch's outputs raise them (on_delivery). */
  for (size_t k = 0; e->eo && k < e->n_outs; k++) {
    outtopic_t *ot = e->outs[k];
    if (ot->n_track)
      memcpy(ot->ckpt_end, ot->acked_end,
             (size_t)ot->n_track * sizeof(*ot->ckpt_end));
  }
  ck->epoch = e->epoch++;
  ck->unacked = e->epoch_outputs;
  e->epoch_outputs = 0;
  ck->phase = CK_ACKS;
  ck->t_req = e->ckpt_requested_ns ? e->ckpt_requested_ns : t0;
  e->ckpt_requested_ns = 0;
  e->ckpt_again = 0;
  ck->t_cap = rs_now_ns();
  e->ck = ck;
  e->stats.checkpoint_captures++;
  ck_hold(e, ck->t_cap - t0);
  return 0;
}

static void savepoint(rs_engine_t *e);
static void request_checkpoint(rs_engine_t *e);
static void set_paused(rs_engine_t *e, int pause);
static int under_low_water(const rs_engine_t *e);
static void on_idle(uv_idle_t *h);

/* Step 3, on the loop: the batch is written (or held nothing, or failed). */
static void complete(rs_engine_t *e, ckpt_t *ck) {
  uint64_t t0 = rs_now_ns();
  e->ck = NULL;
  ck->phase = CK_DONE;
  if (ck->rc) {
    /* The cache's entries staged at T are clean but not in the database:
     * no later checkpoint could be complete, so the engine stops. */
    fail(e, ck->rc,
         "checkpoint to %s failed: %s; stopping (the previous checkpoint is "
         "intact)",
         rs_store_dir(e->store), ck->err);
  } else {
    if (ck->written)
      crash_point(e, "checkpoint_after_write");
    for (size_t k = 0; k < ck->n; k++) {
      const rs_offset_t *o = &ck->offs[k];
      ssize_t s = source_of_topic(e, o->topic);
      if (s >= 0) {
        e->parts[s][o->partition]->stored_offset = o->next_offset;
      } else if (o->topic == e->feed_topic) {
        e->parts[e->feed_src][o->partition]->stored_offset = o->next_offset;
      } else {
        outtopic_t *ot = find_out(e, o->topic);
        ot->stored_end[o->partition] = o->next_offset;
      }
    }
    rs_store_staged_done(e->store, e->cache, ck->st);
    ck->st = NULL;
    if (ck->written) {
      e->stats.checkpoints++;
      e->stats.checkpoint_ns += ck->write_ns;
    }
    e->stats.checkpoint_ack_wait_ns += ck->t_acked - ck->t_cap;
    e->stats.checkpoint_wait_ns += rs_now_ns() - ck->t_req;
    advance(e);
    /* Kafka gets the offsets of T (commit_offsets never passes what is
     * stored): every output derived from them is acknowledged. */
    commit_offsets(e, ck->sync_commit);
  }
  ck_hold(e, rs_now_ns() - t0);
  if (ck->queued) {
    ck->finished = 1; /* after_write() frees it */
  } else {
    ck_free(ck);
  }
  if (!e->err && e->savepoint_requested)
    savepoint(e);
  /* Requested meanwhile: taken now, whichever way this one ended (also
   * when it completed synchronously: left set, it would hold off early
   * checkpoints until the commit timer's next tick). */
  if (e->ckpt_again && !e->err)
    request_checkpoint(e);
  /* Paused for the spill (after_run): the spill is staged now, or will be
   * by the next checkpoint. Processing resumes on the next loop turn (not
   * from here: revocation and shutdown finish checkpoints too). */
  if (e->ck_paused) {
    e->ck_paused = 0;
    if (e->paused && e->state == ST_RUNNING && !e->err && under_low_water(e)) {
      set_paused(e, 0);
      uv_idle_start(&e->idle, on_idle);
    }
  }
}

static void write_work(uv_work_t *req) {
  ckpt_t *ck = req->data;
  uint64_t t0 = rs_now_ns();
  int rc = rs_store_staged_write(ck->st, ck->err, sizeof ck->err);
  uint64_t ns = rs_now_ns() - t0;
  uv_mutex_lock(&ck->mu);
  ck->rc = rc;
  ck->write_ns = ns;
  ck->worker_done = 1;
  uv_cond_signal(&ck->cv);
  uv_mutex_unlock(&ck->mu);
}

static void after_write(uv_work_t *req, int status) {
  ckpt_t *ck = req->data;
  rs_engine_t *e = ck->e;
  if (ck->finished) { /* completed synchronously (finish_checkpoint) */
    ck_free(ck);
    return;
  }
  ck->queued = 0;
  if (status == UV_ECANCELED && !ck->rc) {
    ck->rc = RS_EINTERNAL;
    snprintf(ck->err, sizeof ck->err, "the write was cancelled");
  }
  complete(e, ck);
}

/* Step 2 once nothing of the checkpoint's epochs is in flight: adds the
 * output ends and writes, in the thread pool when `async`, else here. */
static void start_write(rs_engine_t *e, ckpt_t *ck, int async) {
  ck->t_acked = rs_now_ns();
  int rc = 0;
  for (size_t k = 0; e->eo && !rc && k < e->n_outs; k++) {
    outtopic_t *ot = e->outs[k];
    for (int32_t i = 0; !rc && i < ot->n_track; i++)
      if (ot->ckpt_end[i] >= 0 && ot->ckpt_end[i] != ot->stored_end[i])
        rc = ck_add(ck, ot->name, i, ot->ckpt_end[i]);
  }
  size_t n_in = 0;
  for (size_t k = 0; k < ck->n; k++)
    if (source_of_topic(e, ck->offs[k].topic) >= 0 ||
        ck->offs[k].topic == e->feed_topic)
      n_in++;
  if (!rc)
    rc = rs_store_staged_add_offsets(e->store, ck->st, ck->offs + n_in,
                                     ck->n - n_in);
  if (rc) {
    ck->rc = rc;
    snprintf(ck->err, sizeof ck->err, "%s", rs_strerror(rc));
  }
  if (rc || rs_store_staged_empty(ck->st)) {
    /* Nothing moved since the last one: no write (and no fsync). */
    complete(e, ck);
    return;
  }
  ck->written = 1;
  ck->phase = CK_WRITING;
  ck->req.data = ck;
  crash_point(e, "checkpoint_before_write");
  if (async) {
    if (uv_queue_work(&e->loop, &ck->req, write_work, after_write) == 0) {
      ck->queued = 1;
      return;
    }
  }
  write_work(&ck->req);
  complete(e, ck);
}

/* Called after delivery reports: writes the checkpoint in flight once its
 * outputs are acknowledged. A failed delivery leaves it unwritten. */
static void checkpoint_progress(rs_engine_t *e) {
  ckpt_t *ck = e->ck;
  if (!ck || ck->phase != CK_ACKS || ck->unacked > 0 || e->err)
    return;
  start_write(e, ck, 1);
}

/* Finishes the checkpoint in flight here and now (revocation, shutdown,
 * feed, savepoint): waits (30 s at most) for its outputs, then writes it
 * on this thread, or waits for the thread pool's write. 0 when none is
 * in flight any more. */
static int finish_checkpoint(rs_engine_t *e) {
  ckpt_t *ck = e->ck;
  if (!ck)
    return 0;
  if (ck->phase == CK_ACKS) {
    uint64_t t0 = rs_now_ns();
    while (ck->unacked > 0 && !e->err && rs_now_ns() - t0 < 30ull * 1000000000u)
      rd_kafka_poll(e->producer, 100);
    if (ck->unacked > 0 || e->err)
      return e->err ? e->err : RS_EDELIVERY;
    start_write(e, ck, 0);
    return e->ck ? RS_EINTERNAL : e->err;
  }
  /* CK_WRITING in the thread pool: take it back if it has not started,
   * else wait for it. after_write() then only frees it. */
  if (uv_cancel((uv_req_t *)&ck->req) == 0) {
    write_work(&ck->req);
  } else {
    uv_mutex_lock(&ck->mu);
    while (!ck->worker_done)
      uv_cond_wait(&ck->cv, &ck->mu);
    uv_mutex_unlock(&ck->mu);
  }
  complete(e, ck);
  return e->err;
}

/* A synchronous checkpoint: the one in flight is finished, then one is
 * taken and written here. Only called with no output in flight (every
 * output derived from the offsets stored here has been acknowledged) and
 * between batches. */
static int write_checkpoint_here(rs_engine_t *e, int sync_commit) {
  /* The one in flight commits what it stores too: with the caller's
   * synchronous commit (revocation), else its offsets would be marked
   * committed by an asynchronous commit and ours would find nothing left
   * to commit for the revoked partitions. A pending request is served by
   * the capture below. */
  if (e->ck)
    e->ck->sync_commit |= sync_commit;
  e->ckpt_again = 0;
  int rc = finish_checkpoint(e);
  if (rc)
    return rc;
  if ((rc = capture(e)))
    return rc;
  e->ck->sync_commit = sync_commit;
  return finish_checkpoint(e);
}

/* Counted in full as loop time held (checkpoint_hold_ns): the waits for
 * acknowledgements and the writes happen on this thread. */
static int write_checkpoint(rs_engine_t *e, int sync_commit) {
  if (!e->store || e->err)
    return e->err;
  uint64_t t0 = rs_now_ns(), held = e->stats.checkpoint_hold_ns;
  int rc = write_checkpoint_here(e, sync_commit);
  uint64_t ns = rs_now_ns() - t0;
  held = e->stats.checkpoint_hold_ns - held; /* capture and end */
  if (ns > held)
    e->stats.checkpoint_hold_ns += ns - held;
  if (ns > e->stats.checkpoint_hold_max_ns)
    e->stats.checkpoint_hold_max_ns = ns;
  return rc;
}

static void on_idle(uv_idle_t *h);

/* Takes a checkpoint now (between batches), or once the one in flight is
 * done. */
static void request_checkpoint(rs_engine_t *e) {
  if (!e->store || e->state != ST_RUNNING || e->err)
    return;
  if (!e->ckpt_requested_ns)
    e->ckpt_requested_ns = rs_now_ns();
  if (e->ck) {
    e->ckpt_again = 1; /* coalesced */
    return;
  }
  if (capture(e) == 0)
    checkpoint_progress(e);
}

/* --------------------------------------------------------- host API */

/* experiments: narrows b to the records whose user (the record's key)
 * falls in op's variant (experiments.c). */
static int route_variant(struct rs_op *op, rs_batch_t *b) {
  if (op->vcap < b->count) {
    rs_record_t *r = rs_realloc(op->vrecs, b->count * sizeof(*r));
    if (!r)
      return RS_ENOMEM;
    op->vrecs = r;
    op->vcap = b->count;
  }
  size_t n = 0;
  for (size_t i = 0; i < b->count; i++)
    if (rs_experiment_record_variant(op->x, &b->records[i]) == op->vidx)
      op->vrecs[n++] = b->records[i];
  b->records = op->vrecs;
  b->count = n;
  return 0;
}

static int host_emit(rs_op_t *op, uint32_t port, const rs_record_t *rec) {
  node_rt_t *n = &op->e->nodes[op->node];
  if (port >= n->n_ports || op->e->querying)
    return RS_EINVAL;
  if (!n->out[port].wanted) {
    /* Nobody reads it: counted as the sinks would have counted it. */
    op->e->stats.withheld += n->out[port].withheld_sinks;
    if (op->c_out)
      op->c_out->value++;
    return 0;
  }
  int rc = outbuf_push(&n->out[port], rec);
  if (!rc && op->c_out)
    op->c_out->value++;
  return rc;
}

static int produce(rs_engine_t *e, outtopic_t *ot, const void *key,
                   size_t key_len, const void *val, size_t val_len,
                   int64_t src_offset, const char *dlq_error);

static int ensure_track(outtopic_t *ot, int32_t partition) {
  if (partition < ot->n_track)
    return 0;
  int32_t n = partition + 1 > 2 * ot->n_track ? partition + 1 : 2 * ot->n_track;
  int64_t *a = rs_realloc(ot->acked_end, (size_t)n * sizeof(*a));
  if (!a)
    return RS_ENOMEM;
  ot->acked_end = a;
  int64_t *b = rs_realloc(ot->stored_end, (size_t)n * sizeof(*b));
  if (!b)
    return RS_ENOMEM;
  ot->stored_end = b;
  int64_t *c = rs_realloc(ot->ckpt_end, (size_t)n * sizeof(*c));
  if (!c)
    return RS_ENOMEM;
  ot->ckpt_end = c;
  for (int32_t i = ot->n_track; i < n; i++)
    a[i] = b[i] = c[i] = -1;
  ot->n_track = n;
  return 0;
}

static outtopic_t *find_out(const rs_engine_t *e, const char *name) {
  for (size_t i = 0; i < e->n_outs; i++)
    if (!strcmp(e->outs[i]->name, name))
      return e->outs[i];
  return NULL;
}

/* The output topic `name`, created on first use. NULL: out of memory or
 * librdkafka refused the handle. */
static outtopic_t *out_topic(rs_engine_t *e, const char *name) {
  outtopic_t *ot = find_out(e, name);
  if (ot)
    return ot;
  outtopic_t **arr = rs_realloc(e->outs, (e->n_outs + 1) * sizeof(*arr));
  if (!arr)
    return NULL;
  e->outs = arr;
  ot = rs_calloc(1, sizeof(*ot));
  if (!ot || !(ot->name = rs_strdup(name))) {
    rs_free(ot);
    return NULL;
  }
  ot->idx = (uint32_t)e->n_outs;
  /* A copy of the client's default topic settings (message.timeout.ms
   * and the like from kafka.properties), plus the opaque. */
  rd_kafka_topic_conf_t *tc = rd_kafka_default_topic_conf_dup(e->producer);
  rd_kafka_topic_conf_set_opaque(tc, ot);
  ot->rkt = rd_kafka_topic_new(e->producer, name, tc);
  if (!ot->rkt) {
    rs_free(ot->name);
    rs_free(ot);
    return NULL;
  }
  e->outs[e->n_outs++] = ot;
  return ot;
}

static void out_topic_free(outtopic_t *ot) {
  if (ot->rkt)
    rd_kafka_topic_destroy(ot->rkt);
  rs_free(ot->name);
  rs_free(ot->acked_end);
  rs_free(ot->stored_end);
  rs_free(ot->ckpt_end);
  rs_free(ot);
}

static const char *dlq_name(const rs_engine_t *e, const struct rs_op *op,
                            size_t src, char *buf, size_t size) {
  if (e->opts.dlq_topic)
    return e->opts.dlq_topic;
  /* The rule rs_graph_build checked against the source topics. */
  return rs_graph_dlq_topic(e->cfg, e->g->nodes[op->node].cfg_index, src, buf,
                            size);
}

static int host_dead_letter(rs_op_t *op, const rs_record_t *rec,
                            const char *error) {
  rs_engine_t *e = op->e;
  if (!e->cur)
    return rs_seterr(e->errstr, sizeof e->errstr, RS_EINVAL,
                     "operator '%s': dead_letter() is only allowed while "
                     "processing a batch",
                     e->g->nodes[op->node].name);
  if (e->opts.suppress_output) {
    e->stats.withheld++;
    e->stats.withheld_dead_letters++;
    if (op->c_dlq)
      op->c_dlq->value++;
    return 0;
  }
  char name[512];
  const char *topic = dlq_name(e, op, e->cur_src, name, sizeof name);
  outtopic_t *ot = out_topic(e, topic);
  if (!ot)
    return rs_seterr(e->errstr, sizeof e->errstr, RS_EKAFKA,
                     "dead-letter topic '%s' cannot be used: %s", topic,
                     rd_kafka_err2str(rd_kafka_last_error()));
  int rc = produce(e, ot, rec->key, rec->key_len, rec->value, rec->value_len,
                   rec->src_offset, error ? error : "unknown error");
  if (!rc && op->c_dlq)
    op->c_dlq->value++;
  return rc;
}

static void *host_batch_alloc(rs_op_t *op, size_t size) {
  return rs_arena_alloc(&op->e->arena, size);
}

static void host_log(rs_op_t *op, int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  rs_vlog(level, op->e->g->nodes[op->node].name, fmt, ap);
  va_end(ap);
}

static rs_counter_t *host_counter(rs_op_t *op, const char *name,
                                  const char *help) {
  for (rs_counter_t *c = op->counters; c; c = c->next)
    if (!strcmp(c->name, name))
      return c;
  rs_counter_t *c = rs_calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->name = rs_strdup(name);
  c->help = rs_strdup(help ? help : "");
  if (!c->name || !c->help) {
    rs_free(c->name);
    rs_free(c->help);
    rs_free(c);
    return NULL;
  }
  c->next = op->counters;
  op->counters = c;
  return c;
}

static void host_counter_add(rs_counter_t *c, uint64_t n) {
  if (c)
    c->value += n;
}

static int state_fail(rs_op_t *op, int rc) {
  if (rc == RS_ESTATE)
    host_log(op, RS_LOG_ERROR, "state: %s", rs_store_errmsg(op->e->store));
  return rc;
}

static int host_state_get(rs_op_t *op, int32_t partition, const void *key,
                          size_t key_len, void **value, size_t *value_len) {
  const void *v = NULL;
  int rc = rs_cache_get(op->e->cache, op->cf, partition, key, key_len, &v,
                        value_len);
  *value = (void *)v;
  return state_fail(op, rc);
}
static int host_state_put(rs_op_t *op, int32_t partition, const void *key,
                          size_t key_len, const void *value, size_t value_len) {
  if (op->e->querying) /* query(): reads only */
    return RS_EINVAL;
  return state_fail(op, rs_cache_put(op->e->cache, op->cf, partition, key,
                                     key_len, value, value_len));
}
static int host_state_delete(rs_op_t *op, int32_t partition, const void *key,
                             size_t key_len) {
  if (op->e->querying)
    return RS_EINVAL;
  return state_fail(
      op, rs_cache_delete(op->e->cache, op->cf, partition, key, key_len));
}
static int host_state_scan(rs_op_t *op, int32_t partition, const void *prefix,
                           size_t prefix_len,
                           int (*cb)(void *, const void *, size_t, const void *,
                                     size_t),
                           void *opaque) {
  return state_fail(op, rs_cache_scan(op->e->cache, op->cf, partition, prefix,
                                      prefix_len, cb, opaque));
}
static int host_state_get_floats(rs_op_t *op, int32_t partition,
                                 const void *key, size_t key_len, float *out,
                                 size_t dim) {
  return state_fail(op, rs_cache_get_floats(op->e->cache, op->cf, partition,
                                            key, key_len, out, dim));
}
static int host_state_put_floats(rs_op_t *op, int32_t partition,
                                 const void *key, size_t key_len,
                                 const float *v, size_t dim) {
  if (op->e->querying)
    return RS_EINVAL;
  return state_fail(op, rs_cache_put_floats(op->e->cache, op->cf, partition,
                                            key, key_len, v, dim));
}
static int host_state_counter_add(rs_op_t *op, int32_t partition,
                                  const void *key, size_t key_len,
                                  int64_t delta, int64_t *result) {
  if (op->e->querying)
    return RS_EINVAL;
  return state_fail(op, rs_cache_counter_add(op->e->cache, op->cf, partition,
                                             key, key_len, delta, result));
}
/* ABI minor 2: read-only access to another operator's state. The handle
 * is the peer's column family; peer_state_get checks it names an
 * operator's family, so a stale or forged handle cannot reach __offsets. */
static int peer_cf_ok(const rs_engine_t *e, int cf) {
  for (size_t i = 0; i < e->g->n; i++)
    for (const struct rs_op *op = e->nodes[i].op; op; op = op->vnext)
      if (op->cf == cf)
        return 1;
  return 0;
}
static int host_peer_open(rs_op_t *op, const char *name) {
  const rs_graph_t *g = op->e->g;
  if (!name)
    return RS_EINVAL;
  if (!strcmp(name, g->nodes[op->node].name))
    return RS_EINVAL;
  for (size_t i = 0; i < g->n; i++)
    if (g->nodes[i].kind == RS_NODE_OPERATOR &&
        !strcmp(g->nodes[i].name, name)) {
      /* A peer split by the same experiment: the same variant's instance
       * (topn#B reads mf#B); otherwise the peer's only instance. */
      const rs_experiment_t *px = rs_experiments_for_node(g->exp, i);
      char vn[200];
      if (px) {
        uint32_t v = px == op->x ? op->vidx : 0;
        if (px != op->x)
          rs_log(RS_LOG_WARN, "engine",
                 "operator '%s' reads '%s', which experiment '%s' splits: "
                 "it reads variant '%s''s state only",
                 g->nodes[op->node].name, name, px->name, px->v[0].name);
        snprintf(vn, sizeof vn, "%s#%s", name, px->v[v].name);
        name = vn;
      }
      int cf = rs_store_cf(op->e->store, name);
      return cf < 0 ? RS_ENOENT : cf;
    }
  return RS_ENOENT;
}
static int host_peer_state_get(rs_op_t *op, int handle, int32_t partition,
                               const void *key, size_t key_len, void **value,
                               size_t *value_len) {
  if (handle < 0 || handle == op->cf || !peer_cf_ok(op->e, handle))
    return RS_EINVAL;
  const void *v = NULL;
  int rc = rs_cache_get(op->e->cache, handle, partition, key, key_len, &v,
                        value_len);
  *value = (void *)v;
  return state_fail(op, rc);
}

static void *host_peer_context(rs_op_t *op, int handle,
                               const rs_operator_def_t **def) {
  *def = NULL;
  if (handle < 0 || handle == op->cf)
    return NULL;
  const rs_engine_t *e = op->e;
  for (size_t i = 0; i < e->g->n; i++)
    for (struct rs_op *p = e->nodes[i].op; p; p = p->vnext)
      if (p->cf == handle) {
        *def = p->def;
        return p->ctx;
      }
  return NULL;
}

static int host_timer_set(rs_op_t *op, int32_t partition, int64_t when_ms,
                          const void *tag, size_t tag_len) {
  return RS_ENOTSUP;
}

static uint64_t host_random(rs_op_t *op, const void *key, size_t key_len,
                            int64_t offset, uint64_t stream) {
  return rs_op_random(op->seed, key, key_len, offset, stream);
}

static int host_port_wanted(rs_op_t *op, uint32_t port) {
  const node_rt_t *n = &op->e->nodes[op->node];
  return port < n->n_ports && n->out[port].wanted;
}

static int host_idle_notify(rs_op_t *op, int64_t idle_ms);

static const rs_host_api_t host_api_template = {
    .abi_version = RS_ABI_VERSION,
    .struct_size = sizeof(rs_host_api_t),
    .emit = host_emit,
    .dead_letter = host_dead_letter,
    .batch_alloc = host_batch_alloc,
    .malloc = rs_malloc,
    .calloc = rs_calloc,
    .realloc = rs_realloc,
    .free = rs_free,
    .log = host_log,
    .counter = host_counter,
    .counter_add = host_counter_add,
    .state_get = host_state_get,
    .state_put = host_state_put,
    .state_delete = host_state_delete,
    .state_scan = host_state_scan,
    .timer_set = host_timer_set,
    .random = host_random,
    .state_get_floats = host_state_get_floats,
    .state_put_floats = host_state_put_floats,
    .state_counter_add = host_state_counter_add,
    .peer_open = host_peer_open,
    .peer_state_get = host_peer_state_get,
    .variant = "",
    .port_wanted = host_port_wanted,
    .peer_context = host_peer_context,
    .idle_notify = host_idle_notify,
};

/* ------------------------------------------------------------ produce */

/* exactly_once: the partition an output goes to, computed here (not by
 * the client) so that a replay knows it before producing: CRC32 of the
 * key, as librdkafka's default partitioner (consistent_random) does for
 * keyed records, so both guarantees place records alike; the input
 * partition for keyless records (consistent_random would pick at random).
 * Keeping the default matters for speed too: inputs keyed and partitioned
 * the same way then go to one output partition per run, in large batches
 * (murmur2 here scattered each run over every partition and cost 30% of
 * the throughput in bench_guarantee). */
static int32_t out_partition(const outtopic_t *ot, const void *key,
                             size_t key_len, int32_t src_partition) {
  if (key && key_len)
    return rd_kafka_msg_partitioner_consistent(ot->rkt, key, key_len,
                                               ot->n_parts, NULL, NULL);
  return src_partition % ot->n_parts;
}

static uint64_t pos_hash(const pos_t *p) {
  uint64_t h = rs_mix64(((uint64_t)p->out << 32) ^ (uint32_t)p->out_partition);
  h = rs_mix64(h ^ (((uint64_t)p->src << 32) | (uint32_t)p->src_partition));
  h = rs_mix64(h ^ (uint64_t)p->offset);
  return rs_mix64(h ^ p->ordinal);
}

static int pos_eq(const pos_t *a, const pos_t *b) {
  return a->out == b->out && a->out_partition == b->out_partition &&
         a->src == b->src && a->src_partition == b->src_partition &&
         a->offset == b->offset && a->ordinal == b->ordinal;
}

static int posset_has(const posset_t *set, const pos_t *p) {
  if (!set->n)
    return 0;
  for (size_t i = pos_hash(p) & (set->cap - 1);; i = (i + 1) & (set->cap - 1)) {
    if (!set->slots[i].used)
      return 0;
    if (pos_eq(&set->slots[i], p))
      return 1;
  }
}

static int posset_add(posset_t *set, const pos_t *p) {
  if (2 * (set->n + 1) > set->cap) {
    size_t cap = set->cap ? 2 * set->cap : 1024;
    pos_t *slots = rs_calloc(cap, sizeof(*slots));
    if (!slots)
      return RS_ENOMEM;
    for (size_t i = 0; i < set->cap; i++)
      if (set->slots[i].used) {
        size_t j = pos_hash(&set->slots[i]) & (cap - 1);
        while (slots[j].used)
          j = (j + 1) & (cap - 1);
        slots[j] = set->slots[i];
      }
    rs_free(set->slots);
    set->slots = slots;
    set->cap = cap;
  }
  size_t i = pos_hash(p) & (set->cap - 1);
  for (; set->slots[i].used; i = (i + 1) & (set->cap - 1))
    if (pos_eq(&set->slots[i], p))
      return 0;
  set->slots[i] = *p;
  set->slots[i].used = 1;
  set->n++;
  return 0;
}

/* The ordinal of the next output to ot derived from the input at offset:
 * how many went to ot from it earlier in this run. */
static int next_ordinal(rs_engine_t *e, const outtopic_t *ot, int64_t offset,
                        uint32_t *ordinal) {
  if (2 * (e->ords_n + 1) > e->ords_cap) {
    size_t cap = e->ords_cap ? 2 * e->ords_cap : 1024;
    ordslot_t *slots = rs_calloc(cap, sizeof(*slots));
    size_t *used = rs_malloc(cap * sizeof(*used));
    if (!slots || !used) {
      rs_free(slots);
      rs_free(used);
      return RS_ENOMEM;
    }
    size_t n = 0;
    for (size_t k = 0; k < e->ords_n; k++) {
      const ordslot_t *o = &e->ords[e->ords_used[k]];
      size_t j =
          rs_mix64((uint64_t)o->offset ^ ((uint64_t)o->out_plus1 << 48)) &
          (cap - 1);
      while (slots[j].out_plus1)
        j = (j + 1) & (cap - 1);
      slots[j] = *o;
      used[n++] = j;
    }
    rs_free(e->ords);
    rs_free(e->ords_used);
    e->ords = slots;
    e->ords_used = used;
    e->ords_cap = cap;
  }
  uint32_t key = ot->idx + 1;
  size_t i =
      rs_mix64((uint64_t)offset ^ ((uint64_t)key << 48)) & (e->ords_cap - 1);
  for (; e->ords[i].out_plus1; i = (i + 1) & (e->ords_cap - 1))
    if (e->ords[i].out_plus1 == key && e->ords[i].offset == offset) {
      *ordinal = ++e->ords[i].count;
      return 0;
    }
  e->ords[i] = (ordslot_t){.out_plus1 = key, .count = 0, .offset = offset};
  e->ords_used[e->ords_n++] = i;
  *ordinal = 0;
  return 0;
}

/* Forgets the ordinals of the previous run. */
static void ordinals_reset(rs_engine_t *e) {
  for (size_t k = 0; k < e->ords_n; k++)
    e->ords[e->ords_used[k]].out_plus1 = 0;
  e->ords_n = 0;
}

/* Appends v in decimal and then `sep` (if not NUL); returns the end. */
static char *put_u64(char *p, uint64_t v, char sep) {
  char tmp[20];
  int n = 0;
  do
    tmp[n++] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  while (n)
    *p++ = tmp[--n];
  if (sep)
    *p++ = sep;
  return p;
}

static int produce(rs_engine_t *e, outtopic_t *ot, const void *key,
                   size_t key_len, const void *val, size_t val_len,
                   int64_t src_offset, const char *dlq_error) {
  tracker_t *t = e->cur;
  uint64_t waited_ns = 0;
  int32_t dpart = RD_KAFKA_PARTITION_UA;
  const char *topic = e->cfg->sources[e->cur_src].topic;
  char src[320];
  size_t src_len = 0;
  if (e->eo) {
    if (ot->n_parts <= 0)
      return rs_seterr(e->errstr, sizeof e->errstr, RS_EKAFKA,
                       "output topic %s: its partition count is unknown "
                       "(does the topic exist?); exactly_once partitions "
                       "outputs itself and needs it",
                       ot->name);
    uint32_t ord;
    if (next_ordinal(e, ot, src_offset, &ord))
      return rs_seterr(e->errstr, sizeof e->errstr, RS_ENOMEM, "out of memory");
    dpart = out_partition(ot, key, key_len, e->cur_partition);
    pos_t here = {.out = ot->idx,
                  .out_partition = dpart,
                  .src = (uint32_t)e->cur_src,
                  .src_partition = e->cur_partition,
                  .ordinal = ord,
                  .offset = src_offset};
    if (t->part->sup_until >= src_offset && posset_has(&e->written, &here)) {
      e->stats.suppressed++;
      return 0;
    }
    /* "<topic>/<partition>/<offset>/<ordinal>", without printf: this runs
     * for every output. Topic names are at most 249 bytes. */
    size_t tl = strlen(topic);
    if (tl > 249) /* Kafka's own limit; the header must fit src[] */
      return rs_seterr(e->errstr, sizeof e->errstr, RS_ECONFIG,
                       "source topic name longer than Kafka's 249 bytes");
    memcpy(src, topic, tl);
    char *q = src + tl;
    *q++ = '/';
    q = put_u64(q, (uint64_t)e->cur_partition, '/');
    q = put_u64(q, (uint64_t)src_offset, '/');
    q = put_u64(q, ord, '\0');
    src_len = (size_t)(q - src);
  }
  for (;;) {
    rd_kafka_headers_t *h = NULL;
    if (dlq_error || src_len) {
      h = rd_kafka_headers_new(dlq_error ? 5 : 1);
      if (src_len)
        rd_kafka_header_add(h, SRC_HEADER, sizeof SRC_HEADER - 1, src,
                            (ssize_t)src_len);
      if (dlq_error) {
        char part[16], off[24];
        snprintf(part, sizeof part, "%d", (int)e->cur_partition);
        snprintf(off, sizeof off, "%lld", (long long)src_offset);
        rd_kafka_header_add(h, "error", -1, dlq_error, -1);
        rd_kafka_header_add(h, "source.topic", -1, topic, -1);
        rd_kafka_header_add(h, "source.partition", -1, part, -1);
        rd_kafka_header_add(h, "source.offset", -1, off, -1);
      }
    }
    rd_kafka_resp_err_t err;
    if (h)
      err = rd_kafka_producev(
          e->producer, RD_KAFKA_V_RKT(ot->rkt), RD_KAFKA_V_PARTITION(dpart),
          RD_KAFKA_V_KEY((void *)key, key_len),
          RD_KAFKA_V_VALUE((void *)val, val_len),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(t),
          RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    else
      err = rd_kafka_producev(e->producer, RD_KAFKA_V_RKT(ot->rkt),
                              RD_KAFKA_V_PARTITION(dpart),
                              RD_KAFKA_V_KEY((void *)key, key_len),
                              RD_KAFKA_V_VALUE((void *)val, val_len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_OPAQUE(t), RD_KAFKA_V_END);
    if (err && h)
      rd_kafka_headers_destroy(h); /* ours again when producev fails */
    if (!err) {
      t->pending++;
      t->epoch = e->epoch; /* a run never spans a checkpoint's capture */
      e->epoch_outputs++;
      e->inflight_records++;
      e->inflight_bytes += (int64_t)(key_len + val_len);
      if (e->inflight_bytes > e->stats.max_inflight_bytes)
        e->stats.max_inflight_bytes = e->inflight_bytes;
      return 0;
    }
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
      return rs_seterr(e->errstr, sizeof e->errstr, rs_err_from_kafka(err),
                       "produce to %s failed: %s", ot->name,
                       rd_kafka_err2str(err));
    /* The local queue is bounded above the high-water mark, so this only
     * happens when one batch fans out far more than its size: wait for
     * delivery reports, which is what frees space. */
    e->stats.queue_full_waits++;
    if (!waited_ns)
      waited_ns = rs_now_ns();
    else if (rs_now_ns() - waited_ns > 30ull * 1000000000u)
      return rs_seterr(e->errstr, sizeof e->errstr, RS_EDELIVERY,
                       "produce to %s: the producer queue stayed full for "
                       "30 s (is the broker reachable?)",
                       ot->name);
    rd_kafka_poll(e->producer, 10);
  }
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque) {
  rs_engine_t *e = opaque;
  tracker_t *t = m->_private;
  if (e->destroying)
    return; /* purged at destroy: nothing waits for these any more */
  e->inflight_records--;
  e->inflight_bytes -= (int64_t)(m->len + m->key_len);
  /* Outputs of an epoch before the current one are the checkpoint's in
   * flight (it ends only when they are all acknowledged). */
  ckpt_t *ck = e->ck && t->epoch != e->epoch ? e->ck : NULL;
  if (ck)
    ck->unacked--;
  else
    e->epoch_outputs--;
  if (m->err) {
    t->failed = 1;
    e->stats.delivery_failures++;
    fail(e, RS_EDELIVERY,
         "delivery to %s [%d] failed permanently: %s; stopping without "
         "committing past it",
         rd_kafka_topic_name(m->rkt), (int)m->partition,
         rd_kafka_err2str(m->err));
  } else {
    int64_t us = rd_kafka_message_latency(m);
    if (us >= 0)
      rs_lat_observe(&e->ack_hist, (uint64_t)us * 1000u);
    outtopic_t *ot = rd_kafka_topic_opaque(m->rkt);
    if (ot && m->partition >= 0 && m->offset >= 0 &&
        !ensure_track(ot, m->partition) &&
        m->offset + 1 > ot->acked_end[m->partition]) {
      ot->acked_end[m->partition] = m->offset + 1;
      if (ck) /* reports of one partition come in order */
        ot->ckpt_end[m->partition] = m->offset + 1;
    }
  }
  t->pending--;
}

/* ------------------------------------------------------------ graph */

/* The timestamp of the current run's input at `offset` (binary search:
 * a run's inputs are in offset order); INT64_MIN when not found. */
static int64_t input_ts(const rs_engine_t *e, int64_t offset) {
  size_t lo = 0, hi = e->run_n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (e->run_msgs[mid].offset < offset)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < e->run_n && e->run_msgs[lo].offset == offset
             ? e->run_msgs[lo].timestamp_ms
             : INT64_MIN;
}

/* A sink's input from node `from`. A record the sink cannot encode in its
 * format (an operator's output with, e.g., a value JSON cannot carry) goes
 * to the dead-letter path of the operator that emitted it, key and source
 * position kept, no value: stopping would only stop again at the same
 * offset after every restart. */
static int run_sink(rs_engine_t *e, size_t ni, size_t from,
                    const outbuf_t *in) {
  const rs_sink_cfg_t *sc = &e->cfg->sinks[e->g->nodes[ni].cfg_index];
  node_rt_t *n = &e->nodes[ni];
  int64_t now_ms = e->opts.suppress_output ? 0 : rs_wall_ms();
  for (size_t i = 0; i < in->n; i++) {
    const rs_record_t *r = &in->recs[i];
    const void *val = r->value;
    size_t len = r->value_len;
    if (e->opts.suppress_output) {
      e->stats.withheld++;
      continue;
    }
    if (r->kind != RS_KIND_BYTES) {
      rs_buf_reset(&e->enc);
      char err[256];
      int rc = rs_codec_encode_record(e->codec, (rs_format_t)sc->format, r,
                                      sc->schema_id, &e->enc, err, sizeof err);
      if (rc == RS_EENCODE && e->nodes[from].op) {
        char why[512];
        snprintf(why, sizeof why,
                 "sink '%s' cannot encode this output of "
                 "operator '%s': %s",
                 sc->name, e->g->nodes[from].name, err);
        rs_record_t d = *r;
        d.value = NULL;
        d.value_len = 0;
        if ((rc = host_dead_letter(e->nodes[from].op, &d, why)))
          return rc;
        continue;
      }
      if (rc)
        return rs_seterr(e->errstr, sizeof e->errstr, rc,
                         "sink '%s': cannot encode record from %s [%d] at "
                         "offset %lld: %s",
                         sc->name, e->cfg->sources[e->cur_src].topic,
                         (int)r->src_partition, (long long)r->src_offset, err);
      val = e->enc.data;
      len = e->enc.len;
    }
    uint64_t suppressed = e->stats.suppressed;
    int rc =
        produce(e, n->sink, r->key, r->key_len, val, len, r->src_offset, NULL);
    if (rc)
      return rc;
    n->produced++;
    /* Event to emission: the input's (Kafka or file) timestamp to now;
     * a timestamp ahead of this clock counts as 0. */
    int64_t ts = e->stats.suppressed == suppressed ? input_ts(e, r->src_offset)
                                                   : INT64_MIN;
    if (ts >= 0)
      rs_lat_observe(&n->e2e,
                     now_ms > ts ? (uint64_t)(now_ms - ts) * 1000000u : 0);
  }
  return 0;
}

/* process_run()'s view of n Kafka messages (ts: their timestamps when
 * already read, else NULL). n <= processing.batch_size. */
static const inrec_t *views(rs_engine_t *e, rd_kafka_message_t **ms,
                            const int64_t *ts, size_t n) {
  for (size_t i = 0; i < n; i++)
    e->inrecs[i] = (inrec_t){
        .key = ms[i]->key,
        .key_len = ms[i]->key_len,
        .value = ms[i]->payload,
        .len = ms[i]->len,
        .timestamp_ms = ts ? ts[i] : rd_kafka_message_timestamp(ms[i], NULL),
        .offset = ms[i]->offset};
  return e->inrecs;
}

/* Runs what a batch of (src, partition) left in the nodes' output buffers
 * through the graph in topological order: each operator downstream of a
 * non-empty buffer (every variant instance of a split one), each sink. */
static int run_graph(rs_engine_t *e, size_t src, int32_t partition) {
  const rs_graph_t *g = e->g;
  int rc = 0;
  for (size_t k = 0; k < g->n && !rc; k++) {
    size_t ni = g->order[k];
    const rs_gnode_t *gn = &g->nodes[ni];
    for (size_t in = 0; in < gn->n_inputs && !rc; in++) {
      const outbuf_t *ob =
          &e->nodes[gn->inputs[in].from].out[gn->inputs[in].port];
      if (!ob->n)
        continue;
      if (gn->kind == RS_NODE_SINK) {
        rc = run_sink(e, ni, gn->inputs[in].from, ob);
        continue;
      }
      for (struct rs_op *op = e->nodes[ni].op; op && !rc; op = op->vnext) {
        rs_batch_t b = {.records = ob->recs,
                        .count = ob->n,
                        .partition = partition,
                        .input = (uint32_t)in};
        if (op->x && (rc = route_variant(op, &b)))
          break;
        if (!b.count)
          continue;
        if (op->c_in)
          op->c_in->value += b.count;
        e->cur_op = op;
        uint64_t t0 = rs_now_ns();
        rc = op->def->process(op, op->ctx, &b);
        rs_histogram_observe(&op->proc_hist, rs_now_ns() - t0);
        if (rc < 0 && !e->errstr[0])
          rs_seterr(e->errstr, sizeof e->errstr, rc,
                    "operator '%s' (%s) failed on %s [%d]: %s",
                    op->cf_name[0] ? op->cf_name : gn->name, op->def->name,
                    e->cfg->sources[src].topic, (int)partition,
                    rs_strerror(rc));
        rc = rc < 0 ? rc : 0;
      }
    }
  }
  return rc;
}

/* Pushes one run of records from one source partition through the graph. */
static int process_run(rs_engine_t *e, size_t src, int32_t partition,
                       const inrec_t *msgs, size_t n) {
  part_t *p = get_part(e, src, partition);
  if (!p)
    return rs_seterr(e->errstr, sizeof e->errstr, RS_ENOMEM, "out of memory");
  /* Pausing a partition drops what librdkafka had fetched, and resuming may
   * fetch again from before our position: never process a record twice. */
  size_t skip = 0;
  while (skip < n && p->next_offset >= 0 && msgs[skip].offset < p->next_offset)
    skip++;
  e->stats.refetched += skip;
  msgs += skip;
  n -= skip;
  /* Replay: nothing at or past the end of the range. */
  while (n > 0 && p->end_offset >= 0 && msgs[n - 1].offset >= p->end_offset)
    n--;
  if (n == 0)
    return 0;
  /* The first record after resuming from stored offsets lies further on:
   * the records in between are gone (retention, then the client's offset
   * reset) or were not data (compaction, transaction markers). Said, not
   * silent. (Gaps later in a run are normal for those topics.) */
  if (p->resumed && p->next_offset >= 0 && msgs[0].offset > p->next_offset) {
    e->stats.input_gaps += (uint64_t)(msgs[0].offset - p->next_offset);
    char pa[16], st[24], fi[24], mi[24];
    snprintf(pa, sizeof pa, "%d", (int)partition);
    snprintf(st, sizeof st, "%lld", (long long)p->next_offset);
    snprintf(fi, sizeof fi, "%lld", (long long)msgs[0].offset);
    snprintf(mi, sizeof mi, "%lld",
             (long long)(msgs[0].offset - p->next_offset));
    const char *kv[] = {"topic",
                        e->cfg->sources[src].topic,
                        "partition",
                        pa,
                        "stored_offset",
                        st,
                        "first_offset",
                        fi,
                        "missing",
                        mi,
                        NULL};
    rs_log_kv(
        RS_LOG_WARN, "engine", kv,
        "%s [%d]: resumed at the stored offset %lld but the first record "
        "is at %lld: %lld offsets were removed before they were processed "
        "(retention) or hold no records (compaction, transaction "
        "markers); removed records are missing from the state",
        e->cfg->sources[src].topic, (int)partition, (long long)p->next_offset,
        (long long)msgs[0].offset,
        (long long)(msgs[0].offset - p->next_offset));
  }
  /* Most runs need no tracker of their own (below): the last one freed
   * is kept for the next run instead of an allocation per run. */
  tracker_t *t = e->spare_tracker;
  if (t) {
    e->spare_tracker = NULL;
    memset(t, 0, sizeof *t);
  } else if (!(t = rs_calloc(1, sizeof(*t)))) {
    return rs_seterr(e->errstr, sizeof e->errstr, RS_ENOMEM, "out of memory");
  }
  e->errstr[0] = '\0'; /* messages below are about this run */
  t->part = p;
  t->generation = p->generation;
  t->end_offset = msgs[n - 1].offset + 1;
  e->cur = t;
  e->cur_src = src;
  e->cur_partition = partition;
  ordinals_reset(e);
  p->resumed = 0;
  p->eof = 0;
  p->next_offset = t->end_offset;
  idle_touch(e, p);
  e->run_msgs = msgs;
  e->run_n = n;

  const rs_graph_t *g = e->g;
  for (size_t i = 0; i < g->n; i++)
    for (size_t k = 0; k < e->nodes[i].n_ports; k++)
      e->nodes[i].out[k].n = 0;

  /* The source node's output: the run as byte records. */
  size_t src_node = 0;
  for (size_t i = 0; i < g->n; i++)
    if (g->nodes[i].kind == RS_NODE_SOURCE && g->nodes[i].cfg_index == src)
      src_node = i;
  outbuf_t *so = &e->nodes[src_node].out[0];
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    const inrec_t *m = &msgs[i];
    rs_record_t r = {
        .kind = RS_KIND_BYTES,
        .key = m->key,
        .key_len = m->key_len,
        .value = m->value,
        .value_len = m->len,
        .timestamp_ms = m->timestamp_ms,
        .src_partition = partition,
        .src_offset = m->offset,
    };
    rc = outbuf_push(so, &r);
  }

  if (!rc)
    rc = run_graph(e, src, partition);
  /* The tracker joins its partition's queue even on error so that nothing
   * after it can be committed. A run that wrote nothing needs no tracker
   * of its own: it is complete now, so it extends the one before it (or
   * is committable at once). Replays and filters make such runs by the
   * hundred thousand. */
  if (rc)
    t->failed = 1;
  if (!rc && !t->failed && t->pending == 0 &&
      (!p->tail || p->tail->generation == t->generation)) {
    if (p->tail)
      p->tail->end_offset = t->end_offset;
    else
      p->committable = t->end_offset;
    e->spare_tracker = t;
    t = NULL;
  } else if (p->tail)
    p->tail->next = t;
  else
    p->head = t;
  if (t)
    p->tail = t;
  e->cur = NULL;
  e->run_msgs = NULL;
  e->run_n = 0;
  e->stats.batches++;
  if (!e->stats.records_in)
    e->stats.first_input_ns = rs_now_ns();
  e->stats.records_in += n;
  rs_arena_reset(&e->arena);
  return rc;
}

/* ------------------------------------------------------ consumer side */

/* A partition is at its end when the end-of-partition event names an
 * offset we have processed up to. The offset matters: pausing purges
 * fetched records that are fetched again on resume, so an end event may
 * arrive before records that precede it are (re)delivered. */
static int at_end(const part_t *p) {
  /* Replay: the range is done, or the partition ends before its end
   * (offsets without records: transaction markers, compaction). */
  /* eof_offset, not eof: processing the last records clears eof, and an
   * end event is only read after every record before it, so with nothing
   * buffered the range is done. */
  if (p->end_offset >= 0 &&
      ((p->next_offset >= 0 && p->next_offset >= p->end_offset) ||
       (p->eof_offset >= p->end_offset && p->bn == 0)))
    return 1;
  if (p->eof_offset < 0)
    return 0;
  if (p->next_offset >= 0)
    return p->next_offset >= p->eof_offset;
  return p->eof; /* nothing processed since assignment */
}

static int all_at_end(rs_engine_t *e) {
  if (e->n_assigned == 0)
    return 0;
  for (size_t s = 0; s < e->cfg->n_sources; s++)
    for (int32_t i = 0; i < e->n_parts[s]; i++) {
      part_t *p = e->parts[s][i];
      if (p && p->assigned && (p->bn > 0 || !at_end(p)))
        return 0;
    }
  return 1;
}

/* Pauses or resumes fetching of every assigned partition. */
static void pause_input(rs_engine_t *e, int pause) {
  rd_kafka_topic_partition_list_t *l = NULL;
  if (rd_kafka_assignment(e->consumer, &l) == 0 && l) {
    if (l->cnt) {
      if (pause) {
        rd_kafka_pause_partitions(e->consumer, l);
      } else {
        rd_kafka_resume_partitions(e->consumer, l);
        /* Replay ranges that were done are paused again by the next record
         * past their end. */
        for (size_t s = 0; s < e->cfg->n_sources; s++)
          for (int32_t i = 0; i < e->n_parts[s]; i++)
            if (e->parts[s][i])
              e->parts[s][i]->range_paused = 0;
      }
    }
    rd_kafka_topic_partition_list_destroy(l);
  }
}

/* Backpressure: pause or resume the input, and account for it. */
#define PAUSE_AFTER_MS 500

static void drain(rs_engine_t *e);

static void on_pause_timer(uv_timer_t *h) {
  rs_engine_t *e = h->data;
  if (e->paused && !e->input_paused && e->state == ST_RUNNING) {
    pause_input(e, 1);
    e->input_paused = 1;
    e->stats.partition_pauses++;
    drain(e); /* the client dropped what it had fetched for them */
  }
}

static void set_paused(rs_engine_t *e, int pause) {
  if (!pause != !e->paused)
    idle_hold(e, pause != 0);
  if (pause && !e->paused)
    uv_timer_start(&e->pause_timer, on_pause_timer, PAUSE_AFTER_MS, 0);
  if (!pause && e->paused) {
    reset_idle_clocks(e);
    uv_timer_stop(&e->pause_timer);
    if (e->input_paused)
      pause_input(e, 0);
    e->input_paused = 0;
  }
  if (pause && !e->paused) {
    e->paused = 1;
    e->paused_since = rs_now_ns();
    e->stats.pauses++;
  } else if (!pause && e->paused) {
    e->paused = 0;
    e->stats.paused_ns += rs_now_ns() - e->paused_since;
  }
}

static int over_high_water(const rs_engine_t *e) {
  return e->inflight_bytes > e->cfg->processing.high_water_bytes ||
         e->inflight_records > e->cfg->processing.max_inflight_records;
}

static int under_low_water(const rs_engine_t *e) {
  return e->inflight_bytes <= e->cfg->processing.low_water_bytes &&
         e->inflight_records <= e->cfg->processing.max_inflight_records / 2;
}

static void handle_consumer_error(rs_engine_t *e, rd_kafka_message_t *m) {
  if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    ssize_t s = m->rkt ? source_of_topic(e, rd_kafka_topic_name(m->rkt)) : -1;
    part_t *p = s >= 0 ? get_part(e, (size_t)s, m->partition) : NULL;
    if (p) {
      p->eof = 1;
      p->eof_offset = m->offset;
    }
    return;
  }
  const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
  if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
      m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
      m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
    fail(e, RS_EKAFKA, "source topic %s cannot be read: %s", topic,
         rd_kafka_message_errstr(m));
    return;
  }
  rs_log(RS_LOG_WARN, "kafka", "consumer: %s%s%s", topic, *topic ? ": " : "",
         rd_kafka_message_errstr(m));
}

/* Whether to read the record queue now. Not while a checkpoint waits or
 * backpressure holds (until the partitions are paused in the client too,
 * which drops what it had fetched). Events (cq) are served regardless. */
static int may_drain(const rs_engine_t *e) {
  return e->state == ST_RUNNING && (!e->paused || e->input_paused);
}

/* Whether to push records through the graph now. */
static int may_process(const rs_engine_t *e) {
  return e->state == ST_RUNNING && !e->paused;
}

/* After a batch: release what completed, apply backpressure, checkpoint
 * early when the cache's spill batch grows. 1: stop processing. */
static int after_run(rs_engine_t *e) {
  /* Completed trackers are released on delivery reports and before each
   * checkpoint (advance() walks every partition: not per batch). */
  if (over_high_water(e)) {
    set_paused(e, 1);
    uv_idle_stop(&e->idle);
    return 1;
  }
  /* Taken at once between batches, or as soon as the one in flight
   * ends. Processing goes on, unless the spill grew past its early
   * checkpoint mark while one is in flight (outputs unacknowledged for
   * long): then it pauses like backpressure until that one completes
   * (complete()), so the spill (kept twice meanwhile: spill and
   * spill_next) stays bounded as when checkpoints stopped processing. */
  if (e->cache && rs_cache_needs_checkpoint(e->cache)) {
    request_checkpoint(e);
    if (e->ck && !e->err && rs_cache_needs_checkpoint(e->cache)) {
      if (!e->ck_paused)
        e->stats.checkpoint_pauses++;
      e->ck_paused = 1;
      set_paused(e, 1);
      uv_idle_stop(&e->idle);
      return 1;
    }
  }
  return e->err != 0;
}

/* ------------------------------------------- deterministic order merge */

/* With processing.order: deterministic, fetched records wait in their
 * partition's buffer and are processed in (timestamp, source, partition,
 * offset) order across all assigned partitions. A partition with nothing
 * buffered that is not at its end holds everything up for at most
 * processing.max_idle (then it is passed over and the give-up counted),
 * like Kafka Streams' max.task.idle.ms. */
#define ORDER_MAX_BUFFERED 500000

static int buf_push(part_t *p, rd_kafka_message_t *m) {
  if (p->bhead + p->bn == p->bcap) {
    if (p->bhead > 0) {
      memmove(p->buf, p->buf + p->bhead, p->bn * sizeof(*p->buf));
      memmove(p->bts, p->bts + p->bhead, p->bn * sizeof(*p->bts));
      p->bhead = 0;
    } else {
      size_t cap = p->bcap ? p->bcap * 2 : 1024;
      rd_kafka_message_t **b = rs_realloc(p->buf, cap * sizeof(*b));
      if (!b)
        return RS_ENOMEM;
      p->buf = b;
      int64_t *t = rs_realloc(p->bts, cap * sizeof(*t));
      if (!t)
        return RS_ENOMEM;
      p->bts = t;
      p->bcap = cap;
    }
  }
  p->bts[p->bhead + p->bn] = rd_kafka_message_timestamp(m, NULL);
  p->buf[p->bhead + p->bn++] = m;
  return 0;
}

static void buf_drop(rs_engine_t *e, part_t *p) {
  for (size_t i = 0; i < p->bn; i++) {
    rd_kafka_message_t *m = p->buf[p->bhead + i];
    e->buffered_bytes -= (int64_t)m->len;
    rd_kafka_message_destroy(m);
  }
  e->buffered -= p->bn;
  p->bhead = p->bn = 0;
}

/* Orders the record at position i of p's buffer against q's head. */
static int before(const part_t *p, size_t i, const part_t *q) {
  int64_t a = p->bts[p->bhead + i];
  int64_t b = q->bts[q->bhead];
  if (a != b)
    return a < b;
  if (p->src != q->src)
    return p->src < q->src;
  return p->partition < q->partition;
}

static void on_order_timer(uv_timer_t *h);

/* The engine itself held processing (backpressure): time waited
 * meanwhile is not a partition lagging. */
static void reset_idle_clocks(rs_engine_t *e) {
  for (size_t s = 0; s < e->cfg->n_sources; s++)
    for (int32_t i = 0; i < e->n_parts[s]; i++)
      if (e->parts[s][i])
        e->parts[s][i]->empty_since = 0;
}

/* The merge keeps the partitions with buffered records in a binary
 * min-heap on their head record (before()): where partitions interleave in
 * time, runs are a record or two long, and finding the next one costs
 * O(log partitions) instead of a walk over every partition. */
static int head_before(const part_t *p, const part_t *q) {
  return before(p, 0, q);
}

static void heap_push(part_t **h, size_t *n, part_t *p) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t up = (i - 1) / 2;
    if (!head_before(p, h[up]))
      break;
    h[i] = h[up];
    i = up;
  }
  h[i] = p;
}

static part_t *heap_pop(part_t **h, size_t *n) {
  part_t *top = h[0], *last = h[--*n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= *n)
      break;
    if (c + 1 < *n && head_before(h[c + 1], h[c]))
      c++;
    if (!head_before(h[c], last))
      break;
    h[i] = h[c];
    i = c;
  }
  if (*n)
    h[i] = last;
  return top;
}

/* Whether the merge may go on without partition p: p has records, is at
 * its end, or was given up on; else the time left to wait for it (ms) is
 * folded into *wait_ms. */
static int merge_ready(rs_engine_t *e, part_t *p, size_t s, int32_t i,
                       uint64_t *now, int64_t *wait_ms) {
  const int64_t max_idle = e->cfg->processing.max_idle_ms;
  if (p->bn > 0) {
    p->empty_since = 0;
    p->gave_up = 0;
    return 1;
  }
  if (at_end(p) || p->gave_up)
    return 1;
  if (!*now)
    *now = rs_now_ns();
  if (!p->empty_since)
    p->empty_since = *now;
  int64_t waited = (int64_t)((*now - p->empty_since) / 1000000u);
  if (waited < max_idle) {
    if (*wait_ms < 0 || max_idle - waited < *wait_ms)
      *wait_ms = max_idle - waited;
    return 0;
  }
  p->gave_up = 1;
  e->stats.ordering_giveups++;
  rs_log(RS_LOG_DEBUG, "engine",
         "%s [%d]: nothing fetched for processing.max_idle; "
         "ordering proceeds without it",
         e->cfg->sources[s].topic, (int)i);
  return 1;
}

static void merge(rs_engine_t *e) {
  size_t max = (size_t)e->cfg->processing.batch_size;
  while (may_process(e)) {
    uint64_t now = 0;
    int64_t wait_ms = -1;
    size_t nh = 0;
    for (size_t s = 0; s < e->cfg->n_sources; s++)
      for (int32_t i = 0; i < e->n_parts[s]; i++) {
        part_t *p = e->parts[s][i];
        if (!p || !p->assigned)
          continue;
        merge_ready(e, p, s, i, &now, &wait_ms);
        if (p->bn > 0) {
          if (nh == e->heap_cap) {
            size_t cap = e->heap_cap ? 2 * e->heap_cap : 64;
            part_t **h = rs_realloc(e->heap, cap * sizeof(*h));
            if (!h) {
              fail(e, RS_ENOMEM, "out of memory ordering input");
              return;
            }
            e->heap = h;
            e->heap_cap = cap;
          }
          heap_push(e->heap, &nh, p);
        }
      }
    if (!nh)
      return;
    if (wait_ms >= 0) {
      uv_timer_start(&e->order_timer, on_order_timer, (uint64_t)wait_ms + 1, 0);
      return;
    }
    /* Runs until a partition runs out of records before its end (the walk
     * above then decides whether to wait for it) or processing must
     * stop. Nothing is fetched meanwhile, so the heap stays true. */
    for (;;) {
      part_t *best = heap_pop(e->heap, &nh);
      const part_t *second = nh ? e->heap[0] : NULL;
      size_t k = 1;
      while (k < best->bn && k < max && (!second || before(best, k, second)))
        k++;
      rd_kafka_message_t **ms = &best->buf[best->bhead];
      int rc = process_run(e, best->src, best->partition,
                           views(e, ms, &best->bts[best->bhead], k), k);
      for (size_t j = 0; j < k; j++) {
        e->buffered_bytes -= (int64_t)ms[j]->len;
        rd_kafka_message_destroy(ms[j]);
      }
      best->bhead += k;
      best->bn -= k;
      e->buffered -= k;
      if (!best->bn)
        best->bhead = 0;
      if (rc) {
        fail(e, rc, "%s", e->errstr[0] ? e->errstr : rs_strerror(rc));
        return;
      }
      if (after_run(e))
        return;
      if (!may_process(e))
        return;
      if (best->bn)
        heap_push(e->heap, &nh, best);
      else if (!at_end(best))
        break; /* its next record may come first: look again */
      if (!nh)
        break;
    }
  }
}

/* Fills the partition buffers from the consumer queue and merges. */
static void drain_ordered(rs_engine_t *e) {
  int budget = 16, more = 0, tried = 0;
  size_t max = (size_t)e->cfg->processing.batch_size;
  while (may_drain(e) && budget-- > 0 && e->buffered < ORDER_MAX_BUFFERED &&
         e->buffered_bytes < e->cfg->processing.high_water_bytes) {
    ssize_t n = rd_kafka_consume_batch_queue(e->mq, 0, e->msgs, max);
    tried = 1;
    if (n <= 0) {
      more = 0;
      break;
    }
    more = 1;
    for (ssize_t i = 0; i < n; i++) {
      rd_kafka_message_t *m = e->msgs[i];
      ssize_t s = m->err || !m->rkt
                      ? -1
                      : source_of_topic(e, rd_kafka_topic_name(m->rkt));
      part_t *p = s >= 0 ? get_part(e, (size_t)s, m->partition) : NULL;
      if (m->err)
        handle_consumer_error(e, m);
      else if (s < 0)
        rs_log(RS_LOG_WARN, "engine", "message from unexpected topic %s",
               rd_kafka_topic_name(m->rkt));
      if (!m->err && p && p->end_offset >= 0 && m->offset >= p->end_offset) {
        /* Replay: past the range; stop fetching the partition. */
        if (!p->range_paused) {
          rd_kafka_topic_partition_list_t *l =
              rd_kafka_topic_partition_list_new(1);
          rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(m->rkt),
                                            m->partition);
          rd_kafka_pause_partitions(e->consumer, l);
          rd_kafka_topic_partition_list_destroy(l);
          p->range_paused = 1;
        }
        rd_kafka_message_destroy(m);
        continue;
      }
      if (!m->err && p && p->assigned && !buf_push(p, m)) {
        e->buffered++;
        e->buffered_bytes += (int64_t)m->len;
        continue;
      }
      if (!m->err && s >= 0 && (!p || p->assigned))
        fail(e, RS_ENOMEM, "out of memory buffering input");
      rd_kafka_message_destroy(m);
    }
  }
  /* Again while it makes progress: merge() stops at a partition with
   * nothing buffered whose next record may come first, or after a batch
   * that paused processing, possibly leaving buffered records with nothing
   * to wake us (checkpoints do not stop it: they are taken between
   * batches and written later). */
  for (;;) {
    size_t left = e->buffered;
    merge(e);
    if (!may_process(e) || !e->buffered || e->buffered == left)
      break;
  }
  /* librdkafka wakes us only when the record queue goes from empty to
   * non-empty: come back while it may hold records we can take (the last
   * read got some, or the buffers were full and we did not read). */
  if (may_drain(e) && e->buffered < ORDER_MAX_BUFFERED &&
      e->buffered_bytes < e->cfg->processing.high_water_bytes &&
      (more || !tried))
    uv_idle_start(&e->idle, on_idle);
  else
    uv_idle_stop(&e->idle);
  if (e->opts.exit_at_end && e->state == ST_RUNNING && all_at_end(e))
    begin_stop(e);
}

/* Drains the consumer queue: at most `budget` batches, then yields to the
 * loop (uv_idle brings us back) so delivery reports are not starved. */
static void drain(rs_engine_t *e) {
  if (e->ordered) {
    drain_ordered(e);
    return;
  }
  int budget = 16;
  size_t max = (size_t)e->cfg->processing.batch_size;
  while (may_drain(e) && budget-- > 0) {
    ssize_t n = rd_kafka_consume_batch_queue(e->mq, 0, e->msgs, max);
    if (n <= 0) {
      uv_idle_stop(&e->idle);
      if (e->opts.exit_at_end && all_at_end(e))
        begin_stop(e);
      return;
    }
    size_t i = 0;
    int rc = 0;
    while (i < (size_t)n) {
      rd_kafka_message_t *m = e->msgs[i];
      if (m->err) {
        handle_consumer_error(e, m);
        i++;
        continue;
      }
      /* A run: consecutive messages of one topic partition. */
      size_t j = i + 1;
      while (j < (size_t)n && !e->msgs[j]->err && e->msgs[j]->rkt == m->rkt &&
             e->msgs[j]->partition == m->partition)
        j++;
      ssize_t s = source_of_topic(e, rd_kafka_topic_name(m->rkt));
      if (s < 0) {
        rs_log(RS_LOG_WARN, "engine", "message from unexpected topic %s",
               rd_kafka_topic_name(m->rkt));
      } else if (!rc) {
        rc = process_run(e, (size_t)s, m->partition,
                         views(e, &e->msgs[i], NULL, j - i), j - i);
      }
      i = j;
    }
    for (ssize_t k = 0; k < n; k++)
      rd_kafka_message_destroy(e->msgs[k]);
    if (rc) {
      fail(e, rc, "%s", e->errstr[0] ? e->errstr : rs_strerror(rc));
      return;
    }
    if (after_run(e))
      return;
  }
  if (may_drain(e))
    uv_idle_start(&e->idle, on_idle);
}

static void on_order_timer(uv_timer_t *h) {
  drain(h->data);
}

static void on_idle(uv_idle_t *h) {
  drain(h->data);
}

/* ------------------------------------------------------- idle batches */

/* host->idle_notify (ABI minor 3, appended): an operator instance asks for
 * an idle batch (process() with count 0) for each input partition that has
 * run no record for `ms` of loop time. One uv timer serves every
 * registration; it is due at the earliest deadline of any partition not yet
 * served, and a record makes it due sooner when its partition's new
 * deadline is earlier (idle_arm). Nothing polls Kafka. */
typedef struct idle_reg {
  struct rs_op *op;
  uint64_t ms;
  unsigned char *srcs; /* [n_sources]: 1 when the source feeds op */
  rs_counter_t *c_idle;
} idle_reg_t;

/* While an idle batch cannot run (backpressure), the timer looks again
 * this often. */
#define IDLE_RETRY_MS 50

static void idle_free(rs_engine_t *e) {
  for (size_t r = 0; r < e->n_idle; r++)
    rs_free(e->idle_regs[r].srcs);
  rs_free(e->idle_regs);
  e->idle_regs = NULL;
  e->n_idle = 0;
}

/* Marks in srcs (indexed by source) every source upstream of node i. */
static void idle_upstream(const rs_graph_t *g, size_t i, unsigned char *seen,
                          unsigned char *srcs) {
  if (seen[i])
    return;
  seen[i] = 1;
  const rs_gnode_t *gn = &g->nodes[i];
  if (gn->kind == RS_NODE_SOURCE)
    srcs[gn->cfg_index] = 1;
  for (size_t k = 0; k < gn->n_inputs; k++)
    idle_upstream(g, gn->inputs[k].from, seen, srcs);
}

static void on_idle_timer(uv_timer_t *h);

/* Makes the timer due in in_ms unless it is already due sooner. A running
 * timer may be due later: registrations differ in interval (two operators,
 * or experiment variants overriding it), so after the short one fired the
 * timer waits for the long one while a record re-arms the short one. */
static void idle_arm(rs_engine_t *e, uint64_t in_ms) {
  if (e->state != ST_RUNNING)
    return;
  if (!uv_is_active((uv_handle_t *)&e->idle_timer) ||
      uv_timer_get_due_in(&e->idle_timer) > in_ms)
    uv_timer_start(&e->idle_timer, on_idle_timer, in_ms, 0);
}

/* A run of p, or its assignment: its idle clock starts again. */
static void idle_touch(rs_engine_t *e, part_t *p) {
  if (!e->n_idle || e->feed || !e->loop_inited)
    return;
  p->idle_last = uv_now(&e->loop);
  p->idle_fired = 0;
  uint64_t min = UINT64_MAX;
  for (size_t r = 0; r < e->n_idle; r++)
    if (e->idle_regs[r].srcs[p->src] && e->idle_regs[r].ms < min)
      min = e->idle_regs[r].ms;
  if (min != UINT64_MAX)
    idle_arm(e, min);
}

/* The engine itself holds processing (hold 1: a checkpoint barrier,
 * backpressure, the flush at a revoke; they may overlap) or lets it go on
 * (hold 0, once per hold). Held time is not a partition being idle: when
 * the last hold ends, every assigned partition's idle clock moves forward
 * by it, so the records that waited run before any idle batch. Not reset
 * to now: with checkpoints every second no idle batch would ever come. */
static void idle_hold(rs_engine_t *e, int hold) {
  if (!e->n_idle || e->feed || !e->loop_inited)
    return;
  uv_update_time(&e->loop); /* a revoke flush blocks the loop */
  uint64_t now = uv_now(&e->loop);
  if (hold) {
    if (e->idle_holds++ == 0)
      e->idle_hold_since = now;
    return;
  }
  if (!e->idle_holds || --e->idle_holds)
    return;
  uint64_t held = now - e->idle_hold_since;
  for (size_t s = 0; s < e->cfg->n_sources; s++)
    for (int32_t i = 0; i < e->n_parts[s]; i++)
      if (e->parts[s][i] && e->parts[s][i]->assigned)
        e->parts[s][i]->idle_last += held;
}

static int host_idle_notify(rs_op_t *op, int64_t idle_ms) {
  rs_engine_t *e = op->e;
  if (op->inited || idle_ms <= 0)
    return RS_EINVAL;
  /* Outputs must be a function of the input (exactly_once suppresses by
   * source position on replay; deterministic order and replays reproduce
   * a run): wall-clock batches would break both. Records from files have
   * no wall clock to be idle in. */
  if (e->eo || e->ordered || e->opts.files)
    return RS_ENOTSUP;
  for (size_t r = 0; r < e->n_idle; r++)
    if (e->idle_regs[r].op == op) {
      e->idle_regs[r].ms = (uint64_t)idle_ms;
      return 0;
    }
  if (e->n_idle == 64)
    return RS_ERANGE;
  idle_reg_t *regs =
      rs_realloc(e->idle_regs, (e->n_idle + 1) * sizeof(*e->idle_regs));
  if (!regs)
    return RS_ENOMEM;
  e->idle_regs = regs;
  idle_reg_t *r = &regs[e->n_idle];
  unsigned char *seen = rs_calloc(e->g->n, 1);
  *r = (idle_reg_t){
      .op = op,
      .ms = (uint64_t)idle_ms,
      .srcs = rs_calloc(e->cfg->n_sources ? e->cfg->n_sources : 1, 1),
      .c_idle =
          host_counter(op, "idle_batches",
                       "idle batches: an input partition ran no record "
                       "for the interval the operator asked (idle_notify)")};
  if (!seen || !r->srcs || !r->c_idle) {
    rs_free(seen);
    rs_free(r->srcs);
    return RS_ENOMEM;
  }
  idle_upstream(e->g, op->node, seen, r->srcs);
  rs_free(seen);
  e->n_idle++;
  return 0;
}

/* Runs op's idle batch for partition `partition` of source src through
 * the graph: op's process() with no records, then every node downstream of
 * what it emitted, through run_graph() as for a run (the source and every
 * other buffer stay empty). Outputs hang on a tracker of their own,
 * queued on the partition like a run's, whose end is the partition's
 * position: a commit passes it only once they are acknowledged, and a
 * checkpoint taken after it waits for them. */
static int idle_run(rs_engine_t *e, struct rs_op *idle_op, size_t src,
                    int32_t partition) {
  part_t *p = get_part(e, src, partition);
  tracker_t *t = rs_calloc(1, sizeof(*t));
  if (!p || !t) {
    rs_free(t);
    return rs_seterr(e->errstr, sizeof e->errstr, RS_ENOMEM, "out of memory");
  }
  e->errstr[0] = '\0';
  t->part = p;
  t->generation = p->generation;
  t->end_offset = p->next_offset >= 0 ? p->next_offset : p->committable;
  e->cur = t;
  e->cur_src = src;
  e->cur_partition = partition;
  ordinals_reset(e);
  e->run_msgs = NULL;
  e->run_n = 0;
  const rs_graph_t *g = e->g;
  for (size_t i = 0; i < g->n; i++)
    for (size_t k = 0; k < e->nodes[i].n_ports; k++)
      e->nodes[i].out[k].n = 0;
  rs_batch_t ib = {.records = NULL, .count = 0, .partition = partition};
  e->cur_op = idle_op;
  uint64_t t0 = rs_now_ns();
  int rc = idle_op->def->process(idle_op, idle_op->ctx, &ib);
  rs_histogram_observe(&idle_op->proc_hist, rs_now_ns() - t0);
  if (rc < 0 && !e->errstr[0])
    rs_seterr(e->errstr, sizeof e->errstr, rc,
              "operator '%s' (%s) failed on an idle batch of %s [%d]: %s",
              idle_op->cf_name[0] ? idle_op->cf_name
                                  : g->nodes[idle_op->node].name,
              idle_op->def->name, e->cfg->sources[src].topic, (int)partition,
              rs_strerror(rc));
  rc = rc < 0 ? rc : 0;
  if (!rc)
    rc = run_graph(e, src, partition);
  e->cur_op = NULL;
  if (rc)
    t->failed = 1;
  if (!rc && t->pending == 0) {
    rs_free(t); /* nothing to wait for */
  } else {
    if (p->tail)
      p->tail->next = t;
    else
      p->head = t;
    p->tail = t;
  }
  e->cur = NULL;
  rs_arena_reset(&e->arena);
  return rc;
}

/* Sends the idle batches that are due, then sets the timer for the next
 * deadline (none: it stops until a record or an assignment re-arms it). */
static void on_idle_timer(uv_timer_t *h) {
  rs_engine_t *e = h->data;
  if (e->state != ST_RUNNING || e->err)
    return;
  uint64_t now = uv_now(&e->loop), next = UINT64_MAX;
  for (size_t r = 0; r < e->n_idle; r++) {
    idle_reg_t *reg = &e->idle_regs[r];
    for (size_t s = 0; s < e->cfg->n_sources; s++) {
      if (!reg->srcs[s])
        continue;
      for (int32_t i = 0; i < e->n_parts[s]; i++) {
        part_t *p = e->parts[s][i];
        if (!p || !p->assigned || (p->idle_fired >> r & 1))
          continue;
        uint64_t due = p->idle_last + reg->ms;
        if (due > now) {
          next = due < next ? due : next;
          continue;
        }
        if (!may_process(e)) {
          next = now + IDLE_RETRY_MS < next ? now + IDLE_RETRY_MS : next;
          continue;
        }
        p->idle_fired |= (uint64_t)1 << r;
        reg->c_idle->value++;
        int rc = idle_run(e, reg->op, s, i);
        if (rc) {
          fail(e, rc, "%s", e->errstr[0] ? e->errstr : rs_strerror(rc));
          return;
        }
        if (after_run(e))
          next = now + IDLE_RETRY_MS < next ? now + IDLE_RETRY_MS : next;
      }
    }
  }
  if (next != UINT64_MAX)
    uv_timer_start(&e->idle_timer, on_idle_timer, next - now, 0);
}

/* Runs on a librdkafka thread, with the queue's lock held, when a queue
 * goes from empty to non-empty: only wake the loop. */
static void on_queue_event(rd_kafka_t *rk, void *opaque) {
  uv_async_send(opaque);
}

/* Serves the consumer's event queue: rebalance and commit callbacks run
 * inside; errors come back as messages. */
static void serve_events(rs_engine_t *e) {
  rd_kafka_message_t *ev[16];
  ssize_t n;
  while (e->state != ST_DONE &&
         (n = rd_kafka_consume_batch_queue(e->cq, 0, ev, 16)) > 0)
    for (ssize_t i = 0; i < n; i++) {
      if (ev[i]->err)
        handle_consumer_error(e, ev[i]);
      rd_kafka_message_destroy(ev[i]);
    }
}

static void on_consumer_ready(uv_async_t *h) {
  rs_engine_t *e = h->data;
  serve_events(e);
  if (may_drain(e))
    drain(e);
}

static void maybe_finish(rs_engine_t *e);

static void on_producer_ready(uv_async_t *h) {
  rs_engine_t *e = h->data;
  if (rd_kafka_poll(e->producer, 0) > 0) {
    while (rd_kafka_poll(e->producer, 0) > 0)
      ;
    e->stats.last_ack_ns = rs_now_ns();
  }
  advance(e);
  checkpoint_progress(e);
  if (e->paused && !e->ck_paused && e->state == ST_RUNNING &&
      under_low_water(e)) {
    set_paused(e, 0);
    drain(e);
  }
  if (e->state == ST_STOPPING)
    maybe_finish(e);
}

static void on_commit_timer(uv_timer_t *h) {
  rs_engine_t *e = h->data;
  if (e->store)
    request_checkpoint(e);
  else {
    advance(e);
    commit_offsets(e, 0);
  }
}

static void query_refresh(rs_engine_t *e);

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  rs_engine_t *e = opaque;
  int coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    query_refresh(e); /* the partition count may have changed */
    for (int i = 0; i < parts->cnt; i++) {
      ssize_t s = source_of_topic(e, parts->elems[i].topic);
      part_t *p =
          s >= 0 ? get_part(e, (size_t)s, parts->elems[i].partition) : NULL;
      if (!p)
        continue;
      if (!p->assigned)
        e->n_assigned++;
      p->assigned = 1;
      p->eof = 0;
      p->eof_offset = p->next_offset = -1;
      p->generation++;
      p->committable = p->committed = -1;
      p->empty_since = 0;
      p->gave_up = 0;
      idle_touch(e, p);
      /* The offset stored with the state wins over the group's: state and
       * position must stay together (README, "Offsets and state"). */
      if (p->stored_offset >= 0) {
        parts->elems[i].offset = p->stored_offset;
        p->next_offset = p->stored_offset;
        p->resumed = 1;
        /* Every output below it was acknowledged when it was stored: the
         * group may have it now (its own commit may have been refused, or
         * lag), even if no record follows. */
        p->committable = p->stored_offset;
        char pa[16], off[24];
        snprintf(pa, sizeof pa, "%d", (int)parts->elems[i].partition);
        snprintf(off, sizeof off, "%lld", (long long)p->stored_offset);
        const char *kv[] = {"topic",     parts->elems[i].topic,
                            "partition", pa,
                            "offset",    off,
                            "from",      "state",
                            NULL};
        rs_log_kv(RS_LOG_INFO, "engine", kv,
                  "assigned %s [%d]: resuming at offset %lld, stored with the "
                  "state in %s",
                  parts->elems[i].topic, (int)parts->elems[i].partition,
                  (long long)p->stored_offset, rs_store_dir(e->store));
      } else {
        char pa[16];
        snprintf(pa, sizeof pa, "%d", (int)parts->elems[i].partition);
        const char *kv[] = {
            "topic", parts->elems[i].topic, "partition", pa, "from", "group",
            NULL};
        rs_log_kv(
            RS_LOG_INFO, "engine", kv,
            "assigned %s [%d]: no stored state; starting from the group's "
            "committed offset (or auto_offset_reset=%s when there is none)",
            parts->elems[i].topic, (int)parts->elems[i].partition,
            e->cfg->kafka.auto_offset_reset);
      }
    }
    for (int i = 0; i < parts->cnt; i++) {
      rd_kafka_queue_t *q = rd_kafka_queue_get_partition(
          rk, parts->elems[i].topic, parts->elems[i].partition);
      if (q) {
        rd_kafka_queue_forward(q, e->mq);
        rd_kafka_queue_destroy(q);
      }
    }
    if (coop)
      rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
    else
      rd_kafka_assign(rk, parts);
    if (e->input_paused || e->state != ST_RUNNING)
      rd_kafka_pause_partitions(rk, parts);
  } else {
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
      /* Checkpoint before the partitions move on: wait (bounded) for the
       * outputs in flight, then write state and offsets and commit. This
       * blocks the loop, which a rebalance callback does anyway. If the
       * outputs cannot be acknowledged in time, nothing is checkpointed
       * and the next owner starts from the previous checkpoint. */
      if (e->store && !e->err) {
        idle_hold(e, 1);
        if (e->inflight_records > 0)
          rd_kafka_flush(e->producer, 30000);
        advance(e);
        /* A synchronous commit: the next owner reads the committed
         * offsets as soon as this callback returns. */
        if (e->inflight_records == 0 && write_checkpoint(e, 1) == 0)
          rs_log(RS_LOG_INFO, "engine",
                 "revoked %d partitions%s: state and offsets checkpointed%s",
                 parts->cnt, coop ? " (cooperative rebalance)" : "",
                 rd_kafka_assignment_lost(rk) ? " (assignment lost)" : "");
        else if (e->inflight_records > 0)
          /* The cache holds their effects beyond the stored offsets and
           * outputs may still be delivered: going on would count them
           * twice on a reassignment. A restart recovers cleanly from the
           * last checkpoint. */
          fail(e, RS_EDELIVERY,
               "revoke: %lld outputs still unacknowledged after 30 s, so "
               "the revoked partitions cannot be checkpointed; stopping "
               "(the next start resumes from the last checkpoint)",
               (long long)e->inflight_records);
        idle_hold(e, 0);
      }
    } else {
      rs_log(RS_LOG_WARN, "engine", "rebalance error: %s",
             rd_kafka_err2str(err));
    }
    for (int i = 0; i < parts->cnt; i++) {
      ssize_t s = source_of_topic(e, parts->elems[i].topic);
      part_t *p =
          s >= 0 ? get_part(e, (size_t)s, parts->elems[i].partition) : NULL;
      if (p && p->assigned) {
        p->assigned = 0;
        e->n_assigned--;
        buf_drop(e, p);
      }
    }
    /* Paused for backpressure: the revoked partitions leave unpaused.
     * librdkafka (2.0.2) keeps a partition's pause across unassign and
     * assign, and only assigned partitions can be resumed: resuming the
     * input later would miss them, and if they came back here they would
     * never be fetched again (their records, checkpoints and commits
     * stalled for good). An assignment made while paused pauses its
     * partitions itself (above). */
    if (e->input_paused) {
      rd_kafka_resume_partitions(rk, parts);
      e->stats.paused_revokes++;
    }
    if (coop)
      rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
    else
      rd_kafka_assign(rk, NULL);
  }
}

static void on_commit_result(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets,
                             void *opaque) {
  rs_engine_t *e = opaque;
  if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
    return;
  for (int i = 0; offsets && i < offsets->cnt; i++) {
    if (!err && !offsets->elems[i].err)
      continue;
    ssize_t s = source_of_topic(e, offsets->elems[i].topic);
    part_t *p =
        s >= 0 ? get_part(e, (size_t)s, offsets->elems[i].partition) : NULL;
    if (p)
      p->committed = -1; /* retried at the next commit */
  }
  if (err) {
    char np[16];
    snprintf(np, sizeof np, "%d", offsets ? offsets->cnt : 0);
    const char *kv[] = {"error", rd_kafka_err2name(err), "partitions", np,
                        NULL};
    rs_log_kv(RS_LOG_WARN, "engine", kv,
              "offset commit failed: %s (retried at the next commit)",
              rd_kafka_err2str(err));
  }
}

static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason,
                           void *opaque) {
  rs_engine_t *e = opaque;
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char buf[512];
    rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof buf);
    fail(e, RS_EKAFKA, "fatal Kafka error (%s): %s", rd_kafka_err2name(orig),
         buf);
    return;
  }
  /* Connection failures are already in librdkafka's own log line, and
   * librdkafka keeps retrying them; say them once. */
  if (err != RD_KAFKA_RESP_ERR__TRANSPORT)
    rs_log(RS_LOG_WARN, "kafka", "%s: %s", rd_kafka_name(rk), reason);
}

static void on_kafka_log(const rd_kafka_t *rk, int level, const char *fac,
                         const char *buf) {
  /* librdkafka's errors (syslog level 3) are conditions it retries, so
   * they are warnings here; what stops the engine is logged as ERROR. */
  int l = level <= 4 ? RS_LOG_WARN : level <= 6 ? RS_LOG_INFO : RS_LOG_DEBUG;
  rs_log(l, "kafka", "%s %s: %s", rd_kafka_name(rk), fac, buf);
}

/* ---------------------------------------------------------- state */

static int open_state(rs_engine_t *e, char *errstr, size_t errstr_size) {
  const rs_config_t *cfg = e->cfg;
  /* RocksDB creates the last component. */
  int rc = rs_mkdir_parents(cfg->state.dir, "state.dir", errstr, errstr_size);
  if (rc)
    return rc;
  size_t nv = 0;
  for (size_t i = 0; e->g->exp && i < e->g->exp->n; i++)
    nv += e->g->exp->x[i].n * e->g->exp->x[i].n_ops;
  const char **names = rs_calloc(e->g->n + nv + 1, sizeof(*names));
  char **vnames = rs_calloc(nv + 1, sizeof(*vnames));
  if (!names || !vnames) {
    rs_free(names);
    rs_free(vnames);
    return RS_ENOMEM;
  }
  size_t n = 0, k = 0;
  for (size_t i = 0; i < e->g->n; i++)
    if (e->g->nodes[i].kind == RS_NODE_OPERATOR) {
      names[n++] = e->g->nodes[i].name;
      const rs_experiment_t *x = rs_experiments_for_node(e->g->exp, i);
      for (size_t v = 0; x && v < x->n; v++) {
        size_t len = strlen(e->g->nodes[i].name) + strlen(x->v[v].name) + 2;
        if (!(vnames[k] = rs_malloc(len)))
          break;
        snprintf(vnames[k], len, "%s#%s", e->g->nodes[i].name, x->v[v].name);
        names[n++] = vnames[k++];
      }
    }
  rs_store_opts_t so;
  rs_store_opts_init(&so);
  so.block_cache_bytes = (size_t)cfg->state.block_cache_bytes;
  so.write_buffer_bytes = (size_t)cfg->state.write_buffer_bytes;
  so.compression = (rs_compression_t)cfg->state.compression;
  so.sync = cfg->state.sync;
  so.create_if_missing = 1;
  rc = rs_store_open(cfg->state.dir, names, n, &so, &e->store, errstr,
                     errstr_size);
  /* After the open, which creates the directory; before any record. */
  if (!rc && e->g->exp)
    rc = rs_experiments_check_state(e->g->exp, e->g, cfg->state.dir, errstr,
                                    errstr_size);
  rs_free(names);
  for (size_t i = 0; i < k; i++)
    rs_free(vnames[i]);
  rs_free(vnames);
  if (rc)
    return rc;
  rc = rs_cache_create(e->store, (size_t)cfg->state.cache_bytes, &e->cache);
  if (rc)
    return rs_seterr(errstr, errstr_size, rc,
                     "state: cannot create the cache: %s", rs_strerror(rc));
  /* The pid file promises that SIGUSR1 asks for a savepoint (docs/STATE.md)
   * and does no harm otherwise: it is ignored until the loop handles it,
   * and again once the loop has ended (a request then times out). */
  signal(RS_STATE_SAVEPOINT_SIGNAL, SIG_IGN); /* until the loop handles it */
  rc = rs_state_pid_file_write(cfg->state.dir, errstr, errstr_size);
  if (!rc)
    e->pid_written = 1;
  return rc;
}

/* Applies the offsets stored with the state: input positions to their
 * partitions, output ends (exactly_once) to their topics. Returns the
 * number of input positions found. */
static int load_offsets(rs_engine_t *e, size_t *n_inputs, char *errstr,
                        size_t errstr_size) {
  rs_offset_t *offs = NULL;
  size_t n = 0;
  *n_inputs = 0;
  int rc = rs_store_read_offsets(e->store, &offs, &n);
  if (rc)
    return rs_seterr(errstr, errstr_size, rc,
                     "state %s: cannot read the stored offsets: %s",
                     rs_store_dir(e->store), rs_store_errmsg(e->store));
  for (size_t i = 0; i < n && !rc; i++) {
    ssize_t s = source_of_topic(e, offs[i].topic);
    if (s >= 0) {
      part_t *p = get_part(e, (size_t)s, offs[i].partition);
      if (!p)
        rc = RS_ENOMEM;
      else
        p->stored_offset = offs[i].next_offset;
      (*n_inputs)++;
      continue;
    }
    outtopic_t *ot = find_out(e, offs[i].topic);
    if (ot && offs[i].partition >= 0) {
      rc = ensure_track(ot, offs[i].partition);
      if (!rc)
        ot->stored_end[offs[i].partition] = ot->acked_end[offs[i].partition] =
            offs[i].next_offset;
    }
  }
  rs_store_offsets_free(offs, n);
  return rc;
}

/* Partition count of a topic from the cluster's metadata (blocking); -1
 * when the request failed or the topic has an error (e.g. it does not
 * exist). req_err (may be NULL) tells the two apart: the request's error,
 * 0 when the cluster answered. */
static int32_t topic_partitions(rd_kafka_t *rk, rd_kafka_topic_t *rkt,
                                rd_kafka_resp_err_t *req_err) {
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
  if (req_err)
    *req_err = err;
  if (err)
    return -1;
  int32_t n = -1;
  if (md->topic_cnt == 1 && !md->topics[0].err)
    n = md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);
  return n;
}

/* topic_partitions() of a topic by name, through a handle of its own; a
 * handle that cannot be made is a request error (RD_KAFKA_RESP_ERR__
 * INVALID_ARG in *req_err). */
static int32_t topic_partitions_of(rd_kafka_t *rk, const char *topic,
                                   rd_kafka_resp_err_t *req_err) {
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  if (!rkt) {
    if (req_err)
      *req_err = RD_KAFKA_RESP_ERR__INVALID_ARG;
    return -1;
  }
  int32_t n = topic_partitions(rk, rkt, req_err);
  rd_kafka_topic_destroy(rkt);
  return n;
}

/* Refuses to start with empty state while the consumer group has
 * committed offsets: the state that went with them is gone (deleted
 * directory, another machine), and starting from the group's offsets
 * with nothing would silently produce wrong results. */
static int check_state_present(rs_engine_t *e, char *errstr,
                               size_t errstr_size) {
  const rs_config_t *cfg = e->cfg;
  rs_log(RS_LOG_INFO, "engine",
         "state directory %s is empty: checking that consumer group '%s' has "
         "committed no offsets of the sources",
         rs_store_dir(e->store), cfg->kafka.group_id);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  for (size_t s = 0; s < cfg->n_sources && !err; s++) {
    const char *topic = cfg->sources[s].topic;
    /* A topic that does not exist yet (-1, answered) has nothing
     * committed. */
    int32_t n = topic_partitions_of(e->consumer, topic, &err);
    for (int32_t i = 0; i < n; i++)
      rd_kafka_topic_partition_list_add(l, topic, i);
  }
  if (!err && l->cnt > 0)
    err = rd_kafka_committed(e->consumer, l, 10000);
  int rc = 0;
  if (err) /* not knowing is not "nothing committed" */
    rc = rs_seterr(errstr, errstr_size, RS_EKAFKA,
                   "state directory %s holds no state, and whether consumer "
                   "group '%s' has committed offsets cannot be checked: %s. "
                   "Start again once the brokers answer (or accept empty "
                   "state with 'recstream run --reset-state')",
                   rs_store_dir(e->store), cfg->kafka.group_id,
                   rd_kafka_err2str(err));
  if (!rc && l->cnt > 0) {
    for (int i = 0; i < l->cnt && !rc; i++)
      if (!l->elems[i].err && l->elems[i].offset >= 0)
        rc = rs_seterr(
            errstr, errstr_size, RS_ESTATE,
            "state directory %s holds no state, but consumer group '%s' has "
            "committed %s [%d] at offset %lld: the state that went with it "
            "is missing (deleted, or another machine's). Rebuild it with "
            "'recstream replay', restore a savepoint with 'recstream run "
            "--restore-from DIR', or accept empty state from the group's "
            "offsets with 'recstream run --reset-state'",
            rs_store_dir(e->store), cfg->kafka.group_id, l->elems[i].topic,
            (int)l->elems[i].partition, (long long)l->elems[i].offset);
  }
  rd_kafka_topic_partition_list_destroy(l);
  return rc;
}

/* Records one output's source position for the suppression set. */
static int note_written(rs_engine_t *e, outtopic_t *ot, int32_t out_partition,
                        size_t src, int32_t src_partition, int64_t offset,
                        uint32_t ordinal) {
  part_t *p = get_part(e, src, src_partition);
  if (!p)
    return RS_ENOMEM;
  if (offset > p->sup_until)
    p->sup_until = offset;
  pos_t x = {.out = ot->idx,
             .out_partition = out_partition,
             .src = (uint32_t)src,
             .src_partition = src_partition,
             .ordinal = ordinal,
             .offset = offset};
  return posset_add(&e->written, &x);
}

/* Parses "<topic>/<partition>/<offset>/<ordinal>". */
static int parse_src_header(const rs_engine_t *e, const char *v, size_t len,
                            size_t *src, int32_t *partition, int64_t *offset,
                            uint32_t *ordinal) {
  char buf[320];
  if (len >= sizeof buf)
    return -1;
  memcpy(buf, v, len);
  buf[len] = '\0';
  char *slash = strchr(buf, '/');
  if (!slash)
    return -1;
  *slash = '\0';
  ssize_t s = source_of_topic(e, buf);
  long long p, o;
  unsigned ord;
  char tail;
  if (s < 0 || sscanf(slash + 1, "%lld/%lld/%u%c", &p, &o, &ord, &tail) != 3 ||
      p < 0 || p > INT32_MAX || o < 0)
    return -1;
  *src = (size_t)s;
  *partition = (int32_t)p;
  *offset = o;
  *ordinal = ord;
  return 0;
}

/* exactly_once at start: learns the partition count of every output topic,
 * stores an output end for partitions that have none yet (the first start
 * writes a checkpoint with the current ends), then reads every output
 * partition from its stored end to its current end and records, per
 * (output partition, input partition), the highest source position
 * already written. Replay then suppresses exactly those outputs. */
static int eo_prepare(rs_engine_t *e, char *errstr, size_t errstr_size) {
  int rc = 0;
  for (size_t k = 0; k < e->n_outs && !rc; k++) {
    outtopic_t *ot = e->outs[k];
    ot->n_parts = topic_partitions(e->producer, ot->rkt, NULL);
    if (ot->n_parts <= 0) {
      rs_log(RS_LOG_WARN, "engine",
             "output topic %s: no partition metadata (does it exist?); "
             "producing to it will fail",
             ot->name);
      continue;
    }
    rc = ensure_track(ot, ot->n_parts - 1);
  }
  if (rc)
    return rc;
  rd_kafka_conf_t *c = NULL;
  rc = rs_kafka_conf_new(e->cfg, e->bootstrap, RS_CLIENT_CONSUMER, &c, errstr,
                         errstr_size);
  if (!rc)
    rc = rs_kafka_conf_set(c, "auto.offset.reset", "earliest", errstr,
                           errstr_size);
  if (!rc) /* the end is known also when the tail holds no records */
    rc = rs_kafka_conf_set(c, "enable.partition.eof", "true", errstr,
                           errstr_size);
  if (!rc) /* read to the high watermark, whoever else writes there */
    rc = rs_kafka_conf_set(c, "isolation.level", "read_uncommitted", errstr,
                           errstr_size);
  if (rc) {
    if (c)
      rd_kafka_conf_destroy(c);
    return rc;
  }
  char kerr[512];
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, kerr, sizeof kerr);
  if (!rk) {
    rd_kafka_conf_destroy(c);
    return rs_seterr(errstr, errstr_size, RS_EKAFKA,
                     "exactly_once: cannot create the output reader: %s", kerr);
  }
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
  /* The end to read up to, per (output topic, partition), in list order. */
  int64_t *ends = NULL;
  size_t n_new = 0;
  rs_offset_t *init = NULL;
  size_t n_total = 0;
  for (size_t k = 0; k < e->n_outs; k++)
    n_total += (size_t)(e->outs[k]->n_parts > 0 ? e->outs[k]->n_parts : 0);
  ends = rs_calloc(n_total + 1, sizeof(*ends));
  init = rs_calloc(n_total + 1, sizeof(*init));
  if (!ends || !init)
    rc = RS_ENOMEM;
  for (size_t k = 0; k < e->n_outs && !rc; k++) {
    outtopic_t *ot = e->outs[k];
    for (int32_t i = 0; i < ot->n_parts && !rc; i++) {
      int64_t lo = 0, hi = 0;
      rd_kafka_resp_err_t err =
          rd_kafka_query_watermark_offsets(rk, ot->name, i, &lo, &hi, 10000);
      if (err) {
        rc = rs_seterr(errstr, errstr_size, rs_err_from_kafka(err),
                       "exactly_once: cannot read the end of %s [%d]: %s",
                       ot->name, (int)i, rd_kafka_err2str(err));
        break;
      }
      if (ot->stored_end[i] < 0) {
        /* Never checkpointed: everything up to here predates this state. */
        ot->stored_end[i] = ot->acked_end[i] = hi;
        init[n_new++] =
            (rs_offset_t){.topic = ot->name, .partition = i, .next_offset = hi};
        continue;
      }
      int64_t from = ot->stored_end[i] > lo ? ot->stored_end[i] : lo;
      if (from >= hi)
        continue;
      ends[l->cnt] = hi;
      rd_kafka_topic_partition_list_add(l, ot->name, i)->offset = from;
    }
  }
  if (!rc && n_new > 0 && rs_store_checkpoint(e->store, NULL, init, n_new))
    rc = rs_seterr(errstr, errstr_size, RS_ESTATE,
                   "state %s: cannot store the output ends: %s",
                   rs_store_dir(e->store), rs_store_errmsg(e->store));
  int remaining = l->cnt;
  if (!rc && remaining > 0) {
    rd_kafka_resp_err_t err = rd_kafka_assign(rk, l);
    if (err)
      rc = rs_seterr(errstr, errstr_size, rs_err_from_kafka(err),
                     "exactly_once: cannot read the output topics: %s",
                     rd_kafka_err2str(err));
  }
  uint64_t last_progress = rs_now_ns();
  while (!rc && remaining > 0) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (!m) {
      if (rs_now_ns() - last_progress > 60ull * 1000000000u)
        rc = rs_seterr(errstr, errstr_size, RS_EKAFKA,
                       "exactly_once: reading the output topics made no "
                       "progress for 60 s (%d partitions left)",
                       remaining);
      continue;
    }
    const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
    int idx = -1;
    for (int j = 0; j < l->cnt; j++)
      if (l->elems[j].partition == m->partition &&
          !strcmp(l->elems[j].topic, topic))
        idx = j;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (idx >= 0 && ends[idx] >= 0 && m->offset >= ends[idx]) {
        ends[idx] = -1;
        remaining--;
      }
      rd_kafka_message_destroy(m);
      continue;
    }
    if (m->err) {
      rs_log(RS_LOG_WARN, "engine", "exactly_once: output scan: %s",
             rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
      continue;
    }
    last_progress = rs_now_ns();
    outtopic_t *ot = find_out(e, topic);
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t vlen = 0;
    size_t src;
    int32_t sp;
    int64_t so;
    uint32_t ord;
    e->stats.scanned_outputs++;
    if (ot && !rd_kafka_message_headers(m, &h) &&
        !rd_kafka_header_get_last(h, SRC_HEADER, &v, &vlen) &&
        !parse_src_header(e, v, vlen, &src, &sp, &so, &ord))
      rc = note_written(e, ot, m->partition, src, sp, so, ord);
    if (idx >= 0 && ends[idx] >= 0 && m->offset + 1 >= ends[idx]) {
      ends[idx] = -1;
      remaining--;
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_topic_partition_list_destroy(l);
  rs_free(ends);
  rs_free(init);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  if (!rc && e->stats.scanned_outputs)
    rs_log(RS_LOG_INFO, "engine",
           "exactly_once: read %llu outputs written since the last "
           "checkpoint; their regenerated copies will be suppressed",
           (unsigned long long)e->stats.scanned_outputs);
  return rc;
}

/* Serves `recstream state checkpoint` for this running instance: right
 * after a checkpoint, the database is a consistent savepoint. */
static void savepoint(rs_engine_t *e) {
  e->savepoint_requested = 0;
  int rc = rs_state_savepoint_serve(e->store, e->cfg->state.dir);
  if (rc == 0)
    rs_log(RS_LOG_INFO, "engine", "savepoint written on request");
  else if (rc != RS_ENOENT)
    rs_log(RS_LOG_WARN, "engine", "savepoint request failed: %s",
           rs_strerror(rc));
}

static void on_sigusr1(uv_signal_t *h, int signum) {
  rs_engine_t *e = h->data;
  e->savepoint_requested = 1;
  if (e->state == ST_RUNNING)
    request_checkpoint(e);
}

/* Stored input positions must lie within their partitions: one past the
 * end means the state belongs to another log (a recreated topic, another
 * cluster, a restarted embedded broker), which no replay can reconcile.
 * One before the start means retention removed records the state never
 * saw: said loudly, then processing goes on from the log's start. */
static int check_stored_offsets(rs_engine_t *e, char *errstr,
                                size_t errstr_size) {
  for (size_t s = 0; s < e->cfg->n_sources; s++)
    for (int32_t i = 0; i < e->n_parts[s]; i++) {
      part_t *p = e->parts[s][i];
      if (!p || p->stored_offset < 0)
        continue;
      const char *topic = e->cfg->sources[s].topic;
      int64_t lo = 0, hi = 0;
      rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
          e->consumer, topic, i, &lo, &hi, 10000);
      if (err) {
        rs_log(RS_LOG_WARN, "engine",
               "%s [%d]: cannot check the stored offset against the "
               "partition: %s",
               topic, (int)i, rd_kafka_err2str(err));
        continue;
      }
      if (p->stored_offset > hi)
        return rs_seterr(
            errstr, errstr_size, RS_ESTATE,
            "state directory %s says %s [%d] was processed up to offset "
            "%lld, but the partition ends at %lld: the state belongs to "
            "another log (recreated topic, other cluster, or a restarted "
            "embedded broker). Start over with 'recstream run "
            "--reset-state', or point state.dir elsewhere",
            rs_store_dir(e->store), topic, (int)i, (long long)p->stored_offset,
            (long long)hi);
      if (p->stored_offset < lo)
        rs_log(RS_LOG_WARN, "engine",
               "%s [%d]: the state stopped at offset %lld but the partition "
               "now starts at %lld (retention): %lld records are gone and "
               "their effect is missing from the state; rebuild with "
               "'recstream replay' from an archive if that matters",
               topic, (int)i, (long long)p->stored_offset, (long long)lo,
               (long long)(lo - p->stored_offset));
    }
  return 0;
}

/* Warns when records of two sources with different partition counts meet
 * in one operator: its state is kept per input partition, so one key's
 * records from the two topics land in different partitions' state and
 * never meet (e.g. a loopback topic auto-created with another count than
 * the feedback topic: mf_update's unclicked learning is then lost without
 * an error). A warning, not a refusal: the operator may not be keyed the
 * way the topics are. Sources whose count is unknown (missing topic) are
 * not compared; an unreachable cluster ends the check at once. */
static void check_copartition(rs_engine_t *e) {
  const rs_config_t *cfg = e->cfg;
  if (!e->consumer || cfg->n_sources < 2)
    return;
  int32_t *parts = rs_calloc(cfg->n_sources, sizeof(int32_t));
  if (!parts)
    return;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  for (size_t s = 0; s < cfg->n_sources && !err; s++)
    parts[s] = topic_partitions_of(e->consumer, cfg->sources[s].topic, &err);
  size_t op, s1, s2;
  if (!err && rs_graph_copartition(e->g, parts, &op, &s1, &s2) == 1)
    rs_log(RS_LOG_WARN, "engine",
           "operator '%s' reads records of source '%s' (topic %s, %d "
           "partitions) and of source '%s' (topic %s, %d partitions): its "
           "state is kept per input partition, so records of one key from "
           "the two topics do not meet; give the topics the same partition "
           "count and partitioner (docs/CONFIG.md, sources)",
           e->g->nodes[op].name, cfg->sources[s1].name, cfg->sources[s1].topic,
           (int)parts[s1], cfg->sources[s2].name, cfg->sources[s2].topic,
           (int)parts[s2]);
  rs_free(parts);
}

/* Runs before the loop (blocking calls allowed). */
static int prepare_state(rs_engine_t *e, char *errstr, size_t errstr_size) {
  size_t n_inputs = 0;
  int rc = load_offsets(e, &n_inputs, errstr, errstr_size);
  if (!rc && n_inputs == 0 && !e->opts.state_reset && !e->replay)
    rc = check_state_present(e, errstr, errstr_size);
  if (!rc && n_inputs > 0)
    rc = check_stored_offsets(e, errstr, errstr_size);
  if (!rc && e->eo)
    rc = eo_prepare(e, errstr, errstr_size);
  if (!rc)
    check_copartition(e); /* advisory: after the checks that can refuse */
  return rc;
}

/* ------------------------------------------------------- lifecycle */

static void close_cb(uv_handle_t *h) {
  rs_engine_t *e = h->data;
  e->handles_open--;
}

static void close_all(rs_engine_t *e) {
  /* Once these return, librdkafka calls on_queue_event no more and the
   * async handles can close. */
  if (e->cq)
    rd_kafka_queue_cb_event_enable(e->cq, NULL, NULL);
  if (e->mq)
    rd_kafka_queue_cb_event_enable(e->mq, NULL, NULL);
  if (e->pq)
    rd_kafka_queue_cb_event_enable(e->pq, NULL, NULL);
  uv_mutex_lock(&e->stop_lock);
  atomic_store(&e->loop_running, 0);
  uv_mutex_unlock(&e->stop_lock);
  rs_http_close(e->http);
  uv_handle_t *hs[] = {
      (uv_handle_t *)&e->cwake,         (uv_handle_t *)&e->pwake,
      (uv_handle_t *)&e->idle,          (uv_handle_t *)&e->commit_timer,
      (uv_handle_t *)&e->pause_timer,   (uv_handle_t *)&e->async,
      (uv_handle_t *)&e->sigint,        (uv_handle_t *)&e->sigterm,
      (uv_handle_t *)&e->order_timer,   (uv_handle_t *)&e->sigusr1,
      (uv_handle_t *)&e->progress_timer};
  for (size_t i = 0; i < RS_ARRAY_SIZE(hs); i++)
    if (!uv_is_closing(hs[i])) {
      e->handles_open++;
      uv_close(hs[i], close_cb);
    }
  if (!uv_is_closing((uv_handle_t *)&e->idle_timer)) {
    e->handles_open++;
    uv_close((uv_handle_t *)&e->idle_timer, close_cb);
  }
}

static void maybe_finish(rs_engine_t *e) {
  if (e->state != ST_STOPPING || e->inflight_records > 0)
    return;
  e->state = ST_DONE;
  close_all(e);
}

static void begin_stop(rs_engine_t *e) {
  if (e->state != ST_RUNNING)
    return;
  if (e->feed) {
    /* rs_engine_run_feed() runs no loop: it sees the state and stops. */
    e->state = ST_STOPPING;
    return;
  }
  e->state = ST_STOPPING;
  uv_idle_stop(&e->idle);
  pause_input(e, 1); /* stop fetching */
  rs_log(RS_LOG_INFO, "engine",
         "stopping: %lld output records in flight, waiting for their "
         "delivery reports",
         (long long)e->inflight_records);
  maybe_finish(e);
}

static void on_async(uv_async_t *h) {
  rs_engine_t *e = h->data;
  if (e->state == ST_RUNNING)
    e->stats.interrupted = 1;
  begin_stop(e);
}

static void on_signal(uv_signal_t *h, int signum) {
  rs_engine_t *e = h->data;
  if (e->state == ST_RUNNING)
    e->stats.interrupted = 1;
  if (++e->signals == 1) {
    rs_log(RS_LOG_INFO, "engine", "%s received: draining",
           signum == SIGINT ? "SIGINT" : "SIGTERM");
    begin_stop(e);
  } else {
    rs_log(RS_LOG_WARN, "engine",
           "second signal: stopping without waiting for %lld in-flight "
           "outputs (their inputs are not committed)",
           (long long)e->inflight_records);
    if (e->state == ST_RUNNING)
      e->state = ST_STOPPING;
    if (e->state == ST_STOPPING) {
      if (!e->err && e->inflight_records > 0) {
        e->err = RS_EDELIVERY;
        snprintf(e->errstr, sizeof e->errstr,
                 "interrupted by a second signal with %lld outputs not yet "
                 "acknowledged; their inputs were not committed and will be "
                 "processed again",
                 (long long)e->inflight_records);
      }
      e->state = ST_DONE;
      close_all(e);
    }
  }
}

static int create_clients(rs_engine_t *e, char *errstr, size_t errstr_size) {
  const rs_config_t *cfg = e->cfg;
  rd_kafka_conf_t *pc = NULL, *cc = NULL;
  int rc = rs_kafka_conf_new(cfg, e->bootstrap, RS_CLIENT_PRODUCER, &pc, errstr,
                             errstr_size);
  if (rc)
    return rc;
  rd_kafka_conf_set_opaque(pc, e);
  rd_kafka_conf_set_dr_msg_cb(pc, on_delivery);
  rd_kafka_conf_set_error_cb(pc, on_kafka_error);
  rd_kafka_conf_set_log_cb(pc, on_kafka_log);
  char kerr[512];
  e->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pc, kerr, sizeof kerr);
  if (!e->producer) {
    rd_kafka_conf_destroy(pc);
    return rs_seterr(errstr, errstr_size, RS_EKAFKA,
                     "cannot create the producer: %s", kerr);
  }
  rc = rs_kafka_conf_new(cfg, e->bootstrap, RS_CLIENT_CONSUMER, &cc, errstr,
                         errstr_size);
  if (rc)
    return rc;
  rd_kafka_conf_set_opaque(cc, e);
  rd_kafka_conf_set_rebalance_cb(cc, on_rebalance);
  rd_kafka_conf_set_offset_commit_cb(cc, on_commit_result);
  rd_kafka_conf_set_error_cb(cc, on_kafka_error);
  rd_kafka_conf_set_log_cb(cc, on_kafka_log);
  e->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cc, kerr, sizeof kerr);
  if (!e->consumer) {
    rd_kafka_conf_destroy(cc);
    return rs_seterr(errstr, errstr_size, RS_EKAFKA,
                     "cannot create the consumer: %s", kerr);
  }
  rd_kafka_poll_set_consumer(e->consumer);
  e->cq = rd_kafka_queue_get_consumer(e->consumer);
  e->mq = rd_kafka_queue_new(e->consumer);
  e->pq = rd_kafka_queue_get_main(e->producer);
  return 0;
}

static int start_embedded(rs_engine_t *e, char *errstr, size_t errstr_size) {
  const rs_config_t *cfg = e->cfg;
  int rc =
      rs_mock_start(cfg->kafka.embedded_brokers, &e->mock, errstr, errstr_size);
  if (rc)
    return rc;
  int dflt = cfg->kafka.embedded_partitions;
  for (size_t i = 0; i < cfg->n_sources && !rc; i++) {
    const rs_source_cfg_t *s = &cfg->sources[i];
    char dlq[512];
    snprintf(dlq, sizeof dlq, "%s.dlq", s->topic);
    rc = rs_mock_create_topic(e->mock, s->topic,
                              s->partitions ? s->partitions : dflt, errstr,
                              errstr_size);
    if (!rc)
      rc = rs_mock_create_topic(e->mock, dlq, dflt, errstr, errstr_size);
  }
  for (size_t i = 0; i < cfg->n_sinks && !rc; i++)
    rc = rs_mock_create_topic(
        e->mock, cfg->sinks[i].topic,
        cfg->sinks[i].partitions ? cfg->sinks[i].partitions : dflt, errstr,
        errstr_size);
  for (size_t i = 0; i < cfg->n_operators && !rc; i++)
    if (cfg->operators[i].dead_letter_topic)
      rc = rs_mock_create_topic(e->mock, cfg->operators[i].dead_letter_topic,
                                dflt, errstr, errstr_size);
  if (!rc) {
    e->bootstrap = rs_strdup(e->mock->bootstraps);
    rs_log(RS_LOG_INFO, "engine", "embedded broker listening on %s",
           e->bootstrap);
  }
  return rc;
}

/* One instance of operator node i; with an experiment x, variant v's:
 * column family "name#V", the variant's option overrides, host->variant. */
static int new_op(rs_engine_t *e, size_t i, const rs_experiment_t *x,
                  uint32_t v, struct rs_op **slot, char *errstr,
                  size_t errstr_size) {
  const rs_graph_t *g = e->g;
  const rs_gnode_t *gn = &g->nodes[i];
  struct rs_op *op = rs_calloc(1, sizeof(*op));
  if (!op)
    return RS_ENOMEM;
  *slot = op;
  op->e = e;
  op->node = i;
  op->def = gn->def;
  op->host = e->host;
  op->x = x;
  op->vidx = v;
  const char *name = gn->name;
  if (x) {
    snprintf(op->cf_name, sizeof op->cf_name, "%s#%s", gn->name, x->v[v].name);
    name = op->cf_name;
    op->host.variant = x->v[v].name;
  }
  op->seed = rs_op_seed(name);
  op->cf = rs_store_cf(e->store, name);
  op->ctx = rs_calloc(1, gn->def->ctx_size ? gn->def->ctx_size : 1);
  if (!op->ctx)
    return RS_ENOMEM;
  char label[200];
  snprintf(label, sizeof label, "operators '%s'", name);
  const rs_ynode_t *base = e->cfg->operators[gn->cfg_index].node;
  rs_ynode_t *m = x ? rs_experiments_options(x, v, gn->name, base) : NULL;
  if (x && !m)
    return RS_ENOMEM;
  int rc = rs_options_apply(e->cfg, gn->def, m ? m : base, label, op->ctx,
                            errstr, errstr_size);
  rs_experiments_free_map(m);
  if (rc)
    return rc;
  op->c_in = host_counter(op, "records_in", "records handed to the operator");
  op->c_out = host_counter(op, "records_out", "records the operator emitted");
  op->c_dlq = host_counter(op, "dead_lettered",
                           "records sent to the dead-letter topic");
  return 0;
}

/* init() of an instance new_op() made. Every instance exists before the
 * first init() runs, so an operator may look up a peer (host->peer_open,
 * peer_context) declared after it in the config. */
static int init_op(struct rs_op *op, char *errstr, size_t errstr_size) {
  if (RS_OPDEF_HAS(op->def, init)) {
    char oerr[512] = "";
    int rc = op->def->init(op, op->ctx, &op->host, oerr, sizeof oerr);
    if (rc)
      return rs_seterr(errstr, errstr_size, rc < 0 ? rc : RS_EINTERNAL,
                       "operator '%s' (%s) failed to start: %s",
                       op->x ? op->cf_name : op->e->g->nodes[op->node].name,
                       op->def->name, oerr[0] ? oerr : rs_strerror(rc));
  }
  op->inited = 1;
  return 0;
}

static int init_operators(rs_engine_t *e, char *errstr, size_t errstr_size) {
  const rs_graph_t *g = e->g;
  e->nodes = rs_calloc(g->n, sizeof(*e->nodes));
  if (!e->nodes)
    return RS_ENOMEM;
  e->host = host_api_template;
  for (size_t i = 0; i < g->n; i++) {
    const rs_gnode_t *gn = &g->nodes[i];
    node_rt_t *n = &e->nodes[i];
    n->out = rs_calloc(gn->n_ports ? gn->n_ports : 1, sizeof(outbuf_t));
    if (!n->out)
      return RS_ENOMEM;
    n->n_ports = gn->n_ports;
  }
  /* Who reads each output port (host->port_wanted). */
  for (size_t i = 0; i < g->n; i++)
    for (uint32_t k = 0; k < e->nodes[i].n_ports; k++)
      e->nodes[i].out[k].wanted = rs_graph_port_wanted(
          g, i, k, e->opts.suppress_output, &e->nodes[i].out[k].withheld_sinks);
  for (size_t i = 0; i < g->n; i++) {
    const rs_gnode_t *gn = &g->nodes[i];
    node_rt_t *n = &e->nodes[i];
    if (gn->kind == RS_NODE_SINK) {
      n->sink = out_topic(e, e->cfg->sinks[gn->cfg_index].topic);
      if (!n->sink)
        return rs_seterr(errstr, errstr_size, RS_EKAFKA,
                         "sink '%s': cannot create topic handle: %s", gn->name,
                         rd_kafka_err2str(rd_kafka_last_error()));
      continue;
    }
    if (gn->kind != RS_NODE_OPERATOR)
      continue;
    const rs_experiment_t *x = rs_experiments_for_node(g->exp, i);
    struct rs_op **link = &n->op;
    for (uint32_t v = 0; v < (x ? x->n : 1); v++) {
      int rc = new_op(e, i, x, v, link, errstr, errstr_size);
      if (rc)
        return rc;
      link = &(*link)->vnext;
    }
  }
  for (size_t i = 0; i < g->n; i++)
    for (struct rs_op *op = e->nodes[i].op; op; op = op->vnext) {
      int rc = init_op(op, errstr, errstr_size);
      if (rc)
        return rc;
    }
  return 0;
}

int rs_engine_new(const rs_config_t *cfg, const rs_graph_t *g,
                  const rs_engine_opts_t *opts, rs_engine_t **out, char *errstr,
                  size_t errstr_size) {
  *out = NULL;
  rs_engine_t *e = rs_calloc(1, sizeof(*e));
  if (!e)
    return RS_ENOMEM;
  e->cfg = cfg;
  e->g = g;
  if (opts)
    e->opts = *opts;
  uv_mutex_init(&e->stop_lock);
  rs_arena_init(&e->arena, 256 * 1024);
  int rc = 0;
  e->parts = rs_calloc(cfg->n_sources, sizeof(*e->parts));
  e->n_parts = rs_calloc(cfg->n_sources, sizeof(*e->n_parts));
  e->msgs = rs_calloc((size_t)cfg->processing.batch_size, sizeof(*e->msgs));
  e->inrecs = rs_calloc((size_t)cfg->processing.batch_size, sizeof(*e->inrecs));
  if (!e->parts || !e->n_parts || !e->msgs || !e->inrecs)
    rc = RS_ENOMEM;
  if (!rc && !strcmp(cfg->kafka.brokers, "embedded"))
    rc = start_embedded(e, errstr, errstr_size);
  else if (!rc && !(e->bootstrap = rs_strdup(cfg->kafka.brokers)))
    rc = RS_ENOMEM;
  if (!rc)
    rc = rs_codec_new(&e->codec, NULL, errstr, errstr_size);
  const char *cp = getenv("RECSTREAM_CRASH_POINT");
  const char *colon = cp ? strchr(cp, ':') : NULL;
  if (colon && (size_t)(colon - cp) < sizeof e->crash_name) {
    memcpy(e->crash_name, cp, (size_t)(colon - cp));
    e->crash_countdown = strtol(colon + 1, NULL, 10);
  }
  /* Without outputs there is nothing to make exactly-once. */
  e->eo = cfg->state.guarantee == RS_GUARANTEE_EXACTLY_ONCE &&
          !e->opts.suppress_output;
  e->replay = e->opts.replay != NULL;
  /* A replay is reproducible: always in deterministic order. */
  e->ordered = cfg->processing.order == RS_ORDER_DETERMINISTIC || e->replay;
  if (e->replay)
    e->opts.exit_at_end = 1;
  if (!rc)
    rc = open_state(e, errstr, errstr_size);
  if (!rc)
    rc = create_clients(e, errstr, errstr_size);
  if (!rc)
    rc = init_operators(e, errstr, errstr_size);
  /* exactly_once needs every output topic up front (partition counts, the
   * output scan): the dead-letter topics too. */
  if (!rc && e->eo && e->opts.dlq_topic && !out_topic(e, e->opts.dlq_topic))
    rc = RS_ENOMEM;
  /* Those dlq_name() can give: one per source that reaches the operator
   * (no other source's records get there; rs_graph_build checked exactly
   * these against the source topics). */
  for (size_t i = 0; !rc && e->eo && !e->opts.dlq_topic && i < e->g->n; i++) {
    if (e->g->nodes[i].kind != RS_NODE_OPERATOR)
      continue;
    for (size_t s = 0; !rc && s < cfg->n_sources; s++) {
      char dlq[512];
      if (rs_graph_reaches(e->g, s, i) &&
          !out_topic(e, rs_graph_dlq_topic(cfg, e->g->nodes[i].cfg_index, s,
                                           dlq, sizeof dlq)))
        rc = RS_ENOMEM;
    }
  }
  if (rc) {
    if (rc == RS_ENOMEM && errstr && !errstr[0])
      rs_seterr(errstr, errstr_size, rc, "out of memory");
    rs_engine_destroy(e);
    return rc;
  }
  *out = e;
  return 0;
}

static void on_progress_timer(uv_timer_t *h) {
  rs_engine_t *e = h->data;
  rs_engine_stats_t st;
  rs_engine_get_stats(e, &st);
  e->opts.progress(e->opts.progress_opaque, &st);
}

/* Replay: assigns every range directly, at the offset stored with the
 * state when there is one (an interrupted replay resumed), else at the
 * range's start. */
static int replay_assign(rs_engine_t *e, char *errstr, size_t errstr_size) {
  rd_kafka_topic_partition_list_t *l =
      rd_kafka_topic_partition_list_new((int)e->opts.n_replay);
  int rc = 0;
  for (size_t i = 0; i < e->opts.n_replay && !rc; i++) {
    const rs_replay_part_t *r = &e->opts.replay[i];
    ssize_t s = source_of_topic(e, r->topic);
    part_t *p = s >= 0 ? get_part(e, (size_t)s, r->partition) : NULL;
    if (s < 0 || r->start < 0 || r->end < r->start) {
      rc = rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "replay: bad range %s [%d] %lld..%lld", r->topic,
                     (int)r->partition, (long long)r->start, (long long)r->end);
      break;
    }
    if (!p) {
      rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
      break;
    }
    if (p->assigned) {
      rc = rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "replay: %s [%d] listed twice", r->topic,
                     (int)r->partition);
      break;
    }
    p->assigned = 1;
    e->n_assigned++;
    p->generation++;
    p->end_offset = r->end;
    int64_t start = p->stored_offset >= 0 ? p->stored_offset : r->start;
    /* Nothing stored yet counts as "stored at the start": the final
     * checkpoint then records every partition, even one with nothing to
     * replay, so that a `run` after it starts exactly there. */
    p->next_offset = start;
    p->resumed = 1;
    rs_log(RS_LOG_INFO, "engine",
           "replay %s [%d]: offsets %lld..%lld (%lld records), from %s",
           r->topic, (int)r->partition, (long long)start, (long long)r->end,
           (long long)(r->end > start ? r->end - start : 0),
           p->stored_offset >= 0 ? "the offset stored with the state (resumed)"
                                 : "the start of the range");
    if (start >= r->end)
      continue; /* nothing to read: already at its end */
    rd_kafka_topic_partition_list_add(l, r->topic, r->partition)->offset =
        start;
    rd_kafka_queue_t *q =
        rd_kafka_queue_get_partition(e->consumer, r->topic, r->partition);
    if (q) {
      rd_kafka_queue_forward(q, e->mq);
      rd_kafka_queue_destroy(q);
    }
  }
  if (!rc && l->cnt > 0) {
    rd_kafka_resp_err_t kerr = rd_kafka_assign(e->consumer, l);
    if (kerr)
      rc = rs_seterr(errstr, errstr_size, rs_err_from_kafka(kerr),
                     "replay: cannot assign the source partitions: %s",
                     rd_kafka_err2str(kerr));
  }
  rd_kafka_topic_partition_list_destroy(l);
  return rc;
}

int rs_engine_run(rs_engine_t *e, char *errstr, size_t errstr_size) {
  if (e->state != ST_INIT)
    return rs_seterr(errstr, errstr_size, RS_EINVAL, "engine already ran");
  const rs_config_t *cfg = e->cfg;
  uv_loop_init(&e->loop);
  e->loop_inited = 1;
  uv_handle_t *hs[] = {
      (uv_handle_t *)&e->cwake,         (uv_handle_t *)&e->pwake,
      (uv_handle_t *)&e->idle,          (uv_handle_t *)&e->commit_timer,
      (uv_handle_t *)&e->pause_timer,   (uv_handle_t *)&e->async,
      (uv_handle_t *)&e->sigint,        (uv_handle_t *)&e->sigterm,
      (uv_handle_t *)&e->order_timer,   (uv_handle_t *)&e->sigusr1,
      (uv_handle_t *)&e->progress_timer};
  uv_async_init(&e->loop, &e->cwake, on_consumer_ready);
  uv_timer_init(&e->loop, &e->order_timer);
  uv_timer_init(&e->loop, &e->progress_timer);
  uv_timer_init(&e->loop, &e->idle_timer);
  e->idle_timer.data = e;
  uv_signal_init(&e->loop, &e->sigusr1);
  uv_async_init(&e->loop, &e->pwake, on_producer_ready);
  uv_idle_init(&e->loop, &e->idle);
  uv_timer_init(&e->loop, &e->commit_timer);
  uv_timer_init(&e->loop, &e->pause_timer);
  uv_async_init(&e->loop, &e->async, on_async);
  uv_signal_init(&e->loop, &e->sigint);
  uv_signal_init(&e->loop, &e->sigterm);
  for (size_t i = 0; i < RS_ARRAY_SIZE(hs); i++)
    hs[i]->data = e;
  if (cfg->http.port >= 0) {
    int hrc = rs_http_start(&e->loop, e, cfg->http.bind, cfg->http.port,
                            &e->http, errstr, errstr_size);
    if (hrc)
      return hrc;
    atomic_store(&e->http_port, rs_http_port(e->http));
  }

  e->stats.run_start_ns = rs_now_ns();
  int prc = prepare_state(e, errstr, errstr_size);
  e->stats.prepare_ns = rs_now_ns() - e->stats.run_start_ns;
  if (prc)
    return prc;

  if (e->replay) {
    int arc = replay_assign(e, errstr, errstr_size);
    if (arc)
      return arc;
  } else {
    rd_kafka_topic_partition_list_t *topics =
        rd_kafka_topic_partition_list_new((int)cfg->n_sources);
    for (size_t i = 0; i < cfg->n_sources; i++)
      rd_kafka_topic_partition_list_add(topics, cfg->sources[i].topic,
                                        RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(e->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (kerr)
      return rs_seterr(errstr, errstr_size, rs_err_from_kafka(kerr),
                       "cannot subscribe to the source topics: %s",
                       rd_kafka_err2str(kerr));
  }

  e->state = ST_RUNNING;
  rd_kafka_queue_cb_event_enable(e->cq, on_queue_event, &e->cwake);
  rd_kafka_queue_cb_event_enable(e->mq, on_queue_event, &e->cwake);
  rd_kafka_queue_cb_event_enable(e->pq, on_queue_event, &e->pwake);
  uint64_t ci = (uint64_t)cfg->state.commit_interval_ms;
  uv_timer_start(&e->commit_timer, on_commit_timer, ci, ci);
  if (e->opts.handle_signals) {
    uv_signal_start(&e->sigint, on_signal, SIGINT);
    uv_signal_start(&e->sigterm, on_signal, SIGTERM);
  }
  uv_signal_start(&e->sigusr1, on_sigusr1, RS_STATE_SAVEPOINT_SIGNAL);
  if (e->opts.progress && e->opts.progress_ms)
    uv_timer_start(&e->progress_timer, on_progress_timer, e->opts.progress_ms,
                   e->opts.progress_ms);
  atomic_store(&e->loop_running, 1);
  if (atomic_load(&e->stop_requested)) {
    e->stats.interrupted = 1;
    begin_stop(e);
  }
  /* Anything queued before the wakeups were enabled. */
  serve_events(e);
  drain(e);
  uv_run(&e->loop, UV_RUN_DEFAULT);

  /* The loop has ended: blocking calls are allowed from here on. libuv
   * restored SIGUSR1's default action (termination) when its handle
   * closed; the pid file still promises it is harmless. */
  signal(RS_STATE_SAVEPOINT_SIGNAL, SIG_IGN);
  while (rd_kafka_poll(e->producer, 0) > 0)
    ;
  advance(e);
  /* The final checkpoint, when every output is acknowledged (a second
   * signal or a failure leaves the previous one: what was processed since
   * is processed again at the next start). Kafka commits follow
   * checkpoints, never precede them. */
  if (!e->err && e->inflight_records == 0 && write_checkpoint(e, 1) == 0 &&
      e->savepoint_requested)
    savepoint(e);
  for (size_t s = 0; s < cfg->n_sources; s++)
    for (int32_t i = 0; i < e->n_parts[s]; i++)
      if (e->parts[s][i])
        buf_drop(e, e->parts[s][i]);
  rd_kafka_consumer_close(e->consumer);
  if (e->paused) {
    e->stats.paused_ns += rs_now_ns() - e->paused_since;
    e->paused = 0;
  }
  for (size_t i = 0; i < e->g->n; i++)
    if (e->g->nodes[i].kind == RS_NODE_SINK)
      e->stats.records_out += e->nodes[i].produced;
  if (e->err) {
    rs_seterr(errstr, errstr_size, e->err, "%s", e->errstr);
    return e->err;
  }
  return 0;
}

/* The progress callback every opts.progress_ms (it is also how a caller
 * without a loop hears of signals: it may call rs_engine_stop()). */
static void feed_progress(rs_engine_t *e) {
  if (!e->opts.progress || !e->opts.progress_ms)
    return;
  uint64_t now = rs_now_ns();
  if (now - e->feed_last_progress < e->opts.progress_ms * 1000000u)
    return;
  e->feed_last_progress = now;
  rs_engine_stats_t st;
  rs_engine_get_stats(e, &st);
  e->opts.progress(e->opts.progress_opaque, &st);
}

/* Waits until every output in flight is acknowledged (or the engine
 * failed or was stopped); 0 when none is left. */
static int feed_drain_outputs(rs_engine_t *e) {
  uint64_t t0 = rs_now_ns();
  while (e->inflight_records > 0 && !e->err &&
         !atomic_load(&e->stop_requested)) {
    rd_kafka_poll(e->producer, 100);
    feed_progress(e);
    if (rs_now_ns() - t0 > 60ull * 1000000000u) {
      fail(e, RS_EDELIVERY,
           "%lld outputs still unacknowledged after 60 s (is the broker "
           "reachable?)",
           (long long)e->inflight_records);
      break;
    }
  }
  return e->inflight_records > 0;
}

int rs_engine_run_feed(rs_engine_t *e, size_t src,
                       const rs_feed_rec_t *const *parts, const size_t *counts,
                       int32_t n_parts, char *errstr, size_t errstr_size) {
  if (e->state != ST_INIT)
    return rs_seterr(errstr, errstr_size, RS_EINVAL, "engine already ran");
  if (src >= e->cfg->n_sources)
    return rs_seterr(errstr, errstr_size, RS_EINVAL, "no source %zu", src);
  /* Records from files carry no Kafka positions: nothing to make
   * exactly-once against, and nothing of theirs goes to __offsets (the
   * parts are never "assigned"). */
  e->eo = 0;
  e->feed = 1;
  e->feed_src = src;
  snprintf(e->feed_topic, sizeof e->feed_topic, "%s%s",
           RS_FEED_POSITIONS_PREFIX, e->cfg->sources[src].topic);
  e->state = ST_RUNNING;
  e->stats.run_start_ns = rs_now_ns();
  size_t *pos = rs_calloc(n_parts > 0 ? (size_t)n_parts : 1, sizeof(*pos));
  if (!pos)
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  /* Resumed: where the last checkpoint left each partition. */
  rs_offset_t *offs = NULL;
  size_t n_offs = 0;
  int orc = rs_store_read_offsets(e->store, &offs, &n_offs);
  for (size_t i = 0; !orc && i < n_offs; i++) {
    if (strcmp(offs[i].topic, e->feed_topic))
      continue;
    int32_t p = offs[i].partition;
    part_t *pp = p >= 0 && p < n_parts ? get_part(e, src, p) : NULL;
    if (!pp || offs[i].next_offset < 0 ||
        (uint64_t)offs[i].next_offset > counts[p]) {
      orc = rs_seterr(errstr, errstr_size, RS_ESTATE,
                      "state %s: a stored position in the files (partition "
                      "%d, record %lld) lies beyond them: these are not the "
                      "files this state was built from",
                      rs_store_dir(e->store), (int)p,
                      (long long)offs[i].next_offset);
      break;
    }
    pos[p] = (size_t)offs[i].next_offset;
    pp->stored_offset = pp->next_offset = offs[i].next_offset;
  }
  if (offs)
    rs_store_offsets_free(offs, n_offs);
  if (orc) {
    rs_free(pos);
    e->state = ST_DONE;
    if (orc == RS_ESTATE)
      return orc;
    return rs_seterr(errstr, errstr_size, orc,
                     "state %s: cannot read the stored positions: %s",
                     rs_store_dir(e->store), rs_store_errmsg(e->store));
  }
  const size_t max = (size_t)e->cfg->processing.batch_size;
  const uint64_t ci = (uint64_t)e->cfg->state.commit_interval_ms * 1000000u;
  uint64_t last_ckpt = rs_now_ns();
  e->feed_last_progress = last_ckpt;
  while (!e->err && e->state == ST_RUNNING &&
         !atomic_load(&e->stop_requested)) {
    /* The same rule as processing.order deterministic: the partition
     * whose next record has the smallest (timestamp, partition). */
    int32_t best = -1, second = -1;
    for (int32_t p = 0; p < n_parts; p++) {
      if (pos[p] >= counts[p])
        continue;
      if (best < 0 ||
          parts[p][pos[p]].timestamp_ms < parts[best][pos[best]].timestamp_ms) {
        second = best;
        best = p;
      } else if (second < 0 || parts[p][pos[p]].timestamp_ms <
                                   parts[second][pos[second]].timestamp_ms) {
        second = p;
      }
    }
    if (best < 0)
      break;
    size_t k = 0;
    while (k < max && pos[best] + k < counts[best]) {
      const rs_feed_rec_t *r = &parts[best][pos[best] + k];
      if (k > 0 && second >= 0) {
        int64_t ts2 = parts[second][pos[second]].timestamp_ms;
        if (r->timestamp_ms > ts2 || (r->timestamp_ms == ts2 && best > second))
          break;
      }
      e->inrecs[k] = (inrec_t){.key = r->key,
                               .key_len = r->key_len,
                               .value = r->value,
                               .len = r->len,
                               .timestamp_ms = r->timestamp_ms,
                               .offset = (int64_t)(pos[best] + k)};
      k++;
    }
    int rc = process_run(e, src, best, e->inrecs, k);
    pos[best] += k;
    if (rc) {
      fail(e, rc, "%s", e->errstr[0] ? e->errstr : rs_strerror(rc));
      break;
    }
    rd_kafka_poll(e->producer, 0);
    while (over_high_water(e) && !e->err && !atomic_load(&e->stop_requested)) {
      rd_kafka_poll(e->producer, 10);
      feed_progress(e);
    }
    uint64_t now = rs_now_ns();
    if (now - last_ckpt >= ci) {
      if (!feed_drain_outputs(e))
        write_checkpoint(e, 0);
      last_ckpt = rs_now_ns();
    }
    feed_progress(e);
  }
  rs_free(pos);
  /* The final checkpoint, also when stopped, unless outputs are still in
   * flight or it failed (then the last one stays). */
  if (!e->err && !feed_drain_outputs(e))
    write_checkpoint(e, 0);
  e->state = ST_DONE;
  for (size_t i = 0; i < e->g->n; i++)
    if (e->g->nodes[i].kind == RS_NODE_SINK)
      e->stats.records_out += e->nodes[i].produced;
  if (!e->err && atomic_load(&e->stop_requested)) {
    e->stats.interrupted = 1;
    e->err = RS_EINTERNAL;
    snprintf(e->errstr, sizeof e->errstr,
             "interrupted before the end of the files; the state holds what "
             "was processed up to its last checkpoint");
  }
  if (e->err)
    return rs_seterr(errstr, errstr_size, e->err, "%s", e->errstr);
  return 0;
}

void rs_engine_stop(rs_engine_t *e) {
  atomic_store(&e->stop_requested, 1);
  uv_mutex_lock(&e->stop_lock);
  if (atomic_load(&e->loop_running))
    uv_async_send(&e->async);
  uv_mutex_unlock(&e->stop_lock);
}

void rs_engine_get_stats(const rs_engine_t *e, rs_engine_stats_t *out) {
  *out = e->stats;
  uint64_t dlq = 0;
  for (size_t i = 0; e->nodes && i < e->g->n; i++)
    for (const struct rs_op *op = e->nodes[i].op; op; op = op->vnext)
      if (op->c_dlq)
        dlq += op->c_dlq->value;
  out->dead_lettered = dlq;
}

const char *rs_engine_bootstrap(const rs_engine_t *e) {
  return e->bootstrap;
}

uint64_t rs_engine_counter(const rs_engine_t *e, const char *op,
                           const char *counter) {
  for (size_t i = 0; i < e->g->n; i++) {
    if (!e->nodes[i].op || strcmp(e->g->nodes[i].name, op))
      continue;
    uint64_t sum = 0; /* over an experiment's variant instances */
    for (const struct rs_op *o = e->nodes[i].op; o; o = o->vnext)
      for (rs_counter_t *c = o->counters; c; c = c->next)
        if (!strcmp(c->name, counter))
          sum += c->value;
    return sum;
  }
  return 0;
}

void rs_engine_destroy(rs_engine_t *e) {
  if (!e)
    return;
  if (e->loop_inited) {
    if (e->state != ST_DONE) {
      e->state = ST_DONE;
      close_all(e);
    }
    uv_run(&e->loop, UV_RUN_DEFAULT);
    rs_http_destroy(e->http);
    uv_loop_close(&e->loop);
  }
  for (size_t i = 0; e->nodes && i < e->g->n; i++) {
    node_rt_t *n = &e->nodes[i];
    for (struct rs_op *op = n->op, *next; op; op = next) {
      next = op->vnext;
      rs_free(op->vrecs);
      if (op->inited && RS_OPDEF_HAS(op->def, destroy))
        op->def->destroy(op, op->ctx);
      if (op->ctx) {
        rs_options_free(op->def, op->ctx);
        rs_free(op->ctx);
      }
      while (op->counters) {
        rs_counter_t *c = op->counters;
        op->counters = c->next;
        rs_free(c->name);
        rs_free(c->help);
        rs_free(c);
      }
      rs_free(op);
    }
    for (size_t k = 0; k < n->n_ports; k++)
      rs_free(n->out[k].recs);
    rs_free(n->out);
  }
  rs_free(e->nodes);
  for (size_t i = 0; i < e->n_outs; i++)
    out_topic_free(e->outs[i]);
  rs_free(e->outs);
  rs_free(e->written.slots);
  rs_free(e->ords);
  rs_free(e->ords_used);
  rs_free(e->heap);
  rs_free(e->spare_tracker);
  idle_free(e);
  /* Not written (its outputs were never all acknowledged, or the engine
   * failed): the previous checkpoint stays. */
  ck_free(e->ck);
  e->ck = NULL;
  if (e->cq)
    rd_kafka_queue_destroy(e->cq);
  if (e->mq)
    rd_kafka_queue_destroy(e->mq);
  if (e->pq)
    rd_kafka_queue_destroy(e->pq);
  if (e->consumer)
    rd_kafka_destroy(e->consumer);
  if (e->producer) {
    e->destroying = 1;
    rd_kafka_purge(e->producer,
                   RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    while (rd_kafka_poll(e->producer, 0) > 0)
      ;
    rd_kafka_destroy(e->producer);
  }
  for (size_t s = 0; e->parts && s < e->cfg->n_sources; s++) {
    for (int32_t i = 0; i < e->n_parts[s]; i++) {
      part_t *p = e->parts[s][i];
      while (p && p->head) {
        tracker_t *t = p->head;
        p->head = t->next;
        rs_free(t);
      }
      if (p) {
        rs_free(p->buf);
        rs_free(p->bts);
      }
      rs_free(p);
    }
    rs_free(e->parts[s]);
  }
  rs_free(e->parts);
  rs_free(e->n_parts);
  rs_free(e->msgs);
  rs_free(e->inrecs);
  rs_codec_destroy(e->codec);
  rs_buf_free(&e->enc);
  rs_arena_free(&e->arena);
  rs_mock_destroy(e->mock);
  rs_free(e->bootstrap);
  rs_cache_destroy(e->cache);
  rs_store_destroy(e->store);
  if (e->pid_written)
    rs_state_pid_file_remove(e->cfg->state.dir);
  uv_mutex_destroy(&e->stop_lock);
  rs_free(e);
}

/* ------------------------------------------------------- observation */

const rs_graph_t *rs_engine_graph(const rs_engine_t *e) {
  return e->g;
}

int rs_engine_http_port(const rs_engine_t *e) {
  return atomic_load(&((rs_engine_t *)e)->http_port);
}

static int snapshot(const rs_engine_t *e, rs_metrics_snapshot_t *out, int full);

int rs_engine_snapshot(const rs_engine_t *e, rs_metrics_snapshot_t *out) {
  return snapshot(e, out, 1);
}

int rs_engine_snapshot_counts(const rs_engine_t *e,
                              rs_metrics_snapshot_t *out) {
  return snapshot(e, out, 0);
}

static int snapshot(const rs_engine_t *e, rs_metrics_snapshot_t *out,
                    int full) {
  static const char *const states[] = {"init", "running", "stopping", "done"};
  memset(out, 0, sizeof(*out));
  out->g = e->g;
  rs_engine_get_stats(e, &out->stats);
  out->state = states[e->state];
  out->assigned_partitions = e->n_assigned;
  out->ready = e->state == ST_RUNNING && e->n_assigned > 0;
  out->paused = e->paused;
  out->paused_ns =
      e->stats.paused_ns + (e->paused ? rs_now_ns() - e->paused_since : 0);
  out->inflight_records = e->inflight_records;
  out->inflight_bytes = e->inflight_bytes;
  out->producer_queue = e->producer ? rd_kafka_outq_len(e->producer) : -1;
  if (e->cache && full) {
    out->has_cache = 1;
    rs_cache_stats(e->cache, &out->cache);
  }
  size_t nc = 0, np = 0, ni = 0;
  for (size_t i = 0; e->nodes && i < e->g->n; i++)
    for (const struct rs_op *o = e->nodes[i].op; o; o = o->vnext) {
      ni += o->x != NULL;
      for (rs_counter_t *c = o->counters; c; c = c->next)
        nc++;
    }
  for (size_t s = 0; e->parts && s < e->cfg->n_sources; s++)
    for (int32_t i = 0; i < e->n_parts[s]; i++)
      np += e->parts[s][i] != NULL;
  out->node_out = rs_calloc(e->g->n ? e->g->n : 1, sizeof(uint64_t));
  out->node_hist = rs_calloc(e->g->n ? e->g->n : 1, sizeof(rs_histogram_t));
  out->node_e2e = rs_calloc(e->g->n ? e->g->n : 1, sizeof(rs_lat_histogram_t));
  out->ack = e->ack_hist;
  if (e->store && full) {
    rs_store_stats_t ss;
    rs_store_stats(e->store, &ss);
    out->has_store = 1;
    out->block_cache_bytes = ss.block_cache_bytes;
    out->block_cache_capacity = ss.block_cache_capacity;
    out->checkpoint_last_bytes = ss.checkpoint_last_bytes;
    out->checkpoint_total_bytes = ss.checkpoint_total_bytes;
    int ncf = rs_store_cf_count(e->store);
    out->cfs = rs_calloc(ncf > 0 ? (size_t)ncf : 1, sizeof(*out->cfs));
    for (int i = 0; out->cfs && i < ncf; i++) {
      rs_store_cf_stats_t cs;
      if (rs_store_cf_stats(e->store, i, &cs))
        continue;
      out->cfs[out->n_cfs++] = (rs_metric_cf_t){
          rs_store_cf_name(e->store, i), cs.estimated_keys, cs.sst_bytes,
          cs.memtable_bytes, cs.pending_compaction_bytes};
    }
  }
  out->counters = rs_calloc(nc ? nc : 1, sizeof(*out->counters));
  if (e->g->exp &&
      !(out->counter_variants = rs_calloc(nc ? nc : 1, sizeof(char *)))) {
    rs_metrics_snapshot_free(out);
    return RS_ENOMEM;
  }
  out->parts = rs_calloc(np ? np : 1, sizeof(*out->parts));
  out->insts = ni ? rs_calloc(ni, sizeof(*out->insts)) : NULL;
  if (!out->node_out || !out->node_hist || !out->counters || !out->parts ||
      !out->node_e2e || (e->store && full && !out->cfs) ||
      (ni && !out->insts)) {
    rs_metrics_snapshot_free(out);
    return RS_ENOMEM;
  }
  for (size_t i = 0; e->nodes && i < e->g->n; i++) {
    out->node_out[i] = e->nodes[i].produced;
    out->node_e2e[i] = e->nodes[i].e2e;
    if (e->nodes[i].op)
      out->node_hist[i] = e->nodes[i].op->proc_hist;
    for (const struct rs_op *o = e->nodes[i].op; o; o = o->vnext) {
      if (o->x)
        out->insts[out->n_insts++] =
            (rs_metric_inst_t){i, o->host.variant, o->proc_hist};
      for (rs_counter_t *c = o->counters; c; c = c->next) {
        if (o->x && out->counter_variants)
          out->counter_variants[out->n_counters] = o->host.variant;
        out->counters[out->n_counters++] =
            (rs_metric_counter_t){i, c->name, c->help, c->value};
      }
    }
  }
  for (size_t s = 0; e->parts && s < e->cfg->n_sources; s++)
    for (int32_t i = 0; i < e->n_parts[s]; i++) {
      const part_t *p = e->parts[s][i];
      if (!p)
        continue;
      rs_metric_part_t *mp = &out->parts[out->n_parts++];
      mp->topic = e->cfg->sources[s].topic;
      mp->partition = i;
      mp->assigned = p->assigned;
      mp->position = p->next_offset;
      mp->high_watermark = -1;
      int64_t lo, hi;
      /* The client's cached figures (from fetch responses): no request. */
      if (full && e->consumer && p->assigned &&
          rd_kafka_get_watermark_offsets(e->consumer, mp->topic, i, &lo, &hi) ==
              RD_KAFKA_RESP_ERR_NO_ERROR)
        mp->high_watermark = hi;
    }
  return 0;
}

/* ------------------------------------------------- interactive query */

void rs_query_answer_free(rs_query_answer_t *a) {
  rs_free(a->owned);
  rs_free(a->json);
  memset(a, 0, sizeof(*a));
}

/* The source upstream of node ni (following each node's first input). */
static size_t upstream_source(const rs_graph_t *g, size_t ni) {
  while (g->nodes[ni].kind != RS_NODE_SOURCE && g->nodes[ni].n_inputs)
    ni = g->nodes[ni].inputs[0].from;
  return g->nodes[ni].cfg_index;
}

/* The operator that answers queries (its variant 0 instance), or NULL. */
static struct rs_op *query_op(const rs_engine_t *e) {
  for (size_t k = 0; k < e->g->n; k++) {
    struct rs_op *o = e->nodes ? e->nodes[e->g->order[k]].op : NULL;
    if (o && o->inited && RS_OPDEF_HAS(o->def, query))
      return o;
  }
  return NULL;
}

typedef struct nparts_read {
  uv_work_t w;
  rs_engine_t *e;
  rd_kafka_t *rk;
  const char *topic;
  int32_t n;
} nparts_read_t;

static void nparts_work(uv_work_t *w) { /* a thread-pool thread */
  nparts_read_t *r = w->data;
  r->n = topic_partitions_of(r->rk, r->topic, NULL);
}

static void nparts_done(uv_work_t *w, int status) { /* the loop thread */
  nparts_read_t *r = w->data;
  rs_engine_t *e = r->e;
  e->query_reading = 0;
  e->query_nparts = status == 0 ? r->n : -1;
  rs_free(r);
  if (e->query_stale) {
    e->query_stale = 0;
    query_refresh(e);
  }
}

/* Reads the query source's partition count again, on libuv's thread pool
 * (rd_kafka_metadata() blocks; librdkafka handles are thread-safe). The
 * engine's loop runs until the read is done (an active request), so the
 * consumer outlives it. */
static void query_refresh(rs_engine_t *e) {
  const struct rs_op *op = query_op(e);
  if (!op || !e->consumer || e->state == ST_DONE)
    return;
  if (e->query_reading) {
    e->query_stale = 1;
    return;
  }
  nparts_read_t *r = rs_calloc(1, sizeof(*r));
  if (!r)
    return; /* the count stays as it was; the next assignment retries */
  r->e = e;
  r->rk = e->consumer;
  r->topic = e->cfg->sources[upstream_source(e->g, op->node)].topic;
  r->w.data = r;
  if (uv_queue_work(&e->loop, &r->w, nparts_work, nparts_done)) {
    rs_free(r);
    return;
  }
  e->query_reading = 1;
}

int rs_engine_query(rs_engine_t *e, const void *key, size_t key_len,
                    rs_query_answer_t *out, char *errstr, size_t errstr_size) {
  memset(out, 0, sizeof(*out));
  out->partition = -1;
  struct rs_op *op = query_op(e);
  if (!op) {
    out->status = RS_QUERY_NO_OPERATOR;
    return 0;
  }
  out->op_name = e->g->nodes[op->node].name;
  out->op_type = op->def->name;
  size_t src = upstream_source(e->g, op->node);
  out->topic = e->cfg->sources[src].topic;
  rs_partitioner_fn part_fn;
  int rc = rs_query_partitioner(e->cfg, &part_fn, &out->partitioner, errstr,
                                errstr_size);
  if (rc)
    return rc;
  /* An experiment's operator: the instance of the key's variant. */
  if (op->x) {
    uint32_t v = rs_experiment_assign(op->x, key, key_len);
    while (op->vnext && op->vidx != v)
      op = op->vnext;
    out->variant = op->host.variant;
  }
  if (e->state != ST_RUNNING || e->n_assigned == 0 || !e->consumer ||
      !e->cache) {
    out->status = RS_QUERY_NOT_READY;
    return 0;
  }
  out->n_partitions = e->query_nparts;
  for (int32_t i = 0; i < e->n_parts[src]; i++)
    if (e->parts[src][i] && e->parts[src][i]->assigned)
      out->n_owned++;
  out->owned = rs_calloc(out->n_owned + 1, sizeof(int32_t));
  if (!out->owned)
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  out->n_owned = 0;
  for (int32_t i = 0; i < e->n_parts[src]; i++)
    if (e->parts[src][i] && e->parts[src][i]->assigned)
      out->owned[out->n_owned++] = i;
  if (!part_fn) {
    /* partitioner random: the key can be in any partition, and in several
     * (each with its own state for it): ask every partition owned here and
     * answer with the newest (by event_time_ms; ties and answers without
     * it: the lowest partition). */
    e->querying = 1;
    e->cur_op = op;
    rc = RS_ENOENT;
    int64_t best = INT64_MIN;
    for (size_t i = 0; i < out->n_owned; i++) {
      char *json = NULL;
      size_t json_len = 0;
      int prc = op->def->query(op, op->ctx, out->owned[i], key, key_len, &json,
                               &json_len);
      if (prc == RS_ENOENT) {
        rs_free(json);
        continue;
      }
      if (prc < 0 || !json) { /* an error ends the search */
        rs_free(out->json);
        out->json = json;
        out->json_len = json_len;
        out->partition = out->owned[i];
        rc = prc;
        break;
      }
      int64_t ts = rs_query_answer_time(json, json_len);
      if (rc == RS_ENOENT || ts > best) {
        rs_free(out->json);
        out->json = json;
        out->json_len = json_len;
        out->partition = out->owned[i];
        best = ts;
        rc = prc;
      } else {
        rs_free(json);
      }
    }
    e->cur_op = NULL;
    e->querying = 0;
    goto answered;
  }
  if (e->query_nparts <= 0) {
    if (!e->query_reading)
      query_refresh(e); /* the last read failed: try again */
    out->status = RS_QUERY_NO_METADATA;
    return 0;
  }
  out->partition = part_fn(NULL, key, key_len, e->query_nparts, NULL, NULL);
  const part_t *p =
      out->partition < e->n_parts[src] ? e->parts[src][out->partition] : NULL;
  if (!p || !p->assigned) {
    out->status = RS_QUERY_NOT_OWNED;
    return 0;
  }
  e->querying = 1;
  e->cur_op = op;
  rc = op->def->query(op, op->ctx, out->partition, key, key_len, &out->json,
                      &out->json_len);
  e->cur_op = NULL;
  e->querying = 0;
answered:
  if (rc == RS_ENOENT) {
    rs_free(out->json);
    out->json = NULL;
    out->status = RS_QUERY_UNKNOWN;
    return 0;
  }
  if (rc < 0 || !out->json) {
    rs_free(out->json);
    out->json = NULL;
    return rs_seterr(errstr, errstr_size, rc < 0 ? rc : RS_EINTERNAL,
                     "operator '%s' (%s): query() failed: %s", out->op_name,
                     out->op_type, rs_strerror(rc < 0 ? rc : RS_EINTERNAL));
  }
  out->status = RS_QUERY_OK;
  return 0;
}
