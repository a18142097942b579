/*
 * repair.c — the log as a hash chain: prepares and repair answers coming in,
 * the chain walk that finds what is missing or corrupt, acknowledgements,
 * the primary's commit at quorum, and applying committed ops in order.
 *
 * Why a chain walk: after crashes, lost messages, torn or misdirected writes
 * and view changes, a replica's journal may hold holes, stale entries from
 * abandoned views and damaged bodies. One trusted header at the head (from
 * the primary of the current view, or from start_view) fixes the checksum
 * of every op below it through the parent links, so the replica can name
 * exactly which (op, checksum) it needs and accept only that from a peer.
 * Nothing is ever truncated here: a slot is only replaced by the entry the
 * chain proves belongs there.
 */
#include <string.h>

#include "vsr_int.h"

/* Asks a peer for (op, checksum) unless that request is still outstanding
 * or the in-flight bound is reached (`body`: a missing body, which must
 * leave VSR_REPAIR_RESERVED entries for the requests that extend the chain). */
static void request_prepare(pc_vsr_t *r, pc_vsr_output_t *out, uint64_t op, pc_u128 checksum,
                            bool body) {
    PC_ASSERT(op > 0);
    PC_ASSERT(checksum != 0);
    vsr_repair_t *free_entry = NULL;
    unsigned busy = 0;
    for (uint32_t i = 0; i < VSR_REPAIR_INFLIGHT_MAX; i++) {
        vsr_repair_t *e = &r->repairs[i];
        bool live = e->checksum != 0 && r->ticks - e->tick < VSR_REPAIR_TIMEOUT_TICKS;
        if (live && e->op == op && e->checksum == checksum) return; /* outstanding */
        if (live) busy++;
        else if (!free_entry) free_entry = e;
    }
    if (!free_entry || (body && busy + VSR_REPAIR_RESERVED >= VSR_REPAIR_INFLIGHT_MAX)) return;
    /* Alternate between the two peers: either may hold the only intact copy. */
    uint8_t to = (uint8_t)((r->config.replica + 1 + (r->repair_rr++ % 2)) % PC_VSR_REPLICAS);
    pc_vsr_message_t *m = pc__vsr_send(r, out, to, PC_VSR_REQUEST_PREPARE);
    if (!m) return;
    m->op = op;
    m->checksum = checksum;
    free_entry->op = op;
    free_entry->checksum = checksum;
    free_entry->tick = r->ticks;
    PC_ASSERT(busy < VSR_REPAIR_INFLIGHT_MAX);
}

/* An answer to (op, checksum) arrived: that request is no longer in flight. */
static void repair_answered(pc_vsr_t *r, uint64_t op, pc_u128 checksum) {
    PC_ASSERT(checksum != 0);
    for (uint32_t i = 0; i < VSR_REPAIR_INFLIGHT_MAX; i++) {
        vsr_repair_t *e = &r->repairs[i];
        if (e->op == op && e->checksum == checksum) memset(e, 0, sizeof *e);
    }
    PC_ASSERT(r->repairs[0].checksum != checksum || r->repairs[0].op != op);
}

/* Walks the chain from the head down to the last applied op. Sets
 * verified_low; with `request`, asks peers for the first broken link and for
 * missing bodies, and journals repaired entries not yet on disk. */
