/* The ceiling for bench/run's daemon load test: a server on the same kind of socket (Unix stream)
 * that reads protocol v1 frames and answers each at once with a valid reply, one thread per
 * connection, doing no other work. What the load generator measures against it is the cost of
 * the transport and the client; what twofactord adds on top is its own.
 *
 *   noop_server SOCKET_PATH [not-enrolled]   (runs until killed; prints "listening" when ready)
 * Answers: check -> enrolled (notEnrolled with "not-enrolled"); verify -> accepted + method TOTP +
 * recoveryCodesLeft 8; else ok. The login benchmark points pam_twofactor at it: a login whose
 * daemon does no work at all, the floor of a login that asks a daemon.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "socket_io.h"
#include "thread_server.h"

static int not_enrolled;  /* answer check with notEnrolled */

static void *serve(void *arg) {
    int fd = (int)(intptr_t)arg;
    uint8_t req[8192];
    const uint8_t *enrolled = not_enrolled ? ANSWER_NOT_ENROLLED : ANSWER_ENROLLED;
    while (read_frame(fd, req, sizeof req) >= 0) {
        const uint8_t *answer = req[1] == 0x02 ? ANSWER_ACCEPTED : req[1] == 0x01 ? enrolled : ANSWER_OK;
        size_t len = answer == ANSWER_ACCEPTED ? sizeof ANSWER_ACCEPTED : sizeof ANSWER_OK;
        if (io_all(fd, (uint8_t *)answer, len, 1)) break;
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "not-enrolled"))) {
        fprintf(stderr, "usage: noop_server SOCKET_PATH [not-enrolled]\n");
        return 2;
    }
    not_enrolled = argc == 3;
    signal(SIGPIPE, SIG_IGN);
    int s = listen_at(argv[1], "noop_server");
    if (s < 0) return 1;
    serve_forever(s, serve);
}
