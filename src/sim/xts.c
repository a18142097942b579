/*
 * xts.c — the deterministic simulator of cross-unit transfers (XTS).
 *
 * Two or three units, each one real ledger state machine (pc_ledger) with
 * its own routing (the buckets are split between them), its transfer slots
 * kept in a growable in-memory store as src/sim/machine.c keeps them. Units
 * are not replicated here: VSR has its own simulator; this one aims at the
 * TCC protocol between units, payee first (paycell.h). Several simulated
 * gateways (drivers) run the phases of src/gateway/job.c on small batches:
 * A, xts_try at the payee unit (a pending credit leg that never expires on
 * its own); B, only where A answered created or exists, the same xts_try at
 * the payer unit, which is the decision: posted at once (created, or exists
 * on a retry) is a commit, any refusal but wrong_unit is an abort (the payer
 * keeps a tombstone when it has room); C, xts_resolve at the payee, post
 * after a commit, void after an abort. When B has no answer the outcome is
 * unknown and the driver leaves the leg alone. Every unit runs the payee
 * side's recovery of src/replica/xts_recovery.c: each second it lists its
 * undecided legs tried more than a grace ago and past their timeout, asks
 * each payer unit for an abort naming the leg (pc_xts_leg_digest), and
 * applies the answer to its own leg: xts_committed posts it; created (an
 * empty rollback, which leaves a tombstone), exists or xts_aborted voids it.
 *
 * Everything random is drawn from one pc_prng seeded with the seed, so a
 * failing seed replays exactly: message loss, duplication and delay (hence
 * reordering, and stale steps arriving long after a decision), a driver
 * giving up or crashing at any step (losing its state), clients retrying a
 * gtid through another driver (whose xts timeout may differ), old xts_try /
 * xts_resolve messages to payers and payees replayed late on purpose, local
 * pending transfers left to expire, and unit restarts as a replica recovers:
 * the last checkpoint's snapshot, the stored slots up to it, then the logged
 * batches and idle expiries since (the WAL) replayed, which must re-produce
 * the same results, slots and state checksum. A quarter of the seeds run
 * "tight": ledger tables small enough that tries meet transfers_full and
 * pending_transfers_full.
 *
 * Checkers: after every applied batch (and idle expiry), per ledger id,
 * each unit and the sum over units must have debits_pending ==
 * credits_pending and debits_posted == credits_posted. A restarted ledger
 * must have the state checksum it had before. After the fault phase the
 * drivers stop and recovery runs until no undecided payee leg is left
 * (liveness, bounded); then nothing may be pending anywhere, the clearing
 * accounts must cancel across units, a gtid's payee leg must be posted
 * exactly when its payer unit holds the posted payer record of the same
 * transfer (else voided), and every account's posted balances must equal a
 * reference model built from the payer units' posted records and the local
 * transfers in the stores.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../ledger/ledger.h"
#include "../net/net.h"
#include "sim.h"

#define XS_UNITS_MAX 3u
#define XS_DRIVERS 4u
#define XS_JOB_MAX 4u        /* transfers per driver job */
#define XS_EVENTS_MAX 16u    /* events per message (the recovery's batch limit) */
#define XS_PACKETS_MAX 1024u /* in flight at once; beyond that a send is lost */
#define XS_CATALOG_MAX 4096u
#define XS_ACCOUNTS_MAX 64u  /* simulated accounts over all units */
#define XS_LEDGERS_MAX 3u
#define XS_REPLAYS 64u       /* old try/resolve messages kept for late replays */
#define XS_TICK_NS (10ull * 1000 * 1000)
#define XS_FAULT_TICKS 1500u
#define XS_HEAL_TICKS_MAX 4000u
#define XS_RECOVERY_PERIOD_TICKS 100u /* xts_recovery.c: RECOVERY_PERIOD_MS */
#define XS_RECOVERY_GRACE_NS (2000ull * 1000 * 1000)
#define XS_STEP_TIMEOUT_TICKS 25u
#define XS_STEP_RETRIES_MAX 3u
#define XS_GTID_BASE ((pc_u128)1 << 40)
#define XS_OPEN UINT32_MAX
#define R(name) PC_TRANSFER_RESULT_##name

PC_STATIC_ASSERT(XS_JOB_MAX <= XS_EVENTS_MAX, "a job's step fits one message per unit");
PC_STATIC_ASSERT(XS_UNITS_MAX <= PC_UNITS_MAX, "units");
PC_STATIC_ASSERT(sizeof(pc_xts_decision_t) <= sizeof(pc_transfer_t), "an event slot holds both");

bool pc__xts_sim_bug_commit_without_payee = false;

static const uint16_t FLAG_POST = PC_TRANSFER_post_pending_transfer;
static const uint16_t FLAG_VOID = PC_TRANSFER_void_pending_transfer;

/* One applied batch (or idle expiry, op none) since the unit's last
 * checkpoint: its WAL entry, replayed on restart. */
typedef struct xs_log_entry {
    uint8_t op;
    uint32_t count;
    uint64_t timestamp;
    pc_u128 results; /* checksum of the results it gave */
    _Alignas(16) uint8_t body[XS_EVENTS_MAX * sizeof(pc_transfer_t)];
} xs_log_entry_t;

typedef struct xs_unit {
    pc_ledger_t *ledger;
    pc_transfer_slot_t *store;
    uint64_t store_count, store_cap;
    void *checkpoint; /* the ledger's snapshot at the last checkpoint */
    size_t checkpoint_size, checkpoint_cap;
    uint64_t checkpoint_slots;
    xs_log_entry_t *log;
    uint32_t log_count, log_cap;
    uint64_t skew_ns; /* the unit's clock runs ahead of world time by this */
    uint64_t recovery_phase;
} xs_unit_t;

enum { PKT_REQUEST = 1, PKT_REPLY };
enum { OWNER_NONE = 0, OWNER_DRIVER, OWNER_RECOVERY };

/* A message's events, packed as the ledger takes them: 128-byte transfers
 * (create_transfers, xts_try) or 32-byte decisions (xts_resolve). */
typedef union xs_body {
    pc_transfer_t transfers[XS_EVENTS_MAX];
    pc_xts_decision_t decisions[XS_EVENTS_MAX];
} xs_body_t;

typedef struct xs_packet {
    bool used;
    uint8_t kind;
    uint8_t unit; /* the unit a request goes to, or a reply comes from */
    uint8_t op;
    uint8_t owner_kind;
    uint32_t owner; /* a driver, or the unit whose recovery sent it */
    uint64_t tag;
    uint64_t deliver_tick, seq;
    uint32_t count;
    xs_body_t body;
    uint32_t results[XS_EVENTS_MAX]; /* replies: per event, dense */
} xs_packet_t;

/* One event of a step, before it is packed into its message. */
typedef union xs_event {
    pc_transfer_t transfer;
    pc_xts_decision_t decision;
} xs_event_t;

/* Cross-unit state of one event, as in job.c. PAYEE_REFUSED matters only to
 * the planted bug, which sends phase B for it anyway. */
enum { XS_NONE = 0, XS_PAYEE_OK, XS_PAYEE_REFUSED, XS_COMMIT, XS_ABORT, XS_RESOLVED };
enum { PH_IDLE = 0, PH_A, PH_B, PH_C };

typedef struct xs_driver {
    uint32_t incarnation;
    uint32_t phase;
    uint32_t count;
    uint32_t timeout_s;
    uint64_t step;       /* step attempt counter: replies of older attempts are ignored */
    uint64_t sent_tick;
    uint64_t idle_until;
    uint32_t retries;
    uint32_t cat[XS_JOB_MAX]; /* catalog index of each transfer */
    uint32_t res[XS_JOB_MAX]; /* the current step's result, XS_OPEN until known */
    uint8_t xs[XS_JOB_MAX];
    bool in_step[XS_JOB_MAX];
} xs_driver_t;

typedef struct xs_account {
    pc_u128 id;
    uint32_t ledger, unit;
    bool exists, limited, funding;
} xs_account_t;

