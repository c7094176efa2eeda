/* The operator plugin ABI.
 *
 * Built-in operators and third-party shared objects implement the same
 * interface: one immutable rs_operator_def_t. A shared object exports it as
 * the symbol named by RS_PLUGIN_SYMBOL. Operators call the engine only
 * through the rs_host_api_t handed to init(); they never link against
 * engine symbols, so a plugin needs only these headers.
 *
 * Both structs start with {abi_version, struct_size}. Fields are only ever
 * appended: the host rejects another ABI major, and treats any callback that
 * lies past an operator's struct_size as absent. _Static_asserts at the end
 * pin the layout of ABI major 1.
 */
#ifndef RECSTREAM_OPERATOR_H
#define RECSTREAM_OPERATOR_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "record.h"
#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Name of the symbol a plugin exports: const rs_operator_def_t. */
#define RS_PLUGIN_SYMBOL "recstream_operator"

typedef struct rs_op rs_op_t;           /* an operator instance (opaque) */
struct rs_operator_def;                 /* below; named by peer_context */
typedef struct rs_counter rs_counter_t; /* a metrics counter (opaque) */

/* Option value types and the C type the host writes at `offset`. */
typedef enum rs_opt_type {
  RS_OPT_BOOL = 0,     /* int: 0 or 1 */
  RS_OPT_INT = 1,      /* int64_t */
  RS_OPT_DOUBLE = 2,   /* double */
  RS_OPT_STRING = 3,   /* char *: host-owned, valid until destroy() returns */
  RS_OPT_DURATION = 4, /* int64_t milliseconds; YAML "250ms", "30s", "5m" */
  RS_OPT_SIZE = 5,     /* int64_t bytes; YAML "64KiB", "1MiB", "512" */
  RS_OPT_ENUM = 6      /* int: index into enum_values */
} rs_opt_type_t;

typedef struct rs_option_def {
  rs_opt_type_t type;
  const char *name;
  /* Default as it would be written in YAML; NULL makes the option required. */
  const char *default_value;
  size_t offset; /* offsetof(operator context, field) */
  /* Inclusive bounds for INT, DOUBLE, DURATION and SIZE (in ms / bytes);
   * ignored when min > max. */
  double min;
  double max;
  /* RS_OPT_ENUM: the allowed values separated by '|', e.g. "avro|json".
   * Other types: NULL, or RS_OPT_WALL_CLOCK (below). */
  const char *enum_values;
  const char *description;
} rs_option_def_t;

/* enum_values of a BOOL, INT, DOUBLE, DURATION or SIZE option whose
 * non-zero value makes the operator's outputs depend on wall-clock time
 * (e.g. sessionize's idle_close, which uses host->idle_notify): the host
 * refuses a non-zero value in a config with state.guarantee exactly_once
 * or processing.order deterministic, at validation, naming the option. */
#define RS_OPT_WALL_CLOCK "wall_clock"

/* enum_values of a STRING option that names another operator of the
 * graph, one this operator reads through host->peer_open: "peer:" and the
 * type that operator must have, e.g. RS_OPT_PEER("mf_update"), or
 * RS_OPT_PEER("") for any type. The host checks it at validation (an
 * operator of that name and type exists and is not this one), so that
 * `recstream validate` catches what init() would refuse. */
#define RS_OPT_PEER(type) "peer:" type

typedef enum rs_log_level {
  RS_LOG_ERROR = 0,
  RS_LOG_WARN = 1,
  RS_LOG_INFO = 2,
  RS_LOG_DEBUG = 3
} rs_log_level_t;

/* The engine's services, handed to init(). Borrowed: valid until destroy()
 * returns. Every function is safe to call only from the operator's own
 * callbacks (the instance's loop thread). */
