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
 * Under sustained overload every request has to queue; then (the
 * standing-queue rule) an entry may wait only a short time, so the excess is
 * refused quickly and the requests that are served do not each carry a long
 * wait, while a short burst still gets the full deadline.
 */
#include "gateway.h"

PC_STATIC_ASSERT(PC_FLOW_REASON_COUNT == 8, "a new reason needs a name and a metric");
PC_STATIC_ASSERT(PC_FLOW_QUEUE_MAX <= (1u << 20), "queue index fits u32 arithmetic");
PC_STATIC_ASSERT(PC_FLOW_HOT_BUCKETS_MAX <= PC_FLOW_HOT_COUNTERS_MAX,
                 "every limited hot key can be tracked by the sketch");

const char *pc_flow_reason_name(pc_flow_reason_t reason) {
    PC_ASSERT(PC_FLOW_REASON_none == 0);
    PC_ASSERT((int)PC_FLOW_REASON_caller_rate + 1 == (int)PC_FLOW_REASON_COUNT);
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
    queue->standing_ns = 0;
    queue->standing_wait_ns = 0;
    queue->good_ns = 0;
    queue->late_ns = 0;
    for (uint32_t i = 0; i < PC_FLOW_SURGE_SLOTS; i++) {
        queue->surge_tick[i] = 0;
        queue->surge_arrived[i] = 0;
        queue->surge_left[i] = 0;
    }
    PC_ASSERT(queue->count <= queue->capacity);
    return PC_OK;
}

/* The surge window's time index of now_ns (0 marks a slot never used). */
static uint64_t surge_tick(uint64_t now_ns) {
    return now_ns / PC_FLOW_SURGE_SLOT_NS + 1;
}

/* The surge window's slot for now, emptied if it last held an older tick. */
static uint32_t surge_slot(pc_flow_queue_t *queue, uint64_t now_ns) {
    uint64_t tick = surge_tick(now_ns);
    uint32_t slot = (uint32_t)(tick % PC_FLOW_SURGE_SLOTS);
    if (queue->surge_tick[slot] != tick) {
        queue->surge_tick[slot] = tick;
        queue->surge_arrived[slot] = 0;
        queue->surge_left[slot] = 0;
    }
    return slot;
}

static void surge_count(pc_flow_queue_t *queue, uint64_t now_ns, uint32_t arrived,
                        uint32_t left) {
    uint32_t slot = surge_slot(queue, now_ns);
    queue->surge_arrived[slot] += arrived;
    queue->surge_left[slot] += left;
}

bool pc_flow_queue_surging(const pc_flow_queue_t *queue, uint64_t now_ns) {
    PC_ASSERT(queue->count <= queue->capacity);
    if (queue->standing_ns == 0 || queue->count == 0) return false;
    uint64_t tick = surge_tick(now_ns);
    uint64_t arrived = 0, left = 0;
    for (uint32_t i = 0; i < PC_FLOW_SURGE_SLOTS; i++) {
        if (queue->surge_tick[i] + PC_FLOW_SURGE_SLOTS <= tick) continue; /* stale */
        /* Only slots in which requests left: a stall's arrivals are not a
         * surge, nor is the drain after it, which takes out more than arrive. */
        if (queue->surge_left[i] == 0) continue;
        arrived += queue->surge_arrived[i];
        left += queue->surge_left[i];
    }
    return left > 0 && arrived >= 2 * left + PC_FLOW_SURGE_EVENTS_MIN;
}

int pc_flow_queue_standing(pc_flow_queue_t *queue, uint64_t standing_ns, uint64_t wait_ns) {
    PC_ASSERT(queue != NULL);
    PC_ASSERT(queue->capacity > 0); /* initialized */
    if ((standing_ns == 0) != (wait_ns == 0)) return PC_EINVAL;
    if (standing_ns != 0 && wait_ns >= standing_ns) return PC_EINVAL;
    queue->standing_ns = standing_ns;
    queue->standing_wait_ns = wait_ns;
    return PC_OK;
}

void pc_flow_queue_pass(pc_flow_queue_t *queue, uint64_t now_ns, uint32_t events) {
    PC_ASSERT(events > 0); /* a slot some request left has events left */
    PC_ASSERT(queue->count <= queue->capacity);
    PC_ASSERT(queue->capacity > 0);
    queue->good_ns = PC_MAX(queue->good_ns, now_ns);
    surge_count(queue, now_ns, events, events);
}

