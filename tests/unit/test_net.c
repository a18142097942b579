/* Unit tests of src/net: header seal/verify (every rejection by name), request
 * semantics, the framing reader (byte at a time, batched, truncated, garbage,
 * alignment, compaction), the writer, and sockets on loopback. */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../../src/net/net.h"
#include "test.h"

/* A sealed message in its own aligned buffer: header then body. */
typedef struct message {
    uint8_t *bytes;
    pc_header_t *header;
    uint8_t *body;
    uint32_t body_size;
} message_t;

static message_t message_make(uint8_t command, uint8_t operation, uint32_t body_size,
                              uint64_t session, uint64_t request) {
    message_t m;
    m.bytes = aligned_alloc(16, PC_HEADER_SIZE + (body_size + 15) / 16 * 16);
    ASSERT_TRUE(m.bytes != NULL);
    memset(m.bytes, 0, PC_HEADER_SIZE);
    m.header = (pc_header_t *)m.bytes;
    m.body = m.bytes + PC_HEADER_SIZE;
    m.body_size = body_size;
    for (uint32_t i = 0; i < body_size; i++) m.body[i] = (uint8_t)(i * 31 + request);
    m.header->command = command;
    m.header->operation = operation;
    m.header->client = ((pc_u128)0xabcdef << 64) | 42;
    m.header->session = session;
    m.header->request = request;
    m.header->cluster = 9;
    pc_header_seal(m.header, m.body, body_size);
    return m;
}

static message_t request_make(pc_operation_t op, uint32_t body_size) {
    return message_make(PC_COMMAND_request, (uint8_t)op, body_size, 7, 1);
}

static void message_free(message_t *m) { free(m->bytes); }

/* Re-seals only the header checksum: a well-formed frame whose fields lie. */
static void reseal_header(pc_header_t *h) {
    h->checksum = pc_checksum((uint8_t *)h + 16, PC_HEADER_SIZE - 16, 0);
}

static void test_header_layout(void) {
    ASSERT_EQ(sizeof(pc_header_t), 128);
    ASSERT_EQ(pc_operation_event_size(PC_OP_create_accounts), 128);
    ASSERT_EQ(pc_operation_event_size(PC_OP_create_transfers), 128);
    ASSERT_EQ(pc_operation_event_size(PC_OP_lookup_accounts), 16);
    ASSERT_EQ(pc_operation_event_size(PC_OP_lookup_transfers), 16);
    ASSERT_EQ(pc_operation_event_size(PC_OP_get_account_transfers), 64);
    ASSERT_EQ(pc_operation_event_size(PC_OP_register), 0);
    ASSERT_EQ(pc_operation_event_size((pc_operation_t)99), 0);
    ASSERT_EQ(pc_operation_reply_record_size(PC_OP_create_accounts), 8);
    ASSERT_EQ(pc_operation_reply_record_size(PC_OP_create_transfers), 8);
    ASSERT_EQ(pc_operation_reply_record_size(PC_OP_lookup_accounts), 128);
    ASSERT_EQ(pc_operation_reply_record_size(PC_OP_lookup_transfers), 128);
    ASSERT_EQ(pc_operation_reply_record_size(PC_OP_get_account_transfers), 128);
    ASSERT_EQ(pc_operation_reply_record_size(PC_OP_register), 0);
    ASSERT_EQ(pc_operation_event_size(PC_OP_set_routing), 128);
    ASSERT_EQ(pc_operation_reply_record_size(PC_OP_set_routing), 8);
    ASSERT_EQ(offsetof(pc_header_t, epoch), 104);
    ASSERT_EQ(sizeof(((pc_header_t *)0)->reserved), 16);
}

/* Writes go through the log and the session table; everything else is a
 * read served at once. */
static void test_operation_is_write(void) {
    ASSERT_TRUE(pc_operation_is_write(PC_OP_register));
    ASSERT_TRUE(pc_operation_is_write(PC_OP_create_accounts));
    ASSERT_TRUE(pc_operation_is_write(PC_OP_create_transfers));
    ASSERT_TRUE(pc_operation_is_write(PC_OP_set_routing));
    ASSERT_TRUE(!pc_operation_is_write(PC_OP_lookup_accounts));
    ASSERT_TRUE(!pc_operation_is_write(PC_OP_lookup_transfers));
    ASSERT_TRUE(!pc_operation_is_write(PC_OP_get_account_transfers));
    ASSERT_TRUE(!pc_operation_is_write(PC_OP_none));
    ASSERT_TRUE(!pc_operation_is_write((pc_operation_t)99));
    ASSERT_STREQ(pc_operation_name(PC_OP_set_routing), "set_routing");
}

static void test_seal_verify_roundtrip(void) {
    message_t m = request_make(PC_OP_create_transfers, 3 * 128);
    ASSERT_EQ(m.header->size, 128 + 3 * 128);
    ASSERT_EQ(m.header->magic, PC_MAGIC);
    ASSERT_EQ(m.header->version, PC_PROTOCOL_VERSION);
    ASSERT_EQ(pc_header_verify(m.header), PC_OK);
    ASSERT_EQ(pc_body_verify(m.header, m.body), PC_OK);
    ASSERT_EQ(pc_request_verify(m.header, m.body), PC_OK);
    ASSERT_EQ(m.header->session, 7);
    ASSERT_EQ(m.header->cluster, 9);
    ASSERT_EQ_U128(m.header->checksum_body, pc_checksum(m.body, 3 * 128, 0));
    message_free(&m);

    message_t reg = message_make(PC_COMMAND_request, PC_OP_register, 0, 0, 0);
    ASSERT_EQ(pc_header_verify(reg.header), PC_OK);
    ASSERT_EQ(pc_body_verify(reg.header, reg.body), PC_OK);
    ASSERT_EQ(pc_request_verify(reg.header, reg.body), PC_OK);
    message_free(&reg);

    message_t err = message_make(PC_COMMAND_reply, PC_OP_create_transfers, 0, 7, 1);
    err.header->status = PC_ESESSION_EVICTED;
    pc_header_seal(err.header, NULL, 0);
    ASSERT_EQ(pc_header_verify(err.header), PC_OK);
    message_free(&err);
}

static void test_verify_bad_checksum(void) {
    message_t m = request_make(PC_OP_create_transfers, 128);
    m.header->session ^= 1; /* any field after the checksum */
    ASSERT_EQ(pc_header_verify(m.header), PC_ECHECKSUM);
    m.header->session ^= 1;
    ASSERT_EQ(pc_header_verify(m.header), PC_OK);
    m.bytes[0] ^= 0x80; /* the checksum itself */
    ASSERT_EQ(pc_header_verify(m.header), PC_ECHECKSUM);
    message_free(&m);
}

static void test_verify_bad_body_checksum(void) {
    message_t m = request_make(PC_OP_create_transfers, 2 * 128);
    m.body[200] ^= 1;
    ASSERT_EQ(pc_header_verify(m.header), PC_OK);
    ASSERT_EQ(pc_body_verify(m.header, m.body), PC_ECHECKSUM);
    message_free(&m);
}

static void test_verify_bad_magic(void) {
    message_t m = request_make(PC_OP_create_transfers, 128);
    m.header->magic = 0x12345678;
    reseal_header(m.header);
    ASSERT_EQ(pc_header_verify(m.header), PC_EPROTO);
    message_free(&m);
}

