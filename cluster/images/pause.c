/*
 * The pod sandbox's process: holds the pod's namespaces open and does nothing else. As PID 1 of
 * the pod's PID namespace it reaps orphaned children, and it exits on SIGINT or SIGTERM (PID 1
 * ignores signals it has no handler for). The same contract as Kubernetes' own pause.c; built
 * static so the image needs nothing else.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
  (void)sig;
  _exit(0);
}

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    printf("pause (ballast)\n");
    return 0;
  }
  if (getpid() != 1) fprintf(stderr, "pause: not running as PID 1\n");
  struct sigaction stop = {.sa_handler = on_stop};
  struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0 || sigaction(SIGCHLD, &child, NULL) < 0) {
    perror("pause: sigaction");
    return 1;
  }
  for (;;) pause();
}
