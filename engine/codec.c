/* The interaction codec: Avro binary (raw, or Confluent wire format) and
 * JSON to rs_interaction_t and back. This is the adapter for avro-c and
 * jansson: their error idioms (avro_strerror(), json_error_t) are turned into
 * RS_EDECODE/RS_EENCODE plus a message here, and no type of theirs leaves
 * this file.
 *
 * Avro decoding uses avro-c's generic values, created once per writer schema
 * and reused for every record. Three avro-c 1.11 behaviours shape the code:
 *
 *  - A resolved writer refuses any reader field the writer lacks ("Reader
 *    field x doesn't appear in writer"; defaults are not implemented). So
 *    each writer schema gets a derived reader schema: the reader's fields
 *    that the writer has. Nullable reader fields the writer lacks are then
 *    absent; a non-nullable one makes the writer schema incompatible.
 *  - Enum resolution copies the writer's index without mapping symbols. So
 *    the derived reader takes event_type's enum from the writer, and the
 *    index is mapped to rs_event_type_t by symbol name here.
 *  - Reading from memory cannot tell how many bytes a record used (so
 *    trailing bytes go unnoticed), and a string's claimed length is
 *    malloc'ed before it is checked against the buffer. So every record is
 *    first walked by a small validator compiled from the writer schema: it
 *    proves the bytes are exactly one well-formed record (lengths, union
 *    branches and enum indices in range, bounded nesting and item counts)
 *    before avro-c sees them, and names the field where a record breaks.
 *
 * JSON decoding uses jansson, behind a strict allocation-free scanner for
 * the common plain record (see json_fast()); JSON encoding is written by
 * hand. Both because jansson builds a tree per record, which costs about
 * ten times the decode budget.
 */
#include <avro.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

/* ---- event types ---- */

static const char *const event_names[RS_EVENT__COUNT] = {
    "VIEW", "CLICK", "ADD_TO_CART", "PURCHASE", "RATING"};

const char *rs_event_type_name(int type) {
  return type >= 0 && type < RS_EVENT__COUNT ? event_names[type] : NULL;
}

int rs_event_type_parse(const char *s, size_t len) {
  for (int i = 0; i < RS_EVENT__COUNT; i++)
    if (strlen(event_names[i]) == len && memcmp(event_names[i], s, len) == 0)
      return i;
  return -1;
}

/* ---- formats ---- */

static const char *const format_names[] = {"avro", "confluent", "json"};

int rs_format_parse(const char *s, rs_format_t *out) {
  for (size_t i = 0; i < RS_ARRAY_SIZE(format_names); i++)
    if (s && strcmp(s, format_names[i]) == 0) {
      *out = (rs_format_t)i;
      return 0;
    }
  return RS_EINVAL;
}

const char *rs_format_name(rs_format_t f) {
  return (size_t)f < RS_ARRAY_SIZE(format_names) ? format_names[f] : "unknown";
}

/* ---- fields of rs_interaction_t, by schema field name ---- */

enum { F_USER, F_ITEM, F_EVENT, F_VALUE, F_TS, F_DEVICE, F_PAGE, F__COUNT };

static const char *const field_names[F__COUNT] = {
    "user_id", "item_id", "event_type", "value", "timestamp", "device", "page"};

/* Avro type each field has in the reader schema (optional ones may also be
 * a union of null and this type). */
static const avro_type_t field_types[F__COUNT] = {
    AVRO_STRING, AVRO_STRING, AVRO_ENUM,  AVRO_DOUBLE,
    AVRO_INT64,  AVRO_STRING, AVRO_STRING};

static int field_optional(int f) {
  return f == F_VALUE || f == F_DEVICE || f == F_PAGE;
}

static int field_by_name(const char *name) {
  for (int f = 0; f < F__COUNT; f++)
    if (strcmp(field_names[f], name) == 0)
      return f;
  return -1;
}

/* ---- validation shared by every format ---- */

static int utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      need = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      cp = c & 0x07;
    } else {
      return 0;
    }
    if (n - i - 1 < need)
      return 0;
    for (size_t k = 1; k <= need; k++) {
      unsigned b = s[i + k];
      if ((b & 0xc0) != 0x80)
        return 0;
      cp = (cp << 6) | (b & 0x3f);
    }
    if (need == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
      return 0;
    if (need == 3 && (cp < 0x10000 || cp > 0x10ffff))
      return 0;
    i += need + 1;
  }
  return 1;
}

/* Copies at most 40 bytes of untrusted text into dst for an error message,
 * printable ASCII only: reasons end up in dead-letter headers and logs. */
static const char *sanitize(char *dst, size_t dst_size, const char *s,
                            size_t n) {
  size_t max = dst_size > 4 ? dst_size - 4 : 0, o = 0;
  if (max > 40)
    max = 40;
  for (size_t i = 0; i < n && o < max; i++) {
    unsigned char ch = (unsigned char)s[i];
    dst[o++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
  }
  if (n > max && dst_size > 4) {
    memcpy(dst + o, "...", 3);
    o += 3;
  }
  if (dst_size)
    dst[o < dst_size ? o : dst_size - 1] = '\0';
  return dst;
}

int rs__codec_check_bounds(int64_t ts, int has_value, double value,
                           char *errstr, size_t errstr_size) {
  if (ts < 0)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "field 'timestamp' is negative (%" PRId64 ")", ts);
  if (ts > RS_MAX_TIMESTAMP_MS)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "field 'timestamp' is after 9999-12-31T23:59:59.999Z "
                     "(%" PRId64 "); expected milliseconds since the Unix "
                     "epoch",
                     ts);
  if (has_value && !isfinite(value))
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "field 'value' is not finite");
  if (has_value && fabs(value) > RS_MAX_ABS_VALUE) {
    char num[32]; /* the shortest form that reads back: %g could say 1e+15 */
    rs__codec_json_double(num, sizeof num, value);
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "field 'value' is out of range: |value| must be <= 1e15 "
                     "(got %s)",
                     num);
  }
  return 0;
}

int rs_interaction_validate(const rs_interaction_t *in, char *errstr,
                            size_t errstr_size) {
  static const int str_fields[] = {F_USER, F_ITEM, F_DEVICE, F_PAGE};
  const char *strs[F__COUNT] = {0};
  uint32_t lens[F__COUNT] = {0};
  strs[F_USER] = in->user, lens[F_USER] = in->user_len;
  strs[F_ITEM] = in->item, lens[F_ITEM] = in->item_len;
  strs[F_DEVICE] = in->device, lens[F_DEVICE] = in->device_len;
  strs[F_PAGE] = in->page, lens[F_PAGE] = in->page_len;

  for (size_t i = 0; i < RS_ARRAY_SIZE(str_fields); i++) {
    int f = str_fields[i];
    if (!field_optional(f) && (!strs[f] || lens[f] == 0))
      return rs_seterr(errstr, errstr_size, RS_EDECODE, "field '%s' is empty",
                       field_names[f]);
    if (strs[f] && !utf8_valid((const unsigned char *)strs[f], lens[f]))
      return rs_seterr(errstr, errstr_size, RS_EDECODE,
                       "field '%s' is not valid UTF-8", field_names[f]);
  }
  const char *ev = rs_event_type_name(in->event_type);
  if (!ev)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "field 'event_type' has unknown value %d",
                     (int)in->event_type);
  int rc = rs__codec_check_bounds(in->timestamp_ms, in->has_value, in->value,
                                  errstr, errstr_size);
  if (rc)
    return rc;
  if (in->event_type == RS_EVENT_RATING && !in->has_value)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "field 'value' is required for event type RATING");
  if (in->event_type != RS_EVENT_RATING && in->has_value && in->value < 0)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "field 'value' (dwell seconds) is negative (%g) for "
                     "event type %s",
                     in->value, ev);
  return 0;
}

/* ---- Avro record validator ----
 * A writer schema compiled into a flat node array, walked over the bytes
 * before avro-c reads them (see the top of the file for why). */

#define V_MAX_DEPTH 64

enum {
  V_OK = 0,
  V_TRUNC,
  V_VARINT,
  V_NEGLEN,
  V_BRANCH,
  V_ENUM,
  V_ITEMS,
  V_DEPTH,
  V_INTRANGE
};

static const char *const v_reasons[] = {
    "ok",
    "truncated record",
    "malformed varint (more than 10 bytes)",
    "negative string or bytes length",
    "union branch index out of range",
    "enum symbol index out of range",
    "array or map has more items than the record has bytes",
    "nesting deeper than 64 levels",
    "int value out of 32-bit range"};

typedef struct vnode {
  avro_type_t type;
  uint32_t n;    /* record fields, union branches or enum symbols */
  uint32_t kids; /* first child in vprog.kids: fields, branches, items */
  int64_t size;  /* fixed size */
} vnode_t;