static void test_verify_bad_version(void) {
    message_t m = request_make(PC_OP_create_transfers, 128);
    m.header->version = PC_PROTOCOL_VERSION + 1;
    reseal_header(m.header);
    ASSERT_EQ(pc_header_verify(m.header), PC_EVERSION);
    message_free(&m);
}

static void test_verify_size_bounds(void) {
    message_t m = request_make(PC_OP_create_transfers, 128);
    m.header->size = 127;
    reseal_header(m.header);
    ASSERT_EQ(pc_header_verify(m.header), PC_EPROTO);
    m.header->size = 0;
    reseal_header(m.header);
    ASSERT_EQ(pc_header_verify(m.header), PC_EPROTO);
    m.header->size = PC_MESSAGE_SIZE_MAX + 1;
    reseal_header(m.header);
    ASSERT_EQ(pc_header_verify(m.header), PC_ETOOBIG);
    m.header->size = UINT32_MAX;
    reseal_header(m.header);
    ASSERT_EQ(pc_header_verify(m.header), PC_ETOOBIG);
    m.header->size = PC_MESSAGE_SIZE_MAX; /* the boundary itself is fine */
    reseal_header(m.header);
    ASSERT_EQ(pc_header_verify(m.header), PC_OK);
    message_free(&m);
}

static void test_verify_unknown_command(void) {
    message_t m = request_make(PC_OP_create_transfers, 128);
    uint8_t commands[] = {0, 4, 255};
    for (size_t i = 0; i < PC_ARRAY_LEN(commands); i++) {
        m.header->command = commands[i];
        reseal_header(m.header);
        ASSERT_EQ(pc_header_verify(m.header), PC_EPROTO);
    }
    message_free(&m);
}

static void test_verify_reserved_nonzero(void) {
    message_t m = request_make(PC_OP_create_transfers, 128);
    for (size_t i = 0; i < sizeof(m.header->reserved); i++) {
        m.header->reserved[i] = 1;
        reseal_header(m.header);
        ASSERT_EQ(pc_header_verify(m.header), PC_EPROTO);
        m.header->reserved[i] = 0;
    }
    m.header->flags = 1u << 5; /* an undefined flag is reserved too */
    reseal_header(m.header);
    ASSERT_EQ(pc_header_verify(m.header), PC_EPROTO);
    m.header->flags = PC_HEADER_SHADOW;
    reseal_header(m.header);
    ASSERT_EQ(pc_header_verify(m.header), PC_OK);
    message_free(&m);
}

static void test_verify_status(void) {
    message_t m = request_make(PC_OP_create_transfers, 128);
    m.header->status = PC_EBUSY; /* a request carries no status */
    reseal_header(m.header);
    ASSERT_EQ(pc_header_verify(m.header), PC_EPROTO);
    message_free(&m);

    message_t r = message_make(PC_COMMAND_reply, PC_OP_create_transfers, 8, 7, 1);
    ASSERT_EQ(pc_header_verify(r.header), PC_OK);
    r.header->status = PC_EBUSY; /* an error reply with a body */
    reseal_header(r.header);
    ASSERT_EQ(pc_header_verify(r.header), PC_EPROTO);
    r.header->status = 5; /* positive is not a pc_err */
    reseal_header(r.header);
    ASSERT_EQ(pc_header_verify(r.header), PC_EPROTO);
    message_free(&r);
}

/* authenticate: sent before register, so session 0 and request 0, and
 * exactly one key's worth of body. */
static void test_request_authenticate(void) {
    static const struct {
        uint32_t body_size;
        uint64_t session, request;
        int want;
    } cases[] = {
        {PC_KEY_TEXT_LEN, 0, 0, PC_OK},
        {PC_KEY_TEXT_LEN - 1, 0, 0, PC_EPROTO},
        {PC_KEY_TEXT_LEN + 1, 0, 0, PC_EPROTO},
        {2 * PC_KEY_TEXT_LEN, 0, 0, PC_EPROTO},
        {0, 0, 0, PC_EPROTO},
        {PC_KEY_TEXT_LEN, 7, 0, PC_EPROTO},
        {PC_KEY_TEXT_LEN, 0, 1, PC_EPROTO},
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(cases); i++) {
        message_t m = message_make(PC_COMMAND_request, PC_OP_authenticate, cases[i].body_size,
                                   cases[i].session, cases[i].request);
        ASSERT_EQ(pc_header_verify(m.header), PC_OK);
        ASSERT_EQ(pc_request_verify(m.header, m.body), cases[i].want);
        message_free(&m);
    }
    ASSERT_EQ(pc_operation_event_size(PC_OP_authenticate), PC_KEY_TEXT_LEN);
    ASSERT_EQ(pc_operation_reply_record_size(PC_OP_authenticate), 0);
    ASSERT_TRUE(!pc_operation_is_write(PC_OP_authenticate)); /* never logged */
    ASSERT_TRUE(strcmp(pc_operation_name(PC_OP_authenticate), "authenticate") == 0);
}

/* replica_status: no session, no request number, no body; its reply is one
 * 128-byte pc_replica_status_t, laid out as the wire says. */