typedef struct xs_world {
    const pc_xts_sim_options_t *o;
    pc_xts_sim_result_t *r;
    FILE *log;
    pc_prng_t prng;
    uint64_t tick;
    bool faults;
    bool tight;              /* small tables: the capacity limits are reached */
    pc_ledger_config_t config;
    uint32_t units_count, ledgers_count;
    uint8_t bucket_unit[PC_ROUTING_BUCKETS];
    xs_unit_t units[XS_UNITS_MAX];
    xs_account_t accounts[XS_ACCOUNTS_MAX];
    uint32_t accounts_count;
    pc_transfer_t catalog[XS_CATALOG_MAX];
    uint32_t catalog_count;
    xs_driver_t drivers[XS_DRIVERS];
    xs_packet_t *packets;
    uint64_t packet_seq;
    xs_packet_t replays[XS_REPLAYS];
    uint32_t replays_count;
    uint32_t loss_pct, dup_pct, long_delay_pct;
    /* Scratch for applies. */
    uint64_t locs[XS_EVENTS_MAX];
    pc_create_result_t results[XS_EVENTS_MAX];
} xs_world_t;

/* ---- helpers ---- */

static bool chance(xs_world_t *w, uint32_t percent_x10) {
    return pc_prng_below(&w->prng, 1000) < percent_x10;
}

static uint64_t below(xs_world_t *w, uint64_t bound) { return pc_prng_below(&w->prng, bound); }

static void fail(xs_world_t *w, const char *fmt, ...) {
    if (!w->r->ok) return; /* keep the first failure */
    w->r->ok = false;
    int n = snprintf(w->r->failure, sizeof w->r->failure, "tick %llu: ",
                     (unsigned long long)w->tick);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->r->failure + n, sizeof w->r->failure - (size_t)n, fmt, ap);
    va_end(ap);
    PC_ASSERT(w->r->failure[0] != 0);
}

static void say(xs_world_t *w, const char *fmt, ...) {
    if (!w->o->verbose) return;
    fprintf(w->log, "[%6llu] ", (unsigned long long)w->tick);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(w->log, fmt, ap);
    va_end(ap);
    fputc('\n', w->log);
}

static uint32_t unit_of(const xs_world_t *w, pc_u128 id) {
    return w->bucket_unit[pc_bucket_of(id)];
}

static uint64_t unit_now(const xs_world_t *w, uint32_t u) {
    return 1000000000000ull + w->tick * XS_TICK_NS + w->units[u].skew_ns;
}

static uint32_t catalog_index(const xs_world_t *w, pc_u128 gtid) {
    if (gtid < XS_GTID_BASE || gtid >= XS_GTID_BASE + w->catalog_count) return UINT32_MAX;
    return (uint32_t)(gtid - XS_GTID_BASE);
}

static bool result_ok(uint32_t result) { return result == R(created) || result == R(exists); }

/* ---- units ---- */

static int unit_ledger_init(const xs_world_t *w, pc_ledger_t **out) {
    return pc_ledger_init(&w->config, out);
}

static void store_append(xs_unit_t *u) {
    const pc_transfer_slot_t *slots;
    uint64_t first;
    uint32_t made = pc_ledger_slots(u->ledger, &slots, &first);
    PC_ASSERT(made == 0 || first == u->store_count);
    if (u->store_count + made > u->store_cap) {
        while (u->store_count + made > u->store_cap) u->store_cap *= 2;
        u->store = realloc(u->store, u->store_cap * sizeof *u->store);
        PC_ASSERT(u->store != NULL);
    }
    memcpy(&u->store[u->store_count], slots, made * sizeof *slots);
    u->store_count += made;
    pc_ledger_slots_flushed(u->ledger);
}

static void conservation_check(xs_world_t *w, const char *after);

static void log_append(xs_unit_t *u, pc_operation_t op, uint64_t timestamp, const void *events,
                       uint32_t count, pc_u128 results) {
    PC_ASSERT(count <= XS_EVENTS_MAX);
    if (u->log_count == u->log_cap) {
        u->log_cap = u->log_cap ? 2 * u->log_cap : 64;
        u->log = realloc(u->log, u->log_cap * sizeof *u->log);
        PC_ASSERT(u->log != NULL);
    }
    xs_log_entry_t *e = &u->log[u->log_count++];
    e->op = (uint8_t)op;
    e->count = count;
    e->timestamp = timestamp;
    e->results = results;
    if (count > 0) memcpy(e->body, events, (size_t)count * pc_operation_event_size(op));
}

/* One batch through the ledger's two phases, exactly as the replica applies
 * it (the results land in w->results); returns the results count. */
static uint32_t ledger_apply(xs_world_t *w, xs_unit_t *u, pc_operation_t op, uint64_t timestamp,
                             const void *events, uint32_t count) {
    PC_ASSERT(count >= 1 && count <= XS_EVENTS_MAX);
    uint32_t n = pc_ledger_prefetch(u->ledger, op, events, count, w->locs);
    for (uint32_t i = 0; i < n; i++) {
        PC_ASSERT(w->locs[i] < u->store_count);
        pc_ledger_prefetch_put(u->ledger, w->locs[i], &u->store[w->locs[i]].transfer);
    }
    uint32_t r = pc_ledger_apply(u->ledger, op, 0, timestamp, events, count, w->results);
    store_append(u);
    PC_ASSERT(r <= count);
    return r;
}

/* Applies one batch at the unit's clock, logs it for a restart's replay,
 * and writes a dense result per event (0 = created). */
static void unit_apply(xs_world_t *w, uint32_t ui, pc_operation_t op, const void *events,
                       uint32_t count, uint32_t *dense) {
    PC_ASSERT(ui < w->units_count && count >= 1 && count <= XS_EVENTS_MAX);
    xs_unit_t *u = &w->units[ui];
    uint64_t timestamp = unit_now(w, ui);
    uint32_t r = ledger_apply(w, u, op, timestamp, events, count);
    pc_u128 digest = pc_checksum(w->results, r * sizeof w->results[0], 0);
    log_append(u, op, timestamp, events, count, digest);
    for (uint32_t i = 0; i < count; i++) dense[i] = 0;
    for (uint32_t k = 0; k < r; k++) {
        PC_ASSERT(w->results[k].index < count);
        uint32_t res = w->results[k].result;
        dense[w->results[k].index] = res;
        if (res == R(transfers_full) || res == R(pending_transfers_full) ||
            res == R(clearing_account_unavailable)) {
            w->r->capacity_hits++;
        }
        if (op == PC_OP_xts_try && res == R(xts_aborted)) w->r->suspended_tries++;
        if (op == PC_OP_xts_resolve && (res == R(xts_aborted) || res == R(xts_committed))) {
            w->r->late_decisions++;
        }
    }
    w->r->batches++;
    conservation_check(w, pc_operation_name(op));
}

/* Idle expiry, as the replica's idle tick (an empty WAL batch). */
static void unit_expire(xs_world_t *w, uint32_t ui) {
    xs_unit_t *u = &w->units[ui];
    uint64_t now = unit_now(w, ui);
    if (pc_ledger_next_expiry(u->ledger) > now) return;
    w->r->expiries += pc_ledger_expire(u->ledger, now);
    log_append(u, PC_OP_none, now, NULL, 0, 0);
    conservation_check(w, "idle expiry");
}

/* A checkpoint: the ledger's snapshot and the store's length; the log
 * restarts empty. */
static void unit_checkpoint(xs_unit_t *u) {
    size_t size = pc_ledger_snapshot_size(u->ledger);
    if (size > u->checkpoint_cap) {
        u->checkpoint = realloc(u->checkpoint, size);
        PC_ASSERT(u->checkpoint != NULL);
        u->checkpoint_cap = size;
    }
    u->checkpoint_size = pc_ledger_snapshot_write(u->ledger, u->checkpoint, size);
    PC_ASSERT(u->checkpoint_size == size);
    u->checkpoint_slots = u->store_count;
    u->log_count = 0;
}

/* Replays the log over the rebuilt ledger: each batch must give the results
 * and the slots it gave the first time. Returns false on a difference. */
