/*
 * net.h — the binary protocol and the socket plumbing under it.
 *
 * Every message is a 128-byte little-endian header followed by a body of at
 * most PC_MESSAGE_BODY_MAX bytes. The header carries a checksum of itself and
 * of the body, so a torn, truncated or corrupted frame is rejected before any
 * field is trusted. Verification is layered: header (checksum, magic,
 * version, size bounds, reserved bytes zero) -> body checksum -> request
 * semantics (operation known, body a whole number of events within bounds).
 *
 * The framing reader accumulates bytes from a non-blocking socket into a
 * fixed buffer of one maximum message and yields whole verified messages;
 * the writer queues outgoing messages (bounded) and flushes what the socket
 * takes.
 */
#ifndef PC_NET_H
#define PC_NET_H

#include <sys/uio.h>

#include "../base/base.h"

#define PC_MAGIC 0x4c454359u /* "YCEL" little-endian, for "paYCELl" */
#define PC_PROTOCOL_VERSION 1u

enum pc_command {
    PC_COMMAND_request = 1,
    PC_COMMAND_reply = 2,
    /* Replica to replica within a unit (VSR). Such a frame may be up to
     * PC_REPLICA_MESSAGE_SIZE_MAX; a reader accepts it only once grown to
     * that size (pc_reader_grow), which a replica does for a connection
     * whose first frame is a replica hello. */
    PC_COMMAND_replica = 3,
};

enum pc_header_flags {
    PC_HEADER_SHADOW = 1u << 0, /* stress-test traffic (full-link stress testing) */
    /* The header's last 16 bytes (`mac`) hold a cluster-key MAC (see
     * pc_header_seal_keyed); without this flag they must be zero. */
    PC_HEADER_MAC = 1u << 1,
};
/* Every flag bit defined above; a header with any other bit set is rejected,
 * so a flag added later is never silently ignored by an older peer. */
#define PC_HEADER_FLAGS_KNOWN 0x0003u

typedef struct pc_header {
    pc_u128 checksum;      /* XXH3-128 over bytes 16..127 */
    pc_u128 checksum_body; /* XXH3-128 over the body */
    pc_u128 client;        /* client id, random and non-zero */
    uint64_t session;      /* 0 in register; the session number after */
    uint64_t request;      /* request number within the session */
    uint64_t op;           /* reply: WAL op that committed the request (0: a read) */
    uint64_t timestamp;    /* reply: cluster time of that op */
    uint64_t cluster;      /* cluster id; must match the replica's */
    uint32_t size;         /* header + body bytes */
    uint32_t magic;        /* PC_MAGIC */
    uint16_t version;      /* PC_PROTOCOL_VERSION */
    uint8_t command;       /* pc_command */
    uint8_t operation;     /* pc_operation_t */
    uint16_t flags;        /* pc_header_flags */
    int16_t status;        /* reply: PC_OK or a negative pc_err (then no body) */
    uint64_t epoch;        /* reply: the unit's routing epoch; must be zero otherwise */
    uint8_t reserved[16];  /* the cluster-key MAC with PC_HEADER_MAC; else zero */
} pc_header_t;

PC_STATIC_ASSERT(sizeof(pc_header_t) == PC_HEADER_SIZE, "the header is 128 bytes");
PC_STATIC_ASSERT(offsetof(pc_header_t, client) == 32, "header layout: checksums first");
PC_STATIC_ASSERT(offsetof(pc_header_t, epoch) == 104, "header layout: epoch after status");
PC_STATIC_ASSERT(offsetof(pc_header_t, reserved) == 112, "header layout: reserved last");
PC_STATIC_ASSERT(offsetof(pc_header_t, reserved) + sizeof(((pc_header_t *)0)->reserved) ==
                     PC_HEADER_SIZE,
                 "header layout: reserved runs to the end");

/* Size in bytes of one event of an operation's request body, and of one
 * record of its reply body (0 for register; replica_status has no events and
 * one pc_replica_status_t as its reply). */
uint32_t pc_operation_event_size(pc_operation_t operation);
uint32_t pc_operation_reply_record_size(pc_operation_t operation);
/* Whether an operation changes state, so it goes through the log (and the
 * session table) rather than being served as a read: register and the
 * creates, set_routing included. */
