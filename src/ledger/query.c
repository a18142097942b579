/*
 * query.c — the ledger's read side: account lookups, transfer locations,
 * per-account history walks, per-ledger totals and the state checksum.
 *
 * None of these change state and none run on the apply path. History lives
 * in the stored slots as two singly linked lists per slot (one through the
 * debit account's transfers, one through the credit account's), newest
 * first from the account's head, so a walk reads slots through the caller's
 * reader and never needs an index of its own.
 */
#include "ledger_int.h"

#include <string.h>

uint32_t pc_ledger_lookup_accounts(const pc_ledger_t *ledger, const pc_u128 *ids, uint32_t count,
                                   pc_account_t *out) {
    PC_ASSERT(ids != NULL || count == 0);
    PC_ASSERT(out != NULL || count == 0);
    uint32_t n = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t slot = pc__account_find(ledger, ids[i], NULL);
        if (slot != PC__NONE) out[n++] = ledger->accounts[slot];
    }
    return n;
}

int pc_ledger_transfer_loc(const pc_ledger_t *ledger, pc_u128 id, uint64_t *loc,
                           const pc_transfer_t **unflushed) {
    PC_ASSERT(loc != NULL && unflushed != NULL);
    *unflushed = NULL;
    if (id == 0 || id == PC_U128_MAX) return PC_ENOTFOUND;
    uint64_t pos = pc__index_find(ledger, id);
    if (!pc__index_has(ledger, pos, id)) return PC_ENOTFOUND;
    uint64_t ls = ledger->loc_status[pos];
    if (pc__ls_status(ls) == PC__ST_FAILED || pc__ls_status(ls) == PC__ST_XTS_ABORTED) {
        return PC_ENOTFOUND;
    }
    *loc = pc__ls_loc(ls);
    PC_ASSERT(*loc < ledger->slots_count);
    if (*loc >= pc__slots_first_loc(ledger)) {
        *unflushed = &ledger->slots[*loc - pc__slots_first_loc(ledger)].transfer;
    }
    return PC_OK;
}

/* ---- history ---- */

static bool filter_valid(const pc_account_filter_t *f) {
    static const uint8_t zero[sizeof(f->reserved)] = {0};
    const uint32_t known = PC_FILTER_DEBITS | PC_FILTER_CREDITS | PC_FILTER_REVERSED;
    if (memcmp(f->reserved, zero, sizeof(zero)) != 0) return false;
    if (f->account_id == 0 || f->account_id == PC_U128_MAX) return false;
    if (f->limit == 0 || f->limit > PC_BATCH_EVENTS_MAX) return false;
    if (f->flags & ~known) return false;
    if (!(f->flags & (PC_FILTER_DEBITS | PC_FILTER_CREDITS))) return false;
    return f->timestamp_max == 0 || f->timestamp_min <= f->timestamp_max;
}

static int slot_read(const pc_ledger_t *ledger, pc_slot_reader_t reader, void *ctx, uint64_t loc,
                     pc_transfer_slot_t *out) {
    PC_ASSERT(loc < ledger->slots_count);
    if (loc >= pc__slots_first_loc(ledger)) {
        *out = ledger->slots[loc - pc__slots_first_loc(ledger)];
        return PC_OK;
    }
    PC_ASSERT(reader != NULL);
    return reader(ctx, loc, out);
}

static void reverse(pc_transfer_t *a, uint32_t n) {
    for (uint32_t i = 0; i < n / 2; i++) {
        pc_transfer_t tmp = a[i];
        a[i] = a[n - 1 - i];
        a[n - 1 - i] = tmp;
    }
}

/* A backward walk that keeps the oldest `limit` matches writes match k (k = 0
 * newest) at out[k % limit], so the array ends up holding the last `limit`
 * writes. Write seen - limit sits at seen % limit and the writes run on
 * cyclically from there, newest to oldest; reversing the two runs on either
 * side of that split puts the oldest first. */
static uint32_t ring_finish(pc_transfer_t *out, uint32_t limit, uint64_t seen) {
    PC_ASSERT(limit > 0);
    if (seen <= limit) {
        reverse(out, (uint32_t)seen);
        return (uint32_t)seen;
    }
    uint32_t split = (uint32_t)(seen % limit);
    PC_ASSERT(split < limit);
    reverse(out, split);
    reverse(out + split, limit - split);
    return limit;
}

