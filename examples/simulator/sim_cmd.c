/* `recstream simulate`: the closed loop around the engine. Simulated users
 * (sim_model.c) produce interactions to the input topic, read the
 * recommendations the engine sends back, click with their true
 * probability, produce the clicks as interactions (and feedback naming the
 * impression), and the command prints CTR over time per variant next to
 * the oracle's and a random policy's, plus the latency from an interaction
 * being produced to its recommendation being consumed.
 *
 * One thread: a librdkafka producer and an assign()ed consumer (no group
 * join, so the loop starts at once), paced by the monotonic clock.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "sim_cmd.h"
#include "sim_model.h"
#include "util.h"

#define PROG "recstream simulate"
#define MAX_N 64        /* items of a list the users look at */
#define MAX_VARIANTS 16 /* distinct variant names tracked */
#define LAT_RING 8      /* in-flight interactions per user, for latency */

enum exit_code { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

typedef struct sim_opts {
  const char *brokers, *input, *recos, *feedback, *plot;
  rs_sim_opts_t model;
  double duration_s, rate, window_s, warmup_s;
  double look; /* probability that a user with an unseen list looks at it */
  double feedback_linger_ms; /* linger.ms of the feedback producer */
  int json, warmup_set;
  char **props;
  size_t n_props;
} sim_opts_t;

typedef struct win_stats {
  uint64_t lists, shown, clicks;
  double e_model, e_oracle, e_random; /* expected clicks */
} win_stats_t;

typedef struct pending {
  uint32_t items[MAX_N];
  uint8_t known[MAX_N];
  uint32_t n;
  int variant;
  char impression[96];
} pending_t;

typedef struct inflight {
  int64_t ts_ms; /* -1: free */
  uint64_t sent_ns;
} inflight_t;

typedef struct sim_run {
  const sim_opts_t *o;
  rs_sim_t *model;
  rd_kafka_t *prod, *cons;
  rd_kafka_t *fprod;    /* feedback records: own producer, own linger */
  pending_t *pending;   /* per user */
  inflight_t *inflight; /* users * LAT_RING */
  char variants[MAX_VARIANTS][64];
  int n_variants;
  win_stats_t *wins; /* n_wins * MAX_VARIANTS */
  size_t n_wins;
  double *lat_ms;
  size_t n_lat, cap_lat;
  uint64_t rng, start_ns;
  uint64_t produced, feedback, recos, bad_recos, unmatched, failed;
  char first_failure[256];
  rs_buf_t buf;
  rs_codec_t *codec;
} sim_run_t;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

/* ---------------------------------------------------------------- usage */

static void print_help(FILE *f) {
  fprintf(
      f,
      "Usage: " PROG " --brokers LIST [options]\n"
      "\n"
      "Runs simulated users against a running engine (e.g. configs/loop.yaml)\n"
      "in a closed loop: they produce interactions to the input topic, read\n"
      "the recommendations topic, click each shown item with probability\n"
      "pref(true affinity) x position bias, and produce their clicks as\n"
      "interactions and as feedback naming the impression. Tastes are the\n"
      "generator's planted vectors (recstream generate, same --seed) with\n"
      "drift; new items arrive during the run. Prints CTR (clicks per shown\n"
      "item) per time window and variant, with the oracle's CTR (the best\n"
      "possible list) and a random list's, both computed for the same\n"
      "impressions, and the latency from an interaction being produced to\n"
      "its recommendation being consumed. Model: docs/DEMO.md.\n"
      "\n"
      "  -b, --brokers LIST        Kafka bootstrap servers (required)\n"
      "      --users N             simulated users u0..u<N-1> (default: 200)\n"
      "      --items N             items i0..i<N-1> (default: 1000)\n"
      "      --seed S              seed of tastes and choices (default: 42)\n"
      "  -d, --duration T          run time: seconds, or with s/m/ms suffix\n"
      "                            (default: 60s)\n"
      "      --rate R              user actions per second (default: 200)\n"
      "      --window T            CTR window (default: 5s)\n"
      "      --warmup T            time excluded from the summary (default:\n"
      "                            a third of --duration)\n"
      "      --drift R             taste rotation, radians per minute\n"
      "                            (default: 0.2)\n"
      "      --new-items F         fraction of items arriving during the run\n"
      "                            (default: 0.2)\n"
      "      --look P              probability that a user with an unseen\n"
      "                            list looks at it; otherwise (and when\n"
      "                            nothing is clicked) the user acts on their\n"
      "                            own (default: 1)\n"
      "      --input-topic T       interactions topic (default: interactions)\n"
      "      --recommendations-topic T  (default: recommendations)\n"
      "      --feedback-topic T    feedback topic (schemas/feedback.avsc)\n"
      "                            (default: feedback)\n"
      "      --no-feedback         produce no feedback records\n"
      "      --feedback-linger MS  linger.ms of the feedback records' own\n"
      "                            producer, 0 to 1000 (default: 50; they\n"
      "                            are not on the path of a list, and each\n"
      "                            message set costs the embedded broker a\n"
      "                            walk of the partition's log)\n"
      "  -X, --property K=V        librdkafka property for the producer and\n"
      "                            the consumer; repeat for more (the\n"
      "                            producer batches for 3 ms: linger.ms=3;\n"
      "                            linger.ms=0 for the lowest latency at\n"
      "                            low rates)\n"
      "      --json                print the result as one JSON object\n"
      "      --plot FILE           draw CTR over time to FILE (PNG, gnuplot)\n"
      "  -h, --help                print this help and exit\n"
      "\n"
      "Exit status: 0 done, 1 runtime failure (broker unreachable, topic\n"
      "missing, no recommendation arrived, delivery failed), 2 bad usage.\n");
}

static int parse_num(const char *flag, const char *arg, double min, double max,
                     int integer, double *out) {
  char *end;
  errno = 0;
  double v = strtod(arg, &end);
  if (!*arg || *end || errno || !isfinite(v) || v < min || v > max ||
      (integer && v != floor(v)))
    return rs_usage_error("simulate", "%s expects %s from %g to %g, got '%s'",
                          flag, integer ? "an integer" : "a number", min, max,
                          arg);
  *out = v;
  return 0;
}

/* "90", "90s", "1.5m", "500ms". */
static int parse_time(const char *flag, const char *arg, double min,
                      double *out) {
  char *end;
  errno = 0;
  double v = strtod(arg, &end);
  double mul = !strcmp(end, "") || !strcmp(end, "s") ? 1
               : !strcmp(end, "m")                   ? 60
               : !strcmp(end, "ms")                  ? 0.001
                                                     : -1;
  if (end == arg || errno || mul < 0 || !isfinite(v) || v * mul < min ||
      v * mul > 86400)
    return rs_usage_error(
        "simulate",
        "%s expects a time (e.g. 60, 60s, 2m, 500ms) from %gs "
        "to 1 day, got '%s'",
        flag, min, arg);
  *out = v * mul;
  return 0;
}

enum long_only {
  OPT_USERS = 256,
  OPT_ITEMS,
  OPT_SEED,
  OPT_RATE,
  OPT_WINDOW,
  OPT_WARMUP,
  OPT_DRIFT,
  OPT_NEW_ITEMS,
  OPT_LOOK,
  OPT_INPUT,
  OPT_RECOS,
  OPT_FEEDBACK,
  OPT_NO_FEEDBACK,
  OPT_JSON,
  OPT_PLOT,
  OPT_FEEDBACK_LINGER,
};

static const struct option long_options[] = {
    {"brokers", required_argument, NULL, 'b'},
    {"users", required_argument, NULL, OPT_USERS},
    {"items", required_argument, NULL, OPT_ITEMS},
    {"seed", required_argument, NULL, OPT_SEED},
    {"duration", required_argument, NULL, 'd'},
    {"rate", required_argument, NULL, OPT_RATE},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"drift", required_argument, NULL, OPT_DRIFT},
    {"new-items", required_argument, NULL, OPT_NEW_ITEMS},
    {"look", required_argument, NULL, OPT_LOOK},
    {"input-topic", required_argument, NULL, OPT_INPUT},
    {"recommendations-topic", required_argument, NULL, OPT_RECOS},
    {"feedback-topic", required_argument, NULL, OPT_FEEDBACK},
    {"no-feedback", no_argument, NULL, OPT_NO_FEEDBACK},
    {"feedback-linger", required_argument, NULL, OPT_FEEDBACK_LINGER},
    {"property", required_argument, NULL, 'X'},
    {"json", no_argument, NULL, OPT_JSON},
    {"plot", required_argument, NULL, OPT_PLOT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Returns -1 to go on, or an exit status (0 after --help). */
static int parse_args(int argc, char **argv, sim_opts_t *o) {
  rs_sim_opts_default(&o->model);
  o->input = "interactions";
  o->recos = "recommendations";
  o->feedback = "feedback";
  o->duration_s = 60;
  o->rate = 200;
  o->look = 1;
  o->window_s = 5;
  o->feedback_linger_ms = 50;
  o->props = rs_calloc((size_t)argc + 1, sizeof(char *));
  if (!o->props) {
    fprintf(stderr, PROG ": out of memory\n");
    return EXIT_FAIL;
  }
  optind = 0;
  opterr = 0;
  int c;
  double v;
  while ((c = getopt_long(argc, argv, ":b:d:X:h", long_options, NULL)) != -1) {
    int rc = 0;
    switch (c) {
    case 'b':
      o->brokers = optarg;
      break;
    case OPT_USERS:
      rc = parse_num("--users", optarg, 1, 1e7, 1, &v);
      o->model.users = (uint32_t)v;
      break;
    case OPT_ITEMS:
      rc = parse_num("--items", optarg, 10, 1e7, 1, &v);
      o->model.items = (uint32_t)v;
      break;
    case OPT_SEED:
      rc = parse_num("--seed", optarg, 0, 9007199254740992.0, 1, &v);
      o->model.seed = (uint64_t)v;
      break;
    case 'd':
      rc = parse_time("--duration", optarg, 1, &o->duration_s);
      break;
    case OPT_RATE:
      rc = parse_num("--rate", optarg, 1, 1e6, 0, &o->rate);
      break;
    case OPT_WINDOW:
      rc = parse_time("--window", optarg, 0.1, &o->window_s);
      break;
    case OPT_WARMUP:
      rc = parse_time("--warmup", optarg, 0, &o->warmup_s);
      o->warmup_set = 1;
      break;
    case OPT_DRIFT:
      rc = parse_num("--drift", optarg, 0, 10, 0, &o->model.drift);
      break;
    case OPT_LOOK:
      rc = parse_num("--look", optarg, 0.01, 1, 0, &o->look);
      break;
    case OPT_NEW_ITEMS:
      rc = parse_num("--new-items", optarg, 0, 0.9, 0, &o->model.new_items);
      break;
    case OPT_INPUT:
      o->input = optarg;
      break;
    case OPT_RECOS:
      o->recos = optarg;
      break;
    case OPT_FEEDBACK:
      o->feedback = optarg;
      break;
    case OPT_NO_FEEDBACK:
      o->feedback = NULL;
      break;
    case OPT_FEEDBACK_LINGER:
      rc = parse_num("--feedback-linger", optarg, 0, 1000, 0,
                     &o->feedback_linger_ms);
      break;
    case 'X':
      if (!strchr(optarg, '=') || optarg[0] == '=')
        return rs_usage_error("simulate", "-X expects KEY=VALUE, got '%s'",
                              optarg);
      o->props[o->n_props++] = optarg;
      break;
    case OPT_JSON:
      o->json = 1;
      break;
    case OPT_PLOT:
      o->plot = optarg;
      break;
    case 'h':
      print_help(stdout);
      return EXIT_OK;
    case ':':
      return rs_usage_error("simulate", "option '%s' needs a value",
                            argv[optind - 1]);
    default:
      return rs_usage_error("simulate", "unknown option '%s'",
                            argv[optind - 1]);
    }
    if (rc)
      return rc;
  }
  if (optind < argc)
    return rs_usage_error("simulate", "unexpected argument '%s'", argv[optind]);
  if (!o->brokers || !*o->brokers)
    return rs_usage_error("simulate", "--brokers is required");
  if (!*o->input || !*o->recos || (o->feedback && !*o->feedback))
    return rs_usage_error("simulate", "topic names must not be empty");
  if (!o->warmup_set)
    o->warmup_s = o->duration_s / 3;
  if (o->warmup_s >= o->duration_s)
    return rs_usage_error(
        "simulate", "--warmup (%gs) must be shorter than --duration (%gs)",
        o->warmup_s, o->duration_s);
  if (o->window_s > o->duration_s)
    return rs_usage_error("simulate",
                          "--window (%gs) is longer than --duration (%gs)",
                          o->window_s, o->duration_s);
  o->model.horizon_s = o->duration_s;
  return -1;
}

/* ------------------------------------------------- recommendation decode */

typedef struct rd {
  const uint8_t *p, *end;
} rd_t;

static int rd_long(rd_t *r, int64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (r->p >= r->end)
      return -1;
    uint8_t b = *r->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
      return 0;
    }
  }
  return -1;
}

