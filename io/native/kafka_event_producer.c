// A librdkafka producer for result events, driven in batches from JavaScript.
//
// Why native: through @confluentinc/kafka-javascript every event costs a produce() call that
// turns its arguments into C++ values, a persistent handle for the opaque, and later a
// delivery-report object (topic string, key Buffer with a finalizer, opaque) dispatched to an
// EventEmitter: several microseconds of the main thread per event, the largest item of
// tally's per-command CPU after decoding. Here JavaScript writes many events into one Buffer
// and hands it over in one call; delivery reports are counted in C and only a position per
// command partition comes back. It links the librdkafka the binding built (same .so), and
// everything runs on the calling thread: rd_kafka_poll() serves the delivery reports and
// errors inside poll(), so no callback ever crosses threads.
//
// Record layout in the Buffer given to produce() (little-endian, no padding):
//
//   0        4                8                 16          20          24
//   +--------+----------------+-----------------+-----------+-----------+-----+-------+
//   | event  | command        | command offset  | key bytes | value     | key | value |
//   | part.  | partition u32  | f64             | u32       | bytes u32 |     |       |
//   +--------+----------------+-----------------+-----------+-----------+-----+-------+
//
// The command's (partition, offset) travels as the message's opaque, packed as
// partition << 48 | offset; a delivery report moves that partition's acknowledged
// position forward (reports of one partition arrive in produce order: idempotent producer).

#include <stdint.h>
#include "napi_support.h"

#define RECORD_HEADER_BYTES 24
#define PARTITIONS_MAX 65536
#define OFFSET_BITS 48

typedef struct {
  rd_kafka_t *rk;  // first: arguments_of() checks it
  rd_kafka_topic_t *topic;
  double delivered;
  double failed;
  double produced;
  // Per command partition: the next offset whose event is not yet known delivered (-1: none new).
  double acknowledged_next[PARTITIONS_MAX];
  // Per command partition: the lowest offset whose event failed (-1: none). No position at
  // or beyond it is ever reported acknowledged, so the next owner republishes from there.
  double failed_floor[PARTITIONS_MAX];
  uint16_t touched[PARTITIONS_MAX];
  uint8_t is_touched[PARTITIONS_MAX];
  uint32_t touched_count;
  error_notes_t notes;
  int fatal;
} producer_t;

static void touch(producer_t *producer, uint32_t partition) {
  if (producer->is_touched[partition]) return;
  producer->is_touched[partition] = 1;
  producer->touched[producer->touched_count++] = (uint16_t)partition;
}

// An event that will not be delivered: it holds back its partition's acknowledged position.
static void note_failed(producer_t *producer, uint32_t partition, double offset, const char *reason) {
  char text[ERROR_TEXT_BYTES];
  producer->failed++;
  if (producer->failed_floor[partition] < 0 || offset < producer->failed_floor[partition]) producer->failed_floor[partition] = offset;
  touch(producer, partition);
  snprintf(text, sizeof text, "result event of partition %u offset %.0f not delivered: %s", partition, offset, reason);
  note_error(&producer->notes, text);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque) {
  (void)rk;
  producer_t *producer = (producer_t *)opaque;
  uint64_t source = (uint64_t)(uintptr_t)message->_private;
  uint32_t partition = (uint32_t)(source >> OFFSET_BITS);
  double offset = (double)(source & ((1ULL << OFFSET_BITS) - 1));
  if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    note_failed(producer, partition, offset, rd_kafka_err2str(message->err));
    return;
  }
  producer->delivered++;
  if (offset + 1 > producer->acknowledged_next[partition]) producer->acknowledged_next[partition] = offset + 1;
  touch(producer, partition);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  producer_t *producer = (producer_t *)opaque;
  char text[ERROR_TEXT_BYTES];
  if (error_text(rk, err, reason, text, sizeof text)) producer->fatal = 1;
  note_error(&producer->notes, text);
}

// ---- Node-API functions -----------------------------------------------------------------

static void destroy_producer(producer_t *producer) {
  if (producer->topic != NULL) rd_kafka_topic_destroy(producer->topic);
  if (producer->rk != NULL) rd_kafka_destroy(producer->rk);
  producer->topic = NULL;
  producer->rk = NULL;
}

static void finalize_producer(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  producer_t *producer = (producer_t *)data;
  destroy_producer(producer);
  free(producer);
}

