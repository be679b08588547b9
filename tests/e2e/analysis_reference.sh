#!/usr/bin/env bash
# analysis_reference.sh - reference answers in prune --verify and analyze --sensitivity:
# the greedy answer from the full and the pruned reasoning (and with each step removed) is
# graded against the reference an imported record carried (answer / solution / gold),
# per trace (text and --json) and in the summary line; a trace without a reference gets
# none of it. The model is a tiny "constant" GGUF whose greedy choice is always one token
# (mkmodel --constant), so the answers are known: "7777" from the digit model, words from
# the word model (no answer). Needs $PONDER_BIN and $PONDER_MKMODEL.
set -u
ponder=${PONDER_BIN:?}
mkmodel=${PONDER_MKMODEL:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_DATA_HOME=$tmp/xdg
fails=0
check() {
    local name=$1
    shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
"$mkmodel" --arch llama --type f32 --constant '<0x37>' --out "$tmp/seven.gguf" || exit 1
"$mkmodel" --arch llama --type f32 --constant $'\xe2\x96\x81the' --out "$tmp/word.gguf" || exit 1

# four thinking steps; references: right for "7777", wrong, a number inside text, none
think='<think>\\nfirst we look at the number one\\n\\nthen we add two more to it\\n\\nwait, so it is the number\\n\\ntherefore the answer is clear\\n</think>\\n\\nthe answer is 7777'
{
    printf '{"question":"what is the number","answer":"%s","gold":"7777"}\n' "$think"
    printf '{"question":"what is the other number","answer":"%s","gold":"12"}\n' "$think"
    printf '{"question":"and this one","answer":"%s","gold":"so it is #### 7,777"}\n' "$think"
    printf '{"question":"no reference here","answer":"%s"}\n' "$think"
} >"$tmp/r.jsonl"
"$ponder" import "$tmp/r.jsonl" --db "$tmp/r.db" >/dev/null 2>&1
check "import: 4 traces" test "$("$ponder" ls --db "$tmp/r.db" --json | grep -o '"id"' | wc -l)" -eq 4

# --- prune --verify ---
"$ponder" prune --strategy asap --keep 0.5 --verify --greedy 4 -m "$tmp/seven.gguf" --all \
    --db "$tmp/r.db" --dry-run --json >"$tmp/p.json" 2>"$tmp/p.err"
check "prune --verify: exit 0" test $? -eq 0
check "prune --verify: four traces" test "$(grep -c '"verify":{' "$tmp/p.json")" -eq 4
check "prune --verify: a right reference, both ways" grep -q \
    '"reference":"7777","answer_full":"7777","answer_full_correct":true,"answer_pruned":"7777","answer_pruned_correct":true' \
    "$tmp/p.json"
check "prune --verify: a wrong reference" grep -q \
    '"reference":"12","answer_full":"7777","answer_full_correct":false,"answer_pruned":"7777","answer_pruned_correct":false' \
    "$tmp/p.json"
check "prune --verify: a worked solution's #### answer, commas read as a number" grep -q \
    '"reference":"so it is #### 7,777","answer_full":"7777","answer_full_correct":true' \
    "$tmp/p.json"
check "prune --verify: no reference, no reference keys" \
    test "$(grep -c '"reference"' "$tmp/p.json")" -eq 3
check "prune --verify: the summary counts them" \
    grep -q "reference answers: 2 of 3 right from the full reasoning, 2 from the pruned (no answer in the greedy tokens: 0, 0)" \
    "$tmp/p.err"
"$ponder" prune --strategy asap --keep 0.5 --verify --greedy 4 -m "$tmp/seven.gguf" --session 2 \
    --db "$tmp/r.db" --dry-run >"$tmp/p.txt" 2>/dev/null
check "prune --verify text: the reference line" grep -q \
    "reference 12: greedy answer from the full reasoning 7777 (WRONG), from the pruned reasoning 7777 (WRONG)" \
    "$tmp/p.txt"
# a model whose greedy answer holds no number: no answer, not wrong
"$ponder" prune --strategy asap --keep 0.5 --verify --greedy 4 -m "$tmp/word.gguf" --session 1 \
    --db "$tmp/r.db" --dry-run --json >"$tmp/w.json" 2>"$tmp/w.err"
check "prune --verify: no number in the greedy answer is null" grep -q \
    '"answer_full":null,"answer_full_correct":null,"answer_pruned":null,"answer_pruned_correct":null' \
    "$tmp/w.json"
check "prune --verify: ... and counted as no answer" grep -q "no answer in the greedy tokens: 1, 1" \
    "$tmp/w.err"

# --- analyze --sensitivity ---
"$ponder" analyze --sensitivity --greedy 4 -m "$tmp/seven.gguf" --session 1 --session 2 \
    --session 4 --db "$tmp/r.db" --json >"$tmp/a.json" 2>"$tmp/a.err"
check "analyze --sensitivity: exit 0" test $? -eq 0
n_steps=$(grep -o '"index":' "$tmp/a.json" | wc -l)
check "analyze --sensitivity: every step of the graded traces checked" \
    test "$(grep -o '"answer_without_correct":true' "$tmp/a.json" | wc -l)" -eq $((n_steps / 3))
check "analyze --sensitivity: wrong stays wrong" \
    test "$(grep -o '"answer_without_correct":false' "$tmp/a.json" | wc -l)" -eq $((n_steps / 3))
check "analyze --sensitivity: the trace's own verdict" grep -q \
    '"reference":"7777","answer_full":"7777","answer_full_correct":true' "$tmp/a.json"
check "analyze --sensitivity: the trace without a reference has none" \
    test "$(grep -c '"answer_without"' "$tmp/a.json")" -eq 2
check "analyze --sensitivity: sensitivity still reported" grep -q '"sensitivity":' "$tmp/a.json"
check "analyze --sensitivity: summary" \
    grep -q "reference answers: 1 of 2 right, removing one step changes that in 0 of $((2 * n_steps / 3)) steps" \
    "$tmp/a.err"
"$ponder" analyze --sensitivity --greedy 4 -m "$tmp/seven.gguf" --session 1 --db "$tmp/r.db" \
    >"$tmp/a.txt" 2>/dev/null
check "analyze text: the reference line" grep -q "reference 7777: greedy answer 7777 (right)" \
    "$tmp/a.txt"
check "analyze text: the ref column" grep -q " ref " "$tmp/a.txt"
"$ponder" analyze --greedy 4 --session 1 --db "$tmp/r.db" >/dev/null 2>"$tmp/err"
check "analyze --greedy without --sensitivity: exit 2" test $? -eq 2

echo "$fails failures"
[ $fails -eq 0 ]
