/* train_main.c - reasoner-train: trains the reasoner and scores token sequences with it.
 *
 *   reasoner-train train --vocab V.gguf --out M.gguf [options]      (docs/reasoner.md)
 *       Each step draws samples from the generator (seed, step) until the step holds at
 *       least --batch-tokens tokens, runs forward and backward over them and takes one
 *       AdamW step. Problems of the held-out set (--exclude-seed, --exclude-count) are never
 *       trained on. Every --log-every steps a line "step S/N loss L lr R gnorm G tok/s T"
 *       goes to stdout (and --log FILE); every --eval-every steps the loss on the held-out
 *       set. --checkpoint FILE is written every --checkpoint-every steps and at the end;
 *       --resume continues from it with the same arguments and gives the same curve as an
 *       uninterrupted run; --until STEP stops (checkpointed) at that step. At the end
 *       the model is written as f32 GGUF (--out) and, with --out-q8, as q8_0.
 *   reasoner-train export --checkpoint F --vocab V.gguf --out M.gguf [--out-q8 F.gguf]
 *       writes a checkpoint's weights as GGUF (to look at a run before it ends).
 *   reasoner-train score --model M.gguf (--ids 1,2,3 | --vocab V.gguf --seed S --count N)
 *       ln p of every token given the ones before it, one line per token, then the mean
 *       loss; --json for machine output. With --seed the sequences are the long-style
 *       samples of the first N problems of seed S (the held-out traces).
 * Exit status: 0 ok, 1 failure, 2 usage. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mem.h"
#include "bpe.h"
#include "data.h"
#include "gemm.h"
#include "gguf.h"
#include "gguf_writer.h"
#include "problems.h"
#include "tokenizer.h"
#include "train.h"

struct opts {
    const char *vocab, *out, *out_q8, *checkpoint, *log, *model, *ids;
    uint64_t seed, eval_seed, exclude_seed;
    long long steps, batch_tokens, warmup, log_every, eval_every, eval_count, ckpt_every;
    long long exclude_count, count, threads, until;
    double lr, min_lr, wd, clip, beta1, beta2;
    struct tr_config cfg;
    bool resume, json;
};

static void opts_default(struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->eval_seed = 2;
    o->exclude_seed = 2;
    o->exclude_count = 2000;
    o->steps = 3600;
    o->batch_tokens = 4096;
    o->warmup = 200;
    o->log_every = 10;
    o->eval_every = 200;
    o->eval_count = 200;
    o->ckpt_every = 200;
    o->threads = 2;
    o->lr = 2e-3;
    o->min_lr = 2e-4;
    o->wd = 0.1;
    o->clip = 1.0;
    o->beta1 = 0.9;
    o->beta2 = 0.99;
    o->cfg = (struct tr_config){0, 192, 6, 6, 6, 576, 640, 1e-5f, 10000.0f};
}

static int usage(void)
{
    fputs("usage: reasoner-train train --vocab V.gguf --out M.gguf [--out-q8 F.gguf]\n"
          "         [--seed S] [--steps N] [--batch-tokens T] [--lr X] [--min-lr X]\n"
          "         [--warmup N] [--wd X] [--clip X] [--beta1 X] [--beta2 X]\n"
          "         [--embd E] [--layers L] [--heads H] [--kv-heads K] [--ff F] [--ctx C]\n"
          "         [--threads N] [--checkpoint F] [--checkpoint-every N] [--resume]\n"
          "         [--until STEP]\n"
          "         [--log F] [--log-every N] [--eval-every N] [--eval-seed S]\n"
          "         [--eval-count N] [--exclude-seed S] [--exclude-count N]\n"
          "       reasoner-train export --checkpoint F --vocab V.gguf --out M.gguf\n"
          "         [--out-q8 F.gguf]\n"
          "       reasoner-train score --model M.gguf (--ids 1,2,3 | --vocab V.gguf --seed S\n"
          "         --count N) [--threads N] [--json]\n",
          stderr);
    return 2;
}

static bool num(const char *name, const char *v, double lo, double hi, double *out)
{
    char *end;
    double x = v ? strtod(v, &end) : 0;
    if (!v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "reasoner-train: %s: expected a number in [%g, %g]\n", name, lo, hi);
        return false;
    }
    *out = x;
    return true;
}

static bool parse(int argc, char **argv, struct opts *o)
{
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--resume") == 0) {
            o->resume = true;
            continue;
        }
        if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        }
        const char *v = i + 1 < argc ? argv[++i] : NULL;
        if (!v) {
            fprintf(stderr, "reasoner-train: %s needs a value\n", a);
            return false;
        }
        double x = 0;
        const struct {
            const char *name;
            const char **s;
        } strs[] = {{"--vocab", &o->vocab}, {"--out", &o->out}, {"--out-q8", &o->out_q8},
                    {"--checkpoint", &o->checkpoint}, {"--log", &o->log},
                    {"--model", &o->model}, {"--ids", &o->ids}};
        bool done = false;
        for (size_t k = 0; k < sizeof strs / sizeof strs[0]; k++) {
            if (strcmp(a, strs[k].name) == 0) {
                *strs[k].s = v;
                done = true;
            }
        }
        if (done) {
            continue;
        }
        const struct {
            const char *name;
            double lo, hi;
            long long *ll;
            double *d;
            uint32_t *u;
            uint64_t *u64;
        } nums[] = {
            {"--seed", 0, 9e15, NULL, NULL, NULL, &o->seed},
            {"--eval-seed", 0, 9e15, NULL, NULL, NULL, &o->eval_seed},
            {"--exclude-seed", 0, 9e15, NULL, NULL, NULL, &o->exclude_seed},
            {"--steps", 1, 1e8, &o->steps, NULL, NULL, NULL},
            {"--batch-tokens", 16, 1 << 20, &o->batch_tokens, NULL, NULL, NULL},
            {"--warmup", 0, 1e8, &o->warmup, NULL, NULL, NULL},
            {"--log-every", 1, 1e8, &o->log_every, NULL, NULL, NULL},
            {"--eval-every", 0, 1e8, &o->eval_every, NULL, NULL, NULL},
            {"--eval-count", 1, 1e6, &o->eval_count, NULL, NULL, NULL},
            {"--checkpoint-every", 0, 1e8, &o->ckpt_every, NULL, NULL, NULL},
            {"--exclude-count", 0, 1e7, &o->exclude_count, NULL, NULL, NULL},
            {"--count", 1, 1e7, &o->count, NULL, NULL, NULL},
            {"--threads", 1, 256, &o->threads, NULL, NULL, NULL},
            {"--until", 1, 1e8, &o->until, NULL, NULL, NULL},
            {"--lr", 0, 10, NULL, &o->lr, NULL, NULL},
            {"--min-lr", 0, 10, NULL, &o->min_lr, NULL, NULL},
            {"--wd", 0, 10, NULL, &o->wd, NULL, NULL},
            {"--clip", 0, 1e6, NULL, &o->clip, NULL, NULL},
            {"--beta1", 0, 0.9999, NULL, &o->beta1, NULL, NULL},
            {"--beta2", 0, 0.99999, NULL, &o->beta2, NULL, NULL},
            {"--embd", 2, 8192, NULL, NULL, &o->cfg.n_embd, NULL},
            {"--layers", 1, 64, NULL, NULL, &o->cfg.n_layer, NULL},
            {"--heads", 1, 256, NULL, NULL, &o->cfg.n_head, NULL},
            {"--kv-heads", 1, 256, NULL, NULL, &o->cfg.n_head_kv, NULL},
            {"--ff", 1, 32768, NULL, NULL, &o->cfg.n_ff, NULL},
            {"--ctx", 2, 8192, NULL, NULL, &o->cfg.n_ctx, NULL},
        };
        for (size_t k = 0; !done && k < sizeof nums / sizeof nums[0]; k++) {
            if (strcmp(a, nums[k].name) != 0) {
                continue;
            }
            if (!num(a, v, nums[k].lo, nums[k].hi, &x)) {
                return false;
            }
            bool integral = !nums[k].d;
            if (integral && x != floor(x)) {
                fprintf(stderr, "reasoner-train: %s: expected an integer\n", a);
                return false;
            }
            if (nums[k].ll) {
                *nums[k].ll = (long long)x;
            } else if (nums[k].d) {
                *nums[k].d = x;
            } else if (nums[k].u) {
                *nums[k].u = (uint32_t)x;
            } else {
                *nums[k].u64 = (uint64_t)x;
            }
            done = true;
        }
        if (!done) {
            fprintf(stderr, "reasoner-train: unknown option '%s'\n", a);
            return false;
        }
    }
    return true;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int fail(const struct pd_err *e)
{
    fprintf(stderr, "reasoner-train: %s\n", e->msg);
    return 1;
}

/* ---- held-out questions ---------------------------------------------------------------- */

