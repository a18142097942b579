/*
 * transfers.c — create_transfers, one event at a time: single-phase and
 * pending transfers, posts and voids of pending transfers, balancing
 * transfers, balance limits, idempotency and tombstones.
 *
 * The checks run in TigerBeetle's order and the first failing one decides the
 * result. Nothing changes until every check has passed, so a rejected event
 * needs no rollback of its own. Results that depend on state (an account or
 * pending transfer not found, a limit or an overflow) are "transient": the
 * same event could succeed later, so the id is burnt with a tombstone and a
 * retry answers id_already_failed instead of silently succeeding.
 */
#include "ledger_int.h"

#define R(name) PC_TRANSFER_RESULT_##name

static const uint16_t FLAG_POST = PC_TRANSFER_post_pending_transfer;
static const uint16_t FLAG_VOID = PC_TRANSFER_void_pending_transfer;
static const uint16_t FLAG_BALANCING = PC_TRANSFER_balancing_debit | PC_TRANSFER_balancing_credit;

/* Checks shared by every kind of transfer. Balancing may be combined with
 * pending (a balancing reservation) but not with post or void, whose amount
 * comes from the pending transfer. */
static uint32_t validate_common(const pc_transfer_t *t) {
    uint16_t f = t->flags;
    if (t->timestamp != 0) return R(timestamp_must_be_zero);
    if (f & ~PC_TRANSFER_FLAGS_KNOWN) return R(reserved_flag);
    if (t->id == 0) return R(id_must_not_be_zero);
    if (t->id == PC_U128_MAX) return R(id_must_not_be_int_max);
    bool pending = f & PC_TRANSFER_pending, post = f & FLAG_POST, void_ = f & FLAG_VOID;
    if (pending && (post || void_)) return R(flags_are_mutually_exclusive);
    if (post && void_) return R(flags_are_mutually_exclusive);
    if ((f & FLAG_BALANCING) && (post || void_)) return R(flags_are_mutually_exclusive);
    return R(created);
}

static uint32_t validate_post_void(const pc_transfer_t *t) {
    PC_ASSERT(t->flags & (FLAG_POST | FLAG_VOID));
    PC_ASSERT(t->id != 0);
    if (t->pending_id == 0) return R(pending_id_must_not_be_zero);
    if (t->pending_id == PC_U128_MAX) return R(pending_id_must_not_be_int_max);
    if (t->pending_id == t->id) return R(pending_id_must_be_different);
    if (t->timeout != 0) return R(timeout_reserved_for_pending_transfer);
    return R(created);
}

uint32_t pc__transfer_validate_single(const pc_transfer_t *t) {
    PC_ASSERT(!(t->flags & (FLAG_POST | FLAG_VOID)));
    PC_ASSERT(t->id != 0);
    if (t->debit_account_id == 0) return R(debit_account_id_must_not_be_zero);
    if (t->debit_account_id == PC_U128_MAX) return R(debit_account_id_must_not_be_int_max);
    if (t->credit_account_id == 0) return R(credit_account_id_must_not_be_zero);
    if (t->credit_account_id == PC_U128_MAX) return R(credit_account_id_must_not_be_int_max);
    if (t->debit_account_id == t->credit_account_id) return R(accounts_must_be_different);
    if (t->pending_id != 0) return R(pending_id_must_be_zero);
    if (t->timeout != 0 && !(t->flags & PC_TRANSFER_pending)) {
        return R(timeout_reserved_for_pending_transfer);
    }
    if (t->amount == 0 && !(t->flags & FLAG_BALANCING)) return R(amount_must_not_be_zero);
    if (t->ledger == 0) return R(ledger_must_not_be_zero);
    if (t->code == 0) return R(code_must_not_be_zero);
    return R(created);
}

/* A retry of an existing transfer. Zero accounts, amount or code in the event
 * mean "as stored" (a post or void may leave them to the pending transfer;
 * other transfers cannot have them zero), a balancing transfer's amount is a
 * bound rather than a value, and the linked bit is ignored because it
 * describes the batch, not the transfer. */
