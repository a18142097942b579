/*
 * tables.c — the ledger's bounded tables and their primitive operations: the
 * account table, the transfer id index, the pending pool with its expiry
 * heap, the slot buffer, the prefetch cache and the undo log.
 *
 * Every mutation that a linked chain may have to take back goes through a
 * function here that logs it when ledger->undo_on is set. Rollback replays
 * the log backwards. Because it is strictly last-in first-out, taking back an
 * insert into an open-addressing table is just clearing the entry: every
 * entry inserted after it has already been cleared, so the probe sequences
 * are exactly as they were before.
 */
#include "ledger_int.h"

#include <string.h>

/* ---- transfer index ---- */

void pc__index_insert(pc_ledger_t *ledger, uint64_t pos, pc_u128 id, uint64_t loc_status) {
    PC_ASSERT(ledger->ids[pos] == 0 && id != 0);
    PC_ASSERT(ledger->transfers_count < ledger->config.transfers_max);
    ledger->ids[pos] = id;
    ledger->loc_status[pos] = loc_status;
    ledger->transfers_count++;
    if (ledger->undo_on) pc__undo_push(ledger, PC__UNDO_INDEX_INSERT)->pos = pos;
}

void pc__index_set(pc_ledger_t *ledger, uint64_t pos, uint64_t loc_status) {
    PC_ASSERT(ledger->ids[pos] != 0);
    PC_ASSERT(pc__ls_status(loc_status) != 0);
    if (ledger->undo_on) {
        pc__undo_t *undo = pc__undo_push(ledger, PC__UNDO_INDEX_SET);
        undo->pos = pos;
        undo->value = ledger->loc_status[pos];
    }
    ledger->loc_status[pos] = loc_status;
}

/* ---- accounts ---- */

/* A clearing account (reserved id) belongs to the unit, not a bucket. */
void pc__account_counted(pc_ledger_t *ledger, pc_u128 id) {
    if (pc_account_id_is_reserved(id)) ledger->clearing_accounts++;
    else ledger->bucket_accounts[pc_bucket_of(id)]++;
}

void pc__account_insert(pc_ledger_t *ledger, uint64_t pos, const pc_account_t *account) {
    PC_ASSERT(ledger->account_index[pos] == 0);
    PC_ASSERT(ledger->accounts_count < ledger->config.accounts_max);
    uint32_t slot = ledger->accounts_count++;
    ledger->accounts[slot] = *account;
    ledger->heads[slot] = 0;
    ledger->account_index[pos] = slot + 1;
    pc__account_counted(ledger, account->id);
    if (ledger->undo_on) pc__undo_push(ledger, PC__UNDO_ACCOUNT_INSERT)->pos = pos;
}

void pc__account_save(pc_ledger_t *ledger, uint32_t slot) {
    PC_ASSERT(ledger->undo_on);
    PC_ASSERT(slot < ledger->accounts_count);
    const pc_account_t *account = &ledger->accounts[slot];
    pc__undo_t *undo = pc__undo_push(ledger, PC__UNDO_ACCOUNT_BALANCE);
    undo->index = slot;
    undo->value = ledger->heads[slot];
    undo->u.balances = (pc__balances_t){account->debits_pending, account->debits_posted,
                                        account->credits_pending, account->credits_posted};
}

/* ---- expiry heap ---- */

/* By expiry time, then by the transfer's timestamp (unique in a ledger):
 * pendings expiring in the same nanosecond expire in one order on every
 * replica, whatever shape the heap has (a heap rebuilt from a snapshot has
 * another). It mattered when an expiry entered an ordered list that was
 * state (`paycell sim --xts --seed 2981`); it costs one compare. */
static bool heap_less(const pc_ledger_t *ledger, uint32_t a, uint32_t b) {
    const pc__heap_entry_t *x = &ledger->heap[a], *y = &ledger->heap[b];
    if (x->expires_at != y->expires_at) return x->expires_at < y->expires_at;
    return x->timestamp < y->timestamp;
}

