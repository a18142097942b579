/*
 * test_gateway_flow.c — the gateway's flow-control primitives, driven by
 * hand-set time. No test sleeps or reads a clock: every now_ns comes from the
 * test, so each run is identical. The concurrency limiter is checked against
 * a small simulated unit whose service time grows once in-flight passes a
 * knee; the hot-key limiter against a seeded stream where one account takes
 * 90% of the events.
 */
#include "../../src/gateway/gateway.h"
#include "test.h"

#define MS 1000000ull
#define S 1000000000ull

/* ---- reasons ---- */

static void test_reason_names(void) {
    ASSERT_STREQ(pc_flow_reason_name(PC_FLOW_REASON_none), "none");
    ASSERT_STREQ(pc_flow_reason_name(PC_FLOW_REASON_rate), "rate");
    ASSERT_STREQ(pc_flow_reason_name(PC_FLOW_REASON_concurrency), "concurrency");
    ASSERT_STREQ(pc_flow_reason_name(PC_FLOW_REASON_hot_key), "hot_key");
    ASSERT_STREQ(pc_flow_reason_name(PC_FLOW_REASON_circuit_open), "circuit_open");
    ASSERT_STREQ(pc_flow_reason_name(PC_FLOW_REASON_queue_full), "queue_full");
    ASSERT_STREQ(pc_flow_reason_name(PC_FLOW_REASON_deadline), "deadline");
    ASSERT_STREQ(pc_flow_reason_name(PC_FLOW_REASON_caller_rate), "caller_rate");
    ASSERT_STREQ(pc_flow_reason_name(PC_FLOW_REASON_COUNT), "unknown");
}

/* ---- token bucket ---- */

static void test_bucket_config_invalid(void) {
    pc_flow_bucket_t b;
    pc_flow_bucket_config_t c = {.rate_per_s = 0, .burst = 1};
    ASSERT_EQ(pc_flow_bucket_init(&b, &c), PC_EINVAL);
    c = (pc_flow_bucket_config_t){.rate_per_s = 1, .burst = 0};
    ASSERT_EQ(pc_flow_bucket_init(&b, &c), PC_EINVAL);
    c = (pc_flow_bucket_config_t){.rate_per_s = PC_FLOW_BUCKET_RATE_MAX + 1, .burst = 1};
    ASSERT_EQ(pc_flow_bucket_init(&b, &c), PC_EINVAL);
    c = (pc_flow_bucket_config_t){.rate_per_s = 10, .burst = 10, .warmup_ms = 100};
    ASSERT_EQ(pc_flow_bucket_init(&b, &c), PC_EINVAL); /* warm-up needs a cold period */
    c.cold_ms = 1000;
    ASSERT_EQ(pc_flow_bucket_init(&b, &c), PC_OK);
}

/* Offers `per_s` evenly spaced requests over [from, to) and counts admissions. */
static uint64_t offer(pc_flow_bucket_t *b, uint64_t from_ns, uint64_t to_ns, uint64_t per_s) {
    uint64_t admitted = 0, step = S / per_s;
    for (uint64_t t = from_ns; t < to_ns; t += step) admitted += pc_flow_bucket_try(b, t, 1);
    return admitted;
}

static void test_bucket_burst_then_rate(void) {
    pc_flow_bucket_t b;
    pc_flow_bucket_config_t c = {.rate_per_s = 100, .burst = 10};
    ASSERT_EQ(pc_flow_bucket_init(&b, &c), PC_OK);
    uint64_t t0 = 5 * S;
    for (int i = 0; i < 10; i++) ASSERT_TRUE(pc_flow_bucket_try(&b, t0, 1));
    ASSERT_TRUE(!pc_flow_bucket_try(&b, t0, 1));
    ASSERT_EQ(pc_flow_bucket_retry_after_ms(&b, t0, 1), 10); /* one token per 10 ms */
    ASSERT_EQ(pc_flow_bucket_retry_after_ms(&b, t0, 3), 30);
    ASSERT_TRUE(!pc_flow_bucket_try(&b, t0 + 9 * MS, 1));
    ASSERT_TRUE(pc_flow_bucket_try(&b, t0 + 10 * MS, 1));
    /* Over 10 s at 1000/s offered, the bucket passes its rate (and nothing more). */
    uint64_t admitted = offer(&b, t0 + 10 * MS, t0 + 10 * MS + 10 * S, 1000);
    ASSERT_TRUE(admitted >= 999 && admitted <= 1001);
    /* Idle for a while: the bucket refills to burst, never past it. */
    uint64_t t1 = t0 + 60 * S;
    ASSERT_EQ(pc_flow_bucket_retry_after_ms(&b, t1, 10), 0);
    ASSERT_EQ(pc_flow_bucket_retry_after_ms(&b, t1, 11), UINT64_MAX);
    ASSERT_TRUE(!pc_flow_bucket_try(&b, t1, 11));
    ASSERT_TRUE(pc_flow_bucket_try(&b, t1, 10));
    ASSERT_TRUE(!pc_flow_bucket_try(&b, t1, 1));
}

static void test_bucket_warmup_ramp(void) {
    pc_flow_bucket_t b;
    pc_flow_bucket_config_t c = {.rate_per_s = 300, .burst = 30, .warmup_ms = 1000,
                                 .cold_ms = 5000};
    ASSERT_EQ(pc_flow_bucket_init(&b, &c), PC_OK);
    uint64_t t0 = 1 * S;
    ASSERT_EQ(pc_flow_bucket_rate_now(&b, t0), 100);
    /* Cold start: 10 tokens of burst (30 / 3), rate 100/s rising to 300/s. */
    uint64_t first = offer(&b, t0, t0 + S, 2000);
    ASSERT_EQ(pc_flow_bucket_rate_now(&b, t0 + S / 2), 200);
    ASSERT_EQ(pc_flow_bucket_rate_now(&b, t0 + S), 300);
    /* The integral of the ramp is 200 tokens, plus the cold burst of 10. */
    ASSERT_TRUE(first >= 200 && first <= 212);
    uint64_t second = offer(&b, t0 + S, t0 + 2 * S, 2000);
    ASSERT_TRUE(second >= 298 && second <= 302);
}

