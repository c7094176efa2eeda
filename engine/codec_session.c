/* Encoders for the records the sessionize operator emits, so that sinks
 * can write them: session events (RS_KIND_SESSION_EVENT, in
 * schemas/session_event.avsc) and session summaries (RS_KIND_SESSION, in
 * schemas/session.avsc), as Avro binary, Confluent wire format or JSON.
 *
 * Both are written directly, field by field in schema order, with the
 * writers codec.c uses for interactions: no avro-c values, because a sink
 * encodes every record it writes. tests/unit/test_codec_session.c reads the
 * Avro output back with avro-c and the schema files, so the two cannot
 * drift apart unnoticed. rs_codec_encode_record() is the one entry point a
 * sink needs for any typed record.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"

#define AVRO_LONG_MAX 10 /* bytes of a zigzag varint */

static uint8_t *put_double(uint8_t *o, double v) {
  memcpy(o, &v, 8); /* little-endian host: checked in codec.c */
  return o + 8;
}

/* ---- Avro binary ---- */

static int avro_session_event(const rs_session_event_t *se, rs_buf_t *out,
                              const char *fmt, char *errstr,
                              size_t errstr_size) {
  const rs_interaction_t *in = se->interaction;
  if (in->event_type < 0 || in->event_type >= RS_EVENT__COUNT)
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "%s: event type %d is unknown", fmt, (int)in->event_type);
  size_t max = 16 * AVRO_LONG_MAX + 16 + (size_t)in->user_len + in->item_len +
               (in->device ? in->device_len : 0) +
               (in->page ? in->page_len : 0);
  if (rs_buf_reserve(out, max + 1))
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "%s: out of memory", fmt);
  uint8_t *start = (uint8_t *)out->data + out->len, *o = start;
  o = rs__codec_avro_string(o, in->user, in->user_len);
  o = rs__codec_avro_string(o, in->item, in->item_len);
  o = rs__codec_avro_long(o, in->event_type);
  *o++ = in->has_value ? 2 : 0; /* union branch: zigzag(1) or zigzag(0) */
  if (in->has_value)
    o = put_double(o, in->value);
  o = rs__codec_avro_long(o, in->timestamp_ms);
  *o++ = in->device ? 2 : 0;
  if (in->device)
    o = rs__codec_avro_string(o, in->device, in->device_len);
  *o++ = in->page ? 2 : 0;
  if (in->page)
    o = rs__codec_avro_string(o, in->page, in->page_len);
  o = rs__codec_avro_long(o, se->session_id);
  o = rs__codec_avro_long(o, se->session_start_ms);
  o = rs__codec_avro_long(o, se->position);
  *o++ = se->since_prev_ms >= 0 ? 2 : 0;
  if (se->since_prev_ms >= 0)
    o = rs__codec_avro_long(o, se->since_prev_ms);
  *o++ = se->late ? 1 : 0;
  out->len += (size_t)(o - start);
  out->data[out->len] = '\0';
  return 0;
}

