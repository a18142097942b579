/*
 * replay.c — recovery of the WAL at startup: walk the entries after the
 * checkpoint, check every checksum and the hash chain, hand each entry to the
 * caller, then decide what the first entry that does not check out means.
 *
 * The walk starts in the last segment whose first op is <= checkpoint op + 1
 * (segment names are first ops, so that one holds op + 1 or is where it would
 * go). Entries up to the checkpoint op are stepped over by their headers (the
 * checkpoint already holds their effect); the one at the checkpoint op must
 * carry the checkpoint's wal_checksum, and the chain continues from there.
 *
 * Where the walk stops — a zero header (the normal end), a bad header, a bad
 * body — replay looks at every 4 KiB position after it, to the end of the
 * WAL, for valid headers. Each carries synced_op, the highest op a completed
 * wal_sync had covered when it was written. If one has synced_op >= the op
 * where the walk stopped, that op was acknowledged and is now lost or
 * damaged: PC_ECORRUPT, naming both places. Otherwise everything from the
 * stop on was never acknowledged (a torn unsynced tail): it is cut — the rest
 * of the segment is zeroed, later segments are deleted, all of it synced —
 * so no stale but valid-looking entry can resurface behind new appends.
 *
 * A header whose own checksum holds but which has the wrong op or the wrong
 * parent cannot come from a torn write; it is corruption (a misdirected or
 * stale write) wherever it is.
 */
#include "storage_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Where the walk stopped and why. */
typedef struct replay_stop {
    bool damaged;       /* false: a zero header, the normal end of the log */
    const char *reason; /* for messages */
    uint64_t size;      /* bytes the stopped entry occupies, as far as known */
} replay_stop_t;

/* Valid headers found after the stop. */
typedef struct replay_scan {
    uint64_t entries;
    uint64_t bytes;
} replay_scan_t;

typedef struct replay {
    pc_storage_t *storage;
    uint64_t checkpoint_op;
    pc_u128 checkpoint_checksum;
    uint64_t *firsts; /* sorted first ops of all segments */
    size_t count;
    size_t index;         /* segment being walked */
    pc_segment_t segment; /* firsts[index], open */
    uint64_t offset;      /* of the next header in segment */
    uint64_t op;          /* op expected at offset */
    pc_u128 parent;       /* header checksum of op - 1, when parent_known */
    bool parent_known;
    uint64_t bytes_replayed; /* entries after the checkpoint */
    pc_wal_replay_fn fn;
    void *ctx;
} replay_t;

static void segment_label(const replay_t *r, size_t index, char *label) {
    char name[32];
    PC_ASSERT(index < r->count);
    pc__storage_segment_name(r->firsts[index], name, sizeof name);
    pc__storage_path(r->storage, name, label);
}

static bool header_zero(const pc_wal_header_t *header) {
    const uint8_t *bytes = (const uint8_t *)header;
    for (size_t i = 0; i < sizeof *header; i++) {
        if (bytes[i] != 0) return false;
    }
    return true;
}

static const char *header_fault(const pc_wal_header_t *header) {
    PC_ASSERT(!pc__storage_header_valid(header));
    if (header_zero(header)) return "zero header";
    if (header->magic != PC_WAL_MAGIC) return "bad magic";
    if (header->version != PC_STORAGE_VERSION) return "unsupported version";
    return "header checksum mismatch";
}

/* Closes the walked segment (synced: entries replayed from the page cache
 * after a process crash must be on disk before new headers claim them as
 * synced) and opens the next one, where op continues at offset 0. */
static int segment_advance(replay_t *r) {
    PC_ASSERT(r->index + 1 < r->count && r->firsts[r->index + 1] == r->op);
    int rc = pc__storage_segment_sync(r->storage, &r->segment, false);
    pc__storage_segment_close(&r->segment);
    if (rc != PC_OK) return rc;
    r->index++;
    r->offset = 0;
    rc = pc__storage_segment_open(r->storage, r->firsts[r->index], &r->segment);
    PC_ASSERT(rc != PC_OK || r->segment.first == r->op);
    return rc;
}

