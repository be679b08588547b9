/* remote_sse.h - an incremental parser for server-sent events (the `text/event-stream`
 * format of the WHATWG HTML standard, section 9.2), the framing every streaming endpoint
 * of an OpenAI-compatible server uses.
 *
 * Bytes arrive in arbitrary pieces (a network read may end inside a line, inside a CRLF
 * pair or inside a UTF-8 character); pd_sse_feed keeps what it has not finished and
 * calls the callback once per complete event. Rules followed: lines end at CRLF, LF or
 * CR; a line starting with ':' is a comment; "field: value" drops one space after the
 * colon; `data` lines of one event are joined with "\n"; `event` names the event type;
 * `id` and `retry` are accepted and ignored; an empty line dispatches the event (an event
 * without data is not dispatched). A bound on the bytes of one event (line + data) keeps
 * a hostile server from growing the buffers without end.
 *
 * Ownership: struct pd_sse is caller-owned (init/deinit); the strings handed to the
 * callback are borrowed for the call. Thread-safety: one thread per parser. */
#ifndef PD_REMOTE_SSE_H
#define PD_REMOTE_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "mem.h"
#include "status.h"

#define PD_SSE_EVENT_MAX (64u << 20) /* default bound on one event's bytes */

/* Called with one complete event: its type ("message" when no `event` field came) and
 * its data, NUL-terminated (data[len] == '\0'). A non-PD_OK return stops the parse and
 * is returned by pd_sse_feed (the callback fills err). */
typedef enum pd_status (*pd_sse_fn)(void *ud, const char *event, const char *data, size_t len,
                                    struct pd_err *err);

struct pd_sse {
    struct pd_buf line;   /* owned: the line being read */
    struct pd_buf data;   /* owned: the data of the event being assembled */
    char event[64];       /* the event type being assembled ("" = message) */
    bool has_data;        /* a data field was seen for this event */
    bool last_cr;         /* the previous byte was CR: a following LF ends nothing */
    size_t max_event;     /* bound on line + data bytes */
    size_t n_events;      /* events dispatched so far */
};

/* Initialises p with a bound of max_event bytes per event (0: PD_SSE_EVENT_MAX). */
void pd_sse_init(struct pd_sse *p, size_t max_event);
void pd_sse_deinit(struct pd_sse *p);

/* Parses buf[0..n), calling fn for each event it completes. Errors: PD_EFORMAT when an
 * event exceeds the bound (naming it), PD_ENOMEM, or what fn returned. After an error
 * the parser must be reset (deinit + init) before reuse. */
enum pd_status pd_sse_feed(struct pd_sse *p, const char *buf, size_t n, pd_sse_fn fn,
                           void *ud, struct pd_err *err);

/* True when no partial line or undispatched data is pending: the stream ended on an
 * event boundary. A stream that ends otherwise was cut off. */
bool pd_sse_idle(const struct pd_sse *p);

#endif
