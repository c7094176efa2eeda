/* Log lines: text and JSON formats (JSON read back with jansson, whatever
 * bytes the message holds), the default level and per-component levels,
 * and the errors of bad --log-level specs. stderr is captured in a file. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static int saved = -1;
static FILE *cap;

static void capture(void) {
  fflush(stderr);
  cap = tmpfile();
  cr_assert(cap != NULL);
  saved = dup(fileno(stderr));
  dup2(fileno(cap), fileno(stderr));
}

/* Restores stderr; returns what was written (caller frees). */
static char *captured(void) {
  fflush(stderr);
  dup2(saved, fileno(stderr));
  close(saved);
  long n = ftell(cap);
  char *buf = calloc(1, (size_t)n + 1);
  rewind(cap);
  cr_assert_eq(fread(buf, 1, (size_t)n, cap), (size_t)n);
  fclose(cap);
  return buf;
}

static void reset(void) {
  char err[256];
  cr_assert_eq(rs_log_configure("info", err, sizeof err), 0, "%s", err);
  rs_log_set_format(0);
}

Test(log, json_lines_parse_back_with_every_field) {
  reset();
  rs_log_set_format(1);
  capture();
  rs_log(RS_LOG_WARN, "http", "quote \" backslash \\ newline\n tab\t end");
  rs_log(RS_LOG_INFO, "engine", "bad utf-8 \xff\xfe and good \xc3\xa9");
  rs_log(RS_LOG_DEBUG, "engine", "not shown at info");
  char *out = captured();
  reset();
  char *line2 = strchr(out, '\n');
  cr_assert(line2 != NULL, "%s", out);
  *line2++ = '\0';
  json_error_t je;
  json_t *a = json_loads(out, 0, &je);
  cr_assert(a != NULL, "not JSON: %s (%s)", out, je.text);
  cr_assert_str_eq(json_string_value(json_object_get(a, "level")), "warn");
  cr_assert_str_eq(json_string_value(json_object_get(a, "component")), "http");
  cr_assert_str_eq(json_string_value(json_object_get(a, "msg")),
                   "quote \" backslash \\ newline\n tab\t end");
  const char *t = json_string_value(json_object_get(a, "time"));
  cr_assert(t && strlen(t) == 24 && t[10] == 'T' && t[23] == 'Z', "%s", t);
  json_decref(a);
  char *end = strchr(line2, '\n');
  cr_assert(end != NULL);
  *end = '\0';
  json_t *b = json_loads(line2, 0, &je);
  cr_assert(b != NULL, "not JSON: %s (%s)", line2, je.text);
  cr_assert_str_eq(json_string_value(json_object_get(b, "msg")),
                   "bad utf-8 \xef\xbf\xbd\xef\xbf\xbd and good \xc3\xa9");
  json_decref(b);
  cr_assert_str_eq(end + 1, "", "the debug line was written: %s", end + 1);
  free(out);
}

Test(log, per_component_levels_override_the_default) {
  char err[256];
  cr_assert_eq(rs_log_configure("warn,http=debug,parse=error", err, sizeof err),
               0, "%s", err);
  rs_log_set_format(0);
  capture();
  rs_log(RS_LOG_INFO, "engine", "engine-info"); /* below warn: dropped */
  rs_log(RS_LOG_WARN, "engine", "engine-warn"); /* kept */
  rs_log(RS_LOG_DEBUG, "http", "http-debug");   /* kept */
  rs_log(RS_LOG_WARN, "parse", "parse-warn");   /* below error: dropped */
  rs_log(RS_LOG_ERROR, "parse", "parse-error"); /* kept */
  char *out = captured();
  reset();
  cr_assert_null(strstr(out, "engine-info"), "%s", out);
  cr_assert(strstr(out, " WARN  engine: engine-warn\n") != NULL, "%s", out);
  cr_assert(strstr(out, " DEBUG http: http-debug\n") != NULL, "%s", out);
  cr_assert_null(strstr(out, "parse-warn"), "%s", out);
  cr_assert(strstr(out, " ERROR parse: parse-error\n") != NULL, "%s", out);
  free(out);
}

