/*
 * view_change.c — replacing a silent primary (VSR Revisited, section 4.2),
 * and a restarted replica rejoining the current view.
 *
 * A backup that hears no progress from the primary starts a view change to
 * view + 1 and persists the new view before voting. With a quorum of
 * start_view_change votes each voter persists and sends do_view_change —
 * its log_view, head, commit and the headers of its log's suffix, each
 * flagged HAVE (on disk, body included) and/or RECORDED (its disk recorded
 * the header: it may have acknowledged it), and its faulty slots — to the
 * new primary. The new primary takes the log with the highest (log_view,
 * op), which contains every committed op, fills in the suffix from the
 * chain, and truncates it at the lowest op a quorum of senders nacks
 * (dvc_nacks: positively never acknowledged): commit needs a quorum of
 * durable prepare_oks and quorums intersect, so such an op, and every op
 * above it, was never committed. It persists log_view, then sends
 * start_view. Backups adopt the log and acknowledge what they hold.
 */
#include <string.h>

#include "vsr_int.h"

void pc__vsr_start_view_change(pc_vsr_t *r, uint32_t view, pc_vsr_output_t *out) {
    PC_ASSERT(view > r->view);
    PC_ASSERT(r->log_view < view);
    r->view = view;
    r->status = PC_VSR_VIEW_CHANGE;
    r->svc_from = (uint8_t)(1u << r->config.replica);
    memset(r->dvcs, 0, sizeof r->dvcs);
    r->view_change_tick = r->ticks;
    /* The vote is sent only once the view is durable (on_persist_done): a
     * replica that restarts must never vote twice in one view. */
    pc__vsr_persist(r, out);
}

void pc__vsr_view_change_tick(pc_vsr_t *r, pc_vsr_output_t *out) {
    PC_ASSERT(r->status != PC_VSR_NORMAL);
    uint64_t timeout = VSR_VIEW_CHANGE_TIMEOUT_TICKS + 12u * r->config.replica;
    if (r->status == PC_VSR_RECOVERING) {
        if (r->ticks % VSR_RESEND_TICKS == 0) {
            for (uint8_t to = 0; to < PC_VSR_REPLICAS; to++) {
                if (to == r->config.replica) continue;
                pc_vsr_message_t *m = pc__vsr_send(r, out, to, PC_VSR_REQUEST_START_VIEW);
                if (m) m->view = r->view;
            }
        }
        if (r->ticks - r->view_change_tick > timeout)
            pc__vsr_start_view_change(r, r->view + 1, out);
        return;
    }
    if (r->ticks - r->view_change_tick > timeout) {
        pc__vsr_start_view_change(r, r->view + 1, out);
        return;
    }
    if (r->ticks % VSR_RESEND_TICKS == 0) pc__vsr_send_view_change(r, out);
    PC_ASSERT(r->status != PC_VSR_RECOVERING); /* may be NORMAL: the view started */
}

/* A head that is the checkpoint known by checksum only is sent as no
 * headers plus head_checksum: everything at or below the checkpoint is
 * committed, so the new primary needs nothing more about it. */
