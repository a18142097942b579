/*
 * Unit tests of src/ledger: every result code of create_accounts and
 * create_transfers (asserted by name), every flag, linked chains and their
 * rollback, two-phase transfers and expiry, balancing, tombstones, history
 * walks, prefetch, snapshots and rebuild.
 *
 * A fixture stands in for the replica: it keeps the stored slots in memory
 * (the "store"), runs prefetch + prefetch_put + apply + flush for each batch,
 * and advances cluster time by one second per batch.
 */
#include "test.h"

#include "../../src/ledger/ledger.h"

#define S_NS 1000000000ull

typedef struct fx {
    pc_ledger_t *ledger;
    pc_transfer_slot_t *store;
    uint64_t store_count, store_cap;
    uint64_t now; /* cluster time of the next batch, ns */
    bool flush;   /* flush slots into the store after each apply */
} fx_t;

static fx_t *fx_new_config(uint32_t accounts_max, uint64_t transfers_max, uint32_t pending_max) {
    fx_t *fx = calloc(1, sizeof(*fx));
    pc_ledger_config_t config = {accounts_max, transfers_max, pending_max};
    ASSERT_EQ(pc_ledger_init(&config, &fx->ledger), PC_OK);
    fx->store_cap = transfers_max;
    fx->store = calloc(transfers_max, sizeof(pc_transfer_slot_t));
    fx->now = 1000 * S_NS;
    fx->flush = true;
    return fx;
}

static void fx_free(fx_t *fx) {
    pc_ledger_deinit(fx->ledger);
    free(fx->store);
    free(fx);
}

static void fx_flush(fx_t *fx) {
    const pc_transfer_slot_t *slots = NULL;
    uint64_t first = 0;
    uint32_t n = pc_ledger_slots(fx->ledger, &slots, &first);
    ASSERT_EQ(first, fx->store_count);
    for (uint32_t i = 0; i < n; i++)
        fx->store[fx->store_count++] = slots[i];
    pc_ledger_slots_flushed(fx->ledger);
}

static uint32_t fx_apply(fx_t *fx, pc_operation_t op, const void *events, uint32_t count,
                         pc_create_result_t *results) {
    uint64_t locs[64];
    ASSERT_TRUE(count <= 64);
    uint32_t n = pc_ledger_prefetch(fx->ledger, op, events, count, locs);
    for (uint32_t i = 0; i < n; i++) {
        ASSERT_TRUE(locs[i] < fx->store_count);
        pc_ledger_prefetch_put(fx->ledger, locs[i], &fx->store[locs[i]].transfer);
    }
    uint32_t r = pc_ledger_apply(fx->ledger, op, 0, fx->now, events, count, results);
    fx->now += S_NS;
    if (fx->flush) fx_flush(fx);
    return r;
}

/* The result of a one-event batch, 0 when created. */
static uint32_t fx_one(fx_t *fx, pc_operation_t op, const void *event) {
    pc_create_result_t results[1];
    uint32_t n = fx_apply(fx, op, event, 1, results);
    if (n == 0) return 0;
    ASSERT_EQ(n, 1);
    ASSERT_EQ(results[0].index, 0);
    return results[0].result;
}

static const char *tr_name(fx_t *fx, pc_transfer_t t) {
    const char *name = pc_transfer_result_name(fx_one(fx, PC_OP_create_transfers, &t));
    return name ? name : "(unknown)";
}

static const char *ac_name(fx_t *fx, pc_account_t a) {
    const char *name = pc_account_result_name(fx_one(fx, PC_OP_create_accounts, &a));
    return name ? name : "(unknown)";
}

#define EXPECT_T(fx, t, name) ASSERT_STREQ(tr_name((fx), (t)), #name)
#define EXPECT_A(fx, a, name) ASSERT_STREQ(ac_name((fx), (a)), #name)

static pc_account_t mkacct(pc_u128 id, uint32_t ledger, uint16_t flags) {
    pc_account_t a;
    memset(&a, 0, sizeof(a));
    a.id = id;
    a.ledger = ledger;
    a.code = 10;
    a.flags = flags;
    return a;
}

static pc_transfer_t tr(pc_u128 id, pc_u128 dr, pc_u128 cr, pc_u128 amount) {
    pc_transfer_t t;
    memset(&t, 0, sizeof(t));
    t.id = id;
    t.debit_account_id = dr;
    t.credit_account_id = cr;
    t.amount = amount;
    t.ledger = 1;
    t.code = 1;
    return t;
}

static pc_transfer_t pend(pc_u128 id, pc_u128 dr, pc_u128 cr, pc_u128 amount, uint32_t timeout) {
    pc_transfer_t t = tr(id, dr, cr, amount);
    t.flags = PC_TRANSFER_pending;
    t.timeout = timeout;
    return t;
}

/* A post (or void) that leaves accounts, ledger and code to the pending. */
static pc_transfer_t pv(pc_u128 id, pc_u128 pending_id, uint16_t flag, pc_u128 amount) {
    pc_transfer_t t;
    memset(&t, 0, sizeof(t));
    t.id = id;
    t.pending_id = pending_id;
    t.flags = flag;
    t.amount = amount;
    return t;
}

static pc_account_t get(fx_t *fx, pc_u128 id) {
    pc_account_t a;
    memset(&a, 0, sizeof(a));
    ASSERT_EQ(pc_ledger_lookup_accounts(fx->ledger, &id, 1, &a), 1);
    return a;
}

#define ASSERT_BAL(fx, id, dp, dpo, cp, cpo)                                                       \
    do {                                                                                           \
        pc_account_t pc__acc = get((fx), (id));                                                    \
        ASSERT_EQ_U128(pc__acc.debits_pending, (dp));                                              \
        ASSERT_EQ_U128(pc__acc.debits_posted, (dpo));                                              \
        ASSERT_EQ_U128(pc__acc.credits_pending, (cp));                                             \
        ASSERT_EQ_U128(pc__acc.credits_posted, (cpo));                                             \
    } while (0)

/* Accounts 1, 2, 6, 7 (ledger 1, no limits), 3 (ledger 1, debits must not
 * exceed credits), 4 (ledger 1, credits must not exceed debits), 5 (ledger 2). */
static fx_t *fx_std(void) {
    fx_t *fx = fx_new_config(64, 256, 16);
    pc_account_t accounts[7] = {
        mkacct(1, 1, 0),
        mkacct(2, 1, 0),
        mkacct(3, 1, PC_ACCOUNT_debits_must_not_exceed_credits),
        mkacct(4, 1, PC_ACCOUNT_credits_must_not_exceed_debits),
        mkacct(5, 2, 0),
        mkacct(6, 1, 0),
        mkacct(7, 1, 0),
    };
    pc_create_result_t results[7];
    ASSERT_EQ(fx_apply(fx, PC_OP_create_accounts, accounts, 7, results), 0);
    return fx;
}

static pc_u128 fx_checksum(fx_t *fx) {
    return pc_ledger_state_checksum(fx->ledger);
}

/* ---- create_accounts ---- */

static void test_account_validation(void) {
    fx_t *fx = fx_new_config(8, 16, 4);
    pc_account_t a = mkacct(1, 1, 0);
    a.timestamp = 1;
    EXPECT_A(fx, a, timestamp_must_be_zero);
    a = mkacct(1, 1, 0);
    a.reserved = 1;
    EXPECT_A(fx, a, reserved_field);
    EXPECT_A(fx, mkacct(1, 1, 0x8), reserved_flag);
    EXPECT_A(fx, mkacct(0, 1, 0), id_must_not_be_zero);
    EXPECT_A(fx, mkacct(PC_U128_MAX, 1, 0), id_must_not_be_int_max);
    EXPECT_A(fx,
             mkacct(1, 1,
                    PC_ACCOUNT_debits_must_not_exceed_credits |
                        PC_ACCOUNT_credits_must_not_exceed_debits),
             flags_are_mutually_exclusive);
    a = mkacct(1, 1, 0);
    a.debits_pending = 1;
    EXPECT_A(fx, a, debits_pending_must_be_zero);
    a = mkacct(1, 1, 0);
    a.debits_posted = 1;
    EXPECT_A(fx, a, debits_posted_must_be_zero);
    a = mkacct(1, 1, 0);
    a.credits_pending = 1;
    EXPECT_A(fx, a, credits_pending_must_be_zero);
    a = mkacct(1, 1, 0);
    a.credits_posted = 1;
    EXPECT_A(fx, a, credits_posted_must_be_zero);
    EXPECT_A(fx, mkacct(1, 0, 0), ledger_must_not_be_zero);
    a = mkacct(1, 1, 0);
    a.code = 0;
    EXPECT_A(fx, a, code_must_not_be_zero);
    pc_ledger_stats_t stats;
    pc_ledger_stats(fx->ledger, &stats);
    ASSERT_EQ(stats.accounts_count, 0);
    fx_free(fx);
}

static void test_account_exists(void) {
    fx_t *fx = fx_new_config(8, 16, 4);
    pc_account_t a = mkacct(1, 1, PC_ACCOUNT_debits_must_not_exceed_credits);
    a.user_data_128 = 7;
    a.user_data_64 = 8;
    a.user_data_32 = 9;
    EXPECT_A(fx, a, created);
    pc_account_t stored = get(fx, 1);
    ASSERT_TRUE(stored.timestamp != 0);
    EXPECT_A(fx, a, exists);
    pc_account_t b = a;
    b.flags |= PC_ACCOUNT_linked; /* the linked bit does not count */
    pc_create_result_t results[2];
    pc_account_t pair[2] = {b, mkacct(2, 1, 0)};
    ASSERT_EQ(fx_apply(fx, PC_OP_create_accounts, pair, 2, results), 2);
    ASSERT_STREQ(pc_account_result_name(results[0].result), "exists");
    ASSERT_STREQ(pc_account_result_name(results[1].result), "linked_event_failed");
    b = a;
    b.flags = 0;
    EXPECT_A(fx, b, exists_with_different_flags);
    b = a;
    b.user_data_128 = 1;
    EXPECT_A(fx, b, exists_with_different_user_data_128);
    b = a;
    b.user_data_64 = 1;
    EXPECT_A(fx, b, exists_with_different_user_data_64);
    b = a;
    b.user_data_32 = 1;
    EXPECT_A(fx, b, exists_with_different_user_data_32);
    b = a;
    b.ledger = 2;
    EXPECT_A(fx, b, exists_with_different_ledger);
    b = a;
    b.code = 2;
    EXPECT_A(fx, b, exists_with_different_code);
    ASSERT_EQ(get(fx, 1).timestamp, stored.timestamp);
    fx_free(fx);
}

static void test_accounts_full(void) {
    fx_t *fx = fx_new_config(2, 16, 4);
    EXPECT_A(fx, mkacct(1, 1, 0), created);
    EXPECT_A(fx, mkacct(2, 1, 0), created);
    EXPECT_A(fx, mkacct(3, 1, 0), accounts_full);
    EXPECT_A(fx, mkacct(2, 1, 0), exists);
    fx_free(fx);
}

