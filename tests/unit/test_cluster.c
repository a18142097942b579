/* Unit tests of the cluster map state machine (src/replica/cluster.c):
 * set_cluster's checks in order, the epoch compare-and-set, get_cluster and
 * the check of a map loaded from a checkpoint. */
#include "test.h"

#include "../../src/replica/replica.h"

#define R(name) PC_CLUSTER_RESULT_##name

/* A valid map of `units` units at epoch: contiguous bucket ranges. */
static void map_init(pc_cluster_t *c, uint64_t epoch, uint32_t units) {
    memset(c, 0, sizeof *c);
    c->epoch = epoch;
    c->units_count = units;
    for (uint32_t b = 0; b < PC_ROUTING_BUCKETS; b++)
        c->bucket_unit[b] = (uint8_t)(b * units / PC_ROUTING_BUCKETS);
    for (uint32_t u = 0; u < units; u++)
        snprintf(c->unit_addresses[u], PC_UNIT_ADDRESSES_MAX, "127.0.0.1:%u,h%u:2,h%u:3",
                 3000 + u, u, u);
}

static uint32_t with_address(const char *text) {
    pc_cluster_t c;
    map_init(&c, 1, 2);
    memset(c.unit_addresses[1], 0, PC_UNIT_ADDRESSES_MAX);
    memcpy(c.unit_addresses[1], text, strlen(text));
    return pc_cluster_check(&c);
}

static void test_valid_maps(void) {
    pc_cluster_t c;
    for (uint32_t units = 1; units <= PC_UNITS_MAX; units++) {
        map_init(&c, 1, units);
        ASSERT_EQ(pc_cluster_check(&c), R(created));
    }
    ASSERT_EQ(with_address("a:1"), R(created));
    ASSERT_EQ(with_address("a:65535,b:2"), R(created));
    ASSERT_EQ(with_address("[::1]:5"), R(created)); /* the last colon splits */
}

static void test_reserved_fields(void) {
    pc_cluster_t c;
    map_init(&c, 1, 2);
    c.reserved_2[11] = 1;
    ASSERT_EQ(pc_cluster_check(&c), R(reserved_field));
    /* First failure wins: reserved before units_count. */
    c.units_count = 0;
    ASSERT_EQ(pc_cluster_check(&c), R(reserved_field));
}

/* The global settings: the XTS timeout is 0 (each gateway's own) or
 * 1..PC_XTS_TIMEOUT_MAX_S, checked last. */
static void test_settings(void) {
    pc_cluster_t c;
    map_init(&c, 1, 2);
    c.xts_timeout_s = 7;
    ASSERT_EQ(pc_cluster_check(&c), R(created));
    c.xts_timeout_s = PC_XTS_TIMEOUT_MAX_S;
    ASSERT_EQ(pc_cluster_check(&c), R(created));
    c.xts_timeout_s = PC_XTS_TIMEOUT_MAX_S + 1;
    ASSERT_EQ(pc_cluster_check(&c), R(setting_invalid));
    c.units_count = 0;
    ASSERT_EQ(pc_cluster_check(&c), R(units_count_invalid));
}

/* The gateways' limits: 0 (each gateway's flag), PC_LIMIT_OFF or a value up
 * to each one's bound; the reserved bytes zero. */
