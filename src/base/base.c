/*
 * base.c — assertions, the error and result-name tables, checksums, u128
 * text conversion, clocks, the PRNG and address parsing: small utilities
 * that every layer uses, kept here so no layer reimplements them.
 */
#include "base.h"

#include <errno.h>
#include <execinfo.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

PC_STATIC_ASSERT(sizeof(pc_account_t) == 128, "account is 128 bytes");
PC_STATIC_ASSERT(sizeof(pc_transfer_t) == 128, "transfer is 128 bytes");
PC_STATIC_ASSERT(sizeof(pc_account_filter_t) == 64, "filter is 64 bytes");
PC_STATIC_ASSERT(sizeof(pc_create_result_t) == 8, "result is 8 bytes");
PC_STATIC_ASSERT(sizeof(pc_routing_t) == 128, "routing record is 128 bytes");
PC_STATIC_ASSERT(sizeof(pc_xts_decision_t) == 32, "an xts decision is 32 bytes");
PC_STATIC_ASSERT(offsetof(pc_xts_decision_t, reserved) == 18, "xts decision layout");
PC_STATIC_ASSERT(offsetof(pc_routing_t, buckets) == 8, "routing layout");
PC_STATIC_ASSERT(offsetof(pc_routing_t, reserved) == 24, "routing layout");
PC_STATIC_ASSERT(PC_ROUTING_BUCKETS == PC_BUCKETS, "the public bucket count is the limit");
PC_STATIC_ASSERT(PC_BUCKETS <= 8 * sizeof(((pc_routing_t *)0)->buckets), "bitmap holds them");
PC_STATIC_ASSERT((((pc_u128)1 << 64) % 100u) == 16u, "pc_bucket_of's constant");
PC_STATIC_ASSERT(offsetof(pc_account_t, timestamp) == 120, "account layout");
PC_STATIC_ASSERT(offsetof(pc_transfer_t, timestamp) == 120, "transfer layout");
PC_STATIC_ASSERT(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "wire format is little-endian");

bool pc__corrupt_quiet = false;

_Noreturn void pc__assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "paycell: assertion failed: %s (%s:%d)\n", expr, file, line);
    void *frames[32];
    int n = backtrace(frames, 32);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    abort();
}

int pc__corrupt(const char *file, int line, const char *what) {
    if (!pc__corrupt_quiet) pc_log("corruption", "error", "%s (%s:%d)", what, file, line);
    return PC_ECORRUPT;
}

bool pc_log_json = false;

/* Writes text as a JSON string body: quotes, backslashes and control
 * characters escaped. */
static void json_escaped(FILE *out, const char *text) {
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(out, "\\%c", *p);
        else if (*p < 0x20) fprintf(out, "\\u%04x", *p);
        else fputc(*p, out);
    }
}

void pc_log(const char *component, const char *level, const char *format, ...) {
    PC_ASSERT(component != NULL && level != NULL);
    char message[4096];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    if (!pc_log_json) {
        fprintf(stderr, "paycell: %s: %s\n", component, message);
        return;
    }
    flockfile(stderr); /* one line per call even with client threads */
    fprintf(stderr, "{\"time_ns\":\"%llu\",\"component\":\"%s\",\"level\":\"%s\",\"message\":\"",
            (unsigned long long)pc_time_realtime_ns(), component, level);
    json_escaped(stderr, message);
    fputs("\"}\n", stderr);
    funlockfile(stderr);
}

const char *pc_err_name(int err) {
    switch (err) {
#define PC__ERR_NAME(name, value, text) \
    case value: return #name;
        PC_ERR_TABLE(PC__ERR_NAME)
#undef PC__ERR_NAME
    }
    return "PC_E?";
}

const char *pc_strerror(int err) {
    switch (err) {
#define PC__ERR_TEXT(name, value, text) \
    case value: return text;
        PC_ERR_TABLE(PC__ERR_TEXT)
#undef PC__ERR_TEXT
    }
    return "unknown error";
}

#define PC__NAME_CASE(name, value) \
    case value: return #name;

const char *pc_account_result_name(uint32_t result) {
    switch (result) { PC_CREATE_ACCOUNT_RESULT_TABLE(PC__NAME_CASE) }
    return NULL;
}

const char *pc_transfer_result_name(uint32_t result) {
    switch (result) { PC_CREATE_TRANSFER_RESULT_TABLE(PC__NAME_CASE) }
    return NULL;
}

const char *pc_routing_result_name(uint32_t result) {
    switch (result) { PC_SET_ROUTING_RESULT_TABLE(PC__NAME_CASE) }
    return NULL;
}

const char *pc_cluster_result_name(uint32_t result) {
    switch (result) { PC_SET_CLUSTER_RESULT_TABLE(PC__NAME_CASE) }
    return NULL;
}

const char *pc_account_flag_name(uint16_t bit) {
    switch (bit) { PC_ACCOUNT_FLAGS_TABLE(PC__NAME_CASE) }
    return NULL;
}

const char *pc_transfer_flag_name(uint16_t bit) {
    switch (bit) { PC_TRANSFER_FLAGS_TABLE(PC__NAME_CASE) }
    return NULL;
}

