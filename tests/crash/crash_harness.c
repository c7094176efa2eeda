/* The crash harness of issue 3: kills `recstream run` with SIGKILL at
 * random moments, restarts it, and checks that the state and the output
 * it ends with are those of a run that was never interrupted.
 *
 *   build/crash_harness [--events N] [--kills K]
 *                       [--guarantee exactly_once|at_least_once|both]
 *                       [--seed S] [--same-group] [--keep]
 *
 * Default: 200,000 events, 10 kills, both guarantees. The suite runs a
 * shortened version (ctest label "crash").
 *
 * What it does:
 *  1. Starts `recstream broker --partitions 8 --topics in,in.dlq,<outputs>`
 *     as a child and reads its bootstrap servers from the first line of its
 *     stdout. The mock broker keeps only about 5 MB or 100k messages per
 *     partition and drops the oldest; user_stats writes ~200 bytes per
 *     input, so 200,000 events overflow 8 output partitions (measured: the
 *     first ~700 records of a partition gone). The engine's producer
 *     therefore compresses with zstd (kafka.properties, identical for every
 *     run; 3x the default input still fits), and every output partition's
 *     low watermark is checked to still be 0 when it is read (a dropped
 *     record would look like a gap). The mock of librdkafka 2.0.2 does not
 *     answer CreateTopics, so topics cannot be given their own partition
 *     counts.
 *  2. Produces the fixed input with `recstream generate -n N --seed S`.
 *     (The generator does not set the Kafka message timestamp, so the
 *     records carry their produce time, not their event time;
 *     processing.order: deterministic merges on the message timestamp, so
 *     the order is fixed by the stored input all the same.)
 *  3. Per guarantee, one config: in -> parse (avro) -> user_stats -> sink
 *     (byte records pass unchanged) to the run's own output topic, state
 *     with commit_interval 200ms, order deterministic, max_idle 10s.
 *  4. Reference: one uninterrupted `recstream run CFG --exit-at-end` per
 *     guarantee (outputs are compared within a guarantee only:
 *     exactly_once adds a source header and picks partitions itself), into
 *     out-ref-eo / out-ref-alo.
 *  5. Crash run into out-crash-eo / out-crash-alo: K planned kills, then
 *     a final start that must run to the end and exit 0. Kinds of kill,
 *     shuffled by the seed:
 *       startup   - SIGKILL after a delay inside the reference's start-up
 *                   time (state open, exactly_once output scan, group
 *                   join), before any record is processed;
 *       progress  - SIGKILL once the run has processed a target number of
 *                   records (targets spread over the input);
 *       checkpoint_before_write / checkpoint_after_write - the engine's
 *                   fault injection (RECSTREAM_CRASH_POINT=<point>:<n>, see
 *                   crash_point() in engine/runtime.c): the process kills
 *                   itself the n-th time it passes that point. Only
 *                   checkpoints that write something count (the engine
 *                   skips the ones where nothing moved), and at 200 ms
 *                   those come only while a start processes records: the
 *                   first within an interval of its first record, then one
 *                   an interval, and the one at the stop when the input's
 *                   end is reached. n is 1..3, up to the working
 *                   checkpoints expected before the guard less half an
 *                   interval to spare: the records left from the stored
 *                   position over the records of an interval, estimated
 *                   as twice the reference's output rate (processing runs
 *                   ahead of the acknowledged outputs) and raised
 *                   by what each checkpoint kill and miss showed. n = 1
 *                   has no guard: in a start with records to process it
 *                   fires, at the latest in the checkpoint at the stop. A
 *                   kill after the write that may land there (less than
 *                   an interval left) becomes one before the write unless
 *                   it is the last planned kill, so that the stored
 *                   position does not reach the end with kills to come.
 *     Progress is measured from the outside: user_stats writes exactly one
 *     output per input (the generated input has no invalid record), so the
 *     records processed are, for exactly_once, the output topic's total end
 *     offset and, for at_least_once, the input position stored in the
 *     state at the start of the attempt plus the outputs written since.
 *     The stored position is read from a copy of the state directory after
 *     every kill (the engine's own directory is not touched between
 *     starts). A checkpoint kill at n > 1 that has not fired by the time
 *     the run is a margin short of the input's end (its guard) is done by
 *     the harness instead (a progress kill), and another checkpoint kill is
 *     planned while fewer than 2 would be done, so no start exits by
 *     itself before the planned kills are done. Each start joins a
 *     consumer group of its own (crash-eo-1, crash-eo-2, ...): with
 *     librdkafka 2.0.2's mock broker a member started after a SIGKILL waits
 *     4-13 s, by a varying amount, for its dead predecessor's session to
 *     expire, which makes kill timing unpredictable and the run slow. Where
 *     a start resumes comes from the offsets stored with the state either
 *     way (they win over the group's, which are committed only after
 *     them). --same-group makes every start of a run rejoin one group
 *     instead (session.timeout.ms 4000).
 *  6. Compares, per guarantee, crash run against reference:
 *     - state: both directories opened with rs_store_open (every column
 *       family on disk); every column family but __offsets iterated over
 *       its whole key range (user partitions and RS_PARTITION_SHARED
 *       alike) and compared entry for entry, key and value bytes. In
 *       __offsets only the input topic's records are compared: equal in
 *       both, and equal to the input's end offsets.
 *     - output, per partition, records as (key, value) bytes:
 *       exactly_once: the same number of records, and at every position
 *       the same key, value and recstream.src header (the source
 *       position) - no duplicate, no gap, same order.
 *       at_least_once: the crash topic's partition, read in order, must
 *       contain the reference's partition as a subsequence (each reference
 *       record present, in reference order); every other record is an
 *       "extra" and must be a whole copy (key and value) of a reference
 *       record of the same partition that already appeared before it - a
 *       redelivery. Every reference record not found (in order) and every
 *       extra that is not such a copy is a mismatch. (user_stats output is
 *       unique per partition: each line carries the user's event count.)
 *     With both guarantees the two reference states are compared as well
 *     (deterministic order makes them identical).
 *  7. Prints kills (how many in checkpoint writes, before and after the
 *     write, how many of those were shown to follow records processed in
 *     their start, landed in the checkpoint at the input's end, or were
 *     not reached), records compared and mismatches; exits 0 only with 0
 *     mismatches, at least K kills and 2 checkpoint kills per guarantee.
 *     The temporary directory (configs, state, every start's log:
 *     <tag>-start00.log is the reference) is kept on failure or with
 *     --keep.
 *
 * Both guarantees run at the same time, one thread each (their topics,
 * groups and state directories are separate), which halves the wall time
 * on a machine where most of it is spent waiting for group joins.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "state/store.h"
#include "util.h"

#ifndef RS_BINARY_DIR
#error "RS_BINARY_DIR must name the build directory (holding recstream)"
#endif

extern char **environ;

#define IN_TOPIC "in"
#define IN_PARTS 8
#define COMMIT_MS 200
#define SRC_HEADER "recstream.src"
#define MAX_EVENTS 400000 /* the broker's partitions hold them, with margin */
#define SHOW_MAX 8        /* mismatches printed per comparison */

/* ------------------------------------------------------------ options */

typedef struct opts {
  long events;
  int kills;
  int guarantees; /* bit 0: exactly_once, bit 1: at_least_once */
  uint64_t seed;
  int keep;
  int same_group;
} opts_t;

static opts_t O = {200000, 10, 3, 1, 0, 0};
static char g_tmp[1024]; /* short enough for every path built on it */
static char g_bootstrap[512];
static int32_t g_out_parts;
static int64_t g_in_end[IN_PARTS]; /* input end offset per partition */
static pthread_mutex_t g_say = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_t0;

static const char usage[] =
    "Usage: crash_harness [--events N] [--kills K]\n"
    "                     [--guarantee exactly_once|at_least_once|both]\n"
    "                     [--seed S] [--same-group] [--keep]\n"
    "\n"
    "Kills `recstream run` (user_stats over a fixed generated input, on a\n"
    "standalone `recstream broker`) with SIGKILL at K random moments, some\n"
    "inside checkpoint writes, restarts it, and compares the final state\n"
    "and the output topic with an uninterrupted run's: exactly_once must\n"
    "match record for record, at_least_once may only add whole duplicates.\n"
    "\n"
    "  --events N      input interactions (default 200000, 1000..400000)\n"
    "  --kills K       kills per guarantee (default 10, at least 2)\n"
    "  --guarantee G   exactly_once, at_least_once or both (default both)\n"
    "  --seed S        seed of the input and of the kill plan (default 1)\n"
    "  --same-group    every start of a run rejoins one consumer group\n"
    "                  (slower: waits for the killed member's session)\n"
    "  --keep          keep the temporary directory (kept on failure)\n"
    "  -h, --help      this help\n"
    "\n"
    "Exit status: 0 when there is no mismatch and every planned kill\n"
    "happened, 1 otherwise, 2 for bad usage.\n";