static void fill_dvc(const pc_vsr_t *r, vsr_dvc_t *d) {
    PC_ASSERT(pc__vsr_head_known(r) || r->op == r->checkpoint_op);
    memset(d, 0, sizeof *d);
    d->present = true;
    d->log_view = r->log_view;
    d->op = r->op;
    d->commit = r->commit_max;
    d->head_checksum = pc__vsr_checksum(r, r->op);
    /* Down to the checkpoint (its header, the anchor, is committed and held
     * in the checkpoint); the root is never sent. */
    for (uint64_t op = r->op; op > 0 && op >= r->checkpoint_op; op--) {
        if (d->headers_count == PC_VSR_VIEW_HEADERS_MAX) break;
        const pc_vsr_header_t *h = pc__vsr_header(r, op);
        if (!h) continue;
        const vsr_slot_t *s = op == r->checkpoint_op ? NULL : pc__vsr_entry(r, op);
        uint8_t flags = PC_VSR_DVC_HAVE | PC_VSR_DVC_RECORDED; /* the checkpoint */
        if (s) {
            flags = (uint8_t)((s->durable ? PC_VSR_DVC_HAVE : 0u) |
                              (s->recorded || s->durable ? PC_VSR_DVC_RECORDED : 0u));
        }
        d->headers[d->headers_count] = *h;
        d->durable[d->headers_count] = flags;
        d->headers_count++;
    }
    /* Faulty slots above the commit point, highest first: ops this replica
     * cannot nack (below its commit nothing is decided any more). */
    uint64_t window_top = r->checkpoint_op + r->config.journal_slots;
    for (uint64_t op = window_top; op > r->commit_max; op--) {
        if (pc__vsr_slot(r, op)->faulty_op != op) continue;
        if (d->faulty_count == PC_VSR_VIEW_HEADERS_MAX) {
            d->faulty_more = true;
            break;
        }
        d->faulty[d->faulty_count++] = op;
    }
    PC_ASSERT(d->headers_count <= PC_VSR_VIEW_HEADERS_MAX);
    PC_ASSERT(d->headers_count == 0 || d->headers[0].op == d->op);
    PC_ASSERT(d->head_checksum != 0);
}

static void maybe_start_view(pc_vsr_t *r, pc_vsr_output_t *out);

void pc__vsr_send_view_change(pc_vsr_t *r, pc_vsr_output_t *out) {
    PC_ASSERT(r->log_view < r->view);
    PC_ASSERT(r->status == PC_VSR_VIEW_CHANGE);
    if (r->persisted_view != r->view) return;
    /* Anyone may ask for a new view; only a replica whose journal is trusted
     * may vote with its log (do_view_change). */
    for (uint8_t to = 0; to < PC_VSR_REPLICAS; to++) {
        if (to == r->config.replica) continue;
        pc_vsr_message_t *m = pc__vsr_send(r, out, to, PC_VSR_START_VIEW_CHANGE);
        if (m) m->view = r->view;
    }
    if (pc__vsr_popcount(r->svc_from) < PC_VSR_QUORUM || !pc__vsr_log_persisted(r)) return;
    if (!pc__vsr_may_vote(r)) return;
    uint8_t primary = pc__vsr_primary_of(r->view);
    if (primary == r->config.replica) {
        fill_dvc(r, &r->dvcs[primary]);
        maybe_start_view(r, out);
        return;
    }
    pc_vsr_message_t *m = pc__vsr_send(r, out, primary, PC_VSR_DO_VIEW_CHANGE);
    if (!m) return;
    vsr_dvc_t d;
    fill_dvc(r, &d);
    m->op = d.op;
    m->commit = d.commit;
    m->checksum = d.head_checksum;
    m->headers_count = d.headers_count;
    memcpy(m->headers, d.headers, sizeof d.headers);
    memcpy(m->durable, d.durable, sizeof d.durable);
    m->faulty_count = d.faulty_count;
    m->faulty_more = d.faulty_more;
    memcpy(m->faulty, d.faulty, sizeof d.faulty);
}

void pc__vsr_on_start_view_change(pc_vsr_t *r, const pc_vsr_message_t *m,
                                  pc_vsr_output_t *out) {
    PC_ASSERT(m->from != r->config.replica);
    PC_ASSERT(m->command == PC_VSR_START_VIEW_CHANGE);
    if (m->view < r->view) return;
    if (m->view > r->view) pc__vsr_start_view_change(r, m->view, out);
    if (r->status != PC_VSR_VIEW_CHANGE || m->view != r->view) return;
    uint8_t before = r->svc_from;
    r->svc_from |= (uint8_t)(1u << m->from);
    if (r->svc_from != before && pc__vsr_popcount(r->svc_from) == PC_VSR_QUORUM)
        pc__vsr_send_view_change(r, out);
}

