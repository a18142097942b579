/* Unit tests of the VSR step function (src/vsr) on a tiny hand-driven
 * cluster: messages are queued and delivered explicitly, journal and
 * superblock writes complete only when the test says so. */
#include <stdlib.h>

#include "../../src/vsr/vsr.h"
#include "test.h"

#define QUEUE_MAX 512

typedef struct cluster {
    pc_vsr_t *r[3];
    bool down[3];
    pc_vsr_output_t out;
    pc_vsr_send_t queue[QUEUE_MAX];
    uint32_t queue_count;
    pc_vsr_header_t writes[3][64];
    uint32_t writes_count[3];
    bool persist[3];
    uint32_t persist_view[3], persist_log_view[3];
    uint64_t commits[3]; /* ops applied per replica */
    uint32_t replies[3];
} cluster_t;


static void flush(cluster_t *c, uint8_t i) {
    pc_vsr_output_t *o = &c->out;
    for (uint32_t k = 0; k < o->sends_count; k++) {
        ASSERT_TRUE(c->queue_count < QUEUE_MAX);
        c->queue[c->queue_count++] = o->sends[k];
    }
    for (uint32_t k = 0; k < o->writes_count; k++)
        c->writes[i][c->writes_count[i]++] = o->writes[k].header;
    if (o->persist) {
        c->persist[i] = true;
        c->persist_view[i] = o->persist_view;
        c->persist_log_view[i] = o->persist_log_view;
    }
    for (uint32_t k = 0; k < o->commits_count; k++) {
        ASSERT_EQ(o->commits[k].header.op, c->commits[i] + 1);
        c->commits[i]++;
        if (o->commits[k].reply) c->replies[i]++;
    }
    pc_vsr_output_reset(o);
}

static cluster_t *cluster_new(void) {
    cluster_t *c = calloc(1, sizeof *c);
    for (uint8_t i = 0; i < 3; i++) {
        c->r[i] = malloc(pc_vsr_size());
        pc_vsr_config_t config = {.replica = i, .replica_count = 3, .journal_slots = 64,
                                  .cluster = 7};
        ASSERT_EQ(pc_vsr_init(c->r[i], &config), PC_OK);
        pc_vsr_start(c->r[i], 0, 0, NULL, true, false, &c->out);
        flush(c, i);
    }
    return c;
}

static void cluster_free(cluster_t *c) {
    for (uint8_t i = 0; i < 3; i++) free(c->r[i]);
    free(c);
}

/* Completes every pending write and superblock write of replica i. */
static void disk(cluster_t *c, uint8_t i) {
    if (c->persist[i]) {
        c->persist[i] = false;
        pc_vsr_on_persist_done(c->r[i], c->persist_view[i], c->persist_log_view[i], &c->out);
        flush(c, i);
    }
    for (uint32_t k = 0; k < c->writes_count[i]; k++) {
        pc_vsr_on_write_done(c->r[i], c->writes[i][k].op, c->writes[i][k].checksum, &c->out);
        flush(c, i);
    }
    c->writes_count[i] = 0;
}

/* Delivers queued messages (dropping those to down replicas), completing
 * disks as it goes, until nothing is left. */
static void settle(cluster_t *c) {
    for (int round = 0; round < 100; round++) {
        for (uint8_t i = 0; i < 3; i++)
            if (!c->down[i]) disk(c, i);
        if (c->queue_count == 0) return;
        pc_vsr_send_t *batch = malloc(sizeof(pc_vsr_send_t) * c->queue_count);
        uint32_t n = c->queue_count;
        memcpy(batch, c->queue, sizeof(pc_vsr_send_t) * n);
        c->queue_count = 0;
        for (uint32_t k = 0; k < n; k++) {
            if (c->down[batch[k].to] || c->down[batch[k].message.from]) continue;
            pc_vsr_on_message(c->r[batch[k].to], &batch[k].message, &c->out);
            flush(c, batch[k].to);
        }
        free(batch);
    }
}

static void tick(cluster_t *c, uint32_t ticks) {
    for (uint32_t t = 0; t < ticks; t++) {
        for (uint8_t i = 0; i < 3; i++) {
            if (c->down[i]) continue;
            pc_vsr_on_tick(c->r[i], &c->out);
            flush(c, i);
        }
        settle(c);
    }
}

static int request(cluster_t *c, uint8_t i, uint64_t n) {
    uint8_t body[128] = {(uint8_t)n};
    int rc = pc_vsr_on_request(c->r[i], 99, n, 3, body, sizeof body, n * 1000, &c->out);
    flush(c, i);
    return rc;
}

static pc_vsr_info_t info(cluster_t *c, uint8_t i) {
    pc_vsr_info_t x;
    pc_vsr_info(c->r[i], &x);
    return x;
}

static void test_commit_needs_a_durable_quorum(void) {
    cluster_t *c = cluster_new();
    ASSERT_EQ(request(c, 0, 1), PC_OK);
    ASSERT_EQ(c->queue_count, 2); /* prepare to both backups */
    disk(c, 0);                   /* the primary alone is durable */
    ASSERT_EQ(info(c, 0).commit_max, 0);
    /* Backups receive the prepare but their writes are not done: no ack. */
    c->down[2] = true;
    for (uint32_t k = 0; k < c->queue_count; k++)
        if (c->queue[k].to == 1) pc_vsr_on_message(c->r[1], &c->queue[k].message, &c->out);
    c->queue_count = 0;
    flush(c, 1);
    ASSERT_EQ(c->queue_count, 0);
    ASSERT_EQ(info(c, 0).commit_max, 0);
    disk(c, 1); /* now durable on replica 1: it acks, the primary commits */
    settle(c);
    ASSERT_EQ(info(c, 0).commit_max, 1);
    ASSERT_EQ(c->commits[0], 1);
    ASSERT_EQ(c->replies[0], 1);
    ASSERT_EQ(c->replies[1], 0);
    cluster_free(c);
}