typedef struct vprog {
  vnode_t *nodes;
  size_t n_nodes, cap_nodes;
  uint32_t *kids;
  size_t n_kids, cap_kids;
} vprog_t;

typedef struct vmemo {
  avro_schema_t *schemas;
  uint32_t *nodes;
  size_t n, cap_schemas, cap_nodes;
} vmemo_t;

static void vprog_free(vprog_t *p) {
  rs_free(p->nodes);
  rs_free(p->kids);
  memset(p, 0, sizeof(*p));
}

static int vprog_node(vprog_t *p, avro_type_t type, uint32_t *out) {
  if (rs_grow((void **)&p->nodes, &p->cap_nodes, p->n_nodes + 1,
              sizeof(vnode_t)))
    return RS_ENOMEM;
  p->nodes[p->n_nodes] = (vnode_t){.type = type};
  *out = (uint32_t)p->n_nodes++;
  return 0;
}

static int vprog_kids(vprog_t *p, size_t n, uint32_t *first) {
  if (rs_grow((void **)&p->kids, &p->cap_kids, p->n_kids + n, sizeof(uint32_t)))
    return RS_ENOMEM;
  *first = (uint32_t)p->n_kids;
  p->n_kids += n;
  return 0;
}

static int vcompile(vprog_t *p, vmemo_t *m, avro_schema_t s, int depth,
                    uint32_t *out) {
  if (depth > V_MAX_DEPTH)
    return RS_EINVAL;
  if (is_avro_link(s))
    s = avro_schema_link_target(s);
  for (size_t i = 0; i < m->n; i++)
    if (m->schemas[i] == s) {
      *out = m->nodes[i];
      return 0;
    }
  uint32_t ni;
  if (vprog_node(p, avro_typeof(s), &ni))
    return RS_ENOMEM;
  /* Memoize before the children so recursive types terminate. */
  if (rs_grow((void **)&m->schemas, &m->cap_schemas, m->n + 1,
              sizeof(avro_schema_t)) ||
      rs_grow((void **)&m->nodes, &m->cap_nodes, m->n + 1, sizeof(uint32_t)))
    return RS_ENOMEM;
  m->schemas[m->n] = s;
  m->nodes[m->n++] = ni;
  *out = ni;

  size_t nk = 0;
  switch (avro_typeof(s)) {
  case AVRO_STRING:
  case AVRO_BYTES:
  case AVRO_INT32:
  case AVRO_INT64:
  case AVRO_FLOAT:
  case AVRO_DOUBLE:
  case AVRO_BOOLEAN:
  case AVRO_NULL:
    return 0;
  case AVRO_FIXED:
    p->nodes[ni].size = avro_schema_fixed_size(s);
    return p->nodes[ni].size < 0 ? RS_EINVAL : 0;
  case AVRO_ENUM:
    p->nodes[ni].n = (uint32_t)avro_schema_enum_number_of_symbols(s);
    return 0;
  case AVRO_RECORD:
    nk = avro_schema_record_size(s);
    break;
  case AVRO_UNION:
    nk = avro_schema_union_size(s);
    break;
  case AVRO_ARRAY:
  case AVRO_MAP:
    nk = 1;
    break;
  default:
    return RS_EINVAL;
  }
  uint32_t first;
  if (vprog_kids(p, nk, &first))
    return RS_ENOMEM;
  p->nodes[ni].n = (uint32_t)nk;
  p->nodes[ni].kids = first;
  for (size_t i = 0; i < nk; i++) {
    avro_schema_t k;
    switch (avro_typeof(s)) {
    case AVRO_RECORD:
      k = avro_schema_record_field_get_by_index(s, (int)i);
      break;
    case AVRO_UNION:
      k = avro_schema_union_branch(s, (int)i);
      break;
    case AVRO_ARRAY:
      k = avro_schema_array_items(s);
      break;
    default:
      k = avro_schema_map_values(s);
      break;
    }
    uint32_t kn;
    int rc = k ? vcompile(p, m, k, depth + 1, &kn) : RS_EINVAL;
    if (rc)
      return rc;
    p->kids[first + i] = kn; /* by index: p->kids may have moved */
  }
  return 0;
}

typedef struct vstate {
  const uint8_t *p, *end;
  uint64_t items_left; /* array/map items still allowed in this record */
} vstate_t;

/* Zigzag varint of at most max_bytes, read the way avro-c reads it. */
static int vvarint(vstate_t *st, int max_bytes, int64_t *out) {
  uint64_t v = 0;
  for (int i = 0; i < max_bytes; i++) {
    if (st->p == st->end)
      return V_TRUNC;
    uint8_t b = *st->p++;
    v |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      *out = (int64_t)((v >> 1) ^ (0 - (v & 1)));
      return V_OK;
    }
  }
  return V_VARINT;
}

static int vskip(vstate_t *st, uint64_t n) {
  if ((uint64_t)(st->end - st->p) < n)
    return V_TRUNC;
  st->p += n;
  return V_OK;
}

static int vwalk(const vprog_t *pg, uint32_t ni, vstate_t *st, int depth) {
  const vnode_t *n = &pg->nodes[ni];
  int64_t v;
  int rc;
  if (depth > V_MAX_DEPTH)
    return V_DEPTH;
  switch (n->type) {
  case AVRO_NULL:
    return V_OK;
  case AVRO_BOOLEAN:
    return vskip(st, 1);
  case AVRO_FLOAT:
    return vskip(st, 4);
  case AVRO_DOUBLE:
    return vskip(st, 8);
  case AVRO_FIXED:
    return vskip(st, (uint64_t)n->size);
  case AVRO_INT32: /* like avro-c: a long, then a range check */
    if ((rc = vvarint(st, 10, &v)))
      return rc;
    return v < INT32_MIN || v > INT32_MAX ? V_INTRANGE : V_OK;
  case AVRO_INT64:
    return vvarint(st, 10, &v);
  case AVRO_STRING:
  case AVRO_BYTES:
    if ((rc = vvarint(st, 10, &v)))
      return rc;
    return v < 0 ? V_NEGLEN : vskip(st, (uint64_t)v);
  case AVRO_ENUM:
    if ((rc = vvarint(st, 10, &v)))
      return rc;
    return v < 0 || (uint64_t)v >= n->n ? V_ENUM : V_OK;
  case AVRO_UNION:
    if ((rc = vvarint(st, 10, &v)))
      return rc;
    if (v < 0 || (uint64_t)v >= n->n)
      return V_BRANCH;
    return vwalk(pg, pg->kids[n->kids + (uint32_t)v], st, depth + 1);
  case AVRO_RECORD:
    for (uint32_t i = 0; i < n->n; i++)
      if ((rc = vwalk(pg, pg->kids[n->kids + i], st, depth + 1)))
        return rc;
    return V_OK;
  case AVRO_ARRAY:
  case AVRO_MAP:
    for (;;) {
      if ((rc = vvarint(st, 10, &v)))
        return rc;
      if (v == 0)
        return V_OK;
      if (v < 0) {
        int64_t block_bytes;
        if (v == INT64_MIN)
          return V_ITEMS;
        v = -v;
        if ((rc = vvarint(st, 10, &block_bytes)))
          return rc;
      }
      /* Items of a zero-byte type (null) would otherwise let a few bytes
       * claim billions of items. */
      if ((uint64_t)v > st->items_left)
        return V_ITEMS;
      st->items_left -= (uint64_t)v;
      for (int64_t i = 0; i < v; i++) {
        if (n->type == AVRO_MAP) { /* the key: a string */
          int64_t klen;
          if ((rc = vvarint(st, 10, &klen)))
            return rc;
          if (klen < 0)
            return V_NEGLEN;
          if ((rc = vskip(st, (uint64_t)klen)))
            return rc;
        }
        if ((rc = vwalk(pg, pg->kids[n->kids], st, depth + 1)))
          return rc;
      }
    }
  default:
    return V_BRANCH;
  }
}

static int vprog_build(vprog_t *p, avro_schema_t writer) {
  vmemo_t m = {0};
  uint32_t root;
  int rc = vcompile(p, &m, writer, 0, &root);
  rs_free(m.schemas);
  rs_free(m.nodes);
  if (rc)
    vprog_free(p);
  return rc;
}

/* Walks one record of `len` bytes. Returns 0, or RS_EDECODE with a reason
 * naming the top-level field where the bytes stop making sense. */
static int vcheck(const vprog_t *pg, avro_schema_t writer, const char *fmt,
                  const uint8_t *buf, size_t len, char *errstr,
                  size_t errstr_size) {
  vstate_t st = {buf, buf + len, len};
  const vnode_t *root = &pg->nodes[0];
  for (uint32_t i = 0; i < root->n; i++) {
    int rc = vwalk(pg, pg->kids[root->kids + i], &st, 1);
    if (rc)
      return rs_seterr(errstr, errstr_size, RS_EDECODE,
                       "%s: %s in field '%s' (at byte %zu of %zu)", fmt,
                       v_reasons[rc],
                       avro_schema_record_field_name(writer, (int)i),
                       (size_t)(st.p - buf), len);
  }
  if (st.p != st.end)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "%s: %zu trailing bytes after a complete record of %zu "
                     "bytes",
                     fmt, (size_t)(st.end - st.p), (size_t)(st.p - buf));
  return 0;
}

