/* policies.c - the KV retention policies (full, window, h2o, snapkv, tova, lazy) and the
 * spec string parser/formatter. Exact rules: docs/kv-policies.md.
 *
 * DESIGN
 * One implementation struct (kv_impl) serves every policy kind: it embeds the engine's
 * struct pd_kv_policy first, keeps the parsed spec, one kv_layer per model layer with the
 * per-slot arrays the kind needs, and scratch buffers shared by all layers. Each kind has
 * its own ops table (observe / observe_prefill / select); on_evicted and destroy are
 * shared. Per-slot arrays mirror the engine's slot order: new slots are appended at the
 * tail by layer_sync (called by every entry point that receives n_slots), removals come
 * only through on_evicted, which compacts in order.
 * Selection helper evict_lowest(): among slot indices [lo, hi) it marks the k slots with
 * the lowest score; ties go to the lower slot index (the older position). k == 1 is a
 * linear scan; larger k sorts (score, index) pairs, which gives the same order.
 * Allocation: arrays grow geometrically (pre-sized by n_slots_hint), so a decode step
 * allocates nothing once the cache has reached its peak length. */
#include "policies.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

#define KV_SLOTS_MAX (INT64_C(1) << 40) /* bound on any slot count or budget */
#define KV_HEADS_MAX 4096
#define KV_LAYERS_MAX 4096
#define KV_KERNEL_MAX 1023
#define KV_SPEC_LEN_MAX 256

/* ---- names ---------------------------------------------------------------------------- */

static const char *const k_kind_names[PD_POLICY_KIND_COUNT] = {
    [PD_POLICY_FULL] = "full",
    [PD_POLICY_WINDOW] = "window",
    [PD_POLICY_H2O] = "h2o",
    [PD_POLICY_SNAPKV] = "snapkv",
    [PD_POLICY_TOVA] = "tova",
    [PD_POLICY_LAZY] = "lazy",
};
_Static_assert(sizeof(k_kind_names) / sizeof(k_kind_names[0]) == PD_POLICY_KIND_COUNT,
               "kind names");

static const char *const k_agg_names[PD_KV_AGG_COUNT] = {
    [PD_KV_AGG_MEAN] = "mean",
    [PD_KV_AGG_MAX] = "max",
};
_Static_assert(sizeof(k_agg_names) / sizeof(k_agg_names[0]) == PD_KV_AGG_COUNT, "agg names");

static const char *const k_pool_names[PD_KV_POOL_COUNT] = {
    [PD_KV_POOL_AVG] = "avg",
    [PD_KV_POOL_MAX] = "max",
};
_Static_assert(sizeof(k_pool_names) / sizeof(k_pool_names[0]) == PD_KV_POOL_COUNT,
               "pool names");

const char *pd_policy_kind_name(enum pd_policy_kind k)
{
    if ((unsigned)k >= PD_POLICY_KIND_COUNT) {
        return NULL;
    }
    return k_kind_names[k];
}

static int name_lookup(const char *const *names, int n, const char *s, size_t len)
{
    for (int i = 0; i < n; i++) {
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0) {
            return i;
        }
    }
    return n;
}

enum pd_policy_kind pd_policy_kind_parse(const char *s)
{
    if (s == NULL) {
        return PD_POLICY_KIND_COUNT;
    }
    return (enum pd_policy_kind)name_lookup(k_kind_names, PD_POLICY_KIND_COUNT, s,
                                              strlen(s));
}

/* ---- spec: defaults, keys, validation ------------------------------------------------- */

#define KIND_BIT(k) (1u << (k))
#define KINDS_BUDGETED                                                                     \
    (KIND_BIT(PD_POLICY_WINDOW) | KIND_BIT(PD_POLICY_H2O) | KIND_BIT(PD_POLICY_SNAPKV) | \
     KIND_BIT(PD_POLICY_TOVA) | KIND_BIT(PD_POLICY_LAZY))
#define KINDS_ATTN                                                                         \
    (KIND_BIT(PD_POLICY_H2O) | KIND_BIT(PD_POLICY_SNAPKV) | KIND_BIT(PD_POLICY_TOVA) | \
     KIND_BIT(PD_POLICY_LAZY))

enum kv_key {
    KEY_SINKS,
    KEY_RECENT,
    KEY_RECENT_RATIO,
    KEY_W,
    KEY_K,
    KEY_POOL,
    KEY_AGG,
    KEY_ALPHA,
    KEY_COUNT
};

struct kv_key_info {
    const char *name;
    uint32_t kinds; /* KIND_BIT set of policies that take this key */
};

static const struct kv_key_info k_keys[KEY_COUNT] = {
    [KEY_SINKS] = {"sinks", KINDS_BUDGETED},
    [KEY_RECENT] = {"recent", KIND_BIT(PD_POLICY_H2O)},
    [KEY_RECENT_RATIO] = {"recent_ratio", KIND_BIT(PD_POLICY_H2O)},
    [KEY_W] = {"w", KIND_BIT(PD_POLICY_SNAPKV) | KIND_BIT(PD_POLICY_LAZY)},
    [KEY_K] = {"k", KIND_BIT(PD_POLICY_SNAPKV)},
    [KEY_POOL] = {"pool", KIND_BIT(PD_POLICY_SNAPKV)},
    [KEY_AGG] = {"agg", KINDS_ATTN},
    [KEY_ALPHA] = {"alpha", KIND_BIT(PD_POLICY_LAZY)},
};
_Static_assert(sizeof(k_keys) / sizeof(k_keys[0]) == KEY_COUNT, "key table");

void pd_policy_spec_defaults(enum pd_policy_kind k, struct pd_policy_spec *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = k;
    out->mode = PD_KV_MODE_ENFORCE;
    out->has_budget = false;
    out->budget.is_ratio = false;
    out->budget.slots = 0;
    out->budget.ratio = 0.0;
    out->n_sink = (k == PD_POLICY_WINDOW) ? 4 : 0;
    out->n_recent = 0;
    out->recent_ratio = 0.5;
    out->window = 32;
    out->kernel = 5;
    out->pool = PD_KV_POOL_AVG;
    out->agg = PD_KV_AGG_MEAN;
    out->alpha = 1e-4;
}

/* Recent-window size of h2o for a resolved budget b. */
static int64_t h2o_recent(const struct pd_policy_spec *s, int64_t b)
{
    if (s->n_recent > 0) {
        return s->n_recent;
    }
    int64_t r = (int64_t)floor((double)b * s->recent_ratio);
    return r < 1 ? 1 : r;
}

/* Slots a policy always keeps (sinks plus its recent/window set) for budget b. */
static int64_t protected_slots(const struct pd_policy_spec *s, int64_t b)
{
    switch (s->kind) {
    case PD_POLICY_H2O:
        return s->n_sink + h2o_recent(s, b);
    case PD_POLICY_SNAPKV:
    case PD_POLICY_LAZY:
        return s->n_sink + s->window;
    default:
        return s->n_sink + 1;
    }
}

/* Range checks of a spec; messages start with `label` (the quoted spec string when
 * parsing, "kv policy NAME" otherwise). */
