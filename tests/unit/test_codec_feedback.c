/* The feedback and reward codecs (engine/codec_feedback.c) against
 * schemas/feedback.avsc and schemas/reward.avsc: Avro bytes equal
 * avro-c's for the same values, the Confluent form adds the header, each
 * format decodes back to the same values, and bad records are refused
 * with a reason naming the problem. */
#include <avro.h>
#include <criterion/criterion.h>
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

static void set_str(avro_value_t *rec, const char *name, const char *s,
                    uint32_t len) {
  char tmp[256];
  snprintf(tmp, sizeof tmp, "%.*s", (int)len, s);
  avro_value_t x = field(rec, name);
  cr_assert_eq(avro_value_set_string(&x, tmp), 0);
}

/* Optional string: a [null, string] union. */
static void set_opt_str(avro_value_t *rec, const char *name, const char *s,
                        uint32_t len) {
  avro_value_t x = field(rec, name), br;
  if (!s) {
    cr_assert_eq(avro_value_set_branch(&x, 0, &br), 0);
    cr_assert_eq(avro_value_set_null(&br), 0);
    return;
  }
  char tmp[256];
  snprintf(tmp, sizeof tmp, "%.*s", (int)len, s);
  cr_assert_eq(avro_value_set_branch(&x, 1, &br), 0);
  cr_assert_eq(avro_value_set_string(&br, tmp), 0);
}

static size_t write_avro_c(avro_value_t *v, char *want, size_t cap) {
  size_t n;
  cr_assert_eq(avro_value_sizeof(v, &n), 0);
  cr_assert(n <= cap);
  avro_writer_t w = avro_writer_memory(want, (int64_t)cap);
  cr_assert_eq(avro_value_write(w, v), 0, "%s", avro_strerror());
  avro_writer_free(w);
  return n;
}

static void *heap_alloc(void *opaque, size_t n) {
  /* one arena per test: a list of blocks freed at the end */
  void ***list = opaque;
  size_t k = 0;
  while ((*list)[k])
    k++;
  *list = realloc(*list, (k + 2) * sizeof(void *));
  (*list)[k] = malloc(n);
  (*list)[k + 1] = NULL;
  return (*list)[k];
}

static void free_arena(void **list) {
  for (size_t k = 0; list[k]; k++)
    free(list[k]);
  free(list);
}

static void assert_same(const rs_feedback_t *a, const rs_feedback_t *b) {
  cr_assert_eq(a->user_len, b->user_len);
  cr_assert(!memcmp(a->user, b->user, a->user_len));
  cr_assert_eq(a->item_len, b->item_len);
  cr_assert(!memcmp(a->item, b->item, a->item_len));
  cr_assert_eq(a->impression_id == NULL, b->impression_id == NULL);
  if (a->impression_id) {
    cr_assert_eq(a->impression_id_len, b->impression_id_len);
    cr_assert(
        !memcmp(a->impression_id, b->impression_id, a->impression_id_len));
  }
  cr_assert_eq(a->type, b->type);
  cr_assert_eq(a->value, b->value);
  cr_assert_eq(signbit(a->value), signbit(b->value), "sign of %g", a->value);
  cr_assert_eq(a->timestamp_ms, b->timestamp_ms);
}

