/* `recstream generate`: the command around the generation model. It owns
 * argument parsing, the Kafka producer (key = user id, value encoded by the
 * interaction codec), deliberately invalid records for dead-letter demos,
 * rate pacing and the optional Avro object container file. The model itself
 * lives in generator.c and does no I/O.
 *
 * Delivery is checked, not assumed: every record has a delivery report, a
 * failed report or a record still queued after the final flush makes the
 * command fail (exit 1), and a producer that cannot reach any broker before
 * the first delivery fails fast instead of queueing forever.
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
#include <sys/stat.h>
#include <time.h>

#include <avro.h>
#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "generator.h"
#include "util.h"

#define PROG "recstream generate"
#define FLUSH_TIMEOUT_MS 60000
#define POLL_EVERY 1024

enum exit_code { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

typedef struct cmd_opts {
  const char *brokers;
  const char *topic;
  const char *out_path;
  rs_gen_opts_t gen;
  int64_t events;
  rs_format_t format;
  int32_t schema_id;
  double rate;
  int64_t bad_every;
  char **props; /* "key=value", borrowed from argv */
  size_t n_props;
} cmd_opts_t;

/* ---- usage ---- */

static void print_help(FILE *f) {
  fprintf(
      f,
      "Usage: " PROG " --brokers LIST --topic NAME [options]\n"
      "       " PROG " --out FILE [options]\n"
      "\n"
      "Generates a deterministic stream of synthetic user interactions with\n"
      "planted structure (latent user/item tastes, Zipf item popularity,\n"
      "sessions, a view-click-cart-purchase funnel, ratings) and produces it\n"
      "to a Kafka topic (key = user id), to an Avro object container file, "
      "or both.\n"
      "\n"
      "Output (at least one of --brokers and --out):\n"
      "  -b, --brokers LIST     Kafka bootstrap servers, host:port[,...]\n"
      "  -t, --topic NAME       topic to produce to (required with "
      "--brokers)\n"
      "  -f, --format FMT       record value encoding: avro, confluent or "
      "json\n"
      "                         (default: avro)\n"
      "      --schema-id ID     schema id written in the Confluent header\n"
      "                         (--format confluent; default: 1)\n"
      "  -X, --property K=V     librdkafka producer property; repeat for "
      "more.\n"
      "                         Defaults: linger.ms=5, "
      "batch.num.messages=10000,\n"
      "                         compression.type=none, "
      "enable.idempotence=true\n"
      "  -o, --out FILE         also write the stream (valid records only) "
      "as an\n"
      "                         Avro object container file "
      "(schemas/interaction.avsc)\n"
      "\n"
      "Model:\n"
      "      --users N          number of users, ids u0..u<N-1> (default: "
      "1000)\n"
      "      --items N          number of items, ids i0..i<N-1> (default: "
      "5000)\n"
      "  -n, --events N         number of records to produce (default: "
      "100000)\n"
      "      --seed S           seed; the same seed gives the same stream\n"
      "                         (default: 42)\n"
      "      --start-time T     event time of the first event: ISO 8601 "
      "with zone,\n"
      "                         or milliseconds since the epoch\n"
      "                         (default: 2026-01-01T00:00:00Z)\n"
      "\n"
      "Taste vs. popularity (see examples/generator/README.md):\n"
      "      --zipf Z           Zipf exponent of item popularity, 0..10; 0 =\n"
      "                         uniform (default: 1)\n"
      "      --affinity A       weight of the planted taste in each choice,\n"
      "                         0..20; 0 = popularity alone (default: 2)\n"
      "      --candidates M     items drawn from popularity per choice, one\n"
      "                         of them picked by taste, 1..1024 (default:\n"
      "                         16). The recommender-evaluation setting is\n"
      "                         --affinity 4 --candidates 64 (README.md)\n"
      "\n"
      "Flow:\n"
      "      --rate R           records per second; 0 = as fast as possible\n"
      "                         (default: 0)\n"
      "      --bad-every K      make every K-th record deliberately invalid,\n"
      "                         cycling through: truncated encoding, "
      "non-JSON text,\n"
      "                         JSON without item_id, negative timestamp; "
      "0 = never\n"
      "                         (default: 0)\n"
      "  -h, --help             print this help and exit\n"
      "\n"
      "A summary line goes to stderr at the end. Exit status: 0 done, 1 "
      "runtime\n"
      "failure (delivery failed, broker unreachable, file error, "
      "interrupted),\n"
      "2 bad usage.\n");
}

