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

/* Size in bytes of one event of an operation's request body, and of one
 * record of its reply body (0 for register). */
uint32_t pc_operation_event_size(pc_operation_t operation);
uint32_t pc_operation_reply_record_size(pc_operation_t operation);

/* Sets size, magic, version, checksum_body and then checksum. */
void pc_header_seal(pc_header_t *header, const void *body, uint32_t body_size);

/* Errors: PC_ECHECKSUM, PC_EPROTO (magic, size, command or reserved bytes),
 * PC_EVERSION. Checks nothing beyond the header itself. */
int pc_header_verify(const pc_header_t *header);

/* Errors: PC_ECHECKSUM. header must have passed pc_header_verify. */
int pc_body_verify(const pc_header_t *header, const void *body);

/* Semantic checks of a verified request: known operation; register has an
 * empty body and session 0; other operations a non-zero session and a body
 * that is a whole number (1..PC_BATCH_EVENTS_MAX) of events (exactly one
 * filter for get_account_transfers).
 * Errors: PC_EOPERATION, PC_EPROTO, PC_ETOOBIG. */
int pc_request_verify(const pc_header_t *header, const void *body);

/* ---- framing ---- */

/* Reads messages off a non-blocking socket. The buffer holds one maximum
 * message (allocated once at init). */
typedef struct pc_reader {
    uint8_t *buf;
    uint32_t len;   /* bytes buffered */
    uint32_t taken; /* bytes of the message last returned, dropped on next */
} pc_reader_t;

int pc_reader_init(pc_reader_t *reader);
void pc_reader_deinit(pc_reader_t *reader);

/* Fills the buffer from fd (one read call). Returns bytes read (> 0),
 * 0 if the call would block, or PC_ECLOSED / PC_EIO. */
int pc_reader_fill(pc_reader_t *reader, int fd);

/* Yields the next whole, verified message (header and body verified) if one
 * is buffered: returns 1 and sets *header / *body (valid until the next call
 * of pc_reader_next or pc_reader_fill); 0 if more bytes are needed; or a
 * negative pc_err for a malformed frame (the connection must be closed, since
 * framing is lost). */
int pc_reader_next(pc_reader_t *reader, const pc_header_t **header, const void **body);

/* Queues outgoing bytes for one connection. Messages are copied into a
 * bounded ring; a full queue answers PC_EBUSY. */
typedef struct pc_writer {
    uint8_t *buf;
    uint32_t cap;
    uint32_t head; /* next byte to send */
    uint32_t tail; /* next free byte */
} pc_writer_t;

int pc_writer_init(pc_writer_t *writer, uint32_t cap_bytes);
void pc_writer_deinit(pc_writer_t *writer);
/* Copies header + body into the queue. Errors: PC_EBUSY. */
int pc_writer_push(pc_writer_t *writer, const pc_header_t *header, const void *body,
                   uint32_t body_size);
/* Writes what the socket takes. Returns bytes still queued (>= 0) or
 * PC_ECLOSED / PC_EIO. */
int pc_writer_flush(pc_writer_t *writer, int fd);
static inline uint32_t pc_writer_pending(const pc_writer_t *writer) {
    return writer->tail - writer->head;
}

/* ---- sockets (TCP, IPv4, non-blocking, TCP_NODELAY) ---- */

/* Listens on "HOST:PORT". Errors: PC_EADDRESS, PC_EIO (bind/listen, message
 * printed). */
int pc_net_listen(const char *address, int *fd_out);
/* Accepts one connection, non-blocking. Returns the fd, or PC_EBUSY when none
 * is waiting, or PC_EIO. */
int pc_net_accept(int listen_fd);
/* Connects to "HOST:PORT" within timeout_ms. Errors: PC_EADDRESS,
 * PC_ECONNREFUSED, PC_ETIMEDOUT. */
int pc_net_connect(const char *address, uint32_t timeout_ms, int *fd_out);

#endif /* PC_NET_H */