static uint32_t exists_result(const pc_transfer_t *t, const pc_transfer_t *e) {
    PC_ASSERT(t->id == e->id);
    PC_ASSERT(!(e->flags & PC_SLOT_FAILED));
    if ((t->flags & ~PC_TRANSFER_linked) != (e->flags & ~PC_TRANSFER_linked)) {
        return R(exists_with_different_flags);
    }
    if (t->debit_account_id != 0 && t->debit_account_id != e->debit_account_id) {
        return R(exists_with_different_debit_account_id);
    }
    if (t->credit_account_id != 0 && t->credit_account_id != e->credit_account_id) {
        return R(exists_with_different_credit_account_id);
    }
    if (!(t->flags & FLAG_BALANCING) && t->amount != 0 && t->amount != e->amount) {
        return R(exists_with_different_amount);
    }
    if (t->pending_id != e->pending_id) return R(exists_with_different_pending_id);
    if (t->user_data_128 != e->user_data_128) return R(exists_with_different_user_data_128);
    if (t->user_data_64 != e->user_data_64) return R(exists_with_different_user_data_64);
    if (t->user_data_32 != e->user_data_32) return R(exists_with_different_user_data_32);
    if (t->timeout != e->timeout) return R(exists_with_different_timeout);
    if (t->code != 0 && t->code != e->code) return R(exists_with_different_code);
    return R(exists);
}

/* The idempotency check. *pos receives the id's index position, which is
 * also where a new id is inserted: one probe sequence per event. */
static uint32_t id_check(const pc_ledger_t *ledger, const pc_transfer_t *t, uint64_t *pos) {
    *pos = pc__index_find(ledger, t->id);
    if (!pc__index_has(ledger, *pos, t->id)) return R(created);
    uint64_t ls = ledger->loc_status[*pos];
    PC_ASSERT(pc__ls_status(ls) != 0);
    if (pc__ls_status(ls) == PC__ST_FAILED || pc__ls_status(ls) == PC__ST_XTS_ABORTED) {
        return R(id_already_failed);
    }
    return exists_result(t, pc__record_get(ledger, t->id, ls));
}

/* Balancing transfers move at most what keeps the account within its
 * balance; an amount of 0 means "no upper bound". */
static pc_u128 balancing_amount(const pc_transfer_t *t, const pc_account_t *dr,
                                const pc_account_t *cr) {
    pc_u128 amount = t->amount;
    if (!(t->flags & FLAG_BALANCING)) return amount;
    PC_ASSERT(dr != cr);
    if (amount == 0) amount = PC_U128_MAX;
    if (t->flags & PC_TRANSFER_balancing_debit) {
        pc_u128 used = dr->debits_pending + dr->debits_posted;
        amount = PC_MIN(amount, dr->credits_posted > used ? dr->credits_posted - used : 0);
    }
    if (t->flags & PC_TRANSFER_balancing_credit) {
        pc_u128 used = cr->credits_pending + cr->credits_posted;
        amount = PC_MIN(amount, cr->debits_posted > used ? cr->debits_posted - used : 0);
    }
    return amount;
}

/* Keeps every balance, and each side's pending + posted sum, within u128. */
static uint32_t check_overflows(const pc_account_t *dr, const pc_account_t *cr, pc_u128 amount,
                                bool pending) {
    pc_u128 sum, dr_used, cr_used;
    PC_ASSERT(!pc_u128_add_overflows(dr->debits_pending, dr->debits_posted, &dr_used));
    PC_ASSERT(!pc_u128_add_overflows(cr->credits_pending, cr->credits_posted, &cr_used));
    if (pending) {
        if (pc_u128_add_overflows(dr->debits_pending, amount, &sum)) {
            return R(overflows_debits_pending);
        }
        if (pc_u128_add_overflows(cr->credits_pending, amount, &sum)) {
            return R(overflows_credits_pending);
        }
    }
    if (pc_u128_add_overflows(dr->debits_posted, amount, &sum)) return R(overflows_debits_posted);
    if (pc_u128_add_overflows(cr->credits_posted, amount, &sum)) {
        return R(overflows_credits_posted);
    }
    if (pc_u128_add_overflows(dr_used, amount, &sum)) return R(overflows_debits);
    if (pc_u128_add_overflows(cr_used, amount, &sum)) return R(overflows_credits);
    return R(created);
}

static uint32_t check_limits(const pc_account_t *dr, const pc_account_t *cr, pc_u128 amount) {
    PC_ASSERT(dr->debits_pending + dr->debits_posted + amount >= amount);
    PC_ASSERT(cr->credits_pending + cr->credits_posted + amount >= amount);
    if ((dr->flags & PC_ACCOUNT_debits_must_not_exceed_credits) &&
        dr->debits_pending + dr->debits_posted + amount > dr->credits_posted) {
        return R(exceeds_credits);
    }
    if ((cr->flags & PC_ACCOUNT_credits_must_not_exceed_debits) &&
        cr->credits_pending + cr->credits_posted + amount > cr->debits_posted) {
        return R(exceeds_debits);
    }
    return R(created);
}

