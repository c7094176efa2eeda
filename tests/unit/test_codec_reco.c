/* The recommendation encoders (engine/codec_reco.c) against
 * schemas/recommendation.avsc: Avro bytes equal avro-c's for the same
 * values (empty and non-empty item lists), the Confluent form adds the
 * header, JSON reads back with jansson, and bad records are refused. */
#include <avro.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

static avro_schema_t load_schema(void) {
  char path[1024];
  snprintf(path, sizeof path, "%s/schemas/recommendation.avsc", RS_SOURCE_DIR);
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s", path);
  static char text[65536];
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  avro_schema_t s;
  cr_assert_eq(avro_schema_from_json_length(text, n, &s), 0, "%s",
               avro_strerror());
  return s;
}

static avro_value_t field(avro_value_t *rec, const char *name) {
  avro_value_t v;
  cr_assert_eq(avro_value_get_by_name(rec, name, &v, NULL), 0, "%s", name);
  return v;
}

static void check_avro(const rs_recommendation_t *r) {
  char err[256];
  rs_record_t rec = {.kind = RS_KIND_RECOMMENDATION, .payload = r};
  rs_buf_t b = {0};
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_AVRO, &rec, 0, &b, err,
                                      sizeof err),
               0, "%s", err);
  avro_schema_t s = load_schema();
  avro_value_iface_t *cls = avro_generic_class_from_schema(s);
  avro_value_t v, x, items, el;
  cr_assert_eq(avro_generic_value_new(cls, &v), 0);
  char tmp[64];
  snprintf(tmp, sizeof tmp, "%.*s", (int)r->user_len, r->user);
  x = field(&v, "user_id");
  cr_assert_eq(avro_value_set_string(&x, tmp), 0);
  snprintf(tmp, sizeof tmp, "%.*s", (int)r->impression_id_len,
           r->impression_id);
  x = field(&v, "impression_id");
  cr_assert_eq(avro_value_set_string(&x, tmp), 0);
  items = field(&v, "items");
  for (uint32_t i = 0; i < r->n_items; i++) {
    cr_assert_eq(avro_value_append(&items, &el, NULL), 0);
    snprintf(tmp, sizeof tmp, "%.*s", (int)r->items[i].item_len,
             r->items[i].item);
    x = field(&el, "item_id");
    cr_assert_eq(avro_value_set_string(&x, tmp), 0);
    x = field(&el, "score");
    cr_assert_eq(avro_value_set_double(&x, r->items[i].score), 0);
    x = field(&el, "propensity");
    cr_assert_eq(avro_value_set_double(&x, r->items[i].propensity), 0);
  }
  x = field(&v, "model_version");
  cr_assert_eq(avro_value_set_long(&x, (int64_t)r->model_version), 0);
  x = field(&v, "timestamp");
  cr_assert_eq(avro_value_set_long(&x, r->timestamp_ms), 0);
  snprintf(tmp, sizeof tmp, "%.*s", (int)r->variant_len,
           r->variant ? r->variant : "");
  x = field(&v, "variant");
  cr_assert_eq(avro_value_set_string(&x, tmp), 0);
  char want[1024];
  size_t n;
  cr_assert_eq(avro_value_sizeof(&v, &n), 0);
  avro_writer_t w = avro_writer_memory(want, sizeof want);
  cr_assert_eq(avro_value_write(w, &v), 0, "%s", avro_strerror());
  avro_writer_free(w);
  cr_assert_eq(b.len, n, "ours %zu bytes, avro-c %zu", b.len, n);
  cr_assert(!memcmp(b.data, want, n), "bytes differ from avro-c's");
  rs_buf_t c = {0};
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_CONFLUENT, &rec, 7, &c,
                                      err, sizeof err),
               0, "%s", err);
  cr_assert_eq(c.len, n + 5);
  cr_assert(!memcmp(c.data, "\0\0\0\0\x07", 5));
  cr_assert(!memcmp(c.data + 5, want, n));
  rs_buf_free(&b);
  rs_buf_free(&c);
  avro_value_decref(&v);
  avro_value_iface_decref(cls);
  avro_schema_decref(s);
}