/* Walks the account's chain newest first. Each step must move to a strictly
 * older loc on the same account: anything else is corruption, and it also
 * bounds the walk. */
static int history_walk(const pc_ledger_t *ledger, const pc_account_filter_t *f, uint64_t head,
                        pc_slot_reader_t reader, void *ctx, pc_transfer_t *out) {
    bool reversed = f->flags & PC_FILTER_REVERSED;
    uint64_t seen = 0, next = head;
    while (next != 0) {
        uint64_t loc = next - 1;
        if (loc >= ledger->slots_count) return PC_CORRUPT("history link past the store");
        pc_transfer_slot_t slot;
        int rc = slot_read(ledger, reader, ctx, loc, &slot);
        if (rc != PC_OK) return rc;
        pc_transfer_t *t = &slot.transfer;
        pc_u128 dr, cr; /* an xts slot's local accounts (see pc__slot_accounts) */
        pc__slot_accounts(t, &dr, &cr);
        bool debit = dr == f->account_id, credit = cr == f->account_id;
        if ((t->flags & PC_SLOT_FAILED) || debit == credit) {
            return PC_CORRUPT("history slot not of this account");
        }
        next = debit ? slot.prev_debit : slot.prev_credit;
        if (next > loc) return PC_CORRUPT("history link not backward");
        if (f->timestamp_max != 0 && t->timestamp > f->timestamp_max) continue;
        if (f->timestamp_min != 0 && t->timestamp < f->timestamp_min) break;
        pc_ledger_transfer_public(t);
        if (!((debit && (f->flags & PC_FILTER_DEBITS)) ||
              (credit && (f->flags & PC_FILTER_CREDITS)))) {
            continue;
        }
        if (reversed) {
            out[seen++] = *t;
            if (seen == f->limit) break;
        } else {
            out[seen % f->limit] = *t;
            seen++;
        }
    }
    PC_ASSERT(!reversed || seen <= f->limit);
    return reversed ? (int)seen : (int)ring_finish(out, f->limit, seen);
}

int pc_ledger_get_account_transfers(const pc_ledger_t *ledger, const pc_account_filter_t *filter,
                                    pc_slot_reader_t reader, void *reader_ctx, pc_transfer_t *out) {
    PC_ASSERT(filter != NULL && out != NULL);
    PC_ASSERT(!ledger->undo_on);
    if (!filter_valid(filter)) return PC_EINVAL;
    uint32_t slot = pc__account_find(ledger, filter->account_id, NULL);
    if (slot == PC__NONE) return 0;
    return history_walk(ledger, filter, ledger->heads[slot], reader, reader_ctx, out);
}

/* ---- totals ---- */

/* Not hot and must not allocate: one pass per distinct ledger, each summing
 * its ledger and finding the next larger ledger id. */
uint32_t pc_ledger_totals(const pc_ledger_t *ledger, pc_ledger_totals_t *out, uint32_t cap) {
    PC_ASSERT(out != NULL || cap == 0);
    uint32_t ledgers = 0;
    uint64_t current = 0; /* 0 is never a ledger: start below every ledger id */
    for (;;) {
        uint64_t next = UINT64_MAX;
        pc_ledger_totals_t sum = {0};
        for (uint32_t i = 0; i < ledger->accounts_count; i++) {
            const pc_account_t *a = &ledger->accounts[i];
            if (a->ledger == current) {
                sum.debits_pending += a->debits_pending;
                sum.debits_posted += a->debits_posted;
                sum.credits_pending += a->credits_pending;
                sum.credits_posted += a->credits_posted;
            } else if (a->ledger > current && a->ledger < next) {
                next = a->ledger;
            }
        }
        if (current != 0) {
            sum.ledger = (uint32_t)current;
            if (ledgers < cap) out[ledgers] = sum;
            ledgers++;
        }
        if (next == UINT64_MAX) break;
        current = next;
    }
    PC_ASSERT(ledgers <= ledger->accounts_count);
    return ledgers;
}

