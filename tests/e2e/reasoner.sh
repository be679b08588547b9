#!/bin/bash
# reasoner.sh - the reasoner through the command line (docs/reasoner.md, docs/eval.md):
#   - the committed held-out problems are what the generator makes from their seed;
#   - the trainer's `score` and `ponder score` give the same log-probabilities (f32 KV);
#   - `ponder eval`: table, --json, --svg, --db; a tight window policy lowers accuracy
#     against the full cache on a fixed problem set;
#   - a trainer smoke run (a few steps of a tiny model): stopping, resuming and finishing
#     gives the same bytes as one straight run, and ponder loads the f32 and q8_0 files.
# Needs the committed model: its absence is a failure (docs/testing.md).
set -eu
: "${PONDER_BIN:?}" "${PONDER_SOURCE_ROOT:?}" "${REASONER_GEN:?}" "${REASONER_TRAIN:?}"
M="$PONDER_SOURCE_ROOT/samples/models/reasoner.gguf"
P="$PONDER_SOURCE_ROOT/samples/reasoner/heldout.jsonl"
if [ ! -f "$M" ]; then
    echo "FAIL: $M not found (the model is committed in samples/models)" >&2
    exit 1
fi
TMPD=$(mktemp -d "${TMPDIR:-/tmp}/ponder-reasoner.XXXXXX")
trap 'rm -rf "$TMPD"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# 1. the held-out set is reproducible from its seed
"$REASONER_GEN" problems --seed 2 --count 500 > "$TMPD/heldout.jsonl"
cmp -s "$TMPD/heldout.jsonl" "$P" || fail "samples/reasoner/heldout.jsonl differs from seed 2"
echo "ok: held-out problems reproduce"

# 2. trainer and engine score a held-out trace alike
text=$(printf '%s' '<|im_start|>user\nWhat is 4951 + 89?<|im_end|>\n<|im_start|>assistant\n' \
    '<think>\nWe add 4951 and 89 column by column, starting from the ones.\n\n' \
    'Ones: 4951+89: 1+9+0=10. Write 0, carry 1. So far: 0.\n</think>\n\n' \
    '4951 + 89 = 5040<|im_end|>')
text=$(printf "$text")
ids=$("$PONDER_BIN" tokenize -m "$M" --text "$text" --json | sed 's/.*\[\(.*\)\].*/\1/')
[ -n "$ids" ] || fail "tokenize gave no ids"
"$REASONER_TRAIN" score --model "$M" --ids "$ids" --json > "$TMPD/tr.jsonl"
"$PONDER_BIN" score -m "$M" --tokens "$ids" --kv-type f32 --topk 0 --json > "$TMPD/pd.jsonl"
worst=$(awk -F'"logprob":' 'FNR==NR { if ($2 != "") { split($2, a, /[,}]/); t[FNR] = a[1] } next }
        { if ($2 != "") { split($2, a, /[,}]/); d = a[1] - t[FNR]; if (d < 0) d = -d;
          if (d > m) m = d; n++ } }
        END { if (n == 0) print "none"; else printf "%.3g\n", m }' "$TMPD/tr.jsonl" "$TMPD/pd.jsonl")
[ "$worst" != "none" ] || fail "no logprobs to compare"
awk -v w="$worst" 'BEGIN { exit !(w < 1e-4) }' ||
    fail "trainer vs ponder score: max |d| $worst"
echo "ok: trainer score = ponder score (max |d logprob| $worst)"

# 3. eval on a fixed problem set: full cache against a tight window
head -40 "$P" > "$TMPD/p40.jsonl"
"$PONDER_BIN" eval -m "$M" --in "$TMPD/p40.jsonl" -t 1 --kv window:24 --json \
    --svg "$TMPD/e.svg" --db "$TMPD/e.db" > "$TMPD/e.json"
# a setting's own accuracy (its by_type object, which follows, has accuracies too)
acc() { sed 's/},{"setting"/\n/g' "$TMPD/e.json" | grep "\"kv\":\"$1\"" |
        sed 's/,"by_type".*//; s/.*"accuracy":\([0-9.e-]*\).*/\1/' | head -1; }
full=$(acc full)
tight=$(acc window:24)
echo "eval: full cache $full, window:24 $tight"
awk -v f="$full" 'BEGIN { exit !(f >= 0.75) }' || fail "full-cache accuracy $full < 0.75"
awk -v f="$full" -v t="$tight" 'BEGIN { exit !(f - t >= 0.2) }' ||
    fail "window:24 ($tight) is not clearly below the full cache ($full)"
