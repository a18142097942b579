/*
 * Unit tests of cross-unit transfers (src/ledger/xts.c): xts_try,
 * xts_resolve and xts_finish on a payer ledger and a payee ledger that own
 * different buckets, every repeat of every step, empty rollback and
 * suspension, expiry as the payer's abort, the outbox (capacity, finish,
 * get_xts_outbox filters), totals, snapshot and rebuild mid-way, and a
 * seeded randomized run across two ledgers. Conservation (per ledger, the
 * unit's debits equal its credits, pending and posted) is checked after
 * every step.
 *
 * The fixture stands in for a replica, as test_ledger.c's does: it keeps
 * the stored slots in memory, runs prefetch + apply + flush per batch and
 * advances cluster time by one second per batch. The payer unit owns
 * buckets 0..49 (accounts 1..9), the payee unit buckets 50..99 (51..59).
 */
#include "test.h"

#include "../../src/ledger/ledger.h"

#define S_NS 1000000000ull
#define R(name) PC_TRANSFER_RESULT_##name

enum { OWN_ALL = 0, OWN_LOW = 1, OWN_HIGH = 2 };

typedef struct fx {
    pc_ledger_t *ledger;
    pc_ledger_config_t config;
    pc_transfer_slot_t *store;
    uint64_t store_count, store_cap;
    uint64_t now;   /* cluster time of the next batch, ns */
    uint64_t step;  /* how far now moves per batch; S_NS unless a test says */
    uint32_t flags; /* request flags of the next batches (PC_REQUEST_SHADOW) */
} fx_t;

