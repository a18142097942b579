/*
 * sim.c — the simulated world: three VSR replicas over the real ledger,
 * a few clients, the network and the disks, stepped one tick at a time from
 * one seed; the fault schedule; and the checkers.
 *
 * A run has two phases. During the fault phase every fault kind the seed's
 * profile enables is injected at random. Then everything heals: crashed
 * replicas restart, partitions close, loss and duplication stop, disks stop
 * rotting. From then on the cluster must finish every client request and
 * bring every replica to the same commit within heal_ticks, or the seed
 * fails for liveness. Safety checkers run throughout.
 *
 * The shell side of checkpoints and state sync lives here too: every
 * journal_slots / 4 committed ops a replica's machine is checkpointed into
 * its simulated disk (durably, at once) and VSR is told; a restart restores
 * the machine from that checkpoint, loads the journal ring and starts VSR
 * at the checkpoint; a replica asking for sync gets a copy of the named
 * peer's durable checkpoint after a network delay (lost if either side is
 * down or the link is cut).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "sim_int.h"

typedef struct sim_client {
    pc_u128 id;
    uint64_t request; /* current request number (1 = create_accounts) */
    bool waiting;
    uint64_t sent_tick, next_tick;
    uint32_t view_guess;
    sim_request_t req;
} sim_client_t;

typedef struct sim_committed {
    pc_u128 checksum, client, state;
    uint64_t request;
} sim_committed_t;

typedef struct sim_world {
    pc_sim_options_t o;
    pc_sim_result_t *res;
    pc_prng_t prng;
    uint64_t tick;
    pc_u128 cluster;
    sim_network_t net;
    sim_disk_t *disks;
    pc_vsr_t *vsr[SIM_REPLICAS];
    sim_machine_t machines[SIM_REPLICAS];
    bool up[SIM_REPLICAS];
    uint64_t restart_tick[SIM_REPLICAS];
    pc_vsr_output_t *out;
    sim_client_t clients[SIM_CLIENTS];
    sim_committed_t committed[SIM_OPS_MAX];
    uint32_t slots; /* journal ring size of this seed */
    /* Laggard profile: one replica down or cut off from its peers for long
     * enough that it must catch up by state sync. */
    int laggard;
    bool laggard_crash;
    uint64_t laggard_start, laggard_end;
    /* Whether a restart also hands VSR the journal entries at or below the
     * checkpoint (production's shell does not; then the checkpoint's header
     * is often unknown after a restart). */
    bool load_below_checkpoint;
    /* Fault profile. */
    int faulty;  /* a replica whose disk may fail, or -1 */
    int faulty2; /* a second one (profile faulty_disks 2), or -1 */
    uint32_t crash_per_10k, partition_per_10k, bitflip_per_10k, misdirect_per_mille;
    bool torn;
    uint64_t partition_end;
    bool healed, stop;
    uint32_t seen_view[SIM_REPLICAS], seen_status[SIM_REPLICAS]; /* for the log */
} sim_world_t;

static void sim_log(sim_world_t *w, const char *fmt, ...) {
    PC_ASSERT(w != NULL && fmt != NULL);
    if (!w->o.verbose) return;
    FILE *f = w->o.log ? w->o.log : stderr;
    fprintf(f, "[%6llu] ", (unsigned long long)w->tick);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
}

static void fail(sim_world_t *w, const char *fmt, ...) {
    PC_ASSERT(fmt != NULL);
    PC_ASSERT(w->res != NULL);
    if (!w->res->ok) return; /* keep the first failure */
    w->res->ok = false;
    int n = snprintf(w->res->failure, sizeof w->res->failure, "tick %llu: ",
                     (unsigned long long)w->tick);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->res->failure + n, sizeof w->res->failure - (size_t)n, fmt, ap);
    va_end(ap);
    w->stop = true;
    sim_log(w, "FAIL %s", w->res->failure);
}

static bool chance(sim_world_t *w, uint32_t per, uint32_t scale) {
    PC_ASSERT(scale > 0);
    PC_ASSERT(per <= scale);
    return per > 0 && pc_prng_below(&w->prng, scale) < per;
}

static bool is_faulty(const sim_world_t *w, uint8_t i) {
    PC_ASSERT(i < SIM_REPLICAS);
    return (int)i == w->faulty || (int)i == w->faulty2;
}

/* ---- network ---- */

static bool lagging(const sim_world_t *w) {
    PC_ASSERT(w != NULL);
    return w->laggard >= 0 && !w->healed && w->tick >= w->laggard_start &&
           w->tick < w->laggard_end;
}

/* Allocates a packet from `from` to `to` unless the network loses it. */
static sim_packet_t *net_packet(sim_world_t *w, uint8_t kind, uint8_t from, uint8_t to) {
    PC_ASSERT(from < SIM_NODES && to < SIM_NODES);
    if (!w->healed && chance(w, w->net.loss_per_mille, 1000)) return NULL;
    if (from < SIM_REPLICAS && to < SIM_REPLICAS && w->net.link_down[from][to]) return NULL;
    if (from < SIM_REPLICAS && to < SIM_REPLICAS && lagging(w) && !w->laggard_crash &&
        (from == w->laggard || to == w->laggard))
        return NULL;
    sim_packet_t *p = pc__sim_network_alloc(&w->net);
    if (!p) return NULL;
    p->kind = kind;
    p->from = from;
    p->to = to;
    PC_ASSERT(p->kind == kind);
    return p;
}

/* Schedules a filled packet, maybe twice (duplication); random delays make
 * the network reorder. */
