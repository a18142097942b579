/*
 * shadow.c — the shadow namespace of full-link stress testing: the check
 * that keeps a batch inside its request's namespace, and shadow_purge.
 *
 * Stress traffic runs on the production units beside real traffic, so the
 * ledger itself keeps the two apart: a shadow id has bit 127 set
 * (include/paycell.h), a request flagged shadow may name only shadow ids and
 * any other request only real ones. Cross-unit legs of shadow transfers use
 * the shadow clearing account. Real balances therefore never see a shadow
 * transfer, and a real account's history never links a shadow slot.
 *
 * shadow_purge removes the shadow namespace from memory in one step: shadow
 * pending legs, transfer index entries and accounts. The
 * store is append-only, so the shadow slots stay on disk, unreachable; the
 * slot count at the purge (shadow_purged_before, in snapshots) tells
 * recovery to skip them. The purge is O(index + accounts): an operator
 * action between stress tests, not a hot path.
 */
#include "ledger_int.h"

#include <string.h>

/* An id outside the batch's namespace. 0 and 2^128 - 1 are left to the
 * validators, which name them. */
static bool foreign(const pc_ledger_t *ledger, pc_u128 id) {
    if (id == 0 || id == PC_U128_MAX) return false;
    return (bool)pc_id_is_shadow(id) != ledger->shadow;
}

uint32_t pc__shadow_check(const pc_ledger_t *ledger, pc_operation_t operation,
                          const void *events, uint32_t i) {
    switch (operation) {
    case PC_OP_create_accounts: {
        const pc_account_t *a = &((const pc_account_t *)events)[i];
        return foreign(ledger, a->id) ? PC_ACCOUNT_RESULT_shadow_mismatch : 0;
    }
    case PC_OP_create_transfers:
    case PC_OP_xts_try: {
        const pc_transfer_t *t = &((const pc_transfer_t *)events)[i];
        bool mixed = foreign(ledger, t->id) || foreign(ledger, t->debit_account_id) ||
                     foreign(ledger, t->credit_account_id) || foreign(ledger, t->pending_id);
        return mixed ? PC_TRANSFER_RESULT_shadow_mismatch : 0;
    }
    case PC_OP_xts_resolve:
        return foreign(ledger, pc__decision_at(events, i).gtid)
                   ? PC_TRANSFER_RESULT_shadow_mismatch
                   : 0;
    case PC_OP_shadow_purge:
        /* Only a request that says it is shadow may purge. */
        return ledger->shadow ? 0 : PC_TRANSFER_RESULT_shadow_mismatch;
    default:
        return 0;
    }
}

/* ---- purge ---- */

/* Shadow pendings leave the pool (and the expiry heap, and the xts counts).
 * Their reserved amounts sit on shadow accounts only, which go next. */
static void purge_pending(pc_ledger_t *ledger) {
    for (uint32_t i = 0; i < ledger->pool_used; i++) {
        const pc_transfer_t *t = &ledger->pool[i].transfer;
        if (t->id == 0 || !pc_id_is_shadow(t->id)) continue;
        /* A leg's reserve stays used: the store must never get room back. */
        if (pc__is_xts(t)) ledger->xts_reserves_purged++;
        pc__pending_resolve(ledger, i, PC__ST_VOIDED);
    }
}

/* Empties position `hole` of the transfer index and closes the gap behind it
 * (linear probing's backward shift, Knuth's Algorithm R): an entry further
 * along the run moves into the hole unless its home lies cyclically in
 * (hole, j]. A moved pending keeps its pool entry pointing at it. */
static void index_delete(pc_ledger_t *ledger, uint64_t hole) {
    const uint64_t mask = ledger->index_mask;
    uint64_t j = hole;
    for (;;) {
        j = (j + 1) & mask;
        if (ledger->ids[j] == 0) break;
        uint64_t home = pc__hash_id(ledger->ids[j]) & mask;
        bool stays = hole < j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (stays) continue;
        ledger->ids[hole] = ledger->ids[j];
        ledger->loc_status[hole] = ledger->loc_status[j];
        if (pc__ls_status(ledger->loc_status[hole]) == PC__ST_PENDING) {
            ledger->pool[pc__ls_pool(ledger->loc_status[hole])].index_pos = hole;
        }
        hole = j;
    }
    ledger->ids[hole] = 0;
    ledger->loc_status[hole] = 0;
}

/* One pass; a position that received a shifted entry is looked at again.
 * An entry shifted into a position already passed comes from a position
 * already passed (the run wrapped around the table's end), so it is real. */
static void purge_index(pc_ledger_t *ledger) {
    uint64_t pos = 0;
    while (pos <= ledger->index_mask) {
        pc_u128 id = ledger->ids[pos];
        if (id == 0 || !pc_id_is_shadow(id)) {
            pos++;
            continue;
        }
        PC_ASSERT(pc__ls_status(ledger->loc_status[pos]) != PC__ST_PENDING);
        index_delete(ledger, pos);
        PC_ASSERT(ledger->transfers_count > 0);
        ledger->transfers_count--;
    }
}

/* Compacts the dense account array (heads move along) and rebuilds its
 * index and the derived per-bucket counts. */
static void purge_accounts(pc_ledger_t *ledger) {
    uint32_t kept = 0;
    for (uint32_t i = 0; i < ledger->accounts_count; i++) {
        if (pc_id_is_shadow(ledger->accounts[i].id)) continue;
        ledger->accounts[kept] = ledger->accounts[i];
        ledger->heads[kept] = ledger->heads[i];
        kept++;
    }
    ledger->accounts_count = kept;
    memset(ledger->account_index, 0, (ledger->account_index_mask + 1) * sizeof(uint32_t));
    memset(ledger->bucket_accounts, 0, sizeof(ledger->bucket_accounts));
    ledger->clearing_accounts = 0;
    for (uint32_t i = 0; i < kept; i++) {
        const pc_account_t *a = &ledger->accounts[i];
        uint64_t pos = 0;
        uint32_t found = pc__account_find(ledger, a->id, &pos);
        PC_ASSERT(found == PC__NONE);
        ledger->account_index[pos] = i + 1;
        pc__account_counted(ledger, a->id);
    }
}

uint32_t pc__shadow_purge(pc_ledger_t *ledger, const void *event) {
    PC_ASSERT(ledger->shadow && !ledger->undo_on);
    pc_u128 zero;
    memcpy(&zero, event, sizeof(zero));
    if (zero != 0) return PC_TRANSFER_RESULT_reserved_flag;
    purge_pending(ledger);
    purge_index(ledger);
    purge_accounts(ledger);
    ledger->shadow_purged_before = ledger->slots_count;
    return PC_TRANSFER_RESULT_created;
}
