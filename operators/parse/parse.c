/* The built-in `parse` operator: raw Kafka records (Avro, Confluent wire
 * format or JSON) in, typed interactions out.
 *
 * It owns the step where outside bytes become rs_interaction_t, so it is
 * also where bad input stops: every record that cannot be decoded or breaks
 * the interaction rules goes to the dead-letter topic with its original
 * bytes and a reason; nothing is dropped silently and no input can make it
 * fail. All decoding is the codec's (engine/codec.c); this file adds the
 * operator contract: options, size limit, memory from the batch. Records
 * that are already interactions pass through, so parse can be chained.
 *
 * The host counts records_in, records_out and dead_lettered for every
 * operator (host->dead_letter is "counted"), so parse adds no counters of
 * its own for them: counting here too would double the figures.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "recstream/operator.h"

typedef struct parse_ctx {
  /* Options, written by the host before init(). */
  int format;       /* index into "avro|confluent|json" */
  char *schema;     /* reader schema path; "" = compiled-in */
  char *schema_ids; /* "id=path,id=path" for Confluent */
  int64_t max_record_bytes;
  int record; /* index into "interaction|feedback" */

  rs_op_t *op;
  const rs_host_api_t *host;
  rs_codec_t *codec;
  rs_format_t fmt;
  char reason[256]; /* the current record's decode error */
} parse_ctx_t;

static const rs_option_def_t parse_options[] = {
    {RS_OPT_ENUM, "format", "avro", offsetof(parse_ctx_t, format), 0, -1,
     "avro|confluent|json",
     "Encoding of the input records: `avro` is raw Avro binary in the reader "
     "schema; `confluent` is the Confluent wire format (magic byte 0, a "
     "4-byte big-endian schema id, then Avro binary in that id's writer "
     "schema, see `schema_ids`); `json` is one JSON object per record with "
     "the fields of the interaction schema."},
    {RS_OPT_STRING, "schema", "", offsetof(parse_ctx_t, schema), 0, -1, NULL,
     "Path of the reader schema (.avsc). Empty: the interaction schema "
     "compiled into recstream (schemas/interaction.avsc). A custom schema "
     "must be a record with user_id and item_id (string), event_type (enum "
     "of VIEW, CLICK, ADD_TO_CART, PURCHASE, RATING) and timestamp (long), "
     "and may have value (double), device and page (string), each optional "
     "one possibly a union with null."},
    {RS_OPT_STRING, "schema_ids", "", offsetof(parse_ctx_t, schema_ids), 0, -1,
     NULL,
     "For format `confluent`: the writer schema of each schema id, as "
     "comma-separated `id=path` pairs, e.g. "
     "`1=schemas/interaction.avsc,7=schemas/old.avsc`. Records are resolved "
     "from their writer schema into the reader schema (Avro schema "
     "resolution); a record whose id is not listed is dead-lettered. "
     "Required when format is `confluent`."},
    {RS_OPT_SIZE, "max_record_bytes", "1MiB",
     offsetof(parse_ctx_t, max_record_bytes), 64, 64.0 * 1024 * 1024, NULL,
     "Largest record accepted, in bytes (64 to 64MiB). Larger records are "
     "dead-lettered without being decoded."},
    {RS_OPT_ENUM, "record", "interaction", offsetof(parse_ctx_t, record), 0, -1,
     "interaction|feedback",
     "What the input records are: `interaction` (schemas/interaction.avsc, "
     "emitted as RS_KIND_INTERACTION) or `feedback` (schemas/feedback.avsc: "
     "reactions to shown recommendations, emitted as RS_KIND_FEEDBACK for "
     "bandit_reward). Feedback is read in the compiled-in schema only: "
     "`schema` and `schema_ids` do not apply to it (with `confluent` the "
     "schema id is read and not interpreted)."},
};

static void *parse_alloc(void *opaque, size_t n) {
  parse_ctx_t *c = opaque;
  return c->host->batch_alloc(c->op, n);
}

