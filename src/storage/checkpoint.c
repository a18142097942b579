/*
 * checkpoint.c — the two checkpoint slots, DIR/checkpoint-a and -b, and the
 * pruning of WAL segments a checkpoint makes redundant.
 *
 * A checkpoint file is a 128-byte header (magic, version, a sequence number,
 * the pc_checkpoint_info_t, the blob's checksum and the header's own) and
 * then the opaque blob. Writes alternate between the slots: the new one
 * replaces the slot that does not hold the newest valid checkpoint, so the
 * newest stays intact whatever happens to the write, and load takes the
 * newest valid one by sequence, falling back to the other when it rots.
 *
 * Each slot is replaced through a temporary file, fdatasync, rename and a
 * directory fsync: a slot file is either a whole checkpoint or its previous
 * content, never a torn one, so "a checkpoint file exists but none is valid"
 * really is corruption and not a crash during the first checkpoint.
 *
 * WAL segments are pruned only up to the older of the two checkpoints on
 * disk: falling back to the older one is only useful if its WAL is still
 * there.
 *
 * A replicated unit (replica_count > 1) has no WAL: its checkpoint op is the
 * VSR op the state reached and wal_checksum whatever VSR records there, so
 * neither is checked against the WAL and nothing is pruned; a checkpoint
 * still never goes back.
 */
#include "storage_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

PC_STATIC_ASSERT(sizeof(pc_checkpoint_header_t) == PC_CHECKPOINT_HEADER_SIZE,
                 "checkpoint header is 128 bytes");
PC_STATIC_ASSERT(sizeof(pc_checkpoint_info_t) == 48, "checkpoint info layout");
PC_STATIC_ASSERT(offsetof(pc_checkpoint_header_t, checksum_blob) == 16,
                 "the header checksum covers 16..127");

static const char *const slot_names[2] = {"checkpoint-a", "checkpoint-b"};
static const char *const slot_tmp_names[2] = {"checkpoint-a.tmp", "checkpoint-b.tmp"};

static pc_u128 header_checksum(const pc_checkpoint_header_t *header) {
    PC_ASSERT(header != NULL);
    return pc_checksum((const uint8_t *)header + 16, PC_CHECKPOINT_HEADER_SIZE - 16,
                       PC_SEED_CHECKPOINT);
}

/* Field by field into a zeroed struct: no caller padding reaches the disk. */
static void info_copy(pc_checkpoint_info_t *to, const pc_checkpoint_info_t *from) {
    PC_ASSERT(to != NULL && from != NULL);
    memset(to, 0, sizeof *to);
    to->op = from->op;
    to->wal_checksum = from->wal_checksum;
    to->slots_count = from->slots_count;
    to->blob_size = from->blob_size;
}

/* Reads and checks a slot's header against the file size. Returns PC_OK,
 * PC_ENOTFOUND (no such file), PC_ECORRUPT or an I/O error; *fd_out is the
 * open file on PC_OK. */
static int slot_header_read(pc_storage_t *storage, int slot, pc_checkpoint_header_t *header,
                            int *fd_out) {
    char path[PC_STORAGE_PATH_MAX];
    pc__storage_path(storage, slot_names[slot], path);
    int fd = openat(storage->dir_fd, slot_names[slot], O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) return PC_ENOTFOUND;
    if (fd < 0) return pc__storage_io_error(storage, errno, "open", slot_names[slot], 0);
    struct stat st;
    size_t done = 0;
    int err = fstat(fd, &st) != 0 ? errno : 0;
    if (err == 0) err = pc__storage_pread_all(fd, header, sizeof *header, 0, &done);
    int rc = err ? pc__storage_io_error(storage, err, "read", slot_names[slot], 0) : PC_OK;
    if (rc == PC_OK && done != sizeof *header)
        rc = PC_CORRUPTF("checkpoint %s offset %zu: file ends inside the header", path, done);
    else if (rc == PC_OK && header_checksum(header) != header->checksum)
        rc = PC_CORRUPTF("checkpoint %s offset 0: header checksum mismatch", path);
    else if (rc == PC_OK &&
             (header->magic != PC_CHECKPOINT_MAGIC || header->version != PC_STORAGE_VERSION))
        rc = PC_CORRUPTF("checkpoint %s offset 32: bad magic or version", path);
    else if (rc == PC_OK && header->info.blob_size > (uint64_t)st.st_size - sizeof *header)
        rc = PC_CORRUPTF("checkpoint %s offset %zu: blob of %llu bytes runs past the end", path,
                         sizeof *header, (unsigned long long)header->info.blob_size);
    if (rc != PC_OK) close(fd);
    if (rc == PC_OK) *fd_out = fd;
    return rc;
}