void pc__vsr_on_do_view_change(pc_vsr_t *r, const pc_vsr_message_t *m, pc_vsr_output_t *out) {
    PC_ASSERT(m->from != r->config.replica);
    PC_ASSERT(m->command == PC_VSR_DO_VIEW_CHANGE);
    if (pc__vsr_primary_of(m->view) != r->config.replica || m->view < r->view) return;
    if (m->log_view >= m->view || m->checksum == 0) return;
    /* No headers: the head is the sender's checkpoint (or the root). */
    if (m->headers_count == 0 && m->op != m->checkpoint_op) return;
    if (m->headers_count > 0 &&
        (m->headers[0].op != m->op || m->headers[0].checksum != m->checksum))
        return;
    for (uint8_t i = 0; i < m->headers_count; i++)
        if (m->headers[i].checksum != pc_vsr_header_checksum(&m->headers[i])) return;
    if (m->faulty_count > PC_VSR_VIEW_HEADERS_MAX) return;
    if (m->view > r->view) pc__vsr_start_view_change(r, m->view, out);
    if (r->status != PC_VSR_VIEW_CHANGE || m->view != r->view) return;
    vsr_dvc_t *d = &r->dvcs[m->from];
    d->present = true;
    d->log_view = m->log_view;
    d->op = m->op;
    d->commit = m->commit;
    d->head_checksum = m->checksum;
    d->headers_count = m->headers_count;
    memcpy(d->headers, m->headers, sizeof d->headers);
    memcpy(d->durable, m->durable, sizeof d->durable);
    d->faulty_count = m->faulty_count;
    d->faulty_more = m->faulty_more != 0;
    memcpy(d->faulty, m->faulty, sizeof d->faulty);
    maybe_start_view(r, out);
}

/* The header (op, checksum) from any do_view_change, or NULL. */
static const pc_vsr_header_t *dvc_header(const pc_vsr_t *r, uint64_t op, pc_u128 checksum,
                                         bool *durable) {
    PC_ASSERT(durable != NULL);
    const pc_vsr_header_t *found = NULL;
    *durable = false;
    for (uint8_t i = 0; i < PC_VSR_REPLICAS; i++) {
        const vsr_dvc_t *d = &r->dvcs[i];
        if (!d->present) continue;
        for (uint8_t j = 0; j < d->headers_count; j++) {
            if (d->headers[j].op != op || d->headers[j].checksum != checksum) continue;
            found = &d->headers[j];
            if (d->durable[j] & PC_VSR_DVC_HAVE) *durable = true;
        }
    }
    PC_ASSERT(found == NULL || found->op == op);
    return found;
}

/* Whether the sender of d nacks (op, checksum): it positively never
 * acknowledged that entry. `view` is the entry's view (UINT32_MAX if only
 * its checksum is known). Why each case is a nack:
 *   - its log_view is below the entry's view: a replica acknowledges an
 *     entry only in a view at or after the one that prepared it, with its
 *     log_view at that view (persisted before any prepare_ok), and log_view
 *     never goes down;
 *   - the op is above its head: it acknowledges only ops up to its head,
 *     and its head moves down only when a view's log cut the op;
 *   - it holds a different entry there, or none: the slot held this entry
 *     when it acknowledged it, and since then the slot took another entry
 *     only from a later view's log, which proves this one uncommitted for
 *     good (recovery shows any other damage as a faulty slot);
 *   - it holds this entry, but only in memory (not recorded): prepare_ok
 *     needs a durable copy.
 * Not a nack: a faulty slot (it cannot tell), a recorded header (even with
 * the body lost), an op below the headers it sent (it did not say). */