/* ---- decoding plans: one per writer schema ---- */

/* Where an rs_interaction_t field sits in the reader schema. */
typedef struct field_layout {
  int index;    /* position in the reader record; -1: the reader lacks it */
  int nullable; /* a union of null and field_types[f] */
  int null_branch, value_branch;
} field_layout_t;

typedef struct plan {
  int32_t id;
  avro_schema_t writer;         /* owned reference */
  avro_schema_t reader;         /* the reader, or the one derived for writer */
  avro_value_iface_t *iface;    /* generic class of `reader` */
  avro_value_t value;           /* reused for every record */
  avro_value_iface_t *resolver; /* NULL when writer equals the reader */
  avro_value_t resolved;        /* resolved writer wrapping `value` */
  int fidx[F__COUNT];           /* field positions in `reader`, -1 absent */
  avro_schema_t event_enum;     /* borrowed: enum the decoded index refers to */
  int8_t *event_map;            /* enum index -> rs_event_type_t or -1 */
  size_t n_symbols;
  vprog_t prog; /* validator for the writer schema */
  int direct;   /* writer is the compiled-in interaction schema */
} plan_t;

struct rs_codec {
  avro_schema_t reader;
  char *reader_name; /* schema path or "compiled-in schema", for messages */
  field_layout_t layout[F__COUNT];
  size_t reader_fields; /* fields in the reader record, ours or not */
  int event_symbol[RS_EVENT__COUNT]; /* reader enum index, -1 (encoding) */
  plan_t raw;                        /* writer == reader */
  plan_t **ids;                      /* Confluent schema ids */
  size_t n_ids, cap_ids, last_id;
  avro_reader_t io_reader;
  avro_writer_t io_writer;
  /* Encoding has its own value: avro-c keeps a set string's buffer for the
   * next set, which reading into the same value would throw away. */
  avro_value_iface_t *enc_iface;
  avro_value_t enc_value;
  rs_buf_t scratch;      /* NUL-terminated copies of strings being encoded */
  int json_fast;         /* try json_fast() before jansson */
  avro_schema_t builtin; /* the compiled-in interaction schema */
  int direct_reader;     /* reader equals it: encode directly */
  int avro_fast;         /* use the direct paths where they apply */
};

/* avro_schema_equal() compares enums and unions over its first argument's
 * symbols and branches only, so a schema with fewer enum symbols or union
 * branches passes as "equal" one way round. Equal both ways is equal. */
static int same_schema(avro_schema_t a, avro_schema_t b) {
  return avro_schema_equal(a, b) && avro_schema_equal(b, a);
}

static avro_schema_t resolve_link(avro_schema_t s) {
  return is_avro_link(s) ? avro_schema_link_target(s) : s;
}

static const char *type_name(avro_type_t t) {
  static const char *const names[] = {
      "string", "bytes", "int",   "long", "float", "double", "boolean", "null",
      "record", "enum",  "fixed", "map",  "array", "union",  "link"};
  return (size_t)t < RS_ARRAY_SIZE(names) ? names[t] : "unknown";
}

static void plan_free(plan_t *p) {
  if (p->resolver) {
    avro_value_decref(&p->resolved);
    avro_value_iface_decref(p->resolver);
  }
  if (p->iface) {
    avro_value_decref(&p->value);
    avro_value_iface_decref(p->iface);
  }
  if (p->reader)
    avro_schema_decref(p->reader);
  if (p->writer)
    avro_schema_decref(p->writer);
  rs_free(p->event_map);
  vprog_free(&p->prog);
  memset(p, 0, sizeof(*p));
}

/* Builds the reader schema used for `writer`: the reader's fields that the
 * writer has, with event_type's enum taken from the writer. */
static int derive_reader(rs_codec_t *c, plan_t *p, const char *what,
                         char *errstr, size_t errstr_size) {
  avro_schema_t w = p->writer, r = c->reader;
  avro_schema_t d =
      avro_schema_record(avro_schema_name(w), avro_schema_namespace(w));
  if (!d)
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "%s: %s", what,
                     avro_strerror());
  size_t nr = avro_schema_record_size(r);
  int pos = 0;
  for (size_t i = 0; i < nr; i++) {
    const char *name = avro_schema_record_field_name(r, (int)i);
    avro_schema_t fs = avro_schema_record_field_get_by_index(r, (int)i);
    int f = field_by_name(name);
    int wi = avro_schema_record_field_get_index(w, name);
    if (wi < 0) {
      if (f >= 0 && !c->layout[f].nullable) {
        avro_schema_decref(d);
        return rs_seterr(errstr, errstr_size, RS_EINVAL,
                         "%s lacks field '%s', which the reader schema %s "
                         "requires (it is not nullable there)",
                         what, name, c->reader_name);
      }
      continue; /* absent: null, or a reader-only field we never read */
    }
    if (f == F_EVENT) {
      avro_schema_t we =
          resolve_link(avro_schema_record_field_get_by_index(w, wi));
      if (is_avro_enum(we))
        fs = we;
    }
    if (avro_schema_record_field_append(d, name, fs)) {
      avro_schema_decref(d);
      return rs_seterr(errstr, errstr_size, RS_ENOMEM, "%s: %s", what,
                       avro_strerror());
    }
    if (f >= 0)
      p->fidx[f] = pos;
    if (f == F_EVENT)
      p->event_enum = resolve_link(fs);
    pos++;
  }
  p->reader = d;
  return 0;
}

static int plan_init(rs_codec_t *c, plan_t *p, int32_t id, avro_schema_t w,
                     const char *what, char *errstr, size_t errstr_size) {
  memset(p, 0, sizeof(*p));
  p->id = id;
  p->writer = avro_schema_incref(w);
  for (int f = 0; f < F__COUNT; f++)
    p->fidx[f] = -1;
  int rc;
  if (!is_avro_record(w)) {
    rc = rs_seterr(errstr, errstr_size, RS_EINVAL,
                   "%s: the schema must be a record, not %s", what,
                   type_name(avro_typeof(w)));
    goto fail;
  }
  if ((rc = vprog_build(&p->prog, w))) {
    rs_seterr(errstr, errstr_size, rc,
              rc == RS_ENOMEM ? "%s: out of memory"
                              : "%s: schema nesting is too deep or malformed",
              what);
    goto fail;
  }
  p->direct = same_schema(w, c->builtin) && c->direct_reader;
  if (w == c->reader || same_schema(w, c->reader)) {
    p->reader = avro_schema_incref(c->reader);
    for (int f = 0; f < F__COUNT; f++)
      p->fidx[f] = c->layout[f].index;
    p->event_enum = resolve_link(
        avro_schema_record_field_get_by_index(c->reader, p->fidx[F_EVENT]));
  } else {
    if ((rc = derive_reader(c, p, what, errstr, errstr_size)))
      goto fail;
    p->resolver = avro_resolved_writer_new(w, p->reader);
    if (!p->resolver) {
      rc = rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "%s cannot be resolved into the reader schema %s: %s",
                     what, c->reader_name, avro_strerror());
      goto fail;
    }
    if (avro_resolved_writer_new_value(p->resolver, &p->resolved)) {
      avro_value_iface_decref(p->resolver);
      p->resolver = NULL;
      rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "%s: %s", what,
                     avro_strerror());
      goto fail;
    }
  }
  p->iface = avro_generic_class_from_schema(p->reader);
  if (!p->iface || avro_generic_value_new(p->iface, &p->value)) {
    if (p->iface)
      avro_value_iface_decref(p->iface);
    p->iface = NULL;
    rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "%s: %s", what,
                   avro_strerror());
    goto fail;
  }
  if (p->resolver)
    avro_resolved_writer_set_dest(&p->resolved, &p->value);

  p->n_symbols = (size_t)avro_schema_enum_number_of_symbols(p->event_enum);
  p->event_map = rs_malloc(p->n_symbols);
  if (!p->event_map) {
    rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "%s: out of memory", what);
    goto fail;
  }
  for (size_t i = 0; i < p->n_symbols; i++) {
    const char *sym = avro_schema_enum_get(p->event_enum, (int)i);
    p->event_map[i] =
        (int8_t)(sym ? rs_event_type_parse(sym, strlen(sym)) : -1);
  }
  return 0;
fail:
  plan_free(p);
  return rc;
}

