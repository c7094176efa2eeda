/* The engine's HTTP endpoint (config section http:): H2O (libh2o, its
 * libuv build) serving on the engine's own loop, so every request reads
 * the engine's figures on the thread that changes them, without locks.
 *
 *   GET /                         the job page (engine/web/job.html)
 *   GET /metrics                  Prometheus text exposition format
 *   GET /healthz                  200 {"status":"alive"} while the loop runs
 *   GET /readyz                   200 when partitions are assigned and
 *                                 consumed, 503 otherwise (JSON both ways)
 *   GET /v1/graph                 nodes, edges and counters as JSON
 *   GET /v1/recommendations/USER  the user's latest list, from the first
 *                                 operator whose def has query()
 *                                 (rs_engine_query): 200 {"user_id",
 *                                 "operator","type","topic","partition",
 *                                 "partitioner","variant" (split by an
 *                                 experiment),"result"}; 404 unknown user (its
 *                                 partition is ours); 421 another instance
 *                                 owns its partition ("owned_partitions"
 *                                 lists ours); 503 not ready or the
 *                                 partition count not read yet; 501 no
 *                                 operator answers queries; 400 bad id
 *
 * Lifecycle (runtime.c): rs_http_start() after the loop's handles exist;
 * rs_http_close() with them when the engine stops (the listener closes,
 * open connections finish their response and close: every response says
 * "connection: close"); rs_http_destroy() once uv_run() has returned.
 * H2O's own handles on the loop are unreferenced, so they never keep the
 * engine's loop alive.
 */
#ifndef RS_HTTP_H
#define RS_HTTP_H

#include <stddef.h>
#include <uv.h>

#include "runtime.h"
#include "util.h"

typedef struct rs_http rs_http_t;

/* Listens on bind:port (port 0: any free port, see rs_http_port()). 0 or
 * RS_EIO with the reason in errstr. */
int rs_http_start(uv_loop_t *loop, rs_engine_t *e, const char *bind, int port,
                  rs_http_t **out, char *errstr, size_t errstr_size);
/* The port actually bound. */
int rs_http_port(const rs_http_t *h);
/* Stops accepting (loop thread). Idempotent. */
void rs_http_close(rs_http_t *h);
/* After the loop has ended: releases H2O's context and configuration. Runs
 * the loop once (UV_RUN_NOWAIT, H2O closing its handles). NULL is fine. */
void rs_http_destroy(rs_http_t *h);

/* One request, without a socket: the status, content type and body the
 * endpoint answers to method and path. body is appended to; *ctype is
 * static; -1 on RS_ENOMEM. */
int rs_http_route(rs_http_t *h, const char *method, size_t method_len,
                  const char *path, size_t path_len, rs_buf_t *body,
                  const char **ctype);

#endif
