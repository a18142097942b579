/*
 * ledger.c — the ledger's lifecycle and its apply path: init and deinit,
 * prefetch, apply with linked chains, expiry on idle ticks, the slot buffer
 * hand-off and stats.
 *
 * Every table is mapped once in pc_ledger_init from the configured bounds
 * and populated at once (MAP_POPULATE): the memory of the configured limits
 * is resident from the start (about 790 MiB for the defaults, the 384 MiB
 * transfer index included), so no insert ever takes a page fault. Lazy
 * zero pages were tried first: in this kind of guest a fresh page costs
 * ~10 µs to fault, nearly every insert into a young random-probed index
 * faults, and a batch then stalled for 100 ms or more — long enough for the
 * backups of a unit to suspect their primary. (Huge pages are touched whole:
 * the first batch then zeroed the whole index inside one apply.) After init
 * nothing is allocated.
 */
#include "ledger_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* How far ahead apply prefetches the index entries of upcoming events: far
 * enough to cover a DRAM miss, near enough to stay in cache. */
#define INDEX_PREFETCH_DISTANCE 8u

PC_STATIC_ASSERT((int)PC_ACCOUNT_RESULT_linked_event_failed ==
                     (int)PC_TRANSFER_RESULT_linked_event_failed,
                 "chain results agree");
PC_STATIC_ASSERT((int)PC_ACCOUNT_RESULT_linked_event_chain_open ==
                     (int)PC_TRANSFER_RESULT_linked_event_chain_open,
                 "chain results agree");
PC_STATIC_ASSERT((int)PC_ACCOUNT_linked == (int)PC_TRANSFER_linked, "linked flags agree");

static void *region_map(pc_ledger_t *ledger, size_t size) {
    PC_ASSERT(size > 0);
    PC_ASSERT(ledger->regions_count < PC_ARRAY_LEN(ledger->regions));
    /* Populated up front: the tables are probed at random, so touching them
     * lazily costs a page fault on nearly every insert into a fresh page
     * (~10 µs each in this kind of guest: a batch of 8,189 could stall for
     * 100 ms and more, long enough for backups to suspect their primary).
     * MAP_POPULATE maps it all at init in one go (~70 ms per 384 MiB here),
     * as TigerBeetle allocates everything at startup. Transparent huge pages
     * where the kernel allows them (madvise mode, Debian's default): a probe
     * into a 400 MiB index then misses the cache but not the TLB as well,
     * which halves the cost of a lookup. They must be asked for before the
     * pages exist, so populate after the advice (MADV_POPULATE_WRITE, Linux
     * 5.14; older kernels fall back to MAP_POPULATE's small pages). */
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    (void)madvise(p, size, MADV_HUGEPAGE);
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
    if (madvise(p, size, MADV_POPULATE_WRITE) != 0) {
        munmap(p, size);
        p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED) return NULL;
    }
    ledger->regions[ledger->regions_count] = p;
    ledger->region_sizes[ledger->regions_count] = size;
    ledger->regions_count++;
    return p;
}

/* Open-addressing capacity: a power of two with at least a quarter spare. */
static uint64_t table_capacity(uint64_t entries_max) {
    uint64_t need = entries_max + entries_max / 3 + 1, capacity = 1;
    while (capacity < need)
        capacity <<= 1;
    PC_ASSERT(capacity > entries_max);
    return capacity;
}

static bool config_valid(const pc_ledger_config_t *c) {
    if (c == NULL) return false;
    if (c->accounts_max == 0 || c->accounts_max > PC_ACCOUNTS_MAX_LIMIT) return false;
    if (c->transfers_max == 0 || c->transfers_max > PC_TRANSFERS_MAX_LIMIT) return false;
    return c->pending_max != 0 && c->pending_max <= PC__PENDING_MAX_LIMIT;
}