static void check_feedback(const rs_feedback_t *fb) {
  char err[256];
  rs_record_t rec = {.kind = RS_KIND_FEEDBACK, .payload = fb};
  rs_buf_t b = {0};
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_AVRO, &rec, 0, &b, err,
                                      sizeof err),
               0, "%s", err);
  avro_schema_t s = load_schema("feedback");
  avro_value_iface_t *cls = avro_generic_class_from_schema(s);
  avro_value_t v, x;
  cr_assert_eq(avro_generic_value_new(cls, &v), 0);
  set_str(&v, "user_id", fb->user, fb->user_len);
  set_opt_str(&v, "impression_id", fb->impression_id, fb->impression_id_len);
  set_str(&v, "item_id", fb->item, fb->item_len);
  x = field(&v, "type");
  cr_assert_eq(avro_value_set_enum(&x, fb->type), 0);
  x = field(&v, "value");
  cr_assert_eq(avro_value_set_double(&x, fb->value), 0);
  x = field(&v, "timestamp");
  cr_assert_eq(avro_value_set_long(&x, fb->timestamp_ms), 0);
  char want[1024];
  size_t n = write_avro_c(&v, want, sizeof want);
  cr_assert_eq(b.len, n, "ours %zu bytes, avro-c %zu", b.len, n);
  cr_assert(!memcmp(b.data, want, n), "bytes differ from avro-c's");

  void **arena = calloc(1, sizeof(void *));
  rs_feedback_t back;
  cr_assert_eq(rs_feedback_decode(RS_FORMAT_AVRO, b.data, b.len, &back,
                                  heap_alloc, &arena, err, sizeof err),
               0, "%s", err);
  assert_same(fb, &back);

  rs_buf_t c = {0};
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_CONFLUENT, &rec, 9, &c,
                                      err, sizeof err),
               0, "%s", err);
  cr_assert_eq(c.len, n + 5);
  cr_assert(!memcmp(c.data, "\0\0\0\0\x09", 5));
  cr_assert(!memcmp(c.data + 5, want, n));
  cr_assert_eq(rs_feedback_decode(RS_FORMAT_CONFLUENT, c.data, c.len, &back,
                                  heap_alloc, &arena, err, sizeof err),
               0, "%s", err);
  assert_same(fb, &back);

  rs_buf_t j = {0};
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_JSON, &rec, 0, &j, err,
                                      sizeof err),
               0, "%s", err);
  cr_assert_eq(rs_feedback_decode(RS_FORMAT_JSON, j.data, j.len, &back,
                                  heap_alloc, &arena, err, sizeof err),
               0, "%s: %s", err, j.data);
  assert_same(fb, &back);

  free_arena(arena);
  rs_buf_free(&b);
  rs_buf_free(&c);
  rs_buf_free(&j);
  avro_value_decref(&v);
  avro_value_iface_decref(cls);
  avro_schema_decref(s);
}

Test(codec_feedback, round_trips_and_matches_avro_c) {
  rs_feedback_t fb = {.user = "u\"1",
                      .user_len = 3,
                      .impression_id = "00ff-0.12.0",
                      .impression_id_len = 11,
                      .item = "caf\xc3\xa9",
                      .item_len = 5,
                      .type = RS_FEEDBACK_PURCHASE,
                      .value = 4.5,
                      .timestamp_ms = 1767225600123};
  check_feedback(&fb);
  fb.impression_id = NULL;
  fb.impression_id_len = 0;
  fb.type = RS_FEEDBACK_DISMISS;
  fb.value = 0;
  check_feedback(&fb);
  fb.impression_id = "";
  fb.type = RS_FEEDBACK_CLICK;
  fb.value = -1e-300;
  check_feedback(&fb);
  /* Negative zero keeps its sign in JSON ("-0" would read back as the
   * integer 0; fuzz_codec found it). */
  fb.value = -0.0;
  check_feedback(&fb);
}

static void expect_bad(rs_format_t fmt, const char *buf, size_t len,
                       const char *needle) {
  char err[256] = "";
  void **arena = calloc(1, sizeof(void *));
  rs_feedback_t out;
  int rc = rs_feedback_decode(fmt, buf, len, &out, heap_alloc, &arena, err,
                              sizeof err);
  free_arena(arena);
  cr_assert_eq(rc, RS_EDECODE, "accepted: %.*s", (int)len, buf);
  cr_assert(strstr(err, needle), "'%s' lacks '%s'", err, needle);
}

#define BAD_JSON(s, needle) expect_bad(RS_FORMAT_JSON, s, strlen(s), needle)

/* record.h's bounds: feedback at them round-trips in every format; one a
 * step past them still encodes (a sink never stops on it) but is refused
 * by every decoder with the reason. */
