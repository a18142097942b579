/*
 * vsr.c — the replica's entry points and the small helpers every part of the
 * protocol uses: emitting messages, journal writes and superblock writes
 * into the bounded output, installing entries into the journal, and normal
 * operation on the primary (ordering requests into prepares, heartbeats,
 * retransmission). View changes live in view_change.c, the hash-chain walk,
 * repair and commit in repair.c.
 */
#include <string.h>

#include "vsr_int.h"

bool pc__vsr_bug_commit_without_quorum = false;

static bool config_valid(const pc_vsr_config_t *c) {
    PC_ASSERT(c != NULL);
    return c->replica_count == PC_VSR_REPLICAS && c->replica < PC_VSR_REPLICAS &&
           c->journal_slots >= PC_VSR_JOURNAL_SLOTS_MIN &&
           c->journal_slots <= PC_VSR_JOURNAL_SLOTS_LIMIT && c->body_max >= 1 &&
           c->body_max <= PC_VSR_BODY_MAX_LIMIT;
}

#define VSR_ALIGN(n) (((n) + 63u) & ~(size_t)63u)

/* Layout: the struct, then the slot array, then the body ring. */
size_t pc_vsr_size(const pc_vsr_config_t *config) {
    PC_STATIC_ASSERT(PC_VSR_JOURNAL_SLOTS_LIMIT * (uint64_t)PC_VSR_BODY_MAX_LIMIT < SIZE_MAX / 2,
                     "the largest replica's size fits size_t");
    if (!config_valid(config)) return 0;
    size_t n = config->journal_slots;
    size_t size = VSR_ALIGN(sizeof(pc_vsr_t)) + VSR_ALIGN(n * sizeof(vsr_slot_t)) +
                  n * (size_t)config->body_max;
    PC_ASSERT(size > sizeof(pc_vsr_t));
    return size;
}

const pc_vsr_header_t *pc__vsr_header(const pc_vsr_t *r, uint64_t op) {
    PC_ASSERT(r != NULL);
    if (op == r->checkpoint_op) return r->anchor_known ? &r->anchor : NULL;
    const vsr_slot_t *s = pc__vsr_entry(r, op);
    PC_ASSERT(s == NULL || s->header.op == op);
    return s ? &s->header : NULL;
}

pc_u128 pc__vsr_checksum(const pc_vsr_t *r, uint64_t op) {
    PC_ASSERT(r != NULL);
    if (op == r->checkpoint_op) return r->checkpoint_checksum;
    const vsr_slot_t *s = pc__vsr_entry(r, op);
    return s ? s->header.checksum : 0;
}

bool pc__vsr_head_known(const pc_vsr_t *r) {
    PC_ASSERT(r->op >= r->checkpoint_op);
    return pc__vsr_header(r, r->op) != NULL;
}

pc_u128 pc_vsr_header_checksum(const pc_vsr_header_t *h) {
    PC_ASSERT(h != NULL);
    PC_STATIC_ASSERT(offsetof(pc_vsr_header_t, checksum) == 0, "checksum first");
    return pc_checksum((const uint8_t *)h + sizeof(pc_u128), sizeof *h - sizeof(pc_u128),
                       0x565352u);
}

/* The root (op 0) is the same on every replica of a cluster, so the first
 * prepare of every replica chains to the same parent. */
void pc_vsr_root(pc_u128 cluster, pc_vsr_header_t *out) {
    PC_ASSERT(out != NULL);
    memset(out, 0, sizeof *out);
    out->client = cluster;
    out->body_checksum = pc_checksum("", 0, 0);
    out->checksum = pc_vsr_header_checksum(out);
    PC_ASSERT(out->op == 0 && out->view == 0);
}

