/* Endurance and concurrency driver for pam_twofactor.so: many pam_start / pam_authenticate /
 * pam_end cycles in one process, optionally from several threads, each thread with its own PAM
 * handle. Compiled by test_pam.py with: gcc -O2 -o pam_driver pam_driver.c -lpam -lpthread
 *
 * usage: pam_driver SERVICE CYCLES THREADS WARMUP SPEC [SPEC...]
 *   SPEC is USER:ANSWER:EXPECTED (EXPECTED a PAM status number; ANSWER is what the conversation
 *   answers to every prompt). A SPEC starting with '!' runs once, first, in the thread whose
 *   number follows it ("!3:alice:123456:0"), before that thread's loop; the other specs rotate
 *   through the loop. WARMUP cycles (of thread 0's count) run before the first RSS reading.
 *
 * Output (stdout, one line): cycles=N mismatches=N rss_warm_kb=N rss_end_kb=N
 * Each mismatch is also reported on stderr. Exit status 0 when every result was as expected.
 *
 * usage: pam_driver --direct MODULE SERVICE USER ANSWER [ARG...]
 *   Calls MODULE's pam_sm_authenticate itself, on a real handle from pam_start(SERVICE), with
 *   ARGs as its argv: arguments a PAM configuration file cannot carry (libpam cuts lines at about
 *   1 KB). Prints each conversation message as "message STYLE: TEXT" and then "status=N".
 *
 * Built with -DFREE_CHECK -shared -fPIC instead, this file is an LD_PRELOAD library whose free()
 * reports on stderr ("FREE_CHECK: ...") any freed heap block that still holds the bytes of
 * $FREE_CHECK_MARKER (a code or password that should have been zeroed first). */
#ifdef FREE_CHECK
#define _GNU_SOURCE
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void __libc_free(void *);

void free(void *block) {
    static const char *marker;
    static size_t marker_length;
    if (block != NULL) {
        if (marker == NULL) {
            marker = getenv("FREE_CHECK_MARKER");
            marker_length = marker ? strlen(marker) : 0;
        }
        if (marker_length > 0 && memmem(block, malloc_usable_size(block), marker, marker_length) != NULL) {
            static const char warning[] = "FREE_CHECK: a freed block still holds the marker\n";
            write(2, warning, sizeof warning - 1);
        }
    }
    __libc_free(block);
}
#else

#include <dlfcn.h>
#include <pthread.h>
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct spec { char *user; char *answer; int expected; int thread; };

static const char *service;
static long cycles_per_thread;
static int thread_count;
static long warmup;
static struct spec *loop_specs, *once_specs;
static int loop_count, once_count;
static long total_cycles, total_mismatches, rss_warm_kb = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t warm_barrier;

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* Answers every prompt with the answer; swallows messages. Memory from malloc, as PAM wants. */
static int show_messages;

static int converse(int n, const struct pam_message **msgs, struct pam_response **out, void *data) {
    const char *answer = data;
    if (show_messages)
        for (int i = 0; i < n; i++) printf("message %d: %s\n", msgs[i]->msg_style, msgs[i]->msg);
    struct pam_response *resp = calloc((size_t)n, sizeof *resp);
    if (!resp) return PAM_BUF_ERR;
    for (int i = 0; i < n; i++) {
        int style = msgs[i]->msg_style;
        if (style == PAM_PROMPT_ECHO_OFF || style == PAM_PROMPT_ECHO_ON) {
            resp[i].resp = strdup(answer);
            if (!resp[i].resp) {
                for (int j = 0; j < i; j++) free(resp[j].resp);
                free(resp);
                return PAM_BUF_ERR;
            }
        }
    }
    *out = resp;
    return PAM_SUCCESS;
}

static int authenticate(const struct spec *s) {
    struct pam_conv conv = { converse, s->answer };
    pam_handle_t *pamh = NULL;
    int status = pam_start(service, s->user, &conv, &pamh);
    if (status != PAM_SUCCESS) return -1000 - status;
    pam_set_item(pamh, PAM_RHOST, "127.0.0.1");
    pam_set_item(pamh, PAM_TTY, "pam_driver");
    status = pam_authenticate(pamh, 0);
    pam_end(pamh, status);
    return status;
}

static void check(const struct spec *s, int status, long *mismatches) {
    if (status != s->expected) {
        (*mismatches)++;
        fprintf(stderr, "mismatch: user %s: got %d, expected %d\n", s->user, status, s->expected);
    }
}

