/*
 * vsr_int.h — the body of pc_vsr_t and the helpers the files of src/vsr share.
 * Only src/vsr includes it; everyone else sees the opaque handle.
 */
#ifndef PC_VSR_INT_H
#define PC_VSR_INT_H

#include "vsr.h"

/* Timeouts in ticks. Backups wait longer than the primary's heartbeat
 * interval by a wide margin, and each replica's view-change timeout differs
 * so that two replicas rarely start competing view changes together. */
#define VSR_HEARTBEAT_TICKS 5u
#define VSR_PRIMARY_TIMEOUT_TICKS 40u
#define VSR_VIEW_CHANGE_TIMEOUT_TICKS 50u
#define VSR_RESEND_TICKS 8u
/* Repair is pipelined: every accepted repair answer walks the chain again
 * and asks for what is still missing, so a replica catching up moves at
 * network round-trip pace, not at the pace of the VSR_REPAIR_TICKS timer
 * (which only retries). At most VSR_REPAIR_INFLIGHT_MAX requests are
 * outstanding, spread over both peers; one unanswered for
 * VSR_REPAIR_TIMEOUT_TICKS may be asked again (of the other peer). Body
 * requests leave VSR_REPAIR_RESERVED entries free for the requests that
 * extend the chain itself (the first broken link, the commit target). Each
 * repair answer also carries up to PC_VSR_VIEW_HEADERS_MAX headers chained
 * below it, so the chain is learned 24 ops per round trip. In production an
 * answer may be a 2 MiB body: 16 of them fit the 24 MiB link queue. */
#define VSR_REPAIR_TICKS 4u
#define VSR_REPAIR_INFLIGHT_MAX 16u
#define VSR_REPAIR_RESERVED 4u
#define VSR_REPAIR_TIMEOUT_TICKS 8u
PC_STATIC_ASSERT(VSR_REPAIR_RESERVED < VSR_REPAIR_INFLIGHT_MAX, "room for body requests");
/* State sync: asked for when a peer's checkpoint is half a ring ahead of
 * what this replica applied, or when a peer's checkpoint is ahead at all and
 * nothing has been applied for VSR_SYNC_STALL_TICKS (the next op may be gone
 * from every ring). Repeated every VSR_SYNC_RETRY_TICKS until done. */
#define VSR_SYNC_STALL_TICKS 120u
#define VSR_SYNC_RETRY_TICKS 24u

/* One ring slot: holds the entry of op header.op (op % journal_slots). */
typedef struct vsr_slot {
    pc_vsr_header_t header;
    bool present;  /* header holds an entry (of op header.op) */
    bool body_ok;  /* body in memory matches header.body_checksum */
    bool durable;  /* this exact entry is on disk */
    bool writing;  /* a journal write of this entry is in flight */
    /* The disk recorded this header (a write of it completed, or recovery
     * found it): the replica may have acknowledged it, so it never nacks
     * it. Cleared only when the slot takes another entry of the current
     * log (which proves the old one uncommitted). */
    bool recorded;
    /* Recovery found the slot damaged beyond telling what it held: the
     * replica may have acknowledged any entry of this op (0: none). */
    uint64_t faulty_op;
    uint8_t acks;  /* primary: replicas with a durable copy (bit per replica) */
    uint32_t canonical_view; /* view + 1 if it came from that view's primary */
} vsr_slot_t;

/* An outstanding request_prepare (checksum 0: a free entry). */
typedef struct vsr_repair {
    uint64_t op;
    pc_u128 checksum;
    uint64_t tick; /* when it was sent */
} vsr_repair_t;

/* A do_view_change as received (the new primary keeps one per replica). */
typedef struct vsr_dvc {
    bool present;
    uint32_t log_view;
    uint64_t op, commit;
    pc_u128 head_checksum; /* headers[0].checksum, or the checkpoint's if none */
    uint8_t headers_count;
    pc_vsr_header_t headers[PC_VSR_VIEW_HEADERS_MAX];
    uint8_t durable[PC_VSR_VIEW_HEADERS_MAX]; /* PC_VSR_DVC_* */
    uint8_t faulty_count;
    bool faulty_more;
    uint64_t faulty[PC_VSR_VIEW_HEADERS_MAX]; /* highest first */
} vsr_dvc_t;

