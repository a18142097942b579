/*
 * machine.c — the state machine of a replica: the ledger, the session table
 * and the transfer store, driven by committed entries.
 *
 * Applying an entry is deterministic: it depends only on the entry and the
 * state, so WAL replay, VSR commits on a backup and the primary's live path
 * all reach the same state. Each request applies at most once per session;
 * a duplicate that reached the log twice is answered like the first time.
 * set_cluster and get_cluster go to the cluster map (cluster.c) instead.
 * Checkpoints hold the ledger snapshot, the cluster map and the session
 * table; the transfer store is synced first and the checkpoint records how
 * many slots it covers.
 */
#include <stdlib.h>
#include <string.h>

#include "replica_int.h"

static int slot_reader(void *ctx, uint64_t loc, pc_transfer_slot_t *out) {
    replica_t *r = ctx;
    return pc_storage_slots_read(r->storage, loc, out, 1);
}

/* Persists the slots the last apply produced. A failure here is fatal: the
 * WAL already holds the batch, so restarting rebuilds the store from it. */
static void flush_slots(replica_t *r) {
    const pc_transfer_slot_t *slots;
    uint64_t first;
    uint32_t n = pc_ledger_slots(r->ledger, &slots, &first);
    if (n == 0) return;
    PC_ASSERT(first == pc_storage_slots_count(r->storage));
    /* The checksum field of a slot is storage-owned (ledger.h), so storage
     * fills it in place in the ledger's buffer. */
    int rc = pc_storage_slots_write(r->storage, first, (void *)slots, n);
    if (rc != PC_OK) {
        pc_log("replica", "fatal", "writing the transfer store: %s", pc_strerror(rc));
        exit(1);
    }
    pc_ledger_slots_flushed(r->ledger);
}

/* Applies one create batch: prefetch the stored records it needs, apply in
 * memory, persist the new slots. Returns the number of results. */
static uint32_t apply_batch(replica_t *r, pc_operation_t operation, uint32_t flags,
                            uint64_t timestamp, const void *events, uint32_t count) {
    uint32_t n = pc_ledger_prefetch(r->ledger, operation, events, count, r->locs);
    for (uint32_t i = 0; i < n; i++) {
        int rc = pc_storage_slots_read(r->storage, r->locs[i], r->slot_buf, 1);
        if (rc != PC_OK) {
            pc_log("replica", "fatal", "reading transfer slot %llu: %s",
                   (unsigned long long)r->locs[i], pc_strerror(rc));
            exit(1);
        }
        pc_ledger_prefetch_put(r->ledger, r->locs[i], &r->slot_buf[0].transfer);
    }
    uint32_t results =
        pc_ledger_apply(r->ledger, operation, flags, timestamp, events, count, r->results);
    flush_slots(r);
    return results;
}

/* set_cluster: the cluster map lives beside the ledger, not in it. Its reply
 * is a create reply like set_routing's: empty when created, else one result.
 * Returns the number of results in r->results. */
static uint32_t commit_cluster(replica_t *r, const void *body) {
    pc_cluster_t record; /* the body sits at any offset of the entry: copy it */
    memcpy(&record, body, sizeof record);
    uint32_t result = pc_cluster_apply(&r->cluster, &record);
    PC_ASSERT(pc_cluster_result_name(result) != NULL);
    if (result == PC_CLUSTER_RESULT_created) return 0;
    r->results[0] = (pc_create_result_t){.index = 0, .result = result};
    return 1;
}

/* get_cluster: a read, answered from this replica's state (not logged). */
static void serve_cluster(replica_t *r, conn_t *c, const pc_header_t *h, const void *body) {
    PC_ASSERT(h->size - PC_HEADER_SIZE == sizeof(pc_u128));
    PC_STATIC_ASSERT(sizeof(pc_cluster_t) <= PC_MESSAGE_BODY_MAX, "the map fits a reply");
    int status = pc_cluster_get(&r->cluster, body, (pc_cluster_t *)r->reply_body);
    pc_session_reply_t reply = {.session = h->session};
    uint32_t size = status == PC_OK ? (uint32_t)sizeof(pc_cluster_t) : 0;
    pc__replica_send_reply(r, c, h, status, &reply, r->reply_body, size);
}

