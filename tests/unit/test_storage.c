/* Unit tests of src/storage: format/open/lock, the WAL (append, sync, replay,
 * torn tails versus corruption, hash chain, rotation, reserve), checkpoints
 * (fallback, pruning, empty WAL behind one), the transfer store (checksums,
 * misdirected writes), the failure rules (failed stays failed, ENOSPC
 * leaves nothing half-written), and a replicated unit's VSR journal, its
 * header ring (a sealed second copy of each slot's header: outlives a rotten
 * body, detects its own damage, misdirection and tearing) and view state
 * (layout, bounds, alternating copies, checkpoints without a WAL).
 * Each test works in its own directory under /tmp, removed at exit; tests
 * that corrupt files on purpose reach into the on-disk layout through
 * storage_int.h. */
#include "test.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "../../src/storage/storage_int.h"

/* ---- fixture ---- */

static char test_dir[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void dir_remove(void) {
    if (test_dir[0] != '\0') nftw(test_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    test_dir[0] = '\0';
}

/* A fresh temporary directory for one test: each test ends with dir_remove();
 * an ASSERT failure exits, and atexit removes it then. */
static const char *data_dir(void) {
    static char path[96];
    strcpy(test_dir, "/tmp/pc-storage-XXXXXX");
    ASSERT_TRUE(mkdtemp(test_dir) != NULL);
    atexit(dir_remove);
    snprintf(path, sizeof path, "%s/data", test_dir);
    return path;
}

static pc_storage_info_t info_default(void) {
    pc_storage_info_t info;
    memset(&info, 0, sizeof info);
    info.cluster = 77;
    info.unit = 3;
    info.replica = 0;
    info.replica_count = 1; /* WAL mode; replicated units use info_replicated() */
    info.accounts_max = 1000;
    info.transfers_max = 100000;
    info.pending_max = 500;
    info.checkpoint_wal_bytes = 1 << 20;
    return info;
}

static const char *formatted(void) {
    const char *dir = data_dir();
    pc_storage_info_t info = info_default();
    ASSERT_EQ(pc_storage_format(dir, &info), PC_OK);
    return dir;
}

/* ---- the model: what each op's entry should hold ---- */

#define OPS_MAX 600

static uint8_t *bodies[OPS_MAX + 1];
static uint32_t body_sizes[OPS_MAX + 1];
static uint64_t stamps[OPS_MAX + 1];
static pc_prng_t prng;

static void body_make(uint64_t op, uint32_t size) {
    ASSERT_TRUE(op <= OPS_MAX);
    free(bodies[op]);
    bodies[op] = malloc(size ? size : 1);
    ASSERT_TRUE(bodies[op] != NULL);
    for (uint32_t i = 0; i < size; i++)
        bodies[op][i] = (uint8_t)pc_prng_next(&prng);
    body_sizes[op] = size;
    stamps[op] = 1700000000000000000ull + op * 1000 + pc_prng_below(&prng, 1000);
}

/* Appends the next op with a random body of up to size_max bytes, split over
 * up to three iovecs; checks the returned header. */
static pc_wal_header_t append_one(pc_storage_t *storage, uint32_t size_max) {
    uint64_t op = pc_storage_wal_op(storage) + 1;
    pc_u128 parent = pc_storage_wal_checksum(storage);
    body_make(op, size_max ? 1 + (uint32_t)pc_prng_below(&prng, size_max) : 0);
    uint32_t size = body_sizes[op], a = size / 3, b = size / 2;
    struct iovec iov[3] = {{bodies[op], a}, {bodies[op] + a, b - a}, {bodies[op] + b, size - b}};
    pc_wal_header_t header;
    ASSERT_EQ(pc_storage_wal_append(storage, stamps[op], iov, 3, &header), PC_OK);
    ASSERT_EQ(header.op, op);
    ASSERT_EQ_U128(header.parent, parent);
    ASSERT_EQ(header.body_size, size);
    ASSERT_EQ(pc_storage_wal_op(storage), op);
    ASSERT_EQ_U128(pc_storage_wal_checksum(storage), header.checksum);
    return header;
}

static void append_n(pc_storage_t *storage, uint64_t count, uint32_t size_max, bool sync_each) {
    for (uint64_t i = 0; i < count; i++) {
        append_one(storage, size_max);
        if (sync_each) ASSERT_EQ(pc_storage_wal_sync(storage), PC_OK);
    }
}

typedef struct replayed {
    uint64_t next_op; /* expected op of the next callback */
    uint64_t count;
    pc_u128 last_checksum;
} replayed_t;

static int replay_check(void *ctx, const pc_wal_header_t *header, const void *body) {
    replayed_t *seen = ctx;
    ASSERT_EQ(header->op, seen->next_op);
    ASSERT_EQ(header->body_size, body_sizes[header->op]);
    ASSERT_EQ(header->timestamp, stamps[header->op]);
    ASSERT_TRUE(memcmp(body, bodies[header->op], header->body_size) == 0);
    seen->next_op++;
    seen->count++;
    seen->last_checksum = header->checksum;
    return 0;
}

/* Opens dir, loads the checkpoint and replays after it; returns the replay's
 * result and leaves the storage open (or NULL) in *out. */
static int open_replay(const char *dir, pc_storage_t **out, replayed_t *seen) {
    ASSERT_EQ(pc_storage_open(dir, out), PC_OK);
    pc_checkpoint_info_t checkpoint;
    void *blob = NULL;
    ASSERT_EQ(pc_storage_checkpoint_load(*out, &checkpoint, &blob), PC_OK);
    free(blob);
    memset(seen, 0, sizeof *seen);
    seen->next_op = checkpoint.op + 1;
    int rc = pc_storage_wal_replay(*out, &checkpoint, replay_check, seen);
    if (rc != PC_OK) {
        pc_storage_close(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- raw file access, for damaging the data set on purpose ---- */

typedef struct located {
    char path[600];
    uint64_t offset;
    pc_wal_header_t header;
} located_t;

/* Finds the valid header of op in any WAL segment of dir. */
static bool wal_find(const char *dir, uint64_t op, located_t *out) {
    DIR *d = opendir(dir);
    ASSERT_TRUE(d != NULL);
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d)) != NULL;) {
        uint64_t first = 0;
        if (!pc__storage_segment_parse(e->d_name, &first) || first > op) continue;
        snprintf(out->path, sizeof out->path, "%s/%s", dir, e->d_name);
        int fd = open(out->path, O_RDONLY);
        ASSERT_TRUE(fd >= 0);
        struct stat st;
        ASSERT_EQ(fstat(fd, &st), 0);
        for (uint64_t at = 0; !found && at + PC_HEADER_SIZE <= (uint64_t)st.st_size;
             at += PC_WAL_ALIGN) {
            ASSERT_EQ(pread(fd, &out->header, PC_HEADER_SIZE, (off_t)at), PC_HEADER_SIZE);
            if (out->header.magic == 0) break; /* end of the written part */
            found = pc__storage_header_valid(&out->header) && out->header.op == op;
            out->offset = at;
        }
        close(fd);
    }
    closedir(d);
    return found;
}

static void file_write(const char *path, uint64_t offset, const void *data, size_t size) {
    int fd = open(path, O_WRONLY);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(pwrite(fd, data, size, (off_t)offset), (ssize_t)size);
    close(fd);
}

static void file_read(const char *path, uint64_t offset, void *data, size_t size) {
    int fd = open(path, O_RDONLY);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(pread(fd, data, size, (off_t)offset), (ssize_t)size);
    close(fd);
}

static void file_flip(const char *path, uint64_t offset) {
    uint8_t byte = 0;
    file_read(path, offset, &byte, 1);
    byte ^= 0x20;
    file_write(path, offset, &byte, 1);
}

static void file_zero(const char *path, uint64_t offset, size_t size) {
    uint8_t *zeros = calloc(1, size);
    ASSERT_TRUE(zeros != NULL);
    file_write(path, offset, zeros, size);
    free(zeros);
}

static size_t segments_count(const char *dir) {
    DIR *d = opendir(dir);
    ASSERT_TRUE(d != NULL);
    size_t count = 0;
    uint64_t first = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        count += pc__storage_segment_parse(e->d_name, &first);
    closedir(d);
    return count;
}

static bool file_exists(const char *dir, const char *name) {
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

static void setup(uint64_t seed, uint64_t segment_size) {
    pc_prng_init(&prng, seed);
    pc__storage_segment_size = segment_size;
    pc__corrupt_quiet = true;
}

/* ---- format, open, lock ---- */

/* Format writes the info; open reads it back, also after a reopen. */
static void test_format_open_info(void) {
    setup(1, 1 << 20);
    const char *dir = formatted();
    pc_storage_info_t info = info_default();
    for (int round = 0; round < 2; round++) {
        pc_storage_t *storage = NULL;
        ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
        const pc_storage_info_t *got = pc_storage_info(storage);
        ASSERT_EQ(got->cluster, info.cluster);
        ASSERT_EQ(got->unit, info.unit);
        ASSERT_EQ(got->replica, info.replica);
        ASSERT_EQ(got->replica_count, info.replica_count);
        ASSERT_EQ(got->accounts_max, info.accounts_max);
        ASSERT_EQ(got->transfers_max, info.transfers_max);
        ASSERT_EQ(got->pending_max, info.pending_max);
        ASSERT_EQ(got->checkpoint_wal_bytes, info.checkpoint_wal_bytes);
        ASSERT_EQ(pc_storage_wal_op(storage), 0);
        ASSERT_EQ(pc_storage_slots_count(storage), 0);
        pc_storage_close(storage);
    }
    info.replica = 3; /* not below replica_count */
    char other[128];
    snprintf(other, sizeof other, "%s/other", test_dir);
    ASSERT_EQ(pc_storage_format(other, &info), PC_EINVAL);
    dir_remove();
}

/* A second format of the same directory refuses: it would mix data sets. */
static void test_format_twice(void) {
    setup(2, 1 << 20);
    const char *dir = formatted();
    pc_storage_info_t info = info_default();
    ASSERT_EQ(pc_storage_format(dir, &info), PC_EEXIST);
    dir_remove();
}

/* Opening a missing or empty directory is "not formatted"; a damaged
 * superblock is corruption. */
static void test_open_unformatted(void) {
    setup(3, 1 << 20);
    const char *dir = data_dir();
    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_ENOTFOUND);
    ASSERT_EQ(mkdir(dir, 0755), 0);
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_ENOTFOUND);
    ASSERT_TRUE(storage == NULL);
    pc_storage_info_t info = info_default();
    ASSERT_EQ(pc_storage_format(dir, &info), PC_OK);
    char path[256];
    snprintf(path, sizeof path, "%s/superblock", dir);
    file_flip(path, 40);
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_ECORRUPT);
    dir_remove();
}

