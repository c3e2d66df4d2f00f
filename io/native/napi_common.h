// Node-API helpers without librdkafka, shared by every addon: the Kafka clients in io/native
// (through napi_support.h) and the engine's native core in engine/native.
#ifndef TALLY_NAPI_COMMON_H
#define TALLY_NAPI_COMMON_H

#include <node_api.h>
#include <stddef.h>

#define CALL(env, expression)                                             \
  do {                                                                    \
    if ((expression) != napi_ok) {                                        \
      napi_throw_error((env), NULL, "N-API call failed: " #expression);   \
      return NULL;                                                        \
    }                                                                     \
  } while (0)

// The data of a typed array of `type` holding at least `length_min` elements, or NULL (thrown).
// Its element count goes to *length unless `length` is NULL.
static inline void *typed_array_of(napi_env env, napi_value value, napi_typedarray_type type, size_t length_min, size_t *length) {
  napi_typedarray_type actual;
  size_t byte_offset = 0, count = 0;
  void *data = NULL;
  napi_value array_buffer;
  if (napi_get_typedarray_info(env, value, &actual, &count, &data, &array_buffer, &byte_offset) != napi_ok || actual != type || count < length_min) {
    napi_throw_range_error(env, NULL, "a typed array of the wrong type or length");
    return NULL;
  }
  if (length != NULL) *length = count;
  return data;
}

#endif