static bool unit_replay(xs_world_t *w, xs_unit_t *u, const pc_transfer_slot_t *tail,
                        uint64_t tail_count) {
    for (uint32_t i = 0; i < u->log_count; i++) {
        const xs_log_entry_t *e = &u->log[i];
        if (e->op == PC_OP_none) {
            (void)pc_ledger_expire(u->ledger, e->timestamp);
            continue;
        }
        uint32_t r = ledger_apply(w, u, (pc_operation_t)e->op, e->timestamp, e->body, e->count);
        if (pc_checksum(w->results, r * sizeof w->results[0], 0) != e->results) return false;
    }
    return u->store_count == u->checkpoint_slots + tail_count &&
           memcmp(&u->store[u->checkpoint_slots], tail, tail_count * sizeof *tail) == 0;
}

/* A unit restart, as a replica recovers: a fresh ledger loads the last
 * checkpoint's snapshot, rebuilds from the store up to it, and replays the
 * WAL since (the batches and idle expiries logged), re-producing the
 * store's tail. Its state checksum must be the one before the restart. */
static void unit_restart(xs_world_t *w, uint32_t ui) {
    xs_unit_t *u = &w->units[ui];
    if (chance(w, 300)) unit_checkpoint(u); /* sometimes a fresh one: no replay */
    pc_u128 before = pc_ledger_state_checksum(u->ledger);
    uint64_t tail_count = u->store_count - u->checkpoint_slots;
    pc_transfer_slot_t *tail = malloc(PC_MAX(tail_count, 1u) * sizeof *tail);
    PC_ASSERT(tail != NULL);
    memcpy(tail, &u->store[u->checkpoint_slots], tail_count * sizeof *tail);
    u->store_count = u->checkpoint_slots;
    pc_ledger_deinit(u->ledger);
    u->ledger = NULL;
    PC_ASSERT(unit_ledger_init(w, &u->ledger) == PC_OK);
    int rc = pc_ledger_snapshot_read(u->ledger, u->checkpoint, u->checkpoint_size);
    if (rc == PC_OK && pc_ledger_slots_count(u->ledger) != u->store_count) rc = PC_ECORRUPT;
    for (uint64_t loc = 0; rc == PC_OK && loc < u->store_count; loc++) {
        rc = pc_ledger_rebuild_slot(u->ledger, loc, &u->store[loc]);
    }
    if (rc == PC_OK) rc = pc_ledger_rebuild_finish(u->ledger);
    if (rc != PC_OK) {
        free(tail);
        fail(w, "unit %u restart: %s", ui, pc_err_name(rc));
        return;
    }
    uint32_t replayed = u->log_count;
    if (!unit_replay(w, u, tail, tail_count)) {
        fail(w, "unit %u restart: replaying %u logged batches gave other results or slots", ui,
             replayed);
    } else if (pc_ledger_state_checksum(u->ledger) != before) {
        fail(w, "unit %u restart: state checksum differs after rebuild and %u replayed batches",
             ui, replayed);
    }
    free(tail);
    w->r->unit_restarts++;
    w->r->replayed_batches += replayed;
    say(w, "unit %u restarted: snapshot + %llu slots + %u logged batches", ui,
        (unsigned long long)u->checkpoint_slots, replayed);
}

/* ---- checkers ---- */

static void conservation_check(xs_world_t *w, const char *after) {
    pc_ledger_totals_t t[8];
    pc_u128 sum[XS_LEDGERS_MAX + 1][4];
    memset(sum, 0, sizeof sum);
    for (uint32_t ui = 0; ui < w->units_count; ui++) {
        uint32_t n = pc_ledger_totals(w->units[ui].ledger, t, PC_ARRAY_LEN(t));
        PC_ASSERT(n <= PC_ARRAY_LEN(t));
        for (uint32_t k = 0; k < n; k++) {
            if (t[k].debits_pending != t[k].credits_pending ||
                t[k].debits_posted != t[k].credits_posted) {
                fail(w, "unit %u ledger %u unbalanced after %s", ui, t[k].ledger, after);
            }
            PC_ASSERT(t[k].ledger >= 1 && t[k].ledger <= XS_LEDGERS_MAX);
            sum[t[k].ledger][0] += t[k].debits_pending;
            sum[t[k].ledger][1] += t[k].credits_pending;
            sum[t[k].ledger][2] += t[k].debits_posted;
            sum[t[k].ledger][3] += t[k].credits_posted;
        }
    }
    for (uint32_t l = 1; l <= XS_LEDGERS_MAX; l++) {
        if (sum[l][0] != sum[l][1] || sum[l][2] != sum[l][3]) {
            fail(w, "ledger %u unbalanced across units after %s", l, after);
        }
    }
}

/* ---- network ---- */

static void packet_send(xs_world_t *w, const xs_packet_t *p) {
    PC_ASSERT(p->count >= 1 && p->count <= XS_EVENTS_MAX);
    uint32_t copies = 1;
    if (w->faults) {
        if (chance(w, w->loss_pct * 10)) {
            w->r->messages_lost++;
            return;
        }
        if (chance(w, w->dup_pct * 10)) {
            copies = 2;
            w->r->messages_duplicated++;
        }
    }
    for (uint32_t c = 0; c < copies; c++) {
        uint32_t slot = XS_PACKETS_MAX;
        for (uint32_t i = 0; i < XS_PACKETS_MAX; i++) {
            if (!w->packets[i].used) {
                slot = i;
                break;
            }
        }
        if (slot == XS_PACKETS_MAX) {
            w->r->messages_lost++;
            return;
        }
        xs_packet_t *q = &w->packets[slot];
        *q = *p;
        q->used = true;
        q->seq = w->packet_seq++;
        uint64_t delay = 1 + below(w, 4);
        if (w->faults && chance(w, w->long_delay_pct * 10)) delay = 20 + below(w, 400);
        q->deliver_tick = w->tick + delay;
    }
}

/* The gtid of a message's event e, whichever kind of event it carries. */
static pc_u128 packet_gtid(const xs_packet_t *p, uint32_t e) {
    PC_ASSERT(e < p->count);
    if (p->op == PC_OP_xts_resolve) return p->body.decisions[e].gtid;
    PC_ASSERT(p->op == PC_OP_xts_try || p->op == PC_OP_create_transfers);
    return p->body.transfers[e].id;
}

/* Sends count packed events of op; keeps xts steps for a late replay. */
static void request_send(xs_world_t *w, uint32_t unit, pc_operation_t op, uint8_t owner_kind,
                         uint32_t owner, uint64_t tag, const void *events, uint32_t count) {
    PC_ASSERT(count >= 1 && count <= XS_EVENTS_MAX && unit < w->units_count);
    xs_packet_t p;
    memset(&p, 0, sizeof p);
    p.kind = PKT_REQUEST;
    p.unit = (uint8_t)unit;
    p.op = (uint8_t)op;
    p.owner_kind = owner_kind;
    p.owner = owner;
    p.tag = tag;
    p.count = count;
    PC_ASSERT(count * pc_operation_event_size(op) <= sizeof p.body);
    memcpy(&p.body, events, count * pc_operation_event_size(op));
    if (op == PC_OP_xts_try || op == PC_OP_xts_resolve) {
        /* Kept for a late replay (a stale step), whoever sent it: a
         * driver's try or resolve, or a recovery's question or answer. */
        uint32_t slot = w->replays_count < XS_REPLAYS ? w->replays_count++
                                                      : (uint32_t)below(w, XS_REPLAYS);
        w->replays[slot] = p;
        w->replays[slot].owner_kind = OWNER_NONE;
    }
    packet_send(w, &p);
}

/* ---- drivers (job.c's phases) ---- */

static uint64_t driver_tag(const xs_driver_t *d) {
    return ((uint64_t)d->incarnation << 32) | d->step;
}

static bool is_cross(const xs_world_t *w, const pc_transfer_t *t) {
    return unit_of(w, t->debit_account_id) != unit_of(w, t->credit_account_id);
}

/* Whether event k takes part in the current phase: phase B for the payee's
 * acceptances (and, planted bug, its refusals too), C once B decided. */
