/* cli_remote.c - remote engines on the command line (cli_remote.h): the --engine options,
 * the local vocabulary, the scorer over a client, the store identity of a remote model,
 * `ponder serve` and `ponder bench --engine`. */
#include "cli_remote.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonw.h"
#include "mem.h"
#include "sha256.h"
#include "lm.h"
#include "policies.h"
#include "probe.h"
#include "session.h"
#if HAVE_REMOTE
#include "remote_serve.h"
#include "remote_session.h"
#endif

/* ---- options ------------------------------------------------------------------------------ */

void pd_cli_engine_init(struct pd_cli_engine *e)
{
    memset(e, 0, sizeof *e);
    e->timeout_s = 120;
}

bool pd_cli_remote_built(void)
{
    return HAVE_REMOTE;
}

const char pd_cli_engine_help[] =
    "  --engine URL       run on a remote engine (vLLM, SGLang, llama-server, ponder serve)\n"
    "                     through its OpenAI-compatible API (docs/remote.md); -m then only\n"
    "                     gives the vocabulary and chat template\n"
    "  --api-key K        the engine's API key (default $PONDER_API_KEY)\n"
    "  --remote-model N   the served model to use (default: the server's first)\n"
    "  --server KIND      ponder, vllm, sglang, llama.cpp or openai (default: detected)\n"
    "  --timeout S        a request the engine leaves silent for S seconds fails (120)\n";

int pd_cli_engine_opt(struct pd_argv *a, struct pd_cli_engine *e)
{
    const char *v = NULL;
    bool bad = false;
    if (pd_arg_match(a, "--engine", NULL, &v, &bad)) {
        e->url = v;
    } else if (pd_arg_match(a, "--api-key", NULL, &v, &bad)) {
        e->api_key = v;
    } else if (pd_arg_match(a, "--remote-model", NULL, &v, &bad)) {
        e->model = v;
    } else if (pd_arg_match(a, "--server", NULL, &v, &bad)) {
        e->server = v;
    } else if (pd_arg_match(a, "--timeout", NULL, &v, &bad)) {
        if (!bad) {
            long long n;
            if (!pd_arg_long(a->cmd, "--timeout", v, 1, 86400, &n)) {
                return -1;
            }
            e->timeout_s = (long)n;
        }
    } else {
        return 0;
    }
    if (!bad && !HAVE_REMOTE) {
        pd_cli_fail(2, "%s: this ponder was built without remote engines (-Dremote=disabled; "
                       "install libcurl and libmicrohttpd and rebuild)", a->cmd);
        return -1;
    }
    return bad ? -1 : 1;
}

/* ---- the local vocabulary ----------------------------------------------------------------- */

enum pd_status pd_cli_vocab_open(const char *path, const char *chat_family,
                                 struct pd_cli_vocab *v, struct pd_err *err)
{
    memset(v, 0, sizeof *v);
    enum pd_status st = pd_gguf_open(path, &v->gguf, err);
    if (st == PD_OK) {
        st = pd_tok_open_gguf(v->gguf, &v->tok, err);
    }
    if (st == PD_OK) {
        if (chat_family) {
            enum pd_chat_family f;
            st = pd_chat_family_parse(chat_family, &f, err);
            if (st == PD_OK) {
                pd_chat_format_default(f, &v->chat);
            }
        } else {
            st = pd_chat_detect(v->gguf, &v->chat, err);
        }
    }
    if (st != PD_OK) {
        pd_cli_vocab_close(v);
    }
    return st;
}

void pd_cli_vocab_close(struct pd_cli_vocab *v)
{
    pd_tok_close(&v->tok);
    pd_gguf_close(&v->gguf);
    memset(v, 0, sizeof *v);
}

#if HAVE_REMOTE

/* ---- clients ------------------------------------------------------------------------------ */

