/* Unit tests of the VSR step function (src/vsr) on a tiny hand-driven
 * cluster: messages are queued and delivered explicitly, journal and
 * superblock writes complete only when the test says so, and the test plays
 * the shell's part in checkpoints and state sync (a "checkpoint" here is
 * just the op and its header checksum: there is no state machine). */
#include <stdlib.h>

#include "../../src/vsr/vsr.h"
#include "test.h"

#define QUEUE_MAX 512
#define WRITES_MAX 256

typedef struct queued {
    pc_vsr_send_t send;
    uint8_t *body; /* a copy: the replica's pointer dies at its next call */
} queued_t;

typedef struct cluster {
    pc_vsr_t *r[3];
    pc_vsr_config_t config[3];
    bool down[3];
    pc_vsr_output_t out;
    queued_t queue[QUEUE_MAX];
    uint32_t queue_count;
    pc_vsr_header_t writes[3][WRITES_MAX];
    uint32_t writes_count[3];
    bool persist[3];
    uint32_t persist_view[3], persist_log_view[3];
    uint64_t commits[3]; /* ops applied per replica */
    uint32_t replies[3];
    pc_u128 last_body_checksum[3]; /* of the last applied body */
    /* The shell's checkpoint policy: every `checkpoint_every` applied ops
     * (0 = never), durable at once. */
    uint32_t checkpoint_every;
    uint64_t checkpoint_op[3];
    pc_u128 checkpoint_checksum[3];
    pc_u128 applied_checksum[3]; /* header checksum of the last applied op */
    /* The last sync request per replica (sync_replica + 1, 0 = none). */
    uint8_t sync_from[3];
    uint64_t sync_op_min[3];
    uint32_t syncs_asked[3];
} cluster_t;

static void checkpoint(cluster_t *c, uint8_t i);

static void flush(cluster_t *c, uint8_t i) {
    pc_vsr_output_t *o = &c->out;
    for (uint32_t k = 0; k < o->sends_count; k++) {
        ASSERT_TRUE(c->queue_count < QUEUE_MAX);
        queued_t *q = &c->queue[c->queue_count++];
        q->send = o->sends[k];
        q->body = NULL;
        uint32_t size = q->send.message.header.body_size;
        if (o->sends[k].body) {
            ASSERT_EQ(q->send.message.command, PC_VSR_PREPARE);
            q->body = malloc(size + 1);
            memcpy(q->body, o->sends[k].body, size);
        }
    }
    for (uint32_t k = 0; k < o->writes_count; k++) {
        ASSERT_TRUE(c->writes_count[i] < WRITES_MAX);
        c->writes[i][c->writes_count[i]++] = o->writes[k].header;
    }
    if (o->persist) {
        c->persist[i] = true;
        c->persist_view[i] = o->persist_view;
        c->persist_log_view[i] = o->persist_log_view;
    }
    bool due = false;
    for (uint32_t k = 0; k < o->commits_count; k++) {
        const pc_vsr_commit_out_t *m = &o->commits[k];
        ASSERT_EQ(m->header.op, c->commits[i] + 1);
        ASSERT_EQ_U128(pc_checksum(m->body, m->header.body_size, 0), m->header.body_checksum);
        c->commits[i]++;
        c->applied_checksum[i] = m->header.checksum;
        c->last_body_checksum[i] = m->header.body_checksum;
        if (m->reply) c->replies[i]++;
        if (c->checkpoint_every && c->commits[i] % c->checkpoint_every == 0) due = true;
    }
    if (o->sync) {
        ASSERT_TRUE(o->sync_replica < 3 && o->sync_replica != i);
        ASSERT_TRUE(o->sync_op_min > c->commits[i]);
        c->sync_from[i] = (uint8_t)(o->sync_replica + 1);
        c->sync_op_min[i] = o->sync_op_min;
        c->syncs_asked[i]++;
    }
    pc_vsr_output_reset(o);
    if (due) checkpoint(c, i);
}

