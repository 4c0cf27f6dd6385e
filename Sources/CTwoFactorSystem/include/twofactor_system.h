#ifndef TWOFACTOR_SYSTEM_H
#define TWOFACTOR_SYSTEM_H
#include <stdint.h>

/// syslog(3) is variadic, which Swift cannot call: log one preformatted line.
void twofactor_openlog(const char *ident, int facility);
void twofactor_syslog(int priority, const char *line);

/// The kernel's view of the clock (adjtimex(2)), read only.
typedef struct {
    int synchronized;          ///< 1 unless STA_UNSYNC is set or the call reports TIME_ERROR
    int64_t estimated_error_us; ///< timex.esterror
    int64_t max_error_us;       ///< timex.maxerror
    int status;                 ///< adjtimex return value (TIME_OK, TIME_ERROR, ...), -1 on failure
} twofactor_kernel_clock;

twofactor_kernel_clock twofactor_read_kernel_clock(void);

/// Peer credentials of a connected Unix socket (SO_PEERCRED). Returns 0 on success.
int twofactor_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid);

/// accept4(2) with SOCK_CLOEXEC, and pipe2(2) with O_CLOEXEC | O_NONBLOCK: GNU extensions that
/// Swift's Glibc module does not export.
int twofactor_accept_cloexec(int fd);
int twofactor_pipe_cloexec_nonblock(int fds[2]);

/// An epoll instance for one thread that waits to accept: `listener` registered with
/// EPOLLEXCLUSIVE (a new connection wakes one waiting thread, not all) and `wake` without it (a
/// byte written there wakes every one). The instance's descriptor, or -1.
int twofactor_accept_waiter(int listener, int wake);
/// Waits on such an instance: 1 when `listener` may have a connection, 0 when `wake` was written,
/// -1 when the listening socket failed (closed under the daemon).
int twofactor_accept_wait(int waiter, int listener);

#endif
