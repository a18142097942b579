/*
 * flow_hot.c — heavy hitters (Space-Saving) and per-hot-key rate limits.
 *
 * On Double 11 one merchant can take most of the traffic. Limiting every
 * account would need a bucket per account; limiting none lets the hot one
 * crowd out everyone. The Space-Saving sketch finds the busiest keys in
 * bounded memory: `counters` slots, and a key not tracked evicts the
 * smallest, inheriting its count as a recorded overestimate (err), so any
 * key with a true share above 1/counters is always tracked and
 * count - err is a guaranteed lower bound. Counts live in two fixed windows
 * (current and previous) and rates blend them by how far the current window
 * has run, so old traffic fades out instead of keeping a key hot forever.
 *
 * pc_flow_hot_t pairs the sketch with a small table of token buckets: only
 * keys that are hot get a bucket, so the table stays tiny, and a cold key is
 * never throttled here. Hotness uses the guaranteed lower bound so an
 * account that merely inherited a big err never gets limited.
 */
#include "gateway.h"

/* Moves the windows forward to the one holding now_ns. */
static void roll(pc_flow_sketch_t *s, uint64_t now_ns) {
    uint64_t w = s->config.window_ns;
    PC_ASSERT(w > 0);
    if (!s->started) {
        s->started = true;
        s->window_start_ns = now_ns;
        return;
    }
    PC_ASSERT(now_ns >= s->window_start_ns); /* callers pass a monotonic clock */
    uint64_t windows = (now_ns - s->window_start_ns) / w;
    if (windows == 0) return;
    for (uint32_t i = 0; i < s->config.counters; i++) {
        pc_flow_sketch_entry_t *e = &s->entries[i];
        if (!e->used) continue;
        /* One window: current becomes previous. Two or more: both are stale. */
        e->count_prev = windows == 1 ? e->count_cur : 0;
        e->err_prev = windows == 1 ? e->err_cur : 0;
        e->count_cur = 0;
        e->err_cur = 0;
        if (e->count_prev == 0) e->used = false;
    }
    s->window_start_ns += windows * w;
}

static pc_flow_sketch_entry_t *find(pc_flow_sketch_t *s, pc_u128 key) {
    PC_ASSERT(s->config.counters <= PC_FLOW_HOT_COUNTERS_MAX);
    /* A linear scan: at most 128 slots of one cache line or so each, and no
     * index to keep consistent on eviction. */
    for (uint32_t i = 0; i < s->config.counters; i++) {
        if (s->entries[i].used && s->entries[i].key == key) {
            PC_ASSERT(s->entries[i].err_cur <= s->entries[i].count_cur);
            return &s->entries[i];
        }
    }
    return NULL;
}

/* Blends the windows: all of current plus the part of previous still inside
 * a window-long sliding span ending now. Returns events per second. */
static uint64_t rate_of(const pc_flow_sketch_t *s, uint64_t cur, uint64_t prev, uint64_t now_ns) {
    uint64_t w = s->config.window_ns;
    PC_ASSERT(now_ns >= s->window_start_ns && now_ns - s->window_start_ns < w);
    uint64_t left = w - (now_ns - s->window_start_ns);
    pc_u128 events = (pc_u128)cur * w + (pc_u128)prev * left; /* x w */
    pc_u128 per_s = events * 1000000000ull / ((pc_u128)w * w);
    PC_ASSERT(per_s <= (pc_u128)UINT64_MAX);
    return (uint64_t)per_s;
}

static uint64_t guaranteed_rate(const pc_flow_sketch_t *s, const pc_flow_sketch_entry_t *e,
                                uint64_t now_ns) {
    PC_ASSERT(e->used);
    PC_ASSERT(e->err_cur <= e->count_cur && e->err_prev <= e->count_prev);
    return rate_of(s, e->count_cur - e->err_cur, e->count_prev - e->err_prev, now_ns);
}

int pc_flow_sketch_init(pc_flow_sketch_t *sketch, const pc_flow_sketch_config_t *config) {
    PC_ASSERT(sketch != NULL);
    PC_ASSERT(config != NULL);
    if (config->counters == 0 || config->counters > PC_FLOW_HOT_COUNTERS_MAX) return PC_EINVAL;
    if (config->top_k == 0 || config->top_k > config->counters) return PC_EINVAL;
    if (config->window_ns == 0 || config->window_ns > 3600ull * 1000000000ull) return PC_EINVAL;
    *sketch = (pc_flow_sketch_t){.config = *config};
    return PC_OK;
}

void pc_flow_sketch_observe(pc_flow_sketch_t *sketch, pc_u128 key, uint64_t now_ns,
                            uint64_t count) {
    PC_ASSERT(count >= 1);
    roll(sketch, now_ns);
    pc_flow_sketch_entry_t *e = find(sketch, key);
    if (e != NULL) {
        e->count_cur += count;
        return;
    }
    /* Untracked: take a free slot, else evict the smallest (Space-Saving). */
    pc_flow_sketch_entry_t *victim = NULL;
    for (uint32_t i = 0; i < sketch->config.counters; i++) {
        pc_flow_sketch_entry_t *c = &sketch->entries[i];
        if (!c->used) {
            victim = c;
            break;
        }
        if (victim == NULL ||
            c->count_cur + c->count_prev < victim->count_cur + victim->count_prev) {
            victim = c;
        }
    }
    PC_ASSERT(victim != NULL);
    uint64_t inherited = victim->used ? victim->count_cur + victim->count_prev : 0;
    *victim = (pc_flow_sketch_entry_t){
        .key = key, .count_cur = inherited + count, .err_cur = inherited, .used = true};
    PC_ASSERT(victim->err_cur < victim->count_cur);
}

