/*
 * storage.h — a replica's data directory: superblock, write-ahead log,
 * checkpoints and the transfer store.
 *
 *   DIR/superblock        format parameters, checksummed, written once
 *   DIR/wal-<20 digits>   WAL segments (preallocated, named by first op)
 *   DIR/checkpoint-a|b    two alternating checkpoint slots; newest valid wins
 *   DIR/transfers         stored transfer slots (fixed 160-byte records)
 *   DIR/journal           replicated units only: the VSR journal ring and,
 *                         after it, its header ring (a second copy of each
 *                         slot's header)
 *   DIR/vsr-state         replicated units only: the durable view state
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
 * A unit is one replica (replica_count 1: the WAL is its log) or three
 * (replica_count 3: VSR's journal is its log, see the last section; the WAL
 * functions then refuse with PC_EINVAL).
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
    uint32_t replica;       /* below replica_count */
    uint32_t replica_count; /* 1 (WAL) or PC_REPLICAS_PER_UNIT = 3 (VSR journal) */
    uint32_t accounts_max;
    uint64_t transfers_max;
    uint32_t pending_max;
    uint32_t journal_slots;        /* replica_count 3: VSR journal ring size,
                                    * PC_JOURNAL_SLOTS_MIN..LIMIT; replica_count 1: 0 */
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

/* Creates DIR (if missing) and a fresh data set; with replica_count 3 also
 * DIR/journal, preallocated to PC_JOURNAL_FILE_SIZE(journal_slots) bytes (the
 * slots, then the header ring; DIR/vsr-state is created by the first
 * pc_storage_vsr_state_write).
 * Errors: PC_EEXIST (already formatted), PC_EIO, PC_ENOSPC (no journal is
 * left behind), PC_EINVAL (replica_count not 1 or 3, replica not below it,
 * journal_slots outside PC_JOURNAL_SLOTS_MIN..PC_JOURNAL_SLOTS_LIMIT with 3
 * replicas or not 0 with 1, a zero limit). */
int pc_storage_format(const char *dir, const pc_storage_info_t *info);

/* Opens a formatted directory (takes an exclusive lock on it), and for a
 * replicated unit its journal. A journal made before the header ring existed
 * (exactly journal_slots * PC_JOURNAL_SLOT_SIZE bytes) gets an empty header
 * ring appended (fallocate, fsync; one log line): every slot's header copy
 * then reads as never written until the slot is next written.
 * Errors: PC_ENOTFOUND (not formatted), PC_ECORRUPT (also: the journal is
 * missing or of neither size), PC_EVERSION, PC_EBUSY (another process has it
 * open), PC_ENOSPC (no room to add the header ring), PC_EIO. */
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
 * Errors: PC_ECORRUPT, PC_EIO, PC_ESTATE, or the callback's return;
 * PC_EINVAL for a replicated unit (it has no WAL: VSR recovers its journal). */
int pc_storage_wal_replay(pc_storage_t *storage, const pc_checkpoint_info_t *from,
                          pc_wal_replay_fn fn, void *ctx);

/* Op and header checksum of the last WAL entry (after replay/appends). When
 * the WAL is empty behind a checkpoint, the checkpoint's op and wal_checksum;
 * 0 and 0 on a fresh data set. */
uint64_t pc_storage_wal_op(const pc_storage_t *storage);
pc_u128 pc_storage_wal_checksum(const pc_storage_t *storage);

/* ---- normal operation ---- */

/* Makes sure the next WAL append of up to wal_bytes body bytes and the next
 * slots_count slots will not run out of space (fallocate ahead). A
 * replicated unit reserves only slots (wal_bytes must be 0).
 * Errors: PC_EINVAL (wal_bytes over PC_PREPARE_BODY_MAX, or not 0 for a
 * replicated unit), PC_ENOSPC, PC_EIO, PC_ESTATE. */
int pc_storage_reserve(pc_storage_t *storage, uint64_t wal_bytes, uint64_t slots_count);

/* Appends entry op = pc_storage_wal_op() + 1 with the body gathered from iov
 * (total at most PC_PREPARE_BODY_MAX). Fills the header's checksums and
 * parent. Not durable until pc_storage_wal_sync. Rotates segments as needed.
 * Errors: PC_EINVAL (body too large, or more than IOV_MAX - 2 iovecs, or a
 * replicated unit), PC_ENOSPC (nothing appended), PC_EIO, PC_ESTATE. */
int pc_storage_wal_append(pc_storage_t *storage, uint64_t timestamp, const struct iovec *iov,
                          int iov_count, pc_wal_header_t *header_out);

/* fdatasync of the WAL: one call covers every entry appended before it.
 * Errors: PC_EIO (the storage is then failed), PC_ESTATE, PC_EINVAL (a
 * replicated unit). */
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
 * Replicated unit: info->op is the VSR op the state reached and
 * info->wal_checksum what VSR wants recorded with it; neither is checked
 * against the WAL (there is none) and nothing is pruned, but op still must
 * not go below the newest checkpoint's.
 * Errors: PC_EINVAL, PC_EIO, PC_ENOSPC (the previous checkpoint stays valid),
 * PC_ESTATE. */
int pc_storage_checkpoint_write(pc_storage_t *storage, const pc_checkpoint_info_t *info,
                                const void *blob);

/* WAL bytes appended since the last pc_storage_checkpoint_write call (after
 * open: the bytes replayed after the loaded checkpoint), to decide when to
 * take one. */
uint64_t pc_storage_wal_bytes_since_checkpoint(const pc_storage_t *storage);

