/*
 * Differential test of src/ledger: a tiny reference model, written for
 * obviousness rather than speed (linear arrays, linear scans, no hashing, no
 * undo log: a chain copies the whole model first and restores the copy on
 * failure), and the real ledger receive the same random batches. Every
 * result, every account, every stored slot (history links included) and a
 * random history query are compared after every batch; midway the real
 * ledger is checkpointed, restored into a fresh ledger from the snapshot and
 * the stored slots, and the run continues on the restored one.
 *
 * Ids come from small spaces so they collide (retries, exists_with_*),
 * amounts are sometimes near 2^128 (overflows), capacities are small in some
 * seeds (accounts_full, transfers_full, pending_transfers_full), timeouts
 * are short and time advances (expiry), and the clock sometimes steps back.
 *
 * A failure prints its seed; PC_LEDGER_SEED=N runs that seed alone.
 */
#include "test.h"

#include <signal.h>

#include "../../src/ledger/ledger.h"

#define S_NS 1000000000ull
#define SEEDS 300u
#define BATCHES 100u
#define BATCH_MAX 16u
#define ACCOUNT_IDS 14u   /* account ids 1..14, accounts_max may be lower */
#define TRANSFER_IDS 400u /* transfer ids 1..400 */
#define M_TRANSFERS_MAX 2048u

enum { M_CREATED = 1, M_FAILED, M_PENDING, M_POSTED, M_VOIDED, M_EXPIRED };

#define TR(name) PC_TRANSFER_RESULT_##name
#define AR(name) PC_ACCOUNT_RESULT_##name

/* ---- the reference model ---- */

typedef struct m_transfer {
    pc_transfer_slot_t slot; /* the stored record and its history links */
    int status;
    uint64_t expires_at; /* pending with a timeout */
} m_transfer_t;

typedef struct model {
    pc_ledger_config_t config;
    pc_account_t accounts[ACCOUNT_IDS];
    uint64_t heads[ACCOUNT_IDS];
    uint32_t accounts_count;
    m_transfer_t transfers[M_TRANSFERS_MAX]; /* index = loc */
    uint32_t transfers_count;
    uint32_t pending_count;
    uint64_t timestamp_last;
} model_t;

static model_t *m_saved; /* the copy a chain restores */

/* Copies the whole model; transfers past transfers_count are unused. */
static void m_copy(model_t *dst, const model_t *src) {
    memcpy(dst, src, offsetof(model_t, transfers));
    memcpy(dst->transfers, src->transfers, src->transfers_count * sizeof(m_transfer_t));
    dst->transfers_count = src->transfers_count;
    dst->pending_count = src->pending_count;
    dst->timestamp_last = src->timestamp_last;
}

static int m_account(const model_t *m, pc_u128 id) {
    for (uint32_t i = 0; i < m->accounts_count; i++) {
        if (m->accounts[i].id == id) return (int)i;
    }
    return -1;
}

static m_transfer_t *m_find(model_t *m, pc_u128 id) {
    for (uint32_t i = 0; i < m->transfers_count; i++) {
        if (m->transfers[i].slot.transfer.id == id) return &m->transfers[i];
    }
    return NULL;
}

static uint32_t m_expire(model_t *m, uint64_t timestamp) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->transfers_count; i++) {
        m_transfer_t *x = &m->transfers[i];
        if (x->status != M_PENDING || x->slot.transfer.timeout == 0) continue;
        if (x->expires_at > timestamp) continue;
        const pc_transfer_t *t = &x->slot.transfer;
        m->accounts[m_account(m, t->debit_account_id)].debits_pending -= t->amount;
        m->accounts[m_account(m, t->credit_account_id)].credits_pending -= t->amount;
        x->status = M_EXPIRED;
        m->pending_count--;
        n++;
    }
    return n;
}

static uint32_t m_create_account(model_t *m, const pc_account_t *a, uint64_t ts) {
    if (a->timestamp != 0) return AR(timestamp_must_be_zero);
    if (a->reserved != 0) return AR(reserved_field);
    if (a->flags & ~7u) return AR(reserved_flag);
    if (a->id == 0) return AR(id_must_not_be_zero);
    if (a->id == PC_U128_MAX) return AR(id_must_not_be_int_max);
    if ((a->flags & 6u) == 6u) return AR(flags_are_mutually_exclusive);
    if (a->debits_pending) return AR(debits_pending_must_be_zero);
    if (a->debits_posted) return AR(debits_posted_must_be_zero);
    if (a->credits_pending) return AR(credits_pending_must_be_zero);
    if (a->credits_posted) return AR(credits_posted_must_be_zero);
    if (a->ledger == 0) return AR(ledger_must_not_be_zero);
    if (a->code == 0) return AR(code_must_not_be_zero);
    int i = m_account(m, a->id);
    if (i >= 0) {
        const pc_account_t *e = &m->accounts[i];
        if ((a->flags | 1u) != (e->flags | 1u)) return AR(exists_with_different_flags);
        if (a->user_data_128 != e->user_data_128) return AR(exists_with_different_user_data_128);
        if (a->user_data_64 != e->user_data_64) return AR(exists_with_different_user_data_64);
        if (a->user_data_32 != e->user_data_32) return AR(exists_with_different_user_data_32);
        if (a->ledger != e->ledger) return AR(exists_with_different_ledger);
        if (a->code != e->code) return AR(exists_with_different_code);
        return AR(exists);
    }
    if (m->accounts_count == m->config.accounts_max) return AR(accounts_full);
    m->accounts[m->accounts_count] = *a;
    m->accounts[m->accounts_count].timestamp = ts;
    m->heads[m->accounts_count] = 0;
    m->accounts_count++;
    return 0;
}

