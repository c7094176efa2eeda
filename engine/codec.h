/* Interaction codec: the one place that turns bytes into rs_interaction_t
 * and back, for Avro binary (raw, or Confluent wire format: magic byte 0 +
 * 4-byte big-endian schema id) and JSON. avro-c and jansson errors are
 * translated here into rs_err_t + message; neither type leaks out.
 *
 * A codec holds reusable avro-c values, so one codec serves one thread.
 */
#ifndef RS_CODEC_H
#define RS_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "recstream/record.h"
#include "util.h"

typedef enum rs_format {
  RS_FORMAT_AVRO = 0,      /* raw Avro binary in the reader schema */
  RS_FORMAT_CONFLUENT = 1, /* magic 0 + schema id + Avro binary */
  RS_FORMAT_JSON = 2,      /* one JSON object per record */
} rs_format_t;

/* Returns 0 and sets *out for "avro", "confluent", "json". */
int rs_format_parse(const char *s, rs_format_t *out);
const char *rs_format_name(rs_format_t f);

typedef struct rs_codec rs_codec_t;

/* The interaction schema compiled into the binary (schemas/interaction.avsc),
 * and the others, NUL-terminated JSON. */
extern const char rs_schema_interaction_json[];
extern const char rs_schema_feedback_json[];
extern const char rs_schema_recommendation_json[];
extern const char rs_schema_reward_json[];
extern const char rs_schema_session_json[];
extern const char rs_schema_session_event_json[];

/* Creates a codec whose reader schema is the interaction schema at
 * `schema_path` (NULL: the compiled-in one). The schema must be compatible
 * with rs_interaction_t (same field names; it is checked). Free with
 * rs_codec_destroy(). */
int rs_codec_new(rs_codec_t **out, const char *schema_path, char *errstr,
                 size_t errstr_size);
void rs_codec_destroy(rs_codec_t *c);

/* Confluent wire format: records whose header names `id` were written with
 * the writer schema in file `schema_path`; they are resolved into the
 * reader schema (Avro schema resolution rules). */
int rs_codec_add_schema_id(rs_codec_t *c, int32_t id, const char *schema_path,
                           char *errstr, size_t errstr_size);

/* Decodes one record. Strings in *out are copied into memory from
 * alloc(opaque, n) (e.g. a batch arena) so they outlive the next call.
 * Checks required fields and ranges (the rules of rs_interaction_validate():
 * timestamp 0 .. RS_MAX_TIMESTAMP_MS, non-empty user and item, value finite
 * and |value| <= RS_MAX_ABS_VALUE). On failure returns RS_EDECODE with a short
 * reason in errstr, prefixed by the format, e.g. "avro: truncated record in
 * field 'item_id' (at byte 9 of 12)" or "confluent: unknown schema id 7". */
int rs_codec_decode(rs_codec_t *c, rs_format_t fmt, const void *buf, size_t len,
                    rs_interaction_t *out,
                    void *(*alloc)(void *opaque, size_t n), void *opaque,
                    char *errstr, size_t errstr_size);

/* Appends the encoding of `in` to `out` (Confluent: with schema id
 * `schema_id`, ignored otherwise). */
int rs_codec_encode(rs_codec_t *c, rs_format_t fmt, const rs_interaction_t *in,
                    int32_t schema_id, rs_buf_t *out, char *errstr,
                    size_t errstr_size);

/* Appends the encoding of a typed record, whatever its kind: interactions
 * as rs_codec_encode(); session events (RS_KIND_SESSION_EVENT) in
 * schemas/session_event.avsc and session summaries (RS_KIND_SESSION) in
 * schemas/session.avsc, as Avro binary, Confluent wire format (with
 * `schema_id`) or JSON objects with the schema's field names. RS_EENCODE
 * with a reason for a kind without a typed encoding (bytes included: they
 * are written unchanged, not encoded), a missing payload or a value JSON
 * cannot carry (non-finite double, invalid UTF-8). */
int rs_codec_encode_record(rs_codec_t *c, rs_format_t fmt,
                           const rs_record_t *rec, int32_t schema_id,
                           rs_buf_t *out, char *errstr, size_t errstr_size);

/* Like rs_codec_add_schema_id(), with the writer schema given as JSON text
 * (`json`, `len` bytes; borrowed) instead of a file. */
int rs_codec_add_schema_json(rs_codec_t *c, int32_t id, const char *json,
                             size_t len, char *errstr, size_t errstr_size);

/* The rules every decoded interaction obeys, whatever its format: non-empty
 * user and item, all strings valid UTF-8, a known event type, a timestamp
 * from 0 to RS_MAX_TIMESTAMP_MS (9999-12-31T23:59:59.999Z), a finite value
 * with |value| <= RS_MAX_ABS_VALUE (1e15), a value present for RATING and
 * >= 0 (dwell seconds) for the other event types. Returns 0, or RS_EDECODE with
 * a reason naming the field in errstr (no format prefix). */
int rs_interaction_validate(const rs_interaction_t *in, char *errstr,
                            size_t errstr_size);

/* JSON records are read by a strict allocation-free scanner when they are
 * plain (flat object, no escapes, no duplicate keys) and by jansson
 * otherwise; both give the same result. enabled = 0 sends every record to
 * jansson (for tests and the fuzzer, which compare the two). Default 1. */
void rs_codec_set_json_fast_path(rs_codec_t *c, int enabled);

/* "VIEW", "CLICK", ... for an rs_event_type_t; NULL if out of range. */
const char *rs_event_type_name(int type);
/* The rs_event_type_t whose name is the `len` bytes at `s` (exact,
 * case-sensitive), or -1. */
