/*
 * flow_limiter.c — adaptive concurrency limiter, BBR-style.
 *
 * A unit has a knee: below it, more in-flight requests mean more throughput
 * at the same latency; above it, they only queue and add latency. The
 * in-flight count at the knee is the bandwidth-delay product: max delivery
 * rate x min RTT. The limiter estimates both from completed requests (a
 * max filter over the last rate_samples delivery-rate samples, and a min RTT
 * that expires after rtt_window_ns) and sets limit = BDP x (1 + headroom) + 1,
 * the headroom letting the limit grow while the unit is below its knee.
 *
 * Above the knee every RTT includes queueing, so the min RTT would creep up
 * with the limit and the two would chase each other upward. As BBR does,
 * when the min RTT has not been refreshed for rtt_window_ns the limiter
 * probes: for probe_ns it admits only half the limit, the queue drains, and
 * the smallest RTT seen during the probe becomes the new min RTT.
 */
#include "gateway.h"

static uint64_t rate_max(const pc_flow_limiter_t *l) {
    uint64_t best = 0;
    PC_ASSERT(l->rate_count <= l->config.rate_samples);
    for (uint32_t i = 0; i < l->rate_count; i++) best = PC_MAX(best, l->rate_mps[i]);
    PC_ASSERT(l->config.rate_samples <= PC_FLOW_LIMITER_RATE_SAMPLES_MAX);
    return best;
}

/* limit = max_rate x min_rtt x (100 + headroom)/100 + 1, clamped. */
static void recompute(pc_flow_limiter_t *l) {
    PC_ASSERT(!l->probing);
    if (l->rate_count == 0 || l->rtt_min_ns == UINT64_MAX) return;
    pc_u128 bdp_milli = (pc_u128)rate_max(l) * l->rtt_min_ns / 1000000000ull;
    pc_u128 target = bdp_milli * (100u + l->config.headroom_pct) / 100000u + 1u;
    if (target > l->config.limit_max) target = l->config.limit_max;
    if (target < l->config.limit_min) target = l->config.limit_min;
    l->limit = (uint32_t)target;
    PC_ASSERT(l->limit >= l->config.limit_min && l->limit <= l->config.limit_max);
}

/* Closes the delivery-rate sample once sample_ns has passed. */
static void sample(pc_flow_limiter_t *l, uint64_t now_ns) {
    PC_ASSERT(l->config.sample_ns > 0);
    if (!l->sample_started) {
        l->sample_started = true;
        l->sample_start_ns = now_ns;
        l->sample_delivered = 0;
        return;
    }
    PC_ASSERT(now_ns >= l->sample_start_ns);
    uint64_t elapsed = now_ns - l->sample_start_ns;
    if (elapsed < l->config.sample_ns) return;
    /* Samples taken while probing measure the probe, not the unit: skip them. */
    if (!l->probing) {
        pc_u128 mps = (pc_u128)l->sample_delivered * 1000000000000ull / elapsed;
        l->rate_mps[l->rate_next] = mps > UINT64_MAX ? UINT64_MAX : (uint64_t)mps;
        l->rate_next = (l->rate_next + 1) % l->config.rate_samples;
        if (l->rate_count < l->config.rate_samples) l->rate_count++;
        recompute(l);
    }
    l->sample_start_ns = now_ns;
    l->sample_delivered = 0;
}

/* Ends a probe whose time is up: its smallest RTT is the fresh min RTT. */
static void probe_check(pc_flow_limiter_t *l, uint64_t now_ns) {
    PC_ASSERT(l->probing);
    PC_ASSERT(l->probe_end_ns > 0);
    if (now_ns < l->probe_end_ns) return;
    l->probing = false;
    if (l->probe_rtt_min_ns != UINT64_MAX) l->rtt_min_ns = l->probe_rtt_min_ns;
    l->rtt_min_stamp_ns = now_ns;
    recompute(l);
}