bool pc_operation_is_write(pc_operation_t operation);

/* Sets size, magic, version, checksum_body and then checksum. */
void pc_header_seal(pc_header_t *header, const void *body, uint32_t body_size);

/* ---- cluster key: a MAC per message between cluster members ----
 *
 * Replicas, the GZone, gateways and the tools that talk to units directly
 * share one cluster key: PC_CLUSTER_KEY_SIZE random bytes, kept as hex in a
 * file private to its owner. On a keyed link every message carries, in its
 * header's last 16 bytes, the first 16 bytes of HMAC-SHA256 under the key of
 * header bytes 16..111 (checksum_body through epoch: everything but the
 * header checksum and the MAC itself) followed by the body, and the flag
 * PC_HEADER_MAC. The MAC is computed before the header checksum, which then
 * covers it, so the framing checks stay as they were. A receiver holding the
 * key checks the MAC right after the framing checks (pc_reader_next), before
 * anything else reads the message. A MAC does not stop replays of a whole
 * captured message: docs/SECURITY.md says why that is harmless here.
 *
 * A pc_cluster_key_t holds the precomputed HMAC states and one scratch
 * context, so it is not to be shared between threads: each owner (a
 * replica, a gateway, each client) loads its own. */
#define PC_CLUSTER_KEY_SIZE 32u
#define PC_HEADER_MAC_SIZE 16u
typedef struct pc_cluster_key pc_cluster_key_t;

/* Errors: PC_ENOMEM. */
int pc_cluster_key_init(const uint8_t bytes[PC_CLUSTER_KEY_SIZE], pc_cluster_key_t **out);
/* Reads a key file: 64 hex digits and an optional newline. A file its group
 * or others may access is refused (as API-key and TLS-key files are), with
 * the chmod that fixes it in err. Errors: PC_ENOTFOUND, PC_EINVAL
 * (permissions, not 64 hex digits), PC_EIO, PC_ENOMEM; err says which. */
int pc_cluster_key_load(const char *path, pc_cluster_key_t **out, char *err, size_t err_cap);
/* Writes a new random key to path (0600, created; an existing file is
 * refused). Errors: PC_EEXIST, PC_EIO. */
int pc_cluster_key_create(const char *path);
/* Wipes and frees; NULL is fine. */
void pc_cluster_key_free(pc_cluster_key_t *key);

/* As pc_header_seal, and with a key: sets PC_HEADER_MAC and the MAC before
 * the header checksum. key NULL: exactly pc_header_seal (which clears
 * PC_HEADER_MAC and the MAC bytes, so a reply that copied a request's flags
 * never claims a MAC it lacks). */
void pc_header_seal_keyed(pc_header_t *header, const void *body, uint32_t body_size,
                          pc_cluster_key_t *key);
/* The MAC check of a message that passed pc_header_verify and
 * pc_body_verify: PC_OK, or PC_EMAC when it has no MAC (no PC_HEADER_MAC
 * flag) or a wrong one (another key, or any byte of the MACed header
 * fields or body changed). Compares in constant time. */
int pc_header_mac_verify(const pc_header_t *header, const void *body, pc_cluster_key_t *key);

/* Internal (protocol.c, mac.c): the truncated HMAC of header bytes
 * 16..111 and the body. */
void pc__cluster_key_mac(pc_cluster_key_t *key, const pc_header_t *header, const void *body,
                         uint32_t body_size, uint8_t out[PC_HEADER_MAC_SIZE]);

/* Checks, in this order: the header checksum (PC_ECHECKSUM; nothing else is
 * trusted before it passes), magic (PC_EPROTO), version (PC_EVERSION), size
 * (PC_ETOOBIG above PC_MESSAGE_SIZE_MAX, or PC_REPLICA_MESSAGE_SIZE_MAX for a
 * replica frame; PC_EPROTO below PC_HEADER_SIZE),
 * command (PC_EPROTO), flags and the MAC bytes (PC_EPROTO: non-zero without
 * PC_HEADER_MAC; a MAC is checked by pc_header_mac_verify), status (PC_EPROTO:
 * non-zero in a request; positive, or an error reply with a body), epoch
 * (PC_EPROTO: non-zero in anything but a reply).
 * Checks nothing beyond the header itself. */