/* Checks that the reader schema can fill rs_interaction_t. */
static int layout_init(rs_codec_t *c, char *errstr, size_t errstr_size) {
  avro_schema_t r = c->reader;
  if (!is_avro_record(r))
    return rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "reader schema %s must be a record, not %s",
                     c->reader_name, type_name(avro_typeof(r)));
  c->reader_fields = avro_schema_record_size(r);
  for (int f = 0; f < F__COUNT; f++) {
    field_layout_t *l = &c->layout[f];
    l->index = avro_schema_record_field_get_index(r, field_names[f]);
    l->nullable = 0;
    l->null_branch = l->value_branch = -1;
    if (l->index < 0) {
      if (field_optional(f))
        continue;
      return rs_seterr(errstr, errstr_size, RS_EINVAL,
                       "reader schema %s lacks the required field '%s'",
                       c->reader_name, field_names[f]);
    }
    avro_schema_t fs =
        resolve_link(avro_schema_record_field_get_by_index(r, l->index));
    if (avro_typeof(fs) == field_types[f])
      continue;
    if (field_optional(f) && is_avro_union(fs) &&
        avro_schema_union_size(fs) == 2) {
      for (int b = 0; b < 2; b++) {
        avro_type_t bt =
            avro_typeof(resolve_link(avro_schema_union_branch(fs, b)));
        if (bt == AVRO_NULL)
          l->null_branch = b;
        else if (bt == field_types[f])
          l->value_branch = b;
      }
      if (l->null_branch >= 0 && l->value_branch >= 0) {
        l->nullable = 1;
        continue;
      }
    }
    return rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "reader schema %s: field '%s' must be of type %s%s%s",
                     c->reader_name, field_names[f], type_name(field_types[f]),
                     field_optional(f) ? " or a union of null and " : "",
                     field_optional(f) ? type_name(field_types[f]) : "");
  }
  avro_schema_t e = resolve_link(
      avro_schema_record_field_get_by_index(r, c->layout[F_EVENT].index));
  for (int t = 0; t < RS_EVENT__COUNT; t++) {
    int idx = avro_schema_enum_get_by_name(e, event_names[t]);
    c->event_symbol[t] = idx >= 0 ? idx : -1;
  }
  return 0;
}

static int read_file(const char *path, char **out, size_t *out_len,
                     char *errstr, size_t errstr_size) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return rs_seterr(errstr, errstr_size, RS_ENOENT,
                     "cannot open schema file %s: %s", path, strerror(errno));
  rs_buf_t b = {0};
  char chunk[4096];
  size_t n;
  int rc = 0;
  while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
    if (b.len + n > ((size_t)1 << 24)) {
      rc = rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "schema file %s is larger than 16 MiB", path);
      break;
    }
    if (rs_buf_append(&b, chunk, n)) {
      rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
      break;
    }
  }
  if (!rc && ferror(f))
    rc = rs_seterr(errstr, errstr_size, RS_EIO, "cannot read schema file %s",
                   path);
  fclose(f);
  if (rc) {
    rs_buf_free(&b);
    return rc;
  }
  *out = b.data;
  *out_len = b.len;
  return 0;
}

static int parse_schema(const char *json, size_t len, const char *what,
                        avro_schema_t *out, char *errstr, size_t errstr_size) {
  if (avro_schema_from_json_length(json, len, out))
    return rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "%s is not a valid Avro schema: %s", what,
                     avro_strerror());
  return 0;
}

static int load_schema_file(const char *path, avro_schema_t *out, char *errstr,
                            size_t errstr_size) {
  char *json = NULL;
  size_t len = 0;
  int rc = read_file(path, &json, &len, errstr, errstr_size);
  if (rc)
    return rc;
  char what[512];
  snprintf(what, sizeof(what), "schema file %s", path);
  rc = parse_schema(json ? json : "", len, what, out, errstr, errstr_size);
  rs_free(json);
  return rc;
}

int rs_codec_new(rs_codec_t **out, const char *schema_path, char *errstr,
                 size_t errstr_size) {
  *out = NULL;
  rs_codec_t *c = rs_calloc(1, sizeof(*c));
  if (!c)
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  int rc;
  if (schema_path && *schema_path) {
    c->reader_name = rs_strdup(schema_path);
    rc = load_schema_file(schema_path, &c->reader, errstr, errstr_size);
  } else {
    c->reader_name = rs_strdup("(compiled-in interaction schema)");
    rc = parse_schema(
        rs_schema_interaction_json, strlen(rs_schema_interaction_json),
        "the compiled-in interaction schema", &c->reader, errstr, errstr_size);
  }
  if (!rc && !c->reader_name)
    rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  if (!rc)
    rc = parse_schema(
        rs_schema_interaction_json, strlen(rs_schema_interaction_json),
        "the compiled-in interaction schema", &c->builtin, errstr, errstr_size);
  if (!rc) {
    c->direct_reader = same_schema(c->reader, c->builtin);
    c->avro_fast = 1;
  }
  if (!rc)
    rc = layout_init(c, errstr, errstr_size);
  if (!rc)
    rc = plan_init(c, &c->raw, -1, c->reader, c->reader_name, errstr,
                   errstr_size);
  c->json_fast = 1;
  if (!rc) {
    c->io_reader = avro_reader_memory(NULL, 0);
    c->io_writer = avro_writer_memory(NULL, 0);
    if (!c->io_reader || !c->io_writer)
      rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  }
  if (!rc) {
    c->enc_iface = avro_generic_class_from_schema(c->reader);
    if (!c->enc_iface || avro_generic_value_new(c->enc_iface, &c->enc_value)) {
      if (c->enc_iface)
        avro_value_iface_decref(c->enc_iface);
      c->enc_iface = NULL;
      rc = rs_seterr(errstr, errstr_size, RS_ENOMEM, "%s", avro_strerror());
    }
  }
  if (rc) {
    rs_codec_destroy(c);
    return rc;
  }
  *out = c;
  return 0;
}

void rs_codec_destroy(rs_codec_t *c) {
  if (!c)
    return;
  for (size_t i = 0; i < c->n_ids; i++) {
    plan_free(c->ids[i]);
    rs_free(c->ids[i]);
  }
  rs_free(c->ids);
  plan_free(&c->raw);
  if (c->enc_iface) {
    avro_value_decref(&c->enc_value);
    avro_value_iface_decref(c->enc_iface);
  }
  if (c->io_reader)
    avro_reader_free(c->io_reader);
  if (c->io_writer)
    avro_writer_free(c->io_writer);
  if (c->reader)
    avro_schema_decref(c->reader);
  if (c->builtin)
    avro_schema_decref(c->builtin);
  rs_buf_free(&c->scratch);
  rs_free(c->reader_name);
  rs_free(c);
}

static plan_t *find_id(rs_codec_t *c, int32_t id) {
  if (c->last_id < c->n_ids && c->ids[c->last_id]->id == id)
    return c->ids[c->last_id];
  for (size_t i = 0; i < c->n_ids; i++)
    if (c->ids[i]->id == id) {
      c->last_id = i;
      return c->ids[i];
    }
  return NULL;
}

static int add_schema(rs_codec_t *c, int32_t id, avro_schema_t w,
                      const char *what, char *errstr, size_t errstr_size) {
  if (find_id(c, id))
    return rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "schema id %" PRId32 " is registered twice", id);
  if (rs_grow((void **)&c->ids, &c->cap_ids, c->n_ids + 1, sizeof(plan_t *)))
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  plan_t *p = rs_malloc(sizeof(*p));
  if (!p)
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "out of memory");
  int rc = plan_init(c, p, id, w, what, errstr, errstr_size);
  if (rc) {
    rs_free(p);
    return rc;
  }
  c->ids[c->n_ids++] = p;
  return 0;
}

int rs_codec_add_schema_id(rs_codec_t *c, int32_t id, const char *schema_path,
                           char *errstr, size_t errstr_size) {
  avro_schema_t w;
  int rc = load_schema_file(schema_path, &w, errstr, errstr_size);
  if (rc)
    return rc;
  char what[512];
  snprintf(what, sizeof(what), "writer schema %s (id %" PRId32 ")", schema_path,
           id);
  rc = add_schema(c, id, w, what, errstr, errstr_size);
  avro_schema_decref(w);
  return rc;
}

int rs_codec_add_schema_json(rs_codec_t *c, int32_t id, const char *json,
                             size_t len, char *errstr, size_t errstr_size) {
  char what[64];
  snprintf(what, sizeof(what), "writer schema for id %" PRId32, id);
  avro_schema_t w;
  int rc = parse_schema(json, len, what, &w, errstr, errstr_size);
  if (rc)
    return rc;
  rc = add_schema(c, id, w, what, errstr, errstr_size);
  avro_schema_decref(w);
  return rc;
}

/* ---- decoding ---- */

