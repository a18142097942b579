/*
 * snapshot.c — checkpoint and recovery of the ledger.
 *
 * A snapshot holds what cannot be derived from the stored slots: accounts
 * (balances included), the unresolved pending transfers with their expiry
 * times, and the counters. The transfer id index, the statuses of resolved
 * pending transfers and the history heads are rebuilt by replaying every
 * stored slot in loc order; replay also cross-checks the slots against the
 * snapshot (history links must equal the heads, each snapshot pending must
 * meet its own slot), so a store that does not belong to the snapshot is
 * reported as corruption rather than loaded.
 *
 * Layout: an 80-byte header (magic, version, counts, timestamp_last,
 * slots_count, transfers_count, body size, checksum over header and body),
 * then (version 2) a 32-byte routing block (epoch, owned-bucket bitmap),
 * then accounts_count accounts, then pending_count pending entries. A
 * version 1 snapshot, written before routing existed, loads as owning every
 * bucket at epoch 0. The per-bucket account counts are not stored: loading
 * the accounts recounts them.
 *
 * Version 3 adds cross-unit transfers. Resolution slots of xts legs have
 * no id of their own, so slots_count may exceed transfers_count. The
 * header's `reserved` word holds xts_reserves_purged (version 3 before
 * payee-first XTS: the count of a payer outbox that followed the pending
 * entries; such a snapshot, or one with a payer's pending leg, was written
 * by an older paycell and is refused). Versions 1 and 2 still load (no xts
 * slots).
 *
 * Version 4 adds the shadow namespace: the header's `reserved_2` word holds
 * shadow_purged_before, the slot count at the last shadow_purge. The store
 * is append-only, so purged shadow slots stay in it; rebuild skips every
 * shadow slot below that mark (a shadow id reused after the purge has its
 * slots above it). Older versions load with the mark at 0.
 */
#include "ledger_int.h"

#include <string.h>

#define SNAPSHOT_MAGIC 0x31524744454c4350ull /* "PCLEDGR1" */
#define SNAPSHOT_VERSION 4u
#define SNAPSHOT_VERSION_NO_SHADOW 3u
#define SNAPSHOT_VERSION_NO_XTS 2u
#define SNAPSHOT_VERSION_NO_ROUTING 1u

typedef struct snapshot_header {
    uint64_t magic;
    uint32_t version;
    uint32_t accounts_count;
    uint32_t pending_count;
    uint32_t reserved; /* xts_reserves_purged (an older version 3: the outbox count) */
    uint64_t timestamp_last;
    uint64_t slots_count;
    uint64_t transfers_count;
    uint64_t body_size;
    uint64_t reserved_2; /* version 4: shadow_purged_before; before: zero */
    pc_u128 checksum; /* over the header with this field zero, then the body */
} snapshot_header_t;

typedef struct snapshot_pending {
    pc_transfer_t transfer;
    uint64_t loc;
    uint64_t expires_at;
} snapshot_pending_t;

typedef struct snapshot_routing {
    uint64_t epoch;
    uint64_t owned[2];
    uint64_t reserved;
} snapshot_routing_t;

PC_STATIC_ASSERT(sizeof(snapshot_header_t) == 80, "snapshot header layout");
PC_STATIC_ASSERT(sizeof(snapshot_pending_t) == 144, "snapshot pending layout");
PC_STATIC_ASSERT(sizeof(snapshot_routing_t) == 32, "snapshot routing layout");

static uint64_t routing_size(uint32_t version) {
    PC_ASSERT(version >= SNAPSHOT_VERSION_NO_ROUTING && version <= SNAPSHOT_VERSION);
    return version == SNAPSHOT_VERSION_NO_ROUTING ? 0 : sizeof(snapshot_routing_t);
}

static uint64_t body_size(uint32_t version, uint64_t accounts, uint64_t pending) {
    return routing_size(version) + accounts * sizeof(pc_account_t) +
           pending * sizeof(snapshot_pending_t);
}