/* Commits one request of a committed WAL entry. Deterministic: it depends
 * only on the entry and the state, so replay reproduces it exactly. Fills
 * *reply (body points into replica or session memory) for the live path. */
static void commit_request(replica_t *r, uint64_t op, uint64_t timestamp, const pc_header_t *h,
                           const void *body, pc_session_reply_t *reply, int *status) {
    *status = PC_OK;
    memset(reply, 0, sizeof *reply);
    reply->op = op;
    reply->operation = h->operation;
    if (h->operation == PC_OP_register) {
        pc_sessions_register(r->sessions, h->client, op);
        reply->session = op;
        reply->timestamp = timestamp;
        return;
    }
    pc_session_reply_t last;
    int rc = pc_sessions_get(r->sessions, h->client, h->session, &last);
    if (rc != PC_OK) {
        *status = rc;
        return;
    }
    if (h->request <= last.request) {
        /* A duplicate that reached the log twice: answer as the first time. */
        if (h->request == last.request && h->operation == last.operation) *reply = last;
        else *status = PC_EREQUEST_STALE;
        return;
    }
    /* A create or set_routing (pc_request_verify let nothing else into the
     * log): whole records, and set_routing exactly one. */
    PC_ASSERT(pc_operation_is_write((pc_operation_t)h->operation));
    uint32_t count = (h->size - PC_HEADER_SIZE) / pc_operation_event_size(h->operation);
    PC_ASSERT(h->operation != PC_OP_set_routing || count == 1);
    if (h->operation != PC_OP_set_cluster && !pc_ledger_handles((pc_operation_t)h->operation)) {
        *status = PC_EOPERATION; /* a write this build cannot apply: refused, never asserted */
        return;
    }
    uint32_t n = h->operation == PC_OP_set_cluster
                     ? commit_cluster(r, body)
                     : apply_batch(r, (pc_operation_t)h->operation,
                                   h->flags & PC_HEADER_SHADOW, timestamp, body, count);
    pc_ledger_stats_t stats;
    pc_ledger_stats(r->ledger, &stats);
    reply->session = h->session;
    reply->request = h->request;
    reply->timestamp = stats.timestamp_last;
    reply->body = (const uint8_t *)r->results;
    reply->body_size = n * (uint32_t)sizeof(pc_create_result_t);
    pc_sessions_commit(r->sessions, h->client, reply);
}

/* Replies to the connection that sent a prepared request, unless it closed
 * meanwhile (its session keeps the reply for the retry). */
static void reply_prepared(replica_t *r, const prepared_t *p, const pc_header_t *req,
                           const pc_session_reply_t *reply, int status) {
    if (p->conn < 0) return;
    conn_t *c = &r->conns[p->conn];
    if (c->generation != p->generation) return;
    c->busy = false;
    pc__replica_send_reply(r, c, req, status, reply, reply->body, reply->body_size);
}

/* Walks the request messages of one WAL entry body; on the live path it
 * replies to each request's connection as it goes. */
int pc__machine_commit(replica_t *r, uint64_t op, uint64_t timestamp, const uint8_t *body,
                       uint32_t size, const prepared_t *prepared, uint32_t prepared_count) {
    PC_ASSERT(op > r->applied_op);
    r->applied_op = op;
    if (timestamp > r->timestamp_last) r->timestamp_last = timestamp;
    if (size == 0) {
        pc_ledger_expire(r->ledger, timestamp);
        return PC_OK;
    }
    uint32_t offset = 0, index = 0;
    while (offset < size) {
        if (size - offset < PC_HEADER_SIZE) return PC_CORRUPT("WAL entry: truncated request header");
        pc_header_t h;
        memcpy(&h, body + offset, sizeof h);
        if (h.size < PC_HEADER_SIZE || h.size > size - offset ||
            pc_request_verify(&h, body + offset + PC_HEADER_SIZE) != PC_OK)
            return PC_CORRUPT("WAL entry: bad request inside entry");
        pc_session_reply_t reply;
        int status;
        commit_request(r, op, timestamp, &h, body + offset + PC_HEADER_SIZE, &reply, &status);
        if (prepared) {
            PC_ASSERT(index < prepared_count);
            PC_ASSERT(prepared[index].offset == offset);
            reply_prepared(r, &prepared[index], &h, &reply, status);
        }
        offset += h.size;
        index++;
    }
    return PC_OK;
}