static void net_push(sim_world_t *w, sim_packet_t *p) {
    PC_ASSERT(p->from < SIM_NODES && p->to < SIM_NODES);
    PC_ASSERT(p != NULL && w->net.delay_max_ticks >= 1);
    p->deliver_tick = w->tick + 1 + pc_prng_below(&w->prng, w->net.delay_max_ticks);
    if (!w->healed && chance(w, w->net.duplicate_per_mille, 1000)) {
        sim_packet_t *d = pc__sim_network_alloc(&w->net);
        if (d) {
            memcpy(d, p, sizeof *d);
            d->deliver_tick = w->tick + 1 + pc_prng_below(&w->prng, w->net.delay_max_ticks);
            pc__sim_network_push(&w->net, d);
        }
    }
    pc__sim_network_push(&w->net, p);
}

/* ---- replicas ---- */

static void disk_enqueue(sim_world_t *w, uint8_t i, const sim_disk_write_t *src) {
    PC_ASSERT(i < SIM_REPLICAS && w->up[i]);
    sim_disk_t *d = &w->disks[i];
    PC_ASSERT(d->queue_count < SIM_DISK_QUEUE_MAX);
    uint64_t done = w->tick + 1 + pc_prng_below(&w->prng, 4);
    d->last_done_tick = PC_MAX(d->last_done_tick, done); /* FIFO completion */
    sim_disk_write_t *q = &d->queue[(d->queue_head + d->queue_count++) % SIM_DISK_QUEUE_MAX];
    *q = *src;
    q->done_tick = d->last_done_tick;
}

/* The state after op must equal the cluster's record of it. */
static void check_state(sim_world_t *w, uint8_t i, uint64_t op, const char *how) {
    PC_ASSERT(i < SIM_REPLICAS && op < SIM_OPS_MAX);
    const sim_committed_t *k = &w->committed[op];
    if (k->checksum != 0 && k->state != pc__sim_machine_checksum(&w->machines[i]))
        fail(w, "replica %u state checksum differs at op %llu after %s", i,
             (unsigned long long)op, how);
}

static void apply_commit(sim_world_t *w, uint8_t i, const pc_vsr_commit_out_t *c) {
    const pc_vsr_header_t *h = &c->header;
    PC_ASSERT(h->op > 0);
    if (h->op >= SIM_OPS_MAX) {
        fail(w, "op %llu beyond the world's record", (unsigned long long)h->op);
        return;
    }
    if (h->op != w->machines[i].op + 1) {
        fail(w, "replica %u applied op %llu after op %llu", i, (unsigned long long)h->op,
             (unsigned long long)w->machines[i].op);
        return;
    }
    sim_reply_t reply;
    bool answer = pc__sim_machine_apply(&w->machines[i], h, c->body, &reply);
    pc_u128 state = pc__sim_machine_checksum(&w->machines[i]);
    sim_committed_t *k = &w->committed[h->op];
    if (k->checksum == 0) {
        k->checksum = h->checksum;
        k->client = h->client;
        k->request = h->request;
        k->state = state;
    } else if (k->checksum != h->checksum) {
        fail(w, "replica %u committed a different entry at op %llu", i, (unsigned long long)h->op);
    } else if (k->state != state) {
        fail(w, "replica %u state checksum differs at op %llu", i, (unsigned long long)h->op);
    }
    if (h->op > w->res->ops_committed) w->res->ops_committed = h->op;
    if (!c->reply || !answer) return;
    uint8_t to = 0;
    for (uint8_t j = 0; j < SIM_CLIENTS; j++)
        if (w->clients[j].id == reply.client) to = (uint8_t)(SIM_REPLICAS + j);
    PC_ASSERT(to >= SIM_REPLICAS);
    sim_packet_t *p = net_packet(w, SIM_PACKET_REPLY, i, to);
    if (!p) return;
    p->u.reply = reply;
    pc_vsr_info_t info;
    pc_vsr_info(w->vsr[i], &info);
    p->u.reply.view = info.view;
    net_push(w, p);
}

/* Checkpoint policy: every journal_slots / 4 committed ops (VSR needs at
 * least every journal_slots / 2). The checkpoint is durable at once. */
static bool checkpoint_due(const sim_world_t *w, uint8_t i) {
    PC_ASSERT(i < SIM_REPLICAS && w->slots >= 4);
    return w->machines[i].op % (w->slots / 4) == 0;
}

/* A replica asked for state sync: the named peer's checkpoint travels like
 * a message (lost to loss, cut links and a sender that is down). */
static void sync_request(sim_world_t *w, uint8_t i, uint8_t from, uint64_t op_min) {
    PC_ASSERT(i < SIM_REPLICAS && from < SIM_REPLICAS && from != i);
    if (!w->up[from]) return;
    sim_packet_t *p = net_packet(w, SIM_PACKET_SYNC, from, i);
    if (!p) return;
    p->u.sync_op_min = op_min;
    w->res->sync_requests++;
    net_push(w, p);
}