static void test_request_replica_status(void) {
    static const struct {
        uint32_t body_size;
        uint64_t session, request;
        int want;
    } cases[] = {
        {0, 0, 0, PC_OK},
        {16, 0, 0, PC_EPROTO},  /* a body, even one zero u128 */
        {128, 0, 0, PC_EPROTO}, /* a body the size of its reply */
        {0, 7, 0, PC_EPROTO},   /* a session */
        {0, 0, 1, PC_EPROTO},   /* a request number */
        {0, 7, 1, PC_EPROTO},
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(cases); i++) {
        message_t m = message_make(PC_COMMAND_request, PC_OP_replica_status, cases[i].body_size,
                                   cases[i].session, cases[i].request);
        ASSERT_EQ(pc_header_verify(m.header), PC_OK);
        ASSERT_EQ(pc_request_verify(m.header, m.body), cases[i].want);
        message_free(&m);
    }
    /* "No client" is malformed here as everywhere. */
    message_t anonymous = message_make(PC_COMMAND_request, PC_OP_replica_status, 0, 0, 0);
    anonymous.header->client = 0;
    pc_header_seal(anonymous.header, NULL, 0);
    ASSERT_EQ(pc_request_verify(anonymous.header, anonymous.body), PC_EPROTO);
    message_free(&anonymous);
    ASSERT_EQ(PC_OP_replica_status, 18);
    ASSERT_EQ(pc_operation_event_size(PC_OP_replica_status), 0);
    ASSERT_EQ(pc_operation_reply_record_size(PC_OP_replica_status), 128);
    ASSERT_TRUE(!pc_operation_is_write(PC_OP_replica_status)); /* never logged */
    ASSERT_STREQ(pc_operation_name(PC_OP_replica_status), "replica_status");
    ASSERT_EQ(sizeof(pc_replica_status_t), 128);
    ASSERT_EQ(offsetof(pc_replica_status_t, cluster), 0);
    ASSERT_EQ(offsetof(pc_replica_status_t, op), 8);
    ASSERT_EQ(offsetof(pc_replica_status_t, commit_op), 16);
    ASSERT_EQ(offsetof(pc_replica_status_t, commit_max), 24);
    ASSERT_EQ(offsetof(pc_replica_status_t, checkpoint_op), 32);
    ASSERT_EQ(offsetof(pc_replica_status_t, nospace_refused), 40);
    ASSERT_EQ(offsetof(pc_replica_status_t, view), 48);
    ASSERT_EQ(offsetof(pc_replica_status_t, unit), 52);
    ASSERT_EQ(offsetof(pc_replica_status_t, replica), 56);
    ASSERT_EQ(offsetof(pc_replica_status_t, replica_count), 57);
    ASSERT_EQ(offsetof(pc_replica_status_t, state), 58);
    ASSERT_EQ(offsetof(pc_replica_status_t, primary), 59);
    ASSERT_EQ(offsetof(pc_replica_status_t, disk_full), 60);
    ASSERT_EQ(offsetof(pc_replica_status_t, reserved), 61);
    ASSERT_STREQ(pc_replica_state_name(PC_REPLICA_STATE_normal), "normal");
    ASSERT_STREQ(pc_replica_state_name(PC_REPLICA_STATE_view_change), "view_change");
    ASSERT_STREQ(pc_replica_state_name(PC_REPLICA_STATE_recovering), "recovering");
    ASSERT_TRUE(pc_replica_state_name(0) == NULL);
    /* A reply with one status record, keyed and not, passes the framing
     * checks; keyed, its MAC covers the record. */
    message_t reply = message_make(PC_COMMAND_reply, PC_OP_replica_status, 128, 0, 0);
    ASSERT_EQ(pc_header_verify(reply.header), PC_OK);
    ASSERT_EQ(pc_body_verify(reply.header, reply.body), PC_OK);
    uint8_t bytes[PC_CLUSTER_KEY_SIZE];
    memset(bytes, 0x5a, sizeof bytes);
    pc_cluster_key_t *key = NULL;
    ASSERT_EQ(pc_cluster_key_init(bytes, &key), PC_OK);
    pc_header_seal_keyed(reply.header, reply.body, 128, key);
    ASSERT_EQ(pc_header_verify(reply.header), PC_OK);
    ASSERT_EQ(pc_header_mac_verify(reply.header, reply.body, key), PC_OK);
    reply.body[60] ^= 1; /* disk_full flipped on the way */
    ASSERT_EQ(pc_body_verify(reply.header, reply.body), PC_ECHECKSUM);
    ASSERT_EQ(pc_header_mac_verify(reply.header, reply.body, key), PC_EMAC);
    pc_cluster_key_free(key);
    message_free(&reply);
}

static void test_request_unknown_operation(void) {
    uint8_t ops[] = {0, 19, 200};
    for (size_t i = 0; i < PC_ARRAY_LEN(ops); i++) {
        message_t m = message_make(PC_COMMAND_request, ops[i], 128, 7, 1);
        ASSERT_EQ(pc_header_verify(m.header), PC_OK);
        ASSERT_EQ(pc_request_verify(m.header, m.body), PC_EOPERATION);
        message_free(&m);
    }
}

/* The epoch field belongs to replies: a request (or a replica frame) with
 * one is malformed, a reply may carry any. */
static void test_verify_epoch(void) {
    message_t m = request_make(PC_OP_create_transfers, 128);
    m.header->epoch = 1;
    reseal_header(m.header);
    ASSERT_EQ(pc_header_verify(m.header), PC_EPROTO);
    m.header->epoch = UINT64_MAX;
    reseal_header(m.header);
    ASSERT_EQ(pc_header_verify(m.header), PC_EPROTO);
    m.header->epoch = 0;
    reseal_header(m.header);
    ASSERT_EQ(pc_header_verify(m.header), PC_OK);
    message_free(&m);

    message_t f = message_make(PC_COMMAND_replica, 1, 16, 0, 0);
    f.header->epoch = 3;
    reseal_header(f.header);
    ASSERT_EQ(pc_header_verify(f.header), PC_EPROTO);
    message_free(&f);

    message_t r = message_make(PC_COMMAND_reply, PC_OP_create_transfers, 8, 7, 1);
    r.header->epoch = 12345;
    reseal_header(r.header);
    ASSERT_EQ(pc_header_verify(r.header), PC_OK);
    message_free(&r);
}

/* set_routing carries exactly one 128-byte record. */
static void test_request_set_routing(void) {
    message_t one = request_make(PC_OP_set_routing, 128);
    ASSERT_EQ(pc_header_verify(one.header), PC_OK);
    ASSERT_EQ(pc_request_verify(one.header, one.body), PC_OK);
    message_free(&one);
    uint32_t bad[] = {0, 64, 127, 129, 256, 128 * 3};
    for (size_t i = 0; i < PC_ARRAY_LEN(bad); i++) {
        message_t m = request_make(PC_OP_set_routing, bad[i]);
        ASSERT_EQ(pc_request_verify(m.header, m.body), PC_EPROTO);
        message_free(&m);
    }
    message_t nosession = message_make(PC_COMMAND_request, PC_OP_set_routing, 128, 0, 1);
    ASSERT_EQ(pc_request_verify(nosession.header, nosession.body), PC_EPROTO);
    message_free(&nosession);
}

static void test_request_body_not_multiple(void) {
    message_t a = request_make(PC_OP_create_transfers, 130);
    ASSERT_EQ(pc_request_verify(a.header, a.body), PC_EPROTO);
    message_free(&a);
    message_t b = request_make(PC_OP_create_accounts, 127);
    ASSERT_EQ(pc_request_verify(b.header, b.body), PC_EPROTO);
    message_free(&b);
    message_t c = request_make(PC_OP_lookup_accounts, 24);
    ASSERT_EQ(pc_request_verify(c.header, c.body), PC_EPROTO);
    message_free(&c);
    message_t d = request_make(PC_OP_get_account_transfers, 128); /* two filters */
    ASSERT_EQ(pc_request_verify(d.header, d.body), PC_EPROTO);
    message_free(&d);
    message_t e = request_make(PC_OP_get_account_transfers, 64);
    ASSERT_EQ(pc_request_verify(e.header, e.body), PC_OK);
    message_free(&e);
}

static void test_request_zero_events(void) {
    pc_operation_t ops[] = {PC_OP_create_accounts, PC_OP_create_transfers,
                            PC_OP_lookup_accounts, PC_OP_lookup_transfers,
                            PC_OP_get_account_transfers};
    for (size_t i = 0; i < PC_ARRAY_LEN(ops); i++) {
        message_t m = request_make(ops[i], 0);
        ASSERT_EQ(pc_header_verify(m.header), PC_OK);
        ASSERT_EQ(pc_request_verify(m.header, m.body), PC_EPROTO);
        message_free(&m);
    }
}

static void test_request_too_many_events(void) {
    message_t max = request_make(PC_OP_create_transfers, PC_BATCH_EVENTS_MAX * 128);
    ASSERT_EQ(pc_header_verify(max.header), PC_OK);
    ASSERT_EQ(pc_request_verify(max.header, max.body), PC_OK);
    message_free(&max);
    message_t over = request_make(PC_OP_create_transfers, (PC_BATCH_EVENTS_MAX + 1) * 128);
    ASSERT_EQ(pc_header_verify(over.header), PC_OK); /* still fits one message */
    ASSERT_EQ(pc_request_verify(over.header, over.body), PC_ETOOBIG);
    message_free(&over);
    message_t ids = request_make(PC_OP_lookup_transfers, (PC_BATCH_EVENTS_MAX + 1) * 16);
    ASSERT_EQ(pc_request_verify(ids.header, ids.body), PC_ETOOBIG);
    message_free(&ids);
    message_t ids_max = request_make(PC_OP_lookup_accounts, PC_BATCH_EVENTS_MAX * 16);
    ASSERT_EQ(pc_request_verify(ids_max.header, ids_max.body), PC_OK);
    message_free(&ids_max);
}

