#!/bin/sh
# analysis_cli.sh - the analysis pipeline end to end through the ponder binary:
# import the sample traces, score them with stories260K, analyze, prune with
# `asap --keep 0.5 --verify`, export `messages`; plus score --in, prune --in, the other
# strategies and the usage / runtime error exits.
# Needs $PONDER_BIN and $PONDER_SOURCE_ROOT (set by meson); the model comes from
# $PONDER_TEST_MODELS or $PONDER_SOURCE_ROOT/../shared/models. Exits 77 (SKIP) when the
# model is absent.
set -eu

BIN=${PONDER_BIN:?PONDER_BIN is not set}
ROOT=${PONDER_SOURCE_ROOT:?PONDER_SOURCE_ROOT is not set}
MODEL=""
if [ -n "${PONDER_TEST_MODELS:-}" ] && [ -r "$PONDER_TEST_MODELS/stories260K.gguf" ]; then
    MODEL="$PONDER_TEST_MODELS/stories260K.gguf"
elif [ -r "$ROOT/../shared/models/stories260K.gguf" ]; then
    MODEL="$ROOT/../shared/models/stories260K.gguf"
fi
if [ -z "$MODEL" ]; then
    echo "SKIP: stories260K.gguf not found" \
        "(set PONDER_TEST_MODELS or put it in ../shared/models)" >&2
    exit 77
fi
SAMPLES="$ROOT/samples/traces"
DIR=$(mktemp -d "${TMPDIR:-/tmp}/ponder-e2e-XXXXXX")
trap 'rm -rf "$DIR"' EXIT
DB="$DIR/t.db"
N_FAIL=0

fail() {
    echo "FAIL: $*" >&2
    N_FAIL=$((N_FAIL + 1))
}

# expect CODE CMD...: runs CMD, output in $DIR/out and $DIR/err, checks the exit status
expect() {
    want=$1
    shift
    set +e
    "$@" >"$DIR/out" 2>"$DIR/err"
    got=$?
    set -e
    if [ "$got" != "$want" ]; then
        fail "exit $got (want $want): $*"
        sed 's/^/    stderr: /' "$DIR/err" >&2
    fi
}

lines() {
    grep -c "$1" "$2" || true
}

# `score --in/--session/--all` is reached through `ponder score`: fail at once, naming
# it, when that hook is missing.
if ! "$BIN" score --all --help 2>/dev/null | grep -q -- "--in FILE"; then
    echo "FAIL: 'ponder score --all/--in' is not wired into the score command" >&2
    exit 1
fi

# ---- import, score, analyze ----------------------------------------------------------
expect 0 "$BIN" import "$SAMPLES/messages.jsonl" "$SAMPLES/sharegpt.jsonl" \
    "$SAMPLES/problem_generation.jsonl" --db "$DB"
expect 0 "$BIN" score -m "$MODEL" --all --db "$DB" --json
[ "$(lines '"session":' "$DIR/out")" = 6 ] ||
    fail "score --all scored $(lines session "$DIR/out") traces, want 6"
grep -q '"steps":0' "$DIR/out" && fail "a scored trace has no steps"
# a figure of a scored session: an SVG with one band per step
expect 0 "$BIN" plot 1 --db "$DB" --out "$DIR/p.svg"
grep -q '^<svg' "$DIR/p.svg" || fail "plot wrote no SVG"
[ "$(grep -c '<title>step' "$DIR/p.svg")" -ge 2 ] || fail "plot shows no step bands"
expect 1 "$BIN" plot 999 --db "$DB" --out "$DIR/q.svg"
[ -e "$DIR/q.svg" ] && fail "plot of an unknown session left a file"
# the scored sessions now name the model their metrics come from
expect 0 "$BIN" ls --db "$DB"
[ "$(lines 'stories260K.gguf' "$DIR/out")" = 6 ] || fail "scored sessions do not record the model"
# a second --all has nothing left to do
expect 0 "$BIN" score -m "$MODEL" --all --db "$DB"
grep -q "nothing to score" "$DIR/err" || fail "second score --all did work again"
# scoring keeps the text: exporting now gives the sample file back byte for byte
expect 0 "$BIN" export --format messages --session 1 --session 2 --db "$DB"
cmp -s "$DIR/out" "$SAMPLES/messages.jsonl" || fail "scored traces do not export as imported"