static void test_bucket_cold_reset(void) {
    pc_flow_bucket_t b;
    pc_flow_bucket_config_t c = {.rate_per_s = 300, .burst = 30, .warmup_ms = 1000,
                                 .cold_ms = 5000};
    ASSERT_EQ(pc_flow_bucket_init(&b, &c), PC_OK);
    uint64_t t0 = 0;
    offer(&b, t0, t0 + 3 * S, 1000);
    ASSERT_EQ(pc_flow_bucket_rate_now(&b, t0 + 3 * S), 300);
    /* Idle 4 s (< cold): still warm. */
    uint64_t t1 = t0 + 7 * S;
    ASSERT_TRUE(pc_flow_bucket_try(&b, t1, 1));
    ASSERT_EQ(pc_flow_bucket_rate_now(&b, t1), 300);
    /* Idle 6 s (> cold): cold again, the ramp restarts at rate / 3. */
    uint64_t t2 = t1 + 6 * S;
    ASSERT_TRUE(pc_flow_bucket_try(&b, t2, 1));
    ASSERT_EQ(pc_flow_bucket_rate_now(&b, t2), 100);
    uint64_t admitted = offer(&b, t2, t2 + S, 2000);
    ASSERT_TRUE(admitted >= 195 && admitted <= 211);
    /* The Retry-After hint uses the current (warming) rate and rounds up. */
    uint64_t t3 = t2 + S + 50 * MS; /* ramp over, rate 300 */
    while (pc_flow_bucket_try(&b, t3, 1)) {}
    uint64_t hint_ms = pc_flow_bucket_retry_after_ms(&b, t3, 1);
    ASSERT_TRUE(hint_ms >= 1 && hint_ms <= 4); /* at most 3.33 ms, rounded up */
    ASSERT_TRUE(!pc_flow_bucket_try(&b, t3 + (hint_ms - 1) * MS, 1) || hint_ms == 1);
    ASSERT_TRUE(pc_flow_bucket_try(&b, t3 + hint_ms * MS, 1));
}

/* ---- queue ---- */

/* Each caller has its own bucket: one caller at its limit leaves the next
 * untouched; the table is bounded, and a full window gives up the caller
 * used least recently, never one that keeps sending. */
static void test_callers_separate_and_bounded(void) {
    static pc_flow_callers_t callers;
    pc_flow_bucket_config_t bad = {.rate_per_s = 0, .burst = 1};
    ASSERT_EQ(pc_flow_callers_init(&callers, &bad), PC_EINVAL);
    pc_flow_bucket_config_t c = {.rate_per_s = 100, .burst = 100};
    ASSERT_EQ(pc_flow_callers_init(&callers, &c), PC_OK);
    uint64_t t = 5 * S;
    pc_flow_bucket_t *a = pc_flow_callers_bucket(&callers, 7, t);
    ASSERT_TRUE(pc_flow_bucket_try(a, t, 100));
    ASSERT_TRUE(!pc_flow_bucket_try(a, t, 1));
    ASSERT_TRUE(pc_flow_callers_bucket(&callers, 7, t) == a); /* found again */
    pc_flow_bucket_t *b = pc_flow_callers_bucket(&callers, 8, t);
    ASSERT_TRUE(b != a && pc_flow_bucket_try(b, t, 100));
    /* Caller 7 keeps sending (its bucket empty) while 20,000 others come
     * once each: the table never grows, and 7 keeps its empty bucket. */
    for (uint64_t k = 0; k < 20000; k++) {
        t += MS / 100;
        pc_flow_bucket_t *other = pc_flow_callers_bucket(&callers, 1000 + k, t);
        ASSERT_TRUE(pc_flow_bucket_try(other, t, 1));
        a = pc_flow_callers_bucket(&callers, 7, t);
        ASSERT_TRUE(!pc_flow_bucket_try(a, t, 2)); /* a fresh bucket would have 100 */
        (void)pc_flow_bucket_take(a, t, 1);        /* drained as it refills */
    }
    ASSERT_TRUE(callers.evictions >= 20000 - PC_FLOW_CALLERS_MAX);
    uint32_t used = 0;
    for (uint32_t i = 0; i < PC_FLOW_CALLERS_MAX; i++) used += callers.slots[i].used;
    ASSERT_TRUE(used <= PC_FLOW_CALLERS_MAX);
}

