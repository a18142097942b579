/* Unit tests of the replica's client session table (src/replica/sessions.c). */
#include "test.h"

#include "../../src/replica/replica.h"

static void commit(pc_sessions_t *s, pc_u128 client, uint64_t session, uint64_t request,
                   uint64_t op, const void *body, uint32_t size) {
    pc_session_reply_t r = {.session = session, .request = request, .op = op, .timestamp = op * 10,
                            .operation = PC_OP_create_transfers, .body_size = size, .body = body};
    pc_sessions_commit(s, client, &r);
}

static void test_register_commit_get(void) {
    pc_sessions_t *s;
    ASSERT_EQ(pc_sessions_init(&s), PC_OK);
    pc_session_reply_t last;
    ASSERT_EQ(pc_sessions_get(s, 5, 1, &last), PC_ESESSION_EVICTED);
    pc_sessions_register(s, 5, 3);
    ASSERT_EQ(pc_sessions_get(s, 5, 3, &last), PC_OK);
    ASSERT_EQ(last.request, 0);
    ASSERT_EQ(pc_sessions_get(s, 5, 4, &last), PC_ESESSION_EVICTED); /* wrong session */
    uint8_t body[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    commit(s, 5, 3, 1, 7, body, sizeof body);
    ASSERT_EQ(pc_sessions_get(s, 5, 3, &last), PC_OK);
    ASSERT_EQ(last.request, 1);
    ASSERT_EQ(last.op, 7);
    ASSERT_EQ(last.body_size, 16);
    ASSERT_TRUE(memcmp(last.body, body, 16) == 0);
    ASSERT_EQ(pc_sessions_count(s), 1);
    pc_sessions_deinit(s);
}

static void test_eviction_is_least_recently_committed(void) {
    pc_sessions_t *s;
    ASSERT_EQ(pc_sessions_init(&s), PC_OK);
    for (uint32_t i = 1; i <= PC_CLIENTS_MAX; i++) pc_sessions_register(s, i, i);
    ASSERT_EQ(pc_sessions_count(s), PC_CLIENTS_MAX);
    commit(s, 1, 1, 1, PC_CLIENTS_MAX + 1, NULL, 0); /* client 1 is now the most recent */
    pc_sessions_register(s, 99999, PC_CLIENTS_MAX + 2);
    ASSERT_EQ(pc_sessions_count(s), PC_CLIENTS_MAX);
    pc_session_reply_t last;
    ASSERT_EQ(pc_sessions_get(s, 1, 1, &last), PC_OK);
    ASSERT_EQ(pc_sessions_get(s, 2, 2, &last), PC_ESESSION_EVICTED); /* oldest went */
    ASSERT_EQ(pc_sessions_get(s, 99999, PC_CLIENTS_MAX + 2, &last), PC_OK);
    pc_sessions_deinit(s);
}

static void test_snapshot_roundtrip_and_corruption(void) {
    pc_sessions_t *a, *b;
    ASSERT_EQ(pc_sessions_init(&a), PC_OK);
    ASSERT_EQ(pc_sessions_init(&b), PC_OK);
    uint8_t body[24] = {9};
    for (uint32_t i = 1; i <= 10; i++) {
        pc_sessions_register(a, i * 1000, i);
        commit(a, i * 1000, i, 1, 100 + i, body, i % 3 ? sizeof body : 0);
    }
    size_t size = pc_sessions_snapshot_size(a);
    uint8_t *buf = malloc(size);
    ASSERT_EQ(pc_sessions_snapshot_write(a, buf, size), size);
    ASSERT_EQ(pc_sessions_snapshot_read(b, buf, size), PC_OK);
    ASSERT_EQ(pc_sessions_count(b), 10);
    pc_session_reply_t x, y;
    for (uint32_t i = 1; i <= 10; i++) {
        ASSERT_EQ(pc_sessions_get(a, i * 1000, i, &x), PC_OK);
        ASSERT_EQ(pc_sessions_get(b, i * 1000, i, &y), PC_OK);
        ASSERT_EQ(x.op, y.op);
        ASSERT_EQ(x.body_size, y.body_size);
        ASSERT_TRUE(memcmp(x.body, y.body, x.body_size) == 0);
    }
    pc__corrupt_quiet = true;
    ASSERT_EQ(pc_sessions_snapshot_read(b, buf, size - 1), PC_ECORRUPT);
    buf[0] ^= 1;
    ASSERT_EQ(pc_sessions_snapshot_read(b, buf, size), PC_ECORRUPT);
    free(buf);
    pc_sessions_deinit(a);
    pc_sessions_deinit(b);
}

#define TESTS(X)                                                                     \
    X(test_register_commit_get) X(test_eviction_is_least_recently_committed)         \
    X(test_snapshot_roundtrip_and_corruption)
PC_TEST_MAIN(TESTS)