static void test_request_register_rules(void) {
    message_t body = message_make(PC_COMMAND_request, PC_OP_register, 16, 0, 0);
    ASSERT_EQ(pc_request_verify(body.header, body.body), PC_EPROTO);
    message_free(&body);
    message_t session = message_make(PC_COMMAND_request, PC_OP_register, 0, 7, 0);
    ASSERT_EQ(pc_request_verify(session.header, session.body), PC_EPROTO);
    message_free(&session);
    message_t request = message_make(PC_COMMAND_request, PC_OP_register, 0, 0, 3);
    ASSERT_EQ(pc_request_verify(request.header, request.body), PC_EPROTO);
    message_free(&request);
    message_t anonymous = message_make(PC_COMMAND_request, PC_OP_register, 0, 0, 0);
    ASSERT_EQ(pc_request_verify(anonymous.header, anonymous.body), PC_OK);
    anonymous.header->client = 0; /* sessions are keyed by client id: 0 is refused */
    pc_header_seal(anonymous.header, anonymous.body, 0);
    ASSERT_EQ(pc_request_verify(anonymous.header, anonymous.body), PC_EPROTO);
    message_free(&anonymous);
}

static void test_request_session_zero(void) {
    message_t m = message_make(PC_COMMAND_request, PC_OP_create_transfers, 128, 0, 1);
    ASSERT_EQ(pc_header_verify(m.header), PC_OK);
    ASSERT_EQ(pc_request_verify(m.header, m.body), PC_EPROTO);
    message_free(&m);
    message_t r = message_make(PC_COMMAND_request, PC_OP_create_accounts, 128, 7, 0);
    ASSERT_EQ(pc_request_verify(r.header, r.body), PC_EPROTO);
    message_free(&r);
}

static void test_request_reply_rejected(void) {
    message_t m = message_make(PC_COMMAND_reply, PC_OP_create_transfers, 8, 7, 1);
    ASSERT_EQ(pc_header_verify(m.header), PC_OK);
    ASSERT_EQ(pc_request_verify(m.header, m.body), PC_EPROTO);
    message_free(&m);
}

/* ---- reader ---- */

/* A stream of n messages with mixed body sizes (8-byte bodies put the next
 * header off 16-byte alignment); request numbers are 1..n. */
static uint8_t *stream_make(uint32_t n, uint32_t *size_out) {
    static const uint32_t bodies[] = {8, 0, 3 * 128, 16, 24, 64, 8 * 5};
    uint32_t size = 0;
    for (uint32_t i = 0; i < n; i++) size += 128 + bodies[i % PC_ARRAY_LEN(bodies)];
    uint8_t *stream = malloc(size);
    ASSERT_TRUE(stream != NULL);
    uint32_t at = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t body = bodies[i % PC_ARRAY_LEN(bodies)];
        message_t m = message_make(PC_COMMAND_reply, PC_OP_create_transfers, body, 7, i + 1);
        memcpy(stream + at, m.bytes, 128 + body);
        at += 128 + body;
        message_free(&m);
    }
    *size_out = size;
    return stream;
}

/* Checks a message the reader returned: aligned, the expected one, intact. */
static void check_message(const pc_header_t *h, const void *body, uint64_t request) {
    ASSERT_EQ((uintptr_t)h % 16, 0);
    ASSERT_EQ((uintptr_t)body % 16, 0);
    ASSERT_EQ(h->request, request);
    ASSERT_EQ(pc_header_verify(h), PC_OK);
    ASSERT_EQ(pc_body_verify(h, body), PC_OK);
    const uint8_t *b = body;
    for (uint32_t i = 0; i < h->size - 128; i++) ASSERT_EQ(b[i], (uint8_t)(i * 31 + request));
}

static void test_reader_byte_at_a_time(void) {
    uint32_t size = 0;
    uint8_t *stream = stream_make(9, &size);
    pc_reader_t r;
    ASSERT_EQ(pc_reader_init(&r), PC_OK);
    uint64_t got = 0;
    uint32_t message_end = 0;
    for (uint32_t i = 0; i < size; i++) {
        ASSERT_EQ(pc_reader_feed(&r, stream + i, 1), 1);
        const pc_header_t *h;
        const void *body;
        int rc = pc_reader_next(&r, &h, &body);
        ASSERT_TRUE(rc == 0 || rc == 1);
        if (rc == 1) {
            got++;
            check_message(h, body, got);
            message_end += h->size;
            ASSERT_EQ(message_end, i + 1); /* yielded on its very last byte */
        }
    }
    ASSERT_EQ(got, 9);
    ASSERT_EQ(pc_reader_buffered(&r), 0);
    pc_reader_deinit(&r);
    free(stream);
}

static void test_reader_two_in_one_feed(void) {
    uint32_t size = 0;
    uint8_t *stream = stream_make(2, &size);
    pc_reader_t r;
    ASSERT_EQ(pc_reader_init(&r), PC_OK);
    ASSERT_EQ(pc_reader_feed(&r, stream, size), (int)size);
    const pc_header_t *h;
    const void *body;
    ASSERT_EQ(pc_reader_next(&r, &h, &body), 1);
    check_message(h, body, 1);
    ASSERT_EQ(pc_reader_next(&r, &h, &body), 1);
    check_message(h, body, 2);
    ASSERT_EQ(pc_reader_next(&r, &h, &body), 0);
    ASSERT_EQ(pc_reader_next(&r, &h, &body), 0);
    pc_reader_deinit(&r);
    free(stream);
}

static void test_reader_truncated_pending(void) {
    message_t m = request_make(PC_OP_create_transfers, 4 * 128);
    pc_reader_t r;
    ASSERT_EQ(pc_reader_init(&r), PC_OK);
    const pc_header_t *h;
    const void *body;
    ASSERT_EQ(pc_reader_feed(&r, m.bytes, 100), 100); /* a partial header */
    ASSERT_EQ(pc_reader_next(&r, &h, &body), 0);
    ASSERT_EQ(pc_reader_feed(&r, m.bytes + 100, m.header->size - 101), (int)m.header->size - 101);
    for (int i = 0; i < 3; i++) ASSERT_EQ(pc_reader_next(&r, &h, &body), 0);
    ASSERT_EQ(pc_reader_buffered(&r), m.header->size - 1);
    ASSERT_EQ(pc_reader_feed(&r, m.bytes + m.header->size - 1, 1), 1);
    ASSERT_EQ(pc_reader_next(&r, &h, &body), 1);
    ASSERT_EQ(h->size, m.header->size);
    ASSERT_EQ(pc_body_verify(h, body), PC_OK);
    pc_reader_deinit(&r);
    message_free(&m);
}

