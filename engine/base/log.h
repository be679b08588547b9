/* log.h - ponder's logger: quiet by default, levels raised by -v.
 *
 * Messages go to a fixed ring (for the TUI to show) and, when a sink is enabled (the
 * headless commands), to stderr. Thread-safe: a mutex guards the ring.
 * Ownership: no heap; strings returned by pd_log_ring_get are copied into the caller's
 * buffer. */
#ifndef PD_LOG_H
#define PD_LOG_H

#include <stddef.h>

enum pd_log_level {
    PD_LOG_ERROR,
    PD_LOG_WARN,
    PD_LOG_INFO,
    PD_LOG_DEBUG,
    PD_LOG_LEVEL_COUNT
};

/* Messages above `level` are dropped. Default PD_LOG_WARN. */
void pd_log_set_level(enum pd_log_level level);
enum pd_log_level pd_log_get_level(void);

/* When on (default), messages are also written to stderr. The TUI turns it off while
 * curses owns the screen. */
void pd_log_set_stderr(int on);

void pd_log(enum pd_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define PD_LOG_RING_SIZE 64
#define PD_LOG_LINE_MAX 256

/* Copies the i-th most recent ring line (0 = newest) into buf. Returns 0 when there is
 * no such line. */
int pd_log_ring_get(size_t i, char *buf, size_t n);

#endif