/* The exclusive lock: a second open while the first holds it is PC_EBUSY,
 * and the lock goes away with close. */
static void test_open_twice_busy(void) {
    setup(4, 1 << 20);
    const char *dir = formatted();
    pc_storage_t *first = NULL, *second = NULL;
    ASSERT_EQ(pc_storage_open(dir, &first), PC_OK);
    ASSERT_EQ(pc_storage_open(dir, &second), PC_EBUSY);
    ASSERT_TRUE(second == NULL);
    pc_storage_close(first);
    ASSERT_EQ(pc_storage_open(dir, &second), PC_OK);
    pc_storage_close(second);
    dir_remove();
}

/* ---- WAL ---- */

/* N random entries survive close and reopen exactly, in order, with their
 * timestamps, and the log continues after them. */
static void test_wal_roundtrip(void) {
    setup(5, 1 << 20);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    ASSERT_EQ(seen.count, 0);
    append_n(storage, 150, 9000, false);
    pc_u128 last = pc_storage_wal_checksum(storage);
    ASSERT_EQ(pc_storage_wal_sync(storage), PC_OK);
    pc_storage_close(storage);

    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    ASSERT_EQ(seen.count, 150);
    ASSERT_EQ_U128(seen.last_checksum, last);
    ASSERT_EQ(pc_storage_wal_op(storage), 150);
    ASSERT_EQ_U128(pc_storage_wal_checksum(storage), last);
    ASSERT_TRUE(pc_storage_wal_bytes_since_checkpoint(storage) > 0);
    append_n(storage, 20, 100, true);
    body_make(171, 0); /* an empty body: no iovecs at all */
    ASSERT_EQ(pc_storage_wal_append(storage, stamps[171], NULL, 0, NULL), PC_OK);
    ASSERT_EQ(pc_storage_wal_sync(storage), PC_OK);
    pc_storage_close(storage);
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    ASSERT_EQ(seen.count, 171);
    pc_storage_close(storage);
    dir_remove();
}

/* synced_op in each header is the highest op a completed wal_sync covered. */
static void test_wal_synced_op(void) {
    setup(6, 1 << 20);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    ASSERT_EQ(append_one(storage, 10).synced_op, 0);
    ASSERT_EQ(pc_storage_wal_sync(storage), PC_OK);
    ASSERT_EQ(append_one(storage, 10).synced_op, 1);
    ASSERT_EQ(append_one(storage, 10).synced_op, 1);
    ASSERT_EQ(pc_storage_wal_sync(storage), PC_OK);
    ASSERT_EQ(append_one(storage, 10).synced_op, 3);
    pc_storage_close(storage);
    /* Replay syncs what it read, so the next entry may claim all of it. */
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    ASSERT_EQ(append_one(storage, 10).synced_op, 4);
    pc_storage_close(storage);
    dir_remove();
}

/* After a torn tail is cut, appends continue at the cut and survive the
 * next reopen. */
static void reopen_append_reopen(const char *dir, uint64_t expect) {
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    ASSERT_EQ(seen.count, expect);
    ASSERT_EQ(pc_storage_wal_op(storage), expect);
    append_n(storage, 3, 5000, false);
    ASSERT_EQ(pc_storage_wal_sync(storage), PC_OK);
    pc_storage_close(storage);
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    ASSERT_EQ(seen.count, expect + 3);
    pc_storage_close(storage);
}

/* The last entry's body is cut short (the rest reads as zeros, as a crash
 * mid-write into preallocated space leaves it): cut, N-1 replayed. */
static void test_torn_tail_body(void) {
    setup(7, 1 << 20);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    append_n(storage, 30, 3000, true);
    body_make(31, 6000);
    struct iovec iov = {bodies[31], 6000};
    ASSERT_EQ(pc_storage_wal_append(storage, stamps[31], &iov, 1, NULL), PC_OK);
    pc_storage_close(storage);
    located_t at;
    ASSERT_TRUE(wal_find(dir, 31, &at));
    file_zero(at.path, at.offset + PC_HEADER_SIZE + 3000, 3000);
    reopen_append_reopen(dir, 30);
    dir_remove();
}

/* Garbage over the last entry's header: cut, N-1 replayed. */
static void test_torn_tail_header(void) {
    setup(8, 1 << 20);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    append_n(storage, 40, 2000, false);
    ASSERT_EQ(pc_storage_wal_sync(storage), PC_OK);
    pc_storage_close(storage);
    located_t at;
    ASSERT_TRUE(wal_find(dir, 40, &at));
    uint8_t garbage[PC_HEADER_SIZE];
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (uint8_t)pc_prng_next(&prng);
    file_write(at.path, at.offset, garbage, sizeof garbage);
    reopen_append_reopen(dir, 39);
    dir_remove();
}

/* Entries written after a torn one but before any sync (their synced_op is
 * below it) were never acknowledged: they are cut too, and no valid header
 * of theirs is left behind to resurface. */
static void test_torn_tail_unsynced_followers(void) {
    setup(9, 1 << 20);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    append_n(storage, 5, 3000, true);
    append_n(storage, 3, 3000, false); /* ops 6, 7, 8: synced_op 5 */
    pc_storage_close(storage);
    located_t at;
    ASSERT_TRUE(wal_find(dir, 6, &at));
    file_flip(at.path, at.offset + PC_HEADER_SIZE + body_sizes[6] / 2);
    ASSERT_TRUE(body_sizes[6] > 0);
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    ASSERT_EQ(seen.count, 5);
    pc_storage_close(storage);
    ASSERT_TRUE(!wal_find(dir, 7, &at));
    ASSERT_TRUE(!wal_find(dir, 8, &at));
    reopen_append_reopen(dir, 5);
    dir_remove();
}

/* A flipped byte in an acknowledged middle entry (later entries record a
 * synced_op at or past it) is corruption, in its body or in its header. */
static void test_acknowledged_entry_damaged(void) {
    for (int where = 0; where < 2; where++) {
        setup(10, 1 << 20);
        const char *dir = formatted();
        pc_storage_t *storage = NULL;
        replayed_t seen;
        ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
        append_n(storage, 12, 3000, true);
        pc_storage_close(storage);
        located_t at;
        ASSERT_TRUE(wal_find(dir, 6, &at));
        file_flip(at.path, at.offset + (where == 0 ? PC_HEADER_SIZE : 60));
        ASSERT_EQ(open_replay(dir, &storage, &seen), PC_ECORRUPT);
        ASSERT_EQ(seen.count, 5);
        /* Corruption is refused every time, never cut away. */
        ASSERT_EQ(open_replay(dir, &storage, &seen), PC_ECORRUPT);
        dir_remove();
    }
    dir_remove();
}

/* A synced entry that reads back as zeros (a lost write) with a later entry
 * proving it was acknowledged is corruption, not the end of the log. */
static void test_acknowledged_entry_lost(void) {
    setup(11, 1 << 20);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    append_n(storage, 8, 3000, true);
    pc_storage_close(storage);
    located_t at;
    ASSERT_TRUE(wal_find(dir, 4, &at));
    file_zero(at.path, at.offset, PC_HEADER_SIZE);
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_ECORRUPT);
    ASSERT_EQ(seen.count, 3);
    dir_remove();
}

/* A header re-signed with a wrong parent is a broken chain: corruption. So
 * is a checkpoint whose wal_checksum disagrees with the WAL. */
static void test_broken_chain(void) {
    setup(12, 1 << 20);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    append_n(storage, 10, 1000, false);
    ASSERT_EQ(pc_storage_wal_sync(storage), PC_OK);
    pc_storage_close(storage);

    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    pc_checkpoint_info_t from = {.op = 0, .wal_checksum = 0};
    located_t at;
    ASSERT_TRUE(wal_find(dir, 1, &at));
    pc_u128 wrong = at.header.checksum ^ 1;
    ASSERT_TRUE(wal_find(dir, 5, &at));
    from.op = 5;
    from.wal_checksum = at.header.checksum ^ 1;
    ASSERT_EQ(pc_storage_wal_replay(storage, &from, NULL, NULL), PC_ECORRUPT);
    pc_storage_close(storage);

    ASSERT_TRUE(wal_find(dir, 7, &at));
    at.header.parent = wrong;
    at.header.checksum = pc__storage_header_checksum(&at.header);
    file_write(at.path, at.offset, &at.header, sizeof at.header);
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_ECORRUPT);
    ASSERT_EQ(seen.count, 6);
    dir_remove();
}

/* Entries rotate into new segments when one is full; replay walks across
 * them; an entry bigger than a segment is refused. */
static void test_segment_rotation(void) {
    setup(13, 64 << 10);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    append_n(storage, 120, 20000, false);
    ASSERT_EQ(pc_storage_wal_sync(storage), PC_OK);
    append_n(storage, 30, 20000, true);
    static uint8_t big[70 << 10];
    struct iovec iov = {big, sizeof big};
    ASSERT_EQ(pc_storage_wal_append(storage, 1, &iov, 1, NULL), PC_EINVAL);
    ASSERT_EQ(pc_storage_wal_op(storage), 150);
    pc_storage_close(storage);
    ASSERT_TRUE(segments_count(dir) > 20);
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    ASSERT_EQ(seen.count, 150);
    pc_storage_close(storage);
    /* A torn entry at the start of the last segment is cut there too. */
    located_t at;
    ASSERT_TRUE(wal_find(dir, 150, &at));
    file_flip(at.path, at.offset + 20);
    reopen_append_reopen(dir, 149);
    dir_remove();
}

/* Reserve creates the next segment ahead when the current one lacks room;
 * the append lands there; an unused one left at close does no harm. */
