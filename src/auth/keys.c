/*
 * keys.c — the API key store: roles, the keys file, key checks
 * (see auth.h). SHA-256, randomness and the constant-time compare come from
 * OpenSSL's libcrypto.
 */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEY_PREFIX "pck_"
#define KEY_BYTES 32u
#define LINE_MAX_BYTES 256u
PC_STATIC_ASSERT(sizeof(KEY_PREFIX) - 1 + 2 * KEY_BYTES == PC_KEY_TEXT_LEN, "key text length");

static const char *const role_names[] = {"none", "client", "operator", "observer"};

const char *pc_role_name(pc_role_t role) {
    return (uint32_t)role < PC_ARRAY_LEN(role_names) ? role_names[role] : "none";
}

pc_role_t pc_role_parse(const char *text) {
    for (uint32_t r = PC_ROLE_client; r < PC_ARRAY_LEN(role_names); r++)
        if (strcmp(text, role_names[r]) == 0) return (pc_role_t)r;
    return PC_ROLE_none;
}

bool pc_role_allows(pc_role_t role, pc_action_t action) {
    switch (role) {
    case PC_ROLE_operator: return true;
    case PC_ROLE_client: return action == PC_ACTION_ledger;
    case PC_ROLE_observer: return action == PC_ACTION_observe;
    default: return false;
    }
}

static void err_set(char *err, size_t cap, const char *fmt, ...) {
    if (err == NULL || cap == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

static bool name_valid(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > PC_KEY_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok) return false;
    }
    return true;
}

static void sha256(const void *data, size_t size, uint8_t out[32]) {
    unsigned int n = 0;
    int ok = EVP_Digest(data, size, out, &n, EVP_sha256(), NULL);
    PC_ASSERT(ok == 1 && n == 32); /* a built-in digest cannot fail */
}

static void hex_encode(const uint8_t *in, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int line_parse(const char *line, pc_key_entry_t *e) {
    char name[PC_KEY_NAME_MAX + 2], role[16], hash[80], state[16];
    unsigned long long created = 0;
    char extra;
    memset(e, 0, sizeof *e);
    int n = sscanf(line, "%33s %15s %79s %llu %15s %c", name, role, hash, &created, state, &extra);
    if (n != 5 || !name_valid(name)) return PC_EPROTO;
    e->role = pc_role_parse(role);
    if (e->role == PC_ROLE_none) return PC_EPROTO;
    if (!pc_hex_decode(hash, strlen(hash), e->hash, sizeof e->hash, false)) return PC_EPROTO;
    if (strcmp(state, "active") != 0 && strcmp(state, "revoked") != 0) return PC_EPROTO;
    e->revoked = strcmp(state, "revoked") == 0;
    e->created = created;
    memcpy(e->name, name, strlen(name) + 1);
    return PC_OK;
}

static const pc_key_entry_t *find_name(const pc_keys_t *keys, const char *name) {
    for (uint32_t i = 0; i < keys->count; i++)
        if (strcmp(keys->entries[i].name, name) == 0) return &keys->entries[i];
    return NULL;
}

int pc_keys_load(const char *path, pc_keys_t *keys, char *err, size_t err_cap) {
    memset(keys, 0, sizeof *keys);
    int rc = pc_secret_file_check(path, NULL, err, err_cap);
    if (rc != PC_OK) return rc;
    FILE *f = fopen(path, "r");
    if (f == NULL) return err_set(err, err_cap, "%s: %s", path, strerror(errno)), PC_EIO;
    char line[LINE_MAX_BYTES];
    uint32_t number = 0;
    while (rc == PC_OK && fgets(line, sizeof line, f) != NULL) {
        number++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            err_set(err, err_cap, "%s:%u: line too long", path, number);
            rc = PC_EPROTO;
            break;
        }
        const char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == '\0') continue;
        if (keys->count == PC_KEYS_MAX) {
            err_set(err, err_cap, "%s: more than %u keys", path, PC_KEYS_MAX);
            rc = PC_EFULL;
            break;
        }
        pc_key_entry_t *e = &keys->entries[keys->count];
        if (line_parse(p, e) != PC_OK) {
            err_set(err, err_cap,
                    "%s:%u: expected NAME ROLE SHA256-HEX CREATED active|revoked", path, number);
            rc = PC_EPROTO;
        } else if (find_name(keys, e->name) != NULL) {
            err_set(err, err_cap, "%s:%u: key name '%s' given twice", path, number, e->name);
            rc = PC_EPROTO;
        } else {
            keys->count++;
        }
    }
    if (rc == PC_OK && ferror(f)) rc = PC_EIO;
    fclose(f);
    if (rc != PC_OK) keys->count = 0;
    return rc;
}

int pc_keys_save(const char *path, const pc_keys_t *keys) {
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) return PC_EINVAL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return PC_EIO;
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        return PC_EIO;
    }
    fprintf(f, "# paycell API keys: NAME ROLE SHA256-HEX CREATED active|revoked\n");
    for (uint32_t i = 0; i < keys->count; i++) {
        const pc_key_entry_t *e = &keys->entries[i];
        char hash[65];
        hex_encode(e->hash, sizeof e->hash, hash);
        fprintf(f, "%s %s %s %llu %s\n", e->name, pc_role_name(e->role), hash,
                (unsigned long long)e->created, e->revoked ? "revoked" : "active");
    }
    bool ok = fflush(f) == 0 && fsync(fd) == 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return PC_EIO;
    }
    return PC_OK;
}

int pc_keys_add(pc_keys_t *keys, const char *name, pc_role_t role, uint64_t now,
                char key_text[PC_KEY_TEXT_LEN + 1]) {
    if (!name_valid(name) || role == PC_ROLE_none || (uint32_t)role >= PC_ARRAY_LEN(role_names))
        return PC_EINVAL;
    if (find_name(keys, name) != NULL) return PC_EEXIST;
    if (keys->count == PC_KEYS_MAX) return PC_EFULL;
    uint8_t secret[KEY_BYTES];
    if (RAND_bytes(secret, sizeof secret) != 1) return PC_EIO;
    memcpy(key_text, KEY_PREFIX, sizeof(KEY_PREFIX) - 1);
    hex_encode(secret, sizeof secret, key_text + sizeof(KEY_PREFIX) - 1);
    OPENSSL_cleanse(secret, sizeof secret);
    pc_key_entry_t *e = &keys->entries[keys->count++];
    memset(e, 0, sizeof *e);
    memcpy(e->name, name, strlen(name) + 1);
    e->role = role;
    e->created = now;
    sha256(key_text, PC_KEY_TEXT_LEN, e->hash);
    return PC_OK;
}

int pc_keys_revoke(pc_keys_t *keys, const char *name) {
    pc_key_entry_t *e = (pc_key_entry_t *)find_name(keys, name);
    if (e == NULL) return PC_ENOTFOUND;
    e->revoked = true;
    return PC_OK;
}

int pc_keys_check(const pc_keys_t *keys, const char *key, size_t len,
                  const pc_key_entry_t **entry) {
    *entry = NULL;
    if (key == NULL || len != PC_KEY_TEXT_LEN || memcmp(key, KEY_PREFIX, 4) != 0) return PC_EAUTH;
    uint8_t hash[32];
    sha256(key, len, hash);
    const pc_key_entry_t *found = NULL;
    for (uint32_t i = 0; i < keys->count; i++) { /* every entry, found or not */
        if (CRYPTO_memcmp(hash, keys->entries[i].hash, sizeof hash) == 0) found = &keys->entries[i];
    }
    if (found == NULL || found->revoked) return PC_EAUTH;
    *entry = found;
    return PC_OK;
}
