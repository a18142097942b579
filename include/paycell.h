/*
 * paycell.h — the public interface of paycell: the wire records (accounts,
 * transfers, filters, results), their flags and result codes, the error
 * table, and libpaycell, the C client.
 *
 * Every record here is a fixed-size little-endian struct that travels on the
 * wire and lives on disk exactly as laid out below; the static asserts in
 * src/base/base.h pin the sizes and offsets. Ids and amounts are unsigned
 * 128-bit integers.
 */
#ifndef PAYCELL_H
#define PAYCELL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef unsigned __int128 pc_u128;

#define PC_U128_MAX (~(pc_u128)0)

/* ------------------------------------------------------------------------
 * Errors: 0 is OK, negative is an error. One table, used by every layer.
 * A business rejection (insufficient funds, unknown account) is not an error
 * but a per-event result code (see the result tables below).
 * ---------------------------------------------------------------------- */
#define PC_ERR_TABLE(X)                                                              \
    X(PC_OK, 0, "ok")                                                                \
    X(PC_EINVAL, -1, "invalid argument")                                             \
    X(PC_ENOMEM, -2, "out of memory")                                                \
    X(PC_EIO, -3, "input/output error")                                              \
    X(PC_ECORRUPT, -4, "data file is corrupt")                                       \
    X(PC_ENOSPC, -5, "no space left on device")                                      \
    X(PC_EBUSY, -6, "busy: a bounded queue or pool is full, retry later")            \
    X(PC_ETIMEDOUT, -7, "timed out")                                                 \
    X(PC_ECONNREFUSED, -8, "connection refused")                                     \
    X(PC_ECLOSED, -9, "connection closed")                                           \
    X(PC_EPROTO, -10, "malformed message")                                           \
    X(PC_ETOOBIG, -11, "message too large")                                          \
    X(PC_ECHECKSUM, -12, "checksum mismatch")                                        \
    X(PC_EVERSION, -13, "unsupported protocol or data file version")                 \
    X(PC_EOPERATION, -14, "unknown operation")                                       \
    X(PC_ESESSION_EVICTED, -15, "client session evicted: too many clients")          \
    X(PC_ESESSION_UNKNOWN, -16, "client session unknown to the server")              \
    X(PC_EREQUEST_STALE, -17, "request number older than the session's last")        \
    X(PC_ENOTFOUND, -18, "not found")                                                \
    X(PC_EEXIST, -19, "already exists")                                              \
    X(PC_EFULL, -20, "capacity reached (see limits)")                                \
    X(PC_ECLUSTER, -21, "message belongs to another cluster")                        \
    X(PC_EADDRESS, -22, "bad address: expected HOST:PORT")                           \
    X(PC_ESTATE, -23, "object is in a failed state after an earlier I/O error")      \
    X(PC_ENOTREADY, -24, "server not ready")                                         \
    X(PC_ENOT_PRIMARY, -25, "not the primary replica: retry at the primary")         \
    X(PC_ETHROTTLED, -26, "throttled: over a flow-control limit, retry after the hint") \
    X(PC_EAUTH, -27, "authentication failed: no key, or an unknown or revoked key")   \
    X(PC_EFORBIDDEN, -28, "forbidden: the key's role does not allow this")            \
    X(PC_ETLS, -29, "TLS failed: a certificate not trusted, or refused by the peer") \
    X(PC_EMAC, -30, "cluster authentication failed: no or a bad cluster-key MAC")

typedef enum pc_err {
#define PC__ERR_ENUM(name, value, text) name = (value),
    PC_ERR_TABLE(PC__ERR_ENUM)
#undef PC__ERR_ENUM
} pc_err_t;

/* The symbolic name ("PC_ENOSPC") and the message ("no space left on device")
 * of an error code; unknown codes give "PC_E?" and "unknown error". */
const char *pc_err_name(int err);
const char *pc_strerror(int err);

/* ------------------------------------------------------------------------
 * Records
 * ---------------------------------------------------------------------- */

/* An account: 128 bytes. Balances are never written by clients: create
 * requires them zero. */
typedef struct pc_account {
    pc_u128 id;
    pc_u128 debits_pending;
    pc_u128 debits_posted;
    pc_u128 credits_pending;
    pc_u128 credits_posted;
    pc_u128 user_data_128;
    uint64_t user_data_64;
    uint32_t user_data_32;
    uint32_t reserved; /* must be zero */
    uint32_t ledger;
    uint16_t code;
    uint16_t flags;     /* pc_account_flags */
    uint64_t timestamp; /* set by the cluster; must be zero on create */
} pc_account_t;

#define PC_ACCOUNT_FLAGS_TABLE(X)                                                    \
    X(linked, 1u << 0)                                                               \
    X(debits_must_not_exceed_credits, 1u << 1)                                       \
    X(credits_must_not_exceed_debits, 1u << 2)

enum pc_account_flags {
#define PC__FLAG_ENUM(name, bit) PC_ACCOUNT_##name = (bit),
    PC_ACCOUNT_FLAGS_TABLE(PC__FLAG_ENUM)
#undef PC__FLAG_ENUM
};
#define PC_ACCOUNT_FLAGS_KNOWN 0x0007u

