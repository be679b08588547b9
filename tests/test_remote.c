/* test_remote.c - remote engines: the server-sent events parser, the wire formats of vLLM,
 * SGLang and llama-server (the committed fixtures in tests/fixtures/remote/, fed to the
 * parsers in pieces of every size), the client against a scripted server that fails the
 * ways real ones do (down, error bodies, a stream cut off mid-token, malformed and
 * truncated JSON, a silent server, 429 then success, a redirect, a tokenizer that
 * disagrees), the remote session's events and commands, and ponder serve (authentication,
 * limits, the queue bound, exact agreement with the in-process engine). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine_common.h"
#include "fake_engine.h"
#include "forward.h"
#include "model.h"
#include "probe.h"
#include "remote.h"
#include "remote_http.h"
#include "remote_proto.h"
#include "remote_serve.h"
#include "remote_session.h"
#include "remote_sse.h"
#include "session.h"
#include "tokenizer.h"

static char g_fix[1024];          /* tests/fixtures/remote */
static char *g_tmp;
static struct pd_model *g_model;  /* a random-weight llama (mkmodel) */
static struct pd_tok *g_tok;

static char *slurp(const char *rel, size_t *len)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", g_fix, rel);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail_msg("fixture %s is missing (fixtures are part of the repository)", path);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* ---- server-sent events -------------------------------------------------------------------- */

struct sse_log {
    char buf[4096];
    size_t n_events;
};

static enum pd_status log_event(void *ud, const char *event, const char *data, size_t len,
                                struct pd_err *err)
{
    (void)err;
    struct sse_log *l = ud;
    size_t used = strlen(l->buf);
    snprintf(l->buf + used, sizeof l->buf - used, "[%s|%.*s]", event, (int)len, data);
    l->n_events++;
    return PD_OK;
}

static void test_sse_every_split(void **state)
{
    (void)state;
    static const char in[] = ": keep-alive\r\ndata: one\r\n\r\nevent: ping\ndata: a\ndata:b\n\n"
                             "data: x\r\rid: 7\nretry: 10\ndata: {\"k\": 1}\n\n";
    static const char want[] = "[message|one][ping|a\nb][message|x][message|{\"k\": 1}]";
    size_t n = sizeof in - 1;
    /* every split into two pieces, and byte by byte */
    for (size_t cut = 0; cut <= n; cut++) {
        struct pd_sse p;
        struct sse_log l = {"", 0};
        struct pd_err err;
        pd_sse_init(&p, 0);
        assert_int_equal(pd_sse_feed(&p, in, cut, log_event, &l, &err), PD_OK);
        assert_int_equal(pd_sse_feed(&p, in + cut, n - cut, log_event, &l, &err), PD_OK);
        assert_string_equal(l.buf, want);
        assert_true(pd_sse_idle(&p));
        pd_sse_deinit(&p);
    }
    struct pd_sse p;
    struct sse_log l = {"", 0};
    struct pd_err err;
    pd_sse_init(&p, 0);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(pd_sse_feed(&p, in + i, 1, log_event, &l, &err), PD_OK);
    }
    assert_string_equal(l.buf, want);
    pd_sse_deinit(&p);
}

static void test_sse_cut_and_bound(void **state)
{
    (void)state;
    struct pd_sse p;
    struct sse_log l = {"", 0};
    struct pd_err err;
    pd_sse_init(&p, 0);
    static const char cut[] = "data: {\"a\":1}\n\ndata: {\"b\":";
    assert_int_equal(pd_sse_feed(&p, cut, sizeof cut - 1, log_event, &l, &err), PD_OK);
    assert_int_equal(l.n_events, 1);
    assert_false(pd_sse_idle(&p)); /* a stream ending here was cut off */
    pd_sse_deinit(&p);
    pd_sse_init(&p, 16);
    static const char big[] = "data: 0123456789abcdefghij\n\n";
    assert_int_equal(pd_sse_feed(&p, big, sizeof big - 1, log_event, &l, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "exceeds 16 bytes"));
    pd_sse_deinit(&p);
}

/* ---- wire formats ------------------------------------------------------------------------- */

struct toks {
    struct pd_token_rec t[32];
    size_t n;
    unsigned n_kv;
};

static enum pd_status keep_token(void *ud, struct pd_token_rec *tok, struct pd_err *err)
{
    (void)err;
    struct toks *k = ud;
    assert_true(k->n < 32);
    k->t[k->n] = *tok;
    tok->text = NULL;
    tok->attn = NULL;
    k->n++;
    return PD_OK;
}

static void keep_kv(void *ud, const struct pd_kv_event_rec *ev)
{
    (void)ev;
    ((struct toks *)ud)->n_kv++;
}

static void toks_free(struct toks *k)
{
    for (size_t i = 0; i < k->n; i++) {
        pd_token_rec_free(&k->t[i]);
    }
    k->n = 0;
}

struct feed {
    struct pd_rproto_stream *ps;
};

static enum pd_status feed_event(void *ud, const char *event, const char *data, size_t len,
                                 struct pd_err *err)
{
    (void)event;
    return pd_rproto_stream_data(ud, data, len, err);
}

/* Parses a stream fixture in pieces of `piece` bytes. */
static void parse_stream(const char *rel, enum pd_remote_server s, uint32_t topk, size_t piece,
                         struct toks *out, struct pd_rproto_stream *ps)
{
    size_t len;
    char *body = slurp(rel, &len);
    pd_rproto_stream_init(ps, s, topk, keep_token, keep_kv, out);
    struct pd_sse p;
    pd_sse_init(&p, 0);
    struct pd_err err;
    pd_err_clear(&err);
    for (size_t i = 0; i < len; i += piece) {
        size_t n = len - i < piece ? len - i : piece;
        enum pd_status st = pd_sse_feed(&p, body + i, n, feed_event, ps, &err);
        if (st != PD_OK) {
            fail_msg("%s: %s", rel, err.msg);
        }
    }
    assert_true(pd_sse_idle(&p));
    pd_sse_deinit(&p);
    free(body);
}

static void expect_top(const struct pd_token_rec *r, size_t n, const int32_t *ids,
                       const float *lps)
{
    assert_int_equal(r->n_top, n);
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(r->top[k].id, ids[k]);
        assert_float_equal(r->top[k].logprob, lps[k], 1e-6);
    }
}

/* The entropy estimate computed here independently: known probabilities and one bucket
 * for the rest, in bits. */
static double estimate(const double *p, size_t n)
{
    double h = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        h -= p[i] * log2(p[i]);
        m += p[i];
    }
    return h - (1 - m) * log2(1 - m);
}

static void test_vllm_stream(void **state)
{
    (void)state;
    static const size_t pieces[] = {1, 3, 17, 64, 100000};
    for (size_t pi = 0; pi < sizeof pieces / sizeof pieces[0]; pi++) {
        struct toks k = {.n = 0};
        struct pd_rproto_stream ps;
        parse_stream("vllm/stream_logprobs.sse", PD_REMOTE_VLLM, 2, pieces[pi], &k, &ps);
        assert_int_equal(k.n, 3);
        assert_true(ps.done && ps.got_done_marker);
        assert_string_equal(ps.finish, "length");
        assert_int_equal(k.t[0].id, 3681);
        assert_float_equal(k.t[0].logprob, -0.0412f, 1e-7);
        assert_string_equal(k.t[0].text, " Paris");
        expect_top(&k.t[0], 2, (int32_t[]){3681, 278}, (float[]){-0.0412f, -3.5061f});
        /* the chosen "." is second: the alternatives are sorted */
        assert_int_equal(k.t[1].id, 29889);
        expect_top(&k.t[1], 2, (int32_t[]){29892, 29889}, (float[]){-0.7012f, -0.8123f});
        /* the chosen token outside the top 2: vLLM lists three, ponder keeps the top 2 */
        assert_int_equal(k.t[2].id, 13);
        assert_string_equal(k.t[2].text, "\n");
        expect_top(&k.t[2], 2, (int32_t[]){450, 2}, (float[]){-0.6f, -1.2f});
        assert_true(k.t[2].flags & PD_TOKF_ENTROPY_EST);
        double p3[] = {exp(-0.6), exp(-1.2), exp(-2.9)};
        assert_float_equal(k.t[2].entropy, estimate(p3, 3), 1e-5);
        toks_free(&k);
    }
}

static void test_vllm_score(void **state)
{
    (void)state;
    static const int32_t ids[] = {1, 450, 7483, 310, 3444, 338};
    static const char *const files[] = {"vllm/echo_score.json", "vllm/prompt_logprobs_only.json"};
    for (size_t f = 0; f < 2; f++) {
        size_t len;
        char *body = slurp(files[f], &len);
        struct pd_token_rec out[6];
        memset(out, 0, sizeof out);
        for (int i = 0; i < 6; i++) {
            out[i].id = ids[i];
        }
        struct pd_err err;
        enum pd_status st = pd_rproto_score_response(PD_REMOTE_VLLM, body, len, ids, 6, 2, out,
                                                     &err);
        if (st != PD_OK) {
            fail_msg("%s: %s", files[f], err.msg);
        }
        assert_true(isnan(out[0].logprob));
        assert_float_equal(out[1].logprob, -9.3125f, 1e-6);
        assert_float_equal(out[5].logprob, -0.4102f, 1e-6);
        expect_top(&out[1], 2, (int32_t[]){1576, 306}, (float[]){-2.1094f, -2.8906f});
        expect_top(&out[4], 2, (int32_t[]){278, 3444}, (float[]){-1.0f, -1.3594f});
        assert_true(out[3].flags & PD_TOKF_ENTROPY_EST);
        /* a server that scored other tokens is caught */
        int32_t other[6];
        memcpy(other, ids, sizeof other);
        other[2] = 99;
        st = pd_rproto_score_response(PD_REMOTE_VLLM, body, len, other, 6, 2, out, &err);
        if (f == 0) {
            assert_int_equal(st, PD_EFORMAT);
            assert_non_null(strstr(err.msg, "token 2"));
        } else {
            assert_int_equal(st, PD_EFORMAT); /* no entry for the token in prompt_logprobs */
        }
        free(body);
    }
}

