/* Rendering of engine snapshots (engine/metrics.c): the Prometheus text
 * exposition is parsed back by a small parser written here from the format's
 * rules (comment lines, name{label="value",...} value, escapes), and every
 * figure of the snapshot must come back as the value it had. The JSON
 * bodies (/readyz, /v1/graph) are read back with jansson. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "graph.h"
#include "metrics.h"
#include "registry.h"

/* ------------------------------------------------ exposition parser */

typedef struct psample {
  char name[200];
  char labels[400]; /* k=v pairs, unescaped, joined by ',' in order */
  double value;
} psample_t;

typedef struct pfamily {
  char name[200];
  char type[16];
  char help[400];
} pfamily_t;

typedef struct parsed {
  psample_t s[512];
  size_t ns;
  pfamily_t f[256];
  size_t nf;
} parsed_t;

static int name_char(int c, int first) {
  return isalpha(c) || c == '_' || c == ':' || (!first && isdigit(c));
}

static const char *parse_name(const char *p, char *out, size_t size) {
  size_t n = 0;
  if (!name_char((unsigned char)*p, 1))
    return NULL;
  while (name_char((unsigned char)*p, n == 0) && n + 1 < size)
    out[n++] = *p++;
  out[n] = '\0';
  return p;
}

static pfamily_t *family(parsed_t *r, const char *name) {
  for (size_t i = 0; i < r->nf; i++)
    if (!strcmp(r->f[i].name, name))
      return &r->f[i];
  return NULL;
}

/* The family a sample belongs to: its name, or for a histogram's series
 * the name without _bucket/_sum/_count. */
static pfamily_t *family_of_sample(parsed_t *r, const char *name) {
  pfamily_t *f = family(r, name);
  if (f)
    return f;
  static const char *const sfx[] = {"_bucket", "_sum", "_count"};
  for (size_t i = 0; i < 3; i++) {
    size_t l = strlen(name), k = strlen(sfx[i]);
    if (l > k && !strcmp(name + l - k, sfx[i])) {
      char base[200];
      snprintf(base, sizeof base, "%.*s", (int)(l - k), name);
      f = family(r, base);
      if (f && !strcmp(f->type, "histogram"))
        return f;
    }
  }
  return NULL;
}

/* Parses text into r; on a malformed line fails the test naming it. Also
 * checks: one HELP and TYPE per family, before its samples; a family's
 * samples contiguous; no series twice; counters named *_total. */
static void parse_exposition(const char *text, parsed_t *r) {
  memset(r, 0, sizeof(*r));
  char last_family[200] = "";
  int lineno = 0;
  for (const char *p = text; *p;) {
    const char *eol = strchr(p, '\n');
    cr_assert(eol != NULL, "last line has no newline: %s", p);
    lineno++;
    char line[1024];
    cr_assert_lt((size_t)(eol - p), sizeof line, "line %d too long", lineno);
    memcpy(line, p, (size_t)(eol - p));
    line[eol - p] = '\0';
    p = eol + 1;
    if (line[0] == '#') {
      char kw[8], name[200];
      const char *q = line + 1;
      cr_assert_eq(*q++, ' ', "line %d: %s", lineno, line);
      int k = 0;
      while (isalpha((unsigned char)*q) && k < 7)
        kw[k++] = *q++;
      kw[k] = '\0';
      cr_assert_eq(*q++, ' ', "line %d: %s", lineno, line);
      q = parse_name(q, name, sizeof name);
      cr_assert(q && *q == ' ', "line %d: bad name: %s", lineno, line);
      q++;
      pfamily_t *f = family(r, name);
      if (!strcmp(kw, "HELP")) {
        cr_assert(f == NULL, "line %d: second HELP for %s", lineno, name);
        cr_assert_lt(r->nf, 256);
        f = &r->f[r->nf++];
        snprintf(f->name, sizeof f->name, "%s", name);
        /* HELP escapes: \\ and \n only. */
        size_t n = 0;
        for (; *q && n + 1 < sizeof f->help; q++) {
          if (*q == '\\') {
            q++;
            cr_assert(*q == '\\' || *q == 'n', "line %d: bad escape", lineno);
            f->help[n++] = *q == 'n' ? '\n' : '\\';
          } else {
            f->help[n++] = *q;
          }
        }
        f->help[n] = '\0';
      } else {
        cr_assert_str_eq(kw, "TYPE", "line %d: %s", lineno, line);
        cr_assert(f != NULL, "line %d: TYPE before HELP for %s", lineno, name);
        cr_assert_eq(f->type[0], '\0', "line %d: second TYPE", lineno);
        cr_assert(!strcmp(q, "counter") || !strcmp(q, "gauge") ||
                      !strcmp(q, "histogram") || !strcmp(q, "summary") ||
                      !strcmp(q, "untyped"),
                  "line %d: type %s", lineno, q);
        snprintf(f->type, sizeof f->type, "%s", q);
        if (!strcmp(q, "counter"))
          cr_assert(strlen(name) > 6 &&
                        !strcmp(name + strlen(name) - 6, "_total"),
                    "counter %s does not end in _total", name);
      }
      continue;
    }
    cr_assert_lt(r->ns, 512);
    psample_t *s = &r->s[r->ns];
    const char *q = parse_name(line, s->name, sizeof s->name);
    cr_assert(q != NULL, "line %d: bad sample name: %s", lineno, line);
    size_t ln = 0;
    if (*q == '{') {
      q++;
      while (*q != '}') {
        char lname[100];
        q = parse_name(q, lname, sizeof lname);
        cr_assert(q && !strchr(lname, ':') && q[0] == '=' && q[1] == '"',
                  "line %d: bad label: %s", lineno, line);
        q += 2;
        ln += (size_t)snprintf(s->labels + ln, sizeof s->labels - ln,
                               "%s%s=", ln ? "," : "", lname);
        for (; *q != '"'; q++) {
          cr_assert(*q, "line %d: unterminated label value", lineno);
          char ch = *q;
          if (ch == '\\') {
            q++;
            cr_assert(*q == '\\' || *q == '"' || *q == 'n',
                      "line %d: bad escape in label", lineno);
            ch = *q == 'n' ? '\n' : *q;
          }
          cr_assert_lt(ln + 1, sizeof s->labels);
          s->labels[ln++] = ch;
          s->labels[ln] = '\0';
        }
        q++;
        if (*q == ',')
          q++;
        else
          cr_assert_eq(*q, '}', "line %d: %s", lineno, line);
      }
      q++;
    }
    cr_assert_eq(*q++, ' ', "line %d: no value: %s", lineno, line);
    char *end;
    s->value = strtod(q, &end);
    cr_assert(end != q && *end == '\0', "line %d: bad value: %s", lineno, line);
    pfamily_t *f = family_of_sample(r, s->name);
    cr_assert(f != NULL && f->type[0], "line %d: %s has no TYPE before it",
              lineno, s->name);
    if (strcmp(f->name, last_family)) {
      for (size_t i = 0; i < r->ns; i++)
        cr_assert(family_of_sample(r, r->s[i].name) != f,
                  "line %d: samples of %s are not together", lineno, f->name);
      snprintf(last_family, sizeof last_family, "%s", f->name);
    }
    for (size_t i = 0; i < r->ns; i++)
      cr_assert(strcmp(r->s[i].name, s->name) ||
                    strcmp(r->s[i].labels, s->labels),
                "line %d: series %s{%s} twice", lineno, s->name, s->labels);
    r->ns++;
  }
}

