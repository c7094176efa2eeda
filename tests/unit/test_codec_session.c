/* The encoders of session records (engine/codec_session.c) against the
 * schema files: every Avro encoding is compared byte for byte with what
 * avro-c writes for the same values from schemas/session.avsc and
 * schemas/session_event.avsc (so the hand-written field order cannot drift
 * from the schemas), the Confluent form adds the 5-byte header, JSON is
 * read back with jansson, and the refusals are checked. */
#include <avro.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

static avro_schema_t load_schema(const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/schemas/%s.avsc", RS_SOURCE_DIR, name);
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s", path);
  static char text[65536];
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = '\0';
  avro_schema_t s;
  cr_assert_eq(avro_schema_from_json_length(text, n, &s), 0, "%s: %s", path,
               avro_strerror());
  return s;
}

static avro_value_t field(avro_value_t *rec, const char *name) {
  avro_value_t v;
  cr_assert_eq(avro_value_get_by_name(rec, name, &v, NULL), 0, "%s: %s", name,
               avro_strerror());
  return v;
}

static void set_str(avro_value_t *rec, const char *name, const char *s) {
  avro_value_t v = field(rec, name);
  cr_assert_eq(avro_value_set_string(&v, s), 0);
}

static void set_long(avro_value_t *rec, const char *name, int64_t x) {
  avro_value_t v = field(rec, name);
  cr_assert_eq(avro_value_set_long(&v, x), 0);
}

/* Sets a ["null", T] union: branch 1 via set(), or null. */
static avro_value_t set_branch(avro_value_t *rec, const char *name,
                               int present) {
  avro_value_t v = field(rec, name), b;
  cr_assert_eq(avro_value_set_branch(&v, present ? 1 : 0, &b), 0);
  if (!present)
    cr_assert_eq(avro_value_set_null(&b), 0);
  return b;
}

/* avro-c's encoding of value v. */
static size_t avroc_bytes(avro_value_t *v, char *buf, size_t cap) {
  size_t size;
  cr_assert_eq(avro_value_sizeof(v, &size), 0);
  cr_assert_leq(size, cap);
  avro_writer_t w = avro_writer_memory(buf, (int64_t)cap);
  cr_assert_eq(avro_value_write(w, v), 0, "%s", avro_strerror());
  avro_writer_free(w);
  return size;
}

static rs_interaction_t interaction(int with_options) {
  rs_interaction_t ia = {.user = "u\"1",
                         .user_len = 3,
                         .item = "item-7",
                         .item_len = 6,
                         .event_type = RS_EVENT_ADD_TO_CART,
                         .timestamp_ms = 1767225600123};
  if (with_options) {
    ia.has_value = 1;
    ia.value = 12.25;
    ia.device = "mobile";
    ia.device_len = 6;
    ia.page = "p\xc3\xa9";
    ia.page_len = 3;
  }
  return ia;
}