static void fx_flush(fx_t *fx) {
    const pc_transfer_slot_t *slots = NULL;
    uint64_t first = 0;
    uint32_t n = pc_ledger_slots(fx->ledger, &slots, &first);
    ASSERT_EQ(first, fx->store_count);
    ASSERT_TRUE(fx->store_count + n <= fx->store_cap);
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
    uint32_t r = pc_ledger_apply(fx->ledger, op, fx->flags, fx->now, events, count, results);
    fx->now += fx->step;
    fx_flush(fx);
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

static void fx_routing(fx_t *fx, int own) {
    if (own == OWN_ALL) return;
    pc_routing_t routing;
    memset(&routing, 0, sizeof(routing));
    routing.epoch = 1;
    const uint64_t low = (1ull << 50) - 1; /* buckets 0..49 */
    if (own == OWN_LOW) {
        routing.buckets[0] = low;
    } else {
        routing.buckets[0] = ~low;
        routing.buckets[1] = (1ull << 36) - 1; /* buckets 64..99 */
    }
    ASSERT_EQ(fx_one(fx, PC_OP_set_routing, &routing), 0);
}

static pc_account_t mkacct(pc_u128 id, uint32_t ledger, uint16_t flags) {
    pc_account_t a;
    memset(&a, 0, sizeof(a));
    a.id = id;
    a.ledger = ledger;
    a.code = 10;
    a.flags = flags;
    return a;
}

static fx_t *fx_new(uint32_t accounts_max, uint32_t pending_max, uint32_t outbox_max, int own) {
    fx_t *fx = calloc(1, sizeof(*fx));
    fx->config = (pc_ledger_config_t){accounts_max, 4096, pending_max, outbox_max};
    ASSERT_EQ(pc_ledger_init(&fx->config, &fx->ledger), PC_OK);
    fx->store_cap = fx->config.transfers_max;
    fx->store = calloc(fx->store_cap, sizeof(pc_transfer_slot_t));
    fx->now = 1000 * S_NS;
    fx->step = S_NS;
    fx_routing(fx, own);
    return fx;
}

/* Accounts base+1..base+3 on ledger 1 and base+4, base+5 on ledger 2. */
static void fx_accounts(fx_t *fx, pc_u128 base) {
    pc_account_t accounts[5] = {mkacct(base + 1, 1, 0), mkacct(base + 2, 1, 0),
                                mkacct(base + 3, 1, PC_ACCOUNT_debits_must_not_exceed_credits),
                                mkacct(base + 4, 2, 0), mkacct(base + 5, 2, 0)};
    pc_create_result_t results[5];
    ASSERT_EQ(fx_apply(fx, PC_OP_create_accounts, accounts, 5, results), 0);
}

static fx_t *fx_payer(void) {
    fx_t *fx = fx_new(64, 64, 64, OWN_LOW);
    fx_accounts(fx, 0);
    return fx;
}

static fx_t *fx_payee(void) {
    fx_t *fx = fx_new(64, 64, 64, OWN_HIGH);
    fx_accounts(fx, 50);
    return fx;
}

static void fx_free(fx_t *fx) {
    pc_ledger_deinit(fx->ledger);
    free(fx->store);
    free(fx);
}

/* Snapshot, then a fresh ledger loads it and rebuilds from the store: the
 * state must be the same as the one that never restarted. */
static void fx_restart(fx_t *fx) {
    pc_u128 before = pc_ledger_state_checksum(fx->ledger);
    size_t size = pc_ledger_snapshot_size(fx->ledger);
    uint8_t *buf = malloc(size);
    ASSERT_EQ(pc_ledger_snapshot_write(fx->ledger, buf, size), size);
    pc_ledger_t *fresh = NULL;
    ASSERT_EQ(pc_ledger_init(&fx->config, &fresh), PC_OK);
    ASSERT_EQ(pc_ledger_snapshot_read(fresh, buf, size), PC_OK);
    ASSERT_EQ(pc_ledger_slots_count(fresh), fx->store_count);
    for (uint64_t loc = 0; loc < fx->store_count; loc++)
        ASSERT_EQ(pc_ledger_rebuild_slot(fresh, loc, &fx->store[loc]), PC_OK);
    ASSERT_EQ(pc_ledger_rebuild_finish(fresh), PC_OK);
    ASSERT_EQ_U128(pc_ledger_state_checksum(fresh), before);
    pc_ledger_deinit(fx->ledger);
    fx->ledger = fresh;
    free(buf);
}

static pc_transfer_t xt(pc_u128 gtid, pc_u128 dr, pc_u128 cr, pc_u128 amount, uint32_t ledger,
                        uint32_t timeout) {
    pc_transfer_t t;
    memset(&t, 0, sizeof(t));
    t.id = gtid;
    t.debit_account_id = dr;
    t.credit_account_id = cr;
    t.amount = amount;
    t.ledger = ledger;
    t.code = 7;
    t.user_data_64 = (uint64_t)gtid * 3;
    t.timeout = timeout;
    return t;
}

static pc_xts_decision_t decision(pc_u128 gtid, bool commit) {
    return (pc_xts_decision_t){
        .gtid = gtid,
        .flags = commit ? PC_TRANSFER_post_pending_transfer : PC_TRANSFER_void_pending_transfer};
}

static const char *name(uint32_t result) {
    const char *n = pc_transfer_result_name(result);
    return n ? n : "(unknown)";
}

static uint32_t xtry(fx_t *fx, pc_transfer_t t) {
    return fx_one(fx, PC_OP_xts_try, &t);
}

static uint32_t xresolve(fx_t *fx, pc_u128 gtid, bool commit) {
    pc_xts_decision_t d = decision(gtid, commit);
    return fx_one(fx, PC_OP_xts_resolve, &d);
}

static uint32_t xfinish(fx_t *fx, pc_u128 gtid) {
    return fx_one(fx, PC_OP_xts_finish, &gtid);
}

#define EXPECT(call, result) ASSERT_STREQ(name(call), #result)

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

#define CLR(ledger) PC_CLEARING_ACCOUNT_ID(ledger)

/* Per ledger, the unit balances, and the xts totals agree with the plain
 * per-ledger totals. */
static void conserved(fx_t *fx) {
    pc_totals_t totals[8];
    pc_ledger_totals_t plain[8];
    uint32_t n = pc_ledger_xts_totals(fx->ledger, false, totals, 8);
    ASSERT_TRUE(n <= 8);
    ASSERT_EQ(pc_ledger_totals(fx->ledger, plain, 8), n);
    for (uint32_t i = 0; i < n; i++) {
        ASSERT_EQ_U128(totals[i].debits_pending, totals[i].credits_pending);
        ASSERT_EQ_U128(totals[i].debits_posted, totals[i].credits_posted);
        ASSERT_EQ(totals[i].ledger, plain[i].ledger);
        ASSERT_EQ_U128(totals[i].debits_pending, plain[i].debits_pending);
        ASSERT_EQ_U128(totals[i].credits_posted, plain[i].credits_posted);
        if (i > 0) ASSERT_TRUE(totals[i - 1].ledger < totals[i].ledger);
    }
}

static pc_totals_t totals_of(fx_t *fx, uint32_t ledger) {
    pc_totals_t totals[8];
    uint32_t n = pc_ledger_xts_totals(fx->ledger, false, totals, 8);
    for (uint32_t i = 0; i < n; i++)
        if (totals[i].ledger == ledger) return totals[i];
    PC__TEST_FAIL("no totals for ledger %u", ledger);
    return totals[0];
}

static int outbox(fx_t *fx, uint32_t flags, uint64_t timestamp_max, uint32_t limit,
                  pc_transfer_t *out) {
    pc_account_filter_t f;
    memset(&f, 0, sizeof(f));
    f.limit = limit;
    f.flags = flags;
    f.timestamp_max = timestamp_max;
    return pc_ledger_xts_outbox(fx->ledger, &f, out);
}

/* The stored record behind a gtid, as lookup_transfers returns it. */
static pc_transfer_t lookup(fx_t *fx, pc_u128 gtid) {
    uint64_t loc = 0;
    const pc_transfer_t *unflushed = NULL;
    ASSERT_EQ(pc_ledger_transfer_loc(fx->ledger, gtid, &loc, &unflushed), PC_OK);
    ASSERT_TRUE(unflushed == NULL && loc < fx->store_count);
    pc_transfer_t t = fx->store[loc].transfer;
    pc_ledger_transfer_public(&t);
    return t;
}

/* ---- happy paths ---- */

/* Every step of a commit, each repeated, on both sides. */
static void test_xts_commit(void) {
    fx_t *p = fx_payer(), *q = fx_payee();
    pc_transfer_t t = xt(1000, 1, 51, 100, 1, 60);
    EXPECT(xtry(p, t), created);
    ASSERT_BAL(p, 1, 100, 0, 0, 0);
    ASSERT_BAL(p, CLR(1), 0, 0, 100, 0);
    EXPECT(xtry(p, t), exists);
    conserved(p);
    EXPECT(xtry(q, t), created);
    ASSERT_BAL(q, 51, 0, 0, 100, 0);
    ASSERT_BAL(q, CLR(1), 100, 0, 0, 0);
    EXPECT(xtry(q, t), exists);
    conserved(q);
    pc_transfer_t sent = lookup(p, 1000);
    ASSERT_EQ(sent.flags, 0);
    ASSERT_TRUE(sent.timestamp != 0);
    sent.timestamp = 0;
    ASSERT_EQ(memcmp(&sent, &t, sizeof(t)), 0);

    EXPECT(xresolve(p, 1000, true), created);
    EXPECT(xresolve(p, 1000, true), exists);
    EXPECT(xresolve(p, 1000, false), xts_committed);
    ASSERT_BAL(p, 1, 0, 100, 0, 0);
    ASSERT_BAL(p, CLR(1), 0, 0, 0, 100);
    conserved(p);
    pc_transfer_t out[4];
    ASSERT_EQ(outbox(p, 0, 0, 4, out), 1);
    ASSERT_EQ(out[0].flags, PC_TRANSFER_post_pending_transfer);
    ASSERT_TRUE(out[0].id == 1000 && out[0].amount == 100 && out[0].credit_account_id == 51);
    ASSERT_EQ(outbox(q, 0, 0, 4, out), 0); /* the payee keeps no outbox */

    EXPECT(xresolve(q, 1000, true), created);
    EXPECT(xresolve(q, 1000, true), exists);
    EXPECT(xresolve(q, 1000, false), xts_committed);
    ASSERT_BAL(q, 51, 0, 0, 0, 100);
    ASSERT_BAL(q, CLR(1), 0, 100, 0, 0);
    conserved(q);

    EXPECT(xfinish(p, 1000), created);
    EXPECT(xfinish(p, 1000), xts_not_found);
    EXPECT(xfinish(q, 1000), xts_not_found);
    ASSERT_EQ(outbox(p, 0, 0, 4, out), 0);
    /* Late repeats of every step. */
    EXPECT(xtry(p, t), exists);
    EXPECT(xtry(q, t), exists);
    EXPECT(xresolve(p, 1000, true), exists);
    EXPECT(xresolve(q, 1000, true), exists);
    ASSERT_EQ(lookup(q, 1000).flags, 0);
    ASSERT_EQ_U128(totals_of(p, 1).clearing_credits_posted, totals_of(q, 1).clearing_debits_posted);
    conserved(p);
    conserved(q);
    fx_free(p);
    fx_free(q);
}

/* An abort on both sides, after which a commit is refused. */
static void test_xts_abort(void) {
    fx_t *p = fx_payer(), *q = fx_payee();
    pc_transfer_t t = xt(2000, 4, 54, 70, 2, 60);
    EXPECT(xtry(p, t), created);
    EXPECT(xtry(q, t), created);
    EXPECT(xresolve(p, 2000, false), created);
    EXPECT(xresolve(p, 2000, false), exists);
    EXPECT(xresolve(p, 2000, true), xts_aborted);
    ASSERT_BAL(p, 4, 0, 0, 0, 0);
    ASSERT_BAL(p, CLR(2), 0, 0, 0, 0);
    pc_transfer_t out[4];
    ASSERT_EQ(outbox(p, 0, 0, 4, out), 1);
    ASSERT_EQ(out[0].flags, PC_TRANSFER_void_pending_transfer);
    EXPECT(xresolve(q, 2000, false), created);
    EXPECT(xresolve(q, 2000, false), exists);
    EXPECT(xresolve(q, 2000, true), xts_aborted);
    ASSERT_BAL(q, 54, 0, 0, 0, 0);
    ASSERT_BAL(q, CLR(2), 0, 0, 0, 0);
    EXPECT(xfinish(p, 2000), created);
    EXPECT(xtry(p, t), exists);
    EXPECT(xtry(q, t), exists);
    conserved(p);
    conserved(q);
    fx_free(p);
    fx_free(q);
}

/* Several steps of one gtid inside one batch, and a batch that resolves a
 * leg from a flushed batch and then compares against it (the leg's record
 * must survive its resolution for the rest of the batch). */
static void test_xts_batches(void) {
    fx_t *p = fx_payer();
    pc_transfer_t t = xt(1500, 1, 51, 9, 1, 60);
    pc_transfer_t tries[2] = {t, t};
    pc_xts_decision_t decisions[3] = {decision(1500, true), decision(1500, true),
                                      decision(1500, false)};
    pc_create_result_t results[5];
    ASSERT_EQ(fx_apply(p, PC_OP_xts_try, tries, 2, results), 1);
    ASSERT_STREQ(name(results[0].result), "exists");
    ASSERT_EQ(results[0].index, 1);
    ASSERT_EQ(fx_apply(p, PC_OP_xts_resolve, decisions, 3, results), 2);
    ASSERT_STREQ(name(results[0].result), "exists");
    ASSERT_STREQ(name(results[1].result), "xts_committed");
    pc_transfer_t t2 = xt(1501, 2, 52, 4, 1, 60);
    EXPECT(xtry(p, t2), created);
    pc_xts_decision_t resolves[3] = {decision(1501, false), decision(1501, true),
                                     decision(1501, false)};
    ASSERT_EQ(fx_apply(p, PC_OP_xts_resolve, resolves, 3, results), 2);
    ASSERT_STREQ(name(results[0].result), "xts_aborted");
    ASSERT_STREQ(name(results[1].result), "exists");
    pc_u128 gtids[3] = {1500, 1501, 1500};
    ASSERT_EQ(fx_apply(p, PC_OP_xts_finish, gtids, 3, results), 1);
    ASSERT_EQ(results[0].index, 2);
    ASSERT_STREQ(name(results[0].result), "xts_not_found");
    conserved(p);
    fx_free(p);
}

/* ---- validation ---- */

static void test_xts_roles(void) {
    fx_t *all = fx_new(64, 64, 64, OWN_ALL), *p = fx_payer();
    fx_accounts(all, 0);
    EXPECT(xtry(all, xt(1, 1, 2, 5, 1, 60)), xts_same_unit);
    EXPECT(xtry(all, xt(1, 1, 51, 5, 1, 60)), xts_same_unit);
    EXPECT(xtry(p, xt(1, 1, 2, 5, 1, 60)), xts_same_unit);
    EXPECT(xtry(p, xt(1, 51, 52, 5, 1, 60)), wrong_unit);
    EXPECT(xtry(p, xt(1, 1, 51, 5, 1, 0)), xts_timeout_must_not_be_zero);
    EXPECT(xtry(p, xt(1, 51, 1, 5, 1, 0)), created); /* a payee needs no timeout */
    EXPECT(xtry(p, xt(2, 9, 51, 5, 1, 60)), debit_account_not_found);
    EXPECT(xtry(p, xt(2, 51, 9, 5, 1, 60)), credit_account_not_found);
    EXPECT(xtry(p, xt(2, 1, 51, 5, 2, 60)), transfer_must_have_the_same_ledger_as_accounts);
    EXPECT(xtry(p, xt(2, 3, 51, 5, 1, 60)), exceeds_credits);
    EXPECT(xtry(p, xt(2, CLR(1), 51, 5, 1, 60)), debit_account_not_found);
    EXPECT(xtry(p, xt(2, 51, CLR(1), 5, 1, 60)), credit_account_not_found);
    /* No tombstone for an xts failure: the same gtid may succeed later. */
    EXPECT(xtry(p, xt(2, 1, 51, 5, 1, 60)), created);
    conserved(p);
    fx_free(all);
    fx_free(p);
}

static void test_xts_validation(void) {
    fx_t *p = fx_payer();
    pc_transfer_t t = xt(3, 1, 51, 5, 1, 60);
    t.flags = PC_TRANSFER_linked;
    EXPECT(xtry(p, t), xts_flags_invalid);
    t.flags = PC_TRANSFER_pending;
    EXPECT(xtry(p, t), xts_flags_invalid);
    t = xt(3, 1, 51, 0, 1, 60);
    EXPECT(xtry(p, t), amount_must_not_be_zero);
    t = xt(0, 1, 51, 5, 1, 60);
    EXPECT(xtry(p, t), id_must_not_be_zero);
    t = xt(3, 1, 51, 5, 0, 60);
    EXPECT(xtry(p, t), ledger_must_not_be_zero);
    t = xt(3, 1, 51, 5, 1, 60);
    t.timestamp = 1;
    EXPECT(xtry(p, t), timestamp_must_be_zero);
    t = xt(3, 1, 51, 5, 1, 60);
    t.pending_id = 9;
    EXPECT(xtry(p, t), pending_id_must_be_zero);
    /* Repeats with other fields. */
    t = xt(3, 1, 51, 5, 1, 60);
    EXPECT(xtry(p, t), created);
    t.amount = 6;
    EXPECT(xtry(p, t), exists_with_different_amount);
    t = xt(3, 1, 51, 5, 1, 61);
    EXPECT(xtry(p, t), exists_with_different_timeout);
    t = xt(3, 2, 51, 5, 1, 60);
    EXPECT(xtry(p, t), exists_with_different_debit_account_id);
    /* Resolve: flags exactly one of post and void, reserved bytes zero. */
    pc_xts_decision_t d = decision(3, true);
    d.flags |= PC_TRANSFER_void_pending_transfer;
    EXPECT(fx_one(p, PC_OP_xts_resolve, &d), xts_flags_invalid);
    d = decision(3, true);
    d.flags |= PC_TRANSFER_linked;
    EXPECT(fx_one(p, PC_OP_xts_resolve, &d), xts_flags_invalid);
    d.flags = 0;
    EXPECT(fx_one(p, PC_OP_xts_resolve, &d), xts_flags_invalid);
    d = decision(3, true);
    d.reserved[13] = 1;
    EXPECT(fx_one(p, PC_OP_xts_resolve, &d), reserved_flag);
    d = decision(0, true);
    EXPECT(fx_one(p, PC_OP_xts_resolve, &d), id_must_not_be_zero);
    d = decision(PC_U128_MAX, false);
    EXPECT(fx_one(p, PC_OP_xts_resolve, &d), id_must_not_be_int_max);
    d = decision(3, true);
    EXPECT(fx_one(p, PC_OP_xts_resolve, &d), created);
    EXPECT(xresolve(p, 77, true), xts_not_found);
    EXPECT(xfinish(p, 0), id_must_not_be_zero);
    conserved(p);
    fx_free(p);
}

/* Users cannot touch clearing accounts or xts legs through the plain
 * operations, and a plain transfer across units stays wrong_unit. */
static void test_xts_plain_operations(void) {
    fx_t *p = fx_payer();
    pc_account_t a = mkacct(CLR(5), 5, 0);
    ASSERT_STREQ(pc_account_result_name(fx_one(p, PC_OP_create_accounts, &a)), "id_reserved");
    a = mkacct(((pc_u128)(UINT64_MAX >> 1) << 64) | 12345, 1, 0);
    ASSERT_STREQ(pc_account_result_name(fx_one(p, PC_OP_create_accounts, &a)), "id_reserved");
    /* Shadow ids hold the shadow clearing accounts' reserve. */
    a = mkacct(PC_SHADOW_CLEARING_ACCOUNT_ID(5), 5, 0);
    ASSERT_STREQ(pc_account_result_name(fx_one(p, PC_OP_create_accounts, &a)), "shadow_mismatch");
    EXPECT(xtry(p, xt(10, 1, 51, 5, 1, 60)), created);
    pc_transfer_t t = xt(11, 1, CLR(1), 5, 1, 0);
    EXPECT(fx_one(p, PC_OP_create_transfers, &t), credit_account_not_found);
    t = xt(12, CLR(1), 1, 5, 1, 0);
    EXPECT(fx_one(p, PC_OP_create_transfers, &t), debit_account_not_found);
    t = xt(13, 1, 51, 5, 1, 0);
    EXPECT(fx_one(p, PC_OP_create_transfers, &t), wrong_unit);
    memset(&t, 0, sizeof(t));
    t.id = 14;
    t.pending_id = 10;
    t.flags = PC_TRANSFER_post_pending_transfer;
    EXPECT(fx_one(p, PC_OP_create_transfers, &t), pending_transfer_not_found);
    t = xt(10, 1, 51, 5, 1, 0);
    EXPECT(fx_one(p, PC_OP_create_transfers, &t), wrong_unit);
    t = xt(10, 1, 2, 5, 1, 0);
    EXPECT(fx_one(p, PC_OP_create_transfers, &t), exists_with_different_flags);
    /* The clearing account is in no bucket. */
    uint32_t bucket_total = 0;
    for (uint32_t b = 0; b < PC_ROUTING_BUCKETS; b++)
        bucket_total += pc_ledger_bucket_accounts(p->ledger, b);
    ASSERT_EQ(bucket_total, 5);
    ASSERT_EQ(totals_of(p, 1).accounts_count, 4); /* three accounts and the clearing one */
    conserved(p);
    fx_free(p);
}

/* ---- empty rollback, expiry, outbox ---- */

static void test_xts_empty_rollback(void) {
    fx_t *p = fx_payer(), *q = fx_payee();
    fx_t *sides[2] = {p, q};
    for (int i = 0; i < 2; i++) {
        fx_t *fx = sides[i];
        pc_u128 own = i == 0 ? 1 : 51; /* an account of this side */
        EXPECT(xresolve(fx, 3000, false), created);
        EXPECT(xresolve(fx, 3000, false), exists);
        EXPECT(xresolve(fx, 3000, true), xts_aborted);
        EXPECT(xtry(fx, xt(3000, 1, 51, 5, 1, 60)), xts_aborted);
        EXPECT(xtry(fx, xt(3000, 2, 52, 9, 1, 60)), xts_aborted);
        EXPECT(xfinish(fx, 3000), xts_not_found);
        uint64_t loc;
        const pc_transfer_t *unflushed;
        ASSERT_EQ(pc_ledger_transfer_loc(fx->ledger, 3000, &loc, &unflushed), PC_ENOTFOUND);
        pc_transfer_t t = xt(3000, own, own + 1, 5, 1, 0);
        EXPECT(fx_one(fx, PC_OP_create_transfers, &t), id_already_failed);
        conserved(fx);
    }
    pc_transfer_t out[2];
    ASSERT_EQ(outbox(p, PC_FILTER_XTS_TRYING, 0, 2, out), 0);
    fx_restart(p);
    EXPECT(xtry(p, xt(3000, 1, 51, 5, 1, 60)), xts_aborted);
    EXPECT(xresolve(p, 3000, false), exists);
    fx_free(p);
    fx_free(q);
}

/* An undecided payer leg expires into an abort decision; the payee's leg
 * never expires on its own. */
static void test_xts_expiry(void) {
    fx_t *p = fx_payer(), *q = fx_payee();
    pc_transfer_t t = xt(4000, 1, 51, 30, 1, 5);
    EXPECT(xtry(p, t), created);
    EXPECT(xtry(q, t), created);
    uint64_t expires_at = pc_ledger_next_expiry(p->ledger);
    ASSERT_TRUE(expires_at != UINT64_MAX);
    ASSERT_EQ(pc_ledger_next_expiry(q->ledger), UINT64_MAX);
    pc_transfer_t out[4];
    ASSERT_EQ(outbox(p, 0, 0, 4, out), 0);
    ASSERT_EQ(pc_ledger_expire(p->ledger, expires_at), 1);
    ASSERT_EQ(pc_ledger_expire(q->ledger, expires_at + 1000 * S_NS), 0);
    ASSERT_BAL(p, 1, 0, 0, 0, 0);
    ASSERT_BAL(p, CLR(1), 0, 0, 0, 0);
    ASSERT_BAL(q, 51, 0, 0, 30, 0);
    ASSERT_EQ(outbox(p, 0, 0, 4, out), 1);
    ASSERT_EQ(out[0].flags, PC_TRANSFER_void_pending_transfer);
    ASSERT_EQ(out[0].timestamp, expires_at);
    ASSERT_EQ(totals_of(p, 1).xts_outbox, 1);
    ASSERT_EQ(totals_of(p, 1).xts_trying, 0);
    ASSERT_EQ(totals_of(q, 1).xts_trying, 1);
    p->now = expires_at + S_NS;
    EXPECT(xresolve(p, 4000, true), xts_aborted);
    EXPECT(xresolve(p, 4000, false), exists);
    EXPECT(xtry(p, t), exists);
    fx_restart(p);
    EXPECT(xresolve(p, 4000, true), xts_aborted);
    /* Deliver the decision. */
    EXPECT(xresolve(q, 4000, false), created);
    EXPECT(xfinish(p, 4000), created);
    ASSERT_BAL(q, 51, 0, 0, 0, 0);
    conserved(p);
    conserved(q);
    fx_free(p);
    fx_free(q);
}

/* An expiry inside an apply (not an idle tick) also decides. */
static void test_xts_expiry_in_batch(void) {
    fx_t *p = fx_payer();
    EXPECT(xtry(p, xt(4100, 1, 51, 30, 1, 2)), created);
    p->now += 10 * S_NS;
    EXPECT(xresolve(p, 4100, true), xts_aborted);
    pc_transfer_t out[2];
    ASSERT_EQ(outbox(p, 0, 0, 2, out), 1);
    ASSERT_EQ(out[0].flags, PC_TRANSFER_void_pending_transfer);
    conserved(p);
    fx_free(p);
}

static void test_xts_outbox_full(void) {
    fx_t *p = fx_new(64, 64, 2, OWN_LOW);
    fx_accounts(p, 0);
    EXPECT(xtry(p, xt(1, 1, 51, 5, 1, 60)), created);
    EXPECT(xtry(p, xt(2, 1, 51, 5, 1, 60)), created);
    EXPECT(xtry(p, xt(3, 1, 51, 5, 1, 60)), xts_outbox_full);
    EXPECT(xtry(p, xt(3, 51, 1, 5, 1, 60)), created); /* payee legs take no outbox room */
    EXPECT(xtry(p, xt(1, 1, 51, 5, 1, 60)), exists);  /* a repeat is no new leg */
    EXPECT(xresolve(p, 1, true), created);
    EXPECT(xtry(p, xt(4, 1, 51, 5, 1, 60)), xts_outbox_full);
    EXPECT(xfinish(p, 1), created);
    EXPECT(xtry(p, xt(4, 1, 51, 5, 1, 60)), created);
    EXPECT(xresolve(p, 2, false), created);
    EXPECT(xresolve(p, 4, true), created);
    EXPECT(xresolve(p, 3, true), created);
    EXPECT(xtry(p, xt(5, 1, 51, 5, 1, 60)), xts_outbox_full);
    EXPECT(xfinish(p, 2), created);
    EXPECT(xfinish(p, 3), xts_not_found); /* a payee decision is not in the outbox */
    EXPECT(xtry(p, xt(5, 1, 51, 5, 1, 60)), created);
    conserved(p);
    fx_free(p);
}

/* A leg holds one slot of the store for its resolution: tries and plain
 * transfers stop short of it, so every decision can be applied even when
 * the store is otherwise full. */
static void test_xts_store_reserve(void) {
    fx_t *p = calloc(1, sizeof(*p));
    p->config = (pc_ledger_config_t){64, 8, 64, 64};
    ASSERT_EQ(pc_ledger_init(&p->config, &p->ledger), PC_OK);
    p->store_cap = p->config.transfers_max;
    p->store = calloc(p->store_cap, sizeof(pc_transfer_slot_t));
    p->now = 1000 * S_NS;
    p->step = S_NS;
    fx_routing(p, OWN_LOW);
    fx_accounts(p, 0);
    for (pc_u128 g = 1; g <= 4; g++) EXPECT(xtry(p, xt(g, 1, 51, 5, 1, 60)), created);
    EXPECT(xtry(p, xt(5, 1, 51, 5, 1, 60)), transfers_full);
    pc_transfer_t t = {.id = 9, .debit_account_id = 1, .credit_account_id = 2, .amount = 1,
                       .ledger = 1, .code = 1};
    EXPECT(fx_one(p, PC_OP_create_transfers, &t), transfers_full);
    /* An empty rollback while open legs hold the room: later, please. */
    EXPECT(xresolve(p, 77, false), transfers_full);
    for (pc_u128 g = 1; g <= 4; g++) EXPECT(xresolve(p, g, g % 2 == 0), created);
    conserved(p);
    /* The store is full for good: an empty rollback needs no tombstone,
     * because no try can ever be accepted again. */
    EXPECT(xresolve(p, 77, false), created);
    EXPECT(xresolve(p, 77, false), created);
    EXPECT(xtry(p, xt(77, 1, 51, 5, 1, 60)), transfers_full);
    fx_free(p);
}

static void test_xts_clearing_unavailable(void) {
    fx_t *p = fx_new(5, 64, 64, OWN_LOW);
    fx_accounts(p, 0);
    EXPECT(xtry(p, xt(1, 1, 51, 5, 1, 60)), clearing_account_unavailable);
    fx_free(p);
}

static void test_xts_outbox_filter(void) {
    fx_t *p = fx_payer();
    for (uint32_t i = 1; i <= 6; i++)
        EXPECT(xtry(p, xt(100 + i, 1 + (i % 2), 51, i, 1, 600)), created);
    uint64_t decided[4];
    for (uint32_t i = 0; i < 4; i++) {
        decided[i] = p->now;
        /* Decide in the order 104, 101, 103, 102. */
        pc_u128 gtid = (pc_u128[]){104, 101, 103, 102}[i];
        EXPECT(xresolve(p, gtid, i % 2 == 0), created);
    }
    pc_transfer_t out[16];
    ASSERT_EQ(outbox(p, 0, 0, 16, out), 4);
    ASSERT_TRUE(out[0].id == 104 && out[1].id == 101 && out[2].id == 103 && out[3].id == 102);
    ASSERT_EQ(out[0].flags, PC_TRANSFER_post_pending_transfer);
    ASSERT_EQ(out[1].flags, PC_TRANSFER_void_pending_transfer);
    ASSERT_EQ(out[0].timestamp, decided[0]);
    ASSERT_EQ(outbox(p, 0, decided[1], 16, out), 2);
    ASSERT_EQ(outbox(p, 0, 0, 3, out), 3);
    ASSERT_EQ(outbox(p, PC_FILTER_XTS_TRYING, 0, 16, out), 6);
    ASSERT_TRUE(out[4].id == 105 && out[5].id == 106);
    ASSERT_EQ(out[4].flags, PC_TRANSFER_pending);
    ASSERT_TRUE(out[4].timestamp < out[5].timestamp);
    ASSERT_EQ(outbox(p, PC_FILTER_XTS_TRYING, 0, 5, out), 5);
    ASSERT_EQ(out[4].id, 105);
    EXPECT(xfinish(p, 101), created);
    ASSERT_EQ(outbox(p, 0, 0, 16, out), 3);
    ASSERT_TRUE(out[0].id == 104 && out[1].id == 103 && out[2].id == 102);
    /* Bad filters. */
    pc_account_filter_t f;
    memset(&f, 0, sizeof(f));
    ASSERT_EQ(pc_ledger_xts_outbox(p->ledger, &f, out), PC_EINVAL); /* limit 0 */
    f.limit = PC_BATCH_EVENTS_MAX + 1;
    ASSERT_EQ(pc_ledger_xts_outbox(p->ledger, &f, out), PC_EINVAL);
    f.limit = 1;
    f.account_id = 1;
    ASSERT_EQ(pc_ledger_xts_outbox(p->ledger, &f, out), PC_EINVAL);
    f.account_id = 0;
    f.flags = PC_FILTER_DEBITS;
    ASSERT_EQ(pc_ledger_xts_outbox(p->ledger, &f, out), PC_EINVAL);
    f.flags = 0;
    f.reserved[3] = 1;
    ASSERT_EQ(pc_ledger_xts_outbox(p->ledger, &f, out), PC_EINVAL);
    fx_free(p);
}

static void test_xts_totals(void) {
    fx_t *p = fx_payer();
    EXPECT(xtry(p, xt(1, 1, 51, 10, 1, 60)), created);
    EXPECT(xtry(p, xt(2, 2, 52, 20, 1, 60)), created);
    EXPECT(xtry(p, xt(3, 4, 54, 40, 2, 60)), created);
    EXPECT(xtry(p, xt(4, 53, 5, 80, 2, 0)), created); /* payee leg */
    EXPECT(xresolve(p, 1, true), created);
    pc_totals_t t1 = totals_of(p, 1), t2 = totals_of(p, 2);
    ASSERT_EQ(t1.xts_trying, 1);
    ASSERT_EQ(t1.xts_outbox, 1);
    ASSERT_EQ(t2.xts_trying, 2);
    ASSERT_EQ(t2.xts_outbox, 0);
    ASSERT_EQ_U128(t1.clearing_credits_posted, 10);
    ASSERT_EQ_U128(t1.debits_pending, 20);
    ASSERT_EQ_U128(t1.debits_posted, 10);
    ASSERT_EQ_U128(t2.debits_pending, 120);
    ASSERT_EQ(t1.accounts_count, 4);
    ASSERT_EQ(t2.accounts_count, 3);
    ASSERT_EQ(pc_ledger_xts_totals(p->ledger, false, NULL, 0), 2);
    conserved(p);
    fx_free(p);
}

/* ---- recovery ---- */

/* Two ledgers run the same steps; one restarts from a snapshot at every
 * step, and both must hold the same state throughout. */
static void test_xts_snapshot_rebuild(void) {
    fx_t *a = fx_payer(), *b = fx_payer();
    fx_t *both[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        fx_t *fx = both[i];
        EXPECT(xtry(fx, xt(1, 1, 51, 10, 1, 60)), created);
        EXPECT(xtry(fx, xt(2, 2, 52, 20, 1, 3)), created);
        EXPECT(xtry(fx, xt(3, 53, 3, 30, 1, 0)), created);
        EXPECT(xresolve(fx, 9, false), created);
    }
    fx_restart(b);
    for (int i = 0; i < 2; i++) {
        fx_t *fx = both[i];
        EXPECT(xresolve(fx, 1, true), created);
        EXPECT(xresolve(fx, 3, false), created);
        fx->now += 10 * S_NS; /* 2 expires */
        EXPECT(xtry(fx, xt(4, 4, 54, 5, 2, 60)), created);
        if (i == 1) fx_restart(b);
        EXPECT(xtry(fx, xt(9, 1, 51, 5, 1, 60)), xts_aborted);
        EXPECT(xresolve(fx, 2, true), xts_aborted);
    }
    ASSERT_EQ_U128(pc_ledger_state_checksum(a->ledger), pc_ledger_state_checksum(b->ledger));
    fx_restart(b);
    pc_transfer_t oa[8], ob[8];
    ASSERT_EQ(outbox(a, PC_FILTER_XTS_TRYING, 0, 8, oa), 3);
    ASSERT_EQ(outbox(b, PC_FILTER_XTS_TRYING, 0, 8, ob), 3);
    ASSERT_EQ(memcmp(oa, ob, 3 * sizeof(oa[0])), 0);
    for (int i = 0; i < 2; i++) {
        fx_t *fx = both[i];
        EXPECT(xfinish(fx, 2), created);
        EXPECT(xfinish(fx, 1), created);
        EXPECT(xresolve(fx, 4, true), created);
        if (i == 1) fx_restart(b);
        EXPECT(xfinish(fx, 4), created);
        EXPECT(xfinish(fx, 1), xts_not_found);
    }
    ASSERT_EQ_U128(pc_ledger_state_checksum(a->ledger), pc_ledger_state_checksum(b->ledger));
    fx_restart(b);
    ASSERT_EQ(pc_ledger_xts_totals(b->ledger, false, NULL, 0), 2);
    conserved(a);
    conserved(b);
    fx_free(a);
    fx_free(b);
}

/* Re-seals a snapshot after an edit (layout in snapshot.c: an 80-byte
 * header, body_size at 48, the checksum at 64 over the header with the
 * checksum zero, seed 21, then the body). */
static void snapshot_reseal(uint8_t *buf) {
    uint64_t body_size;
    memcpy(&body_size, buf + 48, 8);
    memset(buf + 64, 0, 16);
    pc_u128 seed = pc_checksum(buf, 80, 21);
    pc_u128 sum = pc_checksum(buf + 80, body_size, (uint64_t)seed);
    memcpy(buf + 64, &sum, 16);
}

/* Loads a (possibly edited) snapshot of fx with fx's store; returns the
 * result of rebuild_finish. */
static int load_edited(fx_t *fx, uint8_t *buf, size_t size) {
    snapshot_reseal(buf);
    pc_ledger_t *fresh = NULL;
    ASSERT_EQ(pc_ledger_init(&fx->config, &fresh), PC_OK);
    int rc = pc_ledger_snapshot_read(fresh, buf, size);
    for (uint64_t loc = 0; rc == PC_OK && loc < fx->store_count; loc++)
        rc = pc_ledger_rebuild_slot(fresh, loc, &fx->store[loc]);
    if (rc == PC_OK) rc = pc_ledger_rebuild_finish(fresh);
    pc_ledger_deinit(fresh);
    return rc;
}

/* The outbox (the snapshot's last records) must agree with the store: an
 * entry naming an unknown gtid or the wrong decision is corruption. */
static void test_xts_snapshot_outbox_checked(void) {
    fx_t *p = fx_payer();
    EXPECT(xtry(p, xt(1, 1, 51, 10, 1, 60)), created);
    EXPECT(xresolve(p, 1, true), created);
    size_t size = pc_ledger_snapshot_size(p->ledger);
    uint8_t *buf = malloc(size);
    ASSERT_EQ(pc_ledger_snapshot_write(p->ledger, buf, size), size);
    uint8_t *entry = buf + size - sizeof(pc_transfer_t);
    ASSERT_EQ(load_edited(p, buf, size), PC_OK);
    pc__corrupt_quiet = true;
    pc_u128 gtid = 2;
    memcpy(entry + offsetof(pc_transfer_t, id), &gtid, sizeof(gtid));
    ASSERT_EQ(load_edited(p, buf, size), PC_ECORRUPT);
    gtid = 1;
    memcpy(entry + offsetof(pc_transfer_t, id), &gtid, sizeof(gtid));
    uint16_t flags = PC_TRANSFER_void_pending_transfer;
    memcpy(entry + offsetof(pc_transfer_t, flags), &flags, sizeof(flags));
    ASSERT_EQ(load_edited(p, buf, size), PC_ECORRUPT);
    flags = PC_TRANSFER_post_pending_transfer;
    memcpy(entry + offsetof(pc_transfer_t, flags), &flags, sizeof(flags));
    ASSERT_EQ(load_edited(p, buf, size), PC_OK);
    free(buf);
    fx_free(p);
}

/* ---- randomized ---- */

#define RND_GTIDS 48u

typedef struct rnd {
    pc_prng_t prng;
    fx_t *p, *q;
    bool tried_p[RND_GTIDS], tried_q[RND_GTIDS], delivered[RND_GTIDS], finished[RND_GTIDS];
    pc_transfer_t legs[RND_GTIDS];
} rnd_t;

static bool one_of(uint32_t result, const uint32_t *allowed, uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        if (result == allowed[i]) return true;
    fprintf(stderr, "unexpected result %s\n", name(result));
    return false;
}
#define ALLOWED(result, ...)                                                                       \
    do {                                                                                           \
        const uint32_t pc__ok[] = {__VA_ARGS__};                                                   \
        ASSERT_TRUE(one_of((result), pc__ok, PC_ARRAY_LEN(pc__ok)));                               \
    } while (0)

/* The decision the payer holds for gtid g: 1 commit, 0 abort, -1 none. */
static int payer_decision(rnd_t *r, uint32_t g) {
    pc_transfer_t out[RND_GTIDS];
    int n = outbox(r->p, 0, 0, RND_GTIDS, out);
    for (int i = 0; i < n; i++) {
        if (out[i].id == r->legs[g].id) return out[i].flags == PC_TRANSFER_post_pending_transfer;
    }
    return -1;
}

static void rnd_deliver(rnd_t *r, uint32_t g) {
    int d = payer_decision(r, g);
    if (d < 0) return;
    /* The payee always accepts the payer's decision. */
    ALLOWED(xresolve(r->q, r->legs[g].id, d == 1), R(created), R(exists));
    r->delivered[g] = true;
}

static void rnd_step(rnd_t *r) {
    uint32_t g = (uint32_t)pc_prng_below(&r->prng, RND_GTIDS);
    pc_u128 gtid = r->legs[g].id;
    uint32_t result;
    switch (pc_prng_below(&r->prng, 8)) {
    case 0:
        result = xtry(r->p, r->legs[g]);
        ALLOWED(result, R(created), R(exists), R(xts_aborted), R(exceeds_credits));
        if (result == R(created)) r->tried_p[g] = true;
        break;
    case 1:
        if (!r->tried_p[g]) break; /* the coordinator tries the payee second */
        result = xtry(r->q, r->legs[g]);
        ALLOWED(result, R(created), R(exists), R(xts_aborted));
        if (result == R(created) || result == R(exists)) r->tried_q[g] = true;
        break;
    case 2: {
        /* Commit only when both tries succeeded; abort any time, but rarely
         * (an early abort suspends the gtid and leaves nothing to commit). */
        bool commit = r->tried_q[g] && pc_prng_below(&r->prng, 4) != 0;
        if (!commit && pc_prng_below(&r->prng, 6) != 0) break;
        result = xresolve(r->p, gtid, commit);
        ALLOWED(result, R(created), R(exists), R(xts_aborted), R(xts_committed));
        break;
    }
    case 3:
        rnd_deliver(r, g);
        break;
    case 4:
        if (!r->delivered[g]) break;
        ALLOWED(xfinish(r->p, gtid), R(created), R(xts_not_found));
        r->finished[g] = true;
        break;
    case 5:
        r->p->now += pc_prng_below(&r->prng, 3) * S_NS;
        pc_ledger_expire(r->p->ledger, r->p->now);
        break;
    case 6:
        if (pc_prng_below(&r->prng, 8) == 0) fx_restart(pc_prng_below(&r->prng, 2) ? r->p : r->q);
        break;
    default:
        if (r->delivered[g]) rnd_deliver(r, g); /* a duplicate delivery */
        break;
    }
    conserved(r->p);
    conserved(r->q);
}

/* Every undecided payer leg is aborted, every decision delivered, every
 * outbox entry finished. */
static void rnd_drain(rnd_t *r) {
    for (uint32_t g = 0; g < RND_GTIDS; g++) {
        ALLOWED(xresolve(r->p, r->legs[g].id, false), R(created), R(exists), R(xts_committed));
    }
    for (uint32_t g = 0; g < RND_GTIDS; g++) {
        rnd_deliver(r, g);
        if (payer_decision(r, g) >= 0) EXPECT(xfinish(r->p, r->legs[g].id), created);
    }
    pc_transfer_t out[RND_GTIDS];
    ASSERT_EQ(outbox(r->p, PC_FILTER_XTS_TRYING, 0, RND_GTIDS, out), 0);
    ASSERT_EQ(outbox(r->q, PC_FILTER_XTS_TRYING, 0, RND_GTIDS, out), 0);
    for (uint32_t ledger = 1; ledger <= 2; ledger++) {
        pc_totals_t tp = totals_of(r->p, ledger), tq = totals_of(r->q, ledger);
        ASSERT_EQ_U128(tp.debits_pending, 0);
        ASSERT_EQ_U128(tq.debits_pending, 0);
        ASSERT_EQ_U128(tp.credits_pending, 0);
        ASSERT_EQ_U128(tq.credits_pending, 0);
        ASSERT_EQ(tp.xts_trying + tq.xts_trying + tp.xts_outbox + tq.xts_outbox, 0);
        ASSERT_EQ_U128(tp.clearing_credits_posted, tq.clearing_debits_posted);
        ASSERT_EQ_U128(tp.clearing_debits_posted, 0);
        ASSERT_EQ_U128(tq.clearing_credits_posted, 0);
    }
}

static void rnd_run(uint64_t seed) {
    rnd_t *r = calloc(1, sizeof(*r));
    pc_prng_init(&r->prng, seed);
    r->p = fx_payer();
    r->q = fx_payee();
    for (uint32_t g = 0; g < RND_GTIDS; g++) {
        uint32_t k = (uint32_t)pc_prng_below(&r->prng, 5); /* account 3 has a limit */
        /* A quarter of the legs time out within the run, most do not. */
        uint32_t timeout = (uint32_t)(pc_prng_below(&r->prng, 4) == 0
                                          ? 1 + pc_prng_below(&r->prng, 30)
                                          : 2000 + pc_prng_below(&r->prng, 20000));
        r->legs[g] = xt(5000 + g, 1 + k, 51 + k, 1 + pc_prng_below(&r->prng, 1000), k < 3 ? 1 : 2,
                        timeout);
    }
    for (uint32_t i = 0; i < 2000; i++)
        rnd_step(r);
    rnd_drain(r);
    fx_free(r->p);
    fx_free(r->q);
    free(r);
}

static void test_xts_random(void) {
    for (uint64_t seed = 1; seed <= 12; seed++)
        rnd_run(seed);
}

/* ---- shadow namespace ---- */

static int store_reader(void *ctx, uint64_t loc, pc_transfer_slot_t *out) {
    fx_t *fx = ctx;
    ASSERT_TRUE(loc < fx->store_count);
    *out = fx->store[loc];
    return PC_OK;
}

static pc_u128 space_checksum(fx_t *fx, bool shadow) {
    pc_u128 sum = 0;
    ASSERT_EQ(pc_ledger_namespace_checksum(fx->ledger, shadow, store_reader, fx, &sum), PC_OK);
    return sum;
}

static void space_counts(fx_t *fx, bool shadow, uint64_t accounts, uint64_t transfers) {
    uint64_t a = 0, t = 0;
    pc_ledger_namespace_counts(fx->ledger, shadow, &a, &t);
    ASSERT_EQ(a, accounts);
    ASSERT_EQ(t, transfers);
}

/* A request's namespace decides which ids it may name; every mix is refused
 * with shadow_mismatch and leaves both namespaces as they were. */
static void test_shadow_mixed_refused(void) {
    fx_t *p = fx_payer();
    pc_u128 real_before = space_checksum(p, false);
    pc_account_t a = mkacct(PC_SHADOW_ID(7), 1, 0);
    ASSERT_STREQ(pc_account_result_name(fx_one(p, PC_OP_create_accounts, &a)), "shadow_mismatch");
    p->flags = PC_REQUEST_SHADOW;
    a = mkacct(7, 1, 0);
    ASSERT_STREQ(pc_account_result_name(fx_one(p, PC_OP_create_accounts, &a)), "shadow_mismatch");
    pc_account_t copies[2] = {mkacct(PC_SHADOW_ID(1), 1, 0), mkacct(PC_SHADOW_ID(2), 1, 0)};
    pc_create_result_t results[2];
    ASSERT_EQ(fx_apply(p, PC_OP_create_accounts, copies, 2, results), 0);
    /* Any one id of the other namespace is enough to refuse. */
    pc_transfer_t t = xt(PC_SHADOW_ID(20), PC_SHADOW_ID(1), 2, 5, 1, 0);
    EXPECT(fx_one(p, PC_OP_create_transfers, &t), shadow_mismatch);
    t = xt(20, PC_SHADOW_ID(1), PC_SHADOW_ID(2), 5, 1, 0);
    EXPECT(fx_one(p, PC_OP_create_transfers, &t), shadow_mismatch);
    t = xt(PC_SHADOW_ID(20), PC_SHADOW_ID(1), PC_SHADOW_ID(51), 5, 1, 60);
    EXPECT(xtry(p, t), created); /* a shadow xts leg */
    EXPECT(xfinish(p, 20), shadow_mismatch);
    /* 0 and 2^128 - 1 keep their own results in either namespace. */
    t = xt(0, PC_SHADOW_ID(1), PC_SHADOW_ID(2), 5, 1, 0);
    EXPECT(fx_one(p, PC_OP_create_transfers, &t), id_must_not_be_zero);
    t = xt(PC_SHADOW_ID(21), PC_U128_MAX, PC_SHADOW_ID(2), 5, 1, 0);
    EXPECT(fx_one(p, PC_OP_create_transfers, &t), debit_account_id_must_not_be_int_max);
    p->flags = 0;
    t = xt(21, PC_SHADOW_ID(1), 2, 5, 1, 0);
    EXPECT(fx_one(p, PC_OP_create_transfers, &t), shadow_mismatch);
    pc_xts_decision_t d = decision(PC_SHADOW_ID(20), true);
    EXPECT(fx_one(p, PC_OP_xts_resolve, &d), shadow_mismatch);
    pc_u128 zero = 0;
    EXPECT(fx_one(p, PC_OP_shadow_purge, &zero), shadow_mismatch); /* a real request */
    ASSERT_EQ_U128(space_checksum(p, false), real_before);
    space_counts(p, true, 3, 1); /* two copies and the shadow clearing account; one leg */
    /* The shadow leg moved the shadow clearing account, not the real one. */
    ASSERT_BAL(p, PC_SHADOW_CLEARING_ACCOUNT_ID(1), 0, 0, 5, 0);
    ASSERT_EQ(pc_ledger_xts_totals(p->ledger, false, NULL, 0), 2);
    pc_totals_t shadow_totals[4];
    ASSERT_EQ(pc_ledger_xts_totals(p->ledger, true, shadow_totals, 4), 1);
    ASSERT_EQ(shadow_totals[0].xts_trying, 1);
    ASSERT_EQ_U128(shadow_totals[0].debits_pending, shadow_totals[0].credits_pending);
    fx_free(p);
}

/* Step k of a two-unit script: local transfers, a pending that expires, an
 * xts commit run to its end, an xts abort with an empty rollback on the
 * payee, an xts leg that expires, a payee-side transfer. shadow runs the
 * same script on the shadow copies (other amounts, so the two differ). */
static uint32_t script_steps(void) {
    return 15;
}

static void script_step(fx_t *p, fx_t *q, uint32_t k, bool shadow) {
#define ID(x) (shadow ? PC_SHADOW_ID(x) : (pc_u128)(x))
    pc_u128 m = shadow ? 3 : 1; /* amounts differ between the namespaces */
    pc_create_result_t results[5];
    pc_transfer_t t;
    switch (k) {
    case 0: {
        pc_account_t accounts[5] = {mkacct(ID(1), 1, 0), mkacct(ID(2), 1, 0),
                                    mkacct(ID(3), 1, PC_ACCOUNT_debits_must_not_exceed_credits),
                                    mkacct(ID(4), 2, 0), mkacct(ID(5), 2, 0)};
        if (shadow) ASSERT_EQ(fx_apply(p, PC_OP_create_accounts, accounts, 5, results), 0);
        break;
    }
    case 1: {
        pc_account_t accounts[5] = {mkacct(ID(51), 1, 0), mkacct(ID(52), 1, 0),
                                    mkacct(ID(53), 1, PC_ACCOUNT_debits_must_not_exceed_credits),
                                    mkacct(ID(54), 2, 0), mkacct(ID(55), 2, 0)};
        if (shadow) ASSERT_EQ(fx_apply(q, PC_OP_create_accounts, accounts, 5, results), 0);
        break;
    }
    case 2:
        t = xt(ID(100), ID(1), ID(2), 100 * m, 1, 0);
        ASSERT_EQ(fx_one(p, PC_OP_create_transfers, &t), 0);
        break;
    case 3:
        t = xt(ID(101), ID(2), ID(1), 5 * m, 1, 2);
        t.flags = PC_TRANSFER_pending;
        ASSERT_EQ(fx_one(p, PC_OP_create_transfers, &t), 0);
        break;
    case 4: EXPECT(xtry(p, xt(ID(200), ID(1), ID(51), 30 * m, 1, 60)), created); break;
    case 5: EXPECT(xtry(q, xt(ID(200), ID(1), ID(51), 30 * m, 1, 60)), created); break;
    case 6: EXPECT(xresolve(p, ID(200), true), created); break;
    case 7: EXPECT(xresolve(q, ID(200), true), created); break;
    case 8: EXPECT(xfinish(p, ID(200)), created); break;
    case 9: EXPECT(xtry(p, xt(ID(201), ID(2), ID(52), 7 * m, 1, 60)), created); break;
    case 10: EXPECT(xresolve(p, ID(201), false), created); break;
    case 11: EXPECT(xresolve(q, ID(201), false), created); break; /* empty rollback */
    case 12: EXPECT(xtry(p, xt(ID(202), ID(1), ID(53), 9 * m, 1, 1)), created); break;
    case 13:
        t = xt(ID(300), ID(51), ID(52), 40 * m, 1, 0);
        ASSERT_EQ(fx_one(q, PC_OP_create_transfers, &t), 0);
        break;
    case 14: /* by now 101 and 202 expired: 202's abort waits in the outbox */
        t = xt(ID(102), ID(4), ID(5), 11 * m, 2, 0);
        ASSERT_EQ(fx_one(p, PC_OP_create_transfers, &t), 0);
        break;
    default: PC__TEST_FAIL("no step %u", k);
    }
#undef ID
}

/* Shadow batches land between the real ones, half a second after each, and
 * do not move the real clock. */
static void shadow_between(fx_t *p, fx_t *q, uint32_t k) {
    uint64_t p_now = p->now, q_now = q->now;
    p->now -= S_NS / 2;
    q->now -= S_NS / 2;
    p->step = q->step = 1000;
    p->flags = q->flags = PC_REQUEST_SHADOW;
    script_step(p, q, k, true);
    p->flags = q->flags = 0;
    p->step = q->step = S_NS;
    p->now = p_now;
    q->now = q_now;
}

/* Issue 5's isolation: the same real load alone and beside shadow traffic
 * leaves every real record byte-for-byte alike (the real namespace's
 * checksum covers records, balances, timestamps, statuses, legs and the
 * outbox); shadow_purge then removes every shadow record, survives a
 * restart (the purged slots stay in the store and are skipped), and the
 * shadow namespace can be used again. */
static void test_shadow_isolation(void) {
    fx_t *pa = fx_payer(), *qa = fx_payee(); /* real load alone */
    fx_t *pb = fx_payer(), *qb = fx_payee(); /* the same, with shadow traffic */
    for (uint32_t k = 0; k < script_steps(); k++) {
        script_step(pa, qa, k, false);
        script_step(pb, qb, k, false);
        shadow_between(pb, qb, k);
        ASSERT_EQ(pb->now, pa->now);
    }
    ASSERT_EQ_U128(space_checksum(pb, false), space_checksum(pa, false));
    ASSERT_EQ_U128(space_checksum(qb, false), space_checksum(qa, false));
    ASSERT_TRUE(space_checksum(pb, true) != space_checksum(pa, true));
    uint64_t accounts = 0, transfers = 0;
    pc_ledger_namespace_counts(pb->ledger, true, &accounts, &transfers);
    ASSERT_EQ(accounts, 6); /* five and the shadow clearing account of ledger 1 */
    ASSERT_EQ(transfers, 6); /* 300 ran on the payee */
    space_counts(pa, true, 0, 0);
    /* The real totals agree, the shadow ones balance on their own. */
    pc_totals_t ta[4], tb[4];
    ASSERT_EQ(pc_ledger_xts_totals(pa->ledger, false, ta, 4), 2);
    ASSERT_EQ(pc_ledger_xts_totals(pb->ledger, false, tb, 4), 2);
    ASSERT_EQ(memcmp(ta, tb, sizeof(pc_totals_t) * 2), 0);
    ASSERT_EQ(pc_ledger_xts_totals(pb->ledger, true, tb, 4), 2);
    ASSERT_EQ(tb[0].xts_outbox, 2); /* 201's abort and 202's expiry, unfinished */
    for (uint32_t i = 0; i < 2; i++) {
        ASSERT_EQ_U128(tb[i].debits_pending, tb[i].credits_pending);
        ASSERT_EQ_U128(tb[i].debits_posted, tb[i].credits_posted);
    }

    /* Purge both units of the shadow pair; the real side stays as it was. */
    pc_u128 real_p = space_checksum(pb, false), real_q = space_checksum(qb, false);
    pc_u128 zero = 0, one = 1;
    uint64_t p_now = pb->now, q_now = qb->now; /* between real batches, as above */
    pb->now -= S_NS / 2;
    qb->now -= S_NS / 2;
    pb->step = qb->step = 1000;
    pb->flags = qb->flags = PC_REQUEST_SHADOW;
    EXPECT(fx_one(pb, PC_OP_shadow_purge, &one), reserved_flag);
    ASSERT_EQ(fx_one(pb, PC_OP_shadow_purge, &zero), 0);
    ASSERT_EQ(fx_one(qb, PC_OP_shadow_purge, &zero), 0);
    ASSERT_EQ(fx_one(qb, PC_OP_shadow_purge, &zero), 0); /* nothing left: still fine */
    pb->flags = qb->flags = 0;
    pb->step = qb->step = S_NS;
    pb->now = p_now;
    qb->now = q_now;
    space_counts(pb, true, 0, 0);
    space_counts(qb, true, 0, 0);
    ASSERT_EQ(pc_ledger_xts_totals(pb->ledger, true, NULL, 0), 0);
    ASSERT_EQ_U128(space_checksum(pb, false), real_p);
    ASSERT_EQ_U128(space_checksum(qb, false), real_q);
    pc_u128 gone = PC_SHADOW_ID(100);
    uint64_t loc = 0;
    const pc_transfer_t *unflushed = NULL;
    ASSERT_EQ(pc_ledger_transfer_loc(pb->ledger, gone, &loc, &unflushed), PC_ENOTFOUND);
    pc_account_t none;
    gone = PC_SHADOW_ID(1);
    ASSERT_EQ(pc_ledger_lookup_accounts(pb->ledger, &gone, 1, &none), 0);
    conserved(pb);

    /* A restart rebuilds the same state: purged slots are skipped. */
    fx_restart(pb);
    fx_restart(qb);
    ASSERT_EQ_U128(space_checksum(pb, false), real_p);
    space_counts(pb, true, 0, 0);

    /* The namespace is usable again, the old ids included; and the real
     * load goes on alike. */
    shadow_between(pb, qb, 0);
    shadow_between(pb, qb, 1);
    shadow_between(pb, qb, 2);
    space_counts(pb, true, 5, 1);
    fx_restart(pb);
    space_counts(pb, true, 5, 1);
    pc_transfer_t t = xt(400, 1, 2, 1, 1, 0);
    ASSERT_EQ(fx_one(pa, PC_OP_create_transfers, &t), 0);
    ASSERT_EQ(fx_one(pb, PC_OP_create_transfers, &t), 0);
    ASSERT_EQ_U128(space_checksum(pb, false), space_checksum(pa, false));
    fx_free(pa);
    fx_free(qa);
    fx_free(pb);
    fx_free(qb);
}

/* The purge's index deletion keeps every other entry findable: many shadow
 * and real transfers interleaved in a small, crowded index (long probe runs
 * that wrap around its end), then every real id is still found with its
 * record and every shadow id is gone. */
static void test_shadow_purge_crowded_index(void) {
    fx_t *fx = fx_new(64, 64, 64, OWN_ALL);
    fx_accounts(fx, 0);
    fx->flags = PC_REQUEST_SHADOW;
    pc_account_t copies[2] = {mkacct(PC_SHADOW_ID(1), 1, 0), mkacct(PC_SHADOW_ID(2), 1, 0)};
    pc_create_result_t results[64];
    ASSERT_EQ(fx_apply(fx, PC_OP_create_accounts, copies, 2, results), 0);
    uint64_t real = 0;
    pc_prng_t prng;
    pc_prng_init(&prng, 9);
    for (uint32_t batch = 0; batch < 48; batch++) { /* 48 * 64 = 3,072 of 4,096 */
        pc_transfer_t t[64];
        bool shadow = pc_prng_next(&prng) & 1;
        for (uint32_t i = 0; i < 64; i++) {
            pc_u128 id = 1 + batch * 64u + i;
            t[i] = shadow ? xt(PC_SHADOW_ID(id), PC_SHADOW_ID(1), PC_SHADOW_ID(2), 1, 1, 0)
                          : xt(id, 1, 2, 1, 1, 0);
        }
        fx->flags = shadow ? PC_REQUEST_SHADOW : 0;
        ASSERT_EQ(fx_apply(fx, PC_OP_create_transfers, t, 64, results), 0);
        if (!shadow) real += 64;
    }
    pc_u128 before = space_checksum(fx, false);
    fx->flags = PC_REQUEST_SHADOW;
    pc_u128 zero = 0;
    ASSERT_EQ(fx_one(fx, PC_OP_shadow_purge, &zero), 0);
    space_counts(fx, true, 0, 0);
    space_counts(fx, false, 5, real);
    ASSERT_EQ_U128(space_checksum(fx, false), before);
    for (uint32_t id = 1; id <= 48 * 64; id++) {
        uint64_t loc = 0;
        const pc_transfer_t *unflushed = NULL;
        bool real_found = pc_ledger_transfer_loc(fx->ledger, id, &loc, &unflushed) == PC_OK;
        bool shadow_found =
            pc_ledger_transfer_loc(fx->ledger, PC_SHADOW_ID(id), &loc, &unflushed) == PC_OK;
        ASSERT_TRUE(!shadow_found);
        if (real_found) ASSERT_EQ_U128(fx->store[loc].transfer.id, id);
    }
    fx_restart(fx);
    ASSERT_EQ_U128(space_checksum(fx, false), before);
    fx_free(fx);
}

#define TESTS(X)                                                                                   \
    X(test_xts_commit)                                                                             \
    X(test_xts_abort)                                                                              \
    X(test_xts_batches)                                                                            \
    X(test_xts_roles)                                                                              \
    X(test_xts_validation)                                                                         \
    X(test_xts_plain_operations)                                                                   \
    X(test_xts_empty_rollback)                                                                     \
    X(test_xts_expiry)                                                                             \
    X(test_xts_expiry_in_batch)                                                                    \
    X(test_xts_outbox_full)                                                                        \
    X(test_xts_store_reserve)                                                        \
    X(test_xts_clearing_unavailable)                                                               \
    X(test_xts_outbox_filter)                                                                      \
    X(test_xts_totals)                                                                             \
    X(test_xts_snapshot_rebuild)                                                                   \
    X(test_xts_snapshot_outbox_checked)                                                            \
    X(test_xts_random)                                                                             \
    X(test_shadow_mixed_refused)                                                                   \
    X(test_shadow_isolation)                                                                       \
    X(test_shadow_purge_crowded_index)

PC_TEST_MAIN(TESTS)