/* The value of name{labels} (labels as the parser joins them); NAN if
 * absent. */
static double val(const parsed_t *r, const char *name, const char *labels) {
  for (size_t i = 0; i < r->ns; i++)
    if (!strcmp(r->s[i].name, name) && !strcmp(r->s[i].labels, labels))
      return r->s[i].value;
  return NAN;
}

static size_t count_series(const parsed_t *r, const char *name) {
  size_t n = 0;
  for (size_t i = 0; i < r->ns; i++)
    n += !strcmp(r->s[i].name, name);
  return n;
}

/* ------------------------------------------------------- fixtures */

static const char graph_yaml[] =
    "app: m\n"
    "sources: [ { name: in, topic: in.topic } ]\n"
    "operators:\n"
    "  - { name: p1, type: parse, input: in }\n"
    "  - { name: p2, type: parse, input: in }\n"
    "  - { name: st, type: user_stats, input: p1 }\n"
    "sinks:\n"
    "  - { name: o1, input: p1, topic: o1 }\n"
    "  - { name: o2, input: p2, topic: o2 }\n"
    "  - { name: o3, input: st, topic: o3 }\n";

typedef struct fixture {
  rs_config_t *cfg;
  rs_registry_t *reg;
  rs_graph_t *g;
} fixture_t;

static void fixture_load(fixture_t *f) {
  char err[512];
  cr_assert_eq(rs_config_load_string("m.yaml", graph_yaml, strlen(graph_yaml),
                                     NULL, 0, &f->cfg, err, sizeof err),
               0, "%s", err);
  cr_assert_eq(rs_registry_new(&f->reg, err, sizeof err), 0, "%s", err);
  cr_assert_eq(rs_graph_build(f->cfg, f->reg, &f->g, err, sizeof err), 0, "%s",
               err);
}

static void fixture_free(fixture_t *f) {
  rs_graph_destroy(f->g);
  rs_registry_destroy(f->reg);
  rs_config_destroy(f->cfg);
}

static size_t node(const rs_graph_t *g, const char *name) {
  for (size_t i = 0; i < g->n; i++)
    if (!strcmp(g->nodes[i].name, name))
      return i;
  cr_assert_fail("no node %s", name);
  return 0;
}

/* A snapshot whose every figure is distinct, so a value in the wrong place
 * shows. */
static void fill(rs_metrics_snapshot_t *s, const rs_graph_t *g,
                 rs_metric_counter_t *counters, size_t nc,
                 rs_metric_part_t *parts, size_t np, uint64_t *node_out) {
  memset(s, 0, sizeof(*s));
  s->g = g;
  s->state = "running";
  s->ready = 1;
  s->assigned_partitions = 2;
  rs_engine_stats_t *st = &s->stats;
  st->records_in = 1001;
  st->refetched = 1002;
  st->input_gaps = 1003;
  st->batches = 1004;
  st->dead_lettered = 1005;
  st->delivery_failures = 1006;
  st->pauses = 1007;
  st->partition_pauses = 1008;
  st->queue_full_waits = 1009;
  st->commits = 1010;
  st->checkpoints = 1011;
  st->checkpoint_ns = 2500000000ull; /* 2.5 s */
  st->checkpoint_wait_ns = 3250000000ull;
  st->suppressed = 1012;
  st->ordering_giveups = 1013;
  st->withheld = 1014;
  st->max_inflight_bytes = 1015;
  s->paused = 1;
  s->paused_ns = 1500000000ull;
  s->inflight_records = 1016;
  s->inflight_bytes = 1017;
  s->producer_queue = 1018;
  s->has_cache = 1;
  s->cache = (rs_cache_stats_t){.hits = 2001,
                                .misses = 2002,
                                .evictions = 2003,
                                .writebacks = 2004,
                                .entries = 2005,
                                .total_bytes = 2006,
                                .dirty_bytes = 2007,
                                .spill_bytes = 2008,
                                .bound_bytes = 2009,
                                .retired_bytes = 2010};
  s->counters = counters;
  s->n_counters = nc;
  s->parts = parts;
  s->n_parts = np;
  s->node_out = node_out;
}

/* ------------------------------------------------------------ tests */

