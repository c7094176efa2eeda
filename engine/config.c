/* The configuration loader. libyaml builds a document; we copy it into our
 * own tree (rs_ynode_t) that keeps line/column of every key and value, expand
 * ${VAR} and ${VAR:-default} in scalars, apply --set overrides, then read the
 * sections into rs_config_t. Reading marks each key it consumes so that
 * leftovers can be reported as unknown keys with their position. libyaml's
 * marks and errors are translated here and go no further.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "kafka.h"
#include "log.h"
#include "util.h"

/* A YAML document with aliases can expand exponentially; refuse large ones. */
#define RS_CONFIG_MAX_NODES 100000
#define RS_CONFIG_MAX_DEPTH 64

typedef struct cctx {
  rs_config_t *cfg;
  char *errstr;
  size_t errstr_size;
  size_t n_nodes;
  /* Where build() is, for messages: "kafka.group_id", "sources 'in'.topic"
   * (a list entry by its name, as the readers call it), "plugins[0]". */
  char path[512];
  size_t path_len;
} cctx_t;

static int cerr(cctx_t *c, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int cerr(cctx_t *c, int line, int col, const char *fmt, ...) {
  if (!c->errstr || !c->errstr_size)
    return RS_ECONFIG;
  int n = rs_config_where(c->cfg, line, col, c->errstr, c->errstr_size);
  if (n < 0 || (size_t)n >= c->errstr_size)
    return RS_ECONFIG;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->errstr + n, c->errstr_size - (size_t)n, fmt, ap);
  va_end(ap);
  return RS_ECONFIG;
}

int rs_config_where(const rs_config_t *cfg, int line, int col, char *buf,
                    size_t size) {
  if (line == 0 && col < 0 && (size_t)-col <= cfg->n_sets)
    return snprintf(buf, size, "%s: --set '%s': ", cfg->file,
                    cfg->sets[-col - 1]);
  if (line == 0) /* a section a --set created */
    return snprintf(buf, size, "%s: --set: ", cfg->file);
  return snprintf(buf, size, "%s:%d:%d: ", cfg->file, line, col);
}

/* ---------------------------------------------------------------- tree */

static void ynode_free(rs_ynode_t *n) {
  if (!n)
    return;
  rs_free(n->scalar);
  for (size_t i = 0; n->type == RS_Y_MAP && i < n->n; i++) {
    rs_free(n->pairs[i].key);
    ynode_free(n->pairs[i].value);
  }
  for (size_t i = 0; n->type == RS_Y_SEQ && i < n->n; i++)
    ynode_free(n->items[i]);
  rs_free(n->pairs);
  rs_free(n->items);
  rs_free(n);
}

/* Expands ${VAR} and ${VAR:-default}; "$${" stands for a literal "${". A
 * reference ends at the first '}', so a default is literal text without
 * '}'; one holding "${" (a nested reference, which would otherwise come out
 * as its text) is refused. A '}' outside a reference is ordinary text. */
static int expand_env(cctx_t *c, const char *in, int line, int col,
                      char **out) {
  rs_buf_t b = {0};
  const char *p = in;
  while (*p) {
    if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
      if (rs_buf_append(&b, "${", 2))
        goto nomem;
      p += 3;
      continue;
    }
    if (p[0] == '$' && p[1] == '{') {
      const char *end = strchr(p + 2, '}');
      if (!end) {
        rs_buf_free(&b);
        return cerr(c, line, col,
                    "unterminated '${' in \"%s\" (expected ${VAR} or "
                    "${VAR:-default})",
                    in);
      }
      const char *name = p + 2;
      const char *dflt = NULL;
      size_t name_len = (size_t)(end - name);
      const char *sep = strstr(name, ":-");
      if (sep && sep < end) {
        name_len = (size_t)(sep - name);
        dflt = sep + 2;
      }
      int ok = name_len > 0;
      for (size_t i = 0; ok && i < name_len; i++)
        ok = isalnum((unsigned char)name[i]) || name[i] == '_';
      if (!ok) {
        rs_buf_free(&b);
        return cerr(c, line, col,
                    "bad variable name in \"%s\" (expected letters, digits "
                    "or '_')",
                    in);
      }
      for (const char *q = dflt; q && q + 1 < end; q++)
        if (q[0] == '$' && q[1] == '{') {
          rs_buf_free(&b);
          return cerr(c, line, col,
                      "'${' inside the default of ${%.*s:-...} in \"%s\": "
                      "defaults do not nest (a default is literal text up "
                      "to the first '}'); write the default out",
                      (int)name_len, name, in);
        }
      char vname[256];
      if (name_len >= sizeof(vname)) {
        rs_buf_free(&b);
        return cerr(c, line, col, "variable name too long in \"%s\"", in);
      }
      memcpy(vname, name, name_len);
      vname[name_len] = '\0';
      const char *v = getenv(vname);
      if (v && *v) {
        if (rs_buf_append(&b, v, strlen(v)))
          goto nomem;
      } else if (dflt) {
        if (rs_buf_append(&b, dflt, (size_t)(end - dflt)))
          goto nomem;
      } else {
        rs_buf_free(&b);
        return cerr(c, line, col,
                    "environment variable %s is %s (set it, or write "
                    "${%s:-default})",
                    vname, v ? "empty" : "not set", vname);
      }
      p = end + 1;
      continue;
    }
    if (rs_buf_append(&b, p, 1))
      goto nomem;
    p++;
  }
  if (!b.data && rs_buf_append(&b, "", 0))
    goto nomem;
  *out = b.data;
  return 0;
nomem:
  rs_buf_free(&b);
  return RS_ENOMEM;
}

/* A value takes its type from its key (docs/CONFIG.md), so a YAML tag
 * (`!!int 5`, `!custom x`) would be ignored: refused instead. A node
 * without one has its kind's default tag; `!!str`, `!!seq`, `!!map` and
 * the non-specific `!` say nothing more and pass. */
static int check_tag(cctx_t *c, const yaml_node_t *yn, int line, int col) {
  static const char core[] = "tag:yaml.org,2002:";
  const char *tag = (const char *)yn->tag;
  const char *dflt = yn->type == YAML_SCALAR_NODE     ? YAML_STR_TAG
                     : yn->type == YAML_SEQUENCE_NODE ? YAML_SEQ_TAG
                                                      : YAML_MAP_TAG;
  if (!tag || !strcmp(tag, dflt) || !strcmp(tag, "!"))
    return 0;
  int core_tag = !strncmp(tag, core, sizeof core - 1);
  return cerr(c, line, col,
              "YAML tag '%s%s' is not supported: a value's type comes from "
              "its key; write the value without a tag",
              core_tag ? "!!" : "", core_tag ? tag + sizeof core - 1 : tag);
}

static int valid_name(const char *s);