void pc__vsr_chain_walk(pc_vsr_t *r, pc_vsr_output_t *out, bool request) {
    PC_ASSERT(r->op >= r->checkpoint_op);
    PC_ASSERT(r->commit_min <= r->op || r->status != PC_VSR_NORMAL);
    if (request && r->status == PC_VSR_NORMAL && r->commit_max > r->op &&
        r->commit_max_checksum != 0 && pc__vsr_in_window(r, r->commit_max))
        request_prepare(r, out, r->commit_max, r->commit_max_checksum, false);
    /* A head that is the checkpoint known only by checksum: fetch its header
     * (needed to vote, to lead and to persist a head). */
    if (request && !r->anchor_known && r->op == r->checkpoint_op)
        request_prepare(r, out, r->checkpoint_op, r->checkpoint_checksum, false);
    pc_u128 expected = pc__vsr_checksum(r, r->op);
    if (expected == 0 || r->commit_min > r->op) {
        r->verified_low = r->op + 1;
        r->complete = false;
        return;
    }
    uint64_t op = r->op;
    r->complete = true;
    for (; op > r->commit_min; op--) {
        vsr_slot_t *s = pc__vsr_entry(r, op);
        if (!s || s->header.checksum != expected) {
            if (request) request_prepare(r, out, op, expected, false);
            r->complete = false;
            break;
        }
        if (!s->body_ok) {
            r->complete = false;
            if (request) request_prepare(r, out, op, expected, true);
        }
        expected = s->header.parent;
    }
    r->verified_low = op + 1;
    if (op == r->commit_min && pc__vsr_checksum(r, op) != expected) {
        if (r->anchor_foreign && op == r->checkpoint_op) {
            /* The log above a checkpoint taken from elsewhere (restart or
             * sync) does not link to it: it is a stale log that contradicts
             * a committed op, so nothing in it was committed. Cut it. */
            r->op = op;
            r->verified_low = op + 1;
        } else {
            r->diverged = true;
            r->complete = false;
        }
    }
    if (request) pc__vsr_flush(r, out);
}

/* Journal writes go out strictly in op order, and only over a prefix of the
 * log that is verified and has its bodies. Writes complete in order, so a
 * replica never holds op k + 1 durably without op k: a durable claim in a
 * view change then implies the whole chain below it can be recovered from
 * the claimer, and an op lost everywhere can always be cut from the top. */
void pc__vsr_flush(pc_vsr_t *r, pc_vsr_output_t *out) {
    PC_ASSERT(r->flush_from > r->checkpoint_op);
    pc__vsr_chain_walk(r, out, false);
    for (uint64_t op = r->flush_from; op <= r->op; op++) {
        const vsr_slot_t *s = pc__vsr_entry(r, op);
        if (!s || !s->body_ok) break;
        if (op > r->commit_min && op < r->verified_low) break;
        if (s->durable) {
            if (op == r->flush_from) r->flush_from++;
            continue;
        }
        if (s->writing) continue;
        if (out->writes_count == PC_VSR_OUT_WRITES_MAX) break;
        pc__vsr_write(r, out, op);
    }
    PC_ASSERT(r->flush_from > r->checkpoint_op);
}

void pc__vsr_heard_from_primary(pc_vsr_t *r, uint64_t commit) {
    PC_ASSERT(r->status == PC_VSR_NORMAL);
    PC_ASSERT(!pc__vsr_is_primary(r));
    /* A primary that talks but does not commit what we hold is as good as
     * dead: only progress (or nothing left to commit) resets the timer. */
    if (commit > r->last_progress_commit || commit >= r->op) r->primary_heard_tick = r->ticks;
    if (commit > r->last_progress_commit) r->last_progress_commit = commit;
}

/* A message from the primary of a view newer than ours (or of ours while we
 * are not normal in it): we missed start_view, so ask for it. */
static bool behind(pc_vsr_t *r, const pc_vsr_message_t *m, pc_vsr_output_t *out) {
    PC_ASSERT(m->from != r->config.replica);
    if (m->view < r->view || m->from != pc__vsr_primary_of(m->view)) return false;
    if (m->view == r->view && r->status == PC_VSR_NORMAL) return false;
    pc_vsr_message_t *q = pc__vsr_send(r, out, m->from, PC_VSR_REQUEST_START_VIEW);
    if (q) q->view = m->view;
    PC_ASSERT(m->view >= r->view);
    return true;
}

static void learn_commit(pc_vsr_t *r, uint64_t commit, pc_u128 checksum) {
    PC_ASSERT(r->status == PC_VSR_NORMAL);
    if (commit < r->commit_max) return;
    if (commit > r->commit_max || checksum != 0) r->commit_max_checksum = checksum;
    r->commit_max = commit;
    PC_ASSERT(r->commit_max >= r->commit_min);
}

/* Moves the head up over prepares received from this view's primary, but
 * only while the log below is complete. Why: a replica then never holds op
 * k + 1 on disk without op k (writes complete in order), so a durable claim
 * in a view change implies the whole chain below it is recoverable from the
 * claimer, and an op lost everywhere can always be cut from the top. */