static void test_limits(void) {
    pc_cluster_t c;
    map_init(&c, 1, 2);
    c.limits.rate_limit = 50000;
    c.limits.lookup_rate_limit = PC_LIMIT_OFF;
    c.limits.hot_key_rate = PC_LIMIT_RATE_MAX;
    c.limits.warmup_ms = PC_LIMIT_WARMUP_MAX_MS;
    c.limits.queue_ms = PC_LIMIT_QUEUE_MAX_MS;
    ASSERT_EQ(pc_cluster_check(&c), R(created));
    c.limits.queue_ms = PC_LIMIT_QUEUE_MAX_MS + 1;
    ASSERT_EQ(pc_cluster_check(&c), R(setting_invalid));
    c.limits.queue_ms = 0;
    c.limits.lookup_rate_limit = PC_LIMIT_RATE_MAX + 1;
    ASSERT_EQ(pc_cluster_check(&c), R(setting_invalid));
    c.limits.lookup_rate_limit = 0;
    c.limits.caller_rate_limit = PC_LIMIT_RATE_MAX;
    ASSERT_EQ(pc_cluster_check(&c), R(created));
    c.limits.caller_rate_limit = PC_LIMIT_RATE_MAX + 1;
    ASSERT_EQ(pc_cluster_check(&c), R(setting_invalid));
    c.limits.caller_rate_limit = PC_LIMIT_OFF;
    c.limits.reserved[39] = 1;
    ASSERT_EQ(pc_cluster_check(&c), R(reserved_field));
    c.limits.reserved[39] = 0;
    /* A live change is a new epoch like any other. */
    pc_cluster_t state;
    map_init(&state, 1, 2);
    c.epoch = 2;
    state.epoch = 1;
    ASSERT_EQ(pc_cluster_apply(&state, &c), R(created));
    ASSERT_EQ(state.limits.rate_limit, 50000);
}

static void test_units_count(void) {
    pc_cluster_t c;
    map_init(&c, 1, 2);
    c.units_count = 0;
    ASSERT_EQ(pc_cluster_check(&c), R(units_count_invalid));
    c.units_count = PC_UNITS_MAX + 1;
    ASSERT_EQ(pc_cluster_check(&c), R(units_count_invalid));
}

static void test_bucket_unit(void) {
    pc_cluster_t c;
    map_init(&c, 1, 2);
    c.bucket_unit[99] = 2; /* == units_count: the boundary */
    ASSERT_EQ(pc_cluster_check(&c), R(bucket_unit_invalid));
    c.bucket_unit[99] = 1;
    ASSERT_EQ(pc_cluster_check(&c), R(created));
    /* bucket_unit before addresses */
    c.bucket_unit[0] = 200;
    c.unit_addresses[0][0] = '\0';
    ASSERT_EQ(pc_cluster_check(&c), R(bucket_unit_invalid));
}

static void test_unit_addresses(void) {
    ASSERT_EQ(with_address(""), R(unit_address_invalid));
    ASSERT_EQ(with_address("a"), R(unit_address_invalid));
    ASSERT_EQ(with_address("a:"), R(unit_address_invalid));
    ASSERT_EQ(with_address(":1"), R(unit_address_invalid));
    ASSERT_EQ(with_address("a:0"), R(unit_address_invalid));
    ASSERT_EQ(with_address("a:65536"), R(unit_address_invalid));
    ASSERT_EQ(with_address("a:123456"), R(unit_address_invalid));
    ASSERT_EQ(with_address("a:+1"), R(unit_address_invalid));
    ASSERT_EQ(with_address("a: 1"), R(unit_address_invalid));
    ASSERT_EQ(with_address("a b:1"), R(unit_address_invalid));
    ASSERT_EQ(with_address("a:1,"), R(unit_address_invalid));
    ASSERT_EQ(with_address(",a:1"), R(unit_address_invalid));
    ASSERT_EQ(with_address("a:1,,b:2"), R(unit_address_invalid));
    ASSERT_EQ(with_address("a:1,b:2,c:3,d:4"), R(unit_address_invalid));
    pc_cluster_t c;
    /* Not NUL-terminated within its 128 bytes. */
    map_init(&c, 1, 2);
    memset(c.unit_addresses[1], 'a', PC_UNIT_ADDRESSES_MAX);
    memcpy(c.unit_addresses[1], "b:1,", 4);
    ASSERT_EQ(pc_cluster_check(&c), R(unit_address_invalid));
    /* Not NUL-padded after the terminator. */
    map_init(&c, 1, 2);
    c.unit_addresses[1][PC_UNIT_ADDRESSES_MAX - 1] = 'x';
    ASSERT_EQ(pc_cluster_check(&c), R(unit_address_invalid));
    /* A unit beyond units_count must be all zero. */
    map_init(&c, 1, 2);
    c.unit_addresses[PC_UNITS_MAX - 1][5] = 'x';
    ASSERT_EQ(pc_cluster_check(&c), R(unit_address_invalid));
    map_init(&c, 1, 2);
    c.unit_addresses[2][0] = 'x';
    ASSERT_EQ(pc_cluster_check(&c), R(unit_address_invalid));
}

