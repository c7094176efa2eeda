/* Unit tests of the interaction codec (engine/codec.c): round trips of every
 * field in every format, schema resolution for Confluent writer schemas,
 * the validation rules, and malformed input of each kind. Avro bytes that
 * the codec would never write (bad lengths, unknown symbols) are built by
 * hand with the small writer below. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#ifndef RS_SOURCE_DIR
#define RS_SOURCE_DIR "."
#endif

static const char *src_path(char *buf, size_t size, const char *rel) {
  const char *root = getenv("RS_SOURCE_DIR");
  snprintf(buf, size, "%s/%s", root && *root ? root : RS_SOURCE_DIR, rel);
  return buf;
}

static void *arena_alloc(void *opaque, size_t n) {
  return rs_arena_alloc(opaque, n);
}

/* ---- a minimal Avro binary writer for hand-made records ---- */
typedef struct abuf {
  uint8_t b[1024];
  size_t n;
} abuf_t;

static void a_long(abuf_t *a, int64_t v) {
  uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
  while (z > 0x7f) {
    a->b[a->n++] = (uint8_t)((z & 0x7f) | 0x80);
    z >>= 7;
  }
  a->b[a->n++] = (uint8_t)z;
}

static void a_bytes(abuf_t *a, const void *p, size_t n) {
  memcpy(a->b + a->n, p, n);
  a->n += n;
}

static void a_str(abuf_t *a, const char *s) {
  a_long(a, (int64_t)strlen(s));
  a_bytes(a, s, strlen(s));
}

static void a_double(abuf_t *a, double d) { /* Avro: little-endian */
  uint64_t u;
  memcpy(&u, &d, 8);
  for (int i = 0; i < 8; i++)
    a->b[a->n++] = (uint8_t)(u >> (8 * i));
}

/* A record in the compiled-in schema: user, item, event index, value (or
 * none), timestamp, device, page. */
static void a_interaction(abuf_t *a, const char *user, const char *item, int ev,
                          const double *value, int64_t ts, const char *device,
                          const char *page) {
  a_str(a, user);
  a_str(a, item);
  a_long(a, ev);
  if (value) {
    a_long(a, 1);
    a_double(a, *value);
  } else {
    a_long(a, 0);
  }
  a_long(a, ts);
  if (device) {
    a_long(a, 1);
    a_str(a, device);
  } else {
    a_long(a, 0);
  }
  if (page) {
    a_long(a, 1);
    a_str(a, page);
  } else {
    a_long(a, 0);
  }
}

static rs_codec_t *codec;
static rs_arena_t arena;
static char err[512];

static void setup(void) {
  rs_arena_init(&arena, 4096);
  err[0] = '\0';
  cr_assert_eq(rs_codec_new(&codec, NULL, err, sizeof(err)), 0, "%s", err);
}

static void teardown(void) {
  rs_codec_destroy(codec);
  rs_arena_free(&arena);
}

static int decode(rs_format_t fmt, const void *buf, size_t len,
                  rs_interaction_t *out) {
  err[0] = '\0';
  return rs_codec_decode(codec, fmt, buf, len, out, arena_alloc, &arena, err,
                         sizeof(err));
}

static void expect_error(rs_format_t fmt, const void *buf, size_t len,
                         const char *needle) {
  rs_interaction_t out;
  int rc = decode(fmt, buf, len, &out);
  cr_assert_eq(rc, RS_EDECODE, "expected RS_EDECODE (%s), got %d: %s", needle,
               rc, err);
  cr_assert(strstr(err, needle), "error '%s' lacks '%s'", err, needle);
}

static int str_eq(const char *a, uint32_t alen, const char *b) {
  if (!a || !b)
    return a == b;
  return alen == strlen(b) && memcmp(a, b, alen) == 0;
}

static void assert_same(const rs_interaction_t *a, const rs_interaction_t *b) {
  cr_assert(a->user_len == b->user_len &&
            memcmp(a->user, b->user, a->user_len) == 0);
  cr_assert(a->item_len == b->item_len &&
            memcmp(a->item, b->item, a->item_len) == 0);
  cr_assert_eq(a->device == NULL, b->device == NULL);
  if (a->device)
    cr_assert(a->device_len == b->device_len &&
              memcmp(a->device, b->device, a->device_len) == 0);
  cr_assert_eq(a->page == NULL, b->page == NULL);
  if (a->page)
    cr_assert(a->page_len == b->page_len &&
              memcmp(a->page, b->page, a->page_len) == 0);
  cr_assert_eq(a->event_type, b->event_type);
  cr_assert_eq(a->has_value, b->has_value);
  if (a->has_value)
    cr_assert(a->value == b->value, "%.17g != %.17g", a->value, b->value);
  cr_assert_eq(a->timestamp_ms, b->timestamp_ms);
}