static void test_reader_garbage_stream(void) {
    pc_prng_t prng;
    pc_prng_init(&prng, 7);
    uint8_t chunk[4096];
    for (int round = 0; round < 64; round++) {
        pc_reader_t r;
        ASSERT_EQ(pc_reader_init(&r), PC_OK);
        int rc = 0;
        for (int i = 0; i < 300 && rc >= 0; i++) {
            uint32_t n = (uint32_t)pc_prng_below(&prng, sizeof(chunk)) + 1;
            for (uint32_t j = 0; j < n; j++) chunk[j] = (uint8_t)pc_prng_next(&prng);
            rc = pc_reader_feed(&r, chunk, n);
            const pc_header_t *h;
            const void *body;
            if (rc >= 0) rc = pc_reader_next(&r, &h, &body);
        }
        ASSERT_EQ(rc, PC_ECHECKSUM);
        /* Framing is lost for good: the error sticks. */
        const pc_header_t *h;
        const void *body;
        ASSERT_EQ(pc_reader_next(&r, &h, &body), PC_ECHECKSUM);
        ASSERT_EQ(pc_reader_feed(&r, chunk, 1), PC_ECHECKSUM);
        pc_reader_reset(&r);
        ASSERT_EQ(pc_reader_next(&r, &h, &body), 0);
        pc_reader_deinit(&r);
    }
}

/* A size field is trusted only after the checksum: a corrupted size fails at
 * once instead of making the reader wait for bytes that never come. */
static void test_reader_corrupt_size_not_trusted(void) {
    message_t m = request_make(PC_OP_create_transfers, 128);
    m.header->size = PC_MESSAGE_SIZE_MAX; /* not resealed */
    pc_reader_t r;
    ASSERT_EQ(pc_reader_init(&r), PC_OK);
    ASSERT_EQ(pc_reader_feed(&r, m.bytes, 128), 128);
    const pc_header_t *h;
    const void *body;
    ASSERT_EQ(pc_reader_next(&r, &h, &body), PC_ECHECKSUM);
    pc_reader_deinit(&r);

    message_t b = request_make(PC_OP_create_transfers, 128);
    b.body[5] ^= 1;
    ASSERT_EQ(pc_reader_init(&r), PC_OK);
    ASSERT_EQ(pc_reader_feed(&r, b.bytes, b.header->size), (int)b.header->size);
    ASSERT_EQ(pc_reader_next(&r, &h, &body), PC_ECHECKSUM);
    pc_reader_deinit(&r);
    message_free(&m);
    message_free(&b);
}

/* Many small misaligned messages through the buffer in uneven chunks: every
 * one comes out aligned and intact, in order, across compactions. */
static void test_reader_long_stream(void) {
    uint32_t size = 0, n = 30000;
    uint8_t *stream = stream_make(n, &size);
    ASSERT_TRUE(size > 3 * PC_MESSAGE_SIZE_MAX);
    pc_reader_t r;
    ASSERT_EQ(pc_reader_init(&r), PC_OK);
    pc_prng_t prng;
    pc_prng_init(&prng, 11);
    uint64_t got = 0;
    for (uint32_t at = 0; at < size;) {
        uint32_t want = (uint32_t)pc_prng_below(&prng, 200000) + 1;
        bool room = r.len < PC_MESSAGE_SIZE_MAX; /* the contract callers gate fills on */
        int fed = pc_reader_feed(&r, stream + at, PC_MIN(want, size - at));
        ASSERT_TRUE(fed >= 0);
        ASSERT_TRUE(!room || fed > 0);
        ASSERT_TRUE(r.len <= PC_MESSAGE_SIZE_MAX);
        at += (uint32_t)fed;
        const pc_header_t *h;
        const void *body;
        while (pc_reader_next(&r, &h, &body) == 1) check_message(h, body, ++got);
    }
    ASSERT_EQ(got, n);
    pc_reader_deinit(&r);
    free(stream);
}

static void test_reader_max_messages(void) {
    message_t big = request_make(PC_OP_create_transfers, PC_MESSAGE_BODY_MAX);
    message_t small = message_make(PC_COMMAND_reply, PC_OP_create_transfers, 8, 7, 2);
    pc_reader_t r;
    ASSERT_EQ(pc_reader_init(&r), PC_OK);
    const pc_header_t *h;
    const void *body;
    /* small, then big straddling the buffer end: forces a compaction. */
    ASSERT_EQ(pc_reader_feed(&r, small.bytes, 136), 136);
    ASSERT_EQ(pc_reader_feed(&r, big.bytes, 1000), 1000);
    ASSERT_EQ(pc_reader_next(&r, &h, &body), 1);
    ASSERT_EQ(h->request, 2);
    uint32_t at = 1000;
    int rc = 0;
    for (int i = 0; i < 4 && rc == 0; i++) {
        bool room = r.len < PC_MESSAGE_SIZE_MAX;
        int fed = pc_reader_feed(&r, big.bytes + at, big.header->size - at);
        ASSERT_TRUE(fed >= 0);
        ASSERT_TRUE(!room || fed > 0);
        at += (uint32_t)fed;
        rc = pc_reader_next(&r, &h, &body);
    }
    ASSERT_EQ(rc, 1);
    ASSERT_EQ(h->size, PC_MESSAGE_SIZE_MAX);
    ASSERT_EQ(memcmp(body, big.body, PC_MESSAGE_BODY_MAX), 0);
    ASSERT_EQ(pc_reader_next(&r, &h, &body), 0);
    pc_reader_deinit(&r);

    /* A full buffer takes nothing until its message is consumed. */
    ASSERT_EQ(pc_reader_init(&r), PC_OK);
    ASSERT_EQ(pc_reader_feed(&r, big.bytes, PC_MESSAGE_SIZE_MAX), (int)PC_MESSAGE_SIZE_MAX);
    ASSERT_EQ(pc_reader_feed(&r, small.bytes, 136), 0);
    ASSERT_EQ(pc_reader_next(&r, &h, &body), 1);
    ASSERT_EQ(h->size, PC_MESSAGE_SIZE_MAX);
    ASSERT_EQ(pc_reader_feed(&r, small.bytes, 136), 136);
    ASSERT_EQ(pc_reader_next(&r, &h, &body), 1);
    ASSERT_EQ(h->request, 2);
    pc_reader_deinit(&r);
    message_free(&big);
    message_free(&small);
}

/* ---- writer ---- */

static void test_writer_ebusy_when_full(void) {
    pc_writer_t w;
    ASSERT_EQ(pc_writer_init(&w, 1000), PC_OK);
    message_t m = request_make(PC_OP_create_transfers, 3 * 128);
    ASSERT_EQ(pc_writer_push(&w, m.header, m.body, m.body_size), PC_OK);
    ASSERT_EQ(pc_writer_pending(&w), 512);
    ASSERT_EQ(pc_writer_push(&w, m.header, m.body, m.body_size), PC_EBUSY);
    ASSERT_EQ(pc_writer_pending(&w), 512); /* a refused push leaves no trace */
    message_t s = request_make(PC_OP_lookup_accounts, 16);
    ASSERT_EQ(pc_writer_push(&w, s.header, s.body, s.body_size), PC_OK);
    ASSERT_EQ(pc_writer_pending(&w), 512 + 144);
    pc_writer_reset(&w);
    ASSERT_EQ(pc_writer_pending(&w), 0);
    pc_writer_deinit(&w);
    message_free(&m);
    message_free(&s);
}

