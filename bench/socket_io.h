/* Whole-buffer send/recv and frame reading on a stream socket, shared by bench/loadgen.c and the
 * servers (bench/noop_server.c, bench/floor_server.c) so the client and the servers move bytes the
 * same way. */
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

/* Reads one frame of protocol v1 (docs/PROTOCOL.md): a 4-byte big-endian length, then that many
 * bytes into buf. The payload's length, or -1 on an error, end of stream or a length outside
 * 2..cap. */
static inline long read_frame(int fd, uint8_t *buf, size_t cap) {
    uint8_t h[4];
    if (io_all(fd, h, 4, 0)) return -1;
    size_t n = (size_t)h[0] << 24 | h[1] << 16 | h[2] << 8 | h[3];
    if (n < 2 || n > cap || io_all(fd, buf, n, 0)) return -1;
    return (long)n;
}
#endif