static const rs_interaction_t full = {
    .user = "user-42",
    .user_len = 7,
    .item = "item-\"7\"\\\n\x01 é€😀",
    .item_len = 21,
    .device = "mobile",
    .device_len = 6,
    .page = "",
    .page_len = 0,
    .event_type = RS_EVENT_RATING,
    .has_value = 1,
    .value = 0.1 + 0.2, /* needs 17 significant digits */
    .timestamp_ms = 1700000000123,
};

static const rs_interaction_t sparse = {
    .user = "u",
    .user_len = 1,
    .item = "i",
    .item_len = 1,
    .event_type = RS_EVENT_VIEW,
    .timestamp_ms = 0,
};

TestSuite(codec, .init = setup, .fini = teardown);

Test(codec, round_trip_every_format) {
  const rs_format_t fmts[] = {RS_FORMAT_AVRO, RS_FORMAT_CONFLUENT,
                              RS_FORMAT_JSON};
  const rs_interaction_t *cases[] = {&full, &sparse};
  cr_assert_eq(strlen(full.item), full.item_len);
  for (size_t f = 0; f < 3; f++) {
    for (size_t k = 0; k < 2; k++) {
      rs_buf_t b = {0};
      rs_interaction_t out;
      cr_assert_eq(
          rs_codec_encode(codec, fmts[f], cases[k], 5, &b, err, sizeof(err)), 0,
          "%s", err);
      if (fmts[f] == RS_FORMAT_CONFLUENT) {
        cr_assert_eq(b.data[0], 0);
        cr_assert_eq(b.data[4], 5);
        if (k == 0) /* id 5 unknown until registered */
          expect_error(fmts[f], b.data, b.len, "unknown schema id 5");
        if (k == 0)
          cr_assert_eq(
              rs_codec_add_schema_id(
                  codec, 5,
                  src_path(err, sizeof(err), "schemas/interaction.avsc"), err,
                  sizeof(err)),
              0, "%s", err);
      }
      cr_assert_eq(decode(fmts[f], b.data, b.len, &out), 0, "%s: %s",
                   rs_format_name(fmts[f]), err);
      assert_same(&out, cases[k]);
      /* Strings are copies in the arena, NUL-terminated, not the input. */
      cr_assert((char *)out.user < b.data ||
                (char *)out.user >= b.data + b.len);
      cr_assert_eq(out.user[out.user_len], '\0');
      rs_buf_free(&b);
    }
  }
}

Test(codec, hand_written_avro_matches_schema_order) {
  abuf_t a = {0};
  double v = 2.5;
  a_interaction(&a, "alice", "book", RS_EVENT_PURCHASE, &v, 1234, NULL, "cart");
  rs_interaction_t out;
  cr_assert_eq(decode(RS_FORMAT_AVRO, a.b, a.n, &out), 0, "%s", err);
  cr_assert(str_eq(out.user, out.user_len, "alice"));
  cr_assert(str_eq(out.item, out.item_len, "book"));
  cr_assert_eq(out.event_type, RS_EVENT_PURCHASE);
  cr_assert_eq(out.has_value, 1);
  cr_assert_eq(out.value, 2.5);
  cr_assert_eq(out.timestamp_ms, 1234);
  cr_assert_null(out.device);
  cr_assert(str_eq(out.page, out.page_len, "cart"));
}

