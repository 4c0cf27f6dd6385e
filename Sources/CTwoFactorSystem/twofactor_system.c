#define _GNU_SOURCE
#include "twofactor_system.h"
#include <sys/socket.h>
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
