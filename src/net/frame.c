/*
 * frame.c — message framing over a byte stream: pc_reader cuts verified
 * messages out of what a socket delivers, pc_writer queues whole messages and
 * hands the socket what it takes.
 *
 * Both own one buffer allocated at init and never grow: a connection costs a
 * fixed amount of memory however a peer behaves. The reader trusts a header's
 * size only after the header checksum passed, never reads past the bytes it
 * holds, and hands out 16-byte aligned headers and bodies, because records
 * carry u128 fields that the compiler may load with aligned instructions.
 * Consumed bytes are compacted away lazily so a stream of small messages does
 * not pay a memmove of the whole buffer per message.
 */
#include "net.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Alignment of returned headers: that of pc_header_t (its u128 fields). */
#define FRAME_ALIGN 16u
/* Reads per pc_reader_fill_tls: a TLS record holds at most 16 KiB, so this
 * fills a whole buffer and bounds the loop. */
#define TLS_FILL_READS_MAX (PC_MESSAGE_SIZE_MAX / 16384u + 2u)

PC_STATIC_ASSERT(_Alignof(pc_header_t) <= FRAME_ALIGN, "frames are aligned for headers");
PC_STATIC_ASSERT(PC_HEADER_SIZE % FRAME_ALIGN == 0, "bodies are aligned like headers");

int pc_reader_init(pc_reader_t *reader) {
    PC_ASSERT(reader != NULL);
    memset(reader, 0, sizeof(*reader));
    reader->buf = aligned_alloc(64, PC_MESSAGE_SIZE_MAX);
    if (reader->buf == NULL) return PC_ENOMEM;
    reader->cap = PC_MESSAGE_SIZE_MAX;
    PC_ASSERT((uintptr_t)reader->buf % FRAME_ALIGN == 0);
    return PC_OK;
}

int pc_reader_grow(pc_reader_t *reader, uint32_t cap) {
    PC_ASSERT(reader->buf != NULL);
    PC_ASSERT(cap <= PC_REPLICA_MESSAGE_SIZE_MAX && cap % 64 == 0);
    if (cap <= reader->cap) return PC_OK;
    uint8_t *buf = aligned_alloc(64, cap);
    if (buf == NULL) return PC_ENOMEM;
    memcpy(buf, reader->buf, reader->head + reader->len);
    free(reader->buf);
    reader->buf = buf;
    reader->cap = cap;
    return PC_OK;
}

void pc_reader_deinit(pc_reader_t *reader) {
    PC_ASSERT(reader != NULL);
    free(reader->buf);
    memset(reader, 0, sizeof(*reader));
}

void pc_reader_reset(pc_reader_t *reader) {
    PC_ASSERT(reader->buf != NULL);
    reader->len = reader->taken = reader->head = reader->need = 0;
    reader->error = PC_OK;
}

/* Drops the message handed out last: its pointers die here. */
static void reader_drop_taken(pc_reader_t *reader) {
    PC_ASSERT(reader->taken <= reader->len);
    if (reader->taken > 0) {
        reader->head += reader->taken;
        reader->len -= reader->taken;
        reader->taken = 0;
        reader->need = 0;
    }
    /* An empty buffer rewinds for free. */
    if (reader->len == 0) reader->head = 0;
    PC_ASSERT(reader->head + reader->len <= reader->cap);
}

/* Makes room before a read. Compacting costs a copy of the unconsumed bytes,
 * so it is done only when the message being assembled cannot be completed in
 * place, or when at least half the buffer is consumed bytes: either way each
 * byte is moved O(1) times over its life. After this, len < reader->cap
 * guarantees free space at the tail. */
static void reader_make_room(pc_reader_t *reader) {
    reader_drop_taken(reader);
    if (reader->head == 0) return;
    uint32_t want = reader->need > 0 ? reader->need : PC_HEADER_SIZE;
    uint32_t missing = want > reader->len ? want - reader->len : 1;
    uint32_t free_tail = reader->cap - reader->head - reader->len;
    if (reader->head >= reader->cap / 2 || free_tail < missing) {
        memmove(reader->buf, reader->buf + reader->head, reader->len);
        reader->head = 0;
    }
    PC_ASSERT(reader->need == 0 || reader->need <= reader->cap - reader->head);
}

