/* `recstream replay`: backfill state from a bounded range of the source
 * topics, in deterministic order, into a state directory that `recstream
 * run --state-dir DIR` then continues live (docs/REPLAY.md).
 *
 * The parts that do not need a broker (argument grammar) and the time seek
 * are exposed here for the tests.
 */
#ifndef RS_REPLAY_H
#define RS_REPLAY_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

/* A position argument of --from / --to. */
typedef enum {
  RS_POS_EARLIEST = 0, /* the partition's low watermark */
  RS_POS_LATEST = 1,   /* its high watermark when the replay starts */
  RS_POS_TIME = 2,     /* first offset whose timestamp is >= time_ms */
  RS_POS_OFFSETS = 3   /* explicit offsets per partition */
} rs_pos_kind_t;

typedef struct rs_pos_offset {
  char *topic; /* NULL: the partition of every source topic */
  int32_t partition;
  int64_t offset;
} rs_pos_offset_t;

typedef struct rs_pos {
  rs_pos_kind_t kind;
  int64_t time_ms;
  rs_pos_offset_t *offsets;
  size_t n_offsets;
} rs_pos_t;

/* Parses "earliest", "latest", "now", an ISO-8601 time
 * ("2026-11-01T00:00:00Z", "2026-11-01T00:00:00.250+01:00") or a time
 * relative to now_ms ("-6h", "-30m", "-90s", "-2d", "-500ms"), or OFFSETS
 * ("P:O,P:O" or "TOPIC:P:O,..."). 0, or RS_EINVAL with the reason in
 * errstr. rs_pos_free() releases the offsets. */
int rs_pos_parse(const char *s, int64_t now_ms, rs_pos_t *out, char *errstr,
                 size_t errstr_size);
void rs_pos_free(rs_pos_t *p);

/* ISO-8601 only (the part of rs_pos_parse the tests pin). */
int rs_parse_iso8601(const char *s, int64_t *ms);

typedef struct rs_seek_stats {
  int broker_answered; /* offsets_for_times gave an offset */
  int probes;          /* records read one at a time (binary search) */
  int64_t scanned;     /* records read by the disorder window scan */
} rs_seek_stats_t;

/* The first offset in [lo, hi) of topic/partition whose record has a
 * timestamp >= ts_ms, or hi when there is none. Asks the broker first
 * (rd_kafka_offsets_for_times); when it cannot answer (the embedded broker
 * returns -1) a binary search reads one record per probe, then the
 * `window` records before the crossing it found are read so that records
 * out of timestamp order by fewer than `window` offsets are found too.
 * rk: a consumer handle used for nothing else (legacy consume calls). */
int rs_seek_time(rd_kafka_t *rk, const char *topic, int32_t partition,
                 int64_t lo, int64_t hi, int64_t ts_ms, int64_t window,
                 int ask_broker, int64_t *out, rs_seek_stats_t *st,
                 char *errstr, size_t errstr_size);

/* How rs_seek_time uses the broker's answer to offsets_for_times for one
 * partition (err: the call's result; partition_err and offset: the
 * partition's). 1 with *out = the offset held to [lo, hi] when it is an
 * answer (an offset past hi means no record of [lo, hi) is that late);
 * 0 when the binary search must run: an error, or -1 (the embedded broker
 * answers -1 to every time; a real broker for a time after every
 * record, where the search finds hi). */
int rs_seek_broker_answer(rd_kafka_resp_err_t err,
                          rd_kafka_resp_err_t partition_err, int64_t offset,
                          int64_t lo, int64_t hi, int64_t *out);

int rs_cmd_replay(int argc, char **argv);

#endif
