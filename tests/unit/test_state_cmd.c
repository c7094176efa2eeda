/* Tests of the state commands (engine/state_cmd.c) and the state-directory
 * tools under them (state/statedir.c, the read-only open): inspect's
 * output and filters, the value rendering rules, missing and corrupt
 * directories, savepoints of stopped and running instances (a forked child
 * plays the running engine, serving the request with the engine's helper),
 * restore, reset and purge. The commands run as the built `recstream`
 * binary in each test's own mkdtemp directory, which is removed after.
 */
#define _XOPEN_SOURCE 700
#include <criterion/criterion.h>
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "recstream/operator.h"
#include "state/store.h"
#include "state_cmd.h"
#include "util.h"

static char g_tmp[64];
static char g_state[128]; /* g_tmp/state: the config's state.dir */
static char g_err[2048];

static int rm_one(const char *p, const struct stat *st, int flag,
                  struct FTW *f) {
  (void)st;
  (void)flag;
  (void)f;
  return remove(p);
}

static void setup(void) {
  strcpy(g_tmp, "/tmp/rs_scmd_XXXXXX");
  cr_assert_not_null(mkdtemp(g_tmp));
  snprintf(g_state, sizeof g_state, "%s/state", g_tmp);
}

static void teardown(void) {
  if (g_tmp[0])
    nftw(g_tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  g_tmp[0] = '\0';
}

TestSuite(state_cmd, .init = setup, .fini = teardown);

static const char *const k_ops[] = {"counts", "vectors", "texts"};

/* g_tmp/app.yaml with a relative state.dir ("state"): the commands run
 * with g_tmp as their current directory. "idle" has no state. */
static void write_config(void) {
  char p[160];
  snprintf(p, sizeof p, "%s/app.yaml", g_tmp);
  FILE *f = fopen(p, "w");
  cr_assert_not_null(f);
  fputs("app: t\n"
        "kafka: { brokers: embedded }\n"
        "state: { dir: state }\n"
        "sources: [ { name: in, topic: in } ]\n"
        "operators:\n"
        "  - { name: counts, type: parse, input: in, format: json }\n"
        "  - { name: vectors, type: parse, input: counts, format: json }\n"
        "  - { name: texts, type: parse, input: vectors, format: json }\n"
        "  - { name: idle, type: parse, input: texts, format: json }\n"
        "sinks: [ { name: out, input: idle, topic: out, format: json } ]\n",
        f);
  fclose(f);
}

static rs_store_t *open_rw(const char *dir) {
  rs_store_t *s = NULL;
  int rc = rs_store_open(dir, k_ops, 3, NULL, &s, g_err, sizeof g_err);
  cr_assert_eq(rc, 0, "open %s: %s", dir, g_err);
  return s;
}

static const unsigned char k_bin_key[] = {0x00, 0xff, 0x10};

static int fill_store(const char *dir) {
  rs_store_t *s = NULL;
  char e[1024];
  if (rs_store_open(dir, k_ops, 3, NULL, &s, e, sizeof e))
    return 1;
  int counts = rs_store_cf(s, "counts"), vectors = rs_store_cf(s, "vectors"),
      texts = rs_store_cf(s, "texts");
  const float v[] = {0.5f, -1.25f, 3.0f}, w[] = {0.1f, 2.0f, -0.25f};
  const char *hello = "hello \"world\"";
  const unsigned char blob[] = {1, 2, 3};
  rs_offset_t offs[3] = {{.topic = "in", .partition = 0, .next_offset = 120},
                         {.topic = "in",
                          .partition = 1,
                          .next_offset = 98,
                          .n_extra = 2,
                          .extra = {5, 7}},
                         {.topic = "in", .partition = 2, .next_offset = 10}};
  int rc = rs_store_counter_add(s, counts, 0, "alice", 5, 42, NULL) ||
           rs_store_counter_add(s, counts, 1, "bob", 3, -7, NULL) ||
           rs_store_counter_add(s, counts, 1, "carol", 5, 1, NULL) ||
           rs_store_put_floats(s, vectors, RS_PARTITION_SHARED, k_bin_key,
                               sizeof k_bin_key, v, 3) ||
           rs_store_put_floats(s, vectors, 1, "user 7", 6, w, 3) ||
           rs_store_put(s, texts, 2, "greeting", 8, hello, strlen(hello)) ||
           rs_store_put(s, texts, 2, "blob", 4, blob, 3) ||
           rs_store_checkpoint(s, NULL, offs, 3);
  rs_store_destroy(s);
  return rc ? 1 : 0;
}

/* A store with counters, a shared float vector under a binary key, text
 * and binary values, and offsets (one with extra fields). */
static void fill(const char *dir) {
  cr_assert_eq(fill_store(dir), 0, "filling %s failed", dir);
}

/* The same, written by a child process, for tests that then fork a
 * process using RocksDB: a child forked from a process where RocksDB has
 * started its background threads inherits their pools without the
 * threads, and its first flush waits forever. So in those tests this
 * process must not touch RocksDB before forking. */
static void fill_in_child(const char *dir) {
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0)
    _exit(fill_store(dir));
  int status;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "filling %s failed",
            dir);
}

static const char *bin(void) {
  static char path[1024];
  snprintf(path, sizeof path, "%s/recstream", RS_BINARY_DIR);
  return path;
}

/* Runs `recstream ARGS` in g_tmp; stdout and stderr together in *out.
 * Returns the exit status. */