Test(metrics, exposition_parses_back_to_the_snapshot_values) {
  fixture_t f;
  fixture_load(&f);
  const rs_graph_t *g = f.g;
  size_t p1 = node(g, "p1"), p2 = node(g, "p2"), st = node(g, "st");
  rs_metric_counter_t counters[] = {
      {p1, "records_in", "records handed to the operator", 11},
      {p1, "records_out", "records the operator emitted", 12},
      {p1, "dead_lettered", "dead letters", 13},
      {p2, "records_in", "records handed to the operator", 21},
      {p2, "records_out", "records the operator emitted", 22},
      {st, "records_in", "records handed to the operator", 31},
      {st, "users_created", "users first seen\nback\\slash", 32},
      {st, "odd.name-x", "", 33},
      {st, "already_total", "ends in _total", 34},
  };
  rs_metric_part_t parts[] = {
      {"in.topic", 0, 1, 100, 130}, /* lag 30 */
      {"in.topic", 1, 1, 50, -1},   /* watermark unknown: no lag */
      {"in.topic", 2, 0, 70, 90},   /* not assigned: no lag */
      {"in.topic", 3, 1, -1, 10},   /* position unknown */
  };
  uint64_t node_out[16] = {0};
  node_out[node(g, "o1")] = 41;
  node_out[node(g, "o2")] = 42;
  node_out[node(g, "o3")] = 43;
  rs_metrics_snapshot_t s;
  fill(&s, g, counters, RS_ARRAY_SIZE(counters), parts, RS_ARRAY_SIZE(parts),
       node_out);
  rs_buf_t b = {0};
  cr_assert_eq(rs_metrics_render(&s, &b), 0);
  cr_assert_eq(rs_buf_append(&b, "", 1), 0);
  static parsed_t r;
  parse_exposition(b.data, &r);

  cr_assert_eq(val(&r, "recstream_up", ""), 1);
  cr_assert_eq(val(&r, "recstream_ready", ""), 1);
  cr_assert_eq(val(&r, "recstream_input_records_total", ""), 1001);
  cr_assert_eq(val(&r, "recstream_refetched_records_total", ""), 1002);
  cr_assert_eq(val(&r, "recstream_input_gaps_total", ""), 1003);
  cr_assert_eq(val(&r, "recstream_batches_total", ""), 1004);
  cr_assert_eq(val(&r, "recstream_dead_letters_total", ""), 1005);
  cr_assert_eq(val(&r, "recstream_delivery_failures_total", ""), 1006);
  cr_assert_eq(val(&r, "recstream_backpressure_pauses_total", ""), 1007);
  cr_assert_eq(val(&r, "recstream_partition_pauses_total", ""), 1008);
  cr_assert_eq(val(&r, "recstream_producer_queue_full_waits_total", ""), 1009);
  cr_assert_eq(val(&r, "recstream_commits_total", ""), 1010);
  cr_assert_eq(val(&r, "recstream_checkpoints_total", ""), 1011);
  cr_assert_eq(val(&r, "recstream_checkpoint_seconds_total", ""), 2.5);
  cr_assert_eq(val(&r, "recstream_checkpoint_wait_seconds_total", ""), 3.25);
  cr_assert_eq(val(&r, "recstream_suppressed_outputs_total", ""), 1012);
  cr_assert_eq(val(&r, "recstream_ordering_giveups_total", ""), 1013);
  cr_assert_eq(val(&r, "recstream_withheld_outputs_total", ""), 1014);
  cr_assert_eq(val(&r, "recstream_inflight_bytes_max", ""), 1015);
  cr_assert_eq(val(&r, "recstream_paused", ""), 1);
  cr_assert_eq(val(&r, "recstream_paused_seconds_total", ""), 1.5);
  cr_assert_eq(val(&r, "recstream_inflight_records", ""), 1016);
  cr_assert_eq(val(&r, "recstream_inflight_bytes", ""), 1017);
  cr_assert_eq(val(&r, "recstream_producer_queue_length", ""), 1018);
  cr_assert_eq(val(&r, "recstream_state_cache_hits_total", ""), 2001);
  cr_assert_eq(val(&r, "recstream_state_cache_misses_total", ""), 2002);
  cr_assert_eq(val(&r, "recstream_state_cache_evictions_total", ""), 2003);
  cr_assert_eq(val(&r, "recstream_state_cache_writebacks_total", ""), 2004);
  cr_assert_eq(val(&r, "recstream_state_cache_entries", ""), 2005);
  cr_assert_eq(val(&r, "recstream_state_cache_bytes", ""), 2006);
  cr_assert_eq(val(&r, "recstream_state_cache_dirty_bytes", ""), 2007);
  cr_assert_eq(val(&r, "recstream_state_cache_spill_bytes", ""), 2008);
  cr_assert_eq(val(&r, "recstream_state_cache_limit_bytes", ""), 2009);
  cr_assert_eq(val(&r, "recstream_state_cache_retired_bytes", ""), 2010);

  /* Per operator: one family across operator types, labelled. */
  cr_assert_eq(val(&r, "recstream_records_in_total", "operator=p1,type=parse"),
               11);
  cr_assert_eq(val(&r, "recstream_records_out_total", "operator=p1,type=parse"),
               12);
  cr_assert_eq(
      val(&r, "recstream_dead_lettered_total", "operator=p1,type=parse"), 13);
  cr_assert_eq(val(&r, "recstream_records_in_total", "operator=p2,type=parse"),
               21);
  cr_assert_eq(val(&r, "recstream_records_out_total", "operator=p2,type=parse"),
               22);
  cr_assert_eq(
      val(&r, "recstream_records_in_total", "operator=st,type=user_stats"), 31);
  cr_assert_eq(count_series(&r, "recstream_records_in_total"), 3);
  /* An operator's own counters: named after its type, sanitised, _total
   * once; HELP keeps newline and backslash through the escapes. */
  cr_assert_eq(val(&r, "recstream_user_stats_users_created_total",
                   "operator=st,type=user_stats"),
               32);
  cr_assert_str_eq(family(&r, "recstream_user_stats_users_created_total")->help,
                   "users first seen\nback\\slash");
  cr_assert_eq(val(&r, "recstream_user_stats_odd_name_x_total",
                   "operator=st,type=user_stats"),
               33);
  cr_assert_eq(val(&r, "recstream_user_stats_already_total",
                   "operator=st,type=user_stats"),
               34);

  cr_assert_eq(val(&r, "recstream_sink_records_total", "sink=o1,topic=o1"), 41);
  cr_assert_eq(val(&r, "recstream_sink_records_total", "sink=o2,topic=o2"), 42);
  cr_assert_eq(val(&r, "recstream_sink_records_total", "sink=o3,topic=o3"), 43);

  cr_assert_eq(
      val(&r, "recstream_partition_assigned", "topic=in.topic,partition=0"), 1);
  cr_assert_eq(
      val(&r, "recstream_partition_assigned", "topic=in.topic,partition=2"), 0);
  cr_assert_eq(
      val(&r, "recstream_partition_position", "topic=in.topic,partition=1"),
      50);
  cr_assert(isnan(
      val(&r, "recstream_partition_position", "topic=in.topic,partition=3")));
  cr_assert_eq(val(&r, "recstream_consumer_lag", "topic=in.topic,partition=0"),
               30);
  cr_assert_eq(count_series(&r, "recstream_consumer_lag"), 1,
               "lag only where position and watermark are known and the "
               "partition is assigned");
  rs_buf_free(&b);
  fixture_free(&f);
}

