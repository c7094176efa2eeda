/* The HTTP endpoint on H2O's libuv binding. See http.h. */
#include "http.h"

#include <h2o.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

/* engine/web/job.html (generated: cmake/embed_file.cmake). */
extern const char rs_job_page_html[];
extern const size_t rs_job_page_html_len;

#if !H2O_USE_LIBUV
#error "recstream needs libh2o built on libuv (Debian libh2o-dev, not -evloop)"
#endif

/* An idle connection is closed after this long (H2O's default is 10 s); it
 * also bounds how long an idle client can hold a stopping engine's loop. */
#define RS_HTTP_IDLE_MS 5000
/* Rates: the engine is sampled every RS_RATE_TICK_MS into a ring; rates are
 * over the last RS_RATE_WINDOW samples' span. */
#define RS_RATE_TICK_MS 1000
#define RS_RATE_RING 64
#define RS_RATE_WINDOW 10

struct rs_http {
  h2o_globalconf_t config;
  h2o_context_t ctx;
  h2o_accept_ctx_t accept_ctx;
  uv_tcp_t listener;
  uv_loop_t *loop;
  rs_engine_t *e;
  int port;
  int listener_open; /* initialised and not closed */
  int ctx_inited;
  uv_timer_t tick; /* rate sampling */
  int tick_open;
  size_t n_nodes;
  size_t n_slots; /* n_nodes, then the split operators' variant instances */
  uint64_t ring_ms[RS_RATE_RING];
  uint64_t *ring_in, *ring_out; /* [RS_RATE_RING][n_slots] */
  size_t ring_n, ring_head;     /* samples held; next slot */
};

typedef struct handler {
  h2o_handler_t super;
  rs_http_t *h;
} handler_t;

/* {"error": msg[, "user": user]}; user is user_len bytes of valid UTF-8. */
static int json_error(rs_buf_t *body, const char **ctype, const char *msg,
                      const char *user, size_t user_len) {
  json_t *o =
      user ? json_pack("{s:s,s:s#}", "error", msg, "user", user, (int)user_len)
           : json_pack("{s:s}", "error", msg);
  char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  *ctype = "application/json";
  int rc = txt ? rs_buf_append(body, txt, strlen(txt)) : RS_ENOMEM;
  free(txt);
  return rc ? RS_ENOMEM : 0;
}

static int path_is(const char *path, size_t len, const char *want) {
  return len == strlen(want) && !memcmp(path, want, len);
}

/* Rates per slot (nodes, then variant instances) from the newest sample
 * and the one RS_RATE_WINDOW before it (or the oldest held); 0 when fewer
 * than two samples. */
static int rates(const rs_http_t *h, double *in, double *out, double *win) {
  if (h->ring_n < 2)
    return 0;
  size_t back = h->ring_n - 1 < RS_RATE_WINDOW ? h->ring_n - 1 : RS_RATE_WINDOW;
  size_t newest = (h->ring_head + RS_RATE_RING - 1) % RS_RATE_RING;
  size_t oldest = (newest + RS_RATE_RING - back) % RS_RATE_RING;
  double dt = (double)(h->ring_ms[newest] - h->ring_ms[oldest]) / 1e3;
  if (dt <= 0)
    return 0;
  for (size_t i = 0; i < h->n_slots; i++) {
    const uint64_t *ni = h->ring_in + newest * h->n_slots;
    const uint64_t *oi = h->ring_in + oldest * h->n_slots;
    const uint64_t *no = h->ring_out + newest * h->n_slots;
    const uint64_t *oo = h->ring_out + oldest * h->n_slots;
    /* A partition moved back (reassigned at its stored offset): no rate
     * below zero. */
    in[i] = ni[i] > oi[i] ? (double)(ni[i] - oi[i]) / dt : 0;
    out[i] = no[i] > oo[i] ? (double)(no[i] - oo[i]) / dt : 0;
  }
  *win = dt;
  return 1;
}

static void on_tick(uv_timer_t *t) {
  rs_http_t *h = t->data;
  rs_metrics_snapshot_t s;
  if (rs_engine_snapshot_counts(h->e, &s))
    return;
  size_t slot = h->ring_head;
  h->ring_ms[slot] = uv_now(h->loop);
  for (size_t i = 0; i < h->n_nodes; i++) {
    h->ring_in[slot * h->n_slots + i] = rs_metrics_node_in(&s, i);
    h->ring_out[slot * h->n_slots + i] = rs_metrics_node_out(&s, i);
  }
  for (size_t k = 0; k < s.n_insts && h->n_nodes + k < h->n_slots; k++) {
    h->ring_in[slot * h->n_slots + h->n_nodes + k] = rs_metrics_inst_in(&s, k);
    h->ring_out[slot * h->n_slots + h->n_nodes + k] =
        rs_metrics_inst_out(&s, k);
  }
  rs_metrics_snapshot_free(&s);
  h->ring_head = (slot + 1) % RS_RATE_RING;
  if (h->ring_n < RS_RATE_RING)
    h->ring_n++;
}