/* A transfer: 128 bytes. */
typedef struct pc_transfer {
    pc_u128 id;
    pc_u128 debit_account_id;
    pc_u128 credit_account_id;
    pc_u128 amount;
    pc_u128 pending_id; /* for post/void: the pending transfer's id */
    pc_u128 user_data_128;
    uint64_t user_data_64;
    uint32_t user_data_32;
    uint32_t timeout; /* seconds; pending transfers only; 0 = never expires */
    uint32_t ledger;
    uint16_t code;
    uint16_t flags;     /* pc_transfer_flags */
    uint64_t timestamp; /* set by the cluster; must be zero on create */
} pc_transfer_t;

#define PC_TRANSFER_FLAGS_TABLE(X)                                                   \
    X(linked, 1u << 0)                                                               \
    X(pending, 1u << 1)                                                              \
    X(post_pending_transfer, 1u << 2)                                                \
    X(void_pending_transfer, 1u << 3)                                                \
    X(balancing_debit, 1u << 4)                                                      \
    X(balancing_credit, 1u << 5)

enum pc_transfer_flags {
#define PC__FLAG_ENUM(name, bit) PC_TRANSFER_##name = (bit),
    PC_TRANSFER_FLAGS_TABLE(PC__FLAG_ENUM)
#undef PC__FLAG_ENUM
};
#define PC_TRANSFER_FLAGS_KNOWN 0x003fu

/* Query for get_account_transfers: 64 bytes. */
typedef struct pc_account_filter {
    pc_u128 account_id;
    uint64_t timestamp_min; /* inclusive; 0 = no lower bound */
    uint64_t timestamp_max; /* inclusive; 0 = no upper bound */
    uint32_t limit;         /* 1..PC_BATCH_EVENTS_MAX */
    uint32_t flags;         /* pc_account_filter_flags */
    uint8_t reserved[24];   /* must be zero */
} pc_account_filter_t;

enum pc_account_filter_flags {
    PC_FILTER_DEBITS = 1u << 0,   /* transfers where the account is debited */
    PC_FILTER_CREDITS = 1u << 1,  /* transfers where the account is credited */
    PC_FILTER_REVERSED = 1u << 2, /* newest first (default: oldest first) */
};

/* One result of a create operation: only events that were not `created` get
 * one, in event order (TigerBeetle's convention: an all-success batch has an
 * empty reply). 8 bytes. */
typedef struct pc_create_result {
    uint32_t index;  /* event index within the request */
    uint32_t result; /* pc_create_account_result or pc_create_transfer_result */
} pc_create_result_t;

/* Result codes of create_accounts. `created` is 0 and never sent. */
#define PC_CREATE_ACCOUNT_RESULT_TABLE(X)                                            \
    X(created, 0)                                                                    \
    X(linked_event_failed, 1)                                                        \
    X(linked_event_chain_open, 2)                                                    \
    X(timestamp_must_be_zero, 3)                                                     \
    X(reserved_field, 4)                                                             \
    X(reserved_flag, 5)                                                              \
    X(id_must_not_be_zero, 6)                                                        \
    X(id_must_not_be_int_max, 7)                                                     \
    X(flags_are_mutually_exclusive, 8)                                               \
    X(debits_pending_must_be_zero, 9)                                                \
    X(debits_posted_must_be_zero, 10)                                                \
    X(credits_pending_must_be_zero, 11)                                              \
    X(credits_posted_must_be_zero, 12)                                               \
    X(ledger_must_not_be_zero, 13)                                                   \
    X(code_must_not_be_zero, 14)                                                     \
    X(exists_with_different_flags, 15)                                               \
    X(exists_with_different_user_data_128, 16)                                       \
    X(exists_with_different_user_data_64, 17)                                        \
    X(exists_with_different_user_data_32, 18)                                        \
    X(exists_with_different_ledger, 19)                                              \
    X(exists_with_different_code, 20)                                                \
    X(exists, 21)                                                                    \
    X(accounts_full, 22)                                                             \
    X(wrong_unit, 23)                                                                \
    X(id_reserved, 24)                                                               \
    X(linked_chain_spans_units, 25)                                                  \
    X(shadow_mismatch, 26)

enum pc_create_account_result {
#define PC__RESULT_ENUM(name, value) PC_ACCOUNT_RESULT_##name = (value),
    PC_CREATE_ACCOUNT_RESULT_TABLE(PC__RESULT_ENUM)
#undef PC__RESULT_ENUM
};

