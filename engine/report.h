/* `recstream report` (docs/REPORT.md): per experiment variant, the
 * impressions on the recommendations topic, the clicks the feedback topic
 * attributes to them by impression id, CTR with its 95% Wilson score
 * interval, and each variant's CTR difference to the first (control)
 * variant with Newcombe's hybrid score interval.
 */
#ifndef RS_REPORT_H
#define RS_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "recstream/record.h"
#include "util.h"

/* z for a two-sided 95% interval. */
#define RS_Z95 1.959963984540054

/* Wilson score interval of the proportion k/n; [0, 0] when n == 0. */
void rs_wilson(uint64_t k, uint64_t n, double z, double *lo, double *hi);
/* Newcombe's hybrid score interval (method 10) of p1 - p2, from the
 * Wilson intervals of both; *d = p1 - p2. All 0 when n1 or n2 is 0. */
void rs_ctr_diff(uint64_t k1, uint64_t n1, uint64_t k2, uint64_t n2, double z,
                 double *d, double *lo, double *hi);

typedef struct rs_report_variant {
  char *name;           /* "" outside experiments */
  uint64_t impressions; /* distinct impression ids */
  uint64_t clicks;      /* impressions with at least one CLICK */
} rs_report_variant_t;

typedef struct rs_report rs_report_t;

rs_report_t *rs_report_new(void);
void rs_report_destroy(rs_report_t *r);
/* Adds one recommendation (a repeated impression id counts once). */
int rs_report_add_recommendation(rs_report_t *r,
                                 const rs_recommendation_t *rec);
/* Adds one feedback record: a CLICK naming a known impression marks it
 * clicked (once); other types, clicks without an impression id and clicks
 * naming unknown impressions are counted apart. */
int rs_report_add_feedback(rs_report_t *r, const rs_feedback_t *fb);
/* Variants in the order first seen, sorted by name. */
size_t rs_report_variants(rs_report_t *r, const rs_report_variant_t **out);
/* A text table, or (json) one JSON object. */
int rs_report_render(rs_report_t *r, int json, rs_buf_t *out);

/* Reads `topic` from its beginning to its end (the high watermarks when
 * called) from `bootstrap`, calling cb for each record's value. */
int rs_report_read_topic(const char *bootstrap, const char *topic,
                         int timeout_ms,
                         int (*cb)(void *opaque, const void *value, size_t len,
                                   int64_t offset),
                         void *opaque, char *errstr, size_t errstr_size);
/* Reads both topics into r (bad records counted in r, not fatal). */
int rs_report_collect(rs_report_t *r, const char *bootstrap,
                      const char *reco_topic, rs_format_t reco_fmt,
                      const char *feedback_topic, rs_format_t fb_fmt,
                      int timeout_ms, char *errstr, size_t errstr_size);

int rs_cmd_report(int argc, char **argv);

#endif
