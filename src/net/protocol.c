/*
 * protocol.c — the binary protocol codec: sealing a header (sizes, magic,
 * version, both checksums) and verifying what arrives, in layers.
 *
 * Every byte from the network is untrusted until proven otherwise. The header
 * checksum is checked before any field is read, because a corrupted size or
 * command must never steer the code that follows; then the header's own
 * fields; then the body checksum; then the request's semantics (operation,
 * session, a whole number of events within bounds). Each layer assumes the
 * one before it passed, and asserts it.
 */
#include "net.h"

#include <string.h>

/* The header checksum covers everything after the checksum field itself,
 * including checksum_body, so sealing the body first then the header binds
 * both together. */
#define HEADER_CHECKSUMMED_OFFSET 16u
#define HEADER_CHECKSUMMED_SIZE (PC_HEADER_SIZE - HEADER_CHECKSUMMED_OFFSET)

PC_STATIC_ASSERT(offsetof(pc_header_t, checksum_body) == HEADER_CHECKSUMMED_OFFSET,
                 "the header checksum starts right after itself");
PC_STATIC_ASSERT(sizeof(pc_account_t) == PC_RECORD_SIZE, "account events are records");
PC_STATIC_ASSERT(sizeof(pc_transfer_t) == PC_RECORD_SIZE, "transfer events are records");
PC_STATIC_ASSERT(sizeof(pc_routing_t) == PC_RECORD_SIZE, "a routing event is a record");
PC_STATIC_ASSERT(sizeof(pc_totals_t) == PC_RECORD_SIZE, "a totals reply is a record");
PC_STATIC_ASSERT(sizeof(pc_cluster_t) == 128 + PC_UNITS_MAX * PC_UNIT_ADDRESSES_MAX + 64,
                 "cluster layout");
PC_STATIC_ASSERT(sizeof(pc_cluster_limits_t) == 64, "cluster limits layout");
PC_STATIC_ASSERT(sizeof(pc_replica_status_t) == PC_RECORD_SIZE, "a replica status is a record");
PC_STATIC_ASSERT(offsetof(pc_replica_status_t, view) == 48, "replica status layout: u64s first");
PC_STATIC_ASSERT(offsetof(pc_replica_status_t, replica) == 56, "replica status layout");
PC_STATIC_ASSERT(offsetof(pc_replica_status_t, reserved) == 61, "replica status layout");
PC_STATIC_ASSERT(sizeof(pc_cluster_t) <= PC_MESSAGE_BODY_MAX, "a cluster record fits a message");
PC_STATIC_ASSERT(PC_BATCH_EVENTS_MAX * sizeof(pc_u128) <= PC_MESSAGE_BODY_MAX, "ids fit");

static pc_u128 header_checksum(const pc_header_t *header) {
    const uint8_t *bytes = (const uint8_t *)header;
    return pc_checksum(bytes + HEADER_CHECKSUMMED_OFFSET, HEADER_CHECKSUMMED_SIZE, 0);
}

/* An empty body is hashed from a real (empty) buffer rather than NULL, so no
 * pointer arithmetic is ever done on NULL, even inside the hash. */
static pc_u128 body_checksum(const void *body, uint32_t body_size) {
    static const uint8_t empty[1];
    if (body_size == 0) return pc_checksum(empty, 0, 0);
    PC_ASSERT(body != NULL);
    return pc_checksum(body, body_size, 0);
}

uint32_t pc_operation_event_size(pc_operation_t operation) {
    switch ((int)operation) {
    case PC_OP_register: return 0;
    case PC_OP_create_accounts: return sizeof(pc_account_t);
    case PC_OP_create_transfers: return sizeof(pc_transfer_t);
    case PC_OP_lookup_accounts: return sizeof(pc_u128);
    case PC_OP_lookup_transfers: return sizeof(pc_u128);
    case PC_OP_get_account_transfers: return sizeof(pc_account_filter_t);
    case PC_OP_set_routing: return sizeof(pc_routing_t);
    case PC_OP_xts_try: return sizeof(pc_transfer_t);
    case PC_OP_xts_resolve: return sizeof(pc_xts_decision_t);
    case PC_OP_get_xts_legs: return sizeof(pc_account_filter_t);
    case PC_OP_set_cluster: return sizeof(pc_cluster_t);
    case PC_OP_get_cluster: return sizeof(pc_u128);
    case PC_OP_get_totals: return sizeof(pc_u128);
    case PC_OP_shadow_purge: return sizeof(pc_u128);
    case PC_OP_list_accounts: return sizeof(pc_account_filter_t);
    case PC_OP_authenticate: return PC_KEY_TEXT_LEN;
    case PC_OP_replica_status: return 0;
    }
    return 0;
}

