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

size_t pc_vsr_size(void) {
    PC_STATIC_ASSERT(PC_VSR_JOURNAL_SLOTS_MAX >= 2, "a root and one op");
    return sizeof(pc_vsr_t);
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
    if (config->replica_count != PC_VSR_REPLICAS || config->replica >= PC_VSR_REPLICAS ||
        config->journal_slots < 2 || config->journal_slots > PC_VSR_JOURNAL_SLOTS_MAX)
        return PC_EINVAL;
    memset(r, 0, sizeof *r);
    r->config = *config;
    r->status = PC_VSR_RECOVERING;
    pc_vsr_header_t root;
    pc_vsr_root(config->cluster, &root);
    pc__vsr_install(r, &root, NULL);
    r->slots[0].body_ok = true;
    r->slots[0].durable = true;
    PC_ASSERT(r->op == 0 && r->commit_min == 0);
    return PC_OK;
}

void pc_vsr_load(pc_vsr_t *r, const pc_vsr_header_t *h, const void *body) {
    PC_ASSERT(r->status == PC_VSR_RECOVERING && r->ticks == 0);
    PC_ASSERT(h->op > 0 && h->op < r->config.journal_slots);
    PC_ASSERT(h->checksum == pc_vsr_header_checksum(h));
    pc__vsr_install(r, h, body);
    PC_ASSERT(r->slots[h->op].body_ok);
    r->slots[h->op].durable = true;
    if (h->op > r->op) r->op = h->op;
}

/* Recovery decides where the log ends. Entries above the head persisted
 * with log_view that were prepared in an older view belong to a log this
 * replica abandoned when it joined log_view; the new view may have replaced
 * them, so they are dropped rather than claimed. */
void pc_vsr_start(pc_vsr_t *r, uint32_t view, uint32_t log_view, const pc_vsr_header_t *head,
                  bool fresh, bool untrusted, pc_vsr_output_t *out) {
    PC_ASSERT(r->status == PC_VSR_RECOVERING && r->ticks == 0);
    PC_ASSERT(log_view <= view);
    r->view = r->persisted_view = view;
    r->log_view = r->persisted_log_view = log_view;
    uint64_t head_op = head ? head->op : 0;
    if (head && head->op > 0) {
        PC_ASSERT(head->checksum == pc_vsr_header_checksum(head));
        if (!r->slots[head->op].present || r->slots[head->op].header.checksum != head->checksum)
            pc__vsr_install(r, head, NULL);
    }
    uint64_t top = 0;
    for (uint64_t op = 1; op < r->config.journal_slots; op++) {
        vsr_slot_t *s = &r->slots[op];
        if (!s->present) continue;
        if (op > head_op && s->header.view < log_view) {
            memset(s, 0, sizeof *s);
            continue;
        }
        top = op;
    }
    r->op = top;
    r->untrusted = untrusted;
    r->flush_from = 1;
    r->verify_op = UINT64_MAX; /* set by the first start_view */
    r->status = fresh ? PC_VSR_NORMAL : PC_VSR_RECOVERING;
    r->view_change_tick = 0;
    (void)out;
}

void pc_vsr_output_reset(pc_vsr_output_t *out) {
    PC_ASSERT(out != NULL);
    out->sends_count = out->writes_count = out->commits_count = 0;
    out->sends_dropped = 0;
    out->persist = false;
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
    pc_vsr_message_t *m = &s->message;
    /* Only the fixed part is cleared: headers and body are filled by the
     * caller up to their counts, and the shell copies only what is used. */
    memset(m, 0, offsetof(pc_vsr_message_t, headers));
    m->command = (uint8_t)command;
    m->from = r->config.replica;
    m->view = r->view;
    m->log_view = r->log_view;
    m->commit = r->commit_max;
    PC_ASSERT(m->from != to);
    return m;
}

void pc__vsr_send_prepare(pc_vsr_t *r, pc_vsr_output_t *out, uint8_t to, uint64_t op,
                          bool repair) {
    const vsr_slot_t *s = &r->slots[op];
    PC_ASSERT(s->present && s->body_ok);
    pc_vsr_message_t *m = pc__vsr_send(r, out, to, PC_VSR_PREPARE);
    if (!m) return;
    m->op = op;
    m->repair = repair;
    m->checksum = s->header.checksum;
    m->header = s->header;
    PC_ASSERT(s->header.body_size <= PC_VSR_BODY_MAX);
    memcpy(m->body, r->bodies[op], s->header.body_size);
}

void pc__vsr_write(pc_vsr_t *r, pc_vsr_output_t *out, uint64_t op) {
    vsr_slot_t *s = &r->slots[op];
    PC_ASSERT(op > 0 && s->present && s->body_ok);
    if (s->durable || s->writing) return;
    if (out->writes_count == PC_VSR_OUT_WRITES_MAX) return; /* retried by repair */
    pc_vsr_write_t *w = &out->writes[out->writes_count++];
    w->header = s->header;
    w->body = r->bodies[op];
    s->writing = true;
    PC_ASSERT(w->header.checksum == pc_vsr_header_checksum(&w->header));
}

/* The superblock records view, log_view and the head of the log: recovery
 * needs all three to know which journal entries still belong to the log. */
void pc__vsr_persist(pc_vsr_t *r, pc_vsr_output_t *out) {
    PC_ASSERT(r->slots[r->op].present);
    PC_ASSERT(r->log_view <= r->view);
    out->persist = true;
    out->persist_view = r->view;
    out->persist_log_view = r->log_view;
    out->persist_head = r->slots[r->op].header;
}

