/*
 * ledger.h — the deterministic ledger state machine.
 *
 * It owns accounts (in memory, bounded), the transfer id index (in memory,
 * bounded, id -> location of the stored record plus status bits), unresolved
 * pending transfers (in memory, bounded, with an expiry queue), and the
 * per-account history chains. Transfer records themselves live on disk, in
 * the storage layer's transfer store: the ledger emits each new record as a
 * pc_transfer_slot_t and the caller persists it at its location.
 *
 * Determinism: the ledger reads no clock (time arrives with each batch), does
 * no I/O and allocates nothing after pc_ledger_init. Applying the same
 * batches in the same order from the same state always yields the same
 * results, records and state checksum.
 *
 * Applying a create_transfers batch is two phases, as in TigerBeetle:
 *   1. pc_ledger_prefetch() lists the stored records the batch needs (only
 *      transfers whose id already exists: a retry must compare fields);
 *      the caller reads them from storage and hands them over with
 *      pc_ledger_prefetch_put();
 *   2. pc_ledger_apply() runs the batch in memory only.
 * Afterwards the caller persists the new slots (pc_ledger_slots()) and calls
 * pc_ledger_slots_flushed().
 */
#ifndef PC_LEDGER_H
#define PC_LEDGER_H

#include "../base/base.h"

typedef struct pc_ledger pc_ledger_t;

typedef struct pc_ledger_config {
    uint32_t accounts_max;  /* accounts the table holds */
    uint64_t transfers_max; /* transfer ids (incl. failed ones) the index holds */
    uint32_t pending_max;   /* unresolved pending transfers held at once */
} pc_ledger_config_t;

/* A stored transfer: the record, plus the history links, plus a checksum the
 * storage layer fills in. 160 bytes. Locations ("loc") are 0-based slot
 * numbers in the transfer store; a link of 0 means "none", otherwise it is
 * the previous slot's loc + 1.
 *
 * A slot whose transfer.flags has PC_SLOT_FAILED set is a tombstone for a
 * transfer that failed with a transient (state-dependent) result: it keeps
 * the id so a retry answers id_already_failed after recovery, and it is never
 * returned by lookups or history. */
typedef struct pc_transfer_slot {
    pc_transfer_t transfer;
    uint64_t prev_debit;  /* previous slot touching the debit account (+1) */
    uint64_t prev_credit; /* previous slot touching the credit account (+1) */
    pc_u128 checksum;     /* storage-owned: over the slot and its loc */
} pc_transfer_slot_t;

#define PC_SLOT_FAILED 0x8000u

/* Cross-unit transfers (xts.c). A slot with PC_SLOT_XTS is, with
 * PC_SLOT_XTS_PAYEE, a payee's leg (with PC_TRANSFER_pending: the try, the
 * record as the client sent it) or its resolution (post or void,
 * pending_id = id = the gtid, no index entry of its own); without it (and
 * with no other flag) the payer's committed debit, posted at its decision;
 * with PC_SLOT_FAILED, the tombstone of an aborted gtid. A record moves
 * money between this unit's account and its clearing account: without
 * PC_SLOT_XTS_PAYEE the local account is the debit side (payer), with it the
 * credit side (payee). Lookups and history return records with these bits
 * (and a leg's pending bit) cleared: see pc_ledger_transfer_public. */
#define PC_SLOT_XTS 0x4000u
#define PC_SLOT_XTS_PAYEE 0x2000u

/* Allocates every table at its bound, resident at once (MAP_POPULATE).
 * Errors: PC_EINVAL (zero or over-limit config), PC_ENOMEM. */
int pc_ledger_init(const pc_ledger_config_t *config, pc_ledger_t **out);
void pc_ledger_deinit(pc_ledger_t *ledger);

/* ---- apply path ---- */

/* Phase 1. Writes to locs_out (capacity count) the locations of stored
 * records this batch needs and returns how many (distinct, at most one per
 * event; never a loc still in the unflushed slot buffer). For operations
 * other than create_transfers, xts_try and xts_resolve it returns 0. Call it
 * before every apply of those three, even when it lists nothing: it also marks the
 * unresolved pending transfers the batch refers to, so that apply keeps their
 * records when it resolves them (expiry, an earlier post in the batch). It
 * empties the prefetch cache. */
uint32_t pc_ledger_prefetch(pc_ledger_t *ledger, pc_operation_t operation, const void *events,
                            uint32_t count, uint64_t *locs_out);

/* Hands over a stored record read from storage for the next apply. The cache
 * holds PC_BATCH_EVENTS_MAX records and is emptied by each apply. Apply
 * asserts (PC_ASSERT) if it needs a record that was listed but not handed
 * over. */
void pc_ledger_prefetch_put(pc_ledger_t *ledger, uint64_t loc, const pc_transfer_t *transfer);