static void test_reserve_ahead(void) {
    setup(14, 64 << 10);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    ASSERT_EQ(pc_storage_reserve(storage, 10000, 10), PC_OK);
    append_n(storage, 5, 10000, false);
    size_t before = segments_count(dir);
    ASSERT_EQ(pc_storage_reserve(storage, 60000, 10), PC_OK);
    ASSERT_EQ(segments_count(dir), before + 1);
    char name[32];
    pc__storage_segment_name(6, name, sizeof name);
    ASSERT_TRUE(file_exists(dir, name));
    append_n(storage, 1, 100, true); /* small, but goes to the reserved segment */
    located_t at;
    ASSERT_TRUE(wal_find(dir, 6, &at));
    ASSERT_TRUE(strstr(at.path, name) != NULL);
    ASSERT_EQ(pc_storage_reserve(storage, 60000, 10), PC_OK); /* ahead again, then close */
    pc_storage_close(storage);
    reopen_append_reopen(dir, 6);
    dir_remove();
}

/* A crash just after a segment was created leaves it empty or even zero
 * bytes long: replay ends the log before it, removes it, and appends go on
 * with the same op, in a fresh segment of full size. */
static void test_leftover_empty_segment(void) {
    setup(26, 64 << 10);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    append_n(storage, 3, 10000, true);
    pc_storage_close(storage);
    char name[32], path[256];
    pc__storage_segment_name(4, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
    ASSERT_TRUE(fd >= 0);
    close(fd);
    reopen_append_reopen(dir, 3);
    located_t at;
    ASSERT_TRUE(wal_find(dir, 4, &at));
    struct stat st;
    ASSERT_EQ(stat(at.path, &st), 0);
    ASSERT_TRUE(st.st_size > 0);
    dir_remove();
}

/* ---- checkpoints ---- */

static void checkpoint_take(pc_storage_t *storage, const char *text) {
    pc_checkpoint_info_t info = {
        .op = pc_storage_wal_op(storage),
        .wal_checksum = pc_storage_wal_checksum(storage),
        .slots_count = pc_storage_slots_count(storage),
        .blob_size = strlen(text) + 1,
    };
    ASSERT_EQ(pc_storage_checkpoint_write(storage, &info, text), PC_OK);
    ASSERT_EQ(pc_storage_wal_bytes_since_checkpoint(storage), 0);
}

static void checkpoint_expect(const char *dir, uint64_t op, const char *text) {
    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    pc_checkpoint_info_t info;
    void *blob = NULL;
    ASSERT_EQ(pc_storage_checkpoint_load(storage, &info, &blob), PC_OK);
    ASSERT_EQ(info.op, op);
    ASSERT_EQ(info.blob_size, strlen(text) + 1);
    ASSERT_STREQ((const char *)blob, text);
    free(blob);
    pc_storage_close(storage);
}

/* A fresh data set has no checkpoint; written ones load newest first; a
 * damaged newest falls back to the older; both damaged is corruption. */
static void test_checkpoint_fallback(void) {
    setup(15, 1 << 20);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    pc_checkpoint_info_t info;
    void *blob = (void *)1;
    ASSERT_EQ(pc_storage_checkpoint_load(storage, &info, &blob), PC_OK);
    ASSERT_EQ(info.op, 0);
    ASSERT_EQ(info.blob_size, 0);
    ASSERT_TRUE(blob == NULL);
    ASSERT_EQ(pc_storage_wal_replay(storage, &info, NULL, NULL), PC_OK);
    append_n(storage, 10, 1000, true);
    checkpoint_take(storage, "state at 10");
    append_n(storage, 10, 1000, true);
    checkpoint_take(storage, "state at 20");
    append_n(storage, 10, 1000, true);
    checkpoint_take(storage, "state at 30"); /* replaces the one at 10 */
    pc_storage_close(storage);
    checkpoint_expect(dir, 30, "state at 30");

    char path[256];
    snprintf(path, sizeof path, "%s/checkpoint-a", dir); /* 10, then 30 */
    file_flip(path, PC_CHECKPOINT_HEADER_SIZE + 3);
    checkpoint_expect(dir, 20, "state at 20");
    snprintf(path, sizeof path, "%s/checkpoint-b", dir);
    file_flip(path, 50);
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    ASSERT_EQ(pc_storage_checkpoint_load(storage, &info, &blob), PC_ECORRUPT);
    ASSERT_TRUE(blob == NULL);
    pc_storage_close(storage);
    dir_remove();
}

/* Checkpoints prune the WAL up to the older checkpoint on disk, never the
 * segment in use; replay works from either checkpoint afterwards. */
static void test_checkpoint_prunes_wal(void) {
    setup(16, 64 << 10);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    append_n(storage, 60, 12000, false);
    size_t all = segments_count(dir);
    ASSERT_TRUE(all > 5);
    checkpoint_take(storage, "at 60"); /* the only one: prunes up to 60 */
    /* The segment in use stays, and one left by a rotation awaiting its sync. */
    ASSERT_TRUE(segments_count(dir) <= 2);
    append_n(storage, 60, 12000, false);
    checkpoint_take(storage, "at 120"); /* the fallback at 60 still needs 61.. */
    located_t at;
    ASSERT_TRUE(wal_find(dir, 61, &at));
    append_n(storage, 60, 12000, false);
    checkpoint_take(storage, "at 180"); /* prunes up to 120 */
    append_n(storage, 5, 12000, true);
    ASSERT_TRUE(!wal_find(dir, 100, &at));
    ASSERT_TRUE(wal_find(dir, 121, &at));
    pc_storage_close(storage);

    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    ASSERT_EQ(seen.count, 5);
    ASSERT_EQ(pc_storage_wal_op(storage), 185);
    pc_storage_close(storage);
    char path[256];
    snprintf(path, sizeof path, "%s/checkpoint-a", dir); /* holds 180 */
    file_flip(path, 70);
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    ASSERT_EQ(seen.count, 65); /* 121..185 from the checkpoint at 120 */
    pc_storage_close(storage);
    dir_remove();
}

/* With the WAL empty behind a checkpoint at op N (its segments gone), the
 * next append is N + 1 with the checkpoint's checksum as parent, and replay
 * from the checkpoint finds it. A checkpoint at the exact end of the WAL
 * continues in the same segment. */
static void test_checkpoint_empty_wal(void) {
    setup(17, 1 << 20);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    append_n(storage, 25, 2000, true);
    checkpoint_take(storage, "at 25");
    pc_u128 at25 = pc_storage_wal_checksum(storage);
    pc_storage_close(storage);
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    ASSERT_EQ(seen.count, 0);
    ASSERT_EQ(pc_storage_wal_op(storage), 25);
    pc_storage_close(storage);

    char name[32], path[256];
    pc__storage_segment_name(1, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ASSERT_EQ(unlink(path), 0);
    ASSERT_EQ(segments_count(dir), 0);
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    ASSERT_EQ(pc_storage_wal_op(storage), 25);
    ASSERT_EQ_U128(pc_storage_wal_checksum(storage), at25);
    ASSERT_EQ_U128(append_one(storage, 500).parent, at25);
    append_n(storage, 2, 500, true);
    pc_storage_close(storage);
    pc__storage_segment_name(26, name, sizeof name);
    ASSERT_TRUE(file_exists(dir, name));
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    ASSERT_EQ(seen.count, 3);
    pc_storage_close(storage);
    dir_remove();
}

/* A WAL that starts after the checkpoint's successor has a gap. */
static void test_checkpoint_wal_gap(void) {
    setup(18, 64 << 10);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    append_n(storage, 40, 12000, true);
    checkpoint_take(storage, "at 40");
    append_n(storage, 40, 12000, true);
    pc_storage_close(storage);
    located_t at;
    ASSERT_TRUE(wal_find(dir, 41, &at));
    ASSERT_EQ(unlink(at.path), 0);
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_ECORRUPT);
    dir_remove();
}

/* ---- transfer store ---- */

static void slots_fill(uint8_t *slots, uint32_t count, uint64_t salt) {
    for (uint32_t i = 0; i < count * PC_SLOT_SIZE; i++)
        slots[i] = (uint8_t)(i * 7 + salt);
}

/* Slots round trip with their checksums; reads past the end are not found;
 * truncation drops the tail and sticks across a reopen. */
static void test_slots_roundtrip(void) {
    setup(19, 1 << 20);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    static uint8_t slots[100 * PC_SLOT_SIZE], back[100 * PC_SLOT_SIZE];
    slots_fill(slots, 100, 1);
    ASSERT_EQ(pc_storage_reserve(storage, 0, 100), PC_OK);
    ASSERT_EQ(pc_storage_slots_write(storage, 0, slots, 60), PC_OK);
    ASSERT_EQ(pc_storage_slots_write(storage, 60, slots + 60 * PC_SLOT_SIZE, 40), PC_OK);
    ASSERT_EQ(pc_storage_slots_write(storage, 101, slots, 1), PC_EINVAL);
    ASSERT_EQ(pc_storage_slots_count(storage), 100);
    ASSERT_EQ(pc_storage_slots_read(storage, 0, back, 100), PC_OK);
    ASSERT_TRUE(memcmp(slots, back, sizeof back) == 0); /* checksums were sealed in place */
    ASSERT_EQ(pc_storage_slots_read(storage, 99, back, 2), PC_ENOTFOUND);
    ASSERT_EQ(pc_storage_slots_truncate(storage, 50), PC_OK);
    ASSERT_EQ(pc_storage_slots_truncate(storage, 51), PC_EINVAL);
    ASSERT_EQ(pc_storage_slots_read(storage, 49, back, 2), PC_ENOTFOUND);
    pc_storage_close(storage);
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    ASSERT_EQ(pc_storage_slots_count(storage), 50);
    ASSERT_EQ(pc_storage_slots_read(storage, 10, back, 40), PC_OK);
    ASSERT_TRUE(memcmp(slots + 10 * PC_SLOT_SIZE, back, 40 * PC_SLOT_SIZE) == 0);
    pc_storage_close(storage);
    dir_remove();
}

/* Pages of the store's file [from, to) in the page cache. */
static uint64_t slots_cached_pages(int fd, uint64_t from, uint64_t to) {
    long page = sysconf(_SC_PAGESIZE);
    void *map = mmap(NULL, to, PROT_READ, MAP_SHARED, fd, 0);
    ASSERT_TRUE(map != MAP_FAILED);
    static unsigned char in_core[(128u << 20) / 4096];
    ASSERT_TRUE((to + page - 1) / page <= sizeof in_core);
    ASSERT_EQ(mincore(map, to, in_core), 0);
    uint64_t cached = 0;
    for (uint64_t i = from / page; i < (to + page - 1) / page; i++) cached += in_core[i] & 1;
    ASSERT_EQ(munmap(map, to), 0);
    return cached;
}

/* The store's page cache is bounded: as the writes pass 112 MiB, what lies
 * over 64 MiB behind them is let go (here [36, 48) MiB, written back
 * before that), what is nearer stays, and a slot that old reads back whole
 * from the disk. A reopened store leaves what it held to the kernel. */
static void test_slots_cache_bounded(void) {
    setup(21, 1 << 20);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    enum { BATCH = 4096 };
    static uint8_t slots[BATCH * PC_SLOT_SIZE], first[PC_SLOT_SIZE], back[PC_SLOT_SIZE];
    const uint64_t mib = 1 << 20;
    uint64_t loc = 0;
    for (uint32_t b = 0; (loc + BATCH) * PC_SLOT_SIZE < 100 * mib; b++, loc += BATCH) {
        slots_fill(slots, BATCH, b);
        ASSERT_EQ(pc_storage_slots_write(storage, loc, slots, BATCH), PC_OK);
        if (b == 0) memcpy(first, slots, sizeof first); /* sealed in place */
    }
    ASSERT_EQ(fdatasync(storage->slots_fd), 0); /* clean: nothing can stay */
    uint64_t kept_before = slots_cached_pages(storage->slots_fd, 64 * mib, 96 * mib);
    for (uint32_t b = 0; loc * PC_SLOT_SIZE < 112 * mib; b++, loc += BATCH) {
        slots_fill(slots, BATCH, b);
        ASSERT_EQ(pc_storage_slots_write(storage, loc, slots, BATCH), PC_OK);
    }
    ASSERT_EQ(storage->slots_cache_dropped, 48 * mib);
    ASSERT_EQ(slots_cached_pages(storage->slots_fd, 36 * mib, 48 * mib), 0);
    ASSERT_EQ(slots_cached_pages(storage->slots_fd, 64 * mib, 96 * mib), kept_before);
    ASSERT_TRUE(kept_before > 0);
    ASSERT_EQ(pc_storage_slots_read(storage, 0, back, 1), PC_OK);
    ASSERT_TRUE(memcmp(first, back, sizeof back) == 0);
    pc_storage_close(storage);
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    ASSERT_EQ(storage->slots_cache_dropped, loc * PC_SLOT_SIZE);
    pc_storage_close(storage);
    dir_remove();
}

/* A flipped byte, a zeroed slot and a slot copied to another location are
 * all caught on read, and only where they are. */
static void test_slots_damage(void) {
    setup(20, 1 << 20);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    static uint8_t slots[10 * PC_SLOT_SIZE], back[PC_SLOT_SIZE];
    slots_fill(slots, 10, 2);
    ASSERT_EQ(pc_storage_slots_write(storage, 0, slots, 10), PC_OK);
    pc_storage_close(storage);
    char path[256];
    snprintf(path, sizeof path, "%s/transfers", dir);
    file_flip(path, 2 * PC_SLOT_SIZE + 17);                 /* bit rot in slot 2 */
    file_zero(path, 4 * PC_SLOT_SIZE, PC_SLOT_SIZE);        /* lost write of slot 4 */
    file_read(path, 3 * PC_SLOT_SIZE, back, PC_SLOT_SIZE);  /* slot 3 ... */
    file_write(path, 6 * PC_SLOT_SIZE, back, PC_SLOT_SIZE); /* ... misdirected to 6 */
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    static const int expect[10] = {0, 0, PC_ECORRUPT, 0, PC_ECORRUPT, 0, PC_ECORRUPT, 0, 0, 0};
    for (uint64_t loc = 0; loc < 10; loc++)
        ASSERT_EQ(pc_storage_slots_read(storage, loc, back, 1), expect[loc]);
    ASSERT_EQ(pc_storage_slots_read(storage, 0, slots, 10), PC_ECORRUPT);
    pc_storage_close(storage);
    dir_remove();
}

/* A checkpoint covering more slots than the store holds is corruption. */
static void test_slots_short_of_checkpoint(void) {
    setup(21, 1 << 20);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    static uint8_t slots[8 * PC_SLOT_SIZE];
    slots_fill(slots, 8, 3);
    ASSERT_EQ(pc_storage_slots_write(storage, 0, slots, 8), PC_OK);
    append_n(storage, 2, 100, true);
    checkpoint_take(storage, "eight slots");
    pc_storage_close(storage);
    char path[256];
    snprintf(path, sizeof path, "%s/transfers", dir);
    ASSERT_EQ(truncate(path, 5 * PC_SLOT_SIZE), 0);
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    pc_checkpoint_info_t info;
    void *blob = NULL;
    ASSERT_EQ(pc_storage_checkpoint_load(storage, &info, &blob), PC_ECORRUPT);
    pc_storage_close(storage);
    dir_remove();
}

/* ---- failures ---- */

/* After a failed fsync every call answers PC_ESTATE, for good. */
static void test_fsync_failure_sticks(void) {
    setup(22, 1 << 20);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    append_n(storage, 3, 100, true);
    append_n(storage, 1, 100, false);
    pc__storage_fail_next_fsync = true;
    ASSERT_EQ(pc_storage_wal_sync(storage), PC_EIO);
    ASSERT_TRUE(!pc__storage_fail_next_fsync);
    ASSERT_EQ(pc_storage_wal_sync(storage), PC_ESTATE); /* never retried over lost pages */
    uint8_t body[10] = {0}, slot[PC_SLOT_SIZE] = {1};
    struct iovec iov = {body, sizeof body};
    ASSERT_EQ(pc_storage_wal_append(storage, 1, &iov, 1, NULL), PC_ESTATE);
    ASSERT_EQ(pc_storage_reserve(storage, 10, 1), PC_ESTATE);
    ASSERT_EQ(pc_storage_slots_write(storage, 0, slot, 1), PC_ESTATE);
    ASSERT_EQ(pc_storage_slots_read(storage, 0, slot, 1), PC_ESTATE);
    ASSERT_EQ(pc_storage_slots_truncate(storage, 0), PC_ESTATE);
    pc_checkpoint_info_t info = {.op = 4};
    void *blob = NULL;
    ASSERT_EQ(pc_storage_checkpoint_write(storage, &info, NULL), PC_ESTATE);
    ASSERT_EQ(pc_storage_checkpoint_load(storage, &info, &blob), PC_ESTATE);
    ASSERT_EQ(pc_storage_wal_replay(storage, &info, NULL, NULL), PC_ESTATE);
    ASSERT_EQ(pc_storage_wal_op(storage), 4);
    pc_storage_close(storage);
    /* A fresh open starts over from what is on disk. */
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    ASSERT_TRUE(seen.count >= 3);
    pc_storage_close(storage);
    dir_remove();
}

/* A failed checkpoint sync fails the storage too. */
static void test_checkpoint_fsync_failure(void) {
    setup(23, 1 << 20);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    append_n(storage, 3, 100, true);
    pc_checkpoint_info_t info = {.op = 3, .wal_checksum = pc_storage_wal_checksum(storage)};
    pc__storage_fail_next_fsync = true;
    ASSERT_EQ(pc_storage_checkpoint_write(storage, &info, NULL), PC_EIO);
    ASSERT_EQ(pc_storage_wal_sync(storage), PC_ESTATE);
    pc_storage_close(storage);
    dir_remove();
}

/* A full disk: a rotation, a reserve, a checkpoint that cannot get space
 * answer PC_ENOSPC, change nothing, and the storage keeps working. */
static void test_enospc_changes_nothing(void) {
    setup(24, 64 << 10);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    append_n(storage, 4, 12000, true);
    checkpoint_take(storage, "at 4");
    size_t segments = segments_count(dir);
    static uint8_t body[60000];
    struct iovec iov = {body, sizeof body};
    pc__storage_fail_next_alloc = true; /* the rotation's new segment */
    ASSERT_EQ(pc_storage_wal_append(storage, 1, &iov, 1, NULL), PC_ENOSPC);
    ASSERT_EQ(pc_storage_wal_op(storage), 4);
    ASSERT_EQ(segments_count(dir), segments);
    pc__storage_fail_next_alloc = true;
    ASSERT_EQ(pc_storage_reserve(storage, sizeof body, 0), PC_ENOSPC);
    ASSERT_EQ(segments_count(dir), segments);
    pc__storage_fail_next_alloc = true;
    ASSERT_EQ(pc_storage_reserve(storage, 0, 1000), PC_ENOSPC); /* transfer store */
    pc__storage_fail_next_alloc = true;
    pc_checkpoint_info_t info = {.op = 4, .wal_checksum = pc_storage_wal_checksum(storage)};
    ASSERT_EQ(pc_storage_checkpoint_write(storage, &info, NULL), PC_ENOSPC);
    /* Space is back: everything works and nothing was half-written. */
    append_n(storage, 3, 50000, true);
    ASSERT_EQ(pc_storage_reserve(storage, 0, 1000), PC_OK);
    pc_storage_close(storage);
    checkpoint_expect(dir, 4, "at 4");
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    ASSERT_EQ(seen.count, 3);
    pc_storage_close(storage);
    dir_remove();
}

/* The test switch makes wal_sync skip fdatasync but still count as a sync. */
static void test_skip_fsync_switch(void) {
    setup(25, 1 << 20);
    const char *dir = formatted();
    pc_storage_t *storage = NULL;
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    pc__storage_skip_fsync = true;
    pc__storage_fail_next_fsync = true; /* would fire if wal_sync synced */
    append_n(storage, 2, 100, true);
    ASSERT_EQ(append_one(storage, 100).synced_op, 2);
    ASSERT_TRUE(pc__storage_fail_next_fsync);
    pc__storage_fail_next_fsync = false;
    pc__storage_skip_fsync = false;
    pc_storage_close(storage);
    dir_remove();
}

/* ---- replicated units: the VSR journal and view state ---- */

static pc_storage_info_t info_replicated(void) {
    pc_storage_info_t info = info_default();
    info.replica = 1;
    info.replica_count = 3;
    info.journal_slots = PC_JOURNAL_SLOTS_MIN; /* 16 slots of 2 MiB + 4 KiB */
    return info;
}

static const char *formatted_replicated(void) {
    const char *dir = data_dir();
    pc_storage_info_t info = info_replicated();
    ASSERT_EQ(pc_storage_format(dir, &info), PC_OK);
    return dir;
}

static uint64_t file_size(const char *dir, const char *name) {
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ASSERT_EQ(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

/* A prepare as VSR would hand it over: a header and body derived from a
 * salt, so each slot's content is recognisable. */
static void prepare_fill(uint8_t *header, uint8_t *body, uint32_t body_size, uint32_t salt) {
    for (uint32_t i = 0; i < PC_HEADER_SIZE; i++)
        header[i] = (uint8_t)(i * 13 + salt + 1);
    for (uint32_t i = 0; i < body_size; i++)
        body[i] = (uint8_t)(i * 31 + salt * 7 + (i >> 11));
}

/* Reads slot back through the API and checks header and body. */
static void prepare_expect(pc_storage_t *storage, uint32_t slot, uint32_t body_size,
                           uint32_t salt) {
    static uint8_t header[PC_HEADER_SIZE], body[PC_VSR_PREPARE_BODY_MAX];
    static uint8_t want_header[PC_HEADER_SIZE], want_body[PC_VSR_PREPARE_BODY_MAX];
    prepare_fill(want_header, want_body, body_size, salt);
    ASSERT_EQ(pc_storage_journal_read(storage, slot, 0, header, PC_HEADER_SIZE), PC_OK);
    ASSERT_TRUE(memcmp(header, want_header, PC_HEADER_SIZE) == 0);
    ASSERT_EQ(pc_storage_journal_read(storage, slot, PC_HEADER_SIZE, body, body_size), PC_OK);
    ASSERT_TRUE(memcmp(body, want_body, body_size) == 0);
}

static void prepare_write(pc_storage_t *storage, uint32_t slot, uint32_t body_size, uint32_t salt) {
    static uint8_t header[PC_HEADER_SIZE], body[PC_VSR_PREPARE_BODY_MAX];
    prepare_fill(header, body, body_size, salt);
    ASSERT_EQ(pc_storage_journal_write(storage, slot, header, body, body_size), PC_OK);
}

/* Whether the slot's header reads as never written. */
static bool slot_header_zero(pc_storage_t *storage, uint32_t slot) {
    uint8_t header[PC_HEADER_SIZE];
    ASSERT_EQ(pc_storage_journal_read(storage, slot, 0, header, sizeof header), PC_OK);
    for (size_t i = 0; i < sizeof header; i++) {
        if (header[i] != 0) return false;
    }
    return true;
}

/* Format of a replicated unit makes a journal of exactly journal_slots slots
 * and its header ring (16 entries of 256 bytes: one page), and no view state; open checks the journal's presence and size; info
 * keeps journal_slots; a second format refuses. */
static void test_journal_format_open(void) {
    setup(40, 1 << 20);
    const char *dir = formatted_replicated();
    uint64_t size = (uint64_t)PC_JOURNAL_SLOTS_MIN * PC_JOURNAL_SLOT_SIZE + 4096; /* + ring */
    ASSERT_EQ(PC_JOURNAL_FILE_SIZE(PC_JOURNAL_SLOTS_MIN), size);
    ASSERT_EQ(file_size(dir, "journal"), size);
    ASSERT_TRUE(!file_exists(dir, "vsr-state"));
    ASSERT_EQ(segments_count(dir), 0);
    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    ASSERT_EQ(pc_storage_info(storage)->replica_count, 3);
    ASSERT_EQ(pc_storage_info(storage)->replica, 1);
    ASSERT_EQ(pc_storage_info(storage)->journal_slots, PC_JOURNAL_SLOTS_MIN);
    ASSERT_TRUE(slot_header_zero(storage, PC_JOURNAL_SLOTS_MIN - 1));
    pc_storage_close(storage);
    pc_storage_info_t info = info_replicated();
    ASSERT_EQ(pc_storage_format(dir, &info), PC_EEXIST);

    char path[256];
    snprintf(path, sizeof path, "%s/journal", dir);
    ASSERT_EQ(truncate(path, (off_t)(size - PC_JOURNAL_SLOT_SIZE)), 0);
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_ECORRUPT);
    ASSERT_TRUE(storage == NULL);
    ASSERT_EQ(truncate(path, (off_t)(size + 1)), 0);
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_ECORRUPT);
    ASSERT_EQ(unlink(path), 0);
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_ECORRUPT);
    dir_remove();
}

