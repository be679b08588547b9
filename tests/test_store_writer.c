/* test_store_writer.c - store/store_writer: streaming saves in small transactions, the
 * producer never blocking on SQLite, sticky errors, and crash safety: a child process
 * streams tokens and is killed with SIGKILL mid-stream; the database must open clean and
 * hold tokens 0..k contiguously, k at least what the child reported committed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "store_replay.h"
#include "store_writer.h"

struct fx {
    char dir[64];
    char path[128];
    struct pd_store *st;
    int64_t sid;
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/pd_writer_XXXXXX");
    if (!mkdtemp(f->dir)) {
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/w.db", f->dir);
    struct pd_err err;
    if (pd_store_open(f->path, NULL, &f->st, &err) != PD_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    struct pd_message m = {PD_STORE_MSG_USER, "stream me"};
    struct pd_session_new sn = {.messages = &m, .n_messages = 1, .source = "live"};
    if (pd_store_session_create(f->st, &sn, &f->sid, &err) != PD_OK) {
        return -1;
    }
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    pd_store_close(&f->st);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot remove %s\n", f->dir);
    }
    free(f);
    return 0;
}

static void fill_token(struct pd_token_rec *t, int64_t pos, char *buf, uint8_t *attn)
{
    memset(t, 0, sizeof *t);
    t->pos = pos;
    t->id = (int32_t)(pos % 50000);
    t->role = PD_ROLE_THINK;
    t->logprob = -(float)(pos % 13) / 7.0f;
    t->entropy = (float)(pos % 5);
    t->n_top = 5;
    for (int k = 0; k < 5; k++) {
        t->top[k].id = k;
        t->top[k].logprob = -(float)k;
    }
    snprintf(buf, 32, " tok%lld", (long long)pos);
    t->text = buf;
    t->text_len = strlen(buf);
    if (attn) {
        memset(attn, 0, 4 + 4 * 4 * 8);
        attn[0] = 1;
        attn[1] = 4;
        attn[2] = 4;
        t->attn = attn;
        t->attn_len = 4 + 4 * 4 * 8;
    }
}

/* Counts the rows and checks they are exactly 0..n-1 with the expected texts. */
static int64_t check_contiguous(struct pd_store *st, int64_t sid)
{
    struct pd_err err;
    struct pd_replay *r;
    assert_int_equal(pd_replay_open(st, sid, &r, &err), PD_OK);
    int64_t n = pd_replay_length(r);
    struct pd_token_rec t[256];
    int64_t pos = 0;
    for (;;) {
        size_t got;
        enum pd_status rc = pd_replay_read(r, t, 256, &got, &err);
        if (rc != PD_OK) {
            fail_msg("%s", err.msg);
        }
        if (got == 0) {
            break;
        }
        for (size_t i = 0; i < got; i++, pos++) {
            char want[32];
            snprintf(want, sizeof want, " tok%lld", (long long)pos);
            assert_int_equal(t[i].pos, pos);
            assert_int_equal(t[i].text_len, strlen(want));
            assert_memory_equal(t[i].text, want, t[i].text_len);
            assert_int_equal(t[i].n_top, 5);
            pd_token_rec_free(&t[i]);
        }
    }
    assert_int_equal(pos, n);
    pd_replay_close(&r);
    return n;
}

struct commit_log {
    int64_t last;
    int calls;
    int64_t max_step; /* most tokens one commit added */
};

static void on_commit(void *ud, int64_t n)
{
    struct commit_log *c = ud;
    assert_true(n > c->last); /* lengths only grow */
    if (n - c->last > c->max_step) {
        c->max_step = n - c->last;
    }
    c->last = n;
    c->calls++;
}