static void extend_head(pc_vsr_t *r, pc_vsr_output_t *out) {
    PC_ASSERT(r->status == PC_VSR_NORMAL);
    pc__vsr_chain_walk(r, out, false);
    while (r->complete && pc__vsr_in_window(r, r->op + 1)) {
        uint64_t op = r->op + 1;
        const vsr_slot_t *s = pc__vsr_entry(r, op);
        if (!s || !s->body_ok || s->canonical_view != r->view + 1) break;
        if (s->header.parent != pc__vsr_checksum(r, r->op)) break;
        r->op = op;
    }
    pc__vsr_flush(r, out);
    PC_ASSERT(r->op >= r->checkpoint_op);
}

/* A prepare from the primary of our view: canonical, whatever we held. */
static void on_canonical_prepare(pc_vsr_t *r, const pc_vsr_message_t *m, const uint8_t *body,
                                 pc_vsr_output_t *out) {
    PC_ASSERT(r->status == PC_VSR_NORMAL && !pc__vsr_is_primary(r));
    const pc_vsr_header_t *h = &m->header;
    PC_ASSERT(h->op == m->op && h->view <= r->view);
    pc__vsr_heard_from_primary(r, m->commit);
    if (h->op <= r->commit_min) {
        pc__vsr_ack(r, out, h->op);
        return;
    }
    /* Beyond the window: dropped; it is repaired once this replica has
     * checkpointed (or synced) far enough. */
    if (!pc__vsr_in_window(r, h->op)) return;
    pc__vsr_install(r, h, body);
    vsr_slot_t *s = pc__vsr_entry(r, h->op);
    if (!s || !s->body_ok) return;
    if (h->op <= r->op) {
        if (s->durable) pc__vsr_ack(r, out, h->op);
        else pc__vsr_flush(r, out);
    } else {
        s->canonical_view = r->view + 1;
        extend_head(r, out);
    }
    learn_commit(r, m->commit, 0);
    pc__vsr_commit_apply(r, out);
}

/* A repair answer carries the headers chained below its entry. Once the
 * entry sits on this replica's verified chain (the walk from a head of the
 * current view reached it), each header whose checksum is its child's
 * parent link is proven to belong to the log, exactly as if the walk had
 * asked for it: install it (header only; its body is asked for next), down
 * to the first link that does not match or the last applied op. Only in
 * normal status, where the head comes from the current view's primary. */
static void install_headers_below(pc_vsr_t *r, const pc_vsr_message_t *m) {
    const pc_vsr_header_t *h = &m->header;
    PC_ASSERT(m->headers_count <= PC_VSR_VIEW_HEADERS_MAX);
    if (r->status != PC_VSR_NORMAL || m->headers_count == 0) return;
    pc__vsr_chain_walk(r, NULL, false);
    if (h->op < r->verified_low || h->op > r->op) return;
    pc_u128 expected = h->parent;
    for (uint8_t i = 0; i < m->headers_count; i++) {
        const pc_vsr_header_t *x = &m->headers[i];
        if (x->op + 1 + i != h->op || x->checksum != expected) break;
        if (x->checksum != pc_vsr_header_checksum(x)) break;
        if (x->op <= r->commit_min || !pc__vsr_in_window(r, x->op)) break;
        pc__vsr_install(r, x, NULL);
        expected = x->parent;
    }
    PC_ASSERT(r->op >= r->commit_min);
}