/* Through a socket pair: flush, partial reads, compaction of sent bytes. */
static void test_writer_flush_socketpair(void) {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    pc_writer_t w;
    pc_reader_t r;
    ASSERT_EQ(pc_writer_init(&w, 3 * 512), PC_OK);
    ASSERT_EQ(pc_reader_init(&r), PC_OK);
    uint64_t sent = 0, got = 0;
    for (int round = 0; round < 200; round++) {
        message_t m = message_make(PC_COMMAND_reply, PC_OP_lookup_accounts, 384, 7, sent + 1);
        if (pc_writer_push(&w, m.header, m.body, m.body_size) == PC_OK) sent++;
        message_free(&m);
        ASSERT_TRUE(pc_writer_flush(&w, sv[0]) >= 0);
        int rc = pc_reader_fill(&r, sv[1]);
        ASSERT_TRUE(rc >= 0);
        const pc_header_t *h;
        const void *body;
        while (pc_reader_next(&r, &h, &body) == 1) check_message(h, body, ++got);
    }
    ASSERT_EQ(got, sent);
    ASSERT_TRUE(sent >= 100);
    close(sv[0]);
    ASSERT_EQ(pc_reader_fill(&r, sv[1]), PC_ECLOSED);
    message_t m = request_make(PC_OP_lookup_accounts, 16);
    ASSERT_EQ(pc_writer_push(&w, m.header, m.body, m.body_size), PC_OK);
    ASSERT_EQ(pc_writer_flush(&w, sv[1]), PC_ECLOSED);
    message_free(&m);
    close(sv[1]);
    pc_writer_deinit(&w);
    pc_reader_deinit(&r);
}

/* ---- sockets ---- */

static int accept_wait(int listen_fd) {
    for (int i = 0; i < 500; i++) {
        int fd = pc_net_accept(listen_fd);
        if (fd >= 0) return fd;
        ASSERT_EQ(fd, PC_EBUSY);
        struct pollfd p = {.fd = listen_fd, .events = POLLIN};
        poll(&p, 1, 10);
    }
    PC__TEST_FAIL("accept timed out");
}