static int parse_uint(const char *flag, const char *arg, uint64_t min,
                      uint64_t max, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(arg, &end, 10);
  if (*arg == '-' || *arg == '+' || *arg == ' ' || !*arg || *end || errno ||
      v < min || v > max)
    return rs_usage_error("generate",
                          "%s expects an integer from %" PRIu64 " to %" PRIu64
                          ", got '%s'",
                          flag, min, max, arg);
  *out = v;
  return 0;
}

enum long_only {
  OPT_USERS = 256,
  OPT_ITEMS,
  OPT_SEED,
  OPT_SCHEMA_ID,
  OPT_RATE,
  OPT_START_TIME,
  OPT_BAD_EVERY,
  OPT_ZIPF,
  OPT_AFFINITY,
  OPT_CANDIDATES,
};

static const struct option long_options[] = {
    {"brokers", required_argument, NULL, 'b'},
    {"topic", required_argument, NULL, 't'},
    {"users", required_argument, NULL, OPT_USERS},
    {"items", required_argument, NULL, OPT_ITEMS},
    {"events", required_argument, NULL, 'n'},
    {"seed", required_argument, NULL, OPT_SEED},
    {"format", required_argument, NULL, 'f'},
    {"schema-id", required_argument, NULL, OPT_SCHEMA_ID},
    {"rate", required_argument, NULL, OPT_RATE},
    {"out", required_argument, NULL, 'o'},
    {"start-time", required_argument, NULL, OPT_START_TIME},
    {"bad-every", required_argument, NULL, OPT_BAD_EVERY},
    {"zipf", required_argument, NULL, OPT_ZIPF},
    {"affinity", required_argument, NULL, OPT_AFFINITY},
    {"candidates", required_argument, NULL, OPT_CANDIDATES},
    {"property", required_argument, NULL, 'X'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* An unrecognised long option is either unknown or an ambiguous prefix;
 * say which, and list the candidates. */
static int unknown_long(const char *arg) {
  const char *name = arg + strspn(arg, "-");
  size_t len = strcspn(name, "=");
  char cands[256] = "";
  size_t cl = 0, n = 0;
  for (const struct option *lo = long_options; lo->name && len; lo++)
    if (!strncmp(lo->name, name, len) && cl < sizeof cands) {
      cl += (size_t)snprintf(cands + cl, sizeof cands - cl, "%s--%s",
                             n ? ", " : "", lo->name);
      n++;
    }
  if (n > 1)
    return rs_usage_error("generate", "ambiguous option '%s': could be %s", arg,
                          cands);
  return rs_usage_error("generate", "unknown option '%s'", arg);
}

/* Returns -1 to go on, or an exit status (0 after --help). */
static int parse_args(int argc, char **argv, cmd_opts_t *o) {
  memset(o, 0, sizeof(*o));
  rs_gen_opts_default(&o->gen);
  o->events = 100000;
  o->format = RS_FORMAT_AVRO;
  o->schema_id = 1;
  o->props = rs_calloc((size_t)argc, sizeof(char *));
  if (!o->props) {
    fprintf(stderr, PROG ": out of memory\n");
    return EXIT_FAIL;
  }

  optind = 0; /* glibc: full re-initialisation, argv may differ per call */
  opterr = 0;
  int c, rc;
  uint64_t v;
  while ((c = getopt_long(argc, argv, ":b:t:n:f:o:X:h", long_options, NULL)) !=
         -1) {
    switch (c) {
    case 'b':
      o->brokers = optarg;
      break;
    case 't':
      o->topic = optarg;
      break;
    case 'o':
      o->out_path = optarg;
      break;
    case OPT_USERS:
      if ((rc = parse_uint("--users", optarg, 1, UINT32_MAX, &v)))
        return rc;
      o->gen.users = (uint32_t)v;
      break;
    case OPT_ITEMS:
      if ((rc = parse_uint("--items", optarg, 1, UINT32_MAX, &v)))
        return rc;
      o->gen.items = (uint32_t)v;
      break;
    case 'n':
      if ((rc = parse_uint("--events", optarg, 0, INT64_MAX, &v)))
        return rc;
      o->events = (int64_t)v;
      break;
    case OPT_SEED:
      if ((rc = parse_uint("--seed", optarg, 0, UINT64_MAX, &v)))
        return rc;
      o->gen.seed = v;
      break;
    case 'f':
      if (rs_format_parse(optarg, &o->format))
        return rs_usage_error("generate",
                              "--format expects avro, confluent or json, got "
                              "'%s'",
                              optarg);
      break;
    case OPT_SCHEMA_ID:
      if ((rc = parse_uint("--schema-id", optarg, 0, INT32_MAX, &v)))
        return rc;
      o->schema_id = (int32_t)v;
      break;
    case OPT_RATE:
      if (rs_parse_double(optarg, &o->rate) || o->rate < 0 ||
          (o->rate > 0 && o->rate < 0.001))
        return rs_usage_error("generate",
                              "--rate expects a number of records per second, "
                              "0 (unlimited) or at least 0.001, got '%s'",
                              optarg);
      break;
    case OPT_START_TIME:
      if (rs_gen_parse_time(optarg, &o->gen.start_time_ms))
        return rs_usage_error(
            "generate",
            "--start-time expects an ISO 8601 time with zone such as "
            "2026-01-01T00:00:00Z, or milliseconds since the epoch, got '%s'",
            optarg);
      break;
    case OPT_BAD_EVERY:
      if ((rc = parse_uint("--bad-every", optarg, 0, INT64_MAX, &v)))
        return rc;
      o->bad_every = (int64_t)v;
      break;
    case OPT_ZIPF:
      if (rs_parse_double(optarg, &o->gen.item_zipf) ||
          !(o->gen.item_zipf >= 0 && o->gen.item_zipf <= 10))
        return rs_usage_error("generate",
                              "--zipf expects a number from 0 to 10, got '%s'",
                              optarg);
      break;
    case OPT_AFFINITY:
      if (rs_parse_double(optarg, &o->gen.affinity) ||
          !(o->gen.affinity >= 0 && o->gen.affinity <= 20))
        return rs_usage_error("generate",
                              "--affinity expects a number from 0 to 20, got "
                              "'%s'",
                              optarg);
      break;
    case OPT_CANDIDATES:
      if ((rc = parse_uint("--candidates", optarg, 1, RS_GEN_MAX_CANDIDATES,
                           &v)))
        return rc;
      o->gen.candidates = (uint32_t)v;
      break;
    case 'X': {
      const char *eq = strchr(optarg, '=');
      if (!eq || eq == optarg)
        return rs_usage_error("generate",
                              "--property expects key=value, got '%s'", optarg);
      o->props[o->n_props++] = optarg;
      break;
    }
    case 'h':
      print_help(stdout);
      return EXIT_OK;
    case ':':
      return rs_usage_error("generate", "option '%s' needs a value",
                            argv[optind - 1]);
    default:
      if (optopt && optopt < 256)
        return rs_usage_error("generate", "unknown option '-%c'", optopt);
      return unknown_long(argv[optind - 1]);
    }
  }
  if (optind < argc)
    return rs_usage_error("generate", "unexpected argument '%s'", argv[optind]);
  if (!o->brokers && !o->out_path)
    return rs_usage_error(
        "generate", "nothing to do: give --brokers and --topic to produce "
                    "to Kafka, and/or --out FILE");
  if (o->brokers && (!o->topic || !*o->topic))
    return rs_usage_error("generate", "--topic is required with --brokers");
  if (o->topic && !o->brokers)
    return rs_usage_error("generate", "--topic given without --brokers");
  if (o->n_props && !o->brokers)
    return rs_usage_error("generate",
                          "-X/--property '%s' sets a Kafka "
                          "producer property: it needs --brokers",
                          o->props[0]);
  if (o->brokers && !*o->brokers)
    return rs_usage_error("generate",
                          "--brokers expects host:port[,...], got ''");
  return -1;
}

/* ---- Avro object container file ---- */

typedef struct ocf {
  avro_schema_t schema;
  avro_value_iface_t *iface;
  avro_value_t rec;
  int has_rec;
  avro_file_writer_t w;
  int open;
  size_t idx[7];
  uint64_t records;
} ocf_t;

static const char *const ocf_fields[7] = {
    "user_id", "item_id", "event_type", "value", "timestamp", "device", "page"};

static int ocf_open(ocf_t *f, const char *path, char *err, size_t errsz) {
  memset(f, 0, sizeof(*f));
  if (avro_schema_from_json_length(rs_schema_interaction_json,
                                   strlen(rs_schema_interaction_json),
                                   &f->schema))
    return rs_seterr(err, errsz, RS_EINTERNAL,
                     "compiled-in interaction schema: %s", avro_strerror());
  for (size_t k = 0; k < 7; k++) {
    int i = avro_schema_record_field_get_index(f->schema, ocf_fields[k]);
    if (i < 0)
      return rs_seterr(err, errsz, RS_EINTERNAL,
                       "interaction schema has no field '%s'", ocf_fields[k]);
    f->idx[k] = (size_t)i;
  }
  f->iface = avro_generic_class_from_schema(f->schema);
  if (!f->iface || avro_generic_value_new(f->iface, &f->rec))
    return rs_seterr(err, errsz, RS_ENOMEM, "avro value: %s", avro_strerror());
  f->has_rec = 1;
  errno = 0;
  if (avro_file_writer_create(path, f->schema, &f->w)) {
    int e = errno; /* avro-c's message drops it */
    if (e)
      return rs_seterr(err, errsz, RS_EIO, "cannot create '%s': %s (avro: %s)",
                       path, strerror(e), avro_strerror());
    return rs_seterr(err, errsz, RS_EIO, "cannot create '%s': %s", path,
                     avro_strerror());
  }
  f->open = 1;
  return 0;
}

static int set_opt_string(avro_value_t *field, const char *s, uint32_t len) {
  avro_value_t branch;
  if (!s)
    return avro_value_set_branch(field, 0, &branch) ||
           avro_value_set_null(&branch);
  /* avro-c string sizes count the terminating NUL; generator strings have
   * one. */
  return avro_value_set_branch(field, 1, &branch) ||
         avro_value_set_string_len(&branch, s, (size_t)len + 1);
}

static int ocf_append(ocf_t *f, const rs_interaction_t *ev, char *err,
                      size_t errsz) {
  avro_value_t fv, branch;
  int bad = 0;
  bad |= avro_value_get_by_index(&f->rec, f->idx[0], &fv, NULL) ||
         avro_value_set_string_len(&fv, ev->user, (size_t)ev->user_len + 1);
  bad |= avro_value_get_by_index(&f->rec, f->idx[1], &fv, NULL) ||
         avro_value_set_string_len(&fv, ev->item, (size_t)ev->item_len + 1);
  bad |= avro_value_get_by_index(&f->rec, f->idx[2], &fv, NULL) ||
         avro_value_set_enum(&fv, ev->event_type);
  bad |= avro_value_get_by_index(&f->rec, f->idx[3], &fv, NULL);
  if (!bad && ev->has_value)
    bad |= avro_value_set_branch(&fv, 1, &branch) ||
           avro_value_set_double(&branch, ev->value);
  else if (!bad)
    bad |=
        avro_value_set_branch(&fv, 0, &branch) || avro_value_set_null(&branch);
  bad |= avro_value_get_by_index(&f->rec, f->idx[4], &fv, NULL) ||
         avro_value_set_long(&fv, ev->timestamp_ms);
  bad |= avro_value_get_by_index(&f->rec, f->idx[5], &fv, NULL) ||
         set_opt_string(&fv, ev->device, ev->device_len);
  bad |= avro_value_get_by_index(&f->rec, f->idx[6], &fv, NULL) ||
         set_opt_string(&fv, ev->page, ev->page_len);
  if (bad)
    return rs_seterr(err, errsz, RS_EENCODE, "avro value: %s", avro_strerror());
  if (avro_file_writer_append_value(f->w, &f->rec))
    return rs_seterr(err, errsz, RS_EIO, "write: %s", avro_strerror());
  f->records++;
  return 0;
}

/* Closes the file (flushing the last block); returns its error, if any. */
static int ocf_close(ocf_t *f, char *err, size_t errsz) {
  int rc = 0;
  if (f->open && avro_file_writer_close(f->w))
    rc = rs_seterr(err, errsz, RS_EIO, "close: %s", avro_strerror());
  f->open = 0;
  if (f->has_rec)
    avro_value_decref(&f->rec);
  f->has_rec = 0;
  if (f->iface)
    avro_value_iface_decref(f->iface);
  f->iface = NULL;
  if (f->schema)
    avro_schema_decref(f->schema);
  f->schema = NULL;
  return rc;
}

/* ---- deliberately invalid records ---- */

/* Avro long: zigzag varint. */
static int put_long(rs_buf_t *b, int64_t v) {
  uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
  unsigned char t[10];
  int n = 0;
  do {
    t[n] = (unsigned char)(z & 0x7f);
    z >>= 7;
    if (z)
      t[n] |= 0x80;
    n++;
  } while (z);
  return rs_buf_append(b, t, (size_t)n);
}

static int put_string(rs_buf_t *b, const char *s, uint32_t len) {
  return put_long(b, len) || rs_buf_append(b, s, len);
}

static int put_opt_string(rs_buf_t *b, const char *s, uint32_t len) {
  return s ? put_long(b, 1) || put_string(b, s, len) : put_long(b, 0);
}

/* The event with a negative timestamp, encoded by hand because the codec
 * (rightly) refuses to encode an invalid record. Avro follows the field
 * order of schemas/interaction.avsc. */
static int encode_negative_time(const cmd_opts_t *o, const rs_interaction_t *ev,
                                rs_buf_t *b) {
  int64_t ts = -1 - ev->timestamp_ms;
  if (o->format == RS_FORMAT_JSON)
    return rs_buf_printf(b,
                         "{\"user_id\":\"%.*s\",\"item_id\":\"%.*s\","
                         "\"event_type\":\"%s\",\"timestamp\":%" PRId64 "}",
                         (int)ev->user_len, ev->user, (int)ev->item_len,
                         ev->item, rs_event_type_name(ev->event_type), ts);
  int rc = 0;
  if (o->format == RS_FORMAT_CONFLUENT) {
    uint32_t id = (uint32_t)o->schema_id;
    unsigned char h[5] = {0, (unsigned char)(id >> 24),
                          (unsigned char)(id >> 16), (unsigned char)(id >> 8),
                          (unsigned char)id};
    rc = rs_buf_append(b, h, sizeof h);
  }
  rc = rc || put_string(b, ev->user, ev->user_len) ||
       put_string(b, ev->item, ev->item_len) || put_long(b, ev->event_type);
  if (!rc && ev->has_value) {
    unsigned char d[8];
    uint64_t bits;
    memcpy(&bits, &ev->value, 8);
    for (int i = 0; i < 8; i++) /* Avro doubles are little-endian */
      d[i] = (unsigned char)(bits >> (8 * i));
    rc = put_long(b, 1) || rs_buf_append(b, d, 8);
  } else if (!rc) {
    rc = put_long(b, 0);
  }
  rc = rc || put_long(b, ts) || put_opt_string(b, ev->device, ev->device_len) ||
       put_opt_string(b, ev->page, ev->page_len);
  return rc ? RS_ENOMEM : 0;
}

/* Replaces b's content with the n-th kind of invalid record, derived from
 * ev so it looks plausible. Each kind is invalid in every format: see
 * README.md. */
static int make_bad_record(rs_codec_t *codec, const cmd_opts_t *o, uint64_t n,
                           const rs_interaction_t *ev, rs_buf_t *b, char *err,
                           size_t errsz) {
  rs_buf_reset(b);
  switch (n % 4) {
  case 0: { /* truncated encoding: a strict prefix of a valid record */
    int rc = rs_codec_encode(codec, o->format, ev, o->schema_id, b, err, errsz);
    if (rc)
      return rc;
    b->len =
        o->format == RS_FORMAT_CONFLUENT ? 5 + (b->len - 5) / 2 : b->len / 2;
    return 0;
  }
  case 1: /* '<' read as an Avro length is 30 bytes: more than follow */
    return rs_buf_append(b, "<not a record>", 14);
  case 2: /* '{' read as an Avro length is negative */
    return rs_buf_printf(b,
                         "{\"user_id\":\"%.*s\",\"event_type\":\"VIEW\","
                         "\"timestamp\":%" PRId64 "}",
                         (int)ev->user_len, ev->user, ev->timestamp_ms);
  default:
    return encode_negative_time(o, ev, b);
  }
}

/* ---- Kafka ---- */

typedef struct producer {
  rd_kafka_t *rk;
  rd_kafka_topic_t *rkt;
  uint64_t delivered;
  uint64_t delivered_bytes;
  uint64_t failed;
  char first_failure[256];
  int fatal;
  char fatal_msg[512];
  const char *brokers;
} producer_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque) {
  producer_t *p = opaque;
  if (m->err) {
    if (p->failed++ == 0)
      snprintf(p->first_failure, sizeof p->first_failure, "%s",
               rd_kafka_err2str(m->err));
  } else {
    p->delivered++;
    p->delivered_bytes += m->len;
  }
}

static void on_error(rd_kafka_t *rk, int err, const char *reason,
                     void *opaque) {
  producer_t *p = opaque;
  if (p->fatal)
    return;
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char why[256];
    rd_kafka_fatal_error(rk, why, sizeof why);
    p->fatal = 1;
    snprintf(p->fatal_msg, sizeof p->fatal_msg, "fatal producer error: %s",
             why);
  } else if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && p->delivered == 0) {
    /* Never connected: waiting out message.timeout.ms would only hide it. */
    p->fatal = 1;
    snprintf(p->fatal_msg, sizeof p->fatal_msg,
             "cannot reach any broker of '%s' (%s)", p->brokers, reason);
  } else if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
    p->fatal = 1;
    snprintf(p->fatal_msg, sizeof p->fatal_msg, "authentication failed: %s",
             reason);
  }
  /* Anything else is transient; librdkafka retries and logs it. */
}

