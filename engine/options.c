/* Applying operator option tables to YAML, and generating the operator
 * reference from the same tables, so docs and behaviour cannot diverge. */
#include "options.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *type_name(rs_opt_type_t t) {
  switch (t) {
  case RS_OPT_BOOL:
    return "bool";
  case RS_OPT_INT:
    return "int";
  case RS_OPT_DOUBLE:
    return "float";
  case RS_OPT_STRING:
    return "string";
  case RS_OPT_DURATION:
    return "duration";
  case RS_OPT_SIZE:
    return "size";
  case RS_OPT_ENUM:
    return "enum";
  }
  return "?";
}

static const char *expected(rs_opt_type_t t) {
  switch (t) {
  case RS_OPT_BOOL:
    return "true or false (also yes/no, on/off, 1/0)";
  case RS_OPT_INT:
    return "an integer";
  case RS_OPT_DOUBLE:
    return "a number";
  case RS_OPT_STRING:
    return "a string";
  case RS_OPT_DURATION:
    return "a duration like 250ms, 30s, 5m or 2h";
  case RS_OPT_SIZE:
    return "a size like 512, 64KiB or 1MiB";
  case RS_OPT_ENUM:
    return "one of the listed values";
  }
  return "?";
}

static int has_bounds(const rs_option_def_t *o) {
  return (o->type == RS_OPT_INT || o->type == RS_OPT_DOUBLE ||
          o->type == RS_OPT_DURATION || o->type == RS_OPT_SIZE) &&
         o->min <= o->max;
}

static void format_bound(const rs_option_def_t *o, double v, char *buf,
                         size_t size) {
  if (o->type == RS_OPT_DURATION)
    rs_format_duration((int64_t)v, buf, size);
  else if (o->type == RS_OPT_DOUBLE)
    snprintf(buf, size, "%g", v);
  else
    snprintf(buf, size, "%.0f", v);
}

/* Index of value in "a|b|c", or -1. */
static int enum_index(const char *values, const char *v) {
  int i = 0;
  size_t vl = strlen(v);
  for (const char *p = values; p && *p; i++) {
    const char *bar = strchr(p, '|');
    size_t l = bar ? (size_t)(bar - p) : strlen(p);
    if (l == vl && !strncmp(p, v, l))
      return i;
    p = bar ? bar + 1 : NULL;
  }
  return -1;
}

/* Parses one value into ctx; returns 0, RS_EINVAL (bad form) or RS_ERANGE. */
static int parse_value(const rs_option_def_t *o, const char *s, void *ctx) {
  char *field = (char *)ctx + o->offset;
  int64_t iv = 0;
  double dv = 0;
  switch (o->type) {
  case RS_OPT_BOOL: {
    int b;
    if (rs_parse_bool(s, &b))
      return RS_EINVAL;
    memcpy(field, &b, sizeof b);
    return 0;
  }
  case RS_OPT_STRING: {
    char *d = rs_strdup(s);
    if (!d)
      return RS_ENOMEM;
    char *old;
    memcpy(&old, field, sizeof old);
    rs_free(old);
    memcpy(field, &d, sizeof d);
    return 0;
  }
  case RS_OPT_ENUM: {
    int i = enum_index(o->enum_values, s);
    if (i < 0)
      return RS_EINVAL;
    memcpy(field, &i, sizeof i);
    return 0;
  }
  case RS_OPT_INT:
    if (rs_parse_int64(s, &iv))
      return RS_EINVAL;
    dv = (double)iv;
    break;
  case RS_OPT_DURATION:
    if (rs_parse_duration_ms(s, &iv))
      return RS_EINVAL;
    dv = (double)iv;
    break;
  case RS_OPT_SIZE:
    if (rs_parse_size(s, &iv))
      return RS_EINVAL;
    dv = (double)iv;
    break;
  case RS_OPT_DOUBLE:
    if (rs_parse_double(s, &dv))
      return RS_EINVAL;
    break;
  }
  if (has_bounds(o) && (dv < o->min || dv > o->max))
    return RS_ERANGE;
  if (o->type == RS_OPT_DOUBLE)
    memcpy(field, &dv, sizeof dv);
  else
    memcpy(field, &iv, sizeof iv);
  return 0;
}

