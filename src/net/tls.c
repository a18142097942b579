/*
 * tls.c — TLS with OpenSSL (Debian's libssl) under the framing: the
 * gateway's binary and HTTP listeners and libpaycell speak it over the same
 * non-blocking sockets and poll loops they use for plaintext.
 *
 * OpenSSL does the cryptography and the protocol; this file only adapts it
 * to the way paycell's loops work: nothing here blocks, every call returns
 * what it did (bytes, "wait", or a named error), and the events the call
 * was waiting for are remembered, because during a handshake (and, rarely,
 * after one) a read may need to write and a write may need to read. The
 * caller polls for pc_tls_events and calls again.
 *
 * The settings are fixed rather than configurable, because every peer is
 * paycell's own code or a modern client: TLS 1.2 at least (1.3 whenever the
 * peer has it), no renegotiation, no session tickets or cache (a client
 * keeps its connection for its life; a resumed session would save a
 * handshake per reconnect and cost state on the gateway), partial writes
 * with a moving buffer (pc_writer compacts its buffer between writes).
 *
 * OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE when
 * the peer is gone and kills a client program that did not ignore it (the
 * plaintext path sends with MSG_NOSIGNAL). So the SSL objects here do their
 * I/O through a small BIO of ours: send and recv with MSG_NOSIGNAL, nothing
 * else.
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define TLS_ERROR_MAX 160u

struct pc_tls_config {
    SSL_CTX *ctx;
    bool server;
};

struct pc_tls {
    SSL *ssl;
    short events;                /* what the last unfinished call waits for */
    char error[TLS_ERROR_MAX];   /* why the last call failed */
};

/* ---- the socket BIO: send/recv with MSG_NOSIGNAL ----
 *
 * The descriptor is the BIO's data; the caller owns it (freeing the BIO
 * does not close it). EAGAIN sets the retry flags, which OpenSSL turns into
 * SSL_ERROR_WANT_READ / WANT_WRITE; errno is left for outcome() to read. */

static BIO_METHOD *bio_method;
static CRYPTO_ONCE bio_once = CRYPTO_ONCE_STATIC_INIT;

static int bio_fd(BIO *b) {
    int fd = (int)(intptr_t)BIO_get_data(b);
    PC_ASSERT(fd >= 0);
    return fd;
}

