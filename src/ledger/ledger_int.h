/*
 * ledger_int.h — the private body of the ledger state machine, shared by the
 * files of src/ledger/ and by nothing else (SQLite's *Int.h convention).
 *
 * The state is a handful of bounded tables, all allocated by pc_ledger_init:
 *
 *   accounts        dense array in insertion order, an open-addressing index
 *                   (id -> slot + 1) and one history head per account;
 *   transfer index  open addressing with linear probing over two arrays, the
 *                   ids and a u64 "loc_status" word per id (below);
 *   pending pool    the unresolved pending transfers (full records), with a
 *                   free stack and a min-heap by expires_at for expiry;
 *   slot buffer     the slots produced since the last flush;
 *   prefetch cache  stored records handed over for the next apply, keyed by
 *                   loc;
 *   undo log        what a linked chain changed, so a broken chain can be
 *                   rolled back exactly.
 *
 * loc_status layout: bits 0..31 the slot loc (a loc is below transfers_max,
 * at most 2^32), bits 32..60 the pending pool index (meaningful only while
 * the status is PENDING), bits 61..63 the status. Keeping the pool index in
 * the id index makes a post or void one probe sequence: the pending record is
 * reached without a second hash table.
 */
#ifndef PC_LEDGER_INT_H
#define PC_LEDGER_INT_H

#include "ledger.h"

#include <string.h>

/* Status of a transfer id in the index. 0 never appears in a used entry. */
enum pc__status {
    PC__ST_CREATED = 1, /* created, not a pending transfer (includes post/void records) */
    PC__ST_FAILED = 2,  /* tombstone of a transient failure */
    PC__ST_PENDING = 3, /* pending and unresolved: it lives in the pending pool */
    PC__ST_POSTED = 4,
    PC__ST_VOIDED = 5,
    PC__ST_EXPIRED = 6,
    PC__ST_XTS_ABORTED = 7, /* tombstone of an xts empty rollback (abort of an unknown gtid) */
};

#define PC__LS_STATUS_SHIFT 61
#define PC__LS_POOL_SHIFT 32
#define PC__LS_POOL_MASK ((1ull << 29) - 1)
#define PC__LS_LOC_MASK 0xffffffffull

/* The pool index must fit its 29 bits of loc_status. */
#define PC__PENDING_MAX_LIMIT (1u << 29)
PC_STATIC_ASSERT(PC_PENDING_MAX_DEFAULT <= PC__PENDING_MAX_LIMIT, "pending default fits");
PC_STATIC_ASSERT(PC_TRANSFERS_MAX_LIMIT <= (1ull << 32), "a loc fits 32 bits");

#define PC__NONE UINT32_MAX

/* One slot per event at most; twice a batch lets a caller flush late once. */
#define PC__SLOTS_CAP (2u * PC_BATCH_EVENTS_MAX)
/* Prefetched records (one per event) plus records copied at resolve time
 * (one per event), at a load factor of at most one half. */
#define PC__CACHE_CAP 32768u
PC_STATIC_ASSERT(PC__CACHE_CAP >= 4u * PC_BATCH_EVENTS_MAX, "cache load stays below 1/2");
/* A post or void logs the most: two accounts, the pending's index entry, the
 * pending pool entry and the new id. */
#define PC__UNDO_PER_EVENT 5u
#define PC__UNDO_CAP (PC__UNDO_PER_EVENT * PC_BATCH_EVENTS_MAX)

#define PC__NS_PER_S 1000000000ull

/* An unresolved pending transfer. */
typedef struct pc__pending {
    pc_transfer_t transfer; /* the stored record; id 0 while the entry is free */
    uint64_t expires_at;    /* ns; meaningful only when transfer.timeout != 0 */
    uint64_t index_pos;     /* position of the id in the transfer index */
    uint32_t heap_pos;      /* PC__NONE when not in the heap (timeout 0) */
    uint32_t wanted_epoch;  /* == ledger epoch: copy the record out when resolved */
} pc__pending_t;

