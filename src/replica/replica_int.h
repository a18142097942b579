/*
 * replica_int.h — private to src/replica: the body of a replica process and
 * the pieces its files share.
 *
 *   replica.c  the process: init, the event loop, client connections,
 *              request intake, replies; the single-replica commit (one WAL
 *              append and one fsync per loop turn)
 *   machine.c  the state machine around the ledger: apply a committed entry
 *              (exactly once per session), serve reads, checkpoint, recover
 *   unit.c     a replica of a 3-replica unit: the VSR step function driven
 *              over TCP, the journal, ticks, checkpoints and state sync
 *
 * A committed entry body is the same in both modes: the request messages
 * (header + body) the primary grouped, back to back.
 */
#ifndef PC_REPLICA_INT_H
#define PC_REPLICA_INT_H

#include <sys/epoll.h>

#include "../ledger/ledger.h"
#include "../net/net.h"
#include "../storage/storage.h"
#include "../vsr/vsr.h"
#include "replica.h"

#define REPLICA_EPOLL_EVENTS_MAX 256
#define REPLICA_REBUILD_CHUNK_SLOTS 4096u
/* epoll tags: client/peer-inbound connections use their index. */
#define REPLICA_TAG_LISTEN UINT32_MAX
#define REPLICA_TAG_PEER 0x40000000u /* + replica index: outbound peer link */
/* VSR ticks are this long; its timeouts count ticks. */
#define REPLICA_TICK_NS 10000000ull
/* Refusals of messages without a valid cluster-key MAC are logged at most
 * this often (a flood must not flood the log); the counts are cumulative. */
#define REPLICA_REFUSED_LOG_NS 1000000000ull
/* Outbound bytes queued per peer (a pipeline of prepares and then some);
 * beyond it a message is dropped, which VSR treats as network loss. */
#define REPLICA_PEER_WRITER_BYTES (24u << 20)
#define REPLICA_INFLIGHT_MAX (2u * PC_VSR_PIPELINE_MAX)

typedef struct conn {
    int fd; /* -1: free */
    uint32_t generation;
    bool busy;        /* has a request in the current prepare: parse nothing more */
    bool parse_again; /* parsing stopped for lack of prepare room, not bytes */
    bool peer;        /* an inbound link from another replica of the unit */
    pc_reader_t reader;
    pc_writer_t writer;
} conn_t;

/* A request placed in a prepare body, and the connection awaiting its reply. */
typedef struct prepared {
    int32_t conn; /* -1 when the connection closed meanwhile */
    uint32_t generation;
    uint32_t offset; /* of the request message within the prepare body */
} prepared_t;

/* Primary of a unit: a prepare in flight, whose requests await replies. */
typedef struct inflight {
    uint64_t op; /* 0: free */
    pc_u128 checksum;
    uint32_t count;
    prepared_t prepared[PC_PREPARE_REQUESTS_MAX];
    pc_header_t headers[PC_PREPARE_REQUESTS_MAX]; /* to answer them if not committed here */
} inflight_t;

/* Outbound link to a peer replica (messages go out on it; the peer's own
 * outbound link to us brings its messages in as a conn with peer set). */
typedef struct peer {
    int fd; /* -1: down */
    bool connecting;
    uint64_t retry_ns;
    pc_writer_t writer;
} peer_t;

typedef struct replica {
    const pc_replica_options_t *options;
    pc_storage_t *storage;
    const pc_storage_info_t *info;
    pc_ledger_t *ledger;
    pc_sessions_t *sessions;
    pc_cluster_t cluster; /* the cluster map (cluster.c); zero until set_cluster */
    /* The cluster key (options->cluster_key): NULL, open. Every message
     * taken must carry a valid MAC under it, every message sent carries one. */
    pc_cluster_key_t *key;
    /* Messages refused for a missing or bad MAC, by kind, since start. */
    struct {
        uint64_t peer_frames, client_requests;
        uint64_t logged_ns;       /* when the counts were last logged */
        bool pending;             /* counts changed since */
        char last_source[64];     /* HOST:PORT of the latest */
    } refused;
    int listen_fd, epoll_fd;
    conn_t *conns;
    /* Requests gathered this loop turn (the next prepare). */
    uint8_t *prepare_body;
    uint32_t prepare_size, prepare_count, prepare_size_max;
    uint64_t prepare_events;
    prepared_t prepared[PC_PREPARE_REQUESTS_MAX];
    uint64_t timestamp_last; /* cluster time of the last prepare */
    uint64_t checkpoint_retry_ns; /* after a failed checkpoint, not before this */
    uint64_t applied_op;          /* last op applied to the state machine */
    uint64_t checkpoint_op;       /* the newest durable checkpoint's op */
    pc_u128 applied_checksum;     /* its header checksum (replicated units) */
    /* Scratch, sized at init. */
    pc_create_result_t *results;
    uint64_t *locs;
    uint8_t *reply_body;
    pc_transfer_slot_t *slot_buf;

    /* Replicated units only (vsr != NULL). */
    pc_vsr_t *vsr;
    size_t vsr_size;
    pc_vsr_output_t *out;
    char addresses[PC_VSR_REPLICAS][64];
    peer_t peers[PC_VSR_REPLICAS];
    inflight_t inflight[REPLICA_INFLIGHT_MAX];
    uint64_t tick_next_ns;
    uint32_t logged_view, logged_status; /* last view/status put in the log */
    /* State sync: serving a peer that fell behind, and being served. */
    struct {
        bool active;
        uint8_t to;
        pc_checkpoint_info_t info;
        uint8_t *blob;
        uint64_t blob_sent, slot_next;
    } serve;
    struct {
        bool active;
        uint8_t from;
        uint64_t op_min;
        uint64_t started_ns;
        uint64_t deadline_ns; /* no progress by then: ask again */
        uint8_t *blob;
        uint64_t blob_size, blob_received;
    } sync;
    uint32_t written_count;
    struct {
        uint64_t op;
        pc_u128 checksum;
    } written[PC_VSR_OUT_WRITES_MAX * 16]; /* journal writes awaiting this turn's sync */
    /* A full disk (unit.c, "a full disk"): what could not be written yet.
     * Committed ops wait in deferred (a ring of journal_slots entries, their
     * bodies still in VSR's journal ring) until the transfer store has room;
     * a failed checkpoint is retried at checkpoint_retry_ns; a view state
     * that could not be created waits in persist_pending. While any of them
     * waits, the replica refuses client writes with PC_ENOSPC. */
    bool nospace_apply, nospace_checkpoint, nospace_persist;
    /* A single replica: its last WAL append failed for space (its failed
     * checkpoint sets nospace_checkpoint as a unit's does). */
    bool nospace_wal;
    uint64_t nospace_refused; /* client requests refused since the disk filled */
    uint64_t nospace_refused_total; /* and since start (replica_status) */
    bool nospace_silent;      /* a full primary, silent to its peers (unit.c) */
    uint64_t space_retry_ns;  /* deferred commits: next reserve attempt */
    pc_vsr_commit_out_t *deferred;
    uint32_t deferred_first, deferred_count;
    bool persist_pending;
    uint32_t persist_view, persist_log_view;
    pc_vsr_header_t persist_head;
} replica_t;