/* ------------------------------------------------------------ helpers */

static double secs_since(uint64_t t) {
  return (double)(rs_now_ns() - t) / 1e9;
}

static void say(const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say(const char *tag, const char *fmt, ...) {
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&g_say);
  printf("[%6.1fs]%s%s%s %s\n", secs_since(g_t0), tag ? " [" : "",
         tag ? tag : "", tag ? "]" : "", line);
  fflush(stdout);
  pthread_mutex_unlock(&g_say);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) && errno == EINTR)
    ;
}

/* splitmix64: the kill plan is a pure function of --seed. */
static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s) {
  return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}

static int rm_cb(const char *path, const struct stat *st, int flag,
                 struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void rm_rf(const char *path) {
  nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Copies the regular files of a flat directory (a RocksDB directory). */
static int copy_dir(const char *from, const char *to) {
  DIR *d = opendir(from);
  if (!d)
    return -1;
  if (mkdir(to, 0755) && errno != EEXIST) {
    closedir(d);
    return -1;
  }
  int rc = 0;
  struct dirent *de;
  char buf[1 << 16];
  while (!rc && (de = readdir(d))) {
    char a[PATH_MAX], b[PATH_MAX];
    if (snprintf(a, sizeof a, "%s/%s", from, de->d_name) >= (int)sizeof a ||
        snprintf(b, sizeof b, "%s/%s", to, de->d_name) >= (int)sizeof b) {
      rc = -1;
      break;
    }
    struct stat st;
    if (lstat(a, &st) || !S_ISREG(st.st_mode))
      continue;
    int in = open(a, O_RDONLY), out = -1;
    if (in < 0) {
      rc = -1;
      break;
    }
    out = open(b, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ssize_t n = 0;
    while (out >= 0 && (n = read(in, buf, sizeof buf)) > 0)
      if (write(out, buf, (size_t)n) != n) {
        n = -1;
        break;
      }
    if (out < 0 || n < 0)
      rc = -1;
    close(in);
    if (out >= 0)
      close(out);
  }
  closedir(d);
  return rc;
}

static int file_contains(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  char line[4096];
  int found = 0;
  while (!found && fgets(line, sizeof line, f))
    found = strstr(line, needle) != NULL;
  fclose(f);
  return found;
}

static const char *bin(void) {
  return RS_BINARY_DIR "/recstream";
}

/* ------------------------------------------------------------ processes */

/* fork + execve of argv with stdout/stderr appended to log_path (stdout
 * to a pipe instead when out_fd is given), and RECSTREAM_CRASH_POINT set to
 * crash (or removed) in its environment. Everything the child needs is
 * prepared before fork: the harness has threads. */
static pid_t spawn(char *const argv[], const char *crash, const char *log_path,
                   int *out_fd) {
  size_t n = 0;
  while (environ[n])
    n++;
  char **envp = calloc(n + 2, sizeof *envp);
  char crash_var[256];
  if (!envp)
    return -1;
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "RECSTREAM_CRASH_POINT=", 22))
      envp[k++] = environ[i];
  if (crash) {
    snprintf(crash_var, sizeof crash_var, "RECSTREAM_CRASH_POINT=%s", crash);
    envp[k++] = crash_var;
  }
  envp[k] = NULL;
  int pfd[2] = {-1, -1};
  if (out_fd && pipe(pfd)) {
    free(envp);
    return -1;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    /* Never outlive the harness (a ctest timeout kills only it). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 2);
      dup2(fd, 1);
      close(fd);
    }
    if (out_fd) {
      dup2(pfd[1], 1);
      close(pfd[0]);
      close(pfd[1]);
    }
    int nul = open("/dev/null", O_RDONLY);
    if (nul >= 0) {
      dup2(nul, 0);
      close(nul);
    }
    execve(argv[0], argv, envp);
    _exit(127);
  }
  free(envp);
  if (out_fd) {
    close(pfd[1]);
    if (pid < 0)
      close(pfd[0]);
    else
      *out_fd = pfd[0];
  }
  return pid;
}

static int wait_exit(pid_t pid) {
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      return -1;
  return st;
}

static void describe_status(int st, char *buf, size_t size) {
  if (st == -1)
    snprintf(buf, size, "lost");
  else if (WIFEXITED(st))
    snprintf(buf, size, "exit %d", WEXITSTATUS(st));
  else if (WIFSIGNALED(st))
    snprintf(buf, size, "signal %d", WTERMSIG(st));
  else
    snprintf(buf, size, "status %#x", st);
}

/* ------------------------------------------------------------ Kafka */

static rd_kafka_t *kclient(rd_kafka_type_t type, const char *group) {
  char err[512];
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  rd_kafka_conf_set(c, "bootstrap.servers", g_bootstrap, err, sizeof err);
  rd_kafka_conf_set(c, "log_level", "3", err, sizeof err);
  if (type == RD_KAFKA_CONSUMER) {
    rd_kafka_conf_set(c, "group.id", group, err, sizeof err);
    rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof err);
    rd_kafka_conf_set(c, "enable.partition.eof", "false", err, sizeof err);
  }
  rd_kafka_t *rk = rd_kafka_new(type, c, err, sizeof err);
  if (!rk)
    say(NULL, "error: cannot create a Kafka client: %s", err);
  return rk;
}

/* Sum of the end offsets of topic's partitions (-1 on error). One
 * ListOffsets request for all of them. */
static int64_t topic_end(rd_kafka_t *rk, const char *topic, int32_t parts,
                         int64_t *each) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
  for (int32_t i = 0; i < parts; i++)
    rd_kafka_topic_partition_list_add(l, topic, i)->offset =
        RD_KAFKA_OFFSET_END; /* timestamp -1: the latest offset */
  int64_t sum = -1;
  if (rd_kafka_offsets_for_times(rk, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    sum = 0;
    for (int i = 0; i < l->cnt; i++) {
      if (l->elems[i].err || l->elems[i].offset < 0) {
        sum = -1;
        break;
      }
      sum += l->elems[i].offset;
      if (each)
        each[l->elems[i].partition] = l->elems[i].offset;
    }
  }
  rd_kafka_topic_partition_list_destroy(l);
  return sum;
}

/* One output record: key, value and the source header in one block. */
typedef struct orec {
  uint32_t klen, vlen, slen;
  char *d; /* key, then value, then source header */
} orec_t;

typedef struct opart {
  orec_t *r;
  size_t n, cap;
} opart_t;

typedef struct odump {
  int32_t n_parts;
  opart_t *p;
  size_t total;
} odump_t;

static void odump_free(odump_t *d) {
  for (int32_t i = 0; d->p && i < d->n_parts; i++) {
    for (size_t k = 0; k < d->p[i].n; k++)
      free(d->p[i].r[k].d);
    free(d->p[i].r);
  }
  free(d->p);
  memset(d, 0, sizeof *d);
}

static int opart_push(opart_t *p, const rd_kafka_message_t *m) {
  if (p->n == p->cap) {
    size_t cap = p->cap ? 2 * p->cap : 1024;
    orec_t *r = realloc(p->r, cap * sizeof *r);
    if (!r)
      return -1;
    p->r = r;
    p->cap = cap;
  }
  const void *sv = NULL;
  size_t sl = 0;
  rd_kafka_headers_t *h = NULL;
  if (rd_kafka_message_headers(m, &h) ||
      rd_kafka_header_get_last(h, SRC_HEADER, &sv, &sl))
    sl = 0;
  orec_t *o = &p->r[p->n];
  o->klen = (uint32_t)m->key_len;
  o->vlen = (uint32_t)m->len;
  o->slen = (uint32_t)sl;
  o->d = malloc(m->key_len + m->len + sl + 1);
  if (!o->d)
    return -1;
  if (m->key_len)
    memcpy(o->d, m->key, m->key_len);
  if (m->len)
    memcpy(o->d + m->key_len, m->payload, m->len);
  if (sl)
    memcpy(o->d + m->key_len + m->len, sv, sl);
  p->n++;
  return 0;
}

/* Reads every partition of topic from offset 0 to its end. Fails when the
 * broker has dropped records (low watermark above 0). */
static int read_topic(const char *tag, const char *topic, int32_t parts,
                      odump_t *d) {
  memset(d, 0, sizeof *d);
  d->n_parts = parts;
  d->p = calloc((size_t)parts, sizeof *d->p);
  rd_kafka_t *rk = kclient(RD_KAFKA_CONSUMER, "crash-harness-reader");
  int64_t *hi = calloc((size_t)parts, sizeof *hi);
  if (!d->p || !rk || !hi) {
    free(hi);
    if (rk)
      rd_kafka_destroy(rk);
    return -1;
  }
  int rc = 0, remaining = 0;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
  for (int32_t i = 0; i < parts && !rc; i++) {
    int64_t lo = 0;
    rd_kafka_resp_err_t err =
        rd_kafka_query_watermark_offsets(rk, topic, i, &lo, &hi[i], 10000);
    if (err) {
      say(tag, "error: %s [%d]: cannot read its watermarks: %s", topic, (int)i,
          rd_kafka_err2str(err));
      rc = -1;
    } else if (lo != 0) {
      say(tag,
          "error: %s [%d] starts at offset %lld: the broker dropped its oldest "
          "records (it keeps ~5 MB / 100k messages per partition); fewer "
          "--events",
          topic, (int)i, (long long)lo);
      rc = -1;
    } else if (hi[i] > 0) {
      rd_kafka_topic_partition_list_add(l, topic, i)->offset = 0;
      remaining++;
    }
  }
  if (!rc && remaining)
    rc = rd_kafka_assign(rk, l) ? -1 : 0;
  uint64_t last = rs_now_ns();
  while (!rc && remaining > 0) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (!m) {
      if (secs_since(last) > 60) {
        say(tag, "error: reading %s made no progress for 60 s", topic);
        rc = -1;
      }
      continue;
    }
    last = rs_now_ns();
    if (m->err) {
      say(tag, "warning: reading %s: %s", topic, rd_kafka_message_errstr(m));
    } else if (m->partition >= 0 && m->partition < parts &&
               m->offset < hi[m->partition]) {
      opart_t *p = &d->p[m->partition];
      if ((int64_t)p->n != m->offset) {
        say(tag, "error: %s [%d]: offset %lld read after %zu records", topic,
            (int)m->partition, (long long)m->offset, p->n);
        rc = -1;
      } else if (opart_push(p, m)) {
        rc = -1;
      } else {
        d->total++;
        if (m->offset + 1 == hi[m->partition])
          remaining--;
      }
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_topic_partition_list_destroy(l);
  free(hi);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return rc;
}

/* ------------------------------------------------------------ comparing */

/* Printable form of bytes: \xHH for anything outside printable ASCII. */
static void show(const char *p, size_t n, size_t max, char *out, size_t size) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 8 < size; i++) {
    if (i == max) {
      o += (size_t)snprintf(out + o, size - o, "...");
      break;
    }
    unsigned char c = (unsigned char)p[i];
    if (c >= 0x20 && c < 0x7f && c != '\\')
      out[o++] = (char)c;
    else
      o += (size_t)snprintf(out + o, size - o, "\\x%02X", c);
  }
  out[o] = '\0';
}

static void show_key(const char *k, size_t n, char *out, size_t size) {
  char s[512];
  if (n >= 4) {
    uint32_t p = (uint32_t)(unsigned char)k[0] << 24 |
                 (uint32_t)(unsigned char)k[1] << 16 |
                 (uint32_t)(unsigned char)k[2] << 8 | (unsigned char)k[3];
    show(k + 4, n - 4, 100, s, sizeof s);
    snprintf(out, size, "partition %d key '%s'", (int)(int32_t)p, s);
  } else {
    show(k, n, 100, s, sizeof s);
    snprintf(out, size, "key '%s'", s);
  }
}

typedef struct cmp_stats {
  uint64_t compared;   /* state entries or output records compared */
  uint64_t extra;      /* at_least_once: whole duplicates */
  uint64_t mismatches; /* differences */
  int errors;          /* could not compare */
} cmp_stats_t;

static rs_store_t *open_state(const char *tag, const char *dir) {
  rs_store_opts_t so;
  rs_store_opts_init(&so);
  so.create_if_missing = 0;
  rs_store_t *s = NULL;
  char err[1024];
  if (rs_store_open(dir, NULL, 0, &so, &s, err, sizeof err)) {
    say(tag, "error: %s", err);
    return NULL;
  }
  return s;
}

/* One column family of both stores, merged in key order. */
static void compare_cf(const char *tag, rs_store_t *a, rs_store_t *b,
                       const char *cf, cmp_stats_t *st) {
  rs__rocks_t *ra = rs__store_rocks(a), *rb = rs__store_rocks(b);
  int ca = rs__rocks_cf_find(ra, cf), cb = rs__rocks_cf_find(rb, cf);
  rs__rocks_iter_t *ia =
      ca >= 0 ? rs__rocks_iter_create(ra, NULL, ca, "", 0, NULL, 0) : NULL;
  rs__rocks_iter_t *ib =
      cb >= 0 ? rs__rocks_iter_create(rb, NULL, cb, "", 0, NULL, 0) : NULL;
  if ((ca >= 0 && !ia) || (cb >= 0 && !ib)) {
    say(tag, "error: cannot iterate column family %s", cf);
    st->errors++;
  }
  uint64_t shown = 0, n = 0;
  for (;;) {
    int va = ia && rs__rocks_iter_valid(ia),
        vb = ib && rs__rocks_iter_valid(ib);
    if (!va && !vb)
      break;
    size_t kan = 0, kbn = 0, van = 0, vbn = 0;
    const char *ka = va ? rs__rocks_iter_key(ia, &kan) : NULL;
    const char *kb = vb ? rs__rocks_iter_key(ib, &kbn) : NULL;
    int c;
    if (!va)
      c = 1;
    else if (!vb)
      c = -1;
    else {
      c = memcmp(ka, kb, kan < kbn ? kan : kbn);
      if (!c)
        c = kan < kbn ? -1 : kan > kbn;
    }
    char ks[600], v1[600], v2[600];
    n++;
    if (c == 0) {
      const char *x = rs__rocks_iter_value(ia, &van);
      const char *y = rs__rocks_iter_value(ib, &vbn);
      if (van != vbn || memcmp(x, y, van)) {
        st->mismatches++;
        if (shown++ < SHOW_MAX) {
          show_key(ka, kan, ks, sizeof ks);
          show(x, van, 120, v1, sizeof v1);
          show(y, vbn, 120, v2, sizeof v2);
          say(tag, "state %s: %s differs: reference '%s', crash run '%s'", cf,
              ks, v1, v2);
        }
      }
      rs__rocks_iter_next(ia);
      rs__rocks_iter_next(ib);
    } else if (c < 0) {
      st->mismatches++;
      if (shown++ < SHOW_MAX) {
        show_key(ka, kan, ks, sizeof ks);
        say(tag, "state %s: %s missing from the crash run", cf, ks);
      }
      rs__rocks_iter_next(ia);
    } else {
      st->mismatches++;
      if (shown++ < SHOW_MAX) {
        show_key(kb, kbn, ks, sizeof ks);
        say(tag, "state %s: %s only in the crash run", cf, ks);
      }
      rs__rocks_iter_next(ib);
    }
  }
  if ((ia && rs__rocks_iter_status(ra, ia)) ||
      (ib && rs__rocks_iter_status(rb, ib))) {
    say(tag, "error: iterating column family %s failed", cf);
    st->errors++;
  }
  if (ia)
    rs__rocks_iter_destroy(ia);
  if (ib)
    rs__rocks_iter_destroy(ib);
  st->compared += n;
}

/* The input's records in __offsets: equal in both stores and at the
 * input's end. */
static void compare_offsets(const char *tag, rs_store_t *a, rs_store_t *b,
                            cmp_stats_t *st) {
  rs_store_t *s[2] = {a, b};
  int64_t pos[2][IN_PARTS];
  for (int k = 0; k < 2; k++) {
    for (int i = 0; i < IN_PARTS; i++)
      pos[k][i] = -1;
    rs_offset_t *offs;
    size_t n;
    if (rs_store_read_offsets(s[k], &offs, &n)) {
      say(tag, "error: cannot read __offsets: %s", rs_store_errmsg(s[k]));
      st->errors++;
      return;
    }
    for (size_t i = 0; i < n; i++)
      if (!strcmp(offs[i].topic, IN_TOPIC) && offs[i].partition >= 0 &&
          offs[i].partition < IN_PARTS)
        pos[k][offs[i].partition] = offs[i].next_offset;
    rs_store_offsets_free(offs, n);
  }
  for (int i = 0; i < IN_PARTS; i++) {
    st->compared++;
    if (pos[0][i] != pos[1][i] || pos[0][i] != g_in_end[i]) {
      st->mismatches++;
      say(tag,
          "state __offsets: %s [%d]: reference at %lld, crash run at %lld, "
          "input end %lld",
          IN_TOPIC, i, (long long)pos[0][i], (long long)pos[1][i],
          (long long)g_in_end[i]);
    }
  }
}

static void compare_state(const char *tag, const char *ref_dir, const char *dir,
                          cmp_stats_t *st) {
  rs_store_t *a = open_state(tag, ref_dir);
  rs_store_t *b = a ? open_state(tag, dir) : NULL;
  if (!a || !b) {
    st->errors++;
    rs_store_destroy(a);
    return;
  }
  rs__rocks_t *ra = rs__store_rocks(a), *rb = rs__store_rocks(b);
  /* Every column family of either side (a missing one compares as empty). */
  for (int side = 0; side < 2; side++) {
    rs__rocks_t *r = side ? rb : ra;
    for (size_t i = 0; i < rs__rocks_cf_count(r); i++) {
      const char *cf = rs__rocks_cf_name(r, (int)i);
      if (!strcmp(cf, RS_STORE_OFFSETS_CF))
        continue;
      if (side == 1 && rs__rocks_cf_find(ra, cf) >= 0)
        continue; /* done from the first side */
      compare_cf(tag, a, b, cf, st);
    }
  }
  compare_offsets(tag, a, b, st);
  rs_store_destroy(b);
  rs_store_destroy(a);
}

static int rec_eq(const orec_t *x, const orec_t *y, int with_src) {
  if (x->klen != y->klen || x->vlen != y->vlen)
    return 0;
  size_t n = (size_t)x->klen + x->vlen;
  if (with_src) {
    if (x->slen != y->slen)
      return 0;
    n += x->slen;
  }
  return !memcmp(x->d, y->d, n);
}

static void show_rec(const orec_t *r, char *out, size_t size) {
  char k[300], v[600];
  show(r->d, r->klen, 60, k, sizeof k);
  show(r->d + r->klen, r->vlen, 160, v, sizeof v);
  snprintf(out, size, "key '%s' value '%s'", k, v);
}

/* exactly_once: identical partitions. */
static void compare_eo(const char *tag, const odump_t *ref, const odump_t *cr,
                       cmp_stats_t *st) {
  uint64_t shown = 0;
  for (int32_t p = 0; p < ref->n_parts; p++) {
    const opart_t *a = &ref->p[p], *b = &cr->p[p];
    size_t n = a->n < b->n ? a->n : b->n;
    for (size_t i = 0; i < n; i++) {
      st->compared++;
      if (rec_eq(&a->r[i], &b->r[i], 1))
        continue;
      st->mismatches++;
      if (shown++ < SHOW_MAX) {
        char x[1000], y[1000];
        show_rec(&a->r[i], x, sizeof x);
        show_rec(&b->r[i], y, sizeof y);
        say(tag, "output [%d] offset %zu: reference %s; crash run %s", (int)p,
            i, x, y);
      }
    }
    if (a->n != b->n) {
      uint64_t d = a->n > b->n ? a->n - b->n : b->n - a->n;
      st->mismatches += d;
      say(tag, "output [%d]: reference has %zu records, crash run %zu", (int)p,
          a->n, b->n);
    }
  }
}

/* Index of one partition's reference records by (key, value). */
typedef struct rindex {
  const opart_t *p;
  size_t *slot; /* record index + 1; 0 = empty */
  size_t mask;
} rindex_t;

static uint64_t rec_hash(const orec_t *r) {
  return rs_hash64(r->d, (size_t)r->klen + r->vlen, r->klen);
}

static int rindex_build(rindex_t *x, const opart_t *p) {
  size_t cap = 16;
  while (cap < 2 * p->n + 2)
    cap *= 2;
  x->p = p;
  x->mask = cap - 1;
  x->slot = calloc(cap, sizeof *x->slot);
  if (!x->slot)
    return -1;
  for (size_t i = 0; i < p->n; i++) {
    size_t h = (size_t)rec_hash(&p->r[i]) & x->mask;
    while (x->slot[h])
      h = (h + 1) & x->mask;
    x->slot[h] = i + 1;
  }
  return 0;
}

/* The first reference record equal to r (key and value), or -1. */
static long rindex_find(const rindex_t *x, const orec_t *r) {
  size_t h = (size_t)rec_hash(r) & x->mask;
  long best = -1;
  for (; x->slot[h]; h = (h + 1) & x->mask) {
    size_t i = x->slot[h] - 1;
    if (rec_eq(&x->p->r[i], r, 0) && (best < 0 || (long)i < best))
      best = (long)i;
  }
  return best;
}

/* at_least_once: reference as an in-order subsequence; extras must copy a
 * reference record already seen. */
static void compare_alo(const char *tag, const odump_t *ref, const odump_t *cr,
                        cmp_stats_t *st) {
  uint64_t shown = 0;
  for (int32_t p = 0; p < ref->n_parts; p++) {
    const opart_t *a = &ref->p[p], *b = &cr->p[p];
    rindex_t x;
    if (rindex_build(&x, a)) {
      st->errors++;
      return;
    }
    size_t i = 0;
    for (size_t j = 0; j < b->n; j++) {
      if (i < a->n && rec_eq(&a->r[i], &b->r[j], 0)) {
        i++;
        st->compared++;
        continue;
      }
      long k = rindex_find(&x, &b->r[j]);
      if (k >= 0 && (size_t)k < i) {
        st->extra++;
        continue;
      }
      st->mismatches++;
      if (shown++ < SHOW_MAX) {
        char y[1000];
        show_rec(&b->r[j], y, sizeof y);
        say(tag,
            "output [%d] offset %zu: %s is %s (expected reference record %zu "
            "next)",
            (int)p, j, y,
            k < 0 ? "no reference record" : "ahead of the reference order", i);
      }
    }
    if (i < a->n) {
      st->mismatches += a->n - i;
      char y[1000];
      show_rec(&a->r[i], y, sizeof y);
      say(tag,
          "output [%d]: %zu reference records not found in order, the first "
          "at reference offset %zu: %s",
          (int)p, a->n - i, i, y);
    }
    free(x.slot);
  }
}

/* ------------------------------------------------------------ runs */

typedef enum {
  K_NONE,
  K_STARTUP,
  K_PROGRESS,
  K_CKPT_BEFORE,
  K_CKPT_AFTER
} kind_t;

static const char *const kind_name[] = {"none", "startup", "progress",
                                        "checkpoint_before_write",
                                        "checkpoint_after_write"};

typedef struct plan {
  kind_t kind;
  double delay;   /* startup: seconds after exec */
  int64_t target; /* progress: records processed */
  long ckpt_n;    /* checkpoint: RECSTREAM_CRASH_POINT's count */
  int64_t guard;  /* checkpoint: kill here if the point has not fired
                     (NO_GUARD: never, the final checkpoint catches it) */
  double expect;  /* checkpoint: working checkpoints expected before the
                     guard (estimate) */
} plan_t;

#define NO_GUARD INT64_MAX

typedef struct run {
  int eo;
  const char *tag, *guarantee;
  char ref_topic[64], topic[64];
  char ref_cfg[PATH_MAX], cfg[PATH_MAX];
  char ref_state[PATH_MAX], state[PATH_MAX];
  uint64_t rng;
  rd_kafka_t *mon; /* watches the output topic's end offsets */
  double j_ref;    /* reference: seconds from exec to the first output */
  double t_ref;    /* reference: seconds from exec to exit */
  /* Records processed from one working checkpoint to the next (an
   * estimate, only ever raised: from the reference's rate, then by what
   * the checkpoint kills showed). */
  double ckpt_recs;
  int attempts;
  /* results */
  int kills, ckpt_kills, ckpt_mid, ckpt_before, ckpt_after, ckpt_final,
      ckpt_missed, startup_kills;
  cmp_stats_t state_st, out_st;
  int errors;
  double secs;
} run_t;

static int write_config(const run_t *r, const char *path, const char *state,
                        const char *topic) {
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  fprintf(f,
          "# written by tests/crash/crash_harness.c\n"
          "app: crash\n"
          "kafka:\n"
          "  brokers: \"%s\"\n"
          "  group_id: unset # --set per start\n"
          "  properties: { compression.type: zstd%s }\n"
          "state: { dir: \"%s\", commit_interval: %dms, guarantee: %s }\n"
          "processing: { order: deterministic, max_idle: 10s }\n"
          "sources: [ { name: in, topic: %s } ]\n"
          "operators:\n"
          "  - { name: parse, type: parse, input: in, format: avro }\n"
          "  - { name: user_stats, type: user_stats, input: parse }\n"
          "sinks: [ { name: out, input: user_stats, topic: %s } ]\n",
          g_bootstrap,
          O.same_group ? ", session.timeout.ms: 4000, "
                         "heartbeat.interval.ms: 400"
                       : "",
          state, COMMIT_MS, r->guarantee, IN_TOPIC, topic);
  return fclose(f) ? -1 : 0;
}

/* The input position stored with the state: sum of the input's next
 * offsets, read from a copy of the directory (the run's own is left as the
 * killed process left it). 0 without state. */
static int64_t stored_position(const run_t *r, int64_t *out_ends,
                               int n_out_ends) {
  char copy[PATH_MAX + 16];
  snprintf(copy, sizeof copy, "%s.peek", r->state);
  rm_rf(copy);
  struct stat st;
  if (stat(r->state, &st))
    return 0;
  if (copy_dir(r->state, copy)) {
    rm_rf(copy);
    return -1;
  }
  rs_store_opts_t so;
  rs_store_opts_init(&so);
  so.create_if_missing = 0;
  so.sync = 0;
  rs_store_t *s = NULL;
  char err[1024];
  int64_t pos = -1;
  if (!rs_store_open(copy, NULL, 0, &so, &s, err, sizeof err)) {
    rs_offset_t *offs;
    size_t n;
    if (!rs_store_read_offsets(s, &offs, &n)) {
      pos = 0;
      for (size_t i = 0; i < n; i++) {
        if (!strcmp(offs[i].topic, IN_TOPIC))
          pos += offs[i].next_offset;
        else if (!strcmp(offs[i].topic, r->topic) && out_ends &&
                 offs[i].partition >= 0 && offs[i].partition < n_out_ends)
          out_ends[offs[i].partition] = offs[i].next_offset;
      }
      rs_store_offsets_free(offs, n);
    }
    rs_store_destroy(s);
  } else if (strstr(err, "does not exist") || strstr(err, "CURRENT")) {
    pos = 0; /* killed before the database was created */
  } else {
    say(r->tag, "warning: reading the stored offsets: %s", err);
  }
  rm_rf(copy);
  return pos;
}

typedef struct outcome {
  int status;
  int killed_by_us;
  double secs;
  double first_out; /* seconds to the first output of this start (-1) */
  double last_out;  /* seconds to the last rise of the output's end (-1) */
  int64_t pos;      /* records processed when it ended (estimate) */
  int64_t out_start, out_end;
} outcome_t;

/* The log of the current start: <tag>-start00.log is the reference. */
static void start_log(const run_t *r, char *buf, size_t size) {
  snprintf(buf, size, "%s/%s-start%02d.log", g_tmp, r->tag, r->attempts);
}

/* One start of `recstream run`, killed per plan. */
static int run_once(run_t *r, const char *cfg, const char *topic,
                    const char *group, const plan_t *pl, int64_t stored_pos,
                    outcome_t *oc) {
  char log[PATH_MAX + 64], set[256], crash[128];
  start_log(r, log, sizeof log);
  snprintf(set, sizeof set, "kafka.group_id=%s", group);
  const char *crash_env = NULL;
  if (pl->kind == K_CKPT_BEFORE || pl->kind == K_CKPT_AFTER) {
    snprintf(crash, sizeof crash, "%s:%ld", kind_name[pl->kind], pl->ckpt_n);
    crash_env = crash;
  }
  char *argv[] = {(char *)bin(), "run",  (char *)cfg,     "--set", set,
                  "--log-level", "info", "--exit-at-end", NULL};
  memset(oc, 0, sizeof *oc);
  oc->first_out = oc->last_out = -1;
  oc->out_start = topic_end(r->mon, topic, g_out_parts, NULL);
  if (oc->out_start < 0) {
    say(r->tag, "error: cannot read the end offsets of %s", topic);
    return -1;
  }
  /* A start may take a while to join; a hung one is an error. */
  double limit = 120.0 + 10.0 * r->t_ref;
  uint64_t t0 = rs_now_ns();
  pid_t pid = spawn(argv, crash_env, log, NULL);
  if (pid < 0) {
    say(r->tag, "error: cannot start %s: %s", bin(), strerror(errno));
    return -1;
  }
  int st = 0;
  int64_t last = oc->out_start;
  for (;;) {
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid)
      break;
    double el = secs_since(t0);
    int64_t end = topic_end(r->mon, topic, g_out_parts, NULL);
    if (end >= 0) {
      if (end > oc->out_start && oc->first_out < 0)
        oc->first_out = el;
      if (end > last)
        oc->last_out = el;
      last = end;
    }
    /* Records processed so far: one output per input. */
    int64_t pos = r->eo ? last : stored_pos + (last - oc->out_start);
    int kill_now = 0;
    if (pl->kind == K_STARTUP && el >= pl->delay)
      kill_now = 1;
    else if (pl->kind == K_PROGRESS && pos >= pl->target)
      kill_now = 1;
    else if ((pl->kind == K_CKPT_BEFORE || pl->kind == K_CKPT_AFTER) &&
             pos >= pl->guard)
      kill_now = 1;
    if (el > limit) {
      say(r->tag, "error: start %s still running after %.0f s; killing it",
          group, el);
      kill_now = 1;
      r->errors++;
    }
    if (kill_now) {
      kill(pid, SIGKILL);
      st = wait_exit(pid);
      oc->killed_by_us = 1;
      break;
    }
    sleep_ms(2);
  }
  oc->secs = secs_since(t0);
  oc->status = st;
  oc->out_end = topic_end(r->mon, topic, g_out_parts, NULL);
  if (oc->out_end > last)
    oc->last_out = oc->secs;
  if (oc->out_end >= 0)
    last = oc->out_end;
  if (oc->first_out < 0 && last > oc->out_start)
    oc->first_out = oc->secs;
  oc->pos = r->eo ? last : stored_pos + (last - oc->out_start);
  return 0;
}

