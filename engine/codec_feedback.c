/* Feedback (schemas/feedback.avsc) and reward (schemas/reward.avsc)
 * records: decoding of feedback from Avro binary, the Confluent wire
 * format and JSON, and encoding of both kinds for sinks.
 *
 * Feedback is read in exactly the compiled-in schema (field order user_id,
 * impression_id (union null, string), item_id, type (enum), value (double),
 * timestamp (long)); there is no writer-schema resolution as for
 * interactions: the Confluent schema id is read and not interpreted.
 * Written field by field like codec_reco.c; tests/unit/test_codec_feedback.c
 * compares the Avro bytes with avro-c's. */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"

#define AVRO_LONG_MAX 10

static const char *const type_names[RS_FEEDBACK__COUNT] = {
    "CLICK", "ADD_TO_CART", "PURCHASE", "DISMISS"};

const char *rs_feedback_type_name(int type) {
  return type >= 0 && type < RS_FEEDBACK__COUNT ? type_names[type] : NULL;
}

int rs_feedback_type_parse(const char *s, size_t len) {
  for (int i = 0; i < RS_FEEDBACK__COUNT; i++)
    if (strlen(type_names[i]) == len && !memcmp(type_names[i], s, len))
      return i;
  return -1;
}

int rs_feedback_validate(const rs_feedback_t *fb, char *errstr,
                         size_t errstr_size) {
  if (!fb->user || fb->user_len == 0)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "field 'user_id' is empty");
  if (!fb->item || fb->item_len == 0)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "field 'item_id' is empty");
  if (!rs__codec_utf8_valid(fb->user, fb->user_len))
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "field 'user_id' is not valid UTF-8");
  if (!rs__codec_utf8_valid(fb->item, fb->item_len))
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "field 'item_id' is not valid UTF-8");
  if (fb->impression_id &&
      !rs__codec_utf8_valid(fb->impression_id, fb->impression_id_len))
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "field 'impression_id' is not valid UTF-8");
  if (fb->type < 0 || fb->type >= RS_FEEDBACK__COUNT)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "field 'type' has unknown value %" PRId32, fb->type);
  return rs__codec_check_bounds(fb->timestamp_ms, 1, fb->value, errstr,
                                errstr_size);
}

/* Copies the strings into one block from alloc() so they outlive buf. */
static int copy_strings(rs_feedback_t *fb, void *(*alloc)(void *, size_t),
                        void *opaque, const char *fmt, char *errstr,
                        size_t errstr_size) {
  const char **s[3] = {&fb->user, &fb->impression_id, &fb->item};
  uint32_t *l[3] = {&fb->user_len, &fb->impression_id_len, &fb->item_len};
  return rs__codec_copy_strings(s, l, 3, alloc, opaque, fmt, errstr,
                                errstr_size);
}

static int finish(rs_feedback_t *fb, void *(*alloc)(void *, size_t),
                  void *opaque, const char *fmt, char *errstr,
                  size_t errstr_size) {
  char why[192];
  if (rs_feedback_validate(fb, why, sizeof(why)))
    return rs_seterr(errstr, errstr_size, RS_EDECODE, "%s: %s", fmt, why);
  return copy_strings(fb, alloc, opaque, fmt, errstr, errstr_size);
}

/* ---- Avro ---- */

typedef rs__avro_cur_t cur_t;

static int avro_fail(cur_t *d, const char *fmt, const char *field,
                     const char *what, char *errstr, size_t errstr_size) {
  return rs_seterr(errstr, errstr_size, RS_EDECODE,
                   "%s: %s in field '%s' (at byte %zu of %zu)", fmt, what,
                   field, (size_t)(d->p - d->b), (size_t)(d->e - d->b));
}

