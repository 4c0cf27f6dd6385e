/* The floor of a durable commit on the file system the store lives on, for bench/run: appends 4 KiB
 * (about one WAL frame) to a file and waits for fdatasync, again and again, as SQLite's WAL commit
 * with synchronous=FULL does once per transaction. Every durable verify waits for one of these
 * (shared with the others of its group commit).
 *
 *   fsync_floor DIRECTORY SECONDS     prints one JSON object: flushes, p50/p99 µs
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + t.tv_nsec;
}

static int cmp64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: fsync_floor DIRECTORY SECONDS\n"); return 2; }
    char path[4096];
    snprintf(path, sizeof path, "%s/fsync-floor.XXXXXX", argv[1]);
    int fd = mkstemp(path);
    if (fd < 0) { perror(path); return 1; }
    unlink(path);
    static uint8_t page[4096];
    memset(page, 0x5a, sizeof page);
    size_t cap = 1 << 20, n = 0;
    uint64_t *lat = malloc(cap * sizeof *lat);
    uint64_t end = now_ns() + (uint64_t)(atof(argv[2]) * 1e9);
    off_t offset = 0;
    while (now_ns() < end && n < cap) {
        uint64_t t0 = now_ns();
        if (pwrite(fd, page, sizeof page, offset) != sizeof page || fdatasync(fd) != 0) { perror("fsync_floor"); return 1; }
        lat[n++] = now_ns() - t0;
        offset = (offset + sizeof page) % (4 << 20);  /* a WAL-sized file, rewritten in place */
    }
    qsort(lat, n, sizeof *lat, cmp64);
    printf("{\"flushes\": %zu, \"p50_us\": %.1f, \"p99_us\": %.1f}\n", n, n ? lat[n / 2] / 1e3 : 0.0,
           n ? lat[n * 99 / 100] / 1e3 : 0.0);
    return 0;
}