static uint32_t m_exists(const pc_transfer_t *t, const pc_transfer_t *e) {
    if ((t->flags | 1u) != (e->flags | 1u)) return TR(exists_with_different_flags);
    if (t->debit_account_id && t->debit_account_id != e->debit_account_id)
        return TR(exists_with_different_debit_account_id);
    if (t->credit_account_id && t->credit_account_id != e->credit_account_id)
        return TR(exists_with_different_credit_account_id);
    if (!(t->flags & 0x30) && t->amount && t->amount != e->amount)
        return TR(exists_with_different_amount);
    if (t->pending_id != e->pending_id) return TR(exists_with_different_pending_id);
    if (t->user_data_128 != e->user_data_128) return TR(exists_with_different_user_data_128);
    if (t->user_data_64 != e->user_data_64) return TR(exists_with_different_user_data_64);
    if (t->user_data_32 != e->user_data_32) return TR(exists_with_different_user_data_32);
    if (t->timeout != e->timeout) return TR(exists_with_different_timeout);
    if (t->code && t->code != e->code) return TR(exists_with_different_code);
    return TR(exists);
}

static void m_store(model_t *m, const pc_transfer_t *rec, int dr, int cr, int status) {
    m_transfer_t *x = &m->transfers[m->transfers_count];
    memset(x, 0, sizeof(*x));
    x->slot.transfer = *rec;
    x->status = status;
    if (dr >= 0) {
        x->slot.prev_debit = m->heads[dr];
        x->slot.prev_credit = m->heads[cr];
        m->heads[dr] = m->transfers_count + 1;
        m->heads[cr] = m->transfers_count + 1;
    }
    if (status == M_PENDING && rec->timeout) {
        x->expires_at = rec->timestamp + (uint64_t)rec->timeout * S_NS;
    }
    m->transfers_count++;
}

static bool add_overflows(pc_u128 a, pc_u128 b) {
    return a + b < a;
}

static uint32_t m_post_void(model_t *m, const pc_transfer_t *t, uint64_t ts) {
    if (t->pending_id == 0) return TR(pending_id_must_not_be_zero);
    if (t->pending_id == PC_U128_MAX) return TR(pending_id_must_not_be_int_max);
    if (t->pending_id == t->id) return TR(pending_id_must_be_different);
    if (t->timeout) return TR(timeout_reserved_for_pending_transfer);
    m_transfer_t *e = m_find(m, t->id);
    if (e && e->status == M_FAILED) return TR(id_already_failed);
    if (e) return m_exists(t, &e->slot.transfer);
    m_transfer_t *px = m_find(m, t->pending_id);
    if (!px || px->status == M_FAILED) return TR(pending_transfer_not_found);
    pc_transfer_t p = px->slot.transfer;
    if (!(p.flags & PC_TRANSFER_pending)) return TR(pending_transfer_not_pending);
    if (t->debit_account_id && t->debit_account_id != p.debit_account_id)
        return TR(pending_transfer_has_different_debit_account_id);
    if (t->credit_account_id && t->credit_account_id != p.credit_account_id)
        return TR(pending_transfer_has_different_credit_account_id);
    if (t->ledger && t->ledger != p.ledger) return TR(pending_transfer_has_different_ledger);
    if (t->code && t->code != p.code) return TR(pending_transfer_has_different_code);
    bool post = t->flags & PC_TRANSFER_post_pending_transfer;
    pc_u128 amount = p.amount;
    if (post && t->amount) amount = t->amount;
    if (post && amount > p.amount) return TR(exceeds_pending_transfer_amount);
    if (!post && t->amount && t->amount != p.amount)
        return TR(pending_transfer_has_different_amount);
    if (px->status == M_POSTED) return TR(pending_transfer_already_posted);
    if (px->status == M_VOIDED) return TR(pending_transfer_already_voided);
    if (px->status == M_EXPIRED) return TR(pending_transfer_expired);
    if (m->transfers_count == m->config.transfers_max) return TR(transfers_full);
    int dr = m_account(m, p.debit_account_id), cr = m_account(m, p.credit_account_id);
    m->accounts[dr].debits_pending -= p.amount;
    m->accounts[cr].credits_pending -= p.amount;
    if (post) {
        m->accounts[dr].debits_posted += amount;
        m->accounts[cr].credits_posted += amount;
    }
    px->status = post ? M_POSTED : M_VOIDED;
    m->pending_count--;
    pc_transfer_t rec = *t;
    rec.timestamp = ts;
    rec.debit_account_id = p.debit_account_id;
    rec.credit_account_id = p.credit_account_id;
    rec.ledger = p.ledger;
    rec.code = p.code;
    rec.amount = amount;
    m_store(m, &rec, dr, cr, M_CREATED);
    return 0;
}

