// Small Node-API helpers shared by the native Kafka clients in io/native (each .c file is
// its own addon; this header is included by each). Those without librdkafka are in
// napi_common.h, which the engine's native core (engine/native) includes too.
#ifndef TALLY_NAPI_SUPPORT_H
#define TALLY_NAPI_SUPPORT_H

#include "napi_common.h"
#include <rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERRORS_KEPT_MAX 64
#define ERROR_TEXT_BYTES 512


// Messages noted by librdkafka callbacks (on the calling thread), taken by JavaScript.
typedef struct {
  char texts[ERRORS_KEPT_MAX][ERROR_TEXT_BYTES];
  uint32_t count;
  double dropped;
} error_notes_t;

static inline void note_error(error_notes_t *notes, const char *text) {
  if (notes->count == ERRORS_KEPT_MAX) {
    notes->dropped++;
    return;
  }
  snprintf(notes->texts[notes->count++], ERROR_TEXT_BYTES, "%s", text);
}

// The notes as a JavaScript array (a last line counts those not kept); empties them.
static inline napi_value take_notes(napi_env env, error_notes_t *notes) {
  uint32_t extra = notes->dropped > 0 ? 1 : 0;
  napi_value result;
  CALL(env, napi_create_array_with_length(env, notes->count + extra, &result));
  for (uint32_t i = 0; i < notes->count + extra; i++) {
    char line[128];
    const char *text = notes->texts[i];
    if (i == notes->count) {
      snprintf(line, sizeof line, "%.0f more errors not kept", notes->dropped);
      text = line;
    }
    napi_value value;
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &value);
    napi_set_element(env, result, i, value);
  }
  notes->count = 0;
  notes->dropped = 0;
  return result;
}

// The text of a librdkafka error callback; a fatal error is named by rd_kafka_fatal_error.
// Answers whether it was fatal (the client does nothing more).
static inline int error_text(rd_kafka_t *rk, int err, const char *reason, char *text, size_t size) {
  if (err != RD_KAFKA_RESP_ERR__FATAL) {
    snprintf(text, size, "%s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
    return 0;
  }
  char fatal[ERROR_TEXT_BYTES / 2];
  rd_kafka_fatal_error(rk, fatal, sizeof fatal);
  snprintf(text, size, "fatal: %s", fatal);
  return 1;
}

// Reads `count` arguments into argv; the first must be an external holding an open client
// (its first field is the rd_kafka_t), which is returned.
static inline void *arguments_of(napi_env env, napi_callback_info info, size_t count, napi_value *argv) {
  size_t argc = count;
  void *client = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < count) {
    napi_throw_type_error(env, NULL, "missing arguments");
    return NULL;
  }
  if (napi_get_value_external(env, argv[0], &client) != napi_ok || client == NULL || *(rd_kafka_t **)client == NULL) {
    napi_throw_error(env, NULL, "not an open Kafka client");
    return NULL;
  }
  return client;
}

static inline char *string_argument(napi_env env, napi_value value) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) return NULL;
  char *text = malloc(length + 1);
  if (text == NULL) return NULL;
  napi_get_value_string_utf8(env, value, text, length + 1, &length);
  return text;
}

// A librdkafka configuration from [key, value, key, value, …]; NULL with an exception thrown.
static inline rd_kafka_conf_t *conf_of(napi_env env, napi_value pairs) {
  uint32_t length = 0;
  if (napi_get_array_length(env, pairs, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "the configuration must be an array of strings");
    return NULL;
  }
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char errstr[512] = "configuration keys and values must be strings";
  for (uint32_t i = 0; i + 1 < length; i += 2) {
    napi_value key_value, value_value;
    napi_get_element(env, pairs, i, &key_value);
    napi_get_element(env, pairs, i + 1, &value_value);
    char *key = string_argument(env, key_value);
    char *value = string_argument(env, value_value);
    rd_kafka_conf_res_t result = key && value ? rd_kafka_conf_set(conf, key, value, errstr, sizeof errstr) : RD_KAFKA_CONF_INVALID;
    free(key);
    free(value);
    if (result != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      napi_throw_error(env, NULL, errstr);
      return NULL;
    }
  }
  return conf;
}

static inline napi_value int32_value(napi_env env, int32_t number) {
  napi_value result;
  CALL(env, napi_create_int32(env, number, &result));
  return result;
}

#endif