static void test_queue_full_and_deadlines(void) {
    pc_flow_queue_t *q = calloc(1, sizeof(*q));
    ASSERT_EQ(pc_flow_queue_init(q, 0), PC_EINVAL);
    ASSERT_EQ(pc_flow_queue_init(q, PC_FLOW_QUEUE_MAX + 1), PC_EINVAL);
    ASSERT_EQ(pc_flow_queue_init(q, 3), PC_OK);
    uint64_t now = 1000 * MS;
    ASSERT_EQ(pc_flow_queue_push(q, now, (pc_flow_item_t){1, now + 10 * MS, 1}),
              PC_FLOW_REASON_none);
    ASSERT_EQ(pc_flow_queue_push(q, now, (pc_flow_item_t){2, now + 50 * MS, 1}),
              PC_FLOW_REASON_none);
    ASSERT_EQ(pc_flow_queue_push(q, now, (pc_flow_item_t){3, now + 20 * MS, 1}),
              PC_FLOW_REASON_none);
    ASSERT_EQ(pc_flow_queue_push(q, now, (pc_flow_item_t){4, now + 90 * MS, 1}),
              PC_FLOW_REASON_queue_full);
    ASSERT_EQ(pc_flow_queue_push(q, now, (pc_flow_item_t){5, now, 1}), PC_FLOW_REASON_deadline);
    ASSERT_EQ(pc_flow_queue_count(q), 3);
    ASSERT_EQ(pc_flow_queue_push(q, now + S, (pc_flow_item_t){6, now + 2 * S, 1}),
              PC_FLOW_REASON_queue_full); /* still full, however late */
    /* At +30 ms items 1 and 3 have expired; FIFO order is kept. */
    pc_flow_item_t item;
    pc_flow_reason_t reason;
    uint64_t t = now + 30 * MS;
    ASSERT_TRUE(pc_flow_queue_pop(q, t, &item, &reason));
    ASSERT_EQ(item.id, 1);
    ASSERT_EQ(reason, PC_FLOW_REASON_deadline);
    ASSERT_TRUE(pc_flow_queue_pop(q, t, &item, &reason));
    ASSERT_EQ(item.id, 2);
    ASSERT_EQ(reason, PC_FLOW_REASON_none);
    ASSERT_TRUE(pc_flow_queue_pop(q, t, &item, &reason));
    ASSERT_EQ(item.id, 3);
    ASSERT_EQ(reason, PC_FLOW_REASON_deadline);
    ASSERT_TRUE(!pc_flow_queue_pop(q, t, &item, &reason));
    /* Wrap around the ring many times: count and order stay right. */
    for (uint64_t i = 0; i < 100; i++) {
        ASSERT_EQ(pc_flow_queue_push(q, t, (pc_flow_item_t){i, t + S, 1}), PC_FLOW_REASON_none);
        ASSERT_TRUE(pc_flow_queue_pop(q, t, &item, &reason));
        ASSERT_EQ(item.id, i);
        ASSERT_EQ(pc_flow_queue_count(q), 0);
    }
    free(q);
}

/* The standing-queue rule: a burst may wait its full deadline; once every
 * request has had to queue for standing_ns, an item that waited wait_ns is
 * refused whatever its deadline, refusing (even emptying the queue) keeps
 * the rule on, and standing_ns without a refusal after a pass ends it. */
static void test_queue_standing_rule(void) {
    pc_flow_queue_t *q = calloc(1, sizeof(*q));
    ASSERT_EQ(pc_flow_queue_init(q, 64), PC_OK);
    ASSERT_EQ(pc_flow_queue_standing(q, 100 * MS, 0), PC_EINVAL);
    ASSERT_EQ(pc_flow_queue_standing(q, 10 * MS, 10 * MS), PC_EINVAL);
    ASSERT_EQ(pc_flow_queue_standing(q, 100 * MS, 10 * MS), PC_OK);
    pc_flow_item_t item;
    pc_flow_reason_t reason;
    uint64_t t = 1 * S;
    pc_flow_queue_pass(q, t, 1);
    /* A burst: items wait 50 ms, well within their 1 s deadline. */
    ASSERT_EQ(pc_flow_queue_push(q, t, (pc_flow_item_t){1, t + S, 1}), PC_FLOW_REASON_none);
    ASSERT_TRUE(!pc_flow_queue_is_standing(q, t + 50 * MS));
    ASSERT_TRUE(!pc_flow_queue_late(q, t + 50 * MS));
    ASSERT_TRUE(pc_flow_queue_pop(q, t + 50 * MS, &item, &reason));
    ASSERT_EQ(reason, PC_FLOW_REASON_none);
    /* Sustained: no pass for 100 ms; items older than 10 ms are now late. */
    ASSERT_EQ(pc_flow_queue_push(q, t + 60 * MS, (pc_flow_item_t){2, t + S, 1}),
              PC_FLOW_REASON_none);
    ASSERT_EQ(pc_flow_queue_push(q, t + 105 * MS, (pc_flow_item_t){3, t + S, 1}),
              PC_FLOW_REASON_none);
    uint64_t now = t + 110 * MS;
    ASSERT_TRUE(pc_flow_queue_is_standing(q, now));
    /* Standing with 2 waiting: a newcomer is shed when 2 are enough. */
    ASSERT_TRUE(pc_flow_queue_sheds(q, now, 2));
    ASSERT_TRUE(!pc_flow_queue_sheds(q, now, 3));
    ASSERT_TRUE(!pc_flow_queue_sheds(q, t + 50 * MS, 1)); /* not standing yet */
    ASSERT_TRUE(pc_flow_queue_late(q, now));
    ASSERT_TRUE(pc_flow_queue_pop(q, now, &item, &reason));
    ASSERT_EQ(item.id, 2);
    ASSERT_EQ(reason, PC_FLOW_REASON_deadline); /* waited 50 ms */
    ASSERT_TRUE(!pc_flow_queue_late(q, now));   /* item 3 waited 5 ms */
    ASSERT_TRUE(pc_flow_queue_pop(q, now, &item, &reason));
    ASSERT_EQ(item.id, 3);
    ASSERT_EQ(reason, PC_FLOW_REASON_none);
    /* The queue is empty, a request passes, but a refusal 10 ms ago keeps
     * the rule on; 100 ms after the last refusal it is off again. */
    pc_flow_queue_pass(q, now + 5 * MS, 1);
    ASSERT_TRUE(pc_flow_queue_is_standing(q, now + 5 * MS));
    pc_flow_queue_pass(q, now + 100 * MS, 1);
    ASSERT_TRUE(!pc_flow_queue_is_standing(q, now + 100 * MS));
    ASSERT_EQ(pc_flow_queue_push(q, now + 100 * MS, (pc_flow_item_t){4, now + S, 1}),
              PC_FLOW_REASON_none);
    ASSERT_TRUE(!pc_flow_queue_late(q, now + 150 * MS)); /* a burst again */
    ASSERT_TRUE(pc_flow_queue_late(q, now + 200 * MS));  /* 100 ms without a pass */
    free(q);
}

/* ---- adaptive concurrency limiter against a simulated unit ---- */

/* A unit with `knee` parallel workers: a request admitted when n requests
 * are in service takes base_ns if n <= knee, else base_ns x n / knee (the
 * extra requests queue behind the workers). Demand is unbounded: the
 * gateway always has a request waiting, so the limiter alone sets in-flight. */
