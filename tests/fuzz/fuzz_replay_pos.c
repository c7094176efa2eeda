/* libFuzzer target: arbitrary bytes as a `recstream replay --from/--to`
 * position (times, relative times, offsets). Must never crash, leak or
 * hang; a parsed position must be consistent. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "replay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (!s)
    return 0;
  memcpy(s, data, size);
  s[size] = '\0';
  rs_pos_t p;
  char err[512];
  if (!rs_pos_parse(s, 1767225600000LL, &p, err, sizeof err)) {
    if (p.kind == RS_POS_OFFSETS && p.n_offsets == 0)
      abort(); /* offsets parsed into nothing */
    for (size_t i = 0; i < p.n_offsets; i++)
      if (p.offsets[i].partition < 0 || p.offsets[i].offset < 0)
        abort();
    rs_pos_free(&p);
  }
  free(s);
  return 0;
}