/* Appends to c->path; returns the length to give path_pop() after. */
static size_t path_push(cctx_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static size_t path_push(cctx_t *c, const char *fmt, ...) {
  size_t len = c->path_len;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(c->path + len, sizeof c->path - len, fmt, ap);
  va_end(ap);
  if (n > 0)
    c->path_len =
        len + (size_t)n < sizeof c->path ? len + (size_t)n : sizeof c->path - 1;
  return len;
}

static void path_pop(cctx_t *c, size_t len) {
  c->path_len = len;
  c->path[len] = '\0';
}

/* A list entry's name, for the path, when it has a plain one. */
static const char *entry_name(yaml_document_t *doc, const yaml_node_t *yn) {
  if (yn->type != YAML_MAPPING_NODE)
    return NULL;
  for (yaml_node_pair_t *p = yn->data.mapping.pairs.start;
       p < yn->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(doc, p->key);
    yaml_node_t *v = yaml_document_get_node(doc, p->value);
    if (k && v && k->type == YAML_SCALAR_NODE &&
        !strcmp((const char *)k->data.scalar.value, "name") &&
        v->type == YAML_SCALAR_NODE &&
        valid_name((const char *)v->data.scalar.value))
      return (const char *)v->data.scalar.value;
  }
  return NULL;
}

/* Whether YAML's core schema (1.1 and 1.2 alike) reads the node as null: a
 * plain scalar ~, null, Null, NULL or nothing at all. Quoted, these are
 * text. (libyaml's document keeps no trace of a `!!str` tag on a plain
 * scalar, so `!!str ~` counts as null too: quoting is the way.) */
static int yaml_null(const yaml_node_t *yn) {
  if (yn->type != YAML_SCALAR_NODE ||
      yn->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    return 0;
  const char *v = (const char *)yn->data.scalar.value;
  return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
         !strcmp(v, "NULL");
}

/* A null where a value is expected would otherwise be read as the text
 * "~" or "null" (a topic "~", a state directory "./null"). */
static int refuse_null(cctx_t *c, const yaml_node_t *yn, int item) {
  int line = (int)yn->start_mark.line + 1, col = (int)yn->start_mark.column + 1;
  const char *v = (const char *)yn->data.scalar.value;
  const char *fix =
      item ? "remove the item" : "omit the key to get its default";
  if (!*v)
    return cerr(c, line, col,
                "%s: no value (YAML reads an empty value as null); write "
                "one, or %s",
                c->path, fix);
  return cerr(c, line, col,
              "%s: '%s' is YAML's null, not a value; %s, or quote it "
              "(\"%s\") for the text",
              c->path, v, fix, v);
}

static int build(cctx_t *c, yaml_document_t *doc, yaml_node_t *yn, int depth,
                 rs_ynode_t **out) {
  int line = (int)yn->start_mark.line + 1, col = (int)yn->start_mark.column + 1;
  if (depth > RS_CONFIG_MAX_DEPTH)
    return cerr(c, line, col, "nesting deeper than %d levels",
                RS_CONFIG_MAX_DEPTH);
  if (++c->n_nodes > RS_CONFIG_MAX_NODES)
    return cerr(c, line, col,
                "document has more than %d nodes (aliases expanding?)",
                RS_CONFIG_MAX_NODES);
  rs_ynode_t *n = rs_calloc(1, sizeof(*n));
  if (!n)
    return RS_ENOMEM;
  n->line = line;
  n->col = col;
  int rc = 0;
  if ((rc = check_tag(c, yn, line, col))) {
    rs_free(n);
    return rc;
  }
  switch (yn->type) {
  case YAML_SCALAR_NODE: {
    n->type = RS_Y_SCALAR;
    char *raw =
        rs_strndup((const char *)yn->data.scalar.value, yn->data.scalar.length);
    if (!raw) {
      rc = RS_ENOMEM;
      break;
    }
    if (strlen(raw) != yn->data.scalar.length)
      rc = cerr(c, line, col, "NUL byte inside a scalar");
    else
      rc = expand_env(c, raw, line, col, &n->scalar);
    rs_free(raw);
    break;
  }
  case YAML_SEQUENCE_NODE: {
    n->type = RS_Y_SEQ;
    size_t cnt =
        (size_t)(yn->data.sequence.items.top - yn->data.sequence.items.start);
    n->items = rs_calloc(cnt ? cnt : 1, sizeof(*n->items));
    if (!n->items) {
      rc = RS_ENOMEM;
      break;
    }
    for (size_t i = 0; i < cnt && !rc; i++) {
      yaml_node_t *child =
          yaml_document_get_node(doc, yn->data.sequence.items.start[i]);
      if (!child) {
        rc = cerr(c, line, col, "broken sequence");
        break;
      }
      const char *name = entry_name(doc, child);
      size_t mark =
          name ? path_push(c, " '%s'", name) : path_push(c, "[%zu]", i);
      rc = yaml_null(child)
               ? refuse_null(c, child, 1)
               : build(c, doc, child, depth + 1, &n->items[n->n++]);
      path_pop(c, mark);
    }
    break;
  }
  case YAML_MAPPING_NODE: {
    n->type = RS_Y_MAP;
    size_t cnt =
        (size_t)(yn->data.mapping.pairs.top - yn->data.mapping.pairs.start);
    n->pairs = rs_calloc(cnt ? cnt : 1, sizeof(*n->pairs));
    if (!n->pairs) {
      rc = RS_ENOMEM;
      break;
    }
    for (size_t i = 0; i < cnt && !rc; i++) {
      yaml_node_pair_t *p = &yn->data.mapping.pairs.start[i];
      yaml_node_t *k = yaml_document_get_node(doc, p->key);
      yaml_node_t *v = yaml_document_get_node(doc, p->value);
      if (!k || !v) {
        rc = cerr(c, line, col, "broken mapping");
        break;
      }
      int kl = (int)k->start_mark.line + 1, kc = (int)k->start_mark.column + 1;
      if (k->type != YAML_SCALAR_NODE) {
        rc = cerr(c, kl, kc, "mapping keys must be plain strings");
        break;
      }
      const char *key = (const char *)k->data.scalar.value;
      if (strlen(key) != k->data.scalar.length) {
        rc = cerr(c, kl, kc, "NUL byte inside a key");
        break;
      }
      if (!strcmp(key, "<<") &&
          k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        rc = cerr(c, kl, kc,
                  "merge keys ('<<') are not supported: write the keys out "
                  "in each mapping (anchors and aliases of whole values "
                  "work)");
        break;
      }
      for (size_t j = 0; j < n->n; j++)
        if (!strcmp(n->pairs[j].key, key)) {
          rc = cerr(c, kl, kc, "duplicate key '%s' (first at line %d)", key,
                    n->pairs[j].line);
          break;
        }
      if (rc)
        break;
      rs_ypair_t *pair = &n->pairs[n->n];
      pair->key = rs_strdup(key);
      pair->line = kl;
      pair->col = kc;
      if (!pair->key) {
        rc = RS_ENOMEM;
        break;
      }
      n->n++;
      size_t mark = path_push(c, "%s%s", c->path_len ? "." : "", key);
      rc = yaml_null(v) ? refuse_null(c, v, 0)
                        : build(c, doc, v, depth + 1, &pair->value);
      path_pop(c, mark);
    }
    break;
  }
  default:
    rc = cerr(c, line, col, "empty YAML node");
  }
  if (rc) {
    ynode_free(n);
    return rc;
  }
  *out = n;
  return 0;
}

rs_ypair_t *rs_ymap_find(const rs_ynode_t *map, const char *key) {
  if (!map || map->type != RS_Y_MAP)
    return NULL;
  for (size_t i = 0; i < map->n; i++)
    if (!strcmp(map->pairs[i].key, key))
      return &map->pairs[i];
  return NULL;
}

static rs_ynode_t *new_scalar(const char *v, int from_set) {
  rs_ynode_t *n = rs_calloc(1, sizeof(*n));
  if (!n)
    return NULL;
  n->type = RS_Y_SCALAR;
  n->scalar = rs_strdup(v);
  n->from_set = from_set;
  if (!n->scalar) {
    rs_free(n);
    return NULL;
  }
  return n;
}

static rs_ynode_t *new_map(void) {
  rs_ynode_t *n = rs_calloc(1, sizeof(*n));
  if (n)
    n->type = RS_Y_MAP;
  return n;
}

static int map_put(rs_ynode_t *map, const char *key, rs_ynode_t *value,
                   rs_ypair_t **out) {
  rs_ypair_t *np = rs_realloc(map->pairs, (map->n + 1) * sizeof(*np));
  if (!np)
    return RS_ENOMEM;
  map->pairs = np;
  rs_ypair_t *p = &np[map->n];
  memset(p, 0, sizeof(*p));
  p->key = rs_strdup(key);
  if (!p->key)
    return RS_ENOMEM;
  p->value = value;
  map->n++;
  if (out)
    *out = p;
  return 0;
}

/* --set a.b.c=value. Path segments walk mappings; inside the named lists
 * (sources, operators, sinks) a segment selects the entry with that name;
 * below kafka.properties the rest of the path is one librdkafka key. */
static int apply_set(cctx_t *c, const char *set, size_t k) {
  const char *eq = strchr(set, '=');
  /* No empty key: not before the first dot, after the last, or between. */
  const char *dd = strstr(set, "..");
  if (!eq || eq == set || set[0] == '.' || eq[-1] == '.' || (dd && dd < eq))
    return rs_seterr(c->errstr, c->errstr_size, RS_ECONFIG,
                     "--set '%s': expected section.key=value", set);
  char *path = rs_strndup(set, (size_t)(eq - set));
  if (!path)
    return RS_ENOMEM;
  int rc = 0;
  rs_ynode_t *cur = c->cfg->root;
  char *save = NULL;
  char *seg = strtok_r(path, ".", &save);
  int depth = 0;
  const char *prev = "";
  while (seg) {
    char *next = strtok_r(NULL, ".", &save);
    if (depth == 2 && !strcmp(prev, "properties") && next) {
      /* kafka.properties.<key.with.dots> */
      next[-1] = '.';
      for (char *q = next; (q = strtok_r(NULL, ".", &save)) != NULL;)
        q[-1] = '.';
      next = NULL;
    }
    if (cur->type == RS_Y_SEQ) {
      rs_ynode_t *found = NULL;
      for (size_t i = 0; i < cur->n && !found; i++) {
        rs_ypair_t *np = rs_ymap_find(cur->items[i], "name");
        if (np && np->value->type == RS_Y_SCALAR &&
            !strcmp(np->value->scalar, seg))
          found = cur->items[i];
      }
      if (!found) {
        rc = rs_seterr(c->errstr, c->errstr_size, RS_ECONFIG,
                       "--set '%s': no entry named '%s' in '%s'", set, seg,
                       prev);
        break;
      }
      if (!next) {
        rc = rs_seterr(c->errstr, c->errstr_size, RS_ECONFIG,
                       "--set '%s': name a key of '%s'", set, seg);
        break;
      }
      cur = found;
    } else if (cur->type == RS_Y_MAP) {
      rs_ypair_t *p = rs_ymap_find(cur, seg);
      if (!next) {
        rs_ynode_t *v = new_scalar(eq + 1, 1);
        if (!v) {
          rc = RS_ENOMEM;
          break;
        }
        v->line = 0;
        v->col = -(int)(k + 1); /* see rs_config_t.sets */
        if (p) {
          if (p->value->type != RS_Y_SCALAR) {
            ynode_free(v);
            rc = rs_seterr(c->errstr, c->errstr_size, RS_ECONFIG,
                           "--set '%s': '%s' is a section, not a value", set,
                           seg);
            break;
          }
          ynode_free(p->value);
          p->value = v;
        } else if ((rc = map_put(cur, seg, v, NULL))) {
          ynode_free(v);
        }
        break;
      }
      if (!p) {
        rs_ynode_t *m = new_map();
        if (!m || (rc = map_put(cur, seg, m, &p))) {
          ynode_free(m);
          rc = RS_ENOMEM;
          break;
        }
      }
      cur = p->value;
      if (cur->type == RS_Y_SCALAR) {
        rc = rs_seterr(c->errstr, c->errstr_size, RS_ECONFIG,
                       "--set '%s': '%s' is a value, not a section", set, seg);
        break;
      }
    } else {
      rc = rs_seterr(c->errstr, c->errstr_size, RS_ECONFIG,
                     "--set '%s': '%s' is a value, not a section", set, prev);
      break;
    }
    prev = seg;
    seg = next;
    depth++;
  }
  rs_free(path);
  return rc;
}

/* ------------------------------------------------------------- readers */

static const char *describe(rs_ytype_t t) {
  return t == RS_Y_MAP ? "a mapping" : t == RS_Y_SEQ ? "a list" : "a value";
}

/* Finds key in map, marks it used, checks its type. *out stays NULL when
 * absent and not required. */
static int get(cctx_t *c, const rs_ynode_t *map, const char *section,
               const char *key, rs_ytype_t type, int required,
               rs_ynode_t **out) {
  *out = NULL;
  rs_ypair_t *p = rs_ymap_find(map, key);
  if (!p) {
    if (required)
      return cerr(c, map->line, map->col, "%s: missing required key '%s'",
                  section, key);
    return 0;
  }
  p->used = 1;
  if (p->value->type != type)
    return cerr(c, p->value->line, p->value->col, "%s.%s: expected %s, got %s",
                section, key, describe(type), describe(p->value->type));
  *out = p->value;
  return 0;
}

static int get_str(cctx_t *c, const rs_ynode_t *map, const char *section,
                   const char *key, const char *dflt, int required,
                   char **out) {
  rs_ynode_t *n;
  int rc = get(c, map, section, key, RS_Y_SCALAR, required, &n);
  if (rc)
    return rc;
  const char *v = n ? n->scalar : dflt;
  if (n && !*v)
    return cerr(c, n->line, n->col, "%s.%s: must not be empty", section, key);
  *out = v ? rs_strdup(v) : NULL;
  return v && !*out ? RS_ENOMEM : 0;
}

typedef enum { T_INT, T_DURATION, T_SIZE } ntype_t;

static int get_num(cctx_t *c, const rs_ynode_t *map, const char *section,
                   const char *key, ntype_t t, int64_t dflt, int64_t min,
                   int64_t max, int64_t *out) {
  rs_ynode_t *n;
  int rc = get(c, map, section, key, RS_Y_SCALAR, 0, &n);
  if (rc)
    return rc;
  if (!n) {
    *out = dflt;
    return 0;
  }
  static const char *expect[] = {"an integer",
                                 "a duration like 250ms, 30s, 5m or 2h",
                                 "a size like 512, 64KiB or 1MiB"};
  int64_t v;
  int bad = t == T_INT        ? rs_parse_int64(n->scalar, &v)
            : t == T_DURATION ? rs_parse_duration_ms(n->scalar, &v)
                              : rs_parse_size(n->scalar, &v);
  if (bad)
    return cerr(c, n->line, n->col, "%s.%s: expected %s, got '%s'", section,
                key, expect[t], n->scalar);
  if (v < min || v > max) {
    char a[32], b[32];
    if (t == T_DURATION) {
      rs_format_duration(min, a, sizeof a);
      rs_format_duration(max, b, sizeof b);
    } else {
      snprintf(a, sizeof a, "%lld", (long long)min);
      snprintf(b, sizeof b, "%lld", (long long)max);
    }
    return cerr(c, n->line, n->col, "%s.%s: %s is out of range [%s, %s]",
                section, key, n->scalar, a, b);
  }
  *out = v;
  return 0;
}

static int get_enum(cctx_t *c, const rs_ynode_t *map, const char *section,
                    const char *key, const char *const *values, int dflt,
                    int *out) {
  rs_ynode_t *n;
  int rc = get(c, map, section, key, RS_Y_SCALAR, 0, &n);
  if (rc)
    return rc;
  if (!n) {
    *out = dflt;
    return 0;
  }
  char list[256] = "";
  for (int i = 0; values[i]; i++) {
    if (!strcmp(values[i], n->scalar)) {
      *out = i;
      return 0;
    }
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
             i ? ", " : "", values[i]);
  }
  return cerr(c, n->line, n->col, "%s.%s: expected one of %s, got '%s'",
              section, key, list, n->scalar);
}

/* A boolean: the words operator options take too (rs_parse_bool), so a
 * config reads alike in every section. */
static int get_bool(cctx_t *c, const rs_ynode_t *map, const char *section,
                    const char *key, int dflt, int *out) {
  rs_ynode_t *n;
  int rc = get(c, map, section, key, RS_Y_SCALAR, 0, &n);
  if (rc)
    return rc;
  if (!n) {
    *out = dflt;
    return 0;
  }
  if (!rs_parse_bool(n->scalar, out))
    return 0;
  return cerr(c, n->line, n->col,
              "%s.%s: expected true or false (also yes/no, on/off, 1/0), "
              "got '%s'",
              section, key, n->scalar);
}

/* Reports the first key of map no reader consumed. */
static int check_unknown(cctx_t *c, const rs_ynode_t *map, const char *section,
                         const char *known) {
  for (size_t i = 0; i < map->n; i++)
    if (!map->pairs[i].used)
      return cerr(c, map->pairs[i].line, map->pairs[i].col,
                  "%s: unknown key '%s' (expected one of: %s)", section,
                  map->pairs[i].key, known);
  return 0;
}

static int valid_name(const char *s) {
  if (!*s)
    return 0;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
      return 0;
  return 1;
}

int rs_topic_name_ok(const char *name) {
  size_t n = strlen(name);
  return n >= 1 && n <= 249 && strcmp(name, ".") && strcmp(name, "..") &&
         strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      "0123456789._-") == n;
}