static uint32_t m_single(model_t *m, const pc_transfer_t *t, uint64_t ts) {
    bool pending = t->flags & PC_TRANSFER_pending;
    bool bd = t->flags & PC_TRANSFER_balancing_debit, bc = t->flags & PC_TRANSFER_balancing_credit;
    if (t->debit_account_id == 0) return TR(debit_account_id_must_not_be_zero);
    if (t->debit_account_id == PC_U128_MAX) return TR(debit_account_id_must_not_be_int_max);
    if (t->credit_account_id == 0) return TR(credit_account_id_must_not_be_zero);
    if (t->credit_account_id == PC_U128_MAX) return TR(credit_account_id_must_not_be_int_max);
    if (t->debit_account_id == t->credit_account_id) return TR(accounts_must_be_different);
    if (t->pending_id) return TR(pending_id_must_be_zero);
    if (t->timeout && !pending) return TR(timeout_reserved_for_pending_transfer);
    if (t->amount == 0 && !bd && !bc) return TR(amount_must_not_be_zero);
    if (t->ledger == 0) return TR(ledger_must_not_be_zero);
    if (t->code == 0) return TR(code_must_not_be_zero);
    m_transfer_t *e = m_find(m, t->id);
    if (e && e->status == M_FAILED) return TR(id_already_failed);
    if (e) return m_exists(t, &e->slot.transfer);
    int dr = m_account(m, t->debit_account_id);
    if (dr < 0) return TR(debit_account_not_found);
    int cr = m_account(m, t->credit_account_id);
    if (cr < 0) return TR(credit_account_not_found);
    pc_account_t *d = &m->accounts[dr], *c = &m->accounts[cr];
    if (d->ledger != c->ledger) return TR(accounts_must_have_the_same_ledger);
    if (t->ledger != d->ledger) return TR(transfer_must_have_the_same_ledger_as_accounts);
    pc_u128 amount = t->amount;
    if ((bd || bc) && amount == 0) amount = PC_U128_MAX;
    if (bd) {
        pc_u128 room = 0;
        if (d->credits_posted > d->debits_pending + d->debits_posted)
            room = d->credits_posted - d->debits_pending - d->debits_posted;
        if (room < amount) amount = room;
    }
    if (bc) {
        pc_u128 room = 0;
        if (c->debits_posted > c->credits_pending + c->credits_posted)
            room = c->debits_posted - c->credits_pending - c->credits_posted;
        if (room < amount) amount = room;
    }
    if (pending && add_overflows(d->debits_pending, amount)) return TR(overflows_debits_pending);
    if (pending && add_overflows(c->credits_pending, amount)) return TR(overflows_credits_pending);
    if (add_overflows(d->debits_posted, amount)) return TR(overflows_debits_posted);
    if (add_overflows(c->credits_posted, amount)) return TR(overflows_credits_posted);
    if (add_overflows(d->debits_pending + d->debits_posted, amount)) return TR(overflows_debits);
    if (add_overflows(c->credits_pending + c->credits_posted, amount)) return TR(overflows_credits);
    if (pending && (unsigned __int128)ts + (unsigned __int128)t->timeout * S_NS > UINT64_MAX)
        return TR(overflows_timeout);
    if ((d->flags & PC_ACCOUNT_debits_must_not_exceed_credits) &&
        d->debits_pending + d->debits_posted + amount > d->credits_posted)
        return TR(exceeds_credits);
    if ((c->flags & PC_ACCOUNT_credits_must_not_exceed_debits) &&
        c->credits_pending + c->credits_posted + amount > c->debits_posted)
        return TR(exceeds_debits);
    if (m->transfers_count == m->config.transfers_max) return TR(transfers_full);
    if (pending && m->pending_count == m->config.pending_max) return TR(pending_transfers_full);
    if (pending) {
        d->debits_pending += amount;
        c->credits_pending += amount;
        m->pending_count++;
    } else {
        d->debits_posted += amount;
        c->credits_posted += amount;
    }
    pc_transfer_t rec = *t;
    rec.timestamp = ts;
    rec.amount = amount;
    m_store(m, &rec, dr, cr, pending ? M_PENDING : M_CREATED);
    return 0;
}

