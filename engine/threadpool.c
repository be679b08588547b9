/* threadpool.c - a spin-then-sleep thread pool for the CPU backend's parallel loops.
 *
 * DESIGN: a job is published by writing its fields and then bumping the atomic
 * generation counter; workers that are spinning see the new generation at once, workers
 * that went to sleep (after SPIN_MAX idle polls) are woken through the condition variable.
 * Completion is an atomic countdown the caller spins on, falling back to a condition wait.
 * Spinning matters because a decode step runs dozens of short loops back to back and a
 * condition-variable wake costs tens of microseconds on a busy machine. Lost wake-ups are
 * excluded by ordering: a worker registers as a sleeper and re-reads the generation under
 * the mutex; the caller bumps the generation before it reads the sleeper count (all
 * sequentially consistent), so one of them sees the other. */
#include "threadpool.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

/* Idle polls before a thread sleeps (each a pause instruction, roughly 10-50 ns). */
#define SPIN_MAX 20000

/* Grabs are guided: each takes the remaining items divided by GUIDED_DIV times the thread
 * count, so a job starts with long contiguous runs (a thread streams its weights in few
 * pieces: fewer restarts of the prefetchers) and ends with small grabs, so the threads
 * finish together even when the machine slows one of them. No grab is smaller than the
 * job's grain or 1/TAIL_PER_THREAD of a thread's share. Against fixed grabs of 1/8 of a
 * share: 0.55 GB q4_K decode, 2 threads, +1-4% in 5 alternating runs (docs/performance.md). */
#define GUIDED_DIV 2
#define TAIL_PER_THREAD 32

struct pd_pool {
    int n_threads;
    pthread_t *threads;      /* [n_threads - 1] */
    pthread_mutex_t lock;
    pthread_cond_t wake;     /* new job or shutdown, for sleeping workers */
    pthread_cond_t done;     /* the last worker finished, for a sleeping caller */
    atomic_ulong gen;        /* job generation */
    atomic_int pending;      /* workers still running the current job */
    atomic_int sleepers;     /* workers blocked on `wake` */
    atomic_bool quit;
    /* the current job: written before gen is bumped, read after it is seen */
    pd_pool_fn fn;
    void *ctx;
    size_t n;
    size_t min_grab;         /* fewest items per grab (the last grab may be shorter) */
    atomic_size_t next;      /* first item not yet taken */
};

struct worker_arg {
    struct pd_pool *p;
    int index; /* 1..n_threads-1 */
};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Takes chunks of the current job until none is left (every thread, the caller too):
 * a thread that runs slower, or is preempted, simply takes fewer chunks. */
static void run_chunks(struct pd_pool *p)
{
    size_t b = atomic_load(&p->next);
    while (b < p->n) {
        size_t left = p->n - b;
        size_t c = left / (GUIDED_DIV * (size_t)p->n_threads);
        c = c > p->min_grab ? c : p->min_grab;
        c = c < left ? c : left;
        if (atomic_compare_exchange_weak(&p->next, &b, b + c)) {
            p->fn(p->ctx, b, b + c);
            b = atomic_load(&p->next);
        } /* else b now holds the counter's current value */
    }
}

/* Waits until the generation differs from seen (or quit); returns the new generation. */
static unsigned long wait_job(struct pd_pool *p, unsigned long seen)
{
    for (int spins = 0; spins < SPIN_MAX; spins++) {
        unsigned long g = atomic_load(&p->gen);
        if (g != seen || atomic_load(&p->quit)) {
            return g;
        }
        cpu_relax();
    }
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add(&p->sleepers, 1);
    unsigned long g;
    while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->quit)) {
        pthread_cond_wait(&p->wake, &p->lock);
    }
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->lock);
    return g;
}

static void *worker_main(void *arg)
{
    struct worker_arg wa = *(struct worker_arg *)arg;
    free(arg);
    struct pd_pool *p = wa.p;
    unsigned long seen = 0;
    for (;;) {
        seen = wait_job(p, seen);
        if (atomic_load(&p->quit)) {
            break;
        }
        run_chunks(p);
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

int pd_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

enum pd_status pd_pool_open(int n_threads, struct pd_pool **out, struct pd_err *err)
{
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024) {
        return pd_err_set(err, PD_EINVAL, "threads: %d out of range [1, 1024]", n_threads);
    }
    struct pd_pool *p = calloc(1, sizeof *p);
    if (!p) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (thread pool)");
    }
    p->n_threads = 1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->quit, false);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            pd_pool_close(&p);
            return pd_err_set(err, PD_ENOMEM, "out of memory (thread pool)");
        }
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (!wa) {
            break;
        }
        wa->p = p;
        wa->index = i;
        if (pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
            free(wa);
            break;
        }
        p->n_threads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (p->n_threads != n_threads) {
        pd_pool_close(&p);
        return pd_err_set(err, PD_ENOMEM, "could not start %d threads", n_threads);
    }
    *out = p;
    return PD_OK;
}

void pd_pool_close(struct pd_pool **pp)
{
    if (!pp || !*pp) {
        return;
    }
    struct pd_pool *p = *pp;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->quit, true);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_threads - 1; i++) {
        pthread_join(p->threads[i], NULL);
    }
    free(p->threads);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
    *pp = NULL;
}

int pd_pool_threads(const struct pd_pool *p)
{
    return p->n_threads;
}

void pd_pool_run(struct pd_pool *p, size_t n, size_t grain, pd_pool_fn fn, void *ctx)
{
    if (n == 0) {
        return;
    }
    if (grain < 1) {
        grain = 1;
    }
    size_t max_chunks = (n + grain - 1) / grain;
    int n_chunks = p->n_threads;
    if ((size_t)n_chunks > max_chunks) {
        n_chunks = (int)max_chunks;
    }
    if (n_chunks <= 1) {
        fn(ctx, 0, n);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    size_t tail = (n + (size_t)n_chunks * TAIL_PER_THREAD - 1) /
                  ((size_t)n_chunks * TAIL_PER_THREAD);
    p->min_grab = tail > grain ? tail : grain;
    atomic_store(&p->next, 0);
    atomic_store(&p->pending, p->n_threads - 1);
    atomic_fetch_add(&p->gen, 1); /* publishes the job fields */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
    run_chunks(p);
    for (int spins = 0; spins < SPIN_MAX && atomic_load(&p->pending) > 0; spins++) {
        cpu_relax();
    }
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->lock);
        while (atomic_load(&p->pending) > 0) {
            pthread_cond_wait(&p->done, &p->lock);
        }
        pthread_mutex_unlock(&p->lock);
    }
}
