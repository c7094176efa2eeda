/* recstream version and operator ABI version.
 *
 * The ABI major changes only when an existing field of rs_operator_def_t or
 * rs_host_api_t changes meaning or position; appending fields bumps the minor.
 * The host refuses operators built against another major.
 */
#ifndef RECSTREAM_VERSION_H
#define RECSTREAM_VERSION_H

#define RS_VERSION_MAJOR 0
#define RS_VERSION_MINOR 1
#define RS_VERSION_PATCH 0
#define RS_VERSION_STRING "0.1.0"

#define RS_ABI_MAJOR 1u
#define RS_ABI_MINOR 3u
#define RS_ABI_VERSION ((RS_ABI_MAJOR << 16) | RS_ABI_MINOR)
#define RS_ABI_MAJOR_OF(v) ((uint32_t)(v) >> 16)

const char *rs_version_string(void);

#endif
