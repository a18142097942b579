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
#define VSR_REPAIR_TICKS 4u
#define VSR_REPAIR_REQUESTS_MAX 4u

typedef struct vsr_slot {
    pc_vsr_header_t header;
    bool present;  /* header holds an entry for this op */
    bool body_ok;  /* body in memory matches header.body_checksum */
    bool durable;  /* this exact entry is on disk */
    bool writing;  /* a journal write of this entry is in flight */
    uint8_t acks;  /* primary: replicas with a durable copy (bit per replica) */
    uint32_t canonical_view; /* view + 1 if it came from that view's primary */
} vsr_slot_t;

/* A do_view_change as received (the new primary keeps one per replica). */
typedef struct vsr_dvc {
    bool present;
    uint32_t log_view;
    uint64_t op, commit;
    uint8_t headers_count;
    pc_vsr_header_t headers[PC_VSR_VIEW_HEADERS_MAX];
    uint8_t durable[PC_VSR_VIEW_HEADERS_MAX];
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
    pc_u128 commit_max_checksum;
    uint64_t verified_low; /* [verified_low, op] chain-verified from the head */
    bool complete;         /* (commit_min, op] verified and every body present */
    uint64_t flush_from;   /* every op below is durable */
    uint64_t ticks;
    uint64_t primary_heard_tick; /* last sign of a live, progressing primary */
    uint64_t view_change_tick;   /* when the current view change began */
    uint64_t last_progress_commit;
    uint64_t last_timestamp;
    uint8_t svc_from;     /* bitmask of start_view_change votes for view */
    uint8_t repair_rr;    /* round-robin peer for repair requests */
    bool diverged;        /* saw its applied log contradicted: a protocol bug */
    vsr_dvc_t dvcs[PC_VSR_REPLICAS];
    vsr_slot_t slots[PC_VSR_JOURNAL_SLOTS_MAX];
    uint8_t bodies[PC_VSR_JOURNAL_SLOTS_MAX][PC_VSR_BODY_MAX];
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

/* vsr.c */
pc_vsr_message_t *pc__vsr_send(pc_vsr_t *r, pc_vsr_output_t *out, uint8_t to,
                               pc_vsr_command_t command);
void pc__vsr_send_prepare(pc_vsr_t *r, pc_vsr_output_t *out, uint8_t to, uint64_t op,
                          bool repair);
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
void pc__vsr_on_prepare(pc_vsr_t *r, const pc_vsr_message_t *m, pc_vsr_output_t *out);
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
