/* `recstream state inspect|checkpoint|purge` (see state_cmd.h and
 * docs/STATE.md). The commands read only the config (state.dir and the
 * operator names), never plugins or the graph, so they work on the state
 * of a pipeline whose plugins are not installed here.
 */
#include "state_cmd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "recstream/operator.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

/* The stored encodings (state/README.md): little-endian int64 counters and
 * float32 vectors. */
static int64_t le_i64(const unsigned char *s) {
  uint64_t u = 0;
  for (int i = 0; i < 8; i++)
    u |= (uint64_t)s[i] << (8 * i);
  return (int64_t)u;
}

static float le_f32(const unsigned char *s) {
  uint32_t u = (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 |
               (uint32_t)s[3] << 24;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static char *path_in(const char *dir, const char *name);

/* ------------------------------------------------------------ rendering */

/* Valid UTF-8 without control characters (tab, newline and carriage
 * return allowed when allow_ws). */
static int is_text(const unsigned char *s, size_t n, int allow_ws) {
  for (size_t i = 0; i < n;) {
    unsigned c = s[i];
    if (c < 0x80) {
      if ((c < 0x20 || c == 0x7f) &&
          !(allow_ws && (c == '\t' || c == '\n' || c == '\r')))
        return 0;
      i++;
      continue;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
      len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0)
        lo = 0xa0;
      else if (c == 0xed)
        hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0)
        lo = 0x90;
      else if (c == 0xf4)
        hi = 0x8f;
    } else
      return 0;
    if (i + len > n || s[i + 1] < lo || s[i + 1] > hi)
      return 0;
    for (size_t j = 2; j < len; j++)
      if (s[i + j] < 0x80 || s[i + j] > 0xbf)
        return 0;
    if (c == 0xc2 && s[i + 1] < 0xa0) /* C1 controls */
      return 0;
    i += len;
  }
  return 1;
}

static void put_quoted(rs_buf_t *b, const unsigned char *s, size_t n) {
  rs_buf_append(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    switch (s[i]) {
    case '"':
      rs_buf_append(b, "\\\"", 2);
      break;
    case '\\':
      rs_buf_append(b, "\\\\", 2);
      break;
    case '\t':
      rs_buf_append(b, "\\t", 2);
      break;
    case '\n':
      rs_buf_append(b, "\\n", 2);
      break;
    case '\r':
      rs_buf_append(b, "\\r", 2);
      break;
    default:
      rs_buf_append(b, &s[i], 1);
    }
  }
  rs_buf_append(b, "\"", 1);
}

static void put_hex(rs_buf_t *b, const unsigned char *s, size_t n) {
  static const char digits[] = "0123456789abcdef";
  rs_buf_append(b, "0x", 2);
  for (size_t i = 0; i < n; i++) {
    char h[2] = {digits[s[i] >> 4], digits[s[i] & 15]};
    rs_buf_append(b, h, 2);
  }
}

/* The shortest %g form that reads back as the same float. */
static void put_float(rs_buf_t *b, float f) {
  char s[32];
  for (int prec = 1; prec <= 9; prec++) {
    snprintf(s, sizeof s, "%.*g", prec, (double)f);
    float back = strtof(s, NULL);
    if (memcmp(&back, &f, sizeof f) == 0)
      break;
  }
  rs_buf_append(b, s, strlen(s));
}

void rs_state_render_value(rs_buf_t *out, const void *v, size_t n) {
  const unsigned char *s = v;
  if (n == 8) {
    int64_t x = le_i64(s);
    rs_buf_printf(out, "%" PRId64 " (counter", x);
    /* Other readings of 8 bytes: text, or a 2-float vector when the
     * number is too large to be a plausible count. */
    const int64_t big = (int64_t)1 << 53;
    float f0 = le_f32(s), f1 = le_f32(s + 4);
    if (is_text(s, n, 0)) {
      rs_buf_printf(out, "; as text ");
      put_quoted(out, s, n);
    } else if ((x > big || x < -big) && isfinite(f0) && isfinite(f1)) {
      rs_buf_printf(out, "; as floats [");
      put_float(out, f0);
      rs_buf_append(out, ", ", 2);
      put_float(out, f1);
      rs_buf_append(out, "]", 1);
    }
    rs_buf_append(out, ")", 1);
    return;
  }
  if (is_text(s, n, 1)) {
    put_quoted(out, s, n);
    return;
  }
  if (n % 4 == 0) {
    size_t dim = n / 4;
    int finite = 1;
    for (size_t i = 0; finite && i < dim; i++)
      finite = isfinite(le_f32(s + 4 * i));
    if (finite) {
      rs_buf_append(out, "[", 1);
      for (size_t i = 0; i < dim; i++) {
        if (i)
          rs_buf_append(out, ", ", 2);
        put_float(out, le_f32(s + 4 * i));
      }
      rs_buf_append(out, "]", 1);
      return;
    }
  }
  put_hex(out, s, n);
}

void rs_state_render_key(rs_buf_t *out, const void *k, size_t n) {
  const unsigned char *s = k;
  if (!is_text(s, n, 0)) {
    put_hex(out, s, n);
    return;
  }
  int bare = n > 0 && !(n >= 2 && s[0] == '0' && s[1] == 'x');
  for (size_t i = 0; bare && i < n; i++)
    if (s[i] == ' ' || s[i] == '"' || s[i] == '=' || s[i] == '\\')
      bare = 0;
  if (bare)
    rs_buf_append(out, s, n);
  else
    put_quoted(out, s, n);
}

/* ------------------------------------------------------------ arguments */

typedef struct sargs {
  const char *sub;
  char cmd[32]; /* "state inspect", for messages */
  const char **sets;
  size_t n_sets;
  const char *config;
  const char *dir; /* checkpoint: the savepoint directory */
  const char *op;
  const char *key;
  const char *topic;
  int has_partition;
  int32_t partition;
  int64_t limit; /* -1: no limit */
  int64_t timeout_ms;
  rs_config_t *cfg;
} sargs_t;