/* Carries out one step's output: storage first, then messages, then apply. */
static void process_output(sim_world_t *w, uint8_t i) {
    PC_ASSERT(i < SIM_REPLICAS);
    pc_vsr_output_t *out = w->out;
    PC_ASSERT(w->up[i]);
    static sim_disk_write_t write; /* large: kept off the stack */
    if (out->persist) {
        memset(&write, 0, offsetof(sim_disk_write_t, body));
        write.superblock = true;
        write.view = out->persist_view;
        write.log_view = out->persist_log_view;
        write.header = out->persist_head;
        disk_enqueue(w, i, &write);
    }
    for (uint32_t k = 0; k < out->writes_count; k++) {
        write.superblock = false;
        write.header = out->writes[k].header;
        memcpy(write.body, out->writes[k].body, write.header.body_size);
        disk_enqueue(w, i, &write);
    }
    for (uint32_t k = 0; k < out->sends_count; k++) {
        const pc_vsr_send_t *s = &out->sends[k];
        sim_packet_t *p = net_packet(w, SIM_PACKET_VSR, i, s->to);
        if (!p) continue;
        memcpy(&p->u.vsr.message, &s->message, sizeof s->message);
        if (s->body) {
            PC_ASSERT(s->message.header.body_size <= SIM_BODY_MAX);
            memcpy(p->u.vsr.body, s->body, s->message.header.body_size);
        }
        net_push(w, p);
    }
    if (out->sync) sync_request(w, i, out->sync_replica, out->sync_op_min);
    uint64_t checkpoint = 0;
    for (uint32_t k = 0; k < out->commits_count && !w->stop; k++) {
        apply_commit(w, i, &out->commits[k]);
        if (w->stop || !checkpoint_due(w, i)) continue;
        pc__sim_machine_checkpoint(&w->machines[i], out->commits[k].header.checksum,
                                   &w->disks[i].checkpoint);
        checkpoint = w->machines[i].op;
        w->res->checkpoints++;
    }
    pc_vsr_info_t info;
    pc_vsr_info(w->vsr[i], &info);
    if (info.diverged) fail(w, "replica %u saw its applied log contradicted", i);
    if (info.view > w->res->view_max) w->res->view_max = info.view;
    if (w->o.verbose && (info.view != w->seen_view[i] || info.status != w->seen_status[i])) {
        sim_log(w, "replica %u: status %u view %u log_view %u op %llu commit %llu/%llu%s", i,
                info.status, info.view, info.log_view, (unsigned long long)info.op,
                (unsigned long long)info.commit_min, (unsigned long long)info.commit_max,
                info.untrusted ? " untrusted" : "");
        w->seen_view[i] = info.view;
        w->seen_status[i] = info.status;
    }
    pc_vsr_output_reset(out);
    if (checkpoint > 0 && !w->stop) {
        pc_vsr_on_checkpoint(w->vsr[i], checkpoint, out);
        process_output(w, i); /* once more at most: a checkpoint commits nothing */
    }
}

/* Boots replica i from its disk: every intact journal entry is loaded, a
 * damaged one is left for repair. */
static pc_vsr_config_t replica_config(const sim_world_t *w, uint8_t i) {
    PC_ASSERT(i < SIM_REPLICAS && w->slots <= SIM_SLOTS_MAX);
    pc_vsr_config_t config = {.replica = i, .replica_count = SIM_REPLICAS,
                              .journal_slots = w->slots, .body_max = SIM_BODY_MAX,
                              .cluster = w->cluster};
    return config;
}

static bool slot_intact(const sim_world_t *w, const sim_disk_slot_t *s, uint64_t slot);
static bool ring_intact(const sim_world_t *w, const sim_disk_ring_t *g, uint64_t slot);

/* Recovery of one journal slot from its two copies, the prepare and the
 * redundant header (see pc_vsr_load_header in vsr.h for the table). Of two
 * intact copies the one with the higher op is newer (a slot's op only
 * grows); two intact copies of one op that differ cannot be ordered, so the
 * slot is faulty (the prepare is still loaded: the disk does hold it).
 * Returns false if the slot was damaged. */
static bool load_slot(sim_world_t *w, uint8_t i, uint32_t slot) {
    const sim_disk_t *d = &w->disks[i];
    const sim_disk_slot_t *p = &d->slots[slot];
    const sim_disk_ring_t *g = &d->ring[slot];
    PC_ASSERT(slot < w->slots);
    if (!p->written && !g->written) return true; /* never written: proves nothing held */
    bool p_ok = slot_intact(w, p, slot), g_ok = ring_intact(w, g, slot);
    /* Production's shell hands VSR nothing at or below the checkpoint. */
    uint64_t below = w->load_below_checkpoint ? 0 : d->checkpoint.op;
    bool prepare = p_ok && (!g_ok || p->header.op >= g->header.op);
    bool header = g_ok && !prepare;
    bool faulty = (!p_ok && !g_ok) ||
                  (p_ok && g_ok && p->header.op == g->header.op &&
                   p->header.checksum != g->header.checksum);
    if (prepare && p->header.op > below) pc_vsr_load(w->vsr[i], &p->header, p->body);
    if (header && g->header.op > below) pc_vsr_load_header(w->vsr[i], &g->header);
    if (faulty) pc_vsr_load_faulty(w->vsr[i], slot);
    PC_ASSERT(prepare || header || faulty);
    return p_ok && g_ok && p->header.checksum == g->header.checksum;
}

/* Boots replica i from its disk: the machine from the last durable
 * checkpoint, then every intact journal entry (a damaged one is left for
 * repair), then VSR at the checkpoint. Nothing is replayed from op 1. */
static void replica_start(sim_world_t *w, uint8_t i, bool fresh) {
    pc_vsr_config_t config = replica_config(w, i);
    PC_ASSERT(!w->up[i]);
    PC_ASSERT(pc_vsr_init(w->vsr[i], &config) == PC_OK);
    sim_disk_t *d = &w->disks[i];
    uint32_t damaged = 0;
    for (uint32_t slot = 0; slot < w->slots; slot++) damaged += load_slot(w, i, slot) ? 0 : 1;
    const sim_checkpoint_t *ck = &d->checkpoint;
    if (ck->op > 0) {
        PC_ASSERT(pc__sim_machine_restore(&w->machines[i], ck) == PC_OK);
        check_state(w, i, ck->op, "restart");
    } else {
        if (w->machines[i].ledger) pc__sim_machine_deinit(&w->machines[i]);
        PC_ASSERT(pc__sim_machine_init(&w->machines[i]) == PC_OK);
    }
    w->up[i] = true;
    pc_vsr_start_info_t si = {.view = d->sb_view, .log_view = d->sb_log_view,
                              .head = d->sb_head, .checkpoint_op = ck->op,
                              .checkpoint_checksum = ck->checksum, .fresh = fresh};
    pc_vsr_start(w->vsr[i], &si, w->out);
    if (!fresh)
        sim_log(w, "replica %u restarts (view %u, checkpoint %llu, %u damaged slots)", i,
                d->sb_view, (unsigned long long)ck->op, damaged);
    process_output(w, i);
}

