/* The recstream command-line program: argument parsing and dispatch to the
 * engine. Exit status: 0 success, 1 runtime failure, 2 bad usage or bad
 * config. Every command that takes CONFIG accepts --set section.key=value.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "examples/generator/generator.h"
#include "experiments.h"
#include "examples/simulator/sim_cmd.h"
#include "graph.h"
#include "kafka.h"
#include "log.h"
#include "operators/mf_update/eval.h"
#include "options.h"
#include "recstream/version.h"
#include "registry.h"
#include "replay.h"
#include "report.h"
#include "runtime.h"
#include "state/store.h"
#include "state_cmd.h"
#include "util.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

static const char main_usage[] =
    "Usage: recstream <command> [options]\n"
    "\n"
    "A stream-processing engine that turns Kafka streams of user interactions\n"
    "into real-time recommendation feeds.\n"
    "\n"
    "Commands:\n"
    "  run CONFIG        run a pipeline until SIGINT/SIGTERM\n"
    "  validate CONFIG   check a pipeline config and its graph (no "
    "connections)\n"
    "  graph CONFIG      print the operator graph as Graphviz DOT\n"
    "  operators [NAME]  describe operators and their options\n"
    "  broker            run a standalone embedded Kafka broker (mock "
    "cluster)\n"
    "  generate          produce a synthetic interaction stream\n"
    "  eval              replay an interaction log through mf_update and\n"
    "                    measure it prequentially (no Kafka)\n"
    "  simulate          closed loop: simulated users click on the\n"
    "                    engine's recommendations; prints CTR\n"
    "  state SUB CONFIG  inspect, checkpoint (a savepoint) or purge the\n"
    "                    keyed state\n"
    "  replay CONFIG     backfill state from a range of the source topics\n"
    "  report            CTR per experiment variant from the recommendations\n"
    "                    and feedback topics\n"
    "  version           print the version\n"
    "\n"
    "Run 'recstream <command> --help' for the options of a command.\n"
    "Exit status: 0 success, 1 runtime failure, 2 bad usage or bad config.\n";

/* ------------------------------------------------ config-taking commands */

typedef struct cfgcmd {
  const char *cmd;
  const char *path;
  const char **sets;
  size_t n_sets;
  int exit_at_end;
  const char *restore_from; /* run --restore-from DIR */
  int reset_state;          /* run --reset-state */
  char *state_dir_set;      /* run --state-dir DIR, as "state.dir=DIR" */
  int markdown;
  int cli_log_level, cli_log_format; /* given: they win over log: */
  rs_config_t *cfg;
  rs_registry_t *reg;
  rs_graph_t *graph;
} cfgcmd_t;

static const char set_help[] =
    "  --set SECTION.KEY=VALUE  override a config value (repeatable), e.g.\n"
    "                           --set kafka.brokers=localhost:9092\n"
    "                           --set state.commit_interval=5s\n"
    "                           --set operators.parse.format=json\n"
    "                           --set kafka.properties.security.protocol=SSL\n"
    "  --log-level SPEC         error, warn, info (default) or debug, and\n"
    "                           per component: warn,http=debug,parse=info\n"
    "  --log-format FORMAT      text (default) or json (one object a line)\n"
    "  -h, --help               this help\n";

