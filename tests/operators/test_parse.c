/* Tests of the `parse` operator through the in-process harness: good records
 * in each format come out as interactions keyed by user with their source
 * position, and each kind of bad input goes to the dead letter with its
 * original bytes and a reason that names the problem. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "operators/harness.h"

#ifndef RS_SOURCE_DIR
#define RS_SOURCE_DIR "."
#endif

extern const rs_operator_def_t rs_op_parse;

static char path_buf[4][1024];

static const char *src_path(int slot, const char *rel) {
  const char *root = getenv("RS_SOURCE_DIR");
  snprintf(path_buf[slot], sizeof(path_buf[slot]), "%s/%s",
           root && *root ? root : RS_SOURCE_DIR, rel);
  return path_buf[slot];
}

static char err[1024];

static rs_harness_t *make(const char *const *options) {
  err[0] = '\0';
  rs_harness_t *h = rs_harness_new(&rs_op_parse, options, err, sizeof(err));
  cr_assert_not_null(h, "rs_harness_new: %s", err);
  return h;
}

static const rs_interaction_t sample = {
    .user = "user-1",
    .user_len = 6,
    .item = "item-9",
    .item_len = 6,
    .device = "mobile",
    .device_len = 6,
    .page = "home",
    .page_len = 4,
    .event_type = RS_EVENT_ADD_TO_CART,
    .has_value = 1,
    .value = 12.25,
    .timestamp_ms = 1700000000000,
};

/* Encodes `in` with a codec whose reader schema is `schema` (NULL: the
 * compiled-in one). */
static rs_buf_t encode(const char *schema, rs_format_t fmt,
                       const rs_interaction_t *in, int32_t id) {
  rs_codec_t *c;
  rs_buf_t b = {0};
  cr_assert_eq(rs_codec_new(&c, schema, err, sizeof(err)), 0, "%s", err);
  cr_assert_eq(rs_codec_encode(c, fmt, in, id, &b, err, sizeof(err)), 0, "%s",
               err);
  rs_codec_destroy(c);
  return b;
}

static rs_record_t bytes_record(const void *p, size_t n, int64_t offset) {
  return (rs_record_t){.kind = RS_KIND_BYTES,
                       .key = "kafka-key",
                       .key_len = 9,
                       .value = p,
                       .value_len = n,
                       .timestamp_ms = 5,
                       .src_partition = 3,
                       .src_offset = offset};
}

