/* log.c - the ring-buffer logger. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static enum pd_log_level g_level = PD_LOG_WARN;
static int g_stderr = 1;
static char g_ring[PD_LOG_RING_SIZE][PD_LOG_LINE_MAX];
static size_t g_ring_n; /* total lines ever logged */

static const char *const level_names[PD_LOG_LEVEL_COUNT] = {"error", "warn", "info", "debug"};

void pd_log_set_level(enum pd_log_level level)
{
    pthread_mutex_lock(&g_lock);
    g_level = level;
    pthread_mutex_unlock(&g_lock);
}

enum pd_log_level pd_log_get_level(void)
{
    pthread_mutex_lock(&g_lock);
    enum pd_log_level l = g_level;
    pthread_mutex_unlock(&g_lock);
    return l;
}

void pd_log_set_stderr(int on)
{
    pthread_mutex_lock(&g_lock);
    g_stderr = on;
    pthread_mutex_unlock(&g_lock);
}

void pd_log(enum pd_log_level level, const char *fmt, ...)
{
    char line[PD_LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&g_lock);
    if (level <= g_level) {
        snprintf(g_ring[g_ring_n % PD_LOG_RING_SIZE], PD_LOG_LINE_MAX, "%s: %s",
                 level_names[level], line);
        g_ring_n++;
        if (g_stderr) {
            fprintf(stderr, "ponder: %s: %s\n", level_names[level], line);
        }
    }
    pthread_mutex_unlock(&g_lock);
}

int pd_log_ring_get(size_t i, char *buf, size_t n)
{
    int ok = 0;
    pthread_mutex_lock(&g_lock);
    if (i < g_ring_n && i < PD_LOG_RING_SIZE && n > 0) {
        snprintf(buf, n, "%s", g_ring[(g_ring_n - 1 - i) % PD_LOG_RING_SIZE]);
        ok = 1;
    }
    pthread_mutex_unlock(&g_lock);
    return ok;
}