/* Result codes of create_transfers. */
#define PC_CREATE_TRANSFER_RESULT_TABLE(X)                                           \
    X(created, 0)                                                                    \
    X(linked_event_failed, 1)                                                        \
    X(linked_event_chain_open, 2)                                                    \
    X(timestamp_must_be_zero, 3)                                                     \
    X(reserved_flag, 4)                                                              \
    X(id_must_not_be_zero, 5)                                                        \
    X(id_must_not_be_int_max, 6)                                                     \
    X(flags_are_mutually_exclusive, 7)                                               \
    X(debit_account_id_must_not_be_zero, 8)                                          \
    X(debit_account_id_must_not_be_int_max, 9)                                       \
    X(credit_account_id_must_not_be_zero, 10)                                        \
    X(credit_account_id_must_not_be_int_max, 11)                                     \
    X(accounts_must_be_different, 12)                                                \
    X(pending_id_must_be_zero, 13)                                                   \
    X(pending_id_must_not_be_zero, 14)                                               \
    X(pending_id_must_not_be_int_max, 15)                                            \
    X(pending_id_must_be_different, 16)                                              \
    X(timeout_reserved_for_pending_transfer, 17)                                     \
    X(amount_must_not_be_zero, 18)                                                   \
    X(ledger_must_not_be_zero, 19)                                                   \
    X(code_must_not_be_zero, 20)                                                     \
    X(debit_account_not_found, 21)                                                   \
    X(credit_account_not_found, 22)                                                  \
    X(accounts_must_have_the_same_ledger, 23)                                        \
    X(transfer_must_have_the_same_ledger_as_accounts, 24)                            \
    X(pending_transfer_not_found, 25)                                                \
    X(pending_transfer_not_pending, 26)                                              \
    X(pending_transfer_has_different_debit_account_id, 27)                           \
    X(pending_transfer_has_different_credit_account_id, 28)                          \
    X(pending_transfer_has_different_ledger, 29)                                     \
    X(pending_transfer_has_different_code, 30)                                       \
    X(exceeds_pending_transfer_amount, 31)                                           \
    X(pending_transfer_has_different_amount, 32)                                     \
    X(pending_transfer_already_posted, 33)                                           \
    X(pending_transfer_already_voided, 34)                                           \
    X(pending_transfer_expired, 35)                                                  \
    X(exists_with_different_flags, 36)                                               \
    X(exists_with_different_debit_account_id, 37)                                    \
    X(exists_with_different_credit_account_id, 38)                                   \
    X(exists_with_different_amount, 39)                                              \
    X(exists_with_different_pending_id, 40)                                          \
    X(exists_with_different_user_data_128, 41)                                       \
    X(exists_with_different_user_data_64, 42)                                        \
    X(exists_with_different_user_data_32, 43)                                        \
    X(exists_with_different_timeout, 44)                                             \
    X(exists_with_different_code, 45)                                                \
    X(exists, 46)                                                                    \
    X(id_already_failed, 47)                                                         \
    X(overflows_debits_pending, 48)                                                  \
    X(overflows_credits_pending, 49)                                                 \
    X(overflows_debits_posted, 50)                                                   \
    X(overflows_credits_posted, 51)                                                  \
    X(overflows_debits, 52)                                                          \
    X(overflows_credits, 53)                                                         \
    X(overflows_timeout, 54)                                                         \
    X(exceeds_credits, 55)                                                           \
    X(exceeds_debits, 56)                                                            \
    X(transfers_full, 57)                                                            \
    X(pending_transfers_full, 58)                                                    \
    X(wrong_unit, 59)                                                                \
    X(linked_chain_spans_units, 60)                                                  \
    X(xts_same_unit, 61)                                                             \
    X(xts_aborted, 62)                                                               \
    X(xts_committed, 63)                                                             \
    X(xts_not_found, 64)                                                             \
    X(xts_flags_invalid, 66)                                                         \
    X(xts_timeout_must_not_be_zero, 67)                                              \
    X(clearing_account_unavailable, 68)                                              \
    X(throttled, 69)                                                                 \
    X(shadow_mismatch, 70)

enum pc_create_transfer_result {
#define PC__RESULT_ENUM(name, value) PC_TRANSFER_RESULT_##name = (value),
    PC_CREATE_TRANSFER_RESULT_TABLE(PC__RESULT_ENUM)
#undef PC__RESULT_ENUM
};

/* ------------------------------------------------------------------------
 * Routing: accounts are sharded into PC_ROUTING_BUCKETS buckets by id
 * (bucket = id mod 100), and each unit owns a set of buckets. A unit creates
 * accounts, and runs transfers, only in buckets it owns; anything else is
 * answered `wrong_unit`. Which buckets a unit owns is replicated state,
 * changed by the set_routing operation and versioned by an epoch that every
 * reply carries back (header field `epoch`), so a gateway holding an older
 * table sees that it must refresh.
 * ---------------------------------------------------------------------- */
#define PC_ROUTING_BUCKETS 100u

/* ------------------------------------------------------------------------
 * Shadow namespace (full-link stress testing): ids with bit 127 set belong to
 * shadow accounts and transfers. A request flagged PC_REQUEST_SHADOW may name
 * only shadow ids, any other request only real ones; an event that mixes the
 * two is refused with shadow_mismatch and changes nothing. The shadow copy
 * of a real id is that id with bit 127 set, and it lives in the same bucket
 * (pc_bucket_of ignores bit 127), so shadow traffic takes the paths real
 * traffic takes: the same units, the same cross-unit pairs. Real ids are
 * therefore below 2^127. Ids 0 and 2^128 - 1 belong to neither namespace:
 * they get their own results. Cross-unit legs of shadow transfers move
 * through the unit's shadow clearing account, so no real balance changes.
 *
 * shadow_purge (operation 15; one zero u128 as its event; the request must
 * be flagged PC_REQUEST_SHADOW, else the result is shadow_mismatch) removes
 * every shadow account, transfer and pending leg of the unit in one step.
 * Reads do not check namespaces: a lookup finds what it names.
 * ---------------------------------------------------------------------- */
