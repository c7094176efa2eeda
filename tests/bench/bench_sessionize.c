/* Benchmark of the sessionize operator (issue 4), not part of the test
 * suite:
 *
 *   cmake --build build --target bench_sessionize && \
 *       build/bench/bench_sessionize [--events 1000000] [--users 100000] \
 *       [--partitions 16] [--rounds 3] [--ooo 30s] [--scattered] \
 *       [--engine [--pin]]
 *
 * Two readings of the target (sessionize at >= 0.5 of the
 * parse-only rate, on one core, same run): the operator against parse
 * alone, in process without Kafka (the default; sessions 6-10's reading),
 * and the two pipelines through the engine on one core (`--rounds 5
 * --only s --engine --pin`, its last line), the reading session 14 took
 * and claims. docs/SESSIONS.md gives both.
 *
 * One core, one thread, in process: a seeded generator stream (--events
 * over --users, examples/generator) is encoded as Avro once, split over
 * --partitions by a hash of the user, each partition's bytes laid out
 * contiguously in order (as in the fetch buffers the engine's batches
 * point into; --scattered leaves them in stream order, each record a
 * cache miss of its own, as before session 11), and fed in batches of 1000
 * records per partition (round robin over partitions, as the engine's
 * batches come)
 * through the operators' real code, with the engine's state path: keyed
 * state in a write-back cache (128 MiB, the default) over RocksDB, a
 * checkpoint (the operator's checkpoint() callback, then the store's
 * write) every second of processing or when the cache asks for one, and
 * a final one at the end, all timed with the rest. A small host table plays the
 * engine (emit appends to per-port arrays, batch memory is an arena reset per
 * batch); no Kafka, so the figures are the operators' own cost.
 *
 * Pipelines, alternated for --rounds rounds (each with a fresh state
 * directory) after one uncounted warm-up run of each, best round reported:
 *   parse                       the baseline
 *   parse -> sessionize         gap 30m, grace 5m, max_session_duration 4h,
 *                               max_out_of_orderness --ooo (records wait
 *                               in state for the watermark)
 *   parse -> sessionize (ooo 0) the same with records applied on arrival
 *   parse -> user_stats (none)  for scale: the simplest stateful per-user
 *                               operator (a get and a put per event)
 *   parse -> floor              not an operator: a sessionizer for this
 *                               stream written for speed alone, without
 *                               the operator's other duties
 *                               (tests/bench/sessionize_floor.c): how far
 *                               a leaner design gets here (a bound from
 *                               above on the least reachable cost)
 * Printed per round: the ratio of each pipeline to parse in the same round
 * by wall time and by process CPU time (the latter steadier on a loaded
 * machine), and where the time went (operator, checkpoint(), store writes,
 * parse and the rest; thread CPU per event in parse's and the operator's
 * process()); then the best round's events/s, per-batch p50/p99,
 * sessions closed, peak RSS, and the medians of the ratios (the operator
 * against parse alone, no Kafka; 0.5 is not reached in this reading), then the
 * median of the operator's thread CPU per
 * event and of its ratio to parse's in the same run (a diagnostic for A/B
 * comparisons of the operator: it moves less with the load). Absolute
 * numbers on a shared machine are noise.
 * --only s|s0|us|f runs parse and that one pipeline (for perf record).
 *
 * --engine then also runs the stream through the whole engine on the
 * embedded broker: source -> parse -> sink against source -> parse ->
 * sessionize -> sinks (events, sessions, late), --rounds rounds, the order
 * swapped each round, each with its own consumer group, state directory
 * and output topics, plus raw librdkafka consumption of the topic (the
 * project's baseline) and a raw librdkafka consume -> produce copy of it
 * with the engine's producer settings (what any pipeline that reads and
 * writes every record costs at least: the parse-only engine's rate as a
 * fraction of it shows whether the ratio's baseline is the engine's real
 * cost or a slowed one). That ratio includes Kafka consumption and
 * production, as a user of the engine sees it. --pin binds this process to
 * CPU 0 from the start (the engine's loop and librdkafka's and RocksDB's
 * threads inherit it) and the embedded broker, the test's harness and not
 * part of the engine, to CPU 1: "on one core". The engine's own CPU time
 * is then the process's minus the broker threads' (/proc schedstat), and
 * the ratio of those CPU times is the rate ratio on one core where the
 * engine, not the broker, is the limit (the parse-only engine is not
 * always CPU-bound behind the embedded broker, which serves one message
 * set per partition per fetch).
 */
#define _GNU_SOURCE /* sched_setaffinity, CPU_SET */
#include <dirent.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "common.h"
#include "examples/generator/generator.h"
#include "kafka.h"
#include "recstream/operator.h"
#include "state/cache.h"
#include "state/store.h"
#include "util.h"

extern const rs_operator_def_t rs_op_parse;
extern const rs_operator_def_t rs_op_sessionize;
extern const rs_operator_def_t rs_op_user_stats;
extern const rs_operator_def_t
    rs_bench_sessionize_floor; /* sessionize_floor.c */

#define BATCH 1000
#define CACHE_BYTES ((size_t)128 << 20)

struct rs_counter {
  struct rs_counter *next;
  char name[64];
  uint64_t value;
};

typedef struct outbuf {
  rs_record_t *recs;
  size_t n, cap;
} outbuf_t;