static int fail(const sargs_t *a, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(const sargs_t *a, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "recstream %s: ", a->cmd);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return status;
}

static const char common_help[] =
    "  --set SECTION.KEY=VALUE  override a config value (repeatable), e.g.\n"
    "                           --set state.dir=/var/lib/recstream/demo\n"
    "  --log-level LEVEL        error, warn, info (default) or debug\n"
    "  -h, --help               this help\n";

static const char state_help[] =
    "Usage: recstream state <command> CONFIG [options]\n"
    "\n"
    "Reads and manages the keyed state of the pipeline instance CONFIG\n"
    "describes: the RocksDB database in its state.dir (a relative state.dir\n"
    "is taken from the current directory, as `recstream run` does).\n"
    "\n"
    "Commands:\n"
    "  inspect CONFIG          print the stored input offsets and operator\n"
    "                          state (read-only; works while it runs)\n"
    "  checkpoint CONFIG DIR   write a consistent savepoint into DIR (also\n"
    "                          of a running instance); restore it with\n"
    "                          `recstream run CONFIG --restore-from DIR`\n"
    "  purge CONFIG --partition P\n"
    "                          delete one partition's state and stored\n"
    "                          offsets (the instance must be stopped)\n"
    "\n"
    "Run 'recstream state <command> --help' for its options; docs/STATE.md\n"
    "has the details. Exit status: 0 success, 1 runtime failure (missing,\n"
    "locked or corrupt state), 2 bad usage or bad config.\n";

static const char inspect_help[] =
    "Usage: recstream state inspect CONFIG [--operator NAME] [--key K]\n"
    "                               [--partition P] [--limit N]\n"
    "\n"
    "Opens the state database read-only (no lock is taken, so this works\n"
    "while the instance runs: it shows the last checkpoint) and prints\n"
    "  - the stored input offsets, one line each:\n"
    "      TOPIC [PARTITION] next_offset=N [extra[0]=N ...]\n"
    "  - then every entry of each operator, in stored order:\n"
    "      OPERATOR [PARTITION] KEY = VALUE\n"
    "    where PARTITION is the input partition owning the entry, or\n"
    "    'shared' for state shared by all partitions.\n"
    "Lines starting with '#' are headings and notes.\n"
    "\n"
    "Keys: printed bare when they are text without spaces, quotes, '=' or\n"
    "a leading 0x; quoted (\"...\" with \\\" \\\\ \\t \\n \\r escapes) when\n"
    "they are other text; otherwise as hex with a 0x prefix.\n"
    "Values, by the first rule that applies:\n"
    "  1. exactly 8 bytes: a counter, the little-endian int64, e.g.\n"
    "     '42 (counter)'; when the 8 bytes are also text, that too:\n"
    "     '... (counter; as text \"abcdefgh\")', or when the number is\n"
    "     beyond +-2^53 and both float32 halves are finite, the 2-float\n"
    "     vector: '... (counter; as floats [0.1, 2])'\n"
    "  2. UTF-8 text without control characters (tab, newline and CR\n"
    "     allowed), the empty value included: a quoted string\n"
    "  3. a length that is a multiple of 4 whose little-endian float32\n"
    "     values are all finite: a vector, e.g. [0.1, -2.5, 3]\n"
    "  4. anything else: hex, e.g. 0x00ff10\n"
    "\n"
    "Options:\n"
    "  --operator NAME  only this operator's entries (no offsets); for an\n"
    "                   operator an experiment splits, every variant's\n"
    "                   (NAME#VARIANT; give that to see one)\n"
    "  --key K          only entries whose operator key is exactly K (no\n"
    "                   offsets); K as inspect prints keys: text, \"text\"\n"
    "                   with \\\" \\\\ \\t \\n \\r escapes, or 0x followed by\n"
    "                   pairs of hex digits for a binary key\n"
    "  --partition P    only partition P (a number, or 'shared')\n"
    "  --limit N        at most N entries per operator\n";

static const char checkpoint_help[] =
    "Usage: recstream state checkpoint CONFIG DIR [--timeout DURATION]\n"
    "\n"
    "Writes a consistent savepoint of the state into DIR, which must not\n"
    "exist yet (its parent must). The savepoint is a RocksDB checkpoint:\n"
    "operator state and the input offsets it corresponds to, together;\n"
    "table files are hard-linked when DIR is on the same file system.\n"
    "\n"
    "If the instance is stopped, the database is opened and the savepoint\n"
    "written directly. If it is running (it holds the database lock and\n"
    "its pid is in <state.dir>/" RS_STATE_PID_FILE "), the request is\n"
    "passed to it (file <state.dir>/" RS_STATE_SAVEPOINT_REQUEST " and\n"
    "SIGUSR1); the engine writes the savepoint right after its next\n"
    "checkpoint and answers in <state.dir>/" RS_STATE_SAVEPOINT_RESULT ".\n"
    "\n"
    "Restore a savepoint with `recstream run CONFIG --restore-from DIR`.\n"
    "\n"
    "Options:\n"
    "  --timeout DURATION  how long to wait for a running instance to\n"
    "                      answer (default 60s; e.g. 500ms, 2m)\n";

static const char purge_help[] =
    "Usage: recstream state purge CONFIG --partition P [--topic T]\n"
    "                             [--operator NAME]\n"
    "\n"
    "Deletes the state of input partition P in every operator (or only\n"
    "NAME), and the stored offsets of partition P of every source topic (or\n"
    "only of topic T). Operator state is keyed by partition number, so it\n"
    "is dropped whatever --topic says. The instance must be stopped: a\n"
    "running one holds the database lock and is refused.\n"
    "\n"
    "With its stored offsets gone, the next time partition P is assigned\n"
    "the engine starts it from the consumer group's committed offset (or\n"
    "kafka.auto_offset_reset if the group has none), with empty state.\n"
    "Shared state (partition 'shared') belongs to no partition and is not\n"
    "purged.\n"
    "\n"
    "Options:\n"
    "  --partition P    the input partition (required, 0 or more)\n"
    "  --topic T        delete only topic T's stored offset of partition P\n"
    "  --operator NAME  drop only this operator's state of partition P\n"
    "                   (every variant's, NAME#VARIANT, for an operator\n"
    "                   an experiment splits)\n";