size_t pc_ledger_snapshot_size(const pc_ledger_t *ledger) {
    PC_ASSERT(ledger->accounts_count <= ledger->config.accounts_max);
    PC_ASSERT(ledger->pending_count <= ledger->config.pending_max);
    return sizeof(snapshot_header_t) +
           body_size(SNAPSHOT_VERSION, ledger->accounts_count, ledger->pending_count);
}

static pc_u128 snapshot_checksum(const snapshot_header_t *header, const uint8_t *body) {
    snapshot_header_t h = *header;
    h.checksum = 0;
    pc_u128 seed = pc_checksum(&h, sizeof(h), 21);
    return pc_checksum(body, header->body_size, (uint64_t)seed);
}

size_t pc_ledger_snapshot_write(const pc_ledger_t *ledger, void *buf, size_t size) {
    PC_ASSERT(ledger->slots_n == 0 && !ledger->rebuilding);
    PC_ASSERT(buf != NULL && size >= pc_ledger_snapshot_size(ledger));
    snapshot_header_t header = {
        .magic = SNAPSHOT_MAGIC,
        .version = SNAPSHOT_VERSION,
        .accounts_count = ledger->accounts_count,
        .pending_count = ledger->pending_count,
        .reserved = ledger->xts_reserves_purged,
        .timestamp_last = ledger->timestamp_last,
        .slots_count = ledger->slots_count,
        .transfers_count = ledger->transfers_count,
        .reserved_2 = ledger->shadow_purged_before,
        .body_size = body_size(SNAPSHOT_VERSION, ledger->accounts_count, ledger->pending_count),
    };
    uint8_t *body = (uint8_t *)buf + sizeof(header);
    snapshot_routing_t routing = {
        .epoch = ledger->routing_epoch,
        .owned = {ledger->routing_owned[0], ledger->routing_owned[1]},
    };
    memcpy(body, &routing, sizeof(routing));
    uint8_t *accounts = body + sizeof(routing);
    memcpy(accounts, ledger->accounts, ledger->accounts_count * sizeof(pc_account_t));
    snapshot_pending_t *out =
        (snapshot_pending_t *)(accounts + ledger->accounts_count * sizeof(pc_account_t));
    uint32_t n = 0;
    for (uint32_t i = 0; i < ledger->pool_used; i++) {
        const pc__pending_t *p = &ledger->pool[i];
        if (p->transfer.id == 0) continue;
        snapshot_pending_t e;
        memset(&e, 0, sizeof(e));
        e.transfer = p->transfer;
        e.loc = pc__ls_loc(ledger->loc_status[p->index_pos]);
        e.expires_at = p->expires_at;
        memcpy(&out[n++], &e, sizeof(e));
    }
    PC_ASSERT(n == ledger->pending_count);
    header.checksum = snapshot_checksum(&header, body);
    memcpy(buf, &header, sizeof(header));
    return sizeof(header) + header.body_size;
}

static int accounts_load(pc_ledger_t *ledger, const pc_account_t *accounts, uint32_t count) {
    PC_ASSERT(ledger->accounts_count == 0);
    PC_ASSERT(count <= ledger->config.accounts_max);
    for (uint32_t i = 0; i < count; i++) {
        pc_account_t a;
        memcpy(&a, &accounts[i], sizeof(a));
        pc_u128 sum;
        if (a.id == 0 || a.id == PC_U128_MAX || a.timestamp == 0 || a.ledger == 0) {
            return PC_CORRUPT("snapshot account invalid");
        }
        if (pc_account_id_is_reserved(a.id) && a.id != pc__clearing_id(a.ledger, a.id)) {
            return PC_CORRUPT("snapshot account id reserved");
        }
        if (pc_u128_add_overflows(a.debits_pending, a.debits_posted, &sum) ||
            pc_u128_add_overflows(a.credits_pending, a.credits_posted, &sum)) {
            return PC_CORRUPT("snapshot account balance overflows");
        }
        uint64_t pos = 0;
        if (pc__account_find(ledger, a.id, &pos) != PC__NONE) {
            return PC_CORRUPT("snapshot account duplicated");
        }
        pc__account_insert(ledger, pos, &a);
    }
    return PC_OK;
}