static void check_event_avro(const rs_session_event_t *se) {
  char err[256];
  rs_record_t rec = {.kind = RS_KIND_SESSION_EVENT, .payload = se};
  rs_buf_t b = {0};
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_AVRO, &rec, 0, &b, err,
                                      sizeof err),
               0, "%s", err);

  avro_schema_t s = load_schema("session_event");
  avro_value_iface_t *cls = avro_generic_class_from_schema(s);
  avro_value_t v;
  cr_assert_eq(avro_generic_value_new(cls, &v), 0);
  const rs_interaction_t *ia = se->interaction;
  char tmp[64];
  snprintf(tmp, sizeof tmp, "%.*s", (int)ia->user_len, ia->user);
  set_str(&v, "user_id", tmp);
  snprintf(tmp, sizeof tmp, "%.*s", (int)ia->item_len, ia->item);
  set_str(&v, "item_id", tmp);
  avro_value_t et = field(&v, "event_type");
  cr_assert_eq(avro_value_set_enum(&et, ia->event_type), 0);
  avro_value_t x = set_branch(&v, "value", ia->has_value);
  if (ia->has_value)
    cr_assert_eq(avro_value_set_double(&x, ia->value), 0);
  set_long(&v, "timestamp", ia->timestamp_ms);
  x = set_branch(&v, "device", ia->device != NULL);
  if (ia->device) {
    snprintf(tmp, sizeof tmp, "%.*s", (int)ia->device_len, ia->device);
    cr_assert_eq(avro_value_set_string(&x, tmp), 0);
  }
  x = set_branch(&v, "page", ia->page != NULL);
  if (ia->page) {
    snprintf(tmp, sizeof tmp, "%.*s", (int)ia->page_len, ia->page);
    cr_assert_eq(avro_value_set_string(&x, tmp), 0);
  }
  set_long(&v, "session_id", se->session_id);
  set_long(&v, "session_start", se->session_start_ms);
  set_long(&v, "position", se->position);
  x = set_branch(&v, "since_prev_ms", se->since_prev_ms >= 0);
  if (se->since_prev_ms >= 0)
    cr_assert_eq(avro_value_set_long(&x, se->since_prev_ms), 0);
  x = field(&v, "late");
  cr_assert_eq(avro_value_set_boolean(&x, se->late), 0);
  char want[1024];
  size_t n = avroc_bytes(&v, want, sizeof want);
  cr_assert_eq(b.len, n, "ours %zu bytes, avro-c %zu", b.len, n);
  cr_assert(!memcmp(b.data, want, n), "bytes differ from avro-c's");

  /* Confluent: magic 0, big-endian id, the same body. */
  rs_buf_t c = {0};
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_CONFLUENT, &rec, 258, &c,
                                      err, sizeof err),
               0);
  cr_assert_eq(c.len, n + 5);
  cr_assert(!memcmp(c.data, "\0\0\0\x01\x02", 5));
  cr_assert(!memcmp(c.data + 5, want, n));
  rs_buf_free(&b);
  rs_buf_free(&c);
  avro_value_decref(&v);
  avro_value_iface_decref(cls);
  avro_schema_decref(s);
}

Test(codec_session, session_event_avro_matches_avro_c) {
  rs_interaction_t full = interaction(1), bare = interaction(0);
  rs_session_event_t se = {.interaction = &full,
                           .session_id = 0x7123456789abcdefLL,
                           .session_start_ms = 1767225500000,
                           .since_prev_ms = 100123,
                           .position = 4,
                           .late = 1};
  check_event_avro(&se);
  se.interaction = &bare;
  se.since_prev_ms = -1;
  se.late = 0;
  se.position = 1;
  check_event_avro(&se);
}

static rs_session_t summary(rs_session_item_t *items, int64_t *merged) {
  items[0] = (rs_session_item_t){"i1", 2, 0, 3};
  items[1] = (rs_session_item_t){"\xe2\x82\xac", 3, 0, 1};
  merged[0] = 5;
  merged[1] = 0x7fffffffffffffffLL;
  rs_session_t s = {.user = "alice",
                    .user_len = 5,
                    .n_items = 2,
                    .items = items,
                    .merged_ids = merged,
                    .n_merged = 2,
                    .split = 1,
                    .session_id = 42,
                    .start_ms = 1000,
                    .end_ms = 99000,
                    .events = 9,
                    .counts = {4, 3, 1, 0, 1},
                    .late_events = 2,
                    .summarised_events = 5,
                    .dwell_seconds = 31.5,
                    .rating_sum = 4.0};
  return s;
}