/* A topic the config names (key of item) must be one Kafka accepts: a
 * broker would refuse it only when the pipeline first writes or reads it. */
static int check_topic(cctx_t *c, const rs_ynode_t *item, const char *label,
                       const char *key, const char *topic) {
  if (rs_topic_name_ok(topic))
    return 0;
  rs_ypair_t *p = rs_ymap_find(item, key);
  rs_ypair_t *named = p ? NULL : rs_ymap_find(item, "name");
  const rs_ynode_t *at = p ? p->value : named ? named->value : item;
  return cerr(c, at->line, at->col,
              "%s.%s: '%.300s' is not a valid Kafka topic name (1 to 249 "
              "letters, digits, '.', '_' or '-'; not '.' or '..')%s",
              label, key, topic,
              named ? " (a source's topic defaults to its name)" : "");
}

static int name_entry(cctx_t *c, const rs_ynode_t *item, const char *section,
                      size_t idx, char **name, char *label, size_t label_size) {
  snprintf(label, label_size, "%s[%zu]", section, idx);
  if (item->type != RS_Y_MAP)
    return cerr(c, item->line, item->col, "%s: expected a mapping, got %s",
                label, describe(item->type));
  int rc = get_str(c, item, label, "name", NULL, 1, name);
  if (rc)
    return rc;
  rs_ypair_t *p = rs_ymap_find(item, "name");
  if (!valid_name(*name))
    return cerr(c, p->value->line, p->value->col,
                "%s.name: '%s' may only contain letters, digits, '_' and '-'",
                label, *name);
  snprintf(label, label_size, "%s '%s'", section, *name);
  return 0;
}

