/* Encoders for the records topn_emit emits (RS_KIND_RECOMMENDATION,
 * schemas/recommendation.avsc), so a sink can write them: Avro binary
 * (the Confluent header is added by rs_codec_encode_record) and JSON.
 * Written field by field in schema order, like codec_session.c;
 * tests/unit/test_codec_reco.c compares the Avro bytes with what avro-c
 * writes from the schema file. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"

#define AVRO_LONG_MAX 10

static uint8_t *put_double(uint8_t *o, double v) {
  memcpy(o, &v, 8); /* little-endian host: checked in codec.c */
  return o + 8;
}

static int check(const rs_recommendation_t *r, const char *fmt, char *errstr,
                 size_t errstr_size) {
  if (!r->user || !r->impression_id || (r->n_items && !r->items))
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "%s: recommendation without user, impression id or items",
                     fmt);
  for (uint32_t i = 0; i < r->n_items; i++)
    if (!r->items[i].item || !isfinite(r->items[i].score) ||
        !isfinite(r->items[i].propensity))
      return rs_seterr(errstr, errstr_size, RS_EENCODE,
                       "%s: recommended item %u has no id or a score or "
                       "propensity that is not finite",
                       fmt, i);
  return 0;
}

int rs__codec_avro_recommendation(const rs_recommendation_t *r, rs_buf_t *out,
                                  const char *fmt, char *errstr,
                                  size_t errstr_size) {
  int rc = check(r, fmt, errstr, errstr_size);
  if (rc)
    return rc;
  uint32_t vlen = r->variant ? r->variant_len : 0;
  size_t max =
      8 * AVRO_LONG_MAX + (size_t)r->user_len + r->impression_id_len + vlen;
  for (uint32_t i = 0; i < r->n_items; i++)
    max += AVRO_LONG_MAX + 16 + r->items[i].item_len;
  if (rs_buf_reserve(out, max + 1))
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "%s: out of memory", fmt);
  uint8_t *start = (uint8_t *)out->data + out->len, *o = start;
  o = rs__codec_avro_string(o, r->user, r->user_len);
  o = rs__codec_avro_string(o, r->impression_id, r->impression_id_len);
  if (r->n_items) { /* one block, then the empty block */
    o = rs__codec_avro_long(o, r->n_items);
    for (uint32_t i = 0; i < r->n_items; i++) {
      o = rs__codec_avro_string(o, r->items[i].item, r->items[i].item_len);
      o = put_double(o, r->items[i].score);
      o = put_double(o, r->items[i].propensity);
    }
  }
  *o++ = 0;
  o = rs__codec_avro_long(o, (int64_t)r->model_version);
  o = rs__codec_avro_long(o, r->timestamp_ms);
  o = rs__codec_avro_string(o, r->variant, vlen);
  out->len += (size_t)(o - start);
  out->data[out->len] = '\0';
  return 0;
}

int rs__codec_json_recommendation(const rs_recommendation_t *r, rs_buf_t *out,
                                  char *errstr, size_t errstr_size) {
  int rc = check(r, "json", errstr, errstr_size);
  if (rc)
    return rc;
  uint32_t vlen = r->variant ? r->variant_len : 0;
  if (!rs__codec_utf8_valid(r->user, r->user_len) ||
      !rs__codec_utf8_valid(r->impression_id, r->impression_id_len) ||
      (vlen && !rs__codec_utf8_valid(r->variant, vlen)))
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "json: user_id, impression_id or variant is not valid "
                     "UTF-8");
  size_t need =
      220 + 6 * ((size_t)r->user_len + r->impression_id_len + (size_t)vlen);
  for (uint32_t i = 0; i < r->n_items; i++) {
    if (!rs__codec_utf8_valid(r->items[i].item, r->items[i].item_len))
      return rs_seterr(errstr, errstr_size, RS_EENCODE,
                       "json: field 'items.item_id' is not valid UTF-8");
    need += 120 + 6 * (size_t)r->items[i].item_len;
  }
  if (rs_buf_reserve(out, need))
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "json: out of memory");
  char *start = out->data + out->len, *o = start;
  memcpy(o, "{\"user_id\":", 11);
  o = rs__codec_json_str(o + 11, r->user, r->user_len);
  memcpy(o, ",\"impression_id\":", 17);
  o = rs__codec_json_str(o + 17, r->impression_id, r->impression_id_len);
  memcpy(o, ",\"items\":[", 10);
  o += 10;
  for (uint32_t i = 0; i < r->n_items; i++) {
    if (i)
      *o++ = ',';
    memcpy(o, "{\"item_id\":", 11);
    o = rs__codec_json_str(o + 11, r->items[i].item, r->items[i].item_len);
    memcpy(o, ",\"score\":", 9);
    o += 9;
    o += rs__codec_json_double(o, 32, r->items[i].score);
    memcpy(o, ",\"propensity\":", 14);
    o += 14;
    o += rs__codec_json_double(o, 32, r->items[i].propensity);
    *o++ = '}';
  }
  o +=
      sprintf(o, "],\"model_version\":%llu,\"timestamp\":%lld",
              (unsigned long long)r->model_version, (long long)r->timestamp_ms);
  memcpy(o, ",\"variant\":", 11);
  o = rs__codec_json_str(o + 11, vlen ? r->variant : "", vlen);
  *o++ = '}';
  out->len += (size_t)(o - start);
  out->data[out->len] = '\0';
  return 0;
}

