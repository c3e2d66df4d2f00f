// A librdkafka consumer that hands fetched commands to JavaScript in batches written into one
// Buffer, for io/command_consumer.ts.
//
// Why native: @confluentinc/kafka-javascript turns every fetched message into a JavaScript
// object (value and key Buffers with finalizers, topic string, seven properties set by name),
// several microseconds of the main thread per command, more than decoding it into the ring.
// Here consume() copies the values of up to `messages_max` messages into the caller's Buffer
// and nothing else is created per message. Everything runs on the calling thread: consume()
// never blocks (timeout 0), and the callbacks librdkafka serves inside it (rebalance, errors)
// only record what happened for JavaScript to take.
//
// Record layout written by consume() (little-endian, no padding):
//
//   0           4             8                  16
//   +-----------+-------------+------------------+-----------------+
//   | partition | value bytes | offset (f64)     | value           |
//   | u32       | u32         |                  | (value bytes)   |
//   +-----------+-------------+------------------+-----------------+
//
// A value larger than the Buffer can ever hold is recorded with VALUE_OVERSIZED as its size
// and no bytes, so that it still takes its offset (as a malformed command), never stalls.
// Messages that do not fit this time stay, in order, for the next call.
//
// Consumer groups: a rebalance is recorded (assign or revoke, its partitions, whether the
// assignment was lost) and not acted on; JavaScript takes it with takeRebalance(), hands the
// partitions over or takes them (leases, recovery) and then calls incrementalAssign or
// incrementalUnassign, which completes the rebalance: librdkafka allows that call after the
// callback has returned. While closing, rebalances are completed at once.

#include <stdint.h>
#include "napi_support.h"

#define RECORD_HEADER_BYTES 16
#define VALUE_OVERSIZED 0xFFFFFFFFu
#define MESSAGES_MAX 65536
#define REBALANCES_KEPT_MAX 64
#define RESETS_KEPT_MAX 65536
#define SEEK_TIMEOUT_MS 2000

typedef struct {
  int assign;  // 1: partitions assigned; 0: revoked
  int lost;
  rd_kafka_topic_partition_list_t *partitions;
} rebalance_t;

typedef struct {
  rd_kafka_t *rk;  // first: arguments_of() checks it
  rd_kafka_queue_t *queue;
  char *topic;
  int closing;
  int probes_in_flight;  // metadata requests running on the thread pool: they use rk
  int destroy_pending;   // closed while probes ran: the last probe to finish destroys
  // The last fetched batch; batch_next.. are not yet copied out (the Buffer was full).
  rd_kafka_message_t *batch[MESSAGES_MAX];
  uint32_t batch_next;
  uint32_t batch_count;
  rebalance_t rebalances[REBALANCES_KEPT_MAX];
  uint32_t rebalance_first;
  uint32_t rebalance_count;
  error_notes_t notes;
  char fatal[ERROR_TEXT_BYTES];  // the first fatal error, kept even if the notes overflow
  // Partitions whose fetch position fell outside the log (auto.offset.reset=error): they
  // fetch nothing more until sought or assigned again. Kept once each until taken.
  int32_t reset_partitions[RESETS_KEPT_MAX];
  double reset_offsets[RESETS_KEPT_MAX];
  uint32_t reset_count;
} consumer_t;

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *partitions, void *opaque) {
  consumer_t *consumer = (consumer_t *)opaque;
  int assign = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
  if (consumer->closing) {
    rd_kafka_error_t *error = assign ? rd_kafka_incremental_assign(rk, partitions) : rd_kafka_incremental_unassign(rk, partitions);
    if (error != NULL) rd_kafka_error_destroy(error);
    return;
  }
  if (consumer->rebalance_count == REBALANCES_KEPT_MAX) {
    // JavaScript takes every rebalance before the next consume(); this many in one call
    // means that contract is broken, and a dropped rebalance would leave partitions unowned.
    fprintf(stderr, "kafka_command_consumer: more than %d rebalances not taken\n", REBALANCES_KEPT_MAX);
    abort();
  }
  rebalance_t *slot = &consumer->rebalances[(consumer->rebalance_first + consumer->rebalance_count++) % REBALANCES_KEPT_MAX];
  slot->assign = assign;
  slot->lost = !assign && rd_kafka_assignment_lost(rk);
  slot->partitions = rd_kafka_topic_partition_list_copy(partitions);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  consumer_t *consumer = (consumer_t *)opaque;
  char text[ERROR_TEXT_BYTES];
  // Fatal (for example a fenced group.instance.id): the consumer stops for good.
  if (error_text(rk, err, reason, text, sizeof text) && consumer->fatal[0] == 0) snprintf(consumer->fatal, sizeof consumer->fatal, "%s", text);
  note_error(&consumer->notes, text);
}

