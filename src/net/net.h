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
};

enum pc_header_flags {
    PC_HEADER_SHADOW = 1u << 0, /* stress-test traffic (full-link stress testing) */
};
/* Every flag bit defined above; a header with any other bit set is rejected,
 * so a flag added later is never silently ignored by an older peer. */
#define PC_HEADER_FLAGS_KNOWN 0x0001u

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
    uint8_t reserved[24];  /* must be zero */
} pc_header_t;

PC_STATIC_ASSERT(sizeof(pc_header_t) == PC_HEADER_SIZE, "the header is 128 bytes");
PC_STATIC_ASSERT(offsetof(pc_header_t, client) == 32, "header layout: checksums first");
PC_STATIC_ASSERT(offsetof(pc_header_t, reserved) == 104, "header layout: reserved last");

/* Size in bytes of one event of an operation's request body, and of one
 * record of its reply body (0 for register). */
uint32_t pc_operation_event_size(pc_operation_t operation);
uint32_t pc_operation_reply_record_size(pc_operation_t operation);

/* Sets size, magic, version, checksum_body and then checksum. */
void pc_header_seal(pc_header_t *header, const void *body, uint32_t body_size);

/* Checks, in this order: the header checksum (PC_ECHECKSUM; nothing else is
 * trusted before it passes), magic (PC_EPROTO), version (PC_EVERSION), size
 * (PC_ETOOBIG above PC_MESSAGE_SIZE_MAX, PC_EPROTO below PC_HEADER_SIZE),
 * command (PC_EPROTO), flags and reserved bytes (PC_EPROTO), status (PC_EPROTO:
 * non-zero in a request; positive, or an error reply with a body).
 * Checks nothing beyond the header itself. */
int pc_header_verify(const pc_header_t *header);

/* Errors: PC_ECHECKSUM. header must have passed pc_header_verify. */
int pc_body_verify(const pc_header_t *header, const void *body);

/* Semantic checks of a verified request: known operation; register has an
 * empty body, session 0 and request 0; other operations a non-zero session, a
 * non-zero request number and a body that is a whole number
 * (1..PC_BATCH_EVENTS_MAX) of events (exactly one filter for
 * get_account_transfers). A reply (command != request) is PC_EPROTO.
 * Errors: PC_EOPERATION, PC_EPROTO (zero events, a partial event, bad session
 * or request number), PC_ETOOBIG (more than PC_BATCH_EVENTS_MAX events). */
int pc_request_verify(const pc_header_t *header, const void *body);

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
    int error;      /* sticky: after a malformed frame every call returns it */
} pc_reader_t;

/* Errors: PC_ENOMEM. */
int pc_reader_init(pc_reader_t *reader);
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

#endif /* PC_NET_H */