static int rd_string(rd_t *r, const char **s, size_t *len) {
  int64_t n;
  if (rd_long(r, &n) || n < 0 || n > r->end - r->p)
    return -1;
  *s = (const char *)r->p;
  *len = (size_t)n;
  r->p += n;
  return 0;
}

static int rd_skip(rd_t *r, size_t n) {
  if ((size_t)(r->end - r->p) < n)
    return -1;
  r->p += n;
  return 0;
}

typedef struct reco_view {
  const char *user, *impression, *variant;
  size_t user_len, impression_len, variant_len;
  const char *items[MAX_N];
  size_t item_len[MAX_N];
  uint32_t n;
  int64_t ts_ms;
} reco_view_t;

/* schemas/recommendation.avsc, Avro binary; a trailing string (the A/B
 * branch's `variant`) is read when present. */
static int decode_reco(const void *buf, size_t len, reco_view_t *v) {
  rd_t r = {buf, (const uint8_t *)buf + len};
  int64_t count, version;
  memset(v, 0, sizeof *v);
  if (rd_string(&r, &v->user, &v->user_len) ||
      rd_string(&r, &v->impression, &v->impression_len))
    return -1;
  for (;;) {
    if (rd_long(&r, &count))
      return -1;
    if (!count)
      break;
    if (count < 0) {
      int64_t bytes;
      count = -count;
      if (rd_long(&r, &bytes))
        return -1;
    }
    for (int64_t k = 0; k < count; k++) {
      const char *s;
      size_t sl;
      if (rd_string(&r, &s, &sl) || rd_skip(&r, 16))
        return -1;
      if (v->n < MAX_N) {
        v->items[v->n] = s;
        v->item_len[v->n++] = sl;
      }
    }
  }
  if (rd_long(&r, &version) || rd_long(&r, &v->ts_ms))
    return -1;
  if (r.p < r.end && rd_string(&r, &v->variant, &v->variant_len))
    return -1;
  return r.p == r.end ? 0 : -1;
}

