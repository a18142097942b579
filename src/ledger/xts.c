/*
 * xts.c — cross-unit transfers (XTS) inside one unit's ledger: the try and
 * resolve steps of the payee-first TCC protocol described in paycell.h, and
 * the reads get_xts_legs (the undecided payee legs) and get_totals.
 *
 * Every record moves money between a local account and the unit's clearing
 * account of the ledger, so conservation holds inside every unit at every
 * instant. It is stored as the client sent it (debit A, credit B) with
 * PC_SLOT_XTS (and PC_SLOT_XTS_PAYEE on the payee side) so that a retry
 * compares against exactly what was sent; pc__slot_accounts maps the record
 * to the two local accounts wherever balances or history are touched.
 *
 * The payee's leg is an ordinary pending transfer that never expires. Its
 * resolution needs no new transfer id: its slot carries id = pending_id =
 * the gtid, is linked into both accounts' histories, and gets no index
 * entry; the gtid's entry keeps pointing at the leg with status POSTED or
 * VOIDED. The payer's try is its decision: the debit posted at once (status
 * POSTED, no pending leg, no expiry), or refused with a tombstone slot
 * (status XTS_ABORTED). An abort of an unknown gtid (empty rollback) writes
 * the same tombstone, so a late try is refused (suspension).
 */
#include "ledger_int.h"

#include <string.h>

#define R(name) PC_TRANSFER_RESULT_##name

static const uint16_t FLAG_POST = PC_TRANSFER_post_pending_transfer;
static const uint16_t FLAG_VOID = PC_TRANSFER_void_pending_transfer;
static const uint16_t XTS_BITS = PC_SLOT_XTS | PC_SLOT_XTS_PAYEE;

enum { ROLE_PAYER = 1, ROLE_PAYEE = 2 };

/* The record as the client sent it (flags 0), from a stored leg. */
static pc_transfer_t leg_as_sent(const pc_transfer_t *stored) {
    PC_ASSERT(pc__is_xts(stored));
    pc_transfer_t t = *stored;
    t.flags &= (uint16_t)~(XTS_BITS | PC_TRANSFER_pending);
    PC_ASSERT(!(t.flags & PC_SLOT_FAILED));
    return t;
}

void pc_ledger_transfer_public(pc_transfer_t *transfer) {
    PC_ASSERT(transfer != NULL);
    PC_ASSERT(!(transfer->flags & PC_SLOT_FAILED));
    if (pc__is_xts(transfer)) transfer->flags &= (uint16_t)~(XTS_BITS | PC_TRANSFER_pending);
}

/* Writes a slot linked into both accounts' histories. */
static uint64_t slot_commit(pc_ledger_t *ledger, const pc_transfer_t *record, uint32_t dr,
                            uint32_t cr) {
    PC_ASSERT(dr != cr && record->timestamp != 0);
    PC_ASSERT(!ledger->undo_on);
    uint64_t loc = pc__slot_append(ledger, record, ledger->heads[dr], ledger->heads[cr]);
    ledger->heads[dr] = loc + 1;
    ledger->heads[cr] = loc + 1;
    return loc;
}

/* ---- xts_try ---- */

/* Stateless checks, as create_transfers' for a pending transfer. */
static uint32_t try_validate(const pc_transfer_t *t) {
    if (t->timestamp != 0) return R(timestamp_must_be_zero);
    if (t->flags != 0) return R(xts_flags_invalid);
    if (t->id == 0) return R(id_must_not_be_zero);
    if (t->id == PC_U128_MAX) return R(id_must_not_be_int_max);
    pc_transfer_t as_pending = *t; /* a leg is a pending transfer: a timeout is allowed */
    as_pending.flags = PC_TRANSFER_pending;
    return pc__transfer_validate_single(&as_pending);
}

/* Which side of the transfer this unit holds. A clearing account is never a
 * user's account: naming one finds nothing. */
static uint32_t try_role(const pc_ledger_t *ledger, const pc_transfer_t *t, uint32_t *role) {
    if (pc_account_id_is_reserved(t->debit_account_id)) return R(debit_account_not_found);
    if (pc_account_id_is_reserved(t->credit_account_id)) return R(credit_account_not_found);
    if (ledger->routing_all) return R(xts_same_unit);
    bool debit = pc__routing_owns(ledger, t->debit_account_id);
    bool credit = pc__routing_owns(ledger, t->credit_account_id);
    if (debit && credit) return R(xts_same_unit);
    if (!debit && !credit) return R(wrong_unit);
    *role = debit ? ROLE_PAYER : ROLE_PAYEE;
    if (t->timeout == 0) return R(xts_timeout_must_not_be_zero);
    return R(created);
}