Test(metrics, label_values_are_escaped) {
  /* Node names from configs cannot hold these; the renderer must still
   * escape whatever it is given. */
  static const rs_operator_def_t def = {.name = "my-type"};
  rs_gnode_t nodes[1] = {
      {.kind = RS_NODE_OPERATOR, .name = "a\"b\\c\nd", .def = &def}};
  rs_graph_t g = {.nodes = nodes, .n = 1};
  rs_metric_counter_t c[] = {{0, "records_in", "h", 5}, {0, "x", "h", 6}};
  rs_metrics_snapshot_t s;
  uint64_t out[1] = {0};
  fill(&s, &g, c, 2, NULL, 0, out);
  s.has_cache = 0;
  rs_buf_t b = {0};
  cr_assert_eq(rs_metrics_render(&s, &b), 0);
  cr_assert_eq(rs_buf_append(&b, "", 1), 0);
  cr_assert(strstr(b.data, "operator=\"a\\\"b\\\\c\\nd\"") != NULL, "%s",
            b.data);
  static parsed_t r;
  parse_exposition(b.data, &r);
  cr_assert_eq(
      val(&r, "recstream_records_in_total", "operator=a\"b\\c\nd,type=my-type"),
      5);
  cr_assert_eq(
      val(&r, "recstream_my_type_x_total", "operator=a\"b\\c\nd,type=my-type"),
      6);
  cr_assert_eq(count_series(&r, "recstream_state_cache_hits_total"), 0,
               "no cache, no cache figures");
  rs_buf_free(&b);
}

Test(metrics, readyz_is_200_only_when_running_with_partitions) {
  fixture_t f;
  fixture_load(&f);
  rs_metrics_snapshot_t s;
  uint64_t out[16] = {0};
  struct {
    const char *state;
    int ready;
    size_t parts;
    int status;
    const char *reason;
  } cases[] = {
      {"running", 1, 3, 200, NULL},
      {"running", 0, 0, 503, "no source partition assigned yet"},
      {"stopping", 0, 3, 503, "the engine is not running"},
      {"init", 0, 0, 503, "the engine is not running"},
  };
  for (size_t i = 0; i < RS_ARRAY_SIZE(cases); i++) {
    fill(&s, f.g, NULL, 0, NULL, 0, out);
    s.state = cases[i].state;
    s.ready = cases[i].ready;
    s.assigned_partitions = cases[i].parts;
    rs_buf_t b = {0};
    cr_assert_eq(rs_metrics_ready_json(&s, &b), cases[i].status, "case %zu", i);
    json_error_t je;
    json_t *j = json_loadb(b.data, b.len, 0, &je);
    cr_assert(j != NULL, "case %zu: %.*s", i, (int)b.len, b.data);
    cr_assert_eq(json_is_true(json_object_get(j, "ready")), cases[i].ready);
    cr_assert_str_eq(json_string_value(json_object_get(j, "state")),
                     cases[i].state);
    cr_assert_eq(json_integer_value(json_object_get(j, "assigned_partitions")),
                 (json_int_t)cases[i].parts);
    const char *reason = json_string_value(json_object_get(j, "reason"));
    if (cases[i].reason)
      cr_assert_str_eq(reason, cases[i].reason);
    else
      cr_assert_null(reason);
    json_decref(j);
    rs_buf_free(&b);
  }
  fixture_free(&f);
}

Test(metrics, graph_json_has_every_node_edge_and_counter) {
  fixture_t f;
  fixture_load(&f);
  const rs_graph_t *g = f.g;
  rs_metric_counter_t counters[] = {
      {node(g, "p1"), "records_in", "", 7},
      {node(g, "st"), "users_created", "", 9},
  };
  uint64_t out[16] = {0};
  out[node(g, "o2")] = 5;
  rs_metrics_snapshot_t s;
  fill(&s, g, counters, 2, NULL, 0, out);
  rs_buf_t b = {0};
  cr_assert_eq(rs_metrics_graph_json(&s, &b), 0);
  json_error_t je;
  json_t *j = json_loadb(b.data, b.len, 0, &je);
  cr_assert(j != NULL, "%.*s", (int)b.len, b.data);
  json_t *nodes = json_object_get(j, "nodes"),
         *edges = json_object_get(j, "edges");
  cr_assert_eq(json_array_size(nodes), g->n);
  for (size_t i = 0; i < g->n; i++) {
    json_t *n = json_array_get(nodes, i);
    cr_assert_str_eq(json_string_value(json_object_get(n, "name")),
                     g->nodes[i].name);
  }
  json_t *p1 = json_array_get(nodes, node(g, "p1"));
  cr_assert_str_eq(json_string_value(json_object_get(p1, "type")), "parse");
  cr_assert_eq(json_integer_value(json_object_get(
                   json_object_get(p1, "counters"), "records_in")),
               7);
  json_t *st = json_array_get(nodes, node(g, "st"));
  cr_assert_eq(json_integer_value(json_object_get(
                   json_object_get(st, "counters"), "users_created")),
               9);
  json_t *o2 = json_array_get(nodes, node(g, "o2"));
  cr_assert_str_eq(json_string_value(json_object_get(o2, "kind")), "sink");
  cr_assert_eq(json_integer_value(json_object_get(
                   json_object_get(o2, "counters"), "records_out")),
               5);
  json_t *in = json_array_get(nodes, node(g, "in"));
  cr_assert_str_eq(json_string_value(json_object_get(in, "topic")), "in.topic");
  /* in->p1, in->p2, p1->st, p1->o1, p2->o2, st->o3 */
  cr_assert_eq(json_array_size(edges), 6);
  size_t p1_st = 0;
  for (size_t i = 0; i < json_array_size(edges); i++) {
    json_t *e = json_array_get(edges, i);
    p1_st += !strcmp(json_string_value(json_object_get(e, "from")), "p1") &&
             !strcmp(json_string_value(json_object_get(e, "to")), "st") &&
             !strcmp(json_string_value(json_object_get(e, "port")), "out");
  }
  cr_assert_eq(p1_st, 1, "%.*s", (int)b.len, b.data);
  json_decref(j);
  rs_buf_free(&b);
  fixture_free(&f);
}

