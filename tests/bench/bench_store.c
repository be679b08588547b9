/* bench_store.c - `bench-store`: the store's throughput figures.
 *
 *   bench-store [--dir D] [--tokens N] [--traces N]
 *
 * Prints: the token rate the streaming writer sustains (producer pushes as fast as it
 * can; time until everything is committed), with and without an attention summary per
 * token, and the producer's cost per push; JSONL import and export rates over generated
 * traces; the time to open a 100k-token session and read its first 2000 tokens. Works in
 * a fresh temporary folder (removed at the end) unless --dir is given. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "store_jsonl.h"
#include "store_replay.h"
#include "store_writer.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int die(const struct pd_err *err)
{
    fprintf(stderr, "bench-store: %s\n", err->msg);
    return 1;
}

/* A 28-layer x 8-entry attention summary, the size a 1.5B model's capture produces. */
enum { ATTN_LAYERS = 28, ATTN_TOP = 8, ATTN_LEN = 4 + ATTN_LAYERS * ATTN_TOP * 8 };

static void fill(struct pd_token_rec *t, int64_t pos, char *text, uint8_t *attn)
{
    memset(t, 0, sizeof *t);
    t->pos = pos;
    t->id = (int32_t)(pos * 31 % 151000);
    t->role = PD_ROLE_THINK;
    t->logprob = -0.3f;
    t->entropy = 1.7f;
    t->n_top = 5;
    for (int k = 0; k < 5; k++) {
        t->top[k].id = t->id + k;
        t->top[k].logprob = -0.3f - (float)k;
    }
    snprintf(text, 16, " w%lld", (long long)(pos % 1000));
    t->text = text;
    t->text_len = strlen(text);
    if (attn) {
        t->attn = attn;
        t->attn_len = ATTN_LEN;
    }
}

/* Producer at a fixed rate (rate tokens/s, like a fast generation): its worst push. */
static int bench_writer_paced(const char *dir, int64_t n, double rate)
{
    char path[512];
    snprintf(path, sizeof path, "%s/writer-paced.db", dir);
    unlink(path);
    struct pd_err err;
    struct pd_store *st;
    if (pd_store_open(path, NULL, &st, &err) != PD_OK) {
        return die(&err);
    }
    struct pd_session_new sn = {.source = "bench"};
    int64_t sid;
    struct pd_store_writer *w;
    if (pd_store_session_create(st, &sn, &sid, &err) != PD_OK ||
        pd_store_writer_open(st, sid, NULL, &w, &err) != PD_OK) {
        return die(&err);
    }
    static uint8_t attn[ATTN_LEN];
    attn[0] = 1;
    attn[1] = ATTN_LAYERS;
    attn[2] = ATTN_TOP;
    double worst = 0, sum = 0;
    double t0 = now_s();
    for (int64_t i = 0; i < n; i++) {
        while (now_s() - t0 < (double)i / rate) {
            usleep(50);
        }
        struct pd_token_rec t;
        char text[16];
        fill(&t, i, text, attn);
        double a = now_s();
        if (pd_store_writer_push_token(w, &t, &err) != PD_OK) {
            return die(&err);
        }
        double d = now_s() - a;
        sum += d;
        worst = d > worst ? d : worst;
    }
    if (pd_store_writer_close(&w, true, &err) != PD_OK) {
        return die(&err);
    }
    printf("writer paced at %.0f tokens/s (28x8 attention): %lld tokens, producer %.2f us/push, "
           "worst %.0f us\n",
           rate, (long long)n, sum / (double)n * 1e6, worst * 1e6);
    pd_store_close(&st);
    return 0;
}