/* The kill plan: K kills, at least 2 (and 3 in 10) in checkpoint writes,
 * 1 in 5 at start-up, the rest by progress; targets spread evenly over the
 * input in the order the kills come. */
static plan_t *make_plan(run_t *r, int *n_out) {
  int k = O.kills;
  plan_t *pl = calloc((size_t)k * 2 + 1, sizeof *pl); /* room for extras */
  if (!pl)
    return NULL;
  int n_ckpt = k * 3 / 10 > 2 ? k * 3 / 10 : 2;
  int n_start = k / 5 > 1 ? k / 5 : 1;
  if (n_ckpt + n_start > k)
    n_start = k - n_ckpt;
  for (int i = 0; i < k; i++)
    pl[i].kind = i < n_ckpt             ? (i % 2 ? K_CKPT_BEFORE : K_CKPT_AFTER)
                 : i < n_ckpt + n_start ? K_STARTUP
                                        : K_PROGRESS;
  for (int i = k - 1; i > 0; i--) {
    int j = (int)(rng_next(&r->rng) % (uint64_t)(i + 1));
    plan_t t = pl[i];
    pl[i] = pl[j];
    pl[j] = t;
  }
  int adv = k - n_start, a = 0;
  double seg = (double)O.events / (adv + 1);
  for (int i = 0; i < k; i++) {
    if (pl[i].kind == K_STARTUP) {
      /* Half in the first 0.4 s (state open, output scan), half up to
       * the reference's first output (group join, first fetch). */
      double hi = r->j_ref * 0.9;
      pl[i].delay = (i % 2 || hi < 0.5) ? 0.02 + 0.38 * rng_unit(&r->rng)
                                        : 0.4 + (hi - 0.4) * rng_unit(&r->rng);
      continue;
    }
    a++;
    pl[i].target = (int64_t)(seg * (a + 0.5 * (rng_unit(&r->rng) - 0.5)));
  }
  *n_out = k;
  return pl;
}

