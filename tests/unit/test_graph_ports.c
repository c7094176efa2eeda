/* What the runtime's host->port_wanted answers (rs_graph_port_wanted): a
 * port is wanted when an operator reads it, or a sink while outputs are
 * written; a port only suppressed sinks read (replay --output none) is
 * not, and counts those sinks for the withheld figure; a port nothing
 * reads is not. */
#include <criterion/criterion.h>
#include <string.h>

#include "config.h"
#include "graph.h"
#include "recstream/error.h"
#include "registry.h"

static const char yaml[] =
    "app: ports\n"
    "sources: [ { name: in, topic: in } ]\n"
    "operators:\n"
    "  - { name: parse, type: parse, input: in }\n"
    "  - { name: stats, type: user_stats, input: parse }\n"
    "  - name: sess\n"
    "    type: sessionize\n"
    "    input: parse\n"
    "    gap: 30m\n"
    "    grace: 5m\n"
    "sinks:\n"
    "  - { name: a, input: stats, topic: a }\n"
    "  - { name: b, input: stats, topic: b }\n"
    "  - { name: c, input: sess.sessions, topic: c }\n";

static size_t node(const rs_graph_t *g, const char *name) {
  for (size_t i = 0; i < g->n; i++)
    if (!strcmp(g->nodes[i].name, name))
      return i;
  cr_assert_fail("no node %s", name);
  return 0;
}