static void test_writer_streams_in_batches(void **state)
{
    struct fx *f = *state;
    struct pd_err err;
    struct commit_log log = {0, 0, 0};
    struct pd_store_writer_params p = pd_store_writer_default_params();
    p.batch_max = 16;
    p.on_commit = on_commit;
    p.ud = &log;
    struct pd_store_writer *w;
    assert_int_equal(pd_store_writer_open(f->st, f->sid, &p, &w, &err), PD_OK);
    assert_int_equal(pd_store_writer_committed(w), 0);
    enum { N = 1000 };
    for (int64_t i = 0; i < N; i++) {
        struct pd_token_rec t;
        char buf[32];
        uint8_t attn[4 + 4 * 4 * 8];
        fill_token(&t, i, buf, (i % 3) ? attn : NULL);
        assert_int_equal(pd_store_writer_push_token(w, &t, &err), PD_OK);
        if (i % 100 == 0) {
            struct pd_kv_event_rec ev = {.at_pos = i, .layer = 0, .slot_pos = i / 2};
            assert_int_equal(pd_store_writer_push_kv(w, &ev, &err), PD_OK);
        }
        if (i % 250 == 249) {
            struct pd_step_rec s = {.index = (int32_t)(i / 250), .pos_begin = i - 249,
                                    .pos_end = i + 1, .kind = PD_STEP_COMPUTE,
                                    .mean_surprisal = 1, .first_surprisal = 2,
                                    .mean_entropy = 3, .attn_received = NAN};
            assert_int_equal(pd_store_writer_push_step(w, &s, &err), PD_OK);
        }
    }
    assert_int_equal(pd_store_writer_flush(w, &err), PD_OK);
    assert_int_equal(pd_store_writer_committed(w), N);
    /* a reader on another connection sees everything while the writer is still open */
    assert_int_equal(check_contiguous(f->st, f->sid), N);
    /* the take variant moves the buffers */
    struct pd_token_rec t;
    char buf[32];
    fill_token(&t, N, buf, NULL);
    t.text = strdup(buf);
    assert_int_equal(pd_store_writer_push_token_take(w, &t, &err), PD_OK);
    assert_null(t.text);
    assert_int_equal(pd_store_writer_close(&w, true, &err), PD_OK);
    assert_null(w);
    assert_true(log.calls >= (N + 1) / 16);
    assert_int_equal(log.last, N + 1);

    struct pd_store_session_info in;
    assert_int_equal(pd_store_session_get(f->st, f->sid, &in, &err), PD_OK);
    assert_int_equal(in.n_tokens, N + 1);
    assert_true(in.finished);
    assert_int_equal(in.n_steps, 4);
    pd_store_session_info_free(&in);
    struct pd_replay *r;
    assert_int_equal(pd_replay_open(f->st, f->sid, &r, &err), PD_OK);
    struct pd_kv_event_rec *kv;
    size_t n;
    assert_int_equal(pd_replay_kv_events(r, 0, N, &kv, &n, &err), PD_OK);
    assert_int_equal(n, 10);
    assert_int_equal(kv[9].slot_pos, 450);
    free(kv);
    pd_replay_close(&r);

    /* a second writer continues where the first stopped */
    assert_int_equal(pd_store_writer_open(f->st, f->sid, NULL, &w, &err), PD_OK);
    assert_int_equal(pd_store_writer_committed(w), N + 1);
    fill_token(&t, N + 1, buf, NULL);
    assert_int_equal(pd_store_writer_push_token(w, &t, &err), PD_OK);
    assert_int_equal(pd_store_writer_close(&w, false, &err), PD_OK);
    assert_int_equal(check_contiguous(f->st, f->sid), N + 2);
    assert_int_equal(pd_store_writer_close(&w, false, &err), PD_OK); /* NULL is fine */
}

static void test_writer_errors_keep_records(void **state)
{
    struct fx *f = *state;
    struct pd_err err;
    struct pd_store_writer *w;
    assert_int_equal(pd_store_writer_open(f->st, 4242, NULL, &w, &err), PD_EINVAL);
    assert_null(w);
    assert_int_equal(pd_store_writer_open(f->st, f->sid, NULL, &w, &err), PD_OK);
    struct pd_token_rec t;
    char buf[32];
    fill_token(&t, 0, buf, NULL);
    assert_int_equal(pd_store_writer_push_token(w, &t, &err), PD_OK);
    fill_token(&t, 5, buf, NULL); /* a gap: the writer refuses it */
    assert_int_equal(pd_store_writer_push_token(w, &t, &err), PD_OK);
    assert_int_equal(pd_store_writer_flush(w, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "expected 1"));
    pd_err_clear(&err);
    assert_int_equal(pd_store_writer_status(w, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "expected 1"));
    /* later pushes are kept in memory, not lost, and counted as unsaved */
    fill_token(&t, 1, buf, NULL);
    assert_int_equal(pd_store_writer_push_token(w, &t, &err), PD_OK);
    struct pd_kv_event_rec ev = {0};
    assert_int_equal(pd_store_writer_push_kv(w, &ev, &err), PD_OK);
    assert_int_equal(pd_store_writer_unsaved(w), 3);
    assert_int_equal(pd_store_writer_close(&w, true, &err), PD_EINVAL);
    /* the batch with the gap was rolled back as a whole */
    struct pd_store_session_info in;
    assert_int_equal(pd_store_session_get(f->st, f->sid, &in, &err), PD_OK);
    assert_false(in.finished);
    assert_true(in.n_tokens == 0 || in.n_tokens == 1);
    pd_store_session_info_free(&in);

    /* a full queue is an error, not a wait */
    struct pd_store_writer_params p = pd_store_writer_default_params();
    p.queue_max = 4;
    p.flush_ms = 10000;
    p.batch_max = 1000;
    assert_int_equal(pd_store_writer_open(f->st, f->sid, &p, &w, &err), PD_OK);
    int64_t start = pd_store_writer_committed(w);
    int n_ok = 0;
    enum pd_status last = PD_OK;
    for (int i = 0; i < 6; i++) {
        fill_token(&t, start + i, buf, NULL);
        last = pd_store_writer_push_token(w, &t, &err);
        n_ok += last == PD_OK;
    }
    assert_int_equal(last, PD_ENOMEM);
    assert_non_null(strstr(err.msg, "queued"));
    assert_true(n_ok >= 4);
    assert_int_equal(pd_store_writer_close(&w, false, &err), PD_OK);
}

