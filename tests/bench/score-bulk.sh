#!/usr/bin/env bash
# tests/bench/score-bulk.sh MODEL [N] - bulk scoring against the model's prefill rate
# (issue #12): writes N (default 1000) synthetic traces whose thinking is 200-4000 tokens
# of the model's vocabulary (seeded, the same files every run), imports them into a fresh
# database, scores them all with `ponder score --all` (summaries, top-5, segmentation,
# metrics, SQLite writes) and, in the same run, measures `ponder bench -p 512` (capture
# off and summary). Prints tokens/s and traces/s of the scoring, the pp512 figures and
# the ratio. MATCHED=1 also measures `ponder bench -p L` (summary capture) at the token
# counts L of up to 16 of the scored traces (evenly spread over the output) and prints the
# prefill rate at those traces' own lengths, which attention over their long contexts
# lowers below pp512, and scoring's rate on the same traces against it (the pipeline's
# own cost). Environment: THREADS (default 2), PONDER (default build/ponder), KEEP=DIR
# keeps the traces and the database there.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 MODEL [N]" >&2; exit 2; }
model=$1
n=${2:-1000}
threads=${THREADS:-2}
ponder=${PONDER:-build/ponder}
[ -x "$ponder" ] || { echo "$ponder: build first (ninja -C build)" >&2; exit 2; }
[ -r "$model" ] || { echo "$model: not readable" >&2; exit 2; }
command -v jq >/dev/null || { echo "jq is required" >&2; exit 2; }
if [ -n "${KEEP:-}" ]; then
    dir=$KEEP
    mkdir -p "$dir"
    rm -f "$dir/bulk.db" "$dir/bulk.db-wal" "$dir/bulk.db-shm"
else
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
fi

# The traces: common English words, lengths uniform in [200, 4000] tokens of the model's
# tokenizer (words per token measured on a sample first, so the figure counts real tokens).
words="the of and to in is it that was for on are with as at be this have from or one had by
word but not what all were we when your can said there use an each which she do how their
if will up other about out many then them these so some her would make like him into time
has look two more write go see number no way could people my than first water been call
who oil its now find long down day did get come made may part"
sample=$(awk -v w="$words" 'BEGIN { n = split(w, a, /[ \n]+/); srand(1)
    for (k = 0; k < 2000; k++) printf "%s%s", k ? " " : "", a[1 + int(rand() * n)] }')
per_word=$("$ponder" tokenize -m "$model" --text "$sample" --no-bos --json |
    jq '.tokens | length / 2000')
awk -v n="$n" -v seed=12 -v w="$words" -v pw="$per_word" '
    BEGIN {
        nw = split(w, a, /[ \n]+/)
        srand(seed)
        for (i = 1; i <= n; i++) {
            len = int((200 + int(rand() * 3801)) / pw)
            s = ""
            for (k = 0; k < len; k++) {
                s = s (k ? " " : "") a[1 + int(rand() * nw)]
            }
            printf "{\"problem\":\"Problem %d: add %d and %d.\",\"generation\":\"%s\"}\n", \
                i, i, 2 * i, s
        }
    }' >"$dir/traces.jsonl"
"$ponder" import "$dir/traces.jsonl" --db "$dir/bulk.db" >/dev/null 2>&1
echo "model $model, threads $threads, $n traces; load average $(cut -d' ' -f1-3 /proc/loadavg)"
pp=$("$ponder" bench -m "$model" -t "$threads" -p 512 -n 1 -r 3 --capture off,summary --json)
t0=$(date +%s.%N)
"$ponder" score -m "$model" --all --db "$dir/bulk.db" -t "$threads" -c 8192 --json \
    >"$dir/score.jsonl" 2>"$dir/score.log"
t1=$(date +%s.%N)
pp2=$("$ponder" bench -m "$model" -t "$threads" -p 512 -n 1 -r 3 --capture off,summary --json)
tokens=$(jq -s 'map(.tokens // 0) | add' "$dir/score.jsonl")
scored=$(jq -s 'length' "$dir/score.jsonl")
awk -v tok="$tokens" -v nt="$scored" -v t0="$t0" -v t1="$t1" \
    -v a="$(jq .prefill_by_capture_tok_s.off <<<"$pp")" \
    -v b="$(jq .prefill_by_capture_tok_s.off <<<"$pp2")" \
    -v sa="$(jq .prefill_by_capture_tok_s.summary <<<"$pp")" \
    -v sb="$(jq .prefill_by_capture_tok_s.summary <<<"$pp2")" 'BEGIN {
    s = t1 - t0
    off = a > b ? a : b
    sum = sa > sb ? sa : sb
    printf "score --all  %d traces, %d tokens in %.1f s: %.0f tokens/s, %.2f traces/s\n", \
        nt, tok, s, tok / s, nt / s
    printf "pp512        capture off %.0f tok/s, summary %.0f tok/s (best of the runs before and after)\n", \
        off, sum
    printf "ratio        scoring / pp512 summary %.2f, / pp512 off %.2f\n", tok / s / sum, tok / s / off
}'
if [ "${MATCHED:-0}" = 1 ]; then
    # every trace when there are 16 or fewer, else every step-th (the sample stands for all)
    step=$(( (scored + 15) / 16 ))
    jq -r '.tokens // 0' "$dir/score.jsonl" | awk -v s="$step" 'NR % s == 1 || s == 1' |
        while read -r len; do
            [ "$len" -gt 0 ] || continue
            r=$("$ponder" bench -m "$model" -t "$threads" -p "$len" -n 1 -r 1 -c 8192 \
                --capture summary --json | jq .prefill_tok_s)
            echo "$len $r"
        done >"$dir/matched.txt"
    awk -v tok="$tokens" -v t0="$t0" -v t1="$t1" '{ n += $1; t += $1 / $2 } END {
        if (n == 0) exit
        printf "matched      prefill at %d sampled traces\047 own lengths (%d tokens): %.0f tok/s; " \
            "scoring / that %.2f\n", NR, n, n / t, tok / (t1 - t0) / (n / t)
    }' "$dir/matched.txt"
fi