static void heap_swap(pc_ledger_t *ledger, uint32_t a, uint32_t b) {
    PC_ASSERT(a < ledger->heap_count && b < ledger->heap_count);
    pc__heap_entry_t tmp = ledger->heap[a];
    ledger->heap[a] = ledger->heap[b];
    ledger->heap[b] = tmp;
    ledger->pool[ledger->heap[a].pool_index].heap_pos = a;
    ledger->pool[ledger->heap[b].pool_index].heap_pos = b;
}

static void heap_sift_up(pc_ledger_t *ledger, uint32_t pos) {
    PC_ASSERT(pos < ledger->heap_count);
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (!heap_less(ledger, pos, parent)) break;
        heap_swap(ledger, pos, parent);
        pos = parent;
    }
}

static void heap_sift_down(pc_ledger_t *ledger, uint32_t pos) {
    PC_ASSERT(pos < ledger->heap_count);
    for (;;) {
        uint32_t left = 2 * pos + 1, right = left + 1, least = pos;
        if (left < ledger->heap_count && heap_less(ledger, left, least)) least = left;
        if (right < ledger->heap_count && heap_less(ledger, right, least)) least = right;
        if (least == pos) break;
        heap_swap(ledger, pos, least);
        pos = least;
    }
}

static void heap_insert(pc_ledger_t *ledger, uint32_t pool_index) {
    PC_ASSERT(ledger->heap_count < ledger->config.pending_max);
    PC_ASSERT(ledger->pool[pool_index].heap_pos == PC__NONE);
    const pc__pending_t *pending = &ledger->pool[pool_index];
    uint32_t pos = ledger->heap_count++;
    ledger->heap[pos] = (pc__heap_entry_t){pending->expires_at, pending->transfer.timestamp,
                                           pool_index, 0};
    ledger->pool[pool_index].heap_pos = pos;
    heap_sift_up(ledger, pos);
}

static void heap_remove(pc_ledger_t *ledger, uint32_t pool_index) {
    uint32_t pos = ledger->pool[pool_index].heap_pos;
    PC_ASSERT(pos < ledger->heap_count && ledger->heap[pos].pool_index == pool_index);
    uint32_t last = ledger->heap_count - 1;
    if (pos != last) heap_swap(ledger, pos, last);
    ledger->heap_count--;
    if (pos != last) {
        heap_sift_down(ledger, pos);
        heap_sift_up(ledger, pos);
    }
    ledger->pool[pool_index].heap_pos = PC__NONE;
}

/* ---- pending pool ---- */

/* Takes a pool entry: the free stack first, then never-used entries, so the
 * pool is touched only as far as it has ever been full. */
static uint32_t pool_take(pc_ledger_t *ledger) {
    PC_ASSERT(ledger->pending_count < ledger->config.pending_max);
    uint32_t index;
    if (ledger->pool_free_count > 0) {
        index = ledger->pool_free[--ledger->pool_free_count];
    } else {
        index = ledger->pool_used++;
    }
    PC_ASSERT(index < ledger->config.pending_max);
    ledger->pending_count++;
    return index;
}

static void pool_give(pc_ledger_t *ledger, uint32_t index) {
    PC_ASSERT(ledger->pending_count > 0 && index < ledger->pool_used);
    PC_ASSERT(ledger->pool_free_count < ledger->pool_used);
    ledger->pool[index].transfer.id = 0;
    ledger->pool_free[ledger->pool_free_count++] = index;
    ledger->pending_count--;
}

static void pending_link(pc_ledger_t *ledger, uint32_t index) {
    PC_ASSERT(ledger->pool[index].transfer.id != 0);
    ledger->pool[index].heap_pos = PC__NONE;
    /* A payee leg never expires on its own: it waits for the payer's
     * decision, whatever its timeout field says. */
    const pc_transfer_t *t = &ledger->pool[index].transfer;
    if (t->timeout != 0 && !pc__is_xts(t)) heap_insert(ledger, index);
}

