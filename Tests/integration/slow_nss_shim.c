/* LD_PRELOAD shim for the integration tests: getpwuid_r for a non-zero uid and getgrnam_r
 * answer correctly, but only after SLOW_NSS_DELAY_MS milliseconds (default 2000), the way a slow
 * LDAP or SSSD directory does. Root's own lookup (uid 0) stays fast: /etc/passwd answers it.
 * Built by test_daemon.py: gcc -shared -fPIC -o slow_nss.so slow_nss_shim.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <time.h>

static void slow_down(void) {
    const char *text = getenv("SLOW_NSS_DELAY_MS");
    long ms = text ? atol(text) : 2000;
    struct timespec delay = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&delay, &delay) != 0) {}
}

int getpwuid_r(uid_t uid, struct passwd *entry, char *buffer, size_t size, struct passwd **result) {
    int (*real)(uid_t, struct passwd *, char *, size_t, struct passwd **) =
        (int (*)(uid_t, struct passwd *, char *, size_t, struct passwd **))dlsym(RTLD_NEXT, "getpwuid_r");
    if (uid != 0) slow_down();
    return real(uid, entry, buffer, size, result);
}

int getgrnam_r(const char *name, struct group *entry, char *buffer, size_t size, struct group **result) {
    int (*real)(const char *, struct group *, char *, size_t, struct group **) =
        (int (*)(const char *, struct group *, char *, size_t, struct group **))dlsym(RTLD_NEXT, "getgrnam_r");
    slow_down();
    return real(name, entry, buffer, size, result);
}