/* ---- decoding (recstream report) ---- */

typedef rs__avro_cur_t cur_t;

static int dec_fail(cur_t *d, const char *fmt, const char *field, char *errstr,
                    size_t errstr_size) {
  return rs_seterr(errstr, errstr_size, RS_EDECODE,
                   "%s: truncated or malformed record in field '%s' (at byte "
                   "%zu of %zu)",
                   fmt, field, (size_t)(d->p - d->b), (size_t)(d->e - d->b));
}

static int decode_avro(const uint8_t *buf, size_t len, const char *fmt,
                       rs_recommendation_t *r, char *errstr,
                       size_t errstr_size) {
  cur_t d = {buf, buf, buf + len};
  int64_t n, v;
  if (rs__avro_get_string(&d, &r->user, &r->user_len))
    return dec_fail(&d, fmt, "user_id", errstr, errstr_size);
  if (rs__avro_get_string(&d, &r->impression_id, &r->impression_id_len))
    return dec_fail(&d, fmt, "impression_id", errstr, errstr_size);
  for (;;) { /* array blocks; a negative count is followed by a byte size */
    if (rs__avro_get_long(&d, &n) || n < -(int64_t)UINT32_MAX ||
        n > (int64_t)UINT32_MAX)
      return dec_fail(&d, fmt, "items", errstr, errstr_size);
    if (n == 0)
      break;
    if (n < 0) {
      n = -n;
      if (rs__avro_get_long(&d, &v) || v < 0)
        return dec_fail(&d, fmt, "items", errstr, errstr_size);
    }
    for (int64_t i = 0; i < n; i++) {
      const char *s;
      uint32_t l;
      if (rs__avro_get_string(&d, &s, &l) || d.e - d.p < 16)
        return dec_fail(&d, fmt, "items", errstr, errstr_size);
      d.p += 16;
    }
    if ((uint64_t)r->n_items + (uint64_t)n > UINT32_MAX)
      return dec_fail(&d, fmt, "items", errstr, errstr_size);
    r->n_items += (uint32_t)n;
  }
  if (rs__avro_get_long(&d, &v))
    return dec_fail(&d, fmt, "model_version", errstr, errstr_size);
  r->model_version = (uint64_t)v;
  if (rs__avro_get_long(&d, &r->timestamp_ms))
    return dec_fail(&d, fmt, "timestamp", errstr, errstr_size);
  r->variant = "";
  if (d.p < d.e && rs__avro_get_string(&d, &r->variant, &r->variant_len))
    return dec_fail(&d, fmt, "variant", errstr, errstr_size);
  if (d.p != d.e)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "%s: %zu trailing bytes after the record", fmt,
                     (size_t)(d.e - d.p));
  return 0;
}