/* Writes the record's slot, linked into both accounts' histories. */
static uint64_t record_commit(pc_ledger_t *ledger, const pc_transfer_t *record, uint32_t dr,
                              uint32_t cr) {
    PC_ASSERT(dr != cr);
    PC_ASSERT(record->timestamp != 0);
    uint64_t loc = pc__slot_append(ledger, record, ledger->heads[dr], ledger->heads[cr]);
    ledger->heads[dr] = loc + 1;
    ledger->heads[cr] = loc + 1;
    return loc;
}

static void single_commit(pc_ledger_t *ledger, const pc_transfer_t *t, uint64_t timestamp,
                          uint64_t pos, uint32_t dr, uint32_t cr, pc_u128 amount) {
    pc_account_t *d = &ledger->accounts[dr], *c = &ledger->accounts[cr];
    PC_ASSERT(d->ledger == t->ledger && c->ledger == t->ledger);
    if (ledger->undo_on) {
        pc__account_save(ledger, dr);
        pc__account_save(ledger, cr);
    }
    bool pending = t->flags & PC_TRANSFER_pending;
    if (pending) {
        d->debits_pending += amount;
        c->credits_pending += amount;
    } else {
        d->debits_posted += amount;
        c->credits_posted += amount;
    }
    pc_transfer_t record = *t;
    record.timestamp = timestamp;
    record.amount = amount;
    uint64_t loc = record_commit(ledger, &record, dr, cr);
    if (pending) {
        uint32_t index = pc__pending_add(ledger, &record, pos);
        pc__index_insert(ledger, pos, t->id, pc__ls_make(loc, index, PC__ST_PENDING));
    } else {
        pc__index_insert(ledger, pos, t->id, pc__ls_make(loc, 0, PC__ST_CREATED));
    }
}

/* Both accounts must live in buckets this unit owns; an account id of 0
 * (a post or void leaving it to the pending transfer) is not checked. A
 * transfer with one side in another unit is a cross-unit transfer, which
 * this unit cannot run alone: wrong_unit too. Not transient: the event
 * belongs elsewhere, so it leaves no tombstone here. */
static uint32_t check_routing(const pc_ledger_t *ledger, const pc_transfer_t *t) {
    PC_ASSERT(!ledger->routing_all);
    PC_ASSERT(!pc__transfer_result_transient(R(wrong_unit)));
    /* A clearing account id (reserved) is in no bucket: it is not found. */
    pc_u128 dr = t->debit_account_id, cr = t->credit_account_id;
    if (dr != 0 && !pc_account_id_is_reserved(dr) && !pc__routing_owns(ledger, dr)) {
        return R(wrong_unit);
    }
    if (cr != 0 && !pc_account_id_is_reserved(cr) && !pc__routing_owns(ledger, cr)) {
        return R(wrong_unit);
    }
    return R(created);
}

/* A single-phase or pending transfer. */
static uint32_t transfer_single(pc_ledger_t *ledger, const pc_transfer_t *t, uint64_t timestamp) {
    uint32_t result = pc__transfer_validate_single(t);
    if (result != R(created)) return result;
    if (!ledger->routing_all) {
        result = check_routing(ledger, t);
        if (result != R(created)) return result;
    }
    uint64_t pos = 0;
    result = id_check(ledger, t, &pos);
    if (result != R(created)) return result;

    /* Clearing accounts move only through xts legs: to users they do not
     * exist. */
    uint32_t dr = pc__account_find(ledger, t->debit_account_id, NULL);
    if (dr == PC__NONE || pc_account_id_is_reserved(t->debit_account_id)) {
        return R(debit_account_not_found);
    }
    uint32_t cr = pc__account_find(ledger, t->credit_account_id, NULL);
    if (cr == PC__NONE || pc_account_id_is_reserved(t->credit_account_id)) {
        return R(credit_account_not_found);
    }
    const pc_account_t *d = &ledger->accounts[dr], *c = &ledger->accounts[cr];
    if (d->ledger != c->ledger) return R(accounts_must_have_the_same_ledger);
    if (t->ledger != d->ledger) return R(transfer_must_have_the_same_ledger_as_accounts);

    bool pending = t->flags & PC_TRANSFER_pending;
    pc_u128 amount = balancing_amount(t, d, c);
    result = check_overflows(d, c, amount, pending);
    if (result != R(created)) return result;
    if (pending && timestamp > UINT64_MAX - (uint64_t)t->timeout * PC__NS_PER_S) {
        return R(overflows_timeout);
    }
    result = check_limits(d, c, amount);
    if (result != R(created)) return result;
    if (pc__store_full(ledger)) return R(transfers_full);
    if (pending && ledger->pending_count == ledger->config.pending_max) {
        return R(pending_transfers_full);
    }
    PC_ASSERT(amount == t->amount || (t->flags & FLAG_BALANCING));
    PC_ASSERT(t->amount == 0 || amount <= t->amount);
    single_commit(ledger, t, timestamp, pos, dr, cr, amount);
    return R(created);
}