struct qset {
    uint64_t *h;   /* open addressing; 0 = empty */
    size_t n_slot;
};

static uint64_t qhash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    }
    return h ? h : 1;
}

static bool qset_has(const struct qset *q, uint64_t h)
{
    if (!q->n_slot) {
        return false;
    }
    for (size_t i = h & (q->n_slot - 1); q->h[i]; i = (i + 1) & (q->n_slot - 1)) {
        if (q->h[i] == h) {
            return true;
        }
    }
    return false;
}

/* The questions of the first n problems of seed. */
static bool qset_build(struct qset *q, uint64_t seed, size_t n)
{
    q->n_slot = 16;
    while (q->n_slot < n * 2) {
        q->n_slot *= 2;
    }
    q->h = pd_calloc(q->n_slot, sizeof *q->h);
    struct rz_problem *p = malloc(sizeof *p);
    if (!q->h || !p) {
        free(p);
        return false;
    }
    struct rz_rng r;
    rz_rng_seed(&r, seed);
    struct rz_params pp = rz_default_params();
    for (size_t k = 0; k < n; k++) {
        rz_problem_draw(&r, &pp, p);
        uint64_t h = qhash(p->question);
        size_t i = h & (q->n_slot - 1);
        while (q->h[i] && q->h[i] != h) {
            i = (i + 1) & (q->n_slot - 1);
        }
        q->h[i] = h;
    }
    free(p);
    return true;
}

