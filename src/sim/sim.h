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

#endif /* PC_SIM_H */