/* A repeat of a try: compared with the leg as sent; a tombstone of an abort
 * is the suspension. */
static uint32_t try_exists(const pc_ledger_t *ledger, const pc_transfer_t *t, uint64_t *pos) {
    *pos = pc__index_find(ledger, t->id);
    if (!pc__index_has(ledger, *pos, t->id)) return R(created);
    uint64_t ls = ledger->loc_status[*pos];
    if (pc__ls_status(ls) == PC__ST_XTS_ABORTED) return R(xts_aborted);
    if (pc__ls_status(ls) == PC__ST_FAILED) return R(id_already_failed);
    const pc_transfer_t *e = pc__record_get(ledger, t->id, ls);
    if (!pc__is_xts(e)) return R(exists_with_different_flags);
    pc_transfer_t sent = leg_as_sent(e);
    return pc__transfer_exists(t, &sent);
}

/* Capacity checks; nothing has changed yet. The payer's decision takes
 * one slot; a payee leg takes its own and keeps one for its resolution. */
static uint32_t try_capacity(const pc_ledger_t *ledger, uint32_t role, bool clearing_missing) {
    const pc_ledger_config_t *c = &ledger->config;
    if (clearing_missing && ledger->accounts_count == c->accounts_max) {
        return R(clearing_account_unavailable);
    }
    uint32_t slots = role == ROLE_PAYER ? 1 : 2;
    if (pc__store_full(ledger) || pc__store_used(ledger) + slots > c->transfers_max) {
        return R(transfers_full);
    }
    if (role == ROLE_PAYEE && ledger->pending_count == c->pending_max) {
        return R(pending_transfers_full);
    }
    return R(created);
}

/* Account, balance and capacity checks of the local side and the clearing
 * account (a missing one counts as all zero: it is created on commit). The
 * payer's side is checked as a posted transfer, the payee's as pending. */
static uint32_t try_check(const pc_ledger_t *ledger, const pc_transfer_t *t, uint32_t role,
                          uint64_t timestamp, uint32_t *local_out) {
    bool payer = role == ROLE_PAYER;
    pc_u128 local_id = payer ? t->debit_account_id : t->credit_account_id;
    uint32_t local = pc__account_find(ledger, local_id, NULL);
    if (local == PC__NONE) return payer ? R(debit_account_not_found) : R(credit_account_not_found);
    const pc_account_t *a = &ledger->accounts[local];
    if (a->ledger != t->ledger) return R(transfer_must_have_the_same_ledger_as_accounts);
    uint32_t clearing = pc__account_find(ledger, pc__clearing_id(t->ledger, t->id), NULL);
    const pc_account_t zero = {0};
    const pc_account_t *c = clearing == PC__NONE ? &zero : &ledger->accounts[clearing];
    const pc_account_t *dr = payer ? a : c, *cr = payer ? c : a;
    uint32_t result = pc__transfer_check_overflows(dr, cr, t->amount, !payer);
    if (result != R(created)) return result;
    if (timestamp > UINT64_MAX - (uint64_t)t->timeout * PC__NS_PER_S) {
        return R(overflows_timeout);
    }
    result = pc__transfer_check_limits(dr, cr, t->amount);
    if (result != R(created)) return result;
    *local_out = local;
    return try_capacity(ledger, role, clearing == PC__NONE);
}

/* The unit's clearing account of a ledger, created on first use. */
static uint32_t clearing_get(pc_ledger_t *ledger, uint32_t ledger_id, pc_u128 gtid,
                             uint64_t timestamp) {
    uint64_t pos = 0;
    uint32_t slot = pc__account_find(ledger, pc__clearing_id(ledger_id, gtid), &pos);
    if (slot != PC__NONE) return slot;
    PC_ASSERT(ledger->accounts_count < ledger->config.accounts_max);
    pc_account_t a;
    memset(&a, 0, sizeof(a));
    a.id = pc__clearing_id(ledger_id, gtid);
    a.ledger = ledger_id;
    a.code = 1;
    a.timestamp = timestamp;
    pc__account_insert(ledger, pos, &a);
    return ledger->accounts_count - 1;
}