static int tables_map(pc_ledger_t *l) {
    const pc_ledger_config_t *c = &l->config;
    PC_ASSERT(l->regions_count == 0);
    uint64_t accounts_cap = table_capacity(c->accounts_max);
    uint64_t index_cap = table_capacity(c->transfers_max);
    l->account_index_mask = accounts_cap - 1;
    l->index_mask = index_cap - 1;
    if (!(l->accounts = region_map(l, c->accounts_max * sizeof(pc_account_t)))) goto fail;
    if (!(l->heads = region_map(l, c->accounts_max * sizeof(uint64_t)))) goto fail;
    if (!(l->account_index = region_map(l, accounts_cap * sizeof(uint32_t)))) goto fail;
    if (!(l->ids = region_map(l, index_cap * sizeof(pc_u128)))) goto fail;
    if (!(l->loc_status = region_map(l, index_cap * sizeof(uint64_t)))) goto fail;
    if (!(l->pool = region_map(l, c->pending_max * sizeof(pc__pending_t)))) goto fail;
    if (!(l->pool_free = region_map(l, c->pending_max * sizeof(uint32_t)))) goto fail;
    if (!(l->heap = region_map(l, c->pending_max * sizeof(pc__heap_entry_t)))) goto fail;
    if (!(l->slots = region_map(l, PC__SLOTS_CAP * sizeof(pc_transfer_slot_t)))) goto fail;
    if (!(l->cache_keys = region_map(l, PC__CACHE_CAP * sizeof(uint64_t)))) goto fail;
    if (!(l->cache_records = region_map(l, PC__CACHE_CAP * sizeof(pc_transfer_t)))) {
        goto fail;
    }
    if (!(l->cache_used = region_map(l, PC__CACHE_CAP * sizeof(uint32_t)))) goto fail;
    if (!(l->undo = region_map(l, PC__UNDO_CAP * sizeof(pc__undo_t)))) goto fail;
    return PC_OK;
fail:
    return PC_ENOMEM;
}

int pc_ledger_init(const pc_ledger_config_t *config, pc_ledger_t **out) {
    PC_ASSERT(out != NULL);
    *out = NULL;
    if (!config_valid(config)) return PC_EINVAL;
    pc_ledger_t *ledger = calloc(1, sizeof(*ledger));
    if (ledger == NULL) return PC_ENOMEM;
    ledger->config = *config;
    ledger->epoch = 1;
    /* A fresh unit owns every bucket: alone, it behaves as before routing. */
    const uint64_t all[2] = {PC__ROUTING_LOW_MASK, PC__ROUTING_HIGH_MASK};
    pc__routing_install(ledger, 0, all);
    int rc = tables_map(ledger);
    if (rc != PC_OK) goto fail;
    *out = ledger;
    return PC_OK;
fail:
    pc_ledger_deinit(ledger);
    return rc;
}

void pc_ledger_deinit(pc_ledger_t *ledger) {
    if (ledger == NULL) return;
    PC_ASSERT(ledger->regions_count <= PC_ARRAY_LEN(ledger->regions));
    for (uint32_t i = 0; i < ledger->regions_count; i++) {
        munmap(ledger->regions[i], ledger->region_sizes[i]);
    }
    free(ledger);
}

/* A hint only: the account's first probe position is usually its own. */
static inline __attribute__((always_inline)) void account_prefetch(const pc_ledger_t *ledger,
                                                                   pc_u128 id) {
    uint32_t entry = ledger->account_index[pc__hash_id(id) & ledger->account_index_mask];
    if (entry != 0) {
        const char *account = (const char *)&ledger->accounts[entry - 1];
        __builtin_prefetch(account, 1);
        __builtin_prefetch(account + 64, 1);
    }
}

/* The index entry of an id. */
static inline __attribute__((always_inline)) void index_prefetch(const pc_ledger_t *ledger,
                                                                 pc_u128 id) {
    uint64_t pos = pc__hash_id(id) & ledger->index_mask;
    __builtin_prefetch(&ledger->ids[pos], 1);
    __builtin_prefetch(&ledger->loc_status[pos], 1);
}

/* Starts the memory reads of an upcoming event: its id's index entry and its
 * two accounts. Always inlined: gcc deems a function holding only prefetches
 * free of effects and deletes the calls. */
