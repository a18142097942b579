/*
 * slots.c — the transfer store: DIR/transfers, an array of fixed 160-byte
 * slots, slot i at byte i * 160.
 *
 * Bytes 144..159 of each slot are a checksum owned by storage, over bytes
 * 0..143 and seeded with the slot's location: a slot that lands at the wrong
 * place (a misdirected write), a slot that never landed (a hole reading as
 * zeros) and a flipped bit all fail the check on read. The store is written
 * without fsync; a checkpoint syncs it first and records how many slots it
 * covers, and recovery truncates the store back to that count, so the slot
 * count is the logical file size at open and is tracked in memory after.
 * Space is preallocated with FALLOC_FL_KEEP_SIZE in 64 MiB steps by
 * pc_storage_reserve, so slot writes after a reserve cannot hit ENOSPC and
 * the logical size still counts only written slots.
 *
 * The store's page cache is bounded: pages further than PC_SLOTS_CACHE_KEEP
 * behind the tail are dropped (slots_cache_trim), and a slot that old is
 * read from the disk. Slots read back (recovery's rebuild, lookups) are
 * left to the kernel's reclaim.
 */
#include "storage_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define SLOT_BODY_SIZE (PC_SLOT_SIZE - sizeof(pc_u128))

PC_STATIC_ASSERT(PC_SLOT_SIZE == 160, "slot layout is fixed on disk");
PC_STATIC_ASSERT(SLOT_BODY_SIZE == 144, "the checksum is the last 16 bytes");

/* A different seed per location (an odd multiplier is a bijection), so the
 * same bytes checksum differently at every place. */
static uint64_t slot_seed(uint64_t loc) {
    return PC_SEED_SLOT ^ ((loc + 1) * 0x9e3779b97f4a7c15ull);
}

static pc_u128 slot_checksum(const uint8_t *slot, uint64_t loc) {
    PC_ASSERT(slot != NULL);
    return pc_checksum(slot, SLOT_BODY_SIZE, slot_seed(loc));
}

/* Whether the slot's stored checksum matches its bytes at loc. */
static bool slot_sealed(const uint8_t *slot, uint64_t loc) {
    pc_u128 stored;
    memcpy(&stored, slot + SLOT_BODY_SIZE, sizeof stored);
    return slot_checksum(slot, loc) == stored;
}

static bool slot_zero(const uint8_t *slot) {
    for (size_t i = 0; i < PC_SLOT_SIZE; i++) {
        if (slot[i] != 0) return false;
    }
    return true;
}

uint64_t pc_storage_slots_count(const pc_storage_t *storage) {
    PC_ASSERT(storage != NULL);
    PC_ASSERT(storage->slots_fd >= 0);
    return storage->slots_count;
}

/* Drops the store's cached pages more than PC_SLOTS_CACHE_KEEP behind the
 * end of a write [start, end) that passed a PC_SLOTS_CACHE_STEP boundary.
 * Kept, the cache grows with the store and every write needs pages the
 * kernel must newly find; dropped, the freed pages are the next ones
 * written. The call runs on the replica's loop at about a microsecond a
 * page, hence small steps (docs/DESIGN.md, "The transfer store keeps ~64
 * MiB of page cache"). Pages still dirty stay, their writeback started
 * when written; each drop starts PC_SLOTS_CACHE_RECHECK below where the
 * last one ended, which takes most such stragglers. */
static void slots_cache_trim(pc_storage_t *storage, uint64_t start, uint64_t end) {
    PC_ASSERT(start < end);
    uint64_t boundary = end / PC_SLOTS_CACHE_STEP * PC_SLOTS_CACHE_STEP;
    if (boundary <= start || boundary <= PC_SLOTS_CACHE_KEEP) return;
    uint64_t to = boundary - PC_SLOTS_CACHE_KEEP;
    uint64_t dropped = storage->slots_cache_dropped;
    uint64_t from = dropped > PC_SLOTS_CACHE_RECHECK ? dropped - PC_SLOTS_CACHE_RECHECK : 0;
    if (from >= to) return;
    /* Advice only: on failure the pages stay cached, which is no error. */
    (void)posix_fadvise(storage->slots_fd, (off_t)from, (off_t)(to - from),
                        POSIX_FADV_DONTNEED);
    storage->slots_cache_dropped = to;
}

/* Seals each slot with its checksum, then writes them in one pwrite. On a
 * full disk the store is cut back to its previous size, so no partial slot
 * is left past the end. */