int pc_header_verify(const pc_header_t *header);

/* Errors: PC_ECHECKSUM. header must have passed pc_header_verify. */
int pc_body_verify(const pc_header_t *header, const void *body);

/* replica_status (docs/PROTOCOL.md), asked outside any session: the
 * question, sealed (with key unless NULL), and the check of an answer whose
 * header passed pc_header_verify: the body's checksum, the MAC under key,
 * that it answers client's question, its status, its size; then *out. */
void pc_replica_status_request(pc_header_t *header, uint64_t cluster, pc_u128 client,
                               pc_cluster_key_t *key);
int pc_replica_status_reply(const pc_header_t *header, const void *body, pc_u128 client,
                            pc_cluster_key_t *key, pc_replica_status_t *out);

/* Semantic checks of a verified request: known operation; register has an
 * empty body, session 0 and request 0; authenticate session 0, request 0 and
 * exactly PC_KEY_TEXT_LEN bytes of key; replica_status session 0, request 0
 * and an empty body; other operations a non-zero session, a
 * non-zero request number and a body that is a whole number
 * (1..PC_BATCH_EVENTS_MAX) of events (exactly one filter for
 * get_account_transfers, exactly one routing record for set_routing). A
 * reply (command != request) is PC_EPROTO.
 * Errors: PC_EOPERATION, PC_EPROTO (zero events, a partial event, bad session
 * or request number), PC_ETOOBIG (more than PC_BATCH_EVENTS_MAX events). */
int pc_request_verify(const pc_header_t *header, const void *body);
/* Whether an operation's body is exactly one event (a filter, a routing or
 * cluster record, a zero u128) rather than a batch. */
bool pc_operation_single_event(pc_operation_t operation);

/* ---- framing ---- */

/* Reads messages off a non-blocking socket. The buffer holds one maximum
 * message (allocated once at init). Bytes live in buf[head, head + len);
 * consumed bytes before head are compacted away lazily, only when the message
 * being assembled would not fit or half the buffer is consumed, so each byte
 * is copied O(1) times. len < PC_MESSAGE_SIZE_MAX means a fill has room.
 * Returned headers and bodies are 16-byte aligned. */
typedef struct pc_reader {
    uint8_t *buf;
    uint32_t len;   /* bytes buffered (from head), including those taken */
    uint32_t taken; /* bytes of the message last returned, dropped on next */
    uint32_t head;  /* offset of the first buffered byte */
    uint32_t need;  /* size of the message at head once its header verified; else 0 */
    uint32_t cap;   /* largest message accepted (PC_MESSAGE_SIZE_MAX unless grown) */
    int error;      /* sticky: after a malformed frame every call returns it */
} pc_reader_t;

/* Errors: PC_ENOMEM. */
int pc_reader_init(pc_reader_t *reader);
/* Raises the largest accepted message to cap (<= PC_REPLICA_MESSAGE_SIZE_MAX),
 * keeping buffered bytes. Errors: PC_ENOMEM (the reader is unchanged). */
int pc_reader_grow(pc_reader_t *reader, uint32_t cap);
void pc_reader_deinit(pc_reader_t *reader);
/* Forgets every buffered byte and a sticky error: for a new connection. */
void pc_reader_reset(pc_reader_t *reader);
/* Bytes buffered and not yet handed out as a message. */
static inline uint32_t pc_reader_buffered(const pc_reader_t *reader) {
    return reader->len - reader->taken;
}

/* Fills the buffer from fd (one read call, of the free space). Returns bytes
 * read (> 0), 0 if the call would block or the buffer is full (call
 * pc_reader_next first), PC_ECLOSED (end of stream or reset) / PC_EIO, or the
 * sticky error of an earlier malformed frame. */
int pc_reader_fill(pc_reader_t *reader, int fd);