static int avro_session(const rs_session_t *s, rs_buf_t *out, const char *fmt,
                        char *errstr, size_t errstr_size) {
  size_t max = 32 * AVRO_LONG_MAX + 32 + s->user_len +
               (size_t)s->n_merged * AVRO_LONG_MAX;
  for (uint32_t i = 0; i < s->n_items; i++)
    max += 2 * AVRO_LONG_MAX + s->items[i].item_len;
  if (rs_buf_reserve(out, max + 1))
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "%s: out of memory", fmt);
  uint8_t *start = (uint8_t *)out->data + out->len, *o = start;
  o = rs__codec_avro_string(o, s->user, s->user_len);
  o = rs__codec_avro_long(o, s->session_id);
  o = rs__codec_avro_long(o, s->start_ms);
  o = rs__codec_avro_long(o, s->end_ms);
  o = rs__codec_avro_long(o, s->events);
  for (int t = 0; t < RS_EVENT__COUNT; t++)
    o = rs__codec_avro_long(o, s->counts[t]);
  o = rs__codec_avro_long(o, s->n_items);
  if (s->n_items) { /* one block of n_items, then the empty block */
    o = rs__codec_avro_long(o, s->n_items);
    for (uint32_t i = 0; i < s->n_items; i++) {
      o = rs__codec_avro_string(o, s->items[i].item, s->items[i].item_len);
      o = rs__codec_avro_long(o, s->items[i].count);
    }
  }
  *o++ = 0;
  o = put_double(o, s->dwell_seconds);
  o = put_double(o, s->rating_sum);
  o = rs__codec_avro_long(o, s->late_events);
  o = rs__codec_avro_long(o, s->summarised_events);
  *o++ = s->split ? 1 : 0;
  if (s->n_merged) {
    o = rs__codec_avro_long(o, s->n_merged);
    for (uint32_t i = 0; i < s->n_merged; i++)
      o = rs__codec_avro_long(o, s->merged_ids[i]);
  }
  *o++ = 0;
  out->len += (size_t)(o - start);
  out->data[out->len] = '\0';
  return 0;
}

/* ---- JSON ---- */

/* Bytes a JSON string of n bytes may take, quotes included. */
static size_t json_len(size_t n) {
  return 6 * n + 2;
}

#define PUT_LIT(o, lit)                                                        \
  do {                                                                         \
    memcpy(o, lit, sizeof(lit) - 1);                                           \
    o += sizeof(lit) - 1;                                                      \
  } while (0)

static char *put_i64(char *o, const char *name, int64_t v) {
  return o + sprintf(o, ",\"%s\":%" PRId64, name, v);
}

static int json_check_str(const char *field, const char *s, size_t n,
                          char *errstr, size_t errstr_size) {
  if (!rs__codec_utf8_valid(s, n))
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "json: field '%s' is not valid UTF-8", field);
  return 0;
}

static int json_session_event(const rs_session_event_t *se, rs_buf_t *out,
                              char *errstr, size_t errstr_size) {
  const rs_interaction_t *in = se->interaction;
  const char *ev = rs_event_type_name(in->event_type);
  if (!ev)
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "json: event type %d is unknown", (int)in->event_type);
  if (in->has_value && !isfinite(in->value))
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "json: field 'value' is not finite; JSON cannot carry it");
  int rc;
  if ((rc = json_check_str("user_id", in->user, in->user_len, errstr,
                           errstr_size)) ||
      (rc = json_check_str("item_id", in->item, in->item_len, errstr,
                           errstr_size)) ||
      (rc = json_check_str("device", in->device, in->device_len, errstr,
                           errstr_size)) ||
      (rc =
           json_check_str("page", in->page, in->page_len, errstr, errstr_size)))
    return rc;
  size_t need = 400 + json_len(in->user_len) + json_len(in->item_len) +
                (in->device ? json_len(in->device_len) : 0) +
                (in->page ? json_len(in->page_len) : 0);
  if (rs_buf_reserve(out, need))
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "json: out of memory");
  char *start = out->data + out->len, *o = start;
  PUT_LIT(o, "{\"user_id\":");
  o = rs__codec_json_str(o, in->user, in->user_len);
  PUT_LIT(o, ",\"item_id\":");
  o = rs__codec_json_str(o, in->item, in->item_len);
  PUT_LIT(o, ",\"event_type\":");
  o = rs__codec_json_str(o, ev, (uint32_t)strlen(ev));
  if (in->has_value) {
    PUT_LIT(o, ",\"value\":");
    o += rs__codec_json_double(o, 32, in->value);
  }
  o = put_i64(o, "timestamp", in->timestamp_ms);
  if (in->device) {
    PUT_LIT(o, ",\"device\":");
    o = rs__codec_json_str(o, in->device, in->device_len);
  }
  if (in->page) {
    PUT_LIT(o, ",\"page\":");
    o = rs__codec_json_str(o, in->page, in->page_len);
  }
  o = put_i64(o, "session_id", se->session_id);
  o = put_i64(o, "session_start", se->session_start_ms);
  o = put_i64(o, "position", se->position);
  if (se->since_prev_ms >= 0)
    o = put_i64(o, "since_prev_ms", se->since_prev_ms);
  if (se->late)
    PUT_LIT(o, ",\"late\":true}");
  else
    PUT_LIT(o, ",\"late\":false}");
  out->len += (size_t)(o - start);
  out->data[out->len] = '\0';
  return 0;
}

