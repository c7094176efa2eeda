/* The generation model behind `recstream generate`: pure, deterministic,
 * no I/O, no clock. Everything random comes from one splitmix64 stream
 * (rs_mix64) seeded by opts.seed, except the latent vectors, which are a
 * function of (seed, id) alone so a user keeps its tastes when the catalogue
 * size changes.
 *
 * Model (README.md says the same for users of the command):
 *  - Latent tastes. Every user and item has an 8-dimensional vector with
 *    N(0, 1/8) components. Affinity z(u,i) = sqrt(8) * <u, i> is roughly
 *    N(0, 1) over random pairs.
 *  - Popularity. Items get Zipf weights (rank+1)^-item_zipf over a seeded
 *    random permutation of ranks, sampled in O(1) with an alias table.
 *  - Item choice. A user picks an item by drawing `candidates` (default 16)
 *    items from popularity and choosing one with probability
 *    softmax(affinity * z). That is sampling-importance-resampling of
 *    p(i) ~ pop(i) exp(a z(u,i)): popularity and taste mixed, at
 *    O(candidates * 8) flops per event instead of a softmax over the whole
 *    catalogue. Few candidates keep choices near popularity (taste only
 *    reorders a handful of mostly popular items); many let taste reach the
 *    tail.
 *  - Funnel. A chosen item is VIEWed (value = dwell seconds, log-normal,
 *    longer for liked items). The next event of the same user may continue
 *    the funnel on that item: CLICK, then ADD_TO_CART, then PURCHASE, each
 *    step with probability sigmoid(b + 0.9 z), so purchases concentrate on
 *    high-affinity items. When the funnel stops the user may RATE the item
 *    (likely after a purchase): 1..5, round(2.2 + 0.9 z + noise), clamped.
 *  - Sessions. Users act in sessions: consecutive events 5-120 s apart;
 *    between sessions 30 min - 1 day. Activity is Zipf-like: a user's
 *    activity level is 1 - ln(rank+1)/ln(users) over a seeded permutation,
 *    and active users have longer sessions and shorter gaps.
 *  - Context. Each user has a home device (mobile 60%, desktop 30%, tablet
 *    10%), used in 85% of sessions; a uniformly drawn device in 10%, none
 *    in 5%. Page follows the event type (listing pages for VIEW, product,
 *    checkout, orders); 3% of events have no page.
 *  - Timeline. A min-heap holds every user's next event time; the stream is
 *    the merge, so timestamps never decrease. The first event is at
 *    start_time_ms exactly.
 * Floating point is single-threaded and in a fixed order, so the stream is
 * identical run to run on a given platform and libm.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "generator.h"
#include "util.h"

#ifdef __clang__
/* Keep results identical to gcc's (-std=c11 does not contract). */
#pragma STDC FP_CONTRACT OFF
#endif

#define SQRT_DIMS 2.8284271247461903f /* sqrt(RS_GEN_DIMS) */
#define SESSION_GAP_MIN_MS INT64_C(1800000)
#define SESSION_GAP_RATIO 48.0 /* 30 min * 48 = 1 day */
#define IN_SESSION_MIN_MS 5000
#define IN_SESSION_SPAN_MS 115000 /* up to 120 s, exclusive */
#define MAX_SESSION_EVENTS 400

enum stage {
  ST_NONE = 0, /* no funnel in progress: next event picks a new item */
  ST_VIEWED,
  ST_CLICKED,
  ST_CARTED,
  ST_PURCHASED,
};

enum device { DEV_NONE = 0, DEV_MOBILE, DEV_DESKTOP, DEV_TABLET };

static const char *const device_names[] = {NULL, "mobile", "desktop", "tablet"};

typedef struct gen_user {
  uint32_t item; /* item of the funnel in progress */
  uint32_t left; /* events left in the current session; 0 = between */
  float z;       /* affinity to `item` */
  float level;   /* activity level in [0, 1]; 1 = most active */
  uint8_t stage;
  uint8_t device; /* device of the current session */
  uint8_t home_device;
} gen_user_t;

