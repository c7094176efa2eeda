/* Integration test helpers (see itest.h). */
#include "itest.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "util.h"

rs_mock_t *it_cluster(int brokers, int partitions, const char *const *topics) {
  rs_mock_t *m = NULL;
  char err[512];
  if (rs_mock_start(brokers, &m, err, sizeof err)) {
    fprintf(stderr, "it_cluster: %s\n", err);
    return NULL;
  }
  for (size_t i = 0; topics && topics[i]; i++)
    if (rs_mock_create_topic(m, topics[i], partitions, err, sizeof err)) {
      fprintf(stderr, "it_cluster: %s\n", err);
      rs_mock_destroy(m);
      return NULL;
    }
  return m;
}

static rd_kafka_t *client(const char *bootstrap, rd_kafka_type_t type,
                          const char *group) {
  char err[512];
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof err);
  rd_kafka_conf_set(c, "log_level", "3", err, sizeof err);
  if (type == RD_KAFKA_PRODUCER) {
    rd_kafka_conf_set(c, "linger.ms", "5", err, sizeof err);
    rd_kafka_conf_set(c, "enable.idempotence", "true", err, sizeof err);
  } else {
    rd_kafka_conf_set(c, "group.id", group ? group : "it-reader", err,
                      sizeof err);
    rd_kafka_conf_set(c, "enable.partition.eof", "true", err, sizeof err);
    rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof err);
  }
  rd_kafka_t *rk = rd_kafka_new(type, c, err, sizeof err);
  if (!rk)
    fprintf(stderr, "client: %s\n", err);
  return rk;
}

int it_cli(char *out, size_t out_size, const char *fmt, ...) {
  char args[4096], cmd[4400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof cmd, "%s/recstream %s 2>&1", RS_BINARY_DIR, args);
  out[0] = '\0';
  FILE *p = popen(cmd, "r");
  if (!p)
    return -1;
  size_t n = fread(out, 1, out_size - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

const char *it_config_text(const char *name) {
  static char text[16384];
  char path[1024];
  snprintf(path, sizeof path, "%s/configs/%s", RS_SOURCE_DIR, name);
  FILE *f = fopen(path, "r");
  if (!f)
    return NULL;
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  if (n == 0 || n >= sizeof text - 1)
    return NULL;
  text[n] = 0;
  return text;
}

long it_produce(const char *bootstrap, const char *topic, long n, int users,
                long bad_every, const char *format) {
  rd_kafka_t *p = client(bootstrap, RD_KAFKA_PRODUCER, NULL);
  rs_codec_t *codec = NULL;
  char err[512];
  if (!p || rs_codec_new(&codec, NULL, err, sizeof err))
    return -1;
  rs_format_t fmt = strcmp(format, "json") ? RS_FORMAT_AVRO : RS_FORMAT_JSON;
  rs_buf_t b = {0};
  long bad = 0;
  static const char *events[] = {"VIEW", "CLICK", "PURCHASE"};
  (void)events;
  for (long k = 0; k < n; k++) {
    char user[32], item[32], page[32];
    snprintf(user, sizeof user, "u%ld", k % users);
    snprintf(item, sizeof item, "i%ld", (k * 7919) % 1000);
    snprintf(page, sizeof page, "seq-%ld", k);
    rs_interaction_t it = {
        .user = user,
        .user_len = (uint32_t)strlen(user),
        .item = item,
        .item_len = (uint32_t)strlen(item),
        .page = page,
        .page_len = (uint32_t)strlen(page),
        .event_type = (int32_t)(k % 3),
        .has_value = 1,
        .value = 1.5,
        .timestamp_ms = 1767225600000LL + k,
    };
    rs_buf_reset(&b);
    if (rs_codec_encode(codec, fmt, &it, 1, &b, err, sizeof err)) {
      fprintf(stderr, "encode: %s\n", err);
      return -1;
    }
    const void *val = b.data;
    size_t len = b.len;
    if (bad_every && (k + 1) % bad_every == 0) {
      if (bad % 2 == 0)
        len = len / 2; /* truncated */
      else {
        val = "\xff\xfe not a record";
        len = 15;
      }
      bad++;
    }
    for (;;) {
      rd_kafka_resp_err_t e = rd_kafka_producev(
          p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(user, strlen(user)),
          RD_KAFKA_V_VALUE((void *)val, len),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (!e)
        break;
      if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        fprintf(stderr, "produce: %s\n", rd_kafka_err2str(e));
        return -1;
      }
      rd_kafka_poll(p, 50);
    }
    rd_kafka_poll(p, 0);
  }
  int left = rd_kafka_flush(p, 60000) ? rd_kafka_outq_len(p) : 0;
  rs_buf_free(&b);
  rs_codec_destroy(codec);
  rd_kafka_destroy(p);
  return left ? -1 : bad;
}

static char *hdr(rd_kafka_headers_t *h, const char *name) {
  const void *v;
  size_t sz;
  if (!h || rd_kafka_header_get_last(h, name, &v, &sz))
    return NULL;
  return rs_strndup(v, sz);
}

size_t it_consume_all(const char *bootstrap, const char *topic, size_t min,
                      int timeout_ms, it_msg_t **out) {
  rd_kafka_t *c = client(bootstrap, RD_KAFKA_CONSUMER, NULL);
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(c, topic, NULL);
  *out = NULL;
  if (rd_kafka_metadata(c, 0, rkt, &md, 10000) || md->topic_cnt != 1) {
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(c);
    return 0;
  }
  int np = md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
  for (int i = 0; i < np; i++)
    rd_kafka_topic_partition_list_add(l, topic, i)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(c, l);
  rd_kafka_topic_partition_list_destroy(l);
  size_t n = 0, cap = 1024;
  it_msg_t *msgs = calloc(cap, sizeof(*msgs));
  int *eof = calloc((size_t)np, sizeof(int));
  uint64_t deadline = rs_now_ns() + (uint64_t)timeout_ms * 1000000u;
  for (;;) {
    int all = 1;
    for (int i = 0; i < np; i++)
      all &= eof[i];
    if ((all && n >= min) || rs_now_ns() > deadline)
      break;
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
    if (!m)
      continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      eof[m->partition] = 1;
    } else if (!m->err) {
      eof[m->partition] = 0;
      if (n == cap) {
        cap *= 2;
        msgs = realloc(msgs, cap * sizeof(*msgs));
      }
      it_msg_t *x = &msgs[n++];
      memset(x, 0, sizeof *x);
      x->partition = m->partition;
      x->offset = m->offset;
      x->key = rs_strndup(m->key ? m->key : "", m->key_len);
      x->key_len = m->key_len;
      x->val = rs_strndup(m->payload ? m->payload : "", m->len);
      x->len = m->len;
      rd_kafka_headers_t *h = NULL;
      rd_kafka_message_headers(m, &h);
      x->hdr_error = hdr(h, "error");
      x->hdr_source_offset = hdr(h, "source.offset");
      x->hdr_source_topic = hdr(h, "source.topic");
      x->hdr_source_partition = hdr(h, "source.partition");
      x->hdr_src = hdr(h, "recstream.src");
    }
    rd_kafka_message_destroy(m);
  }
  free(eof);
  rd_kafka_consumer_close(c);
  rd_kafka_destroy(c);
  *out = msgs;
  return n;
}

void it_msgs_free(it_msg_t *m, size_t n) {
  for (size_t i = 0; i < n; i++) {
    rs_free(m[i].key);
    rs_free(m[i].val);
    rs_free(m[i].hdr_error);
    rs_free(m[i].hdr_source_offset);
    rs_free(m[i].hdr_source_topic);
    rs_free(m[i].hdr_source_partition);
    rs_free(m[i].hdr_src);
  }
  free(m);
}

int64_t it_committed(const char *bootstrap, const char *group,
                     const char *topic, int32_t partition) {
  rd_kafka_t *c = client(bootstrap, RD_KAFKA_CONSUMER, group);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, topic, partition);
  int64_t off = -2;
  if (!rd_kafka_committed(c, l, 10000))
    off = l->elems[0].offset;
  rd_kafka_topic_partition_list_destroy(l);
  rd_kafka_destroy(c);
  return off;
}