Test(codec, json_forms) {
  rs_interaction_t out;
  const char *j = "{\"user_id\":\"u1\",\"item_id\":\"i1\",\"event_type\":"
                  "\"CLICK\",\"value\":null,\"timestamp\":5,\"device\":null}";
  cr_assert_eq(decode(RS_FORMAT_JSON, j, strlen(j), &out), 0, "%s", err);
  cr_assert_eq(out.has_value, 0);
  cr_assert_null(out.device);
  cr_assert_null(out.page);
  cr_assert_eq(out.event_type, RS_EVENT_CLICK);

  /* Integer value, whitespace, unknown keys of every scalar kind, escapes
   * (these take the jansson path); the largest timestamp allowed. */
  j = " {\n \"extra\" : [1, {\"x\": true}], \"user_id\" : \"u\\u00e9\\\"\","
      " \"item_id\":\"i\", \"event_type\":\"VIEW\", \"value\": 3,"
      " \"timestamp\": 253402300799999, \"page\": \"p\" } \n";
  cr_assert_eq(decode(RS_FORMAT_JSON, j, strlen(j), &out), 0, "%s", err);
  cr_assert(str_eq(out.user, out.user_len, "u\xc3\xa9\""));
  cr_assert_eq(out.value, 3.0);
  cr_assert_eq(out.timestamp_ms, RS_MAX_TIMESTAMP_MS);
  cr_assert(str_eq(out.page, out.page_len, "p"));
}

Test(codec, json_fast_path_agrees_with_jansson) {
  const char *docs[] = {
      "{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"RATING\","
      "\"value\":-0.0,\"timestamp\":1}",
      "{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"RATING\","
      "\"value\":1e-400,\"timestamp\":1}",
      "{\"user_id\":\"\xc3\xa9\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
      "\"timestamp\":9223372036854775807,\"a\":1,\"b\":\"x\",\"c\":false}",
      "{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
      "\"timestamp\":9223372036854775808}",
      "{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
      "\"timestamp\":1,\"a\":1,\"a\":2}",
      "{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
      "\"timestamp\":01}",
      "{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
      "\"timestamp\":1}x",
      "{\"user_id\":\"\xff\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
      "\"timestamp\":1}",
      "{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
      "\"timestamp\":253402300799999,\"value\":1e15}",
      "{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
      "\"timestamp\":253402300800000}",
      "{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"RATING\","
      "\"timestamp\":1,\"value\":-1000000000000001}",
  };
  for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
    rs_interaction_t fast, slow;
    char fast_err[512];
    rs_codec_set_json_fast_path(codec, 1);
    int rc_fast = decode(RS_FORMAT_JSON, docs[i], strlen(docs[i]), &fast);
    strcpy(fast_err, err);
    rs_codec_set_json_fast_path(codec, 0);
    int rc_slow = decode(RS_FORMAT_JSON, docs[i], strlen(docs[i]), &slow);
    cr_assert_eq(rc_fast, rc_slow, "doc %zu: %s vs %s", i, fast_err, err);
    if (rc_fast == 0)
      assert_same(&fast, &slow);
    else
      cr_assert_str_eq(fast_err, err, "doc %zu", i);
  }
}

Test(codec, json_errors) {
  struct {
    const char *doc, *needle;
  } cases[] = {
      {"{\"user_id\":", "json: "},
      {"", "json: "},
      {"[1,2]", "json: expected an object, got array"},
      {"{\"item_id\":\"i\",\"event_type\":\"VIEW\",\"timestamp\":1}",
       "json: missing field 'user_id'"},
      {"{\"user_id\":\"u\",\"event_type\":\"VIEW\",\"timestamp\":1}",
       "json: missing field 'item_id'"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\",\"timestamp\":1}",
       "json: missing field 'event_type'"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"VIEW\"}",
       "json: missing field 'timestamp'"},
      {"{\"user_id\":7,\"item_id\":\"i\",\"event_type\":\"VIEW\","
       "\"timestamp\":1}",
       "json: field 'user_id' must be a string, got integer"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
       "\"timestamp\":\"1\"}",
       "json: field 'timestamp' must be an integer"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
       "\"timestamp\":1.5}",
       "json: field 'timestamp' must be an integer"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
       "\"timestamp\":1,\"value\":\"2\"}",
       "json: field 'value' must be a number or null, got string"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
       "\"timestamp\":1,\"device\":{}}",
       "json: field 'device' must be a string or null, got object"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"click\","
       "\"timestamp\":1}",
       "json: unknown event type 'click' in field 'event_type'"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":3,"
       "\"timestamp\":1}",
       "json: field 'event_type' must be a string, got integer"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
       "\"timestamp\":-1}",
       "json: field 'timestamp' is negative (-1)"},
      {"{\"user_id\":\"\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
       "\"timestamp\":1}",
       "json: field 'user_id' is empty"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"RATING\","
       "\"timestamp\":1,\"value\":1e999}",
       "json: real number overflow"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"RATING\","
       "\"timestamp\":1}",
       "json: field 'value' is required for event type RATING"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
       "\"timestamp\":1,\"value\":-2}",
       "json: field 'value' (dwell seconds) is negative"},
      {"{\"user_id\":\"u\",\"user_id\":\"v\",\"item_id\":\"i\","
       "\"event_type\":\"VIEW\",\"timestamp\":1}",
       "json: duplicate object key"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"VIEW\","
       "\"timestamp\":1} {}",
       "json: end of file expected"},
  };
  for (int fast = 0; fast < 2; fast++) {
    rs_codec_set_json_fast_path(codec, fast);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
      expect_error(RS_FORMAT_JSON, cases[i].doc, strlen(cases[i].doc),
                   cases[i].needle);
  }
}