static bool phase_has(const xs_driver_t *d, uint32_t k) {
    switch (d->phase) {
    case PH_A: return true;
    case PH_B:
        return d->xs[k] == XS_PAYEE_OK ||
               (pc__xts_sim_bug_commit_without_payee && d->xs[k] == XS_PAYEE_REFUSED);
    case PH_C: return d->xs[k] == XS_COMMIT || d->xs[k] == XS_ABORT;
    default: PC_ASSERT(!"phase_has in no phase"); return false;
    }
}

/* Event k of the current phase, and where it goes. False when it takes no
 * part in the phase. */
static bool phase_event(const xs_world_t *w, const xs_driver_t *d, uint32_t k, uint32_t *unit,
                        pc_operation_t *op, xs_event_t *ev) {
    PC_ASSERT(k < d->count);
    const pc_transfer_t *t = &w->catalog[d->cat[k]];
    memset(ev, 0, sizeof *ev);
    if (!phase_has(d, k)) return false;
    if (d->phase == PH_C) {
        ev->decision.gtid = t->id;
        ev->decision.flags = d->xs[k] == XS_COMMIT ? FLAG_POST : FLAG_VOID;
        *op = PC_OP_xts_resolve;
        *unit = unit_of(w, t->credit_account_id);
        return true;
    }
    ev->transfer = *t;
    if (!is_cross(w, t)) {
        PC_ASSERT(d->phase == PH_A);
        *op = PC_OP_create_transfers;
        *unit = unit_of(w, t->debit_account_id);
        return true;
    }
    ev->transfer.timeout = d->timeout_s;
    *op = PC_OP_xts_try;
    /* Payee first: A goes to the credit side, B (the decision) to the debit side. */
    *unit = unit_of(w, d->phase == PH_A ? t->credit_account_id : t->debit_account_id);
    return true;
}

/* Packs the open events of the current step bound for one unit with one
 * operation into a message and sends it. Returns how many went. */
static uint32_t step_send_to(xs_world_t *w, uint32_t di, uint32_t u, pc_operation_t op) {
    xs_driver_t *d = &w->drivers[di];
    xs_body_t body;
    uint32_t n = 0;
    for (uint32_t k = 0; k < d->count; k++) {
        uint32_t unit;
        pc_operation_t ev_op;
        xs_event_t ev;
        if (!d->in_step[k] || d->res[k] != XS_OPEN) continue;
        if (!phase_event(w, d, k, &unit, &ev_op, &ev) || unit != u || ev_op != op) continue;
        if (op == PC_OP_xts_resolve) body.decisions[n++] = ev.decision;
        else body.transfers[n++] = ev.transfer;
    }
    PC_ASSERT(n <= XS_JOB_MAX);
    if (n > 0) request_send(w, u, op, OWNER_DRIVER, di, driver_tag(d), &body, n);
    return n;
}

/* Sends the events of the current step whose result is still open (the
 * first send, or a retry of an unanswered part: every step is idempotent),
 * one message per unit and operation. Returns how many events went. */
static uint32_t step_send(xs_world_t *w, uint32_t di) {
    static const pc_operation_t ops[] = {PC_OP_xts_try, PC_OP_xts_resolve,
                                         PC_OP_create_transfers};
    xs_driver_t *d = &w->drivers[di];
    d->step++;
    d->sent_tick = w->tick;
    uint32_t sent = 0;
    for (uint32_t u = 0; u < w->units_count; u++) {
        for (uint32_t o = 0; o < PC_ARRAY_LEN(ops); o++) sent += step_send_to(w, di, u, ops[o]);
    }
    PC_ASSERT(sent <= d->count);
    return sent;
}

/* Starts a phase: marks its events open and sends them. Returns false when
 * the phase has no events. */
static bool phase_start(xs_world_t *w, uint32_t di, uint32_t phase) {
    xs_driver_t *d = &w->drivers[di];
    d->phase = phase;
    d->retries = 0;
    uint32_t n = 0;
    for (uint32_t k = 0; k < d->count; k++) {
        d->in_step[k] = phase_has(d, k);
        d->res[k] = XS_OPEN;
        n += d->in_step[k];
    }
    if (n == 0) return false;
    PC_ASSERT(step_send(w, di) == n);
    return true;
}

static void driver_stop(xs_world_t *w, uint32_t di) {
    xs_driver_t *d = &w->drivers[di];
    d->phase = PH_IDLE;
    d->incarnation++;
    d->idle_until = w->tick + 1 + below(w, 20);
    PC_ASSERT(d->phase == PH_IDLE);
}

/* A new transfer for the catalog: mostly cross-unit, some local (a third of
 * those pending with a timeout, left to expire), some naming a missing
 * account or the wrong ledger, so that tries fail. */
static uint32_t catalog_new(xs_world_t *w) {
    PC_ASSERT(w->catalog_count < XS_CATALOG_MAX);
    pc_transfer_t t;
    memset(&t, 0, sizeof t);
    t.id = XS_GTID_BASE + w->catalog_count;
    const xs_account_t *dr = &w->accounts[below(w, w->accounts_count)];
    const xs_account_t *cr = dr;
    bool local = chance(w, 150);
    bool same_ledger = !chance(w, 50);
    for (uint32_t tries = 0; tries < 64 && (cr == dr || (same_ledger && cr->ledger != dr->ledger) ||
                                             local != (cr->unit == dr->unit));
         tries++) {
        cr = &w->accounts[below(w, w->accounts_count)];
    }
    if (cr == dr) cr = &w->accounts[(dr - w->accounts + 1) % w->accounts_count];
    t.debit_account_id = dr->id;
    t.credit_account_id = cr->id;
    t.amount = 1 + below(w, 200);
    t.ledger = dr->ledger;
    t.code = 1;
    t.user_data_64 = w->tick;
    if (cr->unit == dr->unit && chance(w, 333)) {
        t.flags = PC_TRANSFER_pending;
        t.timeout = 1 + (uint32_t)below(w, 2);
    }
    w->catalog[w->catalog_count] = t;
    return w->catalog_count++;
}

static void job_start(xs_world_t *w, uint32_t di) {
    xs_driver_t *d = &w->drivers[di];
    PC_ASSERT(d->phase == PH_IDLE);
    if (w->catalog_count + XS_JOB_MAX > XS_CATALOG_MAX) return;
    d->count = 1 + (uint32_t)below(w, XS_JOB_MAX);
    for (uint32_t k = 0; k < d->count; k++) {
        uint32_t c;
        bool unique;
        do {
            /* A client retrying an earlier transfer, maybe through another
             * gateway, reuses its gtid. */
            c = (w->catalog_count > 0 && chance(w, 150)) ? (uint32_t)below(w, w->catalog_count)
                                                         : catalog_new(w);
            unique = true;
            for (uint32_t j = 0; j < k; j++) unique &= d->cat[j] != c;
        } while (!unique);
        d->cat[k] = c;
        d->xs[k] = XS_NONE;
    }
    w->r->jobs++;
    PC_ASSERT(phase_start(w, di, PH_A));
}

/* Phase B's answer is the decision. No answer, or wrong_unit (stale
 * routing: applied nowhere), leaves it unknown: the payee's recovery asks. */
static uint8_t payer_decision(xs_world_t *w, uint32_t r) {
    if (r == XS_OPEN || r == R(wrong_unit)) return XS_NONE;
    if (result_ok(r)) {
        w->r->driver_commits++;
        return XS_COMMIT;
    }
    w->r->driver_aborts++;
    return XS_ABORT;
}

/* A payee refused a decision: possible only when a unit lost state or a
 * decision was made twice (job.c logs it as impossible). */
static void payee_disagrees(xs_world_t *w, pc_u128 gtid, uint32_t result, const char *whose) {
    PC_ASSERT(result != XS_OPEN && !result_ok(result));
    char id[48];
    const char *name = pc_transfer_result_name(result);
    say(w, "payee refused %s decision on gtid %s: %s", whose, pc_u128_format(gtid, id),
        name != NULL ? name : "?");
    w->r->payee_disagreed++;
}