static void destroy_consumer(consumer_t *consumer) {
  // rd_kafka_destroy closes a consumer that was not closed (a finalizer, a failed start):
  // its revoke must complete at once, or the group waits for it forever.
  consumer->closing = 1;
  for (; consumer->batch_next < consumer->batch_count; consumer->batch_next++) rd_kafka_message_destroy(consumer->batch[consumer->batch_next]);
  while (consumer->rebalance_count > 0) {
    rd_kafka_topic_partition_list_destroy(consumer->rebalances[consumer->rebalance_first].partitions);
    consumer->rebalance_first = (consumer->rebalance_first + 1) % REBALANCES_KEPT_MAX;
    consumer->rebalance_count--;
  }
  if (consumer->queue != NULL) rd_kafka_queue_destroy(consumer->queue);
  consumer->queue = NULL;
  if (consumer->rk != NULL) rd_kafka_destroy(consumer->rk);
  consumer->rk = NULL;
}

static void finalize_consumer(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  consumer_t *consumer = (consumer_t *)data;
  destroy_consumer(consumer);
  free(consumer->topic);
  free(consumer);
}

// create(config: string[] as key, value, …, topic: string, group: boolean) → handle
static napi_value create(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool group = false;
  CALL(env, napi_get_value_bool(env, argv[2], &group));
  rd_kafka_conf_t *conf = conf_of(env, argv[0]);
  if (conf == NULL) return NULL;
  consumer_t *consumer = calloc(1, sizeof(consumer_t));
  if (consumer != NULL) consumer->topic = string_argument(env, argv[1]);
  if (consumer == NULL || consumer->topic == NULL) {
    rd_kafka_conf_destroy(conf);
    free(consumer);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  char errstr[512];
  rd_kafka_conf_set_opaque(conf, consumer);
  rd_kafka_conf_set_error_cb(conf, on_error);
  if (group) rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
  consumer->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (consumer->rk == NULL) {
    rd_kafka_conf_destroy(conf);  // freed by rd_kafka_new only on success
    free(consumer->topic);
    free(consumer);
    napi_throw_error(env, NULL, errstr);
    return NULL;
  }
  // Errors and rebalances are served by the consumer queue, which consume() polls.
  rd_kafka_poll_set_consumer(consumer->rk);
  consumer->queue = rd_kafka_queue_get_consumer(consumer->rk);
  if (consumer->queue == NULL) {
    destroy_consumer(consumer);
    free(consumer->topic);
    free(consumer);
    napi_throw_error(env, NULL, "the consumer has no queue: group.id must be set");
    return NULL;
  }
  napi_value handle;
  CALL(env, napi_create_external(env, consumer, finalize_consumer, NULL, &handle));
  return handle;
}

static napi_value error_result(napi_env env, rd_kafka_resp_err_t err) {
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) napi_throw_error(env, rd_kafka_err2name(err), rd_kafka_err2str(err));
  return NULL;
}

static napi_value error_object_result(napi_env env, rd_kafka_error_t *error) {
  if (error == NULL) return NULL;
  char text[ERROR_TEXT_BYTES];
  snprintf(text, sizeof text, "%s", rd_kafka_error_string(error));
  rd_kafka_error_destroy(error);
  napi_throw_error(env, NULL, text);
  return NULL;
}

// subscribe(handle): joins the consumer group for the topic.
static napi_value subscribe(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  consumer_t *consumer = (consumer_t *)arguments_of(env, info, 1, argv);
  if (consumer == NULL) return NULL;
  rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, consumer->topic, RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer->rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  return error_result(env, err);
}

