/* Test plugin: claims operator ABI major 2, which the engine must refuse. */
#include <stddef.h>

#include <recstream/recstream.h>

static int process(rs_op_t *op, void *ctx, const rs_batch_t *b) {
  return 0;
}

__attribute__((visibility("default")))
const rs_operator_def_t recstream_operator = {
    .abi_version = (2u << 16) | 0u,
    .struct_size = sizeof(rs_operator_def_t),
    .name = "bad_abi",
    .description = "built for a future ABI",
    .min_inputs = 1,
    .max_inputs = 1,
    .process = process,
};
