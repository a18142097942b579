/*
 * journal.c — the durable parts of a replicated unit (replica_count > 1)
 * that VSR owns: the journal, DIR/journal, and the view state,
 * DIR/vsr-state.
 *
 * The journal is a ring of info.journal_slots fixed slots of
 * PC_JOURNAL_SLOT_SIZE bytes, slot i at byte i * PC_JOURNAL_SLOT_SIZE: a
 * prepare's 128-byte header at the slot's start and its body right after.
 * Format preallocates the whole file, so a write never changes its size (the
 * common fdatasync has no metadata to flush) and never runs out of space on
 * an ordinary file system. Storage neither checksums nor interprets slots:
 * the VSR header carries its own checksums, and a torn or rotten slot is
 * for VSR to notice and repair from a peer, which is why a partial journal
 * write is not undone here (unlike a WAL append).
 *
 * After the slots lies the header ring (PC_JOURNAL_RING_OFFSET): one
 * 256-byte entry per slot, a copy of the header last written to the slot,
 * sealed by storage (checksum seeded with the slot). Every journal write
 * writes both copies and one fdatasync of the file covers both, so when VSR
 * hears a prepare is durable, both copies are. Two copies written apart let
 * recovery tell a slot whose body rotted (its header copy says what it held:
 * "have header, need repair") from one it cannot read at all (faulty): the
 * fault model of docs/DESIGN.md ("Nacks and the header ring"), where a disk
 * fault damages at most one copy of a slot's last durable write. The ring
 * sits in the same file so one fdatasync per turn still covers everything;
 * a second file would need a second one. A journal from before the ring
 * existed is extended with an empty one at open (every copy "never
 * written", which recovery reads exactly as it read such slots before).
 *
 * The view state (view, log_view, the head header: opaque bytes here) must
 * survive any crash whole, so it is kept twice, in two 4 KiB copies at
 * offsets 0 and 4096, each checksummed with a sequence number. A write goes
 * to the copy not holding the newest valid state and is fdatasync'd before
 * it returns; a torn write damages only the copy being written, and read
 * takes the newest valid copy. Both copies all-zero (or no file) means
 * "never written", a fresh replica; written but neither copy valid is
 * corruption.
 */
#include "storage_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

PC_STATIC_ASSERT(sizeof(pc_vsr_state_header_t) == PC_VSR_STATE_HEADER_SIZE,
                 "view state header layout");
PC_STATIC_ASSERT(offsetof(pc_vsr_state_header_t, magic) == 16, "the checksum covers 16..4095");
PC_STATIC_ASSERT(offsetof(pc_vsr_state_header_t, size) == 32, "view state header layout");
PC_STATIC_ASSERT(sizeof(pc_journal_ring_entry_t) == PC_JOURNAL_RING_ENTRY_SIZE,
                 "header ring entry layout");
PC_STATIC_ASSERT(offsetof(pc_journal_ring_entry_t, checksum) == PC_JOURNAL_RING_ENTRY_SIZE - 16,
                 "the seal's checksum is the entry's last 16 bytes");
PC_STATIC_ASSERT(512 % PC_JOURNAL_RING_ENTRY_SIZE == 0, "no entry straddles a sector");
PC_STATIC_ASSERT(PC_JOURNAL_RING_OFFSET(1) % 4096 == 0, "the ring starts on a page");

#define JOURNAL_NAME "journal"
#define VSR_STATE_NAME "vsr-state"

/* The whole file: slots, then the header ring. */
static uint64_t journal_size(const pc_storage_t *storage) {
    PC_ASSERT(pc__storage_replicated(storage));
    PC_ASSERT(storage->info.journal_slots >= PC_JOURNAL_SLOTS_MIN);
    return PC_JOURNAL_FILE_SIZE(storage->info.journal_slots);
}

static uint64_t ring_entry_offset(const pc_storage_t *storage, uint32_t slot) {
    PC_ASSERT(slot < storage->info.journal_slots);
    uint64_t at = PC_JOURNAL_RING_OFFSET(storage->info.journal_slots) +
                  (uint64_t)slot * PC_JOURNAL_RING_ENTRY_SIZE;
    PC_ASSERT(at + PC_JOURNAL_RING_ENTRY_SIZE <= journal_size(storage));
    return at;
}