static void test_account_chains(void) {
    fx_t *fx = fx_new_config(16, 16, 4);
    pc_create_result_t r[8];
    /* A chain that succeeds, then one that fails on its third event. */
    pc_account_t ok[3] = {mkacct(1, 1, PC_ACCOUNT_linked), mkacct(2, 1, PC_ACCOUNT_linked),
                          mkacct(3, 1, 0)};
    ASSERT_EQ(fx_apply(fx, PC_OP_create_accounts, ok, 3, r), 0);
    pc_account_t bad[4] = {mkacct(10, 1, PC_ACCOUNT_linked), mkacct(11, 1, PC_ACCOUNT_linked),
                           mkacct(12, 0, PC_ACCOUNT_linked), mkacct(13, 1, 0)};
    ASSERT_EQ(fx_apply(fx, PC_OP_create_accounts, bad, 4, r), 4);
    ASSERT_STREQ(pc_account_result_name(r[0].result), "linked_event_failed");
    ASSERT_STREQ(pc_account_result_name(r[1].result), "linked_event_failed");
    ASSERT_STREQ(pc_account_result_name(r[2].result), "ledger_must_not_be_zero");
    ASSERT_STREQ(pc_account_result_name(r[3].result), "linked_event_failed");
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(r[i].index, i);
    pc_u128 ids[2] = {10, 11};
    pc_account_t out[2];
    ASSERT_EQ(pc_ledger_lookup_accounts(fx->ledger, ids, 2, out), 0);
    /* Timestamps moved on, the rest of the state did not. */
    pc_ledger_stats_t stats;
    pc_ledger_stats(fx->ledger, &stats);
    ASSERT_EQ(stats.accounts_count, 3);
    /* The ids are free again. */
    EXPECT_A(fx, mkacct(10, 1, 0), created);
    /* An open chain at the end of the batch, after a standalone event. */
    pc_account_t open[3] = {mkacct(20, 1, 0), mkacct(21, 1, PC_ACCOUNT_linked),
                            mkacct(22, 1, PC_ACCOUNT_linked)};
    ASSERT_EQ(fx_apply(fx, PC_OP_create_accounts, open, 3, r), 2);
    ASSERT_EQ(r[0].index, 1);
    ASSERT_STREQ(pc_account_result_name(r[0].result), "linked_event_failed");
    ASSERT_EQ(r[1].index, 2);
    ASSERT_STREQ(pc_account_result_name(r[1].result), "linked_event_chain_open");
    ASSERT_EQ(get(fx, 20).ledger, 1);
    pc_u128 id21 = 21;
    ASSERT_EQ(pc_ledger_lookup_accounts(fx->ledger, &id21, 1, out), 0);
    /* A single linked event is an open chain too. */
    EXPECT_A(fx, mkacct(30, 1, PC_ACCOUNT_linked), linked_event_chain_open);
    fx_free(fx);
}

/* ---- create_transfers: validation ---- */

static void test_transfer_validation(void) {
    fx_t *fx = fx_std();
    pc_transfer_t t = tr(100, 1, 2, 5);
    t.timestamp = 1;
    EXPECT_T(fx, t, timestamp_must_be_zero);
    t = tr(100, 1, 2, 5);
    t.flags = 0x40;
    EXPECT_T(fx, t, reserved_flag);
    EXPECT_T(fx, tr(0, 1, 2, 5), id_must_not_be_zero);
    EXPECT_T(fx, tr(PC_U128_MAX, 1, 2, 5), id_must_not_be_int_max);
    const uint16_t exclusive[] = {
        PC_TRANSFER_pending | PC_TRANSFER_post_pending_transfer,
        PC_TRANSFER_pending | PC_TRANSFER_void_pending_transfer,
        PC_TRANSFER_post_pending_transfer | PC_TRANSFER_void_pending_transfer,
        PC_TRANSFER_balancing_debit | PC_TRANSFER_post_pending_transfer,
        PC_TRANSFER_balancing_credit | PC_TRANSFER_void_pending_transfer,
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(exclusive); i++) {
        t = tr(100, 1, 2, 5);
        t.flags = exclusive[i];
        EXPECT_T(fx, t, flags_are_mutually_exclusive);
    }
    EXPECT_T(fx, tr(100, 0, 2, 5), debit_account_id_must_not_be_zero);
    EXPECT_T(fx, tr(100, PC_U128_MAX, 2, 5), debit_account_id_must_not_be_int_max);
    EXPECT_T(fx, tr(100, 1, 0, 5), credit_account_id_must_not_be_zero);
    EXPECT_T(fx, tr(100, 1, PC_U128_MAX, 5), credit_account_id_must_not_be_int_max);
    EXPECT_T(fx, tr(100, 1, 1, 5), accounts_must_be_different);
    t = tr(100, 1, 2, 5);
    t.pending_id = 9;
    EXPECT_T(fx, t, pending_id_must_be_zero);
    t = tr(100, 1, 2, 5);
    t.timeout = 1;
    EXPECT_T(fx, t, timeout_reserved_for_pending_transfer);
    EXPECT_T(fx, tr(100, 1, 2, 0), amount_must_not_be_zero);
    t = tr(100, 1, 2, 5);
    t.ledger = 0;
    EXPECT_T(fx, t, ledger_must_not_be_zero);
    t = tr(100, 1, 2, 5);
    t.code = 0;
    EXPECT_T(fx, t, code_must_not_be_zero);
    /* Post/void-specific validation. */
    EXPECT_T(fx, pv(100, 0, PC_TRANSFER_post_pending_transfer, 0), pending_id_must_not_be_zero);
    EXPECT_T(fx, pv(100, PC_U128_MAX, PC_TRANSFER_void_pending_transfer, 0),
             pending_id_must_not_be_int_max);
    EXPECT_T(fx, pv(100, 100, PC_TRANSFER_post_pending_transfer, 0), pending_id_must_be_different);
    t = pv(100, 50, PC_TRANSFER_post_pending_transfer, 0);
    t.timeout = 3;
    EXPECT_T(fx, t, timeout_reserved_for_pending_transfer);
    /* None of these burnt the id. */
    EXPECT_T(fx, tr(100, 1, 2, 5), created);
    fx_free(fx);
}

static void test_transfer_account_results(void) {
    fx_t *fx = fx_std();
    EXPECT_T(fx, tr(100, 99, 2, 5), debit_account_not_found);
    EXPECT_T(fx, tr(101, 1, 99, 5), credit_account_not_found);
    EXPECT_T(fx, tr(102, 1, 5, 5), accounts_must_have_the_same_ledger);
    pc_transfer_t t = tr(103, 1, 2, 5);
    t.ledger = 2;
    EXPECT_T(fx, t, transfer_must_have_the_same_ledger_as_accounts);
    /* The last two are not transient: the ids stay free. */
    EXPECT_T(fx, tr(102, 1, 2, 5), created);
    EXPECT_T(fx, tr(103, 1, 2, 5), created);
    ASSERT_BAL(fx, 1, 0, 10, 0, 0);
    ASSERT_BAL(fx, 2, 0, 0, 0, 10);
    fx_free(fx);
}

/* ---- idempotency ---- */

static void test_transfer_exists(void) {
    fx_t *fx = fx_std();
    pc_transfer_t t = pend(100, 1, 2, 50, 60);
    t.user_data_128 = 1;
    t.user_data_64 = 2;
    t.user_data_32 = 3;
    EXPECT_T(fx, t, created);
    EXPECT_T(fx, t, exists);
    ASSERT_BAL(fx, 1, 50, 0, 0, 0);
    pc_transfer_t b = t;
    b.flags = PC_TRANSFER_pending | PC_TRANSFER_balancing_debit;
    EXPECT_T(fx, b, exists_with_different_flags);
    b = t;
    b.debit_account_id = 6;
    EXPECT_T(fx, b, exists_with_different_debit_account_id);
    b = t;
    b.credit_account_id = 6;
    EXPECT_T(fx, b, exists_with_different_credit_account_id);
    b = t;
    b.amount = 51;
    EXPECT_T(fx, b, exists_with_different_amount);
    b = t;
    b.user_data_128 = 9;
    EXPECT_T(fx, b, exists_with_different_user_data_128);
    b = t;
    b.user_data_64 = 9;
    EXPECT_T(fx, b, exists_with_different_user_data_64);
    b = t;
    b.user_data_32 = 9;
    EXPECT_T(fx, b, exists_with_different_user_data_32);
    b = t;
    b.timeout = 61;
    EXPECT_T(fx, b, exists_with_different_timeout);
    b = t;
    b.code = 9;
    EXPECT_T(fx, b, exists_with_different_code);
    /* A post's retry with another pending_id. */
    EXPECT_T(fx, pend(101, 1, 2, 10, 0), created);
    EXPECT_T(fx, pv(102, 100, PC_TRANSFER_post_pending_transfer, 0), created);
    EXPECT_T(fx, pv(102, 100, PC_TRANSFER_post_pending_transfer, 0), exists);
    EXPECT_T(fx, pv(102, 101, PC_TRANSFER_post_pending_transfer, 0),
             exists_with_different_pending_id);
    /* Same id twice in one batch: created, then exists_with_different_amount. */
    pc_transfer_t twice[2] = {tr(110, 1, 2, 5), tr(110, 1, 2, 6)};
    pc_create_result_t r[2];
    ASSERT_EQ(fx_apply(fx, PC_OP_create_transfers, twice, 2, r), 1);
    ASSERT_EQ(r[0].index, 1);
    ASSERT_STREQ(pc_transfer_result_name(r[0].result), "exists_with_different_amount");
    /* The linked bit does not count. */
    pc_transfer_t again[2] = {tr(110, 1, 2, 5), tr(111, 1, 2, 1)};
    again[0].flags = PC_TRANSFER_linked;
    ASSERT_EQ(fx_apply(fx, PC_OP_create_transfers, again, 2, r), 2);
    ASSERT_STREQ(pc_transfer_result_name(r[0].result), "exists");
    fx_free(fx);
}

static void test_exceeds_changes_nothing(void) {
    fx_t *fx = fx_std();
    EXPECT_T(fx, tr(100, 2, 3, 10), created); /* account 3 has 10 credits */
    EXPECT_T(fx, tr(101, 3, 2, 4), created);
    pc_ledger_stats_t s0, s1;
    pc_ledger_stats(fx->ledger, &s0);
    EXPECT_T(fx, tr(102, 3, 2, 7), exceeds_credits);
    ASSERT_BAL(fx, 3, 0, 4, 0, 10);
    ASSERT_BAL(fx, 2, 0, 10, 0, 4);
    EXPECT_T(fx, pend(103, 3, 2, 7, 0), exceeds_credits);
    ASSERT_BAL(fx, 3, 0, 4, 0, 10);
    EXPECT_T(fx, tr(104, 3, 2, 6), created); /* exactly to the limit */
    EXPECT_T(fx, tr(105, 1, 4, 3), exceeds_debits);
    ASSERT_BAL(fx, 4, 0, 0, 0, 0);
    ASSERT_BAL(fx, 1, 0, 0, 0, 0);
    EXPECT_T(fx, tr(106, 4, 1, 3), created);
    EXPECT_T(fx, tr(107, 1, 4, 3), created);
    EXPECT_T(fx, tr(108, 1, 4, 1), exceeds_debits);
    ASSERT_BAL(fx, 4, 0, 3, 0, 3);
    /* Besides balances, the only trace of a rejection is its tombstone. */
    pc_ledger_stats(fx->ledger, &s1);
    ASSERT_EQ(s1.transfers_count, s0.transfers_count + 3 + 4);
    ASSERT_EQ(s1.pending_count, 0);
    fx_free(fx);
}

static void test_id_already_failed(void) {
    fx_t *fx = fx_std();
    EXPECT_T(fx, tr(100, 3, 2, 5), exceeds_credits);
    EXPECT_T(fx, tr(1, 2, 3, 5), created); /* now 100 would succeed, but the id is burnt */
    EXPECT_T(fx, tr(100, 3, 2, 5), id_already_failed);
    EXPECT_T(fx, tr(100, 1, 2, 1), id_already_failed);
    uint64_t loc = 0;
    const pc_transfer_t *unflushed = NULL;
    ASSERT_EQ(pc_ledger_transfer_loc(fx->ledger, 100, &loc, &unflushed), PC_ENOTFOUND);
    /* The tombstone is stored, flagged, and not linked into history. */
    ASSERT_TRUE(fx->store[0].transfer.flags & PC_SLOT_FAILED);
    ASSERT_EQ(fx->store[0].prev_debit, 0);
    EXPECT_T(fx, tr(101, 99, 2, 5), debit_account_not_found);
    EXPECT_T(fx, tr(101, 1, 2, 5), id_already_failed);
    /* Inside a chain the tombstone is rolled back with the chain. */
    pc_transfer_t chain[2] = {tr(102, 1, 2, 5), tr(103, 3, 2, 1000)};
    chain[0].flags = PC_TRANSFER_linked;
    pc_create_result_t r[2];
    ASSERT_EQ(fx_apply(fx, PC_OP_create_transfers, chain, 2, r), 2);
    ASSERT_STREQ(pc_transfer_result_name(r[0].result), "linked_event_failed");
    ASSERT_STREQ(pc_transfer_result_name(r[1].result), "exceeds_credits");
    EXPECT_T(fx, tr(103, 1, 2, 5), created);
    EXPECT_T(fx, tr(102, 1, 2, 5), created);
    fx_free(fx);
}

/* ---- two-phase ---- */

static void test_post_and_void(void) {
    fx_t *fx = fx_std();
    EXPECT_T(fx, pend(100, 1, 2, 50, 0), created);
    ASSERT_BAL(fx, 1, 50, 0, 0, 0);
    ASSERT_BAL(fx, 2, 0, 0, 50, 0);
    /* Partial post. */
    EXPECT_T(fx, pv(101, 100, PC_TRANSFER_post_pending_transfer, 30), created);
    ASSERT_BAL(fx, 1, 0, 30, 0, 0);
    ASSERT_BAL(fx, 2, 0, 0, 0, 30);
    uint64_t loc = 0;
    const pc_transfer_t *unflushed = NULL;
    ASSERT_EQ(pc_ledger_transfer_loc(fx->ledger, 101, &loc, &unflushed), PC_OK);
    const pc_transfer_t *post = &fx->store[loc].transfer;
    ASSERT_EQ_U128(post->debit_account_id, 1);
    ASSERT_EQ_U128(post->credit_account_id, 2);
    ASSERT_EQ_U128(post->amount, 30);
    ASSERT_EQ(post->ledger, 1);
    ASSERT_EQ(post->code, 1);
    EXPECT_T(fx, pv(102, 100, PC_TRANSFER_post_pending_transfer, 0),
             pending_transfer_already_posted);
    EXPECT_T(fx, pv(102, 100, PC_TRANSFER_void_pending_transfer, 0),
             pending_transfer_already_posted);
    /* Full post (amount 0) and a void. */
    EXPECT_T(fx, pend(110, 1, 2, 20, 0), created);
    EXPECT_T(fx, pv(111, 110, PC_TRANSFER_post_pending_transfer, 0), created);
    ASSERT_BAL(fx, 1, 0, 50, 0, 0);
    EXPECT_T(fx, pend(120, 1, 2, 20, 0), created);
    EXPECT_T(fx, pv(121, 120, PC_TRANSFER_void_pending_transfer, 20), created);
    ASSERT_BAL(fx, 1, 0, 50, 0, 0);
    ASSERT_BAL(fx, 2, 0, 0, 0, 50);
    EXPECT_T(fx, pv(122, 120, PC_TRANSFER_void_pending_transfer, 0),
             pending_transfer_already_voided);
    EXPECT_T(fx, pv(122, 120, PC_TRANSFER_post_pending_transfer, 0),
             pending_transfer_already_voided);
    fx_free(fx);
}

static void test_post_void_results(void) {
    fx_t *fx = fx_std();
    EXPECT_T(fx, pend(100, 1, 2, 50, 0), created);
    EXPECT_T(fx, tr(101, 1, 2, 5), created);
    EXPECT_T(fx, pv(200, 999, PC_TRANSFER_post_pending_transfer, 0), pending_transfer_not_found);
    EXPECT_T(fx, pv(200, 100, PC_TRANSFER_post_pending_transfer, 0), id_already_failed);
    EXPECT_T(fx, pv(201, 101, PC_TRANSFER_post_pending_transfer, 0), pending_transfer_not_pending);
    pc_transfer_t t = pv(202, 100, PC_TRANSFER_post_pending_transfer, 0);
    t.debit_account_id = 6;
    EXPECT_T(fx, t, pending_transfer_has_different_debit_account_id);
    t = pv(202, 100, PC_TRANSFER_post_pending_transfer, 0);
    t.credit_account_id = 6;
    EXPECT_T(fx, t, pending_transfer_has_different_credit_account_id);
    t = pv(202, 100, PC_TRANSFER_post_pending_transfer, 0);
    t.ledger = 2;
    EXPECT_T(fx, t, pending_transfer_has_different_ledger);
    t = pv(202, 100, PC_TRANSFER_post_pending_transfer, 0);
    t.code = 2;
    EXPECT_T(fx, t, pending_transfer_has_different_code);
    EXPECT_T(fx, pv(202, 100, PC_TRANSFER_post_pending_transfer, 51),
             exceeds_pending_transfer_amount);
    EXPECT_T(fx, pv(202, 100, PC_TRANSFER_void_pending_transfer, 49),
             pending_transfer_has_different_amount);
    EXPECT_T(fx, pv(202, 100, PC_TRANSFER_void_pending_transfer, 51),
             pending_transfer_has_different_amount);
    /* Matching fields are accepted. */
    t = pv(202, 100, PC_TRANSFER_post_pending_transfer, 50);
    t.debit_account_id = 1;
    t.credit_account_id = 2;
    t.ledger = 1;
    t.code = 1;
    EXPECT_T(fx, t, created);
    ASSERT_BAL(fx, 1, 0, 55, 0, 0);
    /* Field checks precede the status check, also for a resolved pending
     * whose record must be read back from the store. */
    t = pv(203, 100, PC_TRANSFER_post_pending_transfer, 0);
    t.code = 3;
    EXPECT_T(fx, t, pending_transfer_has_different_code);
    fx_free(fx);
}

static void test_pending_expires(void) {
    fx_t *fx = fx_std();
    EXPECT_T(fx, pend(100, 1, 2, 50, 5), created);
    EXPECT_T(fx, pend(101, 1, 2, 7, 0), created); /* never expires */
    ASSERT_BAL(fx, 1, 57, 0, 0, 0);
    fx->now += 10 * S_NS;
    EXPECT_T(fx, pv(102, 100, PC_TRANSFER_post_pending_transfer, 0), pending_transfer_expired);
    ASSERT_BAL(fx, 1, 7, 0, 0, 0);
    ASSERT_BAL(fx, 2, 0, 0, 7, 0);
    EXPECT_T(fx, pv(103, 100, PC_TRANSFER_void_pending_transfer, 0), pending_transfer_expired);
    EXPECT_T(fx, pv(104, 101, PC_TRANSFER_post_pending_transfer, 0), created);
    pc_ledger_stats_t stats;
    pc_ledger_stats(fx->ledger, &stats);
    ASSERT_EQ(stats.pending_count, 0);
    fx_free(fx);
}

static void test_expire_boundary(void) {
    fx_t *fx = fx_std();
    pc_transfer_t two[3] = {pend(100, 1, 2, 50, 2), pend(101, 1, 2, 7, 2), pend(102, 6, 7, 1, 2)};
    pc_create_result_t r[3];
    ASSERT_EQ(fx_apply(fx, PC_OP_create_transfers, two, 3, r), 0);
    uint64_t t0 = fx->store[0].transfer.timestamp;
    /* One nanosecond before its deadline a pending can be posted. */
    fx->now = t0 + 2 * S_NS - 1;
    EXPECT_T(fx, pv(103, 100, PC_TRANSFER_post_pending_transfer, 0), created);
    /* An event at exactly the deadline sees it expired. */
    fx->now = t0 + 1 + 2 * S_NS;
    EXPECT_T(fx, pv(104, 101, PC_TRANSFER_post_pending_transfer, 0), pending_transfer_expired);
    ASSERT_BAL(fx, 1, 0, 50, 0, 0);
    /* Idle expiry at exactly 102's deadline. */
    ASSERT_EQ(pc_ledger_expire(fx->ledger, t0 + 2 + 2 * S_NS), 1);
    ASSERT_BAL(fx, 6, 0, 0, 0, 0);
    /* And one at exactly the deadline, not a nanosecond before. */
    EXPECT_T(fx, pend(105, 6, 7, 1, 1), created);
    uint64_t t1 = fx->store[fx->store_count - 1].transfer.timestamp;
    ASSERT_EQ(pc_ledger_expire(fx->ledger, t1 + S_NS - 1), 0);
    ASSERT_EQ(pc_ledger_expire(fx->ledger, t1 + S_NS), 1);
    fx_free(fx);
}

/* The replica writes an idle tick only when the earliest deadline is due. */
static void test_next_expiry(void) {
    fx_t *fx = fx_std();
    ASSERT_TRUE(pc_ledger_next_expiry(fx->ledger) == UINT64_MAX);
    EXPECT_T(fx, pend(99, 1, 2, 1, 0), created); /* no timeout: never due */
    ASSERT_TRUE(pc_ledger_next_expiry(fx->ledger) == UINT64_MAX);
    EXPECT_T(fx, pend(100, 1, 2, 50, 50), created);
    EXPECT_T(fx, pend(101, 6, 7, 5, 5), created);
    uint64_t t101 = fx->store[fx->store_count - 1].transfer.timestamp;
    ASSERT_TRUE(pc_ledger_next_expiry(fx->ledger) == t101 + 5 * S_NS); /* the earliest */
    ASSERT_EQ(pc_ledger_expire(fx->ledger, t101 + 5 * S_NS), 1);
    ASSERT_TRUE(pc_ledger_next_expiry(fx->ledger) > t101 + 5 * S_NS);
    ASSERT_EQ(pc_ledger_expire(fx->ledger, pc_ledger_next_expiry(fx->ledger)), 1);
    ASSERT_TRUE(pc_ledger_next_expiry(fx->ledger) == UINT64_MAX);
    fx_free(fx);
}