static inline __attribute__((always_inline)) void event_prefetch(const pc_ledger_t *ledger,
                                                                 const pc_transfer_t *t) {
    index_prefetch(ledger, t->id);
    account_prefetch(ledger, t->debit_account_id);
    account_prefetch(ledger, t->credit_account_id);
}

/* The pool entry of an undecided leg, once its index entry is in cache. */
static inline __attribute__((always_inline)) const pc__pending_t *
pending_of(const pc_ledger_t *ledger, pc_u128 id) {
    uint64_t pos = pc__index_find(ledger, id);
    if (!pc__index_has(ledger, pos, id)) return NULL;
    uint64_t ls = ledger->loc_status[pos];
    if (pc__ls_status(ls) != PC__ST_PENDING) return NULL;
    return &ledger->pool[pc__ls_pool(ls)];
}

/* Apply's look-ahead for resolves (a try is prefetched as a create), in
 * stages: an event far ahead has its index entry fetched, a nearer one its
 * leg's pool entry (a resolve names only the gtid), the next ones the leg's
 * accounts. Each stage finds in cache what the one before fetched, so the
 * event itself finds everything there. */
#define XTS_PREFETCH_FAR 16u
#define XTS_PREFETCH_NEAR 4u
static inline __attribute__((always_inline)) void xts_apply_prefetch(const pc_ledger_t *ledger,
                                                                     const void *events,
                                                                     uint32_t count, uint32_t i) {
    if (i + XTS_PREFETCH_FAR < count) {
        index_prefetch(ledger, pc__decision_at(events, i + XTS_PREFETCH_FAR).gtid);
    }
    if (i + INDEX_PREFETCH_DISTANCE < count) {
        pc_u128 gtid = pc__decision_at(events, i + INDEX_PREFETCH_DISTANCE).gtid;
        const pc__pending_t *p = pending_of(ledger, gtid);
        if (p != NULL) {
            __builtin_prefetch(p, 1);
            __builtin_prefetch((const char *)p + 128, 1);
        }
    }
    if (i + XTS_PREFETCH_NEAR < count) {
        const pc__pending_t *p =
            pending_of(ledger, pc__decision_at(events, i + XTS_PREFETCH_NEAR).gtid);
        if (p != NULL) {
            pc_u128 dr, cr;
            pc__slot_accounts(&p->transfer, &dr, &cr);
            account_prefetch(ledger, dr);
            account_prefetch(ledger, cr);
        }
    }
}

/* ---- prefetch ---- */

/* Lists the record behind an index entry unless apply can find it in memory:
 * unresolved pendings are in the pool (marked, so that resolving one during
 * the next apply keeps its record), recent records are in the slot buffer. */
static uint32_t prefetch_entry(pc_ledger_t *ledger, uint64_t ls, uint64_t *out) {
    uint32_t status = pc__ls_status(ls);
    PC_ASSERT(status != 0);
    if (status == PC__ST_FAILED || status == PC__ST_XTS_ABORTED) return 0;
    if (status == PC__ST_PENDING) {
        ledger->pool[pc__ls_pool(ls)].wanted_epoch = ledger->epoch;
        return 0;
    }
    uint64_t loc = pc__ls_loc(ls);
    PC_ASSERT(loc < ledger->slots_count);
    if (loc >= pc__slots_first_loc(ledger)) return 0;
    if (!pc__cache_request(ledger, loc)) return 0;
    *out = loc;
    return 1;
}

/* An xts try or resolve needs the stored record of its gtid when it exists
 * (a retry compares fields; a resolve reads the leg). */
