#!/bin/sh
# dataset_cli.sh - distillation datasets end to end through the ponder binary with
# stories260K: import multi-step traces with reference answers (samples/datasets), score,
# grade (analyze --pass-rate), prune asap --keep 0.5 --verify --verify-steps, then export
# dpo (pruned, correctness and length pairs), kto, step-dpo, both variants, with a card;
# the chosen side of a prune pair is the pruned trace, shorter, with the same final answer;
# and samples per prompt recorded by generate --in for the pass rates.
# Needs $PONDER_BIN and $PONDER_SOURCE_ROOT (set by meson) and python3 (the JSON checks).
# Exits 77 (SKIP) when the model is absent.
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
SAMPLES="$ROOT/samples/datasets/questions.jsonl"
DIR=$(mktemp -d "${TMPDIR:-/tmp}/ponder-ds-XXXXXX")
trap 'rm -rf "$DIR"' EXIT
export XDG_DATA_HOME=$DIR/xdg # generate records into the default database
DB="$DIR/t.db"
N_FAIL=0

fail() {
    echo "FAIL: $*" >&2
    N_FAIL=$((N_FAIL + 1))
}

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

# py CHECK-NAME SCRIPT [ARGS]: a Python check; a failed assert is a FAIL with its message
py() {
    name=$1
    shift
    if ! python3 - "$@" >"$DIR/py" 2>&1; then
        fail "$name: $(tail -3 "$DIR/py")"
    fi
}

# ---- import, score, grade ----------------------------------------------------------------
expect 0 "$BIN" import "$SAMPLES" --db "$DB"
expect 0 "$BIN" score -m "$MODEL" --all --db "$DB"
expect 0 "$BIN" analyze --pass-rate --all --db "$DB" --json
py pass-rate "$DIR/out" <<'EOF'
import json, sys
q = [json.loads(l) for l in open(sys.argv[1])]
assert len(q) == 2, q
assert (q[0]["samples"], q[0]["correct"], q[0]["reference"]) == (4, 3, "24"), q[0]
assert (q[1]["samples"], q[1]["correct"], q[1]["reference"]) == (3, 1, "45"), q[1]
assert abs(q[0]["difficulty"] - 0.25) < 1e-9 and abs(q[1]["pass_rate"] - 1 / 3) < 1e-6
assert [s["correct"] for s in q[0]["sessions"]] == [True, True, False, True]
assert [s["answer"] for s in q[1]["sessions"]] == ["45", "18", "35"]
EOF
expect 0 "$BIN" show 3 --db "$DB"
grep -q "graded wrong (answer 10)" "$DIR/out" || fail "show does not give the grade"

# ---- prune, verify, dpo from the prunes --------------------------------------------------
expect 0 "$BIN" prune --strategy asap --keep 0.5 --verify --verify-steps -m "$MODEL" --all \
    --db "$DB" --json
[ "$(grep -c '"step_checks":\[' "$DIR/out")" = 7 ] || fail "prune --verify-steps: no step checks"
expect 0 "$BIN" show 1 --db "$DB"
grep -q "^verified asap:keep=0.5" "$DIR/out" || fail "show does not give the stored check"
# stories260K rarely repeats a greedy answer token for token, so the prune pairs are
# selected by the answer's log-probability: at most 2 nats lower under the pruned reasoning
expect 0 "$BIN" export --format dpo --sources pruned --verify-rule logprob:2 --db "$DB" \
    --out "$DIR/dpo.jsonl" --json
grep -q '"written":[1-9]' "$DIR/out" || fail "dpo from prunes wrote nothing: $(cat "$DIR/out")"
for s in 1 2 3 4 5 6 7; do
    "$BIN" export --format messages --session "$s" --db "$DB" >"$DIR/msg$s.jsonl" 2>/dev/null
done
py dpo-pruned "$DIR/dpo.jsonl" "$SAMPLES" "$DIR" <<'EOF'
import json, re, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
orig = [json.loads(l) for l in open(sys.argv[2])]
d = sys.argv[3]
def split(c):
    assert c.startswith("<think>\n"), c
    think, answer = c[len("<think>\n"):].split("\n</think>\n\n", 1)
    return think, answer