/* A different seed per slot (an odd multiplier is a bijection), so an entry
 * that lands in another slot's place fails its check there. */
static pc_u128 ring_checksum(const pc_journal_ring_entry_t *entry, uint32_t slot) {
    PC_ASSERT(entry != NULL);
    uint64_t seed = PC_SEED_JOURNAL_RING ^ (((uint64_t)slot + 1) * 0x9e3779b97f4a7c15ull);
    return pc_checksum(entry, offsetof(pc_journal_ring_entry_t, checksum), seed);
}

/* ---- the journal file ---- */

/* Creates DIR/journal at its full size (replacing an unwritten one left by a
 * crashed format) and fsyncs it; format's superblock step fsyncs the
 * directory. On any failure, ENOSPC included, no journal is left behind. */
int pc__storage_journal_create(pc_storage_t *storage) {
    PC_ASSERT(storage->journal_fd < 0);
    uint64_t size = journal_size(storage);
    int fd = openat(storage->dir_fd, JOURNAL_NAME, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return pc__storage_io_error(storage, errno, "create", JOURNAL_NAME, 0);
    int err = pc__storage_allocate(fd, 0, 0, size);
    int rc = err ? pc__storage_io_error(storage, err, "fallocate", JOURNAL_NAME, 0)
                 : pc__storage_sync(storage, fd, true, JOURNAL_NAME);
    close(fd);
    if (rc != PC_OK) unlinkat(storage->dir_fd, JOURNAL_NAME, 0);
    PC_ASSERT(rc <= 0);
    return rc;
}

/* A journal formatted before the header ring existed is exactly its slots:
 * append an empty ring (zeros: every header copy "never written") and make
 * the new size durable before anything is written there. */
static int ring_add(pc_storage_t *storage, const char *path) {
    uint64_t at = PC_JOURNAL_RING_OFFSET(storage->info.journal_slots);
    uint64_t size = PC_JOURNAL_RING_SIZE(storage->info.journal_slots);
    PC_ASSERT(at + size == journal_size(storage));
    int err = pc__storage_allocate(storage->journal_fd, 0, at, size);
    if (err != 0) return pc__storage_io_error(storage, err, "fallocate", JOURNAL_NAME, at);
    int rc = pc__storage_sync(storage, storage->journal_fd, true, JOURNAL_NAME);
    if (rc != PC_OK) return rc;
    pc__storage_log("journal %s had no header ring (formatted by an older paycell): added an "
                    "empty one of %llu bytes at offset %llu; slots written before now have no "
                    "header copy until they are written again",
                    path, (unsigned long long)size, (unsigned long long)at);
    return PC_OK;
}

int pc__storage_journal_open(pc_storage_t *storage) {
    PC_ASSERT(storage->journal_fd < 0);
    char path[PC_STORAGE_PATH_MAX];
    pc__storage_path(storage, JOURNAL_NAME, path);
    storage->journal_fd = openat(storage->dir_fd, JOURNAL_NAME, O_RDWR | O_CLOEXEC);
    if (storage->journal_fd < 0) {
        if (errno == ENOENT) return PC_CORRUPTF("journal %s is missing (offset 0)", path);
        return PC_EIO;
    }
    struct stat st;
    if (fstat(storage->journal_fd, &st) != 0) return PC_EIO;
    uint64_t expect = journal_size(storage);
    if ((uint64_t)st.st_size == PC_JOURNAL_RING_OFFSET(storage->info.journal_slots))
        return ring_add(storage, path);
    /* Format made it this size and writes stay inside it: any other size is
     * a file some other hand truncated, extended or replaced. */
    if ((uint64_t)st.st_size != expect)
        return PC_CORRUPTF("journal %s is %llu bytes, expected %llu (%u slots; offset %llu)", path,
                           (unsigned long long)st.st_size, (unsigned long long)expect,
                           storage->info.journal_slots,
                           (unsigned long long)PC_MIN((uint64_t)st.st_size, expect));
    PC_ASSERT(storage->journal_fd >= 0);
    return PC_OK;
}

/* Whether DIR/journal exists with a written slot (a non-zero byte in some
 * slot's header). Format preallocates zeros and every VSR prepare header is
 * non-zero, so an all-zero journal is one a crashed format left behind. */
int pc__storage_journal_taken(pc_storage_t *storage) {
    int fd = openat(storage->dir_fd, JOURNAL_NAME, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) return PC_OK;
    if (fd < 0) return pc__storage_io_error(storage, errno, "open", JOURNAL_NAME, 0);
    struct stat st;
    int rc = fstat(fd, &st) != 0 ? pc__storage_io_error(storage, errno, "fstat", JOURNAL_NAME, 0)
                                 : PC_OK;
    uint64_t slots = rc == PC_OK ? (uint64_t)st.st_size / PC_JOURNAL_SLOT_SIZE : 0;
    if (slots > PC_JOURNAL_SLOTS_LIMIT) rc = PC_EEXIST; /* not a journal format made */
    for (uint64_t slot = 0; rc == PC_OK && slot < slots; slot++) {
        uint8_t header[PC_HEADER_SIZE];
        size_t done = 0;
        int err =
            pc__storage_pread_all(fd, header, sizeof header, slot * PC_JOURNAL_SLOT_SIZE, &done);
        if (err != 0) rc = pc__storage_io_error(storage, err, "read", JOURNAL_NAME, 0);
        for (size_t i = 0; rc == PC_OK && i < done; i++) {
            if (header[i] != 0) rc = PC_EEXIST;
        }
    }
    close(fd);
    PC_ASSERT(rc <= 0);
    return rc;
}

void pc__storage_journal_close(pc_storage_t *storage) {
    PC_ASSERT(storage != NULL);
    if (storage->journal_fd >= 0) close(storage->journal_fd);
    if (storage->vsr_state_fd >= 0) close(storage->vsr_state_fd);
    storage->journal_fd = storage->vsr_state_fd = -1;
}

/* ---- journal I/O ---- */

/* The header's sealed copy into the slot's header-ring entry. Written after
 * the prepare but not ordered with it on disk: the journal sync that follows
 * makes both durable, and a crash before it may leave either one old. */
static int ring_write(pc_storage_t *storage, uint32_t slot, const void *header) {
    pc_journal_ring_entry_t entry;
    memset(&entry, 0, sizeof entry);
    memcpy(entry.header, header, PC_HEADER_SIZE);
    entry.magic = PC_JOURNAL_RING_MAGIC;
    entry.version = PC_STORAGE_VERSION;
    entry.slot = slot;
    entry.checksum = ring_checksum(&entry, slot);
    PC_ASSERT_HOT(ring_checksum(&entry, slot) == entry.checksum);
    uint64_t at = ring_entry_offset(storage, slot);
    size_t done = 0;
    int err = pc__storage_pwrite_all(storage->journal_fd, &entry, sizeof entry, at, &done);
    if (err != 0) return pc__storage_io_error(storage, err, "write", JOURNAL_NAME, at + done);
    PC_ASSERT(done == sizeof entry);
    return PC_OK;
}

/* Header and body in one pwritev at the slot's start: the two land in one
 * request and the caller never copies a prepare into a staging buffer. */
int pc_storage_journal_write(pc_storage_t *storage, uint32_t slot, const void *header,
                             const void *body, uint32_t body_size) {
    if (storage->failed) return PC_ESTATE;
    if (storage->journal_fd < 0) return PC_EINVAL; /* not a replicated unit */
    if (slot >= storage->info.journal_slots || header == NULL) return PC_EINVAL;
    if (body_size > PC_VSR_PREPARE_BODY_MAX || (body == NULL && body_size > 0)) return PC_EINVAL;
    struct iovec v[2] = {
        {.iov_base = (void *)header, .iov_len = PC_HEADER_SIZE},
        {.iov_base = (void *)body, .iov_len = body_size},
    };
    uint64_t offset = (uint64_t)slot * PC_JOURNAL_SLOT_SIZE, done = 0;
    PC_ASSERT(offset + PC_HEADER_SIZE + body_size <= PC_JOURNAL_RING_OFFSET(slot + 1));
    int err = pc__storage_pwritev_all(storage->journal_fd, v, body_size > 0 ? 2 : 1, offset, &done);
    if (err != 0) return pc__storage_io_error(storage, err, "write", JOURNAL_NAME, offset + done);
    PC_ASSERT(done == PC_HEADER_SIZE + body_size);
    return ring_write(storage, slot, header);
}

int pc_storage_journal_sync(pc_storage_t *storage) {
    if (storage->failed) return PC_ESTATE;
    if (storage->journal_fd < 0) return PC_EINVAL;
    /* Test switch, as in wal_sync: count as synced without syncing. */
    if (pc__storage_skip_fsync) return PC_OK;
    return pc__storage_sync(storage, storage->journal_fd, false, JOURNAL_NAME);
}

int pc_storage_journal_read(pc_storage_t *storage, uint32_t slot, uint32_t offset, void *buf,
                            uint32_t size) {
    if (storage->failed) return PC_ESTATE;
    if (storage->journal_fd < 0) return PC_EINVAL;
    if (slot >= storage->info.journal_slots || (buf == NULL && size > 0)) return PC_EINVAL;
    if (offset > PC_JOURNAL_SLOT_SIZE || size > PC_JOURNAL_SLOT_SIZE - offset) return PC_EINVAL;
    uint64_t at = (uint64_t)slot * PC_JOURNAL_SLOT_SIZE + offset;
    size_t done = 0;
    int err = pc__storage_pread_all(storage->journal_fd, buf, size, at, &done);
    if (err != 0) return pc__storage_io_error(storage, err, "read", JOURNAL_NAME, at + done);
    if (done != size) {
        char path[PC_STORAGE_PATH_MAX];
        pc__storage_path(storage, JOURNAL_NAME, path);
        return PC_CORRUPTF("journal %s ends at offset %llu, inside slot %u", path,
                           (unsigned long long)(at + done), slot);
    }
    PC_ASSERT(at + size <= journal_size(storage));
    return PC_OK;
}

static bool bytes_zero(const void *bytes, size_t size) {
    const uint8_t *b = bytes;
    for (size_t i = 0; i < size; i++) {
        if (b[i] != 0) return false;
    }
    return true;
}

/* Reads and checks one header-ring entry (see storage.h for the answers).
 * On anything but PC_OK the caller's header is zeroed, so a damaged copy is
 * never mistaken for one by a caller that ignores the answer. */
int pc_storage_journal_header_read(pc_storage_t *storage, uint32_t slot, void *header) {
    if (storage->failed) return PC_ESTATE;
    if (storage->journal_fd < 0) return PC_EINVAL;
    if (slot >= storage->info.journal_slots || header == NULL) return PC_EINVAL;
    memset(header, 0, PC_HEADER_SIZE);
    pc_journal_ring_entry_t entry;
    uint64_t at = ring_entry_offset(storage, slot);
    size_t done = 0;
    int err = pc__storage_pread_all(storage->journal_fd, &entry, sizeof entry, at, &done);
    if (err != 0) return pc__storage_io_error(storage, err, "read", JOURNAL_NAME, at + done);
    char path[PC_STORAGE_PATH_MAX];
    pc__storage_path(storage, JOURNAL_NAME, path);
    if (done != sizeof entry)
        return PC_CORRUPTF("journal %s ends at offset %llu, inside the header ring", path,
                           (unsigned long long)(at + done));
    if (bytes_zero(&entry, sizeof entry)) return PC_ENOTFOUND;
    if (ring_checksum(&entry, slot) != entry.checksum || entry.magic != PC_JOURNAL_RING_MAGIC ||
        entry.slot != slot || entry.version != PC_STORAGE_VERSION)
        return PC_CORRUPTF("journal %s: header ring entry of slot %u at offset %llu is damaged "
                           "(checksum mismatch, or written for another slot)",
                           path, slot, (unsigned long long)at);
    memcpy(header, entry.header, PC_HEADER_SIZE);
    PC_ASSERT(entry.slot == slot);
    return PC_OK;
}

/* ---- view state ---- */

typedef struct vsr_state_copies {
    uint8_t pages[2][PC_VSR_STATE_COPY_SIZE] __attribute__((aligned(16)));
    bool valid[2]; /* checksum, magic, version and size bound hold */
    bool zero[2];  /* never written */
} vsr_state_copies_t;

static pc_u128 vsr_state_checksum(const uint8_t *page) {
    PC_ASSERT(page != NULL);
    return pc_checksum(page + 16, PC_VSR_STATE_COPY_SIZE - 16, PC_SEED_VSR_STATE);
}

static bool page_zero(const uint8_t *page) {
    for (size_t i = 0; i < PC_VSR_STATE_COPY_SIZE; i++) {
        if (page[i] != 0) return false;
    }
    return true;
}

static const pc_vsr_state_header_t *page_header(const uint8_t *page) {
    return (const pc_vsr_state_header_t *)(const void *)page;
}

/* Opens DIR/vsr-state if it exists (PC_ENOTFOUND if not). */
static int vsr_state_open(pc_storage_t *storage) {
    if (storage->vsr_state_fd >= 0) return PC_OK;
    storage->vsr_state_fd = openat(storage->dir_fd, VSR_STATE_NAME, O_RDWR | O_CLOEXEC);
    if (storage->vsr_state_fd < 0 && errno == ENOENT) return PC_ENOTFOUND;
    if (storage->vsr_state_fd < 0)
        return pc__storage_io_error(storage, errno, "open", VSR_STATE_NAME, 0);
    return PC_OK;
}

/* Reads and classifies both copies, and records in the cache which one holds
 * the newest valid state. A file shorter than two copies (a crash while the
 * first write extended it) reads as zeros past its end. */
static int vsr_state_scan(pc_storage_t *storage, vsr_state_copies_t *copies) {
    PC_ASSERT(storage->vsr_state_fd >= 0);
    memset(copies, 0, sizeof *copies);
    size_t done = 0;
    int err =
        pc__storage_pread_all(storage->vsr_state_fd, copies->pages, sizeof copies->pages, 0, &done);
    if (err != 0) return pc__storage_io_error(storage, err, "read", VSR_STATE_NAME, done);
    storage->vsr_state_newest = -1;
    storage->vsr_state_sequence = 0;
    for (int copy = 0; copy < 2; copy++) {
        const uint8_t *page = copies->pages[copy];
        const pc_vsr_state_header_t *header = page_header(page);
        copies->zero[copy] = page_zero(page);
        copies->valid[copy] = !copies->zero[copy] && header->magic == PC_VSR_STATE_MAGIC &&
                              header->version == PC_STORAGE_VERSION && header->sequence > 0 &&
                              header->size <= PC_VSR_STATE_MAX &&
                              vsr_state_checksum(page) == header->checksum;
        if (copies->valid[copy] && header->sequence > storage->vsr_state_sequence) {
            storage->vsr_state_newest = copy;
            storage->vsr_state_sequence = header->sequence;
        }
    }
    storage->vsr_state_known = true;
    PC_ASSERT(storage->vsr_state_newest < 0 || copies->valid[storage->vsr_state_newest]);
    return PC_OK;
}

int pc_storage_vsr_state_read(pc_storage_t *storage, void *state, uint32_t size) {
    if (storage->failed) return PC_ESTATE;
    if (!pc__storage_replicated(storage)) return PC_EINVAL;
    if (size > PC_VSR_STATE_MAX || (state == NULL && size > 0)) return PC_EINVAL;
    int rc = vsr_state_open(storage);
    if (rc != PC_OK) return rc;
    vsr_state_copies_t copies;
    rc = vsr_state_scan(storage, &copies);
    if (rc != PC_OK) return rc;
    /* Newest first; a copy of another size than asked for is not this state. */
    int best = -1;
    for (int copy = 0; copy < 2; copy++) {
        const pc_vsr_state_header_t *header = page_header(copies.pages[copy]);
        if (!copies.valid[copy] || header->size != size) continue;
        if (best < 0 || header->sequence > page_header(copies.pages[best])->sequence) best = copy;
    }
    if (best >= 0) {
        memcpy(state, copies.pages[best] + PC_VSR_STATE_HEADER_SIZE, size);
        PC_ASSERT(page_header(copies.pages[best])->sequence > 0);
        return PC_OK;
    }
    if (copies.zero[0] && copies.zero[1]) return PC_ENOTFOUND;
    char path[PC_STORAGE_PATH_MAX];
    pc__storage_path(storage, VSR_STATE_NAME, path);
    return PC_CORRUPTF("view state %s: no valid copy of %u bytes (copy at offset 0: %s; copy at "
                       "offset %u: %s)",
                       path, size, copies.zero[0] ? "never written" : "damaged or other size",
                       PC_VSR_STATE_COPY_SIZE,
                       copies.zero[1] ? "never written" : "damaged or other size");
}

/* Creates DIR/vsr-state with both copies as zeros ("never written"), so its
 * size never changes afterwards. The caller syncs it and the directory. */
static int vsr_state_create(pc_storage_t *storage) {
    PC_ASSERT(storage->vsr_state_fd < 0);
    int fd = openat(storage->dir_fd, VSR_STATE_NAME, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return pc__storage_io_error(storage, errno, "create", VSR_STATE_NAME, 0);
    int err = pc__storage_allocate(fd, 0, 0, 2 * PC_VSR_STATE_COPY_SIZE);
    if (err != 0) {
        close(fd);
        unlinkat(storage->dir_fd, VSR_STATE_NAME, 0);
        return pc__storage_io_error(storage, err, "fallocate", VSR_STATE_NAME, 0);
    }
    storage->vsr_state_fd = fd;
    PC_ASSERT(storage->vsr_state_fd >= 0);
    return PC_OK;
}

/* Writes the copy that does not hold the newest valid state, with the next
 * sequence, and syncs it before returning: once this returns the new state
 * survives a crash, and until then the previous one does. */
int pc_storage_vsr_state_write(pc_storage_t *storage, const void *state, uint32_t size) {
    if (storage->failed) return PC_ESTATE;
    if (!pc__storage_replicated(storage)) return PC_EINVAL;
    if (size > PC_VSR_STATE_MAX || (state == NULL && size > 0)) return PC_EINVAL;
    int rc = vsr_state_open(storage);
    bool created = rc == PC_ENOTFOUND;
    if (created) rc = vsr_state_create(storage);
    if (rc != PC_OK) return rc;
    if (!storage->vsr_state_known) {
        vsr_state_copies_t copies;
        rc = vsr_state_scan(storage, &copies);
        if (rc != PC_OK) return rc;
    }
    uint8_t page[PC_VSR_STATE_COPY_SIZE] __attribute__((aligned(16)));
    memset(page, 0, sizeof page);
    pc_vsr_state_header_t header;
    memset(&header, 0, sizeof header);
    header.magic = PC_VSR_STATE_MAGIC;
    header.version = PC_STORAGE_VERSION;
    header.sequence = storage->vsr_state_sequence + 1;
    header.size = size;
    memcpy(page, &header, sizeof header);
    if (size > 0) memcpy(page + PC_VSR_STATE_HEADER_SIZE, state, size);
    header.checksum = vsr_state_checksum(page);
    memcpy(page, &header, sizeof header);
    PC_ASSERT(vsr_state_checksum(page) == page_header(page)->checksum);

    int copy = storage->vsr_state_newest == 0 ? 1 : 0;
    uint64_t offset = (uint64_t)copy * PC_VSR_STATE_COPY_SIZE;
    size_t done = 0;
    int err = pc__storage_pwrite_all(storage->vsr_state_fd, page, sizeof page, offset, &done);
    if (err != 0) return pc__storage_io_error(storage, err, "write", VSR_STATE_NAME, offset + done);
    rc = pc__storage_sync(storage, storage->vsr_state_fd, created, VSR_STATE_NAME);
    if (rc == PC_OK && created) rc = pc__storage_sync_dir(storage); /* the file's name */
    if (rc != PC_OK) return rc;
    storage->vsr_state_newest = copy;
    storage->vsr_state_sequence = header.sequence;
    PC_ASSERT(storage->vsr_state_known);
    return PC_OK;
}