/* The try's record, between the local account and the clearing account:
 * the payee's pending credit, or the payer's debit, posted at once (its
 * decision to commit). */
static void try_commit(pc_ledger_t *ledger, const pc_transfer_t *t, uint32_t role,
                       uint64_t timestamp, uint64_t pos, uint32_t local) {
    bool payer = role == ROLE_PAYER;
    uint32_t clearing = clearing_get(ledger, t->ledger, t->id, timestamp);
    uint32_t dr = payer ? local : clearing, cr = payer ? clearing : local;
    PC_ASSERT(dr != cr);
    pc_account_t *d = &ledger->accounts[dr], *c = &ledger->accounts[cr];
    pc_transfer_t record = *t;
    record.timestamp = timestamp;
    if (payer) {
        d->debits_posted += t->amount;
        c->credits_posted += t->amount;
        record.flags = PC_SLOT_XTS;
    } else {
        d->debits_pending += t->amount;
        c->credits_pending += t->amount;
        record.flags = PC_TRANSFER_pending | PC_SLOT_XTS | PC_SLOT_XTS_PAYEE;
    }
    uint64_t loc = slot_commit(ledger, &record, dr, cr);
    uint64_t ls = payer ? pc__ls_make(loc, 0, PC__ST_POSTED)
                        : pc__ls_make(loc, pc__pending_add(ledger, &record, pos), PC__ST_PENDING);
    pc__index_insert(ledger, pos, t->id, ls);
}

/* The tombstone of an aborted gtid: a later try or commit of it answers
 * xts_aborted. Without room for one no try or commit of the gtid can ever
 * be accepted either (pc__store_full never turns false again: see
 * pc__store_used), so the abort needs none. */
static void tombstone_write(pc_ledger_t *ledger, pc_u128 gtid, uint64_t timestamp,
                            uint64_t pos) {
    PC_ASSERT(!pc__index_has(ledger, pos, gtid));
    if (pc__store_full(ledger)) return;
    pc_transfer_t record = {.id = gtid, .timestamp = timestamp};
    record.flags = PC_TRANSFER_void_pending_transfer | PC_SLOT_XTS | PC_SLOT_FAILED;
    uint64_t loc = pc__slot_append(ledger, &record, 0, 0);
    pc__index_insert(ledger, pos, gtid, pc__ls_make(loc, 0, PC__ST_XTS_ABORTED));
}

uint32_t pc__xts_try(pc_ledger_t *ledger, const pc_transfer_t *t, uint64_t timestamp) {
    PC_ASSERT(timestamp != 0);
    PC_ASSERT(!ledger->undo_on);
    uint32_t role = 0, local = PC__NONE;
    uint64_t pos = 0;
    uint32_t result = try_validate(t);
    if (result == R(created)) result = try_role(ledger, t, &role);
    if (result == R(created)) result = try_exists(ledger, t, &pos);
    if (result != R(created)) return result;
    result = try_check(ledger, t, role, timestamp, &local);
    if (result == R(created)) try_commit(ledger, t, role, timestamp, pos, local);
    else if (role == ROLE_PAYER) tombstone_write(ledger, t->id, timestamp, pos); /* for good */
    return result;
}

/* ---- xts_resolve ---- */

static uint32_t resolve_validate(const pc_xts_decision_t *d) {
    if (d->flags != FLAG_POST && d->flags != FLAG_VOID) return R(xts_flags_invalid);
    if (d->gtid == 0) return R(id_must_not_be_zero);
    if (d->gtid == PC_U128_MAX) return R(id_must_not_be_int_max);
    for (uint32_t i = 0; i < sizeof d->reserved; i++) {
        if (d->reserved[i] != 0) return R(reserved_flag);
    }
    return R(created);
}


/* Posts or voids the payee's leg on both local accounts and writes the
 * resolution slot. */