static enum pd_status check_spec(const struct pd_policy_spec *s, const char *label,
                                 struct pd_err *err)
{
    const char *name = label;
    if ((unsigned)s->mode >= PD_KV_MODE_COUNT || (unsigned)s->agg >= PD_KV_AGG_COUNT ||
        (unsigned)s->pool >= PD_KV_POOL_COUNT) {
        return pd_err_set(err, PD_EINVAL, "%s: mode/agg/pool out of range", name);
    }
    if (s->kind == PD_POLICY_FULL) {
        if (s->has_budget) {
            return pd_err_set(err, PD_EINVAL, "%s: full takes no budget", name);
        }
        return PD_OK;
    }
    if (!s->has_budget) {
        return pd_err_set(err, PD_EINVAL, "%s: missing budget (e.g. %s:128)", name,
                          k_kind_names[s->kind]);
    }
    if (s->budget.is_ratio) {
        if (!(s->budget.ratio > 0.0 && s->budget.ratio <= 1.0)) {
            return pd_err_set(err, PD_EINVAL, "%s: budget ratio %g not in (0,1]",
                              name, s->budget.ratio);
        }
    } else if (s->budget.slots < 1 || s->budget.slots > KV_SLOTS_MAX) {
        return pd_err_set(err, PD_EINVAL, "%s: budget %lld not in [1, 2^40]", name,
                          (long long)s->budget.slots);
    }
    if (s->n_sink < 0 || s->n_sink > KV_SLOTS_MAX) {
        return pd_err_set(err, PD_EINVAL, "%s: sinks=%lld out of range", name,
                          (long long)s->n_sink);
    }
    if (s->n_recent < 0 || s->n_recent > KV_SLOTS_MAX) {
        return pd_err_set(err, PD_EINVAL, "%s: recent=%lld out of range", name,
                          (long long)s->n_recent);
    }
    if (!(s->recent_ratio > 0.0 && s->recent_ratio < 1.0)) {
        return pd_err_set(err, PD_EINVAL, "%s: recent_ratio=%g not in (0,1)", name,
                          s->recent_ratio);
    }
    if (s->window < 1 || s->window > KV_SLOTS_MAX) {
        return pd_err_set(err, PD_EINVAL, "%s: w=%lld not in [1, 2^40]", name,
                          (long long)s->window);
    }
    if (s->kernel < 1 || s->kernel > KV_KERNEL_MAX || s->kernel % 2 == 0) {
        return pd_err_set(err, PD_EINVAL, "%s: k=%d must be odd, 1..%d", name,
                          (int)s->kernel, KV_KERNEL_MAX);
    }
    if (!(s->alpha > 0.0 && s->alpha < 1.0)) {
        return pd_err_set(err, PD_EINVAL, "%s: alpha=%g not in (0,1)", name,
                          s->alpha);
    }
    if (!s->budget.is_ratio) {
        int64_t need = protected_slots(s, s->budget.slots);
        if (s->budget.slots < need) {
            return pd_err_set(err, PD_EINVAL,
                              "%s: budget %lld is below the %lld protected slots "
                              "(sinks + recent/window)",
                              name, (long long)s->budget.slots, (long long)need);
        }
    }
    return PD_OK;
}

enum pd_status pd_policy_validate(const struct pd_policy_spec *s, struct pd_err *err)
{
    if (s == NULL) {
        return pd_err_set(err, PD_EINVAL, "kv policy: spec is NULL");
    }
    if ((unsigned)s->kind >= PD_POLICY_KIND_COUNT) {
        return pd_err_set(err, PD_EINVAL, "kv policy: kind %d out of range", (int)s->kind);
    }
    char label[48];
    snprintf(label, sizeof(label), "kv policy %s", k_kind_names[s->kind]);
    return check_spec(s, label, err);
}

/* ---- spec: parsing -------------------------------------------------------------------- */

/* Parses s[0..len) as a decimal integer in [0, KV_SLOTS_MAX] (digits only). */
static bool parse_count(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 14) {
        return false;
    }
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    if (v > KV_SLOTS_MAX) {
        return false;
    }
    *out = v;
    return true;
}

/* Parses s[0..len) as a finite decimal number (no spaces, no hex, no inf/nan). */
static bool parse_real(const char *s, size_t len, double *out)
{
    char tmp[64];
    if (len == 0 || len >= sizeof(tmp)) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (strchr("0123456789.eE+-", s[i]) == NULL) {
            return false;
        }
    }
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    char *end = NULL;
    errno = 0;
    double v = strtod(tmp, &end);
    if (end != tmp + len || errno != 0 || !isfinite(v)) {
        return false;
    }
    *out = v;
    return true;
}

static enum pd_status parse_budget(const char *spec, const char *b, size_t len,
                                   struct pd_policy_spec *out, struct pd_err *err)
{
    if (len == 0) {
        return pd_err_set(err, PD_EINVAL, "kv policy \"%s\": empty budget after ':'", spec);
    }
    if (b[len - 1] == '%') {
        double pct;
        if (!parse_real(b, len - 1, &pct) || !(pct > 0.0 && pct <= 100.0)) {
            return pd_err_set(err, PD_EINVAL,
                              "kv policy \"%s\": budget \"%.*s\" is not a percentage in "
                              "(0,100]", spec, (int)len, b);
        }
        out->budget.is_ratio = true;
        out->budget.ratio = pct / 100.0;
    } else if (memchr(b, '.', len) != NULL) {
        double r;
        if (!parse_real(b, len, &r) || !(r > 0.0 && r <= 1.0)) {
            return pd_err_set(err, PD_EINVAL,
                              "kv policy \"%s\": budget \"%.*s\" is not a ratio in (0,1]", spec,
                              (int)len, b);
        }
        out->budget.is_ratio = true;
        out->budget.ratio = r;
    } else {
        int64_t n;
        if (!parse_count(b, len, &n) || n < 1) {
            return pd_err_set(err, PD_EINVAL,
                              "kv policy \"%s\": budget \"%.*s\" is not a slot count >= 1 "
                              "(or a ratio like 0.5)", spec, (int)len, b);
        }
        out->budget.is_ratio = false;
        out->budget.slots = n;
    }
    out->has_budget = true;
    return PD_OK;
}

static enum pd_status parse_key_value(const char *spec, enum kv_key key, const char *v,
                                      size_t vlen, struct pd_policy_spec *out,
                                      struct pd_err *err)
{
    int64_t n = 0;
    double x = 0.0;
    int idx;
    bool ok = true;
    switch (key) {
    case KEY_SINKS:
        ok = parse_count(v, vlen, &n);
        out->n_sink = n;
        break;
    case KEY_RECENT:
        ok = parse_count(v, vlen, &n) && n >= 1;
        out->n_recent = n;
        break;
    case KEY_RECENT_RATIO:
        ok = parse_real(v, vlen, &x) && x > 0.0 && x < 1.0;
        out->recent_ratio = x;
        break;
    case KEY_W:
        ok = parse_count(v, vlen, &n) && n >= 1;
        out->window = n;
        break;
    case KEY_K:
        ok = parse_count(v, vlen, &n) && n >= 1 && n <= KV_KERNEL_MAX && n % 2 == 1;
        out->kernel = (int32_t)n;
        break;
    case KEY_POOL:
        idx = name_lookup(k_pool_names, PD_KV_POOL_COUNT, v, vlen);
        ok = idx < PD_KV_POOL_COUNT;
        out->pool = (enum pd_kv_pool)idx;
        break;
    case KEY_AGG:
        idx = name_lookup(k_agg_names, PD_KV_AGG_COUNT, v, vlen);
        ok = idx < PD_KV_AGG_COUNT;
        out->agg = (enum pd_kv_agg)idx;
        break;
    case KEY_ALPHA:
        ok = parse_real(v, vlen, &x) && x > 0.0 && x < 1.0;
        out->alpha = x;
        break;
    case KEY_COUNT:
        ok = false;
        break;
    }
    if (!ok) {
        static const char *const k_expect[KEY_COUNT] = {
            [KEY_SINKS] = "a count >= 0",
            [KEY_RECENT] = "a count >= 1",
            [KEY_RECENT_RATIO] = "a number in (0,1)",
            [KEY_W] = "a count >= 1",
            [KEY_K] = "an odd count in 1..1023",
            [KEY_POOL] = "avg or max",
            [KEY_AGG] = "mean or max",
            [KEY_ALPHA] = "a number in (0,1)",
        };
        return pd_err_set(err, PD_EINVAL, "kv policy \"%s\": bad value \"%.*s\" for %s (want %s)",
                          spec, (int)vlen, v, k_keys[key].name, k_expect[key]);
    }
    return PD_OK;
}