const char *pc_operation_name(pc_operation_t op) {
    switch ((int)op) { PC_OPERATION_TABLE(PC__NAME_CASE) }
    return NULL;
}

const char *pc_replica_state_name(uint32_t state) {
    switch (state) { PC_REPLICA_STATE_TABLE(PC__NAME_CASE) }
    return NULL;
}

#define PC__PARSE_IF(name, value) \
    if (strcmp(text, #name) == 0) return value;

int pc_account_result_parse(const char *text) {
    PC_CREATE_ACCOUNT_RESULT_TABLE(PC__PARSE_IF)
    return -1;
}

int pc_transfer_result_parse(const char *text) {
    PC_CREATE_TRANSFER_RESULT_TABLE(PC__PARSE_IF)
    return -1;
}

int pc_routing_result_parse(const char *text) {
    PC_SET_ROUTING_RESULT_TABLE(PC__PARSE_IF)
    return -1;
}

pc_u128 pc_checksum(const void *data, size_t size, uint64_t seed) {
    XXH128_hash_t h = XXH3_128bits_withSeed(data, size, seed);
    return ((pc_u128)h.high64 << 64) | h.low64;
}

char *pc_u128_format(pc_u128 value, char *buf) {
    char tmp[40];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(value % 10));
        value /= 10;
    } while (value != 0);
    for (int i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return buf;
}

int pc_u128_parse(const char *text, pc_u128 *out) {
    if (text == NULL || *text == '\0') return PC_EINVAL;
    pc_u128 value = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9') return PC_EINVAL;
        pc_u128 digit = (pc_u128)(*p - '0');
        if (value > (PC_U128_MAX - digit) / 10) return PC_EINVAL;
        value = value * 10 + digit;
    }
    *out = value;
    return PC_OK;
}

uint64_t pc_time_realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t pc_time_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int pc_client_id_new(pc_u128 *id) {
    PC_ASSERT(id != NULL);
    for (int tries = 0; tries < 4; tries++) {
        pc_u128 value = 0;
        if (getrandom(&value, sizeof(value), 0) != (ssize_t)sizeof(value)) continue;
        if (value != 0) {
            *id = value;
            return PC_OK;
        }
    }
    return PC_EIO;
}

/* splitmix64 expands one seed into the four words of state. */
static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void pc_prng_init(pc_prng_t *prng, uint64_t seed) {
    for (int i = 0; i < 4; i++) prng->s[i] = splitmix(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t pc_prng_next(pc_prng_t *prng) {
    uint64_t *s = prng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t pc_prng_below(pc_prng_t *prng, uint64_t bound) {
    PC_ASSERT(bound > 0);
    /* Rejection sampling keeps the draw unbiased. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t x;
    do x = pc_prng_next(prng);
    while (x >= limit);
    return x % bound;
}

int pc_address_parse(const char *text, char *host, size_t host_size, uint16_t *port) {
    const char *colon = text ? strrchr(text, ':') : NULL;
    if (colon == NULL || colon == text) return PC_EADDRESS;
    size_t host_len = (size_t)(colon - text);
    if (host_len + 1 > host_size) return PC_EADDRESS;
    char *end = NULL;
    long value = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || value <= 0 || value > 65535) return PC_EADDRESS;
    memcpy(host, text, host_len);
    host[host_len] = '\0';
    *port = (uint16_t)value;
    return PC_OK;
}

/* ---- hex and secret files ---- */

static int hex_value(char c, bool upper_ok) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (upper_ok && c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool pc_hex_decode(const char *text, size_t len, uint8_t *out, size_t n, bool upper_ok) {
    PC_ASSERT(text != NULL && out != NULL);
    if (len != 2 * n) return false;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_value(text[2 * i], upper_ok), lo = hex_value(text[2 * i + 1], upper_ok);
        if (hi < 0 || lo < 0) return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

int pc_secret_file_check(const char *path, const char *what, char *err, size_t err_cap) {
    PC_ASSERT(path != NULL && (err != NULL || err_cap == 0)); /* no err: no reason wanted */
    const char *sep = what != NULL ? " " : "";
    if (what == NULL) what = "";
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        snprintf(err, err_cap, "%s%s%s: %s", what, sep, path,
                 e == ENOENT ? "no such file" : strerror(e));
        return e == ENOENT ? PC_ENOTFOUND : PC_EIO;
    }
    if ((st.st_mode & 077) != 0) {
        snprintf(err, err_cap,
                 "%s%s%s holds secrets but its group or others may access it (mode %03o); "
                 "run: chmod 600 %s",
                 what, sep, path, (unsigned)(st.st_mode & 0777), path);
        return PC_EINVAL;
    }
    return PC_OK;
}

/* Declared in paycell.h: the ledger and the clients both need it. */
uint64_t pc_xts_leg_digest(const pc_transfer_t *transfer) {
    pc_transfer_t t = *transfer;
    t.flags = 0;
    t.timestamp = 0;
    uint64_t digest = (uint64_t)pc_checksum(&t, sizeof t, 0x78747331);
    return digest != 0 ? digest : 1;
}