int pc__machine_replay_entry(void *ctx, const pc_wal_header_t *header, const void *body) {
    replica_t *r = ctx;
    return pc__machine_commit(r, header->op, header->timestamp, body, header->body_size, NULL, 0);
}

/* get_xts_legs and get_totals: reads of the ledger's xts state into the
 * reply body (records of PC_RECORD_SIZE). Returns the count or a pc_err. */
static int serve_xts(replica_t *r, const pc_header_t *h, const void *body) {
    PC_STATIC_ASSERT(sizeof(pc_totals_t) == PC_RECORD_SIZE, "totals are records");
    PC_ASSERT(h->size > PC_HEADER_SIZE);
    if (h->operation == PC_OP_get_xts_legs) {
        pc_account_filter_t filter;
        memcpy(&filter, body, sizeof filter);
        return pc_ledger_xts_legs(r->ledger, &filter, (pc_transfer_t *)r->reply_body);
    }
    pc_u128 space; /* 0: the real namespace, 1: the shadow one */
    memcpy(&space, body, sizeof space);
    if (space > 1) return PC_EINVAL;
    uint32_t n = pc_ledger_xts_totals(r->ledger, space == 1, (pc_totals_t *)r->reply_body,
                                      PC_BATCH_EVENTS_MAX);
    return (int)PC_MIN(n, PC_BATCH_EVENTS_MAX);
}

void pc__machine_serve_read(replica_t *r, conn_t *c, const pc_header_t *h, const void *body) {
    if (h->operation == PC_OP_get_cluster) {
        serve_cluster(r, c, h, body);
        return;
    }
    uint32_t count = (h->size - PC_HEADER_SIZE) / pc_operation_event_size(h->operation);
    uint32_t n = 0;
    int status = PC_OK;
    if (h->operation == PC_OP_lookup_accounts) {
        n = pc_ledger_lookup_accounts(r->ledger, body, count, (pc_account_t *)r->reply_body);
    } else if (h->operation == PC_OP_lookup_transfers) {
        pc_transfer_t *out = (pc_transfer_t *)r->reply_body;
        for (uint32_t i = 0; i < count && status == PC_OK; i++) {
            pc_u128 id;
            memcpy(&id, (const uint8_t *)body + i * sizeof id, sizeof id);
            uint64_t loc;
            const pc_transfer_t *unflushed;
            if (pc_ledger_transfer_loc(r->ledger, id, &loc, &unflushed) != PC_OK) continue;
            if (unflushed) {
                out[n] = *unflushed;
                pc_ledger_transfer_public(&out[n++]);
                continue;
            }
            status = pc_storage_slots_read(r->storage, loc, r->slot_buf, 1);
            if (status == PC_OK) {
                out[n] = r->slot_buf[0].transfer;
                pc_ledger_transfer_public(&out[n++]);
            }
        }
    } else if (h->operation == PC_OP_get_xts_legs || h->operation == PC_OP_get_totals) {
        int rc = serve_xts(r, h, body);
        if (rc < 0) status = rc;
        else n = (uint32_t)rc;
    } else if (h->operation == PC_OP_get_account_transfers) {
        pc_account_filter_t filter;
        memcpy(&filter, body, sizeof filter);
        int rc = pc_ledger_get_account_transfers(r->ledger, &filter, slot_reader, r,
                                                 (pc_transfer_t *)r->reply_body);
        if (rc < 0) status = rc;
        else n = (uint32_t)rc;
    } else if (h->operation == PC_OP_list_accounts) {
        pc_account_filter_t filter;
        memcpy(&filter, body, sizeof filter);
        int rc = pc_ledger_list_accounts(r->ledger, &filter, (pc_account_t *)r->reply_body);
        if (rc < 0) status = rc;
        else n = (uint32_t)rc;
    } else {
        status = PC_EOPERATION; /* a read this build does not serve */
    }
    pc_session_reply_t reply = {.session = h->session};
    pc__replica_send_reply(r, c, h, status, &reply, r->reply_body, n * PC_RECORD_SIZE);
}