enum pd_status pd_policy_parse(const char *spec, struct pd_policy_spec *out,
                                 struct pd_err *err)
{
    if (spec == NULL || out == NULL) {
        return pd_err_set(err, PD_EINVAL, "kv policy: NULL spec");
    }
    size_t total = strlen(spec);
    if (total == 0) {
        return pd_err_set(err, PD_EINVAL, "kv policy: empty spec (try \"full\" or \"window:64\")");
    }
    if (total > KV_SPEC_LEN_MAX) {
        return pd_err_set(err, PD_EINVAL, "kv policy: spec longer than %d bytes",
                          KV_SPEC_LEN_MAX);
    }
    /* First item: name[:budget]. */
    const char *p = spec;
    const char *item_end = strchr(p, ',');
    if (item_end == NULL) {
        item_end = spec + total;
    }
    const char *colon = memchr(p, ':', (size_t)(item_end - p));
    const char *name_end = colon != NULL ? colon : item_end;
    enum pd_policy_kind kind = (enum pd_policy_kind)name_lookup(
        k_kind_names, PD_POLICY_KIND_COUNT, p, (size_t)(name_end - p));
    if (kind == PD_POLICY_KIND_COUNT) {
        return pd_err_set(err, PD_EINVAL,
                          "kv policy \"%s\": unknown policy \"%.*s\" (want full, window, h2o, "
                          "snapkv, tova or lazy)", spec, (int)(name_end - p), p);
    }
    pd_policy_spec_defaults(kind, out);
    if (colon != NULL) {
        if (kind == PD_POLICY_FULL) {
            return pd_err_set(err, PD_EINVAL, "kv policy \"%s\": full takes no budget", spec);
        }
        enum pd_status st = parse_budget(spec, colon + 1, (size_t)(item_end - colon - 1), out,
                                         err);
        if (st != PD_OK) {
            return st;
        }
    } else if (kind != PD_POLICY_FULL) {
        return pd_err_set(err, PD_EINVAL, "kv policy \"%s\": missing budget (e.g. %s:128)",
                          spec, k_kind_names[kind]);
    }
    /* Remaining items. */
    bool seen[KEY_COUNT] = {false};
    bool seen_mode = false;
    while (*item_end == ',') {
        p = item_end + 1;
        item_end = strchr(p, ',');
        if (item_end == NULL) {
            item_end = spec + total;
        }
        size_t len = (size_t)(item_end - p);
        if (len == 0) {
            return pd_err_set(err, PD_EINVAL, "kv policy \"%s\": empty item (stray ',')", spec);
        }
        if ((len == 6 && memcmp(p, "shadow", 6) == 0) ||
            (len == 7 && memcmp(p, "enforce", 7) == 0)) {
            if (seen_mode) {
                return pd_err_set(err, PD_EINVAL,
                                  "kv policy \"%s\": mode given twice (\"%.*s\")", spec, (int)len,
                                  p);
            }
            seen_mode = true;
            out->mode = (len == 6) ? PD_KV_MODE_SHADOW : PD_KV_MODE_ENFORCE;
            continue;
        }
        const char *eq = memchr(p, '=', len);
        if (eq == NULL) {
            return pd_err_set(err, PD_EINVAL,
                              "kv policy \"%s\": item \"%.*s\" is not key=value, shadow or "
                              "enforce", spec, (int)len, p);
        }
        size_t klen = (size_t)(eq - p);
        enum kv_key key = KEY_COUNT;
        for (int i = 0; i < KEY_COUNT; i++) {
            if (strlen(k_keys[i].name) == klen && memcmp(k_keys[i].name, p, klen) == 0) {
                key = (enum kv_key)i;
            }
        }
        if (key == KEY_COUNT || (k_keys[key].kinds & KIND_BIT(kind)) == 0) {
            char allowed[160] = "";
            size_t used = 0;
            for (int i = 0; i < KEY_COUNT; i++) {
                if (k_keys[i].kinds & KIND_BIT(kind)) {
                    int w = snprintf(allowed + used, sizeof(allowed) - used, "%s%s",
                                     used ? ", " : "", k_keys[i].name);
                    if (w > 0 && (size_t)w < sizeof(allowed) - used) {
                        used += (size_t)w;
                    }
                }
            }
            return pd_err_set(err, PD_EINVAL,
                              "kv policy \"%s\": unknown key \"%.*s\" for %s (allowed: %s)", spec,
                              (int)klen, p, k_kind_names[kind], used ? allowed : "none");
        }
        if (seen[key]) {
            return pd_err_set(err, PD_EINVAL, "kv policy \"%s\": key \"%s\" given twice", spec,
                              k_keys[key].name);
        }
        seen[key] = true;
        enum pd_status st = parse_key_value(spec, key, eq + 1, len - klen - 1, out, err);
        if (st != PD_OK) {
            return st;
        }
    }
    if (seen[KEY_RECENT] && seen[KEY_RECENT_RATIO]) {
        return pd_err_set(err, PD_EINVAL,
                          "kv policy \"%s\": recent and recent_ratio are mutually exclusive",
                          spec);
    }
    char label[KV_SPEC_LEN_MAX + 16];
    snprintf(label, sizeof(label), "kv policy \"%s\"", spec);
    return check_spec(out, label, err);
}

/* ---- spec: formatting ----------------------------------------------------------------- */

/* Shortest %.*g rendering of v that reads back as exactly v. */
static void fmt_real(char *out, size_t n, double v)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, n, "%.*g", prec, v);
        if (strtod(out, NULL) == v) {
            return;
        }
    }
}