void pc__vsr_install(pc_vsr_t *r, const pc_vsr_header_t *h, const void *body) {
    PC_ASSERT(h->op < r->config.journal_slots);
    PC_ASSERT(h->checksum == pc_vsr_header_checksum(h));
    vsr_slot_t *s = &r->slots[h->op];
    if (h->op <= r->commit_min && h->op > 0 && s->header.checksum != h->checksum) {
        /* An applied op contradicted: only a protocol bug gets here. The
         * simulator reports it; the entry is not replaced. */
        r->diverged = true;
        return;
    }
    if (!s->present || s->header.checksum != h->checksum) {
        if (h->op > 0 && h->op < r->flush_from) r->flush_from = h->op;
        memset(s, 0, sizeof *s);
        s->header = *h;
        s->present = true;
    }
    if (body && !s->body_ok && h->body_size <= PC_VSR_BODY_MAX &&
        pc_checksum(body, h->body_size, 0) == h->body_checksum) {
        memcpy(r->bodies[h->op], body, h->body_size);
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
            if (m) m->checksum = r->slots[r->commit_max].header.checksum;
        }
        if (r->ticks % VSR_RESEND_TICKS != 0) continue;
        uint64_t last = PC_MIN(r->op, r->commit_max + PC_VSR_VIEW_HEADERS_MAX);
        for (uint64_t op = r->commit_max + 1; op <= last; op++) {
            const vsr_slot_t *s = &r->slots[op];
            /* Only entries on the verified chain: a slot below a break may
             * still hold an entry of an abandoned log. */
            if (op < r->verified_low || !s->body_ok || (s->acks & (1u << to))) continue;
            pc__vsr_send_prepare(r, out, to, op, false);
        }
    }
    PC_ASSERT(r->commit_max <= r->op);
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
}

void pc_vsr_on_message(pc_vsr_t *r, const pc_vsr_message_t *m, pc_vsr_output_t *out) {
    PC_ASSERT(r != NULL && m != NULL && out != NULL);
    if (m->from >= PC_VSR_REPLICAS || m->from == r->config.replica) return;
    if (m->headers_count > PC_VSR_VIEW_HEADERS_MAX) return;
    switch ((pc_vsr_command_t)m->command) {
    case PC_VSR_PREPARE: pc__vsr_on_prepare(r, m, out); break;
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
        const pc_vsr_header_t *h = &r->slots[op].header;
        if (h->client == client && h->request == request) return true;
    }
    return false;
}

int pc_vsr_on_request(pc_vsr_t *r, pc_u128 client, uint64_t request, uint8_t operation,
                      const void *body, uint32_t body_size, uint64_t timestamp_ns,
                      pc_vsr_output_t *out) {
    PC_ASSERT(client != 0 && body_size <= PC_VSR_BODY_MAX);
    PC_ASSERT(body != NULL || body_size == 0);
    if (r->status != PC_VSR_NORMAL || !pc__vsr_is_primary(r) || !pc__vsr_log_persisted(r))
        return PC_EBUSY;
    if (in_pipeline(r, client, request)) return PC_OK;
    if (r->op - r->commit_max >= PC_VSR_PIPELINE_MAX || r->op + 1 >= r->config.journal_slots)
        return PC_EBUSY;
    PC_ASSERT(r->slots[r->op].present);
    /* A new op only on top of a complete log: see extend_head (repair.c). */
    pc__vsr_chain_walk(r, out, false);
    if (!r->complete) return PC_EBUSY;
    pc_vsr_header_t h;
    memset(&h, 0, sizeof h);
    h.parent = r->slots[r->op].header.checksum;
    h.body_checksum = pc_checksum(body, body_size, 0);
    h.client = client;
    h.request = request;
    h.op = r->op + 1;
    h.commit = r->commit_max;
    /* Cluster time never runs backwards, even across view changes. */
    r->last_timestamp = PC_MAX(r->last_timestamp, r->slots[r->op].header.timestamp);
    h.timestamp = PC_MAX(timestamp_ns, r->last_timestamp + 1);
    r->last_timestamp = h.timestamp;
    h.view = r->view;
    h.body_size = body_size;
    h.operation = operation;
    h.checksum = pc_vsr_header_checksum(&h);
    pc__vsr_install(r, &h, body);
    r->op = h.op;
    pc__vsr_flush(r, out);
    for (uint8_t to = 0; to < PC_VSR_REPLICAS; to++)
        if (to != r->config.replica) pc__vsr_send_prepare(r, out, to, h.op, false);
    if (pc__vsr_bug_commit_without_quorum) pc__vsr_primary_commit(r, out);
    return PC_OK;
}

void pc_vsr_on_write_done(pc_vsr_t *r, uint64_t op, pc_u128 checksum, pc_vsr_output_t *out) {
    PC_ASSERT(op > 0 && op < r->config.journal_slots);
    vsr_slot_t *s = &r->slots[op];
    if (!s->present || s->header.checksum != checksum) return; /* since replaced */
    PC_ASSERT(s->body_ok);
    s->durable = true;
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
    PC_ASSERT(out->commit_min <= r->config.journal_slots);
}

bool pc_vsr_header_at(const pc_vsr_t *r, uint64_t op, pc_vsr_header_t *out) {
    PC_ASSERT(r != NULL && out != NULL);
    if (op >= r->config.journal_slots || !r->slots[op].present) return false;
    *out = r->slots[op].header;
    PC_ASSERT(out->op == op);
    return true;
}