static void check_session_avro(const rs_session_t *ss) {
  char err[256];
  rs_record_t rec = {.kind = RS_KIND_SESSION, .payload = ss};
  rs_buf_t b = {0};
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_AVRO, &rec, 0, &b, err,
                                      sizeof err),
               0, "%s", err);
  avro_schema_t s = load_schema("session");
  avro_value_iface_t *cls = avro_generic_class_from_schema(s);
  avro_value_t v, x, y;
  cr_assert_eq(avro_generic_value_new(cls, &v), 0);
  char tmp[64];
  snprintf(tmp, sizeof tmp, "%.*s", (int)ss->user_len, ss->user);
  set_str(&v, "user_id", tmp);
  set_long(&v, "session_id", ss->session_id);
  set_long(&v, "start", ss->start_ms);
  set_long(&v, "end", ss->end_ms);
  set_long(&v, "events", ss->events);
  avro_value_t counts = field(&v, "event_counts");
  static const char *const names[] = {"view", "click", "add_to_cart",
                                      "purchase", "rating"};
  for (int t = 0; t < 5; t++)
    set_long(&counts, names[t], ss->counts[t]);
  set_long(&v, "distinct_items", ss->n_items);
  x = field(&v, "items");
  for (uint32_t i = 0; i < ss->n_items; i++) {
    cr_assert_eq(avro_value_append(&x, &y, NULL), 0);
    snprintf(tmp, sizeof tmp, "%.*s", (int)ss->items[i].item_len,
             ss->items[i].item);
    set_str(&y, "item_id", tmp);
    set_long(&y, "count", ss->items[i].count);
  }
  x = field(&v, "dwell_seconds");
  cr_assert_eq(avro_value_set_double(&x, ss->dwell_seconds), 0);
  x = field(&v, "rating_sum");
  cr_assert_eq(avro_value_set_double(&x, ss->rating_sum), 0);
  set_long(&v, "late_events", ss->late_events);
  set_long(&v, "summarised_events", ss->summarised_events);
  x = field(&v, "split");
  cr_assert_eq(avro_value_set_boolean(&x, ss->split), 0);
  x = field(&v, "merged_session_ids");
  for (uint32_t i = 0; i < ss->n_merged; i++) {
    cr_assert_eq(avro_value_append(&x, &y, NULL), 0);
    cr_assert_eq(avro_value_set_long(&y, ss->merged_ids[i]), 0);
  }
  char want[2048];
  size_t n = avroc_bytes(&v, want, sizeof want);
  cr_assert_eq(b.len, n, "ours %zu bytes, avro-c %zu", b.len, n);
  cr_assert(!memcmp(b.data, want, n), "bytes differ from avro-c's");
  rs_buf_free(&b);
  avro_value_decref(&v);
  avro_value_iface_decref(cls);
  avro_schema_decref(s);
}

Test(codec_session, session_avro_matches_avro_c) {
  rs_session_item_t items[2];
  int64_t merged[2];
  rs_session_t s = summary(items, merged);
  check_session_avro(&s);
  s.n_items = 0;
  s.n_merged = 0;
  s.split = 0;
  check_session_avro(&s);
}