static int mem_eq(const void *a, size_t alen, const void *b, size_t blen) {
  return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static void assert_interaction(const rs_record_t *r, const rs_interaction_t *e,
                               const void *raw, size_t raw_len,
                               int64_t offset) {
  cr_assert_not_null(r);
  cr_assert_eq(r->kind, RS_KIND_INTERACTION);
  const rs_interaction_t *in = r->payload;
  cr_assert_not_null(in);
  cr_assert(mem_eq(r->key, r->key_len, e->user, e->user_len),
            "key is not the user id");
  cr_assert(mem_eq(r->value, r->value_len, raw, raw_len),
            "value is not the original bytes");
  cr_assert_eq(r->timestamp_ms, e->timestamp_ms);
  cr_assert_eq(r->src_partition, 3);
  cr_assert_eq(r->src_offset, offset);
  cr_assert_eq(r->src_ordinal, 0);
  cr_assert(mem_eq(in->user, in->user_len, e->user, e->user_len));
  cr_assert(mem_eq(in->item, in->item_len, e->item, e->item_len));
  cr_assert_eq(in->device == NULL, e->device == NULL);
  if (e->device)
    cr_assert(mem_eq(in->device, in->device_len, e->device, e->device_len));
  cr_assert_eq(in->page == NULL, e->page == NULL);
  if (e->page)
    cr_assert(mem_eq(in->page, in->page_len, e->page, e->page_len));
  cr_assert_eq(in->event_type, e->event_type);
  cr_assert_eq(in->has_value, e->has_value);
  if (e->has_value)
    cr_assert_eq(in->value, e->value);
  cr_assert_eq(in->timestamp_ms, e->timestamp_ms);
}

/* Pushes one record and checks it was dead-lettered, with its original key
 * and bytes, for a reason containing `needle`. */
static void expect_dead(rs_harness_t *h, const void *p, size_t n,
                        const char *needle) {
  rs_harness_clear(h);
  int64_t before = rs_harness_counter(h, "dead_lettered");
  rs_record_t rec = bytes_record(p, n, 77);
  cr_assert_eq(rs_harness_push(h, 3, &rec, 1), 0);
  cr_assert_eq(rs_harness_emitted_count(h, 0), 0, "emitted a bad record (%s)",
               needle);
  cr_assert_eq(rs_harness_dead_count(h), 1, "not dead-lettered (%s)", needle);
  const rs_harness_dead_t *d = rs_harness_dead(h, 0);
  cr_assert(strstr(d->error, needle), "reason '%s' lacks '%s'", d->error,
            needle);
  cr_assert(mem_eq(d->value, d->value_len, p, n), "bytes changed");
  cr_assert(mem_eq(d->key, d->key_len, "kafka-key", 9), "key changed");
  cr_assert_eq(d->src_partition, 3);
  cr_assert_eq(d->src_offset, 77);
  cr_assert_eq(rs_harness_counter(h, "dead_lettered"), before + 1);
}

Test(parse, avro_raw_round_trip) {
  rs_harness_t *h = make(NULL);
  rs_buf_t b = encode(NULL, RS_FORMAT_AVRO, &sample, 0);
  rs_record_t rec = bytes_record(b.data, b.len, 41);
  cr_assert_eq(rs_harness_push(h, 3, &rec, 1), 0);
  cr_assert_eq(rs_harness_emitted_count(h, 0), 1);
  cr_assert_eq(rs_harness_dead_count(h), 0);
  assert_interaction(rs_harness_emitted(h, 0, 0), &sample, b.data, b.len, 41);
  cr_assert_eq(rs_harness_counter(h, "records_in"), 1);
  cr_assert_eq(rs_harness_counter(h, "records_out"), 1);
  cr_assert_eq(rs_harness_counter(h, "dead_lettered"), 0);
  rs_buf_free(&b);
  rs_harness_destroy(h);
}

Test(parse, confluent_resolves_older_writer_schema) {
  const char *v0 = src_path(0, "tests/data/interaction_v0.avsc");
  char ids[2200];
  snprintf(ids, sizeof(ids), " 3 = %s , 4=%s", v0,
           src_path(1, "schemas/interaction.avsc"));
  const char *opts[] = {"format", "confluent", "schema_ids", ids, NULL};
  rs_harness_t *h = make(opts);

  /* Written by an older producer: no device/page, another enum order. */
  rs_buf_t old = encode(v0, RS_FORMAT_CONFLUENT, &sample, 3);
  rs_buf_t cur = encode(NULL, RS_FORMAT_CONFLUENT, &sample, 4);
  cr_assert_eq(old.data[4], 3);
  rs_record_t recs[] = {bytes_record(old.data, old.len, 10),
                        bytes_record(cur.data, cur.len, 11)};
  cr_assert_eq(rs_harness_push(h, 3, recs, 2), 0);
  cr_assert_eq(rs_harness_dead_count(h), 0, "%s",
               rs_harness_dead_count(h) ? rs_harness_dead(h, 0)->error : "");
  cr_assert_eq(rs_harness_emitted_count(h, 0), 2);
  rs_interaction_t expect_old = sample;
  expect_old.device = expect_old.page = NULL;
  expect_old.device_len = expect_old.page_len = 0;
  assert_interaction(rs_harness_emitted(h, 0, 0), &expect_old, old.data,
                     old.len, 10);
  assert_interaction(rs_harness_emitted(h, 0, 1), &sample, cur.data, cur.len,
                     11);

  /* Header problems. */
  old.data[0] = 1;
  expect_dead(h, old.data, old.len, "confluent: wrong magic byte 0x01");
  old.data[0] = 0;
  old.data[4] = 99;
  expect_dead(h, old.data, old.len, "confluent: unknown schema id 99");
  rs_buf_free(&old);
  rs_buf_free(&cur);
  rs_harness_destroy(h);
}

Test(parse, json) {
  const char *opts[] = {"format", "json", NULL};
  rs_harness_t *h = make(opts);
  rs_buf_t b = encode(NULL, RS_FORMAT_JSON, &sample, 0);
  const char *plain = "{\"user_id\":\"u\",\"item_id\":\"i\","
                      "\"event_type\":\"VIEW\",\"timestamp\":0}";
  rs_interaction_t plain_expect = {.user = "u",
                                   .user_len = 1,
                                   .item = "i",
                                   .item_len = 1,
                                   .event_type = RS_EVENT_VIEW};
  rs_record_t recs[] = {bytes_record(b.data, b.len, 1),
                        bytes_record(plain, strlen(plain), 2)};
  cr_assert_eq(rs_harness_push(h, 3, recs, 2), 0);
  cr_assert_eq(rs_harness_emitted_count(h, 0), 2);
  assert_interaction(rs_harness_emitted(h, 0, 0), &sample, b.data, b.len, 1);
  assert_interaction(rs_harness_emitted(h, 0, 1), &plain_expect, plain,
                     strlen(plain), 2);
  rs_buf_free(&b);
  rs_harness_destroy(h);
}

Test(parse, bad_avro_goes_to_dead_letter) {
  const char *opts[] = {"format", "avro", "max_record_bytes", "64", NULL};
  rs_harness_t *h = make(opts);
  rs_buf_t b = encode(NULL, RS_FORMAT_AVRO, &sample, 0);

  expect_dead(h, b.data, b.len - 3, "avro: truncated record");
  rs_buf_t t = {0};
  rs_buf_append(&t, b.data, b.len);
  rs_buf_append(&t, "\x02\x02", 2);
  expect_dead(h, t.data, t.len,
              "avro: 2 trailing bytes after a complete record");

  rs_interaction_t in = sample;
  in.user = "";
  in.user_len = 0;
  rs_buf_t e = encode(NULL, RS_FORMAT_AVRO, &in, 0);
  expect_dead(h, e.data, e.len, "avro: field 'user_id' is empty");
  rs_buf_free(&e);

  in = sample;
  in.timestamp_ms = -1000;
  e = encode(NULL, RS_FORMAT_AVRO, &in, 0);
  expect_dead(h, e.data, e.len, "avro: field 'timestamp' is negative (-1000)");
  rs_buf_free(&e);

  in = sample;
  in.event_type = RS_EVENT_RATING;
  in.value = INFINITY;
  e = encode(NULL, RS_FORMAT_AVRO, &in, 0);
  expect_dead(h, e.data, e.len, "avro: field 'value' is not finite");
  rs_buf_free(&e);

  char big[100];
  memset(big, 'x', sizeof(big));
  expect_dead(h, big, sizeof(big),
              "record of 100 bytes exceeds max_record_bytes 64");

  rs_buf_free(&t);
  rs_buf_free(&b);
  cr_assert_eq(rs_harness_counter(h, "records_in"), 6);
  cr_assert_eq(rs_harness_counter(h, "records_out"), 0);
  rs_harness_destroy(h);
}

Test(parse, unknown_avro_event_symbol) {
  /* The older schema knows SHARE; recstream does not. Bytes are written by
   * hand: user, item, enum index 5, value null, timestamp 1. */
  const char *v0 = src_path(0, "tests/data/interaction_v0.avsc");
  char ids[1100];
  snprintf(ids, sizeof(ids), "3=%s", v0);
  const char *opts[] = {"format", "confluent", "schema_ids", ids, NULL};
  rs_harness_t *h = make(opts);
  const char rec[] = "\0\0\0\0\x03"
                     "\x02u\x02i\x0a\x00\x02";
  expect_dead(h, rec, sizeof(rec) - 1,
              "confluent: unknown event type 'SHARE' in field 'event_type'");
  rs_harness_destroy(h);
}

Test(parse, bad_json_goes_to_dead_letter) {
  const char *opts[] = {"format", "json", NULL};
  rs_harness_t *h = make(opts);
  struct {
    const char *doc, *needle;
  } cases[] = {
      {"{\"user_id\":\"u\",", "json: "},
      {"{\"user_id\":\"u\",\"event_type\":\"VIEW\",\"timestamp\":1}",
       "json: missing field 'item_id'"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
       "\"timestamp\":\"yesterday\"}",
       "json: field 'timestamp' must be an integer (milliseconds), got "
       "string"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"SHARE\","
       "\"timestamp\":1}",
       "json: unknown event type 'SHARE' in field 'event_type'"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
       "\"timestamp\":-5}",
       "json: field 'timestamp' is negative (-5)"},
      {"{\"user_id\":\"\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
       "\"timestamp\":5}",
       "json: field 'user_id' is empty"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"RATING\","
       "\"value\":-1e400,\"timestamp\":5}",
       "json: real number overflow"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    expect_dead(h, cases[i].doc, strlen(cases[i].doc), cases[i].needle);
  rs_harness_destroy(h);
}

Test(parse, mixed_batch_keeps_order_and_positions) {
  const char *opts[] = {"format", "json", NULL};
  rs_harness_t *h = make(opts);
  const char *good1 = "{\"user_id\":\"a\",\"item_id\":\"x\","
                      "\"event_type\":\"CLICK\",\"timestamp\":1}";
  const char *bad = "not json";
  const char *good2 = "{\"user_id\":\"b\",\"item_id\":\"y\","
                      "\"event_type\":\"PURCHASE\",\"timestamp\":2,"
                      "\"value\":3}";
  rs_record_t recs[] = {bytes_record(good1, strlen(good1), 100),
                        bytes_record(bad, strlen(bad), 101),
                        bytes_record(good2, strlen(good2), 102)};
  recs[1].value = NULL; /* a tombstone in the middle */
  recs[1].value_len = 0;
  cr_assert_eq(rs_harness_push(h, 3, recs, 3), 0);
  cr_assert_eq(rs_harness_emitted_count(h, 0), 2);
  cr_assert_eq(rs_harness_emitted(h, 0, 0)->src_offset, 100);
  cr_assert_eq(rs_harness_emitted(h, 0, 1)->src_offset, 102);
  cr_assert(mem_eq(rs_harness_emitted(h, 0, 1)->key,
                   rs_harness_emitted(h, 0, 1)->key_len, "b", 1));
  cr_assert_eq(rs_harness_dead_count(h), 1);
  cr_assert_eq(rs_harness_dead(h, 0)->src_offset, 101);
  cr_assert(strstr(rs_harness_dead(h, 0)->error, "tombstone"));
  cr_assert_eq(rs_harness_counter(h, "records_in"), 3);
  cr_assert_eq(rs_harness_counter(h, "records_out"), 2);
  cr_assert_eq(rs_harness_counter(h, "dead_lettered"), 1);

  /* Interactions pass through untouched, so parse can be chained. */
  rs_harness_clear(h);
  rs_record_t typed = {.kind = RS_KIND_INTERACTION,
                       .key = "user-1",
                       .key_len = 6,
                       .payload = &sample,
                       .timestamp_ms = sample.timestamp_ms,
                       .src_partition = 3,
                       .src_offset = 9};
  cr_assert_eq(rs_harness_push(h, 3, &typed, 1), 0);
  cr_assert_eq(rs_harness_emitted_count(h, 0), 1);
  assert_interaction(rs_harness_emitted(h, 0, 0), &sample, NULL, 0, 9);
  rs_harness_destroy(h);
}

static void expect_init_error(const char *const *opts, const char *needle) {
  err[0] = '\0';
  rs_harness_t *h = rs_harness_new(&rs_op_parse, opts, err, sizeof(err));
  cr_assert_null(h, "accepted options that should fail with '%s'", needle);
  cr_assert(strstr(err, needle), "error '%s' lacks '%s'", err, needle);
}

Test(parse, option_errors) {
  const char *a[] = {"format", "xml", NULL};
  expect_init_error(a, "option 'format': 'xml' is not one of "
                       "avro|confluent|json");
  const char *b[] = {"max_record_bytes", "32", NULL};
  expect_init_error(b, "option 'max_record_bytes': 32 is out of range");
  const char *c[] = {"max_record_bytes", "lots", NULL};
  expect_init_error(c, "option 'max_record_bytes': 'lots' is not a size");
  const char *d[] = {"formats", "json", NULL};
  expect_init_error(d, "unknown option 'formats' for operator parse");
  const char *e[] = {"format", "confluent", "schema_ids", "1:x.avsc", NULL};
  expect_init_error(e, "schema_ids: entry 1 ('1:x.avsc') is not of the form "
                       "id=path");
  const char *f[] = {"format", "confluent", "schema_ids", "one=x.avsc", NULL};
  expect_init_error(f, "schema_ids: entry 1: 'one' is not a schema id");
  const char *g[] = {"format", "confluent", NULL};
  expect_init_error(g, "format confluent needs schema_ids");
  const char *i[] = {"format", "confluent", "schema_ids", "1=/nonexistent.avsc",
                     NULL};
  expect_init_error(i, "cannot open schema file /nonexistent.avsc");
  const char *j[] = {"schema", "/nonexistent.avsc", NULL};
  expect_init_error(j, "schema: cannot open schema file /nonexistent.avsc");
  const char *k[] = {"format", "json", "format", "avro", NULL};
  expect_init_error(k, "option 'format' is given twice");

  /* Bounds are inclusive, and 64MiB is the top. */
  const char *ok[] = {"max_record_bytes", "64MiB", NULL};
  rs_harness_t *h = make(ok);
  rs_harness_destroy(h);
  const char *too_big[] = {"max_record_bytes", "65MiB", NULL};
  expect_init_error(too_big, "out of range");
}

Test(parse, option_table_is_documented) {
  cr_assert_str_eq(rs_op_parse.name, "parse");
  cr_assert_eq(rs_op_parse.abi_version, RS_ABI_VERSION);
  cr_assert_eq(rs_op_parse.n_options, 5);
  for (size_t i = 0; i < rs_op_parse.n_options; i++) {
    const rs_option_def_t *o = &rs_op_parse.options[i];
    cr_assert(o->description && strlen(o->description) > 40,
              "option %s lacks a description", o->name);
    cr_assert_not_null(o->default_value, "option %s", o->name);
  }
}

/* record: feedback: each format comes out as RS_KIND_FEEDBACK keyed by
 * user with its source position; bad feedback is dead-lettered; records
 * already typed as feedback pass through. */
Test(parse, feedback_records) {
  static const char *const fmts[] = {"avro", "confluent", "json"};
  static const rs_format_t fv[] = {RS_FORMAT_AVRO, RS_FORMAT_CONFLUENT,
                                   RS_FORMAT_JSON};
  const rs_feedback_t fb = {.user = "user-1",
                            .user_len = 6,
                            .impression_id = "imp-3",
                            .impression_id_len = 5,
                            .item = "item-9",
                            .item_len = 6,
                            .type = RS_FEEDBACK_CLICK,
                            .value = 1,
                            .timestamp_ms = 1700000000000};
  for (int f = 0; f < 3; f++) {
    const char *opts[] = {"format", fmts[f], "record", "feedback", NULL};
    rs_harness_t *h = make(opts);
    rs_buf_t b = {0};
    rs_record_t typed = {.kind = RS_KIND_FEEDBACK, .payload = &fb};
    cr_assert_eq(
        rs_codec_encode_record(NULL, fv[f], &typed, 1, &b, err, sizeof err), 0,
        "%s", err);
    rs_record_t rec = bytes_record(b.data, b.len, 41);
    cr_assert_eq(rs_harness_push(h, 3, &rec, 1), 0);
    cr_assert_eq(rs_harness_dead_count(h), 0, "%s: %s", fmts[f],
                 rs_harness_dead_count(h) ? rs_harness_dead(h, 0)->error : "");
    cr_assert_eq(rs_harness_emitted_count(h, 0), 1);
    const rs_record_t *r = rs_harness_emitted(h, 0, 0);
    cr_assert_eq(r->kind, RS_KIND_FEEDBACK);
    cr_assert(mem_eq(r->key, r->key_len, "user-1", 6));
    cr_assert_eq(r->src_offset, 41);
    cr_assert_eq(r->timestamp_ms, fb.timestamp_ms);
    const rs_feedback_t *o = r->payload;
    cr_assert_not_null(o);
    cr_assert(mem_eq(o->impression_id, o->impression_id_len, "imp-3", 5));
    cr_assert(mem_eq(o->item, o->item_len, "item-9", 6));
    cr_assert_eq(o->type, RS_FEEDBACK_CLICK);
    /* an interaction is not feedback */
    rs_buf_t ib = encode(NULL, fv[f], &sample, 1);
    expect_dead(h, ib.data, ib.len, fmts[f]);
    /* already typed: passes through */
    rs_harness_clear(h);
    typed.src_offset = 5;
    cr_assert_eq(rs_harness_push(h, 3, &typed, 1), 0);
    cr_assert_eq(rs_harness_emitted_count(h, 0), 1);
    rs_buf_free(&b);
    rs_buf_free(&ib);
    rs_harness_destroy(h);
  }
  const char *opts[] = {"format", "json", "record", "feedback", NULL};
  rs_harness_t *h = make(opts);
  const char *bad = "{\"user_id\":\"u\",\"item_id\":\"i\",\"type\":\"LIKE\","
                    "\"timestamp\":1}";
  expect_dead(h, bad, strlen(bad), "field 'type'");
  rs_harness_destroy(h);
  const char *wrong[] = {"record", "rating", NULL};
  cr_assert_null(rs_harness_new(&rs_op_parse, wrong, err, sizeof err));
}