Test(log, bad_specs_say_what_is_expected_and_change_nothing) {
  reset();
  static const struct {
    const char *spec, *says;
  } bad[] = {
      {"loud", "expected error, warn, info or debug, got 'loud' in 'loud'"},
      {"warn,http=loud", "got 'loud' in 'warn,http=loud'"},
      {"warn,,info", "expected LEVEL or COMPONENT=LEVEL items"},
      {"", "expected LEVEL or COMPONENT=LEVEL items"},
      {"warn,info", "two default levels in 'warn,info'"},
      {"=debug", "bad component name in '=debug'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char err[256] = "";
    cr_expect_eq(rs_log_configure(bad[i].spec, err, sizeof err), -1, "%s",
                 bad[i].spec);
    cr_expect(strstr(err, bad[i].says) != NULL, "'%s' said: %s", bad[i].spec,
              err);
    cr_expect_eq(rs_log_level(), RS_LOG_INFO, "'%s' changed the level",
                 bad[i].spec);
  }
  int json = -1;
  cr_assert_eq(rs_log_parse_format("json", &json), 0);
  cr_assert_eq(json, 1);
  cr_assert_eq(rs_log_parse_format("text", &json), 0);
  cr_assert_eq(json, 0);
  cr_assert_eq(rs_log_parse_format("yaml", &json), -1);
}

Test(log, key_value_fields_in_text_and_json) {
  reset();
  capture();
  const char *kv[] = {"topic", "in", "partition", "3",
                      "skip",  NULL, "note",      "two words \"q\"",
                      "empty", "",   NULL};
  rs_log_kv(RS_LOG_INFO, "engine", kv, "assigned %s", "it");
  rs_log_kv(RS_LOG_INFO, "engine", NULL, "no fields");
  char *out = captured();
  cr_assert(strstr(out, " INFO  engine: assigned it | topic=in partition=3 "
                        "note=\"two words \\\"q\\\"\" empty=\"\"\n") != NULL,
            "%s", out);
  cr_assert(strstr(out, "engine: no fields\n") != NULL, "%s", out);
  cr_assert_null(strstr(out, "skip"), "%s", out);
  free(out);

  rs_log_set_format(1);
  capture();
  const char *kv2[] = {"partition", "3",     "offset", "-12",  "lead0", "007",
                       "msg",       "clash", "bad",    "\xff", NULL};
  rs_log_kv(RS_LOG_WARN, "engine", kv2, "gap");
  out = captured();
  reset();
  json_error_t je;
  json_t *j = json_loads(out, 0, &je);
  cr_assert(j != NULL, "not JSON: %s (%s)", out, je.text);
  cr_assert_str_eq(json_string_value(json_object_get(j, "msg")), "gap");
  cr_assert_eq(json_integer_value(json_object_get(j, "partition")), 3);
  cr_assert_eq(json_integer_value(json_object_get(j, "offset")), -12);
  cr_assert_str_eq(json_string_value(json_object_get(j, "lead0")), "007");
  cr_assert_str_eq(json_string_value(json_object_get(j, "kv_msg")), "clash");
  cr_assert_str_eq(json_string_value(json_object_get(j, "bad")),
                   "\xef\xbf\xbd");
  json_decref(j);
  free(out);
}

Test(log, check_validates_without_applying) {
  char err[256];
  reset();
  cr_assert_eq(rs_log_check("debug,http=error", err, sizeof err), 0, "%s", err);
  cr_assert_eq(rs_log_level(), RS_LOG_INFO, "check changed the level");
  cr_assert_eq(rs_log_check("loud", err, sizeof err), -1);
  cr_assert(strstr(err, "expected error, warn, info or debug") != NULL, "%s",
            err);
}
