/*
 * vsr.h — Viewstamped Replication (Revisited) for one 3-replica unit, as a
 * pure step function.
 *
 * A pc_vsr_t is one replica's protocol state. The shell (the simulator
 * today, the TCP replica later) feeds it inputs — a message, a tick, a
 * client request, "this journal write is durable", "this superblock write is
 * durable" — and each call fills a caller-owned pc_vsr_output_t with what the
 * shell must do next: messages to send, journal writes, a superblock write,
 * and committed ops to apply in order. Nothing inside reads a clock, touches
 * a file or socket, draws a random number or allocates: the same inputs give
 * the same outputs, which is what lets the simulator replay a seed exactly.
 *
 * Log model. Op 0 is a root header derived from the cluster id. Every
 * prepare header carries the checksum of its parent (op - 1), so a log is a
 * hash chain and one trusted head header identifies every entry below it:
 * repair walks the chain down from the head and asks peers for the exact
 * (op, checksum) it lacks.
 *
 * Journal ring and checkpoints. The journal is a ring of journal_slots
 * entries: op lives in slot op % journal_slots. The shell checkpoints the
 * state machine (durably) and reports it with pc_vsr_on_checkpoint; a
 * replica then holds ops in (checkpoint_op, checkpoint_op + journal_slots]
 * and never overwrites an op above its checkpoint with a different op. The
 * checkpoint header's checksum anchors the hash chain below the window; its
 * header need not be known (after a restart or a sync it often is not): a
 * replica whose head is its checkpoint votes and leads with the checksum
 * alone (do_view_change / start_view without headers), since everything
 * at or below a checkpoint is committed. The
 * shell must checkpoint at least every journal_slots / 2 committed ops, or
 * the primary stalls (PC_EBUSY) and backups drop prepares beyond their
 * window (every journal_slots / 4 leaves room for a lagging backup). A
 * replica that fell so far behind that the ops it must apply next may be
 * gone from every peer's ring asks the shell for state sync (out->sync):
 * copy a peer's checkpoint, then pc_vsr_on_sync_done. It asks when a peer's
 * checkpoint (carried by every message) is at least journal_slots / 2 above
 * its commit_min, or is above it at all while it has applied nothing for
 * a while; never in fault-free operation. A sync only ever moves forward,
 * and everything at or below the synced op is committed, so a synced
 * replica keeps voting with the log it holds above that op.
 *
 * Bodies travel beside messages, not in them: a PREPARE's body is passed as
 * a separate pointer (pc_vsr_send_t.body, pc_vsr_on_message's body), so the
 * fixed message stays small while bodies may be up to body_max bytes.
 */
#ifndef PC_VSR_H
#define PC_VSR_H

#include "../base/base.h"

#define PC_VSR_REPLICAS 3u
#define PC_VSR_QUORUM 2u
/* Uncommitted prepares the primary keeps in flight. */
#define PC_VSR_PIPELINE_MAX 8u
/* Journal ring size bounds (config.journal_slots). */
#define PC_VSR_JOURNAL_SLOTS_MIN 16u
#define PC_VSR_JOURNAL_SLOTS_LIMIT 65536u
/* Bound on config.body_max, the bytes of one prepare body. */
#define PC_VSR_BODY_MAX_LIMIT (4u << 20)
/* Headers carried by do_view_change and start_view (the log's suffix). */
#define PC_VSR_VIEW_HEADERS_MAX 24u
/* Bounded output of one step. */
#define PC_VSR_OUT_MESSAGES_MAX 48u
#define PC_VSR_OUT_WRITES_MAX 16u
#define PC_VSR_OUT_COMMITS_MAX 32u

PC_STATIC_ASSERT(PC_VSR_QUORUM * 2 > PC_VSR_REPLICAS, "quorums intersect");
PC_STATIC_ASSERT(PC_VSR_PIPELINE_MAX < PC_VSR_VIEW_HEADERS_MAX,
                 "a view change carries every op a primary may have in flight");
PC_STATIC_ASSERT(PC_VSR_REPLICAS == PC_REPLICAS_PER_UNIT, "a unit is one VSR group");
PC_STATIC_ASSERT(PC_VSR_JOURNAL_SLOTS_MIN >= 2 * PC_VSR_PIPELINE_MAX,
                 "a window holds the pipeline twice over");

/* One journal entry's header. The checksum covers every byte after it; the
 * body is covered by body_checksum. */