assert recs, "no records"
for r in recs:
    m = r["metadata"]
    s = m["chosen_session"]
    assert m["source"] == "pruned" and m["rejected_session"] == s, m
    assert m["chosen_pruned"] and not m["rejected_pruned"], m
    # chosen: the pruned trace, exactly as the SFT export writes it
    pruned = json.loads(open(f"{d}/msg{s}.jsonl").read())["messages"][-1]["content"]
    assert r["chosen"] == pruned, (r["chosen"], pruned)
    # rejected: the original trace as imported
    assert r["rejected"] == orig[s - 1]["generation"], s
    assert r["prompt"] == orig[s - 1]["problem"]
    ct, ca = split(r["chosen"])
    rt, ra = split(r["rejected"])
    assert len(ct) < len(rt) and m["chosen_tokens"] < m["rejected_tokens"], m
    assert ca == ra, (ca, ra)  # the same final answer
    # the pruned thinking is the original's steps with some left out, in order
    steps, pos = rt.split("\n\n"), 0
    for step in ct.split("\n\n"):
        pos = steps.index(step, pos) + 1
    # and only traces graded right
    assert re.findall(r"\d+", ca)[-1] == orig[s - 1]["answer"], (ca, orig[s - 1]["answer"])
EOF

# ---- dpo from the samples, all sources, the card -----------------------------------------
expect 0 "$BIN" export --format dpo --sources samples --db "$DB" --out "$DIR/samples.jsonl"
py dpo-samples "$DIR/samples.jsonl" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
got = [(r["metadata"]["source"], r["metadata"]["chosen_session"],
        r["metadata"]["rejected_session"]) for r in recs]
# question 1: right 1, 2, 4 (2 shortest, 1 longest), wrong 3; question 2: right 5, wrong 6, 7
assert got == [("correctness", 2, 3), ("length", 2, 1), ("correctness", 5, 6)], got
for r in recs:
    assert r["metadata"]["chosen_tokens"] > 0 and r["metadata"]["difficulty"] is not None
EOF
expect 0 "$BIN" export --format dpo --verify-rule logprob:2 --card --db "$DB" \
    --out "$DIR/all.jsonl"
cp "$DIR/all.jsonl" "$DIR/all1.jsonl"
cp "$DIR/README.md" "$DIR/README1.md"
expect 0 "$BIN" export --format dpo --verify-rule logprob:2 --card --db "$DB" \
    --out "$DIR/all.jsonl"
cmp -s "$DIR/all.jsonl" "$DIR/all1.jsonl" || fail "a repeated export differs"
cmp -s "$DIR/README.md" "$DIR/README1.md" || fail "a repeated card differs"
n_all=$(wc -l <"$DIR/all.jsonl")
grep -q "^    num_examples: $n_all\$" "$DIR/README.md" || fail "card: wrong num_examples"
grep -q "^    path: all.jsonl\$" "$DIR/README.md" || fail "card: no data file"
grep -q "stories260K.gguf (llama" "$DIR/README.md" || fail "card: no model"
grep -q '`asap:keep=0.5`' "$DIR/README.md" || fail "card: no prune strategy"
grep -q "^| correctness | 2 |" "$DIR/README.md" || fail "card: no source counts"
ls -A "$DIR" | grep -q '\.tmp\.' && fail "a temporary file was left behind"

# ---- the conversational variant and kto --------------------------------------------------
expect 0 "$BIN" export --format dpo --conversational --sources samples --db "$DB"
py dpo-conversational "$DIR/out" <<'EOF'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    assert list(r) == ["prompt", "chosen", "rejected", "metadata"], list(r)
    assert r["prompt"] == [{"role": "user", "content": r["prompt"][0]["content"]}]
    for k in ("chosen", "rejected"):
        assert len(r[k]) == 1 and r[k][0]["role"] == "assistant", r[k]
