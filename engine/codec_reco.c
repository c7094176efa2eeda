/* Encoders for the records topn_emit emits (RS_KIND_RECOMMENDATION,
 * schemas/recommendation.avsc), so a sink can write them: Avro binary
 * (the Confluent header is added by rs_codec_encode_record) and JSON.
 * Written field by field in schema order, like codec_session.c;
 * tests/unit/test_codec_reco.c compares the Avro bytes with what avro-c
 * writes from the schema file. */
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
  size_t max = 8 * AVRO_LONG_MAX + (size_t)r->user_len + r->impression_id_len;
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
  out->len += (size_t)(o - start);
  out->data[out->len] = '\0';
  return 0;
}

int rs__codec_json_recommendation(const rs_recommendation_t *r, rs_buf_t *out,
                                  char *errstr, size_t errstr_size) {
  int rc = check(r, "json", errstr, errstr_size);
  if (rc)
    return rc;
  if (!rs__codec_utf8_valid(r->user, r->user_len) ||
      !rs__codec_utf8_valid(r->impression_id, r->impression_id_len))
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "json: user_id or impression_id is not valid UTF-8");
  size_t need = 200 + 6 * ((size_t)r->user_len + r->impression_id_len);
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
      sprintf(o, "],\"model_version\":%llu,\"timestamp\":%lld}",
              (unsigned long long)r->model_version, (long long)r->timestamp_ms);
  out->len += (size_t)(o - start);
  out->data[out->len] = '\0';
  return 0;
}