static void resolve_commit(pc_ledger_t *ledger, uint16_t decision, uint64_t timestamp,
                           uint64_t pos, uint32_t pool_index) {
    const pc_transfer_t leg = ledger->pool[pool_index].transfer;
    PC_ASSERT(ledger->pool[pool_index].index_pos == pos);
    pc_u128 dr_id, cr_id;
    pc__slot_accounts(&leg, &dr_id, &cr_id);
    uint32_t dr = pc__account_find(ledger, dr_id, NULL), cr = pc__account_find(ledger, cr_id, NULL);
    PC_ASSERT(dr != PC__NONE && cr != PC__NONE);
    pc_account_t *d = &ledger->accounts[dr], *c = &ledger->accounts[cr];
    PC_ASSERT(d->debits_pending >= leg.amount && c->credits_pending >= leg.amount);
    d->debits_pending -= leg.amount;
    c->credits_pending -= leg.amount;
    if (decision == FLAG_POST) {
        d->debits_posted += leg.amount;
        c->credits_posted += leg.amount;
    }
    pc_transfer_t record = leg;
    record.flags = decision | (leg.flags & XTS_BITS);
    record.pending_id = leg.id;
    record.timestamp = timestamp;
    slot_commit(ledger, &record, dr, cr);
    pc__pending_resolve(ledger, pool_index, decision == FLAG_POST ? PC__ST_POSTED : PC__ST_VOIDED);
}

/* The answer for a leg decided earlier (or expired). */
static uint32_t resolve_decided(uint32_t status, bool commit) {
    if (status == PC__ST_POSTED) return commit ? R(exists) : R(xts_committed);
    PC_ASSERT(status == PC__ST_VOIDED || status == PC__ST_EXPIRED);
    return commit ? R(xts_aborted) : R(exists);
}

uint32_t pc__xts_resolve(pc_ledger_t *ledger, const pc_xts_decision_t *d, uint64_t timestamp) {
    PC_ASSERT(timestamp != 0);
    PC_ASSERT(!ledger->undo_on);
    uint32_t result = resolve_validate(d);
    if (result != R(created)) return result;
    bool commit = d->flags == FLAG_POST;
    uint64_t pos = pc__index_find(ledger, d->gtid);
    if (!pc__index_has(ledger, pos, d->gtid)) {
        if (commit) return R(xts_not_found);
        tombstone_write(ledger, d->gtid, timestamp, pos); /* the empty rollback */
        return R(created);
    }
    uint64_t ls = ledger->loc_status[pos];
    uint32_t status = pc__ls_status(ls);
    if (status == PC__ST_XTS_ABORTED) return commit ? R(xts_aborted) : R(exists);
    /* The id is another, ordinary transfer's: no try of it can ever take. */
    bool ordinary = status == PC__ST_FAILED || status == PC__ST_CREATED;
    const pc_transfer_t *leg = ordinary ? NULL : pc__record_get(ledger, d->gtid, ls);
    if (leg == NULL || !pc__is_xts(leg)) return commit ? R(xts_not_found) : R(xts_aborted);
    /* Asked about a leg of another transfer under this gtid: not this one. */
    if (d->leg != 0 && d->leg != pc_xts_leg_digest(leg)) {
        return commit ? R(xts_not_found) : R(xts_aborted);
    }
    if (status != PC__ST_PENDING) return resolve_decided(status, commit);
    PC_ASSERT(pc__store_has_reserved(ledger)); /* the leg's reserve */
    resolve_commit(ledger, d->flags, timestamp, pos, pc__ls_pool(ls));
    return R(created);
}

/* ---- reads ---- */

static bool trying_filter_valid(const pc_account_filter_t *f) {
    static const uint8_t zero[sizeof(f->reserved)] = {0};
    if (memcmp(f->reserved, zero, sizeof(zero)) != 0) return false;
    if (f->account_id != 0) return false;
    if (f->limit == 0 || f->limit > PC_BATCH_EVENTS_MAX) return false;
    if (f->flags != PC_FILTER_XTS_TRYING) return false;
    return f->timestamp_max == 0 || f->timestamp_min <= f->timestamp_max;
}

static bool in_range(const pc_account_filter_t *f, uint64_t timestamp) {
    if (f->timestamp_max != 0 && timestamp > f->timestamp_max) return false;
    return timestamp >= f->timestamp_min;
}

/* A max-heap by timestamp over out[0..n), to keep the oldest legs. */
static void heap_down(pc_transfer_t *h, uint32_t n, uint32_t i) {
    PC_ASSERT(i < n || n == 0);
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, top = i;
        if (l < n && h[l].timestamp > h[top].timestamp) top = l;
        if (r < n && h[r].timestamp > h[top].timestamp) top = r;
        if (top == i) return;
        pc_transfer_t tmp = h[i];
        h[i] = h[top];
        h[top] = tmp;
        i = top;
    }
}

static void heap_up(pc_transfer_t *h, uint32_t i) {
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (h[parent].timestamp >= h[i].timestamp) return;
        pc_transfer_t tmp = h[i];
        h[i] = h[parent];
        h[parent] = tmp;
        i = parent;
    }
}