static int run(rs_buf_t *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int run(rs_buf_t *out, const char *fmt, ...) {
  char args[1024], cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  cr_assert_lt(
      snprintf(cmd, sizeof cmd, "cd %s && %s %s 2>&1", g_tmp, bin(), args),
      (int)sizeof cmd);
  rs_buf_reset(out);
  FILE *f = popen(cmd, "r");
  cr_assert_not_null(f);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    rs_buf_append(out, buf, n);
  rs_buf_append(out, "", 0);
  int st = pclose(f);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int has_line(const rs_buf_t *b, const char *line) {
  size_t n = strlen(line);
  for (const char *p = b->data; p && (p = strstr(p, line)); p++)
    if ((p == b->data || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
      return 1;
  return 0;
}

static int count_lines(const rs_buf_t *b, const char *prefix) {
  int n = 0;
  size_t m = strlen(prefix);
  for (const char *p = b->data; p && *p;) {
    if (!strncmp(p, prefix, m))
      n++;
    p = strchr(p, '\n');
    if (p)
      p++;
  }
  return n;
}

/* ---- rendering rules ---- */

static const char *value(const void *v, size_t n) {
  static rs_buf_t b;
  rs_buf_reset(&b);
  rs_state_render_value(&b, v, n);
  rs_buf_append(&b, "", 0);
  return b.data;
}

static const char *key(const void *k, size_t n) {
  static rs_buf_t b;
  rs_buf_reset(&b);
  rs_state_render_key(&b, k, n);
  rs_buf_append(&b, "", 0);
  return b.data;
}

Test(state_cmd, value_rendering_rules) {
  unsigned char c[8];
  rs__state_i64_encode(c, -3);
  cr_expect_str_eq(value(c, 8), "-3 (counter)");
  cr_expect_str_eq(value("abcdefgh", 8),
                   "7523094288207667809 (counter; as text \"abcdefgh\")");
  const float two[] = {0.1f, 2.0f};
  rs__state_floats_encode(c, two, 2);
  cr_expect_str_eq(value(c, 8),
                   "4611686019464219853 (counter; as floats [0.1, 2])");
  rs__state_i64_encode(c, 1000000);
  cr_expect_str_eq(value(c, 8), "1000000 (counter)");
  cr_expect_str_eq(value("", 0), "\"\"");
  cr_expect_str_eq(value("a\tb\"c\\", 6), "\"a\\tb\\\"c\\\\\"");
  cr_expect_str_eq(value("h\xc3\xa9llo", 6), "\"h\xc3\xa9llo\"");
  unsigned char f[12];
  const float fv[] = {0.1f, -2.5f, 3.0f};
  rs__state_floats_encode(f, fv, 3);
  cr_expect_str_eq(value(f, 12), "[0.1, -2.5, 3]");
  /* Text wins over a vector of the same length (all printable). */
  cr_expect_str_eq(value("abcd", 4), "\"abcd\"");
  const float nan_v[] = {1.0f, NAN, 2.0f};
  rs__state_floats_encode(f, nan_v, 3);
  cr_expect_str_eq(value(f, 12), "0x0000803f0000c07f00000040");
  cr_expect_str_eq(value("\x01\x02\x03", 3), "0x010203");
  cr_expect_str_eq(value("\xff\xfe", 2), "0xfffe"); /* not UTF-8 */
  cr_expect_str_eq(value("a\x01", 2), "0x6101");    /* control char */

  cr_expect_str_eq(key("alice", 5), "alice");
  cr_expect_str_eq(key("user 7", 6), "\"user 7\"");
  cr_expect_str_eq(key("0xab", 4), "\"0xab\""); /* not mistaken for hex */
  cr_expect_str_eq(key("a=b", 3), "\"a=b\"");
  cr_expect_str_eq(key("", 0), "\"\"");
  cr_expect_str_eq(key(k_bin_key, 3), "0x00ff10");
  cr_expect_str_eq(key("a\nb", 3), "0x610a62");
}

/* ---- inspect ---- */

Test(state_cmd, inspect_prints_offsets_and_every_operator) {
  write_config();
  fill(g_state);
  rs_buf_t b = {0};
  cr_assert_eq(run(&b, "state inspect app.yaml"), 0, "%s", b.data);
  const char *want[] = {
      "in [0] next_offset=120",
      "in [1] next_offset=98 extra[0]=5 extra[1]=7",
      "in [2] next_offset=10",
      "# operator counts",
      "counts [0] alice = 42 (counter)",
      "counts [1] bob = -7 (counter)",
      "counts [1] carol = 1 (counter)",
      "vectors [1] \"user 7\" = [0.1, 2, -0.25]",
      "vectors [shared] 0x00ff10 = [0.5, -1.25, 3]",
      "texts [2] blob = 0x010203",
      "texts [2] greeting = \"hello \\\"world\\\"\"",
  };
  for (size_t i = 0; i < RS_ARRAY_SIZE(want); i++)
    cr_expect(has_line(&b, want[i]), "missing '%s' in:\n%s", want[i], b.data);
  /* Stored order: partitions ascending, shared last. */
  const char *p1 = strstr(b.data, "vectors [1]");
  const char *ps = strstr(b.data, "vectors [shared]");
  cr_expect(p1 && ps && p1 < ps, "%s", b.data);
  cr_expect_eq(count_lines(&b, "default"), 0);
  cr_expect_eq(count_lines(&b, "__offsets"), 0);
  rs_buf_free(&b);
}

Test(state_cmd, inspect_filters) {
  write_config();
  fill(g_state);
  rs_buf_t b = {0};

  cr_assert_eq(run(&b, "state inspect app.yaml --operator counts"), 0, "%s",
               b.data);
  cr_expect_eq(count_lines(&b, "counts ["), 3, "%s", b.data);
  cr_expect_eq(count_lines(&b, "in ["), 0, "no offsets with --operator");
  cr_expect_eq(count_lines(&b, "vectors"), 0, "%s", b.data);

  cr_assert_eq(run(&b, "state inspect app.yaml --key bob"), 0);
  cr_expect(has_line(&b, "counts [1] bob = -7 (counter)"), "%s", b.data);
  cr_expect_eq(count_lines(&b, "counts ["), 1, "%s", b.data);
  cr_expect_eq(count_lines(&b, "in ["), 0, "%s", b.data);

  cr_assert_eq(run(&b, "state inspect app.yaml --partition 1"), 0);
  cr_expect(has_line(&b, "in [1] next_offset=98 extra[0]=5 extra[1]=7"), "%s",
            b.data);
  cr_expect_eq(count_lines(&b, "in ["), 1, "%s", b.data);
  cr_expect_eq(count_lines(&b, "counts [1]"), 2, "%s", b.data);
  cr_expect_eq(count_lines(&b, "counts [0]"), 0, "%s", b.data);
  cr_expect(has_line(&b, "vectors [1] \"user 7\" = [0.1, 2, -0.25]"), "%s",
            b.data);
  cr_expect_eq(count_lines(&b, "vectors [shared]"), 0, "%s", b.data);

  cr_assert_eq(run(&b, "state inspect app.yaml --partition shared"), 0);
  cr_expect(has_line(&b, "vectors [shared] 0x00ff10 = [0.5, -1.25, 3]"), "%s",
            b.data);
  cr_expect_eq(count_lines(&b, "counts ["), 0, "%s", b.data);
  cr_expect(has_line(&b, "# no stored offsets for this partition"), "%s",
            b.data);

  /* A binary key in hex, with and without its partition (point read). */
  cr_assert_eq(run(&b, "state inspect app.yaml --key 0x00ff10"), 0);
  cr_expect(has_line(&b, "vectors [shared] 0x00ff10 = [0.5, -1.25, 3]"), "%s",
            b.data);
  cr_assert_eq(
      run(&b, "state inspect app.yaml --key 0x00FF10 --partition shared"), 0);
  cr_expect(has_line(&b, "vectors [shared] 0x00ff10 = [0.5, -1.25, 3]"), "%s",
            b.data);
  cr_assert_eq(run(&b, "state inspect app.yaml --key alice --partition 1"), 0);
  cr_expect_eq(count_lines(&b, "counts ["), 0, "%s", b.data);
  cr_expect(has_line(&b, "# counts: no entries match"), "%s", b.data);
  cr_assert_eq(run(&b, "state inspect app.yaml --key 'user 7' --partition 1"),
               0);
  cr_expect(has_line(&b, "vectors [1] \"user 7\" = [0.1, 2, -0.25]"), "%s",
            b.data);
  /* The quoted form inspect prints works as --key too. */
  cr_assert_eq(run(&b, "state inspect app.yaml --key '\"user 7\"'"), 0);
  cr_expect(has_line(&b, "vectors [1] \"user 7\" = [0.1, 2, -0.25]"), "%s",
            b.data);
  cr_expect_eq(count_lines(&b, "vectors ["), 1, "%s", b.data);
  cr_assert_eq(run(&b, "state inspect app.yaml --key '\"us\\x\"'"), 2);
  cr_expect(strstr(b.data, "--key '\"us\\x\"': in a quoted key, \\ "
                           "escapes only \" \\ t n r"),
            "%s", b.data);
  /* 0x that is not hex is a mistake, not the text key "0xZZ". */
  cr_assert_eq(run(&b, "state inspect app.yaml --key 0xZZ"), 2);
  cr_expect(strstr(b.data, "--key '0xZZ': after 0x come pairs of hex digits "
                           "(a binary key); a text key that starts with 0x "
                           "is written quoted"),
            "%s", b.data);

  cr_assert_eq(run(&b, "state inspect app.yaml --operator counts --limit 1"),
               0);
  cr_expect_eq(count_lines(&b, "counts ["), 1, "%s", b.data);
  cr_expect(has_line(&b, "# counts: more entries not shown (--limit 1)"), "%s",
            b.data);
  cr_assert_eq(run(&b, "state inspect app.yaml --operator counts --limit 3"),
               0);
  cr_expect_eq(count_lines(&b, "counts ["), 3, "%s", b.data);
  cr_expect(strstr(b.data, "more entries") == NULL, "%s", b.data);
  rs_buf_free(&b);
}

Test(state_cmd, inspect_operator_names) {
  write_config();
  fill(g_state);
  rs_buf_t b = {0};
  cr_expect_eq(run(&b, "state inspect app.yaml --operator nope"), 2);
  cr_expect(strstr(b.data, "no operator named 'nope'") != NULL, "%s", b.data);
  cr_expect(strstr(b.data, "operators with state: counts, vectors, texts") !=
                NULL,
            "%s", b.data);
  cr_expect(strstr(b.data, "counts, vectors, texts, idle") != NULL, "%s",
            b.data);
  /* The reserved column families are not operators. */
  cr_expect_eq(run(&b, "state inspect app.yaml --operator __offsets"), 2);
  /* In the config but without state yet: said, not an error. */
  cr_expect_eq(run(&b, "state inspect app.yaml --operator idle"), 0, "%s",
               b.data);
  cr_expect(strstr(b.data, "operator idle: no state stored yet") != NULL, "%s",
            b.data);
  rs_buf_free(&b);
}

Test(state_cmd, inspect_bad_arguments) {
  write_config();
  rs_buf_t b = {0};
  static const struct {
    const char *args, *says;
  } bad[] = {
      {"state inspect", "missing CONFIG"},
      {"state inspect app.yaml extra", "unexpected argument 'extra'"},
      {"state inspect app.yaml --limit -1", "--limit: expected"},
      {"state inspect app.yaml --partition -2", "--partition: expected"},
      {"state inspect app.yaml --partition x", "--partition: expected"},
      {"state inspect app.yaml --timeout 1s", "unknown or ambiguous option"},
      {"state inspect app.yaml --key", "option '--key' needs a value"},
      {"state inspect app.yaml --set nonsense", "expected section.key=value"},
      {"state inspect /nonexistent.yaml", "/nonexistent.yaml: cannot open"},
      {"state frob app.yaml", "unknown command 'frob'"},
      {"state", "missing command"},
  };
  for (size_t i = 0; i < RS_ARRAY_SIZE(bad); i++) {
    cr_expect_eq(run(&b, "%s", bad[i].args), 2, "recstream %s: %s", bad[i].args,
                 b.data);
    cr_expect(strstr(b.data, bad[i].says) != NULL, "recstream %s said: %s",
              bad[i].args, b.data);
  }
  cr_expect_eq(run(&b, "state --help"), 0);
  cr_expect(strstr(b.data, "inspect CONFIG") != NULL, "%s", b.data);
  cr_expect_eq(run(&b, "state inspect --help"), 0);
  cr_expect(strstr(b.data, "as text") != NULL, "rules documented: %s", b.data);
  rs_buf_free(&b);
}

/* ---- missing, corrupt, and open while locked ---- */

static void write_file(const char *dir, const char *name, const char *text) {
  char p[256];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  cr_assert_not_null(f, "%s", p);
  fputs(text, f);
  fclose(f);
}

Test(state_cmd, missing_and_corrupt_directories) {
  write_config();
  rs_store_t *s = NULL;
  cr_expect_eq(rs_store_open_readonly(g_state, &s, g_err, sizeof g_err),
               RS_ENOENT);
  cr_expect_null(s);
  cr_expect(strstr(g_err, g_state) != NULL, "%s", g_err);
  cr_expect_neq(access(g_state, F_OK), 0, "a read-only open created it");
  rs_buf_t b = {0};
  cr_expect_eq(run(&b, "state inspect app.yaml"), 1);
  cr_expect(strstr(b.data, "state directory state does not exist") != NULL,
            "%s", b.data);

  /* Empty: not a database; nothing is left behind by trying. */
  cr_assert_eq(mkdir(g_state, 0755), 0);
  cr_expect_eq(rs_store_open_readonly(g_state, &s, g_err, sizeof g_err),
               RS_ESTATE);
  cr_expect(strstr(g_err, "holds no state database") != NULL, "%s", g_err);
  cr_expect(strstr(g_err, "recstream replay") != NULL, "%s", g_err);
  cr_expect(strstr(g_err, "recstream run --reset-state") != NULL, "%s", g_err);
  cr_expect_eq(run(&b, "state checkpoint app.yaml sp"), 1);
  cr_expect(strstr(b.data, "holds no state database") != NULL, "%s", b.data);
  cr_expect_eq(run(&b, "state purge app.yaml --partition 0"), 1);
  DIR *d = opendir(g_state);
  int entries = 0;
  for (struct dirent *e; (e = readdir(d));)
    entries += e->d_name[0] != '.';
  closedir(d);
  cr_expect_eq(entries, 0, "files were left in an empty state directory");

  /* Corrupt: garbage CURRENT. */
  fill(g_state);
  write_file(g_state, "CURRENT", "garbage without newline");
  cr_expect_eq(rs_store_open_readonly(g_state, &s, g_err, sizeof g_err),
               RS_ESTATE);
  cr_expect_null(s);
  cr_expect(strstr(g_err, g_state) != NULL, "%s", g_err);
  cr_expect(strstr(g_err, "corrupt") != NULL, "%s", g_err);
  cr_expect(strstr(g_err, "`recstream replay`") != NULL, "%s", g_err);
  cr_expect(strstr(g_err, "`recstream run --reset-state`") != NULL, "%s",
            g_err);
  cr_expect_eq(run(&b, "state inspect app.yaml"), 1);
  cr_expect(strstr(b.data, "is corrupt or unreadable") != NULL, "%s", b.data);
  cr_expect(strstr(b.data, "recstream replay") != NULL, "%s", b.data);
  rs_buf_free(&b);
}

Test(state_cmd, readonly_open_takes_no_lock_and_writes_nothing) {
  write_config();
  fill_in_child(g_state);
  /* Another process holds the database open for writing. */
  int ready[2], done[2];
  cr_assert_eq(pipe(ready), 0);
  cr_assert_eq(pipe(done), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    /* Only this process keeps its ends: if the test fails, the read
     * below sees end-of-file and the child exits. */
    close(ready[0]);
    close(done[1]);
    rs_store_t *s = NULL;
    char e[512];
    char ok =
        rs_store_open(g_state, k_ops, 3, NULL, &s, e, sizeof e) ? 'n' : 'y';
    if (ok == 'y' && rs_store_counter_add(s, 0 + rs_store_cf(s, "counts"), 0,
                                          "dave", 4, 9, NULL))
      ok = 'n';
    rs_offset_t o = {.topic = "in", .partition = 0, .next_offset = 121};
    if (ok == 'y' && rs_store_checkpoint(s, NULL, &o, 1))
      ok = 'n';
    if (write(ready[1], &ok, 1) != 1)
      _exit(2);
    char c;
    int got = (int)read(done[0], &c, 1);
    rs_store_destroy(s);
    _exit(got == 1 ? 0 : 3);
  }
  close(ready[1]);
  close(done[0]);
  char ok = 0;
  cr_assert_eq(read(ready[0], &ok, 1), 1);
  cr_assert_eq(ok, 'y');
  DIR *d = opendir(g_state);
  rs_buf_t before = {0}, after = {0};
  for (struct dirent *e; (e = readdir(d));)
    rs_buf_printf(&before, "%s\n", e->d_name);
  closedir(d);

  rs_buf_t b = {0};
  cr_expect_eq(run(&b, "state inspect app.yaml"), 0, "%s", b.data);
  /* The writer's last (synced) checkpoint is visible. */
  cr_expect(has_line(&b, "counts [0] dave = 9 (counter)"), "%s", b.data);
  cr_expect(has_line(&b, "in [0] next_offset=121"), "%s", b.data);

  d = opendir(g_state);
  for (struct dirent *e; (e = readdir(d));)
    rs_buf_printf(&after, "%s\n", e->d_name);
  closedir(d);
  cr_expect_str_eq(after.data, before.data, "inspect changed the directory");

  /* Purge is refused while the instance holds the lock. */
  cr_expect_eq(run(&b, "state purge app.yaml --partition 0"), 1);
  cr_expect(strstr(b.data, "in use by a running instance") != NULL, "%s",
            b.data);
  cr_expect(strstr(b.data, "stop it first") != NULL, "%s", b.data);
  /* A lock without a live pid in RECSTREAM_PID: the savepoint cannot be
   * asked for. */
  cr_expect_eq(run(&b, "state checkpoint app.yaml sp"), 1);
  cr_expect(strstr(b.data, "names no live recstream engine") != NULL, "%s",
            b.data);
  /* Nor is a live process that does not hold the database signalled (a
   * reused pid): here, this test's own, which SIGUSR1 would kill. */
  char self[32];
  snprintf(self, sizeof self, "%ld\n", (long)getpid());
  write_file(g_state, RS_STATE_PID_FILE, self);
  cr_expect_eq(run(&b, "state checkpoint app.yaml sp"), 1);
  cr_expect(strstr(b.data, "does not hold the database") != NULL, "%s", b.data);
  char pidfile[200];
  snprintf(pidfile, sizeof pidfile, "%s/%s", g_state, RS_STATE_PID_FILE);
  unlink(pidfile);
  /* Reset is refused too. */
  cr_expect_eq(rs_store_destroy_dir(g_state, g_err, sizeof g_err), RS_ESTATE);
  cr_expect(strstr(g_err, RS_STORE_LOCKED_MSG) != NULL, "%s", g_err);

  cr_assert_eq(write(done[1], "x", 1), 1);
  int status;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  rs_buf_free(&b);
  rs_buf_free(&before);
  rs_buf_free(&after);
}

/* ---- savepoints ---- */

/* Every entry of every operator and every offset, as text. */
static int dump_cb(void *opaque, int32_t p, const void *k, size_t kn,
                   const void *v, size_t vn) {
  rs_buf_t *b = opaque;
  rs_buf_printf(b, "%d ", (int)p);
  rs_state_render_key(b, k, kn);
  rs_buf_append(b, " = ", 3);
  rs_state_render_value(b, v, vn);
  rs_buf_append(b, "\n", 1);
  return 0;
}

static void dump(const char *dir, rs_buf_t *b) {
  rs_store_t *s = NULL;
  cr_assert_eq(rs_store_open_readonly(dir, &s, g_err, sizeof g_err), 0, "%s",
               g_err);
  rs_buf_reset(b);
  for (size_t i = 0; i < RS_ARRAY_SIZE(k_ops); i++) {
    int cf = rs_store_cf(s, k_ops[i]);
    cr_assert_geq(cf, 0, "%s missing in %s", k_ops[i], dir);
    rs_buf_printf(b, "# %s\n", k_ops[i]);
    cr_assert_eq(rs_store_scan_all(s, cf, dump_cb, b), 0);
  }
  rs_offset_t *o;
  size_t n;
  cr_assert_eq(rs_store_read_offsets(s, &o, &n), 0);
  for (size_t i = 0; i < n; i++)
    rs_buf_printf(b, "%s %d %lld %zu\n", o[i].topic, (int)o[i].partition,
                  (long long)o[i].next_offset, o[i].n_extra);
  rs_store_offsets_free(o, n);
  rs_store_destroy(s);
}

Test(state_cmd, savepoint_of_a_stopped_instance) {
  write_config();
  fill(g_state);
  rs_buf_t want = {0}, got = {0}, b = {0};
  dump(g_state, &want);
  cr_assert(strstr(want.data, "alice = 42") != NULL, "%s", want.data);

  cr_assert_eq(run(&b, "state checkpoint app.yaml sp1"), 0, "%s", b.data);
  cr_expect(strstr(b.data, "instance not running") != NULL, "%s", b.data);
  char sp[160];
  snprintf(sp, sizeof sp, "%s/sp1", g_tmp);
  dump(sp, &got);
  cr_expect_str_eq(got.data, want.data);

  /* An existing target is refused, by the command and by the call. */
  cr_expect_eq(run(&b, "state checkpoint app.yaml sp1"), 1);
  cr_expect(strstr(b.data, "already exists") != NULL, "%s", b.data);
  rs_store_t *s = open_rw(g_state);
  cr_expect_eq(rs_store_savepoint(s, sp, g_err, sizeof g_err), RS_EINVAL);
  cr_expect(strstr(g_err, "already exists") != NULL, "%s", g_err);
  char deep[200];
  snprintf(deep, sizeof deep, "%s/no/such/parent", g_tmp);
  cr_expect_eq(rs_store_savepoint(s, deep, g_err, sizeof g_err), RS_ENOENT);
  cr_expect(strstr(g_err, "parent directory") != NULL, "%s", g_err);
  /* Direct call, with a trailing slash. */
  char sp2[160];
  snprintf(sp2, sizeof sp2, "%s/sp2/", g_tmp);
  cr_expect_eq(rs_store_savepoint(s, sp2, g_err, sizeof g_err), 0, "%s", g_err);
  rs_store_destroy(s);
  dump(sp2, &got);
  cr_expect_str_eq(got.data, want.data);

  /* A stale pid file (a process that is gone) means "not running". */
  pid_t dead = fork();
  if (dead == 0)
    _exit(0);
  cr_assert_eq(waitpid(dead, NULL, 0), dead);
  char pidtext[32];
  snprintf(pidtext, sizeof pidtext, "%ld\n", (long)dead);
  write_file(g_state, RS_STATE_PID_FILE, pidtext);
  cr_expect_eq(run(&b, "state checkpoint app.yaml sp3"), 0, "%s", b.data);
  cr_expect(strstr(b.data, "instance not running") != NULL, "%s", b.data);

  cr_expect_eq(run(&b, "state checkpoint app.yaml"), 2);
  cr_expect(strstr(b.data, "missing DIR") != NULL, "%s", b.data);
  cr_expect_eq(run(&b, "state checkpoint app.yaml sp4 --timeout 0"), 2);
  cr_expect_eq(run(&b, "state checkpoint app.yaml sp4 --limit 3"), 2);
  rs_buf_free(&want);
  rs_buf_free(&got);
  rs_buf_free(&b);
}

static volatile sig_atomic_t g_usr1;
static void on_usr1(int sig) {
  (void)sig;
  g_usr1 = 1;
}

/* A child that plays a running engine: holds the store, registers its
 * pid, and serves savepoint requests (when serve) after a "checkpoint".
 * Returns its pid once it is ready; it exits when `done` is written. */
typedef struct child {
  pid_t pid;
  int ready; /* read end: one byte, 'y' when it is up */
  int done;  /* write end: any byte (or closing it) stops it */
} child_t;

static child_t fake_engine(int serve) {
  int ready[2], done[2];
  cr_assert_eq(pipe(ready), 0);
  cr_assert_eq(pipe(done), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid != 0) {
    close(ready[1]);
    close(done[0]);
    child_t c = {pid, ready[0], done[1]};
    char ok = 0;
    cr_assert_eq(read(c.ready, &ok, 1), 1);
    cr_assert_eq(ok, 'y', "the fake engine did not start");
    return c;
  }
  close(ready[0]);
  close(done[1]);
  int done_fd_read = done[0], ready_fd_write = ready[1];
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  rs_store_t *s = NULL;
  char e[1024];
  char ok = 'y';
  if (rs_store_open(g_state, k_ops, 3, NULL, &s, e, sizeof e) ||
      rs_state_pid_file_write(g_state, e, sizeof e))
    ok = 'n';
  if (write(ready_fd_write, &ok, 1) != 1 || ok != 'y')
    _exit(2);
  int64_t n = 0;
  for (;;) {
    struct timeval tv = {0, 10000};
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(done_fd_read, &fds);
    if (select(done_fd_read + 1, &fds, NULL, NULL, &tv) > 0)
      break;
    /* Keep writing, as an engine does, and checkpoint. */
    rs_offset_t o = {.topic = "in", .partition = 0, .next_offset = 200 + n};
    rs_store_counter_add(s, rs_store_cf(s, "counts"), 0, "live", 4, 1, NULL);
    rs_store_checkpoint(s, NULL, &o, 1);
    n++;
    if (g_usr1 && serve) {
      g_usr1 = 0;
      rs_state_savepoint_serve(s, g_state);
    }
  }
  rs_state_pid_file_remove(g_state);
  rs_store_destroy(s);
  _exit(0);
}

Test(state_cmd, savepoint_of_a_running_instance) {
  write_config();
  fill_in_child(g_state);
  child_t eng = fake_engine(1);
  rs_buf_t b = {0}, got = {0};
  cr_expect_eq(run(&b, "state checkpoint app.yaml sp"), 0, "%s", b.data);
  cr_expect(strstr(b.data, "by the running instance") != NULL, "%s", b.data);
  char p[200];
  snprintf(p, sizeof p, "%s/%s", g_state, RS_STATE_SAVEPOINT_RESULT);
  cr_expect_neq(access(p, F_OK), 0, "the result file was left behind");
  snprintf(p, sizeof p, "%s/%s", g_state, RS_STATE_SAVEPOINT_REQUEST);
  cr_expect_neq(access(p, F_OK), 0, "the request file was left behind");

  /* The savepoint is consistent: the counter "live" and the offset moved
   * together (next_offset = 200 + live - 1). */
  char sp[160];
  snprintf(sp, sizeof sp, "%s/sp", g_tmp);
  rs_store_t *s = NULL;
  cr_assert_eq(rs_store_open_readonly(sp, &s, g_err, sizeof g_err), 0, "%s",
               g_err);
  const void *v;
  size_t vn;
  cr_assert_eq(rs_store_get(s, rs_store_cf(s, "counts"), 0, "live", 4, &v, &vn),
               0);
  cr_assert_eq(vn, 8);
  int64_t live = rs__state_i64_decode(v);
  rs_offset_t *o;
  size_t n;
  cr_assert_eq(rs_store_read_offsets(s, &o, &n), 0);
  cr_assert_eq(n, 3);
  cr_expect_eq(o[0].next_offset, 200 + live - 1);
  rs_store_offsets_free(o, n);
  rs_store_destroy(s);
  dump(sp, &got);
  cr_expect(strstr(got.data, "alice = 42") != NULL, "%s", got.data);

  /* An existing target is refused before the engine is asked. */
  cr_expect_eq(run(&b, "state checkpoint app.yaml sp"), 1);
  cr_expect(strstr(b.data, "already exists") != NULL, "%s", b.data);

  cr_assert_eq(write(eng.done, "x", 1), 1);
  int status;
  cr_assert_eq(waitpid(eng.pid, &status, 0), eng.pid);
  cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  snprintf(p, sizeof p, "%s/%s", g_state, RS_STATE_PID_FILE);
  cr_expect_neq(access(p, F_OK), 0, "the pid file was not removed");
  rs_buf_free(&b);
  rs_buf_free(&got);
}

Test(state_cmd, savepoint_request_errors_and_timeout) {
  write_config();
  fill_in_child(g_state);
  child_t eng = fake_engine(0); /* never answers */
  rs_buf_t b = {0};
  uint64_t t0 = rs_now_ns();
  cr_expect_eq(run(&b, "state checkpoint app.yaml sp --timeout 300ms"), 1);
  uint64_t ms = (rs_now_ns() - t0) / 1000000u;
  cr_expect(strstr(b.data, "no answer from the running instance") != NULL, "%s",
            b.data);
  cr_expect(strstr(b.data, "within 300ms") != NULL, "%s", b.data);
  cr_expect_geq(ms, 300);
  cr_expect_lt(ms, 5000);
  char p[200];
  snprintf(p, sizeof p, "%s/%s", g_state, RS_STATE_SAVEPOINT_REQUEST);
  cr_expect_neq(access(p, F_OK), 0, "the request was not withdrawn");

  /* The engine side answers errors in the result file. */
  write_file(g_state, RS_STATE_SAVEPOINT_REQUEST, "relative/path\n");
  cr_assert_eq(write(eng.done, "x", 1), 1);
  int status;
  cr_assert_eq(waitpid(eng.pid, &status, 0), eng.pid);
  rs_store_t *s = open_rw(g_state);
  cr_expect_eq(rs_state_savepoint_serve(s, g_state), RS_EINVAL);
  snprintf(p, sizeof p, "%s/%s", g_state, RS_STATE_SAVEPOINT_RESULT);
  FILE *f = fopen(p, "r");
  cr_assert_not_null(f);
  char line[512] = "";
  cr_expect_not_null(fgets(line, sizeof line, f));
  fclose(f);
  cr_expect(!strncmp(line, "error: ", 7), "%s", line);
  cr_expect(strstr(line, "not an absolute path") != NULL, "%s", line);
  snprintf(p, sizeof p, "%s/%s", g_state, RS_STATE_SAVEPOINT_REQUEST);
  cr_expect_neq(access(p, F_OK), 0, "the request was not consumed");
  cr_expect_eq(rs_state_savepoint_serve(s, g_state), RS_ENOENT);
  rs_store_destroy(s);
  rs_buf_free(&b);
}

/* ---- restore and reset ---- */

static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d)
    return -1;
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  closedir(d);
  return n;
}

Test(state_cmd, restore_from_a_savepoint) {
  fill(g_state);
  char sp[160], dest[200];
  snprintf(sp, sizeof sp, "%s/sp", g_tmp);
  rs_store_t *s = open_rw(g_state);
  cr_assert_eq(rs_store_savepoint(s, sp, g_err, sizeof g_err), 0, "%s", g_err);
  rs_store_destroy(s);
  rs_buf_t want = {0}, got = {0};
  dump(sp, &want);

  /* Into a new directory whose parents do not exist yet. */
  snprintf(dest, sizeof dest, "%s/a/b/restored", g_tmp);
  cr_assert_eq(rs_store_restore_dir(sp, dest, g_err, sizeof g_err), 0, "%s",
               g_err);
  dump(dest, &got);
  cr_expect_str_eq(got.data, want.data);
  /* Table files are shared with the savepoint (same file system). */
  DIR *d = opendir(dest);
  int linked = 0;
  for (struct dirent *e; (e = readdir(d));) {
    size_t n = strlen(e->d_name);
    if (n > 4 && !strcmp(e->d_name + n - 4, ".sst")) {
      char p[512];
      struct stat st;
      snprintf(p, sizeof p, "%s/%s", dest, e->d_name);
      cr_assert_eq(stat(p, &st), 0);
      linked += st.st_nlink > 1;
    }
  }
  closedir(d);
  cr_expect_gt(linked, 0, "no table file was hard-linked");
  /* The restored state opens for writing and is independent. */
  s = open_rw(dest);
  cr_assert_eq(
      rs_store_counter_add(s, rs_store_cf(s, "counts"), 0, "alice", 5, 1, NULL),
      0);
  rs_store_destroy(s);
  dump(sp, &got);
  cr_expect_str_eq(got.data, want.data,
                   "writing the copy changed the "
                   "savepoint");

  /* A database in the way is refused, with the way out. */
  cr_expect_eq(rs_store_restore_dir(sp, dest, g_err, sizeof g_err), RS_EINVAL);
  cr_expect(strstr(g_err, "already holds a state database") != NULL, "%s",
            g_err);
  cr_expect(strstr(g_err, "--reset-state") != NULL, "%s", g_err);
  /* So is a directory holding something else. */
  char other[200];
  snprintf(other, sizeof other, "%s/other", g_tmp);
  cr_assert_eq(mkdir(other, 0755), 0);
  write_file(other, "notes.txt", "mine");
  cr_expect_eq(rs_store_restore_dir(sp, other, g_err, sizeof g_err), RS_EINVAL);
  cr_expect(strstr(g_err, "not empty") != NULL, "%s", g_err);
  cr_expect(strstr(g_err, "notes.txt") != NULL, "%s", g_err);
  /* An empty directory is fine. */
  char empty[200];
  snprintf(empty, sizeof empty, "%s/empty", g_tmp);
  cr_assert_eq(mkdir(empty, 0755), 0);
  cr_expect_eq(rs_store_restore_dir(sp, empty, g_err, sizeof g_err), 0, "%s",
               g_err);
  /* An invalid savepoint restores nothing and creates nothing. */
  char bad[200], dest2[200];
  snprintf(bad, sizeof bad, "%s/not-a-savepoint", g_tmp);
  cr_assert_eq(mkdir(bad, 0755), 0);
  snprintf(dest2, sizeof dest2, "%s/dest2", g_tmp);
  cr_expect_eq(rs_store_restore_dir(bad, dest2, g_err, sizeof g_err),
               RS_ESTATE);
  cr_expect(strstr(g_err, "cannot restore from savepoint") != NULL, "%s",
            g_err);
  cr_expect_neq(access(dest2, F_OK), 0);
  snprintf(bad, sizeof bad, "%s/missing", g_tmp);
  cr_expect_eq(rs_store_restore_dir(bad, dest2, g_err, sizeof g_err),
               RS_ENOENT);
  /* state, sp, a, other, empty, not-a-savepoint: no temporary
   * directory is left behind. */
  cr_expect_eq(count_entries(g_tmp), 6, "leftovers in %s", g_tmp);
  rs_buf_free(&want);
  rs_buf_free(&got);
}

Test(state_cmd, reset_deletes_only_state_directories) {
  /* Missing or empty: nothing to do. */
  cr_expect_eq(rs_store_destroy_dir(g_state, g_err, sizeof g_err), 0);
  cr_assert_eq(mkdir(g_state, 0755), 0);
  cr_expect_eq(rs_store_destroy_dir(g_state, g_err, sizeof g_err), 0);
  /* Not a state directory: refused, untouched. */
  write_file(g_state, "precious.txt", "do not delete");
  cr_expect_eq(rs_store_destroy_dir(g_state, g_err, sizeof g_err), RS_EINVAL);
  cr_expect(strstr(g_err, "does not look like a recstream state directory") !=
                NULL,
            "%s", g_err);
  cr_expect(strstr(g_err, "precious.txt") != NULL, "%s", g_err);
  char p[200];
  snprintf(p, sizeof p, "%s/precious.txt", g_state);
  cr_expect_eq(access(p, F_OK), 0);
  cr_expect_eq(rs_store_destroy_dir(p, g_err, sizeof g_err), RS_EINVAL);
  cr_expect(strstr(g_err, "not a directory") != NULL, "%s", g_err);
  cr_expect_eq(access(p, F_OK), 0);
  cr_assert_eq(unlink(p), 0);

  /* A state directory (with a stale pid file): gone. */
  fill(g_state);
  write_file(g_state, RS_STATE_PID_FILE, "999999\n");
  cr_expect_eq(rs_store_destroy_dir(g_state, g_err, sizeof g_err), 0, "%s",
               g_err);
  cr_expect_neq(access(g_state, F_OK), 0, "%s is still there", g_state);

  /* A corrupt one too, which is what --reset-state is for; a file of the
   * user's in it is kept. */
  fill(g_state);
  write_file(g_state, "CURRENT", "garbage");
  write_file(g_state, "notes.txt", "mine");
  cr_expect_eq(rs_store_destroy_dir(g_state, g_err, sizeof g_err), 0, "%s",
               g_err);
  cr_expect_eq(count_entries(g_state), 1);
  snprintf(p, sizeof p, "%s/notes.txt", g_state);
  cr_expect_eq(access(p, F_OK), 0);

  /* A database that is open is refused. */
  cr_assert_eq(unlink(p), 0);
  rs_store_t *s = open_rw(g_state);
  cr_expect_eq(rs_store_destroy_dir(g_state, g_err, sizeof g_err), RS_ESTATE);
  cr_expect(strstr(g_err, RS_STORE_LOCKED_MSG) != NULL, "%s", g_err);
  rs_store_destroy(s);
  s = open_rw(g_state); /* still intact */
  rs_store_destroy(s);
}

Test(state_cmd, run_restore_and_reset_refusals) {
  write_config();
  fill(g_state);
  rs_buf_t b = {0}, want = {0}, got = {0};
  dump(g_state, &want);
  cr_expect_eq(run(&b, "run app.yaml --restore-from %s/nowhere", g_tmp), 1);
  cr_expect(strstr(b.data, "cannot restore from savepoint") != NULL, "%s",
            b.data);
  /* The savepoint is checked before anything is deleted. */
  cr_expect_eq(
      run(&b, "run app.yaml --reset-state --restore-from %s/nowhere", g_tmp),
      1);
  cr_expect(strstr(b.data, "cannot restore from savepoint") != NULL, "%s",
            b.data);
  dump(g_state, &got);
  cr_expect_str_eq(got.data, want.data);
  /* Restoring over existing state needs --reset-state. */
  char sp[160];
  snprintf(sp, sizeof sp, "%s/sp", g_tmp);
  rs_store_t *s = open_rw(g_state);
  cr_assert_eq(rs_store_savepoint(s, sp, g_err, sizeof g_err), 0, "%s", g_err);
  rs_store_destroy(s);
  cr_expect_eq(run(&b, "run app.yaml --restore-from sp"), 1);
  cr_expect(strstr(b.data, "pass --reset-state") != NULL, "%s", b.data);
  /* --reset-state on something that is not a state directory. */
  cr_expect_eq(
      run(&b, "run app.yaml --reset-state --set state.dir=%s/sp/..", g_tmp), 1);
  cr_expect(strstr(b.data, "does not look like a recstream state directory") !=
                NULL,
            "%s", b.data);
  cr_expect_eq(access(sp, F_OK), 0);
  cr_expect_eq(run(&b, "run --help"), 0);
  cr_expect(strstr(b.data, "--restore-from DIR") != NULL, "%s", b.data);
  cr_expect(strstr(b.data, "--reset-state") != NULL, "%s", b.data);
  cr_expect_eq(run(&b, "validate app.yaml --reset-state"), 2);
  cr_expect(strstr(b.data, "unknown option '--reset-state'") != NULL, "%s",
            b.data);
  rs_buf_free(&b);
  rs_buf_free(&want);
  rs_buf_free(&got);
}

/* ---- purge ---- */

Test(state_cmd, purge_a_partition) {
  write_config();
  fill(g_state);
  rs_buf_t b = {0};
  cr_assert_eq(run(&b, "state purge app.yaml --partition 1"), 0, "%s", b.data);
  cr_expect(strstr(b.data, "state dropped:    counts, vectors, texts") != NULL,
            "%s", b.data);
  cr_expect(strstr(b.data, "in [1] (was next_offset=98)") != NULL, "%s",
            b.data);
  cr_expect(strstr(b.data, "consumer group's committed offset") != NULL, "%s",
            b.data);
  cr_assert_eq(run(&b, "state inspect app.yaml"), 0);
  cr_expect_eq(count_lines(&b, "counts [1]"), 0, "%s", b.data);
  cr_expect_eq(count_lines(&b, "vectors [1]"), 0, "%s", b.data);
  cr_expect(has_line(&b, "counts [0] alice = 42 (counter)"), "%s", b.data);
  cr_expect(has_line(&b, "vectors [shared] 0x00ff10 = [0.5, -1.25, 3]"), "%s",
            b.data);
  cr_expect_eq(count_lines(&b, "in [1]"), 0, "%s", b.data);
  cr_expect(has_line(&b, "in [0] next_offset=120"), "%s", b.data);

  /* One operator; offsets of another topic only (none stored). */
  cr_assert_eq(run(&b, "state purge app.yaml --partition 2 --operator texts "
                       "--topic other"),
               0, "%s", b.data);
  cr_expect(strstr(b.data, "state dropped:    texts") != NULL, "%s", b.data);
  cr_expect(strstr(b.data, "offsets deleted:  none stored") != NULL, "%s",
            b.data);
  cr_assert_eq(run(&b, "state inspect app.yaml"), 0);
  cr_expect_eq(count_lines(&b, "texts [2]"), 0, "%s", b.data);
  cr_expect(has_line(&b, "in [2] next_offset=10"), "%s", b.data);

  cr_expect_eq(run(&b, "state purge app.yaml --partition 0 --operator nope"),
               2);
  cr_expect(strstr(b.data, "no operator named 'nope'") != NULL, "%s", b.data);
  cr_expect_eq(run(&b, "state purge app.yaml --partition shared"), 2);
  cr_expect(strstr(b.data, "shared state belongs to no partition") != NULL,
            "%s", b.data);
  cr_expect_eq(run(&b, "state purge app.yaml"), 2);
  cr_expect(strstr(b.data, "--partition is required") != NULL, "%s", b.data);
  cr_expect_eq(run(&b, "state purge app.yaml --partition 0 --key x"), 2);

  /* The store call under it. */
  rs_store_t *s = open_rw(g_state);
  cr_expect_eq(rs_store_delete_offset(s, "in", 0), 0);
  cr_expect_eq(rs_store_delete_offset(s, "in", 0), RS_ENOENT);
  cr_expect_eq(rs_store_delete_offset(s, "nope", 5), RS_ENOENT);
  rs_offset_t *o;
  size_t n;
  cr_assert_eq(rs_store_read_offsets(s, &o, &n), 0);
  cr_expect_eq(n, 1);
  cr_expect_eq(o[0].partition, 2);
  rs_store_offsets_free(o, n);
  rs_store_destroy(s);
  rs_buf_free(&b);
}

/* An operator an experiment splits keeps its state in one column family
 * per variant (NAME#VARIANT); its own (NAME) stays empty. --operator NAME
 * covers all of them, NAME#VARIANT just that one. */
Test(state_cmd, operator_split_by_an_experiment) {
  char p[160];
  snprintf(p, sizeof p, "%s/ab.yaml", g_tmp);
  FILE *f = fopen(p, "w");
  cr_assert_not_null(f);
  fputs("app: t\n"
        "kafka: { brokers: embedded }\n"
        "state: { dir: state }\n"
        "sources: [ { name: in, topic: in } ]\n"
        "operators:\n"
        "  - { name: parse, type: parse, input: in }\n"
        "  - { name: stats, type: user_stats, input: parse }\n"
        "  - { name: other, type: user_stats, input: parse }\n"
        "experiments:\n"
        "  - name: e\n"
        "    salt: s\n"
        "    operators: [stats]\n"
        "    variants: [ { name: A, weight: 1 }, { name: B, weight: 1 } ]\n"
        "sinks: [ { name: out, input: stats, topic: out } ]\n",
        f);
  fclose(f);
  static const char *const cfs[] = {"stats", "stats#A", "stats#B", "other"};
  rs_store_t *s = NULL;
  cr_assert_eq(rs_store_open(g_state, cfs, 4, NULL, &s, g_err, sizeof g_err), 0,
               "%s", g_err);
  int a = rs_store_cf(s, "stats#A"), b = rs_store_cf(s, "stats#B"),
      o = rs_store_cf(s, "other");
  rs_offset_t off = {.topic = "in", .partition = 0, .next_offset = 9};
  cr_assert_eq(rs_store_put(s, a, 0, "u0", 2, "a0", 2) ||
                   rs_store_put(s, a, 1, "u2", 2, "a1", 2) ||
                   rs_store_put(s, b, 0, "u1", 2, "b0", 2) ||
                   rs_store_put(s, o, 0, "x", 1, "o0", 2) ||
                   rs_store_checkpoint(s, NULL, &off, 1),
               0);
  rs_store_destroy(s);

  rs_buf_t out = {0};
  cr_assert_eq(run(&out, "state inspect ab.yaml --operator stats"), 0, "%s",
               out.data);
  cr_expect(has_line(&out, "stats#A [0] u0 = \"a0\""), "%s", out.data);
  cr_expect(has_line(&out, "stats#A [1] u2 = \"a1\""), "%s", out.data);
  cr_expect(has_line(&out, "stats#B [0] u1 = \"b0\""), "%s", out.data);
  cr_expect_eq(count_lines(&out, "other "), 0, "%s", out.data);
  cr_assert_eq(run(&out, "state inspect ab.yaml --operator 'stats#B'"), 0, "%s",
               out.data);
  cr_expect(has_line(&out, "stats#B [0] u1 = \"b0\""), "%s", out.data);
  cr_expect_eq(count_lines(&out, "stats#A "), 0, "%s", out.data);

  cr_assert_eq(run(&out, "state purge ab.yaml --partition 0 --operator stats"),
               0, "%s", out.data);
  cr_expect(strstr(out.data, "state dropped:    stats, stats#A, stats#B") !=
                NULL,
            "%s", out.data);
  cr_assert_eq(run(&out, "state inspect ab.yaml"), 0, "%s", out.data);
  cr_expect_eq(count_lines(&out, "stats#A [0]"), 0, "%s", out.data);
  cr_expect_eq(count_lines(&out, "stats#B [0]"), 0, "%s", out.data);
  cr_expect(has_line(&out, "stats#A [1] u2 = \"a1\""), "%s", out.data);
  cr_expect(has_line(&out, "other [0] x = \"o0\""), "%s", out.data);
  rs_buf_free(&out);
}
