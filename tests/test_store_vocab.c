/* test_store_vocab.c - store_vocab: a model's vocabulary blob (layout, corrupt blobs
 * refused by name), pieces an imported record carried (per session, a branch sees its
 * ancestors'), the order the two are consulted in, ponder records bringing pieces along,
 * and SHA-256 fed in pieces (store/sha256). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sha256.h"
#include "store.h"
#include "store_jsonl.h"
#include "store_vocab.h"
#include "store_fixture.h"

STORE_FX("vocab")

/* A five-piece vocabulary: a word, an empty piece, half of a character, a NUL, "x". */
static const char *const k_pieces[] = {" the", "", "\xe2", "\0", "x"};
static const size_t k_lens[] = {4, 0, 1, 1, 1};

static const char *piece5(void *ud, int32_t id, size_t *len)
{
    (void)ud;
    if (id < 0 || id >= 5) {
        return NULL;
    }
    *len = k_lens[id];
    return k_pieces[id];
}

static const char *long_piece(void *ud, int32_t id, size_t *len)
{
    static char big[PD_PIECE_MAX + 1];
    memset(big, 'a', sizeof big);
    *len = id == 1 ? PD_PIECE_MAX + 1 : 1;
    (void)ud;
    return big;
}

static int64_t model(struct pd_store *st, char c)
{
    char sha[65];
    memset(sha, c, 64);
    sha[64] = '\0';
    struct pd_model_ident mi = {"m.gguf", 1, sha, "llama"};
    int64_t id = 0;
    struct pd_err err;
    assert_int_equal(pd_store_model_put(st, &mi, &id, &err), PD_OK);
    return id;
}

static int64_t session(struct pd_store *st, int64_t model_id, int64_t parent)
{
    struct pd_message m = {PD_STORE_MSG_USER, "q"};
    struct pd_session_new sn = {.model_id = model_id, .messages = &m, .n_messages = 1,
                                .source = "test", .parent_id = parent};
    int64_t id = 0;
    struct pd_err err;
    assert_int_equal(pd_store_session_create(st, &sn, &id, &err), PD_OK);
    return id;
}

static void expect_piece(const struct pd_pieces *p, int32_t id, const char *want, size_t n)
{
    size_t len = 99;
    const char *got = pd_pieces_get(p, id, &len);
    if (!want) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_int_equal(len, n);
    assert_memory_equal(got, want, n);
}

static void test_vocab_blob_layout_and_corruption(void **state)
{
    (void)state;
    struct pd_err err;
    uint8_t *b = NULL;
    size_t len = 0;
    assert_int_equal(pd_vocab_blob_encode(5, piece5, NULL, &b, &len, &err), PD_OK);
    /* header, five ends, seven bytes of pieces */
    assert_int_equal(len, 8 + 5 * 4 + 7);
    assert_int_equal(b[0], 1);
    assert_int_equal(b[4], 5);
    assert_int_equal(b[8], 4);   /* " the" ends at 4 */
    assert_int_equal(b[12], 4);  /* the empty piece */
    assert_int_equal(b[24], 7);
    uint32_t n = 0;
    assert_int_equal(pd_vocab_blob_check(b, len, &n, &err), PD_OK);
    assert_int_equal(n, 5);
    /* every corruption is refused, naming what is wrong */
    static const struct {
        size_t at;
        uint8_t v;
        const char *why;
    } bad[] = {
        {0, 2, "bad header"},          /* version */
        {2, 1, "bad header"},          /* reserved byte */
        {4, 0, "0 pieces"},            /* no piece */
        {5, 1, "pieces in"},           /* count beyond the blob */
        {12, 3, "piece 1: bad end"},   /* an end before the previous one */
        {24, 6, "6 bytes of pieces"},  /* the last end short of the bytes */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t *c = malloc(len);
        memcpy(c, b, len);
        c[bad[i].at] = bad[i].v;
        pd_err_clear(&err);
        if (pd_vocab_blob_check(c, len, &n, &err) != PD_EFORMAT || !strstr(err.msg, bad[i].why)) {
            fail_msg("case %zu: '%s' (want '%s')", i, err.msg, bad[i].why);
        }
        free(c);
    }
    assert_int_equal(pd_vocab_blob_check(b, len - 1, &n, &err), PD_EFORMAT); /* truncated */
    assert_int_equal(pd_vocab_blob_check(b, 7, &n, &err), PD_EFORMAT);
    free(b);
    assert_int_equal(pd_vocab_blob_encode(3, long_piece, NULL, &b, &len, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "piece 1 is 1025 bytes"));
    assert_int_equal(pd_vocab_blob_encode(0, piece5, NULL, &b, &len, &err), PD_EINVAL);
}