/* ---- batches ----------------------------------------------------------------------------- */

struct batch_buf {
    int32_t *ids;
    uint8_t *mask;
    size_t *seq_len;
    size_t n_tok, n_seq, cap_tok, cap_seq;
};

static bool batch_push(struct batch_buf *b, const struct rz_sample *s)
{
    if (b->n_tok + s->n > b->cap_tok || b->n_seq + 1 > b->cap_seq) {
        return false;
    }
    memcpy(b->ids + b->n_tok, s->ids, s->n * sizeof *s->ids);
    memcpy(b->mask + b->n_tok, s->mask, s->n);
    b->seq_len[b->n_seq++] = s->n;
    b->n_tok += s->n;
    return true;
}

static uint64_t step_seed(uint64_t seed, uint64_t step)
{
    struct rz_rng r;
    rz_rng_seed(&r, seed ^ (step * 0xD1B54A32D192ED03ull));
    return rz_rng_next(&r);
}

struct data {
    const struct pd_tok *tok;
    const struct qset *exclude;
    uint32_t n_ctx;
    struct rz_problem *p;
    struct rz_pieces x;
    struct rz_sample s;
    uint64_t skipped;
};

/* Fills b with the training samples of step `step` (at least `tokens` tokens). */
static enum pd_status make_batch(struct data *d, uint64_t seed, uint64_t step, size_t tokens,
                                 struct batch_buf *b, struct pd_err *err)
{
    struct rz_rng r;
    rz_rng_seed(&r, step_seed(seed, step));
    struct rz_params pp = rz_default_params();
    struct rz_mix mix = rz_default_mix();
    b->n_tok = b->n_seq = 0;
    while (b->n_tok < tokens) {
        if (!rz_problem_draw(&r, &pp, d->p)) {
            return pd_err_set(err, PD_EINVAL, "problem text too long (a bug)");
        }
        enum rz_style st = rz_mix_draw(&r, &mix);
        enum pd_status rc = rz_render(d->p, st, &r, &d->x, err);
        if (rc || (rc = rz_encode(d->tok, &d->x, &d->s, err))) {
            return rc;
        }
        if (qset_has(d->exclude, qhash(d->p->question)) || d->s.n > d->n_ctx) {
            d->skipped++;
            continue;
        }
        if (!batch_push(b, &d->s)) {
            break; /* full: the step is a little short of `tokens` */
        }
    }
    return PD_OK;
}