/* Checks a header whose own checksum holds against the walk: its op, its
 * parent, the segment layout and the checkpoint. */
static int header_check(const replay_t *r, const pc_wal_header_t *header) {
    char label[PC_STORAGE_PATH_MAX];
    segment_label(r, r->index, label);
    PC_ASSERT(pc__storage_header_valid(header));
    if (header->op != r->op)
        return PC_CORRUPTF("WAL %s offset %llu: op %llu where op %llu was expected", label,
                           (unsigned long long)r->offset, (unsigned long long)header->op,
                           (unsigned long long)r->op);
    if (r->parent_known && header->parent != r->parent)
        return PC_CORRUPTF("WAL %s offset %llu: op %llu breaks the hash chain (parent differs "
                           "from the checksum of op %llu%s)",
                           label, (unsigned long long)r->offset, (unsigned long long)r->op,
                           (unsigned long long)r->op - 1,
                           r->op == r->checkpoint_op + 1 ? ", the checkpoint's" : "");
    if (r->index + 1 < r->count && r->firsts[r->index + 1] <= r->op)
        return PC_CORRUPTF("WAL %s offset %llu: op %llu is also claimed by segment "
                           "wal-%020llu",
                           label, (unsigned long long)r->offset, (unsigned long long)r->op,
                           (unsigned long long)r->firsts[r->index + 1]);
    if (r->op == r->checkpoint_op && header->checksum != r->checkpoint_checksum)
        return PC_CORRUPTF("WAL %s offset %llu: op %llu differs from the checkpoint's entry "
                           "(checksum mismatch)",
                           label, (unsigned long long)r->offset, (unsigned long long)r->op);
    return PC_OK;
}

/* Reads and verifies the body of an entry after the checkpoint and hands it
 * to the caller. A bad body sets *stopped. Returns PC_OK, an error or the
 * callback's non-zero return. */
static int entry_deliver(replay_t *r, const pc_wal_header_t *header, replay_stop_t *stop,
                         bool *stopped) {
    pc_storage_t *storage = r->storage;
    PC_ASSERT(header->body_size <= PC_PREPARE_BODY_MAX);
    size_t done = 0;
    int err = pc__storage_pread_all(r->segment.fd, storage->buffer, header->body_size,
                                    r->offset + PC_HEADER_SIZE, &done);
    if (err != 0)
        return pc__storage_segment_error(storage, &r->segment, err, "read",
                                         r->offset + PC_HEADER_SIZE);
    if (done != header->body_size || pc_checksum(storage->buffer, header->body_size,
                                                 PC_SEED_WAL_BODY) != header->checksum_body) {
        stop->damaged = true;
        stop->reason = "body checksum mismatch";
        *stopped = true;
        return PC_OK;
    }
    PC_ASSERT(header->op > r->checkpoint_op);
    return r->fn ? r->fn(r->ctx, header, storage->buffer) : 0;
}

/* One step of the walk at (segment, offset): one entry, or a move to the
 * next segment, or a stop (*stopped set, *stop filled). Returns PC_OK or an
 * error (corruption, I/O, the callback's return). */
