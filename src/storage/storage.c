/*
 * storage.c — a replica's data directory: formatting it, opening it under an
 * exclusive lock, closing it, and the I/O helpers the other storage files
 * share (full reads and writes, syncs, fallocate, error mapping).
 *
 * The superblock is the "this directory is formatted" marker: it is written
 * last by format, through a temporary file, fsync, rename and a directory
 * fsync, so a crash during format leaves either no superblock or a whole one.
 * Open takes flock(LOCK_EX | LOCK_NB) on it: two processes appending to one
 * WAL would interleave entries and break the hash chain.
 *
 * Error policy ("failed stays failed", as LMDB): a full disk is returned as
 * PC_ENOSPC and leaves the storage usable; any other I/O error, and every
 * sync failure, marks the storage failed, because after a failed fsync the
 * kernel may have dropped the dirty pages and nothing written since the last
 * good sync can be trusted. Every later call then answers PC_ESTATE.
 */
#include "storage_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

PC_STATIC_ASSERT(sizeof(pc_superblock_t) == PC_SUPERBLOCK_SIZE, "superblock layout");
PC_STATIC_ASSERT(sizeof(pc_storage_info_t) == 48, "storage info layout");
PC_STATIC_ASSERT(offsetof(pc_storage_info_t, journal_slots) == 36,
                 "journal_slots sits in what was padding after pending_max");

bool pc__storage_skip_fsync = false;
bool pc__storage_fail_next_fsync = false;
bool pc__storage_fail_next_alloc = false;
uint64_t pc__storage_segment_size = PC_WAL_SEGMENT_SIZE_MAX / 4;

/* ---- shared helpers ---- */

int pc__storage_corrupt(const char *file, int line, const char *format, ...) {
    char what[PC_STORAGE_MESSAGE_MAX];
    va_list args;
    va_start(args, format);
    vsnprintf(what, sizeof what, format, args);
    va_end(args);
    PC_ASSERT(file != NULL && line > 0);
    return pc__corrupt(file, line, what);
}

void pc__storage_path(const pc_storage_t *storage, const char *name, char *path) {
    PC_ASSERT(strlen(storage->dir) < PC_STORAGE_DIR_MAX);
    int n = snprintf(path, PC_STORAGE_PATH_MAX, "%s/%s", storage->dir, name);
    PC_ASSERT(n > 0 && (size_t)n < PC_STORAGE_PATH_MAX);
}

int pc__storage_io_error(pc_storage_t *storage, int err, const char *call, const char *name,
                         uint64_t offset) {
    PC_ASSERT(err != 0);
    PC_ASSERT(call != NULL && name != NULL);
    if (err == ENOSPC || err == EDQUOT) return PC_ENOSPC;
    if (err == ENOMEM) return PC_ENOMEM;
    pc__storage_log("%s %s/%s at offset %llu failed: %s; the storage is now failed", call,
                    storage->dir, name, (unsigned long long)offset, strerror(err));
    storage->failed = true;
    return PC_EIO;
}

int pc__storage_sync(pc_storage_t *storage, int fd, bool metadata, const char *name) {
    PC_ASSERT(fd >= 0);
    PC_ASSERT(!storage->failed);
    int rc = 0;
    if (pc__storage_fail_next_fsync) {
        pc__storage_fail_next_fsync = false;
        rc = -1;
        errno = EIO;
    } else {
        rc = metadata ? fsync(fd) : fdatasync(fd);
    }
    if (rc == 0) return PC_OK;
    /* A failed sync is never retried: Linux may already have marked the dirty
     * pages clean, so a second fsync could succeed over lost data. */
    pc__storage_log("%s of %s/%s failed: %s; the storage is now failed",
                    metadata ? "fsync" : "fdatasync", storage->dir, name, strerror(errno));
    storage->failed = true;
    return PC_EIO;
}

int pc__storage_sync_dir(pc_storage_t *storage) {
    PC_ASSERT(storage->dir_fd >= 0);
    return pc__storage_sync(storage, storage->dir_fd, true, ".");
}

int pc__storage_allocate(int fd, int mode, uint64_t offset, uint64_t size) {
    PC_ASSERT(fd >= 0);
    PC_ASSERT(size > 0);
    if (pc__storage_fail_next_alloc) {
        pc__storage_fail_next_alloc = false;
        return ENOSPC;
    }
    if (fallocate(fd, mode, (off_t)offset, (off_t)size) != 0) return errno;
    return 0;
}