static int json_session(const rs_session_t *s, rs_buf_t *out, char *errstr,
                        size_t errstr_size) {
  if (!isfinite(s->dwell_seconds) || !isfinite(s->rating_sum))
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "json: dwell_seconds or rating_sum is not finite; JSON "
                     "cannot carry it");
  int rc = json_check_str("user_id", s->user, s->user_len, errstr, errstr_size);
  size_t need = 600 + json_len(s->user_len) + 24 * (size_t)s->n_merged;
  for (uint32_t i = 0; i < s->n_items && !rc; i++) {
    rc = json_check_str("items.item_id", s->items[i].item, s->items[i].item_len,
                        errstr, errstr_size);
    need += 48 + json_len(s->items[i].item_len);
  }
  if (rc)
    return rc;
  if (rs_buf_reserve(out, need))
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "json: out of memory");
  static const char *const count_names[RS_EVENT__COUNT] = {
      "view", "click", "add_to_cart", "purchase", "rating"};
  char *start = out->data + out->len, *o = start;
  PUT_LIT(o, "{\"user_id\":");
  o = rs__codec_json_str(o, s->user, s->user_len);
  o = put_i64(o, "session_id", s->session_id);
  o = put_i64(o, "start", s->start_ms);
  o = put_i64(o, "end", s->end_ms);
  o = put_i64(o, "events", s->events);
  PUT_LIT(o, ",\"event_counts\":{");
  for (int t = 0; t < RS_EVENT__COUNT; t++)
    o += sprintf(o, "%s\"%s\":%" PRId64, t ? "," : "", count_names[t],
                 s->counts[t]);
  *o++ = '}';
  o = put_i64(o, "distinct_items", s->n_items);
  PUT_LIT(o, ",\"items\":[");
  for (uint32_t i = 0; i < s->n_items; i++) {
    if (i)
      *o++ = ',';
    PUT_LIT(o, "{\"item_id\":");
    o = rs__codec_json_str(o, s->items[i].item, s->items[i].item_len);
    o += sprintf(o, ",\"count\":%" PRId64 "}", s->items[i].count);
  }
  PUT_LIT(o, "],\"dwell_seconds\":");
  o += rs__codec_json_double(o, 32, s->dwell_seconds);
  PUT_LIT(o, ",\"rating_sum\":");
  o += rs__codec_json_double(o, 32, s->rating_sum);
  o = put_i64(o, "late_events", s->late_events);
  o = put_i64(o, "summarised_events", s->summarised_events);
  if (s->split)
    PUT_LIT(o, ",\"split\":true");
  else
    PUT_LIT(o, ",\"split\":false");
  PUT_LIT(o, ",\"merged_session_ids\":[");
  for (uint32_t i = 0; i < s->n_merged; i++)
    o += sprintf(o, "%s%" PRId64, i ? "," : "", s->merged_ids[i]);
  PUT_LIT(o, "]}");
  out->len += (size_t)(o - start);
  out->data[out->len] = '\0';
  return 0;
}

#undef PUT_LIT

/* ---- dispatch ---- */

