/* Test plugin: passes records through and counts them in memory only; its
 * checkpoint() callback adds the count to a shared state counter. The
 * count reaches the state only if the engine calls checkpoint() before it
 * writes each checkpoint. With RS_TEST_CC_FAIL set in the environment,
 * process() fails (to test how a run ends on an operator failure); with
 * RS_TEST_CC_NAN set, each interaction at a source offset divisible by 10
 * is passed on with the value NaN (an output no JSON sink can encode). */
#include <math.h>
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
  int nan = getenv("RS_TEST_CC_NAN") != NULL;
  for (size_t i = 0; i < batch->count; i++) {
    const rs_record_t *in = &batch->records[i];
    rs_record_t r = *in;
    if (nan && in->kind == RS_KIND_INTERACTION && in->src_offset % 10 == 0) {
      rs_interaction_t *ia = c->host->batch_alloc(op, sizeof *ia);
      if (!ia)
        return RS_ENOMEM;
      *ia = *(const rs_interaction_t *)in->payload;
      ia->has_value = 1;
      ia->value = NAN;
      r.payload = ia;
    }
    int rc = c->host->emit(op, 0, &r);
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
