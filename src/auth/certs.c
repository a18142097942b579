/*
 * certs.c — `paycell certs init DIR`: a local certificate authority and the
 * certificates a test cluster or the demo needs, made with libcrypto (no
 * openssl command, no download).
 *
 * DIR receives ca.crt (the trust anchor), ca.key, and a key and certificate
 * for each role: server (the gateway's listeners; subject alternative names
 * 127.0.0.1 and localhost), client (a TLS client) and cluster (replicas,
 * GZone and gateways proving membership to each other). Keys are ECDSA
 * P-256, written 0600; certificates are valid for `days`.
 */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static EVP_PKEY *key_new(void) {
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static bool ext_add(X509 *cert, X509 *issuer, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) return false;
    bool ok = X509_add_ext(cert, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* A certificate for key, named cn, signed by issuer_key (self-signed when
 * issuer is NULL). kind: "ca", "server" or "client". */
static X509 *cert_new(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                      const char *kind, uint32_t days) {
    X509 *cert = X509_new();
    if (cert == NULL) return NULL;
    uint8_t serial[16];
    BIGNUM *bn = NULL;
    bool ok = RAND_bytes(serial, sizeof serial) == 1;
    serial[0] &= 0x7f; /* positive */
    ok = ok && (bn = BN_bin2bn(serial, sizeof serial, NULL)) != NULL;
    ok = ok && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL;
    BN_free(bn);
    ok = ok && X509_set_version(cert, 2) == 1;
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(cert), -3600) != NULL;
    ok = ok && X509_gmtime_adj(X509_getm_notAfter(cert), (long)days * 86400) != NULL;
    ok = ok && X509_set_pubkey(cert, key) == 1;
    X509_NAME *name = X509_get_subject_name(cert);
    ok = ok && X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"paycell",
                                          -1, -1, 0) == 1;
    ok = ok && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1,
                                          -1, 0) == 1;
    X509 *signer = issuer ? issuer : cert;
    ok = ok && X509_set_issuer_name(cert, X509_get_subject_name(signer)) == 1;
    if (strcmp(kind, "ca") == 0) {
        ok = ok && ext_add(cert, signer, NID_basic_constraints, "critical,CA:TRUE");
        ok = ok && ext_add(cert, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        ok = ok && ext_add(cert, signer, NID_basic_constraints, "critical,CA:FALSE");
        ok = ok && ext_add(cert, signer, NID_key_usage, "critical,digitalSignature");
        const char *eku = strcmp(kind, "server") == 0   ? "serverAuth"
                          : strcmp(kind, "client") == 0 ? "clientAuth"
                                                        : "serverAuth,clientAuth";
        ok = ok && ext_add(cert, signer, NID_ext_key_usage, eku);
        ok = ok && ext_add(cert, signer, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
    }
    ok = ok && ext_add(cert, signer, NID_subject_key_identifier, "hash");
    ok = ok && X509_sign(cert, issuer_key ? issuer_key : key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

static FILE *file_create(const char *dir, const char *name, mode_t mode) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) return NULL;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "w");
    if (f == NULL) close(fd);
    return f;
}

static bool key_write(const char *dir, const char *name, EVP_PKEY *key) {
    FILE *f = file_create(dir, name, 0600);
    if (f == NULL) return false;
    bool ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
    return (fclose(f) == 0) && ok;
}

static bool cert_write(const char *dir, const char *name, X509 *cert) {
    FILE *f = file_create(dir, name, 0644);
    if (f == NULL) return false;
    bool ok = PEM_write_X509(f, cert) == 1;
    return (fclose(f) == 0) && ok;
}

int pc_certs_init(const char *dir, uint32_t days, char *err, size_t err_cap) {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, err_cap, "%s: %s", dir, strerror(errno));
        return PC_EIO;
    }
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/ca.key", dir);
    if (access(probe, F_OK) == 0) {
        snprintf(err, err_cap, "%s holds a CA already (ca.key); use another directory", dir);
        return PC_EEXIST;
    }
    static const char *const roles[] = {"server", "client", "cluster"};
    EVP_PKEY *ca_key = key_new();
    X509 *ca = ca_key ? cert_new(ca_key, "paycell local CA", NULL, NULL, "ca", days) : NULL;
    bool ok = ca != NULL && key_write(dir, "ca.key", ca_key) && cert_write(dir, "ca.crt", ca);
    for (size_t i = 0; ok && i < PC_ARRAY_LEN(roles); i++) {
        EVP_PKEY *key = key_new();
        char cn[64], key_name[32], cert_name[32];
        snprintf(cn, sizeof cn, "paycell %s", roles[i]);
        snprintf(key_name, sizeof key_name, "%s.key", roles[i]);
        snprintf(cert_name, sizeof cert_name, "%s.crt", roles[i]);
        X509 *cert = key ? cert_new(key, cn, ca, ca_key, roles[i], days) : NULL;
        ok = cert != NULL && key_write(dir, key_name, key) && cert_write(dir, cert_name, cert);
        X509_free(cert);
        EVP_PKEY_free(key);
    }
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    if (!ok) {
        snprintf(err, err_cap, "%s: making the certificates failed", dir);
        return PC_EIO;
    }
    return PC_OK;
}
