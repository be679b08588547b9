/* cli_model.c - headless model commands: info, tokenize, score, generate, bench.
 *
 * Contracts (docs/cli.md):
 *   info     -m M [--json]
 *   tokenize -m M --text STR [--no-bos] [--no-special] [--json]   -> {"tokens":[...]}
 *   score    -m M (--text STR | --tokens 1,2,3) [--topk K] [--kv-type f16|f32] [--json]
 *            -> one line per position i >= 1:
 *               {"pos":i,"token":id,"logprob":lp,"entropy":bits,"top":[[id,lp],...]}
 *   generate -m M -p PROMPT [-n N] [--raw] [--greedy | --temp T --top-k K --top-p P
 *            --min-p P --seed S] [--topk K] [--kv-type f16|f32] [--json]
 *   bench    -m M [-p N] [-n N] [--threads N]
 * logprob is ln p(token_i | tokens_<i) of the raw distribution; entropy is in bits. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "attn_blob.h"
#include "jsonw.h"
#include "mem.h"
#include "capture.h"
#include "chat.h"
#include "cpu.h"
#include "cli.h"
#include "cli_record.h"
#include "cli_remote.h"
#include "model_id.h"
#include "store.h"
#include "utf8.h"
#include "policies.h"
#include "steps_live.h"
#include "session.h"
#include "dtype.h"
#include "forward.h"
#include "lm.h"
#include "modes.h"
#include "probe.h"
#include "sampler.h"
#include "threadpool.h"
#include "tokenizer.h"
#if HAVE_REMOTE
#include "remote_session.h"
#endif

/* Options shared by the model commands. */
struct model_opts {
    const char *model;
    int n_threads;
    enum pd_kv_type kv_type;
    uint32_t n_ctx;
    enum pd_backend_kind backend;
    bool json;
};

struct loaded {
    struct pd_lm lm;
    struct pd_ctx *ctx;
};

static void loaded_close(struct loaded *l)
{
    pd_ctx_close(&l->ctx);
    pd_lm_close(&l->lm);
}

/* Weight upload of a device backend, on a terminal: a one-line progress bar on stderr. */
static void upload_progress(void *ud, uint64_t done, uint64_t total)
{
    (void)ud;
    int pct = total ? (int)(100.0 * (double)done / (double)total) : 100;
    pct = pct > 100 ? 100 : pct;
    char bar[41];
    int fill = pct * 40 / 100;
    for (int i = 0; i < 40; i++) {
        bar[i] = i < fill ? '#' : '.';
    }
    bar[40] = '\0';
    fprintf(stderr, "\ruploading weights [%s] %3d%% (%.2f GiB)", bar, pct,
            (double)done / (double)(1u << 30));
    if (done >= total) {
        fputc('\n', stderr);
    }
}

/* Opens the model, its tokenizer and (when want_ctx) an evaluation context. Prints the
 * error and returns false on failure. */
static bool load(const struct model_opts *o, bool want_ctx, struct loaded *l)
{
    struct pd_err err;
    pd_err_clear(&err);
    memset(l, 0, sizeof *l);
    if (pd_lm_open(o->model, PD_CHAT_FAMILY_COUNT, &l->lm, &err)) {
        pd_cli_print_err(&err);
        return false;
    }
    if (want_ctx) {
        struct pd_ctx_params p = pd_ctx_default_params();
        p.n_threads = o->n_threads;
        p.kv_type = o->kv_type;
        p.n_ctx = o->n_ctx;
        p.backend = o->backend;
        p.progress = isatty(STDERR_FILENO) ? upload_progress : NULL;
        if (pd_ctx_open(l->lm.model, &p, &l->ctx, &err)) {
            pd_cli_print_err(&err);
            loaded_close(l);
            return false;
        }
    }
    return true;
}

/* Parses one of the shared options at a->i. Returns 1 if consumed, 0 if not ours,
 * -1 on a usage error (already printed). */
static int parse_model_opt(struct pd_argv *a, struct model_opts *o)
{
    const char *v = NULL;
    bool bad = false;
    long long n = 0;
    if (pd_arg_match(a, "--model", "-m", &v, &bad)) {
        o->model = v;
    } else if (pd_arg_match(a, "--threads", "-t", &v, &bad)) {
        if (!bad && !pd_arg_long(a->cmd, "--threads", v, 1, 1024, &n)) {
            return -1;
        }
        o->n_threads = (int)n;
    } else if (pd_arg_match(a, "--kv-type", NULL, &v, &bad)) {
        if (!bad && (o->kv_type = pd_kv_type_parse(v)) == PD_KV_TYPE_COUNT) {
            pd_cli_fail(2, "%s: --kv-type: expected f16 or f32, got '%s'", a->cmd, v);
            return -1;
        }
    } else if (pd_arg_match(a, "--ctx", "-c", &v, &bad)) {
        if (!bad && !pd_arg_long(a->cmd, "--ctx", v, 16, 1 << 22, &n)) {
            return -1;
        }
        o->n_ctx = (uint32_t)n;
    } else if (pd_arg_match(a, "--backend", NULL, &v, &bad)) {
        if (!bad && (o->backend = pd_backend_parse(v)) == PD_BACKEND_KIND_COUNT) {
            pd_cli_fail(2, "%s: --backend: expected cpu, cuda or auto, got '%s'", a->cmd, v);
            return -1;
        }
    } else if (pd_arg_match(a, "--json", NULL, NULL, &bad)) {
        o->json = true;
    } else {
        return 0;
    }
    return bad ? -1 : 1;
}

static void model_opts_init(struct model_opts *o)
{
    memset(o, 0, sizeof *o);
    o->kv_type = PD_KV_F16;
}

static const char model_opts_help[] =
    "  -m, --model FILE   GGUF model\n"
    "  -t, --threads N    CPU threads (default: all)\n"
    "  -c, --ctx N        KV cache slots (default: min(4096, trained context))\n"
    "  --kv-type T        KV cache storage: f16 (default) or f32\n"
    "  --backend B        where the forward pass runs: cpu (default), cuda (the device\n"
    "                     engine: a CUDA build and a GPU) or auto (cuda when a GPU is\n"
    "                     present)\n"
    "  --json             machine-readable output on stdout\n";

static bool want_help(int argc, char **argv, const char *usage)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            fputs(model_opts_help, stdout);
            /* the commands that take --engine say so in their usage */
            if (strstr(usage, "--engine")) {
                fputs(pd_cli_engine_help, stdout);
            }
            return true;
        }
    }
    return false;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Writes and empties b: JSON exactly as built (its escaping makes it safe), text through
 * the terminal filter (termsafe.h), since it holds vocabulary pieces and GGUF strings. */
static void put_buf(struct pd_buf *b, bool json)
{
    pd_cli_put(b->data, b->len, json);
    b->len = 0;
}

/* ---- info ---------------------------------------------------------------------------- */