/* Reads a slot's blob (malloc'd; NULL when empty) and checks its checksum. */
static int slot_blob_read(pc_storage_t *storage, int slot, int fd,
                          const pc_checkpoint_header_t *header, void **blob) {
    uint64_t size = header->info.blob_size;
    PC_ASSERT(size <= SIZE_MAX);
    *blob = NULL;
    uint8_t *data = size > 0 ? malloc((size_t)size) : NULL;
    if (size > 0 && data == NULL) return PC_ENOMEM;
    size_t done = 0;
    int err = pc__storage_pread_all(fd, data, (size_t)size, PC_CHECKPOINT_HEADER_SIZE, &done);
    int rc = err ? pc__storage_io_error(storage, err, "read", slot_names[slot], 0) : PC_OK;
    if (rc == PC_OK && (done != size || pc_checksum(data, (size_t)size, PC_SEED_CHECKPOINT_BLOB) !=
                                            header->checksum_blob)) {
        char path[PC_STORAGE_PATH_MAX];
        pc__storage_path(storage, slot_names[slot], path);
        rc = PC_CORRUPTF("checkpoint %s offset %u: blob checksum mismatch", path,
                         PC_CHECKPOINT_HEADER_SIZE);
    }
    if (rc != PC_OK) free(data);
    if (rc == PC_OK) *blob = data;
    PC_ASSERT(rc != PC_OK || size == 0 || *blob != NULL);
    return rc;
}

/* Reads both headers, then verifies blobs newest first until one holds; that
 * one is returned (blob kept only when wanted) in *newest (-1 if none). The
 * cache records which slots may serve as a fallback. */
static int slots_scan(pc_storage_t *storage, int *newest, pc_checkpoint_header_t *best,
                      void **blob) {
    pc_checkpoint_header_t headers[2];
    int fds[2] = {-1, -1};
    bool exists[2] = {false, false};
    int rc = PC_OK;
    for (int slot = 0; slot < 2 && rc != PC_EIO && rc != PC_ENOMEM; slot++) {
        rc = slot_header_read(storage, slot, &headers[slot], &fds[slot]);
        exists[slot] = rc != PC_ENOTFOUND;
        storage->checkpoint_valid[slot] = rc == PC_OK;
        storage->checkpoint_sequence[slot] = rc == PC_OK ? headers[slot].sequence : 0;
        storage->checkpoint_op[slot] = rc == PC_OK ? headers[slot].info.op : 0;
    }
    *newest = -1;
    for (int tries = 0; tries < 2 && rc != PC_EIO && rc != PC_ENOMEM; tries++) {
        int slot = storage->checkpoint_valid[1] &&
                           (!storage->checkpoint_valid[0] ||
                            storage->checkpoint_sequence[1] > storage->checkpoint_sequence[0])
                       ? 1
                       : 0;
        if (!storage->checkpoint_valid[slot]) break;
        void *data = NULL;
        rc = slot_blob_read(storage, slot, fds[slot], &headers[slot], &data);
        if (rc == PC_OK) {
            *newest = slot;
            *best = headers[slot];
            if (blob != NULL)
                *blob = data;
            else
                free(data);
            break;
        }
        storage->checkpoint_valid[slot] = false;
    }
    for (int slot = 0; slot < 2; slot++) {
        if (fds[slot] >= 0) close(fds[slot]);
    }
    if (rc == PC_EIO || rc == PC_ENOMEM) return rc;
    storage->checkpoints_known = true;
    if (*newest < 0 && (exists[0] || exists[1]))
        return PC_CORRUPTF("no valid checkpoint in %s: checkpoint-a and checkpoint-b are both "
                           "damaged (see above; offset 0)",
                           storage->dir);
    PC_ASSERT(*newest < 0 || storage->checkpoint_valid[*newest]);
    return PC_OK;
}

int pc_storage_checkpoint_load(pc_storage_t *storage, pc_checkpoint_info_t *info, void **blob) {
    if (storage->failed) return PC_ESTATE;
    PC_ASSERT(info != NULL && blob != NULL);
    memset(info, 0, sizeof *info);
    *blob = NULL;
    pc_checkpoint_header_t header;
    int newest = -1;
    int rc = slots_scan(storage, &newest, &header, blob);
    if (rc != PC_OK || newest < 0) return rc;
    if (header.info.slots_count > storage->slots_count) {
        free(*blob);
        *blob = NULL;
        return PC_CORRUPTF("transfer store %s/transfers ends at offset %llu but checkpoint %s "
                           "covers %llu slots",
                           storage->dir, (unsigned long long)(storage->slots_count * PC_SLOT_SIZE),
                           slot_names[newest], (unsigned long long)header.info.slots_count);
    }
    info_copy(info, &header.info);
    PC_ASSERT(info->blob_size == 0 || *blob != NULL);
    return PC_OK;
}

/* Writes the checkpoint into DIR/<slot>.tmp, syncs it and renames it over
 * the slot, then syncs the directory. A full disk leaves the slot as it was. */
