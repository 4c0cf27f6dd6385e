// A pam_syslog for the fuzz binaries: records each line instead of sending it to syslog.
// Linked into the executable, it takes precedence over libpam's definition for the module's
// twofactor_syslog (Sources/CPAMShim/pam_shim.c).
#include <stdarg.h>
#include <stdio.h>
#include <security/pam_ext.h>
#include "pamlog.h"

enum { KEPT = 64, WIDTH = 1024 };
static char lines[KEPT][WIDTH];
static size_t lengths[KEPT];
static int count;

void pam_syslog(const pam_handle_t *pamh, int priority, const char *fmt, ...) {
    (void)pamh; (void)priority;
    if (count < KEPT) {
        va_list args;
        va_start(args, fmt);
        int length = vsnprintf(lines[count], WIDTH, fmt, args);
        va_end(args);
        lengths[count] = length < 0 ? 0 : (size_t)length;
    }
    count++;
}

int fuzz_pamlog_count(void) { return count; }
const char *fuzz_pamlog_line(int index) { return index >= 0 && index < count && index < KEPT ? lines[index] : NULL; }
size_t fuzz_pamlog_length(int index) { return index >= 0 && index < count && index < KEPT ? lengths[index] : 0; }
void fuzz_pamlog_reset(void) { count = 0; }