enum {
  OPT_SET = 's',
  OPT_LOG = 'l',
  OPT_HELP = 'h',
  OPT_OPERATOR = 'o',
  OPT_KEY = 'k',
  OPT_PARTITION = 'p',
  OPT_LIMIT = 'n',
  OPT_TIMEOUT = 't',
  OPT_TOPIC = 'T'
};

typedef struct sub {
  const char *name;
  const char *help;
  const char *allowed; /* option letters beyond the common ones */
  int n_pos;           /* positional arguments: CONFIG [DIR] */
  int (*run)(sargs_t *a);
} sub_t;

static int parse_partition(sargs_t *a, const char *s) {
  int64_t v;
  if (!strcmp(s, "shared")) {
    a->partition = RS_PARTITION_SHARED;
  } else if (rs_parse_int64(s, &v) || v < 0 || v > INT32_MAX) {
    return rs_usage_error(
        a->cmd,
        "--partition: expected a partition number (0 or more) "
        "or 'shared', got '%s'",
        s);
  } else {
    a->partition = (int32_t)v;
  }
  a->has_partition = 1;
  return 0;
}

static const char *decode_key(const char *k, rs_buf_t *out);

/* Parses argv (argv[0] is the sub-command). -1 after printing help, 0 to
 * go on, or an exit status. */
static int parse_args(const sub_t *sub, sargs_t *a, int argc, char **argv) {
  static const struct option all[] = {
      {"set", required_argument, NULL, OPT_SET},
      {"log-level", required_argument, NULL, OPT_LOG},
      {"help", no_argument, NULL, OPT_HELP},
      {"operator", required_argument, NULL, OPT_OPERATOR},
      {"key", required_argument, NULL, OPT_KEY},
      {"partition", required_argument, NULL, OPT_PARTITION},
      {"limit", required_argument, NULL, OPT_LIMIT},
      {"timeout", required_argument, NULL, OPT_TIMEOUT},
      {"topic", required_argument, NULL, OPT_TOPIC},
      {NULL, 0, NULL, 0}};
  struct option opts[RS_ARRAY_SIZE(all)];
  size_t n = 0;
  for (size_t i = 0; all[i].name; i++)
    if (i < 3 || strchr(sub->allowed, all[i].val))
      opts[n++] = all[i];
  memset(&opts[n], 0, sizeof opts[n]);

  a->sets = calloc((size_t)argc + 1, sizeof(char *));
  if (!a->sets)
    return fail(a, EXIT_RUNTIME, "out of memory");
  a->limit = -1;
  a->timeout_ms = RS_STATE_SAVEPOINT_TIMEOUT_MS;
  optind = 0;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    int64_t v;
    switch (ch) {
    case OPT_SET:
      a->sets[a->n_sets++] = optarg;
      break;
    case OPT_LOG: {
      int lvl;
      if (rs_log_parse_level(optarg, &lvl))
        return rs_usage_error(a->cmd,
                              "--log-level: expected error, warn, info or "
                              "debug, got '%s'",
                              optarg);
      rs_log_set_level(lvl);
      break;
    }
    case OPT_HELP:
      fputs(sub->help, stdout);
      fputs(common_help, stdout);
      return -1;
    case OPT_OPERATOR:
      a->op = optarg;
      break;
    case OPT_KEY: {
      rs_buf_t k = {0};
      const char *why = decode_key(optarg, &k);
      rs_buf_free(&k);
      if (why)
        return rs_usage_error(a->cmd, "--key '%s': %s", optarg, why);
      a->key = optarg;
      break;
    }
    case OPT_TOPIC:
      a->topic = optarg;
      break;
    case OPT_PARTITION: {
      int rc = parse_partition(a, optarg);
      if (rc)
        return rc;
      break;
    }
    case OPT_LIMIT:
      if (rs_parse_int64(optarg, &v) || v < 0)
        return rs_usage_error(
            a->cmd,
            "--limit: expected a number of entries (0 or more), got '%s'",
            optarg);
      a->limit = v;
      break;
    case OPT_TIMEOUT:
      if (rs_parse_duration_ms(optarg, &v) || v < 1 || v > 86400000)
        return rs_usage_error(a->cmd,
                              "--timeout: expected a duration between 1ms and "
                              "1d (e.g. 500ms, 30s, 2m), got '%s'",
                              optarg);
      a->timeout_ms = v;
      break;
    default:
      return rs_option_error(a->cmd, ch, argv[optind - 1]);
    }
  }
  int left = argc - optind;
  if (left < 1)
    return rs_usage_error(a->cmd, "missing CONFIG (the pipeline YAML file)");
  if (sub->n_pos == 2 && left < 2)
    return rs_usage_error(a->cmd,
                          "missing DIR (the savepoint directory to create)");
  if (left > sub->n_pos)
    return rs_usage_error(a->cmd, "unexpected argument '%s' after %s",
                          argv[optind + sub->n_pos],
                          sub->n_pos == 2 ? "DIR" : "CONFIG");
  a->config = argv[optind];
  if (!*a->config)
    return rs_usage_error(a->cmd, "CONFIG is an empty string");
  if (sub->n_pos == 2)
    a->dir = argv[optind + 1];
  if (a->dir && !*a->dir)
    return rs_usage_error(a->cmd, "DIR is an empty string (the savepoint "
                                  "directory to create)");
  if (!strcmp(sub->name, "purge")) {
    if (!a->has_partition)
      return rs_usage_error(a->cmd,
                            "--partition is required (the input partition "
                            "whose state to delete)");
    if (a->partition == RS_PARTITION_SHARED)
      return rs_usage_error(a->cmd,
                            "--partition shared: shared state belongs to no "
                            "partition; purge deletes one partition's state");
  }
  char err[2048] = "";
  int rc =
      rs_config_load(a->config, a->sets, a->n_sets, &a->cfg, err, sizeof err);
  if (rc)
    return fail(a, rc == RS_ENOMEM ? EXIT_RUNTIME : EXIT_USAGE, "%s",
                err[0] ? err : rs_strerror(rc));
  return 0;
}

