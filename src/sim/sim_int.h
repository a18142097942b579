/*
 * sim_int.h — the simulator's internal pieces, shared by the files of
 * src/sim: the network (a packet heap ordered by delivery tick), the
 * per-replica disk, the state machine under test, and the world that ties
 * them together.
 */
#ifndef PC_SIM_INT_H
#define PC_SIM_INT_H

#include "../ledger/ledger.h"
#include "../vsr/vsr.h"
#include "sim.h"

#define SIM_REPLICAS PC_VSR_REPLICAS
#define SIM_CLIENTS 4u
#define SIM_NODES (SIM_REPLICAS + SIM_CLIENTS)
/* Journal ring per replica: one of 16/32/64/128 slots per seed, so that
 * the workload wraps it several times. */
#define SIM_SLOTS_MAX 128u
#define SIM_BODY_MAX 640u         /* config.body_max in the simulator */
#define SIM_OPS_MAX 8192u         /* the world's record of committed ops */
#define SIM_PACKETS_MAX 2048u    /* in flight at once; beyond that a send is lost */
#define SIM_DISK_QUEUE_MAX 2048u /* pending writes per replica */
#define SIM_ACCOUNTS 4u
#define SIM_TRANSFERS_PER_REQUEST_MAX 4u
#define SIM_REQUESTS_PER_CLIENT 120u
#define SIM_CLIENT_TIMEOUT_TICKS 40u
#define SIM_TRANSFERS_MAX 4096u   /* the ledger's transfer capacity */
PC_STATIC_ASSERT(SIM_ACCOUNTS * PC_RECORD_SIZE <= SIM_BODY_MAX, "accounts fit a body");
PC_STATIC_ASSERT(SIM_TRANSFERS_PER_REQUEST_MAX * PC_RECORD_SIZE <= SIM_BODY_MAX, "fits");
PC_STATIC_ASSERT(SIM_CLIENTS * SIM_REQUESTS_PER_CLIENT * SIM_TRANSFERS_PER_REQUEST_MAX <
                     SIM_TRANSFERS_MAX, "the ledger never fills");
PC_STATIC_ASSERT(SIM_CLIENTS * (SIM_REQUESTS_PER_CLIENT + 1) * 4 < SIM_OPS_MAX,
                 "the world's record of committed ops never fills");
PC_STATIC_ASSERT(SIM_SLOTS_MAX <= PC_VSR_JOURNAL_SLOTS_LIMIT, "a valid ring");

typedef enum sim_packet_kind {
    SIM_PACKET_VSR = 1,
    SIM_PACKET_REQUEST,
    SIM_PACKET_REPLY,
    SIM_PACKET_SYNC, /* a checkpoint copy from `from` (read at delivery) */
} sim_packet_kind_t;

typedef struct sim_request {
    pc_u128 client;
    uint64_t request;
    uint8_t operation;
    uint32_t body_size;
    uint8_t body[SIM_BODY_MAX];
} sim_request_t;

typedef struct sim_reply {
    pc_u128 client;
    uint64_t request, op;
    uint32_t view;
    pc_u128 result;
} sim_reply_t;

typedef struct sim_vsr_packet {
    pc_vsr_message_t message;
    uint8_t body[SIM_BODY_MAX]; /* PREPARE */
} sim_vsr_packet_t;

typedef struct sim_packet {
    uint64_t deliver_tick, seq;
    uint8_t kind, from, to;
    union {
        sim_vsr_packet_t vsr;
        sim_request_t request;
        sim_reply_t reply;
        uint64_t sync_op_min;
    } u;
} sim_packet_t;

typedef struct sim_network {
    sim_packet_t *packets; /* pool */
    uint32_t *free_list, free_count;
    uint32_t *heap, heap_count; /* indices, min by (deliver_tick, seq) */
    uint64_t seq;
    /* Per-seed fault profile. */
    uint32_t loss_per_mille, duplicate_per_mille, delay_max_ticks;
    bool link_down[SIM_REPLICAS][SIM_REPLICAS];
} sim_network_t;

typedef struct sim_disk_slot {
    bool written;
    pc_vsr_header_t header;
    uint8_t body[SIM_BODY_MAX];
} sim_disk_slot_t;

/* The redundant header ring: a header-only copy of each journal slot,
 * written with the prepare (as two separate writes that may fail apart). */
