/*
 * auth.h — who may do what: API keys with roles (docs/SECURITY.md).
 *
 * An API key is 32 random bytes shown once, as "pck_" and 64 hex digits.
 * The keys file keeps, per key, a name, a role, SHA-256 of the key and
 * whether it was revoked — never the key itself. Keys are high-entropy, so
 * an unsalted hash is as good as a salted one and a lookup is one hash.
 *
 * File format (text, one key per line, '#' comments):
 *
 *   NAME ROLE SHA256-HEX CREATED-UNIX-SECONDS active|revoked
 *
 * NAME is 1..32 of [A-Za-z0-9_.-]. Like ssh with its keys, a secrets file
 * that its group or others may read or write (mode & 077) is refused, with a
 * message saying so and how to fix it.
 */
#ifndef PC_AUTH_H
#define PC_AUTH_H

#include "../base/base.h"

/* PC_KEY_TEXT_LEN (68: "pck_" + 64 hex digits) is in paycell.h: keys travel. */
#define PC_KEY_NAME_MAX 32u
#define PC_KEYS_MAX 1024u

typedef enum pc_role {
    PC_ROLE_none = 0,
    PC_ROLE_client = 1,   /* create and look up accounts and transfers */
    PC_ROLE_operator = 2, /* routes, settings, shadow seed and purge; and what a client may */
    PC_ROLE_observer = 3, /* metrics, the cluster view, the big screen */
} pc_role_t;

/* What a request needs. */
typedef enum pc_action {
    PC_ACTION_ledger = 1, /* creates and lookups */
    PC_ACTION_admin = 2,  /* route changes, settings, shadow seed/purge */
    PC_ACTION_observe = 3 /* metrics, cluster view, big screen, stream */
} pc_action_t;

const char *pc_role_name(pc_role_t role);
pc_role_t pc_role_parse(const char *text); /* PC_ROLE_none when unknown */

/* Whether a role may take an action: client → ledger; observer → observe;
 * operator → everything. */
bool pc_role_allows(pc_role_t role, pc_action_t action);

typedef struct pc_key_entry {
    char name[PC_KEY_NAME_MAX + 1];
    pc_role_t role;
    uint8_t hash[32];
    uint64_t created;
    bool revoked;
} pc_key_entry_t;

typedef struct pc_keys {
    pc_key_entry_t entries[PC_KEYS_MAX];
    uint32_t count;
} pc_keys_t;

/* Loads a keys file. Errors: PC_ENOTFOUND (no file), PC_EINVAL (a file its
 * group or others may read or write: the reason in err),
 * PC_EPROTO (a malformed line: err names the line), PC_EFULL (more than
 * PC_KEYS_MAX keys), PC_EIO. err (may be NULL) receives a message. */
int pc_keys_load(const char *path, pc_keys_t *keys, char *err, size_t err_cap);

/* Writes the keys file atomically (temporary file, fsync, rename), mode 0600. */
int pc_keys_save(const char *path, const pc_keys_t *keys);

/* Adds a key: fills key_text (PC_KEY_TEXT_LEN + 1 bytes) with a new random
 * key, stores its hash. Errors: PC_EINVAL (bad name or role), PC_EEXIST
 * (name in use), PC_EFULL, PC_EIO (no randomness). */
int pc_keys_add(pc_keys_t *keys, const char *name, pc_role_t role, uint64_t now,
                char key_text[PC_KEY_TEXT_LEN + 1]);

/* Marks a key revoked. Errors: PC_ENOTFOUND. */
int pc_keys_revoke(pc_keys_t *keys, const char *name);

/* The entry of a presented key (len bytes, not NUL-terminated): PC_OK and
 * *entry, or PC_EAUTH (malformed, unknown or revoked; which one is not
 * told). Compares hashes in constant time. */
int pc_keys_check(const pc_keys_t *keys, const char *key, size_t len,
                  const pc_key_entry_t **entry);

/* ---- failed authentications, per source (failures.c) ----
 *
 * A key is 256 random bits, so guessing one is hopeless; what a flood of
 * wrong keys costs is the gateway's time (a SHA-256 and a scan per try) and
 * log noise, and it hides a misconfigured client. So failures are counted
 * per source address, in a table of at most PC_AUTH_SOURCES_MAX entries (a
 * new source takes the place of the one that failed least recently), and a
 * source with failures_max failures within window_ms is refused at once,
 * without its key being looked at, until window_ms after its last counted
 * failure. Pure: time arrives as now_ns, nothing here reads a clock. */
#define PC_AUTH_SOURCES_MAX 1024u
#define PC_AUTH_FAILURES_MAX_DEFAULT 10u
#define PC_AUTH_WINDOW_MS_DEFAULT 60000u

typedef struct pc_auth_source {
    uint32_t address;          /* IPv4, host byte order */
    uint32_t failures;         /* within the window that started at window_ns */
    uint64_t window_ns;
    uint64_t blocked_until_ns; /* refused until then (0: never blocked) */
    uint64_t last_ns;          /* the last failure: the least recent is evicted */
} pc_auth_source_t;

typedef struct pc_auth_failures {
    uint32_t failures_max;
    uint64_t window_ns;
    uint32_t count; /* sources[0 .. count) are in use */
    pc_auth_source_t sources[PC_AUTH_SOURCES_MAX];
} pc_auth_failures_t;

/* Errors: PC_EINVAL if failures_max or window_ms is 0. */
int pc_auth_failures_init(pc_auth_failures_t *t, uint32_t failures_max, uint32_t window_ms);
/* Whether the source is refused now (it failed too often lately). */
bool pc_auth_failures_blocked(const pc_auth_failures_t *t, uint32_t address, uint64_t now_ns);
/* Counts one failed authentication from the source; returns whether the
 * source is refused from now on. */
bool pc_auth_failures_record(pc_auth_failures_t *t, uint32_t address, uint64_t now_ns);

/* `paycell certs init DIR` (certs.c): a local CA (ca.crt, ca.key) and a key
 * and certificate signed by it for each of server, client and cluster, in
 * DIR (created 0700; keys 0600). Errors: PC_EEXIST (DIR holds a CA already),
 * PC_EIO; err receives a message. */
int pc_certs_init(const char *dir, uint32_t days, char *err, size_t err_cap);

#endif