/* A database locked by another process past the busy timeout: the commit fails, the
 * failure is reported at once, the tokens wait in memory; after the lock is gone a retry
 * saves every one of them, contiguous. */
static void test_writer_locked_then_retry(void **state)
{
    struct fx *f = *state;
    struct pd_err err;
    struct pd_store_writer_params p = pd_store_writer_default_params();
    p.busy_ms = 50;
    struct pd_store_writer *w;
    assert_int_equal(pd_store_writer_open(f->st, f->sid, &p, &w, &err), PD_OK);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    for (int64_t i = 0; i < 100; i++) {
        struct pd_token_rec t;
        char buf[32];
        fill_token(&t, i, buf, NULL);
        assert_int_equal(pd_store_writer_push_token(w, &t, &err), PD_OK);
    }
    pd_err_clear(&err);
    assert_int_not_equal(pd_store_writer_flush(w, &err), PD_OK);
    assert_non_null(strstr(err.msg, "locked"));
    assert_int_not_equal(pd_store_writer_status(w, NULL), PD_OK);
    assert_int_equal(pd_store_writer_unsaved(w), 100);
    assert_int_equal(pd_store_writer_committed(w), 0);
    /* more tokens while it is failed: kept too */
    for (int64_t i = 100; i < 120; i++) {
        struct pd_token_rec t;
        char buf[32];
        fill_token(&t, i, buf, NULL);
        assert_int_equal(pd_store_writer_push_token(w, &t, &err), PD_OK);
    }
    assert_int_equal(pd_store_writer_unsaved(w), 120);
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    pd_store_writer_retry(w);
    assert_int_equal(pd_store_writer_flush(w, &err), PD_OK);
    assert_int_equal(pd_store_writer_unsaved(w), 0);
    assert_int_equal(pd_store_writer_committed(w), 120);
    assert_int_equal(pd_store_writer_close(&w, true, &err), PD_OK);
    assert_int_equal(check_contiguous(f->st, f->sid), 120);
}

/* A transaction holds at most batch_max records: 300 tokens pushed at once (nothing
 * else queued) commit in steps of exactly batch_max, the last one excepted. */
static void test_writer_batch_bound(void **state)
{
    struct fx *f = *state;
    struct pd_err err;
    struct commit_log log = {0, 0, 0};
    struct pd_store_writer_params p = pd_store_writer_default_params();
    p.batch_max = 16;
    p.flush_ms = 10000; /* commits come from full batches and the final flush only */
    p.on_commit = on_commit;
    p.ud = &log;
    struct pd_store_writer *w;
    assert_int_equal(pd_store_writer_open(f->st, f->sid, &p, &w, &err), PD_OK);
    for (int64_t i = 0; i < 300; i++) {
        struct pd_token_rec t;
        char buf[32];
        fill_token(&t, i, buf, NULL);
        assert_int_equal(pd_store_writer_push_token(w, &t, &err), PD_OK);
    }
    assert_int_equal(pd_store_writer_close(&w, true, &err), PD_OK);
    assert_int_equal(log.last, 300);
    assert_int_equal(log.max_step, 16);
    assert_true(log.calls >= 300 / 16);
}

/* Pushes never wait on SQLite: all 2000 return while another connection holds the write
 * lock and the writer thread has committed nothing (if a push waited for the writer, the
 * loop could not finish before the lock is released). The time is printed for the
 * record, not asserted (machines are noisy). */