static int slot_write(pc_storage_t *storage, int slot, const pc_checkpoint_header_t *header,
                      const void *blob) {
    const char *tmp = slot_tmp_names[slot];
    uint64_t size = PC_CHECKPOINT_HEADER_SIZE + header->info.blob_size;
    int fd = openat(storage->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return pc__storage_io_error(storage, errno, "create", tmp, 0);
    size_t done = 0;
    /* Allocating first turns a full disk into a clean PC_ENOSPC up front. */
    int err = pc__storage_allocate(fd, 0, 0, size);
    if (err == 0) err = pc__storage_pwrite_all(fd, header, sizeof *header, 0, &done);
    if (err == 0)
        err = pc__storage_pwrite_all(fd, blob, (size_t)header->info.blob_size,
                                     PC_CHECKPOINT_HEADER_SIZE, &done);
    int rc = err ? pc__storage_io_error(storage, err, "write", tmp, done)
                 : pc__storage_sync(storage, fd, false, tmp);
    close(fd);
    if (rc == PC_OK && renameat(storage->dir_fd, tmp, storage->dir_fd, slot_names[slot]) != 0)
        rc = pc__storage_io_error(storage, errno, "rename", tmp, 0);
    if (rc == PC_OK) rc = pc__storage_sync_dir(storage);
    if (rc != PC_OK) unlinkat(storage->dir_fd, tmp, 0);
    PC_ASSERT(rc <= 0);
    return rc;
}

/* Whether info may be recorded now. A single replica's checkpoint must match
 * its WAL (op not past the end, the checksum of the entry at the end); a
 * replicated unit's op is a VSR op the WAL knows nothing about. */
static int checkpoint_check(const pc_storage_t *storage, const pc_checkpoint_info_t *info,
                            const void *blob) {
    if (info == NULL || (info->blob_size > 0 && blob == NULL)) return PC_EINVAL;
    if (info->slots_count > storage->slots_count) return PC_EINVAL;
    if (!pc__storage_replicated(storage)) {
        if (info->op > storage->wal_op) return PC_EINVAL;
        if (info->op == storage->wal_op && info->wal_checksum != storage->wal_checksum)
            return PC_EINVAL;
    }
    if (info->blob_size > SIZE_MAX - PC_CHECKPOINT_HEADER_SIZE) return PC_EINVAL;
    for (int slot = 0; slot < 2; slot++) {
        if (storage->checkpoint_valid[slot] && storage->checkpoint_op[slot] > info->op)
            return PC_EINVAL; /* checkpoints never go back */
    }
    PC_ASSERT(storage->checkpoints_known);
    return PC_OK;
}

int pc_storage_checkpoint_write(pc_storage_t *storage, const pc_checkpoint_info_t *info,
                                const void *blob) {
    if (storage->failed) return PC_ESTATE;
    pc_checkpoint_header_t header;
    int newest = -1;
    int rc = storage->checkpoints_known ? PC_OK : slots_scan(storage, &newest, &header, NULL);
    if (rc != PC_OK && rc != PC_ECORRUPT) return rc; /* both damaged: write over them */
    rc = checkpoint_check(storage, info, blob);
    if (rc != PC_OK) return rc;
    /* The new checkpoint goes where the newest valid one is not. */
    bool a_newest = storage->checkpoint_valid[0] &&
                    (!storage->checkpoint_valid[1] ||
                     storage->checkpoint_sequence[0] > storage->checkpoint_sequence[1]);
    int slot = a_newest ? 1 : 0, other = 1 - slot;
    memset(&header, 0, sizeof header);
    header.magic = PC_CHECKPOINT_MAGIC;
    header.version = PC_STORAGE_VERSION;
    header.sequence = PC_MAX(storage->checkpoint_sequence[0], storage->checkpoint_sequence[1]) + 1;
    info_copy(&header.info, info);
    header.checksum_blob = pc_checksum(blob, (size_t)info->blob_size, PC_SEED_CHECKPOINT_BLOB);
    header.checksum = header_checksum(&header);
    /* The store must be durable before a checkpoint claims its slots. */
    rc = pc__storage_sync(storage, storage->slots_fd, false, "transfers");
    if (rc == PC_OK) rc = slot_write(storage, slot, &header, blob);
    if (rc != PC_OK) return rc;
    storage->checkpoint_valid[slot] = true;
    storage->checkpoint_sequence[slot] = header.sequence;
    storage->checkpoint_op[slot] = info->op;
    storage->wal_bytes_since_checkpoint = 0;
    PC_ASSERT(header_checksum(&header) == header.checksum);
    if (pc__storage_replicated(storage)) return PC_OK; /* no WAL to prune */
    uint64_t covered = storage->checkpoint_valid[other]
                           ? PC_MIN(info->op, storage->checkpoint_op[other])
                           : info->op;
    return pc__storage_wal_prune(storage, covered);
}