uint32_t pc__pending_add(pc_ledger_t *ledger, const pc_transfer_t *transfer, uint64_t index_pos) {
    PC_ASSERT(transfer->flags & PC_TRANSFER_pending);
    PC_ASSERT(transfer->timestamp != 0);
    uint32_t index = pool_take(ledger);
    pc__pending_t *pending = &ledger->pool[index];
    pending->transfer = *transfer;
    pending->expires_at = transfer->timestamp + (uint64_t)transfer->timeout * PC__NS_PER_S;
    pending->index_pos = index_pos;
    pending->wanted_epoch = 0;
    pending_link(ledger, index);
    if (pc__is_xts(transfer)) ledger->xts_legs_open++;
    if (ledger->undo_on) pc__undo_push(ledger, PC__UNDO_PENDING_ADD)->index = index;
    return index;
}

/* A resolved pending leaves the pool, but a later event of the batch being
 * prefetched may still compare against it (a retry, or a second post): when
 * prefetch marked it for this apply, its record moves to the prefetch cache. */
void pc__pending_resolve(pc_ledger_t *ledger, uint32_t pool_index, uint32_t status) {
    pc__pending_t *pending = &ledger->pool[pool_index];
    uint64_t ls = ledger->loc_status[pending->index_pos];
    PC_ASSERT(pc__ls_status(ls) == PC__ST_PENDING && pc__ls_pool(ls) == pool_index);
    PC_ASSERT(status == PC__ST_POSTED || status == PC__ST_VOIDED || status == PC__ST_EXPIRED);
    uint64_t loc = pc__ls_loc(ls);
    pc__index_set(ledger, pending->index_pos, pc__ls_make(loc, 0, status));
    if (pending->wanted_epoch == ledger->epoch) pc__cache_put(ledger, loc, &pending->transfer);
    if (ledger->undo_on) {
        pc__undo_t *undo = pc__undo_push(ledger, PC__UNDO_PENDING_REMOVE);
        undo->index = pool_index;
        undo->u.pending = *pending;
    }
    if (pending->heap_pos != PC__NONE) heap_remove(ledger, pool_index);
    if (pc__is_xts(&pending->transfer)) {
        PC_ASSERT(ledger->xts_legs_open > 0);
        ledger->xts_legs_open--;
    }
    pool_give(ledger, pool_index);
}

/* Expiry runs outside any chain and is never rolled back: it releases the
 * reserved amounts and marks the id EXPIRED; no slot is written, because
 * recovery derives expiry from the snapshot's pending set. */
uint32_t pc__expire_until(pc_ledger_t *ledger, uint64_t timestamp) {
    PC_ASSERT(!ledger->undo_on);
    uint32_t expired = 0;
    while (ledger->heap_count > 0) {
        if (ledger->heap[0].expires_at > timestamp) break;
        uint32_t index = ledger->heap[0].pool_index;
        const pc_transfer_t *t = &ledger->pool[index].transfer;
        pc_u128 dr_id, cr_id;
        pc__slot_accounts(t, &dr_id, &cr_id);
        uint32_t dr = pc__account_find(ledger, dr_id, NULL);
        uint32_t cr = pc__account_find(ledger, cr_id, NULL);
        PC_ASSERT(dr != PC__NONE && cr != PC__NONE);
        PC_ASSERT(ledger->accounts[dr].debits_pending >= t->amount);
        PC_ASSERT(ledger->accounts[cr].credits_pending >= t->amount);
        ledger->accounts[dr].debits_pending -= t->amount;
        ledger->accounts[cr].credits_pending -= t->amount;
        PC_ASSERT(!pc__is_xts(t)); /* a payee leg never expires, a payer has no leg */
        pc__pending_resolve(ledger, index, PC__ST_EXPIRED);
        expired++;
    }
    return expired;
}

/* ---- prefetch cache ---- */

