/* Test plugin: a definition whose struct_size ends before process(), as an
 * operator compiled against a broken or foreign header would have. */
#include <stddef.h>

#include <recstream/recstream.h>

static int process(rs_op_t *op, void *ctx, const rs_batch_t *b) {
  return 0;
}

__attribute__((visibility("default")))
const rs_operator_def_t recstream_operator = {
    .abi_version = RS_ABI_VERSION,
    .struct_size = 24,
    .name = "truncated",
    .description = "too small",
    .min_inputs = 1,
    .max_inputs = 1,
    .process = process,
};