Test(codec, avro_malformed) {
  abuf_t a = {0};
  double v = 1;
  a_interaction(&a, "alice", "book", RS_EVENT_CLICK, &v, 10, "tv", NULL);

  expect_error(RS_FORMAT_AVRO, a.b, 0,
               "avro: truncated record in field "
               "'user_id'");
  for (size_t cut = 1; cut < a.n; cut++)
    expect_error(RS_FORMAT_AVRO, a.b, cut, "avro: truncated record");
  abuf_t t = a;
  a_bytes(&t, "zz", 2);
  expect_error(RS_FORMAT_AVRO, t.b, t.n,
               "avro: 2 trailing bytes after a complete record");

  abuf_t b = {0}; /* string length beyond the record */
  a_long(&b, 1000000000000LL);
  a_bytes(&b, "abc", 3);
  expect_error(RS_FORMAT_AVRO, b.b, b.n,
               "avro: truncated record in field 'user_id'");
  b.n = 0; /* negative length */
  a_long(&b, -3);
  expect_error(RS_FORMAT_AVRO, b.b, b.n,
               "avro: negative string or bytes length in field 'user_id'");
  b.n = 0; /* varint of 11 bytes */
  a_bytes(&b, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);
  expect_error(RS_FORMAT_AVRO, b.b, b.n, "avro: malformed varint");
  b.n = 0; /* enum index 9 */
  a_str(&b, "u");
  a_str(&b, "i");
  a_long(&b, 9);
  expect_error(RS_FORMAT_AVRO, b.b, b.n,
               "avro: enum symbol index out of range in field 'event_type'");
  b.n = 0; /* union branch 2 of 2 */
  a_str(&b, "u");
  a_str(&b, "i");
  a_long(&b, 0);
  a_long(&b, 2);
  expect_error(RS_FORMAT_AVRO, b.b, b.n,
               "avro: union branch index out of range in field 'value'");

  b.n = 0; /* valid bytes, invalid UTF-8 user */
  a_interaction(&b, "\xc3\x28", "i", RS_EVENT_VIEW, NULL, 1, NULL, NULL);
  expect_error(RS_FORMAT_AVRO, b.b, b.n,
               "avro: field 'user_id' is not valid UTF-8");
  b.n = 0;
  double nan = NAN;
  a_interaction(&b, "u", "i", RS_EVENT_RATING, &nan, 1, NULL, NULL);
  expect_error(RS_FORMAT_AVRO, b.b, b.n, "avro: field 'value' is not finite");
  b.n = 0;
  double inf = -INFINITY;
  a_interaction(&b, "u", "i", RS_EVENT_RATING, &inf, 1, NULL, NULL);
  expect_error(RS_FORMAT_AVRO, b.b, b.n, "avro: field 'value' is not finite");
  b.n = 0;
  a_interaction(&b, "u", "", RS_EVENT_VIEW, NULL, 1, NULL, NULL);
  expect_error(RS_FORMAT_AVRO, b.b, b.n, "avro: field 'item_id' is empty");
  b.n = 0;
  a_interaction(&b, "u", "i", RS_EVENT_VIEW, NULL, -5, NULL, NULL);
  expect_error(RS_FORMAT_AVRO, b.b, b.n,
               "avro: field 'timestamp' is negative (-5)");
}