grep -q '<svg' "$TMPD/e.svg" || fail "no SVG written"
n=$("$PONDER_BIN" ls --db "$TMPD/e.db" | tail -n +2 | wc -l)
[ "$n" -eq 80 ] || fail "--db recorded $n sessions, expected 80"
"$PONDER_BIN" eval -m "$M" --in "$TMPD/p40.jsonl" --limit 5 -t 1 > "$TMPD/table.txt"
grep -q '^long ' "$TMPD/table.txt" || fail "no table row for the long mode"
grep -q 'accuracy by type' "$TMPD/table.txt" || fail "no per-type table"
# pruning that drops little leaves a long trace: the new answer gets what the context
# leaves (problem 13 thinks 487 tokens of the 640; 256 more would not fit)
sed -n 13p "$P" > "$TMPD/p13.jsonl"
"$PONDER_BIN" eval -m "$M" --in "$TMPD/p13.jsonl" -t 1 --prune redundant --json \
    > "$TMPD/p13.json" || fail "eval --prune redundant on a long trace"
grep -q '"prune":"redundant".*"answered":1' "$TMPD/p13.json" ||
    fail "redundant pruning of a long trace gave no answer: $(cat "$TMPD/p13.json")"
echo "ok: eval"

# usage errors
for bad in "--mode sideways" "--kv window:200%" "--answer-now-at 1.5" "--prune manual" \
           "--keep 0"; do
    # shellcheck disable=SC2086
    if "$PONDER_BIN" eval -m "$M" --in "$TMPD/p40.jsonl" $bad 2>/dev/null; then
        fail "eval accepted $bad"
    fi
done
printf '{"question":"q"}\n' > "$TMPD/bad.jsonl"
if "$PONDER_BIN" eval -m "$M" --in "$TMPD/bad.jsonl" 2> "$TMPD/err.txt"; then
    fail "eval accepted a problem without an answer"
fi
grep -q 'bad.jsonl:1: answer: missing' "$TMPD/err.txt" || fail "message: $(cat "$TMPD/err.txt")"
echo "ok: eval errors"

# 4. trainer smoke run: straight vs stopped and resumed
"$REASONER_GEN" vocab --seed 7 --samples 300 --size 400 --out "$TMPD/v.gguf" 2>/dev/null
T=(--vocab "$TMPD/v.gguf" --embd 32 --layers 2 --heads 2 --kv-heads 1 --ff 64 --steps 4
   --batch-tokens 600 --warmup 1 --log-every 1 --eval-every 2 --eval-count 3
   --exclude-count 50 --threads 2)
"$REASONER_TRAIN" train "${T[@]}" --out "$TMPD/a.gguf" --out-q8 "$TMPD/a8.gguf" \
    > "$TMPD/a.log"
"$REASONER_TRAIN" train "${T[@]}" --out "$TMPD/b.gguf" --out-q8 "$TMPD/b8.gguf" \
    --checkpoint "$TMPD/c.ckpt" --until 2 > "$TMPD/b.log"
[ ! -f "$TMPD/b.gguf" ] || fail "--until 2 wrote the model"
"$REASONER_TRAIN" train "${T[@]}" --out "$TMPD/b.gguf" --out-q8 "$TMPD/b8.gguf" \
    --checkpoint "$TMPD/c.ckpt" --resume >> "$TMPD/b.log"
cmp -s "$TMPD/a.gguf" "$TMPD/b.gguf" || fail "resumed run differs from the straight run"
cmp -s "$TMPD/a8.gguf" "$TMPD/b8.gguf" || fail "resumed q8_0 file differs"
diff <(grep -E '^(step|eval)' "$TMPD/a.log" | sed 's/ tok\/s.*//') \
     <(grep -E '^(step|eval)' "$TMPD/b.log" | sed 's/ tok\/s.*//') > /dev/null ||
    fail "loss curves differ"
"$PONDER_BIN" info -m "$TMPD/a.gguf" > /dev/null || fail "ponder cannot load the f32 file"
"$PONDER_BIN" info -m "$TMPD/a8.gguf" | grep -qi 'q8_0' || fail "q8_0 file: not q8_0"
echo "ok: trainer smoke run, resume reproduces the straight run"