/* ------------------------------------------------------------ helpers */

static int is_reserved_cf(const char *name) {
  return !strcmp(name, "default") || !strcmp(name, RS_STORE_OFFSETS_CF);
}

/* "a, b, c" of the operator column families in s (or "none"). */
static void list_operator_cfs(const rs_store_t *s, rs_buf_t *b) {
  size_t before = b->len;
  for (int i = 0; i < rs_store_cf_count(s); i++) {
    const char *n = rs_store_cf_name(s, i);
    if (is_reserved_cf(n))
      continue;
    rs_buf_printf(b, "%s%s", b->len > before ? ", " : "", n);
  }
  if (b->len == before)
    rs_buf_printf(b, "none");
}

static int config_has_operator(const rs_config_t *cfg, const char *name) {
  for (size_t i = 0; i < cfg->n_operators; i++)
    if (!strcmp(cfg->operators[i].name, name))
      return 1;
  return 0;
}

/* Whether column family `cf` is --operator `op`'s: its own, or one of
 * its experiment variants' ("op#variant", each a column family of its
 * own; the base one of a split operator stays empty). */
static int op_owns_cf(const char *op, const char *cf) {
  size_t n = strlen(op);
  return !strncmp(cf, op, n) && (cf[n] == '\0' || cf[n] == '#');
}

/* Whether --operator NAME has a column family: 0 when it has, RS_ENOENT
 * when the config names it but it has no state yet, or an exit status
 * (after the message). */
static int find_operator(const sargs_t *a, const rs_store_t *s) {
  if (!is_reserved_cf(a->op))
    for (int i = 0; i < rs_store_cf_count(s); i++)
      if (op_owns_cf(a->op, rs_store_cf_name(s, i)))
        return 0;
  if (config_has_operator(a->cfg, a->op))
    return RS_ENOENT;
  rs_buf_t b = {0};
  list_operator_cfs(s, &b);
  rs_buf_printf(&b, "; operators in %s: ", a->config);
  for (size_t j = 0; j < a->cfg->n_operators; j++)
    rs_buf_printf(&b, "%s%s", j ? ", " : "", a->cfg->operators[j].name);
  if (!a->cfg->n_operators)
    rs_buf_printf(&b, "none");
  int rc = fail(a, EXIT_USAGE,
                "no operator named '%s' in state directory %s (operators "
                "with state: %s)",
                a->op, rs_store_dir(s), b.data);
  rs_buf_free(&b);
  return rc;
}