/* GET /v1/recommendations/{user}: see http.h for the statuses. */
static int query(rs_http_t *h, const char *user, size_t user_len,
                 rs_buf_t *body, const char **ctype) {
  rs_query_answer_t a;
  char err[512];
  int rc = rs_engine_query(h->e, user, user_len, &a, err, sizeof err);
  *ctype = "application/json";
  if (rc == RS_ENOMEM)
    return -1;
  json_t *o = json_pack("{s:s#}", "user_id", user, (int)user_len);
  int status;
  if (rc) {
    status = 500;
    json_object_set_new(o, "error", json_string(err));
  } else {
    switch (a.status) {
    case RS_QUERY_OK: {
      json_error_t je;
      json_t *res = json_loadb(a.json, a.json_len, JSON_DECODE_ANY, &je);
      if (!res) {
        status = 500;
        json_object_set_new(
            o, "error",
            json_sprintf("operator '%s' answered with invalid JSON: %s",
                         a.op_name, je.text));
      } else {
        status = 200;
        json_object_set_new(o, "result", res);
      }
      break;
    }
    case RS_QUERY_UNKNOWN:
      status = 404;
      json_object_set_new(
          o, "error",
          json_string("unknown user: nothing is kept for this user in its "
                      "partition (no record of it processed yet)"));
      break;
    case RS_QUERY_NOT_OWNED:
      status = 421;
      json_object_set_new(
          o, "error",
          json_sprintf("partition %d of %s is owned by another instance of "
                       "the consumer group: ask the instance that has it "
                       "(see owned_partitions of each instance)",
                       (int)a.partition, a.topic));
      break;
    case RS_QUERY_NOT_READY:
      status = 503;
      json_object_set_new(o, "error",
                          json_string("not ready: no source partition is "
                                      "assigned and consumed yet; retry (see "
                                      "/readyz)"));
      break;
    case RS_QUERY_NO_METADATA:
      status = 503;
      json_object_set_new(
          o, "error",
          json_sprintf("the partition count of %s is not known yet (it is "
                       "read from the cluster's metadata after each "
                       "assignment); retry",
                       a.topic));
      break;
    default:
      status = 501;
      json_object_set_new(
          o, "error",
          json_string("no operator of this graph answers queries (one "
                      "whose definition has query(), e.g. topn_emit)"));
      break;
    }
  }
  if (a.op_name) {
    json_object_set_new(o, "operator", json_string(a.op_name));
    json_object_set_new(o, "type", json_string(a.op_type));
  }
  if (a.topic && a.status != RS_QUERY_NO_OPERATOR)
    json_object_set_new(o, "topic", json_string(a.topic));
  if (a.partition >= 0)
    json_object_set_new(o, "partition", json_integer(a.partition));
  if (a.partitioner && a.status != RS_QUERY_NO_OPERATOR)
    json_object_set_new(o, "partitioner", json_string(a.partitioner));
  if (a.variant)
    json_object_set_new(o, "variant", json_string(a.variant));
  if (a.status == RS_QUERY_NOT_OWNED || a.status == RS_QUERY_NO_METADATA ||
      a.status == RS_QUERY_UNKNOWN) {
    json_t *arr = json_array();
    for (size_t i = 0; i < a.n_owned; i++)
      json_array_append_new(arr, json_integer(a.owned[i]));
    json_object_set_new(o, "owned_partitions", arr);
    if (a.n_partitions > 0)
      json_object_set_new(o, "partitions", json_integer(a.n_partitions));
  }
  rs_query_answer_free(&a);
  char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  int arc = txt ? rs_buf_append(body, txt, strlen(txt)) : RS_ENOMEM;
  free(txt);
  return arc ? -1 : status;
}