/* The held-out set: long-style samples of the first n problems of seed. */
static enum pd_status make_eval(struct data *d, uint64_t seed, size_t n, struct batch_buf *b,
                                struct pd_err *err)
{
    struct rz_rng r;
    rz_rng_seed(&r, seed);
    struct rz_params pp = rz_default_params();
    b->n_tok = b->n_seq = 0;
    for (size_t k = 0; k < n; k++) {
        rz_problem_draw(&r, &pp, d->p);
        enum pd_status rc = rz_render(d->p, RZ_STYLE_LONG, &r, &d->x, err);
        if (rc || (rc = rz_encode(d->tok, &d->x, &d->s, err))) {
            return rc;
        }
        if (d->s.n <= d->n_ctx && !batch_push(b, &d->s)) {
            return pd_err_set(err, PD_EINVAL, "held-out set: more than %zu tokens", b->cap_tok);
        }
    }
    return PD_OK;
}

static bool batch_alloc(struct batch_buf *b, size_t cap_tok)
{
    memset(b, 0, sizeof *b);
    b->ids = pd_malloc_array(cap_tok, sizeof *b->ids);
    b->mask = pd_malloc_array(cap_tok, 1);
    b->seq_len = pd_malloc_array(cap_tok, sizeof *b->seq_len);
    b->cap_tok = b->cap_seq = cap_tok;
    return b->ids && b->mask && b->seq_len;
}

static void batch_free(struct batch_buf *b)
{
    free(b->ids);
    free(b->mask);
    free(b->seq_len);
}

/* Mean loss over a buffer, in chunks of at most run_max tokens (whole sequences). */
static enum pd_status eval_loss(struct tr_run *run, size_t run_max, const struct batch_buf *b,
                                double *mean, double *exact, struct pd_err *err)
{
    double sum = 0;
    size_t n = 0, s0 = 0, t0 = 0, n_exact = 0;
    while (s0 < b->n_seq) {
        size_t s1 = s0, toks = 0;
        while (s1 < b->n_seq && toks + b->seq_len[s1] <= run_max) {
            toks += b->seq_len[s1++];
        }
        struct tr_batch tb = {b->ids + t0, b->mask + t0, toks, b->seq_len + s0, s1 - s0};
        struct tr_loss l;
        enum pd_status st = tr_forward(run, &tb, &l, NULL, err);
        if (st) {
            return st;
        }
        sum += l.sum;
        n += l.n;
        n_exact += l.n_seq_exact;
        t0 += toks;
        s0 = s1;
    }
    *mean = n ? sum / (double)n : NAN;
    *exact = b->n_seq ? (double)n_exact / (double)b->n_seq : NAN;
    return PD_OK;
}

/* ---- GGUF output ------------------------------------------------------------------------- */