static void partition_str(int32_t p, char *buf, size_t n) {
  if (p == RS_PARTITION_SHARED)
    snprintf(buf, n, "shared");
  else
    snprintf(buf, n, "%" PRId32, p);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* --key, in the forms inspect prints keys: "0x" followed by pairs of hex
 * digits is binary; "..." is quoted text with the \" \\ \t \n \r
 * escapes; anything else is the text itself. NULL, or what is wrong with
 * k (a usage error; RS_ENOMEM is reported as "out of memory"). */
static const char *decode_key(const char *k, rs_buf_t *out) {
  size_t n = strlen(k);
  rs_buf_reset(out);
  if (n >= 2 && k[0] == '0' && k[1] == 'x') {
    int hex = n > 2 && n % 2 == 0;
    for (size_t i = 2; hex && i < n; i++)
      hex = hexval(k[i]) >= 0;
    if (!hex)
      return "after 0x come pairs of hex digits (a binary key); a text key "
             "that starts with 0x is written quoted, as inspect prints it: "
             "--key '\"0x...\"'";
    if (rs_buf_reserve(out, n / 2))
      return "out of memory";
    for (size_t i = 2; i < n; i += 2)
      out->data[out->len++] = (char)(hexval(k[i]) << 4 | hexval(k[i + 1]));
    return NULL;
  }
  if (k[0] != '"')
    return rs_buf_append(out, k, n) ? "out of memory" : NULL;
  for (size_t i = 1; i < n; i++) {
    char c = k[i];
    if (c == '"') {
      if (i + 1 != n)
        return "text follows the closing quote";
      return rs_buf_append(out, "", 0) ? "out of memory" : NULL;
    }
    if (c == '\\') {
      switch (i + 1 < n ? k[++i] : '\0') {
      case '"':
      case '\\':
        c = k[i];
        break;
      case 't':
        c = '\t';
        break;
      case 'n':
        c = '\n';
        break;
      case 'r':
        c = '\r';
        break;
      default:
        return "in a quoted key, \\ escapes only \" \\ t n r";
      }
    }
    if (rs_buf_append(out, &c, 1))
      return "out of memory";
  }
  return "the quoted key has no closing quote";
}

/* ------------------------------------------------------------ inspect */

typedef struct ictx {
  const char *op;
  int32_t partition; /* for rs_store_scan, which does not pass it */
  const rs_buf_t *key;
  int64_t limit;
  int64_t shown;
  int more;
  rs_buf_t line;
} ictx_t;

static void print_entry(ictx_t *c, int32_t p, const void *k, size_t kn,
                        const void *v, size_t vn) {
  char ps[16];
  partition_str(p, ps, sizeof ps);
  rs_buf_reset(&c->line);
  rs_buf_printf(&c->line, "%s [%s] ", c->op, ps);
  rs_state_render_key(&c->line, k, kn);
  rs_buf_append(&c->line, " = ", 3);
  rs_state_render_value(&c->line, v, vn);
  rs_buf_append(&c->line, "\n", 1);
  fwrite(c->line.data, 1, c->line.len, stdout);
}

static int entry_cb(void *opaque, int32_t p, const void *k, size_t kn,
                    const void *v, size_t vn) {
  ictx_t *c = opaque;
  if (c->key && (kn != c->key->len || (kn && memcmp(k, c->key->data, kn))))
    return 0;
  if (c->limit >= 0 && c->shown >= c->limit) {
    c->more = 1;
    return 1; /* stop */
  }
  c->shown++;
  print_entry(c, p, k, kn, v, vn);
  return 0;
}

static int partition_cb(void *opaque, const void *k, size_t kn, const void *v,
                        size_t vn) {
  ictx_t *c = opaque;
  return entry_cb(c, c->partition, k, kn, v, vn);
}

static int print_offsets(sargs_t *a, rs_store_t *s) {
  rs_offset_t *offs = NULL;
  size_t n = 0;
  int rc = rs_store_read_offsets(s, &offs, &n);
  if (rc)
    return fail(a, EXIT_RUNTIME, "%s",
                rc == RS_ENOMEM ? "out of memory" : rs_store_errmsg(s));
  printf("# offsets (the next input offset of each partition)\n");
  size_t shown = 0;
  for (size_t i = 0; i < n; i++) {
    if (a->has_partition && offs[i].partition != a->partition)
      continue;
    shown++;
    printf("%s [%" PRId32 "] next_offset=%" PRId64, offs[i].topic,
           offs[i].partition, offs[i].next_offset);
    for (size_t j = 0; j < offs[i].n_extra; j++)
      printf(" extra[%zu]=%" PRId64, j, offs[i].extra[j]);
    printf("\n");
  }
  if (!shown)
    printf("# no stored offsets%s\n",
           a->has_partition ? " for this partition" : "");
  rs_store_offsets_free(offs, n);
  return 0;
}

static int inspect_cf(sargs_t *a, rs_store_t *s, int cf, const rs_buf_t *key,
                      ictx_t *c) {
  c->op = rs_store_cf_name(s, cf);
  c->shown = 0;
  c->more = 0;
  printf("# operator %s\n", c->op);
  fflush(stdout);
  int rc;
  if (key && a->has_partition) {
    const void *v;
    size_t vn;
    rc = rs_store_get(s, cf, a->partition, key->data, key->len, &v, &vn);
    if (rc == 0)
      rc = entry_cb(c, a->partition, key->data, key->len, v, vn);
    else if (rc == RS_ENOENT)
      rc = 0;
  } else if (a->has_partition) {
    c->partition = a->partition;
    rc = rs_store_scan(s, cf, a->partition, NULL, 0, partition_cb, c);
  } else {
    rc = rs_store_scan_all(s, cf, entry_cb, c);
  }
  if (rc == 1)
    rc = 0; /* stopped at the limit */
  fflush(stdout);
  if (rc)
    return fail(a, EXIT_RUNTIME, "%s",
                rc == RS_ENOMEM ? "out of memory" : rs_store_errmsg(s));
  if (c->more)
    printf("# %s: more entries not shown (--limit %" PRId64 ")\n", c->op,
           a->limit);
  else if (!c->shown)
    printf("# %s: no entries%s\n", c->op,
           a->has_partition || a->key ? " match" : "");
  return 0;
}

static int run_inspect(sargs_t *a) {
  const char *dir = a->cfg->state.dir;
  char err[2048] = "";
  rs_store_t *s = NULL;
  int rc = rs_store_open_readonly(dir, &s, err, sizeof err);
  if (rc)
    return fail(a, EXIT_RUNTIME, "%s", err);
  if (a->op) {
    rc = find_operator(a, s);
    if (rc == RS_ENOENT) {
      printf("# operator %s: no state stored yet in %s\n", a->op, dir);
      rs_store_destroy(s);
      return EXIT_OK;
    }
    if (rc) {
      rs_store_destroy(s);
      return rc;
    }
  }
  rs_buf_t key = {0};
  if (a->key && decode_key(a->key, &key)) {
    rs_store_destroy(s);
    rs_buf_free(&key);
    return fail(a, EXIT_RUNTIME, "out of memory"); /* checked at parsing */
  }
  printf("# state directory %s (read-only; the last checkpoint)\n", dir);
  rc = 0;
  if (!a->op && !a->key)
    rc = print_offsets(a, s);
  ictx_t c = {.key = a->key ? &key : NULL, .limit = a->limit};
  int n_ops = 0;
  for (int i = 0; !rc && i < rs_store_cf_count(s); i++) {
    if (is_reserved_cf(rs_store_cf_name(s, i)) ||
        (a->op && !op_owns_cf(a->op, rs_store_cf_name(s, i))))
      continue;
    n_ops++;
    rc = inspect_cf(a, s, i, a->key ? &key : NULL, &c);
  }
  if (!rc && !n_ops)
    printf("# no operator state\n");
  rs_buf_free(&c.line);
  rs_buf_free(&key);
  rs_store_destroy(s);
  return rc;
}

/* ------------------------------------------------------------ files */

static char *path_in(const char *dir, const char *name) {
  rs_buf_t b = {0};
  if (rs_buf_printf(&b, "%s/%s", dir, name))
    return NULL;
  return b.data;
}

/* The whole of a small file, NUL-terminated; NULL if absent/unreadable. */
static char *read_small_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  rs_buf_t b = {0};
  char chunk[512];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len < 65536)
    rs_buf_append(&b, chunk, n);
  fclose(f);
  if (rs_buf_append(&b, "", 1)) {
    rs_buf_free(&b);
    return NULL;
  }
  *len = b.len - 1;
  return b.data;
}