static void replica_crash(sim_world_t *w, uint8_t i) {
    sim_disk_t *d = &w->disks[i];
    PC_ASSERT(w->up[i]);
    w->up[i] = false;
    /* A torn write: the first unfinished journal write lands half done. */
    for (uint32_t k = 0; k < d->queue_count && is_faulty(w, i) && w->torn; k++) {
        sim_disk_write_t *q = &d->queue[(d->queue_head + k) % SIM_DISK_QUEUE_MAX];
        if (q->superblock) continue;
        sim_disk_slot_t *s = &d->slots[q->header.op % w->slots];
        s->written = true;
        s->header = q->header;
        memset(s->body, 0xA5, sizeof s->body);
        memcpy(s->body, q->body, q->header.body_size / 2);
        /* Its header copy may or may not have made it. */
        if (pc_prng_below(&w->prng, 2) == 0) {
            d->ring[q->header.op % w->slots].written = true;
            d->ring[q->header.op % w->slots].header = q->header;
        }
        w->res->corruptions++;
        break;
    }
    d->queue_count = 0;
    d->last_done_tick = w->tick;
    w->restart_tick[i] = w->tick + 20 + pc_prng_below(&w->prng, 200);
    w->res->crashes++;
    sim_log(w, "replica %u crashes", i);
    PC_ASSERT(!w->up[i]);
}

/* ---- the storage fault model ---- */

/* Whether disk slot s holds an intact entry (what a restart would load). */
static bool slot_intact(const sim_world_t *w, const sim_disk_slot_t *s, uint64_t slot) {
    PC_ASSERT(slot < w->slots);
    const pc_vsr_header_t *h = &s->header;
    return s->written && h->checksum == pc_vsr_header_checksum(h) && h->op > 0 &&
           h->op % w->slots == slot && h->body_size <= SIM_BODY_MAX &&
           pc_checksum(s->body, h->body_size, 0) == h->body_checksum;
}

/* Whether a replica other than i holds entry h intact on its disk. The
 * fault model: a disk fault may destroy a copy only while another intact
 * copy exists, so an op some replica holds is never lost everywhere. */
static bool intact_elsewhere(const sim_world_t *w, uint8_t i, const pc_vsr_header_t *h) {
    PC_ASSERT(i < SIM_REPLICAS && h->op > 0);
    uint64_t slot = h->op % w->slots;
    for (uint8_t j = 0; j < SIM_REPLICAS; j++) {
        if (j == i) continue;
        const sim_disk_slot_t *s = &w->disks[j].slots[slot];
        if (slot_intact(w, s, slot) && s->header.checksum == h->checksum) return true;
    }
    return false;
}

/* Whether damaging slot `slot` of replica i's disk keeps the fault model:
 * what it holds is already damaged, or intact on another replica too. */
static bool may_damage(const sim_world_t *w, uint8_t i, uint64_t slot) {
    const sim_disk_slot_t *s = &w->disks[i].slots[slot];
    PC_ASSERT(slot < w->slots);
    return !slot_intact(w, s, slot) || intact_elsewhere(w, i, &s->header);
}

static bool ring_intact(const sim_world_t *w, const sim_disk_ring_t *g, uint64_t slot) {
    PC_ASSERT(slot < w->slots);
    const pc_vsr_header_t *h = &g->header;
    return g->written && h->checksum == pc_vsr_header_checksum(h) && h->op > 0 &&
           h->op % w->slots == slot;
}

/* The second half of the fault model: a fault may damage one copy of a
 * slot (its prepare, or its header in the header ring) only while the other
 * copy holds the slot's last durable write intact. So the newest entry a
 * replica was told durable — and may have acknowledged — is never silently
 * replaced by an older one on its disk: recovery either finds it (whole or
 * as a header) or sees the slot faulty. */
static bool may_damage_prepare(const sim_world_t *w, uint8_t i, uint64_t slot) {
    const sim_disk_t *d = &w->disks[i];
    PC_ASSERT(slot < w->slots);
    bool other = d->last_done[slot] == 0 || (ring_intact(w, &d->ring[slot], slot) &&
                                             d->ring[slot].header.checksum == d->last_done[slot]);
    return other && may_damage(w, i, slot);
}

static bool may_damage_ring(const sim_world_t *w, uint8_t i, uint64_t slot) {
    const sim_disk_t *d = &w->disks[i];
    PC_ASSERT(slot < w->slots);
    return d->last_done[slot] == 0 ||
           (slot_intact(w, &d->slots[slot], slot) &&
            d->slots[slot].header.checksum == d->last_done[slot]);
}

/* A misdirected write: one of the write's two copies (the prepare or its
 * header-ring copy) lands in a random other slot, destroying what that
 * slot's copy held, while its own slot keeps its old content, although VSR
 * is told the write is durable (a durable claim that is now false). Any
 * entry, committed or not, may be hit, on the primary as on a backup,
 * including an entry intact on no other disk (the primary's own new
 * prepare, typically: its write completes before the backups'); the entry
 * overwritten must stay intact on another disk, and both slots must keep
 * the fault model (may_damage_prepare / may_damage_ring). Returns the
 * slot the misdirected copy lands in (= slot if the fault is skipped) and
 * sets *ring if that copy is the header. */