static void test_vocab_and_pieces(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t m = model(f->st, 'a');
    bool has = true;
    assert_int_equal(pd_store_vocab_has(f->st, m, &has, &err), PD_OK);
    assert_false(has);
    assert_int_equal(pd_store_vocab_put(f->st, m, 5, piece5, NULL, &err), PD_OK);
    assert_int_equal(pd_store_vocab_has(f->st, m, &has, &err), PD_OK);
    assert_true(has);
    /* a second put keeps the first (a model's vocabulary never changes) */
    assert_int_equal(pd_store_vocab_put(f->st, m, 3, long_piece, NULL, &err), PD_OK);
    assert_int_equal(pd_store_vocab_put(f->st, 999, 5, piece5, NULL, &err), PD_EINVAL);
    int64_t s = session(f->st, m, 0);
    struct pd_pieces *p = NULL;
    assert_int_equal(pd_store_pieces_open(f->st, s, &p, &err), PD_OK);
    assert_false(pd_pieces_empty(p));
    expect_piece(p, 0, " the", 4);
    expect_piece(p, 1, "", 0);
    expect_piece(p, 2, "\xe2", 1);
    expect_piece(p, 3, "\0", 1);
    expect_piece(p, 5, NULL, 0);
    expect_piece(p, -1, NULL, 0);
    pd_pieces_close(&p);
    assert_null(p);
    /* an imported session without a model: its own pieces; a branch sees them, its own
     * first; pieces win over the model's vocabulary */
    int64_t imp = session(f->st, 0, 0);
    struct pd_piece pc[] = {{7, "seven", 5}, {3, "three", 5}, {7, "again", 5}};
    assert_int_equal(pd_store_pieces_put(f->st, imp, pc, 3, &err), PD_OK);
    int64_t br = session(f->st, m, imp);
    struct pd_piece own = {3, "mine", 4};
    assert_int_equal(pd_store_pieces_put(f->st, br, &own, 1, &err), PD_OK);
    assert_int_equal(pd_store_pieces_open(f->st, imp, &p, &err), PD_OK);
    expect_piece(p, 7, "seven", 5); /* a repeated id keeps its first text */
    expect_piece(p, 3, "three", 5);
    expect_piece(p, 0, NULL, 0);
    pd_pieces_close(&p);
    const struct pd_pieces *kept = NULL;
    assert_int_equal(pd_store_pieces_keep(f->st, br, &kept, &err), PD_OK);
    expect_piece(kept, 3, "mine", 4);
    expect_piece(kept, 7, "seven", 5);
    expect_piece(kept, 0, " the", 4); /* the branch's model */
    size_t len;
    const char *x = pd_pieces_lookup((void *)kept, 4, &len); /* not NUL-terminated */
    assert_non_null(x);
    assert_int_equal(len, 1);
    assert_memory_equal(x, "x", 1);
    /* a session with neither: empty */
    int64_t bare = session(f->st, 0, 0);
    assert_int_equal(pd_store_pieces_open(f->st, bare, &p, &err), PD_OK);
    assert_true(pd_pieces_empty(p));
    pd_pieces_close(&p);
    assert_int_equal(pd_store_pieces_open(f->st, 12345, &p, &err), PD_EINVAL);
    struct pd_piece neg = {-1, "x", 1};
    assert_int_equal(pd_store_pieces_put(f->st, imp, &neg, 1, &err), PD_EINVAL);
    /* deleting a session deletes its pieces */
    assert_int_equal(pd_store_session_delete(f->st, br, &err), PD_OK);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM pieces", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 2);
    sqlite3_finalize(q);
    /* a corrupt blob in the file is reported, naming the model */
    int64_t m2 = model(f->st, 'b');
    int64_t s2 = session(f->st, m2, 0);
    char sql[160];
    snprintf(sql, sizeof sql,
             "INSERT INTO vocab (model_id, n_vocab, pieces) VALUES (%lld, 1, x'01000000')",
             (long long)m2);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(pd_store_pieces_open(f->st, s2, &p, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "vocabulary blob"));
    assert_non_null(strstr(err.msg, "model"));
}

