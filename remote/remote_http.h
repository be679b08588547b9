/* remote_http.h - HTTP requests to an inference server through libcurl.
 *
 * One pd_http is one connection slot: a libcurl easy handle driven by its own multi
 * handle, reused from request to request so keep-alive connections and TLS sessions
 * survive. libcurl does the protocol: redirects (followed, at most 5, http/https only,
 * the Authorization header not sent to another host), TLS with peer and host
 * verification (ponder offers no way to turn it off), chunked transfer, timeouts.
 *
 * A response body is either streamed to a callback (on_data, for 2xx responses: the
 * server-sent events of a streaming completion) or collected into resp->body (every
 * non-2xx body, so the caller can show the server's JSON error message, and 2xx bodies
 * when no callback is given). Collected bodies are bounded.
 *
 * Cancellation: pd_http_cancel (any thread) sets a flag and wakes the transfer loop
 * (curl_multi_wakeup), so a request in flight returns PD_ECANCELLED within
 * milliseconds, not at the next byte. The flag stays set (a request started after it
 * returns PD_ECANCELLED at once) until the owner calls pd_http_uncancel.
 *
 * Ownership: pd_http_open returns an owned handle (pd_http_close); strings in the params
 * are copied. Thread-safety: one thread drives a handle; pd_http_cancel may be called
 * from any thread while it does. */
#ifndef PD_REMOTE_HTTP_H
#define PD_REMOTE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "mem.h"
#include "status.h"

struct pd_http_params {
    long connect_timeout_ms;  /* TCP + TLS connect (0: 10000) */
    long timeout_ms;          /* the whole request (0: no limit) */
    long idle_timeout_ms;     /* no byte received for this long ends it (0: no limit) */
    const char *api_key;      /* NULL: none; else "Authorization: Bearer KEY" */
    size_t max_body;          /* bound on a collected body (0: 256 MiB) */
};

struct pd_http_params pd_http_default_params(void);

/* Why a request produced no HTTP response (resp->fail). */
enum pd_http_fail {
    PD_HTTP_FAIL_NONE,      /* a response arrived (see status) */
    PD_HTTP_FAIL_CONNECT,   /* refused, unreachable, name not resolved, TLS failed */
    PD_HTTP_FAIL_TIMEOUT,   /* a timeout of the params expired */
    PD_HTTP_FAIL_TRANSFER,  /* the connection broke or a body exceeded its bound */
    PD_HTTP_FAIL_COUNT
};

struct pd_http_resp {
    long status;              /* HTTP status (0 when none arrived) */
    enum pd_http_fail fail;
    struct pd_buf body;       /* owned: collected body (see the file comment) */
    double seconds;           /* wall time of the request */
};

void pd_http_resp_init(struct pd_http_resp *r);
void pd_http_resp_deinit(struct pd_http_resp *r);

/* Receives a piece of a 2xx body; a non-PD_OK return aborts the transfer and is
 * returned by pd_http_request (the callback fills err). */
typedef enum pd_status (*pd_http_data_fn)(void *ud, const char *p, size_t n,
                                          struct pd_err *err);

struct pd_http;

enum pd_status pd_http_open(const struct pd_http_params *p, struct pd_http **out,
                            struct pd_err *err);
/* Frees *h (NULL accepted) and sets it to NULL. */
void pd_http_close(struct pd_http **h);

/* Sends one request: method "GET" or "POST" (body: JSON text, body_len bytes) to url.
 * Returns PD_OK whenever a response arrived, whatever its status (resp->status); the
 * caller decides what a 4xx/5xx means. Errors: PD_ECANCELLED (pd_http_cancel), PD_EIO
 * naming the URL with libcurl's reason when no response arrived (resp->fail says which
 * kind), the status of on_data when it stopped the transfer, PD_ENOMEM. resp is reset
 * by the call. */
enum pd_status pd_http_request(struct pd_http *h, const char *method, const char *url,
                               const char *body, size_t body_len, pd_http_data_fn on_data,
                               void *ud, struct pd_http_resp *resp, struct pd_err *err);

/* Changes the total and idle limits (milliseconds, 0: none) of later requests. */
void pd_http_set_timeouts(struct pd_http *h, long timeout_ms, long idle_timeout_ms);

/* Aborts the request in flight (if any) and makes later ones fail until uncancelled.
 * Async-signal-safe apart from curl_multi_wakeup's write to a socket pair. */
void pd_http_cancel(struct pd_http *h);
void pd_http_uncancel(struct pd_http *h);
bool pd_http_cancelled(const struct pd_http *h);

/* "connect", "timeout", ...; "?" out of range. */
const char *pd_http_fail_name(enum pd_http_fail f);

#endif