static int decode_avro(const uint8_t *buf, size_t len, const char *fmt,
                       rs_feedback_t *out, void *(*alloc)(void *, size_t),
                       void *opaque, char *errstr, size_t errstr_size) {
  cur_t d = {buf, buf, buf + len};
  int64_t v;
  static const char trunc[] = "truncated or malformed record";
  if (rs__avro_get_string(&d, &out->user, &out->user_len))
    return avro_fail(&d, fmt, "user_id", trunc, errstr, errstr_size);
  if (rs__avro_get_long(&d, &v) || (v != 0 && v != 1))
    return avro_fail(&d, fmt, "impression_id", "bad union branch", errstr,
                     errstr_size);
  if (v &&
      rs__avro_get_string(&d, &out->impression_id, &out->impression_id_len))
    return avro_fail(&d, fmt, "impression_id", trunc, errstr, errstr_size);
  if (rs__avro_get_string(&d, &out->item, &out->item_len))
    return avro_fail(&d, fmt, "item_id", trunc, errstr, errstr_size);
  if (rs__avro_get_long(&d, &v))
    return avro_fail(&d, fmt, "type", trunc, errstr, errstr_size);
  if (v < 0 || v >= RS_FEEDBACK__COUNT)
    return avro_fail(&d, fmt, "type", "unknown enum symbol", errstr,
                     errstr_size);
  out->type = (int32_t)v;
  if (d.e - d.p < 8)
    return avro_fail(&d, fmt, "value", trunc, errstr, errstr_size);
  memcpy(&out->value, d.p, 8); /* little-endian host: checked in codec.c */
  d.p += 8;
  if (rs__avro_get_long(&d, &out->timestamp_ms))
    return avro_fail(&d, fmt, "timestamp", trunc, errstr, errstr_size);
  if (d.p != d.e)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "%s: %zu trailing bytes after the record", fmt,
                     (size_t)(d.e - d.p));
  return finish(out, alloc, opaque, fmt, errstr, errstr_size);
}

/* ---- JSON ---- */

static int json_string_field(json_t *root, const char *name, int optional,
                             const char **s, uint32_t *len, char *errstr,
                             size_t errstr_size) {
  json_t *j = json_object_get(root, name);
  *s = NULL;
  *len = 0;
  if (!j || json_is_null(j)) {
    if (optional)
      return 0;
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     j ? "json: field '%s' must be a string, got null"
                       : "json: missing field '%s'",
                     name);
  }
  if (!json_is_string(j))
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "json: field '%s' must be a string", name);
  size_t n = json_string_length(j);
  if (n > UINT32_MAX)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "json: field '%s' is too long", name);
  *s = json_string_value(j);
  *len = (uint32_t)n;
  return 0;
}

static int decode_json(const uint8_t *buf, size_t len, rs_feedback_t *out,
                       void *(*alloc)(void *, size_t), void *opaque,
                       char *errstr, size_t errstr_size) {
  json_error_t je;
  json_t *root = json_loadb((const char *)buf, len,
                            JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
  if (!root)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "json: invalid JSON (line %d, column %d)", je.line,
                     je.column);
  int rc;
  json_t *j;
  if (!json_is_object(root)) {
    rc = rs_seterr(errstr, errstr_size, RS_EDECODE, "json: expected an object");
    goto out;
  }
  if ((rc = json_string_field(root, "user_id", 0, &out->user, &out->user_len,
                              errstr, errstr_size)) ||
      (rc = json_string_field(root, "impression_id", 1, &out->impression_id,
                              &out->impression_id_len, errstr, errstr_size)) ||
      (rc = json_string_field(root, "item_id", 0, &out->item, &out->item_len,
                              errstr, errstr_size)))
    goto out;
  j = json_object_get(root, "type");
  if (!j || !json_is_string(j)) {
    rc = rs_seterr(errstr, errstr_size, RS_EDECODE,
                   "json: field 'type' must be one of CLICK, ADD_TO_CART, "
                   "PURCHASE, DISMISS");
    goto out;
  }
  out->type =
      rs_feedback_type_parse(json_string_value(j), json_string_length(j));
  if (out->type < 0) {
    rc = rs_seterr(errstr, errstr_size, RS_EDECODE,
                   "json: field 'type' must be one of CLICK, ADD_TO_CART, "
                   "PURCHASE, DISMISS");
    goto out;
  }
  j = json_object_get(root, "value");
  if (!j)
    out->value = 1.0; /* the schema's default */
  else if (json_is_number(j))
    out->value = json_number_value(j);
  else {
    rc = rs_seterr(errstr, errstr_size, RS_EDECODE,
                   "json: field 'value' must be a number");
    goto out;
  }
  j = json_object_get(root, "timestamp");
  if (!j || !json_is_integer(j)) {
    rc = rs_seterr(errstr, errstr_size, RS_EDECODE,
                   j ? "json: field 'timestamp' must be an integer"
                     : "json: missing field 'timestamp'");
    goto out;
  }
  out->timestamp_ms = (int64_t)json_integer_value(j);
  rc = finish(out, alloc, opaque, "json", errstr, errstr_size);
out:
  json_decref(root);
  return rc;
}

