/*
 * accounts.c — create_accounts, one event at a time.
 *
 * The checks run in TigerBeetle's order and the first failing one decides the
 * result; nothing is changed until every check has passed, so a rejected
 * event needs no rollback of its own (a linked chain rolls back the events
 * before it through the undo log).
 */
#include "ledger_int.h"

/* Stateless checks: they look at the event only. */
static uint32_t account_validate(const pc_account_t *a) {
    const uint16_t limits =
        PC_ACCOUNT_debits_must_not_exceed_credits | PC_ACCOUNT_credits_must_not_exceed_debits;
    if (a->timestamp != 0) return PC_ACCOUNT_RESULT_timestamp_must_be_zero;
    if (a->reserved != 0) return PC_ACCOUNT_RESULT_reserved_field;
    if (a->flags & ~PC_ACCOUNT_FLAGS_KNOWN) return PC_ACCOUNT_RESULT_reserved_flag;
    if (a->id == 0) return PC_ACCOUNT_RESULT_id_must_not_be_zero;
    if (a->id == PC_U128_MAX) return PC_ACCOUNT_RESULT_id_must_not_be_int_max;
    /* Reserved for the clearing accounts of cross-unit transfers. */
    if (pc_account_id_is_reserved(a->id)) return PC_ACCOUNT_RESULT_id_reserved;
    if ((a->flags & limits) == limits) return PC_ACCOUNT_RESULT_flags_are_mutually_exclusive;
    if (a->debits_pending != 0) return PC_ACCOUNT_RESULT_debits_pending_must_be_zero;
    if (a->debits_posted != 0) return PC_ACCOUNT_RESULT_debits_posted_must_be_zero;
    if (a->credits_pending != 0) return PC_ACCOUNT_RESULT_credits_pending_must_be_zero;
    if (a->credits_posted != 0) return PC_ACCOUNT_RESULT_credits_posted_must_be_zero;
    if (a->ledger == 0) return PC_ACCOUNT_RESULT_ledger_must_not_be_zero;
    if (a->code == 0) return PC_ACCOUNT_RESULT_code_must_not_be_zero;
    return PC_ACCOUNT_RESULT_created;
}

/* A retry of an existing account. The linked bit is ignored: it describes how
 * the event was batched, not the account, and a retry may be batched
 * differently. */
static uint32_t account_exists(const pc_account_t *a, const pc_account_t *e) {
    PC_ASSERT(a->id == e->id);
    PC_ASSERT(e->timestamp != 0);
    if ((a->flags & ~PC_ACCOUNT_linked) != (e->flags & ~PC_ACCOUNT_linked)) {
        return PC_ACCOUNT_RESULT_exists_with_different_flags;
    }
    if (a->user_data_128 != e->user_data_128) {
        return PC_ACCOUNT_RESULT_exists_with_different_user_data_128;
    }
    if (a->user_data_64 != e->user_data_64) {
        return PC_ACCOUNT_RESULT_exists_with_different_user_data_64;
    }
    if (a->user_data_32 != e->user_data_32) {
        return PC_ACCOUNT_RESULT_exists_with_different_user_data_32;
    }
    if (a->ledger != e->ledger) return PC_ACCOUNT_RESULT_exists_with_different_ledger;
    if (a->code != e->code) return PC_ACCOUNT_RESULT_exists_with_different_code;
    return PC_ACCOUNT_RESULT_exists;
}

uint32_t pc__account_create(pc_ledger_t *ledger, const pc_account_t *account, uint64_t timestamp) {
    PC_ASSERT(timestamp != 0);
    PC_ASSERT(ledger->accounts_count <= ledger->config.accounts_max);
    uint32_t result = account_validate(account);
    if (result != PC_ACCOUNT_RESULT_created) return result;
    /* After the stateless checks, which any unit answers alike; before the
     * lookup, which only the owning unit can answer. */
    if (!ledger->routing_all && !pc__routing_owns(ledger, account->id)) {
        return PC_ACCOUNT_RESULT_wrong_unit;
    }

    uint64_t pos = 0;
    uint32_t slot = pc__account_find(ledger, account->id, &pos);
    if (slot != PC__NONE) return account_exists(account, &ledger->accounts[slot]);
    if (ledger->accounts_count == ledger->config.accounts_max) {
        return PC_ACCOUNT_RESULT_accounts_full;
    }
    pc_account_t stored = *account;
    stored.timestamp = timestamp;
    pc__account_insert(ledger, pos, &stored);
    return PC_ACCOUNT_RESULT_created;
}