/* Version 1 predates routing: such a unit owned every bucket at epoch 0,
 * which is what a fresh ledger holds already. */
static int routing_load(pc_ledger_t *ledger, uint32_t version, const uint8_t *body) {
    PC_ASSERT(ledger->accounts_count == 0);
    PC_ASSERT(ledger->routing_epoch == 0 && ledger->routing_all);
    if (version == SNAPSHOT_VERSION_NO_ROUTING) return PC_OK;
    snapshot_routing_t routing;
    memcpy(&routing, body, sizeof(routing));
    if (routing.reserved != 0 || (routing.owned[1] & ~PC__ROUTING_HIGH_MASK) != 0) {
        return PC_CORRUPT("snapshot routing reserved bits");
    }
    pc__routing_install(ledger, routing.epoch, routing.owned);
    return PC_OK;
}

/* Every account lives in a bucket the unit owns (set_routing refuses to give
 * up a bucket that holds accounts, and creates refuse unowned buckets). */
static int routing_check_accounts(const pc_ledger_t *ledger) {
    PC_ASSERT(!ledger->rebuilding);
    uint64_t total = 0;
    for (uint32_t bucket = 0; bucket < PC_BUCKETS; bucket++) {
        total += ledger->bucket_accounts[bucket];
        if (ledger->bucket_accounts[bucket] != 0 &&
            !pc__routing_has(ledger->routing_owned, bucket)) {
            return PC_CORRUPT("snapshot account in a bucket the unit does not own");
        }
    }
    PC_ASSERT(total + ledger->clearing_accounts == ledger->accounts_count);
    return PC_OK;
}

static int pending_load_one(pc_ledger_t *ledger, const snapshot_pending_t *e, uint64_t slots) {
    const pc_transfer_t *t = &e->transfer;
    PC_ASSERT(ledger->pending_count < ledger->config.pending_max);
    const uint32_t known = PC_TRANSFER_FLAGS_KNOWN | PC_SLOT_XTS | PC_SLOT_XTS_PAYEE;
    /* A payee's leg, or no xts bit: a payer holds no pending leg. */
    bool xts_odd = (bool)(t->flags & PC_SLOT_XTS_PAYEE) != pc__is_xts(t);
    if (t->id == 0 || t->id == PC_U128_MAX || !(t->flags & PC_TRANSFER_pending) ||
        (t->flags & ~known) || xts_odd || t->timestamp == 0 || e->loc >= slots) {
        return PC_CORRUPT("snapshot pending invalid");
    }
    pc_u128 dr, cr;
    pc__slot_accounts(t, &dr, &cr);
    if (t->timeout != 0 && (t->timestamp > UINT64_MAX - (uint64_t)t->timeout * PC__NS_PER_S ||
                            e->expires_at != t->timestamp + (uint64_t)t->timeout * PC__NS_PER_S)) {
        return PC_CORRUPT("snapshot pending expiry inconsistent");
    }
    if (pc__account_find(ledger, dr, NULL) == PC__NONE ||
        pc__account_find(ledger, cr, NULL) == PC__NONE) {
        return PC_CORRUPT("snapshot pending account missing");
    }
    uint64_t pos = pc__index_find(ledger, t->id);
    if (pc__index_has(ledger, pos, t->id)) return PC_CORRUPT("snapshot pending duplicated");
    uint32_t index = pc__pending_add(ledger, t, pos);
    PC_ASSERT(ledger->pool[index].expires_at == e->expires_at || t->timeout == 0);
    pc__index_insert(ledger, pos, t->id, pc__ls_make(e->loc, index, PC__ST_PENDING));
    return PC_OK;
}