int pc_vsr_init(pc_vsr_t *r, const pc_vsr_config_t *config) {
    PC_ASSERT(r != NULL && config != NULL);
    if (!config_valid(config)) return PC_EINVAL;
    memset(r, 0, sizeof *r);
    r->config = *config;
    r->slots = (vsr_slot_t *)((uint8_t *)r + VSR_ALIGN(sizeof *r));
    r->bodies = (uint8_t *)r->slots + VSR_ALIGN(config->journal_slots * sizeof(vsr_slot_t));
    memset(r->slots, 0, config->journal_slots * sizeof(vsr_slot_t));
    r->status = PC_VSR_RECOVERING;
    /* Op 0, the root, is the first checkpoint: the anchor of every chain. */
    pc_vsr_root(config->cluster, &r->anchor);
    r->anchor_known = true;
    r->checkpoint_checksum = r->anchor.checksum;
    PC_ASSERT(r->op == 0 && r->commit_min == 0 && r->checkpoint_op == 0);
    return PC_OK;
}

/* Loading happens before pc_vsr_start tells the checkpoint, so the window
 * is not known yet: keep the newest entry per slot; start drops the rest. */
void pc_vsr_load(pc_vsr_t *r, const pc_vsr_header_t *h, const void *body) {
    PC_ASSERT(r->status == PC_VSR_RECOVERING && r->ticks == 0);
    PC_ASSERT(h->op > 0 && h->checksum == pc_vsr_header_checksum(h));
    vsr_slot_t *s = pc__vsr_slot(r, h->op);
    if (s->present && s->header.op > h->op) return;
    if (h->body_size > r->config.body_max ||
        pc_checksum(body, h->body_size, 0) != h->body_checksum) {
        /* The shell should not hand over a damaged entry. Treat the slot as
         * faulty rather than empty: an empty slot would be a nack. */
        s->faulty_op = UINT64_MAX;
        return;
    }
    uint64_t faulty_op = s->faulty_op;
    memset(s, 0, sizeof *s);
    s->header = *h;
    s->present = true;
    memcpy(pc__vsr_body(r, h->op), body, h->body_size);
    s->body_ok = true;
    s->durable = true;
    s->recorded = true;
    s->faulty_op = faulty_op;
    PC_ASSERT(pc__vsr_entry(r, h->op) == s);
}

/* The header copy survived, the prepare did not: the replica knows it held
 * this header durably (and may have acknowledged it), so it keeps it as a
 * recorded entry without a body; repair fetches the body. */
void pc_vsr_load_header(pc_vsr_t *r, const pc_vsr_header_t *h) {
    PC_ASSERT(r->status == PC_VSR_RECOVERING && r->ticks == 0);
    PC_ASSERT(h->op > 0 && h->checksum == pc_vsr_header_checksum(h));
    vsr_slot_t *s = pc__vsr_slot(r, h->op);
    if (s->present && s->header.op >= h->op) return; /* a whole entry wins */
    uint64_t faulty_op = s->faulty_op;
    memset(s, 0, sizeof *s);
    s->header = *h;
    s->present = true;
    s->recorded = true;
    s->faulty_op = faulty_op;
    PC_ASSERT(!s->body_ok && !s->durable);
}

/* Marks the slot faulty; which op that is becomes known at pc_vsr_start
 * (the one op of the window this slot stands for). */
void pc_vsr_load_faulty(pc_vsr_t *r, uint32_t slot) {
    PC_ASSERT(r->status == PC_VSR_RECOVERING && r->ticks == 0);
    PC_ASSERT(slot < r->config.journal_slots);
    r->slots[slot].faulty_op = UINT64_MAX;
    PC_ASSERT(r->slots[slot].faulty_op != 0);
}

/* Recovery decides where the log ends. Entries above the head persisted
 * with log_view that were prepared in an older view belong to a log this
 * replica abandoned when it joined log_view; the new view may have replaced
 * them, so they are dropped rather than claimed. Entries outside the window
 * are already in the checkpoint (or cannot be: never written). */