/* ------------------------------------------------------------ sections */

/* An optional top-level section: *sec is the mapping or NULL when absent;
 * *m is what readers should read (an empty mapping when absent). */
static int open_section(cctx_t *c, const rs_ynode_t *root, const char *name,
                        rs_ynode_t **sec, const rs_ynode_t **m) {
  static const rs_ynode_t empty = {.type = RS_Y_MAP, .line = 1, .col = 1};
  int rc = get(c, root, "config", name, RS_Y_MAP, 0, sec);
  *m = *sec ? *sec : &empty;
  return rc;
}

static int read_kafka(cctx_t *c, const rs_ynode_t *root) {
  rs_config_t *cfg = c->cfg;
  rs_ynode_t *k;
  const rs_ynode_t *m;
  int rc = open_section(c, root, "kafka", &k, &m);
  if (rc)
    return rc;
  if ((rc = get_str(c, m, "kafka", "brokers", "embedded", 0,
                    &cfg->kafka.brokers)) ||
      (rc = get_str(c, m, "kafka", "group_id", cfg->app, 0,
                    &cfg->kafka.group_id)))
    return rc;
  static const char *const resets[] = {"earliest", "latest", NULL};
  int reset;
  if ((rc = get_enum(c, m, "kafka", "auto_offset_reset", resets, 0, &reset)))
    return rc;
  cfg->kafka.auto_offset_reset = rs_strdup(resets[reset]);
  rs_ynode_t *props;
  if ((rc = get(c, m, "kafka", "properties", RS_Y_MAP, 0, &props)))
    return rc;
  if (props && props->n) {
    cfg->kafka.prop_keys = rs_calloc(props->n, sizeof(char *));
    cfg->kafka.prop_values = rs_calloc(props->n, sizeof(char *));
    if (!cfg->kafka.prop_keys || !cfg->kafka.prop_values)
      return RS_ENOMEM;
    for (size_t i = 0; i < props->n; i++) {
      rs_ypair_t *p = &props->pairs[i];
      p->used = 1;
      if (p->value->type != RS_Y_SCALAR)
        return cerr(c, p->value->line, p->value->col,
                    "kafka.properties.%s: expected a value, got %s", p->key,
                    describe(p->value->type));
      char why[512];
      if (rs_kafka_check_property(p->key, p->value->scalar, why, sizeof why))
        return cerr(c, p->value->line, p->value->col, "kafka.properties.%s: %s",
                    p->key, why);
      cfg->kafka.prop_keys[i] = rs_strdup(p->key);
      cfg->kafka.prop_values[i] = rs_strdup(p->value->scalar);
      cfg->kafka.n_props++;
    }
  }
  rs_ynode_t *emb;
  if ((rc = get(c, m, "kafka", "embedded", RS_Y_MAP, 0, &emb)))
    return rc;
  static const rs_ynode_t no_embedded = {.type = RS_Y_MAP, .line = 1, .col = 1};
  const rs_ynode_t *em = emb ? emb : &no_embedded;
  int64_t parts, brokers;
  if ((rc = get_num(c, em, "kafka.embedded", "partitions", T_INT, 4, 1, 1024,
                    &parts)) ||
      (rc = get_num(c, em, "kafka.embedded", "brokers", T_INT, 1, 1, 16,
                    &brokers)))
    return rc;
  cfg->kafka.embedded_partitions = (int)parts;
  cfg->kafka.embedded_brokers = (int)brokers;
  if (emb &&
      (rc = check_unknown(c, emb, "kafka.embedded", "partitions, brokers")))
    return rc;
  if (k && (rc = check_unknown(c, k, "kafka",
                               "brokers, group_id, auto_offset_reset, "
                               "properties, embedded")))
    return rc;
  return 0;
}

