/* Load generator for twofactord's wire protocol v1 (docs/PROTOCOL.md), for bench/run.
 *
 * Each client is a thread with its own Unix-socket connection that sends one request, waits for
 * the answer and sends the next (what the PAM module does), timing every round trip with
 * CLOCK_MONOTONIC. Nothing but read/write and the frame bytes is in the timed loop.
 *
 *   loadgen --socket PATH --op check|verify --clients 1,8,64 --seconds S --accounts FILE
 *   loadgen --socket PATH --op enroll --clients N --count N --prefix P --accounts OUT
 *
 * verify sends codes that the daemon accepts: FILE has "name base32secret last_step" lines (what
 * enroll writes), and each account is given the TOTP code of the next step it has not used
 * (now-1 to now+1: the daemon accepts each step once per account, within the window of one step;
 * not now-1 near the end of a step, see oldest_usable_step).
 * Accounts are spread over the clients, so many accounts are needed for a long run; a client that
 * runs out of usable steps stops, and the count is reported as "exhausted".
 * enroll does enrollBegin + enrollConfirm (code computed from the secret the daemon sent) for
 * COUNT new accounts named P0000000... and writes them to OUT.
 * --connect-each 1 opens a new connection for every request and closes it after the answer, as the
 * PAM module does for a login; the time then includes connect and the daemon's accept.
 * --gap-us N waits N microseconds (untimed) after each answer: requests that come as logins do,
 * to a daemon that has gone idle in between, rather than back to back.
 * --max-requests N stops each level after about N requests (each client sends its share,
 * rounded up), whatever the time left: the smoke run's bound on the codes it spends, so that a
 * fast machine cannot use up every account's usable steps before the last verify row.
 * --any-step 1 gives every account the current step each time: for the no-work server, which
 * accepts anything, so the client does the same work (an HMAC per request) without running out.
 * After verify, FILE is rewritten with the steps used, so the next run skips them.
 * Output: one JSON object per client count on stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "socket_io.h"

enum { OP_CHECK = 1, OP_VERIFY = 2, OP_ENROLL_BEGIN = 0x10, OP_ENROLL_CONFIRM = 0x11 };
enum { TAG_USER = 1, TAG_CODE = 2, TAG_SERVICE = 3, TAG_SECRET = 0x20 };
static const char *status_names[256];

typedef struct {
    char name[64];
    uint8_t key[64];
    int key_len;
    char b32[128];
    int64_t next_step; /* lowest step not yet used */
} account_t;

static account_t *accounts;
static int account_count;
static const char *socket_path;
static int op;
static double seconds = 5;
static const char *prefix = "bench";
static long enroll_count;
/* --any-step: every pick succeeds (for the no-work server, which accepts any code). */
static int any_step;
static int connect_each;  /* --connect-each 1: a connection per request, as a login */
static long gap_us;       /* --gap-us N: idle time after each answer */
static long max_requests; /* --max-requests N: a level's requests, at most (0: no bound) */

typedef struct {
    int index, clients;
    uint64_t *lat;
    size_t n, cap;
    uint64_t status[256];
    int exhausted, failed;
    double deadline;
    size_t limit;  /* this client's share of --max-requests, or SIZE_MAX */
    FILE *out;
    pthread_mutex_t *out_lock;
} client_t;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + t.tv_nsec;
}

static int b32decode(const char *s, uint8_t *out) {
    int bits = 0, n = 0;
    uint32_t acc = 0;
    for (; *s; s++) {
        int v;
        if (*s >= 'A' && *s <= 'Z') v = *s - 'A';
        else if (*s >= '2' && *s <= '7') v = *s - '2' + 26;
        else continue;
        acc = (acc << 5) | v;
        bits += 5;
        if (bits >= 8) { out[n++] = (acc >> (bits - 8)) & 0xff; bits -= 8; }
    }
    return n;
}