void pc_vsr_start(pc_vsr_t *r, const pc_vsr_start_info_t *si, pc_vsr_output_t *out) {
    PC_ASSERT(r->status == PC_VSR_RECOVERING && r->ticks == 0);
    PC_ASSERT(si != NULL && si->log_view <= si->view);
    r->view = r->persisted_view = si->view;
    r->log_view = r->persisted_log_view = si->log_view;
    if (si->checkpoint_op > 0) {
        PC_ASSERT(si->checkpoint_checksum != 0);
        r->checkpoint_op = si->checkpoint_op;
        r->checkpoint_checksum = si->checkpoint_checksum;
        r->anchor_known = false;
        r->anchor_foreign = true;
    } else {
        PC_ASSERT(si->checkpoint_checksum == 0 || si->checkpoint_checksum == r->anchor.checksum);
    }
    uint64_t head_op = 0;
    if (si->head.checksum != 0) {
        PC_ASSERT(si->head.checksum == pc_vsr_header_checksum(&si->head));
        head_op = si->head.op;
    }
    r->commit_min = r->commit_max = r->checkpoint_op;
    r->flush_from = r->checkpoint_op + 1;
    uint64_t top = r->checkpoint_op;
    for (uint32_t i = 0; i < r->config.journal_slots; i++) {
        vsr_slot_t *s = &r->slots[i];
        if (s->faulty_op == UINT64_MAX) {
            /* The one op of the window (checkpoint_op, checkpoint_op + N]
             * that maps to slot i: nothing else can have been written there
             * since the checkpoint (a slot's op only grows). */
            uint64_t n = r->config.journal_slots, base = r->checkpoint_op + 1;
            s->faulty_op = base + (i + n - base % n) % n;
            PC_ASSERT(s->faulty_op % n == i && pc__vsr_in_window(r, s->faulty_op));
        }
        if (!s->present) continue;
        const pc_vsr_header_t *h = &s->header;
        if (h->op == r->checkpoint_op && h->checksum == r->checkpoint_checksum) {
            r->anchor = *h;
            r->anchor_known = true;
        }
        /* At or below the checkpoint: not part of the log any more, but kept
         * to serve exact (op, checksum) repair requests of lagging peers
         * until the slot is reused. */
        if (h->op <= r->checkpoint_op) continue;
        if (!pc__vsr_in_window(r, h->op) || (h->op > head_op && h->view < si->log_view)) {
            uint64_t faulty_op = s->faulty_op;
            memset(s, 0, sizeof *s);
            s->faulty_op = faulty_op;
            continue;
        }
        if (h->op > top) top = h->op;
    }
    if (head_op > 0) {
        pc__vsr_install(r, &si->head, NULL); /* ignored outside the window */
        if (pc__vsr_entry(r, head_op) && head_op > top) top = head_op;
    }
    r->op = top;
    r->untrusted = si->untrusted;
    r->verify_op = UINT64_MAX; /* set by the first start_view */
    r->status = si->fresh ? PC_VSR_NORMAL : PC_VSR_RECOVERING;
    r->view_change_tick = 0;
    (void)out;
    PC_ASSERT(r->op >= r->commit_min);
}

void pc_vsr_output_reset(pc_vsr_output_t *out) {
    PC_ASSERT(out != NULL);
    out->sends_count = out->writes_count = out->commits_count = 0;
    out->sends_dropped = 0;
    out->persist = false;
    out->sync = false;
    PC_ASSERT(!out->persist);
}

bool pc__vsr_may_vote(const pc_vsr_t *r) {
    PC_ASSERT(r != NULL);
    PC_ASSERT(r->log_view <= r->view);
    return !r->untrusted;
}

bool pc__vsr_log_persisted(const pc_vsr_t *r) {
    PC_ASSERT(r->persisted_log_view <= r->persisted_view);
    return r->persisted_view == r->view && r->persisted_log_view == r->log_view;
}

pc_vsr_message_t *pc__vsr_send(pc_vsr_t *r, pc_vsr_output_t *out, uint8_t to,
                               pc_vsr_command_t command) {
    PC_ASSERT(to < PC_VSR_REPLICAS && to != r->config.replica);
    if (out->sends_count == PC_VSR_OUT_MESSAGES_MAX) {
        out->sends_dropped++;
        return NULL;
    }
    pc_vsr_send_t *s = &out->sends[out->sends_count++];
    s->to = to;
    s->body = NULL;
    pc_vsr_message_t *m = &s->message;
    /* Only the fixed part is cleared: headers are filled by the caller up to
     * headers_count, and the shell copies only what is used. */
    memset(m, 0, offsetof(pc_vsr_message_t, headers));
    m->command = (uint8_t)command;
    m->from = r->config.replica;
    m->view = r->view;
    m->log_view = r->log_view;
    m->commit = r->commit_max;
    m->checkpoint_op = r->checkpoint_op;
    PC_ASSERT(m->from != to);
    return m;
}

