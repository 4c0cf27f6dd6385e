/* The floor of `check` for bench/run's daemon load test: what a `check` cannot do without, in C,
 * one thread per connection like bench/noop_server.c. For each frame it reads the account's row
 * by name from the daemon's own SQLite file (a prepared statement on a read-only connection taken
 * from a pool, so a connection per login costs no opening; the columns the daemon reads) and
 * appends one audit line to a file (the daemon records every check), then answers. No policy, no
 * permission check, no decoding beyond the user name: whatever twofactord spends beyond this
 * server is its own overhead; what this server spends beyond the no-work server is the work any
 * correct daemon must do.
 *
 *   floor_server SOCKET_PATH DATABASE AUDIT_FILE   (runs until killed; prints "listening")
 * Answers: enrolled when the row has a secret, notEnrolled otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "socket_io.h"
#include "thread_server.h"

static const char *database;
static int audit_fd;

/* Opened read-only connections with their prepared lookup, reused by every client connection. */
typedef struct reader { sqlite3 *db; sqlite3_stmt *stmt; struct reader *next; } reader_t;
static reader_t *idle_readers;
static pthread_mutex_t readers_lock = PTHREAD_MUTEX_INITIALIZER;

/* The daemon's column list (Sources/TwoFactorDaemon/Store/SQLiteAccountRows.swift). */
static const char *lookup =
    "SELECT name, secret, algorithm, digits, period, enrolled_at, pending_secret, pending_algorithm, "
    "pending_digits, pending_period, pending_since, last_step, last_used_at, failures, locked_until, "
    "lockouts, drift_steps, kind, pending_kind, hotp_counter, hotp_resync_counter, account_window, "
    "grace_logins_used FROM account WHERE name = ?";

static reader_t *take_reader(void) {
    pthread_mutex_lock(&readers_lock);
    reader_t *r = idle_readers;
    if (r) idle_readers = r->next;
    pthread_mutex_unlock(&readers_lock);
    if (r) return r;
    r = calloc(1, sizeof *r);
    if (sqlite3_open_v2(database, &r->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(r->db, lookup, -1, SQLITE_PREPARE_PERSISTENT, &r->stmt, NULL) != SQLITE_OK) {
        fprintf(stderr, "floor_server: %s\n", sqlite3_errmsg(r->db));
        exit(1);
    }
    return r;
}

static void give_back(reader_t *r) {
    pthread_mutex_lock(&readers_lock);
    r->next = idle_readers;
    idle_readers = r;
    pthread_mutex_unlock(&readers_lock);
}

static void *serve(void *arg) {
    int fd = (int)(intptr_t)arg;
    static const uint8_t enrolled[] = {0, 0, 0, 2, 1, 0x02};
    static const uint8_t not_enrolled[] = {0, 0, 0, 2, 1, 0x03};
    uint8_t req[8192];
    long n;
    while ((n = read_frame(fd, req, sizeof req)) >= 0) {
        /* The user field (tag 1) is the first one the load generator writes. */
        if (n < 5 || req[2] != 1) break;
        size_t user_len = (size_t)req[3] << 8 | req[4];
        if (5 + user_len > (size_t)n) break;
        reader_t *r = take_reader();
        sqlite3_stmt *stmt = r->stmt;
        sqlite3_bind_text(stmt, 1, (const char *)req + 5, (int)user_len, SQLITE_STATIC);
        int has_secret = 0;
        if (sqlite3_step(stmt) == SQLITE_ROW) {
            for (int i = 0; i < sqlite3_column_count(stmt); i++) (void)sqlite3_column_value(stmt, i);
            has_secret = sqlite3_column_type(stmt, 1) != SQLITE_NULL;
        }
        sqlite3_reset(stmt);
        give_back(r);
        char line[512];
        int len = snprintf(line, sizeof line, "%ld twofactord: event=check account=%.*s service=- rhost=- tty=- "
                           "rule=enrolled result=ok reason=ok\n", (long)time(NULL), (int)user_len, req + 5);
        if (write(audit_fd, line, len) != len) break;
        const uint8_t *answer = has_secret ? enrolled : not_enrolled;
        if (io_all(fd, (uint8_t *)answer, 6, 1)) break;
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: floor_server SOCKET_PATH DATABASE AUDIT_FILE\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    database = argv[2];
    audit_fd = open(argv[3], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    int s = listen_at(argv[1], "floor_server");
    if (audit_fd < 0) perror(argv[3]);
    if (audit_fd < 0 || s < 0) return 1;
    serve_forever(s, serve);
}
