/* recstream error space.
 *
 * One negative-int space for every error the engine reports, generated from
 * the X-macro list below so that the enum, rs_err_name() and rs_strerror()
 * cannot drift apart. Zero is success. Foreign error types (RocksDB errptr,
 * avro_strerror(), rd_kafka_resp_err_t, libyaml marks) are translated at the
 * adapter that calls the dependency; none crosses into the rest of the code.
 */
#ifndef RECSTREAM_ERROR_H
#define RECSTREAM_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#define RS_ERRNO_MAP(X)                                                        \
  X(NOMEM, "out of memory")                                                    \
  X(INVAL, "invalid argument")                                                 \
  X(CONFIG, "invalid configuration")                                           \
  X(GRAPH, "invalid operator graph")                                           \
  X(NOENT, "no such file, key or object")                                      \
  X(IO, "input/output error")                                                  \
  X(ABI, "operator ABI mismatch")                                              \
  X(PLUGIN, "plugin could not be loaded")                                      \
  X(DECODE, "record could not be decoded")                                     \
  X(ENCODE, "record could not be encoded")                                     \
  X(KAFKA, "Kafka client error")                                               \
  X(DELIVERY, "output delivery failed")                                        \
  X(STATE, "state store error")                                                \
  X(NOTSUP, "operation not supported")                                         \
  X(RANGE, "value out of range")                                               \
  X(INTERNAL, "internal error")

typedef enum rs_err {
  RS_OK = 0,
#define RS__ERR_ENUM(name, msg) RS_E##name,
  RS__ERR_FIRST = -1000,
  RS_ERRNO_MAP(RS__ERR_ENUM)
#undef RS__ERR_ENUM
      RS__ERR_LAST
} rs_err_t;

/* A static, human-readable description of err ("unknown error" if none). */
const char *rs_strerror(int err);
/* The symbolic name of err, e.g. "RS_ECONFIG". */
const char *rs_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif
