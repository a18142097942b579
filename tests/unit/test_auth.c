/*
 * Unit tests of the API key store (src/auth/keys.c): roles and what they
 * allow, keys created, checked, revoked, saved and loaded; malformed files,
 * duplicate names and files others may read refused with a reason.
 */
#include "test.h"

#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "../../src/auth/auth.h"

/* A fresh directory per test (each runs in its own process). */
static void path_of(char *out, size_t cap, const char *name) {
    static char dir[] = "/tmp/paycell-test-auth-XXXXXX";
    if (dir[sizeof dir - 2] == 'X') ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(out, cap, "%s/%s", dir, name);
}

static void write_file(const char *path, const char *text, mode_t mode) {
    FILE *f = fopen(path, "w");
    ASSERT_TRUE(f != NULL);
    fputs(text, f);
    fclose(f);
    ASSERT_EQ(chmod(path, mode), 0);
}

static void test_roles(void) {
    ASSERT_TRUE(pc_role_allows(PC_ROLE_client, PC_ACTION_ledger));
    ASSERT_TRUE(!pc_role_allows(PC_ROLE_client, PC_ACTION_admin));
    ASSERT_TRUE(!pc_role_allows(PC_ROLE_client, PC_ACTION_observe));
    ASSERT_TRUE(pc_role_allows(PC_ROLE_observer, PC_ACTION_observe));
    ASSERT_TRUE(!pc_role_allows(PC_ROLE_observer, PC_ACTION_ledger));
    ASSERT_TRUE(!pc_role_allows(PC_ROLE_observer, PC_ACTION_admin));
    ASSERT_TRUE(pc_role_allows(PC_ROLE_operator, PC_ACTION_admin));
    ASSERT_TRUE(pc_role_allows(PC_ROLE_operator, PC_ACTION_ledger));
    ASSERT_TRUE(!pc_role_allows(PC_ROLE_none, PC_ACTION_observe));
    ASSERT_EQ(pc_role_parse("operator"), PC_ROLE_operator);
    ASSERT_EQ(pc_role_parse("root"), PC_ROLE_none);
    ASSERT_STREQ(pc_role_name(PC_ROLE_observer), "observer");
}

static void test_create_check_revoke(void) {
    static pc_keys_t keys, loaded;
    memset(&keys, 0, sizeof keys);
    char a[PC_KEY_TEXT_LEN + 1], b[PC_KEY_TEXT_LEN + 1];
    ASSERT_EQ(pc_keys_add(&keys, "app", PC_ROLE_client, 1000, a), PC_OK);
    ASSERT_EQ(pc_keys_add(&keys, "ops", PC_ROLE_operator, 1001, b), PC_OK);
    ASSERT_EQ(strlen(a), PC_KEY_TEXT_LEN);
    ASSERT_TRUE(strncmp(a, "pck_", 4) == 0 && strcmp(a, b) != 0);
    ASSERT_EQ(pc_keys_add(&keys, "app", PC_ROLE_client, 1002, b), PC_EEXIST);
    ASSERT_EQ(pc_keys_add(&keys, "bad name", PC_ROLE_client, 1002, b), PC_EINVAL);
    ASSERT_EQ(pc_keys_add(&keys, "x", PC_ROLE_none, 1002, b), PC_EINVAL);
    const pc_key_entry_t *e = NULL;
    ASSERT_EQ(pc_keys_check(&keys, a, strlen(a), &e), PC_OK);
    ASSERT_STREQ(e->name, "app");
    ASSERT_EQ(e->role, PC_ROLE_client);
    /* Wrong, truncated, missing keys: all the same answer. */
    char wrong[PC_KEY_TEXT_LEN + 1];
    memcpy(wrong, a, sizeof wrong);
    wrong[10] = wrong[10] == '0' ? '1' : '0';
    ASSERT_EQ(pc_keys_check(&keys, wrong, strlen(wrong), &e), PC_EAUTH);
    ASSERT_TRUE(e == NULL);
    ASSERT_EQ(pc_keys_check(&keys, a, strlen(a) - 1, &e), PC_EAUTH);
    ASSERT_EQ(pc_keys_check(&keys, NULL, 0, &e), PC_EAUTH);

    /* Saved 0600 and loaded back; the file never holds the key. */
    char path[256];
    path_of(path, sizeof path, "keys");
    ASSERT_EQ(pc_keys_save(path, &keys), PC_OK);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    FILE *f = fopen(path, "r");
    char text[4096] = "";
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    ASSERT_TRUE(strstr(text, a + 4) == NULL);
    ASSERT_EQ(pc_keys_load(path, &loaded, NULL, 0), PC_OK);
    ASSERT_EQ(loaded.count, 2);
    ASSERT_EQ(pc_keys_check(&loaded, b, strlen(b), &e), PC_OK);
    ASSERT_EQ(e->role, PC_ROLE_operator);

    /* A revoked key is refused like an unknown one, and stays so on disk. */
    ASSERT_EQ(pc_keys_revoke(&loaded, "app"), PC_OK);
    ASSERT_EQ(pc_keys_revoke(&loaded, "nobody"), PC_ENOTFOUND);
    ASSERT_EQ(pc_keys_check(&loaded, a, strlen(a), &e), PC_EAUTH);
    ASSERT_EQ(pc_keys_save(path, &loaded), PC_OK);
    ASSERT_EQ(pc_keys_load(path, &keys, NULL, 0), PC_OK);
    ASSERT_EQ(pc_keys_check(&keys, a, strlen(a), &e), PC_EAUTH);
    ASSERT_EQ(pc_keys_check(&keys, b, strlen(b), &e), PC_OK);
    unlink(path);
    *strrchr(path, '/') = '\0';
    rmdir(path);
}

