/*
 * machine.c — the state machine the simulator replicates: the real ledger
 * (pc_ledger) with its transfer records kept in a growable in-memory array
 * (the simulator is not the apply path; the production store is on disk),
 * plus a per-client session table. Sessions make each client request apply
 * exactly once even when a retry is prepared again under a new op after a
 * view change: the duplicate is answered with the original op and result.
 *
 * Checkpoints use the ledger's own snapshot and rebuild functions, so the
 * simulator also exercises the recovery path production uses: a restarted
 * or synced replica's ledger is rebuilt from a snapshot plus the stored
 * transfer slots, and its state checksum must match the cluster's.
 */
#include <stdlib.h>
#include <string.h>

#include "sim_int.h"

int pc__sim_machine_init(sim_machine_t *m) {
    PC_ASSERT(m != NULL);
    memset(m, 0, sizeof *m);
    pc_ledger_config_t config = {.accounts_max = 64, .transfers_max = SIM_TRANSFERS_MAX,
                                 .pending_max = 64};
    int rc = pc_ledger_init(&config, &m->ledger);
    if (rc != PC_OK) return rc;
    m->store_cap = 256;
    m->store = malloc(m->store_cap * sizeof *m->store);
    if (!m->store) {
        pc_ledger_deinit(m->ledger);
        return PC_ENOMEM;
    }
    PC_ASSERT(m->op == 0);
    return PC_OK;
}

void pc__sim_machine_deinit(sim_machine_t *m) {
    PC_ASSERT(m != NULL);
    pc_ledger_deinit(m->ledger);
    free(m->store);
    memset(m, 0, sizeof *m);
    PC_ASSERT(m->ledger == NULL);
}

static sim_session_t *session_of(sim_machine_t *m, pc_u128 client) {
    PC_ASSERT(client != 0);
    for (uint32_t i = 0; i < SIM_CLIENTS; i++) {
        if (m->sessions[i].client == client) return &m->sessions[i];
        if (m->sessions[i].client == 0) {
            m->sessions[i].client = client;
            return &m->sessions[i];
        }
    }
    PC_ASSERT(!"more clients than sessions");
    return NULL;
}

/* Runs one batch through the ledger's two phases and persists the new
 * transfer slots into the in-memory store. Returns the result checksum. */
static pc_u128 ledger_apply(sim_machine_t *m, const pc_vsr_header_t *h, const uint8_t *body) {
    uint32_t count = h->body_size / PC_RECORD_SIZE;
    PC_ASSERT(count >= 1 && count <= SIM_ACCOUNTS + SIM_TRANSFERS_PER_REQUEST_MAX);
    /* Copied for alignment: a journal body is a byte array. */
    _Alignas(16) uint8_t events[SIM_BODY_MAX];
    memcpy(events, body, h->body_size);
    uint64_t locs[SIM_BODY_MAX / PC_RECORD_SIZE];
    uint32_t n = pc_ledger_prefetch(m->ledger, (pc_operation_t)h->operation, events, count, locs);
    for (uint32_t i = 0; i < n; i++) {
        PC_ASSERT(locs[i] < m->store_count);
        pc_ledger_prefetch_put(m->ledger, locs[i], &m->store[locs[i]].transfer);
    }
    pc_create_result_t results[SIM_BODY_MAX / PC_RECORD_SIZE];
    uint32_t r = pc_ledger_apply(m->ledger, (pc_operation_t)h->operation, 0, h->timestamp, events,
                                 count, results);
    const pc_transfer_slot_t *slots;
    uint64_t first;
    uint32_t made = pc_ledger_slots(m->ledger, &slots, &first);
    PC_ASSERT(made == 0 || first == m->store_count);
    while (m->store_count + made > m->store_cap) {
        m->store_cap *= 2;
        m->store = realloc(m->store, m->store_cap * sizeof *m->store);
        PC_ASSERT(m->store != NULL);
    }
    memcpy(&m->store[m->store_count], slots, made * sizeof *slots);
    m->store_count += made;
    pc_ledger_slots_flushed(m->ledger);
    return pc_checksum(results, r * sizeof results[0], h->op);
}

bool pc__sim_machine_apply(sim_machine_t *m, const pc_vsr_header_t *h, const uint8_t *body,
                           sim_reply_t *reply) {
    PC_ASSERT(h->op == m->op + 1);
    PC_ASSERT(h->body_size % PC_RECORD_SIZE == 0 && h->body_size <= SIM_BODY_MAX);
    m->op = h->op;
    sim_session_t *s = session_of(m, h->client);
    memset(reply, 0, sizeof *reply);
    reply->client = h->client;
    reply->request = h->request;
    if (h->request <= s->request) {
        /* Exactly once: a retried request is answered, never re-applied. */
        reply->op = s->op;
        reply->result = s->result;
        return h->request == s->request;
    }
    s->request = h->request;
    s->op = h->op;
    s->result = ledger_apply(m, h, body);
    reply->op = s->op;
    reply->result = s->result;
    return true;
}