/* The result of one event in the phase just ended, as job.c's after_*. */
static void event_after(xs_world_t *w, xs_driver_t *d, uint32_t k) {
    const pc_transfer_t *t = &w->catalog[d->cat[k]];
    uint32_t r = d->res[k];
    switch (d->phase) {
    case PH_A:
        if (!is_cross(w, t)) break;
        if (result_ok(r)) d->xs[k] = XS_PAYEE_OK;
        else if (r != XS_OPEN) d->xs[k] = XS_PAYEE_REFUSED;
        break;
    case PH_B:
        /* The planted bug's commit: the payee took nothing, so the driver
         * resolves nothing there either. */
        if (d->xs[k] == XS_PAYEE_REFUSED) d->xs[k] = XS_NONE;
        else d->xs[k] = payer_decision(w, r);
        break;
    case PH_C:
        if (result_ok(r)) d->xs[k] = XS_RESOLVED;
        else if (r != XS_OPEN) payee_disagrees(w, t->id, r, "a driver's");
        break;
    default: PC_ASSERT(!"event_after in no phase");
    }
}

/* The phase's answers are in (or given up on): the next phase with events,
 * or the job is done. */
static void phase_after(xs_world_t *w, uint32_t di) {
    xs_driver_t *d = &w->drivers[di];
    PC_ASSERT(d->phase >= PH_A && d->phase <= PH_C);
    for (uint32_t k = 0; k < d->count; k++) {
        if (d->in_step[k]) event_after(w, d, k);
    }
    uint32_t next = d->phase + 1;
    while (next <= PH_C && !phase_start(w, di, next)) next++;
    if (next > PH_C) driver_stop(w, di);
}

static void driver_on_reply(xs_world_t *w, const xs_packet_t *p) {
    xs_driver_t *d = &w->drivers[p->owner];
    if (d->phase == PH_IDLE || p->tag != driver_tag(d)) return; /* stale, or crashed since */
    for (uint32_t e = 0; e < p->count; e++) {
        pc_u128 gtid = packet_gtid(p, e);
        for (uint32_t k = 0; k < d->count; k++) {
            if (d->in_step[k] && d->res[k] == XS_OPEN && w->catalog[d->cat[k]].id == gtid) {
                d->res[k] = p->results[e];
            }
        }
    }
    for (uint32_t k = 0; k < d->count; k++) {
        if (d->in_step[k] && d->res[k] == XS_OPEN) return;
    }
    phase_after(w, p->owner);
}

/* Per tick: start jobs, retry or give up on unanswered steps, crash. */
static void driver_tick(xs_world_t *w, uint32_t di) {
    xs_driver_t *d = &w->drivers[di];
    if (d->phase == PH_IDLE) {
        if (w->faults && w->tick >= d->idle_until) job_start(w, di);
        return;
    }
    if (w->faults && chance(w, 5)) {
        say(w, "driver %u crashes in phase %u", di, d->phase);
        w->r->driver_crashes++;
        driver_stop(w, di);
        return;
    }
    if (w->tick < d->sent_tick + XS_STEP_TIMEOUT_TICKS) return;
    /* No answer (a lost request or reply): retry the same step, or give up
     * on it as a transport error, or abandon the whole job. */
    if (d->retries < XS_STEP_RETRIES_MAX && !chance(w, 200)) {
        d->retries++;
        w->r->step_retries++;
        step_send(w, di);
        return;
    }
    if (chance(w, 300)) {
        say(w, "driver %u abandons its job in phase %u", di, d->phase);
        w->r->driver_give_ups++;
        driver_stop(w, di);
        return;
    }
    phase_after(w, di);
}

/* ---- recovery (xts_recovery.c, the payee side) ---- */

/* This unit's undecided legs tried more than the grace ago and past their
 * timeout, oldest first. The listing is local (a read of the own ledger). */
static uint32_t recovery_list(xs_world_t *w, uint32_t ui, pc_transfer_t *legs) {
    uint64_t now = unit_now(w, ui);
    pc_account_filter_t filter;
    memset(&filter, 0, sizeof filter);
    filter.flags = PC_FILTER_XTS_TRYING;
    filter.limit = XS_EVENTS_MAX;
    filter.timestamp_max = now - XS_RECOVERY_GRACE_NS;
    pc_transfer_t listed[XS_EVENTS_MAX];
    int n = pc_ledger_xts_legs(w->units[ui].ledger, &filter, listed);
    PC_ASSERT(n >= 0 && n <= (int)XS_EVENTS_MAX);
    uint32_t m = 0;
    for (int i = 0; i < n; i++) {
        const pc_transfer_t *t = &listed[i];
        bool ordered = i == 0 || t->timestamp > listed[i - 1].timestamp;
        if (t->flags != PC_TRANSFER_pending || t->timestamp == 0 || !ordered ||
            t->timestamp > filter.timestamp_max || unit_of(w, t->credit_account_id) != ui ||
            unit_of(w, t->debit_account_id) == ui) {
            fail(w, "unit %u lists a trying leg out of order, out of range or not its payee's",
                 ui);
            return 0;
        }
        if (t->timestamp + (uint64_t)t->timeout * 1000000000ull <= now) legs[m++] = *t;
    }
    return m;
}

/* One round at a unit: per payer unit, one xts_resolve(abort) batch naming
 * each leg by its digest; recovery_on_reply applies the answers. */
static void recovery_round(xs_world_t *w, uint32_t ui) {
    pc_transfer_t legs[XS_EVENTS_MAX];
    uint32_t n = recovery_list(w, ui, legs);
    PC_ASSERT(n <= XS_EVENTS_MAX);
    for (uint32_t payer = 0; payer < w->units_count; payer++) {
        pc_xts_decision_t batch[XS_EVENTS_MAX];
        uint32_t m = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (unit_of(w, legs[i].debit_account_id) != payer) continue;
            memset(&batch[m], 0, sizeof batch[m]);
            batch[m].gtid = legs[i].id;
            batch[m].flags = FLAG_VOID;
            batch[m].leg = pc_xts_leg_digest(&legs[i]);
            m++;
        }
        if (m == 0) continue;
        w->r->recovery_deliveries += m;
        request_send(w, payer, PC_OP_xts_resolve, OWNER_RECOVERY, ui, 0, batch, m);
    }
}

/* The own unit's answer to a resolve must confirm it; the payer's answer
 * becomes the own leg's resolution (anything else waits for a round). */
static void recovery_on_reply(xs_world_t *w, const xs_packet_t *p) {
    PC_ASSERT(p->op == PC_OP_xts_resolve && p->owner < w->units_count);
    bool own = p->unit == p->owner;
    pc_xts_decision_t decided[XS_EVENTS_MAX];
    uint32_t m = 0;
    for (uint32_t k = 0; k < p->count; k++) {
        uint32_t r = p->results[k];
        if (own) {
            if (!result_ok(r)) payee_disagrees(w, p->body.decisions[k].gtid, r, "its recovery's");
            continue;
        }
        uint16_t flags = 0;
        if (r == R(xts_committed)) flags = FLAG_POST;
        else if (result_ok(r) || r == R(xts_aborted)) flags = FLAG_VOID;
        if (flags == 0) continue;
        memset(&decided[m], 0, sizeof decided[m]);
        decided[m].gtid = p->body.decisions[k].gtid;
        decided[m++].flags = flags;
    }
    if (m > 0) request_send(w, p->owner, PC_OP_xts_resolve, OWNER_RECOVERY, p->owner, 0,
                            decided, m);
}

/* ---- delivery ---- */

static void deliver(xs_world_t *w, xs_packet_t *p) {
    if (p->kind == PKT_REPLY) {
        if (p->owner_kind == OWNER_DRIVER) driver_on_reply(w, p);
        else if (p->owner_kind == OWNER_RECOVERY) recovery_on_reply(w, p);
        return;
    }
    xs_packet_t reply = *p;
    reply.kind = PKT_REPLY;
    unit_apply(w, p->unit, (pc_operation_t)p->op, &p->body, p->count, reply.results);
    if (p->owner_kind != OWNER_NONE) packet_send(w, &reply);
}