/* Whether option o holds a non-zero value in ctx (not for strings). */
static int is_set(const rs_option_def_t *o, const void *ctx) {
  const char *field = (const char *)ctx + o->offset;
  switch (o->type) {
  case RS_OPT_BOOL:
  case RS_OPT_ENUM: {
    int v;
    memcpy(&v, field, sizeof v);
    return v != 0;
  }
  case RS_OPT_DOUBLE: {
    double v;
    memcpy(&v, field, sizeof v);
    return v != 0;
  }
  case RS_OPT_STRING:
    return 0;
  default: {
    int64_t v;
    memcpy(&v, field, sizeof v);
    return v != 0;
  }
  }
}

/* An option marked RS_OPT_WALL_CLOCK, set, where the config promises
 * outputs that depend only on the input: refused, naming why. */
static int wall_clock_refused(const rs_config_t *cfg, const rs_option_def_t *o,
                              const void *ctx, int line, int col,
                              const char *label, char *errstr,
                              size_t errstr_size) {
  if (o->type == RS_OPT_ENUM || o->type == RS_OPT_STRING || !o->enum_values ||
      strcmp(o->enum_values, RS_OPT_WALL_CLOCK) || !is_set(o, ctx))
    return 0;
  char where[512];
  rs_config_where(cfg, line, col, where, sizeof where);
  if (cfg->state.guarantee == RS_GUARANTEE_EXACTLY_ONCE)
    return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                     "%s%s.%s: acts on wall-clock time, so outputs are not a "
                     "function of the input, which state.guarantee "
                     "exactly_once needs (a replay must regenerate the same "
                     "outputs); leave %s at 0 or use at_least_once",
                     where, label, o->name, o->name);
  if (cfg->processing.order == RS_ORDER_DETERMINISTIC)
    return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                     "%s%s.%s: acts on wall-clock time, so a run cannot be "
                     "reproduced as processing.order deterministic promises; "
                     "leave %s at 0 or use processing.order arrival",
                     where, label, o->name, o->name);
  return 0;
}

/* An RS_OPT_PEER option: its value must name another operator of the
 * config, of the type the marker gives. */
static int peer_refused(const rs_config_t *cfg, const rs_option_def_t *o,
                        const rs_ynode_t *map, const char *v, int line, int col,
                        const char *label, char *errstr, size_t errstr_size) {
  if (o->type != RS_OPT_STRING || !o->enum_values ||
      strncmp(o->enum_values, "peer:", 5) || !v)
    return 0;
  const char *type = o->enum_values + 5;
  rs_ypair_t *self = rs_ymap_find(map, "name");
  char where[512];
  rs_config_where(cfg, line, col, where, sizeof where);
  if (self && self->value->type == RS_Y_SCALAR &&
      !strcmp(self->value->scalar, v))
    return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                     "%s%s.%s: '%s' is this operator itself; name another "
                     "operator%s%s",
                     where, label, o->name, v, *type ? " of type " : "", type);
  for (size_t i = 0; i < cfg->n_operators; i++) {
    const rs_operator_cfg_t *op = &cfg->operators[i];
    if (!op->name || strcmp(op->name, v))
      continue;
    if (*type && (!op->type || strcmp(op->type, type)))
      return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                       "%s%s.%s: '%s' is a %s operator, not one of type %s",
                       where, label, o->name, v, op->type ? op->type : "?",
                       type);
    return 0;
  }
  return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                   "%s%s.%s: no operator named '%s' in this config (it reads "
                   "that operator's state%s%s)",
                   where, label, o->name, v,
                   *type ? "; expected one of type " : "", type);
}