/* ---- state checksum ---- */

/* Order-independent parts (the id index, the pending set) are sums of
 * per-entry hashes, so two ledgers holding the same entries in different
 * table positions agree. Pool positions are not state and are masked out. */
static pc_u128 index_digest(const pc_ledger_t *ledger) {
    pc_u128 sum = 0;
    uint64_t entries = 0;
    for (uint64_t pos = 0; pos <= ledger->index_mask; pos++) {
        if (ledger->ids[pos] == 0) continue;
        struct {
            pc_u128 id;
            uint64_t loc;
            uint64_t status;
        } e = {ledger->ids[pos], pc__ls_loc(ledger->loc_status[pos]),
               pc__ls_status(ledger->loc_status[pos])};
        sum += pc_checksum(&e, sizeof(e), 11);
        entries++;
    }
    PC_ASSERT(entries == ledger->transfers_count);
    return sum;
}

static pc_u128 pending_digest(const pc_ledger_t *ledger) {
    pc_u128 sum = 0;
    uint32_t entries = 0;
    for (uint32_t i = 0; i < ledger->pool_used; i++) {
        const pc__pending_t *p = &ledger->pool[i];
        if (p->transfer.id == 0) continue;
        struct {
            pc_transfer_t transfer;
            uint64_t expires_at;
            uint64_t loc;
        } e;
        memset(&e, 0, sizeof(e));
        e.transfer = p->transfer;
        e.expires_at = p->transfer.timeout != 0 ? p->expires_at : 0;
        e.loc = pc__ls_loc(ledger->loc_status[p->index_pos]);
        sum += pc_checksum(&e, sizeof(e), 12);
        entries++;
    }
    PC_ASSERT(entries == ledger->pending_count);
    return sum;
}

pc_u128 pc_ledger_state_checksum(const pc_ledger_t *ledger) {
    PC_ASSERT(!ledger->undo_on);
    struct {
        pc_u128 accounts, heads, index, pending;
        uint64_t accounts_count, transfers_count, pending_count, slots_count, timestamp_last;
        uint64_t routing_epoch, routing_owned[2];
        uint64_t shadow_purged_before, xts_reserves_purged;
    } s;
    memset(&s, 0, sizeof(s));
    s.accounts = pc_checksum(ledger->accounts, ledger->accounts_count * sizeof(pc_account_t), 13);
    s.heads = pc_checksum(ledger->heads, ledger->accounts_count * sizeof(uint64_t), 14);
    s.index = index_digest(ledger);
    s.pending = pending_digest(ledger);
    s.accounts_count = ledger->accounts_count;
    s.transfers_count = ledger->transfers_count;
    s.pending_count = ledger->pending_count;
    s.slots_count = ledger->slots_count;
    s.timestamp_last = ledger->timestamp_last;
    s.routing_epoch = ledger->routing_epoch;
    s.routing_owned[0] = ledger->routing_owned[0];
    s.routing_owned[1] = ledger->routing_owned[1];
    s.shadow_purged_before = ledger->shadow_purged_before;
    s.xts_reserves_purged = ledger->xts_reserves_purged;
    return pc_checksum(&s, sizeof(s), 15);
}

/* ---- one namespace ---- */

static bool in_namespace(pc_u128 id, bool shadow) {
    return (bool)pc_id_is_shadow(id) == shadow;
}

void pc_ledger_namespace_counts(const pc_ledger_t *ledger, bool shadow, uint64_t *accounts,
                                uint64_t *transfers) {
    PC_ASSERT(accounts != NULL && transfers != NULL);
    *accounts = 0;
    *transfers = 0;
    for (uint32_t i = 0; i < ledger->accounts_count; i++) {
        if (in_namespace(ledger->accounts[i].id, shadow)) (*accounts)++;
    }
    for (uint64_t pos = 0; pos <= ledger->index_mask; pos++) {
        if (ledger->ids[pos] != 0 && in_namespace(ledger->ids[pos], shadow)) (*transfers)++;
    }
}

