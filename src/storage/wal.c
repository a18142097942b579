/*
 * wal.c — the write side of the write-ahead log: segment files, append,
 * sync, reserve, and pruning of segments a checkpoint has made redundant.
 *
 * The WAL is a sequence of segment files DIR/wal-<first op, 20 digits>, each
 * preallocated with fallocate to pc__storage_segment_size: the unwritten tail
 * reads as zeros (a zero header is the end of the log) and appends never
 * change the file size, so the common fdatasync has no size to flush and a
 * write into the preallocated space cannot run out of room. An entry (a
 * 128-byte header, its body, zero padding to 4 KiB) never spans segments;
 * when one does not fit, the next segment is started, named by the op of the
 * entry it will hold first, so replay can find the segment holding any op
 * from the names alone.
 *
 * The hot path is one pwritev per append (header, body iovecs, padding, all
 * from buffers the caller owns or that were allocated at open) and one
 * fdatasync per wal_sync. Each header carries synced_op, the highest op a
 * completed wal_sync covered, which is how replay tells a torn unsynced tail
 * (cut it) from a damaged acknowledged entry (refuse to start).
 */
#include "storage_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

PC_STATIC_ASSERT(sizeof(pc_wal_header_t) == PC_HEADER_SIZE, "WAL header is 128 bytes");
PC_STATIC_ASSERT(offsetof(pc_wal_header_t, checksum_body) == 16, "checksum covers 16..127");
PC_STATIC_ASSERT(offsetof(pc_wal_header_t, synced_op) == 80, "WAL header layout");

static const uint8_t zero_page[PC_WAL_ALIGN];

/* ---- headers ---- */

pc_u128 pc__storage_header_checksum(const pc_wal_header_t *header) {
    PC_ASSERT(header != NULL);
    return pc_checksum((const uint8_t *)header + 16, PC_HEADER_SIZE - 16, PC_SEED_WAL_HEADER);
}

bool pc__storage_header_valid(const pc_wal_header_t *header) {
    PC_ASSERT(header != NULL);
    /* Magic first: it rejects almost every non-header cheaply during scans. */
    if (header->magic != PC_WAL_MAGIC || header->version != PC_STORAGE_VERSION) return false;
    return pc__storage_header_checksum(header) == header->checksum;
}

uint64_t pc__storage_entry_size(uint64_t body_size) {
    PC_ASSERT(body_size <= PC_PREPARE_BODY_MAX);
    uint64_t size = (PC_HEADER_SIZE + body_size + PC_WAL_ALIGN - 1) / PC_WAL_ALIGN * PC_WAL_ALIGN;
    PC_ASSERT(size % PC_WAL_ALIGN == 0 && size >= PC_HEADER_SIZE + body_size);
    return size;
}

/* Streams the body checksum over the caller's iovecs: the same value as
 * pc_checksum over the concatenated body, without copying it. */
static pc_u128 body_checksum(const struct iovec *iov, int iov_count) {
    XXH3_state_t state;
    PC_ASSERT(iov_count >= 0);
    /* A state on the stack must be initialised before its first reset:
     * reset_withSeed skips deriving the secret when the state's seed field
     * already equals the seed, so stack garbage left by an earlier call (its
     * seed intact, its secret overwritten since) gave a wrong checksum — a
     * valid entry then read as damaged at replay, about one run in four
     * under ASan's stack layout. */
    XXH3_INITSTATE(&state);
    XXH_errorcode reset = XXH3_128bits_reset_withSeed(&state, PC_SEED_WAL_BODY);
    PC_ASSERT(reset == XXH_OK);
    for (int i = 0; i < iov_count; i++) {
        if (iov[i].iov_len > 0) XXH3_128bits_update(&state, iov[i].iov_base, iov[i].iov_len);
    }
    XXH128_hash_t hash = XXH3_128bits_digest(&state);
    return ((pc_u128)hash.high64 << 64) | hash.low64;
}

/* ---- segments ---- */

void pc__storage_segment_name(uint64_t first, char *name, size_t name_size) {
    PC_ASSERT(first > 0);
    int n = snprintf(name, name_size, "wal-%020" PRIu64, first);
    PC_ASSERT(n == 24 && (size_t)n < name_size);
}