/* One operator instance on the bench host. */
struct rs_op {
  const rs_operator_def_t *def;
  void *ctx;
  rs_host_api_t host;
  int cf;
  outbuf_t out[3];
  struct rs_counter *counters;
  uint64_t dead;
};

typedef struct bench_state {
  rs_store_t *store;
  rs_cache_t *cache;
  rs_arena_t arena;
} bench_state_t;

static bench_state_t *B; /* the one state of the current run */

static int h_emit(rs_op_t *op, uint32_t port, const rs_record_t *rec) {
  outbuf_t *o = &op->out[port];
  if (o->n == o->cap) {
    o->cap = o->cap ? 2 * o->cap : 4096;
    o->recs = realloc(o->recs, o->cap * sizeof(rs_record_t));
    if (!o->recs)
      bench_die("emit", "out of memory");
  }
  o->recs[o->n++] = *rec;
  return 0;
}

static int h_dead(rs_op_t *op, const rs_record_t *rec, const char *error) {
  (void)rec;
  if (op->dead++ == 0)
    fprintf(stderr, "%s: dead letter: %s\n", op->def->name, error);
  return 0;
}

static void *h_batch_alloc(rs_op_t *op, size_t size) {
  (void)op;
  return rs_arena_alloc(&B->arena, size);
}