/* A ponder record's pieces are kept when the database cannot read its ids otherwise. */
static void test_ponder_record_pieces(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    static const char rec[] =
        "{\"ponder\":1,\"session\":{\"model\":%s},\"tokens\":["
        "{\"pos\":0,\"id\":1,\"role\":\"think\",\"text\":\"a\",\"top\":[[4,-0.5,\" four\"],"
        "[2,-1,{\"bytes\":\"4g==\"}],[6,-2]]}]}";
    char line[512];
    snprintf(line, sizeof line, rec, "null");
    int64_t id = 0;
    assert_int_equal(pd_jsonl_import_record(f->st, line, strlen(line), "r:1", &id, &err),
                     PD_OK);
    struct pd_pieces *p = NULL;
    assert_int_equal(pd_store_pieces_open(f->st, id, &p, &err), PD_OK);
    expect_piece(p, 4, " four", 5);
    expect_piece(p, 2, "\xe2", 1);
    expect_piece(p, 6, NULL, 0);
    pd_pieces_close(&p);
    /* the model is in this database with its vocabulary: nothing of the record's kept */
    int64_t m = model(f->st, 'c');
    assert_int_equal(pd_store_vocab_put(f->st, m, 5, piece5, NULL, &err), PD_OK);
    char sha[65];
    memset(sha, 'c', 64);
    sha[64] = '\0';
    char jm[200];
    snprintf(jm, sizeof jm,
             "{\"file_name\":\"m.gguf\",\"file_size\":1,\"sha256\":\"%s\",\"arch\":\"llama\"}",
             sha);
    snprintf(line, sizeof line, rec, jm);
    assert_int_equal(pd_jsonl_import_record(f->st, line, strlen(line), "r:2", &id, &err),
                     PD_OK);
    assert_int_equal(pd_store_pieces_open(f->st, id, &p, &err), PD_OK);
    expect_piece(p, 4, "x", 1); /* the vocabulary's, not the record's */
    pd_pieces_close(&p);
}

static void test_sha256_in_pieces(void **state)
{
    (void)state;
    char one[65], many[65];
    char data[300];
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (char)(i * 7 + 1);
    }
    pd_sha256_hex(data, sizeof data, one);
    static const size_t cuts[] = {0, 1, 55, 56, 63, 64, 65, 127, 128, 200, 300};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        struct pd_sha256 h;
        pd_sha256_init(&h);
        pd_sha256_update(&h, data, cuts[c]);
        pd_sha256_update(&h, data + cuts[c], sizeof data - cuts[c]);
        pd_sha256_final_hex(&h, many);
        assert_string_equal(one, many);
    }
    pd_sha256_hex("abc", 3, one);
    assert_string_equal(one, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vocab_blob_layout_and_corruption),
        cmocka_unit_test_setup_teardown(test_vocab_and_pieces, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ponder_record_pieces, fx_setup, fx_teardown),
        cmocka_unit_test(test_sha256_in_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
