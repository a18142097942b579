/*
 * mac.c — the cluster key: its file, and the per-message MAC that proves a
 * message came from a cluster member (net.h, "cluster key").
 *
 * The MAC is HMAC-SHA256 (RFC 2104) truncated to 16 bytes, computed with
 * OpenSSL's EVP digests (SHA-NI where the CPU has it). The key's inner and
 * outer padded states are hashed once, when the key is loaded; each message
 * then costs a copy of each state and the hash of its bytes, with no key
 * schedule. Truncation to 128 bits follows RFC 2104 section 5 (at least half
 * the hash length, and at least 80 bits): a forger's chance per try is 2^-128.
 *
 * The key file is hex text (64 digits) so an operator can copy it between
 * hosts with any tool; it must be private to its owner, like the API-keys
 * file and TLS private keys, and a file its group or others may access is
 * refused with the chmod that fixes it.
 */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <openssl/evp.h>

#define HMAC_BLOCK_SIZE 64u /* SHA-256's block */
#define HMAC_DIGEST_SIZE 32u
#define KEY_FILE_TEXT_MAX 128u
/* The MACed header bytes: checksum_body through epoch. */
#define MAC_HEADER_OFFSET 16u
#define MAC_HEADER_SIZE (offsetof(pc_header_t, reserved) - MAC_HEADER_OFFSET)

PC_STATIC_ASSERT(PC_CLUSTER_KEY_SIZE <= HMAC_BLOCK_SIZE, "the key fits one block, unhashed");
PC_STATIC_ASSERT(PC_HEADER_MAC_SIZE <= HMAC_DIGEST_SIZE, "the MAC is a truncated HMAC");
PC_STATIC_ASSERT(PC_HEADER_MAC_SIZE == sizeof(((pc_header_t *)0)->reserved),
                 "the MAC fills the header's last bytes");
PC_STATIC_ASSERT(MAC_HEADER_SIZE == 96, "the MAC covers header bytes 16..111");

struct pc_cluster_key {
    EVP_MD_CTX *inner; /* SHA-256 after (key ^ ipad) */
    EVP_MD_CTX *outer; /* SHA-256 after (key ^ opad) */
    EVP_MD_CTX *work;  /* scratch: one message at a time */
};

void pc_cluster_key_free(pc_cluster_key_t *key) {
    if (key == NULL) return;
    EVP_MD_CTX_free(key->inner); /* EVP wipes the states it frees */
    EVP_MD_CTX_free(key->outer);
    EVP_MD_CTX_free(key->work);
    free(key);
}

/* One padded key block hashed into ctx: the half of HMAC that depends only
 * on the key, done once. */
static bool pad_absorb(EVP_MD_CTX *ctx, const uint8_t *bytes, uint8_t pad) {
    PC_ASSERT(ctx != NULL && bytes != NULL);
    uint8_t block[HMAC_BLOCK_SIZE];
    memset(block, pad, sizeof block);
    for (uint32_t i = 0; i < PC_CLUSTER_KEY_SIZE; i++) block[i] ^= bytes[i];
    bool ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
              EVP_DigestUpdate(ctx, block, sizeof block) == 1;
    explicit_bzero(block, sizeof block);
    return ok;
}

int pc_cluster_key_init(const uint8_t bytes[PC_CLUSTER_KEY_SIZE], pc_cluster_key_t **out) {
    PC_ASSERT(bytes != NULL && out != NULL);
    *out = NULL;
    pc_cluster_key_t *key = calloc(1, sizeof *key);
    if (key == NULL) return PC_ENOMEM;
    key->inner = EVP_MD_CTX_new();
    key->outer = EVP_MD_CTX_new();
    key->work = EVP_MD_CTX_new();
    if (key->inner == NULL || key->outer == NULL || key->work == NULL ||
        !pad_absorb(key->inner, bytes, 0x36) || !pad_absorb(key->outer, bytes, 0x5c)) {
        pc_cluster_key_free(key);
        return PC_ENOMEM;
    }
    *out = key;
    return PC_OK;
}