enum pd_status pd_cli_engine_open(const struct pd_cli_engine *e, uint32_t retries,
                                  const struct pd_tok *tok, struct pd_remote **out,
                                  struct pd_err *err)
{
    *out = NULL;
    struct pd_remote_params p = pd_remote_default_params();
    p.url = e->url;
    p.api_key = e->api_key;
    if (!p.api_key) {
        const char *env = getenv("PONDER_API_KEY");
        p.api_key = env && *env ? env : NULL;
    }
    p.model = e->model;
    p.idle_timeout_ms = e->timeout_s * 1000;
    p.timeout_ms = e->timeout_s * 1000 * 5;
    p.retries = retries;
    if (e->server) {
        enum pd_status st = pd_remote_server_parse(e->server, &p.server, err);
        if (st != PD_OK) {
            return pd_err_prefix(err, "--server");
        }
    }
    struct pd_remote *r = NULL;
    enum pd_status st = pd_remote_open(&p, &r, err);
    if (st == PD_OK && tok) {
        bool checked = false;
        st = pd_remote_check_tokenizer(r, tok, &checked, err);
    }
    if (st != PD_OK) {
        pd_remote_close(&r);
        return st;
    }
    *out = r;
    return PD_OK;
}

static enum pd_status eng_teacher(void *ud, const int32_t *ids, size_t n, uint32_t topk,
                                  bool attn, struct pd_token_rec *out, struct pd_err *err)
{
    return pd_remote_score(ud, ids, n, topk, attn, out, err);
}

static enum pd_status eng_greedy(void *ud, const int32_t *ids, size_t n, uint32_t n_max,
                                 int32_t *out, size_t *n_out, struct pd_err *err)
{
    return pd_remote_greedy(ud, ids, n, n_max, out, n_out, err);
}

struct pd_score_engine pd_cli_score_engine(struct pd_remote *r, uint32_t n_vocab)
{
    struct pd_score_engine e = {eng_teacher, eng_greedy, r, pd_remote_info(r)->max_model_len,
                                n_vocab};
    return e;
}

enum pd_status pd_cli_remote_model_put(struct pd_store *st, const struct pd_remote_info *info,
                                       int64_t *id, struct pd_err *err)
{
    char name[1024], key[1024], sha[65], arch[64];
    snprintf(name, sizeof name, "%s@%s", info->model, info->base);
    int n = snprintf(key, sizeof key, "remote\n%s\n%s", info->base, info->model);
    pd_sha256_hex(key, (size_t)(n < (int)sizeof key ? n : (int)sizeof key - 1), sha);
    snprintf(arch, sizeof arch, "remote:%s", pd_remote_server_name(info->server));
    struct pd_model_ident mi = {name, 0, sha, arch};
    return pd_store_model_put(st, &mi, id, err);
}

void pd_cli_remote_meta(const struct pd_remote_info *info, char *out, size_t cap)
{
    struct pd_buf b;
    pd_buf_init(&b);
    const char *server = pd_remote_server_name(info->server);
    bool ok = pd_buf_puts(&b, "{\"engine\":{\"url\":") &&
              pd_json_str(&b, info->base, strlen(info->base)) &&
              pd_buf_puts(&b, ",\"server\":") && pd_json_str(&b, server, strlen(server)) &&
              pd_buf_puts(&b, ",\"model\":") && pd_json_str(&b, info->model, strlen(info->model)) &&
              pd_buf_puts(&b, "}}");
    snprintf(out, cap, "%s", ok && b.data && b.len < cap ? b.data : "{}");
    pd_buf_deinit(&b);
}

/* ---- serve -------------------------------------------------------------------------------- */

/* A KV policy per generation from the --kv spec (analysis/policies.h). */
struct policy_factory {
    const char *spec;
    int32_t n_layer;
    uint32_t n_ctx;
};

static struct pd_kv_policy *make_policy(void *ud)
{
    const struct policy_factory *f = ud;
    struct pd_kv_policy *p = NULL;
    struct pd_err err;
    if (pd_policy_create_str(f->spec, f->n_layer, f->n_ctx, &p, &err) != PD_OK) {
        return NULL; /* checked when the server started */
    }
    return p;
}

static bool loopback(const char *host)
{
    return strcmp(host, "127.0.0.1") == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0;
}
#endif /* HAVE_REMOTE */