/* Delivers every packet due by now, oldest (tick, then send order) first. */
static void network_tick(xs_world_t *w) {
    for (;;) {
        uint32_t best = XS_PACKETS_MAX;
        for (uint32_t i = 0; i < XS_PACKETS_MAX; i++) {
            const xs_packet_t *p = &w->packets[i];
            if (!p->used || p->deliver_tick > w->tick) continue;
            if (best == XS_PACKETS_MAX || p->deliver_tick < w->packets[best].deliver_tick ||
                (p->deliver_tick == w->packets[best].deliver_tick &&
                 p->seq < w->packets[best].seq)) {
                best = i;
            }
        }
        if (best == XS_PACKETS_MAX) return;
        xs_packet_t p = w->packets[best];
        w->packets[best].used = false;
        deliver(w, &p);
    }
}

static uint32_t packets_in_flight(const xs_world_t *w) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < XS_PACKETS_MAX; i++) n += w->packets[i].used;
    return n;
}

/* ---- setup ---- */

static pc_u128 account_id_in(xs_world_t *w, uint32_t unit) {
    for (;;) {
        uint32_t bucket = (uint32_t)below(w, PC_ROUTING_BUCKETS);
        if (w->bucket_unit[bucket] != unit) continue;
        pc_u128 id = (pc_u128)(1 + below(w, 1ull << 40)) * 100u + bucket;
        bool unique = true;
        for (uint32_t i = 0; i < w->accounts_count; i++) unique &= w->accounts[i].id != id;
        if (unique) return id;
    }
}

static void setup_routing(xs_world_t *w) {
    for (uint32_t b = 0; b < PC_ROUTING_BUCKETS; b++) {
        w->bucket_unit[b] = (uint8_t)(b < w->units_count ? b : below(w, w->units_count));
    }
    for (uint32_t u = 0; u < w->units_count; u++) {
        pc_routing_t routing;
        memset(&routing, 0, sizeof routing);
        routing.epoch = 1;
        for (uint32_t b = 0; b < PC_ROUTING_BUCKETS; b++) {
            if (w->bucket_unit[b] == u) routing.buckets[b / 64] |= 1ull << (b % 64);
        }
        uint32_t res[1];
        unit_apply(w, u, PC_OP_set_routing, &routing, 1, res);
        PC_ASSERT(res[0] == 0);
    }
}

/* Per unit and ledger: a funding account (no limits), users of which some
 * may not go below zero (funded from the funding account), and ids that are
 * never created. */
static void setup_accounts(xs_world_t *w) {
    for (uint32_t u = 0; u < w->units_count; u++) {
        for (uint32_t l = 1; l <= w->ledgers_count; l++) {
            uint32_t users = 2 + (uint32_t)below(w, 2);
            for (uint32_t k = 0; k < users + 2; k++) {
                PC_ASSERT(w->accounts_count < XS_ACCOUNTS_MAX);
                xs_account_t *a = &w->accounts[w->accounts_count];
                a->id = account_id_in(w, u);
                w->accounts_count++;
                a->unit = u;
                a->ledger = l;
                a->funding = k == 0;
                a->exists = k <= users;
                a->limited = !a->funding && a->exists && chance(w, 600);
                if (!a->exists) continue;
                pc_account_t acc;
                memset(&acc, 0, sizeof acc);
                acc.id = a->id;
                acc.ledger = l;
                acc.code = 1;
                if (a->limited) acc.flags = PC_ACCOUNT_debits_must_not_exceed_credits;
                uint32_t res[1];
                unit_apply(w, u, PC_OP_create_accounts, &acc, 1, res);
                PC_ASSERT(res[0] == 0);
            }
        }
    }
    for (uint32_t i = 0; i < w->accounts_count; i++) {
        const xs_account_t *a = &w->accounts[i];
        if (!a->limited) continue;
        const xs_account_t *f = NULL;
        for (uint32_t j = 0; j < w->accounts_count && f == NULL; j++) {
            const xs_account_t *b = &w->accounts[j];
            if (b->funding && b->unit == a->unit && b->ledger == a->ledger) f = b;
        }
        PC_ASSERT(f != NULL);
        pc_transfer_t t;
        memset(&t, 0, sizeof t);
        t.id = ((pc_u128)1 << 50) + i;
        t.debit_account_id = f->id;
        t.credit_account_id = a->id;
        t.amount = 100 + below(w, 900);
        t.ledger = a->ledger;
        t.code = 1;
        uint32_t res[1];
        unit_apply(w, a->unit, PC_OP_create_transfers, &t, 1, res);
        PC_ASSERT(res[0] == 0);
    }
}

/* ---- final checks ---- */

/* What a unit's store says about a gtid: the payer's posted record, the
 * payee's leg, its post or void, a tombstone of an abort. */
enum { ST_PAYER = 1, ST_LEG = 2, ST_POST = 4, ST_VOID = 8, ST_TOMB = 16 };

/* The final checks' scratch: per unit and gtid the store's state, per gtid
 * the digests of the payer's record and the payee's leg, and the reference
 * model of every account's and clearing account's posted balances. */
typedef struct xs_final {
    uint8_t state[XS_UNITS_MAX][XS_CATALOG_MAX];
    uint64_t payer_digest[XS_CATALOG_MAX], payee_digest[XS_CATALOG_MAX];
    pc_u128 expected[XS_ACCOUNTS_MAX][2];                   /* debits, credits posted */
    pc_u128 clearing[XS_UNITS_MAX][XS_LEDGERS_MAX + 1][2]; /* debits, credits posted */
} xs_final_t;

/* Nothing in flight, no payee leg undecided, no local pending transfer
 * left to expire. */
static bool drained(xs_world_t *w) {
    if (packets_in_flight(w) > 0) return false;
    for (uint32_t u = 0; u < w->units_count; u++) {
        pc_account_filter_t filter;
        memset(&filter, 0, sizeof filter);
        filter.limit = 1;
        filter.flags = PC_FILTER_XTS_TRYING;
        pc_transfer_t one;
        if (pc_ledger_xts_legs(w->units[u].ledger, &filter, &one) != 0) return false;
        if (pc_ledger_next_expiry(w->units[u].ledger) != UINT64_MAX) return false;
    }
    return true;
}

static int32_t account_index(const xs_world_t *w, pc_u128 id) {
    for (uint32_t i = 0; i < w->accounts_count; i++) {
        if (w->accounts[i].id == id) return (int32_t)i;
    }
    return -1;
}

/* A posted transfer into the model: both accounts' posted balances. */
static void model_post(xs_world_t *w, xs_final_t *f, const pc_transfer_t *t) {
    int32_t dr = account_index(w, t->debit_account_id);
    int32_t cr = account_index(w, t->credit_account_id);
    PC_ASSERT(dr >= 0 && cr >= 0);
    f->expected[dr][0] += t->amount;
    f->expected[cr][1] += t->amount;
}

/* A local slot: posted (flags 0) into the model; a pending one (left to
 * expire) and a failure's tombstone move nothing. */
static void scan_local(xs_world_t *w, xs_final_t *f, uint32_t u, uint64_t loc,
                       const pc_transfer_t *t) {
    PC_ASSERT(!(t->flags & PC_SLOT_XTS));
    if (t->flags & PC_SLOT_FAILED) return;
    if (t->flags == 0) {
        model_post(w, f, t);
    } else if (t->flags != PC_TRANSFER_pending) {
        fail(w, "unit %u slot %llu: a local transfer with flags %u", u, (unsigned long long)loc,
             t->flags);
    }
}

/* Whether a stored xts record is catalog transfer c as a driver sent it:
 * the catalog leaves the timeout out, which each driver sets its own way. */
static bool as_sent(const xs_world_t *w, uint32_t c, const pc_transfer_t *t) {
    pc_transfer_t sent = w->catalog[c];
    PC_ASSERT(sent.timeout == 0 && sent.flags == 0);
    sent.timeout = t->timeout;
    return t->timeout != 0 && pc_xts_leg_digest(t) == pc_xts_leg_digest(&sent);
}

