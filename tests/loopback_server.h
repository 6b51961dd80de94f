/*
** loopback_server.h — starting and stopping tests/tool_hubserver (the loopback stand-in for the
** Hugging Face hub, which also serves any directory's files) from a test program. Header-only,
** for tests: one server per test program at a time.
*/
#ifndef TW_LOOPBACK_SERVER_H
#define TW_LOOPBACK_SERVER_H

#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t server_pid = -1;
static int   server_port;

/* SIGTERM, up to 5 s for it to exit, then SIGKILL. */
static inline void stop_server(void) {
    if (server_pid <= 0) return;
    kill(server_pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(server_pid, NULL, WNOHANG) == server_pid) {
            server_pid = -1;
            return;
        }
        usleep(50000);
    }
    kill(server_pid, SIGKILL);
    waitpid(server_pid, NULL, 0);
    server_pid = -1;
}

/* Starts $TOWER_BUILD/tests/tool_hubserver [dir] and reads its "PORT <n>" line (20 s at most).
** dir NULL: the server's default (the tiny fixture checkpoint). */
static inline bool start_server(const char *dir) {
    const char *build = getenv("TOWER_BUILD");
    char exe[1024];
    snprintf(exe, sizeof exe, "%s/tests/tool_hubserver", build && *build ? build : "build");
    int fds[2];
    if (pipe(fds) != 0) return false;
    server_pid = fork();
    if (server_pid < 0) return false;
    if (server_pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        if (dir) execl(exe, exe, dir, (char *)NULL);
        else execl(exe, exe, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[128];
    size_t n = 0;
    struct pollfd p = { .fd = fds[0], .events = POLLIN };
    while (n < sizeof line - 1 && poll(&p, 1, 20000) == 1) {
        if (read(fds[0], line + n, 1) <= 0 || line[n] == '\n') break;
        n++;
    }
    line[n] = 0;
    close(fds[0]);
    if (sscanf(line, "PORT %d", &server_port) != 1 || server_port <= 0) {
        fprintf(stderr, "could not start %s (got \"%s\")\n", exe, line);
        stop_server();
        return false;
    }
    return true;
}

#endif
