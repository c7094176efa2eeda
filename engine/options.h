/* Operator options: the host side of rs_option_def_t tables. Applies a
 * YAML mapping to an operator context (defaults, types, bounds, unknown
 * keys), frees what it allocated, and renders the tables as the operator
 * reference (`recstream operators`, docs/OPERATORS.md).
 */
#ifndef RS_OPTIONS_H
#define RS_OPTIONS_H

#include "config.h"
#include "recstream/operator.h"
#include "util.h"

/* Writes typed option values from `map` (keys already consumed by the
 * config reader are skipped) into ctx. `label` names the operator in
 * messages. On error returns RS_ECONFIG with file:line:col in errstr;
 * strings already written are freed by rs_options_free(). */
int rs_options_apply(const rs_config_t *cfg, const rs_operator_def_t *def,
                     const rs_ynode_t *map, const char *label, void *ctx,
                     char *errstr, size_t errstr_size);
/* Frees the RS_OPT_STRING values in ctx. */
void rs_options_free(const rs_operator_def_t *def, void *ctx);
/* Checks an option table for mistakes (used on plugins before use). */
int rs_options_check_table(const rs_operator_def_t *def, char *errstr,
                           size_t errstr_size);
/* Appends the reference of one operator; markdown or terminal text. */
int rs_options_describe(const rs_operator_def_t *def, int markdown,
                        rs_buf_t *out);

#endif