typedef struct rs_host_api {
  uint32_t abi_version;
  uint32_t struct_size;

  /* Pass rec downstream on output port `port` (index into output_ports).
   * rec is copied; the bytes it points at must stay valid until the batch
   * completes (input bytes, option strings, or host->batch_alloc memory). */
  int (*emit)(rs_op_t *op, uint32_t port, const rs_record_t *rec);
  /* Send rec's original key and value to the operator's dead-letter topic
   * with headers naming `error` and the source topic/partition/offset.
   * Counted; never drops silently (a failed DLQ delivery stops the engine). */
  int (*dead_letter)(rs_op_t *op, const rs_record_t *rec, const char *error);
  /* Scratch memory freed when the current batch has left the graph. */
  void *(*batch_alloc)(rs_op_t *op, size_t size);

  /* The engine's allocator front door (counted, failure-injectable). */
  void *(*malloc)(size_t size);
  void *(*calloc)(size_t n, size_t size);
  void *(*realloc)(void *p, size_t size);
  void (*free)(void *p);

  void (*log)(rs_op_t *op, int level, const char *fmt, ...)
#if defined(__GNUC__)
      __attribute__((format(printf, 3, 4)))
#endif
      ;

  /* A monotonically increasing counter, created once in init(). The host
   * owns it; the pointer is valid until destroy() returns. */
  rs_counter_t *(*counter)(rs_op_t *op, const char *name, const char *help);
  void (*counter_add)(rs_counter_t *c, uint64_t n);

  /* Keyed state (DESIGN.md section 3), scoped by input partition: pass the
   * batch's partition, or RS_PARTITION_SHARED for state every partition
   * reads and writes (model parameters, popularity). Reads go through the
   * engine's write-back cache; writes reach RocksDB atomically with the
   * input offsets at the next checkpoint. state_get's *value is borrowed
   * until the next state_* call: copy what you keep. RS_ENOENT when
   * absent. state_scan visits the partition's entries whose key starts
   * with prefix, in key order; cb must not call state_* (a non-zero return
   * stops the scan and is returned). A scan walks the cache: not per
   * event. */
  int (*state_get)(rs_op_t *op, int32_t partition, const void *key,
                   size_t key_len, void **value, size_t *value_len);
  int (*state_put)(rs_op_t *op, int32_t partition, const void *key,
                   size_t key_len, const void *value, size_t value_len);
  int (*state_delete)(rs_op_t *op, int32_t partition, const void *key,
                      size_t key_len);
  int (*state_scan)(rs_op_t *op, int32_t partition, const void *prefix,
                    size_t prefix_len,
                    int (*cb)(void *opaque, const void *key, size_t key_len,
                              const void *value, size_t value_len),
                    void *opaque);
  /* Event-time timer: on_timer() runs once the partition's watermark
   * passes `when_ms`. Returns RS_ENOTSUP until the state store lands. */
  int (*timer_set)(rs_op_t *op, int32_t partition, int64_t when_ms,
                   const void *tag, size_t tag_len);
  /* Deterministic randomness: a 64-bit value that depends only on the
   * operator's seed, the key and the input offset. */
  uint64_t (*random)(rs_op_t *op, const void *key, size_t key_len,
                     int64_t offset, uint64_t stream);

  /* ---- ABI minor 1 (check struct_size before use) ---- */
  /* Fixed-size float vectors (stored as little-endian float32): get fills
   * out[0..dim) or returns RS_ENOENT (absent) / RS_ERANGE (stored with
   * another dimension). */
  int (*state_get_floats)(rs_op_t *op, int32_t partition, const void *key,
                          size_t key_len, float *out, size_t dim);
  int (*state_put_floats)(rs_op_t *op, int32_t partition, const void *key,
                          size_t key_len, const float *v, size_t dim);
  /* int64 counter (8 bytes little-endian; absent = 0): adds delta, stores
   * the sum in *result (may be NULL). */
  int (*state_counter_add)(rs_op_t *op, int32_t partition, const void *key,
                           size_t key_len, int64_t delta, int64_t *result);

  /* ---- ABI minor 2 (check RS_HOST_HAS before use) ---- */
  /* Read-only access to the state of another operator instance of the
   * same graph, named by its `name:` in the config: how topn_emit reads
   * the item factors mf_update keeps, without a copy. peer_open returns a
   * handle (>= 0) for that instance, or RS_ENOENT when the graph has no
   * operator of that name (and RS_EINVAL for the caller's own name); call
   * it once, in init(). peer_state_get is state_get on the peer's state:
   * the same partition scoping, cache and borrowing rule (the value is
   * borrowed until the next state_* or peer_* call). There is no write:
   * each operator stays the only writer of its own state. A read sees
   * every write the peer made before the current batch reached the
   * caller. */
  int (*peer_open)(rs_op_t *op, const char *name);
  int (*peer_state_get)(rs_op_t *op, int handle, int32_t partition,
                        const void *key, size_t key_len, void **value,
                        size_t *value_len);

  /* ---- ABI minor 3 (check RS_HOST_HAS before use) ---- */
  /* The experiment variant this instance serves (the `experiments:`
   * config section), "" outside experiments. Never NULL when present. */
  const char *variant;
  /* Whether anything reads output port `port` (a sink, a downstream
   * operator or a side output): 0 lets an operator skip building records
   * nobody reads (replay with outputs suppressed, unconnected ports).
   * emit() on an unwanted port is still allowed and costs nothing. */
  int (*port_wanted)(rs_op_t *op, uint32_t port);
  /* The instance behind a peer_open handle: its context, and its
   * definition in *def. Only for operators built into recstream that know
   * the peer's type and read it through that operator's internal header
   * (topn_emit scores from mf_update's in-memory item matrix with
   * rs__mf_view instead of one state lookup per item): a context's layout
   * is private to its operator, so third-party code has no use for it.
   * Read-only, on the loop thread, never during the peer's own process();
   * what it points to may change with every batch the peer processes.
   * NULL (and *def NULL) for a bad handle. Appended late in minor 3. */
  void *(*peer_context)(rs_op_t *op, int handle,
                        const struct rs_operator_def **def);
  /* Wall-clock idleness (DESIGN.md section 2: only where the config asks
   * for it, documented as non-deterministic). Call once, in init(): when
   * one of the instance's input partitions has processed no record for
   * idle_ms (> 0) of wall-clock time, the host calls process() with an
   * *idle batch* for that partition: count 0, records NULL, input 0.
   * Idleness is per partition of each upstream source: with two
   * co-partitioned sources, partition p is idle when one source's p is
   * silent, whatever the other's does. Time the host itself held
   * processing (checkpoint barrier, backpressure) does not count.
   * Once per idle period: the partition's next record re-arms it (and so
   * does an assignment of the partition). The batch runs like any other,
   * between batches (never while a checkpoint is being captured): what
   * process() emits flows downstream and to sinks, is tracked for
   * acknowledgement and covered by the next checkpoint. Such outputs derive
   * from no input record: give them src_partition = the batch's partition and
   * src_offset = -1. A second call replaces the interval. RS_ENOTSUP when
   * this host never delivers idle batches: state.guarantee exactly_once
   * (outputs must be a function of the input for replay suppression),
   * processing.order deterministic, replays (of topics or files) and
   * `recstream eval`; RS_EINVAL outside init() or for idle_ms <= 0;
   * RS_ERANGE beyond 64 instances asking. An operator that never calls it
   * never sees a batch with count 0. Appended late in minor 3. */
  int (*idle_notify)(rs_op_t *op, int64_t idle_ms);
} rs_host_api_t;