#define PC_SHADOW_BIT (((pc_u128)1) << 127)
#define PC_SHADOW_ID(id) ((pc_u128)(id) | PC_SHADOW_BIT)
static inline int pc_id_is_shadow(pc_u128 id) {
    return (id & PC_SHADOW_BIT) != 0;
}

/* The bucket of an account id, without a 128-bit division: with
 * id = hi * 2^64 + lo and 2^64 mod 100 = 16 (bit 127, the shadow bit, left out),
 * id mod 100 = (hi mod 100 * 16 + lo mod 100) mod 100 (each u64 mod is a
 * multiply by a constant). */
static inline uint32_t pc_bucket_of(pc_u128 id) {
    uint64_t hi = (uint64_t)(id >> 64) & (UINT64_MAX >> 1), lo = (uint64_t)id; /* bit 127 aside */
    return (uint32_t)(((hi % 100u) * 16u + lo % 100u) % 100u);
}

/* The body of set_routing: exactly one record, 128 bytes. Bucket b is owned
 * when bit (b mod 64) of buckets[b / 64] is set (in bytes: bit b mod 8 of
 * byte b / 8). */
typedef struct pc_routing {
    uint64_t epoch;       /* must be above the unit's (equal: an idempotent repeat) */
    uint64_t buckets[2];  /* owned-bucket bitmap; bits 100..127 must be zero */
    uint8_t reserved[104]; /* must be zero */
} pc_routing_t;

/* Result codes of set_routing (one event; `created` is not sent, as for the
 * other creates). */
#define PC_SET_ROUTING_RESULT_TABLE(X)                                               \
    X(created, 0)                                                                    \
    X(reserved_field, 1)                                                             \
    X(routing_epoch_stale, 2)                                                        \
    X(routing_epoch_conflict, 3)                                                     \
    X(bucket_not_empty, 4)                                                           \
    X(exists, 5)

enum pc_set_routing_result {
#define PC__RESULT_ENUM(name, value) PC_ROUTING_RESULT_##name = (value),
    PC_SET_ROUTING_RESULT_TABLE(PC__RESULT_ENUM)
#undef PC__RESULT_ENUM
};

/* ------------------------------------------------------------------------
 * Cross-unit transfers (XTS): TCC inside the two units' ledgers, the
 * decision in the payer's unit, the payee tried first. A transfer whose
 * debit account lives in unit P (payer) and credit account in unit Q
 * (payee) runs as:
 *
 *   1. xts_try on Q     pending credit: credits_pending of the credit account,
 *                       debits_pending of Q's clearing account
 *   2. xts_try on P     the decision, in one event: P checks the debit
 *                       account and posts the debit at once (debit account
 *                       to P's clearing account): commit, the point of no
 *                       return. Refused (insufficient funds, a limit, an
 *                       unknown account), P keeps a tombstone of the gtid:
 *                       abort, and a retry answers xts_aborted
 *   3. xts_resolve on Q confirm (post_pending_transfer) after a commit,
 *                       cancel (void_pending_transfer) after an abort
 *
 * Step 2 is sent only after step 1 took. Each unit stays balanced on its
 * own: the remote side of every leg is the unit's clearing account for the
 * transfer's ledger, id PC_CLEARING_ACCOUNT_ID(ledger), created on first
 * use; account ids whose high 64 bits are all ones are reserved for it
 * (create_accounts answers id_reserved). After step 3 the payer's clearing
 * account has credits and the payee's clearing account has debits of the
 * same amount: across units they cancel, which paycell audit balances
 * checks.
 *
 * The transfer id is the global transaction id (gtid). Every step is
 * idempotent; a resolve(abort) of an unknown gtid leaves a tombstone (empty
 * rollback), so a later try is refused with xts_aborted (suspension). Both
 * tries carry the timeout (seconds). Q's side never expires on its own: a
 * leg still undecided past its timeout is ended by Q's recovery loop, which
 * sends P an xts_resolve(abort) naming the leg (pc_xts_decision_t.leg) and
 * applies P's answer: xts_committed (P had posted that transfer) confirms,
 * created or exists (aborted now or before) or xts_aborted cancels.
 * ---------------------------------------------------------------------- */
#define PC_CLEARING_ACCOUNT_ID(ledger)                                               \
    ((((pc_u128)(UINT64_MAX >> 1)) << 64) | (pc_u128)(uint32_t)(ledger))
#define PC_SHADOW_CLEARING_ACCOUNT_ID(ledger) (PC_SHADOW_ID(PC_CLEARING_ACCOUNT_ID(ledger)))
static inline int pc_account_id_is_reserved(pc_u128 id) {
    return ((uint64_t)(id >> 64) & (UINT64_MAX >> 1)) == (UINT64_MAX >> 1);
}

/* get_xts_legs takes one pc_account_filter_t: account_id 0, limit,
 * timestamp_min and timestamp_max (only legs tried in that range; a max of 0
 * = no bound) and flags, which must be PC_FILTER_XTS_TRYING: the payee legs
 * still undecided in this unit, oldest first. Reply: pc_transfer_t records
 * as the client sent them, with flags pending; timestamp: when the leg was
 * tried. */
#define PC_FILTER_XTS_TRYING (1u << 3)

/* An xts_resolve event, 32 bytes: the decision on one gtid (step 3, and
 * the payee's recovery asking the payer). A quarter of a transfer, because
 * the leg it resolves already holds every other field: the journal, the
 * network and the cluster-key MAC carry 96 bytes less per step. */