/* Copies every tokenizer.* key of g into w (the vocabulary GGUF's metadata). */
static enum pd_status copy_tokenizer(const struct pd_gguf *g, struct pd_gguf_writer *w,
                                     struct pd_err *err)
{
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct pd_gguf_kv *kv = &g->kv[i];
        if (kv->key.n < 10 || memcmp(kv->key.s, "tokenizer.", 10) != 0) {
            continue;
        }
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.n, kv->key.s);
        enum pd_status st = PD_OK;
        switch (kv->type) {
        case PD_GGUF_UINT32:
            st = pd_gguf_writer_add_u32(w, key, (uint32_t)kv->v.u, err);
            break;
        case PD_GGUF_BOOL:
            st = pd_gguf_writer_add_bool(w, key, kv->v.u != 0, err);
            break;
        case PD_GGUF_STRING:
            st = pd_gguf_writer_add_str_n(w, key, kv->v.str.s, kv->v.str.n, err);
            break;
        case PD_GGUF_ARRAY:
            if (kv->v.arr.elem == PD_GGUF_STRING) {
                size_t n = kv->v.arr.n;
                const char **s = pd_malloc_array(n ? n : 1, sizeof *s);
                size_t *l = pd_malloc_array(n ? n : 1, sizeof *l);
                for (size_t k = 0; s && l && k < n; k++) {
                    s[k] = kv->v.arr.strs[k].s;
                    l[k] = kv->v.arr.strs[k].n;
                }
                st = s && l ? pd_gguf_writer_add_arr_str(w, key, s, l, n, err)
                            : pd_err_set(err, PD_ENOMEM, "out of memory");
                free(s);
                free(l);
            } else {
                st = pd_gguf_writer_add_arr(w, key, kv->v.arr.elem, kv->v.arr.data, kv->v.arr.n,
                                            err);
            }
            break;
        default:
            st = pd_err_set(err, PD_EFORMAT, "%s: unexpected type %s", key,
                            pd_gguf_vtype_name(kv->type));
            break;
        }
        if (st) {
            return st;
        }
    }
    return PD_OK;
}

static enum pd_status write_model(const struct tr_model *m, const struct pd_gguf *vocab,
                                  enum tr_wtype wt, const char *path, const struct opts *o,
                                  struct pd_err *err)
{
    struct pd_gguf_writer *w = NULL;
    char desc[512];
    snprintf(desc, sizeof desc, "ponder's sample reasoning model, trained by reasoner-train: "
             "seed %llu, %lld steps of >= %lld tokens, lr %g -> %g (warmup %lld), wd %g, "
             "clip %g, betas %g %g; docs/reasoner.md", (unsigned long long)o->seed, o->steps,
             o->batch_tokens, o->lr, o->min_lr, o->warmup, o->wd, o->clip, o->beta1, o->beta2);
    enum pd_status st;
    if ((st = pd_gguf_writer_open(&w, err)) ||
        (st = pd_gguf_writer_add_str(w, "general.architecture", "llama", err)) ||
        (st = pd_gguf_writer_add_str(w, "general.name", "ponder-reasoner", err)) ||
        (st = pd_gguf_writer_add_str(w, "general.description", desc, err)) ||
        (st = pd_gguf_writer_add_str(w, "general.license", "MIT", err)) ||
        (st = tr_model_write_tensors(m, wt, w, err)) || (st = copy_tokenizer(vocab, w, err)) ||
        (st = pd_gguf_writer_write_file(w, path, err))) {
        pd_gguf_writer_close(&w);
        return st;
    }
    pd_gguf_writer_close(&w);
    return PD_OK;
}

/* ---- train --------------------------------------------------------------------------------- */