Test(codec_feedback, bounds) {
  rs_feedback_t fb = {.user = "u",
                      .user_len = 1,
                      .item = "i",
                      .item_len = 1,
                      .type = RS_FEEDBACK_PURCHASE,
                      .value = 1e15,
                      .timestamp_ms = RS_MAX_TIMESTAMP_MS};
  check_feedback(&fb);
  fb.value = -1e15;
  check_feedback(&fb);

  const struct {
    double v;
    int64_t ts;
    const char *needle;
  } bad[] = {
      {1, RS_MAX_TIMESTAMP_MS + 1,
       "field 'timestamp' is after 9999-12-31T23:59:59.999Z "
       "(253402300800000); expected milliseconds since the Unix epoch"},
      {1.0000001e15, 5,
       "field 'value' is out of range: |value| must be <= 1e15 "
       "(got 1000000100000000)"},
      {-1.0000001e15, 5,
       "field 'value' is out of range: |value| must be <= 1e15 "
       "(got -1.0000001e+15)"},
      {1e308, 5,
       "field 'value' is out of range: |value| must be <= 1e15 "
       "(got 1e+308)"},
  };
  static const struct {
    rs_format_t fmt;
    const char *name;
  } forms[] = {{RS_FORMAT_AVRO, "avro"},
               {RS_FORMAT_CONFLUENT, "confluent"},
               {RS_FORMAT_JSON, "json"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    fb.value = bad[i].v;
    fb.timestamp_ms = bad[i].ts;
    rs_record_t rec = {.kind = RS_KIND_FEEDBACK, .payload = &fb};
    char err[256], want[256];
    for (size_t f = 0; f < 3; f++) {
      rs_buf_t b = {0};
      cr_assert_eq(rs_codec_encode_record(NULL, forms[f].fmt, &rec, 3, &b, err,
                                          sizeof err),
                   0, "%s", err);
      snprintf(want, sizeof want, "%s: %s", forms[f].name, bad[i].needle);
      expect_bad(forms[f].fmt, b.data, b.len, want);
      rs_buf_free(&b);
    }
  }
}

Test(codec_feedback, json_defaults_and_refusals) {
  char err[256];
  void **arena = calloc(1, sizeof(void *));
  rs_feedback_t out;
  const char *ok = "{\"user_id\":\"u\",\"item_id\":\"i\",\"type\":\"CLICK\","
                   "\"timestamp\":5}";
  cr_assert_eq(rs_feedback_decode(RS_FORMAT_JSON, ok, strlen(ok), &out,
                                  heap_alloc, &arena, err, sizeof err),
               0, "%s", err);
  cr_assert_null(out.impression_id);
  cr_assert_eq(out.value, 1.0);
  cr_assert_eq(out.type, RS_FEEDBACK_CLICK);
  free_arena(arena);

  BAD_JSON("[1]", "expected an object");
  BAD_JSON("{", "invalid JSON");
  BAD_JSON("{\"item_id\":\"i\",\"type\":\"CLICK\",\"timestamp\":5}",
           "missing field 'user_id'");
  BAD_JSON("{\"user_id\":\"u\",\"item_id\":\"\",\"type\":\"CLICK\","
           "\"timestamp\":5}",
           "'item_id' is empty");
  BAD_JSON("{\"user_id\":\"u\",\"item_id\":\"i\",\"type\":\"LIKE\","
           "\"timestamp\":5}",
           "field 'type'");
  BAD_JSON("{\"user_id\":\"u\",\"item_id\":\"i\",\"type\":\"CLICK\","
           "\"value\":\"x\",\"timestamp\":5}",
           "'value' must be a number");
  BAD_JSON("{\"user_id\":\"u\",\"item_id\":\"i\",\"type\":\"CLICK\"}",
           "missing field 'timestamp'");
  BAD_JSON("{\"user_id\":\"u\",\"item_id\":\"i\",\"type\":\"CLICK\","
           "\"timestamp\":-5}",
           "negative");
  BAD_JSON("{\"user_id\":\"u\",\"impression_id\":7,\"item_id\":\"i\","
           "\"type\":\"CLICK\",\"timestamp\":5}",
           "'impression_id' must be a string");
}

Test(codec_feedback, avro_refusals) {
  /* user "u", null impression, item "i", type CLICK, value 1.0, ts 5 */
  const char good[] = "\x02u\x00\x02i\x00\x00\x00\x00\x00\x00\x00\xf0\x3f\x0a";
  size_t n = sizeof good - 1;
  char err[256];
  void **arena = calloc(1, sizeof(void *));
  rs_feedback_t out;
  cr_assert_eq(rs_feedback_decode(RS_FORMAT_AVRO, good, n, &out, heap_alloc,
                                  &arena, err, sizeof err),
               0, "%s", err);
  cr_assert_eq(out.value, 1.0);
  cr_assert_eq(out.timestamp_ms, 5);
  free_arena(arena);
  for (size_t k = 0; k < n; k++) /* every truncation is refused */
    expect_bad(RS_FORMAT_AVRO, good, k, "avro:");
  char buf[32];
  memcpy(buf, good, n);
  buf[n] = 0;
  expect_bad(RS_FORMAT_AVRO, buf, n + 1, "trailing");
  memcpy(buf, good, n);
  buf[2] = 4; /* union branch 2 */
  expect_bad(RS_FORMAT_AVRO, buf, n, "impression_id");
  memcpy(buf, good, n);
  buf[5] = 8; /* enum symbol 4 */
  expect_bad(RS_FORMAT_AVRO, buf, n, "unknown enum symbol");
  memcpy(buf, good, n);
  buf[0] = 0; /* empty user, then the rest shifts: refused either way */
  expect_bad(RS_FORMAT_AVRO, buf, n, "avro:");
  expect_bad(RS_FORMAT_CONFLUENT, "\0\0\0", 3, "shorter than the 5-byte");
  memcpy(buf, "\x01\0\0\0\x01", 5);
  memcpy(buf + 5, good, n);
  expect_bad(RS_FORMAT_CONFLUENT, buf, n + 5, "wrong magic byte");
}

Test(codec_feedback, reward_matches_avro_c) {
  char err[256];
  rs_reward_t r = {.user = "u1",
                   .user_len = 2,
                   .impression_id = "imp-7",
                   .impression_id_len = 5,
                   .item = "i3",
                   .item_len = 2,
                   .position = 2,
                   .reward = 1,
                   .propensity = 0.25,
                   .impression_ms = 1000,
                   .timestamp_ms = 1500};
  for (int pass = 0; pass < 2; pass++) {
    rs_record_t rec = {.kind = RS_KIND_REWARD, .payload = &r};
    rs_buf_t b = {0};
    cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_AVRO, &rec, 0, &b, err,
                                        sizeof err),
                 0, "%s", err);
    avro_schema_t s = load_schema("reward");
    avro_value_iface_t *cls = avro_generic_class_from_schema(s);
    avro_value_t v, x;
    cr_assert_eq(avro_generic_value_new(cls, &v), 0);
    set_str(&v, "user_id", r.user, r.user_len);
    set_str(&v, "impression_id", r.impression_id, r.impression_id_len);
    set_opt_str(&v, "item_id", r.item, r.item_len);
    x = field(&v, "position");
    cr_assert_eq(avro_value_set_int(&x, r.position), 0);
    x = field(&v, "reward");
    cr_assert_eq(avro_value_set_double(&x, r.reward), 0);
    x = field(&v, "propensity");
    cr_assert_eq(avro_value_set_double(&x, r.propensity), 0);
    x = field(&v, "default_reward");
    cr_assert_eq(
        avro_value_set_boolean(&x, (r.flags & RS_REWARD_F_DEFAULT) != 0), 0);
    x = field(&v, "impression_timestamp");
    cr_assert_eq(avro_value_set_long(&x, r.impression_ms), 0);
    x = field(&v, "timestamp");
    cr_assert_eq(avro_value_set_long(&x, r.timestamp_ms), 0);
    char want[512];
    size_t n = write_avro_c(&v, want, sizeof want);
    cr_assert_eq(b.len, n, "ours %zu bytes, avro-c %zu", b.len, n);
    cr_assert(!memcmp(b.data, want, n), "bytes differ from avro-c's");
    rs_buf_t j = {0};
    cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_JSON, &rec, 0, &j, err,
                                        sizeof err),
                 0, "%s", err);
    cr_assert(strstr(j.data, pass ? "\"item_id\":null" : "\"item_id\":\"i3\""),
              "%s", j.data);
    rs_buf_free(&j);
    rs_buf_free(&b);
    avro_value_decref(&v);
    avro_value_iface_decref(cls);
    avro_schema_decref(s);
    /* second pass: a default reward */
    r.item = NULL;
    r.item_len = 0;
    r.position = -1;
    r.reward = 0;
    r.propensity = 1;
    r.flags = RS_REWARD_F_DEFAULT;
  }
  rs_reward_t bad = r;
  bad.reward = NAN;
  rs_record_t rec = {.kind = RS_KIND_REWARD, .payload = &bad};
  rs_buf_t b = {0};
  cr_assert_eq(rs_codec_encode_record(NULL, RS_FORMAT_AVRO, &rec, 0, &b, err,
                                      sizeof err),
               RS_EENCODE);
  rs_buf_free(&b);
}

/* The fuzzer's feedback seeds decode (so they start it inside the format). */
Test(codec_feedback, fuzz_seeds_decode) {
  static const char *const seeds[] = {"feedback_full.bin",
                                      "feedback_full.json"};
  for (int i = 0; i < 2; i++) {
    char path[1024], buf[512], err[256];
    snprintf(path, sizeof path, "%s/tests/fuzz/corpus/codec/%s", RS_SOURCE_DIR,
             seeds[i]);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    void **arena = calloc(1, sizeof(void *));
    rs_feedback_t fb;
    cr_assert_eq(rs_feedback_decode(i ? RS_FORMAT_JSON : RS_FORMAT_AVRO, buf, n,
                                    &fb, heap_alloc, &arena, err, sizeof err),
                 0, "%s: %s", seeds[i], err);
    free_arena(arena);
  }
}