static int header_check(const pc_ledger_t *ledger, const snapshot_header_t *h, size_t size) {
    PC_ASSERT(size >= sizeof(*h));
    if (h->magic != SNAPSHOT_MAGIC) return PC_CORRUPT("snapshot magic");
    if (h->version < SNAPSHOT_VERSION_NO_ROUTING || h->version > SNAPSHOT_VERSION) {
        return PC_CORRUPT("snapshot version");
    }
    bool xts = h->version >= SNAPSHOT_VERSION_NO_SHADOW;
    bool shadow = h->version == SNAPSHOT_VERSION;
    if ((!xts && h->reserved != 0) || (!shadow && h->reserved_2 != 0)) {
        return PC_CORRUPT("snapshot reserved");
    }
    if (h->body_size != body_size(h->version, h->accounts_count, h->pending_count) ||
        h->body_size != size - sizeof(*h)) {
        return PC_CORRUPT("snapshot size");
    }
    if (h->pending_count > h->transfers_count || h->transfers_count > h->slots_count ||
        h->reserved_2 > h->slots_count || h->reserved > h->slots_count ||
        (!xts && h->transfers_count != h->slots_count)) {
        return PC_CORRUPT("snapshot counters");
    }
    const pc_ledger_config_t *c = &ledger->config;
    if (h->accounts_count > c->accounts_max || h->pending_count > c->pending_max ||
        h->slots_count > c->transfers_max) {
        return PC_EFULL;
    }
    return PC_OK;
}

int pc_ledger_snapshot_read(pc_ledger_t *ledger, const void *buf, size_t size) {
    PC_ASSERT(ledger->accounts_count == 0 && ledger->transfers_count == 0);
    PC_ASSERT(ledger->slots_count == 0 && ledger->pending_count == 0 && !ledger->rebuilding);
    snapshot_header_t h;
    if (buf == NULL || size < sizeof(h)) return PC_CORRUPT("snapshot truncated");
    memcpy(&h, buf, sizeof(h));
    int rc = header_check(ledger, &h, size);
    if (rc != PC_OK) return rc;
    const uint8_t *body = (const uint8_t *)buf + sizeof(h);
    if (snapshot_checksum(&h, body) != h.checksum) return PC_CORRUPT("snapshot checksum");

    rc = routing_load(ledger, h.version, body);
    const uint8_t *accounts = body + routing_size(h.version);
    if (rc == PC_OK) rc = accounts_load(ledger, (const pc_account_t *)accounts, h.accounts_count);
    if (rc == PC_OK) rc = routing_check_accounts(ledger);
    const uint8_t *pending = accounts + (size_t)h.accounts_count * sizeof(pc_account_t);
    for (uint32_t i = 0; rc == PC_OK && i < h.pending_count; i++) {
        snapshot_pending_t e;
        memcpy(&e, pending + (size_t)i * sizeof(e), sizeof(e));
        rc = pending_load_one(ledger, &e, h.slots_count);
    }
    if (rc != PC_OK) return rc;
    ledger->timestamp_last = h.timestamp_last;
    ledger->slots_count = h.slots_count;
    ledger->shadow_purged_before = h.reserved_2;
    ledger->xts_reserves_purged = h.reserved;
    ledger->rebuilding = true;
    ledger->rebuild_next = 0;
    ledger->rebuild_timestamp = 0;
    ledger->rebuild_pending_matched = 0;
    ledger->rebuild_transfers_count = h.transfers_count;
    return PC_OK;
}

uint64_t pc_ledger_slots_count(const pc_ledger_t *ledger) {
    PC_ASSERT(ledger->slots_n <= ledger->slots_count);
    PC_ASSERT(ledger->slots_count <= ledger->config.transfers_max);
    return ledger->slots_count;
}

/* ---- rebuild ---- */