static void test_expire_idle(void) {
    fx_t *fx = fx_std();
    EXPECT_T(fx, pend(100, 1, 2, 50, 5), created);
    EXPECT_T(fx, pend(101, 6, 7, 5, 50), created);
    pc_ledger_stats_t stats;
    pc_ledger_stats(fx->ledger, &stats);
    uint64_t t0 = stats.timestamp_last;
    ASSERT_EQ(pc_ledger_expire(fx->ledger, t0 + 3 * S_NS), 0);
    ASSERT_EQ(pc_ledger_expire(fx->ledger, t0 + 6 * S_NS), 1);
    ASSERT_BAL(fx, 1, 0, 0, 0, 0);
    ASSERT_BAL(fx, 2, 0, 0, 0, 0);
    ASSERT_BAL(fx, 6, 5, 0, 0, 0);
    pc_ledger_stats(fx->ledger, &stats);
    ASSERT_EQ(stats.pending_count, 1);
    ASSERT_EQ(stats.timestamp_last, t0 + 6 * S_NS); /* idle expiry moves time on */
    ASSERT_EQ(pc_ledger_expire(fx->ledger, t0 + 100 * S_NS), 1);
    ASSERT_EQ(pc_ledger_expire(fx->ledger, t0 + 200 * S_NS), 0);
    EXPECT_T(fx, pv(102, 101, PC_TRANSFER_void_pending_transfer, 0), pending_transfer_expired);
    fx_free(fx);
}

/* ---- overflows ---- */

static void test_overflows(void) {
    fx_t *fx = fx_new_config(32, 256, 16);
    pc_create_result_t r[16];
    pc_account_t accounts[12];
    for (int i = 0; i < 12; i++)
        accounts[i] = mkacct((pc_u128)(i + 1), 1, 0);
    ASSERT_EQ(fx_apply(fx, PC_OP_create_accounts, accounts, 12, r), 0);
    const pc_u128 big = PC_U128_MAX - 5, half = (pc_u128)1 << 127;
    EXPECT_T(fx, pend(100, 1, 2, big, 0), created);
    EXPECT_T(fx, pend(101, 1, 3, 10, 0), overflows_debits_pending);
    EXPECT_T(fx, pend(102, 3, 2, 10, 0), overflows_credits_pending);
    EXPECT_T(fx, tr(103, 4, 5, big), created);
    EXPECT_T(fx, tr(104, 4, 6, 10), overflows_debits_posted);
    EXPECT_T(fx, tr(105, 6, 5, 10), overflows_credits_posted);
    /* Each balance fits, their sum with the amount does not. */
    EXPECT_T(fx, pend(106, 7, 8, half, 0), created);
    EXPECT_T(fx, tr(107, 7, 9, half - 10), created);
    EXPECT_T(fx, tr(108, 7, 10, 20), overflows_debits);
    EXPECT_T(fx, pend(109, 10, 8, half, 0), overflows_credits_pending);
    EXPECT_T(fx, tr(110, 11, 8, half - 10), created);
    EXPECT_T(fx, tr(111, 12, 8, 20), overflows_credits);
    /* The timeout deadline overflows u64. */
    fx->now = UINT64_MAX - 1000 * S_NS;
    EXPECT_T(fx, pend(112, 11, 12, 1, 2000), overflows_timeout);
    EXPECT_T(fx, pend(113, 11, 12, 1, 500), created);
    /* Transient: every one of them burnt its id. */
    EXPECT_T(fx, tr(101, 11, 12, 1), id_already_failed);
    EXPECT_T(fx, tr(112, 11, 12, 1), id_already_failed);
    fx_free(fx);
}

/* ---- balancing ---- */

static void test_balancing(void) {
    fx_t *fx = fx_std();
    EXPECT_T(fx, tr(100, 2, 3, 30), created); /* 3: credits_posted 30 */
    pc_transfer_t t = tr(101, 3, 1, 100);
    t.flags = PC_TRANSFER_balancing_debit;
    EXPECT_T(fx, t, created);
    ASSERT_BAL(fx, 3, 0, 30, 0, 30);
    uint64_t loc = 0;
    const pc_transfer_t *unflushed = NULL;
    ASSERT_EQ(pc_ledger_transfer_loc(fx->ledger, 101, &loc, &unflushed), PC_OK);
    ASSERT_EQ_U128(fx->store[loc].transfer.amount, 30);
    /* Retry: the amount is a bound, not compared. */
    t.amount = 77;
    EXPECT_T(fx, t, exists);
    /* Nothing left: the transfer moves 0. */
    t = tr(102, 3, 1, 0);
    t.flags = PC_TRANSFER_balancing_debit;
    EXPECT_T(fx, t, created);
    ASSERT_BAL(fx, 3, 0, 30, 0, 30);
    /* Balancing credit, pending: 4 may take credits up to its debits. */
    EXPECT_T(fx, tr(105, 4, 7, 100), created); /* 4: debits_posted 100 */
    EXPECT_T(fx, tr(106, 1, 4, 40), created);
    ASSERT_BAL(fx, 4, 0, 100, 0, 40);
    t = tr(107, 6, 4, 1000);
    t.flags = PC_TRANSFER_balancing_credit | PC_TRANSFER_pending;
    EXPECT_T(fx, t, created);
    ASSERT_BAL(fx, 4, 0, 100, 60, 40);
    t = tr(108, 6, 4, 0);
    t.flags = PC_TRANSFER_balancing_credit;
    EXPECT_T(fx, t, created);
    ASSERT_BAL(fx, 4, 0, 100, 60, 40);
    /* Both flags: the smaller room wins. */
    EXPECT_T(fx, tr(109, 2, 3, 5), created); /* 3: credits 35, debits 30: room 5 */
    EXPECT_T(fx, pv(110, 107, PC_TRANSFER_void_pending_transfer, 0), created);
    t = tr(111, 3, 4, 0);
    t.flags = PC_TRANSFER_balancing_debit | PC_TRANSFER_balancing_credit;
    EXPECT_T(fx, t, created);
    ASSERT_BAL(fx, 3, 0, 35, 0, 35);
    ASSERT_BAL(fx, 4, 0, 100, 0, 45);
    fx_free(fx);
}

/* ---- linked chains of transfers ---- */

static void test_transfer_chains(void) {
    fx_t *fx = fx_std();
    pc_create_result_t r[8];
    pc_transfer_t ok[3] = {tr(100, 1, 2, 10), pend(101, 2, 6, 5, 30), tr(102, 6, 7, 1)};
    ok[0].flags |= PC_TRANSFER_linked;
    ok[1].flags |= PC_TRANSFER_linked;
    ASSERT_EQ(fx_apply(fx, PC_OP_create_transfers, ok, 3, r), 0);
    ASSERT_BAL(fx, 2, 5, 0, 0, 10);
    pc_ledger_stats_t s0, s1;
    pc_ledger_stats(fx->ledger, &s0);
    /* A chain that creates, posts, and fails at its end: all rolled back. */
    pc_transfer_t bad[5] = {tr(200, 1, 2, 10), pend(201, 1, 2, 20, 10),
                            pv(202, 101, PC_TRANSFER_post_pending_transfer, 0),
                            pv(203, 201, PC_TRANSFER_void_pending_transfer, 0), tr(204, 3, 2, 1)};
    for (int i = 0; i < 4; i++)
        bad[i].flags |= PC_TRANSFER_linked;
    ASSERT_EQ(fx_apply(fx, PC_OP_create_transfers, bad, 5, r), 5);
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(r[i].index, i);
        ASSERT_STREQ(pc_transfer_result_name(r[i].result), "linked_event_failed");
    }
    ASSERT_STREQ(pc_transfer_result_name(r[4].result), "exceeds_credits");
    pc_ledger_stats(fx->ledger, &s1);
    ASSERT_EQ(s1.transfers_count, s0.transfers_count);
    ASSERT_EQ(s1.slots_count, s0.slots_count);
    ASSERT_EQ(s1.pending_count, s0.pending_count);
    ASSERT_BAL(fx, 1, 0, 10, 0, 0);
    ASSERT_BAL(fx, 2, 5, 0, 0, 10);
    /* Every id is free again and the pending is still postable. */
    EXPECT_T(fx, pv(202, 101, PC_TRANSFER_post_pending_transfer, 0), created);
    EXPECT_T(fx, tr(204, 1, 2, 1), created);
    EXPECT_T(fx, tr(200, 1, 2, 1), created);
    /* Events after the failure in the same chain fail too; the next chain
     * and standalone events are independent. */
    pc_transfer_t mix[5] = {tr(300, 99, 2, 1), tr(301, 1, 2, 1), tr(302, 1, 2, 1), tr(303, 1, 2, 1),
                            tr(304, 1, 2, 1)};
    mix[0].flags = mix[1].flags = mix[4].flags = PC_TRANSFER_linked;
    ASSERT_EQ(fx_apply(fx, PC_OP_create_transfers, mix, 5, r), 4);
    ASSERT_STREQ(pc_transfer_result_name(r[0].result), "debit_account_not_found");
    ASSERT_STREQ(pc_transfer_result_name(r[1].result), "linked_event_failed");
    ASSERT_STREQ(pc_transfer_result_name(r[2].result), "linked_event_failed");
    ASSERT_EQ(r[3].index, 4);
    ASSERT_STREQ(pc_transfer_result_name(r[3].result), "linked_event_chain_open");
    EXPECT_T(fx, tr(300, 1, 2, 1), created); /* no tombstone inside a chain */
    EXPECT_T(fx, tr(301, 1, 2, 1), created);
    EXPECT_T(fx, tr(303, 1, 2, 1), exists); /* standalone, between the chains */
    EXPECT_T(fx, tr(304, 1, 2, 1), created);
    fx_free(fx);
}

static void test_capacity(void) {
    fx_t *fx = fx_new_config(8, 4, 1);
    pc_create_result_t r[2];
    pc_account_t accounts[2] = {mkacct(1, 1, 0), mkacct(2, 1, 0)};
    ASSERT_EQ(fx_apply(fx, PC_OP_create_accounts, accounts, 2, r), 0);
    EXPECT_T(fx, pend(100, 1, 2, 5, 0), created);
    EXPECT_T(fx, pend(101, 1, 2, 5, 0), pending_transfers_full);
    EXPECT_T(fx, tr(102, 1, 2, 5), created);
    EXPECT_T(fx, tr(103, 1, 99, 5), credit_account_not_found); /* tombstone: 4 ids */
    EXPECT_T(fx, tr(104, 1, 2, 5), created);                   /* 4 ids: full */
    EXPECT_T(fx, tr(105, 1, 2, 5), transfers_full);
    EXPECT_T(fx, pv(106, 100, PC_TRANSFER_post_pending_transfer, 0), transfers_full);
    EXPECT_T(fx, tr(102, 1, 2, 5), exists);
    /* With the index full a transient failure cannot leave a tombstone. */
    EXPECT_T(fx, tr(107, 99, 2, 5), debit_account_not_found);
    EXPECT_T(fx, tr(107, 99, 2, 5), debit_account_not_found);
    pc_ledger_stats_t stats;
    pc_ledger_stats(fx->ledger, &stats);
    ASSERT_EQ(stats.transfers_count, 4);
    ASSERT_EQ(stats.slots_count, 4);
    fx_free(fx);
}