/* The shell saved the machine at its current op: tell VSR. */
static void checkpoint(cluster_t *c, uint8_t i) {
    if (c->commits[i] <= c->checkpoint_op[i]) return;
    c->checkpoint_op[i] = c->commits[i];
    c->checkpoint_checksum[i] = c->applied_checksum[i];
    pc_vsr_on_checkpoint(c->r[i], c->commits[i], &c->out);
    flush(c, i);
}

/* Completes a pending state sync of replica i from the replica it named. */
static bool sync_now(cluster_t *c, uint8_t i) {
    if (c->sync_from[i] == 0) return false;
    uint8_t from = (uint8_t)(c->sync_from[i] - 1);
    c->sync_from[i] = 0;
    if (c->checkpoint_op[from] < c->sync_op_min[i] || c->checkpoint_op[from] <= c->commits[i])
        return false;
    c->commits[i] = c->checkpoint_op[i] = c->checkpoint_op[from];
    c->applied_checksum[i] = c->checkpoint_checksum[i] = c->checkpoint_checksum[from];
    pc_vsr_on_sync_done(c->r[i], c->checkpoint_op[i], c->checkpoint_checksum[i], &c->out);
    flush(c, i);
    return true;
}

static void replica_init(cluster_t *c, uint8_t i, uint32_t slots, uint32_t body_max) {
    pc_vsr_config_t config = {.replica = i, .replica_count = 3, .journal_slots = slots,
                              .body_max = body_max, .cluster = 7};
    c->config[i] = config;
    size_t size = pc_vsr_size(&config);
    ASSERT_TRUE(size > 0);
    if (!c->r[i]) c->r[i] = malloc(size);
    ASSERT_EQ(pc_vsr_init(c->r[i], &config), PC_OK);
}

static cluster_t *cluster_new_sized(uint32_t slots, uint32_t body_max) {
    cluster_t *c = calloc(1, sizeof *c);
    for (uint8_t i = 0; i < 3; i++) {
        replica_init(c, i, slots, body_max);
        pc_vsr_header_t root;
        pc_vsr_root(7, &root);
        pc_vsr_start_info_t si = {.head = root, .checkpoint_checksum = root.checksum,
                                  .fresh = true};
        pc_vsr_start(c->r[i], &si, &c->out);
        c->applied_checksum[i] = c->checkpoint_checksum[i] = root.checksum;
        flush(c, i);
    }
    return c;
}

static cluster_t *cluster_new(void) { return cluster_new_sized(64, 640); }

static void queue_clear(cluster_t *c) {
    for (uint32_t k = 0; k < c->queue_count; k++) free(c->queue[k].body);
    c->queue_count = 0;
}