/* An expiry heap entry carries its keys, so that sifting compares within the
 * heap array instead of reading a pool entry per comparison. */
typedef struct pc__heap_entry {
    uint64_t expires_at;
    uint64_t timestamp; /* the pending's: unique in a ledger, breaks ties */
    uint32_t pool_index;
    uint32_t reserved;
} pc__heap_entry_t;

enum pc__undo_kind {
    PC__UNDO_ACCOUNT_INSERT = 1, /* pos: account index position */
    PC__UNDO_ACCOUNT_BALANCE,    /* index: account slot, value: old head, u.balances */
    PC__UNDO_INDEX_INSERT,       /* pos: transfer index position */
    PC__UNDO_INDEX_SET,          /* pos: transfer index position, value: old loc_status */
    PC__UNDO_PENDING_ADD,        /* index: pool index */
    PC__UNDO_PENDING_REMOVE,     /* index: pool index, u.pending: the entry */
};

typedef struct pc__balances {
    pc_u128 debits_pending, debits_posted, credits_pending, credits_posted;
} pc__balances_t;

typedef struct pc__undo {
    uint32_t kind;
    uint32_t index;
    uint64_t pos;
    uint64_t value;
    union {
        pc__balances_t balances;
        pc__pending_t pending;
    } u;
} pc__undo_t;

struct pc_ledger {
    pc_ledger_config_t config;

    /* Accounts. */
    pc_account_t *accounts;  /* accounts_max, in insertion order */
    uint64_t *heads;         /* accounts_max: loc + 1 of the newest slot, 0 none */
    uint32_t *account_index; /* slot + 1, 0 = empty */
    uint64_t account_index_mask;
    uint32_t accounts_count;

    /* Transfer id index. */
    pc_u128 *ids;         /* 0 = empty */
    uint64_t *loc_status; /* see the file comment */
    uint64_t index_mask;
    uint64_t transfers_count;

    /* Pending pool and expiry heap. */
    pc__pending_t *pool;
    uint32_t *pool_free; /* stack of free pool indices below pool_used */
    uint32_t pool_free_count;
    uint32_t pool_used; /* high-water mark: indices >= pool_used were never used */
    pc__heap_entry_t *heap; /* min-heap by (expires_at, timestamp) */
    uint32_t heap_count;
    uint32_t pending_count;

    /* Slots produced since the last flush: locs slots_count - slots_n .. */
    pc_transfer_slot_t *slots;
    uint32_t slots_n;
    uint64_t slots_count; /* next loc */

    /* Prefetch cache: keys are loc + 1 (bit 63: record present), 0 = empty. */
    uint64_t *cache_keys;
    pc_transfer_t *cache_records;
    uint32_t *cache_used; /* positions in use, to empty the cache cheaply */
    uint32_t cache_used_count;
    uint32_t epoch; /* bumped by prefetch and apply; marks pool entries for one apply */

    /* Undo log of the open linked chain. */
    pc__undo_t *undo;
    uint32_t undo_count;
    bool undo_on;
    uint32_t chain_slots_n;
    uint64_t chain_slots_count;

    uint64_t timestamp_last;

    /* XTS (xts.c). xts_legs_open and clearing_accounts are derived. */
    uint32_t xts_legs_open; /* undecided payee legs: each holds one slot of
                               the store for its resolution, so a decision made
                               can always be applied (pc__store_full) */
    uint32_t clearing_accounts;
    /* Reserves of shadow legs a shadow_purge dropped unresolved (in
     * snapshots and the state checksum): counted as used for good, so the
     * store never gets room back (pc__store_used). */
    uint32_t xts_reserves_purged;

    /* Routing (replicated, in snapshots and the state checksum): the epoch
     * and the owned-bucket bitmap of the last set_routing. routing_all
     * caches "owns every bucket", so the hot path skips bucket checks while
     * a unit is alone. bucket_accounts is derived (counted as accounts are
     * inserted, also at snapshot load). */
    uint64_t routing_epoch;
    uint64_t routing_owned[2];
    bool routing_all;
    uint32_t bucket_accounts[PC_BUCKETS];