int pc_reader_fill(pc_reader_t *reader, int fd) {
    PC_ASSERT(fd >= 0);
    if (reader->error != PC_OK) return reader->error;
    reader_make_room(reader);
    uint32_t end = reader->head + reader->len;
    uint32_t space = reader->cap - end;
    if (space == 0) return 0;
    ssize_t n;
    do n = read(fd, reader->buf + end, space);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return (errno == ECONNRESET || errno == EPIPE) ? PC_ECLOSED : PC_EIO;
    }
    if (n == 0) return PC_ECLOSED;
    PC_ASSERT((uint32_t)n <= space);
    reader->len += (uint32_t)n;
    return (int)n;
}

int pc_reader_feed(pc_reader_t *reader, const void *bytes, uint32_t n) {
    PC_ASSERT(bytes != NULL || n == 0);
    if (reader->error != PC_OK) return reader->error;
    reader_make_room(reader);
    uint32_t end = reader->head + reader->len;
    uint32_t copy = PC_MIN(n, reader->cap - end);
    if (copy > 0) memcpy(reader->buf + end, bytes, copy);
    reader->len += copy;
    PC_ASSERT(reader->head + reader->len <= reader->cap);
    return (int)copy;
}

/* Verifies the header at head from an aligned copy (head may sit at any
 * offset), and remembers its size so it is verified once however many reads
 * the body takes. */
static int reader_header(pc_reader_t *reader) {
    PC_ASSERT(reader->need == 0);
    PC_ASSERT(reader->len >= PC_HEADER_SIZE);
    pc_header_t header;
    memcpy(&header, reader->buf + reader->head, sizeof(header));
    int rc = pc_header_verify(&header);
    if (rc != PC_OK) return rc;
    if (header.size > reader->cap) return PC_ETOOBIG;
    reader->need = header.size;
    return PC_OK;
}

int pc_reader_next(pc_reader_t *reader, const pc_header_t **header, const void **body) {
    PC_ASSERT(header != NULL && body != NULL);
    if (reader->error != PC_OK) return reader->error;
    reader_drop_taken(reader);
    if (reader->len < PC_HEADER_SIZE) return 0;
    if (reader->need == 0) {
        int rc = reader_header(reader);
        if (rc != PC_OK) return reader->error = rc;
    }
    uint32_t size = reader->need;
    PC_ASSERT(size >= PC_HEADER_SIZE && size <= reader->cap);
    if (reader->len < size) return 0;

    /* A misaligned message is slid back over already-consumed bytes to the
     * aligned offset below it: a copy of this message only, never of the
     * bytes after it. head stays, so the next message is found as before. */
    uint32_t start = reader->head & ~(FRAME_ALIGN - 1);
    if (start != reader->head) memmove(reader->buf + start, reader->buf + reader->head, size);
    const pc_header_t *h = (const pc_header_t *)(reader->buf + start);
    PC_ASSERT(h->size == size);
    PC_ASSERT_HOT(pc_header_verify(h) == PC_OK);
    int rc = pc_body_verify(h, reader->buf + start + PC_HEADER_SIZE);
    if (rc != PC_OK) return reader->error = rc;
    reader->taken = size;
    *header = h;
    *body = reader->buf + start + PC_HEADER_SIZE;
    return 1;
}

int pc_writer_init(pc_writer_t *writer, uint32_t cap_bytes) {
    PC_ASSERT(writer != NULL);
    PC_ASSERT(cap_bytes >= PC_HEADER_SIZE);
    memset(writer, 0, sizeof(*writer));
    writer->buf = malloc(cap_bytes);
    if (writer->buf == NULL) return PC_ENOMEM;
    writer->cap = cap_bytes;
    return PC_OK;
}

void pc_writer_deinit(pc_writer_t *writer) {
    PC_ASSERT(writer != NULL);
    free(writer->buf);
    memset(writer, 0, sizeof(*writer));
}