uint64_t pc_flow_sketch_rate(pc_flow_sketch_t *sketch, pc_u128 key, uint64_t now_ns) {
    PC_ASSERT(sketch->config.window_ns > 0);
    roll(sketch, now_ns);
    const pc_flow_sketch_entry_t *e = find(sketch, key);
    if (e == NULL) return 0;
    PC_ASSERT(e->used);
    return rate_of(sketch, e->count_cur, e->count_prev, now_ns);
}

bool pc_flow_sketch_is_hot(pc_flow_sketch_t *sketch, pc_u128 key, uint64_t now_ns) {
    PC_ASSERT(sketch->config.top_k >= 1);
    roll(sketch, now_ns);
    const pc_flow_sketch_entry_t *e = find(sketch, key);
    if (e == NULL) return false;
    uint64_t rate = guaranteed_rate(sketch, e, now_ns);
    if (rate < sketch->config.hot_rate_min_per_s) return false;
    /* Rank = how many tracked keys are strictly ahead; ties share a rank. */
    uint32_t ahead = 0;
    for (uint32_t i = 0; i < sketch->config.counters; i++) {
        const pc_flow_sketch_entry_t *c = &sketch->entries[i];
        if (c->used && c != e && guaranteed_rate(sketch, c, now_ns) > rate) ahead++;
    }
    PC_ASSERT(ahead < sketch->config.counters);
    return ahead < sketch->config.top_k;
}

int pc_flow_hot_init(pc_flow_hot_t *hot, const pc_flow_hot_config_t *config) {
    PC_ASSERT(hot != NULL);
    PC_ASSERT(config != NULL);
    if (config->buckets == 0 || config->buckets > PC_FLOW_HOT_BUCKETS_MAX) return PC_EINVAL;
    /* Fewer buckets than hot keys would make hot keys evict each other's
     * buckets, and every fresh bucket starts full: the cap would leak. */
    if (config->buckets < config->sketch.top_k) return PC_EINVAL;
    pc_flow_bucket_t probe;
    pc_flow_bucket_config_t bc = {.rate_per_s = config->key_rate_per_s, .burst = config->key_burst};
    if (pc_flow_bucket_init(&probe, &bc) != PC_OK) return PC_EINVAL;
    *hot = (pc_flow_hot_t){.config = *config};
    return pc_flow_sketch_init(&hot->sketch, &config->sketch);
}

/* The slot limiting key: existing, else free, else the least recently used
 * (a key that stopped being hot stops touching its slot, so it ages out). */
static pc_flow_hot_slot_t *slot_for(pc_flow_hot_t *hot, pc_u128 key) {
    pc_flow_hot_slot_t *free_slot = NULL, *oldest = NULL;
    PC_ASSERT(hot->config.buckets <= PC_FLOW_HOT_BUCKETS_MAX);
    for (uint32_t i = 0; i < hot->config.buckets; i++) {
        pc_flow_hot_slot_t *s = &hot->slots[i];
        if (s->used && s->key == key) return s;
        if (!s->used && free_slot == NULL) free_slot = s;
        if (s->used && (oldest == NULL || s->last_ns < oldest->last_ns)) oldest = s;
    }
    pc_flow_hot_slot_t *slot = free_slot != NULL ? free_slot : oldest;
    PC_ASSERT(slot != NULL);
    pc_flow_bucket_config_t bc = {.rate_per_s = hot->config.key_rate_per_s,
                                  .burst = hot->config.key_burst};
    *slot = (pc_flow_hot_slot_t){.key = key, .used = true};
    int rc = pc_flow_bucket_init(&slot->bucket, &bc);
    PC_ASSERT(rc == PC_OK); /* validated in pc_flow_hot_init */
    return slot;
}

uint32_t pc_flow_hot_take(pc_flow_hot_t *hot, pc_u128 key, uint64_t now_ns, uint32_t count) {
    PC_ASSERT(hot->config.buckets >= 1);
    PC_ASSERT(count >= 1);
    /* Offered load, rejected or not, is what makes a key hot: count it first. */
    pc_flow_sketch_observe(&hot->sketch, key, now_ns, count);
    if (!pc_flow_sketch_is_hot(&hot->sketch, key, now_ns)) return count;
    pc_flow_hot_slot_t *slot = slot_for(hot, key);
    slot->last_ns = now_ns;
    uint64_t taken = pc_flow_bucket_take(&slot->bucket, now_ns, count);
    PC_ASSERT(taken <= count);
    return (uint32_t)taken;
}

bool pc_flow_hot_try(pc_flow_hot_t *hot, pc_u128 key, uint64_t now_ns) {
    PC_ASSERT(hot->config.key_rate_per_s >= 1);
    return pc_flow_hot_take(hot, key, now_ns, 1) == 1;
}
