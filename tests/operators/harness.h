/* In-process operator harness: plays the engine's side of the operator ABI
 * without Kafka, so an operator test can push records in and assert on what
 * comes out.
 *
 * It implements a whole rs_host_api_t: emit() and dead_letter() collect
 * deep copies (they survive later pushes), batch_alloc() serves from an
 * arena reset at the start of every push, counters are readable by name,
 * random() is deterministic, and state_* / timer_set return RS_ENOTSUP like
 * the current ABI minor. Like the engine's runtime, it counts records_in
 * (records pushed), records_out (successful emits) and dead_lettered for
 * every operator; host->counter() with one of those names returns the same
 * counter. Options are given as YAML scalar strings and
 * written into the operator context from its option table, with defaults,
 * bounds and unknown-key rejection, before init() runs.
 */
#ifndef RS_TEST_HARNESS_H
#define RS_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "recstream/operator.h"

typedef struct rs_harness rs_harness_t;

/* A record sent to the dead-letter topic: the original key and value
 * (copied), the error and the source position. */
typedef struct rs_harness_dead {
  const void *key;
  size_t key_len;
  const void *value;
  size_t value_len;
  const char *error;
  int32_t src_partition;
  int64_t src_offset;
} rs_harness_dead_t;

/* Creates an instance of `def`. `options` is NULL or a NULL-terminated list
 * of key, value, key, value, ... with values as YAML scalars ("1MiB",
 * "true", "30s"). On failure returns NULL with a message in errstr (option
 * errors and init() errors alike). Free with rs_harness_destroy(). */
rs_harness_t *rs_harness_new(const rs_operator_def_t *def,
                             const char *const *options, char *errstr,
                             size_t errstr_size);
void rs_harness_destroy(rs_harness_t *h);

/* Writes typed option values from def's option table into ctx: each given
 * value (key/value pairs as above), else the default; rejects unknown and
 * repeated keys, missing required options, malformed values and values out
 * of bounds. RS_OPT_STRING values are rs_strdup()ed and appended to
 * *strings (an array of *n_strings pointers, grown with rs_realloc) so the
 * caller can free them. Returns 0 or RS_ECONFIG with a message naming the
 * option. */
int rs_harness_set_options(const rs_operator_def_t *def, void *ctx,
                           const char *const *options, char ***strings,
                           size_t *n_strings, char *errstr, size_t errstr_size);

/* Runs process() on one batch from input 0 (or `input`) of `partition`.
 * Returns what process() returned. The records are borrowed for the call. */
int rs_harness_push(rs_harness_t *h, int32_t partition, const rs_record_t *recs,
                    size_t n);
int rs_harness_push_input(rs_harness_t *h, uint32_t input, int32_t partition,
                          const rs_record_t *recs, size_t n);
/* Runs checkpoint() if the operator has one (else returns 0). */
int rs_harness_checkpoint(rs_harness_t *h);

/* Records emitted on `port` since creation or the last clear, in order.
 * Key, value and (for RS_KIND_INTERACTION) payload are deep copies owned by
 * the harness; payloads of other kinds are not copied and set to NULL. */
size_t rs_harness_emitted_count(const rs_harness_t *h, uint32_t port);
const rs_record_t *rs_harness_emitted(const rs_harness_t *h, uint32_t port,
                                      size_t i);
size_t rs_harness_dead_count(const rs_harness_t *h);
const rs_harness_dead_t *rs_harness_dead(const rs_harness_t *h, size_t i);
/* Forgets collected emitted and dead-lettered records (not counters). */
void rs_harness_clear(rs_harness_t *h);

/* The value of counter `name`, or -1 if the operator never created it. */
int64_t rs_harness_counter(const rs_harness_t *h, const char *name);

/* Lines the operator logged, oldest first (level, then message). */
size_t rs_harness_log_count(const rs_harness_t *h);
const char *rs_harness_log_line(const rs_harness_t *h, size_t i, int *level);

/* The operator context (white-box tests) and the host table it was given. */
void *rs_harness_ctx(rs_harness_t *h);
const rs_host_api_t *rs_harness_host(rs_harness_t *h);
/* Seed of host->random() (default 42). */
void rs_harness_set_seed(rs_harness_t *h, uint64_t seed);

#endif
