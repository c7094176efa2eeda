/* Tests of the operator harness's state backing: state_* through the real
 * store and cache (partition scoping, RS_PARTITION_SHARED, the minor-1
 * helpers), the borrowing rules it enforces, eviction under a tiny cache
 * bound, and restarts: a clean one keeps everything, a crash keeps exactly
 * what the last checkpoint wrote. A test-only operator hands its rs_op_t
 * and host table to the tests, which then call state_* directly. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "operators/harness.h"
#include "util.h"

typedef struct probe_ctx {
  char *tag; /* option */
  int64_t limit;
  rs_op_t *op;
  const rs_host_api_t *host;
  int inits; /* zeroed by every re-creation */
} probe_ctx_t;

/* Calls seen by the probe operator across restarts. */
static int g_inits, g_destroys, g_checkpoints;

static int probe_init(rs_op_t *op, void *vctx, const rs_host_api_t *host,
                      char *errstr, size_t errstr_size) {
  probe_ctx_t *c = vctx;
  c->op = op;
  c->host = host;
  c->inits++;
  g_inits++;
  return 0;
}

static int probe_process(rs_op_t *op, void *vctx, const rs_batch_t *batch) {
  return 0;
}

static int probe_checkpoint(rs_op_t *op, void *vctx) {
  g_checkpoints++;
  return 0;
}

static void probe_destroy(rs_op_t *op, void *vctx) {
  g_destroys++;
}

static const rs_option_def_t probe_options[] = {
    {RS_OPT_STRING, "tag", "none", offsetof(probe_ctx_t, tag), 0, -1, NULL,
     "A string the tests read back after a restart."},
    {RS_OPT_INT, "limit", "3", offsetof(probe_ctx_t, limit), 1, 100, NULL,
     "An integer the tests read back after a restart."},
};

static const rs_operator_def_t probe_def = {
    .abi_version = RS_ABI_VERSION,
    .struct_size = sizeof(rs_operator_def_t),
    .name = "probe",
    .description = "Test operator that exposes its host table.",
    .ctx_size = sizeof(probe_ctx_t),
    .options = probe_options,
    .n_options = 2,
    .min_inputs = 1,
    .max_inputs = 1,
    .init = probe_init,
    .process = probe_process,
    .checkpoint = probe_checkpoint,
    .destroy = probe_destroy,
};

static rs_harness_t *make(const char *const *opts) {
  char err[1024] = "";
  g_inits = g_destroys = g_checkpoints = 0;
  rs_harness_t *h = rs_harness_new(&probe_def, opts, err, sizeof(err));
  cr_assert_not_null(h, "rs_harness_new: %s", err);
  return h;
}

static probe_ctx_t *ctx(rs_harness_t *h) {
  return rs_harness_ctx(h);
}

static void put(rs_harness_t *h, int32_t p, const char *k, const char *v) {
  probe_ctx_t *c = ctx(h);
  int rc = c->host->state_put(c->op, p, k, strlen(k), v, strlen(v));
  cr_assert_eq(rc, 0, "put %d/%s: %d %s", p, k, rc, rs_harness_errmsg(h));
}

/* The value as a string, or NULL if absent (asserts on other errors). */
static const char *get(rs_harness_t *h, int32_t p, const char *k) {
  static char out[256];
  probe_ctx_t *c = ctx(h);
  void *v;
  size_t n;
  int rc = c->host->state_get(c->op, p, k, strlen(k), &v, &n);
  if (rc == RS_ENOENT)
    return NULL;
  cr_assert_eq(rc, 0, "get %d/%s: %d %s", p, k, rc, rs_harness_errmsg(h));
  cr_assert_lt(n, sizeof(out));
  memcpy(out, v, n);
  out[n] = '\0';
  return out;
}

static void assert_get(rs_harness_t *h, int32_t p, const char *k,
                       const char *expected) {
  const char *v = get(h, p, k);
  if (!expected)
    cr_assert_null(v, "%d/%s: expected absent, got '%s'", p, k, v);
  else
    cr_assert(v && strcmp(v, expected) == 0, "%d/%s: expected '%s', got '%s'",
              p, k, expected, v ? v : "(absent)");
}

typedef struct collected {
  char text[512];
  int entries;
} collected_t;

static int collect(void *opaque, const void *key, size_t key_len,
                   const void *value, size_t value_len) {
  collected_t *c = opaque;
  size_t len = strlen(c->text);
  snprintf(c->text + len, sizeof(c->text) - len, "%.*s=%.*s;", (int)key_len,
           (const char *)key, (int)value_len, (const char *)value);
  c->entries++;
  return 0;
}