/* Only 1 or 3 replicas, and a journal size only (and always) with 3. */
static void test_journal_format_invalid(void) {
    setup(41, 1 << 20);
    const char *dir = data_dir();
    pc_storage_info_t info = info_replicated();
    info.replica_count = 2;
    info.replica = 0;
    ASSERT_EQ(pc_storage_format(dir, &info), PC_EINVAL);
    info = info_replicated();
    info.replica_count = 4;
    ASSERT_EQ(pc_storage_format(dir, &info), PC_EINVAL);
    info = info_replicated();
    uint32_t bad_slots[] = {0, 1, PC_JOURNAL_SLOTS_MIN - 1, PC_JOURNAL_SLOTS_LIMIT + 1, UINT32_MAX};
    for (size_t i = 0; i < PC_ARRAY_LEN(bad_slots); i++) {
        info.journal_slots = bad_slots[i];
        ASSERT_EQ(pc_storage_format(dir, &info), PC_EINVAL);
    }
    info = info_default(); /* one replica: no journal */
    info.journal_slots = PC_JOURNAL_SLOTS_MIN;
    ASSERT_EQ(pc_storage_format(dir, &info), PC_EINVAL);
    struct stat st;
    ASSERT_TRUE(stat(dir, &st) != 0); /* refused before creating anything */
    info = info_replicated();
    info.journal_slots = PC_JOURNAL_SLOTS_MIN + 1;
    ASSERT_EQ(pc_storage_format(dir, &info), PC_OK);
    ASSERT_EQ(file_size(dir, "journal"), /* 17 ring entries round up to two pages */
              (uint64_t)(PC_JOURNAL_SLOTS_MIN + 1) * PC_JOURNAL_SLOT_SIZE + 8192);
    dir_remove();
}

