/*
 * flow_breaker.c — circuit breaker per target (one per unit).
 *
 * When a unit is failing or has become slow, sending it more calls only
 * deepens its queue and makes every caller wait out a time-out. The breaker
 * watches a sliding window (split into buckets, as Sentinel's LeapArray, so
 * old outcomes fall out in steps without storing each call) and, once the
 * window holds at least requests_min calls and the error ratio or the
 * slow-call ratio reaches its threshold, opens: calls are rejected at once
 * for open_ns. Then it goes half-open and admits `probes` calls; if all
 * succeed in time the unit has recovered and the breaker closes with a fresh
 * window, and one failure or slow probe reopens it for another open_ns.
 */
#include "gateway.h"

/* The bucket for now_ns, cleared if it last held an older span. */
static pc_flow_breaker_bucket_t *bucket_at(pc_flow_breaker_t *b, uint64_t now_ns) {
    uint64_t span = b->config.window_ns / b->config.buckets;
    PC_ASSERT(span > 0);
    uint64_t start = now_ns - now_ns % span;
    pc_flow_breaker_bucket_t *k = &b->buckets[(now_ns / span) % b->config.buckets];
    if (k->start_ns != start) *k = (pc_flow_breaker_bucket_t){.start_ns = start};
    PC_ASSERT(k->errors <= k->calls && k->slow <= k->calls);
    return k;
}

/* Totals over the buckets still inside the window ending at now_ns. */
static void totals(const pc_flow_breaker_t *b, uint64_t now_ns, uint64_t *calls,
                   uint64_t *errors, uint64_t *slow) {
    uint64_t span = b->config.window_ns / b->config.buckets;
    PC_ASSERT(span > 0);
    /* The window is the current bucket and the buckets - 1 spans before it. */
    uint64_t back = span * (b->config.buckets - 1);
    uint64_t oldest = now_ns - now_ns % span;
    oldest = oldest >= back ? oldest - back : 0;
    *calls = *errors = *slow = 0;
    for (uint32_t i = 0; i < b->config.buckets; i++) {
        const pc_flow_breaker_bucket_t *k = &b->buckets[i];
        if (k->calls == 0 || k->start_ns < oldest || k->start_ns > now_ns) continue;
        *calls += k->calls;
        *errors += k->errors;
        *slow += k->slow;
    }
    PC_ASSERT(*errors <= *calls && *slow <= *calls);
}

static void trip(pc_flow_breaker_t *b, uint64_t now_ns) {
    PC_ASSERT(b->state != PC_FLOW_BREAKER_open);
    b->state = PC_FLOW_BREAKER_open;
    b->open_until_ns = now_ns + b->config.open_ns;
    b->probes_admitted = 0;
    b->probes_ok = 0;
    PC_ASSERT(b->open_until_ns > now_ns);
}

int pc_flow_breaker_init(pc_flow_breaker_t *breaker, const pc_flow_breaker_config_t *config) {
    PC_ASSERT(breaker != NULL);
    PC_ASSERT(config != NULL);
    const pc_flow_breaker_config_t *c = config;
    if (c->buckets == 0 || c->buckets > PC_FLOW_BREAKER_BUCKETS_MAX) return PC_EINVAL;
    if (c->window_ns < c->buckets || c->requests_min == 0 || c->probes == 0) return PC_EINVAL;
    if (c->error_ratio_pct > 100 || c->slow_ratio_pct > 100) return PC_EINVAL;
    if (c->error_ratio_pct == 0 && c->slow_ratio_pct == 0) return PC_EINVAL;
    if (c->open_ns == 0) return PC_EINVAL;
    *breaker = (pc_flow_breaker_t){.config = *c, .state = PC_FLOW_BREAKER_closed};
    /* No bucket may look current before it is written: mark all as unused. */
    for (uint32_t i = 0; i < PC_FLOW_BREAKER_BUCKETS_MAX; i++) {
        breaker->buckets[i].start_ns = UINT64_MAX;
    }
    return PC_OK;
}

bool pc_flow_breaker_allow(pc_flow_breaker_t *breaker, uint64_t now_ns) {
    PC_ASSERT(breaker->state <= PC_FLOW_BREAKER_half_open);
    PC_ASSERT(breaker->probes_admitted <= breaker->config.probes);
    if (breaker->state == PC_FLOW_BREAKER_closed) return true;
    if (breaker->state == PC_FLOW_BREAKER_open) {
        if (now_ns < breaker->open_until_ns) return false;
        breaker->state = PC_FLOW_BREAKER_half_open;
        breaker->probes_admitted = 0;
        breaker->probes_ok = 0;
    }
    if (breaker->probes_admitted == breaker->config.probes) return false;
    breaker->probes_admitted++;
    return true;
}

void pc_flow_breaker_record(pc_flow_breaker_t *breaker, uint64_t now_ns, uint64_t rtt_ns,
                            bool ok) {
    const pc_flow_breaker_config_t *c = &breaker->config;
    PC_ASSERT(breaker->state <= PC_FLOW_BREAKER_half_open);
    PC_ASSERT(breaker->probes_ok <= breaker->probes_admitted);
    bool slow = rtt_ns > c->slow_call_ns;
    if (breaker->state == PC_FLOW_BREAKER_open) return; /* a late answer from before */
    if (breaker->state == PC_FLOW_BREAKER_half_open) {
        /* A slow probe counts as failed only if slowness can trip the breaker. */
        if (!ok || (slow && c->slow_ratio_pct > 0)) {
            trip(breaker, now_ns);
            return;
        }
        breaker->probes_ok++;
        if (breaker->probes_ok < c->probes) return;
        breaker->state = PC_FLOW_BREAKER_closed;
        for (uint32_t i = 0; i < c->buckets; i++) breaker->buckets[i].start_ns = UINT64_MAX;
        return;
    }
    pc_flow_breaker_bucket_t *k = bucket_at(breaker, now_ns);
    k->calls++;
    k->errors += ok ? 0 : 1;
    k->slow += slow ? 1 : 0;
    uint64_t calls, errors, slows;
    totals(breaker, now_ns, &calls, &errors, &slows);
    if (calls < c->requests_min) return;
    bool errors_trip = c->error_ratio_pct > 0 && errors * 100 >= calls * c->error_ratio_pct;
    bool slow_trip = c->slow_ratio_pct > 0 && slows * 100 >= calls * c->slow_ratio_pct;
    if (errors_trip || slow_trip) trip(breaker, now_ns);
}

pc_flow_breaker_state_t pc_flow_breaker_state(const pc_flow_breaker_t *breaker) {
    PC_ASSERT(breaker->state <= PC_FLOW_BREAKER_half_open);
    PC_ASSERT(breaker->probes_admitted <= breaker->config.probes);
    return breaker->state;
}