static const char *scan(rs_harness_t *h, int32_t p, const char *prefix) {
  static collected_t c;
  memset(&c, 0, sizeof(c));
  probe_ctx_t *pc = ctx(h);
  int rc = pc->host->state_scan(pc->op, p, prefix, strlen(prefix), collect, &c);
  cr_assert_eq(rc, 0, "scan: %d %s", rc, rs_harness_errmsg(h));
  return c.text;
}

Test(harness, state_is_scoped_by_partition_and_shared_is_its_own) {
  rs_harness_t *h = make(NULL);
  put(h, 0, "k", "zero");
  put(h, 1, "k", "one");
  put(h, RS_PARTITION_SHARED, "k", "shared");
  put(h, 1, "k2", "one-b");
  put(h, 1, "j", "one-j");
  assert_get(h, 0, "k", "zero");
  assert_get(h, 1, "k", "one");
  assert_get(h, RS_PARTITION_SHARED, "k", "shared");
  assert_get(h, 2, "k", NULL);

  cr_assert_str_eq(scan(h, 1, "k"), "k=one;k2=one-b;");
  cr_assert_str_eq(scan(h, 1, ""), "j=one-j;k=one;k2=one-b;");
  cr_assert_str_eq(scan(h, RS_PARTITION_SHARED, ""), "k=shared;");

  probe_ctx_t *c = ctx(h);
  cr_assert_eq(c->host->state_delete(c->op, 0, "k", 1), 0);
  assert_get(h, 0, "k", NULL);
  cr_assert_eq(c->host->state_delete(c->op, 0, "absent", 6), 0);

  /* Only -1 is special among negative partitions. */
  void *v;
  size_t n;
  cr_assert_eq(c->host->state_get(c->op, -2, "k", 1, &v, &n), RS_EINVAL);
  cr_assert_eq(c->host->state_put(c->op, -7, "k", 1, "x", 1), RS_EINVAL);

  /* The same survives the store: checkpoint, reopen, read again. */
  cr_assert_eq(rs_harness_checkpoint(h), 0);
  cr_assert_eq(rs_harness_restart(h, 1), 0);
  assert_get(h, 1, "k", "one");
  assert_get(h, RS_PARTITION_SHARED, "k", "shared");
  assert_get(h, 0, "k", NULL);
  cr_assert_str_eq(scan(h, RS_PARTITION_SHARED, ""), "k=shared;");
  rs_harness_destroy(h);
}

Test(harness, minor_one_helpers) {
  rs_harness_t *h = make(NULL);
  probe_ctx_t *c = ctx(h);
  cr_assert(RS_HOST_HAS(c->host, state_counter_add));
  int64_t r = 0;
  cr_assert_eq(
      c->host->state_counter_add(c->op, RS_PARTITION_SHARED, "n", 1, 2, &r), 0);
  cr_assert_eq(r, 2);
  cr_assert_eq(
      c->host->state_counter_add(c->op, RS_PARTITION_SHARED, "n", 1, 40, &r),
      0);
  cr_assert_eq(r, 42);
  cr_assert_eq(c->host->state_counter_add(c->op, 0, "n", 1, 1, &r), 0);
  cr_assert_eq(r, 1, "partition 0's counter is not the shared one");
  const void *v;
  size_t n;
  cr_assert_eq(rs_harness_state_get(h, RS_PARTITION_SHARED, "n", 1, &v, &n), 0);
  cr_assert_eq(n, 8);
  cr_assert_eq(memcmp(v, "\x2a\0\0\0\0\0\0\0", 8), 0, "not 8 bytes LE");

  put(h, 0, "odd", "abc");
  cr_assert_eq(c->host->state_counter_add(c->op, 0, "odd", 3, 1, NULL),
               RS_ERANGE);

  const float in[3] = {1.5f, -2.0f, 0.25f};
  float out[3] = {0};
  cr_assert_eq(c->host->state_put_floats(c->op, 4, "f", 1, in, 3), 0);
  cr_assert_eq(c->host->state_get_floats(c->op, 4, "f", 1, out, 3), 0);
  cr_assert_eq(memcmp(in, out, sizeof(in)), 0);
  cr_assert_eq(c->host->state_get_floats(c->op, 4, "f", 1, out, 2), RS_ERANGE);
  cr_assert_eq(c->host->state_get_floats(c->op, 5, "f", 1, out, 3), RS_ENOENT);
  rs_harness_destroy(h);
}

