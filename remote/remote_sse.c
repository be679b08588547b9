/* remote_sse.c - incremental server-sent events parser (remote_sse.h). */
#include "remote_sse.h"

#include <stdio.h>
#include <string.h>

void pd_sse_init(struct pd_sse *p, size_t max_event)
{
    memset(p, 0, sizeof *p);
    pd_buf_init(&p->line);
    pd_buf_init(&p->data);
    p->max_event = max_event ? max_event : PD_SSE_EVENT_MAX;
}

void pd_sse_deinit(struct pd_sse *p)
{
    pd_buf_deinit(&p->line);
    pd_buf_deinit(&p->data);
    memset(p, 0, sizeof *p);
}

bool pd_sse_idle(const struct pd_sse *p)
{
    return p->line.len == 0 && !p->has_data && p->event[0] == '\0';
}

static void event_reset(struct pd_sse *p)
{
    p->data.len = 0;
    p->has_data = false;
    p->event[0] = '\0';
}

/* One complete line (without its terminator). */
static enum pd_status take_line(struct pd_sse *p, pd_sse_fn fn, void *ud, struct pd_err *err)
{
    const char *s = p->line.data ? p->line.data : "";
    size_t n = p->line.len;
    enum pd_status st = PD_OK;
    if (n == 0) {
        if (p->has_data) {
            if (!p->data.data && !pd_buf_append(&p->data, "", 0)) {
                return pd_err_set(err, PD_ENOMEM, "event stream: out of memory");
            }
            p->n_events++;
            st = fn(ud, p->event[0] ? p->event : "message", p->data.data ? p->data.data : "",
                    p->data.len, err);
        }
        event_reset(p);
        return st;
    }
    if (s[0] == ':') {
        return PD_OK; /* comment (servers send them as keep-alives) */
    }
    const char *colon = memchr(s, ':', n);
    size_t name_len = colon ? (size_t)(colon - s) : n;
    const char *val = colon ? colon + 1 : s + n;
    size_t val_len = (size_t)(s + n - val);
    if (val_len > 0 && val[0] == ' ') {
        val++;
        val_len--;
    }
    if (name_len == 4 && memcmp(s, "data", 4) == 0) {
        if (p->has_data && !pd_buf_append(&p->data, "\n", 1)) {
            return pd_err_set(err, PD_ENOMEM, "event stream: out of memory");
        }
        if (!pd_buf_append(&p->data, val, val_len)) {
            return pd_err_set(err, PD_ENOMEM, "event stream: out of memory");
        }
        p->has_data = true;
        if (p->data.len > p->max_event) {
            return pd_err_set(err, PD_EFORMAT, "event stream: event %zu exceeds %zu bytes",
                              p->n_events + 1, p->max_event);
        }
    } else if (name_len == 5 && memcmp(s, "event", 5) == 0) {
        snprintf(p->event, sizeof p->event, "%.*s", (int)(val_len < 63 ? val_len : 63), val);
    }
    /* id, retry and unknown fields are ignored, as the standard says */
    return PD_OK;
}

enum pd_status pd_sse_feed(struct pd_sse *p, const char *buf, size_t n, pd_sse_fn fn,
                           void *ud, struct pd_err *err)
{
    size_t i = 0;
    while (i < n) {
        if (p->last_cr && buf[i] == '\n') {
            p->last_cr = false; /* the LF of a CRLF pair */
            i++;
            continue;
        }
        p->last_cr = false;
        /* the run of bytes up to the next line terminator */
        size_t j = i;
        while (j < n && buf[j] != '\n' && buf[j] != '\r') {
            j++;
        }
        if (j > i) {
            if (p->line.len + (j - i) + p->data.len > p->max_event) {
                return pd_err_set(err, PD_EFORMAT,
                                  "event stream: a line of event %zu exceeds %zu bytes",
                                  p->n_events + 1, p->max_event);
            }
            if (!pd_buf_append(&p->line, buf + i, j - i)) {
                return pd_err_set(err, PD_ENOMEM, "event stream: out of memory");
            }
        }
        if (j == n) {
            break;
        }
        p->last_cr = buf[j] == '\r';
        enum pd_status st = take_line(p, fn, ud, err);
        p->line.len = 0;
        if (st != PD_OK) {
            return st;
        }
        i = j + 1;
    }
    return PD_OK;
}