static void cluster_free(cluster_t *c) {
    queue_clear(c);
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

static void deliver(cluster_t *c, const queued_t *q) {
    uint8_t to = q->send.to;
    pc_vsr_on_message(c->r[to], &q->send.message, q->body, &c->out);
    flush(c, to);
}

/* Delivers queued messages (dropping those to down replicas), completing
 * disks as it goes, until nothing is left. */
static void settle(cluster_t *c) {
    for (int round = 0; round < 100; round++) {
        for (uint8_t i = 0; i < 3; i++)
            if (!c->down[i]) disk(c, i);
        if (c->queue_count == 0) return;
        uint32_t n = c->queue_count;
        queued_t *batch = malloc(sizeof(queued_t) * n);
        memcpy(batch, c->queue, sizeof(queued_t) * n);
        c->queue_count = 0;
        for (uint32_t k = 0; k < n; k++) {
            if (!c->down[batch[k].send.to] && !c->down[batch[k].send.message.from])
                deliver(c, &batch[k]);
            free(batch[k].body);
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

static int request_body(cluster_t *c, uint8_t i, pc_u128 client, uint64_t n, const uint8_t *body,
                        uint32_t size) {
    int rc = pc_vsr_on_request(c->r[i], client, n, 3, body, size, n * 1000, &c->out);
    flush(c, i);
    return rc;
}

static int request(cluster_t *c, uint8_t i, uint64_t n) {
    uint8_t body[128] = {(uint8_t)n};
    return request_body(c, i, 99, n, body, sizeof body);
}

static pc_vsr_info_t info(cluster_t *c, uint8_t i) {
    pc_vsr_info_t x;
    pc_vsr_info(c->r[i], &x);
    return x;
}

static void test_size_and_config_bounds(void) {
    pc_vsr_config_t config = {.replica = 0, .replica_count = 3, .journal_slots = 256,
                              .body_max = (2u << 20) + 4096, .cluster = 1};
    size_t size = pc_vsr_size(&config);
    ASSERT_TRUE(size > 256u * ((2u << 20) + 4096));
    ASSERT_TRUE(size < 256u * ((2u << 20) + 4096) + (1u << 20));
    config.journal_slots = PC_VSR_JOURNAL_SLOTS_MIN - 1;
    ASSERT_EQ(pc_vsr_size(&config), 0);
    config.journal_slots = PC_VSR_JOURNAL_SLOTS_LIMIT + 1;
    ASSERT_EQ(pc_vsr_size(&config), 0);
    config.journal_slots = 16;
    config.body_max = 0;
    ASSERT_EQ(pc_vsr_size(&config), 0);
    config.body_max = PC_VSR_BODY_MAX_LIMIT + 1;
    ASSERT_EQ(pc_vsr_size(&config), 0);
    config.body_max = 640;
    pc_vsr_t *r = malloc(pc_vsr_size(&config));
    config.replica_count = 2;
    ASSERT_EQ(pc_vsr_init(r, &config), PC_EINVAL);
    free(r);
}

static void test_commit_needs_a_durable_quorum(void) {
    cluster_t *c = cluster_new();
    ASSERT_EQ(request(c, 0, 1), PC_OK);
    ASSERT_EQ(c->queue_count, 2); /* prepare to both backups */
    ASSERT_TRUE(c->queue[0].body != NULL);
    ASSERT_EQ(c->queue[0].send.message.checkpoint_op, 0);
    disk(c, 0); /* the primary alone is durable */
    ASSERT_EQ(info(c, 0).commit_max, 0);
    /* Backups receive the prepare but their writes are not done: no ack. */
    c->down[2] = true;
    uint32_t n = c->queue_count;
    queued_t batch[2];
    memcpy(batch, c->queue, sizeof batch);
    c->queue_count = 0;
    for (uint32_t k = 0; k < n; k++) {
        if (batch[k].send.to == 1)
            pc_vsr_on_message(c->r[1], &batch[k].send.message, batch[k].body, &c->out);
        free(batch[k].body);
    }
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

/* The shell hands over bodies beside the message: a body that does not match
 * its header's checksum, or a missing one, is dropped like a corrupt frame. */
static void test_prepare_with_bad_body_is_dropped(void) {
    cluster_t *c = cluster_new();
    ASSERT_EQ(request(c, 0, 1), PC_OK);
    ASSERT_EQ(c->queue_count, 2);
    queued_t q = c->queue[0];
    c->queue_count = 1; /* keep one copy to tamper with, drop the other */
    free(c->queue[1].body);
    q.body[3] ^= 1;
    pc_vsr_on_message(c->r[q.send.to], &q.send.message, q.body, &c->out);
    ASSERT_EQ(c->out.writes_count, 0);
    pc_vsr_on_message(c->r[q.send.to], &q.send.message, NULL, &c->out);
    ASSERT_EQ(c->out.writes_count, 0);
    q.body[3] ^= 1;
    pc_vsr_on_message(c->r[q.send.to], &q.send.message, q.body, &c->out);
    ASSERT_EQ(c->out.writes_count, 1);
    flush(c, q.send.to);
    c->queue_count = 0;
    free(q.body);
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

/* client 0: a grouped body the shell's state machine deduplicates itself,
 * so equal request numbers are separate ops; an empty body is allowed. */
static void test_grouped_and_empty_requests(void) {
    cluster_t *c = cluster_new();
    uint8_t body[16] = {1};
    ASSERT_EQ(request_body(c, 0, 0, 5, body, sizeof body), PC_OK);
    ASSERT_EQ(request_body(c, 0, 0, 5, body, sizeof body), PC_OK);
    ASSERT_EQ(request_body(c, 0, 0, 0, NULL, 0), PC_OK);
    ASSERT_EQ(info(c, 0).op, 3);
    uint8_t big[641] = {0};
    ASSERT_EQ(request_body(c, 0, 99, 1, big, sizeof big), PC_EINVAL); /* > body_max */
    settle(c);
    tick(c, 10);
    for (uint8_t i = 0; i < 3; i++) ASSERT_EQ(c->commits[i], 3);
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
    replica_init(c, 2, 64, 640);
    for (uint64_t op = 1; op <= 3; op++) {
        if (op == 2) continue; /* corrupt on disk */
        memset(body, 0, sizeof body);
        body[0] = (uint8_t)op;
        pc_vsr_load(c->r[2], &h[op], body);
    }
    pc_vsr_header_t root;
    pc_vsr_root(7, &root);
    c->commits[2] = 0;
    pc_vsr_start_info_t si = {.head = root, .untrusted = true};
    pc_vsr_start(c->r[2], &si, &c->out);
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

/* A 16-slot ring serves 100 ops when the shell checkpoints every 4. */
static void test_ring_wraps_with_checkpoints(void) {
    cluster_t *c = cluster_new_sized(16, 640);
    c->checkpoint_every = 4;
    for (uint64_t n = 1; n <= 100; n++) {
        ASSERT_EQ(request(c, 0, n), PC_OK);
        settle(c);
        if (n % 7 == 0) tick(c, 5);
    }
    tick(c, 10);
    for (uint8_t i = 0; i < 3; i++) {
        pc_vsr_info_t x = info(c, i);
        ASSERT_EQ(c->commits[i], 100);
        ASSERT_EQ(x.commit_min, 100);
        ASSERT_EQ(x.checkpoint_op, 100);
        ASSERT_EQ(c->syncs_asked[i], 0); /* fault-free: never a sync */
    }
    pc_vsr_header_t h;
    ASSERT_TRUE(pc_vsr_header_at(c->r[1], 100, &h));
    ASSERT_TRUE(!pc_vsr_header_at(c->r[1], 84, &h)); /* its slot now holds op 100 */
    cluster_free(c);
}

/* Without checkpoints the primary stops at checkpoint_op + journal_slots;
 * after the shell checkpoints, it goes on. Restart from a checkpoint. */
static void test_primary_busy_until_checkpoint(void) {
    cluster_t *c = cluster_new_sized(16, 640);
    for (uint64_t n = 1; n <= 16; n++) {
        ASSERT_EQ(request(c, 0, n), PC_OK);
        settle(c);
    }
    tick(c, 10);
    ASSERT_EQ(info(c, 0).commit_max, 16);
    ASSERT_EQ(request(c, 0, 17), PC_EBUSY);
    for (uint8_t i = 0; i < 3; i++) checkpoint(c, i);
    ASSERT_EQ(info(c, 0).checkpoint_op, 16);
    ASSERT_EQ(request(c, 0, 17), PC_OK);
    settle(c);
    tick(c, 10);
    for (uint8_t i = 0; i < 3; i++) ASSERT_EQ(c->commits[i], 17);
    /* Replica 1 restarts from its checkpoint at 16 with op 17 in its journal. */
    pc_vsr_header_t h17, h16;
    ASSERT_TRUE(pc_vsr_header_at(c->r[1], 17, &h17));
    ASSERT_TRUE(pc_vsr_header_at(c->r[1], 16, &h16));
    uint8_t body[128] = {17};
    replica_init(c, 1, 16, 640);
    pc_vsr_load(c->r[1], &h17, body);
    pc_vsr_start_info_t si = {.head = h16, .checkpoint_op = 16,
                              .checkpoint_checksum = h16.checksum};
    pc_vsr_start(c->r[1], &si, &c->out);
    c->commits[1] = 16;
    flush(c, 1);
    ASSERT_EQ(info(c, 1).commit_min, 16);
    ASSERT_EQ(info(c, 1).op, 17);
    tick(c, 30);
    ASSERT_EQ(info(c, 1).status, PC_VSR_NORMAL);
    ASSERT_EQ(c->commits[1], 17); /* applied from its journal, not from op 1 */
    cluster_free(c);
}

/* The whole cluster restarts idle at its checkpoint, loading nothing at or
 * below it (as production's shell does): every head is a checkpoint known
 * by checksum only. A view change still forms (do_view_change and
 * start_view carry the checksum without headers) and new ops chain to it. */
static void test_restart_at_checkpoint_without_headers(void) {
    cluster_t *c = cluster_new_sized(16, 640);
    c->checkpoint_every = 4;
    for (uint64_t n = 1; n <= 8; n++) {
        ASSERT_EQ(request(c, 0, n), PC_OK);
        settle(c);
    }
    tick(c, 10);
    pc_vsr_header_t root;
    pc_vsr_root(7, &root);
    for (uint8_t i = 0; i < 3; i++) {
        ASSERT_EQ(c->checkpoint_op[i], 8);
        replica_init(c, i, 16, 640);
        pc_vsr_start_info_t si = {.head = root, .checkpoint_op = 8,
                                  .checkpoint_checksum = c->checkpoint_checksum[i]};
        pc_vsr_start(c->r[i], &si, &c->out);
        flush(c, i);
        pc_vsr_header_t h;
        ASSERT_TRUE(!pc_vsr_header_at(c->r[i], 8, &h));
        ASSERT_EQ(info(c, i).commit_min, 8);
    }
    queue_clear(c);
    tick(c, 300);
    uint8_t p = 3;
    for (uint8_t i = 0; i < 3; i++) {
        ASSERT_EQ(info(c, i).status, PC_VSR_NORMAL);
        if (info(c, i).primary) p = i;
    }
    ASSERT_TRUE(p < 3);
    ASSERT_EQ(request(c, p, 9), PC_OK);
    settle(c);
    tick(c, 10);
    for (uint8_t i = 0; i < 3; i++) {
        ASSERT_EQ(c->commits[i], 9);
        ASSERT_TRUE(!info(c, i).diverged);
    }
    cluster_free(c);
}

/* Replica 2 misses 60 ops on a 16-slot ring: the ops it needs are gone from
 * its peers' rings, so it asks for state sync, and after the shell installs
 * a peer's checkpoint it repairs and commits the rest. */
static void test_lagging_replica_syncs(void) {
    cluster_t *c = cluster_new_sized(16, 640);
    c->checkpoint_every = 4;
    c->down[2] = true;
    for (uint64_t n = 1; n <= 60; n++) {
        ASSERT_EQ(request(c, 0, n), PC_OK);
        settle(c);
    }
    tick(c, 5);
    ASSERT_EQ(c->commits[0], 60);
    ASSERT_EQ(c->commits[2], 0);
    c->down[2] = false;
    bool synced = false;
    for (int t = 0; t < 200 && !synced; t++) {
        tick(c, 1);
        synced = sync_now(c, 2);
    }
    ASSERT_TRUE(synced);
    ASSERT_TRUE(info(c, 2).checkpoint_op >= 56);
    for (uint64_t n = 61; n <= 70; n++) {
        ASSERT_EQ(request(c, 0, n), PC_OK);
        settle(c);
    }
    tick(c, 40);
    pc_vsr_info_t x = info(c, 2);
    ASSERT_EQ(x.commit_min, 70);
    ASSERT_EQ(c->commits[2], 70);
    ASSERT_TRUE(!x.diverged);
    ASSERT_TRUE(!x.sync_wanted);
    /* It votes again: with the old primary gone, 1 and 2 form a view. */
    c->down[0] = true;
    tick(c, 200);
    ASSERT_EQ(info(c, 1).status, PC_VSR_NORMAL);
    ASSERT_EQ(info(c, 2).status, PC_VSR_NORMAL);
    ASSERT_EQ(info(c, 2).op, 70);
    cluster_free(c);
}

/* A 64 KiB body replicates (bodies no longer ride inside the message). */
static void test_large_body_replicates(void) {
    const uint32_t size = 64u << 10;
    cluster_t *c = cluster_new_sized(16, size + 4096);
    uint8_t *body = malloc(size);
    for (uint32_t k = 0; k < size; k++) body[k] = (uint8_t)(k * 31u + 7u);
    ASSERT_EQ(request_body(c, 0, 99, 1, body, size), PC_OK);
    settle(c);
    tick(c, 10);
    for (uint8_t i = 0; i < 3; i++) {
        ASSERT_EQ(c->commits[i], 1);
        ASSERT_EQ_U128(c->last_body_checksum[i], pc_checksum(body, size, 0));
    }
    free(body);
    cluster_free(c);
}

/* Repair is pipelined: replica 2 misses 2 x journal_slots / 4 ops (32 on a
 * 64-slot ring, its peers' checkpoints stay within half a ring of it, so
 * state sync is not due) while the unit keeps committing one op per tick.
 * It learns the chain 24 headers per repair answer and asks for the next
 * bodies as soon as an answer arrives, so it catches up by repair alone
 * within a few ticks (the old pace, 4 prepares per 4-tick repair timer with
 * one broken link per walk, needed over 100 ticks and fell back to sync). */
static void test_repair_is_pipelined(void) {
    const uint32_t slots = 64;
    cluster_t *c = cluster_new_sized(slots, 640);
    c->checkpoint_every = slots / 4;
    uint64_t n = 0;
    while (n < 8) {
        ASSERT_EQ(request(c, 0, ++n), PC_OK);
        settle(c);
    }
    tick(c, 10);
    ASSERT_EQ(c->commits[2], 8);
    c->down[2] = true;
    while (n < 8 + 2 * (slots / 4)) {
        ASSERT_EQ(request(c, 0, ++n), PC_OK);
        settle(c);
    }
    tick(c, 5);
    ASSERT_EQ(c->commits[0], 40);
    ASSERT_EQ(c->commits[2], 8);
    ASSERT_EQ(info(c, 0).checkpoint_op, 32);
    c->down[2] = false;
    uint64_t behind = c->commits[0];
    uint32_t ticks = 0;
    for (; ticks < 40 && c->commits[2] < behind; ticks++) {
        ASSERT_EQ(request(c, 0, ++n), PC_OK); /* a busy unit: one op per tick */
        settle(c);
        tick(c, 1);
    }
    printf("caught up %llu ops in %u ticks (the first heartbeat, then round trips)\n",
           (unsigned long long)(behind - 8), ticks);
    ASSERT_TRUE(c->commits[2] >= behind);
    ASSERT_TRUE(ticks <= 8); /* heartbeats come every 5 ticks */
    for (uint32_t t = 0; t < 10; t++) { /* and it keeps up */
        ASSERT_EQ(request(c, 0, ++n), PC_OK);
        settle(c);
        tick(c, 1);
        ASSERT_TRUE(c->commits[2] + 1 >= c->commits[0]);
    }
    tick(c, 10);
    ASSERT_EQ(c->commits[2], c->commits[0]);
    ASSERT_EQ(c->syncs_asked[2], 0);
    ASSERT_TRUE(!info(c, 2).diverged);
    ASSERT_TRUE(info(c, 2).checkpoint_op >= 32); /* it applied and checkpointed itself */
    cluster_free(c);
}

/* The primary commits op 1 (and its client is answered) with one backup's
 * ack, then dies before any backup learns of the commit. The new primary's
 * log has op 1, but the commit number the view change gives it is 0: until
 * it has applied op 1 it must not count as caught up, or a read it served
 * would miss an acknowledged request. Checked after every delivery. */
static void test_new_primary_caught_up_only_with_acknowledged_ops(void) {
    cluster_t *c = cluster_new();
    ASSERT_EQ(request(c, 0, 1), PC_OK);
    settle(c);
    ASSERT_EQ(c->replies[0], 1);     /* acknowledged */
    ASSERT_EQ(info(c, 1).commit_max, 0); /* no backup knows it committed */
    ASSERT_EQ(info(c, 2).commit_max, 0);
    c->down[0] = true;
    bool window_seen = false;
    for (uint32_t t = 0; t < 300; t++) {
        for (uint8_t i = 1; i < 3; i++) {
            pc_vsr_on_tick(c->r[i], &c->out);
            flush(c, i);
        }
        /* settle(), one message or disk completion at a time. */
        for (int round = 0; round < 100; round++) {
            for (uint8_t i = 1; i < 3; i++) disk(c, i);
            if (c->queue_count == 0) break;
            queued_t q = c->queue[0];
            memmove(c->queue, c->queue + 1, sizeof(queued_t) * --c->queue_count);
            if (!c->down[q.send.to] && !c->down[q.send.message.from]) deliver(c, &q);
            free(q.body);
            for (uint8_t i = 1; i < 3; i++) {
                pc_vsr_info_t x = info(c, i);
                if (!x.primary) continue;
                if (x.commit_min < 1) {
                    window_seen |= x.commit_min >= x.commit_max; /* the old gate's hole */
                    ASSERT_TRUE(!pc_vsr_caught_up(&x));
                }
            }
        }
    }
    ASSERT_TRUE(window_seen); /* the case this test is about did happen */
    uint8_t p = (uint8_t)(info(c, 1).view % 3);
    pc_vsr_info_t x = info(c, p);
    ASSERT_TRUE(x.primary && x.commit_min >= 1 && pc_vsr_caught_up(&x));
    cluster_free(c);
}

/* An op lost everywhere below one that survived (DESIGN.md, "Nacks and the
 * header ring"). The primary prepares ops 3 and 4; neither prepare reaches
 * a backup. Its write of op 3 is misdirected, its write of op 4 lands, both
 * are reported durable, and it restarts holding op 4 whole and, of op 3,
 * either the header-ring copy (header_survives) or nothing readable (a
 * faulty slot). Op 3's body exists nowhere. With replica 2 away, the view
 * change hears replicas 0 and 1: the chosen log is replica 0's (head 4);
 * replica 1 nacks ops 3 and 4, but replica 0 may have acknowledged both
 * (one nack: not a quorum) and nobody holds op 3's body, so no view may
 * start. Once replica 2's do_view_change also nacks op 3, a quorum nacks
 * it: never committed, so the new primary truncates the log at op 3.
 * The old rule (cut from the top only ops no sender holds durably, and no
 * lower than the lowest header the chain establishes) stopped at op 4 in
 * the faulty-slot case: op 3's header is unknown to everyone, so every
 * view started with head 4 and a hole below it, and stalled, forever. */
static void lost_op_below_a_survivor(bool header_survives) {
    cluster_t *c = cluster_new();
    for (uint64_t n = 1; n <= 2; n++) {
        ASSERT_EQ(request(c, 0, n), PC_OK);
        settle(c);
    }
    tick(c, 10);
    ASSERT_EQ(c->commits[1], 2);
    ASSERT_EQ(c->commits[2], 2);
    ASSERT_EQ(request(c, 0, 3), PC_OK);
    ASSERT_EQ(request(c, 0, 4), PC_OK);
    queue_clear(c); /* no backup hears of ops 3 and 4 */
    disk(c, 0);     /* both reported durable on the primary */
    ASSERT_EQ(info(c, 0).op, 4);
    ASSERT_EQ(info(c, 0).commit_max, 2);
    pc_vsr_header_t h[5];
    for (uint64_t op = 1; op <= 4; op++) ASSERT_TRUE(pc_vsr_header_at(c->r[0], op, &h[op]));
    /* Restart replica 0 from its disk: op 3's prepare never landed. */
    replica_init(c, 0, 64, 640);
    for (uint64_t op = 1; op <= 4; op++) {
        uint8_t body[128] = {(uint8_t)op};
        if (op != 3) pc_vsr_load(c->r[0], &h[op], body);
        else if (header_survives) pc_vsr_load_header(c->r[0], &h[op]);
        else pc_vsr_load_faulty(c->r[0], 3);
    }
    pc_vsr_header_t root;
    pc_vsr_root(7, &root);
    pc_vsr_start_info_t si = {.head = root, .checkpoint_checksum = root.checksum};
    pc_vsr_start(c->r[0], &si, &c->out);
    c->commits[0] = 0;
    c->applied_checksum[0] = root.checksum;
    flush(c, 0);
    ASSERT_EQ(info(c, 0).op, 4);
    c->down[2] = true;
    for (uint32_t t = 0; t < 400; t++) {
        tick(c, 1);
        /* Two voters cannot decide op 3: no view starts on a log with op 3
         * in it (nobody could ever complete it). */
        for (uint8_t i = 0; i < 2; i++) {
            pc_vsr_info_t x = info(c, i);
            ASSERT_TRUE(x.status != PC_VSR_NORMAL || x.view == 0);
        }
    }
    c->down[2] = false;
    tick(c, 400);
    pc_vsr_info_t a = info(c, 0), b = info(c, 1), d = info(c, 2);
    ASSERT_EQ(a.status, PC_VSR_NORMAL);
    ASSERT_EQ(b.status, PC_VSR_NORMAL);
    ASSERT_EQ(d.status, PC_VSR_NORMAL);
    ASSERT_EQ(a.view, b.view);
    ASSERT_EQ(b.view, d.view);
    ASSERT_EQ(a.op, 2); /* truncated at op 3 */
    uint8_t p = (uint8_t)(a.view % 3);
    ASSERT_EQ(request(c, p, 5), PC_OK);
    settle(c);
    tick(c, 10);
    for (uint8_t i = 0; i < 3; i++) {
        ASSERT_EQ(c->commits[i], 3);
        pc_vsr_header_t x;
        ASSERT_TRUE(pc_vsr_header_at(c->r[i], 3, &x));
        ASSERT_EQ(x.request, 5); /* the new op 3, not the lost one */
    }
    cluster_free(c);
}

static void test_view_change_truncates_at_an_op_a_quorum_nacks(void) {
    lost_op_below_a_survivor(false);
}

/* The same with op 3's header surviving in the header ring: replica 0 knows
 * it held op 3 durably (it counted itself for it), so it does not nack it,
 * although the body is gone; the other two do. */
static void test_recorded_header_without_body_is_not_a_nack(void) {
    lost_op_below_a_survivor(true);
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
    X(test_size_and_config_bounds)                                                   \
    X(test_commit_needs_a_durable_quorum)                                            \
    X(test_prepare_with_bad_body_is_dropped)                                         \
    X(test_backups_apply_in_order_from_heartbeats)                                   \
    X(test_duplicate_request_in_pipeline_is_ignored)                                 \
    X(test_grouped_and_empty_requests)                                               \
    X(test_view_change_after_primary_silence)                                        \
    X(test_restart_repairs_a_damaged_entry)                                          \
    X(test_ring_wraps_with_checkpoints)                                              \
    X(test_primary_busy_until_checkpoint)                                            \
    X(test_lagging_replica_syncs)                                                    \
    X(test_restart_at_checkpoint_without_headers)                                    \
    X(test_large_body_replicates)                                                    \
    X(test_repair_is_pipelined)                                                      \
    X(test_new_primary_caught_up_only_with_acknowledged_ops)                         \
    X(test_view_change_truncates_at_an_op_a_quorum_nacks)                            \
    X(test_recorded_header_without_body_is_not_a_nack)                               \
    X(test_planted_bug_commits_without_quorum)
PC_TEST_MAIN(TESTS)
