/* gen.c - reasoner-gen: the reasoner's problems, vocabulary and data statistics.
 *
 *   reasoner-gen problems --seed S --count N [--kind K] [--traces] [--out FILE]
 *       N problems drawn from seed S as JSONL, one object per line:
 *       {"id":1,"type":"add","question":"What is 472 + 359?","answer":831}
 *       --traces adds "think" (long), "think_short", "answer_text" and "has_error".
 *   reasoner-gen vocab --seed S --samples N --size V --out FILE.gguf
 *       learns the byte-level BPE vocabulary (at most V tokens) from N rendered training
 *       samples of seed S and writes a vocabulary-only GGUF (tokenizer metadata and the
 *       Qwen3 chat template).
 *   reasoner-gen stats --vocab FILE.gguf --seed S --count N
 *       tokens per sample by kind and style (mean, max), for sizing the context.
 *   reasoner-gen show --vocab FILE.gguf --seed S --count N [--style NAME]
 *       the rendered samples with their token counts.
 * Exit status: 0 ok, 1 failure, 2 usage. Deterministic: the same arguments give the same
 * bytes on every machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "mem.h"
#include "bpe.h"
#include "data.h"
#include "gguf.h"
#include "gguf_writer.h"
#include "problems.h"
#include "template.h"
#include "tokenizer.h"

static int usage(void)
{
    fputs("usage: reasoner-gen problems --seed S --count N [--kind K] [--traces] [--out F]\n"
          "       reasoner-gen vocab --seed S --samples N --size V --out F.gguf\n"
          "       reasoner-gen stats --vocab F.gguf --seed S --count N\n"
          "       reasoner-gen show --vocab F.gguf --seed S --count N [--style NAME]\n",
          stderr);
    return 2;
}

struct opts {
    unsigned long long seed;
    long long count;
    long long size;
    const char *kind;
    const char *out;
    const char *vocab;
    const char *style;
    bool traces;
};

static bool parse_num(const char *name, const char *v, long long lo, long long hi,
                      long long *out)
{
    char *end;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || *end || x < lo || x > hi) {
        fprintf(stderr, "reasoner-gen: %s: expected an integer in [%lld, %lld]\n", name, lo, hi);
        return false;
    }
    *out = x;
    return true;
}

static bool parse_opts(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->count = -1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x;
        if (strcmp(a, "--traces") == 0) {
            o->traces = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "reasoner-gen: %s needs a value\n", a);
            return false;
        }
        i++;
        if (strcmp(a, "--seed") == 0) {
            if (!parse_num(a, v, 0, INT64_MAX, &x)) {
                return false;
            }
            o->seed = (unsigned long long)x;
        } else if (strcmp(a, "--count") == 0 || strcmp(a, "--samples") == 0) {
            if (!parse_num(a, v, 1, 100000000, &o->count)) {
                return false;
            }
        } else if (strcmp(a, "--size") == 0) {
            if (!parse_num(a, v, 256 + RZ_N_SPECIAL, 65536, &o->size)) {
                return false;
            }
        } else if (strcmp(a, "--kind") == 0) {
            o->kind = v;
        } else if (strcmp(a, "--out") == 0) {
            o->out = v;
        } else if (strcmp(a, "--vocab") == 0) {
            o->vocab = v;
        } else if (strcmp(a, "--style") == 0) {
            o->style = v;
        } else {
            fprintf(stderr, "reasoner-gen: unknown option '%s'\n", a);
            return false;
        }
    }
    if (o->count < 0) {
        fprintf(stderr, "reasoner-gen: --count (or --samples) is required\n");
        return false;
    }
    return true;
}

static int fail_err(const struct pd_err *e)
{
    fprintf(stderr, "reasoner-gen: %s\n", e->msg);
    return 1;
}

static void json_field(struct pd_buf *b, const char *key, const char *s)
{
    pd_buf_printf(b, ",\"%s\":", key);
    pd_json_str(b, s, strlen(s));
}

static int cmd_problems(const struct opts *o)
{
    enum rz_kind kind = RZ_KIND_COUNT;
    if (o->kind && (kind = rz_kind_parse(o->kind)) == RZ_KIND_COUNT) {
        fprintf(stderr, "reasoner-gen: --kind: unknown kind '%s'\n", o->kind);
        return 2;
    }
    FILE *f = o->out ? fopen(o->out, "w") : stdout;
    if (!f) {
        fprintf(stderr, "reasoner-gen: %s: cannot create\n", o->out);
        return 1;
    }
    struct rz_rng r;
    rz_rng_seed(&r, o->seed);
    struct rz_params pp = rz_default_params();
    struct rz_problem *p = malloc(sizeof *p);
    struct pd_buf b;
    pd_buf_init(&b);
    int rc = p ? 0 : 1;
    for (long long i = 0; rc == 0 && i < o->count; i++) {
        bool ok = kind == RZ_KIND_COUNT ? rz_problem_draw(&r, &pp, p)
                                        : rz_problem_draw_kind(&r, &pp, kind, p);
        if (!ok) {
            fprintf(stderr, "reasoner-gen: problem %lld: text too long (a bug)\n", i + 1);
            rc = 1;
            break;
        }
        b.len = 0;
        pd_buf_printf(&b, "{\"id\":%lld,\"type\":\"%s\"", i + 1, rz_kind_name(p->kind));
        json_field(&b, "question", p->question);
        pd_buf_printf(&b, ",\"answer\":%s", p->answer);
        if (o->traces) {
            json_field(&b, "think", p->think_long);
            json_field(&b, "think_short", p->think_short);
            json_field(&b, "answer_text", p->answer_text);
            pd_buf_printf(&b, ",\"has_error\":%s", p->has_error ? "true" : "false");
        }
        pd_buf_puts(&b, "}\n");
        if (fwrite(b.data, 1, b.len, f) != b.len) {
            rc = 1;
        }
    }
    pd_buf_deinit(&b);
    free(p);
    if (o->out && fclose(f) != 0) {
        rc = 1;
    }
    return rc;
}

/* Draws sample i of a stream: a problem and a style, rendered. */
static enum pd_status draw_sample(struct rz_rng *r, struct rz_problem *p, enum rz_style *st,
                                  struct rz_pieces *x, struct pd_err *err)
{
    struct rz_params pp = rz_default_params();
    struct rz_mix mix = rz_default_mix();
    if (!rz_problem_draw(r, &pp, p)) {
        return pd_err_set(err, PD_EINVAL, "problem text too long (a bug)");
    }
    *st = rz_mix_draw(r, &mix);
    return rz_render(p, *st, r, x, err);
}