/* The in-memory twin of pc_reader_fill (fuzzing, tests, simulated networks):
 * copies up to n bytes into the free space. Returns the bytes copied (0 when
 * the buffer is full: call pc_reader_next first) or the sticky error. */
int pc_reader_feed(pc_reader_t *reader, const void *bytes, uint32_t n);

/* Yields the next whole, verified message (header and body verified) if one
 * is buffered: returns 1 and sets *header / *body (valid until the next call
 * of pc_reader_next, pc_reader_fill or pc_reader_feed); 0 if more bytes are
 * needed; or a negative pc_err for a malformed frame (the connection must be
 * closed, since framing is lost; the error is sticky). */
int pc_reader_next(pc_reader_t *reader, const pc_header_t **header, const void **body);

/* Queues outgoing bytes for one connection. Messages are copied into a
 * bounded linear buffer of cap bytes, bytes in buf[head, tail); sent bytes are
 * compacted away lazily, when a push would not fit otherwise. A push that
 * does not fit answers PC_EBUSY. */
typedef struct pc_writer {
    uint8_t *buf;
    uint32_t cap;
    uint32_t head; /* next byte to send */
    uint32_t tail; /* next free byte */
} pc_writer_t;

/* cap_bytes: at least PC_HEADER_SIZE; PC_MESSAGE_SIZE_MAX holds any message.
 * Errors: PC_ENOMEM. */
int pc_writer_init(pc_writer_t *writer, uint32_t cap_bytes);
void pc_writer_deinit(pc_writer_t *writer);
/* Forgets every queued byte: for a new connection. */
void pc_writer_reset(pc_writer_t *writer);
/* Copies header + body into the queue. The header must be sealed for this
 * body (header->size == PC_HEADER_SIZE + body_size). Errors: PC_EBUSY. */
int pc_writer_push(pc_writer_t *writer, const pc_header_t *header, const void *body,
                   uint32_t body_size);
/* Writes what the socket takes. Returns bytes still queued (>= 0) or
 * PC_ECLOSED / PC_EIO. */
int pc_writer_flush(pc_writer_t *writer, int fd);
static inline uint32_t pc_writer_pending(const pc_writer_t *writer) {
    return writer->tail - writer->head;
}

/* ---- sockets (TCP, IPv4, non-blocking, TCP_NODELAY) ---- */

/* Listens on "HOST:PORT" (port 0: the kernel picks one, see
 * pc_net_local_port). Errors: PC_EADDRESS, PC_EIO (bind/listen, message
 * printed). */
int pc_net_listen(const char *address, int *fd_out);
/* Accepts one connection, non-blocking. Returns the fd, or PC_EBUSY when none
 * is waiting, or PC_EIO. */
int pc_net_accept(int listen_fd);
/* Connects to "HOST:PORT" within timeout_ms. Errors: PC_EADDRESS,
 * PC_ECONNREFUSED (also unreachable), PC_ETIMEDOUT, PC_EIO (no socket). */
int pc_net_connect(const char *address, uint32_t timeout_ms, int *fd_out);
/* The two halves of pc_net_connect, for event loops that must not block:
 * start returns PC_OK (connected), 1 (in progress: wait for POLLOUT, then
 * call finish) or an error as above; on an error no fd is left open. */
int pc_net_connect_start(const char *address, int *fd_out);
/* Errors: PC_ECONNREFUSED, PC_ETIMEDOUT; on an error the caller closes fd. */
int pc_net_connect_finish(int fd);
/* The local port of a bound socket. Errors: PC_EIO. */
int pc_net_local_port(int fd, uint16_t *port_out);
/* The IPv4 address of a connected socket's peer, in host byte order (so
 * 127.0.0.1 is 0x7f000001): the source that failed authentications are
 * counted by. Errors: PC_EIO. */
int pc_net_peer_ipv4(int fd, uint32_t *address_out);

