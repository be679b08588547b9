/* fake_engine.h - a scripted HTTP server for the remote-engine tests (libmicrohttpd, on
 * 127.0.0.1 and a free port): each route answers with a status and a body (usually a
 * fixture file's bytes), and can misbehave the ways real servers do: answer late, stall
 * in the middle of a stream, cut the connection after some bytes, answer only so many
 * times (then the next route for the same path answers), redirect.
 *
 * Ownership: routes are copied. Thread-safety: routes may be added and counters read
 * while the server runs (a mutex guards them). */
#ifndef PD_FAKE_ENGINE_H
#define PD_FAKE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fake_route {
    const char *method;       /* "GET" or "POST" */
    const char *path;         /* exact path, e.g. "/v1/completions" */
    int status;               /* HTTP status */
    const char *content_type; /* NULL: application/json */
    const char *body;         /* NULL: empty */
    size_t body_len;          /* 0 with a body: strlen(body) */
    long cut_after;           /* >= 0: close the connection after this many body bytes */
    long stall_after;         /* >= 0: after this many body bytes, send nothing more until
                               * the server stops */
    int delay_ms;             /* wait before answering at all */
    int times;                /* 0: every time; n > 0: the next n matching requests */
    const char *location;     /* Location header (redirects) */
};

/* A route with the defaults above (cut_after and stall_after -1). */
struct fake_route fake_route_default(const char *method, const char *path, int status,
                                     const char *body);

struct fake_engine;

/* Starts serving; *port receives the port. Returns 0 on success. */
int fake_engine_start(struct fake_engine **out, uint16_t *port);
/* Adds a route (copied); routes for one path answer in the order added. */
int fake_engine_add(struct fake_engine *f, const struct fake_route *r);
/* Adds a route whose body is the file's contents; -1 when it cannot be read. */
int fake_engine_add_file(struct fake_engine *f, const char *method, const char *path,
                         int status, const char *content_type, const char *file);
/* Requests seen for path so far. */
unsigned fake_engine_hits(struct fake_engine *f, const char *path);
/* A copy of the last request body seen for path (malloc'd, NUL-terminated; NULL if none). */
char *fake_engine_last_body(struct fake_engine *f, const char *path);
/* Stops (ends stalled and delayed answers) and frees; NULL-safe. */
void fake_engine_stop(struct fake_engine **f);

#endif