static int cmd_vocab(const struct opts *o)
{
    if (!o->out || o->size == 0) {
        fprintf(stderr, "reasoner-gen: vocab needs --size and --out\n");
        return 2;
    }
    struct pd_err err;
    pd_err_clear(&err);
    size_t n = (size_t)o->count;
    char **texts = pd_calloc(n, sizeof *texts);
    struct rz_problem *p = malloc(sizeof *p);
    struct rz_pieces x;
    rz_pieces_init(&x);
    struct rz_rng r;
    rz_rng_seed(&r, o->seed);
    int rc = texts && p ? 0 : 1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        enum rz_style st;
        if (draw_sample(&r, p, &st, &x, &err)) {
            rc = fail_err(&err);
            break;
        }
        struct pd_buf all;
        pd_buf_init(&all);
        for (int k = 0; k < x.n; k++) {
            pd_buf_append(&all, x.p[k].text.data, x.p[k].text.len);
        }
        texts[i] = all.data ? pd_buf_take(&all) : NULL;
        if (!texts[i]) {
            rc = 1;
        }
    }
    struct rz_vocab v;
    memset(&v, 0, sizeof v);
    struct pd_gguf_writer *w = NULL;
    if (rc == 0 && (rz_bpe_train((const char *const *)texts, n, (uint32_t)o->size, &v, &err) ||
                    pd_gguf_writer_open(&w, &err) ||
                    pd_gguf_writer_add_str(w, "general.architecture", "llama", &err) ||
                    pd_gguf_writer_add_str(w, "general.name", "ponder-reasoner vocabulary",
                                           &err) ||
                    rz_vocab_write_meta(&v, rz_chat_template, w, &err) ||
                    pd_gguf_writer_write_file(w, o->out, &err))) {
        rc = fail_err(&err);
    }
    if (rc == 0) {
        fprintf(stderr, "reasoner-gen: %s: %zu tokens (%zu merges) from %zu samples\n", o->out,
                v.n_tokens, v.n_merges, n);
    }
    pd_gguf_writer_close(&w);
    rz_vocab_deinit(&v);
    for (size_t i = 0; texts && i < n; i++) {
        free(texts[i]);
    }
    free(texts);
    free(p);
    rz_pieces_deinit(&x);
    return rc;
}

