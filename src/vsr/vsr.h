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
 * (op, checksum) it lacks. Journal slots are indexed by op (no ring wrap):
 * a unit serves at most PC_VSR_JOURNAL_SLOTS_MAX - 1 ops until checkpoints
 * and state transfer exist (see docs/DESIGN.md).
 */
#ifndef PC_VSR_H
#define PC_VSR_H

#include "../base/base.h"

#define PC_VSR_REPLICAS 3u
#define PC_VSR_QUORUM 2u
/* Uncommitted prepares the primary keeps in flight. */
#define PC_VSR_PIPELINE_MAX 8u
/* Journal slots (ops) per replica; op 0 is the root. */
#define PC_VSR_JOURNAL_SLOTS_MAX 1024u
/* Body of one prepare: one client request (a small batch in the simulator). */
#define PC_VSR_BODY_MAX 640u
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
    PC_VSR_PREPARE = 1,         /* header + body; from the primary, or a repair answer */
    PC_VSR_PREPARE_OK,          /* op + checksum: durable on the sender */
    PC_VSR_COMMIT,              /* heartbeat: commit + checksum of that op */
    PC_VSR_START_VIEW_CHANGE,   /* view */
    PC_VSR_DO_VIEW_CHANGE,      /* view, log_view, op, commit, headers */
    PC_VSR_START_VIEW,          /* view, op, commit, headers */
    PC_VSR_REQUEST_START_VIEW,  /* view: "tell me the current view" */
    PC_VSR_REQUEST_PREPARE,     /* op + checksum: "send me this entry" */
} pc_vsr_command_t;

/* A replica-to-replica message. Fixed size, so the shell can copy it. */
typedef struct pc_vsr_message {
    uint8_t command; /* pc_vsr_command_t */
    uint8_t from;    /* sending replica */
    uint8_t headers_count;
    uint8_t repair;  /* PREPARE: an answer to request_prepare, not ordering */
    uint32_t view;
    uint32_t log_view;
    uint64_t op;
    uint64_t commit;
    pc_u128 checksum;
    pc_vsr_header_t header; /* PREPARE */
    /* DO_VIEW_CHANGE / START_VIEW: headers of the log's suffix, newest
     * first; durable[i] says whether the sender holds headers[i] on disk. */
    pc_vsr_header_t headers[PC_VSR_VIEW_HEADERS_MAX];
    uint8_t durable[PC_VSR_VIEW_HEADERS_MAX];
    uint8_t body[PC_VSR_BODY_MAX]; /* PREPARE: header.body_size bytes */
} pc_vsr_message_t;

typedef struct pc_vsr_config {
    uint8_t replica;      /* this replica's index, 0..2 */
    uint8_t replica_count;/* must be 3 */
    uint32_t journal_slots; /* 2..PC_VSR_JOURNAL_SLOTS_MAX */
    pc_u128 cluster;      /* seeds the root header */
} pc_vsr_config_t;

/* What one step asks the shell to do. Pointers into the replica (write and
 * commit bodies) stay valid until the next call into the same replica. */
typedef struct pc_vsr_send {
    uint8_t to;
    pc_vsr_message_t message;
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

size_t pc_vsr_size(void);
/* Initializes a replica over caller memory of pc_vsr_size() bytes, with an
 * empty journal. Then pc_vsr_load() each intact journal entry found on disk
 * and pc_vsr_start() once. Errors: PC_EINVAL (bad config). */
int pc_vsr_init(pc_vsr_t *r, const pc_vsr_config_t *config);
/* Hands over one intact, durable journal entry read at recovery. */
void pc_vsr_load(pc_vsr_t *r, const pc_vsr_header_t *header, const void *body);
/* Starts from the superblock (view, log_view, head header of log_view; all
 * zero for a fresh replica). `fresh`: a newly formatted cluster, start in
 * view 0 as normal. Otherwise the replica is RECOVERING. `untrusted`: the
 * journal may hold undetected damage (its disk suffered faults), so the
 * replica must not vote in a view change until it has re-verified its log
 * against a start_view head. */
void pc_vsr_start(pc_vsr_t *r, uint32_t view, uint32_t log_view, const pc_vsr_header_t *head,
                  bool fresh, bool untrusted, pc_vsr_output_t *out);

void pc_vsr_output_reset(pc_vsr_output_t *out);
void pc_vsr_on_tick(pc_vsr_t *r, pc_vsr_output_t *out);
void pc_vsr_on_message(pc_vsr_t *r, const pc_vsr_message_t *m, pc_vsr_output_t *out);
/* A client request. Accepted (PC_OK) only by a primary in normal status with
 * room in its pipeline; otherwise PC_EBUSY (not primary, view change,
 * pipeline or journal full) and the client retries. A request already in the
 * pipeline is ignored (PC_OK) — the state machine's sessions dedup the rest.
 * timestamp_ns is the shell's clock reading; the primary keeps cluster time
 * monotonic. */
int pc_vsr_on_request(pc_vsr_t *r, pc_u128 client, uint64_t request, uint8_t operation,
                      const void *body, uint32_t body_size, uint64_t timestamp_ns,
                      pc_vsr_output_t *out);
/* The journal write of (op, checksum) is durable. */
void pc_vsr_on_write_done(pc_vsr_t *r, uint64_t op, pc_u128 checksum, pc_vsr_output_t *out);
/* The superblock write of (view, log_view) is durable. */
void pc_vsr_on_persist_done(pc_vsr_t *r, uint32_t view, uint32_t log_view, pc_vsr_output_t *out);

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
} pc_vsr_info_t;
void pc_vsr_info(const pc_vsr_t *r, pc_vsr_info_t *out);
/* The header at op if the replica holds one (not necessarily verified). */
bool pc_vsr_header_at(const pc_vsr_t *r, uint64_t op, pc_vsr_header_t *out);

#endif /* PC_VSR_H */