void pc__cluster_key_mac(pc_cluster_key_t *key, const pc_header_t *header, const void *body,
                         uint32_t body_size, uint8_t out[PC_HEADER_MAC_SIZE]) {
    PC_ASSERT(key != NULL && header != NULL);
    PC_ASSERT(body != NULL || body_size == 0);
    uint8_t digest[HMAC_DIGEST_SIZE];
    unsigned int n = 0;
    const uint8_t *bytes = (const uint8_t *)header;
    /* A failure here is OpenSSL out of memory in a state copy: no message
     * can be sealed or checked, which no caller can work around. */
    bool ok = EVP_MD_CTX_copy_ex(key->work, key->inner) == 1 &&
              EVP_DigestUpdate(key->work, bytes + MAC_HEADER_OFFSET, MAC_HEADER_SIZE) == 1 &&
              (body_size == 0 || EVP_DigestUpdate(key->work, body, body_size) == 1) &&
              EVP_DigestFinal_ex(key->work, digest, &n) == 1 && n == HMAC_DIGEST_SIZE &&
              EVP_MD_CTX_copy_ex(key->work, key->outer) == 1 &&
              EVP_DigestUpdate(key->work, digest, sizeof digest) == 1 &&
              EVP_DigestFinal_ex(key->work, digest, &n) == 1 && n == HMAC_DIGEST_SIZE;
    PC_ASSERT(ok);
    memcpy(out, digest, PC_HEADER_MAC_SIZE);
}

/* 64 hex digits, then nothing but an optional line end. */
static bool key_text_decode(const char *text, size_t len, uint8_t bytes[PC_CLUSTER_KEY_SIZE]) {
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r')) len--;
    return pc_hex_decode(text, len, bytes, PC_CLUSTER_KEY_SIZE, true);
}

int pc_cluster_key_load(const char *path, pc_cluster_key_t **out, char *err, size_t err_cap) {
    PC_ASSERT(path != NULL && out != NULL && err != NULL && err_cap > 0);
    *out = NULL;
    err[0] = '\0';
    int rc = pc_secret_file_check(path, "cluster key", err, err_cap);
    if (rc != PC_OK) return rc;
    char text[KEY_FILE_TEXT_MAX + 1];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t len = fd >= 0 ? read(fd, text, KEY_FILE_TEXT_MAX) : -1;
    if (fd >= 0) close(fd);
    if (len < 0) {
        snprintf(err, err_cap, "cluster key %s: %s", path, strerror(errno));
        return PC_EIO;
    }
    uint8_t bytes[PC_CLUSTER_KEY_SIZE];
    bool ok = key_text_decode(text, (size_t)len, bytes);
    explicit_bzero(text, sizeof text);
    if (!ok) {
        snprintf(err, err_cap, "cluster key %s: expected %u hex digits (paycell keys cluster-init)",
                 path, 2 * PC_CLUSTER_KEY_SIZE);
        return PC_EINVAL;
    }
    rc = pc_cluster_key_init(bytes, out);
    explicit_bzero(bytes, sizeof bytes);
    if (rc != PC_OK) snprintf(err, err_cap, "cluster key %s: %s", path, pc_strerror(rc));
    return rc;
}

/* Written to a temporary name and linked into place, so the key file
 * appears whole or not at all, and an existing key is never replaced (a
 * replaced key would lock every member out of the cluster). */
int pc_cluster_key_create(const char *path) {
    PC_ASSERT(path != NULL);
    uint8_t bytes[PC_CLUSTER_KEY_SIZE];
    if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes) return PC_EIO;
    char text[2 * PC_CLUSTER_KEY_SIZE + 2];
    for (uint32_t i = 0; i < PC_CLUSTER_KEY_SIZE; i++)
        snprintf(text + 2 * i, 3, "%02x", bytes[i]);
    text[2 * PC_CLUSTER_KEY_SIZE] = '\n';
    text[2 * PC_CLUSTER_KEY_SIZE + 1] = '\0';
    explicit_bzero(bytes, sizeof bytes);
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int rc = n > 0 && (size_t)n < sizeof tmp ? PC_OK : PC_EIO;
    int fd = rc == PC_OK ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
    if (fd < 0) rc = PC_EIO;
    size_t len = 2 * PC_CLUSTER_KEY_SIZE + 1;
    if (rc == PC_OK && (write(fd, text, len) != (ssize_t)len || fsync(fd) != 0)) rc = PC_EIO;
    if (fd >= 0) close(fd);
    explicit_bzero(text, sizeof text);
    if (rc == PC_OK && link(tmp, path) != 0) rc = errno == EEXIST ? PC_EEXIST : PC_EIO;
    if (fd >= 0) unlink(tmp);
    return rc;
}