static int open_vocab(const char *path, struct pd_tok **tok)
{
    struct pd_err err;
    pd_err_clear(&err);
    struct pd_gguf *g = NULL;
    if (!path) {
        fprintf(stderr, "reasoner-gen: --vocab FILE.gguf is required\n");
        return 2;
    }
    if (pd_gguf_open(path, &g, &err) || pd_tok_open_gguf(g, tok, &err)) {
        pd_gguf_close(&g);
        return fail_err(&err);
    }
    pd_gguf_close(&g);
    return 0;
}

static int cmd_stats(const struct opts *o, bool show)
{
    struct pd_tok *tok = NULL;
    int rc = open_vocab(o->vocab, &tok);
    if (rc) {
        return rc;
    }
    enum rz_style only = RZ_STYLE_COUNT;
    for (int s = 0; o->style && s < RZ_STYLE_COUNT; s++) {
        if (strcmp(o->style, rz_style_name((enum rz_style)s)) == 0) {
            only = (enum rz_style)s;
        }
    }
    if (o->style && only == RZ_STYLE_COUNT) {
        fprintf(stderr, "reasoner-gen: --style: unknown style '%s'\n", o->style);
        pd_tok_close(&tok);
        return 2;
    }
    struct pd_err err;
    pd_err_clear(&err);
    struct rz_problem *p = malloc(sizeof *p);
    struct rz_pieces x;
    rz_pieces_init(&x);
    struct rz_sample smp;
    rz_sample_init(&smp);
    struct rz_rng r;
    rz_rng_seed(&r, o->seed);
    double sum[RZ_KIND_COUNT][RZ_STYLE_COUNT] = {{0}};
    size_t cnt[RZ_KIND_COUNT][RZ_STYLE_COUNT] = {{0}}, mx[RZ_KIND_COUNT][RZ_STYLE_COUNT] = {{0}};
    size_t total = 0, shown = 0;
    for (long long i = 0; p && i < o->count; i++) {
        enum rz_style st = RZ_STYLE_COUNT; /* set by draw_sample on success */
        if (draw_sample(&r, p, &st, &x, &err) || rz_encode(tok, &x, &smp, &err)) {
            rc = fail_err(&err);
            break;
        }
        sum[p->kind][st] += (double)smp.n;
        cnt[p->kind][st]++;
        mx[p->kind][st] = smp.n > mx[p->kind][st] ? smp.n : mx[p->kind][st];
        total += smp.n;
        if (show && (only == RZ_STYLE_COUNT || only == st)) {
            printf("=== sample %lld: %s, %s, %zu tokens\n", i + 1, rz_kind_name(p->kind),
                   rz_style_name(st), smp.n);
            for (int k = 0; k < x.n; k++) {
                printf("%s%s%s", x.p[k].trained ? "" : "[", x.p[k].text.data,
                       x.p[k].trained ? "" : "]");
            }
            printf("\n--- tokens (| between, [] not trained):\n");
            for (size_t t = 0; t < smp.n; t++) {
                size_t len;
                const char *pc = pd_tok_piece(tok, smp.ids[t], &len);
                printf("%s%.*s%s", smp.mask[t] ? "|" : "|[", (int)len, pc,
                       smp.mask[t] ? "" : "]");
            }
            printf("|\n");
            shown++;
        }
    }
    if (!show && rc == 0) {
        printf("%-6s %-12s %8s %8s %6s\n", "kind", "style", "samples", "mean", "max");
        for (int k = 0; k < RZ_KIND_COUNT; k++) {
            for (int s = 0; s < RZ_STYLE_COUNT; s++) {
                if (cnt[k][s]) {
                    printf("%-6s %-12s %8zu %8.1f %6zu\n", rz_kind_name((enum rz_kind)k),
                           rz_style_name((enum rz_style)s), cnt[k][s], sum[k][s] / cnt[k][s],
                           mx[k][s]);
                }
            }
        }
        printf("all: %zu tokens in %lld samples, %.1f per sample\n", total, o->count,
               (double)total / (double)o->count);
    }
    (void)shown;
    rz_sample_deinit(&smp);
    rz_pieces_deinit(&x);
    free(p);
    pd_tok_close(&tok);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        return usage();
    }
    struct opts o;
    if (!parse_opts(argc, argv, &o)) {
        return usage();
    }
    if (strcmp(argv[1], "problems") == 0) {
        return cmd_problems(&o);
    }
    if (strcmp(argv[1], "vocab") == 0) {
        return cmd_vocab(&o);
    }
    if (strcmp(argv[1], "stats") == 0) {
        return cmd_stats(&o, false);
    }
    if (strcmp(argv[1], "show") == 0) {
        return cmd_stats(&o, true);
    }
    return usage();
}