/* The checkpoint blob, version 3: the tag, the ledger snapshot's size, the
 * ledger snapshot, the cluster map, the session table. Version 2 held the
 * map before it grew its flow-control limits (the record without its last
 * 64 bytes): it loads with no limits set. Version 1 (before the cluster
 * map) began with the ledger snapshot's size, which is always below the
 * tags, so a version 1 blob still loads (with an empty map). */
#define BLOB_TAG_V2 0x7063626c6f620002ull /* "pcblob" and 2 */
#define BLOB_TAG_V3 0x7063626c6f620003ull
#define BLOB_HEAD_SIZE 16u
#define BLOB_CLUSTER_V2_SIZE (sizeof(pc_cluster_t) - sizeof(pc_cluster_limits_t))
PC_STATIC_ASSERT(offsetof(pc_cluster_t, limits) == BLOB_CLUSTER_V2_SIZE,
                 "the limits close the record, so a version 2 map is its prefix");

int pc__machine_checkpoint(replica_t *r, uint64_t op, pc_u128 checksum) {
    uint64_t start_ns = pc_time_monotonic_ns();
    size_t ledger_size = pc_ledger_snapshot_size(r->ledger);
    size_t cluster_at = BLOB_HEAD_SIZE + ledger_size;
    size_t sessions_at = cluster_at + sizeof r->cluster;
    size_t size = sessions_at + pc_sessions_snapshot_size(r->sessions);
    uint8_t *blob = malloc(size);
    if (!blob) return PC_ENOMEM;
    uint64_t head[2] = {BLOB_TAG_V3, ledger_size};
    memcpy(blob, head, sizeof head);
    size_t written = pc_ledger_snapshot_write(r->ledger, blob + BLOB_HEAD_SIZE, ledger_size);
    PC_ASSERT(written == ledger_size);
    PC_ASSERT(pc_cluster_state_verify(&r->cluster) == PC_OK);
    memcpy(blob + cluster_at, &r->cluster, sizeof r->cluster);
    pc_sessions_snapshot_write(r->sessions, blob + sessions_at, size - sessions_at);
    pc_checkpoint_info_t info = {
        .op = op,
        .wal_checksum = checksum,
        .slots_count = pc_ledger_slots_count(r->ledger),
        .blob_size = size,
    };
    int rc = pc_storage_checkpoint_write(r->storage, &info, blob);
    free(blob);
    if (rc == PC_OK)
        replica_log(r, "checkpoint at op %llu (%.1f ms, %zu bytes of state)",
                    (unsigned long long)info.op,
                    (double)(pc_time_monotonic_ns() - start_ns) / 1e6, size);
    else replica_log(r, "checkpoint failed (will retry): %s", pc_strerror(rc));
    return rc;
}

/* ---- recovery ---- */

/* Splits a checkpoint blob (any version) into its parts: where the ledger
 * snapshot starts and its size, where the cluster map is (0: none, a
 * version 1 blob) and its size, where the session table starts. */
static int blob_parts(const uint8_t *blob, uint64_t size, uint64_t *ledger_at,
                      uint64_t *ledger_size, uint64_t *cluster_at, uint64_t *cluster_size,
                      uint64_t *sessions_at) {
    uint64_t first = 0;
    if (size >= 8) memcpy(&first, blob, 8);
    if (size < 8) return PC_CORRUPT("checkpoint blob sizes");
    if (first != BLOB_TAG_V2 && first != BLOB_TAG_V3) { /* version 1 */
        if (first > size - 8) return PC_CORRUPT("checkpoint blob sizes");
        *ledger_at = 8, *ledger_size = first, *sessions_at = 8 + first;
        *cluster_at = 0, *cluster_size = 0;
        return PC_OK;
    }
    *cluster_size = first == BLOB_TAG_V3 ? sizeof(pc_cluster_t) : BLOB_CLUSTER_V2_SIZE;
    if (size < BLOB_HEAD_SIZE) return PC_CORRUPT("checkpoint blob sizes");
    memcpy(ledger_size, blob + 8, 8);
    if (*ledger_size > size - BLOB_HEAD_SIZE ||
        size - BLOB_HEAD_SIZE - *ledger_size < *cluster_size)
        return PC_CORRUPT("checkpoint blob sizes");
    *ledger_at = BLOB_HEAD_SIZE;
    *cluster_at = BLOB_HEAD_SIZE + *ledger_size;
    *sessions_at = *cluster_at + *cluster_size;
    PC_ASSERT(*sessions_at <= size);
    return PC_OK;
}

