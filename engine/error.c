/* rs_strerror()/rs_err_name(): generated from the RS_ERRNO_MAP X-macro so the
 * error space has exactly one definition. */
#include "recstream/error.h"

const char *rs_strerror(int err) {
  switch (err) {
  case RS_OK:
    return "success";
#define RS__ERR_MSG(name, msg)                                                 \
  case RS_E##name:                                                             \
    return msg;
    RS_ERRNO_MAP(RS__ERR_MSG)
#undef RS__ERR_MSG
  default:
    return "unknown error";
  }
}

const char *rs_err_name(int err) {
  switch (err) {
  case RS_OK:
    return "RS_OK";
#define RS__ERR_NAME(name, msg)                                                \
  case RS_E##name:                                                             \
    return "RS_E" #name;
    RS_ERRNO_MAP(RS__ERR_NAME)
#undef RS__ERR_NAME
  default:
    return "RS_UNKNOWN";
  }
}
