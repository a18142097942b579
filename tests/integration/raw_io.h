/*
 * raw_io.h — what the integration drivers that speak raw frames share
 * (badinput.c, cluster_auth.c): a blocking send that tolerates the server
 * closing the connection under it, which is often the point of the test.
 */
#ifndef PAYCELL_TESTS_RAW_IO_H
#define PAYCELL_TESTS_RAW_IO_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Sends all n bytes, waiting up to 2 s for room each time; stops quietly
 * when the server closes the connection mid-send. */
static inline void raw_send_all(int fd, const void *buf, size_t n) {
    const uint8_t *p = buf;
    while (n) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        poll(&pfd, 1, 2000);
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

#endif