int pc__storage_pwrite_all(int fd, const void *data, size_t size, uint64_t offset, size_t *done) {
    PC_ASSERT(fd >= 0);
    PC_ASSERT(data != NULL || size == 0);
    *done = 0;
    while (*done < size) {
        ssize_t n =
            pwrite(fd, (const uint8_t *)data + *done, size - *done, (off_t)(offset + *done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno;
        if (n == 0) return EIO;
        *done += (size_t)n;
    }
    return 0;
}

int pc__storage_pread_all(int fd, void *data, size_t size, uint64_t offset, size_t *done) {
    PC_ASSERT(fd >= 0);
    PC_ASSERT(data != NULL || size == 0);
    *done = 0;
    while (*done < size) {
        ssize_t n = pread(fd, (uint8_t *)data + *done, size - *done, (off_t)(offset + *done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno;
        if (n == 0) break; /* end of file: the caller checks *done */
        *done += (size_t)n;
    }
    return 0;
}

int pc__storage_zero_range(int fd, uint64_t offset, uint64_t size) {
    static const uint8_t zeros[PC_WAL_ALIGN];
    PC_ASSERT(fd >= 0);
    PC_ASSERT(offset + size >= offset);
    if (size == 0) return 0;
    /* ZERO_RANGE turns the range into unwritten extents: no data is written
     * and no space is needed. File systems without it get real zeros. */
    if (fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)size) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != EINVAL) return errno;
    for (uint64_t at = 0; at < size; at += sizeof zeros) {
        size_t done = 0;
        int err = pc__storage_pwrite_all(fd, zeros, (size_t)PC_MIN(sizeof zeros, size - at),
                                         offset + at, &done);
        if (err != 0) return err;
    }
    return 0;
}

/* ---- superblock ---- */

static pc_u128 superblock_checksum(const pc_superblock_t *superblock) {
    PC_ASSERT(superblock != NULL);
    PC_STATIC_ASSERT(offsetof(pc_superblock_t, magic) == 16, "checksum covers 16..255");
    return pc_checksum((const uint8_t *)superblock + 16, PC_SUPERBLOCK_SIZE - 16,
                       PC_SEED_SUPERBLOCK);
}

/* Copies the fields one by one into a zeroed struct, so the padding written
 * to disk is always zero whatever the caller's struct held. */
static void info_copy(pc_storage_info_t *to, const pc_storage_info_t *from) {
    PC_ASSERT(to != NULL && from != NULL);
    memset(to, 0, sizeof *to);
    to->cluster = from->cluster;
    to->unit = from->unit;
    to->replica = from->replica;
    to->replica_count = from->replica_count;
    to->accounts_max = from->accounts_max;
    to->transfers_max = from->transfers_max;
    to->pending_max = from->pending_max;
    to->journal_slots = from->journal_slots;
    to->checkpoint_wal_bytes = from->checkpoint_wal_bytes;
}

/* A unit is one replica (the WAL) or PC_REPLICAS_PER_UNIT replicas (VSR,
 * with a journal ring); a journal size only makes sense for the latter. */
static bool info_valid(const pc_storage_info_t *info) {
    if (info->replica_count != 1 && info->replica_count != PC_REPLICAS_PER_UNIT) return false;
    if (info->replica >= info->replica_count) return false;
    if (info->replica_count == 1 && info->journal_slots != 0) return false;
    if (info->replica_count > 1 && (info->journal_slots < PC_JOURNAL_SLOTS_MIN ||
                                    info->journal_slots > PC_JOURNAL_SLOTS_LIMIT))
        return false;
    if (info->accounts_max == 0 || info->accounts_max > PC_ACCOUNTS_MAX_LIMIT) return false;
    if (info->transfers_max == 0 || info->transfers_max > PC_TRANSFERS_MAX_LIMIT) return false;
    if (info->pending_max == 0 || info->checkpoint_wal_bytes == 0) return false;
    return true;
}

/* Writes DIR/superblock.tmp, syncs it, renames it over DIR/superblock and
 * syncs the directory: the superblock appears whole or not at all. */
static int superblock_write(pc_storage_t *storage, const pc_storage_info_t *info) {
    pc_superblock_t superblock;
    memset(&superblock, 0, sizeof superblock);
    superblock.magic = PC_SUPERBLOCK_MAGIC;
    superblock.version = PC_STORAGE_VERSION;
    info_copy(&superblock.info, info);
    superblock.checksum = superblock_checksum(&superblock);
    PC_ASSERT(superblock_checksum(&superblock) == superblock.checksum);

    char tmp[PC_STORAGE_PATH_MAX], final[PC_STORAGE_PATH_MAX];
    pc__storage_path(storage, "superblock.tmp", tmp);
    pc__storage_path(storage, "superblock", final);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return pc__storage_io_error(storage, errno, "open", "superblock.tmp", 0);
    size_t done = 0;
    int err = pc__storage_pwrite_all(fd, &superblock, sizeof superblock, 0, &done);
    int rc = err ? pc__storage_io_error(storage, err, "write", "superblock.tmp", done)
                 : pc__storage_sync(storage, fd, true, "superblock.tmp");
    close(fd);
    if (rc == PC_OK && rename(tmp, final) != 0)
        rc = pc__storage_io_error(storage, errno, "rename", "superblock.tmp", 0);
    if (rc == PC_OK) rc = pc__storage_sync_dir(storage);
    if (rc != PC_OK) unlink(tmp);
    return rc;
}

static int superblock_read(pc_storage_t *storage) {
    pc_superblock_t superblock;
    size_t done = 0;
    int err =
        pc__storage_pread_all(storage->superblock_fd, &superblock, sizeof superblock, 0, &done);
    if (err != 0) return pc__storage_io_error(storage, err, "read", "superblock", 0);
    if (done != sizeof superblock)
        return PC_CORRUPTF("superblock %s/superblock is %zu bytes, expected %u (offset %zu)",
                           storage->dir, done, PC_SUPERBLOCK_SIZE, done);
    if (superblock_checksum(&superblock) != superblock.checksum)
        return PC_CORRUPTF("superblock %s/superblock offset 0: checksum mismatch", storage->dir);
    if (superblock.magic != PC_SUPERBLOCK_MAGIC)
        return PC_CORRUPTF("superblock %s/superblock offset 16: bad magic 0x%08x", storage->dir,
                           superblock.magic);
    if (superblock.version != PC_STORAGE_VERSION) return PC_EVERSION;
    /* Format only writes parameters it accepts; anything else was not written
     * by it (the journal size below is trusted from here on). */
    if (!info_valid(&superblock.info))
        return PC_CORRUPTF("superblock %s/superblock offset 32: invalid format parameters "
                           "(replica %u of %u, journal_slots %u)",
                           storage->dir, superblock.info.replica, superblock.info.replica_count,
                           superblock.info.journal_slots);
    info_copy(&storage->info, &superblock.info);
    PC_ASSERT(storage->info.replica < storage->info.replica_count);
    return PC_OK;
}

/* ---- format ---- */

/* mkdir -p: creates DIR and any missing parents. */
static int make_dirs(const char *dir) {
    char path[PC_STORAGE_DIR_MAX];
    size_t length = strlen(dir);
    PC_ASSERT(length > 0 && length < sizeof path);
    memcpy(path, dir, length + 1);
    for (size_t i = 1; i <= length; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) return errno;
        path[i] = saved;
    }
    PC_ASSERT(strcmp(path, dir) == 0);
    return 0;
}

/* A directory is taken if it has a superblock, WAL segments, checkpoints, a
 * view state, a non-empty transfer store or a journal with a written slot:
 * formatting over any of them would mix a new data set with old data. An
 * empty transfer store or an unwritten journal left by a crashed format is
 * not data. */
static int dir_taken(pc_storage_t *storage) {
    struct stat st;
    if (fstatat(storage->dir_fd, "superblock", &st, 0) == 0) return PC_EEXIST;
    if (fstatat(storage->dir_fd, "transfers", &st, 0) == 0 && st.st_size > 0) return PC_EEXIST;
    if (fstatat(storage->dir_fd, "checkpoint-a", &st, 0) == 0) return PC_EEXIST;
    if (fstatat(storage->dir_fd, "checkpoint-b", &st, 0) == 0) return PC_EEXIST;
    if (fstatat(storage->dir_fd, "vsr-state", &st, 0) == 0) return PC_EEXIST;
    int rc = pc__storage_journal_taken(storage);
    if (rc != PC_OK) return rc;
    uint64_t *firsts = NULL;
    size_t count = 0;
    rc = pc__storage_segments_list(storage, &firsts, &count);
    free(firsts);
    if (rc != PC_OK) return rc;
    return count > 0 ? PC_EEXIST : PC_OK;
}

static int storage_alloc(const char *dir, pc_storage_t **out) {
    if (dir == NULL || dir[0] == '\0' || strlen(dir) >= PC_STORAGE_DIR_MAX) return PC_EINVAL;
    pc_storage_t *storage = calloc(1, sizeof *storage);
    if (storage == NULL) return PC_ENOMEM;
    memcpy(storage->dir, dir, strlen(dir) + 1);
    storage->dir_fd = storage->superblock_fd = storage->slots_fd = -1;
    storage->tail.fd = storage->prev.fd = storage->next.fd = -1;
    storage->journal_fd = storage->vsr_state_fd = -1;
    storage->vsr_state_newest = -1;
    *out = storage;
    PC_ASSERT(storage->dir[0] != '\0');
    return PC_OK;
}

/* Creates the data files, then the superblock last: its directory fsync also
 * makes the names of the files created before it durable. */
static int format_files(pc_storage_t *storage, const pc_storage_info_t *info) {
    int rc = dir_taken(storage);
    if (rc != PC_OK) return rc;
    info_copy(&storage->info, info); /* the journal size, for journal_create */
    if (pc__storage_replicated(storage)) {
        rc = pc__storage_journal_create(storage);
        if (rc != PC_OK) return rc;
    }
    int fd = openat(storage->dir_fd, "transfers", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = pc__storage_io_error(storage, errno, "create", "transfers", 0);
    } else {
        rc = pc__storage_sync(storage, fd, true, "transfers");
        close(fd);
    }
    if (rc == PC_OK) rc = superblock_write(storage, info);
    /* A failed format gives the (possibly huge) journal's space back. */
    if (rc != PC_OK && pc__storage_replicated(storage)) unlinkat(storage->dir_fd, "journal", 0);
    return rc;
}

int pc_storage_format(const char *dir, const pc_storage_info_t *info) {
    if (info == NULL || !info_valid(info)) return PC_EINVAL;
    pc_storage_t *storage = NULL;
    int rc = storage_alloc(dir, &storage);
    if (rc != PC_OK) return rc;
    int err = make_dirs(dir);
    if (err != 0) {
        rc = pc__storage_io_error(storage, err, "mkdir", ".", 0);
        goto fail;
    }
    storage->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (storage->dir_fd < 0) {
        rc = pc__storage_io_error(storage, errno, "open", ".", 0);
        goto fail;
    }
    rc = format_files(storage, info);
fail:
    PC_ASSERT(rc <= 0);
    pc_storage_close(storage);
    return rc;
}

/* ---- open / close ---- */

static int open_files(pc_storage_t *storage) {
    storage->dir_fd = open(storage->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (storage->dir_fd < 0) return errno == ENOENT ? PC_ENOTFOUND : PC_EIO;
    storage->superblock_fd = openat(storage->dir_fd, "superblock", O_RDONLY | O_CLOEXEC);
    if (storage->superblock_fd < 0) return errno == ENOENT ? PC_ENOTFOUND : PC_EIO;
    if (flock(storage->superblock_fd, LOCK_EX | LOCK_NB) != 0)
        return errno == EWOULDBLOCK ? PC_EBUSY : PC_EIO;
    int rc = superblock_read(storage);
    if (rc != PC_OK) return rc;
    storage->slots_fd = openat(storage->dir_fd, "transfers", O_RDWR | O_CLOEXEC);
    if (storage->slots_fd < 0) {
        if (errno == ENOENT)
            return PC_CORRUPTF("transfer store %s/transfers is missing (offset 0)", storage->dir);
        return PC_EIO;
    }
    struct stat st;
    if (fstat(storage->slots_fd, &st) != 0) return PC_EIO;
    /* A crash while the store grew may leave a partial last slot; it lies
     * beyond every checkpoint (the store is synced before one), so it is
     * simply not counted and the next write overwrites it. */
    storage->slots_count = (uint64_t)st.st_size / PC_SLOT_SIZE;
    storage->slots_prealloc_end = (uint64_t)st.st_size;
    /* The store's cache is let go only from here on (slots.c): what recovery
     * reads back of it is the kernel's to reclaim, since dropping it at the
     * first write would stall the loop about a microsecond a page. */
    storage->slots_cache_dropped = (uint64_t)st.st_size;
    PC_ASSERT(storage->slots_count * PC_SLOT_SIZE <= (uint64_t)st.st_size);
    return pc__storage_replicated(storage) ? pc__storage_journal_open(storage) : PC_OK;
}

int pc_storage_open(const char *dir, pc_storage_t **out) {
    PC_ASSERT(out != NULL);
    *out = NULL;
    pc_storage_t *storage = NULL;
    int rc = storage_alloc(dir, &storage);
    if (rc != PC_OK) return rc;
    rc = open_files(storage);
    if (rc != PC_OK) goto fail;
    storage->iov = calloc(IOV_MAX, sizeof *storage->iov);
    storage->buffer = malloc(PC_PREPARE_BODY_MAX);
    if (storage->iov == NULL || storage->buffer == NULL) {
        rc = PC_ENOMEM;
        goto fail;
    }
    *out = storage;
    return PC_OK;
fail:
    PC_ASSERT(rc < 0);
    pc_storage_close(storage);
    return rc;
}

void pc_storage_close(pc_storage_t *storage) {
    if (storage == NULL) return;
    PC_ASSERT(storage->dir[0] != '\0');
    pc__storage_wal_close(storage);
    pc__storage_journal_close(storage);
    if (storage->slots_fd >= 0) close(storage->slots_fd);
    if (storage->superblock_fd >= 0) close(storage->superblock_fd); /* drops the flock */
    if (storage->dir_fd >= 0) close(storage->dir_fd);
    free(storage->iov);
    free(storage->buffer);
    free(storage);
}

const pc_storage_info_t *pc_storage_info(const pc_storage_t *storage) {
    PC_ASSERT(storage != NULL);
    PC_ASSERT(storage->superblock_fd >= 0);
    return &storage->info;
}