/* ---- timestamps ---- */

static void test_timestamps(void) {
    fx_t *fx = fx_std();
    pc_ledger_stats_t stats;
    pc_ledger_stats(fx->ledger, &stats);
    uint64_t last = stats.timestamp_last;
    /* The clock goes backwards: events still get increasing timestamps. */
    fx->now = 5;
    pc_transfer_t batch[3] = {tr(100, 1, 2, 1), tr(101, 1, 2, 0), tr(102, 1, 2, 1)};
    pc_create_result_t r[3];
    ASSERT_EQ(fx_apply(fx, PC_OP_create_transfers, batch, 3, r), 1);
    ASSERT_EQ(fx->store[0].transfer.timestamp, last + 1);
    ASSERT_EQ(fx->store[1].transfer.timestamp, last + 3);
    pc_ledger_stats(fx->ledger, &stats);
    ASSERT_EQ(stats.timestamp_last, last + 3);
    fx->now = last + 1000;
    EXPECT_T(fx, tr(103, 1, 2, 1), created);
    ASSERT_EQ(fx->store[2].transfer.timestamp, last + 1000);
    /* Account timestamps likewise. */
    ASSERT_EQ(get(fx, 1).timestamp, 1000 * S_NS);
    ASSERT_EQ(get(fx, 7).timestamp, 1000 * S_NS + 6);
    fx_free(fx);
}

/* ---- reads ---- */

static int store_reader(void *ctx, uint64_t loc, pc_transfer_slot_t *out) {
    fx_t *fx = ctx;
    if (loc >= fx->store_count) return PC_EIO;
    *out = fx->store[loc];
    return PC_OK;
}

static int history(fx_t *fx, pc_u128 account, uint32_t flags, uint64_t min, uint64_t max,
                   uint32_t limit, pc_u128 *ids) {
    pc_account_filter_t f;
    memset(&f, 0, sizeof(f));
    f.account_id = account;
    f.flags = flags;
    f.timestamp_min = min;
    f.timestamp_max = max;
    f.limit = limit;
    pc_transfer_t out[16];
    ASSERT_TRUE(limit <= 16);
    int n = pc_ledger_get_account_transfers(fx->ledger, &f, store_reader, fx, out);
    for (int i = 0; i < n; i++)
        ids[i] = out[i].id;
    return n;
}

#define ASSERT_IDS(ids, n, ...)                                                                    \
    do {                                                                                           \
        const int pc__want[] = {__VA_ARGS__};                                                      \
        ASSERT_EQ((n), (int)PC_ARRAY_LEN(pc__want));                                               \
        for (size_t pc__i = 0; pc__i < PC_ARRAY_LEN(pc__want); pc__i++)                            \
            ASSERT_EQ((ids)[pc__i], pc__want[pc__i]);                                              \
    } while (0)

static void test_history(void) {
    fx_t *fx = fx_std();
    const uint32_t both = PC_FILTER_DEBITS | PC_FILTER_CREDITS;
    uint64_t ts[6];
    pc_transfer_t ts_list[6] = {tr(1, 1, 2, 1), tr(2, 2, 1, 1), tr(3, 1, 6, 1),
                                tr(4, 6, 1, 1), tr(5, 1, 2, 1), tr(6, 6, 7, 1)};
    for (int i = 0; i < 6; i++) {
        ts[i] = fx->now;
        EXPECT_T(fx, ts_list[i], created);
    }
    EXPECT_T(fx, tr(7, 1, 99, 1), credit_account_not_found); /* a tombstone: not listed */
    pc_u128 ids[16];
    int n = history(fx, 1, both, 0, 0, 10, ids);
    ASSERT_IDS(ids, n, 1, 2, 3, 4, 5);
    n = history(fx, 1, both | PC_FILTER_REVERSED, 0, 0, 2, ids);
    ASSERT_IDS(ids, n, 5, 4);
    n = history(fx, 1, both, 0, 0, 2, ids);
    ASSERT_IDS(ids, n, 1, 2);
    n = history(fx, 1, both, 0, 0, 3, ids);
    ASSERT_IDS(ids, n, 1, 2, 3);
    n = history(fx, 1, PC_FILTER_DEBITS, 0, 0, 10, ids);
    ASSERT_IDS(ids, n, 1, 3, 5);
    n = history(fx, 1, PC_FILTER_CREDITS | PC_FILTER_REVERSED, 0, 0, 10, ids);
    ASSERT_IDS(ids, n, 4, 2);
    n = history(fx, 1, both, ts[1], ts[3], 10, ids);
    ASSERT_IDS(ids, n, 2, 3, 4);
    n = history(fx, 1, both, ts[1], ts[3], 2, ids);
    ASSERT_IDS(ids, n, 2, 3);
    n = history(fx, 1, both | PC_FILTER_REVERSED, ts[1], ts[3], 2, ids);
    ASSERT_IDS(ids, n, 4, 3);
    n = history(fx, 1, both, ts[4], 0, 10, ids);
    ASSERT_IDS(ids, n, 5);
    n = history(fx, 1, both, 0, ts[0], 10, ids);
    ASSERT_IDS(ids, n, 1);
    n = history(fx, 6, both, 0, 0, 10, ids);
    ASSERT_IDS(ids, n, 3, 4, 6);
    ASSERT_EQ(history(fx, 99, both, 0, 0, 10, ids), 0);
    ASSERT_EQ(history(fx, 3, both, 0, 0, 10, ids), 0);
    /* Unflushed slots are served from memory. */
    fx->flush = false;
    EXPECT_T(fx, tr(8, 2, 1, 1), created);
    n = history(fx, 1, both | PC_FILTER_REVERSED, 0, 0, 2, ids);
    ASSERT_IDS(ids, n, 8, 5);
    fx_flush(fx);
    fx_free(fx);
}

static void test_history_posts_and_filters(void) {
    fx_t *fx = fx_std();
    const uint32_t both = PC_FILTER_DEBITS | PC_FILTER_CREDITS;
    EXPECT_T(fx, pend(1, 1, 2, 10, 0), created);
    EXPECT_T(fx, pv(2, 1, PC_TRANSFER_post_pending_transfer, 0), created);
    pc_u128 ids[16];
    int n = history(fx, 2, PC_FILTER_CREDITS, 0, 0, 10, ids);
    ASSERT_IDS(ids, n, 1, 2);
    pc_account_filter_t f;
    pc_transfer_t out[4];
    memset(&f, 0, sizeof(f));
    f.account_id = 1;
    f.flags = both;
    f.limit = 4;
    ASSERT_EQ(pc_ledger_get_account_transfers(fx->ledger, &f, store_reader, fx, out), 2);
    pc_account_filter_t g = f;
    g.reserved[3] = 1;
    ASSERT_EQ(pc_ledger_get_account_transfers(fx->ledger, &g, store_reader, fx, out), PC_EINVAL);
    g = f;
    g.limit = 0;
    ASSERT_EQ(pc_ledger_get_account_transfers(fx->ledger, &g, store_reader, fx, out), PC_EINVAL);
    g = f;
    g.limit = PC_BATCH_EVENTS_MAX + 1;
    ASSERT_EQ(pc_ledger_get_account_transfers(fx->ledger, &g, store_reader, fx, out), PC_EINVAL);
    g = f;
    g.flags = PC_FILTER_REVERSED;
    ASSERT_EQ(pc_ledger_get_account_transfers(fx->ledger, &g, store_reader, fx, out), PC_EINVAL);
    g = f;
    g.timestamp_min = 10;
    g.timestamp_max = 9;
    ASSERT_EQ(pc_ledger_get_account_transfers(fx->ledger, &g, store_reader, fx, out), PC_EINVAL);
    g = f;
    g.account_id = 0;
    ASSERT_EQ(pc_ledger_get_account_transfers(fx->ledger, &g, store_reader, fx, out), PC_EINVAL);
    /* A reader error is returned. */
    fx->store_count = 0;
    ASSERT_EQ(pc_ledger_get_account_transfers(fx->ledger, &f, store_reader, fx, out), PC_EIO);
    fx_free(fx);
}

static void test_lookup_and_loc(void) {
    fx_t *fx = fx_std();
    pc_u128 ids[4] = {2, 99, 5, 1};
    pc_account_t out[4];
    ASSERT_EQ(pc_ledger_lookup_accounts(fx->ledger, ids, 4, out), 3);
    ASSERT_EQ_U128(out[0].id, 2);
    ASSERT_EQ_U128(out[1].id, 5);
    ASSERT_EQ_U128(out[2].id, 1);
    fx->flush = false;
    EXPECT_T(fx, tr(100, 1, 2, 5), created);
    uint64_t loc = 99;
    const pc_transfer_t *unflushed = NULL;
    ASSERT_EQ(pc_ledger_transfer_loc(fx->ledger, 100, &loc, &unflushed), PC_OK);
    ASSERT_EQ(loc, 0);
    ASSERT_TRUE(unflushed != NULL && unflushed->id == 100);
    fx_flush(fx);
    ASSERT_EQ(pc_ledger_transfer_loc(fx->ledger, 100, &loc, &unflushed), PC_OK);
    ASSERT_TRUE(unflushed == NULL);
    ASSERT_EQ(pc_ledger_transfer_loc(fx->ledger, 101, &loc, &unflushed), PC_ENOTFOUND);
    ASSERT_EQ(pc_ledger_transfer_loc(fx->ledger, 0, &loc, &unflushed), PC_ENOTFOUND);
    fx_free(fx);
}

static void test_prefetch(void) {
    fx_t *fx = fx_std();
    EXPECT_T(fx, tr(100, 1, 2, 5), created);                                   /* loc 0 */
    EXPECT_T(fx, pend(101, 1, 2, 5, 0), created);                              /* loc 1, pending */
    EXPECT_T(fx, pend(102, 1, 2, 5, 0), created);                              /* loc 2 */
    EXPECT_T(fx, pv(103, 102, PC_TRANSFER_void_pending_transfer, 0), created); /* loc 3 */
    EXPECT_T(fx, tr(104, 99, 2, 5), debit_account_not_found); /* loc 4, tombstone */
    pc_transfer_t batch[7] = {
        tr(100, 1, 2, 5),                                   /* exists: loc 0 */
        tr(100, 1, 2, 6),                                   /* same loc, listed once */
        pend(101, 1, 2, 5, 0),                              /* in the pool: nothing */
        pv(105, 101, PC_TRANSFER_post_pending_transfer, 0), /* unresolved: nothing */
        pv(106, 102, PC_TRANSFER_post_pending_transfer, 0), /* resolved: loc 2 */
        tr(104, 1, 2, 5),                                   /* failed: nothing */
        pv(107, 100, PC_TRANSFER_post_pending_transfer, 0), /* not pending: nothing */
    };
    uint64_t locs[7];
    uint32_t n = pc_ledger_prefetch(fx->ledger, PC_OP_create_transfers, batch, 7, locs);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(locs[0], 0);
    ASSERT_EQ(locs[1], 2);
    ASSERT_EQ(pc_ledger_prefetch(fx->ledger, PC_OP_create_accounts, batch, 7, locs), 0);
    for (uint32_t i = 0; i < n; i++) {
        pc_ledger_prefetch_put(fx->ledger, locs[i], &fx->store[locs[i]].transfer);
    }
    pc_create_result_t r[7];
    ASSERT_EQ(pc_ledger_apply(fx->ledger, PC_OP_create_transfers, 0, fx->now, batch, 7, r), 6);
    ASSERT_STREQ(pc_transfer_result_name(r[0].result), "exists");
    ASSERT_STREQ(pc_transfer_result_name(r[1].result), "exists_with_different_amount");
    ASSERT_STREQ(pc_transfer_result_name(r[2].result), "exists");
    ASSERT_EQ(r[3].index, 4);
    ASSERT_STREQ(pc_transfer_result_name(r[3].result), "pending_transfer_already_voided");
    ASSERT_STREQ(pc_transfer_result_name(r[4].result), "id_already_failed");
    ASSERT_STREQ(pc_transfer_result_name(r[5].result), "pending_transfer_not_pending");
    fx_free(fx);
}