static void test_sglang(void **state)
{
    (void)state;
    static const size_t pieces[] = {1, 50, 100000};
    for (size_t pi = 0; pi < 3; pi++) {
        struct toks k = {.n = 0};
        struct pd_rproto_stream ps;
        parse_stream("sglang/generate_stream.sse", PD_REMOTE_SGLANG, 2, pieces[pi], &k, &ps);
        assert_int_equal(k.n, 3); /* cumulative events: each token once */
        assert_true(ps.done);
        assert_string_equal(ps.finish, "length");
        assert_int_equal(k.t[1].id, 29889);
        assert_string_equal(k.t[1].text, ".");
        expect_top(&k.t[1], 2, (int32_t[]){29892, 29889}, (float[]){-0.7012f, -0.8123f});
        toks_free(&k);
    }
    /* incremental events (--incremental-streaming-output): only the new tokens each time */
    struct toks k = {.n = 0};
    struct pd_rproto_stream ps;
    pd_rproto_stream_init(&ps, PD_REMOTE_SGLANG, 2, keep_token, NULL, &k);
    static const char *const inc[] = {
        "{\"text\":\"a\",\"meta_info\":{\"completion_tokens\":1,\"finish_reason\":null,"
        "\"output_token_logprobs\":[[-0.5,10,\"a\"]],\"output_top_logprobs\":[[[-0.5,10,\"a\"]]]}}",
        "{\"text\":\"b\",\"meta_info\":{\"completion_tokens\":3,\"finish_reason\":"
        "{\"type\":\"stop\"},\"output_token_logprobs\":[[-0.25,11,\"b\"],[-0.125,12,\"c\"]],"
        "\"output_top_logprobs\":[[[-0.25,11,\"b\"]],[[-0.125,12,\"c\"]]]}}"};
    struct pd_err err;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pd_rproto_stream_data(&ps, inc[i], strlen(inc[i]), &err), PD_OK);
    }
    assert_int_equal(k.n, 3);
    assert_int_equal(k.t[2].id, 12);
    assert_string_equal(ps.finish, "stop");
    toks_free(&k);
    /* scoring */
    static const int32_t ids[] = {1, 450, 7483, 310, 3444, 338};
    size_t len;
    char *body = slurp("sglang/generate_score.json", &len);
    struct pd_token_rec out[6];
    memset(out, 0, sizeof out);
    for (int i = 0; i < 6; i++) {
        out[i].id = ids[i];
    }
    assert_int_equal(pd_rproto_score_response(PD_REMOTE_SGLANG, body, len, ids, 6, 2, out, &err),
                     PD_OK);
    assert_true(isnan(out[0].logprob));
    assert_float_equal(out[2].logprob, -7.5234f, 1e-6);
    expect_top(&out[2], 2, (int32_t[]){937, 1900}, (float[]){-3.0156f, -3.3281f});
    for (int i = 0; i < 6; i++) {
        pd_token_rec_free(&out[i]);
    }
    free(body);
}

/* The completion_probabilities of a recorded llama-server body, read here with jansson
 * independently of the client's parser: ids[k], logprob[k] and the first top entry. */
struct llama_ref {
    int32_t id[16];
    double lp[16];
    int32_t top0[16];
    size_t n;
};

static void llama_ref_load(const char *rel, struct llama_ref *ref)
{
    size_t len;
    char *body = slurp(rel, &len);
    json_error_t je;
    json_t *o = json_loadb(body, len, 0, &je);
    assert_non_null(o);
    json_t *cp = json_object_get(o, "completion_probabilities");
    assert_true(json_is_array(cp) && json_array_size(cp) <= 16);
    ref->n = json_array_size(cp);
    for (size_t k = 0; k < ref->n; k++) {
        json_t *e = json_array_get(cp, k);
        ref->id[k] = (int32_t)json_integer_value(json_object_get(e, "id"));
        ref->lp[k] = json_real_value(json_object_get(e, "logprob"));
        json_t *t0 = json_array_get(json_object_get(e, "top_logprobs"), 0);
        ref->top0[k] = (int32_t)json_integer_value(json_object_get(t0, "id"));
    }
    json_decref(o);
    free(body);
}

/* Recorded llama-server responses (tests/fixtures/remote/llamacpp/, stories260K): the
 * stream and the whole response of the same greedy request agree token by token. */
static void test_llamacpp_generate(void **state)
{
    (void)state;
    struct llama_ref ref;
    llama_ref_load("llamacpp/completion.json", &ref);
    assert_int_equal(ref.n, 8);
    size_t len;
    char *whole = slurp("llamacpp/completion.json", &len);
    struct toks w = {.n = 0};
    struct pd_rproto_stream ps;
    struct pd_err err;
    pd_rproto_stream_init(&ps, PD_REMOTE_LLAMACPP, 3, keep_token, NULL, &w);
    assert_int_equal(pd_rproto_stream_data(&ps, whole, len, &err), PD_OK);
    assert_true(ps.done);
    assert_string_equal(ps.finish, "limit");
    assert_int_equal(w.n, 8);
    free(whole);
    static const size_t pieces[] = {1, 7, 100000};
    for (size_t pi = 0; pi < 3; pi++) {
        struct toks k = {.n = 0};
        parse_stream("llamacpp/completion_stream.sse", PD_REMOTE_LLAMACPP, 3, pieces[pi], &k,
                     &ps);
        assert_int_equal(k.n, 8);
        assert_true(ps.done);
        assert_string_equal(ps.finish, "limit"); /* n_predict reached */
        for (size_t i = 0; i < 8; i++) {
            assert_int_equal(k.t[i].id, ref.id[i]);
            assert_int_equal(w.t[i].id, ref.id[i]);
            assert_float_equal(k.t[i].logprob, (float)ref.lp[i], 1e-7);
            assert_float_equal(w.t[i].logprob, k.t[i].logprob, 0);
            assert_int_equal(k.t[i].n_top, 3);
            assert_int_equal(k.t[i].top[0].id, ref.top0[i]);
            assert_true(k.t[i].top[0].logprob >= k.t[i].top[1].logprob &&
                        k.t[i].top[1].logprob >= k.t[i].top[2].logprob);
            assert_true(k.t[i].flags & PD_TOKF_ENTROPY_EST);
            assert_float_equal(k.t[i].entropy, w.t[i].entropy, 0);
        }
        /* texts from "bytes": " a little girl named Lily." */
        assert_string_equal(k.t[0].text, " a");
        assert_string_equal(k.t[3].text, "ir");
        assert_string_equal(k.t[7].text, ".");
        toks_free(&k);
    }
    toks_free(&w);
    /* sampled with a seed: the same shape */
    struct toks k = {.n = 0};
    parse_stream("llamacpp/completion_seed_stream.sse", PD_REMOTE_LLAMACPP, 3, 64, &k, &ps);
    assert_int_equal(k.n, 6);
    assert_string_equal(ps.finish, "limit");
    toks_free(&k);
    /* ending with </s>: its event has "token": "" and "bytes": [] (the server renders no
     * special tokens), then a final event with stop_type eos */
    parse_stream("llamacpp/completion_eos_stream.sse", PD_REMOTE_LLAMACPP, 2, 13, &k, &ps);
    assert_int_equal(k.n, 2);
    assert_true(ps.done);
    assert_string_equal(ps.finish, "eos");
    assert_int_equal(k.t[1].id, 2);
    assert_int_equal(k.t[1].text_len, 0);
    assert_true(k.t[1].logprob < -20); /* forced by a logit bias; the value is the model's */
    assert_int_not_equal(k.t[1].top[0].id, 2);
    toks_free(&k);
    /* an error event inside the 200 stream, after one token */
    size_t elen;
    char *sse = slurp("llamacpp/error_in_stream.sse", &elen);
    pd_rproto_stream_init(&ps, PD_REMOTE_LLAMACPP, 2, keep_token, NULL, &k);
    struct pd_sse p;
    pd_sse_init(&p, 0);
    assert_int_equal(pd_sse_feed(&p, sse, elen, feed_event, &ps, &err), PD_EIO);
    assert_non_null(strstr(err.msg, "server error: got exception"));
    assert_int_equal(k.n, 1);
    assert_false(ps.done);
    pd_sse_deinit(&p);
    toks_free(&k);
    free(sse);
}

/* Scoring on llama-server: the request forces ids[1..n) by a token grammar, the recorded
 * answers to exactly that request fill out[1..n). */