/* Fixes a planned kill against where the run stands: the records already
 * processed (for exactly_once, outputs already written are not written
 * again, so progress shows only past the topic's current end), the last
 * records of the input (a start must not reach the end before its kill),
 * and, for a checkpoint kill, which checkpoint to die in. more: other
 * kills are planned after this one. */
static void prepare_kill(run_t *r, plan_t *pl, int64_t stored, int more) {
  if (pl->kind == K_STARTUP)
    return;
  int64_t base = stored;
  if (r->eo) {
    int64_t end = topic_end(r->mon, r->topic, g_out_parts, NULL);
    if (end > base)
      base = end;
  }
  /* Stop short of the end by what ~2 polls of the harness let through. */
  int64_t margin = O.events / 50 > 500 ? O.events / 50 : 500;
  int64_t last = O.events - margin;
  if (pl->kind == K_PROGRESS) {
    if (base >= last - margin / 2) {
      pl->kind = K_STARTUP; /* too little input left to land on it */
      pl->delay = 0.02 + 0.38 * rng_unit(&r->rng);
      return;
    }
    if (pl->target <= base)
      pl->target = base + (last - base) / 4;
    if (pl->target > last)
      pl->target = last;
    return;
  }
  /* A checkpoint kill. The crash point counts only checkpoints that write
   * (the engine skips the ones where nothing moved), and at commit_interval
   * 200 ms those come only while records are processed: the start
   * processes from the stored position, the first working checkpoint
   * comes within one interval of the first record, the next one an
   * interval later, and so on; the checkpoint at the stop writes too when
   * anything moved since the last one. So the n-th working checkpoint has
   * come by the time about n intervals' worth of records are processed,
   * and the first one comes for certain in a start that has any record to
   * process. ckpt_recs is the records of one interval. */
  if (stored >= O.events) {
    pl->kind = K_STARTUP; /* nothing left to process: no checkpoint writes */
    pl->delay = 0.02 + 0.38 * rng_unit(&r->rng);
    return;
  }
  double w = (double)(last - stored) / r->ckpt_recs;
  /* Aim at a checkpoint that comes with half an interval to spare before
   * the guard, at most the 3rd; for exactly_once the guard looks at the
   * output's end, which a replay does not move, so a start whose end is
   * already near the guard gets the first. */
  long n_max = w >= 3.5 ? 3 : w >= 1.5 ? (long)(w - 0.5) : 1;
  if (base >= last - margin)
    n_max = 1;
  pl->ckpt_n = 1 + (long)(rng_next(&r->rng) % (uint64_t)n_max);
  pl->expect = w;
  /* The first working checkpoint needs no guard: it comes at the latest
   * with the final checkpoint at the end of the input. A later one may
   * not come before the end; the harness kills at the guard instead. */
  pl->guard = pl->ckpt_n == 1 ? NO_GUARD : last;
  /* When the kill may land in that final checkpoint (less than an
   * interval of input left), dying after the write would store the end of
   * the input: every later start would have nothing to process (the
   * remaining kills would all be start-up kills, and no further
   * checkpoint kill could land). Unless nothing follows, die before the
   * write instead. */
  if (pl->kind == K_CKPT_AFTER && w < 1.0 && (more || r->ckpt_kills + 1 < 2))
    pl->kind = K_CKPT_BEFORE;
}

