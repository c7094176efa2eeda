/* Synthetic interaction generator (`recstream generate`).
 *
 * generator.c owns the generation model: a pure, deterministic function of
 * its options that yields an endless, time-ordered stream of interactions
 * with planted structure (latent user/item preferences, Zipf popularity,
 * sessions, a view -> click -> cart -> purchase funnel, ratings). It does no
 * I/O and reads no clock. generate_cmd.c owns the command that sends the
 * stream to Kafka and/or an Avro file. The model is described in README.md
 * next to this file.
 */
#ifndef RS_GENERATOR_H
#define RS_GENERATOR_H

#include <stddef.h>
#include <stdint.h>

#include "recstream/record.h"

/* Dimension of the planted latent vectors. */
#define RS_GEN_DIMS 8

/* Largest number of popularity-drawn candidates per item choice. */
#define RS_GEN_MAX_CANDIDATES 1024

/* 2026-01-01T00:00:00Z in milliseconds since the Unix epoch. */
#define RS_GEN_DEFAULT_START_MS INT64_C(1767225600000)

typedef struct rs_gen_opts {
  uint64_t seed;         /* default 42 */
  uint32_t users;        /* >= 1; default 1000 */
  uint32_t items;        /* >= 1; default 5000 */
  int64_t start_time_ms; /* >= 0; time of the first event; default above */
  /* Zipf exponent of item popularity (>= 0; default 1.0). */
  double item_zipf;
  /* Inverse temperature of the softmax over latent affinity used to pick an
   * item among popularity-sampled candidates (>= 0; default 2.0). 0 turns
   * the planted preferences off: items then follow popularity alone. */
  double affinity;
  /* Candidates drawn from popularity per item choice, among which one is
   * picked by softmax(affinity * z) (1 ... RS_GEN_MAX_CANDIDATES; default
   * 16). Few candidates keep choices close to popularity whatever the
   * affinity; many let taste reach the whole catalogue (the choice then
   * approaches p(i) ~ pop(i)^1 * exp(affinity * z(u, i))). */
  uint32_t candidates;
} rs_gen_opts_t;

/* Fills *o with the defaults above. Always start from these, then override:
 * a zeroed struct is not a valid configuration (users = 0). */
void rs_gen_opts_default(rs_gen_opts_t *o);

typedef struct rs_gen rs_gen_t;

/* Creates a generator. Returns NULL when an option is out of range or
 * memory is short. Memory is O(users + items). Free with rs_gen_destroy(). */
rs_gen_t *rs_gen_new(const rs_gen_opts_t *opts);
void rs_gen_destroy(rs_gen_t *g);

/* Writes the next event into *out and returns 0 (RS_EINVAL on NULL
 * arguments). The stream never ends; timestamps never decrease. The strings
 * in *out are NUL-terminated and borrowed: they point into the generator
 * (or at static text) and stay valid until the next call or
 * rs_gen_destroy(). */
int rs_gen_next(rs_gen_t *g, rs_interaction_t *out);

/* Number of events returned so far. */
uint64_t rs_gen_count(const rs_gen_t *g);

/* ---- ground truth, for tests and for evaluating what a model learned ----
 * Ids are "u<n>" with 0 <= n < users and "i<n>" with 0 <= n < items. */

/* The planted latent vector (RS_GEN_DIMS floats, components ~ N(0, 1/8)),
 * borrowed until rs_gen_destroy(); NULL when out of range. A vector depends
 * only on (seed, id), not on the number of users or items. */
const float *rs_gen_user_vector(const rs_gen_t *g, uint32_t user);
const float *rs_gen_item_vector(const rs_gen_t *g, uint32_t item);
/* Standardised affinity sqrt(8) * <user, item>, roughly N(0, 1) over random
 * pairs; what the softmax, the funnel and ratings are driven by. */
double rs_gen_affinity(const rs_gen_t *g, uint32_t user, uint32_t item);
/* An item's probability under popularity alone (the Zipf weights). */
double rs_gen_item_popularity(const rs_gen_t *g, uint32_t item);

/* Parses a start time: ISO 8601 "YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM)"
 * (a space instead of 'T' is accepted; a date alone means midnight UTC),
 * or a bare integer of milliseconds
 * since the epoch. Returns 0 or RS_EINVAL; rejects times before 1970. */
int rs_gen_parse_time(const char *s, int64_t *out_ms);

/* `recstream generate`: argv[0] is "generate". Returns the process exit
 * status: 0 done, 1 runtime failure (delivery failed, broker unreachable,
 * file error, interrupted), 2 bad usage. Run `recstream generate --help`. */
int rs_cmd_generate(int argc, char **argv);

#endif