#define SIM_SLOTS 2048u
typedef struct sim {
    uint64_t start_ns[SIM_SLOTS];
    uint64_t finish_ns[SIM_SLOTS];
    uint32_t count;
    uint64_t done;        /* completions in the current measurement */
    uint64_t rtt_sum_ns;  /* and their latency */
    uint64_t probe_ticks; /* ticks spent probing at half the limit */
} sim_t;

static void sim_run(sim_t *sim, pc_flow_limiter_t *l, uint64_t from_ns, uint64_t to_ns,
                    uint32_t knee, uint64_t base_ns) {
    const uint64_t tick_ns = 250000; /* 0.25 ms */
    for (uint64_t t = from_ns; t < to_ns; t += tick_ns) {
        for (uint32_t i = 0; i < sim->count;) {
            if (sim->finish_ns[i] > t) {
                i++;
                continue;
            }
            uint64_t rtt = t - sim->start_ns[i];
            pc_flow_limiter_release(l, t, rtt, true);
            sim->done++;
            sim->rtt_sum_ns += rtt;
            sim->count--;
            sim->start_ns[i] = sim->start_ns[sim->count];
            sim->finish_ns[i] = sim->finish_ns[sim->count];
        }
        while (sim->count < SIM_SLOTS && pc_flow_limiter_acquire(l, t)) {
            uint32_t n = sim->count + 1;
            uint64_t service = n <= knee ? base_ns : base_ns * n / knee;
            sim->start_ns[sim->count] = t;
            sim->finish_ns[sim->count] = t + service;
            sim->count++;
        }
        ASSERT_EQ(sim->count, l->inflight);
        if (pc_flow_limiter_limit_now(l) < pc_flow_limiter_limit(l)) sim->probe_ticks++;
    }
}

static pc_flow_limiter_config_t limiter_config(void) {
    return (pc_flow_limiter_config_t){
        .limit_min = 4, .limit_max = 1000, .limit_initial = 10, .headroom_pct = 10,
        .sample_ns = 100 * MS, .rate_samples = 10, .rtt_window_ns = 2 * S,
        .probe_ns = 60 * MS};
}

/* A queue of `capacity` with the standing-queue rule on (the caller frees it). */
static pc_flow_queue_t *standing_queue(uint32_t capacity, uint64_t standing_ns,
                                       uint64_t wait_ns) {
    pc_flow_queue_t *q = calloc(1, sizeof(*q));
    ASSERT_TRUE(q != NULL);
    ASSERT_EQ(pc_flow_queue_init(q, capacity), PC_OK);
    ASSERT_EQ(pc_flow_queue_standing(q, standing_ns, wait_ns), PC_OK);
    return q;
}

/* The surge rule: at three times what the units start, the backlog is
 * standing within the 60 ms window, long before standing_ns; a stall at
 * half load (nothing starts) and the drain after it (starts outpace
 * arrivals) are no surge. */
static void test_queue_surge(void) {
    pc_flow_queue_t *q = standing_queue(4096, 250 * MS, 10 * MS);
    pc_flow_item_t item;
    pc_flow_reason_t reason;
    uint64_t t = 10 * S;
    for (uint32_t i = 0; i < 50; i++, t += 4 * MS) pc_flow_queue_pass(q, t, 1000); /* half load */
    for (uint32_t i = 0; i < 50; i++, t += 4 * MS) { /* a 200 ms stall: nothing starts */
        ASSERT_EQ(pc_flow_queue_push(q, t, (pc_flow_item_t){i, t + 10 * S, 1000}),
                  PC_FLOW_REASON_none);
        ASSERT_TRUE(!pc_flow_queue_surging(q, t));
        ASSERT_TRUE(!pc_flow_queue_is_standing(q, t));
    }
    while (pc_flow_queue_count(q) > 0) { /* the drain: two start per arrival */
        ASSERT_EQ(pc_flow_queue_push(q, t, (pc_flow_item_t){99, t + 10 * S, 1000}),
                  PC_FLOW_REASON_none);
        for (uint32_t k = 0; k < 2 && pc_flow_queue_count(q) > 0; k++) {
            ASSERT_TRUE(!pc_flow_queue_surging(q, t)); /* (the standing rule may refuse) */
            ASSERT_TRUE(pc_flow_queue_pop(q, t, &item, &reason));
        }
        t += 4 * MS;
    }
    for (uint32_t i = 0; i < 100; i++, t += 4 * MS) pc_flow_queue_pass(q, t, 1000);
    ASSERT_TRUE(!pc_flow_queue_is_standing(q, t)); /* the drain's refusals are over */
    uint64_t onset = t;
    bool surged = false;
    for (uint32_t i = 0; !surged && i < 200; i++, t += 1 * MS) { /* three arrive per start */
        ASSERT_EQ(pc_flow_queue_push(q, t, (pc_flow_item_t){i, t + 10 * S, 1000}),
                  PC_FLOW_REASON_none);
        surged = pc_flow_queue_surging(q, t);
        if (i % 3 == 0 && !surged) {
            ASSERT_TRUE(pc_flow_queue_pop(q, t, &item, &reason));
            ASSERT_EQ(reason, PC_FLOW_REASON_none);
        }
    }
    ASSERT_TRUE(surged);
    ASSERT_TRUE(t - onset <= 60 * MS);
    ASSERT_TRUE(pc_flow_queue_is_standing(q, t));
    free(q);
}

/* A burst is no surge: 20 one-event requests at once on an idle queue
 * whose units start 4 every 10 ms all get their turn (the whole burst is
 * what the units do in a moment). The same burst of 1,000-event requests,
 * three times what starts, is a surge: weight is what counts. */