static int read_state(cctx_t *c, const rs_ynode_t *root) {
  rs_config_t *cfg = c->cfg;
  rs_ynode_t *s;
  const rs_ynode_t *m;
  int rc = open_section(c, root, "state", &s, &m);
  if (rc)
    return rc;
  char dflt[512];
  snprintf(dflt, sizeof dflt, ".recstream/%s", cfg->app);
  static const char *const guarantees[] = {"at_least_once", "exactly_once",
                                           "transactional", NULL};
  /* In rs_compression_t order (state/rocks.h). */
  static const char *const compressions[] = {"default", "none",   "lz4",
                                             "zstd",    "snappy", NULL};
  int g, comp, sync;
  if ((rc = get_str(c, m, "state", "dir", dflt, 0, &cfg->state.dir)) ||
      (rc = get_num(c, m, "state", "commit_interval", T_DURATION, 1000, 10,
                    3600 * 1000, &cfg->state.commit_interval_ms)) ||
      (rc = get_enum(c, m, "state", "guarantee", guarantees, 0, &g)) ||
      (rc = get_num(c, m, "state", "cache", T_SIZE, (int64_t)128 << 20,
                    (int64_t)1 << 20, (int64_t)256 << 30,
                    &cfg->state.cache_bytes)) ||
      (rc = get_num(c, m, "state", "block_cache", T_SIZE, (int64_t)64 << 20,
                    (int64_t)1 << 20, (int64_t)256 << 30,
                    &cfg->state.block_cache_bytes)) ||
      (rc = get_num(c, m, "state", "write_buffer", T_SIZE, (int64_t)16 << 20,
                    (int64_t)1 << 20, (int64_t)4 << 30,
                    &cfg->state.write_buffer_bytes)) ||
      (rc = get_enum(c, m, "state", "compression", compressions, 0, &comp)) ||
      (rc = get_bool(c, m, "state", "sync", 1, &sync)))
    return rc;
  cfg->state.guarantee = (rs_guarantee_t)g;
  cfg->state.compression = comp;
  cfg->state.sync = sync;
  if (g == RS_GUARANTEE_TRANSACTIONAL) {
    rs_ypair_t *p = rs_ymap_find(m, "guarantee");
    return cerr(c, p->value->line, p->value->col,
                "state.guarantee: 'transactional' is not implemented; use "
                "exactly_once, which holds on any broker (docs/CONFIG.md)");
  }
  if (s && (rc = check_unknown(c, s, "state",
                               "dir, commit_interval, guarantee, cache, "
                               "block_cache, write_buffer, compression, "
                               "sync")))
    return rc;
  return 0;
}

static int read_processing(cctx_t *c, const rs_ynode_t *root) {
  rs_config_t *cfg = c->cfg;
  rs_ynode_t *s;
  const rs_ynode_t *m;
  int rc = open_section(c, root, "processing", &s, &m);
  if (rc)
    return rc;
  static const char *const orders[] = {"arrival", "deterministic", NULL};
  int o;
  if ((rc = get_enum(c, m, "processing", "order", orders, 0, &o)) ||
      (rc = get_num(c, m, "processing", "max_idle", T_DURATION, 100, 0,
                    60 * 1000, &cfg->processing.max_idle_ms)) ||
      (rc = get_num(c, m, "processing", "batch_size", T_INT, 1000, 1, 100000,
                    &cfg->processing.batch_size)) ||
      (rc =
           get_num(c, m, "processing", "high_water", T_SIZE, 64 << 20, 64 << 10,
                   (int64_t)16 << 30, &cfg->processing.high_water_bytes)) ||
      (rc = get_num(c, m, "processing", "low_water", T_SIZE,
                    cfg->processing.high_water_bytes / 2, 0, (int64_t)16 << 30,
                    &cfg->processing.low_water_bytes)) ||
      (rc = get_num(c, m, "processing", "max_inflight_records", T_INT, 200000,
                    1000, 10000000, &cfg->processing.max_inflight_records)))
    return rc;
  cfg->processing.order = (rs_order_t)o;
  if (cfg->processing.low_water_bytes >= cfg->processing.high_water_bytes) {
    rs_ypair_t *p = rs_ymap_find(m, "low_water");
    return cerr(c, p ? p->value->line : m->line, p ? p->value->col : m->col,
                "processing.low_water: must be below processing.high_water");
  }
  if (s && (rc = check_unknown(c, s, "processing",
                               "order, max_idle, batch_size, high_water, "
                               "low_water, max_inflight_records")))
    return rc;
  return 0;
}

