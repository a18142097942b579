/*
 * fuzz_protocol.c — libFuzzer target for the protocol decoder: the framing
 * reader, header/body verification and request semantics.
 *
 * Input: one control byte, then a byte stream. The stream is fed to a reader
 * in chunks whose sizes come from the control byte, and every message the
 * reader yields goes through pc_request_verify. Random bytes almost never
 * pass a 128-bit checksum, so two more modes reach what lies behind it:
 * "repair" gives each header in the raw stream correct checksums (and, if
 * asked, the right magic and version); "build" reads the stream as compact
 * message descriptors, builds sealed messages from them (bodies up to a full
 * 1 MiB) and applies at most one targeted corruption to each, so sizes,
 * commands, reserved bytes, operations and event counts are all explored
 * from an empty corpus within a short run.
 * Whatever the input, nothing may crash, leak or read out of bounds, and the
 * reader's promises (aligned, verified, complete messages) must hold.
 */
#include <stdlib.h>
#include <string.h>

#include "../../src/net/net.h"

#define CONTROL_REPAIR (1u << 0)
#define CONTROL_MAGIC (1u << 1)
#define CONTROL_BUILD (1u << 2)

/* Built streams: room for one maximum message and many small ones. */
#define BUILD_BYTES_MAX (2u * PC_MESSAGE_SIZE_MAX)
#define DESCRIPTOR_SIZE 9u

#define CHECK(x)                                                                     \
    do {                                                                             \
        if (!(x)) __builtin_trap();                                                  \
    } while (0)

/* Gives each plausible header in the stream correct checksums, walking
 * message by message while the sizes make sense. */
static void repair(uint8_t *stream, size_t size, uint8_t control) {
    size_t at = 0;
    while (at + PC_HEADER_SIZE <= size) {
        pc_header_t header;
        memcpy(&header, stream + at, sizeof(header));
        if (control & CONTROL_MAGIC) {
            header.magic = PC_MAGIC;
            header.version = PC_PROTOCOL_VERSION;
        }
        uint32_t body_size = 0;
        bool whole = header.size >= PC_HEADER_SIZE && header.size <= PC_MESSAGE_SIZE_MAX &&
                     at + header.size <= size;
        if (whole) body_size = header.size - PC_HEADER_SIZE;
        uint32_t size_field = header.size;
        /* seal sets size from the body; keep the fuzzer's size field. */
        pc_header_seal(&header, stream + at + PC_HEADER_SIZE, body_size);
        header.size = size_field;
        header.checksum = pc_checksum((uint8_t *)&header + 16, PC_HEADER_SIZE - 16, 0);
        memcpy(stream + at, &header, sizeof(header));
        if (!whole) return;
        at += header.size;
    }
}

/* One descriptor: command, operation, flags, session/request choice, a
 * body length (count x granularity), a corruption to apply after sealing and
 * a status. Body bytes come from the input while it lasts, then are zero. */
static uint32_t build_one(uint8_t *out, const uint8_t *d, const uint8_t **rest,
                          size_t *rest_size, bool *big_used) {
    static const uint32_t granularity[] = {1, 8, 16, 64, 128, 127, 129, 3};
    pc_header_t header;
    memset(&header, 0, sizeof(header));
    header.command = (d[0] & 3) == 3 ? d[0] >> 2 : 1 + (d[0] & 1);
    header.operation = d[1] % 9; /* every operation, and 8: unknown */
    header.flags = d[2] & 0x80 ? d[2] & 0x7f : d[2] & 1;
    header.session = d[3] & 1 ? 0 : 7 + (d[3] >> 1);
    header.request = d[6] & 1 ? 0 : 1 + (d[6] >> 1);
    /* Mostly zero; else any value, negative (errors) or positive (invalid). */
    header.status = d[8] & 0x80 ? (int16_t)(int8_t)d[8] : (int16_t)(d[8] & 0x40 ? d[8] & 7 : 0);
    /* Small bodies by default, keeping runs fast (hashing dominates);
     * d[5] == 0xff opts into a 16-bit count, enough for 8190 events and the
     * 1 MiB bound, once per input. */
    bool big = d[5] == 0xff && !*big_used;
    *big_used = *big_used || big;
    uint32_t count = big ? (uint32_t)(d[4] | d[6] << 8) : d[4] & 0x3fu;
    uint32_t body_size = count * granularity[d[3] >> 5 & 7];
    body_size = PC_MIN(body_size, PC_MESSAGE_BODY_MAX);
    uint32_t copy = (uint32_t)PC_MIN(*rest_size, body_size);
    memcpy(out + PC_HEADER_SIZE, *rest, copy);
    memset(out + PC_HEADER_SIZE + copy, 0, body_size - copy);
    *rest += copy;
    *rest_size -= copy;
    pc_header_seal(&header, out + PC_HEADER_SIZE, body_size);
    switch (d[7] & 15) {
    case 1: header.checksum ^= 1; break;
    case 2: out[PC_HEADER_SIZE + (d[7] >> 4) % (body_size ? body_size : 1)] ^= body_size ? 1 : 0;
            break;
    case 3: header.size = d[7] >> 4 ? PC_HEADER_SIZE - (d[7] >> 4) : PC_MESSAGE_SIZE_MAX + 1; break;
    case 4: header.magic ^= 1u << (d[7] >> 4); break;
    case 5: header.version += 1 + (d[7] >> 4); break;
    case 6: header.reserved[(d[7] >> 4) % sizeof(header.reserved)] = 1; break;
    case 7: header.size -= header.size > PC_HEADER_SIZE ? 1 : 0; break;
    case 8: header.epoch = 1ull << (d[7] >> 4); break; /* fine in a reply only */
    default: break;
    }
    if ((d[7] & 15) >= 3 && (d[7] & 15) <= 8) {
        header.checksum = pc_checksum((uint8_t *)&header + 16, PC_HEADER_SIZE - 16, 0);
    }
    memcpy(out, &header, sizeof(header));
    return PC_HEADER_SIZE + body_size;
}