int rs__codec_copy_strings(const char **s[], uint32_t *l[], int n,
                           void *(*alloc)(void *opaque, size_t n), void *opaque,
                           const char *fmt, char *errstr, size_t errstr_size) {
  size_t total = 0;
  for (int i = 0; i < n; i++)
    if (*s[i])
      total += (size_t)*l[i] + 1;
  char *dst = alloc(opaque, total ? total : 1);
  if (!dst)
    return rs_seterr(errstr, errstr_size, RS_ENOMEM,
                     "%s: out of memory copying %zu bytes", fmt, total);
  for (int i = 0; i < n; i++) {
    if (!*s[i])
      continue;
    memcpy(dst, *s[i], *l[i]);
    dst[*l[i]] = '\0';
    *s[i] = dst;
    dst += *l[i] + 1;
  }
  return 0;
}

int rs__avro_get_long(rs__avro_cur_t *d, int64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (d->p >= d->e)
      return -1;
    uint8_t b = *d->p++;
    if (shift == 63 && (b & 0x7e))
      return -1;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
      return 0;
    }
  }
  return -1;
}

int rs__avro_get_string(rs__avro_cur_t *d, const char **s, uint32_t *len) {
  int64_t n;
  if (rs__avro_get_long(d, &n) || n < 0 || n > d->e - d->p || n > UINT32_MAX)
    return -1;
  *s = (const char *)d->p;
  *len = (uint32_t)n;
  d->p += n;
  return 0;
}

/* Copies the strings of `in` into one block from alloc() so they outlive the
 * buffers they point at (avro-c's values, jansson's tree). */
static int copy_strings(rs_interaction_t *in,
                        void *(*alloc)(void *opaque, size_t n), void *opaque,
                        const char *fmt, char *errstr, size_t errstr_size) {
  const char **s[4] = {&in->user, &in->item, &in->device, &in->page};
  uint32_t *l[4] = {&in->user_len, &in->item_len, &in->device_len,
                    &in->page_len};
  return rs__codec_copy_strings(s, l, 4, alloc, opaque, fmt, errstr,
                                errstr_size);
}

static int finish(rs_interaction_t *out, void *(*alloc)(void *, size_t),
                  void *opaque, const char *fmt, char *errstr,
                  size_t errstr_size) {
  char why[192];
  if (rs_interaction_validate(out, why, sizeof(why)))
    return rs_seterr(errstr, errstr_size, RS_EDECODE, "%s: %s", fmt, why);
  return copy_strings(out, alloc, opaque, fmt, errstr, errstr_size);
}

/* Reads field f of the decoded record; for a nullable field, *present says
 * whether the value branch was set. Leaves *v on that branch. */
static int get_field(const rs_codec_t *c, plan_t *p, int f, avro_value_t *v,
                     int *present) {
  *present = 0;
  if (p->fidx[f] < 0)
    return 0;
  if (avro_value_get_by_index(&p->value, (size_t)p->fidx[f], v, NULL))
    return -1;
  if (c->layout[f].nullable) {
    avro_value_t branch;
    if (avro_value_get_current_branch(v, &branch))
      return -1;
    if (avro_value_get_type(&branch) == AVRO_NULL)
      return 0;
    *v = branch;
  }
  *present = 1;
  return 0;
}

static int get_string(const rs_codec_t *c, plan_t *p, int f, const char **s,
                      uint32_t *len) {
  avro_value_t v;
  int present;
  *s = NULL;
  *len = 0;
  if (get_field(c, p, f, &v, &present))
    return -1;
  if (!present)
    return 0;
  const char *str;
  size_t size;
  if (avro_value_get_string(&v, &str, &size))
    return -1;
  size = size ? size - 1 : 0; /* avro-c counts the NUL */
  if (size > UINT32_MAX)
    return -1;
  *s = str ? str : "";
  *len = (uint32_t)size;
  return 0;
}

static int extract(const rs_codec_t *c, plan_t *p, const char *fmt,
                   rs_interaction_t *out, char *errstr, size_t errstr_size) {
  avro_value_t v;
  int present, f = F_USER;
  memset(out, 0, sizeof(*out));
  if (get_string(c, p, F_USER, &out->user, &out->user_len))
    goto fail;
  f = F_ITEM;
  if (get_string(c, p, F_ITEM, &out->item, &out->item_len))
    goto fail;
  f = F_DEVICE;
  if (get_string(c, p, F_DEVICE, &out->device, &out->device_len))
    goto fail;
  f = F_PAGE;
  if (get_string(c, p, F_PAGE, &out->page, &out->page_len))
    goto fail;

  f = F_EVENT;
  int sym;
  if (get_field(c, p, F_EVENT, &v, &present) || !present ||
      avro_value_get_enum(&v, &sym))
    goto fail;
  if (sym < 0 || (size_t)sym >= p->n_symbols)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "%s: field 'event_type' has symbol index %d out of range",
                     fmt, sym);
  if (p->event_map[sym] < 0) {
    const char *name = avro_schema_enum_get(p->event_enum, sym);
    char q[48];
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "%s: unknown event type '%s' in field 'event_type'", fmt,
                     sanitize(q, sizeof(q), name, strlen(name)));
  }
  out->event_type = p->event_map[sym];

  f = F_TS;
  if (get_field(c, p, F_TS, &v, &present) || !present ||
      avro_value_get_long(&v, &out->timestamp_ms))
    goto fail;

  f = F_VALUE;
  if (get_field(c, p, F_VALUE, &v, &present))
    goto fail;
  if (present) {
    if (avro_value_get_double(&v, &out->value))
      goto fail;
    out->has_value = 1;
  }
  return 0;
fail:
  return rs_seterr(errstr, errstr_size, RS_EDECODE,
                   "%s: cannot read field '%s': %s", fmt, field_names[f],
                   avro_strerror());
}

/* ---- direct path for the compiled-in schema ----
 * Records written in exactly schemas/interaction.avsc (the common case) are
 * read and written here without avro-c's generic values, which cost about
 * 0.4 us a record in allocation and indirection. Field order: user_id,
 * item_id, event_type (enum in rs_event_type_t order), value (union null,
 * double), timestamp (long), device and page (union null, string). Any
 * anomaly makes the direct decoder give up and the generic path decide, so
 * the two cannot disagree on what is accepted or on the error message. */

typedef struct dcur {
  const uint8_t *p, *e;
} dcur_t;

static int d_long(dcur_t *d, int64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (d->p >= d->e)
      return -1;
    uint8_t b = *d->p++;
    if (shift == 63 && (b & 0x7e))
      return -1; /* more than 64 bits */
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
      return 0;
    }
  }
  return -1;
}

static int d_string(dcur_t *d, const char **s, uint32_t *len) {
  int64_t n;
  if (d_long(d, &n) || n < 0 || n > d->e - d->p || n > UINT32_MAX)
    return -1;
  *s = (const char *)d->p;
  *len = (uint32_t)n;
  d->p += n;
  return 0;
}

/* Union index of a [null, T] union: 0 absent, 1 present, -1 malformed. */
static int d_branch(dcur_t *d) {
  int64_t b;
  if (d_long(d, &b) || (b != 0 && b != 1))
    return -1;
  return (int)b;
}

static int decode_direct(const uint8_t *buf, size_t len,
                         rs_interaction_t *out) {
  dcur_t d = {buf, buf + len};
  int64_t ev;
  int b;
  memset(out, 0, sizeof(*out));
  if (d_string(&d, &out->user, &out->user_len) ||
      d_string(&d, &out->item, &out->item_len) || d_long(&d, &ev) || ev < 0 ||
      ev >= RS_EVENT__COUNT || (b = d_branch(&d)) < 0)
    return -1;
  out->event_type = (int32_t)ev;
  if (b) {
    if (d.e - d.p < 8)
      return -1;
    memcpy(&out->value, d.p, 8); /* Avro doubles are little-endian */
    d.p += 8;
    out->has_value = 1;
  }
  if (d_long(&d, &out->timestamp_ms) || (b = d_branch(&d)) < 0 ||
      (b && d_string(&d, &out->device, &out->device_len)) ||
      (b = d_branch(&d)) < 0 || (b && d_string(&d, &out->page, &out->page_len)))
    return -1;
  return d.p == d.e ? 0 : -1;
}

static uint8_t *e_long(uint8_t *o, int64_t v) {
  uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
  while (z >= 0x80) {
    *o++ = (uint8_t)(z | 0x80);
    z >>= 7;
  }
  *o++ = (uint8_t)z;
  return o;
}