static void test_epoch_compare_and_set(void) {
    pc_cluster_t state, c;
    memset(&state, 0, sizeof state);
    map_init(&c, 0, 2);
    ASSERT_EQ(pc_cluster_apply(&state, &c), R(cluster_epoch_stale));
    map_init(&c, 2, 2);
    ASSERT_EQ(pc_cluster_apply(&state, &c), R(cluster_epoch_gap));
    ASSERT_EQ(state.epoch, 0);
    map_init(&c, 1, 2);
    ASSERT_EQ(pc_cluster_apply(&state, &c), R(created));
    ASSERT_TRUE(memcmp(&state, &c, sizeof c) == 0);
    ASSERT_EQ(pc_cluster_apply(&state, &c), R(exists));
    /* The same epoch with a different map: someone else won. */
    c.bucket_unit[0] = 1;
    ASSERT_EQ(pc_cluster_apply(&state, &c), R(cluster_epoch_stale));
    ASSERT_EQ(state.bucket_unit[0], 0);
    c.epoch = 3;
    ASSERT_EQ(pc_cluster_apply(&state, &c), R(cluster_epoch_gap));
    c.epoch = 2;
    ASSERT_EQ(pc_cluster_apply(&state, &c), R(created));
    ASSERT_EQ(state.epoch, 2);
    ASSERT_EQ(state.bucket_unit[0], 1);
    /* Validation comes before the epoch: an invalid record never installs. */
    map_init(&c, 3, 2);
    c.units_count = 0;
    ASSERT_EQ(pc_cluster_apply(&state, &c), R(units_count_invalid));
    ASSERT_EQ(state.epoch, 2);
}

static void test_get_and_state_verify(void) {
    pc_cluster_t state, out, c;
    memset(&state, 0, sizeof state);
    pc_u128 zero = 0, one = 1;
    ASSERT_EQ(pc_cluster_get(&state, &zero, &out), PC_OK);
    ASSERT_EQ(out.epoch, 0);
    ASSERT_EQ(out.units_count, 0);
    ASSERT_EQ(pc_cluster_state_verify(&state), PC_OK);
    map_init(&c, 1, 3);
    ASSERT_EQ(pc_cluster_apply(&state, &c), R(created));
    ASSERT_EQ(pc_cluster_get(&state, &one, &out), PC_EINVAL);
    ASSERT_EQ(pc_cluster_get(&state, &zero, &out), PC_OK);
    ASSERT_TRUE(memcmp(&out, &c, sizeof c) == 0);
    ASSERT_EQ(pc_cluster_state_verify(&state), PC_OK);
    pc__corrupt_quiet = true;
    state.bucket_unit[5] = 9;
    ASSERT_EQ(pc_cluster_state_verify(&state), PC_ECORRUPT);
    map_init(&state, 0, 3); /* a map at epoch 0 is never installed */
    ASSERT_EQ(pc_cluster_state_verify(&state), PC_ECORRUPT);
}

#define TESTS(X)                                                                     \
    X(test_valid_maps)                                                               \
    X(test_reserved_fields)                                                          \
    X(test_settings)                                                                 \
    X(test_limits)                                                                   \
    X(test_units_count)                                                              \
    X(test_bucket_unit)                                                              \
    X(test_unit_addresses)                                                           \
    X(test_epoch_compare_and_set)                                                    \
    X(test_get_and_state_verify)
PC_TEST_MAIN(TESTS)