expect 0 "$BIN" analyze --all --db "$DB" --json
[ "$(lines '"scored":true' "$DIR/out")" = 6 ] || fail "analyze: not every trace is scored"
grep -q '"first_surprisal":null' "$DIR/out" && fail "analyze: a step lacks first-token surprisal"
grep -q '"kind":"check"' "$DIR/out" || fail "analyze: no check step found in the samples"
grep -q '"kind":"conclude"' "$DIR/out" || fail "analyze: no conclude step found"
expect 0 "$BIN" analyze --session 3 --db "$DB" --sensitivity -m "$MODEL"
grep -q "answer logprob" "$DIR/out" || fail "analyze --sensitivity printed no answer logprob"
grep -q "sens" "$DIR/out" || fail "analyze --sensitivity printed no sensitivity column"
# One importance everywhere: analyze names it imp with its unit, never prints nan, and show
# prints the same values as analyze --json once saved.
grep -q " imp " "$DIR/out" || fail "analyze: no imp column"
grep -q "imp: attention mass received from later steps" "$DIR/out" || fail "analyze: imp unit"
grep -q "sens: answer logprob change in nats" "$DIR/out" || fail "analyze: sens unit"
grep -qw "nan" "$DIR/out" && fail "analyze prints nan"
expect 0 "$BIN" analyze --session 3 --db "$DB" --save --json
imp_json=$(python3 -c '
import json, sys
steps = json.loads(open(sys.argv[1]).read().splitlines()[0])["steps"]
print(" ".join("-" if s["attn_received"] is None else "%.3f" % s["attn_received"] for s in steps))
' "$DIR/out") || fail "analyze --json: no steps to compare"
expect 0 "$BIN" show 3 --db "$DB"
imp_show=$(awk '/^== steps ==/ {on=1; getline; next} on && /^\(/ {on=0} on && NF >= 7 {print $7}' "$DIR/out" | tr '\n' ' ' | sed 's/ $//')
[ "$imp_show" = "$imp_json" ] || fail "show's IMP ($imp_show) is not analyze's attn_received ($imp_json)"
grep -q "IMP: attention mass received from later steps" "$DIR/out" || fail "show: IMP unit"

# ---- prune asap --keep 0.5 --verify, export ------------------------------------------
expect 0 "$BIN" prune --strategy asap --keep 0.5 --verify -m "$MODEL" --all --db "$DB" \
    --json --out "$DIR/pruned.jsonl"
[ "$(lines '"verify":{' "$DIR/out")" = 6 ] ||
    fail "prune: $(lines verify "$DIR/out") verified traces, want 6"
grep -q '"spec":"asap:keep=0.5"' "$DIR/out" || fail "prune: spec missing"
# the summary line: how many, how long, how many answers changed, mean answer logprob delta
# (one sample carries a reference answer: the reference counts join it)
grep -Eq "^prune: 6 traces pruned, 0 failed; greedy answer changed in [0-6] of 6, mean answer logprob delta [-+][0-9.]+ nats; reference answers: [01] of 1 right from the full reasoning, [01] from the pruned \(no answer in the greedy tokens: [01], [01]\) in ([0-9.]+ s|[0-9][0-9hms]*)" "$DIR/err" ||
    fail "prune --verify: summary line: $(cat "$DIR/err")"
grep -q '"pruned":\[\]' "$DIR/out" && fail "prune: a trace kept every step at keep 0.5"
# every trace meets its budget (the anchors of the samples fit in half the tokens)
grep -q '"budget_met":false' "$DIR/out" && fail "prune: a budget was not met"
awk -F'"tokens_before":|,"tokens_after":|,"budget":' \
    '{ if ($3 + 0 > $4 + 0 || $3 + 0 >= $2 + 0) bad = 1 } END { exit bad }' "$DIR/out" ||
    fail "prune: tokens_after not under the budget"
[ "$(wc -l <"$DIR/pruned.jsonl")" = 6 ] ||
    fail "prune --out wrote $(wc -l <"$DIR/pruned.jsonl") lines"
expect 0 "$BIN" export --format messages --pruned --db "$DB" --out "$DIR/export.jsonl"
cmp -s "$DIR/export.jsonl" "$DIR/pruned.jsonl" || fail "export --pruned differs from prune --out"
# pruned traces are shorter, keep the think block and the answers
orig_bytes=$(cat "$SAMPLES"/*.jsonl | wc -c)
new_bytes=$(wc -c <"$DIR/export.jsonl")
[ "$new_bytes" -lt "$orig_bytes" ] ||
    fail "pruned export ($new_bytes bytes) not shorter than $orig_bytes"
[ "$(lines '<think>\\n' "$DIR/export.jsonl")" = 6 ] || fail "pruned export lost think blocks"
for a in "Tom has 7 apples left." "The area is 24 square meters." "They have 16 legs together." \
    "It arrives at 5 o'clock." "Lily has 10 candies left." "The next number is 10."; do
    grep -q "$a" "$DIR/export.jsonl" || fail "pruned export lost the answer '$a'"
done
# the first step (an anchor) of trace 1 survives, a middle step is gone
grep -q "Okay, so the problem asks how many apples" "$DIR/export.jsonl" || fail "anchor step pruned"
expect 0 "$BIN" show 1 --db "$DB"
grep -q "pruned" "$DIR/out" || fail "show does not report the prunes"

# ---- the other strategies on stored traces -------------------------------------------
expect 0 "$BIN" prune --strategy redundant --session 5 --db "$DB" --json
grep -q '"spec":"redundant:threshold=0.6"' "$DIR/out" || fail "redundant: no spec"
grep -q '"pruned":\[6\]' "$DIR/out" ||
    fail "redundant: expected the repeated dog check (step 6) pruned: $(cat "$DIR/out")"
expect 0 "$BIN" prune --strategy budget --session 1 --db "$DB" --dry-run --json
grep -q '"spec":"budget:d=' "$DIR/out" || fail "budget: no spec"
expect 0 "$BIN" prune --strategy manual --steps 1,2 --session 2 --db "$DB" --json
grep -q '"pruned":\[1,2\]' "$DIR/out" || fail "manual: steps 1,2 not pruned"

# ---- score --in and prune --in -------------------------------------------------------
expect 0 "$BIN" score -m "$MODEL" --in "$SAMPLES/sharegpt.jsonl" --db "$DIR/s.db" --json
[ "$(lines '"session":' "$DIR/out")" = 2 ] ||
    fail "score --in scored $(lines session "$DIR/out") traces, want 2"
expect 0 "$BIN" prune --strategy asap --budget 80 -m "$MODEL" \
    --in "$SAMPLES/problem_generation.jsonl" \
    --out "$DIR/in.jsonl" --format sharegpt
[ "$(lines '"conversations"' "$DIR/in.jsonl")" = 2 ] ||
    fail "prune --in did not write 2 sharegpt lines"
expect 0 "$BIN" analyze --in "$SAMPLES/messages.jsonl" --json
[ "$(lines '"scored":false' "$DIR/out")" = 2 ] ||
    fail "analyze --in without a model should be unscored"

# ---- errors ---------------------------------------------------------------------------
expect 2 "$BIN" prune --all --db "$DB"
expect 2 "$BIN" prune --strategy nope --all --db "$DB"
expect 2 "$BIN" prune --strategy asap --keep 2 --all --db "$DB"
expect 2 "$BIN" prune --strategy asap --keep 0.5 --budget 3 --all --db "$DB"
expect 2 "$BIN" prune --strategy asap --verify --all --db "$DB"
expect 2 "$BIN" prune --strategy manual --all --db "$DB"
expect 2 "$BIN" prune --strategy asap --in "$SAMPLES/messages.jsonl"
expect 2 "$BIN" analyze --db "$DB"
expect 2 "$BIN" analyze --all --session 1 --db "$DB"
expect 2 "$BIN" score --all --db "$DB"
expect 1 "$BIN" analyze --session 999 --db "$DB"
grep -q "session 999" "$DIR/err" || fail "unknown session not named"
expect 1 "$BIN" prune --strategy manual --steps 99 --session 1 --db "$DB"
grep -q "step 99 does not exist" "$DIR/err" || fail "bad manual step not named"
expect 1 "$BIN" score -m "$MODEL" --in "$DIR/missing.jsonl" --db "$DIR/s.db"
# asap on an unscored trace without a model: named error, exit 1
expect 0 "$BIN" import "$SAMPLES/messages.jsonl" --db "$DIR/u.db"
expect 1 "$BIN" prune --strategy asap --all --db "$DIR/u.db"
grep -q "score the trace first" "$DIR/err" || fail "asap on unscored trace: unclear error"

if [ "$N_FAIL" -ne 0 ]; then
    echo "$N_FAIL check(s) failed" >&2
    exit 1
fi
echo "analysis CLI: all checks passed"
