/*
 * storage.h — a replica's data directory: superblock, write-ahead log,
 * checkpoints and the transfer store.
 *
 *   DIR/superblock        format parameters, checksummed, written once
 *   DIR/wal-<20 digits>   WAL segments (preallocated, named by first op)
 *   DIR/checkpoint-a|b    two alternating checkpoint slots; newest valid wins
 *   DIR/transfers         stored transfer slots (fixed 160-byte records)
 *
 * The WAL is the durable truth: each entry (one "prepare": a group of client
 * requests) has a 128-byte header with a checksum of itself, a checksum of
 * its body and the checksum of the previous entry's header (a hash chain).
 * Everything else is derived and can be rebuilt from an older checkpoint
 * plus the WAL. The transfer store is written without fsync; a checkpoint
 * first syncs it, then records how many slots it covers.
 *
 * Fault handling: a torn or zero tail after the last valid entry is an
 * unacknowledged write and is cut off; a bad entry with a valid entry after
 * it, a broken hash chain, a bad checkpoint in both slots, or a bad slot is
 * corruption (PC_ECORRUPT, named in the log with file and offset). An fsync
 * failure leaves the storage failed: every later call returns PC_ESTATE.
 * ENOSPC is returned as PC_ENOSPC and leaves nothing half-written.
 *
 * This layer knows nothing about ledgers: slots and checkpoint blobs are
 * opaque bytes to it.
 */
#ifndef PC_STORAGE_H
#define PC_STORAGE_H

#include <sys/uio.h>

#include "../base/base.h"

typedef struct pc_storage pc_storage_t;

/* Size of one stored transfer slot; its last 16 bytes are a checksum owned
 * by storage (over the other 144 bytes, seeded with the slot's location, so
 * a slot written to the wrong place is detected). */
#define PC_SLOT_SIZE 160u

/* Format parameters, kept in the superblock. */
typedef struct pc_storage_info {
    uint64_t cluster;
    uint32_t unit;
    uint32_t replica;
    uint32_t replica_count;
    uint32_t accounts_max;
    uint64_t transfers_max;
    uint32_t pending_max;
    uint64_t checkpoint_wal_bytes; /* checkpoint after this much WAL */
} pc_storage_info_t;

/* Header of one WAL entry: 128 bytes on disk. */
typedef struct pc_wal_header {
    pc_u128 checksum;      /* over bytes 16..127 of this header */
    pc_u128 checksum_body; /* over the body */
    pc_u128 parent;        /* checksum of the previous entry's header */
    uint64_t op;           /* 1, 2, 3, ... */
    uint64_t timestamp;    /* cluster time (ns) of this prepare */
    uint32_t body_size;
    uint32_t magic;
    uint32_t version;
    uint32_t reserved_u32;
    /* Highest op known durable (synced) when this entry was written. If an
     * entry is bad but a later valid entry has synced_op below it, the bad
     * entry was never acknowledged: a torn unsynced tail, cut off. If a later
     * entry has synced_op >= the bad op, an acknowledged entry is damaged:
     * corruption, refuse to start. */
    uint64_t synced_op;
    uint8_t reserved[40];
} pc_wal_header_t;

/* What a checkpoint covers. */
typedef struct pc_checkpoint_info {
    uint64_t op;          /* last WAL op included in the state */
    pc_u128 wal_checksum; /* header checksum of the WAL entry at op (0 if op 0) */
    uint64_t slots_count; /* transfer slots the state covers */
    uint64_t blob_size;   /* bytes of the opaque state blob */
} pc_checkpoint_info_t;

/* Creates DIR (if missing) and a fresh data set. Errors: PC_EEXIST (already
 * formatted), PC_EIO, PC_ENOSPC, PC_EINVAL. */
int pc_storage_format(const char *dir, const pc_storage_info_t *info);

/* Opens a formatted directory (takes an exclusive lock on it).
 * Errors: PC_ENOTFOUND (not formatted), PC_ECORRUPT, PC_EVERSION, PC_EBUSY
 * (another process has it open), PC_EIO. */
int pc_storage_open(const char *dir, pc_storage_t **out);
/* Releases the lock and every buffer. Does not sync: entries appended since
 * the last pc_storage_wal_sync are not durable. */
void pc_storage_close(pc_storage_t *storage);
const pc_storage_info_t *pc_storage_info(const pc_storage_t *storage);

/* ---- recovery ---- */

/* Loads the newest valid checkpoint. On a fresh data set *info is all zero
 * and *blob NULL. *blob is malloc'd; the caller frees it.
 * Errors: PC_ECORRUPT (checkpoint files exist but none is valid), PC_EIO. */
int pc_storage_checkpoint_load(pc_storage_t *storage, pc_checkpoint_info_t *info, void **blob);

/* Called for each WAL entry after the checkpoint, in op order. A non-zero
 * return stops the replay and is returned from pc_storage_wal_replay. */