int pc_flow_limiter_init(pc_flow_limiter_t *limiter, const pc_flow_limiter_config_t *config) {
    PC_ASSERT(limiter != NULL);
    PC_ASSERT(config != NULL);
    const pc_flow_limiter_config_t *c = config;
    if (c->limit_min == 0 || c->limit_max < c->limit_min) return PC_EINVAL;
    if (c->limit_initial < c->limit_min || c->limit_initial > c->limit_max) return PC_EINVAL;
    if (c->headroom_pct > 1000 || c->sample_ns == 0 || c->rtt_window_ns == 0) return PC_EINVAL;
    if (c->rate_samples == 0 || c->rate_samples > PC_FLOW_LIMITER_RATE_SAMPLES_MAX) {
        return PC_EINVAL;
    }
    if (c->probe_ns == 0 || c->probe_ns >= c->rtt_window_ns) return PC_EINVAL;
    *limiter = (pc_flow_limiter_t){.config = *c, .limit = c->limit_initial};
    limiter->rtt_min_ns = UINT64_MAX;
    limiter->probe_rtt_min_ns = UINT64_MAX;
    return PC_OK;
}

uint32_t pc_flow_limiter_limit(const pc_flow_limiter_t *limiter) {
    PC_ASSERT(limiter->limit >= limiter->config.limit_min);
    PC_ASSERT(limiter->limit <= limiter->config.limit_max);
    return limiter->limit;
}

uint32_t pc_flow_limiter_limit_now(const pc_flow_limiter_t *limiter) {
    PC_ASSERT(!limiter->probing || limiter->probe_end_ns > 0);
    uint32_t limit = pc_flow_limiter_limit(limiter);
    uint32_t now = limiter->probing ? PC_MAX(limit / 2, limiter->config.limit_min) : limit;
    PC_ASSERT(now >= limiter->config.limit_min && now <= limit);
    return now;
}

bool pc_flow_limiter_acquire(pc_flow_limiter_t *limiter, uint64_t now_ns) {
    PC_ASSERT(limiter->config.limit_max >= limiter->config.limit_min);
    if (limiter->probing) probe_check(limiter, now_ns);
    if (limiter->inflight >= pc_flow_limiter_limit_now(limiter)) return false;
    limiter->inflight++;
    PC_ASSERT(limiter->inflight > 0);
    return true;
}

/* Work that must run whatever the limit (the later steps of a request that
 * was admitted: refusing them could strand half-done work) is still counted,
 * so the limit keeps seeing the load the target really has. */
void pc_flow_limiter_acquire_force(pc_flow_limiter_t *limiter, uint64_t now_ns) {
    PC_ASSERT(limiter->inflight < UINT32_MAX);
    if (limiter->probing) probe_check(limiter, now_ns);
    limiter->inflight++;
    PC_ASSERT(limiter->inflight > 0);
}

bool pc_flow_limiter_admits(pc_flow_limiter_t *limiter, uint64_t now_ns, uint32_t pct) {
    PC_ASSERT(pct >= 1 && pct <= 100);
    if (limiter->probing) probe_check(limiter, now_ns);
    uint64_t room = (uint64_t)pc_flow_limiter_limit_now(limiter) * pct / 100u;
    PC_ASSERT(room <= limiter->config.limit_max);
    return limiter->inflight < PC_MAX(room, 1u);
}

void pc_flow_limiter_release(pc_flow_limiter_t *limiter, uint64_t now_ns, uint64_t rtt_ns,
                             bool ok) {
    PC_ASSERT(limiter->inflight > 0); /* a release without an acquire is a caller bug */
    limiter->inflight--;
    if (ok) {
        limiter->sample_delivered++;
        if (limiter->probing) {
            limiter->probe_rtt_min_ns = PC_MIN(limiter->probe_rtt_min_ns, rtt_ns);
        } else if (rtt_ns <= limiter->rtt_min_ns) {
            limiter->rtt_min_ns = rtt_ns;
            limiter->rtt_min_stamp_ns = now_ns;
        } else if (now_ns - limiter->rtt_min_stamp_ns > limiter->config.rtt_window_ns) {
            limiter->probing = true;
            limiter->probe_end_ns = now_ns + limiter->config.probe_ns;
            limiter->probe_rtt_min_ns = UINT64_MAX;
        }
    }
    if (limiter->probing) probe_check(limiter, now_ns);
    sample(limiter, now_ns);
}
