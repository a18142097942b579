/*
 * flow_callers.c — a token bucket per caller, in bounded memory.
 *
 * Sentinel limits each caller ("origin") on its own, so one client cannot
 * take the whole front door. A caller is an API key (or, on a gateway
 * without keys, a source address), hashed to a window of slots in a fixed
 * table: no allocation, and a table full of callers evicts the one idle
 * longest in the window. Eviction can only be generous (the caller's next
 * request gets a fresh bucket), never stricter than the limit.
 */
#include "gateway.h"

#include <string.h>

PC_STATIC_ASSERT((PC_FLOW_CALLERS_MAX & (PC_FLOW_CALLERS_MAX - 1)) == 0, "a power of two");
PC_STATIC_ASSERT(PC_FLOW_CALLERS_PROBE <= PC_FLOW_CALLERS_MAX, "the window fits the table");

int pc_flow_callers_init(pc_flow_callers_t *callers, const pc_flow_bucket_config_t *config) {
    PC_ASSERT(callers != NULL);
    PC_ASSERT(config != NULL);
    pc_flow_bucket_t probe;
    if (pc_flow_bucket_init(&probe, config) != PC_OK) return PC_EINVAL;
    memset(callers, 0, sizeof *callers);
    callers->config = *config;
    return PC_OK;
}

/* Callers are key hashes or addresses: mix them so neighbours spread. */
static uint32_t home_of(uint64_t caller) {
    uint64_t h = caller * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(h >> 32) & (PC_FLOW_CALLERS_MAX - 1u);
}

pc_flow_bucket_t *pc_flow_callers_bucket(pc_flow_callers_t *callers, uint64_t caller,
                                         uint64_t now_ns) {
    PC_ASSERT(callers->config.rate_per_s >= 1); /* initialized */
    uint32_t home = home_of(caller);
    pc_flow_caller_slot_t *free_slot = NULL, *oldest = NULL;
    for (uint32_t k = 0; k < PC_FLOW_CALLERS_PROBE; k++) {
        pc_flow_caller_slot_t *s = &callers->slots[(home + k) & (PC_FLOW_CALLERS_MAX - 1u)];
        if (s->used && s->caller == caller) {
            s->last_ns = now_ns;
            return &s->bucket;
        }
        if (!s->used && free_slot == NULL) free_slot = s;
        if (s->used && (oldest == NULL || s->last_ns < oldest->last_ns)) oldest = s;
    }
    pc_flow_caller_slot_t *slot = free_slot != NULL ? free_slot : oldest;
    PC_ASSERT(slot != NULL);
    if (slot->used) callers->evictions++;
    *slot = (pc_flow_caller_slot_t){.caller = caller, .last_ns = now_ns, .used = true};
    int rc = pc_flow_bucket_init(&slot->bucket, &callers->config);
    PC_ASSERT(rc == PC_OK); /* validated in pc_flow_callers_init */
    return &slot->bucket;
}