int pd_cli_serve(int argc, char **argv)
{
    static const char usage[] =
        "usage: ponder serve -m MODEL [--host ADDR] [--port N] [--api-key K] [--name NAME]\n"
        "                    [--queue N] [--max-body BYTES] [--kv POLICY] [--chat FAMILY]\n"
        "                    [-t N] [-c N] [--kv-type f16|f32] [--backend cpu|cuda]\n"
        "                    [--port-file F] [--throttle MS]\n"
        "Serves the model over the OpenAI-compatible API ponder's --engine uses (and vLLM's\n"
        "clients speak): /v1/completions (streaming, logprobs, echo, prompt logprobs),\n"
        "/v1/chat/completions, /v1/models, /tokenize, /detokenize, /health, with a `ponder`\n"
        "field per token (exact entropy, attention summary, KV events). docs/remote.md.\n"
        "  --host ADDR        address to listen on (default 127.0.0.1: this machine only)\n"
        "  --port N           port (default 8080; 0: any free port, printed)\n"
        "  --api-key K        require \"Authorization: Bearer K\" (default $PONDER_API_KEY)\n"
        "  --name NAME        the model's name in /v1/models (default: the file name)\n"
        "  --queue N          requests that may wait behind the running one (default 8);\n"
        "                     more get 429\n"
        "  --max-body BYTES   largest request body (default 8 MiB); larger get 413\n"
        "  --kv POLICY        a KV retention policy for every generation (docs/kv-policies.md)\n"
        "  --chat FAMILY      template of /v1/chat/completions (default: from the model)\n"
        "  --port-file F      write the port there once listening (scripts, tests)\n"
        "  --throttle MS      pause between streamed tokens (demos, tests)\n";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
    }
#if !HAVE_REMOTE
    return pd_cli_fail(2, "serve: this ponder was built without remote engines "
                          "(-Dremote=disabled; install libcurl and libmicrohttpd and rebuild)");
