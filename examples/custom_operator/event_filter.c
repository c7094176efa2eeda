/* event_filter: an example third-party operator, built as a plugin.
 *
 * It keeps the interactions whose event type is listed in `keep` (and, for
 * RATING events, whose value reaches `min_rating`) and passes them on
 * unchanged; everything else is counted and dropped on purpose. It shows
 * the whole plugin contract in one file:
 *   - include only <recstream/recstream.h>; never link against the engine;
 *   - export one const rs_operator_def_t named `recstream_operator`;
 *   - declare options in a table: the host parses, checks and documents them
 *     and writes typed values into the context before init();
 *   - keep all state in the context; reach the engine only through `host`.
 * Build: see CMakeLists.txt (target rs_example_operator), then list the .so
 * under `plugins:` in a pipeline config.
 */
#include <stddef.h>
#include <string.h>

#include <recstream/recstream.h>

typedef struct event_filter {
  /* Options, written by the host. */
  char *keep; /* "VIEW,CLICK,..." */
  double min_rating;
  /* Runtime. */
  const rs_host_api_t *host;
  unsigned keep_mask;
  rs_counter_t *dropped;
} event_filter_t;

static const char *const type_names[RS_EVENT__COUNT] = {
    "VIEW", "CLICK", "ADD_TO_CART", "PURCHASE", "RATING"};

static int filter_init(rs_op_t *op, void *vctx, const rs_host_api_t *host,
                       char *errstr, size_t errstr_size) {
  event_filter_t *ctx = vctx;
  ctx->host = host;
  const char *p = ctx->keep;
  while (*p) {
    size_t len = strcspn(p, ",");
    int found = -1;
    for (int i = 0; i < RS_EVENT__COUNT; i++)
      if (strlen(type_names[i]) == len && !strncmp(type_names[i], p, len))
        found = i;
    if (found < 0) {
      /* Plugins format messages themselves: no engine symbols to call. */
      size_t n = len < errstr_size - 64 ? len : errstr_size - 64;
      strcpy(errstr, "keep: unknown event type '");
      strncat(errstr, p, n);
      strcat(errstr, "'");
      return RS_ECONFIG;
    }
    ctx->keep_mask |= 1u << found;
    p += len;
    if (*p == ',')
      p++;
  }
  ctx->dropped = host->counter(op, "dropped", "interactions filtered out");
  return 0;
}

static int filter_process(rs_op_t *op, void *vctx, const rs_batch_t *batch) {
  event_filter_t *ctx = vctx;
  for (size_t i = 0; i < batch->count; i++) {
    const rs_record_t *r = &batch->records[i];
    if (r->kind != RS_KIND_INTERACTION) {
      int rc = ctx->host->dead_letter(op, r,
                                      "event_filter: not an interaction "
                                      "(put a parse operator before it)");
      if (rc)
        return rc;
      continue;
    }
    const rs_interaction_t *it = r->payload;
    int keep = it->event_type >= 0 && it->event_type < RS_EVENT__COUNT &&
               (ctx->keep_mask & (1u << it->event_type));
    if (keep && it->event_type == RS_EVENT_RATING && it->has_value)
      keep = it->value >= ctx->min_rating;
    if (!keep) {
      ctx->host->counter_add(ctx->dropped, 1);
      continue;
    }
    int rc = ctx->host->emit(op, 0, r);
    if (rc)
      return rc;
  }
  return 0;
}

static const rs_option_def_t filter_options[] = {
    {RS_OPT_STRING, "keep", "CLICK,ADD_TO_CART,PURCHASE,RATING",
     offsetof(event_filter_t, keep), 1, 0, NULL,
     "Comma-separated event types to keep (VIEW, CLICK, ADD_TO_CART, "
     "PURCHASE, RATING)."},
    {RS_OPT_DOUBLE, "min_rating", "0", offsetof(event_filter_t, min_rating),
     -1e9, 1e9, NULL, "RATING events below this value are dropped."},
};

__attribute__((visibility("default")))
const rs_operator_def_t recstream_operator = {
    .abi_version = RS_ABI_VERSION,
    .struct_size = sizeof(rs_operator_def_t),
    .name = "event_filter",
    .description = "Example plugin: keeps interactions of the listed "
                   "event types and drops the rest (counted).",
    .ctx_size = sizeof(event_filter_t),
    .options = filter_options,
    .n_options = sizeof filter_options / sizeof filter_options[0],
    .output_ports = NULL,
    .min_inputs = 1,
    .max_inputs = 1,
    .init = filter_init,
    .process = filter_process,
};