/* ========================================================================
 * TLS (src/net/tls.c) — OpenSSL under the framing, for the gateway's
 * listeners and libpaycell.
 *
 * A pc_tls_config_t is one SSL_CTX: a server's certificate and key (and the
 * CA its clients' certificates must be signed by, for mutual TLS), or a
 * client's trusted CA (and its own certificate). A pc_tls_t is one
 * connection over a non-blocking socket the caller owns: every call does
 * what the socket allows and returns; when it could not finish,
 * pc_tls_events says which poll events let it go on (a read may need the
 * socket writable and a write readable during a handshake), so TLS fits an
 * existing poll loop without threads. TLS 1.2 is the minimum (1.3 is
 * negotiated whenever both sides have it); no renegotiation, no session
 * tickets or cache. A peer's end of stream without close_notify counts as
 * an ordinary close: every frame on top is length-delimited and checksummed,
 * so a truncation is seen there.
 * ====================================================================== */

typedef struct pc_tls_config pc_tls_config_t;
typedef struct pc_tls pc_tls_t;

/* A server's: cert_file (PEM, the chain), key_file (PEM), client_ca_file
 * (PEM; NULL: no client certificate asked; set: one signed by it is
 * required, and a handshake without one fails). Errors: PC_EINVAL (a file
 * missing, malformed, or a key that does not match the certificate), the
 * reason in err. The caller checks the key file's permissions. */
int pc_tls_server_config(const char *cert_file, const char *key_file, const char *client_ca_file,
                         pc_tls_config_t **out, char *err, size_t err_cap);
/* A server config whose client certificate is optional from now on: one
 * that is presented must still be signed by the client CA or the handshake
 * fails, but a client may present none. For a listener where every request
 * proves itself another way (an API key), so a browser can connect. */
void pc_tls_config_client_cert_optional(pc_tls_config_t *config);
/* A client's: ca_file (PEM) the server's certificate must be signed by;
 * cert_file and key_file (both or neither; NULL or "") its own certificate.
 * Errors: PC_EINVAL (as above, and a key file its group or others may read). */
int pc_tls_client_config(const char *ca_file, const char *cert_file, const char *key_file,
                         pc_tls_config_t **out, char *err, size_t err_cap);
void pc_tls_config_free(pc_tls_config_t *config);

/* A connection over fd (not owned: pc_tls_free leaves it open). host: NULL
 * on a server; on a client the name the server's certificate must carry
 * (an IPv4/IPv6 address or a DNS name). Errors: PC_ENOMEM, PC_EINVAL. */
int pc_tls_new(pc_tls_config_t *config, int fd, const char *host, pc_tls_t **out);
void pc_tls_free(pc_tls_t *tls);
/* Moves the handshake on: PC_OK (done), 1 (wait for pc_tls_events), PC_ETLS
 * (refused: a certificate not trusted or missing, a peer that does not
 * speak TLS), PC_ECLOSED (the peer left), PC_EIO. */
int pc_tls_handshake(pc_tls_t *tls);
/* Reads at most cap (>= 1) bytes: how many (> 0), 0 (nothing now: wait for
 * pc_tls_events), PC_ECLOSED, PC_ETLS, PC_EIO. */
int pc_tls_read(pc_tls_t *tls, void *buf, uint32_t cap);
/* Writes at most len (>= 1) bytes: how many (> 0), 0 (wait), or an error as
 * read. After a 0 the next write must start with the same bytes (at any
 * address, and possibly more of them): pc_writer_flush_tls keeps that. */
int pc_tls_write(pc_tls_t *tls, const void *buf, uint32_t len);
/* POLLIN and/or POLLOUT: what the last call that could not finish waits
 * for; 0 after one that finished. */
short pc_tls_events(const pc_tls_t *tls);
/* Whether bytes already taken off the socket wait to be read: poll would
 * not report them. */
bool pc_tls_pending(const pc_tls_t *tls);
/* Sends close_notify, best effort (never waits). */
void pc_tls_shutdown(pc_tls_t *tls);
/* Before closing a connection whose handshake was refused: reads away (at
 * most 64 KiB, never waiting) what the peer sent that was not read, so the
 * close sends a FIN after the alert that says why, not a reset that may
 * overtake and destroy it (a TLS 1.3 client has often sent its first
 * request by the time the server refuses its certificate). */
void pc_tls_drain(int fd);
/* Why the last call failed, for logs ("certificate verify failed: unable
 * to get local issuer certificate"); "" if nothing failed. */