/* Anything else is a repair answer: accept only what the chain asks for. */
static void on_repair_prepare(pc_vsr_t *r, const pc_vsr_message_t *m, const uint8_t *body,
                              pc_vsr_output_t *out) {
    PC_ASSERT(m->header.checksum == pc_vsr_header_checksum(&m->header));
    const pc_vsr_header_t *h = &m->header;
    PC_ASSERT(h->op == m->op);
    repair_answered(r, h->op, h->checksum);
    if (h->op == r->checkpoint_op && h->checksum == r->checkpoint_checksum && !r->anchor_known) {
        pc__vsr_install(r, h, NULL); /* the anchor's header */
        return;
    }
    if (h->op <= r->commit_min || !pc__vsr_in_window(r, h->op)) return;
    const vsr_slot_t *s = pc__vsr_entry(r, h->op);
    bool wanted = s && s->header.checksum == h->checksum;
    if (!wanted && h->op < r->op && h->op + 1 >= r->verified_low) {
        const vsr_slot_t *above = pc__vsr_entry(r, h->op + 1);
        wanted = above && above->header.parent == h->checksum;
    }
    bool target = r->status == PC_VSR_NORMAL && h->op > r->op && h->op == r->commit_max &&
                  h->checksum == r->commit_max_checksum;
    if (!wanted && !target) return;
    pc__vsr_install(r, h, body);
    s = pc__vsr_entry(r, h->op);
    if (!s || !s->body_ok) return;
    if (target) r->op = h->op;
    install_headers_below(r, m);
    /* Pipelined: ask for what is still missing right away (and journal
     * what arrived), not only on the next repair tick. */
    pc__vsr_chain_walk(r, out, true);
    pc__vsr_commit_apply(r, out);
}

void pc__vsr_on_prepare(pc_vsr_t *r, const pc_vsr_message_t *m, const uint8_t *body,
                        pc_vsr_output_t *out) {
    PC_ASSERT(m->from != r->config.replica);
    const pc_vsr_header_t *h = &m->header;
    PC_ASSERT(m->command == PC_VSR_PREPARE);
    if (h->op != m->op || h->op == 0) return;
    if (h->checksum != pc_vsr_header_checksum(h) || h->body_size > r->config.body_max) return;
    if (body == NULL && h->body_size > 0) return;
    if (pc_checksum(body, h->body_size, 0) != h->body_checksum) return;
    /* A repair answer is never canonical, even from the primary: it may be
     * an entry of an abandoned log that the sender still holds. */
    bool canonical = !m->repair && r->status == PC_VSR_NORMAL && m->view == r->view &&
                     m->from == pc__vsr_primary_of(r->view) && !pc__vsr_is_primary(r);
    if (canonical) {
        on_canonical_prepare(r, m, body, out);
        return;
    }
    if (m->view > r->view) behind(r, m, out);
    on_repair_prepare(r, m, body, out);
}

void pc__vsr_on_commit(pc_vsr_t *r, const pc_vsr_message_t *m, pc_vsr_output_t *out) {
    PC_ASSERT(m->command == PC_VSR_COMMIT);
    if (behind(r, m, out)) return;
    if (m->view != r->view || r->status != PC_VSR_NORMAL || pc__vsr_is_primary(r)) return;
    if (m->from != pc__vsr_primary_of(r->view)) return;
    pc__vsr_heard_from_primary(r, m->commit);
    learn_commit(r, m->commit, m->checksum);
    pc__vsr_commit_apply(r, out);
    PC_ASSERT(r->commit_min <= r->commit_max);
}

void pc__vsr_ack(pc_vsr_t *r, pc_vsr_output_t *out, uint64_t op) {
    PC_ASSERT(r != NULL && out != NULL);
    if (r->status != PC_VSR_NORMAL || pc__vsr_is_primary(r) || !pc__vsr_log_persisted(r)) return;
    const vsr_slot_t *s = pc__vsr_entry(r, op);
    /* Only a durable copy counts toward a quorum; the primary checks the
     * checksum against its own header, so a stale entry never counts. */
    if (op == 0 || op > r->op || !s || !s->durable) return;
    pc_vsr_message_t *m = pc__vsr_send(r, out, pc__vsr_primary_of(r->view), PC_VSR_PREPARE_OK);
    if (!m) return;
    m->op = op;
    m->checksum = s->header.checksum;
    PC_ASSERT(m->checksum != 0);
}

void pc__vsr_on_prepare_ok(pc_vsr_t *r, const pc_vsr_message_t *m, pc_vsr_output_t *out) {
    PC_ASSERT(m->command == PC_VSR_PREPARE_OK);
    if (m->view != r->view || r->status != PC_VSR_NORMAL || !pc__vsr_is_primary(r)) return;
    if (m->op <= r->commit_max || m->op > r->op) return;
    vsr_slot_t *s = pc__vsr_entry(r, m->op);
    if (!s || s->header.checksum != m->checksum) return;
    s->acks |= (uint8_t)(1u << m->from);
    pc__vsr_primary_commit(r, out);
    PC_ASSERT(r->commit_max <= r->op);
}