/* Checkpoint kills still planned in pl[from..n). */
static int ckpt_left(const plan_t *pl, int from, int n) {
  int k = 0;
  for (int i = from; i < n; i++)
    k += pl[i].kind == K_CKPT_BEFORE || pl[i].kind == K_CKPT_AFTER;
  return k;
}

static void *run_guarantee(void *arg) {
  run_t *r = arg;
  uint64_t t_start = rs_now_ns();
  outcome_t oc;
  char what[64];
  r->mon = kclient(RD_KAFKA_PRODUCER, NULL);
  if (!r->mon || write_config(r, r->ref_cfg, r->ref_state, r->ref_topic) ||
      write_config(r, r->cfg, r->state, r->topic)) {
    r->errors++;
    goto out;
  }

  /* 1. The uninterrupted reference. */
  plan_t none = {.kind = K_NONE};
  char group[64];
  snprintf(group, sizeof group, "ref-%s", r->tag);
  if (run_once(r, r->ref_cfg, r->ref_topic, group, &none, 0, &oc)) {
    r->errors++;
    goto out;
  }
  describe_status(oc.status, what, sizeof what);
  r->j_ref = oc.first_out > 0 ? oc.first_out : oc.secs;
  r->t_ref = oc.secs;
  /* Records per checkpoint interval, from the reference's output rate
   * (first output to last; the exit comes later, after the outputs in
   * flight and the final checkpoint), doubled: processing runs ahead of
   * the acknowledged outputs (checkpoints, asynchronous, no longer stop it;
   * measured when they did: the first working checkpoint of a start came
   * after up to 66k records where the output rate gave 36k per interval).
   * Raised by what the kills show. */
  double proc = oc.last_out - r->j_ref;
  if (oc.last_out < 0 || proc < 0.05)
    proc = 0.05;
  r->ckpt_recs = 2.0 * (double)O.events / proc * COMMIT_MS / 1000.0;
  say(r->tag,
      "reference run: %s after %.1f s, first output after %.1f s, last after "
      "%.1f s, %lld outputs (~%.0f records per %d ms checkpoint interval)",
      what, oc.secs, r->j_ref, oc.last_out, (long long)oc.out_end, r->ckpt_recs,
      COMMIT_MS);
  if (!WIFEXITED(oc.status) || WEXITSTATUS(oc.status) != 0 ||
      oc.out_end != O.events) {
    char log[PATH_MAX + 64];
    start_log(r, log, sizeof log);
    say(r->tag, "error: the reference run failed (log: %s)", log);
    r->errors++;
    goto out;
  }

  /* 2. The crash run. */
  int n_plan = 0, extras = 0;
  plan_t *pl = make_plan(r, &n_plan);
  if (!pl) {
    r->errors++;
    goto out;
  }
  int64_t pos = 0; /* input position stored with the state */
  for (int i = 0; i < n_plan && !r->errors; i++) {
    r->attempts++;
    if (O.same_group)
      snprintf(group, sizeof group, "crash-%s", r->tag);
    else
      snprintf(group, sizeof group, "crash-%s-%d", r->tag, r->attempts);
    prepare_kill(r, &pl[i], pos, i + 1 < n_plan);
    if (run_once(r, r->cfg, r->topic, group, &pl[i], pos, &oc)) {
      r->errors++;
      break;
    }
    describe_status(oc.status, what, sizeof what);
    int sigkill = WIFSIGNALED(oc.status) && WTERMSIG(oc.status) == SIGKILL;
    int64_t before = pos;
    int64_t newpos = stored_position(r, NULL, 0);
    if (newpos >= 0)
      pos = newpos;
    if (!sigkill) {
      if ((pl[i].kind == K_CKPT_BEFORE || pl[i].kind == K_CKPT_AFTER) &&
          pl[i].guard == NO_GUARD)
        say(r->tag,
            "start %d ended by itself: %s after %.1f s, stored input "
            "position %lld -> %lld - RECSTREAM_CRASH_POINT=%s:%ld never "
            "fired although the start had records to process: no checkpoint "
            "wrote (log: %s/%s-start%02d.log)",
            r->attempts, what, oc.secs, (long long)before, (long long)pos,
            kind_name[pl[i].kind], pl[i].ckpt_n, g_tmp, r->tag, r->attempts);
      else
        say(r->tag,
            "start %d (%s kill planned) ended by itself: %s after %.1f s - "
            "the input ran out before the planned kills (log: "
            "%s/%s-start%02d.log)",
            r->attempts, kind_name[pl[i].kind], what, oc.secs, g_tmp, r->tag,
            r->attempts);
      r->errors++;
      break;
    }
    r->kills++;
    kind_t k = pl[i].kind;
    char log[PATH_MAX + 64];
    start_log(r, log, sizeof log);
    int assigned = file_contains(log, "engine: assigned ");
    /* Killed in the checkpoint at the stop, after the input's end. */
    int at_stop = file_contains(log, "engine: stopping:");
    /* Records were processed in that start (for exactly_once a replay of
     * records whose outputs are already written shows no output). */
    int mid = oc.first_out >= 0 || pos > before ||
              (at_stop && before < O.events) ||
              (assigned && oc.secs >= r->j_ref);
    const char *how = kind_name[k];
    if ((k == K_CKPT_BEFORE || k == K_CKPT_AFTER) && oc.killed_by_us) {
      /* The crash point had not fired when the run passed its guard:
       * fewer than ckpt_n working checkpoints came while the start
       * processed oc.pos - before records, so an interval holds more than
       * that over ckpt_n. Aim lower from now on. */
      how = "progress (checkpoint kill not reached)";
      r->ckpt_missed++;
      double seen = (double)(oc.pos - before) / (double)pl[i].ckpt_n;
      if (seen > r->ckpt_recs)
        r->ckpt_recs = seen;
      if (extras < O.kills &&
          r->ckpt_kills + ckpt_left(pl, i + 1, n_plan) < 2 && pos < O.events) {
        plan_t x = {.kind = k};
        pl[n_plan++] = x;
        extras++;
      }
    } else if (k == K_CKPT_BEFORE || k == K_CKPT_AFTER) {
      r->ckpt_kills++;
      if (k == K_CKPT_BEFORE)
        r->ckpt_before++;
      else
        r->ckpt_after++;
      if (at_stop)
        r->ckpt_final++;
      /* Records shown processed in that start. The engine passes the crash
       * point only in checkpoints that write, so they were; but for
       * exactly_once a replay shows no output, and a kill before the write
       * leaves the stored position as it was: then only a stop at the
       * input's end or the time since exec tells. */
      if (mid)
        r->ckpt_mid++;
      /* Died in the ckpt_n-th working checkpoint of the start: the
       * records processed up to it, over ckpt_n, are a lower bound of an
       * interval's (not so in the final checkpoint, which the end of the
       * input cut short). They are what the write stored, and for
       * at_least_once also the outputs written since the start (the
       * checkpoint waits until every output is acknowledged). */
      int64_t done = -1;
      if (k == K_CKPT_AFTER && pos > before)
        done = pos - before;
      else if (!r->eo)
        done = oc.pos - before;
      if (!at_stop && done > 0) {
        double seen = (double)done / (double)pl[i].ckpt_n;
        if (seen > r->ckpt_recs)
          r->ckpt_recs = seen;
      }
    } else if (k == K_STARTUP) {
      r->startup_kills++;
    }
    char extra[160] = "";
    if (k == K_STARTUP)
      snprintf(extra, sizeof extra, " (planned at %.2f s)", pl[i].delay);
    else if (k == K_PROGRESS)
      snprintf(extra, sizeof extra, " (target %lld records)",
               (long long)pl[i].target);
    else if (pl[i].guard == NO_GUARD)
      snprintf(extra, sizeof extra,
               " (working checkpoint %ld of ~%.1f expected before the "
               "input's end, no guard%s)",
               pl[i].ckpt_n, pl[i].expect,
               at_stop ? "; the final one, at the end of the input" : "");
    else
      snprintf(extra, sizeof extra,
               " (working checkpoint %ld of ~%.1f expected before the guard "
               "at %lld records)",
               pl[i].ckpt_n, pl[i].expect, (long long)pl[i].guard);
    say(r->tag,
        "kill %d: %s%s after %.2f s, %s; outputs %lld -> %lld, stored input "
        "position %lld -> %lld",
        r->kills, how, extra, oc.secs,
        mid        ? "mid-stream"
        : assigned ? "partitions assigned, no processing seen"
                   : "before partitions were assigned",
        (long long)oc.out_start, (long long)oc.out_end, (long long)before,
        (long long)pos);
    /* Not enough checkpoint kills yet and the plan is done: one more. */
    if (i + 1 == n_plan && r->ckpt_kills < 2 && extras < O.kills &&
        pos < O.events) {
      plan_t x = {.kind = r->ckpt_after <= r->ckpt_before ? K_CKPT_AFTER
                                                          : K_CKPT_BEFORE};
      pl[n_plan++] = x;
      extras++;
    }
  }
  free(pl);

  /* 3. The final start, to the end. */
  if (!r->errors) {
    r->attempts++;
    if (O.same_group)
      snprintf(group, sizeof group, "crash-%s", r->tag);
    else
      snprintf(group, sizeof group, "crash-%s-%d", r->tag, r->attempts);
    if (run_once(r, r->cfg, r->topic, group, &none, pos, &oc)) {
      r->errors++;
    } else {
      describe_status(oc.status, what, sizeof what);
      say(r->tag, "final start: %s after %.1f s, output topic at %lld", what,
          oc.secs, (long long)oc.out_end);
      if (!WIFEXITED(oc.status) || WEXITSTATUS(oc.status) != 0) {
        say(r->tag, "error: the final start failed (log: %s/%s-start%02d.log)",
            g_tmp, r->tag, r->attempts);
        r->errors++;
      }
    }
  }

  /* 4. Compare. */
  if (!r->errors) {
    compare_state(r->tag, r->ref_state, r->state, &r->state_st);
    odump_t a, b;
    int ra = read_topic(r->tag, r->ref_topic, g_out_parts, &a);
    int rb = read_topic(r->tag, r->topic, g_out_parts, &b);
    if (ra || rb)
      r->out_st.errors++;
    else if (r->eo)
      compare_eo(r->tag, &a, &b, &r->out_st);
    else
      compare_alo(r->tag, &a, &b, &r->out_st);
    if (!ra && a.total != (size_t)O.events) {
      say(r->tag, "error: the reference output has %zu records, not %ld",
          a.total, O.events);
      r->out_st.errors++;
    }
    odump_free(&a);
    odump_free(&b);
  }
out:
  if (r->mon)
    rd_kafka_destroy(r->mon);
  r->mon = NULL;
  r->secs = secs_since(t_start);
  return NULL;
}