/* Builds messages from descriptors until the input or the room runs out. */
static size_t build(uint8_t *out, const uint8_t *in, size_t in_size) {
    size_t at = 0;
    bool big_used = false;
    while (in_size >= DESCRIPTOR_SIZE && at + PC_MESSAGE_SIZE_MAX <= BUILD_BYTES_MAX) {
        const uint8_t *d = in;
        in += DESCRIPTOR_SIZE;
        in_size -= DESCRIPTOR_SIZE;
        at += build_one(out + at, d, &in, &in_size, &big_used);
    }
    return at;
}

static void check_message(const pc_header_t *header, const void *body) {
    CHECK((uintptr_t)header % 16 == 0);
    CHECK((const uint8_t *)body == (const uint8_t *)header + PC_HEADER_SIZE);
    CHECK(pc_header_verify(header) == PC_OK);
    /* Only a reply may carry a routing epoch. */
    CHECK(header->command == PC_COMMAND_reply || header->epoch == 0);
    /* The reader verified the body; re-hashing large ones only slows runs. */
    CHECK(header->size > 4096 || pc_body_verify(header, body) == PC_OK);
    int rc = pc_request_verify(header, body);
    CHECK(rc == PC_OK || rc == PC_EPROTO || rc == PC_ETOOBIG || rc == PC_EOPERATION);
    if (rc == PC_OK) {
        /* A valid request is a whole number of events within bounds. */
        uint32_t event_size = pc_operation_event_size((pc_operation_t)header->operation);
        uint32_t body_size = header->size - PC_HEADER_SIZE;
        CHECK(event_size == 0 ? body_size == 0 : body_size % event_size == 0);
        CHECK(event_size == 0 || body_size / event_size <= PC_BATCH_EVENTS_MAX);
        const uint8_t *bytes = body;
        volatile uint8_t sink = 0;
        for (uint32_t i = 0; i < body_size; i += 64) sink ^= bytes[i];
        (void)sink;
    }
}

/* Feeds the stream in chunks and drains the reader after each. */
static void feed_all(pc_reader_t *reader, const uint8_t *stream, size_t size, uint8_t control) {
    uint64_t prng = 0x9e3779b97f4a7c15ull ^ control;
    size_t at = 0;
    for (int rounds = 0; at < size && rounds < 1 << 20; rounds++) {
        prng = prng * 6364136223846793005ull + 1442695040888963407ull;
        /* Tiny or page-sized chunks; a large stream gets proportionally
         * larger ones so a run stays fast. */
        uint32_t chunk = 1u + (uint32_t)(prng >> ((control & 0x80) ? 60 : 52));
        if (size > 65536) chunk *= 256;
        /* Callers gate fills on len < PC_MESSAGE_SIZE_MAX: it must mean room. */
        bool room = reader->len < PC_MESSAGE_SIZE_MAX;
        int fed = pc_reader_feed(reader, stream + at, (uint32_t)PC_MIN(chunk, size - at));
        if (fed < 0) return;
        CHECK(!room || fed > 0);
        CHECK(reader->head + reader->len <= PC_MESSAGE_SIZE_MAX);
        at += (size_t)fed;
        int rc = 1;
        int yielded = 0;
        while (rc == 1) {
            const pc_header_t *header = NULL;
            const void *body = NULL;
            rc = pc_reader_next(reader, &header, &body);
            if (rc == 1) {
                check_message(header, body);
                yielded++;
            }
        }
        if (rc < 0) {
            /* The error is sticky: framing is lost for good. */
            const pc_header_t *header = NULL;
            const void *body = NULL;
            CHECK(pc_reader_next(reader, &header, &body) == rc);
            CHECK(pc_reader_feed(reader, stream, 1) == rc);
            return;
        }
        /* A reader that took nothing must have had a message to give. */
        CHECK(fed > 0 || yielded > 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static pc_reader_t reader;
    static bool ready = false;
    if (!ready) {
        CHECK(pc_reader_init(&reader) == PC_OK);
        ready = true;
    }
    pc_reader_reset(&reader);
    if (size == 0) return 0;
    uint8_t control = data[0];
    const uint8_t *stream = data + 1;
    size_t stream_size = size - 1;

    if (stream_size >= PC_HEADER_SIZE) {
        pc_header_t header;
        memcpy(&header, stream, sizeof(header));
        int rc = pc_header_verify(&header);
        CHECK(rc <= 0);
    }
    if (control & CONTROL_BUILD) {
        static uint8_t *built = NULL;
        if (built == NULL) built = malloc(BUILD_BYTES_MAX);
        CHECK(built != NULL);
        size_t built_size = build(built, stream, stream_size);
        feed_all(&reader, built, built_size, control);
    } else if (control & CONTROL_REPAIR) {
        uint8_t *copy = malloc(stream_size ? stream_size : 1);
        CHECK(copy != NULL);
        memcpy(copy, stream, stream_size);
        repair(copy, stream_size, control);
        feed_all(&reader, copy, stream_size, control);
        free(copy);
    } else {
        feed_all(&reader, stream, stream_size, control);
    }
    return 0;
}