static int scan_calls_state(void *opaque, const void *key, size_t key_len,
                            const void *value, size_t value_len) {
  probe_ctx_t *c = opaque;
  void *v;
  size_t n;
  return c->host->state_get(c->op, 0, "a", 1, &v, &n) == RS_EINVAL ? 7 : 1;
}

Test(harness, borrowing_rules_are_enforced) {
  rs_harness_t *h = make(NULL);
  probe_ctx_t *c = ctx(h);
  put(h, 0, "a", "apple");
  void *v;
  size_t n;
  cr_assert_eq(c->host->state_get(c->op, 0, "a", 1, &v, &n), 0);
  cr_assert_eq(n, 5);
  cr_assert_eq(memcmp(v, "apple", 5), 0);
  /* Writing through the lent pointer must not reach the state. */
  memcpy(v, "APPLE", 5);
  assert_get(h, 0, "a", "apple");
  /* The next state call ends the borrow: the old bytes are gone. */
  cr_assert_eq(c->host->state_get(c->op, 0, "a", 1, &v, &n), 0);
  cr_assert_eq(c->host->state_put(c->op, 0, "b", 1, "x", 1), 0);
  cr_assert_neq(memcmp(v, "apple", 5), 0, "borrowed value still readable");

  /* state_* from inside a scan callback is refused. */
  cr_assert_eq(c->host->state_scan(c->op, 0, "", 0, scan_calls_state, c), 7);
  assert_get(h, 0, "a", "apple");
  rs_harness_destroy(h);
}

Test(harness, restart_keeps_checkpointed_state_only_after_a_crash) {
  const char *opts[] = {"tag", "blue", "limit", "9", NULL};
  rs_harness_t *h = make(opts);
  put(h, 0, "a", "1");
  cr_assert_eq(rs_harness_checkpoint(h), 0);
  cr_assert_eq(g_checkpoints, 1, "operator checkpoint() not called");
  put(h, 0, "a", "3");
  put(h, 0, "b", "2");
  put(h, RS_PARTITION_SHARED, "s", "late");
  cr_assert_eq(rs_harness_restart(h, 1), 0, "%s", rs_harness_errmsg(h));
  cr_assert_eq(g_destroys, 1);
  cr_assert_eq(g_inits, 2);
  cr_assert_eq(g_checkpoints, 1, "a crash does not checkpoint");
  assert_get(h, 0, "a", "1");
  assert_get(h, 0, "b", NULL);
  assert_get(h, RS_PARTITION_SHARED, "s", NULL);

  /* Re-created from scratch with the same options. */
  cr_assert_eq(ctx(h)->inits, 1);
  cr_assert_str_eq(ctx(h)->tag, "blue");
  cr_assert_eq(ctx(h)->limit, 9);

  put(h, 0, "c", "4");
  cr_assert_eq(rs_harness_restart(h, 0), 0, "%s", rs_harness_errmsg(h));
  cr_assert_eq(g_checkpoints, 2, "a clean restart checkpoints the operator");
  cr_assert_eq(g_destroys, 2);
  assert_get(h, 0, "c", "4");
  assert_get(h, 0, "a", "1");

  /* What the test writes follows the same rule. */
  cr_assert_eq(rs_harness_state_put(h, 3, "t", 1, "v", 1), 0);
  cr_assert_eq(rs_harness_restart(h, 1), 0);
  const void *v;
  size_t n;
  cr_assert_eq(rs_harness_state_get(h, 3, "t", 1, &v, &n), RS_ENOENT);
  rs_harness_destroy(h);
  cr_assert_eq(g_destroys, 4);
}