int rs_event_type_parse(const char *s, size_t len);

/* The direct Avro path (records in exactly the compiled-in schema are read
 * and written without avro-c's generic values) is on by default; tests and
 * the fuzzer turn it off to compare it with the generic path. */
void rs_codec_set_avro_fast_path(rs_codec_t *c, int enabled);

/* Internal, for codec_session.c: the writers codec.c uses. json_str
 * writes a quoted, escaped JSON string (up to 6 * len + 2 bytes);
 * json_double the shortest form that reads back as v (up to 32 bytes);
 * avro_long a zigzag varint (up to 10 bytes); avro_string a length and the
 * bytes (NULL: empty). */
char *rs__codec_json_str(char *o, const char *s, uint32_t len);
int rs__codec_json_double(char *buf, size_t size, double v);
int rs__codec_utf8_valid(const char *s, size_t n);
uint8_t *rs__codec_avro_long(uint8_t *o, int64_t v);
uint8_t *rs__codec_avro_string(uint8_t *o, const char *s, uint32_t len);
/* For codec_feedback.c: a decoded record's timestamp and, when has_value,
 * its value against record.h's bounds (>= 0 and <= RS_MAX_TIMESTAMP_MS;
 * finite, |value| <= RS_MAX_ABS_VALUE): 0, or RS_EDECODE with the field
 * named in errstr. */
int rs__codec_check_bounds(int64_t ts, int has_value, double value,
                           char *errstr, size_t errstr_size);

/* Internal, for the hand-written decoders of small records (codec_reco.c,
 * codec_feedback.c): a cursor over Avro binary data; get_long reads a
 * zigzag varint, get_string a length and borrows the bytes. Both return -1
 * on truncated or malformed input. */
typedef struct rs__avro_cur {
  const uint8_t *b, *p, *e; /* start, position, end */
} rs__avro_cur_t;
int rs__avro_get_long(rs__avro_cur_t *d, int64_t *out);
int rs__avro_get_string(rs__avro_cur_t *d, const char **s, uint32_t *len);
/* Copies the n strings *s[i] (lengths *l[i]; NULL ones skipped) into one
 * block from alloc(), NUL-terminated, and points *s[i] at the copies, so
 * a decoded record outlives the buffers it was read from. */
int rs__codec_copy_strings(const char **s[], uint32_t *l[], int n,
                           void *(*alloc)(void *opaque, size_t n), void *opaque,
                           const char *fmt, char *errstr, size_t errstr_size);
/* codec_reco.c: a recommendation record (schemas/recommendation.avsc). */
int rs__codec_avro_recommendation(const rs_recommendation_t *r, rs_buf_t *out,
                                  const char *fmt, char *errstr,
                                  size_t errstr_size);
int rs__codec_json_recommendation(const rs_recommendation_t *r, rs_buf_t *out,
                                  char *errstr, size_t errstr_size);
/* Decodes one recommendation (Avro in the compiled-in schema, with or
 * without the trailing `variant` of older writers; Confluent; JSON) for
 * `recstream report`: user, impression id, variant ("" when absent),
 * n_items, model_version and timestamp. The items themselves are checked
 * and skipped (out->items is NULL). Strings are copied with alloc(). */
int rs_recommendation_decode(rs_format_t fmt, const void *buf, size_t len,
                             rs_recommendation_t *out,
                             void *(*alloc)(void *opaque, size_t n),
                             void *opaque, char *errstr, size_t errstr_size);

/* ---- feedback (engine/codec_feedback.c, schemas/feedback.avsc) ----
 * Decodes one feedback record from raw Avro in the compiled-in schema,
 * the Confluent wire format (header + the same Avro; the schema id is not
 * interpreted) or a JSON object with the schema's field names (type as its
 * symbol, impression_id null or absent when unknown, value defaulting to
 * 1.0). Strings are copied with alloc(opaque, n). Checks the rules of
 * rs_feedback_validate(). On failure RS_EDECODE with a reason prefixed by
 * the format. Encoding: rs_codec_encode_record() with RS_KIND_FEEDBACK (and
 * RS_KIND_REWARD, schemas/reward.avsc). */
int rs_feedback_decode(rs_format_t fmt, const void *buf, size_t len,
                       rs_feedback_t *out,
                       void *(*alloc)(void *opaque, size_t n), void *opaque,
                       char *errstr, size_t errstr_size);
/* Non-empty user and item, valid UTF-8, a known type, a finite value with
 * |value| <= RS_MAX_ABS_VALUE (1e15) and a timestamp from 0 to
 * RS_MAX_TIMESTAMP_MS (9999-12-31T23:59:59.999Z). RS_EDECODE with a reason
 * naming the field. */
int rs_feedback_validate(const rs_feedback_t *fb, char *errstr,
                         size_t errstr_size);
/* "CLICK", ... for an rs_feedback_type_t; NULL if out of range. */
const char *rs_feedback_type_name(int type);
/* The rs_feedback_type_t named by the `len` bytes at `s`, or -1. */
int rs_feedback_type_parse(const char *s, size_t len);
/* Internal, for codec_session.c's dispatch. */
int rs__codec_avro_feedback(const rs_feedback_t *fb, rs_buf_t *out,
                            const char *fmt, char *errstr, size_t errstr_size);
int rs__codec_json_feedback(const rs_feedback_t *fb, rs_buf_t *out,
                            char *errstr, size_t errstr_size);
int rs__codec_avro_reward(const rs_reward_t *r, rs_buf_t *out, const char *fmt,
                          char *errstr, size_t errstr_size);
int rs__codec_json_reward(const rs_reward_t *r, rs_buf_t *out, char *errstr,
                          size_t errstr_size);

#endif