#else
    const char *model = NULL, *v = NULL, *kv = NULL, *chat = NULL, *port_file = NULL;
    struct pd_serve_params sp = pd_serve_default_params();
    long long n;
    bool bad = false;
    struct pd_argv a = {argc, argv, 1, "serve"};
    while (a.i < argc && !bad) {
        if (pd_arg_match(&a, "--model", "-m", &model, &bad) ||
            pd_arg_match(&a, "--host", NULL, &sp.host, &bad) ||
            pd_arg_match(&a, "--api-key", NULL, &sp.api_key, &bad) ||
            pd_arg_match(&a, "--name", NULL, &sp.model_name, &bad) ||
            pd_arg_match(&a, "--kv", NULL, &kv, &bad) ||
            pd_arg_match(&a, "--chat", NULL, &chat, &bad) ||
            pd_arg_match(&a, "--port-file", NULL, &port_file, &bad)) {
            continue;
        }
        if (pd_arg_match(&a, "--port", NULL, &v, &bad)) {
            bad = bad || !pd_arg_long("serve", "--port", v, 0, 65535, &n);
            sp.port = (uint16_t)n;
        } else if (pd_arg_match(&a, "--queue", NULL, &v, &bad)) {
            bad = bad || !pd_arg_long("serve", "--queue", v, 0, 4096, &n);
            sp.queue_max = (uint32_t)n;
        } else if (pd_arg_match(&a, "--max-body", NULL, &v, &bad)) {
            bad = bad || !pd_arg_long("serve", "--max-body", v, 1024, 1ll << 32, &n);
            sp.max_body = (size_t)n;
        } else if (pd_arg_match(&a, "--threads", "-t", &v, &bad)) {
            bad = bad || !pd_arg_long("serve", "--threads", v, 1, 1024, &n);
            sp.ctx.n_threads = (int)n;
        } else if (pd_arg_match(&a, "--throttle", NULL, &v, &bad)) {
            bad = bad || !pd_arg_long("serve", "--throttle", v, 0, 10000, &n);
            sp.throttle_ms = (double)n;
        } else if (pd_arg_match(&a, "--ctx", "-c", &v, &bad)) {
            bad = bad || !pd_arg_long("serve", "--ctx", v, 16, 1 << 22, &n);
            sp.ctx.n_ctx = (uint32_t)n;
        } else if (pd_arg_match(&a, "--kv-type", NULL, &v, &bad)) {
            if (!bad && (sp.ctx.kv_type = pd_kv_type_parse(v)) == PD_KV_TYPE_COUNT) {
                bad = pd_cli_fail(2, "serve: --kv-type: expected f16 or f32, got '%s'", v) != 0;
            }
        } else if (pd_arg_match(&a, "--backend", NULL, &v, &bad)) {
            if (!bad && (sp.ctx.backend = pd_backend_parse(v)) == PD_BACKEND_KIND_COUNT) {
                bad = pd_cli_fail(2, "serve: --backend: expected cpu or cuda, got '%s'", v) != 0;
            }
        } else if (!bad) {
            bad = pd_cli_fail(2, "serve: unknown option '%s'", argv[a.i]) != 0;
        }
    }
    if (bad) {
        return 2;
    }
    if (!model) {
        return pd_cli_fail(2, "serve: -m MODEL is required");
    }
    if (!sp.api_key) {
        const char *env = getenv("PONDER_API_KEY");
        sp.api_key = env && *env ? env : NULL;
    }
    struct pd_err err;
    pd_err_clear(&err);
    enum pd_chat_family fam = PD_CHAT_FAMILY_COUNT;
    if (chat && pd_chat_family_parse(chat, &fam, &err) != PD_OK) {
        return pd_cli_fail(2, "serve: --chat: %s", err.msg);
    }
    struct pd_lm lm;
    if (pd_lm_open(model, fam, &lm, &err) != PD_OK) {
        pd_cli_print_err(&err);
        return 1;
    }
    sp.chat = lm.chat;
    const char *slash = strrchr(model, '/');
    if (!sp.model_name) {
        sp.model_name = slash ? slash + 1 : model;
    }
    struct policy_factory pf = {kv, (int32_t)lm.model->hp.n_layer, sp.ctx.n_ctx};
    if (kv) {
        struct pd_kv_policy *probe = NULL;
        if (pd_policy_create_str(kv, pf.n_layer, pf.n_ctx ? pf.n_ctx : 4096, &probe, &err)) {
            pd_lm_close(&lm);
            return pd_cli_fail(2, "serve: --kv: %s", err.msg);
        }
        pd_kv_policy_close(&probe);
        pf.n_ctx = pf.n_ctx ? pf.n_ctx : 4096;
        sp.make_policy = make_policy;
        sp.policy_ud = &pf;
        sp.policy_name = kv;
    }
    /* the server's threads inherit a mask without SIGINT/SIGTERM; this thread waits */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    struct pd_serve *srv = NULL;
    if (pd_serve_open(lm.model, lm.tok, &sp, &srv, &err) != PD_OK) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pd_lm_close(&lm);
        pd_cli_print_err(&err);
        return 1;
    }
    uint16_t port = pd_serve_port(srv);
    if (!loopback(sp.host) && !sp.api_key) {
        fprintf(stderr, "ponder serve: warning: listening on %s without an API key: anyone "
                        "who can reach this address can use the model\n", sp.host);
    }
    fprintf(stderr, "ponder serve: %s as '%s' on http://%s:%u (context %u, queue %u, %s%s%s)\n",
            model, sp.model_name, sp.host, (unsigned)port, pd_serve_n_ctx(srv), sp.queue_max,
            sp.api_key ? "API key required" : "no API key", kv ? ", kv " : "", kv ? kv : "");
    printf("http://%s:%u\n", strchr(sp.host, ':') ? "[::1]" : sp.host, (unsigned)port);
    fflush(stdout);
    if (port_file) {
        FILE *f = fopen(port_file, "w");
        if (!f || fprintf(f, "%u\n", (unsigned)port) < 0 || fclose(f) != 0) {
            fprintf(stderr, "ponder serve: cannot write %s\n", port_file);
        }
    }
    int sig = 0;
    sigwait(&set, &sig);
    struct pd_serve_stats stats;
    pd_serve_stats(srv, &stats);
    pd_serve_close(&srv);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    fprintf(stderr, "ponder serve: stopped (%s): %llu requests, %llu tokens, %llu refused busy, "
                    "%llu refused unauthorised\n", sig == SIGINT ? "interrupt" : "terminated",
            (unsigned long long)stats.requests, (unsigned long long)stats.tokens_out,
            (unsigned long long)stats.rejected_busy, (unsigned long long)stats.rejected_auth);
    pd_lm_close(&lm);
    return 0;
