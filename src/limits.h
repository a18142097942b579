/*
 * limits.h — every bound paycell has, in one place.
 *
 * Pools and tables are sized from these at startup and never grow on the hot
 * path; a full pool answers PC_EBUSY or a named "_full" result. The static
 * asserts at the bottom pin the relations between them.
 */
#ifndef PC_LIMITS_H
#define PC_LIMITS_H

#include <assert.h>

/* Wire: one message is a 128-byte header and a body of at most 1 MiB - 128. */
#define PC_HEADER_SIZE 128u
#define PC_MESSAGE_SIZE_MAX (1u << 20)
#define PC_MESSAGE_BODY_MAX (PC_MESSAGE_SIZE_MAX - PC_HEADER_SIZE)

/* Events per request: 8,189 records of 128 bytes fit a 1 MiB message with the
 * header and room to spare (TigerBeetle's figure, kept for comparability). */
#define PC_BATCH_EVENTS_MAX 8189u
#define PC_RECORD_SIZE 128u

/* A create reply holds at most one 8-byte result per event. */
#define PC_CREATE_REPLY_BODY_MAX (PC_BATCH_EVENTS_MAX * 8u)

/* Client sessions a replica remembers (with each one's last create reply). */
#define PC_CLIENTS_MAX 1024u

/* Connections a replica accepts at once (clients plus operators). */
#define PC_CONNECTIONS_MAX 1100u

/* Requests grouped into one WAL entry (one write, one fsync). */
#define PC_PREPARE_REQUESTS_MAX 64u
/* Bytes of one WAL entry body: the grouped request messages. */
#define PC_PREPARE_BODY_MAX (PC_PREPARE_REQUESTS_MAX * PC_MESSAGE_SIZE_MAX)

/* Replicated units: one VSR prepare carries grouped requests up to this
 * many bytes (two full batches); the journal ring holds this many prepares
 * by default. Replica-to-replica frames carry a prepare plus the VSR
 * message, so they may exceed a client message. */
#define PC_VSR_PREPARE_BODY_MAX (2u << 20)
#define PC_JOURNAL_SLOTS_DEFAULT 128u
#define PC_JOURNAL_SLOTS_MIN 16u
#define PC_JOURNAL_SLOTS_LIMIT 65536u
#define PC_REPLICA_MESSAGE_SIZE_MAX (PC_VSR_PREPARE_BODY_MAX + (64u << 10))
/* Routing: Alipay splits users into 100 buckets. */
#define PC_BUCKETS 100u
#define PC_UNITS_MAX 64u
#define PC_REPLICAS_PER_UNIT 3u

/* Ledger capacity defaults (set at format time, stored in the superblock). */
#define PC_ACCOUNTS_MAX_DEFAULT (1u << 20)
#define PC_TRANSFERS_MAX_DEFAULT 12000000ull /* ids, incl. failed; index ~384 MiB */
#define PC_PENDING_MAX_DEFAULT (1u << 20)     /* unresolved pending transfers */
#define PC_ACCOUNTS_MAX_LIMIT (1u << 26)
#define PC_TRANSFERS_MAX_LIMIT (1ull << 32)

/* Storage. */
#define PC_WAL_SEGMENT_SIZE_MAX (1ull << 30)
#define PC_CHECKPOINT_WAL_BYTES_DEFAULT (512ull << 20)

/* HTTP body (gateway). */
#define PC_HTTP_BODY_MAX (1u << 20)

static_assert(PC_HEADER_SIZE + PC_BATCH_EVENTS_MAX * PC_RECORD_SIZE <= PC_MESSAGE_SIZE_MAX,
              "a full batch must fit one message");
static_assert(PC_CREATE_REPLY_BODY_MAX <= PC_MESSAGE_BODY_MAX, "a create reply fits");
static_assert(PC_CONNECTIONS_MAX >= PC_CLIENTS_MAX, "every session can connect");
static_assert(PC_BUCKETS <= 65535u, "bucket fits u16");

#endif /* PC_LIMITS_H */
