/*
 * storage_int.h — private to src/storage: the body of pc_storage_t, the
 * on-disk layouts of the superblock and checkpoint headers, and the small I/O
 * helpers the storage files share (as SQLite keeps its pager internals in
 * *Int.h). Nothing outside src/storage includes this file.
 *
 * The storage is split by concern: storage.c (format, open, close, I/O and
 * error helpers), wal.c (segments, append, sync, reserve), replay.c
 * (recovery of the WAL, torn-tail cutting), slots.c (the transfer store),
 * checkpoint.c (the two checkpoint slots and WAL pruning) and journal.c (the
 * VSR journal and view state of a replicated unit).
 */
#ifndef PC_STORAGE_INT_H
#define PC_STORAGE_INT_H

#include <stdio.h>
#include <sys/types.h>

#include "storage.h"

#define PC_STORAGE_VERSION 2u /* 2: xts_resolve events are 32-byte decisions */
#define PC_SUPERBLOCK_MAGIC 0x53435950u /* "PYCS" little-endian: paycell superblock */
#define PC_WAL_MAGIC 0x4c415750u        /* "PWAL" */
#define PC_CHECKPOINT_MAGIC 0x4b435050u /* "PPCK" */
#define PC_VSR_STATE_MAGIC 0x53525650u  /* "PVRS" */
#define PC_JOURNAL_RING_MAGIC 0x47524850u /* "PHRG": paycell header ring */

/* Checksum seeds, one per kind of record, so bytes of one kind never verify
 * as another (a WAL body that happens to hold a checkpoint header, say). */
#define PC_SEED_SUPERBLOCK 0x7375706572626c6bull
#define PC_SEED_WAL_HEADER 0x77616c6865616472ull
#define PC_SEED_WAL_BODY 0x77616c626f647921ull
#define PC_SEED_CHECKPOINT 0x636b707468656164ull
#define PC_SEED_CHECKPOINT_BLOB 0x636b7074626c6f62ull
#define PC_SEED_SLOT 0x736c6f7473656564ull
#define PC_SEED_VSR_STATE 0x7673727374617465ull
#define PC_SEED_JOURNAL_RING 0x68647272696e6721ull

/* Every WAL entry starts on a 4 KiB boundary: an append never rewrites a page
 * that holds an earlier (possibly acknowledged) entry, so a torn write can
 * only damage the entry being written; and after a bad header, replay can
 * look for later entries at a bounded set of positions. */
#define PC_WAL_ALIGN 4096u
#define PC_WAL_ENTRY_MAX (PC_HEADER_SIZE + PC_PREPARE_BODY_MAX)

#define PC_SUPERBLOCK_SIZE 256u
#define PC_CHECKPOINT_HEADER_SIZE 128u
/* The transfer store is preallocated ahead of the writes in steps this big. */
#define PC_SLOTS_PREALLOC_STEP (64ull << 20)
/* Each time the store's writes pass a PC_SLOTS_CACHE_STEP boundary, its
 * cached pages more than PC_SLOTS_CACHE_KEEP behind that boundary are let
 * go, from PC_SLOTS_CACHE_RECHECK below where the last drop ended (slots.c,
 * slots_cache_trim). */
#define PC_SLOTS_CACHE_STEP (1ull << 20)
#define PC_SLOTS_CACHE_KEEP (64ull << 20)
#define PC_SLOTS_CACHE_RECHECK (16ull << 20)
/* Replay reads this much at a time when it scans for entries after a bad one. */
#define PC_SCAN_CHUNK (1u << 20)
/* DIR/vsr-state: two copies, each one 4 KiB page (a page is the unit a disk
 * tears at, so a torn write damages one copy only): a 64-byte header, the
 * state bytes, zeros to the end of the page. */
#define PC_VSR_STATE_COPY_SIZE 4096u
#define PC_VSR_STATE_HEADER_SIZE 64u
/* Longest directory path the storage accepts (file names are appended). */
#define PC_STORAGE_DIR_MAX 3800u
#define PC_STORAGE_PATH_MAX 4096u
/* Longest corruption or log message. */
#define PC_STORAGE_MESSAGE_MAX 4600u

PC_STATIC_ASSERT(PC_WAL_ALIGN % PC_HEADER_SIZE == 0, "headers sit on aligned slots");
PC_STATIC_ASSERT(PC_SCAN_CHUNK % PC_WAL_ALIGN == 0, "a scan chunk holds whole slots");
PC_STATIC_ASSERT(PC_WAL_ENTRY_MAX + PC_WAL_ALIGN <= PC_WAL_SEGMENT_SIZE_MAX / 4,
                 "the default segment holds the largest entry");
PC_STATIC_ASSERT(PC_SCAN_CHUNK <= PC_PREPARE_BODY_MAX, "the scan reuses the body buffer");
PC_STATIC_ASSERT(PC_JOURNAL_SLOT_SIZE % PC_WAL_ALIGN == 0, "journal slots are whole pages");
PC_STATIC_ASSERT(PC_HEADER_SIZE + PC_VSR_PREPARE_BODY_MAX <= PC_JOURNAL_SLOT_SIZE,
                 "the largest prepare fits a journal slot");