static uint64_t misdirect(sim_world_t *w, uint8_t i, const pc_vsr_header_t *h, uint64_t slot,
                          bool *ring) {
    PC_ASSERT(is_faulty(w, i) && slot == h->op % w->slots);
    uint64_t target = pc_prng_below(&w->prng, w->slots);
    *ring = pc_prng_below(&w->prng, 2) == 0;
    if (target == slot) return slot;
    if (*ring ? !may_damage_ring(w, i, target) : !may_damage_prepare(w, i, target)) return slot;
    w->res->corruptions++;
    w->res->misdirects++;
    const sim_disk_slot_t *t = &w->disks[i].slots[target];
    if (h->op > w->res->ops_committed || (t->written && t->header.op > w->res->ops_committed))
        w->res->uncommitted_hits++;
    sim_log(w, "replica %u: %s write of op %llu misdirected to slot %llu", i,
            *ring ? "header" : "prepare", (unsigned long long)h->op,
            (unsigned long long)target);
    PC_ASSERT(target < w->slots);
    return target;
}

static void disk_tick(sim_world_t *w, uint8_t i) {
    PC_ASSERT(i < SIM_REPLICAS);
    sim_disk_t *d = &w->disks[i];
    PC_ASSERT(w->up[i]);
    while (d->queue_count > 0 && !w->stop) {
        sim_disk_write_t *q = &d->queue[d->queue_head];
        if (q->done_tick > w->tick) break;
        d->queue_head = (d->queue_head + 1) % SIM_DISK_QUEUE_MAX;
        d->queue_count--;
        if (q->superblock) {
            d->sb_view = q->view;
            d->sb_log_view = q->log_view;
            d->sb_head = q->header;
            pc_vsr_on_persist_done(w->vsr[i], q->view, q->log_view, w->out);
        } else {
            uint64_t home = q->header.op % w->slots, slot = home, ring = home;
            bool to_ring = false;
            if (is_faulty(w, i) && !w->healed && chance(w, w->misdirect_per_mille, 1000)) {
                uint64_t target = misdirect(w, i, &q->header, home, &to_ring);
                if (to_ring) ring = target;
                else slot = target;
            }
            d->slots[slot].written = true;
            d->slots[slot].header = q->header;
            memcpy(d->slots[slot].body, q->body, q->header.body_size);
            d->ring[ring].written = true;
            d->ring[ring].header = q->header;
            d->last_done[home] = q->header.checksum;
            pc_vsr_on_write_done(w->vsr[i], q->header.op, q->header.checksum, w->out);
        }
        process_output(w, i);
    }
}

/* ---- clients ---- */

static void client_build(sim_world_t *w, sim_client_t *c) {
    PC_ASSERT(c->request >= 1);
    sim_request_t *q = &c->req;
    memset(q, 0, sizeof *q);
    q->client = c->id;
    q->request = c->request;
    if (c->request == 1) {
        /* Every client creates the same accounts: the later ones see `exists`. */
        q->operation = PC_OP_create_accounts;
        for (uint32_t a = 0; a < SIM_ACCOUNTS; a++) {
            pc_account_t acc = {.id = a + 1, .ledger = 1, .code = 1};
            memcpy(q->body + a * sizeof acc, &acc, sizeof acc);
        }
        q->body_size = SIM_ACCOUNTS * sizeof(pc_account_t);
        return;
    }
    q->operation = PC_OP_create_transfers;
    uint32_t count = 1 + (uint32_t)pc_prng_below(&w->prng, SIM_TRANSFERS_PER_REQUEST_MAX);
    for (uint32_t t = 0; t < count; t++) {
        uint32_t debit = (uint32_t)pc_prng_below(&w->prng, SIM_ACCOUNTS);
        uint32_t credit = (debit + 1 + (uint32_t)pc_prng_below(&w->prng, SIM_ACCOUNTS - 1)) %
                          SIM_ACCOUNTS;
        pc_transfer_t tr = {.id = c->id * 1000000u + c->request * 8u + t + 1,
                            .debit_account_id = debit + 1, .credit_account_id = credit + 1,
                            .amount = 1 + pc_prng_below(&w->prng, 100), .ledger = 1, .code = 1};
        memcpy(q->body + t * sizeof tr, &tr, sizeof tr);
    }
    q->body_size = count * (uint32_t)sizeof(pc_transfer_t);
    PC_ASSERT(q->body_size <= SIM_BODY_MAX);
}

static void client_send(sim_world_t *w, uint8_t j, uint8_t to) {
    PC_ASSERT(j < SIM_CLIENTS && to < SIM_REPLICAS);
    sim_client_t *c = &w->clients[j];
    sim_packet_t *p = net_packet(w, SIM_PACKET_REQUEST, (uint8_t)(SIM_REPLICAS + j), to);
    if (!p) return;
    p->u.request = c->req;
    net_push(w, p);
    PC_ASSERT(c->waiting);
}

/* One request in flight per client; on timeout it is sent to every replica,
 * since the client cannot know which one is primary now. */
static void client_tick(sim_world_t *w, uint8_t j) {
    PC_ASSERT(j < SIM_CLIENTS);
    sim_client_t *c = &w->clients[j];
    PC_ASSERT(c->request <= SIM_REQUESTS_PER_CLIENT);
    if (!c->waiting && c->request < SIM_REQUESTS_PER_CLIENT && w->tick >= c->next_tick) {
        c->request++;
        client_build(w, c);
        c->waiting = true;
        c->sent_tick = w->tick;
        client_send(w, j, (uint8_t)(c->view_guess % SIM_REPLICAS));
    } else if (c->waiting && w->tick - c->sent_tick > SIM_CLIENT_TIMEOUT_TICKS) {
        c->sent_tick = w->tick;
        c->view_guess++;
        for (uint8_t to = 0; to < SIM_REPLICAS; to++) client_send(w, j, to);
    }
}