#define CACHE_MASK (PC__CACHE_CAP - 1)
#define CACHE_FILLED (1ull << 63)

static uint32_t cache_find(const pc_ledger_t *ledger, uint64_t loc) {
    uint32_t pos = (uint32_t)(pc__mix64(loc) & CACHE_MASK);
    for (;;) {
        uint64_t key = ledger->cache_keys[pos];
        if (key == 0 || (key & ~CACHE_FILLED) == loc + 1) return pos;
        pos = (pos + 1) & CACHE_MASK;
    }
}

static void cache_claim(pc_ledger_t *ledger, uint32_t pos, uint64_t key) {
    PC_ASSERT(ledger->cache_keys[pos] == 0);
    PC_ASSERT(ledger->cache_used_count < PC__CACHE_CAP / 2);
    ledger->cache_keys[pos] = key;
    ledger->cache_used[ledger->cache_used_count++] = pos;
}

/* Prefetch registers each loc it lists, which also deduplicates the list. */
bool pc__cache_request(pc_ledger_t *ledger, uint64_t loc) {
    PC_ASSERT(loc < ledger->slots_count);
    uint32_t pos = cache_find(ledger, loc);
    if (ledger->cache_keys[pos] != 0) return false;
    cache_claim(ledger, pos, loc + 1);
    return true;
}

void pc__cache_put(pc_ledger_t *ledger, uint64_t loc, const pc_transfer_t *transfer) {
    PC_ASSERT(loc < ledger->slots_count);
    PC_ASSERT(transfer->id != 0);
    uint32_t pos = cache_find(ledger, loc);
    if (ledger->cache_keys[pos] == 0) cache_claim(ledger, pos, loc + 1);
    ledger->cache_keys[pos] = (loc + 1) | CACHE_FILLED;
    ledger->cache_records[pos] = *transfer;
}

const pc_transfer_t *pc__cache_get(const pc_ledger_t *ledger, uint64_t loc) {
    uint32_t pos = cache_find(ledger, loc);
    if (!(ledger->cache_keys[pos] & CACHE_FILLED)) return NULL;
    return &ledger->cache_records[pos];
}

void pc__cache_clear(pc_ledger_t *ledger) {
    PC_ASSERT(ledger->cache_used_count <= PC__CACHE_CAP / 2);
    for (uint32_t i = 0; i < ledger->cache_used_count; i++) {
        ledger->cache_keys[ledger->cache_used[i]] = 0;
    }
    ledger->cache_used_count = 0;
}

/* ---- slots and records ---- */

uint64_t pc__slot_append(pc_ledger_t *ledger, const pc_transfer_t *transfer, uint64_t prev_debit,
                         uint64_t prev_credit) {
    PC_ASSERT(ledger->slots_n < PC__SLOTS_CAP);
    PC_ASSERT(ledger->slots_count < ledger->config.transfers_max);
    pc_transfer_slot_t *slot = &ledger->slots[ledger->slots_n++];
    slot->transfer = *transfer;
    slot->prev_debit = prev_debit;
    slot->prev_credit = prev_credit;
    slot->checksum = 0;
    return ledger->slots_count++;
}

const pc_transfer_t *pc__record_get(const pc_ledger_t *ledger, pc_u128 id, uint64_t loc_status) {
    uint32_t status = pc__ls_status(loc_status);
    PC_ASSERT(status != 0 && status != PC__ST_FAILED);
    const pc_transfer_t *record;
    uint64_t loc = pc__ls_loc(loc_status);
    if (status == PC__ST_PENDING) {
        record = &ledger->pool[pc__ls_pool(loc_status)].transfer;
    } else if (loc >= pc__slots_first_loc(ledger)) {
        record = &ledger->slots[loc - pc__slots_first_loc(ledger)].transfer;
    } else {
        record = pc__cache_get(ledger, loc);
    }
    /* A record the caller did not hand over means prefetch and apply disagree. */
    PC_ASSERT(record != NULL);
    PC_ASSERT(record->id == id);
    return record;
}