static uint32_t xts_prefetch(pc_ledger_t *ledger, pc_operation_t operation, const void *events,
                             uint32_t count, uint64_t *locs_out) {
    PC_ASSERT(count <= PC_BATCH_EVENTS_MAX);
    bool tries = operation == PC_OP_xts_try;
    const pc_transfer_t *transfers = events;
    uint32_t n = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t ahead = i + INDEX_PREFETCH_DISTANCE;
        if (ahead < count) {
            if (tries) event_prefetch(ledger, &transfers[ahead]);
            else index_prefetch(ledger, pc__decision_at(events, ahead).gtid);
        }
        pc_u128 id = tries ? transfers[i].id : pc__decision_at(events, i).gtid;
        if (id == 0 || id == PC_U128_MAX) continue;
        uint64_t pos = pc__index_find(ledger, id);
        if (!pc__index_has(ledger, pos, id)) continue;
        uint64_t ls = ledger->loc_status[pos];
        /* A resolve works on the leg's pool entry: bring it in now, while
         * the rest of the batch is being looked up. */
        if (pc__ls_status(ls) == PC__ST_PENDING) {
            __builtin_prefetch(&ledger->pool[pc__ls_pool(ls)], 1);
        }
        n += prefetch_entry(ledger, ls, &locs_out[n]);
    }
    PC_ASSERT(n <= count);
    return n;
}

/* A transfer whose id exists is decided by the id check alone; otherwise a
 * post or void needs its pending transfer. At most one loc per event. */
uint32_t pc_ledger_prefetch(pc_ledger_t *ledger, pc_operation_t operation, const void *events,
                            uint32_t count, uint64_t *locs_out) {
    PC_ASSERT(count <= PC_BATCH_EVENTS_MAX);
    PC_ASSERT(!ledger->rebuilding);
    /* Marks and requests belong to the next apply only: a batch prefetched
     * but never applied must not leave them behind. */
    pc__cache_clear(ledger);
    ledger->epoch++;
    if (operation == PC_OP_xts_try || operation == PC_OP_xts_resolve) {
        return xts_prefetch(ledger, operation, events, count, locs_out);
    }
    if (operation != PC_OP_create_transfers) return 0;
    const pc_transfer_t *transfers = events;
    uint32_t n = 0;
    for (uint32_t i = 0; i < count; i++) {
        const pc_transfer_t *t = &transfers[i];
        if (i + INDEX_PREFETCH_DISTANCE < count) {
            event_prefetch(ledger, &transfers[i + INDEX_PREFETCH_DISTANCE]);
        }
        if (t->id == 0 || t->id == PC_U128_MAX) continue;
        uint64_t pos = pc__index_find(ledger, t->id);
        if (pc__index_has(ledger, pos, t->id)) {
            n += prefetch_entry(ledger, ledger->loc_status[pos], &locs_out[n]);
            continue;
        }
        if (!(t->flags & (PC_TRANSFER_post_pending_transfer | PC_TRANSFER_void_pending_transfer))) {
            continue;
        }
        if (t->pending_id == 0 || t->pending_id == PC_U128_MAX) continue;
        pos = pc__index_find(ledger, t->pending_id);
        if (!pc__index_has(ledger, pos, t->pending_id)) continue;
        if (pc__ls_status(ledger->loc_status[pos]) == PC__ST_CREATED) continue;
        n += prefetch_entry(ledger, ledger->loc_status[pos], &locs_out[n]);
    }
    PC_ASSERT(n <= count);
    return n;
}

void pc_ledger_prefetch_put(pc_ledger_t *ledger, uint64_t loc, const pc_transfer_t *transfer) {
    PC_ASSERT(transfer != NULL && !(transfer->flags & PC_SLOT_FAILED));
    PC_ASSERT(loc < pc__slots_first_loc(ledger));
    pc__cache_put(ledger, loc, transfer);
}

/* ---- apply ---- */