static void client_on_reply(sim_world_t *w, uint8_t j, const sim_reply_t *r) {
    PC_ASSERT(j < SIM_CLIENTS);
    sim_client_t *c = &w->clients[j];
    PC_ASSERT(r->client == c->id);
    if (!c->waiting || r->request != c->request) return; /* a late duplicate */
    const sim_committed_t *k = r->op < SIM_OPS_MAX ? &w->committed[r->op] : NULL;
    if (!k || k->checksum == 0 || k->client != r->client || k->request != r->request) {
        fail(w, "client %u request %llu acknowledged at op %llu, not in the committed log", j,
             (unsigned long long)r->request, (unsigned long long)r->op);
        return;
    }
    c->waiting = false;
    c->view_guess = r->view;
    c->next_tick = w->tick + pc_prng_below(&w->prng, 10);
    w->res->requests_acked++;
}

/* State sync arrives: the sender's durable checkpoint as of now (at least
 * what was asked for) replaces this replica's machine and checkpoint, if it
 * is ahead of what this replica applied; it is durable before VSR hears. */
static void sync_deliver(sim_world_t *w, uint8_t i, uint8_t from, uint64_t op_min) {
    PC_ASSERT(i < SIM_REPLICAS && from < SIM_REPLICAS && w->up[i]);
    const sim_checkpoint_t *src = &w->disks[from].checkpoint;
    if (src->op < op_min || src->op <= w->machines[i].op) return;
    pc__sim_checkpoint_copy(&w->disks[i].checkpoint, src);
    PC_ASSERT(pc__sim_machine_restore(&w->machines[i], src) == PC_OK);
    check_state(w, i, src->op, "sync");
    w->res->syncs++;
    sim_log(w, "replica %u syncs to checkpoint %llu of replica %u", i,
            (unsigned long long)src->op, from);
    pc_vsr_on_sync_done(w->vsr[i], src->op, src->checksum, w->out);
}

static void deliver(sim_world_t *w, sim_packet_t *p) {
    PC_ASSERT(p->to < SIM_NODES);
    if (p->kind == SIM_PACKET_REPLY) {
        client_on_reply(w, (uint8_t)(p->to - SIM_REPLICAS), &p->u.reply);
        return;
    }
    uint8_t i = p->to;
    PC_ASSERT(i < SIM_REPLICAS);
    if (!w->up[i]) return;
    if (p->kind == SIM_PACKET_SYNC) {
        sync_deliver(w, i, p->from, p->u.sync_op_min);
    } else if (p->kind == SIM_PACKET_VSR) {
        const pc_vsr_message_t *m = &p->u.vsr.message;
        pc_vsr_on_message(w->vsr[i], m, m->command == PC_VSR_PREPARE ? p->u.vsr.body : NULL,
                          w->out);
    } else {
        const sim_request_t *q = &p->u.request;
        (void)pc_vsr_on_request(w->vsr[i], q->client, q->request, q->operation, q->body,
                                q->body_size, w->tick * 1000000u, w->out);
    }
    process_output(w, i);
}

/* ---- faults ---- */

static void partition_start(sim_world_t *w) {
    PC_ASSERT(w->partition_end == 0 && !w->healed);
    uint8_t x = (uint8_t)pc_prng_below(&w->prng, SIM_REPLICAS);
    uint64_t kind = pc_prng_below(&w->prng, 3);
    for (uint8_t a = 0; a < SIM_REPLICAS; a++) {
        for (uint8_t b = 0; b < SIM_REPLICAS; b++) {
            if (a == b) continue;
            bool down = kind == 0 ? (a == x || b == x)       /* symmetric: isolate x */
                      : kind == 1 ? (a == x)                 /* asymmetric: x cannot send */
                                  : pc_prng_below(&w->prng, 2) == 0; /* random links */
            w->net.link_down[a][b] = down;
        }
    }
    w->partition_end = w->tick + 30 + pc_prng_below(&w->prng, 300);
    PC_ASSERT(w->partition_end > w->tick);
    w->res->partitions++;
    sim_log(w, "partition (kind %llu, replica %u)", (unsigned long long)kind, x);
}

/* Damage at rest: one bit of a random journal slot of a faulty disk, in
 * its prepare's header or body or in its header-ring copy, whatever entry
 * it holds (committed or not), unless that would destroy the last intact
 * copy of the entry or break the fault model (may_damage_prepare/_ring). */
static void bitflip(sim_world_t *w) {
    PC_ASSERT(w->faulty >= 0 && !w->healed);
    uint8_t i = (uint8_t)w->faulty;
    if (w->faulty2 >= 0 && pc_prng_below(&w->prng, 2) == 0) i = (uint8_t)w->faulty2;
    uint64_t slot = pc_prng_below(&w->prng, w->slots);
    sim_disk_slot_t *s = &w->disks[i].slots[slot];
    sim_disk_ring_t *g = &w->disks[i].ring[slot];
    uint64_t byte = pc_prng_below(&w->prng, 2 * sizeof(pc_vsr_header_t) + 64);
    uint8_t bit = (uint8_t)(1u << pc_prng_below(&w->prng, 8));
    if (byte < sizeof(pc_vsr_header_t) + 64) {
        if (!s->written || !may_damage_prepare(w, i, slot)) return;
        if (byte < sizeof(pc_vsr_header_t)) ((uint8_t *)&s->header)[byte] ^= bit;
        else s->body[byte - sizeof(pc_vsr_header_t)] ^= bit;
        if (s->header.op > w->res->ops_committed) w->res->uncommitted_hits++;
    } else {
        if (!g->written || !may_damage_ring(w, i, slot)) return;
        ((uint8_t *)&g->header)[byte - sizeof(pc_vsr_header_t) - 64] ^= bit;
    }
    w->res->corruptions++;
    w->res->bitflips++;
    PC_ASSERT(is_faulty(w, i));
}

