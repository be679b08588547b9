/* fake_engine.c - scripted HTTP server for the remote-engine tests (fake_engine.h). */
#include "fake_engine.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#define ROUTES_MAX 64
#define PATHS_MAX 32

struct route {
    struct fake_route r;
    char *method, *path, *ctype, *body, *location; /* owned copies */
    int used;
};

struct path_stat {
    char path[128];
    unsigned hits;
    char *last_body;             /* owned */
};

struct fake_engine {
    struct MHD_Daemon *d;
    pthread_mutex_t lock;
    struct route routes[ROUTES_MAX];
    size_t n_routes;
    struct path_stat paths[PATHS_MAX];
    size_t n_paths;
    atomic_bool stopping;
};

struct conn {
    char *body;
    size_t len, cap;
};

struct answer {
    struct fake_engine *f;
    const char *body;            /* borrowed from the route (routes are never removed) */
    size_t len;
    long cut_after, stall_after;
};

struct fake_route fake_route_default(const char *method, const char *path, int status,
                                     const char *body)
{
    struct fake_route r;
    memset(&r, 0, sizeof r);
    r.method = method;
    r.path = path;
    r.status = status;
    r.body = body;
    r.cut_after = -1;
    r.stall_after = -1;
    return r;
}

static void nap(struct fake_engine *f, int ms)
{
    for (int t = 0; t < ms && !atomic_load(&f->stopping); t += 10) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct answer *a = cls;
    size_t end = a->len;
    if (a->cut_after >= 0 && (size_t)a->cut_after < end) {
        end = (size_t)a->cut_after;
    }
    if (a->stall_after >= 0 && (size_t)a->stall_after < end) {
        end = (size_t)a->stall_after;
    }
    if (pos >= end) {
        if (a->stall_after >= 0 && pos >= (uint64_t)a->stall_after) {
            nap(a->f, 600000); /* until the server stops */
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (a->cut_after >= 0 && pos >= (uint64_t)a->cut_after) {
            return MHD_CONTENT_READER_END_WITH_ERROR; /* the connection breaks */
        }
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    size_t n = end - (size_t)pos;
    if (n > max) {
        n = max;
    }
    /* small writes, so a client sees events arrive one by one */
    if (n > 512) {
        n = 512;
    }
    memcpy(buf, a->body + pos, n);
    return (ssize_t)n;
}

static struct path_stat *stat_of(struct fake_engine *f, const char *path)
{
    for (size_t i = 0; i < f->n_paths; i++) {
        if (strcmp(f->paths[i].path, path) == 0) {
            return &f->paths[i];
        }
    }
    if (f->n_paths == PATHS_MAX) {
        return NULL;
    }
    struct path_stat *p = &f->paths[f->n_paths++];
    snprintf(p->path, sizeof p->path, "%s", path);
    return p;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    struct fake_engine *f = cls;
    struct conn *cn = *con_cls;
    if (!cn) {
        cn = calloc(1, sizeof *cn);
        *con_cls = cn;
        return cn ? MHD_YES : MHD_NO;
    }
    if (*upload_size) {
        if (cn->len + *upload_size + 1 > cn->cap) {
            size_t cap = (cn->len + *upload_size + 1) * 2;
            char *b = realloc(cn->body, cap);
            if (!b) {
                return MHD_NO;
            }
            cn->body = b;
            cn->cap = cap;
        }
        memcpy(cn->body + cn->len, upload, *upload_size);
        cn->len += *upload_size;
        cn->body[cn->len] = '\0';
        *upload_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&f->lock);
    struct path_stat *ps = stat_of(f, url);
    if (ps) {
        ps->hits++;
        free(ps->last_body);
        ps->last_body = cn->body ? strdup(cn->body) : strdup("");
    }
    struct route *hit = NULL;
    for (size_t i = 0; i < f->n_routes; i++) {
        struct route *r = &f->routes[i];
        if (strcmp(r->path, url) != 0 || strcmp(r->method, method) != 0) {
            continue;
        }
        if (r->r.times > 0 && r->used >= r->r.times) {
            continue;
        }
        hit = r;
        r->used++;
        break;
    }
    pthread_mutex_unlock(&f->lock);
    if (!hit) {
        static const char nf[] = "{\"error\":{\"message\":\"no such route\",\"code\":404}}";
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(sizeof nf - 1, (void *)nf, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, "Content-Type", "application/json");
        enum MHD_Result ret = MHD_queue_response(c, 404, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    if (hit->r.delay_ms > 0) {
        nap(f, hit->r.delay_ms);
    }
    struct answer *a = calloc(1, sizeof *a);
    if (!a) {
        return MHD_NO;
    }
    a->f = f;
    a->body = hit->body ? hit->body : "";
    a->len = hit->r.body_len;
    a->cut_after = hit->r.cut_after;
    a->stall_after = hit->r.stall_after;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, reader, a, free);
    MHD_add_response_header(resp, "Content-Type", hit->ctype ? hit->ctype : "application/json");
    if (hit->location) {
        MHD_add_response_header(resp, "Location", hit->location);
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)hit->r.status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    struct conn *cn = *con_cls;
    if (cn) {
        free(cn->body);
        free(cn);
        *con_cls = NULL;
    }
}

int fake_engine_start(struct fake_engine **out, uint16_t *port)
{
    *out = NULL;
    struct fake_engine *f = calloc(1, sizeof *f);
    if (!f) {
        return -1;
    }
    pthread_mutex_init(&f->lock, NULL);
    atomic_init(&f->stopping, false);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = 0;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, on_request, f, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
                            f, MHD_OPTION_END);
    if (!f->d) {
        pthread_mutex_destroy(&f->lock);
        free(f);
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
    *port = di ? di->port : 0;
    *out = f;
    return 0;
}

static char *dup_or_null(const char *s, size_t n)
{
    if (!s) {
        return NULL;
    }
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

int fake_engine_add(struct fake_engine *f, const struct fake_route *r)
{
    pthread_mutex_lock(&f->lock);
    if (f->n_routes == ROUTES_MAX) {
        pthread_mutex_unlock(&f->lock);
        return -1;
    }
    struct route *d = &f->routes[f->n_routes];
    memset(d, 0, sizeof *d);
    d->r = *r;
    size_t blen = r->body ? (r->body_len ? r->body_len : strlen(r->body)) : 0;
    d->r.body_len = blen;
    d->method = dup_or_null(r->method, strlen(r->method));
    d->path = dup_or_null(r->path, strlen(r->path));
    d->ctype = r->content_type ? dup_or_null(r->content_type, strlen(r->content_type)) : NULL;
    d->body = r->body ? dup_or_null(r->body, blen) : NULL;
    d->location = r->location ? dup_or_null(r->location, strlen(r->location)) : NULL;
    f->n_routes++;
    pthread_mutex_unlock(&f->lock);
    return 0;
}

int fake_engine_add_file(struct fake_engine *f, const char *method, const char *path,
                         int status, const char *content_type, const char *file)
{
    FILE *fp = fopen(file, "rb");
    if (!fp) {
        return -1;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, fp)) > 0) {
        if (len + n > cap) {
            cap = (len + n) * 2;
            char *b = realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(fp);
                return -1;
            }
            buf = b;
        }
        memcpy(buf + len, tmp, n);
        len += n;
    }
    fclose(fp);
    struct fake_route r = fake_route_default(method, path, status, buf ? buf : "");
    r.body_len = len;
    r.content_type = content_type;
    int rc = fake_engine_add(f, &r);
    free(buf);
    return rc;
}

unsigned fake_engine_hits(struct fake_engine *f, const char *path)
{
    pthread_mutex_lock(&f->lock);
    unsigned h = 0;
    for (size_t i = 0; i < f->n_paths; i++) {
        if (strcmp(f->paths[i].path, path) == 0) {
            h = f->paths[i].hits;
        }
    }
    pthread_mutex_unlock(&f->lock);
    return h;
}

char *fake_engine_last_body(struct fake_engine *f, const char *path)
{
    pthread_mutex_lock(&f->lock);
    char *b = NULL;
    for (size_t i = 0; i < f->n_paths; i++) {
        if (strcmp(f->paths[i].path, path) == 0 && f->paths[i].last_body) {
            b = strdup(f->paths[i].last_body);
        }
    }
    pthread_mutex_unlock(&f->lock);
    return b;
}

void fake_engine_stop(struct fake_engine **fp)
{
    if (!fp || !*fp) {
        return;
    }
    struct fake_engine *f = *fp;
    atomic_store(&f->stopping, true);
    MHD_stop_daemon(f->d);
    for (size_t i = 0; i < f->n_routes; i++) {
        struct route *r = &f->routes[i];
        free(r->method);
        free(r->path);
        free(r->ctype);
        free(r->body);
        free(r->location);
    }
    for (size_t i = 0; i < f->n_paths; i++) {
        free(f->paths[i].last_body);
    }
    pthread_mutex_destroy(&f->lock);
    free(f);
    *fp = NULL;
}