static void test_queue_burst_no_surge(void) {
    pc_flow_queue_t *q = standing_queue(64, 250 * MS, 5 * MS);
    pc_flow_item_t item;
    pc_flow_reason_t reason;
    for (uint32_t events = 1; events <= 1000; events *= 1000) {
        uint64_t t = 10 * S * events;
        for (uint32_t i = 0; i < 4; i++) pc_flow_queue_pass(q, t, events);
        for (uint32_t i = 4; i < 20; i++)
            ASSERT_EQ(pc_flow_queue_push(q, t, (pc_flow_item_t){i, t + S, events}),
                      PC_FLOW_REASON_none);
        uint32_t refused = 0;
        while (pc_flow_queue_count(q) > 0) {
            t += 10 * MS;
            for (uint32_t k = 0; k < 4 && pc_flow_queue_count(q) > 0; k++) {
                ASSERT_TRUE(pc_flow_queue_pop(q, t, &item, &reason));
                refused += reason == PC_FLOW_REASON_deadline;
            }
        }
        if (events == 1) ASSERT_EQ(refused, 0);
        else ASSERT_TRUE(refused > 0);
    }
    free(q);
}

static void test_limiter_config_invalid(void) {
    pc_flow_limiter_t l;
    pc_flow_limiter_config_t c = limiter_config();
    c.limit_min = 0;
    ASSERT_EQ(pc_flow_limiter_init(&l, &c), PC_EINVAL);
    c = limiter_config();
    c.limit_initial = 2000;
    ASSERT_EQ(pc_flow_limiter_init(&l, &c), PC_EINVAL);
    c = limiter_config();
    c.rate_samples = PC_FLOW_LIMITER_RATE_SAMPLES_MAX + 1;
    ASSERT_EQ(pc_flow_limiter_init(&l, &c), PC_EINVAL);
    c = limiter_config();
    c.probe_ns = c.rtt_window_ns;
    ASSERT_EQ(pc_flow_limiter_init(&l, &c), PC_EINVAL);
}

static void test_limiter_acquire_release(void) {
    pc_flow_limiter_t l;
    pc_flow_limiter_config_t c = limiter_config();
    ASSERT_EQ(pc_flow_limiter_init(&l, &c), PC_OK);
    for (int i = 0; i < 10; i++) ASSERT_TRUE(pc_flow_limiter_acquire(&l, 0));
    ASSERT_TRUE(!pc_flow_limiter_acquire(&l, 0)); /* reason: concurrency */
    pc_flow_limiter_release(&l, 1 * MS, 1 * MS, false);
    ASSERT_TRUE(pc_flow_limiter_acquire(&l, 1 * MS));
    ASSERT_EQ(l.rtt_min_ns, UINT64_MAX); /* a failed call teaches nothing about RTT */
    pc_flow_limiter_release(&l, 2 * MS, 2 * MS, true);
    ASSERT_EQ(l.rtt_min_ns, 2 * MS);
}

/* Admission without counting, the shadow share, and forced acquires for
 * work that must run (the later steps of admitted requests): counted above
 * the limit, released like any other. */
static void test_limiter_admits_and_force(void) {
    pc_flow_limiter_t l;
    pc_flow_limiter_config_t c = limiter_config();
    ASSERT_EQ(pc_flow_limiter_init(&l, &c), PC_OK);
    for (int i = 0; i < 7; i++) pc_flow_limiter_acquire_force(&l, 0);
    ASSERT_TRUE(pc_flow_limiter_admits(&l, 0, 100));
    ASSERT_TRUE(!pc_flow_limiter_admits(&l, 0, 70)); /* 7 of 10: no room at 70% */
    ASSERT_EQ(l.inflight, 7);
    for (int i = 0; i < 8; i++) pc_flow_limiter_acquire_force(&l, 0);
    ASSERT_EQ(l.inflight, 15); /* above the limit of 10 */
    ASSERT_TRUE(!pc_flow_limiter_admits(&l, 0, 100));
    ASSERT_TRUE(!pc_flow_limiter_acquire(&l, 0));
    for (int i = 0; i < 6; i++) pc_flow_limiter_release(&l, 1 * MS, 1 * MS, true);
    ASSERT_EQ(l.inflight, 9);
    ASSERT_TRUE(pc_flow_limiter_admits(&l, 1 * MS, 100));
    ASSERT_TRUE(pc_flow_limiter_acquire(&l, 1 * MS));
}

static void test_limiter_converges_to_knee(void) {
    pc_flow_limiter_t l;
    pc_flow_limiter_config_t c = limiter_config();
    ASSERT_EQ(pc_flow_limiter_init(&l, &c), PC_OK);
    sim_t *sim = calloc(1, sizeof(*sim));
    const uint32_t knee = 100;
    const uint64_t base = 10 * MS;
    sim_run(sim, &l, 0, 10 * S, knee, base);
    /* Settled: measure 10 more seconds (five probe cycles included). */
    sim->done = sim->rtt_sum_ns = 0;
    uint32_t limit_lo = UINT32_MAX, limit_hi = 0;
    for (uint64_t t = 10 * S; t < 20 * S; t += 100 * MS) {
        sim_run(sim, &l, t, t + 100 * MS, knee, base);
        limit_lo = PC_MIN(limit_lo, pc_flow_limiter_limit(&l));
        limit_hi = PC_MAX(limit_hi, pc_flow_limiter_limit(&l));
    }
    printf("knee %u: limit %u..%u, goodput %" PRIu64 "/s, mean rtt %" PRIu64 " us\n", knee,
           limit_lo, limit_hi, sim->done / 10, sim->rtt_sum_ns / sim->done / 1000);
    ASSERT_TRUE(limit_lo >= 95 && limit_hi <= 130);
    /* Goodput near capacity (knee / base = 10,000/s) and latency near base. */
    ASSERT_TRUE(sim->done / 10 >= 9000);
    ASSERT_TRUE(sim->rtt_sum_ns / sim->done <= 13 * MS);
    /* It probed for a fresh min RTT, briefly: 60 ms every ~2 s is ~3% of ticks. */
    ASSERT_TRUE(sim->probe_ticks > 0 && sim->probe_ticks < 80000 / 20);
    free(sim);
}

