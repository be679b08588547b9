/* gguf_dump.c - `gguf-dump FILE [-a]`: prints a GGUF file's header, every metadata key with
 * its type and value (arrays abbreviated to their first elements unless -a), and the tensor
 * table (name, type, shape, offset, size). A debugging aid built with the tests; it uses
 * the engine's reader, so a file it cannot open is reported with the reader's message. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "status.h"
#include "dtype.h"
#include "gguf.h"

#define ARR_SHOWN 8
#define STR_SHOWN 120

/* Prints s quoted, escaping control and non-ASCII bytes, cut after `max` bytes. */
static void print_str(struct pd_gguf_str s, size_t max)
{
    size_t n = s.n < max ? (size_t)s.n : max;
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.s[i];
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c == '\n') {
            fputs("\\n", stdout);
        } else if (c < 0x20 || c >= 0x7F) {
            printf("\\x%02x", c);
        } else {
            putchar(c);
        }
    }
    putchar('"');
    if (s.n > max) {
        printf("...(%" PRIu64 " bytes)", s.n);
    }
}

static void print_arr_elem(const struct pd_gguf_kv *kv, uint64_t i)
{
    switch (kv->v.arr.elem) {
    case PD_GGUF_STRING:
        print_str(kv->v.arr.strs[i], 40);
        break;
    case PD_GGUF_FLOAT32:
    case PD_GGUF_FLOAT64:
        printf("%g", pd_gguf_arr_f64(kv, i));
        break;
    case PD_GGUF_INT8:
    case PD_GGUF_INT16:
    case PD_GGUF_INT32:
    case PD_GGUF_INT64:
        printf("%" PRId64, pd_gguf_arr_i64(kv, i));
        break;
    case PD_GGUF_BOOL:
        fputs(pd_gguf_arr_u64(kv, i) ? "true" : "false", stdout);
        break;
    default:
        printf("%" PRIu64, pd_gguf_arr_u64(kv, i));
        break;
    }
}

static void print_kv(const struct pd_gguf_kv *kv, int all)
{
    print_str(kv->key, 200);
    printf(" %s", pd_gguf_vtype_name(kv->type));
    switch (kv->type) {
    case PD_GGUF_STRING:
        putchar(' ');
        print_str(kv->v.str, all ? SIZE_MAX : STR_SHOWN);
        break;
    case PD_GGUF_ARRAY: {
        printf("[%s x %" PRIu64 "] [", pd_gguf_vtype_name(kv->v.arr.elem), kv->v.arr.n);
        uint64_t n = all || kv->v.arr.n <= ARR_SHOWN ? kv->v.arr.n : ARR_SHOWN;
        for (uint64_t i = 0; i < n; i++) {
            if (i) {
                fputs(", ", stdout);
            }
            print_arr_elem(kv, i);
        }
        fputs(n < kv->v.arr.n ? ", ...]" : "]", stdout);
        break;
    }
    case PD_GGUF_FLOAT32:
    case PD_GGUF_FLOAT64:
        printf(" %.9g", kv->v.f);
        break;
    case PD_GGUF_INT8:
    case PD_GGUF_INT16:
    case PD_GGUF_INT32:
    case PD_GGUF_INT64:
        printf(" %" PRId64, kv->v.i);
        break;
    case PD_GGUF_BOOL:
        fputs(kv->v.u ? " true" : " false", stdout);
        break;
    default:
        printf(" %" PRIu64, kv->v.u);
        break;
    }
    putchar('\n');
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int all = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-a") == 0) {
            all = 1;
        } else if (!path && argv[i][0] != '-') {
            path = argv[i];
        } else {
            path = NULL;
            break;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: gguf-dump FILE [-a]\n"
                        "  prints metadata and tensors of a GGUF file; -a: arrays in full\n");
        return 2;
    }
    struct pd_gguf *g = NULL;
    struct pd_err err = {0};
    if (pd_gguf_open(path, &g, &err) != PD_OK) {
        fprintf(stderr, "gguf-dump: %s\n", err.msg);
        return 1;
    }
    printf("%s: GGUF v%u, %" PRIu64 " bytes, %" PRIu64 " keys, %" PRIu64
           " tensors, alignment %" PRIu64 ", data at %" PRIu64 "\n",
           path, g->version, g->size, g->n_kv, g->n_tensors, g->alignment, g->data_offset);
    printf("\nmetadata:\n");
    for (uint64_t i = 0; i < g->n_kv; i++) {
        printf("  ");
        print_kv(&g->kv[i], all);
    }
    printf("\ntensors:\n");
    uint64_t total = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct pd_gguf_tensor *t = &g->tensors[i];
        printf("  ");
        print_str(t->name, 200); /* names may hold terminal control bytes */
        printf(" %s [", pd_dtype_traits(t->type)->name);
        for (uint32_t d = 0; d < t->n_dims; d++) {
            printf(d ? ", %" PRIu64 : "%" PRIu64, t->ne[d]);
        }
        printf("] offset %" PRIu64 " size %" PRIu64 "\n", t->offset, t->size);
        total += t->size;
    }
    printf("\ntensor data: %" PRIu64 " bytes\n", total);
    pd_gguf_close(&g);
    return 0;
}