Test(codec, confluent_header_errors) {
  cr_assert_eq(rs_codec_add_schema_json(codec, 1, rs_schema_interaction_json,
                                        strlen(rs_schema_interaction_json), err,
                                        sizeof(err)),
               0, "%s", err);
  expect_error(RS_FORMAT_CONFLUENT, "\0\0\0", 3,
               "confluent: record of 3 bytes is shorter than the 5-byte "
               "header");
  expect_error(RS_FORMAT_CONFLUENT, "{\"a\":1}", 7,
               "confluent: wrong magic byte 0x7b (expected 0x00)");
  expect_error(RS_FORMAT_CONFLUENT, "\0\0\0\1\0", 5,
               "confluent: unknown schema id 256");
  expect_error(RS_FORMAT_CONFLUENT, "\0\0\0\0\1", 5,
               "confluent: truncated record in field 'user_id'");
  cr_assert_eq(rs_codec_add_schema_json(codec, 1, rs_schema_interaction_json,
                                        strlen(rs_schema_interaction_json), err,
                                        sizeof(err)),
               RS_EINVAL);
  cr_assert(strstr(err, "schema id 1 is registered twice"), "%s", err);
}

/* A writer that differs from the reader in every way resolution allows:
 * another record name, an extra field, fields reordered, int timestamp,
 * float value, non-union device, enum symbols reordered, page missing. */
static const char writer_v2[] =
    "{\"type\":\"record\",\"name\":\"Event\",\"namespace\":\"other\","
    "\"fields\":["
    "{\"name\":\"session\",\"type\":{\"type\":\"array\",\"items\":\"long\"}},"
    "{\"name\":\"item_id\",\"type\":\"string\"},"
    "{\"name\":\"user_id\",\"type\":\"string\"},"
    "{\"name\":\"timestamp\",\"type\":\"int\"},"
    "{\"name\":\"event_type\",\"type\":{\"type\":\"enum\",\"name\":\"K\","
    "\"symbols\":[\"SHARE\",\"RATING\",\"VIEW\"]}},"
    "{\"name\":\"value\",\"type\":[\"null\",\"float\"]},"
    "{\"name\":\"device\",\"type\":\"string\"}]}";

Test(codec, confluent_resolves_writer_schema) {
  cr_assert_eq(rs_codec_add_schema_json(codec, 9, writer_v2, strlen(writer_v2),
                                        err, sizeof(err)),
               0, "%s", err);
  abuf_t a = {0};
  a_bytes(&a, "\0\0\0\0\x09", 5);
  a_long(&a, 2); /* session: one block of two longs */
  a_long(&a, 100);
  a_long(&a, -7);
  a_long(&a, 0);
  a_str(&a, "item-b");
  a_str(&a, "user-a");
  a_long(&a, 86400);
  size_t enum_at = a.n;
  a_long(&a, 1); /* RATING in the writer's enum */
  a_long(&a, 1); /* float branch */
  float f = 4.5f;
  a_bytes(&a, &f, 4);
  a_str(&a, "watch");
  rs_interaction_t out;
  cr_assert_eq(decode(RS_FORMAT_CONFLUENT, a.b, a.n, &out), 0, "%s", err);
  cr_assert(str_eq(out.user, out.user_len, "user-a"));
  cr_assert(str_eq(out.item, out.item_len, "item-b"));
  cr_assert_eq(out.timestamp_ms, 86400);
  cr_assert_eq(out.event_type, RS_EVENT_RATING);
  cr_assert_eq(out.has_value, 1);
  cr_assert_eq(out.value, 4.5);
  cr_assert(str_eq(out.device, out.device_len, "watch"));
  cr_assert_null(out.page);

  /* An int field holding more than 32 bits is malformed, as avro-c says. */
  abuf_t big = {0};
  a_bytes(&big, a.b, enum_at - 3); /* up to the 3-byte timestamp */
  a_long(&big, 1LL << 31);
  a_bytes(&big, a.b + enum_at, a.n - enum_at);
  expect_error(RS_FORMAT_CONFLUENT, big.b, big.n,
               "confluent: int value out of 32-bit range in field "
               "'timestamp'");

  /* The writer's SHARE symbol has no rs_event_type_t. */
  a.b[enum_at] = 0;
  expect_error(RS_FORMAT_CONFLUENT, a.b, a.n,
               "confluent: unknown event type 'SHARE' in field 'event_type'");
}