/* http: the engine's own HTTP endpoint (metrics, health, graph). Off
 * unless http.port is set. */
static int read_http(cctx_t *c, const rs_ynode_t *root) {
  rs_config_t *cfg = c->cfg;
  rs_ynode_t *s;
  const rs_ynode_t *m;
  int rc = open_section(c, root, "http", &s, &m);
  if (rc)
    return rc;
  int64_t port;
  if ((rc = get_num(c, m, "http", "port", T_INT, -1, 0, 65535, &port)) ||
      (rc = get_str(c, m, "http", "bind", "127.0.0.1", 0, &cfg->http.bind)))
    return rc;
  cfg->http.port = (int)port;
  unsigned char addr[16];
  if (inet_pton(AF_INET, cfg->http.bind, addr) != 1 &&
      inet_pton(AF_INET6, cfg->http.bind, addr) != 1) {
    rs_ypair_t *p = rs_ymap_find(m, "bind");
    return cerr(c, p->value->line, p->value->col,
                "http.bind: expected an IPv4 or IPv6 address like 127.0.0.1 "
                "or ::1, got '%s'",
                cfg->http.bind);
  }
  if (s && (rc = check_unknown(c, s, "http", "port, bind")))
    return rc;
  return 0;
}

/* log: the log lines' levels and format; --log-level and --log-format on
 * the command line win (engine/main.c applies these otherwise). */
static int read_log(cctx_t *c, const rs_ynode_t *root) {
  rs_config_t *cfg = c->cfg;
  rs_ynode_t *s;
  const rs_ynode_t *m;
  int rc = open_section(c, root, "log", &s, &m);
  if (rc || (rc = get_str(c, m, "log", "level", NULL, 0, &cfg->log.level)) ||
      (rc = get_str(c, m, "log", "format", NULL, 0, &cfg->log.format)))
    return rc;
  char err[256];
  if (cfg->log.level && rs_log_check(cfg->log.level, err, sizeof err)) {
    rs_ypair_t *p = rs_ymap_find(m, "level");
    return cerr(c, p->value->line, p->value->col, "log.level: %s", err);
  }
  int json;
  if (cfg->log.format && rs_log_parse_format(cfg->log.format, &json)) {
    rs_ypair_t *p = rs_ymap_find(m, "format");
    return cerr(c, p->value->line, p->value->col,
                "log.format: expected text or json, got '%s'", cfg->log.format);
  }
  if (s && (rc = check_unknown(c, s, "log", "level, format")))
    return rc;
  return 0;
}

/* A top-level list section and the array its entries are read into. */
static int open_list(cctx_t *c, const rs_ynode_t *root, const char *name,
                     int required, size_t elem_size, rs_ynode_t **seq,
                     void **array) {
  int rc = get(c, root, "config", name, RS_Y_SEQ, required, seq);
  if (rc || !*seq)
    return rc;
  *array = rs_calloc((*seq)->n ? (*seq)->n : 1, elem_size);
  return *array ? 0 : RS_ENOMEM;
}

static int read_sources(cctx_t *c, const rs_ynode_t *root) {
  rs_config_t *cfg = c->cfg;
  rs_ynode_t *s;
  void *array = NULL;
  int rc = open_list(c, root, "sources", 1, sizeof(*cfg->sources), &s, &array);
  cfg->sources = array;
  if (rc)
    return rc;
  for (size_t i = 0; i < s->n; i++) {
    rs_source_cfg_t *src = &cfg->sources[cfg->n_sources++];
    char label[160];
    int64_t parts;
    src->node = s->items[i];
    if ((rc = name_entry(c, s->items[i], "sources", i, &src->name, label,
                         sizeof label)) ||
        (rc = get_str(c, s->items[i], label, "topic", src->name, 0,
                      &src->topic)) ||
        (rc = get_num(c, s->items[i], label, "partitions", T_INT, 0, 1, 1024,
                      &parts)) ||
        (rc = get_bool(c, s->items[i], label, "loopback", 0, &src->loopback)) ||
        (rc = check_unknown(c, s->items[i], label,
                            "name, topic, partitions, loopback")))
      return rc;
    /* A pattern ('^...') is refused with its own message (graph.c). */
    if (src->topic[0] != '^' &&
        (rc = check_topic(c, s->items[i], label, "topic", src->topic)))
      return rc;
    src->partitions = (int)parts;
  }
  return 0;
}

static int read_operators(cctx_t *c, const rs_ynode_t *root) {
  rs_config_t *cfg = c->cfg;
  rs_ynode_t *s;
  void *array = NULL;
  int rc =
      open_list(c, root, "operators", 0, sizeof(*cfg->operators), &s, &array);
  cfg->operators = array;
  if (rc || !s)
    return rc;
  for (size_t i = 0; i < s->n; i++) {
    rs_operator_cfg_t *op = &cfg->operators[cfg->n_operators++];
    char label[160];
    const rs_ynode_t *item = s->items[i];
    op->node = item;
    if ((rc = name_entry(c, item, "operators", i, &op->name, label,
                         sizeof label)) ||
        (rc = get_str(c, item, label, "type", NULL, 1, &op->type)) ||
        (rc = get_str(c, item, label, "dead_letter_topic", NULL, 0,
                      &op->dead_letter_topic)) ||
        (op->dead_letter_topic &&
         (rc = check_topic(c, item, label, "dead_letter_topic",
                           op->dead_letter_topic))))
      return rc;
    rs_ypair_t *in = rs_ymap_find(item, "input");
    rs_ypair_t *ins = rs_ymap_find(item, "inputs");
    if (in && ins)
      return cerr(c, ins->line, ins->col,
                  "%s: give either 'input' or 'inputs', not both", label);
    if (!in && !ins)
      return cerr(c, item->line, item->col,
                  "%s: missing required key 'input' (the node it reads from)",
                  label);
    if (in) {
      in->used = 1;
      if (in->value->type != RS_Y_SCALAR || !*in->value->scalar)
        return cerr(c, in->value->line, in->value->col,
                    "%s.input: expected the name of a source or operator",
                    label);
      op->inputs = rs_calloc(1, sizeof(char *));
      if (!op->inputs || !(op->inputs[0] = rs_strdup(in->value->scalar)))
        return RS_ENOMEM;
      op->n_inputs = 1;
    } else {
      ins->used = 1;
      if (ins->value->type != RS_Y_SEQ || ins->value->n == 0)
        return cerr(c, ins->value->line, ins->value->col,
                    "%s.inputs: expected a non-empty list of node names",
                    label);
      op->inputs = rs_calloc(ins->value->n, sizeof(char *));
      if (!op->inputs)
        return RS_ENOMEM;
      for (size_t j = 0; j < ins->value->n; j++) {
        rs_ynode_t *v = ins->value->items[j];
        if (v->type != RS_Y_SCALAR || !*v->scalar)
          return cerr(c, v->line, v->col,
                      "%s.inputs[%zu]: expected the name of a source or "
                      "operator",
                      label, j);
        if (!(op->inputs[op->n_inputs++] = rs_strdup(v->scalar)))
          return RS_ENOMEM;
      }
    }
    /* The remaining keys are the operator's options, checked against its
     * option table when the graph is built. */
  }
  return 0;
}