int pc_storage_slots_write(pc_storage_t *storage, uint64_t loc, void *slots, uint32_t count) {
    if (storage->failed) return PC_ESTATE;
    if (loc > storage->slots_count || (count > 0 && slots == NULL)) return PC_EINVAL;
    if (count == 0) return PC_OK;
    uint8_t *bytes = slots;
    for (uint32_t i = 0; i < count; i++) {
        pc_u128 checksum = slot_checksum(bytes + (size_t)i * PC_SLOT_SIZE, loc + i);
        memcpy(bytes + (size_t)i * PC_SLOT_SIZE + SLOT_BODY_SIZE, &checksum, sizeof checksum);
    }
    PC_ASSERT_HOT(slot_sealed(bytes + (size_t)(count - 1) * PC_SLOT_SIZE, loc + count - 1));
    size_t size = (size_t)count * PC_SLOT_SIZE, done = 0;
    uint64_t offset = loc * PC_SLOT_SIZE;
    int err = pc__storage_pwrite_all(storage->slots_fd, bytes, size, offset, &done);
    if (err != 0) {
        int rc = pc__storage_io_error(storage, err, "write", "transfers", offset + done);
        if (rc == PC_ENOSPC && offset + done > storage->slots_count * PC_SLOT_SIZE) {
            if (ftruncate(storage->slots_fd, (off_t)(storage->slots_count * PC_SLOT_SIZE)) != 0)
                storage->failed = true; /* a partial slot we cannot remove */
            storage->slots_prealloc_end = storage->slots_count * PC_SLOT_SIZE;
        }
        return rc;
    }
    storage->slots_count = PC_MAX(storage->slots_count, loc + count);
    PC_ASSERT(storage->slots_count >= loc + count);
    /* Start writeback now (it does not wait), so the checkpoint's fdatasync
     * finds little left to flush instead of stalling the loop for seconds. */
    sync_file_range(storage->slots_fd, (off64_t)offset, (off64_t)size, SYNC_FILE_RANGE_WRITE);
    slots_cache_trim(storage, offset, offset + size);
    return PC_OK;
}

/* Verifies one slot read from loc: all zeros (a lost write or a hole) and a
 * checksum mismatch (bit rot, or a slot written to another location) are
 * both corruption. */
static int slot_verify(const pc_storage_t *storage, const uint8_t *slot, uint64_t loc) {
    uint64_t offset = loc * PC_SLOT_SIZE;
    if (slot_zero(slot))
        return PC_CORRUPTF("transfer slot %llu in %s/transfers offset %llu is all zeros",
                           (unsigned long long)loc, storage->dir, (unsigned long long)offset);
    if (!slot_sealed(slot, loc))
        return PC_CORRUPTF("transfer slot %llu in %s/transfers offset %llu: checksum mismatch "
                           "(damaged, or written to the wrong location)",
                           (unsigned long long)loc, storage->dir, (unsigned long long)offset);
    PC_ASSERT(loc < storage->slots_count);
    return PC_OK;
}

int pc_storage_slots_read(pc_storage_t *storage, uint64_t loc, void *slots, uint32_t count) {
    if (storage->failed) return PC_ESTATE;
    if (count > 0 && slots == NULL) return PC_EINVAL;
    if (loc > storage->slots_count || count > storage->slots_count - loc) return PC_ENOTFOUND;
    size_t size = (size_t)count * PC_SLOT_SIZE, done = 0;
    uint64_t offset = loc * PC_SLOT_SIZE;
    int err = pc__storage_pread_all(storage->slots_fd, slots, size, offset, &done);
    if (err != 0) return pc__storage_io_error(storage, err, "read", "transfers", offset);
    if (done != size)
        return PC_CORRUPTF("transfer store %s/transfers ends at offset %llu, inside the %llu "
                           "slots counted",
                           storage->dir, (unsigned long long)(offset + done),
                           (unsigned long long)storage->slots_count);
    for (uint32_t i = 0; i < count; i++) {
        int rc = slot_verify(storage, (const uint8_t *)slots + (size_t)i * PC_SLOT_SIZE, loc + i);
        if (rc != PC_OK) return rc;
    }
    PC_ASSERT(done == size);
    return PC_OK;
}

int pc_storage_slots_truncate(pc_storage_t *storage, uint64_t count) {
    if (storage->failed) return PC_ESTATE;
    if (count > storage->slots_count) return PC_EINVAL;
    uint64_t size = count * PC_SLOT_SIZE;
    if (ftruncate(storage->slots_fd, (off_t)size) != 0)
        return pc__storage_io_error(storage, errno, "truncate", "transfers", size);
    /* Truncation also frees space preallocated past the end. */
    storage->slots_count = count;
    storage->slots_prealloc_end = size;
    storage->slots_cache_dropped = PC_MIN(storage->slots_cache_dropped, size);
    PC_ASSERT(storage->slots_count == count);
    return PC_OK;
}

int pc__storage_slots_reserve(pc_storage_t *storage, uint64_t slots_count) {
    PC_ASSERT(!storage->failed);
    if (slots_count > PC_TRANSFERS_MAX_LIMIT) return PC_EINVAL;
    uint64_t end = (storage->slots_count + slots_count) * PC_SLOT_SIZE;
    if (end <= storage->slots_prealloc_end) return PC_OK;
    uint64_t target =
        (end + PC_SLOTS_PREALLOC_STEP - 1) / PC_SLOTS_PREALLOC_STEP * PC_SLOTS_PREALLOC_STEP;
    int err =
        pc__storage_allocate(storage->slots_fd, FALLOC_FL_KEEP_SIZE, storage->slots_prealloc_end,
                             target - storage->slots_prealloc_end);
    if (err != 0)
        return pc__storage_io_error(storage, err, "fallocate", "transfers",
                                    storage->slots_prealloc_end);
    storage->slots_prealloc_end = target;
    PC_ASSERT(storage->slots_prealloc_end >= end);
    return PC_OK;
}