typedef struct heap_entry {
  int64_t t;
  uint32_t user;
} heap_entry_t;

struct rs_gen {
  rs_gen_opts_t opts;
  uint64_t rng;
  uint64_t count;
  double spare_normal;
  int has_spare;
  gen_user_t *users;
  float *user_vec; /* users * RS_GEN_DIMS */
  float *item_vec; /* items * RS_GEN_DIMS */
  uint32_t *alias;
  uint32_t *alias_cut; /* keep the bucket's own item when low bits < cut */
  double *item_pop;
  heap_entry_t *heap; /* one entry per user */
  char user_id[16];
  char item_id[16];
};

/* ---- randomness ---- */

static inline uint64_t rnd64(uint64_t *s) {
  *s += UINT64_C(0x9e3779b97f4a7c15);
  return rs_mix64(*s);
}

static inline double rnd_unit(uint64_t *s) { /* [0, 1) */
  return (double)(rnd64(s) >> 11) * 0x1.0p-53;
}

static inline double rnd_open(uint64_t *s) { /* (0, 1] */
  return ((double)(rnd64(s) >> 11) + 1.0) * 0x1.0p-53;
}

static inline uint32_t rnd_below(uint64_t *s, uint32_t n) {
  return (uint32_t)(((rnd64(s) >> 32) * (uint64_t)n) >> 32);
}

static double normal_from(uint64_t *s) {
  double u1 = rnd_open(s), u2 = rnd_unit(s);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Box-Muller, keeping the second value for the next call. */
static double rnd_normal(rs_gen_t *g) {
  if (g->has_spare) {
    g->has_spare = 0;
    return g->spare_normal;
  }
  double u1 = rnd_open(&g->rng), u2 = rnd_unit(&g->rng);
  double r = sqrt(-2.0 * log(u1));
  g->spare_normal = r * sin(6.283185307179586 * u2);
  g->has_spare = 1;
  return r * cos(6.283185307179586 * u2);
}

static inline float sigmoidf(float x) {
  return 1.0f / (1.0f + expf(-x));
}

/* ---- set-up ---- */

static void fill_vector(float *v, uint64_t seed, uint64_t tag, uint32_t id) {
  uint64_t s = rs_mix64(seed ^ rs_mix64((tag << 32) | id));
  for (int k = 0; k < RS_GEN_DIMS; k++)
    v[k] = (float)(normal_from(&s) / SQRT_DIMS);
}

static void shuffle(uint32_t *a, uint32_t n, uint64_t *s) {
  for (uint32_t i = 0; i < n; i++)
    a[i] = i;
  for (uint32_t i = n; i > 1; i--) {
    uint32_t j = rnd_below(s, i);
    uint32_t t = a[i - 1];
    a[i - 1] = a[j];
    a[j] = t;
  }
}

/* Vose's alias method over g->item_pop (which sums to 1). */
static int build_alias(rs_gen_t *g) {
  uint32_t n = g->opts.items;
  double *scaled = rs_malloc(sizeof(double) * n);
  uint32_t *small = rs_malloc(sizeof(uint32_t) * n);
  uint32_t *large = rs_malloc(sizeof(uint32_t) * n);
  if (!scaled || !small || !large) {
    rs_free(scaled);
    rs_free(small);
    rs_free(large);
    return RS_ENOMEM;
  }
  uint32_t ns = 0, nl = 0;
  for (uint32_t i = 0; i < n; i++) {
    scaled[i] = g->item_pop[i] * n;
    if (scaled[i] < 1.0)
      small[ns++] = i;
    else
      large[nl++] = i;
  }
  while (ns && nl) {
    uint32_t s = small[--ns], l = large[nl - 1];
    g->alias[s] = l;
    g->alias_cut[s] = (uint32_t)(scaled[s] * 4294967296.0);
    scaled[l] -= 1.0 - scaled[s];
    if (scaled[l] < 1.0) {
      nl--;
      small[ns++] = l;
    }
  }
  /* Leftovers are full buckets (up to rounding): always themselves. */
  while (nl) {
    uint32_t l = large[--nl];
    g->alias[l] = l;
    g->alias_cut[l] = UINT32_MAX;
  }
  while (ns) {
    uint32_t s = small[--ns];
    g->alias[s] = s;
    g->alias_cut[s] = UINT32_MAX;
  }
  rs_free(scaled);
  rs_free(small);
  rs_free(large);
  return 0;
}

static inline uint32_t sample_popular(rs_gen_t *g) {
  uint64_t r = rnd64(&g->rng);
  uint32_t b = (uint32_t)(((r >> 32) * (uint64_t)g->opts.items) >> 32);
  return (uint32_t)r < g->alias_cut[b] ? b : g->alias[b];
}

static int64_t session_gap_ms(rs_gen_t *g, const gen_user_t *u) {
  /* log-scale position in [30 min, 1 day), pulled low for active users */
  double x = pow(rnd_unit(&g->rng), 0.4 * pow(16.0, (double)u->level));
  double ms = (double)SESSION_GAP_MIN_MS * pow(SESSION_GAP_RATIO, x);
  return (int64_t)ms;
}

static int64_t in_session_gap_ms(rs_gen_t *g) {
  double x = rnd_unit(&g->rng);
  return IN_SESSION_MIN_MS + (int64_t)(IN_SESSION_SPAN_MS * x * x);
}

/* ---- min-heap of (next event time, user) ---- */

static inline int heap_less(const heap_entry_t *a, const heap_entry_t *b) {
  return a->t < b->t || (a->t == b->t && a->user < b->user);
}

static void heap_sift_down(heap_entry_t *h, uint32_t n, uint32_t i) {
  heap_entry_t e = h[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= n)
      break;
    if (c + 1 < n && heap_less(&h[c + 1], &h[c]))
      c++;
    if (!heap_less(&h[c], &e))
      break;
    h[i] = h[c];
    i = c;
  }
  h[i] = e;
}