typedef struct pc_xts_decision {
    pc_u128 gtid;
    uint16_t flags;        /* post_pending_transfer (commit) or void_pending_transfer (abort) */
    uint8_t reserved[6];   /* must be zero */
    uint64_t leg;          /* 0, or pc_xts_leg_digest() of the payee's leg: the payer
                              answers xts_committed only for the transfer it posted */
} pc_xts_decision_t;

/* A digest of a cross-unit transfer as the client sent it (the fields a
 * retry must match; not its timestamp or flags), never 0. */
uint64_t pc_xts_leg_digest(const pc_transfer_t *transfer);

/* ------------------------------------------------------------------------
 * GZone: the cluster map. One record, held by the GZone unit: which unit owns
 * each bucket, the units' replica addresses, and the epoch that versions it
 * all. set_cluster replaces it (compare-and-set: epoch must be the current
 * epoch + 1; the same record again answers exists); get_cluster (one zero
 * u128 as its event) returns it. It also carries the cluster's global
 * settings: the XTS timeout and the gateways' flow-control limits, which
 * every gateway applies on its next refresh of the map (live).
 * ---------------------------------------------------------------------- */
#define PC_UNITS_MAX 64u
#define PC_UNIT_ADDRESSES_MAX 128u /* "HOST:PORT,HOST:PORT,HOST:PORT" and a NUL */
#define PC_XTS_TIMEOUT_MAX_S 3600u

/* A limit of the map: 0 leaves it to each gateway's own flag, PC_LIMIT_OFF
 * turns it off whatever the flags say, anything else is the value. */
#define PC_LIMIT_OFF UINT32_MAX
#define PC_LIMIT_RATE_MAX 100000000u /* events/s */
#define PC_LIMIT_WARMUP_MAX_MS 600000u
#define PC_LIMIT_QUEUE_MAX_MS 60000u

/* The gateways' flow control (docs/OPERATING.md, "Flow control"). 64 bytes. */
typedef struct pc_cluster_limits {
    uint32_t rate_limit;        /* creates: events/s over all callers */
    uint32_t lookup_rate_limit; /* lookups: events/s over all callers */
    uint32_t hot_key_rate;      /* creates: events/s crediting each hot account */
    uint32_t warmup_ms;         /* rates start at a third and ramp up over this */
    uint32_t queue_ms;          /* longest wait for room under the concurrency limit */
    uint32_t caller_rate_limit; /* creates: events/s of each caller (API key or address) */
    uint8_t reserved[40];       /* must be zero */
} pc_cluster_limits_t;

typedef struct pc_cluster {
    uint64_t epoch;
    uint32_t units_count;                   /* 1..PC_UNITS_MAX (0 only before the first set) */
    uint32_t xts_timeout_s; /* global setting: how long a payer unit keeps a cross-unit
                               try undecided (1..PC_XTS_TIMEOUT_MAX_S); 0 = each
                               gateway's --xts-timeout */
    uint8_t bucket_unit[PC_ROUTING_BUCKETS]; /* owning unit of each bucket, < units_count */
    uint8_t reserved_2[12];                 /* must be zero */
    char unit_addresses[PC_UNITS_MAX][PC_UNIT_ADDRESSES_MAX]; /* NUL-terminated, NUL-padded;
                                                                units >= units_count all zero */
    pc_cluster_limits_t limits; /* global setting: the gateways' flow control */
} pc_cluster_t;

#define PC_SET_CLUSTER_RESULT_TABLE(X)                                               \
    X(created, 0)                                                                    \
    X(reserved_field, 1)                                                             \
    X(cluster_epoch_stale, 2)                                                        \
    X(cluster_epoch_gap, 3)                                                          \
    X(units_count_invalid, 4)                                                        \
    X(bucket_unit_invalid, 5)                                                        \
    X(unit_address_invalid, 6)                                                       \
    X(exists, 7)                                                                     \
    X(setting_invalid, 8)

enum pc_set_cluster_result {
#define PC__RESULT_ENUM(name, value) PC_CLUSTER_RESULT_##name = (value),
    PC_SET_CLUSTER_RESULT_TABLE(PC__RESULT_ENUM)
#undef PC__RESULT_ENUM
};

/* list_accounts takes one pc_account_filter_t: account_id 0, flags 0,
 * limit, and timestamp_min/timestamp_max (0 = unbounded). Reply: the unit's
 * accounts created in that time range, oldest first, at most limit (both
 * namespaces, the clearing accounts included). Page on with timestamp_min =
 * the last account's timestamp + 1. A read: served by the replica asked. */

/* get_totals (one u128 as its event: 0 for the real namespace, 1 for the
 * shadow namespace): per ledger of this unit with accounts of that
 * namespace, sorted by ledger. 128 bytes. */
typedef struct pc_totals {
    pc_u128 debits_pending, debits_posted, credits_pending, credits_posted;
    pc_u128 clearing_debits_posted;  /* of this unit's clearing account (of the namespace) */
    pc_u128 clearing_credits_posted;
    uint32_t ledger;
    uint32_t accounts_count;   /* accounts of the ledger, the clearing account included */
    uint64_t xts_trying;       /* undecided payee legs in this unit */
    uint8_t reserved[16];
} pc_totals_t;