void pc_writer_reset(pc_writer_t *writer) {
    PC_ASSERT(writer->buf != NULL);
    writer->head = writer->tail = 0;
}

int pc_writer_push(pc_writer_t *writer, const pc_header_t *header, const void *body,
                   uint32_t body_size) {
    PC_ASSERT(header->size == PC_HEADER_SIZE + body_size);
    PC_ASSERT(body != NULL || body_size == 0);
    PC_ASSERT(writer->head <= writer->tail && writer->tail <= writer->cap);
    uint32_t size = header->size;
    if (writer->cap - writer->tail < size && writer->head > 0) {
        /* Compact only when the tail is too short: sent bytes are dead. */
        uint32_t pending = writer->tail - writer->head;
        memmove(writer->buf, writer->buf + writer->head, pending);
        writer->head = 0;
        writer->tail = pending;
    }
    if (writer->cap - writer->tail < size) return PC_EBUSY;
    memcpy(writer->buf + writer->tail, header, PC_HEADER_SIZE);
    if (body_size > 0) memcpy(writer->buf + writer->tail + PC_HEADER_SIZE, body, body_size);
    writer->tail += size;
    return PC_OK;
}

/* Bounded: every pass either sends at least one byte or leaves the loop. */
int pc_writer_flush(pc_writer_t *writer, int fd) {
    PC_ASSERT(fd >= 0);
    PC_ASSERT(writer->head <= writer->tail && writer->tail <= writer->cap);
    while (writer->head < writer->tail) {
        ssize_t n = send(fd, writer->buf + writer->head, writer->tail - writer->head,
                         MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return (errno == EPIPE || errno == ECONNRESET) ? PC_ECLOSED : PC_EIO;
        }
        PC_ASSERT(n > 0 && (uint32_t)n <= writer->tail - writer->head);
        writer->head += (uint32_t)n;
    }
    if (writer->head == writer->tail) writer->head = writer->tail = 0;
    return (int)pc_writer_pending(writer);
}

/* As pc_reader_fill, but over TLS, and reading until the socket has nothing
 * more: OpenSSL takes whole records off the socket, so bytes it decrypted
 * and we did not read would never wake poll. Only a full buffer leaves
 * some behind (pc_tls_pending tells). */
int pc_reader_fill_tls(pc_reader_t *reader, pc_tls_t *tls) {
    PC_ASSERT(tls != NULL);
    if (reader->error != PC_OK) return reader->error;
    int total = 0;
    for (uint32_t i = 0; i < TLS_FILL_READS_MAX; i++) {
        reader_make_room(reader);
        uint32_t end = reader->head + reader->len;
        uint32_t space = reader->cap - end;
        if (space == 0) break;
        int n = pc_tls_read(tls, reader->buf + end, space);
        if (n < 0) return n; /* the connection is over: what came with it goes too */
        if (n == 0) break;
        PC_ASSERT((uint32_t)n <= space);
        reader->len += (uint32_t)n;
        total += n;
    }
    PC_ASSERT(reader->head + reader->len <= reader->cap);
    return total;
}

/* As pc_writer_flush, over TLS. A write that could not finish keeps its
 * bytes at head; the next one starts with them, as OpenSSL requires (a
 * compaction in pc_writer_push moves them, which the moving-buffer mode
 * allows). */
int pc_writer_flush_tls(pc_writer_t *writer, pc_tls_t *tls) {
    PC_ASSERT(tls != NULL);
    PC_ASSERT(writer->head <= writer->tail && writer->tail <= writer->cap);
    for (uint32_t i = 0; writer->head < writer->tail && i <= writer->cap; i++) {
        int n = pc_tls_write(tls, writer->buf + writer->head, writer->tail - writer->head);
        if (n < 0) return n;
        if (n == 0) break;
        PC_ASSERT((uint32_t)n <= writer->tail - writer->head);
        writer->head += (uint32_t)n;
    }
    if (writer->head == writer->tail) writer->head = writer->tail = 0;
    return (int)pc_writer_pending(writer);
}