static void *run(void *arg) {
    int thread = (int)(long)arg;
    long done = 0, mismatches = 0;
    for (int i = 0; i < once_count; i++) {
        if (once_specs[i].thread != thread) continue;
        check(&once_specs[i], authenticate(&once_specs[i]), &mismatches);
        done++;
    }
    for (long c = 0; c < cycles_per_thread; c++) {
        if (c == warmup) {
            pthread_barrier_wait(&warm_barrier);
            if (thread == 0) rss_warm_kb = rss_kb();
            pthread_barrier_wait(&warm_barrier);
        }
        const struct spec *s = &loop_specs[(c + thread) % loop_count];
        check(s, authenticate(s), &mismatches);
        done++;
    }
    pthread_mutex_lock(&lock);
    total_cycles += done;
    total_mismatches += mismatches;
    pthread_mutex_unlock(&lock);
    return NULL;
}

static int parse_spec(char *text, struct spec *s) {
    s->thread = 0;
    if (text[0] == '!') {
        char *end;
        s->thread = (int)strtol(text + 1, &end, 10);
        if (*end != ':') return -1;
        text = end + 1;
    }
    char *first = strchr(text, ':');
    char *last = strrchr(text, ':');
    if (!first || first == last) return -1;
    *first = '\0';
    *last = '\0';
    s->user = text;
    s->answer = first + 1;
    s->expected = atoi(last + 1);
    return 0;
}

typedef int (*entry_point)(pam_handle_t *, int, int, const char **);

static int direct(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s --direct MODULE SERVICE USER ANSWER [ARG...]\n", argv[0]);
        return 2;
    }
    void *module = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
    if (!module) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    entry_point authenticate_entry = (entry_point)dlsym(module, "pam_sm_authenticate");
    if (!authenticate_entry) {
        fprintf(stderr, "dlsym: %s\n", dlerror());
        return 2;
    }
    show_messages = 1;
    struct pam_conv conv = { converse, argv[5] };
    pam_handle_t *pamh = NULL;
    if (pam_start(argv[3], argv[4], &conv, &pamh) != PAM_SUCCESS) {
        fprintf(stderr, "pam_start failed\n");
        return 2;
    }
    int status = authenticate_entry(pamh, 0, argc - 6, (const char **)(argv + 6));
    pam_end(pamh, status);
    printf("status=%d\n", status);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--direct") == 0) return direct(argc, argv);
    if (argc < 6) {
        fprintf(stderr, "usage: %s SERVICE CYCLES THREADS WARMUP SPEC...\n", argv[0]);
        return 2;
    }
    service = argv[1];
    cycles_per_thread = atol(argv[2]);
    thread_count = atoi(argv[3]);
    warmup = atol(argv[4]);
    if (thread_count < 1 || cycles_per_thread < 1 || warmup < 0 || warmup >= cycles_per_thread) {
        fprintf(stderr, "bad counts\n");
        return 2;
    }
    loop_specs = calloc((size_t)argc, sizeof *loop_specs);
    once_specs = calloc((size_t)argc, sizeof *once_specs);
    for (int i = 5; i < argc; i++) {
        struct spec s;
        int once = argv[i][0] == '!';
        if (parse_spec(argv[i], &s) != 0) {
            fprintf(stderr, "bad spec %s\n", argv[i]);
            return 2;
        }
        if (once) once_specs[once_count++] = s; else loop_specs[loop_count++] = s;
    }
    if (loop_count == 0) {
        fprintf(stderr, "need at least one looping spec\n");
        return 2;
    }
    pthread_barrier_init(&warm_barrier, NULL, (unsigned)thread_count);
    pthread_t *threads = calloc((size_t)thread_count, sizeof *threads);
    for (int t = 0; t < thread_count; t++)
        if (pthread_create(&threads[t], NULL, run, (void *)(long)t) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 2;
        }
    for (int t = 0; t < thread_count; t++) pthread_join(threads[t], NULL);
    long rss_end_kb = rss_kb();
    printf("cycles=%ld mismatches=%ld rss_warm_kb=%ld rss_end_kb=%ld\n",
           total_cycles, total_mismatches, rss_warm_kb, rss_end_kb);
    pthread_barrier_destroy(&warm_barrier);
    free(threads);
    free(loop_specs);
    free(once_specs);
    return total_mismatches == 0 ? 0 : 1;
}
#endif