void rs_gen_opts_default(rs_gen_opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->seed = 42;
  o->users = 1000;
  o->items = 5000;
  o->start_time_ms = RS_GEN_DEFAULT_START_MS;
  o->item_zipf = 1.0;
  o->affinity = 2.0;
  o->candidates = 16;
}

rs_gen_t *rs_gen_new(const rs_gen_opts_t *opts) {
  if (!opts || opts->users == 0 || opts->items == 0 ||
      opts->start_time_ms < 0 || !(opts->item_zipf >= 0) ||
      !isfinite(opts->item_zipf) || !(opts->affinity >= 0) ||
      !isfinite(opts->affinity) || opts->candidates < 1 ||
      opts->candidates > RS_GEN_MAX_CANDIDATES)
    return NULL;
  rs_gen_t *g = rs_calloc(1, sizeof(*g));
  if (!g)
    return NULL;
  g->opts = *opts;
  size_t nu = opts->users, ni = opts->items;
  g->users = rs_calloc(nu, sizeof(*g->users));
  g->user_vec = rs_malloc(sizeof(float) * RS_GEN_DIMS * nu);
  g->item_vec = rs_malloc(sizeof(float) * RS_GEN_DIMS * ni);
  g->alias = rs_malloc(sizeof(uint32_t) * ni);
  g->alias_cut = rs_malloc(sizeof(uint32_t) * ni);
  g->item_pop = rs_malloc(sizeof(double) * ni);
  g->heap = rs_malloc(sizeof(heap_entry_t) * nu);
  uint32_t *perm = rs_malloc(sizeof(uint32_t) * (nu > ni ? nu : ni));
  if (!g->users || !g->user_vec || !g->item_vec || !g->alias || !g->alias_cut ||
      !g->item_pop || !g->heap || !perm)
    goto fail;

  g->rng = rs_mix64(opts->seed ^ UINT64_C(0x5265637374726561)); /* "Recstrea" */
  for (uint32_t u = 0; u < opts->users; u++)
    fill_vector(g->user_vec + (size_t)u * RS_GEN_DIMS, opts->seed, 'u', u);
  for (uint32_t i = 0; i < opts->items; i++)
    fill_vector(g->item_vec + (size_t)i * RS_GEN_DIMS, opts->seed, 'i', i);

  /* Item popularity: Zipf over a random permutation of ranks. */
  shuffle(perm, opts->items, &g->rng);
  double total = 0;
  for (uint32_t i = 0; i < opts->items; i++) {
    g->item_pop[i] = pow((double)perm[i] + 1.0, -opts->item_zipf);
    total += g->item_pop[i];
  }
  for (uint32_t i = 0; i < opts->items; i++)
    g->item_pop[i] /= total;
  if (build_alias(g))
    goto fail;

  /* User activity and the first event of each user. */
  shuffle(perm, opts->users, &g->rng);
  double log_n = log((double)opts->users);
  int64_t min_off = INT64_MAX;
  for (uint32_t u = 0; u < opts->users; u++) {
    gen_user_t *us = &g->users[u];
    us->level =
        opts->users > 1 ? (float)(1.0 - log((double)perm[u] + 1.0) / log_n) : 1;
    double d = rnd_unit(&g->rng);
    us->home_device = d < 0.6 ? DEV_MOBILE : d < 0.9 ? DEV_DESKTOP : DEV_TABLET;
    /* Start somewhere inside a typical gap so users do not all begin at
     * once. */
    int64_t off = (int64_t)(rnd_unit(&g->rng) * (double)session_gap_ms(g, us));
    g->heap[u].t = off;
    g->heap[u].user = u;
    if (off < min_off)
      min_off = off;
  }
  for (uint32_t u = 0; u < opts->users; u++)
    g->heap[u].t += opts->start_time_ms - min_off;
  for (uint32_t i = opts->users / 2; i-- > 0;)
    heap_sift_down(g->heap, opts->users, i);
  rs_free(perm);
  return g;

fail:
  rs_free(perm);
  rs_gen_destroy(g);
  return NULL;
}

