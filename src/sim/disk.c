/*
 * disk.c — a replica's simulated disk: a journal ring (op % journal_slots),
 * its redundant header ring (a header-only copy of each slot, written with
 * the prepare), a superblock (view, log_view, head), the last durable
 * state-machine checkpoint (see sim_checkpoint_t) and a FIFO queue of
 * writes that become
 * durable after a delay. A crash drops every queued write; writes complete
 * in order, so a replica never holds op n durably without every write it
 * issued before. The faults (torn writes at a crash, bit flips at rest,
 * misdirected writes, on any entry, committed or not) are applied by sim.c,
 * only to the seed's faulty-disk replicas, never to the last intact copy of
 * an entry, and to at most one of a slot's two copies of its last durable
 * write (see may_damage_prepare / may_damage_ring in sim.c). The superblock
 * is not damaged: production keeps redundant copies of it (storage/), which
 * the simulator assumes.
 */
#include <stdlib.h>
#include <string.h>

#include "sim_int.h"

int pc__sim_disk_init(sim_disk_t *d, pc_u128 cluster) {
    PC_ASSERT(d != NULL);
    memset(d, 0, sizeof *d);
    d->queue = calloc(SIM_DISK_QUEUE_MAX, sizeof *d->queue);
    if (!d->queue) return PC_ENOMEM;
    pc_vsr_root(cluster, &d->sb_head);
    PC_ASSERT(d->sb_view == 0 && d->queue_count == 0);
    return PC_OK;
}

void pc__sim_disk_deinit(sim_disk_t *d) {
    PC_ASSERT(d != NULL);
    free(d->queue);
    d->queue = NULL;
    pc__sim_checkpoint_free(&d->checkpoint);
    PC_ASSERT(d->queue == NULL);
}
