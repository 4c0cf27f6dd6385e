// What the Embedded Swift verifier needs from C. Embedded Swift has no Glibc module, so the
// libc and libpam declarations it uses are pulled in here, plus small wrappers for the variadic
// functions Swift cannot call (pam_syslog, the conversation with preformatted text).
#ifndef TWOFACTOR_PAM_SHIM_H
#define TWOFACTOR_PAM_SHIM_H

#define PAM_SM_AUTH
#define PAM_SM_ACCOUNT
#include <security/pam_appl.h>
#include <security/pam_modules.h>
#include <security/pam_ext.h>

#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

// glibc declares these as enum members with same-named macros, which Swift imports awkwardly;
// plain ints are simpler to use from Swift.
enum {
    TWOFACTOR_SOCKET_TYPE = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
    TWOFACTOR_SEND_FLAGS = MSG_NOSIGNAL,  // a vanished daemon must not SIGPIPE sshd
    TWOFACTOR_SUN_PATH_SIZE = sizeof(((struct sockaddr_un *)0)->sun_path),
};

/// pam_syslog(pamh, priority, "%s", message).
void twofactor_syslog(pam_handle_t *pamh, int priority, const char *message);

/// pam_syslog(pamh, priority, "%s: %s%s", before, strerror(errnum), after), thread-safe.
void twofactor_syslog_errno(pam_handle_t *pamh, int priority, const char *before, int errnum, const char *after);

/// One conversation message of `style` (PAM_PROMPT_ECHO_OFF, PAM_ERROR_MSG, PAM_TEXT_INFO...).
/// For prompts, *response receives the answer (malloc'd, may be NULL); the caller must release it
/// with twofactor_free_secret. The response array itself is zeroed and freed here.
int twofactor_converse(pam_handle_t *pamh, int style, const char *message, char **response);

/// The uid of the process at the other end of the connected Unix socket `fd` (SO_PEERCRED:
/// whoever called listen() on the server side). Returns 0 or -1 with errno set.
/// In C because struct ucred needs _GNU_SOURCE, which would change how Swift imports connect().
int twofactor_peer_uid(int fd, uid_t *uid);

/// Zeroes a NUL-terminated secret (explicit_bzero, not optimised away) and frees it.
void twofactor_free_secret(char *secret);

#endif