uint32_t pc_operation_reply_record_size(pc_operation_t operation) {
    switch ((int)operation) {
    case PC_OP_register: return 0;
    case PC_OP_create_accounts: return sizeof(pc_create_result_t);
    case PC_OP_create_transfers: return sizeof(pc_create_result_t);
    case PC_OP_lookup_accounts: return sizeof(pc_account_t);
    case PC_OP_lookup_transfers: return sizeof(pc_transfer_t);
    case PC_OP_get_account_transfers: return sizeof(pc_transfer_t);
    case PC_OP_set_routing: return sizeof(pc_create_result_t);
    case PC_OP_xts_try: return sizeof(pc_create_result_t);
    case PC_OP_xts_resolve: return sizeof(pc_create_result_t);
    case PC_OP_get_xts_legs: return sizeof(pc_transfer_t);
    case PC_OP_set_cluster: return sizeof(pc_create_result_t);
    case PC_OP_get_cluster: return sizeof(pc_cluster_t);
    case PC_OP_get_totals: return sizeof(pc_totals_t);
    case PC_OP_shadow_purge: return sizeof(pc_create_result_t);
    case PC_OP_list_accounts: return sizeof(pc_account_t);
    case PC_OP_authenticate: return 0;
    case PC_OP_replica_status: return sizeof(pc_replica_status_t);
    }
    return 0;
}

bool pc_operation_is_write(pc_operation_t operation) {
    switch ((int)operation) {
    case PC_OP_register:
    case PC_OP_create_accounts:
    case PC_OP_create_transfers:
    case PC_OP_set_routing:
    case PC_OP_xts_try:
    case PC_OP_xts_resolve:
    case PC_OP_shadow_purge:
    case PC_OP_set_cluster: return true;
    }
    return false;
}

/* Keyed, the MAC goes in before the header checksum, which then covers it:
 * a frame torn or flipped in transit still fails as PC_ECHECKSUM, and only
 * a well-framed message reaches the MAC check. Unkeyed, the flag and the MAC
 * bytes are cleared, so a reply that copied a keyed request's flags never
 * claims a MAC it lacks. */
void pc_header_seal_keyed(pc_header_t *header, const void *body, uint32_t body_size,
                          pc_cluster_key_t *key) {
    PC_ASSERT(header != NULL);
    PC_ASSERT(body_size <= (header->command == PC_COMMAND_replica
                                ? PC_REPLICA_MESSAGE_SIZE_MAX - PC_HEADER_SIZE
                                : PC_MESSAGE_BODY_MAX));
    header->size = PC_HEADER_SIZE + body_size;
    header->magic = PC_MAGIC;
    header->version = PC_PROTOCOL_VERSION;
    header->checksum_body = body_checksum(body, body_size);
    if (key != NULL) {
        header->flags |= PC_HEADER_MAC;
        pc__cluster_key_mac(key, header, body, body_size, header->reserved);
    } else {
        header->flags &= (uint16_t)~PC_HEADER_MAC;
        memset(header->reserved, 0, sizeof header->reserved);
    }
    header->checksum = header_checksum(header);
    PC_ASSERT_HOT(pc_header_verify(header) != PC_ECHECKSUM);
    PC_ASSERT_HOT(key == NULL || pc_header_mac_verify(header, body, key) == PC_OK);
}

void pc_header_seal(pc_header_t *header, const void *body, uint32_t body_size) {
    pc_header_seal_keyed(header, body, body_size, NULL);
}