/* A full disk while format preallocates the journal leaves nothing behind
 * and a later format works; an unwritten journal left without a superblock
 * (a crashed format) is formatted over, a written one is data and is not;
 * nor is a directory with a view state. */
static void test_journal_format_leftovers(void) {
    setup(42, 1 << 20);
    const char *dir = data_dir();
    pc_storage_info_t info = info_replicated();
    pc__storage_fail_next_alloc = true;
    ASSERT_EQ(pc_storage_format(dir, &info), PC_ENOSPC);
    ASSERT_TRUE(!pc__storage_fail_next_alloc);
    ASSERT_TRUE(!file_exists(dir, "journal"));
    ASSERT_TRUE(!file_exists(dir, "superblock"));
    ASSERT_EQ(pc_storage_format(dir, &info), PC_OK);

    char superblock[256];
    snprintf(superblock, sizeof superblock, "%s/superblock", dir);
    ASSERT_EQ(unlink(superblock), 0); /* as if format crashed before it */
    ASSERT_EQ(pc_storage_format(dir, &info), PC_OK);

    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    prepare_write(storage, 9, 10, 9);
    ASSERT_EQ(pc_storage_journal_sync(storage), PC_OK);
    pc_storage_close(storage);
    ASSERT_EQ(unlink(superblock), 0);
    ASSERT_EQ(pc_storage_format(dir, &info), PC_EEXIST); /* slot 9 holds a prepare */

    char path[256];
    snprintf(path, sizeof path, "%s/journal", dir);
    ASSERT_EQ(unlink(path), 0);
    snprintf(path, sizeof path, "%s/vsr-state", dir);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    ASSERT_TRUE(fd >= 0);
    close(fd);
    ASSERT_EQ(pc_storage_format(dir, &info), PC_EEXIST); /* a view state is data */
    ASSERT_EQ(unlink(path), 0);
    ASSERT_EQ(pc_storage_format(dir, &info), PC_OK);
    dir_remove();
}

/* Writes land at slot * PC_JOURNAL_SLOT_SIZE (header, then body), read back
 * exactly, in the first and last slot and with the largest body, survive a
 * reopen, and leave the other slots alone. */
static void test_journal_roundtrip(void) {
    setup(43, 1 << 20);
    const char *dir = formatted_replicated();
    const uint32_t last = PC_JOURNAL_SLOTS_MIN - 1;
    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    prepare_write(storage, 0, 1000, 1);
    prepare_write(storage, 5, 0, 2); /* an empty body */
    uint8_t header[PC_HEADER_SIZE];
    prepare_fill(header, NULL, 0, 3);
    ASSERT_EQ(pc_storage_journal_write(storage, 6, header, NULL, 0), PC_OK);
    prepare_write(storage, last, PC_VSR_PREPARE_BODY_MAX, 4);
    prepare_write(storage, 7, 4096, 5);
    prepare_write(storage, 7, 300, 6); /* a ring: slots are overwritten */
    ASSERT_EQ(pc_storage_journal_sync(storage), PC_OK);
    prepare_expect(storage, 0, 1000, 1);
    prepare_expect(storage, last, PC_VSR_PREPARE_BODY_MAX, 4);
    pc_storage_close(storage);

    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    prepare_expect(storage, 0, 1000, 1);
    prepare_expect(storage, 5, 0, 2);
    prepare_expect(storage, 6, 0, 3);
    prepare_expect(storage, 7, 300, 6);
    prepare_expect(storage, last, PC_VSR_PREPARE_BODY_MAX, 4);
    for (uint32_t slot = 1; slot < last; slot++) {
        if (slot != 5 && slot != 6 && slot != 7) ASSERT_TRUE(slot_header_zero(storage, slot));
    }
    /* The very end of the last slot is readable (and unwritten). */
    uint8_t tail[16] = {1};
    ASSERT_EQ(pc_storage_journal_read(storage, last, PC_JOURNAL_SLOT_SIZE - 16, tail, 16), PC_OK);
    ASSERT_EQ(tail[0], 0);
    ASSERT_EQ(pc_storage_journal_read(storage, last, PC_JOURNAL_SLOT_SIZE, NULL, 0), PC_OK);
    pc_storage_close(storage);

    /* The documented layout, seen from outside. */
    char path[256];
    uint8_t raw[PC_HEADER_SIZE + 8], want[PC_HEADER_SIZE + 8];
    snprintf(path, sizeof path, "%s/journal", dir);
    file_read(path, (uint64_t)last * PC_JOURNAL_SLOT_SIZE, raw, sizeof raw);
    prepare_fill(want, want + PC_HEADER_SIZE, 8, 4);
    ASSERT_TRUE(memcmp(raw, want, sizeof raw) == 0);
    ASSERT_EQ(file_size(dir, "journal"), PC_JOURNAL_FILE_SIZE(PC_JOURNAL_SLOTS_MIN));
    dir_remove();
}