// Copies one message into out at `at`; false if it does not fit (oversized values excepted).
static int copy_message(consumer_t *consumer, const rd_kafka_message_t *message, uint8_t *out, size_t capacity, size_t *at) {
  size_t value_bytes = message->payload == NULL ? 0 : message->len;
  uint32_t recorded = (uint32_t)value_bytes;
  if (RECORD_HEADER_BYTES + value_bytes > capacity) {
    char text[ERROR_TEXT_BYTES];
    snprintf(text, sizeof text, "message of partition %d offset %lld has %zu bytes, more than a consume buffer of %zu holds",
             (int)message->partition, (long long)message->offset, value_bytes, capacity);
    note_error(&consumer->notes, text);
    recorded = VALUE_OVERSIZED;
    value_bytes = 0;
  }
  if (*at + RECORD_HEADER_BYTES + value_bytes > capacity) return 0;
  uint32_t partition = (uint32_t)message->partition;
  double offset = (double)message->offset;
  memcpy(out + *at, &partition, 4);
  memcpy(out + *at + 4, &recorded, 4);
  memcpy(out + *at + 8, &offset, 8);
  if (value_bytes > 0) memcpy(out + *at + RECORD_HEADER_BYTES, message->payload, value_bytes);
  *at += RECORD_HEADER_BYTES + value_bytes;
  return 1;
}

static void note_reset(consumer_t *consumer, int32_t partition, double offset) {
  for (uint32_t i = 0; i < consumer->reset_count; i++) {
    if (consumer->reset_partitions[i] == partition) return;
  }
  // One entry per partition of any topic Tally accepts (at most 65535 partitions), so the
  // bound is never reached while entries are unique.
  if (consumer->reset_count == RESETS_KEPT_MAX) return;
  consumer->reset_partitions[consumer->reset_count] = partition;
  consumer->reset_offsets[consumer->reset_count] = offset;
  consumer->reset_count++;
}

// consume(handle, out: Uint8Array, messagesMax) → bytes of records written (0: nothing now).
// Messages fetched but not copied (the Buffer was full) stay, in order, for the next call;
// no new batch is fetched while a rebalance waits to be taken, so JavaScript sees it first.
static napi_value consume(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  consumer_t *consumer = (consumer_t *)arguments_of(env, info, 3, argv);
  if (consumer == NULL) return NULL;
  size_t capacity = 0;
  uint8_t *out = typed_array_of(env, argv[1], napi_uint8_array, RECORD_HEADER_BYTES, &capacity);
  if (out == NULL) return NULL;
  uint32_t messages_max = 0;
  CALL(env, napi_get_value_uint32(env, argv[2], &messages_max));
  if (messages_max > MESSAGES_MAX) messages_max = MESSAGES_MAX;
  if (consumer->batch_next == consumer->batch_count && consumer->rebalance_count == 0) {
    ssize_t count = rd_kafka_consume_batch_queue(consumer->queue, 0, consumer->batch, messages_max);
    consumer->batch_next = 0;
    consumer->batch_count = count < 0 ? 0 : (uint32_t)count;
  }
  size_t at = 0;
  for (uint32_t copied = 0; consumer->batch_next < consumer->batch_count && copied < messages_max; consumer->batch_next++) {
    rd_kafka_message_t *message = consumer->batch[consumer->batch_next];
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (message->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        // The consumer queue hands errors over as messages; a fatal one (a fenced static
        // member, for example) ends this consumer and is marked so.
        char text[ERROR_TEXT_BYTES];
        snprintf(text, sizeof text, "%s: %s", message->err == RD_KAFKA_RESP_ERR__FATAL ? "fatal" : "consume", rd_kafka_message_errstr(message));
        note_error(&consumer->notes, text);
        if (message->err == RD_KAFKA_RESP_ERR__FATAL && consumer->fatal[0] == 0) snprintf(consumer->fatal, sizeof consumer->fatal, "%s", text);
        if (message->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) note_reset(consumer, message->partition, (double)message->offset);
      }
    } else if (copy_message(consumer, message, out, capacity, &at)) {
      copied++;
    } else {
      break;
    }
    rd_kafka_message_destroy(message);
  }
  return int32_value(env, (int32_t)at);
}

// takeRebalance(handle) → null, or [assign 0/1, lost 0/1, partition, partition, …] for the
// oldest rebalance not yet taken.
static napi_value take_rebalance(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  consumer_t *consumer = (consumer_t *)arguments_of(env, info, 1, argv);
  if (consumer == NULL) return NULL;
  napi_value result;
  if (consumer->rebalance_count == 0) {
    CALL(env, napi_get_null(env, &result));
    return result;
  }
  rebalance_t *taken = &consumer->rebalances[consumer->rebalance_first];
  consumer->rebalance_first = (consumer->rebalance_first + 1) % REBALANCES_KEPT_MAX;
  consumer->rebalance_count--;
  CALL(env, napi_create_array_with_length(env, 2 + taken->partitions->cnt, &result));
  napi_set_element(env, result, 0, int32_value(env, taken->assign));
  napi_set_element(env, result, 1, int32_value(env, taken->lost));
  for (int i = 0; i < taken->partitions->cnt; i++) napi_set_element(env, result, 2 + i, int32_value(env, taken->partitions->elems[i].partition));
  rd_kafka_topic_partition_list_destroy(taken->partitions);
  taken->partitions = NULL;
  return result;
}