static bool reserved_zero(const pc_header_t *header) {
    for (size_t i = 0; i < sizeof(header->reserved); i++) {
        if (header->reserved[i] != 0) return false;
    }
    return true;
}

/* The status and epoch fields: a request carries neither; a reply carries
 * PC_OK or a negative error, and an error reply has no body to misread as
 * results. Any epoch is fine in a reply: it is the unit's. */
static int status_verify(const pc_header_t *header) {
    if (header->command != PC_COMMAND_reply) {
        return header->status == 0 && header->epoch == 0 ? PC_OK : PC_EPROTO;
    }
    PC_ASSERT(header->command == PC_COMMAND_reply);
    if (header->status > 0) return PC_EPROTO;
    if (header->status < 0 && header->size != PC_HEADER_SIZE) return PC_EPROTO;
    return PC_OK;
}

int pc_header_verify(const pc_header_t *header) {
    PC_ASSERT(header != NULL);
    /* Checksum first: until it passes, size and command are noise. */
    if (header->checksum != header_checksum(header)) return PC_ECHECKSUM;
    if (header->magic != PC_MAGIC) return PC_EPROTO;
    if (header->version != PC_PROTOCOL_VERSION) return PC_EVERSION;
    if (header->command != PC_COMMAND_request && header->command != PC_COMMAND_reply &&
        header->command != PC_COMMAND_replica) {
        return PC_EPROTO;
    }
    if (header->size > (header->command == PC_COMMAND_replica ? PC_REPLICA_MESSAGE_SIZE_MAX
                                                               : PC_MESSAGE_SIZE_MAX))
        return PC_ETOOBIG;
    if (header->size < PC_HEADER_SIZE) return PC_EPROTO;
    if ((header->flags & ~PC_HEADER_FLAGS_KNOWN) != 0) return PC_EPROTO;
    /* The last 16 bytes are a MAC only when the flag says so; checking it
     * takes the key and the body (pc_header_mac_verify). */
    if ((header->flags & PC_HEADER_MAC) == 0 && !reserved_zero(header)) return PC_EPROTO;
    int rc = status_verify(header);
    PC_ASSERT(rc == PC_OK || rc == PC_EPROTO);
    return rc;
}

int pc_body_verify(const pc_header_t *header, const void *body) {
    PC_ASSERT(header->size >= PC_HEADER_SIZE && header->size <= PC_REPLICA_MESSAGE_SIZE_MAX);
    uint32_t body_size = header->size - PC_HEADER_SIZE;
    PC_ASSERT(body != NULL || body_size == 0);
    if (header->checksum_body != body_checksum(body, body_size)) return PC_ECHECKSUM;
    return PC_OK;
}

void pc_replica_status_request(pc_header_t *header, uint64_t cluster, pc_u128 client,
                               pc_cluster_key_t *key) {
    PC_ASSERT(client != 0); /* a reply is recognised by it */
    memset(header, 0, sizeof *header);
    header->command = PC_COMMAND_request;
    header->operation = PC_OP_replica_status;
    header->client = client;
    header->cluster = cluster;
    pc_header_seal_keyed(header, NULL, 0, key);
    PC_ASSERT(header->size == PC_HEADER_SIZE);
}

int pc_replica_status_reply(const pc_header_t *header, const void *body, pc_u128 client,
                            pc_cluster_key_t *key, pc_replica_status_t *out) {
    int rc = pc_body_verify(header, body);
    if (rc == PC_OK && key != NULL) rc = pc_header_mac_verify(header, body, key);
    if (rc != PC_OK) return rc;
    if (header->command != PC_COMMAND_reply || header->operation != PC_OP_replica_status ||
        header->client != client)
        return PC_EPROTO;
    if (header->status != PC_OK) return header->status; /* PC_ECLUSTER, PC_EMAC, ... */
    if (header->size != PC_HEADER_SIZE + sizeof *out) return PC_EPROTO;
    memcpy(out, body, sizeof *out);
    return PC_OK;
}