/* An informational line, unless the replica runs --quiet. */
#define replica_log(r, ...)                                                            \
    do {                                                                               \
        if (!(r)->options->quiet) pc_log("replica", "info", __VA_ARGS__);              \
    } while (0)

/* Whether a write this replica needs failed for space and has not gone
 * through since (a unit's: it still waits; a single replica's WAL append:
 * its requests were refused, and the next append tells). */
static inline bool pc__replica_disk_full(const replica_t *r) {
    return r->nospace_apply || r->nospace_checkpoint || r->nospace_persist || r->nospace_wal;
}

/* Counts client requests refused with PC_ENOSPC: in this episode (the log
 * line when space returns) and since start (replica_status). */
static inline void pc__replica_nospace_refused(replica_t *r, uint64_t count) {
    r->nospace_refused += count;
    r->nospace_refused_total += count;
    PC_ASSERT(r->nospace_refused <= r->nospace_refused_total);
}

/* replica.c */
void pc__replica_send_reply(replica_t *r, conn_t *c, const pc_header_t *req, int status,
                            const pc_session_reply_t *reply, const void *body,
                            uint32_t body_size);
void pc__replica_conn_close(replica_t *r, uint32_t ci);
void pc__replica_conn_flush(replica_t *r, uint32_t ci);
/* Replies status (no body) to every request gathered in prepared[0..count). */
void pc__replica_fail_prepared(replica_t *r, const uint8_t *body, const prepared_t *prepared,
                               uint32_t count, int status, uint64_t hint);

/* machine.c */
/* Applies one committed entry. With prepared (the primary's live path) it
 * replies to each request's connection as it goes. */
int pc__machine_commit(replica_t *r, uint64_t op, uint64_t timestamp, const uint8_t *body,
                       uint32_t size, const prepared_t *prepared, uint32_t prepared_count);
void pc__machine_serve_read(replica_t *r, conn_t *c, const pc_header_t *h, const void *body);
/* Checkpoints the state at op (WAL checksum or VSR header checksum). */
int pc__machine_checkpoint(replica_t *r, uint64_t op, pc_u128 checksum);
/* Loads the newest checkpoint and rebuilds the transfer index. */
int pc__machine_recover(replica_t *r, pc_checkpoint_info_t *ck);
/* Gives the replica a fresh, empty ledger and session table sized from the
 * superblock, replacing any it had (at start, and before loading a checkpoint
 * received by state sync). */
int pc__machine_reset(replica_t *r);
int pc__machine_replay_entry(void *ctx, const pc_wal_header_t *header, const void *body);

/* unit.c */
int pc__unit_init(replica_t *r);
void pc__unit_deinit(replica_t *r);
/* Events on an outbound peer link. */
void pc__unit_peer_event(replica_t *r, uint32_t peer, uint32_t events);
/* A replica frame arrived on client connection ci (a peer's inbound link). */
void pc__unit_on_frame(replica_t *r, uint32_t ci, const pc_header_t *h, const void *body);
/* Whether peer frames may be taken this turn (room for their journal writes). */
bool pc__unit_can_take_frames(const replica_t *r);
/* A client request reaching a replica that is not a normal primary:
 * returns the error to answer (PC_ENOT_PRIMARY / PC_ENOTREADY) or PC_OK. */
int pc__unit_request_gate(replica_t *r, uint64_t *hint);
/* End of a loop turn: submit the gathered prepare, sync the journal, tick. */
void pc__unit_turn(replica_t *r);
/* Milliseconds until the unit needs the loop again (next tick). */
int pc__unit_timeout_ms(const replica_t *r);
/* replica_status: fills the VSR part (view, state, primary, op, commit_max). */
void pc__unit_status(replica_t *r, pc_replica_status_t *out);

#endif /* PC_REPLICA_INT_H */