static void test_llamacpp_score(void **state)
{
    (void)state;
    static const int32_t ids[] = {1, 403, 407, 261, 378, 432, 383, 286};
    struct pd_buf b;
    pd_buf_init(&b);
    const char *path;
    struct pd_err err;
    assert_int_equal(pd_rproto_score_request(PD_REMOTE_LLAMACPP, "m", ids, 8, 3, false, &b,
                                             &path, &err),
                     PD_OK);
    assert_string_equal(path, "/completion");
    json_error_t je;
    json_t *o = json_loadb(b.data, b.len, 0, &je);
    assert_non_null(o);
    /* the fields scripts/record-llama-server sent for score.json */
    assert_string_equal(json_string_value(json_object_get(o, "grammar")),
                        "root ::= <[403]> <[407]> <[261]> <[378]> <[432]> <[383]> <[286]>?");
    assert_int_equal(json_integer_value(json_object_get(o, "n_predict")), 7);
    assert_int_equal(json_array_size(json_object_get(o, "prompt")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "n_probs")), 3);
    json_t *bias = json_array_get(json_object_get(o, "logit_bias"), 0);
    assert_int_equal(json_integer_value(json_array_get(bias, 0)), 286);
    assert_false(json_is_true(json_object_get(o, "post_sampling_probs")));
    assert_false(json_is_true(json_object_get(o, "stream")));
    json_decref(o);
    pd_buf_deinit(&b);
    assert_int_equal(pd_rproto_score_request(PD_REMOTE_LLAMACPP, NULL, ids, 1, 3, false, &b,
                                             &path, &err),
                     PD_EINVAL);
    pd_buf_deinit(&b);
    static const struct {
        const char *file;
        int32_t last;
    } cases[] = {{"llamacpp/score.json", 286}, {"llamacpp/score_eos.json", 2}};
    for (size_t c = 0; c < 2; c++) {
        int32_t want[8];
        memcpy(want, ids, sizeof want);
        size_t n = c == 0 ? 8 : 7;
        want[n - 1] = cases[c].last;
        struct llama_ref ref;
        llama_ref_load(cases[c].file, &ref);
        assert_int_equal(ref.n, n - 1);
        size_t len;
        char *body = slurp(cases[c].file, &len);
        struct pd_token_rec out[8];
        memset(out, 0, sizeof out);
        for (size_t i = 0; i < n; i++) {
            out[i].id = want[i];
        }
        if (pd_rproto_score_response(PD_REMOTE_LLAMACPP, body, len, want, n, 3, out, &err)) {
            fail_msg("%s: %s", cases[c].file, err.msg);
        }
        assert_true(isnan(out[0].logprob));
        for (size_t i = 1; i < n; i++) {
            assert_float_equal(out[i].logprob, (float)ref.lp[i - 1], 1e-7);
            assert_int_equal(out[i].n_top, 3);
            assert_int_equal(out[i].top[0].id, ref.top0[i - 1]);
            assert_true(out[i].flags & PD_TOKF_ENTROPY_EST);
        }
        /* the prompt of the generate fixtures, scored: " Once" after <s> */
        assert_float_equal(out[1].logprob, -0.2437879f, 1e-6);
        /* a server that forced other tokens is caught */
        want[3] = 99;
        assert_int_equal(pd_rproto_score_response(PD_REMOTE_LLAMACPP, body, len, want, n, 3,
                                                  out, &err),
                         PD_EFORMAT);
        assert_non_null(strstr(err.msg, "token 3"));
        want[3] = ids[3];
        /* fewer tokens came back than were sent */
        int32_t more[9];
        memcpy(more, want, n * sizeof *more);
        more[n] = 5;
        struct pd_token_rec out9[9];
        memset(out9, 0, sizeof out9);
        assert_int_equal(pd_rproto_score_response(PD_REMOTE_LLAMACPP, body, len, more, n + 1, 3,
                                                  out9, &err),
                         PD_EFORMAT);
        assert_non_null(strstr(err.msg, "came back"));
        for (size_t i = 0; i < 9; i++) {
            pd_token_rec_free(&out9[i]);
            if (i < 8) {
                pd_token_rec_free(&out[i]);
            }
        }
        free(body);
    }
    /* /v1/completions ignores echo and generates: read as an OpenAI server's scoring
     * answer, the missing prompt values are an error, not misread values */
    size_t len;
    char *body = slurp("llamacpp/v1_completions_echo.json", &len);
    struct pd_token_rec out[8];
    memset(out, 0, sizeof out);
    assert_int_equal(pd_rproto_score_response(PD_REMOTE_OPENAI, body, len, ids, 8, 2, out, &err),
                     PD_EFORMAT);
    free(body);
}

/* The other recorded llama-server endpoints ponder reads. */
static void test_llamacpp_endpoints(void **state)
{
    (void)state;
    size_t len;
    struct pd_err err;
    char *body = slurp("llamacpp/models.json", &len);
    struct pd_rproto_models m;
    assert_int_equal(pd_rproto_models_parse(body, len, NULL, &m, &err), PD_OK);
    assert_true(m.found);
    assert_string_equal(m.owned_by, "llamacpp");
    assert_int_equal(pd_remote_server_from_owner(m.owned_by), PD_REMOTE_LLAMACPP);
    assert_non_null(strstr(m.model, "stories260K.gguf"));
    free(body);
    body = slurp("llamacpp/tokenize.json", &len);
    int32_t *ids;
    size_t n;
    assert_int_equal(pd_rproto_tokens_parse(body, len, &ids, &n, &err), PD_OK);
    static const int32_t want[] = {403, 407, 261, 378, 432, 383, 286};
    assert_int_equal(n, 7);
    assert_memory_equal(ids, want, sizeof want);
    free(ids);
    free(body);
    body = slurp("llamacpp/detokenize.json", &len);
    char *text;
    assert_int_equal(pd_rproto_text_parse(body, len, &text, &err), PD_OK);
    assert_string_equal(text, " Once upon a time, there was");
    free(text);
    free(body);
}

static void test_error_bodies(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        const char *want;
    } cases[] = {
        {"vllm/error_400.json", "maximum context length is 4096 tokens"},
        {"vllm/error_400_legacy.json", "`logprobs` must be a positive value"},
        {"vllm/error_422_fastapi.json", "max_tokens: Input should be a valid integer"},
        {"sglang/error_400.json", "longer than the model's context length"},
        {"llamacpp/error_context.json", "exceeds the available context size (256 tokens)"},
        {"llamacpp/error_bad_token.json", "Prompt contains invalid tokens"},
        {"llamacpp/error_bad_token_stream.json", "Prompt contains invalid tokens"},
        {"llamacpp/error_bad_grammar.json", "failed to parse grammar"},
        {"llamacpp/error_malformed.json", "parse error at line 1"},
        {"llamacpp/error_404.json", "File Not Found"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        char *body = slurp(cases[i].file, &len);
        char msg[400];
        pd_rproto_error_message(body, len, msg, sizeof msg);
        if (!strstr(msg, cases[i].want)) {
            fail_msg("%s: got '%s'", cases[i].file, msg);
        }
        free(body);
    }
    char msg[64];
    pd_rproto_error_message("<html>\x01" "bad gateway</html>", 25, msg, sizeof msg);
    assert_string_equal(msg, "<html> bad gateway</html>");
}

static void test_malformed(void **state)
{
    (void)state;
    struct toks k = {.n = 0};
    struct pd_rproto_stream ps;
    struct pd_err err;
    static const char *const bad[] = {
        "{\"choices\":[{\"text\":\"a\",\"logprobs\":{\"tokens\":[\"token_id:1\"],", /* cut */
        "{\"choices\":[{\"text\":\"a\",\"logprobs\":{\"tokens\":[\"token_id:1\"],"
        "\"token_logprobs\":[-1,-2],\"top_logprobs\":[null]}}]}",               /* lengths */
        "{\"choices\":[{\"text\":\"a\",\"logprobs\":{\"tokens\":[\"x\"],"
        "\"token_logprobs\":[-1],\"top_logprobs\":[null]}}]}",                  /* no id */
        "{\"choices\":[{\"text\":\"a\",\"logprobs\":{\"tokens\":[\"token_id:1\"],"
        "\"token_logprobs\":[\"high\"],\"top_logprobs\":[null]}}]}",            /* type */
        "[1,2,3]",
        "{\"meta_info\":{\"completion_tokens\":1,\"output_token_logprobs\":[[-1]]}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pd_rproto_stream_init(&ps, i == 5 ? PD_REMOTE_SGLANG : PD_REMOTE_VLLM, 2, keep_token,
                              NULL, &k);
        assert_int_equal(pd_rproto_stream_data(&ps, bad[i], strlen(bad[i]), &err), PD_EFORMAT);
        assert_int_equal(k.n, 0);
    }
    /* a byte token's NUL is text, not the end of the document */
    pd_rproto_stream_init(&ps, PD_REMOTE_VLLM, 2, keep_token, NULL, &k);
    static const char nul[] = "{\"choices\":[{\"text\":\"a\\u0000b\",\"logprobs\":"
                              "{\"tokens\":[\"token_id:3\"],\"token_logprobs\":[-1],"
                              "\"top_logprobs\":[null]}}]}";
    assert_int_equal(pd_rproto_stream_data(&ps, nul, sizeof nul - 1, &err), PD_OK);
    assert_int_equal(k.n, 1);
    assert_int_equal(k.t[0].text_len, 3);
    toks_free(&k);
    pd_rproto_stream_init(&ps, PD_REMOTE_VLLM, 2, keep_token, NULL, &k);
    static const char errchunk[] = "{\"error\":{\"message\":\"engine died\",\"code\":500}}";
    assert_int_equal(pd_rproto_stream_data(&ps, errchunk, sizeof errchunk - 1, &err), PD_EIO);
    assert_non_null(strstr(err.msg, "engine died"));
}