static void h_log(rs_op_t *op, int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (level <= RS_LOG_WARN) {
    fprintf(stderr, "%s: ", op->def->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
  }
  va_end(ap);
}

static rs_counter_t *h_counter(rs_op_t *op, const char *name,
                               const char *help) {
  (void)help;
  struct rs_counter *c = calloc(1, sizeof(*c));
  snprintf(c->name, sizeof c->name, "%s", name);
  c->next = op->counters;
  op->counters = c;
  return c;
}

static void h_counter_add(rs_counter_t *c, uint64_t n) {
  c->value += n;
}

static int h_get(rs_op_t *op, int32_t p, const void *k, size_t kl, void **v,
                 size_t *vl) {
  const void *cv = NULL;
  int rc = rs_cache_get(B->cache, op->cf, p, k, kl, &cv, vl);
  *v = (void *)cv;
  return rc;
}
static int h_put(rs_op_t *op, int32_t p, const void *k, size_t kl,
                 const void *v, size_t vl) {
  return rs_cache_put(B->cache, op->cf, p, k, kl, v, vl);
}
static int h_delete(rs_op_t *op, int32_t p, const void *k, size_t kl) {
  return rs_cache_delete(B->cache, op->cf, p, k, kl);
}
static int h_scan(rs_op_t *op, int32_t p, const void *prefix, size_t pl,
                  int (*cb)(void *, const void *, size_t, const void *, size_t),
                  void *opaque) {
  return rs_cache_scan(B->cache, op->cf, p, prefix, pl, cb, opaque);
}
static int h_timer_set(rs_op_t *op, int32_t p, int64_t when, const void *tag,
                       size_t tl) {
  return RS_ENOTSUP;
}
static uint64_t h_random(rs_op_t *op, const void *key, size_t kl,
                         int64_t offset, uint64_t stream) {
  return rs_mix64(rs_hash64(key, kl, 42) ^ (uint64_t)offset ^ stream);
}

static uint64_t counter(const rs_op_t *op, const char *name) {
  for (const struct rs_counter *c = op->counters; c; c = c->next)
    if (!strcmp(c->name, name))
      return c->value;
  return 0;
}

/* Options as NULL-terminated key/value pairs, applied like the harness:
 * by hand, for the few the bench sets. */
static rs_op_t *op_new(const rs_operator_def_t *def, const char *const *kv) {
  rs_op_t *op = calloc(1, sizeof(*op));
  op->def = def;
  op->ctx = calloc(1, def->ctx_size);
  op->cf = rs_store_cf(B->store, def->name);
  op->host = (rs_host_api_t){.abi_version = RS_ABI_VERSION,
                             .struct_size = sizeof(rs_host_api_t),
                             .emit = h_emit,
                             .dead_letter = h_dead,
                             .batch_alloc = h_batch_alloc,
                             .malloc = rs_malloc,
                             .calloc = rs_calloc,
                             .realloc = rs_realloc,
                             .free = rs_free,
                             .log = h_log,
                             .counter = h_counter,
                             .counter_add = h_counter_add,
                             .state_get = h_get,
                             .state_put = h_put,
                             .state_delete = h_delete,
                             .state_scan = h_scan,
                             .timer_set = h_timer_set,
                             .random = h_random};
  for (size_t i = 0; i < def->n_options; i++) {
    const rs_option_def_t *o = &def->options[i];
    const char *v = o->default_value;
    for (size_t k = 0; kv && kv[k]; k += 2)
      if (!strcmp(kv[k], o->name))
        v = kv[k + 1];
    if (!v)
      bench_die(def->name, "a required option is missing");
    char *field = (char *)op->ctx + o->offset;
    int64_t i64 = 0;
    int e;
    switch (o->type) {
    case RS_OPT_DURATION:
      if (rs_parse_duration_ms(v, &i64))
        bench_die(o->name, v);
      memcpy(field, &i64, 8);
      break;
    case RS_OPT_SIZE:
      if (rs_parse_size(v, &i64))
        bench_die(o->name, v);
      memcpy(field, &i64, 8);
      break;
    case RS_OPT_INT:
      i64 = atoll(v);
      memcpy(field, &i64, 8);
      break;
    case RS_OPT_ENUM: {
      /* index of v in "a|b|c" */
      const char *q = o->enum_values;
      size_t vl = strlen(v);
      for (e = 0; q; e++) {
        const char *bar = strchr(q, '|');
        size_t l = bar ? (size_t)(bar - q) : strlen(q);
        if (l == vl && !strncmp(q, v, l))
          break;
        q = bar ? bar + 1 : NULL;
      }
      if (!q)
        bench_die(o->name, v);
      memcpy(field, &e, sizeof e);
      break;
    }
    case RS_OPT_STRING:
      *(char **)(void *)field = (char *)v;
      break;
    default:
      bench_die(o->name, "option type not handled by the bench");
    }
  }
  char err[512];
  if (def->init(op, op->ctx, &op->host, err, sizeof err))
    bench_die(def->name, err);
  return op;
}

static void op_free(rs_op_t *op) {
  if (op->def->destroy)
    op->def->destroy(op, op->ctx);
  for (int p = 0; p < 3; p++)
    free(op->out[p].recs);
  while (op->counters) {
    struct rs_counter *c = op->counters;
    op->counters = c->next;
    free(c);
  }
  free(op->ctx);
  free(op);
}

/* The input: records per partition, in stream order. */
typedef struct input {
  rs_record_t *recs;
  size_t n;
  size_t *part_start; /* recs of partition p: [part_start[p], [p+1]) */
  int parts;
  char *bytes;
} input_t;

/* scattered: leave each record's bytes where the generator wrote them (a
 * partition's records then lie 1 in `parts` apart in stream order, each a
 * cache miss of its own: what this bench did before session 11). Otherwise
 * each partition's bytes are contiguous and in order, as in the fetch
 * buffers the engine's batches point into. */
static void make_input(input_t *in, long events, long users, int parts,
                       int scattered) {
  rs_gen_opts_t o;
  rs_gen_opts_default(&o);
  o.users = (uint32_t)users;
  rs_gen_t *g = rs_gen_new(&o);
  rs_codec_t *codec;
  char err[256];
  if (!g || rs_codec_new(&codec, NULL, err, sizeof err))
    bench_die("input", "generator or codec");
  rs_buf_t b = {0};
  size_t *off = malloc((size_t)events * sizeof *off);
  int *part = malloc((size_t)events * sizeof *part);
  size_t *klen = malloc((size_t)events * sizeof *klen);
  for (long k = 0; k < events; k++) {
    rs_interaction_t ia;
    rs_gen_next(g, &ia);
    off[k] = b.len;
    rs_buf_append(&b, ia.user, ia.user_len);
    klen[k] = ia.user_len;
    if (rs_codec_encode(codec, RS_FORMAT_AVRO, &ia, 0, &b, err, sizeof err))
      bench_die("encode", err);
    part[k] = (int)(rs_hash64(ia.user, ia.user_len, 0) % (uint64_t)parts);
  }
  in->bytes = b.data;
  in->n = (size_t)events;
  in->parts = parts;
  in->recs = malloc(in->n * sizeof(rs_record_t));
  in->part_start = calloc((size_t)parts + 1, sizeof(size_t));
  for (long k = 0; k < events; k++)
    in->part_start[part[k] + 1]++;
  for (int p = 0; p < parts; p++)
    in->part_start[p + 1] += in->part_start[p];
  size_t *fill = malloc((size_t)parts * sizeof *fill);
  int64_t *next_off = calloc((size_t)parts, sizeof *next_off);
  memcpy(fill, in->part_start, (size_t)parts * sizeof *fill);
  for (long k = 0; k < events; k++) {
    size_t end = k + 1 < events ? off[k + 1] : b.len;
    int p = part[k];
    in->recs[fill[p]++] = (rs_record_t){
        .kind = RS_KIND_BYTES,
        .key = in->bytes + off[k],
        .key_len = klen[k],
        .value = in->bytes + off[k] + klen[k],
        .value_len = end - off[k] - klen[k],
        .src_partition = p,
        .src_offset = next_off[p]++,
    };
  }
  free(fill);
  free(next_off);
  if (!scattered) {
    char *nb = malloc(b.len ? b.len : 1);
    if (!nb)
      bench_die("input", "out of memory");
    size_t at = 0;
    for (size_t i = 0; i < in->n; i++) { /* partition by partition */
      rs_record_t *r = &in->recs[i];
      memcpy(nb + at, r->key, r->key_len);
      memcpy(nb + at + r->key_len, r->value, r->value_len);
      r->key = nb + at;
      r->value = nb + at + r->key_len;
      at += r->key_len + r->value_len;
    }
    free(b.data);
    in->bytes = nb;
  }
  free(off);
  free(part);
  free(klen);
  rs_codec_destroy(codec);
  rs_gen_destroy(g);
}

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* This thread's CPU time: what process() calls cost, other processes on
 * the machine excluded (they still share its caches). */
static double thread_cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

typedef struct result {
  double rate; /* events/s */
  double p50_us, p99_us;
  uint64_t sessions, enriched, late, checkpoints;
  double op_s, opck_s, store_s; /* in process(), checkpoint(), store writes */
  double parse_cpu,
      op_cpu; /* thread CPU time in parse's, the 2nd's process() */
  double total_s;
  double cpu_s; /* process CPU time (RocksDB's threads included) */
} result_t;

/* Runs the input through parse and, when sz_opts, sessionize. */
static result_t run(const input_t *in, const rs_operator_def_t *def2,
                    const char *const *opts2, int round, const char *tag) {
  char dir[512], err[1024];
  snprintf(dir, sizeof dir, "%s/%s-%d", bench_state_root(), tag, round);
  rs_store_opts_t so;
  rs_store_opts_init(&so);
  so.create_if_missing = 1;
  so.sync = 1;
  const char *cfs[] = {"parse", "sessionize", "user_stats"};
  bench_state_t st = {0};
  B = &st;
  if (rs_store_open(dir, cfs, 3, &so, &st.store, err, sizeof err))
    bench_die("store", err);
  if (rs_cache_create(st.store, CACHE_BYTES, &st.cache))
    bench_die("cache", "create");
  rs_arena_init(&st.arena, 1 << 20);
  rs_op_t *parse = op_new(&rs_op_parse, NULL);
  rs_op_t *sz = def2 ? op_new(def2, opts2) : NULL;

  size_t nb = in->n / BATCH + (size_t)in->parts + 1, k = 0;
  uint64_t *lat = malloc(nb * sizeof *lat);
  size_t *pos = malloc((size_t)in->parts * sizeof *pos);
  memcpy(pos, in->part_start, (size_t)in->parts * sizeof *pos);
  result_t r = {0};
  uint64_t t0 = rs_now_ns(), last_ckpt = t0;
  double cpu0 = cpu_now();
  for (int left = 1; left;) {
    left = 0;
    for (int p = 0; p < in->parts; p++) {
      size_t end = in->part_start[p + 1];
      if (pos[p] >= end)
        continue;
      left = 1;
      size_t m = end - pos[p] < BATCH ? end - pos[p] : BATCH;
      uint64_t b0 = rs_now_ns();
      rs_arena_reset(&st.arena);
      parse->out[0].n = 0;
      rs_batch_t batch = {in->recs + pos[p], m, p, 0};
      double pc0 = thread_cpu_now();
      if (parse->def->process(parse, parse->ctx, &batch))
        bench_die("parse", "process failed");
      r.parse_cpu += thread_cpu_now() - pc0;
      if (sz) {
        for (int q = 0; q < 3; q++)
          sz->out[q].n = 0;
        rs_batch_t sb = {parse->out[0].recs, parse->out[0].n, p, 0};
        uint64_t s0 = rs_now_ns();
        double oc0 = thread_cpu_now();
        if (sz->def->process(sz, sz->ctx, &sb))
          bench_die("sessionize", "process failed");
        r.op_cpu += thread_cpu_now() - oc0;
        r.op_s += (double)(rs_now_ns() - s0) / 1e9;
        r.enriched += sz->out[0].n;
      }
      pos[p] += m;
      uint64_t now = rs_now_ns();
      if (now - last_ckpt > 1000000000ull ||
          rs_cache_needs_checkpoint(st.cache)) {
        /* As the engine: operators write what they keep in memory first. */
        uint64_t c0 = rs_now_ns();
        if (sz && RS_OPDEF_HAS(sz->def, checkpoint) &&
            sz->def->checkpoint(sz, sz->ctx))
          bench_die(sz->def->name, "checkpoint() failed");
        uint64_t c1 = rs_now_ns();
        r.opck_s += (double)(c1 - c0) / 1e9;
        if (rs_store_checkpoint(st.store, st.cache, NULL, 0))
          bench_die("checkpoint", rs_store_errmsg(st.store));
        r.checkpoints++;
        last_ckpt = now = rs_now_ns();
        r.store_s += (double)(now - c1) / 1e9;
      }
      lat[k++] = now - b0;
    }
  }
  /* The final checkpoint: state kept back in memory is paid for here. */
  uint64_t c0 = rs_now_ns();
  if (sz && RS_OPDEF_HAS(sz->def, checkpoint) &&
      sz->def->checkpoint(sz, sz->ctx))
    bench_die(sz->def->name, "checkpoint() failed");
  uint64_t c1 = rs_now_ns();
  if (rs_store_checkpoint(st.store, st.cache, NULL, 0))
    bench_die("checkpoint", rs_store_errmsg(st.store));
  r.checkpoints++;
  r.opck_s += (double)(c1 - c0) / 1e9;
  r.store_s += (double)(rs_now_ns() - c1) / 1e9;
  r.total_s = (double)(rs_now_ns() - t0) / 1e9;
  r.cpu_s = cpu_now() - cpu0;
  double secs = (double)(rs_now_ns() - t0) / 1e9;
  if (getenv("BENCH_CACHE_STATS")) {
    rs_cache_stats_t cs;
    rs_cache_stats(st.cache, &cs);
    fprintf(stderr,
            "%s: cache hits %llu misses %llu evictions %llu entries %zu "
            "total %zu MiB\n",
            tag, (unsigned long long)cs.hits, (unsigned long long)cs.misses,
            (unsigned long long)cs.evictions, cs.entries, cs.total_bytes >> 20);
  }
  r.rate = (double)in->n / secs;
  qsort(lat, k, sizeof *lat, cmp_u64);
  r.p50_us = (double)lat[k / 2] / 1e3;
  r.p99_us = (double)lat[k * 99 / 100] / 1e3;
  if (sz) {
    r.sessions = counter(sz, "sessions_closed");
    r.late = counter(sz, "late_records");
  }
  if (parse->dead)
    bench_die("parse", "records were dead-lettered");
  free(lat);
  free(pos);
  if (sz)
    op_free(sz);
  op_free(parse);
  rs_cache_destroy(st.cache);
  rs_store_destroy(st.store);
  rs_arena_free(&st.arena);
  B = NULL;
  return r;
}

/* Binds the calling thread, and the threads it starts from now on, to
 * CPU cpu. 0: done; -1: not possible here (fewer CPUs, or refused). */
static int pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) ? -1 : 0;
}