static void totp(const uint8_t *key, int len, int64_t step, char out[7]) {
    uint8_t msg[8], mac[20];
    unsigned mlen = 0;
    for (int i = 7; i >= 0; i--) { msg[i] = step & 0xff; step >>= 8; }
    HMAC(EVP_sha1(), key, len, msg, 8, mac, &mlen);
    int o = mac[19] & 0xf;
    uint32_t v = ((mac[o] & 0x7f) << 24) | (mac[o + 1] << 16) | (mac[o + 2] << 8) | mac[o + 3];
    snprintf(out, 7, "%06u", v % 1000000);
}

static int64_t step_now(void) { return (int64_t)time(NULL) / 30; }

/* The oldest step a code may be for: now-1, except in the last 2 s of a step, when a request
 * could reach the daemon after the step has turned and now-1 has left its window (a refusal that
 * would be the load generator's, not the daemon's). */
static int64_t oldest_usable_step(int64_t *now_out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec / 30;
    *now_out = now;
    return ts.tv_sec % 30 >= 28 ? now : now - 1;
}

static int connect_socket(void) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, socket_path, sizeof a.sun_path - 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("loadgen: connect");
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static size_t put_field(uint8_t *p, int tag, const char *value) {
    size_t n = strlen(value);
    p[0] = tag; p[1] = n >> 8; p[2] = n & 0xff;
    memcpy(p + 3, value, n);
    return 3 + n;
}

/* Builds a request frame in buf; returns its length. */
static size_t frame(uint8_t *buf, int code, const char *user, const char *otp) {
    size_t n = 4;
    buf[n++] = 1;
    buf[n++] = code;
    n += put_field(buf + n, TAG_USER, user);
    if (otp) n += put_field(buf + n, TAG_CODE, otp);
    if (code == OP_VERIFY) n += put_field(buf + n, TAG_SERVICE, "loadgen");
    uint32_t len = n - 4;
    buf[0] = len >> 24; buf[1] = len >> 16; buf[2] = len >> 8; buf[3] = len;
    return n;
}

/* One round trip; the answer's payload lands in resp (up to cap bytes). Returns its length. */
static long round_trip(int fd, uint8_t *req, size_t len, uint8_t *resp, size_t cap) {
    if (io_all(fd, req, len, 1)) return -1;
    return read_frame(fd, resp, cap);
}

static void record(client_t *c, uint64_t ns) {
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 65536;
        c->lat = realloc(c->lat, c->cap * sizeof *c->lat);
    }
    c->lat[c->n++] = ns;
}

/* The next account of this client with a usable step, or -1. */
static int pick(client_t *c, int *cursor, int64_t *step_out) {
    int mine = (account_count - c->index + c->clients - 1) / c->clients;
    int64_t now;
    int64_t oldest = oldest_usable_step(&now);
    for (int tries = 0; tries < mine; tries++) {
        int i = c->index + (*cursor % mine) * c->clients;
        (*cursor)++;
        account_t *a = &accounts[i];
        int64_t s = a->next_step < oldest ? oldest : a->next_step;
        if (any_step) { *step_out = now; return i; }
        if (s <= now + 1) { a->next_step = s + 1; *step_out = s; return i; }
    }
    return -1;
}

static void *run_load(void *arg) {
    client_t *c = arg;
    uint8_t req[1024], resp[65536];
    int fd = connect_each ? -1 : connect_socket();
    if (!connect_each && fd < 0) { c->failed = 1; return NULL; }
    int cursor = 0;
    while (now_s() < c->deadline && c->n < c->limit) {
        char otp[7];
        int i;
        if (op == OP_VERIFY) {
            int64_t s;
            i = pick(c, &cursor, &s);
            if (i < 0) { c->exhausted = 1; break; }
            totp(accounts[i].key, accounts[i].key_len, s, otp);
        } else {
            i = c->index + (cursor++ % ((account_count - c->index + c->clients - 1) / c->clients)) * c->clients;
        }
        size_t len = frame(req, op, accounts[i].name, op == OP_VERIFY ? otp : NULL);
        uint64_t t0 = now_ns();
        if (connect_each && (fd = connect_socket()) < 0) { c->failed = 1; break; }
        long n = round_trip(fd, req, len, resp, sizeof resp);
        if (connect_each) { close(fd); fd = -1; }
        uint64_t t1 = now_ns();
        if (n < 0) { c->failed = 1; break; }
        record(c, t1 - t0);
        c->status[resp[1]]++;
        if (gap_us) usleep(gap_us);
    }
    if (fd >= 0) close(fd);
    return NULL;
}