    /* Shadow namespace (shadow.c). shadow: the namespace of the batch being
     * applied (its request's PC_REQUEST_SHADOW flag). shadow_purged_before:
     * the slot count at the last shadow_purge (replicated, in snapshots):
     * shadow slots below it were purged, so recovery skips them. */
    bool shadow;
    uint64_t shadow_purged_before;

    /* Recovery (between snapshot_read and rebuild_finish). */
    bool rebuilding;
    uint64_t rebuild_next;            /* next loc expected */
    uint64_t rebuild_timestamp;       /* timestamp of the last rebuilt slot */
    uint64_t rebuild_pending_matched; /* snapshot pendings whose slot was seen */
    uint64_t rebuild_transfers_count; /* the snapshot's transfer count */

    /* Memory regions, unmapped by deinit. */
    void *regions[16];
    size_t region_sizes[16];
    uint32_t regions_count;
};

/* ---- hashing ---- */

static inline uint64_t pc__mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static inline uint64_t pc__hash_id(pc_u128 id) {
    return pc__mix64((uint64_t)id ^ pc__mix64((uint64_t)(id >> 64) ^ 0x9e3779b97f4a7c15ull));
}

/* ---- loc_status ---- */

static inline uint64_t pc__ls_make(uint64_t loc, uint32_t pool, uint32_t status) {
    return loc | ((uint64_t)pool << PC__LS_POOL_SHIFT) | ((uint64_t)status << PC__LS_STATUS_SHIFT);
}
static inline uint32_t pc__ls_status(uint64_t ls) {
    return (uint32_t)(ls >> PC__LS_STATUS_SHIFT);
}
static inline uint64_t pc__ls_loc(uint64_t ls) {
    return ls & PC__LS_LOC_MASK;
}
static inline uint32_t pc__ls_pool(uint64_t ls) {
    return (uint32_t)((ls >> PC__LS_POOL_SHIFT) & PC__LS_POOL_MASK);
}

/* ---- transfer index (tables.c) ---- */

/* The position of id, or of the empty entry where it would be inserted: one
 * probe sequence serves both the lookup and the insert. */
static inline uint64_t pc__index_find(const pc_ledger_t *ledger, pc_u128 id) {
    uint64_t pos = pc__hash_id(id) & ledger->index_mask;
    for (;;) {
        pc_u128 current = ledger->ids[pos];
        if (current == id || current == 0) return pos;
        pos = (pos + 1) & ledger->index_mask;
    }
}

static inline bool pc__index_has(const pc_ledger_t *ledger, uint64_t pos, pc_u128 id) {
    return ledger->ids[pos] == id;
}

void pc__index_insert(pc_ledger_t *ledger, uint64_t pos, pc_u128 id, uint64_t loc_status);
void pc__index_set(pc_ledger_t *ledger, uint64_t pos, uint64_t loc_status);

/* ---- accounts (tables.c) ---- */

/* The slot of an account, or PC__NONE. *pos_out (optional) receives the index
 * position where the id is or would be inserted. */
static inline uint32_t pc__account_find(const pc_ledger_t *ledger, pc_u128 id, uint64_t *pos_out) {
    uint64_t pos = pc__hash_id(id) & ledger->account_index_mask;
    for (;;) {
        uint32_t entry = ledger->account_index[pos];
        if (entry == 0 || ledger->accounts[entry - 1].id == id) {
            if (pos_out) *pos_out = pos;
            return entry == 0 ? PC__NONE : entry - 1;
        }
        pos = (pos + 1) & ledger->account_index_mask;
    }
}

void pc__account_insert(pc_ledger_t *ledger, uint64_t pos, const pc_account_t *account);
/* Counts an account in the derived per-bucket (or clearing) counts. */
void pc__account_counted(pc_ledger_t *ledger, pc_u128 id);

