/* Operator registry and plugin loader. dlopen/dlsym failures and ABI
 * mismatches become RS_EPLUGIN/RS_EABI with a message naming the file; a
 * plugin is never called before its definition passes every check. */
#include "registry.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "options.h"
#include "util.h"

extern const rs_operator_def_t rs_op_parse;
extern const rs_operator_def_t rs_op_user_stats;
extern const rs_operator_def_t rs_op_sessionize;
extern const rs_operator_def_t rs_op_mf_update;
extern const rs_operator_def_t rs_op_topn_emit;
extern const rs_operator_def_t rs_op_bandit_reward;

static const rs_operator_def_t *const builtins[] = {
    &rs_op_parse,     &rs_op_user_stats, &rs_op_sessionize,
    &rs_op_mf_update, &rs_op_topn_emit,  &rs_op_bandit_reward};

struct rs_registry {
  const rs_operator_def_t **defs;
  size_t n, cap;
  void **handles;
  size_t n_handles;
};

/* The fields every definition must have, whatever its minor version. */
#define RS_OPDEF_MIN_SIZE                                                      \
  (offsetof(rs_operator_def_t, process) + sizeof(void (*)(void)))

int rs_operator_def_check(const rs_operator_def_t *def, const char *origin,
                          char *errstr, size_t errstr_size) {
  if (RS_ABI_MAJOR_OF(def->abi_version) != RS_ABI_MAJOR)
    return rs_seterr(errstr, errstr_size, RS_EABI,
                     "%s: built for operator ABI %u.%u, this engine speaks "
                     "ABI %u.x; rebuild it against this engine's headers",
                     origin, RS_ABI_MAJOR_OF(def->abi_version),
                     def->abi_version & 0xffffu, RS_ABI_MAJOR);
  if (def->struct_size < RS_OPDEF_MIN_SIZE)
    return rs_seterr(errstr, errstr_size, RS_EABI,
                     "%s: struct_size %u is smaller than the %zu bytes every "
                     "operator definition needs (truncated definition?)",
                     origin, def->struct_size, (size_t)RS_OPDEF_MIN_SIZE);
  if (!def->name || !*def->name)
    return rs_seterr(errstr, errstr_size, RS_EABI,
                     "%s: operator definition has no name", origin);
  for (const char *p = def->name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
      return rs_seterr(errstr, errstr_size, RS_EABI,
                       "%s: operator name '%s' must be lower-case letters, "
                       "digits and '_'",
                       origin, def->name);
  if (!def->description)
    return rs_seterr(errstr, errstr_size, RS_EABI,
                     "%s: operator '%s' has no description", origin, def->name);
  if (!def->process)
    return rs_seterr(errstr, errstr_size, RS_EABI,
                     "%s: operator '%s' has no process callback", origin,
                     def->name);
  if (def->min_inputs < 1 || def->max_inputs < def->min_inputs ||
      def->max_inputs > 64)
    return rs_seterr(errstr, errstr_size, RS_EABI,
                     "%s: operator '%s' declares inputs %u..%u (expected "
                     "1 <= min <= max <= 64)",
                     origin, def->name, def->min_inputs, def->max_inputs);
  char sub[512];
  int rc = rs_options_check_table(def, sub, sizeof sub);
  if (rc)
    return rs_seterr(errstr, errstr_size, RS_EABI, "%s: %s", origin, sub);
  return 0;
}

static int add(rs_registry_t *r, const rs_operator_def_t *def,
               const char *origin, char *errstr, size_t errstr_size) {
  int rc = rs_operator_def_check(def, origin, errstr, errstr_size);
  if (rc)
    return rc;
  if (rs_registry_find(r, def->name))
    return rs_seterr(errstr, errstr_size, RS_EPLUGIN,
                     "%s: an operator named '%s' is already registered", origin,
                     def->name);
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 16;
    const rs_operator_def_t **d = rs_realloc(r->defs, cap * sizeof(*d));
    if (!d)
      return RS_ENOMEM;
    r->defs = d;
    r->cap = cap;
  }
  r->defs[r->n++] = def;
  return 0;
}

int rs_registry_new(rs_registry_t **out, char *errstr, size_t errstr_size) {
  rs_registry_t *r = rs_calloc(1, sizeof(*r));
  if (!r)
    return RS_ENOMEM;
  for (size_t i = 0; i < RS_ARRAY_SIZE(builtins); i++) {
    int rc = add(r, builtins[i], "built-in operator", errstr, errstr_size);
    if (rc) {
      rs_registry_destroy(r);
      return rc;
    }
  }
  *out = r;
  return 0;
}

int rs_registry_load_plugin(rs_registry_t *r, const char *path, char *errstr,
                            size_t errstr_size) {
  void **h = rs_realloc(r->handles, (r->n_handles + 1) * sizeof(*h));
  if (!h)
    return RS_ENOMEM;
  r->handles = h;
  /* A name without a slash is a file in the current directory (a config's
   * `plugins: [x.so]` beside it, `--plugin x.so`): dlopen would search the
   * library path for it instead. RTLD_LOCAL: plugins cannot see each
   * other's symbols or ours. */
  char local[4096];
  const char *open_path = path;
  if (!strchr(path, '/')) {
    if ((size_t)snprintf(local, sizeof local, "./%s", path) >= sizeof local)
      return rs_seterr(errstr, errstr_size, RS_EPLUGIN,
                       "plugin %s: the path is too long", path);
    open_path = local;
  }
  void *dl = dlopen(open_path, RTLD_NOW | RTLD_LOCAL);
  if (!dl)
    return rs_seterr(errstr, errstr_size, RS_EPLUGIN,
                     "plugin %s: cannot load: %s", path, dlerror());
  dlerror();
  const rs_operator_def_t *def = dlsym(dl, RS_PLUGIN_SYMBOL);
  const char *e = dlerror();
  if (e || !def) {
    rs_seterr(errstr, errstr_size, RS_EPLUGIN,
              "plugin %s: does not export the symbol '%s' (a const "
              "rs_operator_def_t)",
              path, RS_PLUGIN_SYMBOL);
    dlclose(dl);
    return RS_EPLUGIN;
  }
  char origin[600];
  snprintf(origin, sizeof origin, "plugin %s", path);
  int rc = add(r, def, origin, errstr, errstr_size);
  if (rc) {
    dlclose(dl);
    return rc;
  }
  r->handles[r->n_handles++] = dl;
  return 0;
}

const rs_operator_def_t *rs_registry_find(const rs_registry_t *r,
                                          const char *name) {
  for (size_t i = 0; i < r->n; i++)
    if (!strcmp(r->defs[i]->name, name))
      return r->defs[i];
  return NULL;
}

size_t rs_registry_count(const rs_registry_t *r) {
  return r->n;
}

const rs_operator_def_t *rs_registry_at(const rs_registry_t *r, size_t i) {
  return i < r->n ? r->defs[i] : NULL;
}

void rs_registry_destroy(rs_registry_t *r) {
  if (!r)
    return;
  for (size_t i = 0; i < r->n_handles; i++)
    dlclose(r->handles[i]);
  rs_free(r->handles);
  rs_free(r->defs);
  rs_free(r);
}
