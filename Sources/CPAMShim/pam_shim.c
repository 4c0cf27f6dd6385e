// The module's C face: the PAM entry points, which hand the work to the Embedded Swift verifier
// (twofactor_authenticate, exported by Sources/PAMTwoFactor with @_cdecl), and wrappers for the
// variadic libpam calls. The version script (Sources/PAMTwoFactor/exports.map) keeps everything
// but pam_sm_authenticate and pam_sm_setcred local.
#define _GNU_SOURCE
#include <string.h>
#include "pam_shim.h"

extern int twofactor_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv);
extern int twofactor_account(pam_handle_t *pamh, int flags, int argc, const char **argv);
extern int twofactor_credentials(pam_handle_t *pamh, int flags, int argc, const char **argv);

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    return twofactor_authenticate(pamh, flags, argc, argv);
}

// The account phase: enrollment at login (enroll_at_login), which applications reach only after
// pam_authenticate succeeded, so only after the first factor.
PAM_EXTERN int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    return twofactor_account(pamh, flags, argc, argv);
}

// The module establishes no credentials, so it answers PAM_SUCCESS rather than PAM_IGNORE:
// when every module of a stack's setcred phase ignores, libpam reports failure, and sshd treats a
// failing pam_setcred as fatal for the session (sudo refuses too). pam_google_authenticator
// answers PAM_SUCCESS here for the same reason. PAM_ESTABLISH_CRED follows a successful login:
// the daemon counts enforcement's grace logins there (twofactor_credentials).
PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    if (flags & PAM_ESTABLISH_CRED) return twofactor_credentials(pamh, flags, argc, argv);
    return PAM_SUCCESS;
}

void twofactor_syslog(pam_handle_t *pamh, int priority, const char *message) {
    pam_syslog(pamh, priority, "%s", message);
}

void twofactor_syslog_errno(pam_handle_t *pamh, int priority, const char *before, int errnum, const char *after) {
    char buffer[128];
    const char *reason = strerror_r(errnum, buffer, sizeof buffer);  // GNU: returns the text
    pam_syslog(pamh, priority, "%s: %s%s", before, reason, after);
}

int twofactor_peer_uid(int fd, uid_t *uid) {
    struct ucred credentials;
    socklen_t size = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0) return -1;
    if (size != sizeof credentials) {
        errno = EPROTO;
        return -1;
    }
    *uid = credentials.uid;
    return 0;
}

void twofactor_free_secret(char *secret) {
    if (secret == NULL) return;
    explicit_bzero(secret, strlen(secret));
    free(secret);
}

int twofactor_converse(pam_handle_t *pamh, int style, const char *message, char **response) {
    if (response != NULL) *response = NULL;
    const struct pam_conv *conv = NULL;
    int status = pam_get_item(pamh, PAM_CONV, (const void **)&conv);
    if (status != PAM_SUCCESS) return status;
    if (conv == NULL || conv->conv == NULL) return PAM_CONV_ERR;

    struct pam_message msg = { .msg_style = style, .msg = message };
    const struct pam_message *msgs[1] = { &msg };
    struct pam_response *resp = NULL;
    status = conv->conv(1, msgs, &resp, conv->appdata_ptr);
    if (resp != NULL) {
        if (resp[0].resp != NULL) {
            if (status == PAM_SUCCESS && response != NULL) {
                *response = resp[0].resp;  // handed over; the caller zeroes and frees it
            } else {
                twofactor_free_secret(resp[0].resp);
            }
            resp[0].resp = NULL;
        }
        explicit_bzero(resp, sizeof *resp);
        free(resp);
    }
    return status;
}
