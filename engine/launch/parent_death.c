/*
 * spillway's exec guard: makes the kernel kill the program spillway runs when spillway dies, even by
 * SIGKILL (which no handler sees), then becomes that program.
 *
 *   parent_death <spillway pid> <program path> <argv0> [args...]
 *
 * PR_SET_PDEATHSIG(SIGKILL) asks for SIGKILL when the thread that forked us exits; it survives execve
 * (except into set-user-ID/-group or file-capability programs). If spillway died before the prctl,
 * getppid() no longer names it: then the program is not started at all. Exit status 127 when nothing
 * could be started (as a shell would), after a message on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s <parent pid> <program path> <argv0> [args...]\n", argv[0]);
    return 127;
  }
  char *end;
  long parent = strtol(argv[1], &end, 10);
  if (*end || parent <= 0) {
    fprintf(stderr, "spillway guard: bad parent pid '%s'\n", argv[1]);
    return 127;
  }
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
    fprintf(stderr, "spillway guard: prctl(PR_SET_PDEATHSIG): %s\n", strerror(errno));
    return 127;
  }
  if (getppid() != (pid_t)parent) return 128 + SIGKILL; /* spillway is already gone */
  execv(argv[2], argv + 3);
  fprintf(stderr, "spillway: %s: %s\n", argv[2], strerror(errno));
  return 127;
}
