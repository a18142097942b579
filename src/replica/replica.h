/*
 * replica.h — one paycell replica process: recovery from the data
 * directory, a single-threaded epoll loop speaking the binary protocol,
 * group commit (every request that arrived in one loop turn shares one WAL
 * append and one fsync), apply in the ledger, replies only after the fsync.
 *
 * A data directory formatted with --replica-count 3 runs as one replica of
 * a unit: the same loop, with VSR (src/vsr) ordering prepares and a quorum of
 * durable journals before any reply.
 */
#ifndef PC_REPLICA_H
#define PC_REPLICA_H

#include "../base/base.h"

/* Client sessions: for each client, the last committed create request and
 * its reply, so a retried request is answered from here and never applied
 * twice. Deterministic (rebuilt by WAL replay, saved in checkpoints). */
typedef struct pc_sessions pc_sessions_t;

typedef struct pc_session_reply {
    uint64_t session;
    uint64_t request;
    uint64_t op;
    uint64_t timestamp;
    uint8_t operation;
    uint32_t body_size;
    const uint8_t *body; /* valid until the session's next commit */
} pc_session_reply_t;

int pc_sessions_init(pc_sessions_t **out);
void pc_sessions_deinit(pc_sessions_t *sessions);
/* Registers client at op (the session number); evicts the least recently
 * committed session when the table is full. */
void pc_sessions_register(pc_sessions_t *sessions, pc_u128 client, uint64_t op);
/* Looks up a client's session. Errors: PC_ESESSION_EVICTED (not found, or
 * session number differs). */
int pc_sessions_get(const pc_sessions_t *sessions, pc_u128 client, uint64_t session,
                    pc_session_reply_t *last);
/* Records the reply of a committed create request. */
void pc_sessions_commit(pc_sessions_t *sessions, pc_u128 client, const pc_session_reply_t *reply);
size_t pc_sessions_snapshot_size(const pc_sessions_t *sessions);
size_t pc_sessions_snapshot_write(const pc_sessions_t *sessions, void *buf, size_t size);
/* Errors: PC_ECORRUPT. */
int pc_sessions_snapshot_read(pc_sessions_t *sessions, const void *buf, size_t size);
uint32_t pc_sessions_count(const pc_sessions_t *sessions);

/* The cluster map (cluster.c): one pc_cluster_t per replica, zeroed (epoch 0,
 * no units) until the first set_cluster. Replicated like the session table:
 * changed only by committed entries, saved in checkpoints. Only the GZone's
 * map is used; any unit may hold one. */

/* Stateless checks of a set_cluster record, in order: reserved fields,
 * units_count, bucket owners, unit addresses. Returns the first failing
 * pc_set_cluster_result, or PC_CLUSTER_RESULT_created when all pass. */
uint32_t pc_cluster_check(const pc_cluster_t *record);
/* set_cluster: the checks above, then exists (same epoch, same record),
 * cluster_epoch_stale (epoch <= state's), cluster_epoch_gap (epoch > state's
 * + 1), else installs the record in *state and returns created. */
uint32_t pc_cluster_apply(pc_cluster_t *state, const pc_cluster_t *record);
/* get_cluster: event is its 16-byte body, which must be zero.
 * Errors: PC_EINVAL (nonzero event). */
int pc_cluster_get(const pc_cluster_t *state, const void *event, pc_cluster_t *out);
/* A state loaded from a checkpoint: all zero, or a valid record at an epoch
 * above 0. Errors: PC_ECORRUPT. */
int pc_cluster_state_verify(const pc_cluster_t *state);

typedef struct pc_replica_options {
    const char *data_dir;
    const char *listen; /* "HOST:PORT" (a single-replica unit) */
    /* A replica of a 3-replica unit: every replica's address, in replica
     * order; it listens on its own. */
    const char *addresses;
    bool quiet;         /* no log lines except errors */
    /* The GZone's addresses: run the XTS recovery loop (xts_recovery.c)
     * next to this replica. NULL: none (a unit alone, or the GZone). */
    const char *gzone;
    /* The cluster key file (docs/SECURITY.md): every message this replica
     * takes, from peers and clients alike, must carry a valid MAC under it
     * (else it is dropped, its connection closed and counted), and every
     * message it sends carries one. NULL: open, as a dev replica. */
    const char *cluster_key;
} pc_replica_options_t;

/* The payee unit's XTS recovery loop: a thread that, while the replica at
 * `own` is the primary, asks the payer units to abort the unit's payee legs
 * past their timeout and applies their answers (xts_recovery.c); its
 * sessions use cluster_key (a file; NULL: none). Errors: PC_EINVAL,
 * PC_ENOMEM. */
typedef struct pc_xts_recovery pc_xts_recovery_t;
int pc_xts_recovery_start(const char *gzone, const char *own, uint64_t cluster,
                          const char *cluster_key, pc_xts_recovery_t **out);
void pc_xts_recovery_stop(pc_xts_recovery_t *recovery);

/* What `paycell inspect` reports about a stopped replica's data directory. */
typedef struct pc_replica_inspection {
    uint32_t unit, replica, replica_count;
    uint64_t op;            /* the state's op: its checkpoint (plus the WAL, one replica) */
    pc_u128 state_checksum; /* over the ledger state, the session table and the cluster map */
    uint32_t accounts;
    uint64_t transfers;
    uint64_t ids_checked, ids_missing; /* transfer ids read from ids_path */
    uint64_t routing_epoch;            /* the unit's set_routing epoch */
    uint64_t cluster_epoch;            /* the cluster map's epoch (a GZone; else 0) */
} pc_replica_inspection_t;

/* Recovers the state of a data directory (no replica may have it open) and
 * reports it; with ids_path (decimal transfer ids, one per line) counts the
 * ids it lacks. Errors: those of recovery, PC_EBUSY (open elsewhere), PC_EIO
 * (ids file). */
int pc_replica_inspect(const char *data_dir, const char *ids_path,
                       pc_replica_inspection_t *out);

/* Recovers and serves until SIGINT/SIGTERM. Returns PC_OK after a clean stop
 * or a negative pc_err (recovery failed, data corrupt, storage failed). */
int pc_replica_run(const pc_replica_options_t *options);

#endif /* PC_REPLICA_H */