Test(graph_ports, port_wanted_follows_the_readers) {
  rs_config_t *cfg = NULL;
  rs_registry_t *reg = NULL;
  rs_graph_t *g = NULL;
  char err[512];
  cr_assert_eq(rs_config_load_string("ports.yaml", yaml, strlen(yaml), NULL, 0,
                                     &cfg, err, sizeof err),
               0, "%s", err);
  cr_assert_eq(rs_registry_new(&reg, err, sizeof err), 0, "%s", err);
  cr_assert_eq(rs_graph_build(cfg, reg, &g, err, sizeof err), 0, "%s", err);
  size_t parse = node(g, "parse"), stats = node(g, "stats"),
         sess = node(g, "sess");
  struct {
    size_t node;
    uint32_t port;
    int suppress, wanted;
    uint32_t withheld;
  } cases[] = {
      /* Read by two operators: wanted, suppressed or not. */
      {parse, 0, 0, 1, 0},
      {parse, 0, 1, 1, 0},
      /* Read by two sinks only. */
      {stats, 0, 0, 1, 0},
      {stats, 0, 1, 0, 2},
      /* sessionize: out and late read by nothing, sessions by a sink. */
      {sess, 0, 0, 0, 0},
      {sess, 1, 0, 1, 0},
      {sess, 1, 1, 0, 1},
      {sess, 2, 0, 0, 0},
      {sess, 2, 1, 0, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    uint32_t withheld = 99;
    int w = rs_graph_port_wanted(g, cases[i].node, cases[i].port,
                                 cases[i].suppress, &withheld);
    cr_assert_eq(w, cases[i].wanted, "case %zu: wanted %d", i, w);
    cr_assert_eq(withheld, cases[i].withheld, "case %zu: withheld %u", i,
                 (unsigned)withheld);
  }
  rs_graph_destroy(g);
  rs_registry_destroy(reg);
  rs_config_destroy(cfg);
}

/* rs_graph_copartition: mf reads a and b through two parse operators, us
 * reads c alone. Only sources that meet in one operator are compared, and
 * an unknown count (<= 0) is not. */
Test(graph_ports, copartition_compares_sources_that_meet) {
  static const char y[] =
      "app: copart\n"
      "sources:\n"
      "  - { name: a, topic: a }\n"
      "  - { name: b, topic: b }\n"
      "  - { name: c, topic: c }\n"
      "operators:\n"
      "  - { name: pa, type: parse, input: a }\n"
      "  - { name: pb, type: parse, input: b }\n"
      "  - { name: pc, type: parse, input: c }\n"
      "  - { name: mf, type: mf_update, inputs: [pa, pb] }\n"
      "  - { name: us, type: user_stats, input: pc }\n"
      "sinks:\n"
      "  - { name: o1, input: mf, topic: o1 }\n"
      "  - { name: o2, input: us, topic: o2 }\n";
  rs_config_t *cfg = NULL;
  rs_registry_t *reg = NULL;
  rs_graph_t *g = NULL;
  char err[512];
  cr_assert_eq(rs_config_load_string("copart.yaml", y, strlen(y), NULL, 0, &cfg,
                                     err, sizeof err),
               0, "%s", err);
  cr_assert_eq(rs_registry_new(&reg, err, sizeof err), 0, "%s", err);
  cr_assert_eq(rs_graph_build(cfg, reg, &g, err, sizeof err), 0, "%s", err);
  size_t op = 99, s1 = 99, s2 = 99;
  const int32_t same[] = {4, 4, 2}, differ[] = {4, 2, 4},
                unknown[] = {4, -1, 2}, first_unknown[] = {0, 3, 3};
  cr_assert_eq(rs_graph_copartition(g, same, &op, &s1, &s2), 0);
  cr_assert_eq(op, 99);
  cr_assert_eq(rs_graph_copartition(g, unknown, &op, &s1, &s2), 0);
  cr_assert_eq(rs_graph_copartition(g, first_unknown, &op, &s1, &s2), 0);
  cr_assert_eq(rs_graph_copartition(g, differ, &op, &s1, &s2), 1);
  cr_assert_eq(op, node(g, "mf"));
  cr_assert_eq(s1, 0);
  cr_assert_eq(s2, 1);
  rs_graph_destroy(g);
  rs_registry_destroy(reg);
  rs_config_destroy(cfg);
}

/* Builds the graph of config text y: 0, or the error with its message in
 * err. */
static int build(const char *y, char *err, size_t err_size) {
  rs_config_t *cfg = NULL;
  rs_registry_t *reg = NULL;
  rs_graph_t *g = NULL;
  cr_assert_eq(rs_config_load_string("g.yaml", y, strlen(y), NULL, 0, &cfg, err,
                                     err_size),
               0, "%s", err);
  cr_assert_eq(rs_registry_new(&reg, err, err_size), 0, "%s", err);
  int rc = rs_graph_build(cfg, reg, &g, err, err_size);
  rs_graph_destroy(g);
  rs_registry_destroy(reg);
  rs_config_destroy(cfg);
  return rc;
}

/* An operator reads each (node, port) once: listed twice, every record of
 * it would be processed twice. The error points at the repeated entry;
 * "s" and "s.out" are the same port; two ports of one node are two
 * inputs. */
Test(graph_ports, an_input_listed_twice_is_refused) {
  static const char head[] =
      "app: dup\n"
      "sources: [ { name: in, topic: in } ]\n"
      "operators:\n"
      "  - { name: parse, type: parse, input: in }\n"
      "  - { name: s, type: sessionize, input: parse, gap: 30m, grace: 5m }\n";
  static const char tail[] = "sinks: [ { name: o, input: mf, topic: o } ]\n";
  struct {
    const char *mf, *want;
  } cases[] = {
      {"  - { name: mf, type: mf_update, inputs: [parse, parse, parse] }\n",
       "g.yaml:6:50: operators 'mf'.inputs[1]: 'parse' is already an input of "
       "'mf' (inputs[0]); each input is read once, so list it once"},
      {"  - { name: mf, type: mf_update, inputs: [parse, parse.out] }\n",
       "g.yaml:6:50: operators 'mf'.inputs[1]: 'parse.out' is already an "
       "input of 'mf' (inputs[0], as 'parse')"},
      {"  - name: mf\n"
       "    type: mf_update\n"
       "    inputs:\n"
       "      - s.sessions\n"
       "      - s.late\n"
       "      - s.sessions\n",
       "g.yaml:11:9: operators 'mf'.inputs[2]: 's.sessions' is already an "
       "input of 'mf' (inputs[0])"},
  };
  char y[1024], err[1024];
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    snprintf(y, sizeof y, "%s%s%s", head, cases[i].mf, tail);
    err[0] = '\0';
    cr_assert_eq(build(y, err, sizeof err), RS_EGRAPH, "case %zu accepted", i);
    cr_assert(strstr(err, cases[i].want), "case %zu: %s", i, err);
  }
  /* Two ports of one node, or one node and another's port: allowed. */
  const char *fine[] = {
      "  - { name: mf, type: mf_update, inputs: [s.sessions, s.late] }\n",
      "  - { name: mf, type: mf_update, inputs: [s.sessions, s, parse] }\n",
  };
  for (size_t i = 0; i < sizeof fine / sizeof *fine; i++) {
    snprintf(y, sizeof y, "%s%s%s", head, fine[i], tail);
    cr_assert_eq(build(y, err, sizeof err), 0, "%s: %s", fine[i], err);
  }
}

/* The default dead-letter topic of an operator is "<source topic>.dlq" for
 * each source whose records reach it; like an explicit dead_letter_topic
 * it may not be a source topic (the dead letters would be read back). */
