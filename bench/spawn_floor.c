/*
 * spawn_floor: the smallest possible "supervisor", used by bench/run.py as a
 * same-machine, same-moment reference for the startup scenario.
 *
 *   spawn_floor N CMD...            start N copies of CMD, then wait
 *   spawn_floor --discard N CMD...  the same with stdout/stderr on /dev/null
 *
 * Each child is started like kelpie starts a program: posix_spawnp (PATH
 * lookup, vfork-style, returns once the child has exec'd), its own process
 * group, stdin from /dev/null, stdout and stderr each on a pipe that the
 * parent keeps open (with --discard, like `log.mode = "discard"`: both on
 * /dev/null and no pipes, so the parent's descriptor table, which every
 * child copies and its exec walks, stays small).  Nothing else: no config
 * parsing, no logging, no event loop.  SIGTERM/SIGINT: SIGTERM to every child's group, reap them
 * all, exit 0.
 *
 * Built by run.py with `cc -O2` into its temp dir; not part of kelpie.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static volatile sig_atomic_t stop;

static void on_term(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    int discard = argc > 1 && strcmp(argv[1], "--discard") == 0;
    if (discard) {
        argv++;
        argc--;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: spawn_floor [--discard] N CMD [ARG...]\n");
        return 2;
    }
    int n = atoi(argv[1]);
    pid_t *pids = calloc((size_t)n, sizeof(pid_t));
    if (!pids) return 1;

    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);

    for (int i = 0; i < n && !stop; i++) {
        if (discard) {
            posix_spawn_file_actions_t fa;
            posix_spawn_file_actions_init(&fa);
            posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
            posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
            posix_spawn_file_actions_adddup2(&fa, 1, 2);
            int rc = posix_spawnp(&pids[i], argv[2], &fa, &attr, &argv[2], environ);
            posix_spawn_file_actions_destroy(&fa);
            if (rc) {
                fprintf(stderr, "posix_spawnp: %s\n", strerror(rc));
                return 1;
            }
            continue;
        }
        int out[2], err[2];
        if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
            perror("pipe2");
            return 1;
        }
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        posix_spawn_file_actions_adddup2(&fa, err[1], 2);
        int rc = posix_spawnp(&pids[i], argv[2], &fa, &attr, &argv[2], environ);
        posix_spawn_file_actions_destroy(&fa);
        close(out[1]);
        close(err[1]);
        if (rc) {
            fprintf(stderr, "posix_spawnp: %s\n", strerror(rc));
            return 1;
        }
        /* out[0] / err[0] stay open, like a supervisor's output relay. */
    }
    while (!stop) pause();
    for (int i = 0; i < n; i++)
        if (pids[i] > 0) kill(-pids[i], SIGTERM);
    for (int i = 0; i < n; i++)
        if (pids[i] > 0)
            while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR) {
            }
    return 0;
}
