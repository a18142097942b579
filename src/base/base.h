/*
 * base.h — what every layer shares: always-on assertions, corruption
 * reporting, checksums, 128-bit helpers and clock/random utilities.
 *
 * PC_ASSERT stays on in release builds: an invariant that fails means the
 * program, not the input, is wrong, and a ledger must stop rather than move
 * money on a broken invariant. Operating errors (full disk, bad input) are
 * returned as pc_err codes, never asserted.
 */
#ifndef PC_BASE_H
#define PC_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paycell.h"
#include "../limits.h"

/* Prints file:line, the expression and a backtrace, then aborts. */
_Noreturn void pc__assert_fail(const char *expr, const char *file, int line);

#define PC_ASSERT(expr)                                                              \
    do {                                                                             \
        if (__builtin_expect(!(expr), 0)) pc__assert_fail(#expr, __FILE__, __LINE__); \
    } while (0)

/* Expensive checks: on in debug and test builds (PC_DEBUG), off in release. */
#ifdef PC_DEBUG
#define PC_ASSERT_HOT(expr) PC_ASSERT(expr)
#else
#define PC_ASSERT_HOT(expr) ((void)0)
#endif

#define PC_STATIC_ASSERT(expr, msg) _Static_assert(expr, msg)

/* Every place that detects corruption goes through here, so one breakpoint on
 * pc__corrupt catches them all (SQLite's SQLITE_CORRUPT_BKPT). Evaluates to
 * PC_ECORRUPT and logs where. */
int pc__corrupt(const char *file, int line, const char *what);
#define PC_CORRUPT(what) pc__corrupt(__FILE__, __LINE__, (what))

/* Test-only: silence corruption log lines (tests that corrupt on purpose). */
extern bool pc__corrupt_quiet;

/* Log lines on stderr: "paycell: COMPONENT: message" for people, or, when
 * pc_log_json is set (`paycell replica --json`), one JSON object per line:
 * {"time_ns":"…","component":"…","level":"…","message":"…"}. */
extern bool pc_log_json;
void pc_log(const char *component, const char *level, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

#define PC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PC_MAX(a, b) ((a) > (b) ? (a) : (b))
#define PC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* 128-bit checksum (XXH3-128) of a buffer, with a seed. Used for message
 * headers and bodies, WAL entries, checkpoints and stored transfer slots. */
pc_u128 pc_checksum(const void *data, size_t size, uint64_t seed);

/* u128 addition that reports overflow: returns true on overflow. */
static inline bool pc_u128_add_overflows(pc_u128 a, pc_u128 b, pc_u128 *sum) {
    *sum = a + b;
    return *sum < a;
}

/* Decimal text of a u128 into buf (at least 40 bytes); returns buf. */
char *pc_u128_format(pc_u128 value, char *buf);
/* Parses decimal digits only (no sign, no spaces, no leading '+').
 * Errors: PC_EINVAL on empty/non-digit input or overflow. */
int pc_u128_parse(const char *text, pc_u128 *out);

/* Nanoseconds: wall clock (for cluster timestamps) and monotonic (for
 * timeouts and latency). */
uint64_t pc_time_realtime_ns(void);
uint64_t pc_time_monotonic_ns(void);

/* A random non-zero client id (a message header's `client`; zero means
 * none), so two askers never take each other's replies. PC_EIO when the
 * kernel gives no randomness. */
int pc_client_id_new(pc_u128 *id);

/* Small deterministic PRNG (xoshiro256**-style, our own), seeded explicitly:
 * simulations and tests replay from one seed. */
typedef struct pc_prng {
    uint64_t s[4];
} pc_prng_t;
void pc_prng_init(pc_prng_t *prng, uint64_t seed);
uint64_t pc_prng_next(pc_prng_t *prng);
/* Uniform in [0, bound), bound > 0. */
uint64_t pc_prng_below(pc_prng_t *prng, uint64_t bound);

/* Parses "HOST:PORT" into host (buf of host_size) and port.
 * Errors: PC_EADDRESS. */
int pc_address_parse(const char *text, char *host, size_t host_size, uint16_t *port);

/* Decodes exactly 2 * n hex digits of text (len bytes) into out: lowercase
 * only unless upper_ok (stored hashes are written lowercase; a key file
 * may have been copied through any tool). */
bool pc_hex_decode(const char *text, size_t len, uint8_t *out, size_t n, bool upper_ok);

/* Whether a file holding secrets (API keys, the cluster key, TLS private
 * keys) is private to its owner: PC_OK, PC_ENOTFOUND, PC_EIO, or PC_EINVAL
 * with the chmod that fixes it; what names the file in err ("cluster key",
 * or NULL for the path alone); err may be NULL with err_cap 0. */
int pc_secret_file_check(const char *path, const char *what, char *err, size_t err_cap);

#endif /* PC_BASE_H */