void rs_gen_destroy(rs_gen_t *g) {
  if (!g)
    return;
  rs_free(g->users);
  rs_free(g->user_vec);
  rs_free(g->item_vec);
  rs_free(g->alias);
  rs_free(g->alias_cut);
  rs_free(g->item_pop);
  rs_free(g->heap);
  rs_free(g);
}

static inline float dot(const float *a, const float *b) {
  float s = 0;
  for (int k = 0; k < RS_GEN_DIMS; k++)
    s += a[k] * b[k];
  return s;
}

/* Draws opts.candidates items from popularity, returns one chosen by
 * softmax(affinity * z); its z in *z_out. */
static uint32_t choose_item(rs_gen_t *g, uint32_t user, float *z_out) {
  const float *uv = g->user_vec + (size_t)user * RS_GEN_DIMS;
  const int nc = (int)g->opts.candidates;
  uint32_t cand[RS_GEN_MAX_CANDIDATES];
  float z[RS_GEN_MAX_CANDIDATES], w[RS_GEN_MAX_CANDIDATES];
  float zmax = -INFINITY;
  for (int k = 0; k < nc; k++) {
    cand[k] = sample_popular(g);
    z[k] = SQRT_DIMS * dot(uv, g->item_vec + (size_t)cand[k] * RS_GEN_DIMS);
    if (z[k] > zmax)
      zmax = z[k];
  }
  float beta = (float)g->opts.affinity, sum = 0;
  for (int k = 0; k < nc; k++) {
    w[k] = expf(beta * (z[k] - zmax)); /* <= 1: no overflow */
    sum += w[k];
  }
  float r = (float)rnd_unit(&g->rng) * sum;
  int k = 0;
  for (; k < nc - 1; k++) {
    r -= w[k];
    if (r < 0)
      break;
  }
  *z_out = z[k];
  return cand[k];
}