/* ---- routing (routing.c) ---- */

/* Bits 0..PC_BUCKETS-1 of a routing bitmap. */
#define PC__ROUTING_LOW_MASK UINT64_MAX
#define PC__ROUTING_HIGH_MASK ((1ull << (PC_BUCKETS - 64)) - 1)
PC_STATIC_ASSERT(PC_BUCKETS > 64 && PC_BUCKETS <= 128, "routing bitmap is two words");

static inline bool pc__routing_has(const uint64_t owned[2], uint32_t bucket) {
    return (owned[bucket >> 6] >> (bucket & 63)) & 1;
}

/* Whether the unit owns the account id's bucket. Call only when
 * !ledger->routing_all: callers test that first, so a unit owning every
 * bucket pays one predictable branch per event and no arithmetic. */
static inline bool pc__routing_owns(const pc_ledger_t *ledger, pc_u128 id) {
    return pc__routing_has(ledger->routing_owned, pc_bucket_of(id));
}

/* Sets the routing state (owned bitmap already validated). */
void pc__routing_install(pc_ledger_t *ledger, uint64_t epoch, const uint64_t owned[2]);
uint32_t pc__routing_set(pc_ledger_t *ledger, const pc_routing_t *routing);
/* Logs the account's balances and head before a change (inside a chain). */
void pc__account_save(pc_ledger_t *ledger, uint32_t slot);

/* ---- xts (xts.c) ---- */

static inline bool pc__is_xts(const pc_transfer_t *t) {
    return (t->flags & PC_SLOT_XTS) != 0;
}

/* The two accounts of this unit a stored record moves money between: its own
 * for an ordinary transfer; for an xts slot the local account and the unit's
 * clearing account of the ledger (see PC_SLOT_XTS in ledger.h). */
/* The clearing account of a ledger in the namespace of a transfer id. */
static inline pc_u128 pc__clearing_id(uint32_t ledger_id, pc_u128 gtid) {
    return pc_id_is_shadow(gtid) ? PC_SHADOW_CLEARING_ACCOUNT_ID(ledger_id)
                                 : PC_CLEARING_ACCOUNT_ID(ledger_id);
}

static inline void pc__slot_accounts(const pc_transfer_t *t, pc_u128 *dr, pc_u128 *cr) {
    *dr = t->debit_account_id;
    *cr = t->credit_account_id;
    if (!pc__is_xts(t)) return;
    if (t->flags & PC_SLOT_XTS_PAYEE) *dr = pc__clearing_id(t->ledger, t->id);
    else *cr = pc__clearing_id(t->ledger, t->id);
}

/* The i-th event of an xts_resolve (a decision). A request body may be
 * unaligned, so it copies. */
static inline pc_xts_decision_t pc__decision_at(const void *events, uint32_t i) {
    pc_xts_decision_t d;
    memcpy(&d, (const uint8_t *)events + (size_t)i * sizeof d, sizeof d);
    return d;
}

uint32_t pc__xts_try(pc_ledger_t *ledger, const pc_transfer_t *t, uint64_t timestamp);
uint32_t pc__xts_resolve(pc_ledger_t *ledger, const pc_xts_decision_t *d, uint64_t timestamp);

/* ---- shadow namespace (shadow.c) ---- */

/* shadow_mismatch when an id of the event (other than 0 and 2^128 - 1,
 * which get their own results) is not in the batch's namespace; else 0. */
uint32_t pc__shadow_check(const pc_ledger_t *ledger, pc_operation_t operation,
                          const void *events, uint32_t i);
uint32_t pc__shadow_purge(pc_ledger_t *ledger, const void *event);

/* ---- pending pool and expiry (tables.c) ---- */