/* Out-of-range slots, offsets and sizes are PC_EINVAL, write nothing and
 * leave the storage working; a single-replica storage has no journal. */
static void test_journal_bounds(void) {
    setup(44, 1 << 20);
    const char *dir = formatted_replicated();
    const uint32_t slots = PC_JOURNAL_SLOTS_MIN;
    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    prepare_write(storage, 2, 500, 7);
    prepare_write(storage, slots - 1, 500, 8);
    static uint8_t header[PC_HEADER_SIZE], body[PC_VSR_PREPARE_BODY_MAX + 1], buf[64];
    prepare_fill(header, body, sizeof body, 9);
    ASSERT_EQ(pc_storage_journal_write(storage, slots, header, body, 10), PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_write(storage, UINT32_MAX, header, body, 10), PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_write(storage, 2, header, body, PC_VSR_PREPARE_BODY_MAX + 1),
              PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_write(storage, 3, header, body, UINT32_MAX), PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_write(storage, 3, NULL, body, 10), PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_write(storage, 3, header, NULL, 10), PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_read(storage, slots, 0, buf, 16), PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_read(storage, 0, PC_JOURNAL_SLOT_SIZE - 15, buf, 16), PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_read(storage, 0, PC_JOURNAL_SLOT_SIZE + 1, buf, 0), PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_read(storage, 0, UINT32_MAX, buf, 16), PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_read(storage, 0, 16, buf, UINT32_MAX), PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_read(storage, 0, 0, NULL, 16), PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_header_read(storage, slots, buf), PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_header_read(storage, UINT32_MAX, buf), PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_header_read(storage, 0, NULL), PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_sync(storage), PC_OK); /* not failed */
    prepare_expect(storage, 2, 500, 7);
    prepare_expect(storage, slots - 1, 500, 8);
    ASSERT_TRUE(slot_header_zero(storage, 3));
    pc_storage_close(storage);
    ASSERT_EQ(file_size(dir, "journal"), PC_JOURNAL_FILE_SIZE(slots));
    dir_remove();

    const char *single = formatted();
    ASSERT_TRUE(!file_exists(single, "journal"));
    ASSERT_EQ(pc_storage_open(single, &storage), PC_OK);
    ASSERT_EQ(pc_storage_journal_write(storage, 0, header, body, 10), PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_read(storage, 0, 0, buf, 16), PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_header_read(storage, 0, buf), PC_EINVAL);
    ASSERT_EQ(pc_storage_journal_sync(storage), PC_EINVAL);
    ASSERT_EQ(pc_storage_vsr_state_write(storage, buf, 16), PC_EINVAL);
    ASSERT_EQ(pc_storage_vsr_state_read(storage, buf, 16), PC_EINVAL);
    pc_storage_close(storage);
    ASSERT_TRUE(!file_exists(single, "vsr-state"));
    dir_remove();
}

/* ---- the header ring ---- */

/* A recognisable header that, like a VSR header, carries its body's checksum
 * (bytes 16..31) and its own op (bytes 64..71), so a test can tell a torn or
 * rotten body from a whole one the way the replica does. */
static void ring_prepare(uint8_t *header, uint8_t *body, uint32_t body_size, uint32_t salt) {
    prepare_fill(header, body, body_size, salt);
    pc_u128 sum = pc_checksum(body, body_size, 0);
    memcpy(header + 16, &sum, sizeof sum);
    uint64_t op = salt;
    memcpy(header + 64, &op, sizeof op);
}

static bool body_whole(const uint8_t *header, const uint8_t *body, uint32_t body_size) {
    pc_u128 sum;
    memcpy(&sum, header + 16, sizeof sum);
    return pc_checksum(body, body_size, 0) == sum;
}

/* The header copy of slot as storage answers it. */
static int ring_read(pc_storage_t *storage, uint32_t slot, uint8_t *header) {
    memset(header, 0xee, PC_HEADER_SIZE);
    return pc_storage_journal_header_read(storage, slot, header);
}

static bool header_zero(const uint8_t *header) {
    for (uint32_t i = 0; i < PC_HEADER_SIZE; i++) {
        if (header[i] != 0) return false;
    }
    return true;
}

static uint64_t ring_entry_at(uint32_t slot) {
    return PC_JOURNAL_RING_OFFSET(PC_JOURNAL_SLOTS_MIN) + (uint64_t)slot * PC_JOURNAL_RING_ENTRY_SIZE;
}

/* Every journal write also writes the slot's header copy, at the documented
 * place; it reads back equal to the prepare's header, follows overwrites,
 * survives a reopen, and an unwritten slot's copy is PC_ENOTFOUND. */
static void test_header_ring_roundtrip(void) {
    setup(49, 1 << 20);
    const char *dir = formatted_replicated();
    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    static uint8_t header[PC_HEADER_SIZE], body[8192], got[PC_HEADER_SIZE];
    for (uint32_t slot = 0; slot < PC_JOURNAL_SLOTS_MIN; slot++)
        ASSERT_EQ(ring_read(storage, slot, got), PC_ENOTFOUND);
    ASSERT_TRUE(header_zero(got));
    ring_prepare(header, body, 5000, 3);
    ASSERT_EQ(pc_storage_journal_write(storage, 3, header, body, 5000), PC_OK);
    ring_prepare(header, body, 0, 15);
    ASSERT_EQ(pc_storage_journal_write(storage, 15, header, NULL, 0), PC_OK);
    ring_prepare(header, body, 100, 19); /* the ring's next lap over slot 3 */
    ASSERT_EQ(pc_storage_journal_write(storage, 3, header, body, 100), PC_OK);
    ASSERT_EQ(pc_storage_journal_sync(storage), PC_OK);
    ASSERT_EQ(ring_read(storage, 3, got), PC_OK);
    ASSERT_TRUE(memcmp(got, header, PC_HEADER_SIZE) == 0);
    pc_storage_close(storage);

    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    uint8_t want[PC_HEADER_SIZE];
    ring_prepare(want, body, 100, 19);
    ASSERT_EQ(ring_read(storage, 3, got), PC_OK);
    ASSERT_TRUE(memcmp(got, want, PC_HEADER_SIZE) == 0);
    ring_prepare(want, body, 0, 15);
    ASSERT_EQ(ring_read(storage, 15, got), PC_OK);
    ASSERT_TRUE(memcmp(got, want, PC_HEADER_SIZE) == 0);
    ASSERT_EQ(ring_read(storage, 4, got), PC_ENOTFOUND);
    pc_storage_close(storage);

    /* From outside: entry 15 starts with the header, at the ring's offset. */
    char path[256];
    uint8_t raw[PC_HEADER_SIZE];
    snprintf(path, sizeof path, "%s/journal", dir);
    file_read(path, ring_entry_at(15), raw, sizeof raw);
    ASSERT_TRUE(memcmp(raw, want, PC_HEADER_SIZE) == 0);
    dir_remove();
}

/* Bit rot in a prepare's body, or in its header, leaves the header-ring copy
 * saying which entry the slot held (the replica keeps that header and
 * repairs the body); a rewrite of the slot (a repair) restores both. */
static void test_header_ring_outlives_body(void) {
    setup(50, 1 << 20);
    const char *dir = formatted_replicated();
    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    static uint8_t header[PC_HEADER_SIZE], body[8192], got[PC_HEADER_SIZE], back[8192];
    ring_prepare(header, body, 6000, 7);
    ASSERT_EQ(pc_storage_journal_write(storage, 7, header, body, 6000), PC_OK);
    ASSERT_EQ(pc_storage_journal_sync(storage), PC_OK);
    pc_storage_close(storage);

    char path[256];
    snprintf(path, sizeof path, "%s/journal", dir);
    uint64_t slot_at = 7ull * PC_JOURNAL_SLOT_SIZE;
    file_flip(path, slot_at + PC_HEADER_SIZE + 4321); /* the body */
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    ASSERT_EQ(pc_storage_journal_read(storage, 7, PC_HEADER_SIZE, back, 6000), PC_OK);
    ASSERT_TRUE(!body_whole(header, back, 6000)); /* the body is damaged ... */
    ASSERT_EQ(ring_read(storage, 7, got), PC_OK); /* ... its header copy is not */
    ASSERT_TRUE(memcmp(got, header, PC_HEADER_SIZE) == 0);
    pc_storage_close(storage);

    file_flip(path, slot_at + 70); /* and now the prepare's header too */
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    ASSERT_EQ(pc_storage_journal_read(storage, 7, 0, back, PC_HEADER_SIZE), PC_OK);
    ASSERT_TRUE(memcmp(back, header, PC_HEADER_SIZE) != 0);
    ASSERT_EQ(ring_read(storage, 7, got), PC_OK);
    ASSERT_TRUE(memcmp(got, header, PC_HEADER_SIZE) == 0);

    /* A repair writes the entry again: both copies whole. */
    ASSERT_EQ(pc_storage_journal_write(storage, 7, header, body, 6000), PC_OK);
    ASSERT_EQ(pc_storage_journal_sync(storage), PC_OK);
    ASSERT_EQ(pc_storage_journal_read(storage, 7, 0, back, PC_HEADER_SIZE), PC_OK);
    ASSERT_TRUE(memcmp(back, header, PC_HEADER_SIZE) == 0);
    ASSERT_EQ(pc_storage_journal_read(storage, 7, PC_HEADER_SIZE, back, 6000), PC_OK);
    ASSERT_TRUE(body_whole(header, back, 6000));
    ASSERT_EQ(ring_read(storage, 7, got), PC_OK);
    ASSERT_TRUE(memcmp(got, header, PC_HEADER_SIZE) == 0);
    pc_storage_close(storage);
    dir_remove();
}

/* A damaged header-ring entry is detected, whichever byte rots (the copied
 * header, the seal, the reserved bytes, the checksum); so is an entry that
 * landed in another slot's place (a misdirected write) and a torn entry.
 * The prepare itself is untouched, other entries still read, and a rewrite
 * heals the entry. */