static void test_socket_listen_connect_accept(void) {
    int lfd = -1, cfd = -1;
    ASSERT_EQ(pc_net_listen("127.0.0.1:0", &lfd), PC_OK);
    uint16_t port = 0;
    ASSERT_EQ(pc_net_local_port(lfd, &port), PC_OK);
    ASSERT_TRUE(port != 0);
    ASSERT_EQ(pc_net_accept(lfd), PC_EBUSY); /* nobody yet, and no blocking */
    char address[64];
    snprintf(address, sizeof(address), "127.0.0.1:%u", port);
    ASSERT_EQ(pc_net_connect(address, 1000, &cfd), PC_OK);
    int sfd = accept_wait(lfd);
    ASSERT_TRUE(fcntl(sfd, F_GETFL) & O_NONBLOCK);
    ASSERT_TRUE(fcntl(cfd, F_GETFL) & O_NONBLOCK);
    ASSERT_TRUE(fcntl(sfd, F_GETFD) & FD_CLOEXEC);
    int nodelay = 0;
    socklen_t len = sizeof(nodelay);
    ASSERT_EQ(getsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
    ASSERT_TRUE(nodelay != 0);

    /* A maximum message and a small one cross intact. */
    pc_writer_t w;
    pc_reader_t r;
    ASSERT_EQ(pc_writer_init(&w, 2 * PC_MESSAGE_SIZE_MAX), PC_OK);
    ASSERT_EQ(pc_reader_init(&r), PC_OK);
    message_t big = message_make(PC_COMMAND_request, PC_OP_create_transfers,
                                 PC_MESSAGE_BODY_MAX, 7, 1);
    message_t small = message_make(PC_COMMAND_request, PC_OP_lookup_accounts, 16, 7, 2);
    ASSERT_EQ(pc_writer_push(&w, big.header, big.body, big.body_size), PC_OK);
    ASSERT_EQ(pc_writer_push(&w, small.header, small.body, small.body_size), PC_OK);
    uint64_t got = 0;
    for (int i = 0; i < 100000 && got < 2; i++) {
        ASSERT_TRUE(pc_writer_flush(&w, cfd) >= 0);
        struct pollfd p = {.fd = sfd, .events = POLLIN};
        poll(&p, 1, 10);
        ASSERT_TRUE(pc_reader_fill(&r, sfd) >= 0);
        const pc_header_t *h;
        const void *body;
        while (pc_reader_next(&r, &h, &body) == 1) check_message(h, body, ++got);
    }
    ASSERT_EQ(got, 2);
    close(cfd);
    ASSERT_EQ(pc_reader_fill(&r, sfd), PC_ECLOSED);
    close(sfd);
    close(lfd);
    pc_writer_deinit(&w);
    pc_reader_deinit(&r);
    message_free(&big);
    message_free(&small);
}

static void test_socket_errors(void) {
    int fd = -1;
    ASSERT_EQ(pc_net_listen("nonsense", &fd), PC_EADDRESS);
    ASSERT_EQ(pc_net_listen(":0", &fd), PC_EADDRESS);
    ASSERT_EQ(pc_net_connect("127.0.0.1", 100, &fd), PC_EADDRESS);
    ASSERT_EQ(pc_net_connect("127.0.0.1:0", 100, &fd), PC_EADDRESS);
    /* A port nobody listens on: bind one, learn it, close it. */
    int lfd = -1;
    ASSERT_EQ(pc_net_listen("127.0.0.1:0", &lfd), PC_OK);
    uint16_t port = 0;
    ASSERT_EQ(pc_net_local_port(lfd, &port), PC_OK);
    close(lfd);
    char address[64];
    snprintf(address, sizeof(address), "127.0.0.1:%u", port);
    ASSERT_EQ(pc_net_connect(address, 1000, &fd), PC_ECONNREFUSED);
    snprintf(address, sizeof(address), "localhost:%u", port); /* a name, from /etc/hosts */
    ASSERT_EQ(pc_net_connect(address, 1000, &fd), PC_ECONNREFUSED);
    /* Two listeners on one port: the second fails. */
    ASSERT_EQ(pc_net_listen("127.0.0.1:0", &lfd), PC_OK);
    ASSERT_EQ(pc_net_local_port(lfd, &port), PC_OK);
    snprintf(address, sizeof(address), "127.0.0.1:%u", port);
    int lfd2 = -1;
    ASSERT_EQ(pc_net_listen(address, &lfd2), PC_EIO);
    close(lfd);
}

/* Replica frames may exceed a client message, up to their own bound, and a
 * reader takes one only after pc_reader_grow. */
static void test_replica_frame_size(void) {
    uint32_t body = PC_MESSAGE_SIZE_MAX + 4096;
    message_t m = message_make(PC_COMMAND_replica, 0, body, 0, 0);
    ASSERT_EQ(pc_header_verify(m.header), PC_OK);
    m.header->size = PC_REPLICA_MESSAGE_SIZE_MAX + 1;
    reseal_header(m.header);
    ASSERT_EQ(pc_header_verify(m.header), PC_ETOOBIG);
    m.header->size = PC_HEADER_SIZE + body;
    m.header->command = PC_COMMAND_request; /* a client frame that large is refused */
    reseal_header(m.header);
    ASSERT_EQ(pc_header_verify(m.header), PC_ETOOBIG);
    m.header->command = PC_COMMAND_replica;
    reseal_header(m.header);

    pc_reader_t r;
    ASSERT_EQ(pc_reader_init(&r), PC_OK);
    ASSERT_EQ(pc_reader_feed(&r, m.bytes, PC_HEADER_SIZE), (int)PC_HEADER_SIZE);
    const pc_header_t *h;
    const void *b;
    ASSERT_EQ(pc_reader_next(&r, &h, &b), PC_ETOOBIG); /* not grown: refused */
    pc_reader_deinit(&r);

    ASSERT_EQ(pc_reader_init(&r), PC_OK);
    ASSERT_EQ(pc_reader_feed(&r, m.bytes, 64), 64); /* bytes buffered before growing stay */
    ASSERT_EQ(pc_reader_grow(&r, PC_REPLICA_MESSAGE_SIZE_MAX), PC_OK);
    uint32_t fed = 64, total = PC_HEADER_SIZE + body;
    while (fed < total) {
        int n = pc_reader_feed(&r, m.bytes + fed, total - fed);
        ASSERT_TRUE(n > 0);
        fed += (uint32_t)n;
    }
    ASSERT_EQ(pc_reader_next(&r, &h, &b), 1);
    ASSERT_EQ(h->size, total);
    ASSERT_EQ(memcmp(b, m.body, body), 0);
    pc_reader_deinit(&r);
    message_free(&m);
}

/* ---- cluster key: the per-message MAC ---- */

static pc_cluster_key_t *key_make(uint8_t seed) {
    uint8_t bytes[PC_CLUSTER_KEY_SIZE];
    for (uint32_t i = 0; i < sizeof bytes; i++) bytes[i] = (uint8_t)(seed + i * 7);
    pc_cluster_key_t *key = NULL;
    ASSERT_EQ(pc_cluster_key_init(bytes, &key), PC_OK);
    ASSERT_TRUE(key != NULL);
    return key;
}

/* Re-seals both checksums after a change, so only the MAC can notice it:
 * what a forger who knows the protocol but not the key would send. */
static void reseal_checksums(message_t *m) {
    m->header->checksum_body = pc_checksum(m->body, m->body_size, 0);
    reseal_header(m->header);
    ASSERT_EQ(pc_header_verify(m->header), PC_OK);
    ASSERT_EQ(pc_body_verify(m->header, m->body), PC_OK);
}

static message_t keyed_make(pc_cluster_key_t *key, uint32_t body_size) {
    message_t m = request_make(PC_OP_create_transfers, body_size);
    pc_header_seal_keyed(m.header, m.body, body_size, key);
    return m;
}

static void test_mac_roundtrip(void) {
    pc_cluster_key_t *key = key_make(1);
    message_t m = keyed_make(key, 4 * 128);
    ASSERT_TRUE(m.header->flags & PC_HEADER_MAC);
    ASSERT_EQ(pc_header_verify(m.header), PC_OK);
    ASSERT_EQ(pc_body_verify(m.header, m.body), PC_OK);
    ASSERT_EQ(pc_request_verify(m.header, m.body), PC_OK);
    ASSERT_EQ(pc_header_mac_verify(m.header, m.body, key), PC_OK);
    /* The MAC is HMAC-SHA256 of header bytes 16..111 and the body,
     * truncated: checked against OpenSSL's own HMAC. */
    uint8_t bytes[PC_CLUSTER_KEY_SIZE], input[96 + 4 * 128], digest[32];
    for (uint32_t i = 0; i < sizeof bytes; i++) bytes[i] = (uint8_t)(1 + i * 7);
    memcpy(input, m.bytes + 16, 96);
    memcpy(input + 96, m.body, 4 * 128);
    unsigned int n = 0;
    ASSERT_TRUE(HMAC(EVP_sha256(), bytes, sizeof bytes, input, sizeof input, digest, &n) != NULL);
    ASSERT_EQ(n, 32);
    ASSERT_EQ(memcmp(digest, m.header->reserved, PC_HEADER_MAC_SIZE), 0);
    /* Empty bodies (register, hello) and replica frames up to the largest. */
    message_t e = message_make(PC_COMMAND_request, PC_OP_register, 0, 0, 0);
    pc_header_seal_keyed(e.header, e.body, 0, key);
    ASSERT_EQ(pc_header_verify(e.header), PC_OK);
    ASSERT_EQ(pc_header_mac_verify(e.header, e.body, key), PC_OK);
    uint32_t big = PC_REPLICA_MESSAGE_SIZE_MAX - PC_HEADER_SIZE;
    message_t f = message_make(PC_COMMAND_replica, 0, big, 0, 0);
    pc_header_seal_keyed(f.header, f.body, big, key);
    ASSERT_EQ(pc_header_verify(f.header), PC_OK);
    ASSERT_EQ(pc_header_mac_verify(f.header, f.body, key), PC_OK);
    message_free(&m);
    message_free(&e);
    message_free(&f);
    pc_cluster_key_free(key);
}

static void test_mac_flipped_bit_header(void) {
    pc_cluster_key_t *key = key_make(2);
    message_t m = keyed_make(key, 2 * 128);
    /* Every bit of every MACed header byte (16..111) and of the MAC; but
     * size: another size is another frame (the reader cuts it elsewhere),
     * and this buffer holds only this one. */
    uint32_t checked = 0;
    for (uint32_t byte = 16; byte < PC_HEADER_SIZE; byte++) {
        if (byte >= offsetof(pc_header_t, size) && byte < offsetof(pc_header_t, magic)) continue;
        for (uint32_t bit = 0; bit < 8; bit++) {
            m.bytes[byte] ^= (uint8_t)(1u << bit);
            reseal_header(m.header);
            int verify = pc_header_verify(m.header);
            /* A flip that the framing refuses never reaches the MAC (size,
             * magic, command ...); every other must fail the MAC. */
            if (verify == PC_OK && pc_body_verify(m.header, m.body) == PC_OK) {
                ASSERT_EQ(pc_header_mac_verify(m.header, m.body, key), PC_EMAC);
                checked++;
            }
            m.bytes[byte] ^= (uint8_t)(1u << bit);
        }
    }
    ASSERT_TRUE(checked > 400); /* most flips pass the framing and fail the MAC */
    reseal_header(m.header);
    ASSERT_EQ(pc_header_mac_verify(m.header, m.body, key), PC_OK);
    message_free(&m);
    pc_cluster_key_free(key);
}

static void test_mac_flipped_bit_body(void) {
    pc_cluster_key_t *key = key_make(3);
    message_t m = keyed_make(key, 3 * 128);
    for (uint32_t i = 0; i < m.body_size; i += 37) {
        m.body[i] ^= 0x10;
        reseal_checksums(&m); /* the checksums agree: only the MAC can tell */
        ASSERT_EQ(pc_header_mac_verify(m.header, m.body, key), PC_EMAC);
        m.body[i] ^= 0x10;
    }
    reseal_checksums(&m);
    ASSERT_EQ(pc_header_mac_verify(m.header, m.body, key), PC_OK);
    message_free(&m);
    pc_cluster_key_free(key);
}

static void test_mac_wrong_or_missing(void) {
    pc_cluster_key_t *key = key_make(4), *other = key_make(5);
    message_t m = keyed_make(key, 128);
    ASSERT_EQ(pc_header_mac_verify(m.header, m.body, other), PC_EMAC); /* another key */
    /* No MAC: an unkeyed message, named PC_EMAC too. */
    message_t u = request_make(PC_OP_create_transfers, 128);
    ASSERT_EQ(pc_header_verify(u.header), PC_OK);
    ASSERT_EQ(pc_header_mac_verify(u.header, u.body, key), PC_EMAC);
    /* The flag without a MAC (zero bytes), and a MAC without the flag. */
    u.header->flags |= PC_HEADER_MAC;
    reseal_header(u.header);
    ASSERT_EQ(pc_header_verify(u.header), PC_OK);
    ASSERT_EQ(pc_header_mac_verify(u.header, u.body, key), PC_EMAC);
    m.header->flags &= (uint16_t)~PC_HEADER_MAC;
    reseal_header(m.header);
    ASSERT_EQ(pc_header_verify(m.header), PC_EPROTO); /* MAC bytes without the flag */
    ASSERT_TRUE(strcmp(pc_err_name(PC_EMAC), "PC_EMAC") == 0);
    message_free(&m);
    message_free(&u);
    pc_cluster_key_free(key);
    pc_cluster_key_free(other);
}

/* Unkeyed sealing is what it always was, byte for byte, and it never leaves
 * a MAC claim behind (a reply copies its request's flags). */
static void test_mac_unkeyed_unchanged(void) {
    message_t a = request_make(PC_OP_create_transfers, 256);
    message_t b = request_make(PC_OP_create_transfers, 256);
    pc_header_seal_keyed(b.header, b.body, 256, NULL);
    ASSERT_EQ(memcmp(a.bytes, b.bytes, PC_HEADER_SIZE), 0);
    for (uint32_t i = 0; i < PC_HEADER_MAC_SIZE; i++) ASSERT_EQ(a.header->reserved[i], 0);
    ASSERT_EQ(pc_header_verify(a.header), PC_OK);
    ASSERT_EQ(pc_request_verify(a.header, a.body), PC_OK);
    pc_cluster_key_t *key = key_make(6);
    pc_header_seal_keyed(b.header, b.body, 256, key);
    b.header->flags |= PC_HEADER_SHADOW;
    pc_header_seal(b.header, b.body, 256);
    ASSERT_EQ(b.header->flags, PC_HEADER_SHADOW);
    for (uint32_t i = 0; i < PC_HEADER_MAC_SIZE; i++) ASSERT_EQ(b.header->reserved[i], 0);
    ASSERT_EQ(pc_header_verify(b.header), PC_OK);
    message_free(&a);
    message_free(&b);
    pc_cluster_key_free(key);
}

/* A keyed frame goes through the framing reader like any other. */
static void test_mac_reader(void) {
    pc_cluster_key_t *key = key_make(7);
    message_t m = keyed_make(key, 5 * 128);
    pc_reader_t r;
    ASSERT_EQ(pc_reader_init(&r), PC_OK);
    ASSERT_EQ(pc_reader_feed(&r, m.bytes, PC_HEADER_SIZE + m.body_size),
              (int)(PC_HEADER_SIZE + m.body_size));
    const pc_header_t *h;
    const void *b;
    ASSERT_EQ(pc_reader_next(&r, &h, &b), 1);
    ASSERT_EQ(pc_header_mac_verify(h, b, key), PC_OK);
    pc_reader_deinit(&r);
    message_free(&m);
    pc_cluster_key_free(key);
}

static void test_cluster_key_file(void) {
    char dir[] = "/tmp/paycell-test-key-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/cluster.key", dir);
    pc_cluster_key_t *a = NULL, *b = NULL;
    ASSERT_EQ(pc_cluster_key_load(path, &a, err, sizeof err), PC_ENOTFOUND);
    ASSERT_EQ(pc_cluster_key_create(path), PC_OK);
    ASSERT_EQ(pc_cluster_key_create(path), PC_EEXIST); /* never replaced */
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    ASSERT_EQ(st.st_size, 65);
    ASSERT_EQ(pc_cluster_key_load(path, &a, err, sizeof err), PC_OK);
    ASSERT_EQ(pc_cluster_key_load(path, &b, err, sizeof err), PC_OK);
    message_t m = keyed_make(a, 128);
    ASSERT_EQ(pc_header_mac_verify(m.header, m.body, b), PC_OK); /* the same key */
    /* Readable by the group: refused, with the fix. */
    ASSERT_EQ(chmod(path, 0640), 0);
    pc_cluster_key_t *c = NULL;
    ASSERT_EQ(pc_cluster_key_load(path, &c, err, sizeof err), PC_EINVAL);
    ASSERT_TRUE(c == NULL);
    ASSERT_TRUE(strstr(err, "chmod 600") != NULL);
    /* Not 64 hex digits. */
    ASSERT_EQ(chmod(path, 0600), 0);
    FILE *f = fopen(path, "w");
    ASSERT_TRUE(f != NULL);
    fputs("00112233\n", f);
    fclose(f);
    ASSERT_EQ(pc_cluster_key_load(path, &c, err, sizeof err), PC_EINVAL);
    ASSERT_TRUE(strstr(err, "hex") != NULL);
    unlink(path);
    rmdir(dir);
    message_free(&m);
    pc_cluster_key_free(a);
    pc_cluster_key_free(b);
}