static bool operation_known(uint8_t operation) {
    switch (operation) {
#define PC__OP_CASE(name, value) case value:
        PC_OPERATION_TABLE(PC__OP_CASE)
#undef PC__OP_CASE
        return true;
    }
    return false;
}

/* A body must be 1..PC_BATCH_EVENTS_MAX whole events: an empty batch is
 * meaningless and a partial event means the sender and we disagree on the
 * layout, so both are malformed; too many is a distinct, clearer error. */
static int events_verify(uint32_t body_size, uint32_t event_size) {
    PC_ASSERT(event_size > 0);
    PC_ASSERT(body_size <= PC_MESSAGE_BODY_MAX);
    if (body_size == 0 || body_size % event_size != 0) return PC_EPROTO;
    if (body_size / event_size > PC_BATCH_EVENTS_MAX) return PC_ETOOBIG;
    return PC_OK;
}

int pc_request_verify(const pc_header_t *header, const void *body) {
    PC_ASSERT(header->size >= PC_HEADER_SIZE && header->size <= PC_REPLICA_MESSAGE_SIZE_MAX);
    uint32_t body_size = header->size - PC_HEADER_SIZE;
    PC_ASSERT(body != NULL || body_size == 0);
    if (header->command != PC_COMMAND_request) return PC_EPROTO;
    PC_ASSERT(header->size <= PC_MESSAGE_SIZE_MAX);
    /* Sessions are keyed by client id; 0 means "no client". */
    if (header->client == 0) return PC_EPROTO;
    if (!operation_known(header->operation)) return PC_EOPERATION;

    pc_operation_t operation = (pc_operation_t)header->operation;
    if (operation == PC_OP_register) {
        /* A register opens a session, so it cannot name one or carry events. */
        if (header->session != 0 || header->request != 0 || body_size != 0) return PC_EPROTO;
        return PC_OK;
    }
    if (operation == PC_OP_authenticate) {
        /* Sent per connection before register, so it has no session either;
         * its one event is the key text, exactly. */
        if (header->session != 0 || header->request != 0) return PC_EPROTO;
        return body_size == PC_KEY_TEXT_LEN ? PC_OK : PC_EPROTO;
    }
    if (operation == PC_OP_replica_status) {
        /* A question to one replica, outside any session: nothing to carry. */
        if (header->session != 0 || header->request != 0 || body_size != 0) return PC_EPROTO;
        return PC_OK;
    }
    if (header->session == 0 || header->request == 0) return PC_EPROTO;
    if (pc_operation_single_event(operation))
        return body_size == pc_operation_event_size(operation) ? PC_OK : PC_EPROTO;
    return events_verify(body_size, pc_operation_event_size(operation));
}

bool pc_operation_single_event(pc_operation_t operation) {
    switch (operation) {
    case PC_OP_get_account_transfers:
    case PC_OP_get_xts_legs:
    case PC_OP_set_routing: /* one unit, one table: a batch of them means nothing */
    case PC_OP_set_cluster:
    case PC_OP_get_cluster:
    case PC_OP_get_totals:
    case PC_OP_shadow_purge:
    case PC_OP_list_accounts:
    case PC_OP_authenticate: return true;
    default: return false;
    }
}

int pc_header_mac_verify(const pc_header_t *header, const void *body, pc_cluster_key_t *key) {
    PC_ASSERT(key != NULL);
    PC_ASSERT(header->size >= PC_HEADER_SIZE && header->size <= PC_REPLICA_MESSAGE_SIZE_MAX);
    if ((header->flags & PC_HEADER_MAC) == 0) return PC_EMAC;
    uint8_t mac[PC_HEADER_MAC_SIZE];
    pc__cluster_key_mac(key, header, body, header->size - PC_HEADER_SIZE, mac);
    /* Constant time: how many leading bytes matched must not leak. */
    uint8_t diff = 0;
    for (uint32_t i = 0; i < PC_HEADER_MAC_SIZE; i++)
        diff |= (uint8_t)(mac[i] ^ header->reserved[i]);
    return diff == 0 ? PC_OK : PC_EMAC;
}