/* Names of result codes and flags ("exceeds_credits"); NULL when unknown.
 * pc_*_result_parse returns the code or -1. */
const char *pc_account_result_name(uint32_t result);
const char *pc_transfer_result_name(uint32_t result);
const char *pc_routing_result_name(uint32_t result);
const char *pc_cluster_result_name(uint32_t result);
int pc_account_result_parse(const char *name);
int pc_transfer_result_parse(const char *name);
int pc_routing_result_parse(const char *name);
const char *pc_account_flag_name(uint16_t single_bit);
const char *pc_transfer_flag_name(uint16_t single_bit);

/* Operations carried by a request. */
#define PC_OPERATION_TABLE(X)                                                        \
    X(register, 1)                                                                   \
    X(create_accounts, 2)                                                            \
    X(create_transfers, 3)                                                           \
    X(lookup_accounts, 4)                                                            \
    X(lookup_transfers, 5)                                                           \
    X(get_account_transfers, 6)                                                      \
    X(set_routing, 7)                                                                \
    X(xts_try, 8)                                                                    \
    X(xts_resolve, 9)                                                                \
    X(get_xts_legs, 11)                                                              \
    X(set_cluster, 12)                                                               \
    X(get_cluster, 13)                                                               \
    X(get_totals, 14)                                                                \
    X(shadow_purge, 15)                                                              \
    X(list_accounts, 16)                                                             \
    X(authenticate, 17)                                                              \
    X(replica_status, 18)

/* authenticate carries an API key as its one event: PC_KEY_TEXT_LEN bytes,
 * "pck_" and 64 hex digits, no NUL. It is sent once per connection, first,
 * before register (session 0, request 0), and is neither logged nor
 * replicated: it says who is on this connection (docs/PROTOCOL.md,
 * docs/SECURITY.md). */
#define PC_KEY_TEXT_LEN 68u

/* replica_status asks one replica what it is doing: its place in the unit,
 * its view and VSR status, how far its log, commits and checkpoint are, and
 * whether its disk is full. Like authenticate it has no session (session 0,
 * request 0) and, unlike it, no body at all. Any replica answers it in any
 * state — a backup, one in a view change or recovering, one whose disk is
 * full — at once, from memory: it is neither logged nor replicated and
 * changes nothing (docs/PROTOCOL.md). The gateway's prober asks every
 * replica once a second for /metrics. The reply is one pc_replica_status_t.
 * A gateway is no replica: it answers PC_EOPERATION. */
#define PC_REPLICA_STATE_TABLE(X)                                                    \
    X(normal, 1)                                                                     \
    X(view_change, 2)                                                                \
    X(recovering, 3)

enum pc_replica_state {
#define PC__REPLICA_STATE_ENUM(name, value) PC_REPLICA_STATE_##name = (value),
    PC_REPLICA_STATE_TABLE(PC__REPLICA_STATE_ENUM)
#undef PC__REPLICA_STATE_ENUM
};

/* The reply of replica_status: 128 bytes, little-endian, as laid out. */
typedef struct pc_replica_status {
    uint64_t cluster;         /* the cluster id the replica was formatted with */
    uint64_t op;              /* the newest op in its log (a single replica: its WAL) */
    uint64_t commit_op;       /* the newest op applied to its state machine */
    uint64_t commit_max;      /* the newest op it knows committed in the unit (>= commit_op) */
    uint64_t checkpoint_op;   /* its newest durable checkpoint */
    uint64_t nospace_refused; /* client writes refused with PC_ENOSPC since it started */
    uint32_t view;            /* its VSR view (0 for a single replica) */
    uint32_t unit;            /* the unit id it was formatted with */
    uint8_t replica;          /* its index in the unit, below replica_count */
    uint8_t replica_count;    /* 1 or 3 */
    uint8_t state;            /* pc_replica_state (a single replica: normal) */
    uint8_t primary;          /* 1: it leads a normal view and serves writes (a full
                                 primary that stepped aside says 0); a single replica: 1 */
    uint8_t disk_full;        /* 1: a write it needs failed with ENOSPC and has not
                                 succeeded since */
    uint8_t reserved[67];     /* zero */
} pc_replica_status_t;

/* The state's name ("view_change"); NULL when unknown. */
const char *pc_replica_state_name(uint32_t state);

typedef enum pc_operation {
    PC_OP_none = 0,
#define PC__OP_ENUM(name, value) PC_OP_##name = (value),
    PC_OPERATION_TABLE(PC__OP_ENUM)
#undef PC__OP_ENUM
} pc_operation_t;

const char *pc_operation_name(pc_operation_t op);