typedef struct pc_vsr_header {
    pc_u128 checksum;
    pc_u128 parent;        /* checksum of op - 1 */
    pc_u128 body_checksum;
    pc_u128 client;        /* 0 for the root */
    uint64_t request;      /* the client's request number */
    uint64_t op;
    uint64_t commit;       /* primary's commit number when prepared */
    uint64_t timestamp;    /* cluster time (ns) for the state machine */
    uint32_t view;         /* view in which it was prepared */
    uint32_t body_size;
    uint8_t operation;     /* pc_operation_t */
    uint8_t reserved[23];
} pc_vsr_header_t;
PC_STATIC_ASSERT(sizeof(pc_vsr_header_t) == 128, "a header is 128 bytes");

typedef enum pc_vsr_command {
    PC_VSR_PREPARE = 1,         /* header (+ body beside it); from the primary, or a repair answer */
    PC_VSR_PREPARE_OK,          /* op + checksum: durable on the sender */
    PC_VSR_COMMIT,              /* heartbeat: commit + checksum of that op */
    PC_VSR_START_VIEW_CHANGE,   /* view */
    PC_VSR_DO_VIEW_CHANGE,      /* view, log_view, op, commit, headers */
    PC_VSR_START_VIEW,          /* view, op, commit, headers */
    PC_VSR_REQUEST_START_VIEW,  /* view: "tell me the current view" */
    PC_VSR_REQUEST_PREPARE,     /* op + checksum: "send me this entry" */
} pc_vsr_command_t;

/* A replica-to-replica message. Fixed size, so the shell can copy it; a
 * PREPARE's body travels beside it (header.body_size bytes). */
typedef struct pc_vsr_message {
    uint8_t command; /* pc_vsr_command_t */
    uint8_t from;    /* sending replica */
    uint8_t headers_count;
    uint8_t repair;  /* PREPARE: an answer to request_prepare, not ordering */
    uint32_t view;
    uint32_t log_view;
    uint64_t op;
    uint64_t commit;
    uint64_t checkpoint_op; /* every message: the sender's checkpoint op */
    pc_u128 checksum;
    pc_vsr_header_t header; /* PREPARE */
    /* DO_VIEW_CHANGE / START_VIEW: headers of the log's suffix, newest
     * first; DO_VIEW_CHANGE: durable[i] holds PC_VSR_DVC_* flags for
     * headers[i]. */
    pc_vsr_header_t headers[PC_VSR_VIEW_HEADERS_MAX];
    uint8_t durable[PC_VSR_VIEW_HEADERS_MAX];
    /* DO_VIEW_CHANGE: the sender's faulty journal slots above its commit,
     * as the ops they stand for, highest first (see pc_vsr_load_faulty).
     * The sender cannot say what it acknowledged at those ops, so it nacks
     * nothing there. faulty_more: there were more than fit; every op below
     * faulty[faulty_count - 1] counts as faulty too. */
    uint8_t faulty_count;
    uint8_t faulty_more;
    uint64_t faulty[PC_VSR_VIEW_HEADERS_MAX];
} pc_vsr_message_t;

/* do_view_change flags per header. HAVE: the sender holds this entry, body
 * included, on disk (it can serve it). RECORDED: the sender's disk recorded
 * this header (prepare slot or redundant header ring), so it may have
 * acknowledged it: never a nack, even when the body is gone. A header the
 * sender holds with neither flag (in memory only) is one it never
 * acknowledged. */
#define PC_VSR_DVC_HAVE 1u
#define PC_VSR_DVC_RECORDED 2u

typedef struct pc_vsr_config {
    uint8_t replica;      /* this replica's index, 0..2 */
    uint8_t replica_count;/* must be 3 */
    uint32_t journal_slots; /* ring size, PC_VSR_JOURNAL_SLOTS_MIN..LIMIT */
    uint32_t body_max;    /* bytes per prepare body, 1..PC_VSR_BODY_MAX_LIMIT */
    pc_u128 cluster;      /* seeds the root header */
} pc_vsr_config_t;

/* What one step asks the shell to do. Pointers into the replica (write and
 * commit bodies) stay valid until the next call into the same replica. */
typedef struct pc_vsr_send {
    uint8_t to;
    pc_vsr_message_t message;
    /* PREPARE: message.header.body_size bytes in replica memory, valid until
     * the next call into that replica; NULL for other commands. */
    const uint8_t *body;
} pc_vsr_send_t;

typedef struct pc_vsr_write {
    pc_vsr_header_t header;
    const uint8_t *body;
} pc_vsr_write_t;

typedef struct pc_vsr_commit_out {
    pc_vsr_header_t header;
    const uint8_t *body;
    bool reply; /* this replica is the primary: answer the client */
} pc_vsr_commit_out_t;