static int walk_step(replay_t *r, replay_stop_t *stop, bool *stopped) {
    pc_wal_header_t header;
    memset(&header, 0, sizeof header);
    size_t done = 0;
    if (r->offset + PC_HEADER_SIZE <= r->segment.size) {
        int err = pc__storage_pread_all(r->segment.fd, &header, sizeof header, r->offset, &done);
        if (err != 0)
            return pc__storage_segment_error(r->storage, &r->segment, err, "read", r->offset);
    }
    if (!pc__storage_header_valid(&header)) {
        /* An entry that did not fit went to the next segment, named by its op. */
        if (r->index + 1 < r->count && r->firsts[r->index + 1] == r->op) return segment_advance(r);
        stop->damaged = !header_zero(&header);
        stop->reason = header_fault(&header);
        stop->size = PC_WAL_ALIGN;
        *stopped = true;
        return PC_OK;
    }
    int rc = header_check(r, &header);
    if (rc != PC_OK) return rc;
    if (header.body_size > PC_PREPARE_BODY_MAX ||
        pc__storage_entry_size(header.body_size) > r->segment.size - r->offset) {
        stop->damaged = true;
        stop->reason = "entry runs past the end of its segment";
        stop->size = r->segment.size - r->offset;
        *stopped = true;
        return PC_OK;
    }
    uint64_t size = pc__storage_entry_size(header.body_size);
    stop->size = size;
    if (header.op > r->checkpoint_op) {
        rc = entry_deliver(r, &header, stop, stopped);
        if (rc != PC_OK || *stopped) return rc;
        r->bytes_replayed += size;
    }
    r->offset += size;
    r->op++;
    r->parent = header.checksum;
    r->parent_known = true;
    return PC_OK;
}

/* Looks at every aligned position of one segment from start for a valid
 * header with op >= the stop's op. One with synced_op >= threshold proves an
 * acknowledged entry is gone: corruption. Holes (never-written preallocated
 * space) are skipped with SEEK_DATA, so scanning a clean tail costs little. */
static int scan_segment(replay_t *r, size_t index, const pc_segment_t *segment, uint64_t start,
                        uint64_t threshold, replay_scan_t *scan) {
    uint8_t *buffer = r->storage->buffer;
    PC_ASSERT(start % PC_WAL_ALIGN == 0);
    for (uint64_t pos = start; pos + PC_HEADER_SIZE <= segment->size;) {
        off_t data = lseek(segment->fd, (off_t)pos, SEEK_DATA);
        if (data < 0 && errno == ENXIO) break;
        if (data > (off_t)pos) pos = (uint64_t)data / PC_WAL_ALIGN * PC_WAL_ALIGN;
        size_t done = 0;
        int err = pc__storage_pread_all(segment->fd, buffer, PC_SCAN_CHUNK, pos, &done);
        if (err != 0) return pc__storage_segment_error(r->storage, segment, err, "read", pos);
        for (size_t k = 0; k + PC_HEADER_SIZE <= done; k += PC_WAL_ALIGN) {
            const pc_wal_header_t *header = (const pc_wal_header_t *)(buffer + k);
            if (!pc__storage_header_valid(header) || header->op < r->op) continue;
            scan->entries++;
            scan->bytes += PC_HEADER_SIZE + (uint64_t)header->body_size;
            if (header->synced_op < threshold) continue;
            char stop_label[PC_STORAGE_PATH_MAX], label[PC_STORAGE_PATH_MAX];
            segment_label(r, r->index, stop_label);
            segment_label(r, index, label);
            return PC_CORRUPTF("WAL %s offset %llu: op %llu is missing or damaged, but op %llu "
                               "at %s offset %llu records synced_op %llu: an acknowledged "
                               "entry is lost",
                               stop_label, (unsigned long long)r->offset, (unsigned long long)r->op,
                               (unsigned long long)header->op, label, (unsigned long long)(pos + k),
                               (unsigned long long)header->synced_op);
        }
        PC_ASSERT(pos % PC_WAL_ALIGN == 0);
        pos += PC_SCAN_CHUNK;
    }
    return PC_OK;
}

/* Scans from just after the stop to the end of the last segment. */
static int scan_after(replay_t *r, uint64_t threshold, replay_scan_t *scan) {
    memset(scan, 0, sizeof *scan);
    int rc = scan_segment(r, r->index, &r->segment, r->offset + PC_WAL_ALIGN, threshold, scan);
    for (size_t i = r->index + 1; rc == PC_OK && i < r->count; i++) {
        pc_segment_t later = {.fd = -1};
        rc = pc__storage_segment_open(r->storage, r->firsts[i], &later);
        if (rc != PC_OK) break;
        rc = scan_segment(r, i, &later, 0, threshold, scan);
        pc__storage_segment_close(&later);
    }
    PC_ASSERT(rc <= 0);
    return rc;
}