const char *pc_tls_error(const pc_tls_t *tls);

/* pc_reader_fill and pc_writer_flush over TLS, with the same returns. The
 * fill reads until the socket has nothing more or the buffer is full, so
 * only a full buffer leaves bytes in pc_tls_pending. */
int pc_reader_fill_tls(pc_reader_t *reader, pc_tls_t *tls);
int pc_writer_flush_tls(pc_writer_t *writer, pc_tls_t *tls);

/* ========================================================================
 * JSON codec (src/net/json.c) — the gateway's HTTP API bodies.
 *
 * Strict RFC 8259 JSON over a caller's buffer; nothing is allocated. Ids,
 * amounts, user_data_128, user_data_64 and timestamp are decimal STRINGS
 * (a JSON number cannot carry 128 bits through most clients); user_data_32,
 * timeout, ledger and code are JSON integers only (a decimal string there is
 * wrong_type: one canonical form per field, the one the encoders emit);
 * flags is an array of distinct flag names (pc_account_flag_name /
 * pc_transfer_flag_name). Omitted fields are zero; null is wrong_type.
 * A decimal string is digits only (leading zeros allowed): "-5" is
 * negative_number, "1.5" / "1e3" not_an_integer, "", "+5", " 5" wrong_type.
 * A JSON integer with a sign is negative_number (-0 too), with a fraction or
 * exponent not_an_integer (1.0 too). Every rejection is named
 * (pc_json_error_name) and carries the field, the event index and the byte
 * offset.
 * ====================================================================== */

/* Nesting deeper than this is too_deep (a valid batch needs 3 levels). */
#define PC_JSON_DEPTH_MAX 32u
/* Texts longer than this are too_large (offsets and tokens are 32-bit). */
#define PC_JSON_TEXT_MAX (64u << 20)
/* Bytes of a field name kept in pc_json_error_t (longer names truncated). */
#define PC_JSON_FIELD_MAX 48u

#define PC_JSON_ERROR_TABLE(X)                                                       \
    X(ok, "ok")                                                                      \
    X(malformed_json, "the body is not valid JSON")                                  \
    X(trailing_garbage, "bytes follow the JSON value")                               \
    X(too_deep, "JSON nested too deeply")                                            \
    X(too_large, "JSON text too large")                                              \
    X(too_many_tokens, "more JSON values than the parser's token budget")            \
    X(unknown_field, "unknown field")                                                \
    X(duplicate_field, "field given twice")                                          \
    X(wrong_type, "field has the wrong JSON type")                                   \
    X(number_overflow, "number too large for the field")                             \
    X(negative_number, "negative number in an unsigned field")                       \
    X(not_an_integer, "number is not an integer")                                    \
    X(unknown_flag, "unknown flag name")                                             \
    X(duplicate_flag, "flag given twice")                                            \
    X(too_many_events, "too many events in one batch")                               \
    X(empty_batch, "empty batch")

typedef enum pc_json_error_code {
#define PC__JSON_ERROR_ENUM(name, text) PC_JSON_##name,
    PC_JSON_ERROR_TABLE(PC__JSON_ERROR_ENUM)
#undef PC__JSON_ERROR_ENUM
} pc_json_error_code_t;

/* Why a text was rejected. field is "" when the error is not about one field
 * (malformed_json, empty_batch, …); for unknown_field it is the name sent
 * (truncated to PC_JSON_FIELD_MAX - 1 bytes at a character boundary).
 * index: the event's position in a batch (0 for a single object). offset:
 * the byte where the offending token starts. */
typedef struct pc_json_error {
    pc_json_error_code_t code;
    uint32_t index;
    size_t offset;
    char field[PC_JSON_FIELD_MAX];
} pc_json_error_t;

/* "unknown_field"; NULL for a code outside the table. */
const char *pc_json_error_name(pc_json_error_code_t code);
/* A sentence for users ("unknown field"); NULL outside the table. */
const char *pc_json_error_message(pc_json_error_code_t code);

enum pc_json_type {
    PC_JSON_OBJECT = 1,
    PC_JSON_ARRAY,
    PC_JSON_STRING,
    PC_JSON_NUMBER,
    PC_JSON_TRUE,
    PC_JSON_FALSE,
    PC_JSON_NULL,
};