pc_u128 pc__sim_machine_checksum(const sim_machine_t *m) {
    PC_ASSERT(m->ledger != NULL);
    pc_u128 parts[2];
    parts[0] = pc_ledger_state_checksum(m->ledger);
    parts[1] = pc_checksum(m->sessions, sizeof m->sessions, m->op);
    PC_ASSERT(m->store_count <= m->store_cap);
    return pc_checksum(parts, sizeof parts, 0);
}

static void store_reserve(pc_transfer_slot_t **store, uint64_t *cap, uint64_t count) {
    PC_ASSERT(store != NULL && cap != NULL);
    if (count <= *cap && *store != NULL) return;
    uint64_t n = *cap ? *cap : 256;
    while (n < count) n *= 2;
    *store = realloc(*store, n * sizeof **store);
    PC_ASSERT(*store != NULL);
    *cap = n;
}

/* The store is append-only (the ledger only adds slots), and the
 * checkpoint's store is always a prefix of the machine's (the machine was
 * restored from it or kept applying after it), so only the tail is copied. */
void pc__sim_machine_checkpoint(const sim_machine_t *m, pc_u128 checksum, sim_checkpoint_t *c) {
    PC_ASSERT(m->ledger != NULL && m->op > c->op);
    PC_ASSERT(c->store_count <= m->store_count);
    size_t size = pc_ledger_snapshot_size(m->ledger);
    if (size > c->ledger_cap) {
        c->ledger = realloc(c->ledger, size);
        PC_ASSERT(c->ledger != NULL);
        c->ledger_cap = size;
    }
    c->ledger_size = pc_ledger_snapshot_write(m->ledger, c->ledger, size);
    PC_ASSERT(c->ledger_size == size);
    store_reserve(&c->store, &c->store_cap, m->store_count);
    memcpy(&c->store[c->store_count], &m->store[c->store_count],
           (m->store_count - c->store_count) * sizeof *m->store);
    c->store_count = m->store_count;
    memcpy(c->sessions, m->sessions, sizeof c->sessions);
    c->op = m->op;
    c->checksum = checksum;
}

int pc__sim_machine_restore(sim_machine_t *m, const sim_checkpoint_t *c) {
    PC_ASSERT(c->op > 0 && c->ledger != NULL);
    if (m->ledger) pc__sim_machine_deinit(m);
    int rc = pc__sim_machine_init(m);
    if (rc != PC_OK) return rc;
    rc = pc_ledger_snapshot_read(m->ledger, c->ledger, c->ledger_size);
    if (rc != PC_OK) return rc;
    uint64_t count = pc_ledger_slots_count(m->ledger);
    PC_ASSERT(count == c->store_count);
    for (uint64_t loc = 0; loc < count; loc++) {
        rc = pc_ledger_rebuild_slot(m->ledger, loc, &c->store[loc]);
        if (rc != PC_OK) return rc;
    }
    rc = pc_ledger_rebuild_finish(m->ledger);
    if (rc != PC_OK) return rc;
    store_reserve(&m->store, &m->store_cap, count);
    memcpy(m->store, c->store, count * sizeof *m->store);
    m->store_count = count;
    memcpy(m->sessions, c->sessions, sizeof m->sessions);
    m->op = c->op;
    PC_ASSERT(m->store_count <= m->store_cap);
    return PC_OK;
}

void pc__sim_checkpoint_copy(sim_checkpoint_t *dst, const sim_checkpoint_t *src) {
    PC_ASSERT(dst != src && src->op > 0);
    if (src->ledger_size > dst->ledger_cap) {
        dst->ledger = realloc(dst->ledger, src->ledger_size);
        PC_ASSERT(dst->ledger != NULL);
        dst->ledger_cap = src->ledger_size;
    }
    memcpy(dst->ledger, src->ledger, src->ledger_size);
    dst->ledger_size = src->ledger_size;
    store_reserve(&dst->store, &dst->store_cap, src->store_count);
    memcpy(dst->store, src->store, src->store_count * sizeof *src->store);
    dst->store_count = src->store_count;
    memcpy(dst->sessions, src->sessions, sizeof dst->sessions);
    dst->op = src->op;
    dst->checksum = src->checksum;
    PC_ASSERT(dst->op == src->op);
}

void pc__sim_checkpoint_free(sim_checkpoint_t *c) {
    PC_ASSERT(c != NULL);
    free(c->ledger);
    free(c->store);
    memset(c, 0, sizeof *c);
    PC_ASSERT(c->ledger == NULL);
}
