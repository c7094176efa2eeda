/* Small internal utilities shared by the engine: the allocator front door,
 * a growable byte buffer, a bump arena for per-batch scratch memory, typed
 * value parsers (durations, sizes) and error-string formatting.
 */
#ifndef RS_UTIL_H
#define RS_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "recstream/error.h"

/* ---- allocator front door (alloc.c) ----
 * Every engine and operator allocation goes through these so tests can
 * inject failure and memory can be counted. */
void *rs_malloc(size_t size);
void *rs_calloc(size_t n, size_t size);
void *rs_realloc(void *p, size_t size);
void rs_free(void *p);
char *rs_strdup(const char *s);
/* Makes room for `need` elements of `elem` bytes in *arr (capacity *cap,
 * doubled as needed, at least 16). 0 or RS_ENOMEM (*arr unchanged). */
int rs_grow(void **arr, size_t *cap, size_t need, size_t elem);
char *rs_strndup(const char *s, size_t n);
/* Replace the allocator (NULL restores libc). Not thread-safe: call before
 * anything allocates. */
typedef struct rs_allocator {
  void *(*malloc)(size_t);
  void *(*calloc)(size_t, size_t);
  void *(*realloc)(void *, size_t);
  void (*free)(void *);
} rs_allocator_t;
void rs_set_allocator(const rs_allocator_t *a);

/* ---- growable buffer ---- */
typedef struct rs_buf {
  char *data;
  size_t len;
  size_t cap;
} rs_buf_t;
int rs_buf_reserve(rs_buf_t *b, size_t extra);
int rs_buf_append(rs_buf_t *b, const void *p, size_t n);
int rs_buf_printf(rs_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void rs_buf_reset(rs_buf_t *b);
void rs_buf_free(rs_buf_t *b);

/* ---- bump arena: many small allocations, freed together ---- */
typedef struct rs_arena_chunk rs_arena_chunk_t;
typedef struct rs_arena {
  rs_arena_chunk_t *head;
  size_t chunk_size;
  size_t used_bytes; /* bytes handed out since the last reset */
} rs_arena_t;
void rs_arena_init(rs_arena_t *a, size_t chunk_size);
void *rs_arena_alloc(rs_arena_t *a, size_t size); /* 16-byte aligned */
char *rs_arena_strndup(rs_arena_t *a, const char *s, size_t n);
void rs_arena_reset(rs_arena_t *a); /* keeps the first chunk */
void rs_arena_free(rs_arena_t *a);

/* ---- typed scalars (util.c) ----
 * Each returns 0 or RS_EINVAL; on error `what` (if non-NULL) is set to a
 * static description of the expected form. */
int rs_parse_int64(const char *s, int64_t *out);
int rs_parse_double(const char *s, double *out);
int rs_parse_bool(const char *s, int *out);
/* "250ms", "30s", "5m", "2h", "1d", or a bare number of milliseconds. */
int rs_parse_duration_ms(const char *s, int64_t *out);
/* "512", "64KiB", "1MiB", "2GiB", "10kB", "5MB". */
int rs_parse_size(const char *s, int64_t *out);
/* Formats ms as the shortest exact unit ("1500ms", "30s", "5m"). */
void rs_format_duration(int64_t ms, char *buf, size_t size);

/* snprintf into errstr (if non-NULL) and return err. */
int rs_seterr(char *errstr, size_t errstr_size, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Monotonic clock in nanoseconds and wall clock in milliseconds. */
uint64_t rs_now_ns(void);
int64_t rs_wall_ms(void);

/* 64-bit mixing (splitmix64 finaliser) and a stable hash of bytes. */
uint64_t rs_mix64(uint64_t x);
uint64_t rs_hash64(const void *p, size_t n, uint64_t seed);
/* Operators' deterministic randomness (host->random): the seed of an
 * operator instance from its name, and the value for (key, offset,
 * stream) under that seed. One definition for the runtime and the
 * in-process host, so that `recstream eval` draws what a pipeline does. */
/* mkdir -p of dir's parents (not dir itself); `what` names the setting in
 * messages ("state.dir"). */
int rs_mkdir_parents(const char *dir, const char *what, char *errstr,
                     size_t errstr_size);
uint64_t rs_op_seed(const char *name);
uint64_t rs_op_random(uint64_t seed, const void *key, size_t key_len,
                      int64_t offset, uint64_t stream);

#define RS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define RS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define RS_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- command-line usage errors ----
 * Prints "recstream CMD: <message>" and a pointer to CMD's --help on stderr;
 * returns 2, the exit status of every recstream command for bad usage. */
int rs_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The usage error for what getopt_long (optstring starting with ':')
 * returned as ch for the option argv[optind - 1]: ':' a known option
 * without its value, anything else an unknown (or ambiguous) option. */
int rs_option_error(const char *cmd, int ch, const char *option);

#endif