static void test_writer_producer_never_waits_on_sqlite(void **state)
{
    struct fx *f = *state;
    struct pd_err err;
    struct pd_store_writer *w;
    assert_int_equal(pd_store_writer_open(f->st, f->sid, NULL, &w, &err), PD_OK);
    /* hold the write lock from another connection */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int64_t i = 0; i < 2000; i++) {
        struct pd_token_rec t;
        char buf[32];
        fill_token(&t, i, buf, NULL);
        assert_int_equal(pd_store_writer_push_token(w, &t, &err), PD_OK);
        if (i == 100) {
            usleep(100000); /* let the writer thread block on the lock */
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6 - 100.0;
    fprintf(stderr, "2000 pushes with the database locked: %.1f ms\n", ms);
    assert_true(pd_store_writer_committed(w) == 0); /* still stuck behind the lock */
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(pd_store_writer_close(&w, true, &err), PD_OK);
    assert_int_equal(check_contiguous(f->st, f->sid), 2000);
}

/* ---- kill -9 ---------------------------------------------------------------------- */

static int report_fd = -1;

static void child_on_commit(void *ud, int64_t n)
{
    (void)ud;
    /* written after the commit returned: the database holds at least n tokens */
    if (write(report_fd, &n, sizeof n) != (ssize_t)sizeof n) {
        _exit(3);
    }
}

static void child_stream(const char *path, int64_t sid)
{
    struct pd_err err;
    struct pd_store *st;
    if (pd_store_open(path, NULL, &st, &err) != PD_OK) {
        _exit(4);
    }
    struct pd_store_writer_params p = pd_store_writer_default_params();
    p.batch_max = 8;
    p.flush_ms = 5;
    p.on_commit = child_on_commit;
    struct pd_store_writer *w;
    if (pd_store_writer_open(st, sid, &p, &w, &err) != PD_OK) {
        _exit(5);
    }
    pd_store_close(&st);
    for (int64_t i = 0;; i++) {
        struct pd_token_rec t;
        char buf[32];
        uint8_t attn[4 + 4 * 4 * 8];
        fill_token(&t, i, buf, attn);
        if (pd_store_writer_push_token(w, &t, &err) != PD_OK) {
            _exit(6);
        }
        if (i % 4 == 0) {
            usleep(200); /* a fast generation: ~10-20k tokens/s */
        }
    }
}

static void test_kill9_mid_stream(void **state)
{
    struct fx *f = *state;
    struct pd_err err;
    pd_store_close(&f->st); /* no SQLite connection crosses the fork */
    for (int round = 0; round < 3; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            report_fd = fds[1];
            child_stream(f->path, f->sid);
            _exit(0);
        }
        close(fds[1]);
        /* wait until the child reported some commits, at a round-dependent point */
        int64_t reported = 0, want = 300 + round * 700;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (reported < want) {
            struct pollfd pfd = {fds[0], POLLIN, 0};
            int pr = poll(&pfd, 1, 1000);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if (t1.tv_sec - t0.tv_sec > 30) {
                break;
            }
            if (pr <= 0) {
                continue;
            }
            int64_t n;
            ssize_t got = read(fds[0], &n, sizeof n);
            if (got != (ssize_t)sizeof n) {
                break;
            }
            reported = n;
        }
        assert_true(reported >= want);
        usleep((useconds_t)(round * 1300)); /* land the kill at different points */
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        /* drain reports that raced with the kill */
        int64_t n;
        while (read(fds[0], &n, sizeof n) == (ssize_t)sizeof n) {
            reported = n;
        }
        close(fds[0]);

        struct pd_store *st;
        assert_int_equal(pd_store_open(f->path, NULL, &st, &err), PD_OK);
        assert_int_equal(pd_store_check(st, &err), PD_OK);
        int64_t have = check_contiguous(st, f->sid);
        struct pd_store_session_info in;
        assert_int_equal(pd_store_session_get(st, f->sid, &in, &err), PD_OK);
        assert_int_equal(in.n_tokens, have); /* committed with the rows */
        assert_false(in.finished);
        pd_store_session_info_free(&in);
        fprintf(stderr, "kill -9 round %d: child reported %lld committed, database has %lld\n",
                round, (long long)reported, (long long)have);
        assert_true(have >= reported);
        /* start the next round on a fresh session */
        struct pd_session_new sn = {.source = "live"};
        assert_int_equal(pd_store_session_create(st, &sn, &f->sid, &err), PD_OK);
        pd_store_close(&st);
    }
    assert_int_equal(pd_store_open(f->path, NULL, &f->st, &err), PD_OK);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_writer_streams_in_batches, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_writer_errors_keep_records, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_writer_locked_then_retry, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_writer_batch_bound, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_writer_producer_never_waits_on_sqlite, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_kill9_mid_stream, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