static char *format_id(char *buf, char prefix, uint32_t n, uint32_t *len) {
  char tmp[12];
  int i = 0;
  do {
    tmp[i++] = (char)('0' + n % 10);
    n /= 10;
  } while (n);
  buf[0] = prefix;
  for (int j = 0; j < i; j++)
    buf[1 + j] = tmp[i - 1 - j];
  buf[1 + i] = '\0';
  *len = (uint32_t)(1 + i);
  return buf;
}

static const char *view_page(rs_gen_t *g) {
  double p = rnd_unit(&g->rng);
  return p < 0.30   ? "home"
         : p < 0.55 ? "search"
         : p < 0.80 ? "category"
                    : "recommendations";
}

static void start_session(rs_gen_t *g, gen_user_t *u) {
  /* Geometric length with mean 2 + 18 level^2. */
  double mean = 2.0 + 18.0 * (double)u->level * (double)u->level;
  double len = 1.0 + floor(log(rnd_open(&g->rng)) / log(1.0 - 1.0 / mean));
  u->left = len > MAX_SESSION_EVENTS ? MAX_SESSION_EVENTS : (uint32_t)len;
  double d = rnd_unit(&g->rng);
  if (d < 0.05)
    u->device = DEV_NONE;
  else if (d < 0.90)
    u->device = u->home_device;
  else
    u->device = (uint8_t)(DEV_MOBILE + rnd_below(&g->rng, 3));
  u->stage = ST_NONE;
}

/* Funnel step offsets: P(next step | stage) = sigmoid(offset + 0.9 z). */
static const float funnel_offset[] = {
    [ST_VIEWED] = -1.6f, [ST_CLICKED] = -1.2f, [ST_CARTED] = -0.6f};

int rs_gen_next(rs_gen_t *g, rs_interaction_t *out) {
  if (!g || !out)
    return RS_EINVAL;
  heap_entry_t *top = &g->heap[0];
  uint32_t uid = top->user;
  int64_t t = top->t;
  gen_user_t *u = &g->users[uid];
  if (u->left == 0)
    start_session(g, u);

  int32_t type = -1;
  const char *page = NULL;
  double value = 0;
  int has_value = 0;
  if (u->stage >= ST_VIEWED && u->stage <= ST_CARTED &&
      rnd_unit(&g->rng) < sigmoidf(funnel_offset[u->stage] + 0.9f * u->z)) {
    u->stage++;
    if (u->stage == ST_CLICKED) {
      type = RS_EVENT_CLICK;
      page = "product";
    } else if (u->stage == ST_CARTED) {
      type = RS_EVENT_ADD_TO_CART;
      page = "product";
    } else {
      type = RS_EVENT_PURCHASE;
      page = "checkout";
    }
  } else if (u->stage != ST_NONE &&
             rnd_unit(&g->rng) < (u->stage == ST_PURCHASED ? 0.4 : 0.05)) {
    type = RS_EVENT_RATING;
    page = u->stage == ST_PURCHASED ? "orders" : "product";
    double r = round(2.2 + 0.9 * u->z + 0.7 * rnd_normal(g));
    value = r < 1 ? 1 : r > 5 ? 5 : r;
    has_value = 1;
    u->stage = ST_NONE;
  } else {
    u->item = choose_item(g, uid, &u->z);
    u->stage = ST_VIEWED;
    type = RS_EVENT_VIEW;
    page = view_page(g);
    double dwell = exp(2.5 + 0.35 * u->z + 0.8 * rnd_normal(g));
    dwell = dwell < 0.5 ? 0.5 : dwell > 900 ? 900 : dwell;
    value = round(dwell * 10) / 10;
    has_value = 1;
  }
  if (rnd_unit(&g->rng) < 0.03)
    page = NULL;

  memset(out, 0, sizeof(*out));
  out->user = format_id(g->user_id, 'u', uid, &out->user_len);
  out->item = format_id(g->item_id, 'i', u->item, &out->item_len);
  out->device = device_names[u->device];
  out->device_len = out->device ? (uint32_t)strlen(out->device) : 0;
  out->page = page;
  out->page_len = page ? (uint32_t)strlen(page) : 0;
  out->event_type = type;
  out->has_value = has_value;
  out->value = has_value ? value : 0;
  out->timestamp_ms = t;

  if (--u->left == 0)
    top->t = t + session_gap_ms(g, u);
  else
    top->t = t + in_session_gap_ms(g);
  heap_sift_down(g->heap, g->opts.users, 0);
  g->count++;
  return 0;
}

