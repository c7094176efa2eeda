/* engine/local_host.c, the lean in-process host `recstream eval` uses:
 * host->idle_notify is recorded in init() and rs_local_idle() delivers the
 * idle batch when its caller decides (the host keeps no clock), here with
 * sessionize's idle_close; without idle_close there is nothing to deliver. */
#include <criterion/criterion.h>
#include <string.h>

#include "config.h"
#include "local_host.h"

extern const rs_operator_def_t rs_op_sessionize;

typedef struct seen {
  size_t per_port[3];
  int64_t last_end;
} seen_t;

static int on_emit(void *opaque, uint32_t port, const rs_record_t *rec) {
  seen_t *s = opaque;
  cr_assert_lt(port, 3);
  s->per_port[port]++;
  if (port == 1)
    s->last_end = ((const rs_session_t *)rec->payload)->end_ms;
  return 0;
}

static rs_local_t *start(const char *yaml, seen_t *s, rs_config_t **cfg) {
  char err[1024];
  cr_assert_eq(rs_config_load_string("t.yaml", yaml, strlen(yaml), NULL, 0, cfg,
                                     err, sizeof err),
               0, "%s", err);
  rs_local_opts_t o = {.on_emit = on_emit, .opaque = s};
  rs_local_t *l = NULL;
  cr_assert_eq(rs_local_new(&rs_op_sessionize, "s", *cfg,
                            (*cfg)->operators[0].node, &o, &l, err, sizeof err),
               0, "%s", err);
  return l;
}

static void push(rs_local_t *l, int64_t t) {
  rs_interaction_t ia = {.user = "a",
                         .user_len = 1,
                         .item = "i",
                         .item_len = 1,
                         .event_type = RS_EVENT_CLICK,
                         .timestamp_ms = t};
  rs_record_t r = {.kind = RS_KIND_INTERACTION,
                   .key = "a",
                   .key_len = 1,
                   .payload = &ia,
                   .timestamp_ms = t};
  cr_assert_eq(rs_local_push(l, 0, &r, 1), 0);
}

#define YAML(extra)                                                            \
  "app: t\nsources: [ { name: in, topic: in } ]\noperators:\n"                 \
  "  - { name: s, type: sessionize, input: in, gap: 10s, grace: 5s" extra      \
  " }\nsinks: [ { name: o, input: s.sessions, topic: o } ]\n"

Test(local_host, idle_batches_come_only_from_rs_local_idle) {
  seen_t s = {0};
  rs_config_t *cfg;
  rs_local_t *l = start(YAML(", idle_close: 1m"), &s, &cfg);
  push(l, 1000);
  cr_assert_eq(s.per_port[1], 0, "the host delivers nothing by itself");
  cr_assert_eq(rs_local_idle(l, 0), 0);
  cr_assert_eq(s.per_port[1], 1);
  cr_assert_eq(s.last_end, 1000);
  cr_assert_eq(rs_local_counter(l, "sessions_closed"), 1);
  rs_local_destroy(l);
  rs_config_destroy(cfg);
}

Test(local_host, no_idle_batch_without_idle_close) {
  seen_t s = {0};
  rs_config_t *cfg;
  rs_local_t *l = start(YAML(""), &s, &cfg);
  push(l, 1000);
  cr_assert_eq(rs_local_idle(l, 0), RS_EINVAL);
  cr_assert_eq(s.per_port[1], 0);
  rs_local_destroy(l);
  rs_config_destroy(cfg);
}