/* The value of field `tag` in a response payload, as a C string in out. */
static int field(const uint8_t *p, long n, int tag, char *out, size_t cap) {
    long i = 2;
    while (i + 3 <= n) {
        int t = p[i], len = p[i + 1] << 8 | p[i + 2];
        if (i + 3 + len > n) return -1;
        if (t == tag && (size_t)len < cap) { memcpy(out, p + i + 3, len); out[len] = 0; return 0; }
        i += 3 + len;
    }
    return -1;
}

static void *run_enroll(void *arg) {
    client_t *c = arg;
    uint8_t req[1024], resp[65536];
    int fd = connect_socket();
    if (fd < 0) { c->failed = 1; return NULL; }
    for (long k = c->index; k < enroll_count; k += c->clients) {
        char name[64], b32[128], otp[7];
        uint8_t key[64];
        snprintf(name, sizeof name, "%s%07ld", prefix, k);
        uint64_t t0 = now_ns();
        size_t len = frame(req, OP_ENROLL_BEGIN, name, NULL);
        long n = round_trip(fd, req, len, resp, sizeof resp);
        if (n < 0 || resp[1] != 0 || field(resp, n, TAG_SECRET, b32, sizeof b32)) { c->failed = 1; break; }
        int klen = b32decode(b32, key);
        int64_t s = step_now();
        totp(key, klen, s, otp);
        len = frame(req, OP_ENROLL_CONFIRM, name, otp);
        n = round_trip(fd, req, len, resp, sizeof resp);
        uint64_t t1 = now_ns();
        if (n < 0) { c->failed = 1; break; }
        c->status[resp[1]]++;
        if (resp[1] != 0) continue;
        record(c, t1 - t0);
        pthread_mutex_lock(c->out_lock);
        fprintf(c->out, "%s %s %lld\n", name, b32, (long long)s);
        pthread_mutex_unlock(c->out_lock);
    }
    close(fd);
    return NULL;
}

static int cmp64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void load_accounts(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) { perror(path); exit(2); }
    size_t cap = 1024;
    accounts = malloc(cap * sizeof *accounts);
    char name[64], b32[128];
    long long last;
    while (fscanf(f, "%63s %127s %lld", name, b32, &last) == 3) {
        if ((size_t)account_count == cap) accounts = realloc(accounts, (cap *= 2) * sizeof *accounts);
        account_t *a = &accounts[account_count++];
        strcpy(a->name, name);
        strcpy(a->b32, b32);
        a->key_len = b32decode(b32, a->key);
        a->next_step = last + 1;
    }
    fclose(f);
    if (!account_count) { fprintf(stderr, "loadgen: no accounts in %s\n", path); exit(2); }
}

static int run_level(int clients, const char *out_path) {
    client_t *cs = calloc(clients, sizeof *cs);
    pthread_t *ts = calloc(clients, sizeof *ts);
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    FILE *out = NULL;
    if (op == OP_ENROLL_BEGIN) {
        out = fopen(out_path, "w");
        if (!out) { perror(out_path); return 2; }
    }
    if (op != OP_ENROLL_BEGIN && clients > account_count) clients = account_count;
    double start = now_s();
    for (int i = 0; i < clients; i++) {
        cs[i] = (client_t){.index = i, .clients = clients, .deadline = start + seconds, .out = out, .out_lock = &lock,
                           .limit = max_requests ? (size_t)((max_requests + clients - 1) / clients) : SIZE_MAX};
        pthread_create(&ts[i], NULL, op == OP_ENROLL_BEGIN ? run_enroll : run_load, &cs[i]);
    }
    size_t total = 0;
    uint64_t status[256] = {0};
    int exhausted = 0, failed = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(ts[i], NULL);
        total += cs[i].n;
        exhausted += cs[i].exhausted;
        failed += cs[i].failed;
        for (int s = 0; s < 256; s++) status[s] += cs[i].status[s];
    }
    double elapsed = now_s() - start;
    if (out) fclose(out);
    uint64_t *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < clients; i++) {
        memcpy(all + k, cs[i].lat, cs[i].n * sizeof *all);
        k += cs[i].n;
        free(cs[i].lat);
    }
    qsort(all, total, sizeof *all, cmp64);
