/* The floors of `check` and of a durable `verify` for bench/run's daemon load test: what each
 * cannot do without, in C, one thread per connection like bench/noop_server.c. No policy, no
 * permission check, no code check, no decoding beyond the user name: whatever twofactord spends
 * beyond this server is its own overhead; what this server spends beyond the no-work server is
 * the work any correct daemon on this store must do.
 *
 * check: reads the account's row by name from the daemon's own SQLite file (a prepared statement
 * on a read-only connection taken from a pool, so a connection per login costs no opening; what
 * the daemon reads) and appends one audit line to a file (the daemon records every
 * check), then answers enrolled when the row has a secret, notEnrolled otherwise.
 *
 * verify: changes the account's row (the used step) in a copy of that file, made at start with
 * SQLite's backup API so the daemon's own store is never written, in WAL mode with
 * synchronous=FULL as the daemon's store, and answers accepted only after the transaction that
 * holds the change has committed. Commits are grouped (leader and followers: the first waiting
 * thread commits everything queued, on its own thread, while the next ones queue), so this is
 * the least a durable verify costs on this store: the row read and written, one commit and its
 * fdatasync shared by a group, the audit line.
 *
 *   floor_server SOCKET_PATH DATABASE AUDIT_FILE [COPY]   (runs until killed; prints "listening")
 * Without COPY verify frames are refused (badRequest).
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

/* What the daemon reads for a check (SQLiteTransaction.loginState in
 * Sources/TwoFactorDaemon/Store/SQLiteAccountStore.swift). */
static const char *lookup = "SELECT secret IS NOT NULL, grace_logins_used FROM account WHERE name = ?";

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

/* The verify floor's writer: one read-write connection to the copy, used by whichever thread
 * leads the next group commit. */
typedef struct waiter { const uint8_t *user; size_t user_len; int done, ok; struct waiter *next; } waiter_t;
static sqlite3 *writer;
static sqlite3_stmt *begin, *use_step, *commit_stmt;
static waiter_t *queued;
static int committing;
static pthread_mutex_t commit_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t committed = PTHREAD_COND_INITIALIZER;