struct pc_vsr {
    pc_vsr_config_t config;
    pc_vsr_status_t status;
    uint32_t view, log_view;
    uint32_t persisted_view, persisted_log_view;
    bool untrusted;       /* may not vote until verified (see pc_vsr_start) */
    uint64_t verify_op;   /* untrusted: trusted again once commit_min reaches it */
    uint64_t op;          /* head of the log */
    uint64_t commit_min;  /* applied */
    uint64_t commit_max;  /* known committed */
    /* The log's head when this replica began leading its view: ops up to it
     * may have been acknowledged by an earlier primary without this one
     * knowing them committed (pc_vsr_info_t.view_start_op). */
    uint64_t view_start_op;
    pc_u128 commit_max_checksum;
    uint64_t verified_low; /* [verified_low, op] chain-verified from the head */
    bool complete;         /* (commit_min, op] verified and every body present */
    uint64_t flush_from;   /* every op below is durable */
    uint64_t ticks;
    uint64_t primary_heard_tick; /* last sign of a live, progressing primary */
    uint64_t view_change_tick;   /* when the current view change began */
    uint64_t last_progress_commit;
    uint64_t last_timestamp;
    /* Checkpoint: the state machine is durable through checkpoint_op; the
     * ring holds (checkpoint_op, checkpoint_op + journal_slots]. */
    uint64_t checkpoint_op;
    pc_u128 checkpoint_checksum;  /* chain anchor below the window */
    pc_vsr_header_t anchor;       /* its header, when known */
    bool anchor_known;
    /* The anchor came from outside this replica's own chain (a restart or a
     * sync): a head that does not link to it is a stale log, cut back. */
    bool anchor_foreign;
    uint64_t peer_checkpoint[PC_VSR_REPLICAS]; /* highest reported per peer */
    uint64_t commit_progress_tick;             /* commit_min last advanced */
    bool sync_wanted;
    bool sync_urgent; /* a view it must join starts beyond what it can hold */
    uint64_t sync_tick;
    uint8_t sync_rr;
    uint8_t svc_from;     /* bitmask of start_view_change votes for view */
    uint8_t repair_rr;    /* round-robin peer for repair requests */
    vsr_repair_t repairs[VSR_REPAIR_INFLIGHT_MAX]; /* outstanding requests */
    bool diverged;        /* saw its applied log contradicted: a protocol bug */
    vsr_dvc_t dvcs[PC_VSR_REPLICAS];
    /* In the caller's memory right after the struct (pc_vsr_size). */
    vsr_slot_t *slots;  /* journal_slots */
    uint8_t *bodies;    /* journal_slots * body_max */
};

static inline uint8_t pc__vsr_primary_of(uint32_t view) {
    return (uint8_t)(view % PC_VSR_REPLICAS);
}
static inline bool pc__vsr_is_primary(const pc_vsr_t *r) {
    return pc__vsr_primary_of(r->view) == r->config.replica;
}
static inline unsigned pc__vsr_popcount(uint8_t bits) {
    return (unsigned)__builtin_popcount(bits);
}
/* The ring slot op maps to, whatever it holds. */
static inline vsr_slot_t *pc__vsr_slot(const pc_vsr_t *r, uint64_t op) {
    return &r->slots[op % r->config.journal_slots];
}
static inline uint8_t *pc__vsr_body(const pc_vsr_t *r, uint64_t op) {
    return r->bodies + (size_t)(op % r->config.journal_slots) * r->config.body_max;
}
/* The slot if it holds an entry of exactly this op, else NULL. */
static inline vsr_slot_t *pc__vsr_entry(const pc_vsr_t *r, uint64_t op) {
    vsr_slot_t *s = pc__vsr_slot(r, op);
    return s->present && s->header.op == op ? s : NULL;
}
static inline bool pc__vsr_in_window(const pc_vsr_t *r, uint64_t op) {
    return op > r->checkpoint_op && op - r->checkpoint_op <= r->config.journal_slots;
}