int64_t it_end_offset(const char *bootstrap, const char *topic,
                      int32_t partition) {
  rd_kafka_t *c = client(bootstrap, RD_KAFKA_CONSUMER, NULL);
  int64_t lo = -1, hi = -1;
  rd_kafka_query_watermark_offsets(c, topic, partition, &lo, &hi, 10000);
  rd_kafka_destroy(c);
  return hi;
}

static void *engine_thread(void *arg) {
  it_engine_t *t = arg;
  t->rc = rs_engine_run(t->e, t->err, sizeof t->err);
  return NULL;
}

/* Criterion runs every test in its own process: one state directory per
 * process keeps tests apart and lets a test restart an engine on the same
 * state. Removed when the process exits, with the files tests name after
 * it (state_dir-replay.yaml and the like). */
static char state_dir[64];

static void remove_state_dir(void) {
  char cmd[192];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'-*", state_dir, state_dir);
  if (system(cmd) != 0)
    fprintf(stderr, "itest: could not remove %s\n", state_dir);
}

const char *it_state_dir(void) {
  if (!state_dir[0]) {
    snprintf(state_dir, sizeof state_dir, "/tmp/rs-itest-state-%ld",
             (long)getpid());
    atexit(remove_state_dir);
  }
  return state_dir;
}

int it_engine_start(it_engine_t *t, const char *yaml, const char *const *sets,
                    size_t n_sets, int exit_at_end) {
  return it_engine_start_opts(t, yaml, sets, n_sets, exit_at_end, 0);
}

