/* fake_engine_main.c - `fake-engine`: the scripted HTTP server of fake_engine.h as a
 * program, for the command-line fault tests.
 *
 *   fake-engine --port-file F ROUTE...
 *   ROUTE:  --route METHOD PATH STATUS FILE [--sse] [--cut N] [--stall N] [--delay MS]
 *                 [--times N]
 * FILE is the body ("-" for none); the modifiers apply to the route before them. Runs
 * until SIGINT or SIGTERM; writes the port to F once listening. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_engine.h"

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b) {
        b[n] = '\0';
        *len = (size_t)n;
    }
    fclose(f);
    return b;
}

int main(int argc, char **argv)
{
    const char *port_file = NULL;
    struct fake_route routes[32];
    char *bodies[32];
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc) {
            port_file = argv[++i];
        } else if (strcmp(argv[i], "--route") == 0 && i + 4 < argc && n < 32) {
            size_t len = 0;
            const char *file = argv[i + 4];
            bodies[n] = strcmp(file, "-") == 0 ? NULL : read_file(file, &len);
            if (strcmp(file, "-") != 0 && !bodies[n]) {
                fprintf(stderr, "fake-engine: cannot read %s\n", file);
                return 2;
            }
            routes[n] = fake_route_default(argv[i + 1], argv[i + 2], atoi(argv[i + 3]),
                                           bodies[n]);
            routes[n].body_len = len;
            n++;
            i += 4;
        } else if (n > 0 && strcmp(argv[i], "--sse") == 0) {
            routes[n - 1].content_type = "text/event-stream";
        } else if (n > 0 && i + 1 < argc && strcmp(argv[i], "--cut") == 0) {
            routes[n - 1].cut_after = atol(argv[++i]);
        } else if (n > 0 && i + 1 < argc && strcmp(argv[i], "--stall") == 0) {
            routes[n - 1].stall_after = atol(argv[++i]);
        } else if (n > 0 && i + 1 < argc && strcmp(argv[i], "--delay") == 0) {
            routes[n - 1].delay_ms = atoi(argv[++i]);
        } else if (n > 0 && i + 1 < argc && strcmp(argv[i], "--times") == 0) {
            routes[n - 1].times = atoi(argv[++i]);
        } else {
            fprintf(stderr, "fake-engine: bad argument '%s'\n", argv[i]);
            return 2;
        }
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct fake_engine *f = NULL;
    uint16_t port = 0;
    if (fake_engine_start(&f, &port) != 0) {
        fprintf(stderr, "fake-engine: cannot listen\n");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        fake_engine_add(f, &routes[i]);
        free(bodies[i]);
    }
    if (port_file) {
        FILE *pf = fopen(port_file, "w");
        if (pf) {
            fprintf(pf, "%u\n", (unsigned)port);
            fclose(pf);
        }
    }
    int sig;
    sigwait(&set, &sig);
    fake_engine_stop(&f);
    return 0;
}