static bool dvc_nacks(const vsr_dvc_t *d, uint64_t op, pc_u128 checksum, uint32_t view) {
    PC_ASSERT(d->present && checksum != 0);
    PC_ASSERT(d->faulty_count <= PC_VSR_VIEW_HEADERS_MAX);
    if (view != UINT32_MAX && d->log_view < view) return true;
    for (uint8_t i = 0; i < d->faulty_count; i++)
        if (d->faulty[i] == op) return false;
    if (d->faulty_more && op < d->faulty[d->faulty_count - 1]) return false;
    if (op > d->op) return true;
    /* fill_dvc covers every op from its head down 24 ops (or to its
     * checkpoint, which is below any op still undecided). */
    if (op + PC_VSR_VIEW_HEADERS_MAX <= d->op) return false;
    for (uint8_t j = 0; j < d->headers_count; j++) {
        if (d->headers[j].op != op) continue;
        if (d->headers[j].checksum != checksum) return true;
        return (d->durable[j] & PC_VSR_DVC_RECORDED) == 0;
    }
    return true;
}

/* Whether some do_view_change sender holds (op, checksum) with its body. */
static bool dvc_have(const pc_vsr_t *r, uint64_t op, pc_u128 checksum) {
    PC_ASSERT(op > 0);
    if (checksum == 0) return false;
    bool durable;
    const pc_vsr_header_t *h = dvc_header(r, op, checksum, &durable);
    PC_ASSERT(h == NULL || h->checksum == checksum);
    return h != NULL && durable;
}

static unsigned dvc_nack_count(const pc_vsr_t *r, uint64_t op, pc_u128 checksum, uint32_t view) {
    unsigned nacks = 0;
    for (uint8_t i = 0; i < PC_VSR_REPLICAS; i++)
        if (r->dvcs[i].present && dvc_nacks(&r->dvcs[i], op, checksum, view)) nacks++;
    PC_ASSERT(nacks <= PC_VSR_REPLICAS);
    return nacks;
}

/* Installs the chosen log's suffix by walking its chain down from the head,
 * then truncates it at the lowest undecided op a quorum nacks. Why that is
 * safe: committing op k needs a quorum of durable prepare_oks for k, and
 * any two quorums intersect, so an op a quorum nacks was never committed
 * (and never will be: its nackers are in a later view now); commits happen
 * in op order, so no op above it was committed either. The chosen log (the
 * highest log_view, then op) holds every committed op; ops at or below the
 * highest commit number any sender knows, or the head's own commit number
 * (its primary had committed that far), are committed and never cut.
 * Returns false if the view cannot start yet: an op that stays in the log
 * has no body at any sender heard so far while a sender is still missing
 * (the last one may hold it, or nack it and let it be cut). */
static bool install_log(pc_vsr_t *r, const vsr_dvc_t *best, uint64_t commit, unsigned count,
                        uint64_t *top_out) {
    PC_ASSERT(best->present);
    *top_out = best->op;
    if (best->headers_count == 0) return true; /* its checkpoint: committed */
    const pc_vsr_header_t *head = &best->headers[0];
    PC_ASSERT(head->op == best->op);
    pc_u128 expected = head->checksum;
    uint64_t low = best->op + 1;
    for (uint64_t op = best->op; op > 0 && op + PC_VSR_VIEW_HEADERS_MAX > best->op; op--) {
        bool durable;
        const pc_vsr_header_t *h = dvc_header(r, op, expected, &durable);
        if (!h) break;
        pc__vsr_install(r, h, NULL);
        expected = h->parent;
        low = op;
    }
    /* A commit above the chosen head means the log lost a committed op:
     * a bug (the planted one does it). Nothing is cut then; the checkers
     * (and the commit <= op assertions) report it. */
    uint64_t floor = PC_MIN(PC_MAX(commit, head->commit), best->op);
    uint64_t top = best->op;
    /* From the lowest op whose checksum the chain names: the first one
     * below the known headers (by its child's parent link; its view is
     * unknown) up to the head. */
    for (uint64_t op = PC_MAX(floor + 1, low - 1); op <= best->op; op++) {
        const pc_vsr_header_t *h = op >= low ? pc__vsr_header(r, op) : NULL;
        PC_ASSERT(op < low || (h != NULL && h->op == op));
        pc_u128 checksum = h ? h->checksum : pc__vsr_header(r, low)->parent;
        uint32_t view = h ? h->view : UINT32_MAX;
        if (dvc_nack_count(r, op, checksum, view) < PC_VSR_QUORUM) continue;
        /* The new head must be a header we know: on the chain (>= low) or
         * committed (<= floor). */
        if (op - 1 < low && op - 1 > floor) continue;
        top = op - 1;
        break;
    }
    *top_out = top;
    if (count == PC_VSR_REPLICAS) return true;
    for (uint64_t op = floor + 1; op <= top; op++)
        if (!dvc_have(r, op, pc__vsr_checksum(r, op))) return false;
    PC_ASSERT(top >= floor);
    return true;
}

