/* libFuzzer target for the interaction codec, the parser of all outside
 * input. Every input is decoded as raw Avro, as JSON, and as the Confluent
 * payload of each registered writer schema (the compiled-in one, an older
 * one, and one with arrays, maps and a recursive type to exercise the record
 * validator). Beyond "no crash, no leak", it checks properties:
 *  - decode returns 0 or RS_EDECODE, never anything else;
 *  - whatever decodes obeys rs_interaction_validate();
 *  - whatever decodes re-encodes, and decodes again to the same values;
 *  - the JSON fast path and jansson agree on result and message;
 *  - the direct Avro path and avro-c's generic path agree on result,
 *    message, values and encoded bytes.
 * Build: clang -fsanitize=fuzzer,address,undefined (see RS_FUZZ in CMake).
 * The same bytes are also decoded as feedback (fuzz_feedback).
 * Seeds: tests/fuzz/corpus/codec/ (feedback_*: feedback records). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_options(void);

/* avro-c puts each value instance at malloc() + sizeof(int), so the
 * pointers inside live values are misaligned and LeakSanitizer, which by
 * default scans aligned words only, reports everything they hold as leaked
 * when libFuzzer checks for leaks while the codec is alive. */
const char *__lsan_default_options(void) {
  return "use_unaligned=1";
}

static const char writer_v0[] =
    "{\"type\":\"record\",\"name\":\"Interaction\",\"namespace\":\"old\","
    "\"fields\":[{\"name\":\"user_id\",\"type\":\"string\"},"
    "{\"name\":\"item_id\",\"type\":\"string\"},"
    "{\"name\":\"event_type\",\"type\":{\"type\":\"enum\",\"name\":\"Kind\","
    "\"symbols\":[\"CLICK\",\"VIEW\",\"PURCHASE\",\"ADD_TO_CART\",\"RATING\","
    "\"SHARE\"]}},"
    "{\"name\":\"value\",\"type\":[\"null\",\"double\"],\"default\":null},"
    "{\"name\":\"timestamp\",\"type\":\"long\"}]}";

static const char writer_complex[] =
    "{\"type\":\"record\",\"name\":\"Rich\",\"fields\":["
    "{\"name\":\"trail\",\"type\":[\"null\",{\"type\":\"record\","
    "\"name\":\"Node\",\"fields\":[{\"name\":\"v\",\"type\":\"int\"},"
    "{\"name\":\"next\",\"type\":[\"null\",\"Node\"]}]}]},"
    "{\"name\":\"user_id\",\"type\":\"string\"},"
    "{\"name\":\"tags\",\"type\":{\"type\":\"map\",\"values\":\"bytes\"}},"
    "{\"name\":\"item_id\",\"type\":\"string\"},"
    "{\"name\":\"flags\",\"type\":{\"type\":\"array\",\"items\":\"null\"}},"
    "{\"name\":\"h\",\"type\":{\"type\":\"fixed\",\"name\":\"H\",\"size\":2}},"
    "{\"name\":\"event_type\",\"type\":{\"type\":\"enum\",\"name\":\"E\","
    "\"symbols\":[\"RATING\",\"VIEW\"]}},"
    "{\"name\":\"ok\",\"type\":\"boolean\"},"
    "{\"name\":\"value\",\"type\":[\"null\",\"float\",\"int\"]},"
    "{\"name\":\"timestamp\",\"type\":\"int\"},"
    "{\"name\":\"device\",\"type\":\"string\"}]}";

/* The compiled-in schema with one enum symbol and one union branch fewer:
 * avro_schema_equal() calls it equal one way round, so it exercises the
 * choice between the direct and the generic path. */
static const char writer_short[] =
    "{\"type\":\"record\",\"name\":\"Interaction\",\"namespace\":"
    "\"recstream\",\"fields\":["
    "{\"name\":\"user_id\",\"type\":\"string\"},"
    "{\"name\":\"item_id\",\"type\":\"string\"},"
    "{\"name\":\"event_type\",\"type\":{\"type\":\"enum\",\"name\":"
    "\"EventType\",\"symbols\":[\"VIEW\",\"CLICK\",\"ADD_TO_CART\","
    "\"PURCHASE\"]}},"
    "{\"name\":\"value\",\"type\":[\"null\"]},"
    "{\"name\":\"timestamp\",\"type\":\"long\"},"
    "{\"name\":\"device\",\"type\":[\"null\",\"string\"]},"
    "{\"name\":\"page\",\"type\":[\"null\",\"string\"]}]}";

