/*
 * flow_bucket.c — token bucket with Sentinel-style warm-up.
 *
 * A bucket refills at rate_per_s up to burst tokens. A system that has been
 * idle (cold caches, cold connection pools, a JIT-less but still cold page
 * cache) cannot take full rate at once, so after a cold start the refill
 * rate starts at rate/3 and ramps linearly to rate over warmup_ms, and the
 * capacity scales with it; idling longer than cold_ms makes the bucket cold
 * again. Tokens are kept in nanotokens (tokens x 1e9) so a refill is one
 * multiply of a rate in tokens/s by nanoseconds, exact and integer-only.
 */
#include "gateway.h"

#define NANO 1000000000ull

PC_STATIC_ASSERT(PC_FLOW_BUCKET_BURST_MAX <= UINT64_MAX / NANO, "nanotokens fit u64");

/* Refill rate at time t: linear from rate/3 to rate across the warm-up. */
static uint64_t rate_at(const pc_flow_bucket_t *b, uint64_t t) {
    uint64_t rate = b->config.rate_per_s;
    uint64_t warmup_ns = b->config.warmup_ms * 1000000ull;
    PC_ASSERT(rate >= 1);
    if (warmup_ns == 0 || t >= b->warm_start_ns + warmup_ns) return rate;
    PC_ASSERT(t >= b->warm_start_ns);
    uint64_t cold = PC_MAX(rate / 3, 1);
    pc_u128 ramp = (pc_u128)(rate - cold) * (t - b->warm_start_ns) / warmup_ns;
    return cold + (uint64_t)ramp;
}

/* Capacity scales with the current rate so a cold bucket also bursts less. */
static uint64_t capacity_nano(const pc_flow_bucket_t *b, uint64_t t) {
    PC_ASSERT(b->config.rate_per_s >= 1);
    pc_u128 cap = (pc_u128)b->config.burst * rate_at(b, t) / b->config.rate_per_s;
    uint64_t tokens = PC_MAX((uint64_t)cap, 1);
    PC_ASSERT(tokens <= b->config.burst);
    return tokens * NANO;
}

static void refill(pc_flow_bucket_t *b, uint64_t now_ns) {
    if (!b->started) {
        /* The first call starts the clock, cold: warm-up applies from here. */
        b->started = true;
        b->refill_ns = now_ns;
        b->warm_start_ns = now_ns;
        b->last_seen_ns = now_ns;
        b->tokens_nano = capacity_nano(b, now_ns);
        return;
    }
    PC_ASSERT(now_ns >= b->refill_ns); /* callers pass a monotonic clock */
    uint64_t cold_ns = b->config.cold_ms * 1000000ull;
    if (b->config.warmup_ms > 0 && now_ns - b->last_seen_ns > cold_ns) {
        b->warm_start_ns = now_ns;
        b->refill_ns = now_ns;
        b->tokens_nano = PC_MIN(b->tokens_nano, capacity_nano(b, now_ns));
        return;
    }
    /* The trapezoid of the two rates is exact on the linear ramp. */
    pc_u128 rate_sum = (pc_u128)rate_at(b, b->refill_ns) + rate_at(b, now_ns);
    pc_u128 added = rate_sum * (now_ns - b->refill_ns) / 2;
    uint64_t cap = capacity_nano(b, now_ns);
    pc_u128 tokens = (pc_u128)b->tokens_nano + added;
    b->tokens_nano = tokens > cap ? cap : (uint64_t)tokens;
    b->refill_ns = now_ns;
    PC_ASSERT(b->tokens_nano <= cap);
}

int pc_flow_bucket_init(pc_flow_bucket_t *bucket, const pc_flow_bucket_config_t *config) {
    PC_ASSERT(bucket != NULL);
    PC_ASSERT(config != NULL);
    if (config->rate_per_s == 0 || config->rate_per_s > PC_FLOW_BUCKET_RATE_MAX) return PC_EINVAL;
    if (config->burst == 0 || config->burst > PC_FLOW_BUCKET_BURST_MAX) return PC_EINVAL;
    if (config->warmup_ms > 0 && config->cold_ms == 0) return PC_EINVAL;
    if (config->warmup_ms > 86400000ull || config->cold_ms > 86400000ull) return PC_EINVAL;
    *bucket = (pc_flow_bucket_t){.config = *config};
    return PC_OK;
}

bool pc_flow_bucket_try(pc_flow_bucket_t *bucket, uint64_t now_ns, uint64_t cost) {
    PC_ASSERT(cost >= 1);
    PC_ASSERT(bucket->config.rate_per_s >= 1);
    refill(bucket, now_ns);
    bucket->last_seen_ns = now_ns;
    if (cost > bucket->config.burst) return false;
    uint64_t need = cost * NANO;
    if (bucket->tokens_nano < need) return false;
    bucket->tokens_nano -= need;
    return true;
}

uint64_t pc_flow_bucket_take(pc_flow_bucket_t *bucket, uint64_t now_ns, uint64_t max) {
    PC_ASSERT(max >= 1);
    PC_ASSERT(bucket->config.rate_per_s >= 1);
    refill(bucket, now_ns);
    bucket->last_seen_ns = now_ns;
    uint64_t taken = PC_MIN(bucket->tokens_nano / NANO, max);
    bucket->tokens_nano -= taken * NANO;
    PC_ASSERT(taken <= bucket->config.burst);
    return taken;
}

uint64_t pc_flow_bucket_retry_after_ms(pc_flow_bucket_t *bucket, uint64_t now_ns, uint64_t cost) {
    PC_ASSERT(cost >= 1);
    PC_ASSERT(bucket->config.rate_per_s >= 1);
    refill(bucket, now_ns);
    if (cost > bucket->config.burst) return UINT64_MAX;
    uint64_t need = cost * NANO;
    if (bucket->tokens_nano >= need) return 0;
    /* nanotokens / (tokens per second) = nanoseconds; round up so a client
     * retrying at the hint finds the tokens there. */
    uint64_t rate = rate_at(bucket, now_ns);
    uint64_t wait_ns = (need - bucket->tokens_nano + rate - 1) / rate;
    uint64_t wait_ms = (wait_ns + 999999ull) / 1000000ull;
    return PC_MAX(wait_ms, 1);
}

uint64_t pc_flow_bucket_rate_now(const pc_flow_bucket_t *bucket, uint64_t now_ns) {
    PC_ASSERT(bucket->config.rate_per_s >= 1);
    if (!bucket->started) return PC_MAX(bucket->config.warmup_ms ? bucket->config.rate_per_s / 3
                                                                 : bucket->config.rate_per_s, 1);
    PC_ASSERT(now_ns >= bucket->warm_start_ns);
    return rate_at(bucket, now_ns);
}