/* The payer's posted record: the decision, as the client sent it, in the
 * debit account's unit; into the model on both sides, the clearing
 * accounts included. */
static void scan_payer(xs_world_t *w, xs_final_t *f, uint32_t u, uint32_t c,
                       const pc_transfer_t *t) {
    uint32_t q = unit_of(w, t->credit_account_id);
    if (u != unit_of(w, w->catalog[c].debit_account_id) || q == u) {
        fail(w, "unit %u holds a payer record it is not the payer of", u);
    } else if (!as_sent(w, c, t)) {
        fail(w, "unit %u: a payer record differs from the transfer sent", u);
    } else if (f->state[u][c] & ST_PAYER) {
        fail(w, "unit %u holds two payer records of one gtid", u);
    }
    f->state[u][c] |= ST_PAYER;
    f->payer_digest[c] = pc_xts_leg_digest(t);
    model_post(w, f, t);
    f->clearing[u][t->ledger][1] += t->amount;
    f->clearing[q][t->ledger][0] += t->amount;
}

/* An xts slot of catalog gtid c in unit u, by its exact flags (ledger.h). */
static void scan_xts(xs_world_t *w, xs_final_t *f, uint32_t u, uint32_t c,
                     const pc_transfer_t *t) {
    const uint16_t payee = PC_SLOT_XTS | PC_SLOT_XTS_PAYEE;
    bool payee_unit = u == unit_of(w, w->catalog[c].credit_account_id);
    if (t->flags == PC_SLOT_XTS) {
        scan_payer(w, f, u, c, t);
    } else if (t->flags == (PC_SLOT_FAILED | PC_SLOT_XTS | FLAG_VOID)) {
        f->state[u][c] |= ST_TOMB;
    } else if (!payee_unit) {
        fail(w, "unit %u holds a payee slot (flags %u) of a gtid it is not the payee of", u,
             t->flags);
    } else if (t->flags == (PC_TRANSFER_pending | payee)) {
        if (!as_sent(w, c, t)) fail(w, "unit %u: a payee leg differs from the transfer sent", u);
        f->state[u][c] |= ST_LEG;
        f->payee_digest[c] = pc_xts_leg_digest(t);
    } else if ((t->flags == (FLAG_POST | payee) || t->flags == (FLAG_VOID | payee)) &&
               t->pending_id == t->id) {
        f->state[u][c] |= t->flags & FLAG_POST ? ST_POST : ST_VOID;
    } else {
        fail(w, "unit %u holds an xts slot of no known kind (flags %u)", u, t->flags);
    }
}

/* What each unit's store says about each catalog gtid; posted local
 * transfers and the payers' posted records into the reference model. */
static void stores_scan(xs_world_t *w, xs_final_t *f) {
    for (uint32_t u = 0; u < w->units_count; u++) {
        const xs_unit_t *unit = &w->units[u];
        for (uint64_t loc = 0; loc < unit->store_count; loc++) {
            const pc_transfer_t *t = &unit->store[loc].transfer;
            if (!(t->flags & PC_SLOT_XTS)) {
                scan_local(w, f, u, loc, t);
                continue;
            }
            uint32_t c = catalog_index(w, t->id);
            if (c == UINT32_MAX || !is_cross(w, &w->catalog[c])) {
                fail(w, "unit %u holds an xts slot of a gtid no cross-unit transfer has", u);
                continue;
            }
            scan_xts(w, f, u, c, t);
        }
    }
}

/* One gtid's end: decided once on each side, and the same way: the payee's
 * leg posted exactly when the payer holds its posted record of the very
 * transfer the leg is. */
static void atomicity_one(xs_world_t *w, const xs_final_t *f, uint32_t c) {
    const pc_transfer_t *t = &w->catalog[c];
    uint32_t p = unit_of(w, t->debit_account_id), q = unit_of(w, t->credit_account_id);
    PC_ASSERT(p != q);
    uint8_t sp = f->state[p][c], sq = f->state[q][c];
    bool committed = sp & ST_PAYER, posted = sq & ST_POST;
    char id[48];
    pc_u128_format(t->id, id);
    if (committed && (sp & ST_TOMB)) fail(w, "gtid %s: payer committed and aborted", id);
    if ((sq & ST_LEG) && !(sq & (ST_POST | ST_VOID))) {
        fail(w, "gtid %s: payee leg undecided (the payer %s)", id,
             committed ? "committed" : "did not commit");
        return;
    }
    if ((sq & ST_POST) && (sq & (ST_VOID | ST_TOMB))) {
        fail(w, "gtid %s: payee leg posted and voided", id);
    }
    if ((sq & (ST_POST | ST_VOID)) && !(sq & ST_LEG)) {
        fail(w, "gtid %s: a payee resolution without a leg", id);
    }
    if (committed != posted) {
        fail(w, "gtid %s: atomicity: payer (unit %u) %s, payee (unit %u) %s", id, p,
             committed ? "committed" : "did not commit", q,
             posted ? "posted" : (sq & ST_VOID) ? "voided" : "has no leg");
    } else if (committed && f->payer_digest[c] != f->payee_digest[c]) {
        fail(w, "gtid %s: payer posted another transfer than the payee's leg", id);
    }
    if (committed) w->r->committed++;
    else if (sq & ST_VOID) w->r->aborted++;
}

static void atomicity_check(xs_world_t *w, const xs_final_t *f) {
    for (uint32_t c = 0; c < w->catalog_count; c++) {
        if (is_cross(w, &w->catalog[c])) atomicity_one(w, f, c);
    }
}

static void balances_check(xs_world_t *w, const xs_final_t *f) {
    char a[48], b[48];
    for (uint32_t i = 0; i < w->accounts_count; i++) {
        const xs_account_t *x = &w->accounts[i];
        if (!x->exists) continue;
        pc_account_t acc;
        if (pc_ledger_lookup_accounts(w->units[x->unit].ledger, &x->id, 1, &acc) != 1) {
            fail(w, "account %s missing in unit %u", pc_u128_format(x->id, a), x->unit);
            continue;
        }
        if (acc.debits_pending != 0 || acc.credits_pending != 0) {
            fail(w, "account %s still has pending amounts", pc_u128_format(x->id, a));
        }
        if (acc.debits_posted != f->expected[i][0] || acc.credits_posted != f->expected[i][1]) {
            char c[48], d[48], e[48];
            fail(w, "account %s (unit %u): posted debits %s credits %s, the model built from "
                    "the payers' records says %s %s",
                 pc_u128_format(x->id, a), x->unit, pc_u128_format(acc.debits_posted, b),
                 pc_u128_format(acc.credits_posted, c), pc_u128_format(f->expected[i][0], d),
                 pc_u128_format(f->expected[i][1], e));
        }
    }
    for (uint32_t u = 0; u < w->units_count; u++) {
        for (uint32_t l = 1; l <= w->ledgers_count; l++) {
            pc_u128 id = PC_CLEARING_ACCOUNT_ID(l);
            pc_account_t acc;
            memset(&acc, 0, sizeof acc);
            (void)pc_ledger_lookup_accounts(w->units[u].ledger, &id, 1, &acc);
            if (acc.debits_posted != f->clearing[u][l][0] ||
                acc.credits_posted != f->clearing[u][l][1] || acc.debits_pending != 0 ||
                acc.credits_pending != 0) {
                fail(w, "unit %u clearing account of ledger %u differs from the model", u, l);
            }
        }
    }
}