static void test_limiter_drops_when_latency_rises(void) {
    pc_flow_limiter_t l;
    pc_flow_limiter_config_t c = limiter_config();
    ASSERT_EQ(pc_flow_limiter_init(&l, &c), PC_OK);
    sim_t *sim = calloc(1, sizeof(*sim));
    const uint64_t base = 10 * MS;
    sim_run(sim, &l, 0, 10 * S, 100, base);
    uint32_t before = pc_flow_limiter_limit(&l);
    ASSERT_TRUE(before >= 95);
    /* Half the unit's workers vanish: the same in-flight now queues. */
    sim->done = sim->rtt_sum_ns = 0;
    sim_run(sim, &l, 10 * S, 10 * S + 500 * MS, 50, base);
    uint64_t rtt_spike = sim->rtt_sum_ns / sim->done;
    ASSERT_TRUE(rtt_spike >= 15 * MS); /* latency rose */
    sim_run(sim, &l, 10 * S + 500 * MS, 20 * S, 50, base);
    uint32_t after = pc_flow_limiter_limit(&l);
    sim->done = sim->rtt_sum_ns = 0;
    sim_run(sim, &l, 20 * S, 22 * S, 50, base);
    printf("limit %u -> %u, rtt spike %" PRIu64 " us, then %" PRIu64 " us\n", before, after,
           rtt_spike / 1000, sim->rtt_sum_ns / sim->done / 1000);
    ASSERT_TRUE(after < before);
    ASSERT_TRUE(after >= 45 && after <= 70);
    ASSERT_TRUE(sim->rtt_sum_ns / sim->done <= 14 * MS); /* latency back near base */
    free(sim);
}

/* ---- heavy hitters and hot-key limits ---- */

static pc_flow_hot_config_t hot_config(void) {
    return (pc_flow_hot_config_t){
        .sketch = {.counters = 64, .top_k = 4, .window_ns = 1 * S, .hot_rate_min_per_s = 500},
        .key_rate_per_s = 1000, .key_burst = 100, .buckets = 8};
}

static void test_hot_config_invalid(void) {
    pc_flow_hot_t *h = calloc(1, sizeof(*h));
    pc_flow_hot_config_t c = hot_config();
    c.sketch.top_k = 65;
    ASSERT_EQ(pc_flow_hot_init(h, &c), PC_EINVAL);
    c = hot_config();
    c.buckets = PC_FLOW_HOT_BUCKETS_MAX + 1;
    ASSERT_EQ(pc_flow_hot_init(h, &c), PC_EINVAL);
    c = hot_config();
    c.buckets = c.sketch.top_k - 1; /* hot keys would evict each other's buckets */
    ASSERT_EQ(pc_flow_hot_init(h, &c), PC_EINVAL);
    c = hot_config();
    c.key_rate_per_s = 0;
    ASSERT_EQ(pc_flow_hot_init(h, &c), PC_EINVAL);
    c = hot_config();
    ASSERT_EQ(pc_flow_hot_init(h, &c), PC_OK);
    free(h);
}

/* 10,000 events/s for 5 s: 90% to one merchant, 10% spread over 1,000
 * accounts. The merchant is found and held to its 1,000/s; no other
 * account is ever rejected. */
static void test_hot_key_found_and_capped(void) {
    pc_flow_hot_t *h = calloc(1, sizeof(*h));
    pc_flow_hot_config_t c = hot_config();
    ASSERT_EQ(pc_flow_hot_init(h, &c), PC_OK);
    pc_prng_t prng;
    pc_prng_init(&prng, 42);
    const pc_u128 merchant = ((pc_u128)7 << 64) | 99;
    uint64_t hot_admitted = 0, hot_rejected = 0, cold_admitted = 0, cold_rejected = 0;
    uint64_t hot_admitted_late = 0;
    for (uint64_t i = 0; i < 50000; i++) {
        uint64_t t = 1 * S + i * 100000; /* every 0.1 ms */
        bool hot = pc_prng_below(&prng, 10) < 9;
        pc_u128 key = hot ? merchant : (pc_u128)(1000 + pc_prng_below(&prng, 1000));
        bool ok = pc_flow_hot_try(h, key, t);
        if (hot) {
            ok ? hot_admitted++ : hot_rejected++;
            if (ok && t >= 2 * S) hot_admitted_late++;
        } else {
            ok ? cold_admitted++ : cold_rejected++;
        }
    }
    printf("merchant admitted %" PRIu64 " rejected %" PRIu64 "; others admitted %" PRIu64
           " rejected %" PRIu64 "\n",
           hot_admitted, hot_rejected, cold_admitted, cold_rejected);
    ASSERT_EQ(cold_rejected, 0);
    ASSERT_TRUE(cold_admitted > 4500);
    /* Over the last 4 s: 1,000/s, give or take the burst of 100. */
    ASSERT_TRUE(hot_admitted_late >= 3900 && hot_admitted_late <= 4200);
    ASSERT_TRUE(hot_rejected > 35000);
    uint64_t now = 1 * S + 50000 * 100000ull;
    ASSERT_TRUE(pc_flow_sketch_is_hot(&h->sketch, merchant, now));
    uint64_t rate = pc_flow_sketch_rate(&h->sketch, merchant, now);
    ASSERT_TRUE(rate >= 8500 && rate <= 9500); /* it offers ~9,000/s */
    ASSERT_TRUE(!pc_flow_sketch_is_hot(&h->sketch, (pc_u128)1500, now));
    /* The sale ends: two quiet windows later the merchant is cold again and
     * passes freely, even at a burst far above its old cap. */
    now += 2 * S;
    ASSERT_TRUE(!pc_flow_sketch_is_hot(&h->sketch, merchant, now));
    for (int i = 0; i < 300; i++) ASSERT_TRUE(pc_flow_hot_try(h, merchant, now + i * 1000));
    free(h);
}

/* A run of events for one key (a batch for the hot merchant) is charged at
 * once: the burst goes, the rest of the run does not; a cold key's run all
 * goes; and a run admits what single events would over the same time. */