static void maybe_start_view(pc_vsr_t *r, pc_vsr_output_t *out) {
    PC_ASSERT(r->status == PC_VSR_VIEW_CHANGE && pc__vsr_is_primary(r));
    PC_ASSERT(r->log_view < r->view);
    const vsr_dvc_t *best = NULL;
    unsigned count = 0;
    uint64_t commit = r->commit_max;
    for (uint8_t i = 0; i < PC_VSR_REPLICAS; i++) {
        const vsr_dvc_t *d = &r->dvcs[i];
        if (!d->present) continue;
        count++;
        commit = PC_MAX(commit, d->commit);
        if (!best || d->log_view > best->log_view ||
            (d->log_view == best->log_view && d->op > best->op))
            best = d;
    }
    if (count < PC_VSR_QUORUM) return;
    /* A log whose head lies beyond this replica's window cannot be held
     * here: leave the view to time out; another replica leads the next one,
     * and this one catches up (or syncs) meanwhile. */
    if (best->op > r->checkpoint_op + r->config.journal_slots) {
        r->sync_urgent = true;
        return;
    }
    uint64_t top;
    if (!install_log(r, best, commit, count, &top)) return; /* the third sender decides */
    if (top < r->commit_min) {
        r->diverged = true; /* the new log lacks an op this replica applied */
        return;
    }
    pc_u128 have = pc__vsr_checksum(r, top);
    if (have == 0 || (best->headers_count == 0 && have != best->head_checksum)) {
        /* The head is another replica's checkpoint this one does not hold
         * (an applied op contradicted is a bug): it syncs to it first and
         * lets this view time out meanwhile. */
        if (have != 0 && top <= r->commit_min) r->diverged = true;
        else r->sync_urgent = true;
        return;
    }
    r->op = top;
    r->view_start_op = top;
    r->sync_urgent = false;
    r->commit_max = PC_MIN(commit, top);
    r->log_view = r->view;
    r->status = PC_VSR_NORMAL;
    r->primary_heard_tick = r->ticks;
    for (uint64_t op = r->commit_max + 1; op <= r->op; op++) {
        vsr_slot_t *s = pc__vsr_entry(r, op);
        if (s) s->acks = 0;
    }
    if (r->untrusted) r->verify_op = r->op;
    /* start_view goes out once log_view is durable (on_persist_done). */
    pc__vsr_persist(r, out);
    PC_ASSERT(r->commit_max <= r->op);
}