// create(config: string[] as key, value, key, value…, topic: string) → handle
static napi_value create(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  rd_kafka_conf_t *conf = conf_of(env, argv[0]);
  if (conf == NULL) return NULL;
  producer_t *producer = calloc(1, sizeof(producer_t));
  if (producer == NULL) {
    rd_kafka_conf_destroy(conf);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  for (uint32_t i = 0; i < PARTITIONS_MAX; i++) producer->acknowledged_next[i] = producer->failed_floor[i] = -1;
  char errstr[512];
  rd_kafka_conf_set_opaque(conf, producer);
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_conf_set_error_cb(conf, on_error);
  producer->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (producer->rk == NULL) {
    rd_kafka_conf_destroy(conf);  // freed by rd_kafka_new only on success
    free(producer);
    napi_throw_error(env, NULL, errstr);
    return NULL;
  }
  char *topic = string_argument(env, argv[1]);
  producer->topic = topic ? rd_kafka_topic_new(producer->rk, topic, NULL) : NULL;
  free(topic);
  if (producer->topic == NULL) {
    destroy_producer(producer);
    free(producer);
    napi_throw_error(env, NULL, "cannot create the events topic handle");
    return NULL;
  }
  napi_value handle;
  CALL(env, napi_create_external(env, producer, finalize_producer, NULL, &handle));
  return handle;
}

// partitionCount(handle, timeoutMs) → the topic's partition count; throws if it has none.
static napi_value partition_count(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  producer_t *producer = (producer_t *)arguments_of(env, info, 2, argv);
  if (producer == NULL) return NULL;
  int32_t timeout_ms = 10000;
  napi_get_value_int32(env, argv[1], &timeout_ms);
  const struct rd_kafka_metadata *metadata = NULL;
  rd_kafka_resp_err_t err = rd_kafka_metadata(producer->rk, 0, producer->topic, &metadata, timeout_ms);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    napi_throw_error(env, NULL, rd_kafka_err2str(err));
    return NULL;
  }
  int count = metadata->topic_cnt == 1 && metadata->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR ? metadata->topics[0].partition_cnt : 0;
  rd_kafka_metadata_destroy(metadata);
  napi_value result;
  CALL(env, napi_create_int32(env, count, &result));
  return result;
}

// produce(handle, records: Uint8Array, end: number) → bytes taken from the start; less than
// `end` when librdkafka's queue is full (the rest is for a later call, in order).
static napi_value produce(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  producer_t *producer = (producer_t *)arguments_of(env, info, 3, argv);
  if (producer == NULL) return NULL;
  uint32_t end = 0;
  CALL(env, napi_get_value_uint32(env, argv[2], &end));
  size_t length = 0;
  const uint8_t *bytes = typed_array_of(env, argv[1], napi_uint8_array, end, &length);
  if (bytes == NULL) return NULL;
  uint64_t at = 0;
  while (at + RECORD_HEADER_BYTES <= end) {
    uint32_t event_partition, source_partition, key_bytes, value_bytes;
    double source_offset;
    memcpy(&event_partition, bytes + at, 4);
    memcpy(&source_partition, bytes + at + 4, 4);
    memcpy(&source_offset, bytes + at + 8, 8);
    memcpy(&key_bytes, bytes + at + 16, 4);
    memcpy(&value_bytes, bytes + at + 20, 4);
    uint64_t next = at + RECORD_HEADER_BYTES + (uint64_t)key_bytes + (uint64_t)value_bytes;
    if (next > end || source_partition >= PARTITIONS_MAX || !(source_offset >= 0 && source_offset < (double)(1ULL << OFFSET_BITS))) {
      napi_throw_range_error(env, NULL, "produce: a malformed event record");
      return NULL;
    }
    const uint8_t *key = bytes + at + RECORD_HEADER_BYTES;
    uintptr_t source = (uintptr_t)(((uint64_t)source_partition << OFFSET_BITS) | (uint64_t)source_offset);
    if (rd_kafka_produce(producer->topic, (int32_t)event_partition, RD_KAFKA_MSG_F_COPY, (void *)(key + key_bytes), value_bytes,
                         key, key_bytes, (void *)source) != 0) {
      rd_kafka_resp_err_t err = rd_kafka_last_error();
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
      // Refused for good (too large, unknown partition): counted as failed and skipped, so the
      // events behind it still go out; its partition's position stays below it.
      producer->produced++;
      note_failed(producer, source_partition, source_offset, rd_kafka_err2str(err));
      at = next;
      continue;
    }
    producer->produced++;
    at = next;
  }
  napi_value result;
  CALL(env, napi_create_uint32(env, (uint32_t)at, &result));
  return result;
}

// poll(handle, counters: Float64Array(4)) → serves delivery reports and errors; fills
// [in flight, delivered, failed, fatal 0/1].
static napi_value poll_events(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  producer_t *producer = (producer_t *)arguments_of(env, info, 2, argv);
  if (producer == NULL) return NULL;
  rd_kafka_poll(producer->rk, 0);
  size_t length = 0;
  double *counters = typed_array_of(env, argv[1], napi_float64_array, 4, &length);
  if (counters == NULL) return NULL;
  counters[0] = producer->produced - producer->delivered - producer->failed;
  counters[1] = producer->delivered;
  counters[2] = producer->failed;
  counters[3] = producer->fatal;
  return NULL;
}