#define PCT(p) (total ? all[(size_t)((p) * (total - 1))] / 1000.0 : 0)
    const char *name = op == OP_CHECK ? "check" : op == OP_VERIFY ? "verify" : "enroll";
    printf("{\"op\": \"%s\", \"clients\": %d, \"ops\": %zu, \"seconds\": %.3f, \"ops_per_s\": %.1f, "
           "\"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, \"exhausted_clients\": %d, "
           "\"failed_clients\": %d, \"statuses\": {",
           name, clients, total, elapsed, total / elapsed, PCT(0.50), PCT(0.99), PCT(0.999), exhausted, failed);
    int first = 1;
    for (int s = 0; s < 256; s++)
        if (status[s]) {
            printf("%s\"%s\": %llu", first ? "" : ", ", status_names[s] ? status_names[s] : "other",
                   (unsigned long long)status[s]);
            first = 0;
        }
    printf("}}\n");
    fflush(stdout);
    free(all); free(cs); free(ts);
    return failed ? 1 : 0;
}

int main(int argc, char **argv) {
    const char *clients_list = "1", *accounts_path = NULL;
    status_names[0] = "ok"; status_names[1] = "accepted"; status_names[2] = "enrolled";
    status_names[3] = "notEnrolled"; status_names[0x10] = "wrongCode"; status_names[0x11] = "codeReused";
    status_names[0x12] = "lockedOut"; status_names[0x13] = "alreadyEnrolled"; status_names[0x20] = "permissionDenied";
    status_names[0x21] = "badRequest"; status_names[0x24] = "internalError"; status_names[0x25] = "busy";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--socket")) socket_path = argv[i + 1];
        else if (!strcmp(argv[i], "--op")) {
            const char *o = argv[i + 1];
            op = !strcmp(o, "check") ? OP_CHECK : !strcmp(o, "verify") ? OP_VERIFY : !strcmp(o, "enroll") ? OP_ENROLL_BEGIN : 0;
        } else if (!strcmp(argv[i], "--clients")) clients_list = argv[i + 1];
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--accounts")) accounts_path = argv[i + 1];
        else if (!strcmp(argv[i], "--count")) enroll_count = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--prefix")) prefix = argv[i + 1];
        else if (!strcmp(argv[i], "--any-step")) any_step = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--connect-each")) connect_each = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--gap-us")) gap_us = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-requests")) max_requests = atol(argv[i + 1]);
        else { fprintf(stderr, "loadgen: unknown option %s\n", argv[i]); return 2; }
    }
    if (!socket_path || !op || !accounts_path) {
        fprintf(stderr, "usage: loadgen --socket PATH --op check|verify|enroll --clients 1,8 --seconds S --accounts FILE [--count N --prefix P]\n");
        return 2;
    }
    if (op != OP_ENROLL_BEGIN) load_accounts(accounts_path);
    int status = 0;
    char *list = strdup(clients_list);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) status |= run_level(atoi(tok), accounts_path);
    free(list);
    /* Keeps the used steps for the next run on the same accounts (each step is accepted once). */
    if (op == OP_VERIFY && !any_step) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", accounts_path);
        FILE *f = fopen(tmp, "w");
        if (!f) { perror(tmp); return 2; }
        for (int i = 0; i < account_count; i++)
            fprintf(f, "%s %s %lld\n", accounts[i].name, accounts[i].b32, (long long)accounts[i].next_step - 1);
        if (fclose(f) || rename(tmp, accounts_path)) { perror(accounts_path); return 2; }
    }
    return status;
}