/* CPU time (s) so far of this process's threads that may run only on CPU
 * 1: with --pin, the embedded broker's (from /proc: schedstat's first
 * field is a thread's time on a CPU in ns). Dies when there is none or
 * one cannot be read: subtracting nothing would charge the broker to the
 * engine silently. names (may be NULL) gets their names. */
static double cpu1_threads_s(char *names, size_t names_size) {
  DIR *d = opendir("/proc/self/task");
  if (!d)
    bench_die("--pin", "cannot read /proc/self/task");
  double total = 0;
  int found = 0;
  if (names && names_size)
    names[0] = '\0';
  for (struct dirent *de; (de = readdir(d));) {
    if (de->d_name[0] == '.')
      continue;
    char path[300], line[256];
    int only1 = 0;
    snprintf(path, sizeof path, "/proc/self/task/%s/status", de->d_name);
    FILE *f = fopen(path, "r");
    if (!f)
      continue; /* it ended meanwhile */
    while (fgets(line, sizeof line, f))
      if (!strncmp(line, "Cpus_allowed_list:", 18)) {
        only1 = !strcmp(line + 18 + strspn(line + 18, " \t"), "1\n");
        break;
      }
    fclose(f);
    if (!only1)
      continue;
    snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", de->d_name);
    unsigned long long ns = 0;
    if (!(f = fopen(path, "r")) || fscanf(f, "%llu", &ns) != 1)
      bench_die("--pin", "cannot read a broker thread's schedstat");
    fclose(f);
    total += (double)ns / 1e9;
    found++;
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", de->d_name);
    if (names && (f = fopen(path, "r"))) {
      size_t l = strlen(names);
      if (fgets(line, sizeof line, f) && l + strlen(line) + 2 < names_size) {
        line[strcspn(line, "\n")] = '\0';
        snprintf(names + l, names_size - l, "%s%s", l ? ", " : "", line);
      }
      fclose(f);
    }
  }
  closedir(d);
  if (!found)
    bench_die("--pin", "no thread of the broker found on CPU 1");
  return total;
}