pc_vsr_message_t *pc__vsr_send_prepare(pc_vsr_t *r, pc_vsr_output_t *out, uint8_t to,
                                       uint64_t op, bool repair) {
    const vsr_slot_t *s = pc__vsr_entry(r, op);
    PC_ASSERT(s != NULL && s->body_ok);
    pc_vsr_message_t *m = pc__vsr_send(r, out, to, PC_VSR_PREPARE);
    if (!m) return NULL;
    m->op = op;
    m->repair = repair;
    m->checksum = s->header.checksum;
    m->header = s->header;
    PC_ASSERT(s->header.body_size <= r->config.body_max);
    out->sends[out->sends_count - 1].body = pc__vsr_body(r, op);
    return m;
}

void pc__vsr_write(pc_vsr_t *r, pc_vsr_output_t *out, uint64_t op) {
    vsr_slot_t *s = pc__vsr_entry(r, op);
    PC_ASSERT(op > 0 && s != NULL && s->body_ok);
    if (s->durable || s->writing) return;
    if (out->writes_count == PC_VSR_OUT_WRITES_MAX) return; /* retried by repair */
    pc_vsr_write_t *w = &out->writes[out->writes_count++];
    w->header = s->header;
    w->body = pc__vsr_body(r, op);
    s->writing = true;
    PC_ASSERT(w->header.checksum == pc_vsr_header_checksum(&w->header));
}

/* The superblock records view, log_view and the head of the log: recovery
 * needs all three to know which journal entries still belong to the log.
 * A head known only by checksum (a checkpoint whose header this replica
 * never saw) is recorded as the root: recovery ignores every op at or below
 * the checkpoint anyway, so only "no entry above the checkpoint is the
 * head" matters, and both say that. */
void pc__vsr_persist(pc_vsr_t *r, pc_vsr_output_t *out) {
    PC_ASSERT(r->log_view <= r->view);
    const pc_vsr_header_t *head = pc__vsr_header(r, r->op);
    PC_ASSERT(head != NULL || r->op == r->checkpoint_op);
    out->persist = true;
    out->persist_view = r->view;
    out->persist_log_view = r->log_view;
    if (head) out->persist_head = *head;
    else pc_vsr_root(r->config.cluster, &out->persist_head);
}

void pc__vsr_install(pc_vsr_t *r, const pc_vsr_header_t *h, const void *body) {
    PC_ASSERT(h->checksum == pc_vsr_header_checksum(h));
    PC_ASSERT(r->commit_min >= r->checkpoint_op);
    if (h->op == r->checkpoint_op && h->checksum == r->checkpoint_checksum && !r->anchor_known) {
        r->anchor = *h; /* the checkpoint's header, learned from a peer */
        r->anchor_known = true;
    }
    if (!pc__vsr_in_window(r, h->op)) return;
    vsr_slot_t *s = pc__vsr_slot(r, h->op);
    bool same = s->present && s->header.op == h->op && s->header.checksum == h->checksum;
    if (h->op <= r->commit_min) {
        /* An applied op contradicted: only a protocol bug gets here. The
         * simulator reports it; the entry is not replaced. */
        if (!same) r->diverged = true;
        return;
    }
    if (!same) {
        /* Within the window a slot only ever changes between entries of the
         * same op, or from an op at or below the checkpoint. */
        PC_ASSERT(!s->present || s->header.op == h->op || s->header.op <= r->checkpoint_op);
        if (h->op < r->flush_from) r->flush_from = h->op;
        /* A slot recovery found faulty may have held this very entry, and
         * acknowledged it: keep counting it as recorded (never nacked).
         * Any other entry it may have held is proven uncommitted by the
         * current log taking this one. */
        bool faulty = s->faulty_op == h->op;
        memset(s, 0, sizeof *s);
        s->header = *h;
        s->present = true;
        s->recorded = faulty;
    }
    /* An empty body needs no bytes (a header-only install leaves it unset
     * only when a body is expected and missing). */
    if ((body || h->body_size == 0) && !s->body_ok && h->body_size <= r->config.body_max &&
        pc_checksum(body, h->body_size, 0) == h->body_checksum) {
        if (h->body_size > 0) memcpy(pc__vsr_body(r, h->op), body, h->body_size);
        s->body_ok = true;
    }
}