/* The stored record of an index entry, wherever it lives now. */
static int entry_record(const pc_ledger_t *ledger, uint64_t ls, pc_slot_reader_t reader,
                        void *ctx, pc_transfer_t *out) {
    if (pc__ls_status(ls) == PC__ST_PENDING) {
        *out = ledger->pool[pc__ls_pool(ls)].transfer;
        return PC_OK;
    }
    pc_transfer_slot_t slot;
    int rc = slot_read(ledger, reader, ctx, pc__ls_loc(ls), &slot);
    if (rc == PC_OK) *out = slot.transfer;
    return rc;
}

int pc_ledger_namespace_checksum(const pc_ledger_t *ledger, bool shadow, pc_slot_reader_t reader,
                                 void *ctx, pc_u128 *out) {
    PC_ASSERT(!ledger->undo_on && out != NULL);
    struct {
        pc_u128 accounts, transfers, pending;
        uint64_t accounts_count, transfers_count, pending_count;
    } s;
    memset(&s, 0, sizeof(s));
    for (uint32_t i = 0; i < ledger->accounts_count; i++) { /* insertion order */
        const pc_account_t *a = &ledger->accounts[i];
        if (!in_namespace(a->id, shadow)) continue;
        s.accounts = pc_checksum(a, sizeof(*a), (uint64_t)s.accounts ^ 31);
        s.accounts_count++;
    }
    for (uint64_t pos = 0; pos <= ledger->index_mask; pos++) { /* any order: a sum */
        if (ledger->ids[pos] == 0 || !in_namespace(ledger->ids[pos], shadow)) continue;
        struct {
            pc_transfer_t record;
            uint64_t status, reserved;
        } e;
        memset(&e, 0, sizeof(e));
        int rc = entry_record(ledger, ledger->loc_status[pos], reader, ctx, &e.record);
        if (rc != PC_OK) return rc;
        PC_ASSERT(e.record.id == ledger->ids[pos]);
        e.status = pc__ls_status(ledger->loc_status[pos]);
        s.transfers += pc_checksum(&e, sizeof(e), 32);
        s.transfers_count++;
    }
    for (uint32_t i = 0; i < ledger->pool_used; i++) {
        const pc__pending_t *p = &ledger->pool[i];
        if (p->transfer.id == 0 || !in_namespace(p->transfer.id, shadow)) continue;
        struct {
            pc_transfer_t transfer;
            uint64_t expires_at, reserved;
        } e;
        memset(&e, 0, sizeof(e));
        e.transfer = p->transfer;
        e.expires_at = p->transfer.timeout != 0 ? p->expires_at : 0;
        s.pending += pc_checksum(&e, sizeof(e), 33);
        s.pending_count++;
    }
    *out = pc_checksum(&s, sizeof(s), 35);
    return PC_OK;
}

/* ---- list_accounts ---- */

/* The account array is in insertion order, which is timestamp order (every
 * create is stamped later than the one before, and a purge keeps the order):
 * the range starts at a binary search. */
int pc_ledger_list_accounts(const pc_ledger_t *ledger, const pc_account_filter_t *filter,
                            pc_account_t *out) {
    PC_ASSERT(filter != NULL && out != NULL);
    static const uint8_t zero[sizeof(filter->reserved)] = {0};
    if (filter->account_id != 0 || filter->flags != 0) return PC_EINVAL;
    if (memcmp(filter->reserved, zero, sizeof(zero)) != 0) return PC_EINVAL;
    if (filter->limit == 0 || filter->limit > PC_BATCH_EVENTS_MAX) return PC_EINVAL;
    if (filter->timestamp_max != 0 && filter->timestamp_min > filter->timestamp_max) {
        return PC_EINVAL;
    }
    uint32_t lo = 0, hi = ledger->accounts_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ledger->accounts[mid].timestamp < filter->timestamp_min) lo = mid + 1;
        else hi = mid;
    }
    uint32_t n = 0;
    for (uint32_t i = lo; i < ledger->accounts_count && n < filter->limit; i++) {
        const pc_account_t *a = &ledger->accounts[i];
        PC_ASSERT(i == 0 || ledger->accounts[i - 1].timestamp < a->timestamp);
        if (filter->timestamp_max != 0 && a->timestamp > filter->timestamp_max) break;
        out[n++] = *a;
    }
    return (int)n;
}