/* One value (or object key) of a parsed text, in document order. A token
 * spans text[start, end) (strings include their quotes, containers their
 * brackets). children: direct elements (an object's members: each member is
 * a key token followed by its value's tokens). next: the index of the first
 * token after this value's subtree, so a reader skips a subtree in O(1). */
typedef struct pc_json_token {
    uint32_t type; /* pc_json_type */
    uint32_t start;
    uint32_t end;
    uint32_t children;
    uint32_t next;
} pc_json_token_t;

/* Validates one whole JSON text (one value, optional surrounding whitespace)
 * and, if tokens is not NULL, fills tokens[0 .. *count). tokens may be NULL
 * (validation only; *count still receives the number of tokens). count may
 * be NULL. Strings must be valid UTF-8 with valid escapes (surrogates in
 * pairs); raw control characters are refused.
 * Returns PC_OK, or PC_EPROTO with *error set (malformed_json,
 * trailing_garbage, too_deep, too_large, too_many_tokens). */
int pc_json_parse(const char *text, size_t size, pc_json_token_t *tokens, uint32_t tokens_max,
                  uint32_t *count, pc_json_error_t *error);

/* Decodes one account object, or an array of 1..min(cap, PC_BATCH_EVENTS_MAX)
 * of them, into out[0 .. *count) (unset fields zero; out[*count ..] is
 * untouched). cap >= 1. Returns PC_OK, or PC_EPROTO with *error set (any code
 * but too_many_tokens); *count is then 0. */
int pc_json_decode_accounts(const char *body, size_t size, pc_account_t *out, uint32_t cap,
                            uint32_t *count, pc_json_error_t *error);
/* The same for transfers. */
int pc_json_decode_transfers(const char *body, size_t size, pc_transfer_t *out, uint32_t cap,
                             uint32_t *count, pc_json_error_t *error);
/* An id list: one decimal string or an array of 1..min(cap,
 * PC_BATCH_EVENTS_MAX) of them (the error's field is "id"). */
int pc_json_decode_ids(const char *body, size_t size, pc_u128 *out, uint32_t cap,
                       uint32_t *count, pc_json_error_t *error);

/* Encoders: write into buf[0 .. cap) and return the bytes written, not
 * counting the NUL that follows them (cap must have room for it), or
 * PC_ETOOBIG when cap is too small (buf's contents are then unspecified). The account and transfer
 * objects are byte-identical to `paycell … --json` output without its
 * trailing newline: same fields, same order. */
int pc_json_encode_account(const pc_account_t *account, char *buf, size_t cap);
int pc_json_encode_transfer(const pc_transfer_t *transfer, char *buf, size_t cap);
/* {"id":"…","result":"created"}; result: a result name (not escaped: names
 * come from the result tables). */
int pc_json_encode_result(pc_u128 id, const char *result, char *buf, size_t cap);
/* {"error":{"code":"…","message":"…","field":"…"}}; "field" is left out when
 * field is NULL or "". message and field are escaped. */
int pc_json_encode_error(const char *code, const char *message, const char *field, char *buf,
                         size_t cap);
/* The error object of a decode failure: code name, a message that names the
 * byte offset (and the event index within a batch), and the field. */
int pc_json_encode_decode_error(const pc_json_error_t *error, char *buf, size_t cap);

/* ========================================================================
 * HTTP/1.1 request parser and response writer (src/net/http.c).
 *
 * Incremental: the caller keeps a request's bytes in one buffer from the
 * request's first byte and calls pc_http_parse with the whole buffered
 * length after each read; the parser remembers how far it searched, so a
 * request dripping in byte by byte costs O(n). Strict framing, to make
 * request smuggling impossible: CRLF line ends only, no header folding,
 * Content-Length digits only and at most once, any Transfer-Encoding refused
 * with 501 (the API's bodies are small and sized up front; chunked bodies
 * would be a second framing to get right), POST/PUT/PATCH without
 * Content-Length 411, HTTP/1.0 and 1.1 only (505). Slices point into the
 * caller's buffer and stay valid while it is unchanged.
 * ====================================================================== */