/* Parses "1=a.avsc, 7=b.avsc" and registers each id with the codec. */
static int register_ids(parse_ctx_t *c, char *errstr, size_t errstr_size) {
  const char *s = c->schema_ids;
  size_t entry = 0;
  while (*s) {
    entry++;
    const char *end = strchr(s, ',');
    size_t n = end ? (size_t)(end - s) : strlen(s);
    while (n && (*s == ' ' || *s == '\t'))
      s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
      n--;
    const char *eq = memchr(s, '=', n);
    char id_text[16] = "", path[4096] = "";
    size_t id_len = eq ? (size_t)(eq - s) : 0;
    while (id_len && (s[id_len - 1] == ' ' || s[id_len - 1] == '\t'))
      id_len--;
    size_t path_off = eq ? (size_t)(eq - s) + 1 : n;
    while (path_off < n && (s[path_off] == ' ' || s[path_off] == '\t'))
      path_off++;
    size_t path_len = n - path_off;
    if (!eq || id_len == 0 || id_len >= sizeof(id_text) || path_len == 0 ||
        path_len >= sizeof(path))
      return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                       "schema_ids: entry %zu ('%.*s') is not of the form "
                       "id=path",
                       entry, (int)(n > 64 ? 64 : n), s);
    memcpy(id_text, s, id_len);
    memcpy(path, s + path_off, path_len);
    int64_t id;
    if (rs_parse_int64(id_text, &id) || id < 0 || id > INT32_MAX)
      return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                       "schema_ids: entry %zu: '%s' is not a schema id (an "
                       "integer from 0 to 2147483647)",
                       entry, id_text);
    char why[512];
    int rc =
        rs_codec_add_schema_id(c->codec, (int32_t)id, path, why, sizeof(why));
    if (rc)
      return rs_seterr(errstr, errstr_size, RS_ECONFIG, "schema_ids: %s", why);
    if (!end)
      break;
    s = end + 1;
  }
  if (entry == 0 && c->fmt == RS_FORMAT_CONFLUENT)
    return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                     "format confluent needs schema_ids, e.g. "
                     "\"1=schemas/interaction.avsc\"");
  return 0;
}

static int parse_init(rs_op_t *op, void *vctx, const rs_host_api_t *host,
                      char *errstr, size_t errstr_size) {
  parse_ctx_t *c = vctx;
  static const rs_format_t formats[] = {RS_FORMAT_AVRO, RS_FORMAT_CONFLUENT,
                                        RS_FORMAT_JSON};
  c->op = op;
  c->host = host;
  if (c->format < 0 || (size_t)c->format >= RS_ARRAY_SIZE(formats))
    return rs_seterr(errstr, errstr_size, RS_ECONFIG, "format: bad value %d",
                     c->format);
  c->fmt = formats[c->format];

  char why[512];
  const char *schema = c->schema && *c->schema ? c->schema : NULL;
  int rc = rs_codec_new(&c->codec, schema, why, sizeof(why));
  if (rc)
    return rs_seterr(errstr, errstr_size, rc == RS_ENOMEM ? rc : RS_ECONFIG,
                     "schema: %s", why);
  if (c->fmt != RS_FORMAT_CONFLUENT && c->schema_ids && *c->schema_ids)
    host->log(op, RS_LOG_WARN,
              "schema_ids is ignored: it applies to format confluent, not %s",
              rs_format_name(c->fmt));
  else if (c->record == 1) {
    if ((c->schema && *c->schema) || (c->schema_ids && *c->schema_ids))
      host->log(op, RS_LOG_WARN,
                "schema and schema_ids are ignored for record feedback: it "
                "is read in the compiled-in schemas/feedback.avsc");
  } else if ((rc = register_ids(c, errstr, errstr_size)))
    goto fail;
  return 0;
fail:
  rs_codec_destroy(c->codec);
  c->codec = NULL;
  return rc;
}

static int dead_letter(parse_ctx_t *c, const rs_record_t *rec,
                       const char *reason) {
  int rc = c->host->dead_letter(c->op, rec, reason);
  return rc < 0 ? rc : 0;
}