/* ---- undo log ---- */

pc__undo_t *pc__undo_push(pc_ledger_t *ledger, uint32_t kind) {
    PC_ASSERT(ledger->undo_on);
    PC_ASSERT(ledger->undo_count < PC__UNDO_CAP);
    pc__undo_t *undo = &ledger->undo[ledger->undo_count++];
    undo->kind = kind;
    return undo;
}

void pc__chain_begin(pc_ledger_t *ledger) {
    PC_ASSERT(!ledger->undo_on);
    ledger->undo_count = 0;
    ledger->chain_slots_n = ledger->slots_n;
    ledger->chain_slots_count = ledger->slots_count;
}

static void undo_pending_remove(pc_ledger_t *ledger, const pc__undo_t *undo) {
    /* Last in, first out: the entry freed by this resolve is on top again. */
    PC_ASSERT(ledger->pool_free_count > 0);
    PC_ASSERT(ledger->pool_free[ledger->pool_free_count - 1] == undo->index);
    ledger->pool_free_count--;
    ledger->pending_count++;
    ledger->pool[undo->index] = undo->u.pending;
    pending_link(ledger, undo->index);
}

static void undo_one(pc_ledger_t *ledger, const pc__undo_t *undo) {
    switch (undo->kind) {
    case PC__UNDO_ACCOUNT_INSERT: {
        PC_ASSERT(ledger->account_index[undo->pos] == ledger->accounts_count);
        ledger->account_index[undo->pos] = 0;
        ledger->accounts_count--;
        /* Clearing accounts are created outside chains only. */
        PC_ASSERT(!pc_account_id_is_reserved(ledger->accounts[ledger->accounts_count].id));
        uint32_t bucket = pc_bucket_of(ledger->accounts[ledger->accounts_count].id);
        PC_ASSERT(ledger->bucket_accounts[bucket] > 0);
        ledger->bucket_accounts[bucket]--;
        memset(&ledger->accounts[ledger->accounts_count], 0, sizeof(pc_account_t));
        break;
    }
    case PC__UNDO_ACCOUNT_BALANCE: {
        pc_account_t *account = &ledger->accounts[undo->index];
        account->debits_pending = undo->u.balances.debits_pending;
        account->debits_posted = undo->u.balances.debits_posted;
        account->credits_pending = undo->u.balances.credits_pending;
        account->credits_posted = undo->u.balances.credits_posted;
        ledger->heads[undo->index] = undo->value;
        break;
    }
    case PC__UNDO_INDEX_INSERT:
        ledger->ids[undo->pos] = 0;
        ledger->loc_status[undo->pos] = 0;
        ledger->transfers_count--;
        break;
    case PC__UNDO_INDEX_SET:
        ledger->loc_status[undo->pos] = undo->value;
        break;
    case PC__UNDO_PENDING_ADD:
        if (ledger->pool[undo->index].heap_pos != PC__NONE) heap_remove(ledger, undo->index);
        pool_give(ledger, undo->index);
        break;
    case PC__UNDO_PENDING_REMOVE:
        undo_pending_remove(ledger, undo);
        break;
    default:
        PC_ASSERT(!"unknown undo kind");
    }
}

/* Takes back everything the chain did, newest first, including its slots
 * (and so any tombstone it wrote). */
void pc__chain_rollback(pc_ledger_t *ledger) {
    PC_ASSERT(ledger->slots_n >= ledger->chain_slots_n);
    PC_ASSERT(ledger->slots_count - ledger->slots_n ==
              ledger->chain_slots_count - ledger->chain_slots_n);
    bool undo_on = ledger->undo_on;
    ledger->undo_on = false;
    while (ledger->undo_count > 0)
        undo_one(ledger, &ledger->undo[--ledger->undo_count]);
    ledger->undo_on = undo_on;
    ledger->slots_n = ledger->chain_slots_n;
    ledger->slots_count = ledger->chain_slots_count;
}