/* The partition argument of state_* for state shared by all partitions. */
#define RS_PARTITION_SHARED (-1)

/* Whether host provides `field` (it lies within host->struct_size). */
#define RS_HOST_HAS(host, field)                                               \
  (offsetof(rs_host_api_t, field) + sizeof((host)->field) <=                   \
       (host)->struct_size &&                                                  \
   (host)->field != NULL)

typedef struct rs_operator_def {
  uint32_t abi_version; /* RS_ABI_VERSION */
  uint32_t struct_size; /* sizeof(rs_operator_def_t) */
  const char *name;     /* the `type:` value in configs */
  const char *description;
  size_t ctx_size; /* the host allocates a zeroed context of this size */
  const rs_option_def_t *options;
  size_t n_options;
  /* Output port names, NULL-terminated; NULL means one port, "out". */
  const char *const *output_ports;
  uint32_t min_inputs;
  uint32_t max_inputs;

  /* Options are already written into ctx. On failure write a message into
   * errstr and return a negative rs_err_t; destroy() is then not called. */
  int (*init)(rs_op_t *op, void *ctx, const rs_host_api_t *host, char *errstr,
              size_t errstr_size);
  /* A batch is borrowed until process() returns. A negative return stops
   * the engine (use dead_letter() for bad records, not errors). */
  int (*process)(rs_op_t *op, void *ctx, const rs_batch_t *batch);
  int (*on_timer)(rs_op_t *op, void *ctx, int32_t partition, int64_t when_ms,
                  const void *tag, size_t tag_len);
  /* Called when every checkpoint is taken (each state.commit_interval,
   * on partition revocation, at shutdown; between batches, never during
   * process()): write what is kept in memory through state_put & co., and
   * those writes are stored atomically with the input offsets of that
   * moment. The checkpoint reaches disk later (once the outputs produced
   * before it are acknowledged, written off the loop thread) while
   * processing goes on; writes after this call belong to the next one.
   * emit() and dead_letter() are not allowed here. A negative return stops
   * the engine. Optional. */
  int (*checkpoint)(rs_op_t *op, void *ctx);
  void (*destroy)(rs_op_t *op, void *ctx);

  /* ---- ABI minor 3 (check RS_OPDEF_HAS before use) ---- */
  /* Interactive query (GET /v1/recommendations/{key}): answer what the
   * instance keeps for `key` in `partition` (the partition the key hashes
   * to) as one JSON value, written to *json (allocated with host->malloc;
   * the host frees it) and *json_len. RS_ENOENT when nothing is kept for
   * the key. Runs on the loop thread between batches; state_* and peer_*
   * reads are allowed, writes, emit() and dead_letter() are not.
   * Optional. */
  int (*query)(rs_op_t *op, void *ctx, int32_t partition, const void *key,
               size_t key_len, char **json, size_t *json_len);
} rs_operator_def_t;