#endif
}

/* ---- bench --engine ------------------------------------------------------------------------- */

#if HAVE_REMOTE
static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct bench_stream {
    double t_first;
    double t_last;
    uint64_t n;
};

static enum pd_status bench_token(void *ud, struct pd_token_rec *tok, struct pd_err *err)
{
    (void)tok;
    (void)err;
    struct bench_stream *b = ud;
    double t = mono_s();
    if (b->n == 0) {
        b->t_first = t;
    }
    b->t_last = t;
    b->n++;
    return PD_OK;
}

struct bench_job {
    const struct pd_cli_engine *e;
    const int32_t *ids;
    size_t n;
    uint32_t n_vocab;
    uint32_t salt;               /* makes this job's sequences its own */
    long long reps;
    uint64_t tokens;
    struct pd_err err;
    enum pd_status st;
};

static void *bench_score_main(void *arg)
{
    struct bench_job *j = arg;
    struct pd_remote *r = NULL;
    j->st = pd_cli_engine_open(j->e, 3, NULL, &r, &j->err);
    struct pd_token_rec *recs = pd_calloc(j->n, sizeof *recs);
    int32_t *ids = pd_malloc_array(j->n, sizeof *ids);
    if (j->st == PD_OK && (!recs || !ids)) {
        j->st = pd_err_set(&j->err, PD_ENOMEM, "out of memory");
    }
    for (long long k = 0; j->st == PD_OK && k < j->reps; k++) {
        /* a first token of its own: no request reuses another's evaluated prefix, so this
         * measures evaluation, not a server's prefix cache */
        memcpy(ids, j->ids, j->n * sizeof *ids);
        ids[0] = (int32_t)((j->salt * 131u + (uint32_t)k * 7u + 1u) % j->n_vocab);
        for (size_t i = 0; i < j->n; i++) {
            recs[i].id = ids[i];
        }
        j->st = pd_remote_score(r, ids, j->n, 5, false, recs, &j->err);
        j->tokens += j->st == PD_OK ? j->n : 0;
    }
    free(recs);
    free(ids);
    pd_remote_close(&r);
    return NULL;
}

/* In-process decode of n_gen greedy tokens after ids with a session, as generate runs. */
static double local_decode_tps(const struct pd_lm *lm, const int32_t *ids, size_t n,
                               long long n_gen, struct pd_err *err)
{
    struct pd_session_params p = pd_session_default_params();
    p.sampling.temperature = 0;
    p.n_predict = (uint32_t)n_gen;
    p.topk = 5;
    p.capture = PD_CAPTURE_LEVEL_OFF;
    pd_chat_format_default(PD_CHAT_FAMILY_RAW, &p.chat);
    struct pd_session *s = NULL;
    if (pd_session_open(lm->model, lm->tok, &p, &s, err) ||
        pd_session_start_tokens(s, ids, n, err)) {
        pd_session_close(&s);
        return NAN;
    }
    double t0 = 0, t1 = 0;
    long long got = 0;
    struct pd_event ev;
    for (;;) {
        if (!pd_session_wait(s, &ev, 1000)) {
            continue;
        }
        bool end = ev.kind == PD_EV_FINISHED || ev.kind == PD_EV_ERROR;
        if (ev.kind == PD_EV_TOKEN && ev.tok.role != PD_ROLE_PROMPT) {
            double t = mono_s();
            if (got++ == 0) {
                t0 = t;
            }
            t1 = t;
        }
        pd_event_free(&ev);
        if (end) {
            break;
        }
    }
    pd_session_close(&s);
    return got > 1 ? (double)(got - 1) / (t1 - t0) : NAN;
}