/* Normal operation on the primary: heartbeat the commit number (so backups
 * apply and know the primary lives) and retransmit every prepare a backup
 * has not acknowledged yet (the network may have lost either direction). */
static void primary_tick(pc_vsr_t *r, pc_vsr_output_t *out) {
    PC_ASSERT(pc__vsr_is_primary(r) && r->status == PC_VSR_NORMAL);
    if (!pc__vsr_log_persisted(r)) return;
    for (uint8_t to = 0; to < PC_VSR_REPLICAS; to++) {
        if (to == r->config.replica) continue;
        if (r->ticks % VSR_HEARTBEAT_TICKS == 0) {
            pc_vsr_message_t *m = pc__vsr_send(r, out, to, PC_VSR_COMMIT);
            if (m) m->checksum = pc__vsr_checksum(r, r->commit_max);
        }
        if (r->ticks % VSR_RESEND_TICKS != 0) continue;
        uint64_t last = PC_MIN(r->op, r->commit_max + PC_VSR_VIEW_HEADERS_MAX);
        for (uint64_t op = r->commit_max + 1; op <= last; op++) {
            const vsr_slot_t *s = pc__vsr_entry(r, op);
            /* Only entries on the verified chain: a slot below a break may
             * still hold an entry of an abandoned log. */
            if (op < r->verified_low || !s || !s->body_ok || (s->acks & (1u << to))) continue;
            pc__vsr_send_prepare(r, out, to, op, false);
        }
    }
    PC_ASSERT(r->commit_max <= r->op);
}

/* Decides whether to ask the shell for state sync (see VSR_SYNC_*): only
 * from a peer whose checkpoint is ahead of what this replica applied, so a
 * sync always moves forward. In fault-free operation a backup trails the
 * primary by a pipeline at most and applies continuously, so neither rule
 * fires; a replica whose next op is gone from every ring cannot apply, so
 * the stall rule fires once any peer has checkpointed past it (a peer can
 * only have reused the slot of an op it has checkpointed). */
static void sync_check(pc_vsr_t *r, pc_vsr_output_t *out) {
    PC_ASSERT(r->commit_min >= r->checkpoint_op);
    uint8_t candidates[PC_VSR_REPLICAS], count = 0;
    bool far = false;
    for (uint8_t p = 0; p < PC_VSR_REPLICAS; p++) {
        if (p == r->config.replica || r->peer_checkpoint[p] <= r->commit_min) continue;
        candidates[count++] = p;
        if (r->peer_checkpoint[p] - r->commit_min >= r->config.journal_slots / 2) far = true;
    }
    /* Stalled: no op applied since a peer checkpointed past this replica. */
    if (count == 0) r->commit_progress_tick = r->ticks;
    bool stalled = r->ticks - r->commit_progress_tick > VSR_SYNC_STALL_TICKS;
    if (count == 0 || (!far && !stalled && !r->sync_urgent)) {
        r->sync_wanted = false;
        r->sync_urgent = false;
        return;
    }
    if (r->sync_wanted && r->ticks - r->sync_tick < VSR_SYNC_RETRY_TICKS) return;
    /* Alternate between candidates: the one asked may be down. */
    uint8_t p = candidates[r->sync_rr++ % count];
    r->sync_wanted = true;
    r->sync_tick = r->ticks;
    out->sync = true;
    out->sync_replica = p;
    out->sync_op_min = r->peer_checkpoint[p];
    PC_ASSERT(out->sync_op_min > r->commit_min);
}