int rs_feedback_decode(rs_format_t fmt, const void *buf, size_t len,
                       rs_feedback_t *out,
                       void *(*alloc)(void *opaque, size_t n), void *opaque,
                       char *errstr, size_t errstr_size) {
  const uint8_t *b = buf;
  if (!out || !alloc || (!buf && len))
    return rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "rs_feedback_decode: invalid argument");
  if (!b)
    b = (const uint8_t *)"";
  memset(out, 0, sizeof(*out));
  switch (fmt) {
  case RS_FORMAT_AVRO:
    return decode_avro(b, len, "avro", out, alloc, opaque, errstr, errstr_size);
  case RS_FORMAT_CONFLUENT:
    if (len < 5)
      return rs_seterr(errstr, errstr_size, RS_EDECODE,
                       "confluent: record of %zu bytes is shorter than the "
                       "5-byte header",
                       len);
    if (b[0] != 0)
      return rs_seterr(errstr, errstr_size, RS_EDECODE,
                       "confluent: wrong magic byte 0x%02x (expected 0x00)",
                       b[0]);
    return decode_avro(b + 5, len - 5, "confluent", out, alloc, opaque, errstr,
                       errstr_size);
  case RS_FORMAT_JSON:
    return decode_json(b, len, out, alloc, opaque, errstr, errstr_size);
  default:
    return rs_seterr(errstr, errstr_size, RS_EINVAL, "unknown format %d",
                     (int)fmt);
  }
}

/* ---- encoding ---- */

static uint8_t *put_double(uint8_t *o, double v) {
  memcpy(o, &v, 8);
  return o + 8;
}

int rs__codec_avro_feedback(const rs_feedback_t *fb, rs_buf_t *out,
                            const char *fmt, char *errstr, size_t errstr_size) {
  if (!fb->user || !fb->item || fb->type < 0 || fb->type >= RS_FEEDBACK__COUNT)
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "%s: feedback without user or item, or of unknown type",
                     fmt);
  size_t max = 6 * AVRO_LONG_MAX + 8 + (size_t)fb->user_len + fb->item_len +
               (fb->impression_id ? fb->impression_id_len : 0);
  if (rs_buf_reserve(out, max + 1))
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "%s: out of memory", fmt);
  uint8_t *start = (uint8_t *)out->data + out->len, *o = start;
  o = rs__codec_avro_string(o, fb->user, fb->user_len);
  *o++ = fb->impression_id ? 2 : 0;
  if (fb->impression_id)
    o = rs__codec_avro_string(o, fb->impression_id, fb->impression_id_len);
  o = rs__codec_avro_string(o, fb->item, fb->item_len);
  o = rs__codec_avro_long(o, fb->type);
  o = put_double(o, fb->value);
  o = rs__codec_avro_long(o, fb->timestamp_ms);
  out->len += (size_t)(o - start);
  out->data[out->len] = '\0';
  return 0;
}

int rs__codec_json_feedback(const rs_feedback_t *fb, rs_buf_t *out,
                            char *errstr, size_t errstr_size) {
  if (!fb->user || !fb->item || fb->type < 0 ||
      fb->type >= RS_FEEDBACK__COUNT || !isfinite(fb->value))
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "json: feedback without user or item, of unknown type "
                     "or with a value that is not finite");
  if (!rs__codec_utf8_valid(fb->user, fb->user_len) ||
      !rs__codec_utf8_valid(fb->item, fb->item_len) ||
      (fb->impression_id &&
       !rs__codec_utf8_valid(fb->impression_id, fb->impression_id_len)))
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "json: a string field is not valid UTF-8");
  size_t need = 200 + 6 * ((size_t)fb->user_len + fb->item_len +
                           (fb->impression_id ? fb->impression_id_len : 0));
  if (rs_buf_reserve(out, need))
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "json: out of memory");
  char *start = out->data + out->len, *o = start;
  memcpy(o, "{\"user_id\":", 11);
  o = rs__codec_json_str(o + 11, fb->user, fb->user_len);
  memcpy(o, ",\"impression_id\":", 17);
  o += 17;
  if (fb->impression_id)
    o = rs__codec_json_str(o, fb->impression_id, fb->impression_id_len);
  else {
    memcpy(o, "null", 4);
    o += 4;
  }
  memcpy(o, ",\"item_id\":", 11);
  o = rs__codec_json_str(o + 11, fb->item, fb->item_len);
  o += sprintf(o, ",\"type\":\"%s\",\"value\":", type_names[fb->type]);
  o += rs__codec_json_double(o, 32, fb->value);
  o += sprintf(o, ",\"timestamp\":%lld}", (long long)fb->timestamp_ms);
  out->len += (size_t)(o - start);
  out->data[out->len] = '\0';
  return 0;
}