static void test_bad_files(void) {
    static pc_keys_t keys;
    char path[256], err[512];
    path_of(path, sizeof path, "bad");
    ASSERT_EQ(pc_keys_load(path, &keys, err, sizeof err), PC_ENOTFOUND);
    const char *hash = "0000000000000000000000000000000000000000000000000000000000000000";
    char text[512];
    snprintf(text, sizeof text, "# comment\n\napp client %s 5 active\n", hash);
    write_file(path, text, 0644); /* others may read it */
    ASSERT_EQ(pc_keys_load(path, &keys, err, sizeof err), PC_EINVAL);
    ASSERT_TRUE(strstr(err, "chmod 600") != NULL);
    ASSERT_EQ(pc_secret_file_check(path, NULL, err, sizeof err), PC_EINVAL);
    ASSERT_EQ(chmod(path, 0600), 0);
    ASSERT_EQ(pc_keys_load(path, &keys, err, sizeof err), PC_OK);
    ASSERT_EQ(keys.count, 1);
    const char *bad[] = {
        "app client %s 5 active extra\n", "app root %s 5 active\n",    "app client 00ff 5 active\n",
        "app client %s 5 maybe\n",        "a/b client %s 5 active\n",
        "app client %s 5 active\napp observer %s 6 active\n"};
    for (size_t i = 0; i < PC_ARRAY_LEN(bad); i++) {
        snprintf(text, sizeof text, bad[i], hash, hash);
        write_file(path, text, 0600);
        ASSERT_EQ(pc_keys_load(path, &keys, err, sizeof err), PC_EPROTO);
        ASSERT_TRUE(strstr(err, "bad:") != NULL);
        ASSERT_EQ(keys.count, 0);
    }
    unlink(path);
    *strrchr(path, '/') = '\0';
    rmdir(path);
}

static X509 *cert_read(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    ASSERT_TRUE(f != NULL);
    X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ASSERT_TRUE(cert != NULL);
    return cert;
}

/* certs init: every certificate verifies against the CA (and a purpose),
 * keys are private, and a second init into the same place is refused. */
static void test_certs_init(void) {
    char dir[256], err[512], path[512];
    path_of(dir, sizeof dir, "certs");
    ASSERT_EQ(pc_certs_init(dir, 30, err, sizeof err), PC_OK);
    X509 *ca = cert_read(dir, "ca.crt");
    X509_STORE *store = X509_STORE_new();
    ASSERT_EQ(X509_STORE_add_cert(store, ca), 1);
    const char *certs[] = {"server.crt", "client.crt", "cluster.crt"};
    const int purposes[] = {X509_PURPOSE_SSL_SERVER, X509_PURPOSE_SSL_CLIENT,
                            X509_PURPOSE_SSL_SERVER};
    for (size_t i = 0; i < PC_ARRAY_LEN(certs); i++) {
        X509 *cert = cert_read(dir, certs[i]);
        X509_STORE_CTX *ctx = X509_STORE_CTX_new();
        ASSERT_EQ(X509_STORE_CTX_init(ctx, store, cert, NULL), 1);
        X509_STORE_CTX_set_purpose(ctx, purposes[i]);
        ASSERT_EQ(X509_verify_cert(ctx), 1);
        X509_STORE_CTX_free(ctx);
        X509_free(cert);
    }
    X509_STORE_free(store);
    X509_free(ca);
    const char *keys[] = {"ca.key", "server.key", "client.key", "cluster.key"};
    for (size_t i = 0; i < PC_ARRAY_LEN(keys); i++) {
        snprintf(path, sizeof path, "%s/%s", dir, keys[i]);
        ASSERT_EQ(pc_secret_file_check(path, NULL, err, sizeof err), PC_OK);
    }
    ASSERT_EQ(pc_certs_init(dir, 30, err, sizeof err), PC_EEXIST);
}

#define TESTS(X)                                                                   \
    X(test_roles)                                                                  \
    X(test_create_check_revoke)                                                    \
    X(test_bad_files)                                                              \
    X(test_certs_init)
PC_TEST_MAIN(TESTS)