#define TESTS(X)                                                                     \
    X(test_header_layout)                                                            \
    X(test_replica_frame_size)                                                            \
    X(test_seal_verify_roundtrip)                                                    \
    X(test_verify_bad_checksum)                                                      \
    X(test_verify_bad_body_checksum)                                                 \
    X(test_verify_bad_magic)                                                         \
    X(test_verify_bad_version)                                                       \
    X(test_verify_size_bounds)                                                       \
    X(test_verify_unknown_command)                                                   \
    X(test_verify_reserved_nonzero)                                                  \
    X(test_verify_epoch)                                                             \
    X(test_request_set_routing)                                                      \
    X(test_operation_is_write)                                                       \
    X(test_verify_status)                                                            \
    X(test_request_unknown_operation)                                                \
    X(test_request_authenticate)                                                     \
    X(test_request_replica_status)                                                   \
    X(test_request_body_not_multiple)                                                \
    X(test_request_zero_events)                                                      \
    X(test_request_too_many_events)                                                  \
    X(test_request_register_rules)                                                   \
    X(test_request_session_zero)                                                     \
    X(test_request_reply_rejected)                                                   \
    X(test_reader_byte_at_a_time)                                                    \
    X(test_reader_two_in_one_feed)                                                   \
    X(test_reader_truncated_pending)                                                 \
    X(test_reader_garbage_stream)                                                    \
    X(test_reader_corrupt_size_not_trusted)                                          \
    X(test_reader_long_stream)                                                       \
    X(test_reader_max_messages)                                                      \
    X(test_writer_ebusy_when_full)                                                   \
    X(test_writer_flush_socketpair)                                                  \
    X(test_socket_listen_connect_accept)                                             \
    X(test_socket_errors)                                                            \
    X(test_mac_roundtrip)                                                            \
    X(test_mac_flipped_bit_header)                                                   \
    X(test_mac_flipped_bit_body)                                                     \
    X(test_mac_wrong_or_missing)                                                     \
    X(test_mac_unkeyed_unchanged)                                                    \
    X(test_mac_reader)                                                               \
    X(test_cluster_key_file)
PC_TEST_MAIN(TESTS)