/* ------------------------------------------------------------------------
 * libpaycell: the C client.
 *
 * A client holds one session with the cluster. It sends one request at a
 * time per session (requests queue up behind it, bounded), retries a request
 * on connection loss or timeout with the same session and request number, so
 * the server answers a retry from its session table and never applies it
 * twice. It is single-threaded: call it from one thread.
 *
 * With several addresses ("A0,A1,A2", address i being replica i, all the
 * cluster's replicas in index order) the client finds the primary itself: a
 * replica that is not the primary answers PC_ENOT_PRIMARY with its view in
 * the reply header's op, and the client resends the same request at replica
 * (view % address count) at once — without using a retry, but at most
 * 2 * address count times within one attempt, so replicas that disagree
 * cannot bounce a request forever. PC_ENOTREADY (a replica recovering or
 * changing views), a refused or closed connection and a timeout move to the
 * next address after a short backoff (10 ms doubling up to 1 s; none after
 * a timeout) and each use one retry. The client stays with the replica that
 * last served it. With one address none of this applies: PC_ENOT_PRIMARY is
 * returned as is and PC_ENOTREADY is retried on the same connection.
 *
 * A gateway may refuse a whole request under a flow-control limit with
 * PC_ETHROTTLED and a retry-after hint (milliseconds, in the reply header's
 * op). Nothing of the request was applied. The client waits for the hint
 * (at most 1 s) and resends on the same connection, each time using one
 * retry; when the retries run out the request completes with PC_ETHROTTLED.
 *
 * A gateway started with API keys answers PC_EAUTH to every request on a
 * connection that did not authenticate with a known, unrevoked key, and
 * PC_EFORBIDDEN to an operation the key's role does not allow; after too
 * many failed authentications from one source it answers an authenticate
 * PC_ETHROTTLED for a while. All three are final: the request completes
 * with them at once, without retries (retrying cannot change the answer).
 * ---------------------------------------------------------------------- */
typedef struct pc_client pc_client_t;

/* retries_max = PC_CLIENT_RETRIES_NONE: one attempt, no retries (0 in the
 * struct means "the default", so "none" needs a value of its own). */
#define PC_CLIENT_RETRIES_NONE UINT32_MAX

/* Every field 0 selects its default, so a zeroed struct is the default. */
typedef struct pc_client_options {
    uint64_t cluster;            /* cluster id (0 unless formatted otherwise) */
    uint32_t request_timeout_ms; /* per attempt, redirects included; default 5,000 */
    uint32_t retries_max;        /* attempts after the first; default 8;
                                    PC_CLIENT_RETRIES_NONE for none */
    uint32_t queue_requests_max; /* submitted but not yet sent; default 64 */
    /* API key (PC_KEY_TEXT_LEN characters, "pck_..."), sent in an
     * authenticate request first on every connection the client makes.
     * NULL: the environment variable PAYCELL_KEY if set (as libpq reads
     * PGPASSWORD), else none. "": none, whatever the environment says. */
    const char *key;
    /* TLS (docs/SECURITY.md). tls_ca: a PEM file of the CA the server's
     * certificate must be signed by; the certificate must also name the
     * address's host (an IP address or a DNS name). Set, the client speaks
     * TLS 1.2 or later on every connection; NULL: the environment variable
     * PAYCELL_TLS_CA if set, else plaintext; "": plaintext, whatever the
     * environment says (a gateway's own sessions with units). tls_cert and
     * tls_key: the client's certificate and private key (PEM) for a server
     * that asks for one (mutual TLS); NULL: PAYCELL_TLS_CERT and
     * PAYCELL_TLS_KEY; "": none. The key file must not be readable by its
     * group or others. The files are read once, at open. */
    const char *tls_ca;
    const char *tls_cert;
    const char *tls_key;
    /* Cluster key file (docs/SECURITY.md, "cluster key"): 64 hex digits,
     * not readable by its group or others. Set, every request carries a MAC
     * under the key and every reply must carry a valid one (else the
     * request ends with PC_EMAC, final: no retries); for the tools and
     * processes that talk to units and the GZone directly. NULL: the
     * environment variable PAYCELL_CLUSTER_KEY if set, else none; "": none,
     * whatever the environment says. Read once, at open. */
    const char *cluster_key;
} pc_client_options_t;

/* Called once per submitted request. status is PC_OK or a negative pc_err:
 * after the retries ran out, the status the cluster last answered
 * (PC_ENOTREADY, PC_EBUSY, PC_ENOSPC, PC_ENOT_PRIMARY, or PC_ETHROTTLED from a
 * gateway: then nothing was applied) or PC_ETIMEDOUT when
 * the last attempt got no answer. Once a create was retried, its outcome is
 * unknown on any such error: resend the same ids (they are idempotency keys).
 * reply/reply_size: the reply body (create: pc_create_result_t[]; lookups:
 * records), valid only during the call. */
typedef void (*pc_client_callback_t)(void *user, int status, pc_operation_t operation,
                                     const void *reply, uint32_t reply_size);

/* Connects to "HOST:PORT", or to a comma-separated list of at most 32
 * replica addresses in replica index order (it connects to the first that
 * answers, then finds the primary as described above), and registers a
 * session. Blocks until the session is registered, within the same bounds as
 * a request. options may be NULL.
 * Errors: PC_EADDRESS, PC_EINVAL (options out of range, or a key, given or
 * from PAYCELL_KEY, that is not PC_KEY_TEXT_LEN characters), PC_ECONNREFUSED (no
 * address answered), PC_ETIMEDOUT, PC_ENOTREADY / PC_EBUSY (the cluster kept
 * saying so until the retries ran out), PC_ENOT_PRIMARY (one address, and it
 * is a backup; or, with several, they kept redirecting), PC_ESESSION_EVICTED,
 * PC_EAUTH (a gateway refused the key, or asked for one and none was
 * given), PC_ETHROTTLED (a gateway refuses this source's authentications
 * for now), PC_ETLS (TLS on: the server's certificate is not signed by
 * tls_ca or does not name the host, or the server refused the client's
 * certificate or its absence; final, no retries), PC_EINVAL also for TLS
 * files that cannot be loaded (missing, malformed, a key that does not
 * match its certificate or that others may read), PC_EINVAL also for a
 * cluster key file that cannot be loaded (missing, malformed, readable by
 * others), PC_EMAC (a cluster key is set and the server's reply carried no
 * valid MAC: it does not hold the key; final), PC_ENOMEM, PC_EIO. */
