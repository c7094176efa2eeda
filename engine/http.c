/* The HTTP endpoint on H2O's libuv binding. See http.h. */
#include "http.h"

#include <h2o.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

#if !H2O_USE_LIBUV
#error "recstream needs libh2o built on libuv (Debian libh2o-dev, not -evloop)"
#endif

/* An idle connection is closed after this long (H2O's default is 10 s); it
 * also bounds how long an idle client can hold a stopping engine's loop. */
#define RS_HTTP_IDLE_MS 5000

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
};

typedef struct handler {
  h2o_handler_t super;
  rs_http_t *h;
} handler_t;

static int json_error(rs_buf_t *body, const char **ctype, const char *msg,
                      const char *user) {
  json_t *o = user ? json_pack("{s:s,s:s}", "error", msg, "user", user)
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

int rs_http_route(rs_engine_t *e, const char *method, size_t method_len,
                  const char *path, size_t path_len, rs_buf_t *body,
                  const char **ctype) {
  static const char recs[] = "/v1/recommendations/";
  if (!path_is(method, method_len, "GET") &&
      !path_is(method, method_len, "HEAD"))
    return json_error(body, ctype, "method not allowed: only GET is served",
                      NULL)
               ? -1
               : 405;
  if (path_is(path, path_len, "/healthz")) {
    *ctype = "application/json";
    static const char alive[] = "{\"status\":\"alive\"}";
    return rs_buf_append(body, alive, sizeof alive - 1) ? -1 : 200;
  }
  if (path_len >= sizeof recs - 1 && !memcmp(path, recs, sizeof recs - 1)) {
    if (path_len == sizeof recs - 1 ||
        memchr(path + sizeof recs - 1, '/', path_len - (sizeof recs - 1)))
      return json_error(body, ctype, "expected GET /v1/recommendations/{user}",
                        NULL)
                 ? -1
                 : 400;
    char *user =
        rs_strndup(path + sizeof recs - 1, path_len - (sizeof recs - 1));
    if (!user)
      return -1;
    /* Interactive queries read the latest list a topn_emit operator keeps
     * in state; no such operator exists yet (issue 8 closing note). */
    int rc = json_error(body, ctype,
                        "no topn_emit operator in this graph: no "
                        "recommendation lists are kept in state to query",
                        user);
    rs_free(user);
    return rc ? -1 : 404;
  }
  int metrics = path_is(path, path_len, "/metrics");
  int ready = path_is(path, path_len, "/readyz");
  int graph = path_is(path, path_len, "/v1/graph");
  if (!metrics && !ready && !graph)
    return json_error(body, ctype,
                      "not found; endpoints: /metrics, /healthz, /readyz, "
                      "/v1/graph, /v1/recommendations/{user}",
                      NULL)
               ? -1
               : 404;
  rs_metrics_snapshot_t s;
  if (rs_engine_snapshot(e, &s))
    return -1;
  int status;
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
  int status = rs_http_route(h->e, req->method.base, req->method.len,
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
    uv_unref(hd);
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
  uv_walk(loop, unref_foreign, h);
  rs_log(RS_LOG_INFO, "http",
         "serving /metrics, /healthz, /readyz, /v1/graph on http://%s%s%s:%d/",
         strchr(bind, ':') ? "[" : "", bind, strchr(bind, ':') ? "]" : "",
         h->port);
  *out = h;
  return 0;
}

int rs_http_port(const rs_http_t *h) {
  return h ? h->port : -1;
}

void rs_http_close(rs_http_t *h) {
  if (!h || !h->listener_open)
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
  rs_free(h);
}