/* ----------------------------------------------------------------- kafka */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque) {
  (void)rk;
  sim_run_t *s = opaque;
  if (m->err && s->failed++ == 0)
    snprintf(s->first_failure, sizeof s->first_failure, "%s",
             rd_kafka_err2str(m->err));
}

/* consumer 0: the interactions' producer, 1: the consumer, 2: the feedback
 * records' producer (the producer's settings, -X, then --feedback-linger). */
static rd_kafka_conf_t *make_conf(const sim_opts_t *o, int consumer, char *err,
                                  size_t errsz) {
  static const char *const prod_defaults[][2] = {
      /* The actions of ~3 ms travel as one message set: the embedded
       * broker returns one message set per partition per fetch, so
       * unbatched produces cap how fast the engine can read (docs/DEMO.md,
       * "Latency"). -X linger.ms=0 for the lowest latency at low rates. */
      {"linger.ms", "3"},
      {"batch.num.messages", "1000"},
      {"acks", "1"},
      {"enable.idempotence", "false"},
  };
  static const char *const cons_defaults[][2] = {
      {"group.id", "recstream-simulate"}, /* assign() only: never joins */
      {"enable.auto.commit", "false"},    {"fetch.wait.max.ms", "1"},
      {"fetch.error.backoff.ms", "10"},   {"enable.partition.eof", "false"},
  };
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  int cons = consumer == 1;
  size_t n = cons ? RS_ARRAY_SIZE(cons_defaults) : RS_ARRAY_SIZE(prod_defaults);
  for (size_t i = 0; i < n; i++) {
    const char *const *kv = cons ? cons_defaults[i] : prod_defaults[i];
    if (rd_kafka_conf_set(conf, kv[0], kv[1], err, errsz) != RD_KAFKA_CONF_OK)
      goto fail;
  }
  if (rd_kafka_conf_set(conf, "bootstrap.servers", o->brokers, err, errsz) !=
      RD_KAFKA_CONF_OK)
    goto fail;
  for (size_t i = 0; i < o->n_props; i++) {
    char key[256];
    const char *eq = strchr(o->props[i], '=');
    snprintf(key, sizeof key, "%.*s", (int)(eq - o->props[i]), o->props[i]);
    if (rd_kafka_conf_set(conf, key, eq + 1, err, errsz) != RD_KAFKA_CONF_OK)
      goto fail;
  }
  if (consumer == 2) {
    char v[32];
    snprintf(v, sizeof v, "%g", o->feedback_linger_ms);
    if (rd_kafka_conf_set(conf, "linger.ms", v, err, errsz) != RD_KAFKA_CONF_OK)
      goto fail;
  }
  return conf;
fail:
  rd_kafka_conf_destroy(conf);
  return NULL;
}