static void test_requests_and_helpers(void **state)
{
    (void)state;
    int32_t ids[] = {5, 6, 7};
    struct pd_rproto_gen g = {.model = "m", .prompt = ids, .n_prompt = 3, .max_tokens = 9,
                              .temperature = 0.7f, .top_k = 0, .top_p = 0.9f, .min_p = 0,
                              .seed = 42, .has_seed = true, .topk = 5, .stream = true};
    static const char *const want_path[] = {"/v1/completions", "/v1/completions", "/generate",
                                            "/completion", "/v1/completions"};
    for (int s = 0; s < PD_REMOTE_SERVER_COUNT; s++) {
        struct pd_buf b;
        pd_buf_init(&b);
        const char *path;
        struct pd_err err;
        assert_int_equal(pd_rproto_gen_request(s, &g, &b, &path, &err), PD_OK);
        assert_string_equal(path, want_path[s]);
        json_error_t je;
        json_t *o = json_loads(b.data, 0, &je);
        assert_non_null(o);
        if (s == PD_REMOTE_SGLANG) {
            assert_int_equal(json_integer_value(json_object_get(o, "top_logprobs_num")), 5);
            assert_true(json_is_true(json_object_get(o, "return_logprob")));
            assert_int_equal(json_array_size(json_object_get(o, "input_ids")), 3);
        } else if (s == PD_REMOTE_LLAMACPP) {
            assert_int_equal(json_integer_value(json_object_get(o, "n_probs")), 5);
            assert_int_equal(json_integer_value(json_object_get(o, "n_predict")), 9);
        } else {
            assert_int_equal(json_integer_value(json_object_get(o, "logprobs")), 5);
            assert_true(json_is_true(json_object_get(o, "return_tokens_as_token_ids")));
            assert_int_equal(json_integer_value(json_object_get(o, "seed")), 42);
            assert_true((s == PD_REMOTE_PONDER) == (json_object_get(o, "ponder") != NULL));
        }
        json_decref(o);
        pd_buf_deinit(&b);
    }
    /* base64 */
    uint8_t raw[7] = {0, 1, 2, 250, 251, 252, 9};
    for (size_t n = 0; n <= 7; n++) {
        struct pd_buf b;
        pd_buf_init(&b);
        assert_true(pd_base64_encode(&b, raw, n));
        uint8_t *dec;
        size_t dn;
        assert_true(pd_base64_decode(b.data ? b.data : "", b.len, &dec, &dn));
        assert_int_equal(dn, n);
        assert_memory_equal(dec, raw, n);
        free(dec);
        pd_buf_deinit(&b);
    }
    uint8_t *dec;
    size_t dn;
    assert_false(pd_base64_decode("ab=c", 4, &dec, &dn));
    assert_false(pd_base64_decode("abc", 3, &dec, &dn));
    assert_false(pd_base64_decode("a*cd", 4, &dec, &dn));
    /* the estimate: everything known gives the exact entropy; unknown mass adds a bucket */
    struct pd_token_rec r;
    memset(&r, 0, sizeof r);
    r.id = 1;
    r.logprob = (float)log(0.5);
    r.n_top = 2;
    r.top[0] = (struct pd_topk){1, (float)log(0.5)};
    r.top[1] = (struct pd_topk){2, (float)log(0.5)};
    pd_rproto_entropy_estimate(&r);
    assert_float_equal(r.entropy, 1.0, 1e-6);
    r.top[1].logprob = (float)log(0.25);
    pd_rproto_entropy_estimate(&r);
    assert_float_equal(r.entropy, 1.5, 1e-6); /* 0.5, 0.25 and a 0.25 bucket */
    assert_true(r.flags & PD_TOKF_ENTROPY_EST);
    /* servers and owners */
    assert_int_equal(pd_remote_server_from_owner("vllm"), PD_REMOTE_VLLM);
    assert_int_equal(pd_remote_server_from_owner("llamacpp"), PD_REMOTE_LLAMACPP);
    assert_int_equal(pd_remote_server_from_owner("someone"), PD_REMOTE_OPENAI);
    char base[128];
    struct pd_err err;
    assert_int_equal(pd_remote_base_url("http://h:1/v1/", base, sizeof base, &err), PD_OK);
    assert_string_equal(base, "http://h:1");
    assert_int_equal(pd_remote_base_url("ftp://h", base, sizeof base, &err), PD_EINVAL);
    assert_true(pd_serve_secret_eq("abc", "abc"));
    assert_false(pd_serve_secret_eq("abd", "abc"));
    assert_false(pd_serve_secret_eq("ab", "abc"));
    assert_false(pd_serve_secret_eq("abcd", "abc"));
}

/* ---- the client against a scripted server ---------------------------------------------- */

static struct fake_engine *fake_vllm(uint16_t *port)
{
    struct fake_engine *f = NULL;
    assert_int_equal(fake_engine_start(&f, port), 0);
    char path[1200];
    snprintf(path, sizeof path, "%s/vllm/models.json", g_fix);
    assert_int_equal(fake_engine_add_file(f, "GET", "/v1/models", 200, NULL, path), 0);
    return f;
}

static void add_file(struct fake_engine *f, const char *method, const char *route, int status,
                     const char *ctype, const char *rel)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", g_fix, rel);
    assert_int_equal(fake_engine_add_file(f, method, route, status, ctype, path), 0);
}

static struct pd_remote *open_client(uint16_t port, uint32_t retries, long idle_ms)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)port);
    struct pd_remote_params p = pd_remote_default_params();
    p.url = url;
    p.retries = retries;
    p.backoff_ms = 10;
    p.idle_timeout_ms = idle_ms;
    struct pd_remote *r = NULL;
    struct pd_err err;
    if (pd_remote_open(&p, &r, &err) != PD_OK) {
        fail_msg("open: %s", err.msg);
    }
    return r;
}

static void test_client_down(void **state)
{
    (void)state;
    /* a port nobody listens on: bind one, then close it */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
    struct pd_remote_params p = pd_remote_default_params();
    p.url = url;
    struct pd_remote *r = NULL;
    struct pd_err err;
    assert_int_equal(pd_remote_open(&p, &r, &err), PD_EIO);
    assert_null(r);
    assert_non_null(strstr(err.msg, "cannot use the engine"));
    assert_non_null(strstr(err.msg, url));
    p.url = "localhost:8000"; /* no scheme */
    assert_int_equal(pd_remote_open(&p, &r, &err), PD_EINVAL);
}

static void test_client_status_and_retry(void **state)
{
    (void)state;
    uint16_t port;
    struct fake_engine *f = fake_vllm(&port);
    /* 429 twice, then the answer */
    struct fake_route busy = fake_route_default("POST", "/v1/completions", 429,
                                                "{\"error\":{\"message\":\"queue full\"}}");
    busy.times = 2;
    fake_engine_add(f, &busy);
    add_file(f, "POST", "/v1/completions", 200, NULL, "vllm/echo_score.json");
    static const int32_t ids[] = {1, 450, 7483, 310, 3444, 338};
    struct pd_token_rec out[6];
    memset(out, 0, sizeof out);
    for (int i = 0; i < 6; i++) {
        out[i].id = ids[i];
    }
    struct pd_err err;
    struct pd_remote *r = open_client(port, 0, 0);
    assert_int_equal(pd_remote_score(r, ids, 6, 2, false, out, &err), PD_EIO);
    assert_non_null(strstr(err.msg, "HTTP 429"));
    assert_non_null(strstr(err.msg, "queue full"));
    pd_remote_close(&r);
    r = open_client(port, 3, 0);
    assert_int_equal(pd_remote_score(r, ids, 6, 2, false, out, &err), PD_OK);
    assert_int_equal(pd_remote_retries(r), 1); /* the second 429, then the answer */
    assert_float_equal(out[2].logprob, -7.5234f, 1e-6);
    /* the request ponder sent: ids, echo, no generation, ids in the answer */
    char *body = fake_engine_last_body(f, "/v1/completions");
    json_error_t je;
    json_t *o = json_loads(body, 0, &je);
    assert_non_null(o);
    assert_true(json_is_true(json_object_get(o, "echo")));
    assert_int_equal(json_integer_value(json_object_get(o, "max_tokens")), 0);
    assert_int_equal(json_integer_value(json_object_get(o, "logprobs")), 2);
    assert_true(json_is_true(json_object_get(o, "return_tokens_as_token_ids")));
    assert_int_equal(json_integer_value(json_array_get(json_object_get(o, "prompt"), 2)), 7483);
    json_decref(o);
    free(body);
    /* an error body the server sends is shown */
    add_file(f, "POST", "/v1/completions", 400, NULL, "vllm/error_400.json");
    fake_engine_stop(&f);
    pd_remote_close(&r);
    f = fake_vllm(&port);
    add_file(f, "POST", "/v1/completions", 400, NULL, "vllm/error_400.json");
    r = open_client(port, 3, 0);
    assert_int_equal(pd_remote_score(r, ids, 6, 2, false, out, &err), PD_EIO);
    assert_non_null(strstr(err.msg, "HTTP 400"));
    assert_non_null(strstr(err.msg, "maximum context length is 4096"));
    assert_int_equal(fake_engine_hits(f, "/v1/completions"), 1); /* 400 is not retried */
    pd_remote_close(&r);
    fake_engine_stop(&f);
}

static void test_client_redirect_and_kind(void **state)
{
    (void)state;
    uint16_t port;
    struct fake_engine *f = NULL;
    assert_int_equal(fake_engine_start(&f, &port), 0);
    struct fake_route mv = fake_route_default("GET", "/v1/models", 307, "");
    mv.location = "/moved/v1/models";
    fake_engine_add(f, &mv);
    add_file(f, "GET", "/moved/v1/models", 200, NULL, "sglang/models.json");
    struct pd_remote *r = open_client(port, 0, 0);
    assert_int_equal(pd_remote_info(r)->server, PD_REMOTE_SGLANG);
    assert_int_equal(pd_remote_info(r)->max_model_len, 4096);
    assert_string_equal(pd_remote_info(r)->model, "meta-llama/Llama-2-7b-hf");
    assert_int_equal(fake_engine_hits(f, "/moved/v1/models"), 1);
    /* SGLang streams through /generate */
    add_file(f, "POST", "/generate", 200, "text/event-stream", "sglang/generate_stream.sse");
    int32_t ids[] = {1, 450};
    struct pd_remote_gen g;
    memset(&g, 0, sizeof g);
    g.prompt = ids;
    g.n_prompt = 2;
    g.max_tokens = 3;
    g.sampling = pd_sampler_default_params();
    g.topk = 2;
    g.stream = true;
    struct toks k = {.n = 0};
    struct pd_remote_gen_result res;
    struct pd_err err;
    assert_int_equal(pd_remote_generate(r, &g, keep_token, NULL, &k, &res, &err), PD_OK);
    assert_int_equal(k.n, 3);
    assert_string_equal(res.finish, "length");
    toks_free(&k);
    /* asking for a model the server does not list */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)port);
    struct pd_remote_params p = pd_remote_default_params();
    p.url = url;
    p.model = "nope";
    struct pd_remote *r2 = NULL;
    assert_int_equal(pd_remote_open(&p, &r2, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "'nope'"));
    pd_remote_close(&r);
    fake_engine_stop(&f);
}

/* Finds the length of the stream fixture's first two events. */
static size_t two_events(const char *body)
{
    const char *e1 = strstr(body, "\n\n");
    const char *e2 = e1 ? strstr(e1 + 2, "\n\n") : NULL;
    assert_non_null(e2);
    return (size_t)(e2 + 2 - body);
}