static void test_header_ring_damage(void) {
    setup(51, 1 << 20);
    const char *dir = formatted_replicated();
    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    static uint8_t header[PC_HEADER_SIZE], body[4096], got[PC_HEADER_SIZE];
    for (uint32_t slot = 1; slot <= 6; slot++) {
        ring_prepare(header, body, 1000, slot);
        ASSERT_EQ(pc_storage_journal_write(storage, slot, header, body, 1000), PC_OK);
    }
    ASSERT_EQ(pc_storage_journal_sync(storage), PC_OK);
    pc_storage_close(storage);

    char path[256];
    snprintf(path, sizeof path, "%s/journal", dir);
    const uint32_t offsets[] = {0, 77, 127, 128, 131, 136, 200, 240, 255};
    for (size_t i = 0; i < PC_ARRAY_LEN(offsets); i++) {
        file_flip(path, ring_entry_at(2) + offsets[i]);
        ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
        ASSERT_EQ(ring_read(storage, 2, got), PC_ECORRUPT);
        ASSERT_TRUE(header_zero(got)); /* never handed out as a header */
        ASSERT_EQ(ring_read(storage, 1, got), PC_OK);
        pc_storage_close(storage);
        file_flip(path, ring_entry_at(2) + offsets[i]); /* back */
    }
    /* Misdirected: slot 4's entry also written over slot 5's. */
    uint8_t entry[PC_JOURNAL_RING_ENTRY_SIZE];
    file_read(path, ring_entry_at(4), entry, sizeof entry);
    file_write(path, ring_entry_at(5), entry, sizeof entry);
    /* Torn: the first half of slot 2's new entry over slot 6's old one. */
    file_read(path, ring_entry_at(2), entry, sizeof entry);
    file_write(path, ring_entry_at(6), entry, sizeof entry / 2);
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    ASSERT_EQ(ring_read(storage, 4, got), PC_OK);
    ASSERT_EQ(ring_read(storage, 5, got), PC_ECORRUPT);
    ASSERT_EQ(ring_read(storage, 6, got), PC_ECORRUPT);
    ASSERT_EQ(ring_read(storage, 2, got), PC_OK);
    ring_prepare(header, body, 1000, 5);
    static uint8_t back[1000];
    ASSERT_EQ(pc_storage_journal_read(storage, 5, 0, got, PC_HEADER_SIZE), PC_OK);
    ASSERT_TRUE(memcmp(got, header, PC_HEADER_SIZE) == 0); /* the prepare is intact */
    ASSERT_EQ(pc_storage_journal_read(storage, 5, PC_HEADER_SIZE, back, 1000), PC_OK);
    ASSERT_TRUE(body_whole(header, back, 1000));
    ASSERT_EQ(pc_storage_journal_write(storage, 5, header, body, 1000), PC_OK); /* repair */
    ASSERT_EQ(ring_read(storage, 5, got), PC_OK);
    ASSERT_TRUE(memcmp(got, header, PC_HEADER_SIZE) == 0);
    ASSERT_TRUE(!storage->failed); /* damage is an answer, not an I/O failure */
    pc_storage_close(storage);
    dir_remove();
}

/* A crash in the middle of a journal write: the new header and half its body
 * landed over the slot's previous entry. The body fails its checksum; the
 * header copy says the slot held the previous entry (it never landed) or the
 * new one (it did) — never garbage — and a torn half of the new header copy
 * over the old one is detected. */
static void test_header_ring_torn_prepare(void) {
    setup(52, 1 << 20);
    const char *dir = formatted_replicated();
    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    static uint8_t old_header[PC_HEADER_SIZE], old_body[8192];
    static uint8_t new_header[PC_HEADER_SIZE], new_body[8192];
    static uint8_t got[PC_HEADER_SIZE], back[8192];
    char path[256];
    snprintf(path, sizeof path, "%s/journal", dir);
    /* First op 25's header copy as a whole write makes it (kept for later). */
    ring_prepare(new_header, new_body, 8000, 25);
    ASSERT_EQ(pc_storage_journal_write(storage, 9, new_header, new_body, 8000), PC_OK);
    ASSERT_EQ(pc_storage_journal_sync(storage), PC_OK);
    uint8_t entry[PC_JOURNAL_RING_ENTRY_SIZE];
    file_read(path, ring_entry_at(9), entry, sizeof entry);
    ring_prepare(old_header, old_body, 8000, 9); /* then op 9 in slot 9, durably */
    ASSERT_EQ(pc_storage_journal_write(storage, 9, old_header, old_body, 8000), PC_OK);
    ASSERT_EQ(pc_storage_journal_sync(storage), PC_OK);
    pc_storage_close(storage);

    /* The torn write of op 25 (the next lap): header and half the body. */
    uint64_t slot_at = 9ull * PC_JOURNAL_SLOT_SIZE;
    file_write(path, slot_at, new_header, PC_HEADER_SIZE);
    file_write(path, slot_at + PC_HEADER_SIZE, new_body, 4000);
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    ASSERT_EQ(pc_storage_journal_read(storage, 9, 0, got, PC_HEADER_SIZE), PC_OK);
    ASSERT_TRUE(memcmp(got, new_header, PC_HEADER_SIZE) == 0);
    ASSERT_EQ(pc_storage_journal_read(storage, 9, PC_HEADER_SIZE, back, 8000), PC_OK);
    ASSERT_TRUE(!body_whole(new_header, back, 8000)); /* torn: detected */
    ASSERT_EQ(ring_read(storage, 9, got), PC_OK);
    ASSERT_TRUE(memcmp(got, old_header, PC_HEADER_SIZE) == 0); /* held op 9 */
    pc_storage_close(storage);

    /* Its header copy landed too (torn first, then whole): the copy names
     * op 25 (recorded, body to repair). */
    file_write(path, ring_entry_at(9), entry, sizeof entry / 2);
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    ASSERT_EQ(ring_read(storage, 9, got), PC_ECORRUPT);
    pc_storage_close(storage);
    file_write(path, ring_entry_at(9), entry, sizeof entry);
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    ASSERT_EQ(ring_read(storage, 9, got), PC_OK);
    ASSERT_TRUE(memcmp(got, new_header, PC_HEADER_SIZE) == 0);
    pc_storage_close(storage);
    dir_remove();
}

/* A journal formatted before the header ring (exactly its slots) opens: the
 * ring is appended empty (every copy "never written"), prepares already there
 * are untouched, and new writes fill their copies. */
static void test_header_ring_added_to_old_journal(void) {
    setup(53, 1 << 20);
    const char *dir = formatted_replicated();
    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    prepare_write(storage, 4, 700, 4);
    ASSERT_EQ(pc_storage_journal_sync(storage), PC_OK);
    pc_storage_close(storage);
    char path[256];
    snprintf(path, sizeof path, "%s/journal", dir);
    ASSERT_EQ(truncate(path, (off_t)PC_JOURNAL_RING_OFFSET(PC_JOURNAL_SLOTS_MIN)), 0);

    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    ASSERT_EQ(file_size(dir, "journal"), PC_JOURNAL_FILE_SIZE(PC_JOURNAL_SLOTS_MIN));
    uint8_t got[PC_HEADER_SIZE];
    ASSERT_EQ(ring_read(storage, 4, got), PC_ENOTFOUND);
    prepare_expect(storage, 4, 700, 4);
    prepare_write(storage, 5, 10, 5);
    ASSERT_EQ(ring_read(storage, 5, got), PC_OK);
    pc_storage_close(storage);

    /* A full disk while adding it: refused, the journal left as it was. */
    ASSERT_EQ(truncate(path, (off_t)PC_JOURNAL_RING_OFFSET(PC_JOURNAL_SLOTS_MIN)), 0);
    pc__storage_fail_next_alloc = true;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_ENOSPC);
    ASSERT_EQ(file_size(dir, "journal"), PC_JOURNAL_RING_OFFSET(PC_JOURNAL_SLOTS_MIN));
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    pc_storage_close(storage);
    dir_remove();
}

/* A recognisable view state for round n. */
static void state_fill(uint8_t *state, uint32_t size, uint32_t n) {
    for (uint32_t i = 0; i < size; i++)
        state[i] = (uint8_t)(i * 5 + n * 17 + 3);
}

static void state_expect(pc_storage_t *storage, uint32_t size, uint32_t n) {
    uint8_t got[PC_VSR_STATE_MAX], want[PC_VSR_STATE_MAX];
    state_fill(want, size, n);
    memset(got, 0xee, sizeof got);
    ASSERT_EQ(pc_storage_vsr_state_read(storage, got, size), PC_OK);
    ASSERT_TRUE(memcmp(got, want, size) == 0);
}

static void state_write(pc_storage_t *storage, uint32_t size, uint32_t n) {
    uint8_t state[PC_VSR_STATE_MAX];
    state_fill(state, size, n);
    ASSERT_EQ(pc_storage_vsr_state_write(storage, state, size), PC_OK);
}

/* Never written reads PC_ENOTFOUND; a written state reads back, also after
 * a reopen; sizes over the limit are refused; a read of another size than
 * was written finds no valid copy. */
static void test_vsr_state_roundtrip(void) {
    setup(45, 1 << 20);
    const char *dir = formatted_replicated();
    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    uint8_t state[PC_VSR_STATE_MAX + 1];
    ASSERT_EQ(pc_storage_vsr_state_read(storage, state, 200), PC_ENOTFOUND);
    ASSERT_TRUE(!file_exists(dir, "vsr-state")); /* reading creates nothing */
    ASSERT_EQ(pc_storage_vsr_state_write(storage, state, PC_VSR_STATE_MAX + 1), PC_EINVAL);
    ASSERT_EQ(pc_storage_vsr_state_write(storage, NULL, 10), PC_EINVAL);
    ASSERT_EQ(pc_storage_vsr_state_read(storage, state, PC_VSR_STATE_MAX + 1), PC_EINVAL);
    ASSERT_TRUE(!file_exists(dir, "vsr-state"));
    state_write(storage, 200, 1);
    ASSERT_EQ(file_size(dir, "vsr-state"), 2 * PC_VSR_STATE_COPY_SIZE);
    state_expect(storage, 200, 1);
    pc_storage_close(storage);

    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    state_expect(storage, 200, 1);
    ASSERT_EQ(pc_storage_vsr_state_read(storage, state, 199), PC_ECORRUPT);
    state_write(storage, PC_VSR_STATE_MAX, 2); /* the largest */
    state_expect(storage, PC_VSR_STATE_MAX, 2);
    state_expect(storage, 200, 1); /* the older copy still holds the first */
    pc_storage_close(storage);
    dir_remove();
}