/* Writes text into dir/tmp_name, then renames it to dir/name. */
static int write_then_rename(const char *dir, const char *tmp_name,
                             const char *name, const char *text) {
  char *tmp = path_in(dir, tmp_name), *dst = path_in(dir, name);
  int rc = -1;
  if (tmp && dst) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      size_t len = strlen(text);
      ssize_t w = write(fd, text, len);
      int ok = w == (ssize_t)len;
      if (close(fd) != 0)
        ok = 0;
      if (ok && rename(tmp, dst) == 0)
        rc = 0;
      else
        unlink(tmp);
    }
  }
  rs_free(tmp);
  rs_free(dst);
  return rc;
}

static void unlink_in(const char *dir, const char *name) {
  char *p = path_in(dir, name);
  if (p)
    unlink(p);
  rs_free(p);
}

static int pid_alive(pid_t pid) {
  return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* Whether process pid has dir/LOCK open, as the engine holding the
 * database does: 1 yes, 0 no, -1 cannot tell (no /proc, or not allowed to
 * look). Guards against signalling an unrelated process that reused the
 * pid of a stale pid file. */
static int pid_holds_lock(pid_t pid, const char *dir) {
  char real[4096], want[4200], fds[64], link[4200], path[4300];
  if (!realpath(dir, real))
    return -1;
  snprintf(want, sizeof want, "%s/LOCK", real);
  snprintf(fds, sizeof fds, "/proc/%ld/fd", (long)pid);
  DIR *d = opendir(fds);
  if (!d)
    return -1;
  int found = 0;
  for (struct dirent *e; !found && (e = readdir(d));) {
    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof path, "%s/%s", fds, e->d_name);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n < 0)
      continue;
    link[n] = '\0';
    found = !strcmp(link, want);
  }
  closedir(d);
  return found;
}

/* The pid in dir/RECSTREAM_PID, or 0. */
static pid_t read_pid(const char *dir) {
  char *p = path_in(dir, RS_STATE_PID_FILE);
  size_t n = 0;
  char *text = p ? read_small_file(p, &n) : NULL;
  rs_free(p);
  if (!text)
    return 0;
  char *end;
  long v = strtol(text, &end, 10);
  int ok = end != text && (*end == '\n' || *end == '\0') && v > 0 &&
           v < (long)INT32_MAX;
  rs_free(text);
  return ok ? (pid_t)v : 0;
}

int rs_state_pid_file_write(const char *state_dir, char *errstr,
                            size_t errstr_size) {
  char text[32];
  snprintf(text, sizeof text, "%ld\n", (long)getpid());
  char *p = path_in(state_dir, RS_STATE_PID_FILE);
  if (!p)
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  int rc = 0;
  FILE *f = fopen(p, "w");
  if (!f || fputs(text, f) < 0)
    rc = rs_seterr(errstr, errstr_size, RS_ESTATE, "cannot write %s: %s", p,
                   strerror(errno));
  if (f && fclose(f) != 0 && !rc)
    rc = rs_seterr(errstr, errstr_size, RS_ESTATE, "cannot write %s: %s", p,
                   strerror(errno));
  rs_free(p);
  return rc;
}

void rs_state_pid_file_remove(const char *state_dir) {
  if (read_pid(state_dir) == getpid())
    unlink_in(state_dir, RS_STATE_PID_FILE);
}

int rs_state_savepoint_serve(rs_store_t *s, const char *state_dir) {
  char *req = path_in(state_dir, RS_STATE_SAVEPOINT_REQUEST);
  size_t n = 0;
  char *text = req ? read_small_file(req, &n) : NULL;
  if (!text) {
    rs_free(req);
    return RS_ENOENT;
  }
  unlink(req);
  rs_free(req);
  char *nl = strchr(text, '\n');
  if (nl)
    *nl = '\0';
  char err[2048] = "";
  int rc;
  if (text[0] != '/')
    rc = rs_seterr(err, sizeof err, RS_EINVAL,
                   "the savepoint request names '%s', not an absolute path",
                   text);
  else
    rc = rs_store_savepoint(s, text, err, sizeof err);
  rs_free(text);
  rs_buf_t answer = {0};
  if (rc)
    rs_buf_printf(&answer, "error: %s\n", err[0] ? err : rs_strerror(rc));
  else
    rs_buf_printf(&answer, "ok\n");
  if (!answer.data ||
      write_then_rename(state_dir, RS_STATE_SAVEPOINT_RESULT_TMP,
                        RS_STATE_SAVEPOINT_RESULT, answer.data))
    rs_log(RS_LOG_ERROR, "state",
           "cannot answer the savepoint request in %s: %s", state_dir,
           strerror(errno));
  rs_buf_free(&answer);
  return rc;
}

/* ------------------------------------------------------------ checkpoint */

/* A store opened for writing on a stopped instance: 0, or the message and
 * 1 if it is locked by a running process (*locked set), or another
 * rs_err_t. */