static void test_client_cut_and_malformed(void **state)
{
    (void)state;
    size_t len;
    char *sse = slurp("vllm/stream_logprobs.sse", &len);
    size_t two = two_events(sse);
    uint16_t port;
    struct fake_engine *f = fake_vllm(&port);
    /* cut in the middle of the third event */
    struct fake_route cut = fake_route_default("POST", "/v1/completions", 200, sse);
    cut.content_type = "text/event-stream";
    cut.body_len = len;
    cut.cut_after = (long)two + 40;
    cut.times = 1;
    fake_engine_add(f, &cut);
    /* whole events, but the stream ends before the server's end marker */
    struct fake_route early = cut;
    early.cut_after = -1;
    early.body_len = two;
    fake_engine_add(f, &early);
    /* a truncated JSON document inside an event */
    static const char trunc[] = "data: {\"choices\":[{\"text\":\" a\",\"logprobs\":{\"tok\n\n";
    struct fake_route bad = fake_route_default("POST", "/v1/completions", 200, trunc);
    bad.content_type = "text/event-stream";
    bad.times = 1;
    fake_engine_add(f, &bad);
    struct pd_remote *r = open_client(port, 2, 0);
    int32_t ids[] = {1, 450};
    struct pd_remote_gen g;
    memset(&g, 0, sizeof g);
    g.prompt = ids;
    g.n_prompt = 2;
    g.max_tokens = 3;
    g.sampling = pd_sampler_default_params();
    g.topk = 2;
    g.stream = true;
    for (int round = 0; round < 3; round++) {
        struct toks k = {.n = 0};
        struct pd_remote_gen_result res;
        struct pd_err err;
        enum pd_status st = pd_remote_generate(r, &g, keep_token, NULL, &k, &res, &err);
        /* a broken connection (round 0) is an I/O error, a stream that ends cleanly without
         * the end marker (round 1) and bad JSON (round 2) are format errors */
        assert_int_equal(st, round == 0 ? PD_EIO : PD_EFORMAT);
        if (round < 2) {
            /* the two tokens that arrived were delivered; the message says it was cut */
            assert_int_equal(k.n, 2);
            assert_int_equal(res.n_tokens, 2);
            assert_non_null(strstr(err.msg, "cut off after 2 tokens"));
        } else {
            assert_int_equal(k.n, 0);
            assert_non_null(strstr(err.msg, "malformed JSON"));
        }
        toks_free(&k);
    }
    free(sse);
    pd_remote_close(&r);
    fake_engine_stop(&f);
}

struct gen_thread {
    struct pd_remote *r;
    enum pd_status st;
    struct pd_err err;
    atomic_int n_tokens;
};

static enum pd_status count_token(void *ud, struct pd_token_rec *tok, struct pd_err *err)
{
    (void)tok, (void)err;
    atomic_fetch_add(&((struct gen_thread *)ud)->n_tokens, 1);
    return PD_OK;
}

static void *gen_main(void *arg)
{
    struct gen_thread *t = arg;
    int32_t ids[] = {1, 450};
    struct pd_remote_gen g;
    memset(&g, 0, sizeof g);
    g.prompt = ids;
    g.n_prompt = 2;
    g.max_tokens = 3;
    g.sampling = pd_sampler_default_params();
    g.topk = 2;
    g.stream = true;
    struct pd_remote_gen_result res;
    t->st = pd_remote_generate(t->r, &g, count_token, NULL, t, &res, &t->err);
    return NULL;
}

static void test_client_silent_server(void **state)
{
    (void)state;
    size_t len;
    char *sse = slurp("vllm/stream_logprobs.sse", &len);
    size_t one = (size_t)(strstr(sse, "\n\n") + 2 - sse);
    uint16_t port;
    struct fake_engine *f = fake_vllm(&port);
    struct fake_route stall = fake_route_default("POST", "/v1/completions", 200, sse);
    stall.content_type = "text/event-stream";
    stall.body_len = len;
    stall.stall_after = (long)one; /* one token, then silence */
    fake_engine_add(f, &stall);
    /* the idle limit ends it */
    struct pd_remote *r = open_client(port, 0, 1000);
    struct gen_thread t = {r, PD_OK, {0, {0}}, 0};
    gen_main(&t);
    assert_int_equal(t.st, PD_EIO);
    assert_non_null(strstr(t.err.msg, "timed out"));
    assert_int_equal(atomic_load(&t.n_tokens), 1);
    pd_remote_close(&r);
    /* a cancel from another thread ends it (the idle limit is far away: a cancel that did
     * not work would end in a timeout, not PD_ECANCELLED) */
    r = open_client(port, 0, 120000);
    struct gen_thread t2 = {r, PD_OK, {0, {0}}, 0};
    pthread_t th;
    pthread_create(&th, NULL, gen_main, &t2);
    for (int i = 0; i < 2000 && atomic_load(&t2.n_tokens) == 0; i++) {
        struct timespec ts = {0, 5000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(atomic_load(&t2.n_tokens), 1);
    pd_remote_cancel(r);
    pthread_join(th, NULL);
    assert_int_equal(t2.st, PD_ECANCELLED);
    pd_remote_close(&r);
    free(sse);
    fake_engine_stop(&f);
}

static void test_client_tokenizer_check(void **state)
{
    (void)state;
    uint16_t port;
    struct fake_engine *f = fake_vllm(&port);
    struct pd_remote *r = open_client(port, 0, 0);
    bool checked = true;
    struct pd_err err;
    /* no tokenize endpoint: nothing to compare, said so */
    assert_int_equal(pd_remote_check_tokenizer(r, g_tok, &checked, &err), PD_OK);
    assert_false(checked);
    char *body = fake_engine_last_body(f, "/tokenize");
    assert_non_null(body);
    json_error_t je;
    json_t *o = json_loads(body, 0, &je);
    const char *probe = json_string_value(json_object_get(o, "prompt"));
    assert_non_null(probe);
    int32_t *ids;
    size_t n;
    assert_int_equal(pd_tok_encode(g_tok, probe, strlen(probe), false, true, &ids, &n, &err),
                     PD_OK);
    json_decref(o);
    free(body);
    /* the same tokens: agreement; one token different: a clear error */
    for (int variant = 0; variant < 2; variant++) {
        struct pd_buf b;
        pd_buf_init(&b);
        pd_buf_puts(&b, "{\"count\":1,\"tokens\":[");
        for (size_t i = 0; i < n; i++) {
            int32_t id = variant == 1 && i == 3 ? (ids[i] + 1) % 200 : ids[i];
            pd_buf_printf(&b, i ? ",%d" : "%d", id);
        }
        pd_buf_puts(&b, "]}");
        struct fake_route tr = fake_route_default("POST", "/tokenize", 200, b.data);
        tr.times = 1;
        fake_engine_add(f, &tr);
        pd_buf_deinit(&b);
        enum pd_status st = pd_remote_check_tokenizer(r, g_tok, &checked, &err);
        if (variant == 0) {
            assert_int_equal(st, PD_OK);
            assert_true(checked);
        } else {
            assert_int_equal(st, PD_EFORMAT);
            assert_non_null(strstr(err.msg, "disagrees with the local model at token 3"));
        }
    }
    free(ids);
    pd_remote_close(&r);
    fake_engine_stop(&f);
}

/* ---- the remote session ------------------------------------------------------------------ */

struct ev_log {
    size_t n_prompt, n_gen, n_mode, n_paused;
    bool finished, error;
    char text[256];
};

/* Reads events until the session ends or `until` says stop. */
static void read_events(struct pd_rsession *s, struct ev_log *l, bool (*until)(struct ev_log *))
{
    for (int i = 0; i < 20000; i++) {
        struct pd_event ev;
        if (!pd_rsession_wait(s, &ev, 50)) {
            if (!pd_rsession_running(s) && !l->finished && !l->error) {
                continue; /* the last events are still queued */
            }
            if (l->finished || l->error) {
                return;
            }
            continue;
        }
        if (ev.kind == PD_EV_TOKEN) {
            *(ev.tok.role == PD_ROLE_PROMPT ? &l->n_prompt : &l->n_gen) += 1;
        } else if (ev.kind == PD_EV_MODE) {
            l->n_mode++;
            snprintf(l->text, sizeof l->text, "%s", ev.text);
        } else if (ev.kind == PD_EV_PAUSED) {
            l->n_paused++;
        } else if (ev.kind == PD_EV_FINISHED) {
            l->finished = true;
            snprintf(l->text, sizeof l->text, "%s", ev.text);
        } else if (ev.kind == PD_EV_ERROR) {
            l->error = true;
            snprintf(l->text, sizeof l->text, "%s", ev.text);
        }
        pd_event_free(&ev);
        if (l->finished || l->error || (until && until(l))) {
            return;
        }
    }
    fail_msg("the remote session produced no end");
}

static bool one_generated(struct ev_log *l)
{
    return l->n_gen >= 1;
}

static bool paused(struct ev_log *l)
{
    return l->n_paused >= 1;
}

static bool refused(struct ev_log *l)
{
    return l->n_mode >= 1;
}

static struct pd_rsession *start_rsession(uint16_t port)
{
    struct pd_remote *r = open_client(port, 0, 120000);
    struct pd_rsession_params p = pd_rsession_default_params();
    p.topk = 2;
    p.n_predict = 3;
    struct pd_rsession *s = NULL;
    struct pd_err err;
    assert_int_equal(pd_rsession_open(r, NULL, &p, &s, &err), PD_OK);
    static const int32_t ids[] = {1, 450, 7483, 310, 3444, 338};
    assert_int_equal(pd_rsession_start_tokens(s, ids, 6, &err), PD_OK);
    return s;
}

static void test_rsession_cut_and_commands(void **state)
{
    (void)state;
    size_t len;
    char *sse = slurp("vllm/stream_logprobs.sse", &len);
    size_t two = two_events(sse);
    uint16_t port;
    struct fake_engine *f = fake_vllm(&port);
    /* the prompt is scored first (once), then the stream is cut after two tokens */
    size_t sl;
    char *sb = slurp("vllm/echo_score.json", &sl);
    struct fake_route score = fake_route_default("POST", "/v1/completions", 200, sb);
    score.body_len = sl;
    score.times = 1;
    fake_engine_add(f, &score);
    /* texts come from the server's detokenizer (no local vocabulary here) */
    struct fake_route dt = fake_route_default("POST", "/detokenize", 200, "{\"prompt\":\"x\"}");
    fake_engine_add(f, &dt);
    struct fake_route cut = fake_route_default("POST", "/v1/completions", 200, sse);
    cut.content_type = "text/event-stream";
    cut.body_len = len;
    cut.cut_after = (long)two + 30;
    fake_engine_add(f, &cut);
    struct pd_rsession *s = start_rsession(port);
    struct ev_log l = {0};
    read_events(s, &l, NULL);
    /* what arrived is kept (sent as events), and the session ends with an error that says
     * the stream was cut, not with a normal finish */
    assert_int_equal(l.n_prompt, 6);
    assert_int_equal(l.n_gen, 2);
    assert_true(l.error);
    assert_false(l.finished);
    assert_non_null(strstr(l.text, "cut off after 2 tokens"));
    pd_rsession_close(&s);
    fake_engine_stop(&f);

    /* pause ends the stream at once; a KV command is refused with a message; stop ends */
    f = fake_vllm(&port);
    fake_engine_add(f, &score);
    fake_engine_add(f, &dt);
    size_t one = (size_t)(strstr(sse, "\n\n") + 2 - sse);
    struct fake_route stall = fake_route_default("POST", "/v1/completions", 200, sse);
    stall.content_type = "text/event-stream";
    stall.body_len = len;
    stall.stall_after = (long)one;
    fake_engine_add(f, &stall);
    s = start_rsession(port);
    memset(&l, 0, sizeof l);
    read_events(s, &l, one_generated);
    assert_int_equal(l.n_gen, 1);
    struct pd_cmd c;
    memset(&c, 0, sizeof c);
    c.kind = PD_CMD_PAUSE;
    c.token = -1;
    struct pd_err err;
    assert_int_equal(pd_rsession_send(s, &c, &err), PD_OK);
    read_events(s, &l, paused);
    assert_int_equal(l.n_paused, 1);
    c.kind = PD_CMD_SET_BUDGET;
    c.budget = 10;
    assert_int_equal(pd_rsession_send(s, &c, &err), PD_OK);
    read_events(s, &l, refused); /* (a stop sent at once would pre-empt it) */
    c.kind = PD_CMD_STOP;
    assert_int_equal(pd_rsession_send(s, &c, &err), PD_OK);
    read_events(s, &l, NULL);
    assert_true(l.finished);
    assert_string_equal(l.text, "stopped");
    assert_int_equal(l.n_mode, 1); /* the refused budget */
    pd_rsession_close(&s);
    fake_engine_stop(&f);
    free(sb);
    free(sse);
}

/* ---- ponder serve ---------------------------------------------------------------------------- */

static struct pd_serve *serve_start(const char *key, uint32_t queue, size_t max_body,
                                    double throttle_ms)
{
    struct pd_serve_params p = pd_serve_default_params();
    p.port = 0;
    p.model_name = "tiny";
    p.api_key = key;
    p.queue_max = queue;
    p.max_body = max_body;
    p.ctx.n_ctx = 4096;
    p.ctx.n_threads = 1;
    p.throttle_ms = throttle_ms;
    struct pd_serve *s = NULL;
    struct pd_err err;
    if (pd_serve_open(g_model, g_tok, &p, &s, &err) != PD_OK) {
        fail_msg("serve: %s", err.msg);
    }
    return s;
}

/* One raw request through pd_http (api_key may be NULL); returns the status. */
static long http(uint16_t port, const char *key, const char *method, const char *path,
                 const char *body, struct pd_http_resp *resp)
{
    struct pd_http_params hp = pd_http_default_params();
    hp.api_key = key;
    struct pd_http *h = NULL;
    struct pd_err err;
    assert_int_equal(pd_http_open(&hp, &h, &err), PD_OK);
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)port, path);
    pd_http_resp_init(resp);
    enum pd_status st = pd_http_request(h, method, url, body, body ? strlen(body) : 0, NULL,
                                        NULL, resp, &err);
    if (st != PD_OK) {
        fail_msg("%s %s: %s", method, path, err.msg);
    }
    pd_http_close(&h);
    return resp->status;
}