static rs_codec_t *codec;
static rs_arena_t arena;

static void *arena_alloc(void *opaque, size_t n) {
  return rs_arena_alloc(opaque, n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  char err[512];
  rs_arena_init(&arena, 1 << 16);
  if (rs_codec_new(&codec, NULL, err, sizeof(err)) ||
      rs_codec_add_schema_json(codec, 1, rs_schema_interaction_json,
                               strlen(rs_schema_interaction_json), err,
                               sizeof(err)) ||
      rs_codec_add_schema_json(codec, 2, writer_v0, strlen(writer_v0), err,
                               sizeof(err)) ||
      rs_codec_add_schema_json(codec, 3, writer_complex, strlen(writer_complex),
                               err, sizeof(err)) ||
      rs_codec_add_schema_json(codec, 4, writer_short, strlen(writer_short),
                               err, sizeof(err))) {
    fprintf(stderr, "fuzz_codec: %s\n", err);
    abort();
  }
  return 0;
}

static int str_eq(const char *a, uint32_t al, const char *b, uint32_t bl) {
  return (a == NULL) == (b == NULL) && al == bl &&
         (al == 0 || memcmp(a, b, al) == 0);
}

static void check_same(const rs_interaction_t *a, const rs_interaction_t *b,
                       const char *what) {
  if (!str_eq(a->user, a->user_len, b->user, b->user_len) ||
      !str_eq(a->item, a->item_len, b->item, b->item_len) ||
      !str_eq(a->device, a->device_len, b->device, b->device_len) ||
      !str_eq(a->page, a->page_len, b->page, b->page_len) ||
      a->event_type != b->event_type || a->has_value != b->has_value ||
      (a->has_value && a->value != b->value) ||
      a->timestamp_ms != b->timestamp_ms) {
    fprintf(stderr, "fuzz_codec: %s differs\n", what);
    abort();
  }
}

static int decode(rs_format_t fmt, const void *p, size_t n,
                  rs_interaction_t *out, char *err, size_t err_size) {
  int rc = rs_codec_decode(codec, fmt, p, n, out, arena_alloc, &arena, err,
                           err_size);
  if (rc != 0 && rc != RS_EDECODE) {
    fprintf(stderr, "fuzz_codec: %s: unexpected %d: %s\n", rs_format_name(fmt),
            rc, err);
    abort();
  }
  if (rc == 0 && rs_interaction_validate(out, err, err_size)) {
    fprintf(stderr, "fuzz_codec: decoded an invalid record: %s\n", err);
    abort();
  }
  return rc;
}

/* Decoded values survive encode + decode in `fmt`. */
static void round_trip(const rs_interaction_t *in, rs_format_t fmt) {
  char err[512];
  rs_buf_t b = {0};
  rs_interaction_t again;
  if (rs_codec_encode(codec, fmt, in, 1, &b, err, sizeof(err)) ||
      decode(fmt, b.data, b.len, &again, err, sizeof(err))) {
    fprintf(stderr, "fuzz_codec: %s round trip failed: %s\n",
            rs_format_name(fmt), err);
    abort();
  }
  check_same(in, &again, "round trip");
  rs_buf_free(&b);
}

/* The same bytes as feedback (engine/codec_feedback.c), raw Avro and
 * JSON: decode returns 0 or RS_EDECODE; what decodes is valid, re-encodes
 * and decodes again to the same bytes. */
static void fuzz_feedback(const uint8_t *data, size_t size) {
  static const rs_format_t fmts[] = {RS_FORMAT_AVRO, RS_FORMAT_JSON};
  char err[512];
  for (size_t f = 0; f < 2; f++) {
    rs_feedback_t fb, fb2;
    int rc = rs_feedback_decode(fmts[f], data, size, &fb, arena_alloc, &arena,
                                err, sizeof(err));
    if (rc != 0 && rc != RS_EDECODE)
      abort();
    if (rc)
      continue;
    if (rs_feedback_validate(&fb, err, sizeof(err)))
      abort();
    for (size_t g = 0; g < 2; g++) {
      rs_record_t rec = {.kind = RS_KIND_FEEDBACK, .payload = &fb};
      rs_buf_t a = {0}, b = {0};
      if (rs_codec_encode_record(NULL, fmts[g], &rec, 0, &a, err,
                                 sizeof(err)) ||
          rs_feedback_decode(fmts[g], a.data, a.len, &fb2, arena_alloc, &arena,
                             err, sizeof(err)))
        abort();
      rec.payload = &fb2;
      if (rs_codec_encode_record(NULL, fmts[g], &rec, 0, &b, err,
                                 sizeof(err)) ||
          a.len != b.len || memcmp(a.data, b.data, a.len) != 0) {
        fprintf(stderr, "fuzz_codec: feedback does not round-trip\n");
        abort();
      }
      rs_buf_free(&a);
      rs_buf_free(&b);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[512], err2[512];
  rs_interaction_t out, out2;
  rs_arena_reset(&arena);

  rs_codec_set_avro_fast_path(codec, 1);
  int rc = decode(RS_FORMAT_AVRO, data, size, &out, err, sizeof(err));
  rs_codec_set_avro_fast_path(codec, 0);
  int rc2 = decode(RS_FORMAT_AVRO, data, size, &out2, err2, sizeof(err2));
  if (rc != rc2 || (rc && strcmp(err, err2) != 0)) {
    fprintf(stderr, "fuzz_codec: Avro paths disagree: %d '%s' vs %d '%s'\n", rc,
            rc ? err : "", rc2, rc2 ? err2 : "");
    abort();
  }
  if (rc == 0) {
    check_same(&out, &out2, "direct Avro path");
    rs_buf_t generic = {0}, direct = {0};
    if (rs_codec_encode(codec, RS_FORMAT_AVRO, &out, 0, &generic, err,
                        sizeof(err)))
      abort();
    rs_codec_set_avro_fast_path(codec, 1);
    if (rs_codec_encode(codec, RS_FORMAT_AVRO, &out, 0, &direct, err,
                        sizeof(err)) ||
        generic.len != direct.len ||
        memcmp(generic.data, direct.data, generic.len) != 0) {
      fprintf(stderr, "fuzz_codec: Avro encoders disagree\n");
      abort();
    }
    rs_buf_free(&generic);
    rs_buf_free(&direct);
    round_trip(&out, RS_FORMAT_AVRO);
    round_trip(&out, RS_FORMAT_JSON);
  }
  rs_codec_set_avro_fast_path(codec, 1);

  rs_codec_set_json_fast_path(codec, 1);
  rc = decode(RS_FORMAT_JSON, data, size, &out, err, sizeof(err));
  rs_codec_set_json_fast_path(codec, 0);
  rc2 = decode(RS_FORMAT_JSON, data, size, &out2, err2, sizeof(err2));
  rs_codec_set_json_fast_path(codec, 1);
  if (rc != rc2 || (rc && strcmp(err, err2) != 0)) {
    fprintf(stderr, "fuzz_codec: JSON paths disagree: %d '%s' vs %d '%s'\n", rc,
            rc ? err : "", rc2, rc2 ? err2 : "");
    abort();
  }
  if (rc == 0) {
    check_same(&out, &out2, "JSON fast path");
    round_trip(&out, RS_FORMAT_JSON);
    round_trip(&out, RS_FORMAT_CONFLUENT);
  }

  /* The raw bytes as they are, then behind a header naming each id. */
  decode(RS_FORMAT_CONFLUENT, data, size, &out, err, sizeof(err));
  uint8_t *framed = malloc(size + 5);
  if (!framed)
    return 0;
  memcpy(framed + 5, data, size);
  for (uint8_t id = 1; id <= 4; id++) {
    const uint8_t hdr[5] = {0, 0, 0, 0, id};
    memcpy(framed, hdr, 5);
    rs_codec_set_avro_fast_path(codec, 1);
    rc = decode(RS_FORMAT_CONFLUENT, framed, size + 5, &out, err, sizeof(err));
    rs_codec_set_avro_fast_path(codec, 0);
    rc2 = decode(RS_FORMAT_CONFLUENT, framed, size + 5, &out2, err2,
                 sizeof(err2));
    rs_codec_set_avro_fast_path(codec, 1);
    if (rc != rc2 || (rc && strcmp(err, err2) != 0)) {
      fprintf(stderr, "fuzz_codec: id %u paths disagree: '%s' vs '%s'\n", id,
              rc ? err : "", rc2 ? err2 : "");
      abort();
    }
    if (rc == 0)
      check_same(&out, &out2, "direct Confluent path");
  }
  free(framed);
  fuzz_feedback(data, size);
  return 0;
}