enum pd_status pd_policy_format(const struct pd_policy_spec *s, char *out,
                                  size_t out_size, struct pd_err *err)
{
    if (out == NULL || out_size == 0) {
        return pd_err_set(err, PD_EINVAL, "kv policy format: no output buffer");
    }
    out[0] = '\0';
    enum pd_status st = pd_policy_validate(s, err);
    if (st != PD_OK) {
        return st;
    }
    struct pd_policy_spec d;
    pd_policy_spec_defaults(s->kind, &d);
    struct pd_buf b;
    pd_buf_init(&b);
    char num[40];
    bool ok = pd_buf_puts(&b, k_kind_names[s->kind]);
    if (s->has_budget) {
        if (s->budget.is_ratio) {
            fmt_real(num, sizeof(num), s->budget.ratio);
            /* A ratio must contain '.' to read back as a ratio ("1" would be one slot). */
            if (strchr(num, '.') == NULL) {
                snprintf(num, sizeof(num), "%.1f", s->budget.ratio);
            }
        } else {
            snprintf(num, sizeof(num), "%lld", (long long)s->budget.slots);
        }
        ok = ok && pd_buf_printf(&b, ":%s", num);
    }
    if (s->mode == PD_KV_MODE_SHADOW) {
        ok = ok && pd_buf_puts(&b, ",shadow");
    }
    uint32_t bit = KIND_BIT(s->kind);
    if ((k_keys[KEY_SINKS].kinds & bit) && s->n_sink != d.n_sink) {
        ok = ok && pd_buf_printf(&b, ",sinks=%lld", (long long)s->n_sink);
    }
    if ((k_keys[KEY_RECENT].kinds & bit) && s->n_recent != 0) {
        ok = ok && pd_buf_printf(&b, ",recent=%lld", (long long)s->n_recent);
    } else if ((k_keys[KEY_RECENT_RATIO].kinds & bit) && s->recent_ratio != d.recent_ratio) {
        fmt_real(num, sizeof(num), s->recent_ratio);
        ok = ok && pd_buf_printf(&b, ",recent_ratio=%s", num);
    }
    if ((k_keys[KEY_W].kinds & bit) && s->window != d.window) {
        ok = ok && pd_buf_printf(&b, ",w=%lld", (long long)s->window);
    }
    if ((k_keys[KEY_K].kinds & bit) && s->kernel != d.kernel) {
        ok = ok && pd_buf_printf(&b, ",k=%d", (int)s->kernel);
    }
    if ((k_keys[KEY_POOL].kinds & bit) && s->pool != d.pool) {
        ok = ok && pd_buf_printf(&b, ",pool=%s", k_pool_names[s->pool]);
    }
    if ((k_keys[KEY_AGG].kinds & bit) && s->agg != d.agg) {
        ok = ok && pd_buf_printf(&b, ",agg=%s", k_agg_names[s->agg]);
    }
    if ((k_keys[KEY_ALPHA].kinds & bit) && s->alpha != d.alpha) {
        fmt_real(num, sizeof(num), s->alpha);
        ok = ok && pd_buf_printf(&b, ",alpha=%s", num);
    }
    if (!ok) {
        pd_buf_deinit(&b);
        return pd_err_set(err, PD_ENOMEM, "kv policy format: out of memory");
    }
    size_t n = b.len < out_size ? b.len : out_size - 1;
    memcpy(out, b.data, n);
    out[n] = '\0';
    bool fits = b.len < out_size;
    pd_buf_deinit(&b);
    if (!fits) {
        return pd_err_set(err, PD_EINVAL, "kv policy format: buffer of %zu bytes too small",
                          out_size);
    }
    return PD_OK;
}

/* ---- policy objects ------------------------------------------------------------------- */

struct kv_layer {
    int64_t n;          /* slots tracked */
    int64_t cap;        /* capacity of the per-slot arrays */
    double *score;      /* [cap] h2o: cumulative attention; tova: last row */
    int64_t *last;      /* [cap] lazy: step of the last important event */
    int64_t *mri;       /* [cap] lazy: maximum recurrence interval */
    double *win;        /* [cap][n_win_rows] snapkv: window sums (slot-major) */
    int32_t n_win_rows; /* snapkv: 1 (head mean) or n_head; 0 before the first rows */
    int64_t t;          /* lazy: decode steps observed */
    bool prefill_seen;  /* snapkv: window rows accumulated */
    bool applied;       /* snapkv: prefill compression done */
};

struct kv_cand {
    double score;
    int64_t idx;
};

struct kv_impl {
    struct pd_kv_policy base; /* first: the engine sees this */
    struct pd_policy_spec spec;
    struct kv_layer *layers;  /* [n_layer] owned */
    double *row;              /* [scratch_cap] aggregated attention row */
    double *tmp;              /* [scratch_cap] pooled scores / lazy scores */
    struct kv_cand *cand;     /* [scratch_cap] selection scratch */
    int64_t scratch_cap;
};

static struct kv_impl *impl_of(struct pd_kv_policy *p)
{
    return (struct kv_impl *)p;
}

static bool uses_score(enum pd_policy_kind k)
{
    return k == PD_POLICY_H2O || k == PD_POLICY_TOVA;
}

static bool reserve_scratch(struct kv_impl *im, int64_t need)
{
    if (need <= im->scratch_cap) {
        return true;
    }
    int64_t cap = im->scratch_cap * 2 > need ? im->scratch_cap * 2 : need;
    if (cap < 64) {
        cap = 64;
    }
    double *row = pd_realloc_array(im->row, (size_t)cap, sizeof(double));
    if (row == NULL) {
        return false;
    }
    im->row = row;
    double *tmp = pd_realloc_array(im->tmp, (size_t)cap, sizeof(double));
    if (tmp == NULL) {
        return false;
    }
    im->tmp = tmp;
    struct kv_cand *cand = pd_realloc_array(im->cand, (size_t)cap, sizeof(struct kv_cand));
    if (cand == NULL) {
        return false;
    }
    im->cand = cand;
    im->scratch_cap = cap;
    return true;
}

static bool reserve_layer(struct kv_impl *im, struct kv_layer *L, int64_t need)
{
    if (need <= L->cap) {
        return true;
    }
    int64_t cap = L->cap * 2 > need ? L->cap * 2 : need;
    if (cap < 64) {
        cap = 64;
    }
    enum pd_policy_kind k = im->spec.kind;
    if (uses_score(k)) {
        double *s = pd_realloc_array(L->score, (size_t)cap, sizeof(double));
        if (s == NULL) {
            return false;
        }
        L->score = s;
    }
    if (k == PD_POLICY_LAZY) {
        int64_t *a = pd_realloc_array(L->last, (size_t)cap, sizeof(int64_t));
        if (a == NULL) {
            return false;
        }
        L->last = a;
        a = pd_realloc_array(L->mri, (size_t)cap, sizeof(int64_t));
        if (a == NULL) {
            return false;
        }
        L->mri = a;
    }
    if (L->n_win_rows > 0 && !L->applied) {
        uint64_t elems;
        if (!pd_mul((uint64_t)cap, (uint64_t)L->n_win_rows, &elems)) {
            return false;
        }
        double *w = pd_realloc_array(L->win, (size_t)elems, sizeof(double));
        if (w == NULL) {
            return false;
        }
        L->win = w;
    }
    L->cap = cap;
    return true;
}