static int load_checkpoint(replica_t *r, pc_checkpoint_info_t *ck) {
    void *blob = NULL;
    int rc = pc_storage_checkpoint_load(r->storage, ck, &blob);
    if (rc != PC_OK || blob == NULL) return rc;
    const uint8_t *b = blob;
    uint64_t ledger_at = 0, ledger_size = 0, cluster_at = 0, cluster_size = 0, sessions_at = 0;
    rc = blob_parts(b, ck->blob_size, &ledger_at, &ledger_size, &cluster_at, &cluster_size,
                    &sessions_at);
    if (rc == PC_OK) rc = pc_ledger_snapshot_read(r->ledger, b + ledger_at, ledger_size);
    memset(&r->cluster, 0, sizeof r->cluster);
    if (rc == PC_OK && cluster_at != 0) {
        PC_ASSERT(cluster_size <= sizeof r->cluster);
        memcpy(&r->cluster, b + cluster_at, cluster_size);
        rc = pc_cluster_state_verify(&r->cluster);
    }
    if (rc == PC_OK)
        rc = pc_sessions_snapshot_read(r->sessions, b + sessions_at, ck->blob_size - sessions_at);
    free(blob);
    return rc;
}

static int rebuild_index(replica_t *r) {
    uint64_t count = pc_ledger_slots_count(r->ledger);
    if (pc_storage_slots_count(r->storage) < count)
        return PC_CORRUPT("transfer store shorter than the checkpoint says");
    int rc = pc_storage_slots_truncate(r->storage, count);
    for (uint64_t loc = 0; rc == PC_OK && loc < count; loc += REPLICA_REBUILD_CHUNK_SLOTS) {
        uint32_t n = (uint32_t)PC_MIN((uint64_t)REPLICA_REBUILD_CHUNK_SLOTS, count - loc);
        rc = pc_storage_slots_read(r->storage, loc, r->slot_buf, n);
        for (uint32_t i = 0; rc == PC_OK && i < n; i++)
            rc = pc_ledger_rebuild_slot(r->ledger, loc + i, &r->slot_buf[i]);
    }
    return rc == PC_OK ? pc_ledger_rebuild_finish(r->ledger) : rc;
}

int pc__machine_recover(replica_t *r, pc_checkpoint_info_t *ck) {
    int rc = load_checkpoint(r, ck);
    if (rc != PC_OK) return rc;
    r->applied_op = ck->op;
    r->applied_checksum = ck->wal_checksum;
    /* Without a checkpoint the log replays from the start and rewrites every
     * slot. */
    if (ck->op == 0) return pc_storage_slots_truncate(r->storage, 0);
    return rebuild_index(r);
}

int pc__machine_reset(replica_t *r) {
    if (r->ledger) pc_ledger_deinit(r->ledger);
    pc_sessions_deinit(r->sessions);
    r->ledger = NULL;
    r->sessions = NULL;
    memset(&r->cluster, 0, sizeof r->cluster);
    r->applied_op = 0;
    pc_ledger_config_t config = {
        .accounts_max = r->info->accounts_max,
        .transfers_max = r->info->transfers_max,
        .pending_max = r->info->pending_max,
    };
    int rc = pc_ledger_init(&config, &r->ledger);
    return rc == PC_OK ? pc_sessions_init(&r->sessions) : rc;
}