/* CPU time (s) so far of this process without the broker's threads (with
 * --pin; the whole process without): differences of two readings are the
 * engine's, or the raw clients', CPU over an interval. */
static double own_cpu_s(int pinned) {
  return bench_cpu_seconds() - (pinned ? cpu1_threads_s(NULL, 0) : 0);
}

/* --engine: the same stream through the whole engine on the embedded
 * broker (Kafka in and out, sinks, checkpoints): parse -> sink against
 * parse -> sessionize -> sinks (enriched events and summaries). Rates are
 * records in / (last acknowledged output - first input). */
static void engine_runs(long events, long users, int parts, const char *ooo,
                        int pinned, int rounds) {
  char err[2048];
  static const char *const topics[] = {"bench", "bench.dlq", NULL};
  /* The broker is the test's harness, not the engine: with --pin its
   * threads start on CPU 1, the engine's (loop, librdkafka's, RocksDB's,
   * all started later from this thread) on CPU 0. */
  if (pinned && pin_to(1))
    bench_die("--pin", "cannot bind to CPU 1");
  rs_mock_t *m = bench_broker(topics, parts);
  if (pinned && pin_to(0))
    bench_die("--pin", "cannot bind to CPU 0");
  rd_kafka_conf_t *pc = rd_kafka_conf_new();
  rd_kafka_conf_set(pc, "bootstrap.servers", m->bootstraps, err, sizeof err);
  rd_kafka_conf_set(pc, "linger.ms", "20", err, sizeof err);
  rd_kafka_conf_set(pc, "queue.buffering.max.messages", "1000000", err,
                    sizeof err);
  rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof err);
  rs_codec_t *codec;
  if (!p || rs_codec_new(&codec, NULL, err, sizeof err))
    bench_die("producer", err);
  rs_gen_opts_t o;
  rs_gen_opts_default(&o);
  o.users = (uint32_t)users;
  rs_gen_t *g = rs_gen_new(&o);
  rs_buf_t b = {0};
  for (long k = 0; k < events; k++) {
    rs_interaction_t ia;
    rs_gen_next(g, &ia);
    rs_buf_reset(&b);
    rs_codec_encode(codec, RS_FORMAT_AVRO, &ia, 0, &b, err, sizeof err);
    while (rd_kafka_producev(p, RD_KAFKA_V_TOPIC("bench"),
                             RD_KAFKA_V_KEY(ia.user, ia.user_len),
                             RD_KAFKA_V_VALUE(b.data, b.len),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
      rd_kafka_poll(p, 10);
    rd_kafka_poll(p, 0);
  }
  if (rd_kafka_flush(p, 120000))
    bench_die("flush", "input not delivered");
  rd_kafka_destroy(p);
  rs_buf_free(&b);
  rs_codec_destroy(codec);
  rs_gen_destroy(g);

  /* Each round reads the topic from the start: its own app (consumer
   * group), state directory and output topics (the embedded broker walks
   * a partition's log from its start for each message set it serves, so
   * outputs piling up over rounds would slow the later ones). The two
   * pipelines swap order every round. */
  double *ratio = calloc((size_t)rounds, sizeof(double)),
         *cratio = calloc((size_t)rounds, sizeof(double));
  if (!ratio || !cratio)
    bench_die("engine runs", "out of memory");
  char bnames[512] = "";
  if (pinned)
    (void)cpu1_threads_s(bnames, sizeof bnames);
  printf("\nengine, embedded broker (Kafka in and out, checkpoints), %s; "
         "load average %s:\n",
         pinned ? "the engine on one core (CPU 0), the broker on CPU 1"
                : "the whole process, broker included, shares the "
                  "machine's cores",
         bench_loadavg());
  if (pinned)
    printf("  the broker's threads (on CPU 1, their CPU time not the "
           "engine's): %s\n",
           bnames);
  /* Round -1 is a warm-up of each pipeline, not counted. */
  for (int round = -1; round < rounds; round++) {
    char yaml[2][2048], topic[64];
    int id = round + 1; /* in names: 0 is the warm-up */
    static const char *const outs[] = {"out", "events", "sessions", "late",
                                       "copy"};
    for (size_t t = 0; t < sizeof outs / sizeof *outs; t++) {
      snprintf(topic, sizeof topic, "bench.%s-%d", outs[t], id);
      if (rs_mock_create_topic(m, topic, parts, err, sizeof err))
        bench_die("topic", err);
    }
    snprintf(yaml[0], sizeof yaml[0],
             "app: bench-parse-%d\n"
             "kafka: { brokers: \"%s\" }\n"
             "state: { dir: \"%s/engine-parse-%d\" }\n"
             "sources: [ { name: in, topic: bench } ]\n"
             "operators: [ { name: parse, type: parse, input: in } ]\n"
             "sinks: [ { name: out, input: parse, topic: bench.out-%d } ]\n",
             id, m->bootstraps, bench_state_root(), id, id);
    snprintf(yaml[1], sizeof yaml[1],
             "app: bench-sessions-%d\n"
             "kafka: { brokers: \"%s\" }\n"
             "state: { dir: \"%s/engine-sessions-%d\" }\n"
             "sources: [ { name: in, topic: bench } ]\n"
             "operators:\n"
             "  - { name: parse, type: parse, input: in }\n"
             "  - { name: s, type: sessionize, input: parse, gap: 30m, "
             "grace: 5m, max_session_duration: 4h, max_out_of_orderness: %s "
             "}\n"
             "sinks:\n"
             "  - { name: ev, input: s, topic: bench.events-%d }\n"
             "  - { name: ss, input: s.sessions, topic: bench.sessions-%d }\n"
             "  - { name: late, input: s.late, topic: bench.late-%d }\n",
             id, m->bootstraps, bench_state_root(), id, ooo, id, id, id);
    double r[2], e[2];
    for (int j = 0; j < 2; j++) {
      int k = id % 2 ? j : 1 - j; /* counted rounds alternate the order */
      double wall, cpu, c0 = own_cpu_s(pinned);
      rs_engine_stats_t st = bench_run(yaml[k], 0, &wall, &cpu);
      /* The engine's CPU (set-up and teardown included): the process's
       * minus the broker threads', over the same interval. */
      e[k] = own_cpu_s(pinned) - c0;
      double busy = (double)(st.last_ack_ns - st.first_input_ns) / 1e9;
      r[k] = (double)st.records_in / busy;
      if ((long)st.records_in != events)
        bench_die("engine run", "not every record was processed");
      if (round < 0)
        continue;
      /* No peak RSS here: it would include the broker's stored topics. */
      printf("  round %d %-38s %9.0f events/s, %llu outputs, process CPU "
             "%.2f s, engine CPU %.2f s (%.2f us/event), %llu checkpoints "
             "%.2f s\n",
             id,
             k ? "source -> parse -> sessionize -> sinks"
               : "source -> parse -> sink",
             r[k], (unsigned long long)st.records_out, cpu, e[k],
             e[k] * 1e6 / (double)events, (unsigned long long)st.checkpoints,
             (double)st.checkpoint_ns / 1e9);
    }
    if (round < 0)
      continue;
    /* The project's baseline: raw librdkafka consumption of the same
     * topic, in the same place (its threads on CPU 0 with --pin). */
    double raw = bench_raw_consume(m->bootstraps, "bench", parts, events);
    printf("  round %d raw librdkafka consume of the topic %12.0f events/s "
           "(parse-only engine %.2f of it)\n",
           id, raw, r[0] / raw);
    /* What any consume -> produce pipeline costs at least: is the
     * parse-only baseline the engine's real cost, or a slow one? */
    snprintf(topic, sizeof topic, "bench.copy-%d", id);
    double c0 = own_cpu_s(pinned);
    double copy = bench_raw_copy(m->bootstraps, "bench", parts, events, topic);
    double ec = own_cpu_s(pinned) - c0;
    printf("  round %d raw librdkafka consume -> produce   %12.0f events/s, "
           "CPU %.2f us/event (parse-only engine: %.2f of its rate, %.2f of "
           "its CPU per event; sessionize %.2f, %.2f)\n",
           id, copy, ec * 1e6 / (double)events, r[0] / copy, ec / e[0],
           r[1] / copy, ec / e[1]);
    ratio[round] = r[1] / r[0];
    cratio[round] = e[0] / e[1];
    printf("  round %d ratio %.2f by rate, %.2f by the engine's CPU time\n", id,
           ratio[round], cratio[round]);
  }
  double rmin = ratio[0], cmin = cratio[0];
  for (int i = 1; i < rounds; i++) {
    rmin = ratio[i] < rmin ? ratio[i] : rmin;
    cmin = cratio[i] < cmin ? cratio[i] : cmin;
  }
  printf("  load average %s\n", bench_loadavg());
  printf("  sessionize / parse-only through the engine, %d rounds after a "
         "warm-up: by rate median %.2f (lowest %.2f), by the engine's CPU "
         "time median %.2f (lowest %.2f)%s; the issue's target is 0.50\n",
         rounds, bench_median(ratio, rounds), rmin,
         bench_median(cratio, rounds), cmin,
         pinned ? " (CPU: the process's minus the broker threads', the rate "
                  "ratio on one core where the engine, not the broker, is "
                  "the limit)"
                : " (process CPU, broker included)");
  free(ratio);
  free(cratio);
  rs_mock_destroy(m);
}

int main(int argc, char **argv) {
  long events = 1000000, users = 100000;
  int parts = 16, rounds = 3;
  const char *ooo = "30s";
  int engine = 0, scattered = 0, pinned = 0;
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--events") && i + 1 < argc)
      events = atol(argv[++i]);
    else if (!strcmp(argv[i], "--users") && i + 1 < argc)
      users = atol(argv[++i]);
    else if (!strcmp(argv[i], "--partitions") && i + 1 < argc)
      parts = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
      rounds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--ooo") && i + 1 < argc)
      ooo = argv[++i];
    else if (!strcmp(argv[i], "--engine"))
      engine = 1;
    else if (!strcmp(argv[i], "--scattered"))
      scattered = 1;
    else if (!strcmp(argv[i], "--pin"))
      pinned = 1;
    else if (!strcmp(argv[i], "--only") && i + 1 < argc)
      only = argv[++i];
    else {
      fprintf(stderr, "usage: bench_sessionize [--events N] [--users U] "
                      "[--partitions P] [--rounds R] [--ooo DURATION] "
                      "[--only s|s0|us|f] [--scattered] [--engine] "
                      "[--pin]\n");
      return 2;
    }
  }
  if (only && strcmp(only, "s") && strcmp(only, "s0") && strcmp(only, "us") &&
      strcmp(only, "f")) {
    fprintf(stderr, "bench_sessionize: --only takes s, s0, us or f, not '%s'\n",
            only);
    return 2;
  }
  if (events < 1 || users < 1 || parts < 1 || rounds < 1) {
    fprintf(stderr, "bench_sessionize: counts must be >= 1\n");
    return 2;
  }
  bench_init("bench_sessionize");
  /* --pin: everything on CPU 0 from the start (RocksDB's background
   * threads are started by the first state directory and stay), except
   * the broker of --engine. */
  if (pinned && pin_to(0)) {
    fprintf(stderr, "bench_sessionize: --pin needs 2 CPUs (binding to CPU "
                    "0 was refused)\n");
    return 2;
  }
  input_t in;
  printf("generating %ld events over %ld users, %d partitions...\n", events,
         users, parts);
  make_input(&in, events, users, parts, scattered);
  int64_t span =
      0; /* event-time span, for the reader: how many sessions can close */
  {
    rs_codec_t *c;
    char err[256];
    rs_codec_new(&c, NULL, err, sizeof err);
    rs_arena_t a;
    rs_arena_init(&a, 4096);
    rs_interaction_t first, last;
    rs_codec_decode(c, RS_FORMAT_AVRO, in.recs[0].value, in.recs[0].value_len,
                    &first, (void *(*)(void *, size_t))rs_arena_alloc, &a, err,
                    sizeof err);
    int64_t lo = first.timestamp_ms, hi = lo;
    for (size_t i = 0; i < in.n; i += in.n / 64 + 1) {
      rs_codec_decode(c, RS_FORMAT_AVRO, in.recs[i].value, in.recs[i].value_len,
                      &last, (void *(*)(void *, size_t))rs_arena_alloc, &a, err,
                      sizeof err);
      lo = last.timestamp_ms < lo ? last.timestamp_ms : lo;
      hi = last.timestamp_ms > hi ? last.timestamp_ms : hi;
    }
    span = hi - lo;
    rs_arena_free(&a);
    rs_codec_destroy(c);
  }
  printf("event time spans about %.1f h\n", (double)span / 3.6e6);
  const char *sz_opts[] = {"gap",
                           "30m",
                           "grace",
                           "5m",
                           "max_session_duration",
                           "4h",
                           "max_out_of_orderness",
                           ooo,
                           NULL};
  const char *sz0_opts[] = {"gap", "30m", "grace", "5m", "max_session_duration",
                            "4h",  NULL};
  const char *us_opts[] = {"emit", "none", NULL};
  enum { NP = 5 };
  static const char *const names[NP] = {
      "parse", "parse -> sessionize", "parse -> sessionize (ooo 0)",
      "parse -> user_stats (none)", "parse -> floor (not an operator)"};
  const rs_operator_def_t *defs[NP] = {NULL, &rs_op_sessionize,
                                       &rs_op_sessionize, &rs_op_user_stats,
                                       &rs_bench_sessionize_floor};
  const char *const *opts[NP] = {NULL, sz_opts, sz0_opts, us_opts, NULL};
  const char *tags[NP] = {"p", "s", "s0", "us", "f"};
  result_t best[NP] = {{0}};
  double ratio[NP] = {0}, rss[NP] = {0};
  double *wr = calloc((size_t)rounds * NP, sizeof *wr),
         *cr = calloc((size_t)rounds * NP, sizeof *cr),
         *opr = calloc((size_t)rounds * NP, sizeof *opr),
         *opn = calloc((size_t)rounds * NP, sizeof *opn);
  /* A warm-up run of each pipeline, not counted, parse alone last: the
   * first run of parse alone in a process, and the first after the
   * process's first user_stats run, cost it 2-3x what later runs do, which
   * made the first round's ratio say more about the warm-up than about the
   * operator. */
  for (int k = NP - 1; k >= 0; k--)
    if (!only || !k || !strcmp(only, tags[k]))
      (void)run(&in, defs[k], opts[k], -1, tags[k]);
  for (int round = 0; round < rounds; round++) {
    result_t r[NP];
    for (int k = 0; k < NP; k++) {
      if (only && k && strcmp(only, tags[k])) {
        r[k] = (result_t){.rate = 0};
        continue;
      }
      bench_reset_peak_rss();
      r[k] = run(&in, defs[k], opts[k], round, tags[k]);
      double m = bench_peak_rss_mib();
      rss[k] = m > rss[k] ? m : rss[k];
    }
    printf("round %d: parse %.0f/s", round + 1, r[0].rate);
    for (int k = 1; k < NP; k++) {
      wr[k * rounds + round] = r[k].rate / r[0].rate;
      cr[k * rounds + round] = r[k].cpu_s > 0 ? r[0].cpu_s / r[k].cpu_s : 0;
      opr[k * rounds + round] =
          r[k].parse_cpu > 0 ? r[k].op_cpu / r[k].parse_cpu : 0;
      opn[k * rounds + round] = r[k].op_cpu * 1e9 / (double)in.n;
      printf(", %s %.2f (CPU %.2f)", tags[k], wr[k * rounds + round],
             cr[k * rounds + round]);
    }
    printf("\n");
    for (int k = 0; k < NP; k++)
      if (r[k].rate > 0)
        printf("  %-3s %.2f s: operator process %.2f s, checkpoint() %.2f s, "
               "store checkpoints %.2f s (%llu), parse and rest %.2f s; "
               "CPU %.2f s; thread CPU in process(): parse %.0f ns/event, "
               "operator %.0f ns/event\n",
               tags[k], r[k].total_s, r[k].op_s, r[k].opck_s, r[k].store_s,
               (unsigned long long)r[k].checkpoints,
               r[k].total_s - r[k].op_s - r[k].opck_s - r[k].store_s,
               r[k].cpu_s, r[k].parse_cpu * 1e9 / (double)in.n,
               r[k].op_cpu * 1e9 / (double)in.n);
    for (int k = 0; k < NP; k++)
      if (r[k].rate > best[k].rate)
        best[k] = r[k];
    for (int k = 1; k < NP; k++)
      if (r[k].rate / r[0].rate > ratio[k])
        ratio[k] = r[k].rate / r[0].rate;
  }
  ratio[0] = 1;
  printf("\n%-30s %12s %9s %10s %10s %9s %8s\n", "pipeline (best of rounds)",
         "events/s", "ratio*", "p50 batch", "p99 batch", "sessions", "RSS MiB");
  for (int k = 0; k < NP; k++)
    printf("%-30s %12.0f %9.2f %8.0fus %8.0fus %9llu %8.0f\n", names[k],
           best[k].rate, ratio[k], best[k].p50_us, best[k].p99_us,
           (unsigned long long)best[k].sessions, rss[k]);
  printf("* best ratio to parse within one round (same conditions); the "
         "issue's 0.50 is taken through the engine (--engine --pin), these "
         "are the operator's in-process cost\n");
  printf("median of %d rounds, ratio to parse by wall time / by process CPU "
         "time (steadier on a loaded machine):",
         rounds);
  for (int k = 1; k < NP; k++)
    printf(" %s %.2f / %.2f%s", tags[k], bench_median(wr + k * rounds, rounds),
           bench_median(cr + k * rounds, rounds), k + 1 < NP ? "," : "\n");
  /* Both threads' CPU times are taken in the same run, so their ratio
   * moves less with the machine's load than either alone (a diagnostic:
   * the figure of merit is the ratio to parse-only above). */
  printf("median of %d rounds, operator's thread CPU in process() per event, "
         "ns and relative to parse's beside it:",
         rounds);
  for (int k = 1; k < NP; k++)
    printf(" %s %.0f / %.2f%s", tags[k], bench_median(opn + k * rounds, rounds),
           bench_median(opr + k * rounds, rounds), k + 1 < NP ? "," : "\n");
  free(wr);
  free(cr);
  free(opr);
  free(opn);
  printf("enriched events: %llu, late records: %llu, checkpoints: %llu\n",
         (unsigned long long)best[1].enriched, (unsigned long long)best[1].late,
         (unsigned long long)best[1].checkpoints);
  free(in.recs);
  free(in.part_start);
  free(in.bytes);
  if (engine)
    engine_runs(events, users, parts, ooo, pinned, rounds);
  return 0;
}
