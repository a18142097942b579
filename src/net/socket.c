/*
 * socket.c — TCP plumbing: listen, accept and connect on IPv4, always
 * non-blocking and close-on-exec, with Nagle off and large kernel buffers.
 *
 * Messages are up to 1 MiB and a request waits for its reply, so latency is
 * set by how fast one whole message crosses: TCP_NODELAY stops the kernel
 * holding back the last segment, and 4 MiB socket buffers let a full message
 * (and the next) sit in the kernel instead of trickling through a small
 * window. Buffer sizes are best effort: the kernel caps them at its limits.
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SOCKET_BUFFER_BYTES (4 * 1024 * 1024)
#define LISTEN_BACKLOG 1024
#define HOST_MAX 256

PC_STATIC_ASSERT(SOCKET_BUFFER_BYTES >= 2 * PC_MESSAGE_SIZE_MAX, "two messages fit in flight");

/* Dotted quads resolve without a lookup; names go through the resolver,
 * IPv4 only. Listening may ask for port 0 (the kernel picks one), which
 * pc_address_parse rightly refuses for anything that connects. */
static int resolve(const char *address, bool listening, struct sockaddr_in *out) {
    PC_ASSERT(out != NULL);
    char host[HOST_MAX];
    uint16_t port = 0;
    const char *colon = address ? strrchr(address, ':') : NULL;
    if (listening && colon != NULL && strcmp(colon + 1, "0") == 0) {
        size_t host_len = (size_t)(colon - address);
        if (host_len == 0 || host_len >= sizeof(host)) return PC_EADDRESS;
        memcpy(host, address, host_len);
        host[host_len] = '\0';
    } else if (pc_address_parse(address, host, sizeof(host), &port) != PC_OK) {
        return PC_EADDRESS;
    }
    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    out->sin_port = htons(port);
    if (inet_pton(AF_INET, host, &out->sin_addr) == 1) return PC_OK;

    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *found = NULL;
    if (getaddrinfo(host, NULL, &hints, &found) != 0 || found == NULL) return PC_EADDRESS;
    PC_ASSERT(found->ai_addrlen >= sizeof(struct sockaddr_in));
    out->sin_addr = ((const struct sockaddr_in *)found->ai_addr)->sin_addr;
    freeaddrinfo(found);
    return PC_OK;
}

/* Best effort: a kernel that caps the buffers still works, only slower. */
static void tune(int fd) {
    PC_ASSERT(fd >= 0);
    int one = 1, bytes = SOCKET_BUFFER_BYTES;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
}

static int new_socket(void) {
    return socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
}

int pc_net_listen(const char *address, int *fd_out) {
    PC_ASSERT(fd_out != NULL);
    struct sockaddr_in addr;
    int rc = resolve(address, true, &addr);
    if (rc != PC_OK) return rc;
    int fd = new_socket();
    if (fd < 0) goto fail;
    int one = 1;
    /* Restarting a replica must not wait out TIME_WAIT on its own port. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) goto fail;
    tune(fd); /* accepted sockets inherit the buffer sizes */
    if (bind(fd, (const struct sockaddr *)&addr, sizeof(addr)) != 0) goto fail;
    if (listen(fd, LISTEN_BACKLOG) != 0) goto fail;
    *fd_out = fd;
    PC_ASSERT(*fd_out >= 0);
    return PC_OK;
fail:
    fprintf(stderr, "paycell: listen %s: %s\n", address, strerror(errno));
    if (fd >= 0) close(fd);
    return PC_EIO;
}

int pc_net_accept(int listen_fd) {
    PC_ASSERT(listen_fd >= 0);
    int fd;
    do fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        /* A peer that gave up before we got to it is as good as none. */
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) return PC_EBUSY;
        return PC_EIO;
    }
    tune(fd);
    PC_ASSERT(fd != listen_fd);
    return fd;
}

static int connect_error(int err) {
    if (err == ETIMEDOUT) return PC_ETIMEDOUT;
    return PC_ECONNREFUSED;
}

int pc_net_connect_start(const char *address, int *fd_out) {
    PC_ASSERT(fd_out != NULL);
    struct sockaddr_in addr;
    int rc = resolve(address, false, &addr);
    if (rc != PC_OK) return rc;
    PC_ASSERT(addr.sin_port != 0);
    int fd = new_socket();
    if (fd < 0) return PC_EIO;
    tune(fd); /* before connect, so the window scale is negotiated for it */
    if (connect(fd, (const struct sockaddr *)&addr, sizeof(addr)) == 0) {
        *fd_out = fd;
        return PC_OK;
    }
    if (errno == EINPROGRESS || errno == EINTR) {
        *fd_out = fd;
        return 1;
    }
    rc = connect_error(errno);
    close(fd);
    return rc;
}

int pc_net_connect_finish(int fd) {
    PC_ASSERT(fd >= 0);
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return PC_ECONNREFUSED;
    PC_ASSERT(len == sizeof(err));
    if (err == 0) return PC_OK;
    return connect_error(err);
}

/* Waits for POLLOUT in slices so a signal does not restart the whole wait. */
static int connect_wait(int fd, uint32_t timeout_ms) {
    PC_ASSERT(fd >= 0);
    uint64_t deadline_ns = pc_time_monotonic_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        uint64_t now_ns = pc_time_monotonic_ns();
        if (now_ns >= deadline_ns) return PC_ETIMEDOUT;
        int wait_ms = (int)((deadline_ns - now_ns + 999999ull) / 1000000ull);
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int n = poll(&pfd, 1, wait_ms);
        if (n < 0 && errno != EINTR) return PC_ECONNREFUSED;
        if (n > 0) return pc_net_connect_finish(fd);
    }
}

int pc_net_connect(const char *address, uint32_t timeout_ms, int *fd_out) {
    PC_ASSERT(fd_out != NULL);
    int fd = -1;
    int rc = pc_net_connect_start(address, &fd);
    if (rc == 1) rc = connect_wait(fd, timeout_ms);
    if (rc != PC_OK) {
        if (fd >= 0) close(fd);
        return rc;
    }
    PC_ASSERT(fd >= 0);
    *fd_out = fd;
    return PC_OK;
}

int pc_net_local_port(int fd, uint16_t *port_out) {
    PC_ASSERT(fd >= 0 && port_out != NULL);
    struct sockaddr_in addr;
    socklen_t len = sizeof(addr);
    if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0) return PC_EIO;
    if (addr.sin_family != AF_INET) return PC_EIO;
    *port_out = ntohs(addr.sin_port);
    return PC_OK;
}

int pc_net_peer_ipv4(int fd, uint32_t *address_out) {
    PC_ASSERT(fd >= 0 && address_out != NULL);
    struct sockaddr_in addr;
    socklen_t len = sizeof(addr);
    *address_out = 0;
    if (getpeername(fd, (struct sockaddr *)&addr, &len) != 0) return PC_EIO;
    if (addr.sin_family != AF_INET || len < sizeof(addr)) return PC_EIO;
    *address_out = ntohl(addr.sin_addr.s_addr);
    return PC_OK;
}