int rs__codec_avro_reward(const rs_reward_t *r, rs_buf_t *out, const char *fmt,
                          char *errstr, size_t errstr_size) {
  if (!r->user || !r->impression_id || !isfinite(r->reward) ||
      !isfinite(r->propensity))
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "%s: reward without user or impression id, or not finite",
                     fmt);
  size_t max = 8 * AVRO_LONG_MAX + 18 + (size_t)r->user_len +
               r->impression_id_len + (r->item ? r->item_len : 0);
  if (rs_buf_reserve(out, max + 1))
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "%s: out of memory", fmt);
  uint8_t *start = (uint8_t *)out->data + out->len, *o = start;
  o = rs__codec_avro_string(o, r->user, r->user_len);
  o = rs__codec_avro_string(o, r->impression_id, r->impression_id_len);
  *o++ = r->item ? 2 : 0;
  if (r->item)
    o = rs__codec_avro_string(o, r->item, r->item_len);
  o = rs__codec_avro_long(o, r->position);
  o = put_double(o, r->reward);
  o = put_double(o, r->propensity);
  *o++ = (r->flags & RS_REWARD_F_DEFAULT) ? 1 : 0;
  o = rs__codec_avro_long(o, r->impression_ms);
  o = rs__codec_avro_long(o, r->timestamp_ms);
  out->len += (size_t)(o - start);
  out->data[out->len] = '\0';
  return 0;
}

int rs__codec_json_reward(const rs_reward_t *r, rs_buf_t *out, char *errstr,
                          size_t errstr_size) {
  if (!r->user || !r->impression_id || !isfinite(r->reward) ||
      !isfinite(r->propensity))
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "json: reward without user or impression id, or not "
                     "finite");
  if (!rs__codec_utf8_valid(r->user, r->user_len) ||
      !rs__codec_utf8_valid(r->impression_id, r->impression_id_len) ||
      (r->item && !rs__codec_utf8_valid(r->item, r->item_len)))
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "json: a string field is not valid UTF-8");
  size_t need = 300 + 6 * ((size_t)r->user_len + r->impression_id_len +
                           (r->item ? r->item_len : 0));
  if (rs_buf_reserve(out, need))
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "json: out of memory");
  char *start = out->data + out->len, *o = start;
  memcpy(o, "{\"user_id\":", 11);
  o = rs__codec_json_str(o + 11, r->user, r->user_len);
  memcpy(o, ",\"impression_id\":", 17);
  o = rs__codec_json_str(o + 17, r->impression_id, r->impression_id_len);
  memcpy(o, ",\"item_id\":", 11);
  o += 11;
  if (r->item)
    o = rs__codec_json_str(o, r->item, r->item_len);
  else {
    memcpy(o, "null", 4);
    o += 4;
  }
  o += sprintf(o, ",\"position\":%d,\"reward\":", (int)r->position);
  o += rs__codec_json_double(o, 32, r->reward);
  memcpy(o, ",\"propensity\":", 14);
  o += 14;
  o += rs__codec_json_double(o, 32, r->propensity);
  o += sprintf(o,
               ",\"default_reward\":%s,\"impression_timestamp\":%lld,"
               "\"timestamp\":%lld}",
               (r->flags & RS_REWARD_F_DEFAULT) ? "true" : "false",
               (long long)r->impression_ms, (long long)r->timestamp_ms);
  out->len += (size_t)(o - start);
  out->data[out->len] = '\0';
  return 0;
}
