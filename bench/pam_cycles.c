/* In-process PAM cycles for bench/run: pam_start / pam_authenticate / pam_end in a loop, with a
 * conversation function that answers every prompt with the line's code, no process start in
 * between (what pamtester's wall time includes).
 *
 *   pam_cycles SERVICE LINES_FILE REPEAT
 * LINES_FILE has "user code" per line ("-" for no code); each line is one cycle, and the file is
 * run REPEAT times (1 for stacks where a code is good only once). Prints one JSON object:
 * cycles, seconds, cycles_per_s and how many returned PAM_SUCCESS.
 */
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *current_code = "";

static int conversation(int n, const struct pam_message **msg, struct pam_response **resp, void *data) {
    (void)data;
    struct pam_response *r = calloc(n, sizeof *r);
    if (!r) return PAM_BUF_ERR;
    for (int i = 0; i < n; i++)
        if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF || msg[i]->msg_style == PAM_PROMPT_ECHO_ON)
            r[i].resp = strdup(current_code);
    *resp = r;
    return PAM_SUCCESS;
}

/* libpam would sleep its failure delay after each refused attempt; a benchmark of cycles wants
 * the modules' cost, so the delay is taken over and skipped (pamtester has no such hook). */
static void no_delay(int status, unsigned delay, void *data) { (void)status; (void)delay; (void)data; }

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: pam_cycles SERVICE LINES_FILE REPEAT\n"); return 2; }
    FILE *f = fopen(argv[2], "r");
    if (!f) { perror(argv[2]); return 2; }
    int cap = 256, n = 0;
    char (*users)[64] = malloc(cap * sizeof *users), (*codes)[64] = malloc(cap * sizeof *codes);
    while (fscanf(f, "%63s %63s", users[n], codes[n]) == 2) {
        if (++n == cap) {
            cap *= 2;
            users = realloc(users, cap * sizeof *users);
            codes = realloc(codes, cap * sizeof *codes);
        }
    }
    fclose(f);
    int repeat = atoi(argv[3]), success = 0, cycles = 0;
    struct pam_conv conv = {conversation, NULL};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < repeat; r++)
        for (int i = 0; i < n; i++) {
            pam_handle_t *h = NULL;
            current_code = strcmp(codes[i], "-") ? codes[i] : "";
            int rc = pam_start(argv[1], users[i], &conv, &h);
            if (rc == PAM_SUCCESS) {
                pam_set_item(h, PAM_FAIL_DELAY, (const void *)no_delay);
                rc = pam_authenticate(h, 0);
            }
            if (rc == PAM_SUCCESS) success++;
            pam_end(h, rc);
            cycles++;
        }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("{\"cycles\": %d, \"seconds\": %.4f, \"cycles_per_s\": %.1f, \"success\": %d}\n", cycles, s, cycles / s, success);
    return 0;
}