static uint32_t m_create_transfer(model_t *m, const pc_transfer_t *t, uint64_t ts) {
    uint16_t f = t->flags;
    bool pending = f & 2, post = f & 4, void_ = f & 8, balancing = f & 0x30;
    if (t->timestamp) return TR(timestamp_must_be_zero);
    if (f & ~0x3fu) return TR(reserved_flag);
    if (t->id == 0) return TR(id_must_not_be_zero);
    if (t->id == PC_U128_MAX) return TR(id_must_not_be_int_max);
    if ((pending && (post || void_)) || (post && void_) || (balancing && (post || void_)))
        return TR(flags_are_mutually_exclusive);
    if (post || void_) return m_post_void(m, t, ts);
    return m_single(m, t, ts);
}

static bool m_transient(uint32_t r) {
    return r == TR(debit_account_not_found) || r == TR(credit_account_not_found) ||
           r == TR(pending_transfer_not_found) || r == TR(exceeds_credits) ||
           r == TR(exceeds_debits) ||
           (r >= TR(overflows_debits_pending) && r <= TR(overflows_timeout));
}

static uint32_t m_apply(model_t *m, pc_operation_t op, uint64_t now, const void *events,
                        uint32_t count, pc_create_result_t *results) {
    uint64_t start = now > m->timestamp_last + 1 ? now : m->timestamp_last + 1;
    m_expire(m, start + count - 1);
    m->timestamp_last = start + count - 1;
    uint32_t n = 0;
    int chain = -1;
    bool broken = false;
    for (uint32_t i = 0; i < count; i++) {
        const pc_account_t *a = &((const pc_account_t *)events)[i];
        const pc_transfer_t *t = &((const pc_transfer_t *)events)[i];
        bool linked = (op == PC_OP_create_accounts ? a->flags : t->flags) & 1u;
        if (linked && chain < 0) {
            chain = (int)i;
            m_copy(m_saved, m);
        }
        uint32_t r;
        if (linked && i == count - 1)
            r = TR(linked_event_chain_open);
        else if (broken)
            r = TR(linked_event_failed);
        else if (op == PC_OP_create_accounts)
            r = m_create_account(m, a, start + i);
        else
            r = m_create_transfer(m, t, start + i);
        if (r != 0) {
            if (chain >= 0 && !broken) {
                broken = true;
                m_copy(m, m_saved);
                for (uint32_t j = (uint32_t)chain; j < i; j++)
                    results[n++] = (pc_create_result_t){j, TR(linked_event_failed)};
            } else if (chain < 0 && op == PC_OP_create_transfers && m_transient(r) &&
                       m->transfers_count < m->config.transfers_max) {
                pc_transfer_t rec = *t;
                rec.timestamp = start + i;
                rec.flags |= PC_SLOT_FAILED;
                m_store(m, &rec, -1, -1, M_FAILED);
            }
            results[n++] = (pc_create_result_t){i, r};
        }
        if (chain >= 0 && (!linked || r == TR(linked_event_chain_open))) {
            chain = -1;
            broken = false;
        }
    }
    return n;
}

/* ---- the generator ---- */

typedef struct gen {
    pc_prng_t prng;
    pc_u128 pending_ids[32];
    uint32_t pending_n;
    pc_transfer_t recent[64];
    uint32_t recent_n;
} gen_t;

static uint64_t rnd(gen_t *g, uint64_t n) {
    return pc_prng_below(&g->prng, n);
}
static bool chance(gen_t *g, uint32_t percent) {
    return rnd(g, 100) < percent;
}

static pc_u128 gen_amount(gen_t *g) {
    switch (rnd(g, 24)) {
    case 0:
        return 0;
    case 1:
        return PC_U128_MAX - rnd(g, 4);
    case 2:
        return ((pc_u128)1 << 127) + rnd(g, 4);
    case 3:
        return ((pc_u128)1 << 127) - rnd(g, 40);
    case 4:
        return (pc_u128)1 << 126;
    default:
        return 1 + rnd(g, 100);
    }
}