/* Standing: every request for standing_ns had to queue (no pass), or the
 * queue is still refusing (an expired pop within standing_ns): it stays
 * standing until the units keep up for standing_ns, so refusing the backlog
 * (which may empty the queue for a moment) does not end it. good_ns is 0
 * until the first push or pass: no history is no backlog. */
bool pc_flow_queue_is_standing(const pc_flow_queue_t *queue, uint64_t now_ns) {
    PC_ASSERT(queue->count <= queue->capacity);
    if (queue->standing_ns == 0 || queue->good_ns == 0) return false;
    PC_ASSERT(queue->standing_wait_ns < queue->standing_ns);
    /* Callers' clocks are monotonic, but a time read a moment before the
     * last pass or pop may arrive after it: differences saturate at 0. */
    uint64_t since_good = now_ns > queue->good_ns ? now_ns - queue->good_ns : 0;
    uint64_t since_late = now_ns > queue->late_ns ? now_ns - queue->late_ns : 0;
    return since_good >= queue->standing_ns ||
           (queue->late_ns != 0 && since_late < queue->standing_ns) ||
           pc_flow_queue_surging(queue, now_ns);
}

/* Is items[index] expired at now_ns? */
static bool item_late(const pc_flow_queue_t *queue, uint32_t index, uint64_t now_ns) {
    PC_ASSERT(index < queue->capacity);
    const pc_flow_item_t *item = &queue->items[index];
    /* A deadline equal to now counts as missed: there is no time left to serve it. */
    if (item->deadline_ns <= now_ns) return true;
    /* Standing: a wait that long is the backlog's, refuse it (Maurer, "Fail
     * at Scale", 2015: adaptive queue timeouts; Nichols and Jacobson, CoDel). */
    uint64_t pushed = queue->pushed_ns[index];
    uint64_t waited = now_ns > pushed ? now_ns - pushed : 0;
    return queue->standing_ns != 0 && waited >= queue->standing_wait_ns &&
           pc_flow_queue_is_standing(queue, now_ns);
}

bool pc_flow_queue_late(const pc_flow_queue_t *queue, uint64_t now_ns) {
    PC_ASSERT(queue->count <= queue->capacity);
    return queue->count > 0 && item_late(queue, queue->head, now_ns);
}

bool pc_flow_queue_sheds(const pc_flow_queue_t *queue, uint64_t now_ns, uint32_t queued_min) {
    PC_ASSERT(queued_min > 0);
    return queue->count >= queued_min && pc_flow_queue_is_standing(queue, now_ns);
}

pc_flow_reason_t pc_flow_queue_push(pc_flow_queue_t *queue, uint64_t now_ns, pc_flow_item_t item) {
    PC_ASSERT(queue->capacity > 0 && queue->capacity <= PC_FLOW_QUEUE_MAX);
    PC_ASSERT(queue->count <= queue->capacity);
    PC_ASSERT(item.events > 0);
    /* Already late: rejecting now is cheaper and more honest than queueing. */
    if (item.deadline_ns <= now_ns) return PC_FLOW_REASON_deadline;
    if (queue->count == queue->capacity) return PC_FLOW_REASON_queue_full;
    if (queue->good_ns == 0) queue->good_ns = now_ns;
    uint32_t tail = (queue->head + queue->count) % queue->capacity;
    queue->items[tail] = item;
    queue->pushed_ns[tail] = now_ns;
    queue->count++;
    surge_count(queue, now_ns, item.events, 0);
    PC_ASSERT(queue->count <= queue->capacity);
    return PC_FLOW_REASON_none;
}

bool pc_flow_queue_pop(pc_flow_queue_t *queue, uint64_t now_ns, pc_flow_item_t *out,
                       pc_flow_reason_t *reason) {
    PC_ASSERT(queue->count <= queue->capacity);
    PC_ASSERT(out != NULL && reason != NULL);
    if (queue->count == 0) return false;
    *out = queue->items[queue->head];
    *reason = item_late(queue, queue->head, now_ns) ? PC_FLOW_REASON_deadline
                                                   : PC_FLOW_REASON_none;
    queue->head = (queue->head + 1) % queue->capacity;
    queue->count--;
    if (*reason == PC_FLOW_REASON_deadline) queue->late_ns = now_ns;
    surge_count(queue, now_ns, 0, out->events); /* served or refused, it left */
    PC_ASSERT(queue->head < queue->capacity);
    return true;
}

uint32_t pc_flow_queue_count(const pc_flow_queue_t *queue) {
    PC_ASSERT(queue->count <= queue->capacity);
    PC_ASSERT(queue->capacity <= PC_FLOW_QUEUE_MAX);
    return queue->count;
}
