/* Unit tests of the big screen's sampler in src/gateway/gateway.c, on a
 * gateway struct that runs no loop: latencies go in through
 * pc_gateway_latency_record, counters are set by hand, and time is whatever
 * the test passes to gw_screen_tick. The HTTP side (the stream, the page) is
 * tested in test_gateway_http.c. */
#include "../../src/gateway/gateway_int.h"
#include "test.h"

#define SECOND_NS (1000ull * 1000 * 1000)

static pc_gateway_t *gateway_new(uint32_t units) {
    pc_gateway_t *gw = calloc(1, sizeof *gw);
    ASSERT_TRUE(gw != NULL);
    ASSERT_EQ(gw_screen_init(gw), PC_OK);
    gw->quiet = true;
    gw->cluster.units_count = units;
    gw->cluster.epoch = 1;
    return gw;
}

static void gateway_free(pc_gateway_t *gw) {
    free(gw->screen);
    free(gw);
}

static void record_ms(pc_gateway_t *gw, uint64_t ms, uint32_t times) {
    for (uint32_t i = 0; i < times; i++) pc_gateway_latency_record(gw, ms * 1000000ull);
}

/* Percentiles of one second's requests, within the histogram's 1/8. */
static void test_screen_percentiles(void) {
    pc_gateway_t *gw = gateway_new(2);
    uint64_t t0 = pc_time_monotonic_ns();
    const pc_gateway_screen_t *s = pc_gateway_screen(gw);
    ASSERT_EQ(s->seq, 0);
    record_ms(gw, 1, 985);
    record_ms(gw, 50, 13);
    record_ms(gw, 2000, 2); /* p999 is the 999th of 1,000 */
    gw_screen_tick(gw, t0 + SECOND_NS / 2); /* not yet a second */
    ASSERT_EQ(s->seq, 0);
    gw_screen_tick(gw, t0 + SECOND_NS);
    ASSERT_EQ(s->seq, 1);
    ASSERT_EQ(s->requests_per_s, 1000);
    ASSERT_TRUE(s->latency_us[0] >= 1000 && s->latency_us[0] <= 1125);
    ASSERT_TRUE(s->latency_us[1] >= 50000 && s->latency_us[1] <= 56250);
    ASSERT_EQ(s->latency_us[2], 2000000); /* the largest seen caps its bucket */
    /* The next second answered nothing: no percentiles. */
    gw_screen_tick(gw, t0 + 2 * SECOND_NS + 1000);
    ASSERT_EQ(s->seq, 2);
    ASSERT_EQ(s->requests_per_s, 0);
    ASSERT_EQ(s->latency_us[0], 0);
    ASSERT_EQ(s->latency_us[2], 0);
    /* Tiny and huge values land in the first and last buckets. */
    pc_gateway_latency_record(gw, 0);
    pc_gateway_latency_record(gw, UINT64_MAX);
    gw_screen_tick(gw, t0 + 3 * SECOND_NS + 1000);
    ASSERT_EQ(s->latency_us[0], 0);
    ASSERT_EQ(s->latency_us[2], (1ull << 31) - 1);
    gateway_free(gw);
}

/* Rates are per second of the last sample, totals since start, and the
 * history keeps the last PC_SCREEN_HISTORY_MAX seconds in order. */