/* Parses CONFIG and the shared flags; prints help when asked (returns -1). */
static int parse_cfgcmd(cfgcmd_t *c, int argc, char **argv, const char *help,
                        int allow_run_flags) {
  static const struct option opts[] = {
      {"set", required_argument, NULL, 's'},
      {"log-level", required_argument, NULL, 'l'},
      {"log-format", required_argument, NULL, 'f'},
      {"exit-at-end", no_argument, NULL, 'e'},
      {"restore-from", required_argument, NULL, 'r'},
      {"reset-state", no_argument, NULL, 'R'},
      {"state-dir", required_argument, NULL, 'd'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  c->sets = calloc((size_t)argc, sizeof(char *));
  if (!c->sets)
    return EXIT_RUNTIME;
  int ch;
  optind = 0;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (ch) {
    case 's':
      c->sets[c->n_sets++] = optarg;
      break;
    case 'l': {
      char lerr[256];
      if (rs_log_configure(optarg, lerr, sizeof lerr))
        return rs_usage_error(c->cmd, "--log-level: %s", lerr);
      c->cli_log_level = 1;
      break;
    }
    case 'f': {
      int json;
      if (rs_log_parse_format(optarg, &json))
        return rs_usage_error(
            c->cmd, "--log-format: expected text or json, got '%s'", optarg);
      rs_log_set_format(json);
      c->cli_log_format = 1;
      break;
    }
    case 'e':
      if (!allow_run_flags)
        return rs_usage_error(c->cmd, "unknown option '--exit-at-end'");
      c->exit_at_end = 1;
      break;
    case 'r':
      if (!allow_run_flags)
        return rs_usage_error(c->cmd, "unknown option '--restore-from'");
      c->restore_from = optarg;
      break;
    case 'R':
      if (!allow_run_flags)
        return rs_usage_error(c->cmd, "unknown option '--reset-state'");
      c->reset_state = 1;
      break;
    case 'd': {
      if (!allow_run_flags)
        return rs_usage_error(c->cmd, "unknown option '--state-dir'");
      if (!*optarg)
        return rs_usage_error(c->cmd, "--state-dir: empty directory name");
      size_t n = strlen(optarg) + sizeof "state.dir=";
      free(c->state_dir_set);
      c->state_dir_set = malloc(n);
      if (!c->state_dir_set)
        return EXIT_RUNTIME;
      snprintf(c->state_dir_set, n, "state.dir=%s", optarg);
      break;
    }
    case 'h':
      fputs(help, stdout);
      return -1;
    default:
      return rs_option_error(c->cmd, ch, argv[optind - 1]);
    }
  }
  if (optind >= argc)
    return rs_usage_error(c->cmd, "missing CONFIG (the pipeline YAML file)");
  if (optind + 1 < argc)
    return rs_usage_error(c->cmd, "unexpected argument '%s' after CONFIG",
                          argv[optind + 1]);
  c->path = argv[optind];
  /* After every --set: --state-dir wins over a --set state.dir. */
  if (c->state_dir_set)
    c->sets[c->n_sets++] = c->state_dir_set;
  return 0;
}

/* Loads config, plugins and graph. Exit status on failure. */
static int load_all(cfgcmd_t *c) {
  char err[2048] = "";
  int rc =
      rs_config_load(c->path, c->sets, c->n_sets, &c->cfg, err, sizeof err);
  /* log: applies where the command line said nothing (checked at load). */
  int json;
  if (!rc && c->cfg->log.level && !c->cli_log_level)
    rs_log_configure(c->cfg->log.level, err, sizeof err);
  if (!rc && c->cfg->log.format && !c->cli_log_format &&
      !rs_log_parse_format(c->cfg->log.format, &json))
    rs_log_set_format(json);
  if (!rc)
    rc = rs_registry_new(&c->reg, err, sizeof err);
  for (size_t i = 0; !rc && i < c->cfg->n_plugins; i++)
    rc = rs_registry_load_plugin(c->reg, c->cfg->plugins[i], err, sizeof err);
  if (!rc)
    rc = rs_graph_build(c->cfg, c->reg, &c->graph, err, sizeof err);
  if (rc) {
    fprintf(stderr, "recstream %s: %s\n", c->cmd,
            err[0] ? err : rs_strerror(rc));
    return rc == RS_ENOMEM ? EXIT_RUNTIME : EXIT_USAGE;
  }
  return 0;
}

static void free_cfgcmd(cfgcmd_t *c) {
  rs_graph_destroy(c->graph);
  rs_registry_destroy(c->reg);
  rs_config_destroy(c->cfg);
  free(c->sets);
  free(c->state_dir_set);
}

static const char validate_help[] =
    "Usage: recstream validate CONFIG [--set SECTION.KEY=VALUE ...]\n"
    "\n"
    "Checks CONFIG without connecting to anything: YAML syntax, every\n"
    "section and key, typed values and bounds, operator types and options,\n"
    "plugins, and the graph (unknown inputs, cycles, paths to sinks).\n"
    "Prints a one-line summary and exits 0, or the first error with its\n"
    "file:line:column and exits 2.\n"
    "\n"
    "Options:\n";

/* Parses the shared flags and CONFIG, then loads config, plugins and
 * graph. Returns 0 to go on, -1 after printing help, or an exit status. */
static int open_cfgcmd(cfgcmd_t *c, int argc, char **argv, const char *usage,
                       int allow_run_flags) {
  char help[4096];
  snprintf(help, sizeof help, "%s%s", usage, set_help);
  int rc = parse_cfgcmd(c, argc, argv, help, allow_run_flags);
  return rc ? rc : load_all(c);
}

static int cmd_validate(int argc, char **argv) {
  cfgcmd_t c = {.cmd = "validate"};
  int rc = open_cfgcmd(&c, argc, argv, validate_help, 0);
  if (!rc) {
    printf("%s: ok (app '%s': %zu sources, %zu operators, %zu sinks)\n", c.path,
           c.cfg->app, c.cfg->n_sources, c.cfg->n_operators, c.cfg->n_sinks);
    rs_buf_t b = {0};
    if (c.graph->exp && !rs_experiments_describe(c.graph->exp, c.graph, &b))
      fwrite(b.data, 1, b.len, stdout); /* the variants and their shares */
    rs_buf_free(&b);
  }
  free_cfgcmd(&c);
  return rc < 0 ? EXIT_OK : rc;
}

static const char graph_help[] =
    "Usage: recstream graph CONFIG [--set SECTION.KEY=VALUE ...]\n"
    "\n"
    "Prints the operator graph of CONFIG as Graphviz DOT on stdout, e.g.\n"
    "  recstream graph configs/demo.yaml | dot -Tsvg > graph.svg\n"
    "\n"
    "Options:\n";

static int cmd_graph(int argc, char **argv) {
  cfgcmd_t c = {.cmd = "graph"};
  int rc = open_cfgcmd(&c, argc, argv, graph_help, 0);
  if (!rc) {
    rs_buf_t b = {0};
    rs_graph_to_dot(c.graph, &b);
    fputs(b.data ? b.data : "", stdout);
    rs_buf_free(&b);
  }
  free_cfgcmd(&c);
  return rc < 0 ? EXIT_OK : rc;
}

static const char run_help[] =
    "Usage: recstream run CONFIG [--set SECTION.KEY=VALUE ...] "
    "[--exit-at-end]\n"
    "\n"
    "Runs the pipeline in CONFIG until SIGINT or SIGTERM, then stops\n"
    "cleanly: stops fetching, drains in-flight records, waits for every\n"
    "output to be acknowledged, commits the input offsets and exits 0.\n"
    "A second signal stops at once and exits 1 if outputs were still\n"
    "unacknowledged (their inputs are not committed).\n"
    "With kafka.brokers 'embedded', an in-process broker is started and its\n"
    "address is logged. Input offsets are committed to the consumer group\n"
    "(kafka.group_id) only after every output derived from them has been\n"
    "acknowledged by the broker (at-least-once).\n"
    "\n"
    "Options:\n"
    "  --exit-at-end            stop cleanly once every assigned partition\n"
    "                           has reached its end (batch-like runs, demos)\n"
    "  --reset-state            delete the state database in state.dir first\n"
    "                           and start with empty state; only ever deletes\n"
    "                           a recstream state directory, never while\n"
    "                           another process has it open\n"
    "  --restore-from DIR       start from the savepoint in DIR (written by\n"
    "                           `recstream state checkpoint`): it is copied\n"
    "                           into state.dir, which must hold no state;\n"
    "                           with --reset-state too, the old state is\n"
    "                           deleted first. Partitions then resume at the\n"
    "                           savepoint's offsets.\n"
    "  --state-dir DIR          use DIR as state.dir (e.g. the one `recstream\n"
    "                           replay` built: each partition continues at\n"
    "                           the offset stored with the state)\n"
    "See docs/STATE.md for savepoints and recovering a missing, locked or\n"
    "corrupt state directory.\n";

static int cmd_run(int argc, char **argv) {
  cfgcmd_t c = {.cmd = "run"};
  int rc = open_cfgcmd(&c, argc, argv, run_help, 1);
  if (rc) {
    free_cfgcmd(&c);
    return rc < 0 ? EXIT_OK : rc;
  }
  char err[2048] = "";
  rs_engine_t *e = NULL;
  rs_engine_opts_t opts = {.exit_at_end = c.exit_at_end, .handle_signals = 1};
  /* Reset, then restore: both before the engine opens the store. */
  int erc = 0;
  if (c.restore_from && c.reset_state) {
    /* Check the savepoint before deleting anything. */
    rs_store_t *sp = NULL;
    char e2[1536] = "";
    erc = rs_store_open_readonly(c.restore_from, &sp, e2, sizeof e2);
    rs_store_destroy(sp);
    if (erc == RS_ENOENT)
      snprintf(err, sizeof err,
               "cannot restore from savepoint %s: no such directory",
               c.restore_from);
    else if (erc)
      snprintf(err, sizeof err,
               "cannot restore from savepoint %s: it is not a readable state "
               "database (%s)",
               c.restore_from, e2);
  }
  if (!erc && c.reset_state) {
    erc = rs_store_destroy_dir(c.cfg->state.dir, err, sizeof err);
    if (!erc)
      fprintf(stderr, "recstream run: --reset-state: state in %s deleted\n",
              c.cfg->state.dir);
  }
  if (!erc && c.restore_from) {
    erc =
        rs_store_restore_dir(c.restore_from, c.cfg->state.dir, err, sizeof err);
    if (!erc)
      fprintf(stderr, "recstream run: --restore-from: %s restored into %s\n",
              c.restore_from, c.cfg->state.dir);
  }
  if (erc) {
    fprintf(stderr, "recstream run: %s\n", err[0] ? err : rs_strerror(erc));
    free_cfgcmd(&c);
    return EXIT_RUNTIME;
  }
  opts.state_reset = c.reset_state || c.restore_from;
  erc = rs_engine_new(c.cfg, c.graph, &opts, &e, err, sizeof err);
  if (erc) {
    fprintf(stderr, "recstream run: %s\n", err[0] ? err : rs_strerror(erc));
    free_cfgcmd(&c);
    return erc == RS_ECONFIG ? EXIT_USAGE : EXIT_RUNTIME;
  }
  uint64_t t0 = rs_now_ns();
  erc = rs_engine_run(e, err, sizeof err);
  double secs = (double)(rs_now_ns() - t0) / 1e9;
  rs_engine_stats_t st;
  rs_engine_get_stats(e, &st);
  printf("recstream run: %s after %.1f s\n", erc ? "failed" : "stopped", secs);
  printf("  records in:         %llu (%.0f records/s)\n",
         (unsigned long long)st.records_in,
         secs > 0 ? (double)st.records_in / secs : 0.0);
  printf("  records out:        %llu\n", (unsigned long long)st.records_out);
  printf("  dead-lettered:      %llu\n", (unsigned long long)st.dead_lettered);
  printf("  delivery failures:  %llu\n",
         (unsigned long long)st.delivery_failures);
  printf("  backpressure:       %llu episodes (%llu long enough to pause the "
         "partitions), %.2f s in all\n",
         (unsigned long long)st.pauses, (unsigned long long)st.partition_pauses,
         (double)st.paused_ns / 1e9);
  printf("  offset commits:     %llu\n", (unsigned long long)st.commits);
  printf("  checkpoints:        %llu (%.1f ms writing, %.1f ms from request "
         "to end; loop held %.1f ms, at most %.1f ms at once)\n",
         (unsigned long long)st.checkpoints, (double)st.checkpoint_ns / 1e6,
         (double)st.checkpoint_wait_ns / 1e6,
         (double)st.checkpoint_hold_ns / 1e6,
         (double)st.checkpoint_hold_max_ns / 1e6);
  if (c.cfg->state.guarantee == RS_GUARANTEE_EXACTLY_ONCE)
    printf("  exactly_once:       %llu outputs read at start, %llu "
           "regenerated outputs suppressed\n",
           (unsigned long long)st.scanned_outputs,
           (unsigned long long)st.suppressed);
  if (c.cfg->processing.order == RS_ORDER_DETERMINISTIC)
    printf("  ordering give-ups:  %llu (processing.max_idle ran out)\n",
           (unsigned long long)st.ordering_giveups);
  if (st.input_gaps)
    printf("  input gaps:         %llu offsets skipped over (see the log)\n",
           (unsigned long long)st.input_gaps);
  if (st.refetched)
    printf("  skipped refetches:  %llu (records the client delivered again "
           "after a pause)\n",
           (unsigned long long)st.refetched);
  fflush(stdout);
  if (erc)
    fprintf(stderr, "recstream run: %s\n", err[0] ? err : rs_strerror(erc));
  rs_engine_destroy(e);
  free_cfgcmd(&c);
  return erc ? EXIT_RUNTIME : EXIT_OK;
}

static const char operators_help[] =
    "Usage: recstream operators [NAME] [--markdown] [--plugin PATH ...]\n"
    "\n"
    "Describes every operator (or only NAME): inputs, output ports and each\n"
    "option with its type, default, bounds and description. The text comes\n"
    "from the operators' option tables, as does docs/OPERATORS.md\n"
    "(regenerate it with 'cmake --build build --target docs').\n"
    "\n"
    "Options:\n"
    "  --markdown     print Markdown (as in docs/OPERATORS.md)\n"
    "  --plugin PATH  also load the operator plugin at PATH (repeatable)\n"
    "  -h, --help     this help\n";

static int cmd_operators(int argc, char **argv) {
  static const struct option opts[] = {{"markdown", no_argument, NULL, 'm'},
                                       {"plugin", required_argument, NULL, 'p'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int markdown = 0, ch;
  char err[1024] = "";
  rs_registry_t *reg = NULL;
  if (rs_registry_new(&reg, err, sizeof err)) {
    fprintf(stderr, "recstream operators: %s\n", err);
    return EXIT_RUNTIME;
  }
  int rc = EXIT_OK;
  optind = 0;
  opterr = 0;
  while (!rc && (ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (ch) {
    case 'm':
      markdown = 1;
      break;
    case 'p':
      if (rs_registry_load_plugin(reg, optarg, err, sizeof err)) {
        fprintf(stderr, "recstream operators: %s\n", err);
        rc = EXIT_USAGE;
      }
      break;
    case 'h':
      fputs(operators_help, stdout);
      rs_registry_destroy(reg);
      return EXIT_OK;
    default:
      rc = rs_option_error("operators", ch, argv[optind - 1]);
    }
  }
  const char *name = !rc && optind < argc ? argv[optind] : NULL;
  if (!rc && name && optind + 1 < argc)
    rc = rs_usage_error("operators", "unexpected argument '%s'",
                        argv[optind + 1]);
  if (!rc && name && !rs_registry_find(reg, name)) {
    fprintf(stderr, "recstream operators: no operator named '%s'\n", name);
    rc = EXIT_USAGE;
  }
  if (!rc) {
    rs_buf_t b = {0};
    if (markdown && !name)
      rs_buf_printf(&b, "# Operator reference\n\n"
                        "Generated by `recstream operators --markdown` from "
                        "the operators' option tables; do not edit by hand.\n"
                        "Every operator also takes `name`, `type`, `input` "
                        "(or `inputs`) and `dead_letter_topic` (default "
                        "`<source topic>.dlq`).\n"
                        "Durations: `250ms`, `30s`, `5m`, `2h`, `1d`. Sizes: "
                        "`512`, `64KiB`, `1MiB`, `1GiB`.\n\n");
    for (size_t i = 0; i < rs_registry_count(reg); i++) {
      const rs_operator_def_t *d = rs_registry_at(reg, i);
      if (!name || !strcmp(d->name, name))
        rs_options_describe(d, markdown, &b);
    }
    fputs(b.data ? b.data : "", stdout);
    rs_buf_free(&b);
  }
  rs_registry_destroy(reg);
  return rc;
}

static const char broker_help[] =
    "Usage: recstream broker [--partitions N] [--topics a,b,...] "
    "[--brokers N]\n"
    "\n"
    "Runs an embedded Kafka broker (librdkafka's mock cluster, speaking the\n"
    "Kafka protocol on loopback) for several processes and tools such as\n"
    "kcat. Prints its bootstrap servers as the first line of stdout, then\n"
    "serves until SIGTERM or SIGINT. It keeps about 5 MB or 100k messages\n"
    "per partition, dropping the oldest.\n"
    "\n"
    "Options:\n"
    "  --partitions N   partitions of each topic created (default 4, 1..1024)\n"
    "  --topics LIST    comma-separated topics to create up front; others are\n"
    "                   created on first use\n"
    "  --brokers N      number of brokers in the cluster (default 1, 1..16)\n"
    "  -h, --help       this help\n";

static int parse_int_arg(const char *cmd, const char *flag, const char *s,
                         long min, long max, long *out) {
  int64_t v;
  if (rs_parse_int64(s, &v) || v < min || v > max)
    return rs_usage_error(cmd,
                          "%s: expected an integer in [%ld, %ld], got '%s'",
                          flag, min, max, s);
  *out = (long)v;
  return 0;
}

static int cmd_broker(int argc, char **argv) {
  static const struct option opts[] = {
      {"partitions", required_argument, NULL, 'p'},
      {"topics", required_argument, NULL, 't'},
      {"brokers", required_argument, NULL, 'b'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  long partitions = 4, brokers = 1;
  const char *topics = NULL;
  int ch, rc;
  optind = 0;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (ch) {
    case 'p':
      if ((rc = parse_int_arg("broker", "--partitions", optarg, 1, 1024,
                              &partitions)))
        return rc;
      break;
    case 'b':
      if ((rc = parse_int_arg("broker", "--brokers", optarg, 1, 16, &brokers)))
        return rc;
      break;
    case 't':
      topics = optarg;
      break;
    case 'h':
      fputs(broker_help, stdout);
      return EXIT_OK;
    default:
      return rs_option_error("broker", ch, argv[optind - 1]);
    }
  }
  if (optind < argc)
    return rs_usage_error("broker", "unexpected argument '%s'", argv[optind]);
  if (topics) {
    /* Each a Kafka topic name (rs_topic_name_ok, as the config's). */
    const char *t = topics;
    for (;;) {
      size_t n = strcspn(t, ",");
      if (n == 0)
        return rs_usage_error("broker", "--topics: an empty topic name in '%s'",
                              topics);
      char name[256] = "";
      if (n < sizeof name) {
        memcpy(name, t, n);
        name[n] = '\0';
      }
      if (!rs_topic_name_ok(name)) /* "" when too long */
        return rs_usage_error("broker",
                              "--topics: '%.*s' is not a valid topic name "
                              "(1 to 249 letters, digits, '.', '_' or '-'; "
                              "not '.' or '..')",
                              (int)(n > 300 ? 300 : n), t);
      if (!t[n])
        break;
      t += n + 1;
    }
  }
  /* Block the signals before librdkafka starts threads so that only this
   * thread receives them. */
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, &old);
  char err[1024];
  rs_mock_t *m = NULL;
  if (rs_mock_start((int)brokers, &m, err, sizeof err)) {
    fprintf(stderr, "recstream broker: %s\n", err);
    return EXIT_RUNTIME;
  }
  if (topics) {
    char *list = rs_strdup(topics), *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
      if (rs_mock_create_topic(m, t, (int)partitions, err, sizeof err)) {
        fprintf(stderr, "recstream broker: %s\n", err);
        rs_free(list);
        rs_mock_destroy(m);
        return EXIT_RUNTIME;
      }
    }
    rs_free(list);
  }
  printf("%s\n", m->bootstraps);
  fflush(stdout);
  fprintf(stderr,
          "recstream broker: serving on %s (%ld broker%s, %ld partitions per "
          "topic); SIGTERM or Ctrl-C stops it\n",
          m->bootstraps, brokers, brokers == 1 ? "" : "s", partitions);
  int sig = 0;
  sigwait(&set, &sig);
  fprintf(stderr, "recstream broker: %s received, stopping\n",
          sig == SIGINT ? "SIGINT" : "SIGTERM");
  rs_mock_destroy(m);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return EXIT_OK;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(main_usage, stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
    if (argc > 2 && !strcmp(cmd, "help")) {
      /* recstream help COMMAND: that command's --help. */
      char help[] = "--help";
      char *hargv[] = {argv[0], argv[2], help, NULL};
      return main(3, hargv);
    }
    fputs(main_usage, stdout);
    return EXIT_OK;
  }
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
    if (argc > 2 && (!strcmp(argv[2], "-h") || !strcmp(argv[2], "--help"))) {
      fputs("Usage: recstream version\n\nPrints recstream's version, the "
            "operator ABI version it offers plugins,\nand the librdkafka "
            "version it runs on. Takes no options.\n",
            stdout);
      return EXIT_OK;
    }
    if (argc > 2) {
      fprintf(stderr, "recstream: version takes no arguments (got '%s')\n",
              argv[2]);
      return EXIT_USAGE;
    }
    printf("recstream %s (operator ABI %u.%u, librdkafka %s)\n",
           RS_VERSION_STRING, RS_ABI_MAJOR, RS_ABI_MINOR,
           rd_kafka_version_str());
    return EXIT_OK;
  }
  static const struct {
    const char *name;
    int (*fn)(int, char **);
  } cmds[] = {{"run", cmd_run},
              {"validate", cmd_validate},
              {"graph", cmd_graph},
              {"operators", cmd_operators},
              {"broker", cmd_broker},
              {"generate", rs_cmd_generate},
              {"state", rs_cmd_state},
              {"replay", rs_cmd_replay},
              {"eval", rs_cmd_eval},
              {"report", rs_cmd_report},
              {"simulate", rs_cmd_simulate}};
  for (size_t i = 0; i < RS_ARRAY_SIZE(cmds); i++)
    if (!strcmp(cmd, cmds[i].name))
      return cmds[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "recstream: unknown command '%s'\n\n%s", cmd, main_usage);
  return EXIT_USAGE;
}