/* vsr.c */
/* The header of op: the anchor at checkpoint_op, else the slot's entry. */
const pc_vsr_header_t *pc__vsr_header(const pc_vsr_t *r, uint64_t op);
/* The checksum of op's entry (the checkpoint's at checkpoint_op), or 0. */
pc_u128 pc__vsr_checksum(const pc_vsr_t *r, uint64_t op);
/* Whether the header of the head op is known (else the head is the
 * checkpoint, known by its checksum only). */
bool pc__vsr_head_known(const pc_vsr_t *r);
pc_vsr_message_t *pc__vsr_send(pc_vsr_t *r, pc_vsr_output_t *out, uint8_t to,
                               pc_vsr_command_t command);
/* Returns the message (to attach headers to), or NULL if the output is full. */
pc_vsr_message_t *pc__vsr_send_prepare(pc_vsr_t *r, pc_vsr_output_t *out, uint8_t to,
                                       uint64_t op, bool repair);
void pc__vsr_write(pc_vsr_t *r, pc_vsr_output_t *out, uint64_t op);
/* Issues journal writes in op order (see repair.c). */
void pc__vsr_flush(pc_vsr_t *r, pc_vsr_output_t *out);
void pc__vsr_persist(pc_vsr_t *r, pc_vsr_output_t *out);
/* Installs header (and body, if given) at its op, replacing what was there. */
void pc__vsr_install(pc_vsr_t *r, const pc_vsr_header_t *h, const void *body);
bool pc__vsr_may_vote(const pc_vsr_t *r);
bool pc__vsr_log_persisted(const pc_vsr_t *r);

/* repair.c */
void pc__vsr_chain_walk(pc_vsr_t *r, pc_vsr_output_t *out, bool request);
void pc__vsr_commit_apply(pc_vsr_t *r, pc_vsr_output_t *out);
void pc__vsr_primary_commit(pc_vsr_t *r, pc_vsr_output_t *out);
void pc__vsr_on_prepare(pc_vsr_t *r, const pc_vsr_message_t *m, const uint8_t *body,
                        pc_vsr_output_t *out);
void pc__vsr_on_commit(pc_vsr_t *r, const pc_vsr_message_t *m, pc_vsr_output_t *out);
void pc__vsr_heard_from_primary(pc_vsr_t *r, uint64_t commit);
void pc__vsr_on_prepare_ok(pc_vsr_t *r, const pc_vsr_message_t *m, pc_vsr_output_t *out);
void pc__vsr_on_request_prepare(pc_vsr_t *r, const pc_vsr_message_t *m, pc_vsr_output_t *out);
void pc__vsr_ack(pc_vsr_t *r, pc_vsr_output_t *out, uint64_t op);

/* view_change.c */
void pc__vsr_start_view_change(pc_vsr_t *r, uint32_t view, pc_vsr_output_t *out);
void pc__vsr_view_change_tick(pc_vsr_t *r, pc_vsr_output_t *out);
void pc__vsr_send_view_change(pc_vsr_t *r, pc_vsr_output_t *out);
void pc__vsr_on_start_view_change(pc_vsr_t *r, const pc_vsr_message_t *m, pc_vsr_output_t *out);
void pc__vsr_on_do_view_change(pc_vsr_t *r, const pc_vsr_message_t *m, pc_vsr_output_t *out);
void pc__vsr_on_start_view(pc_vsr_t *r, const pc_vsr_message_t *m, pc_vsr_output_t *out);
void pc__vsr_on_request_start_view(pc_vsr_t *r, const pc_vsr_message_t *m,
                                   pc_vsr_output_t *out);
void pc__vsr_send_start_view(pc_vsr_t *r, pc_vsr_output_t *out, uint8_t to);

#endif /* PC_VSR_INT_H */