/* A post or void against its pending record: each of debit, credit, ledger
 * and code is zero or equal (the first that differs is the result, else
 * created). */
static uint32_t pending_fields_compare(const pc_transfer_t *t, const pc_transfer_t *p) {
    if (t->debit_account_id != 0 && t->debit_account_id != p->debit_account_id) {
        return R(pending_transfer_has_different_debit_account_id);
    }
    if (t->credit_account_id != 0 && t->credit_account_id != p->credit_account_id) {
        return R(pending_transfer_has_different_credit_account_id);
    }
    if (t->ledger != 0 && t->ledger != p->ledger) return R(pending_transfer_has_different_ledger);
    if (t->code != 0 && t->code != p->code) return R(pending_transfer_has_different_code);
    return R(created);
}

/* Compares a post or void with its pending transfer; *amount receives what
 * the post moves (the whole pending amount for a void). */
static uint32_t pending_compare(const pc_transfer_t *t, const pc_transfer_t *p, pc_u128 *amount) {
    PC_ASSERT(p->flags & PC_TRANSFER_pending);
    PC_ASSERT(p->id == t->pending_id);
    uint32_t result = pending_fields_compare(t, p);
    if (result != R(created)) return result;
    if (t->flags & FLAG_POST) {
        *amount = t->amount != 0 ? t->amount : p->amount;
        if (*amount > p->amount) return R(exceeds_pending_transfer_amount);
    } else {
        if (t->amount != 0 && t->amount != p->amount) {
            return R(pending_transfer_has_different_amount);
        }
        *amount = p->amount;
    }
    return R(created);
}

static void post_void_commit(pc_ledger_t *ledger, const pc_transfer_t *t, uint64_t timestamp,
                             uint64_t pos, uint32_t pool_index, pc_u128 amount) {
    const pc_transfer_t p = ledger->pool[pool_index].transfer;
    uint32_t dr = pc__account_find(ledger, p.debit_account_id, NULL);
    uint32_t cr = pc__account_find(ledger, p.credit_account_id, NULL);
    PC_ASSERT(dr != PC__NONE && cr != PC__NONE);
    pc_account_t *d = &ledger->accounts[dr], *c = &ledger->accounts[cr];
    PC_ASSERT(d->debits_pending >= p.amount && c->credits_pending >= p.amount);
    if (ledger->undo_on) {
        pc__account_save(ledger, dr);
        pc__account_save(ledger, cr);
    }
    bool post = t->flags & FLAG_POST;
    d->debits_pending -= p.amount;
    c->credits_pending -= p.amount;
    if (post) {
        /* Cannot overflow: the pending amount it comes from was in the sum. */
        PC_ASSERT(d->debits_posted + amount >= amount && c->credits_posted + amount >= amount);
        d->debits_posted += amount;
        c->credits_posted += amount;
    }
    pc_transfer_t record = *t;
    record.timestamp = timestamp;
    record.debit_account_id = p.debit_account_id;
    record.credit_account_id = p.credit_account_id;
    record.ledger = p.ledger;
    record.code = p.code;
    record.amount = amount;
    uint64_t loc = record_commit(ledger, &record, dr, cr);
    pc__pending_resolve(ledger, pool_index, post ? PC__ST_POSTED : PC__ST_VOIDED);
    pc__index_insert(ledger, pos, t->id, pc__ls_make(loc, 0, PC__ST_CREATED));
}

/* Posts or voids a pending transfer. The pending's record comes from the
 * pool while unresolved; a resolved one is needed only to report the checks
 * that precede the status check, and prefetch has provided it. */