bool pc__storage_segment_parse(const char *name, uint64_t *first) {
    if (strncmp(name, "wal-", 4) != 0 || strlen(name) != 24) return false;
    uint64_t value = 0;
    for (const char *c = name + 4; *c != '\0'; c++) {
        if (*c < '0' || *c > '9') return false;
        uint64_t digit = (uint64_t)(*c - '0');
        if (value > (UINT64_MAX - digit) / 10) return false;
        value = value * 10 + digit;
    }
    *first = value;
    return value > 0; /* ops start at 1 */
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int pc__storage_segments_list(pc_storage_t *storage, uint64_t **firsts, size_t *count) {
    *firsts = NULL;
    *count = 0;
    DIR *dir = opendir(storage->dir);
    if (dir == NULL) return pc__storage_io_error(storage, errno, "opendir", ".", 0);
    size_t capacity = 0;
    int rc = PC_OK;
    for (struct dirent *entry; (entry = readdir(dir)) != NULL;) {
        uint64_t first = 0;
        if (!pc__storage_segment_parse(entry->d_name, &first)) continue;
        if (*count == capacity) {
            capacity = capacity ? capacity * 2 : 16;
            uint64_t *grown = realloc(*firsts, capacity * sizeof **firsts);
            if (grown == NULL) {
                rc = PC_ENOMEM;
                break;
            }
            *firsts = grown;
        }
        (*firsts)[(*count)++] = first;
    }
    closedir(dir);
    if (*count > 0) qsort(*firsts, *count, sizeof **firsts, compare_u64);
    PC_ASSERT(*count == 0 || *firsts != NULL);
    return rc;
}

uint64_t pc__storage_segment_capacity(void) {
    PC_ASSERT(pc__storage_segment_size <= PC_WAL_SEGMENT_SIZE_MAX);
    uint64_t size = PC_MAX(pc__storage_segment_size, (uint64_t)PC_WAL_ALIGN);
    size = (size + PC_WAL_ALIGN - 1) / PC_WAL_ALIGN * PC_WAL_ALIGN;
    PC_ASSERT(size % PC_WAL_ALIGN == 0);
    return size;
}

int pc__storage_segment_open(pc_storage_t *storage, uint64_t first, pc_segment_t *segment) {
    char name[32];
    pc__storage_segment_name(first, name, sizeof name);
    PC_ASSERT(segment->fd < 0);
    int fd = openat(storage->dir_fd, name, O_RDWR | O_CLOEXEC);
    if (fd < 0) return pc__storage_io_error(storage, errno, "open", name, 0);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return pc__storage_io_error(storage, err, "fstat", name, 0);
    }
    segment->fd = fd;
    segment->first = first;
    segment->size = (uint64_t)st.st_size;
    return PC_OK;
}

void pc__storage_segment_close(pc_segment_t *segment) {
    PC_ASSERT(segment != NULL);
    if (segment->fd >= 0) close(segment->fd);
    segment->fd = -1;
    PC_ASSERT(segment->fd == -1);
}

int pc__storage_segment_sync(pc_storage_t *storage, const pc_segment_t *segment, bool metadata) {
    char name[32];
    pc__storage_segment_name(segment->first, name, sizeof name);
    return pc__storage_sync(storage, segment->fd, metadata, name);
}

int pc__storage_segment_error(pc_storage_t *storage, const pc_segment_t *segment, int err,
                              const char *call, uint64_t offset) {
    char name[32];
    pc__storage_segment_name(segment->first, name, sizeof name);
    return pc__storage_io_error(storage, err, call, name, offset);
}

/* Creates DIR/wal-<first> at full size. On ENOSPC nothing is left behind.
 * The directory entry becomes durable at the next wal_sync. */
