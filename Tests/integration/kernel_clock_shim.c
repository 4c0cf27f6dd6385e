/* Test-only LD_PRELOAD shim: makes adjtimex(2) report a chosen kernel clock state to the daemon,
 * so the clock tests mean the same on a machine whose kernel is NTP-synchronised and on one
 * whose kernel is not. Built by test_clock.py with -DSYNCHRONISED=0 or 1. Only read requests
 * (modes == 0) are answered; the daemon never makes any other. Nothing of this is in the product. */
#include <errno.h>
#include <string.h>
#include <sys/timex.h>

#ifndef SYNCHRONISED
#error "build with -DSYNCHRONISED=0 or -DSYNCHRONISED=1"
#endif

int adjtimex(struct timex *tx) {
    if (tx->modes != 0) {
        errno = EPERM;
        return -1;
    }
    memset(tx, 0, sizeof *tx);
#if SYNCHRONISED
    tx->status = STA_PLL;
    tx->esterror = 1500;
    tx->maxerror = 20000;
    return TIME_OK;
#else
    tx->status = STA_UNSYNC;
    tx->esterror = 16000000;
    tx->maxerror = 16000000;
    return TIME_ERROR;
#endif
}

int ntp_adjtime(struct timex *tx) { return adjtimex(tx); }
