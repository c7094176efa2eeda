/* `recstream eval`: prequential evaluation of mf_update on an interaction
 * log (eval.c), and the readers of the log formats it takes
 * (eval_input.c). The readers are exposed for tests.
 */
#ifndef RS_MF_EVAL_H
#define RS_MF_EVAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum rs_eval_format {
  RS_EVAL_MOVIELENS = 0, /* u.data: user \t item \t rating \t timestamp */
  RS_EVAL_ML1M = 1,      /* ratings.dat: user::item::rating::timestamp */
  RS_EVAL_CSV = 2,       /* a header naming the columns, then rows */
  RS_EVAL_AVRO = 3,      /* Avro object container of interactions */
} rs_eval_format_t;

/* "movielens", "ml1m", "csv", "avro" -> format; 0 or -1. */
int rs_eval_format_parse(const char *s, rs_eval_format_t *out);

/* One event of the log; user and item index the log's string tables. */
typedef struct rs_eval_event {
  uint32_t user, item;
  int32_t type; /* rs_event_type_t */
  int32_t has_value;
  double value;
  int64_t ts_ms;
  uint64_t line; /* line (text) or record number (avro), 1-based */
} rs_eval_event_t;

typedef struct rs_eval_strings {
  char **s;
  uint32_t *len;
  uint32_t n, cap;
  uint32_t *slots; /* open addressing: index + 1, 0 empty */
  uint32_t n_slots;
} rs_eval_strings_t;

typedef struct rs_eval_log {
  rs_eval_event_t *ev;
  size_t n, cap;
  rs_eval_strings_t users, items;
  uint64_t bad; /* lines or records rejected */
} rs_eval_log_t;

typedef struct rs_eval_read_opts {
  rs_eval_format_t format;
  int64_t time_unit_ms;  /* text formats: ms per timestamp unit (1000: s) */
  int strict;            /* stop at the first bad line */
  FILE *errors;          /* where bad lines are reported (NULL: nowhere) */
  uint64_t max_reported; /* bad lines reported one by one */
} rs_eval_read_opts_t;

/* Appends the events of `path` to log. Bad lines are reported as
 * "path:line: reason" and counted in log->bad; with strict the first one
 * stops the read with RS_EDECODE and the same message in errstr. Other
 * errors (cannot open, out of memory, not an Avro file): an rs_err_t with
 * a message. */
int rs_eval_read(const char *path, const rs_eval_read_opts_t *o,
                 rs_eval_log_t *log, char *errstr, size_t errstr_size);
/* Stable sort by event time (ties keep file order). */
int rs_eval_sort(rs_eval_log_t *log);
void rs_eval_log_free(rs_eval_log_t *log);

/* `recstream eval`; argv[0] is "eval". Exit status 0, 1 or 2. */
int rs_cmd_eval(int argc, char **argv);

#endif