int pd_cli_info(int argc, char **argv)
{
    static const char usage[] =
        "usage: ponder info -m MODEL [--backend cuda|auto [--ctx N]] [--json]\n"
        "With a GPU backend, also the device, its measured bandwidth and f16 GEMM throughput,\n"
        "and the engine's memory plan at --ctx slots (nothing is uploaded).\n";
    if (want_help(argc, argv, usage)) {
        return 0;
    }
    struct model_opts o;
    model_opts_init(&o);
    struct pd_argv a = {argc, argv, 1, "info"};
    while (a.i < argc) {
        int r = parse_model_opt(&a, &o);
        if (r < 0) {
            return 2;
        }
        if (r == 0) {
            return pd_cli_fail(2, "info: unknown option '%s'", argv[a.i]);
        }
    }
    if (!o.model) {
        return pd_cli_fail(2, "info: -m MODEL is required");
    }
    struct loaded l;
    if (!load(&o, false, &l)) {
        return 1;
    }
    const struct pd_hparams *hp = &l.lm.model->hp;
    const struct pd_gguf *g = l.lm.model->gguf;
    uint64_t hist[PD_DTYPE_COUNT] = {0};
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        hist[g->tensors[i].type]++;
    }
    struct pd_gguf_str name = {"", 0};
    pd_gguf_get_str(g, "general.name", &name, NULL);
    const char *tmpl = pd_chat_family_traits(l.lm.chat.family)->name;
    bool has_tmpl = pd_gguf_find(g, "tokenizer.chat_template") != NULL;
    /* the device engine's plan, when a GPU backend is asked for */
    struct pd_backend_info gi;
    bool gpu = o.backend == PD_BACKEND_CUDA ||
               (o.backend == PD_BACKEND_AUTO && pd_backend_cuda_available());
    struct pd_ctx_params gp = pd_ctx_default_params();
    gp.kv_type = o.kv_type;
    gp.n_ctx = o.n_ctx ? o.n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    if (gpu) {
        struct pd_err err;
        if (pd_backend_cuda_info(l.lm.model, &gp, true, &gi, &err)) {
            pd_cli_print_err(&err);
            loaded_close(&l);
            return 1;
        }
    }
    struct pd_buf b;
    pd_buf_init(&b);
    if (o.json) {
        pd_buf_printf(&b, "{\"file\":");
        pd_json_str(&b, o.model, strlen(o.model));
        pd_buf_printf(&b, ",\"name\":");
        pd_json_str(&b, name.s, name.n);
        pd_buf_printf(&b,
                      ",\"gguf_version\":%u,\"architecture\":\"%s\",\"n_params\":%llu,"
                      "\"weight_bytes\":%llu,\"n_vocab\":%u,\"n_embd\":%u,\"n_layer\":%u,"
                      "\"n_head\":%u,\"n_head_kv\":%u,\"head_dim\":%u,\"n_ff\":%u,"
                      "\"n_ctx_train\":%u,\"rope_base\":",
                      g->version, pd_arch_name(hp->arch), (unsigned long long)l.lm.model->n_params,
                      (unsigned long long)l.lm.model->weight_bytes, hp->n_vocab, hp->n_embd,
                      hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff,
                      hp->n_ctx_train);
        pd_json_num(&b, hp->rope_base);
        pd_buf_printf(&b, ",\"norm_eps\":");
        pd_json_num(&b, hp->norm_eps);
        pd_buf_printf(&b, ",\"tied_output\":%s,\"tensor_types\":{",
                      hp->tied_output ? "true" : "false");
        bool first = true;
        for (int t = 0; t < PD_DTYPE_COUNT; t++) {
            if (hist[t]) {
                pd_buf_printf(&b, "%s\"%s\":%llu", first ? "" : ",", pd_dtype_traits(t)->name,
                              (unsigned long long)hist[t]);
                first = false;
            }
        }
        pd_buf_printf(&b, "},\"tokenizer\":{\"model\":\"%s\",\"pre\":\"%s\",\"bos\":%d,"
                          "\"eos\":%d,\"add_bos\":%s},\"chat_template\":{\"family\":\"%s\","
                          "\"in_file\":%s},\"cpu_kernels\":\"%s\",\"cpu_prefetch\":\"%s\"",
                      pd_tok_model_name(pd_tok_model(l.lm.tok)), pd_tok_pre_name(pd_tok_pre(l.lm.tok)),
                      pd_tok_bos(l.lm.tok), pd_tok_eos(l.lm.tok),
                      pd_tok_add_bos(l.lm.tok) ? "true" : "false", tmpl,
                      has_tmpl ? "true" : "false", pd_cpu_simd_name(pd_cpu_simd_level()),
                      pd_cpu_prefetch_l2() ? "l2" : "l1");
        pd_buf_printf(&b, ",\"cpu_packed\":[");
        first = true;
        for (int t = 0; t < PD_DTYPE_COUNT; t++) {
            if (hist[t] && pd_model_packs_type((enum pd_dtype)t)) {
                pd_buf_printf(&b, "%s\"%s\"", first ? "" : ",", pd_dtype_traits(t)->name);
                first = false;
            }
        }
        pd_buf_printf(&b, "]");
        if (gpu) {
            const struct pd_gpu_plan *pl = &gi.plan;
            pd_buf_printf(&b, ",\"gpu\":{\"device\":");
            pd_json_str(&b, gi.device, strlen(gi.device));
            pd_buf_printf(&b, ",\"provider\":\"%s\",\"cc\":\"%d.%d\",\"bandwidth_gbs\":%.1f,"
                              "\"gemm_f16_tflops\":%.2f,\"plan\":{\"n_ctx\":%u,\"weights\":%llu,"
                              "\"kv\":%llu,\"activations\":%llu,\"capture\":%llu,\"fixed\":%llu,"
                              "\"total\":%llu,\"device_free\":%llu,\"fits\":%s,"
                              "\"n_ctx_max\":%u,\"token_bytes_weights\":%llu,"
                              "\"token_bytes_per_slot\":%llu}}",
                          gi.provider, gi.cc_major, gi.cc_minor, gi.bandwidth / 1e9,
                          gi.gemm_flops / 1e12, pl->n_ctx, (unsigned long long)pl->weights,
                          (unsigned long long)pl->kv, (unsigned long long)pl->activations,
                          (unsigned long long)pl->capture, (unsigned long long)pl->fixed,
                          (unsigned long long)pl->total, (unsigned long long)pl->device_free,
                          pl->fits ? "true" : "false", pl->n_ctx_max,
                          (unsigned long long)pl->token_bytes_weights,
                          (unsigned long long)pl->token_bytes_per_slot);
        }
        pd_buf_puts(&b, "}\n");
    } else {
        pd_buf_printf(&b, "file          %s\n", o.model);
        pd_buf_printf(&b, "name          %.*s\n", (int)name.n, name.s);
        pd_buf_printf(&b, "gguf          v%u, %llu tensors, %llu metadata keys\n", g->version,
                      (unsigned long long)g->n_tensors, (unsigned long long)g->n_kv);
        pd_buf_printf(&b, "architecture  %s\n", pd_arch_name(hp->arch));
        pd_buf_printf(&b, "parameters    %llu (%.2f MiB of weights)\n",
                      (unsigned long long)l.lm.model->n_params,
                      (double)l.lm.model->weight_bytes / (1024.0 * 1024.0));
        pd_buf_printf(&b, "layers        %u, embedding %u, ffn %u\n", hp->n_layer, hp->n_embd,
                      hp->n_ff);
        pd_buf_printf(&b, "heads         %u query, %u key/value, head size %u/%u, rope %s "
                          "(%u dims, base %g)\n",
                      hp->n_head, hp->n_head_kv, hp->head_dim, hp->head_dim_v,
                      hp->rope_type == PD_ROPE_NEOX ? "neox" : "normal", hp->n_rot,
                      hp->rope_base);
        pd_buf_printf(&b, "context       %u trained\n", hp->n_ctx_train);
        pd_buf_printf(&b, "output        %s\n", hp->tied_output ? "tied to token_embd" : "own");
        pd_buf_printf(&b, "tensor types ");
        for (int t = 0; t < PD_DTYPE_COUNT; t++) {
            if (hist[t]) {
                pd_buf_printf(&b, " %s:%llu", pd_dtype_traits(t)->name,
                              (unsigned long long)hist[t]);
            }
        }
        pd_buf_printf(&b, "\ntokenizer     %s (pre %s), %u tokens, bos %d, eos %d%s\n",
                      pd_tok_model_name(pd_tok_model(l.lm.tok)), pd_tok_pre_name(pd_tok_pre(l.lm.tok)),
                      pd_tok_n_vocab(l.lm.tok), pd_tok_bos(l.lm.tok), pd_tok_eos(l.lm.tok),
                      pd_tok_add_bos(l.lm.tok) ? ", adds bos" : "");
        pd_buf_printf(&b, "cpu kernels   %s (PONDER_SIMD=scalar|avx2|avx512vnni|auto)\n",
                      pd_cpu_simd_name(pd_cpu_simd_level()));
        bool l2 = pd_cpu_prefetch_l2();
        pd_buf_printf(&b, "cpu prefetch  %s: large matrices' decode streams into the %s-level "
                          "cache (PONDER_PREFETCH=l1|l2)\n",
                      l2 ? "l2" : "l1", l2 ? "second" : "first");
        bool packs = false;
        for (int t = 0; t < PD_DTYPE_COUNT; t++) {
            if (hist[t] && pd_model_packs_type((enum pd_dtype)t)) {
                pd_buf_printf(&b, "%s%s", packs ? ", " : "cpu layout    packs ",
                              pd_dtype_traits(t)->name);
                packs = true;
            }
        }
        if (packs) {
            pd_buf_printf(&b, " matrices for the kernels at load (PONDER_PACK=0 keeps the "
                              "file's layout)\n");
        }
        pd_buf_printf(&b, "template      %s (%s)\n", tmpl,
                      has_tmpl ? "detected from tokenizer.chat_template"
                               : "no tokenizer.chat_template; from the architecture");
        if (gpu) {
            const struct pd_gpu_plan *pl = &gi.plan;
            double gib = 1024.0 * 1024.0 * 1024.0;
            pd_buf_printf(&b, "gpu           %s (%s, compute %d.%d), %.1f GB/s measured, f16 GEMM "
                              "%.1f TFLOP/s\n",
                          gi.device, gi.provider, gi.cc_major, gi.cc_minor, gi.bandwidth / 1e9,
                          gi.gemm_flops / 1e12);
            pd_buf_printf(&b, "gpu plan      %u slots: weights %.2f + KV %.2f + activations %.2f + "
                              "capture %.2f + fixed %.2f = %.2f GiB of %.2f GiB free: %s "
                              "(up to %u slots)\n",
                          pl->n_ctx, pl->weights / gib, pl->kv / gib, pl->activations / gib,
                          pl->capture / gib, pl->fixed / gib, pl->total / gib,
                          pl->device_free / gib, pl->fits ? "fits" : "does not fit",
                          pl->n_ctx_max);
            double bytes = (double)pl->token_bytes_weights +
                           (double)pl->token_bytes_per_slot * pl->n_ctx;
            pd_buf_printf(&b, "gpu per token %.3f GB of weights + %.1f KiB per cached slot "
                              "(roofline %.0f tok/s with %u slots)\n",
                          pl->token_bytes_weights / 1e9, pl->token_bytes_per_slot / 1024.0,
                          gi.bandwidth > 0 ? gi.bandwidth / bytes : 0.0, pl->n_ctx);
        }
    }
    put_buf(&b, o.json);
    pd_buf_deinit(&b);
    loaded_close(&l);
    return 0;
}

/* ---- tokenize ------------------------------------------------------------------------ */