PC_STATIC_ASSERT(PC_JOURNAL_SLOTS_MIN <= PC_JOURNAL_SLOTS_DEFAULT &&
                     PC_JOURNAL_SLOTS_DEFAULT <= PC_JOURNAL_SLOTS_LIMIT,
                 "the default journal size is allowed");
PC_STATIC_ASSERT(PC_VSR_STATE_HEADER_SIZE + PC_VSR_STATE_MAX <= PC_VSR_STATE_COPY_SIZE,
                 "the largest view state fits one copy");

/* The superblock on disk: 256 bytes, checksummed over bytes 16..255. */
typedef struct pc_superblock {
    pc_u128 checksum;
    uint32_t magic;
    uint32_t version;
    uint64_t reserved0;
    pc_storage_info_t info;
    uint8_t reserved[PC_SUPERBLOCK_SIZE - 32 - sizeof(pc_storage_info_t)];
} pc_superblock_t;

/* The header of a checkpoint file: 128 bytes, checksummed over bytes 16..127,
 * followed by info.blob_size bytes of blob. */
typedef struct pc_checkpoint_header {
    pc_u128 checksum;
    pc_u128 checksum_blob;
    uint32_t magic;
    uint32_t version;
    uint64_t sequence; /* 1, 2, 3, ...: the newest valid checkpoint wins */
    pc_checkpoint_info_t info;
    uint8_t reserved[PC_CHECKPOINT_HEADER_SIZE - 48 - sizeof(pc_checkpoint_info_t)];
} pc_checkpoint_header_t;

/* The header of one DIR/vsr-state copy; the checksum covers bytes 16..4095
 * of the copy (the rest of this header, the state and the zero padding). */
typedef struct pc_vsr_state_header {
    pc_u128 checksum;
    uint32_t magic;
    uint32_t version;
    uint64_t sequence; /* 1, 2, 3, ...: the newest valid copy wins */
    uint32_t size;     /* bytes of state after this header */
    uint8_t reserved[PC_VSR_STATE_HEADER_SIZE - 36];
} pc_vsr_state_header_t;

/* One header-ring entry of DIR/journal: a copy of the slot's 128-byte header
 * and storage's seal, whose checksum covers bytes 0..239 and is seeded with
 * the slot, so an entry written to the wrong place fails as surely as a
 * flipped bit. 256 bytes: a divisor of a 512-byte sector, so a torn sector
 * never splits one entry. */
typedef struct pc_journal_ring_entry {
    uint8_t header[PC_HEADER_SIZE];
    uint32_t magic;
    uint32_t version;
    uint32_t slot;
    uint8_t reserved[PC_JOURNAL_RING_ENTRY_SIZE - PC_HEADER_SIZE - 12 - 16];
    pc_u128 checksum;
} pc_journal_ring_entry_t;

/* One open WAL segment: DIR/wal-<first>, holding ops first, first+1, ... */
typedef struct pc_segment {
    int fd; /* -1 when not open */
    uint64_t first;
    uint64_t size; /* file size: the capacity for entries */
} pc_segment_t;

struct pc_storage {
    char dir[PC_STORAGE_DIR_MAX];
    int dir_fd;
    int superblock_fd; /* holds the flock */
    int slots_fd;
    pc_storage_info_t info;
    bool failed;   /* an I/O error happened: every call answers PC_ESTATE */
    bool replayed; /* wal_replay ran: appends are allowed */

    /* WAL position. tail is where the next entry goes unless tail_detached:
     * then the next append starts a new segment named wal_op + 1 (an empty
     * WAL behind a checkpoint). prev is a segment left by a rotation whose
     * unsynced data the next wal_sync must flush; next is a segment created
     * ahead by pc_storage_reserve, named wal_op + 1. */
    pc_segment_t tail;
    pc_segment_t prev;
    pc_segment_t next;
    uint64_t tail_offset;
    bool tail_detached;
    bool tail_dirty; /* tail holds appends not yet synced */
    bool dir_dirty;  /* a segment was created since the last wal_sync */
    uint64_t wal_op;
    pc_u128 wal_checksum;
    uint64_t synced_op;
    uint64_t wal_bytes_since_checkpoint;

    /* Buffers allocated at open so the hot path never allocates. */
    struct iovec *iov; /* IOV_MAX entries for one pwritev */
    uint8_t *buffer;   /* PC_PREPARE_BODY_MAX bytes: replay bodies, scans */

    /* Transfer store. */
    uint64_t slots_count;
    uint64_t slots_prealloc_end; /* bytes preallocated (KEEP_SIZE) so far */
    uint64_t slots_cache_dropped; /* the page cache below was last let go */

    /* Checkpoint slots, learnt on first use and kept up to date by writes. */
    bool checkpoints_known;
    bool checkpoint_valid[2];
    uint64_t checkpoint_sequence[2];
    uint64_t checkpoint_op[2];