/* Phase 2. Applies one create_accounts, create_transfers or xts_try
 * (pc_transfer_t events) or xts_resolve (pc_xts_decision_t events) batch
 * (count 1..PC_BATCH_EVENTS_MAX; xts events are never linked: each stands
 * alone), or one set_routing record or shadow_purge event (count 1), at
 * cluster time `timestamp` (ns, from the WAL entry). flags are the
 * request's (PC_REQUEST_SHADOW: every id must be a shadow id, else none may
 * be; see include/paycell.h). First expires every pending transfer whose
 * timeout has passed.
 * Writes a result for each event that was not created, in order, to results
 * (capacity count) and returns how many. Event timestamps are
 * max(timestamp, last + 1) + i. Never fails: every rejection is a result. */
uint32_t pc_ledger_apply(pc_ledger_t *ledger, pc_operation_t operation, uint32_t flags,
                         uint64_t timestamp, const void *events, uint32_t count,
                         pc_create_result_t *results);

/* Expires pending transfers whose timeout passed at `timestamp` without
 * applying a batch (the replica calls this on idle ticks so reserved money is
 * released even when no traffic arrives; it is recorded in the WAL as an
 * empty batch). Returns how many expired. It also raises timestamp_last to
 * `timestamp`, so no later event is stamped at a time when a transfer expired
 * here was still pending. */
uint32_t pc_ledger_expire(pc_ledger_t *ledger, uint64_t timestamp);

/* Cluster time (ns) at which the earliest pending transfer expires, or
 * UINT64_MAX when none has a timeout: the replica writes an idle tick only
 * when something is due. */
uint64_t pc_ledger_next_expiry(const pc_ledger_t *ledger);

/* New slots produced since the last flush, at locs first_loc.. first_loc+n-1.
 * The pointer stays valid until pc_ledger_slots_flushed or the next apply. */
uint32_t pc_ledger_slots(const pc_ledger_t *ledger, const pc_transfer_slot_t **slots,
                         uint64_t *first_loc);
void pc_ledger_slots_flushed(pc_ledger_t *ledger);

/* Whether pc_ledger_apply takes this operation (create_accounts,
 * create_transfers, set_routing, xts_try, xts_resolve, shadow_purge). */
bool pc_ledger_handles(pc_operation_t operation);

/* ---- reads (not on the apply path; may be called between applies) ---- */

/* Turns a stored record into what lookups and history return: the internal
 * xts bits are cleared, so an xts leg reads back as the client sent it. */
void pc_ledger_transfer_public(pc_transfer_t *transfer);

/* get_xts_legs: the undecided payee legs of this unit (flags pending,
 * timestamp = try time, oldest first), at most filter->limit, all with
 * timestamp in [timestamp_min, timestamp_max] (0 = unbounded). Returns the
 * count or PC_EINVAL (account_id not 0, limit not 1..PC_BATCH_EVENTS_MAX,
 * flags not exactly PC_FILTER_XTS_TRYING, reserved bytes, min > max). out
 * holds filter->limit. */
int pc_ledger_xts_legs(const pc_ledger_t *ledger, const pc_account_filter_t *filter,
                       pc_transfer_t *out);

/* get_totals: per-ledger totals of one namespace (shadow or real) with its
 * clearing account and xts counts, sorted by ledger; writes up to cap,
 * returns how many ledgers that namespace has. */
uint32_t pc_ledger_xts_totals(const pc_ledger_t *ledger, bool shadow, pc_totals_t *out,
                              uint32_t cap);

/* For each id, the account if it exists. Writes found accounts to out in id
 * order (capacity count) and returns how many. */
uint32_t pc_ledger_lookup_accounts(const pc_ledger_t *ledger, const pc_u128 *ids, uint32_t count,
                                   pc_account_t *out);

/* Location of a created (not failed, not an xts abort tombstone) transfer,
 * or PC_ENOTFOUND. For an xts gtid: its leg, as tried. Records not
 * yet flushed are returned through *unflushed (else it is set NULL). */
int pc_ledger_transfer_loc(const pc_ledger_t *ledger, pc_u128 id, uint64_t *loc,
                           const pc_transfer_t **unflushed);

/* Reads one stored slot for history walks; returns PC_OK or a pc_err. */
typedef int (*pc_slot_reader_t)(void *ctx, uint64_t loc, pc_transfer_slot_t *out);

/* Transfers of filter->account_id matching the filter, oldest first unless
 * PC_FILTER_REVERSED, at most filter->limit, read through reader.
 * Returns the count (>= 0) or a negative pc_err (PC_EINVAL for a bad filter,
 * or the reader's error). */