static pc_account_t gen_account(gen_t *g) {
    pc_account_t a;
    memset(&a, 0, sizeof(a));
    a.id = 1 + rnd(g, ACCOUNT_IDS);
    a.ledger = chance(g, 3) ? 0 : 1 + (uint32_t)rnd(g, 2);
    a.code = chance(g, 3) ? 0 : 1 + (uint16_t)rnd(g, 2);
    if (chance(g, 20)) a.flags |= PC_ACCOUNT_linked;
    if (chance(g, 25))
        a.flags |= PC_ACCOUNT_debits_must_not_exceed_credits;
    else if (chance(g, 25))
        a.flags |= PC_ACCOUNT_credits_must_not_exceed_debits;
    if (chance(g, 3)) a.flags |= 6;
    if (chance(g, 2)) a.flags |= 0x10;
    a.user_data_128 = rnd(g, 3);
    a.user_data_64 = rnd(g, 3);
    a.user_data_32 = (uint32_t)rnd(g, 3);
    switch (rnd(g, 50)) {
    case 0:
        a.timestamp = 1;
        break;
    case 1:
        a.reserved = 1;
        break;
    case 2:
        a.id = chance(g, 50) ? 0 : PC_U128_MAX;
        break;
    case 3:
        a.debits_pending = 1;
        break;
    case 4:
        a.debits_posted = 1;
        break;
    case 5:
        a.credits_pending = 1;
        break;
    case 6:
        a.credits_posted = 1;
        break;
    }
    return a;
}

static void gen_single(gen_t *g, pc_transfer_t *t, bool pending) {
    t->debit_account_id = 1 + rnd(g, ACCOUNT_IDS + 1);
    t->credit_account_id = 1 + rnd(g, ACCOUNT_IDS + 1);
    if (chance(g, 2)) t->debit_account_id = chance(g, 50) ? 0 : PC_U128_MAX;
    if (chance(g, 2)) t->credit_account_id = chance(g, 50) ? 0 : PC_U128_MAX;
    t->amount = gen_amount(g);
    t->ledger = chance(g, 2) ? 0 : (chance(g, 90) ? 1 : 2);
    t->code = chance(g, 2) ? 0 : 1 + (uint16_t)rnd(g, 2);
    if (pending) {
        t->flags |= PC_TRANSFER_pending;
        t->timeout = (uint32_t)(chance(g, 10) ? rnd(g, 400) : rnd(g, 4));
        if (chance(g, 3)) t->timeout = UINT32_MAX - (uint32_t)rnd(g, 10);
        if (g->pending_n < PC_ARRAY_LEN(g->pending_ids))
            g->pending_ids[g->pending_n++] = t->id;
        else
            g->pending_ids[rnd(g, PC_ARRAY_LEN(g->pending_ids))] = t->id;
    } else if (chance(g, 3)) {
        t->timeout = 1;
    }
    if (chance(g, 15)) t->flags |= PC_TRANSFER_balancing_debit;
    if (chance(g, 15)) t->flags |= PC_TRANSFER_balancing_credit;
    if (chance(g, 2)) t->pending_id = 1 + rnd(g, TRANSFER_IDS);
}

static void gen_post_void(gen_t *g, pc_transfer_t *t, bool post) {
    t->flags |= post ? PC_TRANSFER_post_pending_transfer : PC_TRANSFER_void_pending_transfer;
    if (g->pending_n > 0 && chance(g, 85))
        t->pending_id = g->pending_ids[rnd(g, g->pending_n)];
    else
        t->pending_id = rnd(g, TRANSFER_IDS + 1);
    t->amount = chance(g, 60) ? 0 : (chance(g, 10) ? gen_amount(g) : 1 + rnd(g, 60));
    if (chance(g, 10)) t->debit_account_id = 1 + rnd(g, ACCOUNT_IDS);
    if (chance(g, 10)) t->credit_account_id = 1 + rnd(g, ACCOUNT_IDS);
    if (chance(g, 10)) t->ledger = 1 + (uint32_t)rnd(g, 2);
    if (chance(g, 10)) t->code = 1 + (uint16_t)rnd(g, 2);
    if (chance(g, 3)) t->timeout = 1;
    if (chance(g, 3)) t->flags |= PC_TRANSFER_balancing_debit;
}

/* A retry of an earlier event, as is or with one field changed. */
static pc_transfer_t gen_retry(gen_t *g) {
    pc_transfer_t t = g->recent[rnd(g, g->recent_n)];
    switch (rnd(g, 16)) {
    case 0:
        t.amount += 1;
        break;
    case 1:
        t.user_data_128 ^= 1;
        break;
    case 2:
        t.user_data_64 ^= 1;
        break;
    case 3:
        t.user_data_32 ^= 1;
        break;
    case 4:
        t.timeout += 1;
        break;
    case 5:
        t.code ^= 3;
        break;
    case 6:
        t.debit_account_id = 1 + rnd(g, ACCOUNT_IDS);
        break;
    case 7:
        t.credit_account_id = 1 + rnd(g, ACCOUNT_IDS);
        break;
    case 8:
        t.pending_id = 1 + rnd(g, TRANSFER_IDS);
        break;
    case 9:
        t.flags ^= PC_TRANSFER_linked;
        break;
    case 10:
        t.amount = 0;
        break;
    default:
        break;
    }
    return t;
}

