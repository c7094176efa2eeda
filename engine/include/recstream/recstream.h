/* Umbrella header for operator authors. */
#ifndef RECSTREAM_H
#define RECSTREAM_H
#include "error.h"
#include "operator.h"
#include "record.h"
#include "version.h"
#endif