Test(metrics, sanitize_keeps_only_name_characters) {
  char buf[16];
  rs_metrics_sanitize("a.b-c d_e9", buf, sizeof buf);
  cr_assert_str_eq(buf, "a_b_c_d_e9");
  rs_metrics_sanitize("0123456789abcdefXYZ", buf, sizeof buf);
  cr_assert_str_eq(buf, "0123456789abcde");
}

Test(metrics, process_time_histogram_is_cumulative_with_le_bounds) {
  fixture_t f;
  fixture_load(&f);
  const rs_graph_t *g = f.g;
  rs_histogram_t hist[16];
  memset(hist, 0, sizeof hist);
  size_t p1 = node(g, "p1");
  /* 5 us (first bucket), exactly 1 ms (le="0.001" holds it), 3 ms, 7 s
   * (only +Inf). */
  const uint64_t obs[] = {5000, 1000000, 3000000, 7000000000ull};
  for (size_t i = 0; i < RS_ARRAY_SIZE(obs); i++)
    rs_histogram_observe(&hist[p1], obs[i]);
  uint64_t out[16] = {0};
  rs_metrics_snapshot_t s;
  fill(&s, g, NULL, 0, NULL, 0, out);
  s.node_hist = hist;
  rs_buf_t b = {0};
  cr_assert_eq(rs_metrics_render(&s, &b), 0);
  cr_assert_eq(rs_buf_append(&b, "", 1), 0);
  static parsed_t r;
  parse_exposition(b.data, &r);
  cr_assert_str_eq(family(&r, "recstream_operator_process_seconds")->type,
                   "histogram");
  const char *b_ = "recstream_operator_process_seconds_bucket";
  cr_assert_eq(val(&r, b_, "operator=p1,le=1e-05"), 1);
  cr_assert_eq(val(&r, b_, "operator=p1,le=0.0005"), 1);
  cr_assert_eq(val(&r, b_, "operator=p1,le=0.001"), 2);
  cr_assert_eq(val(&r, b_, "operator=p1,le=0.0025"), 2);
  cr_assert_eq(val(&r, b_, "operator=p1,le=0.005"), 3);
  cr_assert_eq(val(&r, b_, "operator=p1,le=2.5"), 3);
  cr_assert_eq(val(&r, b_, "operator=p1,le=+Inf"), 4);
  cr_assert_eq(
      val(&r, "recstream_operator_process_seconds_count", "operator=p1"), 4);
  cr_assert_eq(val(&r, "recstream_operator_process_seconds_sum", "operator=p1"),
               7.004005);
  /* Every operator has its series (zero here), sources and sinks none. */
  cr_assert_eq(val(&r, b_, "operator=p2,le=+Inf"), 0);
  cr_assert_eq(count_series(&r, "recstream_operator_process_seconds_count"), 3);
  /* Buckets never decrease. */
  double prev = -1;
  for (size_t i = 0; i < r.ns; i++)
    if (!strcmp(r.s[i].name, b_) && strstr(r.s[i].labels, "operator=p1,")) {
      cr_assert_geq(r.s[i].value, prev, "%s", r.s[i].labels);
      prev = r.s[i].value;
    }
  rs_buf_free(&b);
  fixture_free(&f);
}

Test(metrics, graph_json_rates_when_the_endpoint_has_samples) {
  fixture_t f;
  fixture_load(&f);
  const rs_graph_t *g = f.g;
  uint64_t out[16] = {0};
  rs_metrics_snapshot_t s;
  fill(&s, g, NULL, 0, NULL, 0, out);
  double rin[16], rout[16];
  for (size_t i = 0; i < g->n; i++) {
    rin[i] = 100.0 + (double)i;
    rout[i] = 200.0 + (double)i;
  }
  /* Without samples: no rates at all. */
  rs_buf_t b = {0};
  cr_assert_eq(rs_metrics_graph_json(&s, &b), 0);
  json_error_t je;
  json_t *j = json_loadb(b.data, b.len, 0, &je);
  cr_assert_null(json_object_get(j, "rate_window_s"));
  cr_assert_null(
      json_object_get(json_array_get(json_object_get(j, "nodes"), 0), "rates"));
  json_decref(j);
  rs_buf_reset(&b);
  s.rate_in = rin;
  s.rate_out = rout;
  s.rate_window_s = 10;
  cr_assert_eq(rs_metrics_graph_json(&s, &b), 0);
  j = json_loadb(b.data, b.len, 0, &je);
  cr_assert(j != NULL);
  cr_assert_eq(json_real_value(json_object_get(j, "rate_window_s")), 10.0);
  json_t *nodes = json_object_get(j, "nodes");
  for (size_t i = 0; i < g->n; i++) {
    json_t *r = json_object_get(json_array_get(nodes, i), "rates");
    cr_assert_eq(json_real_value(json_object_get(r, "in_per_s")), rin[i]);
    cr_assert_eq(json_real_value(json_object_get(r, "out_per_s")), rout[i]);
  }
  json_t *edges = json_object_get(j, "edges");
  for (size_t i = 0; i < json_array_size(edges); i++) {
    json_t *e = json_array_get(edges, i);
    size_t from = node(g, json_string_value(json_object_get(e, "from")));
    cr_assert_eq(json_real_value(json_object_get(e, "records_per_s")),
                 rout[from]);
  }
  json_decref(j);
  rs_buf_free(&b);
  fixture_free(&f);
}

