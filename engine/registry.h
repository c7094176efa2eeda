/* The operator registry: built-in operator definitions plus those loaded
 * from plugin shared objects. Every definition, built-in or not, passes the
 * same checks (ABI major, struct size, required callbacks, option table). */
#ifndef RS_REGISTRY_H
#define RS_REGISTRY_H

#include <stddef.h>

#include "recstream/operator.h"

typedef struct rs_registry rs_registry_t;

/* A registry holding the built-in operators. Free with rs_registry_destroy(),
 * which also dlcloses plugins: no definition may be used after it. */
int rs_registry_new(rs_registry_t **out, char *errstr, size_t errstr_size);
void rs_registry_destroy(rs_registry_t *r);

/* dlopens `path` and registers the rs_operator_def_t it exports as
 * RS_PLUGIN_SYMBOL. Errors: RS_EPLUGIN (cannot open, no symbol, name taken)
 * or RS_EABI (wrong ABI major, struct too small, bad option table). */
int rs_registry_load_plugin(rs_registry_t *r, const char *path, char *errstr,
                            size_t errstr_size);

/* Validates a definition; `origin` names where it came from in messages. */
int rs_operator_def_check(const rs_operator_def_t *def, const char *origin,
                          char *errstr, size_t errstr_size);

const rs_operator_def_t *rs_registry_find(const rs_registry_t *r,
                                          const char *name);
size_t rs_registry_count(const rs_registry_t *r);
const rs_operator_def_t *rs_registry_at(const rs_registry_t *r, size_t i);

#endif