// The topic's partitions named in `partitions` (a JS array), with `offsets` (or none).
static rd_kafka_topic_partition_list_t *partition_list_of(napi_env env, consumer_t *consumer, napi_value partitions, napi_value offsets) {
  uint32_t length = 0;
  if (napi_get_array_length(env, partitions, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "partitions must be an array of numbers");
    return NULL;
  }
  rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)length);
  for (uint32_t i = 0; i < length; i++) {
    napi_value element;
    int32_t partition = 0;
    double offset = RD_KAFKA_OFFSET_INVALID;
    napi_get_element(env, partitions, i, &element);
    napi_get_value_int32(env, element, &partition);
    if (offsets != NULL) {
      napi_get_element(env, offsets, i, &element);
      napi_get_value_double(env, element, &offset);
    }
    rd_kafka_topic_partition_list_add(list, consumer->topic, partition)->offset = (int64_t)offset;
  }
  return list;
}

// Drops the fetched-but-not-copied messages of the listed partitions, keeping the others in
// order. After a seek, an assignment or an unassignment they are stale: librdkafka discards
// such messages in its own queue (a version barrier), but not those already handed out here.
static void drop_held(consumer_t *consumer, const rd_kafka_topic_partition_list_t *list) {
  uint32_t kept = consumer->batch_next;
  for (uint32_t i = consumer->batch_next; i < consumer->batch_count; i++) {
    rd_kafka_message_t *message = consumer->batch[i];
    int listed = 0;
    for (int j = 0; j < list->cnt && !listed; j++) listed = list->elems[j].partition == message->partition;
    if (listed) rd_kafka_message_destroy(message);
    else consumer->batch[kept++] = message;
  }
  consumer->batch_count = kept;
}

// Partition-list operations: incrementalAssign(handle, partitions, offsets: Tally's own, or
// logical ones such as RD_KAFKA_OFFSET_BEGINNING, -2), incrementalUnassign, pause and
// resume (handle, partitions). Assigning or unassigning drops held messages of the partitions.
enum { OP_ASSIGN, OP_UNASSIGN, OP_PAUSE, OP_RESUME };