void pc_vsr_on_tick(pc_vsr_t *r, pc_vsr_output_t *out) {
    PC_ASSERT(r != NULL && out != NULL);
    PC_ASSERT(r->commit_min <= r->commit_max || r->status != PC_VSR_NORMAL);
    r->ticks++;
    if (r->status == PC_VSR_NORMAL && pc__vsr_is_primary(r)) {
        primary_tick(r, out);
    } else if (r->status == PC_VSR_NORMAL) {
        uint64_t timeout = VSR_PRIMARY_TIMEOUT_TICKS + 12u * r->config.replica;
        if (r->ticks - r->primary_heard_tick > timeout)
            pc__vsr_start_view_change(r, r->view + 1, out);
    } else {
        pc__vsr_view_change_tick(r, out);
    }
    if (r->ticks % VSR_REPAIR_TICKS == 0) {
        pc__vsr_chain_walk(r, out, true);
        pc__vsr_commit_apply(r, out);
    }
    sync_check(r, out);
}

void pc_vsr_on_message(pc_vsr_t *r, const pc_vsr_message_t *m, const uint8_t *body,
                       pc_vsr_output_t *out) {
    PC_ASSERT(r != NULL && m != NULL && out != NULL);
    if (m->from >= PC_VSR_REPLICAS || m->from == r->config.replica) return;
    if (m->headers_count > PC_VSR_VIEW_HEADERS_MAX) return;
    /* Checkpoints only move forward; a replayed old message changes nothing. */
    if (m->checkpoint_op > r->peer_checkpoint[m->from])
        r->peer_checkpoint[m->from] = m->checkpoint_op;
    switch ((pc_vsr_command_t)m->command) {
    case PC_VSR_PREPARE: pc__vsr_on_prepare(r, m, body, out); break;
    case PC_VSR_PREPARE_OK: pc__vsr_on_prepare_ok(r, m, out); break;
    case PC_VSR_COMMIT: pc__vsr_on_commit(r, m, out); break;
    case PC_VSR_START_VIEW_CHANGE: pc__vsr_on_start_view_change(r, m, out); break;
    case PC_VSR_DO_VIEW_CHANGE: pc__vsr_on_do_view_change(r, m, out); break;
    case PC_VSR_START_VIEW: pc__vsr_on_start_view(r, m, out); break;
    case PC_VSR_REQUEST_START_VIEW: pc__vsr_on_request_start_view(r, m, out); break;
    case PC_VSR_REQUEST_PREPARE: pc__vsr_on_request_prepare(r, m, out); break;
    default: break; /* unknown commands are dropped, like corrupt frames */
    }
    PC_ASSERT(r->commit_max <= r->op || r->status != PC_VSR_NORMAL || !pc__vsr_is_primary(r));
}

/* True if the request is already prepared and not yet committed: a client
 * retrying while its first attempt is still in the pipeline must not get a
 * second op (the sessions only dedup what has been committed). */
static bool in_pipeline(const pc_vsr_t *r, pc_u128 client, uint64_t request) {
    PC_ASSERT(client != 0);
    PC_ASSERT(r->op >= r->commit_max);
    for (uint64_t op = r->commit_max + 1; op <= r->op; op++) {
        const pc_vsr_header_t *h = pc__vsr_header(r, op);
        if (h && h->client == client && h->request == request) return true;
    }
    return false;
}