static uint8_t *e_string(uint8_t *o, const char *s, uint32_t len) {
  if (!s)
    len = 0;
  o = e_long(o, len);
  if (len)
    memcpy(o, s, len);
  return o + len;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the direct Avro path assumes a little-endian host (Avro doubles are LE)"
#endif

static int encode_direct(const rs_interaction_t *in, const char *fmt,
                         rs_buf_t *out, char *errstr, size_t errstr_size) {
  size_t max = 5 * 10 + 8 + (size_t)in->user_len + in->item_len +
               (in->device ? in->device_len : 0) +
               (in->page ? in->page_len : 0);
  if (rs_buf_reserve(out, max + 1))
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "%s: out of memory", fmt);
  uint8_t *start = (uint8_t *)out->data + out->len, *o = start;
  o = e_string(o, in->user, in->user_len);
  o = e_string(o, in->item, in->item_len);
  o = e_long(o, in->event_type);
  *o++ = in->has_value ? 2 : 0; /* zigzag(1), zigzag(0) */
  if (in->has_value) {
    memcpy(o, &in->value, 8);
    o += 8;
  }
  o = e_long(o, in->timestamp_ms);
  *o++ = in->device ? 2 : 0;
  if (in->device)
    o = e_string(o, in->device, in->device_len);
  *o++ = in->page ? 2 : 0;
  if (in->page)
    o = e_string(o, in->page, in->page_len);
  out->len += (size_t)(o - start);
  out->data[out->len] = '\0';
  return 0;
}

void rs_codec_set_avro_fast_path(rs_codec_t *c, int enabled) {
  c->avro_fast = enabled;
}

static int decode_avro(rs_codec_t *c, plan_t *p, const char *fmt,
                       const uint8_t *buf, size_t len, rs_interaction_t *out,
                       void *(*alloc)(void *, size_t), void *opaque,
                       char *errstr, size_t errstr_size) {
  if (p->direct && c->avro_fast && !decode_direct(buf, len, out)) {
    char why[192];
    if (!rs_interaction_validate(out, why, sizeof(why)))
      return copy_strings(out, alloc, opaque, fmt, errstr, errstr_size);
    /* invalid: let the generic path report it in its own words */
  }
  int rc = vcheck(&p->prog, p->writer, fmt, buf, len, errstr, errstr_size);
  if (rc)
    return rc;
  avro_reader_memory_set_source(c->io_reader, (const char *)buf, (int64_t)len);
  if (avro_value_read(c->io_reader, p->resolver ? &p->resolved : &p->value))
    return rs_seterr(errstr, errstr_size, RS_EDECODE, "%s: %s", fmt,
                     avro_strerror());
  if ((rc = extract(c, p, fmt, out, errstr, errstr_size)))
    return rc;
  return finish(out, alloc, opaque, fmt, errstr, errstr_size);
}

static const char *json_type_name(const json_t *j) {
  switch (json_typeof(j)) {
  case JSON_OBJECT:
    return "object";
  case JSON_ARRAY:
    return "array";
  case JSON_STRING:
    return "string";
  case JSON_INTEGER:
    return "integer";
  case JSON_REAL:
    return "number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "boolean";
  default:
    return "null";
  }
}

/* A JSON string field. Optional fields may be null or absent. */
static int json_str(json_t *root, int f, const char **s, uint32_t *len,
                    char *errstr, size_t errstr_size) {
  json_t *j = json_object_get(root, field_names[f]);
  *s = NULL;
  *len = 0;
  if (!j || json_is_null(j)) {
    if (field_optional(f))
      return 0;
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     j ? "json: field '%s' must be a string, got null"
                       : "json: missing field '%s'",
                     field_names[f]);
  }
  if (!json_is_string(j))
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "json: field '%s' must be a string%s, got %s",
                     field_names[f], field_optional(f) ? " or null" : "",
                     json_type_name(j));
  size_t n = json_string_length(j);
  if (n > UINT32_MAX)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "json: field '%s' is too long", field_names[f]);
  *s = json_string_value(j);
  *len = (uint32_t)n;
  return 0;
}

static int json_fields(json_t *root, rs_interaction_t *out, char *errstr,
                       size_t errstr_size) {
  int rc;
  if (!json_is_object(root))
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "json: expected an object, got %s", json_type_name(root));
  if ((rc = json_str(root, F_USER, &out->user, &out->user_len, errstr,
                     errstr_size)) ||
      (rc = json_str(root, F_ITEM, &out->item, &out->item_len, errstr,
                     errstr_size)))
    return rc;

  json_t *j = json_object_get(root, "event_type");
  if (!j)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "json: missing field 'event_type'");
  if (!json_is_string(j))
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "json: field 'event_type' must be a string, got %s",
                     json_type_name(j));
  out->event_type =
      rs_event_type_parse(json_string_value(j), json_string_length(j));
  if (out->event_type < 0) {
    char q[48];
    return rs_seterr(
        errstr, errstr_size, RS_EDECODE,
        "json: unknown event type '%s' in field 'event_type'",
        sanitize(q, sizeof(q), json_string_value(j), json_string_length(j)));
  }

  j = json_object_get(root, "timestamp");
  if (!j)
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "json: missing field 'timestamp'");
  if (!json_is_integer(j))
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "json: field 'timestamp' must be an integer "
                     "(milliseconds), got %s",
                     json_type_name(j));
  out->timestamp_ms = (int64_t)json_integer_value(j);

  j = json_object_get(root, "value");
  if (j && !json_is_null(j)) {
    if (!json_is_number(j))
      return rs_seterr(errstr, errstr_size, RS_EDECODE,
                       "json: field 'value' must be a number or null, got %s",
                       json_type_name(j));
    out->value = json_number_value(j);
    out->has_value = 1;
  }
  if ((rc = json_str(root, F_DEVICE, &out->device, &out->device_len, errstr,
                     errstr_size)) ||
      (rc = json_str(root, F_PAGE, &out->page, &out->page_len, errstr,
                     errstr_size)))
    return rc;
  return 0;
}

/* ---- JSON fast path ----
 * jansson builds a tree per record (about 2 us for a typical record). The
 * common record is one flat object of plain strings and numbers, which a
 * strict scanner reads without allocating. It accepts only input that it can
 * read exactly as jansson would: no escapes or control characters in
 * strings, valid UTF-8, numbers in strict JSON grammar that fit (int64, a
 * finite double via the same strtod), scalar values, no duplicate keys,
 * every required field of the right type. Anything else, including every
 * error, goes to jansson, which stays the authority on both results and
 * messages. The fuzzer checks that both paths agree. */

static const uint8_t *jws(const uint8_t *p, const uint8_t *e) {
  while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    p++;
  return p;
}

/* p at '"'; returns the byte after the closing quote, or NULL. */
static const uint8_t *jstring(const uint8_t *p, const uint8_t *e,
                              const char **s, size_t *n) {
  const uint8_t *start = ++p;
  int high = 0;
  for (; p < e && *p != '"'; p++) {
    if (*p == '\\' || *p < 0x20)
      return NULL;
    high |= *p & 0x80;
  }
  if (p == e || (high && !utf8_valid(start, (size_t)(p - start))))
    return NULL;
  *s = (const char *)start;
  *n = (size_t)(p - start);
  return p + 1;
}

enum { J_STRING, J_INT, J_REAL, J_NULL, J_BOOL };

typedef struct jval {
  int type;
  const char *s;
  size_t n;
  int64_t i;
  double d;
} jval_t;

static const uint8_t *jnumber(const uint8_t *p, const uint8_t *e, jval_t *v) {
  const uint8_t *start = p;
  int neg = 0;
  if (*p == '-') {
    neg = 1;
    if (++p == e)
      return NULL;
  }
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    while (p < e && *p >= '0' && *p <= '9')
      p++;
  } else {
    return NULL;
  }
  const uint8_t *int_end = p;
  v->type = J_INT;
  if (p < e && *p == '.') {
    v->type = J_REAL;
    if (++p == e || *p < '0' || *p > '9')
      return NULL;
    while (p < e && *p >= '0' && *p <= '9')
      p++;
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    v->type = J_REAL;
    if (++p < e && (*p == '+' || *p == '-'))
      p++;
    if (p == e || *p < '0' || *p > '9')
      return NULL;
    while (p < e && *p >= '0' && *p <= '9')
      p++;
  }
  if (v->type == J_INT) {
    /* Accumulate negatively so INT64_MIN fits; overflow is jansson's call. */
    int64_t acc = 0;
    for (const uint8_t *q = start + neg; q < int_end; q++) {
      int d = *q - '0';
      if (acc < (INT64_MIN + d) / 10)
        return NULL;
      acc = acc * 10 - d;
    }
    if (!neg && acc == INT64_MIN)
      return NULL;
    v->i = neg ? acc : -acc;
    return p;
  }
  char tmp[64];
  size_t n = (size_t)(p - start);
  if (n >= sizeof(tmp))
    return NULL;
  memcpy(tmp, start, n);
  tmp[n] = '\0';
  v->d = strtod(tmp, NULL);
  return isfinite(v->d) ? p : NULL;
}

