/* The server loop shared by bench/noop_server.c (the ceiling) and bench/floor_server.c (the
 * floors): a Unix stream socket at a path, a thread per accepted connection, and the answer
 * frames, so the two differ only in what they do with a frame. */
#ifndef BENCH_THREAD_SERVER_H
#define BENCH_THREAD_SERVER_H
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* The answer frames the servers send (docs/PROTOCOL.md: length, version 1, status, fields).
 * ANSWER_ACCEPTED carries method TOTP and recoveryCodesLeft 8; the others are 6 bytes. */
static const uint8_t ANSWER_ACCEPTED[] = {0, 0, 0, 13, 1, 0x01, 0x10, 0, 1, 1, 0x11, 0, 4, 0, 0, 0, 8};
static const uint8_t ANSWER_OK[] = {0, 0, 0, 2, 1, 0x00};
static const uint8_t ANSWER_ENROLLED[] = {0, 0, 0, 2, 1, 0x02};
static const uint8_t ANSWER_NOT_ENROLLED[] = {0, 0, 0, 2, 1, 0x03};
static const uint8_t ANSWER_BAD_REQUEST[] = {0, 0, 0, 2, 1, 0x21};

/* Listens on `path` (replacing a stale socket there); -1 after printing why. */
static inline int listen_at(const char *path, const char *name) {
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    unlink(path);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 1024)) {
        perror(name);
        return -1;
    }
    return s;
}

/* Prints "listening" (what bench.py waits for), then serves each connection on a thread of its
 * own with `serve(fd)`; never returns. */
static inline void serve_forever(int s, void *(*serve)(void *)) {
    printf("listening\n");
    fflush(stdout);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (;;) {
        int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) { if (errno == EINTR) continue; perror("accept"); continue; }
        pthread_t t;
        if (pthread_create(&t, &attr, serve, (void *)(intptr_t)c)) close(c);
    }
}
#endif