int rs_http_route(rs_http_t *h, const char *method, size_t method_len,
                  const char *path, size_t path_len, rs_buf_t *body,
                  const char **ctype) {
  static const char recs[] = "/v1/recommendations/";
  if (!path_is(method, method_len, "GET") &&
      !path_is(method, method_len, "HEAD"))
    return json_error(body, ctype, "method not allowed: only GET is served",
                      NULL, 0)
               ? -1
               : 405;
  if (path_is(path, path_len, "/")) {
    *ctype = "text/html; charset=utf-8";
    return rs_buf_append(body, rs_job_page_html, rs_job_page_html_len) ? -1
                                                                       : 200;
  }
  if (path_is(path, path_len, "/healthz")) {
    *ctype = "application/json";
    static const char alive[] = "{\"status\":\"alive\"}";
    return rs_buf_append(body, alive, sizeof alive - 1) ? -1 : 200;
  }
  if (path_len >= sizeof recs - 1 && !memcmp(path, recs, sizeof recs - 1)) {
    if (path_len == sizeof recs - 1 ||
        memchr(path + sizeof recs - 1, '/', path_len - (sizeof recs - 1)))
      return json_error(body, ctype, "expected GET /v1/recommendations/{user}",
                        NULL, 0)
                 ? -1
                 : 400;
    const char *user = path + sizeof recs - 1;
    size_t user_len = path_len - (sizeof recs - 1);
    json_t *probe = json_stringn(user, user_len);
    json_decref(probe);
    if (!probe || user_len > 1024)
      return json_error(body, ctype,
                        "the user id must be valid UTF-8 of at most 1024 "
                        "bytes (percent-encoded in the path)",
                        NULL, 0)
                 ? -1
                 : 400;
    return query(h, user, user_len, body, ctype);
  }
  int metrics = path_is(path, path_len, "/metrics");
  int ready = path_is(path, path_len, "/readyz");
  int graph = path_is(path, path_len, "/v1/graph");
  if (!metrics && !ready && !graph)
    return json_error(body, ctype,
                      "not found; endpoints: /metrics, /healthz, /readyz, "
                      "/v1/graph, /v1/recommendations/{user}",
                      NULL, 0)
               ? -1
               : 404;
  rs_metrics_snapshot_t s;
  if (rs_engine_snapshot(h->e, &s))
    return -1;
  int status;
  double *rin = rs_calloc(h->n_slots + 1, sizeof(double));
  double *rout = rs_calloc(h->n_slots + 1, sizeof(double));
  if (rin && rout && rates(h, rin, rout, &s.rate_window_s)) {
    s.rate_in = rin;
    s.rate_out = rout;
    if (s.n_insts && h->n_nodes + s.n_insts <= h->n_slots) {
      s.rate_inst_in = rin + h->n_nodes;
      s.rate_inst_out = rout + h->n_nodes;
    }
  }
  if (metrics) {
    *ctype = RS_METRICS_CONTENT_TYPE;
    status = rs_metrics_render(&s, body) ? -1 : 200;
  } else if (ready) {
    *ctype = "application/json";
    status = rs_metrics_ready_json(&s, body);
  } else {
    *ctype = "application/json";
    status = rs_metrics_graph_json(&s, body) ? -1 : 200;
  }
  rs_metrics_snapshot_free(&s);
  rs_free(rin);
  rs_free(rout);
  return status;
}

static const char *reason_of(int status) {
  switch (status) {
  case 200:
    return "OK";
  case 400:
    return "Bad Request";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 421:
    return "Misdirected Request";
  case 501:
    return "Not Implemented";
  case 503:
    return "Service Unavailable";
  default:
    return "Internal Server Error";
  }
}

static int on_req(h2o_handler_t *self, h2o_req_t *req) {
  rs_http_t *h = ((handler_t *)self)->h;
  rs_buf_t body = {0};
  const char *ctype = "text/plain";
  int status = rs_http_route(h, req->method.base, req->method.len,
                             req->path_normalized.base,
                             req->path_normalized.len, &body, &ctype);
  if (status < 0) {
    status = 500;
    rs_buf_reset(&body);
    ctype = "text/plain";
    rs_buf_printf(&body, "out of memory\n");
  }
  req->res.status = status;
  req->res.reason = reason_of(status);
  /* One request per connection: nothing idle holds a stopping loop. */
  req->http1_is_persistent = 0;
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                 ctype, strlen(ctype));
  char *copy = h2o_mem_alloc_pool(&req->pool, body.len + 1);
  if (body.len)
    memcpy(copy, body.data, body.len);
  size_t len = body.len;
  req->res.content_length = len;
  rs_buf_free(&body);
  h2o_send_inline(req, copy, len);
  return 0;
}

static void on_conn_closed(uv_handle_t *hd) {
  rs_free(hd);
}

static void on_accept(uv_stream_t *listener, int status) {
  rs_http_t *h = listener->data;
  if (status != 0 || !h->listener_open)
    return;
  uv_tcp_t *conn = rs_calloc(1, sizeof(*conn));
  if (!conn)
    return;
  uv_tcp_init(listener->loop, conn);
  if (uv_accept(listener, (uv_stream_t *)conn)) {
    uv_close((uv_handle_t *)conn, on_conn_closed);
    return;
  }
  h2o_socket_t *sock =
      h2o_uv_socket_create((uv_stream_t *)conn, on_conn_closed);
  h2o_accept(&h->accept_ctx, sock);
}

/* H2O's context puts an async handle and timers on the loop; the engine's
 * loop ends when its own handles close, so these must not count. */