/* A pending resolved inside the batch that prefetch saw unresolved: a later
 * event's retry and a second post still find its record. */
static void test_prefetch_resolved_in_batch(void) {
    fx_t *fx = fx_std();
    EXPECT_T(fx, pend(100, 1, 2, 5, 3), created);
    EXPECT_T(fx, pend(101, 1, 2, 5, 0), created);
    fx->now += 10 * S_NS; /* 100 expires when the next batch starts */
    pc_transfer_t batch[4] = {
        pv(102, 101, PC_TRANSFER_post_pending_transfer, 0),
        pv(103, 101, PC_TRANSFER_void_pending_transfer, 0),
        pend(101, 1, 2, 5, 0),
        pv(104, 100, PC_TRANSFER_post_pending_transfer, 0),
    };
    pc_create_result_t r[4];
    ASSERT_EQ(fx_apply(fx, PC_OP_create_transfers, batch, 4, r), 3);
    ASSERT_STREQ(pc_transfer_result_name(r[0].result), "pending_transfer_already_posted");
    ASSERT_STREQ(pc_transfer_result_name(r[1].result), "exists");
    ASSERT_STREQ(pc_transfer_result_name(r[2].result), "pending_transfer_expired");
    fx_free(fx);
}

static void test_totals(void) {
    fx_t *fx = fx_std();
    EXPECT_T(fx, tr(100, 1, 2, 5), created);
    EXPECT_T(fx, pend(101, 6, 7, 3, 0), created);
    pc_transfer_t t = tr(102, 5, 1, 9);
    t.ledger = 2;
    EXPECT_A(fx, mkacct(8, 2, 0), created);
    t.credit_account_id = 8;
    EXPECT_T(fx, t, created);
    pc_ledger_totals_t totals[4];
    ASSERT_EQ(pc_ledger_totals(fx->ledger, totals, 4), 2);
    ASSERT_EQ(totals[0].ledger, 1);
    ASSERT_EQ_U128(totals[0].debits_posted, 5);
    ASSERT_EQ_U128(totals[0].credits_posted, 5);
    ASSERT_EQ_U128(totals[0].debits_pending, 3);
    ASSERT_EQ_U128(totals[0].credits_pending, 3);
    ASSERT_EQ(totals[1].ledger, 2);
    ASSERT_EQ_U128(totals[1].debits_posted, 9);
    ASSERT_EQ_U128(totals[1].credits_posted, 9);
    ASSERT_EQ(pc_ledger_totals(fx->ledger, totals, 1), 2);
    ASSERT_EQ(totals[0].ledger, 1);
    fx_free(fx);
}

/* ---- snapshot and rebuild ---- */

/* A state with every kind of record: posted, pending (with and without
 * timeout), posted/voided/expired pendings, tombstones, chains. */
static fx_t *fx_rich(void) {
    fx_t *fx = fx_std();
    EXPECT_T(fx, tr(100, 1, 2, 5), created);
    EXPECT_T(fx, pend(101, 1, 2, 5, 0), created);
    EXPECT_T(fx, pend(102, 6, 7, 5, 30), created);
    EXPECT_T(fx, pend(103, 1, 6, 5, 2), created);
    EXPECT_T(fx, pend(104, 2, 6, 9, 0), created);
    EXPECT_T(fx, pend(105, 2, 7, 9, 100), created);
    EXPECT_T(fx, pv(106, 104, PC_TRANSFER_post_pending_transfer, 4), created);
    EXPECT_T(fx, pv(107, 105, PC_TRANSFER_void_pending_transfer, 0), created);
    EXPECT_T(fx, tr(108, 3, 1, 5), exceeds_credits);
    EXPECT_T(fx, tr(109, 99, 1, 5), debit_account_not_found);
    fx->now += 5 * S_NS; /* 103 expires */
    pc_transfer_t chain[2] = {tr(110, 1, 2, 5), tr(111, 2, 1, 5)};
    chain[0].flags = PC_TRANSFER_linked;
    pc_create_result_t r[2];
    ASSERT_EQ(fx_apply(fx, PC_OP_create_transfers, chain, 2, r), 0);
    ASSERT_BAL(fx, 1, 5, 10, 0, 5);
    return fx;
}

static fx_t *fx_restore(fx_t *fx, int *rc_out) {
    size_t size = pc_ledger_snapshot_size(fx->ledger);
    void *buf = malloc(size);
    ASSERT_EQ(pc_ledger_snapshot_write(fx->ledger, buf, size), size);
    fx_t *copy = fx_new_config(64, 256, 16);
    int rc = pc_ledger_snapshot_read(copy->ledger, buf, size);
    free(buf);
    if (rc == PC_OK) {
        for (uint64_t loc = 0; rc == PC_OK && loc < fx->store_count; loc++) {
            copy->store[loc] = fx->store[loc];
            rc = pc_ledger_rebuild_slot(copy->ledger, loc, &fx->store[loc]);
        }
        copy->store_count = fx->store_count;
        if (rc == PC_OK) rc = pc_ledger_rebuild_finish(copy->ledger);
    }
    copy->now = fx->now;
    *rc_out = rc;
    return copy;
}

static void test_snapshot_rebuild(void) {
    fx_t *fx = fx_rich();
    int rc = 0;
    fx_t *copy = fx_restore(fx, &rc);
    ASSERT_EQ(rc, PC_OK);
    ASSERT_EQ(pc_ledger_slots_count(copy->ledger), fx->store_count);
    ASSERT_EQ_U128(fx_checksum(copy), fx_checksum(fx));
    pc_ledger_stats_t a, b;
    pc_ledger_stats(fx->ledger, &a);
    pc_ledger_stats(copy->ledger, &b);
    ASSERT_EQ(memcmp(&a, &b, sizeof(a)), 0);
    /* Both continue identically: retries, posts, expiry, history. */
    pc_transfer_t batch[6] = {
        tr(100, 1, 2, 5),
        pv(200, 101, PC_TRANSFER_post_pending_transfer, 0),
        pv(201, 104, PC_TRANSFER_void_pending_transfer, 0),
        pv(202, 103, PC_TRANSFER_void_pending_transfer, 0),
        tr(108, 3, 1, 5),
        pv(203, 105, PC_TRANSFER_post_pending_transfer, 0),
    };
    pc_create_result_t ra[6], rb[6];
    fx->now += 100 * S_NS;
    copy->now = fx->now;
    uint32_t na = fx_apply(fx, PC_OP_create_transfers, batch, 6, ra);
    uint32_t nb = fx_apply(copy, PC_OP_create_transfers, batch, 6, rb);
    ASSERT_EQ(na, nb);
    ASSERT_EQ(memcmp(ra, rb, na * sizeof(ra[0])), 0);
    ASSERT_EQ(na, 5);
    ASSERT_STREQ(pc_transfer_result_name(ra[1].result), "pending_transfer_already_posted");
    ASSERT_STREQ(pc_transfer_result_name(ra[2].result), "pending_transfer_expired");
    ASSERT_EQ_U128(fx_checksum(copy), fx_checksum(fx));
    pc_u128 ids_a[16], ids_b[16];
    int ha = history(fx, 2, PC_FILTER_DEBITS | PC_FILTER_CREDITS, 0, 0, 16, ids_a);
    int hb = history(copy, 2, PC_FILTER_DEBITS | PC_FILTER_CREDITS, 0, 0, 16, ids_b);
    ASSERT_EQ(ha, hb);
    ASSERT_EQ(memcmp(ids_a, ids_b, (size_t)ha * sizeof(pc_u128)), 0);
    fx_free(copy);
    fx_free(fx);
}

static void test_snapshot_corrupt(void) {
    fx_t *fx = fx_rich();
    pc__corrupt_quiet = true;
    size_t size = pc_ledger_snapshot_size(fx->ledger);
    uint8_t *buf = malloc(size);
    ASSERT_EQ(pc_ledger_snapshot_write(fx->ledger, buf, size), size);
    for (size_t at = 0; at < size; at += 61) {
        buf[at] ^= 0x20;
        fx_t *copy = fx_new_config(64, 256, 16);
        ASSERT_EQ(pc_ledger_snapshot_read(copy->ledger, buf, size), PC_ECORRUPT);
        fx_free(copy);
        buf[at] ^= 0x20;
    }
    fx_t *copy = fx_new_config(64, 256, 16);
    ASSERT_EQ(pc_ledger_snapshot_read(copy->ledger, buf, size - 1), PC_ECORRUPT);
    fx_free(copy);
    copy = fx_new_config(4, 256, 16);
    ASSERT_EQ(pc_ledger_snapshot_read(copy->ledger, buf, size), PC_EFULL);
    fx_free(copy);
    /* A store that does not match: a history link changed. */
    fx->store[5].prev_debit ^= 1;
    int rc = 0;
    copy = fx_restore(fx, &rc);
    ASSERT_EQ(rc, PC_ECORRUPT);
    fx_free(copy);
    fx->store[5].prev_debit ^= 1;
    /* A missing tail. */
    fx->store_count--;
    copy = fx_restore(fx, &rc);
    ASSERT_EQ(rc, PC_ECORRUPT);
    fx_free(copy);
    free(buf);
    fx_free(fx);
}

/* ---- routing ---- */

static const char *rt_name(fx_t *fx, pc_routing_t r) {
    const char *name = pc_routing_result_name(fx_one(fx, PC_OP_set_routing, &r));
    return name ? name : "(unknown)";
}

#define EXPECT_R(fx, r, name) ASSERT_STREQ(rt_name((fx), (r)), #name)

/* A routing record owning buckets first..last (inclusive) plus `extra`
 * (a bucket number, or -1 for none). */
static pc_routing_t routing(uint64_t epoch, uint32_t first, uint32_t last, int extra) {
    pc_routing_t r;
    memset(&r, 0, sizeof(r));
    r.epoch = epoch;
    for (uint32_t b = first; b <= last && b < PC_BUCKETS; b++)
        r.buckets[b / 64] |= 1ull << (b % 64);
    if (extra >= 0) r.buckets[extra / 64] |= 1ull << (extra % 64);
    return r;
}

static pc_routing_t routing_of(fx_t *fx) {
    pc_routing_t r;
    pc_ledger_routing(fx->ledger, &r);
    return r;
}