static void logf_both(FILE *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void logf_both(FILE *log, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fputs(line, stdout);
    fflush(stdout);
    if (log) {
        fputs(line, log);
        fflush(log);
    }
}

static int cmd_train(struct opts *o)
{
    if (!o->vocab || !o->out) {
        fprintf(stderr, "reasoner-train: train needs --vocab and --out\n");
        return 2;
    }
    if ((o->until || o->resume) && !o->checkpoint) {
        fprintf(stderr, "reasoner-train: --until and --resume need --checkpoint\n");
        return 2;
    }
    struct pd_err err;
    pd_err_clear(&err);
    struct pd_gguf *vg = NULL;
    struct pd_tok *tok = NULL;
    struct tr_model *m = NULL;
    struct tr_run *run = NULL;
    struct qset ex = {0};
    struct data d = {0};
    struct batch_buf b = {0}, eb = {0};
    FILE *log = NULL;
    int rc = 1;
    rz_pieces_init(&d.x);
    rz_sample_init(&d.s);
    if (pd_gguf_open(o->vocab, &vg, &err) || pd_tok_open_gguf(vg, &tok, &err)) {
        fail(&err);
        goto done;
    }
    o->cfg.n_vocab = pd_tok_n_vocab(tok);
    if (o->cfg.n_head_kv == 0 || o->cfg.n_head_kv > o->cfg.n_head) {
        o->cfg.n_head_kv = o->cfg.n_head;
    }
    if (o->resume && o->checkpoint) {
        if (tr_checkpoint_load(o->checkpoint, &m, &err)) {
            fail(&err);
            goto done;
        }
        if (memcmp(&m->cfg, &o->cfg, sizeof m->cfg) != 0) {
            fprintf(stderr, "reasoner-train: %s: the checkpoint's shape differs from the "
                    "options\n", o->checkpoint);
            goto done;
        }
    } else if (tr_model_new(&o->cfg, o->seed, &m, &err)) {
        fail(&err);
        goto done;
    }
    size_t run_max = (size_t)o->batch_tokens + o->cfg.n_ctx;
    if (tr_run_open(m, run_max, (int)o->threads, &run, &err)) {
        fail(&err);
        goto done;
    }
    d.tok = tok;
    d.exclude = &ex;
    d.n_ctx = o->cfg.n_ctx;
    d.p = malloc(sizeof *d.p);
    if (!d.p || !batch_alloc(&b, run_max) ||
        !batch_alloc(&eb, (size_t)o->eval_count * o->cfg.n_ctx) ||
        (o->exclude_count && !qset_build(&ex, o->exclude_seed, (size_t)o->exclude_count))) {
        fprintf(stderr, "reasoner-train: out of memory\n");
        goto done;
    }
    if (make_eval(&d, o->eval_seed, (size_t)o->eval_count, &eb, &err)) {
        fail(&err);
        goto done;
    }
    if (o->log && !(log = fopen(o->log, o->resume ? "a" : "w"))) {
        fprintf(stderr, "reasoner-train: %s: cannot open\n", o->log);
        goto done;
    }
    logf_both(log, "# reasoner-train: %zu parameters (embd %u, layers %u, heads %u/%u, ff %u, "
              "vocab %u, ctx %u), kernel %s, %d threads, from step %llu\n", m->n_params,
              m->cfg.n_embd, m->cfg.n_layer, m->cfg.n_head, m->cfg.n_head_kv, m->cfg.n_ff,
              m->cfg.n_vocab, m->cfg.n_ctx, tr_gemm_kernel_name(), (int)o->threads,
              (unsigned long long)m->step);
    struct tr_adamw adam = {0, (float)o->beta1, (float)o->beta2, 1e-8f, (float)o->wd,
                            (float)o->clip};
    double t_start = now_s(), t_log = t_start, loss_acc = 0;
    size_t tok_acc = 0, n_acc = 0;
    uint64_t stop = o->until && o->until < o->steps ? (uint64_t)o->until : (uint64_t)o->steps;
    while (m->step < stop) {
        uint64_t step = m->step;
        if (make_batch(&d, o->seed, step, (size_t)o->batch_tokens, &b, &err)) {
            fail(&err);
            goto done;
        }
        struct tr_batch tb = {b.ids, b.mask, b.n_tok, b.seq_len, b.n_seq};
        struct tr_loss l;
        if (tr_forward(run, &tb, &l, NULL, &err)) {
            fail(&err);
            goto done;
        }
        tr_backward(run);
        adam.lr = tr_lr_at(step, (uint64_t)o->steps, (uint64_t)o->warmup, (float)o->lr,
                           (float)o->min_lr);
        double gnorm = tr_adamw_step(run, &adam);
        loss_acc += l.sum / (double)(l.n ? l.n : 1);
        n_acc++;
        tok_acc += b.n_tok;
        if (m->step % (uint64_t)o->log_every == 0 || m->step == (uint64_t)o->steps) {
            double t = now_s();
            logf_both(log, "step %llu/%lld loss %.4f lr %.3e gnorm %.4f tok/s %.0f elapsed "
                      "%.0fs\n", (unsigned long long)m->step, o->steps, loss_acc / n_acc,
                      (double)adam.lr, gnorm, tok_acc / (t - t_log), t - t_start);
            t_log = t;
            loss_acc = 0;
            n_acc = tok_acc = 0;
        }
        bool last = m->step == (uint64_t)o->steps;
        if (o->eval_every && (m->step % (uint64_t)o->eval_every == 0 || last)) {
            double el, ex;
            if (eval_loss(run, run_max, &eb, &el, &ex, &err)) {
                fail(&err);
                goto done;
            }
            logf_both(log, "eval %llu loss %.4f exact %.3f (%zu held-out traces)\n",
                      (unsigned long long)m->step, el, ex, eb.n_seq);
        }
        if (o->checkpoint && ((o->ckpt_every && m->step % (uint64_t)o->ckpt_every == 0) ||
                              last || m->step == stop)) {
            if (tr_checkpoint_save(m, o->checkpoint, &err)) {
                fail(&err);
                goto done;
            }
        }
    }
    if (m->step < (uint64_t)o->steps) {
        logf_both(log, "# stopped at step %llu of %lld (--until); resume with --resume\n",
                  (unsigned long long)m->step, o->steps);
        rc = 0;
        goto done;
    }
    if (write_model(m, vg, TR_WTYPE_F32, o->out, o, &err) ||
        (o->out_q8 && write_model(m, vg, TR_WTYPE_Q8_0, o->out_q8, o, &err))) {
        fail(&err);
        goto done;
    }
    logf_both(log, "# wrote %s%s%s; %llu samples skipped (held out or too long)\n", o->out,
              o->out_q8 ? " and " : "", o->out_q8 ? o->out_q8 : "",
              (unsigned long long)d.skipped);
    rc = 0;
done:
    if (log) {
        fclose(log);
    }
    batch_free(&b);
    batch_free(&eb);
    free(ex.h);
    free(d.p);
    rz_pieces_deinit(&d.x);
    rz_sample_deinit(&d.s);
    tr_run_close(&run);
    tr_model_free(&m);
    pd_tok_close(&tok);
    pd_gguf_close(&vg);
    return rc;
}

/* ---- export ------------------------------------------------------------------------------ */

static int cmd_export(struct opts *o)
{
    if (!o->checkpoint || !o->vocab || !o->out) {
        fprintf(stderr, "reasoner-train: export needs --checkpoint, --vocab and --out\n");
        return 2;
    }
    struct pd_err err;
    pd_err_clear(&err);
    struct tr_model *m = NULL;
    struct pd_gguf *vg = NULL;
    int rc = 1;
    if (tr_checkpoint_load(o->checkpoint, &m, &err) || pd_gguf_open(o->vocab, &vg, &err) ||
        write_model(m, vg, TR_WTYPE_F32, o->out, o, &err) ||
        (o->out_q8 && write_model(m, vg, TR_WTYPE_Q8_0, o->out_q8, o, &err))) {
        fail(&err);
    } else {
        fprintf(stderr, "reasoner-train: %s: step %llu\n", o->out, (unsigned long long)m->step);
        rc = 0;
    }
    tr_model_free(&m);
    pd_gguf_close(&vg);
    return rc;
}

/* ---- score --------------------------------------------------------------------------------- */

static bool parse_ids(const char *s, struct batch_buf *b)
{
    size_t n = 1;
    for (const char *p = s; *p; p++) {
        n += *p == ',';
    }
    if (!batch_alloc(b, n)) {
        return false;
    }
    const char *p = s;
    for (size_t i = 0; i < n; i++) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "reasoner-train: --ids: bad item at '%s'\n", p);
            return false;
        }
        b->ids[i] = (int32_t)v;
        b->mask[i] = 1;
        p = *end ? end + 1 : end;
    }
    b->n_tok = n;
    b->seq_len[0] = n;
    b->n_seq = 1;
    return true;
}

