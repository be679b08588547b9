/* remote_http.c - libcurl requests with prompt cancellation (remote_http.h).
 *
 * DESIGN
 * Each handle pairs one easy handle with one multi handle; pd_http_request runs the
 * transfer with curl_multi_perform / curl_multi_poll on the calling thread. The poll
 * waits at most 200 ms, and pd_http_cancel wakes it at once through curl_multi_wakeup,
 * so the loop notices the cancel flag between any two network events. The write callback
 * looks at the response status (known once the headers are in): a 2xx body goes to the
 * caller's callback, anything else is collected (bounded) for the error message.
 * libcurl is initialised once per process (pthread_once) before the first handle. */
#include "remote_http.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#define BODY_MAX_DEFAULT (256u << 20)
#define POLL_MS 200

struct pd_http {
    CURL *easy;
    CURLM *multi;
    struct curl_slist *headers;   /* owned */
    struct pd_http_params p;
    char *api_key;                /* owned copy */
    atomic_bool cancel;
    /* per request */
    pd_http_data_fn on_data;
    void *ud;
    struct pd_http_resp *resp;
    struct pd_err *err;
    enum pd_status cb_status;     /* what on_data returned when it stopped the transfer */
    bool body_too_big;
};

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc = CURLE_OK;

static void curl_init_once(void)
{
    g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct pd_http_params pd_http_default_params(void)
{
    struct pd_http_params p;
    memset(&p, 0, sizeof p);
    p.connect_timeout_ms = 10000;
    p.max_body = BODY_MAX_DEFAULT;
    return p;
}

const char *pd_http_fail_name(enum pd_http_fail f)
{
    static const char *const names[] = {"none", "connect", "timeout", "transfer"};
    _Static_assert(sizeof names / sizeof names[0] == PD_HTTP_FAIL_COUNT, "one name per fail");
    return (unsigned)f < PD_HTTP_FAIL_COUNT ? names[f] : "?";
}

void pd_http_resp_init(struct pd_http_resp *r)
{
    memset(r, 0, sizeof *r);
    pd_buf_init(&r->body);
}

void pd_http_resp_deinit(struct pd_http_resp *r)
{
    pd_buf_deinit(&r->body);
    memset(r, 0, sizeof *r);
}

enum pd_status pd_http_open(const struct pd_http_params *params, struct pd_http **out,
                            struct pd_err *err)
{
    *out = NULL;
    pthread_once(&g_curl_once, curl_init_once);
    if (g_curl_init_rc != CURLE_OK) {
        return pd_err_set(err, PD_EIO, "libcurl: initialisation failed: %s",
                          curl_easy_strerror(g_curl_init_rc));
    }
    struct pd_http *h = calloc(1, sizeof *h);
    if (!h) {
        return pd_err_set(err, PD_ENOMEM, "http: out of memory");
    }
    h->p = params ? *params : pd_http_default_params();
    if (h->p.connect_timeout_ms <= 0) {
        h->p.connect_timeout_ms = 10000;
    }
    if (h->p.max_body == 0) {
        h->p.max_body = BODY_MAX_DEFAULT;
    }
    atomic_init(&h->cancel, false);
    enum pd_status st = PD_OK;
    if (h->p.api_key && *h->p.api_key) {
        size_t n = strlen(h->p.api_key) + 32;
        h->api_key = malloc(n);
        if (!h->api_key) {
            st = pd_err_set(err, PD_ENOMEM, "http: out of memory");
            goto fail;
        }
        snprintf(h->api_key, n, "Authorization: Bearer %s", h->p.api_key);
    }
    h->p.api_key = NULL; /* the copy above is what we keep */
    h->easy = curl_easy_init();
    h->multi = curl_multi_init();
    if (!h->easy || !h->multi) {
        st = pd_err_set(err, PD_ENOMEM, "libcurl: cannot create a handle");
        goto fail;
    }
    struct curl_slist *l = curl_slist_append(NULL, "Content-Type: application/json");
    l = l ? curl_slist_append(l, "Accept: application/json, text/event-stream") : NULL;
    if (l && h->api_key) {
        l = curl_slist_append(l, h->api_key);
    }
    if (!l) {
        st = pd_err_set(err, PD_ENOMEM, "http: out of memory");
        goto fail;
    }
    h->headers = l;
    *out = h;
    return PD_OK;
fail:
    pd_http_close(&h);
    return st;
}

void pd_http_close(struct pd_http **hp)
{
    if (!hp || !*hp) {
        return;
    }
    struct pd_http *h = *hp;
    if (h->multi) {
        curl_multi_cleanup(h->multi);
    }
    if (h->easy) {
        curl_easy_cleanup(h->easy);
    }
    curl_slist_free_all(h->headers);
    if (h->api_key) {
        /* the key should not outlive its use in freed memory */
        memset(h->api_key, 0, strlen(h->api_key));
        free(h->api_key);
    }
    free(h);
    *hp = NULL;
}

void pd_http_set_timeouts(struct pd_http *h, long timeout_ms, long idle_timeout_ms)
{
    h->p.timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
    h->p.idle_timeout_ms = idle_timeout_ms > 0 ? idle_timeout_ms : 0;
}

void pd_http_cancel(struct pd_http *h)
{
    atomic_store(&h->cancel, true);
    if (h->multi) {
        curl_multi_wakeup(h->multi);
    }
}

void pd_http_uncancel(struct pd_http *h)
{
    atomic_store(&h->cancel, false);
}

bool pd_http_cancelled(const struct pd_http *h)
{
    return atomic_load(&h->cancel);
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct pd_http *h = ud;
    size_t n = size * nmemb;
    long code = 0;
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && code < 300 && h->on_data) {
        enum pd_status st = h->on_data(h->ud, ptr, n, h->err);
        if (st != PD_OK) {
            h->cb_status = st;
            return 0; /* aborts with CURLE_WRITE_ERROR */
        }
        return n;
    }
    if (h->resp->body.len + n > h->p.max_body) {
        h->body_too_big = true;
        return 0;
    }
    if (!pd_buf_append(&h->resp->body, ptr, n)) {
        h->cb_status = pd_err_set(h->err, PD_ENOMEM, "http: out of memory");
        return 0;
    }
    return n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static enum pd_http_fail classify(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return PD_HTTP_FAIL_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return PD_HTTP_FAIL_TIMEOUT;
    default:
        return PD_HTTP_FAIL_TRANSFER;
    }
}