static void expect_status(uint16_t port, const char *key, const char *method, const char *path,
                          const char *body, long want, const char *msg)
{
    struct pd_http_resp resp;
    long got = http(port, key, method, path, body, &resp);
    if (got != want || (msg && (!resp.body.data || !strstr(resp.body.data, msg)))) {
        fail_msg("%s %s: HTTP %ld (want %ld), body %s", method, path, got, want,
                 resp.body.data ? resp.body.data : "");
    }
    pd_http_resp_deinit(&resp);
}

static void test_serve_auth_and_limits(void **state)
{
    (void)state;
    struct pd_serve *s = serve_start("sekret", 4, 2048, 0);
    uint16_t port = pd_serve_port(s);
    expect_status(port, NULL, "GET", "/health", NULL, 401, "API key");
    expect_status(port, "wrong", "GET", "/v1/models", NULL, 401, "API key");
    expect_status(port, "sekret", "GET", "/health", NULL, 200, "ok");
    expect_status(port, "sekret", "GET", "/v1/models", NULL, 200, "\"owned_by\":\"ponder\"");
    expect_status(port, "sekret", "GET", "/v2/nothing", NULL, 404, "no such endpoint");
    expect_status(port, "sekret", "GET", "/v1/completions", NULL, 405, "use POST");
    expect_status(port, "sekret", "POST", "/v1/completions", "{\"prompt\": [1, 2", 400,
                  "malformed JSON");
    expect_status(port, "sekret", "POST", "/v1/completions",
                  "{\"prompt\": [1, 2], \"logprobs\": 21}", 400, "'logprobs'");
    expect_status(port, "sekret", "POST", "/v1/completions",
                  "{\"prompt\": [1, 99999999]}", 400, "prompt[1]");
    expect_status(port, "sekret", "POST", "/v1/completions",
                  "{\"prompt\": [1, 2], \"stop\": [\"x\"]}", 400, "'stop' is not supported");
    expect_status(port, "sekret", "POST", "/v1/completions",
                  "{\"prompt\": [1, 2], \"max_tokens\": 5000}", 400, "maximum context length");
    expect_status(port, "sekret", "POST", "/v1/completions",
                  "{\"model\": \"other\", \"prompt\": [1, 2]}", 404, "does not exist");
    char big[3000];
    memset(big, ' ', sizeof big - 1);
    big[0] = '{';
    big[sizeof big - 2] = '}';
    big[sizeof big - 1] = '\0';
    expect_status(port, "sekret", "POST", "/v1/completions", big, 413, "larger than 2048");
    expect_status(port, "sekret", "POST", "/tokenize", "{\"prompt\": \"hello\"}", 200,
                  "\"tokens\":[");
    struct pd_serve_stats st;
    pd_serve_stats(s, &st);
    assert_int_equal(st.rejected_auth, 2);
    pd_serve_close(&s);
    assert_null(s);
}

static void test_serve_queue_bound(void **state)
{
    (void)state;
    struct pd_serve *s = serve_start(NULL, 0, 0, 20);
    uint16_t port = pd_serve_port(s);
    /* a client that asks for a long stream (20 ms a token) holds the engine */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    static const char body[] = "{\"prompt\":[1,2,3],\"max_tokens\":3000,\"temperature\":0,"
                               "\"stream\":true}";
    char req[512];
    int n = snprintf(req, sizeof req, "POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                                      "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                                      "\r\n%s", sizeof body - 1, body);
    assert_int_equal(write(fd, req, (size_t)n), n);
    /* wait until it streams (it holds the engine then; a request sent earlier could take
     * the engine first and have this one turned away) */
    char got_bytes[4096];
    size_t have = 0;
    while (have < sizeof got_bytes - 1) {
        ssize_t k = read(fd, got_bytes + have, sizeof got_bytes - 1 - have);
        assert_true(k > 0);
        have += (size_t)k;
        got_bytes[have] = '\0';
        if (strstr(got_bytes, "data: ")) {
            break;
        }
    }
    assert_non_null(strstr(got_bytes, "HTTP/1.1 200"));
    /* meanwhile the next request finds the queue full (0 may wait) */
    long got = 0;
    for (int i = 0; i < 400 && got != 429; i++) {
        struct pd_http_resp resp;
        got = http(port, NULL, "POST", "/v1/completions",
                   "{\"prompt\":[1,2],\"max_tokens\":1}", &resp);
        if (got == 429) {
            assert_non_null(strstr(resp.body.data, "busy"));
        }
        pd_http_resp_deinit(&resp);
        if (got != 429) {
            struct timespec ts = {0, 10000000L};
            nanosleep(&ts, NULL);
        }
    }
    assert_int_equal(got, 429);
    /* the reader goes away: the engine is free again */
    close(fd);
    for (int i = 0; i < 1000 && got != 200; i++) {
        struct pd_http_resp resp;
        got = http(port, NULL, "POST", "/v1/completions", "{\"prompt\":[1,2],\"max_tokens\":1}",
                   &resp);
        pd_http_resp_deinit(&resp);
        if (got != 200) {
            struct timespec ts = {0, 10000000L};
            nanosleep(&ts, NULL);
        }
    }
    assert_int_equal(got, 200);
    struct pd_serve_stats st;
    pd_serve_stats(s, &st);
    assert_true(st.rejected_busy >= 1);
    pd_serve_close(&s);
}

struct probe_cb {
    const int32_t *ids;
    size_t n;
    struct pd_token_rec *recs;
};