    /* Replicated units only (info.replica_count > 1). journal_fd is open from
     * pc_storage_open to close; vsr_state_fd from the first vsr_state call
     * that finds or creates the file. The view state copies are learnt on
     * first use like the checkpoint slots: vsr_state_newest is the copy
     * holding the newest valid state (-1: none), vsr_state_sequence its
     * sequence (0: none). */
    int journal_fd;
    int vsr_state_fd;
    bool vsr_state_known;
    int vsr_state_newest;
    uint64_t vsr_state_sequence;
};

/* Whether the data set belongs to a replicated unit: a VSR journal instead of
 * the WAL, checkpoints at VSR ops. */
static inline bool pc__storage_replicated(const pc_storage_t *storage) {
    return storage->info.replica_count > 1;
}

/* Formats a corruption message that names the file and byte offset, and
 * reports it through PC_CORRUPT's breakpointable pc__corrupt. Evaluates to
 * PC_ECORRUPT. */
int pc__storage_corrupt(const char *file, int line, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
#define PC_CORRUPTF(...) pc__storage_corrupt(__FILE__, __LINE__, __VA_ARGS__)

/* One informational log line (stderr), prefixed "paycell: storage: ". */
#define pc__storage_log(...) pc_log("storage", "info", __VA_ARGS__)

/* Turns a failed system call's errno into a pc_err. ENOSPC/EDQUOT become
 * PC_ENOSPC; anything else fails the storage for good and gives PC_EIO. */
int pc__storage_io_error(pc_storage_t *storage, int err, const char *call, const char *name,
                         uint64_t offset);
/* fdatasync (fsync when metadata is needed) honouring the fault knob; any
 * failure fails the storage and gives PC_EIO. */
int pc__storage_sync(pc_storage_t *storage, int fd, bool metadata, const char *name);
int pc__storage_sync_dir(pc_storage_t *storage);
/* fallocate honouring the ENOSPC fault knob; returns 0 or an errno. */
int pc__storage_allocate(int fd, int mode, uint64_t offset, uint64_t size);
/* Full pwrite/pread loops; return 0 or an errno. *done gets the bytes moved. */
int pc__storage_pwrite_all(int fd, const void *data, size_t size, uint64_t offset, size_t *done);
int pc__storage_pread_all(int fd, void *data, size_t size, uint64_t offset, size_t *done);
/* pwritev until every byte is written; advances the iovecs in place. Returns
 * 0 or an errno; *done gets the bytes written. */
int pc__storage_pwritev_all(int fd, struct iovec *v, int count, uint64_t offset, uint64_t *done);
/* Makes [offset, offset + size) read as zeros; returns 0 or an errno. */
int pc__storage_zero_range(int fd, uint64_t offset, uint64_t size);
/* "DIR/name" into path (PC_STORAGE_PATH_MAX bytes). */
void pc__storage_path(const pc_storage_t *storage, const char *name, char *path);

/* WAL segments (wal.c). */
void pc__storage_segment_name(uint64_t first, char *name, size_t name_size);
bool pc__storage_segment_parse(const char *name, uint64_t *first);
/* Sorted first ops of every segment in DIR; *firsts is malloc'd. */
int pc__storage_segments_list(pc_storage_t *storage, uint64_t **firsts, size_t *count);
int pc__storage_segment_open(pc_storage_t *storage, uint64_t first, pc_segment_t *segment);
void pc__storage_segment_close(pc_segment_t *segment);
/* pc__storage_sync and pc__storage_io_error for a segment, named in logs. */
int pc__storage_segment_sync(pc_storage_t *storage, const pc_segment_t *segment, bool metadata);
int pc__storage_segment_error(pc_storage_t *storage, const pc_segment_t *segment, int err,
                              const char *call, uint64_t offset);
/* Capacity of a new segment: the test knob, rounded up to PC_WAL_ALIGN. */
uint64_t pc__storage_segment_capacity(void);
/* Removes segments whose every entry is <= op, except open ones. */
int pc__storage_wal_prune(pc_storage_t *storage, uint64_t op);
void pc__storage_wal_close(pc_storage_t *storage);

/* WAL header helpers (wal.c). */
pc_u128 pc__storage_header_checksum(const pc_wal_header_t *header);
/* Whether the header's own checksum, magic and version hold. */
bool pc__storage_header_valid(const pc_wal_header_t *header);
/* Bytes an entry of body_size takes in a segment (header, body, padding). */
uint64_t pc__storage_entry_size(uint64_t body_size);

/* Transfer store part of pc_storage_reserve (slots.c). */
int pc__storage_slots_reserve(pc_storage_t *storage, uint64_t slots_count);

/* The VSR journal (journal.c). create makes DIR/journal at full size for
 * format (a full disk leaves no file: PC_ENOSPC); open opens it and checks
 * its size (PC_ECORRUPT naming the file). taken says whether an existing
 * DIR/journal holds a written slot, which format must not overwrite. */
int pc__storage_journal_create(pc_storage_t *storage);
int pc__storage_journal_open(pc_storage_t *storage);
int pc__storage_journal_taken(pc_storage_t *storage);
void pc__storage_journal_close(pc_storage_t *storage);

#endif /* PC_STORAGE_INT_H */