static int cmd_score(struct opts *o)
{
    if (!o->model || (!o->ids == !o->vocab)) {
        fprintf(stderr, "reasoner-train: score needs --model and one of --ids or --vocab\n");
        return 2;
    }
    struct pd_err err;
    pd_err_clear(&err);
    struct tr_model *m = NULL;
    struct tr_run *run = NULL;
    struct batch_buf b = {0};
    struct pd_gguf *vg = NULL;
    struct pd_tok *tok = NULL;
    struct data d = {0};
    double *lp = NULL;
    int rc = 1;
    rz_pieces_init(&d.x);
    rz_sample_init(&d.s);
    if (tr_model_load_gguf(o->model, &m, &err)) {
        fail(&err);
        goto done;
    }
    if (o->ids) {
        if (!parse_ids(o->ids, &b)) {
            goto done;
        }
    } else {
        if (pd_gguf_open(o->vocab, &vg, &err) || pd_tok_open_gguf(vg, &tok, &err)) {
            fail(&err);
            goto done;
        }
        d.tok = tok;
        d.n_ctx = m->cfg.n_ctx;
        d.p = malloc(sizeof *d.p);
        size_t n = o->count ? (size_t)o->count : 1;
        if (!d.p || !batch_alloc(&b, n * m->cfg.n_ctx) ||
            make_eval(&d, o->seed, n, &b, &err)) {
            if (err.msg[0]) {
                fail(&err);
            }
            goto done;
        }
    }
    lp = pd_malloc_array(b.n_tok, sizeof *lp);
    if (!lp || tr_run_open(m, b.n_tok, (int)o->threads, &run, &err)) {
        if (lp) {
            fail(&err);
        }
        goto done;
    }
    struct tr_batch tb = {b.ids, b.mask, b.n_tok, b.seq_len, b.n_seq};
    struct tr_loss l;
    if (tr_forward(run, &tb, &l, lp, &err)) {
        fail(&err);
        goto done;
    }
    size_t t = 0;
    double sum = 0;
    size_t n = 0;
    for (size_t s = 0; s < b.n_seq; s++) {
        for (size_t i = 0; i < b.seq_len[s]; i++, t++) {
            if (i == 0) {
                continue;
            }
            sum += -lp[t];
            n++;
            if (o->json) {
                printf("{\"seq\":%zu,\"pos\":%zu,\"token\":%d,\"logprob\":%.9g}\n", s, i,
                       b.ids[t], lp[t]);
            } else {
                printf("%zu %zu %d %.9g\n", s, i, b.ids[t], lp[t]);
            }
        }
    }
    if (o->json) {
        printf("{\"summary\":{\"sequences\":%zu,\"tokens\":%zu,\"mean_loss\":%.9g}}\n", b.n_seq,
               n, n ? sum / n : NAN);
    } else {
        printf("# %zu sequences, %zu scored tokens, mean loss %.6f nats\n", b.n_seq, n,
               n ? sum / n : NAN);
    }
    rc = 0;
done:
    free(lp);
    free(d.p);
    batch_free(&b);
    rz_pieces_deinit(&d.x);
    rz_sample_deinit(&d.s);
    tr_run_close(&run);
    tr_model_free(&m);
    pd_tok_close(&tok);
    pd_gguf_close(&vg);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        return usage();
    }
    struct opts o;
    opts_default(&o);
    if (!parse(argc, argv, &o)) {
        return usage();
    }
    if (strcmp(argv[1], "train") == 0) {
        return cmd_train(&o);
    }
    if (strcmp(argv[1], "score") == 0) {
        return cmd_score(&o);
    }
    if (strcmp(argv[1], "export") == 0) {
        return cmd_export(&o);
    }
    return usage();
}