static int read_sinks(cctx_t *c, const rs_ynode_t *root) {
  rs_config_t *cfg = c->cfg;
  rs_ynode_t *s;
  void *array = NULL;
  int rc = open_list(c, root, "sinks", 1, sizeof(*cfg->sinks), &s, &array);
  cfg->sinks = array;
  if (rc)
    return rc;
  static const char *const formats[] = {"avro", "confluent", "json", NULL};
  for (size_t i = 0; i < s->n; i++) {
    rs_sink_cfg_t *sk = &cfg->sinks[cfg->n_sinks++];
    char label[160];
    int64_t id, parts;
    sk->node = s->items[i];
    if ((rc = name_entry(c, s->items[i], "sinks", i, &sk->name, label,
                         sizeof label)) ||
        (rc = get_str(c, s->items[i], label, "input", NULL, 1, &sk->input)) ||
        (rc = get_str(c, s->items[i], label, "topic", NULL, 1, &sk->topic)) ||
        (rc = get_enum(c, s->items[i], label, "format", formats, 0,
                       &sk->format)) ||
        (rc = get_num(c, s->items[i], label, "schema_id", T_INT, 1, 0,
                      INT32_MAX, &id)) ||
        (rc = get_num(c, s->items[i], label, "partitions", T_INT, 0, 1, 1024,
                      &parts)) ||
        (rc = check_unknown(c, s->items[i], label,
                            "name, input, topic, format, schema_id, "
                            "partitions")) ||
        (rc = check_topic(c, s->items[i], label, "topic", sk->topic)))
      return rc;
    sk->schema_id = (int32_t)id;
    sk->partitions = (int)parts;
  }
  return 0;
}

/* The components log.level names: the engine's own (the ones it logs
 * under) or an operator's name (its experiment variants log under it);
 * a typo would otherwise be ignored. */
static int check_log_components(cctx_t *c, const rs_ynode_t *root) {
  static const char *const fixed[] = {"engine", "http", "kafka", "replay",
                                      "state"};
  const rs_config_t *cfg = c->cfg;
  for (const char *p = cfg->log.level; p && *p;) {
    size_t len = strcspn(p, ","), n = 0;
    const char *eq = memchr(p, '=', len);
    int known = !eq;
    if (eq) {
      n = (size_t)(eq - p);
      for (size_t i = 0; i < RS_ARRAY_SIZE(fixed) && !known; i++)
        known = strlen(fixed[i]) == n && !strncmp(p, fixed[i], n);
      for (size_t j = 0; j < cfg->n_operators && !known; j++) {
        const char *name = cfg->operators[j].name;
        known = strlen(name) == n && !strncmp(p, name, n);
      }
    }
    if (!known) {
      rs_ypair_t *lp = rs_ymap_find(root, "log");
      rs_ypair_t *lv = lp && lp->value->type == RS_Y_MAP
                           ? rs_ymap_find(lp->value, "level")
                           : NULL;
      rs_buf_t ops = {0};
      for (size_t j = 0; j < cfg->n_operators; j++)
        rs_buf_printf(&ops, "%s%s", j ? ", " : "", cfg->operators[j].name);
      int rc = cerr(c, lv ? lv->value->line : 0, lv ? lv->value->col : 0,
                    "log.level: unknown component '%.*s' in '%s' (components: "
                    "engine, http, kafka, replay, state, and the operators: "
                    "%s)",
                    (int)n, p, cfg->log.level, ops.len ? ops.data : "none");
      rs_buf_free(&ops);
      return rc;
    }
    p += len;
    if (*p == ',')
      p++;
  }
  return 0;
}

static int read_plugins(cctx_t *c, const rs_ynode_t *root) {
  rs_config_t *cfg = c->cfg;
  rs_ynode_t *s;
  int rc = get(c, root, "config", "plugins", RS_Y_SEQ, 0, &s);
  if (rc || !s)
    return rc;
  cfg->plugins = rs_calloc(s->n ? s->n : 1, sizeof(char *));
  if (!cfg->plugins)
    return RS_ENOMEM;
  for (size_t i = 0; i < s->n; i++) {
    rs_ynode_t *v = s->items[i];
    if (v->type != RS_Y_SCALAR || !*v->scalar)
      return cerr(c, v->line, v->col,
                  "plugins[%zu]: expected the path of a .so file", i);
    rs_buf_t b = {0};
    if (v->scalar[0] != '/' && cfg->dir && strcmp(cfg->dir, "."))
      rs_buf_printf(&b, "%s/%s", cfg->dir, v->scalar);
    else
      rs_buf_printf(&b, "%s", v->scalar);
    if (!b.data)
      return RS_ENOMEM;
    cfg->plugins[cfg->n_plugins++] = b.data;
  }
  return 0;
}

static int read_all(cctx_t *c) {
  rs_config_t *cfg = c->cfg;
  const rs_ynode_t *root = cfg->root;
  if (root->type != RS_Y_MAP)
    return cerr(c, root->line, root->col,
                "the top level must be a mapping (app, kafka, state, "
                "sources, operators, sinks, ...)");
  int rc = get_str(c, root, "config", "app", "recstream", 0, &cfg->app);
  if (rc)
    return rc;
  if (!valid_name(cfg->app)) {
    rs_ypair_t *p = rs_ymap_find(root, "app");
    return cerr(c, p->value->line, p->value->col,
                "app: '%s' may only contain letters, digits, '_' and '-'",
                cfg->app);
  }
  if ((rc = read_kafka(c, root)) || (rc = read_state(c, root)) ||
      (rc = read_processing(c, root)) || (rc = read_http(c, root)) ||
      (rc = read_log(c, root)) || (rc = read_sources(c, root)) ||
      (rc = read_operators(c, root)) || (rc = read_sinks(c, root)) ||
      (rc = read_plugins(c, root)) || (rc = check_log_components(c, root)))
    return rc;
  /* experiments: read and checked with the graph (experiments.c). */
  rs_ypair_t *xp = rs_ymap_find(root, "experiments");
  if (xp)
    xp->used = 1;
  return check_unknown(c, root, "config",
                       "app, kafka, state, processing, http, log, "
                       "sources, operators, sinks, plugins, experiments");
}