/* Builds the configuration; property errors are usage errors. */
static int producer_conf(const cmd_opts_t *o, producer_t *p,
                         rd_kafka_conf_t **out) {
  char kerr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  static const char *const defaults[][2] = {
      {"client.id", "recstream-generate"}, {"linger.ms", "5"},
      {"batch.num.messages", "10000"},     {"compression.type", "none"},
      {"enable.idempotence", "true"},
  };
  for (size_t i = 0; i < RS_ARRAY_SIZE(defaults); i++)
    if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], kerr,
                          sizeof kerr) != RD_KAFKA_CONF_OK) {
      fprintf(stderr, PROG ": %s=%s: %s\n", defaults[i][0], defaults[i][1],
              kerr);
      rd_kafka_conf_destroy(conf);
      return EXIT_FAIL;
    }
  if (rd_kafka_conf_set(conf, "bootstrap.servers", o->brokers, kerr,
                        sizeof kerr) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    return rs_usage_error("generate", "--brokers '%s': %s", o->brokers, kerr);
  }
  for (size_t i = 0; i < o->n_props; i++) {
    char key[256];
    const char *eq = strchr(o->props[i], '=');
    size_t kl = (size_t)(eq - o->props[i]);
    if (kl >= sizeof key) {
      rd_kafka_conf_destroy(conf);
      return rs_usage_error("generate", "--property '%s': key too long",
                            o->props[i]);
    }
    memcpy(key, o->props[i], kl);
    key[kl] = '\0';
    if (rd_kafka_conf_set(conf, key, eq + 1, kerr, sizeof kerr) !=
        RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return rs_usage_error("generate", "--property '%s': %s", o->props[i],
                            kerr);
    }
  }
  rd_kafka_conf_set_opaque(conf, p);
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_conf_set_error_cb(conf, on_error);
  *out = conf;
  return -1;
}