/* A pending slot either meets its snapshot entry (still unresolved) or was
 * resolved before the snapshot: it is entered as EXPIRED, and a later post or
 * void slot turns that into POSTED or VOIDED. */
static int rebuild_pending(pc_ledger_t *ledger, uint64_t loc, const pc_transfer_t *t,
                           uint64_t pos) {
    PC_ASSERT(t->flags & PC_TRANSFER_pending);
    if (!pc__index_has(ledger, pos, t->id)) {
        pc__index_insert(ledger, pos, t->id, pc__ls_make(loc, 0, PC__ST_EXPIRED));
        return PC_OK;
    }
    uint64_t ls = ledger->loc_status[pos];
    if (pc__ls_status(ls) != PC__ST_PENDING || pc__ls_loc(ls) != loc) {
        return PC_CORRUPT("rebuild: transfer id duplicated");
    }
    const pc_transfer_t *p = &ledger->pool[pc__ls_pool(ls)].transfer;
    if (memcmp(p, t, sizeof(*t)) != 0) return PC_CORRUPT("rebuild: pending differs from slot");
    ledger->rebuild_pending_matched++;
    PC_ASSERT(ledger->rebuild_pending_matched <= ledger->pending_count);
    return PC_OK;
}

static int rebuild_resolve(pc_ledger_t *ledger, const pc_transfer_t *t) {
    PC_ASSERT(t->flags & (PC_TRANSFER_post_pending_transfer | PC_TRANSFER_void_pending_transfer));
    PC_ASSERT(!ledger->undo_on);
    uint64_t pos = pc__index_find(ledger, t->pending_id);
    if (!pc__index_has(ledger, pos, t->pending_id) ||
        pc__ls_status(ledger->loc_status[pos]) != PC__ST_EXPIRED) {
        return PC_CORRUPT("rebuild: post or void of no resolved pending");
    }
    uint32_t status =
        (t->flags & PC_TRANSFER_post_pending_transfer) ? PC__ST_POSTED : PC__ST_VOIDED;
    pc__index_set(ledger, pos, pc__ls_make(pc__ls_loc(ledger->loc_status[pos]), 0, status));
    return PC_OK;
}

/* The resolution of an xts leg: no id of its own (id = pending_id = gtid);
 * it turns the leg's status into POSTED or VOIDED. */
static bool xts_resolution(const pc_transfer_t *t) {
    const uint16_t post_void =
        PC_TRANSFER_post_pending_transfer | PC_TRANSFER_void_pending_transfer;
    return pc__is_xts(t) && (t->flags & post_void) != 0 && !(t->flags & PC_TRANSFER_pending);
}

static int rebuild_not_pending(pc_ledger_t *ledger, uint64_t loc, const pc_transfer_t *t,
                               uint64_t pos) {
    PC_ASSERT(!(t->flags & PC_TRANSFER_pending));
    if (xts_resolution(t)) {
        if (t->pending_id != t->id) return PC_CORRUPT("rebuild: xts resolution of another id");
        return rebuild_resolve(ledger, t);
    }
    if (pc__index_has(ledger, pos, t->id)) return PC_CORRUPT("rebuild: id duplicated");
    if (pc__is_xts(t)) {
        /* The payer's committed debit: posted when it was decided. */
        if (t->flags != PC_SLOT_XTS) return PC_CORRUPT("rebuild: xts slot of no known kind");
        pc__index_insert(ledger, pos, t->id, pc__ls_make(loc, 0, PC__ST_POSTED));
        return PC_OK;
    }
    int rc = PC_OK;
    if (t->flags & (PC_TRANSFER_post_pending_transfer | PC_TRANSFER_void_pending_transfer)) {
        rc = rebuild_resolve(ledger, t);
    }
    if (rc == PC_OK) pc__index_insert(ledger, pos, t->id, pc__ls_make(loc, 0, PC__ST_CREATED));
    return rc;
}