Test(codec, writer_and_reader_schema_checks) {
  static const char no_user[] =
      "{\"type\":\"record\",\"name\":\"I\",\"fields\":["
      "{\"name\":\"item_id\",\"type\":\"string\"},"
      "{\"name\":\"event_type\",\"type\":{\"type\":\"enum\",\"name\":\"E\","
      "\"symbols\":[\"VIEW\"]}},{\"name\":\"timestamp\",\"type\":\"long\"}]}";
  cr_assert_neq(rs_codec_add_schema_json(codec, 2, no_user, strlen(no_user),
                                         err, sizeof(err)),
                0);
  cr_assert(strstr(err, "lacks field 'user_id'"), "%s", err);

  static const char bad_type[] =
      "{\"type\":\"record\",\"name\":\"I\",\"fields\":["
      "{\"name\":\"user_id\",\"type\":\"long\"},"
      "{\"name\":\"item_id\",\"type\":\"string\"},"
      "{\"name\":\"event_type\",\"type\":{\"type\":\"enum\",\"name\":\"E\","
      "\"symbols\":[\"VIEW\"]}},{\"name\":\"timestamp\",\"type\":\"long\"}]}";
  cr_assert_neq(rs_codec_add_schema_json(codec, 3, bad_type, strlen(bad_type),
                                         err, sizeof(err)),
                0);
  cr_assert(strstr(err, "cannot be resolved"), "%s", err);

  cr_assert_neq(
      rs_codec_add_schema_json(codec, 4, "\"string\"", 8, err, sizeof(err)), 0);
  cr_assert(strstr(err, "must be a record"), "%s", err);
  cr_assert_neq(
      rs_codec_add_schema_json(codec, 4, "{nope", 5, err, sizeof(err)), 0);
  cr_assert(strstr(err, "not a valid Avro schema"), "%s", err);

  char path[512];
  rs_codec_t *c2 = NULL;
  cr_assert_eq(
      rs_codec_new(&c2,
                   src_path(path, sizeof(path),
                            "tests/data/interaction_no_timestamp.avsc"),
                   err, sizeof(err)),
      RS_EINVAL);
  cr_assert_null(c2);
  cr_assert(strstr(err, "lacks the required field 'timestamp'"), "%s", err);
  cr_assert_eq(rs_codec_new(&c2, "/nonexistent/x.avsc", err, sizeof(err)),
               RS_ENOENT);
  cr_assert(strstr(err, "/nonexistent/x.avsc"), "%s", err);
}

Test(codec, older_schema_encodes_and_resolves) {
  char path[512];
  rs_codec_t *v0 = NULL;
  src_path(path, sizeof(path), "tests/data/interaction_v0.avsc");
  cr_assert_eq(rs_codec_new(&v0, path, err, sizeof(err)), 0, "%s", err);
  cr_assert_eq(rs_codec_add_schema_id(codec, 77, path, err, sizeof(err)), 0,
               "%s", err);
  rs_buf_t b = {0};
  cr_assert_eq(
      rs_codec_encode(v0, RS_FORMAT_CONFLUENT, &full, 77, &b, err, sizeof(err)),
      0, "%s", err);
  rs_interaction_t out;
  cr_assert_eq(decode(RS_FORMAT_CONFLUENT, b.data, b.len, &out), 0, "%s", err);
  rs_interaction_t expect = full;
  expect.device = expect.page = NULL; /* the writer has neither */
  expect.device_len = expect.page_len = 0;
  assert_same(&out, &expect);

  /* The main codec refuses to label reader-schema bytes with id 77. */
  cr_assert_eq(rs_codec_encode(codec, RS_FORMAT_CONFLUENT, &full, 77, &b, err,
                               sizeof(err)),
               RS_EENCODE);
  rs_buf_free(&b);
  rs_codec_destroy(v0);
}

Test(codec, validation_rules) {
  rs_interaction_t in = sparse;
  cr_assert_eq(rs_interaction_validate(&in, err, sizeof(err)), 0, "%s", err);
  in.event_type = RS_EVENT_RATING;
  cr_assert_eq(rs_interaction_validate(&in, err, sizeof(err)), RS_EDECODE);
  in.has_value = 1;
  in.value = -3; /* ratings may be negative */
  cr_assert_eq(rs_interaction_validate(&in, err, sizeof(err)), 0, "%s", err);
  in.event_type = 17;
  cr_assert_eq(rs_interaction_validate(&in, err, sizeof(err)), RS_EDECODE);
  cr_assert(strstr(err, "event_type"), "%s", err);
  in = sparse;
  in.page = "\xed\xa0\x80"; /* a UTF-16 surrogate */
  in.page_len = 3;
  cr_assert_eq(rs_interaction_validate(&in, err, sizeof(err)), RS_EDECODE);
  cr_assert(strstr(err, "field 'page' is not valid UTF-8"), "%s", err);
}