Test(metrics, node_totals_for_rates) {
  fixture_t f;
  fixture_load(&f);
  const rs_graph_t *g = f.g;
  rs_metric_counter_t counters[] = {
      {node(g, "p1"), "records_in", "", 70},
      {node(g, "p1"), "records_out", "", 60},
  };
  rs_metric_part_t parts[] = {
      {"in.topic", 0, 1, 100, -1},
      {"in.topic", 1, 1, 23, -1},
      {"in.topic", 2, 0, 1000, -1}, /* not assigned: not counted */
      {"in.topic", 3, 1, -1, -1},   /* no position yet */
  };
  uint64_t out[16] = {0};
  out[node(g, "o1")] = 9;
  rs_metrics_snapshot_t s;
  fill(&s, g, counters, 2, parts, 4, out);
  cr_assert_eq(rs_metrics_node_out(&s, node(g, "in")), 123);
  cr_assert_eq(rs_metrics_node_in(&s, node(g, "p1")), 70);
  cr_assert_eq(rs_metrics_node_out(&s, node(g, "p1")), 60);
  cr_assert_eq(rs_metrics_node_in(&s, node(g, "p2")), 0);
  cr_assert_eq(rs_metrics_node_in(&s, node(g, "o1")), 9);
  cr_assert_eq(rs_metrics_node_out(&s, node(g, "o1")), 9);
  fixture_free(&f);
}

Test(metrics, latency_histograms_rocksdb_and_checkpoint_bytes) {
  fixture_t f;
  fixture_load(&f);
  const rs_graph_t *g = f.g;
  rs_lat_histogram_t e2e[16];
  memset(e2e, 0, sizeof e2e);
  size_t o1 = node(g, "o1");
  /* 0 (first bucket), exactly 1 ms, 40 ms, 2 h (only +Inf). */
  const uint64_t obs[] = {0, 1000000, 40000000, 7200000000000ull};
  for (size_t i = 0; i < RS_ARRAY_SIZE(obs); i++)
    rs_lat_observe(&e2e[o1], obs[i]);
  uint64_t out[16] = {0};
  rs_metrics_snapshot_t s;
  fill(&s, g, NULL, 0, NULL, 0, out);
  s.node_e2e = e2e;
  rs_lat_observe(&s.ack, 3000000);
  rs_metric_cf_t cfs[] = {{"st", 5001, 5002, 5003, 5004},
                          {"__offsets", 6001, 6002, 6003, 6004}};
  s.has_store = 1;
  s.cfs = cfs;
  s.n_cfs = 2;
  s.block_cache_bytes = 7001;
  s.block_cache_capacity = 7002;
  s.checkpoint_last_bytes = 7003;
  s.checkpoint_total_bytes = 7004;
  rs_buf_t b = {0};
  cr_assert_eq(rs_metrics_render(&s, &b), 0);
  cr_assert_eq(rs_buf_append(&b, "", 1), 0);
  static parsed_t r;
  parse_exposition(b.data, &r);
  const char *e = "recstream_event_to_output_seconds_bucket";
  cr_assert_str_eq(family(&r, "recstream_event_to_output_seconds")->type,
                   "histogram");
  cr_assert_eq(val(&r, e, "sink=o1,le=0.001"), 2);
  cr_assert_eq(val(&r, e, "sink=o1,le=0.025"), 2);
  cr_assert_eq(val(&r, e, "sink=o1,le=0.05"), 3);
  cr_assert_eq(val(&r, e, "sink=o1,le=3600"), 3);
  cr_assert_eq(val(&r, e, "sink=o1,le=+Inf"), 4);
  cr_assert_eq(val(&r, "recstream_event_to_output_seconds_count", "sink=o1"),
               4);
  cr_assert_eq(val(&r, "recstream_event_to_output_seconds_sum", "sink=o1"),
               7200.041);
  /* One per sink, none for operators. */
  cr_assert_eq(count_series(&r, "recstream_event_to_output_seconds_count"), 3);
  cr_assert_eq(val(&r, e, "sink=o2,le=+Inf"), 0);
  cr_assert_eq(val(&r, "recstream_output_ack_seconds_bucket", "le=0.0025"), 0);
  cr_assert_eq(val(&r, "recstream_output_ack_seconds_bucket", "le=0.005"), 1);
  cr_assert_eq(val(&r, "recstream_output_ack_seconds_count", ""), 1);
  cr_assert_eq(val(&r, "recstream_rocksdb_estimated_keys", "column_family=st"),
               5001);
  cr_assert_eq(val(&r, "recstream_rocksdb_sst_bytes", "column_family=st"),
               5002);
  cr_assert_eq(
      val(&r, "recstream_rocksdb_memtable_bytes", "column_family=__offsets"),
      6003);
  cr_assert_eq(val(&r, "recstream_rocksdb_pending_compaction_bytes",
                   "column_family=__offsets"),
               6004);
  cr_assert_eq(val(&r, "recstream_rocksdb_block_cache_bytes", ""), 7001);
  cr_assert_eq(val(&r, "recstream_rocksdb_block_cache_capacity_bytes", ""),
               7002);
  cr_assert_eq(val(&r, "recstream_checkpoint_last_bytes", ""), 7003);
  cr_assert_eq(val(&r, "recstream_checkpoint_bytes_total", ""), 7004);
  rs_buf_free(&b);

  /* Quantiles as histogram_quantile: linear inside the bucket. */
  rs_lat_histogram_t q;
  memset(&q, 0, sizeof q);
  cr_assert_eq(rs_lat_quantile(&q, 0.5), -1);
  for (int i = 0; i < 100; i++)
    rs_lat_observe(&q, i < 90 ? 3000000 : 70000000); /* 3 ms, 70 ms */
  /* 90 in (2.5 ms, 5 ms], 10 in (50 ms, 100 ms]. */
  cr_assert_float_eq(rs_lat_quantile(&q, 0.5), 0.0025 + 0.0025 * 50 / 90.0,
                     1e-12);
  cr_assert_float_eq(rs_lat_quantile(&q, 0.99), 0.05 + 0.05 * 9 / 10.0, 1e-12);
  rs_lat_observe(&q, 7200000000000ull);
  cr_assert_eq(rs_lat_quantile(&q, 1.0), 3600, "+Inf answers its lower bound");
  fixture_free(&f);
}