static int rebuild_created(pc_ledger_t *ledger, uint64_t loc, const pc_transfer_slot_t *slot,
                           uint64_t pos) {
    const pc_transfer_t *t = &slot->transfer;
    pc_u128 dr_id, cr_id;
    pc__slot_accounts(t, &dr_id, &cr_id);
    uint32_t dr = pc__account_find(ledger, dr_id, NULL);
    uint32_t cr = pc__account_find(ledger, cr_id, NULL);
    if (dr == PC__NONE || cr == PC__NONE || dr == cr) {
        return PC_CORRUPT("rebuild: slot accounts unknown");
    }
    if (slot->prev_debit != ledger->heads[dr] || slot->prev_credit != ledger->heads[cr]) {
        return PC_CORRUPT("rebuild: history link differs from head");
    }
    int rc;
    if (t->flags & PC_TRANSFER_pending) rc = rebuild_pending(ledger, loc, t, pos);
    else rc = rebuild_not_pending(ledger, loc, t, pos);
    if (rc != PC_OK) return rc;
    ledger->heads[dr] = loc + 1;
    ledger->heads[cr] = loc + 1;
    return PC_OK;
}

int pc_ledger_rebuild_slot(pc_ledger_t *ledger, uint64_t loc, const pc_transfer_slot_t *slot) {
    PC_ASSERT(ledger->rebuilding && slot != NULL);
    PC_ASSERT(loc == ledger->rebuild_next);
    const pc_transfer_t *t = &slot->transfer;
    if (loc >= ledger->slots_count) return PC_CORRUPT("rebuild: slot past the snapshot");
    if (t->id == 0 || t->id == PC_U128_MAX || t->timestamp <= ledger->rebuild_timestamp ||
        t->timestamp > ledger->timestamp_last) {
        return PC_CORRUPT("rebuild: slot id or timestamp invalid");
    }
    if (pc_id_is_shadow(t->id) && loc < ledger->shadow_purged_before) {
        ledger->rebuild_timestamp = t->timestamp; /* purged: nothing of it is state */
        ledger->rebuild_next++;
        return PC_OK;
    }
    uint64_t pos = pc__index_find(ledger, t->id);
    bool known = ((t->flags & PC_TRANSFER_pending) || xts_resolution(t)) &&
                 pc__index_has(ledger, pos, t->id);
    if (!known && ledger->transfers_count == ledger->config.transfers_max) return PC_EFULL;
    int rc;
    if (t->flags & PC_SLOT_FAILED) {
        if (pc__index_has(ledger, pos, t->id)) return PC_CORRUPT("rebuild: id duplicated");
        if (slot->prev_debit != 0 || slot->prev_credit != 0) {
            return PC_CORRUPT("rebuild: tombstone linked into history");
        }
        /* With PC_SLOT_XTS: the tombstone of an empty rollback. */
        uint32_t status = pc__is_xts(t) ? PC__ST_XTS_ABORTED : PC__ST_FAILED;
        pc__index_insert(ledger, pos, t->id, pc__ls_make(loc, 0, status));
        rc = PC_OK;
    } else {
        rc = rebuild_created(ledger, loc, slot, pos);
    }
    if (rc != PC_OK) return rc;
    ledger->rebuild_timestamp = t->timestamp;
    ledger->rebuild_next++;
    return PC_OK;
}

int pc_ledger_rebuild_finish(pc_ledger_t *ledger) {
    PC_ASSERT(ledger->rebuilding);
    PC_ASSERT(ledger->slots_n == 0);
    if (ledger->rebuild_next != ledger->slots_count) return PC_CORRUPT("rebuild: slots missing");
    if (ledger->rebuild_pending_matched != ledger->pending_count) {
        return PC_CORRUPT("rebuild: pending transfer without its slot");
    }
    if (ledger->transfers_count != ledger->rebuild_transfers_count) {
        return PC_CORRUPT("rebuild: transfer count differs from the snapshot");
    }
    ledger->rebuilding = false;
    return PC_OK;
}