static void unref_foreign(uv_handle_t *hd, void *arg) {
  rs_http_t *h = arg;
  if (hd->data != h->e && hd != (uv_handle_t *)&h->listener)
    uv_unref(hd); /* the tick timer too: it must not hold the loop either */
}

int rs_http_start(uv_loop_t *loop, rs_engine_t *e, const char *bind, int port,
                  rs_http_t **out, char *errstr, size_t errstr_size) {
  *out = NULL;
  rs_http_t *h = rs_calloc(1, sizeof(*h));
  if (!h)
    return RS_ENOMEM;
  h->loop = loop;
  h->e = e;
  union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    struct sockaddr_storage ss;
  } addr;
  memset(&addr, 0, sizeof addr);
  if (uv_ip4_addr(bind, port, &addr.in4) &&
      uv_ip6_addr(bind, port, &addr.in6)) {
    rs_free(h);
    return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                     "http.bind: '%s' is not an IPv4 or IPv6 address", bind);
  }
  uv_tcp_init(loop, &h->listener);
  h->listener.data = h;
  h->listener_open = 1;
  int rc = uv_tcp_bind(&h->listener, &addr.sa, 0);
  if (!rc)
    rc = uv_listen((uv_stream_t *)&h->listener, 128, on_accept);
  if (rc) {
    rs_seterr(errstr, errstr_size, RS_EIO,
              "http: cannot listen on %s port %d: %s (choose another "
              "http.port, or 0 for any free port)",
              bind, port, uv_strerror(rc));
    rs_http_close(h);
    *out = h; /* the listener closes with the loop; free then */
    return RS_EIO;
  }
  int len = (int)sizeof addr;
  uv_tcp_getsockname(&h->listener, &addr.sa, &len);
  h->port = ntohs(addr.sa.sa_family == AF_INET6 ? addr.in6.sin6_port
                                                : addr.in4.sin_port);

  h2o_config_init(&h->config);
  h->config.http1.req_timeout = RS_HTTP_IDLE_MS;
  h->config.http1.upgrade_to_http2 = 0;
  h2o_hostconf_t *host = h2o_config_register_host(
      &h->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
  h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
  handler_t *hd = (handler_t *)h2o_create_handler(path, sizeof(*hd));
  hd->super.on_req = on_req;
  hd->h = h;
  h2o_context_init(&h->ctx, loop, &h->config);
  h->ctx_inited = 1;
  h->accept_ctx.ctx = &h->ctx;
  h->accept_ctx.hosts = h->config.hosts;
  h->n_nodes = rs_engine_graph(e)->n;
  /* The variant instances are made with the engine: their number is the
   * snapshot's now and later. */
  rs_metrics_snapshot_t s0;
  if (rs_engine_snapshot_counts(e, &s0)) {
    rs_http_close(h);
    *out = h;
    return RS_ENOMEM;
  }
  h->n_slots = h->n_nodes + s0.n_insts;
  rs_metrics_snapshot_free(&s0);
  h->ring_in = rs_calloc(RS_RATE_RING * h->n_slots + 1, sizeof(uint64_t));
  h->ring_out = rs_calloc(RS_RATE_RING * h->n_slots + 1, sizeof(uint64_t));
  if (!h->ring_in || !h->ring_out) {
    rs_http_close(h);
    *out = h;
    return RS_ENOMEM;
  }
  uv_timer_init(loop, &h->tick);
  h->tick.data = h;
  h->tick_open = 1;
  on_tick(&h->tick);
  uv_timer_start(&h->tick, on_tick, RS_RATE_TICK_MS, RS_RATE_TICK_MS);
  uv_walk(loop, unref_foreign, h);
  rs_log(RS_LOG_INFO, "http",
         "serving /metrics, /healthz, /readyz, /v1/graph, "
         "/v1/recommendations/{user} on http://%s%s%s:%d/",
         strchr(bind, ':') ? "[" : "", bind, strchr(bind, ':') ? "]" : "",
         h->port);
  *out = h;
  return 0;
}

int rs_http_port(const rs_http_t *h) {
  return h ? h->port : -1;
}

void rs_http_close(rs_http_t *h) {
  if (!h)
    return;
  if (h->tick_open) {
    h->tick_open = 0;
    uv_close((uv_handle_t *)&h->tick, NULL);
  }
  if (!h->listener_open)
    return;
  h->listener_open = 0;
  uv_close((uv_handle_t *)&h->listener, NULL);
}

void rs_http_destroy(rs_http_t *h) {
  if (!h)
    return;
  rs_http_close(h);
  if (h->ctx_inited) {
    h2o_context_dispose(&h->ctx);
    h2o_config_dispose(&h->config);
  }
  /* The listener's close (and the context's) completes in this pass. */
  uv_run(h->loop, UV_RUN_NOWAIT);
  rs_free(h->ring_in);
  rs_free(h->ring_out);
  rs_free(h);
}