static const rs_scored_item_t items3[] = {
    {.item = "i9", .item_len = 2, .score = 2.5, .propensity = 1},
    {.item = "caf\xc3\xa9", .item_len = 5, .score = -0.125, .propensity = 0.5},
    {.item = "x", .item_len = 1, .score = 0, .propensity = 1}};

Test(codec_reco, avro_matches_avro_c) {
  rs_recommendation_t r = {.user = "u\"1",
                           .user_len = 3,
                           .impression_id = "00ff-0.12.0",
                           .impression_id_len = 11,
                           .items = items3,
                           .n_items = 3,
                           .model_version = 300,
                           .timestamp_ms = 1767225600123};
  check_avro(&r);
  r.n_items = 0;
  check_avro(&r);
  r.variant = "B-popular";
  r.variant_len = 9;
  check_avro(&r);
  r.n_items = 3;
  check_avro(&r);
}

Test(codec_reco, json_reads_back_and_refusals) {
  char err[256];
  rs_recommendation_t r = {.user = "u\"1",
                           .user_len = 3,
                           .impression_id = "imp",
                           .impression_id_len = 3,
                           .items = items3,
                           .n_items = 3,
                           .model_version = 42,
                           .timestamp_ms = 9};
  rs_record_t rec = {.kind = RS_KIND_RECOMMENDATION, .payload = &r};
  rs_buf_t b = {0};
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_JSON, &rec, 0, &b, err,
                                      sizeof err),
               0, "%s", err);
  json_error_t je;
  json_t *j = json_loadb(b.data, b.len, 0, &je);
  cr_assert_not_null(j, "%s: %s", b.data, je.text);
  cr_assert_str_eq(json_string_value(json_object_get(j, "user_id")), "u\"1");
  cr_assert_str_eq(json_string_value(json_object_get(j, "impression_id")),
                   "imp");
  json_t *a = json_object_get(j, "items");
  cr_assert_eq(json_array_size(a), 3);
  json_t *e1 = json_array_get(a, 1);
  cr_assert_str_eq(json_string_value(json_object_get(e1, "item_id")),
                   "caf\xc3\xa9");
  cr_assert_eq(json_number_value(json_object_get(e1, "score")), -0.125);
  cr_assert_eq(json_number_value(json_object_get(e1, "propensity")), 0.5);
  cr_assert_eq(json_integer_value(json_object_get(j, "model_version")), 42);
  cr_assert_eq(json_integer_value(json_object_get(j, "timestamp")), 9);
  cr_assert_str_eq(json_string_value(json_object_get(j, "variant")), "");
  json_decref(j);
  rs_buf_free(&b);

  rs_scored_item_t bad[1] = {
      {.item = "i", .item_len = 1, .score = NAN, .propensity = 1}};
  r.items = bad;
  r.n_items = 1;
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_AVRO, &rec, 0, &b, err,
                                      sizeof err),
               RS_EENCODE);
  cr_assert(strstr(err, "not finite"), "%s", err);
  bad[0].score = 1;
  bad[0].item = "\xff";
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_JSON, &rec, 0, &b, err,
                                      sizeof err),
               RS_EENCODE);
  rec.payload = NULL;
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_AVRO, &rec, 0, &b, err,
                                      sizeof err),
               RS_EENCODE);
  cr_assert(strstr(err, "recommendation"), "%s", err);
  rs_buf_free(&b);
}

/* Decoding (recstream report): every format reads back what was written,
 * a record from a writer without `variant` reads as variant "", and
 * truncated or trailing bytes are refused with the field named. */
static void *blocks[64];
static int n_blocks;
static void *test_alloc(void *opaque, size_t n) {
  (void)opaque;
  cr_assert_lt(n_blocks, 64);
  return blocks[n_blocks++] = malloc(n);
}
static void free_blocks(void) {
  while (n_blocks)
    free(blocks[--n_blocks]);
}