static void faults_tick(sim_world_t *w) {
    PC_ASSERT(!w->healed);
    for (uint8_t i = 0; i < SIM_REPLICAS; i++) {
        bool held = (int)i == w->laggard && w->laggard_crash && lagging(w);
        if (held && w->up[i]) replica_crash(w, i);
        else if (held) continue;
        else if (w->up[i] && chance(w, w->crash_per_10k, 10000)) replica_crash(w, i);
        else if (!w->up[i] && w->tick >= w->restart_tick[i]) replica_start(w, i, false);
    }
    if (w->laggard >= 0 && w->tick == w->laggard_start)
        sim_log(w, "replica %d lags (%s) until tick %llu", w->laggard,
                w->laggard_crash ? "down" : "cut off", (unsigned long long)w->laggard_end);
    if (w->partition_end != 0 && w->tick >= w->partition_end) {
        memset(w->net.link_down, 0, sizeof w->net.link_down);
        w->partition_end = 0;
        sim_log(w, "partition heals");
    } else if (w->partition_end == 0 && chance(w, w->partition_per_10k, 10000)) {
        partition_start(w);
    }
    if (w->faulty >= 0 && chance(w, w->bitflip_per_10k, 10000)) bitflip(w);
    PC_ASSERT(w->tick < w->o.ticks);
}

static void heal(sim_world_t *w) {
    PC_ASSERT(!w->healed);
    w->healed = true;
    w->res->requests_acked_before_heal = w->res->requests_acked;
    memset(w->net.link_down, 0, sizeof w->net.link_down);
    w->partition_end = 0;
    for (uint8_t i = 0; i < SIM_REPLICAS; i++)
        if (!w->up[i]) replica_start(w, i, false);
    sim_log(w, "all faults heal");
    PC_ASSERT(w->healed);
}

/* Done: every request acknowledged and every replica normal at one commit. */
static bool converged(sim_world_t *w) {
    PC_ASSERT(w->healed);
    for (uint8_t j = 0; j < SIM_CLIENTS; j++)
        if (w->clients[j].waiting || w->clients[j].request < SIM_REQUESTS_PER_CLIENT) return false;
    pc_vsr_info_t first;
    pc_vsr_info(w->vsr[0], &first);
    for (uint8_t i = 0; i < SIM_REPLICAS; i++) {
        pc_vsr_info_t info;
        pc_vsr_info(w->vsr[i], &info);
        if (!w->up[i] || info.status != PC_VSR_NORMAL || info.view != first.view) return false;
        if (info.commit_min != w->res->ops_committed) return false;
    }
    return true;
}

/* ---- the run ---- */

/* Each seed enables a random subset of the fault kinds at random rates, so
 * a sweep covers each kind alone and in combination. */
static void choose_profile(sim_world_t *w) {
    pc_prng_t *g = &w->prng;
    PC_ASSERT(w->tick == 0);
    w->net.loss_per_mille = pc_prng_below(g, 4) == 0 ? 0 : (uint32_t)pc_prng_below(g, 150);
    w->net.duplicate_per_mille = pc_prng_below(g, 3) == 0 ? (uint32_t)pc_prng_below(g, 60) : 0;
    w->net.delay_max_ticks = 1 + (uint32_t)pc_prng_below(g, 12);
    w->crash_per_10k = pc_prng_below(g, 3) != 0 ? 5 + (uint32_t)pc_prng_below(g, 30) : 0;
    w->partition_per_10k = pc_prng_below(g, 3) != 0 ? 10 + (uint32_t)pc_prng_below(g, 50) : 0;
    w->faulty = pc_prng_below(g, 3) != 0 ? (int)pc_prng_below(g, SIM_REPLICAS) : -1;
    w->torn = pc_prng_below(g, 2) == 0;
    w->bitflip_per_10k = pc_prng_below(g, 2) == 0 ? 20 + (uint32_t)pc_prng_below(g, 200) : 0;
    w->misdirect_per_mille = pc_prng_below(g, 2) == 0 ? 5 + (uint32_t)pc_prng_below(g, 40) : 0;
    w->faulty2 = -1;
    if (w->o.stress || w->o.faulty_disks >= 2) {
        /* Drawn after the default profile, so default seeds keep theirs. */
        if (w->faulty < 0) w->faulty = (int)pc_prng_below(g, SIM_REPLICAS);
        if (w->bitflip_per_10k == 0) w->bitflip_per_10k = 20 + (uint32_t)pc_prng_below(g, 200);
        if (w->misdirect_per_mille == 0)
            w->misdirect_per_mille = 5 + (uint32_t)pc_prng_below(g, 40);
    }
    if (w->o.faulty_disks >= 2)
        w->faulty2 = (w->faulty + 1 + (int)pc_prng_below(g, SIM_REPLICAS - 1)) % (int)SIM_REPLICAS;
    if (w->o.stress) {
        w->bitflip_per_10k = PC_MIN(10000u, 10 * w->bitflip_per_10k);
        w->misdirect_per_mille = PC_MIN(1000u, 10 * w->misdirect_per_mille);
    }
    static const uint32_t rings[] = {16, 32, 64, 128};
    w->slots = rings[pc_prng_below(g, 4)];
    w->load_below_checkpoint = pc_prng_below(g, 2) == 0;
    w->laggard = -1;
    if (pc_prng_below(g, 3) == 0) {
        w->laggard = (int)pc_prng_below(g, SIM_REPLICAS);
        w->laggard_crash = pc_prng_below(g, 2) == 0;
        w->laggard_start = 100 + pc_prng_below(g, 300);
        w->laggard_end = w->laggard_start + 400 + pc_prng_below(g, 600);
    }
    sim_log(w, "profile: loss %u/1000 dup %u/1000 delay<=%u crash %u/10k partition %u/10k "
               "faulty-disk %d %d (torn %d bitflip %u/10k misdirect %u/1000) ring %u laggard %d",
            w->net.loss_per_mille, w->net.duplicate_per_mille, w->net.delay_max_ticks,
            w->crash_per_10k, w->partition_per_10k, w->faulty, w->faulty2, w->torn,
            w->bitflip_per_10k,
            w->misdirect_per_mille, w->slots, w->laggard);
    PC_ASSERT(w->faulty < (int)SIM_REPLICAS);
}

