/*
 * network.c — the simulated network's packet store: a fixed pool of packets
 * and a binary heap ordered by (delivery tick, send sequence). Random delays
 * reorder packets; the sequence number breaks ties so that the order is a
 * pure function of the seed. Loss, duplication and partitions are decided by
 * the sender side in sim.c; this file only stores and orders.
 */
#include <stdlib.h>
#include <string.h>

#include "sim_int.h"

int pc__sim_network_init(sim_network_t *n) {
    PC_ASSERT(n != NULL);
    memset(n, 0, sizeof *n);
    n->packets = malloc(SIM_PACKETS_MAX * sizeof *n->packets);
    n->free_list = malloc(SIM_PACKETS_MAX * sizeof *n->free_list);
    n->heap = malloc(SIM_PACKETS_MAX * sizeof *n->heap);
    if (!n->packets || !n->free_list || !n->heap) {
        pc__sim_network_deinit(n);
        return PC_ENOMEM;
    }
    for (uint32_t i = 0; i < SIM_PACKETS_MAX; i++) n->free_list[i] = SIM_PACKETS_MAX - 1 - i;
    n->free_count = SIM_PACKETS_MAX;
    PC_ASSERT(n->heap_count == 0);
    return PC_OK;
}

void pc__sim_network_deinit(sim_network_t *n) {
    PC_ASSERT(n != NULL);
    free(n->packets);
    free(n->free_list);
    free(n->heap);
    n->packets = NULL;
    PC_ASSERT(n->packets == NULL);
}

sim_packet_t *pc__sim_network_alloc(sim_network_t *n) {
    PC_ASSERT(n->free_count <= SIM_PACKETS_MAX);
    if (n->free_count == 0) return NULL;
    sim_packet_t *p = &n->packets[n->free_list[--n->free_count]];
    PC_ASSERT(p >= n->packets && p < n->packets + SIM_PACKETS_MAX);
    return p;
}

void pc__sim_network_free(sim_network_t *n, sim_packet_t *p) {
    PC_ASSERT(p >= n->packets && p < n->packets + SIM_PACKETS_MAX);
    PC_ASSERT(n->free_count < SIM_PACKETS_MAX);
    n->free_list[n->free_count++] = (uint32_t)(p - n->packets);
}

static bool before(const sim_network_t *n, uint32_t a, uint32_t b) {
    PC_ASSERT(a < SIM_PACKETS_MAX && b < SIM_PACKETS_MAX);
    const sim_packet_t *pa = &n->packets[a], *pb = &n->packets[b];
    PC_ASSERT(pa != pb);
    if (pa->deliver_tick != pb->deliver_tick) return pa->deliver_tick < pb->deliver_tick;
    return pa->seq < pb->seq;
}

void pc__sim_network_push(sim_network_t *n, sim_packet_t *p) {
    PC_ASSERT(n->heap_count < SIM_PACKETS_MAX);
    p->seq = n->seq++;
    uint32_t i = n->heap_count++;
    n->heap[i] = (uint32_t)(p - n->packets);
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!before(n, n->heap[i], n->heap[parent])) break;
        uint32_t t = n->heap[i];
        n->heap[i] = n->heap[parent];
        n->heap[parent] = t;
        i = parent;
    }
    PC_ASSERT(n->heap_count + n->free_count <= SIM_PACKETS_MAX);
}

sim_packet_t *pc__sim_network_pop(sim_network_t *n, uint64_t tick) {
    PC_ASSERT(n != NULL);
    if (n->heap_count == 0 || n->packets[n->heap[0]].deliver_tick > tick) return NULL;
    uint32_t top = n->heap[0];
    n->heap[0] = n->heap[--n->heap_count];
    uint32_t i = 0;
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n->heap_count && before(n, n->heap[l], n->heap[m])) m = l;
        if (r < n->heap_count && before(n, n->heap[r], n->heap[m])) m = r;
        if (m == i) break;
        uint32_t t = n->heap[i];
        n->heap[i] = n->heap[m];
        n->heap[m] = t;
        i = m;
    }
    PC_ASSERT(top < SIM_PACKETS_MAX);
    return &n->packets[top];
}
