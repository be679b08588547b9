/* threadpool.h - a fixed pool of worker threads for data-parallel loops.
 *
 * DESIGN: the threads, the caller's included, take contiguous runs of [0, n) in turn
 * from an atomic counter, long runs first and short ones at the end (guided), and
 * pd_pool_run returns when all are done: a thread slowed by other work on the machine
 * takes fewer. Which thread runs an item is not fixed, so items must not depend on
 * it. Workers sleep on a condition variable between runs; a generation counter tells them
 * a new job is posted. One caller
 * at a time (the engine worker owns the pool). Workers block all signals.
 *
 * Ownership: the pool owns its threads; pd_pool_close joins them. */
#ifndef PD_THREADPOOL_H
#define PD_THREADPOOL_H

#include <stddef.h>

#include "status.h"

struct pd_pool;

/* fn processes items [begin, end) of the job; ctx is the caller's. */
typedef void (*pd_pool_fn)(void *ctx, size_t begin, size_t end);

/* n_threads >= 1 (1 = run on the caller only). */
enum pd_status pd_pool_open(int n_threads, struct pd_pool **out, struct pd_err *err);
void pd_pool_close(struct pd_pool **p);
int pd_pool_threads(const struct pd_pool *p);

/* Runs fn over [0, n) in parallel; blocks until done. No run is shorter than `grain`
 * items but the job's last (so tiny jobs stay on one thread). */
void pd_pool_run(struct pd_pool *p, size_t n, size_t grain, pd_pool_fn fn, void *ctx);

/* Number of online CPUs (at least 1). */
int pd_cpu_count(void);

#endif