static int bench_writer(const char *dir, int64_t n, bool with_attn)
{
    char path[512];
    snprintf(path, sizeof path, "%s/writer-%d.db", dir, with_attn);
    unlink(path);
    struct pd_err err;
    struct pd_store *st;
    if (pd_store_open(path, NULL, &st, &err) != PD_OK) {
        return die(&err);
    }
    struct pd_session_new sn = {.source = "bench"};
    int64_t sid;
    struct pd_store_writer *w;
    if (pd_store_session_create(st, &sn, &sid, &err) != PD_OK ||
        pd_store_writer_open(st, sid, NULL, &w, &err) != PD_OK) {
        return die(&err);
    }
    uint8_t attn[ATTN_LEN];
    memset(attn, 0, sizeof attn);
    attn[0] = 1;
    attn[1] = ATTN_LAYERS;
    attn[2] = ATTN_TOP;
    double push_max = 0;
    double t0 = now_s();
    for (int64_t i = 0; i < n; i++) {
        struct pd_token_rec t;
        char text[16];
        fill(&t, i, text, with_attn ? attn : NULL);
        double a = now_s();
        if (pd_store_writer_push_token(w, &t, &err) != PD_OK) {
            return die(&err);
        }
        double d = now_s() - a;
        push_max = d > push_max ? d : push_max;
    }
    double t_push = now_s() - t0;
    if (pd_store_writer_close(&w, true, &err) != PD_OK) {
        return die(&err);
    }
    double t_all = now_s() - t0;
    printf("writer%s: %lld tokens committed in %.2f s = %.0f tokens/s sustained; "
           "producer %.2f us/push (max %.0f us)\n",
           with_attn ? " (28x8 attention blob)" : " (no attention)    ", (long long)n, t_all,
           (double)n / t_all, t_push / (double)n * 1e6, push_max * 1e6);
    pd_store_close(&st);
    return 0;
}