static uint32_t event_apply(pc_ledger_t *ledger, pc_operation_t operation, const void *events,
                            uint32_t i, uint64_t timestamp) {
    uint32_t mismatch = pc__shadow_check(ledger, operation, events, i);
    if (mismatch != 0) return mismatch;
    if (operation == PC_OP_create_accounts) {
        return pc__account_create(ledger, &((const pc_account_t *)events)[i], timestamp);
    }
    if (operation == PC_OP_set_routing) {
        PC_ASSERT(i == 0);
        pc_routing_t routing;
        memcpy(&routing, events, sizeof(routing)); /* the body may be unaligned */
        return pc__routing_set(ledger, &routing);
    }
    if (operation == PC_OP_shadow_purge) {
        PC_ASSERT(i == 0);
        return pc__shadow_purge(ledger, events);
    }
    const pc_transfer_t *transfers = events;
    if (operation == PC_OP_xts_try) return pc__xts_try(ledger, &transfers[i], timestamp);
    if (operation == PC_OP_xts_resolve) {
        pc_xts_decision_t decision = pc__decision_at(events, i);
        return pc__xts_resolve(ledger, &decision, timestamp);
    }
    return pc__transfer_create(ledger, &transfers[i], timestamp);
}

static uint16_t event_flags(pc_operation_t operation, const void *events, uint32_t i) {
    if (operation == PC_OP_create_accounts) return ((const pc_account_t *)events)[i].flags;
    if (operation != PC_OP_create_transfers) return 0; /* never linked */
    return ((const pc_transfer_t *)events)[i].flags;
}

/* A standalone event that failed for a state-dependent reason burns its id. */
static void event_failed_alone(pc_ledger_t *ledger, pc_operation_t operation, const void *events,
                               uint32_t i, uint64_t timestamp, uint32_t result) {
    if (operation != PC_OP_create_transfers) return;
    if (!pc__transfer_result_transient(result)) return;
    pc__transfer_tombstone(ledger, &((const pc_transfer_t *)events)[i], timestamp);
}

/* The chain loop, as in TigerBeetle: a chain runs from the first linked event
 * to the first event without linked. Its events are undo-logged; the first
 * failure rolls the chain back and every other event of the chain reports
 * linked_event_failed. The batch's last event with linked set is an open
 * chain: it reports linked_event_chain_open and the chain fails. */
static uint32_t batch_run(pc_ledger_t *ledger, pc_operation_t operation, const void *events,
                          uint32_t count, uint64_t start, pc_create_result_t *results) {
    const uint32_t failed = PC_TRANSFER_RESULT_linked_event_failed;
    const uint32_t open = PC_TRANSFER_RESULT_linked_event_chain_open;
    uint32_t n = 0, chain = PC__NONE;
    bool broken = false;
    for (uint32_t i = 0; i < count; i++) {
        if (operation == PC_OP_create_transfers || operation == PC_OP_xts_try) {
            if (i + INDEX_PREFETCH_DISTANCE < count) {
                event_prefetch(ledger,
                               &((const pc_transfer_t *)events)[i + INDEX_PREFETCH_DISTANCE]);
            }
        } else if (operation == PC_OP_xts_resolve) {
            xts_apply_prefetch(ledger, events, count, i);
        }
        bool linked = event_flags(operation, events, i) & PC_TRANSFER_linked;
        if (linked && chain == PC__NONE) {
            chain = i;
            pc__chain_begin(ledger);
        }
        uint32_t result;
        if (linked && i == count - 1) {
            result = open;
        } else if (broken) {
            result = failed;
        } else {
            ledger->undo_on = chain != PC__NONE;
            result = event_apply(ledger, operation, events, i, start + i);
            ledger->undo_on = false;
        }
        if (result != 0) {
            if (chain == PC__NONE) {
                event_failed_alone(ledger, operation, events, i, start + i, result);
            } else if (!broken) {
                broken = true;
                pc__chain_rollback(ledger);
                for (uint32_t j = chain; j < i; j++)
                    results[n++] = (pc_create_result_t){j, failed};
            }
            results[n++] = (pc_create_result_t){i, result};
        }
        if (chain != PC__NONE && (!linked || result == open)) {
            chain = PC__NONE;
            broken = false;
        }
    }
    PC_ASSERT(chain == PC__NONE && n <= count);
    return n;
}

bool pc_ledger_handles(pc_operation_t operation) {
    switch (operation) {
    case PC_OP_create_accounts:
    case PC_OP_create_transfers:
    case PC_OP_set_routing:
    case PC_OP_xts_try:
    case PC_OP_xts_resolve:
    case PC_OP_shadow_purge:
        return true;
    default:
        return false;
    }
}

