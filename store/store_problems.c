/* store_problems.c - reading evaluation problem sets (see store_problems.h). */
#include "store_problems.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "utf8.h"

void pd_problems_free(struct pd_problem *p, size_t n)
{
    for (size_t i = 0; p && i < n; i++) {
        free(p[i].id);
        free(p[i].question);
        free(p[i].answer);
        free(p[i].type);
    }
    free(p);
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') {
            return false;
        }
    }
    return true;
}

/* A scalar as text: strings as they are, integers and reals as JSON writes them. NULL
 * (and *bad) for other types. */
static char *scalar_text(json_t *v, bool allow_real, bool *bad)
{
    char buf[64];
    *bad = false;
    if (json_is_string(v)) {
        return pd_strndup(json_string_value(v), json_string_length(v));
    }
    if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        return pd_strdup(buf);
    }
    if (allow_real && json_is_real(v)) {
        snprintf(buf, sizeof buf, "%.17g", json_real_value(v));
        return pd_strdup(buf);
    }
    *bad = true;
    return NULL;
}

static enum pd_status parse_line(const char *line, size_t len, const char *path, int64_t no,
                                 struct pd_problem *p, struct pd_err *err)
{
    memset(p, 0, sizeof *p);
    p->line = no;
    if (!pd_utf8_valid(line, len)) {
        return pd_err_set(err, PD_EFORMAT, "%s:%lld: invalid UTF-8", path, (long long)no);
    }
    json_error_t je;
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        return pd_err_set(err, PD_EFORMAT, "%s:%lld: invalid JSON at column %d: %s", path,
                          (long long)no, je.column, je.text);
    }
    enum pd_status rc = PD_OK;
    const char *qkey = NULL;
    json_t *q = NULL;
    static const char *const qkeys[] = {"question", "problem", "prompt"};
    bool bad = false;
    if (!json_is_object(root)) {
        rc = pd_err_set(err, PD_EFORMAT, "%s:%lld: not a JSON object", path, (long long)no);
        goto done;
    }
    for (size_t k = 0; !q && k < sizeof qkeys / sizeof qkeys[0]; k++) {
        q = json_object_get(root, qkeys[k]);
        qkey = qkeys[k];
    }
    if (!q) {
        rc = pd_err_set(err, PD_EFORMAT, "%s:%lld: question: missing (also looked for "
                        "\"problem\" and \"prompt\")", path, (long long)no);
        goto done;
    }
    if (!json_is_string(q) || json_string_length(q) == 0) {
        rc = pd_err_set(err, PD_EFORMAT, "%s:%lld: %s: expected a non-empty string", path,
                        (long long)no, qkey);
        goto done;
    }
    if (strlen(json_string_value(q)) != json_string_length(q)) {
        rc = pd_err_set(err, PD_EFORMAT, "%s:%lld: %s: contains a NUL character", path,
                        (long long)no, qkey);
        goto done;
    }
    json_t *a = json_object_get(root, "answer");
    if (!a) {
        rc = pd_err_set(err, PD_EFORMAT, "%s:%lld: answer: missing", path, (long long)no);
        goto done;
    }
    p->answer = scalar_text(a, true, &bad);
    if (bad) {
        rc = pd_err_set(err, PD_EFORMAT, "%s:%lld: answer: expected a string or a number",
                        path, (long long)no);
        goto done;
    }
    json_t *id = json_object_get(root, "id");
    if (id) {
        p->id = scalar_text(id, false, &bad);
        if (bad) {
            rc = pd_err_set(err, PD_EFORMAT, "%s:%lld: id: expected a string or an integer",
                            path, (long long)no);
            goto done;
        }
    } else {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)no);
        p->id = pd_strdup(buf);
    }
    json_t *t = json_object_get(root, "type");
    if (t) {
        if (!json_is_string(t)) {
            rc = pd_err_set(err, PD_EFORMAT, "%s:%lld: type: expected a string", path,
                            (long long)no);
            goto done;
        }
        p->type = pd_strndup(json_string_value(t), json_string_length(t));
    }
    p->question = pd_strndup(json_string_value(q), json_string_length(q));
    if (!p->question || !p->answer || !p->id || (t && !p->type)) {
        rc = pd_err_set(err, PD_ENOMEM, "%s:%lld: out of memory", path, (long long)no);
    }
done:
    json_decref(root);
    if (rc != PD_OK) {
        free(p->id);
        free(p->question);
        free(p->answer);
        free(p->type);
        memset(p, 0, sizeof *p);
    }
    return rc;
}

enum pd_status pd_problems_read(const char *path, struct pd_problem **out, size_t *n,
                                struct pd_err *err)
{
    *out = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        return pd_err_set(err, PD_EIO, "%s: cannot open", path);
    }
    struct pd_problem *v = NULL;
    size_t cap = 0, len = 0;
    char *line = NULL;
    size_t line_cap = 0;
    int64_t no = 0;
    enum pd_status rc = PD_OK;
    for (;;) {
        errno = 0;
        ssize_t got = getline(&line, &line_cap, f);
        if (got < 0) {
            if (ferror(f)) {
                rc = pd_err_set(err, PD_EIO, "%s: read error after line %lld", path,
                                (long long)no);
            }
            break;
        }
        no++;
        size_t l = (size_t)got;
        if ((size_t)got > PD_PROBLEMS_LINE_MAX) {
            rc = pd_err_set(err, PD_EFORMAT, "%s:%lld: line longer than %zu bytes", path,
                            (long long)no, PD_PROBLEMS_LINE_MAX);
            break;
        }
        if (blank(line, l)) {
            continue;
        }
        if (len == PD_PROBLEMS_MAX) {
            rc = pd_err_set(err, PD_EFORMAT, "%s:%lld: more than %zu problems", path,
                            (long long)no, PD_PROBLEMS_MAX);
            break;
        }
        struct pd_problem *g = pd_grow_array(v, &cap, len + 1, sizeof *v);
        if (!g) {
            rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory", path);
            break;
        }
        v = g;
        if ((rc = parse_line(line, l, path, no, &v[len], err)) != PD_OK) {
            break;
        }
        len++;
    }
    free(line);
    fclose(f);
    if (rc != PD_OK) {
        pd_problems_free(v, len);
        return rc;
    }
    *out = v;
    *n = len;
    return PD_OK;
}