static int producer_start(const cmd_opts_t *o, producer_t *p) {
  memset(p, 0, sizeof(*p));
  p->brokers = o->brokers;
  rd_kafka_conf_t *conf = NULL;
  int rc = producer_conf(o, p, &conf);
  if (rc >= 0)
    return rc;
  char kerr[512];
  p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof kerr);
  if (!p->rk) {
    rd_kafka_conf_destroy(conf);
    fprintf(stderr, PROG ": cannot create the Kafka producer: %s\n", kerr);
    return EXIT_FAIL;
  }
  p->rkt = rd_kafka_topic_new(p->rk, o->topic, NULL);
  if (!p->rkt) {
    fprintf(stderr, PROG ": topic '%s': %s\n", o->topic,
            rd_kafka_err2str(rd_kafka_last_error()));
    rd_kafka_destroy(p->rk);
    p->rk = NULL;
    return EXIT_FAIL;
  }
  return -1;
}

static volatile sig_atomic_t g_interrupted;

/* First signal: stop generating, deliver what is queued. Second: give up. */
static void on_signal(int sig) {
  if (g_interrupted < 2)
    g_interrupted++;
}

/* Hands one record to librdkafka, waiting (and serving callbacks) while
 * its queue is full. Returns 0, or -1 with p->fatal set. */