/* record.h's bounds: a record at them decodes in every format (both JSON
 * paths, both Avro paths), one a step past them is refused with the reason;
 * rs_interaction_problem() applies the same bounds to records from
 * elsewhere. */
Test(codec, bounds) {
  cr_assert_eq(rs_codec_add_schema_json(codec, 1, rs_schema_interaction_json,
                                        strlen(rs_schema_interaction_json), err,
                                        sizeof(err)),
               0, "%s", err);
  const double above = nextafter(1e15, INFINITY);
  const struct {
    int ev;
    int64_t ts;
    double v;
    const char *needle; /* NULL: decodes */
  } cases[] = {
      {RS_EVENT_VIEW, RS_MAX_TIMESTAMP_MS, 1e15, NULL},
      {RS_EVENT_RATING, RS_MAX_TIMESTAMP_MS, -1e15, NULL},
      {RS_EVENT_VIEW, RS_MAX_TIMESTAMP_MS + 1, 1,
       "field 'timestamp' is after 9999-12-31T23:59:59.999Z "
       "(253402300800000); expected milliseconds since the Unix epoch"},
      {RS_EVENT_VIEW, INT64_MAX, 1,
       "field 'timestamp' is after 9999-12-31T23:59:59.999Z "
       "(9223372036854775807)"},
      {RS_EVENT_VIEW, 5, above,
       "field 'value' is out of range: |value| must be <= 1e15 "
       "(got 1000000000000000.1)"},
      {RS_EVENT_VIEW, 5, 1.0000001e15,
       "field 'value' is out of range: |value| must be <= 1e15 "
       "(got 1000000100000000)"},
      {RS_EVENT_RATING, 5, -1.0000001e15,
       "field 'value' is out of range: |value| must be <= 1e15 "
       "(got -1.0000001e+15)"},
      {RS_EVENT_RATING, 5, 1e308,
       "field 'value' is out of range: |value| must be <= 1e15 "
       "(got 1e+308)"},
  };
  static const char *const ev_names[] = {"VIEW", "CLICK", "ADD_TO_CART",
                                         "PURCHASE", "RATING"};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    abuf_t a = {0}, c = {0};
    a_interaction(&a, "u", "i", cases[i].ev, &cases[i].v, cases[i].ts, NULL,
                  NULL);
    a_bytes(&c, "\0\0\0\0\1", 5);
    a_bytes(&c, a.b, a.n);
    char j[256];
    snprintf(j, sizeof(j),
             "{\"user_id\":\"u\",\"item_id\":\"i\",\"event_type\":\"%s\","
             "\"value\":%.17g,\"timestamp\":%" PRId64 "}",
             ev_names[cases[i].ev], cases[i].v, cases[i].ts);
    const struct {
      rs_format_t fmt;
      const void *buf;
      size_t len;
      const char *name;
    } forms[] = {{RS_FORMAT_AVRO, a.b, a.n, "avro"},
                 {RS_FORMAT_CONFLUENT, c.b, c.n, "confluent"},
                 {RS_FORMAT_JSON, j, strlen(j), "json"}};
    for (int fast = 0; fast < 2; fast++) {
      rs_codec_set_avro_fast_path(codec, fast);
      rs_codec_set_json_fast_path(codec, fast);
      for (size_t f = 0; f < 3; f++) {
        rs_interaction_t out;
        int rc = decode(forms[f].fmt, forms[f].buf, forms[f].len, &out);
        if (!cases[i].needle) {
          cr_assert_eq(rc, 0, "case %zu %s: %s", i, forms[f].name, err);
          cr_assert_eq(out.timestamp_ms, cases[i].ts);
          cr_assert_eq(out.value, cases[i].v);
          continue;
        }
        char want[256];
        snprintf(want, sizeof(want), "%s: %s", forms[f].name, cases[i].needle);
        cr_assert_eq(rc, RS_EDECODE, "case %zu %s: accepted", i, forms[f].name);
        cr_assert(strstr(err, want), "case %zu: '%s' lacks '%s'", i, err, want);
      }
    }

    rs_interaction_t in = sparse;
    in.event_type = cases[i].ev;
    in.has_value = 1;
    in.value = cases[i].v;
    in.timestamp_ms = cases[i].ts;
    char buf[160];
    const char *why = rs_interaction_problem(&in, buf, sizeof(buf));
    if (!cases[i].needle) {
      cr_assert_null(why, "case %zu: %s", i, why);
      continue;
    }
    cr_assert_not_null(why, "case %zu", i);
    cr_assert(strstr(why, cases[i].ts > RS_MAX_TIMESTAMP_MS
                              ? "interaction timestamp is after "
                                "9999-12-31T23:59:59.999Z"
                              : "interaction value is out of range: |value| "
                                "must be <= 1e15"),
              "case %zu: %s", i, why);
  }
  /* Negative, as the codec refuses it (before the bounds). */
  rs_interaction_t neg = sparse;
  neg.timestamp_ms = -1;
  char nb[160];
  const char *nw = rs_interaction_problem(&neg, nb, sizeof(nb));
  cr_assert(nw && strstr(nw, "interaction timestamp is negative (-1)"), "%s",
            nw ? nw : "(accepted)");
}