static int open_stopped(const sargs_t *a, rs_store_t **s, int *locked,
                        char *err, size_t errsz) {
  *locked = 0;
  /* Without a database RocksDB would still leave LOCK and LOG files
   * behind: let the read-only open, which writes nothing, say why. */
  char *cur = path_in(a->cfg->state.dir, "CURRENT");
  if (!cur)
    return rs_seterr(err, errsz, RS_ENOMEM, "out of memory");
  int absent = access(cur, F_OK) != 0;
  rs_free(cur);
  if (absent) {
    int rc = rs_store_open_readonly(a->cfg->state.dir, s, err, errsz);
    if (!rc) { /* it appeared meanwhile */
      rs_store_destroy(*s);
      *s = NULL;
      rc = rs_seterr(err, errsz, RS_ESTATE,
                     "state directory %s changed while it was opened; try "
                     "again",
                     a->cfg->state.dir);
    }
    return rc;
  }
  rs_store_opts_t o;
  rs_store_opts_init(&o);
  o.create_if_missing = 0;
  o.block_cache_bytes = 8u << 20;
  o.write_buffer_bytes = (size_t)a->cfg->state.write_buffer_bytes;
  o.compression = (rs_compression_t)a->cfg->state.compression;
  o.sync = 1;
  int rc = rs_store_open(a->cfg->state.dir, NULL, 0, &o, s, err, errsz);
  *locked = rc && strstr(err, RS_STORE_LOCKED_MSG) != NULL;
  return rc;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Asks the running engine `pid` for a savepoint into target. */
static int request_savepoint(sargs_t *a, pid_t pid, const char *target) {
  const char *dir = a->cfg->state.dir;
  char *res = path_in(dir, RS_STATE_SAVEPOINT_RESULT);
  if (!res)
    return fail(a, EXIT_RUNTIME, "out of memory");
  unlink(res); /* stale: before the request, so a fresh one is never lost */
  rs_buf_t req = {0};
  rs_buf_printf(&req, "%s\n", target);
  if (!req.data || write_then_rename(dir, RS_STATE_SAVEPOINT_REQUEST_TMP,
                                     RS_STATE_SAVEPOINT_REQUEST, req.data)) {
    int e = errno;
    rs_buf_free(&req);
    rs_free(res);
    return fail(a, EXIT_RUNTIME, "cannot write the savepoint request in %s: %s",
                dir, strerror(e));
  }
  rs_buf_free(&req);
  if (kill(pid, RS_STATE_SAVEPOINT_SIGNAL) != 0) {
    int e = errno;
    unlink_in(dir, RS_STATE_SAVEPOINT_REQUEST);
    rs_free(res);
    return fail(a, EXIT_RUNTIME,
                "cannot signal the running instance (pid %ld, from "
                "%s/" RS_STATE_PID_FILE "): %s",
                (long)pid, dir, strerror(e));
  }
  fprintf(stderr,
          "recstream %s: asked the running instance (pid %ld) for a "
          "savepoint; waiting up to %.1f s\n",
          a->cmd, (long)pid, (double)a->timeout_ms / 1000.0);
  uint64_t deadline = rs_now_ns() + (uint64_t)a->timeout_ms * 1000000u;
  size_t last_len = (size_t)-1;
  char *answer = NULL;
  int status = EXIT_RUNTIME;
  for (;;) {
    sleep_ms(RS_STATE_SAVEPOINT_POLL_MS);
    size_t n = 0;
    char *text = read_small_file(res, &n);
    if (text) {
      /* A result without its newline may still be being written (an
       * engine that does not rename it into place): wait until it stops
       * growing. */
      if (strchr(text, '\n') || n == last_len) {
        answer = text;
        break;
      }
      last_len = n;
      rs_free(text);
      continue;
    }
    if (!pid_alive(pid)) {
      unlink_in(dir, RS_STATE_SAVEPOINT_REQUEST);
      fail(a, EXIT_RUNTIME,
           "the running instance (pid %ld) exited before answering the "
           "savepoint request; nothing was written to %s",
           (long)pid, target);
      goto out;
    }
    if (rs_now_ns() >= deadline) {
      unlink_in(dir, RS_STATE_SAVEPOINT_REQUEST);
      char d[32];
      rs_format_duration(a->timeout_ms, d, sizeof d);
      fail(a, EXIT_RUNTIME,
           "no answer from the running instance (pid %ld) within %s; the "
           "request was withdrawn (is it stalled, or a recstream version "
           "that does not serve savepoints? --timeout waits longer)",
           (long)pid, d);
      goto out;
    }
  }
  unlink(res);
  char *nl = strchr(answer, '\n');
  if (nl)
    *nl = '\0';
  if (!strcmp(answer, "ok")) {
    printf("recstream %s: savepoint written to %s by the running instance "
           "(pid %ld)\n",
           a->cmd, target, (long)pid);
    status = EXIT_OK;
  } else if (!strncmp(answer, "error: ", 7)) {
    fail(a, EXIT_RUNTIME, "the running instance (pid %ld) failed: %s",
         (long)pid, answer + 7);
  } else {
    fail(a, EXIT_RUNTIME,
         "unexpected answer from the running instance (pid %ld) in %s: '%s'",
         (long)pid, res, answer);
  }
out:
  rs_free(answer);
  rs_free(res);
  return status;
}

static int run_checkpoint(sargs_t *a) {
  const char *dir = a->cfg->state.dir;
  /* The target as an absolute path without trailing slashes: the engine
   * may run in another directory. */
  rs_buf_t t = {0};
  if (a->dir[0] != '/') {
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd))
      return fail(a, EXIT_RUNTIME, "cannot read the current directory: %s",
                  strerror(errno));
    rs_buf_printf(&t, "%s/", cwd);
  }
  rs_buf_printf(&t, "%s", a->dir);
  if (!t.data)
    return fail(a, EXIT_RUNTIME, "out of memory");
  while (t.len > 1 && t.data[t.len - 1] == '/')
    t.data[--t.len] = '\0';
  int status = EXIT_RUNTIME;
  struct stat st;
  char err[2048] = "";
  if (lstat(t.data, &st) == 0) {
    fail(a, EXIT_RUNTIME,
         "savepoint directory %s already exists; name a new directory (a "
         "savepoint never replaces anything)",
         t.data);
    goto out;
  }
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    fail(a, EXIT_RUNTIME,
         "state directory %s does not exist: no instance of %s has kept "
         "state here (state.dir is taken from the current directory when "
         "relative)",
         dir, a->config);
    goto out;
  }
  rs_store_t *s = NULL;
  int locked = 0;
  int rc = open_stopped(a, &s, &locked, err, sizeof err);
  if (!rc) {
    rc = rs_store_savepoint(s, t.data, err, sizeof err);
    rs_store_destroy(s);
    if (rc) {
      fail(a, EXIT_RUNTIME, "%s", err);
    } else {
      printf("recstream %s: savepoint of %s written to %s (instance not "
             "running)\n",
             a->cmd, dir, t.data);
      status = EXIT_OK;
    }
    goto out;
  }
  if (!locked) {
    fail(a, EXIT_RUNTIME, "%s", err);
    goto out;
  }
  pid_t pid = read_pid(dir);
  const char *why = !pid                            ? "missing or unreadable"
                    : !pid_alive(pid)               ? "its process is gone"
                    : pid_holds_lock(pid, dir) == 0 ? "its process does not "
                                                      "hold the database"
                                                    : NULL;
  if (why) {
    fail(a, EXIT_RUNTIME,
         "state directory %s is locked by another process, but "
         "%s/" RS_STATE_PID_FILE
         " names no live recstream engine (%s); if an engine is starting or "
         "stopping, try again",
         dir, dir, why);
    goto out;
  }
  status = request_savepoint(a, pid, t.data);