int rs_options_apply(const rs_config_t *cfg, const rs_operator_def_t *def,
                     const rs_ynode_t *map, const char *label, void *ctx,
                     char *errstr, size_t errstr_size) {
  char where[512];
  for (size_t i = 0; i < def->n_options; i++) {
    const rs_option_def_t *o = &def->options[i];
    rs_ypair_t *p = rs_ymap_find(map, o->name);
    const char *v = o->default_value;
    int line = map->line, col = map->col;
    if (p) {
      p->used = 1;
      line = p->value->line;
      col = p->value->col;
      rs_config_where(cfg, line, col, where, sizeof where);
      if (p->value->type != RS_Y_SCALAR)
        return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                         "%s%s.%s: expected %s, got a %s", where, label,
                         o->name, expected(o->type),
                         p->value->type == RS_Y_MAP ? "mapping" : "list");
      v = p->value->scalar;
    } else if (!v) {
      rs_config_where(cfg, line, col, where, sizeof where);
      return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                       "%s%s: missing required option '%s' (%s: %s)", where,
                       label, o->name, type_name(o->type), o->description);
    }
    int rc = parse_value(o, v, ctx);
    if (rc == RS_ENOMEM)
      return rc;
    if (rc) {
      rs_config_where(cfg, line, col, where, sizeof where);
      if (rc == RS_ERANGE) {
        char a[32], b[32];
        format_bound(o, o->min, a, sizeof a);
        format_bound(o, o->max, b, sizeof b);
        return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                         "%s%s.%s: %s is out of range [%s, %s]", where, label,
                         o->name, v, a, b);
      }
      if (o->type == RS_OPT_ENUM)
        return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                         "%s%s.%s: expected one of %s, got '%s'", where, label,
                         o->name, o->enum_values, v);
      return rs_seterr(errstr, errstr_size, RS_ECONFIG,
                       "%s%s.%s: expected %s, got '%s'", where, label, o->name,
                       expected(o->type), v);
    }
    if ((rc = wall_clock_refused(cfg, o, ctx, line, col, label, errstr,
                                 errstr_size)) ||
        (rc = peer_refused(cfg, o, map, v, line, col, label, errstr,
                           errstr_size)))
      return rc;
  }
  for (size_t i = 0; i < map->n; i++) {
    if (map->pairs[i].used)
      continue;
    rs_buf_t known = {0};
    rs_buf_printf(&known, "name, type, input(s), dead_letter_topic");
    for (size_t j = 0; j < def->n_options; j++)
      rs_buf_printf(&known, ", %s", def->options[j].name);
    rs_config_where(cfg, map->pairs[i].line, map->pairs[i].col, where,
                    sizeof where);
    rs_seterr(errstr, errstr_size, RS_ECONFIG,
              "%s%s: unknown option '%s' for operator type '%s' (expected "
              "one of: %s)",
              where, label, map->pairs[i].key, def->name,
              known.data ? known.data : "");
    rs_buf_free(&known);
    return RS_ECONFIG;
  }
  return 0;
}

void rs_options_free(const rs_operator_def_t *def, void *ctx) {
  for (size_t i = 0; i < def->n_options; i++) {
    const rs_option_def_t *o = &def->options[i];
    if (o->type != RS_OPT_STRING)
      continue;
    char *s;
    memcpy(&s, (char *)ctx + o->offset, sizeof s);
    rs_free(s);
    s = NULL;
    memcpy((char *)ctx + o->offset, &s, sizeof s);
  }
}

static size_t field_size(rs_opt_type_t t) {
  switch (t) {
  case RS_OPT_BOOL:
  case RS_OPT_ENUM:
    return sizeof(int);
  case RS_OPT_STRING:
    return sizeof(char *);
  case RS_OPT_DOUBLE:
    return sizeof(double);
  default:
    return sizeof(int64_t);
  }
}