/* Nothing pending, nothing undecided, clearing cancels across units. */
static void totals_check(xs_world_t *w) {
    pc_u128 sum[XS_LEDGERS_MAX + 1][2];
    memset(sum, 0, sizeof sum);
    for (uint32_t u = 0; u < w->units_count; u++) {
        pc_totals_t t[8];
        uint32_t n = pc_ledger_xts_totals(w->units[u].ledger, false, t, PC_ARRAY_LEN(t));
        PC_ASSERT(n <= PC_ARRAY_LEN(t));
        for (uint32_t k = 0; k < n; k++) {
            PC_ASSERT(t[k].ledger >= 1 && t[k].ledger <= XS_LEDGERS_MAX);
            if (t[k].debits_pending != 0 || t[k].credits_pending != 0) {
                fail(w, "unit %u ledger %u: pending amounts remain", u, t[k].ledger);
            }
            if (t[k].xts_trying != 0) {
                fail(w, "unit %u ledger %u: %llu legs still trying", u, t[k].ledger,
                     (unsigned long long)t[k].xts_trying);
            }
            sum[t[k].ledger][0] += t[k].clearing_debits_posted;
            sum[t[k].ledger][1] += t[k].clearing_credits_posted;
        }
    }
    for (uint32_t l = 1; l <= XS_LEDGERS_MAX; l++) {
        if (sum[l][0] != sum[l][1]) fail(w, "ledger %u: clearing accounts do not cancel", l);
    }
}

/* Atomicity and balances first: their failures name the gtid or account. */
static void final_check(xs_world_t *w) {
    xs_final_t *f = calloc(1, sizeof *f);
    PC_ASSERT(f != NULL);
    stores_scan(w, f);
    atomicity_check(w, f);
    balances_check(w, f);
    totals_check(w);
    /* A payee refuses a decision only when a unit lost state or decided on
     * its own (job.c logs it as impossible); outside tight runs the config
     * must never reach a table's bound. */
    if (w->r->payee_disagreed > 0) {
        fail(w, "payee units refused %llu delivered decisions",
             (unsigned long long)w->r->payee_disagreed);
    }
    if (!w->tight && w->r->capacity_hits > 0) {
        fail(w, "a ledger table filled up %llu times (simulator config too small)",
             (unsigned long long)w->r->capacity_hits);
    }
    free(f);
}

/* ---- the run ---- */

static void tick_run(xs_world_t *w) {
    network_tick(w);
    for (uint32_t d = 0; d < XS_DRIVERS; d++) driver_tick(w, d);
    for (uint32_t u = 0; u < w->units_count; u++) {
        xs_unit_t *unit = &w->units[u];
        unit_expire(w, u);
        if (chance(w, 10)) unit_checkpoint(unit);
        if ((w->tick + unit->recovery_phase) % XS_RECOVERY_PERIOD_TICKS == 0) {
            recovery_round(w, u);
        }
        if (w->faults && chance(w, 2)) unit_restart(w, u);
    }
    if (w->faults && w->replays_count > 0 && chance(w, 30)) {
        /* A stale step: an old try or resolve, long after its time. */
        w->r->stale_replays++;
        packet_send(w, &w->replays[below(w, w->replays_count)]);
    }
}

static void world_free(xs_world_t *w) {
    for (uint32_t u = 0; u < XS_UNITS_MAX; u++) {
        pc_ledger_deinit(w->units[u].ledger);
        free(w->units[u].store);
        free(w->units[u].checkpoint);
        free(w->units[u].log);
    }
    free(w->packets);
    free(w);
}

/* Draws the world's shape from the seed and sets up the units: routing,
 * accounts, funding, a first checkpoint. */
static int world_new(const pc_xts_sim_options_t *options, pc_xts_sim_result_t *result,
                     xs_world_t **out) {
    xs_world_t *w = calloc(1, sizeof *w);
    if (w == NULL) return PC_ENOMEM;
    w->o = options;
    w->r = result;
    w->log = options->log ? options->log : stderr;
    w->packets = calloc(XS_PACKETS_MAX, sizeof *w->packets);
    pc_prng_init(&w->prng, options->seed);
    w->units_count = 2 + (uint32_t)below(w, 2);
    w->ledgers_count = 1 + (uint32_t)below(w, XS_LEDGERS_MAX);
    w->loss_pct = 2 + (uint32_t)below(w, 12);
    w->dup_pct = (uint32_t)below(w, 8);
    w->long_delay_pct = 1 + (uint32_t)below(w, 6);
    w->tight = chance(w, 250);
    w->config = (pc_ledger_config_t){.accounts_max = 64, .transfers_max = 16384,
                                     .pending_max = 1024};
    if (w->tight) {
        w->config.transfers_max = 120 + below(w, 600);
        w->config.pending_max = 8 + (uint32_t)below(w, 24);
    }
    result->tight = w->tight;
    for (uint32_t u = 0; u < w->units_count; u++) {
        xs_unit_t *unit = &w->units[u];
        unit->store_cap = 256;
        unit->store = malloc(unit->store_cap * sizeof *unit->store);
        if (w->packets == NULL || unit->store == NULL ||
            unit_ledger_init(w, &unit->ledger) != PC_OK) {
            world_free(w);
            return PC_ENOMEM;
        }
        unit->skew_ns = below(w, 50 * 1000 * 1000);
        unit->recovery_phase = below(w, XS_RECOVERY_PERIOD_TICKS);
    }
    for (uint32_t d = 0; d < XS_DRIVERS; d++) {
        w->drivers[d].timeout_s = 1 + (uint32_t)below(w, 3);
        w->drivers[d].idle_until = below(w, 10);
    }
    result->units = w->units_count;
    setup_routing(w);
    setup_accounts(w);
    for (uint32_t u = 0; u < w->units_count; u++) unit_checkpoint(&w->units[u]);
    say(w, "units=%u ledgers=%u accounts=%u loss=%u%% dup=%u%% long_delay=%u%%%s",
        w->units_count, w->ledgers_count, w->accounts_count, w->loss_pct, w->dup_pct,
        w->long_delay_pct, w->tight ? " tight" : "");
    *out = w;
    return PC_OK;
}

/* Heal: no faults, the drivers stop, and recovery must decide every payee
 * leg within a bound. Returns false (with the reason in liveness) when it
 * did not. */
static bool heal_run(xs_world_t *w, char *liveness, size_t size) {
    w->faults = false;
    for (uint32_t d = 0; d < XS_DRIVERS; d++) {
        if (w->drivers[d].phase != PH_IDLE) driver_stop(w, d);
    }
    uint64_t heal_end = w->tick + XS_HEAL_TICKS_MAX;
    while (w->r->ok && !drained(w) && w->tick < heal_end) {
        tick_run(w);
        w->tick++;
    }
    if (!w->r->ok || drained(w)) return true;
    uint64_t open = 0;
    for (uint32_t u = 0; u < w->units_count; u++) {
        pc_totals_t t[8];
        uint32_t n = pc_ledger_xts_totals(w->units[u].ledger, false, t, PC_ARRAY_LEN(t));
        for (uint32_t k = 0; k < n && k < PC_ARRAY_LEN(t); k++) open += t[k].xts_trying;
    }
    snprintf(liveness, size,
             "tick %llu: liveness: %llu payee legs undecided after %u heal ticks "
             "(%u packets in flight)",
             (unsigned long long)w->tick, (unsigned long long)open, XS_HEAL_TICKS_MAX,
             packets_in_flight(w));
    return false;
}

int pc_xts_sim_run(const pc_xts_sim_options_t *options, pc_xts_sim_result_t *result) {
    PC_ASSERT(options != NULL && result != NULL);
    memset(result, 0, sizeof *result);
    result->ok = true;
    xs_world_t *w = NULL;
    int rc = world_new(options, result, &w);
    if (rc != PC_OK) return rc;
    w->faults = true;
    for (; w->tick < XS_FAULT_TICKS && result->ok; w->tick++) tick_run(w);
    char liveness[sizeof result->failure];
    bool live = heal_run(w, liveness, sizeof liveness);
    /* The balances and atomicity checks name a gtid: they run even when the
     * run did not drain, and their failure comes first. */
    if (result->ok) final_check(w);
    if (result->ok && !live) {
        result->ok = false;
        memcpy(result->failure, liveness, sizeof liveness);
    }
    result->ticks = w->tick;
    result->transfers = w->catalog_count;
    for (uint32_t u = 0; u < w->units_count; u++) {
        pc_u128 c = pc_ledger_state_checksum(w->units[u].ledger);
        result->digest = (uint64_t)pc_checksum(&c, sizeof c, result->digest);
    }
    world_free(w);
    PC_ASSERT(result->ok || result->failure[0] != 0);
    return PC_OK;
}