struct local_score_cb {
    const struct pd_lm *lm;
    const int32_t *ids;
    size_t n;
    struct pd_token_rec rec;
};

static void local_score_logits(void *ud, size_t i, int64_t pos, const float *logits)
{
    (void)pos;
    struct local_score_cb *c = ud;
    if (i + 1 < c->n) {
        pd_probe_fill(logits, c->lm->model->hp.n_vocab, c->ids[i + 1], 5, &c->rec);
    }
}

/* In-process teacher-forced scoring (probe per position) in tokens/s. */
static double local_score_tps(const struct pd_lm *lm, const int32_t *ids, size_t n,
                              long long reps, struct pd_err *err)
{
    struct pd_ctx *ctx = NULL;
    struct pd_ctx_params cp = pd_ctx_default_params();
    if (pd_ctx_open(lm->model, &cp, &ctx, err) != PD_OK) {
        return NAN;
    }
    struct local_score_cb cb = {lm, ids, n, {0}};
    double t0 = mono_s();
    for (long long k = 0; k < reps; k++) {
        pd_ctx_reset(ctx);
        if (pd_ctx_eval(ctx, ids, n, local_score_logits, &cb, err) != PD_OK) {
            pd_ctx_close(&ctx);
            return NAN;
        }
    }
    double t = mono_s() - t0;
    pd_ctx_close(&ctx);
    return (double)n * (double)reps / t;
}
#endif

int pd_cli_bench_remote(int argc, char **argv)
{
    static const char usage[] =
        "usage: ponder bench --engine URL -m MODEL [-p N_PROMPT] [-n N_GEN] [-r REPEATS]\n"
        "                    [--jobs 1,2,4] [--no-local] [--json]\n"
        "Measures a remote engine: streamed decode speed and time to the first token, and\n"
        "teacher-forced scoring throughput (tokens/s) with 1, 2, 4 ... concurrent requests\n"
        "(every request's first token differs, so no prefix is reused between them);\n"
        "then the same work in this process on MODEL (unless --no-local), and the HTTP cost\n"
        "per token. MODEL gives the vocabulary for the prompt (random ids).\n";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            fputs(pd_cli_engine_help, stdout);
            return 0;
        }
    }
#if !HAVE_REMOTE
    return pd_cli_fail(2, "bench: this ponder was built without remote engines");