int pc_vsr_on_request(pc_vsr_t *r, pc_u128 client, uint64_t request, uint8_t operation,
                      const void *body, uint32_t body_size, uint64_t timestamp_ns,
                      pc_vsr_output_t *out) {
    PC_ASSERT(r != NULL && out != NULL);
    PC_ASSERT(body != NULL || body_size == 0);
    if (body_size > r->config.body_max) return PC_EINVAL;
    if (r->status != PC_VSR_NORMAL || !pc__vsr_is_primary(r) || !pc__vsr_log_persisted(r))
        return PC_EBUSY;
    if (client != 0 && in_pipeline(r, client, request)) return PC_OK;
    if (r->op - r->commit_max >= PC_VSR_PIPELINE_MAX) return PC_EBUSY;
    /* The ring: never reuse the slot of an op above the checkpoint. */
    if (r->op + 1 - r->checkpoint_op > r->config.journal_slots) return PC_EBUSY;
    /* The head may be the checkpoint known by checksum only (after a restart
     * or sync): its timestamp is then unknown, and the state machine keeps
     * time monotonic itself (the ledger clamps to its last timestamp + 1). */
    const pc_vsr_header_t *head = pc__vsr_header(r, r->op);
    /* A new op only on top of a complete log: see extend_head (repair.c). */
    pc__vsr_chain_walk(r, out, false);
    if (!r->complete) return PC_EBUSY;
    pc_vsr_header_t h;
    memset(&h, 0, sizeof h);
    h.parent = pc__vsr_checksum(r, r->op);
    PC_ASSERT(h.parent != 0);
    h.body_checksum = pc_checksum(body, body_size, 0);
    h.client = client;
    h.request = request;
    h.op = r->op + 1;
    h.commit = r->commit_max;
    /* Cluster time never runs backwards, even across view changes. */
    if (head) r->last_timestamp = PC_MAX(r->last_timestamp, head->timestamp);
    h.timestamp = PC_MAX(timestamp_ns, r->last_timestamp + 1);
    r->last_timestamp = h.timestamp;
    h.view = r->view;
    h.body_size = body_size;
    h.operation = operation;
    h.checksum = pc_vsr_header_checksum(&h);
    pc__vsr_install(r, &h, body);
    PC_ASSERT(pc__vsr_entry(r, h.op) && pc__vsr_entry(r, h.op)->body_ok);
    r->op = h.op;
    pc__vsr_flush(r, out);
    for (uint8_t to = 0; to < PC_VSR_REPLICAS; to++)
        if (to != r->config.replica) pc__vsr_send_prepare(r, out, to, h.op, false);
    if (pc__vsr_bug_commit_without_quorum) pc__vsr_primary_commit(r, out);
    return PC_OK;
}

void pc_vsr_on_write_done(pc_vsr_t *r, uint64_t op, pc_u128 checksum, pc_vsr_output_t *out) {
    PC_ASSERT(r != NULL && op > 0);
    vsr_slot_t *s = pc__vsr_entry(r, op);
    if (!s || s->header.checksum != checksum) return; /* since replaced */
    PC_ASSERT(s->body_ok);
    s->durable = true;
    s->recorded = true;
    s->writing = false;
    if (r->status != PC_VSR_NORMAL || op > r->op) return;
    if (pc__vsr_is_primary(r)) {
        pc__vsr_primary_commit(r, out);
    } else {
        pc__vsr_ack(r, out, op);
    }
}

void pc_vsr_on_persist_done(pc_vsr_t *r, uint32_t view, uint32_t log_view,
                            pc_vsr_output_t *out) {
    PC_ASSERT(log_view <= view);
    PC_ASSERT(view >= r->persisted_view);
    r->persisted_view = view;
    r->persisted_log_view = log_view;
    if (!pc__vsr_log_persisted(r)) return;
    if (r->status == PC_VSR_VIEW_CHANGE) {
        pc__vsr_send_view_change(r, out);
    } else if (r->status == PC_VSR_NORMAL && pc__vsr_is_primary(r)) {
        for (uint8_t to = 0; to < PC_VSR_REPLICAS; to++)
            if (to != r->config.replica) pc__vsr_send_start_view(r, out, to);
    } else if (r->status == PC_VSR_NORMAL) {
        for (uint64_t op = r->commit_max + 1; op <= r->op; op++) pc__vsr_ack(r, out, op);
    }
}

/* The shell made the state machine durable through op: the window moves up.
 * The header of op is on this replica's own verified chain (it applied it),
 * so it becomes the anchor. */