/* An id whose high word is set lands in (hi mod 100 * 16 + lo mod 100) mod
 * 100; pc_bucket_of must agree with a real 128-bit division everywhere. */
static void test_bucket_of(void) {
    ASSERT_EQ(pc_bucket_of(0), 0);
    ASSERT_EQ(pc_bucket_of(99), 99);
    ASSERT_EQ(pc_bucket_of(100), 0);
    ASSERT_EQ(pc_bucket_of(12345), 45);
    ASSERT_EQ(pc_bucket_of((pc_u128)1 << 64), 16);
    /* Bit 127 (the shadow bit) is left out: a shadow copy shares its bucket. */
    ASSERT_EQ(pc_bucket_of(PC_U128_MAX), (uint32_t)((PC_U128_MAX >> 1) % 100));
    pc_prng_t prng;
    pc_prng_init(&prng, 4);
    for (int i = 0; i < 100000; i++) {
        pc_u128 id = ((pc_u128)pc_prng_next(&prng) << 64) | pc_prng_next(&prng);
        if (i % 3 == 0) id >>= (uint32_t)(i % 128);
        ASSERT_EQ(pc_bucket_of(id), (uint32_t)((id & ~PC_SHADOW_BIT) % 100));
        ASSERT_EQ(pc_bucket_of(PC_SHADOW_ID(id)), pc_bucket_of(id));
    }
}

/* A fresh ledger owns every bucket at epoch 0, and behaves as it always
 * did: accounts anywhere, transfers between any of them. */
static void test_routing_default(void) {
    fx_t *fx = fx_new_config(256, 256, 16);
    pc_routing_t r = routing_of(fx);
    pc_routing_t all = routing(0, 0, PC_BUCKETS - 1, -1);
    ASSERT_EQ(memcmp(&r, &all, sizeof(r)), 0);
    ASSERT_EQ(pc_ledger_routing_epoch(fx->ledger), 0);
    ASSERT_EQ(r.buckets[1], (1ull << 36) - 1);
    for (uint32_t i = 1; i <= 200; i++) EXPECT_A(fx, mkacct(i, 1, 0), created);
    EXPECT_A(fx, mkacct(((pc_u128)7 << 64) | 3, 1, 0), created);
    for (uint32_t b = 0; b < PC_BUCKETS; b++)
        ASSERT_EQ(pc_ledger_bucket_accounts(fx->ledger, b), b == (7 * 16 + 3) % 100 ? 3 : 2);
    EXPECT_T(fx, tr(1000, 1, 199, 5), created);
    EXPECT_T(fx, tr(1001, ((pc_u128)7 << 64) | 3, 2, 5), created);
    /* Repeating the default is an idempotent no-op, changing it at the
     * same epoch a conflict. */
    EXPECT_R(fx, all, exists);
    EXPECT_R(fx, routing(0, 0, 98, -1), routing_epoch_conflict);
    fx_free(fx);
}

static void test_set_routing_results(void) {
    fx_t *fx = fx_new_config(64, 64, 4);
    pc_routing_t r = routing(5, 0, 49, -1);
    r.reserved[0] = 1;
    EXPECT_R(fx, r, reserved_field);
    r = routing(5, 0, 49, -1);
    r.reserved[103] = 0x80;
    EXPECT_R(fx, r, reserved_field);
    r = routing(5, 0, 49, -1);
    r.buckets[1] |= 1ull << (100 - 64); /* bucket 100 does not exist */
    EXPECT_R(fx, r, reserved_field);
    r = routing(5, 0, 49, -1);
    r.buckets[1] |= 1ull << 63; /* nor does 127 */
    EXPECT_R(fx, r, reserved_field);
    ASSERT_EQ(pc_ledger_routing_epoch(fx->ledger), 0);

    EXPECT_R(fx, routing(5, 0, 49, -1), created);
    ASSERT_EQ(pc_ledger_routing_epoch(fx->ledger), 5);
    pc_routing_t now = routing_of(fx), want = routing(5, 0, 49, -1);
    ASSERT_EQ(memcmp(&now, &want, sizeof(now)), 0);
    /* An idempotent repeat, a conflicting one, an older one. */
    EXPECT_R(fx, routing(5, 0, 49, -1), exists);
    EXPECT_R(fx, routing(5, 0, 50, -1), routing_epoch_conflict);
    EXPECT_R(fx, routing(5, 1, 49, -1), routing_epoch_conflict);
    EXPECT_R(fx, routing(4, 0, 49, -1), routing_epoch_stale);
    EXPECT_R(fx, routing(0, 0, 99, -1), routing_epoch_stale);
    /* Reserved fields are checked before the epoch. */
    r = routing(4, 0, 49, -1);
    r.reserved[50] = 1;
    EXPECT_R(fx, r, reserved_field);
    now = routing_of(fx);
    ASSERT_EQ(memcmp(&now, &want, sizeof(now)), 0);
    /* A later epoch replaces the set: nothing owned, then everything. */
    EXPECT_R(fx, routing(6, 1, 0, -1), created);
    now = routing_of(fx);
    ASSERT_EQ(now.buckets[0] | now.buckets[1], 0);
    EXPECT_R(fx, routing(UINT64_MAX, 0, 99, -1), created);
    EXPECT_A(fx, mkacct(77, 1, 0), created);
    ASSERT_EQ(pc_ledger_routing_epoch(fx->ledger), UINT64_MAX);
    fx_free(fx);
}

/* Accounts of buckets the unit does not own are refused; an unowned id is
 * never found by a lookup; a broken chain gives its bucket counts back. */
static void test_routing_wrong_unit_accounts(void) {
    fx_t *fx = fx_new_config(64, 64, 4);
    EXPECT_R(fx, routing(1, 0, 49, 77), created);
    EXPECT_A(fx, mkacct(10, 1, 0), created);
    EXPECT_A(fx, mkacct(177, 1, 0), created);
    EXPECT_A(fx, mkacct(60, 1, 0), wrong_unit);
    EXPECT_A(fx, mkacct(150, 1, 0), wrong_unit);
    EXPECT_A(fx, mkacct(99, 1, 0), wrong_unit);
    EXPECT_A(fx, mkacct(((pc_u128)1 << 64) | 34, 1, 0), wrong_unit); /* bucket 50 */
    EXPECT_A(fx, mkacct(((pc_u128)1 << 64) | 33, 1, 0), created);    /* bucket 49 */
    /* Stateless checks come first: they answer alike on every unit. */
    EXPECT_A(fx, mkacct(60, 0, 0), ledger_must_not_be_zero);
    /* An existing account in an owned bucket is still a retry. */
    EXPECT_A(fx, mkacct(10, 1, 0), exists);
    pc_u128 ids[3] = {10, 60, 150};
    pc_account_t out[3];
    ASSERT_EQ(pc_ledger_lookup_accounts(fx->ledger, ids, 3, out), 1);
    ASSERT_EQ_U128(out[0].id, 10);
    ASSERT_EQ(pc_ledger_bucket_accounts(fx->ledger, 10), 1);
    ASSERT_EQ(pc_ledger_bucket_accounts(fx->ledger, 49), 1);
    ASSERT_EQ(pc_ledger_bucket_accounts(fx->ledger, 60), 0);

    pc_account_t chain[2] = {mkacct(20, 1, PC_ACCOUNT_linked), mkacct(61, 1, 0)};
    pc_create_result_t results[2];
    ASSERT_EQ(fx_apply(fx, PC_OP_create_accounts, chain, 2, results), 2);
    ASSERT_STREQ(pc_account_result_name(results[0].result), "linked_event_failed");
    ASSERT_STREQ(pc_account_result_name(results[1].result), "wrong_unit");
    ASSERT_EQ(pc_ledger_bucket_accounts(fx->ledger, 20), 0);
    /* Bucket 20 is empty again, so it may be given up. */
    EXPECT_R(fx, routing(2, 0, 19, 77), bucket_not_empty); /* bucket 49 holds one */
    EXPECT_R(fx, routing(2, 0, 49, 77), created);
    fx_free(fx);
}

/* A transfer runs only when both of its accounts are in owned buckets; one
 * side elsewhere (a cross-unit transfer) is wrong_unit too, and leaves no
 * tombstone: the same id succeeds once the unit owns both sides. */
static void test_routing_wrong_unit_transfers(void) {
    fx_t *fx = fx_new_config(64, 64, 8);
    EXPECT_R(fx, routing(1, 0, 49, -1), created);
    EXPECT_A(fx, mkacct(1, 1, 0), created);
    EXPECT_A(fx, mkacct(2, 1, 0), created);
    EXPECT_T(fx, tr(100, 1, 60, 5), wrong_unit);
    EXPECT_T(fx, tr(101, 60, 1, 5), wrong_unit);
    EXPECT_T(fx, tr(102, 61, 62, 5), wrong_unit);
    EXPECT_T(fx, pend(103, 1, 160, 5, 0), wrong_unit);
    /* Stateless checks first. */
    EXPECT_T(fx, tr(104, 60, 60, 5), accounts_must_be_different);
    EXPECT_T(fx, tr(105, 1, 2, 5), created);
    EXPECT_T(fx, pend(106, 1, 2, 7, 0), created);
    /* A post or void naming an account of another unit; one that leaves the
     * accounts to its pending transfer is found by the pending's id. */
    pc_transfer_t post = pv(107, 106, PC_TRANSFER_post_pending_transfer, 0);
    post.credit_account_id = 70;
    EXPECT_T(fx, post, wrong_unit);
    post.credit_account_id = 0;
    post.debit_account_id = 80;
    EXPECT_T(fx, post, wrong_unit);
    post.debit_account_id = 0;
    EXPECT_T(fx, post, created);
    ASSERT_BAL(fx, 1, 0, 12, 0, 0);
    pc_ledger_stats_t stats;
    pc_ledger_stats(fx->ledger, &stats);
    ASSERT_EQ(stats.transfers_count, 3); /* 105, 106, 107: no tombstones */
    /* Once the unit owns bucket 60 and the account exists, 100 runs. */
    EXPECT_R(fx, routing(2, 0, 99, -1), created);
    EXPECT_A(fx, mkacct(60, 1, 0), created);
    EXPECT_T(fx, tr(100, 1, 60, 5), created);
    EXPECT_T(fx, tr(101, 60, 1, 5), created);
    ASSERT_BAL(fx, 60, 0, 5, 0, 5);
    fx_free(fx);
}

static void test_routing_bucket_not_empty(void) {
    fx_t *fx = fx_new_config(64, 64, 4);
    EXPECT_A(fx, mkacct(7, 1, 0), created);
    EXPECT_A(fx, mkacct(107, 1, 0), created);
    /* Giving up bucket 7, which holds two accounts, is refused whole. */
    pc_routing_t r = routing(1, 8, 99, -1);
    EXPECT_R(fx, r, bucket_not_empty);
    ASSERT_EQ(pc_ledger_routing_epoch(fx->ledger), 0);
    pc_routing_t now = routing_of(fx), all = routing(0, 0, 99, -1);
    ASSERT_EQ(memcmp(&now, &all, sizeof(now)), 0);
    /* Empty buckets may go; bucket 7 stays. */
    EXPECT_R(fx, routing(1, 7, 7, -1), created);
    EXPECT_A(fx, mkacct(8, 1, 0), wrong_unit);
    EXPECT_A(fx, mkacct(207, 1, 0), created);
    EXPECT_R(fx, routing(2, 1, 0, -1), bucket_not_empty);
    ASSERT_EQ(pc_ledger_bucket_accounts(fx->ledger, 7), 3);
    fx_free(fx);
}

