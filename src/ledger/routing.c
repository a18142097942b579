/*
 * routing.c — the unit's share of the routing table: which of the
 * PC_BUCKETS buckets this unit owns, at which epoch, and the set_routing
 * operation that changes it.
 *
 * Accounts are sharded by bucket = id mod 100; the global zone decides which
 * unit owns each bucket and tells every unit its set with an epoch that only
 * grows. The unit keeps its set as replicated state (it goes through the
 * log like any create, so every replica agrees on the exact event after
 * which the set changed) and refuses accounts and transfers of buckets it
 * does not own with `wrong_unit`. Giving up a bucket that still holds
 * accounts is refused (`bucket_not_empty`): moving accounts between units is
 * live migration, a later step. A fresh ledger owns every bucket at epoch 0,
 * so a single unit behaves exactly as before routing existed.
 */
#include "ledger_int.h"

#include <string.h>

#define R(name) PC_ROUTING_RESULT_##name

void pc__routing_install(pc_ledger_t *ledger, uint64_t epoch, const uint64_t owned[2]) {
    PC_ASSERT((owned[1] & ~PC__ROUTING_HIGH_MASK) == 0);
    PC_ASSERT(epoch >= ledger->routing_epoch || ledger->accounts_count == 0);
    ledger->routing_epoch = epoch;
    ledger->routing_owned[0] = owned[0];
    ledger->routing_owned[1] = owned[1];
    ledger->routing_all = owned[0] == PC__ROUTING_LOW_MASK && owned[1] == PC__ROUTING_HIGH_MASK;
}

static bool reserved_zero(const pc_routing_t *routing) {
    static const uint8_t zero[sizeof(routing->reserved)] = {0};
    if ((routing->buckets[1] & ~PC__ROUTING_HIGH_MASK) != 0) return false;
    return memcmp(routing->reserved, zero, sizeof(zero)) == 0;
}

/* The checks run stateless first, then against the epoch, then against the
 * accounts; nothing changes unless all pass. The result is a pure function
 * of the record and the state, so every replica answers alike. */
uint32_t pc__routing_set(pc_ledger_t *ledger, const pc_routing_t *routing) {
    PC_ASSERT(routing != NULL);
    PC_ASSERT(!ledger->undo_on);
    if (!reserved_zero(routing)) return R(reserved_field);
    if (routing->epoch < ledger->routing_epoch) return R(routing_epoch_stale);
    bool same = routing->buckets[0] == ledger->routing_owned[0] &&
                routing->buckets[1] == ledger->routing_owned[1];
    if (routing->epoch == ledger->routing_epoch) {
        return same ? R(exists) : R(routing_epoch_conflict);
    }
    for (uint32_t bucket = 0; bucket < PC_BUCKETS; bucket++) {
        bool given_up = pc__routing_has(ledger->routing_owned, bucket) &&
                        !pc__routing_has(routing->buckets, bucket);
        if (given_up && ledger->bucket_accounts[bucket] != 0) return R(bucket_not_empty);
    }
    pc__routing_install(ledger, routing->epoch, routing->buckets);
    return R(created);
}

void pc_ledger_routing(const pc_ledger_t *ledger, pc_routing_t *out) {
    PC_ASSERT(out != NULL);
    PC_ASSERT((ledger->routing_owned[1] & ~PC__ROUTING_HIGH_MASK) == 0);
    memset(out, 0, sizeof(*out));
    out->epoch = ledger->routing_epoch;
    out->buckets[0] = ledger->routing_owned[0];
    out->buckets[1] = ledger->routing_owned[1];
}

uint64_t pc_ledger_routing_epoch(const pc_ledger_t *ledger) {
    PC_ASSERT(ledger != NULL);
    return ledger->routing_epoch;
}

uint32_t pc_ledger_bucket_accounts(const pc_ledger_t *ledger, uint32_t bucket) {
    PC_ASSERT(bucket < PC_BUCKETS);
    PC_ASSERT(ledger->bucket_accounts[bucket] <= ledger->accounts_count);
    return ledger->bucket_accounts[bucket];
}
