/* Test plugin: passes records through and counts them in memory only; its
 * checkpoint() callback adds the count to a shared state counter. The
 * count reaches the state only if the engine calls checkpoint() before it
 * writes each checkpoint. With RS_TEST_CC_FAIL set in the environment,
 * process() fails (to test how a run ends on an operator failure). */
#include <stddef.h>
#include <stdlib.h>

#include <recstream/recstream.h>

typedef struct cc {
  const rs_host_api_t *host;
  int64_t pending;
} cc_t;

static int cc_init(rs_op_t *op, void *vctx, const rs_host_api_t *host,
                   char *errstr, size_t errstr_size) {
  (void)op;
  (void)errstr;
  (void)errstr_size;
  cc_t *c = vctx;
  c->host = host;
  return RS_HOST_HAS(host, state_counter_add) ? 0 : RS_ENOTSUP;
}

static int cc_process(rs_op_t *op, void *vctx, const rs_batch_t *batch) {
  cc_t *c = vctx;
  if (getenv("RS_TEST_CC_FAIL"))
    return RS_EINVAL;
  for (size_t i = 0; i < batch->count; i++) {
    int rc = c->host->emit(op, 0, &batch->records[i]);
    if (rc)
      return rc;
  }
  c->pending += (int64_t)batch->count;
  return 0;
}

static int cc_checkpoint(rs_op_t *op, void *vctx) {
  cc_t *c = vctx;
  if (!c->pending)
    return 0;
  int rc = c->host->state_counter_add(op, RS_PARTITION_SHARED, "seen", 4,
                                      c->pending, NULL);
  if (!rc)
    c->pending = 0;
  return rc;
}

static const char *const cc_ports[] = {"out", NULL};

__attribute__((visibility("default")))
const rs_operator_def_t recstream_operator = {
    .abi_version = RS_ABI_VERSION,
    .struct_size = sizeof(rs_operator_def_t),
    .name = "checkpoint_counter",
    .description = "test: counts records, stores the count at checkpoints",
    .ctx_size = sizeof(cc_t),
    .output_ports = cc_ports,
    .min_inputs = 1,
    .max_inputs = 1,
    .init = cc_init,
    .process = cc_process,
    .checkpoint = cc_checkpoint,
};