static int producer_send(producer_t *p, const rs_interaction_t *ev,
                         const rs_buf_t *value) {
  for (;;) {
    rd_kafka_resp_err_t err = rd_kafka_producev(
        p->rk, RD_KAFKA_V_RKT(p->rkt),
        RD_KAFKA_V_KEY(ev->user, (size_t)ev->user_len),
        RD_KAFKA_V_VALUE(value->data, value->len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (!err)
      return 0;
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !p->fatal && !p->failed &&
        !g_interrupted) {
      rd_kafka_poll(p->rk, 100);
      continue;
    }
    if (!p->fatal && err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      p->fatal = 1;
      snprintf(p->fatal_msg, sizeof p->fatal_msg, "produce to '%s' failed: %s",
               rd_kafka_topic_name(p->rkt), rd_kafka_err2str(err));
    }
    return -1;
  }
}

/* Waits for outstanding deliveries, at most FLUSH_TIMEOUT_MS, giving up
 * early on a fatal error or a second interruption. Returns records still
 * queued. */
static int producer_flush(producer_t *p) {
  uint64_t deadline = rs_now_ns() + (uint64_t)FLUSH_TIMEOUT_MS * 1000000u;
  while (rd_kafka_outq_len(p->rk) > 0 && !p->fatal && g_interrupted < 2 &&
         rs_now_ns() < deadline)
    rd_kafka_flush(p->rk, 200);
  return rd_kafka_outq_len(p->rk);
}

static void producer_stop(producer_t *p) {
  if (!p->rk)
    return;
  if (rd_kafka_outq_len(p->rk) > 0) {
    /* Failing anyway: drop what is left rather than block in destroy. */
    rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(p->rk, 0);
  }
  rd_kafka_topic_destroy(p->rkt);
  rd_kafka_destroy(p->rk);
  p->rk = NULL;
}

/* ---- pacing ---- */

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Waits until record n is due at `rate` per second since t0. Sleeps in
 * slices of at most 100 ms (serving producer callbacks meanwhile) and lets
 * a record go up to 1 ms early rather than spin. */
static void pace(producer_t *p, uint64_t t0, uint64_t n, double rate) {
  uint64_t due = t0 + (uint64_t)((double)n * 1e9 / rate);
  for (;;) {
    uint64_t now = rs_now_ns();
    if (now + 1000000u >= due || g_interrupted || (p && p->fatal))
      return;
    uint64_t ms = (due - now) / 1000000u;
    int slice = ms > 100 ? 100 : (int)ms;
    if (p)
      rd_kafka_poll(p->rk, slice);
    else
      sleep_ms(slice);
  }
}

/* ---- the command ---- */

static void human_bytes(uint64_t n, char *buf, size_t size) {
  if (n >= 1024u * 1024)
    snprintf(buf, size, "%.1f MiB", (double)n / (1024.0 * 1024.0));
  else if (n >= 1024u)
    snprintf(buf, size, "%.1f KiB", (double)n / 1024.0);
  else
    snprintf(buf, size, "%" PRIu64 " B", n);
}

static int run(const cmd_opts_t *o) {
  char err[512] = "";
  int status = EXIT_OK;
  producer_t prod = {0};
  producer_t *p = NULL;
  rs_codec_t *codec = NULL;
  ocf_t file = {0};
  int file_open = 0;
  rs_buf_t value = {0};
  uint64_t sent = 0, bad = 0, value_bytes = 0;

  rs_gen_t *g = rs_gen_new(&o->gen);
  if (!g) {
    fprintf(stderr,
            PROG ": cannot create the generator for %" PRIu32
                 " users and %" PRIu32 " items: out of memory\n",
            o->gen.users, o->gen.items);
    return EXIT_FAIL;
  }
  if (o->brokers) {
    if (rs_codec_new(&codec, NULL, err, sizeof err)) {
      fprintf(stderr, PROG ": codec: %s\n", err);
      status = EXIT_FAIL;
      goto done;
    }
    int rc = producer_start(o, &prod);
    if (rc >= 0) {
      status = rc;
      goto done;
    }
    p = &prod;
  }
  if (o->out_path) {
    if (ocf_open(&file, o->out_path, err, sizeof err)) {
      fprintf(stderr, PROG ": --out: %s\n", err);
      ocf_close(&file, NULL, 0);
      status = EXIT_FAIL;
      goto done;
    }
    file_open = 1;
  }

  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  g_interrupted = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  uint64_t t0 = rs_now_ns();
  rs_interaction_t ev;
  for (int64_t n = 0; n < o->events; n++) {
    if (g_interrupted || (p && (p->fatal || p->failed)))
      break;
    if (o->rate > 0)
      pace(p, t0, (uint64_t)n, o->rate);
    rs_gen_next(g, &ev);
    int is_bad = o->bad_every > 0 && (n + 1) % o->bad_every == 0;
    if (p) {
      int rc =
          is_bad ? make_bad_record(codec, o, bad, &ev, &value, err, sizeof err)
                 : (rs_buf_reset(&value),
                    rs_codec_encode(codec, o->format, &ev, o->schema_id, &value,
                                    err, sizeof err));
      if (rc) {
        fprintf(stderr, PROG ": encoding record %" PRId64 ": %s\n", n + 1, err);
        status = EXIT_FAIL;
        break;
      }
      if (producer_send(p, &ev, &value))
        break;
      value_bytes += value.len;
      if ((n & (POLL_EVERY - 1)) == 0)
        rd_kafka_poll(p->rk, 0);
    }
    if (is_bad)
      bad++;
    else if (file_open && ocf_append(&file, &ev, err, sizeof err)) {
      fprintf(stderr, PROG ": --out '%s': %s\n", o->out_path, err);
      status = EXIT_FAIL;
      break;
    }
    sent++;
  }

  if (p) {
    int left = producer_flush(p);
    if (p->fatal) {
      fprintf(stderr, PROG ": %s\n", p->fatal_msg);
      status = EXIT_FAIL;
    } else if (p->failed) {
      fprintf(stderr,
              PROG ": %" PRIu64 " record(s) could not be delivered to '%s': "
                   "%s\n",
              p->failed, o->topic, p->first_failure);
      status = EXIT_FAIL;
    } else if (left > 0 && g_interrupted < 2) {
      fprintf(stderr,
              PROG ": %d record(s) still undelivered after %d s; is the "
                   "broker at '%s' reachable?\n",
              left, FLUSH_TIMEOUT_MS / 1000, o->brokers);
      status = EXIT_FAIL;
    }
  }
  if (file_open) {
    file_open = 0;
    if (ocf_close(&file, err, sizeof err)) {
      fprintf(stderr, PROG ": --out '%s': %s\n", o->out_path, err);
      status = EXIT_FAIL;
    }
  }
  if (g_interrupted) {
    fprintf(stderr, PROG ": interrupted after %" PRIu64 " record(s)\n", sent);
    status = EXIT_FAIL;
  }
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);

  double secs = (double)(rs_now_ns() - t0) / 1e9;
  char where[768] = "", bytes[32];
  size_t wl = 0;
  if (p) {
    human_bytes(value_bytes, bytes, sizeof bytes);
    wl += (size_t)snprintf(where + wl, sizeof where - wl,
                           ", topic '%s': %" PRIu64 " delivered, %s of "
                           "values",
                           o->topic, p->delivered, bytes);
  }
  if (o->out_path && wl < sizeof where) {
    struct stat st;
    human_bytes(stat(o->out_path, &st) == 0 ? (uint64_t)st.st_size : 0, bytes,
                sizeof bytes);
    snprintf(where + wl, sizeof where - wl,
             ", file '%s': %" PRIu64 " records, %s", o->out_path, file.records,
             bytes);
  }
  fprintf(stderr,
          "generate: %" PRIu64 " records (%" PRIu64 " invalid) in %.3f s, "
          "%.0f records/s%s\n",
          sent, bad, secs, secs > 0 ? (double)sent / secs : 0.0, where);

done:
  if (file_open)
    ocf_close(&file, NULL, 0);
  if (p)
    producer_stop(p);
  if (codec)
    rs_codec_destroy(codec);
  rs_buf_free(&value);
  rs_gen_destroy(g);
  return status;
}

int rs_cmd_generate(int argc, char **argv) {
  cmd_opts_t o;
  int rc = parse_args(argc, argv, &o);
  if (rc < 0)
    rc = run(&o);
  rs_free(o.props);
  return rc;
}