int pc_ledger_get_account_transfers(const pc_ledger_t *ledger, const pc_account_filter_t *filter,
                                    pc_slot_reader_t reader, void *reader_ctx, pc_transfer_t *out);

/* A checksum of one namespace's records only: its accounts (in insertion
 * order, balances and timestamps included), its transfers' records and
 * statuses and its pending legs — but no slot positions,
 * which the other namespace's records shift. A real load run alone and the
 * same real load run beside shadow traffic (at the same timestamps) give
 * the same real checksum. Reads the store through `reader` for records no
 * longer in memory; returns PC_OK or the reader's error. */
int pc_ledger_namespace_checksum(const pc_ledger_t *ledger, bool shadow, pc_slot_reader_t reader,
                                 void *ctx, pc_u128 *out);

/* list_accounts: accounts with timestamp in [timestamp_min, timestamp_max]
 * (0 = unbounded), oldest first, at most filter->limit; returns the count or
 * PC_EINVAL (account_id or flags not 0, limit not 1..PC_BATCH_EVENTS_MAX,
 * reserved bytes, min > max). out holds filter->limit. */
int pc_ledger_list_accounts(const pc_ledger_t *ledger, const pc_account_filter_t *filter,
                            pc_account_t *out);

/* Counts of one namespace's accounts and transfers (test and audit aid). */
void pc_ledger_namespace_counts(const pc_ledger_t *ledger, bool shadow, uint64_t *accounts,
                                uint64_t *transfers);

/* ---- checkpoint and recovery ---- */

/* Bytes pc_ledger_snapshot_write will write for the current state. */
size_t pc_ledger_snapshot_size(const pc_ledger_t *ledger);
/* Serializes routing, accounts, pending transfers and counters (not the
 * transfer index, which pc_ledger_rebuild_slot derives from the store).
 * Requires no unflushed slots. Returns bytes written. */
size_t pc_ledger_snapshot_write(const pc_ledger_t *ledger, void *buf, size_t size);
/* Loads a snapshot into an empty ledger. Errors: PC_ECORRUPT, PC_EFULL
 * (snapshot larger than this ledger's config). After an error the ledger is
 * partly loaded: deinit it. */
int pc_ledger_snapshot_read(pc_ledger_t *ledger, const void *buf, size_t size);
/* Number of stored slots the snapshot covers (the store is truncated to it). */
uint64_t pc_ledger_slots_count(const pc_ledger_t *ledger);
/* After snapshot_read, feed every stored slot 0..slots_count-1 in order to
 * rebuild the id index, pending statuses and history heads; then call
 * rebuild_finish. Errors: PC_ECORRUPT (slot inconsistent with the snapshot),
 * PC_EFULL. */
int pc_ledger_rebuild_slot(pc_ledger_t *ledger, uint64_t loc, const pc_transfer_slot_t *slot);
int pc_ledger_rebuild_finish(pc_ledger_t *ledger);

/* ---- routing ---- */

/* The unit's routing state: epoch and owned-bucket bitmap (reserved bytes
 * zero). A fresh ledger owns all PC_BUCKETS buckets at epoch 0. Accounts of
 * unowned buckets are refused (wrong_unit) and never exist here, so a lookup
 * of one finds nothing. */
void pc_ledger_routing(const pc_ledger_t *ledger, pc_routing_t *out);
uint64_t pc_ledger_routing_epoch(const pc_ledger_t *ledger);
/* Accounts held in one bucket (bucket < PC_BUCKETS). */
uint32_t pc_ledger_bucket_accounts(const pc_ledger_t *ledger, uint32_t bucket);

/* ---- invariants and inspection ---- */

/* A checksum over all state (accounts, pending set, id index contents,
 * counters, routing) that is equal on two ledgers exactly when they hold
 * the same state. O(state); for tests, the simulator and audits. */
pc_u128 pc_ledger_state_checksum(const pc_ledger_t *ledger);

/* Per-ledger sums over all accounts. */
typedef struct pc_ledger_totals {
    uint32_t ledger;
    pc_u128 debits_pending, debits_posted, credits_pending, credits_posted;
} pc_ledger_totals_t;
/* Writes up to cap per-ledger totals (sorted by ledger id), returns how many
 * ledgers exist (may exceed cap). */
uint32_t pc_ledger_totals(const pc_ledger_t *ledger, pc_ledger_totals_t *out, uint32_t cap);

typedef struct pc_ledger_stats {
    uint32_t accounts_count, accounts_max;
    uint64_t transfers_count; /* ids in the index, including failed */
    uint64_t transfers_max;
    uint32_t pending_count, pending_max;
    uint64_t slots_count;
    uint64_t timestamp_last;
} pc_ledger_stats_t;
void pc_ledger_stats(const pc_ledger_t *ledger, pc_ledger_stats_t *out);

#endif /* PC_LEDGER_H */