static int json_str(json_t *root, const char *name, int optional,
                    const char **s, uint32_t *len, char *errstr,
                    size_t errstr_size) {
  json_t *j = json_object_get(root, name);
  if (!j && optional) {
    *s = "";
    *len = 0;
    return 0;
  }
  if (!j || !json_is_string(j) || json_string_length(j) > UINT32_MAX)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     j ? "json: field '%s' must be a string"
                       : "json: missing field '%s'",
                     name);
  *s = json_string_value(j);
  *len = (uint32_t)json_string_length(j);
  return 0;
}

static char *dup_str(const char *s, uint32_t n, void *(*alloc)(void *, size_t),
                     void *opaque) {
  char *d = alloc(opaque, (size_t)n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

int rs_recommendation_decode(rs_format_t fmt, const void *buf, size_t len,
                             rs_recommendation_t *out,
                             void *(*alloc)(void *opaque, size_t n),
                             void *opaque, char *errstr, size_t errstr_size) {
  const uint8_t *b = buf ? buf : (const uint8_t *)"";
  if (!out || !alloc || (!buf && len))
    return rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "rs_recommendation_decode: invalid argument");
  memset(out, 0, sizeof(*out));
  json_t *root = NULL;
  const char *fname = fmt == RS_FORMAT_JSON ? "json" : "avro";
  int rc;
  switch (fmt) {
  case RS_FORMAT_AVRO:
    rc = decode_avro(b, len, "avro", out, errstr, errstr_size);
    break;
  case RS_FORMAT_CONFLUENT:
    fname = "confluent";
    if (len < 5 || b[0] != 0)
      return rs_seterr(errstr, errstr_size, RS_EDECODE,
                       "confluent: record of %zu bytes without the 5-byte "
                       "header (magic byte 0x00)",
                       len);
    rc = decode_avro(b + 5, len - 5, "confluent", out, errstr, errstr_size);
    break;
  case RS_FORMAT_JSON: {
    json_error_t je;
    root = json_loadb((const char *)b, len, JSON_REJECT_DUPLICATES, &je);
    if (!root || !json_is_object(root)) {
      json_decref(root);
      return rs_seterr(errstr, errstr_size, RS_EDECODE,
                       "json: invalid JSON or not an object (line %d, column "
                       "%d)",
                       je.line, je.column);
    }
    json_t *items = json_object_get(root, "items"),
           *mv = json_object_get(root, "model_version"),
           *ts = json_object_get(root, "timestamp");
    if ((rc = json_str(root, "user_id", 0, &out->user, &out->user_len, errstr,
                       errstr_size)) ||
        (rc = json_str(root, "impression_id", 0, &out->impression_id,
                       &out->impression_id_len, errstr, errstr_size)) ||
        (rc = json_str(root, "variant", 1, &out->variant, &out->variant_len,
                       errstr, errstr_size)))
      break;
    if (!json_is_array(items) || !json_is_integer(mv) || !json_is_integer(ts)) {
      rc = rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "json: fields 'items' (array), 'model_version' and "
                     "'timestamp' (integers) are required");
      break;
    }
    out->n_items = (uint32_t)json_array_size(items);
    out->model_version = (uint64_t)json_integer_value(mv);
    out->timestamp_ms = (int64_t)json_integer_value(ts);
    rc = 0;
    break;
  }
  default:
    return rs_seterr(errstr, errstr_size, RS_EINVAL, "unknown format %d",
                     (int)fmt);
  }
  if (!rc &&
      (!rs__codec_utf8_valid(out->user, out->user_len) ||
       !rs__codec_utf8_valid(out->impression_id, out->impression_id_len) ||
       !rs__codec_utf8_valid(out->variant, out->variant_len)))
    rc = rs_seterr(errstr, errstr_size, RS_EDECODE,
                   "%s: user_id, impression_id or variant is not valid UTF-8",
                   fname);
  if (!rc) {
    out->user = dup_str(out->user, out->user_len, alloc, opaque);
    out->impression_id =
        dup_str(out->impression_id, out->impression_id_len, alloc, opaque);
    out->variant = dup_str(out->variant, out->variant_len, alloc, opaque);
    if (!out->user || !out->impression_id || !out->variant)
      rc =
          rs_seterr(errstr, errstr_size, RS_ENOMEM, "%s: out of memory", fname);
  }
  json_decref(root);
  if (rc)
    memset(out, 0, sizeof(*out));
  return rc;
}
