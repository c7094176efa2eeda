/* Version string of the engine library. */
#include "recstream/version.h"

const char *rs_version_string(void) {
  return RS_VERSION_STRING;
}