void pc_vsr_on_checkpoint(pc_vsr_t *r, uint64_t op, pc_vsr_output_t *out) {
    PC_ASSERT(r != NULL && out != NULL);
    PC_ASSERT(op > r->checkpoint_op && op <= r->commit_min);
    const vsr_slot_t *s = pc__vsr_entry(r, op);
    PC_ASSERT(s != NULL); /* applied ops above the checkpoint are never reused */
    r->anchor = s->header;
    r->anchor_known = true;
    r->anchor_foreign = false;
    r->checkpoint_op = op;
    r->checkpoint_checksum = s->header.checksum;
    /* Ops at or below the checkpoint need no journal write any more. */
    if (r->flush_from <= op) r->flush_from = op + 1;
    pc__vsr_flush(r, out);
    PC_ASSERT(pc__vsr_in_window(r, r->commit_min + 1));
}

/* State sync done: the state machine jumped to checkpoint op. Everything at
 * or below it is forgotten. The log above is kept: entries this replica
 * acknowledged stay claimed in view changes, and if the head turns out not
 * to link to the new checkpoint, the chain walk cuts it (a log contradicting
 * a committed op holds nothing committed). Ops at or below op are all
 * committed, so no view-change decision (which only cuts uncommitted ops)
 * depends on this replica having held them. */
void pc_vsr_on_sync_done(pc_vsr_t *r, uint64_t op, pc_u128 checksum, pc_vsr_output_t *out) {
    PC_ASSERT(r != NULL && out != NULL);
    if (op <= r->commit_min) return; /* never backwards */
    PC_ASSERT(checksum != 0);
    r->anchor_known = false;
    for (uint32_t i = 0; i < r->config.journal_slots; i++) {
        vsr_slot_t *s = &r->slots[i];
        if (!s->present || s->header.op > op) continue;
        if (s->header.op == op && s->header.checksum == checksum) {
            r->anchor = s->header;
            r->anchor_known = true;
        }
        memset(s, 0, sizeof *s);
    }
    r->anchor_foreign = true;
    r->checkpoint_op = op;
    r->checkpoint_checksum = checksum;
    r->commit_min = op;
    if (r->commit_max <= op) {
        r->commit_max = op;
        r->commit_max_checksum = checksum;
    }
    if (r->op < op) r->op = op;
    if (r->flush_from <= op) r->flush_from = op + 1;
    r->commit_progress_tick = r->ticks;
    r->sync_wanted = false;
    r->sync_urgent = false;
    if (r->untrusted && r->commit_min >= r->verify_op) r->untrusted = false;
    pc__vsr_chain_walk(r, out, true);
    pc__vsr_commit_apply(r, out);
    PC_ASSERT(r->commit_min >= op && r->op >= r->commit_min);
}

void pc_vsr_info(const pc_vsr_t *r, pc_vsr_info_t *out) {
    PC_ASSERT(r != NULL && out != NULL);
    out->replica = r->config.replica;
    out->status = (uint8_t)r->status;
    out->primary = pc__vsr_is_primary(r) && r->status == PC_VSR_NORMAL;
    out->untrusted = r->untrusted;
    out->diverged = r->diverged;
    out->view = r->view;
    out->log_view = r->log_view;
    out->op = r->op;
    out->commit_min = r->commit_min;
    out->commit_max = r->commit_max;
    out->view_start_op = r->view_start_op;
    out->checkpoint_op = r->checkpoint_op;
    out->sync_wanted = r->sync_wanted;
    PC_ASSERT(out->commit_min >= out->checkpoint_op);
}

bool pc_vsr_caught_up(const pc_vsr_info_t *info) {
    PC_ASSERT(info != NULL);
    if (info->commit_min < info->commit_max) return false;
    return !info->primary || info->commit_min >= info->view_start_op;
}

bool pc_vsr_header_at(const pc_vsr_t *r, uint64_t op, pc_vsr_header_t *out) {
    PC_ASSERT(r != NULL && out != NULL);
    const pc_vsr_header_t *h = pc__vsr_header(r, op);
    if (!h) return false;
    *out = *h;
    PC_ASSERT(out->op == op);
    return true;
}