typedef struct pc_vsr_output {
    uint32_t sends_count, writes_count, commits_count;
    uint32_t sends_dropped; /* output full: treated like network loss */
    bool persist;           /* write the superblock below, then on_persist_done */
    uint32_t persist_view, persist_log_view;
    pc_vsr_header_t persist_head; /* head of the log when log_view began */
    /* State sync wanted: fetch the durable state-machine checkpoint of
     * replica sync_replica at an op >= sync_op_min, make it durable here,
     * then call pc_vsr_on_sync_done. Repeated every few ticks until done;
     * the shell may drop a request while one is in flight. */
    bool sync;
    uint8_t sync_replica;
    uint64_t sync_op_min;
    pc_vsr_send_t sends[PC_VSR_OUT_MESSAGES_MAX];
    pc_vsr_write_t writes[PC_VSR_OUT_WRITES_MAX];
    pc_vsr_commit_out_t commits[PC_VSR_OUT_COMMITS_MAX];
} pc_vsr_output_t;

typedef enum pc_vsr_status {
    PC_VSR_NORMAL = 1,
    PC_VSR_VIEW_CHANGE,
    PC_VSR_RECOVERING, /* restarted: waits for start_view, then catches up */
} pc_vsr_status_t;

typedef struct pc_vsr pc_vsr_t; /* body in vsr_int.h; size from pc_vsr_size() */

/* Test-only planted bug: the primary commits as soon as it has prepared,
 * without a quorum. The simulator must catch it. */
extern bool pc__vsr_bug_commit_without_quorum;

/* Bytes pc_vsr_init needs for this config (struct, slot array and body
 * ring, laid out in the caller's memory), or 0 if the config is invalid. */
size_t pc_vsr_size(const pc_vsr_config_t *config);
/* Initializes a replica over caller memory of pc_vsr_size(config) bytes
 * (aligned for any type, e.g. from malloc), with an empty journal. Then
 * pc_vsr_load() each intact journal entry found on disk and pc_vsr_start()
 * once. Errors: PC_EINVAL (bad config). */
int pc_vsr_init(pc_vsr_t *r, const pc_vsr_config_t *config);
/* Hands over one intact, durable journal entry read at recovery, before
 * pc_vsr_start. An entry older than what its slot already holds is ignored;
 * pc_vsr_start drops entries outside (checkpoint_op, checkpoint_op +
 * journal_slots] (an entry at checkpoint_op with the checkpoint's checksum
 * is kept as the anchor header). */
void pc_vsr_load(pc_vsr_t *r, const pc_vsr_header_t *header, const void *body);
/* Recovery with a redundant header ring (a second, header-only copy of each
 * journal slot, written with the prepare), before pc_vsr_start. The shell
 * reads both copies of each slot and tells VSR what the disk proves:
 *   - both intact and equal, or the prepare intact and the header copy
 *     damaged, older or never written: pc_vsr_load (the entry);
 *   - the header copy intact and the prepare damaged, older or never
 *     written: pc_vsr_load_header (the replica knows which header it held
 *     durably, so it may have acknowledged it, but must repair the body);
 *   - both damaged, or both intact for the same op with different
 *     checksums (which one is newer cannot be told): pc_vsr_load_faulty
 *     (slot index): the replica may have acknowledged anything at the op
 *     this slot stands for, so it nacks nothing there in a view change.
 * A slot never written needs no call: it proves the op was never written
 * here. The fault model the replica relies on: a disk fault damages at most
 * one of the two copies of a slot's latest write (the other stays intact),
 * so a slot never silently shows an older entry than one it acknowledged. */
void pc_vsr_load_header(pc_vsr_t *r, const pc_vsr_header_t *header);
void pc_vsr_load_faulty(pc_vsr_t *r, uint32_t slot);

/* What the shell read from its superblock and checkpoint at startup. */
typedef struct pc_vsr_start_info {
    uint32_t view, log_view;
    /* Head of the log when log_view began (from the superblock), or the root
     * header for a fresh replica; all zero is also accepted for "none". */
    pc_vsr_header_t head;
    uint64_t checkpoint_op;        /* the state machine's durable checkpoint */
    pc_u128 checkpoint_checksum;   /* its prepare header's checksum (root's at 0) */
    bool fresh, untrusted;
} pc_vsr_start_info_t;
/* Starts the replica. The state machine is at checkpoint_op, so commit_min
 * starts there (0 and the root checksum for a fresh cluster).
 * `fresh`: a newly formatted cluster, start in view 0 as normal. Otherwise
 * the replica is RECOVERING. `untrusted`: the journal may hold undetected
 * damage (its disk suffered faults), so the replica must not vote in a view
 * change until it has re-verified its log against a start_view head. */