static void test_hot_take_runs(void) {
    pc_flow_hot_t *h = calloc(1, sizeof(*h));
    pc_flow_hot_config_t c = hot_config(); /* 1,000/s, burst 100, hot above 500/s */
    ASSERT_EQ(pc_flow_hot_init(h, &c), PC_OK);
    const pc_u128 merchant = 99;
    uint64_t t = 1 * S;
    ASSERT_EQ(pc_flow_hot_take(h, merchant, t, 1000), 100); /* hot at once; the burst */
    ASSERT_EQ(pc_flow_hot_take(h, merchant, t, 1000), 0);
    ASSERT_EQ(pc_flow_hot_take(h, (pc_u128)5, t, 50), 50); /* cold key: all go */
    uint64_t admitted = 0;
    for (uint64_t ms = 1; ms <= 2000; ms++) admitted += pc_flow_hot_take(h, merchant, t + ms * MS, 10);
    ASSERT_TRUE(admitted >= 1990 && admitted <= 2000); /* 1,000/s for 2 s */
    free(h);
}

static void test_sketch_decays_and_ranks(void) {
    pc_flow_sketch_t *s = calloc(1, sizeof(*s));
    pc_flow_sketch_config_t c = {.counters = 8, .top_k = 2, .window_ns = 1 * S,
                                 .hot_rate_min_per_s = 10};
    ASSERT_EQ(pc_flow_sketch_init(s, &c), PC_OK);
    /* Three busy keys at 300, 200 and 100 per second: only the top 2 are hot. */
    for (uint64_t ms = 0; ms < 2000; ms++) {
        uint64_t t = ms * MS;
        pc_flow_sketch_observe(s, 1, t, 3);
        pc_flow_sketch_observe(s, 2, t, 2);
        pc_flow_sketch_observe(s, 3, t, 1);
    }
    uint64_t now = 2000 * MS;
    ASSERT_EQ(pc_flow_sketch_rate(s, 1, now), 3000);
    ASSERT_TRUE(pc_flow_sketch_is_hot(s, 1, now));
    ASSERT_TRUE(pc_flow_sketch_is_hot(s, 2, now));
    ASSERT_TRUE(!pc_flow_sketch_is_hot(s, 3, now));
    ASSERT_TRUE(!pc_flow_sketch_is_hot(s, 4, now)); /* never seen */
    /* Halfway through a quiet window the rate halves; after two it is gone. */
    ASSERT_EQ(pc_flow_sketch_rate(s, 1, now + 500 * MS), 1500);
    ASSERT_EQ(pc_flow_sketch_rate(s, 1, now + 2 * S), 0);
    ASSERT_TRUE(!pc_flow_sketch_is_hot(s, 1, now + 2 * S));
    free(s);
}

/* Space-Saving's guarantee: a key with more than 1/counters of the stream is
 * always tracked, however many one-off keys churn the other counters, and
 * its inherited overestimate never makes a one-off key look hot. */
static void test_sketch_space_saving_guarantee(void) {
    pc_flow_sketch_t *s = calloc(1, sizeof(*s));
    pc_flow_sketch_config_t c = {.counters = 16, .top_k = 1, .window_ns = 10 * S,
                                 .hot_rate_min_per_s = 1};
    ASSERT_EQ(pc_flow_sketch_init(s, &c), PC_OK);
    for (uint64_t i = 0; i < 20000; i++) {
        pc_u128 key = i % 5 == 0 ? (pc_u128)77 : (pc_u128)(100000 + i); /* 20% vs one-offs */
        pc_flow_sketch_observe(s, key, i * 10000, 1);
    }
    uint64_t now = 20000 * 10000ull;
    ASSERT_TRUE(pc_flow_sketch_rate(s, 77, now) > 0);
    ASSERT_TRUE(pc_flow_sketch_is_hot(s, 77, now));
    ASSERT_TRUE(!pc_flow_sketch_is_hot(s, (pc_u128)(100000 + 19999), now));
    free(s);
}

/* ---- circuit breaker ---- */

static pc_flow_breaker_config_t breaker_config(void) {
    return (pc_flow_breaker_config_t){
        .window_ns = 10 * S, .buckets = 10, .requests_min = 20, .error_ratio_pct = 50,
        .slow_ratio_pct = 60, .slow_call_ns = 100 * MS, .open_ns = 5 * S, .probes = 3};
}

static void calls(pc_flow_breaker_t *b, uint64_t t, int n, uint64_t rtt_ns, bool ok) {
    for (int i = 0; i < n; i++) {
        ASSERT_TRUE(pc_flow_breaker_allow(b, t));
        pc_flow_breaker_record(b, t, rtt_ns, ok);
    }
}

static void test_breaker_config_invalid(void) {
    pc_flow_breaker_t b;
    pc_flow_breaker_config_t c = breaker_config();
    c.error_ratio_pct = 0, c.slow_ratio_pct = 0;
    ASSERT_EQ(pc_flow_breaker_init(&b, &c), PC_EINVAL);
    c = breaker_config();
    c.buckets = PC_FLOW_BREAKER_BUCKETS_MAX + 1;
    ASSERT_EQ(pc_flow_breaker_init(&b, &c), PC_EINVAL);
    c = breaker_config();
    c.probes = 0;
    ASSERT_EQ(pc_flow_breaker_init(&b, &c), PC_EINVAL);
    c = breaker_config();
    c.error_ratio_pct = 101;
    ASSERT_EQ(pc_flow_breaker_init(&b, &c), PC_EINVAL);
}

static void test_breaker_min_requests_and_error_trip(void) {
    pc_flow_breaker_t b;
    pc_flow_breaker_config_t c = breaker_config();
    ASSERT_EQ(pc_flow_breaker_init(&b, &c), PC_OK);
    uint64_t t = 100 * S;
    /* 19 failures: 100% errors but below requests_min, so no trip. */
    calls(&b, t, 19, 1 * MS, false);
    ASSERT_EQ(pc_flow_breaker_state(&b), PC_FLOW_BREAKER_closed);
    calls(&b, t, 1, 1 * MS, false);
    ASSERT_EQ(pc_flow_breaker_state(&b), PC_FLOW_BREAKER_open);
    /* Open: every call is refused at once until open_ns has passed. */
    for (int i = 0; i < 1000; i++) ASSERT_TRUE(!pc_flow_breaker_allow(&b, t + i * MS));
    ASSERT_TRUE(!pc_flow_breaker_allow(&b, t + 5 * S - 1));
    ASSERT_EQ(pc_flow_breaker_state(&b), PC_FLOW_BREAKER_open);
    /* A late answer from before the trip changes nothing. */
    pc_flow_breaker_record(&b, t + 1 * S, 1 * MS, true);
    ASSERT_EQ(pc_flow_breaker_state(&b), PC_FLOW_BREAKER_open);
}