#else
    struct pd_cli_engine e;
    pd_cli_engine_init(&e);
    const char *model = NULL, *v = NULL, *jobs_s = "1,2,4";
    long long n_prompt = 128, n_gen = 64, reps = 3;
    bool json = false, no_local = false, bad = false;
    struct pd_argv a = {argc, argv, 1, "bench"};
    while (a.i < argc && !bad) {
        int r = pd_cli_engine_opt(&a, &e);
        if (r < 0) {
            return 2;
        }
        if (r > 0) {
            continue;
        }
        if (pd_arg_match(&a, "--model", "-m", &model, &bad) ||
            pd_arg_match(&a, "--jobs", "-j", &jobs_s, &bad)) {
            continue;
        }
        if (pd_arg_match(&a, "--n-prompt", "-p", &v, &bad)) {
            bad = bad || !pd_arg_long("bench", "-p", v, 2, 1 << 20, &n_prompt);
        } else if (pd_arg_match(&a, "--n-gen", "-n", &v, &bad)) {
            bad = bad || !pd_arg_long("bench", "-n", v, 2, 1 << 20, &n_gen);
        } else if (pd_arg_match(&a, "--repeats", "-r", &v, &bad)) {
            bad = bad || !pd_arg_long("bench", "-r", v, 1, 1000, &reps);
        } else if (pd_arg_match(&a, "--json", NULL, NULL, &bad)) {
            json = true;
        } else if (pd_arg_match(&a, "--no-local", NULL, NULL, &bad)) {
            no_local = true;
        } else if (!bad) {
            bad = pd_cli_fail(2, "bench: unknown option '%s'", argv[a.i]) != 0;
        }
    }
    if (bad) {
        return 2;
    }
    if (!model) {
        return pd_cli_fail(2, "bench: --engine needs -m MODEL (its vocabulary, and the "
                              "in-process baseline)");
    }
    long long jobs[16];
    int n_jobs = 0;
    char jb[128];
    snprintf(jb, sizeof jb, "%s", jobs_s);
    for (char *save = NULL, *t = strtok_r(jb, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n_jobs == 16 || !pd_arg_long("bench", "--jobs", t, 1, 256, &jobs[n_jobs])) {
            return 2;
        }
        n_jobs++;
    }
    struct pd_err err;
    pd_err_clear(&err);
    struct pd_lm lm;
    memset(&lm, 0, sizeof lm);
    struct pd_cli_vocab voc;
    memset(&voc, 0, sizeof voc);
    bool have_lm = !no_local && pd_lm_open(model, PD_CHAT_FAMILY_COUNT, &lm, &err) == PD_OK;
    if (!have_lm && pd_cli_vocab_open(model, NULL, &voc, &err) != PD_OK) {
        pd_cli_print_err(&err);
        return 1;
    }
    const struct pd_tok *tok = have_lm ? lm.tok : voc.tok;
    struct pd_remote *r = NULL;
    int rc = 0;
    int32_t *ids = NULL;
    if (pd_cli_engine_open(&e, 3, tok, &r, &err) != PD_OK) {
        pd_cli_print_err(&err);
        rc = 1;
        goto done;
    }
    ids = pd_malloc_array((size_t)n_prompt, sizeof *ids);
    if (!ids) {
        rc = pd_cli_fail(1, "out of memory");
        goto done;
    }
    uint32_t nv = pd_tok_n_vocab(tok);
    for (long long i = 0; i < n_prompt; i++) {
        ids[i] = (int32_t)((i * 7919 + 13) % nv);
    }
    /* streamed decode, best of the repeats */
    double best_tps = 0, best_ttft = INFINITY;
    for (long long k = 0; k < reps && rc == 0; k++) {
        ids[0] = (int32_t)((9000u + (uint32_t)k * 17u) % nv); /* no prefix reuse */
        struct pd_remote_gen g;
        memset(&g, 0, sizeof g);
        g.prompt = ids;
        g.n_prompt = (size_t)n_prompt;
        g.max_tokens = (uint32_t)n_gen;
        g.sampling = pd_sampler_default_params();
        g.sampling.temperature = 0;
        g.topk = 5;
        g.stream = true;
        struct bench_stream bs = {0, 0, 0};
        struct pd_remote_gen_result res;
        double t0 = mono_s();
        if (pd_remote_generate(r, &g, bench_token, NULL, &bs, &res, &err) != PD_OK) {
            pd_cli_print_err(&err);
            rc = 1;
            break;
        }
        if (bs.n > 1) {
            double tps = (double)(bs.n - 1) / (bs.t_last - bs.t_first);
            best_tps = tps > best_tps ? tps : best_tps;
        }
        if (bs.n > 0 && bs.t_first - t0 < best_ttft) {
            best_ttft = bs.t_first - t0;
        }
    }
    /* scoring throughput per --jobs value: the best of `reps` rounds of 4 requests per
     * worker (machines are noisy; the best round is the least disturbed one) */
    double score_tps[16] = {0};
    for (int ji = 0; ji < n_jobs && rc == 0; ji++) {
        for (long long round = 0; round < reps && rc == 0; round++) {
            struct bench_job *bj = pd_calloc((size_t)jobs[ji], sizeof *bj);
            pthread_t *th = pd_calloc((size_t)jobs[ji], sizeof *th);
            if (!bj || !th) {
                free(bj);
                free(th);
                rc = pd_cli_fail(1, "out of memory");
                break;
            }
            double t0 = mono_s();
            for (long long k = 0; k < jobs[ji]; k++) {
                bj[k] = (struct bench_job){&e, ids, (size_t)n_prompt, nv,
                                           (uint32_t)(round * 4096 + ji * 64 + k), 4, 0,
                                           {0, {0}}, PD_OK};
                pthread_create(&th[k], NULL, bench_score_main, &bj[k]);
            }
            uint64_t total = 0;
            for (long long k = 0; k < jobs[ji]; k++) {
                pthread_join(th[k], NULL);
                total += bj[k].tokens;
                if (bj[k].st != PD_OK && rc == 0) {
                    pd_cli_print_err(&bj[k].err);
                    rc = 1;
                }
            }
            double tps = (double)total / (mono_s() - t0);
            score_tps[ji] = tps > score_tps[ji] ? tps : score_tps[ji];
            free(bj);
            free(th);
        }
    }
    double local_dec = NAN, local_sc = NAN;
    for (long long k = 0; rc == 0 && have_lm && k < reps; k++) {
        double d = local_decode_tps(&lm, ids, (size_t)n_prompt, n_gen, &err);
        double sc = local_score_tps(&lm, ids, (size_t)n_prompt, 4, &err);
        local_dec = isnan(local_dec) || d > local_dec ? d : local_dec;
        local_sc = isnan(local_sc) || sc > local_sc ? sc : local_sc;
    }
    if (rc == 0) {
        const struct pd_remote_info *info = pd_remote_info(r);
        double ovh_dec = (1.0 / best_tps - 1.0 / local_dec) * 1e3;
        double ovh_sc = (1.0 / score_tps[0] - 1.0 / local_sc) * 1e3;
        struct pd_buf b;
        pd_buf_init(&b);
        if (json) {
            pd_buf_puts(&b, "{\"engine\":");
            pd_json_str(&b, info->base, strlen(info->base));
            pd_buf_printf(&b, ",\"server\":\"%s\",\"model\":", pd_remote_server_name(info->server));
            pd_json_str(&b, info->model, strlen(info->model));
            pd_buf_printf(&b, ",\"n_prompt\":%lld,\"n_gen\":%lld,\"repeats\":%lld,"
                              "\"decode_tok_s\":", n_prompt, n_gen, reps);
            pd_json_num(&b, best_tps);
            pd_buf_puts(&b, ",\"first_token_s\":");
            pd_json_num(&b, best_ttft);
            pd_buf_puts(&b, ",\"score_tok_s\":{");
            for (int ji = 0; ji < n_jobs; ji++) {
                pd_buf_printf(&b, "%s\"%lld\":", ji ? "," : "", jobs[ji]);
                pd_json_num(&b, score_tps[ji]);
            }
            pd_buf_puts(&b, "},\"local_decode_tok_s\":");
            pd_json_num(&b, local_dec);
            pd_buf_puts(&b, ",\"local_score_tok_s\":");
            pd_json_num(&b, local_sc);
            pd_buf_puts(&b, ",\"http_ms_per_token\":{\"decode\":");
            pd_json_num(&b, ovh_dec);
            pd_buf_puts(&b, ",\"score\":");
            pd_json_num(&b, ovh_sc);
            pd_buf_puts(&b, "}}\n");
        } else {
            pd_buf_printf(&b, "engine       %s (%s, model '%s')\n", info->base,
                          pd_remote_server_name(info->server), info->model);
            pd_buf_printf(&b, "prompt       %lld tokens, %lld generated, best of %lld (score: "
                              "rounds of 4 requests per job)\n", n_prompt, n_gen, reps);
            pd_buf_printf(&b, "decode       %.1f tok/s streamed, first token after %.1f ms\n",
                          best_tps, best_ttft * 1e3);
            for (int ji = 0; ji < n_jobs; ji++) {
                pd_buf_printf(&b, "score        --jobs %lld: %.1f tok/s\n", jobs[ji],
                              score_tps[ji]);
            }
            if (have_lm) {
                pd_buf_printf(&b, "in process   decode %.1f tok/s, score %.1f tok/s\n",
                              local_dec, local_sc);
                pd_buf_printf(&b, "HTTP cost    %.3f ms per decoded token, %.4f ms per scored "
                                  "token (--jobs %lld)\n", ovh_dec, ovh_sc, jobs[0]);
            }
        }
        fwrite(b.data, 1, b.len, stdout);
        pd_buf_deinit(&b);
    }
done:
    free(ids);
    pd_remote_close(&r);
    pd_lm_close(&lm);
    pd_cli_vocab_close(&voc);
    return rc;
#endif
}