uint64_t rs_gen_count(const rs_gen_t *g) {
  return g ? g->count : 0;
}

const float *rs_gen_user_vector(const rs_gen_t *g, uint32_t user) {
  return g && user < g->opts.users ? g->user_vec + (size_t)user * RS_GEN_DIMS
                                   : NULL;
}

const float *rs_gen_item_vector(const rs_gen_t *g, uint32_t item) {
  return g && item < g->opts.items ? g->item_vec + (size_t)item * RS_GEN_DIMS
                                   : NULL;
}

double rs_gen_affinity(const rs_gen_t *g, uint32_t user, uint32_t item) {
  const float *u = rs_gen_user_vector(g, user);
  const float *i = rs_gen_item_vector(g, item);
  return u && i ? (double)(SQRT_DIMS * dot(u, i)) : 0.0;
}

double rs_gen_item_popularity(const rs_gen_t *g, uint32_t item) {
  return g && item < g->opts.items ? g->item_pop[item] : 0.0;
}

/* ---- start time ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static int read_digits(const char **p, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if ((*p)[i] < '0' || (*p)[i] > '9')
      return -1;
    v = v * 10 + ((*p)[i] - '0');
  }
  *p += n;
  *out = v;
  return 0;
}

/* Reads "[.fff](Z|+HH:MM|-HH:MM)" at *p into milliseconds and a zone offset
 * in seconds. */
static int read_frac_and_zone(const char **pp, int *frac, int64_t *tz) {
  const char *p = *pp;
  *frac = 0;
  *tz = 0;
  if (*p == '.') {
    p++;
    int scale = 100, nd = 0;
    for (; *p >= '0' && *p <= '9'; p++, nd++) {
      *frac += scale * (*p - '0');
      scale /= 10;
    }
    if (nd == 0)
      return -1;
  }
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int sign = *p++ == '-' ? -1 : 1, th, tm;
    if (read_digits(&p, 2, &th))
      return -1;
    if (*p == ':')
      p++;
    if (read_digits(&p, 2, &tm) || th > 23 || tm > 59)
      return -1;
    *tz = sign * ((int64_t)th * 3600 + tm * 60);
  } else {
    return -1; /* no zone: refuse to guess local time */
  }
  *pp = p;
  return 0;
}

int rs_gen_parse_time(const char *s, int64_t *out_ms) {
  if (!s || !*s || !out_ms)
    return RS_EINVAL;
  int64_t ms;
  if (rs_parse_int64(s, &ms) == 0) {
    if (ms < 0)
      return RS_EINVAL;
    *out_ms = ms;
    return 0;
  }
  const char *p = s;
  int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0;
  int64_t tz = 0;
  if (read_digits(&p, 4, &y) || *p++ != '-' || read_digits(&p, 2, &mo) ||
      *p++ != '-' || read_digits(&p, 2, &d))
    return RS_EINVAL;
  if (*p) { /* else a date alone: midnight UTC */
    if (*p != 'T' && *p != 't' && *p != ' ')
      return RS_EINVAL;
    p++;
    if (read_digits(&p, 2, &h) || *p++ != ':' || read_digits(&p, 2, &mi) ||
        *p++ != ':' || read_digits(&p, 2, &sec) ||
        read_frac_and_zone(&p, &frac, &tz) || *p)
      return RS_EINVAL;
  }
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
      (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || sec > 60)
    return RS_EINVAL;
  int64_t secs =
      days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - tz;
  if (secs < 0)
    return RS_EINVAL;
  *out_ms = secs * 1000 + frac;
  return 0;
}
