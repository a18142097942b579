/*
 * flow.c — rejection reasons and the bounded request queue with deadlines.
 *
 * The queue sits between admission and the units: it absorbs short bursts
 * but never grows (a full queue answers queue_full at once, as Sentinel's
 * rate limiter answers instead of letting callers wait), and it never serves
 * a request whose deadline has passed: the client has given up on it, so
 * doing the work would only steal capacity from requests that can still be
 * answered in time. Expired entries come out of pop one at a time, tagged
 * with reason deadline, so the caller can answer each one and count it.
 */
#include "gateway.h"

PC_STATIC_ASSERT(PC_FLOW_REASON_COUNT == 7, "a new reason needs a name and a metric");
PC_STATIC_ASSERT(PC_FLOW_QUEUE_MAX <= (1u << 20), "queue index fits u32 arithmetic");
PC_STATIC_ASSERT(PC_FLOW_HOT_BUCKETS_MAX <= PC_FLOW_HOT_COUNTERS_MAX,
                 "every limited hot key can be tracked by the sketch");

const char *pc_flow_reason_name(pc_flow_reason_t reason) {
    PC_ASSERT(PC_FLOW_REASON_none == 0);
    PC_ASSERT((int)PC_FLOW_REASON_deadline + 1 == (int)PC_FLOW_REASON_COUNT);
    switch (reason) {
#define PC__FLOW_REASON_CASE(name, value, text)                                       \
    case name:                                                                        \
        return text;
        PC_FLOW_REASONS(PC__FLOW_REASON_CASE)
#undef PC__FLOW_REASON_CASE
    default:
        return "unknown";
    }
}

int pc_flow_queue_init(pc_flow_queue_t *queue, uint32_t capacity) {
    PC_ASSERT(queue != NULL);
    if (capacity == 0 || capacity > PC_FLOW_QUEUE_MAX) return PC_EINVAL;
    queue->capacity = capacity;
    queue->head = 0;
    queue->count = 0;
    PC_ASSERT(queue->count <= queue->capacity);
    return PC_OK;
}

pc_flow_reason_t pc_flow_queue_push(pc_flow_queue_t *queue, uint64_t now_ns, pc_flow_item_t item) {
    PC_ASSERT(queue->capacity > 0 && queue->capacity <= PC_FLOW_QUEUE_MAX);
    PC_ASSERT(queue->count <= queue->capacity);
    /* Already late: rejecting now is cheaper and more honest than queueing. */
    if (item.deadline_ns <= now_ns) return PC_FLOW_REASON_deadline;
    if (queue->count == queue->capacity) return PC_FLOW_REASON_queue_full;
    uint32_t tail = (queue->head + queue->count) % queue->capacity;
    queue->items[tail] = item;
    queue->count++;
    PC_ASSERT(queue->count <= queue->capacity);
    return PC_FLOW_REASON_none;
}

bool pc_flow_queue_pop(pc_flow_queue_t *queue, uint64_t now_ns, pc_flow_item_t *out,
                       pc_flow_reason_t *reason) {
    PC_ASSERT(queue->count <= queue->capacity);
    PC_ASSERT(out != NULL && reason != NULL);
    if (queue->count == 0) return false;
    *out = queue->items[queue->head];
    queue->head = (queue->head + 1) % queue->capacity;
    queue->count--;
    /* A deadline equal to now counts as missed: there is no time left to serve it. */
    *reason = out->deadline_ns <= now_ns ? PC_FLOW_REASON_deadline : PC_FLOW_REASON_none;
    PC_ASSERT(queue->head < queue->capacity);
    return true;
}

uint32_t pc_flow_queue_count(const pc_flow_queue_t *queue) {
    PC_ASSERT(queue->count <= queue->capacity);
    PC_ASSERT(queue->capacity <= PC_FLOW_QUEUE_MAX);
    return queue->count;
}