static int parse_feedback(parse_ctx_t *c, const rs_record_t *rec) {
  rs_feedback_t *fb = c->host->batch_alloc(c->op, sizeof(*fb));
  if (!fb)
    return RS_ENOMEM;
  int rc = rs_feedback_decode(c->fmt, rec->value, rec->value_len, fb,
                              parse_alloc, c, c->reason, sizeof(c->reason));
  if (rc == RS_EDECODE)
    return dead_letter(c, rec, c->reason);
  if (rc) {
    c->host->log(c->op, RS_LOG_ERROR,
                 "partition %" PRId32 " offset %" PRId64 ": %s",
                 rec->src_partition, rec->src_offset, c->reason);
    return rc;
  }
  rs_record_t out = {
      .kind = RS_KIND_FEEDBACK,
      .key = fb->user,
      .key_len = fb->user_len,
      .value = rec->value,
      .value_len = rec->value_len,
      .payload = fb,
      .timestamp_ms = fb->timestamp_ms,
      .src_partition = rec->src_partition,
      .src_ordinal = 0,
      .src_offset = rec->src_offset,
  };
  return c->host->emit(c->op, 0, &out);
}

static int parse_one(parse_ctx_t *c, const rs_record_t *rec) {
  const uint32_t want = c->record == 1 ? RS_KIND_FEEDBACK : RS_KIND_INTERACTION;
  if (rec->kind == want && rec->payload)
    return c->host->emit(c->op, 0, rec);
  if (rec->kind != RS_KIND_BYTES) {
    snprintf(c->reason, sizeof(c->reason),
             "record of kind %" PRIu32 " cannot be parsed (expected bytes)",
             rec->kind);
    return dead_letter(c, rec, c->reason);
  }
  if (!rec->value)
    return dead_letter(c, rec, "record has no value (tombstone)");
  if (rec->value_len > (uint64_t)c->max_record_bytes) {
    snprintf(c->reason, sizeof(c->reason),
             "record of %zu bytes exceeds max_record_bytes %" PRId64,
             rec->value_len, c->max_record_bytes);
    return dead_letter(c, rec, c->reason);
  }
  if (c->record == 1)
    return parse_feedback(c, rec);

  rs_interaction_t *ia = c->host->batch_alloc(c->op, sizeof(*ia));
  if (!ia)
    return RS_ENOMEM;
  int rc = rs_codec_decode(c->codec, c->fmt, rec->value, rec->value_len, ia,
                           parse_alloc, c, c->reason, sizeof(c->reason));
  if (rc == RS_EDECODE)
    return dead_letter(c, rec, c->reason);
  if (rc) {
    c->host->log(c->op, RS_LOG_ERROR,
                 "partition %" PRId32 " offset %" PRId64 ": %s",
                 rec->src_partition, rec->src_offset, c->reason);
    return rc; /* out of memory: stop, do not dead-letter a good record */
  }

  rs_record_t out = {
      .kind = RS_KIND_INTERACTION,
      .key = ia->user,
      .key_len = ia->user_len,
      .value = rec->value,
      .value_len = rec->value_len,
      .payload = ia,
      .timestamp_ms = ia->timestamp_ms,
      .src_partition = rec->src_partition,
      .src_ordinal = 0,
      .src_offset = rec->src_offset,
  };
  return c->host->emit(c->op, 0, &out);
}

static int parse_process(rs_op_t *op, void *vctx, const rs_batch_t *batch) {
  parse_ctx_t *c = vctx;
  for (size_t i = 0; i < batch->count; i++) {
    int rc = parse_one(c, &batch->records[i]);
    if (rc < 0)
      return rc;
  }
  return 0;
}

static void parse_destroy(rs_op_t *op, void *vctx) {
  parse_ctx_t *c = vctx;
  rs_codec_destroy(c->codec);
  c->codec = NULL;
}

/* Referenced by the built-in operator registry. */
extern const rs_operator_def_t rs_op_parse;
const rs_operator_def_t rs_op_parse = {
    .abi_version = RS_ABI_VERSION,
    .struct_size = sizeof(rs_operator_def_t),
    .name = "parse",
    .description =
        "Decodes raw records (Avro, Confluent wire format or JSON) into "
        "typed interactions (or, with `record: feedback`, feedback) keyed "
        "by user id; records that cannot be decoded "
        "or break the interaction rules go to the dead-letter topic with "
        "their original bytes and the reason.",
    .ctx_size = sizeof(parse_ctx_t),
    .options = parse_options,
    .n_options = RS_ARRAY_SIZE(parse_options),
    .output_ports = NULL,
    .min_inputs = 1,
    .max_inputs = 1,
    .init = parse_init,
    .process = parse_process,
    .on_timer = NULL,
    .checkpoint = NULL,
    .destroy = parse_destroy,
};