typedef int (*pc_wal_replay_fn)(void *ctx, const pc_wal_header_t *header, const void *body);

/* Replays entries with op > from->op (checking each checksum and the hash
 * chain from from->wal_checksum), cuts a torn tail (one log line on stderr),
 * and positions the WAL for appends after the last valid entry. Entries up to
 * from->op are stepped over by their headers only. Must be called once after
 * open, before any append or reserve. from may be NULL (a fresh data set).
 * Errors: PC_ECORRUPT, PC_EIO, PC_ESTATE, or the callback's return. */
int pc_storage_wal_replay(pc_storage_t *storage, const pc_checkpoint_info_t *from,
                          pc_wal_replay_fn fn, void *ctx);

/* Op and header checksum of the last WAL entry (after replay/appends). When
 * the WAL is empty behind a checkpoint, the checkpoint's op and wal_checksum;
 * 0 and 0 on a fresh data set. */
uint64_t pc_storage_wal_op(const pc_storage_t *storage);
pc_u128 pc_storage_wal_checksum(const pc_storage_t *storage);

/* ---- normal operation ---- */

/* Makes sure the next WAL append of up to wal_bytes body bytes and the next
 * slots_count slots will not run out of space (fallocate ahead).
 * Errors: PC_EINVAL (wal_bytes over PC_PREPARE_BODY_MAX), PC_ENOSPC, PC_EIO,
 * PC_ESTATE. */
int pc_storage_reserve(pc_storage_t *storage, uint64_t wal_bytes, uint64_t slots_count);

/* Appends entry op = pc_storage_wal_op() + 1 with the body gathered from iov
 * (total at most PC_PREPARE_BODY_MAX). Fills the header's checksums and
 * parent. Not durable until pc_storage_wal_sync. Rotates segments as needed.
 * Errors: PC_EINVAL (body too large, or more than IOV_MAX - 2 iovecs),
 * PC_ENOSPC (nothing appended), PC_EIO, PC_ESTATE. */
int pc_storage_wal_append(pc_storage_t *storage, uint64_t timestamp, const struct iovec *iov,
                          int iov_count, pc_wal_header_t *header_out);

/* fdatasync of the WAL: one call covers every entry appended before it.
 * Errors: PC_EIO (the storage is then failed), PC_ESTATE. */
int pc_storage_wal_sync(pc_storage_t *storage);

/* Writes count slots at loc (loc <= current slot count), computing each
 * slot's checksum in place. Not synced.
 * Errors: PC_EINVAL, PC_EIO, PC_ENOSPC, PC_ESTATE. */
int pc_storage_slots_write(pc_storage_t *storage, uint64_t loc, void *slots, uint32_t count);

/* Reads count slots at loc, verifying checksums.
 * Errors: PC_ENOTFOUND (past the end), PC_ECORRUPT, PC_EIO, PC_ESTATE. */
int pc_storage_slots_read(pc_storage_t *storage, uint64_t loc, void *slots, uint32_t count);

/* Slots currently stored; truncation drops slots >= count (recovery). */
uint64_t pc_storage_slots_count(const pc_storage_t *storage);
int pc_storage_slots_truncate(pc_storage_t *storage, uint64_t count);

/* Durably records a checkpoint: syncs the transfer store, writes the older
 * checkpoint slot, syncs it, then removes WAL segments wholly before the
 * older of the two checkpoints now on disk (so a fallback to the older one,
 * when the newer rots, still finds its WAL; with no older valid checkpoint,
 * wholly before info->op). The segment being appended to is never removed.
 * info->op must not exceed pc_storage_wal_op() nor go below the newest
 * checkpoint's op; info->slots_count must not exceed the slot count.
 * Errors: PC_EINVAL, PC_EIO, PC_ENOSPC (the previous checkpoint stays valid),
 * PC_ESTATE. */
int pc_storage_checkpoint_write(pc_storage_t *storage, const pc_checkpoint_info_t *info,
                                const void *blob);

/* WAL bytes appended since the last pc_storage_checkpoint_write call (after
 * open: the bytes replayed after the loaded checkpoint), to decide when to
 * take one. */
uint64_t pc_storage_wal_bytes_since_checkpoint(const pc_storage_t *storage);

/* Test-only fault switch: when set, wal_sync returns PC_OK without syncing. */
extern bool pc__storage_skip_fsync;
/* Test-only: the next fdatasync/fsync the storage issues reports EIO (the
 * switch clears itself), as a failing disk would. */
extern bool pc__storage_fail_next_fsync;
/* Test-only: the next fallocate the storage issues reports ENOSPC (the
 * switch clears itself), as a full disk would. */
extern bool pc__storage_fail_next_alloc;
/* Test-only: WAL segment size (default PC_WAL_SEGMENT_SIZE_MAX / 4); set
 * small before format/open to exercise rotation. */
extern uint64_t pc__storage_segment_size;

#endif /* PC_STORAGE_H */