static uint32_t transfer_post_void(pc_ledger_t *ledger, const pc_transfer_t *t,
                                   uint64_t timestamp) {
    uint32_t result = validate_post_void(t);
    if (result != R(created)) return result;
    if (!ledger->routing_all) {
        result = check_routing(ledger, t);
        if (result != R(created)) return result;
    }
    uint64_t pos = 0;
    result = id_check(ledger, t, &pos);
    if (result != R(created)) return result;

    uint64_t pending_pos = pc__index_find(ledger, t->pending_id);
    if (!pc__index_has(ledger, pending_pos, t->pending_id)) return R(pending_transfer_not_found);
    uint64_t ls = ledger->loc_status[pending_pos];
    uint32_t status = pc__ls_status(ls);
    if (status == PC__ST_FAILED || status == PC__ST_XTS_ABORTED) {
        return R(pending_transfer_not_found);
    }
    if (status == PC__ST_CREATED) return R(pending_transfer_not_pending);
    /* An xts leg is resolved by xts_resolve only. */
    const pc_transfer_t *p = pc__record_get(ledger, t->pending_id, ls);
    if (pc__is_xts(p)) return R(pending_transfer_not_found);

    pc_u128 amount = 0;
    result = pending_compare(t, p, &amount);
    if (result != R(created)) return result;
    if (status == PC__ST_POSTED) return R(pending_transfer_already_posted);
    if (status == PC__ST_VOIDED) return R(pending_transfer_already_voided);
    if (status == PC__ST_EXPIRED) return R(pending_transfer_expired);
    PC_ASSERT(status == PC__ST_PENDING);
    const pc__pending_t *pending = &ledger->pool[pc__ls_pool(ls)];
    /* The batch expired everything due by its last event before it began. */
    PC_ASSERT(pending->transfer.timeout == 0 || pending->expires_at > timestamp);

    if (pc__store_full(ledger)) return R(transfers_full);
    post_void_commit(ledger, t, timestamp, pos, pc__ls_pool(ls), amount);
    return R(created);
}

uint32_t pc__transfer_create(pc_ledger_t *ledger, const pc_transfer_t *transfer,
                             uint64_t timestamp) {
    PC_ASSERT(timestamp != 0);
    PC_ASSERT(ledger->transfers_count <= ledger->config.transfers_max);
    uint32_t result = validate_common(transfer);
    if (result != R(created)) return result;
    if (transfer->flags & (FLAG_POST | FLAG_VOID)) {
        return transfer_post_void(ledger, transfer, timestamp);
    }
    return transfer_single(ledger, transfer, timestamp);
}

bool pc__transfer_result_transient(uint32_t result) {
    PC_STATIC_ASSERT(R(overflows_debits_pending) + 6 == R(overflows_timeout), "overflow codes");
    PC_ASSERT(result != R(created));
    switch (result) {
    case R(debit_account_not_found):
    case R(credit_account_not_found):
    case R(pending_transfer_not_found):
    case R(exceeds_credits):
    case R(exceeds_debits):
        return true;
    default:
        return result >= R(overflows_debits_pending) && result <= R(overflows_timeout);
    }
}

/* The tombstone keeps the id (and the event, for audits) without linking it
 * into any history. When the id index is full there is no room to remember
 * the failure: the event keeps its transient result and no tombstone. */
void pc__transfer_tombstone(pc_ledger_t *ledger, const pc_transfer_t *transfer,
                            uint64_t timestamp) {
    PC_ASSERT(!ledger->undo_on);
    uint64_t pos = pc__index_find(ledger, transfer->id);
    PC_ASSERT(!pc__index_has(ledger, pos, transfer->id));
    if (pc__store_full(ledger)) return;
    pc_transfer_t record = *transfer;
    record.timestamp = timestamp;
    record.flags |= PC_SLOT_FAILED;
    uint64_t loc = pc__slot_append(ledger, &record, 0, 0);
    pc__index_insert(ledger, pos, transfer->id, pc__ls_make(loc, 0, PC__ST_FAILED));
}

uint32_t pc__transfer_exists(const pc_transfer_t *t, const pc_transfer_t *e) {
    return exists_result(t, e);
}

uint32_t pc__transfer_check_overflows(const pc_account_t *dr, const pc_account_t *cr,
                                      pc_u128 amount, bool pending) {
    return check_overflows(dr, cr, amount, pending);
}

uint32_t pc__transfer_check_limits(const pc_account_t *dr, const pc_account_t *cr,
                                   pc_u128 amount) {
    return check_limits(dr, cr, amount);
}