static void world_deinit(sim_world_t *w) {
    PC_ASSERT(w != NULL);
    for (uint8_t i = 0; i < SIM_REPLICAS; i++) {
        free(w->vsr[i]);
        if (w->machines[i].ledger) pc__sim_machine_deinit(&w->machines[i]);
        if (w->disks) pc__sim_disk_deinit(&w->disks[i]);
    }
    free(w->disks);
    free(w->out);
    pc__sim_network_deinit(&w->net);
    PC_ASSERT(w->net.packets == NULL);
}

static int world_init(sim_world_t *w) {
    PC_ASSERT(w->res != NULL);
    int rc = pc__sim_network_init(&w->net);
    if (rc != PC_OK) return rc;
    w->out = calloc(1, sizeof *w->out);
    w->disks = calloc(SIM_REPLICAS, sizeof *w->disks);
    if (!w->out || !w->disks) return PC_ENOMEM;
    pc_prng_init(&w->prng, w->o.seed);
    w->cluster = ((pc_u128)pc_prng_next(&w->prng) << 64) | pc_prng_next(&w->prng);
    for (uint8_t j = 0; j < SIM_CLIENTS; j++) w->clients[j].id = 1000u + j;
    choose_profile(w);
    for (uint8_t i = 0; i < SIM_REPLICAS; i++) {
        pc_vsr_config_t config = replica_config(w, i);
        size_t size = pc_vsr_size(&config);
        PC_ASSERT(size > 0);
        w->vsr[i] = malloc(size);
        if (!w->vsr[i]) return PC_ENOMEM;
        rc = pc__sim_disk_init(&w->disks[i], w->cluster);
        if (rc != PC_OK) return rc;
    }
    if (w->o.faults_off) {
        memset(&w->net.loss_per_mille, 0, 3 * sizeof(uint32_t));
        w->net.delay_max_ticks = 1;
        w->crash_per_10k = w->partition_per_10k = 0;
        w->faulty = w->faulty2 = -1;
        w->laggard = -1;
    }
    PC_ASSERT(w->net.delay_max_ticks >= 1);
    return PC_OK;
}

static void step(sim_world_t *w) {
    PC_ASSERT(!w->stop);
    if (!w->healed) faults_tick(w);
    sim_packet_t *p;
    while (!w->stop && (p = pc__sim_network_pop(&w->net, w->tick)) != NULL) {
        deliver(w, p);
        pc__sim_network_free(&w->net, p);
    }
    for (uint8_t i = 0; i < SIM_REPLICAS && !w->stop; i++) {
        if (!w->up[i]) continue;
        disk_tick(w, i);
        if (w->stop) break;
        pc_vsr_on_tick(w->vsr[i], w->out);
        process_output(w, i);
    }
    for (uint8_t j = 0; j < SIM_CLIENTS && !w->stop; j++) client_tick(w, j);
    PC_ASSERT(w->net.heap_count <= SIM_PACKETS_MAX);
}

int pc_sim_run(const pc_sim_options_t *options, pc_sim_result_t *result) {
    PC_ASSERT(options != NULL && result != NULL);
    sim_world_t *w = calloc(1, sizeof *w);
    if (!w) return PC_ENOMEM;
    memset(result, 0, sizeof *result);
    result->ok = true;
    w->o = *options;
    if (w->o.ticks == 0) w->o.ticks = 1500;
    if (w->o.heal_ticks == 0) w->o.heal_ticks = 4000;
    w->res = result;
    int rc = world_init(w);
    if (rc != PC_OK) goto done;
    for (uint8_t i = 0; i < SIM_REPLICAS; i++) replica_start(w, i, true);
    for (w->tick = 1; !w->stop; w->tick++) {
        if (w->tick == w->o.ticks) heal(w);
        step(w);
        if (w->healed && !w->stop && converged(w)) break;
        if (w->tick >= w->o.ticks + w->o.heal_ticks) {
            for (uint8_t i = 0; i < SIM_REPLICAS; i++) {
                pc_vsr_info_t info;
                pc_vsr_info(w->vsr[i], &info);
                sim_log(w, "replica %u: up %d status %u view %u log_view %u op %llu "
                           "commit %llu/%llu",
                        i, w->up[i], info.status, info.view, info.log_view,
                        (unsigned long long)info.op, (unsigned long long)info.commit_min,
                        (unsigned long long)info.commit_max);
            }
            fail(w, "liveness: not converged %llu ticks after healing (commit %llu, acked %llu)",
                 (unsigned long long)w->o.heal_ticks, (unsigned long long)result->ops_committed,
                 (unsigned long long)result->requests_acked);
        }
    }
    result->ticks = w->tick;
    PC_ASSERT(result->ok || result->failure[0] != 0);
done:
    world_deinit(w);
    free(w);
    return rc;
}