static int bench_jsonl(const char *dir, int n)
{
    char in[512], out[512], db[512];
    snprintf(in, sizeof in, "%s/traces.jsonl", dir);
    snprintf(out, sizeof out, "%s/traces.out.jsonl", dir);
    snprintf(db, sizeof db, "%s/jsonl.db", dir);
    unlink(db);
    FILE *f = fopen(in, "wb");
    if (!f) {
        perror(in);
        return 1;
    }
    /* ~1.5 KB traces: a question, six reasoning paragraphs, an answer */
    for (int i = 0; i < n; i++) {
        char think[2048];
        size_t o = 0;
        for (int k = 0; k < 6; k++) {
            o += (size_t)snprintf(think + o, sizeof think - o,
                                  "%sStep %d: consider the case %d and check it against the "
                                  "constraint, then carry the partial result forward.",
                                  k ? "\n\n" : "", k, i * 7 + k);
        }
        char content[2300];
        snprintf(content, sizeof content, "<think>\n%s\n</think>\n\nThe answer is %d.", think,
                 i % 1000);
        char q[128];
        snprintf(q, sizeof q, "Problem %d: find the value satisfying the constraints.", i);
        json_t *rec = json_pack("{s:[{s:s,s:s},{s:s,s:s}]}", "messages", "role", "user",
                                "content", q, "role", "assistant", "content", content);
        json_dumpf(rec, f, JSON_COMPACT);
        fputc('\n', f);
        json_decref(rec);
    }
    fclose(f);
    struct pd_err err;
    struct pd_store *st;
    if (pd_store_open(db, NULL, &st, &err) != PD_OK) {
        return die(&err);
    }
    double t0 = now_s();
    struct pd_import_result ir;
    if (pd_jsonl_import_file(st, in, NULL, &ir, &err) != PD_OK) {
        return die(&err);
    }
    double t1 = now_s();
    struct pd_export_params p = {.format = PD_JSONL_MESSAGES};
    struct pd_export_result er;
    if (pd_jsonl_export_file(st, out, &p, &er, &err) != PD_OK) {
        return die(&err);
    }
    double t2 = now_s();
    p.format = PD_JSONL_PONDER;
    if (pd_jsonl_export_file(st, out, &p, &er, &err) != PD_OK) {
        return die(&err);
    }
    double t3 = now_s();
    printf("import: %llu traces in %.2f s = %.0f traces/s\n", (unsigned long long)ir.n_imported,
           t1 - t0, (double)ir.n_imported / (t1 - t0));
    printf("export messages: %d traces in %.2f s = %.0f traces/s; ponder records: %.0f "
           "traces/s\n",
           n, t2 - t1, n / (t2 - t1), n / (t3 - t2));
    pd_store_close(&st);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int bench_replay(const char *dir)
{
    char db[512];
    snprintf(db, sizeof db, "%s/replay.db", dir);
    unlink(db);
    struct pd_err err;
    struct pd_store *st;
    if (pd_store_open(db, NULL, &st, &err) != PD_OK) {
        return die(&err);
    }
    struct pd_session_new sn = {.source = "bench"};
    int64_t sid = 0;
    enum { N = 100000, B = 10000 };
    static uint8_t attn[ATTN_LEN];
    attn[0] = 1;
    attn[1] = ATTN_LAYERS;
    attn[2] = ATTN_TOP;
    struct pd_token_rec *t = calloc(B, sizeof *t);
    char(*text)[16] = calloc(B, 16);
    for (int s = 0; s < 3; s++) { /* the session of interest sits between two others */
        int64_t id;
        if (pd_store_session_create(st, &sn, &id, &err) != PD_OK) {
            return die(&err);
        }
        sid = s == 1 ? id : sid;
        for (int64_t i = 0; i < N; i += B) {
            for (int64_t k = 0; k < B; k++) {
                fill(&t[k], i + k, text[k], attn);
            }
            if (pd_store_tokens_append(st, id, t, B, &err) != PD_OK) {
                return die(&err);
            }
        }
    }
    pd_store_close(&st);
    double times[9];
    for (int r = 0; r < 9; r++) {
        double t0 = now_s();
        struct pd_replay *rp;
        size_t got;
        if (pd_store_open(db, NULL, &st, &err) != PD_OK ||
            pd_replay_open(st, sid, &rp, &err) != PD_OK ||
            pd_replay_read(rp, t, 2000, &got, &err) != PD_OK) {
            return die(&err);
        }
        times[r] = now_s() - t0;
        for (size_t i = 0; i < got; i++) {
            pd_token_rec_free(&t[i]);
        }
        pd_replay_close(&rp);
        pd_store_close(&st);
    }
    qsort(times, 9, sizeof times[0], cmp_double);
    printf("replay: open database + session of %d tokens + read first 2000: median %.2f ms "
           "(min %.2f, max %.2f)\n",
           N, times[4] * 1e3, times[0] * 1e3, times[8] * 1e3);
    free(t);
    free(text);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    long long n_tokens = 200000, n_traces = 10000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) {
            n_tokens = atoll(argv[++i]);
        } else if (strcmp(argv[i], "--traces") == 0 && i + 1 < argc) {
            n_traces = atoll(argv[++i]);
        } else {
            fprintf(stderr, "usage: bench-store [--dir D] [--tokens N] [--traces N]\n");
            return 2;
        }
    }
    if (n_tokens < 1 || n_traces < 1 || n_traces > 10000000) {
        fprintf(stderr, "bench-store: --tokens and --traces must be positive\n");
        return 2;
    }
    char tmp[64] = "";
    if (!dir) {
        snprintf(tmp, sizeof tmp, "/tmp/pd_bench_store_XXXXXX");
        if (!mkdtemp(tmp)) {
            perror("mkdtemp");
            return 1;
        }
        dir = tmp;
    }
    int rc = bench_writer(dir, n_tokens, false);
    rc = rc ? rc : bench_writer(dir, n_tokens, true);
    rc = rc ? rc : bench_writer_paced(dir, 5000, 2000.0);
    rc = rc ? rc : bench_jsonl(dir, (int)n_traces);
    rc = rc ? rc : bench_replay(dir);
    if (*tmp) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0) {
            fprintf(stderr, "bench-store: cannot remove %s\n", tmp);
        }
    }
    return rc;
}