/* Layout of ABI major 1. */
_Static_assert(offsetof(rs_operator_def_t, abi_version) == 0, "abi_version");
_Static_assert(offsetof(rs_operator_def_t, struct_size) == 4, "struct_size");
_Static_assert(offsetof(rs_operator_def_t, name) == 8, "name");
_Static_assert(offsetof(rs_host_api_t, abi_version) == 0, "abi_version");
_Static_assert(offsetof(rs_host_api_t, struct_size) == 4, "struct_size");
_Static_assert(offsetof(rs_host_api_t, emit) == 8, "emit");
#if UINTPTR_MAX == 0xffffffffffffffffu
_Static_assert(sizeof(rs_operator_def_t) == 112, "operator def size");
_Static_assert(offsetof(rs_operator_def_t, init) == 64, "init");
_Static_assert(sizeof(rs_record_t) == 72, "record size");
_Static_assert(sizeof(rs_option_def_t) == 64, "option def size");
#endif

/* Whether def provides callback `field` (present and within struct_size). */
#define RS_OPDEF_HAS(def, field)                                               \
  ((def)->struct_size >=                                                       \
       offsetof(rs_operator_def_t, field) + sizeof((def)->field) &&            \
   (def)->field != NULL)

#ifdef __cplusplus
}
#endif
#endif
