/*
 * sim.h — the deterministic simulator: one 3-replica unit (VSR over the real
 * ledger state machine) plus a few clients, a simulated network and
 * simulated disks, all in one process and driven by one 64-bit seed.
 *
 * Everything random — message loss, delay, duplication and reordering,
 * partitions, crashes and restarts, torn writes, bit flips, misdirected
 * writes, client think time, the journal ring size, a replica lagging so
 * far that it must state-sync — is drawn from one pc_prng seeded with the
 * seed, so a failing seed replays exactly. Checkers run after every step:
 * committed entries agree across replicas, every acknowledged request is in
 * the committed log at the op its reply named, state-machine checksums agree
 * at equal ops, no replica sees its applied log contradicted; after the
 * fault phase everything heals and the cluster must finish every client
 * request and converge within a bounded number of ticks (liveness).
 */
#ifndef PC_SIM_H
#define PC_SIM_H

#include <stdio.h>

#include "../base/base.h"

typedef struct pc_sim_options {
    uint64_t seed;
    uint64_t ticks;      /* fault phase; 0 = default (1500) */
    uint64_t heal_ticks; /* liveness bound after healing; 0 = default (4000) */
    bool faults_off;     /* a calm run: no faults at all (for tests) */
    /* Disk-fault profiles. faulty_disks 2: disk faults on two replicas of
     * every seed (default: one replica on two seeds in three). stress: a
     * faulty disk on every seed and ten times the bit-flip and misdirected-
     * write rates. */
    uint8_t faulty_disks;
    bool stress;
    bool verbose;        /* log every fault and view change to `log` */
    FILE *log;           /* NULL = stderr */
} pc_sim_options_t;

typedef struct pc_sim_result {
    bool ok;
    char failure[256]; /* the first checker that failed, with tick and details */
    uint64_t ticks;    /* ticks run */
    uint64_t ops_committed;
    uint64_t requests_acked;
    uint64_t requests_acked_before_heal; /* how much traffic met the faults */
    uint32_t view_max;
    uint32_t crashes, partitions, corruptions;
    uint32_t bitflips, misdirects; /* of the corruptions: damage at rest, misdirected writes */
    uint32_t uncommitted_hits; /* of those: hit an entry above every replica's commit */
    uint32_t checkpoints;   /* state-machine checkpoints taken (all replicas) */
    uint32_t sync_requests; /* state-sync copies sent on a replica's request */
    uint32_t syncs;         /* state syncs completed (pc_vsr_on_sync_done) */
} pc_sim_result_t;

/* Runs one seed to completion. Returns PC_OK (check result->ok) or
 * PC_ENOMEM. Deterministic: equal options give equal results. */
int pc_sim_run(const pc_sim_options_t *options, pc_sim_result_t *result);

/* ---- the XTS simulator (xts.c) ----
 *
 * Two or three units (real ledgers with split routing), gateways running
 * the cross-unit phases payee first (A: try at the payee; B: try at the
 * payer, the decision; C: resolve at the payee) over a lossy, duplicating,
 * reordering network, crashing drivers, late replays of old steps, unit
 * restarts from snapshots, and every unit's payee-side recovery loop (asks
 * the payer about its legs past their timeout); one 64-bit seed.
 * Conservation is checked after every applied batch; after the fault phase
 * recovery must decide every payee leg, and atomicity and every balance are
 * checked against a reference model built from the payers' records. */
typedef struct pc_xts_sim_options {
    uint64_t seed;
    bool verbose; /* log faults to `log` */
    FILE *log;    /* NULL = stderr */
} pc_xts_sim_options_t;

typedef struct pc_xts_sim_result {
    bool ok;
    char failure[256]; /* the first checker that failed, with tick and details */
    uint64_t ticks;
    uint32_t units;
    uint64_t digest;    /* over the units' final state checksums (replay check) */
    uint64_t batches;   /* batches applied, over all units */
    uint64_t jobs, transfers; /* driver jobs started; distinct gtids */
    uint64_t committed; /* cross-unit gtids the payer posted (and the payee posted) */
    uint64_t aborted;   /* cross-unit gtids whose payee leg was voided */
    uint64_t driver_commits, driver_aborts; /* decisions learned by drivers (phase B) */
    uint64_t expiries;  /* local pending transfers expired on idle ticks */
    uint64_t recovery_deliveries; /* payee legs the recovery loops asked payers about */
    uint64_t payee_disagreed; /* resolves a payee refused (never, without a bug) */
    uint64_t capacity_hits;   /* results saying a ledger table is full (never, by config) */
    uint64_t suspended_tries; /* tries refused xts_aborted (after an abort) */
    uint64_t late_decisions;  /* resolves answered xts_aborted / xts_committed */
    uint64_t messages_lost, messages_duplicated, stale_replays, step_retries;
    uint32_t driver_crashes, driver_give_ups, unit_restarts;
    uint64_t replayed_batches; /* logged batches replayed by restarts */
    bool tight;                /* small ledger tables: the capacity limits are reached */
} pc_xts_sim_result_t;

/* Runs one seed. Returns PC_OK (check result->ok) or PC_ENOMEM.
 * Deterministic: equal options give equal results. */
int pc_xts_sim_run(const pc_xts_sim_options_t *options, pc_xts_sim_result_t *result);

/* Test-only planted bug: a driver sends phase B (the payer's commit) even
 * when the payee's try was refused, and resolves nothing at the payee. The
 * atomicity and balance checkers must catch it. */
extern bool pc__xts_sim_bug_commit_without_payee;

#endif /* PC_SIM_H */
