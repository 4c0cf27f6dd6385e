// The fuzz binaries that contain the PAM module replace libpam's pam_syslog with pamlog.c, which
// keeps the formatted lines so a harness can check them (and nothing floods the system log).
#ifndef FUZZ_PAMLOG_H
#define FUZZ_PAMLOG_H
#include <stddef.h>

/// Lines logged since the last reset (more than the buffer holds are counted, not kept).
int fuzz_pamlog_count(void);
/// The line `index` (NUL-terminated), or NULL beyond what was kept.
const char *fuzz_pamlog_line(int index);
/// Full length of line `index` before any truncation to the buffer.
size_t fuzz_pamlog_length(int index);
void fuzz_pamlog_reset(void);
#endif
