/* Pipeline configuration: a YAML file (DESIGN.md section 6) loaded into a
 * tree that remembers where every value came from, then read into typed
 * sections. Every error names file:line:column, the key and what was
 * expected. Operator options are not interpreted here: each operator
 * entry keeps its YAML mapping and the graph builder applies the
 * operator's option table to it (options.c).
 */
#ifndef RS_CONFIG_H
#define RS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef enum rs_ytype { RS_Y_SCALAR, RS_Y_MAP, RS_Y_SEQ } rs_ytype_t;

typedef struct rs_ynode rs_ynode_t;
typedef struct rs_ypair {
  char *key;
  int line, col; /* of the key */
  rs_ynode_t *value;
  int used; /* set when a reader consumed it; unused keys are errors */
} rs_ypair_t;

struct rs_ynode {
  rs_ytype_t type;
  int line, col; /* 1-based */
  char *scalar;  /* SCALAR: the value after ${VAR} expansion */
  int from_set;  /* 1 when the value came from --set */
  size_t n;
  rs_ypair_t *pairs;  /* MAP */
  rs_ynode_t **items; /* SEQ */
};

typedef enum rs_guarantee {
  RS_GUARANTEE_AT_LEAST_ONCE = 0,
  RS_GUARANTEE_EXACTLY_ONCE = 1,
  RS_GUARANTEE_TRANSACTIONAL = 2,
} rs_guarantee_t;

typedef enum rs_order {
  RS_ORDER_ARRIVAL = 0,
  RS_ORDER_DETERMINISTIC = 1
} rs_order_t;

typedef struct rs_source_cfg {
  char *name;
  char *topic;
  int partitions; /* for the embedded broker; 0 = kafka.embedded.partitions */
  int loopback;   /* reads a topic one of the pipeline's sinks writes */
  const rs_ynode_t *node;
} rs_source_cfg_t;

typedef struct rs_operator_cfg {
  char *name;
  char *type;
  char **inputs; /* "node" or "node.port" */
  size_t n_inputs;
  char *dead_letter_topic; /* NULL: "<source topic>.dlq" */
  const rs_ynode_t *node;  /* the whole mapping; options are read from it */
} rs_operator_cfg_t;

typedef struct rs_sink_cfg {
  char *name;
  char *input;
  char *topic;
  int format; /* rs_format_t */
  int32_t schema_id;
  int partitions;
  const rs_ynode_t *node;
} rs_sink_cfg_t;

typedef struct rs_config {
  char *file; /* as given */
  char *dir;  /* directory of the file: relative paths resolve against it */
  /* The --set overrides, as given: a value from sets[k] has line 0 and
   * col -(k + 1), so that its errors name it instead of a place in file. */
  char **sets;
  size_t n_sets;
  char *app;
  struct {
    char *brokers; /* "embedded" or a bootstrap list */
    char **prop_keys;
    char **prop_values;
    size_t n_props;
    int embedded_partitions;
    int embedded_brokers;
    char *group_id;
    char *auto_offset_reset; /* earliest | latest */
  } kafka;
  struct {
    char *dir;
    int64_t commit_interval_ms;
    rs_guarantee_t guarantee;
    int64_t cache_bytes;        /* write-back cache bound */
    int64_t block_cache_bytes;  /* RocksDB block cache */
    int64_t write_buffer_bytes; /* RocksDB memtable per column family */
    int compression;            /* rs_compression_t */
    int sync;                   /* fsync the WAL at each checkpoint */
  } state;
  struct {
    rs_order_t order;
    int64_t max_idle_ms;
    int64_t batch_size;
    int64_t high_water_bytes;
    int64_t low_water_bytes;
    int64_t max_inflight_records;
  } processing;
  struct {
    int port;   /* -1: off (http.port unset); 0: any free port */
    char *bind; /* address to listen on; "127.0.0.1" by default */
  } http;
  struct {
    char *level;  /* --log-level spec ("warn,http=debug"); NULL: unset */
    char *format; /* "text" or "json"; NULL: unset */
  } log;
  rs_source_cfg_t *sources;
  size_t n_sources;
  rs_operator_cfg_t *operators;
  size_t n_operators;
  rs_sink_cfg_t *sinks;
  size_t n_sinks;
  char **plugins; /* resolved paths */
  size_t n_plugins;
  rs_ynode_t *root;
} rs_config_t;

/* Loads `path`, applies the `--set section.key=value` overrides in sets[]
 * and checks every section. Free with rs_config_destroy(). Returns
 * RS_ECONFIG with "file:line:col: key: message" in errstr on failure. */
int rs_config_load(const char *path, const char *const *sets, size_t n_sets,
                   rs_config_t **out, char *errstr, size_t errstr_size);
/* The same from a string; `name` stands for the file name in messages. */
int rs_config_load_string(const char *name, const char *yaml, size_t len,
                          const char *const *sets, size_t n_sets,
                          rs_config_t **out, char *errstr, size_t errstr_size);
void rs_config_destroy(rs_config_t *cfg);

/* Whether name is a valid Kafka topic name: 1 to 249 letters, digits, '.',
 * '_' or '-', and not "." or "..". The config's topics (sources, sinks,
 * dead_letter_topic) are checked with it at load. */
int rs_topic_name_ok(const char *name);

/* Helpers for readers of the tree (used by options.c). */
rs_ypair_t *rs_ymap_find(const rs_ynode_t *map, const char *key);
/* Formats "file:line:col: " for node into buf. */
int rs_config_where(const rs_config_t *cfg, int line, int col, char *buf,
                    size_t size);

#endif