/* Request line plus headers (up to and including the blank line). */
#define PC_HTTP_HEAD_MAX (16u << 10)
/* Header lines kept per request; more is 431. */
#define PC_HTTP_HEADERS_MAX 64u
/* Method token length; a longer one is 400 (the API's longest is 6). */
#define PC_HTTP_METHOD_MAX 16u

enum pc_http_result {
    PC_HTTP_ERROR = -1,   /* answer req->status and close the connection */
    PC_HTTP_NEED_MORE = 0,/* call again with more bytes */
    PC_HTTP_COMPLETE = 1, /* req is filled; req->size bytes belong to it */
};

typedef struct pc_http_slice {
    const char *at; /* NULL when absent */
    uint32_t len;
} pc_http_slice_t;

typedef struct pc_http_header {
    pc_http_slice_t name;
    pc_http_slice_t value; /* surrounding spaces and tabs trimmed */
} pc_http_header_t;

typedef struct pc_http_request {
    /* Filled on PC_HTTP_COMPLETE. */
    pc_http_slice_t method;        /* e.g. "POST"; case-sensitive as sent */
    pc_http_slice_t path;          /* starts with '/', no query, raw (not decoded) */
    pc_http_slice_t query;         /* after '?', without it; .at NULL when no '?' */
    pc_http_slice_t authorization; /* header values, .at NULL when absent */
    pc_http_slice_t content_type;
    pc_http_slice_t shadow;        /* X-Paycell-Shadow as sent */
    pc_http_slice_t body;          /* Content-Length bytes after the head */
    pc_http_header_t headers[PC_HTTP_HEADERS_MAX];
    uint32_t headers_count;
    uint8_t version_minor;         /* 0 or 1 (HTTP/1.0, HTTP/1.1) */
    bool keep_alive;               /* 1.1: unless "Connection: close"; 1.0: only if keep-alive */
    bool has_content_length;
    bool is_shadow;                /* X-Paycell-Shadow: 1 or true */
    uint64_t content_length;
    uint32_t head_size;            /* request line + headers + blank line */
    uint32_t size;                 /* head_size + content_length: consume this many */
    /* On PC_HTTP_ERROR: the status to answer (400, 411, 413, 431, 501, 505)
     * and a short reason for the error body. */
    uint16_t status;
    const char *error;
    /* Parser state: bytes already searched for the end of the head. */
    uint32_t scanned;
} pc_http_request_t;

/* Resets req for a new request (also after each complete one). */
void pc_http_request_init(pc_http_request_t *req);

/* Parses buf[0 .. len): the bytes of one request from its first byte (and
 * possibly more pipelined after it). Pass the same leading bytes on every
 * call for one request. Returns PC_HTTP_COMPLETE, PC_HTTP_NEED_MORE or
 * PC_HTTP_ERROR (with req->status): 400 bad syntax, control characters or a
 * missing Host in HTTP/1.1; 411 POST/PUT/PATCH without Content-Length; 413
 * Content-Length over PC_HTTP_BODY_MAX (decided before any body byte);
 * 431 head over PC_HTTP_HEAD_MAX or too many headers; 501 any
 * Transfer-Encoding; 505 a version other than HTTP/1.0 and HTTP/1.1. */
int pc_http_parse(pc_http_request_t *req, const char *buf, size_t len);

/* "Not Found" for 404; "Unknown" for a status outside the table. */
const char *pc_http_status_reason(uint16_t status);

/* Writes "HTTP/1.1 STATUS REASON", Content-Type (when content_type is not
 * NULL), Content-Length (body_len), extra_headers verbatim (NULL, or whole
 * "Name: value\r\n" lines), the blank line and the body into buf[0 .. cap).
 * Returns bytes written or PC_ETOOBIG; PC_EINVAL for a status outside
 * 100..599, extra_headers not ending in CRLF, or a content_type holding CR/LF. */
int pc_http_response_write(char *buf, size_t cap, uint16_t status, const char *content_type,
                           const char *extra_headers, const char *body, size_t body_len);

#endif /* PC_NET_H */
