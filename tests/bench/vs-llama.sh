#!/usr/bin/env bash
# tests/bench/vs-llama.sh LLAMA_BENCH MODEL... - ponder's CPU speed against llama.cpp's
# llama-bench on the same GGUF files, the two programs alternating ROUNDS times per model
# (the machines are noisy, so every ratio comes from one run). Per model and round:
#   prefill: `ponder bench -p PP -n 1`  against `llama-bench -p PP` (ppPP)
#   decode:  `ponder bench -p 1 -n TG --capture off` against `llama-bench -n TG` (tgTG,
#            which starts from an empty cache: ponder's decode starts after one token)
# DEPTH=D decodes after a D-token prompt instead: `ponder bench -p D -n TG` against
# `llama-bench -p 0 -n TG -d D` (tgTG @ dD; not with CPUTIME=1), where the KV cache's
# reads count, as in a long reasoning trace.
# Prints per model the best figure of each program over the rounds, the ratio of the bests
# and the median of the per-round ratios. Environment: THREADS (default 2), PP (default
# 512), TG (default 64), ROUNDS (default 3), PONDER (default build/ponder).
# CPUTIME=1 (needs perf and THREADS=1) counts tokens per second of the process's CPU time
# instead of wall time, for machines shared with other work: each figure is PP (or TG)
# tokens times REPS (default 6) over the task-clock difference between a run with
# -r 1+REPS and one with -r 1, so loading and warm-up cancel; ponder's prefill run also
# decodes 1 token per repeat and its decode run prefills 1.
# docs/performance.md keeps the latest table.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 LLAMA_BENCH MODEL..." >&2; exit 2; }
llama=$1
shift
threads=${THREADS:-2}
pp=${PP:-512}
tg=${TG:-64}
rounds=${ROUNDS:-3}
ponder=${PONDER:-build/ponder}
[ -x "$llama" ] || { echo "$llama: not executable" >&2; exit 2; }
[ -x "$ponder" ] || { echo "$ponder: build first (ninja -C build)" >&2; exit 2; }
command -v jq >/dev/null || { echo "jq is required" >&2; exit 2; }
cputime=${CPUTIME:-0}
depth=${DEPTH:-0}
[ "$depth" = 0 ] || [ "$cputime" != 1 ] || { echo "DEPTH needs CPUTIME=0" >&2; exit 2; }
tg_name="tg$tg"
[ "$depth" = 0 ] || tg_name="tg$tg @ d$depth"
reps=${REPS:-6}
if [ "$cputime" = 1 ]; then
    command -v perf >/dev/null || { echo "CPUTIME=1 needs perf" >&2; exit 2; }
    [ "$threads" = 1 ] || { echo "CPUTIME=1 needs THREADS=1 (idle threads may spin)" >&2; exit 2; }
fi
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

# task-clock milliseconds of a command (its output discarded)
cpu_ms() {
    perf stat -x, -e task-clock -o "$tmp" -- "$@" >/dev/null 2>&1
    awk -F, '$3 ~ /^task-clock/ { print $1 }' "$tmp"
}
# tokens per CPU second: N tokens per repeat, the command given -r 1 and -r 1+REPS
# (appended)
cpu_rate() {
    local n=$1
    shift
    local a b
    a=$(cpu_ms "$@" -r 1)
    b=$(cpu_ms "$@" -r $((1 + reps)))
    awk -v n="$n" -v k="$reps" -v a="$a" -v b="$b" \
        'BEGIN { printf "%.2f", k * n / ((b - a) / 1000) }'
}

echo "ponder $(git rev-parse --short HEAD 2>/dev/null || echo '?'), kernels" \
    "$("$ponder" bench -m "$1" -t 1 -p 1 -n 1 -r 1 --capture off --json 2>/dev/null |
       jq -r .cpu_kernels); $("$llama" --version 2>&1 | grep -m1 -i version || true)"
echo "threads $threads, $rounds rounds, $([ "$cputime" = 1 ] && echo 'tokens per CPU second' ||
    echo 'tokens per wall second'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| %-24s | %-34s | %-34s |\n' model "pp$pp ponder / llama (best; median ratio)" \
    "$tg_name ponder / llama (best; median ratio)"
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..26})" "$(printf -- '-%.0s' {1..36})" \
    "$(printf -- '-%.0s' {1..36})"
for model in "$@"; do
    p_pp=() p_tg=() l_pp=() l_tg=()
    for ((r = 0; r < rounds && cputime == 1; r++)); do
        p_pp+=("$(cpu_rate "$pp" "$ponder" bench -m "$model" -t 1 -p "$pp" -n 1 --capture off)")
        l_pp+=("$(cpu_rate "$pp" "$llama" -m "$model" -t 1 -p "$pp" -n 0)")
        l_tg+=("$(cpu_rate "$tg" "$llama" -m "$model" -t 1 -p 0 -n "$tg")")
        p_tg+=("$(cpu_rate "$tg" "$ponder" bench -m "$model" -t 1 -p 1 -n "$tg" --capture off)")
    done
    for ((r = 0; r < rounds && cputime != 1; r++)); do
        p_pp+=("$("$ponder" bench -m "$model" -t "$threads" -p "$pp" -n 1 -r 1 \
                   --capture off --json | jq .prefill_tok_s)")
        lj=$("$llama" -m "$model" -t "$threads" -p "$pp" -n "$tg" -r 1 -o json 2>/dev/null)
        l_pp+=("$(jq '.[] | select(.n_gen == 0) | .avg_ts' <<<"$lj")")
        if [ "$depth" = 0 ]; then
            l_tg+=("$(jq '.[] | select(.n_prompt == 0) | .avg_ts' <<<"$lj")")
        else
            l_tg+=("$("$llama" -m "$model" -t "$threads" -p 0 -n "$tg" -d "$depth" -r 1 \
                       -o json 2>/dev/null | jq '.[0].avg_ts')")
        fi
        p_tg+=("$("$ponder" bench -m "$model" -t "$threads" -p $((depth > 0 ? depth : 1)) \
                   -n "$tg" -r 1 --capture off --json | jq .decode_tok_s.off)")
    done
    cell() { # ponder figures, llama figures (space-separated)
        awk -v p="$1" -v l="$2" 'BEGIN {
            n = split(p, a, " "); split(l, b, " ")
            for (i = 1; i <= n; i++) {
                if (a[i] > bp) bp = a[i]
                if (b[i] > bl) bl = b[i]
                q[i] = a[i] / b[i]
            }
            for (i = 1; i <= n; i++)          # insertion sort of the ratios
                for (j = i; j > 1 && q[j] < q[j - 1]; j--) {
                    t = q[j]; q[j] = q[j - 1]; q[j - 1] = t
                }
            med = n % 2 ? q[(n + 1) / 2] : (q[n / 2] + q[n / 2 + 1]) / 2
            printf "%.0f / %.0f (%.2fx; %.2fx)", bp, bl, bp / bl, med
        }'
    }
    printf '| %-24s | %-34s | %-34s |\n' "$(basename "$model")" \
        "$(cell "${p_pp[*]}" "${l_pp[*]}")" "$(cell "${p_tg[*]}" "${l_tg[*]}")"
done