/* Removes the unacknowledged tail: zeroes the rest of the stop segment (only
 * if anything is there) and deletes every later segment, then syncs. */
static int tail_cut(replay_t *r, const replay_stop_t *stop, const replay_scan_t *scan) {
    pc_storage_t *storage = r->storage;
    bool dirty = stop->damaged || scan->entries > 0;
    if (dirty && r->offset < r->segment.size) {
        int err = pc__storage_zero_range(r->segment.fd, r->offset, r->segment.size - r->offset);
        if (err != 0)
            return pc__storage_segment_error(storage, &r->segment, err, "zero", r->offset);
    }
    int rc = pc__storage_segment_sync(storage, &r->segment, true);
    for (size_t i = r->index + 1; rc == PC_OK && i < r->count; i++) {
        char name[32];
        pc__storage_segment_name(r->firsts[i], name, sizeof name);
        if (unlinkat(storage->dir_fd, name, 0) != 0 && errno != ENOENT)
            rc = pc__storage_io_error(storage, errno, "unlink", name, 0);
    }
    if (rc == PC_OK) rc = pc__storage_sync_dir(storage);
    if (rc == PC_OK && dirty) {
        char label[PC_STORAGE_PATH_MAX];
        segment_label(r, r->index, label);
        pc__storage_log("cut the torn WAL tail at %s offset %llu (op %llu: %s): discarded %llu "
                        "entries, %llu bytes, that no later entry records as synced",
                        label, (unsigned long long)r->offset, (unsigned long long)r->op,
                        stop->reason, (unsigned long long)(stop->damaged + scan->entries),
                        (unsigned long long)((stop->damaged ? stop->size : 0) + scan->bytes));
    }
    PC_ASSERT(rc <= 0);
    return rc;
}

/* Decides what the stop means (end, torn tail or corruption) and cuts. */
static int walk_end(replay_t *r, const replay_stop_t *stop) {
    /* Ops up to the checkpoint are not needed, but the first op after it is:
     * stopping before it is only fine if it was never acknowledged. */
    uint64_t threshold = PC_MAX(r->op, r->checkpoint_op + 1);
    if (r->index + 1 < r->count && r->firsts[r->index + 1] < r->op) {
        char label[PC_STORAGE_PATH_MAX];
        segment_label(r, r->index + 1, label);
        return PC_CORRUPTF("WAL %s offset 0: segment starts at op %llu, inside the previous "
                           "segment (which reaches op %llu)",
                           label, (unsigned long long)r->firsts[r->index + 1],
                           (unsigned long long)r->op - 1);
    }
    replay_scan_t scan;
    int rc = scan_after(r, threshold, &scan);
    if (rc != PC_OK) return rc;
    PC_ASSERT(threshold >= r->op);
    return tail_cut(r, stop, &scan);
}

/* Picks the segment holding checkpoint op + 1: the last one whose first op is
 * <= op + 1. Opens nothing when the WAL is empty. */
static int walk_start(replay_t *r) {
    if (r->count == 0) return PC_OK;
    size_t start = r->count;
    for (size_t i = 0; i < r->count; i++) {
        if (r->firsts[i] <= r->checkpoint_op + 1) start = i;
    }
    if (start == r->count) {
        char label[PC_STORAGE_PATH_MAX];
        segment_label(r, 0, label);
        return PC_CORRUPTF("WAL %s offset 0: the log starts at op %llu but the checkpoint "
                           "covers only ops up to %llu: ops in between are missing",
                           label, (unsigned long long)r->firsts[0],
                           (unsigned long long)r->checkpoint_op);
    }
    r->index = start;
    r->op = r->firsts[start];
    /* The parent of the checkpoint's successor is the checkpoint's entry; the
     * parent of op 1 is 0. Otherwise it is learnt from the first header. */
    r->parent_known = r->op == r->checkpoint_op + 1 || r->op == 1;
    r->parent = r->op == r->checkpoint_op + 1 ? r->checkpoint_checksum : 0;
    int rc = pc__storage_segment_open(r->storage, r->firsts[start], &r->segment);
    PC_ASSERT(rc != PC_OK || r->segment.fd >= 0);
    return rc;
}