Test(graph_ports, default_dead_letter_topic_may_not_be_a_source_topic) {
  static const char fmt[] =
      "app: dlq\n"
      "sources:\n"
      "  - { name: in, topic: interactions }\n"
      "  - { name: retry, topic: interactions.dlq }\n"
      "operators:\n"
      "  - { name: parse, type: parse, input: in%s }\n"
      "  - { name: parse2, type: parse, input: retry }\n"
      "sinks:\n"
      "  - { name: out, input: parse, topic: parsed }\n"
      "  - { name: out2, input: parse2, topic: parsed2 }\n";
  char y[1024], err[1024] = "";
  snprintf(y, sizeof y, fmt, "");
  cr_assert_eq(build(y, err, sizeof err), RS_EGRAPH, "accepted");
  cr_assert(strstr(err, "g.yaml:6:13: operators 'parse': its dead letters for "
                        "source 'in' go to 'interactions.dlq' (the default, "
                        "<source topic>.dlq), which is also read by source "
                        "'retry'; dead letters would be consumed again: set "
                        "dead_letter_topic on 'parse' to a topic no source "
                        "reads"),
            "%s", err);
  /* Set explicitly to that topic: refused as before. */
  snprintf(y, sizeof y, fmt, ", dead_letter_topic: interactions.dlq");
  cr_assert_eq(build(y, err, sizeof err), RS_EGRAPH, "accepted");
  cr_assert(strstr(err, "operators 'parse'.dead_letter_topic: "
                        "'interactions.dlq' is also read by source 'retry'"),
            "%s", err);
  /* Another topic: allowed (parse2's default, interactions.dlq.dlq, is
   * read by no source). */
  snprintf(y, sizeof y, fmt, ", dead_letter_topic: interactions.failed");
  cr_assert_eq(build(y, err, sizeof err), 0, "%s", err);
}

/* The names the runtime dead-letters to (rs_graph_dlq_topic) and the
 * sources that reach each node (rs_graph_reaches): a source whose records
 * never reach an operator has no default topic there to check. */
Test(graph_ports, dead_letter_topics_follow_the_sources_that_reach) {
  static const char y[] =
      "app: dlq2\n"
      "sources:\n"
      "  - { name: a, topic: ta }\n"
      "  - { name: b, topic: ta.dlq }\n"
      "operators:\n"
      "  - { name: pa, type: parse, input: a, dead_letter_topic: bad }\n"
      "  - { name: pb, type: parse, input: b }\n"
      "  - { name: mf, type: mf_update, inputs: [pb] }\n"
      "sinks:\n"
      "  - { name: o1, input: pa, topic: o1 }\n"
      "  - { name: o2, input: mf, topic: o2 }\n";
  rs_config_t *cfg = NULL;
  rs_registry_t *reg = NULL;
  rs_graph_t *g = NULL;
  char err[512], buf[64];
  cr_assert_eq(rs_config_load_string("dlq2.yaml", y, strlen(y), NULL, 0, &cfg,
                                     err, sizeof err),
               0, "%s", err);
  cr_assert_eq(rs_registry_new(&reg, err, sizeof err), 0, "%s", err);
  cr_assert_eq(rs_graph_build(cfg, reg, &g, err, sizeof err), 0, "%s", err);
  size_t pa = node(g, "pa"), pb = node(g, "pb"), mf = node(g, "mf");
  cr_assert(rs_graph_reaches(g, 0, pa) && !rs_graph_reaches(g, 1, pa));
  cr_assert(!rs_graph_reaches(g, 0, pb) && rs_graph_reaches(g, 1, pb));
  cr_assert(!rs_graph_reaches(g, 0, mf) && rs_graph_reaches(g, 1, mf));
  cr_assert(rs_graph_reaches(g, 0, node(g, "a")));
  cr_assert_str_eq(rs_graph_dlq_topic(cfg, 0, 0, buf, sizeof buf), "bad");
  cr_assert_str_eq(rs_graph_dlq_topic(cfg, 1, 1, buf, sizeof buf),
                   "ta.dlq.dlq");
  cr_assert_str_eq(rs_graph_dlq_topic(cfg, 2, 0, buf, sizeof buf), "ta.dlq");
  rs_graph_destroy(g);
  rs_registry_destroy(reg);
  rs_config_destroy(cfg);
}

/* A source topic of 246-249 characters is valid, but its default
 * dead-letter topic (+ ".dlq") is not: refused at build, unless the
 * operator names another. */
Test(graph_ports, default_dead_letter_topic_must_be_a_valid_name) {
  char topic[250], y[2048], err[1024] = "";
  memset(topic, 't', 247);
  topic[247] = '\0';
  static const char fmt[] = "app: dlq\n"
                            "sources:\n"
                            "  - { name: in, topic: %s }\n"
                            "operators:\n"
                            "  - { name: parse, type: parse, input: in%s }\n"
                            "sinks:\n"
                            "  - { name: out, input: parse, topic: parsed }\n";
  snprintf(y, sizeof y, fmt, topic, "");
  cr_assert_eq(build(y, err, sizeof err), RS_EGRAPH, "accepted");
  cr_assert(strstr(err, "g.yaml:5:13: operators 'parse': its dead letters for "
                        "source 'in' would go to 'ttt") &&
                strstr(err, ".dlq' (the default, <source topic>.dlq), longer "
                            "than the 249 characters of a Kafka topic name: "
                            "set dead_letter_topic on 'parse'"),
            "%s", err);
  snprintf(y, sizeof y, fmt, topic, ", dead_letter_topic: failed");
  cr_assert_eq(build(y, err, sizeof err), 0, "%s", err);
  topic[245] = '\0'; /* 245 + 4 = 249: allowed */
  snprintf(y, sizeof y, fmt, topic, "");
  cr_assert_eq(build(y, err, sizeof err), 0, "%s", err);
}