typedef struct sim_disk_ring {
    bool written;
    pc_vsr_header_t header;
} sim_disk_ring_t;

typedef struct sim_disk_write {
    uint64_t done_tick;
    bool superblock;
    uint32_t view, log_view;
    pc_vsr_header_t header; /* journal entry, or the superblock's head */
    uint8_t body[SIM_BODY_MAX];
} sim_disk_write_t;

typedef struct sim_session {
    pc_u128 client;
    uint64_t request, op;
    pc_u128 result;
} sim_session_t;

/* A durable state-machine checkpoint: the ledger snapshot, the transfer
 * store it covers and the session table, at op (whose prepare header
 * checksum is `checksum`). Written whole and at once (the simulator treats
 * a checkpoint write as atomic, like production's checkpoint-then-superblock
 * protocol in storage/). */
typedef struct sim_checkpoint {
    uint64_t op;
    pc_u128 checksum;
    uint8_t *ledger;
    size_t ledger_size, ledger_cap;
    pc_transfer_slot_t *store;
    uint64_t store_count, store_cap;
    sim_session_t sessions[SIM_CLIENTS];
} sim_checkpoint_t;

typedef struct sim_disk {
    sim_disk_slot_t slots[SIM_SLOTS_MAX]; /* the journal ring: op % journal_slots */
    sim_disk_ring_t ring[SIM_SLOTS_MAX];  /* the header ring, same slots */
    /* Per slot: the header checksum of the last write reported durable
     * there (0: none). The fault model lets a fault damage one copy of a
     * slot (prepare or header) only while the other holds this write. */
    pc_u128 last_done[SIM_SLOTS_MAX];
    uint32_t sb_view, sb_log_view;
    pc_vsr_header_t sb_head;
    sim_checkpoint_t checkpoint;
    sim_disk_write_t *queue; /* ring of SIM_DISK_QUEUE_MAX */
    uint32_t queue_head, queue_count;
    uint64_t last_done_tick;
} sim_disk_t;

/* The state machine under test: the real ledger, a transfer store in
 * memory and a session table giving each client request exactly-once. */
typedef struct sim_machine {
    pc_ledger_t *ledger;
    pc_transfer_slot_t *store;
    uint64_t store_count, store_cap;
    sim_session_t sessions[SIM_CLIENTS];
    uint64_t op; /* last applied */
} sim_machine_t;

int pc__sim_machine_init(sim_machine_t *m);
void pc__sim_machine_deinit(sim_machine_t *m);
/* Applies one committed op; fills the reply (the original op for a
 * duplicate request). Returns false if the request is an older duplicate
 * that gets no reply. */
bool pc__sim_machine_apply(sim_machine_t *m, const pc_vsr_header_t *h, const uint8_t *body,
                           sim_reply_t *reply);
pc_u128 pc__sim_machine_checksum(const sim_machine_t *m);
/* Saves the machine's state (at op m->op, header checksum `checksum`) into
 * a checkpoint; the store part is appended incrementally. */
void pc__sim_machine_checkpoint(const sim_machine_t *m, pc_u128 checksum, sim_checkpoint_t *c);
/* Replaces the machine's state with a checkpoint's. Returns PC_OK or the
 * ledger's error (a checkpoint that does not load is a simulator bug). */
int pc__sim_machine_restore(sim_machine_t *m, const sim_checkpoint_t *c);
/* Copies checkpoint src over dst (state sync between disks). */
void pc__sim_checkpoint_copy(sim_checkpoint_t *dst, const sim_checkpoint_t *src);
void pc__sim_checkpoint_free(sim_checkpoint_t *c);

int pc__sim_network_init(sim_network_t *n);
void pc__sim_network_deinit(sim_network_t *n);
/* Returns a packet to fill and schedule, or NULL when the pool is full. */
sim_packet_t *pc__sim_network_alloc(sim_network_t *n);
void pc__sim_network_push(sim_network_t *n, sim_packet_t *p);
/* Next packet due at or before tick (caller frees it), or NULL. */
sim_packet_t *pc__sim_network_pop(sim_network_t *n, uint64_t tick);
void pc__sim_network_free(sim_network_t *n, sim_packet_t *p);

int pc__sim_disk_init(sim_disk_t *d, pc_u128 cluster);
void pc__sim_disk_deinit(sim_disk_t *d);

#endif /* PC_SIM_INT_H */
