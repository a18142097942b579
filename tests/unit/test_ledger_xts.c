/*
 * Unit tests of cross-unit transfers (src/ledger/xts.c), payee first: the
 * payee's xts_try (a pending credit leg that never expires), the payer's
 * xts_try (the decision: the debit posted at once, or a refusal that leaves
 * a tombstone), xts_resolve at the payee (confirm or cancel the leg) and at
 * the payer (the payee's recovery asking, naming the leg by its digest).
 * Every repeat of every step, empty rollback and suspension on both sides,
 * capacity (the store's reserve, pending room, the clearing account), the
 * get_xts_legs listing of undecided payee legs and its filter, totals,
 * snapshot and rebuild mid-way, a seeded randomized run across two ledgers
 * and the shadow namespace. Conservation (per ledger, the unit's debits equal
 * its credits, pending and posted) is checked after every step.
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
#define TRANSFERS_MAX 4096u

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

static fx_t *fx_new(uint32_t accounts_max, uint64_t transfers_max, uint32_t pending_max, int own) {
    fx_t *fx = calloc(1, sizeof(*fx));
    fx->config = (pc_ledger_config_t){
        .accounts_max = accounts_max, .transfers_max = transfers_max, .pending_max = pending_max};
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
    fx_t *fx = fx_new(64, TRANSFERS_MAX, 64, OWN_LOW);
    fx_accounts(fx, 0);
    return fx;
}

static fx_t *fx_payee(void) {
    fx_t *fx = fx_new(64, TRANSFERS_MAX, 64, OWN_HIGH);
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

/* A decision; leg 0 (any leg) unless a test names one. */
static pc_xts_decision_t decision(pc_u128 gtid, bool commit) {
    return (pc_xts_decision_t){.gtid = gtid,
                               .flags = commit ? PC_TRANSFER_post_pending_transfer
                                               : PC_TRANSFER_void_pending_transfer};
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

/* A resolve naming the leg it is about (the payee's recovery asking). */
static uint32_t xresolve_leg(fx_t *fx, pc_u128 gtid, bool commit, uint64_t leg) {
    pc_xts_decision_t d = decision(gtid, commit);
    d.leg = leg;
    return fx_one(fx, PC_OP_xts_resolve, &d);
}

/* A plain create_transfers event. */
static uint32_t plain(fx_t *fx, pc_transfer_t t) {
    return fx_one(fx, PC_OP_create_transfers, &t);
}

#define EXPECT(call, result) ASSERT_STREQ(name(call), #result)
/* Result i of a batch: event index and name. */
#define EXPECT_AT(results, i, event, expected)                                                     \
    do {                                                                                           \
        ASSERT_EQ((results)[i].index, (event));                                                    \
        ASSERT_STREQ(name((results)[i].result), #expected);                                        \
    } while (0)

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
    pc_ledger_totals_t plain_totals[8];
    uint32_t n = pc_ledger_xts_totals(fx->ledger, false, totals, 8);
    ASSERT_TRUE(n <= 8);
    ASSERT_EQ(pc_ledger_totals(fx->ledger, plain_totals, 8), n);
    for (uint32_t i = 0; i < n; i++) {
        ASSERT_EQ_U128(totals[i].debits_pending, totals[i].credits_pending);
        ASSERT_EQ_U128(totals[i].debits_posted, totals[i].credits_posted);
        ASSERT_EQ(totals[i].ledger, plain_totals[i].ledger);
        ASSERT_EQ_U128(totals[i].debits_pending, plain_totals[i].debits_pending);
        ASSERT_EQ_U128(totals[i].credits_posted, plain_totals[i].credits_posted);
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

/* Across the pair, once every decision reached the payee: what the payer's
 * clearing account took in, the payee's paid out, on both ledgers. */
static void crossed(fx_t *p, fx_t *q) {
    for (uint32_t ledger = 1; ledger <= 2; ledger++) {
        pc_totals_t tp = totals_of(p, ledger), tq = totals_of(q, ledger);
        ASSERT_EQ_U128(tp.clearing_credits_posted, tq.clearing_debits_posted);
        ASSERT_EQ_U128(tp.clearing_debits_posted, 0);
        ASSERT_EQ_U128(tq.clearing_credits_posted, 0);
    }
}

/* get_xts_legs: the undecided payee legs. */
static int trying(fx_t *fx, uint64_t timestamp_max, uint32_t limit, pc_transfer_t *out) {
    pc_account_filter_t f;
    memset(&f, 0, sizeof(f));
    f.limit = limit;
    f.flags = PC_FILTER_XTS_TRYING;
    f.timestamp_max = timestamp_max;
    return pc_ledger_xts_legs(fx->ledger, &f, out);
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

/* A lookup returns the transfer exactly as sent, stamped. */
static void reads_as_sent(fx_t *fx, pc_transfer_t sent) {
    pc_transfer_t t = lookup(fx, sent.id);
    ASSERT_EQ(t.flags, 0);
    ASSERT_TRUE(t.timestamp != 0);
    t.timestamp = 0;
    ASSERT_EQ(memcmp(&t, &sent, sizeof(t)), 0);
}

static void not_found(fx_t *fx, pc_u128 gtid) {
    uint64_t loc = 0;
    const pc_transfer_t *unflushed = NULL;
    ASSERT_EQ(pc_ledger_transfer_loc(fx->ledger, gtid, &loc, &unflushed), PC_ENOTFOUND);
}

/* ---- happy paths ---- */

/* Every step of a commit, each repeated, on both sides. */
static void test_xts_commit(void) {
    fx_t *p = fx_payer(), *q = fx_payee();
    pc_transfer_t t = xt(1000, 1, 51, 100, 1, 60);
    EXPECT(xtry(q, t), created); /* 1: the payee's pending credit */
    EXPECT(xtry(q, t), exists);
    ASSERT_BAL(q, 51, 0, 0, 100, 0);
    ASSERT_BAL(q, CLR(1), 100, 0, 0, 0);
    conserved(q);
    EXPECT(xtry(p, t), created); /* 2: the payer's decision, posted at once */
    EXPECT(xtry(p, t), exists);
    ASSERT_BAL(p, 1, 0, 100, 0, 0);
    ASSERT_BAL(p, CLR(1), 0, 0, 0, 100);
    conserved(p);
    reads_as_sent(p, t);
    reads_as_sent(q, t);
    ASSERT_EQ(pc_ledger_next_expiry(p->ledger), UINT64_MAX); /* nothing left to expire */

    EXPECT(xresolve(q, 1000, true), created); /* 3: the confirm */
    EXPECT(xresolve(q, 1000, true), exists);
    EXPECT(xresolve(q, 1000, false), xts_committed);
    ASSERT_BAL(q, 51, 0, 0, 0, 100);
    ASSERT_BAL(q, CLR(1), 0, 100, 0, 0);
    conserved(q);
    pc_transfer_t out[4];
    ASSERT_EQ(trying(q, 0, 4, out), 0);
    ASSERT_EQ(trying(p, 0, 4, out), 0);

    /* Late repeats of every step. */
    EXPECT(xtry(q, t), exists);
    EXPECT(xtry(p, t), exists);
    EXPECT(xresolve(q, 1000, true), exists);
    EXPECT(xresolve(p, 1000, true), exists);
    reads_as_sent(q, t);
    ASSERT_BAL(p, 1, 0, 100, 0, 0);
    ASSERT_BAL(q, 51, 0, 0, 0, 100);
    conserved(p);
    conserved(q);
    crossed(p, q);
    fx_free(p);
    fx_free(q);
}

/* The payer refuses (insufficient funds): that is the abort. Its tombstone
 * answers every later try with xts_aborted, even once the funds are there,
 * and the payee cancels its leg. */
static void test_xts_payer_refused(void) {
    fx_t *p = fx_payer(), *q = fx_payee();
    pc_transfer_t t = xt(2000, 3, 53, 70, 1, 60);
    EXPECT(xtry(q, t), created);
    EXPECT(xtry(p, t), exceeds_credits);
    EXPECT(xtry(p, t), xts_aborted);
    ASSERT_BAL(p, 3, 0, 0, 0, 0);
    not_found(p, 2000);
    EXPECT(plain(p, xt(2001, 1, 3, 500, 1, 0)), created); /* funds arrive */
    EXPECT(xtry(p, t), xts_aborted);
    t.amount = 71;
    EXPECT(xtry(p, t), xts_aborted); /* whatever the fields */
    t.amount = 70;
    ASSERT_BAL(p, 3, 0, 0, 0, 500);
    pc_account_t none;
    pc_u128 clearing = CLR(1);
    ASSERT_EQ(pc_ledger_lookup_accounts(p->ledger, &clearing, 1, &none), 0); /* made on commit */
    EXPECT(xresolve(p, 2000, true), xts_aborted);
    EXPECT(xresolve(p, 2000, false), exists);
    EXPECT(plain(p, xt(2000, 1, 2, 5, 1, 0)), id_already_failed);
    conserved(p);

    EXPECT(xresolve(q, 2000, false), created); /* 3: the cancel */
    EXPECT(xresolve(q, 2000, false), exists);
    EXPECT(xresolve(q, 2000, true), xts_aborted);
    ASSERT_BAL(q, 53, 0, 0, 0, 0);
    ASSERT_BAL(q, CLR(1), 0, 0, 0, 0);
    EXPECT(xtry(q, t), exists);
    reads_as_sent(q, t);
    conserved(q);
    crossed(p, q);
    fx_free(p);
    fx_free(q);
}

/* Every state-dependent refusal of the payer is its abort and leaves a
 * tombstone; the stateless ones decide nothing. */
static void test_xts_payer_checks(void) {
    fx_t *p = fx_payer();
    EXPECT(xtry(p, xt(700, 9, 51, 5, 1, 60)), debit_account_not_found);
    pc_account_t nine = mkacct(9, 1, 0);
    ASSERT_EQ(fx_one(p, PC_OP_create_accounts, &nine), 0);
    EXPECT(xtry(p, xt(700, 9, 51, 5, 1, 60)), xts_aborted);
    EXPECT(xtry(p, xt(701, 1, 51, 5, 2, 60)), transfer_must_have_the_same_ledger_as_accounts);
    EXPECT(xtry(p, xt(701, 1, 51, 5, 1, 60)), xts_aborted);
    EXPECT(xtry(p, xt(702, 3, 51, 5, 1, 60)), exceeds_credits);
    EXPECT(plain(p, xt(1, 1, 3, 5, 1, 0)), created);
    EXPECT(xtry(p, xt(702, 3, 51, 5, 1, 60)), xts_aborted);
    EXPECT(xtry(p, xt(703, 3, 51, 5, 1, 60)), created); /* a new gtid: the funds do */
    EXPECT(xtry(p, xt(704, 3, 51, 1, 1, 60)), exceeds_credits);
    ASSERT_BAL(p, 3, 0, 5, 0, 5);

    /* Overflow, checked as for a posted transfer: account 2's pending debits
     * plus its posted ones would pass 2^128 (a pending check would answer
     * overflows_debits_pending). */
    pc_transfer_t big = xt(2, 2, 1, PC_U128_MAX - 10, 1, 0);
    big.flags = PC_TRANSFER_pending;
    EXPECT(plain(p, big), created);
    EXPECT(xtry(p, xt(705, 2, 52, 20, 1, 60)), overflows_debits);
    EXPECT(xtry(p, xt(705, 2, 52, 5, 1, 60)), xts_aborted);
    EXPECT(xtry(p, xt(706, 2, 52, 5, 1, 60)), created);
    ASSERT_BAL(p, 2, PC_U128_MAX - 10, 5, 0, 0);

    /* Stateless refusals leave no tombstone: the gtid stays free. */
    EXPECT(xtry(p, xt(707, 1, 51, 0, 1, 60)), amount_must_not_be_zero);
    EXPECT(xtry(p, xt(707, 1, 51, 5, 1, 0)), xts_timeout_must_not_be_zero);
    EXPECT(xtry(p, xt(707, 1, 51, 5, 1, 60)), created);
    for (pc_u128 g = 700; g <= 705; g++) {
        if (g == 703) continue;
        not_found(p, g);
        EXPECT(xresolve(p, g, false), exists);
    }
    ASSERT_BAL(p, CLR(1), 0, 0, 0, 15);
    conserved(p);
    fx_free(p);
}

/* The payee's recovery ends a leg past its timeout by asking the payer
 * (xts_resolve(abort) naming the leg) and applying the answer. */
static void test_xts_recovery(void) {
    fx_t *p = fx_payer(), *q = fx_payee();
    /* The payer never heard of it: the question is its abort (empty
     * rollback), and the coordinator's late step 2 is refused. */
    pc_transfer_t a = xt(600, 1, 51, 10, 1, 5);
    EXPECT(xtry(q, a), created);
    EXPECT(xresolve_leg(p, 600, false, pc_xts_leg_digest(&a)), created);
    EXPECT(xresolve_leg(p, 600, false, pc_xts_leg_digest(&a)), exists);
    EXPECT(xtry(p, a), xts_aborted);
    EXPECT(xresolve(p, 600, true), xts_aborted);
    not_found(p, 600);
    ASSERT_BAL(p, 1, 0, 0, 0, 0);
    EXPECT(xresolve(q, 600, false), created);
    ASSERT_BAL(q, 51, 0, 0, 0, 0);

    /* The payer committed: it says so for that leg (or any, leg 0). */
    pc_transfer_t b = xt(601, 2, 52, 20, 1, 5);
    EXPECT(xtry(q, b), created);
    EXPECT(xtry(p, b), created);
    ASSERT_TRUE(pc_xts_leg_digest(&b) != 0);
    EXPECT(xresolve_leg(p, 601, false, pc_xts_leg_digest(&b)), xts_committed);
    EXPECT(xresolve(p, 601, false), xts_committed);
    EXPECT(xresolve(p, 601, true), exists);
    pc_transfer_t stored = lookup(p, 601); /* stamped: the digest ignores it */
    ASSERT_EQ(pc_xts_leg_digest(&stored), pc_xts_leg_digest(&b));
    /* A leg that is not the transfer the payer posted: not committed. */
    pc_transfer_t other = b;
    other.amount = 21;
    ASSERT_TRUE(pc_xts_leg_digest(&other) != pc_xts_leg_digest(&b));
    EXPECT(xresolve_leg(p, 601, false, pc_xts_leg_digest(&other)), xts_aborted);
    ASSERT_BAL(p, 2, 0, 20, 0, 0); /* questions change nothing */
    EXPECT(xresolve(q, 601, true), created);

    /* The payer refused: the question finds the tombstone. */
    pc_transfer_t c = xt(602, 3, 53, 30, 1, 5);
    EXPECT(xtry(q, c), created);
    EXPECT(xtry(p, c), exceeds_credits);
    EXPECT(xresolve_leg(p, 602, false, pc_xts_leg_digest(&c)), exists);
    EXPECT(xresolve(q, 602, false), created);

    /* A commit of an unknown gtid leaves nothing behind. */
    pc_transfer_t d = xt(603, 4, 54, 40, 2, 5);
    EXPECT(xresolve(p, 603, true), xts_not_found);
    EXPECT(xtry(q, d), created);
    EXPECT(xtry(p, d), created);
    EXPECT(xresolve(q, 603, true), created);
    conserved(p);
    conserved(q);
    crossed(p, q);
    ASSERT_EQ_U128(totals_of(p, 1).clearing_credits_posted, 20);
    ASSERT_EQ_U128(totals_of(q, 2).clearing_debits_posted, 40);
    fx_free(p);
    fx_free(q);
}

/* A payee leg never expires, however far time moves; a plain pending
 * transfer of the same unit does. */
static void test_xts_payee_never_expires(void) {
    fx_t *q = fx_payee();
    EXPECT(xtry(q, xt(800, 1, 51, 30, 1, 1)), created);
    ASSERT_EQ(pc_ledger_next_expiry(q->ledger), UINT64_MAX);
    pc_transfer_t plain_pending = xt(801, 52, 51, 7, 1, 1);
    plain_pending.flags = PC_TRANSFER_pending;
    EXPECT(plain(q, plain_pending), created);
    ASSERT_TRUE(pc_ledger_next_expiry(q->ledger) != UINT64_MAX);
    uint64_t far = q->now + 100000 * S_NS;
    ASSERT_EQ(pc_ledger_expire(q->ledger, far), 1); /* the plain one only */
    ASSERT_EQ(pc_ledger_next_expiry(q->ledger), UINT64_MAX);
    ASSERT_BAL(q, 52, 0, 0, 0, 0);
    q->now = far + S_NS;
    EXPECT(xtry(q, xt(802, 2, 52, 1, 1, 1)), created); /* a batch far in the future */
    q->now += 1000000 * S_NS;
    EXPECT(xresolve(q, 802, false), created);
    ASSERT_BAL(q, 51, 0, 0, 30, 0);
    ASSERT_EQ(totals_of(q, 1).xts_trying, 1);
    pc_transfer_t out[4];
    ASSERT_EQ(trying(q, 0, 4, out), 1);
    ASSERT_EQ_U128(out[0].id, 800);
    fx_restart(q);
    ASSERT_EQ(pc_ledger_next_expiry(q->ledger), UINT64_MAX);
    ASSERT_EQ(pc_ledger_expire(q->ledger, q->now + 1000000 * S_NS), 0);
    ASSERT_BAL(q, 51, 0, 0, 30, 0);
    q->now += 2000000 * S_NS;
    EXPECT(xresolve(q, 800, true), created);
    ASSERT_BAL(q, 51, 0, 0, 0, 30);
    conserved(q);
    fx_free(q);
}

/* Several steps of one gtid inside one batch, and batches that resolve or
 * question a record from a flushed batch and then compare against it (the
 * record must survive its resolution for the rest of the batch). */
static void test_xts_batches(void) {
    fx_t *p = fx_payer(), *q = fx_payee();
    pc_create_result_t results[4];
    pc_transfer_t t = xt(1500, 1, 51, 9, 1, 60);
    pc_transfer_t tries[2] = {t, t};
    ASSERT_EQ(fx_apply(q, PC_OP_xts_try, tries, 2, results), 1);
    EXPECT_AT(results, 0, 1, exists);
    ASSERT_EQ(fx_apply(p, PC_OP_xts_try, tries, 2, results), 1);
    EXPECT_AT(results, 0, 1, exists);
    /* A refusal's tombstone answers the retry right behind it. */
    pc_transfer_t bad[2] = {xt(1502, 3, 53, 4, 1, 60), xt(1502, 3, 53, 4, 1, 60)};
    ASSERT_EQ(fx_apply(p, PC_OP_xts_try, bad, 2, results), 2);
    EXPECT_AT(results, 0, 0, exceeds_credits);
    EXPECT_AT(results, 1, 1, xts_aborted);
    pc_transfer_t differ[2] = {xt(1503, 2, 52, 4, 1, 60), xt(1503, 2, 52, 5, 1, 60)};
    ASSERT_EQ(fx_apply(p, PC_OP_xts_try, differ, 2, results), 1);
    EXPECT_AT(results, 0, 1, exists_with_different_amount);

    pc_xts_decision_t confirms[3] = {decision(1500, true), decision(1500, true),
                                     decision(1500, false)};
    ASSERT_EQ(fx_apply(q, PC_OP_xts_resolve, confirms, 3, results), 2);
    EXPECT_AT(results, 0, 1, exists);
    EXPECT_AT(results, 1, 2, xts_committed);
    EXPECT(xtry(q, xt(1501, 2, 52, 4, 1, 60)), created);
    pc_xts_decision_t cancels[3] = {decision(1501, false), decision(1501, true),
                                    decision(1501, false)};
    ASSERT_EQ(fx_apply(q, PC_OP_xts_resolve, cancels, 3, results), 2);
    EXPECT_AT(results, 0, 1, xts_aborted);
    EXPECT_AT(results, 1, 2, exists);
    pc_transfer_t retries[2] = {t, xt(1501, 2, 52, 4, 1, 60)};
    ASSERT_EQ(fx_apply(q, PC_OP_xts_try, retries, 2, results), 2);
    EXPECT_AT(results, 0, 0, exists);
    EXPECT_AT(results, 1, 1, exists);

    /* The recovery's questions to the payer, about flushed records. */
    pc_xts_decision_t asks[4] = {decision(1500, false), decision(1500, true), decision(1502, false),
                                 decision(1504, false)};
    asks[0].leg = pc_xts_leg_digest(&t);
    ASSERT_EQ(fx_apply(p, PC_OP_xts_resolve, asks, 4, results), 3);
    EXPECT_AT(results, 0, 0, xts_committed);
    EXPECT_AT(results, 1, 1, exists);
    EXPECT_AT(results, 2, 2, exists);
    EXPECT(xresolve(p, 1504, false), exists); /* event 3 left its tombstone */
    conserved(p);
    conserved(q);
    fx_free(p);
    fx_free(q);
}

/* ---- validation ---- */

static void test_xts_roles(void) {
    fx_t *all = fx_new(64, TRANSFERS_MAX, 64, OWN_ALL), *p = fx_payer();
    fx_accounts(all, 0);
    EXPECT(xtry(all, xt(1, 1, 2, 5, 1, 60)), xts_same_unit);
    EXPECT(xtry(all, xt(1, 1, 51, 5, 1, 60)), xts_same_unit);
    EXPECT(xtry(p, xt(1, 1, 2, 5, 1, 60)), xts_same_unit);
    EXPECT(xtry(p, xt(1, 51, 52, 5, 1, 60)), wrong_unit);
    /* Both sides need a timeout (the payee's recovery goes by it). */
    EXPECT(xtry(p, xt(1, 1, 51, 5, 1, 0)), xts_timeout_must_not_be_zero);
    EXPECT(xtry(p, xt(1, 51, 1, 5, 1, 0)), xts_timeout_must_not_be_zero);
    EXPECT(xtry(p, xt(1, 51, 1, 5, 1, 60)), created); /* a payee leg here */
    EXPECT(xtry(p, xt(1, 51, 1, 5, 1, 60)), exists);
    EXPECT(xtry(p, xt(2, CLR(1), 51, 5, 1, 60)), debit_account_not_found);
    EXPECT(xtry(p, xt(2, 51, CLR(1), 5, 1, 60)), credit_account_not_found);
    EXPECT(xtry(p, xt(2, 1, 51, 5, 1, 60)), created); /* no tombstone for those */
    /* The payee's refusals decide nothing: the same gtid may take later. */
    EXPECT(xtry(p, xt(3, 51, 9, 5, 1, 60)), credit_account_not_found);
    EXPECT(xtry(p, xt(3, 51, 1, 5, 2, 60)), transfer_must_have_the_same_ledger_as_accounts);
    pc_account_t nine = mkacct(9, 1, 0);
    ASSERT_EQ(fx_one(p, PC_OP_create_accounts, &nine), 0);
    EXPECT(xtry(p, xt(3, 51, 9, 5, 1, 60)), created);
    ASSERT_BAL(p, 9, 0, 0, 5, 0);
    conserved(p);
    fx_free(all);
    fx_free(p);
}

static void test_xts_validation(void) {
    fx_t *p = fx_payer(), *q = fx_payee();
    pc_transfer_t t = xt(3, 1, 51, 5, 1, 60);
    t.flags = PC_TRANSFER_linked;
    EXPECT(xtry(p, t), xts_flags_invalid);
    t.flags = PC_TRANSFER_pending;
    EXPECT(xtry(p, t), xts_flags_invalid);
    EXPECT(xtry(p, xt(3, 1, 51, 0, 1, 60)), amount_must_not_be_zero);
    EXPECT(xtry(p, xt(0, 1, 51, 5, 1, 60)), id_must_not_be_zero);
    EXPECT(xtry(p, xt(PC_U128_MAX, 1, 51, 5, 1, 60)), id_must_not_be_int_max);
    EXPECT(xtry(p, xt(3, 1, 51, 5, 0, 60)), ledger_must_not_be_zero);
    EXPECT(xtry(p, xt(3, 1, 1, 5, 1, 60)), accounts_must_be_different);
    t = xt(3, 1, 51, 5, 1, 60);
    t.timestamp = 1;
    EXPECT(xtry(p, t), timestamp_must_be_zero);
    t = xt(3, 1, 51, 5, 1, 60);
    t.pending_id = 9;
    EXPECT(xtry(p, t), pending_id_must_be_zero);
    t = xt(3, 1, 51, 5, 1, 60);
    t.code = 0;
    EXPECT(xtry(p, t), code_must_not_be_zero);
    /* Retries with other fields, on both sides. */
    t = xt(3, 1, 51, 5, 1, 60);
    EXPECT(xtry(q, t), created);
    EXPECT(xtry(p, t), created);
    fx_t *sides[2] = {p, q};
    for (int i = 0; i < 2; i++) {
        EXPECT(xtry(sides[i], xt(3, 1, 51, 6, 1, 60)), exists_with_different_amount);
        EXPECT(xtry(sides[i], xt(3, 1, 51, 5, 1, 61)), exists_with_different_timeout);
        EXPECT(xtry(sides[i], xt(3, 2, 51, 5, 1, 60)), exists_with_different_debit_account_id);
        EXPECT(xtry(sides[i], xt(3, 1, 52, 5, 1, 60)), exists_with_different_credit_account_id);
        pc_transfer_t u = t;
        u.user_data_64++;
        EXPECT(xtry(sides[i], u), exists_with_different_user_data_64);
        EXPECT(xtry(sides[i], t), exists);
    }
    ASSERT_BAL(p, 1, 0, 5, 0, 0);
    ASSERT_BAL(q, 51, 0, 0, 5, 0);
    conserved(p);
    conserved(q);
    fx_free(p);
    fx_free(q);
}

static void test_xts_resolve_validation(void) {
    fx_t *q = fx_payee();
    EXPECT(xtry(q, xt(3, 1, 51, 5, 1, 60)), created);
    /* Flags exactly one of post and void, reserved bytes zero. */
    pc_xts_decision_t d = decision(3, true);
    d.flags |= PC_TRANSFER_void_pending_transfer;
    EXPECT(fx_one(q, PC_OP_xts_resolve, &d), xts_flags_invalid);
    d = decision(3, true);
    d.flags |= PC_TRANSFER_linked;
    EXPECT(fx_one(q, PC_OP_xts_resolve, &d), xts_flags_invalid);
    d.flags = 0;
    EXPECT(fx_one(q, PC_OP_xts_resolve, &d), xts_flags_invalid);
    for (uint32_t i = 0; i < sizeof d.reserved; i++) {
        d = decision(3, true);
        d.reserved[i] = 1;
        EXPECT(fx_one(q, PC_OP_xts_resolve, &d), reserved_flag);
    }
    d = decision(0, true);
    EXPECT(fx_one(q, PC_OP_xts_resolve, &d), id_must_not_be_zero);
    d = decision(PC_U128_MAX, false);
    EXPECT(fx_one(q, PC_OP_xts_resolve, &d), id_must_not_be_int_max);
    ASSERT_BAL(q, 51, 0, 0, 5, 0); /* none of them touched the leg */
    EXPECT(xresolve(q, 77, true), xts_not_found);
    EXPECT(xresolve(q, 3, true), created);
    ASSERT_BAL(q, 51, 0, 0, 0, 5);
    /* A plain transfer's id is no gtid: nothing to commit, and no try of
     * it can ever take, so an abort (a recovery asking) is answered as done
     * and leaves the transfer alone. */
    EXPECT(plain(q, xt(4, 51, 52, 5, 1, 0)), created);
    EXPECT(xresolve(q, 4, true), xts_not_found);
    EXPECT(xresolve(q, 4, false), xts_aborted);
    EXPECT(plain(q, xt(4, 51, 52, 5, 1, 0)), exists);
    conserved(q);
    fx_free(q);
}

/* Users cannot touch clearing accounts or xts records through the plain
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
    EXPECT(xtry(p, xt(10, 1, 51, 5, 1, 60)), created); /* the payer's posted record */
    EXPECT(xtry(p, xt(15, 52, 2, 6, 1, 60)), created); /* a payee leg, pending */
    EXPECT(plain(p, xt(11, 1, CLR(1), 5, 1, 0)), credit_account_not_found);
    EXPECT(plain(p, xt(12, CLR(1), 1, 5, 1, 0)), debit_account_not_found);
    EXPECT(plain(p, xt(13, 1, 51, 5, 1, 0)), wrong_unit);
    pc_u128 gtids[2] = {10, 15};
    for (int i = 0; i < 2; i++) {
        pc_transfer_t t;
        memset(&t, 0, sizeof(t));
        t.id = 20 + (pc_u128)i * 2;
        t.pending_id = gtids[i];
        t.flags = PC_TRANSFER_post_pending_transfer;
        EXPECT(plain(p, t), pending_transfer_not_found);
        t.id++;
        t.flags = PC_TRANSFER_void_pending_transfer;
        EXPECT(plain(p, t), pending_transfer_not_found);
    }
    ASSERT_BAL(p, 2, 0, 0, 6, 0); /* still pending */
    EXPECT(plain(p, xt(10, 1, 51, 5, 1, 0)), wrong_unit);
    EXPECT(plain(p, xt(10, 1, 2, 5, 1, 0)), exists_with_different_flags);
    EXPECT(plain(p, xt(15, 1, 2, 5, 1, 0)), exists_with_different_flags);
    /* The clearing account is in no bucket. */
    uint32_t bucket_total = 0;
    for (uint32_t b = 0; b < PC_ROUTING_BUCKETS; b++)
        bucket_total += pc_ledger_bucket_accounts(p->ledger, b);
    ASSERT_EQ(bucket_total, 5);
    ASSERT_EQ(totals_of(p, 1).accounts_count, 4); /* three accounts and the clearing one */
    conserved(p);
    fx_free(p);
}

/* ---- empty rollback, capacity ---- */

/* An abort of an unknown gtid leaves a tombstone on either side: a later
 * try there (payer or payee) is refused (suspension), across a restart. */
static void test_xts_empty_rollback(void) {
    fx_t *p = fx_payer(), *q = fx_payee();
    fx_t *sides[2] = {p, q};
    for (int i = 0; i < 2; i++) {
        fx_t *fx = sides[i];
        pc_u128 own = i == 0 ? 1 : 51; /* an account of this side */
        EXPECT(xresolve(fx, 3000, false), created);
        EXPECT(xresolve(fx, 3000, false), exists);
        EXPECT(xresolve_leg(fx, 3000, false, 12345), exists);
        EXPECT(xresolve(fx, 3000, true), xts_aborted);
        EXPECT(xtry(fx, xt(3000, 1, 51, 5, 1, 60)), xts_aborted);
        EXPECT(xtry(fx, xt(3000, 2, 52, 9, 1, 60)), xts_aborted);
        not_found(fx, 3000);
        EXPECT(plain(fx, xt(3000, own, own + 1, 5, 1, 0)), id_already_failed);
        ASSERT_BAL(fx, own, 0, 0, 0, 0);
        conserved(fx);
    }
    pc_transfer_t out[2];
    ASSERT_EQ(trying(q, 0, 2, out), 0);
    ASSERT_EQ(totals_of(q, 1).xts_trying, 0);
    for (int i = 0; i < 2; i++) {
        fx_restart(sides[i]);
        EXPECT(xtry(sides[i], xt(3000, 1, 51, 5, 1, 60)), xts_aborted);
        EXPECT(xresolve(sides[i], 3000, false), exists);
        EXPECT(xresolve(sides[i], 3000, true), xts_aborted);
    }
    fx_free(p);
    fx_free(q);
}

/* A payee leg holds one slot of the store for its resolution, a payer's
 * decision takes one slot: tries and plain transfers stop short of the
 * reserve, so every resolution can be applied even when the store is
 * otherwise full. */
static void test_xts_store_reserve(void) {
    fx_t *p = fx_new(64, 8, 64, OWN_LOW);
    fx_accounts(p, 0);
    for (pc_u128 g = 1; g <= 3; g++)
        EXPECT(xtry(p, xt(g, 51, 1, 5, 1, 60)), created);
    /* 3 slots + 3 reserved: a payer decision fits, a payee leg does not. */
    EXPECT(xtry(p, xt(11, 1, 51, 5, 1, 60)), created);
    EXPECT(xtry(p, xt(4, 51, 1, 5, 1, 60)), transfers_full);
    EXPECT(xtry(p, xt(12, 2, 52, 5, 1, 60)), created);
    /* 5 + 3: full. A refusal without room leaves no tombstone (no try of
     * the gtid can ever take), and so does an empty rollback. */
    EXPECT(xtry(p, xt(13, 1, 51, 5, 1, 60)), transfers_full);
    EXPECT(xtry(p, xt(13, 1, 51, 5, 1, 60)), transfers_full);
    /* A limit is checked before capacity: the refusal stands, unrecorded. */
    EXPECT(xtry(p, xt(14, 3, 51, 5, 1, 60)), exceeds_credits);
    EXPECT(xtry(p, xt(14, 3, 51, 5, 1, 60)), exceeds_credits);
    EXPECT(plain(p, xt(9, 1, 2, 1, 1, 0)), transfers_full);
    EXPECT(xresolve(p, 77, false), created);
    EXPECT(xresolve(p, 77, false), created);
    /* The decisions still apply. */
    for (pc_u128 g = 1; g <= 3; g++)
        EXPECT(xresolve(p, g, g % 2 == 1), created);
    ASSERT_BAL(p, 1, 0, 5, 0, 10);
    EXPECT(xtry(p, xt(77, 1, 51, 5, 1, 60)), transfers_full);
    EXPECT(xtry(p, xt(77, 51, 1, 5, 1, 60)), transfers_full);
    EXPECT(xtry(p, xt(11, 1, 51, 5, 1, 60)), exists);
    EXPECT(xresolve(p, 11, false), xts_committed);
    EXPECT(xresolve(p, 2, false), exists);
    ASSERT_EQ(p->store_count, 8);
    conserved(p);
    fx_restart(p);
    EXPECT(xtry(p, xt(12, 2, 52, 5, 1, 60)), exists);
    fx_free(p);
}

/* A payee leg needs room in the pending pool; the payer's decision none. */
static void test_xts_pending_full(void) {
    fx_t *q = fx_new(64, TRANSFERS_MAX, 2, OWN_HIGH);
    fx_accounts(q, 50);
    EXPECT(xtry(q, xt(1, 1, 51, 5, 1, 60)), created);
    EXPECT(xtry(q, xt(2, 2, 52, 5, 1, 60)), created);
    EXPECT(xtry(q, xt(3, 3, 53, 5, 1, 60)), pending_transfers_full);
    EXPECT(xtry(q, xt(4, 52, 2, 5, 1, 60)), created); /* this unit paying */
    EXPECT(xresolve(q, 1, true), created);
    EXPECT(xtry(q, xt(3, 3, 53, 5, 1, 60)), created); /* no tombstone: it takes now */
    conserved(q);
    fx_free(q);
}

/* The clearing account of a ledger is created on first use: without room
 * for it the try is refused, on the payer side for good (a decision). */
static void test_xts_clearing_unavailable(void) {
    fx_t *p = fx_new(6, TRANSFERS_MAX, 64, OWN_LOW), *q = fx_new(5, TRANSFERS_MAX, 64, OWN_HIGH);
    fx_accounts(p, 0);
    fx_accounts(q, 50);
    EXPECT(xtry(p, xt(1, 1, 51, 5, 1, 60)), created); /* the sixth account */
    EXPECT(xtry(p, xt(2, 4, 54, 5, 2, 60)), clearing_account_unavailable);
    EXPECT(xtry(p, xt(2, 4, 54, 5, 2, 60)), xts_aborted);
    EXPECT(xtry(p, xt(3, 2, 52, 5, 1, 60)), created); /* ledger 1 has its own */
    EXPECT(xtry(q, xt(2, 4, 54, 5, 2, 60)), clearing_account_unavailable);
    EXPECT(xtry(q, xt(2, 4, 54, 5, 2, 60)), clearing_account_unavailable);
    EXPECT(xresolve(q, 2, false), created); /* the cancel: an empty rollback */
    EXPECT(xtry(q, xt(2, 4, 54, 5, 2, 60)), xts_aborted);
    ASSERT_BAL(p, 4, 0, 0, 0, 0);
    conserved(p);
    conserved(q);
    fx_free(p);
    fx_free(q);
}

/* get_xts_legs lists the undecided payee legs, oldest first, as sent. */
static void test_xts_trying_filter(void) {
    fx_t *q = fx_payee();
    pc_transfer_t legs[6];
    uint64_t tried[6];
    for (uint32_t i = 0; i < 6; i++) {
        legs[i] = xt(101 + i, 1 + (i % 2), 51 + (i % 2), 1 + i, 1, 600);
        tried[i] = q->now;
        EXPECT(xtry(q, legs[i]), created);
    }
    EXPECT(xresolve(q, 102, true), created);
    EXPECT(xresolve(q, 104, false), created);
    EXPECT(xtry(q, xt(200, 52, 2, 5, 1, 60)), created); /* paid from here: not a leg */
    EXPECT(xresolve(q, 201, false), created);           /* a tombstone: not a leg */
    pc_transfer_t out[16];
    ASSERT_EQ(trying(q, 0, 16, out), 4);
    const uint32_t open[4] = {0, 2, 4, 5};
    for (uint32_t k = 0; k < 4; k++) {
        pc_transfer_t sent = legs[open[k]];
        ASSERT_EQ(out[k].flags, PC_TRANSFER_pending);
        ASSERT_EQ(out[k].timestamp, tried[open[k]]);
        sent.flags = out[k].flags;
        sent.timestamp = out[k].timestamp;
        ASSERT_EQ(memcmp(&out[k], &sent, sizeof(sent)), 0);
    }
    ASSERT_EQ(trying(q, tried[2], 16, out), 2);
    ASSERT_TRUE(out[0].id == 101 && out[1].id == 103);
    ASSERT_EQ(trying(q, tried[2] - 1, 16, out), 1);
    ASSERT_EQ(trying(q, 3, 16, out), 0);
    ASSERT_EQ(trying(q, 0, 3, out), 3); /* the limit keeps the oldest */
    ASSERT_TRUE(out[0].id == 101 && out[1].id == 103 && out[2].id == 105);
    ASSERT_EQ(trying(q, 0, 1, out), 1);
    ASSERT_EQ_U128(out[0].id, 101);
    fx_t *p = fx_payer();
    EXPECT(xtry(p, xt(101, 1, 51, 1, 1, 600)), created);
    ASSERT_EQ(trying(p, 0, 16, out), 0); /* a payer keeps no legs */
    fx_free(p);
    /* Bad filters. */
    pc_account_filter_t f;
    memset(&f, 0, sizeof(f));
    f.limit = 1;
    ASSERT_EQ(pc_ledger_xts_legs(q->ledger, &f, out), PC_EINVAL); /* flags 0 */
    f.flags = PC_FILTER_DEBITS;
    ASSERT_EQ(pc_ledger_xts_legs(q->ledger, &f, out), PC_EINVAL);
    f.flags = PC_FILTER_XTS_TRYING | PC_FILTER_CREDITS;
    ASSERT_EQ(pc_ledger_xts_legs(q->ledger, &f, out), PC_EINVAL);
    f.flags = PC_FILTER_XTS_TRYING;
    ASSERT_EQ(pc_ledger_xts_legs(q->ledger, &f, out), 1);
    f.limit = 0;
    ASSERT_EQ(pc_ledger_xts_legs(q->ledger, &f, out), PC_EINVAL);
    f.limit = PC_BATCH_EVENTS_MAX + 1;
    ASSERT_EQ(pc_ledger_xts_legs(q->ledger, &f, out), PC_EINVAL);
    f.limit = 1;
    f.account_id = 51;
    ASSERT_EQ(pc_ledger_xts_legs(q->ledger, &f, out), PC_EINVAL);
    f.account_id = 0;
    f.reserved[3] = 1;
    ASSERT_EQ(pc_ledger_xts_legs(q->ledger, &f, out), PC_EINVAL);
    fx_free(q);
}

static void test_xts_totals(void) {
    fx_t *p = fx_payer();
    EXPECT(xtry(p, xt(1, 1, 51, 10, 1, 60)), created);
    EXPECT(xtry(p, xt(2, 2, 52, 20, 1, 60)), created);
    EXPECT(xtry(p, xt(3, 3, 53, 5, 1, 60)), exceeds_credits);
    EXPECT(xtry(p, xt(4, 54, 4, 40, 2, 60)), created); /* payee legs */
    EXPECT(xtry(p, xt(5, 55, 5, 80, 2, 60)), created);
    EXPECT(xresolve(p, 5, true), created);
    pc_totals_t t1 = totals_of(p, 1), t2 = totals_of(p, 2);
    ASSERT_EQ(t1.xts_trying, 0);
    ASSERT_EQ_U128(t1.clearing_credits_posted, 30);
    ASSERT_EQ_U128(t1.clearing_debits_posted, 0);
    ASSERT_EQ_U128(t1.debits_posted, 30);
    ASSERT_EQ_U128(t1.debits_pending, 0);
    ASSERT_EQ(t1.accounts_count, 4);
    ASSERT_EQ(t2.xts_trying, 1);
    ASSERT_EQ_U128(t2.debits_pending, 40);
    ASSERT_EQ_U128(t2.credits_pending, 40);
    ASSERT_EQ_U128(t2.clearing_debits_posted, 80);
    ASSERT_EQ_U128(t2.credits_posted, 80);
    ASSERT_EQ(t2.accounts_count, 3);
    ASSERT_EQ(pc_ledger_xts_totals(p->ledger, false, NULL, 0), 2);
    ASSERT_EQ(pc_ledger_xts_totals(p->ledger, true, NULL, 0), 0);
    conserved(p);
    fx_free(p);
}

/* ---- recovery ---- */

/* Phase 1 of the snapshot test: payee legs, the payer's commit, refusal
 * and empty rollback, the payee's empty rollback. */
static void snap_phase1(fx_t *p, fx_t *q) {
    EXPECT(xtry(q, xt(1, 1, 51, 10, 1, 60)), created);
    EXPECT(xtry(q, xt(2, 2, 52, 20, 1, 3)), created);
    EXPECT(xtry(q, xt(3, 3, 53, 30, 1, 60)), created);
    EXPECT(xtry(q, xt(4, 4, 54, 5, 2, 60)), created);
    EXPECT(xtry(p, xt(1, 1, 51, 10, 1, 60)), created);
    EXPECT(xtry(p, xt(3, 3, 53, 30, 1, 60)), exceeds_credits);
    EXPECT(xresolve(p, 9, false), created);
    EXPECT(xresolve(q, 8, false), created);
}

/* Phase 2: resolutions, a decision after time moved past every timeout, and
 * the retries (each side's answers must not depend on a restart). */
static void snap_phase2(fx_t *p, fx_t *q, bool restart) {
    EXPECT(xresolve(q, 1, true), created);
    EXPECT(xresolve(q, 3, false), created);
    EXPECT(xtry(p, xt(2, 2, 52, 20, 1, 3)), created);
    p->now += 100 * S_NS;
    q->now += 100 * S_NS;
    if (restart) fx_restart(p);
    if (restart) fx_restart(q);
    EXPECT(xtry(p, xt(4, 4, 54, 5, 2, 60)), created);
    EXPECT(xtry(p, xt(1, 1, 51, 10, 1, 60)), exists);
    EXPECT(xtry(p, xt(2, 2, 52, 21, 1, 3)), exists_with_different_amount);
    EXPECT(xtry(p, xt(3, 3, 53, 30, 1, 60)), xts_aborted);
    EXPECT(xtry(p, xt(9, 1, 51, 5, 1, 60)), xts_aborted);
    EXPECT(xresolve(p, 1, false), xts_committed);
    EXPECT(xresolve(p, 3, false), exists);
    EXPECT(xtry(q, xt(8, 1, 51, 5, 1, 60)), xts_aborted);
    EXPECT(xtry(q, xt(1, 1, 51, 10, 1, 60)), exists);
    EXPECT(xresolve(q, 1, false), xts_committed);
    EXPECT(xresolve(q, 3, true), xts_aborted);
}

/* Two pairs run the same steps; one pair restarts from a snapshot at every
 * step, and both must hold the same state throughout. */
static void test_xts_snapshot_rebuild(void) {
    fx_t *pa = fx_payer(), *qa = fx_payee(), *pb = fx_payer(), *qb = fx_payee();
    snap_phase1(pa, qa);
    snap_phase1(pb, qb);
    fx_restart(pb);
    fx_restart(qb);
    snap_phase2(pa, qa, false);
    snap_phase2(pb, qb, true);
    ASSERT_EQ_U128(pc_ledger_state_checksum(pa->ledger), pc_ledger_state_checksum(pb->ledger));
    ASSERT_EQ_U128(pc_ledger_state_checksum(qa->ledger), pc_ledger_state_checksum(qb->ledger));
    fx_restart(qb);
    pc_transfer_t oa[8], ob[8];
    ASSERT_EQ(trying(qa, 0, 8, oa), 2);
    ASSERT_EQ(trying(qb, 0, 8, ob), 2);
    ASSERT_EQ(memcmp(oa, ob, 2 * sizeof(oa[0])), 0);
    ASSERT_TRUE(oa[0].id == 2 && oa[1].id == 4);
    fx_t *qs[2] = {qa, qb}, *ps[2] = {pa, pb};
    for (int i = 0; i < 2; i++) {
        EXPECT(xresolve(qs[i], 2, true), created);
        if (i == 1) fx_restart(qb);
        EXPECT(xresolve(qs[i], 4, true), created);
        EXPECT(xresolve(qs[i], 2, true), exists);
        EXPECT(xresolve(ps[i], 4, true), exists);
    }
    ASSERT_EQ_U128(pc_ledger_state_checksum(pa->ledger), pc_ledger_state_checksum(pb->ledger));
    ASSERT_EQ_U128(pc_ledger_state_checksum(qa->ledger), pc_ledger_state_checksum(qb->ledger));
    fx_restart(pb);
    fx_restart(qb);
    for (int i = 0; i < 2; i++) {
        conserved(ps[i]);
        conserved(qs[i]);
        crossed(ps[i], qs[i]);
        ASSERT_EQ(trying(qs[i], 0, 8, oa), 0);
    }
    ASSERT_EQ_U128(totals_of(pb, 1).clearing_credits_posted, 30);
    ASSERT_EQ_U128(totals_of(qb, 2).clearing_debits_posted, 5);
    fx_free(pa);
    fx_free(qa);
    fx_free(pb);
    fx_free(qb);
}

/* Rebuilds fx's snapshot over a store; returns the first error. */
static int rebuild_over(fx_t *fx, const pc_transfer_slot_t *store) {
    size_t size = pc_ledger_snapshot_size(fx->ledger);
    uint8_t *buf = malloc(size);
    ASSERT_EQ(pc_ledger_snapshot_write(fx->ledger, buf, size), size);
    pc_ledger_t *fresh = NULL;
    ASSERT_EQ(pc_ledger_init(&fx->config, &fresh), PC_OK);
    int rc = pc_ledger_snapshot_read(fresh, buf, size);
    for (uint64_t loc = 0; rc == PC_OK && loc < fx->store_count; loc++)
        rc = pc_ledger_rebuild_slot(fresh, loc, &store[loc]);
    if (rc == PC_OK) rc = pc_ledger_rebuild_finish(fresh);
    pc_ledger_deinit(fresh);
    free(buf);
    return rc;
}

/* Recovery checks the new xts records: a payer's posted record carries no
 * flag but its own, a tombstone is linked into no history. */
static void test_xts_rebuild_checks(void) {
    fx_t *p = fx_payer();
    EXPECT(xtry(p, xt(1, 1, 51, 10, 1, 60)), created);
    EXPECT(xtry(p, xt(2, 3, 51, 10, 1, 60)), exceeds_credits);
    ASSERT_EQ(p->store_count, 2);
    ASSERT_TRUE(p->store[1].transfer.flags & PC_SLOT_FAILED);
    pc_transfer_slot_t *copy = malloc(2 * sizeof(*copy));
    memcpy(copy, p->store, 2 * sizeof(*copy));
    ASSERT_EQ(rebuild_over(p, copy), PC_OK);
    pc__corrupt_quiet = true;
    copy[0].transfer.flags |= PC_TRANSFER_balancing_debit;
    ASSERT_EQ(rebuild_over(p, copy), PC_ECORRUPT);
    copy[0] = p->store[0];
    copy[1].prev_debit = 1;
    ASSERT_EQ(rebuild_over(p, copy), PC_ECORRUPT);
    free(copy);
    fx_free(p);
}

/* ---- randomized ---- */

#define RND_GTIDS 48u
#define RND_FUNDS 3000u

enum { UNDECIDED = 0, COMMITTED = 1, ABORTED = 2 };

/* What the coordinator and the units' answers say so far, per gtid. */
typedef struct rnd {
    pc_prng_t prng;
    fx_t *p, *q;
    bool tried_q[RND_GTIDS];  /* the payee's leg took */
    uint8_t payer[RND_GTIDS]; /* the payer's decision */
    uint8_t payee[RND_GTIDS]; /* the payee's end of the leg (or its empty rollback) */
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

/* Step 1, or a retry of it. */
static void rnd_try_payee(rnd_t *r, uint32_t g) {
    uint32_t result = xtry(r->q, r->legs[g]);
    ALLOWED(result, R(created), R(exists), R(xts_aborted));
    if (result == R(created)) ASSERT_TRUE(!r->tried_q[g] && r->payee[g] == UNDECIDED);
    if (result == R(exists)) ASSERT_TRUE(r->tried_q[g]);
    if (result == R(xts_aborted)) ASSERT_TRUE(!r->tried_q[g] && r->payee[g] == ABORTED);
    if (result != R(xts_aborted)) r->tried_q[g] = true;
}

/* Step 2, only once step 1 took. */
static void rnd_try_payer(rnd_t *r, uint32_t g) {
    if (!r->tried_q[g]) return;
    uint32_t result = xtry(r->p, r->legs[g]);
    ALLOWED(result, R(created), R(exists), R(xts_aborted), R(exceeds_credits));
    uint8_t before = r->payer[g];
    if (result == R(created) || result == R(exceeds_credits)) ASSERT_EQ(before, UNDECIDED);
    if (result == R(exists)) ASSERT_EQ(before, COMMITTED);
    if (result == R(xts_aborted)) ASSERT_EQ(before, ABORTED);
    r->payer[g] = result == R(created) || result == R(exists) ? COMMITTED : ABORTED;
}

/* Step 3 (or its duplicate); the opposite decision is refused. */
static void rnd_deliver(rnd_t *r, uint32_t g) {
    if (!r->tried_q[g] || r->payer[g] == UNDECIDED) return;
    bool commit = r->payer[g] == COMMITTED;
    ALLOWED(xresolve(r->q, r->legs[g].id, commit), R(created), R(exists));
    ASSERT_TRUE(r->payee[g] == UNDECIDED || r->payee[g] == r->payer[g]);
    r->payee[g] = r->payer[g];
    if (commit)
        EXPECT(xresolve(r->q, r->legs[g].id, false), xts_committed);
    else
        EXPECT(xresolve(r->q, r->legs[g].id, true), xts_aborted);
}

/* The payee's recovery: ask the payer about a listed leg past its timeout
 * (any, when draining), apply the answer. */
static void rnd_recover(rnd_t *r, uint32_t pick, bool any) {
    pc_transfer_t out[RND_GTIDS];
    int n = trying(r->q, 0, RND_GTIDS, out);
    ASSERT_TRUE(n >= 0);
    if (n == 0) return;
    const pc_transfer_t *leg = &out[pick % (uint32_t)n];
    if (!any && leg->timestamp + leg->timeout * S_NS > r->q->now) return;
    uint32_t g = (uint32_t)(leg->id - r->legs[0].id);
    ASSERT_TRUE(g < RND_GTIDS && r->tried_q[g] && r->payee[g] == UNDECIDED);
    uint32_t answer = xresolve_leg(r->p, r->legs[g].id, false, pc_xts_leg_digest(&r->legs[g]));
    ALLOWED(answer, R(created), R(exists), R(xts_committed));
    if (answer == R(created)) ASSERT_EQ(r->payer[g], UNDECIDED);
    if (answer == R(exists)) ASSERT_EQ(r->payer[g], ABORTED);
    if (answer == R(xts_committed)) ASSERT_EQ(r->payer[g], COMMITTED);
    r->payer[g] = answer == R(xts_committed) ? COMMITTED : ABORTED;
    rnd_deliver(r, g);
}

/* The coordinator gives up before step 1 took: an empty rollback there. */
static void rnd_give_up(rnd_t *r, uint32_t g) {
    if (r->tried_q[g]) return;
    ALLOWED(xresolve(r->q, r->legs[g].id, false), R(created), R(exists));
    r->payee[g] = ABORTED;
}

/* Time moves on (past most legs' timeouts over a run): nothing expires. */
static void rnd_time(rnd_t *r) {
    uint64_t jump = pc_prng_below(&r->prng, 20) * S_NS;
    r->p->now += jump;
    r->q->now += jump;
    ASSERT_EQ(pc_ledger_expire(r->p->ledger, r->p->now), 0);
    ASSERT_EQ(pc_ledger_expire(r->q->ledger, r->q->now), 0);
}

static void rnd_check(rnd_t *r) {
    conserved(r->p);
    conserved(r->q);
    uint64_t open = 0;
    for (uint32_t g = 0; g < RND_GTIDS; g++)
        open += r->tried_q[g] && r->payee[g] == UNDECIDED;
    uint64_t listed = totals_of(r->q, 1).xts_trying + totals_of(r->q, 2).xts_trying;
    ASSERT_EQ(listed, open);
    ASSERT_EQ(totals_of(r->p, 1).xts_trying + totals_of(r->p, 2).xts_trying, 0);
}

static void rnd_step(rnd_t *r) {
    uint32_t g = (uint32_t)pc_prng_below(&r->prng, RND_GTIDS);
    switch (pc_prng_below(&r->prng, 10)) {
    case 0:
    case 1: rnd_try_payee(r, g); break;
    case 2:
    case 3: rnd_try_payer(r, g); break;
    case 4:
    case 5: rnd_deliver(r, g); break;
    case 6: rnd_recover(r, (uint32_t)pc_prng_below(&r->prng, RND_GTIDS), false); break;
    case 7:
        if (pc_prng_below(&r->prng, 8) == 0) rnd_give_up(r, g);
        break;
    case 8: rnd_time(r); break;
    default:
        if (pc_prng_below(&r->prng, 8) == 0) fx_restart(pc_prng_below(&r->prng, 2) ? r->p : r->q);
        break;
    }
    rnd_check(r);
}

/* The recovery ends every leg; then every account shows exactly the
 * committed amounts, on both sides. */
static void rnd_drain(rnd_t *r) {
    for (uint32_t i = 0; i < RND_GTIDS; i++)
        rnd_recover(r, 0, true);
    pc_transfer_t out[RND_GTIDS];
    ASSERT_EQ(trying(r->q, 0, RND_GTIDS, out), 0);
    pc_u128 sent[5] = {RND_FUNDS, 0, 0, 0, 0};
    pc_u128 received[5] = {0};
    for (uint32_t g = 0; g < RND_GTIDS; g++) {
        ASSERT_TRUE(r->payer[g] == UNDECIDED || r->payee[g] == r->payer[g]);
        if (r->payer[g] != COMMITTED) continue;
        uint32_t k = (uint32_t)r->legs[g].debit_account_id - 1;
        sent[k] += r->legs[g].amount;
        received[k] += r->legs[g].amount;
    }
    for (uint32_t k = 0; k < 5; k++) {
        pc_u128 funds = k == 2 ? RND_FUNDS : 0; /* account 3's credits */
        ASSERT_BAL(r->p, 1 + k, 0, sent[k], 0, funds);
        ASSERT_BAL(r->q, 51 + k, 0, 0, 0, received[k]);
    }
    for (uint32_t ledger = 1; ledger <= 2; ledger++) {
        pc_totals_t tp = totals_of(r->p, ledger), tq = totals_of(r->q, ledger);
        ASSERT_EQ_U128(tp.debits_pending, 0);
        ASSERT_EQ_U128(tq.debits_pending, 0);
        ASSERT_EQ(tp.xts_trying + tq.xts_trying, 0);
    }
    crossed(r->p, r->q);
}

static void rnd_run(uint64_t seed) {
    rnd_t *r = calloc(1, sizeof(*r));
    pc_prng_init(&r->prng, seed);
    r->p = fx_payer();
    r->q = fx_payee();
    EXPECT(plain(r->p, xt(1, 1, 3, RND_FUNDS, 1, 0)), created); /* account 3 has a limit */
    for (uint32_t g = 0; g < RND_GTIDS; g++) {
        uint32_t k = (uint32_t)pc_prng_below(&r->prng, 5);
        uint32_t timeout = 30 + (uint32_t)pc_prng_below(&r->prng, 600);
        r->legs[g] =
            xt(5000 + g, 1 + k, 51 + k, 1 + pc_prng_below(&r->prng, 1000), k < 3 ? 1 : 2, timeout);
    }
    for (uint32_t i = 0; i < 2000; i++)
        rnd_step(r);
    rnd_drain(r);
    fx_restart(r->p);
    fx_restart(r->q);
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
    EXPECT(plain(p, xt(PC_SHADOW_ID(20), PC_SHADOW_ID(1), 2, 5, 1, 0)), shadow_mismatch);
    EXPECT(plain(p, xt(20, PC_SHADOW_ID(1), PC_SHADOW_ID(2), 5, 1, 0)), shadow_mismatch);
    EXPECT(xtry(p, xt(PC_SHADOW_ID(20), 1, PC_SHADOW_ID(51), 5, 1, 60)), shadow_mismatch);
    EXPECT(xtry(p, xt(PC_SHADOW_ID(20), PC_SHADOW_ID(1), PC_SHADOW_ID(51), 5, 1, 60)), created);
    EXPECT(xtry(p, xt(PC_SHADOW_ID(21), PC_SHADOW_ID(51), PC_SHADOW_ID(2), 4, 1, 60)), created);
    EXPECT(xresolve(p, 21, false), shadow_mismatch);
    /* 0 and 2^128 - 1 keep their own results in either namespace. */
    EXPECT(plain(p, xt(0, PC_SHADOW_ID(1), PC_SHADOW_ID(2), 5, 1, 0)), id_must_not_be_zero);
    EXPECT(plain(p, xt(PC_SHADOW_ID(21), PC_U128_MAX, PC_SHADOW_ID(2), 5, 1, 0)),
           debit_account_id_must_not_be_int_max);
    p->flags = 0;
    EXPECT(plain(p, xt(21, PC_SHADOW_ID(1), 2, 5, 1, 0)), shadow_mismatch);
    EXPECT(xresolve(p, PC_SHADOW_ID(20), false), shadow_mismatch);
    EXPECT(xresolve(p, PC_SHADOW_ID(21), true), shadow_mismatch);
    EXPECT(xtry(p, xt(PC_SHADOW_ID(22), PC_SHADOW_ID(1), PC_SHADOW_ID(51), 5, 1, 60)),
           shadow_mismatch);
    pc_u128 zero = 0;
    EXPECT(fx_one(p, PC_OP_shadow_purge, &zero), shadow_mismatch); /* a real request */
    ASSERT_EQ_U128(space_checksum(p, false), real_before);
    space_counts(p, true, 3, 2); /* two copies and the shadow clearing account; two records */
    /* The shadow records moved the shadow clearing account, not the real one. */
    ASSERT_BAL(p, PC_SHADOW_CLEARING_ACCOUNT_ID(1), 4, 0, 0, 5);
    ASSERT_EQ(pc_ledger_xts_totals(p->ledger, false, NULL, 0), 2);
    pc_totals_t shadow_totals[4];
    ASSERT_EQ(pc_ledger_xts_totals(p->ledger, true, shadow_totals, 4), 1);
    ASSERT_EQ(shadow_totals[0].xts_trying, 1);
    ASSERT_EQ_U128(shadow_totals[0].clearing_credits_posted, 5);
    ASSERT_EQ_U128(shadow_totals[0].debits_pending, shadow_totals[0].credits_pending);
    ASSERT_EQ_U128(shadow_totals[0].debits_posted, shadow_totals[0].credits_posted);
    fx_free(p);
}

/* Step k of a two-unit script: local transfers, a pending that expires, an
 * xts commit run to its end, a payer refusal and the payee's cancel, an
 * empty rollback on each side, a payee leg left undecided past its timeout,
 * a payee-side transfer. shadow runs the same script on the shadow copies
 * (other amounts, so the two differ). */
static uint32_t script_steps(void) {
    return 15;
}

static void script_accounts(fx_t *fx, pc_u128 base, bool shadow) {
#define ID(x) (shadow ? PC_SHADOW_ID(x) : (pc_u128)(x))
    pc_account_t accounts[5] = {mkacct(ID(base + 1), 1, 0), mkacct(ID(base + 2), 1, 0),
                                mkacct(ID(base + 3), 1, PC_ACCOUNT_debits_must_not_exceed_credits),
                                mkacct(ID(base + 4), 2, 0), mkacct(ID(base + 5), 2, 0)};
    pc_create_result_t results[5];
    if (shadow) ASSERT_EQ(fx_apply(fx, PC_OP_create_accounts, accounts, 5, results), 0);
#undef ID
}

static void script_step(fx_t *p, fx_t *q, uint32_t k, bool shadow) {
#define ID(x) (shadow ? PC_SHADOW_ID(x) : (pc_u128)(x))
    pc_u128 m = shadow ? 3 : 1; /* amounts differ between the namespaces */
    pc_transfer_t t;
    switch (k) {
    case 0: script_accounts(p, 0, shadow); break;
    case 1: script_accounts(q, 50, shadow); break;
    case 2: EXPECT(plain(p, xt(ID(100), ID(1), ID(2), 100 * m, 1, 0)), created); break;
    case 3:
        t = xt(ID(101), ID(2), ID(1), 5 * m, 1, 2);
        t.flags = PC_TRANSFER_pending;
        EXPECT(plain(p, t), created);
        break;
    case 4: EXPECT(xtry(q, xt(ID(200), ID(1), ID(51), 30 * m, 1, 60)), created); break;
    case 5: EXPECT(xtry(p, xt(ID(200), ID(1), ID(51), 30 * m, 1, 60)), created); break;
    case 6: EXPECT(xresolve(q, ID(200), true), created); break;
    case 7: EXPECT(xtry(q, xt(ID(201), ID(3), ID(52), 7 * m, 1, 60)), created); break;
    case 8: EXPECT(xtry(p, xt(ID(201), ID(3), ID(52), 7 * m, 1, 60)), exceeds_credits); break;
    case 9: EXPECT(xresolve(q, ID(201), false), created); break;
    case 10: EXPECT(xresolve(q, ID(202), false), created); break; /* empty rollback */
    case 11: EXPECT(xtry(q, xt(ID(203), ID(1), ID(53), 9 * m, 1, 1)), created); break;
    case 12: EXPECT(xresolve(p, ID(204), false), created); break; /* empty rollback */
    case 13: EXPECT(plain(q, xt(ID(300), ID(51), ID(52), 40 * m, 1, 0)), created); break;
    case 14: /* by now 101 expired, and 203 would have, were it not a payee leg */
        EXPECT(plain(p, xt(ID(102), ID(4), ID(5), 11 * m, 2, 0)), created);
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

/* Purges the shadow namespace of both units, between real batches. */
static void shadow_purge_pair(fx_t *p, fx_t *q) {
    pc_u128 zero = 0, one = 1;
    uint64_t p_now = p->now, q_now = q->now;
    p->now -= S_NS / 2;
    q->now -= S_NS / 2;
    p->step = q->step = 1000;
    p->flags = q->flags = PC_REQUEST_SHADOW;
    EXPECT(fx_one(p, PC_OP_shadow_purge, &one), reserved_flag);
    ASSERT_EQ(fx_one(p, PC_OP_shadow_purge, &zero), 0);
    ASSERT_EQ(fx_one(q, PC_OP_shadow_purge, &zero), 0);
    ASSERT_EQ(fx_one(q, PC_OP_shadow_purge, &zero), 0); /* nothing left: still fine */
    p->flags = q->flags = 0;
    p->step = q->step = S_NS;
    p->now = p_now;
    q->now = q_now;
}

/* The shadow namespace after the script: its records, balanced totals. */
static void shadow_script_checked(fx_t *pa, fx_t *pb, fx_t *qb) {
    ASSERT_TRUE(space_checksum(pb, true) != space_checksum(pa, true));
    /* Payer: five accounts and the clearing one of ledger 1; 100, 101, 200,
     * 201's and 204's tombstones, 102. Payee: 200, 201, 202's tombstone,
     * 203, 300. */
    space_counts(pb, true, 6, 6);
    space_counts(qb, true, 6, 5);
    space_counts(pa, true, 0, 0);
    pc_totals_t ta[4], tb[4];
    ASSERT_EQ(pc_ledger_xts_totals(pa->ledger, false, ta, 4), 2);
    ASSERT_EQ(pc_ledger_xts_totals(pb->ledger, false, tb, 4), 2);
    ASSERT_EQ(memcmp(ta, tb, sizeof(pc_totals_t) * 2), 0);
    ASSERT_EQ(pc_ledger_xts_totals(qb->ledger, true, tb, 4), 2);
    ASSERT_EQ(tb[0].xts_trying, 1); /* 203, undecided */
    ASSERT_EQ_U128(tb[0].clearing_debits_posted, 90);
    for (uint32_t i = 0; i < 2; i++) {
        ASSERT_EQ_U128(tb[i].debits_pending, tb[i].credits_pending);
        ASSERT_EQ_U128(tb[i].debits_posted, tb[i].credits_posted);
    }
    ASSERT_EQ(pc_ledger_xts_totals(pb->ledger, true, tb, 4), 2);
    ASSERT_EQ_U128(tb[0].clearing_credits_posted, 90);
    ASSERT_EQ(tb[0].xts_trying, 0);
}

/* Issue 5's isolation: the same real load alone and beside shadow traffic
 * leaves every real record byte-for-byte alike (the real namespace's
 * checksum covers records, balances, timestamps, statuses and legs);
 * shadow_purge then removes every shadow record, survives a restart (the
 * purged slots stay in the store and are skipped), and the shadow
 * namespace can be used again. */
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
    shadow_script_checked(pa, pb, qb);

    /* Purge both units of the shadow pair; the real side stays as it was. */
    pc_u128 real_p = space_checksum(pb, false), real_q = space_checksum(qb, false);
    shadow_purge_pair(pb, qb);
    space_counts(pb, true, 0, 0);
    space_counts(qb, true, 0, 0);
    ASSERT_EQ(pc_ledger_xts_totals(pb->ledger, true, NULL, 0), 0);
    ASSERT_EQ(pc_ledger_xts_totals(qb->ledger, true, NULL, 0), 0);
    ASSERT_EQ_U128(space_checksum(pb, false), real_p);
    ASSERT_EQ_U128(space_checksum(qb, false), real_q);
    not_found(pb, PC_SHADOW_ID(100));
    pc_account_t none;
    pc_u128 gone = PC_SHADOW_ID(1);
    ASSERT_EQ(pc_ledger_lookup_accounts(pb->ledger, &gone, 1, &none), 0);
    pc_transfer_t out[4];
    ASSERT_EQ(trying(qb, 0, 4, out), 1); /* the real 203 only */
    ASSERT_EQ_U128(out[0].id, 203);
    conserved(pb);
    conserved(qb);

    /* A restart rebuilds the same state: purged slots are skipped. */
    fx_restart(pb);
    fx_restart(qb);
    ASSERT_EQ_U128(space_checksum(pb, false), real_p);
    space_counts(pb, true, 0, 0);

    /* The namespace is usable again, the old ids included (the tombstones
     * went with it); and the real load goes on alike. */
    shadow_between(pb, qb, 0);
    shadow_between(pb, qb, 1);
    shadow_between(pb, qb, 2);
    for (uint32_t k = 4; k <= 6; k++)
        shadow_between(pb, qb, k);
    space_counts(pb, true, 6, 2);
    fx_restart(pb);
    space_counts(pb, true, 6, 2);
    EXPECT(plain(pa, xt(400, 1, 2, 1, 1, 0)), created);
    EXPECT(plain(pb, xt(400, 1, 2, 1, 1, 0)), created);
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
    fx_t *fx = fx_new(64, TRANSFERS_MAX, 64, OWN_ALL);
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

/* An abort answered without a tombstone (the store full) is final only
 * because a full store never gets room back. A shadow_purge drops shadow
 * payee legs unresolved: their reserves must stay counted, or a late try of
 * the aborted gtid would be accepted after the purge. */
static void test_xts_purge_keeps_store_full(void) {
    fx_t *p = fx_new(64, 8, 64, OWN_LOW);
    fx_accounts(p, 0);
    p->flags = PC_REQUEST_SHADOW;
    pc_account_t sh = mkacct(PC_SHADOW_ID(1), 1, 0);
    ASSERT_EQ(fx_one(p, PC_OP_create_accounts, &sh), 0);
    for (pc_u128 g = 1; g <= 3; g++) /* shadow payee legs: 3 slots + 3 reserved */
        EXPECT(xtry(p, xt(PC_SHADOW_ID(g), PC_SHADOW_ID(51), PC_SHADOW_ID(1), 5, 1, 60)), created);
    p->flags = 0;
    EXPECT(xtry(p, xt(11, 1, 51, 5, 1, 60)), created);
    EXPECT(xtry(p, xt(12, 1, 51, 5, 1, 60)), created); /* 5 slots + 3 reserved: full */
    EXPECT(xresolve(p, 13, false), created);            /* the abort: no room for a tombstone */
    EXPECT(xtry(p, xt(13, 1, 51, 5, 1, 60)), transfers_full);
    p->flags = PC_REQUEST_SHADOW;
    pc_u128 zero = 0;
    ASSERT_EQ(fx_one(p, PC_OP_shadow_purge, &zero), 0);
    p->flags = 0;
    EXPECT(xtry(p, xt(13, 1, 51, 5, 1, 60)), transfers_full);
    EXPECT(xresolve(p, 13, false), created);
    ASSERT_BAL(p, 1, 0, 10, 0, 0);
    conserved(p);
    fx_free(p);
}

/* A gtid an ordinary transfer of the payer already holds: the payer's try
 * is refused (the gateway then cancels the payee), and so is a recovery's
 * question, as an abort, so the payee's leg never stays pending. */
static void test_xts_gtid_of_a_plain_transfer(void) {
    fx_t *p = fx_payer(), *q = fx_payee();
    EXPECT(plain(p, xt(50, 1, 2, 5, 1, 0)), created);
    pc_transfer_t t = xt(50, 1, 51, 5, 1, 60);
    EXPECT(xtry(q, t), created);
    EXPECT(xtry(p, t), exists_with_different_flags);
    EXPECT(xresolve_leg(p, 50, false, pc_xts_leg_digest(&t)), xts_aborted);
    EXPECT(xresolve(q, 50, false), created);
    ASSERT_BAL(q, 51, 0, 0, 0, 0);
    conserved(p);
    conserved(q);
    fx_free(p);
    fx_free(q);
}

#define TESTS(X)                                                                                   \
    X(test_xts_commit)                                                                             \
    X(test_xts_payer_refused)                                                                      \
    X(test_xts_payer_checks)                                                                       \
    X(test_xts_recovery)                                                                           \
    X(test_xts_payee_never_expires)                                                                \
    X(test_xts_batches)                                                                            \
    X(test_xts_roles)                                                                              \
    X(test_xts_validation)                                                                         \
    X(test_xts_resolve_validation)                                                                 \
    X(test_xts_plain_operations)                                                                   \
    X(test_xts_empty_rollback)                                                                     \
    X(test_xts_store_reserve)                                                                      \
    X(test_xts_pending_full)                                                                       \
    X(test_xts_clearing_unavailable)                                                               \
    X(test_xts_trying_filter)                                                                      \
    X(test_xts_totals)                                                                             \
    X(test_xts_snapshot_rebuild)                                                                   \
    X(test_xts_rebuild_checks)                                                                     \
    X(test_xts_random)                                                                             \
    X(test_shadow_mixed_refused)                                                                   \
    X(test_shadow_isolation)                                                                       \
    X(test_shadow_purge_crowded_index)                                                             \
    X(test_xts_purge_keeps_store_full)                                                             \
    X(test_xts_gtid_of_a_plain_transfer)

PC_TEST_MAIN(TESTS)