static void test_breaker_below_ratio_stays_closed(void) {
    pc_flow_breaker_t b;
    pc_flow_breaker_config_t c = breaker_config();
    ASSERT_EQ(pc_flow_breaker_init(&b, &c), PC_OK);
    uint64_t t = 0;
    for (int i = 0; i < 1000; i++) { /* 40% errors, 40% slow: under both ratios */
        bool slow = i % 5 < 2, failed = i % 5 == 2 || i % 5 == 3;
        calls(&b, t + i * MS, 1, slow ? 200 * MS : 1 * MS, !failed);
    }
    ASSERT_EQ(pc_flow_breaker_state(&b), PC_FLOW_BREAKER_closed);
    /* Errors older than the window fall out: 15 s later 19 errors do not trip
     * (the 1,000 earlier calls no longer count toward requests_min). */
    calls(&b, t + 15 * S, 19, 1 * MS, false);
    ASSERT_EQ(pc_flow_breaker_state(&b), PC_FLOW_BREAKER_closed);
}

static void test_breaker_slow_trip_and_half_open(void) {
    pc_flow_breaker_t b;
    pc_flow_breaker_config_t c = breaker_config();
    ASSERT_EQ(pc_flow_breaker_init(&b, &c), PC_OK);
    uint64_t t = 50 * S;
    calls(&b, t, 8, 1 * MS, true);
    calls(&b, t + 1 * S, 12, 300 * MS, true); /* 12 / 20 = 60% slow */
    ASSERT_EQ(pc_flow_breaker_state(&b), PC_FLOW_BREAKER_open);
    uint64_t t_open = t + 1 * S;
    /* After open_ns: half-open, exactly `probes` calls admitted. */
    uint64_t t_half = t_open + 5 * S;
    for (int i = 0; i < 3; i++) ASSERT_TRUE(pc_flow_breaker_allow(&b, t_half));
    ASSERT_EQ(pc_flow_breaker_state(&b), PC_FLOW_BREAKER_half_open);
    ASSERT_TRUE(!pc_flow_breaker_allow(&b, t_half));
    /* One slow probe reopens for another open_ns. */
    pc_flow_breaker_record(&b, t_half + 1 * MS, 1 * MS, true);
    pc_flow_breaker_record(&b, t_half + 2 * MS, 500 * MS, true);
    ASSERT_EQ(pc_flow_breaker_state(&b), PC_FLOW_BREAKER_open);
    ASSERT_TRUE(!pc_flow_breaker_allow(&b, t_half + 5 * S));
    /* Next half-open: a failed probe also reopens. */
    uint64_t t_half2 = t_half + 2 * MS + 5 * S;
    ASSERT_TRUE(pc_flow_breaker_allow(&b, t_half2));
    pc_flow_breaker_record(&b, t_half2, 1 * MS, false);
    ASSERT_EQ(pc_flow_breaker_state(&b), PC_FLOW_BREAKER_open);
    /* Third half-open: all probes succeed, the breaker closes with a fresh window. */
    uint64_t t_half3 = t_half2 + 5 * S;
    for (int i = 0; i < 3; i++) ASSERT_TRUE(pc_flow_breaker_allow(&b, t_half3));
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(pc_flow_breaker_state(&b), PC_FLOW_BREAKER_half_open);
        pc_flow_breaker_record(&b, t_half3 + 10 * MS, 10 * MS, true);
    }
    ASSERT_EQ(pc_flow_breaker_state(&b), PC_FLOW_BREAKER_closed);
    /* Fresh window: the slow calls from before do not count; 19 more slow
     * calls stay below requests_min. */
    calls(&b, t_half3 + 20 * MS, 19, 300 * MS, true);
    ASSERT_EQ(pc_flow_breaker_state(&b), PC_FLOW_BREAKER_closed);
    calls(&b, t_half3 + 20 * MS, 1, 300 * MS, true);
    ASSERT_EQ(pc_flow_breaker_state(&b), PC_FLOW_BREAKER_open);
}

#define TESTS(X)                                                                      \
    X(test_callers_separate_and_bounded)                                              \
    X(test_reason_names)                                                              \
    X(test_bucket_config_invalid)                                                     \
    X(test_bucket_burst_then_rate)                                                    \
    X(test_bucket_warmup_ramp)                                                        \
    X(test_bucket_cold_reset)                                                         \
    X(test_queue_full_and_deadlines)                                                  \
    X(test_queue_standing_rule)                                                       \
    X(test_queue_surge)                                                               \
    X(test_queue_burst_no_surge)                                                      \
    X(test_limiter_config_invalid)                                                    \
    X(test_limiter_acquire_release)                                                   \
    X(test_limiter_admits_and_force)                                                  \
    X(test_limiter_converges_to_knee)                                                 \
    X(test_limiter_drops_when_latency_rises)                                          \
    X(test_hot_config_invalid)                                                        \
    X(test_hot_key_found_and_capped)                                                  \
    X(test_hot_take_runs)                                                             \
    X(test_sketch_decays_and_ranks)                                                   \
    X(test_sketch_space_saving_guarantee)                                             \
    X(test_breaker_config_invalid)                                                    \
    X(test_breaker_min_requests_and_error_trip)                                       \
    X(test_breaker_below_ratio_stays_closed)                                          \
    X(test_breaker_slow_trip_and_half_open)
PC_TEST_MAIN(TESTS)