/* Extends the layer's per-slot state to n_slots (new slots get default state). */
static enum pd_status layer_sync(struct kv_impl *im, int32_t layer, int64_t n_slots,
                                 struct pd_err *err)
{
    struct kv_layer *L = &im->layers[layer];
    if (n_slots < L->n) {
        return pd_err_set(err, PD_EINVAL,
                          "kv policy %s layer %d: n_slots %lld < %lld tracked (an eviction "
                          "was not reported through on_evicted)",
                          k_kind_names[im->spec.kind], (int)layer, (long long)n_slots,
                          (long long)L->n);
    }
    if (!reserve_layer(im, L, n_slots) || !reserve_scratch(im, n_slots)) {
        return pd_err_set(err, PD_ENOMEM, "kv policy %s layer %d: out of memory for %lld slots",
                          k_kind_names[im->spec.kind], (int)layer, (long long)n_slots);
    }
    for (int64_t j = L->n; j < n_slots; j++) {
        if (L->score != NULL) {
            L->score[j] = 0.0;
        }
        if (L->last != NULL) {
            /* LazyEviction: a slot appended at step t starts with last = t-1, MRI = 0;
             * prompt slots seen before the first decode step get last = 0. */
            L->last[j] = L->t > 0 ? L->t - 1 : 0;
            L->mri[j] = 0;
        }
        if (L->win != NULL && !L->applied) {
            for (int32_t r = 0; r < L->n_win_rows; r++) {
                L->win[j * L->n_win_rows + r] = 0.0;
            }
        }
    }
    L->n = n_slots;
    return PD_OK;
}

/* Validates layer/shape/positions/values of an attention block [n_head][n_query][n_slots]. */
static enum pd_status check_attn(struct kv_impl *im, int32_t layer, const float *attn,
                                 int32_t n_head, int64_t n_query, int64_t n_slots,
                                 const int64_t *slot_pos, struct pd_err *err)
{
    const char *name = k_kind_names[im->spec.kind];
    if (layer < 0 || layer >= im->base.n_layer) {
        return pd_err_set(err, PD_EINVAL, "kv policy %s: layer %d not in [0, %d)", name,
                          (int)layer, (int)im->base.n_layer);
    }
    if (attn == NULL || slot_pos == NULL) {
        return pd_err_set(err, PD_EINVAL, "kv policy %s layer %d: NULL attn or slot_pos", name,
                          (int)layer);
    }
    if (n_head < 1 || n_head > KV_HEADS_MAX) {
        return pd_err_set(err, PD_EINVAL, "kv policy %s layer %d: n_head %d not in [1, %d]",
                          name, (int)layer, (int)n_head, KV_HEADS_MAX);
    }
    uint64_t total;
    if (n_query < 1 || n_slots < 1 || n_slots > KV_SLOTS_MAX ||
        !pd_mul((uint64_t)n_head * (uint64_t)n_query, (uint64_t)n_slots, &total) ||
        total > SIZE_MAX / sizeof(float)) {
        return pd_err_set(err, PD_EINVAL,
                          "kv policy %s layer %d: bad shape n_query %lld x n_slots %lld", name,
                          (int)layer, (long long)n_query, (long long)n_slots);
    }
    for (int64_t j = 1; j < n_slots; j++) {
        if (slot_pos[j] <= slot_pos[j - 1]) {
            return pd_err_set(err, PD_EINVAL,
                              "kv policy %s layer %d: slot_pos[%lld] = %lld not above "
                              "slot_pos[%lld] = %lld",
                              name, (int)layer, (long long)j, (long long)slot_pos[j],
                              (long long)(j - 1), (long long)slot_pos[j - 1]);
        }
    }
    for (uint64_t i = 0; i < total; i++) {
        float a = attn[i];
        if (!(a >= 0.0f) || !isfinite(a)) {
            return pd_err_set(err, PD_EINVAL,
                              "kv policy %s layer %d: attention value %g at element %llu is "
                              "negative or not finite",
                              name, (int)layer, (double)a, (unsigned long long)i);
        }
    }
    return PD_OK;
}

/* row[j] = aggregate over heads of attn[h][q][j] for j < n_slots. */
static void agg_row(enum pd_kv_agg agg, const float *attn, int32_t n_head, int64_t n_query,
                    int64_t q, int64_t n_slots, double *row)
{
    for (int64_t j = 0; j < n_slots; j++) {
        row[j] = 0.0;
    }
    for (int32_t h = 0; h < n_head; h++) {
        const float *r = attn + ((size_t)h * (size_t)n_query + (size_t)q) * (size_t)n_slots;
        for (int64_t j = 0; j < n_slots; j++) {
            if (agg == PD_KV_AGG_MAX) {
                row[j] = (h == 0 || r[j] > row[j]) ? r[j] : row[j];
            } else {
                row[j] += r[j];
            }
        }
    }
    if (agg == PD_KV_AGG_MEAN) {
        for (int64_t j = 0; j < n_slots; j++) {
            row[j] /= (double)n_head;
        }
    }
}