/* Any intact entry still in the ring is served, also one at or below the
 * checkpoint: it is committed, and a lagging peer may still need it. */
void pc__vsr_on_request_prepare(pc_vsr_t *r, const pc_vsr_message_t *m, pc_vsr_output_t *out) {
    PC_ASSERT(m->command == PC_VSR_REQUEST_PREPARE);
    if (m->op == 0) return;
    const vsr_slot_t *s = pc__vsr_entry(r, m->op);
    /* A corrupt body is never served: body_ok was checked against the header. */
    if (!s || !s->body_ok || s->header.checksum != m->checksum) return;
    pc_vsr_message_t *a = pc__vsr_send_prepare(r, out, m->from, m->op, true);
    if (!a) return;
    /* The headers chained below it (see install_headers_below). */
    pc_u128 expected = s->header.parent;
    for (uint64_t op = m->op - 1; op > 0 && a->headers_count < PC_VSR_VIEW_HEADERS_MAX; op--) {
        const pc_vsr_header_t *h = pc__vsr_header(r, op);
        if (!h || h->checksum != expected) break;
        a->headers[a->headers_count] = *h;
        a->durable[a->headers_count++] = 0;
        expected = h->parent;
    }
    PC_ASSERT(m->from < PC_VSR_REPLICAS);
}

/* The primary commits op k once a quorum holds k durably (itself included
 * only when its own write is done) and k is on its verified chain. */
void pc__vsr_primary_commit(pc_vsr_t *r, pc_vsr_output_t *out) {
    PC_ASSERT(out != NULL);
    PC_ASSERT(r->commit_max <= r->op);
    if (r->status != PC_VSR_NORMAL || !pc__vsr_is_primary(r)) return;
    pc__vsr_chain_walk(r, out, false);
    uint8_t self = (uint8_t)(1u << r->config.replica);
    while (r->commit_max < r->op) {
        uint64_t op = r->commit_max + 1;
        const vsr_slot_t *s = pc__vsr_entry(r, op);
        if (op < r->verified_low || !s) break;
        unsigned count = pc__vsr_popcount(s->acks & (uint8_t)~self) + (s->durable ? 1u : 0u);
        if (pc__vsr_bug_commit_without_quorum && s->body_ok) count = PC_VSR_QUORUM;
        if (count < PC_VSR_QUORUM) break;
        r->commit_max = op;
    }
    r->commit_max_checksum = pc__vsr_checksum(r, r->commit_max);
    pc__vsr_commit_apply(r, out);
}

/* Applies committed ops in order: each must be on the verified chain, link to
 * the op applied before it, and have an intact body. */
void pc__vsr_commit_apply(pc_vsr_t *r, pc_vsr_output_t *out) {
    PC_ASSERT(out != NULL);
    if (r->commit_min >= r->commit_max) return;
    pc__vsr_chain_walk(r, out, false);
    bool reply = r->status == PC_VSR_NORMAL && pc__vsr_is_primary(r);
    while (r->commit_min < r->commit_max && r->commit_min < r->op &&
           out->commits_count < PC_VSR_OUT_COMMITS_MAX) {
        uint64_t op = r->commit_min + 1;
        const vsr_slot_t *s = pc__vsr_entry(r, op);
        if (op < r->verified_low || !s || !s->body_ok) break;
        if (s->header.parent != pc__vsr_checksum(r, r->commit_min)) break;
        pc_vsr_commit_out_t *c = &out->commits[out->commits_count++];
        c->header = s->header;
        c->body = pc__vsr_body(r, op);
        c->reply = reply;
        r->commit_min = op;
        r->commit_progress_tick = r->ticks;
    }
    if (r->untrusted && r->commit_min >= r->verify_op) r->untrusted = false;
    PC_ASSERT(r->commit_min <= r->op);
}