int rs_options_check_table(const rs_operator_def_t *def, char *errstr,
                           size_t errstr_size) {
  if (def->n_options && !def->options)
    return rs_seterr(errstr, errstr_size, RS_EABI,
                     "operator '%s': n_options is %zu but options is NULL",
                     def->name, def->n_options);
  void *probe = def->ctx_size ? rs_calloc(1, def->ctx_size) : NULL;
  if (def->ctx_size && !probe)
    return RS_ENOMEM;
  int rc = 0;
  for (size_t i = 0; i < def->n_options && !rc; i++) {
    const rs_option_def_t *o = &def->options[i];
    if (!o->name || !*o->name || !o->description)
      rc = rs_seterr(errstr, errstr_size, RS_EABI,
                     "operator '%s': option %zu has no name or description",
                     def->name, i);
    else if ((unsigned)o->type > RS_OPT_ENUM)
      rc = rs_seterr(errstr, errstr_size, RS_EABI,
                     "operator '%s': option '%s' has unknown type %d",
                     def->name, o->name, (int)o->type);
    else if (o->offset + field_size(o->type) > def->ctx_size)
      rc = rs_seterr(errstr, errstr_size, RS_EABI,
                     "operator '%s': option '%s' lies outside the context "
                     "(offset %zu, ctx_size %zu)",
                     def->name, o->name, o->offset, def->ctx_size);
    else if (o->type == RS_OPT_ENUM && (!o->enum_values || !*o->enum_values))
      rc = rs_seterr(errstr, errstr_size, RS_EABI,
                     "operator '%s': enum option '%s' lists no values",
                     def->name, o->name);
    else if (o->default_value) {
      int prc = parse_value(o, o->default_value, probe);
      if (prc)
        rc = rs_seterr(errstr, errstr_size, RS_EABI,
                       "operator '%s': option '%s' has an invalid default "
                       "'%s'",
                       def->name, o->name, o->default_value);
    }
  }
  if (probe) {
    rs_options_free(def, probe);
    rs_free(probe);
  }
  return rc;
}

int rs_options_describe(const rs_operator_def_t *def, int markdown,
                        rs_buf_t *out) {
  const char *const *ports = def->output_ports;
  rs_buf_t pb = {0};
  if (!ports || !ports[0])
    rs_buf_printf(&pb, "out");
  for (size_t i = 0; ports && ports[i]; i++)
    rs_buf_printf(&pb, "%s%s", i ? ", " : "", ports[i]);
  if (markdown) {
    rs_buf_printf(out, "## %s\n\n%s\n\n", def->name, def->description);
    rs_buf_printf(out, "Inputs: %u", def->min_inputs);
    if (def->max_inputs != def->min_inputs)
      rs_buf_printf(out, " to %u", def->max_inputs);
    rs_buf_printf(out, ". Output ports: %s.\n\n", pb.data ? pb.data : "");
    if (def->n_options) {
      rs_buf_printf(out, "| option | type | default | bounds | description "
                         "|\n|---|---|---|---|---|\n");
    } else {
      rs_buf_printf(out, "No options.\n");
    }
  } else {
    rs_buf_printf(out, "%s — %s\n  inputs: %u", def->name, def->description,
                  def->min_inputs);
    if (def->max_inputs != def->min_inputs)
      rs_buf_printf(out, "..%u", def->max_inputs);
    rs_buf_printf(out, "; output ports: %s\n", pb.data ? pb.data : "");
  }
  rs_buf_free(&pb);
  for (size_t i = 0; i < def->n_options; i++) {
    const rs_option_def_t *o = &def->options[i];
    char bounds[96] = "";
    if (has_bounds(o)) {
      char a[32], b[32];
      format_bound(o, o->min, a, sizeof a);
      format_bound(o, o->max, b, sizeof b);
      snprintf(bounds, sizeof bounds, "%s .. %s", a, b);
    } else if (o->type == RS_OPT_ENUM) {
      size_t k = 0;
      for (const char *q = o->enum_values; *q && k + 3 < sizeof bounds; q++) {
        if (*q == '|') {
          bounds[k++] = ',';
          bounds[k++] = ' ';
        } else {
          bounds[k++] = *q;
        }
      }
      bounds[k] = '\0';
    }
    const char *dflt = o->default_value
                           ? (*o->default_value ? o->default_value : "\"\"")
                           : "(required)";
    if (markdown) {
      rs_buf_printf(out, "| `%s` | %s | `%s` | %s | %s |\n", o->name,
                    type_name(o->type), dflt, bounds, o->description);
    } else {
      rs_buf_printf(out, "  %-20s %-8s default %s%s%s\n      %s\n", o->name,
                    type_name(o->type), dflt, *bounds ? ", " : "", bounds,
                    o->description);
    }
  }
  rs_buf_printf(out, "\n");
  return 0;
}