/* The oldest undecided legs in range, oldest first. Pool positions are not
 * state, so the order comes from the try timestamps (unique per event). */
static uint32_t trying_list(const pc_ledger_t *ledger, const pc_account_filter_t *f,
                            pc_transfer_t *out, uint32_t cap) {
    PC_ASSERT(cap > 0);
    uint32_t n = 0;
    for (uint32_t i = 0; i < ledger->pool_used; i++) {
        const pc_transfer_t *p = &ledger->pool[i].transfer;
        if (p->id == 0 || !pc__is_xts(p) || !in_range(f, p->timestamp)) continue;
        pc_transfer_t t = leg_as_sent(p);
        t.flags = PC_TRANSFER_pending;
        if (n < cap) {
            out[n] = t;
            heap_up(out, n++);
        } else if (t.timestamp < out[0].timestamp) {
            out[0] = t;
            heap_down(out, n, 0);
        }
    }
    for (uint32_t end = n; end > 1; end--) {
        pc_transfer_t tmp = out[0];
        out[0] = out[end - 1];
        out[end - 1] = tmp;
        heap_down(out, end - 1, 0);
    }
    return n;
}

int pc_ledger_xts_legs(const pc_ledger_t *ledger, const pc_account_filter_t *filter,
                       pc_transfer_t *out) {
    PC_ASSERT(filter != NULL && out != NULL);
    PC_ASSERT(!ledger->undo_on);
    if (!trying_filter_valid(filter)) return PC_EINVAL;
    uint32_t n = trying_list(ledger, filter, out, filter->limit);
    PC_ASSERT(n <= filter->limit);
    return (int)n;
}

/* The smallest ledger id above `after`, or 0 when none. */
static uint32_t ledger_next(const pc_ledger_t *ledger, bool shadow, uint32_t after) {
    uint64_t next = UINT64_MAX;
    for (uint32_t i = 0; i < ledger->accounts_count; i++) {
        if ((bool)pc_id_is_shadow(ledger->accounts[i].id) != shadow) continue;
        uint32_t l = ledger->accounts[i].ledger;
        if (l > after && l < next) next = l;
    }
    return next == UINT64_MAX ? 0 : (uint32_t)next;
}

static void totals_one(const pc_ledger_t *ledger, bool shadow, uint32_t ledger_id,
                       pc_totals_t *t) {
    PC_ASSERT(ledger_id != 0);
    memset(t, 0, sizeof(*t));
    t->ledger = ledger_id;
    const pc_u128 space = shadow ? PC_SHADOW_BIT : 0;
    for (uint32_t i = 0; i < ledger->accounts_count; i++) {
        const pc_account_t *a = &ledger->accounts[i];
        if (a->ledger != ledger_id || (a->id & PC_SHADOW_BIT) != space) continue;
        t->debits_pending += a->debits_pending;
        t->debits_posted += a->debits_posted;
        t->credits_pending += a->credits_pending;
        t->credits_posted += a->credits_posted;
        t->accounts_count++;
    }
    uint32_t clearing = pc__account_find(ledger, pc__clearing_id(ledger_id, space), NULL);
    if (clearing != PC__NONE) {
        t->clearing_debits_posted = ledger->accounts[clearing].debits_posted;
        t->clearing_credits_posted = ledger->accounts[clearing].credits_posted;
    }
    for (uint32_t i = 0; i < ledger->pool_used; i++) {
        const pc_transfer_t *p = &ledger->pool[i].transfer;
        if (p->id != 0 && pc__is_xts(p) && p->ledger == ledger_id &&
            (p->id & PC_SHADOW_BIT) == space) {
            t->xts_trying++;
        }
    }
}

/* Not hot and allocates nothing: one pass per ledger, as pc_ledger_totals. */
uint32_t pc_ledger_xts_totals(const pc_ledger_t *ledger, bool shadow, pc_totals_t *out,
                              uint32_t cap) {
    PC_ASSERT(out != NULL || cap == 0);
    PC_ASSERT(!ledger->undo_on);
    uint32_t n = 0;
    for (uint32_t l = ledger_next(ledger, shadow, 0); l != 0; l = ledger_next(ledger, shadow, l)) {
        if (n < cap) totals_one(ledger, shadow, l, &out[n]);
        n++;
    }
    PC_ASSERT(n <= ledger->accounts_count);
    return n;
}