static void open_copy(const char *copy) {
    sqlite3 *source;
    unlink(copy);
    if (sqlite3_open_v2(database, &source, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_open(copy, &writer) != SQLITE_OK) {
        fprintf(stderr, "floor_server: cannot open %s or %s\n", database, copy);
        exit(1);
    }
    sqlite3_backup *b = sqlite3_backup_init(writer, "main", source, "main");
    if (!b || sqlite3_backup_step(b, -1) != SQLITE_DONE || sqlite3_backup_finish(b) != SQLITE_OK) {
        fprintf(stderr, "floor_server: copy: %s\n", sqlite3_errmsg(writer));
        exit(1);
    }
    sqlite3_close(source);
    /* The daemon's settings (SQLiteAccountStore.swift); the step, like the daemon's unit, is read
     * and written inside the write transaction. */
    if (sqlite3_exec(writer, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(writer, "BEGIN IMMEDIATE", -1, SQLITE_PREPARE_PERSISTENT, &begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(writer, "UPDATE account SET last_step = coalesce(last_step, 0) + 1, last_used_at = ?, "
                                   "failures = 0 WHERE name = ?", -1, SQLITE_PREPARE_PERSISTENT, &use_step, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(writer, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &commit_stmt, NULL) != SQLITE_OK) {
        fprintf(stderr, "floor_server: %s\n", sqlite3_errmsg(writer));
        exit(1);
    }
}

/* Runs one group: every queued change in one transaction, then the commit (with its fdatasync). */
static void commit_group(waiter_t *group) {
    int ok = sqlite3_step(begin) == SQLITE_DONE;
    sqlite3_reset(begin);
    for (waiter_t *w = group; w; w = w->next) {
        sqlite3_bind_int64(use_step, 1, (sqlite3_int64)time(NULL));
        sqlite3_bind_text(use_step, 2, (const char *)w->user, (int)w->user_len, SQLITE_STATIC);
        w->ok = ok && sqlite3_step(use_step) == SQLITE_DONE && sqlite3_changes(writer) == 1;
        sqlite3_reset(use_step);
    }
    if (!ok || sqlite3_step(commit_stmt) != SQLITE_DONE) {
        for (waiter_t *w = group; w; w = w->next) w->ok = 0;
        sqlite3_exec(writer, "ROLLBACK", NULL, NULL, NULL);
    }
    sqlite3_reset(commit_stmt);
}

/* Whether the account's change committed: queues it, and leads a group commit when none runs. */
static int durable_use(const uint8_t *user, size_t user_len) {
    waiter_t me = {.user = user, .user_len = user_len};
    pthread_mutex_lock(&commit_lock);
    me.next = queued;
    queued = &me;
    while (!me.done) {
        if (committing) { pthread_cond_wait(&committed, &commit_lock); continue; }
        waiter_t *group = queued;
        queued = NULL;
        committing = 1;
        pthread_mutex_unlock(&commit_lock);
        commit_group(group);
        pthread_mutex_lock(&commit_lock);
        for (waiter_t *w = group; w; w = w->next) w->done = 1;
        committing = 0;
        pthread_cond_broadcast(&committed);
    }
    pthread_mutex_unlock(&commit_lock);
    return me.ok;
}

static void *serve(void *arg) {
    int fd = (int)(intptr_t)arg;
    uint8_t req[8192];
    long n;
    while ((n = read_frame(fd, req, sizeof req)) >= 0) {
        /* The user field (tag 1) is the first one the load generator writes. */
        if (n < 5 || req[2] != 1) break;
        size_t user_len = (size_t)req[3] << 8 | req[4];
        if (5 + user_len > (size_t)n) break;
        if (req[1] == 0x02) {
            int ok = writer && durable_use(req + 5, user_len);
            char line[512];
            int len = snprintf(line, sizeof line, "%ld twofactord: event=verify account=%.*s service=loadgen rhost=- "
                               "tty=- method=totp result=%s reason=ok\n", (long)time(NULL), (int)user_len, req + 5,
                               ok ? "accepted" : "refused");
            if (write(audit_fd, line, len) != len) break;
            if (io_all(fd, (uint8_t *)(ok ? ANSWER_ACCEPTED : ANSWER_BAD_REQUEST),
                       ok ? sizeof ANSWER_ACCEPTED : sizeof ANSWER_BAD_REQUEST, 1)) break;
            continue;
        }
        reader_t *r = take_reader();
        sqlite3_stmt *stmt = r->stmt;
        sqlite3_bind_text(stmt, 1, (const char *)req + 5, (int)user_len, SQLITE_STATIC);
        int has_secret = 0;
        if (sqlite3_step(stmt) == SQLITE_ROW) {
            has_secret = sqlite3_column_int(stmt, 0);
            (void)sqlite3_column_int64(stmt, 1);
        }
        sqlite3_reset(stmt);
        give_back(r);
        char line[512];
        int len = snprintf(line, sizeof line, "%ld twofactord: event=check account=%.*s service=- rhost=- tty=- "
                           "rule=enrolled result=ok reason=ok\n", (long)time(NULL), (int)user_len, req + 5);
        if (write(audit_fd, line, len) != len) break;
        const uint8_t *answer = has_secret ? ANSWER_ENROLLED : ANSWER_NOT_ENROLLED;
        if (io_all(fd, (uint8_t *)answer, 6, 1)) break;
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: floor_server SOCKET_PATH DATABASE AUDIT_FILE [COPY]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    database = argv[2];
    if (argc == 5) open_copy(argv[4]);
    audit_fd = open(argv[3], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    int s = listen_at(argv[1], "floor_server");
    if (audit_fd < 0) perror(argv[3]);
    if (audit_fd < 0 || s < 0) return 1;
    serve_forever(s, serve);
}