static pc_transfer_t gen_transfer(gen_t *g) {
    if (g->recent_n > 0 && chance(g, 15)) return gen_retry(g);
    pc_transfer_t t;
    memset(&t, 0, sizeof(t));
    t.id = 1 + rnd(g, TRANSFER_IDS);
    if (chance(g, 1)) t.id = chance(g, 50) ? 0 : PC_U128_MAX;
    uint64_t kind = rnd(g, 10);
    if (kind < 7)
        gen_single(g, &t, kind >= 4);
    else
        gen_post_void(g, &t, kind < 9);
    if (chance(g, 20)) t.flags |= PC_TRANSFER_linked;
    if (chance(g, 2)) t.flags |= (uint16_t)(1u << rnd(g, 7));
    if (chance(g, 1)) t.timestamp = 7;
    t.user_data_128 = rnd(g, 2);
    t.user_data_32 = (uint32_t)rnd(g, 2);
    if (g->recent_n < PC_ARRAY_LEN(g->recent))
        g->recent[g->recent_n++] = t;
    else
        g->recent[rnd(g, PC_ARRAY_LEN(g->recent))] = t;
    return t;
}

/* ---- the harness ---- */

typedef struct run {
    uint64_t seed;
    pc_ledger_t *ledger;
    model_t *model;
    pc_transfer_slot_t store[M_TRANSFERS_MAX];
    uint64_t store_count;
    uint64_t now;
    gen_t gen;
} run_t;

static volatile uint64_t current_seed;

/* How often each result was seen, across all seeds: the run must reach
 * (almost) every result code, or it is not testing what it claims. */
static uint64_t seen_transfer[64], seen_account[32];

static void report_seed(void) {
    char buf[64];
    int n = snprintf(buf, sizeof(buf), "\nfailing seed: %llu\n", (unsigned long long)current_seed);
    if (write(STDERR_FILENO, buf, (size_t)n) < 0) return;
}