Test(harness, tiny_cache_evicts_and_reads_back) {
  rs_harness_t *h = make(NULL);
  cr_assert_eq(rs_harness_set_cache_bytes(h, 4096), 0);
  char k[32], val[64];
  for (int i = 0; i < 500; i++) {
    snprintf(k, sizeof(k), "key-%04d", i);
    snprintf(val, sizeof(val), "value-%d-%s", i * 7, "padding-padding");
    put(h, i % 3, k, val);
  }
  rs_cache_stats_t st;
  rs_harness_cache_stats(h, &st);
  cr_assert_gt(st.evictions, 0, "a 4 KiB cache evicted nothing");
  cr_assert_leq(st.total_bytes, 4096);
  cr_assert_eq(rs_harness_set_cache_bytes(h, 8192), RS_EINVAL,
               "replaced a cache holding dirty state");
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < 500; i++) {
      snprintf(k, sizeof(k), "key-%04d", i);
      snprintf(val, sizeof(val), "value-%d-%s", i * 7, "padding-padding");
      assert_get(h, i % 3, k, val);
      assert_get(h, (i + 1) % 3, k, NULL);
    }
    cr_assert_eq(rs_harness_checkpoint(h), 0);
    cr_assert_eq(rs_harness_restart(h, 1), 0);
    rs_harness_cache_stats(h, &st);
    cr_assert_eq(st.bound_bytes, 4096, "the bound does not survive restart");
  }
  cr_assert_eq(rs_harness_set_cache_bytes(h, 0), 0);
  rs_harness_cache_stats(h, &st);
  cr_assert_eq(st.bound_bytes, RS_HARNESS_CACHE_BYTES);
  rs_harness_destroy(h);
}

Test(harness, older_host_and_directory_lifetime) {
  rs_harness_t *h = make(NULL);
  rs_harness_set_host_struct_size(
      h, (uint32_t)offsetof(rs_host_api_t, state_get_floats));
  cr_assert_not(RS_HOST_HAS(ctx(h)->host, state_counter_add));
  cr_assert(RS_HOST_HAS(ctx(h)->host, state_get));
  rs_harness_set_host_struct_size(h, 0);
  cr_assert(RS_HOST_HAS(ctx(h)->host, state_counter_add));

  char dir[4096];
  snprintf(dir, sizeof(dir), "%s", rs_harness_state_dir(h));
  cr_assert_eq(access(dir, F_OK), 0, "no state directory %s", dir);
  put(h, 0, "a", "1");
  cr_assert_eq(rs_harness_checkpoint(h), 0);
  rs_harness_destroy(h);
  cr_assert_neq(access(dir, F_OK), 0, "%s left behind", dir);
}

Test(harness, peer_reads_see_the_peer_state_read_only) {
  rs_harness_t *model = make(NULL);
  put(model, 0, "k", "model-p0");
  put(model, RS_PARTITION_SHARED, "k", "model-shared");
  char err[1024] = "";
  rs_harness_t *h = rs_harness_new_with_peer(&probe_def, NULL, "model", model,
                                             err, sizeof err);
  cr_assert_not_null(h, "%s", err);
  probe_ctx_t *c = ctx(h);
  cr_assert(RS_HOST_HAS(c->host, peer_open) &&
            RS_HOST_HAS(c->host, peer_state_get));
  cr_assert_eq(c->host->peer_open(c->op, "other"), RS_ENOENT);
  int ph = c->host->peer_open(c->op, "model");
  cr_assert_geq(ph, 0);
  void *v;
  size_t n;
  cr_assert_eq(c->host->peer_state_get(c->op, ph, 0, "k", 1, &v, &n), 0);
  cr_assert_eq(n, 8);
  cr_assert_eq(memcmp(v, "model-p0", 8), 0);
  /* Partition scoping as for the peer itself; its own state is apart. */
  cr_assert_eq(
      c->host->peer_state_get(c->op, ph, RS_PARTITION_SHARED, "k", 1, &v, &n),
      0);
  cr_assert_eq(memcmp(v, "model-shared", 12), 0);
  cr_assert_eq(c->host->peer_state_get(c->op, ph, 1, "k", 1, &v, &n),
               RS_ENOENT);
  assert_get(h, 0, "k", NULL);
  /* The peer's later (uncheckpointed) writes are visible; writing through
   * the lent pointer changes nothing; the next call ends the borrow. */
  put(model, 0, "k", "v2");
  cr_assert_eq(c->host->peer_state_get(c->op, ph, 0, "k", 1, &v, &n), 0);
  cr_assert_eq(n, 2);
  memcpy(v, "XX", 2);
  assert_get(model, 0, "k", "v2");
  cr_assert_eq(c->host->peer_state_get(c->op, ph, 0, "k", 1, &v, &n), 0);
  put(h, 0, "mine", "x");
  cr_assert_neq(memcmp(v, "v2", 2), 0, "borrowed value still readable");
  cr_assert_eq(c->host->peer_state_get(c->op, ph + 1, 0, "k", 1, &v, &n),
               RS_EINVAL);
  /* A harness without a peer has nothing to open. */
  probe_ctx_t *mc = ctx(model);
  cr_assert_eq(mc->host->peer_open(mc->op, "model"), RS_ENOENT);
  rs_harness_destroy(h);
  rs_harness_destroy(model);
}