int pd_cli_tokenize(int argc, char **argv)
{
    static const char usage[] =
        "usage: ponder tokenize -m MODEL --text STR [--no-bos] [--no-special] [--json]\n";
    if (want_help(argc, argv, usage)) {
        return 0;
    }
    struct model_opts o;
    model_opts_init(&o);
    const char *text = NULL;
    bool no_bos = false, no_special = false, bad = false;
    struct pd_argv a = {argc, argv, 1, "tokenize"};
    while (a.i < argc) {
        int r = parse_model_opt(&a, &o);
        if (r < 0) {
            return 2;
        }
        if (r > 0) {
            continue;
        }
        if (pd_arg_match(&a, "--text", NULL, &text, &bad) ||
            pd_arg_match(&a, "--no-bos", NULL, NULL, &bad) ||
            pd_arg_match(&a, "--no-special", NULL, NULL, &bad)) {
            if (bad) {
                return 2;
            }
            if (strcmp(argv[a.i - 1], "--no-bos") == 0) {
                no_bos = true;
            } else if (strcmp(argv[a.i - 1], "--no-special") == 0) {
                no_special = true;
            }
            continue;
        }
        return pd_cli_fail(2, "tokenize: unknown option '%s'", argv[a.i]);
    }
    if (!o.model || !text) {
        return pd_cli_fail(2, "tokenize: -m MODEL and --text STR are required");
    }
    struct loaded l;
    if (!load(&o, false, &l)) {
        return 1;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    struct pd_err err;
    if (pd_tok_encode(l.lm.tok, text, strlen(text), !no_bos && pd_tok_add_bos(l.lm.tok), !no_special,
                      &ids, &n, &err)) {
        pd_cli_print_err(&err);
        loaded_close(&l);
        return 1;
    }
    struct pd_buf b;
    pd_buf_init(&b);
    if (o.json) {
        pd_buf_puts(&b, "{\"tokens\":[");
        for (size_t i = 0; i < n; i++) {
            pd_buf_printf(&b, "%s%d", i ? "," : "", ids[i]);
        }
        pd_buf_puts(&b, "]}\n");
    } else {
        for (size_t i = 0; i < n; i++) {
            size_t len;
            const char *piece = pd_tok_piece(l.lm.tok, ids[i], &len);
            pd_buf_printf(&b, "%6d  ", ids[i]);
            pd_json_str(&b, piece, len);
            pd_buf_puts(&b, "\n");
        }
    }
    put_buf(&b, o.json);
    pd_buf_deinit(&b);
    free(ids);
    loaded_close(&l);
    return 0;
}

static void append_attn(struct pd_buf *b, const struct pd_token_rec *r)
{
    struct pd_attn_view v;
    if (!pd_attn_blob_layout(r->attn, r->attn_len, &v)) {
        return;
    }
    pd_buf_puts(b, ",\"attn\":[");
    for (uint32_t il = 0; il < v.n_layer; il++) {
        pd_buf_puts(b, il ? ",[" : "[");
        bool first = true;
        for (uint32_t k = 0; k < v.n_top; k++) {
            uint32_t pos;
            float w;
            if (pd_attn_view_entry(&v, il, k, &pos, &w)) {
                pd_buf_printf(b, "%s[%u,", first ? "" : ",", pos);
                pd_json_num(b, w);
                pd_buf_puts(b, "]");
                first = false;
            }
        }
        pd_buf_puts(b, "]");
    }
    pd_buf_puts(b, "]");
    if (v.n_steps > 0) {
        /* the steps the token attends to, by first position (attn_blob.h) */
        pd_buf_puts(b, ",\"step_mass\":[");
        for (uint32_t k = 0; k < v.n_steps; k++) {
            pd_buf_printf(b, "%s[%lld,", k ? "," : "", (long long)pd_attn_view_step_begin(&v, k));
            pd_json_num(b, pd_attn_view_step_mass(&v, k));
            pd_buf_puts(b, "]");
        }
        pd_buf_puts(b, "]");
    }
}

/* ---- score --------------------------------------------------------------------------- */

static void append_metrics(struct pd_buf *b, const struct pd_token_rec *r, const struct pd_tok *tok,
                           bool with_text)
{
    pd_buf_printf(b, "\"token\":%d", r->id);
    if (with_text) {
        size_t len = r->text_len;
        const char *piece = tok ? pd_tok_piece(tok, r->id, &len) : r->text;
        pd_buf_puts(b, ",\"text\":");
        pd_json_str(b, piece ? piece : "", piece ? len : 0);
    }
    pd_buf_puts(b, ",\"logprob\":");
    pd_json_num(b, r->logprob);
    pd_buf_puts(b, ",\"entropy\":");
    pd_json_num(b, r->entropy);
    if (r->flags & PD_TOKF_ENTROPY_EST) {
        pd_buf_puts(b, ",\"entropy_est\":true"); /* from the engine's top-k only */
    }
    pd_buf_puts(b, ",\"top\":[");
    for (size_t k = 0; k < r->n_top; k++) {
        pd_buf_printf(b, "%s[%d,", k ? "," : "", r->top[k].id);
        pd_json_num(b, r->top[k].logprob);
        pd_buf_puts(b, "]");
    }
    pd_buf_puts(b, "]");
}

struct score_state {
    const struct loaded *l;       /* NULL when a remote engine scores */
    const struct pd_tok *tok;     /* the vocabulary for texts; NULL: ids only */
    const int32_t *tokens;
    size_t n;
    size_t topk;
    bool json;
    struct pd_buf out;
    struct pd_token_rec *held; /* [n] when capture is on: lines wait for their summary */
};

static void score_line(struct score_state *s, size_t pos, const struct pd_token_rec *r)
{
    if (s->json) {
        pd_buf_printf(&s->out, "{\"pos\":%zu,", pos);
        append_metrics(&s->out, r, s->tok, false);
        append_attn(&s->out, r);
        pd_buf_puts(&s->out, "}\n");
    } else {
        size_t len = 0;
        const char *piece = s->tok ? pd_tok_piece(s->tok, r->id, &len) : NULL;
        pd_buf_printf(&s->out, "%5zu %6d %10.4f %8.3f %8.3f%s ", pos, r->id, r->logprob,
                      -r->logprob / M_LN2, r->entropy,
                      (r->flags & PD_TOKF_ENTROPY_EST) ? "~" : " ");
        pd_json_str(&s->out, piece ? piece : "", len);
        pd_buf_puts(&s->out, "\n");
    }
    if (s->out.len > 65536) {
        put_buf(&s->out, s->json);
    }
}

static void score_logits(void *ud, size_t i, int64_t pos, const float *logits)
{
    (void)pos;
    struct score_state *s = ud;
    if (i + 1 >= s->n) {
        return; /* the last token's distribution predicts nothing we have */
    }
    struct pd_token_rec r;
    memset(&r, 0, sizeof r);
    pd_probe_fill(logits, s->l->lm.model->hp.n_vocab, s->tokens[i + 1], s->topk, &r);
    if (s->held) {
        s->held[i + 1] = r; /* printed with its attention summary after the pass */
    } else {
        score_line(s, i + 1, &r);
    }
}

/* Parses "1,2,3" into a malloc'd array. */
static bool parse_token_list(const char *s, int32_t **ids, size_t *n)
{
    size_t cap = 16, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    const char *p = s;
    while (v && *p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            pd_cli_fail(2, "--tokens: expected comma-separated token ids, bad item at '%s'", p);
            free(v);
            return false;
        }
        if (k == cap) {
            int32_t *nv = pd_realloc_array(v, cap * 2, sizeof *v);
            if (!nv) {
                break;
            }
            v = nv;
            cap *= 2;
        }
        v[k++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (!v) {
        pd_cli_fail(1, "out of memory");
        return false;
    }
    *ids = v;
    *n = k;
    return true;
}

/* score --engine: the text (tokenized with -m's vocabulary, else by the server) or the ids
 * teacher-forced on a remote engine, printed as the local score prints. Takes ids. */
static int score_remote(const struct model_opts *o, const struct pd_cli_engine *eng,
                        const char *text, int32_t *ids, size_t n, uint32_t topk, bool attn)
{
#if !HAVE_REMOTE
    (void)o, (void)eng, (void)text, (void)n, (void)topk, (void)attn;
    free(ids);
    return pd_cli_fail(2, "score: this ponder was built without remote engines");
#else
    struct pd_cli_vocab voc;
    memset(&voc, 0, sizeof voc);
    struct pd_remote *r = NULL;
    struct pd_token_rec *recs = NULL;
    struct pd_err err;
    pd_err_clear(&err);
    int rc = 0;
    if ((o->model && pd_cli_vocab_open(o->model, NULL, &voc, &err)) ||
        pd_cli_engine_open(eng, 2, voc.tok, &r, &err)) {
        pd_cli_print_err(&err);
        rc = 1;
        goto done;
    }
    if (text) {
        enum pd_status st;
        if (voc.tok) {
            st = pd_tok_encode(voc.tok, text, strlen(text), pd_tok_add_bos(voc.tok), true, &ids,
                               &n, &err);
        } else {
            st = pd_remote_tokenize(r, text, &ids, &n, &err);
        }
        if (st != PD_OK) {
            pd_cli_print_err(&err);
            rc = 1;
            goto done;
        }
    }
    recs = pd_calloc(n ? n : 1, sizeof *recs);
    if (!recs) {
        rc = pd_cli_fail(1, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        recs[i].pos = (int64_t)i;
        recs[i].id = ids[i];
    }
    if (pd_remote_score(r, ids, n, topk, attn, recs, &err) != PD_OK) {
        pd_cli_print_err(&err);
        rc = 1;
        goto done;
    }
    struct score_state s = {NULL, voc.tok, ids, n, topk, o->json, {0}, NULL};
    pd_buf_init(&s.out);
    if (!o->json) {
        bool est = n > 1 && (recs[1].flags & PD_TOKF_ENTROPY_EST);
        pd_buf_printf(&s.out, "# engine %s (%s, model '%s')%s\n", pd_remote_info(r)->base,
                      pd_remote_server_name(pd_remote_info(r)->server),
                      pd_remote_info(r)->model,
                      est ? "; entropy~ is estimated from the top-k, the rest of the mass "
                            "as one bucket" : "");
        pd_buf_puts(&s.out, "  pos     id    logprob surprisal  entropy  text\n");
    }
    for (size_t i = 1; i < n; i++) {
        score_line(&s, i, &recs[i]);
    }
    put_buf(&s.out, s.json);
    pd_buf_deinit(&s.out);
done:
    for (size_t i = 0; recs && i < n; i++) {
        pd_token_rec_free(&recs[i]);
    }
    free(recs);
    free(ids);
    pd_remote_close(&r);
    pd_cli_vocab_close(&voc);
    return rc;
#endif
}

int pd_cli_score(int argc, char **argv)
{
    static const char usage[] =
        "usage: ponder score -m MODEL (--text STR | --tokens 1,2,3) [--topk K]\n"
        "                    [--capture off|summary] [--json]\n"
        "       ponder score --engine URL [-m MODEL] (--text STR | --tokens ...) [...]\n"
        "                    on a remote engine; entropy is then estimated from its top-k\n"
        "                    (marked ~ / \"entropy_est\") unless the engine is ponder serve\n"
        "  --capture summary  add each token's attention summary (\"attn\": per layer, the\n"
        "                     head-mean row's top 8 [position, weight] pairs)\n"
        "       ponder score -m MODEL (--in FILE | --session ID | --all) [--db F]\n"
        "                    scores stored or imported traces in bulk (see --in --help)\n";
    if (pd_cli_score_batch_wanted(argc, argv)) {
        return pd_cli_score_in(argc, argv);
    }
    if (want_help(argc, argv, usage)) {
        return 0;
    }
    struct model_opts o;
    model_opts_init(&o);
    const char *text = NULL, *toks = NULL, *v = NULL;
    long long topk = 5;
    bool bad = false;
    enum pd_capture_level capture = PD_CAPTURE_LEVEL_OFF;
    struct pd_cli_engine eng;
    pd_cli_engine_init(&eng);
    struct pd_argv a = {argc, argv, 1, "score"};
    while (a.i < argc) {
        int er = pd_cli_engine_opt(&a, &eng);
        if (er < 0) {
            return 2;
        }
        if (er > 0) {
            continue;
        }
        int r = parse_model_opt(&a, &o);
        if (r < 0) {
            return 2;
        }
        if (r > 0) {
            continue;
        }
        if (pd_arg_match(&a, "--text", NULL, &text, &bad) ||
            pd_arg_match(&a, "--tokens", NULL, &toks, &bad)) {
            if (bad) {
                return 2;
            }
        } else if (pd_arg_match(&a, "--topk", "-k", &v, &bad)) {
            if (bad || !pd_arg_long("score", "--topk", v, 0, PD_TOPK_MAX, &topk)) {
                return 2;
            }
        } else if (pd_arg_match(&a, "--capture", NULL, &v, &bad)) {
            if (bad) {
                return 2;
            }
            capture = pd_capture_level_parse(v);
            if (capture != PD_CAPTURE_LEVEL_OFF && capture != PD_CAPTURE_LEVEL_SUMMARY) {
                return pd_cli_fail(2, "score: --capture: expected off or summary, got '%s'", v);
            }
        } else {
            return pd_cli_fail(2, "score: unknown option '%s'", argv[a.i]);
        }
    }
    if ((!o.model && !eng.url) || (!text == !toks)) {
        return pd_cli_fail(2, "score: -m MODEL (or --engine URL) and exactly one of --text or "
                              "--tokens are required");
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (toks && !parse_token_list(toks, &ids, &n)) {
        return 2;
    }
    if (eng.url) {
        return score_remote(&o, &eng, text, ids, n, (uint32_t)topk,
                            capture == PD_CAPTURE_LEVEL_SUMMARY);
    }
    struct loaded l;
    if (!load(&o, true, &l)) {
        free(ids);
        return 1;
    }
    struct pd_err err;
    pd_err_clear(&err);
    int rc = 0;
    if (text && pd_tok_encode(l.lm.tok, text, strlen(text), pd_tok_add_bos(l.lm.tok), true, &ids, &n,
                              &err)) {
        pd_cli_print_err(&err);
        rc = 1;
        goto done;
    }
    if (n > l.ctx->kv->cap) {
        rc = pd_cli_fail(1, "score: %zu tokens do not fit the context (%u); raise --ctx", n,
                         l.ctx->kv->cap);
        goto done;
    }
    struct score_state s = {&l, l.lm.tok, ids, n, (size_t)topk, o.json, {0}, NULL};
    struct pd_capture_state cs;
    bool cap = capture != PD_CAPTURE_LEVEL_OFF;
    pd_buf_init(&s.out);
    if (cap) {
        s.held = pd_calloc(n, sizeof *s.held);
        if (!s.held || pd_capture_init(&cs, l.ctx, capture, 8, 0, &err) ||
            pd_capture_begin(&cs, 0, n, &err)) {
            if (!s.held) {
                pd_err_set(&err, PD_ENOMEM, "out of memory");
            } else if (cs.mean_row) {
                pd_capture_deinit(&cs);
            }
            free(s.held);
            pd_cli_print_err(&err);
            rc = 1;
            goto done;
        }
    }
    if (!o.json) {
        pd_buf_puts(&s.out, "  pos     id    logprob surprisal  entropy  text\n");
    }
    if (pd_ctx_eval(l.ctx, ids, n, score_logits, &s, &err)) {
        pd_cli_print_err(&err);
        rc = 1;
    }
    if (cap) {
        for (size_t i = 1; i < n && rc == 0; i++) {
            s.held[i].attn = (uint8_t *)pd_capture_blob(&cs, i); /* borrowed */
            s.held[i].attn_len = cs.blob_len;
            score_line(&s, i, &s.held[i]);
        }
        free(s.held);
        pd_capture_deinit(&cs);
    }
    put_buf(&s.out, s.json);
    pd_buf_deinit(&s.out);
done:
    free(ids);
    loaded_close(&l);
    return rc;
}

/* ---- generate ------------------------------------------------------------------------ */

/* Options of the commands that run a live session (generate; run in the TUI shares them
 * through the same parser). */
struct gen_opts {
    const char *prompt;
    const char *system;
    const char *kv;
    const char *template_name;
    long long n_gen;
    long long topk;
    bool raw;
    enum pd_capture_level capture;
    uint64_t full_layers;
    enum pd_think_mode mode;
    uint32_t mode_budget;
    struct pd_sampler_params sp;
};

/* "off" | "summary" | "full" | "full:L1,L2,..." (layers captured in full). */
static bool parse_capture(const char *v, enum pd_capture_level *level, uint64_t *layers)
{
    *layers = 0;
    if (strncmp(v, "full:", 5) == 0) {
        *level = PD_CAPTURE_LEVEL_FULL;
        const char *p = v + 5;
        while (*p) {
            char *end;
            long l = strtol(p, &end, 10);
            if (end == p || l < 0 || l > 63 || (*end && *end != ',')) {
                return false;
            }
            *layers |= 1ull << l;
            p = *end ? end + 1 : end;
        }
        return *layers != 0;
    }
    *level = pd_capture_level_parse(v);
    return *level != PD_CAPTURE_LEVEL_COUNT;
}

/* ,"rows":[{"layer":L,"pos":[...],"heads":[[w,...],...]},...] for capture full. */
static void append_rows(struct pd_buf *b, const struct pd_attn_rows *rows)
{
    if (!rows) {
        return;
    }
    pd_buf_puts(b, ",\"rows\":[");
    for (uint32_t k = 0; k < rows->n_layer; k++) {
        uint32_t ns = rows->n_slots[k];
        pd_buf_printf(b, "%s{\"layer\":%u,\"pos\":[", k ? "," : "", rows->layers[k]);
        for (uint32_t s = 0; s < ns; s++) {
            pd_buf_printf(b, "%s%lld", s ? "," : "", (long long)rows->slot_pos[k][s]);
        }
        pd_buf_puts(b, "],\"heads\":[");
        for (uint32_t h = 0; h < rows->n_head; h++) {
            pd_buf_puts(b, h ? ",[" : "[");
            for (uint32_t s = 0; s < ns; s++) {
                if (s) {
                    pd_buf_puts(b, ",");
                }
                pd_json_num(b, rows->w[k][(size_t)h * ns + s]);
            }
            pd_buf_puts(b, "]");
        }
        pd_buf_puts(b, "]}");
    }
    pd_buf_puts(b, "]");
}

/* The two kinds of live generation behind one set of calls: a session running the model
 * in this process, or one streaming it from a remote engine (remote_session.h). */
struct gen_src {
    struct pd_session *local;
#if HAVE_REMOTE
    struct pd_rsession *remote;
#endif
};

static bool gen_src_wait(struct gen_src *s, struct pd_event *ev, int ms)
{
#if HAVE_REMOTE
    if (s->remote) {
        return pd_rsession_wait(s->remote, ev, ms);
    }
#endif
    return pd_session_wait(s->local, ev, ms);
}

static void gen_src_send(struct gen_src *s, const struct pd_cmd *c)
{
#if HAVE_REMOTE
    if (s->remote) {
        pd_rsession_send(s->remote, c, NULL);
        return;
    }
#endif
    pd_session_send(s->local, c, NULL);
}

static void gen_src_close(struct gen_src *s)
{
#if HAVE_REMOTE
    pd_rsession_close(&s->remote);
#endif
    pd_session_close(&s->local);
}

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

static int generate_run(const struct model_opts *opts, const struct gen_opts *gp,
                        const struct pd_cli_engine *engp, const char *db, bool record);

int pd_cli_generate(int argc, char **argv)
{
    static const char usage[] =
        "usage: ponder generate -m MODEL (-p PROMPT | -f FILE) [-n N] [--raw | --chat NAME]\n"
        "       ponder generate --engine URL [-m MODEL | --chat FAMILY | --raw] (-p PROMPT | -f FILE) ...\n"
        "                       [--system TEXT] [--greedy | --temp T [--top-k K] [--top-p P]\n"
        "                       [--min-p P] [--seed S]] [--topk K] [--mode M]\n"
        "                       [--kv POLICY[:BUDGET][,shadow]] [--capture off|summary|full[:L,..]]\n"
        "                       [--db F | --no-record] [--json]\n"
        "       ponder generate -m MODEL --in PROMPTS.jsonl [--samples K] ... (see --in --help)\n"
        "  -p, --prompt TEXT  the user message;  -f, --file FILE  read it from FILE (UTF-8)\n"
        "  --chat NAME        chat template (raw, chatml, qwen3, deepseek-r1, llama3; default\n"
        "                     from the model; --template NAME is the same)\n"
        "  --mode M           long[:MIN_THINK] | short[:BUDGET] | none\n"
        "  --kv SPEC          KV retention policy (docs/kv-policies.md), e.g. window:64,\n"
        "                     h2o:0.5,shadow\n"
        "  --capture full:L,..  also print every head's attention row of the chosen layers\n"
        "  --db F             record the session into F (default: the user database,\n"
        "                     $XDG_DATA_HOME/ponder/ponder.db), as 'ponder run' does\n"
        "  --no-record        do not record\n";
    if (pd_cli_generate_in_wanted(argc, argv)) {
        return pd_cli_generate_in(argc, argv); /* samples per prompt of a file */
    }
    if (want_help(argc, argv, usage)) {
        return 0;
    }
    struct model_opts o;
    model_opts_init(&o);
    struct gen_opts g = {NULL, NULL, NULL, NULL, 128, 5, false, PD_CAPTURE_LEVEL_SUMMARY, 0,
                         PD_MODE_LONG, 0, pd_sampler_default_params()};
    const char *v = NULL, *file = NULL, *db = NULL;
    long long ll;
    double d;
    bool bad = false, no_record = false;
    struct pd_err err;
    pd_err_clear(&err);
    struct pd_cli_engine eng;
    pd_cli_engine_init(&eng);
    struct pd_argv a = {argc, argv, 1, "generate"};
    while (a.i < argc) {
        int er = pd_cli_engine_opt(&a, &eng);
        if (er < 0) {
            return 2;
        }
        if (er > 0) {
            continue;
        }
        int r = parse_model_opt(&a, &o);
        if (r < 0) {
            return 2;
        }
        if (r > 0) {
            continue;
        }
        if (pd_arg_match(&a, "--prompt", "-p", &g.prompt, &bad) ||
            pd_arg_match(&a, "--file", "-f", &file, &bad) ||
            pd_arg_match(&a, "--system", NULL, &g.system, &bad) ||
            pd_arg_match(&a, "--db", NULL, &db, &bad)) {
        } else if (pd_arg_match(&a, "--kv", NULL, &g.kv, &bad)) {
            if (!bad && !pd_cli_check_kv("generate", g.kv)) {
                return 2;
            }
        } else if (pd_arg_match(&a, "--chat", NULL, &g.template_name, &bad) ||
                   pd_arg_match(&a, "--template", NULL, &g.template_name, &bad)) {
            if (!bad && !pd_cli_check_chat("generate", "--chat", g.template_name)) {
                return 2;
            }
        } else if (pd_arg_match(&a, "--no-record", NULL, NULL, &bad)) {
            no_record = true;
        } else if (pd_arg_match(&a, "--n-predict", "-n", &v, &bad)) {
            if (!bad && !pd_arg_long("generate", "-n", v, 0, 1 << 22, &g.n_gen)) {
                return 2;
            }
        } else if (pd_arg_match(&a, "--raw", NULL, NULL, &bad)) {
            g.raw = true;
        } else if (pd_arg_match(&a, "--greedy", NULL, NULL, &bad)) {
            g.sp.temperature = 0;
        } else if (pd_arg_match(&a, "--temp", NULL, &v, &bad)) {
            if (!bad && (!pd_arg_double("generate", "--temp", v, &d) || d < 0 || d > 100)) {
                return pd_cli_fail(2, "generate: --temp: expected a number in [0, 100]");
            }
            g.sp.temperature = (float)d;
        } else if (pd_arg_match(&a, "--top-p", NULL, &v, &bad)) {
            if (!bad && (!pd_arg_double("generate", "--top-p", v, &d) || d <= 0 || d > 1)) {
                return pd_cli_fail(2, "generate: --top-p: expected a number in (0, 1]");
            }
            g.sp.top_p = (float)d;
        } else if (pd_arg_match(&a, "--min-p", NULL, &v, &bad)) {
            if (!bad && (!pd_arg_double("generate", "--min-p", v, &d) || d < 0 || d > 1)) {
                return pd_cli_fail(2, "generate: --min-p: expected a number in [0, 1]");
            }
            g.sp.min_p = (float)d;
        } else if (pd_arg_match(&a, "--top-k", NULL, &v, &bad)) {
            if (!bad && !pd_arg_long("generate", "--top-k", v, 0, 1 << 24, &ll)) {
                return 2;
            }
            g.sp.top_k = (int32_t)ll;
        } else if (pd_arg_match(&a, "--seed", NULL, &v, &bad)) {
            if (!bad && !pd_arg_long("generate", "--seed", v, 0, INT64_MAX, &ll)) {
                return 2;
            }
            g.sp.seed = (uint64_t)ll;
        } else if (pd_arg_match(&a, "--topk", "-k", &v, &bad)) {
            if (!bad && !pd_arg_long("generate", "--topk", v, 0, PD_TOPK_MAX, &g.topk)) {
                return 2;
            }
        } else if (pd_arg_match(&a, "--capture", NULL, &v, &bad)) {
            if (!bad && !parse_capture(v, &g.capture, &g.full_layers)) {
                return pd_cli_fail(2, "generate: --capture: expected off, summary, full or "
                                      "full:L1,L2,... (layers 0..63), got '%s'",
                                   v);
            }
        } else if (pd_arg_match(&a, "--mode", NULL, &v, &bad)) {
            if (!bad && pd_think_mode_parse(v, &g.mode, &g.mode_budget, &err)) {
                return pd_cli_fail(2, "generate: --mode: %s", err.msg);
            }
        } else {
            return pd_cli_fail(2, "generate: unknown option '%s'", argv[a.i]);
        }
        if (bad) {
            return 2;
        }
    }
    if ((!o.model && !eng.url) || !g.prompt == !file) {
        return pd_cli_fail(2, "generate: -m MODEL (or --engine URL) and exactly one of "
                              "-p PROMPT or -f FILE are required");
    }
    if (eng.url && !o.model && !g.raw && !g.template_name) {
        return pd_cli_fail(2, "generate: with --engine and no -m, name the chat template "
                              "(--chat FAMILY) or use --raw");
    }
    if (eng.url && g.kv) {
        return pd_cli_fail(2, "generate: --kv needs the model in this process (a remote "
                              "engine keeps its own KV cache; ponder serve takes --kv)");
    }
    if (eng.url && db) {
        return pd_cli_fail(2, "generate: --engine does not record a generation (ponder run "
                              "--engine does); drop --db");
    }
    if (g.raw && g.template_name) {
        return pd_cli_fail(2, "generate: --raw and --chat exclude each other");
    }
    if (db && no_record) {
        return pd_cli_fail(2, "generate: --db and --no-record exclude each other");
    }
    if (g.prompt && !pd_utf8_valid(g.prompt, strlen(g.prompt))) {
        return pd_cli_fail(2, "generate: -p: the prompt is not UTF-8 text");
    }
    char *file_text = NULL;
    if (file && !(file_text = pd_cli_read_prompt(file))) {
        return 1;
    }
    if (file_text) {
        g.prompt = file_text;
    }
    /* a remote engine's generation is not recorded here (its tokens come without the
     * model's vocabulary and identity): ponder run --engine records one */
    int rc = generate_run(&o, &g, &eng, no_record ? NULL : db, !no_record && !eng.url);
    free(file_text);
    return rc;
}

/* Creates generate's session row (model, settings, conversation; source "generate") and
 * its recorder. */
static enum pd_status generate_record_open(struct pd_store *st, const struct model_opts *o,
                                           const struct gen_opts *g,
                                           const struct pd_session_params *sp,
                                           const struct loaded *l, struct pd_cli_rec **rec,
                                           struct pd_err *err)
{
    int64_t model_id = 0;
    enum pd_status rc = pd_cli_model_put_tok(st, l->lm.model, l->lm.tok, o->model, &model_id,
                                             err);
    if (rc != PD_OK) {
        return rc;
    }
    char mode_text[32], policy_text[128];
    if (sp->mode == PD_MODE_SHORT) {
        snprintf(mode_text, sizeof mode_text, "short:%u", sp->think_budget);
    } else if (sp->mode == PD_MODE_LONG && sp->min_think) {
        snprintf(mode_text, sizeof mode_text, "long:%u", sp->min_think);
    } else {
        snprintf(mode_text, sizeof mode_text, "%s", pd_think_mode_name(sp->mode));
    }
    snprintf(policy_text, sizeof policy_text, "full");
    struct pd_policy_spec ps;
    if (g->kv && (pd_policy_parse(g->kv, &ps, err) != PD_OK ||
                  pd_policy_format(&ps, policy_text, sizeof policy_text, err) != PD_OK)) {
        return err->status;
    }
    struct pd_run_settings rs = {.temperature = sp->sampling.temperature,
                                 .top_p = sp->sampling.top_p, .top_k = sp->sampling.top_k,
                                 .min_p = sp->sampling.min_p, .seed = sp->sampling.seed,
                                 .mode = mode_text, .kv_policy = policy_text,
                                 .chat_template = (char *)pd_chat_family_name(sp->chat.family)};
    struct pd_message msgs[2];
    size_t n = 0;
    if (g->system) {
        msgs[n++] = (struct pd_message){PD_STORE_MSG_SYSTEM, (char *)g->system};
    }
    msgs[n++] = (struct pd_message){PD_STORE_MSG_USER, (char *)g->prompt};
    struct pd_session_new sn = {.model_id = model_id, .settings = &rs, .messages = msgs,
                                .n_messages = n, .source = "generate"};
    return pd_cli_rec_open(st, &sn, rec, err);
}

/* Runs the session of generate (options parsed), recording it into db (NULL: the default
 * database) when record. */
static int generate_run(const struct model_opts *opts, const struct gen_opts *gp,
                        const struct pd_cli_engine *engp, const char *db, bool record)
{
    struct model_opts o = *opts;
    struct gen_opts g = *gp;
    struct pd_cli_engine eng = *engp;
    struct pd_err err;
    pd_err_clear(&err);
    struct pd_store *st = NULL;
    if (record && !(st = pd_cli_open_db(db, PD_CLI_DB_CREATE))) {
        return 1;
    }
    struct loaded l;
    memset(&l, 0, sizeof l);
    struct pd_cli_vocab voc;
    memset(&voc, 0, sizeof voc);
    const struct pd_tok *tok = NULL; /* NULL: a remote engine's own tokenizer */
    struct pd_chat_format model_chat;
    pd_chat_format_default(PD_CHAT_FAMILY_RAW, &model_chat);
    if (eng.url) {
        if (o.model && pd_cli_vocab_open(o.model, NULL, &voc, &err)) {
            pd_cli_print_err(&err);
            pd_store_close(&st);
            return 1;
        }
        tok = voc.tok;
        model_chat = voc.chat;
    } else {
        if (!load(&o, false, &l)) {
            pd_store_close(&st);
            return 1;
        }
        tok = l.lm.tok;
        model_chat = l.lm.chat;
    }
    struct pd_cli_rec *rec = NULL;
    struct pd_session_params sp = pd_session_default_params();
    sp.ctx.n_threads = o.n_threads;
    sp.ctx.kv_type = o.kv_type;
    sp.ctx.n_ctx = o.n_ctx;
    sp.ctx.backend = o.backend;
    sp.sampling = g.sp;
    sp.n_predict = (uint32_t)g.n_gen;
    sp.topk = (uint32_t)g.topk;
    sp.capture = g.capture;
    sp.full_layers = g.full_layers;
    sp.mode = g.mode;
    sp.think_budget = g.mode == PD_MODE_SHORT ? g.mode_budget : 0;
    sp.min_think = g.mode == PD_MODE_LONG ? g.mode_budget : 0;
    int rc = 0;
    struct gen_src src;
    memset(&src, 0, sizeof src);
    struct pd_steps_live *steps = NULL;
    struct pd_buf out;
    pd_buf_init(&out);
    struct pd_tok_stream ts;
    pd_tok_stream_init(&ts);
    if (g.raw) {
        pd_chat_format_default(PD_CHAT_FAMILY_RAW, &sp.chat);
    } else if (g.template_name) {
        enum pd_chat_family f;
        if (pd_chat_family_parse(g.template_name, &f, &err)) {
            rc = pd_cli_fail(2, "generate: --chat: %s", err.msg);
            goto done;
        }
        pd_chat_format_default(f, &sp.chat);
    } else {
        sp.chat = model_chat;
    }
    if (g.kv && pd_policy_create_str(g.kv, (int32_t)l.lm.model->hp.n_layer, 0, &sp.policy, &err)) {
        rc = pd_cli_fail(2, "generate: --kv: %s", err.msg);
        goto done;
    }
    if (g.capture != PD_CAPTURE_LEVEL_OFF) {
        /* Step boundaries as the text streams: step events, and each token's attention
         * mass per step in its summary. */
        if (pd_steps_live_open(NULL, &steps, &err)) {
            pd_cli_print_err(&err);
            rc = 1;
            goto done;
        }
        pd_steps_live_no_rewind(steps);
        sp.steps = pd_steps_live_iface(steps);
    }
    /* A headless generation never branches or prunes: it keeps no token history, so its
     * memory stays flat however long it runs (scripts/soak). */
    sp.no_history = true;
    if (eng.url) {
#if HAVE_REMOTE
        struct pd_remote *r = NULL;
        struct pd_rsession_params rp = pd_rsession_default_params();
        rp.sampling = sp.sampling;
        rp.n_predict = sp.n_predict;
        rp.topk = sp.topk;
        rp.chat = sp.chat;
        rp.mode = sp.mode;
        rp.think_budget = sp.think_budget;
        rp.min_think = sp.min_think;
        rp.steps = sp.steps;
        rp.attn = g.capture != PD_CAPTURE_LEVEL_OFF; /* honoured by ponder serve */
        if (pd_cli_engine_open(&eng, 0, tok, &r, &err) ||
            pd_rsession_open(r, tok, &rp, &src.remote, &err) ||
            pd_rsession_start(src.remote, g.system, g.prompt, &err)) {
            pd_cli_print_err(&err);
            rc = 1;
            goto done;
        }
#endif
    } else if (pd_session_open(l.lm.model, l.lm.tok, &sp, &src.local, &err) ||
               (st && generate_record_open(st, &o, &g, &sp, &l, &rec, &err)) ||
               pd_session_start(src.local, g.system, g.prompt, &err)) {
        pd_cli_print_err(&err);
        rc = 1;
        goto done;
    }
    long long n_prompt = 0, n_gen = 0, n_evict = 0;
    double tps = 0;
    const char *finish = "?";
    bool rec_ok = true;
    struct pd_event ev;
    /* Ctrl-C stops the generation; what came so far is printed with the summary */
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    g_interrupted = 0;
    sigaction(SIGINT, &sa, &old_sa);
    bool stop_sent = false;
    for (;;) {
        if (g_interrupted && !stop_sent) {
            struct pd_cmd stop;
            memset(&stop, 0, sizeof stop);
            stop.kind = PD_CMD_STOP;
            stop.token = -1;
            gen_src_send(&src, &stop);
            stop_sent = true;
        }
        if (!gen_src_wait(&src, &ev, 200)) {
            continue;
        }
        bool end = ev.kind == PD_EV_FINISHED || ev.kind == PD_EV_ERROR;
        if (rec && rec_ok && pd_cli_rec_push(rec, &ev, &err) != PD_OK) {
            pd_cli_print_err(&err); /* the generation goes on; the recording stops */
            rec_ok = false;
            rc = 1;
        }
        if (ev.kind == PD_EV_TOKEN) {
            const struct pd_token_rec *r = &ev.tok;
            if (r->role == PD_ROLE_PROMPT) {
                n_prompt++;
            } else {
                n_gen++;
                tps = ev.tok_per_s;
            }
            if (o.json) {
                pd_buf_printf(&out, "{\"pos\":%lld,\"role\":\"%s\",", (long long)r->pos,
                              pd_role_name(r->role));
                if (r->role == PD_ROLE_PROMPT && isnan(r->logprob)) {
                    pd_buf_printf(&out, "\"token\":%d,\"text\":", r->id);
                    pd_json_str(&out, r->text, r->text_len);
                    pd_buf_puts(&out, ",\"logprob\":null,\"entropy\":null,\"top\":[]");
                } else {
                    append_metrics(&out, r, tok, true);
                }
                append_attn(&out, r);
                append_rows(&out, ev.rows);
                pd_buf_puts(&out, "}\n");
            } else if (!tok) {
                pd_buf_append(&out, r->text ? r->text : "", r->text_len);
            } else if (!pd_tok_is_control(tok, r->id) || r->role == PD_ROLE_INJECTED) {
                pd_tok_stream_push(&ts, tok, r->id, &out, &err);
            }
        } else if (ev.kind == PD_EV_EVICT) {
            n_evict++;
            if (o.json) {
                pd_buf_printf(&out,
                              "{\"event\":\"evict\",\"at\":%lld,\"layer\":%d,\"slot_pos\":%lld,"
                              "\"shadow\":%s}\n",
                              (long long)ev.kv.at_pos, ev.kv.layer, (long long)ev.kv.slot_pos,
                              ev.kv.kind == PD_KV_SHADOW_EVICT ? "true" : "false");
            }
        } else if (ev.kind == PD_EV_STEP && o.json) {
            pd_buf_printf(&out, "{\"event\":\"step\",\"pos\":%lld}\n", (long long)ev.pos);
        } else if (ev.kind == PD_EV_MODE && o.json) {
            pd_buf_printf(&out, "{\"event\":\"mode\",\"pos\":%lld,\"text\":", (long long)ev.pos);
            pd_json_str(&out, ev.text, strlen(ev.text));
            pd_buf_puts(&out, "}\n");
        } else if (ev.kind == PD_EV_ERROR) {
            pd_cli_fail(1, "generate: %s", ev.text);
            rc = 1;
            finish = "error";
        } else if (ev.kind == PD_EV_FINISHED) {
            finish = pd_cli_stop_name(ev.text);
        }
        pd_event_free(&ev);
        put_buf(&out, o.json);
        fflush(stdout);
        if (end) {
            break;
        }
    }
    sigaction(SIGINT, &old_sa, NULL);
    int64_t sid = rec ? pd_cli_rec_session(rec) : 0;
    if (rec) {
        bool normal = strcmp(finish, "eog") == 0 || strcmp(finish, "length") == 0;
        if (pd_cli_rec_close(&rec, normal && rec_ok && rc == 0, &err) != PD_OK) {
            pd_cli_print_err(&err);
            rc = 1;
        }
    }
    if (o.json) {
        pd_buf_printf(&out,
                      "{\"summary\":{\"n_prompt\":%lld,\"n_gen\":%lld,\"stop\":\"%s\","
                      "\"decode_tok_s\":%.1f,\"evictions\":%lld",
                      n_prompt, n_gen, finish, tps, n_evict);
#if HAVE_REMOTE
        if (src.remote) {
            const struct pd_remote_info *info = pd_rsession_info(src.remote);
            pd_buf_printf(&out, ",\"engine\":{\"url\":");
            pd_json_str(&out, info->base, strlen(info->base));
            pd_buf_printf(&out, ",\"server\":\"%s\",\"model\":",
                          pd_remote_server_name(info->server));
            pd_json_str(&out, info->model, strlen(info->model));
            pd_buf_puts(&out, "},\"entropy\":\"estimated from the top-k unless the engine is "
                              "ponder serve\"");
        }
#endif
        pd_buf_printf(&out, sid ? ",\"session\":%lld}}\n" : ",\"session\":null}}\n",
                      (long long)sid);
    } else {
        if (tok) {
            pd_tok_stream_flush(&ts, &out, &err);
        }
        pd_buf_puts(&out, "\n");
    }
    put_buf(&out, o.json);
    if (sid && !o.json) {
        fprintf(stderr, "recorded session %lld in %s\n", (long long)sid, pd_store_path(st));
    }
    if (g_interrupted) {
        rc = rc ? rc : 130;
    }
done:
    if (rec) {
        struct pd_err e2;
        pd_cli_rec_close(&rec, false, &e2); /* what was committed stays, unfinished */
    }
    pd_store_close(&st);
    gen_src_close(&src);
    pd_steps_live_close(&steps);
    pd_tok_stream_deinit(&ts);
    pd_buf_deinit(&out);
    loaded_close(&l);
    pd_cli_vocab_close(&voc);
    return rc;
}

/* ---- bench --------------------------------------------------------------------------- */

/* Decode tokens per second of a live session (greedy, capture off) over the prompt ids with
 * the KV policy spec (NULL: full cache): generated tokens after the first, over the time
 * from the first to the last. 0 with a message on failure. */
static double session_decode_rate(const struct loaded *l, const struct model_opts *o,
                                  const int32_t *ids, size_t n_prompt, long long n_gen,
                                  const char *spec, long long *n_out, struct pd_err *err)
{
    struct pd_session_params sp = pd_session_default_params();
    sp.ctx.n_threads = o->n_threads;
    sp.ctx.kv_type = o->kv_type;
    sp.ctx.n_ctx = o->n_ctx;
    sp.ctx.backend = o->backend;
    sp.capture = PD_CAPTURE_LEVEL_OFF;
    sp.n_predict = (uint32_t)n_gen;
    sp.sampling.temperature = 0.0f;
    if (spec && pd_policy_create_str(spec, (int32_t)l->lm.model->hp.n_layer, o->n_ctx,
                                     &sp.policy, err)) {
        return 0.0;
    }
    struct pd_session *s = NULL;
    if (pd_session_open(l->lm.model, l->lm.tok, &sp, &s, err) ||
        pd_session_start_tokens(s, ids, n_prompt, err)) {
        pd_session_close(&s);
        return 0.0;
    }
    double t_first = 0, t_last = 0;
    long long n = 0;
    for (;;) {
        struct pd_event ev;
        if (!pd_session_wait(s, &ev, 1000)) {
            continue;
        }
        bool end = ev.kind == PD_EV_FINISHED || ev.kind == PD_EV_ERROR;
        if (ev.kind == PD_EV_TOKEN && ev.tok.role != PD_ROLE_PROMPT) {
            t_last = now_s();
            t_first = n++ == 0 ? t_last : t_first;
        } else if (ev.kind == PD_EV_ERROR) {
            pd_err_set(err, PD_EINVAL, "bench: %s", ev.text);
            n = 0;
        }
        pd_event_free(&ev);
        if (end) {
            break;
        }
    }
    pd_session_close(&s);
    *n_out = n;
    return n > 1 && t_last > t_first ? (double)(n - 1) / (t_last - t_first) : 0.0;
}

/* Sum over the weight matrices (pd_model_matmul) of rows times their elements (`bytes`
 * false) or their bytes (true). */
static double weights_sum(const struct pd_model *m, bool bytes)
{
    double sum = 0.0;
    for (size_t i = 0; i < pd_model_n_matmul(m); i++) {
        const struct pd_weight *w = pd_model_matmul(m, i);
        sum += (double)w->rows * (double)(bytes ? w->row_bytes : w->cols);
    }
    return sum;
}

/* Sum of the weight matrices' elements (FLOPs per token / 2 of a dense pass). */
static double matmul_params(const struct pd_model *m)
{
    return weights_sum(m, false);
}

/* Bytes a CPU decode token reads: every weight matrix once, and the key and value rows of
 * `slots` cached positions in every layer. */
static double cpu_token_bytes(const struct pd_model *m, enum pd_kv_type kv, double slots)
{
    double n = weights_sum(m, true);
    const struct pd_hparams *hp = &m->hp;
    double slot = (double)hp->n_layer * hp->n_head_kv * (hp->head_dim + hp->head_dim_v) *
                  (kv == PD_KV_F32 ? 4.0 : 2.0);
    return n + slot * slots;
}

/* ---- read bandwidth: the pool's threads summing a buffer far larger than the caches */

#define BW_BYTES ((size_t)512 << 20)
#define BW_BLOCK ((size_t)64 << 10)

struct bw_job {
    const uint8_t *buf;
    _Atomic size_t found; /* keeps the scans from being optimised away */
};

/* The C library's memchr streams at the full width of the machine's vector loads; the
 * buffer holds no 0xFF byte, so every block is read to its end. */
static void bw_blocks(void *ctx, size_t b0, size_t b1)
{
    struct bw_job *j = ctx;
    const void *hit = memchr(j->buf + b0 * BW_BLOCK, 0xFF, (b1 - b0) * BW_BLOCK);
    atomic_fetch_add(&j->found, hit != NULL);
}

/* The best of 5 passes over a 512 MiB buffer, in bytes per second, with the pool's
 * threads; 0 when the buffer cannot be allocated. */
static double cpu_read_bandwidth(struct pd_pool *pool)
{
    struct bw_job j = {pd_malloc_array(BW_BYTES, 1), 0};
    if (!j.buf) {
        return 0.0;
    }
    memset((void *)j.buf, 1, BW_BYTES);
    double best = 0.0;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = now_s();
        pd_pool_run(pool, BW_BYTES / BW_BLOCK, 1, bw_blocks, &j);
        double r = (double)BW_BYTES / (now_s() - t0);
        best = r > best ? r : best;
    }
    free((void *)j.buf);
    return best;
}

/* One line per capture level: its rate and, when the first level is off, its time
 * cost against it. */
static void put_level_rates(struct pd_buf *b, const char *what, long long n,
                            const enum pd_capture_level *levels, int n_levels,
                            const double *rate)
{
    for (int li = 0; li < n_levels; li++) {
        pd_buf_printf(b, "%-12s %lld tokens, capture %-7s: %.1f tok/s", what, n,
                      pd_capture_level_name(levels[li]), rate[li]);
        if (li > 0 && levels[0] == PD_CAPTURE_LEVEL_OFF && rate[li] > 0) {
            pd_buf_printf(b, " (%+.1f%% time vs off)", (rate[0] / rate[li] - 1.0) * 100.0);
        }
        pd_buf_puts(b, "\n");
    }
}

int pd_cli_bench(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--engine") == 0 || strncmp(argv[i], "--engine=", 9) == 0) {
            return pd_cli_bench_remote(argc, argv);
        }
    }
    static const char usage[] =
        "usage: ponder bench -m MODEL [-p N_PROMPT] [-n N_GEN] [-r REPEATS]\n"
        "                    [--capture off,summary,full] [--policy SPEC] [--bandwidth]\n"
        "                    [--json]\n"
        "Measures prefill and decode speed under each attention capture level (the levels\n"
        "are interleaved within each repeat and the best run of each is kept) and their\n"
        "cost against the first level. An untimed pass (the prompt and one token) runs\n"
        "first.\n"
        "--bandwidth (CPU) also measures the memory read bandwidth with the same threads\n"
        "(a 512 MiB buffer, after the runs) and the fraction of it the decode reaches.\n"
        "--policy also times live sessions (greedy, capture off) with and without that KV\n"
        "policy. With --backend cuda: the device, its measured bandwidth and f16 GEMM\n"
        "throughput, bytes read per decode token, the fraction of the bandwidth roofline\n"
        "reached, graph nodes (kernels and copies) per token, and prefill FLOP/s against the\n"
        "GEMM's.\n";
    if (want_help(argc, argv, usage)) {
        return 0;
    }
    struct model_opts o;
    model_opts_init(&o);
    long long n_prompt = 128, n_gen = 64, reps = 3;
    const char *v = NULL, *levels_arg = "off,summary,full", *policy = NULL;
    bool bad = false, bandwidth = false;
    struct pd_argv a = {argc, argv, 1, "bench"};
    while (a.i < argc) {
        int r = parse_model_opt(&a, &o);
        if (r < 0) {
            return 2;
        }
        if (r > 0) {
            continue;
        }
        if (pd_arg_match(&a, "--n-prompt", "-p", &v, &bad)) {
            if (bad || !pd_arg_long("bench", "-p", v, 1, 1 << 20, &n_prompt)) {
                return 2;
            }
        } else if (pd_arg_match(&a, "--n-gen", "-n", &v, &bad)) {
            if (bad || !pd_arg_long("bench", "-n", v, 1, 1 << 20, &n_gen)) {
                return 2;
            }
        } else if (pd_arg_match(&a, "--repeats", "-r", &v, &bad)) {
            if (bad || !pd_arg_long("bench", "-r", v, 1, 1000, &reps)) {
                return 2;
            }
        } else if (pd_arg_match(&a, "--capture", NULL, &levels_arg, &bad)) {
            if (bad) {
                return 2;
            }
        } else if (pd_arg_match(&a, "--policy", NULL, &policy, &bad)) {
            if (bad) {
                return 2;
            }
        } else if (strcmp(argv[a.i], "--bandwidth") == 0) {
            bandwidth = true;
            a.i++;
        } else {
            return pd_cli_fail(2, "bench: unknown option '%s'", argv[a.i]);
        }
    }
    if (!o.model) {
        return pd_cli_fail(2, "bench: -m MODEL is required");
    }
    enum pd_capture_level levels[PD_CAPTURE_LEVEL_COUNT];
    int n_levels = 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", levels_arg);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        enum pd_capture_level l = pd_capture_level_parse(t);
        if (l == PD_CAPTURE_LEVEL_COUNT || n_levels == PD_CAPTURE_LEVEL_COUNT) {
            return pd_cli_fail(2, "bench: --capture: expected a list of off, summary, full");
        }
        levels[n_levels++] = l;
    }
    if (n_levels == 0) {
        return pd_cli_fail(2, "bench: --capture: empty list");
    }
    if (o.n_ctx == 0) {
        o.n_ctx = (uint32_t)(n_prompt + n_gen);
    }
    struct loaded l;
    if (!load(&o, true, &l)) {
        return 1;
    }
    if ((uint64_t)(n_prompt + n_gen) > l.ctx->kv->cap) {
        loaded_close(&l);
        return pd_cli_fail(1, "bench: -p + -n exceed the context; raise --ctx");
    }
    int32_t *ids = pd_malloc_array((size_t)n_prompt, sizeof *ids);
    if (!ids) {
        loaded_close(&l);
        return pd_cli_fail(1, "out of memory");
    }
    for (long long i = 0; i < n_prompt; i++) {
        ids[i] = (int32_t)((i * 7919 + 13) % l.lm.model->hp.n_vocab);
    }
    struct pd_err err;
    double best_pp[PD_CAPTURE_LEVEL_COUNT] = {0}, best_tg[PD_CAPTURE_LEVEL_COUNT] = {0};
    int rc = 0;
    l.ctx->logits_lazy = true; /* greedy through pd_ctx_argmax: a device keeps its logits */
    /* one untimed pass first (the prompt and one decode token, capture off), as llama-bench
     * warms up: the first pass pays the page faults of the mapped weights and of the cache
     * and scratch buffers, which no later pass repeats */
    {
        pd_ctx_reset(l.ctx);
        l.ctx->attn_hook = NULL;
        enum pd_status st = pd_ctx_eval(l.ctx, ids, (size_t)n_prompt, NULL, NULL, &err);
        if (st == PD_OK) {
            int32_t id = pd_ctx_argmax(l.ctx);
            st = pd_ctx_eval(l.ctx, &id, 1, NULL, NULL, &err);
        }
        if (st != PD_OK) {
            pd_cli_print_err(&err);
            rc = 1;
        }
    }
    for (long long rep = 0; rep < reps && rc == 0; rep++) {
        for (int li = 0; li < n_levels && rc == 0; li++) {
            struct pd_capture_state cs;
            bool cap = levels[li] != PD_CAPTURE_LEVEL_OFF;
            pd_ctx_reset(l.ctx);
            l.ctx->attn_hook = NULL;
            if (cap && pd_capture_init(&cs, l.ctx, levels[li], 8, 0, &err)) {
                pd_cli_print_err(&err);
                rc = 1;
                break;
            }
            double t0 = now_s();
            if ((cap && pd_capture_begin(&cs, 0, (size_t)n_prompt, &err)) ||
                pd_ctx_eval(l.ctx, ids, (size_t)n_prompt, NULL, NULL, &err)) {
                pd_cli_print_err(&err);
                rc = 1;
            }
            double t1 = now_s();
            for (long long k = 0; k < n_gen && rc == 0; k++) {
                int32_t id = pd_ctx_argmax(l.ctx);
                if ((cap && pd_capture_begin(&cs, l.ctx->n_past, 1, &err)) ||
                    pd_ctx_eval(l.ctx, &id, 1, NULL, NULL, &err)) {
                    pd_cli_print_err(&err);
                    rc = 1;
                }
            }
            double t2 = now_s();
            if (cap) {
                pd_capture_deinit(&cs);
            }
            l.ctx->attn_hook = NULL;
            double pp = n_prompt / (t1 - t0), tg = n_gen / (t2 - t1);
            best_pp[li] = pp > best_pp[li] ? pp : best_pp[li];
            best_tg[li] = tg > best_tg[li] ? tg : best_tg[li];
        }
    }
    /* the device: roofline and GEMM reference */
    struct pd_backend_info gi;
    double bytes_tok = 0, roof = 0, pf_flops = 0;
    if (rc == 0 && l.ctx->backend) {
        l.ctx->backend->ops->info(l.ctx->backend, &gi);
        double slots = (double)n_prompt + (double)n_gen / 2.0;
        bytes_tok = (double)gi.plan.token_bytes_weights +
                    (double)gi.plan.token_bytes_per_slot * slots;
        roof = gi.bandwidth > 0 ? gi.bandwidth / bytes_tok : 0;
        pf_flops = 2.0 * matmul_params(l.lm.model) * best_pp[0];
    }
    /* live sessions with and without the policy */
    double pol_none = 0, pol_with = 0;
    long long pol_n = 0;
    for (long long rep = 0; policy && rep < reps && rc == 0; rep++) {
        long long n1 = 0, n2 = 0;
        double r1 = session_decode_rate(&l, &o, ids, (size_t)n_prompt, n_gen, NULL, &n1, &err);
        double r2 = r1 > 0 ? session_decode_rate(&l, &o, ids, (size_t)n_prompt, n_gen, policy, &n2,
                                                 &err)
                           : 0;
        if (r1 <= 0 || r2 <= 0) {
            pd_cli_print_err(&err);
            rc = 1;
            break;
        }
        pol_none = r1 > pol_none ? r1 : pol_none;
        pol_with = r2 > pol_with ? r2 : pol_with;
        pol_n = n2;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru); /* before the bandwidth buffer */
    /* the CPU decode's memory roofline */
    double cpu_bw = 0, cpu_bytes = 0, cpu_roof = 0;
    if (rc == 0 && bandwidth && !l.ctx->backend) {
        cpu_bw = cpu_read_bandwidth(l.ctx->pool);
        if (cpu_bw <= 0) {
            rc = pd_cli_fail(1, "bench: --bandwidth: out of memory for the 512 MiB buffer");
        }
        cpu_bytes = cpu_token_bytes(l.lm.model, o.kv_type,
                                    (double)n_prompt + (double)n_gen / 2.0);
        cpu_roof = cpu_bw / cpu_bytes;
    }
    if (rc == 0) {
        struct pd_buf b;
        pd_buf_init(&b);
        if (o.json) {
            pd_buf_puts(&b, "{\"model\":");
            pd_json_str(&b, o.model, strlen(o.model));
            pd_buf_printf(&b,
                          ",\"threads\":%d,\"cpu_kernels\":\"%s\",\"cpu_prefetch\":\"%s\","
                          "\"backend\":\"%s\",\"kv_type\":\"%s\","
                          "\"n_prompt\":%lld,\"n_gen\":%lld,\"repeats\":%lld,"
                          "\"prefill_tok_s\":%.2f,\"decode_tok_s\":{",
                          pd_pool_threads(l.ctx->pool), pd_cpu_simd_name(pd_cpu_simd_level()),
                          pd_cpu_prefetch_l2() ? "l2" : "l1",
                          l.ctx->backend ? "cuda" : "cpu", pd_kv_type_name(o.kv_type), n_prompt,
                          n_gen, reps, best_pp[0]);
            for (int li = 0; li < n_levels; li++) {
                pd_buf_printf(&b, "%s\"%s\":%.2f", li ? "," : "",
                              pd_capture_level_name(levels[li]), best_tg[li]);
            }
            pd_buf_puts(&b, "},\"prefill_by_capture_tok_s\":{");
            for (int li = 0; li < n_levels; li++) {
                pd_buf_printf(&b, "%s\"%s\":%.2f", li ? "," : "",
                              pd_capture_level_name(levels[li]), best_pp[li]);
            }
            pd_buf_puts(&b, "}");
            if (l.ctx->backend) {
                pd_buf_printf(&b, ",\"gpu\":{\"device\":");
                pd_json_str(&b, gi.device, strlen(gi.device));
                pd_buf_printf(&b, ",\"provider\":\"%s\",\"cc\":\"%d.%d\",\"bandwidth_gbs\":%.1f,"
                                  "\"bytes_per_token\":%.0f,\"roofline_tok_s\":%.2f,"
                                  "\"roofline_fraction\":%.4f,\"graph_nodes_per_token\":%llu,"
                                  "\"gemm_f16_tflops\":%.3f,\"prefill_tflops\":%.3f,"
                                  "\"prefill_fraction_of_gemm\":%.4f,\"prefill_chunk_tokens\":%llu,"
                                  "\"compactions\":%llu}",
                              gi.provider, gi.cc_major, gi.cc_minor, gi.bandwidth / 1e9, bytes_tok,
                              roof, roof > 0 ? best_tg[0] / roof : 0.0,
                              (unsigned long long)gi.kernels_per_token, gi.gemm_flops / 1e12,
                              pf_flops / 1e12, gi.gemm_flops > 0 ? pf_flops / gi.gemm_flops : 0.0,
                              (unsigned long long)gi.prefill_tokens,
                              (unsigned long long)gi.compactions);
            }
            if (cpu_bw > 0) {
                pd_buf_printf(&b, ",\"cpu_memory\":{\"read_gbs\":%.2f,\"bytes_per_token\":%.0f,"
                                  "\"roofline_tok_s\":%.2f,\"roofline_fraction\":%.4f}",
                              cpu_bw / 1e9, cpu_bytes, cpu_roof, best_tg[0] / cpu_roof);
            }
            if (policy) {
                pd_buf_printf(&b, ",\"policy\":{\"spec\":");
                pd_json_str(&b, policy, strlen(policy));
                pd_buf_printf(&b, ",\"session_decode_tok_s_full\":%.2f,"
                                  "\"session_decode_tok_s\":%.2f,\"time_overhead_pct\":%.2f,"
                                  "\"tokens\":%lld}",
                              pol_none, pol_with, (pol_none / pol_with - 1.0) * 100.0, pol_n);
            }
            pd_buf_printf(&b, ",\"peak_rss_kib\":%ld}\n", ru.ru_maxrss);
        } else {
            pd_buf_printf(&b, "model        %s\n", o.model);
            pd_buf_printf(&b, "threads      %d, %s kernels, %s backend, kv cache %s, best of "
                              "%lld runs\n",
                          pd_pool_threads(l.ctx->pool), pd_cpu_simd_name(pd_cpu_simd_level()),
                          l.ctx->backend ? "cuda" : "cpu", pd_kv_type_name(o.kv_type), reps);
            put_level_rates(&b, "prefill", n_prompt, levels, n_levels, best_pp);
            put_level_rates(&b, "decode", n_gen, levels, n_levels, best_tg);
            if (l.ctx->backend) {
                pd_buf_printf(&b, "device       %s (%s, compute %d.%d), %.1f GB/s measured\n",
                              gi.device, gi.provider, gi.cc_major, gi.cc_minor,
                              gi.bandwidth / 1e9);
                pd_buf_printf(&b, "roofline     %.3f GB per decode token (%.0f cached slots on "
                                  "average): %.1f tok/s; capture %s reaches %.1f%%, %llu graph "
                                  "nodes per token\n",
                              bytes_tok / 1e9, (double)n_prompt + (double)n_gen / 2.0, roof,
                              pd_capture_level_name(levels[0]),
                              roof > 0 ? 100.0 * best_tg[0] / roof : 0.0,
                              (unsigned long long)gi.kernels_per_token);
                pd_buf_printf(&b, "prefill      %.2f TFLOP/s = %.1f%% of f16 GEMM on the model's "
                                  "shapes (%.2f TFLOP/s)\n",
                              pf_flops / 1e12,
                              gi.gemm_flops > 0 ? 100.0 * pf_flops / gi.gemm_flops : 0.0,
                              gi.gemm_flops / 1e12);
            }
            if (cpu_bw > 0) {
                pd_buf_printf(&b, "memory       %.1f GB/s read with %d threads; %.3f GB per "
                                  "decode token (%.0f cached slots on average): %.1f tok/s; "
                                  "capture %s reaches %.1f%%\n",
                              cpu_bw / 1e9, pd_pool_threads(l.ctx->pool), cpu_bytes / 1e9,
                              (double)n_prompt + (double)n_gen / 2.0, cpu_roof,
                              pd_capture_level_name(levels[0]), 100.0 * best_tg[0] / cpu_roof);
            }
            if (policy) {
                pd_buf_printf(&b, "policy       %s: live decode %.1f tok/s vs %.1f with the full "
                                  "cache (%+.1f%% time, %lld tokens)\n",
                              policy, pol_with, pol_none, (pol_none / pol_with - 1.0) * 100.0,
                              pol_n);
            }
            pd_buf_printf(&b, "peak RSS     %.1f MiB\n", ru.ru_maxrss / 1024.0);
        }
        put_buf(&b, o.json);
        pd_buf_deinit(&b);
    }
    free(ids);
    loaded_close(&l);
    return rc;
}