/* ------------------------------------------------ experiments (A/B) */

static const char exp_yaml[] =
    "app: x\n"
    "sources: [ { name: in, topic: in }, { name: fb, topic: fb } ]\n"
    "operators:\n"
    "  - { name: parse, type: parse, input: in }\n"
    "  - { name: pf, type: parse, input: fb, record: feedback }\n"
    "  - { name: mf, type: mf_update, input: parse }\n"
    "  - { name: topn, type: topn_emit, input: mf, model: mf }\n"
    "  - { name: bandit, type: bandit_reward, inputs: [topn, pf] }\n"
    "sinks: [ { name: out, input: bandit.recommendations, topic: out } ]\n"
    "experiments:\n"
    "  - name: ab\n"
    "    salt: s\n"
    "    operators: [mf, topn, bandit]\n"
    "    variants: [ { name: model, weight: 1 }, { name: pop, weight: 1 } ]\n";

static void exp_load(fixture_t *f) {
  char err[512];
  cr_assert_eq(rs_config_load_string("x.yaml", exp_yaml, strlen(exp_yaml), NULL,
                                     0, &f->cfg, err, sizeof err),
               0, "%s", err);
  cr_assert_eq(rs_registry_new(&f->reg, err, sizeof err), 0, "%s", err);
  cr_assert_eq(rs_graph_build(f->cfg, f->reg, &f->g, err, sizeof err), 0, "%s",
               err);
  cr_assert_not_null(f->g->exp);
}

/* Counters as the engine's snapshot lists them for the experiment's graph:
 * every variant instance's, labelled by variant. */
typedef struct exp_snap {
  rs_metric_counter_t c[32];
  const char *cv[32];
  rs_metric_inst_t insts[8];
  size_t nc;
} exp_snap_t;

static void add_c(exp_snap_t *e, size_t node, const char *variant,
                  const char *name, uint64_t v) {
  e->c[e->nc] = (rs_metric_counter_t){node, name, "h", v};
  e->cv[e->nc++] = variant;
}

static void exp_fill(exp_snap_t *e, const rs_graph_t *g,
                     rs_metrics_snapshot_t *s, uint64_t *out) {
  memset(e, 0, sizeof(*e));
  size_t parse = node(g, "parse"), mf = node(g, "mf"), topn = node(g, "topn"),
         bandit = node(g, "bandit");
  add_c(e, parse, NULL, "records_in", 1000);
  add_c(e, parse, NULL, "records_out", 990);
  static const char *const vs[] = {"model", "pop"};
  for (size_t v = 0; v < 2; v++) {
    uint64_t k = v + 1;
    add_c(e, mf, vs[v], "records_in", 100 * k);
    add_c(e, mf, vs[v], "records_out", 90 * k);
    add_c(e, topn, vs[v], "records_in", 80 * k);
    add_c(e, topn, vs[v], "impressions", 7777); /* items: not lists */
    add_c(e, bandit, vs[v], "records_in", 70 * k);
    add_c(e, bandit, vs[v], "impressions", v ? 400 : 200);
    add_c(e, bandit, vs[v], "clicks", v ? 20 : 50);
  }
  size_t ni = 0;
  const size_t split[] = {mf, topn, bandit};
  for (size_t n = 0; n < 3; n++)
    for (size_t v = 0; v < 2; v++) {
      e->insts[ni] = (rs_metric_inst_t){split[n], vs[v], {{0}, 0, 0}};
      /* (n+1)*(v+1) observations of 2 ms each. */
      for (size_t o = 0; o < (n + 1) * (v + 1); o++)
        rs_histogram_observe(&e->insts[ni].proc, 2000000);
      ni++;
    }
  fill(s, g, e->c, e->nc, NULL, 0, out);
  s->counter_variants = e->cv;
  s->insts = e->insts;
  s->n_insts = ni;
}