Test(codec, encode_errors) {
  rs_buf_t b = {0};
  rs_interaction_t in = full;
  in.value = NAN;
  cr_assert_eq(
      rs_codec_encode(codec, RS_FORMAT_JSON, &in, 0, &b, err, sizeof(err)),
      RS_EENCODE);
  in = full;
  in.event_type = 99;
  cr_assert_eq(
      rs_codec_encode(codec, RS_FORMAT_AVRO, &in, 0, &b, err, sizeof(err)),
      RS_EENCODE);
  cr_assert_eq(b.len, 0);
  rs_buf_free(&b);
}

Test(codec, names) {
  rs_format_t f;
  cr_assert_eq(rs_format_parse("confluent", &f), 0);
  cr_assert_eq(f, RS_FORMAT_CONFLUENT);
  cr_assert_eq(rs_format_parse("xml", &f), RS_EINVAL);
  cr_assert_str_eq(rs_format_name(RS_FORMAT_JSON), "json");
  cr_assert_eq(rs_event_type_parse("ADD_TO_CART", 11), RS_EVENT_ADD_TO_CART);
  cr_assert_eq(rs_event_type_parse("ADD_TO_CARTS", 12), -1);
  cr_assert_eq(rs_event_type_parse("VIEWX", 4), RS_EVENT_VIEW);
  cr_assert_str_eq(rs_event_type_name(RS_EVENT_RATING), "RATING");
  cr_assert_null(rs_event_type_name(RS_EVENT__COUNT));
}

/* A writer schema that is the compiled-in one with fewer enum symbols looks
 * "equal" to avro_schema_equal() one way round; it must not take the direct
 * path, which would accept a symbol index the writer cannot have. */
Test(codec, shortened_enum_writer_does_not_take_the_direct_path) {
  static const char four_symbols[] =
      "{\"type\":\"record\",\"name\":\"Interaction\",\"namespace\":"
      "\"recstream\",\"fields\":["
      "{\"name\":\"user_id\",\"type\":\"string\"},"
      "{\"name\":\"item_id\",\"type\":\"string\"},"
      "{\"name\":\"event_type\",\"type\":{\"type\":\"enum\",\"name\":"
      "\"EventType\",\"symbols\":[\"VIEW\",\"CLICK\",\"ADD_TO_CART\","
      "\"PURCHASE\"]}},"
      "{\"name\":\"value\",\"type\":[\"null\",\"double\"],\"default\":null},"
      "{\"name\":\"timestamp\",\"type\":\"long\"},"
      "{\"name\":\"device\",\"type\":[\"null\",\"string\"],\"default\":null},"
      "{\"name\":\"page\",\"type\":[\"null\",\"string\"],\"default\":null}]}";
  cr_assert_eq(rs_codec_add_schema_json(codec, 2, four_symbols,
                                        strlen(four_symbols), err, sizeof(err)),
               0, "%s", err);
  abuf_t a = {0};
  a_bytes(&a, "\0\0\0\0\x02", 5);
  a_str(&a, "u");
  a_str(&a, "i");
  a_long(&a, 4); /* RATING: not a symbol of this writer */
  a_long(&a, 1);
  a_double(&a, 3.0);
  a_long(&a, 10);
  a_long(&a, 0);
  a_long(&a, 0);
  rs_interaction_t out;
  cr_assert_eq(decode(RS_FORMAT_CONFLUENT, a.b, a.n, &out), RS_EDECODE);
  cr_assert(strstr(err, "enum symbol index out of range") != NULL, "%s", err);
}