/* A producer with make_conf(o, which)'s settings and the run's delivery
 * reports (which: 0 interactions, 2 feedback). NULL: err says why, and
 * *usage is set when the settings were refused (a usage error). */
static rd_kafka_t *new_producer(sim_run_t *s, const sim_opts_t *o, int which,
                                int *usage, char *err, size_t errsz) {
  rd_kafka_conf_t *conf = make_conf(o, which, err, errsz);
  if (!conf) {
    *usage = 1;
    return NULL;
  }
  rd_kafka_conf_set_opaque(conf, s);
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errsz);
  if (!rk)
    rd_kafka_conf_destroy(conf); /* rd_kafka_new keeps it only on success */
  return rk;
}

/* Assigns every partition of the recommendations topic from its current
 * end, so only lists made for this run's interactions are read. */
static int assign_end(sim_run_t *s, char *err, size_t errsz) {
  const rd_kafka_metadata_t *md = NULL;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(s->cons, s->o->recos, NULL);
  rd_kafka_resp_err_t e = rd_kafka_metadata(s->cons, 0, rkt, &md, 10000);
  rd_kafka_topic_destroy(rkt);
  if (e) {
    snprintf(err, errsz, "cannot read the metadata of '%s' from %s: %s",
             s->o->recos, s->o->brokers, rd_kafka_err2str(e));
    return -1;
  }
  if (md->topic_cnt != 1 || md->topics[0].err ||
      md->topics[0].partition_cnt < 1) {
    snprintf(err, errsz, "topic '%s' does not exist on %s%s%s", s->o->recos,
             s->o->brokers, md->topic_cnt ? ": " : "",
             md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "");
    rd_kafka_metadata_destroy(md);
    return -1;
  }
  int np = md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
  for (int p = 0; p < np; p++) {
    int64_t lo, hi;
    e = rd_kafka_query_watermark_offsets(s->cons, s->o->recos, p, &lo, &hi,
                                         10000);
    if (e) {
      snprintf(err, errsz, "cannot read the end offsets of '%s': %s",
               s->o->recos, rd_kafka_err2str(e));
      rd_kafka_topic_partition_list_destroy(l);
      return -1;
    }
    rd_kafka_topic_partition_list_add(l, s->o->recos, p)->offset = hi;
  }
  e = rd_kafka_assign(s->cons, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    snprintf(err, errsz, "cannot assign '%s': %s", s->o->recos,
             rd_kafka_err2str(e));
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------ loop */

static double elapsed_s(const sim_run_t *s) {
  return (double)(rs_now_ns() - s->start_ns) / 1e9;
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int produce(sim_run_t *s, rd_kafka_t *prod, const char *topic,
                   const char *key, size_t key_len) {
  for (int tries = 0;; tries++) {
    rd_kafka_resp_err_t e = rd_kafka_producev(
        prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
        RD_KAFKA_V_VALUE(s->buf.data, s->buf.len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (!e)
      return 0;
    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || tries > 100) {
      if (s->failed++ == 0)
        snprintf(s->first_failure, sizeof s->first_failure, "%s",
                 rd_kafka_err2str(e));
      return -1;
    }
    rd_kafka_poll(prod, 10);
  }
}

static void produce_interaction(sim_run_t *s, uint32_t user, uint32_t item,
                                int type) {
  char uid[16], iid[16];
  int ul = snprintf(uid, sizeof uid, "u%" PRIu32, user);
  int il = snprintf(iid, sizeof iid, "i%" PRIu32, item);
  int64_t ts = wall_ms();
  rs_interaction_t ia = {.user = uid,
                         .item = iid,
                         .user_len = (uint32_t)ul,
                         .item_len = (uint32_t)il,
                         .event_type = type,
                         .timestamp_ms = ts};
  char err[256];
  rs_buf_reset(&s->buf);
  if (rs_codec_encode(s->codec, RS_FORMAT_AVRO, &ia, 0, &s->buf, err,
                      sizeof err)) {
    if (s->failed++ == 0)
      snprintf(s->first_failure, sizeof s->first_failure, "%s", err);
    return;
  }
  if (produce(s, s->prod, s->o->input, uid, (size_t)ul))
    return;
  s->produced++;
  inflight_t *ring = s->inflight + (size_t)user * LAT_RING, *slot = ring;
  for (int k = 0; k < LAT_RING; k++) /* a free slot, else the oldest */
    if (ring[k].ts_ms < 0 || ring[k].sent_ns < slot->sent_ns) {
      slot = ring + k;
      if (ring[k].ts_ms < 0)
        break;
    }
  slot->ts_ms = ts;
  slot->sent_ns = rs_now_ns();
}

static void produce_feedback(sim_run_t *s, uint32_t user, const pending_t *p,
                             uint32_t item) {
  if (!s->o->feedback)
    return;
  char uid[16], iid[16];
  int ul = snprintf(uid, sizeof uid, "u%" PRIu32, user);
  int il = snprintf(iid, sizeof iid, "i%" PRIu32, item);
  rs_feedback_t fb = {.user = uid,
                      .user_len = (uint32_t)ul,
                      .impression_id = p->impression,
                      .impression_id_len = (uint32_t)strlen(p->impression),
                      .item = iid,
                      .item_len = (uint32_t)il,
                      .type = RS_FEEDBACK_CLICK,
                      .value = 1.0,
                      .timestamp_ms = wall_ms()};
  rs_record_t rec = {.kind = RS_KIND_FEEDBACK, .payload = &fb};
  char err[256];
  rs_buf_reset(&s->buf);
  if (rs_codec_encode_record(s->codec, RS_FORMAT_AVRO, &rec, 0, &s->buf, err,
                             sizeof err)) {
    if (s->failed++ == 0)
      snprintf(s->first_failure, sizeof s->first_failure, "%s", err);
    return;
  }
  if (produce(s, s->fprod, s->o->feedback, uid, (size_t)ul))
    return;
  s->feedback++;
}

static win_stats_t *stats_at(sim_run_t *s, double t, int variant) {
  size_t w = (size_t)(t / s->o->window_s);
  if (w >= s->n_wins)
    w = s->n_wins - 1;
  return s->wins + w * MAX_VARIANTS + variant;
}

/* One user action: look at the pending list (clicks become interactions
 * and feedback), else act organically. */
static void act(sim_run_t *s) {
  double t = elapsed_s(s);
  uint32_t user =
      (uint32_t)((rs_sim_rand(&s->rng) >> 32) * s->o->model.users >> 32);
  pending_t *p = s->pending + user;
  int clicked = 0;
  if (p->n && (s->o->look >= 1 || rs_sim_unit(&s->rng) < s->o->look)) {
    win_stats_t *w = stats_at(s, t, p->variant);
    for (uint32_t k = 0; k < p->n; k++) {
      if (!p->known[k])
        continue; /* not an item of ours: never clicked */
      if (rs_sim_unit(&s->rng) <
          rs_sim_click_prob(s->model, user, p->items[k], k, t)) {
        produce_interaction(s, user, p->items[k], RS_EVENT_CLICK);
        produce_feedback(s, user, p, p->items[k]);
        w->clicks++;
        clicked = 1;
      }
    }
    w->lists++;
    w->shown += p->n;
    double e = 0;
    for (uint32_t k = 0; k < p->n; k++)
      if (p->known[k])
        e += rs_sim_click_prob(s->model, user, p->items[k], k, t);
    w->e_model += e;
    w->e_oracle += rs_sim_oracle_ctr(s->model, user, p->n, t) * p->n;
    w->e_random += rs_sim_random_ctr(s->model, user, p->n, t, &s->rng) * p->n;
    p->n = 0;
  }
  if (!clicked)
    produce_interaction(s, user, rs_sim_organic(s->model, user, t, &s->rng),
                        RS_EVENT_VIEW);
}

static int variant_index(sim_run_t *s, const char *v, size_t len) {
  if (!len) {
    v = "all";
    len = 3;
  }
  if (len >= sizeof s->variants[0])
    len = sizeof s->variants[0] - 1;
  for (int k = 0; k < s->n_variants; k++)
    if (strlen(s->variants[k]) == len && !memcmp(s->variants[k], v, len))
      return k;
  if (s->n_variants == MAX_VARIANTS)
    return MAX_VARIANTS - 1; /* the rest share the last row */
  memcpy(s->variants[s->n_variants], v, len);
  s->variants[s->n_variants][len] = 0;
  return s->n_variants++;
}

static void on_reco(sim_run_t *s, const rd_kafka_message_t *m) {
  reco_view_t v;
  uint32_t user;
  if (!m->payload || decode_reco(m->payload, m->len, &v) ||
      rs_sim_parse_user(s->model, v.user, v.user_len, &user)) {
    s->bad_recos++;
    return;
  }
  s->recos++;
  uint64_t now = rs_now_ns();
  inflight_t *ring = s->inflight + (size_t)user * LAT_RING, *hit = NULL;
  for (int k = 0; k < LAT_RING; k++)
    if (ring[k].ts_ms == v.ts_ms && (!hit || ring[k].sent_ns < hit->sent_ns))
      hit = ring + k;
  if (hit) {
    if (elapsed_s(s) >= s->o->warmup_s) {
      if (s->n_lat == s->cap_lat) {
        size_t cap = s->cap_lat ? 2 * s->cap_lat : 4096;
        double *nl = rs_realloc(s->lat_ms, cap * sizeof *nl);
        if (nl) {
          s->lat_ms = nl;
          s->cap_lat = cap;
        }
      }
      if (s->n_lat < s->cap_lat)
        s->lat_ms[s->n_lat++] = (double)(now - hit->sent_ns) / 1e6;
    }
    hit->ts_ms = -1;
  } else {
    s->unmatched++;
  }
  pending_t *p = s->pending + user;
  p->n = 0;
  for (uint32_t k = 0; k < v.n; k++) {
    p->known[k] =
        !rs_sim_parse_item(s->model, v.items[k], v.item_len[k], &p->items[k]);
    p->n++;
  }
  size_t il = v.impression_len < sizeof p->impression - 1
                  ? v.impression_len
                  : sizeof p->impression - 1;
  memcpy(p->impression, v.impression, il);
  p->impression[il] = 0;
  p->variant = variant_index(s, v.variant, v.variant_len);
}

static void drain(sim_run_t *s, int timeout_ms) {
  rd_kafka_message_t *m;
  while ((m = rd_kafka_consumer_poll(s->cons, timeout_ms))) {
    if (!m->err)
      on_reco(s, m);
    rd_kafka_message_destroy(m);
    timeout_ms = 0;
  }
}

/* --------------------------------------------------------------- output */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double pct(const double *v, size_t n, double q) {
  if (!n)
    return NAN;
  size_t k = (size_t)ceil(q * (double)n) - 1;
  return v[k < n ? k : n - 1];
}

static double ratio(double a, uint64_t b) {
  return b ? a / (double)b : NAN;
}

static void summarise(const sim_run_t *s, int variant, win_stats_t *out) {
  memset(out, 0, sizeof *out);
  size_t first = (size_t)ceil(s->o->warmup_s / s->o->window_s - 1e-9);
  for (size_t w = first; w < s->n_wins; w++) {
    const win_stats_t *x = s->wins + w * MAX_VARIANTS + variant;
    out->lists += x->lists;
    out->shown += x->shown;
    out->clicks += x->clicks;
    out->e_model += x->e_model;
    out->e_oracle += x->e_oracle;
    out->e_random += x->e_random;
  }
}

static void json_num(FILE *f, double v) {
  if (isfinite(v))
    fprintf(f, "%.6g", v);
  else
    fputs("null", f);
}

static void print_json(const sim_run_t *s, double p50, double p99) {
  const sim_opts_t *o = s->o;
  printf("{\"users\":%" PRIu32 ",\"items\":%" PRIu32 ",\"seed\":%" PRIu64
         ",\"duration_s\":%g,\"rate\":%g,\"window_s\":%g,\"warmup_s\":%g,"
         "\"look\":%g,",
         o->model.users, o->model.items, o->model.seed, o->duration_s, o->rate,
         o->window_s, o->warmup_s, o->look);
  printf("\"interactions\":%" PRIu64 ",\"feedback\":%" PRIu64
         ",\"recommendations\":%" PRIu64 ",\"bad_recommendations\":%" PRIu64
         ",\"latency_ms\":{\"n\":%zu,\"p50\":",
         s->produced, s->feedback, s->recos, s->bad_recos, s->n_lat);
  json_num(stdout, p50);
  fputs(",\"p99\":", stdout);
  json_num(stdout, p99);
  fputs("},\"variants\":[", stdout);
  for (int v = 0; v < s->n_variants; v++) {
    win_stats_t t;
    summarise(s, v, &t);
    printf("%s{\"variant\":\"%s\",\"lists\":%" PRIu64 ",\"shown\":%" PRIu64
           ",\"clicks\":%" PRIu64 ",\"ctr\":",
           v ? "," : "", s->variants[v], t.lists, t.shown, t.clicks);
    json_num(stdout, ratio((double)t.clicks, t.shown));
    fputs(",\"expected_ctr\":", stdout);
    json_num(stdout, ratio(t.e_model, t.shown));
    fputs(",\"oracle_ctr\":", stdout);
    json_num(stdout, ratio(t.e_oracle, t.shown));
    fputs(",\"random_ctr\":", stdout);
    json_num(stdout, ratio(t.e_random, t.shown));
    fputs(",\"windows\":[", stdout);
    for (size_t w = 0; w < s->n_wins; w++) {
      const win_stats_t *x = s->wins + w * MAX_VARIANTS + v;
      printf("%s{\"start_s\":%g,\"shown\":%" PRIu64 ",\"clicks\":%" PRIu64
             ",\"ctr\":",
             w ? "," : "", (double)w * o->window_s, x->shown, x->clicks);
      json_num(stdout, ratio((double)x->clicks, x->shown));
      fputs(",\"expected_ctr\":", stdout);
      json_num(stdout, ratio(x->e_model, x->shown));
      fputs(",\"oracle_ctr\":", stdout);
      json_num(stdout, ratio(x->e_oracle, x->shown));
      fputs(",\"random_ctr\":", stdout);
      json_num(stdout, ratio(x->e_random, x->shown));
      fputs("}", stdout);
    }
    fputs("]}", stdout);
  }
  fputs("]}\n", stdout);
}

static void print_table(const sim_run_t *s, double p50, double p99) {
  const sim_opts_t *o = s->o;
  printf("%-11s %-10s %7s %8s %7s %7s %8s %7s %7s\n", "window", "variant",
         "lists", "shown", "clicks", "ctr", "expected", "oracle", "random");
  for (size_t w = 0; w < s->n_wins; w++)
    for (int v = 0; v < s->n_variants; v++) {
      const win_stats_t *x = s->wins + w * MAX_VARIANTS + v;
      if (!x->shown)
        continue;
      char span[32];
      snprintf(span, sizeof span, "%g-%gs", (double)w * o->window_s,
               (double)(w + 1) * o->window_s);
      printf("%-11s %-10s %7" PRIu64 " %8" PRIu64 " %7" PRIu64
             " %7.4f %8.4f %7.4f %7.4f\n",
             span, s->variants[v], x->lists, x->shown, x->clicks,
             ratio((double)x->clicks, x->shown), ratio(x->e_model, x->shown),
             ratio(x->e_oracle, x->shown), ratio(x->e_random, x->shown));
    }
  printf("\nafter warm-up (%gs of %gs):\n", o->warmup_s, o->duration_s);
  printf("%-10s %8s %7s %7s %8s %7s %7s %9s %9s\n", "variant", "shown",
         "clicks", "ctr", "expected", "oracle", "random", "ctr/orcl",
         "ctr/rand");
  for (int v = 0; v < s->n_variants; v++) {
    win_stats_t t;
    summarise(s, v, &t);
    double ctr = ratio((double)t.clicks, t.shown);
    printf("%-10s %8" PRIu64 " %7" PRIu64 " %7.4f %8.4f %7.4f %7.4f %9.2f "
           "%9.2f\n",
           s->variants[v], t.shown, t.clicks, ctr, ratio(t.e_model, t.shown),
           ratio(t.e_oracle, t.shown), ratio(t.e_random, t.shown),
           ctr / ratio(t.e_oracle, t.shown), ctr / ratio(t.e_random, t.shown));
  }
  printf("\ninteraction produced -> its recommendation consumed: p50 %.2f ms, "
         "p99 %.2f ms (%zu lists after warm-up)\n",
         p50, p99, s->n_lat);
  printf("produced %" PRIu64 " interactions, %" PRIu64
         " feedback; consumed %" PRIu64 " recommendations (%" PRIu64
         " unreadable, %" PRIu64 " not matched to an interaction)\n",
         s->produced, s->feedback, s->recos, s->bad_recos, s->unmatched);
}

static int plot(const sim_run_t *s) {
  FILE *g = popen("gnuplot", "w");
  if (!g) {
    fprintf(stderr, PROG ": cannot run gnuplot: %s\n", strerror(errno));
    return -1;
  }
  fprintf(g, "set terminal pngcairo size 900,500\nset output '");
  for (const char *c = s->o->plot; *c; c++) /* quote for gnuplot */
    fprintf(g, *c == '\'' ? "''" : "%c", *c);
  fprintf(g,
          "'\nset title 'recstream simulate: CTR per %gs window'\n"
          "set xlabel 'time (s)'\nset ylabel 'CTR (clicks per shown "
          "item)'\nset key outside right\nset grid\n",
          s->o->window_s);
  for (int v = 0; v < s->n_variants + 2; v++) {
    fprintf(g, "$d%d << EOD\n", v);
    for (size_t w = 0; w < s->n_wins; w++) {
      win_stats_t x = {0};
      for (int k = 0; k < s->n_variants; k++) {
        const win_stats_t *y = s->wins + w * MAX_VARIANTS + k;
        if (v < s->n_variants && k != v)
          continue;
        x.shown += y->shown;
        x.clicks += y->clicks;
        x.e_oracle += y->e_oracle;
        x.e_random += y->e_random;
      }
      if (!x.shown)
        continue;
      double val = v < s->n_variants    ? (double)x.clicks / x.shown
                   : v == s->n_variants ? x.e_oracle / x.shown
                                        : x.e_random / x.shown;
      fprintf(g, "%g %g\n", ((double)w + 0.5) * s->o->window_s, val);
    }
    fprintf(g, "EOD\n");
  }
  fprintf(g, "plot ");
  for (int v = 0; v < s->n_variants + 2; v++)
    fprintf(g, "%s$d%d with linespoints title '%s'", v ? ", " : "", v,
            v < s->n_variants    ? s->variants[v]
            : v == s->n_variants ? "oracle"
                                 : "random");
  fprintf(g, "\n");
  int rc = pclose(g);
  if (rc) {
    fprintf(stderr, PROG ": gnuplot failed (status %d)\n", rc);
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------ main */

static int run(const sim_opts_t *o) {
  sim_run_t s = {.o = o, .rng = rs_mix64(o->model.seed ^ 0x51u)};
  char err[512];
  int rc = EXIT_FAIL;
  s.model = rs_sim_new(&o->model);
  s.pending = rs_calloc(o->model.users, sizeof *s.pending);
  s.inflight =
      rs_malloc((size_t)o->model.users * LAT_RING * sizeof(inflight_t));
  s.n_wins = (size_t)ceil(o->duration_s / o->window_s - 1e-9);
  s.wins = rs_calloc(s.n_wins * MAX_VARIANTS, sizeof *s.wins);
  if (rs_codec_new(&s.codec, NULL, err, sizeof err)) {
    fprintf(stderr, PROG ": %s\n", err);
    goto out;
  }
  if (!s.model || !s.pending || !s.inflight || !s.wins) {
    fprintf(stderr, PROG ": out of memory\n");
    goto out;
  }
  for (size_t k = 0; k < (size_t)o->model.users * LAT_RING; k++)
    s.inflight[k].ts_ms = -1;
  int usage = 0;
  if (!(s.prod = new_producer(&s, o, 0, &usage, err, sizeof err))) {
    fprintf(stderr, PROG ": %s\n", err);
    rc = usage ? EXIT_USAGE : rc;
    goto out;
  }
  rd_kafka_conf_t *cc = make_conf(o, 1, err, sizeof err);
  if (!cc) {
    fprintf(stderr, PROG ": %s\n", err);
    rc = EXIT_USAGE;
    goto out;
  }
  if (!(s.cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof err))) {
    rd_kafka_conf_destroy(cc); /* rd_kafka_new keeps it only on success */
    fprintf(stderr, PROG ": %s\n", err);
    goto out;
  }
  rd_kafka_poll_set_consumer(s.cons);
  if (o->feedback) {
    /* The feedback records on their own producer, batched for longer: no
     * list waits for them (bandit_reward joins them within its reward
     * window), and the embedded broker walks a partition's log from its
     * start for every message set it serves, so fewer, larger sets keep
     * it from falling behind at 1,000 actions/s (docs/DEMO.md). */
    if (!(s.fprod = new_producer(&s, o, 2, &usage, err, sizeof err))) {
      fprintf(stderr, PROG ": %s\n", err);
      rc = usage ? EXIT_USAGE : rc;
      goto out;
    }
  }
  if (assign_end(&s, err, sizeof err)) {
    fprintf(stderr, PROG ": %s\n", err);
    goto out;
  }
  if (!o->json)
    printf("simulating %" PRIu32 " users, %" PRIu32 " items (%" PRIu32
           " at start), seed %" PRIu64 ", %g actions/s for %gs\n",
           o->model.users, o->model.items, rs_sim_items_at(s.model, 0),
           o->model.seed, o->rate, o->duration_s);
  fflush(stdout);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  s.start_ns = rs_now_ns();
  double interval_ns = 1e9 / o->rate, due = 0;
  uint64_t end_ns = (uint64_t)(o->duration_s * 1e9);
  while (!g_stop) {
    uint64_t now = rs_now_ns() - s.start_ns;
    if (now >= end_ns)
      break;
    for (int burst = 0; due <= (double)now && burst < 1000; burst++) {
      act(&s);
      due += interval_ns;
    }
    rd_kafka_poll(s.prod, 0);
    if (s.fprod)
      rd_kafka_poll(s.fprod, 0);
    /* Sleep on the consumer until the next action is due; a list arriving
     * wakes the poll at once. Timeouts are whole milliseconds: when the
     * next action is due sooner (always above 1,000 actions/s) this still
     * sleeps 1 ms and the burst above catches up on what fell due, so the
     * rate holds without spinning a core (which the engine needs when it
     * shares the machine, e.g. bench_loop). Latency is measured from each
     * produce, so an action a little late does not count in it. */
    double wait_ms = (due - (double)(rs_now_ns() - s.start_ns)) / 1e6;
    drain(&s, wait_ms <= 0 ? 0 : wait_ms < 10 ? (int)ceil(wait_ms) : 10);
    if (s.failed)
      break;
  }
  /* The last lists still on their way; their latency still counts. */
  for (int k = 0; k < 20 && !g_stop; k++)
    drain(&s, 10);
  rd_kafka_flush(s.prod, 10000);
  if (s.fprod)
    rd_kafka_flush(s.fprod, 10000);
  if (s.failed) {
    fprintf(stderr, PROG ": %" PRIu64 " records failed: %s\n", s.failed,
            s.first_failure);
    goto out;
  }
  /* Records still queued after the run (a slow broker on a loaded
   * machine) came after the last measured list: they do not change the
   * figures, so they are reported, not fatal. An unreachable broker shows
   * as no recommendation arriving, below. */
  int undelivered =
      rd_kafka_outq_len(s.prod) + (s.fprod ? rd_kafka_outq_len(s.fprod) : 0);
  if (undelivered > 0)
    fprintf(stderr,
            PROG ": warning: %d records still undelivered after the run "
                 "(broker slow or unreachable?)\n",
            undelivered);
  if (s.n_lat)
    qsort(s.lat_ms, s.n_lat, sizeof *s.lat_ms, cmp_double);
  double p50 = pct(s.lat_ms, s.n_lat, 0.5), p99 = pct(s.lat_ms, s.n_lat, 0.99);
  if (o->json)
    print_json(&s, p50, p99);
  else
    print_table(&s, p50, p99);
  fflush(stdout);
  if (!s.recos) {
    fprintf(stderr,
            PROG ": no recommendation arrived on '%s': is the engine running "
                 "(e.g. recstream run configs/loop.yaml)?\n",
            o->recos);
    goto out;
  }
  if (o->plot && plot(&s))
    goto out;
  rc = g_stop ? EXIT_FAIL : EXIT_OK;
out:
  if (s.cons) {
    rd_kafka_consumer_close(s.cons);
    rd_kafka_destroy(s.cons);
  }
  if (s.prod)
    rd_kafka_destroy(s.prod);
  if (s.fprod)
    rd_kafka_destroy(s.fprod);
  rs_buf_free(&s.buf);
  rs_free(s.lat_ms);
  rs_free(s.wins);
  rs_free(s.inflight);
  rs_free(s.pending);
  rs_sim_destroy(s.model);
  if (s.codec)
    rs_codec_destroy(s.codec);
  return rc;
}

int rs_cmd_simulate(int argc, char **argv) {
  sim_opts_t o = {0};
  int rc = parse_args(argc, argv, &o);
  if (rc < 0)
    rc = run(&o);
  rs_free(o.props);
  return rc;
}