Test(codec_session, json_reads_back) {
  char err[256];
  rs_interaction_t ia = interaction(1);
  rs_session_event_t se = {.interaction = &ia,
                           .session_id = 77,
                           .session_start_ms = 5,
                           .since_prev_ms = -1,
                           .position = 1};
  rs_record_t rec = {.kind = RS_KIND_SESSION_EVENT, .payload = &se};
  rs_buf_t b = {0};
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_JSON, &rec, 0, &b, err,
                                      sizeof err),
               0, "%s", err);
  json_error_t je;
  json_t *j = json_loadb(b.data, b.len, 0, &je);
  cr_assert_not_null(j, "%s: %s", b.data, je.text);
  cr_assert_str_eq(json_string_value(json_object_get(j, "user_id")), "u\"1");
  cr_assert_str_eq(json_string_value(json_object_get(j, "event_type")),
                   "ADD_TO_CART");
  cr_assert_eq(json_real_value(json_object_get(j, "value")), 12.25);
  cr_assert_str_eq(json_string_value(json_object_get(j, "page")), "p\xc3\xa9");
  cr_assert_eq(json_integer_value(json_object_get(j, "session_id")), 77);
  cr_assert_eq(json_integer_value(json_object_get(j, "position")), 1);
  cr_assert_null(json_object_get(j, "since_prev_ms"), "absent when first");
  cr_assert(json_is_false(json_object_get(j, "late")));
  json_decref(j);

  rs_session_item_t items[2];
  int64_t merged[2];
  rs_session_t s = summary(items, merged);
  rec = (rs_record_t){.kind = RS_KIND_SESSION, .payload = &s};
  rs_buf_reset(&b);
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_JSON, &rec, 0, &b, err,
                                      sizeof err),
               0, "%s", err);
  j = json_loadb(b.data, b.len, 0, &je);
  cr_assert_not_null(j, "%s: %s", b.data, je.text);
  cr_assert_eq(json_integer_value(json_object_get(j, "events")), 9);
  cr_assert_eq(json_integer_value(json_object_get(
                   json_object_get(j, "event_counts"), "add_to_cart")),
               1);
  json_t *it = json_object_get(j, "items");
  cr_assert_eq(json_array_size(it), 2);
  cr_assert_str_eq(
      json_string_value(json_object_get(json_array_get(it, 1), "item_id")),
      "\xe2\x82\xac");
  cr_assert_eq(
      json_integer_value(json_object_get(json_array_get(it, 0), "count")), 3);
  cr_assert_eq(json_integer_value(json_object_get(j, "distinct_items")), 2);
  cr_assert_eq(json_real_value(json_object_get(j, "dwell_seconds")), 31.5);
  cr_assert(json_is_true(json_object_get(j, "split")));
  json_t *m = json_object_get(j, "merged_session_ids");
  cr_assert_eq(json_array_size(m), 2);
  cr_assert_eq(json_integer_value(json_array_get(m, 1)), 0x7fffffffffffffffLL);
  json_decref(j);
  rs_buf_free(&b);
}

Test(codec_session, refusals) {
  char err[256];
  rs_buf_t b = {0};
  rs_record_t bytes = {.kind = RS_KIND_BYTES, .value = "x", .value_len = 1};
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_AVRO, &bytes, 0, &b, err,
                                      sizeof err),
               RS_EENCODE);
  rs_record_t odd = {.kind = 99, .payload = "x"};
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_JSON, &odd, 0, &b, err,
                                      sizeof err),
               RS_EENCODE);
  cr_assert(strstr(err, "kind 99") != NULL, "%s", err);
  rs_record_t empty = {.kind = RS_KIND_SESSION};
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_AVRO, &empty, 0, &b, err,
                                      sizeof err),
               RS_EENCODE);
  rs_session_item_t items[2];
  int64_t merged[2];
  rs_session_t s = summary(items, merged);
  s.dwell_seconds = NAN;
  rs_record_t rec = {.kind = RS_KIND_SESSION, .payload = &s};
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_JSON, &rec, 0, &b, err,
                                      sizeof err),
               RS_EENCODE);
  cr_assert(strstr(err, "not finite") != NULL, "%s", err);
  /* Avro carries NaN. */
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_AVRO, &rec, 0, &b, err,
                                      sizeof err),
               0);
  s.dwell_seconds = 1;
  items[0].item = "\xff";
  items[0].item_len = 1;
  rs_buf_reset(&b);
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_JSON, &rec, 0, &b, err,
                                      sizeof err),
               RS_EENCODE);
  cr_assert(strstr(err, "UTF-8") != NULL, "%s", err);
  cr_assert_eq(b.len, 0, "nothing appended on failure");
  rs_interaction_t ia = interaction(0);
  ia.event_type = 7;
  rs_session_event_t se = {.interaction = &ia};
  rec = (rs_record_t){.kind = RS_KIND_SESSION_EVENT, .payload = &se};
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_AVRO, &rec, 0, &b, err,
                                      sizeof err),
               RS_EENCODE);
  rs_buf_free(&b);
}