static int encode_typed(const rs_record_t *rec, int avro, const char *fmt,
                        rs_buf_t *out, char *errstr, size_t errstr_size) {
  if (rec->kind == RS_KIND_RECOMMENDATION)
    return avro ? rs__codec_avro_recommendation(rec->payload, out, fmt, errstr,
                                                errstr_size)
                : rs__codec_json_recommendation(rec->payload, out, errstr,
                                                errstr_size);
  if (rec->kind == RS_KIND_FEEDBACK)
    return avro ? rs__codec_avro_feedback(rec->payload, out, fmt, errstr,
                                          errstr_size)
                : rs__codec_json_feedback(rec->payload, out, errstr,
                                          errstr_size);
  if (rec->kind == RS_KIND_REWARD)
    return avro ? rs__codec_avro_reward(rec->payload, out, fmt, errstr,
                                        errstr_size)
                : rs__codec_json_reward(rec->payload, out, errstr, errstr_size);
  if (rec->kind == RS_KIND_SESSION_EVENT) {
    const rs_session_event_t *se = rec->payload;
    if (!se->interaction)
      return rs_seterr(errstr, errstr_size, RS_EENCODE,
                       "%s: session event has no interaction", fmt);
    return avro ? avro_session_event(se, out, fmt, errstr, errstr_size)
                : json_session_event(se, out, errstr, errstr_size);
  }
  return avro ? avro_session(rec->payload, out, fmt, errstr, errstr_size)
              : json_session(rec->payload, out, errstr, errstr_size);
}

int rs_codec_encode_record(rs_codec_t *c, rs_format_t fmt,
                           const rs_record_t *rec, int32_t schema_id,
                           rs_buf_t *out, char *errstr, size_t errstr_size) {
  if (!rec || !out)
    return rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "rs_codec_encode_record: invalid argument");
  /* mf_update's records start with their interaction: a sink after it
   * writes the interaction (the model's figures stay in state). */
  if (rec->kind == RS_KIND_INTERACTION || rec->kind == RS_KIND_MF_UPDATE) {
    if (!rec->payload)
      return rs_seterr(errstr, errstr_size, RS_EENCODE,
                       "interaction record has no payload");
    return rs_codec_encode(c, fmt, rec->payload, schema_id, out, errstr,
                           errstr_size);
  }
  if (rec->kind != RS_KIND_SESSION_EVENT && rec->kind != RS_KIND_SESSION &&
      rec->kind != RS_KIND_RECOMMENDATION && rec->kind != RS_KIND_FEEDBACK &&
      rec->kind != RS_KIND_REWARD)
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "records of kind %" PRIu32 " have no typed encoding",
                     rec->kind);
  if (!rec->payload)
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "%s record has no payload",
                     rec->kind == RS_KIND_SESSION          ? "session"
                     : rec->kind == RS_KIND_RECOMMENDATION ? "recommendation"
                     : rec->kind == RS_KIND_FEEDBACK       ? "feedback"
                     : rec->kind == RS_KIND_REWARD         ? "reward"
                                                           : "session event");
  switch (fmt) {
  case RS_FORMAT_AVRO:
    return encode_typed(rec, 1, "avro", out, errstr, errstr_size);
  case RS_FORMAT_CONFLUENT: {
    size_t old = out->len;
    uint8_t hdr[5] = {0, (uint8_t)((uint32_t)schema_id >> 24),
                      (uint8_t)((uint32_t)schema_id >> 16),
                      (uint8_t)((uint32_t)schema_id >> 8), (uint8_t)schema_id};
    if (rs_buf_append(out, hdr, sizeof(hdr)))
      return rs_seterr(errstr, errstr_size, RS_ENOMEM,
                       "confluent: out of memory");
    int rc = encode_typed(rec, 1, "confluent", out, errstr, errstr_size);
    if (rc) {
      out->len = old;
      if (out->data)
        out->data[old] = '\0';
    }
    return rc;
  }
  case RS_FORMAT_JSON:
    return encode_typed(rec, 0, "json", out, errstr, errstr_size);
  default:
    return rs_seterr(errstr, errstr_size, RS_EINVAL, "unknown format %d",
                     (int)fmt);
  }
}