static napi_value partition_operation(napi_env env, napi_callback_info info, int operation) {
  napi_value argv[3];
  size_t count = operation == OP_ASSIGN ? 3 : 2;
  consumer_t *consumer = (consumer_t *)arguments_of(env, info, count, argv);
  if (consumer == NULL) return NULL;
  rd_kafka_topic_partition_list_t *list = partition_list_of(env, consumer, argv[1], operation == OP_ASSIGN ? argv[2] : NULL);
  if (list == NULL) return NULL;
  rd_kafka_error_t *error = NULL;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  if (operation == OP_ASSIGN || operation == OP_UNASSIGN) drop_held(consumer, list);
  if (operation == OP_ASSIGN) error = rd_kafka_incremental_assign(consumer->rk, list);
  else if (operation == OP_UNASSIGN) error = rd_kafka_incremental_unassign(consumer->rk, list);
  else if (operation == OP_PAUSE) err = rd_kafka_pause_partitions(consumer->rk, list);
  else err = rd_kafka_resume_partitions(consumer->rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (error != NULL) return error_object_result(env, error);
  return error_result(env, err);
}

static napi_value incremental_assign(napi_env env, napi_callback_info info) { return partition_operation(env, info, OP_ASSIGN); }
static napi_value incremental_unassign(napi_env env, napi_callback_info info) { return partition_operation(env, info, OP_UNASSIGN); }
static napi_value pause_partitions(napi_env env, napi_callback_info info) { return partition_operation(env, info, OP_PAUSE); }
static napi_value resume_partitions(napi_env env, napi_callback_info info) { return partition_operation(env, info, OP_RESUME); }

// seek(handle, partitions, offsets) → per partition '' (sought) or the reason librdkafka
// refused (its fetcher not started, stopping, or no answer in time). The next fetch of each
// sought partition starts at its offset; messages already fetched are the caller's to drop.
// One call for all partitions, waiting at most SEEK_TIMEOUT_MS for librdkafka's answer (a
// local operation, no broker round trip), so a refused seek is reported, never a partition
// that silently keeps reading from wherever it was.
static napi_value seek(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  consumer_t *consumer = (consumer_t *)arguments_of(env, info, 3, argv);
  if (consumer == NULL) return NULL;
  rd_kafka_topic_partition_list_t *list = partition_list_of(env, consumer, argv[1], argv[2]);
  if (list == NULL) return NULL;
  drop_held(consumer, list);
  rd_kafka_error_t *error = rd_kafka_seek_partitions(consumer->rk, list, SEEK_TIMEOUT_MS);
  napi_value result;
  if (napi_create_array_with_length(env, (size_t)list->cnt, &result) != napi_ok) {
    if (error != NULL) rd_kafka_error_destroy(error);
    rd_kafka_topic_partition_list_destroy(list);
    return NULL;
  }
  for (int i = 0; i < list->cnt; i++) {
    const char *reason = error != NULL ? rd_kafka_error_string(error) : list->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_err2str(list->elems[i].err) : "";
    napi_value text;
    if (napi_create_string_utf8(env, reason, NAPI_AUTO_LENGTH, &text) == napi_ok) napi_set_element(env, result, (uint32_t)i, text);
  }
  if (error != NULL) rd_kafka_error_destroy(error);
  rd_kafka_topic_partition_list_destroy(list);
  return result;
}

// takeOffsetResets(handle) → [partition, offset, partition, offset, …] of partitions whose
// position fell outside the log since the last call (offset: the position that did).
static napi_value take_offset_resets(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  consumer_t *consumer = (consumer_t *)arguments_of(env, info, 1, argv);
  if (consumer == NULL) return NULL;
  napi_value result;
  CALL(env, napi_create_array_with_length(env, consumer->reset_count * 2, &result));
  for (uint32_t i = 0; i < consumer->reset_count; i++) {
    napi_value partition, offset;
    CALL(env, napi_create_int32(env, consumer->reset_partitions[i], &partition));
    CALL(env, napi_create_double(env, consumer->reset_offsets[i], &offset));
    CALL(env, napi_set_element(env, result, i * 2, partition));
    CALL(env, napi_set_element(env, result, i * 2 + 1, offset));
  }
  consumer->reset_count = 0;
  return result;
}

// highWatermark(handle, partition) → the cached high watermark (from fetches), or -1.
static napi_value high_watermark(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  consumer_t *consumer = (consumer_t *)arguments_of(env, info, 2, argv);
  if (consumer == NULL) return NULL;
  int32_t partition = 0;
  CALL(env, napi_get_value_int32(env, argv[1], &partition));
  int64_t low = -1, high = -1;
  if (rd_kafka_get_watermark_offsets(consumer->rk, consumer->topic, partition, &low, &high) != RD_KAFKA_RESP_ERR_NO_ERROR) high = -1;
  napi_value result;
  CALL(env, napi_create_double(env, high < 0 ? -1 : (double)high, &result));
  return result;
}

// Metadata probe off the main thread: probe(handle, timeoutMs) → Promise<void>.
typedef struct {
  consumer_t *consumer;
  napi_ref handle;  // keeps the consumer's external alive while the probe runs
  int32_t timeout_ms;
  rd_kafka_resp_err_t err;
  napi_deferred deferred;
  napi_async_work work;
} probe_t;

static void probe_execute(napi_env env, void *data) {
  (void)env;
  probe_t *probe = (probe_t *)data;
  const struct rd_kafka_metadata *metadata = NULL;
  rd_kafka_topic_t *topic = rd_kafka_topic_new(probe->consumer->rk, probe->consumer->topic, NULL);
  probe->err = topic == NULL ? RD_KAFKA_RESP_ERR__INVALID_ARG : rd_kafka_metadata(probe->consumer->rk, 0, topic, &metadata, probe->timeout_ms);
  if (metadata != NULL) rd_kafka_metadata_destroy(metadata);
  if (topic != NULL) rd_kafka_topic_destroy(topic);
}

static void probe_complete(napi_env env, napi_status status, void *data) {
  probe_t *probe = (probe_t *)data;
  napi_value value;
  if (status == napi_ok && probe->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    napi_get_undefined(env, &value);
    napi_resolve_deferred(env, probe->deferred, value);
  } else {
    napi_value message;
    napi_create_string_utf8(env, rd_kafka_err2str(probe->err), NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &value);
    napi_reject_deferred(env, probe->deferred, value);
  }
  napi_delete_async_work(env, probe->work);
  napi_delete_reference(env, probe->handle);
  consumer_t *consumer = probe->consumer;
  if (--consumer->probes_in_flight == 0 && consumer->destroy_pending) destroy_consumer(consumer);
  free(probe);
}

static napi_value probe(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  consumer_t *consumer = (consumer_t *)arguments_of(env, info, 2, argv);
  if (consumer == NULL) return NULL;
  probe_t *work = calloc(1, sizeof(probe_t));
  if (work == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  work->consumer = consumer;
  napi_get_value_int32(env, argv[1], &work->timeout_ms);
  napi_value promise, name;
  if (napi_create_reference(env, argv[0], 1, &work->handle) != napi_ok) {
    free(work);
    napi_throw_error(env, NULL, "probe: cannot reference the consumer");
    return NULL;
  }
  // Once the promise exists, a failure rejects it rather than throwing, so nothing leaks.
  if (napi_create_promise(env, &work->deferred, &promise) != napi_ok) {
    napi_delete_reference(env, work->handle);
    free(work);
    napi_throw_error(env, NULL, "probe: cannot create a promise");
    return NULL;
  }
  if (napi_create_string_utf8(env, "tally:kafka-probe", NAPI_AUTO_LENGTH, &name) != napi_ok
      || napi_create_async_work(env, NULL, name, probe_execute, probe_complete, work, &work->work) != napi_ok
      || napi_queue_async_work(env, work->work) != napi_ok) {
    napi_value message, error;
    napi_create_string_utf8(env, "probe: cannot queue the metadata request", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &error);
    napi_reject_deferred(env, work->deferred, error);
    if (work->work != NULL) napi_delete_async_work(env, work->work);
    napi_delete_reference(env, work->handle);
    free(work);
    return promise;
  }
  consumer->probes_in_flight++;
  return promise;
}

// fatalError(handle) → the first fatal error, or null: the consumer reads nothing more.
static napi_value fatal_error(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  consumer_t *consumer = (consumer_t *)arguments_of(env, info, 1, argv);
  if (consumer == NULL) return NULL;
  napi_value result;
  if (consumer->fatal[0] == 0) CALL(env, napi_get_null(env, &result));
  else CALL(env, napi_create_string_utf8(env, consumer->fatal, NAPI_AUTO_LENGTH, &result));
  return result;
}

static napi_value take_errors(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  consumer_t *consumer = (consumer_t *)arguments_of(env, info, 1, argv);
  if (consumer == NULL) return NULL;
  return take_notes(env, &consumer->notes);
}

// close(handle): leaves the group (rebalances during the close complete at once) and frees
// the client. Blocks the calling thread for the group's LeaveGroup round trip.
static napi_value close_consumer(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  consumer_t *consumer = (consumer_t *)arguments_of(env, info, 1, argv);
  if (consumer == NULL) return NULL;
  consumer->closing = 1;
  rd_kafka_consumer_close(consumer->rk);
  if (consumer->probes_in_flight > 0) {
    // A probe on the thread pool still uses the client: the last one to finish frees it.
    consumer->destroy_pending = 1;
    return NULL;
  }
  destroy_consumer(consumer);
  return NULL;
}

#define EXPORT(name, function) {name, NULL, function, NULL, NULL, NULL, napi_enumerable, NULL}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
    EXPORT("create", create), EXPORT("subscribe", subscribe), EXPORT("consume", consume), EXPORT("takeRebalance", take_rebalance),
    EXPORT("incrementalAssign", incremental_assign), EXPORT("incrementalUnassign", incremental_unassign),
    EXPORT("pause", pause_partitions), EXPORT("resume", resume_partitions), EXPORT("seek", seek),
    EXPORT("highWatermark", high_watermark), EXPORT("probe", probe), EXPORT("takeErrors", take_errors), EXPORT("takeOffsetResets", take_offset_resets), EXPORT("fatalError", fatal_error), EXPORT("close", close_consumer),
  };
  CALL(env, napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties));
  return exports;
}

NAPI_MODULE(kafka_command_consumer, init)