static void test_backups_apply_in_order_from_heartbeats(void) {
    cluster_t *c = cluster_new();
    for (uint64_t n = 1; n <= 5; n++) {
        ASSERT_EQ(request(c, 0, n), PC_OK);
        settle(c);
    }
    ASSERT_EQ(info(c, 0).commit_max, 5);
    tick(c, 10); /* commit heartbeats */
    ASSERT_EQ(c->commits[1], 5);
    ASSERT_EQ(c->commits[2], 5);
    ASSERT_EQ(request(c, 1, 6), PC_EBUSY); /* not the primary */
    cluster_free(c);
}

static void test_duplicate_request_in_pipeline_is_ignored(void) {
    cluster_t *c = cluster_new();
    ASSERT_EQ(request(c, 0, 1), PC_OK);
    uint32_t sent = c->queue_count;
    ASSERT_EQ(request(c, 0, 1), PC_OK);
    ASSERT_EQ(c->queue_count, sent);
    ASSERT_EQ(info(c, 0).op, 1);
    cluster_free(c);
}

static void test_view_change_after_primary_silence(void) {
    cluster_t *c = cluster_new();
    for (uint64_t n = 1; n <= 3; n++) {
        ASSERT_EQ(request(c, 0, n), PC_OK);
        settle(c);
    }
    c->down[0] = true;
    tick(c, 200);
    pc_vsr_info_t a = info(c, 1), b = info(c, 2);
    ASSERT_EQ(a.status, PC_VSR_NORMAL);
    ASSERT_EQ(b.status, PC_VSR_NORMAL);
    ASSERT_EQ(a.view, b.view);
    ASSERT_TRUE(a.view >= 1 && a.view % 3 != 0);
    uint8_t p = (uint8_t)(a.view % 3);
    ASSERT_EQ(info(c, p).op, 3); /* nothing committed was lost */
    ASSERT_EQ(request(c, p, 4), PC_OK);
    settle(c);
    ASSERT_EQ(info(c, p).commit_max, 4);
    ASSERT_EQ(c->commits[p], 4);
    cluster_free(c);
}

/* Replica 2 restarts with a damaged op 2 (not loaded): it learns the view by
 * request_start_view and repairs op 2 from a peer before applying it. */
static void test_restart_repairs_a_damaged_entry(void) {
    cluster_t *c = cluster_new();
    for (uint64_t n = 1; n <= 3; n++) {
        ASSERT_EQ(request(c, 0, n), PC_OK);
        settle(c);
    }
    tick(c, 10);
    pc_vsr_header_t h[4];
    for (uint64_t op = 1; op <= 3; op++) ASSERT_TRUE(pc_vsr_header_at(c->r[2], op, &h[op]));
    uint8_t body[128];
    pc_vsr_config_t config = {.replica = 2, .replica_count = 3, .journal_slots = 64, .cluster = 7};
    ASSERT_EQ(pc_vsr_init(c->r[2], &config), PC_OK);
    for (uint64_t op = 1; op <= 3; op++) {
        if (op == 2) continue; /* corrupt on disk */
        memset(body, 0, sizeof body);
        body[0] = (uint8_t)op;
        pc_vsr_load(c->r[2], &h[op], body);
    }
    pc_vsr_header_t root;
    pc_vsr_root(7, &root);
    c->commits[2] = 0;
    pc_vsr_start(c->r[2], 0, 0, &root, false, true, &c->out);
    flush(c, 2);
    ASSERT_EQ(info(c, 2).status, PC_VSR_RECOVERING);
    ASSERT_TRUE(info(c, 2).untrusted);
    tick(c, 30);
    pc_vsr_info_t x = info(c, 2);
    ASSERT_EQ(x.status, PC_VSR_NORMAL);
    ASSERT_EQ(x.commit_min, 3);
    ASSERT_EQ(c->commits[2], 3);
    ASSERT_TRUE(!x.untrusted); /* verified up to the start_view head */
    cluster_free(c);
}

static void test_planted_bug_commits_without_quorum(void) {
    cluster_t *c = cluster_new();
    pc__vsr_bug_commit_without_quorum = true;
    ASSERT_EQ(request(c, 0, 1), PC_OK);
    ASSERT_EQ(info(c, 0).commit_max, 1); /* no write done, no ack: the bug */
    pc__vsr_bug_commit_without_quorum = false;
    cluster_free(c);
}

#define TESTS(X)                                                                     \
    X(test_commit_needs_a_durable_quorum)                                            \
    X(test_backups_apply_in_order_from_heartbeats)                                   \
    X(test_duplicate_request_in_pipeline_is_ignored)                                 \
    X(test_view_change_after_primary_silence)                                        \
    X(test_restart_repairs_a_damaged_entry)                                          \
    X(test_planted_bug_commits_without_quorum)
PC_TEST_MAIN(TESTS)