enum pd_status pd_http_request(struct pd_http *h, const char *method, const char *url,
                               const char *body, size_t body_len, pd_http_data_fn on_data,
                               void *ud, struct pd_http_resp *resp, struct pd_err *err)
{
    pd_buf_deinit(&resp->body);
    pd_http_resp_init(resp);
    if (atomic_load(&h->cancel)) {
        return pd_err_set(err, PD_ECANCELLED, "%s: cancelled", url);
    }
    bool post = strcmp(method, "POST") == 0;
    CURL *e = h->easy;
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->headers);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(e, CURLOPT_POSTREDIR, (long)CURL_REDIR_POST_ALL);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->p.connect_timeout_ms);
    if (h->p.timeout_ms > 0) {
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, h->p.timeout_ms);
    }
    if (h->p.idle_timeout_ms > 0) {
        /* fewer than 1 byte/s for the idle time: the server went silent */
        long secs = (h->p.idle_timeout_ms + 999) / 1000;
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, secs);
    }
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "ponder");
    char errbuf[CURL_ERROR_SIZE];
    errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    if (post) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    h->on_data = on_data;
    h->ud = ud;
    h->resp = resp;
    h->err = err;
    h->cb_status = PD_OK;
    h->body_too_big = false;
    double t0 = now_s();
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        return pd_err_set(err, PD_EIO, "%s: libcurl could not start the request", url);
    }
    CURLcode rc = CURLE_OK;
    bool done = false, cancelled = false;
    while (!done) {
        int running = 0;
        CURLMcode mc = curl_multi_perform(h->multi, &running);
        if (mc != CURLM_OK) {
            rc = CURLE_RECV_ERROR;
            break;
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(h->multi, &left))) {
            if (msg->msg == CURLMSG_DONE) {
                rc = msg->data.result;
                done = true;
            }
        }
        if (done || running == 0) {
            done = true;
            break;
        }
        if (atomic_load(&h->cancel)) {
            cancelled = true;
            break;
        }
        curl_multi_poll(h->multi, NULL, 0, POLL_MS, NULL);
        if (atomic_load(&h->cancel)) {
            cancelled = true;
            break;
        }
    }
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_multi_remove_handle(h->multi, e);
    resp->seconds = now_s() - t0;
    h->on_data = NULL;
    h->resp = NULL;
    h->err = NULL;
    if (cancelled) {
        return pd_err_set(err, PD_ECANCELLED, "%s: cancelled", url);
    }
    if (h->cb_status != PD_OK) {
        return h->cb_status;
    }
    if (rc == CURLE_OK) {
        return PD_OK;
    }
    resp->fail = h->body_too_big ? PD_HTTP_FAIL_TRANSFER : classify(rc);
    if (h->body_too_big) {
        return pd_err_set(err, PD_EIO, "%s: response body larger than %zu bytes", url,
                          h->p.max_body);
    }
    if (resp->fail == PD_HTTP_FAIL_TIMEOUT) {
        return pd_err_set(err, PD_EIO, "%s: timed out after %.1f s (%s)", url, resp->seconds,
                          errbuf[0] ? errbuf : curl_easy_strerror(rc));
    }
    return pd_err_set(err, PD_EIO, "%s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
}