int rs_config_load_string(const char *name, const char *yaml, size_t len,
                          const char *const *sets, size_t n_sets,
                          rs_config_t **out, char *errstr, size_t errstr_size) {
  *out = NULL;
  rs_config_t *cfg = rs_calloc(1, sizeof(*cfg));
  if (!cfg)
    return RS_ENOMEM;
  cfg->file = rs_strdup(name);
  const char *slash = strrchr(name, '/');
  cfg->dir = slash ? rs_strndup(name, (size_t)(slash - name)) : rs_strdup(".");
  if (!cfg->file || !cfg->dir) {
    rs_config_destroy(cfg);
    return RS_ENOMEM;
  }
  cctx_t c = {.cfg = cfg, .errstr = errstr, .errstr_size = errstr_size};
  yaml_parser_t parser;
  yaml_document_t doc;
  int rc = 0;
  if (!yaml_parser_initialize(&parser)) {
    rs_config_destroy(cfg);
    return RS_ENOMEM;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
  if (!yaml_parser_load(&parser, &doc)) {
    const yaml_mark_t *m =
        parser.context ? &parser.context_mark : &parser.problem_mark;
    if (parser.problem_mark.line || parser.problem_mark.column)
      m = &parser.problem_mark;
    rc = cerr(&c, (int)m->line + 1, (int)m->column + 1, "YAML syntax: %s%s%s",
              parser.problem ? parser.problem : "malformed document",
              parser.context ? " " : "", parser.context ? parser.context : "");
    yaml_parser_delete(&parser);
    rs_config_destroy(cfg);
    return rc;
  }
  yaml_node_t *top = yaml_document_get_root_node(&doc);
  if (!top)
    rc = cerr(&c, 1, 1, "the file is empty (expected a pipeline mapping)");
  else
    rc = build(&c, &doc, top, 0, &cfg->root);
  yaml_document_delete(&doc);
  if (!rc) {
    /* One pipeline per file: a second document ("---") would otherwise be
     * ignored without a word, and so would a broken one after "...". */
    yaml_document_t next;
    if (!yaml_parser_load(&parser, &next)) {
      rc = cerr(&c, (int)parser.problem_mark.line + 1,
                (int)parser.problem_mark.column + 1,
                "YAML syntax after the first document: %s",
                parser.problem ? parser.problem : "malformed document");
    } else {
      if (yaml_document_get_root_node(&next))
        rc = cerr(&c, (int)next.start_mark.line + 1,
                  (int)next.start_mark.column + 1,
                  "a second YAML document: a config file holds one pipeline "
                  "(one document)");
      yaml_document_delete(&next);
    }
  }
  yaml_parser_delete(&parser);
  if (!rc && n_sets) {
    cfg->sets = rs_calloc(n_sets, sizeof(char *));
    for (size_t i = 0; cfg->sets && i < n_sets; i++)
      if ((cfg->sets[i] = rs_strdup(sets[i])))
        cfg->n_sets++;
    if (cfg->n_sets != n_sets)
      rc = RS_ENOMEM;
  }
  for (size_t i = 0; !rc && i < n_sets; i++) {
    if (cfg->root->type != RS_Y_MAP)
      break; /* read_all reports it */
    rc = apply_set(&c, sets[i], i);
  }
  if (!rc)
    rc = read_all(&c);
  if (rc) {
    rs_config_destroy(cfg);
    return rc;
  }
  *out = cfg;
  return 0;
}

int rs_config_load(const char *path, const char *const *sets, size_t n_sets,
                   rs_config_t **out, char *errstr, size_t errstr_size) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f)
    return rs_seterr(errstr, errstr_size, RS_ECONFIG, "%s: cannot open: %s",
                     path, strerror(errno));
  rs_buf_t b = {0};
  char chunk[8192];
  size_t n;
  int rc = 0;
  /* The cap is checked as it is read: /dev/zero, a FIFO or a huge file
   * given by mistake stop here instead of filling memory. */
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (b.len + n > (16u << 20)) {
      rc = rs_seterr(errstr, errstr_size, RS_ECONFIG,
                     "%s: larger than 16 MiB; is it a config file?", path);
      break;
    }
    if (rs_buf_append(&b, chunk, n)) {
      rc = RS_ENOMEM;
      break;
    }
  }
  if (!rc && ferror(f))
    rc = rs_seterr(errstr, errstr_size, RS_ECONFIG, "%s: read error: %s", path,
                   strerror(errno));
  fclose(f);
  if (!rc)
    rc = rs_config_load_string(path, b.data ? b.data : "", b.len, sets, n_sets,
                               out, errstr, errstr_size);
  rs_buf_free(&b);
  return rc;
}

void rs_config_destroy(rs_config_t *cfg) {
  if (!cfg)
    return;
  for (size_t i = 0; i < cfg->kafka.n_props; i++) {
    rs_free(cfg->kafka.prop_keys[i]);
    rs_free(cfg->kafka.prop_values[i]);
  }
  rs_free(cfg->kafka.prop_keys);
  rs_free(cfg->kafka.prop_values);
  rs_free(cfg->kafka.brokers);
  rs_free(cfg->kafka.group_id);
  rs_free(cfg->kafka.auto_offset_reset);
  rs_free(cfg->state.dir);
  rs_free(cfg->http.bind);
  rs_free(cfg->log.level);
  rs_free(cfg->log.format);
  for (size_t i = 0; i < cfg->n_sources; i++) {
    rs_free(cfg->sources[i].name);
    rs_free(cfg->sources[i].topic);
  }
  rs_free(cfg->sources);
  for (size_t i = 0; i < cfg->n_operators; i++) {
    rs_operator_cfg_t *op = &cfg->operators[i];
    rs_free(op->name);
    rs_free(op->type);
    rs_free(op->dead_letter_topic);
    for (size_t j = 0; j < op->n_inputs; j++)
      rs_free(op->inputs[j]);
    rs_free(op->inputs);
  }
  rs_free(cfg->operators);
  for (size_t i = 0; i < cfg->n_sinks; i++) {
    rs_free(cfg->sinks[i].name);
    rs_free(cfg->sinks[i].input);
    rs_free(cfg->sinks[i].topic);
  }
  rs_free(cfg->sinks);
  for (size_t i = 0; i < cfg->n_plugins; i++)
    rs_free(cfg->plugins[i]);
  rs_free(cfg->plugins);
  ynode_free(cfg->root);
  rs_free(cfg->app);
  for (size_t i = 0; i < cfg->n_sets; i++)
    rs_free(cfg->sets[i]);
  rs_free(cfg->sets);
  rs_free(cfg->file);
  rs_free(cfg->dir);
  rs_free(cfg);
}