static void probe_logits(void *ud, size_t i, int64_t pos, const float *logits)
{
    (void)pos;
    struct probe_cb *c = ud;
    if (i + 1 < c->n) {
        pd_probe_fill(logits, g_model->hp.n_vocab, c->ids[i + 1], 5, &c->recs[i + 1]);
    }
}

static void test_serve_matches_in_process(void **state)
{
    (void)state;
    struct pd_serve *s = serve_start(NULL, 4, 0, 0);
    struct pd_remote *r = open_client(pd_serve_port(s), 0, 0);
    assert_int_equal(pd_remote_info(r)->server, PD_REMOTE_PONDER);
    bool checked = false;
    struct pd_err err;
    assert_int_equal(pd_remote_check_tokenizer(r, g_tok, &checked, &err), PD_OK);
    assert_true(checked);
    /* teacher-forced: HTTP against a context in this process; the second and third
     * sequences share a prefix with the one before (the server reuses it, the answer must
     * not change), the last asks for attention (evaluated from scratch) */
    int32_t ids[40];
    for (int i = 0; i < 40; i++) {
        ids[i] = (int32_t)((i * 37 + 5) % g_model->hp.n_vocab);
    }
    for (int variant = 0; variant < 4; variant++) {
        if (variant == 1) {
            ids[30] = (ids[30] + 1) % (int32_t)g_model->hp.n_vocab;
        } else if (variant == 2) {
            ids[12] = (ids[12] + 3) % (int32_t)g_model->hp.n_vocab;
        }
        size_t n = variant == 2 ? 25 : 40;
        bool attn = variant == 3;
        struct pd_token_rec http_recs[40], local[40];
        memset(http_recs, 0, sizeof http_recs);
        memset(local, 0, sizeof local);
        for (size_t i = 0; i < n; i++) {
            http_recs[i].id = local[i].id = ids[i];
        }
        assert_int_equal(pd_remote_score(r, ids, n, 5, attn, http_recs, &err), PD_OK);
        struct pd_ctx_params cp = pd_ctx_default_params();
        cp.n_ctx = 4096;
        struct pd_ctx *ctx = NULL;
        assert_int_equal(pd_ctx_open(g_model, &cp, &ctx, &err), PD_OK);
        struct probe_cb cb = {ids, n, local};
        assert_int_equal(pd_ctx_eval(ctx, ids, n, probe_logits, &cb, &err), PD_OK);
        pd_ctx_close(&ctx);
        for (size_t i = 1; i < n; i++) {
            assert_float_equal(http_recs[i].logprob, local[i].logprob, 1e-6);
            assert_float_equal(http_recs[i].entropy, local[i].entropy, 1e-6);
            assert_false(http_recs[i].flags & PD_TOKF_ENTROPY_EST); /* exact from ponder */
            assert_int_equal(http_recs[i].n_top, local[i].n_top);
            for (int k = 0; k < local[i].n_top; k++) {
                assert_int_equal(http_recs[i].top[k].id, local[i].top[k].id);
                assert_float_equal(http_recs[i].top[k].logprob, local[i].top[k].logprob, 1e-6);
            }
            assert_true((http_recs[i].attn != NULL) == attn);
        }
        for (size_t i = 0; i < n; i++) {
            pd_token_rec_free(&http_recs[i]);
            pd_token_rec_free(&local[i]);
        }
    }
    /* generation: the same ids and log-probabilities as a session in this process */
    struct pd_session_params sp = pd_session_default_params();
    sp.ctx.n_ctx = 4096;
    sp.sampling.temperature = 0.9f;
    sp.sampling.seed = 11;
    sp.n_predict = 24;
    sp.topk = 5;
    sp.capture = PD_CAPTURE_LEVEL_OFF;
    pd_chat_format_default(PD_CHAT_FAMILY_RAW, &sp.chat);
    struct pd_session *sess = NULL;
    assert_int_equal(pd_session_open(g_model, g_tok, &sp, &sess, &err), PD_OK);
    assert_int_equal(pd_session_start_tokens(sess, ids, 8, &err), PD_OK);
    struct toks want = {.n = 0};
    for (;;) {
        struct pd_event ev;
        if (!pd_session_wait(sess, &ev, 1000)) {
            continue;
        }
        bool end = ev.kind == PD_EV_FINISHED || ev.kind == PD_EV_ERROR;
        if (ev.kind == PD_EV_TOKEN && ev.tok.role != PD_ROLE_PROMPT && want.n < 32) {
            keep_token(&want, &ev.tok, NULL);
        }
        pd_event_free(&ev);
        if (end) {
            break;
        }
    }
    pd_session_close(&sess);
    struct pd_remote_gen g;
    memset(&g, 0, sizeof g);
    g.prompt = ids;
    g.n_prompt = 8;
    g.max_tokens = 24;
    g.sampling = sp.sampling;
    g.topk = 5;
    g.stream = true;
    struct toks got = {.n = 0};
    struct pd_remote_gen_result res;
    assert_int_equal(pd_remote_generate(r, &g, keep_token, NULL, &got, &res, &err), PD_OK);
    assert_int_equal(got.n, want.n);
    for (size_t i = 0; i < got.n; i++) {
        assert_int_equal(got.t[i].id, want.t[i].id);
        assert_float_equal(got.t[i].logprob, want.t[i].logprob, 1e-6);
        assert_float_equal(got.t[i].entropy, want.t[i].entropy, 1e-6);
    }
    toks_free(&got);
    toks_free(&want);
    /* greedy, whole response (the server's fast path on its scoring context) against a
     * greedy session */
    sp.sampling.temperature = 0;
    assert_int_equal(pd_session_open(g_model, g_tok, &sp, &sess, &err), PD_OK);
    assert_int_equal(pd_session_start_tokens(sess, ids, 8, &err), PD_OK);
    for (;;) {
        struct pd_event ev;
        if (!pd_session_wait(sess, &ev, 1000)) {
            continue;
        }
        bool end = ev.kind == PD_EV_FINISHED || ev.kind == PD_EV_ERROR;
        if (ev.kind == PD_EV_TOKEN && ev.tok.role != PD_ROLE_PROMPT && want.n < 32) {
            keep_token(&want, &ev.tok, NULL);
        }
        pd_event_free(&ev);
        if (end) {
            break;
        }
    }
    pd_session_close(&sess);
    g.sampling.temperature = 0;
    g.stream = false;
    assert_int_equal(pd_remote_generate(r, &g, keep_token, NULL, &got, &res, &err), PD_OK);
    assert_int_equal(got.n, want.n);
    for (size_t i = 0; i < got.n; i++) {
        assert_int_equal(got.t[i].id, want.t[i].id);
        assert_float_equal(got.t[i].logprob, want.t[i].logprob, 1e-6);
        assert_float_equal(got.t[i].entropy, want.t[i].entropy, 1e-6);
    }
    toks_free(&got);
    toks_free(&want);
    pd_remote_close(&r);
    pd_serve_close(&s);
}

/* Reads events until pred says stop (or the session ends), recording the tokens. */
struct live_log {
    struct toks t;                /* generated / injected tokens, in order */
    int64_t branched_at;
    bool pruned, paused, finished;
    char finish[64];
};

static void live_read(struct pd_rsession *s, struct live_log *l, bool (*pred)(struct live_log *))
{
    for (int i = 0; i < 40000; i++) {
        struct pd_event ev;
        if (!pd_rsession_wait(s, &ev, 50)) {
            if (l->finished) {
                return;
            }
            continue;
        }
        if (ev.kind == PD_EV_TOKEN && ev.tok.role != PD_ROLE_PROMPT && l->t.n < 32) {
            keep_token(&l->t, &ev.tok, NULL);
        } else if (ev.kind == PD_EV_BRANCHED) {
            l->branched_at = ev.pos;
            l->t.n = 0; /* what follows is the branch */
        } else if (ev.kind == PD_EV_PRUNED) {
            l->pruned = true;
        } else if (ev.kind == PD_EV_PAUSED) {
            l->paused = true;
        } else if (ev.kind == PD_EV_FINISHED || ev.kind == PD_EV_ERROR) {
            l->finished = true;
            snprintf(l->finish, sizeof l->finish, "%s", ev.text);
        }
        pd_event_free(&ev);
        if (l->finished || (pred && pred(l))) {
            return;
        }
    }
    fail_msg("the remote session did not get there");
}

static bool five_tokens(struct live_log *l)
{
    return l->t.n >= 5;
}

static bool is_paused(struct live_log *l)
{
    return l->paused;
}

static bool three_after_branch(struct live_log *l)
{
    return l->branched_at > 0 && l->t.n >= 3;
}

static bool was_pruned(struct live_log *l)
{
    return l->pruned;
}

static void send_cmd(struct pd_rsession *s, enum pd_cmd_kind kind, int64_t pos, int64_t end,
                     int32_t token, const char *text)
{
    struct pd_cmd c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.pos = pos;
    c.pos_end = end;
    c.token = token;
    c.reencode = true;
    if (text) {
        snprintf(c.text, sizeof c.text, "%s", text);
    }
    struct pd_err err;
    if (pd_rsession_send(s, &c, &err) != PD_OK) {
        fail_msg("send: %s", err.msg);
    }
}

/* Steering by an alternative, injecting and pruning-and-continuing on a real ponder serve:
 * each ends the stream and the next request's prompt is the edited sequence. */