uint32_t pc_ledger_apply(pc_ledger_t *ledger, pc_operation_t operation, uint32_t flags,
                         uint64_t timestamp, const void *events, uint32_t count,
                         pc_create_result_t *results) {
    PC_ASSERT(pc_ledger_handles(operation));
    PC_ASSERT((operation != PC_OP_set_routing && operation != PC_OP_shadow_purge) || count == 1);
    PC_ASSERT((flags & ~(uint32_t)PC_REQUEST_SHADOW) == 0);
    PC_ASSERT(count >= 1 && count <= PC_BATCH_EVENTS_MAX);
    PC_ASSERT(ledger->slots_n + count <= PC__SLOTS_CAP);
    PC_ASSERT(!ledger->rebuilding && !ledger->undo_on);
    PC_ASSERT(ledger->timestamp_last < UINT64_MAX - count);
    uint64_t start = PC_MAX(timestamp, ledger->timestamp_last + 1);
    PC_ASSERT(start <= UINT64_MAX - count);
    uint64_t last = start + count - 1;
    pc__expire_until(ledger, last);
    ledger->timestamp_last = last;
    ledger->shadow = (flags & PC_REQUEST_SHADOW) != 0;
    uint32_t n = batch_run(ledger, operation, events, count, start, results);
    ledger->shadow = false;
    pc__cache_clear(ledger);
    ledger->epoch++;
    return n;
}

/* Idle expiry also moves timestamp_last up to `timestamp`, so no later event
 * can carry a timestamp at which a transfer expired here was still pending. */
uint32_t pc_ledger_expire(pc_ledger_t *ledger, uint64_t timestamp) {
    PC_ASSERT(!ledger->rebuilding && !ledger->undo_on);
    PC_ASSERT(timestamp < UINT64_MAX);
    uint32_t expired = pc__expire_until(ledger, timestamp);
    ledger->timestamp_last = PC_MAX(ledger->timestamp_last, timestamp);
    return expired;
}

uint64_t pc_ledger_next_expiry(const pc_ledger_t *ledger) {
    PC_ASSERT(ledger->heap_count <= ledger->pending_count);
    if (ledger->heap_count == 0) return UINT64_MAX;
    const pc__pending_t *first = &ledger->pool[ledger->heap[0].pool_index];
    PC_ASSERT(first->transfer.timeout != 0 && first->expires_at == ledger->heap[0].expires_at);
    return ledger->heap[0].expires_at;
}

/* ---- slots ---- */

uint32_t pc_ledger_slots(const pc_ledger_t *ledger, const pc_transfer_slot_t **slots,
                         uint64_t *first_loc) {
    PC_ASSERT(slots != NULL && first_loc != NULL);
    PC_ASSERT(ledger->slots_n <= PC__SLOTS_CAP);
    *slots = ledger->slots;
    *first_loc = pc__slots_first_loc(ledger);
    return ledger->slots_n;
}

void pc_ledger_slots_flushed(pc_ledger_t *ledger) {
    PC_ASSERT(!ledger->undo_on);
    PC_ASSERT(ledger->slots_n <= ledger->slots_count);
    ledger->slots_n = 0;
}

/* ---- stats ---- */

void pc_ledger_stats(const pc_ledger_t *ledger, pc_ledger_stats_t *out) {
    PC_ASSERT(out != NULL);
    PC_ASSERT(ledger->pending_count <= ledger->config.pending_max);
    memset(out, 0, sizeof(*out));
    out->accounts_count = ledger->accounts_count;
    out->accounts_max = ledger->config.accounts_max;
    out->transfers_count = ledger->transfers_count;
    out->transfers_max = ledger->config.transfers_max;
    out->pending_count = ledger->pending_count;
    out->pending_max = ledger->config.pending_max;
    out->slots_count = ledger->slots_count;
    out->timestamp_last = ledger->timestamp_last;
}