Test(codec_reco, decode_round_trip_and_refusals) {
  char err[256];
  rs_recommendation_t r = {.user = "u1",
                           .user_len = 2,
                           .impression_id = "imp-7",
                           .impression_id_len = 5,
                           .items = items3,
                           .n_items = 3,
                           .model_version = 300,
                           .timestamp_ms = 1767225600123,
                           .variant = "B",
                           .variant_len = 1};
  rs_record_t rec = {.kind = RS_KIND_RECOMMENDATION, .payload = &r};
  const rs_format_t fmts[] = {RS_FORMAT_AVRO, RS_FORMAT_CONFLUENT,
                              RS_FORMAT_JSON};
  for (int f = 0; f < 3; f++) {
    rs_buf_t b = {0};
    cr_assert_eq(
        rs_codec_encode_record(NULL, fmts[f], &rec, 3, &b, err, sizeof err), 0,
        "%s", err);
    rs_recommendation_t d;
    cr_assert_eq(rs_recommendation_decode(fmts[f], b.data, b.len, &d,
                                          test_alloc, NULL, err, sizeof err),
                 0, "format %d: %s", f, err);
    cr_assert_str_eq(d.user, "u1");
    cr_assert_str_eq(d.impression_id, "imp-7");
    cr_assert_str_eq(d.variant, "B");
    cr_assert_eq(d.variant_len, 1);
    cr_assert_eq(d.n_items, 3);
    cr_assert_eq(d.model_version, 300);
    cr_assert_eq(d.timestamp_ms, 1767225600123);
    if (fmts[f] == RS_FORMAT_AVRO) {
      /* An older writer: the same bytes without the trailing variant. */
      cr_assert_eq((unsigned char)b.data[b.len - 2], 2); /* length 1 */
      cr_assert_eq(rs_recommendation_decode(RS_FORMAT_AVRO, b.data, b.len - 2,
                                            &d, test_alloc, NULL, err,
                                            sizeof err),
                   0, "%s", err);
      cr_assert_str_eq(d.variant, "");
      cr_assert_str_eq(d.user, "u1");
      /* Truncated inside the items, and trailing garbage. */
      cr_assert_eq(rs_recommendation_decode(RS_FORMAT_AVRO, b.data, 12, &d,
                                            test_alloc, NULL, err, sizeof err),
                   RS_EDECODE);
      cr_assert(strstr(err, "'items'"), "%s", err);
      cr_assert_null(d.user);
      rs_buf_t t = {0};
      cr_assert_eq(rs_buf_reserve(&t, b.len + 2), 0);
      memcpy(t.data, b.data, b.len);
      t.data[b.len] = 2;
      t.data[b.len + 1] = 'x';
      cr_assert_eq(rs_recommendation_decode(RS_FORMAT_AVRO, t.data, b.len + 2,
                                            &d, test_alloc, NULL, err,
                                            sizeof err),
                   RS_EDECODE);
      cr_assert(strstr(err, "trailing"), "%s", err);
      rs_buf_free(&t);
    }
    rs_buf_free(&b);
  }
  rs_recommendation_t d;
  cr_assert_eq(rs_recommendation_decode(RS_FORMAT_JSON, "{\"user_id\":1}", 13,
                                        &d, test_alloc, NULL, err, sizeof err),
               RS_EDECODE);
  cr_assert(strstr(err, "user_id"), "%s", err);
  cr_assert_eq(rs_recommendation_decode(RS_FORMAT_CONFLUENT, "\1abcdef", 7, &d,
                                        test_alloc, NULL, err, sizeof err),
               RS_EDECODE);
  const char *old = "{\"user_id\":\"u\",\"impression_id\":\"i\",\"items\":[],"
                    "\"model_version\":1,\"timestamp\":2}";
  cr_assert_eq(rs_recommendation_decode(RS_FORMAT_JSON, old, strlen(old), &d,
                                        test_alloc, NULL, err, sizeof err),
               0, "%s", err);
  cr_assert_str_eq(d.variant, "");
  free_blocks();
}