static void test_rsession_on_serve(void **state)
{
    (void)state;
    struct pd_serve *srv = serve_start(NULL, 4, 0, 5);
    struct pd_remote *r = open_client(pd_serve_port(srv), 0, 0);
    struct pd_rsession_params p = pd_rsession_default_params();
    p.n_predict = 200;
    p.sampling.temperature = 0;
    struct pd_rsession *s = NULL;
    struct pd_err err;
    assert_int_equal(pd_rsession_open(r, g_tok, &p, &s, &err), PD_OK);
    int32_t prompt[] = {1, 20, 30, 40};
    assert_int_equal(pd_rsession_start_tokens(s, prompt, 4, &err), PD_OK);
    struct live_log l;
    memset(&l, 0, sizeof l);
    live_read(s, &l, five_tokens);
    /* steer: at the second generated position take the model's second choice */
    const struct pd_token_rec *second = &l.t.t[1];
    assert_true(second->n_top >= 2);
    int32_t alt = second->top[0].id == second->id ? second->top[1].id : second->top[0].id;
    int64_t at = second->pos;
    toks_free(&l.t);
    send_cmd(s, PD_CMD_BRANCH, at, at, alt, NULL);
    live_read(s, &l, three_after_branch);
    assert_int_equal(l.branched_at, at);
    assert_int_equal(l.t.t[0].pos, at);
    assert_int_equal(l.t.t[0].id, alt);
    assert_int_equal(l.t.t[0].role, PD_ROLE_INJECTED);
    assert_false(isnan(l.t.t[0].logprob)); /* scored teacher-forced */
    assert_int_equal(l.t.t[1].pos, at + 1);
    toks_free(&l.t);
    /* inject while paused: the text is the next request's prompt tail */
    send_cmd(s, PD_CMD_PAUSE, 0, 0, -1, NULL);
    live_read(s, &l, is_paused);
    send_cmd(s, PD_CMD_INJECT, 0, 0, -1, "hello");
    send_cmd(s, PD_CMD_RESUME, 0, 0, -1, NULL);
    live_read(s, &l, five_tokens);
    assert_int_equal(l.t.t[0].role, PD_ROLE_INJECTED);
    /* prune-and-continue: the span goes, the stream goes on */
    send_cmd(s, PD_CMD_PRUNE, 4, 6, -1, NULL);
    live_read(s, &l, was_pruned);
    toks_free(&l.t);
    live_read(s, &l, five_tokens);
    send_cmd(s, PD_CMD_STOP, 0, 0, -1, NULL);
    live_read(s, &l, NULL);
    assert_true(l.finished);
    assert_string_equal(l.finish, "stopped");
    toks_free(&l.t);
    pd_rsession_close(&s);
    pd_serve_close(&srv);
}

/* keep_alive: an end parks the session; continue starts a new leg of its own budget,
 * a sampling change reaches the next request, a branch generates its own n_predict, stop
 * ends it without a second end event. */
static void test_rsession_keep_alive(void **state)
{
    (void)state;
    struct pd_serve *srv = serve_start(NULL, 4, 0, 5);
    struct pd_remote *r = open_client(pd_serve_port(srv), 0, 0);
    struct pd_rsession_params p = pd_rsession_default_params();
    p.n_predict = 4;
    p.sampling.temperature = 0;
    p.keep_alive = true;
    struct pd_rsession *s = NULL;
    struct pd_err err;
    assert_int_equal(pd_rsession_open(r, g_tok, &p, &s, &err), PD_OK);
    int32_t prompt[] = {1, 20, 30, 40};
    assert_int_equal(pd_rsession_start_tokens(s, prompt, 4, &err), PD_OK);
    struct live_log l;
    memset(&l, 0, sizeof l);
    live_read(s, &l, NULL);
    assert_string_equal(l.finish, "length");
    assert_int_equal(l.t.n, 4);
    assert_true(pd_rsession_running(s)); /* parked, not ended */
    /* continue: 3 more tokens, after a "continue" resume */
    struct pd_cmd c;
    memset(&c, 0, sizeof c);
    c.kind = PD_CMD_CONTINUE;
    c.budget = 3;
    assert_int_equal(pd_rsession_send(s, &c, &err), PD_OK);
    bool resumed = false;
    size_t before = l.t.n;
    for (int i = 0; i < 4000 && !resumed; i++) {
        struct pd_event ev;
        if (pd_rsession_wait(s, &ev, 50)) {
            resumed = ev.kind == PD_EV_RESUMED && strcmp(ev.text, "continue") == 0;
            assert_int_not_equal(ev.kind, PD_EV_TOKEN); /* nothing before the new leg */
            pd_event_free(&ev);
        }
    }
    assert_true(resumed);
    l.finished = false;
    live_read(s, &l, NULL);
    assert_string_equal(l.finish, "length");
    assert_int_equal(l.t.n, before + 3);
    assert_int_equal(l.t.t[before].pos, 8); /* it goes on where the first leg ended */
    /* a sampling change, then a branch: n_predict tokens, sampled with the new settings */
    memset(&c, 0, sizeof c);
    c.kind = PD_CMD_SET_SAMPLING;
    c.sampling = pd_sampler_default_params();
    c.sampling.temperature = 0.7f;
    c.sampling.seed = 11;
    assert_int_equal(pd_rsession_send(s, &c, &err), PD_OK);
    toks_free(&l.t);
    l.finished = false;
    send_cmd(s, PD_CMD_BRANCH, 6, 6, -1, NULL);
    live_read(s, &l, NULL);
    assert_string_equal(l.finish, "length");
    assert_int_equal(l.branched_at, 6);
    assert_int_equal(l.t.n, 4);
    assert_int_equal(l.t.t[0].pos, 6);
    struct pd_rsession_span sp[8];
    size_t n = pd_rsession_spans(s, sp, 8);
    assert_true(n >= 3 && n <= 8);
    assert_true(sp[0].sampling.temperature == 0);
    assert_true(sp[n - 1].sampling.temperature == 0.7f);
    assert_int_equal(sp[n - 1].pos_begin, 6);
    /* stop while parked: the worker ends, no second end event */
    send_cmd(s, PD_CMD_STOP, 0, 0, -1, NULL);
    for (int i = 0; i < 200 && pd_rsession_running(s); i++) {
        struct pd_event ev;
        if (pd_rsession_wait(s, &ev, 50)) {
            assert_int_not_equal(ev.kind, PD_EV_FINISHED);
            pd_event_free(&ev);
        }
    }
    assert_false(pd_rsession_running(s));
    toks_free(&l.t);
    pd_rsession_close(&s);
    pd_serve_close(&srv);
}

/* /v1/chat/completions, whole and streamed. */
static void test_serve_chat(void **state)
{
    (void)state;
    struct pd_serve *s = serve_start(NULL, 4, 0, 0);
    uint16_t port = pd_serve_port(s);
    static const char body[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                               "\"max_tokens\":4,\"temperature\":0,\"logprobs\":true,"
                               "\"top_logprobs\":2}";
    struct pd_http_resp resp;
    assert_int_equal(http(port, NULL, "POST", "/v1/chat/completions", body, &resp), 200);
    json_error_t je;
    json_t *o = json_loadb(resp.body.data, resp.body.len, 0, &je);
    assert_non_null(o);
    json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(o, "object")), "chat.completion");
    assert_string_equal(json_string_value(json_object_get(json_object_get(ch, "message"),
                                                          "role")), "assistant");
    json_t *content = json_object_get(json_object_get(ch, "logprobs"), "content");
    assert_int_equal(json_array_size(content), 4);
    assert_int_equal(json_array_size(json_object_get(json_array_get(content, 0),
                                                     "top_logprobs")), 2);
    assert_int_equal(json_array_size(json_object_get(json_object_get(ch, "ponder"), "tokens")),
                     4);
    json_decref(o);
    pd_http_resp_deinit(&resp);
    static const char sbody[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                                "\"max_tokens\":3,\"stream\":true}";
    assert_int_equal(http(port, NULL, "POST", "/v1/chat/completions", sbody, &resp), 200);
    assert_non_null(strstr(resp.body.data, "\"object\":\"chat.completion.chunk\""));
    assert_non_null(strstr(resp.body.data, "\"delta\":{\"role\":\"assistant\""));
    assert_non_null(strstr(resp.body.data, "data: [DONE]"));
    pd_http_resp_deinit(&resp);
    expect_status(port, NULL, "POST", "/v1/chat/completions",
                  "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", 400,
                  "messages[0].role");
    pd_serve_close(&s);
}

/* ---- setup ------------------------------------------------------------------------------ */

static int setup(void **state)
{
    (void)state;
    const char *root = getenv("PONDER_SOURCE_ROOT");
    if (!root) {
        fprintf(stderr, "PONDER_SOURCE_ROOT is not set\n");
        return -1;
    }
    snprintf(g_fix, sizeof g_fix, "%s/tests/fixtures/remote", root);
    g_tmp = test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/remote-llama.gguf", g_tmp);
    const char *args[] = {"--arch", "llama", "--type", "f32", "--seed", "5", NULL};
    struct pd_err err;
    if (test_mkmodel(args, path) || pd_model_open(path, &g_model, &err) ||
        pd_tok_open_gguf(g_model->gguf, &g_tok, &err)) {
        fprintf(stderr, "cannot make the test model\n");
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pd_tok_close(&g_tok);
    pd_model_close(&g_model);
    free(g_tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse_every_split),
        cmocka_unit_test(test_sse_cut_and_bound),
        cmocka_unit_test(test_vllm_stream),
        cmocka_unit_test(test_vllm_score),
        cmocka_unit_test(test_sglang),
        cmocka_unit_test(test_llamacpp_generate),
        cmocka_unit_test(test_llamacpp_score),
        cmocka_unit_test(test_llamacpp_endpoints),
        cmocka_unit_test(test_error_bodies),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_requests_and_helpers),
        cmocka_unit_test(test_client_down),
        cmocka_unit_test(test_client_status_and_retry),
        cmocka_unit_test(test_client_redirect_and_kind),
        cmocka_unit_test(test_client_cut_and_malformed),
        cmocka_unit_test(test_client_silent_server),
        cmocka_unit_test(test_client_tokenizer_check),
        cmocka_unit_test(test_rsession_cut_and_commands),
        cmocka_unit_test(test_serve_auth_and_limits),
        cmocka_unit_test(test_serve_queue_bound),
        cmocka_unit_test(test_serve_matches_in_process),
        cmocka_unit_test(test_rsession_on_serve),
        cmocka_unit_test(test_rsession_keep_alive),
        cmocka_unit_test(test_serve_chat),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