Test(harness, port_wanted_answers_as_set) {
  rs_harness_t *h = make(NULL);
  const rs_host_api_t *host = ctx(h)->host;
  rs_op_t *op = ctx(h)->op;
  cr_assert(RS_HOST_HAS(host, port_wanted));
  cr_assert_eq(host->port_wanted(op, 0), 1, "ports are wanted by default");
  cr_assert_eq(host->port_wanted(op, 1), 0, "the probe has one port");
  cr_assert_eq(host->port_wanted(op, 99), 0);
  rs_harness_set_port_wanted(h, 0, 0);
  cr_assert_eq(host->port_wanted(op, 0), 0);
  /* Emits on an unwanted port are allowed (and collected here). */
  rs_record_t r = {.kind = RS_KIND_BYTES, .key = "k", .key_len = 1};
  cr_assert_eq(host->emit(op, 0, &r), 0);
  cr_assert_eq(rs_harness_emitted_count(h, 0), 1);
  rs_harness_set_port_wanted(h, 0, 1);
  cr_assert_eq(host->port_wanted(op, 0), 1);
  /* An older host has no port_wanted. */
  rs_harness_set_host_struct_size(h,
                                  (uint32_t)offsetof(rs_host_api_t, variant));
  cr_assert_not(RS_HOST_HAS(host, port_wanted));
  rs_harness_set_host_struct_size(h, 0);
  rs_harness_destroy(h);
}

/* query() as the engine runs it: reads allowed, writes, emit() and
 * dead_letter() refused; what the operator answers comes back
 * NUL-terminated; no query() at all is RS_ENOTSUP. */
static int g_q_put, g_q_emit, g_q_dlq;

static int probe_query(rs_op_t *op, void *vctx, int32_t partition,
                       const void *key, size_t key_len, char **json,
                       size_t *json_len) {
  probe_ctx_t *c = vctx;
  void *v;
  size_t n;
  int rc = c->host->state_get(op, partition, key, key_len, &v, &n);
  if (rc)
    return rc;
  *json = c->host->malloc(n + 2);
  if (!*json)
    return RS_ENOMEM;
  (*json)[0] = '"';
  memcpy(*json + 1, v, n); /* before the next state call ends the borrow */
  (*json)[n + 1] = '"';
  *json_len = n + 2;
  rs_record_t r = {.kind = RS_KIND_BYTES, .key = key, .key_len = key_len};
  g_q_put = c->host->state_put(op, partition, "k", 1, "v", 1);
  g_q_emit = c->host->emit(op, 0, &r);
  g_q_dlq = c->host->dead_letter(op, &r, "no");
  return 0;
}

Test(harness, query_reads_only_and_returns_the_answer) {
  rs_harness_t *h = make(NULL);
  char *json;
  size_t len;
  cr_assert_eq(rs_harness_query(h, 0, "u", 1, &json, &len), RS_ENOTSUP);
  rs_harness_destroy(h);

  rs_operator_def_t def = probe_def;
  def.query = probe_query;
  char err[1024] = "";
  h = rs_harness_new(&def, NULL, err, sizeof err);
  cr_assert_not_null(h, "%s", err);
  cr_assert_eq(rs_harness_query(h, 0, "u", 1, &json, &len), RS_ENOENT);
  cr_assert_null(json);
  cr_assert_eq(rs_harness_state_put(h, 0, "u", 1, "abc", 3), 0);
  cr_assert_eq(rs_harness_query(h, 0, "u", 1, &json, &len), 0);
  cr_assert_eq(len, 5);
  cr_assert_str_eq(json, "\"abc\"");
  rs_free(json);
  cr_assert_eq(g_q_put, RS_EINVAL);
  cr_assert_eq(g_q_emit, RS_EINVAL);
  cr_assert_eq(g_q_dlq, RS_EINVAL);
  const void *v;
  size_t n;
  cr_assert_eq(rs_harness_state_get(h, 0, "k", 1, &v, &n), RS_ENOENT,
               "the refused write reached the state");
  cr_assert_eq(rs_harness_emitted_count(h, 0), 0);
  cr_assert_eq(rs_harness_dead_count(h), 0);
  rs_harness_destroy(h);
}