out:
  rs_buf_free(&t);
  return status;
}

/* ------------------------------------------------------------ purge */

static int run_purge(sargs_t *a) {
  const char *dir = a->cfg->state.dir;
  char err[2048] = "";
  rs_store_t *s = NULL;
  int locked = 0;
  int rc = open_stopped(a, &s, &locked, err, sizeof err);
  if (rc && locked)
    return fail(a, EXIT_RUNTIME,
                "state directory %s is in use by a running instance (lock "
                "held); stop it first: purge works only on a stopped "
                "instance (a running engine would write the partition's "
                "state back at its next checkpoint)",
                dir);
  if (rc)
    return fail(a, EXIT_RUNTIME, "%s", err);
  int offsets_only = 0;
  if (a->op) {
    rc = find_operator(a, s);
    if (rc == RS_ENOENT) {
      offsets_only = 1; /* the operator has no state */
      rc = 0;
    }
    if (rc) {
      rs_store_destroy(s);
      return rc;
    }
  }
  int status = EXIT_OK;
  rs_buf_t dropped = {0}, offs_done = {0};
  for (int i = 0; i < rs_store_cf_count(s); i++) {
    const char *name = rs_store_cf_name(s, i);
    if (is_reserved_cf(name) || offsets_only ||
        (a->op && !op_owns_cf(a->op, name)))
      continue;
    rc = rs_store_drop_partition(s, i, a->partition);
    if (rc) {
      status = fail(a, EXIT_RUNTIME, "%s",
                    rc == RS_ENOMEM ? "out of memory" : rs_store_errmsg(s));
      goto out;
    }
    rs_buf_printf(&dropped, "%s%s", dropped.len ? ", " : "", name);
  }
  rs_offset_t *offs = NULL;
  size_t n = 0;
  rc = rs_store_read_offsets(s, &offs, &n);
  for (size_t i = 0; !rc && i < n; i++) {
    if (offs[i].partition != a->partition ||
        (a->topic && strcmp(offs[i].topic, a->topic)))
      continue;
    rc = rs_store_delete_offset(s, offs[i].topic, a->partition);
    if (!rc)
      rs_buf_printf(&offs_done,
                    "%s%s [%" PRId32 "] (was next_offset=%" PRId64 ")",
                    offs_done.len ? ", " : "", offs[i].topic, a->partition,
                    offs[i].next_offset);
  }
  rs_store_offsets_free(offs, n);
  if (rc) {
    status = fail(a, EXIT_RUNTIME, "%s",
                  rc == RS_ENOMEM ? "out of memory" : rs_store_errmsg(s));
    goto out;
  }
  printf("recstream %s: partition %" PRId32 " of %s\n", a->cmd, a->partition,
         dir);
  printf("  state dropped:    %s\n",
         dropped.len ? dropped.data : "none (no operator state)");
  printf("  offsets deleted:  %s\n",
         offs_done.len ? offs_done.data : "none stored");
  printf("  the next assignment of partition %" PRId32
         " starts from the consumer group's committed offset\n",
         a->partition);
out:
  rs_buf_free(&dropped);
  rs_buf_free(&offs_done);
  rs_store_destroy(s); /* flushes: the deletions are durable */
  return status;
}

/* ------------------------------------------------------------ dispatch */

int rs_cmd_state(int argc, char **argv) {
  static const sub_t subs[] = {
      {"inspect", inspect_help, "okpn", 1, run_inspect},
      {"checkpoint", checkpoint_help, "t", 2, run_checkpoint},
      {"purge", purge_help, "pTo", 1, run_purge},
  };
  if (argc < 2) {
    fputs("recstream state: missing command (inspect, checkpoint or "
          "purge)\nTry 'recstream state --help'.\n",
          stderr);
    return EXIT_USAGE;
  }
  const char *name = argv[1];
  if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
    fputs(state_help, stdout);
    return EXIT_OK;
  }
  for (size_t i = 0; i < RS_ARRAY_SIZE(subs); i++) {
    if (strcmp(name, subs[i].name))
      continue;
    sargs_t a = {.sub = subs[i].name};
    snprintf(a.cmd, sizeof a.cmd, "state %s", subs[i].name);
    int rc = parse_args(&subs[i], &a, argc - 1, argv + 1);
    if (rc == 0)
      rc = subs[i].run(&a);
    else if (rc < 0)
      rc = EXIT_OK;
    rs_config_destroy(a.cfg);
    free(a.sets);
    fflush(stdout);
    return rc;
  }
  fprintf(stderr,
          "recstream state: unknown command '%s' (expected inspect, "
          "checkpoint or purge)\nTry 'recstream state --help'.\n",
          name);
  return EXIT_USAGE;
}