static void test_screen_rates_history(void) {
    pc_gateway_t *gw = gateway_new(2);
    uint64_t t0 = pc_time_monotonic_ns();
    const pc_gateway_screen_t *s = pc_gateway_screen(gw);
    uint32_t seconds = PC_SCREEN_HISTORY_MAX + 5;
    for (uint32_t i = 1; i <= seconds; i++) {
        gw->metrics.payments += i;
        gw->metrics.amount_created += (pc_u128)i * 100;
        gw->metrics.unit_subrequests[1] += 2 * i;
        gw->metrics.unit_events[1] += 30 * i;
        gw->metrics.events_shadow += 7;
        gw->metrics.throttled[PC_FLOW_REASON_rate] += 3;
        gw->metrics.throttled_shadow[PC_FLOW_REASON_rate] += 1;
        gw_screen_tick(gw, t0 + (uint64_t)i * SECOND_NS + 1000);
        ASSERT_EQ(s->seq, i);
        ASSERT_EQ(s->payments_per_s, i);
        ASSERT_EQ(s->unit_load_per_s[1], 2 * i);
        ASSERT_EQ(s->unit_events_per_s[1], 30 * i);
        ASSERT_EQ(s->unit_load_per_s[0], 0);
        ASSERT_EQ(s->shadow_per_s, 7);
        ASSERT_EQ(s->throttled_per_s, 3);
    }
    uint64_t total = (uint64_t)seconds * (seconds + 1) / 2;
    ASSERT_EQ(s->payments, total);
    ASSERT_EQ_U128(s->gmv, (pc_u128)total * 100);
    ASSERT_EQ(s->throttled, 3 * seconds);
    ASSERT_EQ(s->throttled_shadow, seconds);
    ASSERT_EQ(s->shadow_events, 7 * seconds);
    ASSERT_EQ(s->units_count, 2);
    ASSERT_EQ(s->routing_epoch, 1);
    ASSERT_EQ(s->history_count, PC_SCREEN_HISTORY_MAX);
    for (uint32_t i = 0; i < s->history_count; i++) {
        uint32_t k = (s->history_next + PC_SCREEN_HISTORY_MAX - s->history_count + i) %
                     PC_SCREEN_HISTORY_MAX;
        ASSERT_EQ(s->history[k], seconds - PC_SCREEN_HISTORY_MAX + 1 + i); /* oldest first */
    }
    /* A loop that fell behind: the rate is over the real elapsed time. */
    gw->metrics.payments += 300;
    gw_screen_tick(gw, t0 + (uint64_t)(seconds + 3) * SECOND_NS + 1000);
    ASSERT_EQ(s->payments_per_s, 100);
    gateway_free(gw);
}

/* A breaker opening and closing are events; the ring keeps the newest 64. */
static void test_screen_breaker_events(void) {
    pc_gateway_t *gw = gateway_new(3);
    uint64_t now = pc_time_monotonic_ns();
    const pc_gateway_screen_t *s = pc_gateway_screen(gw);
    gw_screen_tick(gw, now + SECOND_NS / 4);
    ASSERT_EQ(s->events_seq, 0);
    gw->units[2].breaker.state = PC_FLOW_BREAKER_open;
    now += SECOND_NS / 2;
    gw_screen_tick(gw, now);
    ASSERT_EQ(s->events_seq, 1);
    const pc_screen_event_t *e = &s->events[1 % PC_SCREEN_EVENTS_MAX];
    ASSERT_EQ(e->kind, PC_SCREEN_EVENT_breaker_open);
    ASSERT_EQ(e->unit, 2);
    ASSERT_TRUE(strstr(e->text, "unit 2 breaker opened") != NULL);
    gw->units[2].breaker.state = PC_FLOW_BREAKER_half_open; /* still tripped */
    now += SECOND_NS / 4;
    gw_screen_tick(gw, now);
    ASSERT_EQ(s->events_seq, 1);
    for (uint32_t i = 0; i < 69; i++) {
        gw->units[2].breaker.state = i % 2 == 0 ? PC_FLOW_BREAKER_closed : PC_FLOW_BREAKER_open;
        now += SECOND_NS / 4;
        gw_screen_tick(gw, now);
    }
    ASSERT_EQ(s->events_seq, 70);
    ASSERT_EQ(s->events_count, PC_SCREEN_EVENTS_MAX);
    for (uint64_t seq = 70 - PC_SCREEN_EVENTS_MAX + 1; seq <= 70; seq++) {
        e = &s->events[seq % PC_SCREEN_EVENTS_MAX];
        ASSERT_EQ(e->seq, seq);
        ASSERT_EQ(e->kind, seq % 2 == 0 ? PC_SCREEN_EVENT_breaker_closed
                                        : PC_SCREEN_EVENT_breaker_open);
    }
    ASSERT_STREQ(pc_screen_event_kind_name(PC_SCREEN_EVENT_failover), "failover");
    ASSERT_STREQ(pc_screen_event_kind_name(99), "unknown");
    /* No unit served anything: no primary is known. */
    ASSERT_EQ(s->unit_primary[0], PC_SCREEN_REPLICA_UNKNOWN);
    gateway_free(gw);
}

#define TESTS(X)                                                                     \
    X(test_screen_percentiles)                                                       \
    X(test_screen_rates_history)                                                     \
    X(test_screen_breaker_events)
PC_TEST_MAIN(TESTS)