// takeAcknowledged(handle) → [partition, next offset, …] moved forward since the last call.
static napi_value take_acknowledged(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  producer_t *producer = (producer_t *)arguments_of(env, info, 1, argv);
  if (producer == NULL) return NULL;
  napi_value result;
  CALL(env, napi_create_array(env, &result));
  uint32_t written = 0;
  for (uint32_t i = 0; i < producer->touched_count; i++) {
    uint16_t partition = producer->touched[i];
    double next = producer->acknowledged_next[partition];
    double floor = producer->failed_floor[partition];
    if (floor >= 0 && next > floor) next = floor;
    producer->acknowledged_next[partition] = -1;
    producer->is_touched[partition] = 0;
    if (next < 0) continue;  // touched by failures only: nothing acknowledged to report
    napi_value partition_value, next_value;
    napi_create_uint32(env, partition, &partition_value);
    napi_create_double(env, next, &next_value);
    napi_set_element(env, result, written++, partition_value);
    napi_set_element(env, result, written++, next_value);
  }
  producer->touched_count = 0;
  return result;
}

// noteFailed(handle, partition, offset, reason): an event that could not even be queued
// (JavaScript's buffer of parked events is full) holds its partition's position back like
// one the broker refused, so the next owner's republish covers it.
static napi_value note_failed_event(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  producer_t *producer = (producer_t *)arguments_of(env, info, 4, argv);
  if (producer == NULL) return NULL;
  uint32_t partition = 0;
  double offset = 0;
  char reason[ERROR_TEXT_BYTES];
  size_t reason_bytes = 0;
  CALL(env, napi_get_value_uint32(env, argv[1], &partition));
  CALL(env, napi_get_value_double(env, argv[2], &offset));
  CALL(env, napi_get_value_string_utf8(env, argv[3], reason, sizeof reason, &reason_bytes));
  if (partition >= PARTITIONS_MAX) return NULL;
  // Counted as handed over and failed, as produce() counts an event librdkafka refuses, so
  // the events in flight (produced - delivered - failed) stay right.
  producer->produced++;
  note_failed(producer, partition, offset, reason);
  return NULL;
}

// forgetFailures(handle, partition) → the offset of the earliest failed event that held the
// partition's position back, or -1: its unacknowledged events are being republished from its
// recorded position (a take, or a republish while it stays ours), so earlier failures no
// longer hold its position back.
static napi_value forget_failures(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  producer_t *producer = (producer_t *)arguments_of(env, info, 2, argv);
  if (producer == NULL) return NULL;
  uint32_t partition = 0;
  CALL(env, napi_get_value_uint32(env, argv[1], &partition));
  double floor = -1;
  if (partition < PARTITIONS_MAX) {
    floor = producer->failed_floor[partition];
    producer->failed_floor[partition] = -1;
  }
  napi_value result;
  CALL(env, napi_create_double(env, floor, &result));
  return result;
}

// heldBack(handle) → the partitions whose position a failed event holds back, ascending.
static napi_value held_back(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  producer_t *producer = (producer_t *)arguments_of(env, info, 1, argv);
  if (producer == NULL) return NULL;
  napi_value result;
  CALL(env, napi_create_array(env, &result));
  uint32_t count = 0;
  for (uint32_t partition = 0; partition < PARTITIONS_MAX; partition++) {
    if (producer->failed_floor[partition] >= 0) napi_set_element(env, result, count++, int32_value(env, (int32_t)partition));
  }
  return result;
}

// takeErrors(handle) → messages noted since the last call (at most 64; a last line counts the rest).
static napi_value take_errors(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  producer_t *producer = (producer_t *)arguments_of(env, info, 1, argv);
  if (producer == NULL) return NULL;
  return take_notes(env, &producer->notes);
}

// destroy(handle): closes the producer; events still in flight are given up (drain first).
static napi_value destroy(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  producer_t *producer = (producer_t *)arguments_of(env, info, 1, argv);
  if (producer == NULL) return NULL;
  destroy_producer(producer);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
    {"create", NULL, create, NULL, NULL, NULL, napi_enumerable, NULL},
    {"partitionCount", NULL, partition_count, NULL, NULL, NULL, napi_enumerable, NULL},
    {"produce", NULL, produce, NULL, NULL, NULL, napi_enumerable, NULL},
    {"poll", NULL, poll_events, NULL, NULL, NULL, napi_enumerable, NULL},
    {"takeAcknowledged", NULL, take_acknowledged, NULL, NULL, NULL, napi_enumerable, NULL},
    {"takeErrors", NULL, take_errors, NULL, NULL, NULL, napi_enumerable, NULL},
    {"forgetFailures", NULL, forget_failures, NULL, NULL, NULL, napi_enumerable, NULL},
    {"heldBack", NULL, held_back, NULL, NULL, NULL, napi_enumerable, NULL},
    {"noteFailed", NULL, note_failed_event, NULL, NULL, NULL, napi_enumerable, NULL},
    {"destroy", NULL, destroy, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CALL(env, napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties));
  return exports;
}

NAPI_MODULE(kafka_event_producer, init)
