/* Shared by the benchmarks in tests/bench (not part of the test suite):
 * input generation, raw librdkafka consumption as the baseline, peak RSS,
 * running an engine from a YAML string, and a per-run state directory. */
#ifndef RS_BENCH_COMMON_H
#define RS_BENCH_COMMON_H

#include <stdint.h>

#include "kafka.h"
#include "runtime.h"

/* Prints "<prog>: what: err" and exits 1. */
_Noreturn void bench_die(const char *what, const char *err);
/* Sets the program name used in messages. */
void bench_init(const char *prog);

/* Starts an embedded broker with the NULL-terminated topics, each of
 * `partitions` partitions; dies on failure. */
rs_mock_t *bench_broker(const char *const *topics, int partitions);

/* Produces n Avro interactions to topic, keyed by user "u<k % users>",
 * event time base + k ms (so partitions interleave in time). */
void bench_produce(const char *bootstrap, const char *topic, long n,
                   long users);
/* Consumes n messages of topic (partitions 0..partitions-1) from the
 * start with the engine's fetch settings; records/s. */
double bench_raw_consume(const char *bootstrap, const char *topic,
                         int partitions, long n);

/* Consumes n messages of topic like bench_raw_consume and produces each
 * (key and value copied, same partition) to out_topic with the engine's
 * producer settings (idempotent, linger.ms 5): the least any consume ->
 * produce pipeline costs; records/s from the first input to the last
 * delivery report. */
double bench_raw_copy(const char *bootstrap, const char *topic, int partitions,
                      long n, const char *out_topic);

/* Peak RSS since the last reset, in MiB (Linux VmHWM). */
double bench_peak_rss_mib(void);
void bench_reset_peak_rss(void);

/* A directory for this process's state directories, removed at exit. */
const char *bench_state_root(void);

/* Loads yaml, runs the engine to the end of its input (exit_at_end) and
 * returns its stats; dies on any failure. state_reset as in
 * rs_engine_opts_t. wall_s gets the wall time of rs_engine_run, cpu_s the
 * CPU time (user + system) of the whole process meanwhile (either may be
 * NULL). */
rs_engine_stats_t bench_run(const char *yaml, int state_reset, double *wall_s,
                            double *cpu_s);
/* The same with every engine option given; end_ns (may be NULL) gets
 * rs_now_ns() when rs_engine_run() returned. */
rs_engine_stats_t bench_run_opts(const char *yaml, const rs_engine_opts_t *o,
                                 double *wall_s, double *cpu_s,
                                 uint64_t *end_ns);

/* Runs fn(arg, out) in a forked child and copies its `size` bytes of
 * result back into out: a fresh process per measurement (no allocator,
 * RocksDB or librdkafka state carried over). Dies if the child fails;
 * `what` names it in the message. */
void bench_in_child(const char *what, void (*fn)(const void *arg, void *out),
                    const void *arg, void *out, size_t size);

/* CPU time (user + system) of this process so far, in seconds. */
double bench_cpu_seconds(void);

/* The median of v[0..n) (sorts v). */
double bench_median(double *v, int n);

/* The 1, 5 and 15 minute load averages as text ("?" when unknown), in a
 * static buffer: for the figures' context on a shared machine. */
const char *bench_loadavg(void);

#endif