Test(metrics, experiment_ctr_per_variant_and_histograms_per_instance) {
  fixture_t f;
  exp_load(&f);
  const rs_graph_t *g = f.g;
  uint64_t out[16] = {0};
  exp_snap_t e;
  rs_metrics_snapshot_t s;
  rs_histogram_t hist[16];
  memset(hist, 0, sizeof hist);
  exp_fill(&e, g, &s, out);
  s.node_hist = hist;
  rs_histogram_observe(&hist[node(g, "parse")], 5000);
  rs_buf_t b = {0};
  cr_assert_eq(rs_metrics_render(&s, &b), 0);
  cr_assert_eq(rs_buf_append(&b, "", 1), 0);
  static parsed_t r;
  parse_exposition(b.data, &r);
  /* The lists shown and clicks of bandit_reward (it counts both; topn's
   * impressions are items and do not count), per variant, and the CTR. */
  cr_assert_str_eq(family(&r, "recstream_experiment_impressions_total")->type,
                   "counter");
  cr_assert_str_eq(family(&r, "recstream_experiment_clicks_total")->type,
                   "counter");
  cr_assert_str_eq(family(&r, "recstream_experiment_ctr")->type, "gauge");
  cr_assert_eq(val(&r, "recstream_experiment_impressions_total",
                   "experiment=ab,variant=model"),
               200);
  cr_assert_eq(val(&r, "recstream_experiment_impressions_total",
                   "experiment=ab,variant=pop"),
               400);
  cr_assert_eq(val(&r, "recstream_experiment_clicks_total",
                   "experiment=ab,variant=model"),
               50);
  cr_assert_eq(
      val(&r, "recstream_experiment_clicks_total", "experiment=ab,variant=pop"),
      20);
  cr_assert_float_eq(
      val(&r, "recstream_experiment_ctr", "experiment=ab,variant=model"), 0.25,
      1e-9);
  cr_assert_float_eq(
      val(&r, "recstream_experiment_ctr", "experiment=ab,variant=pop"), 0.05,
      1e-9);
  cr_assert_eq(count_series(&r, "recstream_experiment_ctr"), 2);
  /* The operators' own counters keep the variant label. */
  cr_assert_eq(val(&r, "recstream_bandit_reward_clicks_total",
                   "operator=bandit,type=bandit_reward,variant=pop"),
               20);
  /* Process time: every variant instance of a split operator, the others
   * as before. */
  const char *cnt = "recstream_operator_process_seconds_count";
  cr_assert_eq(val(&r, cnt, "operator=mf,variant=model"), 1);
  cr_assert_eq(val(&r, cnt, "operator=mf,variant=pop"), 2);
  cr_assert_eq(val(&r, cnt, "operator=topn,variant=pop"), 4);
  cr_assert_eq(val(&r, cnt, "operator=bandit,variant=model"), 3);
  cr_assert_eq(val(&r, cnt, "operator=bandit,variant=pop"), 6);
  cr_assert_eq(val(&r, cnt, "operator=parse"), 1);
  cr_assert(isnan(val(&r, cnt, "operator=mf")), "a split node has no "
                                                "series without variant");
  cr_assert_eq(count_series(&r, cnt), 2 + 6);
  cr_assert_eq(val(&r, "recstream_operator_process_seconds_bucket",
                   "operator=topn,variant=pop,le=0.0025"),
               4);
  cr_assert_float_eq(val(&r, "recstream_operator_process_seconds_sum",
                         "operator=bandit,variant=pop"),
                     0.012, 1e-9);

  /* No impressions yet: the CTR is NaN, the counters 0. */
  rs_buf_reset(&b);
  for (size_t k = 0; k < e.nc; k++)
    if (!strcmp(e.c[k].name, "impressions") || !strcmp(e.c[k].name, "clicks"))
      e.c[k].value = 0;
  cr_assert_eq(rs_metrics_render(&s, &b), 0);
  cr_assert_eq(rs_buf_append(&b, "", 1), 0);
  parse_exposition(b.data, &r);
  cr_assert(
      isnan(val(&r, "recstream_experiment_ctr", "experiment=ab,variant=pop")));
  cr_assert_eq(count_series(&r, "recstream_experiment_ctr"), 2);
  cr_assert_eq(val(&r, "recstream_experiment_impressions_total",
                   "experiment=ab,variant=pop"),
               0);
  rs_buf_free(&b);
  fixture_free(&f);
}

Test(metrics, graph_json_lists_every_variant_with_sums_on_the_node) {
  fixture_t f;
  exp_load(&f);
  const rs_graph_t *g = f.g;
  uint64_t out[16] = {0};
  exp_snap_t e;
  rs_metrics_snapshot_t s;
  exp_fill(&e, g, &s, out);
  double rin[16 + 8], rout[16 + 8];
  for (size_t i = 0; i < 16 + 8; i++) {
    rin[i] = 10.0 + (double)i;
    rout[i] = 50.0 + (double)i;
  }
  s.rate_in = rin;
  s.rate_out = rout;
  s.rate_inst_in = rin + g->n;
  s.rate_inst_out = rout + g->n;
  s.rate_window_s = 10;
  /* The totals the rates are sampled from. */
  cr_assert_eq(rs_metrics_node_in(&s, node(g, "mf")), 300);
  cr_assert_eq(rs_metrics_node_out(&s, node(g, "mf")), 270);
  cr_assert_eq(rs_metrics_inst_in(&s, 0), 100); /* mf#model */
  cr_assert_eq(rs_metrics_inst_in(&s, 1), 200); /* mf#pop */
  cr_assert_eq(rs_metrics_inst_out(&s, 1), 180);
  rs_buf_t b = {0};
  cr_assert_eq(rs_metrics_graph_json(&s, &b), 0);
  json_error_t je;
  json_t *j = json_loadb(b.data, b.len, 0, &je);
  cr_assert(j != NULL, "%.*s", (int)b.len, b.data);
  json_t *nodes = json_object_get(j, "nodes");
  json_t *mf = json_array_get(nodes, node(g, "mf"));
  cr_assert_eq(json_integer_value(json_object_get(
                   json_object_get(mf, "counters"), "records_in")),
               300, "the node's figure is its variants' sum");
  json_t *vars = json_object_get(mf, "variants");
  cr_assert_eq(json_array_size(vars), 2, "%.*s", (int)b.len, b.data);
  json_t *pop = json_array_get(vars, 1);
  cr_assert_str_eq(json_string_value(json_object_get(pop, "name")), "pop");
  cr_assert_eq(json_integer_value(json_object_get(
                   json_object_get(pop, "counters"), "records_in")),
               200);
  cr_assert_eq(json_real_value(
                   json_object_get(json_object_get(pop, "rates"), "in_per_s")),
               rin[g->n + 1]);
  json_t *bandit = json_array_get(nodes, node(g, "bandit"));
  json_t *bm = json_array_get(json_object_get(bandit, "variants"), 0);
  cr_assert_str_eq(json_string_value(json_object_get(bm, "name")), "model");
  cr_assert_eq(json_integer_value(
                   json_object_get(json_object_get(bm, "counters"), "clicks")),
               50);
  cr_assert_eq(json_integer_value(json_object_get(
                   json_object_get(bandit, "counters"), "clicks")),
               70);
  /* Operators not split: no variants. */
  cr_assert_null(
      json_object_get(json_array_get(nodes, node(g, "parse")), "variants"));
  json_decref(j);
  rs_buf_free(&b);
  fixture_free(&f);
}