EOF
expect 0 "$BIN" export --format kto --sources reference --db "$DB"
py kto "$DIR/out" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert [r["label"] for r in recs] == [True, True, False, True, True, False, False], recs
assert all(list(r) == ["prompt", "completion", "label", "metadata"] for r in recs)
EOF

# ---- step-dpo from the step checks -------------------------------------------------------
# a step pair is a step whose removal alone changed the greedy answer (the default rule)
expect 0 "$BIN" export --format step-dpo --sources pruned --db "$DB" --out "$DIR/steps.jsonl"
py step-dpo "$DIR/steps.jsonl" "$SAMPLES" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
orig = [json.loads(l) for l in open(sys.argv[2])]
assert recs, "no step pairs"
for r in recs:
    assert list(r) == ["prompt", "initial_reason_steps", "chosen", "rejected", "metadata"]
    s = r["metadata"]["chosen_session"]
    think = orig[s - 1]["generation"][len("<think>\n"):].split("\n</think>")[0]
    # the shared steps, then the step kept (chosen), then the one after it (rejected)
    assert think.startswith(r["initial_reason_steps"] + r["chosen"] + "\n\n" + r["rejected"]), r
EOF

# ---- difficulty in the supervised formats ------------------------------------------------
expect 0 "$BIN" export --format messages --min-difficulty 0.5 --db "$DB"
py sft-difficulty "$DIR/out" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert [r["metadata"]["session"] for r in recs] == [5, 6, 7], recs
assert all(abs(r["metadata"]["difficulty"] - 2 / 3) < 1e-6 for r in recs)
EOF

# ---- samples per prompt: generate --in ---------------------------------------------------
printf '%s\n' '{"question":"A box holds 6 eggs. How many eggs are in 4 boxes?","answer":"24"}' \
    '{"problem":"Sam reads 15 pages a day. How many pages in 3 days?","answer":45}' \
    >"$DIR/prompts.jsonl"
expect 0 "$BIN" generate -m "$MODEL" --in "$DIR/prompts.jsonl" --samples 2 --temp 0.9 \
    --seed 7 -n 12 --db "$DIR/g.db" --json
[ "$(grep -c '"session":' "$DIR/out")" = 4 ] || fail "generate --in: $(cat "$DIR/out")"
grep -Eq "^generate: 4 samples of 2 prompts recorded, 0 failed in ([0-9.]+ s|[0-9][0-9hms]*)" "$DIR/err" ||
    fail "generate --in: summary line: $(cat "$DIR/err")"
expect 0 "$BIN" export --format messages --db "$DIR/g.db" --out "$DIR/g1.jsonl"
expect 0 "$BIN" analyze --pass-rate --all --db "$DIR/g.db" --json
py generate-in "$DIR/out" <<'EOF'
import json, sys
q = [json.loads(l) for l in open(sys.argv[1])]
assert [(x["samples"], x["graded"], x["reference"]) for x in q] == [(2, 2, "24"), (2, 2, "45")], q
EOF
# the same seeds give the same samples
expect 0 "$BIN" generate -m "$MODEL" --in "$DIR/prompts.jsonl" --samples 2 --temp 0.9 \
    --seed 7 -n 12 --db "$DIR/h.db"
expect 0 "$BIN" export --format messages --db "$DIR/h.db" --out "$DIR/h1.jsonl"
cmp -s "$DIR/g1.jsonl" "$DIR/h1.jsonl" || fail "generate --in: same seeds, different samples"
expect 2 "$BIN" generate -m "$MODEL" --in "$DIR/prompts.jsonl" --samples 2 --db "$DIR/g.db"

# ---- errors ------------------------------------------------------------------------------
expect 2 "$BIN" analyze --pass-rate --in "$SAMPLES"
expect 1 "$BIN" export --format dpo --db "$DB" --out "$DIR/no/such/dir.jsonl"
[ -e "$DIR/no" ] && fail "a failed export created something"

if [ "$N_FAIL" -ne 0 ]; then
    echo "$N_FAIL check(s) failed" >&2
    exit 1
fi
echo "dataset CLI: all checks passed"