void pc_vsr_start(pc_vsr_t *r, const pc_vsr_start_info_t *s, pc_vsr_output_t *out);

void pc_vsr_output_reset(pc_vsr_output_t *out);
void pc_vsr_on_tick(pc_vsr_t *r, pc_vsr_output_t *out);
/* A message from a peer. body: m->header.body_size bytes for PREPARE, not
 * verified by the shell (VSR checks size <= body_max and body_checksum and
 * drops bad ones); may be NULL for other commands. */
void pc_vsr_on_message(pc_vsr_t *r, const pc_vsr_message_t *m, const uint8_t *body,
                       pc_vsr_output_t *out);
/* A client request. Accepted (PC_OK) only by a primary in normal status with
 * room in its pipeline and journal window; otherwise PC_EBUSY (not primary,
 * view change, pipeline full, or the next op would exceed checkpoint_op +
 * journal_slots: checkpoint, then retry) and the client retries.
 * client == 0 marks a grouped body (many client requests packed by the
 * shell, deduplicated by its state machine): no in-pipeline duplicate check.
 * Otherwise a request already in the pipeline is ignored (PC_OK) — the state
 * machine's sessions dedup the rest. body_size is 0..body_max (0: an empty
 * prepare that only advances cluster time). timestamp_ns is the shell's
 * clock reading; the primary keeps cluster time monotonic. Errors: PC_EBUSY
 * (as above), PC_EINVAL (body_size > body_max). */
int pc_vsr_on_request(pc_vsr_t *r, pc_u128 client, uint64_t request, uint8_t operation,
                      const void *body, uint32_t body_size, uint64_t timestamp_ns,
                      pc_vsr_output_t *out);
/* The journal write of (op, checksum) is durable. */
void pc_vsr_on_write_done(pc_vsr_t *r, uint64_t op, pc_u128 checksum, pc_vsr_output_t *out);
/* The superblock write of (view, log_view) is durable. */
void pc_vsr_on_persist_done(pc_vsr_t *r, uint32_t view, uint32_t log_view, pc_vsr_output_t *out);
/* The shell has durably saved the state machine through `op`
 * (checkpoint_op < op <= commit_min). The replica's window moves up: slots
 * of ops <= op may be reused. When is shell policy; it must be at least
 * every journal_slots / 2 committed ops. */
void pc_vsr_on_checkpoint(pc_vsr_t *r, uint64_t op, pc_vsr_output_t *out);
/* State sync finished: the state machine is now durably at checkpoint `op`
 * (copied from a peer), whose prepare header checksum is `checksum`. The
 * shell calls it only with op > info.commit_min (it must not install an
 * older checkpoint over newer state); otherwise it is ignored. The replica
 * sets checkpoint_op = commit_min = op, forgets journal entries <= op and
 * repairs and commits above it. */
void pc_vsr_on_sync_done(pc_vsr_t *r, uint64_t op, pc_u128 checksum, pc_vsr_output_t *out);

/* Header checksum (over the bytes after the checksum field) and the root. */
pc_u128 pc_vsr_header_checksum(const pc_vsr_header_t *h);
void pc_vsr_root(pc_u128 cluster, pc_vsr_header_t *out);

/* Inspection for the shell, tests and checkers. */
typedef struct pc_vsr_info {
    uint8_t replica;
    uint8_t status; /* pc_vsr_status_t */
    bool primary;
    bool untrusted;
    bool diverged; /* its applied log was contradicted: a protocol bug */
    uint32_t view, log_view;
    uint64_t op, commit_min, commit_max;
    /* A primary: its log's head when it began leading the view. An earlier
     * primary may have acknowledged any op up to it (a quorum had it, the
     * commit had not reached the others), so until commit_min reaches it
     * this primary's state and sessions may lack acknowledged requests:
     * it must not answer reads or session lookups from them yet. */
    uint64_t view_start_op;
    uint64_t checkpoint_op;
    bool sync_wanted; /* asking the shell for state sync */
} pc_vsr_info_t;
void pc_vsr_info(const pc_vsr_t *r, pc_vsr_info_t *out);
/* Whether a replica's state holds every request that may have been
 * acknowledged: it applied all it knows committed and, as a primary, every
 * op of the log it began its view with. A primary answers reads and
 * session lookups only then (a read served before would miss an
 * acknowledged transfer). */
bool pc_vsr_caught_up(const pc_vsr_info_t *info);
/* The header at op if the replica holds one (not necessarily verified;
 * ops at or below checkpoint_op only while their slot is not reused). */
bool pc_vsr_header_at(const pc_vsr_t *r, uint64_t op, pc_vsr_header_t *out);

#endif /* PC_VSR_H */