int pc_client_open(const char *addresses, const pc_client_options_t *options,
                   pc_client_t **out);
void pc_client_close(pc_client_t *client);

/* Queues a request. events is copied. count must be 1..PC_BATCH_EVENTS_MAX
 * and the body at most PC_MESSAGE_BODY_MAX bytes.
 * Errors: PC_EINVAL, PC_ETOOBIG, PC_EBUSY (queue full). */
int pc_client_submit(pc_client_t *client, pc_operation_t operation, const void *events,
                     uint32_t count, pc_client_callback_t callback, void *user);

/* Request flags (pc_client_submit_flags). PC_REQUEST_SHADOW marks stress-test
 * traffic: every id its events name must be in the shadow namespace
 * (pc_id_is_shadow), and every id of a request without it must not be. */
#define PC_REQUEST_SHADOW 1u

/* pc_client_submit with request flags (PC_REQUEST_SHADOW or 0).
 * Errors as pc_client_submit, and PC_EINVAL for an unknown flag. */
int pc_client_submit_flags(pc_client_t *client, pc_operation_t operation, uint32_t flags,
                           const void *events, uint32_t count, pc_client_callback_t callback,
                           void *user);

/* The index (in the addresses given to pc_client_open) of the replica the
 * next attempt goes to: the one that last served, normally the primary. */
uint32_t pc_client_replica(const pc_client_t *client);

/* Drives I/O for up to timeout_ms (0: do what is ready and return), calling
 * callbacks for completed requests. Returns the number of requests still
 * queued or in flight, or a negative pc_err on a client-level failure. */
int pc_client_poll(pc_client_t *client, int timeout_ms);

/* Blocking helpers built on submit + poll. results/out must hold count
 * entries. *results_count / *out_count receive how many were written.
 * Return PC_OK or a negative pc_err (the events' results are per event). */
int pc_client_create_accounts(pc_client_t *client, const pc_account_t *accounts,
                              uint32_t count, pc_create_result_t *results,
                              uint32_t *results_count);
int pc_client_create_transfers(pc_client_t *client, const pc_transfer_t *transfers,
                               uint32_t count, pc_create_result_t *results,
                               uint32_t *results_count);
int pc_client_lookup_accounts(pc_client_t *client, const pc_u128 *ids, uint32_t count,
                              pc_account_t *out, uint32_t *out_count);
int pc_client_lookup_transfers(pc_client_t *client, const pc_u128 *ids, uint32_t count,
                               pc_transfer_t *out, uint32_t *out_count);
/* out must hold filter->limit transfers. */
int pc_client_get_account_transfers(pc_client_t *client, const pc_account_filter_t *filter,
                                    pc_transfer_t *out, uint32_t *out_count);
/* Sends one set_routing record (an operator action: a unit's owned buckets
 * and their epoch). *result receives its result: index 0 and a
 * pc_set_routing_result (PC_ROUTING_RESULT_created when the reply is empty).
 * Returns PC_OK or a negative pc_err, as the other helpers. */
int pc_client_set_routing(pc_client_t *client, const pc_routing_t *routing,
                          pc_create_result_t *result);

/* Any operation, blocking: sends count events and copies the reply body
 * into reply (capacity reply_cap bytes; *reply_size receives its size).
 * Errors as the helpers above, and PC_ETOOBIG when the reply does not fit. */
int pc_client_call(pc_client_t *client, pc_operation_t operation, const void *events,
                   uint32_t count, void *reply, uint32_t reply_cap, uint32_t *reply_size);
/* pc_client_call with request flags (PC_REQUEST_SHADOW or 0). */
int pc_client_call_flags(pc_client_t *client, pc_operation_t operation, uint32_t flags,
                         const void *events, uint32_t count, void *reply, uint32_t reply_cap,
                         uint32_t *reply_size);

/* For event loops that drive many clients: the descriptor the client waits
 * on (fd -1 when none, e.g. while backing off) with the poll events it wants,
 * and the most milliseconds the caller may wait before calling
 * pc_client_poll(client, 0) again (-1: no deadline, only fd readiness). */
int pc_client_pollfd(const pc_client_t *client, int *fd, short *events);

/* The routing epoch carried by the last successful reply this client
 * received (0 before any): the unit's epoch after the request applied. A
 * gateway compares it with its own table's epoch and refreshes when the
 * unit is ahead. */
uint64_t pc_client_last_epoch(const pc_client_t *client);

/* How many PC_ENOSPC answers (a replica whose disk is full) this client
 * received since the last call, the ones its retries hid included; the
 * count restarts at 0. A gateway adds them to its per-unit metric. */
uint64_t pc_client_nospace_take(pc_client_t *client);

#ifdef __cplusplus
}
#endif
#endif /* PAYCELL_H */