static void on_abort(int sig) {
    report_seed();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ASan calls this before it reports an error. */
void __asan_on_error(void);
void __asan_on_error(void) {
    report_seed();
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK(%s) failed (seed %llu)\n", __FILE__, __LINE__, #cond,    \
                    (unsigned long long)current_seed);                                             \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void flush(run_t *r) {
    const pc_transfer_slot_t *slots = NULL;
    uint64_t first = 0;
    uint32_t n = pc_ledger_slots(r->ledger, &slots, &first);
    CHECK(first == r->store_count);
    for (uint32_t i = 0; i < n; i++) {
        CHECK(r->store_count < M_TRANSFERS_MAX);
        r->store[r->store_count++] = slots[i];
    }
    pc_ledger_slots_flushed(r->ledger);
}

static void compare_state(run_t *r) {
    model_t *m = r->model;
    pc_ledger_stats_t s;
    pc_ledger_stats(r->ledger, &s);
    CHECK(s.accounts_count == m->accounts_count);
    CHECK(s.transfers_count == m->transfers_count);
    CHECK(s.slots_count == m->transfers_count);
    CHECK(s.pending_count == m->pending_count);
    CHECK(s.timestamp_last == m->timestamp_last);
    for (uint32_t i = 0; i < m->accounts_count; i++) {
        pc_account_t a;
        CHECK(pc_ledger_lookup_accounts(r->ledger, &m->accounts[i].id, 1, &a) == 1);
        CHECK(memcmp(&a, &m->accounts[i], sizeof(a)) == 0);
    }
    for (uint64_t loc = 0; loc < r->store_count; loc++) {
        const pc_transfer_slot_t *x = &r->store[loc], *y = &m->transfers[loc].slot;
        CHECK(memcmp(&x->transfer, &y->transfer, sizeof(x->transfer)) == 0);
        CHECK(x->prev_debit == y->prev_debit && x->prev_credit == y->prev_credit);
    }
}

static int store_reader(void *ctx, uint64_t loc, pc_transfer_slot_t *out) {
    run_t *r = ctx;
    if (loc >= r->store_count) return PC_EIO;
    *out = r->store[loc];
    return PC_OK;
}

/* The model's answer: scan every stored transfer in loc order. */
static uint32_t m_history(const model_t *m, const pc_account_filter_t *f, pc_transfer_t *out) {
    pc_transfer_t all[M_TRANSFERS_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->transfers_count; i++) {
        const pc_transfer_t *t = &m->transfers[i].slot.transfer;
        if (m->transfers[i].status == M_FAILED) continue;
        bool debit = t->debit_account_id == f->account_id && (f->flags & PC_FILTER_DEBITS);
        bool credit = t->credit_account_id == f->account_id && (f->flags & PC_FILTER_CREDITS);
        if (!debit && !credit) continue;
        if (f->timestamp_min && t->timestamp < f->timestamp_min) continue;
        if (f->timestamp_max && t->timestamp > f->timestamp_max) continue;
        all[n++] = *t;
    }
    uint32_t k = n < f->limit ? n : f->limit;
    for (uint32_t i = 0; i < k; i++) {
        out[i] = (f->flags & PC_FILTER_REVERSED) ? all[n - 1 - i] : all[i];
    }
    return k;
}

static void compare_history(run_t *r) {
    gen_t *g = &r->gen;
    model_t *m = r->model;
    pc_account_filter_t f;
    memset(&f, 0, sizeof(f));
    f.account_id = 1 + rnd(g, ACCOUNT_IDS);
    f.flags = 1 + (uint32_t)rnd(g, 3);
    if (chance(g, 50)) f.flags |= PC_FILTER_REVERSED;
    f.limit = 1 + (uint32_t)rnd(g, 8);
    if (m->transfers_count > 0 && chance(g, 50)) {
        f.timestamp_min = m->transfers[rnd(g, m->transfers_count)].slot.transfer.timestamp;
        if (chance(g, 50)) f.timestamp_min = 0;
        f.timestamp_max = m->transfers[rnd(g, m->transfers_count)].slot.transfer.timestamp;
        if (f.timestamp_max < f.timestamp_min) f.timestamp_max = 0;
    }
    pc_transfer_t got[8], want[8];
    int n = pc_ledger_get_account_transfers(r->ledger, &f, store_reader, r, got);
    uint32_t k = m_history(m, &f, want);
    CHECK(n == (int)k);
    CHECK(memcmp(got, want, k * sizeof(pc_transfer_t)) == 0);
}

/* Checkpoint, restore into a fresh ledger, rebuild from the store, compare,
 * and carry on with the restored ledger. */
static void restore(run_t *r) {
    flush(r);
    size_t size = pc_ledger_snapshot_size(r->ledger);
    void *buf = malloc(size);
    CHECK(pc_ledger_snapshot_write(r->ledger, buf, size) == size);
    pc_ledger_t *fresh = NULL;
    CHECK(pc_ledger_init(&r->model->config, &fresh) == PC_OK);
    CHECK(pc_ledger_snapshot_read(fresh, buf, size) == PC_OK);
    free(buf);
    CHECK(pc_ledger_slots_count(fresh) == r->store_count);
    for (uint64_t loc = 0; loc < r->store_count; loc++) {
        CHECK(pc_ledger_rebuild_slot(fresh, loc, &r->store[loc]) == PC_OK);
    }
    CHECK(pc_ledger_rebuild_finish(fresh) == PC_OK);
    CHECK(pc_ledger_state_checksum(fresh) == pc_ledger_state_checksum(r->ledger));
    pc_ledger_deinit(r->ledger);
    r->ledger = fresh;
}

static void apply_both(run_t *r, pc_operation_t op, const void *events, uint32_t count) {
    uint64_t locs[BATCH_MAX];
    uint32_t n = pc_ledger_prefetch(r->ledger, op, events, count, locs);
    for (uint32_t i = 0; i < n; i++) {
        CHECK(locs[i] < r->store_count);
        pc_ledger_prefetch_put(r->ledger, locs[i], &r->store[locs[i]].transfer);
    }
    pc_create_result_t got[BATCH_MAX], want[BATCH_MAX];
    uint32_t ng = pc_ledger_apply(r->ledger, op, 0, r->now, events, count, got);
    uint32_t nw = m_apply(r->model, op, r->now, events, count, want);
    if (ng != nw || memcmp(got, want, nw * sizeof(got[0])) != 0) {
        for (uint32_t i = 0; i < PC_MAX(ng, nw); i++) {
            fprintf(stderr, "  [%u] ledger %u:%u model %u:%u\n", i, i < ng ? got[i].index : 0,
                    i < ng ? got[i].result : 0, i < nw ? want[i].index : 0,
                    i < nw ? want[i].result : 0);
        }
        CHECK(!"results differ");
    }
    for (uint32_t i = 0; i < nw; i++) {
        if (op == PC_OP_create_transfers)
            seen_transfer[want[i].result % 64]++;
        else
            seen_account[want[i].result % 32]++;
    }
    /* Sometimes leave slots unflushed: apply must serve them from memory. */
    if (chance(&r->gen, 80)) flush(r);
}

static void batch(run_t *r, uint32_t b) {
    gen_t *g = &r->gen;
    if (b == 0 || chance(g, 8)) {
        pc_account_t accounts[BATCH_MAX];
        uint32_t count = b == 0 ? 10 : 1 + (uint32_t)rnd(g, BATCH_MAX);
        for (uint32_t i = 0; i < count; i++) {
            accounts[i] = gen_account(g);
            if (b == 0)
                accounts[i] = (pc_account_t){.id = i + 1,
                                             .ledger = 1 + i % 5 / 4,
                                             .code = 1,
                                             .flags = accounts[i].flags & 6};
            if (b == 0 && (accounts[i].flags & 6) == 6) accounts[i].flags = 2;
        }
        apply_both(r, PC_OP_create_accounts, accounts, count);
    } else {
        pc_transfer_t transfers[BATCH_MAX];
        uint32_t count = 1 + (uint32_t)rnd(g, BATCH_MAX);
        for (uint32_t i = 0; i < count; i++)
            transfers[i] = gen_transfer(g);
        apply_both(r, PC_OP_create_transfers, transfers, count);
    }
    compare_state(r);
    compare_history(r);
}

static void expire_both(run_t *r) {
    uint32_t got = pc_ledger_expire(r->ledger, r->now);
    uint32_t want = m_expire(r->model, r->now);
    CHECK(got == want);
    if (r->now > r->model->timestamp_last) r->model->timestamp_last = r->now;
    compare_state(r);
}

/* Moves the clock to a pending deadline or a nanosecond before it, where an
 * off-by-one in expiry shows. */
static void aim_at_deadline(run_t *r) {
    model_t *m = r->model;
    uint32_t candidates[M_TRANSFERS_MAX], n = 0;
    for (uint32_t i = 0; i < m->transfers_count; i++) {
        const m_transfer_t *x = &m->transfers[i];
        if (x->status == M_PENDING && x->expires_at > m->timestamp_last + 2) candidates[n++] = i;
    }
    if (n == 0) return;
    r->now = m->transfers[candidates[rnd(&r->gen, n)]].expires_at - rnd(&r->gen, 2);
    if (chance(&r->gen, 50)) expire_both(r);
}

static void advance_time(run_t *r) {
    gen_t *g = &r->gen;
    if (chance(g, 5)) {
        r->now -= S_NS;
    } else {
        r->now += rnd(g, 3) * S_NS + rnd(g, 1000);
    }
    if (chance(g, 20)) aim_at_deadline(r);
    if (chance(g, 5)) expire_both(r);
}

static void run_seed(uint64_t seed) {
    current_seed = seed;
    run_t *r = calloc(1, sizeof(*r));
    r->seed = seed;
    pc_prng_init(&r->gen.prng, seed);
    r->model = calloc(1, sizeof(model_t));
    /* Some seeds run into every capacity limit. */
    bool tight = seed % 3 == 0;
    r->model->config = (pc_ledger_config_t){tight ? 8 : ACCOUNT_IDS, tight ? 120 : M_TRANSFERS_MAX,
                                            tight ? 4 : 64};
    CHECK(pc_ledger_init(&r->model->config, &r->ledger) == PC_OK);
    /* Others run near the end of time, where the longest timeouts overflow. */
    r->now = seed % 7 == 1 ? UINT64_MAX - 1000000000000000000ull : 1000 * S_NS;
    uint32_t restore_at = 10 + (uint32_t)(seed % 30);
    for (uint32_t b = 0; b < BATCHES; b++) {
        batch(r, b);
        if (b == restore_at || chance(&r->gen, 3)) restore(r);
        advance_time(r);
    }
    flush(r);
    compare_state(r);
    pc_ledger_deinit(r->ledger);
    free(r->model);
    free(r);
}

/* PC_LEDGER_COVERAGE=1 prints the counts. */
static void coverage_check(void) {
    bool print = getenv("PC_LEDGER_COVERAGE") != NULL;
    for (uint32_t r = 1; r <= TR(pending_transfers_full); r++) {
        if (print)
            printf("transfer %-50s %llu\n", pc_transfer_result_name(r),
                   (unsigned long long)seen_transfer[r]);
        if (seen_transfer[r] == 0) printf("never reached: %s\n", pc_transfer_result_name(r));
        ASSERT_TRUE(seen_transfer[r] > 0);
    }
    for (uint32_t r = 1; r <= AR(accounts_full); r++) {
        if (print)
            printf("account %-50s %llu\n", pc_account_result_name(r),
                   (unsigned long long)seen_account[r]);
        if (seen_account[r] == 0) printf("never reached: %s\n", pc_account_result_name(r));
        ASSERT_TRUE(seen_account[r] > 0);
    }
}

static void test_ledger_matches_model(void) {
    signal(SIGABRT, on_abort);
    m_saved = calloc(1, sizeof(model_t));
    const char *only = getenv("PC_LEDGER_SEED");
    if (only != NULL) {
        run_seed(strtoull(only, NULL, 10));
    } else {
        for (uint64_t seed = 0; seed < SEEDS; seed++)
            run_seed(seed);
        coverage_check();
    }
    free(m_saved);
}

#define TESTS(X) X(test_ledger_matches_model)
PC_TEST_MAIN(TESTS)