/* Routing is state: in the snapshot (restored exactly, counts recounted) and
 * in the state checksum. */
static void test_routing_snapshot(void) {
    fx_t *fx = fx_std();
    EXPECT_R(fx, routing(4, 0, 49, 77), created);
    EXPECT_A(fx, mkacct(177, 1, 0), created);
    EXPECT_T(fx, tr(100, 1, 177, 5), created);
    int rc = 0;
    fx_t *copy = fx_restore(fx, &rc);
    ASSERT_EQ(rc, PC_OK);
    pc_routing_t a = routing_of(fx), b = routing_of(copy);
    ASSERT_EQ(memcmp(&a, &b, sizeof(a)), 0);
    ASSERT_EQ(b.epoch, 4);
    ASSERT_EQ_U128(fx_checksum(copy), fx_checksum(fx));
    for (uint32_t k = 0; k < PC_BUCKETS; k++)
        ASSERT_EQ(pc_ledger_bucket_accounts(copy->ledger, k),
                  pc_ledger_bucket_accounts(fx->ledger, k));
    ASSERT_EQ(pc_ledger_bucket_accounts(copy->ledger, 77), 1);
    /* Both continue alike. */
    fx_t *both[2] = {fx, copy};
    for (int i = 0; i < 2; i++) {
        EXPECT_A(both[i], mkacct(60, 1, 0), wrong_unit);
        EXPECT_T(both[i], tr(101, 1, 60, 5), wrong_unit);
        EXPECT_R(both[i], routing(4, 0, 49, 77), exists);
        EXPECT_R(both[i], routing(5, 0, 49, -1), bucket_not_empty);
        EXPECT_R(both[i], routing(5, 0, 49, 78), bucket_not_empty);
        EXPECT_R(both[i], routing(5, 0, 60, 77), created);
        EXPECT_A(both[i], mkacct(60, 1, 0), created);
    }
    ASSERT_EQ_U128(fx_checksum(copy), fx_checksum(fx));
    fx_free(copy);
    fx_free(fx);
}

/* Recomputes a snapshot's checksum after a test edited it (the layout of
 * snapshot.c: an 80-byte header, body_size at 48, the checksum at 64 over
 * the header with the checksum zero, seed 21, then the body). */
static void snapshot_reseal(uint8_t *buf) {
    uint64_t body_size;
    memcpy(&body_size, buf + 48, 8);
    memset(buf + 64, 0, 16);
    pc_u128 seed = pc_checksum(buf, 80, 21);
    pc_u128 sum = pc_checksum(buf + 80, body_size, (uint64_t)seed);
    memcpy(buf + 64, &sum, 16);
}

/* A routing block naming a bucket past 99, or an account in a bucket the
 * unit does not own, is corruption even under a valid checksum. */
static void test_routing_snapshot_corrupt(void) {
    fx_t *fx = fx_std();
    EXPECT_R(fx, routing(3, 0, 49, -1), created);
    pc__corrupt_quiet = true;
    size_t size = pc_ledger_snapshot_size(fx->ledger);
    uint8_t *buf = malloc(size);
    ASSERT_EQ(pc_ledger_snapshot_write(fx->ledger, buf, size), size);
    uint64_t high;
    memcpy(&high, buf + 80 + 16, 8);
    uint64_t bad_high = high | (1ull << 40); /* bucket 104 */
    memcpy(buf + 80 + 16, &bad_high, 8);
    snapshot_reseal(buf);
    fx_t *copy = fx_new_config(64, 256, 16);
    ASSERT_EQ(pc_ledger_snapshot_read(copy->ledger, buf, size), PC_ECORRUPT);
    fx_free(copy);
    memcpy(buf + 80 + 16, &high, 8);
    uint64_t low;
    memcpy(&low, buf + 80 + 8, 8);
    uint64_t without_1 = low & ~2ull; /* account 1 lives in bucket 1 */
    memcpy(buf + 80 + 8, &without_1, 8);
    snapshot_reseal(buf);
    copy = fx_new_config(64, 256, 16);
    ASSERT_EQ(pc_ledger_snapshot_read(copy->ledger, buf, size), PC_ECORRUPT);
    fx_free(copy);
    memcpy(buf + 80 + 8, &low, 8);
    snapshot_reseal(buf);
    copy = fx_new_config(64, 256, 16);
    ASSERT_EQ(pc_ledger_snapshot_read(copy->ledger, buf, size), PC_OK);
    ASSERT_EQ(pc_ledger_routing_epoch(copy->ledger), 3);
    fx_free(copy);
    free(buf);
    fx_free(fx);
}

/* A snapshot from before routing (version 1: no routing block) loads as
 * owning every bucket at epoch 0. Built by hand from a version 3 one. */
static void test_routing_snapshot_v1(void) {
    fx_t *fx = fx_std();
    size_t size = pc_ledger_snapshot_size(fx->ledger);
    uint8_t *buf = malloc(size);
    ASSERT_EQ(pc_ledger_snapshot_write(fx->ledger, buf, size), size);
    uint32_t version;
    memcpy(&version, buf + 8, 4);
    ASSERT_EQ(version, 4); /* with no purge, laid out as version 2 */
    /* Drop the 32-byte routing block after the 80-byte header. */
    memmove(buf + 80, buf + 80 + 32, size - 80 - 32);
    size -= 32;
    version = 1;
    memcpy(buf + 8, &version, 4);
    uint64_t body_size;
    memcpy(&body_size, buf + 48, 8);
    body_size -= 32;
    memcpy(buf + 48, &body_size, 8);
    snapshot_reseal(buf);
    fx_t *copy = fx_new_config(64, 256, 16);
    ASSERT_EQ(pc_ledger_snapshot_read(copy->ledger, buf, size), PC_OK);
    ASSERT_EQ(pc_ledger_rebuild_finish(copy->ledger), PC_OK);
    ASSERT_EQ(pc_ledger_routing_epoch(copy->ledger), 0);
    ASSERT_EQ_U128(fx_checksum(copy), fx_checksum(fx));
    ASSERT_EQ(pc_ledger_bucket_accounts(copy->ledger, 1), 1);
    free(buf);
    fx_free(copy);
    fx_free(fx);
}

/* The checksum covers the epoch and the set: two ledgers that differ only
 * in routing differ in checksum. */
static void test_routing_checksum(void) {
    fx_t *a = fx_new_config(16, 16, 4), *b = fx_new_config(16, 16, 4);
    fx_t *c = fx_new_config(16, 16, 4), *d = fx_new_config(16, 16, 4);
    fx_t *e = fx_new_config(16, 16, 4);
    ASSERT_EQ_U128(fx_checksum(a), fx_checksum(b));
    EXPECT_R(a, routing(0, 0, 99, -1), exists);  /* same time used, nothing changed */
    EXPECT_R(b, routing(1, 0, 99, -1), created); /* epoch only */
    EXPECT_R(c, routing(1, 0, 98, -1), created); /* epoch and set */
    EXPECT_R(d, routing(1, 0, 99, -1), created);
    EXPECT_R(e, routing(1, 1, 99, -1), created); /* bucket 0, in the low word */
    ASSERT_TRUE(fx_checksum(a) != fx_checksum(b));
    ASSERT_TRUE(fx_checksum(b) != fx_checksum(c));
    ASSERT_TRUE(fx_checksum(a) != fx_checksum(c));
    ASSERT_TRUE(fx_checksum(b) != fx_checksum(e));
    ASSERT_EQ_U128(fx_checksum(b), fx_checksum(d));
    fx_free(e);
    fx_free(a);
    fx_free(b);
    fx_free(c);
    fx_free(d);
}

static void test_init_config(void) {
    pc_ledger_t *l = NULL;
    pc_ledger_config_t c = {0, 10, 10};
    ASSERT_EQ(pc_ledger_init(&c, &l), PC_EINVAL);
    c = (pc_ledger_config_t){10, 0, 10};
    ASSERT_EQ(pc_ledger_init(&c, &l), PC_EINVAL);
    c = (pc_ledger_config_t){10, 10, 0};
    ASSERT_EQ(pc_ledger_init(&c, &l), PC_EINVAL);
    c = (pc_ledger_config_t){PC_ACCOUNTS_MAX_LIMIT + 1, 10, 10};
    ASSERT_EQ(pc_ledger_init(&c, &l), PC_EINVAL);
    ASSERT_EQ(pc_ledger_init(NULL, &l), PC_EINVAL);
    /* The default configuration maps its tables lazily. */
    c = (pc_ledger_config_t){PC_ACCOUNTS_MAX_DEFAULT, PC_TRANSFERS_MAX_DEFAULT,
                             PC_PENDING_MAX_DEFAULT};
    ASSERT_EQ(pc_ledger_init(&c, &l), PC_OK);
    pc_ledger_stats_t s;
    pc_ledger_stats(l, &s);
    ASSERT_EQ(s.transfers_max, PC_TRANSFERS_MAX_DEFAULT);
    pc_ledger_deinit(l);
}

#define TESTS(X)                                                                                   \
    X(test_init_config)                                                                            \
    X(test_account_validation)                                                                     \
    X(test_account_exists)                                                                         \
    X(test_accounts_full)                                                                          \
    X(test_account_chains)                                                                         \
    X(test_transfer_validation)                                                                    \
    X(test_transfer_account_results)                                                               \
    X(test_transfer_exists)                                                                        \
    X(test_exceeds_changes_nothing)                                                                \
    X(test_id_already_failed)                                                                      \
    X(test_post_and_void)                                                                          \
    X(test_post_void_results)                                                                      \
    X(test_pending_expires)                                                                        \
    X(test_expire_boundary)                                                                        \
    X(test_expire_idle) X(test_next_expiry)                                          \
    X(test_overflows)                                                                              \
    X(test_balancing)                                                                              \
    X(test_transfer_chains)                                                                        \
    X(test_capacity)                                                                               \
    X(test_timestamps)                                                                             \
    X(test_history)                                                                                \
    X(test_history_posts_and_filters)                                                              \
    X(test_lookup_and_loc)                                                                         \
    X(test_prefetch)                                                                               \
    X(test_prefetch_resolved_in_batch)                                                             \
    X(test_totals)                                                                                 \
    X(test_snapshot_rebuild)                                                                       \
    X(test_snapshot_corrupt)                                                                       \
    X(test_bucket_of)                                                                              \
    X(test_routing_default)                                                                        \
    X(test_set_routing_results)                                                                    \
    X(test_routing_wrong_unit_accounts)                                                            \
    X(test_routing_wrong_unit_transfers)                                                           \
    X(test_routing_bucket_not_empty)                                                               \
    X(test_routing_snapshot)                                                                       \
    X(test_routing_snapshot_v1)                                                                    \
    X(test_routing_snapshot_corrupt)                                                               \
    X(test_routing_checksum)
PC_TEST_MAIN(TESTS)