/* Writes alternate between the copies; a damaged newest copy falls back to
 * the previous state, and the next write goes over the damaged copy, never
 * over the one still valid; both damaged is corruption; both zero or no file
 * is "never written". */
static void test_vsr_state_alternate(void) {
    setup(46, 1 << 20);
    const char *dir = formatted_replicated();
    char path[256];
    snprintf(path, sizeof path, "%s/vsr-state", dir);
    const uint32_t size = 300;
    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    state_write(storage, size, 1); /* copy 0, sequence 1 */
    state_write(storage, size, 2); /* copy 1, sequence 2 */
    state_write(storage, size, 3); /* copy 0, sequence 3 */
    state_expect(storage, size, 3);
    pc_vsr_state_header_t header;
    file_read(path, 0, &header, sizeof header);
    ASSERT_EQ(header.sequence, 3);
    ASSERT_EQ(header.magic, PC_VSR_STATE_MAGIC);
    file_read(path, PC_VSR_STATE_COPY_SIZE, &header, sizeof header);
    ASSERT_EQ(header.sequence, 2);

    file_flip(path, PC_VSR_STATE_HEADER_SIZE + 77); /* rot in the newest state */
    state_expect(storage, size, 2);
    state_write(storage, size, 4); /* must go over copy 0, keeping copy 1 */
    state_expect(storage, size, 4);
    file_read(path, PC_VSR_STATE_COPY_SIZE, &header, sizeof header);
    ASSERT_EQ(header.sequence, 2);
    pc_storage_close(storage);

    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    state_expect(storage, size, 4);
    file_flip(path, 40); /* the newest copy's header this time */
    state_expect(storage, size, 2);
    file_flip(path, PC_VSR_STATE_COPY_SIZE + PC_VSR_STATE_COPY_SIZE - 1); /* padding counts */
    uint8_t state[PC_VSR_STATE_MAX];
    ASSERT_EQ(pc_storage_vsr_state_read(storage, state, size), PC_ECORRUPT);
    pc_storage_close(storage);

    /* Writing over two damaged copies works again (and reopened: the copy
     * choice comes from disk, not memory). */
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    state_write(storage, size, 5);
    state_expect(storage, size, 5);
    pc_storage_close(storage);

    file_zero(path, 0, 2 * PC_VSR_STATE_COPY_SIZE);
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    ASSERT_EQ(pc_storage_vsr_state_read(storage, state, size), PC_ENOTFOUND);
    pc_storage_close(storage);
    ASSERT_EQ(unlink(path), 0);
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    ASSERT_EQ(pc_storage_vsr_state_read(storage, state, size), PC_ENOTFOUND);
    state_write(storage, size, 6);
    state_expect(storage, size, 6);
    pc_storage_close(storage);
    dir_remove();
}

/* A replicated unit checkpoints at VSR ops with no WAL at all (any
 * wal_checksum is recorded as given), never backwards, prunes nothing, and
 * refuses the WAL calls; a single replica still checks its WAL. */
static void test_replicated_checkpoint(void) {
    setup(47, 1 << 20);
    const char *dir = formatted_replicated();
    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    pc_checkpoint_info_t info;
    void *blob = (void *)1;
    ASSERT_EQ(pc_storage_checkpoint_load(storage, &info, &blob), PC_OK);
    ASSERT_EQ(info.op, 0);
    ASSERT_TRUE(blob == NULL);
    ASSERT_EQ(pc_storage_wal_replay(storage, &info, NULL, NULL), PC_EINVAL);
    uint8_t body[10] = {0};
    struct iovec iov = {body, sizeof body};
    ASSERT_EQ(pc_storage_wal_append(storage, 1, &iov, 1, NULL), PC_EINVAL);
    ASSERT_EQ(pc_storage_wal_sync(storage), PC_EINVAL);
    ASSERT_EQ(pc_storage_reserve(storage, 10, 0), PC_EINVAL);
    ASSERT_EQ(pc_storage_reserve(storage, 0, 100), PC_OK);
    static uint8_t slots[4 * PC_SLOT_SIZE];
    slots_fill(slots, 4, 4);
    ASSERT_EQ(pc_storage_slots_write(storage, 0, slots, 4), PC_OK);

    const char *text = "vsr state at 100";
    pc_checkpoint_info_t at = {
        .op = 100, .wal_checksum = 0xabcdef, .slots_count = 4, .blob_size = strlen(text) + 1};
    ASSERT_EQ(pc_storage_checkpoint_write(storage, &at, text), PC_OK);
    at.op = 250;
    ASSERT_EQ(pc_storage_checkpoint_write(storage, &at, text), PC_OK);
    at.op = 249;
    ASSERT_EQ(pc_storage_checkpoint_write(storage, &at, text), PC_EINVAL); /* backwards */
    at.op = 300;
    at.slots_count = 5;
    ASSERT_EQ(pc_storage_checkpoint_write(storage, &at, text), PC_EINVAL); /* past the store */
    pc_storage_close(storage);
    ASSERT_EQ(segments_count(dir), 0);
    checkpoint_expect(dir, 250, text);
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    ASSERT_EQ(pc_storage_checkpoint_load(storage, &info, &blob), PC_OK);
    ASSERT_EQ_U128(info.wal_checksum, 0xabcdef);
    ASSERT_EQ(info.slots_count, 4);
    free(blob);
    at.op = 250; /* the same op again is allowed */
    at.slots_count = 4;
    ASSERT_EQ(pc_storage_checkpoint_write(storage, &at, text), PC_OK);
    pc_storage_close(storage);
    dir_remove();

    /* A single replica's checkpoint must still match its WAL. */
    dir = formatted();
    replayed_t seen;
    ASSERT_EQ(open_replay(dir, &storage, &seen), PC_OK);
    at.op = 5;
    at.slots_count = 0;
    ASSERT_EQ(pc_storage_checkpoint_write(storage, &at, text), PC_EINVAL);
    pc_storage_close(storage);
    dir_remove();
}

/* A failed journal or view state sync fails the storage: every later call
 * answers PC_ESTATE. The skip switch makes journal_sync skip the sync. */
static void test_journal_fsync_failure(void) {
    setup(48, 1 << 20);
    const char *dir = formatted_replicated();
    pc_storage_t *storage = NULL;
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    prepare_write(storage, 1, 100, 1);
    pc__storage_skip_fsync = true;
    pc__storage_fail_next_fsync = true; /* would fire if journal_sync synced */
    ASSERT_EQ(pc_storage_journal_sync(storage), PC_OK);
    ASSERT_TRUE(pc__storage_fail_next_fsync);
    pc__storage_skip_fsync = false;
    ASSERT_EQ(pc_storage_journal_sync(storage), PC_EIO);
    ASSERT_TRUE(!pc__storage_fail_next_fsync);
    ASSERT_EQ(pc_storage_journal_sync(storage), PC_ESTATE); /* never retried */
    uint8_t header[PC_HEADER_SIZE] = {1}, state[16] = {2};
    ASSERT_EQ(pc_storage_journal_write(storage, 1, header, NULL, 0), PC_ESTATE);
    ASSERT_EQ(pc_storage_journal_read(storage, 1, 0, header, sizeof header), PC_ESTATE);
    ASSERT_EQ(pc_storage_journal_header_read(storage, 1, header), PC_ESTATE);
    ASSERT_EQ(pc_storage_vsr_state_write(storage, state, sizeof state), PC_ESTATE);
    ASSERT_EQ(pc_storage_vsr_state_read(storage, state, sizeof state), PC_ESTATE);
    pc_checkpoint_info_t info = {.op = 1};
    ASSERT_EQ(pc_storage_checkpoint_write(storage, &info, NULL), PC_ESTATE);
    pc_storage_close(storage);
    ASSERT_TRUE(!file_exists(dir, "vsr-state"));

    /* The same through the view state: its sync fails, the storage fails. */
    ASSERT_EQ(pc_storage_open(dir, &storage), PC_OK);
    pc__storage_fail_next_fsync = true;
    ASSERT_EQ(pc_storage_vsr_state_write(storage, state, sizeof state), PC_EIO);
    ASSERT_EQ(pc_storage_vsr_state_read(storage, state, sizeof state), PC_ESTATE);
    ASSERT_EQ(pc_storage_journal_sync(storage), PC_ESTATE);
    pc_storage_close(storage);
    dir_remove();
}

// clang-format off
#define TESTS(X) \
    X(test_format_open_info) \
    X(test_format_twice) \
    X(test_open_unformatted) \
    X(test_open_twice_busy) \
    X(test_wal_roundtrip) \
    X(test_wal_synced_op) \
    X(test_torn_tail_body) \
    X(test_torn_tail_header) \
    X(test_torn_tail_unsynced_followers) \
    X(test_acknowledged_entry_damaged) \
    X(test_acknowledged_entry_lost) \
    X(test_broken_chain) \
    X(test_segment_rotation) \
    X(test_reserve_ahead) \
    X(test_leftover_empty_segment) \
    X(test_checkpoint_fallback) \
    X(test_checkpoint_prunes_wal) \
    X(test_checkpoint_empty_wal) \
    X(test_checkpoint_wal_gap) \
    X(test_slots_roundtrip) \
    X(test_slots_damage) \
    X(test_slots_cache_bounded) \
    X(test_slots_short_of_checkpoint) \
    X(test_fsync_failure_sticks) \
    X(test_checkpoint_fsync_failure) \
    X(test_enospc_changes_nothing) \
    X(test_skip_fsync_switch) \
    X(test_journal_format_open) \
    X(test_journal_format_invalid) \
    X(test_journal_format_leftovers) \
    X(test_journal_roundtrip) \
    X(test_journal_bounds) \
    X(test_header_ring_roundtrip) \
    X(test_header_ring_outlives_body) \
    X(test_header_ring_damage) \
    X(test_header_ring_torn_prepare) \
    X(test_header_ring_added_to_old_journal) \
    X(test_vsr_state_roundtrip) \
    X(test_vsr_state_alternate) \
    X(test_replicated_checkpoint) \
    X(test_journal_fsync_failure)
// clang-format on
PC_TEST_MAIN(TESTS)