uint32_t pc__pending_add(pc_ledger_t *ledger, const pc_transfer_t *transfer, uint64_t index_pos);
/* Removes a pending from the pool and sets its index status to `status`. */
void pc__pending_resolve(pc_ledger_t *ledger, uint32_t pool_index, uint32_t status);
uint32_t pc__expire_until(pc_ledger_t *ledger, uint64_t timestamp);

/* ---- prefetch cache (tables.c) ---- */

bool pc__cache_request(pc_ledger_t *ledger, uint64_t loc);
void pc__cache_put(pc_ledger_t *ledger, uint64_t loc, const pc_transfer_t *transfer);
const pc_transfer_t *pc__cache_get(const pc_ledger_t *ledger, uint64_t loc);
void pc__cache_clear(pc_ledger_t *ledger);

/* ---- slots and records (tables.c) ---- */

static inline uint64_t pc__slots_first_loc(const pc_ledger_t *ledger) {
    return ledger->slots_count - ledger->slots_n;
}

uint64_t pc__slot_append(pc_ledger_t *ledger, const pc_transfer_t *transfer, uint64_t prev_debit,
                         uint64_t prev_credit);
/* The stored record behind an index entry, from the pool, the slot buffer or
 * the prefetch cache; asserts that one of them has it. */
const pc_transfer_t *pc__record_get(const pc_ledger_t *ledger, pc_u128 id, uint64_t loc_status);

/* ---- undo log (tables.c) ---- */

pc__undo_t *pc__undo_push(pc_ledger_t *ledger, uint32_t kind);
void pc__chain_begin(pc_ledger_t *ledger);
void pc__chain_rollback(pc_ledger_t *ledger);

/* ---- per-event operations ---- */

uint32_t pc__account_create(pc_ledger_t *ledger, const pc_account_t *account, uint64_t timestamp);
uint32_t pc__transfer_create(pc_ledger_t *ledger, const pc_transfer_t *transfer,
                             uint64_t timestamp);
/* Stateless checks of a single-phase or pending transfer (not a post or
 * void), after the id checks: accounts, pending_id, timeout, amount, ledger,
 * code, in create_transfers' order. */
uint32_t pc__transfer_validate_single(const pc_transfer_t *t);
/* True for results that depend on state and leave a tombstone. */
bool pc__transfer_result_transient(uint32_t result);
/* Shared with xts.c: a retry's comparison, the overflow and limit checks. */
uint32_t pc__transfer_exists(const pc_transfer_t *t, const pc_transfer_t *e);
uint32_t pc__transfer_check_overflows(const pc_account_t *dr, const pc_account_t *cr,
                                      pc_u128 amount, bool pending);
uint32_t pc__transfer_check_limits(const pc_account_t *dr, const pc_account_t *cr,
                                   pc_u128 amount);
/* Slots stored or promised. Every undecided xts leg keeps one slot in
 * reserve for its resolution, so nothing else may take those: a unit that
 * agreed to a try can always apply the decision, even when the store is
 * otherwise full. The count never decreases (a slot is never given back, a
 * reserve becomes its resolution's slot, a purged one stays counted), so
 * once the store is full it stays full: an xts abort relies on that when it
 * has no room for its tombstone (xts.c). */
static inline uint64_t pc__store_used(const pc_ledger_t *ledger) {
    return ledger->slots_count + ledger->xts_legs_open + ledger->xts_reserves_purged;
}
/* No room for another stored slot (resolutions take slots without ids). */
static inline bool pc__store_full(const pc_ledger_t *ledger) {
    return pc__store_used(ledger) >= ledger->config.transfers_max ||
           ledger->transfers_count >= ledger->config.transfers_max;
}
/* Room for a resolution slot: always, by the reserve above. */
static inline bool pc__store_has_reserved(const pc_ledger_t *ledger) {
    return ledger->slots_count < ledger->config.transfers_max;
}
/* Writes the tombstone of a standalone event that failed transiently. */
void pc__transfer_tombstone(pc_ledger_t *ledger, const pc_transfer_t *transfer, uint64_t timestamp);

#endif /* PC_LEDGER_INT_H */