int it_engine_start_opts(it_engine_t *t, const char *yaml,
                         const char *const *sets, size_t n_sets,
                         int exit_at_end, int state_reset) {
  memset(t, 0, sizeof *t);
  /* state.dir defaults to this process's directory unless a set names it. */
  const char *all[64];
  char dirset[128];
  size_t n_all = 0;
  int has_dir = 0;
  for (size_t i = 0; i < n_sets && n_all < 63; i++) {
    has_dir |= !strncmp(sets[i], "state.dir=", 10);
    all[n_all++] = sets[i];
  }
  if (!has_dir && !strstr(yaml, "dir:")) {
    snprintf(dirset, sizeof dirset, "state.dir=%s", it_state_dir());
    all[n_all++] = dirset;
  }
  int rc = rs_config_load_string("itest.yaml", yaml, strlen(yaml), all, n_all,
                                 &t->cfg, t->err, sizeof t->err);
  if (!rc)
    rc = rs_registry_new(&t->reg, t->err, sizeof t->err);
  for (size_t i = 0; !rc && i < t->cfg->n_plugins; i++)
    rc = rs_registry_load_plugin(t->reg, t->cfg->plugins[i], t->err,
                                 sizeof t->err);
  if (!rc)
    rc = rs_graph_build(t->cfg, t->reg, &t->graph, t->err, sizeof t->err);
  rs_engine_opts_t o = {.exit_at_end = exit_at_end, .state_reset = state_reset};
  if (!rc)
    rc = rs_engine_new(t->cfg, t->graph, &o, &t->e, t->err, sizeof t->err);
  if (!rc && pthread_create(&t->thread, NULL, engine_thread, t))
    rc = RS_EINTERNAL;
  if (rc)
    fprintf(stderr, "it_engine_start: %s\n", t->err);
  return rc;
}

int it_engine_join(it_engine_t *t, int stop) {
  if (stop)
    rs_engine_stop(t->e);
  pthread_join(t->thread, NULL);
  return t->rc;
}

void it_engine_free(it_engine_t *t) {
  rs_engine_destroy(t->e);
  rs_graph_destroy(t->graph);
  rs_registry_destroy(t->reg);
  rs_config_destroy(t->cfg);
}

int it_wait(int (*cond)(void *), void *arg, int timeout_ms) {
  uint64_t deadline = rs_now_ns() + (uint64_t)timeout_ms * 1000000u;
  int v;
  while (!(v = cond(arg)) && rs_now_ns() < deadline) {
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
  }
  return v;
}

long it_seq_of(const rs_interaction_t *it) {
  if (!it->page || it->page_len < 5 || strncmp(it->page, "seq-", 4))
    return -1;
  char buf[32];
  size_t n =
      it->page_len - 4 < sizeof buf - 1 ? it->page_len - 4 : sizeof buf - 1;
  memcpy(buf, it->page + 4, n);
  buf[n] = '\0';
  return strtol(buf, NULL, 10);
}

/* One HTTP/1.1 request on a fresh connection; reads until the server
 * closes it. 0 or -1 (connection or protocol failure). */
int it_http_req(int port, const char *method, const char *path, it_resp_t *r) {
  memset(r, 0, sizeof(*r));
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
    close(fd);
    return -1;
  }
  char req[512];
  int n = snprintf(req, sizeof req,
                   "%s %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: itest\r\n"
                   "\r\n",
                   method, path);
  if (write(fd, req, (size_t)n) != n) {
    close(fd);
    return -1;
  }
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (len + 4096 > cap)
      buf = realloc(buf, cap *= 2);
    ssize_t k = read(fd, buf + len, cap - len - 1);
    if (k <= 0)
      break;
    len += (size_t)k;
  }
  close(fd);
  buf[len] = '\0';
  char *eoh = strstr(buf, "\r\n\r\n");
  if (!eoh || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
    free(buf);
    return -1;
  }
  *eoh = '\0';
  for (char *line = strstr(buf, "\r\n"); line; line = strstr(line + 2, "\r\n"))
    if (!strncasecmp(line + 2, "content-type:", 13)) {
      const char *v = line + 15;
      while (*v == ' ')
        v++;
      size_t l = strcspn(v, "\r\n");
      snprintf(r->ctype, sizeof r->ctype, "%.*s", (int)l, v);
    }
  r->len = len - (size_t)(eoh + 4 - buf);
  r->body = malloc(r->len + 1);
  memcpy(r->body, eoh + 4, r->len);
  r->body[r->len] = '\0';
  free(buf);
  return 0;
}

/* The value of the sample series (name{labels} as rendered) in the
 * engine's /metrics on port; -1 when absent or the request failed. */
double it_metric(int port, const char *series) {
  it_resp_t r;
  if (it_http_req(port, "GET", "/metrics", &r))
    return -1;
  double v = -1;
  size_t l = strlen(series);
  for (const char *p = r.body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
    if (!strncmp(p, series, l) && p[l] == ' ') {
      v = strtod(p + l + 1, NULL);
      break;
    }
  free(r.body);
  return v;
}