/* ---- replicated units: the VSR journal and view state ----
 *
 * A unit of 3 replicas (info.replica_count == 3) does not use the WAL above:
 * its log is the VSR journal, a ring of info.journal_slots fixed slots in
 * DIR/journal, each PC_JOURNAL_SLOT_SIZE bytes: the prepare's 128-byte header
 * at the slot's start, its body right after. After the slots (at
 * PC_JOURNAL_RING_OFFSET) lies the header ring: one PC_JOURNAL_RING_ENTRY_SIZE
 * entry per slot holding a second copy of the slot's header, sealed by
 * storage with a checksum seeded by the slot, written by every journal write
 * and covered by the same journal sync. It lets recovery tell "this slot
 * held entry X, whose body is now damaged" from "this slot is unreadable".
 * The journal is created (preallocated) by pc_storage_format and opened by
 * pc_storage_open. Storage treats headers and bodies as opaque bytes: the
 * caller verifies them (a torn or rotten slot is for VSR to repair from
 * peers; a failed write may leave its slot torn). Only the header ring's
 * seal is storage's own. In this mode pc_storage_checkpoint_write does not
 * check or prune the WAL, and pc_storage_wal_replay, _wal_append and
 * _wal_sync return PC_EINVAL (they do not assert: a caller can tell).
 *
 * DIR/vsr-state holds the replica's durable view state (view, log_view, head
 * header — opaque bytes here) in two alternating checksummed 4 KiB copies, so
 * a torn write of one leaves the other.
 *
 * Every function below answers PC_EINVAL on a single-replica storage and
 * PC_ESTATE once the storage has failed. */
#define PC_JOURNAL_SLOT_SIZE (PC_HEADER_SIZE + PC_VSR_PREPARE_BODY_MAX + 3968u)
#define PC_VSR_STATE_MAX 1024u
/* The header ring: entry i (for slot i) at PC_JOURNAL_RING_OFFSET(slots) +
 * i * PC_JOURNAL_RING_ENTRY_SIZE; the ring is padded to whole 4 KiB pages. */
#define PC_JOURNAL_RING_ENTRY_SIZE 256u
#define PC_JOURNAL_RING_OFFSET(slots) ((uint64_t)(slots) * PC_JOURNAL_SLOT_SIZE)
#define PC_JOURNAL_RING_SIZE(slots) \
    (((uint64_t)(slots) * PC_JOURNAL_RING_ENTRY_SIZE + 4095u) / 4096u * 4096u)
#define PC_JOURNAL_FILE_SIZE(slots) (PC_JOURNAL_RING_OFFSET(slots) + PC_JOURNAL_RING_SIZE(slots))

/* Writes header (128 bytes) and body (body_size <= PC_VSR_PREPARE_BODY_MAX;
 * body may be NULL when 0) into slot (< journal_slots) with one pwritev, then
 * the header's sealed copy into the slot's header-ring entry (one pwrite).
 * Not durable until pc_storage_journal_sync, which covers both. A crash
 * before that may leave either copy old, new or torn. Errors: PC_EINVAL
 * (nothing written), PC_ENOSPC (only on file systems that allocate on
 * overwrite), PC_EIO (the storage is then failed), PC_ESTATE. */
int pc_storage_journal_write(pc_storage_t *storage, uint32_t slot, const void *header,
                             const void *body, uint32_t body_size);
/* fdatasync of the journal: covers every journal write before it.
 * Errors: PC_EIO (storage failed), PC_ESTATE, PC_EINVAL. */
int pc_storage_journal_sync(pc_storage_t *storage);
/* Reads size bytes at offset within slot (offset + size <= slot size),
 * unverified. Errors: PC_EINVAL, PC_ECORRUPT (the file was cut short), PC_EIO,
 * PC_ESTATE. */
int pc_storage_journal_read(pc_storage_t *storage, uint32_t slot, uint32_t offset, void *buf,
                            uint32_t size);
/* Reads slot's header-ring copy (the 128 header bytes last written to the
 * slot) into header. PC_OK: the entry's seal holds (its checksum, magic and
 * slot number), so these bytes are what some completed journal write gave
 * this slot; the caller still verifies them as a header (a torn journal write
 * may have sealed a header whose prepare never landed whole).
 * Errors: PC_ENOTFOUND (never written: all zeros; header zeroed),
 * PC_ECORRUPT (damaged, or an entry written for another slot: named in the
 * log with file and offset; header zeroed), PC_EINVAL, PC_EIO, PC_ESTATE. */
int pc_storage_journal_header_read(pc_storage_t *storage, uint32_t slot, void *header);
/* Durably writes the view state (size <= PC_VSR_STATE_MAX) over the copy not
 * holding the newest valid state, synced before it returns (the first call
 * creates DIR/vsr-state and syncs the directory too).
 * Errors: PC_EINVAL, PC_ENOSPC (creating the file), PC_EIO, PC_ESTATE. */
int pc_storage_vsr_state_write(pc_storage_t *storage, const void *state, uint32_t size);
/* Reads the newest valid copy into state (size bytes, must equal the size
 * written: a copy of another size counts as invalid). Errors: PC_ENOTFOUND
 * (never written: a fresh replica), PC_ECORRUPT (written, but no copy is
 * valid; the log names the file and both offsets), PC_EINVAL, PC_EIO,
 * PC_ESTATE. */
int pc_storage_vsr_state_read(pc_storage_t *storage, void *state, uint32_t size);

/* Test-only fault switch: when set, wal_sync and journal_sync return PC_OK
 * without syncing. */
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