void pc__vsr_send_start_view(pc_vsr_t *r, pc_vsr_output_t *out, uint8_t to) {
    PC_ASSERT(r->status == PC_VSR_NORMAL && pc__vsr_is_primary(r));
    PC_ASSERT(r->op >= r->checkpoint_op);
    if (!pc__vsr_log_persisted(r)) return;
    pc_vsr_message_t *m = pc__vsr_send(r, out, to, PC_VSR_START_VIEW);
    if (!m) return;
    m->op = r->op;
    m->checksum = pc__vsr_checksum(r, r->op);
    PC_ASSERT(m->checksum != 0);
    pc_u128 expected = m->checksum;
    /* The chain from the head down, at most to the checkpoint (the root when
     * the log is empty). */
    for (uint64_t op = r->op; m->headers_count < PC_VSR_VIEW_HEADERS_MAX; op--) {
        const pc_vsr_header_t *h = pc__vsr_header(r, op);
        if (!h || h->checksum != expected) break;
        m->headers[m->headers_count++] = *h;
        expected = h->parent;
        if (op == 0 || op == r->checkpoint_op) break;
    }
    /* No headers: the head is this primary's checkpoint, known by checksum. */
    PC_ASSERT(m->headers_count > 0 || r->op == r->checkpoint_op);
    PC_ASSERT(m->headers_count == 0 || m->headers[0].op == m->op);
}

void pc__vsr_on_start_view(pc_vsr_t *r, const pc_vsr_message_t *m, pc_vsr_output_t *out) {
    PC_ASSERT(m->command == PC_VSR_START_VIEW);
    if (m->view < r->view || (m->view == r->view && r->status == PC_VSR_NORMAL)) return;
    if (m->from != pc__vsr_primary_of(m->view) || m->checksum == 0) return;
    if (m->headers_count > 0) {
        const pc_vsr_header_t *head = &m->headers[0];
        if (head->op != m->op || head->checksum != m->checksum ||
            head->checksum != pc_vsr_header_checksum(head))
            return;
    } else if (m->op != m->checkpoint_op) {
        return;
    }
    /* A head below what this replica applied: a start_view sent before the
     * primary took the checkpoint this replica has since synced to (a
     * delayed answer to its request_start_view). Stale, not a
     * contradiction: its log is a prefix of the committed one. Ignored;
     * the replica asks again. */
    if (m->op < r->commit_min) return;
    /* A head beyond the window cannot be held, and a head that is the
     * primary's checkpoint (sent without headers) can only be adopted by a
     * replica that holds it: otherwise this replica catches up by state sync
     * (the message told it the primary's checkpoint) before it joins. */
    if (m->op > r->checkpoint_op + r->config.journal_slots) {
        r->sync_urgent = true;
        return;
    }
    if (m->headers_count == 0 && pc__vsr_checksum(r, m->op) != m->checksum) {
        if (m->op == r->commit_min) r->diverged = true;
        else r->sync_urgent = true;
        return;
    }
    pc_u128 expected = m->checksum;
    for (uint8_t i = 0; i < m->headers_count && m->op > 0; i++) {
        const pc_vsr_header_t *h = &m->headers[i];
        if (h->checksum != expected || h->checksum != pc_vsr_header_checksum(h)) break;
        if (h->op > r->commit_min || h->op == r->checkpoint_op) pc__vsr_install(r, h, NULL);
        expected = h->parent;
    }
    r->view = m->view;
    r->log_view = m->view;
    r->status = PC_VSR_NORMAL;
    r->op = m->op;
    r->sync_urgent = false;
    r->commit_max = PC_MAX(r->commit_min, PC_MIN(m->commit, m->op));
    r->commit_max_checksum = 0;
    r->primary_heard_tick = r->ticks;
    r->last_progress_commit = r->commit_max;
    if (r->untrusted) r->verify_op = m->op;
    pc__vsr_persist(r, out);
    pc__vsr_commit_apply(r, out);
    PC_ASSERT(r->commit_min <= r->op);
}

void pc__vsr_on_request_start_view(pc_vsr_t *r, const pc_vsr_message_t *m,
                                   pc_vsr_output_t *out) {
    PC_ASSERT(m->command == PC_VSR_REQUEST_START_VIEW);
    if (r->status != PC_VSR_NORMAL || !pc__vsr_is_primary(r) || m->view > r->view) return;
    pc__vsr_send_start_view(r, out, m->from);
    PC_ASSERT(r->log_view == r->view);
}