static const uint8_t *jvalue(const uint8_t *p, const uint8_t *e, jval_t *v) {
  if (p == e)
    return NULL;
  switch (*p) {
  case '"':
    v->type = J_STRING;
    return jstring(p, e, &v->s, &v->n);
  case 't':
  case 'f':
  case 'n': {
    static const char *const lits[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++) {
      size_t n = strlen(lits[i]);
      if ((size_t)(e - p) >= n && memcmp(p, lits[i], n) == 0) {
        v->type = i == 2 ? J_NULL : J_BOOL;
        return p + n;
      }
    }
    return NULL;
  }
  default:
    return jnumber(p, e, v);
  }
}

static int json_fast(const uint8_t *p, size_t len, rs_interaction_t *out) {
  const uint8_t *e = p + len;
  const char *other[8]; /* unknown keys seen, for the duplicate check */
  size_t other_len[8], n_other = 0;
  unsigned seen = 0;
  p = jws(p, e);
  if (p == e || *p != '{')
    return 0;
  p = jws(p + 1, e);
  for (;;) {
    const char *key;
    size_t klen;
    jval_t v;
    if (p == e || *p != '"' || !(p = jstring(p, e, &key, &klen)))
      return 0;
    p = jws(p, e);
    if (p == e || *p != ':')
      return 0;
    p = jws(p + 1, e);
    if (!(p = jvalue(p, e, &v)))
      return 0;
    int f = -1;
    for (int i = 0; i < F__COUNT; i++)
      if (strlen(field_names[i]) == klen &&
          memcmp(field_names[i], key, klen) == 0) {
        f = i;
        break;
      }
    if (f >= 0) {
      if (seen & (1u << f))
        return 0;
      seen |= 1u << f;
    } else {
      for (size_t i = 0; i < n_other; i++)
        if (other_len[i] == klen && memcmp(other[i], key, klen) == 0)
          return 0;
      if (n_other == RS_ARRAY_SIZE(other))
        return 0;
      other[n_other] = key;
      other_len[n_other++] = klen;
    }
    switch (f) {
    case F_USER:
    case F_ITEM:
    case F_DEVICE:
    case F_PAGE: {
      if (v.type == J_NULL && field_optional(f))
        break;
      if (v.type != J_STRING || v.n > UINT32_MAX)
        return 0;
      const char **dst = f == F_USER     ? &out->user
                         : f == F_ITEM   ? &out->item
                         : f == F_DEVICE ? &out->device
                                         : &out->page;
      uint32_t *dlen = f == F_USER     ? &out->user_len
                       : f == F_ITEM   ? &out->item_len
                       : f == F_DEVICE ? &out->device_len
                                       : &out->page_len;
      *dst = v.s;
      *dlen = (uint32_t)v.n;
      break;
    }
    case F_EVENT:
      if (v.type != J_STRING ||
          (out->event_type = rs_event_type_parse(v.s, v.n)) < 0)
        return 0;
      break;
    case F_TS:
      if (v.type != J_INT)
        return 0;
      out->timestamp_ms = v.i;
      break;
    case F_VALUE:
      if (v.type == J_INT || v.type == J_REAL) {
        out->value = v.type == J_INT ? (double)v.i : v.d;
        out->has_value = 1;
      } else if (v.type != J_NULL) {
        return 0;
      }
      break;
    default:
      break;
    }
    p = jws(p, e);
    if (p < e && *p == ',') {
      p = jws(p + 1, e);
      continue;
    }
    if (p < e && *p == '}')
      break;
    return 0;
  }
  const unsigned required =
      (1u << F_USER) | (1u << F_ITEM) | (1u << F_EVENT) | (1u << F_TS);
  return jws(p + 1, e) == e && (seen & required) == required;
}

void rs_codec_set_json_fast_path(rs_codec_t *c, int enabled) {
  c->json_fast = enabled;
}

static int decode_json(rs_codec_t *c, const uint8_t *buf, size_t len,
                       rs_interaction_t *out, void *(*alloc)(void *, size_t),
                       void *opaque, char *errstr, size_t errstr_size) {
  json_error_t je;
  memset(out, 0, sizeof(*out));
  if (c->json_fast) {
    if (json_fast(buf, len, out))
      return finish(out, alloc, opaque, "json", errstr, errstr_size);
    memset(out, 0, sizeof(*out));
  }
  json_t *root = json_loadb((const char *)buf, len,
                            JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
  if (!root) {
    char text[sizeof(je.text)];
    return rs_seterr(errstr, errstr_size, RS_EDECODE,
                     "json: %s (line %d, column %d)",
                     sanitize(text, sizeof(text), je.text, strlen(je.text)),
                     je.line, je.column);
  }
  int rc = json_fields(root, out, errstr, errstr_size);
  if (!rc)
    rc = finish(out, alloc, opaque, "json", errstr, errstr_size);
  json_decref(root);
  return rc;
}

int rs_codec_decode(rs_codec_t *c, rs_format_t fmt, const void *buf, size_t len,
                    rs_interaction_t *out,
                    void *(*alloc)(void *opaque, size_t n), void *opaque,
                    char *errstr, size_t errstr_size) {
  const uint8_t *b = buf;
  if (!c || !out || !alloc || (!buf && len))
    return rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "rs_codec_decode: invalid argument");
  if (!b)
    b = (const uint8_t *)"";
  switch (fmt) {
  case RS_FORMAT_AVRO:
    return decode_avro(c, &c->raw, "avro", b, len, out, alloc, opaque, errstr,
                       errstr_size);
  case RS_FORMAT_CONFLUENT: {
    if (len < 5)
      return rs_seterr(errstr, errstr_size, RS_EDECODE,
                       "confluent: record of %zu bytes is shorter than the "
                       "5-byte header",
                       len);
    if (b[0] != 0)
      return rs_seterr(errstr, errstr_size, RS_EDECODE,
                       "confluent: wrong magic byte 0x%02x (expected 0x00)",
                       b[0]);
    int32_t id = (int32_t)(((uint32_t)b[1] << 24) | ((uint32_t)b[2] << 16) |
                           ((uint32_t)b[3] << 8) | (uint32_t)b[4]);
    plan_t *p = find_id(c, id);
    if (!p)
      return rs_seterr(errstr, errstr_size, RS_EDECODE,
                       "confluent: unknown schema id %" PRId32, id);
    return decode_avro(c, p, "confluent", b + 5, len - 5, out, alloc, opaque,
                       errstr, errstr_size);
  }
  case RS_FORMAT_JSON:
    return decode_json(c, b, len, out, alloc, opaque, errstr, errstr_size);
  default:
    return rs_seterr(errstr, errstr_size, RS_EINVAL, "unknown format %d",
                     (int)fmt);
  }
}

/* ---- encoding ---- */

/* avro-c wants NUL-terminated strings; ours carry a length. */
static int set_string(rs_codec_t *c, avro_value_t *v, const char *s,
                      uint32_t len) {
  rs_buf_reset(&c->scratch);
  if (!s)
    len = 0;
  if (rs_buf_append(&c->scratch, s ? s : "", len))
    return RS_ENOMEM;
  return avro_value_set_string_len(v, c->scratch.data, (size_t)len + 1)
             ? RS_EENCODE
             : 0;
}

/* Sets field f, or its null branch when !present. */
static int set_field(rs_codec_t *c, int f, int present, avro_value_t *out) {
  const field_layout_t *l = &c->layout[f];
  avro_value_t v;
  if (avro_value_get_by_index(&c->enc_value, (size_t)l->index, &v, NULL))
    return RS_EENCODE;
  if (l->nullable) {
    avro_value_t branch;
    if (avro_value_set_branch(&v, present ? l->value_branch : l->null_branch,
                              &branch))
      return RS_EENCODE;
    if (!present)
      return avro_value_set_null(&branch) ? RS_EENCODE : 0;
    v = branch;
  } else if (!present) {
    return RS_EINVAL;
  }
  *out = v;
  return 0;
}