static int bio_write(BIO *b, const char *buf, int len) {
    PC_ASSERT(buf != NULL && len >= 0);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do n = send(bio_fd(b), buf, (size_t)len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_write(b);
    PC_ASSERT(n <= len);
    return (int)n;
}

static int bio_read(BIO *b, char *buf, int cap) {
    PC_ASSERT(buf != NULL && cap >= 0);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do n = recv(bio_fd(b), buf, (size_t)cap, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_read(b);
    PC_ASSERT(n <= cap);
    return (int)n;
}

/* Only a flush is asked of a socket BIO that matters here (writes are not
 * buffered: it is a no-op); everything else is unsupported. */
static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b) {
    BIO_set_init(b, 1);
    return 1;
}

static void bio_method_make(void) {
    PC_ASSERT(bio_method == NULL);
    int index = BIO_get_new_index();
    if (index == -1) return;
    BIO_METHOD *m = BIO_meth_new(index | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "paycell socket");
    if (m != NULL && BIO_meth_set_write(m, bio_write) == 1 && BIO_meth_set_read(m, bio_read) == 1 &&
        BIO_meth_set_ctrl(m, bio_ctrl) == 1 && BIO_meth_set_create(m, bio_create) == 1) {
        bio_method = m; /* for the life of the process */
        return;
    }
    BIO_meth_free(m);
}

/* A BIO over fd, or NULL (out of memory). */
static BIO *bio_new(int fd) {
    PC_ASSERT(fd >= 0);
    if (CRYPTO_THREAD_run_once(&bio_once, bio_method_make) != 1 || bio_method == NULL) return NULL;
    BIO *b = BIO_new(bio_method);
    if (b != NULL) BIO_set_data(b, (void *)(intptr_t)fd);
    return b;
}

/* The oldest error OpenSSL queued for this thread, as text; clears the
 * queue so the next call starts clean. */
static void error_take(char *out, size_t cap, const char *what) {
    PC_ASSERT(out != NULL && cap > 0);
    unsigned long e = ERR_get_error();
    char reason[120] = "";
    if (e != 0) ERR_error_string_n(e, reason, sizeof reason);
    snprintf(out, cap, "%s%s%s", what, reason[0] ? ": " : "", reason);
    ERR_clear_error();
}

static bool file_readable(const char *path, const char *what, char *err, size_t err_cap) {
    struct stat st;
    if (path != NULL && stat(path, &st) == 0 && S_ISREG(st.st_mode)) return true;
    snprintf(err, err_cap, "%s %s: %s", what, path ? path : "(none)",
             path ? strerror(errno) : "not given");
    return false;
}

/* The settings both sides share. */
static SSL_CTX *ctx_new(bool server, char *err, size_t err_cap) {
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL) {
        error_take(err, err_cap, "SSL_CTX_new");
        return NULL;
    }
    bool ok = SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1;
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (server) ok = ok && SSL_CTX_set_num_tickets(ctx, 0) == 1;
    if (!ok) {
        error_take(err, err_cap, "TLS settings");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* A certificate chain and its key, checked to belong together. */
static bool identity_load(SSL_CTX *ctx, const char *cert_file, const char *key_file, char *err,
                          size_t err_cap) {
    PC_ASSERT(ctx != NULL && cert_file != NULL && key_file != NULL);
    if (!file_readable(cert_file, "certificate", err, err_cap) ||
        !file_readable(key_file, "private key", err, err_cap)) {
        return false;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        char what[600];
        snprintf(what, sizeof what, "certificate %s", cert_file);
        error_take(err, err_cap, what);
        return false;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        char what[600];
        snprintf(what, sizeof what, "private key %s (or it does not match the certificate)",
                 key_file);
        error_take(err, err_cap, what);
        return false;
    }
    return true;
}

static bool trust_load(SSL_CTX *ctx, const char *ca_file, char *err, size_t err_cap) {
    PC_ASSERT(ctx != NULL && ca_file != NULL);
    if (!file_readable(ca_file, "CA certificate", err, err_cap)) return false;
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        char what[600];
        snprintf(what, sizeof what, "CA certificate %s", ca_file);
        error_take(err, err_cap, what);
        return false;
    }
    return true;
}

static int config_make(SSL_CTX *ctx, bool server, pc_tls_config_t **out) {
    pc_tls_config_t *config = calloc(1, sizeof *config);
    if (config == NULL) {
        SSL_CTX_free(ctx);
        return PC_ENOMEM;
    }
    config->ctx = ctx;
    config->server = server;
    *out = config;
    return PC_OK;
}

int pc_tls_server_config(const char *cert_file, const char *key_file, const char *client_ca_file,
                         pc_tls_config_t **out, char *err, size_t err_cap) {
    PC_ASSERT(out != NULL && err != NULL && err_cap > 0);
    *out = NULL;
    err[0] = '\0';
    SSL_CTX *ctx = ctx_new(true, err, err_cap);
    if (ctx == NULL) return PC_EINVAL;
    bool ok = identity_load(ctx, cert_file, key_file, err, err_cap);
    if (ok && client_ca_file != NULL) {
        ok = trust_load(ctx, client_ca_file, err, err_cap);
        /* The CA's name goes into the certificate request, so a client
         * holding several certificates picks the right one. */
        STACK_OF(X509_NAME) *names = ok ? SSL_load_client_CA_file(client_ca_file) : NULL;
        if (ok && names == NULL) {
            error_take(err, err_cap, "client CA names");
            ok = false;
        }
        if (ok) SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    if (!ok) {
        SSL_CTX_free(ctx);
        return PC_EINVAL;
    }
    return config_make(ctx, true, out);
}

int pc_tls_client_config(const char *ca_file, const char *cert_file, const char *key_file,
                         pc_tls_config_t **out, char *err, size_t err_cap) {
    PC_ASSERT(out != NULL && err != NULL && err_cap > 0);
    *out = NULL;
    err[0] = '\0';
    bool has_cert = cert_file != NULL && cert_file[0] != '\0';
    bool has_key = key_file != NULL && key_file[0] != '\0';
    if (ca_file == NULL || ca_file[0] == '\0' || has_cert != has_key) {
        snprintf(err, err_cap, "TLS needs a CA file, and a client certificate needs its key");
        return PC_EINVAL;
    }
    struct stat st;
    /* As ssh and libpq do: a private key others may read is no secret. */
    if (has_key && stat(key_file, &st) == 0 && (st.st_mode & 077) != 0) {
        snprintf(err, err_cap, "private key %s: its group or others may read it (chmod 600 %s)",
                 key_file, key_file);
        return PC_EINVAL;
    }
    SSL_CTX *ctx = ctx_new(false, err, err_cap);
    if (ctx == NULL) return PC_EINVAL;
    bool ok = trust_load(ctx, ca_file, err, err_cap);
    if (ok && has_cert) ok = identity_load(ctx, cert_file, key_file, err, err_cap);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (!ok) {
        SSL_CTX_free(ctx);
        return PC_EINVAL;
    }
    return config_make(ctx, false, out);
}

void pc_tls_config_client_cert_optional(pc_tls_config_t *config) {
    PC_ASSERT(config != NULL && config->server);
    SSL_CTX_set_verify(config->ctx, SSL_VERIFY_PEER, NULL);
}

void pc_tls_config_free(pc_tls_config_t *config) {
    if (config == NULL) return;
    PC_ASSERT(config->ctx != NULL);
    SSL_CTX_free(config->ctx);
    free(config);
}

/* A client checks that the server's certificate names the host it dialled:
 * an IP address against the certificate's IP entries, a name against its
 * DNS entries (and is sent as SNI). */
static bool host_expect(SSL *ssl, const char *host) {
    PC_ASSERT(ssl != NULL && host != NULL);
    unsigned char probe[16];
    if (inet_pton(AF_INET, host, probe) == 1 || inet_pton(AF_INET6, host, probe) == 1) {
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
    }
    return SSL_set1_host(ssl, host) == 1 && SSL_set_tlsext_host_name(ssl, host) == 1;
}

int pc_tls_new(pc_tls_config_t *config, int fd, const char *host, pc_tls_t **out) {
    PC_ASSERT(config != NULL && out != NULL && fd >= 0);
    PC_ASSERT(config->server == (host == NULL));
    *out = NULL;
    pc_tls_t *tls = calloc(1, sizeof *tls);
    if (tls == NULL) return PC_ENOMEM;
    ERR_clear_error();
    tls->ssl = SSL_new(config->ctx);
    int rc = PC_OK;
    BIO *bio = tls->ssl != NULL ? bio_new(fd) : NULL;
    if (bio == NULL) rc = PC_ENOMEM;
    if (rc == PC_OK) SSL_set_bio(tls->ssl, bio, bio); /* the SSL owns it from here */
    if (rc == PC_OK && host != NULL && !host_expect(tls->ssl, host)) rc = PC_EINVAL;
    if (rc != PC_OK) {
        ERR_clear_error();
        pc_tls_free(tls);
        return rc;
    }
    if (config->server) {
        SSL_set_accept_state(tls->ssl);
    } else {
        SSL_set_connect_state(tls->ssl);
    }
    tls->events = POLLIN | POLLOUT; /* the first step may go at once */
    *out = tls;
    return PC_OK;
}

void pc_tls_free(pc_tls_t *tls) {
    if (tls == NULL) return;
    SSL_free(tls->ssl); /* NULL-safe; the fd stays open: the caller owns it */
    free(tls);
}

/* Maps the outcome of an SSL call that returned ret <= 0: 0 (wait, with the
 * events recorded) or an error. Why-not-trusted is kept for logs. */
static int outcome(pc_tls_t *tls, int ret, const char *what) {
    PC_ASSERT(ret <= 0);
    int saved_errno = errno;
    int e = SSL_get_error(tls->ssl, ret);
    switch (e) {
    case SSL_ERROR_WANT_READ: tls->events = POLLIN; return 0;
    case SSL_ERROR_WANT_WRITE: tls->events = POLLOUT; return 0;
    case SSL_ERROR_ZERO_RETURN: tls->events = 0; return PC_ECLOSED;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        tls->events = 0;
        if (saved_errno == EAGAIN || saved_errno == EINTR) {
            tls->events = POLLIN | POLLOUT;
            return 0;
        }
        snprintf(tls->error, sizeof tls->error, "%s: %s", what,
                 saved_errno ? strerror(saved_errno) : "connection closed");
        return (saved_errno == 0 || saved_errno == ECONNRESET || saved_errno == EPIPE)
                   ? PC_ECLOSED
                   : PC_EIO;
    default: break;
    }
    tls->events = 0;
    long verify = SSL_get_verify_result(tls->ssl);
    if (verify != X509_V_OK) {
        snprintf(tls->error, sizeof tls->error, "%s: certificate verify failed: %s", what,
                 X509_verify_cert_error_string(verify));
        ERR_clear_error();
    } else {
        error_take(tls->error, sizeof tls->error, what);
    }
    return PC_ETLS;
}

int pc_tls_handshake(pc_tls_t *tls) {
    PC_ASSERT(tls != NULL && tls->ssl != NULL);
    ERR_clear_error();
    int ret = SSL_do_handshake(tls->ssl);
    if (ret == 1) {
        tls->events = 0;
        return PC_OK;
    }
    int rc = outcome(tls, ret, "handshake");
    PC_ASSERT(rc <= 0);
    return rc == 0 ? 1 : rc;
}

int pc_tls_read(pc_tls_t *tls, void *buf, uint32_t cap) {
    PC_ASSERT(tls != NULL && buf != NULL && cap > 0);
    ERR_clear_error();
    int ret = SSL_read(tls->ssl, buf, (int)PC_MIN(cap, (uint32_t)INT32_MAX));
    if (ret > 0) {
        tls->events = 0;
        return ret;
    }
    return outcome(tls, ret, "read");
}

int pc_tls_write(pc_tls_t *tls, const void *buf, uint32_t len) {
    PC_ASSERT(tls != NULL && buf != NULL && len > 0);
    ERR_clear_error();
    int ret = SSL_write(tls->ssl, buf, (int)PC_MIN(len, (uint32_t)INT32_MAX));
    if (ret > 0) {
        tls->events = 0;
        PC_ASSERT((uint32_t)ret <= len);
        return ret;
    }
    return outcome(tls, ret, "write");
}

short pc_tls_events(const pc_tls_t *tls) {
    PC_ASSERT(tls != NULL);
    return tls->events;
}

bool pc_tls_pending(const pc_tls_t *tls) {
    PC_ASSERT(tls != NULL && tls->ssl != NULL);
    return SSL_has_pending(tls->ssl) == 1;
}

void pc_tls_shutdown(pc_tls_t *tls) {
    PC_ASSERT(tls != NULL && tls->ssl != NULL);
    ERR_clear_error();
    if (SSL_is_init_finished(tls->ssl)) (void)SSL_shutdown(tls->ssl);
    ERR_clear_error();
}

void pc_tls_drain(int fd) {
    PC_ASSERT(fd >= 0);
    char scratch[4096];
    for (uint32_t i = 0; i < 16; i++) {
        ssize_t n = recv(fd, scratch, sizeof scratch, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
    }
}

const char *pc_tls_error(const pc_tls_t *tls) {
    PC_ASSERT(tls != NULL);
    return tls->error;
}
