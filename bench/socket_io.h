/* Whole-buffer send/recv on a stream socket, shared by bench/loadgen.c and bench/noop_server.c so
 * the client and the ceiling server move bytes the same way. */
#ifndef BENCH_SOCKET_IO_H
#define BENCH_SOCKET_IO_H
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Sends (writing = 1) or receives exactly n bytes; 0, or -1 on an error or end of stream. */
static inline int io_all(int fd, uint8_t *p, size_t n, int writing) {
    while (n) {
        ssize_t r = writing ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r; n -= r;
    }
    return 0;
}
#endif