static int encode_avro(rs_codec_t *c, const rs_interaction_t *in,
                       const char *fmt, rs_buf_t *out, char *errstr,
                       size_t errstr_size) {
  if (c->direct_reader && c->avro_fast && in->event_type >= 0 &&
      in->event_type < RS_EVENT__COUNT)
    return encode_direct(in, fmt, out, errstr, errstr_size);
  size_t known = 0;
  for (int f = 0; f < F__COUNT; f++)
    known += c->layout[f].index >= 0;
  if (known != c->reader_fields)
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "%s: schema %s has fields recstream does not know; it "
                     "can only decode, not encode",
                     fmt, c->reader_name);
  const char *ev = rs_event_type_name(in->event_type);
  if (!ev || c->event_symbol[in->event_type] < 0)
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "%s: event type %d has no symbol in schema %s", fmt,
                     (int)in->event_type, c->reader_name);

  avro_value_t *rec = &c->enc_value, v;
  const char *strs[F__COUNT] = {0};
  uint32_t lens[F__COUNT] = {0};
  strs[F_USER] = in->user, lens[F_USER] = in->user_len;
  strs[F_ITEM] = in->item, lens[F_ITEM] = in->item_len;
  strs[F_DEVICE] = in->device, lens[F_DEVICE] = in->device_len;
  strs[F_PAGE] = in->page, lens[F_PAGE] = in->page_len;
  int rc = avro_value_reset(rec) ? RS_EENCODE : 0;
  for (int f = 0; f < F__COUNT && !rc; f++) {
    if (c->layout[f].index < 0)
      continue; /* the schema drops it */
    int present = 1;
    if (f == F_VALUE)
      present = in->has_value;
    else if (f == F_DEVICE || f == F_PAGE)
      present = strs[f] != NULL;
    rc = set_field(c, f, present, &v);
    if (rc == RS_EINVAL)
      return rs_seterr(errstr, errstr_size, RS_EENCODE,
                       "%s: field '%s' is absent but schema %s requires it",
                       fmt, field_names[f], c->reader_name);
    if (rc || !present)
      continue;
    switch (f) {
    case F_EVENT:
      rc = avro_value_set_enum(&v, c->event_symbol[in->event_type]);
      break;
    case F_TS:
      rc = avro_value_set_long(&v, in->timestamp_ms);
      break;
    case F_VALUE:
      rc = avro_value_set_double(&v, in->value);
      break;
    default:
      rc = set_string(c, &v, strs[f], lens[f]);
      break;
    }
  }
  size_t size = 0;
  if (!rc && avro_value_sizeof(rec, &size))
    rc = RS_EENCODE;
  if (!rc && rs_buf_reserve(out, size + 1))
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "%s: out of memory", fmt);
  if (!rc) {
    avro_writer_memory_set_dest(c->io_writer, out->data + out->len,
                                (int64_t)size);
    if (avro_value_write(c->io_writer, rec) ||
        avro_writer_tell(c->io_writer) != (int64_t)size)
      rc = RS_EENCODE;
  }
  if (rc)
    return rs_seterr(errstr, errstr_size, rc == RS_ENOMEM ? rc : RS_EENCODE,
                     "%s: %s", fmt,
                     rc == RS_ENOMEM ? "out of memory" : avro_strerror());
  out->len += size;
  out->data[out->len] = '\0';
  return 0;
}

static char *json_put_str(char *o, const char *s, uint32_t len) {
  static const char hex[] = "0123456789abcdef";
  *o++ = '"';
  for (uint32_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 0x20 && ch != '"' && ch != '\\') {
      *o++ = (char)ch;
      continue;
    }
    *o++ = '\\';
    switch (ch) {
    case '"':
    case '\\':
      *o++ = (char)ch;
      break;
    case '\n':
      *o++ = 'n';
      break;
    case '\r':
      *o++ = 'r';
      break;
    case '\t':
      *o++ = 't';
      break;
    case '\b':
      *o++ = 'b';
      break;
    case '\f':
      *o++ = 'f';
      break;
    default:
      *o++ = 'u';
      *o++ = '0';
      *o++ = '0';
      *o++ = hex[ch >> 4];
      *o++ = hex[ch & 15];
      break;
    }
  }
  *o++ = '"';
  return o;
}

/* The shortest %g form that reads back as the same double. */
static int fmt_double(char *buf, size_t size, double v) {
  /* "-0" would read back as the integer 0 (jansson): keep the sign. */
  if (v == 0 && signbit(v))
    return snprintf(buf, size, "-0.0");
  if (v == floor(v) && fabs(v) < 9007199254740992.0 && !signbit(v))
    return snprintf(buf, size, "%" PRId64, (int64_t)v);
  for (int prec = 15; prec <= 17; prec++) {
    int n = snprintf(buf, size, "%.*g", prec, v);
    if (prec == 17 || strtod(buf, NULL) == v)
      return n;
  }
  return 0;
}

static int encode_json(const rs_interaction_t *in, rs_buf_t *out, char *errstr,
                       size_t errstr_size) {
  const char *ev = rs_event_type_name(in->event_type);
  if (!ev)
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "json: event type %d is unknown", (int)in->event_type);
  if (in->has_value && !isfinite(in->value))
    return rs_seterr(errstr, errstr_size, RS_EENCODE,
                     "json: field 'value' is not finite; JSON cannot carry it");
  const char *strs[4] = {in->user, in->item, in->device, in->page};
  const uint32_t lens[4] = {in->user_len, in->item_len, in->device_len,
                            in->page_len};
  static const int fields[4] = {F_USER, F_ITEM, F_DEVICE, F_PAGE};
  size_t need = 160;
  for (int i = 0; i < 4; i++) {
    if (strs[i] && !utf8_valid((const unsigned char *)strs[i], lens[i]))
      return rs_seterr(errstr, errstr_size, RS_EENCODE,
                       "json: field '%s' is not valid UTF-8",
                       field_names[fields[i]]);
    need += (size_t)lens[i] * 6 + 16;
  }
  if (rs_buf_reserve(out, need))
    return rs_seterr(errstr, errstr_size, RS_ENOMEM, "json: out of memory");
  char *start = out->data + out->len, *o = start;
#define PUT_LIT(lit)                                                           \
  do {                                                                         \
    memcpy(o, lit, sizeof(lit) - 1);                                           \
    o += sizeof(lit) - 1;                                                      \
  } while (0)
  PUT_LIT("{\"user_id\":");
  o = json_put_str(o, in->user ? in->user : "", in->user ? in->user_len : 0);
  PUT_LIT(",\"item_id\":");
  o = json_put_str(o, in->item ? in->item : "", in->item ? in->item_len : 0);
  PUT_LIT(",\"event_type\":");
  o = json_put_str(o, ev, (uint32_t)strlen(ev));
  if (in->has_value) {
    PUT_LIT(",\"value\":");
    o += fmt_double(o, 32, in->value);
  }
  PUT_LIT(",\"timestamp\":");
  o += snprintf(o, 24, "%" PRId64, in->timestamp_ms);
  if (in->device) {
    PUT_LIT(",\"device\":");
    o = json_put_str(o, in->device, in->device_len);
  }
  if (in->page) {
    PUT_LIT(",\"page\":");
    o = json_put_str(o, in->page, in->page_len);
  }
  PUT_LIT("}");
#undef PUT_LIT
  out->len += (size_t)(o - start);
  out->data[out->len] = '\0';
  return 0;
}

int rs_codec_encode(rs_codec_t *c, rs_format_t fmt, const rs_interaction_t *in,
                    int32_t schema_id, rs_buf_t *out, char *errstr,
                    size_t errstr_size) {
  if (!c || !in || !out)
    return rs_seterr(errstr, errstr_size, RS_EINVAL,
                     "rs_codec_encode: invalid argument");
  switch (fmt) {
  case RS_FORMAT_AVRO:
    return encode_avro(c, in, "avro", out, errstr, errstr_size);
  case RS_FORMAT_CONFLUENT: {
    plan_t *p = find_id(c, schema_id);
    if (p && p->resolver)
      return rs_seterr(errstr, errstr_size, RS_EENCODE,
                       "confluent: schema id %" PRId32
                       " names a writer schema other than the reader schema "
                       "%s; records are only encoded in the reader schema",
                       schema_id, c->reader_name);
    size_t old = out->len;
    uint8_t hdr[5] = {0, (uint8_t)((uint32_t)schema_id >> 24),
                      (uint8_t)((uint32_t)schema_id >> 16),
                      (uint8_t)((uint32_t)schema_id >> 8), (uint8_t)schema_id};
    if (rs_buf_append(out, hdr, sizeof(hdr)))
      return rs_seterr(errstr, errstr_size, RS_ENOMEM,
                       "confluent: out of memory");
    int rc = encode_avro(c, in, "confluent", out, errstr, errstr_size);
    if (rc) {
      out->len = old;
      if (out->data)
        out->data[old] = '\0';
    }
    return rc;
  }
  case RS_FORMAT_JSON:
    return encode_json(in, out, errstr, errstr_size);
  default:
    return rs_seterr(errstr, errstr_size, RS_EINVAL, "unknown format %d",
                     (int)fmt);
  }
}

/* ---- shared with codec_session.c (the session record encoders) ---- */

char *rs__codec_json_str(char *o, const char *s, uint32_t len) {
  return json_put_str(o, s ? s : "", s ? len : 0);
}

int rs__codec_json_double(char *buf, size_t size, double v) {
  return fmt_double(buf, size, v);
}

int rs__codec_utf8_valid(const char *s, size_t n) {
  return !s || utf8_valid((const unsigned char *)s, n);
}

uint8_t *rs__codec_avro_long(uint8_t *o, int64_t v) {
  return e_long(o, v);
}

uint8_t *rs__codec_avro_string(uint8_t *o, const char *s, uint32_t len) {
  return e_string(o, s, len);
}