/* Positions the WAL for appends. The tail stays in the walked segment when it
 * holds entries after the checkpoint; otherwise the WAL is "detached": the
 * next append starts a new segment named wal_op + 1 (an empty segment at the
 * stop is removed first, since that is the name it would need). */
static int walk_finish(replay_t *r) {
    pc_storage_t *storage = r->storage;
    bool attached = r->segment.fd >= 0 && r->op > r->checkpoint_op && r->offset > 0;
    if (r->segment.fd >= 0 && r->offset == 0) {
        char name[32];
        pc__storage_segment_name(r->segment.first, name, sizeof name);
        pc__storage_segment_close(&r->segment);
        if (unlinkat(storage->dir_fd, name, 0) != 0 && errno != ENOENT)
            return pc__storage_io_error(storage, errno, "unlink", name, 0);
        int rc = pc__storage_sync_dir(storage);
        if (rc != PC_OK) return rc;
    }
    if (attached) {
        PC_ASSERT(r->parent_known);
        storage->tail = r->segment;
        r->segment.fd = -1;
        storage->tail_offset = r->offset;
    } else {
        pc__storage_segment_close(&r->segment);
        storage->tail_detached = true;
    }
    storage->wal_op = r->op > r->checkpoint_op ? r->op - 1 : r->checkpoint_op;
    storage->wal_checksum = r->op > r->checkpoint_op ? r->parent : r->checkpoint_checksum;
    /* Everything replayed was synced on the way (segment_advance, tail_cut). */
    storage->synced_op = storage->wal_op;
    storage->wal_bytes_since_checkpoint = r->bytes_replayed;
    storage->replayed = true;
    PC_ASSERT(storage->wal_op >= r->checkpoint_op);
    return PC_OK;
}

int pc_storage_wal_replay(pc_storage_t *storage, const pc_checkpoint_info_t *from,
                          pc_wal_replay_fn fn, void *ctx) {
    if (storage->failed) return PC_ESTATE;
    /* A replicated unit has no WAL: VSR recovers its journal. */
    if (pc__storage_replicated(storage)) return PC_EINVAL;
    PC_ASSERT(!storage->replayed); /* once, before any append */
    replay_t r;
    memset(&r, 0, sizeof r);
    r.storage = storage;
    r.checkpoint_op = from ? from->op : 0;
    r.checkpoint_checksum = from ? from->wal_checksum : 0;
    r.segment.fd = -1;
    r.fn = fn;
    r.ctx = ctx;
    if (r.checkpoint_op == 0 && r.checkpoint_checksum != 0) return PC_EINVAL;
    int rc = pc__storage_segments_list(storage, &r.firsts, &r.count);
    if (rc == PC_OK) rc = walk_start(&r);
    if (rc == PC_OK && r.segment.fd >= 0) {
        replay_stop_t stop;
        memset(&stop, 0, sizeof stop);
        bool stopped = false;
        while (rc == PC_OK && !stopped)
            rc = walk_step(&r, &stop, &stopped);
        if (rc == PC_OK) rc = walk_end(&r, &stop);
    }
    if (rc == PC_OK) rc = walk_finish(&r);
    pc__storage_segment_close(&r.segment);
    free(r.firsts);
    PC_ASSERT(rc == PC_OK || !storage->replayed);
    return rc;
}