static int cand_cmp(const void *a, const void *b)
{
    const struct kv_cand *x = a;
    const struct kv_cand *y = b;
    if (x->score < y->score) {
        return -1;
    }
    if (x->score > y->score) {
        return 1;
    }
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Marks in mask the k lowest-scoring slots among [lo, hi) (ties: lower index first) and
 * returns how many were marked. */
static int64_t evict_lowest(struct kv_impl *im, const double *score, int64_t lo, int64_t hi,
                            int64_t k, uint8_t *mask)
{
    if (hi - lo < k) {
        k = hi - lo;
    }
    if (k <= 0) {
        return 0;
    }
    if (k == 1) {
        int64_t best = lo;
        for (int64_t j = lo + 1; j < hi; j++) {
            if (score[j] < score[best]) {
                best = j;
            }
        }
        mask[best] = 1;
        return 1;
    }
    struct kv_cand *c = im->cand;
    for (int64_t j = lo; j < hi; j++) {
        c[j - lo].score = score[j];
        c[j - lo].idx = j;
    }
    qsort(c, (size_t)(hi - lo), sizeof(*c), cand_cmp);
    for (int64_t i = 0; i < k; i++) {
        mask[c[i].idx] = 1;
    }
    return k;
}

/* Marks [lo, hi) for eviction; returns the count. */
static int64_t evict_range(int64_t lo, int64_t hi, uint8_t *mask)
{
    for (int64_t j = lo; j < hi; j++) {
        mask[j] = 1;
    }
    return hi > lo ? hi - lo : 0;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* ---- observe -------------------------------------------------------------------------- */

/* check_attn, then layer_sync: the start of every observe that reads the attention. */
static enum pd_status observe_begin(struct kv_impl *im, int32_t layer, const float *attn,
                                    int32_t n_head, int64_t n_query, int64_t n_slots,
                                    const int64_t *slot_pos, struct pd_err *err)
{
    enum pd_status st = check_attn(im, layer, attn, n_head, n_query, n_slots, slot_pos, err);
    return st == PD_OK ? layer_sync(im, layer, n_slots, err) : st;
}

static enum pd_status h2o_observe_prefill(struct pd_kv_policy *p, int32_t layer,
                                          const float *attn, int32_t n_head, int32_t n_query,
                                          int64_t n_slots, const int64_t *slot_pos,
                                          int64_t q_pos_begin, int64_t prefill_end,
                                          struct pd_err *err)
{
    (void)q_pos_begin;
    (void)prefill_end;
    struct kv_impl *im = impl_of(p);
    enum pd_status st = observe_begin(im, layer, attn, n_head, n_query, n_slots, slot_pos, err);
    if (st != PD_OK) {
        return st;
    }
    struct kv_layer *L = &im->layers[layer];
    for (int32_t q = 0; q < n_query; q++) {
        agg_row(im->spec.agg, attn, n_head, n_query, q, n_slots, im->row);
        for (int64_t j = 0; j < n_slots; j++) {
            L->score[j] += im->row[j];
        }
    }
    return PD_OK;
}

/* A decoding step is a one-row prefill block. */
static enum pd_status h2o_observe(struct pd_kv_policy *p, int32_t layer, const float *attn,
                                  int32_t n_head, int64_t n_slots, const int64_t *slot_pos,
                                  int64_t cur_pos, struct pd_err *err)
{
    return h2o_observe_prefill(p, layer, attn, n_head, 1, n_slots, slot_pos, cur_pos,
                               cur_pos + 1, err);
}

static enum pd_status tova_observe_prefill(struct pd_kv_policy *p, int32_t layer,
                                           const float *attn, int32_t n_head, int32_t n_query,
                                           int64_t n_slots, const int64_t *slot_pos,
                                           int64_t q_pos_begin, int64_t prefill_end,
                                           struct pd_err *err)
{
    struct kv_impl *im = impl_of(p);
    enum pd_status st = observe_begin(im, layer, attn, n_head, n_query, n_slots, slot_pos, err);
    if (st != PD_OK) {
        return st;
    }
    /* Only the batch's last query row matters (TOVA looks at the current query). */
    int64_t q = prefill_end - 1 - q_pos_begin;
    if (q >= 0 && q < n_query) {
        agg_row(im->spec.agg, attn, n_head, n_query, q, n_slots, im->layers[layer].score);
    }
    return PD_OK;
}

static enum pd_status tova_observe(struct pd_kv_policy *p, int32_t layer, const float *attn,
                                   int32_t n_head, int64_t n_slots, const int64_t *slot_pos,
                                   int64_t cur_pos, struct pd_err *err)
{
    return tova_observe_prefill(p, layer, attn, n_head, 1, n_slots, slot_pos, cur_pos,
                                cur_pos + 1, err);
}

static enum pd_status snapkv_observe_prefill(struct pd_kv_policy *p, int32_t layer,
                                             const float *attn, int32_t n_head,
                                             int32_t n_query, int64_t n_slots,
                                             const int64_t *slot_pos, int64_t q_pos_begin,
                                             int64_t prefill_end, struct pd_err *err)
{
    struct kv_impl *im = impl_of(p);
    enum pd_status st = check_attn(im, layer, attn, n_head, n_query, n_slots, slot_pos, err);
    if (st != PD_OK) {
        return st;
    }
    struct kv_layer *L = &im->layers[layer];
    if (L->applied) {
        return layer_sync(im, layer, n_slots, err); /* compression happens once */
    }
    /* Per-head sums are needed unless both the pool and the head aggregate are means
     * (then the head mean commutes with the pooling and one row suffices). */
    bool per_head = im->spec.agg == PD_KV_AGG_MAX || im->spec.pool == PD_KV_POOL_MAX;
    int32_t rows = per_head ? n_head : 1;
    if (L->n_win_rows == 0) {
        /* Zeroed window sums for the slots already tracked (and the spare capacity);
         * layer_sync grows the buffer with the other per-slot arrays from here on. */
        if (L->cap > 0) {
            uint64_t elems;
            if (!pd_mul((uint64_t)L->cap, (uint64_t)rows, &elems) ||
                (L->win = pd_calloc((size_t)elems, sizeof(double))) == NULL) {
                return pd_err_set(err, PD_ENOMEM, "kv policy snapkv layer %d: out of memory",
                                  (int)layer);
            }
        }
        L->n_win_rows = rows;
    } else if (L->n_win_rows != rows) {
        return pd_err_set(err, PD_EINVAL,
                          "kv policy snapkv layer %d: n_head changed from %d to %d between "
                          "prefill blocks", (int)layer, (int)L->n_win_rows, (int)n_head);
    }
    st = layer_sync(im, layer, n_slots, err);
    if (st != PD_OK) {
        return st;
    }
    int64_t w_begin = prefill_end - im->spec.window;
    for (int32_t q = 0; q < n_query; q++) {
        if (q_pos_begin + q < w_begin) {
            continue;
        }
        for (int32_t h = 0; h < n_head; h++) {
            const float *r = attn + ((size_t)h * (size_t)n_query + (size_t)q) * (size_t)n_slots;
            for (int64_t j = 0; j < n_slots; j++) {
                if (per_head) {
                    L->win[j * rows + h] += r[j];
                } else {
                    L->win[j] += (double)r[j] / (double)n_head;
                }
            }
        }
        L->prefill_seen = true;
    }
    return PD_OK;
}

static enum pd_status lazy_observe(struct pd_kv_policy *p, int32_t layer, const float *attn,
                                   int32_t n_head, int64_t n_slots, const int64_t *slot_pos,
                                   int64_t cur_pos, struct pd_err *err)
{
    (void)cur_pos;
    struct kv_impl *im = impl_of(p);
    enum pd_status st = check_attn(im, layer, attn, n_head, 1, n_slots, slot_pos, err);
    if (st != PD_OK) {
        return st;
    }
    struct kv_layer *L = &im->layers[layer];
    L->t++;
    st = layer_sync(im, layer, n_slots, err);
    if (st != PD_OK) {
        L->t--;
        return st;
    }
    agg_row(im->spec.agg, attn, n_head, 1, 0, n_slots, im->row);
    for (int64_t j = 0; j < n_slots; j++) {
        if (im->row[j] >= im->spec.alpha) {
            int64_t gap = L->t - L->last[j];
            L->last[j] = L->t;
            if (gap > L->mri[j]) {
                L->mri[j] = gap;
            }
        }
    }
    return PD_OK;
}

/* ---- select --------------------------------------------------------------------------- */

/* Shared argument checks of select; on success zeroes the mask and the count. */
static enum pd_status select_begin(struct kv_impl *im, int32_t layer, int64_t n_slots,
                                   const int64_t *slot_pos, int64_t budget, uint8_t *mask,
                                   int64_t *n_evict, struct pd_err *err)
{
    const char *name = k_kind_names[im->spec.kind];
    if (layer < 0 || layer >= im->base.n_layer) {
        return pd_err_set(err, PD_EINVAL, "kv policy %s: layer %d not in [0, %d)", name,
                          (int)layer, (int)im->base.n_layer);
    }
    if (mask == NULL || n_evict == NULL || slot_pos == NULL || n_slots < 0 ||
        n_slots > KV_SLOTS_MAX || budget < 1) {
        return pd_err_set(err, PD_EINVAL,
                          "kv policy %s layer %d: bad select arguments (n_slots %lld, budget "
                          "%lld)", name, (int)layer, (long long)n_slots, (long long)budget);
    }
    *n_evict = 0;
    memset(mask, 0, (size_t)n_slots);
    return layer_sync(im, layer, n_slots, err);
}

static enum pd_status full_select(struct pd_kv_policy *p, int32_t layer, int64_t n_slots,
                                  const int64_t *slot_pos, int64_t cur_pos, int64_t budget,
                                  uint8_t *mask, int64_t *n_evict, struct pd_err *err)
{
    (void)cur_pos;
    return select_begin(impl_of(p), layer, n_slots, slot_pos, budget, mask, n_evict, err);
}

/* Keeps the sinks and the newest (budget - sinks) slots, at least one. */
static int64_t keep_recent(int64_t n_sink, int64_t n_slots, int64_t budget, uint8_t *mask)
{
    if (n_slots <= budget) {
        return 0;
    }
    int64_t lo = min64(n_sink, n_slots);
    int64_t recent = max64(budget - n_sink, 1);
    return evict_range(lo, n_slots - recent, mask);
}

static enum pd_status window_select(struct pd_kv_policy *p, int32_t layer, int64_t n_slots,
                                    const int64_t *slot_pos, int64_t cur_pos, int64_t budget,
                                    uint8_t *mask, int64_t *n_evict, struct pd_err *err)
{
    (void)cur_pos;
    struct kv_impl *im = impl_of(p);
    enum pd_status st = select_begin(im, layer, n_slots, slot_pos, budget, mask, n_evict, err);
    if (st != PD_OK) {
        return st;
    }
    *n_evict = keep_recent(im->spec.n_sink, n_slots, budget, mask);
    return PD_OK;
}

static enum pd_status h2o_select(struct pd_kv_policy *p, int32_t layer, int64_t n_slots,
                                 const int64_t *slot_pos, int64_t cur_pos, int64_t budget,
                                 uint8_t *mask, int64_t *n_evict, struct pd_err *err)
{
    (void)cur_pos;
    struct kv_impl *im = impl_of(p);
    enum pd_status st = select_begin(im, layer, n_slots, slot_pos, budget, mask, n_evict, err);
    if (st != PD_OK || n_slots <= budget) {
        return st;
    }
    int64_t recent = h2o_recent(&im->spec, budget);
    int64_t lo = min64(im->spec.n_sink, n_slots);
    int64_t hi = max64(lo, n_slots - recent);
    int64_t heavy = max64(budget - im->spec.n_sink - recent, 0);
    if (hi - lo > heavy) {
        *n_evict = evict_lowest(im, im->layers[layer].score, lo, hi, hi - lo - heavy, mask);
    }
    return PD_OK;
}

static enum pd_status tova_select(struct pd_kv_policy *p, int32_t layer, int64_t n_slots,
                                  const int64_t *slot_pos, int64_t cur_pos, int64_t budget,
                                  uint8_t *mask, int64_t *n_evict, struct pd_err *err)
{
    (void)cur_pos;
    struct kv_impl *im = impl_of(p);
    enum pd_status st = select_begin(im, layer, n_slots, slot_pos, budget, mask, n_evict, err);
    if (st != PD_OK || n_slots <= budget) {
        return st;
    }
    int64_t lo = min64(im->spec.n_sink, n_slots);
    int64_t hi = n_slots - 1; /* the newest slot (the current token) is kept */
    *n_evict = evict_lowest(im, im->layers[layer].score, lo, hi, n_slots - budget, mask);
    return PD_OK;
}

/* pooled[j] for j in [0, n): 1-D pool of x (stride `stride`) with kernel k, padding k/2:
 * avg divides by k with zero padding, max ignores out-of-range entries. */
static void pool1d(enum pd_kv_pool pool, const double *x, size_t stride, int64_t n, int32_t k,
                   double *pooled)
{
    int64_t half = k / 2;
    for (int64_t j = 0; j < n; j++) {
        int64_t a = max64(j - half, 0);
        int64_t b = min64(j + half, n - 1);
        double acc = pool == PD_KV_POOL_MAX ? x[(size_t)a * stride] : 0.0;
        for (int64_t i = a; i <= b; i++) {
            double v = x[(size_t)i * stride];
            if (pool == PD_KV_POOL_MAX) {
                acc = v > acc ? v : acc;
            } else {
                acc += v;
            }
        }
        pooled[j] = pool == PD_KV_POOL_MAX ? acc : acc / (double)k;
    }
}

static enum pd_status snapkv_select(struct pd_kv_policy *p, int32_t layer, int64_t n_slots,
                                    const int64_t *slot_pos, int64_t cur_pos, int64_t budget,
                                    uint8_t *mask, int64_t *n_evict, struct pd_err *err)
{
    (void)cur_pos;
    struct kv_impl *im = impl_of(p);
    enum pd_status st = select_begin(im, layer, n_slots, slot_pos, budget, mask, n_evict, err);
    if (st != PD_OK) {
        return st;
    }
    struct kv_layer *L = &im->layers[layer];
    if (!L->prefill_seen || L->applied) {
        /* Decode: nothing unless over budget, then keep the sinks and the newest slots. */
        *n_evict = keep_recent(im->spec.n_sink, n_slots, budget, mask);
        return PD_OK;
    }
    L->applied = true;
    if (n_slots > budget) {
        const struct pd_policy_spec *s = &im->spec;
        int64_t w = min64(s->window, n_slots);
        int64_t prefix = n_slots - w;
        double *score = im->row;
        int32_t rows = L->n_win_rows;
        for (int32_t r = 0; r < rows; r++) {
            pool1d(s->pool, L->win + r, (size_t)rows, prefix, s->kernel, im->tmp);
            for (int64_t j = 0; j < prefix; j++) {
                if (r == 0) {
                    score[j] = im->tmp[j];
                } else if (s->agg == PD_KV_AGG_MAX) {
                    score[j] = im->tmp[j] > score[j] ? im->tmp[j] : score[j];
                } else {
                    score[j] += im->tmp[j];
                }
            }
        }
        if (s->agg == PD_KV_AGG_MEAN && rows > 1) {
            for (int64_t j = 0; j < prefix; j++) {
                score[j] /= (double)rows;
            }
        }
        int64_t lo = min64(s->n_sink, prefix);
        int64_t keep = max64(budget - w - s->n_sink, 0);
        if (prefix - lo > keep) {
            *n_evict = evict_lowest(im, score, lo, prefix, prefix - lo - keep, mask);
        }
    }
    free(L->win);
    L->win = NULL;
    L->n_win_rows = 0;
    return PD_OK;
}

static enum pd_status lazy_select(struct pd_kv_policy *p, int32_t layer, int64_t n_slots,
                                  const int64_t *slot_pos, int64_t cur_pos, int64_t budget,
                                  uint8_t *mask, int64_t *n_evict, struct pd_err *err)
{
    (void)cur_pos;
    struct kv_impl *im = impl_of(p);
    enum pd_status st = select_begin(im, layer, n_slots, slot_pos, budget, mask, n_evict, err);
    if (st != PD_OK) {
        return st;
    }
    struct kv_layer *L = &im->layers[layer];
    const struct pd_policy_spec *s = &im->spec;
    if (L->t == 0 || n_slots <= budget || L->t % s->window != 0) {
        return PD_OK;
    }
    int64_t hi = n_slots - s->window; /* the newest w slots are always kept */
    int64_t lo = min64(s->n_sink, max64(hi, 0));
    if (hi <= lo) {
        return PD_OK;
    }
    double *score = im->tmp;
    for (int64_t j = lo; j < hi; j++) {
        double mri = (double)L->mri[j];
        double s_freq = L->mri[j] == 0 ? 0.0 : 2.0 / (1.0 + exp(mri - 1.0));
        double overdue = (double)(L->t - L->last[j]) / (mri + 1e-5);
        double s_due = 2.0 / (1.0 + exp(1.0 + overdue));
        score[j] = s_due + s_freq;
    }
    int64_t keep = max64(budget - s->window - s->n_sink, 0);
    if (hi - lo > keep) {
        *n_evict = evict_lowest(im, score, lo, hi, hi - lo - keep, mask);
    }
    return PD_OK;
}

/* ---- on_evicted / destroy ------------------------------------------------------------- */

static enum pd_status kv_on_evicted(struct pd_kv_policy *p, int32_t layer, int64_t n_slots,
                                    const uint8_t *mask, struct pd_err *err)
{
    struct kv_impl *im = impl_of(p);
    if (layer < 0 || layer >= im->base.n_layer || mask == NULL || n_slots < 0 ||
        n_slots > KV_SLOTS_MAX) {
        return pd_err_set(err, PD_EINVAL, "kv policy %s: bad on_evicted arguments (layer %d)",
                          k_kind_names[im->spec.kind], (int)layer);
    }
    enum pd_status st = layer_sync(im, layer, n_slots, err);
    if (st != PD_OK) {
        return st;
    }
    struct kv_layer *L = &im->layers[layer];
    int32_t rows = (L->win != NULL && !L->applied) ? L->n_win_rows : 0;
    int64_t w = 0;
    for (int64_t j = 0; j < n_slots; j++) {
        if (mask[j]) {
            continue;
        }
        if (w != j) {
            if (L->score != NULL) {
                L->score[w] = L->score[j];
            }
            if (L->last != NULL) {
                L->last[w] = L->last[j];
                L->mri[w] = L->mri[j];
            }
            for (int32_t r = 0; r < rows; r++) {
                L->win[w * rows + r] = L->win[j * rows + r];
            }
        }
        w++;
    }
    L->n = w;
    return PD_OK;
}

static void kv_destroy(struct pd_kv_policy *p)
{
    struct kv_impl *im = impl_of(p);
    if (im->layers != NULL) {
        for (int32_t l = 0; l < im->base.n_layer; l++) {
            free(im->layers[l].score);
            free(im->layers[l].last);
            free(im->layers[l].mri);
            free(im->layers[l].win);
        }
    }
    free(im->layers);
    free(im->row);
    free(im->tmp);
    free(im->cand);
    free(im);
}

static const struct pd_kv_policy_ops k_ops[PD_POLICY_KIND_COUNT] = {
    [PD_POLICY_FULL] = {"full", NULL, NULL, full_select, kv_on_evicted, kv_destroy},
    [PD_POLICY_WINDOW] = {"window", NULL, NULL, window_select, kv_on_evicted, kv_destroy},
    [PD_POLICY_H2O] = {"h2o", h2o_observe, h2o_observe_prefill, h2o_select, kv_on_evicted,
                         kv_destroy},
    [PD_POLICY_SNAPKV] = {"snapkv", NULL, snapkv_observe_prefill, snapkv_select,
                            kv_on_evicted, kv_destroy},
    [PD_POLICY_TOVA] = {"tova", tova_observe, tova_observe_prefill, tova_select,
                          kv_on_evicted, kv_destroy},
    [PD_POLICY_LAZY] = {"lazy", lazy_observe, NULL, lazy_select, kv_on_evicted, kv_destroy},
};
_Static_assert(sizeof(k_ops) / sizeof(k_ops[0]) == PD_POLICY_KIND_COUNT, "ops table");

/* Prefill rows each kind wants (see n_prefill_rows in engine/kvpolicy.h). */
static int64_t prefill_rows(const struct pd_policy_spec *s)
{
    switch (s->kind) {
    case PD_POLICY_H2O:
        return PD_KV_ROWS_ALL;
    case PD_POLICY_SNAPKV:
        return s->window;
    case PD_POLICY_TOVA:
        return 1;
    default:
        return 0;
    }
}

static int64_t display_recent(const struct pd_policy_spec *s)
{
    switch (s->kind) {
    case PD_POLICY_WINDOW:
        return s->budget.is_ratio ? 0 : s->budget.slots - s->n_sink;
    case PD_POLICY_H2O:
        return s->budget.is_ratio ? s->n_recent : h2o_recent(s, s->budget.slots);
    case PD_POLICY_SNAPKV:
    case PD_POLICY_LAZY:
        return s->window;
    case PD_POLICY_TOVA:
        return 1;
    default:
        return 0;
    }
}

enum pd_status pd_policy_create(const struct pd_policy_spec *spec, int32_t n_layer,
                                  int64_t n_slots_hint, struct pd_kv_policy **out,
                                  struct pd_err *err)
{
    if (out == NULL) {
        return pd_err_set(err, PD_EINVAL, "kv policy create: NULL out");
    }
    *out = NULL;
    enum pd_status st = pd_policy_validate(spec, err);
    if (st != PD_OK) {
        return st;
    }
    unsigned kind = (unsigned)spec->kind; /* validated; re-checked for -Warray-bounds */
    if (kind >= PD_POLICY_KIND_COUNT || n_layer < 1 || n_layer > KV_LAYERS_MAX ||
        n_slots_hint < 0 || n_slots_hint > KV_SLOTS_MAX) {
        return pd_err_set(err, PD_EINVAL,
                          "kv policy create: n_layer %d not in [1, %d] or bad slot hint %lld",
                          (int)n_layer, KV_LAYERS_MAX, (long long)n_slots_hint);
    }
    struct kv_impl *im = pd_calloc(1, sizeof(*im));
    if (im == NULL) {
        goto fail_nomem;
    }
    im->spec = *spec;
    im->base.ops = &k_ops[kind];
    im->base.mode = spec->mode;
    im->base.budget = spec->has_budget ? spec->budget
                                       : (struct pd_kv_budget){.is_ratio = true, .ratio = 1.0};
    im->base.n_layer = n_layer;
    im->base.agg = spec->agg;
    im->base.n_sink = spec->kind == PD_POLICY_FULL ? 0 : spec->n_sink;
    im->base.n_recent = display_recent(spec);
    im->base.needs_decode_attn = im->base.ops->observe != NULL;
    im->base.n_prefill_rows = prefill_rows(spec);
    im->layers = pd_calloc((size_t)n_layer, sizeof(struct kv_layer));
    if (im->layers == NULL) {
        goto fail_nomem;
    }
    if (n_slots_hint > 0) {
        if (!reserve_scratch(im, n_slots_hint)) {
            goto fail_nomem;
        }
        for (int32_t l = 0; l < n_layer; l++) {
            if (!reserve_layer(im, &im->layers[l], n_slots_hint)) {
                goto fail_nomem;
            }
        }
    }
    *out = &im->base;
    return PD_OK;

fail_nomem:
    if (im != NULL) {
        kv_destroy(&im->base);
    }
    return pd_err_set(err, PD_ENOMEM, "kv policy create: out of memory");
}

enum pd_status pd_policy_create_str(const char *spec, int32_t n_layer, int64_t n_slots_hint,
                                      struct pd_kv_policy **out, struct pd_err *err)
{
    struct pd_policy_spec s;
    enum pd_status st = pd_policy_parse(spec, &s, err);
    if (st != PD_OK) {
        if (out != NULL) {
            *out = NULL;
        }
        return st;
    }
    return pd_policy_create(&s, n_layer, n_slots_hint, out, err);
}