/* ------------------------------------------------------------ main */

static int parse_long(const char *flag, const char *s, long min, long max,
                      long *out) {
  int64_t v;
  if (rs_parse_int64(s, &v) || v < min || v > max) {
    fprintf(stderr,
            "crash_harness: %s: expected an integer in [%ld, %ld], got '%s'\n"
            "Try 'crash_harness --help'.\n",
            flag, min, max, s);
    return 2;
  }
  *out = (long)v;
  return 0;
}

static int parse_args(int argc, char **argv) {
  static const struct option lo[] = {
      {"events", required_argument, NULL, 'n'},
      {"kills", required_argument, NULL, 'k'},
      {"guarantee", required_argument, NULL, 'g'},
      {"seed", required_argument, NULL, 's'},
      {"same-group", no_argument, NULL, 'G'},
      {"keep", no_argument, NULL, 'K'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int ch, rc;
  long v;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
    switch (ch) {
    case 'n':
      if ((rc = parse_long("--events", optarg, 1000, MAX_EVENTS, &O.events)))
        return rc;
      break;
    case 'k':
      if ((rc = parse_long("--kills", optarg, 2, 1000, &v)))
        return rc;
      O.kills = (int)v;
      break;
    case 's':
      if ((rc = parse_long("--seed", optarg, 0, LONG_MAX, &v)))
        return rc;
      O.seed = (uint64_t)v;
      break;
    case 'g':
      if (!strcmp(optarg, "exactly_once"))
        O.guarantees = 1;
      else if (!strcmp(optarg, "at_least_once"))
        O.guarantees = 2;
      else if (!strcmp(optarg, "both"))
        O.guarantees = 3;
      else {
        fprintf(stderr,
                "crash_harness: --guarantee: expected exactly_once, "
                "at_least_once or both, got '%s'\n",
                optarg);
        return 2;
      }
      break;
    case 'G':
      O.same_group = 1;
      break;
    case 'K':
      O.keep = 1;
      break;
    case 'h':
      fputs(usage, stdout);
      return -1;
    default:
      fprintf(stderr,
              "crash_harness: unknown or incomplete option '%s'\n"
              "Try 'crash_harness --help'.\n",
              argv[optind - 1]);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "crash_harness: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  return 0;
}

static void init_run(run_t *r, int eo) {
  memset(r, 0, sizeof *r);
  r->eo = eo;
  r->tag = eo ? "eo" : "alo";
  r->guarantee = eo ? "exactly_once" : "at_least_once";
  snprintf(r->ref_topic, sizeof r->ref_topic, "out-ref-%s", r->tag);
  snprintf(r->topic, sizeof r->topic, "out-crash-%s", r->tag);
  snprintf(r->ref_cfg, sizeof r->ref_cfg, "%s/ref-%s.yaml", g_tmp, r->tag);
  snprintf(r->cfg, sizeof r->cfg, "%s/crash-%s.yaml", g_tmp, r->tag);
  snprintf(r->ref_state, sizeof r->ref_state, "%s/state-ref-%s", g_tmp, r->tag);
  snprintf(r->state, sizeof r->state, "%s/state-crash-%s", g_tmp, r->tag);
  r->rng = O.seed * 0x100000001b3ULL + (uint64_t)eo + 1;
}

int main(int argc, char **argv) {
  int rc = parse_args(argc, argv);
  if (rc)
    return rc < 0 ? 0 : rc;
  g_t0 = rs_now_ns();
  signal(SIGPIPE, SIG_IGN);
  const char *tmpdir = getenv("TMPDIR");
  snprintf(g_tmp, sizeof g_tmp, "%s/crash-harness-XXXXXX",
           tmpdir && *tmpdir ? tmpdir : "/tmp");
  if (!mkdtemp(g_tmp)) {
    fprintf(stderr, "crash_harness: mkdtemp: %s\n", strerror(errno));
    return 1;
  }
  g_out_parts = IN_PARTS;
  say(NULL,
      "crash harness: %ld events, %d kills per guarantee, %s, seed %" PRIu64
      ", %d input partitions, %d output partitions; work dir %s",
      O.events, O.kills,
      O.guarantees == 3   ? "both guarantees"
      : O.guarantees == 1 ? "exactly_once"
                          : "at_least_once",
      O.seed, IN_PARTS, (int)g_out_parts, g_tmp);

  int failed = 0;
  pid_t broker = -1;
  run_t runs[2];
  int n_runs = 0;
  /* The broker. */
  char log[PATH_MAX + 32], parts[16];
  snprintf(log, sizeof log, "%s/broker.log", g_tmp);
  snprintf(parts, sizeof parts, "%d", IN_PARTS);
  char *bargv[] = {(char *)bin(),
                   "broker",
                   "--partitions",
                   parts,
                   "--topics",
                   IN_TOPIC "," IN_TOPIC ".dlq,out-ref-eo,out-crash-eo,"
                            "out-ref-alo,out-crash-alo",
                   NULL};
  int bfd = -1;
  broker = spawn(bargv, NULL, log, &bfd);
  FILE *bf = broker > 0 ? fdopen(bfd, "r") : NULL;
  if (!bf || !fgets(g_bootstrap, sizeof g_bootstrap, bf)) {
    say(NULL, "error: the broker did not start (log: %s)", log);
    failed = 1;
    goto done;
  }
  g_bootstrap[strcspn(g_bootstrap, "\r\n")] = '\0';
  say(NULL, "broker %s (pid %d)", g_bootstrap, (int)broker);

  /* The input. */
  char n_ev[32], seed[32];
  snprintf(n_ev, sizeof n_ev, "%ld", O.events);
  snprintf(seed, sizeof seed, "%" PRIu64, O.seed);
  snprintf(log, sizeof log, "%s/generate.log", g_tmp);
  char *gargv[] = {(char *)bin(), "generate", "--brokers", g_bootstrap,
                   "--topic",     IN_TOPIC,   "-n",        n_ev,
                   "--seed",      seed,       NULL};
  uint64_t tg = rs_now_ns();
  pid_t gen = spawn(gargv, NULL, log, NULL);
  int gst = gen > 0 ? wait_exit(gen) : -1;
  rd_kafka_t *rk = kclient(RD_KAFKA_PRODUCER, NULL);
  int64_t in_total = rk ? topic_end(rk, IN_TOPIC, IN_PARTS, g_in_end) : -1;
  if (rk)
    rd_kafka_destroy(rk);
  if (gst == -1 || !WIFEXITED(gst) || WEXITSTATUS(gst) != 0 ||
      in_total != O.events) {
    say(NULL,
        "error: generating the input failed (%lld records in %s; log: %s)",
        (long long)in_total, IN_TOPIC, log);
    failed = 1;
    goto done;
  }
  say(NULL, "input: %lld interactions in %s, %.1f s", (long long)in_total,
      IN_TOPIC, secs_since(tg));

  pthread_t th[2];
  int started[2] = {0, 0};
  for (int g = 0; g < 2; g++) {
    if (!(O.guarantees & (1 << g)))
      continue;
    init_run(&runs[n_runs], g == 0);
    started[n_runs] =
        !pthread_create(&th[n_runs], NULL, run_guarantee, &runs[n_runs]);
    if (!started[n_runs])
      runs[n_runs].errors++;
    n_runs++;
  }
  for (int i = 0; i < n_runs; i++)
    if (started[i])
      pthread_join(th[i], NULL);

  /* Summary. */
  uint64_t st_total = 0, out_total = 0, mism = 0;
  int kills = 0, ckpt = 0;
  for (int i = 0; i < n_runs; i++) {
    run_t *r = &runs[i];
    printf("== %s: kills %d (in checkpoint writes %d: %d before, %d after "
           "the write; at start-up %d), starts %d, %.1f s\n",
           r->guarantee, r->kills, r->ckpt_kills, r->ckpt_before, r->ckpt_after,
           r->startup_kills, r->attempts, r->secs);
    printf("   checkpoint kills: %d shown to follow records processed in "
           "that start, %d in the final checkpoint at the input's end; %d "
           "planned ones not reached (done by the harness instead)\n",
           r->ckpt_mid, r->ckpt_final, r->ckpt_missed);
    printf("   state:  %llu entries compared, %llu mismatches\n",
           (unsigned long long)r->state_st.compared,
           (unsigned long long)r->state_st.mismatches);
    printf("   output: %llu records compared in %d partitions, %llu extra "
           "(whole duplicates), %llu mismatches\n",
           (unsigned long long)r->out_st.compared, (int)g_out_parts,
           (unsigned long long)r->out_st.extra,
           (unsigned long long)r->out_st.mismatches);
    int bad = r->errors || r->state_st.errors || r->out_st.errors;
    if (r->kills < O.kills) {
      printf("   FAIL: %d kills, %d requested\n", r->kills, O.kills);
      bad = 1;
    }
    if (r->ckpt_kills < 2) {
      printf("   FAIL: %d kills in checkpoint writes, at least 2 needed\n",
             r->ckpt_kills);
      bad = 1;
    } else if (r->ckpt_mid < 2) {
      printf("   note: only %d checkpoint kills were shown to hit a start that "
             "had processed records\n",
             r->ckpt_mid);
    }
    if (r->errors || r->state_st.errors || r->out_st.errors)
      printf("   FAIL: errors prevented a full comparison (see above)\n");
    failed |= bad;
    st_total += r->state_st.compared;
    out_total += r->out_st.compared;
    mism += r->state_st.mismatches + r->out_st.mismatches;
    kills += r->kills;
    ckpt += r->ckpt_kills;
  }
  if (n_runs == 2 && !runs[0].errors && !runs[1].errors) {
    /* Deterministic order: the two references agree on the state. */
    cmp_stats_t x = {0};
    compare_state("refs", runs[0].ref_state, runs[1].ref_state, &x);
    printf("== reference states (exactly_once vs at_least_once): %llu entries "
           "compared, %llu mismatches\n",
           (unsigned long long)x.compared, (unsigned long long)x.mismatches);
    st_total += x.compared;
    mism += x.mismatches;
    failed |= x.errors != 0;
  }
  printf("== total: kills %d (%d in checkpoint writes), records compared: "
         "%llu state entries, %llu outputs; mismatches %llu; %.1f s\n",
         kills, ckpt, (unsigned long long)st_total,
         (unsigned long long)out_total, (unsigned long long)mism,
         secs_since(g_t0));
  if (mism)
    failed = 1;

done:
  if (broker > 0) {
    kill(broker, SIGTERM);
    int bst = 0;
    for (int i = 0; i < 100 && waitpid(broker, &bst, WNOHANG) == 0; i++)
      sleep_ms(50);
    if (waitpid(broker, &bst, WNOHANG) == 0) {
      kill(broker, SIGKILL);
      wait_exit(broker);
    }
  }
  if (bf)
    fclose(bf);
  if (failed || O.keep) {
    printf("%s; work dir kept: %s\n", failed ? "FAILED" : "passed", g_tmp);
  } else {
    rm_rf(g_tmp);
    printf("passed\n");
  }
  return failed ? 1 : 0;
}
