/* An in-process host for one operator, without Kafka: what `recstream
 * eval` uses to replay a file through exactly the operator code a pipeline
 * runs. Options come from an operator entry of a loaded config (applied by
 * rs_options_apply, as the engine does). Keyed state is the engine's: a
 * RocksDB store with the operator's column family and the write-back cache
 * in front of it, in a private temporary directory removed at destroy.
 * host->random is the runtime's function with the runtime's seed (a hash
 * of the operator's name), so a replay draws what the pipeline would.
 * emit() and dead_letter() are handed to callbacks; batch_alloc() serves
 * from an arena reset at every push; timers are RS_ENOTSUP, as in the
 * engine; idle batches come only from rs_local_idle().
 *
 * (tests/operators/harness.c is the richer host for operator tests:
 * collected records, restarts, borrow checks. This one is lean on purpose:
 * nothing per record beyond what the engine does.)
 *
 * Not thread-safe.
 */
#ifndef RS_LOCAL_HOST_H
#define RS_LOCAL_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "recstream/operator.h"

typedef struct rs_local rs_local_t;

typedef struct rs_local_opts {
  /* Bound of the state cache (0: 1 GiB, so that a replay never spills). */
  size_t cache_bytes;
  /* Called for every emitted record; borrowed until the push returns. A
   * negative return is returned by emit(). NULL: emits are dropped. */
  int (*on_emit)(void *opaque, uint32_t port, const rs_record_t *rec);
  /* Called for every dead letter. NULL: counted only. */
  int (*on_dead)(void *opaque, const rs_record_t *rec, const char *error);
  void *opaque;
  /* ABI minor 2: another local instance whose state this operator may
   * read through peer_open(peer_name) / peer_state_get (e.g. topn_emit
   * reading mf_update's model). Borrowed: destroy it after this one.
   * NULL: peer_open finds nothing (RS_ENOENT). */
  const char *peer_name;
  rs_local_t *peer;
} rs_local_opts_t;

/* Creates an instance of def named `name`, options from the mapping `node`
 * of cfg (cfg and node borrowed until rs_local_destroy()), and runs its
 * init(). On failure returns an rs_err_t with a message in errstr. Free
 * with rs_local_destroy(). */
int rs_local_new(const rs_operator_def_t *def, const char *name,
                 const rs_config_t *cfg, const rs_ynode_t *node,
                 const rs_local_opts_t *opts, rs_local_t **out, char *errstr,
                 size_t errstr_size);
void rs_local_destroy(rs_local_t *l);

/* Runs process() on one batch of partition `partition` (input 0). */
int rs_local_push(rs_local_t *l, int32_t partition, const rs_record_t *recs,
                  size_t n);
/* host->idle_notify: this host keeps no clock and never delivers an idle
 * batch by itself; this delivers one for `partition` (process() with count
 * 0, as the engine does once the partition ran no record for the interval
 * the operator asked for). RS_EINVAL when the operator asked for none. */
int rs_local_idle(rs_local_t *l, int32_t partition);

/* The operator's context and host table, e.g. for built-in read access. */
void *rs_local_ctx(rs_local_t *l);
/* The value of the operator's counter `name`, or -1 if it has none. */
int64_t rs_local_counter(const rs_local_t *l, const char *name);
/* Dead letters so far. */
uint64_t rs_local_dead_count(const rs_local_t *l);

#endif