static int segment_create(pc_storage_t *storage, uint64_t first, pc_segment_t *segment) {
    char name[32];
    pc__storage_segment_name(first, name, sizeof name);
    PC_ASSERT(segment->fd < 0);
    uint64_t size = pc__storage_segment_capacity();
    int fd = openat(storage->dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return pc__storage_io_error(storage, errno, "create", name, 0);
    int err = pc__storage_allocate(fd, 0, 0, size);
    if (err != 0) {
        close(fd);
        unlinkat(storage->dir_fd, name, 0);
        return pc__storage_io_error(storage, err, "fallocate", name, 0);
    }
    segment->fd = fd;
    segment->first = first;
    segment->size = size;
    storage->dir_dirty = true;
    PC_ASSERT(segment->size >= PC_WAL_ALIGN);
    return PC_OK;
}

/* Moves appends to a fresh segment named wal_op + 1 (the one reserve made
 * ahead, or a new one). The old tail, if it holds unsynced entries, stays
 * open as prev for the next wal_sync; a second rotation before that sync
 * (tiny segments) syncs the older one here so at most one is pending. */
static int wal_rotate(pc_storage_t *storage) {
    PC_ASSERT(storage->next.fd < 0 || storage->next.first == storage->wal_op + 1);
    if (storage->tail.fd >= 0 && storage->tail_dirty && storage->prev.fd >= 0) {
        int rc = pc__storage_segment_sync(storage, &storage->prev, false);
        if (rc != PC_OK) return rc;
        pc__storage_segment_close(&storage->prev);
    }
    pc_segment_t fresh = {.fd = -1};
    if (storage->next.fd >= 0) {
        fresh = storage->next;
        storage->next.fd = -1;
    } else {
        int rc = segment_create(storage, storage->wal_op + 1, &fresh);
        if (rc != PC_OK) return rc;
    }
    if (storage->tail.fd >= 0 && storage->tail_dirty) {
        storage->prev = storage->tail;
    } else {
        pc__storage_segment_close(&storage->tail);
    }
    storage->tail = fresh;
    storage->tail_offset = 0;
    storage->tail_detached = false;
    storage->tail_dirty = false;
    PC_ASSERT(storage->tail.fd >= 0 && storage->tail.first == storage->wal_op + 1);
    return PC_OK;
}

/* Whether an entry of entry_size bytes goes into the current tail. A segment
 * made ahead by reserve is named for the next op, so once it exists the next
 * entry must go there even if the tail has room. */
static bool tail_fits(const pc_storage_t *storage, uint64_t entry_size) {
    PC_ASSERT(entry_size % PC_WAL_ALIGN == 0);
    if (storage->tail_detached || storage->tail.fd < 0 || storage->next.fd >= 0) return false;
    PC_ASSERT(storage->tail_offset <= storage->tail.size);
    return entry_size <= storage->tail.size - storage->tail_offset;
}

/* Capacity of the segment the next rotation would append to. */
static uint64_t rotation_capacity(const pc_storage_t *storage) {
    PC_ASSERT(storage->replayed);
    return storage->next.fd >= 0 ? storage->next.size : pc__storage_segment_capacity();
}

/* ---- append ---- */

static void header_build(const pc_storage_t *storage, uint64_t timestamp, uint64_t body_size,
                         const struct iovec *iov, int iov_count, pc_wal_header_t *header) {
    memset(header, 0, sizeof *header);
    header->parent = storage->wal_checksum;
    header->op = storage->wal_op + 1;
    header->timestamp = timestamp;
    header->body_size = (uint32_t)body_size;
    header->magic = PC_WAL_MAGIC;
    header->version = PC_STORAGE_VERSION;
    header->synced_op = storage->synced_op;
    header->checksum_body = body_checksum(iov, iov_count);
    header->checksum = pc__storage_header_checksum(header);
    PC_ASSERT(pc__storage_header_valid(header));
    PC_ASSERT(header->synced_op < header->op);
}

/* pwritev until every byte is written (a short write is rare on a regular
 * file, but legal). Advances the iovecs in place; *done gets bytes written.
 * Shared with the VSR journal (journal.c). */
int pc__storage_pwritev_all(int fd, struct iovec *v, int count, uint64_t offset, uint64_t *done) {
    PC_ASSERT(fd >= 0 && count > 0);
    *done = 0;
    while (count > 0) {
        ssize_t n = pwritev(fd, v, count, (off_t)(offset + *done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno;
        if (n == 0) return EIO;
        *done += (uint64_t)n;
        size_t left = (size_t)n;
        while (count > 0 && left >= v->iov_len) {
            left -= v->iov_len;
            v++;
            count--;
        }
        if (count > 0) {
            v->iov_base = (uint8_t *)v->iov_base + left;
            v->iov_len -= left;
        }
    }
    PC_ASSERT(count == 0);
    return 0;
}

/* Writes header, body and padding at the tail in one pwritev. On failure the
 * bytes that did land are zeroed again, so the tail reads as it did before
 * (a full disk must leave nothing half-written behind). */
static int entry_write(pc_storage_t *storage, const pc_wal_header_t *header,
                       const struct iovec *iov, int iov_count, uint64_t entry_size) {
    struct iovec *v = storage->iov;
    int count = 0;
    v[count++] = (struct iovec){.iov_base = (void *)header, .iov_len = PC_HEADER_SIZE};
    for (int i = 0; i < iov_count; i++)
        v[count++] = iov[i];
    uint64_t padding = entry_size - PC_HEADER_SIZE - header->body_size;
    PC_ASSERT(padding < PC_WAL_ALIGN && count <= IOV_MAX - 1);
    if (padding > 0) {
        v[count++] = (struct iovec){.iov_base = (void *)zero_page, .iov_len = padding};
    }
    uint64_t done = 0;
    int err = pc__storage_pwritev_all(storage->tail.fd, v, count, storage->tail_offset, &done);
    if (err == 0) return PC_OK;
    if (done > 0 && pc__storage_zero_range(storage->tail.fd, storage->tail_offset, done) != 0) {
        storage->failed = true; /* the tail holds a partial entry we could not undo */
    }
    return pc__storage_segment_error(storage, &storage->tail, err, "write",
                                     storage->tail_offset + done);
}

int pc_storage_wal_append(pc_storage_t *storage, uint64_t timestamp, const struct iovec *iov,
                          int iov_count, pc_wal_header_t *header_out) {
    if (storage->failed) return PC_ESTATE;
    if (pc__storage_replicated(storage)) return PC_EINVAL; /* the VSR journal is the log */
    PC_ASSERT(storage->replayed); /* replay positions the WAL; appending before is a bug */
    if (iov_count < 0 || iov_count > IOV_MAX - 2 || (iov_count > 0 && iov == NULL))
        return PC_EINVAL;
    uint64_t body_size = 0;
    for (int i = 0; i < iov_count; i++) {
        if (iov[i].iov_len > PC_PREPARE_BODY_MAX - body_size) return PC_EINVAL;
        body_size += iov[i].iov_len;
    }
    uint64_t entry_size = pc__storage_entry_size(body_size);
    if (!tail_fits(storage, entry_size)) {
        if (entry_size > rotation_capacity(storage)) return PC_EINVAL; /* segment too small */
        int rc = wal_rotate(storage);
        if (rc != PC_OK) return rc;
    }
    pc_wal_header_t header;
    header_build(storage, timestamp, body_size, iov, iov_count, &header);
    int rc = entry_write(storage, &header, iov, iov_count, entry_size);
    if (rc != PC_OK) return rc;
    storage->tail_offset += entry_size;
    storage->tail_dirty = true;
    storage->wal_op = header.op;
    storage->wal_checksum = header.checksum;
    storage->wal_bytes_since_checkpoint += entry_size;
    if (header_out != NULL) *header_out = header;
    PC_ASSERT(storage->tail_offset <= storage->tail.size);
    return PC_OK;
}

/* ---- sync ---- */

int pc_storage_wal_sync(pc_storage_t *storage) {
    if (storage->failed) return PC_ESTATE;
    if (pc__storage_replicated(storage)) return PC_EINVAL;
    PC_ASSERT(storage->replayed);
    uint64_t op = storage->wal_op;
    int rc = PC_OK;
    if (pc__storage_skip_fsync) {
        /* Test switch: behave as if synced, so crash tests can show that a
         * missing fsync loses acknowledged entries. */
        pc__storage_segment_close(&storage->prev);
        goto synced;
    }
    if (storage->prev.fd >= 0) {
        rc = pc__storage_segment_sync(storage, &storage->prev, false);
        if (rc != PC_OK) return rc;
        pc__storage_segment_close(&storage->prev);
    }
    if (storage->tail.fd >= 0 && storage->tail_dirty) {
        rc = pc__storage_segment_sync(storage, &storage->tail, false);
        if (rc != PC_OK) return rc;
    }
    if (storage->dir_dirty) {
        rc = pc__storage_sync_dir(storage); /* new segments' names */
        if (rc != PC_OK) return rc;
    }
synced:
    storage->tail_dirty = false;
    storage->dir_dirty = false;
    storage->synced_op = op;
    PC_ASSERT(storage->prev.fd < 0);
    return PC_OK;
}

/* ---- reserve ---- */

int pc_storage_reserve(pc_storage_t *storage, uint64_t wal_bytes, uint64_t slots_count) {
    if (storage->failed) return PC_ESTATE;
    if (pc__storage_replicated(storage)) {
        /* No WAL to extend: only the transfer store. */
        if (wal_bytes > 0) return PC_EINVAL;
        return pc__storage_slots_reserve(storage, slots_count);
    }
    PC_ASSERT(storage->replayed);
    if (wal_bytes > PC_PREPARE_BODY_MAX) return PC_EINVAL;
    uint64_t entry_size = pc__storage_entry_size(wal_bytes);
    if (!tail_fits(storage, entry_size)) {
        if (entry_size > rotation_capacity(storage)) return PC_EINVAL;
        if (storage->next.fd < 0) {
            int rc = segment_create(storage, storage->wal_op + 1, &storage->next);
            if (rc != PC_OK) return rc;
        }
    }
    PC_ASSERT(tail_fits(storage, entry_size) || storage->next.fd >= 0);
    return pc__storage_slots_reserve(storage, slots_count);
}

/* ---- accessors, pruning, close ---- */

uint64_t pc_storage_wal_op(const pc_storage_t *storage) {
    PC_ASSERT(storage != NULL);
    PC_ASSERT(storage->synced_op <= storage->wal_op);
    return storage->wal_op;
}

pc_u128 pc_storage_wal_checksum(const pc_storage_t *storage) {
    PC_ASSERT(storage != NULL);
    PC_ASSERT(storage->wal_op > 0 || storage->wal_checksum == 0);
    return storage->wal_checksum;
}

uint64_t pc_storage_wal_bytes_since_checkpoint(const pc_storage_t *storage) {
    PC_ASSERT(storage != NULL);
    return storage->wal_bytes_since_checkpoint;
}

static bool segment_is_open(const pc_storage_t *storage, uint64_t first) {
    return (storage->tail.fd >= 0 && storage->tail.first == first) ||
           (storage->prev.fd >= 0 && storage->prev.first == first) ||
           (storage->next.fd >= 0 && storage->next.first == first);
}

int pc__storage_wal_prune(pc_storage_t *storage, uint64_t op) {
    uint64_t *firsts = NULL;
    size_t count = 0;
    int rc = pc__storage_segments_list(storage, &firsts, &count);
    /* Segment i holds ops firsts[i] .. firsts[i + 1] - 1, so it is wholly
     * covered when the next one starts at or before op + 1. The last segment
     * is never removed: appends continue in it or after it. */
    for (size_t i = 0; rc == PC_OK && i + 1 < count; i++) {
        if (firsts[i + 1] > op + 1 || segment_is_open(storage, firsts[i])) continue;
        char name[32];
        pc__storage_segment_name(firsts[i], name, sizeof name);
        if (unlinkat(storage->dir_fd, name, 0) != 0 && errno != ENOENT)
            rc = pc__storage_io_error(storage, errno, "unlink", name, 0);
    }
    free(firsts);
    PC_ASSERT(rc <= 0);
    return rc;
}

void pc__storage_wal_close(pc_storage_t *storage) {
    PC_ASSERT(storage != NULL);
    pc__storage_segment_close(&storage->tail);
    pc__storage_segment_close(&storage->prev);
    pc__storage_segment_close(&storage->next);
    PC_ASSERT(storage->tail.fd < 0 && storage->prev.fd < 0 && storage->next.fd < 0);
}
