#define _GNU_SOURCE
#include "twofactor_system.h"
#include <fcntl.h>
#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sys/timex.h>
#include <syslog.h>
#include <string.h>

void twofactor_openlog(const char *ident, int facility) {
    openlog(ident, LOG_PID | LOG_NDELAY, facility);
}

void twofactor_syslog(int priority, const char *line) {
    syslog(priority, "%s", line);
}

twofactor_kernel_clock twofactor_read_kernel_clock(void) {
    struct timex tx;
    memset(&tx, 0, sizeof tx); /* modes = 0: read only, needs no privilege */
    twofactor_kernel_clock result;
    int state = adjtimex(&tx);
    result.status = state;
    result.synchronized = (state != -1 && state != TIME_ERROR && !(tx.status & STA_UNSYNC)) ? 1 : 0;
    result.estimated_error_us = tx.esterror;
    result.max_error_us = tx.maxerror;
    return result;
}

int twofactor_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
}

int twofactor_accept_cloexec(int fd) {
    return accept4(fd, NULL, NULL, SOCK_CLOEXEC);
}

int twofactor_pipe_cloexec_nonblock(int fds[2]) {
    return pipe2(fds, O_CLOEXEC | O_NONBLOCK);
}

int twofactor_accept_waiter(int listener, int wake) {
    int waiter = epoll_create1(EPOLL_CLOEXEC);
    if (waiter < 0) return -1;
    struct epoll_event on_listener = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = listener};
    struct epoll_event on_wake = {.events = EPOLLIN, .data.fd = wake};
    if (epoll_ctl(waiter, EPOLL_CTL_ADD, listener, &on_listener) != 0 ||
        epoll_ctl(waiter, EPOLL_CTL_ADD, wake, &on_wake) != 0) {
        int saved = errno;
        close(waiter);
        errno = saved;
        return -1;
    }
    return waiter;
}

int twofactor_accept_wait(int waiter, int listener) {
    struct epoll_event events[2];
    for (;;) {
        int ready = epoll_wait(waiter, events, 2, -1);
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) return -1;
        int result = 1;
        for (int i = 0; i < ready; i++) {
            if (events[i].data.fd != listener) return 0;  /* a stop wins over a connection */
            if (events[i].events & (EPOLLERR | EPOLLHUP)) result = -1;
        }
        return result;
    }
}
